/* io/async_conn.c -- tf_async_conn: a framed TCP connection on a tf_evb loop (async.h,
 * SPEC 9.7).
 *
 * Ownership of state. Everything below "loop thread only" in struct tf_async_conn is touched
 * only on the loop thread. Other threads touch the atomics (poison, flags, queue counters,
 * refs) and hand operations to the loop with tf_evb_dispatch; each such hand-off holds a
 * reference, so the memory outlives every queued task even when the connection is freed from
 * its own callback meanwhile.
 *
 * The pump. Every loop-thread entry (fd event, timer, submission, hook) goes through
 * enter()/leave(). pump() runs the handshake, then writes (one sendmsg over the queued frames),
 * then reads; callbacks run inside it, and work they submit is queued and picked up by the
 * pump's next round, never by a nested pump. The connection is destroyed only when the
 * outermost leave() finds it dead.
 *
 * Reads. A read goes into a per-thread scratch buffer; complete frames in it are delivered from
 * there (tf_frame_split: a view for the message stream, one copy into a span or an exact
 * allocation); a frame cut at the end of the buffer is handed to the tf_rx machine with its
 * target bound (the head receive's span or allocation), and a large rest is read straight into
 * that target. Bytes nobody asked for yet wait in a small per-connection hold buffer, and the
 * socket is read only while someone wants a message: an idle connection holds no buffer.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "async_internal.h"
#include "tcpframe/fdio.h"

#ifndef IOV_MAX
#define IOV_MAX 1024
#endif

enum { OP_SEND = 1, OP_RECV = 2, OP_RECV_ALLOC = 3 };
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

/* The calling thread's read buffer of at least |cap| bytes, or NULL (no memory, or in use by a
 * connection further up this thread's stack). */
static scratch *scratch_get(size_t cap)
{
    pthread_once(&scratch_once, scratch_init);
    scratch *s = pthread_getspecific(scratch_key);
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s || pthread_setspecific(scratch_key, s) != 0) {
            free(s);
            return NULL;
        }
    }
    if (s->busy)
        return NULL;
    if (s->cap < cap) {
        uint8_t *b = realloc(s->buf, cap);
        if (!b)
            return NULL;
        s->buf = b;
        s->cap = cap;
    }
    return s;
}

/* ---------------------------------------------------------------- references, poison */

static void finalize(tf_async_conn *c);

static void conn_unref(tf_async_conn *c)
{
    if (atomic_fetch_sub_explicit(&c->refs, 1u, memory_order_acq_rel) == 1u) {
        free(c->hold);
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

/* ---------------------------------------------------------------- fd interest */

static void on_fd(tf_evb *evb, int fd, unsigned events, void *arg);

/* Watch the socket for exactly |want| (0: not at all, so no error or hang-up event can spin
 * while nobody reads). */
static void set_interest(tf_async_conn *c, unsigned want)
{
    if (c->fd < 0 || want == c->interest)
        return;
    tf_err rc = want ? tf_evb_register_fd(c->evb, c->fd, want, on_fd, c)
                     : tf_evb_unregister_fd(c->evb, c->fd);
    int e = errno;
    if (rc == TF_OK && (want & TF_EVB_READ) && !(c->interest & TF_EVB_READ))
        c->drained = false; /* a new watch: let the next pump look */
    c->interest = rc == TF_OK ? want : 0;
    if (rc != TF_OK && want)
        tf__async_fail(c, rc, rc == TF_ERR_IO ? e : 0);
}

static bool reader_wanted(const tf_async_conn *c)
{
    return c->rq_head || c->stream_cb || c->phase == PH_LINGER;
}

static void update_interest(tf_async_conn *c)
{
    unsigned want = 0;
    if (c->phase == PH_HANDSHAKE) {
        unsigned w = tf_hs_wants(&c->hs);
        want = ((w & TF_WANT_READ) ? TF_EVB_READ : 0u) | ((w & TF_WANT_WRITE) ? TF_EVB_WRITE : 0u);
    } else if (c->phase == PH_OPEN || c->phase == PH_LINGER) {
        if (c->sq_head)
            want |= TF_EVB_WRITE;
        if (reader_wanted(c))
            want |= TF_EVB_READ;
    }
    set_interest(c, want);
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
    if (!c->wr_cb || failed(c) || !atomic_load_explicit(&c->wr_wanted, memory_order_acquire))
        return;
    if (atomic_load_explicit(&c->sq_bytes, memory_order_acquire) > (size_t)c->cfg.send_low_water)
        return;
    atomic_store_explicit(&c->wr_wanted, false, memory_order_release);
    c->wr_cb(c, c->wr_arg);
}

/* Complete |op| (no longer queued) with its outcome: counters, timer, then the future or the
 * callback. For an allocating receive, |data| is the message buffer, owned by the receiver
 * from here on. */
static void op_done(tf_async_conn *c, tf_async_op *op, tf_err err, int os_err, uint8_t *data,
                    size_t len)
{
    tf__evb_timer_drop(&op->timer);
    bool send = op->kind == OP_SEND;
    if (send) {
        atomic_fetch_sub_explicit(&c->sq_bytes, op->len, memory_order_acq_rel);
        atomic_fetch_sub_explicit(&c->sq_msgs, 1u, memory_order_acq_rel);
        data = op->buf;
        len = op->len;
        if (op->dtor) {
            op->dtor(op->buf);
            data = NULL;
        }
    } else {
        atomic_fetch_sub_explicit(&c->rq_ops, 1u, memory_order_acq_rel);
    }
    if (err != TF_OK && !send)
        len = 0;
    if (op->promise) {
        tf_promise *p = op->promise;
        bool owned = op->kind == OP_RECV_ALLOC && data;
        free(op);
        if (err == TF_OK)
            tf_promise_set(p, err, len, owned ? data : NULL, owned ? free : NULL);
        else
            tf_promise_fail(p, err, os_err);
        tf_promise_free(p);
    } else {
        op->cb(c, op, err, os_err, data, len, op->arg);
    }
    if (send)
        writable_check(c);
}

/* ---------------------------------------------------------------- poison */

/* The receive target bound to rx belongs to us (stream buffer, allocating receive): free it. */
static void rx_unbind(tf_async_conn *c)
{
    if (!c->rx_buf)
        return;
    if (c->rx_stream || (c->rq_head && c->rq_head->kind == OP_RECV_ALLOC))
        free(c->rx_buf);
    c->rx_buf = NULL;
    c->rx_stream = false;
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
    rx_unbind(c);
    tf_rx_abandon(&c->rx);
    c->hold_off = c->hold_len = 0;
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
        tf_promise_fail(p, err, os_err);
        tf_promise_free(p);
    }
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

/* One handshake step. True when the connection is open for frames. */
static bool hs_step(tf_async_conn *c)
{
    tf_step st = tf_hs_try(&c->hs, tf_fdio_io(&c->fdio));
    if (st == TF_AGAIN)
        return false;
    if (st == TF_ERROR) {
        int os = 0;
        tf_err e = tf_hs_error(&c->hs, &os);
        tf__async_fail(c, e, os);
        return false;
    }
    tf__evb_timer_drop(&c->hs_timer);
    c->phase = PH_OPEN;
    if (c->ready_fn) {
        tf__async_ready_fn fn = c->ready_fn;
        c->ready_fn = NULL;
        fn(c, TF_OK, 0, c->ready_arg);
    }
    return !failed(c);
}

/* ---------------------------------------------------------------- writing */

static void linger_timeout(tf_evb *evb, void *arg);

/* Flush done: shut our side down and wait for the peer's close. */
static void start_linger(tf_async_conn *c)
{
    if (shutdown(c->fd, SHUT_WR) != 0) {
        /* ENOTCONN: the peer reset the connection before we noticed; SO_ERROR says so. */
        int e = errno, so = 0;
        socklen_t l = sizeof so;
        if (e == ENOTCONN && getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &so, &l) == 0 && so != 0)
            e = so;
        tf__async_fail(c, TF_ERR_IO, e);
        return;
    }
    c->phase = PH_LINGER;
    if (c->cfg.linger_ms >= 0 &&
        tf_evb_timer_after(c->evb, (uint64_t)c->cfg.linger_ms, linger_timeout, c,
                           &c->linger_timer) != TF_OK)
        tf__async_fail(c, TF_ERR_NOMEM, 0);
}

/* Hand the bytes the kernel took to the queued frames, completing those that are out. */
static void write_advance(tf_async_conn *c, size_t n)
{
    while (n > 0 && c->sq_head && !failed(c)) {
        tf_async_op *op = c->sq_head;
        size_t p = tf_tx_pending(&op->tx);
        size_t k = p < n ? p : n;
        n -= k;
        if (tf_tx_advance(&op->tx, k) == TF_DONE) {
            queue_pop(&c->sq_head, &c->sq_tail);
            op_done(c, op, TF_OK, 0, NULL, 0);
        }
    }
}

/* Write queued frames until the queue is empty or the socket is full: one sendmsg gathers the
 * rest of every queued frame (prefix and payload pieces from each tf_tx), up to IOV_MAX. */
static void do_write(tf_async_conn *c)
{
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
        struct msghdr mh = {.msg_iov = v, .msg_iovlen = (size_t)k};
        ssize_t n = tf__sys_sendmsg(c->fd, &mh, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                tf__async_fail(c, TF_ERR_IO, errno);
            return;
        }
        write_advance(c, (size_t)n);
        if ((size_t)n < total)
            return; /* the socket buffer is full: wait for writability */
    }
    if (!failed(c) && c->flushing && c->phase == PH_OPEN && !c->sq_head)
        start_linger(c);
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

/* Deliver the message rx completed in its bound target. */
static void deliver_bound(tf_async_conn *c, const tf_msg *msg)
{
    uint8_t *buf = c->rx_buf;
    c->rx_buf = NULL;
    if (c->rx_stream) {
        c->rx_stream = false;
        if (c->rx_stream_cb)
            c->rx_stream_cb(c, TF_OK, 0, msg->data, msg->len, c->rx_stream_arg);
        free(buf);
        return;
    }
    if (!buf && c->stream_cb) {
        /* An empty frame whose prefix was cut between reads completes in rx without a target
         * ever bound: it is the stream's (there is no receive to pop). */
        c->stream_cb(c, TF_OK, 0, NULL, 0, c->stream_arg);
        return;
    }
    tf_async_op *op = queue_pop(&c->rq_head, &c->rq_tail);
    op_done(c, op, TF_OK, 0, msg->data, msg->len);
}

/* Give rx the target for the frame whose prefix it decoded: the head receive's span or an
 * allocation of the exact length. False if nobody wants a message now, or on failure
 * (BUFFER_TOO_SMALL, NOMEM: poisoned). */
static bool bind_target(tf_async_conn *c)
{
    size_t len = 0;
    tf_rx_wants_target(&c->rx, &len);
    uint8_t *buf;
    size_t cap = len;
    bool ours = true;
    if (c->stream_cb) {
        buf = tf__alloc(len);
        c->rx_stream_cb = c->stream_cb;
        c->rx_stream_arg = c->stream_arg;
    } else if (c->rq_head) {
        tf_async_op *op = c->rq_head;
        ours = op->kind == OP_RECV_ALLOC;
        buf = ours ? tf__malloc(len) : op->buf;
        cap = ours ? len : op->len;
    } else {
        return false;
    }
    tf_err e = tf_rx_set_target(&c->rx, buf, cap);
    if (e != TF_OK) {
        if (ours)
            free(buf);
        tf__async_fail(c, e, 0);
        return false;
    }
    c->rx_buf = buf;
    c->rx_stream = c->stream_cb != NULL;
    return true;
}

/* Deliver every message in in[0..n) that someone wants; returns the bytes used. */
static size_t consume(tf_async_conn *c, const uint8_t *in, size_t n)
{
    size_t used = 0;
    while (used < n && !failed(c)) {
        if (c->phase == PH_LINGER && !consumer(c) && !c->rx_buf)
            return n; /* closing: what nobody asked for is dropped */
        if (!c->rx_buf && !consumer(c))
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
        if (tf_rx_wants_target(&c->rx, NULL) && !bind_target(c))
            break;
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

static bool hold_append(tf_async_conn *c, const uint8_t *p, size_t n)
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
    memcpy(c->hold + c->hold_len, p, n);
    c->hold_len += n;
    return true;
}

static void on_eof(tf_async_conn *c);
static void pump_later(tf_async_conn *c);

/* Read while someone wants a message: held bytes first, then the socket. A large rest of a
 * bound frame is read straight into its target. Returns when the socket is drained. */
static void do_read(tf_async_conn *c)
{
    const size_t rbuf = (size_t)c->cfg.read_buffer;
    while (!failed(c) && c->fd >= 0 && (reader_wanted(c) || c->rx_buf)) {
        if (c->hold_len > 0) {
            size_t u = consume(c, c->hold + c->hold_off, c->hold_len);
            c->hold_off += u;
            c->hold_len -= u;
            if (c->hold_len == 0)
                c->hold_off = 0;
            if (c->hold_len > 0 || failed(c))
                return;
            continue;
        }
        if (c->drained)
            return; /* nothing new since the last short read: epoll will say when */
        uint8_t *dst = NULL;
        if (c->rx_buf) {
            size_t want = tf_rx_next(&c->rx, &dst);
            if (want >= rbuf / 2) {
                ssize_t n = tf__sys_read(c->fd, dst, want);
                if (n <= 0) {
                    if (n == 0)
                        on_eof(c);
                    else if (errno == EAGAIN || errno == EWOULDBLOCK)
                        c->drained = true;
                    else if (errno != EINTR)
                        tf__async_fail(c, TF_ERR_IO, errno);
                    if (n == 0 || errno != EINTR)
                        return;
                    continue;
                }
                tf_msg msg = {NULL, 0};
                if (tf_rx_advance(&c->rx, (size_t)n, &msg) == TF_DONE)
                    deliver_bound(c, &msg);
                if ((size_t)n < want) {
                    c->drained = true;
                    return;
                }
                continue;
            }
        }
        scratch *s = scratch_get(rbuf);
        if (!s) {
            pump_later(c); /* another connection up this thread's stack reads into it */
            return;
        }
        ssize_t n = tf__sys_read(c->fd, s->buf, rbuf);
        if (n <= 0) {
            if (n == 0)
                on_eof(c);
            else if (errno == EAGAIN || errno == EWOULDBLOCK)
                c->drained = true;
            else if (errno != EINTR)
                tf__async_fail(c, TF_ERR_IO, errno);
            if (n == 0 || errno != EINTR)
                return;
            continue;
        }
        s->busy = true;
        size_t u = consume(c, s->buf, (size_t)n);
        s->busy = false;
        if (failed(c))
            return;
        if (u < (size_t)n && !hold_append(c, s->buf + u, (size_t)n - u)) {
            tf__async_fail(c, TF_ERR_NOMEM, 0);
            return;
        }
        if ((size_t)n < rbuf) {
            c->drained = true; /* a full read may have left more; a short one did not */
            return;
        }
    }
}

static void finish_close(tf_async_conn *c, tf_err result)
{
    tf_promise *p = c->close_promise;
    c->close_promise = NULL;
    tf__evb_timer_drop(&c->linger_timer);
    tf__async_fail(c, TF_ERR_CLOSED, 0); /* later calls: CLOSED; pending receives fail so */
    close_fd(c);
    if (p) {
        tf_promise_set(p, result, 0, NULL, NULL);
        tf_promise_free(p);
    }
}

static void on_eof(tf_async_conn *c)
{
    if (c->phase == PH_LINGER && !c->rx_buf) {
        finish_close(c, TF_OK);
        return;
    }
    bool clean = rx_at_boundary(&c->rx) && !c->rx_buf && c->hold_len == 0;
    tf__async_fail(c, clean ? TF_ERR_CLOSED : TF_ERR_TRUNCATED, 0);
}

/* ---------------------------------------------------------------- the pump */

static void pump(tf_async_conn *c)
{
    if (!c->started || c->dead)
        return;
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
    c->in_pump = true;
    do {
        c->repump = false;
        if (failed(c) || c->fd < 0)
            break;
        if (c->phase == PH_HANDSHAKE && !hs_step(c))
            break;
        do_write(c);
        do_read(c);
    } while (c->repump && !failed(c));
    c->in_pump = false;
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
         * from the read the pump makes. */
        int e = 0;
        if (tf__sys_so_error(c->fd, &e) == 0 && e != 0)
            tf__async_fail(c, TF_ERR_IO, e);
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
                        : op == c->rq_head && (c->rx_buf || !rx_at_boundary(&c->rx));
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
        finish_close(c, TF_ERR_TIMEOUT);
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

static void submit_task(void *arg)
{
    tf_async_op *op = arg;
    tf_async_conn *c = op->conn;
    enter(c);
    submit_local(c, op);
    leave(c);
    conn_unref(c);
}

/* Undo the queue counters of a submission that was refused after they were taken. */
static void uncount(tf_async_conn *c, int kind, size_t len)
{
    if (kind == OP_SEND) {
        atomic_fetch_sub_explicit(&c->sq_bytes, len, memory_order_acq_rel);
        atomic_fetch_sub_explicit(&c->sq_msgs, 1u, memory_order_acq_rel);
    } else {
        atomic_fetch_sub_explicit(&c->rq_ops, 1u, memory_order_acq_rel);
    }
}

/* The refusals any thread can decide, then the queue bound (counted here, so BUSY is exact
 * whatever thread submits). */
static tf_err admit(tf_async_conn *c, int kind, size_t len)
{
    if (atomic_load_explicit(&c->freeing, memory_order_acquire))
        return TF_ERR_CANCELLED;
    tf_err e = poison_of(c);
    if (e != TF_OK)
        return e;
    if (tf__evb_stopping(c->evb))
        return TF_ERR_SHUTDOWN;
    if (kind == OP_SEND) {
        if (len > c->cfg.max_send_len)
            return TF_ERR_TOO_LARGE;
        if (atomic_load_explicit(&c->closing, memory_order_acquire))
            return TF_ERR_BAD_STATE;
        size_t b = atomic_fetch_add_explicit(&c->sq_bytes, len, memory_order_acq_rel) + len;
        size_t m = atomic_fetch_add_explicit(&c->sq_msgs, 1u, memory_order_acq_rel) + 1u;
        /* A single message larger than the byte bound still goes when nothing else is queued. */
        if ((m > 1 && b > (size_t)c->cfg.send_queue_bytes) || m > (size_t)c->cfg.send_queue_msgs) {
            uncount(c, kind, len);
            atomic_store_explicit(&c->wr_wanted, true, memory_order_release);
            return TF_ERR_BUSY;
        }
        return TF_OK;
    }
    if (atomic_load_explicit(&c->stream_on, memory_order_acquire))
        return TF_ERR_BAD_STATE;
    size_t r = atomic_fetch_add_explicit(&c->rq_ops, 1u, memory_order_acq_rel) + 1u;
    if (r > (size_t)c->cfg.recv_queue_ops) {
        uncount(c, kind, 0);
        return TF_ERR_BUSY;
    }
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
    tf_err rc = admit(c, kind, len);
    if (rc != TF_OK)
        return rc;
    if (tf_evb_in_loop_thread(c->evb)) {
        enter(c);
        submit_local(c, op);
        leave(c);
        return TF_OK;
    }
    conn_ref(c);
    rc = tf_evb_dispatch(c->evb, submit_task, op);
    if (rc != TF_OK) {
        conn_unref(c);
        uncount(c, kind, len);
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
    tf_async_op *op = tf__alloc(sizeof *op);
    if (!op)
        return TF_ERR_NOMEM;
    tf_future *f = NULL;
    if (tf_promise_new(&op->promise, &f) != TF_OK) {
        free(op);
        return TF_ERR_NOMEM;
    }
    op->dtor = dtor;
    op->cb = NULL;
    op->arg = NULL;
    tf_err rc = submit(c, op, kind, buf, len, timeout_ms);
    if (rc != TF_OK) {
        tf_promise_set(op->promise, rc, 0, NULL, NULL);
        tf_promise_free(op->promise);
        tf_future_free(f);
        free(op);
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

/* ---------------------------------------------------------------- settings on the loop */

typedef struct setting {
    tf_async_conn *c;
    int what; /* 0 stream, 1 writable */
    void *cb;
    void *arg;
} setting;

static void apply_setting(tf_async_conn *c, const setting *s)
{
    if (s->what == 1) {
        c->wr_cb = (tf_async_writable_cb)(uintptr_t)s->cb;
        c->wr_arg = s->arg;
        writable_check(c);
        return;
    }
    c->stream_cb = (tf_async_msg_cb)(uintptr_t)s->cb;
    c->stream_arg = s->arg;
    if (c->stream_cb && failed(c)) {
        /* Poisoned before the stream started: it ends at once, with the reason. */
        int os = 0;
        tf_err e = c->dead ? TF_ERR_CANCELLED : tf_async_conn_error(c, &os);
        tf_async_msg_cb cb = c->stream_cb;
        c->stream_cb = NULL;
        cb(c, e, os, NULL, 0, c->stream_arg);
        return;
    }
    pump(c);
    if (!failed(c) && !c->in_pump)
        update_interest(c);
}

static void setting_task(void *arg)
{
    setting *s = arg;
    tf_async_conn *c = s->c;
    enter(c);
    apply_setting(c, s);
    leave(c);
    free(s);
    conn_unref(c);
}

static tf_err set_on_loop(tf_async_conn *c, int what, void *cb, void *arg)
{
    setting local = {c, what, cb, arg};
    if (tf_evb_in_loop_thread(c->evb)) {
        enter(c);
        apply_setting(c, &local);
        leave(c);
        return TF_OK;
    }
    setting *s = tf__alloc(sizeof *s);
    if (!s)
        return TF_ERR_NOMEM;
    *s = local;
    conn_ref(c);
    tf_err rc = tf_evb_dispatch(c->evb, setting_task, s);
    if (rc != TF_OK) {
        conn_unref(c);
        free(s);
    }
    return rc;
}

tf_err tf_async_conn_stream(tf_async_conn *c, tf_async_msg_cb cb, void *arg)
{
    if (!c)
        return TF_ERR_INVALID_ARGUMENT;
    if (atomic_load_explicit(&c->freeing, memory_order_acquire))
        return TF_ERR_CANCELLED;
    tf_err e = poison_of(c);
    if (e != TF_OK)
        return e;
    if (cb && (atomic_load_explicit(&c->stream_on, memory_order_acquire) ||
               atomic_load_explicit(&c->rq_ops, memory_order_acquire) > 0))
        return TF_ERR_BAD_STATE;
    atomic_store_explicit(&c->stream_on, cb != NULL, memory_order_release);
    tf_err rc = set_on_loop(c, 0, (void *)(uintptr_t)cb, arg);
    if (rc != TF_OK)
        atomic_store_explicit(&c->stream_on, false, memory_order_release);
    return rc;
}

tf_err tf_async_conn_on_writable(tf_async_conn *c, tf_async_writable_cb cb, void *arg)
{
    if (!c)
        return TF_ERR_INVALID_ARGUMENT;
    return set_on_loop(c, 1, (void *)(uintptr_t)cb, arg);
}

/* ---------------------------------------------------------------- close, abort, free */

static void close_task(void *arg)
{
    tf_async_conn *c = arg;
    enter(c);
    tf_promise *p = c->close_req;
    c->close_req = NULL;
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
    } else {
        c->close_promise = p;
        c->flushing = true;
        if (c->phase == PH_OPEN && !c->sq_head)
            start_linger(c);
        pump(c);
    }
    leave(c);
    conn_unref(c);
}

tf_err tf_async_conn_close(tf_async_conn *c, tf_future **out)
{
    if (out)
        *out = NULL;
    if (!c || !out)
        return TF_ERR_INVALID_ARGUMENT;
    if (tf__evb_stopping(c->evb))
        return TF_ERR_SHUTDOWN;
    if (atomic_exchange_explicit(&c->closing, true, memory_order_acq_rel))
        return TF_ERR_BAD_STATE;
    tf_promise *p;
    tf_future *f;
    if (tf_promise_new(&p, &f) != TF_OK) {
        atomic_store_explicit(&c->closing, false, memory_order_release);
        return TF_ERR_NOMEM;
    }
    c->close_req = p; /* published to the loop by the dispatch (or used inline) */
    conn_ref(c);
    tf_err rc = tf_evb_dispatch_inline(c->evb, close_task, c);
    if (rc != TF_OK) {
        conn_unref(c);
        c->close_req = NULL;
        tf_promise_free(p);
        tf_future_free(f);
        atomic_store_explicit(&c->closing, false, memory_order_release);
        return rc;
    }
    *out = f;
    return TF_OK;
}

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
    leave(c);
    conn_unref(c);
}

tf_err tf_async_conn_abort(tf_async_conn *c)
{
    if (!c)
        return TF_ERR_INVALID_ARGUMENT;
    conn_ref(c);
    tf_err rc = tf_evb_dispatch_inline(c->evb, abort_task, c);
    if (rc != TF_OK)
        conn_unref(c);
    return rc == TF_ERR_SHUTDOWN ? TF_OK : rc; /* a stopped loop failed everything already */
}

/* The last step, on the loop thread (or after the loop stopped): the loop lets go of the fd,
 * then it is closed, then the owner's reference goes. Runs once. */
static void finalize(tf_async_conn *c)
{
    if (c->finalized)
        return;
    c->finalized = true;
    if (c->started && !tf__evb_stopping(c->evb))
        tf__evb_hook_remove(c->evb, &c->hook);
    tf__evb_timer_drop(&c->hs_timer);
    tf__evb_timer_drop(&c->linger_timer);
    rx_unbind(c);
    close_fd(c);
    conn_unref(c);
}

static void free_task(void *arg)
{
    tf_async_conn *c = arg;
    enter(c);
    c->dead = true;
    tf__async_fail(c, TF_ERR_CANCELLED, 0);
    leave(c);
}

void tf_async_conn_free(tf_async_conn *c)
{
    if (!c)
        return;
    atomic_store_explicit(&c->freeing, true, memory_order_release);
    tf_evb *evb = c->evb;
    tf_err rc = tf_evb_dispatch_and_wait(evb, free_task, c);
    if (rc == TF_OK)
        return;
    if (rc == TF_ERR_BAD_STATE && tf_evb_dispatch(evb, free_task, c) == TF_OK)
        return; /* called on another loop's thread: freed soon, on its own loop */
    /* The loop is stopping: once it has stopped (its stop hook failed everything with
     * SHUTDOWN and it dropped every watch), nothing else touches the connection. */
    tf__evb_wait_stopped(evb);
    c->dead = true;
    c->interest = 0;
    finalize(c);
}

/* The loop stops: everything in flight fails with SHUTDOWN. */
static void on_stop(void *arg)
{
    tf_async_conn *c = arg;
    enter(c);
    tf__async_fail(c, TF_ERR_SHUTDOWN, 0);
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
    if (c->cfg.handshake) {
        c->phase = PH_HANDSHAKE;
        if (c->cfg.handshake_timeout_ms >= 0 &&
            tf_evb_timer_after(c->evb, (uint64_t)c->cfg.handshake_timeout_ms, hs_timeout, c,
                               &c->hs_timer) != TF_OK) {
            tf__async_fail(c, TF_ERR_NOMEM, 0);
            return;
        }
    } else {
        c->phase = PH_OPEN;
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

tf_err tf__async_conn_new(tf_evb *evb, int fd, const tf_tcp_config *cfg, tf__async_ready_fn fn,
                          void *arg, tf_async_conn **out)
{
    *out = NULL;
    tf_async_conn *c = tf__calloc(1, sizeof *c);
    if (!c)
        return TF_ERR_NOMEM;
    c->base.ops = &async_ops;
    c->evb = evb;
    c->cfg = *cfg;
    atomic_init(&c->refs, 1u);
    c->fd = fd;
    c->phase = PH_NEW;
    c->ready_fn = fn;
    c->ready_arg = arg;
    tf_fdio_init(&c->fdio, fd, fd);
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
    return tf__async_conn_new(evb, fd, &conf, NULL, NULL, out);
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
    return tf__sock_name(c->fd, true, buf, len);
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
