/* Target: tf_rx_try */
/* fuzz_rx -- the receiver's try-step over a scripted fake tf_io, in span and alloc mode.
 *
 * Input: [mode][sink flags][max_len selector (+2)][span cap u16][arena cap u16][fail_at]
 *        [nctl][nctl control bytes][stream...]
 * mode picks the chunking pattern (1 byte, random, all) and the faults the fake read answers
 * (none; AGAIN/INTR; also FAIL, early close, contract-breaking counts).
 *
 * Oracles, checked after every step: the bytes the core consumed equal the frame boundary plus
 * its private counters, the counters stay within their totals, tf_rx_next agrees with them, no
 * byte lands past the message in the span or the allocation (exact-size allocations for ASan,
 * pattern-filled tails checked by hand), lengths over max_len never reach the allocator, an
 * AGAIN comes only after a would-block or TF_MAX_INTR consecutive interrupts, errors are sticky
 * and move no byte. Differential: the messages and the final error equal those of a simple
 * whole-buffer reference decoder. */
#include "fuzz_common.h"

#define PAT 0xA5u

typedef struct rx_h {
    /* stream and scripted read */
    const uint8_t *s;
    size_t n, pos;
    fz_script sc;
    int term;          /* how the stream ended: 0 EOF, 1 FAIL, 2 LIE */
    int os_err;        /* the OS error given with FAIL */
    unsigned reads;    /* read calls */
    int last;          /* last answer (FZ_ANS_*) */
    unsigned intr_seq; /* consecutive INTR answers in the current try call */
    /* sink */
    tf_rx *rx;
    uint32_t max_len;
    int alloc_mode, arena_mode;
    uint8_t *span;
    size_t span_cap;
    uint8_t *arena;
    size_t arena_cap;
    unsigned fail_at; /* 1-based index of the allocation that fails, 0 never */
    unsigned allocs;
    uint8_t *cur;     /* the allocation of the unfinished message */
    size_t cur_phys;  /* its physical size */
    /* reference decoder policy state */
    unsigned ref_allocs;
} rx_h;

FZ_NOCOV static long h_read(void *ctx, uint8_t *buf, size_t len, int *os_err)
{
    rx_h *h = ctx;
    h->reads++;
    /* after TF_MAX_INTR consecutive interrupted answers the step returns AGAIN, no more reads */
    CHECK(h->intr_seq < TF_MAX_INTR);
    CHECK(len > 0);
    CHECK(buf != NULL);
    if (h->pos == h->n) {
        h->last = FZ_ANS_ZERO;
        return 0;
    }
    size_t m = 0;
    int a = fz_answer(&h->sc, len, h->n - h->pos, &m);
    h->last = a;
    if (a == FZ_ANS_INTR)
        h->intr_seq++;
    else
        h->intr_seq = 0;
    switch (a) {
    case FZ_ANS_AGAIN:
        return TF_IO_AGAIN;
    case FZ_ANS_INTR:
        return TF_IO_INTR;
    case FZ_ANS_FAIL:
        h->term = 1;
        h->os_err = 100 + (int)(h->pos % 50u);
        *os_err = h->os_err;
        return TF_IO_FAIL;
    case FZ_ANS_ZERO:
        h->n = h->pos; /* the peer closes early */
        return 0;
    case FZ_ANS_LIE:
        h->term = 2;
        return fz_lie(&h->sc, len);
    default:
        memcpy(buf, h->s + h->pos, m);
        h->pos += m;
        return (long)m;
    }
}

/* Would the allocator (or span) give a target for the |k|-th non-empty message of |len|? */
static tf_err h_decide(const rx_h *h, unsigned k, size_t len)
{
    if (!h->alloc_mode)
        return len > h->span_cap ? TF_ERR_BUFFER_TOO_SMALL : TF_OK;
    if (k == h->fail_at)
        return TF_ERR_NOMEM;
    if (h->arena_mode && len > h->arena_cap)
        return TF_ERR_NOMEM;
    return TF_OK;
}

static tf_err ref_policy(void *ctx, size_t len)
{
    rx_h *h = ctx;
    return h_decide(h, ++h->ref_allocs, len);
}

static uint8_t *h_alloc(void *ctx, size_t len)
{
    rx_h *h = ctx;
    /* SPEC 6.2: the length passed the max_len check before anyone is asked for a target. */
    CHECK(len >= 1);
    CHECK(len <= h->max_len);
    CHECK(h->rx->state == TF__RX_TARGET);
    CHECK(h->rx->len == len);
    CHECK(h->cur == NULL); /* one allocation per message */
    h->allocs++;
    if (h_decide(h, h->allocs, len) != TF_OK)
        return NULL;
    /* Only the bytes still in the stream can ever be written: allocate exactly those, so a
     * 4 GiB length costs nothing and ASan sees any write past them. */
    size_t phys = h->n - h->pos < len ? h->n - h->pos : len;
    if (h->arena_mode) {
        h->cur = h->arena;
    } else {
        h->cur = malloc(phys ? phys : 1);
        CHECK(h->cur != NULL);
    }
    h->cur_phys = phys;
    return h->cur;
}

/* Frame start of message |i| according to the reference. */
FZ_NOCOV static size_t frame_start(const fz_ref *r, size_t i)
{
    return i == 0 ? 0 : r->off[i - 1] + r->len[i - 1];
}

FZ_NOCOV static void check_state(rx_h *h, const fz_ref *ref, size_t got_msgs)
{
    tf_rx *rx = h->rx;
    uint8_t *buf = (uint8_t *)1;
    size_t want = tf_rx_next(rx, &buf);
    CHECK(!tf_rx_wants_target(rx, NULL));
    if (rx->state == TF__RX_FAILED) {
        CHECK(want == 0 && buf == NULL);
        return;
    }
    CHECK(tf_rx_error(rx, NULL) == TF_OK);
    size_t start = got_msgs < ref->count ? frame_start(ref, got_msgs) : frame_start(ref, ref->count);
    if (rx->state == TF__RX_LEN) {
        CHECK(rx->got < TF_HDR_LEN);
        CHECK(want == TF_HDR_LEN - rx->got && buf == rx->hdr + rx->got);
        CHECK(h->pos == start + rx->got);
        CHECK(h->cur == NULL);
    } else {
        CHECK(rx->state == TF__RX_BODY);
        CHECK(rx->got < rx->len);
        CHECK(rx->len <= h->max_len);
        CHECK(rx->len == fz_be32(h->s + start));
        CHECK(rx->cap >= rx->len);
        CHECK(rx->target != NULL);
        CHECK(want == rx->len - rx->got && buf == rx->target + rx->got);
        CHECK(h->pos == start + TF_HDR_LEN + rx->got);
        if (h->alloc_mode)
            CHECK(rx->target == h->cur && h->cur_phys >= rx->got);
        else
            CHECK(rx->target == h->span);
    }
}

/* The bytes of [from, to) of |p| just past a message still hold the pattern (a stray write
 * lands next to the message; ASan watches the end of the exact-size buffer). */
FZ_NOCOV static void check_pat(const uint8_t *p, size_t from, size_t to)
{
    if (to - from > 32)
        to = from + 32;
    for (size_t i = from; i < to; i++)
        CHECK(p[i] == PAT);
}

FZ_NOCOV static void check_sticky(rx_h *h, tf_err err, int os_err)
{
    tf_rx *rx = h->rx;
    unsigned reads = h->reads, allocs = h->allocs;
    tf_msg msg = FZ_MSG_POISON;
    int oe = -1;
    CHECK(tf_rx_error(rx, &oe) == err && oe == os_err);
    tf_sink sk = {h->span, h->span_cap, h->alloc_mode ? h_alloc : NULL, h};
    tf_io io = {h, h_read, NULL};
    CHECK(tf_rx_try(rx, &io, &sk, &msg) == TF_ERROR);
    uint8_t *b;
    CHECK(tf_rx_next(rx, &b) == 0);
    CHECK(tf_rx_advance(rx, 0, &msg) == TF_ERROR);
    CHECK(tf_rx_set_target(rx, h->span, h->span_cap) == err);
    size_t used = 7;
    CHECK(tf_rx_feed(rx, h->s, h->n, &used, &msg) == TF_ERROR && used == 0);
    CHECK(!tf_rx_wants_target(rx, NULL));
    CHECK(h->reads == reads && h->allocs == allocs);
    CHECK(tf_rx_error(rx, &oe) == err && oe == os_err);
}

static fz_ref ref_full, ref_cut;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_in in = {data, size};
    uint8_t mode = fz_u8(&in);
    uint8_t flags = fz_u8(&in);
    rx_h h;
    memset(&h, 0, sizeof h);
    h.max_len = fz_max_len(&in);
    h.span_cap = fz_u16(&in) % 2048u; /* max_len 1024 inputs: larger is the same */
    h.arena_cap = fz_u16(&in) % 2048u;
    h.fail_at = fz_u8(&in) % 8u;
    h.alloc_mode = flags & 1;
    h.arena_mode = (flags >> 1) & 1;
    int abandon_mid = (flags >> 2) & 1;
    const uint8_t *ctl;
    size_t nctl = fz_take(&in, fz_u8(&in), &ctl);
    fz_script_init(&h.sc, ctl, nctl, mode);
    h.s = in.p;
    h.n = in.n;
    size_t n_orig = h.n;

    tf_rx rx;
    tf_rx_init(&rx, h.max_len);
    h.rx = &rx;
    CHECK(tf_rx_error(&rx, NULL) == TF_OK);
    CHECK(tf_rx_set_target(&rx, NULL, 0) == TF_ERR_BAD_STATE); /* not sticky */
    CHECK(tf_rx_error(&rx, NULL) == TF_OK);

    /* Exact-size buffers: ASan reports any byte past them. */
    if (!h.alloc_mode && (h.span_cap > 0 || (flags & 8))) {
        h.span = malloc(h.span_cap ? h.span_cap : 1);
        CHECK(h.span != NULL);
        memset(h.span, PAT, h.span_cap);
    }
    if (h.alloc_mode && h.arena_mode) {
        h.arena = malloc(h.arena_cap ? h.arena_cap : 1);
        CHECK(h.arena != NULL);
        memset(h.arena, PAT, h.arena_cap);
    }

    h.ref_allocs = 0;
    fz_ref_decode(&ref_full, h.s, h.n, h.max_len, ref_policy, &h, SIZE_MAX);

    tf_sink sink = {h.span, h.span_cap, h.alloc_mode ? h_alloc : NULL, &h};
    tf_io io = {&h, h_read, NULL};
    size_t got = 0;
    int abandoned = 0;
    tf_step st;
    for (unsigned steps = 0;; steps++) {
        CHECK(steps < 100000); /* every AGAIN costs a control byte: this must end */
        h.intr_seq = 0;
        tf_msg msg = FZ_MSG_POISON;
        st = tf_rx_try(&rx, &io, &sink, &msg);
        if (st != TF_DONE)
            check_state(&h, &ref_full, got);
        if (st == TF_ERROR)
            break;
        if (st == TF_AGAIN) {
            CHECK(rx.state != TF__RX_FAILED);
            /* AGAIN means every possible bit of progress was made: the transport would block,
             * or it was interrupted TF_MAX_INTR times in a row. */
            CHECK(h.last == FZ_ANS_AGAIN || (h.last == FZ_ANS_INTR && h.intr_seq >= TF_MAX_INTR));
            if (abandon_mid && rx.state == TF__RX_BODY) {
                uint8_t *t = tf_rx_abandon(&rx);
                CHECK(t == (h.alloc_mode ? h.cur : h.span));
                abandoned = 1;
                break;
            }
            continue;
        }
        CHECK(st == TF_DONE);
        CHECK(got < ref_full.count);
        size_t off = ref_full.off[got], len = ref_full.len[got];
        CHECK(msg.len == len);
        CHECK(h.pos == off + len);
        CHECK(rx.state == TF__RX_LEN && rx.got == 0 && rx.target == NULL);
        if (len == 0) {
            CHECK(msg.data == NULL);
            CHECK(h.cur == NULL);
        } else {
            CHECK(msg.data != NULL && memcmp(msg.data, h.s + off, len) == 0);
            if (!h.alloc_mode) {
                CHECK(msg.data == h.span);
                check_pat(h.span, len, h.span_cap);
                memset(h.span, PAT, len);
            } else {
                CHECK(msg.data == h.cur && h.cur_phys == len);
                if (h.arena_mode) {
                    check_pat(h.arena, len, h.arena_cap);
                    memset(h.arena, PAT, len);
                } else {
                    free(h.cur);
                }
                h.cur = NULL;
            }
        }
        got++;
        check_state(&h, &ref_full, got);
    }

    if (abandoned) {
        CHECK(tf_rx_error(&rx, NULL) == TF_ERR_BAD_STATE);
        CHECK(tf_rx_abandon(&rx) == NULL);
        check_sticky(&h, TF_ERR_BAD_STATE, 0);
    } else {
        /* The final error: the reference over the bytes the stream delivered. */
        h.ref_allocs = 0;
        fz_ref_decode(&ref_cut, h.s, h.pos, h.max_len, ref_policy, &h, SIZE_MAX);
        tf_err want = ref_cut.err;
        int os_err = 0;
        if (h.term != 0) {
            CHECK(want == TF_ERR_CLOSED || want == TF_ERR_TRUNCATED);
            want = h.term == 1 ? TF_ERR_IO : TF_ERR_INVALID_ARGUMENT;
            os_err = h.term == 1 ? h.os_err : 0;
        }
        CHECK(got == ref_cut.count);
        CHECK(ref_cut.err_at == h.pos);
        if (h.term == 0 && h.pos == n_orig) /* read to the natural end */
            CHECK(ref_cut.count == ref_full.count && ref_cut.err == ref_full.err);
        check_sticky(&h, want, os_err);
        /* tf_rx_abandon hands back the unfinished target (or NULL) and keeps the reason. */
        uint8_t *tgt = rx.target;
        CHECK(tgt == NULL || tgt == (h.alloc_mode ? h.cur : h.span));
        CHECK(!h.alloc_mode || tgt == h.cur);
        CHECK(tf_rx_abandon(&rx) == tgt);
        CHECK(tf_rx_error(&rx, NULL) == want);
        CHECK(tf_rx_abandon(&rx) == NULL);
    }
    if (h.alloc_mode && !h.arena_mode)
        free(h.cur);
    if (h.cur && h.arena_mode)
        check_pat(h.arena, h.cur_phys, h.arena_cap);
    free(h.span);
    free(h.arena);
    return 0;
}
