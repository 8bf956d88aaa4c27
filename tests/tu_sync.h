/* tests/tu_sync.h -- helpers of the sync-layer tests (tests/test_sync_*.c) that use the library
 * itself (tests/tu_net.h has the raw, library-free peers): servers on loopback, a connecting
 * thread, connected pairs. */
#ifndef TCPFRAME_TU_SYNC_H
#define TCPFRAME_TU_SYNC_H

#include <pthread.h>
#include <stdbool.h>
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

/* True if the test's prestate host is IPv6 ("[::1]"). */
bool tu_host_v6(void **state);
/* "host:port" of |port| into buf. */
void tu_addr_of(char *buf, size_t len, const char *host, int port);
/* Sleep |ms| milliseconds (a poll on nothing: no bare sleep()). */
void tu_nap(int ms);
/* CPU time of the calling thread in ms. A wait in poll costs next to none and a spin its whole
 * length, so "cpu < 100 ms" over a 200 ms wait can never fail a correct wait whatever the load
 * (a spin on a loaded machine may merely go unnoticed). */
long tu_thread_cpu_ms(void);
/* One message each way over two library connections, checked (cmocka asserts). */
void tu_exchange(tf_sync_conn *a, tf_sync_conn *b);

#endif /* TCPFRAME_TU_SYNC_H */
