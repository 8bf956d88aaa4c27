/* tests/tu_async.c -- see tu_async.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <sys/socket.h>

#include "tu_async.h"
#include "tu_net.h"

void tu_fx_start(tu_fx *f)
{
    f->fds0 = tu_fd_count();
    assert_int_equal(tf_evb_new(&f->evb), TF_OK);
    assert_int_equal(tf_evb_start(f->evb), TF_OK);
}

void tu_fx_end(tu_fx *f)
{
    assert_int_equal(tf_evb_free(f->evb), TF_OK);
    assert_int_equal(tu_fd_count(), f->fds0);
}

tf_tcp_config tu_cfg_default(void)
{
    tf_tcp_config c;
    tf_tcp_config_init(&c);
    return c;
}

/* Two async connections over a socketpair, both with the handshake. */
void tu_pair_async(tu_fx *f, const tf_tcp_config *cfg, tf_async_conn **a, tf_async_conn **b)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(tf_async_conn_from_fd(f->evb, sv[0], cfg, a, NULL), TF_OK);
    assert_int_equal(tf_async_conn_from_fd(f->evb, sv[1], cfg, b, NULL), TF_OK);
}

/* An async connection and a raw socket peer (*raw; the test closes it). */
tf_async_conn *tu_pair_raw(tu_fx *f, const tf_tcp_config *cfg, int *raw)
{
    int mine;
    return tu_pair_raw_fds(f, cfg, raw, &mine);
}

tf_async_conn *tu_pair_raw_fds(tu_fx *f, const tf_tcp_config *cfg, int *raw, int *mine)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    tf_async_conn *c = NULL;
    assert_int_equal(tf_async_conn_from_fd(f->evb, sv[0], cfg, &c, NULL), TF_OK);
    *raw = sv[1];
    *mine = sv[0];
    return c;
}

static void nop_task(void *arg)
{
    (void)arg;
}

void tu_loop_settle(tf_evb *evb)
{
    assert_int_equal(tf_evb_dispatch_and_wait(evb, nop_task, NULL), TF_OK);
    assert_int_equal(tf_evb_dispatch_and_wait(evb, nop_task, NULL), TF_OK);
}

tf_err tu_fut_result(tf_future *fu, size_t *size, void **owned)
{
    assert_non_null(fu);
    assert_int_equal(tf_future_wait(fu), TF_OK);
    tf_err e = tf_future_get(fu, size, owned);
    tf_future_free(fu);
    return e;
}

tf_err tu_send_wait(tf_async_conn *c, const void *buf, size_t len)
{
    tf_future *fu = NULL;
    tf_err rc = tf_async_conn_send(c, buf, len, -1, &fu);
    if (rc != TF_OK)
        return rc;
    return tu_fut_result(fu, NULL, NULL);
}


void *tu_send_big(void *arg)
{
    tu_bigsend *b = arg;
    uint8_t *p = malloc(TU_BIG);
    assert_non_null(p);
    p[0] = b->id;
    p[1] = p[2] = p[3] = 0;
    tu_fill(p + 4, TU_BIG - 4, b->id);
    b->ok = tu_write_frame(b->fd, p, TU_BIG);
    free(p);
    return NULL;
}
