/* tcpframe/err.h -- the one error enum of the whole library.
 *
 * Every fallible function of tcpframe returns a tf_err (or a tri-state tf_step whose reason is
 * read back as a tf_err). One X-macro list generates the enum, tf_strerror() and tf_err_name(),
 * so the three can never drift apart.
 *
 * Ranges (append only; never renumber -- the numbers are ABI):
 *   0        TF_OK
 *   1..63    protocol and core errors: the only codes proto/ can produce
 *   64..127  io/ errors: event loop, futures, sockets, addresses
 */
#ifndef TCPFRAME_ERR_H
#define TCPFRAME_ERR_H

#include "tcpframe/export.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TF_ERR_LIST(X)                                                                           \
    X(OK, 0, "success")                                                                          \
    X(BAD_MAGIC, 1, "handshake magic mismatch: the peer is not a tcpframe/uniflow endpoint")     \
    X(TOO_LARGE, 2, "message length exceeds the maximum message size")                          \
    X(BUFFER_TOO_SMALL, 3, "message does not fit the receive buffer")                           \
    X(BAD_STATE, 4, "operation not valid in the current state")                                  \
    X(INVALID_ARGUMENT, 5, "invalid argument")                                                   \
    X(CLOSED, 6, "peer closed the connection")                                                   \
    X(TRUNCATED, 7, "peer closed the connection in the middle of a message or handshake")        \
    X(NOMEM, 8, "out of memory")                                                                 \
    X(IO, 9, "I/O failed; the OS error number is kept with the error")                           \
    X(BUSY, 64, "another operation of this kind is already in flight")                          \
    X(NOT_CONNECTED, 65, "not connected")                                                        \
    X(TIMEOUT, 66, "timed out")                                                                  \
    X(CANCELLED, 67, "cancelled: the promise was dropped before it was fulfilled")               \
    X(SHUTDOWN, 68, "the event loop is stopped or shutting down")                                \
    X(BAD_ADDRESS, 69, "bad address: expected host:port or [ipv6]:port")                         \
    X(PEER_DENIED, 70, "the peer's credentials are not allowed here (Unix-domain uid rule)")      \
    X(TLS, 71, "TLS failed (handshake or record); os_err holds OpenSSL's reason code")           \
    X(TLS_VERIFY, 72, "the peer's certificate failed verification; os_err holds the X.509 code")

typedef enum tf_err {
#define TF_ERR_ENUM_(name, num, text) TF_ERR_##name = num,
    TF_ERR_LIST(TF_ERR_ENUM_)
#undef TF_ERR_ENUM_
} tf_err;

#define TF_OK TF_ERR_OK

/* Human-readable text for |e|; never NULL. Unknown values give "unknown tcpframe error". */
TF_API const char *tf_strerror(tf_err e);

/* The enumerator's name without its prefix ("TOO_LARGE"); never NULL ("UNKNOWN" if unknown). */
TF_API const char *tf_err_name(tf_err e);

#ifdef __cplusplus
}
#endif
#endif /* TCPFRAME_ERR_H */
