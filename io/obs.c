/* io/obs.c -- the log hook and the statistics helpers (obs.h, SPEC 9.10). */
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stddef.h>
#include <string.h>

#include "internal.h"
#include "obs_internal.h"

_Atomic int tf__log_level = TF_LOG_OFF;

/* The hook and its argument change together under |log_mu|; a message copies both under it
 * and calls the hook outside (so a hook may call tf_set_log). */
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static tf_log_fn log_fn;
static void *log_arg;

tf_err tf_set_log(tf_log_fn fn, void *arg, tf_log_level level)
{
    if ((int)level < TF_LOG_OFF || (int)level > TF_LOG_DEBUG)
        return TF_ERR_INVALID_ARGUMENT;
    if (!fn)
        level = TF_LOG_OFF;
    pthread_mutex_lock(&log_mu);
    log_fn = fn;
    log_arg = arg;
    atomic_store_explicit(&tf__log_level, (int)level, memory_order_relaxed);
    pthread_mutex_unlock(&log_mu);
    return TF_OK;
}

void tf__log(tf_log_level level, const char *subsystem, const char *fmt, ...)
{
    pthread_mutex_lock(&log_mu);
    tf_log_fn fn = log_fn;
    void *arg = log_arg;
    bool on = atomic_load_explicit(&tf__log_level, memory_order_relaxed) >= (int)level;
    pthread_mutex_unlock(&log_mu);
    if (!fn || !on)
        return;
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    fn(level, subsystem, text, arg);
}

const char *tf_conn_event_name(tf_conn_event ev)
{
    switch (ev) {
    case TF_CONN_CONNECTED:
        return "connected";
    case TF_CONN_HANDSHAKE_FAILED:
        return "handshake-failed";
    case TF_CONN_CLOSED:
        return "closed";
    }
    return "?";
}

void tf__srv_reject_log(const char *subsystem, const char *peer, tf_err err, int os_err)
{
    TF__LOG(TF_LOG_WARN, subsystem, "%s: rejected %s: %s%s%s", peer,
            err == TF_ERR_BUSY          ? "at max_conns"
            : err == TF_ERR_PEER_DENIED ? "(its uid is not allowed)"
                                        : "in the handshake",
            tf_strerror(err), os_err ? ": " : "", os_err ? strerror(os_err) : "");
}

void tf__srv_count_reject(tf__srv_counters *k, tf_err err)
{
    atomic_uint_fast64_t *v;
    switch (err) {
    case TF_ERR_BAD_MAGIC:
        v = &k->rej_bad_magic;
        break;
    case TF_ERR_TIMEOUT:
        v = &k->rej_timeout;
        break;
    case TF_ERR_CLOSED:
    case TF_ERR_TRUNCATED:
        v = &k->rej_closed;
        break;
    case TF_ERR_BUSY:
        v = &k->rej_busy;
        break;
    case TF_ERR_IO:
        v = &k->rej_io;
        break;
    default:
        v = &k->rej_other;
        break;
    }
    atomic_fetch_add_explicit(v, 1u, memory_order_relaxed);
}

tf_err tf__stats_copy(void *out, const void *full, size_t full_size, size_t wide_from)
{
    if (!out)
        return TF_ERR_INVALID_ARGUMENT;
    uint32_t want;
    memcpy(&want, out, sizeof want);
    if (want < sizeof want)
        return TF_ERR_INVALID_ARGUMENT;
    size_t n = want < full_size ? want : full_size;
    /* whole fields only: 4-byte ones before |wide_from|, 8-byte ones from there */
    n = n < wide_from ? n / 4 * 4 : wide_from + (n - wide_from) / 8 * 8;
    memcpy(out, full, n);
    uint32_t wrote = (uint32_t)n;
    memcpy(out, &wrote, sizeof wrote);
    return TF_OK;
}

static uint64_t ld(const atomic_uint_fast64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

tf_err tf__srv_stats_fill(const tf__srv_counters *k, uint64_t active, uint64_t handshaking,
                          tf_server_stats *out)
{
    tf_server_stats s;
    memset(&s, 0, sizeof s);
    s.accepted = ld(&k->accepted);
    s.rej_bad_magic = ld(&k->rej_bad_magic);
    s.rej_timeout = ld(&k->rej_timeout);
    s.rej_closed = ld(&k->rej_closed);
    s.rej_busy = ld(&k->rej_busy);
    s.rej_io = ld(&k->rej_io);
    s.rej_other = ld(&k->rej_other);
    s.rejected = s.rej_bad_magic + s.rej_timeout + s.rej_closed + s.rej_busy + s.rej_io +
                 s.rej_other;
    s.active = active;
    s.handshaking = handshaking;
    s.accept_rests = ld(&k->rests);
    return tf__stats_copy(out, &s, sizeof s, offsetof(tf_server_stats, accepted));
}
