/* tcpframe/fdio.h -- a tf_io over file descriptors (sockets, pipes), and a poll() helper.
 *
 * tf_fdio only moves bytes: read() on the read fd, a gather write of the (at most two) tf_iov
 * pieces on the write fd. The framing is done by proto.h's try-steps driving it. POSIX; the
 * SIGPIPE suppression on sockets uses Linux's MSG_NOSIGNAL.
 *
 *   tf_fdio f;
 *   tf_fdio_init(&f, sock, sock);                         // one socket: both directions
 *   const tf_io *io = tf_fdio_io(&f);
 *   while ((st = tf_tx_try(&tx, io)) == TF_AGAIN)
 *       if (tf_fd_wait(sock, POLLOUT, 1000) != TF_OK) ...; // non-blocking fd: wait, retry
 *
 * Ownership. A tf_fdio borrows its fds: it never closes them, never changes their flags
 * (blocking or not is the caller's choice: on a blocking fd a try-step blocks in the syscall and
 * never returns AGAIN) and holds no other resource; there is nothing to free. Close the fds
 * yourself, after the last call through the tf_io. The tf_io returned by tf_fdio_io() lives
 * inside the tf_fdio and its ctx points at it: do not copy or move a tf_fdio after init (init
 * the new location instead).
 *
 * Threading. No global state. The read callback touches only rfd; the write callback touches
 * only wfd and the private write-mode cache. So one thread may read while another writes (a
 * tf_rx on one thread, a tf_tx on another), but each direction is for one thread at a time, as
 * with the proto.h machines it feeds.
 *
 * Answers of the callbacks (the tf_io contract of proto.h, exactly):
 *   read  -> read(rfd, buf, len), len clamped to SSIZE_MAX:
 *            n > 0                 n (1..len)
 *            0                     0: the peer closed (end of stream)
 *            EINTR                 TF_IO_INTR
 *            EAGAIN / EWOULDBLOCK  TF_IO_AGAIN
 *            any other errno       TF_IO_FAIL, *os_err = errno (ECONNRESET, EBADF, EIO, ...)
 *   write -> the pieces copied into a struct iovec[2], their total clamped to SSIZE_MAX, then
 *            sendmsg(wfd, .., MSG_NOSIGNAL) while wfd is (or may be) a socket; the first
 *            ENOTSOCK switches this tf_fdio to writev(wfd, ..) for good (pipes, ttys, files).
 *            n > 0 -> n (1..total); 0 -> 0 (proto.h takes it as CLOSED); EINTR, EAGAIN /
 *            EWOULDBLOCK, other errno as for read. cnt outside 1..2 or a NULL iov: TF_IO_FAIL
 *            with *os_err = EINVAL, nothing written.
 *
 * SIGPIPE. Writing to a socket whose peer is gone fails with EPIPE (TF_IO_FAIL, and the try-step
 * reports TF_ERR_IO with os_err EPIPE); no signal is raised. A pipe has no such flag: writing to
 * a pipe whose read end is closed raises SIGPIPE as for any write(), whose default action kills
 * the process. Programs that write to pipes should ignore SIGPIPE (signal(SIGPIPE, SIG_IGN));
 * then such a write gives EPIPE like a socket.
 */
#ifndef TCPFRAME_FDIO_H
#define TCPFRAME_FDIO_H

#include "tcpframe/err.h"
#include "tcpframe/export.h"
#include "tcpframe/proto.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A tf_io over a read fd and a write fd (the same fd for a socket). Fields are private. */
typedef struct tf_fdio {
    int rfd;   /* private: borrowed, never closed */
    int wfd;   /* private: borrowed, never closed */
    int wmode; /* private: 0 = try sendmsg(MSG_NOSIGNAL), 1 = not a socket, use writev */
    tf_io io;  /* private: ctx == this tf_fdio */
} tf_fdio;

/* Set |f| up over |rfd| (reads) and |wfd| (writes); either may be -1 if that direction is never
 * used (a call through it then answers TF_IO_FAIL with EBADF). Makes no syscall, cannot fail.
 * Re-initialising an fdio is allowed whenever no call through it is in progress. */
TF_API void tf_fdio_init(tf_fdio *f, int rfd, int wfd);

/* The tf_io to hand to tf_hs_try / tf_tx_try / tf_rx_try. Valid as long as |f| is, at the same
 * address; never NULL. Both callbacks are set. */
TF_API const tf_io *tf_fdio_io(tf_fdio *f);

/* Wait until |fd| is ready for |events| (poll() bits: POLLIN, POLLOUT, ...) or reports an error
 * or hang-up (POLLERR / POLLHUP, which the next read/write call will then answer), for at most
 * |timeout_ms| milliseconds (negative: no limit; 0: just check). EINTR is retried with the time
 * that remains (CLOCK_MONOTONIC), so a signal neither ends nor lengthens the wait.
 *   TF_OK               ready (or error/hang-up pending on the fd)
 *   TF_ERR_TIMEOUT      the time ran out first
 *   TF_ERR_INVALID_ARGUMENT  fd < 0 (poll() would silently ignore it and just time out)
 *   TF_ERR_IO           poll() failed, or the fd is not open (POLLNVAL: errno = EBADF); the OS
 *                       error number is left in errno
 * Thread-safe; blocks the calling thread (never call it on an event-loop thread). */
TF_API tf_err tf_fd_wait(int fd, short events, int timeout_ms);

#ifdef __cplusplus
}
#endif
#endif /* TCPFRAME_FDIO_H */
