/* tests/test_async_peers.c -- the async connection against hostile or unusual peers (issue 25):
 * the half-close rule (a peer that sends its requests, shuts down its write side and reads the
 * replies gets every byte, 1 MiB to 16 MiB), and the end notification (tf_async_conn_on_end):
 * once, for a connection that dies while its owner waits for nothing (a paused stream with a
 * full send queue and a peer that resets), at once when set late, never after free. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

#include "tcpframe/async.h"
#include "test_io_util.h"
#include "tu_async.h"
#include "tu_net.h"

/* ---------------------------------------------------------------- an echo server end */

typedef struct echo {
    tio_ctr ended;     /* the close finished (its future resolved) */
    tf_err stream_end; /* the reason the stream ended */
    tf_err close_rc;
    long msgs;
} echo;

static void close_done(tf_future *f, void *arg)
{
    echo *e = arg;
    e->close_rc = tf_future_get(f, NULL, NULL);
    tf_future_free(f);
    tio_ctr_add(&e->ended, 1);
}

/* Echo every message; at the stream's end close gracefully (flush what is queued). */
static void echo_msg(tf_async_conn *c, tf_err err, int os_err, const uint8_t *data, size_t len,
                     void *arg)
{
    (void)os_err;
    echo *e = arg;
    if (err != TF_OK) {
        e->stream_end = err;
        tf_future *f = NULL;
        TIO_CHECK_EQ(tf_async_conn_close(c, &f), TF_OK);
        if (f)
            tf_future_then(f, close_done, e);
        return;
    }
    e->msgs++;
    uint8_t *copy = malloc(len ? len : 1);
    memcpy(copy, data, len);
    tf_future *f = NULL;
    TIO_CHECK_EQ(tf_async_conn_send_owned(c, copy, len, free, -1, &f), TF_OK);
    tf_future_free(f);
}

typedef struct writer {
    int raw;
    size_t each;
    int count;
    bool ok;
} writer;

static void *write_then_half_close(void *arg)
{
    writer *w = arg;
    uint8_t *buf = malloc(w->each);
    w->ok = true;
    for (int i = 0; i < w->count && w->ok; i++) {
        tu_fill(buf, w->each, (uint32_t)i);
        w->ok = tu_write_frame(w->raw, buf, (uint32_t)w->each);
        tio_tick();
    }
    free(buf);
    w->ok = w->ok && shutdown(w->raw, SHUT_WR) == 0;
    return NULL;
}

/* Issue 25.1: a client sends frames, shuts down its write side, then reads until EOF: every echo
 * comes back (before: 0 of 1,048,580 bytes for one 1 MiB frame -- the clean EOF failed the queued
 * sends), then the server's own close (EOF). */
static void test_half_close_gets_every_reply(void **state)
{
    (void)state;
    static const struct {
        size_t each;
        int count;
    } cases[] = {{10, 1}, {1 << 20, 1}, {1 << 20, 8}, {16 << 20, 1}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        tu_fx f;
        tu_fx_start(&f);
        tf_tcp_config cfg = tu_cfg_default();
        cfg.sndbuf = 64 * 1024; /* many partial writes */
        int raw;
        tf_async_conn *c = tu_pair_raw(&f, &cfg, &raw);
        echo e = {0};
        tio_ctr_init(&e.ended);
        assert_int_equal(tf_async_conn_stream(c, echo_msg, &e), TF_OK);
        assert_true(tu_send_magic(raw));
        assert_true(tu_expect_magic(raw));
        writer w = {raw, cases[k].each, cases[k].count, false};
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, write_then_half_close, &w), 0);
        uint8_t *buf = malloc(cases[k].each);
        size_t got = 0;
        for (int i = 0; i < cases[k].count; i++) {
            uint32_t len = 0;
            assert_true(tu_read_frame(raw, buf, cases[k].each, &len));
            assert_int_equal(len, cases[k].each);
            assert_true(tu_check(buf, len, (uint32_t)i));
            got += 4 + len;
            tio_tick();
        }
        char x;
        assert_int_equal(read(raw, &x, 1), 0); /* then the server's FIN */
        pthread_join(t, NULL);
        assert_true(w.ok);
        assert_true(tio_ctr_wait(&e.ended, 1, 60000));
        assert_int_equal(e.stream_end, TF_ERR_CLOSED);
        assert_int_equal(e.close_rc, TF_OK);
        assert_int_equal(e.msgs, cases[k].count);
        print_message("half-close: %d x %zu B: %zu bytes echoed\n", cases[k].count,
                      cases[k].each, got);
        free(buf);
        tf_async_conn_free(c);
        close(raw);
        tio_ctr_destroy(&e.ended);
        tu_fx_end(&f);
    }
}

/* After the peer's clean EOF: receives fail with CLOSED, the stream cannot start, sends go on,
 * the connection's reason stays OK, and a close flushes and succeeds at once. */
static void test_half_close_rules(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    int raw;
    tf_async_conn *c = tu_pair_raw(&f, NULL, &raw);
    assert_true(tu_send_magic(raw));
    assert_true(tu_expect_magic(raw));
    tf_future *r;
    assert_int_equal(tf_async_conn_recv_alloc(c, -1, &r), TF_OK);
    assert_int_equal(shutdown(raw, SHUT_WR), 0);
    assert_int_equal(tu_fut_result(r, NULL, NULL), TF_ERR_CLOSED);
    assert_int_equal(tf_async_conn_error(c, NULL), TF_OK);
    assert_int_equal(tf_async_conn_recv_alloc(c, -1, &r), TF_ERR_CLOSED);
    assert_int_equal(tf_async_conn_stream(c, echo_msg, NULL), TF_ERR_CLOSED);
    for (int i = 0; i < 3; i++)
        assert_int_equal(tu_send_wait(c, "late reply", 10), TF_OK);
    tf_future *cl;
    assert_int_equal(tf_async_conn_close(c, &cl), TF_OK);
    assert_int_equal(tu_fut_result(cl, NULL, NULL), TF_OK);
    for (int i = 0; i < 3; i++) {
        char buf[16];
        uint32_t len = 0;
        assert_true(tu_read_frame(raw, buf, sizeof buf, &len));
        assert_int_equal(len, 10);
    }
    char x;
    assert_int_equal(read(raw, &x, 1), 0);
    assert_int_equal(tf_async_conn_error(c, NULL), TF_ERR_CLOSED);
    tf_async_conn_free(c);
    close(raw);
    tu_fx_end(&f);
}

/* ---------------------------------------------------------------- the end notification */

typedef struct ender {
    tio_ctr told;
    tf_err err;
    int os;
    bool free_it;
} ender;

static void on_end(tf_async_conn *c, tf_err err, int os_err, void *arg)
{
    ender *e = arg;
    e->err = err;
    e->os = os_err;
    if (e->free_it)
        tf_async_conn_free(c); /* allowed from it */
    tio_ctr_add(&e->told, 1);
}

/* Issue 25.2: a paused connection (no stream, no receive) with a send queue the peer never reads
 * dies by the peer's reset: the end notification comes once, with IO (before: nothing ever fired
 * and the connection, its fd and its queue leaked). It frees the connection from the callback. */
static void test_end_notification_paused_then_reset(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    tf_tcp_config cfg = tu_cfg_default();
    cfg.sndbuf = 4096;
    int lport;
    int lfd = tu_raw_listen(false, &lport);
    assert_true(lfd >= 0);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", lport);
    int cfd = tu_raw_connect(addr);
    int raw = accept(lfd, NULL, NULL);
    assert_true(cfd >= 0 && raw >= 0);
    tf_async_conn *c;
    assert_int_equal(tf_async_conn_from_fd(f.evb, cfd, &cfg, &c, NULL), TF_OK);
    assert_true(tu_send_magic(raw));
    assert_true(tu_expect_magic(raw));
    ender e = {.free_it = true};
    tio_ctr_init(&e.told);
    assert_int_equal(tf_async_conn_on_end(c, on_end, &e), TF_OK);
    static uint8_t big[4 << 20];
    tf_future *s;
    assert_int_equal(tf_async_conn_send(c, big, sizeof big, -1, &s), TF_OK); /* stuck */
    tu_close_rst(raw);
    assert_true(tio_ctr_wait(&e.told, 1, 60000));
    assert_int_equal(e.err, TF_ERR_IO);
    assert_true(e.os == ECONNRESET || e.os == EPIPE);
    assert_int_equal(tu_fut_result(s, NULL, NULL), TF_ERR_IO);
    close(lfd);
    tio_ctr_destroy(&e.told);
    tu_fx_end(&f); /* the connection was freed by its own notification: no fd left */
}

/* Set on a connection that is over already, it runs at once; it runs once for abort
 * (CANCELLED) and for a finished close (CLOSED); never after free; never for a half-close. */
static void test_end_notification_once_and_never_after_free(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    tf_async_conn *a, *b;
    tu_pair_async(&f, NULL, &a, &b);
    ender ea = {0}, eb = {0};
    tio_ctr_init(&ea.told);
    tio_ctr_init(&eb.told);
    assert_int_equal(tf_async_conn_on_end(a, on_end, &ea), TF_OK);
    assert_int_equal(tf_async_conn_on_end(b, on_end, &eb), TF_OK);
    assert_int_equal(tf_async_conn_abort(a), TF_OK);
    assert_true(tio_ctr_wait(&ea.told, 1, 10000));
    assert_int_equal(ea.err, TF_ERR_CANCELLED);
    /* b sees a reset (IO) or a clean close, depending on timing: once, or a half-close */
    tf_future *r;
    assert_int_equal(tf_async_conn_recv_alloc(b, -1, &r), TF_OK);
    tf_err rb = tu_fut_result(r, NULL, NULL);
    assert_true(rb == TF_ERR_IO || rb == TF_ERR_CLOSED);
    if (rb == TF_ERR_IO) {
        assert_true(tio_ctr_wait(&eb.told, 1, 10000));
        assert_int_equal(eb.err, TF_ERR_IO);
    } else {
        assert_int_equal(tio_ctr_get(&eb.told), 0); /* a half-close is not the end */
    }
    /* set late: at once */
    ender late = {0};
    tio_ctr_init(&late.told);
    assert_int_equal(tf_async_conn_on_end(a, on_end, &late), TF_OK);
    assert_true(tio_ctr_wait(&late.told, 1, 10000));
    assert_int_equal(late.err, TF_ERR_CANCELLED);
    assert_int_equal(tio_ctr_get(&ea.told), 1);
    tf_async_conn_free(a);
    long before = tio_ctr_get(&eb.told);
    tf_async_conn_free(b); /* free is not an end that is told */
    assert_int_equal(tio_ctr_get(&eb.told), before);
    tio_ctr_destroy(&ea.told);
    tio_ctr_destroy(&eb.told);
    tio_ctr_destroy(&late.told);
    tu_fx_end(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TIO_TEST(test_half_close_gets_every_reply),
        TIO_TEST(test_half_close_rules),
        TIO_TEST(test_end_notification_paused_then_reset),
        TIO_TEST(test_end_notification_once_and_never_after_free),
    };
    tio_filter_from_env();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
