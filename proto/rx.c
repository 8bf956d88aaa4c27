/* rx.c -- the receiver (SPEC 6): prefix in pieces, length check, target, payload in pieces. */
#include <string.h>

#include "core.h"

void tf_rx_init(tf_rx *rx, uint32_t max_len)
{
    rx->target = NULL;
    rx->cap = 0;
    rx->max_len = max_len;
    rx->len = 0;
    rx->got = 0;
    rx->state = TF_RX_LEN;
    rx->err = TF_OK;
    rx->os_err = 0;
    rx->hdr[0] = rx->hdr[1] = rx->hdr[2] = rx->hdr[3] = 0;
}

static tf_step rx_fail(tf_rx *rx, tf_err err, int os_err)
{
    rx->state = TF_RX_FAILED;
    rx->err = err;
    rx->os_err = os_err;
    return TF_ERROR;
}

/* A message is complete: hand it out and wait for the next prefix. */
static tf_step rx_done(tf_rx *rx, tf_msg *msg)
{
    msg->data = rx->target;
    msg->len = rx->len;
    rx->target = NULL;
    rx->cap = 0;
    rx->got = 0;
    rx->state = TF_RX_LEN;
    return TF_DONE;
}

size_t tf_rx_next(tf_rx *rx, uint8_t **buf)
{
    if (rx->state == TF_RX_LEN) {
        *buf = rx->hdr + rx->got;
        return TF_HDR_LEN - rx->got;
    }
    if (rx->state == TF_RX_BODY) {
        *buf = rx->target + rx->got;
        return rx->len - rx->got;
    }
    *buf = NULL;
    return 0;
}

tf_step tf_rx_advance(tf_rx *rx, size_t n, tf_msg *msg)
{
    if (rx->state == TF_RX_FAILED)
        return TF_ERROR;
    size_t want = rx->state == TF_RX_LEN    ? TF_HDR_LEN - rx->got
                  : rx->state == TF_RX_BODY ? rx->len - rx->got
                                            : 0;
    if (n > want)
        return rx_fail(rx, TF_ERR_INVALID_ARGUMENT, 0);
    rx->got += n;
    if (rx->state == TF_RX_LEN) {
        if (rx->got < TF_HDR_LEN)
            return TF_AGAIN;
        rx->len = tf_be32_get(rx->hdr);
        rx->got = 0;
        /* SPEC 6.2: refuse an oversized length before any target is asked for. */
        if (rx->len > rx->max_len)
            return rx_fail(rx, TF_ERR_TOO_LARGE, 0);
        if (rx->len == 0)
            return rx_done(rx, msg);
        rx->state = TF_RX_TARGET;
        return TF_AGAIN;
    }
    if (rx->state == TF_RX_BODY && rx->got == rx->len)
        return rx_done(rx, msg);
    return TF_AGAIN;
}

int tf_rx_wants_target(const tf_rx *rx, size_t *len)
{
    if (rx->state != TF_RX_TARGET)
        return 0;
    if (len)
        *len = rx->len;
    return 1;
}

tf_err tf_rx_set_target(tf_rx *rx, uint8_t *buf, size_t cap)
{
    if (rx->state == TF_RX_FAILED)
        return rx->err;
    if (rx->state != TF_RX_TARGET)
        return TF_ERR_BAD_STATE;
    /* SPEC 6.3: both refusals come before any payload byte is read. */
    if (cap < rx->len) {
        rx_fail(rx, TF_ERR_BUFFER_TOO_SMALL, 0);
        return rx->err;
    }
    if (buf == NULL) {
        rx_fail(rx, TF_ERR_NOMEM, 0);
        return rx->err;
    }
    rx->target = buf;
    rx->cap = cap;
    rx->got = 0;
    rx->state = TF_RX_BODY;
    return TF_OK;
}

tf_step tf_rx_feed(tf_rx *rx, const uint8_t *in, size_t len, size_t *used, tf_msg *msg)
{
    *used = 0;
    for (;;) {
        if (rx->state == TF_RX_FAILED)
            return TF_ERROR;
        uint8_t *dst;
        size_t want = tf_rx_next(rx, &dst);
        size_t avail = len - *used;
        if (want == 0 || avail == 0)
            return TF_AGAIN;
        size_t n = want < avail ? want : avail;
        memcpy(dst, in + *used, n);
        *used += n;
        tf_step st = tf_rx_advance(rx, n, msg);
        if (st != TF_AGAIN)
            return st;
    }
}

/* Ask the sink for the target of a message whose length is known. */
static tf_step rx_obtain_target(tf_rx *rx, const tf_sink *sink)
{
    tf_err err;
    if (sink->alloc != NULL)
        err = tf_rx_set_target(rx, sink->alloc(sink->ctx, rx->len), rx->len);
    else
        err = tf_rx_set_target(rx, sink->buf, sink->cap);
    return err == TF_OK ? TF_AGAIN : TF_ERROR;
}

tf_step tf_rx_try(tf_rx *rx, const tf_io *io, const tf_sink *sink, tf_msg *msg)
{
    unsigned intr = 0;
    for (;;) {
        if (rx->state == TF_RX_FAILED)
            return TF_ERROR;
        if (rx->state == TF_RX_TARGET) {
            if (rx_obtain_target(rx, sink) == TF_ERROR)
                return TF_ERROR;
            continue;
        }
        uint8_t *dst;
        size_t want = tf_rx_next(rx, &dst);
        int os_err = 0;
        tf_err err = TF_OK;
        long r = io->read(io->ctx, dst, want, &os_err);
        if (r > 0) {
            tf_step st = tf_rx_advance(rx, (size_t)r, msg);
            if (st != TF_AGAIN)
                return st;
            intr = 0; /* progress: TF_MAX_INTR counts consecutive interrupted answers */
            continue;
        }
        /* SPEC 6.4: a close between messages is CLOSED, inside one TRUNCATED. */
        tf_err eof = rx->state == TF_RX_LEN && rx->got == 0 ? TF_ERR_CLOSED : TF_ERR_TRUNCATED;
        int a = tf__io_answer(r, eof, &err);
        if (a < 0)
            return rx_fail(rx, err, os_err);
        if (a == 0 || ++intr >= TF_MAX_INTR)
            return TF_AGAIN;
    }
}

uint8_t *tf_rx_abandon(tf_rx *rx)
{
    uint8_t *t = rx->target;
    rx->target = NULL;
    rx->cap = 0;
    if (rx->state != TF_RX_FAILED)
        rx_fail(rx, TF_ERR_BAD_STATE, 0);
    return t;
}

tf_err tf_rx_error(const tf_rx *rx, int *os_err)
{
    if (os_err)
        *os_err = rx->os_err;
    return rx->err;
}
