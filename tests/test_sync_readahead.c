/* tests/test_sync_readahead.c -- the blocking connection's read-ahead and its batch send
 * (sync.h, SPEC 9.6, issue 21), split from tests/test_sync_conn.c: messages coalesced in one
 * segment taken without further reads, frames across the buffer's edge, bodies larger than the
 * buffer read straight into the caller's, timeouts and EOFs with bytes read ahead, the limits
 * and the poison unchanged, the handshake leaving the first frames to the receiver, and
 * tf_sync_conn_sendv with 0, 1, many and huge messages, partial writes, a slow reader,
 * timeouts and refusals. Syscalls are counted through the library's syscall seam
 * (tf__sys_hook, io/internal.h) for the connection's fd only. Every test runs under the
 * no-progress watchdog and checks, in its teardown, that no fd leaked. Assertions only on the
 * main thread; worker threads report through their struct. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "internal.h"
#include "sync_internal.h"
#include "tcpframe/proto.h"
#include "tcpframe/sync.h"
#include "test_io_util.h"
#include "tu_net.h"
#include "tu_sync.h"

#define MIB (1024u * 1024u)

/* ---------------------------------------------------------------- fixture, counting */

static int fds_before;

static atomic_int cnt_fd = -1;           /* the fd whose calls are counted */
static atomic_long cnt_reads, cnt_sends; /* read / sendmsg calls on it */
static atomic_size_t cnt_max_read;       /* the largest count a read asked for */
static atomic_size_t cnt_min_read;       /* the smallest */
static atomic_size_t send_cap;           /* 0, else each sendmsg moves at most this many bytes */

static int count_hook(tf__sys_op op, int fd, size_t *len)
{
    if (fd != atomic_load(&cnt_fd))
        return 0;
    if (op == TF__SYS_READ) {
        atomic_fetch_add(&cnt_reads, 1);
        if (*len > atomic_load(&cnt_max_read))
            atomic_store(&cnt_max_read, *len);
        if (*len < atomic_load(&cnt_min_read))
            atomic_store(&cnt_min_read, *len);
    } else if (op == TF__SYS_SENDMSG) {
        atomic_fetch_add(&cnt_sends, 1);
        size_t cap = atomic_load(&send_cap);
        if (cap && *len > cap)
            *len = cap;
    }
    return 0;
}

/* Count the reads and sendmsgs of |fd| from now on. */
static void count_on(int fd)
{
    atomic_store(&cnt_reads, 0);
    atomic_store(&cnt_sends, 0);
    atomic_store(&cnt_max_read, 0);
    atomic_store(&cnt_min_read, SIZE_MAX);
    atomic_store(&cnt_fd, fd);
    atomic_store(&tf__sys_hook, count_hook);
}

static void count_off(void)
{
    atomic_store(&tf__sys_hook, NULL);
    atomic_store(&cnt_fd, -1);
    atomic_store(&send_cap, 0);
}

static int setup(void **state)
{
    fds_before = tu_fd_count();
    return tio_watchdog_setup(state);
}

static int teardown(void **state)
{
    count_off();
    tu_alloc_reset();
    tio_watchdog_teardown(state);
    assert_int_equal(tu_fd_count(), fds_before); /* no fd leaked */
    return 0;
}

/* ---------------------------------------------------------------- helpers */

/* Frame |len| bytes of the pattern |seed| at |at|: the bytes written (4 + len). */
static size_t put_frame(uint8_t *at, uint32_t len, uint32_t seed)
{
    tf_be32_put(at, len);
    tu_fill(at + 4, len, seed);
    return 4 + (size_t)len;
}

/* A writer thread: |len| bytes of |buf| to |fd|, then (if shut) shutdown(SHUT_WR). */
typedef struct writer {
    int fd;
    const uint8_t *buf;
    size_t len;
    bool shut, ok;
    pthread_t t;
} writer;

static void *writer_main(void *arg)
{
    writer *w = arg;
    w->ok = tu_write_all(w->fd, w->buf, w->len);
    if (w->shut)
        shutdown(w->fd, SHUT_WR);
    return NULL;
}

static void writer_start(writer *w, int fd, const uint8_t *buf, size_t len, bool shut)
{
    *w = (writer){.fd = fd, .buf = buf, .len = len, .shut = shut};
    assert_int_equal(pthread_create(&w->t, NULL, writer_main, w), 0);
}

static void writer_join(writer *w)
{
    pthread_join(w->t, NULL);
    assert_true(w->ok);
}

/* Wait (watchdog-bounded) until |fd| holds |n| unread bytes, so the next read finds them all. */
static void wait_queued(int fd, size_t n)
{
    for (int i = 0; i < 20000; i++) {
        int q = 0;
        assert_int_equal(ioctl(fd, FIONREAD, &q), 0);
        if ((size_t)q >= n)
            return;
        tu_nap(1);
    }
    fail_msg("only part of %zu bytes arrived", n);
}

/* The connection's stats. */
static tf_conn_stats stats_of(const tf_sync_conn *c)
{
    tf_conn_stats s;
    memset(&s, 0, sizeof s);
    s.size = sizeof s;
    assert_int_equal(tf_sync_conn_stats(c, &s), TF_OK);
    return s;
}

/* Receive one message (span or alloc mode) and check it is |len| bytes of pattern |seed|. */
static void expect_msg(tf_sync_conn *c, bool alloc, size_t len, uint32_t seed)
{
    size_t got = 0;
    if (alloc) {
        void *p = NULL;
        assert_int_equal(tf_sync_conn_recv_alloc(c, &p, &got, 5000), TF_OK);
        assert_int_equal(got, len);
        assert_true(tu_check(p, got, seed));
        free(p);
    } else {
        uint8_t *b = malloc(len + 16);
        assert_non_null(b);
        assert_int_equal(tf_sync_conn_recv(c, b, len + 16, &got, 5000), TF_OK);
        assert_int_equal(got, len);
        assert_true(tu_check(b, got, seed));
        free(b);
    }
}

/* The socketpair connection (handshake off): *peer is the raw other end. */
static tf_sync_conn *pair_unix(int *peer, const tf_tcp_config *base)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    tf_tcp_config cfg;
    if (base)
        cfg = *base;
    else
        tf_tcp_config_init(&cfg);
    cfg.handshake = 0;
    int big = (int)MIB; /* room for the tests' writes before the first receive */
    setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    tf_sync_conn *c;
    assert_int_equal(tf_sync_conn_from_fd(sv[0], &cfg, &c, NULL, NULL), TF_OK);
    *peer = sv[1];
    return c;
}

/* ---------------------------------------------------------------- read-ahead */

/* 100 small messages written in one write, then the peer's FIN: every message is taken from
 * the read-ahead (one read for them all, one for the EOF; without the read-ahead, two reads per
 * message), counted in the stats only as each is delivered; then CLOSED, sticky, and sends go
 * on (the half-close rule). */
static void test_coalesced_messages_one_read(void **state)
{
    int raw;
    tf_sync_conn *c = tu_raw_pair(tu_host(state), NULL, &raw);
    uint8_t all[100 * 24];
    size_t n = 0;
    for (uint32_t i = 0; i < 100; i++)
        n += put_frame(all + n, 20, i);
    assert_true(tu_write_all(raw, all, n));
    shutdown(raw, SHUT_WR);
    wait_queued(tf_sync_conn_fd(c), n);
    count_on(tf_sync_conn_fd(c));
    for (uint32_t i = 0; i < 100; i++) {
        expect_msg(c, i % 2 == 1, 20, i);
        if (i == 0) { /* all read, one delivered */
            tf_conn_stats s = stats_of(c);
            assert_int_equal(s.msgs_recv, 1);
            assert_int_equal(s.bytes_recv, 20);
        }
    }
    assert_int_equal(atomic_load(&cnt_reads), 1);
    char b[4];
    size_t len;
    assert_int_equal(tf_sync_conn_recv(c, b, sizeof b, &len, 5000), TF_ERR_CLOSED);
    long reads = atomic_load(&cnt_reads);
    printf("# 100 coalesced messages and the EOF: %ld reads\n", reads);
    assert_int_equal(reads, 2);
    assert_int_equal(tf_sync_conn_recv(c, b, sizeof b, &len, 5000), TF_ERR_CLOSED);
    assert_int_equal(atomic_load(&cnt_reads), 2); /* sticky: no syscall */
    tf_conn_stats s = stats_of(c);
    assert_int_equal(s.msgs_recv, 100);
    assert_int_equal(s.bytes_recv, 2000);
    assert_int_equal(s.rx_end, TF_ERR_CLOSED);
    assert_int_equal(tf_sync_conn_error(c, NULL), TF_OK);
    count_off();
    assert_int_equal(tf_sync_conn_send(c, "re", 2, 5000), TF_OK);
    char r[4];
    uint32_t rl;
    assert_true(tu_read_frame(raw, r, sizeof r, &rl));
    assert_int_equal(rl, 2);
    close(raw);
    tf_sync_conn_free(c);
}

/* A message already read ahead is returned without a syscall, even with timeout 0; at a frame
 * boundary with nothing buffered, timeout 0 is TIMEOUT, unpoisoned. */
static void test_buffered_message_no_syscall(void **state)
{
    int raw;
    tf_sync_conn *c = tu_raw_pair(tu_host(state), NULL, &raw);
    uint8_t two[64];
    size_t n = put_frame(two, 10, 1);
    n += put_frame(two + n, 0, 2);
    n += put_frame(two + n, 12, 3);
    assert_true(tu_write_all(raw, two, n));
    wait_queued(tf_sync_conn_fd(c), n);
    expect_msg(c, false, 10, 1);
    count_on(tf_sync_conn_fd(c));
    void *p = &raw;
    size_t len = 99;
    assert_int_equal(tf_sync_conn_recv_alloc(c, &p, &len, 0), TF_OK); /* the empty one */
    assert_null(p);
    assert_int_equal(len, 0);
    expect_msg(c, false, 12, 3);
    assert_int_equal(atomic_load(&cnt_reads), 0);
    char b[4];
    assert_int_equal(tf_sync_conn_recv(c, b, sizeof b, &len, 0), TF_ERR_TIMEOUT);
    assert_int_equal(tf_sync_conn_error(c, NULL), TF_OK);
    count_off();
    assert_true(tu_write_frame(raw, "ok", 2));
    assert_int_equal(tf_sync_conn_recv(c, b, sizeof b, &len, 5000), TF_OK);
    assert_int_equal(len, 2);
    close(raw);
    tf_sync_conn_free(c);
}

/* Frames laid so that the first read (64 KiB) ends 2 bytes into a prefix, and a later one in
 * the middle of a body larger than the buffer; span and alloc mode. */
static void across_edge(bool alloc)
{
    int peer;
    tf_sync_conn *c = pair_unix(&peer, NULL);
    const uint32_t la = TF_SYNC_READAHEAD - 4 - 2, lb = 100, lc = 70000, ld = 10;
    size_t total = 16 + (size_t)la + lb + lc + ld;
    uint8_t *all = malloc(total);
    size_t n = put_frame(all, la, 1);
    assert_int_equal(n, TF_SYNC_READAHEAD - 2);
    n += put_frame(all + n, lb, 2);
    n += put_frame(all + n, lc, 3);
    n += put_frame(all + n, ld, 4);
    assert_int_equal(n, total);
    writer w;
    writer_start(&w, peer, all, total, true);
    wait_queued(tf_sync_conn_fd(c), total); /* so the first read takes a whole buffer */
    expect_msg(c, alloc, la, 1);
    expect_msg(c, alloc, lb, 2);
    expect_msg(c, alloc, lc, 3);
    expect_msg(c, alloc, ld, 4);
    char b[4];
    size_t len;
    assert_int_equal(tf_sync_conn_recv(c, b, sizeof b, &len, 5000), TF_ERR_CLOSED);
    writer_join(&w);
    free(all);
    close(peer);
    tf_sync_conn_free(c);
}

static void test_frame_across_buffer_edge(void **state)
{
    (void)state;
    across_edge(false);
    across_edge(true);
}

/* A body larger than the buffer goes straight into the caller's buffer (span) or the
 * allocated one (alloc) after its buffered part: a read then asks for more than the
 * read-ahead's size, which a read into the read-ahead never does. After that large message the
 * next prefix is read alone (4 bytes asked), so that a stream of large messages is not copied
 * through the buffer. */
static void large_body(void **state, bool alloc)
{
    int raw;
    tf_sync_conn *c = tu_raw_pair(tu_host(state), NULL, &raw);
    const uint32_t big = 3 * MIB;
    size_t total = 12 + 10 + (size_t)big + 20;
    uint8_t *all = malloc(total);
    size_t n = put_frame(all, 10, 1);
    n += put_frame(all + n, big, 2);
    n += put_frame(all + n, 20, 3);
    count_on(tf_sync_conn_fd(c));
    writer w;
    writer_start(&w, raw, all, n, false);
    expect_msg(c, alloc, 10, 1);
    expect_msg(c, alloc, big, 2);
    expect_msg(c, alloc, 20, 3);
    writer_join(&w);
    size_t mx = atomic_load(&cnt_max_read);
    printf("# 3 MiB body (%s): %ld reads, the largest asked for %zu bytes\n",
           alloc ? "alloc" : "span", atomic_load(&cnt_reads), mx);
    assert_true(mx > TF_SYNC_READAHEAD);
    assert_int_equal(atomic_load(&cnt_min_read), 4);
    count_off();
    free(all);
    close(raw);
    tf_sync_conn_free(c);
}

static void test_body_larger_than_buffer(void **state)
{
    large_body(state, false);
    large_body(state, true);
}

/* Timeouts with bytes read ahead: the rule of SPEC 9.6 is unchanged. Complete messages read
 * ahead and nothing of the next: TIMEOUT, usable. Part of the next frame read ahead (a prefix,
 * or a prefix and part of the body): TIMEOUT poisons, as when that part was read by the call. */
static void test_timeouts_with_data_buffered(void **state)
{
    for (int k = 0; k < 3; k++) {
        int raw;
        tf_sync_conn *c = tu_raw_pair(tu_host(state), NULL, &raw);
        uint8_t b[64];
        size_t n = put_frame(b, 8, 1);
        if (k == 0) {
            n += put_frame(b + n, 9, 2); /* whole: the boundary after it */
        } else if (k == 1) {
            memcpy(b + n, "\0\0", 2); /* 2 prefix bytes */
            n += 2;
        } else {
            memcpy(b + n, "\0\0\0\12abc", 7); /* the prefix and 3 of 10 body bytes */
            n += 7;
        }
        assert_true(tu_write_all(raw, b, n));
        wait_queued(tf_sync_conn_fd(c), n);
        expect_msg(c, false, 8, 1);
        if (k == 0)
            expect_msg(c, true, 9, 2);
        char buf[16];
        size_t len;
        uint64_t t0 = tu_now_ms();
        assert_int_equal(tf_sync_conn_recv(c, buf, sizeof buf, &len, 50), TF_ERR_TIMEOUT);
        assert_true(tu_now_ms() - t0 >= 50); /* never early */
        if (k == 0) {
            assert_int_equal(tf_sync_conn_error(c, NULL), TF_OK);
            assert_true(tu_write_frame(raw, "go", 2));
            assert_int_equal(tf_sync_conn_recv(c, buf, sizeof buf, &len, 5000), TF_OK);
            assert_int_equal(len, 2);
        } else {
            assert_int_equal(tf_sync_conn_error(c, NULL), TF_ERR_TIMEOUT);
            assert_int_equal(tf_sync_conn_recv(c, buf, sizeof buf, &len, 5000), TF_ERR_TIMEOUT);
            uint8_t x;
            assert_int_equal(read(raw, &x, 1), 0); /* shut down */
        }
        close(raw);
        tf_sync_conn_free(c);
    }
}

/* The peer's EOF inside a frame whose start was read ahead with the message before it:
 * TRUNCATED, poisoned (span and alloc; the alloc buffer is freed: ASan). */
static void test_eof_inside_buffered_frame(void **state)
{
    for (int alloc = 0; alloc < 2; alloc++) {
        int raw;
        tf_sync_conn *c = tu_raw_pair(tu_host(state), NULL, &raw);
        uint8_t b[64];
        size_t n = put_frame(b, 5, 7);
        memcpy(b + n, "\0\0\0\12abc", 7);
        n += 7;
        assert_true(tu_write_all(raw, b, n));
        close(raw);
        expect_msg(c, alloc, 5, 7);
        size_t len;
        if (alloc) {
            void *p = &raw;
            assert_int_equal(tf_sync_conn_recv_alloc(c, &p, &len, 5000), TF_ERR_TRUNCATED);
            assert_null(p);
        } else {
            char buf[16];
            assert_int_equal(tf_sync_conn_recv(c, buf, sizeof buf, &len, 5000),
                             TF_ERR_TRUNCATED);
        }
        assert_int_equal(tf_sync_conn_error(c, NULL), TF_ERR_TRUNCATED);
        assert_int_equal(tf_sync_conn_send(c, "x", 1, -1), TF_ERR_TRUNCATED);
        tf_sync_conn_free(c);
    }
}

/* The receiver's limits with the offending frame read ahead behind a good one: a length over
 * max_recv_len poisons with TOO_LARGE and allocates nothing; a message over the span's cap
 * poisons with BUFFER_TOO_SMALL. */
static void test_limits_still_poison(void **state)
{
    tf_tcp_config cfg;
    tf_tcp_config_init(&cfg);
    cfg.max_recv_len = 100;
    int raw;
    tf_sync_conn *c = tu_raw_pair(tu_host(state), &cfg, &raw);
    uint8_t b[256];
    size_t n = put_frame(b, 100, 1);
    memcpy(b + n, "\0\0\0\145", 4); /* 101 */
    n += 4;
    memset(b + n, 'j', 50);
    n += 50;
    assert_true(tu_write_all(raw, b, n));
    wait_queued(tf_sync_conn_fd(c), n);
    tu_alloc_count(-1);
    expect_msg(c, true, 100, 1);
    assert_int_equal(tu_alloc_calls(), 1);
    void *p = &raw;
    size_t len;
    assert_int_equal(tf_sync_conn_recv_alloc(c, &p, &len, 5000), TF_ERR_TOO_LARGE);
    assert_null(p);
    assert_int_equal(tu_alloc_calls(), 1); /* none for the hostile length */
    assert_int_equal(tf_sync_conn_error(c, NULL), TF_ERR_TOO_LARGE);
    uint8_t x;
    assert_int_equal(read(raw, &x, 1), 0); /* shut down */
    close(raw);
    tf_sync_conn_free(c);

    c = tu_raw_pair(tu_host(state), NULL, &raw);
    n = put_frame(b, 50, 1);
    n += put_frame(b + n, 60, 2);
    assert_true(tu_write_all(raw, b, n));
    char span[55];
    assert_int_equal(tf_sync_conn_recv(c, span, sizeof span, &len, 5000), TF_OK);
    assert_int_equal(len, 50);
    assert_int_equal(tf_sync_conn_recv(c, span, sizeof span, &len, 5000),
                     TF_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(tf_sync_conn_error(c, NULL), TF_ERR_BUFFER_TOO_SMALL);
    close(raw);
    tf_sync_conn_free(c);
}

/* A peer that sends its magic and its first frames in one segment: the handshake takes the
 * magic only, and the frames are received (the accepting server's handshake, and from_fd's). */
static void test_magic_and_frames_in_one_segment(void **state)
{
    uint8_t seg[128];
    memcpy(seg, "UNIF", 4);
    size_t n = 4;
    for (uint32_t i = 0; i < 3; i++)
        n += put_frame(seg + n, 10 + i, i);

    char addr[80];
    tf_sync_server *s = tu_listen(tu_host(state), NULL, addr, sizeof addr);
    int raw = tu_raw_connect(addr);
    assert_true(raw >= 0);
    assert_true(tu_write_all(raw, seg, n));
    tf_sync_conn *c;
    assert_int_equal(tf_sync_server_accept(s, &c, NULL, NULL), TF_OK);
    tf_sync_server_free(s);
    assert_true(tu_expect_magic(raw));
    for (uint32_t i = 0; i < 3; i++)
        expect_msg(c, i == 1, 10 + i, i);
    close(raw);
    tf_sync_conn_free(c);

    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_true(tu_write_all(sv[1], seg, n));
    assert_int_equal(tf_sync_conn_from_fd(sv[0], NULL, &c, NULL, NULL), TF_OK);
    assert_true(tu_expect_magic(sv[1]));
    for (uint32_t i = 0; i < 3; i++)
        expect_msg(c, i == 2, 10 + i, i);
    close(sv[1]);
    tf_sync_conn_free(c);
}

/* ---------------------------------------------------------------- sendv */

/* Read |n| frames from |fd| and check frame i is sizes[i] bytes of pattern seeds[i]. */
static bool read_frames(int fd, size_t n, const uint32_t *sizes, const uint32_t *seeds)
{
    size_t cap = 0;
    for (size_t i = 0; i < n; i++)
        cap = sizes[i] > cap ? sizes[i] : cap;
    uint8_t *b = malloc(cap + 1);
    bool ok = b != NULL;
    for (size_t i = 0; ok && i < n; i++) {
        uint32_t len;
        ok = tu_read_frame(fd, b, cap + 1, &len) && len == sizes[i] &&
             tu_check(b, len, seeds[i]);
    }
    free(b);
    return ok;
}

/* A batch: n messages of sizes[i] bytes of pattern i (len 0: base NULL). */
typedef struct batch {
    size_t n;
    tf_iov *v;
    uint32_t *sizes, *seeds;
    uint64_t bytes;
} batch;

static void batch_make(batch *b, size_t n, uint32_t (*size)(size_t))
{
    b->n = n;
    b->v = calloc(n ? n : 1, sizeof *b->v);
    b->sizes = calloc(n ? n : 1, sizeof *b->sizes);
    b->seeds = calloc(n ? n : 1, sizeof *b->seeds);
    b->bytes = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t len = size(i);
        uint8_t *p = len ? malloc(len) : NULL;
        if (len)
            tu_fill(p, len, (uint32_t)i);
        b->v[i] = (tf_iov){.base = p, .len = len};
        b->sizes[i] = len;
        b->seeds[i] = (uint32_t)i;
        b->bytes += len;
    }
}

static void batch_free(batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        free((void *)(uintptr_t)b->v[i].base);
    free(b->v);
    free(b->sizes);
    free(b->seeds);
}

static uint32_t size_small(size_t i)
{
    return (uint32_t)(i % 50); /* 0..49, empty ones included */
}

static uint32_t size_33(size_t i)
{
    (void)i;
    return 33;
}

static uint32_t size_huge(size_t i)
{
    static const uint32_t s[] = {1 * MIB, 0, 10, 3 * MIB + 7, 64, 65536, 65535, 1};
    return i < 8 ? s[i] : 64;
}

/* 0 messages: nothing on the wire, no syscall; 1; 1000 small ones in a few sendmsg calls (256
 * a call). The stats count every message. */
static void test_sendv_zero_one_many(void **state)
{
    int raw;
    tf_sync_conn *c = tu_raw_pair(tu_host(state), NULL, &raw);
    count_on(tf_sync_conn_fd(c));
    assert_int_equal(tf_sync_conn_sendv(c, NULL, 0, 1000), TF_OK);
    assert_int_equal(atomic_load(&cnt_sends), 0);
    assert_int_equal(stats_of(c).msgs_sent, 0);

    batch one;
    batch_make(&one, 1, size_33);
    assert_int_equal(tf_sync_conn_sendv(c, one.v, 1, 5000), TF_OK);
    assert_int_equal(atomic_load(&cnt_sends), 1);
    assert_true(read_frames(raw, 1, one.sizes, one.seeds));

    batch many;
    batch_make(&many, 1000, size_small);
    atomic_store(&cnt_sends, 0);
    assert_int_equal(tf_sync_conn_sendv(c, many.v, many.n, 5000), TF_OK);
    long sends = atomic_load(&cnt_sends);
    printf("# 1000 messages: %ld sendmsg calls\n", sends);
    assert_true(sends >= 4 && sends <= 8); /* 4 batches, plus what a partial write resumes */
    assert_true(read_frames(raw, many.n, many.sizes, many.seeds));
    tf_conn_stats s = stats_of(c);
    assert_int_equal(s.msgs_sent, 1001);
    assert_int_equal(s.bytes_sent, 33 + many.bytes);
    assert_int_equal(s.queued_msgs, 0);
    assert_int_equal(s.queued_bytes, 0);
    batch_free(&one);
    batch_free(&many);
    count_off();
    close(raw);
    tf_sync_conn_free(c);
}

/* A raw reader thread: the frames of a batch, read in small pieces (slowly), checked. */
typedef struct slow_reader {
    int fd;
    const batch *b;
    bool ok;
} slow_reader;

static void *slow_reader_main(void *arg)
{
    slow_reader *r = arg;
    r->ok = true;
    for (size_t i = 0; r->ok && i < r->b->n; i++) {
        uint8_t hdr[4];
        r->ok = tu_read_all(r->fd, hdr, 4) && tf_be32_get(hdr) == r->b->sizes[i];
        size_t len = r->b->sizes[i], got = 0;
        uint8_t *p = malloc(len ? len : 1);
        while (r->ok && got < len) {
            size_t k = len - got < 4096 ? len - got : 4096;
            r->ok = tu_read_all(r->fd, p + got, k);
            got += k;
            if (got % (64 * 4096) == 0)
                tu_nap(1); /* slower than the sender: its writes come back partial */
        }
        r->ok = r->ok && tu_check(p, len, r->b->seeds[i]);
        free(p);
    }
    return NULL;
}

/* Huge messages mixed with small and empty ones, small socket buffers and a slow reader: the
 * sender waits for room, resumes partial writes, and every frame arrives whole, in order. */
static void test_sendv_huge_to_slow_reader(void **state)
{
    tf_tcp_config cfg;
    tf_tcp_config_init(&cfg);
    cfg.sndbuf = 65536;
    int raw;
    tf_sync_conn *c = tu_raw_pair(tu_host(state), &cfg, &raw);
    int small = 65536;
    setsockopt(raw, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    batch b;
    batch_make(&b, 300, size_huge);
    slow_reader r = {.fd = raw, .b = &b};
    pthread_t t;
    count_on(tf_sync_conn_fd(c));
    assert_int_equal(pthread_create(&t, NULL, slow_reader_main, &r), 0);
    assert_int_equal(tf_sync_conn_sendv(c, b.v, b.n, -1), TF_OK);
    pthread_join(t, NULL);
    assert_true(r.ok);
    tf_conn_stats s = stats_of(c);
    printf("# 300 messages, %llu bytes: %ld sendmsg calls, %llu pauses\n",
           (unsigned long long)b.bytes, atomic_load(&cnt_sends), (unsigned long long)s.pauses);
    assert_true(s.pauses > 0); /* it did wait for room */
    assert_int_equal(s.msgs_sent, 300);
    assert_int_equal(s.bytes_sent, b.bytes);
    count_off();
    batch_free(&b);
    close(raw);
    tf_sync_conn_free(c);
}

/* Every sendmsg moves at most 7 bytes (the syscall seam shortens it): the batch is resumed
 * where each write stopped, inside prefixes and payloads alike. */
static void test_sendv_partial_writes_resumed(void **state)
{
    int raw;
    tf_sync_conn *c = tu_raw_pair(tu_host(state), NULL, &raw);
    batch b;
    batch_make(&b, 60, size_small);
    atomic_store(&send_cap, 7);
    count_on(tf_sync_conn_fd(c));
    assert_int_equal(tf_sync_conn_sendv(c, b.v, b.n, 5000), TF_OK);
    long sends = atomic_load(&cnt_sends);
    count_off();
    uint64_t wire = b.bytes + 4 * b.n;
    printf("# 60 messages, %llu bytes on the wire, at most 7 a write: %ld sendmsg calls\n",
           (unsigned long long)wire, sends);
    assert_true(sends >= (long)((wire + 6) / 7));
    assert_true(read_frames(raw, b.n, b.sizes, b.seeds));
    batch_free(&b);
    close(raw);
    tf_sync_conn_free(c);
}

/* Refusals move nothing and do not poison: a message over max_send_len anywhere in the batch,
 * a NULL base with a length, a NULL array; after our shutdown, BAD_STATE. */
static void test_sendv_refusals(void **state)
{
    tf_tcp_config cfg;
    tf_tcp_config_init(&cfg);
    cfg.max_send_len = 100;
    int raw;
    tf_sync_conn *c = tu_raw_pair(tu_host(state), &cfg, &raw);
    uint8_t p[101];
    tu_fill(p, sizeof p, 5);
    tf_iov bad[3] = {{p, 10}, {p, 101}, {p, 5}};
    assert_int_equal(tf_sync_conn_sendv(c, bad, 3, 1000), TF_ERR_TOO_LARGE);
    bad[1] = (tf_iov){NULL, 3};
    assert_int_equal(tf_sync_conn_sendv(c, bad, 3, 1000), TF_ERR_INVALID_ARGUMENT);
    assert_int_equal(tf_sync_conn_sendv(c, NULL, 2, 1000), TF_ERR_INVALID_ARGUMENT);
    assert_int_equal(tf_sync_conn_sendv(NULL, bad, 1, 1000), TF_ERR_INVALID_ARGUMENT);
    assert_int_equal(tf_sync_conn_error(c, NULL), TF_OK);
    bad[1] = (tf_iov){NULL, 0}; /* an empty message needs no base */
    bad[2] = (tf_iov){p, 100};
    assert_int_equal(tf_sync_conn_sendv(c, bad, 3, 1000), TF_OK);
    uint32_t sizes[3] = {10, 0, 100}, seeds[3] = {5, 5, 5};
    assert_true(read_frames(raw, 3, sizes, seeds)); /* nothing of the refused batches */
    assert_int_equal(tf_sync_conn_shutdown(c), TF_OK);
    assert_int_equal(tf_sync_conn_sendv(c, bad, 1, 1000), TF_ERR_BAD_STATE);
    assert_int_equal(stats_of(c).msgs_sent, 3);
    close(raw);
    tf_sync_conn_free(c);
}

/* A full socket buffer before the first byte: TIMEOUT, not poisoned, the batch forgotten; a
 * batch that stalls after part of it went: TIMEOUT poisons. */
static void test_sendv_timeouts(void **state)
{
    (void)state;
    int peer;
    tf_sync_conn *c = pair_unix(&peer, NULL);
    uint8_t junk[4096] = {0};
    size_t filled = 0;
    ssize_t k;
    while ((k = send(tf_sync_conn_fd(c), junk, sizeof junk, MSG_DONTWAIT)) > 0)
        filled += (size_t)k;
    tf_iov v[2] = {{(const uint8_t *)"ab", 2}, {(const uint8_t *)"cd", 2}};
    assert_int_equal(tf_sync_conn_sendv(c, v, 2, 50), TF_ERR_TIMEOUT);
    assert_int_equal(tf_sync_conn_error(c, NULL), TF_OK);
    uint8_t *sink = malloc(filled);
    assert_true(tu_read_all(peer, sink, filled));
    free(sink);
    v[0].base = (const uint8_t *)"ef";
    assert_int_equal(tf_sync_conn_sendv(c, v, 1, 5000), TF_OK);
    char buf[8];
    uint32_t len;
    assert_true(tu_read_frame(peer, buf, sizeof buf, &len)); /* "ab", "cd" never went */
    assert_int_equal(len, 2);
    assert_memory_equal(buf, "ef", 2);
    close(peer);
    tf_sync_conn_free(c);

    tf_tcp_config cfg;
    tf_tcp_config_init(&cfg);
    cfg.sndbuf = 65536;
    c = pair_unix(&peer, &cfg);
    size_t big = 4u * MIB;
    uint8_t *m = calloc(1, big);
    tf_iov h[2] = {{m, 10}, {m, big}};
    assert_int_equal(tf_sync_conn_sendv(c, h, 2, 100), TF_ERR_TIMEOUT);
    assert_int_equal(tf_sync_conn_error(c, NULL), TF_ERR_TIMEOUT);
    assert_int_equal(tf_sync_conn_sendv(c, h, 1, 100), TF_ERR_TIMEOUT); /* the poison */
    free(m);
    close(peer);
    tf_sync_conn_free(c);
}

/* Two library connections: a batch one way, read ahead on the other side, and back. */
static void test_sendv_between_library_ends(void **state)
{
    tf_sync_conn *a, *b;
    tu_lib_pair(tu_host(state), NULL, &a, &b);
    batch x;
    batch_make(&x, 700, size_small);
    assert_int_equal(tf_sync_conn_sendv(b, x.v, x.n, 5000), TF_OK);
    for (size_t i = 0; i < x.n; i++)
        expect_msg(a, i % 3 == 0, x.sizes[i], x.seeds[i]);
    assert_int_equal(tf_sync_conn_sendv(a, x.v, 10, 5000), TF_OK);
    for (size_t i = 0; i < 10; i++)
        expect_msg(b, false, x.sizes[i], x.seeds[i]);
    batch_free(&x);
    tf_sync_conn_free(a);
    tf_sync_conn_free(b);
}


/* ---------------------------------------------------------------- the kernel's stall (9.3) */

enum { CHAT_EACH = 8, CHAT_ROUNDS = 100, CHAT_BURST = 200, CHAT_STALL_MS = 20000 };

static uint8_t chat_byte(size_t i)
{
    return tu_chat_byte(i, CHAT_EACH);
}

static void tick(void)
{
    tio_tick();
}

/* A sending thread: one message of |len| bytes, no timeout. */
typedef struct sender {
    tf_sync_conn *c;
    const uint8_t *buf;
    size_t len;
    tf_err rc;
    pthread_t t;
} sender;

static void *sender_main(void *arg)
{
    sender *s = arg;
    s->rc = tf_sync_conn_send(s->c, s->buf, s->len, -1);
    return NULL;
}

static void sender_start(sender *s, tf_sync_conn *c, const uint8_t *buf, size_t len)
{
    *s = (sender){.c = c, .buf = buf, .len = len, .rc = TF_ERR_BAD_STATE};
    assert_int_equal(pthread_create(&s->t, NULL, sender_main, s), 0);
}

/* Take |frames| chattered frames from |c|, in order. */
static void expect_chatter(tf_sync_conn *c, size_t frames)
{
    for (size_t k = 0; k < frames; k++) {
        uint8_t b[CHAT_EACH + 1];
        size_t got = 0;
        assert_int_equal(tf_sync_conn_recv(c, b, sizeof b, &got, 10000), TF_OK);
        assert_int_equal(got, CHAT_EACH);
        assert_true(tu_check(b, got, (uint32_t)k));
    }
}

/* Issue 25.8, the sync side: a connection blocked in a send while its owner reads nothing (as
 * an echo server does), to a peer that reads every byte and answers with bursts of 3-byte
 * segments (TCP_NODELAY). With a 4 KiB receive buffer Linux drops the tiny segments once the
 * queue is over the buffer, and every later one -- with the ACK of our data -- lies beyond our
 * closed window: before, the send never completed (1 run in 3 stalled at the 9th MiB, until the
 * peer gave up). A send that waited 200 ms now reads a bounded amount ahead, which reopens the
 * window; what it read is the next receives', in order. */
static void test_sender_not_stalled_by_kernel_drops(void **state)
{
    (void)state;
    int small = 4096, lfd, raw;
    int fd = tu_tcp_pair_small_rcvbuf(small, &lfd, &raw);
    tf_tcp_config cfg;
    tf_tcp_config_init(&cfg);
    cfg.rcvbuf = small;
    cfg.handshake = 0;
    tf_sync_conn *c;
    assert_int_equal(tf_sync_conn_from_fd(fd, &cfg, &c, NULL, NULL), TF_OK);
    uint8_t *big = calloc(1, MIB);
    assert_non_null(big);
    static const long gaps[5] = {1000, 2000, 5000, 10000, 20000};
    size_t wrote = 0;
    int rounds = 0;
    bool moved = true;
    for (; rounds < CHAT_ROUNDS && moved; rounds++) {
        sender snd;
        sender_start(&snd, c, big, MIB);
        moved = tu_read_or_stall(raw, 4 + MIB, CHAT_STALL_MS, tick);
        if (!moved)
            shutdown(raw, SHUT_RDWR); /* let the send fail, so its thread ends */
        pthread_join(snd.t, NULL);
        if (moved)
            assert_int_equal(snd.rc, TF_OK);
        if (moved) /* spaced writes, each its own segment (1-20 us apart by round) */
            tu_chat_burst(raw, &wrote, CHAT_EACH, CHAT_BURST, gaps[rounds % 5]);
    }
    print_message("sync stall: %d of %d rounds of 1 MiB, %zu bytes chattered, %u relief "
                  "read(s)%s\n", rounds, CHAT_ROUNDS, wrote, tf__sync_conn_relief_reads(c),
                  moved ? "" : ": STALLED (no byte for the watchdog's window)");
    assert_true(moved);
    size_t frames = (wrote + 4 + CHAT_EACH - 1) / (4 + CHAT_EACH);
    for (size_t i = wrote; i < frames * (4 + CHAT_EACH); i++) {
        uint8_t b = chat_byte(i);
        assert_true(tu_write_all(raw, &b, 1));
    }
    expect_chatter(c, frames);
    tf_sync_conn_free(c);
    close(raw);
    close(lfd);
    free(big);
}

/* The relief itself: a send to a peer that never reads (no progress at all) while the peer's
 * frames wait unread: after 200 ms the send reads ahead what the socket holds, up to the
 * read-ahead's size (TF_SYNC_READAHEAD) and never more; once the peer reads, the send
 * completes, and the receives get every frame in order, the read-ahead ones first. */
static void test_send_relief_reads_ahead_bounded(void **state)
{
    (void)state;
    int peer;
    tf_sync_conn *c = pair_unix(&peer, NULL);
    int fd = tf_sync_conn_fd(c);
    enum { FRAMES = 12000 }; /* 144,000 bytes: more than the read-ahead */
    size_t total = (size_t)FRAMES * (4 + CHAT_EACH), wrote = 0;
    uint8_t *all = malloc(total);
    assert_non_null(all);
    for (size_t j = 0; j < total; j++)
        all[j] = chat_byte(j);
    assert_int_equal(fcntl(peer, F_SETFL, O_NONBLOCK), 0);
    while (wrote < total) { /* as much as the socket takes now */
        ssize_t w = send(peer, all + wrote, total - wrote, MSG_NOSIGNAL);
        if (w <= 0)
            break;
        wrote += (size_t)w;
    }
    assert_int_equal(fcntl(peer, F_SETFL, 0), 0);
    assert_true(wrote > TF_SYNC_READAHEAD);
    uint8_t *big = calloc(1, 4 * MIB);
    assert_non_null(big);
    sender snd;
    sender_start(&snd, c, big, 4 * MIB); /* more than the socket takes: it waits */
    int q = (int)wrote;
    while (q == (int)wrote) { /* watchdog-bounded: the relief comes after 200 ms */
        assert_int_equal(ioctl(fd, FIONREAD, &q), 0);
        tu_nap(5);
    }
    tu_nap(1000); /* five more relief periods: nothing more may be read */
    assert_int_equal(ioctl(fd, FIONREAD, &q), 0);
    print_message("sync relief: %u read(s), %d of %zu bytes left in the kernel (bound %d)\n",
                  tf__sync_conn_relief_reads(c), q, wrote, TF_SYNC_READAHEAD);
    assert_int_equal((size_t)q, wrote - TF_SYNC_READAHEAD);
    assert_true(tu_read_or_stall(peer, 4 + 4 * MIB, CHAT_STALL_MS, tick));
    pthread_join(snd.t, NULL);
    assert_int_equal(snd.rc, TF_OK);
    assert_true(tu_write_all(peer, all + wrote, total - wrote));
    expect_chatter(c, FRAMES);
    tf_sync_conn_free(c);
    close(peer);
    free(all);
    free(big);
}


/* The relief counts across calls (attack 4): a retry loop of sends with 50 ms timeouts to a peer
 * that never reads -- each times out with nothing moved, so the connection stays usable -- adds
 * up to the 200 ms, and the waiting bytes are read ahead (before, no single call waited 200 ms and
 * the peer's data stayed in the kernel for ever). */
static void test_send_relief_across_short_timeouts(void **state)
{
    (void)state;
    int peer;
    tf_sync_conn *c = pair_unix(&peer, NULL);
    int fd = tf_sync_conn_fd(c);
    uint8_t frame[4 + CHAT_EACH];
    for (size_t j = 0; j < sizeof frame; j++)
        frame[j] = chat_byte(j);
    assert_true(tu_write_all(peer, frame, sizeof frame)); /* one frame waits unread */
    uint8_t one = 1;
    tf_err rc = TF_OK;
    for (int i = 0; i < 1000000 && rc == TF_OK; i++) /* fill the socket: a TIMEOUT, nothing moved */
        rc = tf_sync_conn_send(c, &one, 1, 50);
    assert_int_equal(rc, TF_ERR_TIMEOUT);
    int q = (int)sizeof frame;
    for (int i = 0; q > 0; i++) { /* retries of 50 ms each; watchdog-bounded */
        assert_int_equal(tf_sync_conn_send(c, &one, 1, 50), TF_ERR_TIMEOUT);
        assert_int_equal(ioctl(fd, FIONREAD, &q), 0);
        assert_true(i < 1000);
    }
    assert_int_equal(tf_sync_conn_error(c, NULL), TF_OK); /* never poisoned */
    expect_chatter(c, 1);
    tf_sync_conn_free(c);
    close(peer);
}

#define V4 ((void *)"127.0.0.1")
#define V6 ((void *)"[::1]")
#define T(f, host) cmocka_unit_test_prestate_setup_teardown(f, setup, teardown, host)
#define T2(f) T(f, V4), T(f, V6)

int main(void)
{
    tio_filter_from_env();
    const struct CMUnitTest tests[] = {
        T2(test_coalesced_messages_one_read),
        T(test_buffered_message_no_syscall, V4),
        T(test_frame_across_buffer_edge, NULL),
        T(test_body_larger_than_buffer, V4),
        T(test_timeouts_with_data_buffered, V6),
        T2(test_eof_inside_buffered_frame),
        T(test_limits_still_poison, V4),
        T2(test_magic_and_frames_in_one_segment),
        T(test_sendv_zero_one_many, V4),
        T(test_sendv_huge_to_slow_reader, V4),
        T(test_sendv_partial_writes_resumed, V6),
        T(test_sendv_refusals, V4),
        T(test_sendv_timeouts, NULL),
        T(test_sendv_between_library_ends, V4),
        T(test_sender_not_stalled_by_kernel_drops, V4),
        T(test_send_relief_reads_ahead_bounded, V4),
        T(test_send_relief_across_short_timeouts, V4),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
