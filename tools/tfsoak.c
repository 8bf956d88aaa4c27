/* tools/tfsoak.c -- the soak test of the async server (issue 15): `make soak SECONDS=N`.
 *
 *   tfsoak [-t SECONDS] [-c CLIENT_THREADS] [-s SEED]
 *
 * One tf_async_server on one loop echoes every message (message-stream mode, owned sends with
 * op callbacks). Client threads connect over loopback for SECONDS and pick a behaviour each
 * time: a good exchange (raw socket or the library's sync connection; checksummed payloads of
 * mixed sizes, echoes checked byte for byte), a bad magic, an oversized length, a reset in the
 * middle of a frame, a silent client (no magic: the server's handshake deadline drops it), a
 * trickle (magic and frame one byte at a time), a client that goes silent after its magic and
 * leaves. Then every client has left; the server must be back to its baseline: no connection
 * alive, no send in flight, the same open fds, and a resident size within a margin of the one
 * measured after a warm-up round (glibc keeps freed memory in its arenas: malloc_trim first).
 * Prints the before/after figures; exit 0 if the soak passed, 1 if not. A watchdog (alarm)
 * ends a hung run with exit 2. Loopback only. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "tcpframe/async.h"
#include "tcpframe/sync.h"

/* ---------------------------------------------------------------- measuring */

static int fd_count(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1;
}

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, res = -1;
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &res) != 2)
            res = -1;
        fclose(f);
    }
    return res < 0 ? -1 : res * (sysconf(_SC_PAGESIZE) / 1024);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

/* ---------------------------------------------------------------- the server */

static atomic_long srv_live, srv_inflight, srv_accepted, srv_msgs, srv_ends_bad;

typedef struct osend {
    tf_async_op op;
    uint8_t data[];
} osend;

static void sent_cb(tf_async_conn *c, tf_async_op *op, tf_err err, int os_err, uint8_t *data,
                    size_t len, void *arg)
{
    (void)c, (void)err, (void)os_err, (void)data, (void)len, (void)arg;
    free((osend *)(void *)op); /* op is the first member */
    atomic_fetch_sub(&srv_inflight, 1);
}

static void echo_cb(tf_async_conn *c, tf_err err, int os_err, const uint8_t *data, size_t len,
                    void *arg)
{
    (void)os_err, (void)arg;
    if (err != TF_OK) {
        /* the stream's end: CLOSED, TRUNCATED, TOO_LARGE, IO (reset), ... */
        if (err != TF_ERR_CLOSED && err != TF_ERR_TRUNCATED && err != TF_ERR_TOO_LARGE &&
            err != TF_ERR_IO)
            atomic_fetch_add(&srv_ends_bad, 1);
        tf_async_conn_free(c);
        atomic_fetch_sub(&srv_live, 1);
        return;
    }
    atomic_fetch_add(&srv_msgs, 1);
    osend *s = malloc(sizeof *s + (len ? len : 1));
    if (len)
        memcpy(s->data, data, len);
    atomic_fetch_add(&srv_inflight, 1);
    if (tf_async_conn_send_op(c, &s->op, s->data, len, -1, sent_cb, NULL) != TF_OK) {
        free(s);
        atomic_fetch_sub(&srv_inflight, 1);
    }
}

static void on_accept(tf_async_server *s, tf_async_conn *c, void *arg)
{
    (void)s, (void)arg;
    atomic_fetch_add(&srv_accepted, 1);
    atomic_fetch_add(&srv_live, 1);
    if (tf_async_conn_stream(c, echo_cb, NULL) != TF_OK) {
        tf_async_conn_free(c);
        atomic_fetch_sub(&srv_live, 1);
    }
}

/* ---------------------------------------------------------------- raw client helpers */

static int port_of_server;

static int raw_connect(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {10, 0}; /* a stuck exchange fails instead of hanging */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port_of_server)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static bool write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        b += w;
        n -= (size_t)w;
    }
    return true;
}

static bool read_all(int fd, void *p, size_t n)
{
    uint8_t *b = p;
    while (n > 0) {
        ssize_t r = read(fd, b, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        b += r;
        n -= (size_t)r;
    }
    return true;
}

/* Read until EOF or error (the server dropped us); false if it did not within the timeout. */
static bool until_eof(int fd)
{
    uint8_t b[512];
    for (;;) {
        ssize_t r = read(fd, b, sizeof b);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0 || (r < 0 && errno == ECONNRESET))
            return true;
        if (r < 0)
            return false; /* timed out: the server kept us */
    }
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void close_rst(int fd)
{
    struct linger l = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close(fd);
}

/* A payload: 8-byte header (length, checksum of the rest), then pattern bytes. */
static size_t pick_size(uint64_t *s)
{
    uint64_t r = rnd(s) % 100;
    if (r < 10)
        return 0;
    if (r < 60)
        return 8 + rnd(s) % 120;
    if (r < 95)
        return 8 + rnd(s) % 4000;
    return 8 + rnd(s) % 200000;
}

static uint32_t sum32(const uint8_t *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

static void make_payload(uint8_t *b, size_t n, uint64_t *s)
{
    if (n < 8)
        return;
    for (size_t i = 8; i < n; i++)
        b[i] = (uint8_t)rnd(s);
    uint32_t len = (uint32_t)n, h = sum32(b + 8, n - 8);
    memcpy(b, &len, 4);
    memcpy(b + 4, &h, 4);
}

static bool payload_ok(const uint8_t *b, size_t n, const uint8_t *sent)
{
    if (n >= 8) {
        uint32_t len, h;
        memcpy(&len, b, 4);
        memcpy(&h, b + 4, 4);
        if (len != n || h != sum32(b + 8, n - 8))
            return false;
    }
    return n == 0 || memcmp(b, sent, n) == 0;
}

/* ---------------------------------------------------------------- behaviours */

enum { B_GOOD_RAW, B_GOOD_SYNC, B_BAD_MAGIC, B_OVERSIZE, B_RST_MID, B_SILENT, B_TRICKLE,
       B_MUTE_AFTER_MAGIC, B_N };
static const char *const bname[B_N] = {"good (raw)", "good (sync conn)", "bad magic",
                                       "oversized length", "reset mid-frame", "silent",
                                       "trickle", "mute after magic"};
static atomic_long done_by[B_N], failed_by[B_N];
static atomic_long echoed;

static bool good_raw(uint64_t *s)
{
    int fd = raw_connect();
    if (fd < 0)
        return false;
    uint8_t m[4];
    bool ok = write_all(fd, "UNIF", 4) && read_all(fd, m, 4) && memcmp(m, "UNIF", 4) == 0;
    int n = 1 + (int)(rnd(s) % 8);
    for (int i = 0; i < n && ok; i++) {
        size_t len = pick_size(s);
        uint8_t *b = malloc(len + 4), *r = malloc(len ? len : 1);
        put_be32(b, (uint32_t)len);
        make_payload(b + 4, len, s);
        uint8_t h[4];
        ok = write_all(fd, b, len + 4) && read_all(fd, h, 4) &&
             ((uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3]) == len &&
             read_all(fd, r, len) && payload_ok(r, len, b + 4);
        if (ok)
            atomic_fetch_add(&echoed, 1);
        free(b);
        free(r);
    }
    close(fd);
    return ok;
}

static bool good_sync(uint64_t *s)
{
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port_of_server);
    tf_tcp_config cfg;
    tf_tcp_config_init(&cfg);
    cfg.connect_timeout_ms = 10000;
    tf_sync_conn *c = NULL;
    if (tf_sync_connect(addr, &cfg, &c, NULL, NULL) != TF_OK)
        return false;
    bool ok = true;
    int n = 1 + (int)(rnd(s) % 8);
    for (int i = 0; i < n && ok; i++) {
        size_t len = pick_size(s);
        uint8_t *b = malloc(len ? len : 1);
        make_payload(b, len, s);
        void *got = NULL;
        size_t glen = 0;
        ok = tf_sync_conn_send(c, b, len, 10000) == TF_OK &&
             tf_sync_conn_recv_alloc(c, &got, &glen, 10000) == TF_OK && glen == len &&
             payload_ok(got, glen, b);
        if (ok)
            atomic_fetch_add(&echoed, 1);
        free(got);
        free(b);
    }
    tf_sync_conn_free(c);
    return ok;
}

static bool bad_magic(uint64_t *s)
{
    (void)s;
    int fd = raw_connect();
    if (fd < 0)
        return false;
    bool ok = write_all(fd, "UNIX", 4) && until_eof(fd);
    close(fd);
    return ok;
}

static bool oversize(uint64_t *s)
{
    int fd = raw_connect();
    if (fd < 0)
        return false;
    uint8_t b[8] = {'U', 'N', 'I', 'F'};
    put_be32(b + 4, 0x7f000000u + (uint32_t)(rnd(s) % 1000));
    bool ok = write_all(fd, b, 8) && until_eof(fd);
    close(fd);
    return ok;
}

static bool rst_mid(uint64_t *s)
{
    int fd = raw_connect();
    if (fd < 0)
        return false;
    size_t len = 100 + rnd(s) % 5000;
    uint8_t *b = calloc(1, len + 8);
    memcpy(b, "UNIF", 4);
    put_be32(b + 4, (uint32_t)len);
    bool ok = write_all(fd, b, 8 + len / 2);
    free(b);
    close_rst(fd);
    return ok;
}

static bool silent(uint64_t *s)
{
    int fd = raw_connect();
    if (fd < 0)
        return false;
    bool ok = true;
    if (rnd(s) % 2)
        ok = until_eof(fd); /* the server's handshake deadline drops us */
    else
        nap_ms((long)(rnd(s) % 200));
    close(fd);
    return ok;
}

static bool trickle(uint64_t *s)
{
    int fd = raw_connect();
    if (fd < 0)
        return false;
    size_t len = rnd(s) % 40;
    uint8_t b[48];
    memcpy(b, "UNIF", 4);
    put_be32(b + 4, (uint32_t)len);
    for (size_t i = 0; i < len; i++)
        b[8 + i] = (uint8_t)rnd(s);
    bool ok = true;
    for (size_t i = 0; i < 8 + len && ok; i++) {
        ok = write_all(fd, b + i, 1);
        nap_ms(1);
    }
    uint8_t r[52];
    ok = ok && read_all(fd, r, 8 + len) && memcmp(r, b, 8 + len) == 0;
    if (ok)
        atomic_fetch_add(&echoed, 1);
    close(fd);
    return ok;
}

static bool mute_after_magic(uint64_t *s)
{
    int fd = raw_connect();
    if (fd < 0)
        return false;
    bool ok = write_all(fd, "UNIF", 4);
    nap_ms((long)(rnd(s) % 50));
    close(fd);
    return ok;
}

typedef struct worker {
    pthread_t t;
    uint64_t seed;
    uint64_t until;
} worker;

static void *client_main(void *p)
{
    worker *w = p;
    do {
        int b = (int)(rnd(&w->seed) % B_N);
        bool ok;
        switch (b) {
        case B_GOOD_RAW: ok = good_raw(&w->seed); break;
        case B_GOOD_SYNC: ok = good_sync(&w->seed); break;
        case B_BAD_MAGIC: ok = bad_magic(&w->seed); break;
        case B_OVERSIZE: ok = oversize(&w->seed); break;
        case B_RST_MID: ok = rst_mid(&w->seed); break;
        case B_SILENT: ok = silent(&w->seed); break;
        case B_TRICKLE: ok = trickle(&w->seed); break;
        default: ok = mute_after_magic(&w->seed); break;
        }
        atomic_fetch_add(&done_by[b], 1);
        if (!ok)
            atomic_fetch_add(&failed_by[b], 1);
    } while (now_ms() < w->until);
    return NULL;
}

static void run_clients(int n, uint64_t seed, uint64_t ms)
{
    worker *w = calloc((size_t)n, sizeof *w);
    uint64_t until = now_ms() + ms;
    for (int i = 0; i < n; i++) {
        w[i].seed = seed * 7919u + (uint64_t)i * 104729u + 1;
        w[i].until = until;
        pthread_create(&w[i].t, NULL, client_main, &w[i]);
    }
    for (int i = 0; i < n; i++)
        pthread_join(w[i].t, NULL);
    free(w);
}

/* Wait (up to 30 s) until no server connection is alive and no send is in flight. */
static bool quiesce(void)
{
    uint64_t end = now_ms() + 30000;
    while (atomic_load(&srv_live) != 0 || atomic_load(&srv_inflight) != 0) {
        if (now_ms() > end)
            return false;
        nap_ms(10);
    }
    return true;
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char m[] = "tfsoak: WATCHDOG: no end in time, hung\n";
    (void)!write(2, m, sizeof m - 1);
    _exit(2);
}

int main(int argc, char **argv)
{
    long seconds = 60, threads = 8;
    uint64_t seed = (uint64_t)time(NULL);
    int o;
    while ((o = getopt(argc, argv, "t:c:s:h")) != -1) {
        if (o == 't')
            seconds = atol(optarg);
        else if (o == 'c')
            threads = atol(optarg);
        else if (o == 's')
            seed = strtoull(optarg, NULL, 0);
        else {
            fprintf(stderr, "usage: tfsoak [-t SECONDS] [-c CLIENT_THREADS] [-s SEED]\n");
            return o == 'h' ? 0 : 1;
        }
    }
    if (seconds < 1)
        seconds = 1;
    if (threads < 1)
        threads = 1;
    signal(SIGPIPE, SIG_IGN);
    signal(SIGALRM, on_alarm);
    alarm((unsigned)seconds + 180u);

    tf_evb *evb;
    if (tf_evb_new(&evb) != TF_OK || tf_evb_start(evb) != TF_OK) {
        fprintf(stderr, "tfsoak: loop: failed\n");
        return 1;
    }
    tf_tcp_config cfg;
    tf_tcp_config_init(&cfg);
    cfg.handshake_timeout_ms = 300;  /* silent clients are dropped quickly */
    cfg.max_recv_len = 1u << 20;     /* the oversized lengths are far above it */
    tf_async_server *srv;
    tf_errmsg msg;
    tf_async_server_new(evb, &srv);
    tf_async_server_on_accept(srv, on_accept, NULL);
    if (tf_async_server_init(srv, "127.0.0.1:0", &cfg, &msg) != TF_OK) {
        fprintf(stderr, "tfsoak: %s\n", msg.text);
        return 1;
    }
    char addr[TF_ADDRSTR_LEN];
    tf_async_server_addr(srv, addr, sizeof addr);
    port_of_server = atoi(strrchr(addr, ':') + 1);
    printf("tfsoak: server %s, %ld client threads, %ld s, seed %llu\n", addr, threads, seconds,
           (unsigned long long)seed);

    /* warm-up: every behaviour a few times, then the baseline */
    run_clients((int)threads, seed ^ 0x5eed, 1000);
    bool ok = quiesce();
    malloc_trim(0);
    const int fd0 = fd_count();
    const long rss0 = rss_kib();
    const long live0 = atomic_load(&srv_live), infl0 = atomic_load(&srv_inflight);
    const long acc0 = atomic_load(&srv_accepted);
    const uint64_t rej0 = tf_async_server_rejected(srv);
    for (int b = 0; b < B_N; b++) {
        atomic_store(&done_by[b], 0);
        atomic_store(&failed_by[b], 0);
    }
    atomic_store(&echoed, 0);

    const uint64_t t0 = now_ms();
    run_clients((int)threads, seed, (uint64_t)seconds * 1000u);
    const uint64_t t1 = now_ms();
    ok = quiesce() && ok;
    malloc_trim(0);
    const int fd1 = fd_count();
    const long rss1 = rss_kib();
    const long live1 = atomic_load(&srv_live), infl1 = atomic_load(&srv_inflight);

    long total = 0, failed = 0;
    for (int b = 0; b < B_N; b++) {
        long d = atomic_load(&done_by[b]), f = atomic_load(&failed_by[b]);
        printf("tfsoak:   %-18s %7ld clients, %ld failed\n", bname[b], d, f);
        total += d;
        failed += f;
    }
    printf("tfsoak: %ld clients in %.1f s (%ld accepted past the handshake, %llu rejected in it), "
           "%ld messages echoed and checked, %ld failed\n",
           total, (double)(t1 - t0) / 1000.0, atomic_load(&srv_accepted) - acc0,
           (unsigned long long)(tf_async_server_rejected(srv) - rej0), atomic_load(&echoed),
           failed);
    /* glibc may keep some of the peak in its arenas even after malloc_trim: allow a margin */
    const long margin = 4096 + rss0 / 10;
    printf("tfsoak: before: %d fds, RSS %ld KiB, %ld connections, %ld sends in flight\n", fd0, rss0,
           live0, infl0);
    printf("tfsoak: after:  %d fds, RSS %ld KiB, %ld connections, %ld sends in flight "
           "(RSS margin %ld KiB)\n",
           fd1, rss1, live1, infl1, margin);
    ok = ok && failed == 0 && fd1 == fd0 && live1 == 0 && infl1 == 0 && rss1 <= rss0 + margin &&
         atomic_load(&srv_ends_bad) == 0;
    if (atomic_load(&srv_ends_bad))
        printf("tfsoak: %ld server streams ended with an unexpected reason\n",
               atomic_load(&srv_ends_bad));
    tf_async_server_free(srv);
    tf_evb_free(evb);
    printf("tfsoak: %s\n", ok ? "PASSED" : "FAILED");
    return ok ? 0 : 1;
}
