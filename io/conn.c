/* io/conn.c -- the generic connection interface (conn.h): a call through the ops table of the
 * connection the view belongs to. */
#include <limits.h>

#include "internal.h"

/* -1 (no deadline) or 0..INT_MAX ms: what both the sync (int) and async (int64_t) calls take
 * with the same meaning. */
static bool timeout_ok(int64_t ms)
{
    return ms == -1 || (ms >= 0 && ms <= INT_MAX);
}

tf_err tf_conn_send_for(tf_conn *c, const void *buf, size_t len, int64_t timeout_ms,
                        tf_future **out)
{
    if (out)
        *out = NULL;
    if (!c || !out || (!buf && len > 0) || !timeout_ok(timeout_ms))
        return TF_ERR_INVALID_ARGUMENT;
    return c->ops->send(c, buf, len, timeout_ms, out);
}

tf_err tf_conn_send(tf_conn *c, const void *buf, size_t len, tf_future **out)
{
    return tf_conn_send_for(c, buf, len, -1, out);
}

tf_err tf_conn_recv_for(tf_conn *c, void *buf, size_t cap, int64_t timeout_ms, tf_future **out)
{
    if (out)
        *out = NULL;
    if (!c || !out || (!buf && cap > 0) || !timeout_ok(timeout_ms))
        return TF_ERR_INVALID_ARGUMENT;
    return c->ops->recv(c, buf, cap, timeout_ms, out);
}

tf_err tf_conn_recv(tf_conn *c, void *buf, size_t cap, tf_future **out)
{
    return tf_conn_recv_for(c, buf, cap, -1, out);
}

tf_err tf_conn_recv_alloc_for(tf_conn *c, int64_t timeout_ms, tf_future **out)
{
    if (out)
        *out = NULL;
    if (!c || !out || !timeout_ok(timeout_ms))
        return TF_ERR_INVALID_ARGUMENT;
    return c->ops->recv_alloc(c, timeout_ms, out);
}

tf_err tf_conn_recv_alloc(tf_conn *c, tf_future **out)
{
    return tf_conn_recv_alloc_for(c, -1, out);
}

tf_err tf_conn_close(tf_conn *c, tf_future **out)
{
    if (out)
        *out = NULL;
    if (!c || !out)
        return TF_ERR_INVALID_ARGUMENT;
    return c->ops->close(c, out);
}

tf_err tf_conn_error(const tf_conn *c, int *os_err)
{
    if (os_err)
        *os_err = 0;
    if (!c)
        return TF_ERR_INVALID_ARGUMENT;
    return c->ops->error(c, os_err);
}

void tf_conn_free(tf_conn *c)
{
    if (c)
        c->ops->free(c);
}
