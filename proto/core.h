/* core.h -- internal helpers shared by the proto/ machines. Not installed. */
#ifndef TCPFRAME_PROTO_CORE_H
#define TCPFRAME_PROTO_CORE_H

#include "tcpframe/proto.h"

/* What a try-step does with a tf_io answer |r| that is not a positive byte count:
 * returns 1 to retry (interrupted), 0 to stop with AGAIN (would block), -1 to fail with *err:
 * |eof| for a 0 answer, IO for TF_IO_FAIL, INVALID_ARGUMENT for any other (contract-breaking)
 * answer. */
static inline int tf__io_answer(long r, tf_err eof, tf_err *err)
{
    if (r == TF_IO_INTR)
        return 1;
    if (r == TF_IO_AGAIN)
        return 0;
    *err = r == 0 ? eof : r == TF_IO_FAIL ? TF_ERR_IO : TF_ERR_INVALID_ARGUMENT;
    return -1;
}

#endif
