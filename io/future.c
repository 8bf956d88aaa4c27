/* io/future.c -- tf_promise / tf_future: one shared state, refcounted, futex-based waiting.
 *
 * The state word carries READY, WAITERS (someone sleeps on the futex) and CB (a then-callback
 * is registered). The promise writes the result fields, then publishes READY with an
 * acq_rel exchange; readers check READY with an acquire load before touching the fields, so a
 * ready future needs no lock. The then-callback fields are written before CB is set by CAS, and
 * the exchange that sets READY tells the completer whether CB was set first; if the CAS loses to
 * READY, then() runs the callback itself. Exactly one side runs it.
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#if defined(__SANITIZE_ADDRESS__)
#define TF_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TF_ASAN 1
#endif
#endif
#ifdef TF_ASAN
#include <sanitizer/asan_interface.h>
#define MEM_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define MEM_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define MEM_POISON(p, n) ((void)(p), (void)(n))
#define MEM_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

enum { F_READY = 1u, F_WAITERS = 2u, F_CB = 4u };

struct fstate {
    _Atomic uint32_t state;
    atomic_uint refs;
    atomic_bool claimed; /* a set is in progress or done: the first set wins */
    atomic_bool taken;   /* the owned pointer was handed to a reader */
    bool has_then;       /* future end only */
    tf_err err;
    int os_err; /* the OS error number beside err (0 if none) */
    size_t size;
    void *owned;
    tf_dtor dtor;
    tf_future_cb cb;
    void *cb_arg;
    struct fstate *wnext; /* on the completing loop thread's deferred-wake list */
    size_t extra;         /* bytes of the caller's after the state (tf__promise_new_with) */
};

/* Where the caller's extra bytes begin: after the state, aligned for any object. */
#define FS_HDR                                                                                     \
    ((sizeof(struct fstate) + _Alignof(max_align_t) - 1) / _Alignof(max_align_t) *                 \
     _Alignof(max_align_t))

/* Both ends are the same shared state; the distinct types keep callers honest. */
static struct fstate *fs_of_f(const tf_future *f)
{
    return (struct fstate *)(uintptr_t)f;
}
static struct fstate *fs_of_p(tf_promise *p)
{
    return (struct fstate *)(void *)p;
}

/* ---------------------------------------------------------------- futex and baton */

bool tf__futex_wait(_Atomic uint32_t *word, uint32_t val, uint64_t deadline_ns)
{
    struct timespec ts, *tsp = NULL;
    if (deadline_ns != TF__FOREVER) {
        ts.tv_sec = (time_t)(deadline_ns / 1000000000u);
        ts.tv_nsec = (long)(deadline_ns % 1000000000u);
        tsp = &ts;
    }
    /* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline: no recomputation on EINTR. */
    long rc = syscall(SYS_futex, (void *)(uintptr_t)word, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG,
                      val, tsp, NULL, FUTEX_BITSET_MATCH_ANY);
    return !(rc < 0 && errno == ETIMEDOUT);
}

void tf__futex_wake(_Atomic uint32_t *word)
{
    syscall(SYS_futex, (void *)(uintptr_t)word, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, INT_MAX, NULL,
            NULL, 0);
}

void tf__baton_post(_Atomic uint32_t *b)
{
    if (atomic_exchange_explicit(b, 1u, memory_order_acq_rel) == 2u)
        tf__futex_wake(b);
}

/* Polls of the baton before the waiter parks in the kernel (20k pauses: about 0.2 ms here). A
 * dispatch_and_wait hand-off usually completes within that, so the waiter rarely sleeps and only
 * the loop thread pays a wake-up. On an idle 2-vCPU VM, where every wake-up of a halted vCPU is
 * slow, this halves the round trip (1M round trips: 36 s without the poll, 18 s with it). */
#define BATON_SPINS 20000u

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

bool tf__baton_wait(_Atomic uint32_t *b, uint64_t deadline_ns)
{
    tf__future_flush_wakes(); /* a loop thread about to block owes its waiters their wake-up */
    uint32_t s = atomic_load_explicit(b, memory_order_acquire);
    for (unsigned i = 0; s != 1u && i < BATON_SPINS; i++) {
        cpu_relax();
        s = atomic_load_explicit(b, memory_order_acquire);
    }
    while (s != 1u) {
        if (s == 0u && !atomic_compare_exchange_weak_explicit(b, &s, 2u, memory_order_acquire,
                                                              memory_order_acquire))
            continue;
        if (!tf__futex_wait(b, 2u, deadline_ns))
            return atomic_load_explicit(b, memory_order_acquire) == 1u;
        s = atomic_load_explicit(b, memory_order_acquire);
    }
    return true;
}

/* ---------------------------------------------------------------- shared state */

/* A per-thread cache of the states made by tf__promise_new_with (one size: POOL_EXTRA bytes for
 * the caller, room for an async op record), so that a thread that submits operations in a
 * steady stream reuses the states it dropped instead of going through malloc each time (the
 * states of a 512-deep window overflow malloc's own per-thread cache). A state goes to the cache
 * of the thread that drops its last reference; at most POOL_MAX per thread (the rest are freed),
 * freed at thread exit. Off under ASan (a use after free of a future must be reported) and while
 * a test's syscall hook is set (its allocation failures must reach every operation). */
#define POOL_EXTRA 192u
#define POOL_MAX 256u
#ifndef TF_ASAN
#define TF_POOL 1
#endif

#ifdef TF_POOL
typedef struct fs_pool {
    struct fstate *head;
    unsigned n;
    bool keyed;
} fs_pool;

static _Thread_local fs_pool pool;
static pthread_key_t pool_key;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;
static bool pool_key_ok;

static void pool_drain(void *arg)
{
    fs_pool *p = arg;
    while (p->head) {
        struct fstate *s = p->head;
        p->head = s->wnext;
        free(s);
    }
    p->n = 0;
    p->keyed = false; /* a state dropped by a later destructor registers the drain again */
}

static void pool_init(void)
{
    pool_key_ok = pthread_key_create(&pool_key, pool_drain) == 0;
}

static bool pool_on(void)
{
    return atomic_load_explicit(&tf__sys_hook, memory_order_relaxed) == NULL;
}

/* Keep |s| (its last reference is gone) for reuse by this thread; false: free it. */
static bool pool_put(struct fstate *s)
{
    if (pool.n >= POOL_MAX || !pool_on())
        return false;
    if (!pool.keyed) { /* the thread's exit frees what it holds */
        pthread_once(&pool_once, pool_init);
        if (!pool_key_ok || pthread_setspecific(pool_key, &pool) != 0)
            return false;
        pool.keyed = true;
    }
    s->wnext = pool.head;
    pool.head = s;
    pool.n++;
    return true;
}

static struct fstate *pool_get(void)
{
    struct fstate *s = pool.head;
    if (!s || !pool_on())
        return NULL;
    pool.head = s->wnext;
    pool.n--;
    memset(s, 0, FS_HDR + POOL_EXTRA);
    return s;
}
#endif

static void fs_unref(struct fstate *s)
{
    if (atomic_fetch_sub_explicit(&s->refs, 1u, memory_order_acq_rel) != 1u)
        return;
    if (s->owned && s->dtor && !atomic_load_explicit(&s->taken, memory_order_relaxed))
        s->dtor(s->owned);
    if (s->extra)
        MEM_UNPOISON((char *)s + FS_HDR, s->extra);
#ifdef TF_POOL
    if (s->extra && pool_put(s))
        return;
#endif
    free(s);
}

static struct fstate *fs_new(unsigned refs, size_t extra)
{
    struct fstate *s = NULL;
#ifdef TF_POOL
    if (extra) { /* one size for every pooled state */
        if (extra > POOL_EXTRA)
            return NULL; /* tf__promise_new_with's callers ask for an op record */
        extra = POOL_EXTRA;
        s = pool_get();
    }
#endif
    if (!s)
        s = tf__calloc(1, extra ? FS_HDR + extra : sizeof *s);
    if (s) {
        atomic_init(&s->refs, refs);
        s->extra = extra;
    }
    return s;
}

/* Deferred wake-ups (loop threads only). A loop thread that completes a future somebody sleeps
 * on publishes READY at once but delays the futex wake to the end of its loop iteration
 * (tf__future_flush_wakes, called by the loop before it polls again, at its drain and before it
 * blocks): the futures completed in one iteration are then woken together, so a thread waiting
 * on a batch of them in turn is woken once per iteration instead of once per future, and sleeps
 * less often. Each deferred state holds a reference until its wake. Only states whose owned
 * pointer has no destructor or free() are deferred, so that the last reference dropped by the
 * flush never runs a destructor that could block the loop. */
static _Thread_local struct fstate *wake_head;

static void fs_unref(struct fstate *s);

void tf__future_flush_wakes(void)
{
    struct fstate *s;
    while ((s = wake_head) != NULL) {
        wake_head = s->wnext;
        tf__futex_wake(&s->state);
        fs_unref(s);
    }
}

/* Wake the threads asleep on |s| (READY is published): now, or -- |defer|: the library's own
 * operation futures (tf__promise_set_deferred) -- on a loop thread at the end of its iteration.
 * A user's tf_promise_set wakes at once, as future.h says, wherever it runs. */
static void wake_waiters(struct fstate *s, tf_dtor dtor, bool defer)
{
    if (defer && tf__evb_current() && (!dtor || dtor == free)) {
        atomic_fetch_add_explicit(&s->refs, 1u, memory_order_relaxed); /* the caller holds one */
        s->wnext = wake_head;
        wake_head = s;
    } else {
        tf__futex_wake(&s->state);
    }
}

/* Publish the result; the caller won the claim. */
static void complete(struct fstate *s, tf_err err, size_t size, void *owned, tf_dtor dtor,
                     bool defer)
{
    s->err = err;
    s->size = size;
    s->owned = owned;
    s->dtor = dtor;
    uint32_t old = atomic_exchange_explicit(&s->state, F_READY, memory_order_acq_rel);
    if (old & F_WAITERS)
        wake_waiters(s, dtor, defer);
    if (old & F_CB) {
        s->cb((tf_future *)(void *)s, s->cb_arg);
        fs_unref(s); /* the callback's reference */
    }
}

tf_err tf_promise_new(tf_promise **p, tf_future **f)
{
    if (!p || !f)
        return TF_ERR_INVALID_ARGUMENT;
    struct fstate *s = fs_new(2, 0);
    *p = (tf_promise *)(void *)s;
    *f = (tf_future *)(void *)s;
    return s ? TF_OK : TF_ERR_NOMEM;
}

tf_err tf__promise_new_with(size_t extra, tf_promise **p, tf_future **f, void **mem)
{
    struct fstate *s = fs_new(2, extra ? extra : 1);
    *p = (tf_promise *)(void *)s;
    *f = (tf_future *)(void *)s;
    *mem = s ? (char *)s + FS_HDR : NULL;
    return s ? TF_OK : TF_ERR_NOMEM;
}

void tf__promise_mem_done(void *mem, size_t extra)
{
    MEM_POISON(mem, extra);
}

tf_err tf_future_new_ready(tf_future **f, tf_err err, size_t size, void *owned, tf_dtor dtor)
{
    if (!f)
        return TF_ERR_INVALID_ARGUMENT;
    struct fstate *s = fs_new(1, 0);
    *f = (tf_future *)(void *)s;
    if (!s)
        return TF_ERR_NOMEM;
    atomic_init(&s->claimed, true);
    s->err = err;
    s->size = size;
    s->owned = owned;
    s->dtor = dtor;
    atomic_init(&s->state, F_READY);
    return TF_OK;
}

static tf_err promise_set(tf_promise *p, tf_err err, size_t size, void *owned, tf_dtor dtor,
                          bool defer)
{
    if (!p)
        return TF_ERR_INVALID_ARGUMENT;
    struct fstate *s = fs_of_p(p);
    if (atomic_exchange_explicit(&s->claimed, true, memory_order_acq_rel))
        return TF_ERR_BAD_STATE;
    complete(s, err, size, owned, dtor, defer);
    return TF_OK;
}

tf_err tf_promise_set(tf_promise *p, tf_err err, size_t size, void *owned, tf_dtor dtor)
{
    return promise_set(p, err, size, owned, dtor, false);
}

tf_err tf__promise_set_deferred(tf_promise *p, tf_err err, size_t size, void *owned,
                                tf_dtor dtor)
{
    return promise_set(p, err, size, owned, dtor, true);
}

static tf_err promise_fail(tf_promise *p, tf_err err, int os_err, bool defer)
{
    if (!p)
        return TF_ERR_INVALID_ARGUMENT;
    struct fstate *s = fs_of_p(p);
    if (atomic_exchange_explicit(&s->claimed, true, memory_order_acq_rel))
        return TF_ERR_BAD_STATE;
    s->os_err = os_err; /* published with READY by complete() */
    complete(s, err, 0, NULL, NULL, defer);
    return TF_OK;
}

tf_err tf_promise_fail(tf_promise *p, tf_err err, int os_err)
{
    return promise_fail(p, err, os_err, false);
}

tf_err tf__promise_fail_deferred(tf_promise *p, tf_err err, int os_err)
{
    return promise_fail(p, err, os_err, true);
}

int tf_future_os_err(const tf_future *f)
{
    if (!f)
        return 0;
    const struct fstate *s = fs_of_f(f);
    if (!(atomic_load_explicit(&s->state, memory_order_acquire) & F_READY))
        return 0;
    return s->os_err;
}

void tf_promise_free(tf_promise *p)
{
    if (!p)
        return;
    struct fstate *s = fs_of_p(p);
    if (!atomic_exchange_explicit(&s->claimed, true, memory_order_acq_rel))
        complete(s, TF_ERR_CANCELLED, 0, NULL, NULL, false);
    fs_unref(s);
}

/* ---------------------------------------------------------------- future end */

bool tf_future_is_ready(const tf_future *f)
{
    return f && (atomic_load_explicit(&fs_of_f(f)->state, memory_order_acquire) & F_READY);
}

static tf_err wait_until(struct fstate *s, uint64_t deadline_ns, bool may_block)
{
    uint32_t st = atomic_load_explicit(&s->state, memory_order_acquire);
    if (st & F_READY)
        return TF_OK; /* the fast path: one acquire load */
    if (!may_block)
        return TF_ERR_TIMEOUT;
    if (tf__evb_current())
        return TF_ERR_BAD_STATE;
    while (!(st & F_READY)) {
        if (!(st & F_WAITERS) &&
            !atomic_compare_exchange_weak_explicit(&s->state, &st, st | F_WAITERS,
                                                   memory_order_acquire, memory_order_acquire))
            continue;
        if (!tf__futex_wait(&s->state, st | F_WAITERS, deadline_ns) &&
            !(atomic_load_explicit(&s->state, memory_order_acquire) & F_READY))
            return TF_ERR_TIMEOUT;
        st = atomic_load_explicit(&s->state, memory_order_acquire);
    }
    return TF_OK;
}

bool tf__future_waited(const tf_future *f)
{
    return atomic_load_explicit(&fs_of_f(f)->state, memory_order_acquire) & F_WAITERS;
}

tf_err tf_future_wait(tf_future *f)
{
    if (!f)
        return TF_ERR_INVALID_ARGUMENT;
    return wait_until(fs_of_f(f), TF__FOREVER, true);
}

tf_err tf_future_wait_for(tf_future *f, uint32_t timeout_ms)
{
    if (!f)
        return TF_ERR_INVALID_ARGUMENT;
    uint64_t deadline = timeout_ms ? tf__now_ns() + (uint64_t)timeout_ms * 1000000u : 0;
    return wait_until(fs_of_f(f), deadline, timeout_ms > 0);
}

tf_err tf_future_get(tf_future *f, size_t *size, void **owned)
{
    if (size)
        *size = 0;
    if (owned)
        *owned = NULL;
    if (!f)
        return TF_ERR_INVALID_ARGUMENT;
    struct fstate *s = fs_of_f(f);
    tf_err rc = wait_until(s, TF__FOREVER, true);
    if (rc != TF_OK)
        return rc;
    if (size)
        *size = s->size;
    if (owned && s->owned && !atomic_exchange_explicit(&s->taken, true, memory_order_acq_rel))
        *owned = s->owned;
    return s->err;
}

tf_err tf_future_then(tf_future *f, tf_future_cb cb, void *arg)
{
    if (!f || !cb)
        return TF_ERR_INVALID_ARGUMENT;
    struct fstate *s = fs_of_f(f);
    if (s->has_then)
        return TF_ERR_BUSY;
    s->has_then = true;
    uint32_t st = atomic_load_explicit(&s->state, memory_order_acquire);
    if (!(st & F_READY)) {
        s->cb = cb;
        s->cb_arg = arg;
        atomic_fetch_add_explicit(&s->refs, 1u, memory_order_relaxed);
        while (!(st & F_READY)) {
            if (atomic_compare_exchange_weak_explicit(&s->state, &st, st | F_CB,
                                                      memory_order_acq_rel, memory_order_acquire))
                return TF_OK;
        }
        /* The promise completed first and did not see F_CB: the callback is ours to run. */
        atomic_fetch_sub_explicit(&s->refs, 1u, memory_order_relaxed);
    }
    cb(f, arg);
    return TF_OK;
}

void tf_future_free(tf_future *f)
{
    if (f)
        fs_unref(fs_of_f(f));
}
