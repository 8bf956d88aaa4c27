/* frame.c -- the stateless zero-copy splitter (SPEC 6.5). */
#include "spec.h"

/*@ requires in:  \valid_read(in + (0 .. len - 1));
    requires out: \valid(payload) && \valid(payload_len) && \valid(used);
    requires sep: \separated(payload, payload_len, used, in + (0 .. len - 1));
    assigns *payload, *payload_len, *used;
    ensures bound: *used <= len;
    behavior short:
      assumes len < 4;
      ensures \result == TF_AGAIN && *used == 0;
    behavior too_large:
      assumes len >= 4 && tf_be32(in[0], in[1], in[2], in[3]) > max_len;
      ensures \result == TF_ERROR && *used == 0;
    behavior partial:
      assumes len >= 4 && tf_be32(in[0], in[1], in[2], in[3]) <= max_len;
      assumes len - 4 < tf_be32(in[0], in[1], in[2], in[3]);
      ensures \result == TF_AGAIN && *used == 0;
    behavior whole:
      assumes len >= 4 && tf_be32(in[0], in[1], in[2], in[3]) <= max_len;
      assumes len - 4 >= tf_be32(in[0], in[1], in[2], in[3]);
      ensures \result == TF_DONE && *payload == in + 4;
      ensures *payload_len == tf_be32(in[0], in[1], in[2], in[3]) && *used == 4 + *payload_len;
    complete behaviors;
    disjoint behaviors;
*/
tf_step tf_frame_split(const uint8_t *in, size_t len, uint32_t max_len, const uint8_t **payload,
                       size_t *payload_len, size_t *used)
{
    *used = 0;
    if (len < TF_HDR_LEN)
        return TF_AGAIN;
    uint32_t plen = tf_be32_get(in);
    /* SPEC 6.2: an oversized length is refused as soon as the prefix is complete. */
    if (plen > max_len)
        return TF_ERROR;
    if (len - TF_HDR_LEN < plen)
        return TF_AGAIN;
    *payload = in + TF_HDR_LEN;
    *payload_len = plen;
    *used = TF_HDR_LEN + (size_t)plen;
    return TF_DONE;
}

