/* io/conn.c -- the generic connection interface (conn.h): a call through the ops table of the
 * connection the view belongs to. */
#include "internal.h"

tf_err tf_conn_send(tf_conn *c, const void *buf, size_t len, tf_future **out)
{
    if (out)
        *out = NULL;
    if (!c || !out || (!buf && len > 0))
        return TF_ERR_INVALID_ARGUMENT;
    return c->ops->send(c, buf, len, out);
}

tf_err tf_conn_recv(tf_conn *c, void *buf, size_t cap, tf_future **out)
{
    if (out)
        *out = NULL;
    if (!c || !out || (!buf && cap > 0))
        return TF_ERR_INVALID_ARGUMENT;
    return c->ops->recv(c, buf, cap, out);
}

tf_err tf_conn_recv_alloc(tf_conn *c, tf_future **out)
{
    if (out)
        *out = NULL;
    if (!c || !out)
        return TF_ERR_INVALID_ARGUMENT;
    return c->ops->recv_alloc(c, out);
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
