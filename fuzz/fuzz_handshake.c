/* Target: tf_hs_try */
/* fuzz_handshake -- the handshake over arbitrary peer bytes and chunking, through the try-step
 * (tf_hs_try over a scripted fake tf_io) or the sans-I/O halves (tf_hs_out/sent, in/received).
 *
 * Input: [mode][flags][nctl_w][write controls][nctl_r][read controls][peer bytes...]
 * mode picks the chunking pattern and the faults; flags bit 0 picks the sans-I/O surface.
 *
 * Oracles: the harness predicts the outcome from the first fatal event it hands out -- a peer
 * byte that differs from 'U','N','I','F' (BAD_MAGIC at exactly that byte), the peer closing
 * (CLOSED before any byte, TRUNCATED after 1..3), an OS failure (IO with its error number), a
 * contract-breaking answer (INVALID_ARGUMENT) -- and the core must stop right there: no callback
 * after it, the same reason from tf_hs_error. DONE iff our 4 bytes went out and the peer's first
 * 4 bytes are the magic; our output is exactly the magic; the core never reads past the magic;
 * AGAIN only when both directions would block (or are finished) or after TF_MAX_INTR
 * consecutive interrupts (of either direction, none more); DONE and ERROR are sticky and do no
 * I/O; tf_hs_wants says READ while peer bytes are expected and WRITE while ours remain, 0 once
 * done or failed; tf_err_name/tf_strerror of the outcome equal the hand-written table. */
#include "fuzz_common.h"

static const uint8_t MAGIC[4] = {'U', 'N', 'I', 'F'};

typedef struct hs_h {
    const uint8_t *peer;
    size_t n, pos;      /* peer bytes and how many were handed out */
    fz_script wsc, rsc;
    uint8_t out[4];     /* what the core wrote */
    size_t written;
    size_t accepted;    /* peer bytes handed out, all matching the magic */
    int fatal;          /* an outcome is decided: no callback may follow */
    tf_err want;        /* the decided reason */
    int want_os;
    size_t bad_at;      /* BAD_MAGIC: index of the first wrong byte */
    unsigned calls;
    int last_w, last_r; /* last answers of each direction in the current try call (-1: none) */
    unsigned intr_seq;  /* INTR answers since the last byte moved */
    tf_hs *hs;
} hs_h;

static void decide(hs_h *h, tf_err e, int os)
{
    CHECK(!h->fatal);
    h->fatal = 1;
    h->want = e;
    h->want_os = os;
}

static long h_write(void *ctx, const tf_iov *iov, size_t cnt, int *os_err)
{
    hs_h *h = ctx;
    h->calls++;
    CHECK(!h->fatal);
    /* after TF_MAX_INTR consecutive interrupted answers the step returns AGAIN, no more calls */
    CHECK(h->intr_seq < TF_MAX_INTR);
    CHECK(cnt == 1);
    CHECK(h->written < 4 && iov[0].len == 4 - h->written);
    CHECK(memcmp(iov[0].base, MAGIC + h->written, iov[0].len) == 0);
    size_t m = 0;
    int a = fz_answer(&h->wsc, iov[0].len, iov[0].len, &m);
    h->last_w = a;
    switch (a) {
    case FZ_ANS_AGAIN:
        return TF_IO_AGAIN;
    case FZ_ANS_INTR:
        h->intr_seq++;
        return TF_IO_INTR;
    case FZ_ANS_FAIL:
        *os_err = 7 + (int)h->written;
        decide(h, TF_ERR_IO, *os_err);
        return TF_IO_FAIL;
    case FZ_ANS_ZERO:
        decide(h, h->accepted == 0 ? TF_ERR_CLOSED : TF_ERR_TRUNCATED, 0);
        return 0;
    case FZ_ANS_LIE:
        decide(h, TF_ERR_INVALID_ARGUMENT, 0);
        return fz_lie(&h->wsc, iov[0].len);
    default:
        memcpy(h->out + h->written, iov[0].base, m);
        h->written += m;
        h->intr_seq = 0;
        return (long)m;
    }
}

/* Hand out peer bytes [pos, pos + m): decide BAD_MAGIC at the first wrong one. */
static void deliver(hs_h *h, uint8_t *buf, size_t m)
{
    memcpy(buf, h->peer + h->pos, m);
    for (size_t i = 0; i < m; i++) {
        if (h->peer[h->pos + i] != MAGIC[h->accepted]) {
            h->bad_at = h->accepted;
            decide(h, TF_ERR_BAD_MAGIC, 0);
            break;
        }
        h->accepted++;
    }
    h->pos += m;
}

static long h_read(void *ctx, uint8_t *buf, size_t len, int *os_err)
{
    hs_h *h = ctx;
    h->calls++;
    CHECK(!h->fatal);
    /* After TF_MAX_INTR consecutive interrupted answers, write halves included, the step
     * returns AGAIN: no read may follow the write that gave the last one. */
    CHECK(h->intr_seq < TF_MAX_INTR);
    /* Never asks for more than the rest of the magic. */
    CHECK(h->accepted < 4 && len == 4 - h->accepted);
    CHECK(h->pos == h->accepted);
    if (h->pos == h->n) {
        h->last_r = FZ_ANS_ZERO;
        decide(h, h->accepted == 0 ? TF_ERR_CLOSED : TF_ERR_TRUNCATED, 0);
        return 0;
    }
    size_t m = 0;
    int a = fz_answer(&h->rsc, len, h->n - h->pos, &m);
    h->last_r = a;
    switch (a) {
    case FZ_ANS_AGAIN:
        return TF_IO_AGAIN;
    case FZ_ANS_INTR:
        h->intr_seq++;
        return TF_IO_INTR;
    case FZ_ANS_FAIL:
        *os_err = 30 + (int)h->pos;
        decide(h, TF_ERR_IO, *os_err);
        return TF_IO_FAIL;
    case FZ_ANS_ZERO:
        decide(h, h->accepted == 0 ? TF_ERR_CLOSED : TF_ERR_TRUNCATED, 0);
        return 0;
    case FZ_ANS_LIE:
        decide(h, TF_ERR_INVALID_ARGUMENT, 0);
        return fz_lie(&h->rsc, len);
    default:
        deliver(h, buf, m);
        h->intr_seq = 0;
        return (long)m;
    }
}

/* After DONE or ERROR: the same answer again, no I/O, nothing offered. */
FZ_NOCOV static void check_final(hs_h *h, const tf_io *io, tf_step st)
{
    tf_hs *hs = h->hs;
    unsigned calls = h->calls;
    int fatal = h->fatal;
    h->fatal = 1; /* any callback now fails the CHECK in it */
    tf_err e = tf_hs_error(hs, NULL);
    CHECK(tf_hs_try(hs, io) == st);
    const uint8_t *o;
    uint8_t *i;
    CHECK(tf_hs_out(hs, &o) == 0);
    CHECK(tf_hs_in(hs, &i) == 0);
    CHECK(tf_hs_sent(hs, 0) == st);
    CHECK(tf_hs_received(hs, 0) == st);
    CHECK(h->calls == calls);
    CHECK(tf_hs_error(hs, NULL) == e);
    h->fatal = fatal;
}

/* tf_hs_wants from what the harness saw: while running, READ as long as peer bytes are still
 * expected and WRITE as long as ours remain; 0 once done or failed. */
FZ_NOCOV static void check_wants(hs_h *h, int running)
{
    unsigned w = tf_hs_wants(h->hs);
    if (!running) {
        CHECK(w == 0);
        return;
    }
    CHECK(w == ((h->accepted < 4 ? TF_WANT_READ : 0u) | (h->written < 4 ? TF_WANT_WRITE : 0u)));
}

/* The outcome: st is DONE or ERROR. */
FZ_NOCOV static void check_outcome(hs_h *h, tf_step st)
{
    tf_hs *hs = h->hs;
    int os = -1;
    tf_err e = tf_hs_error(hs, &os);
    fz_check_err_text(e);
    check_wants(h, 0);
    if (st == TF_DONE) {
        CHECK(!h->fatal);
        CHECK(e == TF_OK && os == 0);
        CHECK(h->written == 4 && memcmp(h->out, MAGIC, 4) == 0);
        CHECK(h->accepted == 4 && h->pos == 4 && h->n >= 4);
        CHECK(memcmp(h->peer, MAGIC, 4) == 0);
        CHECK(hs->state == TF__HS_DONE);
        return;
    }
    CHECK(st == TF_ERROR);
    CHECK(h->fatal);
    CHECK(e == h->want && os == h->want_os);
    CHECK(hs->state == TF__HS_FAILED);
    if (e == TF_ERR_BAD_MAGIC) {
        /* exactly at the first wrong byte */
        CHECK(hs->got == h->bad_at && h->bad_at < 4);
        CHECK(memcmp(h->peer, MAGIC, h->bad_at) == 0 && h->peer[h->bad_at] != MAGIC[h->bad_at]);
    } else {
        CHECK(hs->got == h->accepted);
        CHECK(memcmp(h->peer, MAGIC, h->accepted) == 0);
    }
    CHECK(hs->sent == h->written && memcmp(h->out, MAGIC, h->written) == 0);
}

static void run_try(hs_h *h)
{
    tf_io io = {h, h_read, h_write};
    tf_step st;
    for (unsigned steps = 0;; steps++) {
        CHECK(steps < 10000);
        h->last_w = h->last_r = -1;
        h->intr_seq = 0; /* counted per call */
        st = tf_hs_try(h->hs, &io);
        if (st != TF_AGAIN)
            break;
        CHECK(!h->fatal);
        CHECK(h->hs->state == TF__HS_RUNNING);
        check_wants(h, 1);
        CHECK(h->intr_seq >= TF_MAX_INTR ||
              ((h->written == 4 || h->last_w == FZ_ANS_AGAIN) &&
               (h->accepted == 4 || h->last_r == FZ_ANS_AGAIN)));
    }
    check_outcome(h, st);
    check_final(h, &io, st);
}

/* The sans-I/O halves, driven in an order chosen by the input; faults become zero-byte steps
 * and contract-breaking counts. */
static void run_sansio(hs_h *h, uint32_t rng)
{
    tf_hs *hs = h->hs;
    tf_step st = TF_AGAIN;
    for (unsigned steps = 0; st == TF_AGAIN; steps++) {
        CHECK(steps < 10000);
        const uint8_t *o = NULL;
        uint8_t *i = NULL;
        size_t offered = tf_hs_out(hs, &o);
        size_t wanted = tf_hs_in(hs, &i);
        CHECK(offered == 4 - h->written && o == hs->out + h->written);
        CHECK(memcmp(o, MAGIC + h->written, offered) == 0);
        CHECK(wanted == 4 - h->accepted && i == hs->in + h->accepted);
        int peer_left = h->pos < h->n;
        if (offered == 0 && (wanted == 0 || !peer_left))
            break; /* nothing more can happen without the peer */
        int out_side = offered > 0 && (!(wanted > 0 && peer_left) || (fz_rand(&rng) & 1));
        size_t m = 0;
        if (out_side) {
            int a = fz_answer(&h->wsc, offered, offered, &m);
            if (a == FZ_ANS_LIE) {
                st = tf_hs_sent(hs, offered + 1 + fz_rand(&rng) % 3);
                decide(h, TF_ERR_INVALID_ARGUMENT, 0);
                break;
            }
            if (a != FZ_ANS_MOVE)
                m = 0;
            h->written += m;
            st = tf_hs_sent(hs, m);
        } else {
            int a = fz_answer(&h->rsc, wanted, h->n - h->pos, &m);
            if (a == FZ_ANS_LIE) {
                st = tf_hs_received(hs, wanted + 1 + fz_rand(&rng) % 3);
                decide(h, TF_ERR_INVALID_ARGUMENT, 0);
                break;
            }
            if (a != FZ_ANS_MOVE)
                m = 0;
            deliver(h, i, m);
            st = tf_hs_received(hs, m);
        }
        memcpy(h->out, MAGIC, h->written);
        if (st == TF_AGAIN) {
            CHECK(!h->fatal && hs->state == TF__HS_RUNNING);
            check_wants(h, 1);
        }
    }
    if (st == TF_AGAIN) {
        /* stopped for want of peer bytes: still running, everything so far was right */
        CHECK(!h->fatal && hs->state == TF__HS_RUNNING && tf_hs_error(hs, NULL) == TF_OK);
        CHECK(h->accepted == h->n && h->accepted < 4);
        return;
    }
    check_outcome(h, st);
    tf_io io = {h, h_read, h_write};
    check_final(h, &io, st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_in in = {data, size};
    uint8_t mode = fz_u8(&in);
    uint8_t flags = fz_u8(&in);
    hs_h h;
    memset(&h, 0, sizeof h);
    const uint8_t *wc, *rc;
    size_t nw = fz_take(&in, fz_u8(&in), &wc);
    size_t nr = fz_take(&in, fz_u8(&in), &rc);
    fz_script_init(&h.wsc, wc, nw, mode);
    fz_script_init(&h.rsc, rc, nr, mode);
    h.peer = in.p;
    h.n = in.n;

    tf_hs hs;
    tf_hs_init(&hs);
    h.hs = &hs;
    CHECK(tf_hs_error(&hs, NULL) == TF_OK);
    check_wants(&h, 1);
    if (flags & 1)
        run_sansio(&h, flags);
    else
        run_try(&h);
    return 0;
}
