/* Target: tf_frame_split + tf_rx_feed */
/* fuzz_split -- differential decoding of one stream five ways:
 *   A  tf_rx_feed with everything that is left, again and again (one piece);
 *   B  tf_rx_feed one byte at a time;
 *   C  tf_rx_feed in random chunks;
 *   D  batched reads: random chunks arrive, tf_frame_split takes every complete frame at a
 *      frame boundary zero-copy, the tail goes to tf_rx_feed; each answer of the splitter
 *      (DONE / AGAIN / ERROR) is the one the reference decoder predicts for the bytes at hand,
 *      so a splitter that says AGAIN for a complete frame is caught, not covered by the feed;
 *   E  the sans-I/O surface: tf_rx_next + copy + tf_rx_advance in random chunks, with
 *      tf_rx_wants_target / tf_rx_set_target, stray set_target calls (BAD_STATE, not sticky)
 *      and, at the end, a contract-breaking advance (INVALID_ARGUMENT, sticky);
 * and a whole-buffer reference decoder. All must give the same messages (offset, length, bytes)
 * and the same error (TOO_LARGE) at the same offset, or end in the same state when the input
 * runs out (between frames = CLOSED, inside one = TRUNCATED in the reference's words).
 *
 * Input: [max_len selector (+2)][flags][chunk seed][stream...]; the stream is cut at 256
 * bytes. flags bit 0: give targets with room to spare (cap > len); bits 2-3: which decoder
 * runs besides A. */
#include "fuzz_common.h"

#define MAX_STREAM 256u

typedef struct sp_h {
    const uint8_t *s;
    size_t n;
    uint32_t max_len;
    uint8_t flags;
    const fz_ref *ref;
    /* the decoder under test */
    size_t count;  /* messages so far */
    uint8_t *tgt;  /* the target of the unfinished message */
    uint32_t rng;
} sp_h;

static fz_ref ref;

/* A decoder produced a message whose payload ends at |end| (bytes consumed). */
FZ_NOCOV static void got_msg(sp_h *h, size_t end, const tf_msg *m)
{
    CHECK(h->count < h->ref->count);
    size_t off = h->ref->off[h->count], len = h->ref->len[h->count];
    CHECK(m->len == len && end == off + len);
    if (len == 0)
        CHECK(m->data == NULL);
    else
        CHECK(m->data != NULL && memcmp(m->data, h->s + off, len) == 0);
    h->count++;
}

/* The receiver wants a target: only the bytes still in the stream can be written, so allocate
 * exactly those (ASan watches) and announce the full length as the capacity. */
FZ_NOCOV static void give_target(sp_h *h, tf_rx *rx, size_t consumed)
{
    size_t len = 0;
    CHECK(tf_rx_wants_target(rx, &len));
    CHECK(len >= 1 && len <= h->max_len);
    CHECK(h->tgt == NULL);
    size_t phys = h->n - consumed < len ? h->n - consumed : len;
    h->tgt = malloc(phys ? phys : 1);
    CHECK(h->tgt != NULL);
    size_t cap = len;
    if ((h->flags & 1) && len < SIZE_MAX)
        cap = len + 1; /* room to spare: still only len bytes may be written */
    CHECK(tf_rx_set_target(rx, h->tgt, cap) == TF_OK);
    CHECK(!tf_rx_wants_target(rx, NULL));
}

/* The end every decoder must reach: the reference error at the reference offset. */
FZ_NOCOV static void check_end(sp_h *h, tf_rx *rx, tf_err err, size_t at)
{
    CHECK(h->count == h->ref->count);
    CHECK(at == h->ref->err_at);
    if (err == TF_OK) {
        /* input used up: CLOSED between frames, TRUNCATED inside one */
        CHECK(rx->state != TF__RX_FAILED);
        int inside = !(rx->state == TF__RX_LEN && rx->got == 0);
        CHECK(h->ref->err == (inside ? TF_ERR_TRUNCATED : TF_ERR_CLOSED));
        CHECK(tf_rx_error(rx, NULL) == TF_OK);
    } else {
        CHECK(err == h->ref->err && tf_rx_error(rx, NULL) == err);
        /* sticky: no byte moves */
        size_t used = 99;
        tf_msg m = FZ_MSG_POISON;
        CHECK(tf_rx_feed(rx, h->s, h->n, &used, &m) == TF_ERROR && used == 0);
    }
    CHECK(tf_rx_abandon(rx) == h->tgt);
    free(h->tgt);
    h->tgt = NULL;
}

/* A, B, C: tf_rx_feed in chunks of |chunk| bytes (0: random, SIZE_MAX: all that is left). */
FZ_NOCOV static void dec_feed(sp_h *h, size_t chunk)
{
    tf_rx rx;
    tf_rx_init(&rx, h->max_len);
    h->count = 0;
    size_t pos = 0;
    while (pos < h->n) {
        size_t c = chunk ? chunk : 1 + fz_rand(&h->rng) % 64u;
        if (c > h->n - pos)
            c = h->n - pos;
        size_t end = pos + c;
        while (pos < end) {
            size_t used = 12345;
            tf_msg m = FZ_MSG_POISON;
            tf_step st = tf_rx_feed(&rx, h->s + pos, end - pos, &used, &m);
            CHECK(used <= end - pos);
            pos += used;
            if (st == TF_ERROR) {
                check_end(h, &rx, rx.err, pos);
                return;
            }
            if (st == TF_DONE) {
                got_msg(h, pos, &m);
                if (m.len) {
                    CHECK(m.data == h->tgt);
                    free(h->tgt);
                    h->tgt = NULL;
                }
            } else if (tf_rx_wants_target(&rx, NULL)) {
                give_target(h, &rx, pos);
            } else {
                CHECK(pos == end); /* AGAIN otherwise only when the input is used up */
            }
        }
    }
    if (tf_rx_wants_target(&rx, NULL))
        give_target(h, &rx, pos);
    check_end(h, &rx, TF_OK, pos);
}

/* D: batched reads, tf_frame_split at frame boundaries, the tail through tf_rx_feed. */
FZ_NOCOV static void dec_split(sp_h *h)
{
    tf_rx rx;
    tf_rx_init(&rx, h->max_len);
    h->count = 0;
    size_t pos = 0, avail = 0;
    while (avail < h->n) {
        avail += 1 + fz_rand(&h->rng) % 96u;
        if (avail > h->n)
            avail = h->n;
        while (pos < avail) {
            if (rx.state == TF__RX_LEN && rx.got == 0) {
                const uint8_t *p = NULL;
                size_t plen = 0, used = 777;
                tf_step st = tf_frame_split(h->s + pos, avail - pos, h->max_len, &p, &plen, &used);
                /* What the reference decoder says about the bytes [pos, avail): the next
                 * message complete in them (DONE), its prefix over max (ERROR), else AGAIN. */
                const fz_ref *r = h->ref;
                int ref_done = h->count < r->count && r->off[h->count] + r->len[h->count] <= avail;
                int ref_err = !ref_done && h->count == r->count && r->err == TF_ERR_TOO_LARGE &&
                              avail - pos >= TF_HDR_LEN;
                CHECK(st == (ref_done ? TF_DONE : ref_err ? TF_ERROR : TF_AGAIN));
                if (st == TF_DONE) {
                    CHECK(used == TF_HDR_LEN + plen && p == h->s + pos + TF_HDR_LEN);
                    tf_msg m = {plen ? (uint8_t *)(uintptr_t)p : NULL, plen};
                    pos += used;
                    got_msg(h, pos, &m);
                    continue;
                }
                CHECK(used == 0);
                if (st == TF_ERROR) {
                    /* the splitter is stateless: the receiver must say the same */
                    CHECK(r->err_at == pos + TF_HDR_LEN && fz_be32(h->s + pos) > h->max_len);
                    tf_rx_init(&rx, h->max_len);
                    size_t u = 0;
                    tf_msg m = FZ_MSG_POISON;
                    CHECK(tf_rx_feed(&rx, h->s + pos, avail - pos, &u, &m) == TF_ERROR);
                    CHECK(u == TF_HDR_LEN && rx.err == TF_ERR_TOO_LARGE);
                    check_end(h, &rx, TF_ERR_TOO_LARGE, pos + u);
                    return;
                }
                CHECK(st == TF_AGAIN);
            }
            size_t used = 0;
            tf_msg m = FZ_MSG_POISON;
            tf_step st = tf_rx_feed(&rx, h->s + pos, avail - pos, &used, &m);
            pos += used;
            if (st == TF_ERROR) {
                check_end(h, &rx, rx.err, pos);
                return;
            }
            if (st == TF_DONE) {
                got_msg(h, pos, &m);
                free(h->tgt);
                h->tgt = NULL;
            } else if (tf_rx_wants_target(&rx, NULL)) {
                give_target(h, &rx, pos);
            }
        }
    }
    if (tf_rx_wants_target(&rx, NULL))
        give_target(h, &rx, pos);
    check_end(h, &rx, TF_OK, pos);
}

/* E: the sans-I/O surface. */
FZ_NOCOV static void dec_sansio(sp_h *h)
{
    tf_rx rx;
    tf_rx_init(&rx, h->max_len);
    h->count = 0;
    size_t pos = 0;
    uint8_t dummy[1];
    for (;;) {
        uint8_t *dst = NULL;
        size_t want = tf_rx_next(&rx, &dst);
        if (want == 0) {
            CHECK(dst == NULL);
            if (rx.state == TF__RX_FAILED) {
                check_end(h, &rx, rx.err, pos);
                return;
            }
            if (fz_rand(&h->rng) & 1) {
                /* nothing lands while a target is wanted: advance(0) changes nothing */
                tf_msg m0 = FZ_MSG_POISON;
                CHECK(tf_rx_advance(&rx, 0, &m0) == TF_AGAIN && tf_rx_wants_target(&rx, NULL));
            }
            give_target(h, &rx, pos);
            continue;
        }
        CHECK(!tf_rx_wants_target(&rx, NULL));
        if ((fz_rand(&h->rng) & 15) == 0) {
            /* a stray target: BAD_STATE, not sticky, nothing changes */
            CHECK(tf_rx_set_target(&rx, dummy, sizeof dummy) == TF_ERR_BAD_STATE);
            CHECK(tf_rx_error(&rx, NULL) == TF_OK);
        }
        if (pos == h->n)
            break;
        size_t c = 1 + fz_rand(&h->rng) % 48u;
        if (c > want)
            c = want;
        if (c > h->n - pos)
            c = h->n - pos;
        memcpy(dst, h->s + pos, c);
        pos += c;
        tf_msg m = FZ_MSG_POISON;
        tf_step st = tf_rx_advance(&rx, c, &m);
        if (st == TF_DONE) {
            got_msg(h, pos, &m);
            free(h->tgt);
            h->tgt = NULL;
        } else if (st == TF_ERROR) {
            continue; /* tf_rx_next says 0 and the loop ends */
        }
    }
    /* input used up: the same end as the others, then break the contract */
    uint8_t *tgt = h->tgt;
    CHECK(h->count == h->ref->count && pos == h->ref->err_at);
    int inside = !(rx.state == TF__RX_LEN && rx.got == 0);
    CHECK(h->ref->err == (inside ? TF_ERR_TRUNCATED : TF_ERR_CLOSED));
    uint8_t *dst;
    size_t want = tf_rx_next(&rx, &dst);
    tf_msg m = FZ_MSG_POISON;
    CHECK(tf_rx_advance(&rx, want + 1 + fz_rand(&h->rng) % 3, &m) == TF_ERROR);
    CHECK(tf_rx_error(&rx, NULL) == TF_ERR_INVALID_ARGUMENT);
    CHECK(tf_rx_advance(&rx, 0, &m) == TF_ERROR);
    CHECK(tf_rx_next(&rx, &dst) == 0);
    CHECK(tf_rx_set_target(&rx, dummy, 1) == TF_ERR_INVALID_ARGUMENT);
    CHECK(tf_rx_abandon(&rx) == tgt);
    CHECK(tf_rx_error(&rx, NULL) == TF_ERR_INVALID_ARGUMENT);
    free(h->tgt);
    h->tgt = NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_in in = {data, size};
    sp_h h;
    memset(&h, 0, sizeof h);
    h.max_len = fz_max_len(&in);
    h.flags = fz_u8(&in);
    uint8_t seed = fz_u8(&in);
    h.s = in.p;
    h.n = in.n < MAX_STREAM ? in.n : MAX_STREAM;
    h.ref = &ref;
    fz_ref_decode(&ref, h.s, h.n, h.max_len, NULL, NULL, SIZE_MAX);

    /* A against the reference always, and one more decoder picked by the input (all five on
     * every input would cost execs/s for little: each pair is compared through the reference). */
    h.rng = 0x51u + seed;
    dec_feed(&h, SIZE_MAX); /* A: one piece */
    switch ((h.flags >> 2) % 4u) {
    case 0:
        dec_feed(&h, 1); /* B: byte by byte */
        break;
    case 1:
        dec_feed(&h, 0); /* C: random chunks */
        break;
    case 2:
        dec_split(&h); /* D */
        break;
    default:
        dec_sansio(&h); /* E */
    }
    return 0;
}
