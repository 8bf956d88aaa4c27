/* io/sys.c -- the syscall and allocation seam below the TCP layer (internal.h).
 *
 * Every read, sendmsg, writev, accept4, connect, SO_ERROR query, epoll_ctl and eventfd write the
 * library makes, and its own allocations (connections, operation records, promises, timers),
 * go through these wrappers. In production tf__sys_hook is NULL: one relaxed load and a
 * predictable branch, then the real call. A test installs a hook to count the calls and make
 * call number k fail with a chosen errno, or move fewer bytes (a short transfer). */
#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "internal.h"

/* NULL (zero-initialised): production. */
_Atomic(tf__sys_hook_fn) tf__sys_hook;

/* Ask the hook about one call: 0 to make it (with *len possibly lowered), else the errno. */
static inline int ask(tf__sys_op op, int fd, size_t *len)
{
    tf__sys_hook_fn h = atomic_load_explicit(&tf__sys_hook, memory_order_relaxed);
    if (__builtin_expect(h == NULL, 1))
        return 0;
    return h(op, fd, len);
}

ssize_t tf__sys_read(int fd, void *buf, size_t len)
{
    int e = ask(TF__SYS_READ, fd, &len);
    if (e) {
        errno = e;
        return -1;
    }
    return read(fd, buf, len);
}

/* The first |cap| bytes of iov[0..cnt) as at most one piece (a short transfer the hook asked
 * for); *one gets it. Returns the number of pieces (0 or 1). */
static int cut(const struct iovec *iov, size_t cnt, size_t cap, struct iovec *one)
{
    for (size_t i = 0; i < cnt; i++) {
        if (iov[i].iov_len == 0)
            continue;
        one->iov_base = iov[i].iov_base;
        one->iov_len = iov[i].iov_len < cap ? iov[i].iov_len : cap;
        return 1;
    }
    return 0;
}

static size_t total(const struct iovec *iov, size_t cnt)
{
    size_t t = 0;
    for (size_t i = 0; i < cnt; i++)
        t += iov[i].iov_len;
    return t;
}

ssize_t tf__sys_sendmsg(int fd, const struct msghdr *mh, int flags)
{
    if (__builtin_expect(atomic_load_explicit(&tf__sys_hook, memory_order_relaxed) == NULL, 1))
        return sendmsg(fd, mh, flags);
    size_t all = total(mh->msg_iov, mh->msg_iovlen), len = all;
    int e = ask(TF__SYS_SENDMSG, fd, &len);
    if (e) {
        errno = e;
        return -1;
    }
    if (len >= all)
        return sendmsg(fd, mh, flags);
    struct iovec one;
    struct msghdr m = *mh;
    m.msg_iov = &one;
    m.msg_iovlen = (size_t)cut(mh->msg_iov, mh->msg_iovlen, len, &one);
    return sendmsg(fd, &m, flags);
}

ssize_t tf__sys_writev(int fd, const struct iovec *iov, int cnt)
{
    if (__builtin_expect(atomic_load_explicit(&tf__sys_hook, memory_order_relaxed) == NULL, 1))
        return writev(fd, iov, cnt);
    size_t n = cnt > 0 ? (size_t)cnt : 0;
    size_t all = total(iov, n), len = all;
    int e = ask(TF__SYS_WRITEV, fd, &len);
    if (e) {
        errno = e;
        return -1;
    }
    if (len >= all)
        return writev(fd, iov, cnt);
    struct iovec one;
    return writev(fd, &one, cut(iov, n, len, &one));
}

int tf__sys_accept4(int fd, struct sockaddr *addr, socklen_t *alen, int flags)
{
    int e = ask(TF__SYS_ACCEPT4, fd, NULL);
    if (e) {
        errno = e;
        return -1;
    }
    return accept4(fd, addr, alen, flags);
}

int tf__sys_connect(int fd, const struct sockaddr *addr, socklen_t alen)
{
    int e = ask(TF__SYS_CONNECT, fd, NULL);
    if (e == EINTR) {
        /* An interrupted connect goes on in the background (connect(2)): make it, then say
         * EINTR, unless it failed at once. */
        int rc = connect(fd, addr, alen);
        if (rc == 0 || errno == EINPROGRESS)
            errno = EINTR;
        return -1;
    }
    if (e) {
        errno = e;
        return -1;
    }
    return connect(fd, addr, alen);
}

int tf__sys_so_error(int fd, int *err)
{
    /* An injected answer is a pending socket error, as the kernel would report it. */
    int e = ask(TF__SYS_SO_ERROR, fd, NULL);
    if (e) {
        *err = e;
        return 0;
    }
    socklen_t l = sizeof *err;
    return getsockopt(fd, SOL_SOCKET, SO_ERROR, err, &l);
}

int tf__sys_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
    int e = ask(TF__SYS_EPOLL_CTL, fd, NULL);
    if (e) {
        errno = e;
        return -1;
    }
    return epoll_ctl(epfd, op, fd, ev);
}

int tf__sys_eventfd_write(int fd)
{
    int e = ask(TF__SYS_EVENTFD_WRITE, fd, NULL);
    if (e) {
        errno = e;
        return -1;
    }
    uint64_t one = 1;
    return write(fd, &one, sizeof one) < 0 ? -1 : 0;
}

void *tf__alloc(size_t n)
{
    if (ask(TF__SYS_MALLOC, -1, &n))
        return NULL;
    return malloc(n);
}

void *tf__realloc(void *p, size_t n)
{
    if (ask(TF__SYS_MALLOC, -1, &n))
        return NULL;
    return realloc(p, n);
}

void *tf__calloc(size_t n, size_t size)
{
    size_t all = n * size;
    if (ask(TF__SYS_MALLOC, -1, &all))
        return NULL;
    return calloc(n, size);
}
