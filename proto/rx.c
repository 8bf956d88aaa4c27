/* rx.c -- the receiver (SPEC 6): prefix in pieces, length check, target, payload in pieces. */
#include "core.h"

/*@ requires \valid(rx);
    assigns *rx;
    ensures valid: tf_rx_valid(rx);
    ensures fresh: rx->state == TF__RX_LEN && rx->got == 0 && rx->max_len == max_len;
*/
void tf_rx_init(tf_rx *rx, uint32_t max_len)
{
    rx->target = NULL;
    rx->cap = 0;
    rx->max_len = max_len;
    rx->len = 0;
    rx->got = 0;
    rx->state = TF__RX_LEN;
    rx->err = TF_OK;
    rx->os_err = 0;
    rx->hdr[0] = rx->hdr[1] = rx->hdr[2] = rx->hdr[3] = 0;
}

/*@ requires \valid(rx) && tf_proto_err(err);
    assigns rx->state, rx->err, rx->os_err;
    ensures tf_rx_valid(rx) && rx->state == TF__RX_FAILED && rx->err == err && rx->os_err == os_err;
    ensures \result == TF_ERROR;
*/
static tf_step rx_fail(tf_rx *rx, tf_err err, int os_err)
{
    rx->state = TF__RX_FAILED;
    rx->err = err;
    rx->os_err = os_err;
    return TF_ERROR;
}

/* A message is complete: hand it out and wait for the next prefix. */
/*@ requires \valid(rx) && rx->err == TF_OK && rx->os_err == 0;
    requires \valid(msg) && \separated(msg, rx);
    assigns rx->target, rx->cap, rx->got, rx->state, *msg;
    ensures tf_rx_valid(rx) && rx->state == TF__RX_LEN && rx->got == 0;
    ensures msg->data == \old(rx->target) && msg->len == rx->len;
    ensures \result == TF_DONE;
*/
static tf_step rx_done(tf_rx *rx, tf_msg *msg)
{
    msg->data = rx->target;
    msg->len = rx->len;
    rx->target = NULL;
    rx->cap = 0;
    rx->got = 0;
    rx->state = TF__RX_LEN;
    return TF_DONE;
}

/* SPEC 6.1: the receiver never asks for more than the rest of the current unit, so it never
 * consumes a byte of the next frame and never writes past its target. */
/*@ requires tf_rx_valid(rx) && tf_rx_target_ok(rx);
    requires \valid(buf) && \separated(buf, rx);
    assigns *buf;
    ensures count: \result == tf_rx_want(rx);
    ensures writable: \valid(*buf + (0 .. \result - 1));
    behavior prefix:
      assumes rx->state == TF__RX_LEN;
      ensures *buf == &rx->hdr[0] + rx->got;
    behavior payload:
      assumes rx->state == TF__RX_BODY;
      ensures *buf == rx->target + rx->got;
      ensures within: \subset(*buf + (0 .. \result - 1), rx->target + (0 .. rx->cap - 1));
    behavior none:
      assumes rx->state == TF__RX_TARGET || rx->state == TF__RX_FAILED;
      ensures *buf == \null;
    complete behaviors;
    disjoint behaviors;
*/
size_t tf_rx_next(tf_rx *rx, uint8_t **buf)
{
    if (rx->state == TF__RX_LEN) {
        *buf = rx->hdr + rx->got;
        return TF_HDR_LEN - rx->got;
    }
    if (rx->state == TF__RX_BODY) {
        *buf = rx->target + rx->got;
        return rx->len - rx->got;
    }
    *buf = NULL;
    return 0;
}

/*@ requires valid: tf_rx_valid(rx);
    requires out: \valid(msg) && \separated(msg, rx);
    assigns rx->got, rx->len, rx->state, rx->target, rx->cap, rx->err, rx->os_err, *msg;
    ensures valid: tf_rx_valid(rx);
    ensures target: rx->state == TF__RX_BODY ==>
              \old(rx->state) == TF__RX_BODY &&
              rx->target == \old(rx->target) && rx->cap == \old(rx->cap);
    ensures length: \result == TF_DONE ==>
              msg->len == tf_be32(rx->hdr[0], rx->hdr[1], rx->hdr[2], rx->hdr[3]) &&
              msg->len <= rx->max_len && rx->state == TF__RX_LEN && rx->got == 0;
    ensures error: \result == TF_ERROR <==> rx->state == TF__RX_FAILED;
    ensures reason: \result == TF_ERROR && \old(rx->state) != TF__RX_FAILED ==>
              (rx->err == TF_ERR_TOO_LARGE &&
               tf_be32(rx->hdr[0], rx->hdr[1], rx->hdr[2], rx->hdr[3]) > rx->max_len) ||
              (rx->err == TF_ERR_INVALID_ARGUMENT && n > \old(tf_rx_want(rx)) &&
               rx->got == \old(rx->got) && rx->target == \old(rx->target));
    ensures moved: \result == TF_AGAIN ==>
              (\old(rx->state) == TF__RX_LEN &&
               ((rx->state == TF__RX_LEN && rx->got == \old(rx->got) + n) ||
                rx->state == TF__RX_TARGET)) ||
              (\old(rx->state) == TF__RX_TARGET && rx->state == TF__RX_TARGET) ||
              (\old(rx->state) == TF__RX_BODY && rx->state == TF__RX_BODY &&
               rx->got == \old(rx->got) + n && rx->len == \old(rx->len));
    behavior failed:
      assumes rx->state == TF__RX_FAILED;
      assigns \nothing;
      ensures \result == TF_ERROR;
    behavior overrun:
      assumes rx->state != TF__RX_FAILED && n > tf_rx_want(rx);
      ensures \result == TF_ERROR && rx->err == TF_ERR_INVALID_ARGUMENT;
    behavior prefix:
      assumes rx->state == TF__RX_LEN && n <= 4 - rx->got;
      ensures partial: \old(rx->got) + n < 4 ==>
                \result == TF_AGAIN && rx->state == TF__RX_LEN && rx->got == \old(rx->got) + n;
      ensures too_large: \old(rx->got) + n == 4 &&
                tf_be32(rx->hdr[0], rx->hdr[1], rx->hdr[2], rx->hdr[3]) > rx->max_len ==>
                \result == TF_ERROR && rx->err == TF_ERR_TOO_LARGE;
      ensures empty: \old(rx->got) + n == 4 &&
                tf_be32(rx->hdr[0], rx->hdr[1], rx->hdr[2], rx->hdr[3]) == 0 ==>
                \result == TF_DONE && msg->len == 0 && msg->data == \null;
      ensures wants_target: \old(rx->got) + n == 4 &&
                0 < tf_be32(rx->hdr[0], rx->hdr[1], rx->hdr[2], rx->hdr[3]) <= rx->max_len ==>
                \result == TF_AGAIN && rx->state == TF__RX_TARGET &&
                rx->len == tf_be32(rx->hdr[0], rx->hdr[1], rx->hdr[2], rx->hdr[3]);
    behavior waiting:
      assumes rx->state == TF__RX_TARGET && n == 0;
      ensures \result == TF_AGAIN && rx->state == TF__RX_TARGET && rx->len == \old(rx->len);
    behavior payload:
      assumes rx->state == TF__RX_BODY && n <= rx->len - rx->got;
      ensures partial: \old(rx->got) + n < \old(rx->len) ==>
                \result == TF_AGAIN && rx->state == TF__RX_BODY && rx->got == \old(rx->got) + n &&
                rx->len == \old(rx->len);
      ensures whole: \old(rx->got) + n == \old(rx->len) ==>
                \result == TF_DONE && msg->data == \old(rx->target) && msg->len == \old(rx->len);
    complete behaviors;
    disjoint behaviors;
*/
tf_step tf_rx_advance(tf_rx *rx, size_t n, tf_msg *msg)
{
    if (rx->state == TF__RX_FAILED)
        return TF_ERROR;
    size_t want = rx->state == TF__RX_LEN    ? TF_HDR_LEN - rx->got
                  : rx->state == TF__RX_BODY ? rx->len - rx->got
                                            : 0;
    if (n > want)
        return rx_fail(rx, TF_ERR_INVALID_ARGUMENT, 0);
    rx->got += n;
    if (rx->state == TF__RX_LEN) {
        if (rx->got < TF_HDR_LEN)
            return TF_AGAIN;
        rx->len = tf_be32_get(rx->hdr);
        rx->got = 0;
        /* SPEC 6.2: refuse an oversized length before any target is asked for. */
        if (rx->len > rx->max_len)
            return rx_fail(rx, TF_ERR_TOO_LARGE, 0);
        if (rx->len == 0)
            return rx_done(rx, msg);
        rx->state = TF__RX_TARGET;
        return TF_AGAIN;
    }
    if (rx->state == TF__RX_BODY && rx->got == rx->len)
        return rx_done(rx, msg);
    return TF_AGAIN;
}

/*@ requires tf_rx_valid(rx);
    requires len == \null || (\valid(len) && \separated(len, rx));
    assigns *len;
    ensures \result == (rx->state == TF__RX_TARGET ? 1 : 0);
    ensures rx->state == TF__RX_TARGET && len != \null ==> *len == rx->len;
*/
int tf_rx_wants_target(const tf_rx *rx, size_t *len)
{
    if (rx->state != TF__RX_TARGET)
        return 0;
    if (len)
        *len = rx->len;
    return 1;
}

/*@ requires valid: tf_rx_valid(rx);
    requires buf: buf == \null ||
                  (\valid(buf + (0 .. cap - 1)) && \separated(buf + (0 .. cap - 1), rx));
    assigns rx->target, rx->cap, rx->got, rx->state, rx->err, rx->os_err;
    ensures valid: tf_rx_valid(rx);
    behavior failed:
      assumes rx->state == TF__RX_FAILED;
      assigns \nothing;
      ensures \result == rx->err;
    behavior unwanted:
      assumes rx->state == TF__RX_LEN || rx->state == TF__RX_BODY;
      assigns \nothing;
      ensures \result == TF_ERR_BAD_STATE;
    behavior too_small:
      assumes rx->state == TF__RX_TARGET && cap < rx->len;
      ensures \result == TF_ERR_BUFFER_TOO_SMALL && rx->state == TF__RX_FAILED && rx->err == \result;
      ensures rx->target == \null;
    behavior no_memory:
      assumes rx->state == TF__RX_TARGET && cap >= rx->len && buf == \null;
      ensures \result == TF_ERR_NOMEM && rx->state == TF__RX_FAILED && rx->err == \result;
    behavior accepted:
      assumes rx->state == TF__RX_TARGET && cap >= rx->len && buf != \null;
      ensures \result == TF_OK && rx->state == TF__RX_BODY && rx->got == 0;
      ensures rx->target == buf && rx->cap == cap && tf_rx_target_ok(rx);
    complete behaviors;
    disjoint behaviors;
*/
tf_err tf_rx_set_target(tf_rx *rx, uint8_t *buf, size_t cap)
{
    if (rx->state == TF__RX_FAILED)
        return rx->err;
    if (rx->state != TF__RX_TARGET)
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
    rx->state = TF__RX_BODY;
    return TF_OK;
}

/* A proved byte copy. restrict matches the proved separation and lets the compiler emit a
 * memmove call for it (see PROTO_CFLAGS in the Makefile): batched reads are a hot path. */
/*@ requires \valid(dst + (0 .. n - 1)) && \valid_read(src + (0 .. n - 1));
    requires \separated(dst + (0 .. n - 1), src + (0 .. n - 1));
    assigns dst[0 .. n - 1];
    ensures \forall integer k; 0 <= k < n ==> dst[k] == src[k];
*/
static void copy(uint8_t *restrict dst, const uint8_t *restrict src, size_t n)
{
    /*@ loop invariant 0 <= i <= n;
        loop invariant \forall integer k; 0 <= k < i ==> dst[k] == src[k];
        loop assigns i, dst[0 .. n - 1];
        loop variant n - i;
    */
    for (size_t i = 0; i < n; i++)
        dst[i] = src[i];
}

/*@ requires valid: tf_rx_valid(rx) && tf_rx_target_ok(rx);
    requires in: \valid_read(in + (0 .. len - 1));
    requires out: \valid(used) && \valid(msg);
    requires sep: \separated(used, msg, rx, in + (0 .. len - 1));
    requires target_sep: rx->state == TF__RX_BODY ==>
               \separated(rx->target + (0 .. rx->cap - 1), used, msg, in + (0 .. len - 1));
    assigns *rx, *used, *msg, rx->target[0 .. rx->cap - 1];
    ensures valid: tf_rx_valid(rx) && tf_rx_target_ok(rx);
    ensures bound: *used <= len;
    ensures error: \result == TF_ERROR <==> rx->state == TF__RX_FAILED;
    behavior failed:
      assumes rx->state == TF__RX_FAILED;
      assigns *used;
      ensures \result == TF_ERROR && *used == 0;
    behavior wants_target:
      assumes rx->state == TF__RX_TARGET;
      ensures \result == TF_AGAIN && *used == 0;
      ensures rx->state == TF__RX_TARGET && rx->len == \old(rx->len);
    behavior prefix:
      assumes rx->state == TF__RX_LEN;
      ensures used: *used == \min(len, 4 - \old(rx->got));
      ensures stored: \forall integer k; 0 <= k < *used ==> rx->hdr[\old(rx->got) + k] == in[k];
      ensures partial: \old(rx->got) + len < 4 ==>
                \result == TF_AGAIN && rx->state == TF__RX_LEN && rx->got == \old(rx->got) + len;
      ensures too_large: \old(rx->got) + len >= 4 &&
                tf_be32(rx->hdr[0], rx->hdr[1], rx->hdr[2], rx->hdr[3]) > rx->max_len ==>
                \result == TF_ERROR && rx->err == TF_ERR_TOO_LARGE;
      ensures empty: \old(rx->got) + len >= 4 &&
                tf_be32(rx->hdr[0], rx->hdr[1], rx->hdr[2], rx->hdr[3]) == 0 ==>
                \result == TF_DONE && msg->len == 0 && msg->data == \null &&
                rx->state == TF__RX_LEN && rx->got == 0;
      ensures wants_target: \old(rx->got) + len >= 4 &&
                0 < tf_be32(rx->hdr[0], rx->hdr[1], rx->hdr[2], rx->hdr[3]) <= rx->max_len ==>
                \result == TF_AGAIN && rx->state == TF__RX_TARGET &&
                rx->len == tf_be32(rx->hdr[0], rx->hdr[1], rx->hdr[2], rx->hdr[3]);
    behavior payload:
      assumes rx->state == TF__RX_BODY;
      ensures used: *used == \min(len, \old(rx->len) - \old(rx->got));
      ensures stored: \forall integer k; 0 <= k < *used ==>
                \old(rx->target)[\old(rx->got) + k] == in[k];
      ensures partial: \old(rx->got) + len < \old(rx->len) ==>
                \result == TF_AGAIN && rx->state == TF__RX_BODY &&
                rx->got == \old(rx->got) + len && rx->target == \old(rx->target);
      ensures whole: \old(rx->got) + len >= \old(rx->len) ==>
                \result == TF_DONE && msg->data == \old(rx->target) && msg->len == \old(rx->len) &&
                rx->state == TF__RX_LEN && rx->got == 0;
    complete behaviors;
    disjoint behaviors;
*/
tf_step tf_rx_feed(tf_rx *rx, const uint8_t *in, size_t len, size_t *used, tf_msg *msg)
{
    uint8_t *dst;
    *used = 0;
    if (rx->state == TF__RX_FAILED)
        return TF_ERROR; /* sticky: nothing consumed, nothing written */
    /* One copy is all there is to do: the receiver asks for the rest of the current unit only,
     * and a completed prefix either ends the call (error, empty message) or wants a target. */
    size_t want = tf_rx_next(rx, &dst);
    if (want == 0 || len == 0)
        return TF_AGAIN;
    size_t n = want < len ? want : len;
    copy(dst, in, n);
    *used = n;
    return tf_rx_advance(rx, n, msg);
}

/* Ask the sink for the target of a message whose length is known. */
/*@ requires tf_rx_valid(rx) && rx->state == TF__RX_TARGET;
    requires tf_sink_ok(sink) && \separated(sink, rx);
    requires sink->alloc == \null ==> \separated(sink->buf + (0 .. sink->cap - 1), rx);
    requires \separated(&tf_heap_model[0 .. 1099511627775], rx);
    assigns rx->target, rx->cap, rx->got, rx->state, rx->err, rx->os_err, tf_alloc_last;
    ensures valid: tf_rx_valid(rx) && tf_rx_target_ok(rx);
    ensures error: \result == TF_ERROR <==> rx->state == TF__RX_FAILED;
    ensures outcome: \result == TF_AGAIN || \result == TF_ERROR;
    ensures reason: \result == TF_ERROR ==>
              (rx->err == TF_ERR_BUFFER_TOO_SMALL && sink->alloc == \null && sink->cap < rx->len) ||
              (rx->err == TF_ERR_NOMEM &&
               (sink->alloc == \null ? sink->buf == \null : tf_alloc_last == \null));
    ensures ok: \result == TF_AGAIN ==>
              rx->state == TF__RX_BODY && rx->got == 0 && rx->len == \old(rx->len);
    ensures from_sink: rx->state == TF__RX_BODY ==>
              (sink->alloc == \null && rx->target == sink->buf && rx->cap == sink->cap) ||
              (sink->alloc != \null && rx->target == tf_alloc_last &&
               \subset(rx->target + (0 .. rx->cap - 1), &tf_heap_model[0 .. 1099511627775]));
*/
static tf_step rx_obtain_target(tf_rx *rx, const tf_sink *sink)
{
    tf_err err;
    if (sink->alloc != NULL) {
        uint8_t *buf;
        //@ calls tf_alloc_model;
        buf = sink->alloc(sink->ctx, rx->len);
        err = tf_rx_set_target(rx, buf, rx->len);
    } else {
        err = tf_rx_set_target(rx, sink->buf, sink->cap);
    }
    return err == TF_OK ? TF_AGAIN : TF_ERROR;
}

/* One read into what the receiver asks for (the rest of the prefix or of the payload), and the
 * step a positive answer makes: *r is the answer, the result tf_rx_advance's (AGAIN when nothing
 * was read). Ghost: the tf_rx_try that calls it began in state s0 with got g0; the read appends
 * to the log exactly the bytes it stored, so the log keeps matching the receiver (tf_rx_log). */
/*@ requires valid: tf_rx_valid(rx) && tf_rx_target_ok(rx);
    requires state: rx->state == TF__RX_LEN || rx->state == TF__RX_BODY;
    requires io: tf_io_read_ok(io);
    requires out: \valid(msg) && \valid(r) && \valid(os_err);
    requires sep: \separated(rx, io, msg, r, os_err);
    requires target_sep: rx->state == TF__RX_BODY ==>
               \separated(rx->target + (0 .. rx->cap - 1), io, msg, r, os_err);
    requires log: tf_rx_log(rx, s0, g0);
    assigns rx->got, rx->len, rx->state, rx->target, rx->cap, rx->err, rx->os_err, rx->hdr[0 .. 3],
            rx->target[0 .. rx->cap - 1], *msg, *r, *os_err, tf_wire_in_len,
            tf_wire_in[tf_wire_in_len .. 1099511627775], tf_io_last, tf_io_last_os_err;
    ensures valid: tf_rx_valid(rx) && tf_rx_target_ok(rx);
    ensures answer: *r == tf_io_last && *os_err == tf_io_last_os_err;
    ensures quiet: *r <= 0 ==>
              rx->state == \old(rx->state) && rx->got == \old(rx->got) &&
              rx->target == \old(rx->target) && rx->cap == \old(rx->cap) &&
              rx->len == \old(rx->len) && tf_rx_log(rx, s0, g0);
    ensures error: *r > 0 ==> (\result == TF_ERROR <==> rx->state == TF__RX_FAILED);
    ensures reason: *r > 0 && \result == TF_ERROR ==>
              (rx->err == TF_ERR_TOO_LARGE &&
               tf_be32(rx->hdr[0], rx->hdr[1], rx->hdr[2], rx->hdr[3]) > rx->max_len) ||
              (rx->err == TF_ERR_INVALID_ARGUMENT && *r > \old(tf_rx_want(rx)));
    ensures done: *r > 0 && \result == TF_DONE ==>
              msg->len == tf_be32(rx->hdr[0], rx->hdr[1], rx->hdr[2], rx->hdr[3]) &&
              msg->len <= rx->max_len && rx->state == TF__RX_LEN && rx->got == 0 &&
              (msg->len == 0 ==> msg->data == \null) &&
              (msg->len > 0 ==> \old(rx->state) == TF__RX_BODY && msg->data == \old(rx->target));
    ensures done_prefix: *r > 0 && \result == TF_DONE && s0 == TF__RX_LEN ==>
              tf_wire_in_len == (4 - g0) + msg->len &&
              (\forall integer k; 0 <= k < 4 - g0 ==> rx->hdr[g0 + k] == tf_wire_in[k]);
    ensures done_payload: *r > 0 && \result == TF_DONE && s0 == TF__RX_LEN ==>
              tf_wire_in_at(msg->data, msg->len, 4 - g0);
    ensures done_target: *r > 0 && \result == TF_DONE && s0 == TF__RX_TARGET ==>
              tf_wire_in_len == msg->len &&
              \forall integer k; 0 <= k < msg->len ==> msg->data[k] == tf_wire_in[k];
    ensures done_body: *r > 0 && \result == TF_DONE && s0 == TF__RX_BODY ==>
              tf_wire_in_len == msg->len - g0 &&
              \forall integer k; 0 <= k < msg->len - g0 ==> msg->data[g0 + k] == tf_wire_in[k];
    ensures again: *r > 0 && \result == TF_AGAIN ==>
              (\old(rx->state) == TF__RX_LEN &&
               ((rx->state == TF__RX_LEN && rx->got > \old(rx->got)) ||
                rx->state == TF__RX_TARGET)) ||
              (\old(rx->state) == TF__RX_BODY && rx->state == TF__RX_BODY &&
               rx->got > \old(rx->got) && rx->len == \old(rx->len) &&
               rx->target == \old(rx->target) && rx->cap == \old(rx->cap));
    ensures again_log: *r > 0 && \result == TF_AGAIN ==> tf_rx_log(rx, s0, g0);
*/
static tf_step rx_read_step(tf_rx *rx, const tf_io *io, tf_msg *msg, long *r, int *os_err)
    /*@ ghost (int s0, size_t g0) */
{
    /* Stepping stones for the prover (the log before the read, one state at a time). */
    /*@ assert pre_len: rx->state == TF__RX_LEN ==>
          s0 == TF__RX_LEN && g0 <= rx->got && tf_wire_in_len == rx->got - g0 &&
          \forall integer k; 0 <= k < rx->got - g0 ==> tf_wire_in[k] == rx->hdr[g0 + k]; */
    /*@ assert pre_hdr: rx->state == TF__RX_BODY && s0 == TF__RX_LEN ==>
          \forall integer k; 0 <= k < 4 - g0 ==> tf_wire_in[k] == rx->hdr[g0 + k]; */
    /*@ assert pre_body_j: rx->state == TF__RX_BODY ==>
          \forall integer j; tf_rx_h(s0, g0) <= j < tf_wire_in_len ==>
            tf_wire_in[j] == rx->target[tf_rx_b(s0, g0) + (j - tf_rx_h(s0, g0))]; */
    /*@ assert pre_body: rx->state == TF__RX_BODY ==> 0 <= tf_rx_h(s0, g0) <= 4 && tf_rx_b(s0, g0) <= rx->got &&
          tf_wire_in_len == tf_rx_h(s0, g0) + (rx->got - tf_rx_b(s0, g0)) &&
          \forall integer k; tf_rx_b(s0, g0) <= k < rx->got ==>
            tf_wire_in[tf_rx_h(s0, g0) + (k - tf_rx_b(s0, g0))] == rx->target[k]; */
    uint8_t *dst;
    size_t want = tf_rx_next(rx, &dst);
    //@ assert room: tf_wire_in_len + want <= 1099511627776;
    //@ ghost unsigned long long n0 = tf_wire_in_len;
    //@ calls tf_io_read_model;
    *r = io->read(io->ctx, dst, want, os_err);
    /*@ assert rx_kept: rx->state == \at(rx->state, Pre) && rx->got == \at(rx->got, Pre) &&
          rx->target == \at(rx->target, Pre) && rx->cap == \at(rx->cap, Pre) &&
          rx->len == \at(rx->len, Pre) && rx->err == \at(rx->err, Pre) &&
          rx->os_err == \at(rx->os_err, Pre) && rx->max_len == \at(rx->max_len, Pre); */
    //@ assert old_log: \forall integer k; 0 <= k < n0 ==> tf_wire_in[k] == \at(tf_wire_in[k], Pre);
    /*@ assert len_kept: rx->state == TF__RX_LEN ==>
          \forall integer k; 0 <= k < rx->got - g0 ==> tf_wire_in[k] == rx->hdr[g0 + k]; */
    /*@ assert hdr_kept: rx->state == TF__RX_BODY && s0 == TF__RX_LEN ==>
          \forall integer k; 0 <= k < 4 - g0 ==> tf_wire_in[k] == rx->hdr[g0 + k]; */
    /*@ assert target_kept: rx->state == TF__RX_BODY ==>
          \forall integer k; 0 <= k < rx->got ==> rx->target[k] == \at(rx->target[k], Pre); */
    /*@ assert wire_kept: rx->state == TF__RX_BODY ==>
          \forall integer k; tf_rx_b(s0, g0) <= k < rx->got ==>
            tf_wire_in[tf_rx_h(s0, g0) + (k - tf_rx_b(s0, g0))] ==
            \at(tf_wire_in[tf_rx_h(s0, g0) + (k - tf_rx_b(s0, g0))], Pre); */
    /*@ assert body_kept_j: rx->state == TF__RX_BODY ==>
          \forall integer j; tf_rx_h(s0, g0) <= j < n0 ==>
            tf_wire_in[j] == rx->target[tf_rx_b(s0, g0) + (j - tf_rx_h(s0, g0))]; */
    /*@ assert body_kept: rx->state == TF__RX_BODY ==>
          \forall integer k; tf_rx_b(s0, g0) <= k < rx->got ==>
            tf_wire_in[tf_rx_h(s0, g0) + (k - tf_rx_b(s0, g0))] == rx->target[k]; */
    /*@ assert read: 0 < *r <= want ==> tf_wire_in_len == n0 + *r &&
          \forall integer j; 0 <= j < *r ==> tf_wire_in[n0 + j] == dst[j]; */
    //@ assert none: !(0 < *r <= want) ==> tf_wire_in_len == n0;
    //@ assert valid_kept: tf_rx_valid(rx) && tf_rx_target_ok(rx);
    //@ assert quiet_log: !(0 < *r <= want) ==> tf_rx_log(rx, s0, g0);
    /*@ assert grown_len: 0 < *r <= want && rx->state == TF__RX_LEN ==>
          tf_wire_in_len == rx->got + *r - g0 &&
          \forall integer k; 0 <= k < rx->got + *r - g0 ==> tf_wire_in[k] == rx->hdr[g0 + k]; */
    /*@ assert grown_body: 0 < *r <= want && rx->state == TF__RX_BODY ==>
          tf_wire_in_len == tf_rx_h(s0, g0) + (rx->got + *r - tf_rx_b(s0, g0)) &&
          \forall integer k; tf_rx_b(s0, g0) <= k < rx->got + *r ==>
            tf_wire_in[tf_rx_h(s0, g0) + (k - tf_rx_b(s0, g0))] == rx->target[k]; */
    //@ assert grown: 0 < *r <= want ==> tf_rx_log_grown(rx, s0, g0, *r);
    if (*r <= 0)
        return TF_AGAIN;
    //@ assert want_now: want == tf_rx_want(rx);
    /*@ assert payload_after_prefix: *r <= tf_rx_want(rx) && rx->state == TF__RX_BODY && s0 == TF__RX_LEN ==>
          \forall integer k; 0 <= k < rx->got + *r ==> rx->target[k] == tf_wire_in[4 - g0 + k]; */
    tf_step st = tf_rx_advance(rx, (size_t)*r, msg);
    //@ assert done_log: st == TF_DONE ==> tf_rx_log_done(msg, rx, s0, g0);
    return st;
}

/*@ requires valid: tf_rx_valid(rx) && tf_rx_target_ok(rx);
    requires io: tf_io_read_ok(io);
    requires sink: tf_sink_ok(sink);
    requires out: \valid(msg);
    requires sep: tf_rx_try_sep(rx, io, sink, msg);
    assigns *rx, *msg, sink->buf[0 .. sink->cap - 1], rx->target[0 .. rx->cap - 1],
            tf_heap_model[0 .. 1099511627775], tf_wire_in_len, tf_wire_in[0 .. 1099511627775],
            tf_io_last, tf_io_last_os_err, tf_alloc_last;
    ensures valid: tf_rx_valid(rx);
    behavior failed:
      assumes rx->state == TF__RX_FAILED;
      assigns \nothing;
      ensures \result == TF_ERROR;
    behavior live:
      assumes rx->state != TF__RX_FAILED;
      ensures error: \result == TF_ERROR <==> rx->state == TF__RX_FAILED;
      ensures length: \result == TF_DONE ==>
                msg->len == tf_be32(rx->hdr[0], rx->hdr[1], rx->hdr[2], rx->hdr[3]) &&
                msg->len <= rx->max_len;
      ensures next: \result == TF_DONE ==>
                rx->state == TF__RX_LEN && rx->got == 0 && rx->target == \null;
      ensures empty: \result == TF_DONE && msg->len == 0 ==> msg->data == \null;
      ensures where: \result == TF_DONE && msg->len > 0 ==>
                (\old(rx->state) == TF__RX_BODY && msg->data == \old(rx->target)) ||
                (sink->alloc == \null && msg->data == sink->buf) ||
                (sink->alloc != \null && msg->data == tf_alloc_last);
      ensures again: \result == TF_AGAIN ==>
                (rx->state == TF__RX_LEN || rx->state == TF__RX_BODY) &&
                (tf_io_last == TF_IO_AGAIN || tf_io_last == TF_IO_INTR);
      ensures wire_prefix: \result == TF_DONE && \old(rx->state) == TF__RX_LEN ==>
                tf_wire_in_len == (4 - \old(rx->got)) + msg->len &&
                (\forall integer k; 0 <= k < 4 - \old(rx->got) ==>
                   rx->hdr[\old(rx->got) + k] == tf_wire_in[k]);
      ensures wire_payload: \result == TF_DONE && \old(rx->state) == TF__RX_LEN ==>
                tf_wire_in_at(msg->data, msg->len, 4 - \old(rx->got));
      ensures wire_target: \result == TF_DONE && \old(rx->state) == TF__RX_TARGET ==>
                tf_wire_in_len == msg->len &&
                \forall integer k; 0 <= k < msg->len ==> msg->data[k] == tf_wire_in[k];
      ensures wire_body: \result == TF_DONE && \old(rx->state) == TF__RX_BODY ==>
                tf_wire_in_len == msg->len - \old(rx->got) &&
                \forall integer k; 0 <= k < msg->len - \old(rx->got) ==>
                  msg->data[\old(rx->got) + k] == tf_wire_in[k];
      ensures wire_again: \result == TF_AGAIN ==> tf_rx_log(rx, \old(rx->state), \old(rx->got));
      ensures reason: \result == TF_ERROR ==>
                (rx->err == TF_ERR_TOO_LARGE &&
                 tf_be32(rx->hdr[0], rx->hdr[1], rx->hdr[2], rx->hdr[3]) > rx->max_len) ||
                (rx->err == TF_ERR_BUFFER_TOO_SMALL && sink->alloc == \null &&
                 sink->cap < rx->len) ||
                (rx->err == TF_ERR_NOMEM &&
                 (sink->alloc == \null ? sink->buf == \null : tf_alloc_last == \null)) ||
                (rx->err == TF_ERR_CLOSED && tf_io_last == 0 &&
                 rx->target == \null && rx->got == 0) ||
                (rx->err == TF_ERR_TRUNCATED && tf_io_last == 0 &&
                 (rx->target != \null || rx->got > 0)) ||
                (rx->err == TF_ERR_IO && tf_io_last == TF_IO_FAIL &&
                 rx->os_err == tf_io_last_os_err) ||
                (rx->err == TF_ERR_INVALID_ARGUMENT &&
                 (tf_io_last < TF_IO_FAIL || tf_io_last > 0));
    complete behaviors;
    disjoint behaviors;
*/
tf_step tf_rx_try(tf_rx *rx, const tf_io *io, const tf_sink *sink, tf_msg *msg)
{
    if (rx->state == TF__RX_FAILED)
        return TF_ERROR;
    unsigned intr = 0;
    int os_err;
    tf_err err, eof;
    long r;
    tf_step st;
    /*@ ghost int s0 = rx->state;
        size_t g0 = rx->got;
        tf_wire_in_len = 0; */
    /*@ loop invariant tf_rx_valid(rx) && tf_rx_target_ok(rx) && rx->state != TF__RX_FAILED;
        loop invariant log: tf_rx_log(rx, s0, g0);
        loop invariant tf_rx_try_sep(rx, io, sink, msg);
        loop invariant intr < TF_MAX_INTR;
        loop invariant rx->state == TF__RX_BODY ==>
          (\at(rx->state, Pre) == TF__RX_BODY &&
           rx->target == \at(rx->target, Pre) && rx->cap == \at(rx->cap, Pre)) ||
          (sink->alloc == \null && rx->target == sink->buf && rx->cap == sink->cap) ||
          (sink->alloc != \null && rx->target == tf_alloc_last &&
           \subset(rx->target + (0 .. rx->cap - 1), &tf_heap_model[0 .. 1099511627775]));
        loop assigns *rx, *msg, sink->buf[0 .. sink->cap - 1],
                     \at(rx->target, Pre)[0 .. \at(rx->cap, Pre) - 1], tf_heap_model[0 .. 1099511627775],
                     intr, os_err, err, eof, r, st, tf_wire_in_len,
                     tf_wire_in[0 .. 1099511627775], tf_io_last, tf_io_last_os_err, tf_alloc_last;
        loop variant (rx->state == TF__RX_LEN ? 4294967301 - rx->got :
                      rx->state == TF__RX_TARGET ? 4294967296 : rx->len - rx->got)
                     * (TF_MAX_INTR + 1) + (TF_MAX_INTR - intr);
    */
    for (;;) {
        if (rx->state == TF__RX_TARGET) {
            if (rx_obtain_target(rx, sink) == TF_ERROR)
                return TF_ERROR;
            //@ assert target: rx->state == TF__RX_BODY && rx->got == 0 && rx->len < 4294967296;
            continue;
        }
        os_err = 0;
        err = TF_OK;
        st = rx_read_step(rx, io, msg, &r, &os_err) /*@ ghost (s0, g0) */;
        if (r > 0) {
            if (st != TF_AGAIN)
                return st;
            /*@ assert progress:
                  (\at(rx->state, LoopCurrent) == TF__RX_LEN &&
                   ((rx->state == TF__RX_LEN && rx->got > \at(rx->got, LoopCurrent)) ||
                    rx->state == TF__RX_TARGET)) ||
                  (\at(rx->state, LoopCurrent) == TF__RX_BODY && rx->state == TF__RX_BODY &&
                   rx->got > \at(rx->got, LoopCurrent) && rx->len == \at(rx->len, LoopCurrent));
            */
            intr = 0; /* progress: TF_MAX_INTR counts consecutive interrupted answers */
            continue;
        }
        /* SPEC 6.4: a close between messages is CLOSED, inside one TRUNCATED. */
        eof = rx->state == TF__RX_LEN && rx->got == 0 ? TF_ERR_CLOSED : TF_ERR_TRUNCATED;
        if (tf__io_answer(r, eof, &err) < 0)
            return rx_fail(rx, err, os_err);
        if (r == TF_IO_AGAIN || ++intr >= TF_MAX_INTR)
            return TF_AGAIN;
    }
}

/*@ requires tf_rx_valid(rx);
    assigns rx->target, rx->cap, rx->state, rx->err, rx->os_err;
    ensures tf_rx_valid(rx) && rx->state == TF__RX_FAILED;
    ensures \result == \old(rx->target) && rx->target == \null;
    ensures \old(rx->state) == TF__RX_FAILED ==> rx->err == \old(rx->err);
*/
uint8_t *tf_rx_abandon(tf_rx *rx)
{
    uint8_t *t = rx->target;
    rx->target = NULL;
    rx->cap = 0;
    if (rx->state != TF__RX_FAILED)
        rx_fail(rx, TF_ERR_BAD_STATE, 0);
    return t;
}

/*@ requires \valid_read(rx);
    requires os_err == \null || (\valid(os_err) && \separated(os_err, rx));
    assigns *os_err;
    ensures \result == rx->err;
    ensures os_err != \null ==> *os_err == rx->os_err;
*/
tf_err tf_rx_error(const tf_rx *rx, int *os_err)
{
    if (os_err)
        *os_err = rx->os_err;
    return rx->err;
}
