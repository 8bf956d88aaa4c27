/* hs.c -- the handshake (SPEC 4): send our magic, check the peer's byte by byte. */
#include "core.h"

/*@ requires \valid(hs);
    assigns *hs;
    ensures valid: tf_hs_valid(hs);
    ensures fresh: hs->state == TF__HS_RUNNING && hs->sent == 0 && hs->got == 0;
*/
void tf_hs_init(tf_hs *hs)
{
    /* SPEC 4.1: 0x554E4946 in network order. */
    hs->out[0] = 0x55;
    hs->out[1] = 0x4E;
    hs->out[2] = 0x49;
    hs->out[3] = 0x46;
    hs->in[0] = hs->in[1] = hs->in[2] = hs->in[3] = 0;
    hs->sent = 0;
    hs->got = 0;
    hs->state = TF__HS_RUNNING;
    hs->err = TF_OK;
    hs->os_err = 0;
}

/*@ requires tf_hs_shape(hs) && tf_proto_err(err);
    assigns hs->state, hs->err, hs->os_err;
    ensures tf_hs_valid(hs) && hs->state == TF__HS_FAILED && hs->err == err && hs->os_err == os_err;
    ensures \result == TF_ERROR;
*/
static tf_step hs_fail(tf_hs *hs, tf_err err, int os_err)
{
    hs->state = TF__HS_FAILED;
    hs->err = err;
    hs->os_err = os_err;
    return TF_ERROR;
}

/*@ requires tf_hs_shape(hs) && hs->err == TF_OK && hs->os_err == 0;
    assigns hs->state;
    ensures tf_hs_valid(hs);
    ensures (hs->sent == 4 && hs->got == 4) ==> \result == TF_DONE && hs->state == TF__HS_DONE;
    ensures !(hs->sent == 4 && hs->got == 4) ==> \result == TF_AGAIN && hs->state == TF__HS_RUNNING;
*/
static tf_step hs_outcome(tf_hs *hs)
{
    if (hs->sent == 4 && hs->got == 4) {
        hs->state = TF__HS_DONE;
        return TF_DONE;
    }
    hs->state = TF__HS_RUNNING;
    return TF_AGAIN;
}

/*@ requires tf_hs_valid(hs);
    requires \valid(out) && \separated(out, hs);
    assigns *out;
    ensures where: *out == &hs->out[0] + hs->sent;
    ensures count: \result == (hs->state == TF__HS_FAILED ? 0 : 4 - hs->sent);
    ensures readable: \valid_read(*out + (0 .. \result - 1));
*/
size_t tf_hs_out(tf_hs *hs, const uint8_t **out)
{
    *out = hs->out + hs->sent;
    return hs->state == TF__HS_FAILED ? 0 : 4u - hs->sent;
}

/*@ requires tf_hs_valid(hs);
    assigns hs->sent, hs->state, hs->err, hs->os_err;
    ensures valid: tf_hs_valid(hs);
    ensures other_half: hs->got == \old(hs->got);
    behavior failed:
      assumes hs->state == TF__HS_FAILED;
      assigns \nothing;
      ensures \result == TF_ERROR;
    behavior overrun:
      assumes hs->state != TF__HS_FAILED && n > 4 - hs->sent;
      ensures \result == TF_ERROR && hs->state == TF__HS_FAILED;
      ensures hs->err == TF_ERR_INVALID_ARGUMENT && hs->sent == \old(hs->sent);
    behavior progress:
      assumes hs->state != TF__HS_FAILED && n <= 4 - hs->sent;
      ensures hs->sent == \old(hs->sent) + n;
      ensures \result == TF_DONE <==> hs->state == TF__HS_DONE;
      ensures \result == TF_DONE || \result == TF_AGAIN;
      ensures hs->state != TF__HS_FAILED;
    complete behaviors;
    disjoint behaviors;
*/
tf_step tf_hs_sent(tf_hs *hs, size_t n)
{
    if (hs->state == TF__HS_FAILED)
        return TF_ERROR;
    if (n > 4u - hs->sent)
        return hs_fail(hs, TF_ERR_INVALID_ARGUMENT, 0);
    hs->sent += (uint32_t)n;
    return hs_outcome(hs);
}

/*@ requires tf_hs_valid(hs);
    requires \valid(in) && \separated(in, hs);
    assigns *in;
    ensures where: *in == &hs->in[0] + hs->got;
    ensures count: \result == (hs->state == TF__HS_FAILED ? 0 : 4 - hs->got);
    ensures writable: \valid(*in + (0 .. \result - 1));
*/
size_t tf_hs_in(tf_hs *hs, uint8_t **in)
{
    *in = hs->in + hs->got;
    return hs->state == TF__HS_FAILED ? 0 : 4u - hs->got;
}

/*@ requires tf_hs_valid(hs);
    assigns hs->got, hs->state, hs->err, hs->os_err;
    ensures valid: tf_hs_valid(hs);
    ensures other_half: hs->sent == \old(hs->sent);
    behavior failed:
      assumes hs->state == TF__HS_FAILED;
      assigns \nothing;
      ensures \result == TF_ERROR;
    behavior overrun:
      assumes hs->state != TF__HS_FAILED && n > 4 - hs->got;
      ensures \result == TF_ERROR && hs->state == TF__HS_FAILED;
      ensures hs->err == TF_ERR_INVALID_ARGUMENT && hs->got == \old(hs->got);
    behavior compare:
      assumes hs->state != TF__HS_FAILED && n <= 4 - hs->got;
      ensures bad_magic: \result == TF_ERROR <==>
        (\exists integer i; \old(hs->got) <= i < \old(hs->got) + n && hs->in[i] != hs->out[i]);
      ensures reason: \result == TF_ERROR ==> hs->err == TF_ERR_BAD_MAGIC;
      ensures first: \result == TF_ERROR ==> hs->got < 4 && hs->in[hs->got] != hs->out[hs->got];
      ensures failed: \result == TF_ERROR <==> hs->state == TF__HS_FAILED;
      ensures accepted: \result != TF_ERROR ==> hs->got == \old(hs->got) + n;
      ensures monotone: hs->got >= \old(hs->got);
      ensures done: \result == TF_DONE <==> hs->state == TF__HS_DONE;
    complete behaviors;
    disjoint behaviors;
*/
tf_step tf_hs_received(tf_hs *hs, size_t n)
{
    if (hs->state == TF__HS_FAILED)
        return TF_ERROR;
    if (n > 4u - hs->got)
        return hs_fail(hs, TF_ERR_INVALID_ARGUMENT, 0);
    uint32_t end = hs->got + (uint32_t)n;
    /* SPEC 4.2: compare each byte as it lands, so a wrong peer fails at its first wrong byte. */
    /*@ loop invariant \at(hs->got, Pre) <= i <= end && hs->got == i;
        loop invariant \forall integer k; 0 <= k < i ==> hs->in[k] == hs->out[k];
        loop assigns i, hs->got;
        loop variant end - i;
    */
    for (uint32_t i = hs->got; i < end; i++) {
        if (hs->in[i] != hs->out[i])
            return hs_fail(hs, TF_ERR_BAD_MAGIC, 0);
        hs->got = i + 1;
    }
    return hs_outcome(hs);
}

/* What one write or read of the handshake achieved. */
enum { HS_FAILED = -1, HS_IDLE = 0, HS_MOVED = 1, HS_INTR = 2 };

/* One write of the rest of our magic: HS_MOVED if bytes went out, HS_INTR if interrupted,
 * HS_IDLE if there was nothing to send or it would block, HS_FAILED if the handshake failed. */
/*@ requires tf_hs_valid(hs) && hs->state == TF__HS_RUNNING;
    requires tf_io_write_ok(io) && \separated(hs, io);
    requires room: tf_wire_out_len + 4 <= 1099511627776;
    assigns *hs, tf_wire_out_len, tf_wire_out[tf_wire_out_len .. 1099511627775], tf_io_last,
            tf_io_last_os_err;
    ensures valid: tf_hs_valid(hs);
    ensures log: tf_wire_out_len == \old(tf_wire_out_len) + (hs->sent - \old(hs->sent));
    ensures wire: \forall integer j; \old(tf_wire_out_len) <= j < tf_wire_out_len ==>
              tf_wire_out[j] == tf_magic_byte(\old(hs->sent) + (j - \old(tf_wire_out_len)));
    ensures reason: \result == HS_FAILED ==>
              (hs->err == TF_ERR_IO && tf_io_last == TF_IO_FAIL &&
               hs->os_err == tf_io_last_os_err) ||
              (hs->err == TF_ERR_CLOSED && tf_io_last == 0 && hs->got == 0) ||
              (hs->err == TF_ERR_TRUNCATED && tf_io_last == 0 && hs->got > 0) ||
              (hs->err == TF_ERR_INVALID_ARGUMENT &&
               (tf_io_last < TF_IO_FAIL || tf_io_last > 4 - hs->sent));
    ensures half: hs->got == \old(hs->got) && hs->sent >= \old(hs->sent);
    ensures range: HS_FAILED <= \result <= HS_INTR;
    ensures failed: \result == HS_FAILED <==> hs->state == TF__HS_FAILED;
    ensures moved: \result == HS_MOVED ==> hs->sent > \old(hs->sent);
    ensures still: \result == HS_IDLE || \result == HS_INTR ==> hs->sent == \old(hs->sent);
*/
static int hs_write_once(tf_hs *hs, const tf_io *io)
{
    const uint8_t *out;
    size_t want = tf_hs_out(hs, &out);
    if (want == 0)
        return HS_IDLE;
    tf_iov iov = {out, want};
    int os_err = 0;
    tf_err err = TF_OK;
    long r;
    //@ assert magic_out: \forall integer k; 0 <= k < want ==> out[k] == tf_magic_byte(hs->sent + k);
    //@ calls tf_io_write_model;
    r = io->write(io->ctx, &iov, 1, &os_err);
    //@ assert kept: tf_hs_valid(hs) && hs->state == TF__HS_RUNNING;
    /*@ assert sent_magic: 0 < r <= want ==>
          \forall integer j; \at(tf_wire_out_len, Pre) <= j < tf_wire_out_len ==>
            tf_wire_out[j] == tf_magic_byte(\at(hs->sent, Pre) + (j - \at(tf_wire_out_len, Pre))); */
    if (r > 0)
        return tf_hs_sent(hs, (size_t)r) == TF_ERROR ? HS_FAILED : HS_MOVED;
    int a = tf__io_answer(r, hs->got == 0 ? TF_ERR_CLOSED : TF_ERR_TRUNCATED, &err);
    if (a < 0) {
        hs_fail(hs, err, os_err);
        return HS_FAILED;
    }
    return a == 1 ? HS_INTR : HS_IDLE;
}

/* One read of the rest of the peer's magic; answers as hs_write_once. */
/*@ requires tf_hs_valid(hs) && hs->state == TF__HS_RUNNING;
    requires tf_io_read_ok(io) && \separated(hs, io);
    requires room: tf_wire_in_len + 4 <= 1099511627776;
    assigns *hs, tf_wire_in_len, tf_wire_in[tf_wire_in_len .. 1099511627775], tf_io_last,
            tf_io_last_os_err;
    ensures valid: tf_hs_valid(hs);
    ensures log: \result != HS_FAILED || hs->err != TF_ERR_BAD_MAGIC ==>
              tf_wire_in_len == \old(tf_wire_in_len) + (hs->got - \old(hs->got));
    ensures log_bad: \result == HS_FAILED && hs->err == TF_ERR_BAD_MAGIC ==>
              \old(tf_wire_in_len) + (hs->got - \old(hs->got)) < tf_wire_in_len <=
              \old(tf_wire_in_len) + (4 - \old(hs->got));
    ensures peer: \forall integer j; \old(tf_wire_in_len) <= j < tf_wire_in_len ==>
              tf_wire_in[j] == hs->in[\old(hs->got) + (j - \old(tf_wire_in_len))];
    ensures reason: \result == HS_FAILED ==>
              (hs->err == TF_ERR_BAD_MAGIC && hs->got < 4 &&
               hs->in[hs->got] != tf_magic_byte(hs->got)) ||
              (hs->err == TF_ERR_IO && tf_io_last == TF_IO_FAIL &&
               hs->os_err == tf_io_last_os_err) ||
              (hs->err == TF_ERR_CLOSED && tf_io_last == 0 && hs->got == 0) ||
              (hs->err == TF_ERR_TRUNCATED && tf_io_last == 0 && hs->got > 0) ||
              (hs->err == TF_ERR_INVALID_ARGUMENT &&
               (tf_io_last < TF_IO_FAIL || tf_io_last > 4 - hs->got));
    ensures half: hs->sent == \old(hs->sent) && hs->got >= \old(hs->got);
    ensures range: HS_FAILED <= \result <= HS_INTR;
    ensures failed: \result == HS_FAILED <==> hs->state == TF__HS_FAILED;
    ensures moved: \result == HS_MOVED ==> hs->got > \old(hs->got);
    ensures still: \result == HS_IDLE || \result == HS_INTR ==> hs->got == \old(hs->got);
*/
static int hs_read_once(tf_hs *hs, const tf_io *io)
{
    uint8_t *in;
    size_t want = tf_hs_in(hs, &in);
    if (want == 0)
        return HS_IDLE;
    int os_err = 0;
    tf_err err = TF_OK;
    long r;
    //@ calls tf_io_read_model;
    r = io->read(io->ctx, in, want, &os_err);
    /* The callback wrote only bytes at in[got..4), which the invariant says nothing about. */
    //@ assert kept: tf_hs_valid(hs) && hs->state == TF__HS_RUNNING && hs->sent == \at(hs->sent, Pre);
    if (r > 0)
        return tf_hs_received(hs, (size_t)r) == TF_ERROR ? HS_FAILED : HS_MOVED;
    int a = tf__io_answer(r, hs->got == 0 ? TF_ERR_CLOSED : TF_ERR_TRUNCATED, &err);
    if (a < 0) {
        hs_fail(hs, err, os_err);
        return HS_FAILED;
    }
    return a == 1 ? HS_INTR : HS_IDLE;
}

/* The ghost wire: this call's log tf_wire_out holds exactly the magic bytes it sent, and its log
 * tf_wire_in exactly the peer bytes it stored at in[got0 ..) and checked. */
/*@ requires valid: tf_hs_valid(hs);
    requires io: tf_io_read_ok(io) && tf_io_write_ok(io) && \separated(hs, io);
    assigns *hs, tf_wire_out_len, tf_wire_out[0 .. 1099511627775], tf_wire_in_len,
            tf_wire_in[0 .. 1099511627775], tf_io_last, tf_io_last_os_err;
    ensures valid: tf_hs_valid(hs);
    behavior failed:
      assumes hs->state == TF__HS_FAILED;
      assigns \nothing;
      ensures \result == TF_ERROR;
    behavior done:
      assumes hs->state == TF__HS_DONE;
      assigns \nothing;
      ensures \result == TF_DONE;
    behavior running:
      assumes hs->state == TF__HS_RUNNING;
      ensures done: \result == TF_DONE <==> hs->state == TF__HS_DONE;
      ensures error: \result == TF_ERROR <==> hs->state == TF__HS_FAILED;
      ensures again: \result == TF_AGAIN ==> hs->state == TF__HS_RUNNING;
      ensures accepted: \result == TF_DONE ==> tf_is_magic(&hs->in[0]);
      ensures sent: tf_wire_out_len == hs->sent - \old(hs->sent);
      ensures wire: \forall integer k; 0 <= k < tf_wire_out_len ==>
                tf_wire_out[k] == tf_magic_byte(\old(hs->sent) + k);
      ensures peer: \result != TF_ERROR || hs->err != TF_ERR_BAD_MAGIC ==>
                tf_wire_in_len == hs->got - \old(hs->got);
      ensures peer_bad: \result == TF_ERROR && hs->err == TF_ERR_BAD_MAGIC ==>
                hs->got - \old(hs->got) < tf_wire_in_len <= 4 - \old(hs->got);
      ensures peer_bytes: \forall integer k; 0 <= k < tf_wire_in_len ==>
                tf_wire_in[k] == hs->in[\old(hs->got) + k];
      ensures reason: \result == TF_ERROR ==>
                (hs->err == TF_ERR_BAD_MAGIC && hs->got < 4 &&
                 hs->in[hs->got] != tf_magic_byte(hs->got)) ||
                (hs->err == TF_ERR_IO && tf_io_last == TF_IO_FAIL &&
                 hs->os_err == tf_io_last_os_err) ||
                (hs->err == TF_ERR_CLOSED && tf_io_last == 0 && hs->got == 0) ||
                (hs->err == TF_ERR_TRUNCATED && tf_io_last == 0 && hs->got > 0) ||
                (hs->err == TF_ERR_INVALID_ARGUMENT &&
                 (tf_io_last < TF_IO_FAIL || tf_io_last > 4 - hs->sent ||
                  tf_io_last > 4 - hs->got));
    complete behaviors;
    disjoint behaviors;
*/
tf_step tf_hs_try(tf_hs *hs, const tf_io *io)
{
    if (hs->state != TF__HS_RUNNING)
        return hs->state == TF__HS_DONE ? TF_DONE : TF_ERROR;
    unsigned intr = 0;
    /*@ ghost tf_wire_out_len = 0;
        tf_wire_in_len = 0; */
    /*@ loop invariant tf_hs_valid(hs) && hs->state == TF__HS_RUNNING;
        loop invariant intr < TF_MAX_INTR;
        loop invariant log: tf_wire_out_len == hs->sent - \at(hs->sent, Pre);
        loop invariant wire: \forall integer k; 0 <= k < tf_wire_out_len ==>
                         tf_wire_out[k] == tf_magic_byte(\at(hs->sent, Pre) + k);
        loop invariant log_in: tf_wire_in_len == hs->got - \at(hs->got, Pre);
        loop invariant wire_in: \forall integer k; 0 <= k < tf_wire_in_len ==>
                         tf_wire_in[k] == tf_magic_byte(\at(hs->got, Pre) + k);
        loop assigns *hs, intr, tf_wire_out_len, tf_wire_out[0 .. 1099511627775], tf_wire_in_len,
                     tf_wire_in[0 .. 1099511627775], tf_io_last, tf_io_last_os_err;
        loop variant (8 - hs->sent - hs->got) * (TF_MAX_INTR + 1) + (TF_MAX_INTR - intr);
    */
    for (;;) {
        /* SPEC 4.3: read even when the write would block, so that peers cannot deadlock. */
        int w = hs_write_once(hs, io);
        if (w == HS_FAILED)
            return TF_ERROR;
        if (hs->state == TF__HS_DONE)
            return TF_DONE;
        /* TF_MAX_INTR counts consecutive interrupted answers, in the order they came. */
        //@ ghost unsigned before = intr;
        if (w == HS_MOVED)
            intr = 0;
        else if (w == HS_INTR && ++intr >= TF_MAX_INTR)
            return TF_AGAIN;
        int r = hs_read_once(hs, io);
        if (r == HS_FAILED)
            return TF_ERROR;
        if (hs->state == TF__HS_DONE)
            return TF_DONE;
        if (r == HS_MOVED)
            intr = 0;
        else if (r == HS_INTR)
            intr++;
        //@ assert unmoved: w != HS_MOVED && r != HS_MOVED ==> tf_hs_left(hs) == \at(tf_hs_left(hs), LoopCurrent);
        if (w == HS_MOVED || r == HS_MOVED) {
            //@ assert moved: tf_hs_left(hs) < \at(tf_hs_left(hs), LoopCurrent) && intr <= 1;
            continue;
        }
        if (w == HS_IDLE && r == HS_IDLE)
            return TF_AGAIN;
        //@ assert grew: intr > before;
        if (intr >= TF_MAX_INTR)
            return TF_AGAIN;
    }
}

/*@ requires tf_hs_valid(hs);
    assigns \nothing;
    ensures none: hs->state != TF__HS_RUNNING ==> \result == 0;
    ensures bits: hs->state == TF__HS_RUNNING ==>
      \result == (hs->got < 4 ? TF_WANT_READ : 0) + (hs->sent < 4 ? TF_WANT_WRITE : 0);
    ensures some: hs->state == TF__HS_RUNNING ==> \result != 0;
*/
unsigned tf_hs_wants(const tf_hs *hs)
{
    unsigned w = 0;
    if (hs->state != TF__HS_RUNNING)
        return 0;
    if (hs->got < 4u)
        w += TF_WANT_READ;
    if (hs->sent < 4u)
        w += TF_WANT_WRITE;
    return w;
}

/*@ requires \valid_read(hs);
    requires os_err == \null || (\valid(os_err) && \separated(os_err, hs));
    assigns *os_err;
    ensures \result == hs->err;
    ensures os_err != \null ==> *os_err == hs->os_err;
*/
tf_err tf_hs_error(const tf_hs *hs, int *os_err)
{
    if (os_err)
        *os_err = hs->os_err;
    return hs->err;
}
