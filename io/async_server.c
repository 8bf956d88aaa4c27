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
 * Threads: the listen socket and its watch are the server loop's; init, accept, shutdown and
 * free hand their work to that loop (dispatch_and_wait, or inline on the loop thread).
 *
 * Several loops (tf_async_server_add_loop; SPEC 9.7 "Several loops"): the server loop accepts
 * and hands each new socket to the loop with the fewest of the server's connections now (ties:
 * round robin), where its connection lives from the handshake on. The handshake verdict then
 * arrives on that loop's thread, so what the verdict touches -- the handshakes in progress, the
 * ready queue, the pending accepts, shut_done, the callbacks -- is under the server's lock mu,
 * which is never held while a callback or a free runs. The counts (live, per loop, rejected)
 * are atomics; a shutdown claims every handshake in progress under mu (a verdict that comes
 * later for a claimed one leaves it to the shutdown, which frees it), and waits until no
 * accept or reject callback runs any more on any loop.
 */
#include <errno.h>
#include <pthread.h>
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
    bool claimed; /* taken by the shutdown, which frees it (under s->mu) */
    char peer[TF_ADDRSTR_LEN];
} hsnode;

/* A connection waiting for an accept, or an accept waiting for a connection. */
typedef struct item {
    struct item *next;
    tf_async_conn *c;
    tf_promise *p;
} item;

struct tf_async_server {
    tf_evb *evb;                /* the server loop: it accepts (and is loops[0]) */
    tf_evb **loops;             /* the connections' loops; fixed once init is called */
    size_t nloops;
    tf_tcp_config cfg;
    _Atomic int state;
    atomic_uint_fast64_t rejected;
    atomic_uint_fast64_t accept_calls; /* accept4 calls, for tests (no busy loop) */
    int lfd;
    tf__unix_owned owned; /* the socket file init bound (SPEC 9.9), removed with lfd */
    char addr[TF_ADDRSTR_LEN];
    tf__srv_counters k;         /* statistics (any thread, relaxed atomics) */
    tf__evsink *sink;           /* the connection events (made by new; closed at shutdown) */
    /* the server loop only */
    tf__evb_hook hook;
    bool watching, resting;
    size_t next_loop;           /* where the next tie-break starts */
    tf_evb_timer *rest_timer;
    uint64_t rest_ms;
    /* under mu (any loop's thread) */
    pthread_mutex_t mu;
    pthread_cond_t cv;          /* in_cb fell to 0 */
    bool shut_done;
    tf_async_accept_cb acb;
    void *aarg;
    tf_async_reject_cb rcb;
    void *rarg;
    unsigned in_cb;             /* accept or reject callbacks running now */
    hsnode *hs;                 /* handshakes in progress */
    item *ready, *ready_tail;   /* handshaken, unclaimed */
    size_t nready;
    item *waiting, *waiting_tail; /* pending accept futures */
    hsnode *orphan_hs;          /* claimed by the shutdown, for tf_async_server_shutdown to free */
    item *orphan_ready;
    /* set by init before the first connection */
    tf__mem_budget *budget;     /* shared with its connections: live counts, cfg.recv_mem_budget */
};

/* The server whose callback the current thread is running (shutdown from inside one does not
 * wait for itself). */
static _Thread_local const tf_async_server *cb_server;

static void on_listen(tf_evb *evb, int fd, unsigned events, void *arg);
static void rest(tf_async_server *s);

static void watch(tf_async_server *s, bool on)
{
    if (s->lfd < 0 || s->watching == on)
        return;
    tf_err rc = on ? tf_evb_register_fd(s->evb, s->lfd, TF_EVB_READ, on_listen, s)
                   : tf_evb_unregister_fd(s->evb, s->lfd);
    s->watching = on && rc == TF_OK;
    if (on && rc != TF_OK && rc != TF_ERR_SHUTDOWN && !s->resting) {
        TF__LOG(TF_LOG_ERROR, "async_server", "%s: the listen socket's watch could not be "
                "registered (%s): resting, then watching again", s->addr, tf_strerror(rc));
        rest(s); /* no memory for the watch: try again after a pause, never go deaf */
    }
}

/* The ready queue is at its bound, or the server is shut (so: accept no more). */
static bool ready_full(tf_async_server *s)
{
    pthread_mutex_lock(&s->mu);
    bool full = s->shut_done || s->nready >= (size_t)s->cfg.accept_queue;
    pthread_mutex_unlock(&s->mu);
    return full;
}

/* Watch the listen socket unless resting or the ready queue is full (server loop). */
static void rewatch(tf_async_server *s)
{
    watch(s, !s->resting && !ready_full(s));
}

/* Run an accept or reject callback (cb copied under mu): counted in in_cb, so that a shutdown
 * can wait until none runs; marked for the thread, so that one called inside does not wait for
 * itself. */
static void cb_enter(tf_async_server *s, const tf_async_server **saved)
{
    s->in_cb++; /* under mu */
    *saved = cb_server;
    cb_server = s;
}

static void cb_leave(tf_async_server *s, const tf_async_server *saved)
{
    cb_server = saved;
    pthread_mutex_lock(&s->mu);
    if (--s->in_cb == 0)
        pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* A client dropped in the handshake or at once (max_conns, a uid not allowed): counted,
 * logged, reported. */
static void reject(tf_async_server *s, const char *peer, tf_err err, int os_err)
{
    atomic_fetch_add_explicit(&s->rejected, 1u, memory_order_relaxed);
    tf__srv_count_reject(&s->k, err);
    tf__srv_reject_log("async_server", peer, err, os_err);
    pthread_mutex_lock(&s->mu);
    tf_async_reject_cb cb = s->shut_done ? NULL : s->rcb;
    void *arg = s->rarg;
    const tf_async_server *saved = NULL;
    if (cb)
        cb_enter(s, &saved);
    pthread_mutex_unlock(&s->mu);
    if (cb) {
        cb(s, peer, err, os_err, arg);
        cb_leave(s, saved);
    }
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

static void hs_unlink(tf_async_server *s, hsnode *n)
{
    if (n->prev)
        n->prev->next = n->next;
    else
        s->hs = n->next;
    if (n->next)
        n->next->prev = n->prev;
    atomic_fetch_sub_explicit(&s->k.handshaking, 1u, memory_order_relaxed);
}

/* The handshake of a new client ended (on the connection's loop thread, inside the
 * connection): a handshaken connection goes to the callback, the oldest waiting accept, or the
 * ready queue; a failed one is counted, reported and freed. */
static void on_ready(tf_async_conn *c, tf_err err, int os_err, void *arg)
{
    hsnode *n = arg;
    tf_async_server *s = n->s;
    pthread_mutex_lock(&s->mu);
    if (n->claimed) {
        pthread_mutex_unlock(&s->mu); /* the shutdown frees c and n */
        return;
    }
    hs_unlink(s, n);
    if (err != TF_OK) {
        pthread_mutex_unlock(&s->mu);
        if (err != TF_ERR_SHUTDOWN && err != TF_ERR_CANCELLED) {
            tf__evsink_tell(s->sink, c, TF_CONN_HANDSHAKE_FAILED, err, os_err);
            reject(s, n->peer, err, os_err);
        }
        free(n);
        tf_async_conn_free(c);
        return;
    }
    free(n);
    pthread_mutex_unlock(&s->mu);
    atomic_fetch_add_explicit(&s->k.accepted, 1u, memory_order_relaxed);
    tf__evsink_connected(s->sink, c); /* before the accept callback, outside the lock */
    pthread_mutex_lock(&s->mu);
    if (s->shut_done) { /* shut down meanwhile: the connection is nobody's */
        pthread_mutex_unlock(&s->mu);
        tf_async_conn_free(c);
        return;
    }
    tf_async_accept_cb cb = s->acb;
    void *cbarg = s->aarg;
    const tf_async_server *saved = NULL;
    item *w = NULL;
    if (cb) {
        cb_enter(s, &saved);
    } else if ((w = pop(&s->waiting, &s->waiting_tail)) == NULL) {
        item *it = tf__alloc(sizeof *it);
        if (it) {
            it->c = c;
            it->p = NULL;
            push(&s->ready, &s->ready_tail, it);
            s->nready++;
        }
        pthread_mutex_unlock(&s->mu);
        if (!it)
            tf_async_conn_free(c);
        else if (tf_evb_in_loop_thread(s->evb))
            rewatch(s); /* else the listen handler sees a full queue itself */
        return;
    }
    pthread_mutex_unlock(&s->mu);
    if (cb) {
        cb(s, c, cbarg);
        cb_leave(s, saved);
        return;
    }
    tf_promise_set(w->p, TF_OK, 0, c, tf__async_conn_dtor);
    tf_promise_free(w->p);
    free(w);
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
    atomic_fetch_add_explicit(&s->k.rests, 1u, memory_order_relaxed);
    if (tf_evb_timer_after(s->evb, s->rest_ms, rest_over, s, &s->rest_timer) != TF_OK) {
        /* No timer (stopping, or no memory for it): never stay deaf. Watch again at once; a
         * listen socket that is still unserviceable comes back here through the next event. */
        s->resting = false;
        if (!tf__evb_stopping(s->evb))
            rewatch(s);
    }
}

/* The loop for the next connection: the fewest of the server's connections now, not stopping;
 * ties go round robin from the one after the last pick. */
static size_t pick_loop(tf_async_server *s)
{
    tf__mem_budget *b = s->budget;
    size_t best = 0, fewest = SIZE_MAX;
    for (size_t k = 0; k < b->nloops; k++) {
        size_t i = (s->next_loop + k) % b->nloops;
        size_t n = atomic_load_explicit(&b->loop_live[i], memory_order_relaxed);
        if (n < fewest && !tf__evb_stopping(b->loops[i])) {
            fewest = n;
            best = i;
        }
    }
    s->next_loop = (best + 1) % b->nloops;
    return best;
}

static void take(tf_async_server *s, int fd)
{
    tf__mem_budget *b = s->budget;
    int pos = 0;
    if (tf__unix_peer_check(fd, &s->cfg, &pos) != TF_OK) { /* a uid the config does not allow */
        char peer[TF_ADDRSTR_LEN];
        tf__sock_label(fd, true, peer, sizeof peer);
        close(fd);
        reject(s, peer, TF_ERR_PEER_DENIED, pos);
        return;
    }
    /* Only this thread adds to live (others only give back): the cap is never passed. */
    if (s->cfg.max_conns > 0 &&
        atomic_load_explicit(&b->live, memory_order_relaxed) >= (size_t)s->cfg.max_conns) {
        /* Over the cap: closed at once, counted and reported as rejected (BUSY). */
        char peer[TF_ADDRSTR_LEN];
        tf__sock_label(fd, true, peer, sizeof peer);
        close(fd);
        reject(s, peer, TF_ERR_BUSY, 0);
        return;
    }
    hsnode *n = tf__calloc(1, sizeof *n);
    int os = 0;
    if (!n || tf__sock_apply(fd, &s->cfg, true, &os, NULL) != TF_OK) {
        bool nomem = !n;
        free(n);
        close(fd);
        tf__srv_count_reject(&s->k, nomem ? TF_ERR_NOMEM : TF_ERR_IO);
        TF__LOG(TF_LOG_ERROR, "async_server", "%s: a client dropped at accept: %s", s->addr,
                nomem ? "no memory" : "a socket option could not be set");
        return;
    }
    n->s = s;
    tf__sock_label(fd, true, n->peer, sizeof n->peer);
    pthread_mutex_lock(&s->mu);
    n->next = s->hs;
    if (s->hs)
        s->hs->prev = n;
    s->hs = n;
    atomic_fetch_add_explicit(&s->k.handshaking, 1u, memory_order_relaxed);
    pthread_mutex_unlock(&s->mu);
    /* n->c is set before the handshake starts; the handshake may end (and free n) inside, or on
     * the other loop before the call returns: n is not touched after a success. The live counts
     * are the connection's from here on (its finalize gives them back). */
    size_t i = pick_loop(s);
    atomic_fetch_add_explicit(&b->live, 1u, memory_order_relaxed);
    atomic_fetch_add_explicit(&b->loop_live[i], 1u, memory_order_relaxed);
    tf_err nrc = tf__async_conn_new(b->loops[i], fd, &s->cfg, b, true, on_ready, n, &n->c);
    if (nrc != TF_OK) {
        atomic_fetch_sub_explicit(&b->loop_live[i], 1u, memory_order_relaxed);
        atomic_fetch_sub_explicit(&b->live, 1u, memory_order_relaxed);
        pthread_mutex_lock(&s->mu); /* no verdict comes, and only this loop's shutdown claims */
        hs_unlink(s, n);
        pthread_mutex_unlock(&s->mu);
        close(fd);
        /* no memory, or the transport could not be set up (TLS): counted and reported */
        if (nrc != TF_ERR_SHUTDOWN)
            reject(s, n->peer, nrc, 0);
        free(n);
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
        TF__LOG(TF_LOG_ERROR, "async_server", "%s: the listen socket's watch failed: resting, "
                "then watching again", s->addr);
        rest(s);
        return;
    }
    for (int i = 0; i < ACCEPT_BATCH && s->watching; i++) {
        if (ready_full(s)) {
            /* Filled by handshakes that ended on other loops: the kernel backlog holds the rest
             * until an accept takes one (accept_task watches again). */
            watch(s, false);
            return;
        }
        atomic_fetch_add_explicit(&s->accept_calls, 1u, memory_order_relaxed);
        int cfd = tf__sys_accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd >= 0) {
            s->rest_ms = 0;
            take(s, cfd);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            int e = errno;
            rest(s); /* EMFILE, ENFILE, ENOBUFS, ENOMEM, or worse: back off */
            TF__LOG(TF_LOG_WARN, "async_server", "%s: accept: %s: resting %llu ms", s->addr,
                    strerror(e), (unsigned long long)s->rest_ms);
        }
        return;
    }
}

/* ---------------------------------------------------------------- lifecycle on the loop */

/* On the server loop (a task of the shutdown, or the loop's stop hook). It frees nothing that
 * lives on a loop: the handshakes in progress and the unclaimed connections become orphans,
 * which tf_async_server_shutdown frees on its caller's thread -- freeing a connection of
 * another loop here would block this loop on that one, and that one may be the caller, blocked
 * on this loop (a server freed from another of its loops' threads). */
static void shut_down(tf_async_server *s)
{
    pthread_mutex_lock(&s->mu);
    if (s->shut_done) {
        pthread_mutex_unlock(&s->mu);
        return;
    }
    s->shut_done = true;
    item *waiting = s->waiting;
    s->orphan_ready = s->ready;
    s->waiting = s->waiting_tail = s->ready = s->ready_tail = NULL;
    s->nready = 0;
    s->orphan_hs = s->hs;
    s->hs = NULL;
    for (hsnode *n = s->orphan_hs; n; n = n->next)
        n->claimed = true; /* their verdicts, if any come, leave them to the shutdown */
    pthread_mutex_unlock(&s->mu);
    tf__evsink_close(s->sink, false); /* no event starts after the shutdown (waited for below) */
    watch(s, false);
    if (s->lfd >= 0) {
        close(s->lfd);
        s->lfd = -1;
    }
    tf__unix_owned_release(&s->owned);
    tf__evb_timer_drop(&s->rest_timer);
    /* Always: the stop drain may be walking the hook list right now (removal is idempotent). */
    tf__evb_hook_remove(s->evb, &s->hook);
    while (waiting) {
        item *it = waiting;
        waiting = it->next;
        tf_promise_fail(it->p, TF_ERR_SHUTDOWN, 0);
        tf_promise_free(it->p);
        free(it);
    }
}

/* Free the orphans of shut_down (the caller's thread; each free waits for its loop). */
static void free_orphans(tf_async_server *s)
{
    pthread_mutex_lock(&s->mu);
    item *ready = s->orphan_ready;
    hsnode *hs = s->orphan_hs;
    s->orphan_ready = NULL;
    s->orphan_hs = NULL;
    pthread_mutex_unlock(&s->mu);
    while (ready) {
        item *it = ready;
        ready = it->next;
        tf_async_conn_free(it->c);
        free(it);
    }
    while (hs) {
        hsnode *n = hs;
        hs = n->next;
        tf_async_conn_free(n->c); /* a verdict it gives inside finds n claimed */
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
    pthread_mutex_lock(&s->mu);
    bool shut = s->shut_done;
    pthread_mutex_unlock(&s->mu);
    if (shut)
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
    tf_evb **loops = tf__alloc(sizeof *loops);
    if (!s || !loops || pthread_mutex_init(&s->mu, NULL) != 0) {
        free(s);
        free(loops);
        return TF_ERR_NOMEM;
    }
    if (pthread_cond_init(&s->cv, NULL) != 0) {
        pthread_mutex_destroy(&s->mu);
        free(s);
        free(loops);
        return TF_ERR_NOMEM;
    }
    s->sink = tf__evsink_new();
    if (!s->sink) {
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
        free(s);
        free(loops);
        return TF_ERR_NOMEM;
    }
    s->evb = evb;
    loops[0] = evb;
    s->loops = loops;
    s->nloops = 1;
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
        rc = tf__sock_listen_ex(addr, &s->cfg, &fd, &os, msg, &s->owned);
    }
    if (rc == TF_OK && !s->budget)
        rc = tf__mem_budget_new(s->cfg.recv_mem_budget > 0 ? (size_t)s->cfg.recv_mem_budget
                                                           : SIZE_MAX,
                                &s->budget);
    if (rc == TF_OK) /* no connection yet: a second try (after a failed init) sets them anew */
        rc = tf__mem_budget_set_loops(s->budget, s->loops, s->nloops);
    if (rc != TF_OK) {
        if (given >= 0)
            close(given);
        else if (fd >= 0)
            close(fd);
        tf__unix_owned_release(&s->owned);
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
        tf__unix_owned_release(&s->owned);
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
        tf__unix_owned_release(&s->owned);
        pthread_mutex_lock(&s->mu);
        s->shut_done = true;
        pthread_mutex_unlock(&s->mu);
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
        pthread_mutex_lock(&s->mu);
        s->acb = cb;
        s->aarg = arg;
        pthread_mutex_unlock(&s->mu);
    }
}

void tf_async_server_on_reject(tf_async_server *s, tf_async_reject_cb cb, void *arg)
{
    if (s) {
        pthread_mutex_lock(&s->mu);
        s->rcb = cb;
        s->rarg = arg;
        pthread_mutex_unlock(&s->mu);
    }
}

tf_err tf_async_server_add_loop(tf_async_server *s, tf_evb *evb)
{
    if (!s || !evb)
        return TF_ERR_INVALID_ARGUMENT;
    if (atomic_load_explicit(&s->state, memory_order_acquire) != SV_NEW)
        return TF_ERR_BAD_STATE;
    for (size_t i = 0; i < s->nloops; i++)
        if (s->loops[i] == evb)
            return TF_ERR_INVALID_ARGUMENT;
    tf_evb **l = realloc(s->loops, (s->nloops + 1) * sizeof *l);
    if (!l)
        return TF_ERR_NOMEM;
    l[s->nloops++] = evb;
    s->loops = l;
    return TF_OK;
}

static void accept_task(void *arg)
{
    item *w = arg;
    tf_async_server *s = (tf_async_server *)w->c; /* smuggled in by tf_async_server_accept */
    w->c = NULL;
    pthread_mutex_lock(&s->mu);
    if (s->shut_done) {
        pthread_mutex_unlock(&s->mu);
        tf_promise_fail(w->p, TF_ERR_SHUTDOWN, 0);
        tf_promise_free(w->p);
        free(w);
        return;
    }
    item *it = pop(&s->ready, &s->ready_tail);
    if (!it) {
        push(&s->waiting, &s->waiting_tail, w);
        pthread_mutex_unlock(&s->mu);
        return;
    }
    s->nready--;
    pthread_mutex_unlock(&s->mu);
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
    pthread_mutex_lock(&s->mu);
    bool cb = s->acb != NULL;
    pthread_mutex_unlock(&s->mu);
    if (st != SV_LISTENING || cb)
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
        pthread_mutex_lock(&s->mu);
        s->shut_done = true;
        pthread_mutex_unlock(&s->mu);
        tf__evsink_close(s->sink, false); /* no connection ever: no event runs */
        return TF_OK;
    }
    tf_err rc = tf__evb_teardown_wait(s->evb, shutdown_task, s); /* any thread, another loop's */
    if (rc == TF_ERR_SHUTDOWN)
        tf__evb_wait_stopped(s->evb); /* its stop hook shut the server down */
    free_orphans(s);
    /* No callback or event starts any more (shut_done, the sink closed); wait for those running
     * on other loops' threads, unless called from inside one (it would wait for itself, or two
     * for each other). */
    bool inside = cb_server == s || tf__evsink_inside(s->sink);
    if (!inside) {
        pthread_mutex_lock(&s->mu);
        while (s->in_cb > 0)
            pthread_cond_wait(&s->cv, &s->mu);
        pthread_mutex_unlock(&s->mu);
    }
    tf__evsink_close(s->sink, !inside);
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

tf_err tf_async_server_stats(const tf_async_server *s, tf_server_stats *out)
{
    if (!s)
        return TF_ERR_INVALID_ARGUMENT;
    return tf__srv_stats_fill(
        &s->k, tf_async_server_active(s),
        atomic_load_explicit(&s->k.handshaking, memory_order_relaxed), out);
}

tf_err tf_async_server_on_event(tf_async_server *s, tf_async_event_cb cb, void *arg)
{
    if (!s)
        return TF_ERR_INVALID_ARGUMENT;
    tf__evsink_set(s->sink, cb, arg);
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
    tf__evsink_unref(s->sink);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s->loops);
    free(s);
}

uint64_t tf__async_server_accept_calls(const tf_async_server *s)
{
    return atomic_load_explicit(&s->accept_calls, memory_order_relaxed);
}

size_t tf__async_server_loop_live(const tf_async_server *s, const tf_evb *evb)
{
    const tf__mem_budget *b = s->budget;
    for (size_t i = 0; b && i < b->nloops; i++)
        if (b->loops[i] == evb)
            return atomic_load_explicit(&b->loop_live[i], memory_order_relaxed);
    return 0;
}
