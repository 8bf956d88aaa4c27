/* io/sync_internal.h -- what io/sync_conn.c, sync_server.c and sync_connect.c share (SPEC 9.6);
 * not installed. */
#ifndef TCPFRAME_IO_SYNC_INTERNAL_H
#define TCPFRAME_IO_SYNC_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"
#include "obs_internal.h"
#include "tcpframe/sync.h"

/* The absolute CLOCK_MONOTONIC deadline |ms| milliseconds from now; negative: TF__FOREVER. */
uint64_t tf__deadline_ms(int64_t ms);

/* poll()'s timeout in ms for the absolute |deadline_ns| (TF__FOREVER: -1), rounded up so that
 * poll never returns before it; 0 once it has passed. */
int tf__poll_ms(uint64_t deadline_ns);

/* Wait until |fd| is ready for |events| (poll bits; an error or hang-up pending counts as
 * ready), until |deadline_ns| passes, or until |cancel_fd| (>= 0; -1: none) is readable. fd -1
 * just sleeps (until the deadline or the cancel fd). EINTR is retried against the deadline.
 *   TF_OK               ready
 *   TF_ERR_TIMEOUT      the deadline passed first
 *   TF_ERR_SHUTDOWN     cancel_fd became readable
 *   TF_ERR_IO           poll failed or fd is not open (*os_err set) */
tf_err tf__sync_wait(int fd, short events, int cancel_fd, uint64_t deadline_ns, int *os_err);

/* Make a connection that owns the connected socket |fd| (already non-blocking, options
 * applied) under the loaded config |cfg|, then, if cfg->handshake, exchange the magic until
 * |deadline_ns| (cancel_fd as for tf__sync_wait).
 *   TF_OK: *out is the connection.  On error fd is closed and *out is NULL:
 *   TF_ERR_BAD_MAGIC, CLOSED, TRUNCATED, TIMEOUT, SHUTDOWN, IO (*os_err), NOMEM */
tf_err tf__sync_conn_open(int fd, const tf_tcp_config *cfg, uint64_t deadline_ns, int cancel_fd,
                          tf_sync_conn **out, int *os_err);

/* Make a connection that owns the connected, handshaken socket |fd| (already non-blocking,
 * options applied) under the loaded config |cfg|, with no handshake of its own. |peer| is the
 * peer's address from accept (kept for tf_sync_conn_peer); NULL: getpeername now. |x| (NULL:
 * plain TCP) is the transport over fd: a TLS one moves into the connection (x->ctx is cleared).
 *   TF_OK: *out is the connection.  TF_ERR_NOMEM: fd is closed, x released, *out is NULL. */
struct tf__xport;
tf_err tf__sync_conn_wrap(int fd, const tf_tcp_config *cfg, const tf_addr *peer,
                          struct tf__xport *x, tf_sync_conn **out);

/* What a sync server shares with the connections it handed out, which outlive it (so
 * reference-counted): the count of those not yet freed (tf_server_stats.active) and the event
 * callback (tf_sync_server_on_event), which tf_sync_server_free clears. fn and arg under mu; an
 * event is told under mu, so none runs after the server's free has cleared fn. */
typedef struct tf__sync_sink {
    atomic_uint refs;
    atomic_uint_fast64_t live;
    pthread_mutex_t mu;
    tf_sync_event_cb fn;
    void *arg;
} tf__sync_sink;

/* Tell |ev| (any thread; nothing without a callback). */
void tf__sync_sink_tell(tf__sync_sink *k, tf_sync_conn *c, const char *peer, tf_conn_event ev,
                        tf_err err, int os_err);
void tf__sync_sink_unref(tf__sync_sink *k);

/* Count |c| in |k| until it is freed (it takes a reference to k), and tell CONNECTED; its free
 * tells CLOSED. */
void tf__sync_conn_track(tf_sync_conn *c, tf__sync_sink *k);

/* Any thread (tests): the reads the stall relief made on |c| so far (SPEC 9.3). */
unsigned tf__sync_conn_relief_reads(const tf_sync_conn *c);

/* A reason for humans: strerror(os_err) when there is one, else tf_strerror(err); written
 * into buf (thread-safe), which is returned. */
const char *tf__sync_reason(tf_err err, int os_err, char *buf, size_t len);

/* Test introspection, any thread: rounds of the accept loops so far (a poll wake-up or a
 * back-off pause each), so a test can tell a back-off from a busy loop without timing. */
uint64_t tf__sync_server_rounds(const tf_sync_server *s);
/* Test introspection, any thread: handshakes accept has started and not yet finished (kept
 * between accept calls; at most TF_SYNC_HANDSHAKES). */
size_t tf__sync_server_pending(const tf_sync_server *s);

#endif /* TCPFRAME_IO_SYNC_INTERNAL_H */
