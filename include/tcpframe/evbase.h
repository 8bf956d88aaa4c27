/* tcpframe/evbase.h -- tf_evb: a single-threaded epoll event loop with cross-thread dispatch,
 * fd watches and timers (SPEC.md section 8). Linux only (epoll, eventfd).
 *
 * Threads. A loop runs its callbacks (dispatched functions, fd callbacks, timer callbacks) on
 * exactly one thread, "the loop thread": the thread tf_evb_start() creates, or the thread that
 * calls tf_evb_loop(). Every function below may be called from any thread unless it says
 * otherwise. Calls made from the loop thread itself (from inside a callback) take effect at
 * once; calls from other threads are queued and applied by the loop in call order.
 *
 * Lifecycle (one-way):  INIT --start()/loop()--> RUNNING --stop()--> STOPPING --> STOPPED.
 *   - Work may be queued in INIT; it runs when the loop starts.
 *   - stop() is final: the loop finishes its current iteration, then DRAINS: every function that
 *     dispatch/dispatch_inline/dispatch_and_wait accepted (returned TF_OK or is blocked waiting)
 *     runs exactly once, on the loop thread, in queue order. Then every fd registration is
 *     dropped without a callback and every pending timer is cancelled without firing. From the
 *     moment stop() is called, calls that would add work return TF_ERR_SHUTDOWN and do nothing.
 *   - A stopped loop cannot be restarted: create a new one.
 *
 * Never do this on a loop thread (inside any callback):
 *   - block: sleep, blocking I/O, lock waits that depend on other threads, tf_future_wait on a
 *     pending future (it refuses with BAD_STATE, see future.h). Every other watch, timer and
 *     dispatched function of the loop waits while a callback runs. Use then() or dispatch.
 *   - tf_evb_dispatch_and_wait() on ANOTHER loop (two loops doing it to each other deadlock):
 *     it is refused with TF_ERR_BAD_STATE. Use tf_evb_dispatch() plus a tf_future then().
 *   - tf_evb_free() of its own loop (it would join itself): refused with BAD_STATE.
 *   - close() a registered fd before tf_evb_unregister_fd() of it.
 *
 * Errors: every function returns TF_OK or one tf_err reason (err.h); a call that fails changes
 * nothing unless stated. TF_ERR_IO keeps the OS error number in errno.
 */
#ifndef TCPFRAME_EVBASE_H
#define TCPFRAME_EVBASE_H

#include <stdbool.h>
#include <stdint.h>

#include "tcpframe/err.h"
#include "tcpframe/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* An event loop. Opaque; owns an epoll fd, an eventfd and (after tf_evb_start) a thread. */
typedef struct tf_evb tf_evb;

/* A timer handle from tf_evb_timer_after(). Opaque, reference-counted (see there). */
typedef struct tf_evb_timer tf_evb_timer;

/* Interest and readiness bits of fd watches. Interest: READ and/or WRITE (level-triggered).
 * Readiness passed to callbacks may also carry ERROR (EPOLLERR) and HUP (EPOLLHUP/EPOLLRDHUP),
 * which are always reported, even with an interest of 0. */
#define TF_EVB_READ 1u
#define TF_EVB_WRITE 2u
#define TF_EVB_ERROR 4u
#define TF_EVB_HUP 8u

/* fd numbers at or above this are refused (the loop keeps one small slot per fd number). */
#define TF_EVB_MAX_FD (1 << 24)

/* A dispatched function. Runs once on the loop thread. */
typedef void (*tf_evb_fn)(void *arg);
/* An fd callback: |fd| is ready for |events| (TF_EVB_* bits). Runs on the loop thread. */
typedef void (*tf_evb_fd_cb)(tf_evb *evb, int fd, unsigned events, void *arg);
/* A timer callback. Runs at most once, on the loop thread. */
typedef void (*tf_evb_timer_cb)(tf_evb *evb, void *arg);

/* ---------------------------------------------------------------- lifecycle */

/* Create a loop in INIT state and store it in *out (set to NULL on failure).
 * TF_OK; INVALID_ARGUMENT (out NULL); NOMEM; IO (epoll_create1/eventfd failed, errno kept). */
TF_API tf_err tf_evb_new(tf_evb **out);

/* Stop the loop (as tf_evb_stop: drains, joins the library thread), then release everything.
 * Timer handles stay valid (cancel gives BAD_STATE; release them as usual). NULL is a no-op.
 * Call only once no other thread can still call into |evb|.
 * TF_OK: freed (also for NULL). BAD_STATE: called on this loop's own thread (it would join
 * itself); nothing is stopped or freed -- call it again from another thread. */
TF_API tf_err tf_evb_free(tf_evb *evb);

/* Run the loop on a new thread the library owns; stop()/free() join it.
 * TF_OK: running (tf_evb_is_running() is already true on return).
 * BAD_STATE: already running (started or inside tf_evb_loop). SHUTDOWN: stopped.
 * IO: pthread_create failed (errno = its error); the loop stays in INIT. */
TF_API tf_err tf_evb_start(tf_evb *evb);

/* Run the loop on the calling thread until tf_evb_stop() is called (from a callback or any
 * other thread); returns after the drain described above, with the loop STOPPED.
 * TF_OK: ran and stopped. BAD_STATE: already running, or the caller is a loop thread (of any
 * loop). SHUTDOWN: the loop was already stopped. IO: epoll_wait failed unexpectedly (errno
 * kept); the loop was then stopped and drained as by tf_evb_stop(). */
TF_API tf_err tf_evb_loop(tf_evb *evb);

/* Request the stop; idempotent, always TF_OK (INVALID_ARGUMENT if evb is NULL).
 *   - From the loop thread: returns at once; the loop stops after the current iteration (the
 *     rest of the current callback batch still runs), then drains.
 *   - From any other thread: blocks until the loop has stopped and drained (and, for a loop
 *     from tf_evb_start, its thread is joined). No callback of this loop runs after it returns.
 *   - On a loop that never ran (INIT): the calling thread drains the queued work itself, acting
 *     as the loop thread meanwhile (tf_evb_in_loop_thread() is true inside those functions). */
TF_API tf_err tf_evb_stop(tf_evb *evb);

/* True from a successful start()/loop() until stop() is called. A hint for other threads:
 * the answer may be stale by the time it is used. */
TF_API bool tf_evb_is_running(const tf_evb *evb);

/* True if the calling thread is running this loop's callbacks now. Exact, lock-free. */
TF_API bool tf_evb_in_loop_thread(const tf_evb *evb);

/* ---------------------------------------------------------------- dispatch */

/* Queue fn(arg) to run on the loop thread. Always deferred, even from the loop thread (it runs
 * in a later batch, never inside this call). FIFO per producer thread: two dispatches from one
 * thread run in call order; all producers share one queue (global FIFO in acceptance order).
 * A burst of dispatches costs at most one eventfd write (coalesced by an atomic pending flag);
 * no wake-up is ever lost.
 * TF_OK: fn will run exactly once (before the loop is STOPPED; possibly during the drain).
 * SHUTDOWN: stop() was called; fn will never run (arg is still the caller's).
 * INVALID_ARGUMENT: evb or fn NULL. NOMEM: the queue could not grow. */
TF_API tf_err tf_evb_dispatch(tf_evb *evb, tf_evb_fn fn, void *arg);

/* Run fn(arg) now if the caller is the loop thread (TF_OK after it returned), else exactly
 * tf_evb_dispatch(). Returns as tf_evb_dispatch. */
TF_API tf_err tf_evb_dispatch_inline(tf_evb *evb, tf_evb_fn fn, void *arg);

/* Run fn(arg) on the loop thread and block until it has returned.
 * On the loop thread it runs inline (no self-deadlock). Never hangs on a stopped loop:
 * TF_OK: fn ran (on the loop, or in the drain of a stop() that came while this call waited).
 * SHUTDOWN: stop() was called before the call; fn did not run.
 * BAD_STATE: the caller is the thread of ANOTHER loop (deadlock hazard); fn did not run.
 * INVALID_ARGUMENT, NOMEM: as tf_evb_dispatch; fn did not run.
 * On a loop in INIT, it waits until the loop is started (or stopped and drained).
 * Cost: the caller polls for about 20k CPU pause instructions (about 0.2 ms on the x86 it was
 * measured on) before it sleeps, which halves the round trip when the loop answers quickly; a
 * long fn therefore costs the caller that much CPU once per call. */
TF_API tf_err tf_evb_dispatch_and_wait(tf_evb *evb, tf_evb_fn fn, void *arg);

/* ---------------------------------------------------------------- fd watches */

/* Watch |fd| for |events| (TF_EVB_READ | TF_EVB_WRITE, or 0 for errors only) and call
 * cb(evb, fd, ready_events, arg) on the loop thread while it is ready (level-triggered).
 * Replaces any registration of the same fd (new events, cb and arg): from then on the old cb is
 * never called again for it. The fd stays the caller's: close it only after the unregister has
 * taken effect (at once on the loop thread; from another thread, after a following
 * tf_evb_dispatch_and_wait), or a callback may still see the closed (or reused) number.
 * Ordering: all register/unregister calls are ordered by a ticket taken at call time, and the
 * loop applies a call only if no later call for the same fd was applied already. So the final
 * state of an fd always matches the last call made for it, whatever thread made it, and a
 * deferred unregister never removes a later registration. A call superseded this way before it
 * took effect never delivers a callback.
 * From the loop thread: applied at once. TF_OK; IO (epoll_ctl refused: EBADF, EPERM for a
 * regular file, ...; errno kept; the fd is then not watched); SHUTDOWN (stopping).
 * From another thread: queued. TF_OK (queued); SHUTDOWN; NOMEM. If epoll_ctl later refuses
 * it, cb runs once with TF_EVB_ERROR and the fd is not watched.
 * INVALID_ARGUMENT: evb or cb NULL, fd < 0 or >= TF_EVB_MAX_FD, unknown bits in events, or
 * fd is one of the loop's own fds. */
TF_API tf_err tf_evb_register_fd(tf_evb *evb, int fd, unsigned events, tf_evb_fd_cb cb, void *arg);

/* Stop watching |fd|. Unregistering an fd that is not watched is a no-op (TF_OK).
 * Once it has taken effect on the loop, no callback of the removed registration ever runs
 * again -- even for an event already fetched in the same epoll batch, and even if the fd number
 * is closed, reused and registered again meanwhile (each registration carries its own
 * generation in epoll_data; stale events are dropped).
 * From the loop thread (e.g. a callback removing itself or another fd): takes effect at once.
 * From another thread: queued (ordered as in tf_evb_register_fd); the callback may still run
 * until the loop applies it. To wait for that, follow it with tf_evb_dispatch_and_wait() of
 * any function (FIFO per producer).
 * TF_OK; SHUTDOWN (off-loop call after stop: the drain drops all watches anyway); NOMEM;
 * INVALID_ARGUMENT (evb NULL, fd < 0 or fd >= TF_EVB_MAX_FD). */
TF_API tf_err tf_evb_unregister_fd(tf_evb *evb, int fd);

/* ---------------------------------------------------------------- timers */

/* Call cb(evb, arg) once on the loop thread, |ms| milliseconds from now (CLOCK_MONOTONIC;
 * 0 = in the next iteration). Timers fire in deadline order; equal deadlines fire in call
 * order. A timer never fires early; it fires late by at most the time the loop spends in
 * other callbacks (plus up to 1 ms of rounding). Insert and cancel cost O(log n) (binary heap;
 * the epoll_wait timeout waits for the earliest). Timers pending at stop never fire.
 * |out|: NULL for a fire-and-forget timer; else *out receives a handle (NULL on failure) that
 * the caller owns and must release exactly once with tf_evb_timer_release(), at any time and
 * from any thread (before or after the timer fired or was cancelled; the callback may run
 * after the release and may release the handle itself).
 * TF_OK; INVALID_ARGUMENT (evb or cb NULL); NOMEM; SHUTDOWN (stop() was called). */
TF_API tf_err tf_evb_timer_after(tf_evb *evb, uint64_t ms, tf_evb_timer_cb cb, void *arg,
                                 tf_evb_timer **out);

/* Cancel a timer, from any thread, at any time while the caller holds the handle (even after
 * tf_evb_free of its loop).
 * TF_OK: the callback will never run (it had not started); its heap slot is freed at once on
 * the loop thread, soon after otherwise.
 * BAD_STATE: too late -- the callback already ran or is running now on the loop thread, the
 * timer was already cancelled, or the loop stopped. Harmless: nothing changes. To know that a
 * running callback has finished, follow with tf_evb_dispatch_and_wait().
 * INVALID_ARGUMENT: t NULL. */
TF_API tf_err tf_evb_timer_cancel(tf_evb_timer *t);

/* Drop the caller's handle. Does not cancel the timer. NULL is a no-op. */
TF_API void tf_evb_timer_release(tf_evb_timer *t);

#ifdef __cplusplus
}
#endif
#endif /* TCPFRAME_EVBASE_H */
