/* tcpframe/conn.h -- the generic connection interface: one handle type that code which does
 * not care about the mode takes, over a sync (sync.h) or an async (async.h) connection
 * (SPEC.md section 9.5).
 *
 * Get a view with tf_sync_conn_base() or tf_async_conn_base(). The view is not an object of
 * its own: it lives as long as the connection it views, and tf_conn_free() frees that
 * connection. Every operation returns a future (future.h): ready at once for a sync
 * connection (the call blocked), pending for an async one. Send and receive wait without a
 * deadline; their _for variants take one per operation. A call that cannot start returns
 * its error and sets *out to NULL; once a future is returned, the outcome is in the future:
 * (tf_err, size, owned) with the OS error number kept by tf_conn_error() when the connection
 * was poisoned.
 *
 * Threads: as the underlying connection (sync: one sender and one receiver thread at a time;
 * async: any thread).
 */
#ifndef TCPFRAME_CONN_H
#define TCPFRAME_CONN_H

#include <stddef.h>
#include <stdint.h>

#include "tcpframe/err.h"
#include "tcpframe/export.h"
#include "tcpframe/future.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tf_conn tf_conn;

/* Send one message of |len| bytes at |buf| (borrowed: keep it alive and unchanged until the
 * future is ready). The future's size is len on success.
 *   TF_OK                    *out is the future; its error is the send's outcome
 *   TF_ERR_INVALID_ARGUMENT  c or out NULL, buf NULL with len > 0 (*out NULL)
 *   TF_ERR_NOMEM             no future could be made (*out NULL) */
TF_API tf_err tf_conn_send(tf_conn *c, const void *buf, size_t len, tf_future **out);

/* Receive one message into |buf| (|cap| bytes, borrowed until the future is ready). The
 * future's size is the message length; BUFFER_TOO_SMALL poisons the connection.
 * Returns as tf_conn_send. */
TF_API tf_err tf_conn_recv(tf_conn *c, void *buf, size_t cap, tf_future **out);

/* Receive one message into a buffer the library allocates with malloc() (exact length, after
 * the max check). tf_future_get hands it over (owned; free() it); an empty message gives NULL.
 * Returns as tf_conn_send. */
TF_API tf_err tf_conn_recv_alloc(tf_conn *c, tf_future **out);

/* Close gracefully: queued sends are flushed, then our side is shut down and the socket
 * closed. The future is ready when that is done (TF_OK, or the reason the flush failed).
 * The connection must still be freed with tf_conn_free(). Returns as tf_conn_send. */
TF_API tf_err tf_conn_close(tf_conn *c, tf_future **out);

/* The sticky reason the connection failed (TF_OK while healthy; the peer's clean close is no
 * failure: its CLOSED closes the receive direction only, SPEC 9.1); *os_err (if non-NULL) gets
 * the OS error number of an IO failure, else 0. */
TF_API tf_err tf_conn_error(const tf_conn *c, int *os_err);

/* Send or receive with a deadline of its own: |timeout_ms| milliseconds (-1 none,
 * 0..INT_MAX); otherwise as tf_conn_send, tf_conn_recv and tf_conn_recv_alloc, which wait
 * without a deadline. When the deadline passes first, the future fails with TF_ERR_TIMEOUT,
 * under the rules of the connection's mode (a timeout before any byte of the frame moved leaves
 * the connection usable; after part of it moved the connection is poisoned: sync.h, async.h).
 * Sync: the call blocks at most that long (0: only what can move at once) and returns a ready
 * future. Async: the timer starts when the loop takes the operation (0: TIMEOUT unless the
 * loop's first try at it completes it).
 *   TF_OK                    *out is the future; its error is the operation's outcome
 *   TF_ERR_INVALID_ARGUMENT  as the call without _for, or timeout_ms not -1..INT_MAX (*out NULL)
 *   TF_ERR_NOMEM             no future could be made (*out NULL)
 *   a refusal of the mode    (async: BUSY, TOO_LARGE, BAD_STATE, SHUTDOWN, the poison reason:
 *                            async.h; *out NULL) */
TF_API tf_err tf_conn_send_for(tf_conn *c, const void *buf, size_t len, int64_t timeout_ms,
                               tf_future **out);
TF_API tf_err tf_conn_recv_for(tf_conn *c, void *buf, size_t cap, int64_t timeout_ms,
                               tf_future **out);
TF_API tf_err tf_conn_recv_alloc_for(tf_conn *c, int64_t timeout_ms, tf_future **out);

/* Free the connection this view belongs to (tf_sync_conn_free / tf_async_conn_free). NULL is
 * a no-op. */
TF_API void tf_conn_free(tf_conn *c);

#ifdef __cplusplus
}
#endif
#endif /* TCPFRAME_CONN_H */
