/* hs.c -- the handshake (SPEC 4): send our magic, check the peer's byte by byte. */
#include "core.h"

void tf_hs_init(tf_hs *hs)
{
    tf_be32_put(hs->out, TF_MAGIC);
    hs->in[0] = hs->in[1] = hs->in[2] = hs->in[3] = 0;
    hs->sent = 0;
    hs->got = 0;
    hs->state = TF_HS_RUNNING;
    hs->err = TF_OK;
    hs->os_err = 0;
}

static tf_step hs_fail(tf_hs *hs, tf_err err, int os_err)
{
    hs->state = TF_HS_FAILED;
    hs->err = err;
    hs->os_err = os_err;
    return TF_ERROR;
}

static tf_step hs_outcome(tf_hs *hs)
{
    if (hs->sent == 4 && hs->got == 4) {
        hs->state = TF_HS_DONE;
        return TF_DONE;
    }
    return TF_AGAIN;
}

size_t tf_hs_out(tf_hs *hs, const uint8_t **out)
{
    *out = hs->out + hs->sent;
    return hs->state == TF_HS_FAILED ? 0 : 4u - hs->sent;
}

tf_step tf_hs_sent(tf_hs *hs, size_t n)
{
    if (hs->state == TF_HS_FAILED)
        return TF_ERROR;
    if (n > 4u - hs->sent)
        return hs_fail(hs, TF_ERR_INVALID_ARGUMENT, 0);
    hs->sent += (uint32_t)n;
    return hs_outcome(hs);
}

size_t tf_hs_in(tf_hs *hs, uint8_t **in)
{
    *in = hs->in + hs->got;
    return hs->state == TF_HS_FAILED ? 0 : 4u - hs->got;
}

tf_step tf_hs_received(tf_hs *hs, size_t n)
{
    if (hs->state == TF_HS_FAILED)
        return TF_ERROR;
    if (n > 4u - hs->got)
        return hs_fail(hs, TF_ERR_INVALID_ARGUMENT, 0);
    uint32_t end = hs->got + (uint32_t)n;
    /* SPEC 4.2: compare each byte as it lands, so a wrong peer fails at its first wrong byte. */
    for (uint32_t i = hs->got; i < end; i++) {
        if (hs->in[i] != hs->out[i])
            return hs_fail(hs, TF_ERR_BAD_MAGIC, 0);
        hs->got = i + 1;
    }
    return hs_outcome(hs);
}

/* One write of the rest of our magic: 1 if bytes moved or the call was interrupted, 0 if there
 * was nothing to send or it would block, -1 if the handshake failed. */
static int hs_write_once(tf_hs *hs, const tf_io *io, unsigned *intr)
{
    const uint8_t *out;
    size_t want = tf_hs_out(hs, &out);
    if (want == 0)
        return 0;
    tf_iov iov = {out, want};
    int os_err = 0;
    tf_err err = TF_OK;
    long r = io->write(io->ctx, &iov, 1, &os_err);
    if (r > 0) {
        *intr = 0; /* progress: the interrupted answers so far were not consecutive */
        return tf_hs_sent(hs, (size_t)r) == TF_ERROR ? -1 : 1;
    }
    int a = tf__io_answer(r, hs->got == 0 ? TF_ERR_CLOSED : TF_ERR_TRUNCATED, &err);
    if (a < 0)
        return (int)hs_fail(hs, err, os_err);
    *intr += (unsigned)a;
    return a;
}

/* One read of the rest of the peer's magic; answers as hs_write_once. */
static int hs_read_once(tf_hs *hs, const tf_io *io, unsigned *intr)
{
    uint8_t *in;
    size_t want = tf_hs_in(hs, &in);
    if (want == 0)
        return 0;
    int os_err = 0;
    tf_err err = TF_OK;
    long r = io->read(io->ctx, in, want, &os_err);
    if (r > 0) {
        *intr = 0; /* progress: the interrupted answers so far were not consecutive */
        return tf_hs_received(hs, (size_t)r) == TF_ERROR ? -1 : 1;
    }
    int a = tf__io_answer(r, hs->got == 0 ? TF_ERR_CLOSED : TF_ERR_TRUNCATED, &err);
    if (a < 0)
        return (int)hs_fail(hs, err, os_err);
    *intr += (unsigned)a;
    return a;
}

tf_step tf_hs_try(tf_hs *hs, const tf_io *io)
{
    unsigned intr = 0;
    for (;;) {
        if (hs->state != TF_HS_RUNNING)
            return hs->state == TF_HS_DONE ? TF_DONE : TF_ERROR;
        /* SPEC 4.3: read even when the write would block, so that peers cannot deadlock. */
        int w = hs_write_once(hs, io, &intr);
        if (w < 0)
            return TF_ERROR;
        int r = hs_read_once(hs, io, &intr);
        if (r < 0)
            return TF_ERROR;
        if (hs->state == TF_HS_DONE)
            return TF_DONE;
        if ((w == 0 && r == 0) || intr >= TF_MAX_INTR)
            return TF_AGAIN;
    }
}

tf_err tf_hs_error(const tf_hs *hs, int *os_err)
{
    if (os_err)
        *os_err = hs->os_err;
    return hs->err;
}
