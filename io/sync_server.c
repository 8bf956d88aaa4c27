/* io/sync_server.c -- the blocking server (sync.h, SPEC 9.6): a non-blocking listen socket and
 * an eventfd in one poll, so shutdown wakes every accept at once (also one that is in a
 * handshake or a back-off pause); the handshake under its deadline; clients that fail it are
 * dropped and accept goes on; fd exhaustion is waited out with back-off, never spun on. */
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

/* Fewest milliseconds between two accept attempts after fd or memory exhaustion, whatever the
 * configured back-off says (a zero delay would make the retries a busy loop). */
#define MIN_PAUSE_MS 10

enum { S_NEW, S_INIT, S_LISTEN, S_SHUT };

struct tf_sync_server {
    pthread_mutex_t mu;
    int state;    /* S_*, under mu */
    int inflight; /* accepts running, under mu: the last one out after shutdown closes the fds */
    int lfd, efd; /* listen socket and shutdown eventfd; written under mu, -1 when closed */
    tf_tcp_config cfg; /* written by init before S_LISTEN, read-only afterwards */
    tf_reject_cb on_reject;
    void *reject_arg;
    _Atomic uint64_t rejected;
    _Atomic uint64_t rounds;
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
    s->state = S_NEW;
    s->lfd = s->efd = -1;
    atomic_init(&s->rejected, 0);
    atomic_init(&s->rounds, 0);
    *out = s;
    return TF_OK;
}

/* ---------------------------------------------------------------- init and shutdown */

/* The listen socket (bound from |addr|, or |given| >= 0 taken over) and the shutdown eventfd.
 * |given| is closed on failure (the server owns it from the call on). */
static tf_err open_fds(const char *addr, int given, const tf_tcp_config *cfg, int *lfd, int *efd,
                       tf_errmsg *msg)
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
        e = tf__sock_listen(addr, cfg, lfd, &os, msg);
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
    e = tf__config_load(&k, cfg, msg);
    if (e == TF_OK)
        e = open_fds(addr, fd, &k, &lfd, &efd, msg);
    else if (fd >= 0)
        close(fd);
    pthread_mutex_lock(&s->mu);
    if (s->state == S_SHUT && e == TF_OK) { /* shut down while we were binding */
        close(lfd);
        close(efd);
        tf__errmsg(msg, "server init %s: the server was shut down", addr);
        e = TF_ERR_SHUTDOWN;
    } else if (s->state != S_SHUT) {
        if (e == TF_OK) {
            s->cfg = k;
            s->lfd = lfd;
            s->efd = efd;
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

/* Under mu, once shut down and no accept runs. */
static void close_fds(tf_sync_server *s)
{
    if (s->lfd >= 0)
        close(s->lfd);
    if (s->efd >= 0)
        close(s->efd);
    s->lfd = s->efd = -1;
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
    pthread_mutex_destroy(&s->mu);
    free(s);
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

/* ---------------------------------------------------------------- accept */

/* A client failed the handshake: count it and tell on_reject. */
static void reject(tf_sync_server *s, const tf_addr *peer, tf_err err, int os_err)
{
    atomic_fetch_add(&s->rejected, 1);
    if (!s->on_reject)
        return;
    char text[TF_ADDRSTR_LEN];
    if (tf_addr_format(peer, text, sizeof text) != TF_OK)
        snprintf(text, sizeof text, "?");
    s->on_reject(s->reject_arg, text, err, os_err);
}

/* Options and handshake for an accepted socket. TF_OK (*out set), a failure of ours (IO from
 * an option, NOMEM, SHUTDOWN) to return, or TF_ERR_BUSY: the client was rejected, go on. */
static tf_err welcome(tf_sync_server *s, int fd, const tf_addr *peer, tf_sync_conn **out,
                      int *os_err, tf_errmsg *msg)
{
    tf_err e = tf__sock_apply(fd, &s->cfg, false, os_err, msg);
    if (e != TF_OK) {
        close(fd);
        return e;
    }
    int os = 0;
    uint64_t dl = tf__deadline_ms(s->cfg.handshake_timeout_ms);
    e = tf__sync_conn_open(fd, &s->cfg, dl, s->efd, out, &os);
    if (e == TF_OK || e == TF_ERR_SHUTDOWN || e == TF_ERR_NOMEM)
        return e;
    reject(s, peer, e, os);
    return TF_ERR_BUSY;
}

/* Errors accept(2) reports for one pending connection that failed (man 2 accept): that
 * connection is gone from the queue, so trying again at once cannot spin. */
static bool per_connection(int e)
{
    return e == ECONNABORTED || e == EPROTO || e == ENETDOWN || e == ENOPROTOOPT ||
           e == EHOSTDOWN || e == ENONET || e == EHOSTUNREACH || e == EOPNOTSUPP ||
           e == ENETUNREACH || e == EPERM;
}

/* A failed accept4: TF_OK to try again (after a pause for resource exhaustion, which leaves
 * the client queued and the listen socket readable), or the error to return. */
static tf_err accept_failed(tf_sync_server *s, int err, unsigned *fails, uint32_t *seed,
                            int *os_err, tf_errmsg *msg)
{
    if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR || per_connection(err))
        return TF_OK; /* another acceptor took it, a signal, or that client is gone */
    int64_t limit = s->cfg.accept_retries < 0 ? 0 : s->cfg.accept_retries;
    if (!tf__accept_transient(err) || (int64_t)*fails >= limit) {
        char where[TF_ADDRSTR_LEN];
        if (tf__sock_name(s->lfd, false, where, sizeof where) != TF_OK)
            snprintf(where, sizeof where, "?");
        *os_err = err;
        tf__errmsg(msg, "accept on %s: %s (%u retries)", where, strerror(err), *fails);
        return TF_ERR_IO;
    }
    ++*fails;
    uint64_t ms = tf__backoff_ms(&s->cfg, *fails, seed);
    if (ms < MIN_PAUSE_MS)
        ms = MIN_PAUSE_MS;
    atomic_fetch_add(&s->rounds, 1);
    int os = 0;
    tf_err e = tf__sync_wait(-1, 0, s->efd, tf__deadline_ms((int64_t)ms), &os);
    return e == TF_ERR_TIMEOUT ? TF_OK : e; /* slept in full, or SHUTDOWN */
}

static tf_err accept_loop(tf_sync_server *s, tf_sync_conn **out, int *os_err, tf_errmsg *msg)
{
    unsigned fails = 0; /* transient failures in a row */
    uint32_t seed = (uint32_t)tf__now_ns() ^ (uint32_t)(uintptr_t)&fails;
    for (;;) {
        atomic_fetch_add(&s->rounds, 1);
        tf_err e = tf__sync_wait(s->lfd, POLLIN, s->efd, TF__FOREVER, os_err);
        if (e != TF_OK)
            return e;
        tf_addr peer;
        peer.len = sizeof peer.ss;
        int fd =
            tf__sys_accept4(s->lfd, (struct sockaddr *)&peer.ss, &peer.len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            e = accept_failed(s, errno, &fails, &seed, os_err, msg);
            if (e != TF_OK)
                return e;
            continue;
        }
        fails = 0;
        e = welcome(s, fd, &peer, out, os_err, msg);
        if (e != TF_ERR_BUSY)
            return e;
    }
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
    if (st == S_LISTEN)
        s->inflight++;
    pthread_mutex_unlock(&s->mu);
    if (st != S_LISTEN) {
        tf__errmsg(msg, "accept: %s",
                   st == S_SHUT ? "the server was shut down" : "the server is not initialised");
        return st == S_SHUT ? TF_ERR_SHUTDOWN : TF_ERR_BAD_STATE;
    }
    tf_err e = accept_loop(s, out, &os, msg);
    if (e == TF_ERR_SHUTDOWN)
        tf__errmsg(msg, "accept: the server was shut down");
    else if (e != TF_OK && msg && msg->text[0] == '\0')
        tf__errmsg(msg, "accept: %s", os ? strerror(os) : tf_strerror(e)); /* poll, NOMEM */
    pthread_mutex_lock(&s->mu);
    if (--s->inflight == 0 && s->state == S_SHUT)
        close_fds(s);
    pthread_mutex_unlock(&s->mu);
    if (os_err)
        *os_err = os;
    return e;
}
