/* tests/tu_tls.h -- helpers of the TLS tests (tests/test_tls.c, tests/test_tls_peers.c). */
#ifndef TCPFRAME_TU_TLS_H
#define TCPFRAME_TU_TLS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "tcpframe/sync.h"
#include "tcpframe/tls.h"

/* The scratch directory of the certificates (made by tu_tls_setup, removed by
 * tu_tls_teardown): ca, ca2 (self-signed); server (localhost, 127.0.0.1), client, expired (its
 * notAfter yesterday) of ca; stranger of ca2. NAME.pem and NAME.key each. */
extern char tu_tls_dir[64];
int tu_tls_setup(void **state);
int tu_tls_teardown(void **state);
/* Run a shell command (printf format); abort if it fails. */
void tu_tls_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "<dir>/<name>" (a ring of 8 static buffers). */
const char *tu_tls_path(const char *name);
/* A context with certificate NAME (NULL: none), CA ca.pem, verify, peer name; fails the test. */
tf_tls_ctx *tu_tls_ctx(const char *name, int verify, const char *peer_name);
/* Defaults with |k|, the handshake deadline |hs_ms|, no connect retries. */
tf_tcp_config tu_tls_cfg(tf_tls_ctx *k, int64_t hs_ms);

/* A sync server on 127.0.0.1:0 whose accept runs on a thread (th: join it for c / err), with
 * its rejects counted (rejects is published after rej_err and rej_os). */
typedef struct tu_tls_srv {
    tf_sync_server *s;
    tf_sync_conn *c;
    tf_err err;
    atomic_int rejects; /* published after rej_err and rej_os */
    tf_err rej_err;
    int rej_os;
    pthread_t th;
} tu_tls_srv;
void tu_tls_srv_start(tu_tls_srv *r, const tf_tcp_config *cfg, char *addr, size_t len);
/* Shut down, join, free the accepted connection and the server. */
void tu_tls_srv_stop(tu_tls_srv *r);

#endif /* TCPFRAME_TU_TLS_H */
