/* io/sys.c -- the syscall and allocation seam below the TCP layer (internal.h).
 *
 * Every read, sendmsg, writev, accept4, connect, SO_ERROR query, epoll_ctl and eventfd write the
 * library makes, and its own allocations (connections, operation records, promises, timers),
 * go through these wrappers. In production tf__sys_hook is NULL: one relaxed load and a
 * predictable branch, then the real call. A test installs a hook to count the calls and make
 * call number k fail with a chosen errno, or move fewer bytes (a short transfer).
 *
 * The same seam perturbs the schedule when a test asks for it (TF_PERTURB, tf__perturb_set):
 * random yields and pauses of a few microseconds before the wrapped calls and wherever
 * tf__perturb() is called, so that races between the loop and the submitting threads show up
 * in short test runs instead of once in a million in production. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* NULL (zero-initialised): production. */
_Atomic(tf__sys_hook_fn) tf__sys_hook;

/* ---------------------------------------------------------------- schedule perturbation */

/* 0: TF_PERTURB not read yet; 1: off; 2..1001: on, with probability (state - 1) per mille. */
static atomic_uint perturb_state;
static _Atomic uint64_t perturb_seed;
static atomic_uint perturb_gen;     /* bumped by every setting: threads reseed */
static atomic_uint perturb_threads; /* threads seeded since the last setting */
static _Atomic uint64_t perturb_made;
static pthread_once_t perturb_once = PTHREAD_ONCE_INIT;
/* Each thread's own generator (no shared state to race on) and the setting it was seeded by. */
static _Thread_local uint64_t perturb_rng;
static _Thread_local unsigned perturb_rng_gen;

static void perturb_store(uint64_t seed, unsigned permille)
{
    if (permille > 1000)
        permille = 1000;
    atomic_store_explicit(&perturb_seed, seed, memory_order_relaxed);
    atomic_store_explicit(&perturb_threads, 0, memory_order_relaxed);
    atomic_fetch_add_explicit(&perturb_gen, 1, memory_order_release);
    atomic_store_explicit(&perturb_state, permille ? permille + 1 : 1, memory_order_release);
}

void tf__perturb_set(uint64_t seed, unsigned permille)
{
    perturb_store(seed, seed ? permille : 0);
}

/* TF_PERTURB=SEED[:PERMILLE], read once; a tf__perturb_set made earlier wins. */
static void perturb_env(void)
{
    const char *s = getenv("TF_PERTURB");
    uint64_t seed = 0;
    unsigned long pm = 50;
    if (s && *s) {
        char *end = NULL;
        seed = strtoull(s, &end, 0);
        if (end && *end == ':')
            pm = strtoul(end + 1, NULL, 10);
    }
    unsigned expected = 0;
    if (seed == 0 || pm == 0) {
        atomic_compare_exchange_strong(&perturb_state, &expected, 1u);
        return;
    }
    if (atomic_load(&perturb_state) == 0)
        perturb_store(seed, pm > 1000 ? 1000u : (unsigned)pm);
}

static uint64_t perturb_next(void)
{
    uint64_t x = perturb_rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    perturb_rng = x;
    return x * 2685821657736338717ull;
}

static void __attribute__((noinline)) perturb_slow(unsigned st)
{
    if (st == 0) {
        pthread_once(&perturb_once, perturb_env);
        st = atomic_load_explicit(&perturb_state, memory_order_acquire);
        if (st <= 1)
            return;
    }
    unsigned gen = atomic_load_explicit(&perturb_gen, memory_order_acquire);
    if (perturb_rng == 0 || perturb_rng_gen != gen) {
        /* splitmix64 of (seed, this thread's rank): distinct, reproducible streams */
        uint64_t z = atomic_load_explicit(&perturb_seed, memory_order_relaxed) +
                     0x9E3779B97F4A7C15ull * (1u + atomic_fetch_add_explicit(&perturb_threads, 1,
                                                                             memory_order_relaxed));
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        perturb_rng = z ? z : 1;
        perturb_rng_gen = gen;
    }
    uint64_t r = perturb_next();
    if (r % 1000u >= st - 1u)
        return;
    atomic_fetch_add_explicit(&perturb_made, 1, memory_order_relaxed);
    if ((r >> 40) & 1u) {
        sched_yield();
    } else {
        struct timespec ts = {0, (long)(1000u * (1u + (unsigned)((r >> 41) % 16u)))};
        nanosleep(&ts, NULL);
    }
}

void tf__perturb(void)
{
    unsigned st = atomic_load_explicit(&perturb_state, memory_order_relaxed);
    if (__builtin_expect(st == 1, 1))
        return;
    perturb_slow(st);
}

uint64_t tf__perturb_count(void)
{
    return atomic_load_explicit(&perturb_made, memory_order_relaxed);
}

/* ---------------------------------------------------------------- the wrapped calls */

/* Ask the hook about one call: 0 to make it (with *len possibly lowered), else the errno. */
static inline int ask_hook(tf__sys_op op, int fd, size_t *len)
{
    tf__sys_hook_fn h = atomic_load_explicit(&tf__sys_hook, memory_order_relaxed);
    if (__builtin_expect(h == NULL, 1))
        return 0;
    return h(op, fd, len);
}

/* The same, after a perturbation point. */
static inline int ask(tf__sys_op op, int fd, size_t *len)
{
    tf__perturb();
    return ask_hook(op, fd, len);
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
    tf__perturb();
    if (__builtin_expect(atomic_load_explicit(&tf__sys_hook, memory_order_relaxed) == NULL, 1))
        return sendmsg(fd, mh, flags);
    size_t all = total(mh->msg_iov, mh->msg_iovlen), len = all;
    int e = ask_hook(TF__SYS_SENDMSG, fd, &len);
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
    tf__perturb();
    if (__builtin_expect(atomic_load_explicit(&tf__sys_hook, memory_order_relaxed) == NULL, 1))
        return writev(fd, iov, cnt);
    size_t n = cnt > 0 ? (size_t)cnt : 0;
    size_t all = total(iov, n), len = all;
    int e = ask_hook(TF__SYS_WRITEV, fd, &len);
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
