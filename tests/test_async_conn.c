/* tests/test_async_conn.c -- tf_async_conn over socketpairs and raw peers: span/alloc/stream
 * receives, futures and callbacks, large and empty messages, poison (too small, too large,
 * closed, truncated, bad magic), queued sends and receives in order, BUSY and the writable
 * callback, timeouts, graceful close and abort, free with operations in flight (from another
 * thread and from the connection's own callback), a loop stopped with operations in flight,
 * and the never-hang test: back-to-back round trips, each submitted the moment the previous
 * future resolved. Every test checks that no fd leaked. */
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
#include "tu_net.h"

/* ---------------------------------------------------------------- fixture */

typedef struct fx {
    tf_evb *evb;
    int fds0;
} fx;

static void fx_start(fx *f)
{
    f->fds0 = tu_fd_count();
    assert_int_equal(tf_evb_new(&f->evb), TF_OK);
    assert_int_equal(tf_evb_start(f->evb), TF_OK);
}

static void fx_end(fx *f)
{
    assert_int_equal(tf_evb_free(f->evb), TF_OK);
    assert_int_equal(tu_fd_count(), f->fds0);
}

static tf_tcp_config cfg_default(void)
{
    tf_tcp_config c;
    tf_tcp_config_init(&c);
    return c;
}

/* Two async connections over a socketpair, both with the handshake. */
static void pair_async(fx *f, const tf_tcp_config *cfg, tf_async_conn **a, tf_async_conn **b)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(tf_async_conn_from_fd(f->evb, sv[0], cfg, a, NULL), TF_OK);
    assert_int_equal(tf_async_conn_from_fd(f->evb, sv[1], cfg, b, NULL), TF_OK);
}

/* An async connection and a raw socket peer (*raw; the test closes it). */
static tf_async_conn *pair_raw(fx *f, const tf_tcp_config *cfg, int *raw)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    tf_async_conn *c = NULL;
    assert_int_equal(tf_async_conn_from_fd(f->evb, sv[0], cfg, &c, NULL), TF_OK);
    *raw = sv[1];
    return c;
}

static tf_err fut_result(tf_future *fu, size_t *size, void **owned)
{
    assert_non_null(fu);
    assert_int_equal(tf_future_wait(fu), TF_OK);
    tf_err e = tf_future_get(fu, size, owned);
    tf_future_free(fu);
    return e;
}

static tf_err send_wait(tf_async_conn *c, const void *buf, size_t len)
{
    tf_future *fu = NULL;
    tf_err rc = tf_async_conn_send(c, buf, len, -1, &fu);
    if (rc != TF_OK)
        return rc;
    return fut_result(fu, NULL, NULL);
}

/* ---------------------------------------------------------------- basics */

static void test_async_conn_send_recv_span_and_alloc(void **state)
{
    (void)state;
    fx f;
    fx_start(&f);
    tf_async_conn *a, *b;
    pair_async(&f, NULL, &a, &b);
    char buf[64];
    tf_future *r1, *r2, *s1, *s2;
    assert_int_equal(tf_async_conn_recv(b, buf, sizeof buf, -1, &r1), TF_OK);
    assert_int_equal(tf_async_conn_recv_alloc(b, -1, &r2), TF_OK);
    assert_int_equal(tf_async_conn_send(a, "hello", 5, -1, &s1), TF_OK);
    assert_int_equal(tf_async_conn_send(a, "world!", 6, -1, &s2), TF_OK);
    size_t n = 0;
    void *owned = NULL;
    assert_int_equal(fut_result(s1, &n, NULL), TF_OK);
    assert_int_equal(n, 5);
    assert_int_equal(fut_result(s2, &n, NULL), TF_OK);
    assert_int_equal(fut_result(r1, &n, NULL), TF_OK);
    assert_int_equal(n, 5);
    assert_memory_equal(buf, "hello", 5);
    assert_int_equal(fut_result(r2, &n, &owned), TF_OK);
    assert_int_equal(n, 6);
    assert_memory_equal(owned, "world!", 6);
    free(owned);
    /* and back the other way, through the generic view */
    tf_future *g;
    assert_int_equal(tf_conn_send(tf_async_conn_base(b), "back", 4, &g), TF_OK);
    assert_int_equal(fut_result(g, NULL, NULL), TF_OK);
    assert_int_equal(tf_conn_recv_alloc(tf_async_conn_base(a), &g), TF_OK);
    assert_int_equal(fut_result(g, &n, &owned), TF_OK);
    assert_int_equal(n, 4);
    assert_memory_equal(owned, "back", 4);
    free(owned);
    assert_int_equal(tf_async_conn_error(a, NULL), TF_OK);
    tf_conn_free(tf_async_conn_base(a));
    tf_async_conn_free(b);
    fx_end(&f);
}

static void test_async_conn_empty_message(void **state)
{
    (void)state;
    fx f;
    fx_start(&f);
    tf_async_conn *a, *b;
    pair_async(&f, NULL, &a, &b);
    char buf[4];
    tf_future *r1, *r2;
    assert_int_equal(tf_async_conn_recv(b, buf, sizeof buf, -1, &r1), TF_OK);
    assert_int_equal(tf_async_conn_recv_alloc(b, -1, &r2), TF_OK);
    assert_int_equal(send_wait(a, NULL, 0), TF_OK);
    assert_int_equal(send_wait(a, "", 0), TF_OK);
    size_t n = 99;
    void *owned = (void *)1;
    assert_int_equal(fut_result(r1, &n, NULL), TF_OK);
    assert_int_equal(n, 0);
    assert_int_equal(fut_result(r2, &n, &owned), TF_OK);
    assert_int_equal(n, 0);
    assert_null(owned);
    tf_async_conn_free(a);
    tf_async_conn_free(b);
    fx_end(&f);
}

/* 64 MiB each way: the receive target gets the payload straight from the socket. */
static void test_async_conn_large_64mib(void **state)
{
    (void)state;
    fx f;
    fx_start(&f);
    tf_async_conn *a, *b;
    tf_tcp_config cfg = cfg_default();
    cfg.send_queue_bytes = 3 * (int64_t)TF_DEFAULT_MAX_LEN; /* two 64 MiB sends queued at once */
    pair_async(&f, &cfg, &a, &b);
    size_t len = TF_DEFAULT_MAX_LEN;
    uint8_t *src = malloc(len), *dst = malloc(len);
    assert_non_null(src);
    assert_non_null(dst);
    tu_fill(src, len, 7);
    tf_future *r1, *r2, *s1, *s2;
    assert_int_equal(tf_async_conn_recv(b, dst, len, -1, &r1), TF_OK);
    assert_int_equal(tf_async_conn_recv_alloc(b, -1, &r2), TF_OK);
    assert_int_equal(tf_async_conn_send(a, src, len, -1, &s1), TF_OK);
    assert_int_equal(tf_async_conn_send(a, src, len, -1, &s2), TF_OK);
    size_t n = 0;
    void *owned = NULL;
    assert_int_equal(fut_result(r1, &n, NULL), TF_OK);
    assert_int_equal(n, len);
    assert_true(tu_check(dst, len, 7));
    assert_int_equal(fut_result(r2, &n, &owned), TF_OK);
    assert_int_equal(n, len);
    assert_true(tu_check(owned, len, 7));
    assert_int_equal(fut_result(s1, NULL, NULL), TF_OK);
    assert_int_equal(fut_result(s2, NULL, NULL), TF_OK);
    free(owned);
    free(src);
    free(dst);
    tf_async_conn_free(a);
    tf_async_conn_free(b);
    fx_end(&f);
}

static void test_async_conn_many_messages_in_order(void **state)
{
    (void)state;
    fx f;
    fx_start(&f);
    tf_async_conn *a, *b;
    pair_async(&f, NULL, &a, &b);
    enum { N = 2000 };
    static uint32_t vals[N], got[N];
    static tf_future *sf[N], *rf[N];
    for (uint32_t i = 0; i < N; i++) {
        vals[i] = i * 2654435761u;
        assert_int_equal(tf_async_conn_recv(b, &got[i], sizeof got[i], -1, &rf[i]), TF_OK);
    }
    for (uint32_t i = 0; i < N; i++)
        assert_int_equal(tf_async_conn_send(a, &vals[i], sizeof vals[i], -1, &sf[i]), TF_OK);
    for (uint32_t i = 0; i < N; i++) {
        assert_int_equal(fut_result(sf[i], NULL, NULL), TF_OK);
        size_t n = 0;
        assert_int_equal(fut_result(rf[i], &n, NULL), TF_OK);
        assert_int_equal(n, 4);
        assert_int_equal(got[i], vals[i]);
    }
    tf_async_conn_free(a);
    tf_async_conn_free(b);
    fx_end(&f);
}

/* ---------------------------------------------------------------- poison */

static void test_async_conn_span_too_small_poisons(void **state)
{
    (void)state;
    fx f;
    fx_start(&f);
    tf_async_conn *a, *b;
    pair_async(&f, NULL, &a, &b);
    char small[3], big[16];
    tf_future *r1, *r2;
    assert_int_equal(tf_async_conn_recv(b, small, sizeof small, -1, &r1), TF_OK);
    assert_int_equal(tf_async_conn_recv(b, big, sizeof big, -1, &r2), TF_OK);
    assert_int_equal(send_wait(a, "four", 4), TF_OK);
    assert_int_equal(fut_result(r1, NULL, NULL), TF_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(fut_result(r2, NULL, NULL), TF_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(tf_async_conn_error(b, NULL), TF_ERR_BUFFER_TOO_SMALL);
    tf_future *r3 = (tf_future *)1;
    assert_int_equal(tf_async_conn_recv(b, big, sizeof big, -1, &r3), TF_ERR_BUFFER_TOO_SMALL);
    assert_null(r3);
    assert_int_equal(tf_async_conn_send(b, "x", 1, -1, &r3), TF_ERR_BUFFER_TOO_SMALL);
    tf_async_conn_free(a);
    tf_async_conn_free(b);
    fx_end(&f);
}

/* A length over max_recv_len poisons without allocating; the sender refuses its own. */
static void test_async_conn_too_large_both_ways(void **state)
{
    (void)state;
    fx f;
    fx_start(&f);
    tf_tcp_config cfg = cfg_default();
    cfg.max_recv_len = 100;
    cfg.max_send_len = 100;
    int raw;
    tf_async_conn *c = pair_raw(&f, &cfg, &raw);
    assert_true(tu_send_magic(raw));
    assert_true(tu_expect_magic(raw));
    static uint8_t big[101];
    tf_future *fu = (tf_future *)1;
    assert_int_equal(tf_async_conn_send(c, big, sizeof big, -1, &fu), TF_ERR_TOO_LARGE);
    assert_null(fu);
    assert_int_equal(tf_async_conn_error(c, NULL), TF_OK); /* a refusal, not a poison */
    tu_alloc_count(-1);
    assert_int_equal(tf_async_conn_recv_alloc(c, -1, &fu), TF_OK);
    /* 0x80000000 and more: compared unsigned */
    const uint8_t hdr[4] = {0x80, 0x00, 0x00, 0x00};
    assert_true(tu_write_all(raw, hdr, 4));
    assert_int_equal(fut_result(fu, NULL, NULL), TF_ERR_TOO_LARGE);
    assert_int_equal(tu_alloc_calls(), 0);
    tu_alloc_reset();
    assert_int_equal(tf_async_conn_error(c, NULL), TF_ERR_TOO_LARGE);
    tf_async_conn_free(c);
    close(raw);
    fx_end(&f);
}

static void test_async_conn_peer_closed_between_and_inside(void **state)
{
    (void)state;
    fx f;
    fx_start(&f);
    for (int inside = 0; inside < 2; inside++) {
        for (int alloc = 0; alloc < 2; alloc++) {
            int raw;
            tf_async_conn *c = pair_raw(&f, NULL, &raw);
            assert_true(tu_send_magic(raw));
            assert_true(tu_expect_magic(raw)); /* closing with unread data would be a reset */
            assert_true(tu_write_frame(raw, "ok", 2));
            if (inside)
                assert_true(tu_write_all(raw, "\0\0\0\x06" "abc", 7));
            char buf[16];
            tf_future *r1, *r2;
            if (alloc) {
                assert_int_equal(tf_async_conn_recv_alloc(c, -1, &r1), TF_OK);
                assert_int_equal(tf_async_conn_recv_alloc(c, -1, &r2), TF_OK);
            } else {
                assert_int_equal(tf_async_conn_recv(c, buf, sizeof buf, -1, &r1), TF_OK);
                assert_int_equal(tf_async_conn_recv(c, buf + 8, 8, -1, &r2), TF_OK);
            }
            size_t n = 0;
            void *owned = NULL;
            assert_int_equal(fut_result(r1, &n, alloc ? &owned : NULL), TF_OK);
            assert_int_equal(n, 2);
            free(owned);
            close(raw);
            tf_err want = inside ? TF_ERR_TRUNCATED : TF_ERR_CLOSED;
            assert_int_equal(fut_result(r2, &n, NULL), want);
            assert_int_equal(tf_async_conn_error(c, NULL), want);
            tf_future *s;
            assert_int_equal(tf_async_conn_send(c, "x", 1, -1, &s), want);
            tf_async_conn_free(c);
        }
    }
    fx_end(&f);
}

static void test_async_conn_bad_magic_and_early_close(void **state)
{
    (void)state;
    fx f;
    fx_start(&f);
    int raw;
    tf_async_conn *c = pair_raw(&f, NULL, &raw);
    tf_future *r;
    assert_int_equal(tf_async_conn_recv_alloc(c, -1, &r), TF_OK);
    assert_true(tu_write_all(raw, "UNIX", 4));
    assert_int_equal(fut_result(r, NULL, NULL), TF_ERR_BAD_MAGIC);
    tf_async_conn_free(c);
    close(raw);

    c = pair_raw(&f, NULL, &raw);
    assert_int_equal(tf_async_conn_recv_alloc(c, -1, &r), TF_OK);
    assert_true(tu_expect_magic(raw));
    assert_true(tu_write_all(raw, "UN", 2));
    close(raw);
    assert_int_equal(fut_result(r, NULL, NULL), TF_ERR_TRUNCATED);
    tf_async_conn_free(c);

    c = pair_raw(&f, NULL, &raw);
    assert_int_equal(tf_async_conn_recv_alloc(c, -1, &r), TF_OK);
    assert_true(tu_expect_magic(raw));
    close(raw);
    assert_int_equal(fut_result(r, NULL, NULL), TF_ERR_CLOSED);
    tf_async_conn_free(c);
    fx_end(&f);
}

static void test_async_conn_handshake_timeout(void **state)
{
    (void)state;
    fx f;
    fx_start(&f);
    tf_tcp_config cfg = cfg_default();
    cfg.handshake_timeout_ms = 50;
    int raw;
    tf_async_conn *c = pair_raw(&f, &cfg, &raw);
    tf_future *r;
    assert_int_equal(tf_async_conn_recv_alloc(c, -1, &r), TF_OK);
    assert_int_equal(fut_result(r, NULL, NULL), TF_ERR_TIMEOUT);
    tf_async_conn_free(c);
    close(raw);
    fx_end(&f);
}

static void test_async_conn_handshake_off_talks_plain_frames(void **state)
{
    (void)state;
    fx f;
    fx_start(&f);
    tf_tcp_config cfg = cfg_default();
    cfg.handshake = 0;
    int raw;
    tf_async_conn *c = pair_raw(&f, &cfg, &raw);
    assert_true(tu_write_frame(raw, "plain", 5));
    tf_future *r;
    assert_int_equal(tf_async_conn_recv_alloc(c, -1, &r), TF_OK);
    size_t n = 0;
    void *owned = NULL;
    assert_int_equal(fut_result(r, &n, &owned), TF_OK);
    assert_int_equal(n, 5);
    assert_memory_equal(owned, "plain", 5);
    free(owned);
    assert_int_equal(send_wait(c, "reply", 5), TF_OK);
    char buf[8];
    uint32_t len = 0;
    assert_true(tu_read_frame(raw, buf, sizeof buf, &len));
    assert_int_equal(len, 5);
    assert_memory_equal(buf, "reply", 5);
    tf_async_conn_free(c);
    close(raw);
    fx_end(&f);
}

/* Writing to a peer that is gone: an error, never SIGPIPE (default disposition kept). */
static void test_async_conn_send_to_dead_peer_no_sigpipe(void **state)
{
    (void)state;
    fx f;
    fx_start(&f);
    signal(SIGPIPE, SIG_DFL);
    int raw;
    tf_async_conn *c = pair_raw(&f, NULL, &raw);
    assert_true(tu_send_magic(raw));
    assert_true(tu_expect_magic(raw));
    close(raw);
    static uint8_t big[1 << 20];
    tf_err e = TF_OK;
    for (int i = 0; i < 8 && e == TF_OK; i++)
        e = send_wait(c, big, sizeof big);
    assert_int_equal(e, TF_ERR_IO);
    int os = 0;
    assert_int_equal(tf_async_conn_error(c, &os), TF_ERR_IO);
    assert_true(os == EPIPE || os == ECONNRESET);
    tf_async_conn_free(c);
    fx_end(&f);
}

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
    fx f;
    fx_start(&f);
    int raw;
    tf_async_conn *c = pair_raw(&f, NULL, &raw);
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
    fx_end(&f);
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
    fx f;
    fx_start(&f);
    tf_tcp_config cfg = cfg_default();
    cfg.handshake = false;
    cfg.read_buffer = 7;
    int raw;
    tf_async_conn *c = pair_raw(&f, &cfg, &raw);
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
    fx_end(&f);
}

/* A stream and pending receives exclude each other. */
static void test_async_conn_stream_excludes_recv(void **state)
{
    (void)state;
    fx f;
    fx_start(&f);
    tf_async_conn *a, *b;
    pair_async(&f, NULL, &a, &b);
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
    assert_int_equal(fut_result(r, NULL, NULL), TF_ERR_CLOSED);
    assert_true(tio_ctr_wait(&s.done, 1, 10000));
    assert_int_equal(s.end, TF_ERR_CANCELLED);
    tio_ctr_destroy(&s.done);
    tf_async_conn_free(b);
    fx_end(&f);
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
    fx f;
    fx_start(&f);
    tf_tcp_config cfg = cfg_default();
    cfg.sndbuf = 4096;
    cfg.send_queue_bytes = 256 * 1024;
    cfg.send_queue_msgs = 1000;
    cfg.send_low_water = 64 * 1024;
    int raw;
    tf_async_conn *c = pair_raw(&f, &cfg, &raw);
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
        assert_int_equal(fut_result(fs[i], NULL, NULL), TF_OK);
    assert_true(tio_ctr_wait(&w, 1, 10000));
    assert_int_equal(send_wait(c, chunk, 10), TF_OK);
    tio_ctr_destroy(&w);
    tf_async_conn_free(c);
    close(raw);
    fx_end(&f);
}

static void test_async_conn_recv_queue_bound(void **state)
{
    (void)state;
    fx f;
    fx_start(&f);
    tf_tcp_config cfg = cfg_default();
    cfg.recv_queue_ops = 3;
    tf_async_conn *a, *b;
    pair_async(&f, &cfg, &a, &b);
    tf_future *r[4];
    for (int i = 0; i < 3; i++)
        assert_int_equal(tf_async_conn_recv_alloc(b, -1, &r[i]), TF_OK);
    assert_int_equal(tf_async_conn_recv_alloc(b, -1, &r[3]), TF_ERR_BUSY);
    tf_async_conn_free(b);
    for (int i = 0; i < 3; i++)
        assert_int_equal(fut_result(r[i], NULL, NULL), TF_ERR_CANCELLED);
    tf_async_conn_free(a);
    fx_end(&f);
}

/* ---------------------------------------------------------------- timeouts */

static void test_async_conn_recv_timeout_keeps_connection(void **state)
{
    (void)state;
    fx f;
    fx_start(&f);
    tf_async_conn *a, *b;
    pair_async(&f, NULL, &a, &b);
    tf_future *r;
    assert_int_equal(tf_async_conn_recv_alloc(b, 30, &r), TF_OK);
    assert_int_equal(fut_result(r, NULL, NULL), TF_ERR_TIMEOUT);
    assert_int_equal(tf_async_conn_error(b, NULL), TF_OK);
    assert_int_equal(tf_async_conn_recv_alloc(b, -1, &r), TF_OK);
    assert_int_equal(send_wait(a, "late", 4), TF_OK);
    size_t n = 0;
    void *owned = NULL;
    assert_int_equal(fut_result(r, &n, &owned), TF_OK);
    assert_int_equal(n, 4);
    free(owned);
    tf_async_conn_free(a);
    tf_async_conn_free(b);
    fx_end(&f);
}

/* A frame half received when the timeout fires: the stream is out of step, so it poisons. */
static void test_async_conn_recv_timeout_mid_frame_poisons(void **state)
{
    (void)state;
    fx f;
    fx_start(&f);
    int raw;
    tf_async_conn *c = pair_raw(&f, NULL, &raw);
    assert_true(tu_send_magic(raw));
    assert_true(tu_write_all(raw, "\0\0\0\x10" "abc", 7));
    tf_future *r;
    assert_int_equal(tf_async_conn_recv_alloc(c, 50, &r), TF_OK);
    assert_int_equal(fut_result(r, NULL, NULL), TF_ERR_TIMEOUT);
    assert_int_equal(tf_async_conn_error(c, NULL), TF_ERR_TIMEOUT);
    tf_async_conn_free(c);
    close(raw);
    fx_end(&f);
}

/* ---------------------------------------------------------------- close, abort, free */

static void test_async_conn_graceful_close_flushes(void **state)
{
    (void)state;
    fx f;
    fx_start(&f);
    tf_async_conn *a, *b;
    pair_async(&f, NULL, &a, &b);
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
        assert_int_equal(fut_result(r, &n, &owned), TF_OK);
        assert_int_equal(n, 1000);
        assert_true(tu_check(owned, n, (uint32_t)i));
        free(owned);
    }
    tf_future *r;
    assert_int_equal(tf_async_conn_recv_alloc(b, -1, &r), TF_OK);
    assert_int_equal(fut_result(r, NULL, NULL), TF_ERR_CLOSED);
    for (int i = 0; i < N; i++)
        assert_int_equal(fut_result(s[i], NULL, NULL), TF_OK);
    tf_async_conn_free(b); /* b closes: a's linger sees the peer's close */
    assert_int_equal(fut_result(cl, NULL, NULL), TF_OK);
    tf_async_conn_free(a);
    fx_end(&f);
}

/* Regression (found by tfcat): closing after the peer's clean close was seen gives OK, not
 * CLOSED: nothing was left unsent. Both for a receive and for a stream that saw the close. */
static void test_async_conn_close_after_peer_closed_is_ok(void **state)
{
    (void)state;
    fx f;
    fx_start(&f);
    for (int stream = 0; stream < 2; stream++) {
        tf_async_conn *a, *b;
        pair_async(&f, NULL, &a, &b);
        assert_int_equal(send_wait(b, "hi", 2), TF_OK);
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
            assert_int_equal(fut_result(r, NULL, NULL), TF_ERR_CLOSED);
        }
        assert_int_equal(tf_async_conn_close(b, &cb), TF_OK);
        assert_int_equal(fut_result(cb, NULL, NULL), TF_OK);
        assert_int_equal(fut_result(ca, NULL, NULL), TF_OK);
        tio_ctr_destroy(&s.done);
        tf_async_conn_free(a);
        tf_async_conn_free(b);
    }
    fx_end(&f);
}

static void test_async_conn_close_linger_timeout(void **state)
{
    (void)state;
    fx f;
    fx_start(&f);
    tf_tcp_config cfg = cfg_default();
    cfg.linger_ms = 50;
    int raw;
    tf_async_conn *c = pair_raw(&f, &cfg, &raw);
    assert_true(tu_send_magic(raw));
    assert_true(tu_expect_magic(raw));
    tf_future *cl;
    assert_int_equal(send_wait(c, "bye", 3), TF_OK);
    assert_int_equal(tf_async_conn_close(c, &cl), TF_OK);
    assert_int_equal(fut_result(cl, NULL, NULL), TF_ERR_TIMEOUT); /* the peer never closed */
    char buf[8];
    uint32_t len;
    assert_true(tu_read_frame(raw, buf, sizeof buf, &len));
    assert_int_equal(len, 3);
    assert_int_equal(read(raw, buf, 1), 0); /* our side was shut down */
    tf_async_conn_free(c);
    close(raw);
    fx_end(&f);
}

static void test_async_conn_abort_resets(void **state)
{
    (void)state;
    fx f;
    fx_start(&f);
    tf_async_conn *a, *b;
    pair_async(&f, NULL, &a, &b);
    tf_future *r;
    assert_int_equal(tf_async_conn_recv_alloc(a, -1, &r), TF_OK);
    assert_int_equal(tf_async_conn_abort(a), TF_OK);
    assert_int_equal(fut_result(r, NULL, NULL), TF_ERR_CANCELLED);
    assert_int_equal(tf_async_conn_recv_alloc(b, -1, &r), TF_OK);
    tf_err e = fut_result(r, NULL, NULL);
    assert_true(e == TF_ERR_CLOSED || e == TF_ERR_IO);
    tf_async_conn_free(a);
    tf_async_conn_free(b);
    fx_end(&f);
}

/* Free from another thread with sends and receives in flight: every future resolves once. */
static void test_async_conn_free_with_ops_in_flight(void **state)
{
    (void)state;
    fx f;
    fx_start(&f);
    int raw;
    tf_async_conn *c = pair_raw(&f, NULL, &raw);
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
        assert_int_equal(fut_result(r[i], NULL, NULL), TF_ERR_CANCELLED);
        tf_err e = fut_result(s[i], NULL, NULL);
        assert_true(e == TF_ERR_CANCELLED || e == TF_OK);
    }
    close(raw);
    fx_end(&f);
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
    fx f;
    fx_start(&f);
    tf_async_conn *a, *b;
    pair_async(&f, NULL, &a, &b);
    selfkill k = {0};
    tio_ctr_init(&k.done);
    static tf_async_op more[3];
    assert_int_equal(tf_async_conn_recv_alloc_op(b, &k.op, -1, on_recv_free_self, &k), TF_OK);
    for (int i = 0; i < 3; i++)
        assert_int_equal(tf_async_conn_recv_alloc_op(b, &more[i], -1, on_recv_free_self, &k),
                         TF_OK);
    assert_int_equal(send_wait(a, "die", 3), TF_OK);
    assert_true(tio_ctr_wait(&k.done, 4, 10000));
    assert_int_equal(k.calls, 4); /* the first with the message, then three CANCELLED */
    assert_int_equal(k.err, TF_ERR_CANCELLED);
    tio_ctr_destroy(&k.done);
    tf_async_conn_free(a);
    fx_end(&f);
}

/* The loop stops with operations in flight: each future resolves with SHUTDOWN. */
static void test_async_conn_loop_stop_with_ops_in_flight(void **state)
{
    (void)state;
    fx f;
    fx_start(&f);
    tf_async_conn *a, *b;
    pair_async(&f, NULL, &a, &b);
    tf_future *r[8];
    for (int i = 0; i < 8; i++)
        assert_int_equal(tf_async_conn_recv_alloc(a, -1, &r[i]), TF_OK);
    assert_int_equal(tf_evb_stop(f.evb), TF_OK);
    for (int i = 0; i < 8; i++)
        assert_int_equal(fut_result(r[i], NULL, NULL), TF_ERR_SHUTDOWN);
    tf_future *x = (tf_future *)1;
    assert_int_equal(tf_async_conn_send(b, "x", 1, -1, &x), TF_ERR_SHUTDOWN);
    assert_null(x);
    tf_async_conn_free(a);
    tf_async_conn_free(b);
    fx_end(&f);
}

/* ---------------------------------------------------------------- threads, fd reuse */

typedef struct sender_arg {
    tf_async_conn *c;
    uint32_t id;
    int n;
    tf_err rc;
} sender_arg;

static void *sender_thread(void *p)
{
    sender_arg *a = p;
    a->rc = TF_OK;
    for (int i = 0; i < a->n && a->rc == TF_OK; i++) {
        uint32_t m[2] = {a->id, (uint32_t)i};
        tf_future *fu;
        a->rc = tf_async_conn_send(a->c, m, sizeof m, -1, &fu);
        if (a->rc == TF_OK) {
            tf_future_wait(fu);
            a->rc = tf_future_get(fu, NULL, NULL);
            tf_future_free(fu);
        }
        tio_tick();
    }
    return NULL;
}

/* Four threads send at once on one connection: every message arrives, each thread's in order. */
static void test_async_conn_concurrent_senders_keep_order(void **state)
{
    (void)state;
    fx f;
    fx_start(&f);
    tf_async_conn *a, *b;
    pair_async(&f, NULL, &a, &b);
    enum { T = 4 };
    int n = (int)tio_iters("TF_TEST_SENDER_MSGS", 5000, 2, 5);
    sender_arg args[T];
    pthread_t th[T];
    for (uint32_t t = 0; t < T; t++) {
        args[t] = (sender_arg){a, t, n, TF_OK};
        pthread_create(&th[t], NULL, sender_thread, &args[t]);
    }
    int next[T] = {0};
    bool ok = true;
    for (long i = 0; i < (long)T * n; i++) {
        uint32_t m[2];
        size_t len = 0;
        tf_future *r;
        assert_int_equal(tf_async_conn_recv(b, m, sizeof m, -1, &r), TF_OK);
        assert_int_equal(tf_future_wait(r), TF_OK);
        assert_int_equal(tf_future_get(r, &len, NULL), TF_OK);
        tf_future_free(r);
        if (len != sizeof m || m[0] >= T || m[1] != (uint32_t)next[m[0]]++)
            ok = false;
    }
    for (int t = 0; t < T; t++) {
        pthread_join(th[t], NULL);
        assert_int_equal(args[t].rc, TF_OK);
    }
    assert_true(ok);
    tf_async_conn_free(a);
    tf_async_conn_free(b);
    fx_end(&f);
}

/* Inside one loop callback: free a connection that has an event pending in the same epoll batch,
 * and create another on a socket that reuses its fd number. The stale event must not reach the
 * new connection, which then works normally. */
typedef struct reuse {
    tf_evb *evb;
    tf_async_conn *victim, *fresh;
    int peer_of_fresh;
    int victim_fd;
    int reused_fd;
} reuse;

static void reuse_task(void *p)
{
    reuse *r = p;
    tf_async_conn_free(r->victim);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return;
    r->reused_fd = sv[0];
    r->peer_of_fresh = sv[1];
    tf_async_conn_from_fd(r->evb, sv[0], NULL, &r->fresh, NULL);
}

static void test_async_conn_fd_reused_in_one_batch(void **state)
{
    (void)state;
    fx f;
    fx_start(&f);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    int raw = sv[1];
    reuse r = {.evb = f.evb, .victim_fd = sv[0]};
    assert_int_equal(tf_async_conn_from_fd(f.evb, sv[0], NULL, &r.victim, NULL), TF_OK);
    assert_true(tu_send_magic(raw));
    assert_true(tu_expect_magic(raw));
    tf_future *rf;
    assert_int_equal(tf_async_conn_recv_alloc(r.victim, -1, &rf), TF_OK);
    /* make the victim readable, then tear it down and reuse its number in one loop task */
    assert_true(tu_write_frame(raw, "stale", 5));
    assert_int_equal(tf_evb_dispatch_and_wait(f.evb, reuse_task, &r), TF_OK);
    tf_err e = fut_result(rf, NULL, NULL);
    assert_true(e == TF_OK || e == TF_ERR_CANCELLED);
    assert_non_null(r.fresh);
    assert_true(tu_send_magic(r.peer_of_fresh));
    assert_true(tu_expect_magic(r.peer_of_fresh));
    assert_true(tu_write_frame(r.peer_of_fresh, "fresh", 5));
    tf_future *fr;
    assert_int_equal(tf_async_conn_recv_alloc(r.fresh, -1, &fr), TF_OK);
    size_t n = 0;
    void *owned = NULL;
    assert_int_equal(fut_result(fr, &n, &owned), TF_OK);
    assert_int_equal(n, 5);
    assert_memory_equal(owned, "fresh", 5);
    free(owned);
    assert_int_equal(r.reused_fd, r.victim_fd); /* the number was reused in the same task */
    tf_async_conn_free(r.fresh);
    close(r.peer_of_fresh);
    close(raw);
    fx_end(&f);
}

/* ---------------------------------------------------------------- sync and async ends */

static void owned_free(void *p)
{
    free(p);
}

/* One socketpair, a sync end and an async end: span, owned (vector) and alloc sends and
 * receives in every combination, both ways. */
static void test_async_conn_with_sync_end_all_combinations(void **state)
{
    (void)state;
    fx f;
    fx_start(&f);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    tf_async_conn *a = NULL;
    assert_int_equal(tf_async_conn_from_fd(f.evb, sv[0], NULL, &a, NULL), TF_OK);
    tf_sync_conn *s = NULL;
    assert_int_equal(tf_sync_conn_from_fd(sv[1], NULL, &s, NULL, NULL), TF_OK);
    const size_t sizes[] = {0, 1, 100, 70000, 5u << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t len = sizes[i];
        uint32_t seed = (uint32_t)(i + 1);
        /* async span send -> sync span recv; async owned send -> sync alloc recv */
        uint8_t *src = malloc(len + 1), *own = malloc(len + 1), *dst = malloc(len + 1);
        tu_fill(src, len, seed);
        tu_fill(own, len, seed + 100);
        tf_future *f1, *f2;
        assert_int_equal(tf_async_conn_send(a, src, len, -1, &f1), TF_OK);
        assert_int_equal(tf_async_conn_send_owned(a, own, len, owned_free, -1, &f2), TF_OK);
        size_t n = 0;
        assert_int_equal(tf_sync_conn_recv(s, dst, len, &n, 30000), TF_OK);
        assert_int_equal(n, len);
        assert_true(tu_check(dst, len, seed));
        void *m = NULL;
        assert_int_equal(tf_sync_conn_recv_alloc(s, &m, &n, 30000), TF_OK);
        assert_int_equal(n, len);
        assert_true(tu_check(m, len, seed + 100));
        free(m);
        assert_int_equal(fut_result(f1, &n, NULL), TF_OK);
        assert_int_equal(n, len);
        assert_int_equal(fut_result(f2, NULL, NULL), TF_OK);
        /* sync send -> async span recv and async alloc recv */
        tf_future *r1, *r2;
        memset(dst, 0, len + 1);
        assert_int_equal(tf_async_conn_recv(a, dst, len, -1, &r1), TF_OK);
        assert_int_equal(tf_async_conn_recv_alloc(a, -1, &r2), TF_OK);
        assert_int_equal(tf_sync_conn_send(s, src, len, 30000), TF_OK);
        assert_int_equal(tf_sync_conn_send(s, src, len, 30000), TF_OK);
        assert_int_equal(fut_result(r1, &n, NULL), TF_OK);
        assert_int_equal(n, len);
        assert_true(tu_check(dst, len, seed));
        assert_int_equal(fut_result(r2, &n, &m), TF_OK);
        assert_int_equal(n, len);
        assert_true(tu_check(m, len, seed));
        free(m);
        free(src);
        free(dst);
    }
    /* the sync end half-closes: the async end sees CLOSED after the last message */
    tf_future *r;
    assert_int_equal(tf_sync_conn_send(s, "last", 4, 30000), TF_OK);
    assert_int_equal(tf_sync_conn_shutdown(s), TF_OK);
    assert_int_equal(tf_async_conn_recv_alloc(a, -1, &r), TF_OK);
    void *m = NULL;
    size_t n = 0;
    assert_int_equal(fut_result(r, &n, &m), TF_OK);
    assert_int_equal(n, 4);
    free(m);
    assert_int_equal(tf_async_conn_recv_alloc(a, -1, &r), TF_OK);
    assert_int_equal(fut_result(r, NULL, NULL), TF_ERR_CLOSED);
    tf_sync_conn_free(s);
    tf_async_conn_free(a);
    fx_end(&f);
}

/* ---------------------------------------------------------------- never hang */

typedef struct echo {
    tf_async_op op;
    uint8_t buf[64];
    tf_async_op sop;
} echo;

/* Loop-thread echo with callbacks only: receive, send it back, receive again. */
static void echo_on_recv(tf_async_conn *c, tf_async_op *op, tf_err err, int os_err, uint8_t *data,
                         size_t len, void *arg);

static void echo_on_sent(tf_async_conn *c, tf_async_op *op, tf_err err, int os_err,
                         uint8_t *data, size_t len, void *arg)
{
    (void)op;
    (void)os_err;
    (void)data;
    (void)len;
    echo *e = arg;
    if (err == TF_OK)
        tf_async_conn_recv_op(c, &e->op, e->buf, sizeof e->buf, -1, echo_on_recv, e);
}

static void echo_on_recv(tf_async_conn *c, tf_async_op *op, tf_err err, int os_err, uint8_t *data,
                         size_t len, void *arg)
{
    (void)op;
    (void)os_err;
    echo *e = arg;
    if (err == TF_OK)
        tf_async_conn_send_op(c, &e->sop, data, len, -1, echo_on_sent, e);
}

/* The uniflow hang: a thread submits its next send and receive the moment the previous
 * future resolves, back to back, under the no-progress watchdog. */
static void test_async_conn_never_hang_round_trips(void **state)
{
    (void)state;
    fx f;
    fx_start(&f);
    tf_async_conn *a, *b;
    pair_async(&f, NULL, &a, &b);
    static echo e;
    assert_int_equal(tf_async_conn_recv_op(b, &e.op, e.buf, sizeof e.buf, -1, echo_on_recv, &e),
                     TF_OK);
    long n = tio_iters("TF_TEST_ASYNC_ROUNDTRIPS", 1000000, 4, 10);
    long long t0 = tio_now_ms();
    uint8_t msg[64], got[64];
    for (long i = 0; i < n; i++) {
        memcpy(msg, &i, sizeof i);
        tf_future *s, *r;
        assert_int_equal(tf_async_conn_recv(a, got, sizeof got, -1, &r), TF_OK);
        assert_int_equal(tf_async_conn_send(a, msg, sizeof msg, -1, &s), TF_OK);
        assert_int_equal(fut_result(s, NULL, NULL), TF_OK);
        size_t len = 0;
        assert_int_equal(fut_result(r, &len, NULL), TF_OK);
        assert_int_equal(len, sizeof msg);
        if (memcmp(got, &i, sizeof i) != 0)
            fail_msg("round trip %ld: wrong payload", i);
        tio_tick();
    }
    long long ms = tio_now_ms() - t0;
    fprintf(stderr, "never-hang: %ld round trips in %lld ms (%.1f us each)\n", n, ms,
            n ? (double)ms * 1000.0 / (double)n : 0.0);
    tf_async_conn_free(a);
    tf_async_conn_free(b);
    fx_end(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TIO_TEST(test_async_conn_send_recv_span_and_alloc),
        TIO_TEST(test_async_conn_empty_message),
        TIO_TEST(test_async_conn_large_64mib),
        TIO_TEST(test_async_conn_many_messages_in_order),
        TIO_TEST(test_async_conn_span_too_small_poisons),
        TIO_TEST(test_async_conn_too_large_both_ways),
        TIO_TEST(test_async_conn_peer_closed_between_and_inside),
        TIO_TEST(test_async_conn_bad_magic_and_early_close),
        TIO_TEST(test_async_conn_handshake_timeout),
        TIO_TEST(test_async_conn_handshake_off_talks_plain_frames),
        TIO_TEST(test_async_conn_send_to_dead_peer_no_sigpipe),
        TIO_TEST(test_async_conn_stream_100k_random_writes),
        TIO_TEST(test_async_conn_stream_empty_frame_cut_in_prefix),
        TIO_TEST(test_async_conn_stream_excludes_recv),
        TIO_TEST(test_async_conn_busy_at_bound_then_writable),
        TIO_TEST(test_async_conn_recv_queue_bound),
        TIO_TEST(test_async_conn_recv_timeout_keeps_connection),
        TIO_TEST(test_async_conn_recv_timeout_mid_frame_poisons),
        TIO_TEST(test_async_conn_graceful_close_flushes),
        TIO_TEST(test_async_conn_close_after_peer_closed_is_ok),
        TIO_TEST(test_async_conn_close_linger_timeout),
        TIO_TEST(test_async_conn_abort_resets),
        TIO_TEST(test_async_conn_free_with_ops_in_flight),
        TIO_TEST(test_async_conn_free_from_own_callback),
        TIO_TEST(test_async_conn_loop_stop_with_ops_in_flight),
        TIO_TEST(test_async_conn_concurrent_senders_keep_order),
        TIO_TEST(test_async_conn_fd_reused_in_one_batch),
        TIO_TEST(test_async_conn_with_sync_end_all_combinations),
        TIO_TEST(test_async_conn_never_hang_round_trips),
    };
    tio_filter_from_env();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
