/* tcpframe/future.h -- one-shot results across threads: tf_promise (the writing end) and
 * tf_future (the reading end) of one shared, reference-counted state (SPEC.md section 8).
 *
 * A result is: a tf_err, a size, and optionally one OWNED pointer with its destructor (an
 * allocated receive buffer with free(), an accepted connection with its own _free, ...).
 *
 * Ownership and lifetime.
 *   - tf_promise_new() hands out one promise and one future; each is owned by whoever holds it
 *     and is dropped exactly once with tf_promise_free() / tf_future_free(), in either order,
 *     from any thread. The shared state is freed when the last end (or a pending then-callback,
 *     which holds its own reference) is gone: exactly once.
 *   - A promise dropped without tf_promise_set() resolves the future with TF_ERR_CANCELLED
 *     (a "broken promise"): waiters wake up and the then-callback runs.
 *   - The owned pointer belongs to the shared state from tf_promise_set() until a reader takes
 *     it with tf_future_get(). If nobody takes it, dtor(owned) runs exactly once when the state
 *     is freed (e.g. the future was dropped unread, even before the promise was set).
 *
 * Threads. The promise end is used by one thread at a time; so is the future end, except that
 * tf_future_is_ready() may be called from anywhere, and a then-callback may call
 * tf_future_get() on the future concurrently with its owner (the owned pointer is handed to
 * exactly one of them).
 *
 * Cost. A ready future (tf_future_new_ready, or after the promise was set) answers is_ready,
 * wait, wait_for and get with one atomic acquire load: no lock, no syscall. A blocked waiter
 * sleeps on a futex; setting a promise makes a wake syscall only if someone sleeps on it.
 * The futures of async connection operations (async.h) completed on their loop thread wake a
 * sleeping waiter at the end of that loop iteration (they are ready at once), so a thread
 * waiting on a batch of them is woken once; a promise the caller sets wakes before the set
 * returns, on any thread.
 *
 * Loop threads (evbase.h) must not block: on a tf_evb loop thread, wait, wait_for with a
 * non-zero timeout and get on a future that is not ready return TF_ERR_BAD_STATE at once
 * instead of blocking. Use tf_future_then() there.
 */
#ifndef TCPFRAME_FUTURE_H
#define TCPFRAME_FUTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tcpframe/err.h"
#include "tcpframe/export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tf_future tf_future;
typedef struct tf_promise tf_promise;

/* Destroys an owned pointer carried by a result (free() for a malloc'd buffer). */
typedef void (*tf_dtor)(void *obj);

/* A completion callback: |f| is ready. It runs once, on the thread that completes the promise
 * (inside tf_promise_set or tf_promise_free), or inside tf_future_then if |f| was already ready.
 * |f| stays valid during the call even if its owner dropped it meanwhile; the callback may call
 * tf_future_get(f, ...) (never blocks there) and may tf_future_free(f) only if it owns the
 * handle (ownership was handed to it through |arg|). It must not block (it may run on a loop). */
typedef void (*tf_future_cb)(tf_future *f, void *arg);

/* Create a pending promise/future pair. TF_OK: *p and *f set (refs: one each).
 * INVALID_ARGUMENT (p or f NULL); NOMEM (both set to NULL). */
TF_API tf_err tf_promise_new(tf_promise **p, tf_future **f);

/* Create a future that is ready at once with (err, size, owned, dtor) -- for synchronous
 * adapters that already have the result. TF_OK; INVALID_ARGUMENT (f NULL); NOMEM (*f = NULL,
 * and owned is NOT destroyed: it stays the caller's). owned/dtor as in tf_promise_set. */
TF_API tf_err tf_future_new_ready(tf_future **f, tf_err err, size_t size,
                                  void *owned, tf_dtor dtor);

/* Fulfil the promise with |err| (the operation's outcome, any tf_err incl. TF_OK), |size| and
 * an optional owned pointer. With dtor NULL, |owned| is merely passed along (never destroyed).
 * Wakes every waiter, then runs the then-callback (if any) on this thread before returning.
 * TF_OK: set; the state owns |owned| now.
 * BAD_STATE: already set (the first set wins); |owned| stays the caller's.
 * INVALID_ARGUMENT: p NULL. The promise must still be dropped with tf_promise_free(). */
TF_API tf_err tf_promise_set(tf_promise *p, tf_err err, size_t size, void *owned, tf_dtor dtor);

/* Fulfil the promise with a failure |err| and the OS error number |os_err| beside it (0 if
 * none): tf_future_os_err() reads it back on the reading side, so "connection refused" vs
 * "timed out" survives the thread hop. Size 0, no owned pointer. Wakes and runs callbacks as
 * tf_promise_set. TF_OK; BAD_STATE (already set); INVALID_ARGUMENT (p NULL). */
TF_API tf_err tf_promise_fail(tf_promise *p, tf_err err, int os_err);

/* Drop the promise end. If it was never set, first resolves the future with
 * (TF_ERR_CANCELLED, 0, NULL) -- which wakes waiters and runs the then-callback on this thread.
 * NULL is a no-op. */
TF_API void tf_promise_free(tf_promise *p);

/* True once the result is available (acquire load; never blocks). False for NULL. */
TF_API bool tf_future_is_ready(const tf_future *f);

/* Block until the result is available. TF_OK: ready (read it with tf_future_get).
 * BAD_STATE: not ready and the caller is a loop thread (did not block).
 * INVALID_ARGUMENT: f NULL. */
TF_API tf_err tf_future_wait(tf_future *f);

/* As tf_future_wait, but give up after |timeout_ms| (CLOCK_MONOTONIC; 0 = just poll).
 * TF_OK: ready. TIMEOUT: not ready in time; nothing was consumed or changed -- wait again or
 * get later. BAD_STATE: not ready, timeout_ms > 0 and the caller is a loop thread.
 * INVALID_ARGUMENT: f NULL. */
TF_API tf_err tf_future_wait_for(tf_future *f, uint32_t timeout_ms);

/* Wait for the result (as tf_future_wait) and read it. Returns the result's tf_err (the value
 * given to tf_promise_set, CANCELLED for a broken promise) and stores its size in *size (if
 * non-NULL). If |owned| is non-NULL, *owned receives the owned pointer and the caller now owns
 * it (destroy it as the producer documents, e.g. free()); a later get, or a concurrent one,
 * gets NULL. With owned NULL the pointer stays in the state (destroyed when it is freed).
 * May be called again: same err and size.
 * If the future is not ready and the caller is a loop thread, returns BAD_STATE at once with
 * *size = 0 and *owned = NULL. INVALID_ARGUMENT: f NULL. */
TF_API tf_err tf_future_get(tf_future *f, size_t *size, void **owned);

/* The OS error number that came with the result (tf_promise_fail), or 0: none, not ready yet,
 * or f NULL. Never blocks. */
TF_API int tf_future_os_err(const tf_future *f);

/* Register the completion callback (at most one per future).
 * Already ready: runs cb(f, arg) at once on the calling thread, before returning TF_OK.
 * Otherwise: TF_OK; cb runs on the thread that completes the promise.
 * BUSY: a callback was already registered (cb will not run). INVALID_ARGUMENT: f or cb NULL.
 * The future may be dropped right after this call: the callback still runs. */
TF_API tf_err tf_future_then(tf_future *f, tf_future_cb cb, void *arg);

/* Drop the future end. An owned pointer nobody took is destroyed when the state is freed
 * (now, or when the promise or pending callback lets go). NULL is a no-op. */
TF_API void tf_future_free(tf_future *f);

#ifdef __cplusplus
}
#endif
#endif /* TCPFRAME_FUTURE_H */
