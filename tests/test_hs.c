/* test_hs.c -- the handshake: sans-I/O halves and tf_hs_try over a scripted io. */
#include "proto_util.h"

static const uint8_t MAGIC[4] = {'U', 'N', 'I', 'F'};

/* Call tf_hs_try until it is not AGAIN (at most |limit| times); returns the last answer and
 * the number of AGAINs through *agains. */
static tf_step hs_drive(tf_hs *hs, pu_io *p, int limit, int *agains)
{
    tf_step st = TF_AGAIN;
    int a = 0;
    for (int i = 0; i < limit; i++) {
        st = tf_hs_try(hs, &p->io);
        if (st != TF_AGAIN)
            break;
        a++;
    }
    if (agains)
        *agains = a;
    return st;
}

static void assert_hs_failed(tf_hs *hs, pu_io *p, tf_err err, int os)
{
    int got_os = -1;
    assert_int_equal(tf_hs_error(hs, &got_os), err);
    assert_int_equal(got_os, os);
    assert_int_equal(tf_hs_error(hs, NULL), err);
    /* Sticky: no io call, nothing offered, halves refuse. */
    size_t rc = p->rcalls, wc = p->wcalls;
    assert_int_equal(tf_hs_try(hs, &p->io), TF_ERROR);
    assert_int_equal(p->rcalls, rc);
    assert_int_equal(p->wcalls, wc);
    const uint8_t *out;
    uint8_t *in;
    assert_int_equal(tf_hs_out(hs, &out), 0);
    assert_int_equal(tf_hs_in(hs, &in), 0);
    assert_int_equal(tf_hs_sent(hs, 0), TF_ERROR);
    assert_int_equal(tf_hs_received(hs, 0), TF_ERROR);
    assert_int_equal(tf_hs_error(hs, NULL), err);
}

static void test_tf_hs_init_offers_magic(void **state)
{
    (void)state;
    tf_hs hs;
    tf_hs_init(&hs);
    const uint8_t *out = NULL;
    uint8_t *in = NULL;
    assert_int_equal(tf_hs_out(&hs, &out), 4);
    assert_memory_equal(out, MAGIC, 4);
    assert_int_equal(tf_hs_in(&hs, &in), 4);
    assert_non_null(in);
    assert_int_equal(tf_hs_error(&hs, NULL), TF_OK);
}

/* Sans-I/O: every split of our 4 bytes and of the peer's 4 bytes. */
static void test_tf_hs_sent_received_every_split(void **state)
{
    (void)state;
    for (size_t ws = 0; ws <= 4; ws++) {
        for (size_t rs = 0; rs <= 4; rs++) {
            tf_hs hs;
            tf_hs_init(&hs);
            uint8_t wire[4];
            size_t wl = 0;
            const uint8_t *out;
            size_t n = tf_hs_out(&hs, &out);
            assert_int_equal(n, 4);
            memcpy(wire, out, ws);
            wl = ws;
            tf_step st = tf_hs_sent(&hs, ws);
            assert_int_equal(st, TF_AGAIN);
            n = tf_hs_out(&hs, &out);
            assert_int_equal(n, 4 - ws);
            memcpy(wire + wl, out, n);
            st = tf_hs_sent(&hs, n);
            assert_int_equal(st, TF_AGAIN); /* nothing received yet */
            assert_memory_equal(wire, MAGIC, 4);
            assert_int_equal(tf_hs_out(&hs, &out), 0);

            uint8_t *in;
            n = tf_hs_in(&hs, &in);
            assert_int_equal(n, 4);
            memcpy(in, MAGIC, rs);
            st = tf_hs_received(&hs, rs);
            assert_int_equal(st, rs == 4 ? TF_DONE : TF_AGAIN);
            n = tf_hs_in(&hs, &in);
            assert_int_equal(n, 4 - rs);
            if (n) {
                memcpy(in, MAGIC + rs, n);
                assert_int_equal(tf_hs_received(&hs, n), TF_DONE);
            }
            assert_int_equal(tf_hs_in(&hs, &in), 0);
            assert_int_equal(tf_hs_error(&hs, NULL), TF_OK);
            /* Done stays done. */
            assert_int_equal(tf_hs_sent(&hs, 0), TF_DONE);
            assert_int_equal(tf_hs_received(&hs, 0), TF_DONE);
        }
    }
}

/* Receive first, then send: DONE comes with the last sent byte. */
static void test_tf_hs_sent_completes_after_received(void **state)
{
    (void)state;
    tf_hs hs;
    tf_hs_init(&hs);
    uint8_t *in;
    assert_int_equal(tf_hs_in(&hs, &in), 4);
    memcpy(in, MAGIC, 4);
    assert_int_equal(tf_hs_received(&hs, 4), TF_AGAIN);
    for (size_t i = 0; i < 4; i++) {
        const uint8_t *out;
        assert_int_equal(tf_hs_out(&hs, &out), 4 - i);
        assert_int_equal(*out, MAGIC[i]);
        assert_int_equal(tf_hs_sent(&hs, 1), i == 3 ? TF_DONE : TF_AGAIN);
    }
}

static void test_tf_hs_sent_too_many_is_sticky(void **state)
{
    (void)state;
    for (size_t pre = 0; pre < 4; pre++) {
        tf_hs hs;
        tf_hs_init(&hs);
        assert_int_equal(tf_hs_sent(&hs, pre), TF_AGAIN);
        assert_int_equal(tf_hs_sent(&hs, 4 - pre + 1), TF_ERROR);
        assert_int_equal(tf_hs_error(&hs, NULL), TF_ERR_INVALID_ARGUMENT);
        const uint8_t *out;
        assert_int_equal(tf_hs_out(&hs, &out), 0);
        assert_int_equal(tf_hs_sent(&hs, 1), TF_ERROR);
        /* A later wrong magic does not overwrite the first reason. */
        uint8_t *in;
        assert_int_equal(tf_hs_in(&hs, &in), 0);
        assert_int_equal(tf_hs_received(&hs, 1), TF_ERROR);
        assert_int_equal(tf_hs_error(&hs, NULL), TF_ERR_INVALID_ARGUMENT);
    }
    /* After all four were sent, any n > 0 is too many. */
    tf_hs hs;
    tf_hs_init(&hs);
    assert_int_equal(tf_hs_sent(&hs, 4), TF_AGAIN);
    assert_int_equal(tf_hs_sent(&hs, 1), TF_ERROR);
    assert_int_equal(tf_hs_error(&hs, NULL), TF_ERR_INVALID_ARGUMENT);
}

static void test_tf_hs_received_too_many_is_sticky(void **state)
{
    (void)state;
    for (size_t pre = 0; pre <= 4; pre++) {
        tf_hs hs;
        tf_hs_init(&hs);
        uint8_t *in;
        tf_hs_in(&hs, &in);
        memcpy(in, MAGIC, pre);
        assert_int_equal(tf_hs_received(&hs, pre), TF_AGAIN);
        assert_int_equal(tf_hs_received(&hs, 4 - pre + 1), TF_ERROR);
        assert_int_equal(tf_hs_error(&hs, NULL), TF_ERR_INVALID_ARGUMENT);
        assert_int_equal(tf_hs_in(&hs, &in), 0);
        assert_int_equal(tf_hs_received(&hs, 0), TF_ERROR);
        const uint8_t *out;
        assert_int_equal(tf_hs_out(&hs, &out), 0);
        assert_int_equal(tf_hs_sent(&hs, 4), TF_ERROR);
        assert_int_equal(tf_hs_error(&hs, NULL), TF_ERR_INVALID_ARGUMENT);
    }
}

/* Sans-I/O: each of the 4 bytes wrong fails as that byte lands. */
static void test_tf_hs_received_bad_magic_each_byte(void **state)
{
    (void)state;
    for (size_t bad = 0; bad < 4; bad++) {
        tf_hs hs;
        tf_hs_init(&hs);
        for (size_t i = 0; i <= bad; i++) {
            uint8_t *in;
            assert_int_equal(tf_hs_in(&hs, &in), 4 - i);
            *in = i == bad ? (uint8_t)(MAGIC[i] ^ 0x01u) : MAGIC[i];
            tf_step st = tf_hs_received(&hs, 1);
            assert_int_equal(st, i == bad ? TF_ERROR : TF_AGAIN);
        }
        assert_int_equal(tf_hs_error(&hs, NULL), TF_ERR_BAD_MAGIC);
        uint8_t *in;
        assert_int_equal(tf_hs_in(&hs, &in), 0);
        /* All four at once, one of them wrong. */
        tf_hs_init(&hs);
        tf_hs_in(&hs, &in);
        memcpy(in, MAGIC, 4);
        in[bad] = 0;
        assert_int_equal(tf_hs_received(&hs, 4), TF_ERROR);
        assert_int_equal(tf_hs_error(&hs, NULL), TF_ERR_BAD_MAGIC);
    }
}

/* tf_hs_wants follows each half: both, then the one left, then nothing; 0 once failed. */
static void test_tf_hs_wants_each_half(void **state)
{
    (void)state;
    tf_hs hs;
    uint8_t *in;
    tf_hs_init(&hs);
    assert_int_equal(tf_hs_wants(&hs), TF_WANT_READ | TF_WANT_WRITE);
    assert_int_equal(tf_hs_sent(&hs, 3), TF_AGAIN);
    assert_int_equal(tf_hs_wants(&hs), TF_WANT_READ | TF_WANT_WRITE);
    assert_int_equal(tf_hs_sent(&hs, 1), TF_AGAIN);
    assert_int_equal(tf_hs_wants(&hs), TF_WANT_READ);
    assert_int_equal(tf_hs_in(&hs, &in), 4);
    memcpy(in, MAGIC, 4);
    assert_int_equal(tf_hs_received(&hs, 4), TF_DONE);
    assert_int_equal(tf_hs_wants(&hs), 0);

    tf_hs_init(&hs);
    assert_int_equal(tf_hs_in(&hs, &in), 4);
    memcpy(in, MAGIC, 4);
    assert_int_equal(tf_hs_received(&hs, 4), TF_AGAIN);
    assert_int_equal(tf_hs_wants(&hs), TF_WANT_WRITE);
    assert_int_equal(tf_hs_sent(&hs, 5), TF_ERROR);
    assert_int_equal(tf_hs_wants(&hs), 0);
}

static void test_tf_hs_try_at_once(void **state)
{
    (void)state;
    pu_io *p = pu_new(MAGIC, 4);
    tf_hs hs;
    tf_hs_init(&hs);
    assert_int_equal(tf_hs_try(&hs, &p->io), TF_DONE);
    assert_int_equal(p->cap_len, 4);
    assert_memory_equal(p->cap, MAGIC, 4);
    assert_int_equal(p->wcalls, 1);
    assert_int_equal(p->wcnt[0], 1);
    assert_int_equal(p->wlen[0][0], 4);
    assert_int_equal(p->rcalls, 1);
    assert_int_equal(p->rlog[0], 4);
    assert_int_equal(tf_hs_error(&hs, NULL), TF_OK);
    /* Done stays done, without io. */
    assert_int_equal(tf_hs_try(&hs, &p->io), TF_DONE);
    assert_int_equal(p->rcalls, 1);
    assert_int_equal(p->wcalls, 1);
    free(p);
}

/* Writes and reads split at every position (a then 4-a; b then 4-b). */
static void test_tf_hs_try_split_every_position(void **state)
{
    (void)state;
    for (size_t a = 1; a <= 4; a++) {
        for (size_t b = 1; b <= 4; b++) {
            pu_io *p = pu_new(MAGIC, 4);
            pu_wpush(p, PU_BYTES(a));
            pu_rpush(p, PU_BYTES(b));
            tf_hs hs;
            tf_hs_init(&hs);
            assert_int_equal(tf_hs_try(&hs, &p->io), TF_DONE);
            assert_int_equal(p->cap_len, 4);
            assert_memory_equal(p->cap, MAGIC, 4);
            assert_int_equal(p->wcalls, a == 4 ? 1 : 2);
            assert_int_equal(p->rcalls, b == 4 ? 1 : 2);
            if (a < 4)
                assert_int_equal(p->wlen[1][0], 4 - a);
            if (b < 4)
                assert_int_equal(p->rlog[1], 4 - b); /* never asks past the magic */
            free(p);
        }
    }
}

static void test_tf_hs_try_per_byte(void **state)
{
    (void)state;
    pu_io *p = pu_new(MAGIC, 4);
    p->rdefault = PU_BYTES(1);
    p->wdefault = PU_BYTES(1);
    tf_hs hs;
    tf_hs_init(&hs);
    assert_int_equal(tf_hs_try(&hs, &p->io), TF_DONE);
    assert_memory_equal(p->cap, MAGIC, 4);
    assert_int_equal(p->cap_len, 4);
    assert_int_equal(p->wcalls, 4);
    assert_int_equal(p->rcalls, 4);
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(p->rlog[i], 4 - i);
        assert_int_equal(p->wlen[i][0], 4 - i);
    }
    free(p);
}

/* The write blocks throughout: the reads still proceed (no deadlock between two peers). */
static void test_tf_hs_try_write_blocked_reads_proceed(void **state)
{
    (void)state;
    pu_io *p = pu_new(MAGIC, 4);
    p->wdefault = PU_AGAIN;
    p->rdefault = PU_BYTES(1);
    tf_hs hs;
    tf_hs_init(&hs);
    assert_int_equal(tf_hs_try(&hs, &p->io), TF_AGAIN);
    assert_int_equal(p->src_pos, 4); /* the whole magic was read */
    assert_int_equal(p->cap_len, 0);
    uint8_t *in;
    assert_int_equal(tf_hs_in(&hs, &in), 0);
    const uint8_t *out;
    assert_int_equal(tf_hs_out(&hs, &out), 4);
    /* Still blocked: AGAIN, and no read is attempted once the magic is in. */
    size_t rc = p->rcalls;
    assert_int_equal(tf_hs_try(&hs, &p->io), TF_AGAIN);
    assert_int_equal(p->rcalls, rc);
    /* Unblocked. */
    p->wdefault = PU_ALL;
    assert_int_equal(tf_hs_try(&hs, &p->io), TF_DONE);
    assert_memory_equal(p->cap, MAGIC, 4);
    assert_int_equal(p->cap_len, 4);
    free(p);
}

/* The read blocks: our magic still goes out in full. */
static void test_tf_hs_try_read_blocked_write_proceeds(void **state)
{
    (void)state;
    pu_io *p = pu_new(MAGIC, 4);
    p->wdefault = PU_BYTES(1);
    p->rdefault = PU_AGAIN;
    tf_hs hs;
    tf_hs_init(&hs);
    assert_int_equal(tf_hs_try(&hs, &p->io), TF_AGAIN);
    assert_int_equal(p->cap_len, 4);
    assert_memory_equal(p->cap, MAGIC, 4);
    size_t wc = p->wcalls;
    assert_int_equal(tf_hs_try(&hs, &p->io), TF_AGAIN);
    assert_int_equal(p->wcalls, wc); /* nothing left to write */
    p->rdefault = PU_ALL;
    assert_int_equal(tf_hs_try(&hs, &p->io), TF_DONE);
    free(p);
}

/* AGAIN at every point of both directions, then resumed to completion. */
static void test_tf_hs_try_again_every_point(void **state)
{
    (void)state;
    for (size_t wa = 0; wa <= 4; wa++) {
        for (size_t ra = 0; ra <= 4; ra++) {
            pu_io *p = pu_new(MAGIC, 4);
            /* wa bytes, then AGAIN, then the rest; likewise for reads. */
            for (size_t i = 0; i < wa; i++)
                pu_wpush(p, PU_BYTES(1));
            pu_wpush(p, PU_AGAIN);
            for (size_t i = 0; i < ra; i++)
                pu_rpush(p, PU_BYTES(1));
            pu_rpush(p, PU_AGAIN);
            p->rdefault = PU_BYTES(1);
            p->wdefault = PU_BYTES(1);
            tf_hs hs;
            tf_hs_init(&hs);
            int agains = 0;
            assert_int_equal(hs_drive(&hs, p, 10, &agains), TF_DONE);
            /* AGAIN only when both directions block in the same round: with wa == ra < 4 the
             * two blocks coincide; otherwise one side's progress keeps the step going. */
            assert_int_equal(agains, wa == ra && wa < 4 ? 1 : 0);
            assert_int_equal(p->cap_len, 4);
            assert_memory_equal(p->cap, MAGIC, 4);
            assert_int_equal(p->src_pos, 4);
            free(p);
        }
    }
}

/* Interrupted calls are retried inside the step. */
static void test_tf_hs_try_intr_retried(void **state)
{
    (void)state;
    pu_io *p = pu_new(MAGIC, 4);
    for (int i = 0; i < 5; i++) {
        pu_wpush(p, PU_INTR);
        pu_rpush(p, PU_INTR);
    }
    pu_wpush(p, PU_BYTES(2));
    pu_wpush(p, PU_INTR);
    pu_rpush(p, PU_BYTES(3));
    pu_rpush(p, PU_INTR);
    tf_hs hs;
    tf_hs_init(&hs);
    assert_int_equal(tf_hs_try(&hs, &p->io), TF_DONE);
    assert_memory_equal(p->cap, MAGIC, 4);
    assert_int_equal(p->cap_len, 4);
    free(p);
}

/* TF_MAX_INTR interrupted answers in a row give AGAIN; the next try resumes. */
static void test_tf_hs_try_max_intr_gives_again(void **state)
{
    (void)state;
    pu_io *p = pu_new(MAGIC, 4);
    pu_wpush(p, PU_ALL);
    for (unsigned i = 0; i < TF_MAX_INTR; i++)
        pu_rpush(p, PU_INTR);
    tf_hs hs;
    tf_hs_init(&hs);
    assert_int_equal(tf_hs_try(&hs, &p->io), TF_AGAIN);
    assert_int_equal(p->rcalls, TF_MAX_INTR);
    assert_int_equal(p->ri, TF_MAX_INTR);
    assert_int_equal(tf_hs_try(&hs, &p->io), TF_DONE);
    assert_int_equal(tf_hs_error(&hs, NULL), TF_OK);
    free(p);
}

/* Both directions interrupted without end: AGAIN after TF_MAX_INTR interrupted answers in
 * all (the step counts them together), then the handshake resumes. */
static void test_tf_hs_try_max_intr_both_directions(void **state)
{
    (void)state;
    pu_io *p = pu_new(MAGIC, 4);
    p->rdefault = PU_INTR;
    p->wdefault = PU_INTR;
    tf_hs hs;
    tf_hs_init(&hs);
    assert_int_equal(tf_hs_try(&hs, &p->io), TF_AGAIN);
    assert_int_equal(p->rcalls + p->wcalls, TF_MAX_INTR);
    assert_int_equal(p->cap_len, 0);
    assert_int_equal(p->src_pos, 0);
    assert_int_equal(tf_hs_error(&hs, NULL), TF_OK);
    p->rdefault = PU_ALL;
    p->wdefault = PU_ALL;
    assert_int_equal(tf_hs_try(&hs, &p->io), TF_DONE);
    assert_memory_equal(p->cap, MAGIC, 4);
    free(p);
}

/* Interrupted answers separated by progress are not consecutive: no spurious AGAIN. */
static void test_tf_hs_try_intr_count_resets_on_progress(void **state)
{
    (void)state;
    pu_io *p = pu_new(MAGIC, 4);
    pu_wpush(p, PU_ALL);
    for (int b = 0; b < 4; b++) {
        for (unsigned i = 0; i + 1 < TF_MAX_INTR; i++)
            pu_rpush(p, PU_INTR);
        pu_rpush(p, PU_BYTES(1));
    }
    tf_hs hs;
    tf_hs_init(&hs);
    assert_int_equal(tf_hs_try(&hs, &p->io), TF_DONE);
    assert_int_equal(p->rcalls, 4 * TF_MAX_INTR);
    free(p);
}

/* Each of the 4 bytes wrong: fails at that byte, the later bytes are never read. */
static void test_tf_hs_try_bad_magic_each_byte(void **state)
{
    (void)state;
    for (size_t bad = 0; bad < 4; bad++) {
        uint8_t peer[4];
        memcpy(peer, MAGIC, 4);
        peer[bad] = (uint8_t)(peer[bad] ^ 0x80u);
        pu_io *p = pu_new(peer, 4);
        p->rdefault = PU_BYTES(1);
        tf_hs hs;
        tf_hs_init(&hs);
        assert_int_equal(tf_hs_try(&hs, &p->io), TF_ERROR);
        assert_int_equal(p->rcalls, bad + 1);
        assert_int_equal(p->src_pos, bad + 1);
        assert_hs_failed(&hs, p, TF_ERR_BAD_MAGIC, 0);
        free(p);
        /* Also when the bytes come all at once. */
        p = pu_new(peer, 4);
        tf_hs_init(&hs);
        assert_int_equal(tf_hs_try(&hs, &p->io), TF_ERROR);
        assert_hs_failed(&hs, p, TF_ERR_BAD_MAGIC, 0);
        free(p);
    }
    /* An entirely different peer (e.g. an HTTP client). */
    static const uint8_t http[] = "GET / HTTP/1.1\r\n";
    pu_io *p = pu_new(http, sizeof http - 1);
    tf_hs hs;
    tf_hs_init(&hs);
    assert_int_equal(tf_hs_try(&hs, &p->io), TF_ERROR);
    assert_int_equal(p->src_pos, 4);
    assert_hs_failed(&hs, p, TF_ERR_BAD_MAGIC, 0);
    free(p);
}

/* The peer closes after 0 bytes: CLOSED; after 1..3: TRUNCATED. */
static void test_tf_hs_try_peer_closed(void **state)
{
    (void)state;
    for (size_t k = 0; k < 4; k++) {
        pu_io *p = pu_new(MAGIC, k); /* the source ends after k bytes: then EOF */
        p->rdefault = PU_BYTES(1);
        tf_hs hs;
        tf_hs_init(&hs);
        assert_int_equal(tf_hs_try(&hs, &p->io), TF_ERROR);
        assert_int_equal(p->rcalls, k + 1);
        assert_hs_failed(&hs, p, k == 0 ? TF_ERR_CLOSED : TF_ERR_TRUNCATED, 0);
        free(p);
    }
}

/* write returning 0 means the peer closed: CLOSED before any peer byte, TRUNCATED after some. */
static void test_tf_hs_try_write_returns_zero(void **state)
{
    (void)state;
    pu_io *p = pu_new(MAGIC, 4);
    pu_wpush(p, PU_EOF);
    tf_hs hs;
    tf_hs_init(&hs);
    assert_int_equal(tf_hs_try(&hs, &p->io), TF_ERROR);
    assert_int_equal(p->rcalls, 0);
    assert_hs_failed(&hs, p, TF_ERR_CLOSED, 0);
    free(p);

    p = pu_new(MAGIC, 4);
    pu_wpush(p, PU_AGAIN);
    pu_wpush(p, PU_EOF);
    pu_rpush(p, PU_BYTES(2));
    tf_hs_init(&hs);
    assert_int_equal(tf_hs_try(&hs, &p->io), TF_ERROR);
    assert_hs_failed(&hs, p, TF_ERR_TRUNCATED, 0);
    free(p);
}

/* TF_IO_FAIL keeps the OS error, on either direction. */
static void test_tf_hs_try_io_fail_keeps_os_error(void **state)
{
    (void)state;
    pu_io *p = pu_new(MAGIC, 4);
    pu_wpush(p, PU_OSFAIL(32));
    tf_hs hs;
    tf_hs_init(&hs);
    assert_int_equal(tf_hs_try(&hs, &p->io), TF_ERROR);
    assert_hs_failed(&hs, p, TF_ERR_IO, 32);
    free(p);

    p = pu_new(MAGIC, 4);
    pu_rpush(p, PU_BYTES(1));
    pu_rpush(p, PU_OSFAIL(104));
    tf_hs_init(&hs);
    assert_int_equal(tf_hs_try(&hs, &p->io), TF_ERROR);
    assert_int_equal(p->cap_len, 4);
    assert_hs_failed(&hs, p, TF_ERR_IO, 104);
    free(p);
}

/* An io that breaks its contract: more than asked, or an unknown negative answer. */
static void test_tf_hs_try_io_breaks_contract(void **state)
{
    (void)state;
    static const long bad[] = {5, 1000, -4, -100};
    for (size_t i = 0; i < PU_ARRAY_LEN(bad); i++) {
        for (int dir = 0; dir < 2; dir++) {
            pu_io *p = pu_new(MAGIC, 4);
            if (dir == 0)
                pu_wpush(p, PU_RAWV(bad[i]));
            else
                pu_rpush(p, PU_RAWV(bad[i]));
            tf_hs hs;
            tf_hs_init(&hs);
            assert_int_equal(tf_hs_try(&hs, &p->io), TF_ERROR);
            assert_hs_failed(&hs, p, TF_ERR_INVALID_ARGUMENT, 0);
            free(p);
        }
    }
    /* More than asked after a partial read: asked 3, got 4. */
    pu_io *p = pu_new(MAGIC, 4);
    pu_rpush(p, PU_BYTES(1));
    pu_rpush(p, PU_RAWV(4));
    tf_hs hs;
    tf_hs_init(&hs);
    assert_int_equal(tf_hs_try(&hs, &p->io), TF_ERROR);
    assert_hs_failed(&hs, p, TF_ERR_INVALID_ARGUMENT, 0);
    free(p);
}

/* Two handshakes against each other over a pipe pair with random partial I/O. */
static void test_tf_hs_try_two_peers(void **state)
{
    (void)state;
    for (uint32_t seed = 1; seed < 50; seed++) {
        pu_pipe ab, ba;
        pu_pipe_init(&ab, seed);
        pu_pipe_init(&ba, seed * 31u + 7u);
        /* a writes ab and reads ba; b writes ba and reads ab. */
        tf_hs a, b;
        tf_hs_init(&a);
        tf_hs_init(&b);
        tf_step sa = TF_AGAIN, sb = TF_AGAIN;
        for (int i = 0; i < 1000 && (sa != TF_DONE || sb != TF_DONE); i++) {
            /* Drive the sans-I/O halves of each side over the two pipes. */
            const uint8_t *out;
            uint8_t *in;
            size_t n;
            tf_iov iov;
            long r;
            n = tf_hs_out(&a, &out);
            if (n) {
                iov.base = out;
                iov.len = n;
                r = pu_pipe_write(&ab, &iov, 1, NULL);
                if (r > 0)
                    sa = tf_hs_sent(&a, (size_t)r);
            }
            n = tf_hs_out(&b, &out);
            if (n) {
                iov.base = out;
                iov.len = n;
                r = pu_pipe_write(&ba, &iov, 1, NULL);
                if (r > 0)
                    sb = tf_hs_sent(&b, (size_t)r);
            }
            n = tf_hs_in(&a, &in);
            if (n) {
                r = pu_pipe_read(&ba, in, n, NULL);
                if (r > 0)
                    sa = tf_hs_received(&a, (size_t)r);
            }
            n = tf_hs_in(&b, &in);
            if (n) {
                r = pu_pipe_read(&ab, in, n, NULL);
                if (r > 0)
                    sb = tf_hs_received(&b, (size_t)r);
            }
        }
        assert_int_equal(sa, TF_DONE);
        assert_int_equal(sb, TF_DONE);
        assert_int_equal(ab.moved_w, 4);
        assert_int_equal(ba.moved_w, 4);
        assert_int_equal(ab.fill, 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tf_hs_init_offers_magic),
        cmocka_unit_test(test_tf_hs_sent_received_every_split),
        cmocka_unit_test(test_tf_hs_sent_completes_after_received),
        cmocka_unit_test(test_tf_hs_sent_too_many_is_sticky),
        cmocka_unit_test(test_tf_hs_received_too_many_is_sticky),
        cmocka_unit_test(test_tf_hs_received_bad_magic_each_byte),
        cmocka_unit_test(test_tf_hs_wants_each_half),
        cmocka_unit_test(test_tf_hs_try_at_once),
        cmocka_unit_test(test_tf_hs_try_split_every_position),
        cmocka_unit_test(test_tf_hs_try_per_byte),
        cmocka_unit_test(test_tf_hs_try_write_blocked_reads_proceed),
        cmocka_unit_test(test_tf_hs_try_read_blocked_write_proceeds),
        cmocka_unit_test(test_tf_hs_try_again_every_point),
        cmocka_unit_test(test_tf_hs_try_intr_retried),
        cmocka_unit_test(test_tf_hs_try_max_intr_gives_again),
        cmocka_unit_test(test_tf_hs_try_max_intr_both_directions),
        cmocka_unit_test(test_tf_hs_try_intr_count_resets_on_progress),
        cmocka_unit_test(test_tf_hs_try_bad_magic_each_byte),
        cmocka_unit_test(test_tf_hs_try_peer_closed),
        cmocka_unit_test(test_tf_hs_try_write_returns_zero),
        cmocka_unit_test(test_tf_hs_try_io_fail_keeps_os_error),
        cmocka_unit_test(test_tf_hs_try_io_breaks_contract),
        cmocka_unit_test(test_tf_hs_try_two_peers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
