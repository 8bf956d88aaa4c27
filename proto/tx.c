/* tx.c -- the sender (SPEC 5): one frame at a time, header and payload as a gather list. */
#include "core.h"

void tf_tx_init(tf_tx *tx, uint32_t max_len)
{
    tx->payload = NULL;
    tx->len = 0;
    tx->done = 0;
    tx->max_len = max_len;
    tx->state = TF_TX_IDLE;
    tx->err = TF_OK;
    tx->os_err = 0;
    tx->hdr[0] = tx->hdr[1] = tx->hdr[2] = tx->hdr[3] = 0;
}

static tf_step tx_fail(tf_tx *tx, tf_err err, int os_err)
{
    tx->state = TF_TX_FAILED;
    tx->err = err;
    tx->os_err = os_err;
    return TF_ERROR;
}

tf_err tf_tx_begin(tf_tx *tx, const uint8_t *payload, size_t len)
{
    if (tx->state == TF_TX_FAILED)
        return tx->err;
    if (tx->state != TF_TX_IDLE)
        return TF_ERR_BAD_STATE;
    /* SPEC 5.2: refused before a byte is emitted, so the stream stays in step. */
    if (len > tx->max_len)
        return TF_ERR_TOO_LARGE;
    if (payload == NULL && len > 0)
        return TF_ERR_INVALID_ARGUMENT;
    tf_be32_put(tx->hdr, (uint32_t)len);
    tx->payload = payload;
    tx->len = len;
    tx->done = 0;
    tx->state = TF_TX_SENDING;
    return TF_OK;
}

size_t tf_tx_next(const tf_tx *tx, tf_iov iov[2])
{
    if (tx->state != TF_TX_SENDING)
        return 0;
    size_t cnt = 0;
    if (tx->done < TF_HDR_LEN) {
        iov[0].base = tx->hdr + tx->done;
        iov[0].len = TF_HDR_LEN - tx->done;
        cnt = 1;
    }
    size_t body_sent = tx->done < TF_HDR_LEN ? 0 : tx->done - TF_HDR_LEN;
    if (body_sent < tx->len) {
        iov[cnt].base = tx->payload + body_sent;
        iov[cnt].len = tx->len - body_sent;
        cnt++;
    }
    return cnt;
}

size_t tf_tx_pending(const tf_tx *tx)
{
    return tx->state == TF_TX_SENDING ? TF_HDR_LEN + tx->len - tx->done : 0;
}

tf_step tf_tx_advance(tf_tx *tx, size_t n)
{
    if (tx->state == TF_TX_FAILED)
        return TF_ERROR;
    if (n > tf_tx_pending(tx))
        return tx_fail(tx, TF_ERR_INVALID_ARGUMENT, 0);
    if (tx->state == TF_TX_IDLE)
        return TF_DONE;
    tx->done += n;
    if (tx->done < TF_HDR_LEN + tx->len)
        return TF_AGAIN;
    tx->state = TF_TX_IDLE;
    tx->payload = NULL;
    return TF_DONE;
}

tf_step tf_tx_try(tf_tx *tx, const tf_io *io)
{
    unsigned intr = 0;
    for (;;) {
        if (tx->state != TF_TX_SENDING)
            return tx->state == TF_TX_IDLE ? TF_DONE : TF_ERROR;
        tf_iov iov[2];
        size_t cnt = tf_tx_next(tx, iov);
        int os_err = 0;
        tf_err err = TF_OK;
        long r = io->write(io->ctx, iov, cnt, &os_err);
        if (r > 0) {
            tf_step st = tf_tx_advance(tx, (size_t)r);
            if (st != TF_AGAIN)
                return st;
            intr = 0; /* progress: TF_MAX_INTR counts consecutive interrupted answers */
            continue;
        }
        int a = tf__io_answer(r, TF_ERR_CLOSED, &err);
        if (a < 0)
            return tx_fail(tx, err, os_err);
        if (a == 0 || ++intr >= TF_MAX_INTR)
            return TF_AGAIN;
    }
}

tf_err tf_tx_error(const tf_tx *tx, int *os_err)
{
    if (os_err)
        *os_err = tx->os_err;
    return tx->err;
}
