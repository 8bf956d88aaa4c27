/* tools/tfdemo.c -- `make run`: tcpframe end to end over a pipe pair between a parent and a
 * forked child, through the real library (proto/ try-steps over io/fdio, tf_fd_wait).
 *
 * Both sides handshake; the parent sends COUNT messages of assorted sizes (0 bytes, MAXSIZE,
 * and a log-spread of sizes in between), the child echoes each one back, and the parent checks
 * every byte. Then it shows one error path: an over-long length refused with tf_strerror text.
 * Exit status 0 only if every message came back intact and the child exited cleanly.
 *
 *   tfdemo [-n COUNT] [-s MAXSIZE]     MAXSIZE may end in K or M (binary); defaults 200, 4M
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tcpframe/err.h"
#include "tcpframe/fdio.h"
#include "tcpframe/proto.h"

#define STALL_MS 10000 /* a peer that makes no progress this long is reported as stalled */

static const char *who = "tfdemo";

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Wait for readiness; false (with a message) on timeout or poll failure. */
static int wait_fd(int fd, short ev, const char *what)
{
    tf_err e = tf_fd_wait(fd, ev, STALL_MS);
    if (e == TF_OK)
        return 1;
    fprintf(stderr, "%s: waiting to %s: %s (%s)\n", who, what, tf_err_name(e),
            e == TF_ERR_IO ? strerror(errno) : tf_strerror(e));
    return 0;
}

static void report(const char *what, tf_err e, int os)
{
    fprintf(stderr, "%s: %s failed: %s: %s%s%s\n", who, what, tf_err_name(e), tf_strerror(e),
            os ? ": " : "", os ? strerror(os) : "");
}

static int handshake(const tf_io *io, int rfd, int wfd)
{
    tf_hs hs;
    tf_hs_init(&hs);
    for (;;) {
        tf_step s = tf_hs_try(&hs, io);
        if (s == TF_DONE)
            return 1;
        if (s == TF_ERROR) {
            int os;
            tf_err e = tf_hs_error(&hs, &os);
            report("handshake", e, os);
            return 0;
        }
        const uint8_t *out;
        int ok = tf_hs_out(&hs, &out) > 0 ? wait_fd(wfd, POLLOUT, "send the magic")
                                          : wait_fd(rfd, POLLIN, "receive the magic");
        if (!ok)
            return 0;
    }
}

/* Send one whole message. */
static int send_msg(tf_tx *tx, const tf_io *io, int wfd, const uint8_t *p, size_t len)
{
    tf_err e = tf_tx_begin(tx, p, len);
    if (e != TF_OK) {
        report("send", e, 0);
        return 0;
    }
    for (;;) {
        tf_step s = tf_tx_try(tx, io);
        if (s == TF_DONE)
            return 1;
        if (s == TF_ERROR) {
            int os;
            e = tf_tx_error(tx, &os);
            report("send", e, os);
            return 0;
        }
        if (!wait_fd(wfd, POLLOUT, "send"))
            return 0;
    }
}

/* Receive one whole message; *err gets the reason on failure (CLOSED at a clean end). */
static int recv_msg(tf_rx *rx, const tf_io *io, int rfd, const tf_sink *sink, tf_msg *msg,
                    tf_err *err, int *os)
{
    *err = TF_OK;
    *os = 0;
    for (;;) {
        tf_step s = tf_rx_try(rx, io, sink, msg);
        if (s == TF_DONE)
            return 1;
        if (s == TF_ERROR) {
            *err = tf_rx_error(rx, os);
            return 0;
        }
        if (!wait_fd(rfd, POLLIN, "receive")) {
            *err = TF_ERR_TIMEOUT;
            return 0;
        }
    }
}

static uint8_t *alloc_malloc(void *ctx, size_t len)
{
    (void)ctx;
    return malloc(len);
}

/* The child: echo every message until the parent closes its end (CLOSED). */
static int child_main(int rfd, int wfd, uint32_t max)
{
    who = "tfdemo[child]";
    tf_fdio f;
    tf_fdio_init(&f, rfd, wfd);
    const tf_io *io = tf_fdio_io(&f);
    if (!handshake(io, rfd, wfd))
        return 2;
    tf_rx rx;
    tf_tx tx;
    tf_rx_init(&rx, max);
    tf_tx_init(&tx, max);
    tf_sink sink = {NULL, 0, alloc_malloc, NULL};
    for (;;) {
        tf_msg m;
        tf_err e;
        int os;
        if (!recv_msg(&rx, io, rfd, &sink, &m, &e, &os)) {
            if (e == TF_ERR_CLOSED)
                return 0; /* the parent is done */
            report("receive", e, os);
            free(tf_rx_abandon(&rx));
            return 2;
        }
        int ok = send_msg(&tx, io, wfd, m.data, m.len);
        free(m.data);
        if (!ok)
            return 2;
    }
}

/* xorshift64*: payload bytes that depend on the message number. */
static void fill(uint8_t *p, size_t len, uint64_t seed)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < len; i++) {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        p[i] = (uint8_t)((s * 2685821657736338717ull) >> 56);
    }
}

/* Size of message i: first the edge cases, then a log-spread (uniform bit length). */
static size_t size_of(long i, size_t max, uint64_t *rng)
{
    static const size_t fixed[] = {0, SIZE_MAX, 1, 4095, 4096, 65536 + 7, 1048576 + 3};
    if ((size_t)i < sizeof fixed / sizeof fixed[0])
        return fixed[i] < max ? fixed[i] : max;
    *rng ^= *rng >> 12;
    *rng ^= *rng << 25;
    *rng ^= *rng >> 27;
    uint64_t r = *rng * 2685821657736338717ull;
    unsigned bits = 0;
    while (bits < 63 && ((uint64_t)1 << bits) <= max)
        bits++; /* max < 2^bits */
    unsigned b = (unsigned)(r % (bits + 1u));
    uint64_t lim = b ? ((uint64_t)1 << b) : 1; /* size in [0, 2^b) */
    uint64_t sz = (r >> 8) % lim;
    return sz < max ? (size_t)sz : max;
}

static int parse_size(const char *s, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || s[0] == '-')
        return 0;
    if (*end == 'K' || *end == 'k')
        v <<= 10, end++;
    else if (*end == 'M' || *end == 'm')
        v <<= 20, end++;
    if (*end || v > (1ull << 30))
        return 0;
    *out = (size_t)v;
    return 1;
}

static void usage(void)
{
    fprintf(stderr, "usage: tfdemo [-n COUNT] [-s MAXSIZE]\n"
                    "  -n COUNT    messages to echo (1..1000000, default 200)\n"
                    "  -s MAXSIZE  largest payload in bytes, K/M suffix ok (0..1G, default 4M);\n"
                    "              one message has exactly this size, one is empty\n");
}

/* The error path: a receiver whose maximum is 1 KiB reads a prefix announcing 4 KiB. */
static int error_demo(size_t max)
{
    printf("error path:\n");
    tf_tx tx;
    tf_tx_init(&tx, (uint32_t)max);
    static uint8_t big[4096];
    tf_err e = tf_tx_begin(&tx, big, max + 1); /* refused on the length alone, big is not read */
    printf("  sender (max %zu) asked to send %zu bytes: %s: \"%s\"; nothing sent\n", max, max + 1,
           tf_err_name(e), tf_strerror(e));
    int ok1 = e == TF_ERR_TOO_LARGE;

    int p[2];
    if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0) {
        perror("tfdemo: pipe2");
        return 0;
    }
    tf_fdio f;
    tf_fdio_init(&f, p[0], p[1]);
    tf_tx lax;
    tf_tx_init(&lax, sizeof big);
    int ok2 = send_msg(&lax, tf_fdio_io(&f), p[1], big, sizeof big);
    tf_rx rx;
    tf_rx_init(&rx, 1024);
    tf_sink sink = {NULL, 0, alloc_malloc, NULL};
    tf_msg m;
    int os;
    ok2 = ok2 && !recv_msg(&rx, tf_fdio_io(&f), p[0], &sink, &m, &e, &os);
    ssize_t left = read(p[0], big, sizeof big);
    printf("  receiver (max 1024) reads a prefix announcing %zu bytes: %s: \"%s\"; "
           "refused after the 4-byte prefix (%zd payload bytes left unread, nothing allocated)\n",
           sizeof big, tf_err_name(e), tf_strerror(e), left);
    ok2 = ok2 && e == TF_ERR_TOO_LARGE && left == (ssize_t)sizeof big;
    close(p[0]);
    close(p[1]);
    return ok1 && ok2;
}

int main(int argc, char **argv)
{
    long count = 200;
    size_t max = 4u << 20;
    int c;
    while ((c = getopt(argc, argv, "n:s:h")) != -1) {
        if (c == 'n') {
            char *end;
            count = strtol(optarg, &end, 10);
            if (*end || count < 1 || count > 1000000) {
                usage();
                return 2;
            }
        } else if (c == 's') {
            if (!parse_size(optarg, &max)) {
                usage();
                return 2;
            }
        } else {
            usage();
            return c == 'h' ? 0 : 2;
        }
    }
    if (optind != argc) {
        usage();
        return 2;
    }

    /* Pipes have no MSG_NOSIGNAL (fdio.h): a vanished peer must give EPIPE, not kill us. */
    signal(SIGPIPE, SIG_IGN);
    int p2c[2], c2p[2];
    if (pipe2(p2c, O_NONBLOCK | O_CLOEXEC) != 0 || pipe2(c2p, O_NONBLOCK | O_CLOEXEC) != 0) {
        perror("tfdemo: pipe2");
        return 1;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        perror("tfdemo: fork");
        return 1;
    }
    if (pid == 0) {
        close(p2c[1]);
        close(c2p[0]);
        _exit(child_main(p2c[0], c2p[1], (uint32_t)max));
    }
    close(p2c[0]);
    close(c2p[1]);
    int rfd = c2p[0], wfd = p2c[1];

    uint8_t *out = malloc(max ? max : 1), *in = malloc(max ? max : 1);
    if (!out || !in) {
        fprintf(stderr, "tfdemo: out of memory for %zu-byte buffers\n", max);
        return 1;
    }
    tf_fdio f;
    tf_fdio_init(&f, rfd, wfd);
    const tf_io *io = tf_fdio_io(&f);
    tf_tx tx;
    tf_rx rx;
    tf_tx_init(&tx, (uint32_t)max);
    tf_rx_init(&rx, (uint32_t)max);
    tf_sink sink = {in, max, NULL, NULL};

    double t0 = now_ms();
    int hs_ok = handshake(io, rfd, wfd), ok = hs_ok;
    double t_hs = now_ms();
    long done = 0, bad = 0, empty = 0, mib = 0;
    uint64_t bytes = 0, rng = 0x5EEDull;
    size_t smallest = SIZE_MAX, largest = 0;
    for (long i = 0; ok && i < count; i++) {
        size_t len = size_of(i, max, &rng);
        fill(out, len, (uint64_t)i);
        tf_msg m;
        tf_err e;
        int os;
        if (!send_msg(&tx, io, wfd, out, len))
            ok = 0;
        else if (!recv_msg(&rx, io, rfd, &sink, &m, &e, &os)) {
            report("receive of the echo", e, os);
            ok = 0;
        } else if (m.len != len || (len && memcmp(m.data, out, len) != 0)) {
            fprintf(stderr, "tfdemo: message %ld (%zu bytes) came back different (%zu bytes)\n", i,
                    len, m.len);
            bad++;
        }
        if (!ok)
            break;
        done++;
        bytes += len;
        empty += len == 0;
        mib += len >= 1048576;
        smallest = len < smallest ? len : smallest;
        largest = len > largest ? len : largest;
    }
    double t1 = now_ms();

    /* Clean end: close our sending side; the child sees CLOSED between messages and exits 0. */
    close(wfd);
    int status = 0;
    waitpid(pid, &status, 0);
    int child_ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    close(rfd);
    free(out);
    free(in);

    double ms = t1 - t0;
    printf("tfdemo: parent %d <-> child %d over two non-blocking pipes (tf_fdio + tf_fd_wait)\n",
           (int)getpid(), (int)pid);
    printf("  handshake   %s in %.2f ms\n", hs_ok ? "done" : "FAILED", t_hs - t0);
    printf("  messages    %ld of %ld echoed, %ld mismatched\n", done, count, bad);
    if (done)
        printf("  sizes       %zu .. %zu bytes (%ld empty, %ld of 1 MiB or more)\n", smallest,
               largest, empty, mib);
    printf("  payload     %" PRIu64 " bytes each way, %" PRIu64
           " total (+ %ld bytes of prefixes)\n",
           bytes, 2 * bytes, 8 * done);
    printf("  elapsed     %.1f ms, %.1f MB/s of payload through the pipes (both ways)\n", ms,
           ms > 0 ? (double)(2 * bytes) / 1e3 / ms : 0.0);
    printf("  child       %s\n", child_ok ? "exited 0 after CLOSED (clean end of stream)"
                                          : "FAILED (see its messages above)");
    int all = ok && bad == 0 && done == count && child_ok;
    int err_ok = error_demo(max);
    printf("tfdemo: %s\n", all && err_ok ? "OK, every byte matched" : "FAILED");
    return all && err_ok ? 0 : 1;
}
