/* Target: tf_async_conn over a socketpair (send, recv, recv_alloc, stream, close, abort, free) */
/* fuzz_conn -- the async connection (async.h, SPEC 9.7) driven by a script over a UNIX
 * socketpair whose other end is a raw peer.
 *
 * Input: byte 0 is the config (bit 0 handshake, bits 1-2 read_buffer 7/64/4096/65536, bit 3
 * max_recv_len 300 instead of 64 KiB, bit 4 send_queue_msgs 3, bit 5 the peer sends the magic
 * at once, bit 6 socket buffers of 4 KiB instead of 1 MiB, bit 7 the lifecycle steps below).
 * Then a script of steps, each an opcode byte and its arguments:
 *   peer writes raw bytes (n, bytes), peer writes a well-formed frame (length, pattern),
 *   pause (loop iterations), send (size, timeout 0 or none, future or callback, owned or
 *   borrowed), recv into a span (capacity, timeout, style), recv_alloc, message-stream mode on
 *   or off, graceful close, abort, free, peer half-close (SHUT_WR), peer close;
 *   with config bit 7 also (issue 20): the next completion callback frees the connection (from
 *   inside its own callback), the next completion callback stops the loop (tf_evb_stop on the
 *   loop thread: the rest runs in the stop's drain), a second submitting thread (1-6 operations
 *   chosen from the input: sends in every style, callback receives, stream on; it runs while
 *   the loop turns, so its submissions race the loop's own work through the admission point),
 *   and joining that thread. The thread is always joined before the free (it never waits for
 *   the loop, so the loop thread may join it).
 * The loop runs on the fuzzer's thread (tf_evb_loop, a fresh loop per input); each step is a
 * dispatched task, so the connection's fd events run between steps; no step waits for real
 * time (timeouts are 0 ms, linger 0). Without the second thread a run is deterministic; with it,
 * the operations are the input's and only their interleaving with the loop varies.
 *
 * Oracles:
 *  - every accepted operation (and the close future, and the stream's end) completes exactly
 *    once, a refused one never; all by the end of the free;
 *  - the messages delivered (receives and stream calls, in completion order) are exactly the
 *    first ones a reference decoder extracts from the bytes the peer wrote (after the magic);
 *  - a receive that fails with BAD_MAGIC, TOO_LARGE, CLOSED or TRUNCATED does so where the
 *    reference says (wrong magic; a length over max at the next frame; the peer's EOF after the
 *    last complete frame, or inside one), unless the connection's own close explains CLOSED;
 *  - the bytes the peer received are our magic (with the handshake) and then exactly the frames
 *    of the sends that succeeded, each thread's in its order (plus at most a cut frame of a
 *    failed one);
 *  - no fd left open (the connection's fd is closed after the free), no leak (LeakSanitizer). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "tcpframe/async.h"

enum { MAXOPS = 48, PEER_CAP = 1 << 20, MAXDELIV = 64 };
enum { K_SEND = 1, K_RECV, K_RALLOC, K_CLOSE };

typedef struct rec {
    int kind;
    bool fut, accepted, timeout;
    bool helper; /* submitted by the second thread */
    bool owned;  /* owned send: r->buf is a copy, r->obuf the library's */
    uint8_t *obuf;
    int calls;
    tf_err err;
    size_t len;
    tf_async_op op;
    tf_future *fu;
    uint8_t *buf; /* send payload (borrowed sends) or receive span */
    size_t cap;
    uint32_t seed;
} rec;

typedef struct deliv {
    uint8_t *data;
    size_t len;
} deliv;

typedef struct fx {
    fz_in in;
    tf_evb *evb;
    tf_async_conn *c;
    int cfd, pfd;
    bool hs, freed, closed_by_user, any_timeout, peer_eof, peer_closed, stream_on;
    uint32_t max_recv;
    rec ops[MAXOPS];
    size_t nops;
    int stream_ends;
    atomic_int stream_ons; /* accepted tf_async_conn_stream(c, cb) calls (any thread) */
    tf_err stream_err;
    deliv dv[MAXDELIV];
    size_t ndv;
    bool dv_overflow;
    /* rx fail errors seen on receives: the first of each */
    tf_err first_rx_err;
    size_t rx_err_at; /* deliveries before it */
    bool rx_err_after_close;
    size_t dv_at_close; /* deliveries when tf_async_conn_close was accepted */
    /* what the peer wrote and read */
    uint8_t *pw;
    size_t npw;
    uint8_t *pr;
    size_t npr;
    int pause, settle;
    bool pr_full;
    bool lifecycle; /* config bit 7 */
    int arm;        /* the next completion callback: 1 frees, 2 stops the loop */
    bool helper_on;
    pthread_t helper;
    rec *hops[8]; /* the second thread's operations, prepared on the loop */
    int nhops;
} fx;

/* ---------------------------------------------------------------- peer */

FZ_NOCOV static void peer_drain(fx *f)
{
    if (f->peer_closed)
        return;
    for (;;) {
        if (f->npr == PEER_CAP) {
            f->pr_full = true;
            return;
        }
        ssize_t n = read(f->pfd, f->pr + f->npr, PEER_CAP - f->npr);
        if (n <= 0)
            return;
        f->npr += (size_t)n;
    }
}

FZ_NOCOV static void peer_write(fx *f, const uint8_t *p, size_t n)
{
    if (f->peer_closed || f->peer_eof)
        return;
    while (n > 0 && f->npw < PEER_CAP) {
        size_t k = n < PEER_CAP - f->npw ? n : PEER_CAP - f->npw;
        ssize_t w = send(f->pfd, p, k, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w <= 0) {
            peer_drain(f); /* the connection may be waiting for us to read */
            if (w < 0 && errno == EAGAIN)
                return;    /* its buffer is full: the rest is not written (and not recorded) */
            return;
        }
        memcpy(f->pw + f->npw, p, (size_t)w);
        f->npw += (size_t)w;
        p += w;
        n -= (size_t)w;
    }
}

/* Pattern bytes: harness work, kept out of the coverage (a 20 KB loop of traced compares
 * cost more than the connection itself). */
FZ_NOCOV static void pattern(uint8_t *b, size_t len, uint32_t seed, uint32_t mul)
{
    /* period 256 (i * mul mod 256 repeats): one period by hand, then doubling copies */
    size_t k = len < 256 ? len : 256;
    for (size_t i = 0; i < k; i++)
        b[i] = (uint8_t)(seed + i * mul);
    while (k < len) {
        size_t m = k < len - k ? k : len - k;
        memcpy(b + k, b, m);
        k += m;
    }
}

/* ---------------------------------------------------------------- completions */

FZ_NOCOV static void delivered(fx *f, const uint8_t *data, size_t len)
{
    if (f->ndv == MAXDELIV) {
        f->dv_overflow = true;
        return;
    }
    uint8_t *copy = malloc(len ? len : 1);
    if (len)
        memcpy(copy, data, len);
    f->dv[f->ndv].data = copy;
    f->dv[f->ndv].len = len;
    f->ndv++;
}

FZ_NOCOV static void rx_failed(fx *f, tf_err e)
{
    if (f->first_rx_err == TF_OK) {
        f->first_rx_err = e;
        f->rx_err_at = f->ndv;
        f->rx_err_after_close = f->closed_by_user;
    }
}

static fx *cur; /* the input being run (the loop runs on this thread) */

FZ_NOCOV static void finish(rec *r, tf_err err, const uint8_t *data, size_t len)
{
    r->calls++;
    r->err = err;
    r->len = len;
    if (r->kind == K_RECV || r->kind == K_RALLOC) {
        if (err == TF_OK)
            delivered(cur, data, len);
        else
            rx_failed(cur, err);
    }
}

static void free_conn(fx *f);

/* An armed lifecycle step, from inside a completion callback on the loop thread. */
static void cb_action(fx *f)
{
    if (!f->arm || !tf_evb_in_loop_thread(f->evb))
        return;
    int a = f->arm;
    f->arm = 0;
    if (a == 1)
        free_conn(f); /* the connection's own callback frees it */
    else
        tf_evb_stop(f->evb); /* returns at once; the rest of the script runs in the drain */
}

static void op_cb(tf_async_conn *c, tf_async_op *op, tf_err err, int os_err, uint8_t *data,
                  size_t len, void *arg)
{
    (void)c, (void)op, (void)os_err;
    rec *r = arg;
    finish(r, err, data, len);
    if (r->kind == K_RALLOC)
        free(data);
    cb_action(cur);
}

static void fut_cb(tf_future *fu, void *arg)
{
    rec *r = arg;
    size_t len = 0;
    void *owned = NULL;
    tf_err e = tf_future_get(fu, &len, &owned);
    finish(r, e, r->kind == K_RALLOC ? owned : r->buf, len);
    free(owned);
    cb_action(cur);
}

static void stream_cb(tf_async_conn *c, tf_err err, int os_err, const uint8_t *data, size_t len,
                      void *arg)
{
    (void)c, (void)os_err;
    fx *f = arg;
    if (err == TF_OK) {
        delivered(f, data, len);
    } else {
        f->stream_ends++;
        f->stream_err = err;
        rx_failed(f, err);
    }
    cb_action(f);
}

/* ---------------------------------------------------------------- steps */

static rec *new_rec(fx *f, int kind)
{
    if (f->nops == MAXOPS)
        return NULL;
    rec *r = &f->ops[f->nops++];
    memset(r, 0, sizeof *r);
    r->kind = kind;
    return r;
}

static void do_send(fx *f)
{
    uint8_t a = fz_u8(&f->in);
    size_t len = fz_u16(&f->in) % 3000u;
    if (a & 8)
        len += 20000; /* over the 4 KiB socket buffers (bit 6 of the config; the kernel doubles
                       * it): partial writes. 20 KB, not 70: with ASan every payload byte is
                       * patterned, copied and compared, which made big sends most of the time */
    rec *r = new_rec(f, K_SEND);
    if (!r)
        return;
    r->fut = a & 1;
    r->timeout = a & 2;
    bool owned = a & 4;
    r->seed = (uint32_t)f->nops * 7919u;
    uint8_t *b = malloc(len ? len : 1);
    pattern(b, len, r->seed, 31u);
    r->cap = len;
    int64_t to = r->timeout ? 0 : -1;
    tf_err rc;
    if (r->fut && owned) {
        /* the payload is the library's now: compare against a copy */
        r->buf = malloc(len ? len : 1);
        if (len)
            memcpy(r->buf, b, len);
        rc = tf_async_conn_send_owned(f->c, b, len, free, to, &r->fu);
        if (rc != TF_OK)
            free(b);
    } else if (r->fut) {
        r->buf = b;
        rc = tf_async_conn_send(f->c, b, len, to, &r->fu);
    } else {
        r->buf = b;
        rc = tf_async_conn_send_op(f->c, &r->op, b, len, to, op_cb, r);
    }
    if (rc == TF_OK && r->fut)
        CHECK(tf_future_then(r->fu, fut_cb, r) == TF_OK);
    r->accepted = rc == TF_OK;
    if (r->accepted && r->timeout)
        f->any_timeout = true;
}

static void do_recv(fx *f, int kind)
{
    uint8_t a = fz_u8(&f->in);
    size_t cap = fz_u16(&f->in) % 4096u;
    rec *r = new_rec(f, kind);
    if (!r)
        return;
    r->fut = a & 1;
    r->timeout = a & 2;
    int64_t to = r->timeout ? 0 : -1;
    tf_err rc;
    if (kind == K_RECV) {
        r->buf = malloc(cap ? cap : 1);
        r->cap = cap;
        rc = r->fut ? tf_async_conn_recv(f->c, r->buf, cap, to, &r->fu)
                    : tf_async_conn_recv_op(f->c, &r->op, r->buf, cap, to, op_cb, r);
    } else {
        rc = r->fut ? tf_async_conn_recv_alloc(f->c, to, &r->fu)
                    : tf_async_conn_recv_alloc_op(f->c, &r->op, to, op_cb, r);
    }
    if (rc == TF_OK && r->fut)
        CHECK(tf_future_then(r->fu, fut_cb, r) == TF_OK);
    r->accepted = rc == TF_OK;
    if (r->accepted && r->timeout)
        f->any_timeout = true;
}

/* ---------------------------------------------------------------- the second thread */

/* Its operations were prepared on the loop thread (records, payloads); it only makes the calls,
 * none of which waits for the loop. Receives are callback style, so every delivery is recorded
 * on the loop thread in completion order. */
static void *helper_main(void *arg)
{
    fx *f = arg;
    for (int i = 0; i < f->nhops; i++) {
        rec *r = f->hops[i];
        tf_err rc;
        if (r->kind == K_SEND && r->owned)
            rc = tf_async_conn_send_owned(f->c, r->obuf, r->cap, free, -1, &r->fu);
        else if (r->kind == K_SEND && r->fut)
            rc = tf_async_conn_send(f->c, r->buf, r->cap, -1, &r->fu);
        else if (r->kind == K_SEND)
            rc = tf_async_conn_send_op(f->c, &r->op, r->buf, r->cap, -1, op_cb, r);
        else if (r->kind == K_RECV)
            rc = tf_async_conn_recv_op(f->c, &r->op, r->buf, r->cap, -1, op_cb, r);
        else if (r->kind == K_RALLOC)
            rc = tf_async_conn_recv_alloc_op(f->c, &r->op, -1, op_cb, r);
        else
            rc = tf_async_conn_stream(f->c, stream_cb, f);
        if (r->kind == K_SEND && r->owned && rc != TF_OK)
            free(r->obuf); /* refused: still ours */
        r->accepted = rc == TF_OK;
        if (rc == TF_OK && r->kind != K_SEND && r->kind != K_RECV && r->kind != K_RALLOC)
            atomic_fetch_add(&f->stream_ons, 1);
        if (rc == TF_OK && r->fu)
            CHECK(tf_future_then(r->fu, fut_cb, r) == TF_OK);
    }
    return NULL;
}

static void join_helper(fx *f)
{
    if (!f->helper_on)
        return;
    CHECK(pthread_join(f->helper, NULL) == 0);
    f->helper_on = false;
}

/* Prepare 1-6 operations from the input and start the thread that submits them. */
static void start_helper(fx *f)
{
    int n = 1 + fz_u8(&f->in) % 6u;
    if (f->freed || f->helper_on)
        return;
    f->nhops = 0;
    for (int i = 0; i < n; i++) {
        uint8_t a = fz_u8(&f->in);
        size_t size = fz_u16(&f->in);
        int what = a % 6u;
        rec *r = new_rec(f, what <= 2 ? K_SEND : what == 3 ? K_RECV : what == 4 ? K_RALLOC : 0);
        if (!r)
            break;
        r->helper = true;
        if (what <= 2) {
            size_t len = 1 + size % 3000u; /* never empty: the lanes of the send oracle */
            r->fut = what != 1;
            r->owned = what == 2;
            r->seed = (uint32_t)f->nops * 7919u;
            r->cap = len;
            r->buf = malloc(len);
            pattern(r->buf, len, r->seed, 31u);
            if (r->owned) {
                r->obuf = malloc(len);
                memcpy(r->obuf, r->buf, len);
            }
        } else if (what == 3) {
            r->cap = size % 4096u;
            r->buf = malloc(r->cap ? r->cap : 1);
        } else if (what == 5) {
            r->kind = 0; /* stream on: not an operation with a completion of its own */
        }
        f->hops[f->nhops++] = r;
    }
    if (f->nhops > 0 && pthread_create(&f->helper, NULL, helper_main, f) == 0)
        f->helper_on = true;
}

static void step(void *arg);
static void run_op(fx *f);

static void free_conn(fx *f)
{
    if (f->freed)
        return;
    join_helper(f); /* the thread may still be calling into the connection */
    f->freed = true;
    tf_async_conn_free(f->c);
}

static void end(fx *f)
{
    free_conn(f);
    tf_evb_stop(f->evb);
}

static void again(fx *f)
{
    if (tf_evb_dispatch(f->evb, step, f) != TF_OK)
        end(f);
}

/* One step of the script (no loop iteration in between: only pauses yield to the loop). */
static void run_op(fx *f)
{
    uint8_t op = fz_u8(&f->in) % (f->lifecycle ? 18u : 14u);
    switch (op) {
    case 0: { /* peer: raw bytes */
        size_t n = fz_u8(&f->in) % 64u;
        const uint8_t *p = NULL;
        n = fz_take(&f->in, n, &p);
        peer_write(f, p, n);
        break;
    }
    case 1:
    case 2: { /* peer: a well-formed frame */
        size_t len = fz_u16(&f->in) % (op == 1 ? 400u : 6000u);
        uint8_t *b = malloc(len + 4);
        b[0] = (uint8_t)(len >> 24);
        b[1] = (uint8_t)(len >> 16);
        b[2] = (uint8_t)(len >> 8);
        b[3] = (uint8_t)len;
        pattern(b + 4, len, (uint32_t)len, 13u);
        peer_write(f, b, len + 4);
        free(b);
        break;
    }
    case 3:
        f->pause = 1 + fz_u8(&f->in) % 6u;
        break;
    case 4:
        do_send(f);
        break;
    case 5:
        do_recv(f, K_RECV);
        break;
    case 6:
        do_recv(f, K_RALLOC);
        break;
    case 7:
        if (tf_async_conn_stream(f->c, stream_cb, f) == TF_OK) {
            f->stream_on = true;
            atomic_fetch_add(&f->stream_ons, 1);
        }
        break;
    case 8:
        if ((f->stream_on || f->nhops > 0) && tf_async_conn_stream(f->c, NULL, NULL) == TF_OK)
            f->stream_on = false;
        break;
    case 9: {
        rec *r = new_rec(f, K_CLOSE);
        if (!r)
            break;
        r->fut = true;
        /* marked before the call: on the loop thread it may end the stream inside it */
        bool was = f->closed_by_user;
        if (!was)
            f->dv_at_close = f->ndv;
        f->closed_by_user = true;
        tf_err rc = tf_async_conn_close(f->c, &r->fu);
        r->accepted = rc == TF_OK;
        if (r->accepted)
            CHECK(tf_future_then(r->fu, fut_cb, r) == TF_OK);
        else
            f->closed_by_user = was;
        break;
    }
    case 10:
        if (!f->closed_by_user)
            f->dv_at_close = f->ndv;
        f->closed_by_user = true;
        tf_async_conn_abort(f->c);
        break;
    case 11:
        free_conn(f);
        break;
    case 12:
        if (!f->peer_eof && !f->peer_closed) {
            shutdown(f->pfd, SHUT_WR);
            f->peer_eof = true;
        }
        break;
    case 13:
        if (!f->peer_closed) {
            peer_drain(f);
            close(f->pfd);
            f->peer_closed = true;
            f->peer_eof = true;
        }
        break;
    case 14:
        f->arm = 1;
        break;
    case 15:
        f->arm = 2;
        break;
    case 16:
        start_helper(f);
        break;
    default:
        join_helper(f);
        break;
    }
}

/* The script as dispatched tasks: steps run back to back; a pause lets the loop turn (fd
 * events, timers) that many times before the next step. */
static void step(void *arg)
{
    fx *f = arg;
    for (;;) {
        if (f->pause > 0) {
            peer_drain(f); /* a pause is also where the peer reads */
            f->pause--;
            again(f);
            return;
        }
        if (f->in.n == 0 || f->freed) {
            /* the script is over: a few turns for what can still move, then the end */
            peer_drain(f);
            if (!f->freed && f->settle++ < 3) {
                again(f);
                return;
            }
            end(f);
            return;
        }
        run_op(f);
    }
}

/* ---------------------------------------------------------------- reference and checks */

typedef struct ref {
    bool magic_ok, magic_bad; /* all 4 bytes there and right / a wrong byte */
    size_t n;                 /* complete messages */
    size_t off[MAXDELIV + 1], len[MAXDELIV + 1];
    bool too_large;           /* the frame after the n complete ones is over max */
    bool partial;             /* bytes after the n complete frames (not over max) */
    bool more;                /* more than MAXDELIV messages (not followed) */
} ref;

FZ_NOCOV static void ref_decode(const uint8_t *p, size_t n, bool hs, uint32_t max, ref *r)
{
    memset(r, 0, sizeof *r);
    size_t i = 0;
    if (hs) {
        static const uint8_t magic[4] = {'U', 'N', 'I', 'F'};
        for (size_t k = 0; k < 4 && k < n; k++)
            if (p[k] != magic[k]) {
                r->magic_bad = true;
                return;
            }
        if (n < 4)
            return;
        i = 4;
    }
    r->magic_ok = true;
    while (i < n) {
        if (r->n == MAXDELIV) {
            r->more = true;
            return;
        }
        if (n - i < 4) {
            r->partial = true;
            return;
        }
        uint32_t len = (uint32_t)p[i] << 24 | (uint32_t)p[i + 1] << 16 | (uint32_t)p[i + 2] << 8 |
                       p[i + 3];
        if (len > max) {
            r->too_large = true;
            return;
        }
        if (n - i - 4 < len) {
            r->partial = true;
            return;
        }
        r->off[r->n] = i + 4;
        r->len[r->n] = len;
        r->n++;
        i += 4 + (size_t)len;
    }
}

/* The first send at index >= from of the lane (helper or not) that succeeded, or f->nops. */
FZ_NOCOV static size_t next_ok_send(const fx *f, bool helper, size_t from)
{
    for (size_t i = from; i < f->nops; i++) {
        const rec *r = &f->ops[i];
        if (r->kind == K_SEND && r->helper == helper && r->accepted && r->err == TF_OK)
            return i;
    }
    return f->nops;
}

FZ_NOCOV static void check_all(fx *f)
{
    /* exactly once */
    for (size_t i = 0; i < f->nops; i++) {
        rec *r = &f->ops[i];
        if (r->kind != 0)
            CHECK(r->calls == (r->accepted ? 1 : 0));
    }
    /* One end call per stream that was on when the stream ended: a stream started (by the
     * second thread) after another was stopped, and ended, ends once too. */
    CHECK(f->stream_ends <= atomic_load(&f->stream_ons));

    /* what the peer got: our magic, then the frames of the sends that succeeded */
    ref out;
    ref_decode(f->pr, f->npr, f->hs, UINT32_MAX, &out);
    if (!out.more && !f->peer_closed && !f->pr_full) {
        CHECK(!out.magic_bad);
        /* two lanes (the script's sends, the second thread's): each frame is the next
         * successful send of one of them; the second thread's are never empty, and every
         * payload has its own pattern, so at most one lane can match */
        size_t lane[2] = {0, 0};
        for (size_t k = 0; k < out.n; k++) {
            bool matched = false;
            for (int l = 0; l < 2 && !matched; l++) {
                size_t i = next_ok_send(f, l == 1, lane[l]);
                if (i == f->nops)
                    continue;
                rec *r = &f->ops[i];
                if (out.len[k] == r->cap &&
                    (r->cap == 0 || memcmp(f->pr + out.off[k], r->buf, r->cap) == 0)) {
                    lane[l] = i + 1;
                    matched = true;
                }
            }
            CHECK(matched);
        }
        CHECK(next_ok_send(f, false, lane[0]) == f->nops);
        CHECK(next_ok_send(f, true, lane[1]) == f->nops);
    }
    /* deliveries = the reference's first messages */
    ref in;
    ref_decode(f->pw, f->npw, f->hs, f->max_recv, &in);
    if (!f->dv_overflow && !in.more) {
        /* A graceful close discards what nobody asked for (async.h), even a part of a frame:
         * what is delivered after it is not the reference's to predict. */
        size_t ndv = f->closed_by_user ? f->dv_at_close : f->ndv;
        CHECK(ndv <= in.n);
        for (size_t i = 0; i < ndv; i++) {
            CHECK(f->dv[i].len == in.len[i]);
            CHECK(f->dv[i].len == 0 || memcmp(f->dv[i].data, f->pw + in.off[i], in.len[i]) == 0);
        }
        /* protocol errors where the reference puts them */
        tf_err e = f->rx_err_after_close ? TF_OK : f->first_rx_err;
        if (f->hs && !in.magic_ok && !in.magic_bad) {
            /* the peer's magic is incomplete: only its EOF (or our own end) stops it */
            CHECK(f->ndv == 0);
            if (e == TF_ERR_CLOSED || e == TF_ERR_TRUNCATED)
                CHECK(f->peer_eof || f->closed_by_user);
            return;
        }
        if (e == TF_ERR_BAD_MAGIC)
            CHECK(in.magic_bad);
        if (e == TF_ERR_TOO_LARGE)
            CHECK(in.too_large && f->rx_err_at == in.n);
        if (e == TF_ERR_TRUNCATED)
            CHECK(f->peer_eof && in.partial && f->rx_err_at == in.n);
        if (e == TF_ERR_CLOSED)
            CHECK(f->peer_eof && !in.partial && !in.too_large && in.magic_ok &&
                  f->rx_err_at == in.n);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static fx f;
    memset(&f, 0, sizeof f);
    cur = &f;
    f.in.p = data;
    f.in.n = size;
    uint8_t conf = fz_u8(&f.in);
    tf_tcp_config cfg;
    tf_tcp_config_init(&cfg);
    f.hs = conf & 1;
    cfg.handshake = f.hs;
    static const int64_t rbuf[4] = {7, 64, 4096, 65536};
    cfg.read_buffer = rbuf[(conf >> 1) & 3];
    /* Not the 64 MiB default: an input is a few KiB, so no message over that can complete, and
     * a receive_alloc of a fuzzer-chosen length up to 64 MiB made ASan map, fault in and
     * quarantine a large chunk per input (half of the run time, ~6k exec/s). 64 KiB keeps the
     * allocation path, read-straight-into-the-target (lengths over read_buffer) and truncation. */
    f.max_recv = (conf & 8) ? 300u : 65536u;
    cfg.max_recv_len = f.max_recv;
    if (conf & 16)
        cfg.send_queue_msgs = 3;
    cfg.linger_ms = 0;
    /* TCP options do not apply to a UNIX socket (each would be a failing setsockopt per input) */
    cfg.nodelay = cfg.keepalive = TF_UNSET;
    cfg.keepalive_idle_s = cfg.keepalive_intvl_s = cfg.keepalive_cnt = TF_UNSET;
    cfg.user_timeout_ms = TF_UNSET;
    if (conf & 64)
        cfg.sndbuf = cfg.rcvbuf = 4096; /* small socket buffers: partial writes */
    f.lifecycle = conf & 128;

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return 0;
    f.cfd = sv[0];
    f.pfd = sv[1];
    CHECK(fcntl(f.pfd, F_SETFL, O_NONBLOCK) == 0);
    static uint8_t pw[PEER_CAP], pr[PEER_CAP]; /* not per input: ASan's cost of 2 MiB */
    f.pw = pw;
    f.pr = pr;
    CHECK(tf_evb_new(&f.evb) == TF_OK);
    if (tf_async_conn_from_fd(f.evb, f.cfd, &cfg, &f.c, NULL) != TF_OK) {
        close(f.cfd);
        f.freed = true;
    }
    if (f.hs && (conf & 32)) {
        static const uint8_t magic[4] = {'U', 'N', 'I', 'F'};
        peer_write(&f, magic, 4); /* most inputs should get past the handshake */
    }
    CHECK(tf_evb_dispatch(f.evb, step, &f) == TF_OK);
    CHECK(tf_evb_loop(f.evb) == TF_OK);
    free_conn(&f); /* (the script's end frees it; a stop from a callback may end it first) */
    CHECK(tf_evb_free(f.evb) == TF_OK);
    /* the connection's fd is closed; read what the peer has left */
    errno = 0;
    CHECK(fcntl(f.cfd, F_GETFD) == -1 && errno == EBADF);
    if (!f.peer_closed) {
        peer_drain(&f);
        close(f.pfd);
    }
    check_all(&f);

    for (size_t i = 0; i < f.nops; i++) {
        tf_future_free(f.ops[i].fu);
        free(f.ops[i].buf);
    }
    for (size_t i = 0; i < f.ndv; i++)
        free(f.dv[i].data);
    return 0;
}
