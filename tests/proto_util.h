/* proto_util.h -- shared helpers of the proto/ unit tests (cmocka).
 *
 *   pu_io    a scripted fake tf_io: each read/write call takes the next step of its script
 *            (a byte count, TF_IO_AGAIN, TF_IO_INTR, TF_IO_FAIL with an OS error, 0 for EOF,
 *            or a raw answer that breaks the contract); reads serve bytes from a source, writes
 *            are captured. Every call is logged (length asked, iov shape).
 *   pu_pipe  a bounded in-memory pipe with pseudo-random partial reads/writes (round trips).
 *   pu_rx_vector  runs one receive vector three ways (at once, per byte, random splits with a
 *            fixed seed) through tf_rx_try and through tf_rx_feed, and checks every message and
 *            the final error.
 *
 * Everything is static inline so that each test file uses what it needs without warnings. */
#ifndef TCPFRAME_TESTS_PROTO_UTIL_H
#define TCPFRAME_TESTS_PROTO_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tcpframe/proto.h"

#define PU_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---------------------------------------------------------------- pseudo-random */

/* xorshift32; never seeded with 0. */
static inline uint32_t pu_rand(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *s = x;
    return x;
}

/* Fill buf with a deterministic pattern that depends on seed. */
static inline void pu_fill(uint8_t *buf, size_t len, uint32_t seed)
{
    uint32_t s = seed * 2654435761u + 1u;
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(pu_rand(&s) >> 24);
}

/* ---------------------------------------------------------------- scripted tf_io */

/* One scripted answer. kind PU_N: move up to |n| bytes (capped at what was asked and, for reads,
 * at what the source still has; a read with the source exhausted answers 0). PU_RAW: return |n|
 * verbatim (moving min(n, asked) bytes if n > 0) -- to break the contract. PU_FAIL: TF_IO_FAIL
 * with *os_err = |n|. */
enum { PU_N = 0, PU_RAW = 1, PU_FAIL = 2 };
typedef struct pu_step {
    int kind;
    long n;
} pu_step;

#define PU_BYTES(k) ((pu_step){PU_N, (long)(k)})
#define PU_ALL ((pu_step){PU_N, 0x7fffffffL})
#define PU_AGAIN ((pu_step){PU_RAW, TF_IO_AGAIN})
#define PU_INTR ((pu_step){PU_RAW, TF_IO_INTR})
#define PU_EOF ((pu_step){PU_RAW, 0})
#define PU_OSFAIL(e) ((pu_step){PU_FAIL, (long)(e)})
#define PU_RAWV(v) ((pu_step){PU_RAW, (long)(v)})

#define PU_MAX_STEPS 4096
#define PU_MAX_LOG 4096
#define PU_CAP_MAX 65536

typedef struct pu_io {
    tf_io io;
    /* Scripts; when one runs out, |rdefault| / |wdefault| answers every further call. */
    pu_step rs[PU_MAX_STEPS];
    size_t rn, ri;
    pu_step ws[PU_MAX_STEPS];
    size_t wn, wi;
    pu_step rdefault, wdefault;
    /* Read source. */
    const uint8_t *src;
    size_t src_len, src_pos;
    /* Capture of written bytes. */
    uint8_t cap[PU_CAP_MAX];
    size_t cap_len;
    /* Call logs. */
    size_t rcalls, wcalls;
    size_t rlog[PU_MAX_LOG];   /* len asked by each read */
    size_t wcnt[PU_MAX_LOG];   /* cnt of each write */
    size_t wlen[PU_MAX_LOG][2]; /* iov lengths of each write */
} pu_io;

static inline long pu_read_cb(void *ctx, uint8_t *buf, size_t len, int *os_err)
{
    pu_io *p = ctx;
    assert_non_null(buf);
    assert_true(len > 0);
    if (p->rcalls < PU_MAX_LOG)
        p->rlog[p->rcalls] = len;
    p->rcalls++;
    pu_step st = p->ri < p->rn ? p->rs[p->ri++] : p->rdefault;
    if (st.kind == PU_FAIL) {
        *os_err = (int)st.n;
        return TF_IO_FAIL;
    }
    size_t left = p->src_len - p->src_pos;
    if (st.kind == PU_RAW) {
        if (st.n > 0) {
            size_t k = (size_t)st.n < len ? (size_t)st.n : len;
            k = k < left ? k : left;
            if (k)
                memcpy(buf, p->src + p->src_pos, k);
            p->src_pos += k;
        }
        return st.n;
    }
    size_t k = (size_t)st.n < len ? (size_t)st.n : len;
    k = k < left ? k : left;
    if (k == 0)
        return 0;
    memcpy(buf, p->src + p->src_pos, k);
    p->src_pos += k;
    return (long)k;
}

static inline long pu_write_cb(void *ctx, const tf_iov *iov, size_t cnt, int *os_err)
{
    pu_io *p = ctx;
    assert_non_null(iov);
    assert_true(cnt >= 1 && cnt <= 2);
    size_t total = 0;
    for (size_t i = 0; i < cnt; i++) {
        assert_true(iov[i].len == 0 || iov[i].base != NULL);
        total += iov[i].len;
    }
    assert_true(total >= 1);
    if (p->wcalls < PU_MAX_LOG) {
        p->wcnt[p->wcalls] = cnt;
        p->wlen[p->wcalls][0] = iov[0].len;
        p->wlen[p->wcalls][1] = cnt > 1 ? iov[1].len : 0;
    }
    p->wcalls++;
    pu_step st = p->wi < p->wn ? p->ws[p->wi++] : p->wdefault;
    if (st.kind == PU_FAIL) {
        *os_err = (int)st.n;
        return TF_IO_FAIL;
    }
    if (st.kind == PU_RAW && st.n <= 0)
        return st.n;
    size_t k = (size_t)st.n < total ? (size_t)st.n : total;
    /* Capture the bytes moved (for PU_RAW over-reports, only what exists). */
    size_t left = k;
    for (size_t i = 0; i < cnt && left > 0; i++) {
        size_t m = iov[i].len < left ? iov[i].len : left;
        assert_true(p->cap_len + m <= PU_CAP_MAX);
        memcpy(p->cap + p->cap_len, iov[i].base, m);
        p->cap_len += m;
        left -= m;
    }
    return st.kind == PU_RAW ? st.n : (long)k;
}

/* A fresh fake io (heap: it is large) whose reads serve src[0..src_len), then EOF, and whose
 * writes accept everything. Free with free(). */
static inline pu_io *pu_new(const uint8_t *src, size_t src_len)
{
    pu_io *p = calloc(1, sizeof *p);
    assert_non_null(p);
    p->io.ctx = p;
    p->io.read = pu_read_cb;
    p->io.write = pu_write_cb;
    p->src = src;
    p->src_len = src_len;
    p->rdefault = PU_ALL;
    p->wdefault = PU_ALL;
    return p;
}

static inline void pu_rpush(pu_io *p, pu_step st)
{
    assert_true(p->rn < PU_MAX_STEPS);
    p->rs[p->rn++] = st;
}

static inline void pu_wpush(pu_io *p, pu_step st)
{
    assert_true(p->wn < PU_MAX_STEPS);
    p->ws[p->wn++] = st;
}

/* ---------------------------------------------------------------- frames */

/* A tf_msg nobody filled: a DONE must overwrite both fields (an empty message too). */
#define PU_MSG_POISON {(uint8_t *)(uintptr_t)0x5A5A5A5Au, 0x5A5A5A5Au}

/* The big-endian prefix, written without the library's tf_be32_put (shifts, not division):
 * the tests' expected bytes must not come from the code they judge. */
static inline void pu_be32(uint8_t out[4], uint32_t v)
{
    out[0] = (uint8_t)(v >> 24);
    out[1] = (uint8_t)(v >> 16);
    out[2] = (uint8_t)(v >> 8);
    out[3] = (uint8_t)v;
}

/* Write a frame (prefix + payload) at out; returns its size. */
static inline size_t pu_frame(uint8_t *out, const uint8_t *payload, uint32_t len)
{
    pu_be32(out, len);
    if (len)
        memcpy(out + 4, payload, len);
    return 4u + len;
}

/* ---------------------------------------------------------------- alloc hook */

typedef struct pu_alloc {
    size_t calls;
    size_t last_len;
    int fail;     /* answer NULL (no allocation) */
    uint8_t *last; /* last block handed out */
} pu_alloc;

static inline uint8_t *pu_alloc_cb(void *ctx, size_t len)
{
    pu_alloc *a = ctx;
    a->calls++;
    a->last_len = len;
    if (a->fail) {
        a->last = NULL;
        return NULL;
    }
    assert_true(len > 0 && len <= (1u << 24));
    a->last = malloc(len);
    assert_non_null(a->last);
    memset(a->last, 0xEE, len);
    return a->last;
}

/* ---------------------------------------------------------------- pipe */

#define PU_PIPE_CAP 1024

typedef struct pu_pipe {
    tf_io w_io, r_io;
    uint8_t ring[PU_PIPE_CAP];
    size_t head, fill;
    uint32_t seed;
    size_t moved_w, moved_r;
} pu_pipe;

static inline long pu_pipe_write(void *ctx, const tf_iov *iov, size_t cnt, int *os_err)
{
    pu_pipe *p = ctx;
    (void)os_err;
    assert_true(cnt >= 1 && cnt <= 2);
    uint32_t r = pu_rand(&p->seed);
    if (r % 7u == 0)
        return TF_IO_INTR;
    size_t room = PU_PIPE_CAP - p->fill;
    if (room == 0 || r % 5u == 0)
        return TF_IO_AGAIN;
    size_t want = 1 + (size_t)(pu_rand(&p->seed) % 300u);
    want = want < room ? want : room;
    size_t moved = 0;
    for (size_t i = 0; i < cnt && moved < want; i++) {
        for (size_t j = 0; j < iov[i].len && moved < want; j++) {
            p->ring[(p->head + p->fill) % PU_PIPE_CAP] = iov[i].base[j];
            p->fill++;
            moved++;
        }
    }
    assert_true(moved > 0);
    p->moved_w += moved;
    return (long)moved;
}

static inline long pu_pipe_read(void *ctx, uint8_t *buf, size_t len, int *os_err)
{
    pu_pipe *p = ctx;
    (void)os_err;
    assert_true(len > 0);
    uint32_t r = pu_rand(&p->seed);
    if (r % 11u == 0)
        return TF_IO_INTR;
    if (p->fill == 0 || r % 5u == 0)
        return TF_IO_AGAIN;
    size_t want = 1 + (size_t)(pu_rand(&p->seed) % 300u);
    want = want < len ? want : len;
    want = want < p->fill ? want : p->fill;
    for (size_t i = 0; i < want; i++) {
        buf[i] = p->ring[p->head];
        p->head = (p->head + 1) % PU_PIPE_CAP;
        p->fill--;
    }
    p->moved_r += want;
    return (long)want;
}

static inline void pu_pipe_init(pu_pipe *p, uint32_t seed)
{
    memset(p, 0, sizeof *p);
    p->seed = seed ? seed : 1u;
    p->w_io.ctx = p;
    p->w_io.write = pu_pipe_write;
    p->r_io.ctx = p;
    p->r_io.read = pu_pipe_read;
}

/* ---------------------------------------------------------------- rx vectors */

enum { PU_SPLIT_ONCE = 0, PU_SPLIT_BYTE = 1, PU_SPLIT_RANDOM = 2 };

/* A receive vector: |wire| arrives and then the peer closes. The receiver must produce the
 * |nmsgs| payloads msgs[i] (lengths lens[i]) in order, then fail with |final_err| (CLOSED for a
 * clean end). Span mode with a |span_cap| buffer unless |use_alloc|. */
typedef struct pu_vec {
    const uint8_t *wire;
    size_t wire_len;
    uint32_t max_len;
    int use_alloc;
    size_t span_cap;
    const uint8_t *const *msgs;
    const size_t *lens;
    size_t nmsgs;
    tf_err final_err;
} pu_vec;

/* Size of the next piece in |mode|; |left| > 0. */
static inline size_t pu_piece(int mode, size_t left, uint32_t *seed)
{
    if (mode == PU_SPLIT_ONCE)
        return left;
    if (mode == PU_SPLIT_BYTE)
        return 1;
    size_t k = 1 + (size_t)(pu_rand(seed) % 9u);
    return k < left ? k : left;
}

static inline void pu_check_msg(const pu_vec *v, size_t i, const tf_msg *m)
{
    assert_true(i < v->nmsgs);
    assert_int_equal(m->len, v->lens[i]);
    if (v->lens[i] == 0) {
        assert_null(m->data);
    } else {
        assert_non_null(m->data);
        assert_memory_equal(m->data, v->msgs[i], v->lens[i]);
    }
}

/* Through tf_rx_try over a fake io that splits the reads as |mode| says. */
static inline void pu_rx_vector_try(const pu_vec *v, int mode)
{
    pu_io *p = pu_new(v->wire, v->wire_len);
    uint32_t seed = 0x9E3779B9u;
    /* Script the reads: pieces, with AGAIN / INTR sprinkled in the random mode. */
    size_t off = 0;
    /* Per byte needs no script (the default answers 1 byte); a long random script is cut short
     * and the default takes over. */
    while (off < v->wire_len && mode != PU_SPLIT_BYTE && p->rn + 3 <= PU_MAX_STEPS) {
        if (mode == PU_SPLIT_RANDOM) {
            uint32_t r = pu_rand(&seed) % 8u;
            if (r == 0)
                pu_rpush(p, PU_AGAIN);
            else if (r == 1)
                pu_rpush(p, PU_INTR);
        }
        size_t k = pu_piece(mode, v->wire_len - off, &seed);
        pu_rpush(p, mode == PU_SPLIT_ONCE ? PU_ALL : PU_BYTES(k));
        off += mode == PU_SPLIT_ONCE ? v->wire_len : k;
    }
    p->rdefault = mode == PU_SPLIT_ONCE ? PU_ALL : PU_BYTES(1);
    pu_alloc al = {0};
    uint8_t *span = v->use_alloc ? NULL : malloc(v->span_cap ? v->span_cap : 1);
    tf_sink sink = {span, v->span_cap, v->use_alloc ? pu_alloc_cb : NULL, &al};
    tf_rx rx;
    tf_rx_init(&rx, v->max_len);
    size_t got = 0;
    for (int guard = 0; guard < 100000; guard++) {
        tf_msg m = {(uint8_t *)&m, 12345};
        tf_step st = tf_rx_try(&rx, &p->io, &sink, &m);
        if (st == TF_AGAIN)
            continue;
        if (st == TF_DONE) {
            pu_check_msg(v, got, &m);
            if (v->use_alloc && m.len) {
                assert_ptr_equal(m.data, al.last);
                free(m.data);
            }
            got++;
            continue;
        }
        assert_int_equal(st, TF_ERROR);
        break;
    }
    assert_int_equal(got, v->nmsgs);
    int os = -1;
    assert_int_equal(tf_rx_error(&rx, &os), v->final_err);
    assert_int_equal(os, 0);
    /* The whole wire was read unless the receiver failed early. */
    if (v->final_err == TF_ERR_CLOSED || v->final_err == TF_ERR_TRUNCATED)
        assert_int_equal(p->src_pos, v->wire_len);
    /* Sticky: another try moves nothing. */
    size_t calls = p->rcalls;
    tf_msg m2 = PU_MSG_POISON;
    assert_int_equal(tf_rx_try(&rx, &p->io, &sink, &m2), TF_ERROR);
    assert_int_equal(p->rcalls, calls);
    uint8_t *left = tf_rx_abandon(&rx);
    if (v->use_alloc) {
        assert_true(left == NULL || left == al.last);
        free(left);
    } else {
        assert_true(left == NULL || left == span);
    }
    assert_int_equal(tf_rx_error(&rx, NULL), v->final_err);
    if (v->use_alloc) {
        /* One allocation per non-empty message that got its target. */
        size_t nonempty = 0;
        for (size_t i = 0; i < v->nmsgs; i++)
            nonempty += v->lens[i] != 0;
        assert_true(al.calls >= nonempty && al.calls <= nonempty + 1);
    }
    free(span);
    free(p);
}

/* Through tf_rx_feed with the input pushed in pieces as |mode| says. */
static inline void pu_rx_vector_feed(const pu_vec *v, int mode)
{
    uint32_t seed = 0x12345677u;
    pu_alloc al = {0};
    uint8_t *span = v->use_alloc ? NULL : malloc(v->span_cap ? v->span_cap : 1);
    tf_rx rx;
    tf_rx_init(&rx, v->max_len);
    size_t off = 0, got = 0;
    tf_step st = TF_AGAIN;
    while (off < v->wire_len) {
        size_t k = pu_piece(mode, v->wire_len - off, &seed);
        size_t pos = 0;
        while (pos < k) {
            size_t used = 999999;
            tf_msg m = {(uint8_t *)&m, 54321}; /* poison: a DONE must fill both fields */
            st = tf_rx_feed(&rx, v->wire + off + pos, k - pos, &used, &m);
            assert_true(used <= k - pos);
            pos += used;
            if (st == TF_ERROR)
                break;
            if (st == TF_DONE) {
                pu_check_msg(v, got, &m);
                if (v->use_alloc && m.len)
                    free(m.data);
                got++;
                continue;
            }
            size_t want = 0;
            if (tf_rx_wants_target(&rx, &want)) {
                tf_err e = v->use_alloc
                               ? tf_rx_set_target(&rx, pu_alloc_cb(&al, want), want)
                               : tf_rx_set_target(&rx, span, v->span_cap);
                if (e != TF_OK) {
                    st = TF_ERROR;
                    break;
                }
                continue;
            }
            assert_int_equal(pos, k); /* AGAIN only when the input is used up */
        }
        off += pos;
        if (st == TF_ERROR)
            break;
    }
    assert_int_equal(got, v->nmsgs);
    if (v->final_err == TF_ERR_CLOSED) {
        /* Clean end: waiting at a frame boundary. */
        assert_int_equal(st == TF_ERROR, 0);
        uint8_t *dst;
        assert_int_equal(tf_rx_next(&rx, &dst), 4);
        assert_ptr_equal(dst, rx.hdr);
        assert_int_equal(tf_rx_error(&rx, NULL), TF_OK);
    } else if (v->final_err == TF_ERR_TRUNCATED) {
        assert_int_equal(st == TF_ERROR, 0);
        assert_int_equal(tf_rx_error(&rx, NULL), TF_OK);
        uint8_t *dst;
        size_t want = tf_rx_next(&rx, &dst);
        assert_true(tf_rx_wants_target(&rx, NULL) || (want > 0 && dst != rx.hdr));
    } else {
        assert_int_equal(st, TF_ERROR);
        assert_int_equal(tf_rx_error(&rx, NULL), v->final_err);
    }
    uint8_t *left = tf_rx_abandon(&rx);
    if (v->use_alloc) {
        assert_true(left == NULL || left == al.last);
        free(left);
    } else {
        assert_true(left == NULL || left == span);
    }
    free(span);
}

/* Run |v| three ways through both surfaces. */
static inline void pu_rx_vector(const pu_vec *v)
{
    for (int mode = PU_SPLIT_ONCE; mode <= PU_SPLIT_RANDOM; mode++) {
        pu_rx_vector_try(v, mode);
        pu_rx_vector_feed(v, mode);
    }
}

#endif
