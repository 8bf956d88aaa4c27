/* frame.c -- the stateless zero-copy splitter (SPEC 6.5). */
#include "tcpframe/proto.h"

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

