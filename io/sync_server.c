/* io/sync_server.c -- the blocking server (sync.h, SPEC 9.6): a non-blocking listen socket, an
 * eventfd and the sockets of the handshakes in progress in one poll, so shutdown wakes every
 * accept at once and a silent client delays nobody: up to TF_SYNC_HANDSHAKES handshakes run
 * side by side, each under its own deadline, and accept returns the first that completes;
 * clients that fail theirs are dropped and accept goes on; fd exhaustion is waited out with
 * back-off, never spun on. One accept at a time drives the handshakes (the "driver"); other
 * accepting threads wait for the role on a condition variable. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sync_internal.h"
#include "tcpframe/fdio.h"
#include "xport.h"
#include "tcpframe/proto.h"

/* Fewest milliseconds between two accept attempts after fd or memory exhaustion, whatever the
 * configured back-off says (a zero delay would make the retries a busy loop). */
#define MIN_PAUSE_MS 10

enum { S_NEW, S_INIT, S_LISTEN, S_SHUT };

/* A handshake in progress: an accepted client whose magic has not arrived (or ours not left). */
typedef struct pending {
    int fd; /* -1 once taken or closed, until compact() drops the slot */
    tf__xport x; /* its transport (TLS: its own context; plain: pointed at a fdio per step) */
    tf_hs hs;
    uint64_t deadline; /* CLOCK_MONOTONIC ns; TF__FOREVER: none */
    tf_addr peer;
} pending;

struct tf_sync_server {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* signalled when the driver leaves, broadcast at shutdown */
    int state;         /* S_*, under mu */
    int inflight; /* accepts running, under mu: the last one out after shutdown closes the fds */
    bool driving; /* an accept drives the handshakes (owns hs[] and pfd[]), under mu */
    int lfd, efd; /* listen socket and shutdown eventfd; written under mu, -1 when closed */
    tf__unix_owned owned; /* the socket file init bound (SPEC 9.9), removed with lfd; under mu */
    tf_tcp_config cfg;    /* written by init before S_LISTEN, read-only afterwards */
    tf_reject_cb on_reject;
    void *reject_arg;
    _Atomic uint64_t rejected;
    _Atomic uint64_t rounds;
    tf__srv_counters k; /* statistics (any thread, relaxed) */
    tf__sync_sink *sink; /* its connections not yet freed and the events (shared with them) */
    /* The handshakes in progress, hs[0..npending): the driver's, or (with no accept running)
     * close_fds's. They outlive an accept call: the next one goes on with them. */
    pending hs[TF_SYNC_HANDSHAKES];
    _Atomic size_t npending;
    struct pollfd pfd[TF_SYNC_HANDSHAKES + 2]; /* the driver's poll set */
};

tf_err tf_sync_server_new(tf_sync_server **out)
{
    if (!out)
        return TF_ERR_INVALID_ARGUMENT;
    *out = NULL;
    tf_sync_server *s = tf__calloc(1, sizeof *s);
    if (!s)
        return TF_ERR_NOMEM;
    if (pthread_mutex_init(&s->mu, NULL) != 0) {
        free(s);
        return TF_ERR_NOMEM;
    }
    if (pthread_cond_init(&s->cv, NULL) != 0) {
        pthread_mutex_destroy(&s->mu);
        free(s);
        return TF_ERR_NOMEM;
    }
    /* Recursive: an event callback may free another connection of the server (its CLOSED). */
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
    s->sink = tf__calloc(1, sizeof *s->sink);
    int mrc = s->sink ? pthread_mutex_init(&s->sink->mu, &ma) : -1;
    pthread_mutexattr_destroy(&ma);
    if (mrc != 0) {
        free(s->sink);
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
        free(s);
        return TF_ERR_NOMEM;
    }
    s->state = S_NEW;
    s->lfd = s->efd = -1;
    atomic_init(&s->rejected, 0);
    atomic_init(&s->rounds, 0);
    atomic_init(&s->sink->refs, 1u);
    atomic_init(&s->npending, 0);
    *out = s;
    return TF_OK;
}

/* ---------------------------------------------------------------- init and shutdown */

/* The listen socket (bound from |addr|, or |given| >= 0 taken over) and the shutdown eventfd.
 * |given| is closed on failure (the server owns it from the call on). */
static tf_err open_fds(const char *addr, int given, const tf_tcp_config *cfg, int *lfd, int *efd,
                       tf__unix_owned *owned, tf_errmsg *msg)
{
    *efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (*efd < 0) {
        int e = errno;
        tf__errmsg(msg, "listen %s: eventfd: %s", addr, strerror(e));
        if (given >= 0)
            close(given);
        return TF_ERR_IO;
    }
    int os = 0;
    tf_err e;
    if (given >= 0) {
        e = tf__sock_listen_fd(given, cfg, &os, msg);
        if (e == TF_OK)
            *lfd = given;
        else
            close(given);
    } else {
        e = tf__sock_listen_ex(addr, cfg, lfd, &os, msg, owned);
    }
    if (e != TF_OK) {
        close(*efd);
        *efd = -1;
    }
    return e;
}

/* Claim the server for init: only a new one may be initialised, and only once. */
static tf_err init_claim(tf_sync_server *s, tf_errmsg *msg)
{
    pthread_mutex_lock(&s->mu);
    int st = s->state;
    if (st == S_NEW)
        s->state = S_INIT;
    pthread_mutex_unlock(&s->mu);
    if (st == S_SHUT) {
        tf__errmsg(msg, "server init: the server was shut down");
        return TF_ERR_SHUTDOWN;
    }
    if (st != S_NEW) {
        tf__errmsg(msg, "server init: already initialised");
        return TF_ERR_BAD_STATE;
    }
    return TF_OK;
}

/* init and init_fd: |fd| < 0 binds |addr|; else fd is taken over (and |addr| names it). */
static tf_err init(tf_sync_server *s, const char *addr, int fd, const tf_tcp_config *cfg,
                   tf_errmsg *msg)
{
    tf_err e = init_claim(s, msg);
    if (e != TF_OK) {
        if (fd >= 0)
            close(fd);
        return e;
    }
    tf_tcp_config k;
    int lfd = -1, efd = -1;
    tf__unix_owned owned = {.set = false};
    e = tf__config_load(&k, cfg, msg);
    if (e == TF_OK)
        e = open_fds(addr, fd, &k, &lfd, &efd, &owned, msg);
    else if (fd >= 0)
        close(fd);
    pthread_mutex_lock(&s->mu);
    if (s->state == S_SHUT && e == TF_OK) { /* shut down while we were binding */
        close(lfd);
        close(efd);
        tf__unix_owned_release(&owned);
        tf__errmsg(msg, "server init %s: the server was shut down", addr);
        e = TF_ERR_SHUTDOWN;
    } else if (s->state != S_SHUT) {
        if (e == TF_OK) {
            s->cfg = k;
            s->lfd = lfd;
            s->efd = efd;
            s->owned = owned;
        }
        s->state = e == TF_OK ? S_LISTEN : S_NEW; /* a failed init may be retried */
    }
    pthread_mutex_unlock(&s->mu);
    return e;
}

tf_err tf_sync_server_init(tf_sync_server *s, const char *addr, const tf_tcp_config *cfg,
                           tf_errmsg *msg)
{
    tf__errmsg_clear(msg);
    if (!s || !addr) {
        tf__errmsg(msg, "server init: %s is NULL", s ? "addr" : "server");
        return TF_ERR_INVALID_ARGUMENT;
    }
    return init(s, addr, -1, cfg, msg);
}

tf_err tf_sync_server_init_fd(tf_sync_server *s, int fd, const tf_tcp_config *cfg, tf_errmsg *msg)
{
    tf__errmsg_clear(msg);
    if (!s || fd < 0) {
        tf__errmsg(msg, "server init: %s", s ? "fd < 0" : "the server is NULL");
        if (fd >= 0)
            close(fd);
        return TF_ERR_INVALID_ARGUMENT;
    }
    char name[24];
    snprintf(name, sizeof name, "fd %d", fd);
    return init(s, name, fd, cfg, msg);
}

/* Under mu, once shut down and no accept runs: the listen socket, the eventfd and the clients
 * still in their handshake (cut by shutdown: not rejects). */
static void close_fds(tf_sync_server *s)
{
    if (s->lfd >= 0)
        close(s->lfd);
    if (s->efd >= 0)
        close(s->efd);
    s->lfd = s->efd = -1;
    tf__unix_owned_release(&s->owned); /* after the close: no client can reach it any more */
    size_t n = atomic_load(&s->npending);
    for (size_t i = 0; i < n; i++) {
        tf__xport_close(&s->hs[i].x);
        close(s->hs[i].fd);
    }
    atomic_store(&s->npending, 0);
}

tf_err tf_sync_server_shutdown(tf_sync_server *s)
{
    if (!s)
        return TF_ERR_INVALID_ARGUMENT;
    pthread_mutex_lock(&s->mu);
    if (s->state != S_SHUT) {
        s->state = S_SHUT;
        if (s->efd >= 0) {
            /* Never read: the eventfd stays readable, so every poll on it wakes, now or later. */
            (void)tf__sys_eventfd_write(s->efd);
        }
        pthread_cond_broadcast(&s->cv); /* accepts waiting for the driver's role */
        if (s->inflight == 0)
            close_fds(s);
    }
    pthread_mutex_unlock(&s->mu);
    return TF_OK;
}

void tf_sync_server_free(tf_sync_server *s)
{
    if (!s)
        return;
    tf_sync_server_shutdown(s);
    pthread_mutex_lock(&s->mu);
    close_fds(s); /* no accept may run any more */
    pthread_mutex_unlock(&s->mu);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_lock(&s->sink->mu);
    s->sink->fn = NULL; /* no event after this */
    pthread_mutex_unlock(&s->sink->mu);
    tf__sync_sink_unref(s->sink);
    free(s);
}

void tf__sync_sink_tell(tf__sync_sink *k, tf_sync_conn *c, const char *peer, tf_conn_event ev,
                        tf_err err, int os_err)
{
    pthread_mutex_lock(&k->mu);
    if (k->fn)
        k->fn(c, peer, ev, err, os_err, k->arg);
    pthread_mutex_unlock(&k->mu);
}

void tf__sync_sink_unref(tf__sync_sink *k)
{
    if (k && atomic_fetch_sub_explicit(&k->refs, 1u, memory_order_acq_rel) == 1u) {
        pthread_mutex_destroy(&k->mu);
        free(k);
    }
}

tf_err tf_sync_server_on_event(tf_sync_server *s, tf_sync_event_cb cb, void *arg)
{
    if (!s)
        return TF_ERR_INVALID_ARGUMENT;
    pthread_mutex_lock(&s->sink->mu);
    s->sink->fn = cb;
    s->sink->arg = arg;
    pthread_mutex_unlock(&s->sink->mu);
    return TF_OK;
}

void tf_sync_server_on_reject(tf_sync_server *s, tf_reject_cb cb, void *arg)
{
    if (!s)
        return;
    s->on_reject = cb;
    s->reject_arg = arg;
}

tf_err tf_sync_server_addr(const tf_sync_server *s, char *buf, size_t len)
{
    if (!s || !buf)
        return TF_ERR_INVALID_ARGUMENT;
    tf_sync_server *m = (tf_sync_server *)(uintptr_t)s; /* the mutex only */
    pthread_mutex_lock(&m->mu);
    tf_err e = m->state == S_LISTEN ? tf__sock_name(m->lfd, false, buf, len) : TF_ERR_BAD_STATE;
    pthread_mutex_unlock(&m->mu);
    return e;
}

uint64_t tf_sync_server_rejected(const tf_sync_server *s)
{
    return s ? atomic_load(&s->rejected) : 0;
}

uint64_t tf__sync_server_rounds(const tf_sync_server *s)
{
    return s ? atomic_load(&s->rounds) : 0;
}

tf_err tf_sync_server_stats(const tf_sync_server *s, tf_server_stats *out)
{
    if (!s)
        return TF_ERR_INVALID_ARGUMENT;
    return tf__srv_stats_fill(&s->k, atomic_load_explicit(&s->sink->live, memory_order_relaxed),
                              atomic_load(&s->npending), out);
}

size_t tf__sync_server_pending(const tf_sync_server *s)
{
    return s ? atomic_load(&s->npending) : 0;
}

/* ---------------------------------------------------------------- accept */

/* A client failed the handshake: count it and tell on_reject. */
static void reject(tf_sync_server *s, const tf_addr *peer, tf_err err, int os_err)
{
    atomic_fetch_add(&s->rejected, 1);
    tf__srv_count_reject(&s->k, err);
    bool log = atomic_load_explicit(&tf__log_level, memory_order_relaxed) >= TF_LOG_WARN;
    pthread_mutex_lock(&s->sink->mu);
    bool ev = s->sink->fn != NULL;
    pthread_mutex_unlock(&s->sink->mu);
    if (!s->on_reject && !log && !ev)
        return;
    char text[TF_ADDRSTR_LEN];
    if (tf_addr_format(peer, text, sizeof text) != TF_OK)
        snprintf(text, sizeof text, "?");
    if (log)
        tf__srv_reject_log("sync_server", text, err, os_err);
    tf__sync_sink_tell(s->sink, NULL, text, TF_CONN_HANDSHAKE_FAILED, err, os_err);
    if (s->on_reject)
        s->on_reject(s->reject_arg, text, err, os_err);
}

/* Drop the slots whose fd was taken or closed (fd -1), keeping the others in order. */
static void compact(tf_sync_server *s)
{
    size_t n = atomic_load(&s->npending), k = 0;
    for (size_t i = 0; i < n; i++)
        if (s->hs[i].fd >= 0)
            s->hs[k++] = s->hs[i];
    atomic_store(&s->npending, k);
}

/* Drive the handshake of slot |i| as far as it goes without blocking. TF_OK: done, *out is the
 * connection; TF_ERR_BUSY: not done yet, or it failed (the client is closed and rejected; its
 * slot's fd is -1, for compact); TF_ERR_NOMEM: no memory for the connection (client closed). */
static tf_err step(tf_sync_server *s, size_t i, tf_sync_conn **out)
{
    pending *p = &s->hs[i];
    tf_fdio f; /* made per step: a slot moves in compact, and fdio points at itself */
    tf_fdio_init(&f, p->fd, p->fd);
    if (p->x.ops == &tf__xport_tcp)
        p->x.ctx = &f;
    int os = 0;
    tf_err e = TF_OK;
    tf_step st = tf__xport_handshake(&p->x, &e, &os); /* TLS first; the magic runs inside */
    if (st == TF_DONE && s->cfg.handshake) {
        tf_io io = tf__xport_io(&p->x);
        st = tf_hs_try(&p->hs, &io);
        if (st == TF_ERROR)
            e = tf__xport_reason(&p->x, tf_hs_error(&p->hs, &os), &os);
    }
    while (st != TF_ERROR && p->x.ops->flush) { /* what the transport holds (our magic) */
        long r = p->x.ops->flush(p->x.ctx, &os);
        if (r == TF_IO_INTR)
            continue;
        if (r == TF_IO_AGAIN)
            st = TF_AGAIN;
        if (r == TF_IO_FAIL) {
            st = TF_ERROR;
            e = tf__xport_reason(&p->x, TF_ERR_IO, &os);
        }
        break;
    }
    if (st == TF_AGAIN)
        return TF_ERR_BUSY;
    int fd = p->fd;
    p->fd = -1;
    if (st == TF_DONE)
        return tf__sync_conn_wrap(fd, &s->cfg, &p->peer, &p->x, out); /* NOMEM closes fd */
    tf__xport_close(&p->x);
    close(fd);
    reject(s, &p->peer, e, os);
    return TF_ERR_BUSY;
}

/* Drop the handshakes whose deadline has passed (TIMEOUT); the earliest deadline left. */
static uint64_t expire(tf_sync_server *s, uint64_t now)
{
    uint64_t next = TF__FOREVER;
    size_t n = atomic_load(&s->npending);
    for (size_t i = 0; i < n; i++) {
        pending *p = &s->hs[i];
        if (p->deadline <= now) {
            tf__xport_close(&p->x);
            close(p->fd);
            p->fd = -1;
            reject(s, &p->peer, TF_ERR_TIMEOUT, 0);
        } else if (p->deadline < next) {
            next = p->deadline;
        }
    }
    compact(s);
    return next;
}

/* Errors accept(2) reports for one pending connection that failed (man 2 accept): that
 * connection is gone from the queue, so trying again at once cannot spin. */
static bool per_connection(int e)
{
    return e == ECONNABORTED || e == EPROTO || e == ENETDOWN || e == ENOPROTOOPT ||
           e == EHOSTDOWN || e == ENONET || e == EHOSTUNREACH || e == EOPNOTSUPP ||
           e == ENETUNREACH || e == EPERM;
}

/* What the driver keeps between rounds of one accept call. */
typedef struct round_state {
    unsigned fails;       /* transient accept failures in a row */
    uint32_t seed;        /* back-off jitter */
    uint64_t pause_until; /* back-off: the listen socket stays out of poll until then */
} round_state;

/* A failed accept4: TF_ERR_BUSY to go on (after a back-off pause for resource exhaustion, which
 * leaves the client queued and the listen socket readable), or the error to return. */
static tf_err accept_failed(tf_sync_server *s, int err, round_state *r, int *os_err,
                            tf_errmsg *msg)
{
    if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR || per_connection(err))
        return TF_ERR_BUSY; /* another acceptor took it, a signal, or that client is gone */
    int64_t limit = s->cfg.accept_retries < 0 ? 0 : s->cfg.accept_retries;
    if (!tf__accept_transient(err) || (int64_t)r->fails >= limit) {
        char where[TF_ADDRSTR_LEN];
        tf__sock_label(s->lfd, false, where, sizeof where);
        *os_err = err;
        tf__errmsg(msg, "accept on %s: %s (%u retries)", where, strerror(err), r->fails);
        return TF_ERR_IO;
    }
    ++r->fails;
    uint64_t ms = tf__backoff_ms(&s->cfg, r->fails, &r->seed);
    if (ms < MIN_PAUSE_MS)
        ms = MIN_PAUSE_MS;
    atomic_fetch_add_explicit(&s->k.rests, 1u, memory_order_relaxed);
    TF__LOG(TF_LOG_WARN, "sync_server", "accept: %s: pausing %llu ms (pause %u of at most %lld)",
            strerror(err), (unsigned long long)ms, r->fails, (long long)limit);
    r->pause_until = tf__deadline_ms((int64_t)ms);
    return TF_ERR_BUSY;
}

/* Accept one client from the listen socket: options, then (with the handshake on) a new slot
 * and a first step of its handshake. TF_OK (*out set), TF_ERR_BUSY (go on), or a failure of
 * ours to return (IO from accept or an option, NOMEM). */
static tf_err take_client(tf_sync_server *s, round_state *r, tf_sync_conn **out, int *os_err,
                          tf_errmsg *msg)
{
    tf_addr peer;
    peer.len = sizeof peer.ss;
    int fd = tf__sys_accept4(s->lfd, (struct sockaddr *)&peer.ss, &peer.len,
                             SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return accept_failed(s, errno, r, os_err, msg);
    r->fails = 0;
    int pos = 0;
    if (tf__unix_peer_check(fd, &s->cfg, &pos) != TF_OK) { /* a uid the config does not allow */
        close(fd);
        reject(s, &peer, TF_ERR_PEER_DENIED, pos);
        return TF_ERR_BUSY;
    }
    tf_err e = tf__sock_apply(fd, &s->cfg, false, os_err, msg);
    if (e != TF_OK) {
        close(fd);
        return e;
    }
    tf__xport x;
    tf_fdio f;
    e = tf__xport_open(&x, &f, fd, &s->cfg, true, os_err);
    if (e != TF_OK) {
        close(fd);
        if (e == TF_ERR_NOMEM)
            return e;
        reject(s, &peer, e, *os_err); /* this client's transport: go on */
        *os_err = 0;
        return TF_ERR_BUSY;
    }
    if (!s->cfg.handshake && x.hs_done)
        return tf__sync_conn_wrap(fd, &s->cfg, &peer, &x, out);
    size_t n = atomic_load(&s->npending);
    pending *p = &s->hs[n];
    p->fd = fd;
    p->x = x;
    tf_hs_init(&p->hs);
    p->deadline = tf__deadline_ms(s->cfg.handshake_timeout_ms);
    p->peer = peer;
    atomic_store(&s->npending, n + 1);
    e = step(s, n, out); /* our magic goes out now; the client's may be here already */
    compact(s);
    return e;
}

/* The driver's loop: one poll over the shutdown eventfd, the listen socket (unless the slots
 * are full or accept is backing off) and every handshake in progress, in the direction its
 * tf_hs_wants names, until the earliest deadline. */
static tf_err accept_loop(tf_sync_server *s, tf_sync_conn **out, int *os_err, tf_errmsg *msg)
{
    round_state r = {.fails = 0, .pause_until = 0};
    r.seed = (uint32_t)tf__now_ns() ^ (uint32_t)(uintptr_t)&r;
    for (;;) {
        uint64_t now = tf__now_ns();
        uint64_t wake = expire(s, now);
        size_t n = atomic_load(&s->npending);
        bool listen = n < TF_SYNC_HANDSHAKES && now >= r.pause_until;
        if (n < TF_SYNC_HANDSHAKES && !listen && r.pause_until < wake)
            wake = r.pause_until;
        s->pfd[0] = (struct pollfd){.fd = s->efd, .events = POLLIN, .revents = 0};
        s->pfd[1] = (struct pollfd){.fd = listen ? s->lfd : -1, .events = POLLIN, .revents = 0};
        for (size_t i = 0; i < n; i++) {
            const pending *p = &s->hs[i];
            unsigned w = 0;
            if (!p->x.hs_done) {
                w = tf__xport_wants(&p->x, 0);
            } else {
                unsigned h = tf_hs_wants(&p->hs);
                if (h & TF_WANT_READ)
                    w |= tf__xport_wants(&p->x, TF_WANT_READ);
                if ((h & TF_WANT_WRITE) || tf__xport_out_pending(&p->x))
                    w |= tf__xport_wants(&p->x, TF_WANT_WRITE);
            }
            short ev = (short)(((w & TF_WANT_READ) ? POLLIN : 0) |
                               ((w & TF_WANT_WRITE) ? POLLOUT : 0));
            s->pfd[i + 2] = (struct pollfd){.fd = s->hs[i].fd, .events = ev, .revents = 0};
        }
        atomic_fetch_add(&s->rounds, 1);
        int rc = poll(s->pfd, (nfds_t)n + 2, tf__poll_ms(wake));
        if (rc < 0 && errno != EINTR) {
            *os_err = errno;
            return TF_ERR_IO;
        }
        if (rc <= 0)
            continue; /* a deadline, the end of a pause, or a signal: the top sees to it */
        if (s->pfd[0].revents != 0)
            return TF_ERR_SHUTDOWN;
        for (size_t i = 0; i < n; i++) {
            if (s->pfd[i + 2].revents == 0)
                continue;
            tf_err e = step(s, i, out);
            if (e != TF_ERR_BUSY) {
                compact(s);
                return e;
            }
        }
        compact(s);
        if (listen && s->pfd[1].revents != 0) {
            tf_err e = take_client(s, &r, out, os_err, msg);
            if (e != TF_ERR_BUSY)
                return e;
        }
    }
}

/* Wait (under mu) until no other accept drives the handshakes, then take the role. False if
 * the server was shut down meanwhile. */
static bool become_driver(tf_sync_server *s)
{
    while (s->driving && s->state == S_LISTEN)
        pthread_cond_wait(&s->cv, &s->mu);
    if (s->state != S_LISTEN)
        return false;
    s->driving = true;
    return true;
}

tf_err tf_sync_server_accept(tf_sync_server *s, tf_sync_conn **out, int *os_err, tf_errmsg *msg)
{
    int os = 0;
    tf__errmsg_clear(msg);
    if (out)
        *out = NULL;
    if (os_err)
        *os_err = 0;
    if (!s || !out)
        return TF_ERR_INVALID_ARGUMENT;
    pthread_mutex_lock(&s->mu);
    int st = s->state;
    bool counted = st == S_LISTEN, driver = false;
    if (counted) {
        s->inflight++;
        driver = become_driver(s);
        st = s->state;
    }
    pthread_mutex_unlock(&s->mu);
    tf_err e;
    if (!driver) {
        tf__errmsg(msg, "accept: %s",
                   st == S_SHUT ? "the server was shut down" : "the server is not initialised");
        e = st == S_SHUT ? TF_ERR_SHUTDOWN : TF_ERR_BAD_STATE;
        if (!counted)
            return e;
    } else {
        e = accept_loop(s, out, &os, msg);
        if (e == TF_OK) {
            atomic_fetch_add_explicit(&s->k.accepted, 1u, memory_order_relaxed);
            tf__sync_conn_track(*out, s->sink); /* CONNECTED */
        }
        if (e == TF_ERR_SHUTDOWN)
            tf__errmsg(msg, "accept: the server was shut down");
        else if (e != TF_OK && msg && msg->text[0] == '\0')
            tf__errmsg(msg, "accept: %s", os ? strerror(os) : tf_strerror(e)); /* poll, NOMEM */
    }
    pthread_mutex_lock(&s->mu);
    if (driver) {
        s->driving = false;
        pthread_cond_signal(&s->cv); /* the next accept takes the handshakes over */
    }
    if (--s->inflight == 0 && s->state == S_SHUT)
        close_fds(s);
    pthread_mutex_unlock(&s->mu);
    if (os_err)
        *os_err = os;
    return e;
}
