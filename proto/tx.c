/* tx.c -- the sender (SPEC 5): one frame at a time, header and payload as a gather list. */
#include "core.h"

/*@ requires \valid(tx);
    assigns *tx;
    ensures valid: tf_tx_valid(tx);
    ensures idle: tx->state == TF__TX_IDLE && tx->max_len == max_len;
*/
void tf_tx_init(tf_tx *tx, uint32_t max_len)
{
    tx->payload = NULL;
    tx->len = 0;
    tx->done = 0;
    tx->max_len = max_len;
    tx->state = TF__TX_IDLE;
    tx->err = TF_OK;
    tx->os_err = 0;
    tx->hdr[0] = tx->hdr[1] = tx->hdr[2] = tx->hdr[3] = 0;
}

/*@ requires \valid(tx) && tf_proto_err(err);
    assigns tx->state, tx->err, tx->os_err;
    ensures tf_tx_valid(tx) && tx->state == TF__TX_FAILED && tx->err == err && tx->os_err == os_err;
    ensures \result == TF_ERROR;
*/
static tf_step tx_fail(tf_tx *tx, tf_err err, int os_err)
{
    tx->state = TF__TX_FAILED;
    tx->err = err;
    tx->os_err = os_err;
    return TF_ERROR;
}

/*@ requires valid: tf_tx_valid(tx);
    requires payload: payload == \null || \valid_read(payload + (0 .. len - 1));
    requires sep: \separated(payload + (0 .. len - 1), tx);
    assigns tx->hdr[0 .. 3], tx->payload, tx->len, tx->done, tx->state;
    ensures valid: tf_tx_valid(tx);
    behavior failed:
      assumes tx->state == TF__TX_FAILED;
      assigns \nothing;
      ensures \result == tx->err;
    behavior busy:
      assumes tx->state == TF__TX_SENDING;
      assigns \nothing;
      ensures \result == TF_ERR_BAD_STATE;
    behavior too_large:
      assumes tx->state == TF__TX_IDLE && (len > tx->max_len || len > SIZE_MAX - 4);
      assigns \nothing;
      ensures \result == TF_ERR_TOO_LARGE;
    behavior no_payload:
      assumes tx->state == TF__TX_IDLE && len <= tx->max_len && len <= SIZE_MAX - 4 &&
              payload == \null && len > 0;
      assigns \nothing;
      ensures \result == TF_ERR_INVALID_ARGUMENT;
    behavior start:
      assumes tx->state == TF__TX_IDLE && len <= tx->max_len && len <= SIZE_MAX - 4 &&
              (payload != \null || len == 0);
      ensures \result == TF_OK && tx->state == TF__TX_SENDING && tx->done == 0;
      ensures tx->payload == payload && tx->len == len;
      ensures header: tf_be32(tx->hdr[0], tx->hdr[1], tx->hdr[2], tx->hdr[3]) == len;
      ensures borrowed: tf_tx_payload_ok(tx);
    complete behaviors;
    disjoint behaviors;
*/
tf_err tf_tx_begin(tf_tx *tx, const uint8_t *payload, size_t len)
{
    if (tx->state == TF__TX_FAILED)
        return tx->err;
    if (tx->state != TF__TX_IDLE)
        return TF_ERR_BAD_STATE;
    /* SPEC 5.2: refused before a byte is emitted, so the stream stays in step. */
    if (len > tx->max_len)
        return TF_ERR_TOO_LARGE;
#if SIZE_MAX - 4 < UINT32_MAX
    /* Only with a size_t narrower than 33 bits: the frame size 4 + len must not wrap. */
    if (len > SIZE_MAX - TF_HDR_LEN)
        return TF_ERR_TOO_LARGE;
#endif
    if (payload == NULL && len > 0)
        return TF_ERR_INVALID_ARGUMENT;
    tf_be32_put(tx->hdr, (uint32_t)len);
    tx->payload = payload;
    tx->len = len;
    tx->done = 0;
    tx->state = TF__TX_SENDING;
    return TF_OK;
}

/* SPEC 5.3: the gather list is exactly the rest of header ++ payload, so any sequence of
 * partial writes that each take a prefix of it emits the frame and nothing else. */
/*@ requires valid: tf_tx_valid(tx) && tf_tx_payload_ok(tx);
    requires out: \valid(iov + (0 .. 1)) && \separated(iov + (0 .. 1), tx);
    assigns iov[0 .. 1];
    ensures count: 0 <= \result <= 2;
    ensures readable: \forall integer i; 0 <= i < \result ==>
              iov[i].len > 0 && \valid_read(iov[i].base + (0 .. iov[i].len - 1));
    ensures frame: \result > 0 ==> \forall integer m; 0 <= m < tf_tx_left(tx) ==>
              tf_iov_byte(iov, m) == tf_tx_byte(tx, tx->done + m);
    behavior idle:
      assumes tx->state != TF__TX_SENDING;
      ensures \result == 0;
    behavior header:
      assumes tx->state == TF__TX_SENDING && tx->done < 4;
      ensures iov[0].base == &tx->hdr[0] + tx->done && iov[0].len == 4 - tx->done;
      ensures tx->len > 0 ==> \result == 2 && iov[1].base == tx->payload && iov[1].len == tx->len;
      ensures tx->len == 0 ==> \result == 1;
    behavior body:
      assumes tx->state == TF__TX_SENDING && tx->done >= 4;
      ensures \result == 1 && iov[0].base == tx->payload + (tx->done - 4);
      ensures iov[0].len == tx->len - (tx->done - 4);
    complete behaviors;
    disjoint behaviors;
*/
size_t tf_tx_next(const tf_tx *tx, tf_iov iov[2])
{
    if (tx->state != TF__TX_SENDING)
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

/*@ requires tf_tx_valid(tx);
    assigns \nothing;
    ensures \result == tf_tx_left(tx);
*/
size_t tf_tx_pending(const tf_tx *tx)
{
    return tx->state == TF__TX_SENDING ? TF_HDR_LEN + tx->len - tx->done : 0;
}

/*@ requires valid: tf_tx_valid(tx);
    assigns tx->done, tx->state, tx->payload, tx->err, tx->os_err;
    ensures valid: tf_tx_valid(tx);
    ensures same: tx->len == \old(tx->len);
    behavior failed:
      assumes tx->state == TF__TX_FAILED;
      assigns \nothing;
      ensures \result == TF_ERROR;
    behavior overrun:
      assumes tx->state != TF__TX_FAILED && n > tf_tx_left(tx);
      ensures \result == TF_ERROR && tx->state == TF__TX_FAILED;
      ensures tx->err == TF_ERR_INVALID_ARGUMENT && tx->done == \old(tx->done);
    behavior idle:
      assumes tx->state == TF__TX_IDLE && n == 0;
      assigns \nothing;
      ensures \result == TF_DONE;
    behavior progress:
      assumes tx->state == TF__TX_SENDING && n <= tf_tx_left(tx);
      ensures done: \old(tx->done) + n == 4 + tx->len ==>
                      \result == TF_DONE && tx->state == TF__TX_IDLE;
      ensures again: \old(tx->done) + n < 4 + tx->len ==>
                      \result == TF_AGAIN && tx->state == TF__TX_SENDING &&
                      tx->done == \old(tx->done) + n && tx->payload == \old(tx->payload);
    complete behaviors;
    disjoint behaviors;
*/
tf_step tf_tx_advance(tf_tx *tx, size_t n)
{
    if (tx->state == TF__TX_FAILED)
        return TF_ERROR;
    if (n > tf_tx_pending(tx))
        return tx_fail(tx, TF_ERR_INVALID_ARGUMENT, 0);
    if (tx->state == TF__TX_IDLE)
        return TF_DONE;
    tx->done += n;
    if (tx->done < TF_HDR_LEN + tx->len)
        return TF_AGAIN;
    tx->state = TF__TX_IDLE;
    tx->payload = NULL;
    return TF_DONE;
}

/* The ghost wire: this call's log tf_wire_out holds exactly the bytes it sent. */
/*@ requires valid: tf_tx_valid(tx) && tf_tx_payload_ok(tx);
    requires io: tf_io_write_ok(io) && \separated(tx, io);
    assigns *tx, tf_wire_out_len, tf_wire_out[0 .. 1099511627775], tf_io_last, tf_io_last_os_err;
    ensures valid: tf_tx_valid(tx);
    behavior failed:
      assumes tx->state == TF__TX_FAILED;
      assigns \nothing;
      ensures \result == TF_ERROR;
    behavior idle:
      assumes tx->state == TF__TX_IDLE;
      assigns \nothing;
      ensures \result == TF_DONE;
    behavior sending:
      assumes tx->state == TF__TX_SENDING;
      ensures same: tx->len == \old(tx->len);
      ensures done: \result == TF_DONE ==>
                tx->state == TF__TX_IDLE && tf_wire_out_len == 4 + tx->len - \old(tx->done);
      ensures again: \result == TF_AGAIN ==>
                tx->state == TF__TX_SENDING && tx->payload == \old(tx->payload) &&
                tf_wire_out_len == tx->done - \old(tx->done) &&
                (tf_io_last == TF_IO_AGAIN || tf_io_last == TF_IO_INTR);
      ensures error: \result == TF_ERROR ==>
                tx->state == TF__TX_FAILED && tf_wire_out_len == tx->done - \old(tx->done);
      ensures wire: \forall integer k; 0 <= k < tf_wire_out_len ==>
                tf_wire_out[k] == \at(tf_tx_byte(tx, tx->done + k), Pre);
      ensures reason: \result == TF_ERROR ==>
                (tx->err == TF_ERR_IO && tf_io_last == TF_IO_FAIL &&
                 tx->os_err == tf_io_last_os_err) ||
                (tx->err == TF_ERR_CLOSED && tf_io_last == 0) ||
                (tx->err == TF_ERR_INVALID_ARGUMENT &&
                 (tf_io_last < TF_IO_FAIL || tf_io_last > 4 + tx->len - tx->done));
    complete behaviors;
    disjoint behaviors;
*/
tf_step tf_tx_try(tf_tx *tx, const tf_io *io)
{
    if (tx->state != TF__TX_SENDING)
        return tx->state == TF__TX_IDLE ? TF_DONE : TF_ERROR;
    unsigned intr = 0;
    /* Declared outside the loop: WP then need not show that the payload survives the end of
     * these locals' lifetime at every iteration. */
    tf_iov iov[2];
    int os_err;
    tf_err err;
    //@ ghost tf_wire_out_len = 0;
    /*@ loop invariant tf_tx_valid(tx) && tx->state == TF__TX_SENDING;
        loop invariant tx->payload == \at(tx->payload, Pre) && tx->len == \at(tx->len, Pre);
        loop invariant hdr: \forall integer i; 0 <= i < 4 ==> tx->hdr[i] == \at(tx->hdr[i], Pre);
        loop invariant tf_tx_payload_ok(tx);
        loop invariant stable: \forall integer i; 0 <= i < 4 + tx->len ==>
                         tf_tx_byte(tx, i) == \at(tf_tx_byte(tx, i), Pre);
        loop invariant intr < TF_MAX_INTR;
        loop invariant log: tf_wire_out_len == tx->done - \at(tx->done, Pre);
        loop invariant wire: \forall integer k; 0 <= k < tf_wire_out_len ==>
                         tf_wire_out[k] == \at(tf_tx_byte(tx, tx->done + k), Pre);
        loop assigns *tx, intr, iov[0 .. 1], os_err, err, tf_wire_out_len,
                     tf_wire_out[0 .. 1099511627775], tf_io_last, tf_io_last_os_err;
        loop variant (4 + tx->len - tx->done) * (TF_MAX_INTR + 1) + (TF_MAX_INTR - intr);
    */
    for (;;) {
        size_t cnt = tf_tx_next(tx, iov);
        os_err = 0;
        err = TF_OK;
        long r;
        //@ calls tf_io_write_model;
        r = io->write(io->ctx, iov, cnt, &os_err);
        //@ assert kept: tf_tx_valid(tx) && tx->state == TF__TX_SENDING && tf_tx_payload_ok(tx);
        /*@ assert appended: 0 < r <= tf_tx_left(tx) ==>
              \forall integer j; 0 <= j < tf_wire_out_len ==>
                tf_wire_out[j] == \at(tf_tx_byte(tx, tx->done + j), Pre); */
        if (r > 0) {
            tf_step st = tf_tx_advance(tx, (size_t)r);
            if (st != TF_AGAIN)
                return st;
            intr = 0; /* progress: TF_MAX_INTR counts consecutive interrupted answers */
        } else {
            int a = tf__io_answer(r, TF_ERR_CLOSED, &err);
            if (a < 0)
                return tx_fail(tx, err, os_err);
            if (a == 0 || ++intr >= TF_MAX_INTR)
                return TF_AGAIN;
        }
    }
}

/*@ requires \valid_read(tx);
    requires os_err == \null || (\valid(os_err) && \separated(os_err, tx));
    assigns *os_err;
    ensures \result == tx->err;
    ensures os_err != \null ==> *os_err == tx->os_err;
*/
tf_err tf_tx_error(const tf_tx *tx, int *os_err)
{
    if (os_err)
        *os_err = tx->os_err;
    return tx->err;
}
