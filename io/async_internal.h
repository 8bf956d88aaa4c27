/* io/async_internal.h -- the async connection's state, shared by async_conn.c, async_server.c
 * and async_client.c; not installed. */
#ifndef TCPFRAME_IO_ASYNC_INTERNAL_H
#define TCPFRAME_IO_ASYNC_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>

#include "internal.h"
#include "tcpframe/async.h"
#include "tcpframe/fdio.h"

/* Called on the loop thread once the handshake of a connection made by tf__async_conn_new
 * finished: err TF_OK (ready) or the reason it failed (the connection is poisoned then). */
typedef void (*tf__async_ready_fn)(tf_async_conn *c, tf_err err, int os_err, void *arg);

struct tf_async_conn {
    tf_conn base; /* first: the generic view */
    tf_evb *evb;
    tf_tcp_config cfg;
    /* any thread */
    atomic_uint refs;            /* owner 1 + one per task queued on the loop */
    _Atomic int err;             /* poison reason (tf_err), 0 while healthy */
    _Atomic int os_err;
    atomic_bool closing;         /* tf_async_conn_close called */
    atomic_bool freeing;         /* tf_async_conn_free called */
    atomic_bool wr_wanted;       /* a send was refused with BUSY */
    atomic_bool stream_on;       /* message-stream mode (set by tf_async_conn_stream) */
    atomic_size_t sq_bytes;      /* payload bytes of queued sends (incl. in hand-off) */
    atomic_size_t sq_msgs;       /* queued sends */
    atomic_size_t rq_ops;        /* queued receives */
    /* loop thread only */
    int fd;
    int phase;
    bool started;                /* start task ran (hook added, first pump) */
    bool dead;                   /* freed: destroy at the outermost leave() */
    bool finalized;
    bool in_pump, repump;
    bool pump_queued;            /* a pump task is dispatched */
    bool flushing;               /* close: shut down once the send queue is empty */
    bool drained;                /* the last socket read came back short (or EAGAIN): read
                                  * again only after epoll says so (level-triggered) */
    int depth;                   /* nesting of enter() */
    unsigned interest;           /* TF_EVB_* bits registered now */
    tf__evb_hook hook;
    tf_fdio fdio;                /* for the handshake's try-step */
    tf_hs hs;
    tf_evb_timer *hs_timer, *linger_timer;
    tf__async_ready_fn ready_fn;
    void *ready_arg;
    tf_async_op *sq_head, *sq_tail;
    tf_async_op *rq_head, *rq_tail;
    tf_rx rx;                    /* a frame cut between reads */
    uint8_t *rx_buf;             /* the target bound to rx (op span/allocation, stream buffer) */
    bool rx_stream;              /* rx_buf is the stream's own allocation */
    tf_async_msg_cb rx_stream_cb; /* the stream callback the bound frame goes to */
    void *rx_stream_arg;
    uint8_t *hold;               /* read bytes nobody asked for yet */
    size_t hold_off, hold_len, hold_cap;
    tf_async_msg_cb stream_cb;
    void *stream_arg;
    tf_async_writable_cb wr_cb;
    void *wr_arg;
    tf_promise *close_promise;
    tf_promise *close_req;       /* handed from close() to its loop task */
};

/* A connection over a connected socket |fd| (already non-blocking, options applied) on |evb|:
 * the handshake (if cfg->handshake) starts on the loop; ready_fn (may be NULL) is told when it
 * ended. Callable from any thread. TF_OK; NOMEM; SHUTDOWN. On failure fd is not closed. */
tf_err tf__async_conn_new(tf_evb *evb, int fd, const tf_tcp_config *cfg, tf__async_ready_fn fn,
                          void *arg, tf_async_conn **out);

/* tf_async_conn_free as a tf_dtor: the destructor of futures that carry a connection. */
void tf__async_conn_dtor(void *p);

/* Test introspection (any thread): accept4 calls the server made so far. */
uint64_t tf__async_server_accept_calls(const tf_async_server *s);

/* Poison (loop thread): record the reason, shut the socket down, fail everything queued. */
void tf__async_fail(tf_async_conn *c, tf_err err, int os_err);

#endif /* TCPFRAME_IO_ASYNC_INTERNAL_H */
