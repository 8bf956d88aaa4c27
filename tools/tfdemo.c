/* tools/tfdemo.c -- `make run`: tcpframe over loopback TCP, end to end, in a few seconds.
 *
 * An async echo server (tf_async_server on a tf_evb loop, message-stream mode: what
 * `tfcat --echo -l 127.0.0.1:0` does) on an ephemeral port; then a sync client
 * (tf_sync_connect) and an async client (tf_async_client, futures) exchange messages of
 * 0 B, 64 B, 64 KiB and 16 MiB with it, one round trip at a time, and the async client also
 * pipelines a burst of 64 KiB messages; a raw client that sends "HTTP" instead of the magic is
 * rejected by the server. Every echo is compared byte for byte. Prints what happened and a table
 * (messages, bytes, median round trip, throughput). Exit status 0 only if every message came
 * back byte-exact and the bad client was rejected.
 *
 * Then one exchange over mutual TLS 1.3 (tls/tcpframe/tls.h): the demo makes throwaway
 * certificates now with OpenSSL's API (a CA, a server certificate for 127.0.0.1, a client
 * certificate; in a scratch directory removed once the contexts have loaded them: no key is
 * kept), a second async echo server takes TLS, and a sync client echoes one 64-byte message
 * through it; one line gives the round trip and the identity each end verified.
 *
 *   tfdemo [-r ROUNDS]     round trips per small size (default 200; 16 MiB: ROUNDS / 40)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tcpframe/async.h"
#include "tcpframe/sync.h"
#include "tcpframe/tls.h"
#include "tf_certs.h"

#define OP_TIMEOUT_MS 30000 /* any single operation; a slow machine is not a failure */

static int failures;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("tfdemo: FAILED: ", stdout);
    vprintf(fmt, ap);
    fputc('\n', stdout);
    va_end(ap);
    failures++;
}

/* xorshift64*: payload bytes that depend on the message number. */
static void fill(uint8_t *p, size_t len, uint64_t seed)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < len; i += 8) {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        uint64_t v = s * 2685821657736338717ull;
        size_t k = len - i < 8 ? len - i : 8;
        memcpy(p + i, &v, k);
    }
}

/* ---------------------------------------------------------------- the server (loop thread) */

typedef struct server_stats {
    atomic_ulong echoed, rejected;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    tf_err reject_err;
    char reject_peer[TF_ADDRSTR_LEN];
} server_stats;

static server_stats st = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
static atomic_ulong tls_echoed; /* the TLS server's echoes (not in st.echoed) */

/* Every message goes back to its sender: the view is valid only during the call, so copy it
 * into a buffer the connection owns until it is sent. */
static void echo_msg(tf_async_conn *c, tf_err err, int os_err, const uint8_t *data, size_t len,
                     void *arg)
{
    (void)os_err;
    atomic_ulong *echoed = arg;
    if (err != TF_OK) { /* CLOSED when the client leaves; SHUTDOWN when the loop stops */
        tf_async_conn_free(c);
        return;
    }
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy) {
        tf_async_conn_abort(c);
        return;
    }
    if (len)
        memcpy(copy, data, len);
    tf_future *f = NULL;
    if (tf_async_conn_send_owned(c, copy, len, free, -1, &f) != TF_OK) {
        free(copy);
        tf_async_conn_abort(c);
        return;
    }
    tf_future_free(f);
    atomic_fetch_add(echoed, 1);
}

static void on_accept(tf_async_server *s, tf_async_conn *c, void *arg)
{
    (void)s;
    (void)arg;
    if (tf_async_conn_stream(c, echo_msg, &st.echoed) != TF_OK)
        tf_async_conn_free(c);
}

static void on_reject(tf_async_server *s, const char *peer, tf_err err, int os_err, void *arg)
{
    (void)s;
    (void)os_err;
    (void)arg;
    pthread_mutex_lock(&st.mu);
    st.reject_err = err;
    snprintf(st.reject_peer, sizeof st.reject_peer, "%s", peer);
    atomic_fetch_add(&st.rejected, 1);
    pthread_cond_broadcast(&st.cv);
    pthread_mutex_unlock(&st.mu);
}

/* ---------------------------------------------------------------- measurements */

typedef struct row {
    const char *client;
    const char *what;
    size_t size;
    long msgs;
    double *rtt; /* per round trip, ms; NULL for a pipelined burst */
    double total_ms;
} row;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void fmt_bytes(char *buf, size_t len, double b)
{
    if (b < 1024)
        snprintf(buf, len, "%.0f B", b);
    else if (b < 1048576)
        snprintf(buf, len, "%.1f KiB", b / 1024);
    else if (b < 1073741824.0)
        snprintf(buf, len, "%.1f MiB", b / 1048576);
    else
        snprintf(buf, len, "%.2f GiB", b / 1073741824.0);
}

static void fmt_size(char *buf, size_t len, size_t n)
{
    if (n >= 1048576 && n % 1048576 == 0)
        snprintf(buf, len, "%zu MiB", n / 1048576);
    else if (n >= 1024 && n % 1024 == 0)
        snprintf(buf, len, "%zu KiB", n / 1024);
    else
        snprintf(buf, len, "%zu B", n);
}

static void print_row(const row *r)
{
    char size[32], bytes[32], med[32], tput[32];
    fmt_size(size, sizeof size, r->size);
    double total = (double)r->size * (double)r->msgs;
    fmt_bytes(bytes, sizeof bytes, total);
    if (r->rtt && r->msgs > 0) {
        qsort(r->rtt, (size_t)r->msgs, sizeof *r->rtt, cmp_double);
        double m = r->rtt[r->msgs / 2];
        if (m < 1)
            snprintf(med, sizeof med, "%.0f us", m * 1000);
        else
            snprintf(med, sizeof med, "%.2f ms", m);
    } else {
        snprintf(med, sizeof med, "-");
    }
    /* One by one: the payload of one message over its median round trip (robust to the
     * odd stall of a busy machine). A burst: every payload byte over the burst's time. */
    double ms = r->rtt && r->msgs > 0 ? r->rtt[r->msgs / 2] : r->total_ms;
    double bytes_per = r->rtt ? (double)r->size : total;
    if (r->size && ms > 0)
        snprintf(tput, sizeof tput, "%.0f MB/s", bytes_per / 1e3 / ms);
    else
        snprintf(tput, sizeof tput, "-");
    printf("  %-6s %-10s %-9s %8ld %11s %11s %12s\n", r->client, r->what, size, r->msgs, bytes, med,
           tput);
}

/* ---------------------------------------------------------------- the clients */

static uint8_t *src, *dst; /* big enough for the largest message */

static bool check(const char *who, size_t want, size_t got, uint64_t seed)
{
    if (got != want) {
        fail("%s: a %zu-byte message came back with %zu bytes", who, want, got);
        return false;
    }
    if (want && memcmp(src, dst, want) != 0) {
        fail("%s: a %zu-byte message came back different (seed %" PRIu64 ")", who, want, seed);
        return false;
    }
    return true;
}

/* Round trips of |r->size| bytes over a sync connection. */
static void sync_rounds(tf_sync_conn *c, row *r, uint64_t *seed)
{
    r->total_ms = 0;
    for (long i = 0; i < r->msgs; i++) {
        fill(src, r->size, ++*seed);
        double a = now_ms();
        size_t n = 0;
        tf_err e = tf_sync_conn_send(c, src, r->size, OP_TIMEOUT_MS);
        if (e == TF_OK)
            e = tf_sync_conn_recv(c, dst, r->size, &n, OP_TIMEOUT_MS);
        r->rtt[i] = now_ms() - a;
        r->total_ms += r->rtt[i];
        if (e != TF_OK) {
            int os = 0;
            tf_sync_conn_error(c, &os);
            fail("sync client: %zu-byte round trip: %s%s%s", r->size, tf_strerror(e),
                 os ? ": " : "", os ? strerror(os) : "");
            r->msgs = i;
            break;
        }
        if (!check("sync client", r->size, n, *seed)) {
            r->msgs = i;
            break;
        }
    }
}

static tf_err wait_take(tf_future *f, size_t *size, void **owned, int *os)
{
    tf_err e = tf_future_wait_for(f, OP_TIMEOUT_MS);
    if (e == TF_OK)
        e = tf_future_get(f, size, owned);
    if (os)
        *os = tf_future_os_err(f);
    tf_future_free(f);
    return e;
}

/* Round trips over an async connection: the receive is posted before the send, both futures. */
static void async_rounds(tf_async_conn *c, row *r, uint64_t *seed)
{
    r->total_ms = 0;
    for (long i = 0; i < r->msgs; i++) {
        fill(src, r->size, ++*seed);
        double a = now_ms();
        tf_future *rf = NULL, *sf = NULL;
        size_t n = 0;
        int os = 0;
        tf_err e = tf_async_conn_recv(c, dst, r->size, OP_TIMEOUT_MS, &rf);
        if (e == TF_OK)
            e = tf_async_conn_send(c, src, r->size, OP_TIMEOUT_MS, &sf);
        if (e == TF_OK)
            e = wait_take(sf, NULL, NULL, &os);
        if (e == TF_OK)
            e = wait_take(rf, &n, NULL, &os);
        else
            tf_future_free(rf);
        r->rtt[i] = now_ms() - a;
        r->total_ms += r->rtt[i];
        if (e != TF_OK) {
            fail("async client: %zu-byte round trip: %s%s%s", r->size, tf_strerror(e),
                 os ? ": " : "", os ? strerror(os) : "");
            r->msgs = i;
            break;
        }
        if (!check("async client", r->size, n, *seed)) {
            r->msgs = i;
            break;
        }
    }
}

/* A burst: every receive and send queued at once, then every echo checked in order. */
static void async_burst(tf_async_conn *c, row *r, uint64_t seed0)
{
    long n = r->msgs;
    uint8_t **bufs = calloc((size_t)n, sizeof *bufs);
    tf_future **rf = calloc((size_t)n, sizeof *rf), **sf = calloc((size_t)n, sizeof *sf);
    if (!bufs || !rf || !sf) {
        fail("async burst: out of memory");
        r->msgs = 0;
        free(bufs);
        free(rf);
        free(sf);
        return;
    }
    for (long i = 0; i < n; i++) {
        bufs[i] = malloc(r->size);
        if (bufs[i])
            fill(bufs[i], r->size, seed0 + (uint64_t)i);
    }
    double t0 = now_ms();
    long ok = 0;
    tf_err e = TF_OK;
    for (long i = 0; i < n && e == TF_OK; i++) {
        e = bufs[i] ? tf_async_conn_recv_alloc(c, OP_TIMEOUT_MS, &rf[i]) : TF_ERR_NOMEM;
        if (e == TF_OK)
            e = tf_async_conn_send(c, bufs[i], r->size, OP_TIMEOUT_MS, &sf[i]);
    }
    for (long i = 0; i < n; i++) {
        int os = 0;
        tf_err se = sf[i] ? wait_take(sf[i], NULL, NULL, &os) : e;
        void *got = NULL;
        size_t len = 0;
        tf_err re = rf[i] ? wait_take(rf[i], &len, &got, &os) : e;
        if (se != TF_OK || re != TF_OK) {
            if (ok == i) /* report the first failure only */
                fail("async burst: message %ld: %s%s%s", i, tf_strerror(se != TF_OK ? se : re),
                     os ? ": " : "", os ? strerror(os) : "");
        } else if (len != r->size || memcmp(got, bufs[i], len) != 0) {
            if (ok == i)
                fail("async burst: message %ld came back different", i);
        } else if (ok == i) {
            ok++;
        }
        free(got);
    }
    r->total_ms = now_ms() - t0;
    r->msgs = ok;
    for (long i = 0; i < n; i++)
        free(bufs[i]);
    free(bufs);
    free(rf);
    free(sf);
}

/* A raw TCP client (plain syscalls) that answers the magic with "HTTP". True if the server
 * closed it and reported the rejection. */
static bool bad_client(const char *addr, char *what, size_t len)
{
    const char *colon = strrchr(addr, ':');
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        snprintf(what, len, "could not connect: %s", strerror(errno));
        if (fd >= 0)
            close(fd);
        return false;
    }
    char got[8];
    size_t n = 0;
    if (send(fd, "HTTP", 4, MSG_NOSIGNAL) != 4) {
        snprintf(what, len, "send failed: %s", strerror(errno));
        close(fd);
        return false;
    }
    /* The server's magic, then its close. */
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, OP_TIMEOUT_MS) != 1)
            break;
        ssize_t k = recv(fd, got + n, sizeof got - n, 0);
        if (k <= 0)
            break;
        n += (size_t)k;
        if (n == sizeof got)
            break;
    }
    close(fd);
    pthread_mutex_lock(&st.mu);
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += OP_TIMEOUT_MS / 1000;
    while (atomic_load(&st.rejected) == 0)
        if (pthread_cond_timedwait(&st.cv, &st.mu, &dl) == ETIMEDOUT)
            break;
    bool ok = atomic_load(&st.rejected) == 1 && st.reject_err == TF_ERR_BAD_MAGIC;
    snprintf(what, len, "it read %.*s%s, then %s;\n           the server reported %s (%s) from %s",
             (int)n, got, n == 4 && memcmp(got, "UNIF", 4) == 0 ? " (the server's magic)" : "",
             n <= 4 ? "the server's close" : "more data (!)",
             ok ? tf_err_name(st.reject_err) : "no rejection", ok ? "wrong magic" : "?",
             st.reject_peer[0] ? st.reject_peer : "?");
    pthread_mutex_unlock(&st.mu);
    return ok && n == 4;
}

/* ---------------------------------------------------------------- TLS */

/* A TLS context (tools/tf_certs.h), or NULL after saying why. */
static tf_tls_ctx *tls_ctx(const char *dir, const char *name, const char *peer_name)
{
    tf_errmsg msg;
    tf_tls_ctx *k = tfc_tls_ctx(dir, name, peer_name, &msg);
    if (!k)
        fail("TLS context: %s", msg.text);
    return k;
}

/* Throwaway certificates (a CA; the server for IP 127.0.0.1; a client) in a scratch directory,
 * loaded into the two contexts, then removed. */
static bool tls_contexts(tf_tls_ctx **server, tf_tls_ctx **client)
{
    char dir[] = "/tmp/tfdemo-XXXXXX";
    if (!mkdtemp(dir)) {
        fail("TLS: cannot make a scratch directory: %s", strerror(errno));
        return false;
    }
    EVP_PKEY *ca_key = NULL;
    X509 *ca = NULL;
    bool ok =
        tfc_make_cert(dir, "ca", "tfdemo CA", NULL, NULL, NULL, 1, &ca_key, &ca) &&
        tfc_make_cert(dir, "server", "tfdemo-server", "IP:127.0.0.1", ca, ca_key, 2, NULL, NULL) &&
        tfc_make_cert(dir, "client", "tfdemo-client", "DNS:client.tfdemo", ca, ca_key, 3, NULL, NULL);
    EVP_PKEY_free(ca_key);
    X509_free(ca);
    if (!ok)
        fail("TLS: cannot make the certificates (OpenSSL)");
    *server = ok ? tls_ctx(dir, "server", NULL) : NULL;
    *client = ok ? tls_ctx(dir, "client", "127.0.0.1") : NULL;
    static const char *const files[] = {"ca.pem",     "ca.key",     "server.pem",
                                        "server.key", "client.pem", "client.key"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char path[64];
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
    return *server && *client;
}

/* What the TLS server saw of its client (its accept runs on the loop thread). */
static struct {
    bool done;
    tf_err err;
    tf_tls_peer peer;
} tls_seen;

static void tls_on_accept(tf_async_server *s, tf_async_conn *c, void *arg)
{
    (void)s;
    (void)arg;
    pthread_mutex_lock(&st.mu);
    tls_seen.err = tf_tls_peer_async(c, &tls_seen.peer);
    tls_seen.done = true;
    pthread_cond_broadcast(&st.cv);
    pthread_mutex_unlock(&st.mu);
    if (tf_async_conn_stream(c, echo_msg, &tls_echoed) != TF_OK)
        tf_async_conn_free(c);
}

/* One 64-byte echo over mutual TLS with a second server on the loop; prints one line. */
static void tls_exchange(tf_evb *evb)
{
    tf_tls_ctx *sk = NULL, *ck = NULL;
    if (!tls_contexts(&sk, &ck)) {
        tf_tls_ctx_free(sk);
        tf_tls_ctx_free(ck);
        return;
    }
    tf_tcp_config scfg, ccfg;
    tf_tcp_config_init(&scfg);
    tf_tcp_config_init(&ccfg);
    scfg.tls = sk;
    ccfg.tls = ck;
    tf_async_server *srv = NULL;
    tf_errmsg msg;
    char addr[TF_ADDRSTR_LEN];
    if (tf_async_server_new(evb, &srv) != TF_OK) {
        fail("TLS server: cannot make it");
    } else {
        tf_async_server_on_accept(srv, tls_on_accept, NULL);
        if (tf_async_server_init(srv, "127.0.0.1:0", &scfg, &msg) != TF_OK ||
            tf_async_server_addr(srv, addr, sizeof addr) != TF_OK) {
            fail("TLS server: %s", msg.text);
        } else {
            tf_sync_conn *c = NULL;
            int os = 0;
            double a = now_ms();
            tf_err e = tf_sync_connect(addr, &ccfg, &c, &os, &msg);
            double hs = now_ms() - a, rtt = 0;
            size_t n = 0;
            if (e != TF_OK) {
                fail("TLS client: %s", msg.text);
            } else {
                fill(src, 64, 424242);
                a = now_ms();
                e = tf_sync_conn_send(c, src, 64, OP_TIMEOUT_MS);
                if (e == TF_OK)
                    e = tf_sync_conn_recv(c, dst, 64, &n, OP_TIMEOUT_MS);
                rtt = now_ms() - a;
                if (e != TF_OK) {
                    tf_sync_conn_error(c, &os);
                    fail("TLS client: 64-byte round trip: %s: %s", tf_strerror(e),
                         tf_tls_strerror(e, os));
                }
            }
            tf_tls_peer sp, cp;
            if (e == TF_OK && check("TLS client", 64, n, 424242) &&
                tf_tls_peer_sync(c, &sp) == TF_OK) {
                pthread_mutex_lock(&st.mu);
                struct timespec dl;
                clock_gettime(CLOCK_REALTIME, &dl);
                dl.tv_sec += OP_TIMEOUT_MS / 1000;
                while (!tls_seen.done)
                    if (pthread_cond_timedwait(&st.cv, &st.mu, &dl) == ETIMEDOUT)
                        break;
                bool seen = tls_seen.done && tls_seen.err == TF_OK;
                cp = tls_seen.peer;
                pthread_mutex_unlock(&st.mu);
                char hex[65];
                tf_tls_fingerprint_hex(&sp, hex);
                printf(
                    "  tls      mutual TLS 1.3, certificates made just now: handshaken in %.2f ms, "
                    "64 B round trip %.0f us\n           verified: server %s (%s, sha256 "
                    "%.16s...), client %s\n",
                    hs, rtt * 1000, sp.subject, sp.sans, hex,
                    seen && cp.verified ? cp.subject : "(none)");
                if (!sp.verified || !seen || !cp.verified)
                    fail("TLS: a peer was not verified");
            } else if (e == TF_OK) {
                fail("TLS client: no peer identity");
            }
            tf_sync_conn_free(c); /* close_notify, then the FIN: the server frees its end */
        }
        tf_async_server_shutdown(srv);
        tf_async_server_free(srv);
    }
    tf_tls_ctx_free(sk);
    tf_tls_ctx_free(ck);
}

/* ---------------------------------------------------------------- main */

static const size_t sizes[] = {0, 64, 64 << 10, 16 << 20};
enum { NSIZES = sizeof sizes / sizeof sizes[0], BIG = 16 << 20, BURST = 256 };

static long rounds_for(size_t size, long rounds)
{
    if (size >= (1u << 20)) {
        long r = rounds / 40;
        return r < 2 ? 2 : r;
    }
    return rounds;
}

int main(int argc, char **argv)
{
    long rounds = 200;
    int opt;
    while ((opt = getopt(argc, argv, "r:h")) != -1) {
        char *end;
        if (opt == 'r' && (rounds = strtol(optarg, &end, 10), *end == '\0') && rounds >= 1 &&
            rounds <= 100000)
            continue;
        fprintf(stderr, "usage: tfdemo [-r ROUNDS]   round trips per small size (1..100000, "
                        "default 200; 16 MiB: ROUNDS/40, at least 2)\n");
        return opt == 'h' ? 0 : 2;
    }
    signal(SIGPIPE, SIG_IGN);
    src = malloc(BIG);
    dst = malloc(BIG);
    if (!src || !dst) {
        fprintf(stderr, "tfdemo: out of memory\n");
        return 1;
    }
    double t_start = now_ms();
    printf("tfdemo: tcpframe over loopback TCP\n");

    /* The server. */
    tf_evb *evb = NULL;
    tf_async_server *srv = NULL;
    tf_errmsg msg;
    char addr[TF_ADDRSTR_LEN];
    if (tf_evb_new(&evb) != TF_OK || tf_evb_start(evb) != TF_OK ||
        tf_async_server_new(evb, &srv) != TF_OK) {
        fprintf(stderr, "tfdemo: cannot start the event loop\n");
        return 1;
    }
    tf_async_server_on_accept(srv, on_accept, NULL);
    tf_async_server_on_reject(srv, on_reject, NULL);
    if (tf_async_server_init(srv, "127.0.0.1:0", NULL, &msg) != TF_OK ||
        tf_async_server_addr(srv, addr, sizeof addr) != TF_OK) {
        fprintf(stderr, "tfdemo: server: %s\n", msg.text);
        return 1;
    }
    printf("  server   async echo server (tf_async_server, message stream, one tf_evb loop "
           "thread)\n           listening on %s\n",
           addr);

    /* The sync client. */
    row rows[2 * NSIZES + 1];
    int nrows = 0;
    uint64_t seed = 0;
    double a = now_ms();
    tf_sync_conn *sc = NULL;
    int os = 0;
    if (tf_sync_connect(addr, NULL, &sc, &os, &msg) != TF_OK) {
        fail("sync client: %s", msg.text);
    } else {
        printf("  sync     tf_sync_connect: connected and handshaken in %.2f ms\n", now_ms() - a);
        for (int i = 0; i < NSIZES; i++) {
            row *r = &rows[nrows++];
            *r = (row){"sync", "1 by 1", sizes[i], rounds_for(sizes[i], rounds), NULL, 0};
            r->rtt = calloc((size_t)r->msgs, sizeof *r->rtt);
            sync_rounds(sc, r, &seed);
        }
        tf_sync_conn_free(sc);
    }

    /* The async client. */
    tf_async_client *cl = NULL;
    tf_future *cf = NULL;
    a = now_ms();
    if (tf_async_client_new(evb, NULL, &cl, &msg) != TF_OK ||
        tf_async_client_connect(cl, addr, &cf, &msg) != TF_OK) {
        fail("async client: %s", msg.text);
    } else {
        void *ac = NULL;
        tf_err e = wait_take(cf, NULL, &ac, &os);
        if (e != TF_OK) {
            fail("async client: connect %s: %s%s%s", addr, tf_strerror(e), os ? ": " : "",
                 os ? strerror(os) : "");
        } else {
            printf("  async    tf_async_client_connect: connected and handshaken in %.2f ms\n",
                   now_ms() - a);
            for (int i = 0; i < NSIZES; i++) {
                row *r = &rows[nrows++];
                *r = (row){"async", "1 by 1", sizes[i], rounds_for(sizes[i], rounds), NULL, 0};
                r->rtt = calloc((size_t)r->msgs, sizeof *r->rtt);
                async_rounds(ac, r, &seed);
            }
            row *r = &rows[nrows++];
            *r = (row){"async", "pipelined", 64 << 10, BURST, NULL, 0};
            async_burst(ac, r, 1000000);
            printf("           then a burst: %d messages of 64 KiB queued at once\n", BURST);
            /* Graceful close: flushed, FIN, the server sees CLOSED and frees its end. */
            tf_future *xf = NULL;
            if (tf_async_conn_close(ac, &xf) == TF_OK)
                wait_take(xf, NULL, NULL, NULL);
            tf_async_conn_free(ac);
        }
    }
    tf_async_client_free(cl);

    /* The bad client. */
    char what[256];
    bool rejected = bad_client(addr, what, sizeof what);
    printf("  bad      a raw client answers the magic with \"HTTP\":\n           %s\n", what);
    if (!rejected)
        fail("the client with the wrong magic was not rejected as expected");

    /* The TLS exchange. */
    tls_exchange(evb);

    /* The table. */
    printf("\n  %-6s %-10s %-9s %8s %11s %11s %12s\n", "client", "exchange", "size", "messages",
           "bytes", "median RTT", "throughput");
    long total_msgs = 0;
    double total_bytes = 0;
    for (int i = 0; i < nrows; i++) {
        print_row(&rows[i]);
        total_msgs += rows[i].msgs;
        total_bytes += (double)rows[i].size * (double)rows[i].msgs;
        free(rows[i].rtt);
    }
    char tb[32];
    fmt_bytes(tb, sizeof tb, total_bytes);
    printf("  bytes: payload sent, each echoed back; RTT: send + echo of one message;\n"
           "  throughput: payload / median RTT (1 by 1), payload / elapsed time (pipelined)\n\n");

    tf_async_server_shutdown(srv);
    tf_async_server_free(srv);
    tf_evb_free(evb);
    free(src);
    free(dst);
    unsigned long echoed = atomic_load(&st.echoed);
    printf("tfdemo: %ld messages (%s) came back byte-exact; the server echoed %lu and "
           "rejected %lu; %.1f s\n",
           total_msgs, tb, echoed, atomic_load(&st.rejected), (now_ms() - t_start) / 1e3);
    if (failures || echoed != (unsigned long)total_msgs) {
        printf("tfdemo: FAILED (%d problem%s above)\n", failures, failures == 1 ? "" : "s");
        return 1;
    }
    printf("tfdemo: OK\n");
    return 0;
}
