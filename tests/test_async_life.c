/* tests/test_async_life.c -- tf_async_conn's modes and lifetime over socketpairs and raw
 * peers: the message stream (100k frames in random writes, an empty frame cut in its prefix,
 * stream vs receives), queue bounds (BUSY and the writable callback), graceful close with flush,
 * linger and a peer that closed first, abort, free with operations in flight and from the
 * connection's own callback, and a loop stopped with operations in flight. Every test checks
 * that no fd leaked. (I/O, poison, timeouts, threads and the never-hang test: test_async_conn.c.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <sys/socket.h>

#include "tcpframe/async.h"
#include "tcpframe/sync.h"
#include "test_io_util.h"
#include "tu_async.h"
#include "tu_net.h"

/* ---------------------------------------------------------------- stream mode */

typedef struct streamer {
    tio_ctr done;
    long count;
    uint64_t sum;
    bool order_ok;
    tf_err end;
    size_t bytes;
} streamer;

static void on_msg(tf_async_conn *c, tf_err err, int os_err, const uint8_t *data, size_t len,
                   void *arg)
{
    (void)c;
    (void)os_err;
    streamer *s = arg;
    if (err != TF_OK) {
        s->end = err;
        tio_ctr_add(&s->done, 1);
        return;
    }
    /* message k: 4-byte index, then (k % 300) bytes of pattern k */
    uint32_t k = 0;
    if (len < 4) {
        s->order_ok = false;
        return;
    }
    memcpy(&k, data, 4);
    if (k != (uint32_t)s->count || len != 4 + k % 300 || !tu_check(data + 4, len - 4, k))
        s->order_ok = false;
    s->count++;
    s->bytes += len;
    s->sum += k;
    tio_tick();
}

/* 100k small frames written by a raw peer in random-size pieces: every one, in order. */
static void test_async_conn_stream_100k_random_writes(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    int raw;
    tf_async_conn *c = tu_pair_raw(&f, NULL, &raw);
    streamer s = {.order_ok = true};
    tio_ctr_init(&s.done);
    assert_int_equal(tf_async_conn_stream(c, on_msg, &s), TF_OK);
    assert_true(tu_send_magic(raw));
    assert_true(tu_expect_magic(raw));
    long n = tio_iters("TF_TEST_STREAM_MSGS", 100000, 2, 4);
    size_t cap = 1 << 20, len = 0;
    uint8_t *wire = malloc(cap);
    uint64_t seed = 42;
    uint64_t want_sum = 0;
    for (long k = 0; k < n; k++) {
        uint32_t plen = 4 + (uint32_t)(k % 300);
        if (len + 4 + plen > cap) {
            /* write the batch in random pieces */
            size_t off = 0;
            while (off < len) {
                size_t piece = 1 + tio_rand(&seed) % 3000;
                if (piece > len - off)
                    piece = len - off;
                assert_true(tu_write_all(raw, wire + off, piece));
                off += piece;
            }
            len = 0;
        }
        wire[len] = (uint8_t)(plen >> 24);
        wire[len + 1] = (uint8_t)(plen >> 16);
        wire[len + 2] = (uint8_t)(plen >> 8);
        wire[len + 3] = (uint8_t)plen;
        uint32_t k32 = (uint32_t)k;
        memcpy(wire + len + 4, &k32, 4);
        tu_fill(wire + len + 8, plen - 4, k32);
        len += 4 + plen;
        want_sum += (uint64_t)k;
    }
    assert_true(tu_write_all(raw, wire, len));
    free(wire);
    close(raw);
    assert_true(tio_ctr_wait(&s.done, 1, 60000));
    assert_true(s.order_ok);
    assert_int_equal(s.count, n);
    assert_int_equal(s.sum, want_sum);
    assert_int_equal(s.end, TF_ERR_CLOSED);
    tio_ctr_destroy(&s.done);
    tf_async_conn_free(c);
    tu_fx_end(&f);
}

/* Regression (issue 15, found by fuzz/fuzz_conn.c): in stream mode, an empty frame whose
 * 4-byte prefix was cut between two reads completes in the rx machine without a target ever
 * bound, and was then handed to the head receive -- there is none in stream mode: a NULL
 * dereference on the loop thread. A 7-byte read buffer cuts "00 00 00 02 a b | 00 00 00 00"
 * after the first prefix byte of the empty frame. */
typedef struct collector {
    tio_ctr done;
    int n;
    size_t len[4];
    char data[4][8];
    tf_err end;
} collector;

static void collect(tf_async_conn *c, tf_err err, int os_err, const uint8_t *data, size_t len,
                    void *arg)
{
    (void)c;
    (void)os_err;
    collector *k = arg;
    if (err != TF_OK) {
        k->end = err;
        tio_ctr_add(&k->done, 1);
        return;
    }
    if (k->n < 4 && len <= 8) {
        k->len[k->n] = len;
        if (len)
            memcpy(k->data[k->n], data, len);
    }
    k->n++;
}

static void test_async_conn_stream_empty_frame_cut_in_prefix(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    tf_tcp_config cfg = tu_cfg_default();
    cfg.handshake = false;
    cfg.read_buffer = 7;
    int raw;
    tf_async_conn *c = tu_pair_raw(&f, &cfg, &raw);
    collector k = {.end = TF_OK};
    tio_ctr_init(&k.done);
    assert_int_equal(tf_async_conn_stream(c, collect, &k), TF_OK);
    static const uint8_t wire[10] = {0, 0, 0, 2, 'a', 'b', 0, 0, 0, 0};
    assert_true(tu_write_all(raw, wire, sizeof wire));
    close(raw);
    assert_true(tio_ctr_wait(&k.done, 1, 60000));
    assert_int_equal(k.n, 2);
    assert_int_equal(k.len[0], 2);
    assert_memory_equal(k.data[0], "ab", 2);
    assert_int_equal(k.len[1], 0);
    assert_int_equal(k.end, TF_ERR_CLOSED);
    tio_ctr_destroy(&k.done);
    tf_async_conn_free(c);
    tu_fx_end(&f);
}

/* A stream and pending receives exclude each other. */
static void test_async_conn_stream_excludes_recv(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    tf_async_conn *a, *b;
    tu_pair_async(&f, NULL, &a, &b);
    streamer s = {.order_ok = true};
    tio_ctr_init(&s.done);
    tf_future *r;
    assert_int_equal(tf_async_conn_recv_alloc(b, -1, &r), TF_OK);
    assert_int_equal(tf_async_conn_stream(b, on_msg, &s), TF_ERR_BAD_STATE);
    assert_int_equal(tf_async_conn_stream(a, on_msg, &s), TF_OK);
    tf_future *r2 = (tf_future *)1;
    assert_int_equal(tf_async_conn_recv_alloc(a, -1, &r2), TF_ERR_BAD_STATE);
    assert_null(r2);
    tf_async_conn_free(a);
    assert_int_equal(tu_fut_result(r, NULL, NULL), TF_ERR_CLOSED);
    assert_true(tio_ctr_wait(&s.done, 1, 10000));
    assert_int_equal(s.end, TF_ERR_CANCELLED);
    tio_ctr_destroy(&s.done);
    tf_async_conn_free(b);
    tu_fx_end(&f);
}

/* ---------------------------------------------------------------- bounds, backpressure */

static void on_writable(tf_async_conn *c, void *arg)
{
    (void)c;
    tio_ctr_add(arg, 1);
}

static void test_async_conn_busy_at_bound_then_writable(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    tf_tcp_config cfg = tu_cfg_default();
    cfg.sndbuf = 4096;
    cfg.send_queue_bytes = 256 * 1024;
    cfg.send_queue_msgs = 1000;
    cfg.send_low_water = 64 * 1024;
    int raw;
    tf_async_conn *c = tu_pair_raw(&f, &cfg, &raw);
    assert_true(tu_send_magic(raw));
    assert_true(tu_expect_magic(raw));
    tio_ctr w;
    tio_ctr_init(&w);
    assert_int_equal(tf_async_conn_on_writable(c, on_writable, &w), TF_OK);
    static uint8_t chunk[16384];
    tf_future *fs[256];
    int k = 0;
    tf_err rc = TF_OK;
    while (k < 256 && (rc = tf_async_conn_send(c, chunk, sizeof chunk, -1, &fs[k])) == TF_OK)
        k++;
    assert_int_equal(rc, TF_ERR_BUSY);
    assert_true(k >= 15 && k <= 17); /* 256 KiB of 16 KiB messages queued, then BUSY */
    assert_int_equal(tio_ctr_get(&w), 0);
    /* The peer reads everything: the queue drains and the callback comes once. */
    for (int i = 0; i < k; i++) {
        uint8_t buf[sizeof chunk];
        uint32_t len;
        assert_true(tu_read_frame(raw, buf, sizeof buf, &len));
        assert_int_equal(len, sizeof chunk);
    }
    for (int i = 0; i < k; i++)
        assert_int_equal(tu_fut_result(fs[i], NULL, NULL), TF_OK);
    assert_true(tio_ctr_wait(&w, 1, 10000));
    assert_int_equal(tu_send_wait(c, chunk, 10), TF_OK);
    tio_ctr_destroy(&w);
    tf_async_conn_free(c);
    close(raw);
    tu_fx_end(&f);
}

static void test_async_conn_recv_queue_bound(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    tf_tcp_config cfg = tu_cfg_default();
    cfg.recv_queue_ops = 3;
    tf_async_conn *a, *b;
    tu_pair_async(&f, &cfg, &a, &b);
    tf_future *r[4];
    for (int i = 0; i < 3; i++)
        assert_int_equal(tf_async_conn_recv_alloc(b, -1, &r[i]), TF_OK);
    assert_int_equal(tf_async_conn_recv_alloc(b, -1, &r[3]), TF_ERR_BUSY);
    tf_async_conn_free(b);
    for (int i = 0; i < 3; i++)
        assert_int_equal(tu_fut_result(r[i], NULL, NULL), TF_ERR_CANCELLED);
    tf_async_conn_free(a);
    tu_fx_end(&f);
}

/* ---------------------------------------------------------------- close, abort, free */

static void test_async_conn_graceful_close_flushes(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    tf_async_conn *a, *b;
    tu_pair_async(&f, NULL, &a, &b);
    enum { N = 50 };
    static uint8_t payload[N][1000];
    tf_future *s[N], *cl;
    for (int i = 0; i < N; i++) {
        tu_fill(payload[i], sizeof payload[i], (uint32_t)i);
        assert_int_equal(tf_async_conn_send(a, payload[i], sizeof payload[i], -1, &s[i]), TF_OK);
    }
    assert_int_equal(tf_async_conn_close(a, &cl), TF_OK);
    tf_future *x = (tf_future *)1;
    assert_int_equal(tf_async_conn_send(a, "late", 4, -1, &x), TF_ERR_BAD_STATE);
    assert_int_equal(tf_async_conn_close(a, &x), TF_ERR_BAD_STATE);
    for (int i = 0; i < N; i++) {
        tf_future *r;
        assert_int_equal(tf_async_conn_recv_alloc(b, -1, &r), TF_OK);
        size_t n = 0;
        void *owned = NULL;
        assert_int_equal(tu_fut_result(r, &n, &owned), TF_OK);
        assert_int_equal(n, 1000);
        assert_true(tu_check(owned, n, (uint32_t)i));
        free(owned);
    }
    tf_future *r;
    assert_int_equal(tf_async_conn_recv_alloc(b, -1, &r), TF_OK);
    assert_int_equal(tu_fut_result(r, NULL, NULL), TF_ERR_CLOSED);
    for (int i = 0; i < N; i++)
        assert_int_equal(tu_fut_result(s[i], NULL, NULL), TF_OK);
    tf_async_conn_free(b); /* b closes: a's linger sees the peer's close */
    assert_int_equal(tu_fut_result(cl, NULL, NULL), TF_OK);
    tf_async_conn_free(a);
    tu_fx_end(&f);
}

/* Regression (found by tfcat): closing after the peer's clean close was seen gives OK, not
 * CLOSED: nothing was left unsent. Both for a receive and for a stream that saw the close. */
static void test_async_conn_close_after_peer_closed_is_ok(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    for (int stream = 0; stream < 2; stream++) {
        tf_async_conn *a, *b;
        tu_pair_async(&f, NULL, &a, &b);
        assert_int_equal(tu_send_wait(b, "hi", 2), TF_OK);
        streamer s = {.order_ok = true};
        tio_ctr_init(&s.done);
        tf_future *r = NULL, *ca, *cb;
        if (stream)
            assert_int_equal(tf_async_conn_stream(b, on_msg, &s), TF_OK);
        else
            assert_int_equal(tf_async_conn_recv_alloc(b, -1, &r), TF_OK);
        assert_int_equal(tf_async_conn_close(a, &ca), TF_OK);
        if (stream) {
            assert_true(tio_ctr_wait(&s.done, 1, 30000));
            assert_int_equal(s.end, TF_ERR_CLOSED);
        } else {
            assert_int_equal(tu_fut_result(r, NULL, NULL), TF_ERR_CLOSED);
        }
        assert_int_equal(tf_async_conn_close(b, &cb), TF_OK);
        assert_int_equal(tu_fut_result(cb, NULL, NULL), TF_OK);
        assert_int_equal(tu_fut_result(ca, NULL, NULL), TF_OK);
        tio_ctr_destroy(&s.done);
        tf_async_conn_free(a);
        tf_async_conn_free(b);
    }
    tu_fx_end(&f);
}

static void test_async_conn_close_linger_timeout(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    tf_tcp_config cfg = tu_cfg_default();
    cfg.linger_ms = 50;
    int raw;
    tf_async_conn *c = tu_pair_raw(&f, &cfg, &raw);
    assert_true(tu_send_magic(raw));
    assert_true(tu_expect_magic(raw));
    tf_future *cl;
    assert_int_equal(tu_send_wait(c, "bye", 3), TF_OK);
    assert_int_equal(tf_async_conn_close(c, &cl), TF_OK);
    assert_int_equal(tu_fut_result(cl, NULL, NULL), TF_ERR_TIMEOUT); /* the peer never closed */
    char buf[8];
    uint32_t len;
    assert_true(tu_read_frame(raw, buf, sizeof buf, &len));
    assert_int_equal(len, 3);
    assert_int_equal(read(raw, buf, 1), 0); /* our side was shut down */
    tf_async_conn_free(c);
    close(raw);
    tu_fx_end(&f);
}

static void test_async_conn_abort_resets(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    tf_async_conn *a, *b;
    tu_pair_async(&f, NULL, &a, &b);
    tf_future *r;
    assert_int_equal(tf_async_conn_recv_alloc(a, -1, &r), TF_OK);
    assert_int_equal(tf_async_conn_abort(a), TF_OK);
    assert_int_equal(tu_fut_result(r, NULL, NULL), TF_ERR_CANCELLED);
    assert_int_equal(tf_async_conn_recv_alloc(b, -1, &r), TF_OK);
    tf_err e = tu_fut_result(r, NULL, NULL);
    assert_true(e == TF_ERR_CLOSED || e == TF_ERR_IO);
    tf_async_conn_free(a);
    tf_async_conn_free(b);
    tu_fx_end(&f);
}

/* Free from another thread with sends and receives in flight: every future resolves once. */
static void test_async_conn_free_with_ops_in_flight(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    int raw;
    tf_async_conn *c = tu_pair_raw(&f, NULL, &raw);
    assert_true(tu_send_magic(raw));
    enum { N = 64 };
    tf_future *r[N], *s[N];
    static uint8_t big[256 * 1024];
    for (int i = 0; i < N; i++) {
        assert_int_equal(tf_async_conn_recv_alloc(c, -1, &r[i]), TF_OK);
        assert_int_equal(tf_async_conn_send(c, big, sizeof big, -1, &s[i]), TF_OK);
    }
    tf_async_conn_free(c);
    for (int i = 0; i < N; i++) {
        assert_int_equal(tu_fut_result(r[i], NULL, NULL), TF_ERR_CANCELLED);
        tf_err e = tu_fut_result(s[i], NULL, NULL);
        assert_true(e == TF_ERR_CANCELLED || e == TF_OK);
    }
    close(raw);
    tu_fx_end(&f);
}

typedef struct selfkill {
    tf_async_op op;
    tio_ctr done;
    int calls;
    tf_err err;
} selfkill;

static void on_recv_free_self(tf_async_conn *c, tf_async_op *op, tf_err err, int os_err,
                              uint8_t *data, size_t len, void *arg)
{
    (void)op;
    (void)os_err;
    (void)len;
    selfkill *k = arg;
    k->calls++;
    k->err = err;
    free(data);
    if (k->calls == 1)
        tf_async_conn_free(c); /* from its own callback */
    tio_ctr_add(&k->done, 1);
}

static void test_async_conn_free_from_own_callback(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    tf_async_conn *a, *b;
    tu_pair_async(&f, NULL, &a, &b);
    selfkill k = {0};
    tio_ctr_init(&k.done);
    static tf_async_op more[3];
    assert_int_equal(tf_async_conn_recv_alloc_op(b, &k.op, -1, on_recv_free_self, &k), TF_OK);
    for (int i = 0; i < 3; i++)
        assert_int_equal(tf_async_conn_recv_alloc_op(b, &more[i], -1, on_recv_free_self, &k),
                         TF_OK);
    assert_int_equal(tu_send_wait(a, "die", 3), TF_OK);
    assert_true(tio_ctr_wait(&k.done, 4, 10000));
    assert_int_equal(k.calls, 4); /* the first with the message, then three CANCELLED */
    assert_int_equal(k.err, TF_ERR_CANCELLED);
    tio_ctr_destroy(&k.done);
    tf_async_conn_free(a);
    tu_fx_end(&f);
}

/* The loop stops with operations in flight: each future resolves with SHUTDOWN. */
static void test_async_conn_loop_stop_with_ops_in_flight(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    tf_async_conn *a, *b;
    tu_pair_async(&f, NULL, &a, &b);
    tf_future *r[8];
    for (int i = 0; i < 8; i++)
        assert_int_equal(tf_async_conn_recv_alloc(a, -1, &r[i]), TF_OK);
    assert_int_equal(tf_evb_stop(f.evb), TF_OK);
    for (int i = 0; i < 8; i++)
        assert_int_equal(tu_fut_result(r[i], NULL, NULL), TF_ERR_SHUTDOWN);
    tf_future *x = (tf_future *)1;
    assert_int_equal(tf_async_conn_send(b, "x", 1, -1, &x), TF_ERR_SHUTDOWN);
    assert_null(x);
    tf_async_conn_free(a);
    tf_async_conn_free(b);
    tu_fx_end(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TIO_TEST(test_async_conn_stream_100k_random_writes),
        TIO_TEST(test_async_conn_stream_empty_frame_cut_in_prefix),
        TIO_TEST(test_async_conn_stream_excludes_recv),
        TIO_TEST(test_async_conn_busy_at_bound_then_writable),
        TIO_TEST(test_async_conn_recv_queue_bound),
        TIO_TEST(test_async_conn_graceful_close_flushes),
        TIO_TEST(test_async_conn_close_after_peer_closed_is_ok),
        TIO_TEST(test_async_conn_close_linger_timeout),
        TIO_TEST(test_async_conn_abort_resets),
        TIO_TEST(test_async_conn_free_with_ops_in_flight),
        TIO_TEST(test_async_conn_free_from_own_callback),
        TIO_TEST(test_async_conn_loop_stop_with_ops_in_flight),
    };
    tio_filter_from_env();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
