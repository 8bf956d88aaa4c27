/* test_tx.c -- the sender: begin refusals, gather lists, advance, tf_tx_try over a scripted io. */
#include "proto_util.h"

/* Expected wire image of one frame. */
static size_t tx_wire(uint8_t *out, const uint8_t *payload, uint32_t len)
{
    return pu_frame(out, payload, len);
}

/* The sender is failed with |err|: sticky everywhere, nothing offered or written. */
static void assert_tx_failed(tf_tx *tx, tf_err err, int os)
{
    int got_os = -1;
    assert_int_equal(tf_tx_error(tx, &got_os), err);
    assert_int_equal(got_os, os);
    tf_iov iov[2];
    assert_int_equal(tf_tx_next(tx, iov), 0);
    assert_int_equal(tf_tx_pending(tx), 0);
    assert_int_equal(tf_tx_advance(tx, 0), TF_ERROR);
    assert_int_equal(tf_tx_advance(tx, 1), TF_ERROR);
    static const uint8_t one = 1;
    assert_int_equal(tf_tx_begin(tx, &one, 1), err);
    assert_int_equal(tf_tx_begin(tx, NULL, 0), err);
    pu_io *p = pu_new(NULL, 0);
    assert_int_equal(tf_tx_try(tx, &p->io), TF_ERROR);
    assert_int_equal(p->wcalls, 0);
    free(p);
    assert_int_equal(tf_tx_error(tx, NULL), err);
}

static void test_tf_tx_init_idle(void **state)
{
    (void)state;
    tf_tx tx;
    tf_tx_init(&tx, 100);
    tf_iov iov[2];
    assert_int_equal(tf_tx_next(&tx, iov), 0);
    assert_int_equal(tf_tx_pending(&tx), 0);
    assert_int_equal(tf_tx_error(&tx, NULL), TF_OK);
    assert_int_equal(tf_tx_advance(&tx, 0), TF_DONE);
    pu_io *p = pu_new(NULL, 0);
    assert_int_equal(tf_tx_try(&tx, &p->io), TF_DONE);
    assert_int_equal(p->wcalls, 0);
    free(p);
}

/* Refusals change nothing and emit nothing, and are not sticky. */
static void test_tf_tx_begin_refusals_change_nothing(void **state)
{
    (void)state;
    uint8_t pay[101];
    pu_fill(pay, sizeof pay, 3);
    tf_tx tx;
    tf_tx_init(&tx, 100);
    assert_int_equal(tf_tx_begin(&tx, pay, 101), TF_ERR_TOO_LARGE);
    assert_int_equal(tf_tx_begin(&tx, NULL, 1), TF_ERR_INVALID_ARGUMENT);
    assert_int_equal(tf_tx_begin(&tx, NULL, 101), TF_ERR_TOO_LARGE); /* size checked first */
    tf_iov iov[2];
    assert_int_equal(tf_tx_next(&tx, iov), 0);
    assert_int_equal(tf_tx_pending(&tx), 0);
    assert_int_equal(tf_tx_error(&tx, NULL), TF_OK);
    pu_io *p = pu_new(NULL, 0);
    assert_int_equal(tf_tx_try(&tx, &p->io), TF_DONE);
    assert_int_equal(p->wcalls, 0);

    /* max and max-1 are accepted. */
    assert_int_equal(tf_tx_begin(&tx, pay, 100), TF_OK);
    assert_int_equal(tf_tx_pending(&tx), 104);
    /* BAD_STATE while sending: the frame in flight is untouched. */
    assert_int_equal(tf_tx_advance(&tx, 2), TF_AGAIN);
    assert_int_equal(tf_tx_begin(&tx, pay, 5), TF_ERR_BAD_STATE);
    assert_int_equal(tf_tx_begin(&tx, NULL, 0), TF_ERR_BAD_STATE);
    assert_int_equal(tf_tx_begin(&tx, pay, 101), TF_ERR_BAD_STATE);
    assert_int_equal(tf_tx_pending(&tx), 102);
    assert_int_equal(tf_tx_error(&tx, NULL), TF_OK);
    uint8_t want[104];
    tx_wire(want, pay, 100);
    assert_int_equal(tf_tx_try(&tx, &p->io), TF_DONE);
    assert_int_equal(p->cap_len, 102);
    assert_memory_equal(p->cap, want + 2, 102);

    p->cap_len = 0;
    assert_int_equal(tf_tx_begin(&tx, pay, 99), TF_OK);
    assert_int_equal(tf_tx_try(&tx, &p->io), TF_DONE);
    tx_wire(want, pay, 99);
    assert_int_equal(p->cap_len, 103);
    assert_memory_equal(p->cap, want, 103);
    free(p);
}

/* max_len 0: only zero-length messages. */
static void test_tf_tx_begin_max_zero(void **state)
{
    (void)state;
    static const uint8_t b = 7;
    tf_tx tx;
    tf_tx_init(&tx, 0);
    assert_int_equal(tf_tx_begin(&tx, &b, 1), TF_ERR_TOO_LARGE);
    assert_int_equal(tf_tx_begin(&tx, &b, 0), TF_OK); /* non-NULL payload, length 0: fine */
    assert_int_equal(tf_tx_pending(&tx), 4);
}

/* 0xFFFFFFFF with max 0xFFFFFFFF is accepted (not sent: only the header is checked). */
static void test_tf_tx_begin_len_0xffffffff(void **state)
{
    (void)state;
    static const uint8_t dummy = 0;
    tf_tx tx;
    tf_tx_init(&tx, 0xFFFFFFFFu);
    assert_int_equal(tf_tx_begin(&tx, &dummy, 0xFFFFFFFFu), TF_OK);
    assert_int_equal(tf_tx_pending(&tx), (size_t)0xFFFFFFFFu + 4);
    tf_iov iov[2];
    assert_int_equal(tf_tx_next(&tx, iov), 2);
    assert_int_equal(iov[0].len, 4);
    static const uint8_t hdr[4] = {0xFF, 0xFF, 0xFF, 0xFF};
    assert_memory_equal(iov[0].base, hdr, 4);
    assert_ptr_equal(iov[1].base, &dummy);
    assert_int_equal(iov[1].len, 0xFFFFFFFFu);
    /* Send just the header over a scripted io, then block. */
    pu_io *p = pu_new(NULL, 0);
    pu_wpush(p, PU_BYTES(4));
    p->wdefault = PU_AGAIN;
    assert_int_equal(tf_tx_try(&tx, &p->io), TF_AGAIN);
    assert_int_equal(p->cap_len, 4);
    assert_memory_equal(p->cap, hdr, 4);
    assert_int_equal(tf_tx_pending(&tx), 0xFFFFFFFFu);
    free(p);

    tf_tx_init(&tx, 0xFFFFFFFEu);
    assert_int_equal(tf_tx_begin(&tx, &dummy, 0xFFFFFFFFu), TF_ERR_TOO_LARGE);
    if (sizeof(size_t) > 4) {
        /* A size_t length beyond any uint32_t is too large even for the largest max. */
        tf_tx_init(&tx, 0xFFFFFFFFu);
        size_t big = (size_t)0xFFFFFFFFu + 1;
        assert_int_equal(tf_tx_begin(&tx, &dummy, big), TF_ERR_TOO_LARGE);
        assert_int_equal(tf_tx_pending(&tx), 0);
    }
}

/* Lengths of 2^31 and above against small and default maxima: TOO_LARGE, nothing changes (a
 * signed comparison would let them through). Against a maximum that allows them, the prefix
 * bytes offered are those of a hand-written table. The payload is never read: only the header
 * is offered and checked. */
static void test_tf_tx_begin_len_ge_2_31(void **state)
{
    (void)state;
    static const uint8_t dummy = 0;
    static const struct {
        uint32_t len;
        uint8_t hdr[4];
    } lens[] = {
        {0x80000000u, {0x80, 0x00, 0x00, 0x00}},
        {0x80000001u, {0x80, 0x00, 0x00, 0x01}},
        {0xFFFFFFF0u, {0xFF, 0xFF, 0xFF, 0xF0}},
        {0xFFFFFFFFu, {0xFF, 0xFF, 0xFF, 0xFF}},
    };
    static const uint32_t small[] = {0, 16, TF_DEFAULT_MAX_LEN, 0x7FFFFFFFu};
    for (size_t i = 0; i < PU_ARRAY_LEN(lens); i++) {
        for (size_t k = 0; k < PU_ARRAY_LEN(small); k++) {
            tf_tx tx;
            tf_tx_init(&tx, small[k]);
            assert_int_equal(tf_tx_begin(&tx, &dummy, lens[i].len), TF_ERR_TOO_LARGE);
            tf_iov iov[2];
            assert_int_equal(tf_tx_next(&tx, iov), 0);
            assert_int_equal(tf_tx_pending(&tx), 0);
            assert_int_equal(tf_tx_error(&tx, NULL), TF_OK);
            /* still usable: a small message goes out */
            assert_int_equal(tf_tx_begin(&tx, NULL, 0), TF_OK);
            assert_int_equal(tf_tx_pending(&tx), 4);
        }
        /* Allowed by max = len and by max = 0xFFFFFFFF; refused by max = len - 1. */
        const uint32_t ok_max[] = {lens[i].len, 0xFFFFFFFFu};
        for (size_t k = 0; k < 2; k++) {
            tf_tx tx;
            tf_tx_init(&tx, ok_max[k]);
            assert_int_equal(tf_tx_begin(&tx, &dummy, lens[i].len), TF_OK);
            tf_iov iov[2];
            assert_int_equal(tf_tx_next(&tx, iov), 2);
            assert_int_equal(iov[0].len, 4);
            assert_memory_equal(iov[0].base, lens[i].hdr, 4);
            assert_ptr_equal(iov[1].base, &dummy);
            assert_int_equal(iov[1].len, lens[i].len);
            assert_int_equal(tf_tx_pending(&tx), (size_t)lens[i].len + 4);
        }
        tf_tx tx;
        tf_tx_init(&tx, lens[i].len - 1);
        assert_int_equal(tf_tx_begin(&tx, &dummy, lens[i].len), TF_ERR_TOO_LARGE);
    }
    /* A small length against a maximum of 2^31 or more is accepted (signed, such a maximum
     * would be negative and refuse everything). */
    static const uint32_t big[] = {0x80000000u, 0xFFFFFFFEu, 0xFFFFFFFFu};
    for (size_t k = 0; k < PU_ARRAY_LEN(big); k++) {
        tf_tx tx;
        tf_tx_init(&tx, big[k]);
        assert_int_equal(tf_tx_begin(&tx, &dummy, 1), TF_OK);
        assert_int_equal(tf_tx_pending(&tx), 5);
    }
}

/* The wire bytes of tf_tx_try against hand-written prefixes (not from any encoder). */
static void test_tf_tx_try_wire_table(void **state)
{
    (void)state;
    static const struct {
        uint32_t len;
        uint8_t hdr[4];
    } rows[] = {
        {0, {0, 0, 0, 0}},           {1, {0, 0, 0, 1}},           {2, {0, 0, 0, 2}},
        {127, {0, 0, 0, 0x7F}},      {128, {0, 0, 0, 0x80}},      {255, {0, 0, 0, 0xFF}},
        {256, {0, 0, 1, 0}},         {257, {0, 0, 1, 1}},         {0x1234, {0, 0, 0x12, 0x34}},
        {65532, {0, 0, 0xFF, 0xFC}}, {65535, {0, 0, 0xFF, 0xFF}}, {65536, {0, 1, 0, 0}},       {0x12345, {0, 1, 0x23, 0x45}},
        {0xABCDEF, {0, 0xAB, 0xCD, 0xEF}},
    };
    static uint8_t pay[0xABCDEF];
    pu_fill(pay, sizeof pay, 77);
    for (size_t i = 0; i < PU_ARRAY_LEN(rows); i++) {
        tf_tx tx;
        tf_tx_init(&tx, TF_DEFAULT_MAX_LEN);
        assert_int_equal(tf_tx_begin(&tx, pay, rows[i].len), TF_OK);
        size_t want_len = 4 + (size_t)rows[i].len;
        if (want_len > PU_CAP_MAX) {
            /* too big to capture: the header the gather list offers, byte by byte */
            for (size_t b = 0; b < 4; b++) {
                tf_iov iov[2];
                assert_int_equal(tf_tx_next(&tx, iov), 2);
                assert_int_equal(iov[0].len, 4 - b);
                assert_int_equal(iov[0].base[0], rows[i].hdr[b]);
                assert_int_equal(tf_tx_advance(&tx, 1), TF_AGAIN);
            }
            assert_int_equal(tf_tx_advance(&tx, rows[i].len), TF_DONE);
            continue;
        }
        pu_io *p = pu_new(NULL, 0);
        p->wdefault = PU_BYTES(3 + i); /* partial writes of a few bytes */
        pu_wpush(p, PU_BYTES(1 + i % 4));
        pu_wpush(p, PU_BYTES(2));
        tf_step st;
        while ((st = tf_tx_try(&tx, &p->io)) == TF_AGAIN)
            ;
        assert_int_equal(st, TF_DONE);
        assert_int_equal(p->cap_len, want_len);
        assert_memory_equal(p->cap, rows[i].hdr, 4);
        assert_memory_equal(p->cap + 4, pay, rows[i].len);
        free(p);
    }
}

/* Gather list shapes at every position of a frame. */
static void test_tf_tx_next_gather_shapes(void **state)
{
    (void)state;
    uint8_t pay[6];
    pu_fill(pay, sizeof pay, 9);
    uint8_t want[10];
    tx_wire(want, pay, 6);
    for (size_t pos = 0; pos < 10; pos++) {
        tf_tx tx;
        tf_tx_init(&tx, 6);
        assert_int_equal(tf_tx_begin(&tx, pay, 6), TF_OK);
        assert_int_equal(tf_tx_advance(&tx, pos), pos == 10 ? TF_DONE : TF_AGAIN);
        tf_iov iov[2] = {{NULL, 99}, {NULL, 99}};
        size_t cnt = tf_tx_next(&tx, iov);
        if (pos < 4) {
            assert_int_equal(cnt, 2); /* rest of the header + payload */
            assert_int_equal(iov[0].len, 4 - pos);
            assert_memory_equal(iov[0].base, want + pos, 4 - pos);
            assert_ptr_equal(iov[1].base, pay);
            assert_int_equal(iov[1].len, 6);
        } else {
            assert_int_equal(cnt, 1); /* payload only, pointing into the caller's buffer */
            assert_ptr_equal(iov[0].base, pay + (pos - 4));
            assert_int_equal(iov[0].len, 10 - pos);
            assert_int_equal(iov[1].len, 99); /* untouched */
        }
        assert_int_equal(tf_tx_pending(&tx), 10 - pos);
    }
    /* Zero-length: header only, NULL payload allowed. */
    for (size_t pos = 0; pos < 4; pos++) {
        tf_tx tx;
        tf_tx_init(&tx, 6);
        assert_int_equal(tf_tx_begin(&tx, NULL, 0), TF_OK);
        assert_int_equal(tf_tx_advance(&tx, pos), TF_AGAIN);
        tf_iov iov[2] = {{NULL, 99}, {NULL, 99}};
        assert_int_equal(tf_tx_next(&tx, iov), 1);
        static const uint8_t zero[4] = {0, 0, 0, 0};
        assert_int_equal(iov[0].len, 4 - pos);
        assert_memory_equal(iov[0].base, zero, 4 - pos);
        assert_int_equal(iov[1].len, 99);
        assert_int_equal(tf_tx_advance(&tx, 4 - pos), TF_DONE);
        assert_int_equal(tf_tx_next(&tx, iov), 0);
        assert_int_equal(tf_tx_pending(&tx), 0);
    }
}

/* Sans-I/O: the frame split into two advances at every position; the bytes offered are exact. */
static void test_tf_tx_advance_split_every_position(void **state)
{
    (void)state;
    uint8_t pay[20];
    pu_fill(pay, sizeof pay, 4);
    uint8_t want[24];
    tx_wire(want, pay, 20);
    for (size_t a = 0; a <= 24; a++) {
        tf_tx tx;
        tf_tx_init(&tx, TF_DEFAULT_MAX_LEN);
        assert_int_equal(tf_tx_begin(&tx, pay, 20), TF_OK);
        uint8_t got[24];
        size_t gl = 0;
        size_t parts[2] = {a, 24 - a};
        for (int k = 0; k < 2; k++) {
            tf_iov iov[2];
            size_t cnt = tf_tx_next(&tx, iov);
            size_t left = parts[k];
            for (size_t i = 0; i < cnt && left; i++) {
                size_t m = iov[i].len < left ? iov[i].len : left;
                memcpy(got + gl, iov[i].base, m);
                gl += m;
                left -= m;
            }
            assert_int_equal(left, 0);
            tf_step st = tf_tx_advance(&tx, parts[k]);
            assert_int_equal(st, k == 1 || a == 24 ? TF_DONE : TF_AGAIN);
        }
        assert_int_equal(gl, 24);
        assert_memory_equal(got, want, 24);
        assert_int_equal(tf_tx_pending(&tx), 0);
        /* Idle again: a new message can begin. */
        assert_int_equal(tf_tx_begin(&tx, NULL, 0), TF_OK);
    }
}

/* advance(n) with n larger than offered, at every position: INVALID_ARGUMENT, sticky. */
static void test_tf_tx_advance_too_many_is_sticky(void **state)
{
    (void)state;
    uint8_t pay[5] = {1, 2, 3, 4, 5};
    for (size_t pos = 0; pos < 9; pos++) {
        tf_tx tx;
        tf_tx_init(&tx, 5);
        assert_int_equal(tf_tx_begin(&tx, pay, 5), TF_OK);
        assert_int_equal(tf_tx_advance(&tx, pos), TF_AGAIN);
        assert_int_equal(tf_tx_advance(&tx, 9 - pos + 1), TF_ERROR);
        assert_tx_failed(&tx, TF_ERR_INVALID_ARGUMENT, 0);
    }
    /* On an idle sender any n > 0 is too many. */
    tf_tx tx;
    tf_tx_init(&tx, 5);
    assert_int_equal(tf_tx_advance(&tx, 1), TF_ERROR);
    assert_tx_failed(&tx, TF_ERR_INVALID_ARGUMENT, 0);
    /* advance(SIZE_MAX) does not wrap. */
    tf_tx_init(&tx, 5);
    assert_int_equal(tf_tx_begin(&tx, pay, 5), TF_OK);
    assert_int_equal(tf_tx_advance(&tx, 3), TF_AGAIN);
    assert_int_equal(tf_tx_advance(&tx, (size_t)-1), TF_ERROR);
    assert_tx_failed(&tx, TF_ERR_INVALID_ARGUMENT, 0);
}

static void test_tf_tx_pending_counts_down(void **state)
{
    (void)state;
    uint8_t pay[3] = {7, 8, 9};
    tf_tx tx;
    tf_tx_init(&tx, 3);
    assert_int_equal(tf_tx_begin(&tx, pay, 3), TF_OK);
    for (size_t i = 0; i < 7; i++) {
        assert_int_equal(tf_tx_pending(&tx), 7 - i);
        assert_int_equal(tf_tx_advance(&tx, 0), TF_AGAIN);
        assert_int_equal(tf_tx_advance(&tx, 1), i == 6 ? TF_DONE : TF_AGAIN);
    }
    assert_int_equal(tf_tx_pending(&tx), 0);
    assert_int_equal(tf_tx_advance(&tx, 0), TF_DONE);
}

static void test_tf_tx_try_at_once(void **state)
{
    (void)state;
    uint8_t pay[300];
    pu_fill(pay, sizeof pay, 5);
    uint8_t want[304];
    tx_wire(want, pay, 300);
    pu_io *p = pu_new(NULL, 0);
    tf_tx tx;
    tf_tx_init(&tx, 300);
    assert_int_equal(tf_tx_begin(&tx, pay, 300), TF_OK);
    assert_int_equal(tf_tx_try(&tx, &p->io), TF_DONE);
    assert_int_equal(p->wcalls, 1);
    assert_int_equal(p->wcnt[0], 2); /* one writev of header + payload */
    assert_int_equal(p->wlen[0][0], 4);
    assert_int_equal(p->wlen[0][1], 300);
    assert_int_equal(p->cap_len, 304);
    assert_memory_equal(p->cap, want, 304);
    assert_int_equal(tf_tx_pending(&tx), 0);
    assert_int_equal(tf_tx_try(&tx, &p->io), TF_DONE); /* idle */
    assert_int_equal(p->wcalls, 1);
    free(p);
}

/* Zero-length message: exactly 00 00 00 00, a header-only write. */
static void test_tf_tx_try_zero_length(void **state)
{
    (void)state;
    pu_io *p = pu_new(NULL, 0);
    tf_tx tx;
    tf_tx_init(&tx, 0);
    assert_int_equal(tf_tx_begin(&tx, NULL, 0), TF_OK);
    assert_int_equal(tf_tx_try(&tx, &p->io), TF_DONE);
    assert_int_equal(p->wcalls, 1);
    assert_int_equal(p->wcnt[0], 1);
    assert_int_equal(p->cap_len, 4);
    static const uint8_t zero[4] = {0, 0, 0, 0};
    assert_memory_equal(p->cap, zero, 4);
    free(p);
}

/* A write split at every byte position of header and payload. */
static void test_tf_tx_try_split_every_position(void **state)
{
    (void)state;
    uint8_t pay[12];
    pu_fill(pay, sizeof pay, 6);
    uint8_t want[16];
    tx_wire(want, pay, 12);
    for (size_t a = 1; a < 16; a++) {
        pu_io *p = pu_new(NULL, 0);
        pu_wpush(p, PU_BYTES(a));
        tf_tx tx;
        tf_tx_init(&tx, 12);
        assert_int_equal(tf_tx_begin(&tx, pay, 12), TF_OK);
        assert_int_equal(tf_tx_try(&tx, &p->io), TF_DONE);
        assert_int_equal(p->wcalls, 2);
        assert_int_equal(p->wcnt[1], a < 4 ? 2 : 1);
        assert_int_equal(p->wlen[1][0] + p->wlen[1][1], 16 - a);
        assert_int_equal(p->cap_len, 16);
        assert_memory_equal(p->cap, want, 16);
        free(p);
    }
}

static void test_tf_tx_try_per_byte(void **state)
{
    (void)state;
    uint8_t pay[9];
    pu_fill(pay, sizeof pay, 8);
    uint8_t want[13];
    tx_wire(want, pay, 9);
    pu_io *p = pu_new(NULL, 0);
    p->wdefault = PU_BYTES(1);
    tf_tx tx;
    tf_tx_init(&tx, 9);
    assert_int_equal(tf_tx_begin(&tx, pay, 9), TF_OK);
    assert_int_equal(tf_tx_try(&tx, &p->io), TF_DONE);
    assert_int_equal(p->wcalls, 13);
    for (size_t i = 0; i < 13; i++)
        assert_int_equal(p->wlen[i][0] + p->wlen[i][1], 13 - i);
    assert_int_equal(p->cap_len, 13);
    assert_memory_equal(p->cap, want, 13);
    free(p);
}

/* AGAIN at every point, then resumed to completion. */
static void test_tf_tx_try_again_every_point(void **state)
{
    (void)state;
    uint8_t pay[7];
    pu_fill(pay, sizeof pay, 11);
    uint8_t want[11];
    tx_wire(want, pay, 7);
    for (size_t a = 0; a < 11; a++) {
        pu_io *p = pu_new(NULL, 0);
        if (a)
            pu_wpush(p, PU_BYTES(a));
        pu_wpush(p, PU_AGAIN);
        tf_tx tx;
        tf_tx_init(&tx, 7);
        assert_int_equal(tf_tx_begin(&tx, pay, 7), TF_OK);
        assert_int_equal(tf_tx_try(&tx, &p->io), TF_AGAIN);
        assert_int_equal(p->cap_len, a);
        assert_int_equal(tf_tx_pending(&tx), 11 - a);
        assert_int_equal(tf_tx_error(&tx, NULL), TF_OK);
        assert_int_equal(tf_tx_begin(&tx, pay, 1), TF_ERR_BAD_STATE);
        assert_int_equal(tf_tx_try(&tx, &p->io), TF_DONE);
        assert_int_equal(p->cap_len, 11);
        assert_memory_equal(p->cap, want, 11);
        free(p);
    }
}

/* Interrupted writes are retried inside the step. */
static void test_tf_tx_try_intr_retried(void **state)
{
    (void)state;
    uint8_t pay[5] = {1, 2, 3, 4, 5};
    uint8_t want[9];
    tx_wire(want, pay, 5);
    pu_io *p = pu_new(NULL, 0);
    for (int i = 0; i < 9; i++) {
        pu_wpush(p, PU_INTR);
        pu_wpush(p, PU_BYTES(1));
    }
    tf_tx tx;
    tf_tx_init(&tx, 5);
    assert_int_equal(tf_tx_begin(&tx, pay, 5), TF_OK);
    assert_int_equal(tf_tx_try(&tx, &p->io), TF_DONE);
    assert_int_equal(p->wcalls, 18);
    assert_memory_equal(p->cap, want, 9);
    free(p);
}

/* TF_MAX_INTR consecutive interruptions give AGAIN; one fewer does not. */
static void test_tf_tx_try_max_intr_gives_again(void **state)
{
    (void)state;
    uint8_t pay[5] = {1, 2, 3, 4, 5};
    pu_io *p = pu_new(NULL, 0);
    pu_wpush(p, PU_BYTES(2));
    for (unsigned i = 0; i < TF_MAX_INTR; i++)
        pu_wpush(p, PU_INTR);
    tf_tx tx;
    tf_tx_init(&tx, 5);
    assert_int_equal(tf_tx_begin(&tx, pay, 5), TF_OK);
    assert_int_equal(tf_tx_try(&tx, &p->io), TF_AGAIN);
    assert_int_equal(p->wcalls, 1 + TF_MAX_INTR);
    assert_int_equal(tf_tx_pending(&tx), 7);
    assert_int_equal(tf_tx_try(&tx, &p->io), TF_DONE);
    assert_int_equal(p->cap_len, 9);
    free(p);

    p = pu_new(NULL, 0);
    for (unsigned i = 0; i + 1 < TF_MAX_INTR; i++)
        pu_wpush(p, PU_INTR);
    tf_tx_init(&tx, 5);
    assert_int_equal(tf_tx_begin(&tx, pay, 5), TF_OK);
    assert_int_equal(tf_tx_try(&tx, &p->io), TF_DONE);
    assert_int_equal(p->wcalls, TF_MAX_INTR);
    free(p);
}

/* Interruptions separated by progress are not consecutive. */
static void test_tf_tx_try_intr_count_resets_on_progress(void **state)
{
    (void)state;
    uint8_t pay[5] = {1, 2, 3, 4, 5};
    pu_io *p = pu_new(NULL, 0);
    for (int b = 0; b < 9; b++) {
        for (unsigned i = 0; i + 1 < TF_MAX_INTR; i++)
            pu_wpush(p, PU_INTR);
        pu_wpush(p, PU_BYTES(1));
    }
    tf_tx tx;
    tf_tx_init(&tx, 5);
    assert_int_equal(tf_tx_begin(&tx, pay, 5), TF_OK);
    assert_int_equal(tf_tx_try(&tx, &p->io), TF_DONE);
    assert_int_equal(p->cap_len, 9);
    free(p);
}

/* write returning 0 at every position: CLOSED, sticky. */
static void test_tf_tx_try_write_returns_zero(void **state)
{
    (void)state;
    uint8_t pay[5] = {1, 2, 3, 4, 5};
    for (size_t a = 0; a < 9; a++) {
        pu_io *p = pu_new(NULL, 0);
        if (a)
            pu_wpush(p, PU_BYTES(a));
        pu_wpush(p, PU_EOF);
        tf_tx tx;
        tf_tx_init(&tx, 5);
        assert_int_equal(tf_tx_begin(&tx, pay, 5), TF_OK);
        assert_int_equal(tf_tx_try(&tx, &p->io), TF_ERROR);
        assert_int_equal(p->cap_len, a);
        assert_tx_failed(&tx, TF_ERR_CLOSED, 0);
        free(p);
    }
}

/* TF_IO_FAIL keeps the OS error. */
static void test_tf_tx_try_io_fail_keeps_os_error(void **state)
{
    (void)state;
    uint8_t pay[5] = {1, 2, 3, 4, 5};
    for (size_t a = 0; a < 9; a++) {
        pu_io *p = pu_new(NULL, 0);
        if (a)
            pu_wpush(p, PU_BYTES(a));
        pu_wpush(p, PU_OSFAIL(32 + (int)a));
        tf_tx tx;
        tf_tx_init(&tx, 5);
        assert_int_equal(tf_tx_begin(&tx, pay, 5), TF_OK);
        assert_int_equal(tf_tx_try(&tx, &p->io), TF_ERROR);
        assert_int_equal(p->cap_len, a);
        assert_tx_failed(&tx, TF_ERR_IO, 32 + (int)a);
        free(p);
    }
}

/* The io breaks its contract: more than offered (at every position), unknown negatives. */
static void test_tf_tx_try_io_breaks_contract(void **state)
{
    (void)state;
    uint8_t pay[5] = {1, 2, 3, 4, 5};
    for (size_t a = 0; a < 9; a++) {
        pu_io *p = pu_new(NULL, 0);
        if (a)
            pu_wpush(p, PU_BYTES(a));
        pu_wpush(p, PU_RAWV(9 - a + 1));
        tf_tx tx;
        tf_tx_init(&tx, 5);
        assert_int_equal(tf_tx_begin(&tx, pay, 5), TF_OK);
        assert_int_equal(tf_tx_try(&tx, &p->io), TF_ERROR);
        assert_tx_failed(&tx, TF_ERR_INVALID_ARGUMENT, 0);
        free(p);
    }
    static const long bad[] = {-4, -5, -1000, -2147483647L};
    for (size_t i = 0; i < PU_ARRAY_LEN(bad); i++) {
        pu_io *p = pu_new(NULL, 0);
        pu_wpush(p, PU_RAWV(bad[i]));
        tf_tx tx;
        tf_tx_init(&tx, 5);
        assert_int_equal(tf_tx_begin(&tx, pay, 5), TF_OK);
        assert_int_equal(tf_tx_try(&tx, &p->io), TF_ERROR);
        assert_int_equal(p->wcalls, 1);
        assert_tx_failed(&tx, TF_ERR_INVALID_ARGUMENT, 0);
        free(p);
    }
}

/* Several messages one after another over random partial writes: the exact byte stream. */
static void test_tf_tx_try_many_messages(void **state)
{
    (void)state;
    static uint8_t want[PU_CAP_MAX];
    uint8_t pay[1000];
    pu_fill(pay, sizeof pay, 12);
    uint32_t seed = 99;
    pu_io *p = pu_new(NULL, 0);
    size_t wl = 0;
    tf_tx tx;
    tf_tx_init(&tx, 1000);
    for (int m = 0; m < 40; m++) {
        uint32_t len = m % 5 == 0 ? 0 : pu_rand(&seed) % 1001u;
        wl += tx_wire(want + wl, pay, len);
        assert_int_equal(tf_tx_begin(&tx, len ? pay : NULL, len), TF_OK);
        for (int i = 0; i < 10000; i++) {
            uint32_t r = pu_rand(&seed) % 4u;
            p->wn = p->wi = 0;
            pu_wpush(p, r == 0 ? PU_AGAIN : r == 1 ? PU_INTR : PU_BYTES(1 + pu_rand(&seed) % 50u));
            p->wdefault = PU_AGAIN;
            if (tf_tx_try(&tx, &p->io) == TF_DONE)
                break;
        }
        assert_int_equal(tf_tx_pending(&tx), 0);
        assert_int_equal(p->cap_len, wl);
    }
    assert_memory_equal(p->cap, want, wl);
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tf_tx_init_idle),
        cmocka_unit_test(test_tf_tx_begin_refusals_change_nothing),
        cmocka_unit_test(test_tf_tx_begin_max_zero),
        cmocka_unit_test(test_tf_tx_begin_len_0xffffffff),
        cmocka_unit_test(test_tf_tx_begin_len_ge_2_31),
        cmocka_unit_test(test_tf_tx_try_wire_table),
        cmocka_unit_test(test_tf_tx_next_gather_shapes),
        cmocka_unit_test(test_tf_tx_advance_split_every_position),
        cmocka_unit_test(test_tf_tx_advance_too_many_is_sticky),
        cmocka_unit_test(test_tf_tx_pending_counts_down),
        cmocka_unit_test(test_tf_tx_try_at_once),
        cmocka_unit_test(test_tf_tx_try_zero_length),
        cmocka_unit_test(test_tf_tx_try_split_every_position),
        cmocka_unit_test(test_tf_tx_try_per_byte),
        cmocka_unit_test(test_tf_tx_try_again_every_point),
        cmocka_unit_test(test_tf_tx_try_intr_retried),
        cmocka_unit_test(test_tf_tx_try_max_intr_gives_again),
        cmocka_unit_test(test_tf_tx_try_intr_count_resets_on_progress),
        cmocka_unit_test(test_tf_tx_try_write_returns_zero),
        cmocka_unit_test(test_tf_tx_try_io_fail_keeps_os_error),
        cmocka_unit_test(test_tf_tx_try_io_breaks_contract),
        cmocka_unit_test(test_tf_tx_try_many_messages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
