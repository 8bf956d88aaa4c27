/* fuzz_common.h -- helpers shared by the fuzz targets (not part of the library).
 *
 * Input reader, oracle failure, a tiny PRNG, the scripted fake tf_io answers and a deliberately
 * simple whole-buffer reference decoder of the wire format (SPEC 2: 4-byte big-endian length,
 * then that many payload bytes). Everything is static: each target is one translation unit. */
#ifndef TCPFRAME_FUZZ_COMMON_H
#define TCPFRAME_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tcpframe/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Oracle code the fuzzer need not be guided by: no coverage instrumentation (its compare
 * tracing cost more than the core itself), so execs/s go to the core. */
#if defined(__clang__) && __clang_major__ >= 13
#define FZ_NOCOV __attribute__((no_sanitize("coverage", "undefined"), noinline))
#else
#define FZ_NOCOV
#endif

/* ---------------------------------------------------------------- oracle failure */

static inline void fz_fail(const char *file, int line, const char *what)
{
    fprintf(stderr, "%s:%d: oracle failed: %s\n", file, line, what);
    fflush(stderr);
    abort();
}

#define CHECK(c)                                                                                 \
    do {                                                                                         \
        if (!(c))                                                                                \
            fz_fail(__FILE__, __LINE__, #c);                                                     \
    } while (0)

/* ---------------------------------------------------------------- input reader */

typedef struct fz_in {
    const uint8_t *p;
    size_t n;
} fz_in;

static inline uint8_t fz_u8(fz_in *in)
{
    if (in->n == 0)
        return 0;
    in->n--;
    return *in->p++;
}

static inline uint16_t fz_u16(fz_in *in)
{
    uint16_t hi = fz_u8(in);
    return (uint16_t)(hi * 256u + fz_u8(in));
}

static inline uint32_t fz_u32(fz_in *in)
{
    uint32_t hi = fz_u16(in);
    return hi * 65536u + fz_u16(in);
}

/* Take up to |n| bytes: returns how many were taken, *out points at them. */
static inline size_t fz_take(fz_in *in, size_t n, const uint8_t **out)
{
    if (n > in->n)
        n = in->n;
    *out = in->p;
    in->p += n;
    in->n -= n;
    return n;
}

/* A max_len chosen by one selector byte (and, for some choices, two more bytes). Small values
 * dominate so that short inputs reach every boundary; the extremes are there too. */
static inline uint32_t fz_max_len(fz_in *in)
{
    uint8_t s = fz_u8(in);
    switch (s % 8u) {
    case 0:
        return TF_DEFAULT_MAX_LEN;
    case 1:
        return UINT32_MAX;
    case 2:
        return 0;
    case 3:
        return s / 8u; /* 0..31 */
    case 4:
        return fz_u16(in);
    case 5:
        return UINT32_MAX - 1u;
    default:
        return 64u + s / 8u;
    }
}

/* ---------------------------------------------------------------- PRNG (xorshift32) */

FZ_NOCOV static inline uint32_t fz_rand(uint32_t *s)
{
    uint32_t x = *s ? *s : 0x9E3779B9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *s = x;
    return x;
}

/* ---------------------------------------------------------------- scripted I/O answers
 *
 * A fake transport takes one control byte per callback (from a control string; when it is used
 * up, the default is "move everything"). The chunking pattern picked by the first input byte
 * decides how big the chunks are; with faults enabled, some control bytes instead answer
 * AGAIN, a run of INTR, FAIL (with an OS error), a 0 (peer closed) or a contract-breaking
 * answer. */

enum { FZ_CHUNK_ONE = 0, FZ_CHUNK_RANDOM = 1, FZ_CHUNK_ALL = 2 };

enum {
    FZ_ANS_MOVE = 0, /* move fz_script.n bytes (1..len) */
    FZ_ANS_AGAIN,
    FZ_ANS_INTR,
    FZ_ANS_FAIL,
    FZ_ANS_ZERO,  /* 0: closed (a write only; reads close at the end of their stream) */
    FZ_ANS_LIE,   /* more than len, or an unknown negative answer */
};

typedef struct fz_script {
    const uint8_t *ctl; /* control bytes */
    size_t nctl, pos;
    int chunk;      /* FZ_CHUNK_* */
    int faults;     /* 0: only MOVE; 1: AGAIN/INTR; 2: also FAIL/ZERO/LIE */
    unsigned intr_run; /* INTR answers still to give in the current run */
    unsigned storms;   /* runs of TF_MAX_INTR + 3 given */
    unsigned lie;      /* which contract-breaking answer: len + 1, -4, LONG_MAX */
    uint32_t rng;
} fz_script;

static inline void fz_script_init(fz_script *s, const uint8_t *ctl, size_t nctl, uint8_t mode)
{
    s->ctl = ctl;
    s->nctl = nctl;
    s->pos = 0;
    s->chunk = mode % 3u;
    s->faults = (mode / 3u) % 3u;
    s->intr_run = 0;
    s->storms = 0;
    s->lie = 0;
    s->rng = 0x1234567u + mode;
}

static inline int fz_script_more(const fz_script *s)
{
    return s->pos < s->nctl;
}

/* Decide the next answer for a callback offered |len| (>0) bytes, |avail| of which can move
 * now (0 would block). Sets *n for MOVE (1..min(len, avail)). */
FZ_NOCOV static inline int fz_answer(fz_script *s, size_t len, size_t avail, size_t *n)
{
    if (s->intr_run > 0) {
        s->intr_run--;
        return FZ_ANS_INTR;
    }
    int have = s->pos < s->nctl;
    uint8_t c = have ? s->ctl[s->pos++] : 0xFFu;
    if (have && s->faults > 0) {
        unsigned k = c / 16u; /* 0..15 */
        if (k == 0)
            return FZ_ANS_AGAIN;
        if (k == 1) {
            /* a run of 1..15 INTR; 15 means TF_MAX_INTR + 3 (twice per script at most: the
             * storms cost time and say nothing new the third time) */
            unsigned run = c % 16u;
            if (run == 15 && s->storms < 2) {
                s->storms++;
                run = TF_MAX_INTR + 3u;
            }
            s->intr_run = run;
            return FZ_ANS_INTR;
        }
        if (s->faults > 1 && k == 2) {
            unsigned f = c % 16u;
            if (f < 6)
                return FZ_ANS_FAIL;
            if (f < 11)
                return FZ_ANS_ZERO;
            s->lie = f - 11u;
            return FZ_ANS_LIE;
        }
    }
    size_t lim = len < avail ? len : avail;
    if (lim == 0)
        return FZ_ANS_AGAIN;
    size_t m;
    if (!have || s->chunk == FZ_CHUNK_ALL)
        m = lim;
    else if (s->chunk == FZ_CHUNK_ONE)
        m = 1;
    else {
        /* random: small chunks mostly, sometimes everything */
        unsigned v = c % 16u;
        m = v == 15 ? lim : v < 8 ? 1u + v : 1u + (fz_rand(&s->rng) % (v * 37u));
    }
    if (m > lim)
        m = lim;
    if (m == 0)
        m = 1;
    *n = m;
    return FZ_ANS_MOVE;
}

/* A contract-breaking answer for a callback offered |len| bytes, as the control byte chose. */
FZ_NOCOV static inline long fz_lie(fz_script *s, size_t len)
{
    switch (s->lie % 3u) {
    case 0:
        return (long)len + 1;
    case 1:
        return -4;
    default:
        return (long)(~0ul >> 1); /* LONG_MAX */
    }
}

/* ---------------------------------------------------------------- error names
 *
 * tf_err_name and tf_strerror of |e| equal a table written out by hand here (not generated
 * from the X-macro list of err.h, which is what the code under test is generated from: a check
 * against the same list could never fail). Unknown values give "UNKNOWN" and
 * "unknown tcpframe error". Keep in step with err.h (append only; test_err.c has the same
 * table and checks that the list has nothing more). */
typedef struct fz_err_row {
    int num;
    const char *name, *text;
} fz_err_row;

static const fz_err_row fz_err_rows[] = {
    {0, "OK", "success"},
    {1, "BAD_MAGIC", "handshake magic mismatch: the peer is not a tcpframe/uniflow endpoint"},
    {2, "TOO_LARGE", "message length exceeds the maximum message size"},
    {3, "BUFFER_TOO_SMALL", "message does not fit the receive buffer"},
    {4, "BAD_STATE", "operation not valid in the current state"},
    {5, "INVALID_ARGUMENT", "invalid argument"},
    {6, "CLOSED", "peer closed the connection"},
    {7, "TRUNCATED", "peer closed the connection in the middle of a message or handshake"},
    {8, "NOMEM", "out of memory"},
    {9, "IO", "I/O failed; the OS error number is kept with the error"},
    {64, "BUSY", "another operation of this kind is already in flight"},
    {65, "NOT_CONNECTED", "not connected"},
    {66, "TIMEOUT", "timed out"},
    {67, "CANCELLED", "cancelled: the promise was dropped before it was fulfilled"},
    {68, "SHUTDOWN", "the event loop is stopped or shutting down"},
    {69, "BAD_ADDRESS", "bad address: expected host:port or [ipv6]:port"},
    {70, "PEER_DENIED", "the peer's credentials are not allowed here (Unix-domain uid rule)"},
    {71, "TLS", "TLS failed (handshake or record); os_err holds OpenSSL's reason code"},
    {72, "TLS_VERIFY", "the peer's certificate failed verification; os_err holds the X.509 code"},
};

FZ_NOCOV static inline void fz_check_err_text(tf_err e)
{
    const char *name = "UNKNOWN", *text = "unknown tcpframe error";
    for (size_t i = 0; i < sizeof fz_err_rows / sizeof fz_err_rows[0]; i++) {
        if (fz_err_rows[i].num == (int)e) {
            name = fz_err_rows[i].name;
            text = fz_err_rows[i].text;
        }
    }
    const char *got_name = tf_err_name(e), *got_text = tf_strerror(e);
    CHECK(got_name != NULL && got_text != NULL);
    CHECK(strcmp(got_name, name) == 0);
    CHECK(strcmp(got_text, text) == 0);
}

/* ---------------------------------------------------------------- wire format, by hand
 *
 * The big-endian prefix of SPEC 2, with shifts: the oracles never use the library's
 * tf_be32_put / tf_be32_get (multiplication and division), so a broken helper cannot agree
 * with itself. */
FZ_NOCOV static inline uint32_t fz_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

FZ_NOCOV static inline void fz_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* A tf_msg nobody filled: every DONE must overwrite both fields (an empty message too). */
#define FZ_MSG_POISON {(uint8_t *)(uintptr_t)0xA5A5A5A0u, 0xA5A5A5A5u}

/* ---------------------------------------------------------------- reference decoder
 *
 * Whole-buffer parse of in[0..n): the messages (offset of the payload, length) in order and the
 * error that stops the stream, at the byte count at which a receiver must report it. |policy|
 * says whether the receiver can get a target for a payload of |len| bytes (TF_OK, or the error
 * it fails with: BUFFER_TOO_SMALL in span mode, NOMEM when the allocator says no); it is
 * consulted once per non-empty message, in order, after the max_len check. When the stream
 * ends the error is CLOSED between messages and TRUNCATED inside one (a caller whose stream
 * ended otherwise maps these two to its own reason). */

#define FZ_REF_MAX 4096

typedef struct fz_ref {
    size_t off[FZ_REF_MAX]; /* payload offset */
    size_t len[FZ_REF_MAX];
    size_t count;
    tf_err err;      /* TF_OK if the parse stopped with input left (count limit) */
    size_t err_at;   /* bytes consumed when the error is reported */
    int inside;      /* the stream ended inside a frame (prefix or payload) */
} fz_ref;

typedef tf_err (*fz_policy)(void *ctx, size_t len);

FZ_NOCOV static inline void fz_ref_decode(fz_ref *r, const uint8_t *in, size_t n, uint32_t max_len,
                          fz_policy policy, void *ctx, size_t max_msgs)
{
    size_t pos = 0;
    r->count = 0;
    r->inside = 0;
    for (;;) {
        if (r->count == max_msgs || r->count == FZ_REF_MAX) {
            r->err = TF_OK;
            r->err_at = pos;
            return;
        }
        if (n - pos < 4) {
            r->inside = n - pos > 0;
            r->err = r->inside ? TF_ERR_TRUNCATED : TF_ERR_CLOSED;
            r->err_at = n;
            return;
        }
        uint32_t len = fz_be32(in + pos);
        pos += 4;
        if (len > max_len) {
            r->err = TF_ERR_TOO_LARGE;
            r->err_at = pos;
            return;
        }
        if (len > 0 && policy) {
            tf_err e = policy(ctx, len);
            if (e != TF_OK) {
                r->err = e;
                r->err_at = pos;
                return;
            }
        }
        if (n - pos < len) {
            r->inside = 1;
            r->err = TF_ERR_TRUNCATED;
            r->err_at = n;
            return;
        }
        r->off[r->count] = pos;
        r->len[r->count] = len;
        r->count++;
        pos += len;
    }
}

#endif
