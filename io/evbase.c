/* io/evbase.c -- tf_evb: epoll + one eventfd, a mutex-guarded dispatch queue, fd watches
 * keyed by (fd, generation), and a binary heap of timers.
 *
 * No lost wake-up: a producer appends under |mu| and, still under |mu|, flips |pending| from
 * false to true and writes the eventfd only if it flipped it. The loop reads the eventfd, clears
 * |pending| (seq_cst), and only then takes |mu| to swap the queue out. A producer whose task
 * missed that swap appended after the loop released |mu|, hence after the clear: its exchange
 * reads false (it writes) or true set by a later producer (who writes). Either way the eventfd
 * fires again. The write happens under |mu| so that stop()/free() (which take |mu|) cannot
 * close the eventfd under a producer that is between its append and its write.
 *
 * A task dispatched from the loop thread itself needs no wake-up at all: the loop is awake. It
 * sets |self_queued| (loop thread only), and the loop runs the queue at the end of this
 * iteration and polls (epoll_wait with timeout 0) instead of sleeping while it is set. That
 * saves the eventfd write, the read and an epoll turn per self-dispatch (a callback that
 * continues its work through tf_evb_dispatch).
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

enum { ST_INIT, ST_RUNNING, ST_STOPPING, ST_STOPPED };
enum { T_ARMED, T_FIRED, T_CANCELLED };

#define WAKE_ID UINT64_MAX /* epoll_data of the eventfd; fds never have all-ones low bits */
#define NO_IDX SIZE_MAX
#define MAX_EVENTS 64

typedef struct task {
    tf_evb_fn fn;
    void *arg;
} task;

typedef struct taskvec {
    task *v;
    size_t n, cap;
} taskvec;

/* One entry per fd number, kept after unregister so its ticket survives. Loop thread only. */
typedef struct slot {
    tf_evb_fd_cb cb;
    void *arg;
    uint64_t ticket; /* ticket of the last call applied to this fd */
    uint32_t gen;    /* bumped by every (re)registration and unregistration */
    bool active;
} slot;

struct tf_evb_timer {
    tf_evb *evb;
    tf_evb_timer_cb cb;
    void *arg;
    uint64_t deadline, seq;
    size_t idx; /* heap index (loop thread only), NO_IDX when not in the heap */
    _Atomic uint32_t state;
    atomic_uint refs;
};

struct tf_evb {
    int epfd, wakefd;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* signalled when state becomes STOPPED and when the join is done */
    taskvec q;         /* under mu */
    _Atomic int state; /* written under mu */
    atomic_bool pending;
    bool has_thread, join_claimed, joined; /* under mu */
    pthread_t thread;
    atomic_uint_fast64_t ticket, timer_seq;
    atomic_uint_fast64_t wakes; /* eventfd writes, for tests */
    /* loop thread only */
    bool self_queued; /* a task was queued from the loop thread, without a wake-up */
    taskvec run;
    slot *slots;
    size_t nslots;
    tf_evb_timer **heap;
    size_t nheap, capheap;
    tf__evb_hook *hooks; /* stop hooks (internal.h) */
    /* The struct's memory (and mu, cv) outlives tf_evb_free while timers exist: one reference
     * for the owner and one per timer, so a cancel from another thread that won its state
     * change just before the loop stopped can still take mu safely (it then finds the loop
     * stopped and queues nothing). */
    atomic_uint mem_refs;
};

/* A fd watch request queued from another thread. */
typedef struct fdop {
    tf_evb *evb;
    int fd;
    bool reg;
    unsigned events;
    tf_evb_fd_cb cb;
    void *arg;
    uint64_t ticket;
} fdop;

typedef struct waiter {
    tf_evb_fn fn;
    void *arg;
    _Atomic uint32_t done;
} waiter;

static _Thread_local tf_evb *cur;

tf_evb *tf__evb_current(void)
{
    return cur;
}

uint64_t tf__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int state_of(const tf_evb *evb)
{
    return atomic_load_explicit(&evb->state, memory_order_acquire);
}

static void set_state(tf_evb *evb, int st)
{
    atomic_store_explicit(&evb->state, st, memory_order_release);
}

static void wake(tf_evb *evb)
{
    atomic_fetch_add_explicit(&evb->wakes, 1u, memory_order_relaxed);
    while (tf__sys_eventfd_write(evb->wakefd) < 0 && errno == EINTR) {
    }
}

/* ---------------------------------------------------------------- queue */

static bool vec_push(taskvec *q, tf_evb_fn fn, void *arg)
{
    if (q->n == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 64;
        task *v = realloc(q->v, cap * sizeof *v);
        if (!v)
            return false;
        q->v = v;
        q->cap = cap;
    }
    q->v[q->n++] = (task){fn, arg};
    return true;
}

static tf_err enqueue(tf_evb *evb, tf_evb_fn fn, void *arg)
{
    tf_err rc = TF_OK;
    pthread_mutex_lock(&evb->mu);
    if (state_of(evb) >= ST_STOPPING)
        rc = TF_ERR_SHUTDOWN;
    else if (!vec_push(&evb->q, fn, arg))
        rc = TF_ERR_NOMEM;
    else if (cur == evb)
        evb->self_queued = true; /* we are the loop: it runs the queue before it sleeps */
    /* The plain load first skips the locked exchange while a wake-up is already pending. It is
     * safe under |mu|: if the loop's clear happened before its last swap, our lock acquisition
     * orders that clear before this load, so we cannot read a stale true. */
    else if (!atomic_load_explicit(&evb->pending, memory_order_relaxed) &&
             !atomic_exchange_explicit(&evb->pending, true, memory_order_acq_rel))
        wake(evb);
    pthread_mutex_unlock(&evb->mu);
    return rc;
}

/* Run everything queued so far; work queued by these functions waits for the next wake-up. */
static size_t run_queue(tf_evb *evb)
{
    pthread_mutex_lock(&evb->mu);
    taskvec t = evb->q;
    evb->q = evb->run;
    evb->run = t;
    pthread_mutex_unlock(&evb->mu);
    size_t n = evb->run.n;
    for (size_t i = 0; i < n; i++)
        evb->run.v[i].fn(evb->run.v[i].arg);
    evb->run.n = 0;
    return n;
}

static void on_wake(tf_evb *evb)
{
    uint64_t cnt;
    while (read(evb->wakefd, &cnt, sizeof cnt) < 0 && errno == EINTR) {
    }
    atomic_store_explicit(&evb->pending, false, memory_order_seq_cst);
    run_queue(evb);
}

/* ---------------------------------------------------------------- timers heap */

static bool t_before(const tf_evb_timer *a, const tf_evb_timer *b)
{
    return a->deadline < b->deadline || (a->deadline == b->deadline && a->seq < b->seq);
}

static void heap_set(tf_evb *evb, size_t i, tf_evb_timer *t)
{
    evb->heap[i] = t;
    t->idx = i;
}

static void sift_up(tf_evb *evb, size_t i)
{
    tf_evb_timer *t = evb->heap[i];
    while (i > 0 && t_before(t, evb->heap[(i - 1) / 2])) {
        heap_set(evb, i, evb->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    heap_set(evb, i, t);
}

static void sift_down(tf_evb *evb, size_t i)
{
    tf_evb_timer *t = evb->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= evb->nheap)
            break;
        if (c + 1 < evb->nheap && t_before(evb->heap[c + 1], evb->heap[c]))
            c++;
        if (!t_before(evb->heap[c], t))
            break;
        heap_set(evb, i, evb->heap[c]);
        i = c;
    }
    heap_set(evb, i, t);
}

static bool heap_push(tf_evb *evb, tf_evb_timer *t)
{
    if (evb->nheap == evb->capheap) {
        size_t cap = evb->capheap ? evb->capheap * 2 : 16;
        tf_evb_timer **h = realloc(evb->heap, cap * sizeof *h);
        if (!h)
            return false;
        evb->heap = h;
        evb->capheap = cap;
    }
    heap_set(evb, evb->nheap++, t);
    sift_up(evb, evb->nheap - 1);
    return true;
}

static void heap_remove(tf_evb *evb, tf_evb_timer *t)
{
    size_t i = t->idx;
    t->idx = NO_IDX;
    tf_evb_timer *last = evb->heap[--evb->nheap];
    if (i == evb->nheap)
        return;
    heap_set(evb, i, last);
    if (i > 0 && t_before(last, evb->heap[(i - 1) / 2]))
        sift_up(evb, i);
    else
        sift_down(evb, i);
}

static void evb_mem_unref(tf_evb *evb)
{
    if (atomic_fetch_sub_explicit(&evb->mem_refs, 1u, memory_order_acq_rel) != 1u)
        return;
    pthread_cond_destroy(&evb->cv);
    pthread_mutex_destroy(&evb->mu);
    free(evb);
}

static void timer_unref(tf_evb_timer *t)
{
    if (atomic_fetch_sub_explicit(&t->refs, 1u, memory_order_acq_rel) == 1u) {
        tf_evb *evb = t->evb;
        free(t);
        evb_mem_unref(evb);
    }
}

static bool timer_cas(tf_evb_timer *t, uint32_t to)
{
    uint32_t exp = T_ARMED;
    return atomic_compare_exchange_strong_explicit(&t->state, &exp, to, memory_order_acq_rel,
                                                   memory_order_acquire);
}

static void timer_insert_task(void *p)
{
    tf_evb_timer *t = p;
    if (atomic_load_explicit(&t->state, memory_order_acquire) != T_ARMED || !heap_push(t->evb, t)) {
        /* Cancelled before it reached the loop, or no memory (then it can never fire: mark it
         * cancelled so a later cancel reports BAD_STATE instead of a false promise). */
        timer_cas(t, T_CANCELLED);
        timer_unref(t);
    }
}

static void timer_remove_task(void *p)
{
    tf_evb_timer *t = p;
    if (t->idx != NO_IDX) {
        heap_remove(t->evb, t);
        timer_unref(t); /* the heap's reference */
    }
    timer_unref(t); /* this task's reference */
}

/* Milliseconds until the earliest live timer (rounded up), or -1. */
static int next_timeout(tf_evb *evb)
{
    while (evb->nheap &&
           atomic_load_explicit(&evb->heap[0]->state, memory_order_acquire) != T_ARMED) {
        tf_evb_timer *t = evb->heap[0];
        heap_remove(evb, t);
        timer_unref(t);
    }
    if (!evb->nheap)
        return -1;
    uint64_t now = tf__now_ns(), dl = evb->heap[0]->deadline;
    if (dl <= now)
        return 0;
    uint64_t ms = (dl - now + 999999u) / 1000000u;
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

static void fire_timers(tf_evb *evb)
{
    uint64_t now = tf__now_ns();
    while (evb->nheap && evb->heap[0]->deadline <= now && state_of(evb) == ST_RUNNING) {
        tf_evb_timer *t = evb->heap[0];
        heap_remove(evb, t);
        if (timer_cas(t, T_FIRED))
            t->cb(evb, t->arg);
        timer_unref(t);
    }
}

/* ---------------------------------------------------------------- fd watches */

static bool slots_reserve(tf_evb *evb, int fd)
{
    size_t need = (size_t)fd + 1;
    if (need <= evb->nslots)
        return true;
    size_t n = evb->nslots ? evb->nslots : 64;
    while (n < need)
        n *= 2;
    slot *s = realloc(evb->slots, n * sizeof *s);
    if (!s)
        return false;
    memset(s + evb->nslots, 0, (n - evb->nslots) * sizeof *s);
    evb->slots = s;
    evb->nslots = n;
    return true;
}

static uint32_t to_epoll(unsigned ev)
{
    return ((ev & TF_EVB_READ) ? (uint32_t)(EPOLLIN | EPOLLRDHUP) : 0u) |
           ((ev & TF_EVB_WRITE) ? (uint32_t)EPOLLOUT : 0u);
}

static unsigned from_epoll(uint32_t ev)
{
    return ((ev & EPOLLIN) ? TF_EVB_READ : 0u) | ((ev & EPOLLOUT) ? TF_EVB_WRITE : 0u) |
           ((ev & EPOLLERR) ? TF_EVB_ERROR : 0u) |
           ((ev & (EPOLLHUP | EPOLLRDHUP)) ? TF_EVB_HUP : 0u);
}

static void drop_watch(tf_evb *evb, int fd)
{
    slot *s = &evb->slots[fd];
    if (!s->active)
        return;
    /* Fails harmlessly (EBADF/ENOENT) if the caller closed the fd first. */
    tf__sys_epoll_ctl(evb->epfd, EPOLL_CTL_DEL, fd, NULL);
    s->active = false;
    s->gen++;
}

/* Apply a register (cb != NULL) or unregister call with |ticket| on the loop thread. */
static tf_err apply_fd(tf_evb *evb, int fd, unsigned events, tf_evb_fd_cb cb, void *arg,
                       uint64_t ticket)
{
    if (!slots_reserve(evb, fd))
        return TF_ERR_NOMEM;
    slot *s = &evb->slots[fd];
    if (ticket < s->ticket)
        return TF_OK; /* a later call for this fd was applied already: this one is superseded */
    s->ticket = ticket;
    if (!cb) {
        drop_watch(evb, fd);
        return TF_OK;
    }
    uint32_t gen = s->gen + 1;
    struct epoll_event ev = {.events = to_epoll(events),
                             .data.u64 = (uint64_t)gen << 32 | (uint32_t)fd};
    int rc = tf__sys_epoll_ctl(evb->epfd, s->active ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev);
    /* The fd number may have been closed and reused behind our back: fall over to the other op. */
    if (rc < 0 && (errno == ENOENT || errno == EEXIST))
        rc = tf__sys_epoll_ctl(evb->epfd, errno == ENOENT ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev);
    if (rc < 0) {
        int e = errno;
        drop_watch(evb, fd);
        s->gen = gen;
        errno = e;
        return TF_ERR_IO;
    }
    s->gen = gen;
    s->cb = cb;
    s->arg = arg;
    s->active = true;
    return TF_OK;
}

static void fdop_task(void *p)
{
    fdop *op = p;
    tf_err rc = apply_fd(op->evb, op->fd, op->events, op->reg ? op->cb : NULL, op->arg, op->ticket);
    if (rc != TF_OK && op->reg)
        op->cb(op->evb, op->fd, TF_EVB_ERROR, op->arg);
    free(op);
}

static void on_fd_event(tf_evb *evb, const struct epoll_event *e)
{
    int fd = (int)(uint32_t)e->data.u64;
    uint32_t gen = (uint32_t)(e->data.u64 >> 32);
    if ((size_t)fd >= evb->nslots)
        return;
    slot *s = &evb->slots[fd];
    /* A stale event of an earlier registration of this fd number (unregistered, replaced, or
     * closed and reused in this same batch) carries an old generation: drop it. */
    if (!s->active || s->gen != gen)
        return;
    s->cb(evb, fd, from_epoll(e->events), s->arg);
}

/* ---------------------------------------------------------------- loop */

static void drain_and_close(tf_evb *evb)
{
    for (;;) {
        pthread_mutex_lock(&evb->mu);
        bool empty = evb->q.n == 0;
        pthread_mutex_unlock(&evb->mu);
        if (empty)
            break;
        run_queue(evb);
    }
    /* Stop hooks: objects built on the loop (connections, servers) fail what they have in
     * flight with SHUTDOWN. Each is unlinked before it runs; work they queue is refused. */
    while (evb->hooks) {
        tf__evb_hook *h = evb->hooks;
        tf__evb_hook_remove(evb, h);
        h->fn(h->arg);
    }
    for (size_t fd = 0; fd < evb->nslots; fd++)
        drop_watch(evb, (int)fd);
    while (evb->nheap) {
        tf_evb_timer *t = evb->heap[evb->nheap - 1];
        evb->nheap--;
        t->idx = NO_IDX;
        timer_cas(t, T_CANCELLED);
        timer_unref(t);
    }
    tf__future_flush_wakes(); /* what the drain and the stop hooks completed */
    pthread_mutex_lock(&evb->mu);
    set_state(evb, ST_STOPPED);
    pthread_cond_broadcast(&evb->cv);
    pthread_mutex_unlock(&evb->mu);
}

static tf_err run_loop(tf_evb *evb)
{
    struct epoll_event evs[MAX_EVENTS];
    tf_err rc = TF_OK;
    int err = 0;
    cur = evb;
    while (state_of(evb) == ST_RUNNING) {
        tf__future_flush_wakes(); /* the futures this iteration completed, woken together */
        int n = epoll_wait(evb->epfd, evs, MAX_EVENTS, evb->self_queued ? 0 : next_timeout(evb));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            err = errno;
            rc = TF_ERR_IO;
            tf_evb_stop(evb); /* we are the loop thread: this only sets STOPPING */
            break;
        }
        for (int i = 0; i < n; i++) {
            if (evs[i].data.u64 == WAKE_ID)
                on_wake(evb);
            else
                on_fd_event(evb, &evs[i]);
        }
        if (evb->self_queued) {
            evb->self_queued = false; /* tasks that run now may set it again */
            run_queue(evb);
        }
        tf__perturb(); /* test builds only (TF_PERTURB): a loop iteration of uneven length */
        fire_timers(evb);
    }
    drain_and_close(evb);
    cur = NULL;
    if (rc != TF_OK)
        errno = err;
    return rc;
}

static void *thread_main(void *p)
{
    run_loop(p);
    return NULL;
}

tf_err tf_evb_new(tf_evb **out)
{
    if (!out)
        return TF_ERR_INVALID_ARGUMENT;
    *out = NULL;
    tf_evb *evb = calloc(1, sizeof *evb);
    if (!evb)
        return TF_ERR_NOMEM;
    evb->epfd = epoll_create1(EPOLL_CLOEXEC);
    evb->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = WAKE_ID};
    if (evb->epfd < 0 || evb->wakefd < 0 ||
        tf__sys_epoll_ctl(evb->epfd, EPOLL_CTL_ADD, evb->wakefd, &ev) < 0) {
        int e = errno;
        if (evb->epfd >= 0)
            close(evb->epfd);
        if (evb->wakefd >= 0)
            close(evb->wakefd);
        free(evb);
        errno = e;
        return TF_ERR_IO;
    }
    pthread_mutex_init(&evb->mu, NULL);
    pthread_cond_init(&evb->cv, NULL);
    atomic_init(&evb->state, ST_INIT);
    atomic_init(&evb->mem_refs, 1u);
    *out = evb;
    return TF_OK;
}

tf_err tf_evb_free(tf_evb *evb)
{
    if (!evb)
        return TF_OK;
    if (cur == evb)
        return TF_ERR_BAD_STATE; /* it would join itself: refuse, change nothing */
    tf_evb_stop(evb);
    close(evb->epfd);
    close(evb->wakefd);
    pthread_mutex_lock(&evb->mu); /* a late cancel may be inside enqueue (it queues nothing) */
    free(evb->q.v);
    evb->q.v = NULL;
    evb->q.n = evb->q.cap = 0;
    pthread_mutex_unlock(&evb->mu);
    free(evb->run.v);
    free(evb->slots);
    free(evb->heap);
    evb_mem_unref(evb);
    return TF_OK;
}

tf_err tf_evb_start(tf_evb *evb)
{
    if (!evb)
        return TF_ERR_INVALID_ARGUMENT;
    tf_err rc = TF_OK;
    pthread_mutex_lock(&evb->mu);
    int st = state_of(evb);
    if (st == ST_RUNNING)
        rc = TF_ERR_BAD_STATE;
    else if (st != ST_INIT)
        rc = TF_ERR_SHUTDOWN;
    else {
        /* Under mu, so a failed create can revert before anyone sees RUNNING. */
        set_state(evb, ST_RUNNING);
        int e = pthread_create(&evb->thread, NULL, thread_main, evb);
        if (e) {
            set_state(evb, ST_INIT);
            errno = e;
            rc = TF_ERR_IO;
        } else
            evb->has_thread = true;
    }
    pthread_mutex_unlock(&evb->mu);
    return rc;
}

tf_err tf_evb_loop(tf_evb *evb)
{
    if (!evb)
        return TF_ERR_INVALID_ARGUMENT;
    if (cur)
        return TF_ERR_BAD_STATE;
    pthread_mutex_lock(&evb->mu);
    int st = state_of(evb);
    if (st == ST_INIT)
        set_state(evb, ST_RUNNING);
    pthread_mutex_unlock(&evb->mu);
    if (st == ST_RUNNING)
        return TF_ERR_BAD_STATE;
    if (st != ST_INIT)
        return TF_ERR_SHUTDOWN;
    return run_loop(evb);
}

tf_err tf_evb_stop(tf_evb *evb)
{
    if (!evb)
        return TF_ERR_INVALID_ARGUMENT;
    pthread_mutex_lock(&evb->mu);
    int st = state_of(evb);
    if (st == ST_INIT) {
        /* Nobody will ever run this loop: drain here, as its loop thread. */
        set_state(evb, ST_STOPPING);
        pthread_mutex_unlock(&evb->mu);
        tf_evb *saved = cur;
        cur = evb;
        drain_and_close(evb);
        cur = saved;
        return TF_OK;
    }
    if (st == ST_RUNNING) {
        set_state(evb, ST_STOPPING);
        wake(evb);
    }
    if (cur == evb) {
        pthread_mutex_unlock(&evb->mu);
        return TF_OK;
    }
    tf__future_flush_wakes(); /* a loop thread about to block (on another loop) wakes its waiters */
    while (state_of(evb) != ST_STOPPED)
        pthread_cond_wait(&evb->cv, &evb->mu);
    if (evb->has_thread) {
        if (!evb->join_claimed) {
            evb->join_claimed = true;
            pthread_mutex_unlock(&evb->mu);
            pthread_join(evb->thread, NULL);
            pthread_mutex_lock(&evb->mu);
            evb->joined = true;
            pthread_cond_broadcast(&evb->cv);
        }
        while (!evb->joined)
            pthread_cond_wait(&evb->cv, &evb->mu);
    }
    pthread_mutex_unlock(&evb->mu);
    return TF_OK;
}

bool tf_evb_is_running(const tf_evb *evb)
{
    return evb && state_of(evb) == ST_RUNNING;
}

bool tf_evb_in_loop_thread(const tf_evb *evb)
{
    return evb && cur == evb;
}

/* ---------------------------------------------------------------- dispatch */

tf_err tf_evb_dispatch(tf_evb *evb, tf_evb_fn fn, void *arg)
{
    if (!evb || !fn)
        return TF_ERR_INVALID_ARGUMENT;
    return enqueue(evb, fn, arg);
}

tf_err tf_evb_dispatch_inline(tf_evb *evb, tf_evb_fn fn, void *arg)
{
    if (!evb || !fn)
        return TF_ERR_INVALID_ARGUMENT;
    if (cur == evb) {
        fn(arg);
        return TF_OK;
    }
    return enqueue(evb, fn, arg);
}

static void waiter_task(void *p)
{
    waiter *w = p;
    w->fn(w->arg);
    tf__baton_post(&w->done); /* after this, *w may be gone */
}

static tf_err run_and_wait(tf_evb *evb, tf_evb_fn fn, void *arg);

tf_err tf_evb_dispatch_and_wait(tf_evb *evb, tf_evb_fn fn, void *arg)
{
    if (!evb || !fn)
        return TF_ERR_INVALID_ARGUMENT;
    if (cur && cur != evb)
        return TF_ERR_BAD_STATE;
    return run_and_wait(evb, fn, arg);
}

tf_err tf__evb_teardown_wait(tf_evb *evb, tf_evb_fn fn, void *arg)
{
    return run_and_wait(evb, fn, arg);
}

static tf_err run_and_wait(tf_evb *evb, tf_evb_fn fn, void *arg)
{
    if (cur == evb) {
        fn(arg);
        return TF_OK;
    }
    waiter w = {fn, arg, 0};
    tf_err rc = enqueue(evb, waiter_task, &w);
    if (rc != TF_OK)
        return rc;
    /* Accepted work always runs (on the loop or in the drain of stop), so this terminates. */
    tf__baton_wait(&w.done, TF__FOREVER);
    return TF_OK;
}

/* ---------------------------------------------------------------- fd watch API */

static tf_err fd_call(tf_evb *evb, int fd, unsigned events, tf_evb_fd_cb cb, void *arg)
{
    uint64_t ticket = atomic_fetch_add_explicit(&evb->ticket, 1u, memory_order_relaxed) + 1u;
    if (cur == evb) {
        if (cb && state_of(evb) >= ST_STOPPING)
            return TF_ERR_SHUTDOWN;
        return apply_fd(evb, fd, events, cb, arg, ticket);
    }
    fdop *op = tf__alloc(sizeof *op);
    if (!op)
        return TF_ERR_NOMEM;
    *op = (fdop){evb, fd, cb != NULL, events, cb, arg, ticket};
    tf_err rc = enqueue(evb, fdop_task, op);
    if (rc != TF_OK)
        free(op);
    return rc;
}

tf_err tf_evb_register_fd(tf_evb *evb, int fd, unsigned events, tf_evb_fd_cb cb, void *arg)
{
    if (!evb || fd < 0 || fd >= TF_EVB_MAX_FD || !cb || (events & ~(TF_EVB_READ | TF_EVB_WRITE)) ||
        fd == evb->epfd || fd == evb->wakefd)
        return TF_ERR_INVALID_ARGUMENT;
    return fd_call(evb, fd, events, cb, arg);
}

tf_err tf_evb_unregister_fd(tf_evb *evb, int fd)
{
    if (!evb || fd < 0 || fd >= TF_EVB_MAX_FD)
        return TF_ERR_INVALID_ARGUMENT;
    return fd_call(evb, fd, 0, NULL, NULL);
}

bool tf__evb_fd_watched(const tf_evb *evb, int fd, void **arg)
{
    if (fd < 0 || (size_t)fd >= evb->nslots || !evb->slots[fd].active)
        return false;
    if (arg)
        *arg = evb->slots[fd].arg;
    return true;
}

size_t tf__evb_timer_count(const tf_evb *evb)
{
    return evb->nheap;
}

uint64_t tf__evb_wake_count(const tf_evb *evb)
{
    return atomic_load_explicit(&evb->wakes, memory_order_relaxed);
}

/* ---------------------------------------------------------------- timer API */

tf_err tf_evb_timer_after(tf_evb *evb, uint64_t ms, tf_evb_timer_cb cb, void *arg,
                          tf_evb_timer **out)
{
    if (out)
        *out = NULL;
    if (!evb || !cb)
        return TF_ERR_INVALID_ARGUMENT;
    tf_evb_timer *t = tf__alloc(sizeof *t);
    if (!t)
        return TF_ERR_NOMEM;
    uint64_t now = tf__now_ns();
    uint64_t delta = ms > (UINT64_MAX - now) / 1000000u ? UINT64_MAX - now : ms * 1000000u;
    t->evb = evb;
    t->cb = cb;
    t->arg = arg;
    t->deadline = now + delta;
    t->seq = atomic_fetch_add_explicit(&evb->timer_seq, 1u, memory_order_relaxed);
    t->idx = NO_IDX;
    atomic_init(&t->state, T_ARMED);
    atomic_init(&t->refs, out ? 2u : 1u);
    atomic_fetch_add_explicit(&evb->mem_refs, 1u, memory_order_relaxed);
    tf_err rc = TF_OK;
    if (cur == evb) {
        if (state_of(evb) >= ST_STOPPING)
            rc = TF_ERR_SHUTDOWN;
        else if (!heap_push(evb, t))
            rc = TF_ERR_NOMEM;
    } else
        rc = enqueue(evb, timer_insert_task, t);
    if (rc != TF_OK) {
        free(t);
        evb_mem_unref(evb);
        return rc;
    }
    if (out)
        *out = t;
    return TF_OK;
}

tf_err tf_evb_timer_cancel(tf_evb_timer *t)
{
    if (!t)
        return TF_ERR_INVALID_ARGUMENT;
    /* After the loop stopped every timer is FIRED or CANCELLED, so this returns before touching
     * t->evb: cancelling after tf_evb_free is safe. */
    if (!timer_cas(t, T_CANCELLED))
        return TF_ERR_BAD_STATE;
    tf_evb *evb = t->evb;
    if (cur == evb) {
        if (t->idx != NO_IDX) {
            heap_remove(evb, t);
            timer_unref(t);
        }
        return TF_OK;
    }
    /* Free the heap slot on the loop; if that cannot be queued, the loop drops the cancelled
     * timer lazily when it reaches the top of the heap (or at stop). */
    atomic_fetch_add_explicit(&t->refs, 1u, memory_order_relaxed);
    if (enqueue(evb, timer_remove_task, t) != TF_OK)
        timer_unref(t);
    return TF_OK;
}

void tf_evb_timer_release(tf_evb_timer *t)
{
    if (t)
        timer_unref(t);
}

/* ---------------------------------------------------------------- stop hooks (internal.h) */

void tf__evb_hook_add(tf_evb *evb, tf__evb_hook *h, tf_evb_fn fn, void *arg)
{
    h->fn = fn;
    h->arg = arg;
    h->prev = NULL;
    h->next = evb->hooks;
    if (evb->hooks)
        evb->hooks->prev = h;
    evb->hooks = h;
    h->linked = true;
}

void tf__evb_hook_remove(tf_evb *evb, tf__evb_hook *h)
{
    if (!h->linked)
        return;
    if (h->prev)
        h->prev->next = h->next;
    else
        evb->hooks = h->next;
    if (h->next)
        h->next->prev = h->prev;
    h->next = h->prev = NULL;
    h->linked = false;
}

bool tf__evb_stopping(const tf_evb *evb)
{
    return state_of(evb) >= ST_STOPPING;
}

void tf__evb_wait_stopped(tf_evb *evb)
{
    tf__future_flush_wakes(); /* a loop thread about to block wakes its waiters first */
    pthread_mutex_lock(&evb->mu);
    while (state_of(evb) != ST_STOPPED)
        pthread_cond_wait(&evb->cv, &evb->mu);
    pthread_mutex_unlock(&evb->mu);
}

void tf__evb_timer_drop(tf_evb_timer **t)
{
    if (*t) {
        tf_evb_timer_cancel(*t);
        tf_evb_timer_release(*t);
        *t = NULL;
    }
}
