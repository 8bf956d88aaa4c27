/* io/async_obs.c -- the async connection's statistics and the connection events of async
 * servers and clients (async.h, obs.h, SPEC 9.10). The counters themselves are kept where the
 * work happens (io/async_conn.c: note_msg, admit_locked, uncount_locked); this file reads them
 * and holds the event sink. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "async_internal.h"

/* The sink whose event the current thread is telling (a close inside it does not wait). */
static _Thread_local const tf__evsink *telling_now;

tf__evsink *tf__evsink_new(void)
{
    tf__evsink *k = tf__calloc(1, sizeof *k);
    if (!k)
        return NULL;
    if (pthread_mutex_init(&k->mu, NULL) != 0) {
        free(k);
        return NULL;
    }
    if (pthread_cond_init(&k->cv, NULL) != 0) {
        pthread_mutex_destroy(&k->mu);
        free(k);
        return NULL;
    }
    atomic_init(&k->refs, 1u);
    return k;
}

void tf__evsink_unref(tf__evsink *k)
{
    if (k && atomic_fetch_sub_explicit(&k->refs, 1u, memory_order_acq_rel) == 1u) {
        pthread_cond_destroy(&k->cv);
        pthread_mutex_destroy(&k->mu);
        free(k);
    }
}

void tf__evsink_set(tf__evsink *k, tf_async_event_cb fn, void *arg)
{
    pthread_mutex_lock(&k->mu);
    k->fn = fn;
    k->arg = arg;
    pthread_mutex_unlock(&k->mu);
}

void tf__evsink_close(tf__evsink *k, bool wait)
{
    if (!k)
        return;
    pthread_mutex_lock(&k->mu);
    k->fn = NULL;
    while (wait && k->telling > 0 && telling_now != k)
        pthread_cond_wait(&k->cv, &k->mu);
    pthread_mutex_unlock(&k->mu);
}

bool tf__evsink_inside(const tf__evsink *k)
{
    return k && telling_now == k;
}

void tf__evsink_tell(tf__evsink *k, tf_async_conn *c, tf_conn_event ev, tf_err err, int os_err)
{
    if (!k)
        return;
    pthread_mutex_lock(&k->mu);
    tf_async_event_cb fn = k->fn;
    void *arg = k->arg;
    if (fn)
        k->telling++;
    pthread_mutex_unlock(&k->mu);
    if (!fn)
        return;
    const tf__evsink *saved = telling_now;
    telling_now = k;
    fn(c, ev, err, os_err, arg);
    telling_now = saved;
    pthread_mutex_lock(&k->mu);
    if (--k->telling == 0)
        pthread_cond_broadcast(&k->cv);
    pthread_mutex_unlock(&k->mu);
}

void tf__evsink_connected(tf__evsink *k, tf_async_conn *c)
{
    if (!k || c->sink)
        return;
    atomic_fetch_add_explicit(&k->refs, 1u, memory_order_relaxed);
    c->sink = k;
    tf__evsink_tell(k, c, TF_CONN_CONNECTED, TF_OK, 0);
}

void tf__async_tell_closed(tf_async_conn *c, tf_err err, int os_err)
{
    tf__evsink *k = c->sink;
    if (!k)
        return;
    c->sink = NULL;
    tf__evsink_tell(k, c, TF_CONN_CLOSED, err, os_err);
    tf__evsink_unref(k);
}

void tf__async_pause_begin(tf_async_conn *c)
{
    c->st_paused = true;
    c->st_pause_ns = tf__now_ns();
    c->st_pauses++;
}

void tf__async_pause_end(tf_async_conn *c)
{
    c->st_paused = false;
    c->st_paused_ns += tf__now_ns() - c->st_pause_ns;
}

tf_err tf_async_conn_stats(tf_async_conn *c, tf_conn_stats *out)
{
    if (!c)
        return TF_ERR_INVALID_ARGUMENT;
    tf_conn_stats s;
    memset(&s, 0, sizeof s);
    int os = 0;
    s.err = (int32_t)tf_async_conn_error(c, &os);
    s.os_err = os;
    s.rx_end = atomic_load_explicit(&c->rx_err, memory_order_acquire);
    s.msgs_sent = atomic_load_explicit(&c->st_msgs_sent, memory_order_relaxed);
    s.bytes_sent = atomic_load_explicit(&c->st_bytes_sent, memory_order_relaxed);
    s.msgs_recv = atomic_load_explicit(&c->st_msgs_recv, memory_order_relaxed);
    s.bytes_recv = atomic_load_explicit(&c->st_bytes_recv, memory_order_relaxed);
    pthread_mutex_lock(&c->mu);
    s.queued_msgs = c->sq_msgs;
    s.queued_bytes = c->sq_bytes;
    s.recv_pending = c->rq_ops;
    s.paused_ns = c->st_paused_ns + (c->st_paused ? tf__now_ns() - c->st_pause_ns : 0u);
    s.pauses = c->st_pauses;
    pthread_mutex_unlock(&c->mu);
    return tf__stats_copy(out, &s, sizeof s, offsetof(tf_conn_stats, msgs_sent));
}
