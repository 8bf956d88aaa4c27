/* tests/tu_async.h -- the fixture of the async connection tests (tests/tu_async.c): a started
 * loop with an fd count taken, connection pairs over socketpairs, waiting on futures. Failures
 * are cmocka assertions: call these on the test's main thread only. */
#ifndef TCPFRAME_TU_ASYNC_H
#define TCPFRAME_TU_ASYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tcpframe/async.h"

typedef struct tu_fx {
    tf_evb *evb;
    int fds0;
} tu_fx;

/* Count fds, create and start a loop. */
void tu_fx_start(tu_fx *f);
/* Free the loop and check that no fd leaked. */
void tu_fx_end(tu_fx *f);
/* tf_tcp_config_init's defaults. */
tf_tcp_config tu_cfg_default(void);
/* Two async connections over a socketpair (both run the handshake unless cfg says not). */
void tu_pair_async(tu_fx *f, const tf_tcp_config *cfg, tf_async_conn **a, tf_async_conn **b);
/* An async connection and the raw socket at the other end (*raw: the test closes it). */
tf_async_conn *tu_pair_raw(tu_fx *f, const tf_tcp_config *cfg, int *raw);
/* The same, and *mine: the connection's own fd (the library's: to recognise it in a hook). */
tf_async_conn *tu_pair_raw_fds(tu_fx *f, const tf_tcp_config *cfg, int *raw, int *mine);
/* Return once every event that was ready before the call has been handled by the loop (two
 * round trips: the first ends the epoll batch the data arrived in, the second runs after it). */
void tu_loop_settle(tf_evb *evb);
/* Wait for |fu|, read its result (size, owned pointer), free it; returns its tf_err. */
tf_err tu_fut_result(tf_future *fu, size_t *size, void **owned);
/* Send one message and wait for its future. */
tf_err tu_send_wait(tf_async_conn *c, const void *buf, size_t len);

/* A client that sends one TU_BIG-byte message on a raw socket (a thread's body: tu_send_big):
 * its first byte is id, then three zero bytes, then tu_fill(id); ok says whether it was all
 * written. */
enum { TU_BIG = 4 << 20 };
typedef struct tu_bigsend {
    int fd;
    uint8_t id;
    bool ok;
} tu_bigsend;
void *tu_send_big(void *arg);

#endif /* TCPFRAME_TU_ASYNC_H */
