/* tests/test_sync_conn.c -- the blocking connection (sync.h, SPEC 9.6) over loopback TCP
 * (127.0.0.1 and ::1) and socketpairs: messages both ways (empty, many, 64 MiB), closes between
 * and inside frames, the poison and its reasons, timeouts with and without bytes moved, limits
 * both ways (the receiver allocates nothing for a hostile length and commits memory only as
 * bytes arrive), half-close, SIGPIPE left at
 * its default, handshake off, the generic tf_conn view, tf_sync_conn_from_fd. The peer is
 * either a second library connection or a raw socket driven by plain syscalls (tests/tu_net.c).
 * Every test runs under the no-progress watchdog and checks, in its teardown, that no fd
 * leaked. Assertions only on the main thread; worker threads report through their struct. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "internal.h"
#include "tcpframe/proto.h"
#include "tcpframe/sync.h"
#include "test_io_util.h"
#include "tu_net.h"
#include "tu_sync.h"

#define MIB (1024u * 1024u)

/* ---------------------------------------------------------------- fixture */

/* Per test: the watchdog (its progress counter is this file's, see test_io_util.h) and the
 * open-fd count, checked in the teardown. *state, the prestate, is the host. */
static int fds_before;

static int setup(void **state)
{
    fds_before = tu_fd_count();
    return tio_watchdog_setup(state);
}

static int teardown(void **state)
{
    tu_alloc_reset();
    tio_watchdog_teardown(state);
    assert_int_equal(tu_fd_count(), fds_before); /* no fd leaked */
    return 0;
}

/* ---------------------------------------------------------------- threads */

typedef struct sender {
    tf_sync_conn *c;
    size_t n, size; /* n messages; size 0: sizes vary with the index */
    tf_err err;
    int os_err; /* the poison's, when err is not TF_OK */
    size_t sent;
    bool shutdown_after;
} sender;

static size_t size_of(const sender *s, size_t i)
{
    return s->size ? s->size : (i * 7919u) % 1500u;
}

static void *send_main(void *arg)
{
    sender *s = arg;
    size_t cap = s->size ? s->size : 1500u;
    uint8_t *buf = malloc(cap ? cap : 1);
    s->err = TF_OK;
    for (size_t i = 0; i < s->n && s->err == TF_OK; i++) {
        tu_fill(buf, size_of(s, i), (uint32_t)i);
        s->err = tf_sync_conn_send(s->c, buf, size_of(s, i), -1);
        if (s->err == TF_OK)
            s->sent++;
        tio_tick();
    }
    if (s->shutdown_after && s->err == TF_OK)
        s->err = tf_sync_conn_shutdown(s->c);
    if (s->err != TF_OK)
        tf_sync_conn_error(s->c, &s->os_err);
    free(buf);
    return NULL;
}

/* A failed receive in a stream: say which message and the reason with its os_err before the
 * assertion ends the test (issue 25 item 8). */
static void recv_report(tf_sync_conn *c, const sender *s, size_t i, tf_err e)
{
    if (e == TF_OK)
        return;
    int os = 0;
    tf_err pe = tf_sync_conn_error(c, &os);
    printf("# receive of message %zu of %zu failed: %s; poison %s, os_err %d (%s)\n", i, s->n,
           tf_err_name(e), tf_err_name(pe), os, os ? strerror(os) : "-");
}

/* Receive s->n messages as send_main sends them, checking each. */
static void recv_checked(tf_sync_conn *c, const sender *s, bool alloc)
{
    size_t cap = s->size ? s->size : 1500u;
    uint8_t *buf = malloc(cap ? cap : 1);
    for (size_t i = 0; i < s->n; i++) {
        size_t len = 0;
        tf_err e;
        if (alloc) {
            void *p = NULL;
            e = tf_sync_conn_recv_alloc(c, &p, &len, -1);
            recv_report(c, s, i, e);
            assert_int_equal(e, TF_OK);
            assert_int_equal(len, size_of(s, i));
            assert_true(tu_check(p, len, (uint32_t)i));
            assert_true(len > 0 || p == NULL);
            free(p);
        } else {
            e = tf_sync_conn_recv(c, buf, cap, &len, -1);
            recv_report(c, s, i, e);
            assert_int_equal(e, TF_OK);
            assert_int_equal(len, size_of(s, i));
            assert_true(tu_check(buf, len, (uint32_t)i));
        }
        tio_tick();
    }
    free(buf);
}

/* The same on a thread of its own, without assertions: it stops at the first failure and
 * records it for the main thread to assert on. */
typedef struct receiver {
    tf_sync_conn *c;
    const sender *s;
    bool alloc;
    size_t got;   /* messages received and checked */
    tf_err err;   /* the failed receive's outcome (TF_OK: none failed) */
    int os_err;   /* its poison's os_err */
    bool corrupt; /* a message had the wrong length or content */
    pthread_t thread;
} receiver;

static void *recv_main(void *arg)
{
    receiver *r = arg;
    size_t cap = r->s->size ? r->s->size : 1500u;
    uint8_t *buf = malloc(cap ? cap : 1);
    for (size_t i = 0; i < r->s->n; i++) {
        size_t len = 0;
        void *p = NULL;
        r->err = r->alloc ? tf_sync_conn_recv_alloc(r->c, &p, &len, -1)
                          : tf_sync_conn_recv(r->c, buf, cap, &len, -1);
        if (r->err != TF_OK) {
            tf_sync_conn_error(r->c, &r->os_err);
            break;
        }
        r->corrupt = len != size_of(r->s, i) || !tu_check(r->alloc ? p : buf, len, (uint32_t)i);
        free(p);
        if (r->corrupt)
            break;
        r->got++;
        tio_tick();
    }
    free(buf);
    return NULL;
}

/* ---------------------------------------------------------------- messages */

static void test_send_recv_bidirectional(void **state)
{
    tf_sync_conn *a, *b;
    tu_lib_pair(tu_host(state), NULL, &a, &b);
    assert_int_equal(tf_sync_conn_send(b, "hello", 5, 5000), TF_OK);
    assert_int_equal(tf_sync_conn_send(a, "world!", 6, 5000), TF_OK);
    char buf[16];
    size_t len;
    assert_int_equal(tf_sync_conn_recv(a, buf, sizeof buf, &len, 5000), TF_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(buf, "hello", 5);
    void *p;
    assert_int_equal(tf_sync_conn_recv_alloc(b, &p, &len, 5000), TF_OK);
    assert_int_equal(len, 6);
    assert_memory_equal(p, "world!", 6);
    free(p);
    /* Each side names the other: the client's peer is the server's own address. */
    char peer[TF_ADDRSTR_LEN];
    assert_int_equal(tf_sync_conn_peer(b, peer, sizeof peer), TF_OK);
    assert_true(strncmp(peer, tu_host(state), strlen(tu_host(state))) == 0);
    assert_int_equal(tf_sync_conn_error(a, NULL), TF_OK);
    tf_sync_conn_free(a);
    tf_sync_conn_free(b);
}

static void test_send_recv_empty(void **state)
{
    tf_sync_conn *a, *b;
    tu_lib_pair(tu_host(state), NULL, &a, &b);
    assert_int_equal(tf_sync_conn_send(b, NULL, 0, 5000), TF_OK);
    assert_int_equal(tf_sync_conn_send(b, "", 0, 5000), TF_OK);
    assert_int_equal(tf_sync_conn_send(b, "x", 1, 5000), TF_OK);
    size_t len = 99;
    assert_int_equal(tf_sync_conn_recv(a, NULL, 0, &len, 5000), TF_OK); /* no buffer needed */
    assert_int_equal(len, 0);
    void *p = &len;
    tu_alloc_count(-1);
    assert_int_equal(tf_sync_conn_recv_alloc(a, &p, &len, 5000), TF_OK);
    assert_null(p);
    assert_int_equal(len, 0);
    assert_int_equal(tu_alloc_calls(), 0); /* nothing allocated for an empty message */
    assert_int_equal(tf_sync_conn_recv_alloc(a, &p, &len, 5000), TF_OK);
    assert_int_equal(tu_alloc_calls(), 1);
    assert_int_equal(tu_alloc_bytes(), 1); /* the exact length */
    assert_int_equal(*(char *)p, 'x');
    free(p);
    tf_sync_conn_free(a);
    tf_sync_conn_free(b);
}

/* 64 MiB (the default maximum, exactly) each way at once: span into a caller buffer one way,
 * allocating the other way. */
static void test_send_recv_large_64mib(void **state)
{
    tf_sync_conn *a, *b;
    tu_lib_pair(tu_host(state), NULL, &a, &b);
    sender s = {.c = b, .n = 1, .size = TF_DEFAULT_MAX_LEN};
    sender r = {.c = a, .n = 1, .size = TF_DEFAULT_MAX_LEN};
    pthread_t ts, tr;
    assert_int_equal(pthread_create(&ts, NULL, send_main, &s), 0);
    assert_int_equal(pthread_create(&tr, NULL, send_main, &r), 0);
    uint64_t t0 = tu_now_ms();
    recv_checked(a, &s, false);
    recv_checked(b, &r, true);
    pthread_join(ts, NULL);
    pthread_join(tr, NULL);
    printf("# 2 x 64 MiB over %s in %llu ms\n", tu_host(state),
           (unsigned long long)(tu_now_ms() - t0));
    assert_int_equal(s.err, TF_OK);
    assert_int_equal(r.err, TF_OK);
    tf_sync_conn_free(a);
    tf_sync_conn_free(b);
}

/* Many messages of varying sizes (0..1499), then the sender half-closes: the receiver gets
 * every one in order, then CLOSED. Meanwhile the other direction carries its own stream (one
 * sending and one receiving thread on each connection at once), which the CLOSED does not
 * cut short.
 *
 * Both streams are received at once (b's on a thread of its own). This test once failed with
 * a receive returning IO mid-stream (issue 25 item 8) when it read b's stream only after all
 * of a's: the a->b stream then waited at a zero window for as long as reading a's took, and
 * TCP_USER_TIMEOUT (the config's 60 s) also bounds a zero window (Linux >= 5.11): sent data
 * that waits that long is dropped with ETIMEDOUT, and the peer reads ECONNRESET once its
 * buffer is empty. With the user timeout at 200 ms and two busy loops beside it, that order
 * failed the same way ("receive of message 4817 of 20000 failed: IO; os_err 110", 2 fds left
 * open) in 1 of 40 rounds (0 of 40 with both streams read at once). The reading phase that
 * held the zero window took 50-150 ms idle, 1.1-7.6 s at nice 19 beside four busy loops: 60 s
 * needs a badly overloaded machine, which make check on 2 shared cores can be. The library did
 * what its config says; the test held the peer's reader back. */
static void test_send_recv_many_then_close(void **state)
{
    tf_sync_conn *a, *b;
    tu_lib_pair(tu_host(state), NULL, &a, &b);
    long n = tio_iters("TF_TEST_SYNC_MSGS", 20000, 4, 10);
    sender s = {.c = b, .n = (size_t)n, .shutdown_after = true};
    sender r = {.c = a, .n = (size_t)n};
    receiver rb = {.c = b, .s = &r, .alloc = true}; /* b still receives after its half-close */
    pthread_t ts, tr;
    assert_int_equal(pthread_create(&ts, NULL, send_main, &s), 0);
    assert_int_equal(pthread_create(&tr, NULL, send_main, &r), 0);
    assert_int_equal(pthread_create(&rb.thread, NULL, recv_main, &rb), 0);
    recv_checked(a, &s, false);
    /* b's half-close reaches a as CLOSED, which closes a's receive direction only: r's stream
     * from a (still running, most likely) goes on. */
    size_t len;
    char buf[8];
    assert_int_equal(tf_sync_conn_recv(a, buf, sizeof buf, &len, 10000), TF_ERR_CLOSED);
    assert_int_equal(tf_sync_conn_error(a, NULL), TF_OK);
    pthread_join(rb.thread, NULL);
    pthread_join(ts, NULL);
    pthread_join(tr, NULL);
    if (rb.err != TF_OK || rb.corrupt)
        printf("# b's receive of message %zu of %zu failed: %s, os_err %d (%s)%s\n", rb.got,
               r.n, tf_err_name(rb.err), rb.os_err, rb.os_err ? strerror(rb.os_err) : "-",
               rb.corrupt ? "; wrong length or content" : "");
    assert_int_equal(rb.err, TF_OK);
    assert_false(rb.corrupt);
    assert_int_equal(rb.got, (size_t)n);
    if (s.err != TF_OK || r.err != TF_OK)
        printf("# senders: b->a %s (os_err %d) after %zu, a->b %s (os_err %d) after %zu\n",
               tf_err_name(s.err), s.os_err, s.sent, tf_err_name(r.err), r.os_err, r.sent);
    assert_int_equal(s.err, TF_OK);
    assert_int_equal(r.err, TF_OK);
    assert_int_equal(s.sent, (size_t)n);
    tf_sync_conn_free(a);
    tf_sync_conn_free(b);
}

/* ---------------------------------------------------------------- closes and the poison */

/* The peer half-closes after a message: we read it, then CLOSED, sticky (every later receive,
 * at once, also without a timeout); the connection is not poisoned and our sends still reach
 * the peer, then our own half-close ends the exchange. */
static void test_closed_between_frames(void **state)
{
    int raw;
    tf_sync_conn *c = tu_raw_pair(tu_host(state), NULL, &raw);
    assert_true(tu_write_frame(raw, "last", 4));
    assert_int_equal(shutdown(raw, SHUT_WR), 0);
    char buf[8];
    size_t len;
    assert_int_equal(tf_sync_conn_recv(c, buf, sizeof buf, &len, 5000), TF_OK);
    assert_int_equal(len, 4);
    assert_int_equal(tf_sync_conn_recv(c, buf, sizeof buf, &len, 5000), TF_ERR_CLOSED);
    int os = -1;
    assert_int_equal(tf_sync_conn_error(c, &os), TF_OK); /* the receive direction only */
    assert_int_equal(os, 0);
    assert_int_equal(tf_sync_conn_recv(c, buf, sizeof buf, &len, -1), TF_ERR_CLOSED);
    void *p = &raw;
    assert_int_equal(tf_sync_conn_recv_alloc(c, &p, &len, -1), TF_ERR_CLOSED);
    assert_null(p);
    assert_int_equal(tf_sync_conn_send(c, "reply", 5, 5000), TF_OK);
    assert_int_equal(tf_sync_conn_shutdown(c), TF_OK);
    uint32_t n;
    assert_true(tu_read_frame(raw, buf, sizeof buf, &n));
    assert_int_equal(n, 5);
    assert_memory_equal(buf, "reply", 5);
    assert_int_equal(read(raw, buf, 1), 0); /* then our FIN */
    close(raw);
    tf_sync_conn_free(c);
}

/* Issue 25 item 1, sync side: a client sends an 8 MiB request and half-closes, then reads to
 * EOF. The server reads the request, then CLOSED, and only then sends its reply (the request
 * echoed: 8 MiB, far more than the socket buffers hold) and closes: the client gets every
 * byte, then EOF. Under the old rule (CLOSED poisoned both ways) the reply failed with CLOSED
 * and the client read 0 bytes. */
typedef struct replier {
    tf_sync_conn *c;
    tf_err req, eof, reply, shut;
    size_t len;
} replier;

static void *reply_main(void *arg)
{
    replier *r = arg;
    void *m = NULL;
    r->req = tf_sync_conn_recv_alloc(r->c, &m, &r->len, 30000);
    size_t n;
    void *none = NULL;
    r->eof = tf_sync_conn_recv_alloc(r->c, &none, &n, 30000);
    r->reply = r->req == TF_OK ? tf_sync_conn_send(r->c, m, r->len, 30000) : r->req;
    r->shut = tf_sync_conn_shutdown(r->c);
    free(m);
    return NULL;
}

static void test_half_close_reply_after_closed(void **state)
{
    const size_t big = 8 * MIB;
    int raw;
    replier r = {.c = tu_raw_pair(tu_host(state), NULL, &raw)};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, reply_main, &r), 0);
    uint8_t *req = malloc(big), *got = malloc(big + 64);
    tu_fill(req, big, 25);
    assert_true(tu_write_frame(raw, req, (uint32_t)big));
    assert_int_equal(shutdown(raw, SHUT_WR), 0);
    size_t total = 0;
    for (;;) { /* to EOF, whatever the server sends */
        ssize_t k = read(raw, got + total, big + 64 - total);
        if (k <= 0)
            break;
        total += (size_t)k;
        tio_tick();
    }
    pthread_join(t, NULL);
    printf("# request 8 MiB, half-close: %zu reply bytes read before EOF (of %zu)\n", total,
           big + 4);
    assert_int_equal(r.req, TF_OK);
    assert_int_equal(r.len, big);
    assert_int_equal(r.eof, TF_ERR_CLOSED);
    assert_int_equal(r.reply, TF_OK);
    assert_int_equal(r.shut, TF_OK);
    assert_int_equal(total, big + 4);
    assert_int_equal(tf_be32_get(got), (uint32_t)big);
    assert_true(tu_check(got + 4, big, 25));
    free(req);
    free(got);
    close(raw);
    tf_sync_conn_free(r.c);
}

static void test_closed_inside_frame(void **state)
{
    static const uint8_t part[] = {0, 0, 0, 10, 'a', 'b', 'c'}; /* 3 of 10 payload bytes */
    int raw;
    tf_sync_conn *c = tu_raw_pair(tu_host(state), NULL, &raw);
    assert_true(tu_write_all(raw, part, sizeof part));
    close(raw);
    void *p = &raw;
    size_t len;
    tu_alloc_count(-1);
    assert_int_equal(tf_sync_conn_recv_alloc(c, &p, &len, 5000), TF_ERR_TRUNCATED);
    assert_null(p);
    assert_int_equal(tu_alloc_calls(), 1); /* allocated, then freed by the library (ASan) */
    assert_int_equal(tf_sync_conn_error(c, NULL), TF_ERR_TRUNCATED);
    assert_int_equal(tf_sync_conn_send(c, "x", 1, -1), TF_ERR_TRUNCATED);
    tf_sync_conn_free(c);
}

/* The peer is gone: sends fail with EPIPE or ECONNRESET (never CLOSED for a byte stream that
 * accepted bytes), the reason and os_err stick. */
static void test_send_on_closed(void **state)
{
    int raw;
    tf_sync_conn *c = tu_raw_pair(tu_host(state), NULL, &raw);
    close(raw);
    uint8_t buf[4096] = {0};
    tf_err e = TF_OK;
    int i;
    for (i = 0; i < 1000 && e == TF_OK; i++)
        e = tf_sync_conn_send(c, buf, sizeof buf, 5000);
    printf("# send on a closed peer failed at send %d: %s\n", i, tf_err_name(e));
    assert_int_equal(e, TF_ERR_IO);
    int os = 0;
    assert_int_equal(tf_sync_conn_error(c, &os), TF_ERR_IO);
    assert_true(os == EPIPE || os == ECONNRESET);
    assert_int_equal(tf_sync_conn_send(c, buf, 1, -1), TF_ERR_IO);
    size_t len;
    assert_int_equal(tf_sync_conn_recv(c, buf, sizeof buf, &len, -1), TF_ERR_IO);
    tf_sync_conn_free(c);
}

/* SIGPIPE at its default disposition (which kills the process): writing to a reset peer
 * reports EPIPE / ECONNRESET and the process lives on. */
static void test_sigpipe_default_disposition(void **state)
{
    struct sigaction old, dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    assert_int_equal(sigaction(SIGPIPE, &dfl, &old), 0);
    int raw;
    tf_sync_conn *c = tu_raw_pair(tu_host(state), NULL, &raw);
    tu_close_rst(raw);
    uint8_t *big = calloc(1, MIB);
    tf_err e = TF_OK;
    for (int i = 0; i < 100 && e == TF_OK; i++)
        e = tf_sync_conn_send(c, big, MIB, 5000);
    free(big);
    int os = 0;
    assert_int_equal(e, TF_ERR_IO);
    assert_int_equal(tf_sync_conn_error(c, &os), TF_ERR_IO);
    assert_true(os == EPIPE || os == ECONNRESET);
    tf_sync_conn_free(c);
    sigaction(SIGPIPE, &old, NULL);
}

static void test_recv_span_too_small_poisons(void **state)
{
    int raw;
    tf_sync_conn *c = tu_raw_pair(tu_host(state), NULL, &raw);
    uint8_t msg[100];
    tu_fill(msg, sizeof msg, 1);
    assert_true(tu_write_frame(raw, msg, sizeof msg));
    uint8_t buf[10];
    size_t len;
    assert_int_equal(tf_sync_conn_recv(c, buf, sizeof buf, &len, 5000), TF_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(tf_sync_conn_recv(c, msg, sizeof msg, &len, -1), TF_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(tf_sync_conn_send(c, "x", 1, -1), TF_ERR_BUFFER_TOO_SMALL);
    /* The socket was shut down both ways: the raw peer reads EOF, not our "x". */
    uint8_t b;
    assert_int_equal(read(raw, &b, 1), 0);
    close(raw);
    tf_sync_conn_free(c);
}

/* A length over max_recv_len poisons before anything is allocated; the counting allocator
 * proves both that it counts (a good message: one call of the exact size) and that the
 * hostile length made none. */
static void test_recv_too_large_allocates_nothing(void **state)
{
    tf_tcp_config cfg;
    tf_tcp_config_init(&cfg);
    cfg.max_recv_len = 1000;
    int raw;
    tf_sync_conn *c = tu_raw_pair(tu_host(state), &cfg, &raw);
    uint8_t msg[1000];
    tu_fill(msg, sizeof msg, 2);
    assert_true(tu_write_frame(raw, msg, 1000));      /* exactly the maximum: fine */
    static const uint8_t hostile[] = {0, 0, 3, 0xE9}; /* 1001 */
    assert_true(tu_write_all(raw, hostile, sizeof hostile));
    tu_alloc_count(-1);
    void *p;
    size_t len;
    assert_int_equal(tf_sync_conn_recv_alloc(c, &p, &len, 5000), TF_OK);
    assert_int_equal(len, 1000);
    assert_true(tu_check(p, len, 2));
    free(p);
    assert_int_equal(tu_alloc_calls(), 1);
    assert_int_equal(tf_sync_conn_recv_alloc(c, &p, &len, 5000), TF_ERR_TOO_LARGE);
    assert_null(p);
    assert_int_equal(tu_alloc_calls(), 1); /* none for the hostile length */
    assert_int_equal(tf_sync_conn_error(c, NULL), TF_ERR_TOO_LARGE);
    uint8_t b;
    assert_int_equal(read(raw, &b, 1), 0); /* shut down */
    close(raw);
    tf_sync_conn_free(c);
}

/* A send over max_send_len is refused without a byte on the wire and without poisoning. */
/* Issue 25 item 4, sync side: a peer declares 60 MiB and sends 10 bytes. recv_alloc commits
 * memory as bytes arrive: its largest allocation so far is 64 KiB (the old code allocated the
 * declared 60 MiB on the header alone). Then the rest arrives and the message completes, exact
 * and intact, the buffer grown by doubling to exactly 60 MiB. */
typedef struct alloc_receiver {
    tf_sync_conn *c;
    void *m;
    size_t len;
    tf_err err;
} alloc_receiver;

static void *recv_alloc_main(void *arg)
{
    alloc_receiver *r = arg;
    r->err = tf_sync_conn_recv_alloc(r->c, &r->m, &r->len, 60000);
    return NULL;
}

static void test_recv_alloc_commits_as_bytes_arrive(void **state)
{
    const size_t big = 60 * MIB;
    int raw;
    alloc_receiver r = {.c = tu_raw_pair(tu_host(state), NULL, &raw)};
    uint8_t *frame = malloc(big + 4);
    tf_be32_put(frame, (uint32_t)big);
    tu_fill(frame + 4, big, 60);
    tu_alloc_count(-1);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, recv_alloc_main, &r), 0);
    assert_true(tu_write_all(raw, frame, 4 + 10));
    for (int i = 0; i < 10000 && tu_alloc_calls() == 0; i++) /* the header was read */
        tu_nap(1);
    assert_int_equal(tu_alloc_calls(), 1);
    size_t early = tu_alloc_max();
    assert_true(tu_write_all(raw, frame + 14, big - 10));
    pthread_join(t, NULL);
    printf("# declared 60 MiB, 10 bytes sent: largest allocation %zu bytes; complete: %ld "
           "allocations, largest %zu\n",
           early, tu_alloc_calls(), tu_alloc_max());
    assert_true(early <= 64 * 1024u); /* not the declared 60 MiB */
    assert_int_equal(r.err, TF_OK);
    assert_int_equal(r.len, big);
    assert_true(tu_check(r.m, big, 60));
    assert_int_equal(tu_alloc_max(), big); /* grown to the exact length */
    assert_true(tu_alloc_calls() <= 12);   /* by doubling: 64 KiB .. 60 MiB */
    free(r.m);
    free(frame);
    close(raw);
    tf_sync_conn_free(r.c);
}

static void test_send_too_large_refused(void **state)
{
    tf_tcp_config cfg;
    tf_tcp_config_init(&cfg);
    cfg.max_send_len = 1000;
    int raw;
    tf_sync_conn *c = tu_raw_pair(tu_host(state), &cfg, &raw);
    uint8_t msg[1001];
    tu_fill(msg, sizeof msg, 3);
    assert_int_equal(tf_sync_conn_send(c, msg, 1001, 5000), TF_ERR_TOO_LARGE);
    assert_int_equal(tf_sync_conn_error(c, NULL), TF_OK);
    assert_int_equal(tf_sync_conn_send(c, msg, 1000, 5000), TF_OK);
    uint8_t got[1001];
    uint32_t len;
    assert_true(tu_read_frame(raw, got, sizeof got, &len)); /* the first frame is the good one */
    assert_int_equal(len, 1000);
    assert_memory_equal(got, msg, 1000);
    close(raw);
    tf_sync_conn_free(c);
}

static void test_recv_alloc_nomem_poisons(void **state)
{
    int raw;
    tf_sync_conn *c = tu_raw_pair(tu_host(state), NULL, &raw);
    assert_true(tu_write_frame(raw, "abc", 3));
    tu_alloc_count(0); /* the first allocation fails */
    void *p;
    size_t len;
    assert_int_equal(tf_sync_conn_recv_alloc(c, &p, &len, 5000), TF_ERR_NOMEM);
    assert_null(p);
    assert_int_equal(tf_sync_conn_error(c, NULL), TF_ERR_NOMEM);
    close(raw);
    tf_sync_conn_free(c);
}

/* ---------------------------------------------------------------- timeouts */

/* No byte of a frame arrived: TIMEOUT, the connection stays usable. */
static void test_recv_timeout_at_boundary_usable(void **state)
{
    int raw;
    tf_sync_conn *c = tu_raw_pair(tu_host(state), NULL, &raw);
    char buf[8];
    size_t len;
    uint64_t t0 = tu_now_ms();
    long cpu0 = tu_thread_cpu_ms();
    assert_int_equal(tf_sync_conn_recv(c, buf, sizeof buf, &len, 200), TF_ERR_TIMEOUT);
    long cpu = tu_thread_cpu_ms() - cpu0;
    uint64_t took = tu_now_ms() - t0;
    printf("# 200 ms receive timeout took %llu ms, %ld ms CPU\n", (unsigned long long)took, cpu);
    assert_true(took >= 200); /* never early */
    assert_true(cpu < 100);   /* slept in poll: a spin would burn the whole wait */
    assert_int_equal(tf_sync_conn_error(c, NULL), TF_OK);
    assert_int_equal(tf_sync_conn_recv(c, buf, sizeof buf, &len, 0), TF_ERR_TIMEOUT);
    assert_true(tu_write_frame(raw, "ok", 2));
    assert_int_equal(tf_sync_conn_recv(c, buf, sizeof buf, &len, 5000), TF_OK);
    assert_int_equal(len, 2);
    close(raw);
    tf_sync_conn_free(c);
}

static volatile sig_atomic_t g_usr1;

static void on_usr1(int sig)
{
    (void)sig;
    g_usr1 = g_usr1 + 1;
}

/* SIGUSR1 every |period_ms| ms, its handler installed WITHOUT SA_RESTART, so that the poll a
 * call blocks in fails with EINTR (as in test_fdio.c). */
static timer_t intr_start(long period_ms)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
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

/* Signals neither end a wait early nor make it fail: a 200 ms receive timeout under a signal
 * every 3 ms still takes its 200 ms and says TIMEOUT; then a message arrives normally. */
static void test_signals_do_not_end_waits(void **state)
{
    int raw;
    tf_sync_conn *c = tu_raw_pair(tu_host(state), NULL, &raw);
    timer_t t = intr_start(3);
    char buf[8];
    size_t len;
    uint64_t t0 = tu_now_ms();
    tf_err e = tf_sync_conn_recv(c, buf, sizeof buf, &len, 200);
    uint64_t took = tu_now_ms() - t0;
    sig_atomic_t seen = g_usr1;
    assert_true(tu_write_frame(raw, "sig", 3));
    tf_err e2 = tf_sync_conn_recv(c, buf, sizeof buf, &len, -1);
    assert_int_equal(timer_delete(t), 0);
    printf("# 200 ms receive under %d signals took %llu ms\n", (int)seen, (unsigned long long)took);
    assert_int_equal(e, TF_ERR_TIMEOUT);
    assert_true(took >= 200);
    assert_true(seen > 0); /* the waits were interrupted */
    assert_int_equal(e2, TF_OK);
    assert_int_equal(len, 3);
    close(raw);
    tf_sync_conn_free(c);
}

/* Part of a prefix arrived: the stream is out of step, TIMEOUT poisons. */
static void test_recv_timeout_inside_frame_poisons(void **state)
{
    int raw;
    tf_sync_conn *c = tu_raw_pair(tu_host(state), NULL, &raw);
    assert_true(tu_write_all(raw, "\0\0", 2));
    char buf[8];
    size_t len;
    assert_int_equal(tf_sync_conn_recv(c, buf, sizeof buf, &len, 50), TF_ERR_TIMEOUT);
    assert_int_equal(tf_sync_conn_error(c, NULL), TF_ERR_TIMEOUT);
    assert_true(tu_write_all(raw, "\0\2ok", 4));
    assert_int_equal(tf_sync_conn_recv(c, buf, sizeof buf, &len, 5000), TF_ERR_TIMEOUT);
    uint8_t b;
    assert_int_equal(read(raw, &b, 1), 0); /* shut down */
    close(raw);
    tf_sync_conn_free(c);
}

/* A full socket buffer before the first byte: TIMEOUT, not poisoned; once the peer drains,
 * the same message goes out whole (a socketpair, so "full" is exact). */
static void test_send_timeout_nothing_moved_usable(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    tf_tcp_config cfg;
    tf_tcp_config_init(&cfg);
    cfg.handshake = 0;
    tf_sync_conn *c;
    assert_int_equal(tf_sync_conn_from_fd(sv[0], &cfg, &c, NULL, NULL), TF_OK);
    /* Fill after from_fd: it applies the configured SO_SNDBUF. */
    uint8_t junk[4096] = {0};
    size_t filled = 0;
    ssize_t n;
    while ((n = send(sv[0], junk, sizeof junk, MSG_DONTWAIT)) > 0)
        filled += (size_t)n;
    assert_int_equal(tf_sync_conn_send(c, "ping", 4, 50), TF_ERR_TIMEOUT);
    assert_int_equal(tf_sync_conn_error(c, NULL), TF_OK);
    uint8_t *sink = malloc(filled);
    assert_true(tu_read_all(sv[1], sink, filled));
    free(sink);
    assert_int_equal(tf_sync_conn_send(c, "pong", 4, 5000), TF_OK);
    char buf[8];
    uint32_t len;
    assert_true(tu_read_frame(sv[1], buf, sizeof buf, &len)); /* "ping" never went out */
    assert_int_equal(len, 4);
    assert_memory_equal(buf, "pong", 4);
    close(sv[1]);
    tf_sync_conn_free(c);
}

typedef struct blocked_recv {
    tf_sync_conn *c;
    tf_err err;
} blocked_recv;

static void *blocked_recv_main(void *arg)
{
    blocked_recv *b = arg;
    char buf[8];
    size_t len;
    b->err = tf_sync_conn_recv(b->c, buf, sizeof buf, &len, -1);
    return NULL;
}

/* Part of a frame went out when the time ran out: poisoned. The thread blocked in a receive
 * on the same connection (no timeout) wakes and reports the same reason. */
static void test_send_timeout_partial_poisons(void **state)
{
    tf_tcp_config cfg;
    tf_tcp_config_init(&cfg);
    cfg.sndbuf = 65536;
    cfg.rcvbuf = 65536;
    int raw;
    tf_sync_conn *c = tu_raw_pair(tu_host(state), &cfg, &raw);
    int small = 65536;
    setsockopt(raw, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    blocked_recv b = {.c = c};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, blocked_recv_main, &b), 0);
    size_t big = 8u * MIB;
    uint8_t *msg = calloc(1, big);
    assert_int_equal(tf_sync_conn_send(c, msg, big, 100), TF_ERR_TIMEOUT);
    free(msg);
    pthread_join(t, NULL);
    assert_int_equal(b.err, TF_ERR_TIMEOUT);
    assert_int_equal(tf_sync_conn_error(c, NULL), TF_ERR_TIMEOUT);
    assert_int_equal(tf_sync_conn_send(c, "x", 1, -1), TF_ERR_TIMEOUT);
    close(raw);
    tf_sync_conn_free(c);
}

/* ---------------------------------------------------------------- half-close, arguments */

static void test_half_close(void **state)
{
    tf_sync_conn *a, *b;
    tu_lib_pair(tu_host(state), NULL, &a, &b);
    assert_int_equal(tf_sync_conn_send(b, "one", 3, 5000), TF_OK);
    assert_int_equal(tf_sync_conn_shutdown(b), TF_OK);
    assert_int_equal(tf_sync_conn_shutdown(b), TF_ERR_BAD_STATE);
    assert_int_equal(tf_sync_conn_send(b, "two", 3, 5000), TF_ERR_BAD_STATE);
    assert_int_equal(tf_sync_conn_error(b, NULL), TF_OK); /* a refusal, not a poison */
    char buf[8];
    size_t len;
    assert_int_equal(tf_sync_conn_recv(a, buf, sizeof buf, &len, 5000), TF_OK);
    assert_int_equal(len, 3);
    assert_int_equal(tf_sync_conn_recv(a, buf, sizeof buf, &len, 5000), TF_ERR_CLOSED);
    /* CLOSED closed a's receive direction only: a still replies, then half-closes too. */
    assert_int_equal(tf_sync_conn_send(a, "back", 4, 5000), TF_OK);
    assert_int_equal(tf_sync_conn_shutdown(a), TF_OK);
    assert_int_equal(tf_sync_conn_recv(b, buf, sizeof buf, &len, 5000), TF_OK);
    assert_int_equal(len, 4);
    assert_memory_equal(buf, "back", 4);
    assert_int_equal(tf_sync_conn_recv(b, buf, sizeof buf, &len, 5000), TF_ERR_CLOSED);
    assert_int_equal(tf_sync_conn_error(a, NULL), TF_OK);
    assert_int_equal(tf_sync_conn_error(b, NULL), TF_OK);
    tf_sync_conn_free(a);
    tf_sync_conn_free(b);
}

/* After a half-close the other direction still carries messages. */
static void test_half_close_other_way_flows(void **state)
{
    tf_sync_conn *a, *b;
    tu_lib_pair(tu_host(state), NULL, &a, &b);
    assert_int_equal(tf_sync_conn_shutdown(b), TF_OK);
    assert_int_equal(tf_sync_conn_send(a, "reply", 5, 5000), TF_OK);
    char buf[8];
    size_t len;
    assert_int_equal(tf_sync_conn_recv(b, buf, sizeof buf, &len, 5000), TF_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(buf, "reply", 5);
    tf_sync_conn_free(a);
    tf_sync_conn_free(b);
}

static void test_invalid_arguments(void **state)
{
    tf_sync_conn *a, *b;
    tu_lib_pair(tu_host(state), NULL, &a, &b);
    size_t len;
    void *p;
    assert_int_equal(tf_sync_conn_send(NULL, "x", 1, 0), TF_ERR_INVALID_ARGUMENT);
    assert_int_equal(tf_sync_conn_send(a, NULL, 1, 0), TF_ERR_INVALID_ARGUMENT);
    assert_int_equal(tf_sync_conn_recv(a, NULL, 5, &len, 0), TF_ERR_INVALID_ARGUMENT);
    assert_int_equal(tf_sync_conn_recv(a, &len, 1, NULL, 0), TF_ERR_INVALID_ARGUMENT);
    assert_int_equal(tf_sync_conn_recv_alloc(a, NULL, &len, 0), TF_ERR_INVALID_ARGUMENT);
    assert_int_equal(tf_sync_conn_recv_alloc(a, &p, NULL, 0), TF_ERR_INVALID_ARGUMENT);
    assert_int_equal(tf_sync_conn_shutdown(NULL), TF_ERR_INVALID_ARGUMENT);
    assert_int_equal(tf_sync_conn_error(NULL, NULL), TF_ERR_INVALID_ARGUMENT);
    assert_int_equal(tf_sync_conn_fd(NULL), -1);
    assert_null(tf_sync_conn_base(NULL));
    assert_int_equal(tf_sync_conn_error(a, NULL), TF_OK); /* none of it poisoned */
    tf_sync_conn_free(NULL);
    assert_int_equal(tf_sync_conn_send(a, "x", 1, 5000), TF_OK);
    char buf[4];
    assert_int_equal(tf_sync_conn_recv(b, buf, sizeof buf, &len, 5000), TF_OK);
    tf_sync_conn_free(a);
    tf_sync_conn_free(b);
}

/* ---------------------------------------------------------------- handshake off, from_fd */

/* config.handshake = 0: plain length-prefixed frames from the first byte, both ways. */
static void test_handshake_off_raw_peer(void **state)
{
    tf_tcp_config cfg;
    tf_tcp_config_init(&cfg);
    cfg.handshake = 0;
    int raw;
    tf_sync_conn *c = tu_raw_pair(tu_host(state), &cfg, &raw);
    assert_true(tu_write_frame(raw, "UNIF", 4)); /* would be a magic with the handshake on */
    char buf[8];
    size_t len;
    assert_int_equal(tf_sync_conn_recv(c, buf, sizeof buf, &len, 5000), TF_OK);
    assert_int_equal(len, 4);
    assert_memory_equal(buf, "UNIF", 4);
    assert_int_equal(tf_sync_conn_send(c, "hey", 3, 5000), TF_OK);
    uint32_t l;
    assert_true(tu_read_frame(raw, buf, sizeof buf, &l)); /* first bytes: a prefix, no magic */
    assert_int_equal(l, 3);
    close(raw);
    tf_sync_conn_free(c);
}

typedef struct from_fd_arg {
    int fd;
    tf_sync_conn *c;
    tf_err err;
} from_fd_arg;

static void *from_fd_main(void *arg)
{
    from_fd_arg *f = arg;
    f->err = tf_sync_conn_from_fd(f->fd, NULL, &f->c, NULL, NULL);
    return NULL;
}

/* Both ends of a UNIX socketpair taken over, with the handshake (TCP options ignored). */
static void test_from_fd_socketpair(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    from_fd_arg f = {.fd = sv[1]};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, from_fd_main, &f), 0);
    tf_sync_conn *a;
    tf_errmsg msg;
    tf_err e = tf_sync_conn_from_fd(sv[0], NULL, &a, NULL, &msg);
    pthread_join(t, NULL);
    assert_int_equal(e, TF_OK);
    assert_int_equal(f.err, TF_OK);
    assert_int_equal(tf_sync_conn_fd(a), sv[0]);
    assert_int_equal(tf_sync_conn_send(a, "sp", 2, 5000), TF_OK);
    char buf[4];
    size_t len;
    assert_int_equal(tf_sync_conn_recv(f.c, buf, sizeof buf, &len, 5000), TF_OK);
    assert_int_equal(len, 2);
    tf_sync_conn_free(a);
    assert_int_equal(tf_sync_conn_recv(f.c, buf, sizeof buf, &len, 5000), TF_ERR_CLOSED);
    tf_sync_conn_free(f.c);
}

/* Regression (issue 15, found by tests/test_faults.c): the generic view's send and receive
 * made their future AFTER the blocking call, so when that allocation failed the message had
 * been sent (or received and dropped) while the call said NOMEM, "did not start". Now the
 * future comes first: a refused call moves nothing, and the next one carries on in step. */
static atomic_long fail_allocs; /* library allocations to refuse from now on */

static int refuse_alloc(tf__sys_op op, int fd, size_t *len)
{
    (void)fd;
    (void)len;
    if (op == TF__SYS_MALLOC && atomic_load(&fail_allocs) > 0) {
        atomic_fetch_sub(&fail_allocs, 1);
        return ENOMEM;
    }
    return 0;
}

static void test_generic_nomem_moves_nothing(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    tf_tcp_config cfg;
    tf_tcp_config_init(&cfg);
    cfg.handshake = false;
    tf_sync_conn *a;
    assert_int_equal(tf_sync_conn_from_fd(sv[0], &cfg, &a, NULL, NULL), TF_OK);
    tf_conn *c = tf_sync_conn_base(a);
    atomic_store(&tf__sys_hook, refuse_alloc);

    /* a refused send sends nothing */
    atomic_store(&fail_allocs, 1);
    tf_future *fu = (tf_future *)&fu;
    assert_int_equal(tf_conn_send(c, "one", 3, &fu), TF_ERR_NOMEM);
    assert_null(fu);
    assert_false(tu_readable(sv[1], 0));
    assert_int_equal(tf_conn_send(c, "two", 3, &fu), TF_OK);
    assert_int_equal(tf_future_get(fu, NULL, NULL), TF_OK);
    tf_future_free(fu);
    char buf[8];
    uint32_t len = 0;
    assert_true(tu_read_frame(sv[1], buf, sizeof buf, &len));
    assert_int_equal(len, 3);
    assert_memory_equal(buf, "two", 3);

    /* a refused receive (span or allocating) leaves the message for the next one */
    assert_true(tu_write_frame(sv[1], "abc", 3));
    assert_true(tu_write_frame(sv[1], "defg", 4));
    atomic_store(&fail_allocs, 1);
    assert_int_equal(tf_conn_recv(c, buf, sizeof buf, &fu), TF_ERR_NOMEM);
    assert_null(fu);
    atomic_store(&fail_allocs, 1);
    assert_int_equal(tf_conn_recv_alloc(c, &fu), TF_ERR_NOMEM);
    assert_null(fu);
    size_t n = 0;
    assert_int_equal(tf_conn_recv(c, buf, sizeof buf, &fu), TF_OK);
    assert_int_equal(tf_future_get(fu, &n, NULL), TF_OK);
    tf_future_free(fu);
    assert_int_equal(n, 3);
    assert_memory_equal(buf, "abc", 3);
    void *owned = NULL;
    assert_int_equal(tf_conn_recv_alloc(c, &fu), TF_OK);
    assert_int_equal(tf_future_get(fu, &n, &owned), TF_OK);
    tf_future_free(fu);
    assert_int_equal(n, 4);
    assert_memory_equal(owned, "defg", 4);
    free(owned);
    assert_int_equal(tf_sync_conn_error(a, NULL), TF_OK);

    atomic_store(&tf__sys_hook, NULL);
    tf_conn_free(c);
    close(sv[1]);
}

/* from_fd's failures close the fd (the teardown counts): a bad magic, a bad argument. */
static void test_from_fd_errors_close_fd(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_true(tu_write_all(sv[1], "UNIX", 4));
    tf_sync_conn *c = (tf_sync_conn *)&sv;
    tf_errmsg msg;
    assert_int_equal(tf_sync_conn_from_fd(sv[0], NULL, &c, NULL, &msg), TF_ERR_BAD_MAGIC);
    assert_null(c);
    printf("# %s\n", msg.text);
    assert_non_null(strstr(msg.text, "handshake"));
    close(sv[1]);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    close(sv[1]);
    assert_int_equal(tf_sync_conn_from_fd(sv[0], NULL, NULL, NULL, NULL), TF_ERR_INVALID_ARGUMENT);
    assert_int_equal(tf_sync_conn_from_fd(-1, NULL, &c, NULL, NULL), TF_ERR_INVALID_ARGUMENT);
}

/* ---------------------------------------------------------------- the generic view */

static void test_generic_conn_interface(void **state)
{
    tf_sync_conn *a, *b;
    tu_lib_pair(tu_host(state), NULL, &a, &b);
    tf_conn *ga = tf_sync_conn_base(a), *gb = tf_sync_conn_base(b);
    assert_ptr_equal(ga, (void *)a); /* the view is the first member */
    tf_future *f;
    size_t size;
    assert_int_equal(tf_conn_send(gb, "generic", 7, &f), TF_OK);
    assert_true(tf_future_is_ready(f)); /* sync: ready at once */
    assert_int_equal(tf_future_get(f, &size, NULL), TF_OK);
    assert_int_equal(size, 7);
    tf_future_free(f);
    assert_int_equal(tf_conn_send(gb, "again", 5, &f), TF_OK);
    tf_future_free(f);
    assert_int_equal(tf_conn_send(gb, "dropped", 7, &f), TF_OK);
    tf_future_free(f);

    char buf[16];
    assert_int_equal(tf_conn_recv(ga, buf, sizeof buf, &f), TF_OK);
    assert_int_equal(tf_future_get(f, &size, NULL), TF_OK);
    assert_int_equal(size, 7);
    assert_memory_equal(buf, "generic", 7);
    tf_future_free(f);
    void *p = NULL;
    assert_int_equal(tf_conn_recv_alloc(ga, &f), TF_OK);
    assert_int_equal(tf_future_get(f, &size, &p), TF_OK);
    assert_int_equal(size, 5);
    assert_memory_equal(p, "again", 5);
    free(p); /* taken: ours */
    tf_future_free(f);
    assert_int_equal(tf_conn_recv_alloc(ga, &f), TF_OK);
    tf_future_free(f); /* never taken: the future frees the buffer (ASan's leak check) */

    /* close: the peer sees CLOSED after the last message; later calls NOT_CONNECTED. */
    assert_int_equal(tf_conn_close(gb, &f), TF_OK);
    assert_int_equal(tf_future_get(f, &size, NULL), TF_OK);
    tf_future_free(f);
    assert_int_equal(tf_conn_recv(ga, buf, sizeof buf, &f), TF_OK);
    assert_int_equal(tf_future_get(f, &size, NULL), TF_ERR_CLOSED);
    tf_future_free(f);
    int os = -1;
    assert_int_equal(tf_conn_error(ga, &os), TF_OK); /* CLOSED: the receive direction only */
    assert_int_equal(os, 0);
    assert_int_equal(tf_conn_error(gb, NULL), TF_ERR_NOT_CONNECTED);
    assert_int_equal(tf_conn_send(gb, "x", 1, &f), TF_OK);
    assert_int_equal(tf_future_get(f, &size, NULL), TF_ERR_NOT_CONNECTED);
    tf_future_free(f);
    tf_conn_free(ga);
    tf_conn_free(gb);
}

/* ---------------------------------------------------------------- main */

#define V4 ((void *)"127.0.0.1")
#define V6 ((void *)"[::1]")
#define T(f, host) cmocka_unit_test_prestate_setup_teardown(f, setup, teardown, host)
#define T2(f) T(f, V4), T(f, V6)

int main(void)
{
    tio_filter_from_env();
    const struct CMUnitTest tests[] = {
        T2(test_send_recv_bidirectional),
        T2(test_send_recv_empty),
        T2(test_send_recv_large_64mib),
        T2(test_send_recv_many_then_close),
        T2(test_closed_between_frames),
        T2(test_half_close_reply_after_closed),
        T2(test_closed_inside_frame),
        T2(test_send_on_closed),
        T(test_sigpipe_default_disposition, V4),
        T(test_recv_span_too_small_poisons, V4),
        T2(test_recv_too_large_allocates_nothing),
        T2(test_recv_alloc_commits_as_bytes_arrive),
        T(test_send_too_large_refused, V6),
        T(test_recv_alloc_nomem_poisons, V4),
        T(test_recv_timeout_at_boundary_usable, V4),
        T(test_recv_timeout_inside_frame_poisons, V6),
        T(test_signals_do_not_end_waits, V4),
        T(test_send_timeout_nothing_moved_usable, NULL),
        T(test_send_timeout_partial_poisons, V4),
        T2(test_half_close),
        T(test_half_close_other_way_flows, V6),
        T(test_invalid_arguments, V4),
        T2(test_handshake_off_raw_peer),
        T(test_from_fd_socketpair, NULL),
        T(test_from_fd_errors_close_fd, NULL),
        T2(test_generic_conn_interface),
        T(test_generic_nomem_moves_nothing, NULL),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
