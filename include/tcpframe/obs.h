/* tcpframe/obs.h -- observability: connection and server statistics, the log hook and the
 * connection events (SPEC.md section 9.10). The functions that fill the statistics are declared
 * beside their objects (sync.h, async.h).
 *
 * Threads: every function here may be called from any thread; a snapshot is read from any
 * thread while the connection or server works.
 */
#ifndef TCPFRAME_OBS_H
#define TCPFRAME_OBS_H

#include <stdint.h>

#include "tcpframe/err.h"
#include "tcpframe/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- statistics */

/* A connection's statistics (tf_async_conn_stats, tf_sync_conn_stats). The struct only grows
 * by fields appended at its end: set |size| to sizeof(tf_conn_stats) before the call, and the
 * library fills the fields that fit in it (and sets size to the bytes it wrote).
 * Counters start at 0 when the connection is made. Every counter is read on its own (each is
 * exact, but two of them may be a moment apart unless noted). */
typedef struct tf_conn_stats {
    uint32_t size;          /* in: the caller's sizeof(tf_conn_stats); out: bytes written */
    int32_t err;            /* the poison reason (tf_err), TF_OK while healthy */
    int32_t os_err;         /* its OS error number (0: none) */
    int32_t rx_end;         /* TF_ERR_CLOSED once the peer half-closed (sends go on), else 0 */
    uint64_t msgs_sent;     /* messages sent whole */
    uint64_t bytes_sent;    /* their payload bytes (the 4-byte prefixes not counted) */
    uint64_t msgs_recv;     /* messages received whole (delivered) */
    uint64_t bytes_recv;    /* their payload bytes */
    uint64_t queued_msgs;   /* sends accepted and not yet completed (sync: 1 during a send) */
    uint64_t queued_bytes;  /* their payload bytes */
    uint64_t recv_pending;  /* receives accepted and not yet completed (sync: 1 during one) */
    uint64_t paused_ns;     /* time sending was held up, in ns, a pause under way included:
                             * async, from a send refused with BUSY to the queue's drain to
                             * send_low_water; sync, a send waiting for a full socket buffer */
    uint64_t pauses;        /* how many such pauses began */
} tf_conn_stats;

/* A server's statistics (tf_async_server_stats, tf_sync_server_stats); size as for
 * tf_conn_stats. A client rejected in the handshake counts under its reason. */
typedef struct tf_server_stats {
    uint32_t size;             /* in: the caller's sizeof(tf_server_stats); out: bytes written */
    uint32_t reserved;         /* 0 */
    uint64_t accepted;         /* clients that completed the handshake (handed out or queued) */
    uint64_t rejected;         /* clients dropped: the sum of the six below */
    uint64_t rej_bad_magic;    /* BAD_MAGIC: the peer does not speak the protocol */
    uint64_t rej_timeout;      /* TIMEOUT: silent past handshake_timeout_ms */
    uint64_t rej_closed;       /* CLOSED or TRUNCATED: the peer left inside the handshake */
    uint64_t rej_busy;         /* BUSY: the server was at cfg->max_conns (async) */
    uint64_t rej_io;           /* IO: a reset or another socket error */
    uint64_t rej_other;        /* NOMEM, an option that could not be set, anything else */
    uint64_t active;           /* connections now: in the handshake, queued, or handed out and
                                * not yet freed */
    uint64_t handshaking;      /* clients in the handshake now */
    uint64_t accept_rests;     /* back-off pauses of accept after EMFILE, ENFILE, ENOBUFS,
                                * ENOMEM (and, async, a listen watch that failed) */
} tf_server_stats;

/* ---------------------------------------------------------------- the log hook */

/* Levels, most severe first. A hook set for a level gets the messages of that level and the
 * more severe ones. */
typedef enum tf_log_level {
    TF_LOG_OFF = 0,   /* nothing (the default) */
    TF_LOG_ERROR = 1, /* the library lost something: a watch it could not register, a client
                       * dropped for lack of memory */
    TF_LOG_WARN = 2,  /* a client rejected, a connection dropped by a timeout, accept resting */
    TF_LOG_INFO = 3,  /* routine events (none yet) */
    TF_LOG_DEBUG = 4
} tf_log_level;

/* A log message: |subsystem| names the part of the library ("async_server", "sync_server",
 * "async_conn"), |message| is one line without a newline (e.g. "127.0.0.1:50122: rejected in
 * the handshake: wrong magic: ..."). Both are valid during the call only. Called on the thread
 * that saw the event (often a loop thread: keep it short, never block there), from inside the
 * library's work on the object it reports about: it may read (statistics, tf_strerror) but
 * must not free, shut down, close or abort library objects -- hand such work to another
 * thread or a loop task. */
typedef void (*tf_log_fn)(tf_log_level level, const char *subsystem, const char *message,
                          void *arg);

/* Set the log hook: |fn| gets, one line each, what the library otherwise handles silently
 * (SPEC 9.10): rejected clients with their address and reason, accept back-offs, watches that
 * could not be registered, connections dropped by a timeout. |level| is the least severe level
 * reported; TF_LOG_OFF (or fn NULL) switches the hook off, which is the default. Thread-safe:
 * any thread, at any time. A message being reported while the hook changes may still reach the
 * previous hook; after the call returns, new messages go to the new one. Off, a would-be message
 * costs one relaxed atomic load.
 *   TF_OK
 *   TF_ERR_INVALID_ARGUMENT  level is not a tf_log_level (nothing changed) */
TF_API tf_err tf_set_log(tf_log_fn fn, void *arg, tf_log_level level);

/* ---------------------------------------------------------------- connection events */

/* What happened to a connection of a server or client (tf_async_server_on_event,
 * tf_async_client_on_event; in the spirit of nng_pipe_notify). */
typedef enum tf_conn_event {
    TF_CONN_CONNECTED = 1,        /* the handshake completed: the connection is usable */
    TF_CONN_HANDSHAKE_FAILED = 2, /* the handshake failed (err: BAD_MAGIC, TIMEOUT, CLOSED,
                                   * TRUNCATED, IO, ...); the connection is dropped */
    TF_CONN_CLOSED = 3            /* a connection that was CONNECTED is over (err: why, as
                                   * tf_async_conn_error says) */
} tf_conn_event;

/* The name of an event ("connected", "handshake-failed", "closed"); "?" for another value. */
TF_API const char *tf_conn_event_name(tf_conn_event ev);

#ifdef __cplusplus
}
#endif
#endif /* TCPFRAME_OBS_H */
