/* tests/tu_sync.h -- helpers of the sync-layer tests (tests/test_sync_*.c) that use the library
 * itself (tests/tu_net.h has the raw, library-free peers): servers on loopback, a connecting
 * thread, connected pairs. */
#ifndef TCPFRAME_TU_SYNC_H
#define TCPFRAME_TU_SYNC_H

#include <pthread.h>
#include <stddef.h>

#include "tcpframe/sync.h"

/* The host in a test's prestate ("127.0.0.1", "[::1]"), "127.0.0.1" if none. */
const char *tu_host(void **state);

/* A new server listening on "host:0" under cfg; addr gets "host:port" (the real port). */
tf_sync_server *tu_listen(const char *host, const tf_tcp_config *cfg, char *addr, size_t len);

/* tf_sync_connect on its own thread: start, then join to read c/err/msg/os_err/ms. */
typedef struct tu_connector {
    const char *addr;
    const tf_tcp_config *cfg;
    tf_sync_conn *c;
    tf_err err;
    int os_err;
    tf_errmsg msg;
    unsigned long long ms; /* how long tf_sync_connect took */
    pthread_t thread;
} tu_connector;
void tu_connect_start(tu_connector *k, const char *addr, const tf_tcp_config *cfg);
void tu_connect_join(tu_connector *k);

/* Two library connections over loopback: *srv_side accepted, *cli_side connected. */
void tu_lib_pair(const char *host, const tf_tcp_config *cfg, tf_sync_conn **srv_side,
                 tf_sync_conn **cli_side);
/* An accepted library connection and a raw peer socket (*raw) that did the handshake by hand
 * (none if cfg->handshake is 0). */
tf_sync_conn *tu_raw_pair(const char *host, const tf_tcp_config *cfg, int *raw);

#endif /* TCPFRAME_TU_SYNC_H */
