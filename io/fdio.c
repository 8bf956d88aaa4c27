/* io/fdio.c -- tf_io over file descriptors (read, sendmsg/writev) and tf_fd_wait (poll); the
 * plain TCP transport of the seam (io/xport.h) made of the same callbacks.
 *
 * Byte moving only: every framing decision is proto/'s. See include/tcpframe/fdio.h. */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include "internal.h"
#include "tcpframe/fdio.h"
#include "xport.h"

enum { WMODE_SEND = 0, WMODE_WRITEV = 1 };

/* Map a failed syscall's errno onto the tf_io answers. */
static long fail_answer(int e, int *os_err)
{
    if (e == EINTR)
        return TF_IO_INTR;
#if EAGAIN != EWOULDBLOCK
    if (e == EWOULDBLOCK)
        return TF_IO_AGAIN;
#endif
    if (e == EAGAIN)
        return TF_IO_AGAIN;
    if (os_err)
        *os_err = e;
    return TF_IO_FAIL;
}

static long fd_read(void *ctx, uint8_t *buf, size_t len, int *os_err)
{
    const tf_fdio *f = ctx;
    if (len > (size_t)SSIZE_MAX)
        len = (size_t)SSIZE_MAX;
    ssize_t n = tf__sys_read(f->rfd, buf, len);
    if (n >= 0)
        return (long)n;
    return fail_answer(errno, os_err);
}

static long fd_write(void *ctx, const tf_iov *iov, size_t cnt, int *os_err)
{
    tf_fdio *f = ctx;
    if (iov == NULL || cnt < 1 || cnt > 2) {
        if (os_err)
            *os_err = EINVAL;
        return TF_IO_FAIL;
    }
    /* Copy into the OS's iovec (const dropped by the POSIX API, not written through), clamping
     * the total so that the syscall's result fits a ssize_t (a shorter write is allowed). */
    struct iovec v[2];
    size_t room = (size_t)SSIZE_MAX;
    int k = 0;
    for (size_t i = 0; i < cnt && room > 0; i++) {
        size_t l = iov[i].len < room ? iov[i].len : room;
        v[k].iov_base = (void *)(uintptr_t)iov[i].base;
        v[k].iov_len = l;
        room -= l;
        k++;
    }

    ssize_t n;
    if (f->wmode == WMODE_SEND) {
        struct msghdr mh = {0};
        mh.msg_iov = v;
        mh.msg_iovlen = (size_t)k;
        n = tf__sys_sendmsg(f->wfd, &mh, MSG_NOSIGNAL);
        if (n < 0 && errno == ENOTSOCK) {
            f->wmode = WMODE_WRITEV; /* a pipe, tty or file: plain gather write from now on */
            n = tf__sys_writev(f->wfd, v, k);
        }
    } else {
        n = tf__sys_writev(f->wfd, v, k);
    }
    if (n >= 0)
        return (long)n;
    return fail_answer(errno, os_err);
}

void tf_fdio_init(tf_fdio *f, int rfd, int wfd)
{
    f->rfd = rfd;
    f->wfd = wfd;
    f->wmode = WMODE_SEND;
    f->io.ctx = f;
    f->io.read = fd_read;
    f->io.write = fd_write;
}

const tf_io *tf_fdio_io(tf_fdio *f)
{
    return &f->io;
}

static int64_t now_ms(void)
{
    return (int64_t)(tf__now_ns() / 1000000u);
}

tf_err tf_fd_wait(int fd, short events, int timeout_ms)
{
    if (fd < 0)
        return TF_ERR_INVALID_ARGUMENT;
    const int64_t deadline = timeout_ms >= 0 ? now_ms() + timeout_ms : 0;
    int left = timeout_ms;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = events, .revents = 0};
        int rc = poll(&p, 1, left);
        if (rc > 0) {
            if (p.revents & POLLNVAL) {
                errno = EBADF;
                return TF_ERR_IO;
            }
            return TF_OK;
        }
        if (rc == 0)
            return TF_ERR_TIMEOUT;
        if (errno != EINTR)
            return TF_ERR_IO;
        if (timeout_ms >= 0) {
            int64_t rem = deadline - now_ms();
            if (rem <= 0)
                return TF_ERR_TIMEOUT;
            left = (int)rem; /* rem <= timeout_ms, fits an int */
        }
    }
}

/* ---------------------------------------------------------------- the plain TCP transport */

/* A gathered write of any number of pieces (the async connection's queue), as fd_write. */
static long fd_writev(void *ctx, const struct iovec *v, int cnt, int *os_err)
{
    const tf_fdio *f = ctx;
    struct msghdr mh = {0};
    mh.msg_iov = (struct iovec *)(uintptr_t)v; /* not written through */
    mh.msg_iovlen = (size_t)cnt;
    ssize_t sent = tf__sys_sendmsg(f->wfd, &mh, MSG_NOSIGNAL);
    if (sent >= 0)
        return (long)sent;
    return fail_answer(errno, os_err);
}

static int fd_shutdown_wr(void *ctx)
{
    const tf_fdio *f = ctx;
    return shutdown(f->wfd, SHUT_WR) == 0 ? 0 : errno;
}

const tf__xport_ops tf__xport_tcp = {
    .name = "tcp",
    .read = fd_read,
    .write = fd_write,
    .writev = fd_writev,
    .shutdown_wr = fd_shutdown_wr,
    .out_pending = NULL,
    .flush = NULL,
    .failure = NULL,
    .wants = NULL,
    .handshake = NULL,
    .free = NULL,
    .in_pending = NULL,
};

tf_err tf__xport_open(tf__xport *x, tf_fdio *fdio, int fd, const tf_tcp_config *cfg, bool server,
                      int *os_err)
{
    tf_fdio_init(fdio, fd, fd);
    x->ops = &tf__xport_tcp;
    x->ctx = fdio;
    x->hs_done = true;
    const tf__xport_maker *m = (const tf__xport_maker *)(const void *)cfg->tls;
    if (!m)
        return TF_OK;
    const tf__xport_ops *ops = NULL;
    void *ctx = NULL;
    tf_err e = m->open(m, fd, server, &ops, &ctx, os_err);
    if (e != TF_OK)
        return e;
    x->ops = ops;
    x->ctx = ctx;
    x->hs_done = ops->handshake == NULL;
    return TF_OK;
}

void tf__xport_close(tf__xport *x)
{
    if (x->ops && x->ops->free && x->ctx)
        x->ops->free(x->ctx);
    x->ops = &tf__xport_tcp;
    x->ctx = NULL;
}

tf_step tf__xport_handshake(tf__xport *x, tf_err *err, int *os_err)
{
    if (x->hs_done)
        return TF_DONE;
    tf_step st = x->ops->handshake(x->ctx, err, os_err);
    if (st == TF_DONE)
        x->hs_done = true;
    return st;
}

tf_err tf__xport_reason(const tf__xport *x, tf_err err, int *os_err)
{
    if (!x->ops->failure || err != TF_ERR_IO)
        return err;
    int os = 0;
    tf_err t = x->ops->failure(x->ctx, &os);
    if (t == TF_OK)
        return err;
    *os_err = os;
    return t;
}
