/* bench/bench_dispatch.c -- tf_evb dispatch: round-trip latency (another thread -> loop -> back
 * via a future, and via dispatch_and_wait) and one-producer throughput, each the median of
 * several runs, next to a plain mutex+condvar hand-off to a worker thread doing the same.
 *
 *   make bench            (or: build/plain/bench/bench_dispatch [runs] [rt_iters] [tp_iters])
 */
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tcpframe/evbase.h"
#include "tcpframe/future.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void check(tf_err e, const char *what)
{
    if (e != TF_OK) {
        fprintf(stderr, "bench: %s: %s\n", what, tf_strerror(e));
        exit(1);
    }
}

/* ---------------------------------------------------------------- tf_evb */

static volatile long sink;

static void incr(void *arg)
{
    (void)arg;
    sink++;
}

static void fulfil(void *arg)
{
    tf_promise *p = arg;
    tf_promise_set(p, TF_OK, 0, NULL, NULL);
    tf_promise_free(p);
}

static double evb_rt_future(tf_evb *evb, long n)
{
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
        tf_promise *p;
        tf_future *f;
        check(tf_promise_new(&p, &f), "promise_new");
        check(tf_evb_dispatch(evb, fulfil, p), "dispatch");
        check(tf_future_get(f, NULL, NULL), "future_get");
        tf_future_free(f);
    }
    return (now_s() - t0) / (double)n * 1e6;
}

static double evb_rt_wait(tf_evb *evb, long n)
{
    double t0 = now_s();
    for (long i = 0; i < n; i++)
        check(tf_evb_dispatch_and_wait(evb, incr, NULL), "dispatch_and_wait");
    return (now_s() - t0) / (double)n * 1e6;
}

static double evb_tp(tf_evb *evb, long n)
{
    double t0 = now_s();
    for (long i = 0; i < n; i++)
        check(tf_evb_dispatch(evb, incr, NULL), "dispatch");
    check(tf_evb_dispatch_and_wait(evb, incr, NULL), "dispatch_and_wait");
    return (double)n / (now_s() - t0);
}

/* ---------------------------------------------------------------- mutex + condvar baseline */

typedef struct job {
    void (*fn)(void *);
    void *arg;
} job;

typedef struct cv_worker {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job *q, *run;
    size_t n, cap;
    bool quit;
    pthread_t thread;
} cv_worker;

static void *cv_main(void *arg)
{
    cv_worker *w = arg;
    job *mine = malloc(w->cap * sizeof *mine);
    for (;;) {
        pthread_mutex_lock(&w->mu);
        while (!w->n && !w->quit)
            pthread_cond_wait(&w->cv, &w->mu);
        if (!w->n && w->quit) {
            pthread_mutex_unlock(&w->mu);
            break;
        }
        size_t n = w->n;
        memcpy(mine, w->q, n * sizeof *mine);
        w->n = 0;
        pthread_mutex_unlock(&w->mu);
        for (size_t i = 0; i < n; i++)
            mine[i].fn(mine[i].arg);
    }
    free(mine);
    return NULL;
}

static void cv_post(cv_worker *w, void (*fn)(void *), void *arg)
{
    pthread_mutex_lock(&w->mu);
    while (w->n == w->cap) { /* bounded queue: let the worker catch up */
        pthread_mutex_unlock(&w->mu);
        sched_yield();
        pthread_mutex_lock(&w->mu);
    }
    w->q[w->n++] = (job){fn, arg};
    if (w->n == 1)
        pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

typedef struct cv_done {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
} cv_done;

static void cv_signal_done(void *arg)
{
    cv_done *d = arg;
    pthread_mutex_lock(&d->mu);
    d->done = true;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

static void cv_round_trip(cv_worker *w, cv_done *d)
{
    d->done = false;
    cv_post(w, cv_signal_done, d);
    pthread_mutex_lock(&d->mu);
    while (!d->done)
        pthread_cond_wait(&d->cv, &d->mu);
    pthread_mutex_unlock(&d->mu);
}

static double cv_rt(cv_worker *w, long n)
{
    cv_done d = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false};
    double t0 = now_s();
    for (long i = 0; i < n; i++)
        cv_round_trip(w, &d);
    return (now_s() - t0) / (double)n * 1e6;
}

static double cv_tp(cv_worker *w, long n)
{
    cv_done d = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false};
    double t0 = now_s();
    for (long i = 0; i < n; i++)
        cv_post(w, incr, NULL);
    cv_round_trip(w, &d);
    return (double)n / (now_s() - t0);
}

int main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : 7;
    long rt = argc > 2 ? atol(argv[2]) : 50000, tp = argc > 3 ? atol(argv[3]) : 1000000;
    if (runs < 1 || runs > 99 || rt < 1 || tp < 1) {
        fprintf(stderr, "usage: %s [runs 1..99] [round_trips] [throughput_ops]\n", argv[0]);
        return 2;
    }
    double a[99], b[99], c[99], d[99], e[99];
    tf_evb *evb;
    check(tf_evb_new(&evb), "evb_new");
    check(tf_evb_start(evb), "evb_start");
    cv_worker w = {
        PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, NULL, 0, 65536, false, 0};
    w.q = malloc(w.cap * sizeof *w.q);
    pthread_create(&w.thread, NULL, cv_main, &w);
    for (int r = 0; r < runs; r++) { /* interleaved, so drift hits both sides alike */
        a[r] = evb_rt_future(evb, rt);
        b[r] = evb_rt_wait(evb, rt);
        c[r] = cv_rt(&w, rt);
        d[r] = evb_tp(evb, tp);
        e[r] = cv_tp(&w, tp);
    }
    printf("tf_evb dispatch benchmark: median of %d runs (%ld round trips, %ld dispatches each)\n",
           runs, rt, tp);
    printf("  round trip, tf_evb dispatch + tf_future get : %8.2f us\n", median(a, runs));
    printf("  round trip, tf_evb_dispatch_and_wait        : %8.2f us\n", median(b, runs));
    printf("  round trip, mutex+condvar hand-off baseline : %8.2f us\n", median(c, runs));
    printf("  throughput, tf_evb_dispatch (1 producer)    : %10.0f ops/s\n", median(d, runs));
    printf("  throughput, mutex+condvar queue baseline    : %10.0f ops/s\n", median(e, runs));
    check(tf_evb_stop(evb), "evb_stop");
    tf_evb_free(evb);
    pthread_mutex_lock(&w.mu);
    w.quit = true;
    pthread_cond_signal(&w.cv);
    pthread_mutex_unlock(&w.mu);
    pthread_join(w.thread, NULL);
    free(w.q);
    return 0;
}
