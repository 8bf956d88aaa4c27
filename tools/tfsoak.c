/* tools/tfsoak.c -- the soak test of the async server (issues 15, 25): `make soak SECONDS=N`,
 * and over TLS 1.3 `make soak-tls SECONDS=N` (-T).
 *
 *   tfsoak [-T] [-t SECONDS] [-c CLIENT_THREADS] [-s SEED] [-b BEHAVIOUR]
 *
 * One tf_async_server on one loop echoes every message (message-stream mode, owned sends with
 * op callbacks), as examples/echo_server.c and tfcat's async server do: an echo refused with
 * BUSY is held and the stream paused until the send queue drains; the stream's CLOSED end (the
 * client's half-close) closes the connection, which flushes the echoes; the end notification
 * (tf_async_conn_on_end), and only it, frees the connection. The server has a progress timeout
 * (5 s), a receive-memory budget (64 MiB), a 4 MiB send queue and a 64 MiB max_recv_len.
 * Client threads connect over loopback for SECONDS and pick a behaviour each time: a good
 * exchange (raw socket or the library's sync connection; checksummed payloads of mixed sizes,
 * echoes checked byte for byte), a bad magic, an oversized length, a reset in the middle of a
 * frame, a silent client (no magic: the server's handshake deadline drops it; a reaper thread
 * waits for the dropped ones, many at once), a trickle (magic
 * and frame one byte at a time), a client that goes silent after its magic and leaves, and the
 * hostile peers of issue 25: a half-closing client (up to 8 messages of up to 2 MiB, then
 * shutdown(SHUT_WR), then every echo byte must come back before the EOF), a paused-then-dropped
 * client (sends MiBs without reading until the server pauses its stream, then resets: only the
 * end notification tells the server), a big declared length (60 MiB announced, a few bytes
 * sent, then it leaves or the progress timeout drops it). Then every client has left; the
 * server must be back to its baseline: no connection alive (tf_async_server_active 0 too), no
 * send in flight or echo held, no receive memory held, the same open fds, and a resident size
 * within a margin of the one measured after a warm-up round (glibc keeps freed memory in its
 * arenas: malloc_trim first). Prints the counts per behaviour, the server's end reasons, the
 * receive memory's peak and budget waits and the before/after figures; exit 0 if the soak
 * passed, 1 if not. A watchdog (alarm) ends a hung run with exit 2. Loopback only.
 *
 * -T: the same server over mutual TLS 1.3 (tls/tcpframe/tls.h, SPEC 9.11; the "TLS mode"
 * section below): a CA, a server certificate (IP 127.0.0.1) and a client certificate made at
 * start with OpenSSL's API in a scratch directory, removed as soon as the contexts have loaded
 * them. The behaviours are the TLS set (-b numbers their own list, tname): a good exchange
 * through the library's TLS client (tf_sync_connect; it replaces the raw-socket one), a
 * half-close (the library's client sends up to 8 messages of up to 2 MiB from a second thread,
 * then tf_sync_conn_shutdown: close_notify and the FIN; every echo must come back, in order,
 * before the server's CLOSED), paused
 * then dropped (the library's client with a 16 KiB receive
 * buffer sends without reading until a send makes no headway for 300 ms, then resets), the
 * library's client refused (no client certificate; a server name the certificate does not
 * carry); inside TLS through a raw OpenSSL client of the soak's own (over memory BIOs: the
 * library's client cannot send a wrong magic or a length without its payload): a wrong magic,
 * an oversized length, a 60 MiB declared length, a reset in the middle of a frame, the magic
 * and a frame one byte per record, a client mute after its magic, good exchanges ended without
 * close_notify (the server must end them with TF_ERR_TLS), a real ClientHello one byte per ms
 * then a good exchange, a reset in the middle of the handshake (in the ClientHello, in the
 * server's answer, in the client's second flight); and plain TCP peers of the TLS server: the
 * protocol's magic in plaintext, garbage (some behind a handshake record's header), a silent
 * client. The end checks are the same; the server's rejects in the handshake are printed by
 * reason. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <execinfo.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
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

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tcpframe/async.h"
#include "tcpframe/sync.h"
#include "tcpframe/tls.h"
#include "tf_certs.h"

/* ---------------------------------------------------------------- measuring */

/* ThreadSanitizer's shadow and history memory grows with the run and is never returned, and
 * AddressSanitizer holds freed blocks in its quarantine (up to 256 MiB): under either the RSS
 * says nothing about leaks (the fd, connection and memory counts still do; ASan's leak check
 * runs at exit). */
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define RSS_MEANS_LEAKS 0
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define RSS_MEANS_LEAKS 0
#endif
#endif
#ifndef RSS_MEANS_LEAKS
#define RSS_MEANS_LEAKS 1
#endif

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

/* The first few failures are described on stderr (a failed soak says why). */
static atomic_int fail_notes;

__attribute__((format(printf, 1, 2))) static void fail_note(const char *fmt, ...)
{
    if (atomic_fetch_add(&fail_notes, 1) >= 10)
        return;
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "tfsoak: failure: %s\n", line);
}

/* ---------------------------------------------------------------- the server */

/* The echo server follows examples/echo_server.c and tfcat's async server: every echo is an
 * owned copy sent with an op record; an echo refused with BUSY (the client reads its echoes
 * slower than it sends) is held and the stream paused until the writable callback; the
 * stream's CLOSED end (the client's half-close) closes the connection once every echo is
 * queued (the close flushes them); the end notification, and only it, frees the connection. */

static bool tls_mode;     /* -T: the server and the library's clients speak TLS 1.3 */
static tf_tls_ctx *cli_tls; /* the library's TLS clients: a certificate, verify the server */

static atomic_long srv_live, srv_inflight, srv_held, srv_accepted, srv_msgs, srv_ends_bad,
    srv_pauses, srv_closes;
static atomic_long srv_end_by[128]; /* end notifications by reason (tf_err values < 128) */
static _Atomic unsigned char end_by_port[65536]; /* TLS mode: the server's end reason by the
                                                  * client's port (0: not ended yet) */

typedef struct osend {
    tf_async_op op;
    struct osend *next; /* held: refused with BUSY, waiting for the drain */
    size_t len;
    uint8_t data[];
} osend;

typedef struct sconn {
    tf_async_conn *c;
    osend *head, *tail; /* held echoes, in order; the stream is paused meanwhile */
    bool eof;           /* the client half-closed: close once every echo is queued */
    bool closing;       /* tf_async_conn_close was called */
} sconn;

static void sent_cb(tf_async_conn *c, tf_async_op *op, tf_err err, int os_err, uint8_t *data,
                    size_t len, void *arg)
{
    (void)c, (void)err, (void)os_err, (void)data, (void)len, (void)arg;
    free((osend *)(void *)op); /* op is the first member */
    atomic_fetch_sub(&srv_inflight, 1);
}

/* TF_OK (s passed on), TF_ERR_BUSY (s still ours) or the reason the connection cannot send. */
static tf_err echo_send(sconn *sc, osend *s)
{
    atomic_fetch_add(&srv_inflight, 1);
    tf_err e = tf_async_conn_send_op(sc->c, &s->op, s->data, s->len, -1, sent_cb, NULL);
    if (e != TF_OK)
        atomic_fetch_sub(&srv_inflight, 1);
    return e;
}

static void echo_cb(tf_async_conn *c, tf_err err, int os_err, const uint8_t *data, size_t len,
                    void *arg);

/* Every echo is queued and the client sent everything: flush and close. on_end frees. */
static void begin_close(sconn *sc)
{
    if (sc->closing)
        return;
    sc->closing = true;
    tf_future *f = NULL;
    tf_err e = tf_async_conn_close(sc->c, &f);
    tf_future_free(f);
    if (e == TF_OK)
        atomic_fetch_add(&srv_closes, 1);
    else
        atomic_fetch_add(&srv_ends_bad, 1); /* not expected: on_end still frees (a failure) */
}

static void drop_held(sconn *sc)
{
    while (sc->head) {
        osend *s = sc->head;
        sc->head = s->next;
        free(s);
        atomic_fetch_sub(&srv_held, 1);
    }
    sc->tail = NULL;
}

/* The connection is over (closed, failed, reset, timed out): never after our free, and for
 * every connection, also one whose stream is paused and that waits only for the drain. */
static void on_end(tf_async_conn *c, tf_err err, int os_err, void *arg)
{
    (void)os_err;
    sconn *sc = arg;
    if ((unsigned)err < 128)
        atomic_fetch_add(&srv_end_by[err], 1);
    if (tls_mode) {
        /* by the client's port: a failed TLS client names the server's end (its fail note) */
        char peer[TF_ADDRSTR_LEN];
        const char *colon;
        if (tf_async_conn_peer(c, peer, sizeof peer) == TF_OK &&
            (colon = strrchr(peer, ':')) != NULL)
            atomic_store(&end_by_port[(uint16_t)atoi(colon + 1)], (unsigned char)err);
    }
    /* CLOSED: our close finished; the rest: the client failed the connection (TRUNCATED,
     * TOO_LARGE, a reset: IO, a stalled frame: TIMEOUT; over TLS also an EOF without
     * close_notify or a broken record: TLS) */
    if (err != TF_ERR_CLOSED && err != TF_ERR_TRUNCATED && err != TF_ERR_TOO_LARGE &&
        err != TF_ERR_IO && err != TF_ERR_TIMEOUT && !(tls_mode && err == TF_ERR_TLS))
        atomic_fetch_add(&srv_ends_bad, 1);
    tf_async_conn_free(c);
    drop_held(sc);
    free(sc);
    atomic_fetch_sub(&srv_live, 1);
}

/* The send queue drained after a BUSY: send the held echoes, then read again. */
static void on_drained(tf_async_conn *c, void *arg)
{
    sconn *sc = arg;
    while (sc->head) {
        osend *s = sc->head;
        tf_err e = echo_send(sc, s);
        if (e == TF_ERR_BUSY)
            return; /* wait for the next drain */
        sc->head = s->next;
        atomic_fetch_sub(&srv_held, 1);
        if (e != TF_OK) {
            free(s);
            return; /* the connection failed: on_end follows and frees */
        }
    }
    sc->tail = NULL;
    tf_async_conn_on_writable(c, NULL, NULL);
    if (sc->eof) {
        begin_close(sc);
        return;
    }
    tf_err e = tf_async_conn_stream(c, echo_cb, sc);
    if (e == TF_ERR_CLOSED) {
        sc->eof = true; /* the half-close came while we were paused */
        begin_close(sc);
    }
    /* any other refusal: the connection failed, and on_end frees it */
}

static void echo_cb(tf_async_conn *c, tf_err err, int os_err, const uint8_t *data, size_t len,
                    void *arg)
{
    (void)os_err;
    sconn *sc = arg;
    if (err != TF_OK) {
        /* CLOSED: the client half-closed; its echoes still go out (held ones after the drain),
         * then we close. Anything else failed the connection: on_end follows. */
        if (err == TF_ERR_CLOSED) {
            sc->eof = true;
            if (!sc->head)
                begin_close(sc);
        }
        return;
    }
    atomic_fetch_add(&srv_msgs, 1);
    osend *s = malloc(sizeof *s + (len ? len : 1));
    if (!s) {
        atomic_fetch_add(&srv_ends_bad, 1);
        tf_async_conn_abort(c); /* on_end frees */
        return;
    }
    s->next = NULL;
    s->len = len;
    if (len)
        memcpy(s->data, data, len);
    tf_err e = sc->head ? TF_ERR_BUSY : echo_send(sc, s);
    if (e == TF_OK)
        return;
    if (e != TF_ERR_BUSY) {
        free(s); /* the connection failed: on_end follows */
        return;
    }
    /* Hold it and stop reading until the queue drains (frames read ahead are held too). */
    atomic_fetch_add(&srv_held, 1);
    if (sc->tail)
        sc->tail->next = s;
    else
        sc->head = s;
    sc->tail = s;
    if (sc->head == s) {
        atomic_fetch_add(&srv_pauses, 1);
        tf_async_conn_stream(c, NULL, NULL);
        tf_async_conn_on_writable(c, on_drained, sc);
    }
}

static void on_accept(tf_async_server *s, tf_async_conn *c, void *arg)
{
    (void)s, (void)arg;
    atomic_fetch_add(&srv_accepted, 1);
    sconn *sc = calloc(1, sizeof *sc);
    if (!sc) {
        tf_async_conn_free(c);
        return;
    }
    sc->c = c;
    atomic_fetch_add(&srv_live, 1);
    char peer[TF_ADDRSTR_LEN];
    const char *colon;
    if (tls_mode && tf_async_conn_peer(c, peer, sizeof peer) == TF_OK &&
        (colon = strrchr(peer, ':')) != NULL)
        atomic_store(&end_by_port[(uint16_t)atoi(colon + 1)], 0);
    /* The stream first: on a connection that is over already, the end notification runs at
     * once and frees it, so nothing may touch c after it is set. */
    tf_err e = tf_async_conn_stream(c, echo_cb, sc);
    if (e == TF_ERR_CLOSED) {
        sc->eof = true; /* the client half-closed already: nothing to echo */
        begin_close(sc);
    } else if (e != TF_OK && tf_async_conn_error(c, NULL) == TF_OK) {
        atomic_fetch_add(&srv_ends_bad, 1);
        tf_async_conn_abort(c); /* over now: on_end runs at once */
    }
    if (tf_async_conn_on_end(c, on_end, sc) != TF_OK) {
        atomic_fetch_add(&srv_ends_bad, 1);
        tf_async_conn_free(c);
        drop_held(sc);
        free(sc);
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
       B_MUTE_AFTER_MAGIC, B_HALF_CLOSE, B_PAUSED_DROP, B_BIG_DECLARED, B_N };
static const char *const bname[B_N] = {"good (raw)", "good (sync conn)", "bad magic",
                                       "oversized length", "reset mid-frame", "silent",
                                       "trickle", "mute after magic", "half-close",
                                       "paused, dropped", "big declared len"};
#define NB_MAX 32 /* behaviours of either mode (B_N plain, T_N TLS) */
static atomic_long done_by[NB_MAX], failed_by[NB_MAX];
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
    if (tls_mode)
        cfg.tls = cli_tls;
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

/* Silent clients that wait for the server's handshake deadline are handed to the reaper
 * thread, which waits for all of them at once: the deadline is generous (a busy machine must
 * not turn a good client into a rejected one), and a client thread blocked for each silent one
 * would leave little time for the other behaviours. The reaper polls every held socket; EOF or
 * a reset is the expected end; no end 30 s after the connect is a failure (the server kept a
 * client past its handshake deadline). */
#define REAP_MAX 512
static pthread_mutex_t reap_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t reap_cv = PTHREAD_COND_INITIALIZER;
static int reap_fd[REAP_MAX];
static uint64_t reap_t0[REAP_MAX];
static int reap_n;          /* held sockets */
static bool reap_quit;      /* main: end the reaper once none is held */
static atomic_long reap_failed;

/* Hand fd over to the reaper; false (fd still the caller's) when it holds REAP_MAX already. */
static bool reap_give(int fd)
{
    pthread_mutex_lock(&reap_mu);
    bool took = reap_n < REAP_MAX;
    if (took) {
        reap_fd[reap_n] = fd;
        reap_t0[reap_n] = now_ms();
        reap_n++;
        pthread_cond_signal(&reap_cv);
    }
    pthread_mutex_unlock(&reap_mu);
    return took;
}

static void *reaper_main(void *arg)
{
    (void)arg;
    struct pollfd p[REAP_MAX];
    for (;;) {
        pthread_mutex_lock(&reap_mu);
        while (reap_n == 0 && !reap_quit)
            pthread_cond_wait(&reap_cv, &reap_mu);
        if (reap_n == 0) {
            pthread_mutex_unlock(&reap_mu);
            return NULL;
        }
        int n = reap_n;
        for (int i = 0; i < n; i++)
            p[i] = (struct pollfd){reap_fd[i], POLLIN, 0};
        pthread_mutex_unlock(&reap_mu);
        if (poll(p, (nfds_t)n, 20) < 0)
            continue;
        pthread_mutex_lock(&reap_mu); /* only the reaper removes: entries 0..n-1 are unchanged */
        uint64_t now = now_ms();
        for (int i = n - 1; i >= 0; i--) {
            bool over = false;
            if (p[i].revents) { /* the server's magic (ignored), then its EOF or a reset */
                uint8_t b[64];
                ssize_t r = recv(reap_fd[i], b, sizeof b, MSG_DONTWAIT);
                over = r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR);
            }
            if (!over && now - reap_t0[i] > 30000) {
                fail_note("silent: the server kept a silent client for 30 s");
                atomic_fetch_add(&reap_failed, 1);
                over = true;
            }
            if (over) {
                close(reap_fd[i]);
                reap_fd[i] = reap_fd[reap_n - 1];
                reap_t0[i] = reap_t0[reap_n - 1];
                reap_n--;
            }
        }
        pthread_mutex_unlock(&reap_mu);
    }
}

static bool silent(uint64_t *s)
{
    int fd = raw_connect();
    if (fd < 0)
        return false;
    bool ok = true;
    if (rnd(s) % 2) {
        if (reap_give(fd))
            return true; /* the reaper counts a failure */
        ok = until_eof(fd); /* the server's handshake deadline drops us */
    } else {
        nap_ms((long)(rnd(s) % 200));
    }
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

/* A half-closing client (issue 25 item 1): K messages of mixed sizes up to 2 MiB, then
 * shutdown(SHUT_WR), then read until EOF; the echo (the magic, then every frame as sent) must
 * come back byte for byte. Writing is preferred to reading (a read only when the socket takes
 * no more), so as much as possible is still queued at the server when the EOF arrives; reading
 * meanwhile keeps a big exchange from deadlocking on full buffers. */
static atomic_long hc_bytes, hc_missing;

static bool half_close(uint64_t *s)
{
    int fd = raw_connect();
    if (fd < 0)
        return false;
    int k = 1 + (int)(rnd(s) % 8);
    size_t lens[8], n = 4;
    for (int i = 0; i < k; i++) {
        lens[i] = rnd(s) % 3 == 0 ? rnd(s) % ((2u << 20) + 1) : pick_size(s);
        n += 4 + lens[i];
    }
    uint8_t *out = malloc(n), *in = malloc(n + 1);
    memcpy(out, "UNIF", 4);
    size_t at = 4;
    for (int i = 0; i < k; i++) {
        put_be32(out + at, (uint32_t)lens[i]);
        make_payload(out + at + 4, lens[i], s);
        at += 4 + lens[i];
    }
    size_t wo = 0, ro = 0;
    bool ok = true, shut = false;
    for (;;) {
        if (wo == n && !shut) {
            shut = true;
            if (shutdown(fd, SHUT_WR) != 0) {
                ok = false;
                break;
            }
        }
        struct pollfd p = {fd, (short)(POLLIN | (wo < n ? POLLOUT : 0)), 0};
        int r = poll(&p, 1, 10000); /* no progress for 10 s: the exchange is stuck */
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (r == 0)
                errno = ETIMEDOUT;
            ok = false;
            break;
        }
        if (p.revents & POLLOUT) {
            ssize_t w = send(fd, out + wo, n - wo, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            if (w <= 0) {
                ok = false;
                break;
            }
            wo += (size_t)w;
            continue;
        }
        ssize_t g = recv(fd, in + ro, n + 1 - ro, MSG_DONTWAIT);
        if (g < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (g < 0) {
            ok = false;
            break;
        }
        if (g == 0)
            break; /* the server's EOF: it echoed everything and closed */
        ro += (size_t)g;
        if (ro > n) {
            ok = false; /* more than was sent */
            break;
        }
    }
    int why = errno;
    if (ok && (wo != n || ro != n || memcmp(in, out, n) != 0))
        why = 0, ok = false;
    if (!ok)
        fail_note("half-close: %d messages, %zu bytes: %zu sent, %zu echoed back%s (%s)", k, n, wo,
                  ro, shut ? " after our shutdown" : "", why ? strerror(why) : "no error");
    atomic_fetch_add(&hc_bytes, (long)ro);
    if (ro < n)
        atomic_fetch_add(&hc_missing, (long)(n - ro));
    if (ok)
        atomic_fetch_add(&echoed, k);
    free(out);
    free(in);
    close(fd);
    return ok;
}

/* A paused-then-dropped client (issue 25 item 2): it sends frames without reading its echoes
 * (a small receive buffer) until the server's send queue is full, its stream paused and our
 * sends stall, then resets. The server learns of it only through the end notification. */
static atomic_long pd_stalled;

static bool paused_drop(uint64_t *s)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    int rcv = 16384; /* before connect: the window stays small */
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port_of_server)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return false;
    }
    const size_t flen = 65536 + rnd(s) % 262144;
    uint8_t *f = malloc(4 + flen);
    put_be32(f, (uint32_t)flen);
    make_payload(f + 4, flen, s);
    bool ok = write_all(fd, "UNIF", 4), stalled = false;
    size_t sent = 0, at = 0;
    const size_t cap = 48u << 20; /* bounded: the server pauses long before this */
    while (ok && !stalled && sent < cap) {
        struct pollfd p = {fd, POLLOUT, 0};
        int r = poll(&p, 1, 300);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0) {
            stalled = true; /* no room for 300 ms: the server stopped reading */
            break;
        }
        ssize_t w = send(fd, f + at, 4 + flen - at, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (w <= 0) {
            ok = false;
            break;
        }
        sent += (size_t)w;
        at = (at + (size_t)w) % (4 + flen);
    }
    if (stalled)
        atomic_fetch_add(&pd_stalled, 1);
    free(f);
    close_rst(fd);
    return ok;
}

/* A big declared length (issue 25 item 4): a 60 MiB frame announced, a few bytes sent, then it
 * leaves (the server sees TRUNCATED) or stays silent until the server's progress timeout drops
 * it. Memory is committed as bytes arrive: these cost the server almost nothing. */
static atomic_long bd_timed_out;

static bool big_declared(uint64_t *s)
{
    int fd = raw_connect();
    if (fd < 0)
        return false;
    uint8_t b[8 + 100] = {'U', 'N', 'I', 'F'};
    put_be32(b + 4, (60u << 20) + (uint32_t)(rnd(s) % 1000));
    size_t few = 1 + rnd(s) % 100;
    for (size_t i = 0; i < few; i++)
        b[8 + i] = (uint8_t)rnd(s);
    bool ok = write_all(fd, b, 8 + few);
    if (ok && rnd(s) % 2) {
        ok = until_eof(fd); /* the progress timeout drops us */
        if (ok)
            atomic_fetch_add(&bd_timed_out, 1);
    }
    close(fd);
    return ok;
}

/* ---------------------------------------------------------------- TLS mode (-T) */

/* With -T the server takes TLS 1.3 (tls/tcpframe/tls.h, SPEC 9.11), mutual: a throwaway CA, a
 * server certificate for IP 127.0.0.1 and a client certificate, made at start with OpenSSL's
 * API (as tools/tfdemo.c: no openssl CLI needed) in a scratch directory that is removed as soon
 * as the contexts have loaded them (a crash or the watchdog leaves nothing behind). The
 * library's clients (tf_sync_connect) verify the server's chain and its 127.0.0.1 SAN. The
 * hostile peers inside TLS that the library's client cannot be made to be (a wrong magic, a
 * length prefix without its payload, a frame cut by a reset, one-byte records, an EOF without
 * close_notify) are a raw OpenSSL client of the soak's own over memory BIOs: it moves every byte
 * between OpenSSL and the socket itself, so it can also trickle its ClientHello or reset in the
 * middle of the handshake. */
static tf_tls_ctx *srv_tls, *cli_nocert_tls, *cli_wrongname_tls;
static SSL_CTX *raw_ctx; /* A context (tools/tf_certs.h; NAME NULL: no certificate), or NULL after saying why. */
static tf_tls_ctx *tls_ctx(const char *dir, const char *name, const char *peer_name)
{
    tf_errmsg msg;
    tf_tls_ctx *k = tfc_tls_ctx(dir, name, peer_name, &msg);
    if (!k)
        fprintf(stderr, "tfsoak: TLS context: %s\n", msg.text);
    return k;
}

static bool tls_setup(void)
{
    char dir[] = "/tmp/tfsoak-XXXXXX";
    if (!mkdtemp(dir)) {
        fprintf(stderr, "tfsoak: TLS: no scratch directory: %s\n", strerror(errno));
        return false;
    }
    EVP_PKEY *ca_key = NULL;
    X509 *ca = NULL;
    bool ok =
        tfc_make_cert(dir, "ca", "tfsoak CA", NULL, NULL, NULL, 1, &ca_key, &ca) &&
        tfc_make_cert(dir, "server", "tfsoak-server", "IP:127.0.0.1", ca, ca_key, 2, NULL, NULL) &&
        tfc_make_cert(dir, "client", "tfsoak-client", "DNS:client.tfsoak", ca, ca_key, 3, NULL, NULL);
    EVP_PKEY_free(ca_key);
    X509_free(ca);
    if (!ok)
        fprintf(stderr, "tfsoak: TLS: cannot make the certificates (OpenSSL)\n");
    if (ok) {
        srv_tls = tls_ctx(dir, "server", NULL);
        cli_tls = tls_ctx(dir, "client", "127.0.0.1");
        cli_nocert_tls = tls_ctx(dir, NULL, "127.0.0.1");
        cli_wrongname_tls = tls_ctx(dir, "client", "10.9.8.7");
        char cert[256], key[256], cafile[256];
        snprintf(cert, sizeof cert, "%s/client.pem", dir);
        snprintf(key, sizeof key, "%s/client.key", dir);
        snprintf(cafile, sizeof cafile, "%s/ca.pem", dir);
        raw_ctx = SSL_CTX_new(TLS_client_method());
        if (!raw_ctx || SSL_CTX_set_min_proto_version(raw_ctx, TLS1_3_VERSION) != 1 ||
            SSL_CTX_use_certificate_chain_file(raw_ctx, cert) != 1 ||
            SSL_CTX_use_PrivateKey_file(raw_ctx, key, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_load_verify_locations(raw_ctx, cafile, NULL) != 1) {
            fprintf(stderr, "tfsoak: TLS: the raw client's context failed\n");
            SSL_CTX_free(raw_ctx);
            raw_ctx = NULL;
        } else {
            SSL_CTX_set_verify(raw_ctx, SSL_VERIFY_PEER, NULL);
        }
    }
    static const char *const files[] = {"ca.pem",     "ca.key",     "server.pem",
                                        "server.key", "client.pem", "client.key"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char path[64];
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    if (rmdir(dir) != 0)
        fprintf(stderr, "tfsoak: TLS: cannot remove %s: %s\n", dir, strerror(errno));
    return ok && srv_tls && cli_tls && cli_nocert_tls && cli_wrongname_tls && raw_ctx;
}

static void tls_teardown(void)
{
    tf_tls_ctx_free(srv_tls);
    tf_tls_ctx_free(cli_tls);
    tf_tls_ctx_free(cli_nocert_tls);
    tf_tls_ctx_free(cli_wrongname_tls);
    SSL_CTX_free(raw_ctx);
}

/* The library's TLS client config (connects once: a refusal is not retried). */
static tf_tcp_config tls_client_cfg(tf_tls_ctx *k)
{
    tf_tcp_config cfg;
    tf_tcp_config_init(&cfg);
    cfg.connect_timeout_ms = 10000;
    cfg.connect_retries = 0;
    cfg.tls = k;
    return cfg;
}

static tf_err tls_connect(tf_tls_ctx *k, tf_tcp_config *cfg_or_null, tf_sync_conn **c)
{
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port_of_server);
    tf_tcp_config cfg = cfg_or_null ? *cfg_or_null : tls_client_cfg(k);
    return tf_sync_connect(addr, &cfg, c, NULL, NULL);
}

/* The raw TLS client: OpenSSL over two memory BIOs; the bytes it writes go to the socket in
 * pieces of |step| bytes (0: at once; 1 with a 1 ms nap between bytes: a trickle). */
typedef struct rawtls {
    int fd;
    SSL *ssl;
} rawtls;

static bool rt_open(rawtls *t)
{
    t->ssl = NULL;
    t->fd = raw_connect();
    if (t->fd < 0)
        return false;
    t->ssl = SSL_new(raw_ctx);
    BIO *r = BIO_new(BIO_s_mem()), *w = BIO_new(BIO_s_mem());
    if (!t->ssl || !r || !w) {
        BIO_free(r);
        BIO_free(w);
        SSL_free(t->ssl);
        t->ssl = NULL;
        close(t->fd);
        t->fd = -1;
        return false;
    }
    SSL_set_bio(t->ssl, r, w);
    SSL_set_connect_state(t->ssl);
    return true;
}

/* Send what OpenSSL wrote; at most |limit| bytes of it (SIZE_MAX: all; the rest is dropped). */
static bool rt_out(rawtls *t, size_t step, size_t limit)
{
    BIO *w = SSL_get_wbio(t->ssl);
    uint8_t b[16384];
    int n;
    size_t sent = 0;
    while ((n = BIO_read(w, b, (int)sizeof b)) > 0) {
        for (size_t at = 0; at < (size_t)n && sent < limit;) {
            size_t k = step ? step : (size_t)n - at;
            if (k > (size_t)n - at)
                k = (size_t)n - at;
            if (k > limit - sent)
                k = limit - sent;
            if (!write_all(t->fd, b + at, k))
                return false;
            at += k;
            sent += k;
            if (step)
                nap_ms(1);
        }
    }
    return true;
}

/* Read what the socket has (blocking, SO_RCVTIMEO bounds it) into OpenSSL. */
static bool rt_in(rawtls *t)
{
    uint8_t b[16384];
    for (;;) {
        ssize_t r = read(t->fd, b, sizeof b);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        return BIO_write(SSL_get_rbio(t->ssl), b, (int)r) == (int)r;
    }
}

/* The handshake; the first flight (the ClientHello) in pieces of |hello_step| bytes. */
static bool rt_handshake(rawtls *t, size_t hello_step)
{
    for (bool first = true;; first = false) {
        ERR_clear_error();
        int r = SSL_do_handshake(t->ssl);
        if (!rt_out(t, first ? hello_step : 0, SIZE_MAX))
            return false;
        if (r == 1)
            return true;
        if (SSL_get_error(t->ssl, r) != SSL_ERROR_WANT_READ || !rt_in(t))
            return false;
    }
}

/* Seal |n| bytes in records of |rec| bytes (0: as OpenSSL likes) and send them. */
static bool rt_write(rawtls *t, const void *p, size_t n, size_t rec)
{
    const uint8_t *b = p;
    while (n > 0) {
        size_t k = rec && rec < n ? rec : n, w = 0;
        ERR_clear_error();
        if (SSL_write_ex(t->ssl, b, k, &w) != 1)
            return false;
        b += w;
        n -= w;
        if (!rt_out(t, 0, SIZE_MAX))
            return false;
        if (rec)
            nap_ms(1);
    }
    return true;
}

static bool rt_read(rawtls *t, void *p, size_t n)
{
    uint8_t *b = p;
    while (n > 0) {
        size_t got = 0;
        ERR_clear_error();
        int r = SSL_read_ex(t->ssl, b, n, &got);
        if (r == 1) {
            b += got;
            n -= got;
            continue;
        }
        if (SSL_get_error(t->ssl, r) != SSL_ERROR_WANT_READ || !rt_out(t, 0, SIZE_MAX) ||
            !rt_in(t))
            return false;
    }
    return true;
}

/* Read until the server ends the stream (close_notify, an alert, EOF or a reset); false if it
 * did not within the socket's timeout (the server kept us). */
static bool rt_until_end(rawtls *t)
{
    uint8_t b[4096];
    for (;;) {
        size_t got = 0;
        ERR_clear_error();
        int r = SSL_read_ex(t->ssl, b, sizeof b, &got);
        if (r == 1)
            continue;
        if (SSL_get_error(t->ssl, r) != SSL_ERROR_WANT_READ)
            return true; /* close_notify or an alert */
        uint8_t s[16384];
        ssize_t g = read(t->fd, s, sizeof s);
        if (g < 0 && errno == EINTR)
            continue;
        if (g == 0 || (g < 0 && errno == ECONNRESET))
            return true;
        if (g < 0)
            return false; /* timed out */
        BIO_write(SSL_get_rbio(t->ssl), s, (int)g);
    }
}

/* close_notify (|notify|), then close; or a reset (|rst|). */
static void rt_close(rawtls *t, bool notify, bool rst)
{
    if (t->ssl && notify && !rst) {
        ERR_clear_error();
        (void)SSL_shutdown(t->ssl);
        (void)rt_out(t, 0, SIZE_MAX);
    }
    SSL_free(t->ssl);
    t->ssl = NULL;
    if (t->fd >= 0) {
        if (rst)
            close_rst(t->fd);
        else
            close(t->fd);
    }
    t->fd = -1;
    ERR_clear_error();
}

/* Connect, handshake, exchange the magic. */
static bool rt_ready(rawtls *t, size_t hello_step)
{
    uint8_t m[4];
    if (!rt_open(t))
        return false;
    bool ok = rt_handshake(t, hello_step) && rt_write(t, "UNIF", 4, 0) && rt_read(t, m, 4) &&
              memcmp(m, "UNIF", 4) == 0;
    if (!ok)
        rt_close(t, false, false);
    return ok;
}

/* One checksummed message of |len| bytes in records of |rec| bytes, its echo checked. */
static bool rt_echo(rawtls *t, size_t len, size_t rec, uint64_t *s)
{
    uint8_t *b = malloc(len + 4), *r = malloc(len ? len : 1), h[4];
    put_be32(b, (uint32_t)len);
    make_payload(b + 4, len, s);
    bool ok = rt_write(t, b, len + 4, rec) && rt_read(t, h, 4) &&
              ((uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3]) == len &&
              rt_read(t, r, len) && payload_ok(r, len, b + 4);
    if (ok)
        atomic_fetch_add(&echoed, 1);
    free(b);
    free(r);
    return ok;
}

enum { T_GOOD, T_HALF_CLOSE, T_PAUSED_DROP, T_BIG_DECLARED, T_BAD_MAGIC, T_OVERSIZE, T_RST_MID,
       T_TRICKLE, T_MUTE_AFTER_MAGIC, T_NO_NOTIFY, T_NO_CERT, T_WRONG_NAME, T_PLAIN_MAGIC,
       T_GARBAGE, T_SILENT, T_HS_RESET, T_HELLO_TRICKLE, T_N };
static const char *const tname[T_N] = {
    "good (TLS sync)",  "half-close",       "paused, dropped",  "big declared len",
    "bad magic",        "oversized length", "reset mid-frame",  "trickle (records)",
    "mute after magic", "no close_notify",  "no client cert",   "wrong server name",
    "plain UNIF",       "garbage",          "silent",           "reset in handshake",
    "hello trickle"};

/* A good exchange through the library's TLS client: good_sync with cfg.tls set. */

/* Half-close over TLS: K messages of up to 2 MiB sent by a thread of their own, then
 * tf_sync_conn_shutdown (close_notify, then the FIN); this thread reads the echoes meanwhile
 * (the server pauses a client that does not read) and every one must come back, byte for byte
 * and in order, before the server's CLOSED. */
typedef struct hc_job {
    tf_sync_conn *c;
    int k;
    size_t lens[8];
    uint8_t *msg[8];
    tf_err send_err, shut_err;
    int sent;
    uint64_t shut_ms; /* how long tf_sync_conn_shutdown took */
} hc_job;

static void *hc_sender(void *p)
{
    hc_job *j = p;
    j->send_err = TF_OK;
    for (j->sent = 0; j->sent < j->k; j->sent++) {
        j->send_err = tf_sync_conn_send(j->c, j->msg[j->sent], j->lens[j->sent], 20000);
        if (j->send_err != TF_OK)
            return NULL;
    }
    uint64_t t0 = now_ms();
    j->shut_err = tf_sync_conn_shutdown(j->c);
    j->shut_ms = now_ms() - t0;
    return NULL;
}

static bool tls_half_close(uint64_t *s)
{
    hc_job j = {.k = 1 + (int)(rnd(s) % 8), .shut_err = TF_ERR_BAD_STATE};
    size_t n = 0;
    for (int i = 0; i < j.k; i++) {
        j.lens[i] = rnd(s) % 3 == 0 ? rnd(s) % ((2u << 20) + 1) : pick_size(s);
        j.msg[i] = malloc(j.lens[i] ? j.lens[i] : 1);
        make_payload(j.msg[i], j.lens[i], s);
        n += j.lens[i];
    }
    bool ok = tls_connect(cli_tls, NULL, &j.c) == TF_OK;
    pthread_t th;
    if (ok && pthread_create(&th, NULL, hc_sender, &j) != 0) {
        tf_sync_conn_free(j.c);
        ok = false;
    }
    int got = 0;
    size_t back = 0;
    tf_err end = TF_OK;
    int end_os = 0;
    bool wrong = false;
    if (ok) {
        for (;;) {
            void *m = NULL;
            size_t len = 0;
            end = tf_sync_conn_recv_alloc(j.c, &m, &len, 20000);
            if (end != TF_OK)
                break;
            bool same = got < j.k && len == j.lens[got] && payload_ok(m, len, j.msg[got]);
            free(m);
            if (!same) {
                wrong = true; /* reported as a TF_OK end: not the CLOSED expected */
                break;
            }
            back += len;
            got++;
        }
        if (end != TF_ERR_CLOSED)
            end_os = 0, (void)tf_sync_conn_error(j.c, &end_os);
        struct sockaddr_in me;
        socklen_t ml = sizeof me;
        uint16_t port = 0;
        if (getsockname(tf_sync_conn_fd(j.c), (struct sockaddr *)&me, &ml) == 0)
            port = ntohs(me.sin_port);
        pthread_join(th, NULL);
        ok = !wrong && end == TF_ERR_CLOSED && got == j.k && j.send_err == TF_OK &&
             j.shut_err == TF_OK;
        if (!ok) {
            nap_ms(100); /* the server's end notification, if it is behind */
            tf_err se = (tf_err)atomic_load(&end_by_port[port]);
            fail_note("TLS half-close: %d messages, %zu bytes: %d sent (%s), shutdown %s (in %llu "
                      "ms), %d echoed back (%zu bytes), then %s (%s)%s; the server ended it with "
                      "%s (port %u)",
                      j.k, n, j.sent, tf_err_name(j.send_err), tf_err_name(j.shut_err),
                      (unsigned long long)j.shut_ms, got, back, tf_err_name(end),
                      tf_tls_strerror(end, end_os), wrong ? ", an echo not as sent" : "",
                      se ? tf_err_name(se) : "nothing yet", (unsigned)port);
        }
        tf_sync_conn_free(j.c);
    }
    atomic_fetch_add(&hc_bytes, (long)back);
    if (back < n)
        atomic_fetch_add(&hc_missing, (long)(n - back));
    if (ok)
        atomic_fetch_add(&echoed, j.k);
    for (int i = 0; i < j.k; i++)
        free(j.msg[i]);
    return ok;
}

/* Paused then dropped over TLS: the library's client with a small receive buffer sends frames
 * and never reads; once a send makes no headway for 300 ms (the server's queue is full and its
 * stream paused) it resets (SO_LINGER 0 on its socket, then the free). */
static bool tls_paused_drop(uint64_t *s)
{
    tf_tcp_config cfg = tls_client_cfg(cli_tls);
    cfg.rcvbuf = 16384;
    tf_sync_conn *c;
    if (tls_connect(cli_tls, &cfg, &c) != TF_OK)
        return false;
    const size_t flen = 65536 + rnd(s) % 262144;
    uint8_t *f = malloc(flen);
    make_payload(f, flen, s);
    bool ok = true, stalled = false;
    for (size_t sent = 0; sent < (48u << 20);) {
        tf_err e = tf_sync_conn_send(c, f, flen, 300);
        if (e == TF_ERR_TIMEOUT) {
            stalled = true;
            break;
        }
        if (e != TF_OK) {
            ok = false;
            break;
        }
        sent += flen;
    }
    if (stalled)
        atomic_fetch_add(&pd_stalled, 1);
    struct linger l = {1, 0};
    setsockopt(tf_sync_conn_fd(c), SOL_SOCKET, SO_LINGER, &l, sizeof l);
    tf_sync_conn_free(c);
    free(f);
    return ok;
}

/* A 60 MiB length announced inside TLS, a few bytes sent, then it leaves (with or without
 * close_notify) or waits for the server's progress timeout. */
static bool tls_big_declared(uint64_t *s)
{
    rawtls t;
    if (!rt_ready(&t, 0))
        return false;
    uint8_t b[4 + 100];
    put_be32(b, (60u << 20) + (uint32_t)(rnd(s) % 1000));
    size_t few = 1 + rnd(s) % 100;
    for (size_t i = 0; i < few; i++)
        b[4 + i] = (uint8_t)rnd(s);
    bool ok = rt_write(&t, b, 4 + few, 0);
    if (ok && rnd(s) % 2) {
        ok = rt_until_end(&t);
        if (ok)
            atomic_fetch_add(&bd_timed_out, 1);
    }
    rt_close(&t, rnd(s) % 2, false);
    return ok;
}

/* A wrong magic inside TLS: the server rejects it in the handshake (BAD_MAGIC). */
static bool tls_bad_magic(uint64_t *s)
{
    (void)s;
    rawtls t;
    if (!rt_open(&t))
        return false;
    bool ok = rt_handshake(&t, 0) && rt_write(&t, "UNIX", 4, 0) && rt_until_end(&t);
    rt_close(&t, false, false);
    return ok;
}

static bool tls_oversize(uint64_t *s)
{
    rawtls t;
    if (!rt_ready(&t, 0))
        return false;
    uint8_t b[4];
    put_be32(b, 0x7f000000u + (uint32_t)(rnd(s) % 1000));
    bool ok = rt_write(&t, b, 4, 0) && rt_until_end(&t);
    rt_close(&t, false, false);
    return ok;
}

static bool tls_rst_mid(uint64_t *s)
{
    rawtls t;
    if (!rt_ready(&t, 0))
        return false;
    size_t len = 100 + rnd(s) % 50000;
    uint8_t *b = calloc(1, len + 4);
    put_be32(b, (uint32_t)len);
    bool ok = rt_write(&t, b, 4 + len / 2, 0);
    free(b);
    rt_close(&t, false, true);
    return ok;
}

/* The magic and a frame one byte per TLS record, then the echo. */
static bool tls_trickle(uint64_t *s)
{
    rawtls t;
    uint8_t m[4];
    if (!rt_open(&t))
        return false;
    bool ok = rt_handshake(&t, 0) && rt_write(&t, "UNIF", 4, 1) && rt_read(&t, m, 4) &&
              memcmp(m, "UNIF", 4) == 0 && rt_echo(&t, rnd(s) % 40, 1, s);
    rt_close(&t, true, false);
    return ok;
}

static bool tls_mute_after_magic(uint64_t *s)
{
    rawtls t;
    if (!rt_open(&t))
        return false;
    bool ok = rt_handshake(&t, 0) && rt_write(&t, "UNIF", 4, 0);
    nap_ms((long)(rnd(s) % 50));
    rt_close(&t, rnd(s) % 2, false);
    return ok;
}

/* Good exchanges through the raw client, then close() without close_notify: the server must
 * see the unexpected EOF (TF_ERR_TLS) and end the connection. */
static bool tls_no_notify(uint64_t *s)
{
    rawtls t;
    if (!rt_ready(&t, 0))
        return false;
    bool ok = true;
    for (int i = 0, n = 1 + (int)(rnd(s) % 3); i < n && ok; i++)
        ok = rt_echo(&t, pick_size(s), 0, s);
    rt_close(&t, false, false);
    return ok;
}

/* The library's client without a certificate (the server requires one) or expecting another
 * name than the server's certificate carries: the connect must fail. */
static bool tls_refused(tf_tls_ctx *k, const char *what)
{
    tf_sync_conn *c = NULL;
    tf_err e = tls_connect(k, NULL, &c);
    if (e == TF_OK) {
        fail_note("TLS: a client with %s connected", what);
        tf_sync_conn_free(c);
        return false;
    }
    if (e == TF_ERR_TIMEOUT)
        fail_note("TLS: a client with %s timed out instead of being refused", what);
    return e != TF_ERR_TIMEOUT;
}

/* TCP-level peers of the TLS server; each waits for the server to drop it (its handshake
 * deadline, or at once for what is no TLS record): handed to the reaper. */
static bool reap_or_wait(int fd)
{
    if (reap_give(fd))
        return true;
    bool ok = until_eof(fd);
    close(fd);
    return ok;
}

/* A plaintext client of the protocol: "UNIF" (4 bytes: short of a record header, the server
 * waits for its deadline) or "UNIF" and a frame (no valid record). */
static bool tls_plain_magic(uint64_t *s)
{
    int fd = raw_connect();
    if (fd < 0)
        return false;
    uint8_t b[12] = {'U', 'N', 'I', 'F', 0, 0, 0, 4, 'e', 'c', 'h', 'o'};
    if (!write_all(fd, b, rnd(s) % 2 ? 4 : sizeof b)) {
        close(fd);
        return false;
    }
    return reap_or_wait(fd);
}

static bool tls_garbage(uint64_t *s)
{
    int fd = raw_connect();
    if (fd < 0)
        return false;
    uint8_t b[2048];
    size_t n = 1 + rnd(s) % sizeof b;
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)rnd(s);
    if (rnd(s) % 2)
        b[0] = 0x16, b[1] = 3, b[2] = 1; /* a handshake record's header, then garbage */
    if (!write_all(fd, b, n)) {
        close(fd);
        return false;
    }
    return reap_or_wait(fd);
}

/* A reset in the middle of the TLS handshake: after a part of the ClientHello, after all of it
 * and a part of the server's answer, or after a part of the client's second flight. */
static bool tls_hs_reset(uint64_t *s)
{
    rawtls t;
    if (!rt_open(&t))
        return false;
    bool ok = true;
    ERR_clear_error();
    int r = SSL_do_handshake(t.ssl); /* the ClientHello, in the write BIO */
    int stage = (int)(rnd(s) % 3);
    size_t hello = (size_t)BIO_ctrl_pending(SSL_get_wbio(t.ssl));
    if (r == 1 || hello == 0) {
        rt_close(&t, false, true);
        return false;
    }
    if (stage == 0) {
        ok = rt_out(&t, 0, rnd(s) % hello);
    } else {
        ok = rt_out(&t, 0, SIZE_MAX);
        if (ok && stage == 1) {
            uint8_t b[64];
            ok = read_all(t.fd, b, 1 + rnd(s) % sizeof b);
        } else if (ok) {
            while (ok && (r = SSL_do_handshake(t.ssl)) != 1 &&
                   SSL_get_error(t.ssl, r) == SSL_ERROR_WANT_READ &&
                   BIO_ctrl_pending(SSL_get_wbio(t.ssl)) == 0)
                ok = rt_in(&t);
            size_t second = (size_t)BIO_ctrl_pending(SSL_get_wbio(t.ssl));
            ok = ok && second > 0 && rt_out(&t, 0, rnd(s) % second);
        }
    }
    rt_close(&t, false, true);
    return ok;
}

/* A real ClientHello one byte at a time (a 1 ms nap between bytes), then the rest of the
 * handshake, the magic and an echo as a good client. */
static bool tls_hello_trickle(uint64_t *s)
{
    rawtls t;
    if (!rt_ready(&t, 1))
        return false;
    bool ok = rt_echo(&t, pick_size(s), 0, s);
    rt_close(&t, true, false);
    return ok;
}


static bool tls_behave(int b, uint64_t *s)
{
    switch (b) {
    case T_GOOD: return good_sync(s);
    case T_HALF_CLOSE: return tls_half_close(s);
    case T_PAUSED_DROP: return tls_paused_drop(s);
    case T_BIG_DECLARED: return tls_big_declared(s);
    case T_BAD_MAGIC: return tls_bad_magic(s);
    case T_OVERSIZE: return tls_oversize(s);
    case T_RST_MID: return tls_rst_mid(s);
    case T_TRICKLE: return tls_trickle(s);
    case T_MUTE_AFTER_MAGIC: return tls_mute_after_magic(s);
    case T_NO_NOTIFY: return tls_no_notify(s);
    case T_NO_CERT: return tls_refused(cli_nocert_tls, "no certificate");
    case T_WRONG_NAME: return tls_refused(cli_wrongname_tls, "another server name");
    case T_PLAIN_MAGIC: return tls_plain_magic(s);
    case T_GARBAGE: return tls_garbage(s);
    case T_SILENT: return silent(s);
    case T_HS_RESET: return tls_hs_reset(s);
    default: return tls_hello_trickle(s);
    }
}

/* The server's rejects by reason (TLS mode), on the loop thread. */
static atomic_long srv_rej_by[128];

static void on_reject(tf_async_server *s, const char *peer, tf_err err, int os_err, void *arg)
{
    (void)s, (void)peer, (void)os_err, (void)arg;
    if ((unsigned)err < 128)
        atomic_fetch_add(&srv_rej_by[err], 1);
}

static int only_b = -1; /* -b N: only behaviour N (to study one) */

typedef struct worker {
    pthread_t t;
    uint64_t seed;
    uint64_t until;
} worker;

static void *client_main(void *p)
{
    worker *w = p;
    do {
        int b = only_b >= 0 ? only_b : (int)(rnd(&w->seed) % (tls_mode ? T_N : B_N));
        bool ok;
        if (tls_mode)
            ok = tls_behave(b, &w->seed);
        else switch (b) {
        case B_GOOD_RAW: ok = good_raw(&w->seed); break;
        case B_GOOD_SYNC: ok = good_sync(&w->seed); break;
        case B_BAD_MAGIC: ok = bad_magic(&w->seed); break;
        case B_OVERSIZE: ok = oversize(&w->seed); break;
        case B_RST_MID: ok = rst_mid(&w->seed); break;
        case B_SILENT: ok = silent(&w->seed); break;
        case B_TRICKLE: ok = trickle(&w->seed); break;
        case B_HALF_CLOSE: ok = half_close(&w->seed); break;
        case B_PAUSED_DROP: ok = paused_drop(&w->seed); break;
        case B_BIG_DECLARED: ok = big_declared(&w->seed); break;
        default: ok = mute_after_magic(&w->seed); break;
        }
        atomic_fetch_add(&done_by[b], 1);
        if (!ok)
            atomic_fetch_add(&failed_by[b], 1);
    } while (now_ms() < w->until);
    return NULL;
}

/* Wait until the reaper holds no silent client (each ends by EOF or its 30 s bound). */
static void reap_wait(void)
{
    for (;;) {
        pthread_mutex_lock(&reap_mu);
        int n = reap_n;
        pthread_mutex_unlock(&reap_mu);
        if (n == 0)
            return;
        nap_ms(10);
    }
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
    reap_wait();
}

static tf_async_server *srv;

/* Wait (up to 30 s) until no server connection is alive (none in the handshake either), no
 * send is in flight and no echo held. */
static bool quiesce(void)
{
    uint64_t end = now_ms() + 30000;
    while (atomic_load(&srv_live) != 0 || atomic_load(&srv_inflight) != 0 ||
           atomic_load(&srv_held) != 0 || tf_async_server_active(srv) != 0) {
        if (now_ms() > end)
            return false;
        nap_ms(10);
    }
    return true;
}

/* A crash prints its stack (addresses: addr2line -e tfsoak) before it dies as it would. */
static void on_crash(int sig)
{
    static const char m[] = "tfsoak: CRASH, stack:\n";
    (void)!write(2, m, sizeof m - 1);
    void *pc[64];
    backtrace_symbols_fd(pc, backtrace(pc, 64), 2);
    signal(sig, SIG_DFL);
    raise(sig);
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
    while ((o = getopt(argc, argv, "t:c:s:b:Th")) != -1) {
        if (o == 't')
            seconds = atol(optarg);
        else if (o == 'c')
            threads = atol(optarg);
        else if (o == 's')
            seed = strtoull(optarg, NULL, 0);
        else if (o == 'b' && atoi(optarg) >= 0 && atoi(optarg) < NB_MAX)
            only_b = atoi(optarg);
        else if (o == 'T')
            tls_mode = true;
        else {
            fprintf(stderr, "usage: tfsoak [-T] [-t SECONDS] [-c CLIENT_THREADS] [-s SEED] "
                            "[-b BEHAVIOUR]\n  -T: over TLS 1.3 (its own behaviours: -b 0..%d)\n",
                    T_N - 1);
            return o == 'h' ? 0 : 1;
        }
    }
    const int nb = tls_mode ? T_N : B_N;
    const char *const *names = tls_mode ? tname : bname;
    if (only_b >= nb) {
        fprintf(stderr, "tfsoak: -b %d: behaviours are 0..%d\n", only_b, nb - 1);
        return 1;
    }
    if (seconds < 1)
        seconds = 1;
    if (threads < 1)
        threads = 1;
    /* glibc raises its mmap threshold (and, twice that, its trim threshold) to the size of the
     * largest block freed, up to 32 MiB: after the 2 MiB echoes every client thread's arena then
     * keeps ~10 MiB that malloc_trim does not return (it does not trim the top of a thread's
     * arena). Fixed thresholds keep big blocks in mmap, so the RSS figure measures leaks, not
     * the allocator's caching. */
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    mallopt(M_TRIM_THRESHOLD, 128 * 1024);
    setvbuf(stdout, NULL, _IOLBF, 0); /* a crash or the watchdog keeps what was printed */
    signal(SIGSEGV, on_crash);
    signal(SIGBUS, on_crash);
    signal(SIGABRT, on_crash);
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
    cfg.handshake_timeout_ms = 3000; /* generous: a good client on a busy machine is never
                                      * dropped (the reaper waits for the silent ones) */
    cfg.max_recv_len = 64u << 20;    /* 60 MiB declared lengths pass; oversized ones do not */
    cfg.send_queue_bytes = 4 << 20;  /* a client that does not read pauses the stream soon */
    cfg.progress_timeout_ms = 5000; /* a stalled frame (a big declared length) is dropped; 5 s:
                                     * a busy CI box never starves a good frame that long */
    cfg.recv_mem_budget = 64 << 20;  /* partial messages of all connections together */
    if (tls_mode) {
        if (!tls_setup())
            return 1;
        cfg.tls = srv_tls; /* mutual: the server requires a client certificate */
    }
    tf_errmsg msg;
    tf_async_server_new(evb, &srv);
    tf_async_server_on_accept(srv, on_accept, NULL);
    if (tls_mode)
        tf_async_server_on_reject(srv, on_reject, NULL);
    if (tf_async_server_init(srv, "127.0.0.1:0", &cfg, &msg) != TF_OK) {
        fprintf(stderr, "tfsoak: %s\n", msg.text);
        return 1;
    }
    char addr[TF_ADDRSTR_LEN];
    tf_async_server_addr(srv, addr, sizeof addr);
    port_of_server = atoi(strrchr(addr, ':') + 1);
    printf("tfsoak: server %s%s, %ld client threads, %ld s, seed %llu\n", addr,
           tls_mode ? " (TLS 1.3, mutual)" : "", threads, seconds, (unsigned long long)seed);

    pthread_t reaper;
    pthread_create(&reaper, NULL, reaper_main, NULL);

    /* warm-up: every behaviour a few times, then the baseline */
    run_clients((int)threads, seed ^ 0x5eed, 1000);
    bool ok = quiesce();
    malloc_trim(0);
    const int fd0 = fd_count();
    const long rss0 = rss_kib();
    const long live0 = atomic_load(&srv_live), infl0 = atomic_load(&srv_inflight);
    const uint64_t act0 = tf_async_server_active(srv);
    const long acc0 = atomic_load(&srv_accepted);
    const uint64_t rej0 = tf_async_server_rejected(srv);
    for (int b = 0; b < NB_MAX; b++) {
        atomic_store(&done_by[b], 0);
        atomic_store(&failed_by[b], 0);
    }
    atomic_store(&echoed, 0);
    atomic_store(&reap_failed, 0);
    atomic_store(&hc_bytes, 0);
    atomic_store(&hc_missing, 0);
    atomic_store(&pd_stalled, 0);
    atomic_store(&bd_timed_out, 0);
    const long pauses0 = atomic_load(&srv_pauses), closes0 = atomic_load(&srv_closes);
    long ends0[128], rejs0[128];
    for (int e = 0; e < 128; e++) {
        ends0[e] = atomic_load(&srv_end_by[e]);
        rejs0[e] = atomic_load(&srv_rej_by[e]);
    }

    const uint64_t t0 = now_ms();
    run_clients((int)threads, seed, (uint64_t)seconds * 1000u);
    const uint64_t t1 = now_ms();
    pthread_mutex_lock(&reap_mu);
    reap_quit = true;
    pthread_cond_signal(&reap_cv);
    pthread_mutex_unlock(&reap_mu);
    pthread_join(reaper, NULL);
    /* the reaper's failures count under silent (in TLS mode it also holds plain and garbage
     * clients: its note says which) */
    atomic_fetch_add(&failed_by[tls_mode ? T_SILENT : B_SILENT], atomic_load(&reap_failed));
    ok = quiesce() && ok;
    malloc_trim(0);
    const int fd1 = fd_count();
    const long rss1 = rss_kib();
    const long live1 = atomic_load(&srv_live), infl1 = atomic_load(&srv_inflight);
    const long held1 = atomic_load(&srv_held);
    const uint64_t act1 = tf_async_server_active(srv);
    size_t mem_used = 0, mem_peak = 0;
    uint64_t mem_waits = 0;
    tf_async_server_mem_use(srv, &mem_used, &mem_peak, &mem_waits);

    long total = 0, failed = 0;
    for (int b = 0; b < nb; b++) {
        long d = atomic_load(&done_by[b]), f = atomic_load(&failed_by[b]);
        printf("tfsoak:   %-18s %7ld clients, %ld failed\n", names[b], d, f);
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
    printf("tfsoak: half-close: %ld echo bytes back, %ld missing; paused-then-dropped: %ld stalled "
           "the sender, %ld server pauses; big declared lengths: %ld dropped by the progress "
           "timeout\n",
           atomic_load(&hc_bytes), atomic_load(&hc_missing), atomic_load(&pd_stalled),
           atomic_load(&srv_pauses) - pauses0, atomic_load(&bd_timed_out));
    printf("tfsoak: server ends:");
    for (int e = 0; e < 128; e++)
        if (atomic_load(&srv_end_by[e]) != ends0[e])
            printf(" %s %ld", tf_err_name((tf_err)e), atomic_load(&srv_end_by[e]) - ends0[e]);
    printf(" (%ld closed by the server after the client's EOF)\n", atomic_load(&srv_closes) - closes0);
    if (tls_mode) {
        printf("tfsoak: server rejects in the handshake:");
        for (int e = 0; e < 128; e++)
            if (atomic_load(&srv_rej_by[e]) != rejs0[e])
                printf(" %s %ld", tf_err_name((tf_err)e), atomic_load(&srv_rej_by[e]) - rejs0[e]);
        tf_server_stats st = {.size = sizeof st};
        if (tf_async_server_stats(srv, &st) == TF_OK)
            printf(" (whole run: %llu accepted, %llu rejected: bad magic %llu, timeout %llu, "
                   "closed %llu, io %llu, other %llu; %llu handshaking now)",
                   (unsigned long long)st.accepted, (unsigned long long)st.rejected,
                   (unsigned long long)st.rej_bad_magic, (unsigned long long)st.rej_timeout,
                   (unsigned long long)st.rej_closed, (unsigned long long)st.rej_io,
                   (unsigned long long)st.rej_other, (unsigned long long)st.handshaking);
        printf("\n");
    }
    printf("tfsoak: receive memory: peak %zu bytes, %zu held at the end, %llu waits for the "
           "budget (%lld)\n",
           mem_peak, mem_used, (unsigned long long)mem_waits, (long long)cfg.recv_mem_budget);
    printf("tfsoak: before: %d fds, RSS %ld KiB, %ld connections (%llu active), %ld sends in "
           "flight\n",
           fd0, rss0, live0, (unsigned long long)act0, infl0);
    printf("tfsoak: after:  %d fds, RSS %ld KiB, %ld connections (%llu active), %ld sends in "
           "flight, %ld held (RSS margin %ld KiB)\n",
           fd1, rss1, live1, (unsigned long long)act1, infl1, held1, margin);
    ok = ok && failed == 0 && fd1 == fd0 && live1 == 0 && act1 == 0 && infl1 == 0 && held1 == 0 &&
         mem_used == 0 && (rss1 <= rss0 + margin || !RSS_MEANS_LEAKS) &&
         atomic_load(&srv_ends_bad) == 0;
    if (!RSS_MEANS_LEAKS)
        printf("tfsoak: (a sanitizer keeps its own memory: the RSS figure is not judged)\n");
    if (atomic_load(&srv_ends_bad))
        printf("tfsoak: %ld server streams ended with an unexpected reason\n",
               atomic_load(&srv_ends_bad));
    tf_async_server_free(srv);
    tf_evb_free(evb);
    if (tls_mode)
        tls_teardown();
    printf("tfsoak: %s\n", ok ? "PASSED" : "FAILED");
    return ok ? 0 : 1;
}
