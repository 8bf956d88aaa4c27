/* tests/test_fdio.c -- tf_fdio and tf_fd_wait over real fds: non-blocking socketpairs and
 * pipes. Every mapping of the tf_io contract (bytes, EOF, EAGAIN, EINTR, errno), the handshake
 * and messages of 0, 1, 4095 and 1 MiB + 3 bytes through the proto/ try-steps (span and alloc
 * sinks), closes between and inside messages, EPIPE without SIGPIPE, over-long lengths, full
 * socket buffers. Single-threaded: both peers are driven alternately from the test thread, and
 * a side that cannot progress waits with tf_fd_wait against a deadline (never a sleep). EINTR is
 * provoked with a POSIX timer signalling SIGUSR1 (installed without SA_RESTART) while a
 * blocking call waits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>

#include "tcpframe/fdio.h"
#include "tcpframe/proto.h"
#include "test_io_util.h"

#define DEADLINE_MS 10000
#define BIG (1048576u + 3u)

/* ---------------------------------------------------------------- two peers */

/* One end of a link: the fds it reads and writes (equal for a socket) and its tf_fdio. */
typedef struct peer {
    int rfd, wfd;
    tf_fdio f;
} peer;

typedef struct link2 {
    peer a, b;
    int fds[4]; /* every fd of the link, -1 once closed */
} link2;

static void set_nonblock(int fd, int on)
{
    int fl = fcntl(fd, F_GETFL);
    assert_true(fl >= 0);
    assert_int_equal(fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK), 0);
}

static void link_socketpair(link2 *l)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    l->a.rfd = l->a.wfd = sv[0];
    l->b.rfd = l->b.wfd = sv[1];
    l->fds[0] = sv[0];
    l->fds[1] = sv[1];
    l->fds[2] = l->fds[3] = -1;
    tf_fdio_init(&l->a.f, l->a.rfd, l->a.wfd);
    tf_fdio_init(&l->b.f, l->b.rfd, l->b.wfd);
}

/* Two pipes: a -> b and b -> a. */
static void link_pipes(link2 *l)
{
    int ab[2], ba[2];
    assert_int_equal(pipe2(ab, O_NONBLOCK | O_CLOEXEC), 0);
    assert_int_equal(pipe2(ba, O_NONBLOCK | O_CLOEXEC), 0);
    l->a.wfd = ab[1];
    l->b.rfd = ab[0];
    l->b.wfd = ba[1];
    l->a.rfd = ba[0];
    l->fds[0] = ab[0];
    l->fds[1] = ab[1];
    l->fds[2] = ba[0];
    l->fds[3] = ba[1];
    tf_fdio_init(&l->a.f, l->a.rfd, l->a.wfd);
    tf_fdio_init(&l->b.f, l->b.rfd, l->b.wfd);
}

static void close_fd(link2 *l, int fd)
{
    for (int i = 0; i < 4; i++)
        if (l->fds[i] == fd) {
            assert_int_equal(close(fd), 0);
            l->fds[i] = -1;
            return;
        }
    fail_msg("fd %d is not open in this link", fd);
}

/* Close everything |p| holds (its peer's ends stay open). */
static void close_peer(link2 *l, peer *p)
{
    close_fd(l, p->rfd);
    if (p->wfd != p->rfd)
        close_fd(l, p->wfd);
}

static void link_close(link2 *l)
{
    for (int i = 0; i < 4; i++)
        if (l->fds[i] >= 0) {
            close(l->fds[i]);
            l->fds[i] = -1;
        }
}

static const tf_io *io_of(peer *p)
{
    return tf_fdio_io(&p->f);
}

static int left_ms(long long deadline)
{
    long long l = deadline - tio_now_ms();
    return l > 0 ? (int)l : 0;
}

/* Wait until fd is ready for ev; the deadline passing fails the test. */
static void wait_ready(int fd, short ev, long long deadline)
{
    tf_err e = tf_fd_wait(fd, ev, left_ms(deadline));
    if (e != TF_OK)
        fail_msg("tf_fd_wait(%d, %d): %s (errno %d)", fd, ev, tf_err_name(e), errno);
}

/* Fill fd (non-blocking) until the kernel takes not even one more byte; returns the count. */
static size_t fill(int fd)
{
    static uint8_t junk[65536];
    size_t total = 0, chunk = sizeof junk;
    for (;;) {
        ssize_t n = write(fd, junk, chunk);
        if (n > 0) {
            total += (size_t)n;
            continue;
        }
        assert_true(n < 0 && errno == EAGAIN);
        if (chunk == 1)
            return total;
        chunk /= 2;
    }
}

/* Read and discard everything readable now. */
static size_t drain(int fd)
{
    static uint8_t junk[65536];
    size_t total = 0;
    for (;;) {
        ssize_t n = read(fd, junk, sizeof junk);
        if (n <= 0)
            return total;
        total += (size_t)n;
    }
}

/* ---------------------------------------------------------------- EINTR provocation */

static volatile sig_atomic_t g_usr1;

static void on_usr1(int sig)
{
    (void)sig;
    g_usr1 = g_usr1 + 1;
}

/* SIGUSR1 every |period_ms| ms (first after one period), its handler installed WITHOUT
 * SA_RESTART so that a blocking syscall it interrupts fails with EINTR. */
static timer_t intr_start(long period_ms)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    assert_int_equal(sigaction(SIGUSR1, &sa, NULL), 0);
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_SIGNAL;
    sev.sigev_signo = SIGUSR1;
    timer_t t;
    assert_int_equal(timer_create(CLOCK_MONOTONIC, &sev, &t), 0);
    struct itimerspec its;
    memset(&its, 0, sizeof its);
    its.it_value.tv_nsec = period_ms * 1000000L;
    its.it_interval.tv_nsec = period_ms * 1000000L;
    g_usr1 = 0;
    assert_int_equal(timer_settime(t, 0, &its, NULL), 0);
    return t;
}

static void intr_stop(timer_t t)
{
    assert_int_equal(timer_delete(t), 0);
}

/* ---------------------------------------------------------------- protocol drivers */

/* Handshake between a and b, alternating tf_hs_try on both until both are DONE. */
static void handshake(peer *a, peer *b)
{
    tf_hs ha, hb;
    tf_hs_init(&ha);
    tf_hs_init(&hb);
    bool da = false, db = false;
    long long deadline = tio_now_ms() + DEADLINE_MS;
    while (!da || !db) {
        if (!da) {
            tf_step s = tf_hs_try(&ha, io_of(a));
            assert_int_not_equal(s, TF_ERROR);
            da = s == TF_DONE;
        }
        if (!db) {
            tf_step s = tf_hs_try(&hb, io_of(b));
            assert_int_not_equal(s, TF_ERROR);
            db = s == TF_DONE;
        }
        if (!da && db)
            wait_ready(a->rfd, POLLIN, deadline);
        else if (da && !db)
            wait_ready(b->rfd, POLLIN, deadline);
    }
    assert_int_equal(tf_hs_error(&ha, NULL), TF_OK);
    assert_int_equal(tf_hs_error(&hb, NULL), TF_OK);
}

static uint8_t *alloc_cb(void *ctx, size_t len)
{
    size_t *count = ctx;
    (*count)++;
    return malloc(len);
}

/* Send one message from |from| (sender tx) to |to| (receiver rx) into |sink|: tf_tx_try and
 * tf_rx_try alternate; when neither can move, wait for the fd that must become ready. Checks
 * the payload; returns how many times the transfer had to wait (tf_fd_wait). */
static unsigned transfer(peer *from, tf_tx *tx, peer *to, tf_rx *rx, const tf_sink *sink,
                         const uint8_t *payload, size_t len)
{
    assert_int_equal(tf_tx_begin(tx, payload, len), TF_OK);
    bool tdone = false, rdone = false;
    tf_msg msg = {NULL, 0};
    unsigned waits = 0;
    long long deadline = tio_now_ms() + DEADLINE_MS;
    while (!tdone || !rdone) {
        tf_step ts = TF_DONE, rs = TF_DONE;
        if (!tdone) {
            ts = tf_tx_try(tx, io_of(from));
            if (ts == TF_ERROR)
                fail_msg("tx: %s", tf_err_name(tf_tx_error(tx, NULL)));
            tdone = ts == TF_DONE;
        }
        if (!rdone) {
            rs = tf_rx_try(rx, io_of(to), sink, &msg);
            if (rs == TF_ERROR)
                fail_msg("rx: %s", tf_err_name(tf_rx_error(rx, NULL)));
            rdone = rs == TF_DONE;
        }
        if (!rdone && tdone) {
            wait_ready(to->rfd, POLLIN, deadline);
            waits++;
        } else if (ts == TF_AGAIN && rs == TF_AGAIN) {
            /* The receiver just drained what it could: the sender's buffer has room again. */
            wait_ready(from->wfd, POLLOUT, deadline);
            waits++;
        }
    }
    assert_int_equal(msg.len, len);
    if (len == 0) {
        assert_null(msg.data);
    } else {
        assert_non_null(msg.data);
        assert_memory_equal(msg.data, payload, len);
        if (sink->alloc == NULL)
            assert_ptr_equal(msg.data, sink->buf);
        else
            free(msg.data);
    }
    return waits;
}

/* Receive until the receiver stops with an error; returns it. */
static tf_err rx_until_error(peer *to, tf_rx *rx, const tf_sink *sink)
{
    long long deadline = tio_now_ms() + DEADLINE_MS;
    for (;;) {
        tf_msg msg;
        tf_step s = tf_rx_try(rx, io_of(to), sink, &msg);
        if (s == TF_ERROR)
            return tf_rx_error(rx, NULL);
        if (s == TF_DONE) {
            if (sink->alloc)
                free(msg.data);
            continue;
        }
        wait_ready(to->rfd, POLLIN, deadline);
    }
}

static uint8_t *pattern(size_t len, uint32_t seed)
{
    uint8_t *p = malloc(len ? len : 1);
    assert_non_null(p);
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(tio_rand(&s) >> 56);
    return p;
}

/* ---------------------------------------------------------------- the tf_io answers */

static void test_tf_fdio_init_wires_io(void **state)
{
    (void)state;
    tf_fdio f;
    tf_fdio_init(&f, 3, 4);
    const tf_io *io = tf_fdio_io(&f);
    assert_non_null(io);
    assert_ptr_equal(io->ctx, &f);
    assert_non_null(io->read);
    assert_non_null(io->write);
}

static void test_tf_fdio_read_maps_bytes_eof_again_errno(void **state)
{
    (void)state;
    link2 l;
    link_socketpair(&l);
    const tf_io *io = io_of(&l.a);
    uint8_t buf[16];
    int os = 0;

    assert_int_equal(io->read(io->ctx, buf, sizeof buf, &os), TF_IO_AGAIN);
    assert_int_equal(write(l.b.wfd, "abc", 3), 3);
    assert_int_equal(io->read(io->ctx, buf, 1, &os), 1); /* never more than asked */
    assert_int_equal(buf[0], 'a');
    assert_int_equal(io->read(io->ctx, buf, sizeof buf, &os), 2);
    assert_memory_equal(buf, "bc", 2);
    assert_int_equal(io->read(io->ctx, buf, sizeof buf, &os), TF_IO_AGAIN);
    assert_int_equal(os, 0); /* untouched unless FAIL */
    close_peer(&l, &l.b);
    assert_int_equal(io->read(io->ctx, buf, sizeof buf, &os), 0); /* peer closed */
    link_close(&l);

    /* Errors: a closed fd number, and the write end of a pipe. */
    tf_fdio f;
    tf_fdio_init(&f, -1, -1);
    os = 0;
    assert_int_equal(f.io.read(f.io.ctx, buf, sizeof buf, &os), TF_IO_FAIL);
    assert_int_equal(os, EBADF);
    int p[2];
    assert_int_equal(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    tf_fdio_init(&f, p[1], p[1]);
    os = 0;
    assert_int_equal(f.io.read(f.io.ctx, buf, sizeof buf, &os), TF_IO_FAIL);
    assert_int_equal(os, EBADF);
    close(p[0]);
    close(p[1]);
}

static void check_write_maps(link2 *l)
{
    const tf_io *io = io_of(&l->a);
    int os = 0;
    const uint8_t x[] = "hello, ", y[] = "world";
    tf_iov iov[2] = {{x, 7}, {y, 5}};
    assert_int_equal(io->write(io->ctx, iov, 2, &os), 12);
    assert_int_equal(io->write(io->ctx, iov + 1, 1, &os), 5);
    uint8_t buf[32];
    assert_int_equal(read(l->b.rfd, buf, sizeof buf), 17);
    assert_memory_equal(buf, "hello, worldworld", 17);

    /* Contract violations the callback refuses without writing. */
    os = 0;
    assert_int_equal(io->write(io->ctx, iov, 0, &os), TF_IO_FAIL);
    assert_int_equal(os, EINVAL);
    os = 0;
    assert_int_equal(io->write(io->ctx, iov, 3, &os), TF_IO_FAIL);
    assert_int_equal(os, EINVAL);
    os = 0;
    assert_int_equal(io->write(io->ctx, NULL, 1, &os), TF_IO_FAIL);
    assert_int_equal(os, EINVAL);
    assert_int_equal(read(l->b.rfd, buf, sizeof buf), -1);
    assert_int_equal(errno, EAGAIN);

    /* Full: AGAIN, nothing written; the peer drains; room again. */
    size_t filled = fill(l->a.wfd);
    assert_true(filled > 0);
    os = 0;
    assert_int_equal(io->write(io->ctx, iov, 2, &os), TF_IO_AGAIN);
    assert_int_equal(os, 0);
    assert_int_equal(drain(l->b.rfd), filled);
    assert_int_equal(io->write(io->ctx, iov, 1, &os), 7);
}

static void test_tf_fdio_write_maps_socketpair(void **state)
{
    (void)state;
    link2 l;
    link_socketpair(&l);
    check_write_maps(&l);
    assert_int_equal(l.a.f.wmode, 0); /* still sendmsg */
    link_close(&l);

    tf_fdio f;
    tf_fdio_init(&f, -1, -1);
    int os = 0;
    tf_iov iov = {(const uint8_t *)"x", 1};
    assert_int_equal(f.io.write(f.io.ctx, &iov, 1, &os), TF_IO_FAIL);
    assert_int_equal(os, EBADF);
}

/* A pipe is not a socket: the first write falls back from sendmsg to writev (ENOTSOCK never
 * reaches the caller) and stays there. */
static void test_tf_fdio_write_maps_pipe_enotsock_fallback(void **state)
{
    (void)state;
    link2 l;
    link_pipes(&l);
    assert_int_equal(l.a.f.wmode, 0);
    check_write_maps(&l);
    assert_int_equal(l.a.f.wmode, 1);
    link_close(&l);
}

/* EINTR before any byte moved -> TF_IO_INTR, for read and for both write paths. The fds are
 * blocking here so that the call sleeps until the timer's signal interrupts it. */
static void test_tf_fdio_eintr_maps_to_intr(void **state)
{
    (void)state;
    uint8_t buf[8];
    int os = 0;
    tf_iov iov = {(const uint8_t *)"z", 1};

    link2 l;
    link_pipes(&l);
    set_nonblock(l.b.rfd, 0);
    timer_t t = intr_start(20);
    assert_int_equal(l.b.f.io.read(l.b.f.io.ctx, buf, sizeof buf, &os), TF_IO_INTR);
    intr_stop(t);
    fill(l.a.wfd);
    set_nonblock(l.a.wfd, 0);
    t = intr_start(20);
    assert_int_equal(l.a.f.io.write(l.a.f.io.ctx, &iov, 1, &os), TF_IO_INTR);
    intr_stop(t);
    assert_int_equal(os, 0);
    link_close(&l);

    link_socketpair(&l);
    fill(l.a.wfd);
    set_nonblock(l.a.wfd, 0);
    t = intr_start(20);
    assert_int_equal(l.a.f.io.write(l.a.f.io.ctx, &iov, 1, &os), TF_IO_INTR);
    assert_int_equal(l.a.f.io.read(l.a.f.io.ctx, buf, sizeof buf, &os), TF_IO_INTR);
    intr_stop(t);
    assert_int_equal(l.a.f.wmode, 0);
    assert_true(g_usr1 >= 2);
    link_close(&l);
}

/* ---------------------------------------------------------------- handshake */

static void test_tf_fdio_handshake_socketpair(void **state)
{
    (void)state;
    link2 l;
    link_socketpair(&l);
    handshake(&l.a, &l.b);
    /* Nothing left over on either side. */
    uint8_t c;
    assert_int_equal(read(l.a.rfd, &c, 1), -1);
    assert_int_equal(read(l.b.rfd, &c, 1), -1);
    link_close(&l);
}

static void test_tf_fdio_handshake_pipes(void **state)
{
    (void)state;
    link2 l;
    link_pipes(&l);
    handshake(&l.a, &l.b);
    link_close(&l);
}

static void test_tf_fdio_handshake_bad_magic(void **state)
{
    (void)state;
    link2 l;
    link_socketpair(&l);
    assert_int_equal(write(l.b.wfd, "UNIX", 4), 4); /* 3 right bytes, then a wrong one */
    tf_hs hs;
    tf_hs_init(&hs);
    assert_int_equal(tf_hs_try(&hs, io_of(&l.a)), TF_ERROR);
    int os = -1;
    assert_int_equal(tf_hs_error(&hs, &os), TF_ERR_BAD_MAGIC);
    assert_int_equal(os, 0);
    link_close(&l);
}

static void test_tf_fdio_handshake_peer_closed(void **state)
{
    (void)state;
    link2 l;
    /* Closed before a byte: CLOSED. */
    link_pipes(&l);
    close_fd(&l, l.b.wfd);
    tf_hs hs;
    tf_hs_init(&hs);
    assert_int_equal(tf_hs_try(&hs, io_of(&l.a)), TF_ERROR);
    assert_int_equal(tf_hs_error(&hs, NULL), TF_ERR_CLOSED);
    link_close(&l);
    /* Closed after two bytes: TRUNCATED. (Pipes: a's own magic still goes out to b.rfd;
     * over a socket the write would fail first with EPIPE.) */
    link_pipes(&l);
    assert_int_equal(write(l.b.wfd, "UN", 2), 2);
    close_fd(&l, l.b.wfd);
    tf_hs_init(&hs);
    tf_step s = tf_hs_try(&hs, io_of(&l.a));
    assert_int_equal(s, TF_ERROR);
    assert_int_equal(tf_hs_error(&hs, NULL), TF_ERR_TRUNCATED);
    link_close(&l);
}

/* ---------------------------------------------------------------- messages */

static const size_t SIZES[] = {0, 1, 4095, BIG};

static void messages(link2 *l, bool alloc)
{
    handshake(&l->a, &l->b);
    uint8_t *span = malloc(BIG);
    assert_non_null(span);
    size_t allocs = 0;
    tf_sink sink = alloc ? (tf_sink){NULL, 0, alloc_cb, &allocs} : (tf_sink){span, BIG, NULL, NULL};
    tf_tx txa, txb;
    tf_rx rxa, rxb;
    tf_tx_init(&txa, TF_DEFAULT_MAX_LEN);
    tf_tx_init(&txb, TF_DEFAULT_MAX_LEN);
    tf_rx_init(&rxa, TF_DEFAULT_MAX_LEN);
    tf_rx_init(&rxb, TF_DEFAULT_MAX_LEN);
    size_t nonempty = 0;
    for (size_t i = 0; i < sizeof SIZES / sizeof SIZES[0]; i++) {
        uint8_t *p = pattern(SIZES[i], (uint32_t)i + 1);
        unsigned w1 = transfer(&l->a, &txa, &l->b, &rxb, &sink, p, SIZES[i]); /* a -> b */
        unsigned w2 = transfer(&l->b, &txb, &l->a, &rxa, &sink, p, SIZES[i]); /* b -> a */
        if (SIZES[i] == BIG) /* far beyond any socket or pipe buffer: must have waited */
            assert_true(w1 > 0 && w2 > 0);
        nonempty += SIZES[i] ? 2 : 0;
        free(p);
    }
    assert_int_equal(allocs, alloc ? nonempty : 0);
    /* Everything consumed: both receivers wait for a prefix and nothing is readable. */
    tf_msg m;
    assert_int_equal(tf_rx_try(&rxa, io_of(&l->a), &sink, &m), TF_AGAIN);
    assert_int_equal(tf_rx_try(&rxb, io_of(&l->b), &sink, &m), TF_AGAIN);
    free(span);
}

static void test_tf_fdio_messages_socketpair_span(void **state)
{
    (void)state;
    link2 l;
    link_socketpair(&l);
    messages(&l, false);
    link_close(&l);
}

static void test_tf_fdio_messages_socketpair_alloc(void **state)
{
    (void)state;
    link2 l;
    link_socketpair(&l);
    messages(&l, true);
    link_close(&l);
}

static void test_tf_fdio_messages_pipes_span(void **state)
{
    (void)state;
    link2 l;
    link_pipes(&l);
    messages(&l, false);
    link_close(&l);
}

static void test_tf_fdio_messages_pipes_alloc(void **state)
{
    (void)state;
    link2 l;
    link_pipes(&l);
    messages(&l, true);
    link_close(&l);
}

/* ---------------------------------------------------------------- closes */

static void close_between(link2 *l)
{
    uint8_t buf[64];
    tf_sink sink = {buf, sizeof buf, NULL, NULL};
    tf_tx tx;
    tf_rx rx;
    tf_tx_init(&tx, TF_DEFAULT_MAX_LEN);
    tf_rx_init(&rx, TF_DEFAULT_MAX_LEN);
    transfer(&l->a, &tx, &l->b, &rx, &sink, (const uint8_t *)"last words", 10);
    transfer(&l->a, &tx, &l->b, &rx, &sink, NULL, 0);
    close_peer(l, &l->a);
    assert_int_equal(rx_until_error(&l->b, &rx, &sink), TF_ERR_CLOSED);
}

static void test_tf_fdio_peer_close_between_messages_closed(void **state)
{
    (void)state;
    link2 l;
    link_socketpair(&l);
    close_between(&l);
    link_close(&l);
    link_pipes(&l);
    close_between(&l);
    link_close(&l);
}

/* The sender gets part of a 1 MiB + 3 message out (until the buffer is full), then closes. */
static void close_mid_message(link2 *l)
{
    size_t allocs = 0;
    tf_sink sink = {NULL, 0, alloc_cb, &allocs};
    uint8_t *p = pattern(BIG, 7);
    tf_tx tx;
    tf_rx rx;
    tf_tx_init(&tx, TF_DEFAULT_MAX_LEN);
    tf_rx_init(&rx, TF_DEFAULT_MAX_LEN);
    assert_int_equal(tf_tx_begin(&tx, p, BIG), TF_OK);
    assert_int_equal(tf_tx_try(&tx, io_of(&l->a)), TF_AGAIN);
    assert_true(tf_tx_pending(&tx) > 0 && tf_tx_pending(&tx) < BIG + 4);
    close_peer(l, &l->a);
    assert_int_equal(rx_until_error(&l->b, &rx, &sink), TF_ERR_TRUNCATED);
    assert_int_equal(allocs, 1);
    free(tf_rx_abandon(&rx)); /* the unfinished target is the caller's to free */
    free(p);
}

static void test_tf_fdio_peer_close_mid_message_truncated(void **state)
{
    (void)state;
    link2 l;
    link_socketpair(&l);
    close_mid_message(&l);
    link_close(&l);
    link_pipes(&l);
    close_mid_message(&l);
    link_close(&l);

    /* Inside the length prefix, too. */
    link_socketpair(&l);
    assert_int_equal(write(l.a.wfd, "\0\0", 2), 2);
    close_peer(&l, &l.a);
    uint8_t buf[4];
    tf_sink sink = {buf, sizeof buf, NULL, NULL};
    tf_rx rx;
    tf_rx_init(&rx, TF_DEFAULT_MAX_LEN);
    assert_int_equal(rx_until_error(&l.b, &rx, &sink), TF_ERR_TRUNCATED);
    link_close(&l);
}

/* Writing to a socket whose peer is gone: ERROR IO with os_err EPIPE, and no SIGPIPE -- its
 * default action (which would kill this process) is in force during the write. */
static void test_tf_fdio_write_to_closed_peer_epipe_no_sigpipe(void **state)
{
    (void)state;
    void (*old)(int) = signal(SIGPIPE, SIG_DFL);
    sigset_t pend;

    link2 l;
    link_socketpair(&l);
    close_peer(&l, &l.b);
    tf_tx tx;
    tf_tx_init(&tx, TF_DEFAULT_MAX_LEN);
    assert_int_equal(tf_tx_begin(&tx, (const uint8_t *)"hi", 2), TF_OK);
    assert_int_equal(tf_tx_try(&tx, io_of(&l.a)), TF_ERROR);
    int os = 0;
    assert_int_equal(tf_tx_error(&tx, &os), TF_ERR_IO);
    assert_int_equal(os, EPIPE);
    assert_int_equal(sigpending(&pend), 0);
    assert_false(sigismember(&pend, SIGPIPE));
    link_close(&l);

    /* The peer goes away in the middle of a big message. */
    link_socketpair(&l);
    uint8_t *p = pattern(BIG, 3);
    tf_tx_init(&tx, TF_DEFAULT_MAX_LEN);
    assert_int_equal(tf_tx_begin(&tx, p, BIG), TF_OK);
    assert_int_equal(tf_tx_try(&tx, io_of(&l.a)), TF_AGAIN);
    close_peer(&l, &l.b);
    assert_int_equal(tf_tx_try(&tx, io_of(&l.a)), TF_ERROR);
    assert_int_equal(tf_tx_error(&tx, &os), TF_ERR_IO);
    assert_int_equal(os, EPIPE);
    free(p);
    link_close(&l);

    /* A pipe cannot suppress the signal per call (fdio.h): with SIGPIPE ignored, EPIPE too. */
    signal(SIGPIPE, SIG_IGN);
    link_pipes(&l);
    close_fd(&l, l.b.rfd);
    tf_tx_init(&tx, TF_DEFAULT_MAX_LEN);
    assert_int_equal(tf_tx_begin(&tx, (const uint8_t *)"hi", 2), TF_OK);
    assert_int_equal(tf_tx_try(&tx, io_of(&l.a)), TF_ERROR);
    assert_int_equal(tf_tx_error(&tx, &os), TF_ERR_IO);
    assert_int_equal(os, EPIPE);
    link_close(&l);

    assert_int_equal(sigpending(&pend), 0);
    assert_false(sigismember(&pend, SIGPIPE));
    signal(SIGPIPE, old);
}

/* ---------------------------------------------------------------- limits and back-pressure */

static void test_tf_fdio_length_over_max_too_large(void **state)
{
    (void)state;
    link2 l;
    link_socketpair(&l);
    /* The sender refuses before emitting anything. */
    uint8_t *p = pattern(1001, 5);
    tf_tx small;
    tf_tx_init(&small, 1000);
    assert_int_equal(tf_tx_begin(&small, p, 1001), TF_ERR_TOO_LARGE);
    uint8_t c;
    assert_int_equal(read(l.b.rfd, &c, 1), -1);
    assert_int_equal(errno, EAGAIN);

    /* A laxer sender gets it out; the receiver refuses at the prefix, reading no payload. */
    tf_tx tx;
    tf_tx_init(&tx, 4096);
    assert_int_equal(tf_tx_begin(&tx, p, 1001), TF_OK);
    assert_int_equal(tf_tx_try(&tx, io_of(&l.a)), TF_DONE);
    size_t allocs = 0;
    tf_sink sink = {NULL, 0, alloc_cb, &allocs};
    tf_rx rx;
    tf_rx_init(&rx, 1000);
    assert_int_equal(rx_until_error(&l.b, &rx, &sink), TF_ERR_TOO_LARGE);
    assert_int_equal(allocs, 0);
    assert_int_equal(drain(l.b.rfd), 1001);
    free(p);
    link_close(&l);
}

/* A full socket buffer: the write callback says TF_IO_AGAIN, tf_tx_try says TF_AGAIN with bytes
 * pending, and tf_fd_wait(POLLOUT) times out until the peer reads. */
static void test_tf_fdio_full_socket_buffer_again(void **state)
{
    (void)state;
    link2 l;
    link_socketpair(&l);
    const size_t len = 16u << 20;
    uint8_t *p = pattern(len, 9);
    tf_tx tx;
    tf_tx_init(&tx, TF_DEFAULT_MAX_LEN);
    assert_int_equal(tf_tx_begin(&tx, p, len), TF_OK);
    assert_int_equal(tf_tx_try(&tx, io_of(&l.a)), TF_AGAIN);
    size_t pending = tf_tx_pending(&tx);
    assert_true(pending > 0 && pending < len + 4);
    assert_int_equal(tf_tx_try(&tx, io_of(&l.a)), TF_AGAIN); /* still full: no progress */
    assert_int_equal(tf_tx_pending(&tx), pending);
    assert_int_equal(tf_tx_error(&tx, NULL), TF_OK);
    int os = 0;
    tf_iov iov = {p, 1};
    assert_int_equal(l.a.f.io.write(l.a.f.io.ctx, &iov, 1, &os), TF_IO_AGAIN);
    assert_int_equal(tf_fd_wait(l.a.wfd, POLLOUT, 0), TF_ERR_TIMEOUT);

    /* The peer receives; the sender's waits now succeed and the message completes intact. */
    uint8_t *span = malloc(len);
    assert_non_null(span);
    tf_sink sink = {span, len, NULL, NULL};
    tf_rx rx;
    tf_rx_init(&rx, TF_DEFAULT_MAX_LEN);
    tf_msg msg = {NULL, 0};
    long long deadline = tio_now_ms() + DEADLINE_MS;
    tf_step ts = TF_AGAIN, rs = TF_AGAIN;
    while (ts != TF_DONE || rs != TF_DONE) {
        if (rs != TF_DONE)
            rs = tf_rx_try(&rx, io_of(&l.b), &sink, &msg);
        assert_int_not_equal(rs, TF_ERROR);
        if (ts != TF_DONE) {
            wait_ready(l.a.wfd, POLLOUT, deadline);
            ts = tf_tx_try(&tx, io_of(&l.a));
        }
        assert_int_not_equal(ts, TF_ERROR);
        if (ts == TF_DONE && rs != TF_DONE)
            wait_ready(l.b.rfd, POLLIN, deadline);
    }
    assert_int_equal(msg.len, len);
    assert_memory_equal(msg.data, p, len);
    free(span);
    free(p);
    link_close(&l);
}

/* ---------------------------------------------------------------- tf_fd_wait */

static void test_tf_fdio_wait_ready_timeout_hup(void **state)
{
    (void)state;
    link2 l;
    link_socketpair(&l);
    assert_int_equal(tf_fd_wait(l.a.rfd, POLLOUT, 0), TF_OK);
    assert_int_equal(tf_fd_wait(l.a.rfd, POLLIN, 0), TF_ERR_TIMEOUT);
    long long t0 = tio_now_ms();
    assert_int_equal(tf_fd_wait(l.a.rfd, POLLIN, 30), TF_ERR_TIMEOUT);
    assert_true(tio_now_ms() - t0 >= 29);
    assert_int_equal(write(l.b.wfd, "x", 1), 1);
    assert_int_equal(tf_fd_wait(l.a.rfd, POLLIN, -1), TF_OK);
    close_peer(&l, &l.b);
    /* Hang-up counts as ready: the next read reports it. */
    assert_int_equal(tf_fd_wait(l.a.rfd, 0, DEADLINE_MS), TF_OK);
    link_close(&l);
}

static void test_tf_fdio_wait_bad_fd(void **state)
{
    (void)state;
    assert_int_equal(tf_fd_wait(-1, POLLIN, 0), TF_ERR_INVALID_ARGUMENT);
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    close(p[0]);
    close(p[1]);
    errno = 0;
    assert_int_equal(tf_fd_wait(p[0], POLLIN, 0), TF_ERR_IO); /* not open: POLLNVAL */
    assert_int_equal(errno, EBADF);
}

/* Signals arrive every 5 ms during a 100 ms wait: neither ends it early nor extends it much. */
static void test_tf_fdio_wait_retries_eintr(void **state)
{
    (void)state;
    link2 l;
    link_socketpair(&l);
    timer_t t = intr_start(5);
    long long t0 = tio_now_ms();
    assert_int_equal(tf_fd_wait(l.a.rfd, POLLIN, 100), TF_ERR_TIMEOUT);
    long long el = tio_now_ms() - t0;
    intr_stop(t);
    assert_true(g_usr1 >= 5);
    assert_true(el >= 99);
    assert_true(el < 100 + 2000);
    link_close(&l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TIO_TEST(test_tf_fdio_init_wires_io),
        TIO_TEST(test_tf_fdio_read_maps_bytes_eof_again_errno),
        TIO_TEST(test_tf_fdio_write_maps_socketpair),
        TIO_TEST(test_tf_fdio_write_maps_pipe_enotsock_fallback),
        TIO_TEST(test_tf_fdio_eintr_maps_to_intr),
        TIO_TEST(test_tf_fdio_handshake_socketpair),
        TIO_TEST(test_tf_fdio_handshake_pipes),
        TIO_TEST(test_tf_fdio_handshake_bad_magic),
        TIO_TEST(test_tf_fdio_handshake_peer_closed),
        TIO_TEST(test_tf_fdio_messages_socketpair_span),
        TIO_TEST(test_tf_fdio_messages_socketpair_alloc),
        TIO_TEST(test_tf_fdio_messages_pipes_span),
        TIO_TEST(test_tf_fdio_messages_pipes_alloc),
        TIO_TEST(test_tf_fdio_peer_close_between_messages_closed),
        TIO_TEST(test_tf_fdio_peer_close_mid_message_truncated),
        TIO_TEST(test_tf_fdio_write_to_closed_peer_epipe_no_sigpipe),
        TIO_TEST(test_tf_fdio_length_over_max_too_large),
        TIO_TEST(test_tf_fdio_full_socket_buffer_again),
        TIO_TEST(test_tf_fdio_wait_ready_timeout_hup),
        TIO_TEST(test_tf_fdio_wait_bad_fd),
        TIO_TEST(test_tf_fdio_wait_retries_eintr),
    };
    tio_filter_from_env();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
