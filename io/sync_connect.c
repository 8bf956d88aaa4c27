/* io/sync_connect.c -- the blocking connect (sync.h, SPEC 9.6): non-blocking connects bounded
 * by poll, retried with capped exponential back-off and jitter, the whole of it (back-off
 * pauses and handshake included) inside connect_timeout_ms. */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "sync_internal.h"

/* One connect: what it needs and what it learnt. */
typedef struct dial {
    const char *addr; /* as the caller wrote it, for messages */
    const tf_tcp_config *cfg;
    uint64_t deadline; /* the whole connect's */
    unsigned attempts; /* connect() calls so far */
    int last_os;       /* the last attempt's OS error, 0 if none */
} dial;

/* One connect() to |a|, waited for until the deadline. TF_OK with *fd, TIMEOUT, or IO with
 * d->last_os; no fd left open on failure. */
static tf_err attempt(dial *d, const tf_addr *a, int *fd)
{
    bool done = false;
    int os = 0;
    d->attempts++;
    tf_err e = tf__sock_connect_start(a, d->cfg, fd, &done, &os);
    if (e == TF_OK && !done) {
        e = tf__sync_wait(*fd, POLLOUT, -1, d->deadline, &os);
        if (e == TF_OK)
            e = tf__sock_connect_finish(*fd, &os);
        if (e != TF_OK) {
            close(*fd);
            *fd = -1;
        }
    }
    if (e == TF_ERR_IO)
        d->last_os = os;
    return e;
}

/* The message of a failed dial: the address, the reason, the attempts. */
static tf_err failed(dial *d, tf_err e, bool in_attempt, tf_errmsg *msg)
{
    char text[128];
    const char *last = tf__sync_reason(TF_ERR_IO, d->last_os, text, sizeof text);
    const char *s = d->attempts == 1 ? "" : "s";
    long long ms = (long long)d->cfg->connect_timeout_ms;
    if (e != TF_ERR_TIMEOUT)
        tf__errmsg(msg, "connect %s: %s (%u attempt%s)", d->addr, last, d->attempts, s);
    else if (in_attempt && d->last_os == 0)
        tf__errmsg(msg, "connect %s: timed out after %lld ms (%u attempt%s)", d->addr, ms,
                   d->attempts, s);
    else if (in_attempt)
        tf__errmsg(msg, "connect %s: timed out after %lld ms (%u attempt%s; earlier: %s)", d->addr,
                   ms, d->attempts, s, last);
    else
        tf__errmsg(msg,
                   "connect %s: %s (%u attempt%s; the %lld ms connect timeout ends "
                   "before the next retry)",
                   d->addr, last, d->attempts, s, ms);
    return e;
}

/* Every address in turn (a failure of one, retryable or not, moves on to the next: ::1 may lack
 * IPv6 where 127.0.0.1 works), then back off and start over, until one connects, a round in
 * which no error was worth retrying, the retries run out or the deadline would pass. */
static tf_err dial_all(dial *d, const tf_addrlist *al, int *fd, tf_errmsg *msg)
{
    uint32_t seed = (uint32_t)tf__now_ns() ^ (uint32_t)(uintptr_t)&seed;
    int64_t retries = d->cfg->connect_retries < 0 ? 0 : d->cfg->connect_retries;
    for (unsigned round = 0;; round++) {
        bool again = false;
        for (size_t i = 0; i < al->n; i++) {
            tf_err e = attempt(d, &al->a[i], fd);
            if (e == TF_OK)
                return TF_OK;
            if (e == TF_ERR_TIMEOUT)
                return failed(d, e, true, msg);
            again = again || tf__connect_retryable(d->last_os);
        }
        if (!again || (int64_t)round >= retries)
            return failed(d, TF_ERR_IO, false, msg);
        uint64_t pause = tf__deadline_ms((int64_t)tf__backoff_ms(d->cfg, round + 1, &seed));
        if (pause >= d->deadline) /* the timeout ends before the next attempt could start */
            return failed(d, TF_ERR_TIMEOUT, false, msg);
        int os = 0;
        tf__sync_wait(-1, 0, -1, pause, &os);
    }
}

static tf_err greet(dial *d, int fd, tf_sync_conn **out, int *os_err, tf_errmsg *msg)
{
    uint64_t dl = tf__deadline_ms(d->cfg->handshake_timeout_ms);
    if (d->deadline < dl)
        dl = d->deadline;
    tf_err e = tf__sync_conn_open(fd, d->cfg, dl, -1, out, os_err);
    if (e != TF_OK) {
        char text[128];
        tf__errmsg(msg, "handshake with %s: %s", d->addr,
                   tf__sync_reason(e, *os_err, text, sizeof text));
    }
    return e;
}

static tf_err sync_connect(const char *addr, const tf_tcp_config *cfg, tf_sync_conn **out,
                           int *os_err, tf_errmsg *msg)
{
    tf_tcp_config k;
    tf_err e = tf__config_load(&k, cfg, msg);
    if (e != TF_OK)
        return e;
    tf_addrlist al;
    e = tf_addr_resolve(addr, TF_FAMILY_ANY, false, &al, msg);
    if (e != TF_OK)
        return e;
    dial d = {.addr = addr, .cfg = &k, .deadline = tf__deadline_ms(k.connect_timeout_ms)};
    int fd = -1;
    e = dial_all(&d, &al, &fd, msg);
    *os_err = d.last_os;
    if (e != TF_OK)
        return e;
    return greet(&d, fd, out, os_err, msg);
}

tf_err tf_sync_connect(const char *addr, const tf_tcp_config *cfg, tf_sync_conn **out, int *os_err,
                       tf_errmsg *msg)
{
    int os = 0;
    tf__errmsg_clear(msg);
    if (out)
        *out = NULL;
    tf_err e = TF_ERR_INVALID_ARGUMENT;
    if (!addr || !out)
        tf__errmsg(msg, "connect: %s is NULL", addr ? "out" : "addr");
    else
        e = sync_connect(addr, cfg, out, &os, msg);
    if (os_err)
        *os_err = os;
    return e;
}
