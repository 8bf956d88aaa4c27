/* core.h -- internal helpers shared by the proto/ machines. Not installed. */
#ifndef TCPFRAME_PROTO_CORE_H
#define TCPFRAME_PROTO_CORE_H

#include "spec.h"

/* What a try-step does with a tf_io answer |r| that is not a positive byte count:
 * returns 1 to retry (interrupted), 0 to stop with AGAIN (would block), -1 to fail with *err:
 * |eof| for a 0 answer (SPEC 3.2), IO for TF_IO_FAIL, INVALID_ARGUMENT for any other,
 * contract-breaking, answer. */
/*@ requires \valid(err) && tf_proto_err(eof) && r <= 0;
    assigns *err;
    behavior intr:
      assumes r == TF_IO_INTR;
      assigns \nothing;
      ensures \result == 1;
    behavior again:
      assumes r == TF_IO_AGAIN;
      assigns \nothing;
      ensures \result == 0;
    behavior fail:
      assumes r != TF_IO_INTR && r != TF_IO_AGAIN;
      ensures \result == -1 && tf_proto_err(*err);
      ensures r == 0 ==> *err == eof;
      ensures r == TF_IO_FAIL ==> *err == TF_ERR_IO;
      ensures r != 0 && r != TF_IO_FAIL ==> *err == TF_ERR_INVALID_ARGUMENT;
    complete behaviors;
    disjoint behaviors;
*/
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
