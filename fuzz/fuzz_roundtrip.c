/* Target: tf_tx_try + tf_rx_try */
/* fuzz_roundtrip -- messages sent with the sender through a bounded fake pipe (random partial
 * writes, AGAIN, INTR, and on the write side FAIL / close / contract-breaking answers) and
 * received with the receiver (random partial reads), send and receive steps interleaved.
 * Either side may use the try-step or the sans-I/O surface (tf_tx_next/advance/pending,
 * tf_rx_next/advance/wants_target/set_target).
 *
 * Input: [mode][flags][tx max sel][rx max sel][pipe cap u16][span cap u16]
 *        ([probe length u32] if flags bit 3)[nctl][controls]
 *        then messages: [b] (b < 128: b payload bytes follow in the input;
 *                           b >= 128: [lo], a generated payload of (b & 127) * 16 + lo % 16
 *                           bytes; at most min(MAX_TOTAL, 32 * pipe cap) bytes of frames)
 *
 * Oracles: every byte written equals the wire image the harness builds itself (4-byte
 * big-endian length written with shifts, not the library's helper, + payload per accepted
 * message, SPEC 2) at the moment it is written; the gather list is 1..2 non-empty pieces
 * totalling tf_tx_pending; tf_tx_try returns AGAIN only after a would-block or TF_MAX_INTR
 * consecutive interrupts (progress resets the count) and never writes after them; tf_tx_begin
 * refuses (TOO_LARGE, INVALID_ARGUMENT, BAD_STATE) without changing anything and the sender
 * stays usable; payloads are released at DONE (they are freed there, ASan watches); the
 * receiver returns the original messages byte for byte, in order, none lost or extra (the
 * tf_msg is poisoned before every receive step, so a DONE that fills nothing is caught), and
 * ends with the error a reference decoder gives for the bytes the pipe carried (CLOSED after
 * the last message, or TOO_LARGE / BUFFER_TOO_SMALL / TRUNCATED). Finally advance past pending
 * is INVALID_ARGUMENT and sticky.
 *
 * Header probe (flags bit 3): a sender of the same max is given a length of any 32-bit value
 * (the payload is never read): TOO_LARGE exactly when it is over max, else the gather list
 * offers the 4-byte prefix the harness writes by hand, then that many payload bytes. This is
 * where lengths of 2^31 and above reach the encoder and the max check. */
#include "fuzz_common.h"

#define MAX_MSGS 64
#define MAX_TOTAL 320u /* wire bytes (prefixes + payloads) per input: keeps a run in microseconds */

typedef struct rt_h {
    /* the pipe */
    uint8_t *ring;
    size_t cap, head, fill;
    int closed;
    /* expected wire image of the accepted messages, and how much went out */
    uint8_t *wire;
    size_t wire_len, wpos, rpos;
    fz_script sc;
    int wfatal; /* the write side was told FAIL/ZERO/LIE */
    int last_w;        /* the last answer of the write callback (FZ_ANS_*) */
    unsigned intr_seq; /* consecutive INTR write answers in the current tf_tx_try call */
    tf_err want_tx;
    int want_os;
    /* receiver */
    tf_rx *rx;
    uint32_t rx_max;
    size_t span_cap;
    int alloc_mode;
} rt_h;

FZ_NOCOV static long h_write(void *ctx, const tf_iov *iov, size_t cnt, int *os_err)
{
    rt_h *h = ctx;
    CHECK(!h->wfatal);
    CHECK(cnt >= 1 && cnt <= 2);
    size_t total = 0;
    for (size_t i = 0; i < cnt; i++) {
        CHECK(iov[i].len > 0 && iov[i].base != NULL);
        total += iov[i].len;
    }
    /* after TF_MAX_INTR consecutive interrupted answers the step returns AGAIN: no more calls */
    CHECK(h->intr_seq < TF_MAX_INTR);
    size_t m = 0;
    int a = fz_answer(&h->sc, total, h->cap - h->fill, &m);
    h->last_w = a;
    h->intr_seq = a == FZ_ANS_INTR ? h->intr_seq + 1 : 0;
    switch (a) {
    case FZ_ANS_AGAIN:
        return TF_IO_AGAIN;
    case FZ_ANS_INTR:
        return TF_IO_INTR;
    case FZ_ANS_FAIL:
        h->wfatal = 1;
        h->want_tx = TF_ERR_IO;
        h->want_os = *os_err = 104;
        return TF_IO_FAIL;
    case FZ_ANS_ZERO:
        h->wfatal = 1;
        h->want_tx = TF_ERR_CLOSED;
        return 0;
    case FZ_ANS_LIE:
        h->wfatal = 1;
        h->want_tx = TF_ERR_INVALID_ARGUMENT;
        return fz_lie(&h->sc, total);
    default:
        break;
    }
    size_t left = m;
    for (size_t i = 0; i < cnt && left > 0; i++) {
        size_t k = iov[i].len < left ? iov[i].len : left;
        for (size_t j = 0; j < k; j++) {
            /* SPEC 2: the wire carries exactly prefix + payload, message after message. */
            CHECK(h->wpos < h->wire_len && iov[i].base[j] == h->wire[h->wpos]);
            h->wpos++;
            h->ring[(h->head + h->fill) % h->cap] = iov[i].base[j];
            h->fill++;
        }
        left -= k;
    }
    return (long)m;
}

FZ_NOCOV static long h_read(void *ctx, uint8_t *buf, size_t len, int *os_err)
{
    rt_h *h = ctx;
    (void)os_err;
    CHECK(len > 0);
    if (h->fill == 0)
        return h->closed ? 0 : TF_IO_AGAIN;
    size_t m = 0;
    int a = fz_answer(&h->sc, len, h->fill, &m);
    if (a == FZ_ANS_INTR)
        return TF_IO_INTR;
    if (a != FZ_ANS_MOVE)
        return TF_IO_AGAIN; /* the read side gets no hard faults here (fuzz_rx has them) */
    for (size_t j = 0; j < m; j++) {
        buf[j] = h->ring[h->head];
        h->head = (h->head + 1) % h->cap;
    }
    h->fill -= m;
    h->rpos += m;
    return (long)m;
}

static uint8_t *h_alloc(void *ctx, size_t len)
{
    rt_h *h = ctx;
    CHECK(len >= 1 && len <= h->rx_max && len <= MAX_TOTAL);
    uint8_t *p = malloc(len);
    CHECK(p != NULL);
    return p;
}

static tf_err ref_policy(void *ctx, size_t len)
{
    rt_h *h = ctx;
    return !h->alloc_mode && len > h->span_cap ? TF_ERR_BUFFER_TOO_SMALL : TF_OK;
}

/* tf_tx_pending from the private fields: the harness calls into the core only where it tests
 * something (every call into instrumented code costs execs/s). */
#define PENDING(tx) ((tx)->state == TF__TX_SENDING ? TF_HDR_LEN + (tx)->len - (tx)->done : 0)

typedef struct msg_in {
    const uint8_t *p; /* in the input, or NULL: generated */
    size_t len;
    uint8_t seed;
} msg_in;

static msg_in msgs[MAX_MSGS];
/* Indices in msgs of the messages the sender accepts (len <= tx max), in order: the k-th
 * message received must be byte for byte the original accepted[k]. */
static size_t accepted[MAX_MSGS], naccepted;
static fz_ref ref;

FZ_NOCOV static void fill_msg(const msg_in *m, uint8_t *dst)
{
    if (m->p)
        memcpy(dst, m->p, m->len);
    else
        for (size_t k = 0; k < m->len; k++)
            dst[k] = (uint8_t)(m->seed + k * 7u + (k >> 8));
}

/* One send step with the sans-I/O surface: offer the gather list to the write callback. */
static void tx_sansio_step(rt_h *h, tf_tx *tx)
{
    tf_iov iov[2];
    size_t cnt = tf_tx_next(tx, iov);
    size_t pend = tf_tx_pending(tx);
    if (cnt == 0) {
        CHECK(pend == 0);
        return;
    }
    size_t total = iov[0].len + (cnt == 2 ? iov[1].len : 0);
    CHECK(total == pend);
    h->intr_seq = 0; /* the sans-I/O caller counts nothing */
    int os = 0;
    long r = h_write(h, iov, cnt, &os);
    if (h->wfatal) {
        h->wfatal = 0; /* sans-I/O: the caller just did not move bytes this time */
        return;
    }
    if (r > 0) {
        tf_step st = tf_tx_advance(tx, (size_t)r);
        CHECK(st == ((size_t)r == pend ? TF_DONE : TF_AGAIN));
    }
}

/* One receive step with the sans-I/O surface. */
static tf_step rx_sansio_step(rt_h *h, const tf_sink *sink, tf_msg *msg)
{
    tf_rx *rx = h->rx;
    size_t len = 0;
    if (tf_rx_wants_target(rx, &len)) {
        CHECK(len >= 1 && len <= h->rx_max);
        tf_err e = sink->alloc ? tf_rx_set_target(rx, sink->alloc(sink->ctx, len), len)
                               : tf_rx_set_target(rx, sink->buf, sink->cap);
        return e == TF_OK ? TF_AGAIN : TF_ERROR;
    }
    uint8_t *dst;
    size_t want = tf_rx_next(rx, &dst);
    CHECK(want > 0);
    int os = 0;
    long r = h_read(h, dst, want, &os);
    if (r == 0) {
        /* the caller decides the close itself: abandon (BAD_STATE) */
        return TF_ERROR;
    }
    if (r < 0)
        return TF_AGAIN;
    return tf_rx_advance(rx, (size_t)r, msg);
}

static void run(rt_h *h, uint32_t tx_max, size_t nmsg, int tx_sansio, int rx_sansio, uint8_t flags,
                uint8_t *span);

/* The header probe: begin with |len| (any uint32_t), check the refusal or the prefix offered. */
FZ_NOCOV static void header_probe(uint32_t tx_max, uint32_t len)
{
    static const uint8_t dummy = 0x5A;
    tf_tx tx;
    tf_tx_init(&tx, tx_max);
    tf_err e = tf_tx_begin(&tx, &dummy, len);
    tf_iov iov[2] = {{NULL, 0}, {NULL, 0}};
    size_t cnt = tf_tx_next(&tx, iov);
    if (len > tx_max) { /* compared here as unsigned 32-bit numbers, as SPEC 5.2 says */
        CHECK(e == TF_ERR_TOO_LARGE && cnt == 0 && tf_tx_pending(&tx) == 0);
        CHECK(tf_tx_error(&tx, NULL) == TF_OK);
        return;
    }
    CHECK(e == TF_OK);
    uint8_t want[4];
    fz_put_be32(want, len);
    CHECK(cnt == (len ? 2u : 1u) && iov[0].len == 4 && memcmp(iov[0].base, want, 4) == 0);
    CHECK(len == 0 || (iov[1].base == &dummy && iov[1].len == len));
    CHECK(tf_tx_pending(&tx) == (size_t)len + 4);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_in in = {data, size};
    uint8_t mode = fz_u8(&in);
    uint8_t flags = fz_u8(&in);
    uint32_t tx_max = fz_max_len(&in);
    rt_h h;
    memset(&h, 0, sizeof h);
    h.rx_max = fz_max_len(&in);
    h.cap = 1u + fz_u16(&in) % 300u; /* <= sizeof ring_buf */
    h.span_cap = fz_u16(&in) % 512u; /* messages are <= MAX_TOTAL */
    h.alloc_mode = flags & 1;
    int tx_sansio = (flags >> 1) & 1, rx_sansio = (flags >> 2) & 1;
    if (flags & 8)
        header_probe(tx_max, fz_u32(&in));
    const uint8_t *ctl;
    size_t nctl = fz_take(&in, fz_u8(&in), &ctl);
    fz_script_init(&h.sc, ctl, nctl, mode);

    /* The messages, and the wire image of those the sender accepts. */
    /* A tiny pipe moves a byte or two per step: fewer bytes then, so a run stays cheap. */
    size_t limit = 32u * h.cap < MAX_TOTAL ? 32u * h.cap : MAX_TOTAL;
    size_t nmsg = 0, total = 0, wire_len = 0;
    while (in.n > 0 && nmsg < MAX_MSGS) {
        uint8_t b = fz_u8(&in);
        msg_in *m = &msgs[nmsg];
        if (b < 128) {
            m->len = fz_take(&in, b, &m->p);
        } else {
            m->p = NULL;
            m->len = (size_t)(b & 127u) * 16u + fz_u8(&in) % 16u;
            m->seed = b;
        }
        if (total + TF_HDR_LEN + m->len > limit)
            break;
        total += TF_HDR_LEN + m->len;
        if (m->len <= tx_max)
            wire_len += TF_HDR_LEN + m->len;
        nmsg++;
    }
    /* Harness-only buffers are static (each ASan malloc costs a stack trace); the payloads and
     * receive targets the core touches stay exact-size heap blocks. */
    static uint8_t wire_buf[MAX_TOTAL], ring_buf[300];
    h.wire = wire_buf;
    naccepted = 0;
    for (size_t i = 0, w = 0; i < nmsg; i++) {
        if (msgs[i].len > tx_max)
            continue;
        accepted[naccepted++] = i;
        fz_put_be32(h.wire + w, (uint32_t)msgs[i].len); /* by hand, not tf_be32_put */
        fill_msg(&msgs[i], h.wire + w + 4);
        w += 4 + msgs[i].len;
    }
    h.wire_len = wire_len;
    h.ring = ring_buf;
    uint8_t *span = h.alloc_mode ? NULL : malloc(h.span_cap ? h.span_cap : 1);

    run(&h, tx_max, nmsg, tx_sansio, rx_sansio, flags, span);
    free(span);
    return 0;
}

/* The exchange itself; not coverage-instrumented (the core is): its per-step compare tracing
 * cost more than the core. */
FZ_NOCOV static void run(rt_h *h, uint32_t tx_max, size_t nmsg, int tx_sansio, int rx_sansio,
                         uint8_t flags, uint8_t *span)
{
    tf_tx tx;
    tf_tx_init(&tx, tx_max);
    tf_rx rx;
    tf_rx_init(&rx, h->rx_max);
    h->rx = &rx;
    tf_io io = {h, h_read, h_write};
    tf_sink sink = {span, h->span_cap, h->alloc_mode ? h_alloc : NULL, h};
    CHECK(tf_tx_try(&tx, &io) == TF_DONE); /* idle: nothing to write */
    CHECK(tf_tx_advance(&tx, 0) == TF_DONE);

    uint32_t rng = 0xC0FFEEu ^ flags;
    size_t next = 0, got = 0;
    uint8_t *payload = NULL; /* the message in flight, freed at DONE */
    int tx_failed = 0;
    tf_step rst = TF_AGAIN;
    uint8_t *pending_target = NULL;
    for (unsigned steps = 0; rst != TF_ERROR; steps++) {
        CHECK(steps < 1000000);
        /* Interleave at random, but skip steps that cannot move a byte (a full pipe to write
         * into, an empty one to read from): they cost time and test nothing new. */
        int can_send = !h->closed && h->fill < h->cap;
        int can_recv = h->fill > 0 || h->closed;
        int send = can_send && (!can_recv || (fz_rand(&rng) & 1));
        if (send) {
            if (tx.state == TF__TX_IDLE) {
                if (next == nmsg) {
                    h->closed = 1; /* everything is out: the sender closes */
                    continue;
                }
                msg_in *m = &msgs[next++];
                if (m->len > 0) /* NULL payload with a length: refused, nothing changes */
                    CHECK(tf_tx_begin(&tx, NULL, m->len) ==
                          (m->len > tx_max ? TF_ERR_TOO_LARGE : TF_ERR_INVALID_ARGUMENT));
                payload = m->len ? malloc(m->len) : NULL;
                if (m->len)
                    fill_msg(m, payload);
                tf_err e = tf_tx_begin(&tx, payload, m->len);
                if (m->len > tx_max) {
                    CHECK(e == TF_ERR_TOO_LARGE);
                    CHECK(tx.state == TF__TX_IDLE && tf_tx_pending(&tx) == 0);
                    CHECK(tf_tx_error(&tx, NULL) == TF_OK);
                    free(payload);
                    payload = NULL;
                    continue;
                }
                CHECK(e == TF_OK);
                CHECK(tf_tx_pending(&tx) == TF_HDR_LEN + m->len);
            }
            size_t before = PENDING(&tx);
            if ((rng & 0x30) == 0) {
                CHECK(tf_tx_begin(&tx, payload, 0) == TF_ERR_BAD_STATE);
                CHECK(tf_tx_pending(&tx) == before);
            }
            size_t wpos0 = h->wpos;
            if (tx_sansio) {
                tx_sansio_step(h, &tx);
            } else {
                h->intr_seq = 0;
                tf_step st = tf_tx_try(&tx, &io);
                /* AGAIN means every possible bit of progress was made: the pipe would block,
                 * or TF_MAX_INTR interrupts came in a row (progress resets the count). */
                if (st == TF_AGAIN)
                    CHECK(h->last_w == FZ_ANS_AGAIN ||
                          (h->last_w == FZ_ANS_INTR && h->intr_seq >= TF_MAX_INTR));
                if (st == TF_ERROR) {
                    int os = -1;
                    CHECK(h->wfatal && tf_tx_error(&tx, &os) == h->want_tx && os == h->want_os);
                    /* sticky: nothing more is written */
                    CHECK(tf_tx_try(&tx, &io) == TF_ERROR);
                    CHECK(tf_tx_begin(&tx, payload, 0) == h->want_tx);
                    tf_iov iov[2];
                    CHECK(tf_tx_next(&tx, iov) == 0 && tf_tx_pending(&tx) == 0);
                    tx_failed = 1;
                    h->closed = 1;
                } else {
                    CHECK(!h->wfatal);
                    CHECK(st == (tx.state == TF__TX_IDLE ? TF_DONE : TF_AGAIN));
                }
            }
            /* the private counter (and now and then the public one) follows the bytes moved */
            CHECK(PENDING(&tx) == (tx.state == TF__TX_SENDING ? before - (h->wpos - wpos0) : 0));
            if ((rng & 0xC0) == 0)
                CHECK(tf_tx_pending(&tx) == PENDING(&tx));
            if (tx.state != TF__TX_SENDING) {
                CHECK(tx.payload == NULL || tx_failed);
                free(payload); /* released at DONE: any later read of it is a use after free */
                payload = NULL;
            }
            continue;
        }
        /* receive step */
        tf_msg msg = FZ_MSG_POISON; /* a DONE must fill both fields */
        rst = rx_sansio ? rx_sansio_step(h, &sink, &msg) : tf_rx_try(&rx, &io, &sink, &msg);
        if (rst == TF_DONE) {
            CHECK(got < nmsg);
            /* the reference of the whole expected wire gives the same message */
            if (got == 0)
                fz_ref_decode(&ref, h->wire, h->wire_len, h->rx_max, ref_policy, h, SIZE_MAX);
            CHECK(got < ref.count && msg.len == ref.len[got]);
            CHECK(h->rpos == ref.off[got] + ref.len[got]);
            /* and it is the original message, not only what the harness put on the wire */
            CHECK(got < naccepted && msg.len == msgs[accepted[got]].len);
            if (msg.len) {
                static uint8_t orig[MAX_TOTAL];
                fill_msg(&msgs[accepted[got]], orig);
                CHECK(memcmp(msg.data, orig, msg.len) == 0);
                CHECK(memcmp(msg.data, h->wire + ref.off[got], msg.len) == 0);
                if (h->alloc_mode)
                    free(msg.data);
                else
                    CHECK(msg.data == span);
            } else {
                CHECK(msg.data == NULL);
            }
            got++;
        }
        if (rst == TF_ERROR && rx_sansio && rx.state != TF__RX_FAILED) {
            pending_target = tf_rx_abandon(&rx);
            CHECK(tf_rx_error(&rx, NULL) == TF_ERR_BAD_STATE);
        }
    }

    /* The receiver's end: what the reference decoder says about the bytes that went out. */
    fz_ref_decode(&ref, h->wire, h->wpos, h->rx_max, ref_policy, h, SIZE_MAX);
    CHECK(got == ref.count);
    tf_err rerr = tf_rx_error(&rx, NULL);
    if (!(rx_sansio && rerr == TF_ERR_BAD_STATE))
        CHECK(rerr == ref.err);
    if (rerr == TF_ERR_CLOSED)
        CHECK(tx_failed || (next == nmsg && h->wpos == h->wire_len));
    uint8_t *t = tf_rx_abandon(&rx);
    if (h->alloc_mode) {
        free(t);
        free(pending_target);
    }

    /* Contract-breaking advance on the sender: INVALID_ARGUMENT, sticky. */
    if (!tx_failed) {
        size_t pend = tf_tx_pending(&tx);
        CHECK(tf_tx_advance(&tx, pend + 1 + fz_rand(&rng) % 4) == TF_ERROR);
        CHECK(tf_tx_error(&tx, NULL) == TF_ERR_INVALID_ARGUMENT);
        CHECK(tf_tx_advance(&tx, 0) == TF_ERROR);
        CHECK(tf_tx_begin(&tx, NULL, 0) == TF_ERR_INVALID_ARGUMENT);
        CHECK(tf_tx_try(&tx, &io) == TF_ERROR);
        CHECK(tf_tx_pending(&tx) == 0);
    }
    free(payload);
}
