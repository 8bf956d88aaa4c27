/* io/async_internal.h -- the async connection's state, shared by async_conn.c, async_server.c
 * and async_client.c; not installed. */
#ifndef TCPFRAME_IO_ASYNC_INTERNAL_H
#define TCPFRAME_IO_ASYNC_INTERNAL_H


#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "internal.h"
#include "obs_internal.h"
#include "tcpframe/async.h"
#include "tcpframe/fdio.h"
#include "xport.h"

/* What the connections of one server share (every server has one): the live count for
 * cfg.max_conns, and the receive-memory budget (cfg.recv_mem_budget, else unbounded; SPEC 9.7
 * "Receive memory"): the bytes of the partial messages they are growing. When it is spent a
 * connection that needs more stops reading until memory frees -- except one at a time (the
 * overdraft), which may finish its message past the limit, so the connections can never all wait
 * on each other. Any thread, under mu. */
typedef struct tf__mem_budget {
    pthread_mutex_t mu;
    size_t limit, used, peak;
    uint64_t waits;              /* times a connection had to wait */
    tf_async_conn *overdraft;    /* the one connection allowed past the limit now, or NULL */
    tf_async_conn *waiters;      /* waiting for memory (each holds a reference) */
    atomic_uint refs;            /* the server's and one per connection */
    atomic_size_t live;          /* the server's connections not yet freed (cfg.max_conns) */
    /* The server's loops (SPEC 9.7 "Several loops"): fixed before its first connection. */
    size_t nloops;
    tf_evb **loops;
    atomic_size_t *loop_live;    /* the server's connections on loops[i] not yet freed */
} tf__mem_budget;

tf_err tf__mem_budget_new(size_t limit, tf__mem_budget **out);
void tf__mem_budget_unref(tf__mem_budget *b);
/* Set the loops the server spreads its connections over (before its first connection): their
 * counters start at 0. TF_OK; NOMEM (the old set is kept). */
tf_err tf__mem_budget_set_loops(tf__mem_budget *b, tf_evb *const *loops, size_t n);
/* A connection of the server, on |evb|, was freed: the live counts fall (any thread). */
void tf__mem_budget_gone(tf__mem_budget *b, tf_evb *evb);
/* Its use (any thread): bytes now, the most at once, and the waits so far. */
void tf__mem_budget_use(tf__mem_budget *b, size_t *used, size_t *peak, uint64_t *waits);

/* Called on the loop thread once the handshake of a connection made by tf__async_conn_new
 * finished: err TF_OK (ready) or the reason it failed (the connection is poisoned then). */
typedef void (*tf__async_ready_fn)(tf_async_conn *c, tf_err err, int os_err, void *arg);

/* Who touches what (the table of SPEC 9.7, "Ownership"):
 *   immutable after creation (any thread): base, evb, cfg, peer, peer_rc, cred, cred_rc
 *   atomics (any thread reads; the loop writes err/os_err): refs, err, os_err
 *   the admission point, under |mu| (any thread): closing .. in_tail, and the statistics'
 *   pause (st_paused .. st_pauses)
 *   statistics written by the loop thread, read by any (relaxed): st_msgs_sent .. st_bytes_recv
 *   everything after "loop thread only": the loop thread (or the freeing thread once the loop
 *   has stopped for good). */
struct tf_async_conn {
    tf_conn base; /* first: the generic view */
    tf_evb *evb;
    tf_tcp_config cfg;
    char peer[TF_ADDRSTR_LEN];   /* the peer's address, taken at creation */
    tf_err peer_rc;              /* why peer is empty (TF_OK when it is set) */
    tf_peer_cred cred;           /* SO_PEERCRED, taken at creation (Unix-domain sockets) */
    tf_err cred_rc;              /* TF_OK when cred is set (INVALID_ARGUMENT: not Unix) */
    atomic_uint refs;            /* owner 1 + one per task queued on the loop */
    _Atomic int err;             /* poison reason (tf_err), 0 while healthy */
    _Atomic int os_err;
    _Atomic int rx_err;          /* the receive direction's end (CLOSED after a clean EOF; SPEC
                                  * 9.7 "Half-close"), 0 while open; sends go on */
    /* The admission point (under mu, any thread): one lock decides every submission, counts it
     * and hands it to the loop, so "accepted" (the call returned TF_OK) and "the loop will see
     * it" are one step. Sends, receives, settings and close queue on the inbox in admission
     * order; one loop task (inbox_queued) takes the whole inbox. */
    pthread_mutex_t mu;
    bool closing;                /* tf_async_conn_close accepted */
    bool freeing;                /* tf_async_conn_free called */
    bool aborted;                /* tf_async_conn_abort called */
    bool stream_on;              /* message-stream mode (as last set by tf_async_conn_stream) */
    bool wr_wanted;              /* a send was refused with BUSY since the last writable call */
    bool inbox_queued;           /* an inbox task is dispatched and has not taken the inbox */
    size_t sq_bytes;             /* payload bytes of accepted sends not yet completed */
    size_t sq_msgs;              /* accepted sends not yet completed */
    size_t rq_ops;               /* accepted receives not yet completed */
    tf_async_op *in_head, *in_tail; /* accepted on other threads, not yet taken by the loop */
    /* Statistics (SPEC 9.10), under mu too: a pause of sending, from a send refused with BUSY
     * to the drain to send_low_water. */
    bool st_paused;              /* a pause is under way, since st_pause_ns */
    uint64_t st_pause_ns, st_paused_ns, st_pauses;
    /* Statistics written by the loop thread only, read by any (relaxed; tf__stat_add). */
    atomic_uint_fast64_t st_msgs_sent, st_bytes_sent, st_msgs_recv, st_bytes_recv;
    /* loop thread only */
    int fd;
    int phase;
    bool started;                /* start task ran (hook added, first pump) */
    bool dead;                   /* freed: destroy at the outermost leave() */
    bool finalized;
    bool in_pump, repump;
    bool pump_queued;            /* a pump task is dispatched */
    int taking;                  /* nesting of take_inbox: settings are recorded, and their
                                  * effects (deliveries, callbacks, I/O) wait for its end */
    bool abort_pending;          /* aborted inside a callback: nothing more is read, delivered
                                  * or written until the abort task runs */
    bool hup_seen;               /* a hang-up with no error on an errors-only watch: stop
                                  * watching (the next read or write finds the end) */
    bool flushing;               /* close: shut down once the send queue is empty */
    bool drained;                /* the last socket read came back short (or EAGAIN): read
                                  * again only after epoll says so (level-triggered) */
    int depth;                   /* nesting of enter() */
    unsigned interest;           /* TF_EVB_* bits registered now (WATCH_ERRORS: errors only) */
    tf__evb_hook hook;
    tf_fdio fdio;                /* plain TCP: the transport's context */
    tf__xport x;                 /* the transport (io/xport.h); its context is released with the
                                  * connection's memory (conn_unref) */
    tf_hs hs;
    tf_evb_timer *hs_timer, *linger_timer;
    tf_evb_timer *wd_timer;      /* idle / progress watchdog tick (cfg timeouts), or NULL */
    uint64_t last_msg_ns;        /* a message was received or sent (idle_timeout_ms) */
    uint64_t frame_ns;           /* a frame has been under way since (progress_timeout_ms), 0 */
    size_t turn_bytes;           /* read in this turn (io_budget) */
    size_t out_bytes;            /* bytes the socket has taken from us, in all (stall relief) */
    tf_evb_timer *relief_timer;  /* the stall relief's tick (SPEC 9.3), or NULL */
    size_t relief_mark;          /* out_bytes when that tick was armed */
    unsigned relief_ticks;       /* ticks that found the sends stalled (tests) */
    tf__async_ready_fn ready_fn;
    void *ready_arg;
    /* A message grown as its bytes arrive (stream or allocating receive; SPEC 9.7 "Receive
     * memory"): gbuf holds ggot of glen bytes in gcap. */
    bool growing;
    bool gstream;                /* for the stream (else for the head allocating receive) */
    uint8_t *gbuf;
    size_t gcap, glen, ggot;
    tf__mem_budget *budget;      /* the server's, or NULL (unbounded); set before publication */
    size_t bheld;                /* bytes of it this connection holds (under budget->mu) */
    bool bwaiting;               /* on budget->waiters (under budget->mu) */
    bool mem_wait;               /* loop thread: the budget is spent, reading waits for memory */
    tf_async_conn *bnext;        /* next waiter (under budget->mu) */
    tf_async_op *sq_head, *sq_tail;
    tf_async_op *sent_head, *sent_tail; /* sent whole, completion (OK) not yet called */
    tf_async_op *rq_head, *rq_tail;
    tf_rx rx;                    /* a frame cut between reads */
    uint8_t *rx_buf;             /* the target bound to rx: the head span receive's span */
    uint8_t *park;               /* a whole message read for a stream that stopped meanwhile: */
    size_t park_len;             /* the next consumer's first (park NULL: none) */
    bool parked;
    size_t skip;                 /* closing: bytes of a frame nobody wanted still to drop */
    uint8_t *hold;               /* read bytes nobody asked for yet (freed when empty) */
    size_t hold_off, hold_len, hold_cap;
    tf_async_msg_cb stream_cb;
    void *stream_arg;
    tf_async_writable_cb wr_cb;
    void *wr_arg;
    tf_async_end_cb end_cb;      /* the end notification (tf_async_conn_on_end) */
    void *end_arg;
    bool end_told;               /* it ran (once) */
    tf_promise *close_promise;
    bool close_over;             /* the linger ended: close_promise gets close_result */
    tf_err close_result;
    struct tf__evsink *sink;     /* the owner's events (CLOSED) once CONNECTED, or NULL */
};

/* The events of a server or client (tf_async_server_on_event, tf_async_client_on_event),
 * shared with its connections, which outlive it and may run on other loops (a server over
 * several loops): reference-counted; fn and arg under mu, read by a tell and called outside it
 * (counted in telling); the owner's shutdown or free closes it: fn cleared, then it waits until
 * no tell runs (unless it is itself inside one), so no event follows its return. */
typedef struct tf__evsink {
    atomic_uint refs;
    pthread_mutex_t mu;
    pthread_cond_t cv;      /* telling fell to 0 */
    tf_async_event_cb fn;   /* under mu */
    void *arg;              /* under mu */
    unsigned telling;       /* tells running now, under mu */
} tf__evsink;

/* A sink with one reference (the owner's), or NULL (no memory). */
tf__evsink *tf__evsink_new(void);
void tf__evsink_unref(tf__evsink *k);
/* Set the callback (any thread). */
void tf__evsink_set(tf__evsink *k, tf_async_event_cb fn, void *arg);
/* No event from now on: clear the callback and, if |wait|, wait for the tells running now (any
 * thread; a close inside a tell of the same sink does not wait for itself). */
void tf__evsink_close(tf__evsink *k, bool wait);
/* The calling thread is inside a tell of |k|. */
bool tf__evsink_inside(const tf__evsink *k);
/* Tell |ev| about |c| (loop thread; nothing when no callback is set). */
void tf__evsink_tell(tf__evsink *k, tf_async_conn *c, tf_conn_event ev, tf_err err, int os_err);
/* |c| is CONNECTED: it takes a reference to |k| for its CLOSED event, then ev CONNECTED is told
 * (loop thread). */
void tf__evsink_connected(tf__evsink *k, tf_async_conn *c);
/* The CLOSED event of a connection that failed or ended (loop thread; once: it drops c->sink). */
void tf__async_tell_closed(tf_async_conn *c, tf_err err, int os_err);
/* Statistics: a pause of sending begins / ends (under c->mu). */
void tf__async_pause_begin(tf_async_conn *c);
void tf__async_pause_end(tf_async_conn *c);

/* A connection over a connected socket |fd| (already non-blocking, options applied) on |evb|,
 * drawing on |budget| (NULL: none; the connection takes a reference), the server side of its
 * transport's handshake if |server| (TLS; plain TCP does not care): the transport's handshake
 * and the magic (if cfg->handshake) start on the loop; ready_fn (may be NULL) is told when they
 * ended. Callable from any thread. TF_OK; NOMEM; SHUTDOWN; TLS (os_err: OpenSSL's reason). On
 * failure fd is not closed. */
tf_err tf__async_conn_new(tf_evb *evb, int fd, const tf_tcp_config *cfg, tf__mem_budget *budget,
                          bool server, tf__async_ready_fn fn, void *arg, tf_async_conn **out);

/* tf_async_conn_free as a tf_dtor: the destructor of futures that carry a connection. */
void tf__async_conn_dtor(void *p);

/* Test introspection (loop thread only): bytes held for no receiver yet, and the size of the
 * buffer that holds them (0: none allocated). */
size_t tf__async_conn_held(const tf_async_conn *c, size_t *cap);
/* Loop thread (tests): the stall relief's ticks that found no send progress so far; *armed
 * whether the next tick is due. */
unsigned tf__async_conn_relief_ticks(const tf_async_conn *c, bool *armed);

/* Test introspection (any thread): accept4 calls the server made so far. */
uint64_t tf__async_server_accept_calls(const tf_async_server *s);
/* Test introspection (any thread, after init): the server's connections on |evb| now (in the
 * handshake, queued or handed out and not yet freed); 0 for a loop not the server's. */
size_t tf__async_server_loop_live(const tf_async_server *s, const tf_evb *evb);

/* Poison (loop thread): record the reason, shut the socket down, fail everything queued. */
void tf__async_fail(tf_async_conn *c, tf_err err, int os_err);

#endif /* TCPFRAME_IO_ASYNC_INTERNAL_H */
