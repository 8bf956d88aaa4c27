/* io/xport.h -- the transport seam (SPEC 9.11): how the sync and async connections move bytes.
 * Not installed.
 *
 * A connection never calls the socket to move bytes; it calls its transport's operations:
 * read into a buffer, write gathered pieces, shut its sending side down, and -- only on the slow
 * path, after an operation answered TF_IO_AGAIN -- ask what it waits for (readable, writable).
 * A transport may run a handshake of its own before the magic (TLS does). Plain TCP is one
 * implementation (io/fdio.c: tf_fdio's own callbacks, so the plain hot path is the same call it
 * always was); TLS is another (tls/, built only when asked for: io/ never names OpenSSL).
 *
 * The read and write operations keep the tf_io contract of SPEC 3.2 (their answers: a count,
 * 0 = EOF, TF_IO_AGAIN, TF_IO_INTR, TF_IO_FAIL with *os_err), so the connection hands them to
 * proto/'s try-steps as a tf_io unchanged: {ctx, ops->read, ops->write}.
 *
 * Reads are drained-exact: a read that returns fewer bytes than asked (or AGAIN) means the
 * transport holds nothing more until the fd shows an event -- unless in_pending says it does (the async loop's level-triggered
 * "drained" rule relies on it; a TLS read keeps reading records until the buffer is full or
 * OpenSSL wants the socket). After a read answered EOF every later read answers EOF again (the
 * socket keeps its EOF). TLS keeps a failure too (and an end met after bytes it returned first
 * comes at the next read); plain TCP reports a socket error once, then EOF.
 *
 * Threads: read and write may be called by two threads at once (the sync connection's receiving
 * and sending threads); a transport that shares state between directions locks it (TLS does).
 * Everything else is for one thread at a time. */
#ifndef TCPFRAME_IO_XPORT_H
#define TCPFRAME_IO_XPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "internal.h"
#include "tcpframe/fdio.h"
#include "tcpframe/proto.h"

typedef struct tf__xport_ops {
    const char *name; /* "tcp", "tls" */
    /* tf_io read and write (SPEC 3.2); write gets 1..2 pieces. */
    long (*read)(void *ctx, uint8_t *buf, size_t len, int *os_err);
    long (*write)(void *ctx, const tf_iov *iov, size_t cnt, int *os_err);
    /* A gathered write of cnt (1..IOV_MAX) pieces, with the same answers. */
    long (*writev)(void *ctx, const struct iovec *v, int cnt, int *os_err);
    /* Stop sending for good (the peer reads the bytes in flight, then EOF): 0, or an errno. A
     * transport with an end of its own (TLS: close_notify) that the socket has no room for
     * holds it and the FIN behind it: 0, out_pending true, and flush sends both (the
     * connections flush before they wait, and close only once it is out). Called again while
     * they are held, it sends the FIN at once (a connection that cannot wait longer). */
    int (*shutdown_wr)(void *ctx);
    /* A transport may accept bytes it could not yet put on the socket (TLS: a sealed record the
     * socket did not take): write counts them as moved, and the connection pushes them out with
     * flush before it waits for anything else of the peer, or shuts down. NULL (plain TCP):
     * never. out_pending: something is waiting. flush: 0 (nothing left), TF_IO_AGAIN
     * (wants(ctx, TF_WANT_WRITE) says for what), TF_IO_INTR or TF_IO_FAIL (*os_err). */
    bool (*out_pending)(void *ctx);
    long (*flush)(void *ctx, int *os_err);
    /* Slow path, after a TF_IO_FAIL or a handshake error: the transport's own reason (TF_ERR_TLS
     * or TLS_VERIFY with os_err, SPEC 9.11), or TF_OK to keep the connection's (IO with the
     * errno). NULL: never. */
    tf_err (*failure)(void *ctx, int *os_err);
    /* Slow path, after TF_IO_AGAIN from read (dir TF_WANT_READ), write (TF_WANT_WRITE) or the
     * handshake (dir 0): what the fd must show before the call is retried (TF_WANT_* bits).
     * NULL: the direction itself. */
    unsigned (*wants)(void *ctx, unsigned dir);
    /* The transport's own handshake, run before the magic (NULL: none). Non-blocking: TF_DONE;
     * TF_AGAIN (wants(ctx, 0) says for what); TF_ERROR with *err and *os_err (tf_err ranges:
     * TF_ERR_TLS_* with the OpenSSL reason or verify code in os_err, IO with an errno,
     * TRUNCATED at an EOF, NOMEM). */
    tf_step (*handshake)(void *ctx, tf_err *err, int *os_err);
    /* Release the transport's state (never closes the fd). NULL: nothing to release. */
    void (*free)(void *ctx);
    /* Input the transport holds that no fd event will announce, so that a read now answers at
     * once: TLS after a short read that met the peer's end (close_notify, a bad record) behind
     * the bytes it returned -- the end waits for the next read, and the socket may stay silent
     * (a peer that keeps its TCP side open). NULL: never (plain TCP). */
    bool (*in_pending)(void *ctx);
} tf__xport_ops;

/* A connection's transport: its operations and their context. */
typedef struct tf__xport {
    const tf__xport_ops *ops;
    void *ctx;
    bool hs_done; /* the transport's handshake finished (or it has none) */
} tf__xport;

/* What makes a transport for a connected socket: the first member of the object a config's
 * `tls` field points at (tls/tls.c's tf_tls_ctx). open: a new transport context over |fd| as
 * the server (accepting) or client side; TF_OK with *ops / *ctx; NOMEM; TLS_CONFIG (os_err:
 * OpenSSL's reason). */
typedef struct tf__xport_maker {
    tf_err (*open)(const struct tf__xport_maker *m, int fd, bool server, const tf__xport_ops **ops,
                   void **ctx, int *os_err);
} tf__xport_maker;

/* The plain TCP transport over tf_fdio (io/fdio.c). */
extern const tf__xport_ops tf__xport_tcp;

/* Set |x| up for the connected socket |fd| under the loaded config |cfg|: plain TCP over |fdio|
 * (initialised here; it must stay at its address) unless cfg->tls names a transport maker.
 * TF_OK; NOMEM; TLS_CONFIG (*os_err). */
tf_err tf__xport_open(tf__xport *x, tf_fdio *fdio, int fd, const tf_tcp_config *cfg, bool server,
                      int *os_err);

/* Release the transport's state (not the fd); |x| becomes plain and unusable. Safe twice. */
void tf__xport_close(tf__xport *x);

/* The tf_io over the transport, for proto/'s try-steps. */
static inline tf_io tf__xport_io(const tf__xport *x)
{
    return (tf_io){.ctx = x->ctx, .read = x->ops->read, .write = x->ops->write};
}

/* What an AGAIN of direction |dir| (TF_WANT_READ, TF_WANT_WRITE; 0: the handshake) waits for. */
static inline unsigned tf__xport_wants(const tf__xport *x, unsigned dir)
{
    return x->ops->wants ? x->ops->wants(x->ctx, dir) : dir;
}

/* One step of the transport's handshake (TF_DONE at once when it has none or it is done). */
tf_step tf__xport_handshake(tf__xport *x, tf_err *err, int *os_err);

/* Input held that no fd event will announce (never for plain TCP): read again, do not wait. */
static inline bool tf__xport_in_pending(const tf__xport *x)
{
    return x->ops->in_pending && x->ops->in_pending(x->ctx);
}

/* Output accepted and not yet on the socket (never for plain TCP). */
static inline bool tf__xport_out_pending(const tf__xport *x)
{
    return x->ops->out_pending && x->ops->out_pending(x->ctx);
}

/* The reason to report for a failure |err| / *os_err of an I/O through |x|: the transport's own
 * (TLS) when it has one, else |err| unchanged. */
tf_err tf__xport_reason(const tf__xport *x, tf_err err, int *os_err);

/* A connection's transport (for tls/: the peer's identity). Any thread. */
typedef struct tf_sync_conn tf_sync_conn;
typedef struct tf_async_conn tf_async_conn;
const tf__xport *tf__sync_conn_xport(const tf_sync_conn *c);
const tf__xport *tf__async_conn_xport(const tf_async_conn *c);

#endif /* TCPFRAME_IO_XPORT_H */
