/* io/async_client.c -- tf_async_client: connects on a tf_evb loop (async.h, SPEC 9.7).
 *
 * One attempt per tf_async_client_connect: the resolved addresses are tried in order with
 * non-blocking connects watched on the loop; a retryable failure after the last address waits a
 * capped exponential back-off with jitter on a loop timer and starts over, up to
 * cfg.connect_retries times; one deadline timer bounds the whole attempt (connects, back-offs
 * and the handshake). Then the handshake runs in the new connection, and the future resolves
 * to it. Names are resolved off the loop thread: by the caller when it is not a loop thread,
 * else by a short-lived thread of its own.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "async_internal.h"

typedef struct attempt {
    struct attempt *next, *prev;
    tf_async_client *cl;
    tf_promise *p;
    char text[TF_HOST_MAX + 16];
    tf_addrlist addrs;
    size_t ai;
    unsigned tries;
    int fd;
    int last_os;
    tf_err resolve_err;
    uint32_t seed;
    tf_evb_timer *deadline, *retry;
    tf_async_conn *conn; /* handshake in progress */
    bool linked;
} attempt;

struct tf_async_client {
    tf_evb *evb;
    tf_tcp_config cfg;
    atomic_uint seq;
    /* The memory's references: the owner's, and one per resolver thread until its attempt has
     * been handed to the loop and started there (or refused). A client freed while a name is
     * being resolved thus stays readable for that attempt, which then finds it gone. */
    atomic_uint refs;
    atomic_uint resolving; /* resolver threads that may still touch the loop (tf_evb_free) */
    /* loop thread only */
    attempt *list;
    tf__evb_hook hook;
    bool hooked;
    bool gone; /* tf_async_client_free ran its loop part: late attempts are cancelled */
    tf__evsink *sink; /* the connection events (made by new; fn cleared by free's loop part) */
};

static void client_unref(tf_async_client *cl)
{
    if (atomic_fetch_sub_explicit(&cl->refs, 1u, memory_order_acq_rel) == 1u) {
        tf__evsink_unref(cl->sink);
        free(cl);
    }
}

static void try_next(attempt *at);

/* Take the attempt off the client's list (loop thread): a cancel no longer finds it. */
static void unlink_attempt(attempt *at)
{
    tf_async_client *cl = at->cl;
    if (!at->linked)
        return;
    if (at->prev)
        at->prev->next = at->next;
    else
        cl->list = at->next;
    if (at->next)
        at->next->prev = at->prev;
    at->linked = false;
}

/* Resolve the attempt's future and forget it (loop thread). */
static void finish(attempt *at, tf_err err, int os_err, tf_async_conn *c)
{
    tf_async_client *cl = at->cl;
    unlink_attempt(at);
    tf__evb_timer_drop(&at->deadline);
    tf__evb_timer_drop(&at->retry);
    if (at->fd >= 0) {
        tf_evb_unregister_fd(cl->evb, at->fd);
        close(at->fd);
    }
    if (at->conn) {
        if (err != TF_ERR_SHUTDOWN && err != TF_ERR_CANCELLED) /* the deadline, in the handshake */
            tf__evsink_tell(cl->sink, at->conn, TF_CONN_HANDSHAKE_FAILED, err, os_err);
        at->conn->ready_fn = NULL;
        tf_async_conn_free(at->conn);
    }
    if (err == TF_OK)
        tf_promise_set(at->p, TF_OK, 0, c, tf__async_conn_dtor);
    else
        tf_promise_fail(at->p, err, os_err);
    tf_promise_free(at->p);
    free(at);
}

static void on_ready(tf_async_conn *c, tf_err err, int os_err, void *arg)
{
    attempt *at = arg;
    tf_async_client *cl = at->cl;
    at->conn = NULL;
    /* The event may cancel or free the client: the attempt is off its list first (a cancel
     * does not finish it twice) and the client's memory is held until the attempt is done. */
    unlink_attempt(at);
    atomic_fetch_add_explicit(&cl->refs, 1u, memory_order_relaxed);
    if (err == TF_OK) {
        tf__evsink_connected(cl->sink, c);
        if (cl->gone) { /* freed in the event: its connects end CANCELLED */
            finish(at, TF_ERR_CANCELLED, 0, NULL);
            tf_async_conn_free(c);
        } else {
            finish(at, TF_OK, 0, c);
        }
    } else {
        if (err != TF_ERR_SHUTDOWN && err != TF_ERR_CANCELLED)
            tf__evsink_tell(cl->sink, c, TF_CONN_HANDSHAKE_FAILED, err, os_err);
        finish(at, err, os_err, NULL);
        tf_async_conn_free(c);
    }
    client_unref(cl);
}

static void connected(attempt *at)
{
    int fd = at->fd;
    at->fd = -1;
    tf_evb_unregister_fd(at->cl->evb, fd);
    /* at->conn is set before the handshake starts; it may end (and free at) inside. */
    if (tf__async_conn_new(at->cl->evb, fd, &at->cl->cfg, NULL, false, on_ready, at,
                           &at->conn) != TF_OK) {
        close(fd);
        finish(at, TF_ERR_NOMEM, 0, NULL);
    }
}

static void retry_due(tf_evb *evb, void *arg)
{
    (void)evb;
    attempt *at = arg;
    tf_evb_timer_release(at->retry);
    at->retry = NULL;
    try_next(at);
}

/* This address failed with |os|: the next one, a retry after a back-off, or the end. */
static void failed(attempt *at, int os)
{
    at->last_os = os;
    if (at->fd >= 0) {
        tf_evb_unregister_fd(at->cl->evb, at->fd);
        close(at->fd);
        at->fd = -1;
    }
    if (at->ai + 1 < at->addrs.n) {
        at->ai++;
        try_next(at);
        return;
    }
    const tf_tcp_config *cfg = &at->cl->cfg;
    int64_t retries = cfg->connect_retries < 0 ? 0 : cfg->connect_retries;
    if (!tf__connect_retryable(os) || (int64_t)at->tries >= retries) {
        finish(at, TF_ERR_IO, os, NULL);
        return;
    }
    at->tries++;
    at->ai = 0;
    uint64_t ms = tf__backoff_ms(cfg, at->tries, &at->seed);
    if (tf_evb_timer_after(at->cl->evb, ms, retry_due, at, &at->retry) != TF_OK)
        finish(at, tf__evb_stopping(at->cl->evb) ? TF_ERR_SHUTDOWN : TF_ERR_NOMEM, 0, NULL);
}

static void on_writable(tf_evb *evb, int fd, unsigned events, void *arg)
{
    (void)evb;
    (void)fd;
    (void)events;
    attempt *at = arg;
    int os = 0;
    if (tf__sock_connect_finish(at->fd, &os) == TF_OK)
        connected(at);
    else
        failed(at, os);
}

static void try_next(attempt *at)
{
    bool done = false;
    int os = 0;
    if (tf__sock_connect_start(&at->addrs.a[at->ai], &at->cl->cfg, &at->fd, &done, &os) !=
        TF_OK) {
        failed(at, os);
        return;
    }
    if (done) {
        connected(at);
        return;
    }
    tf_err rc = tf_evb_register_fd(at->cl->evb, at->fd, TF_EVB_WRITE, on_writable, at);
    if (rc != TF_OK)
        finish(at, rc, rc == TF_ERR_IO ? errno : 0, NULL);
}

static void deadline_due(tf_evb *evb, void *arg)
{
    (void)evb;
    attempt *at = arg;
    tf_evb_timer_release(at->deadline);
    at->deadline = NULL;
    finish(at, TF_ERR_TIMEOUT, at->last_os, NULL);
}

/* The loop stops: every attempt in flight fails with SHUTDOWN. */
static void on_stop(void *arg)
{
    tf_async_client *cl = arg;
    cl->hooked = false;
    while (cl->list)
        finish(cl->list, TF_ERR_SHUTDOWN, 0, NULL);
}

/* Start a resolved attempt on the loop thread. */
static void begin(void *arg)
{
    attempt *at = arg;
    tf_async_client *cl = at->cl;
    if (cl->gone) {
        finish(at, TF_ERR_CANCELLED, 0, NULL); /* the client was freed while it resolved */
        return;
    }
    if (!cl->hooked) {
        tf__evb_hook_add(cl->evb, &cl->hook, on_stop, cl);
        cl->hooked = true;
    }
    if (at->resolve_err != TF_OK) {
        finish(at, at->resolve_err, 0, NULL);
        return;
    }
    at->next = cl->list;
    if (cl->list)
        cl->list->prev = at;
    cl->list = at;
    at->linked = true;
    if (tf__evb_stopping(cl->evb)) {
        finish(at, TF_ERR_SHUTDOWN, 0, NULL);
        return;
    }
    if (cl->cfg.connect_timeout_ms >= 0 &&
        tf_evb_timer_after(cl->evb, (uint64_t)cl->cfg.connect_timeout_ms, deadline_due, at,
                           &at->deadline) != TF_OK) {
        /* A stop from another thread may land between the check above and this timer. */
        finish(at, tf__evb_stopping(cl->evb) ? TF_ERR_SHUTDOWN : TF_ERR_NOMEM, 0, NULL);
        return;
    }
    try_next(at);
}

/* begin() for an attempt handed to the loop with a reference to the client (a resolver
 * thread's, or a connect's made off the loop): the reference goes once begin ran. */
static void begin_held(void *arg)
{
    attempt *at = arg;
    tf_async_client *cl = at->cl;
    begin(at);
    client_unref(cl);
}

/* The resolver thread for a name given on the loop thread. */
static void *resolver(void *arg)
{
    attempt *at = arg;
    tf_async_client *cl = at->cl;
    at->resolve_err = tf_addr_resolve(at->text, TF_FAMILY_ANY, false, &at->addrs, NULL);
    bool refused = tf_evb_dispatch(cl->evb, begin_held, at) != TF_OK;
    if (refused) {
        tf_promise_fail(at->p, TF_ERR_SHUTDOWN, 0);
        tf_promise_free(at->p);
        free(at);
    }
    /* The loop is not touched past this point; the reference keeps the client's memory. */
    atomic_fetch_sub_explicit(&cl->resolving, 1u, memory_order_release);
    if (refused)
        client_unref(cl);
    return NULL;
}

tf_err tf_async_client_new(tf_evb *evb, const tf_tcp_config *cfg, tf_async_client **out,
                           tf_errmsg *msg)
{
    tf__errmsg_clear(msg);
    if (out)
        *out = NULL;
    if (!evb || !out)
        return TF_ERR_INVALID_ARGUMENT;
    tf_async_client *cl = tf__calloc(1, sizeof *cl);
    if (!cl)
        return TF_ERR_NOMEM;
    tf_err rc = tf__config_load(&cl->cfg, cfg, msg);
    if (rc == TF_OK && (cl->sink = tf__evsink_new()) == NULL)
        rc = TF_ERR_NOMEM;
    if (rc != TF_OK) {
        free(cl);
        return rc;
    }
    cl->evb = evb;
    atomic_init(&cl->refs, 1u);
    *out = cl;
    return TF_OK;
}

tf_err tf_async_client_connect(tf_async_client *cl, const char *addr, tf_future **out,
                               tf_errmsg *msg)
{
    tf__errmsg_clear(msg);
    if (out)
        *out = NULL;
    if (!cl || !addr || !out)
        return TF_ERR_INVALID_ARGUMENT;
    tf_hostport hp;
    tf_addr ua;
    tf_err rc = tf_addr_is_unix(addr) ? tf_unix_addr_parse(addr, strlen(addr), &ua, msg)
                                      : tf_hostport_parse(addr, &hp, msg);
    if (rc != TF_OK)
        return rc;
    if (strlen(addr) >= sizeof(((attempt *)0)->text)) {
        tf__errmsg(msg, "bad address \"%.40s...\": too long", addr);
        return TF_ERR_BAD_ADDRESS;
    }
    if (tf__evb_stopping(cl->evb))
        return TF_ERR_SHUTDOWN;
    attempt *at = tf__calloc(1, sizeof *at);
    tf_future *f = NULL;
    if (!at || tf_promise_new(&at->p, &f) != TF_OK) {
        free(at);
        return TF_ERR_NOMEM;
    }
    at->cl = cl;
    at->fd = -1;
    strcpy(at->text, addr);
    at->seed = (uint32_t)(uintptr_t)at ^ atomic_fetch_add(&cl->seq, 1u) * 2654435761u;
    bool on_loop = tf_evb_in_loop_thread(cl->evb);
    if (!on_loop || tf_addr_is_numeric(addr)) {
        rc = tf_addr_resolve(addr, TF_FAMILY_ANY, false, &at->addrs, msg);
        if (rc == TF_OK) {
            /* The attempt holds a reference until begin ran: the client may be freed (on its
             * loop) before the queued begin runs, which then finds it gone. */
            atomic_fetch_add_explicit(&cl->refs, 1u, memory_order_relaxed);
            rc = tf_evb_dispatch_inline(cl->evb, begin_held, at);
            if (rc != TF_OK)
                atomic_fetch_sub_explicit(&cl->refs, 1u, memory_order_relaxed);
        }
    } else {
        pthread_t t;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        atomic_fetch_add_explicit(&cl->refs, 1u, memory_order_relaxed);
        atomic_fetch_add_explicit(&cl->resolving, 1u, memory_order_relaxed);
        rc = pthread_create(&t, &a, resolver, at) == 0 ? TF_OK : TF_ERR_NOMEM;
        if (rc != TF_OK) {
            atomic_fetch_sub_explicit(&cl->resolving, 1u, memory_order_relaxed);
            atomic_fetch_sub_explicit(&cl->refs, 1u, memory_order_relaxed);
        }
        pthread_attr_destroy(&a);
    }
    if (rc != TF_OK) {
        tf_promise_free(at->p);
        tf_future_free(f);
        free(at);
        return rc;
    }
    *out = f;
    return TF_OK;
}

static void cancel_task(void *arg)
{
    tf_async_client *cl = arg;
    while (cl->list)
        finish(cl->list, TF_ERR_CANCELLED, 0, NULL);
}

static void unhook_task(void *arg)
{
    tf_async_client *cl = arg;
    cancel_task(cl);
    cl->gone = true;
    tf__evsink_close(cl->sink, true); /* no event after the free (one loop: none runs now) */
    if (cl->hooked)
        tf__evb_hook_remove(cl->evb, &cl->hook);
    cl->hooked = false;
}

tf_err tf_async_client_on_event(tf_async_client *cl, tf_async_event_cb cb, void *arg)
{
    if (!cl)
        return TF_ERR_INVALID_ARGUMENT;
    tf__evsink_set(cl->sink, cb, arg);
    return TF_OK;
}

tf_err tf_async_client_cancel(tf_async_client *cl)
{
    if (!cl)
        return TF_ERR_INVALID_ARGUMENT;
    tf_err rc = tf__evb_teardown_wait(cl->evb, cancel_task, cl); /* also another loop's thread */
    if (rc == TF_ERR_SHUTDOWN)
        return TF_OK; /* the loop's drain failed them already */
    return rc;
}

void tf_async_client_free(tf_async_client *cl)
{
    if (!cl)
        return;
    /* A resolver thread still running hands its attempt to the loop: wait until it has (so the
     * loop may be freed after this returns). Its attempt may still be queued there: it holds a
     * reference, finds the client gone and is cancelled (or the stopped loop refused it), and
     * the last reference frees the memory. */
    while (atomic_load_explicit(&cl->resolving, memory_order_acquire) > 0)
        sched_yield();
    if (tf__evb_teardown_wait(cl->evb, unhook_task, cl) == TF_ERR_SHUTDOWN) {
        tf__evb_wait_stopped(cl->evb);
        cl->gone = true; /* the loop is gone: nothing else reads it but refused resolvers */
        tf__evsink_close(cl->sink, false);
    }
    client_unref(cl);
}
