/* tcpframe/proto.h -- the pure framing core: handshake, sender, receiver.
 *
 * Wire format (SPEC.md section 2): each side first sends the 4-byte magic 0x554E4946 ("UNIF") in
 * network order and checks the peer's; then every message is a 4-byte big-endian payload length
 * followed by that many payload bytes. This is the wire format of uniflow's TcpController.
 *
 * The core is allocation-free, syscall-free and global-free: it moves bytes between caller-owned
 * buffers and an abstract I/O (tf_io) it is handed. It is freestanding C11 (from libc it may use
 * only memcpy, memmove, memset and memcmp, which compilers emit anyway) and proved with
 * Frama-C WP (verify/). Each machine offers two surfaces over the same state:
 *
 *   sans-I/O:  *_next / *_advance (where to read or write now; n bytes were moved) for callers
 *              with their own event system (io_uring completions, TLS records, RDMA);
 *   try-steps: tf_hs_try / tf_tx_try / tf_rx_try, which drive the machine over a tf_io until the
 *              unit is DONE, the I/O would block (AGAIN), or an ERROR.
 *
 * Outcomes (tf_step): DONE = the unit (handshake, message) completed; AGAIN = every possible bit
 * of progress was made, call again when the transport is ready; ERROR = the machine failed.
 * Errors are sticky: the first reason wins, every later step returns ERROR and moves no byte, and
 * *_error() reads the reason back. Only *_init resets a machine.
 *
 * Threading: a machine is plain data; it may be used from any one thread at a time.
 * Structs are exposed so callers can allocate them anywhere; their fields are private.
 */
#ifndef TCPFRAME_PROTO_H
#define TCPFRAME_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "tcpframe/err.h"
#include "tcpframe/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The handshake magic, 'U' 'N' 'I' 'F' on the wire. */
#define TF_MAGIC 0x554E4946u
/* Bytes in the magic and in a length prefix. */
#define TF_HDR_LEN 4u
/* Default maximum payload length: 64 MiB. Any uint32_t is a valid maximum. */
#define TF_DEFAULT_MAX_LEN 67108864u
/* Consecutive interrupted I/O answers a try-step retries before it returns AGAIN. */
#define TF_MAX_INTR 64u

typedef enum tf_step { TF_ERROR = -1, TF_DONE = 0, TF_AGAIN = 1 } tf_step;

/* ---------------------------------------------------------------- abstract I/O */

/* A gather element: |len| bytes at |base|. */
typedef struct tf_iov {
    const uint8_t *base;
    size_t len;
} tf_iov;

/* Answers of tf_io callbacks besides a byte count. */
#define TF_IO_AGAIN (-1L) /* would block: no byte moved */
#define TF_IO_INTR (-2L)  /* interrupted before any byte moved: the core retries */
#define TF_IO_FAIL (-3L)  /* failed: the callback stored the OS error number in *os_err */

/* The transport the try-steps drive. Both callbacks must honour this contract (the proof of
 * the try-steps assumes it, and the steps re-check the count defensively). A callback must not
 * call into the machine that is calling it, nor change that machine, its tf_io, tf_sink or
 * tf_msg: it may write only the buffer it is handed and *os_err (SPEC 3.2).
 *   read(ctx, buf, len, os_err): len > 0; writes at most len bytes into buf[0..len) and returns
 *     their count (1..len), 0 if the peer closed the stream, or TF_IO_AGAIN / TF_IO_INTR /
 *     TF_IO_FAIL (then *os_err holds the OS error number).
 *   write(ctx, iov, cnt, os_err): 1 <= cnt <= 2, at least one byte in all; sends the bytes of
 *     iov[0], then iov[1], in order, and returns how many (1..total), or one of the TF_IO_*
 *     answers. A 0 return is treated as the peer having closed the stream.
 * Either pointer may be NULL if that direction is never used. */
typedef struct tf_io {
    void *ctx;
    long (*read)(void *ctx, uint8_t *buf, size_t len, int *os_err);
    long (*write)(void *ctx, const tf_iov *iov, size_t cnt, int *os_err);
} tf_io;

/* ---------------------------------------------------------------- handshake */

/* Internal (not API, may change in any release): the state the struct holds. */
enum { TF__HS_RUNNING = 0, TF__HS_DONE = 1, TF__HS_FAILED = 2 };

typedef struct tf_hs {
    uint8_t out[4]; /* private: our magic */
    uint8_t in[4];  /* private: the peer's bytes so far */
    uint32_t sent;  /* private: 0..4 */
    uint32_t got;   /* private: 0..4 */
    int state;      /* private */
    tf_err err;     /* private */
    int os_err;     /* private */
} tf_hs;

/* Start a handshake: nothing sent, nothing received. */
TF_API void tf_hs_init(tf_hs *hs);

/* Outbound half. Sets *out to our remaining magic bytes and returns their count (0 when all
 * four are sent or the handshake failed). */
TF_API size_t tf_hs_out(tf_hs *hs, const uint8_t **out);
/* |n| of the bytes offered by tf_hs_out were sent. DONE if this completed the handshake, AGAIN
 * if more remains, ERROR (INVALID_ARGUMENT, sticky) if n exceeds what was offered. */
TF_API tf_step tf_hs_sent(tf_hs *hs, size_t n);

/* Inbound half. Sets *in to where the peer's next bytes go and returns how many are still
 * expected (0 when all four arrived or the handshake failed). Never asks for more than the
 * magic: bytes after it belong to the first message. */
TF_API size_t tf_hs_in(tf_hs *hs, uint8_t **in);
/* |n| bytes landed where tf_hs_in pointed. ERROR BAD_MAGIC (sticky) as soon as a byte differs
 * from the magic; DONE if this completed the handshake; AGAIN otherwise. */
TF_API tf_step tf_hs_received(tf_hs *hs, size_t n);

/* Drive both halves over |io| (which needs read and write). Reads are tried even while the
 * write would block, so two peers over small buffers cannot deadlock. Writes send only our
 * magic bytes not yet sent, and the peer bytes checked are exactly the bytes the reads
 * delivered (proved: verify/README.md).
 * Returns:
 *   DONE    magic sent and the peer's magic checked (also on a handshake already done)
 *   AGAIN   the I/O would block, or TF_MAX_INTR interrupted answers in a row: call again
 *   ERROR   sticky; the reason (tf_hs_error) is one of
 *           BAD_MAGIC         a received byte differs from the magic
 *           CLOSED            a 0 answer before the peer sent a byte
 *           TRUNCATED         a 0 answer after 1..3 peer bytes
 *           IO                TF_IO_FAIL; the OS error number is kept
 *           INVALID_ARGUMENT  the io broke its contract (count over what was asked, unknown answer)
 *           or, on an already failed handshake, its first reason (nothing is done). */
TF_API tf_step tf_hs_try(tf_hs *hs, const tf_io *io);

/* Bits of tf_hs_wants(): which way a handshake waits. */
#define TF_WANT_READ 1u
#define TF_WANT_WRITE 2u

/* Which way a handshake is blocked, for adapters that wait on readiness (like BearSSL's engine
 * state or nghttp2's want_read/want_write):
 *   TF_WANT_READ                  peer magic bytes are still expected (ours are all sent)
 *   TF_WANT_WRITE                 our magic bytes remain to be sent (the peer's all arrived)
 *   TF_WANT_READ | TF_WANT_WRITE  both
 *   0                             done or failed: nothing to wait for */
TF_API unsigned tf_hs_wants(const tf_hs *hs);

/* TF_OK while running or done, else the sticky reason; *os_err (if non-NULL) gets the OS error
 * number of an IO failure, else 0. */
TF_API tf_err tf_hs_error(const tf_hs *hs, int *os_err);

/* ---------------------------------------------------------------- sender */

/* Internal (not API): the state the struct holds. */
enum { TF__TX_IDLE = 0, TF__TX_SENDING = 1, TF__TX_FAILED = 2 };

typedef struct tf_tx {
    const uint8_t *payload; /* private: borrowed from the caller until DONE */
    size_t len;             /* private: payload length of the message in flight */
    size_t done;            /* private: bytes of header + payload emitted, 0..len + 4 */
    uint32_t max_len;       /* private */
    int state;              /* private */
    tf_err err;             /* private */
    int os_err;             /* private */
    uint8_t hdr[4];         /* private: the length prefix, big-endian */
} tf_tx;

/* An idle sender that refuses payloads longer than |max_len|. */
TF_API void tf_tx_init(tf_tx *tx, uint32_t max_len);

/* Start sending one message. The payload is borrowed, not copied: keep it alive and unchanged
 * until the message is DONE (or the sender failed). Refusals change nothing and emit nothing:
 *   TOO_LARGE if len > max_len; INVALID_ARGUMENT if payload is NULL and len > 0;
 *   BAD_STATE if a message is already in flight; the sticky reason if the sender failed. */
TF_API tf_err tf_tx_begin(tf_tx *tx, const uint8_t *payload, size_t len);

/* Fill iov[0..2) with what remains to be sent (rest of the header, rest of the payload; empty
 * pieces are left out) and return the count, 0..2. 0 when idle or failed. */
TF_API size_t tf_tx_next(const tf_tx *tx, tf_iov iov[2]);

/* |n| of the bytes offered by tf_tx_next were sent. DONE when the whole frame is out (the
 * sender is idle again and the payload is released), AGAIN if more remains, ERROR
 * INVALID_ARGUMENT (sticky) if n exceeds what remains. advance(0) when idle is DONE. */
TF_API tf_step tf_tx_advance(tf_tx *tx, size_t n);

/* Send what remains over io->write. The bytes written are exactly the rest of the frame,
 * be32(len) ++ payload, in order (proved: verify/README.md).
 * Returns:
 *   DONE    the frame is out and the sender idle (also on an idle sender: nothing is written)
 *   AGAIN   the write would block, or TF_MAX_INTR interrupted answers in a row: call again
 *   ERROR   sticky; the reason (tf_tx_error) is one of
 *           IO                TF_IO_FAIL; the OS error number is kept
 *           CLOSED            the write returned 0
 *           INVALID_ARGUMENT  the io broke its contract (count over what was offered, unknown answer)
 *           or, on an already failed sender, its first reason (nothing is written). */
TF_API tf_step tf_tx_try(tf_tx *tx, const tf_io *io);

/* Bytes of the current frame not yet sent (0 when idle or failed). */
TF_API size_t tf_tx_pending(const tf_tx *tx);

/* As tf_hs_error. */
TF_API tf_err tf_tx_error(const tf_tx *tx, int *os_err);

/* ---------------------------------------------------------------- receiver */

/* Internal (not API): the state the struct holds. */
enum { TF__RX_LEN = 0, TF__RX_TARGET = 1, TF__RX_BODY = 2, TF__RX_FAILED = 3 };

typedef struct tf_rx {
    uint8_t *target; /* private: payload destination (caller's) */
    size_t cap;      /* private */
    uint32_t max_len; /* private */
    uint32_t len;    /* private: decoded length of the message being received */
    size_t got;      /* private: bytes of the current unit: header 0..4, payload 0..len */
    int state;       /* private */
    tf_err err;      /* private */
    int os_err;      /* private */
    uint8_t hdr[4];  /* private */
} tf_rx;

/* A received message: |len| bytes at |data| (NULL when len == 0). */
typedef struct tf_msg {
    uint8_t *data;
    size_t len;
} tf_msg;

/* Where tf_rx_try puts payloads. Span mode (alloc == NULL): every payload goes to buf, and a
 * payload longer than cap fails with BUFFER_TOO_SMALL. Alloc mode: alloc(ctx, len) is called
 * once per non-empty message with its exact length, after the length passed the max_len check;
 * it returns len writable bytes the caller then owns, not overlapping the receiver, its tf_io,
 * tf_sink or tf_msg, or NULL (the receive fails with NOMEM).
 * The core never allocates or frees. */
typedef struct tf_sink {
    uint8_t *buf;
    size_t cap;
    uint8_t *(*alloc)(void *ctx, size_t len);
    void *ctx;
} tf_sink;

/* A receiver waiting for a length prefix; lengths over |max_len| fail with TOO_LARGE. */
TF_API void tf_rx_init(tf_rx *rx, uint32_t max_len);

/* Sans-I/O: set *buf to where the next bytes go and return how many are wanted (the rest of the
 * length prefix, or the rest of the payload). Returns 0 when a target is wanted
 * (tf_rx_wants_target) or the receiver failed. */
TF_API size_t tf_rx_next(tf_rx *rx, uint8_t **buf);

/* |n| bytes landed where tf_rx_next pointed. DONE: a message completed, *msg says where and how
 * long (the receiver then waits for the next prefix). AGAIN: more needed, or a target is wanted.
 * ERROR (sticky): TOO_LARGE as the 4th prefix byte lands with a length over max_len, before
 * any target is asked for; INVALID_ARGUMENT if n exceeds what was asked for. */
TF_API tf_step tf_rx_advance(tf_rx *rx, size_t n, tf_msg *msg);

/* Nonzero when the prefix is decoded and the payload target must be given; *len (if non-NULL)
 * gets the payload length (1..max_len). */
TF_API int tf_rx_wants_target(const tf_rx *rx, size_t *len);

/* Give the payload target: |cap| writable bytes at |buf|. Errors (sticky) before any payload
 * byte is written: BUFFER_TOO_SMALL if cap < len, else NOMEM if buf is NULL (pass your
 * allocator's answer straight in). BAD_STATE (not sticky) if no target is wanted; the sticky
 * reason if the receiver had already failed. */
TF_API tf_err tf_rx_set_target(tf_rx *rx, uint8_t *buf, size_t cap);

/* Push |len| bytes already read (batched reads). Copies the first *used of them into the rest
 * of the prefix or of the payload (never past the current unit) and stops:
 *   DONE    a message completed (*msg set; an empty message has data NULL)
 *   AGAIN   the input is used up (*used == len), or a target is wanted (tf_rx_set_target)
 *   ERROR   TOO_LARGE as the 4th prefix byte lands; on a failed receiver, ERROR with *used 0
 * *used is always the count of bytes consumed: min(len, bytes left in the current unit), and 0
 * when a target is wanted or the receiver failed. */
TF_API tf_step tf_rx_feed(tf_rx *rx, const uint8_t *in, size_t len, size_t *used, tf_msg *msg);

/* Receive one message over io->read into |sink|. The payload delivered is exactly the bytes read
 * after the length prefix (proved: verify/README.md).
 * Returns:
 *   DONE    *msg is the message: data is NULL for an empty one, else the sink's span, the
 *           buffer the allocation hook returned, or the target given before this call; the
 *           receiver then waits for the next length prefix
 *   AGAIN   the read would block, or TF_MAX_INTR interrupted answers in a row: call again
 *   ERROR   sticky; the reason (tf_rx_error) is one of
 *           TOO_LARGE         the length prefix is over max_len (before any target is asked for)
 *           BUFFER_TOO_SMALL  span mode, cap smaller than the length
 *           NOMEM             span mode with a NULL buf, or the allocation hook returned NULL
 *           CLOSED            a 0 answer before any byte of a frame (a clean close)
 *           TRUNCATED         a 0 answer inside a frame (prefix or payload)
 *           IO                TF_IO_FAIL; the OS error number is kept
 *           INVALID_ARGUMENT  the io broke its contract (count over what was asked, unknown answer)
 *           or, on an already failed receiver, its first reason (nothing is read). */
TF_API tf_step tf_rx_try(tf_rx *rx, const tf_io *io, const tf_sink *sink, tf_msg *msg);

/* Give up on the receiver: return the target of the unfinished message (or NULL) and forget
 * it, so that in alloc mode the caller can free it (after an ERROR, or to tear down mid-message).
 * In span mode it is the caller's own span: do not free that. The receiver is failed afterwards
 * (its earlier reason is kept, else BAD_STATE). */
TF_API uint8_t *tf_rx_abandon(tf_rx *rx);

/* As tf_hs_error. */
TF_API tf_err tf_rx_error(const tf_rx *rx, int *os_err);

/* Zero-copy splitter for batched reads: if in[0..len) starts with a complete frame, set
 * *payload to its payload inside |in|, *payload_len to its length, *used to the frame size
 * (4 + payload) and return DONE. AGAIN if the frame is incomplete (*used = 0: feed the tail to a
 * tf_rx). ERROR if its length prefix is over max_len: the reason is always TF_ERR_TOO_LARGE (the
 * splitter is stateless, so there is no machine to ask). Use it only at a frame boundary. */
TF_API tf_step tf_frame_split(const uint8_t *in, size_t len, uint32_t max_len,
                              const uint8_t **payload, size_t *payload_len, size_t *used);

/* Big-endian helpers of the length prefix (SPEC 2.2). Division and multiplication, not shifts:
 * they prove without bit-vector reasoning and compile to the same instructions. Inline, so that
 * each proto/ object stands alone. */
/*@ logic integer tf_be32(integer b0, integer b1, integer b2, integer b3) =
      b0 * 16777216 + b1 * 65536 + b2 * 256 + b3;
*/

/*@ requires \valid(out + (0 .. 3));
    assigns out[0 .. 3];
    ensures be32: tf_be32(out[0], out[1], out[2], out[3]) == v;
*/
static inline void tf_be32_put(uint8_t out[4], uint32_t v)
{
    out[0] = (uint8_t)(v / 16777216u);
    out[1] = (uint8_t)(v / 65536u % 256u);
    out[2] = (uint8_t)(v / 256u % 256u);
    out[3] = (uint8_t)(v % 256u);
}

/*@ requires \valid_read(in + (0 .. 3));
    assigns \nothing;
    ensures be32: \result == tf_be32(in[0], in[1], in[2], in[3]);
*/
static inline uint32_t tf_be32_get(const uint8_t in[4])
{
    return (uint32_t)in[0] * 16777216u + (uint32_t)in[1] * 65536u + (uint32_t)in[2] * 256u +
           (uint32_t)in[3];
}

#ifdef __cplusplus
}
#endif
#endif /* TCPFRAME_PROTO_H */
