/* test_frame.c -- tf_frame_split (zero-copy splitter) and the be32 helpers. */
#include "proto_util.h"

static void test_tf_be32_put_exact_bytes(void **state)
{
    (void)state;
    static const struct {
        uint32_t v;
        uint8_t b[4];
    } rows[] = {
        {0u, {0, 0, 0, 0}},
        {1u, {0, 0, 0, 1}},
        {0xFFu, {0, 0, 0, 0xFF}},
        {0x100u, {0, 0, 1, 0}},
        {0x01020304u, {1, 2, 3, 4}},
        {TF_MAGIC, {'U', 'N', 'I', 'F'}},
        {TF_DEFAULT_MAX_LEN, {0x04, 0, 0, 0}},
        {0x80000000u, {0x80, 0, 0, 0}},
        {0xFFFFFFFEu, {0xFF, 0xFF, 0xFF, 0xFE}},
        {0xFFFFFFFFu, {0xFF, 0xFF, 0xFF, 0xFF}},
    };
    for (size_t i = 0; i < PU_ARRAY_LEN(rows); i++) {
        uint8_t out[6] = {0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA};
        tf_be32_put(out + 1, rows[i].v);
        assert_int_equal(out[0], 0xAA);
        assert_memory_equal(out + 1, rows[i].b, 4);
        assert_int_equal(out[5], 0xAA);
        assert_int_equal(tf_be32_get(rows[i].b), rows[i].v);
    }
}

static void test_tf_be32_get_roundtrip(void **state)
{
    (void)state;
    uint32_t s = 7;
    for (int i = 0; i < 100000; i++) {
        uint32_t v = pu_rand(&s);
        uint8_t b[4];
        tf_be32_put(b, v);
        assert_int_equal(b[0], v >> 24);
        assert_int_equal(b[3], v & 0xFFu);
        assert_int_equal(tf_be32_get(b), v);
    }
    assert_int_equal(TF_DEFAULT_MAX_LEN, 64u << 20);
}

static void test_tf_frame_split_complete(void **state)
{
    (void)state;
    const uint8_t in[] = {0, 0, 0, 3, 'a', 'b', 'c', 0xEE};
    const uint8_t *pl = NULL;
    size_t plen = 99, used = 99;
    assert_int_equal(tf_frame_split(in, sizeof in, 100, &pl, &plen, &used), TF_DONE);
    assert_ptr_equal(pl, in + 4);
    assert_int_equal(plen, 3);
    assert_int_equal(used, 7);
    /* Exactly the frame. */
    assert_int_equal(tf_frame_split(in, 7, 3, &pl, &plen, &used), TF_DONE);
    assert_int_equal(used, 7);
}

static void test_tf_frame_split_zero_length(void **state)
{
    (void)state;
    const uint8_t in[] = {0, 0, 0, 0};
    const uint8_t *pl = NULL;
    size_t plen = 99, used = 99;
    assert_int_equal(tf_frame_split(in, sizeof in, 0, &pl, &plen, &used), TF_DONE);
    assert_int_equal(plen, 0);
    assert_int_equal(used, 4);
}

/* Every proper prefix of a frame is incomplete: AGAIN, *used = 0, outputs untouched. */
static void test_tf_frame_split_incomplete_every_length(void **state)
{
    (void)state;
    uint8_t in[4 + 10];
    uint8_t pay[10];
    pu_fill(pay, sizeof pay, 1);
    pu_frame(in, pay, 10);
    for (size_t len = 0; len < sizeof in; len++) {
        const uint8_t *pl = (const uint8_t *)&len;
        size_t plen = 77, used = 77;
        assert_int_equal(tf_frame_split(in, len, 10, &pl, &plen, &used), TF_AGAIN);
        assert_int_equal(used, 0);
        assert_ptr_equal(pl, (const uint8_t *)&len);
        assert_int_equal(plen, 77);
    }
}

static void test_tf_frame_split_too_large(void **state)
{
    (void)state;
    const uint8_t *pl = NULL;
    size_t plen = 77, used = 77;
    const uint8_t max1[] = {0, 0, 0, 101};
    assert_int_equal(tf_frame_split(max1, 4, 100, &pl, &plen, &used), TF_ERROR);
    assert_int_equal(used, 0);
    assert_null(pl);
    /* Refused as soon as the prefix is complete, payload or not. */
    const uint8_t huge[] = {0xFF, 0xFF, 0xFF, 0xFF};
    assert_int_equal(tf_frame_split(huge, 4, TF_DEFAULT_MAX_LEN, &pl, &plen, &used), TF_ERROR);
    assert_int_equal(used, 0);
    /* max, max-1 are fine (incomplete here). */
    const uint8_t at[] = {0, 0, 0, 100};
    assert_int_equal(tf_frame_split(at, 4, 100, &pl, &plen, &used), TF_AGAIN);
    const uint8_t below[] = {0, 0, 0, 99};
    assert_int_equal(tf_frame_split(below, 4, 100, &pl, &plen, &used), TF_AGAIN);
    /* 0xFFFFFFFF with max 0xFFFFFFFF: accepted, just incomplete. */
    assert_int_equal(tf_frame_split(huge, 4, 0xFFFFFFFFu, &pl, &plen, &used), TF_AGAIN);
    assert_int_equal(used, 0);
    /* Fewer than 4 bytes are never judged. */
    assert_int_equal(tf_frame_split(huge, 3, 0, &pl, &plen, &used), TF_AGAIN);
}

/* Lengths of 2^31 and above (hand-written prefixes) against small and default maxima: ERROR
 * with *used = 0 and the outputs untouched, with or without payload bytes after the prefix.
 * Against a maximum that allows them: AGAIN (incomplete). A small complete frame against a
 * maximum of 2^31 or more: DONE. */
static void test_tf_frame_split_len_ge_2_31(void **state)
{
    (void)state;
    static const uint8_t hdrs[][4] = {
        {0x80, 0x00, 0x00, 0x00}, {0x80, 0x00, 0x00, 0x01},
        {0xFF, 0xFF, 0xFF, 0xF0}, {0xFF, 0xFF, 0xFF, 0xFF},
    };
    static const uint32_t lens[] = {0x80000000u, 0x80000001u, 0xFFFFFFF0u, 0xFFFFFFFFu};
    static const uint32_t small[] = {0, 1, 16, TF_DEFAULT_MAX_LEN, 0x7FFFFFFFu};
    for (size_t i = 0; i < PU_ARRAY_LEN(lens); i++) {
        uint8_t in[8];
        memcpy(in, hdrs[i], 4);
        memcpy(in + 4, "abcd", 4);
        for (size_t k = 0; k < PU_ARRAY_LEN(small); k++) {
            for (size_t n = 4; n <= sizeof in; n += 4) {
                const uint8_t *pl = (const uint8_t *)&n;
                size_t plen = 77, used = 77;
                assert_int_equal(tf_frame_split(in, n, small[k], &pl, &plen, &used), TF_ERROR);
                assert_int_equal(used, 0);
                assert_ptr_equal(pl, (const uint8_t *)&n);
                assert_int_equal(plen, 77);
            }
        }
        const uint32_t ok_max[] = {lens[i], 0xFFFFFFFFu};
        for (size_t k = 0; k < 2; k++) {
            const uint8_t *pl = NULL;
            size_t plen = 77, used = 77;
            assert_int_equal(tf_frame_split(in, sizeof in, ok_max[k], &pl, &plen, &used), TF_AGAIN);
            assert_int_equal(used, 0);
        }
        const uint8_t *pl = NULL;
        size_t plen = 77, used = 77;
        assert_int_equal(tf_frame_split(in, sizeof in, lens[i] - 1, &pl, &plen, &used), TF_ERROR);
    }
    static const uint8_t one[] = {0, 0, 0, 1, 'z'};
    for (size_t i = 0; i < PU_ARRAY_LEN(lens); i++) {
        const uint8_t *pl = NULL;
        size_t plen = 77, used = 77;
        assert_int_equal(tf_frame_split(one, sizeof one, lens[i], &pl, &plen, &used), TF_DONE);
        assert_ptr_equal(pl, one + 4);
        assert_int_equal(plen, 1);
        assert_int_equal(used, 5);
    }
}

/* Several frames back to back: split each zero-copy, then feed the incomplete tail to a tf_rx. */
static void test_tf_frame_split_back_to_back_then_feed_tail(void **state)
{
    (void)state;
    static const uint32_t lens[] = {0, 1, 5, 0, 300, 2, 17};
    uint8_t pays[PU_ARRAY_LEN(lens)][300];
    uint8_t buf[4096];
    size_t total = 0;
    size_t starts[PU_ARRAY_LEN(lens)];
    for (size_t i = 0; i < PU_ARRAY_LEN(lens); i++) {
        pu_fill(pays[i], lens[i], (uint32_t)i + 10);
        starts[i] = total;
        total += pu_frame(buf + total, pays[i], lens[i]);
    }
    for (size_t cut = 0; cut <= total; cut++) {
        size_t off = 0, k = 0;
        for (;;) {
            const uint8_t *pl;
            size_t plen, used;
            tf_step st = tf_frame_split(buf + off, cut - off, 300, &pl, &plen, &used);
            if (st == TF_AGAIN) {
                assert_int_equal(used, 0);
                break;
            }
            assert_int_equal(st, TF_DONE);
            assert_int_equal(off, starts[k]);
            assert_ptr_equal(pl, buf + off + 4);
            assert_int_equal(plen, lens[k]);
            assert_memory_equal(pl, pays[k], lens[k]);
            assert_int_equal(used, 4 + lens[k]);
            off += used;
            k++;
        }
        /* Exactly the frames that fit in cut bytes were split. */
        size_t expect = 0;
        while (expect < PU_ARRAY_LEN(lens) && starts[expect] + 4 + lens[expect] <= cut)
            expect++;
        assert_int_equal(k, expect);
        /* Feed the tail, then the rest, to a receiver: it completes message k onward. */
        tf_rx rx;
        tf_rx_init(&rx, 300);
        uint8_t tgt[300];
        size_t pos = off;
        while (pos < total) {
            size_t used = 0;
            tf_msg m = PU_MSG_POISON;
            size_t end = pos < cut ? cut : total; /* first the tail up to cut, then the rest */
            tf_step st = tf_rx_feed(&rx, buf + pos, end - pos, &used, &m);
            pos += used;
            if (st == TF_DONE) {
                assert_true(k < PU_ARRAY_LEN(lens));
                assert_int_equal(m.len, lens[k]);
                if (lens[k])
                    assert_memory_equal(m.data, pays[k], lens[k]);
                else
                    assert_null(m.data);
                assert_int_equal(pos, starts[k] + 4 + lens[k]);
                k++;
            } else {
                assert_int_equal(st, TF_AGAIN);
                if (tf_rx_wants_target(&rx, NULL))
                    assert_int_equal(tf_rx_set_target(&rx, tgt, sizeof tgt), TF_OK);
                else
                    assert_int_equal(pos, end);
            }
        }
        assert_int_equal(k, PU_ARRAY_LEN(lens));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tf_be32_put_exact_bytes),
        cmocka_unit_test(test_tf_be32_get_roundtrip),
        cmocka_unit_test(test_tf_frame_split_complete),
        cmocka_unit_test(test_tf_frame_split_zero_length),
        cmocka_unit_test(test_tf_frame_split_incomplete_every_length),
        cmocka_unit_test(test_tf_frame_split_too_large),
        cmocka_unit_test(test_tf_frame_split_len_ge_2_31),
        cmocka_unit_test(test_tf_frame_split_back_to_back_then_feed_tail),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
