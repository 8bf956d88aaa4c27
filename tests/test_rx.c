/* test_rx.c -- the receiver: sans-I/O next/advance/set_target/feed, tf_rx_try over a scripted
 * io (every vector three ways: at once, per byte, random splits), abandon, and a round trip
 * from tf_tx over a pipe. */
#include "proto_util.h"

/* The receiver is failed with |err|: sticky everywhere, nothing asked, no io call. */
static void assert_rx_failed(tf_rx *rx, tf_err err, int os)
{
    int got_os = -1;
    assert_int_equal(tf_rx_error(rx, &got_os), err);
    assert_int_equal(got_os, os);
    uint8_t *dst = (uint8_t *)&got_os;
    assert_int_equal(tf_rx_next(rx, &dst), 0);
    assert_int_equal(tf_rx_wants_target(rx, NULL), 0);
    tf_msg m = PU_MSG_POISON;
    assert_int_equal(tf_rx_advance(rx, 0, &m), TF_ERROR);
    assert_int_equal(tf_rx_advance(rx, 1, &m), TF_ERROR);
    uint8_t b[8];
    assert_int_equal(tf_rx_set_target(rx, b, sizeof b), err);
    size_t used = 99;
    static const uint8_t in[4] = {0, 0, 0, 0};
    assert_int_equal(tf_rx_feed(rx, in, 4, &used, &m), TF_ERROR);
    assert_int_equal(used, 0);
    pu_io *p = pu_new(in, 4);
    tf_sink sink = {b, sizeof b, NULL, NULL};
    assert_int_equal(tf_rx_try(rx, &p->io, &sink, &m), TF_ERROR);
    assert_int_equal(p->rcalls, 0);
    free(p);
    assert_int_equal(tf_rx_error(rx, NULL), err);
}

/* Script reads that stop exactly at wire position |a| of a frame (reads never cross the prefix
 * boundary: the receiver asks for the prefix, then for the payload). */
static void push_upto(pu_io *p, size_t a)
{
    if (a == 0)
        return;
    pu_rpush(p, PU_BYTES(a < 4 ? a : 4));
    if (a > 4)
        pu_rpush(p, PU_BYTES(a - 4));
}

static void test_tf_rx_init_wants_prefix(void **state)
{
    (void)state;
    tf_rx rx;
    tf_rx_init(&rx, 10);
    uint8_t *dst = NULL;
    assert_int_equal(tf_rx_next(&rx, &dst), 4);
    assert_non_null(dst);
    size_t len = 77;
    assert_int_equal(tf_rx_wants_target(&rx, &len), 0);
    assert_int_equal(len, 77);
    assert_int_equal(tf_rx_error(&rx, NULL), TF_OK);
}

/* ---------------------------------------------------------------- vectors, three ways */

static void test_tf_rx_try_single_message_three_ways(void **state)
{
    (void)state;
    uint8_t pay[37], wire[41];
    pu_fill(pay, sizeof pay, 1);
    size_t wl = pu_frame(wire, pay, 37);
    const uint8_t *msgs[] = {pay};
    const size_t lens[] = {37};
    pu_vec v = {wire, wl, 100, 0, 37, msgs, lens, 1, TF_ERR_CLOSED};
    pu_rx_vector(&v);
    v.use_alloc = 1;
    pu_rx_vector(&v);
    v.use_alloc = 0;
    v.span_cap = 1000; /* a larger span is fine */
    pu_rx_vector(&v);
}

static void test_tf_rx_try_zero_length_three_ways(void **state)
{
    (void)state;
    static const uint8_t wire[] = {0, 0, 0, 0, 0, 0, 0, 0};
    static const uint8_t *const msgs[] = {NULL, NULL};
    static const size_t lens[] = {0, 0};
    pu_vec v = {wire, sizeof wire, 0, 0, 0, msgs, lens, 2, TF_ERR_CLOSED};
    pu_rx_vector(&v); /* span of 0 bytes, max_len 0 */
    v.use_alloc = 1;
    pu_rx_vector(&v); /* the alloc hook is never called (checked inside) */
}

/* Several messages back to back (zero-length ones among them), span and alloc. */
static void test_tf_rx_try_back_to_back_three_ways(void **state)
{
    (void)state;
    static const uint32_t L[] = {5, 0, 1, 64, 0, 0, 200, 3, 99, 100};
    uint8_t pays[PU_ARRAY_LEN(L)][200];
    const uint8_t *msgs[PU_ARRAY_LEN(L)];
    size_t lens[PU_ARRAY_LEN(L)];
    uint8_t wire[4096];
    size_t wl = 0;
    for (size_t i = 0; i < PU_ARRAY_LEN(L); i++) {
        pu_fill(pays[i], L[i], (uint32_t)i + 100);
        msgs[i] = pays[i];
        lens[i] = L[i];
        wl += pu_frame(wire + wl, pays[i], L[i]);
    }
    pu_vec v = {wire, wl, 200, 0, 200, msgs, lens, PU_ARRAY_LEN(L), TF_ERR_CLOSED};
    pu_rx_vector(&v);
    v.use_alloc = 1;
    pu_rx_vector(&v);
}

/* Lengths max-1 and max pass; max+1 fails TOO_LARGE after the earlier messages. */
static void test_tf_rx_try_len_around_max_three_ways(void **state)
{
    (void)state;
    uint8_t p49[49], p50[50], p51[51], wire[256];
    pu_fill(p49, 49, 2);
    pu_fill(p50, 50, 3);
    pu_fill(p51, 51, 4);
    size_t wl = pu_frame(wire, p49, 49);
    wl += pu_frame(wire + wl, p50, 50);
    wl += pu_frame(wire + wl, p51, 51);
    const uint8_t *msgs[] = {p49, p50};
    const size_t lens[] = {49, 50};
    pu_vec v = {wire, wl, 50, 0, 50, msgs, lens, 2, TF_ERR_TOO_LARGE};
    pu_rx_vector(&v);
    v.use_alloc = 1;
    pu_rx_vector(&v);
}

/* The peer closes mid-header (1..3 bytes) or mid-payload: TRUNCATED, at every cut. */
static void test_tf_rx_try_truncated_every_cut_three_ways(void **state)
{
    (void)state;
    uint8_t p1[3] = {9, 8, 7}, p2[6], wire[32];
    pu_fill(p2, 6, 5);
    size_t first = pu_frame(wire, p1, 3);
    size_t wl = first + pu_frame(wire + first, p2, 6);
    const uint8_t *msgs[] = {p1};
    const size_t lens[] = {3};
    for (size_t cut = first + 1; cut < wl; cut++) {
        pu_vec v = {wire, cut, 6, 0, 6, msgs, lens, 1, TF_ERR_TRUNCATED};
        pu_rx_vector(&v);
        v.use_alloc = 1;
        pu_rx_vector(&v);
    }
    /* Cut exactly at the boundary: CLOSED. */
    pu_vec v = {wire, first, 6, 0, 6, msgs, lens, 1, TF_ERR_CLOSED};
    pu_rx_vector(&v);
}

/* A large message (over 64 KiB) under the default maximum, followed by a small one. */
static void test_tf_rx_try_large_message_three_ways(void **state)
{
    (void)state;
    enum { BIG = 100000 };
    uint8_t *big = malloc(BIG), *wire = malloc(BIG + 16);
    assert_non_null(big);
    assert_non_null(wire);
    pu_fill(big, BIG, 55);
    size_t wl = pu_frame(wire, big, BIG);
    wl += pu_frame(wire + wl, big, 3);
    const uint8_t *msgs[] = {big, big};
    const size_t lens[] = {BIG, 3};
    pu_vec v = {wire, wl, TF_DEFAULT_MAX_LEN, 1, 0, msgs, lens, 2, TF_ERR_CLOSED};
    pu_rx_vector(&v);
    v.use_alloc = 0;
    v.span_cap = BIG;
    pu_rx_vector(&v);
    free(big);
    free(wire);
}

/* A span one byte too small: BUFFER_TOO_SMALL after the messages that fit. */
static void test_tf_rx_try_span_too_small_three_ways(void **state)
{
    (void)state;
    uint8_t p1[10], p2[11], wire[64];
    pu_fill(p1, 10, 6);
    pu_fill(p2, 11, 7);
    size_t wl = pu_frame(wire, p1, 10);
    wl += pu_frame(wire + wl, p2, 11);
    const uint8_t *msgs[] = {p1};
    const size_t lens[] = {10};
    pu_vec v = {wire, wl, 100, 0, 10, msgs, lens, 1, TF_ERR_BUFFER_TOO_SMALL};
    pu_rx_vector(&v);
}

/* ---------------------------------------------------------------- try: splits and blocking */

/* A read split at every byte position of header and payload; the second read asks exactly for
 * the rest of the current unit. */
static void test_tf_rx_try_split_every_position(void **state)
{
    (void)state;
    uint8_t pay[11], wire[15], span[11];
    pu_fill(pay, 11, 8);
    pu_frame(wire, pay, 11);
    for (size_t a = 1; a < 15; a++) {
        pu_io *p = pu_new(wire, 15);
        push_upto(p, a);
        tf_rx rx;
        tf_rx_init(&rx, 11);
        tf_sink sink = {span, sizeof span, NULL, NULL};
        tf_msg m = PU_MSG_POISON;
        memset(span, 0, sizeof span);
        assert_int_equal(tf_rx_try(&rx, &p->io, &sink, &m), TF_DONE);
        assert_ptr_equal(m.data, span);
        assert_int_equal(m.len, 11);
        assert_memory_equal(span, pay, 11);
        assert_int_equal(p->rlog[0], 4);
        if (a < 4) {
            assert_int_equal(p->rcalls, 3);
            assert_int_equal(p->rlog[1], 4 - a);
            assert_int_equal(p->rlog[2], 11);
        } else if (a == 4) {
            assert_int_equal(p->rcalls, 2);
            assert_int_equal(p->rlog[1], 11);
        } else {
            assert_int_equal(p->rcalls, 3);
            assert_int_equal(p->rlog[1], 11);
            assert_int_equal(p->rlog[2], 15 - a);
        }
        free(p);
    }
}

/* AGAIN at every point, then resumed to completion (alloc mode: still one allocation). */
static void test_tf_rx_try_again_every_point(void **state)
{
    (void)state;
    uint8_t pay[9], wire[13];
    pu_fill(pay, 9, 10);
    pu_frame(wire, pay, 9);
    for (size_t a = 0; a < 13; a++) {
        pu_io *p = pu_new(wire, 13);
        p->rdefault = PU_BYTES(1);
        for (size_t i = 0; i < a; i++)
            pu_rpush(p, PU_BYTES(1));
        pu_rpush(p, PU_AGAIN);
        pu_alloc al = {0};
        tf_sink sink = {NULL, 0, pu_alloc_cb, &al};
        tf_rx rx;
        tf_rx_init(&rx, 9);
        tf_msg m = PU_MSG_POISON;
        assert_int_equal(tf_rx_try(&rx, &p->io, &sink, &m), TF_AGAIN);
        assert_int_equal(p->src_pos, a);
        assert_int_equal(al.calls, a >= 4 ? 1 : 0);
        assert_int_equal(tf_rx_error(&rx, NULL), TF_OK);
        assert_int_equal(tf_rx_try(&rx, &p->io, &sink, &m), TF_DONE);
        assert_int_equal(al.calls, 1);
        assert_int_equal(al.last_len, 9);
        assert_ptr_equal(m.data, al.last);
        assert_int_equal(m.len, 9);
        assert_memory_equal(m.data, pay, 9);
        free(m.data);
        free(p);
    }
}

static void test_tf_rx_try_intr_retried(void **state)
{
    (void)state;
    uint8_t pay[3] = {1, 2, 3}, wire[7], span[3];
    pu_frame(wire, pay, 3);
    pu_io *p = pu_new(wire, 7);
    for (int i = 0; i < 7; i++) {
        pu_rpush(p, PU_INTR);
        pu_rpush(p, PU_INTR);
        pu_rpush(p, PU_BYTES(1));
    }
    tf_sink sink = {span, 3, NULL, NULL};
    tf_rx rx;
    tf_rx_init(&rx, 3);
    tf_msg m = PU_MSG_POISON;
    assert_int_equal(tf_rx_try(&rx, &p->io, &sink, &m), TF_DONE);
    assert_int_equal(p->rcalls, 21);
    assert_memory_equal(span, pay, 3);
    free(p);
}

/* TF_MAX_INTR consecutive interruptions give AGAIN (one fewer does not); the count restarts
 * when bytes move. */
static void test_tf_rx_try_max_intr_gives_again(void **state)
{
    (void)state;
    uint8_t pay[3] = {1, 2, 3}, wire[7], span[3];
    pu_frame(wire, pay, 3);
    pu_io *p = pu_new(wire, 7);
    pu_rpush(p, PU_BYTES(5));
    for (unsigned i = 0; i < TF_MAX_INTR; i++)
        pu_rpush(p, PU_INTR);
    tf_sink sink = {span, 3, NULL, NULL};
    tf_rx rx;
    tf_rx_init(&rx, 3);
    tf_msg m = PU_MSG_POISON;
    assert_int_equal(tf_rx_try(&rx, &p->io, &sink, &m), TF_AGAIN);
    assert_int_equal(p->rcalls, 1 + TF_MAX_INTR);
    assert_int_equal(tf_rx_try(&rx, &p->io, &sink, &m), TF_DONE);
    assert_memory_equal(span, pay, 3);
    free(p);

    p = pu_new(wire, 7);
    for (int b = 0; b < 7; b++) {
        for (unsigned i = 0; i + 1 < TF_MAX_INTR; i++)
            pu_rpush(p, PU_INTR);
        pu_rpush(p, PU_BYTES(1));
    }
    tf_rx_init(&rx, 3);
    assert_int_equal(tf_rx_try(&rx, &p->io, &sink, &m), TF_DONE);
    assert_int_equal(p->rcalls, 7 * TF_MAX_INTR);
    free(p);
}

/* ---------------------------------------------------------------- try: errors */

/* EOF before a message: CLOSED; after 1..3 prefix bytes or inside the payload: TRUNCATED.
 * In alloc mode the allocated target comes back through tf_rx_abandon. */
static void test_tf_rx_try_peer_closed_every_point(void **state)
{
    (void)state;
    uint8_t pay[5] = {5, 4, 3, 2, 1}, wire[9];
    pu_frame(wire, pay, 5);
    for (size_t cut = 0; cut < 9; cut++) {
        pu_io *p = pu_new(wire, cut);
        p->rdefault = PU_BYTES(1);
        pu_alloc al = {0};
        tf_sink sink = {NULL, 0, pu_alloc_cb, &al};
        tf_rx rx;
        tf_rx_init(&rx, 5);
        tf_msg m = PU_MSG_POISON;
        assert_int_equal(tf_rx_try(&rx, &p->io, &sink, &m), TF_ERROR);
        assert_int_equal(p->rcalls, cut + 1);
        assert_rx_failed(&rx, cut == 0 ? TF_ERR_CLOSED : TF_ERR_TRUNCATED, 0);
        uint8_t *t = tf_rx_abandon(&rx);
        if (cut >= 4) {
            assert_int_equal(al.calls, 1);
            assert_ptr_equal(t, al.last);
            assert_memory_equal(t, pay, cut - 4); /* what arrived */
            free(t);
        } else {
            assert_int_equal(al.calls, 0);
            assert_null(t);
        }
        assert_null(tf_rx_abandon(&rx)); /* forgotten */
        assert_int_equal(tf_rx_error(&rx, NULL), cut == 0 ? TF_ERR_CLOSED : TF_ERR_TRUNCATED);
        free(p);
    }
}

/* TF_IO_FAIL keeps the OS error, in the prefix and in the payload. */
static void test_tf_rx_try_io_fail_keeps_os_error(void **state)
{
    (void)state;
    uint8_t pay[5] = {5, 4, 3, 2, 1}, wire[9], span[5];
    pu_frame(wire, pay, 5);
    for (size_t a = 0; a < 9; a++) {
        pu_io *p = pu_new(wire, 9);
        push_upto(p, a);
        pu_rpush(p, PU_OSFAIL(100 + (int)a));
        tf_sink sink = {span, 5, NULL, NULL};
        tf_rx rx;
        tf_rx_init(&rx, 5);
        tf_msg m = PU_MSG_POISON;
        assert_int_equal(tf_rx_try(&rx, &p->io, &sink, &m), TF_ERROR);
        assert_rx_failed(&rx, TF_ERR_IO, 100 + (int)a);
        assert_ptr_equal(tf_rx_abandon(&rx), a >= 4 ? span : NULL);
        free(p);
    }
}

/* The io breaks its contract: more than asked at every position, unknown negative answers. */
static void test_tf_rx_try_io_breaks_contract(void **state)
{
    (void)state;
    uint8_t pay[5] = {5, 4, 3, 2, 1}, wire[9], span[5];
    pu_frame(wire, pay, 5);
    for (size_t a = 0; a < 9; a++) {
        pu_io *p = pu_new(wire, 9);
        push_upto(p, a);
        size_t asked = a < 4 ? 4 - a : 9 - a;
        pu_rpush(p, PU_RAWV(asked + 1));
        tf_sink sink = {span, 5, NULL, NULL};
        tf_rx rx;
        tf_rx_init(&rx, 5);
        tf_msg m = PU_MSG_POISON;
        assert_int_equal(tf_rx_try(&rx, &p->io, &sink, &m), TF_ERROR);
        assert_int_equal(p->rlog[p->rcalls - 1], asked);
        assert_rx_failed(&rx, TF_ERR_INVALID_ARGUMENT, 0);
        free(p);
    }
    static const long bad[] = {-4, -7, -1000};
    for (size_t i = 0; i < PU_ARRAY_LEN(bad); i++) {
        pu_io *p = pu_new(wire, 9);
        push_upto(p, 6);
        pu_rpush(p, PU_RAWV(bad[i]));
        tf_sink sink = {span, 5, NULL, NULL};
        tf_rx rx;
        tf_rx_init(&rx, 5);
        tf_msg m = PU_MSG_POISON;
        assert_int_equal(tf_rx_try(&rx, &p->io, &sink, &m), TF_ERROR);
        assert_rx_failed(&rx, TF_ERR_INVALID_ARGUMENT, 0);
        free(p);
    }
}

/* Span too small by one: BUFFER_TOO_SMALL before any payload byte is asked for; the buffer is
 * untouched. */
static void test_tf_rx_try_span_too_small_by_one(void **state)
{
    (void)state;
    uint8_t pay[16], wire[20], span[15], ref[15];
    pu_fill(pay, 16, 13);
    pu_frame(wire, pay, 16);
    memset(span, 0xA5, sizeof span);
    memcpy(ref, span, sizeof ref);
    pu_io *p = pu_new(wire, 20);
    tf_sink sink = {span, 15, NULL, NULL};
    tf_rx rx;
    tf_rx_init(&rx, 100);
    tf_msg m = PU_MSG_POISON;
    assert_int_equal(tf_rx_try(&rx, &p->io, &sink, &m), TF_ERROR);
    assert_int_equal(p->rcalls, 1);
    assert_int_equal(p->rlog[0], 4); /* the prefix only */
    assert_int_equal(p->src_pos, 4);
    assert_memory_equal(span, ref, sizeof span);
    assert_rx_failed(&rx, TF_ERR_BUFFER_TOO_SMALL, 0);
    assert_null(tf_rx_abandon(&rx));
    assert_int_equal(tf_rx_error(&rx, NULL), TF_ERR_BUFFER_TOO_SMALL);
    free(p);
}

/* Length max+1: TOO_LARGE, the alloc hook is never called, no payload byte is read. */
static void test_tf_rx_try_too_large_is_sticky(void **state)
{
    (void)state;
    static const uint8_t wire[] = {0, 0, 0, 11, 1, 2, 3};
    for (int mode = 0; mode < 2; mode++) {
        pu_io *p = pu_new(wire, sizeof wire);
        if (mode)
            p->rdefault = PU_BYTES(1);
        pu_alloc al = {0};
        tf_sink sink = {NULL, 0, pu_alloc_cb, &al};
        tf_rx rx;
        tf_rx_init(&rx, 10);
        tf_msg m = PU_MSG_POISON;
        assert_int_equal(tf_rx_try(&rx, &p->io, &sink, &m), TF_ERROR);
        assert_int_equal(p->src_pos, 4);
        assert_int_equal(al.calls, 0);
        assert_rx_failed(&rx, TF_ERR_TOO_LARGE, 0);
        assert_int_equal(al.calls, 0);
        free(p);
    }
}

/* The alloc hook: called exactly once per non-empty message with the exact length; a failing
 * hook gives NOMEM before any payload byte is read. */
static void test_tf_rx_try_alloc_hook(void **state)
{
    (void)state;
    uint8_t pay[30], wire[64];
    pu_fill(pay, 30, 14);
    size_t wl = pu_frame(wire, pay, 0);
    wl += pu_frame(wire + wl, pay, 30);
    pu_io *p = pu_new(wire, wl);
    pu_alloc al = {0};
    tf_sink sink = {NULL, 0, pu_alloc_cb, &al};
    tf_rx rx;
    tf_rx_init(&rx, 30);
    tf_msg m = PU_MSG_POISON;
    assert_int_equal(tf_rx_try(&rx, &p->io, &sink, &m), TF_DONE);
    assert_null(m.data);
    assert_int_equal(m.len, 0);
    assert_int_equal(al.calls, 0);
    assert_int_equal(tf_rx_try(&rx, &p->io, &sink, &m), TF_DONE);
    assert_int_equal(al.calls, 1);
    assert_int_equal(al.last_len, 30);
    assert_ptr_equal(m.data, al.last);
    assert_memory_equal(m.data, pay, 30);
    free(m.data);
    free(p);

    /* Failing hook. */
    p = pu_new(wire + 4, wl - 4);
    al = (pu_alloc){0, 0, 1, NULL};
    tf_rx_init(&rx, 30);
    assert_int_equal(tf_rx_try(&rx, &p->io, &sink, &m), TF_ERROR);
    assert_int_equal(al.calls, 1);
    assert_int_equal(al.last_len, 30);
    assert_int_equal(p->src_pos, 4);
    assert_rx_failed(&rx, TF_ERR_NOMEM, 0);
    assert_int_equal(al.calls, 1);
    assert_null(tf_rx_abandon(&rx));
    free(p);
}

/* 0xFFFFFFFF with max 0xFFFFFFFF: accepted, a target of that size is wanted (not allocated:
 * the hook fails), and with max one less it is TOO_LARGE. */
static void test_tf_rx_try_len_0xffffffff(void **state)
{
    (void)state;
    static const uint8_t wire[] = {0xFF, 0xFF, 0xFF, 0xFF, 1};
    pu_io *p = pu_new(wire, sizeof wire);
    pu_alloc al = {0, 0, 1, NULL};
    tf_sink sink = {NULL, 0, pu_alloc_cb, &al};
    tf_rx rx;
    tf_rx_init(&rx, 0xFFFFFFFFu);
    tf_msg m = PU_MSG_POISON;
    assert_int_equal(tf_rx_try(&rx, &p->io, &sink, &m), TF_ERROR);
    assert_int_equal(al.calls, 1);
    assert_int_equal(al.last_len, 0xFFFFFFFFu);
    assert_int_equal(p->src_pos, 4);
    assert_rx_failed(&rx, TF_ERR_NOMEM, 0);
    free(p);

    /* Span mode, cap one short: BUFFER_TOO_SMALL, nothing written through the dummy pointer. */
    p = pu_new(wire, sizeof wire);
    uint8_t dummy = 0x5A;
    tf_sink span = {&dummy, 0xFFFFFFFEu, NULL, NULL};
    tf_rx_init(&rx, 0xFFFFFFFFu);
    assert_int_equal(tf_rx_try(&rx, &p->io, &span, &m), TF_ERROR);
    assert_int_equal(p->src_pos, 4);
    assert_int_equal(dummy, 0x5A);
    assert_rx_failed(&rx, TF_ERR_BUFFER_TOO_SMALL, 0);
    free(p);

    /* Sans-I/O: the wanted length. */
    tf_rx_init(&rx, 0xFFFFFFFFu);
    size_t used = 0, len = 0;
    assert_int_equal(tf_rx_feed(&rx, wire, sizeof wire, &used, &m), TF_AGAIN);
    assert_int_equal(used, 4);
    assert_int_equal(tf_rx_wants_target(&rx, &len), 1);
    assert_int_equal(len, 0xFFFFFFFFu);
    uint8_t *dst = &dummy;
    assert_int_equal(tf_rx_next(&rx, &dst), 0);

    tf_rx_init(&rx, 0xFFFFFFFEu);
    assert_int_equal(tf_rx_feed(&rx, wire, sizeof wire, &used, &m), TF_ERROR);
    assert_int_equal(used, 4);
    assert_rx_failed(&rx, TF_ERR_TOO_LARGE, 0);
}

/* Lengths of 2^31 and above (hand-written prefixes) against small and default maxima, through
 * advance (at once and per byte), feed and try (alloc mode): TOO_LARGE as the 4th byte lands,
 * no target wanted, the allocator never asked, nothing read past the prefix. A signed
 * comparison of length and maximum would let these through. */
static const struct {
    uint32_t len;
    uint8_t hdr[4];
} big_lens[] = {
    {0x80000000u, {0x80, 0x00, 0x00, 0x00}},
    {0x80000001u, {0x80, 0x00, 0x00, 0x01}},
    {0xFFFFFFF0u, {0xFF, 0xFF, 0xFF, 0xF0}},
    {0xFFFFFFFFu, {0xFF, 0xFF, 0xFF, 0xFF}},
};
static const uint32_t small_maxes[] = {0, 1, 16, TF_DEFAULT_MAX_LEN, 0x7FFFFFFFu};

static void test_tf_rx_len_ge_2_31_too_large(void **state)
{
    (void)state;
    for (size_t i = 0; i < PU_ARRAY_LEN(big_lens); i++) {
        uint8_t wire[6];
        memcpy(wire, big_lens[i].hdr, 4);
        wire[4] = 'x';
        wire[5] = 'y';
        for (size_t k = 0; k < PU_ARRAY_LEN(small_maxes); k++) {
            uint32_t max = small_maxes[k];
            /* advance, the prefix per byte and at once */
            for (int per_byte = 0; per_byte < 2; per_byte++) {
                tf_rx rx;
                tf_rx_init(&rx, max);
                size_t at = 0;
                tf_step st = TF_AGAIN;
                while (at < 4) {
                    uint8_t *dst;
                    size_t want = tf_rx_next(&rx, &dst);
                    assert_int_equal(want, 4 - at);
                    size_t n = per_byte ? 1 : want;
                    memcpy(dst, wire + at, n);
                    at += n;
                    tf_msg m = PU_MSG_POISON;
                    st = tf_rx_advance(&rx, n, &m);
                    if (at < 4)
                        assert_int_equal(st, TF_AGAIN);
                }
                assert_int_equal(st, TF_ERROR);
                assert_rx_failed(&rx, TF_ERR_TOO_LARGE, 0);
            }
            /* feed */
            tf_rx rx;
            tf_rx_init(&rx, max);
            size_t used = 99;
            tf_msg m = PU_MSG_POISON;
            assert_int_equal(tf_rx_feed(&rx, wire, sizeof wire, &used, &m), TF_ERROR);
            assert_int_equal(used, 4);
            assert_rx_failed(&rx, TF_ERR_TOO_LARGE, 0);
            /* try, alloc mode and span mode */
            for (int alloc = 0; alloc < 2; alloc++) {
                pu_io *p = pu_new(wire, sizeof wire);
                pu_alloc al = {0};
                uint8_t span[8];
                tf_sink sink = {alloc ? NULL : span, sizeof span, alloc ? pu_alloc_cb : NULL, &al};
                tf_rx_init(&rx, max);
                assert_int_equal(tf_rx_try(&rx, &p->io, &sink, &m), TF_ERROR);
                assert_int_equal(al.calls, 0);
                assert_int_equal(p->src_pos, 4);
                assert_rx_failed(&rx, TF_ERR_TOO_LARGE, 0);
                free(p);
            }
        }
        /* Allowed by max = len and by max = 0xFFFFFFFF: the target of that length is wanted. */
        const uint32_t ok_max[] = {big_lens[i].len, 0xFFFFFFFFu};
        for (size_t k = 0; k < 2; k++) {
            tf_rx rx;
            tf_rx_init(&rx, ok_max[k]);
            size_t used = 99, len = 0;
            tf_msg m = PU_MSG_POISON;
            assert_int_equal(tf_rx_feed(&rx, wire, sizeof wire, &used, &m), TF_AGAIN);
            assert_int_equal(used, 4);
            assert_int_equal(tf_rx_wants_target(&rx, &len), 1);
            assert_int_equal(len, big_lens[i].len);
        }
        /* and refused by max = len - 1 */
        tf_rx rx;
        tf_rx_init(&rx, big_lens[i].len - 1);
        size_t used = 99;
        tf_msg m = PU_MSG_POISON;
        assert_int_equal(tf_rx_feed(&rx, wire, sizeof wire, &used, &m), TF_ERROR);
        assert_rx_failed(&rx, TF_ERR_TOO_LARGE, 0);
    }
}

/* Small lengths against maxima of 2^31 and above are accepted (as int32_t such a maximum is
 * negative and would refuse everything). Through tf_rx_try, three ways. */
static void test_tf_rx_try_small_len_big_max_three_ways(void **state)
{
    (void)state;
    static const uint32_t maxes[] = {0x80000000u, 0xFFFFFFF0u, 0xFFFFFFFEu, 0xFFFFFFFFu};
    uint8_t p1[3] = {1, 2, 3}, wire[4 + 3 + 4];
    size_t wl = pu_frame(wire, p1, 3);
    wl += pu_frame(wire + wl, NULL, 0);
    const uint8_t *msgs[] = {p1, NULL};
    const size_t lens[] = {3, 0};
    for (size_t k = 0; k < PU_ARRAY_LEN(maxes); k++) {
        pu_vec v = {wire, wl, maxes[k], (int)(k & 1), 16, msgs, lens, 2, TF_ERR_CLOSED};
        pu_rx_vector(&v);
    }
}

/* ---------------------------------------------------------------- sans-I/O */

/* Prefix and payload through next/advance at every split; TOO_LARGE as the 4th byte lands. */
static void test_tf_rx_advance_split_every_position(void **state)
{
    (void)state;
    uint8_t pay[8], wire[12], tgt[8];
    pu_fill(pay, 8, 15);
    pu_frame(wire, pay, 8);
    for (size_t a = 0; a <= 12; a++) {
        tf_rx rx;
        tf_rx_init(&rx, 8);
        size_t off = 0;
        size_t parts[2] = {a, 12 - a};
        int done = 0;
        for (int k = 0; k < 2; k++) {
            size_t left = parts[k];
            while (left) {
                uint8_t *dst;
                size_t want = tf_rx_next(&rx, &dst);
                if (want == 0) {
                    size_t len = 0;
                    assert_int_equal(tf_rx_wants_target(&rx, &len), 1);
                    assert_int_equal(len, 8);
                    assert_int_equal(tf_rx_set_target(&rx, tgt, sizeof tgt), TF_OK);
                    continue;
                }
                size_t n = want < left ? want : left;
                memcpy(dst, wire + off, n);
                off += n;
                left -= n;
                tf_msg m = PU_MSG_POISON;
                tf_step st = tf_rx_advance(&rx, n, &m);
                if (off == 12) {
                    assert_int_equal(st, TF_DONE);
                    assert_ptr_equal(m.data, tgt);
                    assert_int_equal(m.len, 8);
                    done = 1;
                } else {
                    assert_int_equal(st, TF_AGAIN);
                }
            }
        }
        assert_true(done);
        assert_memory_equal(tgt, pay, 8);
        uint8_t *dst;
        assert_int_equal(tf_rx_next(&rx, &dst), 4); /* waiting for the next prefix */
    }
}

/* Lengths max-1, max, max+1 through advance: only max+1 fails, and it fails on the 4th byte. */
static void test_tf_rx_advance_len_around_max(void **state)
{
    (void)state;
    static const uint32_t maxes[] = {1, 100, TF_DEFAULT_MAX_LEN, 0xFFFFFFFEu};
    for (size_t i = 0; i < PU_ARRAY_LEN(maxes); i++) {
        for (uint32_t d = 0; d < 3; d++) {
            uint32_t len = maxes[i] - 1 + d;
            uint8_t hdr[4];
            pu_be32(hdr, len);
            tf_rx rx;
            tf_rx_init(&rx, maxes[i]);
            for (size_t b = 0; b < 4; b++) {
                uint8_t *dst;
                assert_int_equal(tf_rx_next(&rx, &dst), 4 - b);
                *dst = hdr[b];
                tf_msg m = PU_MSG_POISON;
                tf_step st = tf_rx_advance(&rx, 1, &m);
                if (b < 3)
                    assert_int_equal(st, TF_AGAIN);
                else if (d == 2)
                    assert_int_equal(st, TF_ERROR);
                else
                    assert_int_equal(st, len == 0 ? TF_DONE : TF_AGAIN);
            }
            size_t want = 0;
            if (d == 2) {
                assert_rx_failed(&rx, TF_ERR_TOO_LARGE, 0);
            } else if (len == 0) {
                assert_int_equal(tf_rx_wants_target(&rx, &want), 0);
            } else {
                assert_int_equal(tf_rx_wants_target(&rx, &want), 1);
                assert_int_equal(want, len);
                uint8_t *dst = (uint8_t *)&want;
                assert_int_equal(tf_rx_next(&rx, &dst), 0);
            }
        }
    }
}

/* advance(n) beyond what was asked, in the prefix, while a target is wanted and in the
 * payload: INVALID_ARGUMENT, sticky. */
static void test_tf_rx_advance_too_many_is_sticky(void **state)
{
    (void)state;
    uint8_t pay[5] = {1, 2, 3, 4, 5}, wire[9], tgt[5];
    pu_frame(wire, pay, 5);
    for (size_t a = 0; a <= 9; a++) {
        tf_rx rx;
        tf_rx_init(&rx, 5);
        size_t used = 0;
        tf_msg m = PU_MSG_POISON;
        if (a) {
            tf_step st = tf_rx_feed(&rx, wire, a, &used, &m);
            assert_int_equal(st, TF_AGAIN); /* a == 9: stops wanting the target */
            assert_int_equal(used, a < 4 ? a : 4);
        }
        if (a > 4) {
            assert_int_equal(tf_rx_set_target(&rx, tgt, 5), TF_OK);
            if (a < 9) {
                assert_int_equal(tf_rx_feed(&rx, wire + 4, a - 4, &used, &m), TF_AGAIN);
                assert_int_equal(used, a - 4);
            } else {
                /* a == 9: the message completed; advance a fresh prefix instead. */
                assert_int_equal(tf_rx_feed(&rx, wire + 4, 5, &used, &m), TF_DONE);
                assert_int_equal(used, 5);
            }
        }
        if (a == 4) {
            /* Target wanted: nothing may be advanced. */
            assert_int_equal(tf_rx_advance(&rx, 0, &m), TF_AGAIN);
            assert_int_equal(tf_rx_advance(&rx, 1, &m), TF_ERROR);
            assert_rx_failed(&rx, TF_ERR_INVALID_ARGUMENT, 0);
            continue;
        }
        assert_int_equal(tf_rx_error(&rx, NULL), TF_OK);
        uint8_t *dst;
        size_t want = tf_rx_next(&rx, &dst);
        assert_true(want > 0);
        assert_int_equal(tf_rx_advance(&rx, want + 1, &m), TF_ERROR);
        assert_rx_failed(&rx, TF_ERR_INVALID_ARGUMENT, 0);
    }
}

/* set_target when no target is wanted: BAD_STATE, not sticky; NULL target: NOMEM, sticky. */
static void test_tf_rx_set_target_bad_state(void **state)
{
    (void)state;
    uint8_t pay[3] = {1, 2, 3}, wire[7], tgt[3];
    pu_frame(wire, pay, 3);
    tf_rx rx;
    tf_rx_init(&rx, 3);
    assert_int_equal(tf_rx_set_target(&rx, tgt, 3), TF_ERR_BAD_STATE); /* at a boundary */
    size_t used;
    tf_msg m = PU_MSG_POISON;
    assert_int_equal(tf_rx_feed(&rx, wire, 2, &used, &m), TF_AGAIN);
    assert_int_equal(tf_rx_set_target(&rx, tgt, 3), TF_ERR_BAD_STATE); /* mid-prefix */
    assert_int_equal(tf_rx_feed(&rx, wire + 2, 3, &used, &m), TF_AGAIN);
    assert_int_equal(used, 2); /* stops when the target is wanted */
    assert_int_equal(tf_rx_set_target(&rx, tgt, 3), TF_OK);
    assert_int_equal(tf_rx_set_target(&rx, tgt, 3), TF_ERR_BAD_STATE); /* mid-payload */
    assert_int_equal(tf_rx_error(&rx, NULL), TF_OK);
    assert_int_equal(tf_rx_feed(&rx, wire + 4, 3, &used, &m), TF_DONE);
    assert_int_equal(used, 3);
    assert_ptr_equal(m.data, tgt);
    assert_memory_equal(tgt, pay, 3);
    assert_int_equal(tf_rx_set_target(&rx, tgt, 3), TF_ERR_BAD_STATE); /* after DONE */
    assert_int_equal(tf_rx_error(&rx, NULL), TF_OK);

    /* A bigger target is fine; a NULL one is NOMEM (sticky); a smaller one BUFFER_TOO_SMALL. */
    uint8_t big[10];
    tf_rx_init(&rx, 3);
    assert_int_equal(tf_rx_feed(&rx, wire, 7, &used, &m), TF_AGAIN);
    assert_int_equal(tf_rx_set_target(&rx, big, sizeof big), TF_OK);
    assert_int_equal(tf_rx_feed(&rx, wire + 4, 3, &used, &m), TF_DONE);
    assert_ptr_equal(m.data, big);
    assert_int_equal(m.len, 3);

    tf_rx_init(&rx, 3);
    assert_int_equal(tf_rx_feed(&rx, wire, 7, &used, &m), TF_AGAIN);
    assert_int_equal(tf_rx_set_target(&rx, NULL, 3), TF_ERR_NOMEM);
    assert_rx_failed(&rx, TF_ERR_NOMEM, 0);

    tf_rx_init(&rx, 3);
    assert_int_equal(tf_rx_feed(&rx, wire, 7, &used, &m), TF_AGAIN);
    assert_int_equal(tf_rx_set_target(&rx, tgt, 2), TF_ERR_BUFFER_TOO_SMALL);
    assert_rx_failed(&rx, TF_ERR_BUFFER_TOO_SMALL, 0);
}

/* Several messages back to back in one buffer: feed stops at each DONE with *used right. */
static void test_tf_rx_feed_back_to_back(void **state)
{
    (void)state;
    static const uint32_t L[] = {0, 3, 0, 1, 7};
    uint8_t buf[128], pays[5][7];
    size_t ends[5], wl = 0;
    for (size_t i = 0; i < 5; i++) {
        pu_fill(pays[i], L[i], (uint32_t)i + 20);
        wl += pu_frame(buf + wl, pays[i], L[i]);
        ends[i] = wl;
    }
    tf_rx rx;
    tf_rx_init(&rx, 7);
    uint8_t tgt[7];
    size_t pos = 0, k = 0;
    while (pos < wl) {
        size_t used = 999;
        tf_msg m = PU_MSG_POISON;
        tf_step st = tf_rx_feed(&rx, buf + pos, wl - pos, &used, &m);
        pos += used;
        if (st == TF_DONE) {
            assert_int_equal(pos, ends[k]);
            assert_int_equal(m.len, L[k]);
            if (L[k]) {
                assert_ptr_equal(m.data, tgt);
                assert_memory_equal(tgt, pays[k], L[k]);
            } else {
                assert_null(m.data);
            }
            k++;
        } else {
            assert_int_equal(st, TF_AGAIN);
            size_t len = 0;
            assert_int_equal(tf_rx_wants_target(&rx, &len), 1);
            assert_int_equal(len, L[k]);
            assert_int_equal(pos, ends[k] - L[k]); /* stopped right after the prefix */
            assert_int_equal(tf_rx_set_target(&rx, tgt, sizeof tgt), TF_OK);
        }
    }
    assert_int_equal(k, 5);
    /* Empty input: AGAIN, nothing used. */
    size_t used = 5;
    tf_msg m;
    assert_int_equal(tf_rx_feed(&rx, buf, 0, &used, &m), TF_AGAIN);
    assert_int_equal(used, 0);
}

/* feed with an oversized prefix: ERROR TOO_LARGE with *used counting the prefix only. */
static void test_tf_rx_feed_too_large(void **state)
{
    (void)state;
    static const uint8_t in[] = {0, 0, 0, 1, 0xAA, 0, 0, 0, 9, 1, 2};
    tf_rx rx;
    tf_rx_init(&rx, 8);
    size_t used = 0;
    tf_msg m = PU_MSG_POISON;
    uint8_t tgt[8];
    assert_int_equal(tf_rx_feed(&rx, in, sizeof in, &used, &m), TF_AGAIN);
    assert_int_equal(used, 4);
    assert_int_equal(tf_rx_set_target(&rx, tgt, 8), TF_OK);
    assert_int_equal(tf_rx_feed(&rx, in + 4, sizeof in - 4, &used, &m), TF_DONE);
    assert_int_equal(used, 1);
    assert_int_equal(tgt[0], 0xAA);
    assert_int_equal(tf_rx_feed(&rx, in + 5, sizeof in - 5, &used, &m), TF_ERROR);
    assert_int_equal(used, 4);
    assert_rx_failed(&rx, TF_ERR_TOO_LARGE, 0);
}

/* tf_rx_abandon: NULL and BAD_STATE on a fresh receiver; the span or the allocation
 * mid-payload; the earlier reason kept after an error. */
static void test_tf_rx_abandon(void **state)
{
    (void)state;
    tf_rx rx;
    tf_rx_init(&rx, 8);
    assert_null(tf_rx_abandon(&rx));
    assert_rx_failed(&rx, TF_ERR_BAD_STATE, 0);

    static const uint8_t in[] = {0, 0, 0, 4, 1, 2};
    uint8_t tgt[4];
    tf_rx_init(&rx, 8);
    size_t used;
    tf_msg m;
    assert_int_equal(tf_rx_feed(&rx, in, sizeof in, &used, &m), TF_AGAIN);
    assert_null(tf_rx_abandon(&rx)); /* target wanted, none given yet */
    assert_rx_failed(&rx, TF_ERR_BAD_STATE, 0);

    tf_rx_init(&rx, 8);
    assert_int_equal(tf_rx_feed(&rx, in, sizeof in, &used, &m), TF_AGAIN);
    assert_int_equal(tf_rx_set_target(&rx, tgt, 4), TF_OK);
    assert_int_equal(tf_rx_feed(&rx, in + 4, 2, &used, &m), TF_AGAIN);
    assert_ptr_equal(tf_rx_abandon(&rx), tgt);
    assert_null(tf_rx_abandon(&rx));
    assert_rx_failed(&rx, TF_ERR_BAD_STATE, 0);

    /* Mid-payload error in alloc mode (IO failure): the allocation comes back. */
    pu_io *p = pu_new(in, sizeof in);
    push_upto(p, 5);
    pu_rpush(p, PU_OSFAIL(5));
    pu_alloc al = {0};
    tf_sink sink = {NULL, 0, pu_alloc_cb, &al};
    tf_rx_init(&rx, 8);
    assert_int_equal(tf_rx_try(&rx, &p->io, &sink, &m), TF_ERROR);
    uint8_t *t = tf_rx_abandon(&rx);
    assert_non_null(t);
    assert_ptr_equal(t, al.last);
    assert_int_equal(t[0], 1);
    free(t);
    assert_rx_failed(&rx, TF_ERR_IO, 5);
    free(p);

    /* After a completed message the target belongs to the caller: abandon returns NULL. */
    static const uint8_t one[] = {0, 0, 0, 1, 9};
    tf_rx_init(&rx, 8);
    assert_int_equal(tf_rx_feed(&rx, one, 4, &used, &m), TF_AGAIN);
    assert_int_equal(tf_rx_set_target(&rx, tgt, 4), TF_OK);
    assert_int_equal(tf_rx_feed(&rx, one + 4, 1, &used, &m), TF_DONE);
    assert_null(tf_rx_abandon(&rx));
}

/* ---------------------------------------------------------------- round trip */

/* tf_tx over a pipe with random partial I/O into tf_rx: many messages of assorted sizes. */
static void test_tf_rx_try_roundtrip_from_tx(void **state)
{
    (void)state;
    enum { N = 300, MAXL = 3000 };
    static uint8_t pay[MAXL], span[MAXL];
    pu_fill(pay, MAXL, 77);
    for (uint32_t seed = 1; seed <= 6; seed++) {
        int use_alloc = seed % 2 == 0;
        pu_pipe pipe;
        pu_pipe_init(&pipe, seed * 7919u);
        uint32_t s = seed;
        uint32_t lens[N];
        for (int i = 0; i < N; i++) {
            uint32_t r = pu_rand(&s) % 10u;
            lens[i] = r == 0 ? 0 : r == 1 ? MAXL : r < 6 ? pu_rand(&s) % 16u : pu_rand(&s) % MAXL;
        }
        tf_tx tx;
        tf_rx rx;
        tf_tx_init(&tx, MAXL);
        tf_rx_init(&rx, MAXL);
        pu_alloc al = {0};
        tf_sink sink = {span, MAXL, use_alloc ? pu_alloc_cb : NULL, &al};
        int sent = 0, got = 0, idle = 1;
        size_t bytes = 0;
        for (long it = 0; it < 10000000 && got < N; it++) {
            if (idle && sent < N) {
                uint32_t off = lens[sent] ? (uint32_t)sent % (MAXL - lens[sent] + 1) : 0;
                assert_int_equal(tf_tx_begin(&tx, pay + off, lens[sent]), TF_OK);
                bytes += 4 + lens[sent];
                idle = 0;
            }
            if (!idle) {
                tf_step st = tf_tx_try(&tx, &pipe.w_io);
                assert_int_not_equal(st, TF_ERROR);
                if (st == TF_DONE) {
                    idle = 1;
                    sent++;
                }
            }
            tf_msg m = PU_MSG_POISON;
            tf_step st = tf_rx_try(&rx, &pipe.r_io, &sink, &m);
            assert_int_not_equal(st, TF_ERROR);
            if (st == TF_DONE) {
                uint32_t off = lens[got] ? (uint32_t)got % (MAXL - lens[got] + 1) : 0;
                assert_int_equal(m.len, lens[got]);
                if (m.len) {
                    assert_memory_equal(m.data, pay + off, m.len);
                    assert_ptr_equal(m.data, use_alloc ? al.last : span);
                    if (use_alloc)
                        free(m.data);
                } else {
                    assert_null(m.data);
                }
                got++;
            }
        }
        assert_int_equal(sent, N);
        assert_int_equal(got, N);
        assert_int_equal(pipe.moved_w, bytes);
        assert_int_equal(pipe.moved_r, bytes);
        if (use_alloc) {
            size_t nonempty = 0;
            for (int i = 0; i < N; i++)
                nonempty += lens[i] != 0;
            assert_int_equal(al.calls, nonempty);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tf_rx_init_wants_prefix),
        cmocka_unit_test(test_tf_rx_try_single_message_three_ways),
        cmocka_unit_test(test_tf_rx_try_zero_length_three_ways),
        cmocka_unit_test(test_tf_rx_try_back_to_back_three_ways),
        cmocka_unit_test(test_tf_rx_try_len_around_max_three_ways),
        cmocka_unit_test(test_tf_rx_try_truncated_every_cut_three_ways),
        cmocka_unit_test(test_tf_rx_try_span_too_small_three_ways),
        cmocka_unit_test(test_tf_rx_try_large_message_three_ways),
        cmocka_unit_test(test_tf_rx_try_split_every_position),
        cmocka_unit_test(test_tf_rx_try_again_every_point),
        cmocka_unit_test(test_tf_rx_try_intr_retried),
        cmocka_unit_test(test_tf_rx_try_max_intr_gives_again),
        cmocka_unit_test(test_tf_rx_try_peer_closed_every_point),
        cmocka_unit_test(test_tf_rx_try_io_fail_keeps_os_error),
        cmocka_unit_test(test_tf_rx_try_io_breaks_contract),
        cmocka_unit_test(test_tf_rx_try_span_too_small_by_one),
        cmocka_unit_test(test_tf_rx_try_too_large_is_sticky),
        cmocka_unit_test(test_tf_rx_try_alloc_hook),
        cmocka_unit_test(test_tf_rx_try_len_0xffffffff),
        cmocka_unit_test(test_tf_rx_len_ge_2_31_too_large),
        cmocka_unit_test(test_tf_rx_try_small_len_big_max_three_ways),
        cmocka_unit_test(test_tf_rx_advance_split_every_position),
        cmocka_unit_test(test_tf_rx_advance_len_around_max),
        cmocka_unit_test(test_tf_rx_advance_too_many_is_sticky),
        cmocka_unit_test(test_tf_rx_set_target_bad_state),
        cmocka_unit_test(test_tf_rx_feed_back_to_back),
        cmocka_unit_test(test_tf_rx_feed_too_large),
        cmocka_unit_test(test_tf_rx_abandon),
        cmocka_unit_test(test_tf_rx_try_roundtrip_from_tx),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
