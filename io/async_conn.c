/* io/async_conn.c -- tf_async_conn: a framed TCP connection on a tf_evb loop (async.h,
 * SPEC 9.7).
 *
 * Ownership of state (SPEC 9.7, "Ownership"):
 *
 *   fields                              who may touch them
 *   ----------------------------------  ------------------------------------------------------
 *   base, evb, cfg, peer, peer_rc, cred read by any thread; written once, before publication
 *   refs                                any thread (atomic)
 *   err, os_err                         written by the loop thread; read by any (atomic)
 *   closing .. in_tail (admission)      any thread, under c->mu only
 *   st_paused .. st_pauses (stats)      any thread, under c->mu only
 *   st_msgs_sent .. st_bytes_recv       written by the loop thread; read by any (atomic)
 *   everything after "loop thread only" the loop thread; after the loop stopped for good, the
 *                                       one thread that frees the connection
 *
 * The admission point. Every submission (send, receive, stream on/off, writable callback,
 * close) is decided under c->mu in one step: the refusals (freeing, poison, stopping, closing,
 * stream-vs-receive, the queue bounds), the counters and the BUSY mark, and -- off the loop
 * thread -- the hand-off itself: the operation goes onto the connection's inbox, and the first
 * one onto an empty inbox dispatches one inbox task (holding a reference). A call that returned
 * TF_OK is therefore on the inbox or in the loop's queues, never in between: close takes the
 * inbox before it flushes, free and abort take it to cancel, the stop drain runs the inbox task
 * before the stop hook. The loop gives counters back under the same lock, so the writable mark
 * and the counters can never be seen apart. Never check one flag and then set another.
 *
 * The pump. Every loop-thread entry (fd event, timer, submission, hook) goes through
 * enter()/leave(). pump() runs the handshake, then writes (one sendmsg over the queued frames),
 * then reads; callbacks run inside it, and work they submit is queued and picked up by the
 * pump's next round, never by a nested pump. The inbox is taken whole before the pump runs
 * (settle()): settings are recorded item by item and act as their last one. An abort made inside
 * a callback halts the pump (abort_pending) until the abort task cancels what is queued. The
 * connection is destroyed only when the outermost leave() finds it dead.
 *
 * Reads. A read goes into a per-thread scratch buffer; complete frames in it are delivered from
 * there (tf_frame_split: a view for the message stream, one copy into a span or an exact
 * allocation); a frame cut at the end of the buffer is handed to the tf_rx machine with its
 * target bound (the head receive's span or allocation), and a large rest is read straight into
 * that target. Bytes nobody asked for yet wait in a small per-connection hold buffer, and the
 * socket is read only while someone wants a message or a frame is under way: an idle connection
 * holds no buffer, and watches its socket for errors only (a reset ends it at once). The one
 * exception is the stall relief (below do_read): sends that made no progress for 200 ms while
 * nothing is read make a bounded read ahead into the hold.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "async_internal.h"
#include "tcpframe/fdio.h"

#ifndef IOV_MAX
#define IOV_MAX 1024
#endif

/* Operation kinds: the user's three, and the items the inbox also carries (library-owned
 * records: buf holds the callback, promise the close's). */
enum { OP_SEND = 1, OP_RECV = 2, OP_RECV_ALLOC = 3, OP_STREAM, OP_WRITABLE, OP_ON_END, OP_CLOSE };
/* Connection phases (loop thread). */
enum { PH_NEW, PH_HANDSHAKE, PH_OPEN, PH_FLUSH, PH_LINGER, PH_DONE };

/* ---------------------------------------------------------------- scratch buffer */

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
typedef struct scratch {
    uint8_t *buf;
    size_t cap;
    bool busy;
} scratch;

static void scratch_free(void *p)
{
    scratch *s = p;
    free(s->buf);
    free(s);
}

static void scratch_init(void)
{
    (void)pthread_key_create(&scratch_key, scratch_free);
}

/* The calling thread's read buffer of at least |cap| bytes in *out.
 *   TF_OK           *out is free for this read
 *   TF_ERR_BUSY     a connection further up this thread's stack reads into it: try later
 *   TF_ERR_NOMEM    no memory for it (or for its thread-local record) */
static tf_err scratch_get(size_t cap, scratch **out)
{
    pthread_once(&scratch_once, scratch_init);
    scratch *s = pthread_getspecific(scratch_key);
    if (!s) {
        s = tf__calloc(1, sizeof *s);
        if (!s || pthread_setspecific(scratch_key, s) != 0) {
            free(s);
            return TF_ERR_NOMEM;
        }
    }
    if (s->busy)
        return TF_ERR_BUSY;
    if (s->cap < cap) {
        uint8_t *b = tf__alloc(cap); /* the old contents are not needed */
        if (!b)
            return TF_ERR_NOMEM;
        free(s->buf);
        s->buf = b;
        s->cap = cap;
    }
    *out = s;
    return TF_OK;
}

/* ---------------------------------------------------------------- references, poison */

static void finalize(tf_async_conn *c);
static void close_fd(tf_async_conn *c);
static void wd_arm(tf_async_conn *c);
static void note_msg(tf_async_conn *c, bool received, size_t len);
static void note_frame(tf_async_conn *c);

static void conn_unref(tf_async_conn *c)
{
    if (atomic_fetch_sub_explicit(&c->refs, 1u, memory_order_acq_rel) == 1u) {
        tf__mem_budget_unref(c->budget);
        tf__xport_close(&c->x);
        pthread_mutex_destroy(&c->mu);
        free(c->hold);
        free(c->park);
        free(c);
    }
}

static void conn_ref(tf_async_conn *c)
{
    atomic_fetch_add_explicit(&c->refs, 1u, memory_order_relaxed);
}

static tf_err poison_of(const tf_async_conn *c)
{
    return (tf_err)atomic_load_explicit(&c->err, memory_order_acquire);
}

tf_err tf_async_conn_error(const tf_async_conn *c, int *os_err)
{
    if (os_err)
        *os_err = 0;
    if (!c)
        return TF_ERR_INVALID_ARGUMENT;
    tf_err e = poison_of(c);
    if (os_err && e != TF_OK)
        *os_err = atomic_load_explicit(&c->os_err, memory_order_relaxed);
    return e;
}

/* Loop-thread entries nest; the connection is destroyed by the outermost leave() only. */
static void enter(tf_async_conn *c)
{
    c->depth++;
}

static void leave(tf_async_conn *c)
{
    if (--c->depth == 0 && c->dead)
        finalize(c);
}

static bool failed(const tf_async_conn *c)
{
    return c->dead || poison_of(c) != TF_OK;
}

/* The receive direction's end (CLOSED after the peer's clean EOF), TF_OK while open. */
static tf_err rx_end_of(const tf_async_conn *c)
{
    return (tf_err)atomic_load_explicit(&c->rx_err, memory_order_acquire);
}

/* The peer's address for a log line ("?" when it is not known). */
static const char *peer_label(const tf_async_conn *c)
{
    return c->peer_rc == TF_OK ? c->peer : "?";
}

/* ---------------------------------------------------------------- fd interest */

static void on_fd(tf_evb *evb, int fd, unsigned events, void *arg);

/* An open connection that neither reads nor writes still watches its socket for errors (a
 * reset must end a paused or idle connection: its end notification is all its owner waits
 * for); an interest value of its own, since 0 means not watched at all. */
#define WATCH_ERRORS 16u

/* Watch the socket for exactly |want| (TF_EVB_* bits; WATCH_ERRORS: errors and hang-ups only;
 * 0: not at all). */
static void set_interest(tf_async_conn *c, unsigned want)
{
    if (c->fd < 0 || want == c->interest)
        return;
    tf_err rc = want ? tf_evb_register_fd(c->evb, c->fd, want & ~WATCH_ERRORS, on_fd, c)
                     : tf_evb_unregister_fd(c->evb, c->fd);
    int e = errno;
    if (rc == TF_OK && (want & TF_EVB_READ) && !(c->interest & TF_EVB_READ))
        c->drained = false; /* a new watch: let the next pump look */
    c->interest = rc == TF_OK ? want : 0;
    if (rc != TF_OK && want) {
        /* A refused change may leave the earlier watch in place (a register refused for lack
         * of memory, or by a stopping loop): drop it, so no event can reach this connection
         * once it is gone. */
        tf_evb_unregister_fd(c->evb, c->fd);
        if (rc != TF_ERR_SHUTDOWN)
            TF__LOG(TF_LOG_ERROR, "async_conn", "%s: the socket's watch could not be registered: %s",
                    peer_label(c), tf_strerror(rc));
        tf__async_fail(c, rc, rc == TF_ERR_IO ? e : 0);
    }
}

static bool frame_open(const tf_async_conn *c);
static void relief_arm(tf_async_conn *c);

static bool reader_wanted(const tf_async_conn *c)
{
    return rx_end_of(c) == TF_OK && !c->mem_wait &&
           (c->rq_head || c->stream_cb || c->phase == PH_LINGER);
}

/* The socket is read: someone wants a message, or a frame is under way (a stream stopped in
 * the middle of a frame has it finished and parked for the next consumer, so the frame's
 * memory -- and the budget's overdraft -- is given back; SPEC 9.7 "Receiving"). */
static bool reading(const tf_async_conn *c)
{
    return reader_wanted(c) || (frame_open(c) && rx_end_of(c) == TF_OK && !c->mem_wait);
}

static void update_interest(tf_async_conn *c)
{
    /* The transport says what each direction waits for (TLS may need to write to read). */
    unsigned w = 0;
    if (c->phase == PH_HANDSHAKE && !c->x.hs_done) {
        w = tf__xport_wants(&c->x, 0);
    } else if (c->phase == PH_HANDSHAKE) {
        unsigned h = tf_hs_wants(&c->hs);
        if (h & TF_WANT_READ)
            w |= tf__xport_wants(&c->x, TF_WANT_READ);
        if ((h & TF_WANT_WRITE) || tf__xport_out_pending(&c->x))
            w |= tf__xport_wants(&c->x, TF_WANT_WRITE);
    } else if (c->phase == PH_OPEN || c->phase == PH_LINGER) {
        if (c->sq_head || tf__xport_out_pending(&c->x))
            w |= tf__xport_wants(&c->x, TF_WANT_WRITE);
        if (reading(c))
            w |= tf__xport_wants(&c->x, TF_WANT_READ);
        else if ((c->interest & TF_EVB_READ) && c->drained && !c->mem_wait &&
                 rx_end_of(c) == TF_OK && !c->abort_pending)
            w |= TF_WANT_READ; /* the lazy drop: see below */
    }
    /* The lazy drop of the read interest. A connection whose last receive completed keeps its
     * read watch while the socket is drained (the last read came back short): a future-style
     * caller's next receive, usually submitted before the peer answers, then finds it in place
     * instead of an epoll_ctl to drop it and another to add it back per message. The first
     * readable event that finds nobody to read clears |drained| (on_fd), so the watch drops
     * there to errors only -- level-triggered data nobody wants cannot spin the loop. */
    unsigned want =
        ((w & TF_WANT_READ) ? TF_EVB_READ : 0u) | ((w & TF_WANT_WRITE) ? TF_EVB_WRITE : 0u);
    if (!want && (c->phase == PH_OPEN || c->phase == PH_LINGER) && !c->hup_seen)
        want = WATCH_ERRORS;
    set_interest(c, want);
    relief_arm(c);
}

/* ---------------------------------------------------------------- queues and completion */

static void queue_push(tf_async_op **head, tf_async_op **tail, tf_async_op *op)
{
    op->next = NULL;
    if (*tail)
        (*tail)->next = op;
    else
        *head = op;
    *tail = op;
}

static tf_async_op *queue_pop(tf_async_op **head, tf_async_op **tail)
{
    tf_async_op *op = *head;
    if (op) {
        *head = op->next;
        if (!*head)
            *tail = NULL;
        op->next = NULL;
    }
    return op;
}

static bool queue_unlink(tf_async_op **head, tf_async_op **tail, tf_async_op *op)
{
    tf_async_op *prev = NULL;
    for (tf_async_op *p = *head; p; prev = p, p = p->next) {
        if (p != op)
            continue;
        if (prev)
            prev->next = p->next;
        else
            *head = p->next;
        if (*tail == p)
            *tail = prev;
        p->next = NULL;
        return true;
    }
    return false;
}

static void writable_check(tf_async_conn *c)
{
    if (!c->wr_cb || failed(c) || c->abort_pending || c->taking > 0)
        return;
    pthread_mutex_lock(&c->mu);
    bool fire = c->wr_wanted && c->sq_bytes <= (size_t)c->cfg.send_low_water;
    if (fire)
        c->wr_wanted = false;
    pthread_mutex_unlock(&c->mu);
    if (fire)
        c->wr_cb(c, c->wr_arg);
}

/* Give back what admit() counted for an operation of |kind| (under c->mu). */
static void uncount_locked(tf_async_conn *c, int kind, size_t len)
{
    if (kind == OP_SEND) {
        c->sq_bytes -= len;
        c->sq_msgs--;
        if (c->st_paused && c->sq_bytes <= (size_t)c->cfg.send_low_water)
            tf__async_pause_end(c); /* the drain a BUSY waits for (stats) */
    } else {
        c->rq_ops--;
    }
}

/* Complete |op| (no longer queued) with its outcome: counters, timer, then the future or the
 * callback. For an allocating receive, |data| is the message buffer, owned by the receiver
 * from here on. */
static void op_done(tf_async_conn *c, tf_async_op *op, tf_err err, int os_err, uint8_t *data,
                    size_t len)
{
    tf__evb_timer_drop(&op->timer);
    bool send = op->kind == OP_SEND;
    pthread_mutex_lock(&c->mu);
    uncount_locked(c, op->kind, op->len);
    pthread_mutex_unlock(&c->mu);
    tf__perturb(); /* between the counters given back and the completion */
    if (send) {
        data = op->buf;
        len = op->len;
        if (op->dtor) {
            op->dtor(op->buf);
            data = NULL;
        }
    }
    if (err != TF_OK && !send)
        len = 0;
    if (err == TF_OK)
        note_msg(c, !send, len);
    if (op->promise) {
        tf_promise *p = op->promise;
        bool owned = op->kind == OP_RECV_ALLOC && data;
        tf__promise_mem_done(op, sizeof *op); /* the op lives in the promise's state */
        if (err == TF_OK)
            tf__promise_set_deferred(p, err, len, owned ? data : NULL, owned ? free : NULL);
        else
            tf__promise_fail_deferred(p, err, os_err);
        tf_promise_free(p);
    } else {
        op->cb(c, op, err, os_err, data, len, op->arg);
    }
    if (send)
        writable_check(c);
}

/* ---------------------------------------------------------------- poison */

/* Drop the held bytes and their buffer: an idle connection holds no buffer. */
static void hold_release(tf_async_conn *c)
{
    free(c->hold);
    c->hold = NULL;
    c->hold_off = c->hold_len = c->hold_cap = 0;
}

/* ---------------------------------------------------------------- receive memory */

enum { GROW_MIN = 64 * 1024 }; /* a growing message's first allocation (if it is that long) */

tf_err tf__mem_budget_new(size_t limit, tf__mem_budget **out)
{
    tf__mem_budget *b = tf__calloc(1, sizeof *b);
    if (!b)
        return TF_ERR_NOMEM;
    if (pthread_mutex_init(&b->mu, NULL) != 0) {
        free(b);
        return TF_ERR_NOMEM;
    }
    b->limit = limit;
    atomic_init(&b->refs, 1u);
    *out = b;
    return TF_OK;
}

void tf__mem_budget_unref(tf__mem_budget *b)
{
    if (b && atomic_fetch_sub_explicit(&b->refs, 1u, memory_order_acq_rel) == 1u) {
        pthread_mutex_destroy(&b->mu);
        free(b->loops);
        free(b->loop_live);
        free(b);
    }
}

tf_err tf__mem_budget_set_loops(tf__mem_budget *b, tf_evb *const *loops, size_t n)
{
    tf_evb **l = tf__calloc(n, sizeof *l);
    atomic_size_t *live = tf__calloc(n, sizeof *live);
    if (!l || !live) {
        free(l);
        free(live);
        return TF_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        l[i] = loops[i];
        atomic_init(&live[i], 0);
    }
    free(b->loops);
    free(b->loop_live);
    b->loops = l;
    b->loop_live = live;
    b->nloops = n;
    return TF_OK;
}

void tf__mem_budget_gone(tf__mem_budget *b, tf_evb *evb)
{
    atomic_fetch_sub_explicit(&b->live, 1u, memory_order_relaxed);
    for (size_t i = 0; i < b->nloops; i++) {
        if (b->loops[i] == evb) {
            atomic_fetch_sub_explicit(&b->loop_live[i], 1u, memory_order_relaxed);
            return;
        }
    }
}

void tf__mem_budget_use(tf__mem_budget *b, size_t *used, size_t *peak, uint64_t *waits)
{
    pthread_mutex_lock(&b->mu);
    *used = b->used;
    *peak = b->peak;
    *waits = b->waits;
    pthread_mutex_unlock(&b->mu);
}

/* Take |n| more bytes of the budget (loop thread). False: it is spent and someone else holds
 * the overdraft; the connection is then a waiter, woken (pumped) when memory frees. */
static bool budget_take(tf_async_conn *c, size_t n)
{
    tf__mem_budget *b = c->budget;
    if (!b)
        return true;
    pthread_mutex_lock(&b->mu);
    bool ok = b->used + n <= b->limit || b->overdraft == c || b->overdraft == NULL;
    if (ok) {
        if (b->used + n > b->limit)
            b->overdraft = c; /* past the limit, one at a time: the others wait for it */
        b->used += n;
        c->bheld += n;
        if (b->used > b->peak)
            b->peak = b->used;
    } else {
        b->waits++;
        if (!c->bwaiting) {
            c->bwaiting = true;
            conn_ref(c);
            c->bnext = b->waiters;
            b->waiters = c;
        }
        c->mem_wait = true;
    }
    pthread_mutex_unlock(&b->mu);
    return ok;
}

static void pump(tf_async_conn *c);

static void wake_task(void *arg)
{
    tf_async_conn *c = arg;
    enter(c);
    c->mem_wait = false;
    pump(c);
    leave(c);
    conn_unref(c);
}

/* Give back what the connection holds, and stop waiting if it was (its loop thread, or the
 * freeing thread after the loop stopped). Memory freed wakes every waiter on its own loop. */
static void budget_give(tf_async_conn *c, bool leave_waiters)
{
    tf__mem_budget *b = c->budget;
    if (!b)
        return;
    tf_async_conn *wake = NULL;
    bool unref_self = false;
    pthread_mutex_lock(&b->mu);
    bool freed = c->bheld > 0 || b->overdraft == c;
    b->used -= c->bheld;
    c->bheld = 0;
    if (b->overdraft == c)
        b->overdraft = NULL;
    if (leave_waiters && c->bwaiting) {
        for (tf_async_conn **pp = &b->waiters; *pp; pp = &(*pp)->bnext) {
            if (*pp == c) {
                *pp = c->bnext;
                break;
            }
        }
        c->bwaiting = false;
        unref_self = true;
    }
    if (freed) {
        wake = b->waiters;
        b->waiters = NULL;
        for (tf_async_conn *w = wake; w; w = w->bnext)
            w->bwaiting = false;
    }
    pthread_mutex_unlock(&b->mu);
    while (wake) {
        tf_async_conn *next = wake->bnext;
        if (tf_evb_dispatch(wake->evb, wake_task, wake) != TF_OK)
            conn_unref(wake); /* its loop is stopping: its stop hook fails it */
        wake = next;
    }
    if (unref_self)
        conn_unref(c); /* never the last: the caller holds one */
}

/* The growing message is dropped (failure, free). */
static void grow_reset(tf_async_conn *c)
{
    free(c->gbuf);
    c->gbuf = NULL;
    c->growing = false;
    c->gcap = c->glen = c->ggot = 0;
    budget_give(c, false);
}

/* Room for |need| bytes in the growing message: at least need, doubling, at most its length.
 * False: no memory (poisoned with NOMEM) or the budget is spent (c->mem_wait: woken later). */
static bool grow_room(tf_async_conn *c, size_t need)
{
    if (need <= c->gcap)
        return true;
    size_t cap = c->gcap > c->glen / 2 ? c->glen : c->gcap * 2; /* doubling, never wrapping */
    if (cap < need)
        cap = need;
    if (cap < GROW_MIN)
        cap = GROW_MIN;
    if (cap > c->glen)
        cap = c->glen;
    if (!budget_take(c, cap - c->gcap))
        return false;
    uint8_t *p = tf__grow(c->gbuf, c->ggot, cap);
    if (!p) {
        tf__async_fail(c, TF_ERR_NOMEM, 0);
        return false;
    }
    c->gbuf = p;
    c->gcap = cap;
    return true;
}

/* A span receive's target bound to rx is the caller's: only forget it. */
static void rx_unbind(tf_async_conn *c)
{
    c->rx_buf = NULL;
}

/* A frame is under way: bound to rx (a span) or growing. */
static bool frame_open(const tf_async_conn *c)
{
    return c->rx_buf || c->growing;
}

/* The end notification, once, for a connection that is over and not freed (loop thread). */
static void tell_end(tf_async_conn *c)
{
    if (!c->end_cb || c->end_told || c->dead || poison_of(c) == TF_OK)
        return;
    c->end_told = true;
    int os = 0;
    tf_err e = tf_async_conn_error(c, &os);
    c->end_cb(c, e, os, c->end_arg);
}

/* The peer's clean EOF between messages: the receive direction ends (pending receives and the
 * stream with CLOSED); sends go on (SPEC 9.7, "Half-close"). */
static void rx_close(tf_async_conn *c)
{
    atomic_store_explicit(&c->rx_err, (int)TF_ERR_CLOSED, memory_order_release);
    tf_async_op *op;
    while ((op = queue_pop(&c->rq_head, &c->rq_tail)) != NULL)
        op_done(c, op, TF_ERR_CLOSED, 0, NULL, 0);
    if (c->stream_cb) {
        tf_async_msg_cb cb = c->stream_cb;
        c->stream_cb = NULL;
        cb(c, TF_ERR_CLOSED, 0, NULL, 0, c->stream_arg);
    }
}

/* Complete the sends the kernel took whole (TF_OK), in order. */
static void complete_sent(tf_async_conn *c)
{
    tf_async_op *op;
    while ((op = queue_pop(&c->sent_head, &c->sent_tail)) != NULL)
        op_done(c, op, TF_OK, 0, NULL, 0);
}

/* Complete everything pending with |err|: queued operations, the stream (its end call), the
 * close future. A callback may free the connection: the free completes whatever is still
 * pending itself (CANCELLED, inside the free call), so nothing here runs after it returned. */
static void fail_pending(tf_async_conn *c, tf_err err, int os_err)
{
    complete_sent(c); /* those went out whole: OK, whatever came after */
    tf_async_op *op;
    while ((op = queue_pop(&c->sq_head, &c->sq_tail)) != NULL)
        op_done(c, op, err, os_err, NULL, 0);
    while ((op = queue_pop(&c->rq_head, &c->rq_tail)) != NULL)
        op_done(c, op, err, os_err, NULL, 0);
    if (c->stream_cb) {
        tf_async_msg_cb cb = c->stream_cb;
        c->stream_cb = NULL;
        cb(c, err, os_err, NULL, 0, c->stream_arg);
    }
    if (c->close_promise) {
        tf_promise *p = c->close_promise;
        c->close_promise = NULL;
        if (c->close_over)
            tf_promise_set(p, c->close_result, 0, NULL, NULL); /* the close itself ended */
        else
            tf_promise_fail(p, err, os_err);
        tf_promise_free(p);
    }
}

void tf__async_fail(tf_async_conn *c, tf_err err, int os_err)
{
    if (poison_of(c) != TF_OK)
        return;
    atomic_store_explicit(&c->os_err, os_err, memory_order_relaxed);
    atomic_store_explicit(&c->err, (int)err, memory_order_release);
    if (c->fd >= 0)
        shutdown(c->fd, SHUT_RDWR);
    set_interest(c, 0);
    tf__evb_timer_drop(&c->hs_timer);
    tf__evb_timer_drop(&c->linger_timer);
    tf__evb_timer_drop(&c->wd_timer);
    tf__evb_timer_drop(&c->relief_timer);
    rx_unbind(c);
    tf_rx_abandon(&c->rx);
    grow_reset(c);
    hold_release(c);
    free(c->park);
    c->park = NULL;
    c->parked = false;
    bool was_hs = c->phase == PH_HANDSHAKE;
    if (c->phase != PH_NEW)
        c->phase = PH_DONE;
    /* Callbacks below may free the connection (it stays alive until leave()) and may submit
     * more work, which the poison refuses. */
    if (was_hs && c->ready_fn) {
        tf__async_ready_fn fn = c->ready_fn;
        c->ready_fn = NULL;
        fn(c, err, os_err, c->ready_arg);
    }
    tf__async_tell_closed(c, err, os_err); /* the owner's CLOSED event (SPEC 9.10), once */
    fail_pending(c, err, os_err);
    if (c->flushing)
        close_fd(c); /* a close was asked for: the socket goes now, not at free */
    tell_end(c);
}

/* Close the socket now (loop thread; after it stopped watching it). */
static void close_fd(tf_async_conn *c)
{
    if (c->fd < 0)
        return;
    set_interest(c, 0);
    close(c->fd);
    c->fd = -1;
}

/* ---------------------------------------------------------------- handshake */

/* Push out what the transport accepted and still holds (TLS; plain TCP holds nothing). True
 * when nothing is left; false when the socket is full (the interest says WRITE) or it failed. */
static bool out_flush(tf_async_conn *c)
{
    if (!c->x.ops->flush)
        return true;
    for (;;) {
        int os = 0;
        long r = c->x.ops->flush(c->x.ctx, &os);
        if (r == 0)
            return true;
        if (r == TF_IO_INTR)
            continue;
        if (r == TF_IO_FAIL) {
            tf_err why = tf__xport_reason(&c->x, TF_ERR_IO, &os); /* may replace os: first */
            tf__async_fail(c, why, os);
        }
        return false;
    }
}

/* One handshake step. True when the connection is open for frames. */
static bool hs_step(tf_async_conn *c)
{
    int os = 0;
    tf_err e = TF_OK;
    tf_step st = tf__xport_handshake(&c->x, &e, &os); /* TLS first; the magic runs inside */
    if (st == TF_DONE && c->cfg.handshake) {
        tf_io io = tf__xport_io(&c->x);
        st = tf_hs_try(&c->hs, &io);
        if (st == TF_ERROR)
            e = tf__xport_reason(&c->x, tf_hs_error(&c->hs, &os), &os);
        else if (!out_flush(c) && failed(c))
            return false; /* our magic is accepted by the transport: on its way */
    }
    if (st == TF_AGAIN)
        return false;
    if (st == TF_ERROR) {
        tf__async_fail(c, e, os);
        return false;
    }
    tf__evb_timer_drop(&c->hs_timer);
    c->phase = PH_OPEN;
    c->last_msg_ns = tf__now_ns();
    wd_arm(c);
    if (c->ready_fn) {
        tf__async_ready_fn fn = c->ready_fn;
        c->ready_fn = NULL;
        fn(c, TF_OK, 0, c->ready_arg);
    }
    return !failed(c);
}

/* ---------------------------------------------------------------- writing */

static void linger_timeout(tf_evb *evb, void *arg);
static void finish_close(tf_async_conn *c, tf_err result, tf_err reason);

/* Flush done: shut our side down and wait for the peer's close. */
static void start_linger(tf_async_conn *c)
{
    if (tf__evb_stopping(c->evb)) {
        tf__async_fail(c, TF_ERR_SHUTDOWN, 0); /* in the stop drain: no FIN, no timer */
        return;
    }
    int e = c->x.ops->shutdown_wr(c->x.ctx);
    if (e != 0) {
        /* ENOTCONN: the peer reset the connection before we noticed; SO_ERROR says so. */
        int so = 0;
        socklen_t l = sizeof so;
        if (e == ENOTCONN && getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &so, &l) == 0 && so != 0)
            e = so;
        tf__async_fail(c, TF_ERR_IO, e);
        return;
    }
    c->phase = PH_LINGER;
    if (rx_end_of(c) != TF_OK && !tf__xport_out_pending(&c->x)) {
        finish_close(c, TF_OK, rx_end_of(c)); /* the peer's EOF came first: nothing to wait for */
        return;
    }
    /* TLS on a full socket holds our close_notify and the FIN behind it: do_write sends them
     * (the interest says WRITE meanwhile), and finishes then if the peer's EOF came first. */
    if (c->cfg.linger_ms >= 0 &&
        tf_evb_timer_after(c->evb, (uint64_t)c->cfg.linger_ms, linger_timeout, c,
                           &c->linger_timer) != TF_OK)
        tf__async_fail(c, tf__evb_stopping(c->evb) ? TF_ERR_SHUTDOWN : TF_ERR_NOMEM, 0);
}

/* Hand the bytes the kernel took to the queued frames, completing those that are out. */
static void write_advance(tf_async_conn *c, size_t n)
{
    /* First take every frame the kernel took whole off the queue, then complete them: a
     * completion callback that fails or frees the connection must not turn a sent frame into a
     * cancelled one (a sender that retries would duplicate it). */
    while (n > 0 && c->sq_head) {
        tf_async_op *op = c->sq_head;
        size_t p = tf_tx_pending(&op->tx);
        size_t k = p < n ? p : n;
        n -= k;
        if (tf_tx_advance(&op->tx, k) == TF_DONE)
            queue_push(&c->sent_head, &c->sent_tail, queue_pop(&c->sq_head, &c->sq_tail));
    }
    complete_sent(c);
}

/* Write queued frames until the queue is empty or the socket is full: one sendmsg gathers the
 * rest of every queued frame (prefix and payload pieces from each tf_tx), up to IOV_MAX. */
static void do_write(tf_async_conn *c)
{
    if (!out_flush(c))
        return; /* what the transport holds goes first */
    struct iovec v[IOV_MAX];
    while (c->sq_head && !failed(c)) {
        int k = 0;
        size_t total = 0;
        for (tf_async_op *op = c->sq_head; op && k <= IOV_MAX - 2; op = op->next) {
            tf_iov t[2];
            size_t m = tf_tx_next(&op->tx, t);
            for (size_t i = 0; i < m; i++) {
                v[k].iov_base = (void *)(uintptr_t)t[i].base;
                v[k].iov_len = t[i].len;
                total += t[i].len;
                k++;
            }
        }
        int os = 0;
        long n = c->x.ops->writev(c->x.ctx, v, k, &os);
        if (n < 0) {
            if (n == TF_IO_INTR)
                continue;
            if (n == TF_IO_FAIL) {
                tf_err why = tf__xport_reason(&c->x, TF_ERR_IO, &os); /* may replace os: first */
                tf__async_fail(c, why, os);
            }
            return;
        }
        c->out_bytes += (size_t)n;
        write_advance(c, (size_t)n);
        if ((size_t)n < total)
            return; /* the socket buffer is full: wait for writability */
    }
    if (!failed(c) && out_flush(c) && c->flushing && c->phase == PH_OPEN && !c->sq_head)
        start_linger(c);
    else if (!failed(c) && c->phase == PH_LINGER && rx_end_of(c) != TF_OK &&
             !tf__xport_out_pending(&c->x))
        finish_close(c, TF_OK, rx_end_of(c)); /* our held close_notify went after the peer's EOF */
}

/* ---------------------------------------------------------------- reading */

static bool rx_at_boundary(const tf_rx *rx)
{
    return rx->state == TF__RX_LEN && rx->got == 0;
}

static bool consumer(const tf_async_conn *c)
{
    return c->rq_head || c->stream_cb;
}

/* Deliver a complete message that sits in a read buffer (not bound to rx). */
static void deliver_copy(tf_async_conn *c, const uint8_t *p, size_t len)
{
    if (c->stream_cb) {
        note_msg(c, true, len);
        c->stream_cb(c, TF_OK, 0, len ? p : NULL, len, c->stream_arg);
        return;
    }
    tf_async_op *op = c->rq_head;
    uint8_t *data = op->buf;
    if (op->kind == OP_RECV) {
        if (len > op->len) {
            tf__async_fail(c, TF_ERR_BUFFER_TOO_SMALL, 0);
            return;
        }
    } else {
        data = NULL;
        if (len && (data = tf__malloc(len)) == NULL) {
            tf__async_fail(c, TF_ERR_NOMEM, 0);
            return;
        }
    }
    if (len)
        memcpy(data, p, len);
    queue_pop(&c->rq_head, &c->rq_tail);
    op_done(c, op, TF_OK, 0, data, len);
}

/* Deliver the message grown to its full length. */
static void deliver_grown(tf_async_conn *c)
{
    uint8_t *buf = c->gbuf;
    size_t len = c->glen;
    bool stream = c->gstream;
    c->gbuf = NULL;
    c->growing = false;
    c->gcap = c->glen = c->ggot = 0;
    budget_give(c, false); /* handed on: no longer the connection's memory */
    if (!stream) {
        tf_async_op *op = queue_pop(&c->rq_head, &c->rq_tail); /* the allocating receive */
        op_done(c, op, TF_OK, 0, buf, len);
        return;
    }
    /* The frame was the stream's. It goes to the stream on now (never to a callback that was
     * replaced or stopped meanwhile), else to the head receive, else it waits whole (parked)
     * for whoever wants the next message. */
    if (c->stream_cb) {
        note_msg(c, true, len);
        c->stream_cb(c, TF_OK, 0, buf, len, c->stream_arg);
        free(buf);
    } else if (c->rq_head) {
        deliver_copy(c, buf, len);
        free(buf);
    } else {
        c->park = buf;
        c->park_len = len;
        c->parked = true;
    }
}

/* Deliver the message rx completed in its bound target (a span receive's). */
static void deliver_bound(tf_async_conn *c, const tf_msg *msg)
{
    uint8_t *buf = c->rx_buf;
    c->rx_buf = NULL;
    if (!buf && c->stream_cb) {
        /* An empty frame whose prefix was cut between reads completes in rx without a target
         * ever bound: it is the stream's (there is no receive to pop). */
        note_msg(c, true, 0);
        c->stream_cb(c, TF_OK, 0, NULL, 0, c->stream_arg);
        return;
    }
    tf_async_op *op = queue_pop(&c->rq_head, &c->rq_tail);
    op_done(c, op, TF_OK, 0, msg->data, msg->len);
}

/* The frame whose prefix rx decoded: a span receive binds rx to its span; the stream and an
 * allocating receive grow a buffer of their own as the bytes arrive (never the declared length
 * on the prefix alone), and rx waits for the next prefix. False if nobody wants a message now,
 * or on failure (BUFFER_TOO_SMALL: poisoned). */
static bool bind_target(tf_async_conn *c)
{
    size_t len = 0;
    tf_rx_wants_target(&c->rx, &len);
    if (!c->stream_cb && !c->rq_head)
        return false;
    if (c->stream_cb || c->rq_head->kind == OP_RECV_ALLOC) {
        c->growing = true;
        c->gstream = c->stream_cb != NULL;
        c->glen = len;
        c->ggot = c->gcap = 0;
        tf_rx_init(&c->rx, c->cfg.max_recv_len); /* the prefix is used: the body is ours */
        return true;
    }
    tf_async_op *op = c->rq_head;
    tf_err e = tf_rx_set_target(&c->rx, op->buf, op->len);
    if (e != TF_OK) {
        tf__async_fail(c, e, 0);
        return false;
    }
    c->rx_buf = op->buf;
    return true;
}

/* Copy body bytes into the growing message; returns how many it took (0: waiting for memory,
 * or poisoned). */
static size_t grow_feed(tf_async_conn *c, const uint8_t *in, size_t n)
{
    size_t k = c->glen - c->ggot;
    if (k > n)
        k = n;
    if (c->ggot + k > c->gcap && !grow_room(c, c->ggot + k)) {
        if (failed(c))
            return 0;
        k = c->gcap - c->ggot; /* the budget is spent: fill what we have */
    }
    if (k) {
        memcpy(c->gbuf + c->ggot, in, k);
        c->ggot += k;
    }
    if (c->ggot == c->glen)
        deliver_grown(c);
    return k;
}

/* Hand the parked message to the consumer that now wants one (there must be one). */
static void unpark(tf_async_conn *c)
{
    uint8_t *p = c->park;
    c->park = NULL;
    c->parked = false;
    deliver_copy(c, p, c->park_len);
    free(p);
}

static void take_inbox(tf_async_conn *c);

/* Something admitted on another thread waits in the inbox (loop thread). */
static bool inbox_waiting(tf_async_conn *c)
{
    pthread_mutex_lock(&c->mu);
    bool any = c->in_head != NULL;
    pthread_mutex_unlock(&c->mu);
    return any;
}

/* Closing, and nobody wants a message: skip what arrives, but whole frames only (the rest of a
 * cut frame is skipped as it arrives), so that a receive made later still starts at a frame
 * boundary. Returns the bytes skipped; 0 when a cut prefix waits for its rest. */
static size_t linger_skip(tf_async_conn *c, const uint8_t *in, size_t n)
{
    size_t u = 0;
    tf_msg msg = {NULL, 0};
    tf_step st = tf_rx_feed(&c->rx, in, n, &u, &msg); /* the prefix only: no target is bound */
    size_t len = 0;
    if (st == TF_ERROR) {
        int os = 0;
        tf_err e = tf_rx_error(&c->rx, &os);
        tf__async_fail(c, e, os);
    } else if (tf_rx_wants_target(&c->rx, &len)) {
        c->skip = len;
        tf_rx_init(&c->rx, c->cfg.max_recv_len);
    }
    return u;
}

/* Deliver every message in in[0..n) that someone wants; returns the bytes used. */
static size_t consume(tf_async_conn *c, const uint8_t *in, size_t n)
{
    size_t used = 0;
    while (used < n && !failed(c) && !c->abort_pending) {
        if (c->skip > 0) {
            size_t k = c->skip < n - used ? c->skip : n - used;
            c->skip -= k;
            used += k;
            continue;
        }
        if (c->phase == PH_LINGER && !consumer(c) && !frame_open(c)) {
            if (inbox_waiting(c)) {
                take_inbox(c); /* a receive accepted already is a consumer: never drop for it */
                continue;
            }
            size_t k = linger_skip(c, in + used, n - used);
            if (k == 0)
                break; /* a cut prefix: kept until its rest comes */
            used += k;
            continue;
        }
        if (c->growing) {
            size_t k = grow_feed(c, in + used, n - used);
            if (k == 0)
                break;
            used += k;
            continue;
        }
        if (c->parked) {
            if (!consumer(c))
                break;
            unpark(c);
            continue;
        }
        if (!frame_open(c) && !consumer(c))
            break; /* keep the rest (even a cut prefix) until someone wants a message */
        if (!c->rx_buf && rx_at_boundary(&c->rx)) {
            const uint8_t *p = NULL;
            size_t plen = 0, u = 0;
            tf_step st = tf_frame_split(in + used, n - used, c->cfg.max_recv_len, &p, &plen, &u);
            if (st == TF_DONE) {
                used += u;
                deliver_copy(c, p, plen);
                continue;
            }
            if (st == TF_ERROR) {
                tf__async_fail(c, TF_ERR_TOO_LARGE, 0);
                break;
            }
        }
        if (tf_rx_wants_target(&c->rx, NULL)) {
            if (!bind_target(c))
                break;
            if (c->growing)
                continue;
        }
        size_t u = 0;
        tf_msg msg = {NULL, 0};
        tf_step st = tf_rx_feed(&c->rx, in + used, n - used, &u, &msg);
        used += u;
        if (st == TF_DONE) {
            deliver_bound(c, &msg);
        } else if (st == TF_ERROR) {
            int os = 0;
            tf_err e = tf_rx_error(&c->rx, &os);
            tf__async_fail(c, e, os);
        } else if (!tf_rx_wants_target(&c->rx, NULL)) {
            break; /* all used */
        }
    }
    return used;
}

/* Room for |n| more held bytes after the held ones (the held bytes moved to the front). */
static bool hold_room(tf_async_conn *c, size_t n)
{
    if (c->hold_off > 0) {
        memmove(c->hold, c->hold + c->hold_off, c->hold_len);
        c->hold_off = 0;
    }
    if (c->hold_len + n > c->hold_cap) {
        size_t cap = c->hold_len + n;
        uint8_t *h = realloc(c->hold, cap);
        if (!h)
            return false;
        c->hold = h;
        c->hold_cap = cap;
    }
    return true;
}

static bool hold_append(tf_async_conn *c, const uint8_t *p, size_t n)
{
    if (!hold_room(c, n))
        return false;
    memcpy(c->hold + c->hold_len, p, n);
    c->hold_len += n;
    return true;
}

static void on_eof(tf_async_conn *c);
static void pump_later(tf_async_conn *c);

/* One read of the socket. Returns the bytes read (> 0, counted in the turn); 0 when the caller
 * must return (EOF handled, EAGAIN marked as drained, or the connection failed); -1 to try
 * again (EINTR). */
static ssize_t sock_read(tf_async_conn *c, void *buf, size_t want)
{
    int os = 0;
    long n = c->x.ops->read(c->x.ctx, buf, want, &os);
    if (n > 0) {
        c->turn_bytes += (size_t)n;
        return n;
    }
    if (n == 0) {
        on_eof(c);
    } else if (n == TF_IO_INTR) {
        return -1;
    } else if (n == TF_IO_AGAIN) {
        c->drained = true;
    } else {
        tf_err why = tf__xport_reason(&c->x, TF_ERR_IO, &os); /* may replace os: first */
        tf__async_fail(c, why, os);
    }
    return 0;
}

/* After a short read: true (drained set) when the transport holds nothing more until the fd
 * shows an event; false when it still holds input no event will announce (TLS: the peer's end
 * met behind the bytes just read, with the socket silent after it), which the caller reads at
 * once -- else that end would wait for an event that never comes (attack 5: a close_notify or
 * a bad record behind frames was never reported). */
static bool short_read_drained(tf_async_conn *c)
{
    c->drained = !tf__xport_in_pending(&c->x);
    return c->drained;
}

/* Read while someone wants a message: held bytes first, then the socket. A large rest of a
 * bound frame is read straight into its target. Returns when the socket is drained. */
static void do_read(tf_async_conn *c)
{
    const size_t rbuf = (size_t)c->cfg.read_buffer;
    while (!failed(c) && c->fd >= 0 && !c->mem_wait && !c->abort_pending &&
           (reader_wanted(c) || frame_open(c))) {
        if (c->turn_bytes >= (size_t)c->cfg.io_budget) {
            pump_later(c); /* fairness: the other connections' events first, then more */
            return;
        }
        if (c->parked) {
            if (consumer(c)) {
                unpark(c);
                continue;
            }
            if (c->phase != PH_LINGER)
                return; /* it waits for the next receive or stream */
            free(c->park); /* closing: what nobody asked for is dropped */
            c->park = NULL;
            c->parked = false;
        }
        if (c->hold_len > 0) {
            size_t u = consume(c, c->hold + c->hold_off, c->hold_len);
            if (failed(c))
                return; /* the poison released the hold (its counters are 0 now) */
            c->hold_off += u;
            c->hold_len -= u;
            if (c->hold_len > 0)
                return;
            hold_release(c);
            continue;
        }
        if (c->drained)
            return; /* nothing new since the last short read: epoll will say when */
        if (c->growing && c->glen - c->ggot >= rbuf / 2) {
            /* A large rest is read straight into the growing buffer, which doubles as needed. */
            size_t rest = c->glen - c->ggot;
            if (c->gcap == c->ggot && !grow_room(c, c->ggot + (rest < rbuf ? rest : rbuf)))
                return; /* no memory (poisoned), or the budget is spent (woken when it frees) */
            size_t want = c->gcap - c->ggot;
            ssize_t n = sock_read(c, c->gbuf + c->ggot, want);
            if (n < 0)
                continue; /* EINTR */
            if (n == 0)
                return;
            c->ggot += (size_t)n;
            if (c->ggot == c->glen)
                deliver_grown(c);
            if ((size_t)n < want && short_read_drained(c))
                return;
            continue;
        }
        uint8_t *dst = NULL;
        if (c->rx_buf) {
            size_t want = tf_rx_next(&c->rx, &dst);
            if (want >= rbuf / 2) {
                ssize_t n = sock_read(c, dst, want);
                if (n < 0)
                    continue; /* EINTR */
                if (n == 0)
                    return;
                tf_msg msg = {NULL, 0};
                if (tf_rx_advance(&c->rx, (size_t)n, &msg) == TF_DONE)
                    deliver_bound(c, &msg);
                if ((size_t)n < want && short_read_drained(c))
                    return;
                continue;
            }
        }
        scratch *s = NULL;
        tf_err se = scratch_get(rbuf, &s);
        if (se == TF_ERR_BUSY) {
            pump_later(c); /* another connection up this thread's stack reads into it */
            return;
        }
        if (se != TF_OK) {
            tf__async_fail(c, TF_ERR_NOMEM, 0);
            return;
        }
        ssize_t n = sock_read(c, s->buf, rbuf);
        if (n < 0)
            continue; /* EINTR */
        if (n == 0)
            return;
        s->busy = true;
        size_t u = consume(c, s->buf, (size_t)n);
        s->busy = false;
        if (failed(c))
            return;
        if (u < (size_t)n && !hold_append(c, s->buf + u, (size_t)n - u)) {
            tf__async_fail(c, TF_ERR_NOMEM, 0);
            return;
        }
        if ((size_t)n < rbuf && short_read_drained(c))
            return; /* a full read may have left more; a short one did not */
    }
}

/* ---------------------------------------------------------------- the kernel's stall

 * A connection that reads nothing (nobody wants a message) while its sends wait can be stalled
 * by the kernel (SPEC 9.3, issue 25 item 8): once its receive queue is over its buffer, Linux
 * drops the peer's segments, and from then on every segment of the peer lies beyond our closed
 * window and is dropped unread -- with the ACKs of our data in it. Our sends never drain, so an
 * owner that waits for them before it reads again (a paused echo) waits until the user timeout.
 * So when the sends have made no progress for a whole RELIEF_MS, the connection reads what the
 * socket holds into its hold buffer (a bounded amount: relief_bound): the read reopens its window.
 * Plain transport only: a TLS read processes the records it reads, so a forged record or the
 * peer's close_notify met ahead of time would end the connection (its writes fail with it)
 * before the bytes held are delivered (attack 5). Never the EOF (at most FIONREAD bytes are
 * read, which excludes it), and not while the memory budget holds reading back. */
enum { RELIEF_MS = 200 };

/* How much the relief may hold: enough to reopen the window (Linux keeps it shut while less than
 * 1/16 of the buffer's window space is free), at least 2 * read_buffer. */
static size_t relief_bound(const tf_async_conn *c)
{
    size_t b = 2 * (size_t)c->cfg.read_buffer;
    int rb = 0;
    socklen_t l = sizeof rb;
    if (getsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rb, &l) == 0 && rb > 0 && (size_t)rb / 8 > b)
        b = (size_t)rb / 8; /* the doubled value Linux reports: a quarter of the buffer */
    return b;
}

static bool relief_wanted(const tf_async_conn *c)
{
    /* The bound's getsockopt only once the hold is past the part that needs none. */
    return c->sq_head && c->phase == PH_OPEN && c->fd >= 0 && !failed(c) && !c->abort_pending &&
           c->x.ops == &tf__xport_tcp && !reading(c) && rx_end_of(c) == TF_OK && !c->mem_wait &&
           (c->hold_len < 2 * (size_t)c->cfg.read_buffer || c->hold_len < relief_bound(c));
}

static void relief_read(tf_async_conn *c)
{
    int avail = 0;
    if (ioctl(c->fd, FIONREAD, &avail) != 0 || avail <= 0)
        return;
    size_t room = relief_bound(c) - c->hold_len;
    size_t want = (size_t)avail < room ? (size_t)avail : room;
    if (!hold_room(c, want)) {
        tf__async_fail(c, TF_ERR_NOMEM, 0);
        return;
    }
    ssize_t n = sock_read(c, c->hold + c->hold_len, want);
    if (n <= 0)
        return; /* EINTR (the next tick tries again), or the connection failed */
    c->hold_len += (size_t)n;
    TF__LOG(TF_LOG_DEBUG, "async_conn",
            "%s: sends made no progress for %d ms while nothing was read: read %zd bytes ahead",
            peer_label(c), (int)RELIEF_MS, n);
}

static void relief_tick(tf_evb *evb, void *arg)
{
    (void)evb;
    tf_async_conn *c = arg;
    enter(c);
    tf_evb_timer_release(c->relief_timer);
    c->relief_timer = NULL;
    if (relief_wanted(c) && c->out_bytes == c->relief_mark) {
        c->relief_ticks++;
        relief_read(c);
    }
    if (!failed(c))
        update_interest(c); /* arms the next tick while it is still wanted */
    leave(c);
}

static void relief_arm(tf_async_conn *c)
{
    if (c->relief_timer || !relief_wanted(c))
        return;
    c->relief_mark = c->out_bytes;
    /* Best effort: without the tick (no memory for it) the connection is as it was before. */
    (void)tf_evb_timer_after(c->evb, RELIEF_MS, relief_tick, c, &c->relief_timer);
}

/* The linger ended: the close future gets |result| (OK: the peer closed; TIMEOUT: it did not in
 * time); receives still pending, and later calls, fail with |reason| (CLOSED: the peer closed
 * between messages; TRUNCATED: inside one; TIMEOUT: it never closed). */
static void finish_close(tf_async_conn *c, tf_err result, tf_err reason)
{
    /* The close future gets |result| with everything else pending (fail_pending), also when a
     * callback of that frees the connection first. */
    c->close_over = true;
    c->close_result = result;
    tf__evb_timer_drop(&c->linger_timer);
    tf__async_fail(c, reason, 0);
    close_fd(c);
}

static void on_eof(tf_async_conn *c)
{
    bool clean = rx_at_boundary(&c->rx) && !frame_open(c) && c->hold_len == 0 && c->skip == 0;
    tf_err why = clean ? TF_ERR_CLOSED : TF_ERR_TRUNCATED;
    /* TLS holds our close_notify (a full socket): do_write finishes once it went. */
    if (c->phase == PH_LINGER && tf__xport_out_pending(&c->x))
        atomic_store_explicit(&c->rx_err, (int)why, memory_order_release);
    else if (c->phase == PH_LINGER)
        finish_close(c, TF_OK, why); /* our flush succeeded whatever the peer's last frame */
    else if (clean)
        rx_close(c); /* a half-close: what we still send goes on */
    else
        tf__async_fail(c, why, 0);
}

/* ---------------------------------------------------------------- the pump */

static void pump(tf_async_conn *c)
{
    if (!c->started || c->dead || c->taking > 0)
        return; /* taking the inbox: settle() pumps once it is taken whole */
    if (tf__evb_stopping(c->evb)) {
        /* Work handed over before the stop runs in the drain: it fails with SHUTDOWN instead of
         * moving bytes (a peer on the same loop may already have been shut down). */
        tf__async_fail(c, TF_ERR_SHUTDOWN, 0);
        return;
    }
    if (c->in_pump) {
        c->repump = true;
        return;
    }
    if (c->abort_pending)
        return; /* aborted inside a callback: the abort task cancels what is queued */
    c->in_pump = true;
    c->turn_bytes = 0; /* a new turn: io_budget bytes of reading before the others' turn */
    do {
        c->repump = false;
        if (failed(c) || c->fd < 0 || c->abort_pending)
            break;
        if (c->phase == PH_HANDSHAKE && !hs_step(c))
            break;
        do_write(c);
        do_read(c);
    } while (c->repump && !failed(c) && !c->abort_pending);
    c->in_pump = false;
    if (!failed(c))
        note_frame(c);
    if (!failed(c))
        update_interest(c);
}

static void pump_task(void *arg)
{
    tf_async_conn *c = arg;
    enter(c);
    c->pump_queued = false;
    pump(c);
    leave(c);
    conn_unref(c);
}

static void pump_later(tf_async_conn *c)
{
    if (c->pump_queued)
        return;
    conn_ref(c);
    if (tf_evb_dispatch(c->evb, pump_task, c) != TF_OK) {
        conn_unref(c);
        tf__async_fail(c, TF_ERR_SHUTDOWN, 0);
        return;
    }
    c->pump_queued = true;
}

static void on_fd(tf_evb *evb, int fd, unsigned events, void *arg)
{
    (void)evb;
    (void)fd;
    tf_async_conn *c = arg;
    enter(c);
    c->drained = false;
    if ((events & (TF_EVB_ERROR | TF_EVB_HUP)) && !(events & (TF_EVB_READ | TF_EVB_WRITE)) &&
        c->phase != PH_HANDSHAKE) {
        /* Nothing to read or write, yet an error or hang-up: its reason comes from SO_ERROR or
         * from the read the pump makes. On an errors-only watch (a paused or idle connection)
         * the error ends the connection now -- a reset's unread bytes are abandoned, as a reset
         * abandons them -- and a hang-up without one stops the watch (it would fire again and
         * again; the next read or write finds the end). */
        int e = 0;
        if (tf__sys_so_error(c->fd, &e) == 0 && e != 0)
            tf__async_fail(c, TF_ERR_IO, e);
        else if (c->interest == WATCH_ERRORS)
            c->hup_seen = true;
    }
    pump(c);
    leave(c);
}

/* ---------------------------------------------------------------- timers */

static void op_timeout(tf_evb *evb, void *arg)
{
    (void)evb;
    tf_async_op *op = arg;
    tf_async_conn *c = op->conn;
    enter(c);
    tf_evb_timer_release(op->timer);
    op->timer = NULL;
    bool send = op->kind == OP_SEND;
    bool started = send ? op == c->sq_head && tf_tx_pending(&op->tx) < op->len + TF_HDR_LEN
                        : op == c->rq_head && (frame_open(c) || !rx_at_boundary(&c->rx));
    if (started) {
        tf__async_fail(c, TF_ERR_TIMEOUT, 0); /* part of its frame moved: out of step */
    } else {
        if (send)
            queue_unlink(&c->sq_head, &c->sq_tail, op);
        else
            queue_unlink(&c->rq_head, &c->rq_tail, op);
        op_done(c, op, TF_ERR_TIMEOUT, 0, NULL, 0);
        pump(c);
    }
    leave(c);
}

/* ---------------------------------------------------------------- idle and progress watchdog */

static bool watched(const tf_async_conn *c)
{
    return c->cfg.idle_timeout_ms > 0 || c->cfg.progress_timeout_ms > 0;
}

/* A message of |len| bytes moved (received whole, or sent): the statistics count it, the idle
 * clock starts again; a received one also ends the frame under way. */
static void note_msg(tf_async_conn *c, bool received, size_t len)
{
    tf__stat_add(received ? &c->st_msgs_recv : &c->st_msgs_sent, 1u);
    tf__stat_add(received ? &c->st_bytes_recv : &c->st_bytes_sent, len);
    if (c->cfg.idle_timeout_ms > 0)
        c->last_msg_ns = tf__now_ns();
    if (received)
        c->frame_ns = 0;
}

/* After a read pass: a frame under way starts the progress clock (at most one pass late). */
static void note_frame(tf_async_conn *c)
{
    if (c->cfg.progress_timeout_ms <= 0)
        return;
    bool mid = frame_open(c) || !rx_at_boundary(&c->rx);
    if (!mid || !reading(c))
        c->frame_ns = 0; /* no frame, or we are not reading it (paused, waiting for memory) */
    else if (!c->frame_ns)
        c->frame_ns = tf__now_ns();
}

/* The tick: a quarter of the shorter timeout, so each fires within 1.25 times its value. */
static uint64_t wd_period_ms(const tf_async_conn *c)
{
    int64_t t = INT64_MAX;
    if (c->cfg.idle_timeout_ms > 0)
        t = c->cfg.idle_timeout_ms;
    if (c->cfg.progress_timeout_ms > 0 && c->cfg.progress_timeout_ms < t)
        t = c->cfg.progress_timeout_ms;
    return t >= 4 ? (uint64_t)t / 4 : 1;
}

static void wd_tick(tf_evb *evb, void *arg);

static void wd_arm(tf_async_conn *c)
{
    if (!watched(c) || c->wd_timer || failed(c))
        return;
    if (tf_evb_timer_after(c->evb, wd_period_ms(c), wd_tick, c, &c->wd_timer) != TF_OK)
        tf__async_fail(c, tf__evb_stopping(c->evb) ? TF_ERR_SHUTDOWN : TF_ERR_NOMEM, 0);
}

static void wd_tick(tf_evb *evb, void *arg)
{
    (void)evb;
    tf_async_conn *c = arg;
    enter(c);
    tf_evb_timer_release(c->wd_timer);
    c->wd_timer = NULL;
    uint64_t now = tf__now_ns();
    uint64_t idle = (uint64_t)c->cfg.idle_timeout_ms * 1000000u;
    uint64_t prog = (uint64_t)c->cfg.progress_timeout_ms * 1000000u;
    if (c->phase == PH_OPEN && c->cfg.idle_timeout_ms > 0 && now - c->last_msg_ns >= idle) {
        TF__LOG(TF_LOG_WARN, "async_conn", "%s: dropped: no message for %lld ms (idle_timeout_ms)",
                peer_label(c), (long long)c->cfg.idle_timeout_ms);
        tf__async_fail(c, TF_ERR_TIMEOUT, 0); /* no message either way for idle_timeout_ms */
    } else if (c->phase == PH_OPEN && c->cfg.progress_timeout_ms > 0 && c->frame_ns &&
               now - c->frame_ns >= prog) {
        TF__LOG(TF_LOG_WARN, "async_conn",
                "%s: dropped: a frame stalled for %lld ms (progress_timeout_ms)",
                peer_label(c), (long long)c->cfg.progress_timeout_ms);
        tf__async_fail(c, TF_ERR_TIMEOUT, 0); /* a frame started and stalled */
    } else
        wd_arm(c);
    leave(c);
}

static void hs_timeout(tf_evb *evb, void *arg)
{
    (void)evb;
    tf_async_conn *c = arg;
    enter(c);
    tf_evb_timer_release(c->hs_timer);
    c->hs_timer = NULL;
    if (c->phase == PH_HANDSHAKE)
        tf__async_fail(c, TF_ERR_TIMEOUT, 0);
    leave(c);
}

static void linger_timeout(tf_evb *evb, void *arg)
{
    (void)evb;
    tf_async_conn *c = arg;
    enter(c);
    tf_evb_timer_release(c->linger_timer);
    c->linger_timer = NULL;
    if (c->phase == PH_LINGER)
        finish_close(c, TF_ERR_TIMEOUT, TF_ERR_TIMEOUT);
    leave(c);
}

/* ---------------------------------------------------------------- submission */

/* Queue |op| and try it at once (loop thread). */
static void submit_local(tf_async_conn *c, tf_async_op *op)
{
    if (c->dead || poison_of(c) != TF_OK) {
        int os = 0;
        tf_err e = c->dead ? TF_ERR_CANCELLED : tf_async_conn_error(c, &os);
        op_done(c, op, e, os, NULL, 0);
        return;
    }
    if (op->kind != OP_SEND && rx_end_of(c) != TF_OK) {
        op_done(c, op, rx_end_of(c), 0, NULL, 0);
        return;
    }
    if (op->kind == OP_SEND)
        queue_push(&c->sq_head, &c->sq_tail, op);
    else
        queue_push(&c->rq_head, &c->rq_tail, op);
    if (op->timeout_ms >= 0 &&
        tf_evb_timer_after(c->evb, (uint64_t)op->timeout_ms, op_timeout, op, &op->timer) !=
            TF_OK) {
        if (op->kind == OP_SEND)
            queue_unlink(&c->sq_head, &c->sq_tail, op);
        else
            queue_unlink(&c->rq_head, &c->rq_tail, op);
        op_done(c, op, tf__evb_stopping(c->evb) ? TF_ERR_SHUTDOWN : TF_ERR_NOMEM, 0, NULL, 0);
        return;
    }
    pump(c);
}

static void apply_setting(tf_async_conn *c, int kind, void *cb, void *arg);
static void close_local(tf_async_conn *c, tf_promise *p);

/* Run one admitted item taken from the inbox (loop thread). */
static void run_admitted(tf_async_conn *c, tf_async_op *op)
{
    switch (op->kind) {
    case OP_SEND:
    case OP_RECV:
    case OP_RECV_ALLOC:
        submit_local(c, op);
        return;
    case OP_CLOSE:
        close_local(c, op->promise);
        break;
    default: /* OP_STREAM, OP_WRITABLE, OP_ON_END */
        apply_setting(c, op->kind, (void *)op->buf, op->arg);
        break;
    }
    free(op);
}

/* Run everything other threads admitted so far, in admission order (loop thread). One item is
 * taken at a time, under the lock: a callback run by one item that takes the inbox again (a
 * loop-thread close, stream or free) continues with the next item in order, so nothing
 * admitted later can overtake it, and a free inside a callback cancels the rest at once. */
static void settle(tf_async_conn *c);

static void take_inbox(tf_async_conn *c)
{
    c->taking++;
    for (;;) {
        pthread_mutex_lock(&c->mu);
        tf_async_op *op = queue_pop(&c->in_head, &c->in_tail);
        if (!op)
            c->inbox_queued = false;
        pthread_mutex_unlock(&c->mu);
        if (!op)
            break;
        run_admitted(c, op);
        tf__perturb();
    }
    if (--c->taking == 0)
        settle(c);
}

static void inbox_task(void *arg)
{
    tf_async_conn *c = arg;
    enter(c);
    take_inbox(c);
    leave(c);
    conn_unref(c);
}

/* Off the loop thread, under c->mu: put an admitted item on the inbox; the first onto an empty
 * inbox dispatches the task that takes it. A refusal (SHUTDOWN, NOMEM) leaves nothing behind. */
static tf_err hand_over_locked(tf_async_conn *c, tf_async_op *op)
{
    if (!c->inbox_queued) {
        conn_ref(c);
        tf_err rc = tf_evb_dispatch(c->evb, inbox_task, c);
        if (rc != TF_OK) {
            conn_unref(c); /* never the last: the caller holds the owner's reference */
            return rc;
        }
        c->inbox_queued = true;
    }
    queue_push(&c->in_head, &c->in_tail, op);
    return TF_OK;
}

/* The refusals every submission shares (under c->mu). */
static tf_err refusal_locked(const tf_async_conn *c)
{
    if (c->freeing || c->aborted)
        return TF_ERR_CANCELLED;
    tf_err e = poison_of(c);
    if (e != TF_OK)
        return e;
    if (tf__evb_stopping(c->evb))
        return TF_ERR_SHUTDOWN;
    return TF_OK;
}

/* Decide and count one send or receive (under c->mu). BUSY is exact: the bounds are checked
 * before anything is counted, and the writable mark is set in the same step. */
static tf_err admit_locked(tf_async_conn *c, int kind, size_t len)
{
    tf_err e = refusal_locked(c);
    if (e != TF_OK)
        return e;
    if (kind == OP_SEND) {
        if (c->closing)
            return TF_ERR_BAD_STATE;
        size_t m = c->sq_msgs + 1u;
        size_t bound = (size_t)c->cfg.send_queue_bytes;
        bool over_bytes = c->sq_bytes > bound || len > bound - c->sq_bytes;
        /* A single message larger than the byte bound still goes when nothing else is queued. */
        if ((m > 1 && over_bytes) || m > (size_t)c->cfg.send_queue_msgs) {
            if (!c->st_paused)
                tf__async_pause_begin(c); /* stats: sending is held up from now */
            c->wr_wanted = true;
            return TF_ERR_BUSY;
        }
        c->sq_bytes += len;
        c->sq_msgs = m;
        return TF_OK;
    }
    if (rx_end_of(c) != TF_OK)
        return rx_end_of(c);
    if (c->stream_on)
        return TF_ERR_BAD_STATE;
    if (c->rq_ops + 1u > (size_t)c->cfg.recv_queue_ops)
        return TF_ERR_BUSY;
    c->rq_ops++;
    return TF_OK;
}

/* Fill, admit and hand over one operation. On a refusal nothing is kept. */
static tf_err submit(tf_async_conn *c, tf_async_op *op, int kind, const void *buf, size_t len,
                     int64_t timeout_ms)
{
    op->next = NULL;
    op->conn = c;
    op->kind = kind;
    op->buf = (uint8_t *)(uintptr_t)buf;
    op->len = len;
    op->timer = NULL;
    op->timeout_ms = timeout_ms;
    if (kind == OP_SEND) {
        tf_tx_init(&op->tx, c->cfg.max_send_len);
        if (len > c->cfg.max_send_len)
            return TF_ERR_TOO_LARGE;
        tf_tx_begin(&op->tx, op->buf, len);
    }
    bool local = tf_evb_in_loop_thread(c->evb);
    tf__perturb(); /* test builds: widen the windows around the admission point */
    pthread_mutex_lock(&c->mu);
    tf_err rc = admit_locked(c, kind, len);
    if (rc == TF_OK && !local) {
        rc = hand_over_locked(c, op);
        if (rc != TF_OK)
            uncount_locked(c, kind, len);
    }
    pthread_mutex_unlock(&c->mu);
    tf__perturb();
    if (rc == TF_OK && local) {
        enter(c);
        submit_local(c, op);
        leave(c);
    }
    return rc;
}

/* Future style: a library-owned op carrying the promise. */
static tf_err submit_future(tf_async_conn *c, int kind, const void *buf, size_t len,
                            tf_dtor dtor, int64_t timeout_ms, tf_future **out)
{
    if (out)
        *out = NULL;
    if (!c || !out || (!buf && len > 0))
        return TF_ERR_INVALID_ARGUMENT;
    /* The op is part of its promise's shared state: one allocation per operation (none when
     * the thread's cache of states has one: io/future.c). */
    _Static_assert(sizeof(tf_async_op) <= 192, "tf__promise_new_with holds at most 192 bytes");
    tf_async_op *op = NULL;
    tf_promise *p = NULL;
    tf_future *f = NULL;
    if (tf__promise_new_with(sizeof *op, &p, &f, (void **)&op) != TF_OK)
        return TF_ERR_NOMEM;
    op->promise = p;
    op->dtor = dtor;
    op->cb = NULL;
    op->arg = NULL;
    tf_err rc = submit(c, op, kind, buf, len, timeout_ms);
    if (rc != TF_OK) {
        tf__promise_mem_done(op, sizeof *op);
        tf_promise_set(p, rc, 0, NULL, NULL);
        tf_promise_free(p);
        tf_future_free(f); /* the op's memory goes with the state */
        return rc;
    }
    *out = f;
    return TF_OK;
}

static tf_err submit_cb(tf_async_conn *c, tf_async_op *op, int kind, const void *buf, size_t len,
                        int64_t timeout_ms, tf_async_cb cb, void *arg)
{
    if (!c || !op || !cb || (!buf && len > 0))
        return TF_ERR_INVALID_ARGUMENT;
    op->promise = NULL;
    op->dtor = NULL;
    op->cb = cb;
    op->arg = arg;
    return submit(c, op, kind, buf, len, timeout_ms);
}

tf_err tf_async_conn_send(tf_async_conn *c, const void *buf, size_t len, int64_t timeout_ms,
                          tf_future **out)
{
    return submit_future(c, OP_SEND, buf, len, NULL, timeout_ms, out);
}

tf_err tf_async_conn_send_op(tf_async_conn *c, tf_async_op *op, const void *buf, size_t len,
                             int64_t timeout_ms, tf_async_cb cb, void *arg)
{
    return submit_cb(c, op, OP_SEND, buf, len, timeout_ms, cb, arg);
}

tf_err tf_async_conn_send_owned(tf_async_conn *c, void *buf, size_t len, tf_dtor dtor,
                                int64_t timeout_ms, tf_future **out)
{
    if (!dtor) {
        if (out)
            *out = NULL;
        return TF_ERR_INVALID_ARGUMENT;
    }
    return submit_future(c, OP_SEND, buf, len, dtor, timeout_ms, out);
}

tf_err tf_async_conn_recv(tf_async_conn *c, void *buf, size_t cap, int64_t timeout_ms,
                          tf_future **out)
{
    return submit_future(c, OP_RECV, buf, cap, NULL, timeout_ms, out);
}

tf_err tf_async_conn_recv_op(tf_async_conn *c, tf_async_op *op, void *buf, size_t cap,
                             int64_t timeout_ms, tf_async_cb cb, void *arg)
{
    return submit_cb(c, op, OP_RECV, buf, cap, timeout_ms, cb, arg);
}

tf_err tf_async_conn_recv_alloc(tf_async_conn *c, int64_t timeout_ms, tf_future **out)
{
    return submit_future(c, OP_RECV_ALLOC, NULL, 0, NULL, timeout_ms, out);
}

tf_err tf_async_conn_recv_alloc_op(tf_async_conn *c, tf_async_op *op, int64_t timeout_ms,
                                   tf_async_cb cb, void *arg)
{
    return submit_cb(c, op, OP_RECV_ALLOC, NULL, 0, timeout_ms, cb, arg);
}

/* ---------------------------------------------------------------- settings and close */

/* Record a setting taken from the inbox. What it causes waits for settle(), when the whole
 * inbox has been taken: settings made one after the other (inside a callback, or by another
 * thread) act as their last one, so a callback set and then removed again is never called. */
static void apply_setting(tf_async_conn *c, int kind, void *cb, void *arg)
{
    if (kind == OP_WRITABLE) {
        c->wr_cb = (tf_async_writable_cb)(uintptr_t)cb;
        c->wr_arg = arg;
    } else if (kind == OP_ON_END) {
        if ((tf_async_end_cb)(uintptr_t)cb != c->end_cb || arg != c->end_arg)
            c->end_told = false; /* a new callback hears of the end once too */
        c->end_cb = (tf_async_end_cb)(uintptr_t)cb;
        c->end_arg = arg;
    } else {
        c->stream_cb = (tf_async_msg_cb)(uintptr_t)cb;
        c->stream_arg = arg;
    }
}

/* After the inbox was taken (loop thread): the effects of what it held, as of its final state:
 * a stream started on a connection that failed (or whose receive direction ended) ends at once
 * with the reason; the end notification of a connection over already; the pump (writes,
 * reads, deliveries); the writable callback. */
static void settle(tf_async_conn *c)
{
    if (c->stream_cb && !c->abort_pending && (failed(c) || rx_end_of(c) != TF_OK)) {
        int os = 0;
        tf_err e = c->dead ? TF_ERR_CANCELLED : tf_async_conn_error(c, &os);
        if (e == TF_OK)
            e = rx_end_of(c);
        tf_async_msg_cb scb = c->stream_cb;
        c->stream_cb = NULL;
        scb(c, e, os, NULL, 0, c->stream_arg);
    }
    tell_end(c);
    pump(c);
    if (!failed(c) && !c->in_pump && c->started)
        update_interest(c);
    writable_check(c);
}

/* Admit a setting or a close (kind OP_STREAM, OP_WRITABLE, OP_CLOSE) and run it: at once on
 * the loop thread (after what other threads admitted before it), else through the inbox.
 * |check| decides under the lock (NULL: only the stop refuses); |commit| records it there. */
static tf_err admit_item(tf_async_conn *c, int kind, void *cb, void *arg, tf_promise *p,
                         tf_err (*check)(tf_async_conn *c, void *cb),
                         void (*commit)(tf_async_conn *c, void *cb))
{
    /* Every setting and close goes through the inbox, in admission order with whatever other
     * threads admitted before and after it (a direct application on the loop thread would run
     * after items admitted later, which its own inbox take picks up). On the loop thread, outside
     * the connection's callbacks, the inbox is then taken at once: the item has acted when the
     * call returns. Inside a callback of this connection (the loop thread within one of its
     * entries) what the item causes (a stream's end call, the writable or end callback, the
     * close's failures) must not run nested in that callback, so the inbox is taken when the
     * callback has returned; a stream being stopped there stops at once too (no later message
     * reaches it), and again in its turn. */
    bool local = tf_evb_in_loop_thread(c->evb);
    bool nested = local && c->depth > 0;
    tf_async_op *op = tf__alloc(sizeof *op);
    if (!op)
        return TF_ERR_NOMEM;
    tf__perturb();
    pthread_mutex_lock(&c->mu);
    tf_err rc = check ? check(c, cb) : tf__evb_stopping(c->evb) ? TF_ERR_SHUTDOWN : TF_OK;
    if (rc == TF_OK) {
        op->kind = kind;
        op->buf = (uint8_t *)cb;
        op->arg = arg;
        op->promise = p;
        if (local && !nested)
            queue_push(&c->in_head, &c->in_tail, op); /* taken below, on this thread */
        else
            rc = hand_over_locked(c, op);
    }
    if (rc == TF_OK && commit)
        commit(c, cb);
    pthread_mutex_unlock(&c->mu);
    if (rc != TF_OK) {
        free(op);
        return rc;
    }
    if (nested && kind == OP_STREAM && !cb) {
        c->stream_cb = NULL; /* stopped now: the stream's callback is not called again */
        c->stream_arg = arg;
    } else if (local && !nested) {
        enter(c);
        take_inbox(c); /* everything admitted up to and including this item */
        leave(c);
    }
    return TF_OK;
}

static tf_err stream_check(tf_async_conn *c, void *cb)
{
    tf_err e = refusal_locked(c);
    if (e == TF_OK && cb && rx_end_of(c) != TF_OK)
        e = rx_end_of(c);
    if (e == TF_OK && cb && (c->stream_on || c->rq_ops > 0))
        e = TF_ERR_BAD_STATE;
    return e;
}

static void stream_commit(tf_async_conn *c, void *cb)
{
    c->stream_on = cb != NULL;
}

tf_err tf_async_conn_stream(tf_async_conn *c, tf_async_msg_cb cb, void *arg)
{
    if (!c)
        return TF_ERR_INVALID_ARGUMENT;
    return admit_item(c, OP_STREAM, (void *)(uintptr_t)cb, arg, NULL, stream_check,
                      stream_commit);
}

tf_err tf_async_conn_on_writable(tf_async_conn *c, tf_async_writable_cb cb, void *arg)
{
    if (!c)
        return TF_ERR_INVALID_ARGUMENT;
    return admit_item(c, OP_WRITABLE, (void *)(uintptr_t)cb, arg, NULL, NULL, NULL);
}

tf_err tf_async_conn_on_end(tf_async_conn *c, tf_async_end_cb cb, void *arg)
{
    if (!c)
        return TF_ERR_INVALID_ARGUMENT;
    return admit_item(c, OP_ON_END, (void *)(uintptr_t)cb, arg, NULL, NULL, NULL);
}

/* The close, on the loop thread, after every send admitted before it was queued. */
static void close_local(tf_async_conn *c, tf_promise *p)
{
    if (failed(c)) {
        /* Failed before the close: the socket is released now. A peer that closed cleanly
         * between messages (CLOSED) left nothing undone: that close succeeds. */
        int os = 0;
        tf_err e = c->dead ? TF_ERR_CANCELLED : tf_async_conn_error(c, &os);
        if (!c->dead)
            close_fd(c);
        if (e == TF_ERR_CLOSED)
            tf_promise_set(p, TF_OK, 0, NULL, NULL);
        else
            tf_promise_fail(p, e, os);
        tf_promise_free(p);
        return;
    }
    c->close_promise = p;
    c->flushing = true;
    if (c->phase == PH_OPEN && !c->sq_head)
        start_linger(c);
    pump(c);
}

static tf_err close_check(tf_async_conn *c, void *cb)
{
    (void)cb;
    if (tf__evb_stopping(c->evb))
        return TF_ERR_SHUTDOWN;
    return c->closing ? TF_ERR_BAD_STATE : TF_OK;
}

static void close_commit(tf_async_conn *c, void *cb)
{
    (void)cb;
    c->closing = true;
}

tf_err tf_async_conn_close(tf_async_conn *c, tf_future **out)
{
    if (out)
        *out = NULL;
    if (!c || !out)
        return TF_ERR_INVALID_ARGUMENT;
    tf_promise *p;
    tf_future *f;
    if (tf_promise_new(&p, &f) != TF_OK)
        return TF_ERR_NOMEM;
    tf_err rc = admit_item(c, OP_CLOSE, NULL, NULL, p, close_check, close_commit);
    if (rc != TF_OK) {
        tf_promise_free(p);
        tf_future_free(f);
        return rc;
    }
    *out = f;
    return TF_OK;
}

/* ---------------------------------------------------------------- abort, free, stop */

static void abort_task(void *arg)
{
    tf_async_conn *c = arg;
    enter(c);
    if (!c->dead && c->fd >= 0) {
        struct linger l = {.l_onoff = 1, .l_linger = 0};
        set_interest(c, 0);
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        close(c->fd); /* with linger 0: the peer gets a reset */
        c->fd = -1;
    }
    tf__async_fail(c, TF_ERR_CANCELLED, 0);
    /* Later submissions fail with CANCELLED (SPEC 9.7), whatever failed the connection first. */
    atomic_store_explicit(&c->os_err, 0, memory_order_relaxed);
    atomic_store_explicit(&c->err, (int)TF_ERR_CANCELLED, memory_order_release);
    take_inbox(c);
    leave(c);
    conn_unref(c);
}

tf_err tf_async_conn_abort(tf_async_conn *c)
{
    if (!c)
        return TF_ERR_INVALID_ARGUMENT;
    pthread_mutex_lock(&c->mu);
    c->aborted = true; /* from this return on, submissions fail with CANCELLED */
    pthread_mutex_unlock(&c->mu);
    conn_ref(c);
    /* Inside a callback of the connection the abort runs when that callback has returned, so
     * that the cancellations it causes are never nested in it (async.h). */
    bool nested = tf_evb_in_loop_thread(c->evb) && c->depth > 0;
    if (nested)
        c->abort_pending = true; /* from now on nothing is read, delivered or written */
    tf_err rc = nested ? tf_evb_dispatch(c->evb, abort_task, c)
                       : tf_evb_dispatch_inline(c->evb, abort_task, c);
    if (rc != TF_OK)
        conn_unref(c);
    return rc == TF_ERR_SHUTDOWN ? TF_OK : rc; /* a stopped loop failed everything already */
}

/* The last step, on the loop thread (or after the loop stopped): the loop lets go of the fd,
 * then it is closed, then the owner's reference goes. Runs once. The stop hook is removed
 * whether or not the loop is stopping: the stop drain may still walk the list (removal is
 * idempotent, and after the drain every hook is unlinked already). */
static void finalize(tf_async_conn *c)
{
    if (c->finalized)
        return;
    c->finalized = true;
    if (c->started)
        tf__evb_hook_remove(c->evb, &c->hook);
    tf__evb_timer_drop(&c->hs_timer);
    tf__evb_timer_drop(&c->linger_timer);
    tf__evb_timer_drop(&c->wd_timer);
    tf__evb_timer_drop(&c->relief_timer);
    rx_unbind(c);
    grow_reset(c);
    budget_give(c, true);
    tf__evsink_unref(c->sink);
    c->sink = NULL;
    if (c->budget)
        tf__mem_budget_gone(c->budget, c->evb);
    close_fd(c);
    conn_unref(c);
}

static void free_task(void *arg)
{
    tf_async_conn *c = arg;
    enter(c);
    c->dead = true;
    tf__async_fail(c, TF_ERR_CANCELLED, 0);
    /* Failed before (maybe this free runs inside a callback of that failure, whose loop still
     * holds operations): complete them now, inside the free. */
    fail_pending(c, TF_ERR_CANCELLED, 0);
    take_inbox(c); /* admitted but not yet taken: each completes with CANCELLED */
    leave(c);
}

void tf_async_conn_free(tf_async_conn *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    c->freeing = true;
    pthread_mutex_unlock(&c->mu);
    tf_evb *evb = c->evb;
    tf_err rc = tf__evb_teardown_wait(evb, free_task, c); /* also from another loop's thread */
    if (rc == TF_OK)
        return;
    /* The loop is stopping: once it has stopped (its stop hook failed everything with
     * SHUTDOWN and it dropped every watch), nothing else touches the connection. */
    tf__evb_wait_stopped(evb);
    c->dead = true;
    c->interest = 0;
    take_inbox(c);
    finalize(c);
}

/* The loop stops: everything in flight fails with SHUTDOWN. */
static void on_stop(void *arg)
{
    tf_async_conn *c = arg;
    enter(c);
    tf__async_fail(c, TF_ERR_SHUTDOWN, 0);
    take_inbox(c);
    leave(c);
}

/* ---------------------------------------------------------------- creation */

static const tf_conn_ops async_ops;

static void start(tf_async_conn *c)
{
    c->started = true;
    tf__evb_hook_add(c->evb, &c->hook, on_stop, c);
    if (tf__evb_stopping(c->evb)) {
        tf__async_fail(c, TF_ERR_SHUTDOWN, 0);
        return;
    }
    if (c->cfg.handshake || !c->x.hs_done) {
        c->phase = PH_HANDSHAKE;
        if (c->cfg.handshake_timeout_ms >= 0 &&
            tf_evb_timer_after(c->evb, (uint64_t)c->cfg.handshake_timeout_ms, hs_timeout, c,
                               &c->hs_timer) != TF_OK) {
            tf__async_fail(c, tf__evb_stopping(c->evb) ? TF_ERR_SHUTDOWN : TF_ERR_NOMEM, 0);
            return;
        }
    } else {
        c->phase = PH_OPEN;
        c->last_msg_ns = tf__now_ns();
        wd_arm(c);
        if (c->ready_fn) {
            tf__async_ready_fn fn = c->ready_fn;
            c->ready_fn = NULL;
            fn(c, TF_OK, 0, c->ready_arg);
        }
    }
    if (c->flushing && c->phase == PH_OPEN && !c->sq_head && !failed(c))
        start_linger(c);
    pump(c);
}

static void start_task(void *arg)
{
    tf_async_conn *c = arg;
    enter(c);
    if (!c->dead)
        start(c);
    leave(c);
    conn_unref(c);
}

tf_err tf__async_conn_new(tf_evb *evb, int fd, const tf_tcp_config *cfg, tf__mem_budget *budget,
                          bool server, tf__async_ready_fn fn, void *arg, tf_async_conn **out)
{
    *out = NULL;
    tf_async_conn *c = tf__calloc(1, sizeof *c);
    if (!c)
        return TF_ERR_NOMEM;
    c->base.ops = &async_ops;
    c->evb = evb;
    c->cfg = *cfg;
    atomic_init(&c->refs, 1u);
    int xos = 0;
    tf_err xe = tf__xport_open(&c->x, &c->fdio, fd, cfg, server, &xos);
    if (xe != TF_OK) {
        free(c);
        errno = xos;
        return xe;
    }
    if (pthread_mutex_init(&c->mu, NULL) != 0) {
        tf__xport_close(&c->x);
        free(c);
        return TF_ERR_NOMEM;
    }
    /* The peer's name now, while fd is surely ours: later it may be closed (and its number
     * reused) by the loop at any time. */
    c->peer_rc = tf__sock_name(fd, true, c->peer, sizeof c->peer);
    int cos = 0;
    c->cred_rc = tf__peer_cred(fd, &c->cred, &cos);
    if (budget) {
        atomic_fetch_add_explicit(&budget->refs, 1u, memory_order_relaxed);
        c->budget = budget;
    }
    c->fd = fd;
    c->phase = PH_NEW;
    c->ready_fn = fn;
    c->ready_arg = arg;
    tf_hs_init(&c->hs);
    tf_rx_init(&c->rx, cfg->max_recv_len);
    *out = c;
    if (tf_evb_in_loop_thread(evb)) {
        enter(c);
        start(c);
        leave(c);
        return TF_OK;
    }
    conn_ref(c);
    tf_err rc = tf_evb_dispatch(evb, start_task, c);
    if (rc != TF_OK) {
        *out = NULL;
        tf__mem_budget_unref(c->budget);
        tf__xport_close(&c->x);
        pthread_mutex_destroy(&c->mu);
        free(c);
    }
    return rc;
}

tf_err tf_async_conn_from_fd(tf_evb *evb, int fd, const tf_tcp_config *cfg, tf_async_conn **out,
                             tf_errmsg *msg)
{
    if (out)
        *out = NULL;
    tf__errmsg_clear(msg);
    if (!evb || fd < 0 || !out)
        return TF_ERR_INVALID_ARGUMENT;
    tf_tcp_config conf;
    tf_err rc = tf__config_load(&conf, cfg, msg);
    if (rc != TF_OK)
        return rc;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        tf__errmsg(msg, "fcntl O_NONBLOCK on fd %d: %s", fd, strerror(errno));
        return TF_ERR_INVALID_ARGUMENT;
    }
    int os = 0;
    if (tf__sock_apply(fd, &conf, true, &os, msg) != TF_OK)
        return TF_ERR_INVALID_ARGUMENT;
    return tf__async_conn_new(evb, fd, &conf, NULL, false, NULL, NULL, out);
}

/* ---------------------------------------------------------------- small accessors */

void tf__async_conn_dtor(void *p)
{
    tf_async_conn_free(p);
}

tf_err tf_async_conn_peer(const tf_async_conn *c, char *buf, size_t len)
{
    if (!c || !buf)
        return TF_ERR_INVALID_ARGUMENT;
    if (len > 0)
        buf[0] = '\0';
    if (c->peer_rc != TF_OK)
        return c->peer_rc;
    size_t n = strlen(c->peer);
    if (n + 1 > len)
        return TF_ERR_BUFFER_TOO_SMALL;
    memcpy(buf, c->peer, n + 1);
    return TF_OK;
}

tf_err tf_async_conn_peer_cred(const tf_async_conn *c, tf_peer_cred *out)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!c || !out)
        return TF_ERR_INVALID_ARGUMENT;
    if (c->cred_rc == TF_OK)
        *out = c->cred;
    return c->cred_rc;
}

size_t tf__async_conn_held(const tf_async_conn *c, size_t *cap)
{
    *cap = c->hold_cap;
    return c->hold_len;
}

unsigned tf__async_conn_relief_ticks(const tf_async_conn *c, bool *armed)
{
    *armed = c->relief_timer != NULL;
    return c->relief_ticks;
}

tf_evb *tf_async_conn_evb(const tf_async_conn *c)
{
    return c ? c->evb : NULL;
}

tf_conn *tf_async_conn_base(tf_async_conn *c)
{
    return c ? &c->base : NULL;
}

/* ---------------------------------------------------------------- the generic view */

static tf_async_conn *of_base(tf_conn *b)
{
    return (tf_async_conn *)(void *)b;
}

static tf_err g_send(tf_conn *b, const void *buf, size_t len, int64_t timeout_ms,
                     tf_future **out)
{
    return tf_async_conn_send(of_base(b), buf, len, timeout_ms, out);
}

static tf_err g_recv(tf_conn *b, void *buf, size_t cap, int64_t timeout_ms, tf_future **out)
{
    return tf_async_conn_recv(of_base(b), buf, cap, timeout_ms, out);
}

static tf_err g_recv_alloc(tf_conn *b, int64_t timeout_ms, tf_future **out)
{
    return tf_async_conn_recv_alloc(of_base(b), timeout_ms, out);
}

static tf_err g_close(tf_conn *b, tf_future **out)
{
    return tf_async_conn_close(of_base(b), out);
}

static tf_err g_error(const tf_conn *b, int *os_err)
{
    return tf_async_conn_error((const tf_async_conn *)(const void *)b, os_err);
}

static void g_free(tf_conn *b)
{
    tf_async_conn_free(of_base(b));
}

static const tf_conn_ops async_ops = {g_send, g_recv, g_recv_alloc, g_close, g_error, g_free};

/* The connection's transport (tls/ reads the peer's identity from it; its ops and context do
 * not change after creation). */
const tf__xport *tf__async_conn_xport(const tf_async_conn *c)
{
    return &c->x;
}
