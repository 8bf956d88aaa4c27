/* tests/test_io_util.h -- helpers for the threaded io/ tests: a per-test watchdog (a hang fails
 * the binary instead of hanging CI), a counter to wait on with a deadline, and iteration scaling
 * for the sanitizer builds. Include after <cmocka.h>. */
#ifndef TCPFRAME_TEST_IO_UTIL_H
#define TCPFRAME_TEST_IO_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_THREAD__)
#define TIO_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TIO_TSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define TIO_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TIO_ASAN 1
#endif
#endif

/* The watchdog fails a test that makes no progress for TF_TEST_WATCHDOG seconds (default 60).
 * Stress loops call tio_tick() as they go, so a loop that keeps moving on a slow or loaded
 * machine is not mistaken for a hang, while one that stops moving is caught however long it has
 * run; a test without ticks gets the window as its whole budget. run-test.sh's timeout caps a
 * binary's total time. */
static inline unsigned tio_watchdog_secs(void)
{
    const char *s = getenv("TF_TEST_WATCHDOG");
    return s && atoi(s) > 0 ? (unsigned)atoi(s) : 60u;
}

/* Progress of the running test (ticks since its start); lock-free, so the handler may read it. */
static atomic_long tio_progress;
static long tio_progress_seen;
static unsigned tio_window; /* tio_watchdog_secs(), read at setup (getenv is not signal-safe) */

static inline void tio_tick(void)
{
    atomic_fetch_add_explicit(&tio_progress, 1, memory_order_relaxed);
}

/* The watchdog's evidence: for every thread of this process, its /proc stat line (state R/S/D,
 * CPU), wait channel, kernel stack and schedstat, dumped twice one second apart, so a CI log of
 * a hang shows whether a thread sleeps (and where) or is runnable but never scheduled. Only
 * async-signal-safe calls (open, read, write, getdents64, nanosleep). */
static inline void tio_put(const char *s)
{
    (void)!write(2, s, strlen(s));
}

static inline void tio_cat(const char *tid, const char *file)
{
    char path[96] = "/proc/self/task/";
    size_t n = strlen(path);
    for (const char *p = tid; *p && n < 60; p++)
        path[n++] = *p;
    path[n++] = '/';
    for (const char *p = file; *p && n < sizeof path - 1; p++)
        path[n++] = *p;
    path[n] = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return;
    char buf[2048];
    ssize_t r;
    tio_put("  ");
    tio_put(file);
    tio_put(": ");
    while ((r = read(fd, buf, sizeof buf)) > 0)
        (void)!write(2, buf, (size_t)r);
    tio_put("\n");
    close(fd);
}

static inline void tio_dump_threads(void)
{
    int dfd = open("/proc/self/task", O_RDONLY | O_DIRECTORY);
    if (dfd < 0)
        return;
    char buf[4096];
    long n;
    while ((n = syscall(SYS_getdents64, dfd, buf, sizeof buf)) > 0) {
        for (long off = 0; off < n;) {
            struct tio_dirent {
                uint64_t ino;
                int64_t off;
                unsigned short reclen;
                unsigned char type;
                char name[];
            } *d = (struct tio_dirent *)(void *)(buf + off);
            off += d->reclen;
            if (d->name[0] == '.')
                continue;
            tio_put("thread ");
            tio_put(d->name);
            long tid = 0;
            for (const char *c = d->name; *c >= '0' && *c <= '9'; c++)
                tid = tid * 10 + (*c - '0');
            if (tid == (long)syscall(SYS_gettid))
                tio_put(" (runs this handler: its own wait is not shown)");
            tio_put("\n");
            tio_cat(d->name, "stat");
            tio_cat(d->name, "wchan");
            tio_cat(d->name, "schedstat");
            tio_cat(d->name, "stack");
        }
    }
    close(dfd);
}

static inline void tio_on_alarm(int sig)
{
    static const char msg[] = "\nWATCHDOG: no progress (deadlock or lost wake-up); aborting\n";
    (void)sig;
    long now = atomic_load_explicit(&tio_progress, memory_order_relaxed);
    if (now != tio_progress_seen) {
        /* It moved during this window: slow, not stuck. Watch the next window. */
        int saved = errno;
        tio_progress_seen = now;
        alarm(tio_window);
        errno = saved;
        return;
    }
    (void)!write(2, msg, sizeof msg - 1);
    if (now > 0) {
        /* Async-signal-safe: format the number by hand. */
        char buf[48] = "WATCHDOG: progress ticks ";
        size_t n = 25;
        char digits[24];
        size_t k = 0;
        unsigned long v = (unsigned long)now;
        do {
            digits[k++] = (char)('0' + v % 10u);
            v /= 10u;
        } while (v && k < sizeof digits);
        while (k && n < sizeof buf - 1)
            buf[n++] = digits[--k];
        buf[n++] = '\n';
        (void)!write(2, buf, n);
    }
    tio_dump_threads();
    struct timespec one = {1, 0};
    nanosleep(&one, NULL);
    tio_put("WATCHDOG: one second later\n");
    tio_dump_threads();
    _exit(99);
}

/* Checks off the test's main thread. cmocka's assertions longjmp into the main thread's test
 * frame: on a worker thread or a loop callback they are undefined behaviour (and a failure
 * there crashes or hangs the binary instead of failing the test). There, use TIO_CHECK(c) and
 * TIO_CHECK_EQ(a, b): they record the first failure (where, what, the values) and return
 * false so the caller can stop; the teardown of TIO_TEST fails the test on the main thread
 * (tio_off_main_assert() checks at any earlier point). */
static atomic_int tio_off_fails;
static atomic_int tio_off_ready; /* release: tio_off_msg is written */
static char tio_off_msg[320];

static inline bool tio_check_(bool ok, const char *file, int line, const char *what, long long a,
                              long long b, int has_values)
{
    if (ok)
        return true;
    if (atomic_fetch_add(&tio_off_fails, 1) == 0) {
        if (has_values)
            snprintf(tio_off_msg, sizeof tio_off_msg, "%s:%d: %s (%lld != %lld), off the main thread",
                     file, line, what, a, b);
        else
            snprintf(tio_off_msg, sizeof tio_off_msg, "%s:%d: %s, off the main thread", file,
                     line, what);
        atomic_store_explicit(&tio_off_ready, 1, memory_order_release);
    }
    return false;
}

static inline bool tio_check_eq_(long long a, long long b, const char *file, int line,
                                 const char *what)
{
    return tio_check_(a == b, file, line, what, a, b, 1);
}

/* Each argument is evaluated exactly once. */
#define TIO_CHECK(c) tio_check_((c) != 0, __FILE__, __LINE__, #c, 0, 0, 0)
#define TIO_CHECK_EQ(a, b)                                                                      \
    tio_check_eq_((long long)(a), (long long)(b), __FILE__, __LINE__, #a " == " #b)

/* On the main thread: fail the test if a TIO_CHECK failed anywhere since the test began. */
static inline void tio_off_main_assert(void)
{
    if (atomic_load(&tio_off_fails) == 0)
        return;
    const char *m = atomic_load_explicit(&tio_off_ready, memory_order_acquire)
                        ? tio_off_msg
                        : "a check failed off the main thread";
    int n = atomic_exchange(&tio_off_fails, 0);
    fail_msg("%s [%d failed check(s)]", m, n);
}

static inline int tio_watchdog_setup(void **state)
{
    (void)state;
    atomic_store(&tio_off_fails, 0);
    atomic_store(&tio_off_ready, 0);
    atomic_store(&tio_progress, 0);
    tio_progress_seen = 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = tio_on_alarm;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    tio_window = tio_watchdog_secs();
    alarm(tio_window);
    return 0;
}

static inline int tio_watchdog_teardown(void **state)
{
    (void)state;
    alarm(0);
    tio_off_main_assert();
    return 0;
}

#define TIO_TEST(f) cmocka_unit_test_setup_teardown(f, tio_watchdog_setup, tio_watchdog_teardown)

/* TF_TEST_FILTER=pattern (cmocka's '*' and '?' wildcards) runs only the matching tests, e.g. to
 * loop one stress test while hunting a hang. Call at the top of main. */
static inline void tio_filter_from_env(void)
{
    const char *f = getenv("TF_TEST_FILTER");
    if (f && *f)
        cmocka_set_test_filter(f);
}

/* Iteration count: |plain| normally, divided for the slower sanitizer builds, overridable with
 * the environment variable |env|. */
static inline long tio_iters(const char *env, long plain, long asan_div, long tsan_div)
{
    const char *s = getenv(env);
    if (s && atol(s) > 0)
        return atol(s);
#if defined(TIO_TSAN)
    (void)asan_div;
    return plain / tsan_div;
#elif defined(TIO_ASAN)
    (void)tsan_div;
    return plain / asan_div;
#else
    (void)asan_div;
    (void)tsan_div;
    return plain;
#endif
}

static inline long long tio_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A counter other threads bump and a test waits on, with a deadline (never a bare sleep). */
typedef struct tio_ctr {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    long n;
} tio_ctr;

static inline void tio_ctr_init(tio_ctr *c)
{
    pthread_mutex_init(&c->mu, NULL);
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cv, &a);
    pthread_condattr_destroy(&a);
    c->n = 0;
}

static inline void tio_ctr_destroy(tio_ctr *c)
{
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
}

static inline void tio_ctr_add(tio_ctr *c, long d)
{
    pthread_mutex_lock(&c->mu);
    c->n += d;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static inline long tio_ctr_get(tio_ctr *c)
{
    pthread_mutex_lock(&c->mu);
    long n = c->n;
    pthread_mutex_unlock(&c->mu);
    return n;
}

/* True once the counter reaches |n|; false if |ms| milliseconds pass first. */
static inline bool tio_ctr_wait(tio_ctr *c, long n, long ms)
{
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    dl.tv_sec += ms / 1000;
    dl.tv_nsec += (ms % 1000) * 1000000;
    if (dl.tv_nsec >= 1000000000) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&c->mu);
    int rc = 0;
    while (c->n < n && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&c->cv, &c->mu, &dl);
    bool ok = c->n >= n;
    pthread_mutex_unlock(&c->mu);
    return ok;
}

/* A tiny deterministic PRNG for randomized tests (xorshift64*). */
static inline uint64_t tio_rand(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

#endif /* TCPFRAME_TEST_IO_UTIL_H */
