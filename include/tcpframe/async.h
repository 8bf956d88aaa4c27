/* tcpframe/async.h -- TCP on an event loop (evbase.h): connection, server and client
 * (SPEC.md section 9.7).
 *
 * Threads. All state of an async object belongs to its loop's thread. Every function below may
 * be called from any thread unless it says otherwise: on the loop thread it acts at once
 * (an operation is tried on the socket immediately, and registers interest only if it would
 * block: a small message completes without an epoll round trip); from another thread it costs
 * at most one hand-off to the loop (tf_evb_dispatch). Completion callbacks always run on the
 * loop thread. Refusals that need no socket (bad arguments, TOO_LARGE, BUSY at the queue bound,
 * a poisoned, closed, aborted or freed connection) are returned by the call itself on any
 * thread. Each connection has one admission point (SPEC 9.7): a call that returned TF_OK is
 * accepted -- a later close flushes it, abort and free cancel it, a stop fails it -- and two
 * calls racing on two threads are decided one after the other.
 *
 * Two completion styles for every operation:
 *   - a future (future.h): wait from any thread, or tf_future_then on the loop. One allocation
 *     per operation (the promise and the operation record).
 *   - a callback with a caller-owned tf_async_op record: no allocation per operation. The op is
 *     the caller's until its callback has run; the callback runs exactly once. On the loop
 *     thread it may run before the submitting call returns (the operation completed at once),
 *     but never nested inside another callback of the same connection: work submitted from a
 *     callback is queued and run when that callback returns.
 *
 * Order. Sends go out in submission order (a queue, one sendmsg of up to IOV_MAX pieces across
 * frames); receives complete in submission order. Submissions from one thread keep that
 * thread's order; from several threads, the order in which the loop took them.
 *
 * Poison. A protocol error (a length over max_recv_len, BUFFER_TOO_SMALL) or an I/O failure
 * (incl. the peer's close inside a frame: TRUNCATED) fails the connection for good: the socket
 * is shut down, every queued operation fails with the reason (and os_err), later submissions
 * fail at once. A TIMEOUT poisons only if a byte of that frame had moved.
 *
 * Half-close. The peer's clean EOF between messages ends the receive direction only: pending and
 * later receives fail with CLOSED, the stream ends with CLOSED, but queued and later sends go on
 * until the write side itself fails (EPIPE, a reset: IO) or the connection is closed -- so a
 * peer that sends its requests, shuts down its write side and reads the replies gets every one.
 * tf_async_conn_error stays TF_OK meanwhile; a close afterwards flushes and succeeds at once.
 *
 * Lifetime. tf_async_conn_free may be called from any thread, with operations in flight, and
 * from inside the connection's own callbacks: every pending operation completes exactly once
 * (futures with TF_ERR_CANCELLED; callbacks with CANCELLED -- the stream's end call too, even
 * when free is called from that stream's own callback --, inside the free call when it is made
 * on the loop thread or before it returns elsewhere); after it returns on another thread no
 * callback of the connection runs any more; the fd is closed exactly once, after the loop let
 * go of it. When the loop stops, every operation in flight completes with TF_ERR_SHUTDOWN and
 * the connection must still be freed -- before tf_evb_free of its loop.
 * From the thread of ANOTHER loop, tf_async_conn_free, tf_async_server_shutdown / _free and
 * tf_async_client_cancel / _free block that loop until the object's own loop has run the
 * teardown (the same guarantee as from any thread); two loops doing this to each other's objects
 * at the same moment would deadlock: hand such a free to the object's loop with
 * tf_evb_dispatch instead. Like tf_evb_dispatch_and_wait, on a loop that has never run they wait
 * until it runs or is stopped (tf_evb_stop on a loop that never ran drains it at once).
 */
#ifndef TCPFRAME_ASYNC_H
#define TCPFRAME_ASYNC_H

#include <stddef.h>
#include <stdint.h>

#include "tcpframe/conn.h"
#include "tcpframe/err.h"
#include "tcpframe/evbase.h"
#include "tcpframe/export.h"
#include "tcpframe/future.h"
#include "tcpframe/obs.h"
#include "tcpframe/proto.h"
#include "tcpframe/tcp.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tf_async_conn tf_async_conn;
typedef struct tf_async_server tf_async_server;
typedef struct tf_async_client tf_async_client;
typedef struct tf_async_op tf_async_op;

/* An operation's completion, on the loop thread. err is TF_OK or the reason (os_err beside it).
 * Send: data/len are the payload that was passed. Receive: the message (len bytes at data;
 * data NULL for an empty message); for a span receive data is the caller's span, for an
 * allocating receive data was malloc()'d and now belongs to the callback (free() it). */
typedef void (*tf_async_cb)(tf_async_conn *c, tf_async_op *op, tf_err err, int os_err,
                            uint8_t *data, size_t len, void *arg);

/* The record of one callback-style operation. Allocate it anywhere (zeroing not required); it is
 * the library's from submission until its callback starts, then the caller's again (the callback
 * may reuse it for the next operation). Fields are private. */
struct tf_async_op {
    tf_async_op *next;      /* private */
    tf_async_conn *conn;    /* private */
    int kind;               /* private */
    uint8_t *buf;           /* private: payload or receive span */
    size_t len;             /* private: payload length or span capacity */
    tf_tx tx;               /* private: send progress */
    tf_dtor dtor;           /* private: owned send buffer's destructor */
    tf_async_cb cb;         /* private */
    void *arg;              /* private */
    tf_promise *promise;    /* private: future style */
    tf_evb_timer *timer;    /* private: per-operation timeout */
    int64_t timeout_ms;     /* private */
};

/* Message-stream mode: called once per received message, in order, with a view of the payload
 * that is valid only during the call (no copy when the frame sits in the read buffer). After
 * the last message the stream ends with one call with err != TF_OK (CLOSED when the peer closed
 * between messages, TRUNCATED, TOO_LARGE, IO, CANCELLED on free, SHUTDOWN) and data NULL. */
typedef void (*tf_async_msg_cb)(tf_async_conn *c, tf_err err, int os_err, const uint8_t *data,
                                size_t len, void *arg);

/* Called on the loop thread when the send queue, after a send was refused with BUSY, has
 * drained to cfg->send_low_water bytes or below. */
typedef void (*tf_async_writable_cb)(tf_async_conn *c, void *arg);

/* The end notification: called once on the loop thread when the connection is over -- it
 * failed (I/O error, reset, protocol error, TRUNCATED, a TIMEOUT that poisoned, NOMEM), was
 * aborted (CANCELLED), its close finished (CLOSED, TRUNCATED or TIMEOUT: see
 * tf_async_conn_close) or its loop stopped (SHUTDOWN) -- after every pending operation has
 * completed with that reason. Never after tf_async_conn_free was called, and never for a
 * half-close (the peer's clean EOF: SPEC 9.7), which ends only the receive direction. It may free
 * the connection. */
typedef void (*tf_async_end_cb)(tf_async_conn *c, tf_err err, int os_err, void *arg);

/* ---------------------------------------------------------------- connection */

/* Take over a connected stream socket |fd| on |evb| (e.g. a socketpair end, or a socket
 * connected by other means). fd is set non-blocking; cfg's socket options are applied where the
 * socket has them; with cfg->handshake the magic exchange runs on the loop under
 * cfg->handshake_timeout_ms, and *out is ready for use at once (operations queue behind the
 * handshake; a failed handshake poisons with its reason). The buffer sizes (sndbuf, rcvbuf) are
 * applied to a socket that is connected already: shrinking SO_RCVBUF below what the connection
 * has advertised can stall a TCP connection (until TCP_USER_TIMEOUT): set small buffers on the
 * socket before it connects, and pass TF_UNSET here.
 *   TF_OK                    *out owns fd
 *   TF_ERR_INVALID_ARGUMENT  NULL, fd < 0, bad cfg (msg names the field); fd not closed
 *   TF_ERR_SHUTDOWN          the loop is stopping; fd not closed
 *   TF_ERR_NOMEM             fd not closed */
TF_API tf_err tf_async_conn_from_fd(tf_evb *evb, int fd, const tf_tcp_config *cfg,
                                    tf_async_conn **out, tf_errmsg *msg);

/* Send one message; |buf| is borrowed until completion (zero-copy). timeout_ms: -1 none.
 * Future: its size is len on success. Callback: op as described above.
 *   TF_OK                    submitted: the outcome comes through the future / callback
 *   TF_ERR_TOO_LARGE         len > cfg->max_send_len (nothing queued, not poisoned)
 *   TF_ERR_BUSY              the send queue is at its bound (send_queue_bytes/_msgs); see
 *                            tf_async_conn_on_writable
 *   TF_ERR_BAD_STATE         the connection is closing (tf_async_conn_close was called)
 *   the poison reason        the connection had failed (os_err via tf_async_conn_error)
 *   TF_ERR_SHUTDOWN          the loop is stopping
 *   TF_ERR_INVALID_ARGUMENT  NULL c/out/op/cb, buf NULL with len > 0
 *   TF_ERR_NOMEM             (future style) no memory for the operation
 * On a refusal nothing was queued, *out is NULL and the callback will not run. */
TF_API tf_err tf_async_conn_send(tf_async_conn *c, const void *buf, size_t len, int64_t timeout_ms,
                                 tf_future **out);
TF_API tf_err tf_async_conn_send_op(tf_async_conn *c, tf_async_op *op, const void *buf, size_t len,
                                    int64_t timeout_ms, tf_async_cb cb, void *arg);

/* Send an owned buffer: the library calls dtor(buf) exactly once when it is done with it
 * (sent or failed), on the loop thread -- or, if the call is refused, never (buf stays the
 * caller's). Returns as tf_async_conn_send. */
TF_API tf_err tf_async_conn_send_owned(tf_async_conn *c, void *buf, size_t len, tf_dtor dtor,
                                       int64_t timeout_ms, tf_future **out);

/* Receive one message into |buf| (|cap| bytes, borrowed until completion). The future's size is
 * the message length. A message longer than cap fails with BUFFER_TOO_SMALL and poisons.
 *   TF_OK, or a refusal as for send (BUSY: recv_queue_ops pending receives; BAD_STATE: the
 *   connection is in message-stream mode). */
TF_API tf_err tf_async_conn_recv(tf_async_conn *c, void *buf, size_t cap, int64_t timeout_ms,
                                 tf_future **out);
TF_API tf_err tf_async_conn_recv_op(tf_async_conn *c, tf_async_op *op, void *buf, size_t cap,
                                    int64_t timeout_ms, tf_async_cb cb, void *arg);

/* Receive one message into a buffer allocated with malloc() of its exact length, after the max
 * check. Future: tf_future_get hands it over (free() it; NULL for an empty message).
 * Callback: data is the callback's. NOMEM poisons. Returns as tf_async_conn_recv. */
TF_API tf_err tf_async_conn_recv_alloc(tf_async_conn *c, int64_t timeout_ms, tf_future **out);
TF_API tf_err tf_async_conn_recv_alloc_op(tf_async_conn *c, tf_async_op *op, int64_t timeout_ms,
                                          tf_async_cb cb, void *arg);

/* Message-stream mode: cb(c, ...) for every message from now on (see tf_async_msg_cb);
 * cb NULL stops the stream (no end call; unread data stays in the socket). Once the call has
 * returned (off the loop thread: once the loop applied it, which is before any later
 * submission's effect), a stopped callback is never called again: a frame it had half read
 * goes to the next consumer whole.
 *   TF_OK; TF_ERR_BAD_STATE (receives are pending, or a stream is already on); the poison
 *   reason; TF_ERR_SHUTDOWN; TF_ERR_INVALID_ARGUMENT. */
TF_API tf_err tf_async_conn_stream(tf_async_conn *c, tf_async_msg_cb cb, void *arg);

/* The writable callback (see tf_async_writable_cb); NULL removes it. TF_OK; INVALID_ARGUMENT;
 * SHUTDOWN. */
TF_API tf_err tf_async_conn_on_writable(tf_async_conn *c, tf_async_writable_cb cb, void *arg);

/* The end notification (see tf_async_end_cb); NULL removes it. Set on a connection that is over
 * already, it runs at once (on the loop thread) with the reason. A connection that waits for
 * nothing (a paused stream, a full send queue waiting for the writable callback) learns of its
 * failure only through this.
 *   TF_OK
 *   TF_ERR_SHUTDOWN          the loop is stopping (it runs with SHUTDOWN if set before)
 *   TF_ERR_NOMEM             off the loop thread, no memory for the hand-off
 *   TF_ERR_INVALID_ARGUMENT  c NULL */
TF_API tf_err tf_async_conn_on_end(tf_async_conn *c, tf_async_end_cb cb, void *arg);

/* Graceful close: no new sends (BAD_STATE); the send queue is flushed, then our side is shut
 * down (SHUT_WR), then the connection waits up to cfg->linger_ms for the peer to close (pending
 * receives still complete; unclaimed incoming data is discarded), then the socket is closed.
 * Every send accepted before this call (on any thread) is flushed first.
 * The future: TF_OK (flushed, peer closed -- even inside a frame), TF_ERR_TIMEOUT (flushed, the
 * peer did not close within the linger time), or the reason the flush failed. Receives still
 * pending at the end fail with CLOSED (the peer closed between messages), TRUNCATED (inside
 * one) or TIMEOUT (it never closed); tf_async_conn_error says the same. On a connection that
 * had already failed, the socket is released at once and the future gives that reason (the
 * peer's clean close between messages is no failure: a close after it flushes and succeeds at
 * once, see Half-close -- over TLS once our close_notify is out: a socket too full for it holds
 * it, and if it cannot go within the linger the close gives TIMEOUT). The connection must still
 * be freed.
 *   TF_OK; TF_ERR_BAD_STATE (close already called); TF_ERR_SHUTDOWN; TF_ERR_NOMEM;
 *   TF_ERR_INVALID_ARGUMENT. */
TF_API tf_err tf_async_conn_close(tf_async_conn *c, tf_future **out);

/* Abort: fail every queued operation with TF_ERR_CANCELLED now (called inside a callback of the
 * connection: as soon as that callback returns) and reset the connection (RST: SO_LINGER 0).
 * Submissions made after this returns fail with CANCELLED, also on a connection that had
 * failed for another reason first (tf_async_conn_error says CANCELLED once the loop ran the
 * abort). TF_OK; TF_ERR_INVALID_ARGUMENT. */
TF_API tf_err tf_async_conn_abort(tf_async_conn *c);

/* Free the connection (see Lifetime above). NULL is a no-op. */
TF_API void tf_async_conn_free(tf_async_conn *c);

/* The poison reason (TF_OK while healthy) and its os_err (any thread). */
TF_API tf_err tf_async_conn_error(const tf_async_conn *c, int *os_err);

/* The peer's address as "host:port" ("unix:/path", "unix:@name", or "unix:" for an unnamed
 * Unix-domain peer: a client that did not bind, a socketpair; tcp.h), taken when the
 * connection was made (any thread, also after the socket was closed).
 *   TF_OK
 *   TF_ERR_IO                the socket had no peer address then (e.g. getpeername failed)
 *   TF_ERR_INVALID_ARGUMENT  no address family tcpframe formats, or NULL
 *   TF_ERR_BUFFER_TOO_SMALL  buf "" (if len > 0): TF_ADDRSTR_LEN always suffices */
TF_API tf_err tf_async_conn_peer(const tf_async_conn *c, char *buf, size_t len);

/* The peer's credentials on a Unix-domain connection (tcp.h, SPEC 9.9), taken when the
 * connection was made (any thread, also after the socket was closed).
 *   TF_OK                    *out filled
 *   TF_ERR_INVALID_ARGUMENT  c or out NULL, or not a Unix-domain connection (TCP carries no
 *                            credentials); *out zeroed
 *   TF_ERR_IO                getsockopt SO_PEERCRED failed then */
TF_API tf_err tf_async_conn_peer_cred(const tf_async_conn *c, tf_peer_cred *out);

/* The loop this connection lives on. */
TF_API tf_evb *tf_async_conn_evb(const tf_async_conn *c);

/* The generic view (conn.h); never NULL for a non-NULL c. */
TF_API tf_conn *tf_async_conn_base(tf_async_conn *c);

/* A snapshot of the connection's statistics (obs.h, SPEC 9.10), from any thread, also after it
 * failed or closed (until it is freed). Set out->size to sizeof(tf_conn_stats) first. The
 * queue figures (queued_msgs, queued_bytes, recv_pending) and the pause are read together
 * under the connection's admission lock; the message counters are the loop thread's, each
 * exact when read (a message counts once its completion is being called).
 *   TF_OK
 *   TF_ERR_INVALID_ARGUMENT  c or out NULL, or out->size < 4 */
TF_API tf_err tf_async_conn_stats(tf_async_conn *c, tf_conn_stats *out);

/* A connection event of a server's or client's connection (obs.h): |ev|, the reason (TF_OK for
 * CONNECTED) and its os_err, on the loop thread. |c| may be read in the callback (its peer,
 * tf_async_conn_stats, its error) but not freed there, nor given operations. */
typedef void (*tf_async_event_cb)(tf_async_conn *c, tf_conn_event ev, tf_err err, int os_err,
                                  void *arg);

/* ---------------------------------------------------------------- server */

/* A connection accepted and handshaken, handed to the callback (which owns it now). Runs on
 * the connection's loop thread (tf_async_conn_evb: with several loops, see
 * tf_async_server_add_loop, callbacks for connections on different loops may run at the same
 * time). Once the server is shut down it is not called. */
typedef void (*tf_async_accept_cb)(tf_async_server *s, tf_async_conn *c, void *arg);
/* A client dropped in the handshake (wrong magic, early close, silent past the deadline): on
 * the thread of the loop its handshake ran on; or at once because the server is at
 * cfg->max_conns (BUSY) or its uid is not allowed (PEER_DENIED: cfg->unix_peer_uid /
 * unix_peer_same_uid, SPEC 9.9): on the server's loop thread. Its address, the reason and
 * os_err. */
typedef void (*tf_async_reject_cb)(tf_async_server *s, const char *peer, tf_err err, int os_err,
                                   void *arg);

/* A server on |evb|, not yet listening. TF_OK; INVALID_ARGUMENT; NOMEM. */
TF_API tf_err tf_async_server_new(tf_evb *evb, tf_async_server **out);

/* Bind and listen (as tf_sync_server_init: also "unix:/path" and "unix:@name", SPEC 9.9), then
 * watch the listen socket on the loop: accept until EAGAIN; each new socket's handshake runs on
 * the loop without blocking it (non-blocking I/O, a deadline timer per client), so silent
 * clients never delay a good one. Handshaken
 * connections go to the accept callback, else to pending tf_async_server_accept futures in
 * order, else wait in a queue of at most cfg->accept_queue (when full, the listen socket is not
 * watched: the kernel backlog is the backpressure). EMFILE/ENFILE: the listen socket rests for
 * a back-off on a timer (no busy loop), then accepting resumes.
 *   TF_OK; TF_ERR_BAD_ADDRESS; TF_ERR_INVALID_ARGUMENT (bad cfg: msg); TF_ERR_IO (bind, listen:
 *   msg names it); TF_ERR_BAD_STATE (double init); TF_ERR_SHUTDOWN (server or loop shut). */
TF_API tf_err tf_async_server_init(tf_async_server *s, const char *addr, const tf_tcp_config *cfg,
                                   tf_errmsg *msg);

/* Start the server on |fd|, a socket that is already bound and listening (inherited, passed
 * by systemd socket activation, ...); otherwise as tf_async_server_init. fd is taken over as by
 * tf_sync_server_init_fd: the server owns it from this call on and closes it at once if the
 * call fails; non-blocking and close-on-exec; cfg's options applied; listen() again only with
 * cfg->listen_backlog set.
 *   TF_OK
 *   TF_ERR_INVALID_ARGUMENT  s NULL, fd < 0, bad cfg (msg), or fd is not a listening IPv4, IPv6
 *                            or Unix-domain stream socket (msg says what it is instead; its
 *                            path is never removed), or a TCP one with the uid rule
 *   TF_ERR_IO                fcntl, an option or listen() failed (msg names it)
 *   TF_ERR_BAD_STATE         already initialised; TF_ERR_SHUTDOWN: server or loop shut */
TF_API tf_err tf_async_server_init_fd(tf_async_server *s, int fd, const tf_tcp_config *cfg,
                                      tf_errmsg *msg);

/* Callbacks; set them before init (or from the loop thread). cb NULL removes one. */
TF_API void tf_async_server_on_accept(tf_async_server *s, tf_async_accept_cb cb, void *arg);
TF_API void tf_async_server_on_reject(tf_async_server *s, tf_async_reject_cb cb, void *arg);

/* Spread the server's connections over one more loop (SPEC 9.7 "Several loops"); call before
 * init, on the thread that calls init. |evb| is borrowed: it must outlive every connection
 * placed on it. The server's own loop accepts; each new client goes to the loop (its own or an
 * added one) with the fewest of the server's connections now, and its connection lives there
 * from the handshake on: its callbacks, the accept callback and an accept future's resolution
 * run on that loop's thread. cfg->max_conns, cfg->recv_mem_budget and tf_async_server_active
 * count over all loops. Freeing such a connection from another loop's thread blocks that loop
 * (see Lifetime above).
 *   TF_OK
 *   TF_ERR_INVALID_ARGUMENT  s or evb NULL, or evb is one of the server's loops already
 *   TF_ERR_BAD_STATE         init was called (the loops are fixed from then on)
 *   TF_ERR_NOMEM */
TF_API tf_err tf_async_server_add_loop(tf_async_server *s, tf_evb *evb);

/* The next handshaken connection as a future (owned tf_async_conn *, destructor
 * tf_async_conn_free: take it with tf_future_get). Pending accepts are served in order.
 *   TF_OK; TF_ERR_BAD_STATE (not initialised; or an accept callback is set); TF_ERR_SHUTDOWN;
 *   TF_ERR_NOMEM; TF_ERR_INVALID_ARGUMENT. The future fails with SHUTDOWN at shutdown. */
TF_API tf_err tf_async_server_accept(tf_async_server *s, tf_future **out);

/* The bound address with the real port. TF_OK; BAD_STATE (not listening); BUFFER_TOO_SMALL. */
TF_API tf_err tf_async_server_addr(const tf_async_server *s, char *buf, size_t len);

/* Clients dropped so far (any thread): in the handshake, over cfg->max_conns, or of a uid the
 * config does not allow. */
TF_API uint64_t tf_async_server_rejected(const tf_async_server *s);

/* The server's connections now (any thread): in the handshake, queued, or handed out and not
 * yet freed -- what cfg->max_conns bounds. 0 for NULL. */
TF_API uint64_t tf_async_server_active(const tf_async_server *s);

/* A snapshot of the server's statistics (obs.h, SPEC 9.10), any thread. Set out->size to
 * sizeof(tf_server_stats) first. accepted counts handshaken clients; rejected and its reasons
 * count what tf_async_server_rejected does (rej_busy: over cfg->max_conns); active is
 * tf_async_server_active; accept_rests counts the rests of the listen socket.
 *   TF_OK
 *   TF_ERR_INVALID_ARGUMENT  s or out NULL, or out->size < 4 */
TF_API tf_err tf_async_server_stats(const tf_async_server *s, tf_server_stats *out);

/* The connection events of the server's clients (see tf_async_event_cb), on the thread of the
 * client's loop (with several loops, events of clients on different loops may run at the same
 * time); cb NULL removes it. Any thread; an event already under way may still run once with the
 * callback it started with. Order per client:
 * TF_CONN_CONNECTED when its handshake completed, before the accept callback (or the accept
 * future, or the ready queue) gets the connection; or TF_CONN_HANDSHAKE_FAILED with the reason,
 * before the reject callback (a client turned away at once -- over cfg->max_conns, or by the
 * Unix uid rule -- has no connection and no event: it is counted under its reason, logged and
 * given to the reject callback). Then, for a connected one,
 * TF_CONN_CLOSED once, when it fails, its close ends, it is aborted (CANCELLED), its loop stops
 * (SHUTDOWN) or it is freed while healthy (CANCELLED, inside the free): before its pending
 * operations complete with that reason and before its end callback (tf_async_conn_on_end). A
 * half-close is no CLOSED. No event follows tf_async_server_shutdown (it waits for one under
 * way, unless called inside it).
 *   TF_OK; TF_ERR_INVALID_ARGUMENT (s NULL). */
TF_API tf_err tf_async_server_on_event(tf_async_server *s, tf_async_event_cb cb, void *arg);

/* The receive memory of the server's connections (any thread; SPEC 9.7 "Receive memory"):
 * bytes of partial messages held now, the most held at once, and how many times a connection
 * had to wait because cfg->recv_mem_budget was spent. NULL outputs are skipped.
 *   TF_OK; TF_ERR_INVALID_ARGUMENT (s NULL). */
TF_API tf_err tf_async_server_mem_use(const tf_async_server *s, size_t *used, size_t *peak,
                                      uint64_t *waits);

/* Stop (any thread, idempotent): pending accepts resolve with SHUTDOWN, handshakes in progress

 * and unclaimed connections are closed (on every loop of the server), the listen socket is
 * closed once (and the socket file init bound removed, if the path still is that file: SPEC
 * 9.9). It returns when that is done and no accept or reject callback runs any more on any
 * loop -- except one called inside such a callback, which does not wait for the others (with
 * several loops, a callback that blocks on the caller's loop would wait for it forever).
 * Connections handed out are the caller's and stay open.
 *   TF_OK; TF_ERR_INVALID_ARGUMENT. */
TF_API tf_err tf_async_server_shutdown(tf_async_server *s);

/* Shut down and free. Any thread but never inside the server's own callbacks. NULL: no-op.
 * Like tf_evb_dispatch_and_wait, on a loop that has never run it waits for the loop to run or
 * be stopped (tf_evb_stop on a loop that never ran drains it on the calling thread). */
TF_API void tf_async_server_free(tf_async_server *s);

/* ---------------------------------------------------------------- client (connect) */

/* A connector on |evb| with |cfg| (copied; NULL: defaults).
 *   TF_OK; TF_ERR_INVALID_ARGUMENT (msg names a bad cfg field); TF_ERR_NOMEM. */
TF_API tf_err tf_async_client_new(tf_evb *evb, const tf_tcp_config *cfg, tf_async_client **out,
                                  tf_errmsg *msg);

/* Connect to |addr|: non-blocking connects to each resolved address in turn, each attempt and
 * the whole bounded by cfg->connect_timeout_ms, retryable failures retried up to
 * cfg->connect_retries times with capped exponential back-off and jitter on loop timers, then
 * the handshake on the loop. Names are never resolved on the loop thread (called there with a
 * name, the resolution runs on a short-lived thread of its own). The future resolves to an
 * owned tf_async_conn * on the client's loop (destructor tf_async_conn_free), or the reason:
 * IO with os_err (the last attempt's: ECONNREFUSED, ...), TIMEOUT, BAD_ADDRESS (a name that
 * does not resolve), BAD_MAGIC / CLOSED / TRUNCATED (handshake), CANCELLED, SHUTDOWN.
 *   TF_OK; TF_ERR_BAD_ADDRESS (does not parse: msg quotes it); TF_ERR_SHUTDOWN;
 *   TF_ERR_NOMEM; TF_ERR_INVALID_ARGUMENT. */
TF_API tf_err tf_async_client_connect(tf_async_client *cl, const char *addr, tf_future **out,
                                      tf_errmsg *msg);

/* The connection events of the client's connects (see tf_async_event_cb), on the loop thread;
 * cb NULL removes it. Any thread. Per connect:
 * TF_CONN_CONNECTED when the handshake completed, before the future resolves to the
 * connection; or TF_CONN_HANDSHAKE_FAILED (BAD_MAGIC, CLOSED, TRUNCATED, TIMEOUT, IO) before
 * the future fails (a connect that never reached the handshake has no event). Then
 * TF_CONN_CLOSED as for tf_async_server_on_event. No event follows tf_async_client_free.
 *   TF_OK; TF_ERR_INVALID_ARGUMENT (cl NULL). */
TF_API tf_err tf_async_client_on_event(tf_async_client *cl, tf_async_event_cb cb, void *arg);

/* Cancel every connect in flight: their futures resolve with CANCELLED (sockets closed). Any
 * thread. TF_OK; TF_ERR_INVALID_ARGUMENT. */
TF_API tf_err tf_async_client_cancel(tf_async_client *cl);

/* Cancel and free. Any thread but not inside a then-callback of its own futures. NULL: no-op. */
TF_API void tf_async_client_free(tf_async_client *cl);

#ifdef __cplusplus
}
#endif
#endif /* TCPFRAME_ASYNC_H */
