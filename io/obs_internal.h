/* io/obs_internal.h -- the log hook's fast check, the server statistics counters and the event
 * sink shared by a server or client and its connections (SPEC 9.10); not installed. */
#ifndef TCPFRAME_IO_OBS_INTERNAL_H
#define TCPFRAME_IO_OBS_INTERNAL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "tcpframe/obs.h"

/* The level set by tf_set_log (TF_LOG_OFF: no hook). */
extern _Atomic int tf__log_level;

/* Report a message at |level| (see TF__LOG: callers check the level first). */
void tf__log(tf_log_level level, const char *subsystem, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A message at |level| if the hook wants it: off, one relaxed load and a branch. */
#define TF__LOG(level, subsystem, ...)                                                       \
    do {                                                                                     \
        if (atomic_load_explicit(&tf__log_level, memory_order_relaxed) >= (int)(level))      \
            tf__log((level), (subsystem), __VA_ARGS__);                                      \
    } while (0)

/* A server's counters (any thread, relaxed atomics). */
typedef struct tf__srv_counters {
    atomic_uint_fast64_t accepted, rej_bad_magic, rej_timeout, rej_closed, rej_busy, rej_io,
        rej_other, handshaking, rests;
} tf__srv_counters;

/* Count a client rejected with |err| under its reason. */
void tf__srv_count_reject(tf__srv_counters *k, tf_err err);
/* Log (TF_LOG_WARN, as |subsystem|) that client |peer| was rejected with |err| (BUSY: over
 * max_conns; PEER_DENIED: its uid is not allowed; else in the handshake) and |os_err|. */
void tf__srv_reject_log(const char *subsystem, const char *peer, tf_err err, int os_err);

/* Fill |out| (its size field says how much) from |k|, with |active| and |handshaking| beside
 * (k->handshaking is the async server's). TF_OK; TF_ERR_INVALID_ARGUMENT (out NULL or its size
 * too small for the first field). */
tf_err tf__srv_stats_fill(const tf__srv_counters *k, uint64_t active, uint64_t handshaking,
                          tf_server_stats *out);

/* Copy |full| into |out| up to out->size bytes (at least the size field), whole fields only
 * (4-byte fields before |wide_from|, 8-byte ones from it: a size that ends inside a field
 * leaves that field out), and set out->size to what was written. TF_ERR_INVALID_ARGUMENT when
 * out is NULL or out->size < 4. */
tf_err tf__stats_copy(void *out, const void *full, size_t full_size, size_t wide_from);

/* One counter written by one thread only and read by any: a relaxed load and store (no
 * read-modify-write on the hot path). */
static inline void tf__stat_add(atomic_uint_fast64_t *v, uint64_t n)
{
    atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

#endif /* TCPFRAME_IO_OBS_INTERNAL_H */
