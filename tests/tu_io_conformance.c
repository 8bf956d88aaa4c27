/* tests/tu_io_conformance.c -- the tf_io conformance suite and the in-memory reference adapter
 * (tests/tu_io_conformance.h says what each case checks and how an adapter plugs in). */
#include "tu_io_conformance.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEADLINE_MS 20000
#define FILL_MAX (256u << 20) /* a transport that takes more without AGAIN is unbounded */

/* ---------------------------------------------------------------- helpers */

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint32_t rnd(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

static uint8_t *pattern(size_t len, uint32_t seed)
{
    uint8_t *p = malloc(len ? len : 1);
    assert_non_null(p);
    uint32_t s = seed * 2654435761u + 1u;
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(rnd(&s) >> 24);
    return p;
}

/* ---------------------------------------------------------------- the checking wrapper */

/* What the core is handed: the adapter's tf_io behind a checker of every answer, a write
 * budget (then AGAIN), an optional burst of INTR answers, and an optional shaper. */
typedef struct wrap {
    tf_io io;
    const tf_io *under;
    int side;
    size_t wbudget; /* bytes writes may still move (SIZE_MAX: no limit) */
    unsigned intr;  /* the next |intr| calls answer TF_IO_INTR without calling the adapter */
    int shape;      /* random short counts, AGAIN and INTR */
    uint32_t seed;
    size_t rmoved, wmoved;
    unsigned long rcalls, wcalls;
} wrap;

static void check_answer(const wrap *w, const char *op, long n, size_t asked, int os_err)
{
    if (n > 0 && (size_t)n > asked)
        fail_msg("end %d: %s answered %ld for %zu bytes (more than asked)", w->side, op, n, asked);
    if (n < 0 && n != TF_IO_AGAIN && n != TF_IO_INTR && n != TF_IO_FAIL)
        fail_msg("end %d: %s answered %ld (not a tf_io answer)", w->side, op, n);
    if (n == TF_IO_FAIL && os_err == 0)
        fail_msg("end %d: %s answered TF_IO_FAIL without an os_err", w->side, op);
}

static long shape(wrap *w, size_t *len)
{
    uint32_t r = rnd(&w->seed);
    if (r % 8u == 0)
        return TF_IO_INTR;
    if (r % 8u == 1)
        return TF_IO_AGAIN;
    size_t cap = 1 + (size_t)(r >> 8) % 17u;
    if (*len > cap)
        *len = cap;
    return 0;
}

static long wrap_read(void *ctx, uint8_t *buf, size_t len, int *os_err)
{
    wrap *w = ctx;
    assert_true(len > 0);
    w->rcalls++;
    if (w->intr > 0) {
        w->intr--;
        return TF_IO_INTR;
    }
    long sh = w->shape ? shape(w, &len) : 0;
    if (sh != 0)
        return sh;
    int e = 0;
    long n = w->under->read(w->under->ctx, buf, len, &e);
    check_answer(w, "read", n, len, e);
    if (n > 0)
        w->rmoved += (size_t)n;
    if (n == TF_IO_FAIL)
        *os_err = e;
    return n;
}

static long wrap_write(void *ctx, const tf_iov *iov, size_t cnt, int *os_err)
{
    wrap *w = ctx;
    assert_true(cnt >= 1 && cnt <= 2);
    w->wcalls++;
    if (w->intr > 0) {
        w->intr--;
        return TF_IO_INTR;
    }
    size_t total = iov[0].len + (cnt > 1 ? iov[1].len : 0), len = total;
    long sh = w->shape ? shape(w, &len) : 0;
    if (sh != 0)
        return sh;
    if (w->wbudget == 0)
        return TF_IO_AGAIN;
    if (len > w->wbudget)
        len = w->wbudget;
    /* Offer the adapter only the first len bytes of the pieces (cnt stays 1 or 2). */
    tf_iov v[2] = {iov[0], cnt > 1 ? iov[1] : (tf_iov){NULL, 0}};
    size_t k = 1;
    if (v[0].len >= len) {
        v[0].len = len;
    } else {
        v[1].len = len - v[0].len;
        k = 2;
    }
    int e = 0;
    long n = w->under->write(w->under->ctx, v, k, &e);
    check_answer(w, "write", n, len, e);
    if (n > 0) {
        w->wmoved += (size_t)n;
        if (w->wbudget != SIZE_MAX)
            w->wbudget -= (size_t)n;
    }
    if (n == TF_IO_FAIL)
        *os_err = e;
    return n;
}

/* ---------------------------------------------------------------- a pair of ends */

typedef struct end {
    wrap w;
    tf_hs hs;
    tf_tx tx;
    tf_rx rx;
} end;

typedef struct ioc {
    const tu_ioc_adapter *ad;
    tu_ioc_pair p;
    end e[2];
    bool open;
} ioc;

static void ioc_open(ioc *c, void **state)
{
    memset(c, 0, sizeof *c);
    c->ad = *state;
    c->ad->open(&c->p);
    c->open = true;
    for (int i = 0; i < 2; i++) {
        end *e = &c->e[i];
        assert_non_null(c->p.io[i]);
        e->w = (wrap){.io = {&e->w, wrap_read, wrap_write},
                      .under = c->p.io[i],
                      .side = i,
                      .wbudget = SIZE_MAX,
                      .seed = 0x9E3779B9u + (uint32_t)i};
        tf_hs_init(&e->hs);
        tf_tx_init(&e->tx, TF_DEFAULT_MAX_LEN);
        tf_rx_init(&e->rx, TF_DEFAULT_MAX_LEN);
    }
}

static void ioc_close(ioc *c)
{
    if (c->open)
        c->ad->free(&c->p);
    c->open = false;
}

static void wait_for(ioc *c, int side, int dir, long long deadline)
{
    if (now_ms() > deadline)
        fail_msg("%s: end %d: no progress within %d ms", c->ad->name, side, DEADLINE_MS);
    (void)c->ad->wait(&c->p, side, dir, 10);
}

static void handshake(ioc *c)
{
    bool done[2] = {false, false};
    long long deadline = now_ms() + DEADLINE_MS;
    while (!done[0] || !done[1]) {
        for (int i = 0; i < 2; i++) {
            if (done[i])
                continue;
            tf_step s = tf_hs_try(&c->e[i].hs, &c->e[i].w.io);
            if (s == TF_ERROR)
                fail_msg("handshake, end %d: %s", i, tf_err_name(tf_hs_error(&c->e[i].hs, NULL)));
            done[i] = s == TF_DONE;
        }
        if (!done[0] || !done[1])
            wait_for(c, done[0] ? 1 : 0, TU_IOC_IN, deadline);
    }
}

static uint8_t *alloc_cb(void *ctx, size_t len)
{
    (*(size_t *)ctx)++;
    return malloc(len);
}

/* One message from end |from| to the other: tx and rx alternate, waiting when both block. */
static void transfer(ioc *c, int from, const uint8_t *payload, size_t len, bool alloc)
{
    end *s = &c->e[from], *r = &c->e[1 - from];
    uint8_t *span = alloc ? NULL : malloc(len ? len : 1);
    size_t allocs = 0;
    tf_sink sink = alloc ? (tf_sink){NULL, 0, alloc_cb, &allocs} : (tf_sink){span, len, NULL, NULL};
    assert_int_equal(tf_tx_begin(&s->tx, payload, len), TF_OK);
    tf_msg msg = {(uint8_t *)&msg, 12345};
    bool tdone = false, rdone = false;
    long long deadline = now_ms() + DEADLINE_MS;
    while (!tdone || !rdone) {
        tf_step ts = TF_DONE, rs = TF_DONE;
        if (!tdone && (ts = tf_tx_try(&s->tx, &s->w.io)) == TF_ERROR)
            fail_msg("send of %zu B from end %d: %s", len, from,
                     tf_err_name(tf_tx_error(&s->tx, NULL)));
        if (!rdone && (rs = tf_rx_try(&r->rx, &r->w.io, &sink, &msg)) == TF_ERROR)
            fail_msg("receive of %zu B at end %d: %s", len, 1 - from,
                     tf_err_name(tf_rx_error(&r->rx, NULL)));
        tdone = tdone || ts == TF_DONE;
        rdone = rdone || rs == TF_DONE;
        /* Both blocked: sleep on the sender only if the receiver has nothing to read (the
         * shaper's AGAIN answers are not the transport's). */
        if (ts == TF_AGAIN && rs == TF_AGAIN && !c->ad->wait(&c->p, 1 - from, TU_IOC_IN, 0))
            wait_for(c, from, TU_IOC_OUT, deadline);
        else if (tdone && rs == TF_AGAIN)
            wait_for(c, 1 - from, TU_IOC_IN, deadline);
    }
    assert_int_equal(msg.len, len);
    if (len == 0) {
        assert_null(msg.data);
    } else {
        assert_memory_equal(msg.data, payload, len);
        if (alloc)
            free(msg.data);
    }
    assert_int_equal(allocs, alloc && len > 0 ? 1 : 0);
    free(span);
}

/* Receive at |side| until the receiver fails; returns the reason (os_err in *os). */
static tf_err rx_until_error(ioc *c, int side, int *os)
{
    end *r = &c->e[side];
    size_t allocs = 0;
    tf_sink sink = {NULL, 0, alloc_cb, &allocs};
    long long deadline = now_ms() + DEADLINE_MS;
    for (;;) {
        tf_msg m;
        tf_step s = tf_rx_try(&r->rx, &r->w.io, &sink, &m);
        if (s == TF_ERROR)
            break;
        if (s == TF_DONE)
            free(m.data);
        else
            wait_for(c, side, TU_IOC_IN, deadline);
    }
    free(tf_rx_abandon(&r->rx));
    return tf_rx_error(&r->rx, os);
}

/* Write junk at |side| until the transport answers AGAIN; returns the bytes it took. */
static size_t fill(ioc *c, int side)
{
    static uint8_t junk[65536];
    const tf_io *io = c->p.io[side];
    size_t total = 0, chunk = sizeof junk;
    while (total < FILL_MAX) {
        tf_iov v = {junk, chunk};
        int e = 0;
        long n = io->write(io->ctx, &v, 1, &e);
        if (n > 0) {
            assert_true((size_t)n <= chunk);
            total += (size_t)n;
        } else if (n == TF_IO_AGAIN && chunk > 1) {
            chunk /= 2;
        } else if (n == TF_IO_AGAIN) {
            return total;
        } else if (n != TF_IO_INTR) {
            fail_msg("fill: write answered %ld (os_err %d)", n, e);
        }
    }
    fail_msg("%s: %u MiB written without TF_IO_AGAIN: the transport must be bounded", c->ad->name,
             FILL_MAX >> 20);
    return total;
}

/* Read and drop exactly |len| bytes at |side|. */
static void drain(ioc *c, int side, size_t len)
{
    static uint8_t junk[65536];
    const tf_io *io = c->p.io[side];
    long long deadline = now_ms() + DEADLINE_MS;
    while (len > 0) {
        int e = 0;
        long n = io->read(io->ctx, junk, len < sizeof junk ? len : sizeof junk, &e);
        if (n > 0)
            len -= (size_t)n;
        else if (n == TF_IO_AGAIN)
            wait_for(c, side, TU_IOC_IN, deadline);
        else if (n != TF_IO_INTR)
            fail_msg("drain: read answered %ld (os_err %d) with %zu bytes to go", n, e, len);
    }
}

/* ---------------------------------------------------------------- the cases */

/* Both magics cross; nothing more is consumed or left over. */
static void ioc_handshake(void **state)
{
    ioc c;
    ioc_open(&c, state);
    handshake(&c);
    assert_int_equal(c.e[0].w.rmoved, 4);
    assert_int_equal(c.e[1].w.wmoved, 4);
    uint8_t b;
    int e = 0;
    for (int i = 0; i < 2; i++)
        assert_int_equal(c.p.io[i]->read(c.p.io[i]->ctx, &b, 1, &e), TF_IO_AGAIN);
    ioc_close(&c);
}

/* A 29-byte message whose first k bytes arrive first, for every k (0..33), both ways: the
 * receiver holds its place at every split and completes with the exact payload. */
static void ioc_split_points(void **state)
{
    ioc c;
    ioc_open(&c, state);
    handshake(&c);
    uint8_t *p = pattern(29, 1);
    uint8_t buf[29];
    tf_sink sink = {buf, sizeof buf, NULL, NULL};
    for (int from = 0; from < 2; from++) {
        end *s = &c.e[from], *r = &c.e[1 - from];
        for (size_t k = 0; k <= 33; k++) {
            s->w.wbudget = k;
            assert_int_equal(tf_tx_begin(&s->tx, p, 29), TF_OK);
            assert_int_equal(tf_tx_try(&s->tx, &s->w.io), k < 33 ? TF_AGAIN : TF_DONE);
            assert_int_equal(tf_tx_pending(&s->tx), 33 - k);
            /* The receiver takes the k bytes (they may need a moment to arrive). */
            size_t before = r->w.rmoved;
            tf_msg m;
            tf_step rs = TF_AGAIN;
            long long deadline = now_ms() + DEADLINE_MS;
            while (r->w.rmoved - before < k) {
                rs = tf_rx_try(&r->rx, &r->w.io, &sink, &m);
                assert_int_not_equal(rs, TF_ERROR);
                if (r->w.rmoved - before < k)
                    wait_for(&c, 1 - from, TU_IOC_IN, deadline);
            }
            assert_int_equal(r->w.rmoved - before, k);
            assert_int_equal(rs, k == 33 ? TF_DONE : TF_AGAIN);
            s->w.wbudget = SIZE_MAX;
            while (rs != TF_DONE || tf_tx_pending(&s->tx) > 0) {
                assert_int_not_equal(tf_tx_try(&s->tx, &s->w.io), TF_ERROR);
                if (rs != TF_DONE)
                    rs = tf_rx_try(&r->rx, &r->w.io, &sink, &m);
                assert_int_not_equal(rs, TF_ERROR);
                if (rs != TF_DONE)
                    wait_for(&c, 1 - from, TU_IOC_IN, deadline);
            }
            assert_int_equal(m.len, 29);
            assert_memory_equal(m.data, p, 29);
            assert_int_equal(r->w.rmoved - before, 33);
        }
    }
    free(p);
    ioc_close(&c);
}

/* Messages of 0 B to 1 MiB + 7 both ways, into a span and into allocations: far beyond any
 * transport buffer, so both sides must wait for each other. */
static void ioc_sizes(void **state)
{
    static const size_t sizes[] = {0, 1, 4, 4095, 65539, 1048583};
    ioc c;
    ioc_open(&c, state);
    handshake(&c);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        uint8_t *p = pattern(sizes[i], (uint32_t)i + 7);
        for (int from = 0; from < 2; from++) {
            transfer(&c, from, p, sizes[i], false);
            transfer(&c, from, p, sizes[i], true);
        }
        free(p);
    }
    ioc_close(&c);
}

/* The same through a shaper: every answer may become a short count (1..17 bytes), TF_IO_AGAIN
 * or TF_IO_INTR, handshake included; the bytes still arrive exactly once, in order. */
static void ioc_shaped_answers(void **state)
{
    static const size_t sizes[] = {0, 1, 100, 5000, 70001};
    ioc c;
    ioc_open(&c, state);
    c.e[0].w.shape = c.e[1].w.shape = 1;
    handshake(&c);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        uint8_t *p = pattern(sizes[i], (uint32_t)i + 100);
        transfer(&c, 0, p, sizes[i], i % 2 == 0);
        transfer(&c, 1, p, sizes[i], i % 2 == 1);
        free(p);
    }
    ioc_close(&c);
}

/* The writer stops after whole frames: the reader gets them, then CLOSED (no os_err), sticky. */
static void ioc_eof_between_frames(void **state)
{
    ioc c;
    ioc_open(&c, state);
    handshake(&c);
    transfer(&c, 0, (const uint8_t *)"last", 4, false);
    transfer(&c, 0, NULL, 0, false);
    c.ad->close_write(&c.p, 0);
    int os = -1;
    assert_int_equal(rx_until_error(&c, 1, &os), TF_ERR_CLOSED);
    assert_int_equal(os, 0);
    unsigned long calls = c.e[1].w.rcalls;
    tf_msg m;
    tf_sink sink = {NULL, 0, NULL, NULL};
    assert_int_equal(tf_rx_try(&c.e[1].rx, &c.e[1].w.io, &sink, &m), TF_ERROR);
    assert_int_equal(c.e[1].w.rcalls, calls); /* a failed machine calls no I/O */
    ioc_close(&c);
}

/* The writer stops inside the magic (CLOSED before its first byte, TRUNCATED after 2) and
 * inside a frame (after 1..32 of its 33 bytes): TRUNCATED. */
static void ioc_eof_inside_frame(void **state)
{
    static const size_t cuts[] = {1, 2, 3, 4, 5, 20, 32};
    uint8_t *p = pattern(29, 3);
    ioc c;
    for (size_t mag = 0; mag <= 2; mag += 2) {
        ioc_open(&c, state);
        c.e[0].w.wbudget = mag;
        assert_int_equal(tf_hs_try(&c.e[0].hs, &c.e[0].w.io), TF_AGAIN);
        c.ad->close_write(&c.p, 0);
        long long deadline = now_ms() + DEADLINE_MS;
        tf_step s;
        while ((s = tf_hs_try(&c.e[1].hs, &c.e[1].w.io)) == TF_AGAIN)
            wait_for(&c, 1, TU_IOC_IN, deadline);
        assert_int_equal(s, TF_ERROR);
        assert_int_equal(tf_hs_error(&c.e[1].hs, NULL), mag ? TF_ERR_TRUNCATED : TF_ERR_CLOSED);
        ioc_close(&c);
    }
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        ioc_open(&c, state);
        handshake(&c);
        c.e[0].w.wbudget = cuts[i];
        assert_int_equal(tf_tx_begin(&c.e[0].tx, p, 29), TF_OK);
        assert_int_equal(tf_tx_try(&c.e[0].tx, &c.e[0].w.io), TF_AGAIN);
        c.ad->close_write(&c.p, 0);
        int os = -1;
        assert_int_equal(rx_until_error(&c, 1, &os), TF_ERR_TRUNCATED);
        assert_int_equal(os, 0);
        assert_int_equal(c.e[1].w.rmoved, 4 + cuts[i]);
        ioc_close(&c);
    }
    free(p);
}

/* AGAIN: a read of an empty end; a write to a full end (tf_tx_try then says AGAIN with the
 * frame pending); once the peer drained exactly what was taken, the frame goes through. */
static void ioc_again_empty_and_full(void **state)
{
    ioc c;
    ioc_open(&c, state);
    uint8_t b[8];
    int e = 0;
    assert_int_equal(c.p.io[1]->read(c.p.io[1]->ctx, b, sizeof b, &e), TF_IO_AGAIN);
    size_t filled = fill(&c, 0);
    assert_true(filled > 0);
    tf_iov v = {(const uint8_t *)"x", 1};
    assert_int_equal(c.p.io[0]->write(c.p.io[0]->ctx, &v, 1, &e), TF_IO_AGAIN);
    assert_int_equal(tf_tx_begin(&c.e[0].tx, (const uint8_t *)"after full", 10), TF_OK);
    assert_int_equal(tf_tx_try(&c.e[0].tx, &c.e[0].w.io), TF_AGAIN);
    assert_int_equal(tf_tx_pending(&c.e[0].tx), 14);
    drain(&c, 1, filled);
    uint8_t buf[16];
    tf_sink sink = {buf, sizeof buf, NULL, NULL};
    tf_msg m;
    tf_step ts = TF_AGAIN, rs = TF_AGAIN;
    long long deadline = now_ms() + DEADLINE_MS;
    while (ts != TF_DONE || rs != TF_DONE) {
        if (ts != TF_DONE)
            ts = tf_tx_try(&c.e[0].tx, &c.e[0].w.io);
        if (rs != TF_DONE)
            rs = tf_rx_try(&c.e[1].rx, &c.e[1].w.io, &sink, &m);
        assert_true(ts != TF_ERROR && rs != TF_ERROR);
        if (ts != TF_DONE || rs != TF_DONE)
            wait_for(&c, ts != TF_DONE ? 0 : 1, ts != TF_DONE ? TU_IOC_OUT : TU_IOC_IN, deadline);
    }
    assert_int_equal(m.len, 10);
    assert_memory_equal(m.data, "after full", 10);
    ioc_close(&c);
}

/* INTR: the adapter's interrupted read and write answer TF_IO_INTR and move nothing; the core
 * retries up to TF_MAX_INTR consecutive INTR answers, then returns AGAIN (no error). */
static void ioc_intr(void **state)
{
    ioc c;
    ioc_open(&c, state);
    if (c.ad->interrupted != NULL) {
        assert_int_equal(c.ad->interrupted(&c.p, 1, TU_IOC_IN), TF_IO_INTR);
        size_t filled = fill(&c, 0);
        assert_int_equal(c.ad->interrupted(&c.p, 0, TU_IOC_OUT), TF_IO_INTR);
        drain(&c, 1, filled); /* exactly what fill counted: the interrupted write moved nothing */
        uint8_t b;
        int e = 0;
        assert_int_equal(c.p.io[1]->read(c.p.io[1]->ctx, &b, 1, &e), TF_IO_AGAIN);
    }
    handshake(&c);
    uint8_t buf[8];
    tf_sink sink = {buf, sizeof buf, NULL, NULL};
    tf_msg m;
    transfer(&c, 0, (const uint8_t *)"warm", 4, false);
    assert_int_equal(tf_tx_begin(&c.e[0].tx, (const uint8_t *)"intr", 4), TF_OK);
    c.e[0].w.intr = TF_MAX_INTR;
    assert_int_equal(tf_tx_try(&c.e[0].tx, &c.e[0].w.io), TF_AGAIN);
    assert_int_equal(tf_tx_pending(&c.e[0].tx), 8);
    c.e[0].w.intr = TF_MAX_INTR - 1;
    long long deadline = now_ms() + DEADLINE_MS;
    tf_step s;
    while ((s = tf_tx_try(&c.e[0].tx, &c.e[0].w.io)) == TF_AGAIN)
        wait_for(&c, 0, TU_IOC_OUT, deadline);
    assert_int_equal(s, TF_DONE);
    c.e[1].w.intr = TF_MAX_INTR;
    assert_int_equal(tf_rx_try(&c.e[1].rx, &c.e[1].w.io, &sink, &m), TF_AGAIN);
    assert_int_equal(c.e[1].w.rmoved, 12); /* the magic and "warm"'s frame only */
    c.e[1].w.intr = TF_MAX_INTR - 1;
    while ((s = tf_rx_try(&c.e[1].rx, &c.e[1].w.io, &sink, &m)) == TF_AGAIN)
        wait_for(&c, 1, TU_IOC_IN, deadline);
    assert_int_equal(s, TF_DONE);
    assert_int_equal(m.len, 4);
    assert_memory_equal(m.data, "intr", 4);
    ioc_close(&c);
}

/* The peer is gone: a write is TF_IO_FAIL with the adapter's os_err (EPIPE), which the core
 * reports as TF_ERR_IO with that os_err; reads see EOF (CLOSED). SIGPIPE is ignored meanwhile
 * (a pipe cannot suppress it per call). */
static void ioc_error_mapping(void **state)
{
    void (*old)(int) = signal(SIGPIPE, SIG_IGN);
    ioc c;
    ioc_open(&c, state);
    handshake(&c);
    c.ad->close(&c.p, 1);
    int os = -1;
    assert_int_equal(rx_until_error(&c, 0, &os), TF_ERR_CLOSED);
    assert_int_equal(os, 0);
    tf_iov v = {(const uint8_t *)"gone", 4};
    int e = 0;
    assert_int_equal(c.p.io[0]->write(c.p.io[0]->ctx, &v, 1, &e), TF_IO_FAIL);
    assert_int_equal(e, c.ad->gone_errno);
    assert_int_equal(tf_tx_begin(&c.e[0].tx, (const uint8_t *)"gone", 4), TF_OK);
    assert_int_equal(tf_tx_try(&c.e[0].tx, &c.e[0].w.io), TF_ERROR);
    os = 0;
    assert_int_equal(tf_tx_error(&c.e[0].tx, &os), TF_ERR_IO);
    assert_int_equal(os, c.ad->gone_errno);
    ioc_close(&c);
    signal(SIGPIPE, old);
}

/* The raw contract: a read never returns more than asked (1 byte asked: 1 byte); a gather
 * write sends a prefix of iov[0] ++ iov[1], in order. */
static void ioc_contract_counts(void **state)
{
    ioc c;
    ioc_open(&c, state);
    const tf_io *a = c.p.io[0], *b = c.p.io[1];
    tf_iov v[2] = {{(const uint8_t *)"abc", 3}, {(const uint8_t *)"defg", 4}};
    int e = 0;
    size_t sent = 0;
    long long deadline = now_ms() + DEADLINE_MS;
    while (sent < 7) { /* re-offer the rest as the core would */
        tf_iov rest[2];
        size_t k = 0;
        if (sent < 3)
            rest[k++] = (tf_iov){v[0].base + sent, 3 - sent};
        rest[k++] = (tf_iov){v[1].base + (sent > 3 ? sent - 3 : 0), sent > 3 ? 7 - sent : 4};
        long n = a->write(a->ctx, rest, k, &e);
        assert_true(n == TF_IO_AGAIN || n == TF_IO_INTR || (n > 0 && (size_t)n <= 7 - sent));
        if (n > 0)
            sent += (size_t)n;
        else
            wait_for(&c, 0, TU_IOC_OUT, deadline);
    }
    uint8_t got[8] = {0};
    size_t have = 0;
    while (have < 7) {
        size_t ask = have == 0 ? 1 : 2;
        long n = b->read(b->ctx, got + have, ask, &e);
        assert_true(n == TF_IO_AGAIN || n == TF_IO_INTR || (n > 0 && (size_t)n <= ask));
        if (n > 0)
            have += (size_t)n;
        else
            wait_for(&c, 1, TU_IOC_IN, deadline);
    }
    assert_memory_equal(got, "abcdefg", 7);
    assert_int_equal(b->read(b->ctx, got, sizeof got, &e), TF_IO_AGAIN);
    ioc_close(&c);
}

size_t tu_ioc_tests(const tu_ioc_adapter *ad, struct CMUnitTest *tests, CMFixtureFunction setup,
                    CMFixtureFunction teardown)
{
    static const struct {
        const char *name;
        CMUnitTestFunction fn;
    } cases[TU_IOC_NCASES] = {
        {"handshake", ioc_handshake},
        {"split_points", ioc_split_points},
        {"sizes", ioc_sizes},
        {"shaped_answers", ioc_shaped_answers},
        {"eof_between_frames", ioc_eof_between_frames},
        {"eof_inside_frame", ioc_eof_inside_frame},
        {"again_empty_and_full", ioc_again_empty_and_full},
        {"intr", ioc_intr},
        {"error_mapping", ioc_error_mapping},
        {"contract_counts", ioc_contract_counts},
    };
    for (size_t i = 0; i < TU_IOC_NCASES; i++) {
        size_t len = strlen(ad->name) + strlen(cases[i].name) + 16;
        char *name = malloc(len);
        assert_non_null(name);
        snprintf(name, len, "%s: %s", ad->name, cases[i].name);
        tests[i] = (struct CMUnitTest){name, cases[i].fn, setup, teardown, (void *)(uintptr_t)ad};
    }
    return TU_IOC_NCASES;
}

/* ---------------------------------------------------------------- in-memory reference adapter */

#define MEM_CAP 4096

typedef struct mem_pair mem_pair;
typedef struct mem_end {
    mem_pair *pair;
    int side;
    tf_io io;
} mem_end;

struct mem_pair {
    uint8_t ring[2][MEM_CAP]; /* ring[i]: bytes written by end i, read by the other */
    size_t head[2], fill[2];
    bool wclosed[2], gone[2], intr[2];
    mem_end end[2];
};

static long mem_read(void *ctx, uint8_t *buf, size_t len, int *os_err)
{
    mem_end *me = ctx;
    mem_pair *p = me->pair;
    int from = 1 - me->side;
    if (p->gone[me->side]) {
        *os_err = EBADF;
        return TF_IO_FAIL;
    }
    if (p->intr[me->side]) {
        p->intr[me->side] = false;
        return TF_IO_INTR;
    }
    if (p->fill[from] == 0)
        return p->wclosed[from] || p->gone[from] ? 0 : TF_IO_AGAIN;
    size_t n = len < p->fill[from] ? len : p->fill[from];
    for (size_t i = 0; i < n; i++) {
        buf[i] = p->ring[from][p->head[from]];
        p->head[from] = (p->head[from] + 1) % MEM_CAP;
    }
    p->fill[from] -= n;
    return (long)n;
}

static long mem_write(void *ctx, const tf_iov *iov, size_t cnt, int *os_err)
{
    mem_end *me = ctx;
    mem_pair *p = me->pair;
    int s = me->side;
    if (p->gone[s] || p->wclosed[s] || p->gone[1 - s]) {
        *os_err = p->gone[s] ? EBADF : EPIPE;
        return TF_IO_FAIL;
    }
    if (p->intr[s]) {
        p->intr[s] = false;
        return TF_IO_INTR;
    }
    size_t room = MEM_CAP - p->fill[s], n = 0;
    if (room == 0)
        return TF_IO_AGAIN;
    for (size_t i = 0; i < cnt && n < room; i++)
        for (size_t j = 0; j < iov[i].len && n < room; j++, n++)
            p->ring[s][(p->head[s] + p->fill[s] + n) % MEM_CAP] = iov[i].base[j];
    p->fill[s] += n;
    return (long)n;
}

static void mem_open(tu_ioc_pair *tp)
{
    mem_pair *p = calloc(1, sizeof *p);
    assert_non_null(p);
    for (int i = 0; i < 2; i++) {
        p->end[i] = (mem_end){p, i, {&p->end[i], mem_read, mem_write}};
        tp->io[i] = &p->end[i].io;
    }
    tp->impl = p;
}

static bool mem_wait(tu_ioc_pair *tp, int side, int dir, int ms)
{
    (void)tp, (void)side, (void)dir, (void)ms;
    return true; /* no readiness: the suite simply tries again */
}

static void mem_close_write(tu_ioc_pair *tp, int side)
{
    mem_pair *p = tp->impl;
    p->wclosed[side] = true;
}

static void mem_close(tu_ioc_pair *tp, int side)
{
    mem_pair *p = tp->impl;
    p->gone[side] = true;
    p->fill[1 - side] = 0; /* what was in flight to it is lost */
}

static long mem_interrupted(tu_ioc_pair *tp, int side, int dir)
{
    mem_pair *p = tp->impl;
    const tf_io *io = tp->io[side];
    uint8_t b = 0;
    int e = 0;
    p->intr[side] = true;
    tf_iov v = {&b, 1};
    return dir == TU_IOC_IN ? io->read(io->ctx, &b, 1, &e) : io->write(io->ctx, &v, 1, &e);
}

static void mem_free(tu_ioc_pair *tp)
{
    free(tp->impl);
    tp->impl = NULL;
}

const tu_ioc_adapter tu_ioc_mem = {"memory",  mem_open, mem_wait,        mem_close_write,
                                   mem_close, EPIPE,    mem_interrupted, mem_free};
