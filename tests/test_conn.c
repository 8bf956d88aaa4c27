/* tests/test_conn.c -- the generic connection view (conn.h): per-operation timeouts of
 * tf_conn_send_for / tf_conn_recv_for / tf_conn_recv_alloc_for over a sync and an async
 * connection (issue 24). The peer is a raw socket that stays silent (so a timeout is the only
 * possible outcome: no wall-clock verdict), then speaks (so the same connection goes on).
 * Every test checks that it leaked no fd. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tcpframe/async.h"
#include "tcpframe/conn.h"
#include "tcpframe/sync.h"
#include "tu_async.h"
#include "tu_net.h"

#define DEADLINE_MS 10000
#define SHORT_MS 30

/* One connection under test, either mode, with its raw peer. */
typedef struct pair {
    tu_fx fx;
    bool async;
    tf_sync_conn *sc;
    tf_async_conn *ac;
    tf_conn *c;
    int raw;
} pair;

static void open_pair(pair *p, bool async)
{
    memset(p, 0, sizeof *p);
    p->async = async;
    tf_tcp_config cfg;
    tf_tcp_config_init(&cfg);
    cfg.handshake = 0; /* the raw peer speaks frames only */
    cfg.sndbuf = 65536;
    if (async) {
        tu_fx_start(&p->fx);
        p->ac = tu_pair_raw(&p->fx, &cfg, &p->raw);
        p->c = tf_async_conn_base(p->ac);
    } else {
        p->fx.fds0 = tu_fd_count();
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        tf_errmsg m;
        assert_int_equal(tf_sync_conn_from_fd(sv[0], &cfg, &p->sc, NULL, &m), TF_OK);
        p->raw = sv[1];
        p->c = tf_sync_conn_base(p->sc);
    }
}

static void close_pair(pair *p)
{
    tf_conn_free(p->c);
    close(p->raw);
    if (p->async)
        tu_fx_end(&p->fx);
    else
        assert_int_equal(tu_fd_count(), p->fx.fds0);
}

/* The outcome of a future (waited for), its size and owned pointer (freed). */
static tf_err outcome(tf_future *f, size_t *size)
{
    size_t n = 0;
    void *owned = NULL;
    tf_err e = tu_fut_result(f, &n, &owned);
    free(owned);
    if (size)
        *size = n;
    return e;
}

static void recv_times_out_then_works(bool async)
{
    pair p;
    open_pair(&p, async);
    char buf[16];
    tf_future *f = NULL;
    /* Silent peer: TIMEOUT, and no byte of a frame moved, so the connection is still good. */
    assert_int_equal(tf_conn_recv_for(p.c, buf, sizeof buf, SHORT_MS, &f), TF_OK);
    assert_int_equal(outcome(f, NULL), TF_ERR_TIMEOUT);
    assert_int_equal(tf_conn_error(p.c, NULL), TF_OK);
    assert_int_equal(tf_conn_recv_alloc_for(p.c, 0, &f), TF_OK);
    assert_int_equal(outcome(f, NULL), TF_ERR_TIMEOUT);
    assert_int_equal(tf_conn_error(p.c, NULL), TF_OK);
    /* The peer speaks: the same connection receives. */
    assert_true(tu_write_frame(p.raw, "abc", 3));
    assert_true(tu_write_frame(p.raw, "defgh", 5));
    size_t n = 0;
    assert_int_equal(tf_conn_recv_for(p.c, buf, sizeof buf, DEADLINE_MS, &f), TF_OK);
    assert_int_equal(outcome(f, &n), TF_OK);
    assert_int_equal(n, 3);
    assert_memory_equal(buf, "abc", 3);
    assert_int_equal(tf_conn_recv_alloc_for(p.c, DEADLINE_MS, &f), TF_OK);
    assert_int_equal(outcome(f, &n), TF_OK);
    assert_int_equal(n, 5);
    /* And it sends (a deadline that is met). */
    assert_int_equal(tf_conn_send_for(p.c, "xy", 2, DEADLINE_MS, &f), TF_OK);
    assert_int_equal(outcome(f, &n), TF_OK);
    assert_int_equal(n, 2);
    uint32_t len = 0;
    assert_true(tu_read_frame(p.raw, buf, sizeof buf, &len));
    assert_int_equal(len, 2);
    close_pair(&p);
}

static void test_conn_recv_for_times_out_sync(void **state)
{
    (void)state;
    recv_times_out_then_works(false);
}

static void test_conn_recv_for_times_out_async(void **state)
{
    (void)state;
    recv_times_out_then_works(true);
}

/* A message far larger than the socket buffers, to a peer that never reads: the send cannot
 * finish, so it times out; part of the frame went out, so the connection is poisoned. */
static void send_times_out(bool async)
{
    pair p;
    open_pair(&p, async);
    const size_t big = 8u << 20;
    char *buf = calloc(1, big);
    assert_non_null(buf);
    tf_future *f = NULL;
    assert_int_equal(tf_conn_send_for(p.c, buf, big, SHORT_MS, &f), TF_OK);
    assert_int_equal(outcome(f, NULL), TF_ERR_TIMEOUT);
    assert_int_not_equal(tf_conn_error(p.c, NULL), TF_OK);
    close_pair(&p);
    free(buf);
}

static void test_conn_send_for_times_out_sync(void **state)
{
    (void)state;
    send_times_out(false);
}

static void test_conn_send_for_times_out_async(void **state)
{
    (void)state;
    send_times_out(true);
}

static void bad_timeouts(bool async)
{
    pair p;
    open_pair(&p, async);
    char buf[4];
    const int64_t bad[] = {-2, INT64_MIN, (int64_t)INT_MAX + 1, INT64_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tf_future *f = (tf_future *)buf; /* must be overwritten with NULL */
        assert_int_equal(tf_conn_send_for(p.c, "x", 1, bad[i], &f), TF_ERR_INVALID_ARGUMENT);
        assert_null(f);
        f = (tf_future *)buf;
        assert_int_equal(tf_conn_recv_for(p.c, buf, sizeof buf, bad[i], &f),
                         TF_ERR_INVALID_ARGUMENT);
        assert_null(f);
        f = (tf_future *)buf;
        assert_int_equal(tf_conn_recv_alloc_for(p.c, bad[i], &f), TF_ERR_INVALID_ARGUMENT);
        assert_null(f);
    }
    /* The bounds themselves are valid: nothing was refused, the peer gets both messages. */
    tf_future *f = NULL;
    assert_int_equal(tf_conn_send_for(p.c, "a", 1, -1, &f), TF_OK);
    assert_int_equal(outcome(f, NULL), TF_OK);
    assert_int_equal(tf_conn_send_for(p.c, "b", 1, INT_MAX, &f), TF_OK);
    assert_int_equal(outcome(f, NULL), TF_OK);
    uint32_t len = 0;
    assert_true(tu_read_frame(p.raw, buf, sizeof buf, &len));
    assert_true(tu_read_frame(p.raw, buf, sizeof buf, &len));
    assert_int_equal(buf[0], 'b');
    /* The calls without _for are the same as -1 (the old behaviour). */
    assert_true(tu_write_frame(p.raw, "z", 1));
    assert_int_equal(tf_conn_recv(p.c, buf, sizeof buf, &f), TF_OK);
    assert_int_equal(outcome(f, NULL), TF_OK);
    assert_int_equal(buf[0], 'z');
    close_pair(&p);
}

static void test_conn_for_refuses_bad_timeouts_sync(void **state)
{
    (void)state;
    bad_timeouts(false);
}

static void test_conn_for_refuses_bad_timeouts_async(void **state)
{
    (void)state;
    bad_timeouts(true);
}

static void test_conn_for_null_arguments(void **state)
{
    (void)state;
    tf_future *f = NULL;
    char b[1];
    assert_int_equal(tf_conn_send_for(NULL, "x", 1, 10, &f), TF_ERR_INVALID_ARGUMENT);
    assert_int_equal(tf_conn_recv_for(NULL, b, 1, 10, &f), TF_ERR_INVALID_ARGUMENT);
    assert_int_equal(tf_conn_recv_alloc_for(NULL, 10, &f), TF_ERR_INVALID_ARGUMENT);
    assert_null(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conn_recv_for_times_out_sync),
        cmocka_unit_test(test_conn_recv_for_times_out_async),
        cmocka_unit_test(test_conn_send_for_times_out_sync),
        cmocka_unit_test(test_conn_send_for_times_out_async),
        cmocka_unit_test(test_conn_for_refuses_bad_timeouts_sync),
        cmocka_unit_test(test_conn_for_refuses_bad_timeouts_async),
        cmocka_unit_test(test_conn_for_null_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
