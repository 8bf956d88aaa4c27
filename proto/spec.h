/* spec.h -- the formal model of proto/ for Frama-C WP (see verify/README.md).
 *
 * To a C compiler this file is comments, except that it includes the public header. It holds:
 *  - the validity predicate of each machine (tf_hs_valid, tf_tx_valid, tf_rx_valid): every public
 *    function requires and ensures it, so a machine can only be in the states SPEC.md documents;
 *  - the models of the caller-supplied callbacks (tf_io read/write, tf_sink alloc), declared only
 *    for the prover: the try-steps are proved for every callback that keeps the model's contract.
 */
#ifndef TCPFRAME_PROTO_SPEC_H
#define TCPFRAME_PROTO_SPEC_H

#include "tcpframe/proto.h"

/*@ // SPEC 4.1: the magic 0x554E4946 in network order is 'U' 'N' 'I' 'F'.
    predicate tf_is_magic{L}(uint8_t *p) =
      p[0] == 0x55 && p[1] == 0x4E && p[2] == 0x49 && p[3] == 0x46;

    // Errors proto/ may record: the protocol range 1..63 of tf_err (SPEC 3).
    predicate tf_proto_err(tf_err e) = TF_ERR_BAD_MAGIC <= e <= TF_ERR_IO;

    // The counters and bytes of a handshake, whatever its state.
    predicate tf_hs_shape{L}(tf_hs *hs) =
      \valid(hs) && hs->sent <= 4 && hs->got <= 4 &&
      tf_is_magic(&hs->out[0]) &&
      (\forall integer i; 0 <= i < hs->got ==> hs->in[i] == hs->out[i]);

    predicate tf_hs_valid{L}(tf_hs *hs) =
      tf_hs_shape(hs) &&
      (hs->state == TF__HS_RUNNING || hs->state == TF__HS_DONE || hs->state == TF__HS_FAILED) &&
      (hs->state == TF__HS_RUNNING ==> hs->sent < 4 || hs->got < 4) &&
      (hs->state == TF__HS_DONE ==> hs->sent == 4 && hs->got == 4) &&
      (hs->state == TF__HS_FAILED ==> tf_proto_err(hs->err)) &&
      (hs->state != TF__HS_FAILED ==> hs->err == TF_OK && hs->os_err == 0);

    // Progress still possible in a running handshake: strictly decreases with every byte moved.
    logic integer tf_hs_left{L}(tf_hs *hs) = 8 - hs->sent - hs->got;

    predicate tf_tx_valid{L}(tf_tx *tx) =
      \valid(tx) &&
      (tx->state == TF__TX_IDLE || tx->state == TF__TX_SENDING || tx->state == TF__TX_FAILED) &&
      (tx->state == TF__TX_SENDING ==>
         tx->len <= tx->max_len && tx->len <= SIZE_MAX - 4 && tx->done < 4 + tx->len &&
         tf_be32(tx->hdr[0], tx->hdr[1], tx->hdr[2], tx->hdr[3]) == tx->len) &&
      (tx->state == TF__TX_FAILED ==> tf_proto_err(tx->err)) &&
      (tx->state != TF__TX_FAILED ==> tx->err == TF_OK && tx->os_err == 0);

    // The caller's side of tf_tx_begin: the borrowed payload stays readable until DONE.
    predicate tf_tx_payload_ok{L}(tf_tx *tx) =
      tx->state == TF__TX_SENDING ==>
        \valid_read(tx->payload + (0 .. tx->len - 1)) &&
        \separated(tx->payload + (0 .. tx->len - 1), tx);

    // Bytes of the frame in flight not yet emitted.
    logic integer tf_tx_left{L}(tf_tx *tx) =
      tx->state == TF__TX_SENDING ? 4 + tx->len - tx->done : 0;

    // The i-th byte of the frame in flight: its length prefix, then its payload.
    logic integer tf_tx_byte{L}(tf_tx *tx, integer i) =
      i < 4 ? tx->hdr[i] : tx->payload[i - 4];

    predicate tf_rx_valid{L}(tf_rx *rx) =
      \valid(rx) &&
      (rx->state == TF__RX_LEN || rx->state == TF__RX_TARGET || rx->state == TF__RX_BODY ||
       rx->state == TF__RX_FAILED) &&
      (rx->state == TF__RX_LEN ==> rx->got < 4) &&
      (rx->state == TF__RX_TARGET ==> 0 < rx->len <= rx->max_len && rx->got == 0) &&
      (rx->state == TF__RX_BODY ==>
         0 < rx->len <= rx->max_len && rx->got < rx->len && rx->len <= rx->cap) &&
      ((rx->state == TF__RX_LEN || rx->state == TF__RX_TARGET) ==> rx->target == \null) &&
      ((rx->state == TF__RX_TARGET || rx->state == TF__RX_BODY) ==>
         rx->len == tf_be32(rx->hdr[0], rx->hdr[1], rx->hdr[2], rx->hdr[3])) &&
      (rx->state == TF__RX_FAILED ==> tf_proto_err(rx->err)) &&
      (rx->state != TF__RX_FAILED ==> rx->err == TF_OK && rx->os_err == 0);

    // The caller's side of tf_rx_set_target: the target stays writable until DONE.
    predicate tf_rx_target_ok{L}(tf_rx *rx) =
      rx->state == TF__RX_BODY ==>
        \valid(rx->target + (0 .. rx->cap - 1)) &&
        \separated(rx->target + (0 .. rx->cap - 1), rx);

    // Bytes the receiver asks for now (tf_rx_next's answer).
    logic integer tf_rx_want{L}(tf_rx *rx) =
      rx->state == TF__RX_LEN ? 4 - rx->got :
      rx->state == TF__RX_BODY ? rx->len - rx->got : 0;

*/

#ifdef __FRAMAC__
/* The ghost wire (ghost code: never compiled). A try-step starts each of its logs empty, the
 * write model appends every byte it reports sent to tf_wire_out, the read model every byte it
 * reports delivered to tf_wire_in; the last answer of any callback (and the OS error number it
 * stored) and the last buffer the allocation hook returned are kept too. The try-steps' contracts
 * state their output and their error reasons in terms of these. */
/*@ ghost extern uint8_t tf_wire_out[1099511627776]; */
/*@ ghost extern unsigned long long tf_wire_out_len; */
/*@ ghost extern uint8_t tf_wire_in[1099511627776]; */
/*@ ghost extern unsigned long long tf_wire_in_len; */
/*@ ghost extern long tf_io_last; */
/*@ ghost extern int tf_io_last_os_err; */
/*@ ghost extern uint8_t *tf_alloc_last; */

/*@ // Bytes offered by a gather list of cnt (1 or 2) pieces, and its k-th byte.
    logic integer tf_iov_total{L}(tf_iov *iov, integer cnt) =
      cnt == 1 ? iov[0].len : iov[0].len + iov[1].len;
    logic uint8_t tf_iov_byte{L}(tf_iov *iov, integer k) =
      k < iov[0].len ? iov[0].base[k] : iov[1].base[k - iov[0].len];
    // The i-th byte of the magic (SPEC 4.1).
    logic integer tf_magic_byte(integer i) =
      i == 0 ? 0x55 : i == 1 ? 0x4E : i == 2 ? 0x49 : 0x46;
*/

/*@ // The read side of tf_rx_try. A call that began in state s0 with got g0 reads first the rest
    // of the length prefix (tf_rx_h = 4 - g0 bytes if it began in LEN, else none), then payload
    // bytes from offset tf_rx_b (g0 if it began in BODY, else 0) of the target.
    logic integer tf_rx_h(integer s0, integer g0) = s0 == TF__RX_LEN ? 4 - g0 : 0;
    logic integer tf_rx_b(integer s0, integer g0) = s0 == TF__RX_BODY ? g0 : 0;
    // The first n bytes of this call's log are the prefix bytes hdr[g0 .. g0 + n).
    predicate tf_rx_log_hdr{L}(tf_rx *rx, integer g0, integer n) =
      \forall integer k; 0 <= k < n ==> tf_wire_in[k] == rx->hdr[g0 + k];
    // After its h prefix bytes, the log holds exactly the payload bytes t[b .. got).
    predicate tf_rx_log_body{L}(uint8_t *t, integer h, integer b, integer got) =
      b <= got && tf_wire_in_len == h + (got - b) &&
      \forall integer k; b <= k < got ==> tf_wire_in[h + (k - b)] == t[k];
    // Between the reads of a tf_rx_try that began in (s0, g0), the log is what the receiver
    // stored: the prefix bytes while in LEN or once the prefix is complete, then the payload.
    predicate tf_rx_log{L}(tf_rx *rx, integer s0, integer g0) =
      ((s0 == TF__RX_LEN && g0 < 4) || (s0 == TF__RX_TARGET && g0 == 0) || s0 == TF__RX_BODY) &&
      (rx->state == TF__RX_LEN ==>
         s0 == TF__RX_LEN && g0 <= rx->got && tf_wire_in_len == rx->got - g0 &&
         tf_rx_log_hdr(rx, g0, rx->got - g0)) &&
      (rx->state != TF__RX_LEN && s0 == TF__RX_LEN ==> tf_rx_log_hdr(rx, g0, 4 - g0)) &&
      (rx->state == TF__RX_TARGET ==> s0 != TF__RX_BODY && tf_wire_in_len == tf_rx_h(s0, g0)) &&
      (rx->state == TF__RX_BODY ==>
         tf_rx_log_body(rx->target, tf_rx_h(s0, g0), tf_rx_b(s0, g0), rx->got));
    // The n bytes at d are the log's bytes from index h on.
    predicate tf_wire_in_at{L}(uint8_t *d, integer n, integer h) =
      \forall integer k; 0 <= k < n ==> d[k] == tf_wire_in[h + k];
    // tf_rx_log as it will be once n more bytes of the current unit (LEN or BODY) are stored.
    predicate tf_rx_log_grown{L}(tf_rx *rx, integer s0, integer g0, integer n) =
      (rx->state == TF__RX_LEN ==>
         s0 == TF__RX_LEN && g0 <= rx->got && tf_wire_in_len == rx->got + n - g0 &&
         tf_rx_log_hdr(rx, g0, rx->got + n - g0)) &&
      (rx->state == TF__RX_BODY ==>
         (s0 == TF__RX_LEN ==> tf_rx_log_hdr(rx, g0, 4 - g0)) &&
         ((s0 == TF__RX_LEN && g0 < 4) || (s0 == TF__RX_TARGET && g0 == 0) || s0 == TF__RX_BODY) &&
         tf_rx_log_body(rx->target, tf_rx_h(s0, g0), tf_rx_b(s0, g0), rx->got + n));
    // The log of a tf_rx_try that began in (s0, g0) and delivered msg: the rest of the prefix,
    // then the payload bytes from offset tf_rx_b(s0, g0) to its end.
    predicate tf_rx_log_done{L}(tf_msg *msg, tf_rx *rx, integer s0, integer g0) =
      (s0 == TF__RX_LEN ==> tf_rx_log_hdr(rx, g0, 4 - g0)) &&
      tf_rx_log_body(msg->data, tf_rx_h(s0, g0), tf_rx_b(s0, g0), msg->len);
*/

/* The callback models: the I/O contract of tf_io and tf_sink (proto.h). They bound what a
 * callback may write; they promise nothing about what it returns, so the proof covers the
 * defensive checks of contract-breaking answers too. What they add to the ghost wire is what the
 * answer says moved: a read of r in 1..len delivered buf[0 .. r), a write of r in 1..total sent
 * the first r bytes of iov[0] ++ iov[1]. */

/*@ requires len > 0 && \valid(buf + (0 .. len - 1)) && \valid(os_err);
    assigns buf[0 .. len - 1], *os_err, tf_io_last, tf_io_last_os_err, tf_wire_in_len,
            tf_wire_in[tf_wire_in_len .. 1099511627775];
    ensures answer: tf_io_last == \result && tf_io_last_os_err == *os_err;
    ensures delivered: 0 < \result <= len && \old(tf_wire_in_len) + len <= 1099511627776 ==>
              tf_wire_in_len == \old(tf_wire_in_len) + \result &&
              (\forall integer j; \old(tf_wire_in_len) <= j < tf_wire_in_len ==>
                 tf_wire_in[j] == buf[j - \old(tf_wire_in_len)]);
    ensures nothing: !(0 < \result <= len) ==> tf_wire_in_len == \old(tf_wire_in_len);
*/
long tf_io_read_model(void *ctx, uint8_t *buf, size_t len, int *os_err);

/*@ requires cnt == 1 || cnt == 2;
    requires \valid_read(iov + (0 .. cnt - 1));
    requires \forall integer i; 0 <= i < cnt ==>
               iov[i].len > 0 && \valid_read(iov[i].base + (0 .. iov[i].len - 1));
    requires \valid(os_err);
    requires room: tf_wire_out_len + tf_iov_total(iov, cnt) <= 1099511627776;
    assigns *os_err, tf_io_last, tf_io_last_os_err, tf_wire_out_len,
            tf_wire_out[tf_wire_out_len .. 1099511627775];
    ensures answer: tf_io_last == \result && tf_io_last_os_err == *os_err;
    ensures sent: 0 < \result <= tf_iov_total(iov, cnt) ==>
              tf_wire_out_len == \old(tf_wire_out_len) + \result &&
              (\forall integer j; \old(tf_wire_out_len) <= j < tf_wire_out_len ==>
                 tf_wire_out[j] == tf_iov_byte(iov, j - \old(tf_wire_out_len)));
    ensures nothing: !(0 < \result <= tf_iov_total(iov, cnt)) ==>
              tf_wire_out_len == \old(tf_wire_out_len);
*/
long tf_io_write_model(void *ctx, const tf_iov *iov, size_t cnt, int *os_err);

/* WP (Frama-C 25) does not model allocation, so the memory the allocation hook returns is
 * modelled as a part of this region, which the receiver, its sink and the caller's other
 * objects never overlap (a requirement of tf_rx_try). */
extern uint8_t tf_heap_model[1099511627776]; /* 1 TiB: larger than any message */

/*@ requires len > 0;
    assigns tf_alloc_last;
    ensures tf_alloc_last == \result;
    ensures \result == \null ||
            (\valid(\result + (0 .. len - 1)) &&
             \subset(\result + (0 .. len - 1), &tf_heap_model[0 .. ]));
*/
uint8_t *tf_alloc_model(void *ctx, size_t len);

/*@ predicate tf_io_read_ok(tf_io *io) = \valid_read(io) && io->read == &tf_io_read_model;
    predicate tf_io_write_ok(tf_io *io) = \valid_read(io) && io->write == &tf_io_write_model;
    // What tf_rx_try needs kept apart: the machine, its I/O, sink and message, the sink's
    // buffer, the allocation region and the current target.
    predicate tf_rx_try_sep(tf_rx *rx, tf_io *io, tf_sink *sink, tf_msg *msg) =
      \separated(rx, io, sink, msg) &&
      (sink->alloc == \null ==> \separated(sink->buf + (0 .. sink->cap - 1), rx, io, sink, msg)) &&
      \separated(&tf_heap_model[0 .. 1099511627775], rx, io, sink, msg) &&
      (rx->state == TF__RX_BODY ==> \separated(rx->target + (0 .. rx->cap - 1), io, sink, msg));

    predicate tf_sink_ok(tf_sink *s) =
      \valid_read(s) &&
      (s->alloc == \null ==> s->buf == \null || \valid(s->buf + (0 .. s->cap - 1))) &&
      (s->alloc != \null ==> s->alloc == &tf_alloc_model);
*/
#endif

#endif /* TCPFRAME_PROTO_SPEC_H */
