/* io/async_server.c -- tf_async_server: a listening socket on a tf_evb loop (async.h,
 * SPEC 9.7).
 *
 * The listen socket is watched on the loop; accept4 runs until EAGAIN (at most a batch per
 * event, so one busy listener cannot starve the loop). Each new socket becomes an async
 * connection whose handshake runs on the loop like any other I/O, with its own deadline timer,
 * so a silent client costs a timer and never delays the next one. When the handshake ends the
 * connection goes to the accept callback, else to the oldest pending accept future, else to a
 * bounded queue; while that queue is full the listen socket is not watched, and the kernel's
 * backlog holds the rest. fd exhaustion (EMFILE, ENFILE, ENOBUFS, ENOMEM) rests the listen
 * socket for a back-off on a timer (10 ms doubling to 1 s), so there is no busy loop.
 *
 * Threads: the accept machinery is loop-thread state; init, accept, shutdown and free hand
 * their work to the loop (dispatch_and_wait, or inline on the loop thread).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "async_internal.h"

enum { SV_NEW, SV_STARTING, SV_LISTENING, SV_SHUT };
enum { ACCEPT_BATCH = 64 };

/* A client whose handshake is running. */
typedef struct hsnode {
    struct hsnode *next, *prev;
    tf_async_server *s;
    tf_async_conn *c;
    char peer[TF_ADDRSTR_LEN];
} hsnode;

/* A connection waiting for an accept, or an accept waiting for a connection. */
typedef struct item {
    struct item *next;
    tf_async_conn *c;
    tf_promise *p;
} item;

struct tf_async_server {
    tf_evb *evb;
    tf_tcp_config cfg;
    _Atomic int state;
    atomic_uint_fast64_t rejected;
    atomic_uint_fast64_t accept_calls; /* accept4 calls, for tests (no busy loop) */
    int lfd;
    char addr[TF_ADDRSTR_LEN];
    /* loop thread only */
    tf__evb_hook hook;
    bool watching, resting, shut_done;
    tf_async_accept_cb acb;
    void *aarg;
    tf_async_reject_cb rcb;
    void *rarg;
    hsnode *hs;                 /* handshakes in progress */
    item *ready, *ready_tail;   /* handshaken, unclaimed */
    size_t nready;
    item *waiting, *waiting_tail; /* pending accept futures */
    tf_evb_timer *rest_timer;
    uint64_t rest_ms;
    tf__mem_budget *budget;     /* cfg.recv_mem_budget's, shared with its connections, or NULL */
    atomic_uint_fast64_t live;  /* connections counted against cfg.max_conns (any thread) */
};

static void on_listen(tf_evb *evb, int fd, unsigned events, void *arg);
static void rest(tf_async_server *s);

static void watch(tf_async_server *s, bool on)
{
    if (s->lfd < 0 || s->watching == on)
        return;
    tf_err rc = on ? tf_evb_register_fd(s->evb, s->lfd, TF_EVB_READ, on_listen, s)
                   : tf_evb_unregister_fd(s->evb, s->lfd);
    s->watching = on && rc == TF_OK;
    if (on && rc != TF_OK && rc != TF_ERR_SHUTDOWN && !s->resting)
        rest(s); /* no memory for the watch: try again after a pause, never go deaf */
}

/* Watch the listen socket unless resting or the ready queue is full. */
static void rewatch(tf_async_server *s)
{
    watch(s, !s->resting && !s->shut_done && s->nready < (size_t)s->cfg.accept_queue);
}

static void push(item **h, item **t, item *it)
{
    it->next = NULL;
    if (*t)
        (*t)->next = it;
    else
        *h = it;
    *t = it;
}

static item *pop(item **h, item **t)
{
    item *it = *h;
    if (it) {
        *h = it->next;
        if (!*h)
            *t = NULL;
    }
    return it;
}

/* A handshaken connection: to the callback, the oldest waiting accept, or the ready queue. */
static void deliver(tf_async_server *s, tf_async_conn *c)
{
    if (s->acb) {
        s->acb(s, c, s->aarg);
        return;
    }
    item *w = pop(&s->waiting, &s->waiting_tail);
    if (w) {
        tf_promise_set(w->p, TF_OK, 0, c, tf__async_conn_dtor);
        tf_promise_free(w->p);
        free(w);
        return;
    }
    item *it = tf__alloc(sizeof *it);
    if (!it) {
        tf_async_conn_free(c);
        return;
    }
    it->c = c;
    it->p = NULL;
    push(&s->ready, &s->ready_tail, it);
    s->nready++;
    rewatch(s);
}

static void hs_unlink(tf_async_server *s, hsnode *n)
{
    if (n->prev)
        n->prev->next = n->next;
    else
        s->hs = n->next;
    if (n->next)
        n->next->prev = n->prev;
}

/* The handshake of a new client ended (on the loop thread, inside the connection). */
static void on_ready(tf_async_conn *c, tf_err err, int os_err, void *arg)
{
    hsnode *n = arg;
    tf_async_server *s = n->s;
    hs_unlink(s, n);
    if (err == TF_OK) {
        free(n);
        deliver(s, c);
        return;
    }
    if (err != TF_ERR_SHUTDOWN && err != TF_ERR_CANCELLED) {
        atomic_fetch_add_explicit(&s->rejected, 1u, memory_order_relaxed);
        if (s->rcb)
            s->rcb(s, n->peer, err, os_err, s->rarg);
    }
    free(n);
    tf_async_conn_free(c);
}

static void rest_over(tf_evb *evb, void *arg)
{
    (void)evb;
    tf_async_server *s = arg;
    tf_evb_timer_release(s->rest_timer);
    s->rest_timer = NULL;
    s->resting = false;
    rewatch(s);
}

/* Out of fds or memory: stop accepting for a while instead of spinning on a ready socket. */
static void rest(tf_async_server *s)
{
    s->resting = true;
    watch(s, false);
    s->rest_ms = s->rest_ms ? (s->rest_ms * 2 > 1000 ? 1000 : s->rest_ms * 2) : 10;
    if (tf_evb_timer_after(s->evb, s->rest_ms, rest_over, s, &s->rest_timer) != TF_OK) {
        /* No timer (stopping, or no memory for it): never stay deaf. Watch again at once; a
         * listen socket that is still unserviceable comes back here through the next event. */
        s->resting = false;
        if (!tf__evb_stopping(s->evb))
            rewatch(s);
    }
}

static void take(tf_async_server *s, int fd)
{
    if (s->cfg.max_conns > 0 && atomic_load_explicit(&s->budget->live, memory_order_relaxed) >=
                                    (size_t)s->cfg.max_conns) {
        /* Over the cap: closed at once, counted and reported as rejected (BUSY). */
        char peer[TF_ADDRSTR_LEN];
        if (tf__sock_name(fd, true, peer, sizeof peer) != TF_OK)
            strcpy(peer, "?");
        close(fd);
        atomic_fetch_add_explicit(&s->rejected, 1u, memory_order_relaxed);
        if (s->rcb)
            s->rcb(s, peer, TF_ERR_BUSY, 0, s->rarg);
        return;
    }
    hsnode *n = tf__calloc(1, sizeof *n);
    int os = 0;
    if (!n || tf__sock_apply(fd, &s->cfg, true, &os, NULL) != TF_OK) {
        free(n);
        close(fd);
        return;
    }
    n->s = s;
    if (tf__sock_name(fd, true, n->peer, sizeof n->peer) != TF_OK)
        strcpy(n->peer, "?");
    n->next = s->hs;
    if (s->hs)
        s->hs->prev = n;
    s->hs = n;
    /* n->c is set before the handshake starts; the handshake may end (and free n) inside. The
     * live count is the connection's from here on (its finalize gives it back). */
    atomic_fetch_add_explicit(&s->budget->live, 1u, memory_order_relaxed);
    if (tf__async_conn_new(s->evb, fd, &s->cfg, s->budget, true, on_ready, n, &n->c) != TF_OK) {
        atomic_fetch_sub_explicit(&s->budget->live, 1u, memory_order_relaxed);
        hs_unlink(s, n);
        free(n);
        close(fd);
    }
}

static void on_listen(tf_evb *evb, int fd, unsigned events, void *arg)
{
    (void)evb;
    tf_async_server *s = arg;
    if ((events & TF_EVB_ERROR) && !(events & TF_EVB_READ)) {
        /* The watch could not be set up (epoll_ctl failed: out of memory) or the socket is in
         * error: without this the server would never accept again. Rest (the unregister is
         * harmless for a watch that failed), then watch anew. */
        rest(s);
        return;
    }
    for (int i = 0; i < ACCEPT_BATCH && s->watching; i++) {
        atomic_fetch_add_explicit(&s->accept_calls, 1u, memory_order_relaxed);
        int cfd = tf__sys_accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd >= 0) {
            s->rest_ms = 0;
            take(s, cfd);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            rest(s); /* EMFILE, ENFILE, ENOBUFS, ENOMEM, or worse: back off */
        return;
    }
}

/* ---------------------------------------------------------------- lifecycle on the loop */

static void shut_down(tf_async_server *s)
{
    if (s->shut_done)
        return;
    s->shut_done = true;
    watch(s, false);
    if (s->lfd >= 0) {
        close(s->lfd);
        s->lfd = -1;
    }
    tf__evb_timer_drop(&s->rest_timer);
    /* Always: the stop drain may be walking the hook list right now (removal is idempotent). */
    tf__evb_hook_remove(s->evb, &s->hook);
    item *it;
    while ((it = pop(&s->waiting, &s->waiting_tail)) != NULL) {
        tf_promise_fail(it->p, TF_ERR_SHUTDOWN, 0);
        tf_promise_free(it->p);
        free(it);
    }
    while ((it = pop(&s->ready, &s->ready_tail)) != NULL) {
        tf_async_conn_free(it->c);
        free(it);
    }
    s->nready = 0;
    while (s->hs) {
        hsnode *n = s->hs;
        hs_unlink(s, n);
        n->c->ready_fn = NULL; /* no verdict: we drop it */
        tf_async_conn_free(n->c);
        free(n);
    }
}

static void on_stop(void *arg)
{
    tf_async_server *s = arg;
    atomic_store_explicit(&s->state, SV_SHUT, memory_order_release);
    shut_down(s);
}

static void start_task(void *arg)
{
    tf_async_server *s = arg;
    if (s->shut_done)
        return; /* shut down between init's publication and this task: nothing to start */
    tf__evb_hook_add(s->evb, &s->hook, on_stop, s);
    if (tf__evb_stopping(s->evb))
        on_stop(s);
    else
        rewatch(s);
}

static void shutdown_task(void *arg)
{
    shut_down(arg);
}

/* ---------------------------------------------------------------- API */

tf_err tf_async_server_new(tf_evb *evb, tf_async_server **out)
{
    if (out)
        *out = NULL;
    if (!evb || !out)
        return TF_ERR_INVALID_ARGUMENT;
    tf_async_server *s = tf__calloc(1, sizeof *s);
    if (!s)
        return TF_ERR_NOMEM;
    s->evb = evb;
    s->lfd = -1;
    atomic_init(&s->state, SV_NEW);
    *out = s;
    return TF_OK;
}

/* init and init_fd: |given| < 0 binds |addr|; else |given| is taken over (closed on failure). */
static tf_err init(tf_async_server *s, const char *addr, int given, const tf_tcp_config *cfg,
                   tf_errmsg *msg)
{
    tf_err rc = TF_OK;
    /* One init claims the server (NEW -> STARTING); a shutdown meanwhile makes it SHUT, and the
     * init that finds so at its second step closes what it opened itself. */
    int exp = SV_NEW;
    if (tf__evb_stopping(s->evb)) {
        rc = TF_ERR_SHUTDOWN;
    } else if (!atomic_compare_exchange_strong_explicit(&s->state, &exp, SV_STARTING,
                                                        memory_order_acq_rel,
                                                        memory_order_acquire)) {
        rc = exp == SV_SHUT ? TF_ERR_SHUTDOWN : TF_ERR_BAD_STATE;
        if (rc == TF_ERR_BAD_STATE)
            tf__errmsg(msg, "server already listening on %s", s->addr);
    }
    if (rc != TF_OK) {
        if (given >= 0)
            close(given);
        return rc;
    }
    rc = tf__config_load(&s->cfg, cfg, msg);
    int os = 0, fd = -1;
    if (rc == TF_OK && given >= 0) {
        rc = tf__sock_listen_fd(given, &s->cfg, &os, msg);
        fd = given;
    } else if (rc == TF_OK) {
        rc = tf__sock_listen(addr, &s->cfg, &fd, &os, msg);
    }
    if (rc == TF_OK && !s->budget)
        rc = tf__mem_budget_new(s->cfg.recv_mem_budget > 0 ? (size_t)s->cfg.recv_mem_budget
                                                           : SIZE_MAX,
                                &s->budget);
    if (rc != TF_OK) {
        if (given >= 0)
            close(given);
        else if (fd >= 0)
            close(fd);
        exp = SV_STARTING; /* back to NEW for another try, unless shut down meanwhile */
        atomic_compare_exchange_strong_explicit(&s->state, &exp, SV_NEW, memory_order_acq_rel,
                                                memory_order_acquire);
        return rc;
    }
    s->lfd = fd;
    tf__sock_name(fd, false, s->addr, sizeof s->addr);
    exp = SV_STARTING;
    if (!atomic_compare_exchange_strong_explicit(&s->state, &exp, SV_LISTENING,
                                                 memory_order_acq_rel, memory_order_acquire)) {
        s->lfd = -1; /* shut down meanwhile: nobody else saw the socket */
        close(fd);
        return TF_ERR_SHUTDOWN;
    }
    /* Not waited for: the loop may not run yet (set up, then tf_evb_loop). Later calls are
     * queued behind it. */
    rc = tf_evb_dispatch_inline(s->evb, start_task, s);
    if (rc != TF_OK) {
        /* The loop is stopping: nothing will accept, and no task of this server will run (a
         * racing shutdown finds the loop stopping too and only waits for it). */
        atomic_store_explicit(&s->state, SV_SHUT, memory_order_release);
        close(s->lfd);
        s->lfd = -1;
        s->shut_done = true;
        return rc;
    }
    return TF_OK;
}

tf_err tf_async_server_init(tf_async_server *s, const char *addr, const tf_tcp_config *cfg,
                            tf_errmsg *msg)
{
    tf__errmsg_clear(msg);
    if (!s || !addr)
        return TF_ERR_INVALID_ARGUMENT;
    return init(s, addr, -1, cfg, msg);
}

tf_err tf_async_server_init_fd(tf_async_server *s, int fd, const tf_tcp_config *cfg, tf_errmsg *msg)
{
    tf__errmsg_clear(msg);
    if (!s || fd < 0) {
        tf__errmsg(msg, "server init: %s", s ? "fd < 0" : "the server is NULL");
        if (fd >= 0)
            close(fd);
        return TF_ERR_INVALID_ARGUMENT;
    }
    return init(s, NULL, fd, cfg, msg);
}

void tf_async_server_on_accept(tf_async_server *s, tf_async_accept_cb cb, void *arg)
{
    if (s) {
        s->acb = cb;
        s->aarg = arg;
    }
}

void tf_async_server_on_reject(tf_async_server *s, tf_async_reject_cb cb, void *arg)
{
    if (s) {
        s->rcb = cb;
        s->rarg = arg;
    }
}

static void accept_task(void *arg)
{
    item *w = arg;
    tf_async_server *s = (tf_async_server *)w->c; /* smuggled in by tf_async_server_accept */
    w->c = NULL;
    if (s->shut_done) {
        tf_promise_fail(w->p, TF_ERR_SHUTDOWN, 0);
        tf_promise_free(w->p);
        free(w);
        return;
    }
    item *it = pop(&s->ready, &s->ready_tail);
    if (!it) {
        push(&s->waiting, &s->waiting_tail, w);
        return;
    }
    s->nready--;
    tf_promise_set(w->p, TF_OK, 0, it->c, tf__async_conn_dtor);
    tf_promise_free(w->p);
    free(w);
    free(it);
    rewatch(s);
}

tf_err tf_async_server_accept(tf_async_server *s, tf_future **out)
{
    if (out)
        *out = NULL;
    if (!s || !out)
        return TF_ERR_INVALID_ARGUMENT;
    int st = atomic_load_explicit(&s->state, memory_order_acquire);
    if (st == SV_SHUT)
        return TF_ERR_SHUTDOWN;
    if (st != SV_LISTENING || s->acb)
        return TF_ERR_BAD_STATE;
    item *w = tf__alloc(sizeof *w);
    tf_future *f = NULL;
    if (!w || tf_promise_new(&w->p, &f) != TF_OK) {
        free(w);
        return TF_ERR_NOMEM;
    }
    w->c = (tf_async_conn *)(void *)s;
    tf_err rc = tf_evb_dispatch_inline(s->evb, accept_task, w);
    if (rc != TF_OK) {
        tf_promise_free(w->p);
        tf_future_free(f);
        free(w);
        return rc;
    }
    *out = f;
    return TF_OK;
}

tf_err tf_async_server_addr(const tf_async_server *s, char *buf, size_t len)
{
    if (!s || !buf)
        return TF_ERR_INVALID_ARGUMENT;
    if (atomic_load_explicit(&s->state, memory_order_acquire) != SV_LISTENING)
        return TF_ERR_BAD_STATE;
    if (strlen(s->addr) + 1 > len)
        return TF_ERR_BUFFER_TOO_SMALL;
    strcpy(buf, s->addr);
    return TF_OK;
}

uint64_t tf_async_server_rejected(const tf_async_server *s)
{
    return s ? atomic_load_explicit(&s->rejected, memory_order_relaxed) : 0;
}

tf_err tf_async_server_shutdown(tf_async_server *s)
{
    if (!s)
        return TF_ERR_INVALID_ARGUMENT;
    int prev = atomic_exchange_explicit(&s->state, SV_SHUT, memory_order_acq_rel);
    if (prev == SV_NEW || prev == SV_STARTING) {
        /* Never listened, or its init is between its two steps: that init closes its own
         * socket when it sees SHUT. */
        s->shut_done = true;
        return TF_OK;
    }
    tf_err rc = tf__evb_teardown_wait(s->evb, shutdown_task, s); /* any thread, another loop's */
    if (rc == TF_ERR_SHUTDOWN)
        tf__evb_wait_stopped(s->evb); /* its stop hook shut the server down */
    return TF_OK;
}

tf_err tf_async_server_mem_use(const tf_async_server *s, size_t *used, size_t *peak,
                                uint64_t *waits)
{
    size_t u = 0, p = 0;
    uint64_t w = 0;
    if (!s)
        return TF_ERR_INVALID_ARGUMENT;
    if (s->budget)
        tf__mem_budget_use(s->budget, &u, &p, &w);
    if (used)
        *used = u;
    if (peak)
        *peak = p;
    if (waits)
        *waits = w;
    return TF_OK;
}

uint64_t tf_async_server_active(const tf_async_server *s)
{
    return s && s->budget ? atomic_load_explicit(&s->budget->live, memory_order_relaxed) : 0;
}

void tf_async_server_free(tf_async_server *s)
{
    if (!s)
        return;
    tf_async_server_shutdown(s);
    tf__mem_budget_unref(s->budget);
    free(s);
}

uint64_t tf__async_server_accept_calls(const tf_async_server *s)
{
    return atomic_load_explicit(&s->accept_calls, memory_order_relaxed);
}
