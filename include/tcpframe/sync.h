/* tcpframe/sync.h -- blocking TCP: connection, server and connect (SPEC.md section 9.6).
 *
 *   tf_sync_server *srv;  tf_sync_server_new(&srv);
 *   tf_sync_server_init(srv, "127.0.0.1:0", NULL, &msg);        // bind + listen
 *   tf_sync_conn *c;      tf_sync_server_accept(srv, &c, NULL, &msg);  // blocks; handshaken
 *   tf_sync_conn_recv(c, buf, sizeof buf, &len, -1);
 *
 *   tf_sync_conn *c;      tf_sync_connect("127.0.0.1:9000", NULL, &c, NULL, &msg);
 *   tf_sync_conn_send(c, "hi", 2, -1);
 *
 * The socket is non-blocking underneath; calls block in poll() with their deadline, so every
 * timeout is real. A timeout argument is in milliseconds, -1 = none. Receives read ahead into a
 * buffer of the connection (TF_SYNC_READAHEAD); tf_sync_conn_sendv writes a batch of messages
 * with one sendmsg.
 *
 * Poison. Any protocol error (TOO_LARGE from the peer, BUFFER_TOO_SMALL, a bad magic) or I/O
 * failure (incl. TRUNCATED, a close inside a frame) makes the connection failed for good: the
 * socket is shut down both ways, and every later send/recv returns the recorded reason at once
 * (and tf_sync_conn_error gives it with its os_err). Refusals that move no byte do not poison:
 * INVALID_ARGUMENT, a send over max_send_len (TOO_LARGE), a TIMEOUT before any byte of the frame
 * moved. A TIMEOUT after part of a frame moved poisons (the stream is out of step).
 *
 * Half-close. A clean close by the peer between messages (CLOSED) is not a failure: it closes
 * the receive direction only. That receive and every later one return CLOSED, while sends go
 * on until the write side itself fails (EPIPE, a reset: IO) or we close. So a request /
 * half-close / reply exchange works in any order: read the requests up to CLOSED, then send the
 * replies (SPEC 9.6).
 *
 * Threads. A connection may be used by one sending thread and one receiving thread at the same
 * time (the two directions share nothing but the fd and the poison, which is atomic); two
 * threads sending at once is not allowed. tf_sync_server_shutdown may be called from any
 * thread, at any time before tf_sync_server_free.
 */
#ifndef TCPFRAME_SYNC_H
#define TCPFRAME_SYNC_H

#include <stddef.h>
#include <stdint.h>

#include "tcpframe/conn.h"
#include "tcpframe/err.h"
#include "tcpframe/export.h"
#include "tcpframe/obs.h"
#include "tcpframe/proto.h"
#include "tcpframe/tcp.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tf_sync_conn tf_sync_conn;
typedef struct tf_sync_server tf_sync_server;

/* The size of a connection's read-ahead buffer (SPEC 9.6): allocated by the first receive that
 * reads through it, freed with the connection. A receive takes the complete messages already
 * read ahead without a syscall; otherwise one read moves as much as the kernel has, up to this
 * size. Without memory for it, receives read exactly what the frame needs. */
#define TF_SYNC_READAHEAD 65536u

/* ---------------------------------------------------------------- connection */

/* Connect to |addr| ("host:port", tcp.h) under |cfg| (NULL: defaults): resolve (may block in
 * the resolver for a name), then for each address a non-blocking connect bounded by
 * cfg->connect_timeout_ms (socket options applied before it); retryable failures (refused,
 * timed out, unreachable, reset, ...) are retried up to cfg->connect_retries times with capped
 * exponential back-off and jitter, all within the connect timeout (when the next pause would
 * end past it, TIMEOUT at once); then the handshake until the earlier of
 * cfg->handshake_timeout_ms from its start and the connect deadline.
 *   TF_OK                    *out is the connection (free it with tf_sync_conn_free)
 *   TF_ERR_BAD_ADDRESS       addr does not parse or resolve (msg quotes it)
 *   TF_ERR_INVALID_ARGUMENT  addr or out NULL, or cfg invalid (msg names the field)
 *   TF_ERR_IO                the retries ran out, or no address failed in a way worth
 *                            retrying (each address is tried in turn): the last attempt's OS
 *                            error in *os_err (msg: "connect ADDR: <strerror> (N attempts)")
 *   TF_ERR_TIMEOUT           the connect timeout ran out (in a connect, before a retry, or in
 *                            the handshake: msg "connect ADDR: ..." / "handshake with ADDR: ...")
 *   TF_ERR_BAD_MAGIC, CLOSED, TRUNCATED   the handshake failed (msg "handshake with ADDR: ...")
 *   TF_ERR_NOMEM
 * *os_err (if non-NULL) gets the OS error number of a failure (for TIMEOUT: the last failed
 * attempt's, 0 if none), else 0. On failure *out is NULL and no fd is left open. */
TF_API tf_err tf_sync_connect(const char *addr, const tf_tcp_config *cfg, tf_sync_conn **out,
                              int *os_err, tf_errmsg *msg);

/* Take over an already connected stream socket |fd| (e.g. one end of a socketpair): set it
 * non-blocking, apply cfg's socket options where they apply (failures of options a socket of
 * that kind does not have, such as TCP_NODELAY on a UNIX socket, are ignored), then run the
 * handshake (if cfg->handshake) under cfg->handshake_timeout_ms.
 *   TF_OK: *out owns fd.  On any error fd is closed too, and *out is NULL.
 *   Errors as the handshake part of tf_sync_connect; INVALID_ARGUMENT (fd < 0, out NULL). */
TF_API tf_err tf_sync_conn_from_fd(int fd, const tf_tcp_config *cfg, tf_sync_conn **out,
                                   int *os_err, tf_errmsg *msg);

/* Send one message: the length prefix and the payload with one sendmsg (MSG_NOSIGNAL: a dead
 * peer never raises SIGPIPE), repeated only for what a partial write left. |buf| is borrowed
 * for the call. Blocks until the whole frame is handed to the kernel or |timeout_ms| passes.
 *   TF_OK                    sent
 *   TF_ERR_TOO_LARGE         len > cfg->max_send_len: nothing sent, not poisoned
 *   TF_ERR_INVALID_ARGUMENT  c NULL, or buf NULL with len > 0: not poisoned
 *   TF_ERR_TIMEOUT           not poisoned if no byte of the frame was sent, else poisoned
 *   TF_ERR_IO                (EPIPE, ECONNRESET, ...) poisoned; os_err kept
 *   TF_ERR_CLOSED            poisoned (the kernel accepted no byte: peer gone)
 *   TF_ERR_BAD_STATE         our sending side was shut down (tf_sync_conn_shutdown)
 *   any earlier poison reason, at once */
TF_API tf_err tf_sync_conn_send(tf_sync_conn *c, const void *buf, size_t len, int timeout_ms);

/* Send |n| messages in order, each as its own frame: msgs[i].len bytes at msgs[i].base (tf_iov,
 * proto.h; the array and the payloads are borrowed for the call). The prefixes and payloads of
 * up to 256 messages go into one gathered sendmsg (MSG_NOSIGNAL), a partial write is resumed
 * where it stopped, so n small messages cost about n / 256 syscalls where tf_sync_conn_send
 * costs n. Blocks until every frame is handed to the kernel or |timeout_ms| passes (one
 * deadline for the whole batch). Statistics count the messages as each gathered write
 * completes; queued_msgs / queued_bytes are the part of the batch not yet written.
 *   TF_OK                    all n sent (n == 0: nothing to do)
 *   TF_ERR_TOO_LARGE         some msgs[i].len > cfg->max_send_len: nothing sent, not poisoned
 *   TF_ERR_INVALID_ARGUMENT  c NULL, msgs NULL with n > 0, or some base NULL with len > 0:
 *                            nothing sent, not poisoned
 *   TF_ERR_TIMEOUT           not poisoned if no byte of the batch was sent, else poisoned (the
 *                            peer may have received the first messages whole)
 *   TF_ERR_IO                (EPIPE, ECONNRESET, ...) poisoned; os_err kept
 *   TF_ERR_CLOSED            poisoned (the kernel accepted no byte: peer gone)
 *   TF_ERR_BAD_STATE         our sending side was shut down (tf_sync_conn_shutdown)
 *   any earlier poison reason, at once */
TF_API tf_err tf_sync_conn_sendv(tf_sync_conn *c, const tf_iov *msgs, size_t n, int timeout_ms);

/* Receive one message into |buf| (|cap| bytes, borrowed for the call); *len = its length.
 * Receives go through the connection's read-ahead (TF_SYNC_READAHEAD): a message already read
 * ahead is returned without a syscall, else one read takes as much as the kernel has (a body of
 * TF_SYNC_READAHEAD bytes or more is read straight into buf after its buffered part).
 *   TF_OK                    *len bytes in buf
 *   TF_ERR_BUFFER_TOO_SMALL  the message is longer than cap: poisoned (stream out of step)
 *   TF_ERR_TOO_LARGE         the peer's length is over cfg->max_recv_len: poisoned
 *   TF_ERR_CLOSED            the peer closed between messages: the receive direction is
 *                            closed (this and every later receive: CLOSED at once), not
 *                            poisoned: sends go on
 *   TF_ERR_TRUNCATED         the peer closed inside a message: poisoned
 *   TF_ERR_TIMEOUT           as for send (no byte of the frame read: still usable)
 *   TF_ERR_IO                poisoned; os_err kept
 *   TF_ERR_INVALID_ARGUMENT  c or len NULL, buf NULL with cap > 0
 *   any earlier poison reason, at once */
TF_API tf_err tf_sync_conn_recv(tf_sync_conn *c, void *buf, size_t cap,
                                size_t *len, int timeout_ms);

/* Receive one message into a malloc()'d buffer of its exact length: *buf is the caller's to
 * free() (NULL for an empty message), *len its length. Memory is committed as the bytes
 * arrive, not on the length prefix alone: after the length passed the max check the buffer
 * starts at min(length, 64 KiB) and doubles as it fills, its last step to the exact length
 * (a peer that declares 60 MiB and sends 10 bytes binds 64 KiB). Errors as tf_sync_conn_recv
 * (no BUFFER_TOO_SMALL), plus TF_ERR_NOMEM (poisoned). On error *buf is NULL and nothing is
 * left allocated. */
TF_API tf_err tf_sync_conn_recv_alloc(tf_sync_conn *c, void **buf, size_t *len, int timeout_ms);

/* Half-close: shut our sending side down (the peer's next receive after our last message
 * gives CLOSED); receiving goes on. Also after we received the peer's CLOSED. Over TLS the
 * close_notify goes before the FIN: if the socket has no room for it, this waits up to
 * cfg->linger_ms for the peer to read (past that the FIN goes without it, the peer sees an
 * EOF without close_notify, and this still returns TF_OK). It is a sending call: not while
 * another thread sends on the connection (TLS then poisons it: "protocol is shutdown").
 *   TF_OK; TF_ERR_BAD_STATE (already shut down); TF_ERR_IO (shutdown failed); the poison
 *   reason if poisoned; TF_ERR_INVALID_ARGUMENT (NULL). */
TF_API tf_err tf_sync_conn_shutdown(tf_sync_conn *c);

/* Close the socket and free the connection. NULL is a no-op. Must not race any other call on
 * the same connection. */
TF_API void tf_sync_conn_free(tf_sync_conn *c);

/* The poison reason (TF_OK while healthy, also after the peer's clean close: CLOSED is not a
 * poison); *os_err (if non-NULL) its OS error number or 0. */
TF_API tf_err tf_sync_conn_error(const tf_sync_conn *c, int *os_err);

/* The socket (for poll, getsockopt, ...); it stays the connection's: do not close it. A
 * receive may have read bytes ahead into the connection (TF_SYNC_READAHEAD): the socket not
 * being readable does not mean no message is waiting, so poll it only between receives that
 * return TIMEOUT (one with timeout 0 takes what was read ahead first). */
TF_API int tf_sync_conn_fd(const tf_sync_conn *c);

/* The peer's address as "host:port" (tcp.h; "unix:/path" or "unix:@name" for a Unix-domain
 * peer, "unix:" for an unnamed one: a client that did not bind, a socketpair), taken when the
 * connection was made (from accept, or asked of the socket at connect / from_fd), so it is
 * still known after the peer has reset or closed; if it could not be taken then, asked now.
 *   TF_OK; TF_ERR_IO / BUFFER_TOO_SMALL; TF_ERR_INVALID_ARGUMENT (NULL). */
TF_API tf_err tf_sync_conn_peer(const tf_sync_conn *c, char *buf, size_t len);

/* The peer's credentials on a Unix-domain connection (tcp.h, SPEC 9.9): the process that
 * connected (or made the socketpair) and its uid and gid then. Any thread.
 *   TF_OK                    *out filled
 *   TF_ERR_INVALID_ARGUMENT  c or out NULL, or not a Unix-domain connection (TCP carries no
 *                            credentials); *out zeroed
 *   TF_ERR_IO                getsockopt SO_PEERCRED failed */
TF_API tf_err tf_sync_conn_peer_cred(const tf_sync_conn *c, tf_peer_cred *out);

/* The generic view (conn.h) of this connection; never NULL for a non-NULL c. */
TF_API tf_conn *tf_sync_conn_base(tf_sync_conn *c);

/* A snapshot of the connection's statistics (obs.h, SPEC 9.10), from any thread, also while a
 * send and a receive block on other threads. Set out->size to sizeof(tf_conn_stats) first. A
 * sync connection has no queue: queued_msgs / queued_bytes describe the send under way (1 and
 * its length, else 0), recv_pending is 1 while a receive runs; a pause is the time a send
 * waited for room in the socket's buffer (the peer not reading).
 *   TF_OK
 *   TF_ERR_INVALID_ARGUMENT  c or out NULL, or out->size < 4 */
TF_API tf_err tf_sync_conn_stats(const tf_sync_conn *c, tf_conn_stats *out);

/* ---------------------------------------------------------------- server */

/* The most handshakes a server's accept drives at once (SPEC 9.6). While that many clients are
 * in their handshake, accept leaves further clients queued in the listen backlog until one of
 * them completes, fails or passes its deadline. */
#define TF_SYNC_HANDSHAKES 128

/* A handshake that failed in accept (wrong magic, early close, silent past the deadline), or a
 * client of a uid the config does not allow (PEER_DENIED: cfg->unix_peer_uid /
 * unix_peer_same_uid, SPEC 9.9, checked before the handshake): called on the accepting thread
 * with the client's address (taken at accept), the reason and its os_err. */
typedef void (*tf_reject_cb)(void *arg, const char *peer, tf_err err, int os_err);

/* A server object, not yet listening. TF_OK; TF_ERR_INVALID_ARGUMENT; TF_ERR_NOMEM. */
TF_API tf_err tf_sync_server_new(tf_sync_server **out);

/* Bind |addr| and listen (SO_REUSEADDR; backlog cfg->listen_backlog, else SOMAXCONN). The
 * wildcard binds dual-stack [::] (falls back to 0.0.0.0 without IPv6); port 0 picks a free port
 * (read it with tf_sync_server_addr). "unix:/path" binds a socket file, which shutdown removes
 * if it still is that file; a socket file already there is refused (stale: unless
 * cfg->unix_replace_stale) and nothing but a stale socket file is ever removed; "unix:@name"
 * an abstract name (SPEC 9.9).
 *   TF_OK; TF_ERR_BAD_ADDRESS; TF_ERR_INVALID_ARGUMENT (NULL, bad cfg: msg names the field; the
 *   uid rule with a TCP address); TF_ERR_IO (bind/listen failed, e.g. EADDRINUSE; msg names the
 *   call, the address and, for a Unix path, what is there);
 *   TF_ERR_BAD_STATE (already initialised: double init); TF_ERR_SHUTDOWN (shut down). */
TF_API tf_err tf_sync_server_init(tf_sync_server *s, const char *addr, const tf_tcp_config *cfg,
                                  tf_errmsg *msg);

/* Start the server on |fd|, a socket that is already bound and listening (inherited from a
 * parent, passed by systemd socket activation, made by other code); otherwise as
 * tf_sync_server_init. The server owns fd from this call on, in every case: it is closed by
 * tf_sync_server_free, or at once if the call fails. fd is made non-blocking and
 * close-on-exec; cfg's socket options are applied to it (and to every accepted socket, as for
 * init); listen() is called again only if cfg->listen_backlog is set. bind_device, local_addr
 * and sock_cb do not apply: the socket exists and is bound.
 *   TF_OK
 *   TF_ERR_INVALID_ARGUMENT  s NULL, fd < 0, bad cfg (msg names the field), or fd is not a
 *                            listening IPv4, IPv6 or Unix-domain stream socket (msg says what
 *                            it is instead; a Unix socket's path is never removed), or a TCP
 *                            one with the uid rule
 *   TF_ERR_IO                fcntl, an option or listen() failed (msg names it)
 *   TF_ERR_BAD_STATE         already initialised; TF_ERR_SHUTDOWN: shut down */
TF_API tf_err tf_sync_server_init_fd(tf_sync_server *s, int fd, const tf_tcp_config *cfg,
                                     tf_errmsg *msg);

/* Call cb(arg, ...) for every client dropped in the handshake. Set before accepting. */
TF_API void tf_sync_server_on_reject(tf_sync_server *s, tf_reject_cb cb, void *arg);

/* A connection event of a sync server's client (obs.h): |ev|, the client's address |peer|
 * (valid during the call), the reason (TF_OK for CONNECTED) and its os_err. |c| is the
 * connection (NULL for HANDSHAKE_FAILED): it may be read in the callback (tf_sync_conn_stats,
 * its peer, its error) but not freed there. */
typedef void (*tf_sync_event_cb)(tf_sync_conn *c, const char *peer, tf_conn_event ev, tf_err err,
                                 int os_err, void *arg);

/* The connection events of the server's clients (see tf_sync_event_cb); cb NULL removes it.
 * Any thread, at any time. TF_CONN_CONNECTED on the accepting thread just before
 * tf_sync_server_accept returns the connection; TF_CONN_HANDSHAKE_FAILED on the accepting
 * thread, before on_reject; TF_CONN_CLOSED in tf_sync_conn_free of a connection the server
 * handed out, on the freeing thread, before the socket is closed, with the poison reason, else
 * CLOSED (the peer closed its side), else CANCELLED (freed while open). Events are told one at a
 * time, under a lock of the server's (the callback may free connections; other threads' events wait
 * meanwhile); none runs after tf_sync_server_free returned.
 *   TF_OK; TF_ERR_INVALID_ARGUMENT (s NULL). */
TF_API tf_err tf_sync_server_on_event(tf_sync_server *s, tf_sync_event_cb cb, void *arg);

/* The bound address as "host:port" with the real port ("[::]:41234" for the wildcard).
 *   TF_OK; TF_ERR_BAD_STATE (not initialised); TF_ERR_BUFFER_TOO_SMALL; TF_ERR_IO. */
TF_API tf_err tf_sync_server_addr(const tf_sync_server *s, char *buf, size_t len);

/* Block until a client has connected and completed the handshake (under
 * cfg->handshake_timeout_ms), or until tf_sync_server_shutdown. The socket options of cfg are
 * applied to the accepted socket first. Handshakes run side by side: accept takes new clients
 * while earlier ones are still in their handshake (up to TF_SYNC_HANDSHAKES at once, each with
 * its own deadline from its accept, all in one poll with the listen socket) and returns the
 * first client to complete; the others stay in progress in the server and the next accept
 * goes on with them, so a silent client delays nobody (it holds one of the TF_SYNC_HANDSHAKES
 * places until its deadline; TF_UNSET: until it speaks, closes or the server is shut down). A
 * client that fails the handshake (BAD_MAGIC, CLOSED, TRUNCATED, IO, TIMEOUT) is closed,
 * counted and reported (on_reject), and accept goes on waiting. Clients still in their
 * handshake when the server is shut down are closed (not reported). ECONNABORTED and the other
 * per-connection errors of accept(2) are retried at once; fd or memory exhaustion (EMFILE,
 * ENFILE, ENOBUFS, ENOMEM) with a back-off pause (never a busy loop; the client stays queued,
 * the handshakes in progress go on), up to cfg->accept_retries pauses in a row.
 *   TF_OK                    *out is the connection
 *   TF_ERR_BAD_STATE         not initialised (accept before init)
 *   TF_ERR_SHUTDOWN          shut down (before or during the call, also mid-handshake)
 *   TF_ERR_IO                accept failed for good (EMFILE after the retries, ...) or an
 *                            option could not be set; *os_err (if non-NULL) gets its number,
 *                            msg names it
 *   TF_ERR_NOMEM             no memory for the connection (that client is closed)
 *   TF_ERR_INVALID_ARGUMENT  NULL arguments
 * Several threads may accept at once: one of them drives the handshakes, the others wait for
 * its return (shutdown wakes them too), and each client goes to exactly one of them. */
TF_API tf_err tf_sync_server_accept(tf_sync_server *s, tf_sync_conn **out, int *os_err,
                                    tf_errmsg *msg);

/* The number of clients dropped in the handshake so far (any thread). */
TF_API uint64_t tf_sync_server_rejected(const tf_sync_server *s);

/* A snapshot of the server's statistics (obs.h, SPEC 9.10), any thread. Set out->size to
 * sizeof(tf_server_stats) first. accepted counts the connections accept returned; active, those
 * of them not yet freed (tf_sync_conn_free); handshaking, the clients in the handshake now;
 * accept_rests, the back-off pauses after EMFILE and the like; rej_busy stays 0 (the sync
 * server has no max_conns).
 *   TF_OK
 *   TF_ERR_INVALID_ARGUMENT  s or out NULL, or out->size < 4 */
TF_API tf_err tf_sync_server_stats(const tf_sync_server *s, tf_server_stats *out);

/* Stop: every blocked and later accept returns TF_ERR_SHUTDOWN at once (an eventfd in the same
 * poll), and the listen socket is closed (once no accept runs; then the socket file init bound
 * is removed, if the path still is that file: SPEC 9.9). Idempotent; any thread.
 * TF_OK; INVALID_ARGUMENT. */
TF_API tf_err tf_sync_server_shutdown(tf_sync_server *s);

/* Shut down (if not yet) and free. No accept may still run. NULL is a no-op. */
TF_API void tf_sync_server_free(tf_sync_server *s);

#ifdef __cplusplus
}
#endif
#endif /* TCPFRAME_SYNC_H */
