/* tools/tfcat.c -- netcat for framed messages (tfcat(1), tools/tfcat.1).
 *
 *   tfcat [options] -l ADDR     listen: print (or --echo) every message of every client
 *   tfcat [options] -l fd:N     ... on the listening socket inherited as fd N
 *   tfcat [options] -l systemd  ... on the socket systemd passed (socket activation)
 *   tfcat [options] ADDR        connect: send each line of stdin as one message
 *
 * Built on the public API only: the async server and client on one tf_evb loop by default (the
 * server on --threads N loops);
 * --sync uses the blocking server and connections (one thread per client). Messages to humans
 * go to stderr as one line each, "tfcat: ADDR: what: reason". Exit status: 0 success, 1 a
 * runtime failure, 2 a usage error.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tcpframe/async.h"
#include "tcpframe/sync.h"
#include "tcpframe/tls.h"
#include "tcpframe/version.h"

#define EXIT_RUNTIME 1
#define EXIT_USAGE 2
#define LINGER_MS 5000 /* how long a closing client waits for the peer's close */

typedef struct opts {
    bool listen, sync, echo, recv, raw, hex, nul, verbose, handshake;
    const char *addr, *data, *file;
    long long count;       /* messages; -1: no limit */
    long long interval_ms; /* pause between sends */
    uint32_t max_frame;
    long long timeout_ms; /* -1: not given */
    int family;
    int listen_fd;             /* -l fd:N or -l systemd: the inherited socket; else -1 */
    const char *device, *local; /* --device, --local */
    long long tos;             /* --tos; -1: not given */
    /* a public-facing listener's limits (listen only; 0: off) */
    long long mem_budget, idle_ms, progress_ms, max_conns;
    long long stats_s; /* --stats SECONDS: server counters as JSON on stderr; 0: off */
    long long threads; /* --threads: event loops of the async server */
    /* TLS (--tls-*): on when a certificate or a CA is given */
    const char *tls_cert, *tls_key, *tls_ca, *tls_name;
    bool tls_no_verify;
} opts;

static opts o = {.count = -1,
                 .timeout_ms = -1,
                 .handshake = true,
                 .max_frame = 64u << 20,
                 .listen_fd = -1,
                 .tos = -1,
                 .mem_budget = 1ll << 30,
                 .idle_ms = 300000,
                 .progress_ms = 60000,
                 .max_conns = 4096,
                 .threads = 1};

/* One line at a time on stderr, and nothing before "listening on" (main holds the lock until it
 * has printed that line). */
static pthread_mutex_t err_mu = PTHREAD_MUTEX_INITIALIZER;
/* Whole messages on stdout, whatever thread prints them (sync server). */
static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;

__attribute__((format(printf, 1, 0))) static void say_locked(const char *fmt, va_list ap)
{
    fputs("tfcat: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    fflush(stderr);
}

__attribute__((format(printf, 1, 2))) static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&err_mu);
    say_locked(fmt, ap);
    pthread_mutex_unlock(&err_mu);
    va_end(ap);
}

__attribute__((format(printf, 1, 2), noreturn)) static void usage_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    say_locked(fmt, ap);
    va_end(ap);
    fputs("Try 'tfcat --help' for more information.\n", stderr);
    exit(EXIT_USAGE);
}

/* ---------------------------------------------------------------- reasons in words */

/* The OS error text with a lower-case first letter ("connection refused"), in |buf|. */
static const char *os_words(int os, char *buf, size_t len)
{
    char tmp[128];
    const char *s = strerror_r(os, tmp, sizeof tmp);
    snprintf(buf, len, "%s", s);
    if (buf[0] && isupper((unsigned char)buf[0]) && !(buf[1] && isupper((unsigned char)buf[1])))
        buf[0] = (char)tolower((unsigned char)buf[0]);
    return buf;
}

/* Why an operation failed, in words: the OS error for IO, else the library's text. */
static const char *reason(tf_err e, int os, char *buf, size_t len)
{
    switch (e) {
    case TF_ERR_IO:
        if (os)
            return os_words(os, buf, len);
        break;
    case TF_ERR_TIMEOUT:
        return "timed out";
    case TF_ERR_BAD_MAGIC:
        return "wrong magic: the peer is not a tcpframe/uniflow endpoint";
    case TF_ERR_TOO_LARGE:
        snprintf(buf, len, "message length exceeds the maximum (%" PRIu32 " bytes)", o.max_frame);
        return buf;
    case TF_ERR_TRUNCATED:
        return "peer closed the connection in the middle of a message";
    case TF_ERR_TLS:
        snprintf(buf, len, "TLS: %s", tf_tls_strerror(e, os));
        return buf;
    case TF_ERR_TLS_VERIFY:
        snprintf(buf, len, "certificate verification failed: %s", tf_tls_strerror(e, os));
        return buf;
    default:
        break;
    }
    return tf_strerror(e);
}

/* ---------------------------------------------------------------- output */

static void out_failed(void)
{
    if (errno == EPIPE)
        _exit(0); /* the reader went away (tfcat ... | head): nothing left to do */
    char b[128];
    say("stdout: %s", os_words(errno, b, sizeof b));
    _exit(EXIT_RUNTIME);
}

/* Write one message to stdout as the options say (line, hex line or wire frame), flushed. */
static void emit(const uint8_t *p, size_t len)
{
    pthread_mutex_lock(&out_mu);
    bool ok = true;
    if (o.raw) {
        uint8_t pre[4] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
                          (uint8_t)len};
        ok = fwrite(pre, 1, 4, stdout) == 4 && (!len || fwrite(p, 1, len, stdout) == len);
    } else if (o.hex) {
        static const char hx[] = "0123456789abcdef";
        char chunk[512];
        size_t n = 0;
        for (size_t i = 0; ok && i < len; i++) {
            chunk[n++] = hx[p[i] >> 4];
            chunk[n++] = hx[p[i] & 15];
            if (n == sizeof chunk) {
                ok = fwrite(chunk, 1, n, stdout) == n;
                n = 0;
            }
        }
        ok = ok && (!n || fwrite(chunk, 1, n, stdout) == n) && fputc('\n', stdout) != EOF;
    } else {
        ok = (!len || fwrite(p, 1, len, stdout) == len) && fputc('\n', stdout) != EOF;
    }
    ok = ok && fflush(stdout) == 0;
    if (!ok)
        out_failed();
    pthread_mutex_unlock(&out_mu);
}

/* ---------------------------------------------------------------- input */

/* The next message to send: 1 (owned *buf, may be NULL for an empty one), 0 at the end, or -1
 * after saying why the input is bad. */
static int next_message(FILE *in, uint8_t **buf, size_t *len)
{
    *buf = NULL;
    *len = 0;
    if (o.raw) {
        uint8_t pre[4];
        size_t got = fread(pre, 1, 4, in);
        if (got == 0 && feof(in))
            return 0;
        if (got != 4) {
            say("stdin: %s", ferror(in) ? strerror(errno) : "input ends inside a length prefix");
            return -1;
        }
        uint32_t n = (uint32_t)pre[0] << 24 | (uint32_t)pre[1] << 16 | (uint32_t)pre[2] << 8 |
                     (uint32_t)pre[3];
        if (n > o.max_frame) {
            say("stdin: frame of %" PRIu32 " bytes exceeds the maximum (%" PRIu32 " bytes)", n,
                o.max_frame);
            return -1;
        }
        if (n == 0)
            return 1;
        uint8_t *p = malloc(n);
        if (!p) {
            say("stdin: out of memory for a %" PRIu32 "-byte frame", n);
            return -1;
        }
        if (fread(p, 1, n, in) != n) {
            free(p);
            say("stdin: input ends inside a %" PRIu32 "-byte frame", n);
            return -1;
        }
        *buf = p;
        *len = n;
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getdelim(&line, &cap, o.nul ? '\0' : '\n', in);
    if (n < 0) {
        free(line);
        if (ferror(in)) {
            say("stdin: %s", strerror(errno));
            return -1;
        }
        return 0;
    }
    size_t l = (size_t)n;
    if (l && line[l - 1] == (o.nul ? '\0' : '\n'))
        l--;
    if (l > o.max_frame) {
        free(line);
        say("stdin: message of %zu bytes exceeds the maximum (%" PRIu32 " bytes)", l, o.max_frame);
        return -1;
    }
    *buf = (uint8_t *)line;
    *len = l;
    return 1;
}

/* The whole of --file PATH as one message. */
static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        say("%s: %s", path, strerror(errno));
        exit(EXIT_RUNTIME);
    }
    size_t cap = 4096, n = 0;
    uint8_t *p = malloc(cap);
    for (;;) {
        if (!p) {
            say("%s: out of memory", path);
            exit(EXIT_RUNTIME);
        }
        n += fread(p + n, 1, cap - n, f);
        if (n < cap)
            break;
        if (cap > o.max_frame)
            break;
        cap *= 2;
        uint8_t *q = realloc(p, cap);
        if (!q)
            free(p);
        p = q;
    }
    if (ferror(f)) {
        say("%s: %s", path, strerror(errno));
        exit(EXIT_RUNTIME);
    }
    fclose(f);
    if (n > o.max_frame) {
        say("%s: file of %zu bytes or more exceeds the maximum (%" PRIu32 " bytes)", path, n,
            o.max_frame);
        exit(EXIT_RUNTIME);
    }
    *len = n;
    return p;
}

/* ---------------------------------------------------------------- configuration */

/* The TLS context of --tls-* (NULL: plain TCP): made once, kept until the process exits. */
static tf_tls_ctx *volatile tls_ctx; /* volatile: the store stays (a root for LSan) */

static void make_config(tf_tcp_config *cfg)
{
    tf_tcp_config_init(cfg);
    cfg->connect_retries = 0; /* a refused connect is reported at once, like nc */
    cfg->handshake = o.handshake ? 1 : 0;
    cfg->max_recv_len = o.max_frame;
    cfg->max_send_len = o.max_frame;
    if (o.timeout_ms >= 0) {
        cfg->connect_timeout_ms = o.timeout_ms;
        cfg->handshake_timeout_ms = o.timeout_ms;
    }
    if (o.tos >= 0)
        cfg->ip_tos = o.tos;
    if (o.listen) {
        cfg->recv_mem_budget = o.mem_budget > 0 ? o.mem_budget : TF_UNSET;
        cfg->idle_timeout_ms = o.idle_ms > 0 ? o.idle_ms : TF_UNSET;
        cfg->progress_timeout_ms = o.progress_ms > 0 ? o.progress_ms : TF_UNSET;
        cfg->max_conns = o.max_conns > 0 ? o.max_conns : TF_UNSET;
    }
    if (o.device && strlen(o.device) >= sizeof cfg->bind_device)
        usage_fail("--device \"%s\": an interface name is at most %zu characters", o.device,
                   sizeof cfg->bind_device - 1);
    if (o.device)
        snprintf(cfg->bind_device, sizeof cfg->bind_device, "%s", o.device);
    if (o.local && strlen(o.local) >= sizeof cfg->local_addr)
        usage_fail("--local \"%s\": too long", o.local);
    if (o.local)
        snprintf(cfg->local_addr, sizeof cfg->local_addr, "%s", o.local);
    tf_errmsg msg;
    if (tf_tcp_config_validate(cfg, &msg) != TF_OK)
        usage_fail("%s", msg.text);
    if (!o.tls_cert && !o.tls_key && !o.tls_ca && !o.tls_name && !o.tls_no_verify)
        return; /* plain TCP */
    tf_tls_config t;
    tf_tls_config_init(&t);
    t.cert_file = o.tls_cert;
    t.key_file = o.tls_key;
    t.ca_file = o.tls_ca;
    t.verify_peer = o.tls_no_verify ? 0 : 1;
    t.peer_name = o.tls_name;
    tf_tls_ctx *k = NULL;
    tf_err e = tf_tls_ctx_new(&t, &k, &msg);
    if (e == TF_ERR_INVALID_ARGUMENT)
        usage_fail("--%s", msg.text); /* "tls: ..." names the field */
    if (e != TF_OK) {
        say("%s", msg.text[0] ? msg.text : tf_strerror(e));
        exit(EXIT_RUNTIME);
    }
    tls_ctx = k;
    cfg->tls = k;
}

/* Check |text| (exit 2 with the library's sentence if it is bad) and, with -4/-6, replace it by
 * the first address of that family in |buf|. */
static const char *check_address(const char *text, bool passive, char *buf, size_t len)
{
    tf_addrlist l;
    tf_errmsg msg;
    tf_err e = tf_addr_resolve(text, o.family, passive, &l, &msg);
    if (e != TF_OK)
        usage_fail("%s", msg.text);
    if (o.family == TF_FAMILY_ANY)
        return text;
    if (tf_addr_format(&l.a[0], buf, len) != TF_OK)
        usage_fail("bad address \"%s\"", text);
    return buf;
}

/* ---------------------------------------------------------------- listen: shared */

static pthread_t main_thread;
static pthread_mutex_t count_mu = PTHREAD_MUTEX_INITIALIZER;
static long long counted;
static bool count_reached;

/* Take one more message: false if --count messages were taken already. *last is set for the
 * one that reaches the count: its handler calls count_finish() once it is done with it. */
static bool count_take(bool *last)
{
    *last = false;
    if (o.count < 0)
        return true;
    pthread_mutex_lock(&count_mu);
    bool ok = !count_reached;
    if (ok && ++counted >= o.count)
        count_reached = *last = true;
    pthread_mutex_unlock(&count_mu);
    return ok;
}

/* The last message is handled (printed, or its echo sent): wake the main thread to exit. */
static void count_finish(bool last)
{
    if (last)
        pthread_kill(main_thread, SIGUSR1);
}

/* ---------------------------------------------------------------- dropped clients */

/* One stderr line per dropped client, but at most DROP_LINES in a second (an RST storm drops
 * thousands a second): the drops past that are counted by reason and summed up in one line at
 * the end of the second (seen by the next drop or by the main thread's once-a-second tick)
 * and at exit: "tfcat: 8190 more clients dropped (8000 dropped: connection reset by peer,
 * 190 handshake: timed out (dropped))". */
#define DROP_LINES 10
#define DROP_REASONS 4 /* reasons named in a summary; the rest are "other" */
#define NS_PER_S 1000000000ull

static struct {
    pthread_mutex_t mu;
    uint64_t window;  /* start of the current second (ns), 0 before the first drop */
    int lines;        /* lines printed in it */
    long long more;   /* drops not printed since the last summary */
    struct {
        char text[96];
        long long n;
    } why[DROP_REASONS];
    long long other;
} drops = {.mu = PTHREAD_MUTEX_INITIALIZER};

static uint64_t mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * NS_PER_S + (uint64_t)t.tv_nsec;
}

/* Print the summary of the drops not printed (under drops.mu), and start counting afresh. */
static void drops_summary(void)
{
    if (drops.more == 0)
        return;
    char list[512] = "";
    size_t n = 0;
    for (int i = 0; i < DROP_REASONS && drops.why[i].n > 0 && n < sizeof list; i++)
        n += (size_t)snprintf(list + n, sizeof list - n, "%s%lld %s", i ? ", " : "",
                              drops.why[i].n, drops.why[i].text);
    if (drops.other > 0 && n < sizeof list)
        snprintf(list + n, sizeof list - n, ", %lld other", drops.other);
    say("%lld more client%s dropped (%s)", drops.more, drops.more == 1 ? "" : "s", list);
    drops.more = drops.other = 0;
    memset(drops.why, 0, sizeof drops.why);
}

/* The main thread's tick (and exit): a summary that is due is printed now, not at the next
 * drop, which may never come. */
static void drops_tick(bool final)
{
    pthread_mutex_lock(&drops.mu);
    uint64_t now = mono_ns();
    if (final || (drops.more > 0 && now - drops.window >= NS_PER_S)) {
        drops_summary();
        drops.window = now;
        drops.lines = 0;
    }
    pthread_mutex_unlock(&drops.mu);
}

/* A client was dropped: "PEER: WHAT" on stderr, or counted under |what| if this second's lines
 * are used up. */
static void dropped(const char *peer, const char *what)
{
    pthread_mutex_lock(&drops.mu);
    uint64_t now = mono_ns();
    if (now - drops.window >= NS_PER_S) {
        drops_summary();
        drops.window = now;
        drops.lines = 0;
    }
    if (drops.lines < DROP_LINES) {
        drops.lines++;
        say("%s: %s", peer, what); /* under drops.mu: a summary never overtakes its lines */
        pthread_mutex_unlock(&drops.mu);
        return;
    }
    drops.more++;
    int i = 0;
    while (i < DROP_REASONS && drops.why[i].n > 0 && strcmp(drops.why[i].text, what) != 0)
        i++;
    if (i == DROP_REASONS) {
        drops.other++;
    } else {
        if (drops.why[i].n == 0)
            snprintf(drops.why[i].text, sizeof drops.why[i].text, "%s", what);
        drops.why[i].n++;
    }
    pthread_mutex_unlock(&drops.mu);
}

/* A client left: quietly (-v) if it closed between messages, else a drop line saying why. */
static void client_gone(const char *peer, tf_err e, int os, long long msgs)
{
    char b[160], what[200];
    if (e == TF_ERR_CLOSED) {
        if (o.verbose)
            say("%s: closed after %lld message%s", peer, msgs, msgs == 1 ? "" : "s");
    } else if (e != TF_ERR_SHUTDOWN && e != TF_ERR_CANCELLED) {
        snprintf(what, sizeof what, "dropped: %s", reason(e, os, b, sizeof b));
        dropped(peer, what);
    }
}

static void rejected(const char *peer, tf_err e, int os)
{
    char b[160], what[200];
    const char *r = e == TF_ERR_CLOSED || e == TF_ERR_TRUNCATED
                        ? "the peer closed the connection before its magic was complete"
                        : reason(e, os, b, sizeof b);
    snprintf(what, sizeof what, "handshake: %s (dropped)", r);
    dropped(peer, what);
}

/* -v: one line of a client's statistics when it ends (SPEC 9.10), |end| the reason it ended. */
static void stats_line(const char *peer, const tf_conn_stats *st, tf_err end)
{
    say("%s: stats msgs_recv=%" PRIu64 " bytes_recv=%" PRIu64 " msgs_sent=%" PRIu64
        " bytes_sent=%" PRIu64 " queued=%" PRIu64 " queued_bytes=%" PRIu64 " pauses=%" PRIu64
        " paused_ms=%" PRIu64 " end=%s",
        peer, st->msgs_recv, st->bytes_recv, st->msgs_sent, st->bytes_sent, st->queued_msgs,
        st->queued_bytes, st->pauses, st->paused_ns / 1000000u, tf_err_name(end));
}

/* --stats: the server whose counters are printed (one of the two). */
static tf_async_server *stats_asrv;
static tf_sync_server *stats_ssrv;

/* One JSON line of the server's counters on stderr (--stats). */
static void stats_json(void)
{
    tf_server_stats st = {.size = sizeof st};
    tf_err e = stats_asrv ? tf_async_server_stats(stats_asrv, &st)
                          : tf_sync_server_stats(stats_ssrv, &st);
    if (e != TF_OK)
        return;
    pthread_mutex_lock(&err_mu);
    fprintf(stderr,
            "{\"accepted\":%" PRIu64 ",\"rejected\":%" PRIu64 ",\"rej_bad_magic\":%" PRIu64
            ",\"rej_timeout\":%" PRIu64 ",\"rej_closed\":%" PRIu64 ",\"rej_busy\":%" PRIu64
            ",\"rej_io\":%" PRIu64 ",\"rej_other\":%" PRIu64 ",\"active\":%" PRIu64
            ",\"handshaking\":%" PRIu64 ",\"accept_rests\":%" PRIu64 "}\n",
            st.accepted, st.rejected, st.rej_bad_magic, st.rej_timeout, st.rej_closed,
            st.rej_busy, st.rej_io, st.rej_other, st.active, st.handshaking, st.accept_rests);
    fflush(stderr);
    pthread_mutex_unlock(&err_mu);
}

/* ---------------------------------------------------------------- listen: async */

/* An echo waiting for room in the send queue. */
typedef struct held {
    struct held *next;
    uint8_t *p;
    size_t len;
    bool last; /* the --count-th message */
} held;

struct lane;

/* One client of the async server. Everything here lives on its connection's loop thread. */
typedef struct aclient {
    struct lane *ln;             /* its loop's */
    struct aclient *prev, *next; /* every live client of the loop, for the teardown */
    tf_async_conn *c;
    char peer[TF_ADDRSTR_LEN];
    long long msgs;
    held *head, *tail; /* echoes refused with BUSY, in order; the stream is paused meanwhile */
    bool closing;      /* freed by the teardown: ignore the stream's end call */
    bool eof;          /* the client half-closed: close once every echo is queued */
    long long pauses;  /* times reading paused for a full send queue (-v) */
} aclient;

/* One event loop of the async server (--threads N: N of them, each on its own thread; the
 * server spreads the clients over them) and its clients, touched on that loop's thread only. */
typedef struct lane {
    tf_evb *evb;
    aclient *clients;
} lane;

static lane *lanes;
static long long nlanes;

/* Forget the client and free its connection (also from the connection's own callbacks). */
static void client_free(aclient *a)
{
    if (a->prev)
        a->prev->next = a->next;
    else
        a->ln->clients = a->next;
    if (a->next)
        a->next->prev = a->prev;
    a->closing = true;
    tf_async_conn_free(a->c);
    while (a->head) {
        held *h = a->head;
        a->head = h->next;
        count_finish(h->last);
        free(h->p);
        free(h);
    }
    free(a);
}

static void echo_sent(tf_future *f, void *arg)
{
    bool last = arg != NULL;
    tf_future_free(f);
    count_finish(last);
}

/* Queue the echo of |p| (owned: passed on or freed). TF_OK, TF_ERR_BUSY (p not consumed), or
 * the reason the connection cannot send. */
static tf_err echo_send(aclient *a, uint8_t *p, size_t len, bool last)
{
    tf_future *f = NULL;
    tf_err e = tf_async_conn_send_owned(a->c, p, len, free, -1, &f);
    if (e == TF_OK)
        tf_future_then(f, echo_sent, last ? f : NULL);
    return e;
}

static void on_msg(tf_async_conn *c, tf_err err, int os_err, const uint8_t *data, size_t len,
                   void *arg);

/* The client sent everything (its clean EOF) and every echo is queued: flush them and close.
 * The end notification (on_conn_end) frees the client when the close is over. */
static void begin_close(aclient *a)
{
    tf_future *f = NULL;
    tf_err e = tf_async_conn_close(a->c, &f);
    tf_future_free(f);
    if (e != TF_OK && e != TF_ERR_BAD_STATE) {
        client_gone(a->peer, e, 0, a->msgs);
        client_free(a);
    }
}

/* The connection is over (closed, failed, reset, timed out: never after our own free). Every
 * client ends here, also one whose stream is paused and that waits for nothing but the
 * writable callback. */
static void on_conn_end(tf_async_conn *c, tf_err err, int os_err, void *arg)
{
    (void)c;
    aclient *a = arg;
    if (o.verbose && a->pauses)
        say("%s: reading paused %lld time%s (it read its echoes slower than it sent)", a->peer,
            a->pauses, a->pauses == 1 ? "" : "s");
    client_gone(a->peer, err, os_err, a->msgs);
    client_free(a);
}

/* The send queue drained after a BUSY: send the held echoes, then read again. */
static void on_drained(tf_async_conn *c, void *arg)
{
    aclient *a = arg;
    while (a->head) {
        held *h = a->head;
        tf_err e = echo_send(a, h->p, h->len, h->last);
        if (e == TF_ERR_BUSY)
            return; /* wait for the next drain */
        a->head = h->next;
        if (e != TF_OK) {
            client_gone(a->peer, e, 0, a->msgs);
            free(h->p);
            count_finish(h->last);
            free(h);
            client_free(a);
            return;
        }
        free(h);
    }
    a->tail = NULL;
    tf_async_conn_on_writable(c, NULL, NULL);
    if (a->eof) {
        begin_close(a);
        return;
    }
    tf_err e = tf_async_conn_stream(c, on_msg, a);
    if (e == TF_ERR_CLOSED) {
        a->eof = true; /* the half-close came while we were paused */
        begin_close(a);
    }
    /* any other refusal: the connection failed, and on_conn_end frees the client */
}

static void on_msg(tf_async_conn *c, tf_err err, int os_err, const uint8_t *data, size_t len,
                   void *arg)
{
    aclient *a = arg;
    (void)os_err;
    if (err != TF_OK) {
        /* CLOSED: the client half-closed; its echoes still go out (held ones after the drain),
         * then we close. Anything else failed the connection: on_conn_end follows. */
        if (err == TF_ERR_CLOSED && !a->closing) {
            a->eof = true;
            if (!a->head)
                begin_close(a);
        }
        return;
    }
    a->msgs++;
    bool last;
    if (!count_take(&last))
        return; /* past --count: we are about to exit */
    if (!o.echo) {
        emit(data, len);
        count_finish(last);
        return;
    }
    /* The view is valid only during this call: the echo gets its own copy. */
    uint8_t *copy = malloc(len ? len : 1);
    held *h = malloc(sizeof *h);
    if (!copy || !h) {
        say("%s: dropped: out of memory for a %zu-byte echo", a->peer, len);
        free(copy);
        free(h);
        count_finish(last);
        client_free(a);
        return;
    }
    if (len)
        memcpy(copy, data, len);
    tf_err e = a->head ? TF_ERR_BUSY : echo_send(a, copy, len, last);
    if (e == TF_OK) {
        free(h);
        return;
    }
    if (e != TF_ERR_BUSY) {
        client_gone(a->peer, e, 0, a->msgs);
        free(copy);
        free(h);
        count_finish(last);
        client_free(a);
        return;
    }
    /* The peer reads its echoes slower than it sends: hold this one and stop reading until
     * the send queue drains (messages already read ahead may still arrive: held too). */
    *h = (held){NULL, copy, len, last};
    if (a->tail)
        a->tail->next = h;
    else
        a->head = h;
    a->tail = h;
    if (a->head == h) {
        a->pauses++;
        tf_async_conn_stream(c, NULL, NULL);
        tf_async_conn_on_writable(c, on_drained, a);
    }
}

/* On the connection's loop thread. */
static void on_accept(tf_async_server *s, tf_async_conn *c, void *arg)
{
    (void)s;
    (void)arg;
    lane *ln = NULL;
    for (long long i = 0; i < nlanes && !ln; i++)
        if (lanes[i].evb == tf_async_conn_evb(c))
            ln = &lanes[i];
    aclient *a = ln ? calloc(1, sizeof *a) : NULL;
    if (!a) {
        tf_async_conn_free(c);
        return;
    }
    a->ln = ln;
    a->c = c;
    a->next = ln->clients;
    if (ln->clients)
        ln->clients->prev = a;
    ln->clients = a;
    if (tf_async_conn_peer(c, a->peer, sizeof a->peer) != TF_OK)
        snprintf(a->peer, sizeof a->peer, "?");
    if (o.verbose && nlanes > 1)
        say("%s: accepted on loop %lld", a->peer, (long long)(ln - lanes) + 1);
    else if (o.verbose)
        say("%s: accepted", a->peer);
    tf_err e = tf_async_conn_on_end(c, on_conn_end, a);
    if (e == TF_OK)
        e = tf_async_conn_stream(c, on_msg, a);
    if (e != TF_OK) {
        client_gone(a->peer, e, 0, 0);
        client_free(a);
    }
}

/* The teardown, on a loop's thread: free every client of it still connected. */
static void free_clients(void *arg)
{
    lane *ln = arg;
    while (ln->clients)
        client_free(ln->clients);
}

/* Stop and free the loops (and the lanes). */
static void lanes_free(void)
{
    for (long long i = 0; i < nlanes; i++) {
        if (lanes[i].evb) {
            tf_evb_stop(lanes[i].evb);
            tf_evb_free(lanes[i].evb);
        }
    }
    free(lanes);
    lanes = NULL;
    nlanes = 0;
}

/* -v: a client's statistics when it ends (the CLOSED event comes before on_conn_end). */
static void on_event(tf_async_conn *c, tf_conn_event ev, tf_err err, int os_err, void *arg)
{
    (void)os_err;
    (void)arg;
    if (ev != TF_CONN_CLOSED)
        return;
    char peer[TF_ADDRSTR_LEN];
    if (tf_async_conn_peer(c, peer, sizeof peer) != TF_OK)
        snprintf(peer, sizeof peer, "?");
    tf_conn_stats st = {.size = sizeof st};
    if (tf_async_conn_stats(c, &st) == TF_OK)
        stats_line(peer, &st, err);
}

static void on_reject(tf_async_server *s, const char *peer, tf_err err, int os_err, void *arg)
{
    (void)s;
    (void)arg;
    rejected(peer, err, os_err);
}

/* Wait for SIGINT, SIGTERM (exit 0) or SIGUSR1 (--count reached). */
static void wait_for_end(const sigset_t *set)
{
    int sig = -1;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    long long next = o.stats_s; /* seconds from t0 of the next --stats line */
    while (sig < 0) { /* a tick a second: a due summary of dropped clients is printed */
        struct timespec one = {.tv_sec = 1, .tv_nsec = 0};
        sig = sigtimedwait(set, NULL, &one);
        if (sig < 0)
            drops_tick(false);
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (o.stats_s > 0 && sig < 0 && now.tv_sec - t0.tv_sec >= next) {
            stats_json();
            next = (now.tv_sec - t0.tv_sec) + o.stats_s;
        }
    }
    drops_tick(true);
    if (o.stats_s > 0)
        stats_json(); /* the last counters, at exit */
    if (o.verbose)
        say("%s", sig == SIGUSR1 ? "count reached, exiting" : "signal received, exiting");
}

static int listen_async(const char *addr, const tf_tcp_config *cfg, const sigset_t *set)
{
    tf_async_server *srv = NULL;
    tf_errmsg msg;
    lanes = calloc((size_t)o.threads, sizeof *lanes);
    bool ok = lanes != NULL;
    for (long long i = 0; ok && i < o.threads; i++) {
        nlanes = i + 1;
        ok = tf_evb_new(&lanes[i].evb) == TF_OK && tf_evb_start(lanes[i].evb) == TF_OK;
    }
    ok = ok && tf_async_server_new(lanes[0].evb, &srv) == TF_OK;
    for (long long i = 1; ok && i < nlanes; i++)
        ok = tf_async_server_add_loop(srv, lanes[i].evb) == TF_OK;
    if (!ok) {
        say("%s: cannot start the event loops: %s", addr, strerror(errno));
        pthread_mutex_unlock(&err_mu);
        tf_async_server_free(srv);
        lanes_free();
        return EXIT_RUNTIME;
    }
    tf_async_server_on_accept(srv, on_accept, NULL);
    tf_async_server_on_reject(srv, on_reject, NULL);
    if (o.verbose)
        tf_async_server_on_event(srv, on_event, NULL);
    stats_asrv = srv;
    tf_err e = o.listen_fd >= 0 ? tf_async_server_init_fd(srv, o.listen_fd, cfg, &msg)
                                : tf_async_server_init(srv, addr, cfg, &msg);
    char bound[TF_ADDRSTR_LEN];
    if (e == TF_OK)
        e = tf_async_server_addr(srv, bound, sizeof bound);
    if (e != TF_OK) {
        fprintf(stderr, "tfcat: %s\n", msg.text[0] ? msg.text : tf_strerror(e));
        pthread_mutex_unlock(&err_mu);
        tf_async_server_free(srv);
        lanes_free();
        return e == TF_ERR_BAD_ADDRESS || e == TF_ERR_INVALID_ARGUMENT ? EXIT_USAGE : EXIT_RUNTIME;
    }
    fprintf(stderr, "listening on %s\n", bound);
    fflush(stderr);
    pthread_mutex_unlock(&err_mu);

    wait_for_end(set);
    /* Stop accepting, free every client on its loop, then stop the loops. */
    tf_async_server_shutdown(srv);
    for (long long i = 0; i < nlanes; i++)
        tf_evb_dispatch_and_wait(lanes[i].evb, free_clients, &lanes[i]);
    for (long long i = 0; i < nlanes; i++)
        tf_evb_stop(lanes[i].evb);
    tf_async_server_free(srv);
    lanes_free();
    pthread_mutex_lock(&out_mu);
    fflush(stdout);
    pthread_mutex_unlock(&out_mu);
    return 0;
}

/* ---------------------------------------------------------------- listen: sync */

static void *serve_sync(void *arg)
{
    tf_sync_conn *c = arg;
    char peer[TF_ADDRSTR_LEN];
    if (tf_sync_conn_peer(c, peer, sizeof peer) != TF_OK)
        snprintf(peer, sizeof peer, "?");
    if (o.verbose)
        say("%s: accepted", peer);
    long long msgs = 0;
    tf_err e;
    for (;;) {
        void *m = NULL;
        size_t n = 0;
        e = tf_sync_conn_recv_alloc(c, &m, &n, -1);
        if (e != TF_OK)
            break;
        msgs++;
        bool last;
        if (!count_take(&last)) {
            free(m); /* past --count: we are about to exit */
            continue;
        }
        if (o.echo)
            e = tf_sync_conn_send(c, m, n, -1);
        else
            emit(m, n);
        free(m);
        count_finish(last);
        if (e != TF_OK)
            break;
    }
    int os = 0;
    tf_err pe = tf_sync_conn_error(c, &os);
    tf_conn_stats st = {.size = sizeof st};
    if (o.verbose && tf_sync_conn_stats(c, &st) == TF_OK)
        stats_line(peer, &st, pe != TF_OK ? pe : e);
    client_gone(peer, pe != TF_OK ? pe : e, os, msgs);
    tf_sync_conn_free(c);
    return NULL;
}

typedef struct sync_srv {
    tf_sync_server *srv;
} sync_srv;

static void sync_reject(void *arg, const char *peer, tf_err err, int os_err)
{
    (void)arg;
    rejected(peer, err, os_err);
}

/* The stack of a --sync client's thread: serve_sync needs a few KiB (the library's blocking
 * calls, printf); 256 KiB leaves ample room, also under ASan, where the default 8 MiB per
 * client bound 8 MiB of address space per connection (issue 25). */
#define CLIENT_STACK (256u * 1024u)

static void *accept_loop(void *arg)
{
    sync_srv *s = arg;
    for (;;) {
        tf_sync_conn *c = NULL;
        int os = 0;
        tf_errmsg msg;
        tf_err e = tf_sync_server_accept(s->srv, &c, &os, &msg);
        if (e == TF_ERR_SHUTDOWN)
            return NULL;
        if (e != TF_OK) {
            say("%s", msg.text[0] ? msg.text : tf_strerror(e));
            continue; /* the server goes on; accept backs off by itself on fd exhaustion */
        }
        pthread_t t;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&at, CLIENT_STACK); /* not the 8 MiB default per client */
        if (pthread_create(&t, &at, serve_sync, c) != 0) {
            say("cannot start a thread for a client: %s", strerror(errno));
            tf_sync_conn_free(c);
        }
        pthread_attr_destroy(&at);
    }
}

static int listen_sync(const char *addr, const tf_tcp_config *cfg, const sigset_t *set)
{
    sync_srv s = {NULL};
    tf_errmsg msg;
    if (tf_sync_server_new(&s.srv) != TF_OK) {
        say("out of memory");
        pthread_mutex_unlock(&err_mu);
        return EXIT_RUNTIME;
    }
    tf_sync_server_on_reject(s.srv, sync_reject, NULL);
    stats_ssrv = s.srv;
    tf_err e = o.listen_fd >= 0 ? tf_sync_server_init_fd(s.srv, o.listen_fd, cfg, &msg)
                                : tf_sync_server_init(s.srv, addr, cfg, &msg);
    char bound[TF_ADDRSTR_LEN];
    if (e == TF_OK)
        e = tf_sync_server_addr(s.srv, bound, sizeof bound);
    if (e != TF_OK) {
        fprintf(stderr, "tfcat: %s\n", msg.text[0] ? msg.text : tf_strerror(e));
        pthread_mutex_unlock(&err_mu);
        tf_sync_server_free(s.srv);
        return e == TF_ERR_BAD_ADDRESS || e == TF_ERR_INVALID_ARGUMENT ? EXIT_USAGE : EXIT_RUNTIME;
    }
    fprintf(stderr, "listening on %s\n", bound);
    fflush(stderr);
    pthread_mutex_unlock(&err_mu);
    pthread_t acc;
    if (pthread_create(&acc, NULL, accept_loop, &s) != 0) {
        say("cannot start the accept thread: %s", strerror(errno));
        return EXIT_RUNTIME;
    }
    wait_for_end(set);
    tf_sync_server_shutdown(s.srv);
    pthread_join(acc, NULL);
    tf_sync_server_free(s.srv);
    /* Client threads may still block in a receive: leave with the output complete. The lock
     * keeps any of them from printing half a message meanwhile. */
    pthread_mutex_lock(&out_mu);
    fflush(stdout);
    _exit(0);
}

/* ---------------------------------------------------------------- connect */

typedef struct session {
    const char *addr; /* as the user wrote it, for messages */
    tf_sync_conn *s;
    tf_evb *evb;
    tf_async_client *cl;
    tf_async_conn *a;
    tf_future *last_send; /* async: the newest send's future */
    long long sent, received;
    bool reader; /* sync without --recv: a thread discards what the peer sends */
    pthread_t reader_thread;
} session;

/* Without --recv nobody waits for replies, yet a peer may send some (an echo server): they are
 * read and dropped as they come, so the peer never stalls on a full socket. */
static void discard_msg(tf_async_conn *c, tf_err err, int os_err, const uint8_t *data, size_t len,
                        void *arg)
{
    (void)c, (void)err, (void)os_err, (void)data, (void)len, (void)arg;
}

static void *discard_sync(void *arg)
{
    tf_sync_conn *c = arg;
    void *m;
    size_t n;
    while (tf_sync_conn_recv_alloc(c, &m, &n, -1) == TF_OK) /* until the peer closes or fails */
        free(m);
    return NULL;
}

static int fail_at(const session *l, const char *what, tf_err e, int os)
{
    char b[160];
    say("%s: %s: %s", l->addr, what, reason(e, os, b, sizeof b));
    return EXIT_RUNTIME;
}

static int link_connect(session *l, const char *addr, const tf_tcp_config *cfg)
{
    tf_errmsg msg;
    tf_err e;
    int os = 0;
    const char *stage = "connect";
    if (o.sync) {
        e = tf_sync_connect(addr, cfg, &l->s, &os, &msg);
        if (e != TF_OK && strncmp(msg.text, "handshake", 9) == 0)
            stage = "handshake";
    } else {
        tf_future *f = NULL;
        if ((e = tf_evb_new(&l->evb)) != TF_OK || (e = tf_evb_start(l->evb)) != TF_OK ||
            (e = tf_async_client_new(l->evb, cfg, &l->cl, &msg)) != TF_OK) {
            say("%s: cannot start the event loop: %s", l->addr, tf_strerror(e));
            return EXIT_RUNTIME;
        }
        e = tf_async_client_connect(l->cl, addr, &f, &msg);
        if (e == TF_OK) {
            void *c = NULL;
            tf_future_wait(f);
            e = tf_future_get(f, NULL, &c);
            os = tf_future_os_err(f);
            tf_future_free(f);
            l->a = c;
        }
        if (e == TF_ERR_BAD_MAGIC || e == TF_ERR_CLOSED || e == TF_ERR_TRUNCATED ||
            e == TF_ERR_TLS || e == TF_ERR_TLS_VERIFY)
            stage = "handshake";
    }
    if (e == TF_OK && !o.recv) {
        if (l->a)
            e = tf_async_conn_stream(l->a, discard_msg, NULL);
        else
            l->reader = pthread_create(&l->reader_thread, NULL, discard_sync, l->s) == 0;
        if (e != TF_OK)
            return fail_at(l, "receive", e, 0);
    }
    if (e == TF_OK) {
        if (o.verbose) {
            char peer[TF_ADDRSTR_LEN] = "?";
            if (l->s)
                tf_sync_conn_peer(l->s, peer, sizeof peer);
            else
                tf_async_conn_peer(l->a, peer, sizeof peer);
            say("%s: connected", peer);
        }
        return 0;
    }
    if (e == TF_ERR_BAD_ADDRESS) {
        say("%s", msg.text[0] ? msg.text : tf_strerror(e));
        return EXIT_USAGE;
    }
    if (e == TF_ERR_TIMEOUT) {
        say("%s: %s: timed out after %lld ms", l->addr, stage, (long long)cfg->connect_timeout_ms);
        return EXIT_RUNTIME;
    }
    if (e == TF_ERR_CLOSED || e == TF_ERR_TRUNCATED) {
        say("%s: %s: the peer closed the connection before its magic", l->addr, stage);
        return EXIT_RUNTIME;
    }
    return fail_at(l, stage, e, os);
}

/* Send one owned message (freed here in every case). */
static int link_send(session *l, uint8_t *buf, size_t len)
{
    tf_err e;
    int os = 0;
    if (l->s) {
        e = tf_sync_conn_send(l->s, buf, len, -1);
        free(buf);
        if (e != TF_OK) {
            tf_sync_conn_error(l->s, &os);
            return fail_at(l, "send", e, os);
        }
    } else {
        tf_future *f = NULL;
        while ((e = tf_async_conn_send_owned(l->a, buf, len, free, -1, &f)) == TF_ERR_BUSY &&
               l->last_send)
            tf_future_wait(l->last_send); /* the queue is full: let it drain */
        if (e != TF_OK) {
            free(buf);
            tf_async_conn_error(l->a, &os);
            return fail_at(l, "send", e, os);
        }
        tf_future_free(l->last_send);
        l->last_send = f;
    }
    l->sent++;
    return 0;
}

/* Wait for one reply and print it. */
static int link_recv(session *l)
{
    void *m = NULL;
    size_t n = 0;
    tf_err e;
    int os = 0;
    int64_t t = o.timeout_ms >= 0 ? o.timeout_ms : -1;
    if (l->s) {
        e = tf_sync_conn_recv_alloc(l->s, &m, &n, t > INT32_MAX ? INT32_MAX : (int)t);
        if (e != TF_OK)
            tf_sync_conn_error(l->s, &os);
    } else {
        tf_future *f = NULL;
        e = tf_async_conn_recv_alloc(l->a, t, &f);
        if (e == TF_OK) {
            tf_future_wait(f);
            e = tf_future_get(f, &n, &m);
            os = tf_future_os_err(f);
            tf_future_free(f);
        }
    }
    if (e == TF_ERR_TIMEOUT) {
        say("%s: receive: no reply within %lld ms", l->addr, (long long)t);
        return EXIT_RUNTIME;
    }
    if (e != TF_OK)
        return fail_at(l, "receive", e, os);
    emit(m, n);
    free(m);
    l->received++;
    return 0;
}

/* Close gracefully: everything sent reaches the peer, then wait (a while) for its close. */
static int link_close(session *l)
{
    int rc = 0;
    if (l->s) {
        /* CLOSED: the peer closed first (a --count server); every send had completed. */
        tf_err e = tf_sync_conn_shutdown(l->s);
        if (e != TF_OK && e != TF_ERR_CLOSED) {
            int os = 0;
            tf_sync_conn_error(l->s, &os);
            rc = fail_at(l, "close", e, os);
        }
        if (l->reader) {
            /* The reader drains what the peer still sends until it closes too (so that our
             * close is a FIN, never a reset that could destroy data in flight). A peer that
             * keeps the connection open is left behind after the linger time: we exit. */
            struct timespec dl;
            clock_gettime(CLOCK_REALTIME, &dl);
            dl.tv_sec += LINGER_MS / 1000;
            if (pthread_timedjoin_np(l->reader_thread, NULL, &dl) != 0)
                l->s = NULL; /* still in use by the reader: not freed */
            l->reader = false;
        } else if (e == TF_OK) {
            /* Drain as above, on this thread. */
            for (;;) {
                void *m = NULL;
                size_t n;
                if (tf_sync_conn_recv_alloc(l->s, &m, &n, LINGER_MS) != TF_OK)
                    break;
                free(m);
            }
        }
        tf_sync_conn_free(l->s);
        l->s = NULL;
    } else if (l->a) {
        tf_future *f = NULL;
        tf_err e = tf_async_conn_close(l->a, &f);
        int os = 0;
        if (e == TF_OK) {
            tf_future_wait(f);
            e = tf_future_get(f, NULL, NULL);
            os = tf_future_os_err(f);
            tf_future_free(f);
        }
        /* The peer closed first (a --count server, say): fine if our last send had completed
         * (sends complete in order, so all had). */
        if (e == TF_ERR_CLOSED && l->last_send && tf_future_wait(l->last_send) == TF_OK &&
            tf_future_get(l->last_send, NULL, NULL) == TF_OK)
            e = TF_OK;
        if (e != TF_OK && e != TF_ERR_TIMEOUT) /* TIMEOUT: flushed, the peer kept it open */
            rc = fail_at(l, "close", e, os);
        tf_future_free(l->last_send);
        l->last_send = NULL;
        tf_async_conn_free(l->a);
        l->a = NULL;
    }
    if (o.verbose && rc == 0)
        say("%s: closed (%lld sent, %lld received)", l->addr, l->sent, l->received);
    return rc;
}

static void link_free(session *l)
{
    if (l->reader) { /* an early exit: wake the reader (shut the socket down) and wait for it */
        shutdown(tf_sync_conn_fd(l->s), SHUT_RDWR);
        pthread_join(l->reader_thread, NULL);
    }
    tf_future_free(l->last_send);
    tf_sync_conn_free(l->s);
    tf_async_conn_free(l->a);
    tf_async_client_free(l->cl);
    if (l->evb)
        tf_evb_free(l->evb);
}

static void pause_ms(long long ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static int run_client(const char *addr, const tf_tcp_config *cfg)
{
    session l = {.addr = o.addr};
    int rc = link_connect(&l, addr, cfg);
    if (rc) {
        link_free(&l);
        return rc;
    }
    uint8_t *fixed = NULL;
    size_t fixed_len = 0;
    if (o.data) {
        fixed_len = strlen(o.data);
        if (fixed_len > o.max_frame) {
            say("--data: message of %zu bytes exceeds the maximum (%" PRIu32 " bytes)", fixed_len,
                o.max_frame);
            link_free(&l);
            return EXIT_RUNTIME;
        }
        fixed = (uint8_t *)strdup(o.data);
    } else if (o.file) {
        fixed = read_file(o.file, &fixed_len);
    }
    long long limit = fixed && o.count < 0 ? 1 : o.count;
    for (long long i = 0; rc == 0 && (limit < 0 || i < limit); i++) {
        uint8_t *m;
        size_t n;
        if (fixed) {
            m = malloc(fixed_len ? fixed_len : 1);
            if (!m) {
                say("out of memory");
                rc = EXIT_RUNTIME;
                break;
            }
            memcpy(m, fixed, fixed_len);
            n = fixed_len;
        } else {
            int got = next_message(stdin, &m, &n);
            if (got <= 0) {
                rc = got < 0 ? EXIT_RUNTIME : 0;
                break;
            }
        }
        if (i > 0 && o.interval_ms > 0)
            pause_ms(o.interval_ms);
        rc = link_send(&l, m, n);
        if (rc == 0 && o.recv)
            rc = link_recv(&l);
    }
    free(fixed);
    if (rc == 0)
        rc = link_close(&l);
    link_free(&l);
    return rc;
}

/* ---------------------------------------------------------------- options */

static const char help[] =
    "Usage: tfcat [options] -l ADDR     listen for clients\n"
    "       tfcat [options] ADDR        connect and send stdin\n"
    "netcat for framed messages: tcpframe's wire format over TCP (the 4-byte magic \"UNIF\"\n"
    "each way, then frames of a 4-byte big-endian length and the payload).\n"
    "\n"
    "ADDR is HOST:PORT: 127.0.0.1:7000, [::1]:7000, localhost:7000, :7000 (every address),\n"
    "or a Unix-domain socket: unix:/run/app.sock (a file, removed when the server stops)\n"
    "or unix:@name (an abstract name).\n"
    "\n"
    "Listen (-l): serves many clients at once on one event loop (async server; --threads N:\n"
    "N loops on N threads), or with --sync on the blocking server and connections, one thread\n"
    "per client. The first line on\n"
    "stderr is \"listening on HOST:PORT\" with the bound port (ADDR may use port 0). Every\n"
    "message is printed to stdout as its payload and a newline. A client that fails the\n"
    "handshake or breaks the protocol is dropped with one line on stderr (at most 10 a\n"
    "second; the rest are summed up once a second: \"K more clients dropped (reasons)\").\n"
    "Runs until SIGINT or SIGTERM (exit 0), or --count messages.\n"
    "\n"
    "-l fd:N listens on the socket inherited as file descriptor N (bound and listening\n"
    "already). -l systemd takes the first socket of systemd's socket activation: fd 3, with\n"
    "LISTEN_PID this process and LISTEN_FDS >= 1 in the environment (both then removed).\n"
    "\n"
    "Connect: sends each line of stdin (without its newline) as one message, closes\n"
    "gracefully at EOF (everything sent is flushed) and exits 0. Without --recv, whatever\n"
    "the peer sends back is read and dropped.\n"
    "\n"
    "Options:\n"
    "  -l, --listen ADDR   listen instead of connecting (ADDR, fd:N or systemd)\n"
    "      --echo          (listen) send every message back to its sender; print nothing\n"
    "      --recv          (connect) after each send, wait for one reply and print it\n"
    "      --sync          use the blocking API (listen: one thread per client)\n"
    "      --raw           stdin and stdout carry wire frames (4-byte big-endian length +\n"
    "                      payload) instead of lines: binary payloads pass through\n"
    "      --hex           print payloads in hex, one line each\n"
    "  -0, --null          input messages end with NUL instead of newline\n"
    "      --data STR      send STR as one message instead of reading stdin\n"
    "      --file PATH     send the contents of PATH as one message instead of stdin\n"
    "      --count N       connect: send at most N messages (with --data/--file: N copies);\n"
    "                      listen: exit 0 after N messages\n"
    "      --interval MS   pause between two sends\n"
    "      --max-frame N   largest payload sent or accepted, bytes, K/M suffix (default 64M)\n"
    "      --timeout MS    connect: the connect and each reply; listen: the handshake\n"
    "                      (default: 30 s connect, no reply limit, 5 s handshake)\n"
    "      --no-handshake  no magic exchange (plain length-prefixed peers)\n"
    "      --device IF     bind the socket to network interface IF (SO_BINDTODEVICE)\n"
    "      --local ADDR    (connect) from this local numeric HOST:PORT (port 0: any)\n"
    "      --tos N         IP TOS / IPv6 traffic class byte, 0..255 (e.g. 0x28 DSCP AF11)\n"
    "      --tls-cert F    TLS 1.3: our certificate chain (PEM); with --tls-key\n"
    "      --tls-key F     TLS 1.3: the private key of --tls-cert (PEM)\n"
    "      --tls-ca F      TLS 1.3: the CAs (PEM) the peer's certificate must verify against\n"
    "                      (listen: clients must present one; connect: the server's)\n"
    "      --tls-no-verify-peer  TLS without checking the peer (listen: ask clients for no\n"
    "                      certificate; connect: accept any server)\n"
    "      --tls-name NAME (connect) the name (DNS or IP) the server's certificate must carry\n"
    "      --mem-budget N  (listen) bytes of partial messages of all clients together, K/M/G\n"
    "                      suffix; past it clients are read in turns (default 1G; 0: none)\n"
    "      --idle-timeout MS      (listen) drop a client that sent and got nothing for MS\n"
    "                             (default 300000; 0: never)\n"
    "      --progress-timeout MS  (listen) drop a client whose message stalls half sent for\n"
    "                             MS (default 60000; 0: never)\n"
    "      --max-conns N   (listen) clients at once; more are closed at once (default 4096;\n"
    "                      0: no cap)\n"
    "      --threads N     (listen) event loops, each on its own thread; each new client\n"
    "                      goes to the loop with the fewest clients (default 1, at most 64)\n"
    "  -4, -6              IPv4 / IPv6 addresses only\n"
    "  -v, --verbose       one line on stderr per connection event; (listen) a line of each\n"
    "                      client's statistics when it ends (messages, bytes, pauses)\n"
    "      --stats SECS    (listen) a JSON line of the server's counters on stderr every\n"
    "                      SECS seconds and at exit (accepted, rejected by reason, active)\n"
    "      --version       print the version and exit\n"
    "  -h, --help          print this help and exit\n"
    "\n"
    "Exit status: 0 success; 1 runtime failure (refused, unreachable, timed out, handshake\n"
    "failed, the peer broke the protocol), with one line on stderr naming the address and the\n"
    "reason; 2 usage error (bad option or address).\n";

enum {
    OPT_ECHO = 256,
    OPT_RECV,
    OPT_SYNC,
    OPT_RAW,
    OPT_HEX,
    OPT_DATA,
    OPT_FILE,
    OPT_COUNT,
    OPT_INTERVAL,
    OPT_MAXFRAME,
    OPT_TIMEOUT,
    OPT_NOHS,
    OPT_MEMBUDGET,
    OPT_IDLE,
    OPT_PROGRESS,
    OPT_MAXCONNS,
    OPT_THREADS,
    OPT_DEVICE,
    OPT_LOCAL,
    OPT_TOS,
    OPT_VERSION,
    OPT_STATS,
    OPT_TLS_CERT,
    OPT_TLS_KEY,
    OPT_TLS_CA,
    OPT_TLS_NAME,
    OPT_TLS_NOVERIFY,
};

static long long parse_num(const char *opt, const char *s, long long lo, long long hi, bool suffix)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (suffix && end != s && (*end == 'K' || *end == 'k') && v <= hi / 1024)
        v *= 1024, end++;
    else if (suffix && end != s && (*end == 'M' || *end == 'm') && v <= hi / 1048576)
        v *= 1048576, end++;
    else if (suffix && end != s && (*end == 'G' || *end == 'g') && v <= hi / 1073741824)
        v *= 1073741824, end++;
    if (errno || end == s || *end || v < lo || v > hi)
        usage_fail("%s: bad value \"%s\" (expected %lld..%lld)", opt, s, lo, hi);
    return v;
}

static long long parse_tos(const char *s)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 0); /* decimal or 0x.. */
    if (errno || end == s || *end || v < 0 || v > 255)
        usage_fail("--tos: bad value \"%s\" (expected 0..255, decimal or 0x..)", s);
    return v;
}

/* -l fd:N and -l systemd: the inherited listening socket in o.listen_fd (the library checks
 * that it is one). systemd's protocol (sd_listen_fds(3)): LISTEN_PID is our pid, LISTEN_FDS
 * the count of sockets from fd 3 on; the variables are removed so that children do not take
 * them for theirs. */
static void inherited_socket(void)
{
    if (strncmp(o.addr, "fd:", 3) == 0) {
        o.listen_fd = (int)parse_num("-l fd:N", o.addr + 3, 0, INT32_MAX, false);
    } else if (strcmp(o.addr, "systemd") == 0) {
        const char *pid = getenv("LISTEN_PID"), *n = getenv("LISTEN_FDS");
        if (!pid || !n)
            usage_fail("-l systemd: LISTEN_PID and LISTEN_FDS are not set (not started by "
                       "socket activation)");
        if (parse_num("LISTEN_PID", pid, 1, INT32_MAX, false) != (long long)getpid())
            usage_fail("-l systemd: LISTEN_PID is %s, not this process (%ld)", pid,
                       (long)getpid());
        parse_num("LISTEN_FDS", n, 1, 1024, false);
        unsetenv("LISTEN_PID");
        unsetenv("LISTEN_FDS");
        unsetenv("LISTEN_FDNAMES");
        o.listen_fd = 3; /* SD_LISTEN_FDS_START; further sockets are left alone */
    } else {
        return;
    }
    if (fcntl(o.listen_fd, F_GETFD) < 0)
        usage_fail("-l %s: fd %d is not open", o.addr, o.listen_fd);
}

static void parse_args(int argc, char **argv)
{
    static const struct option lo[] = {
        {"listen", required_argument, NULL, 'l'},
        {"echo", no_argument, NULL, OPT_ECHO},
        {"recv", no_argument, NULL, OPT_RECV},
        {"sync", no_argument, NULL, OPT_SYNC},
        {"raw", no_argument, NULL, OPT_RAW},
        {"hex", no_argument, NULL, OPT_HEX},
        {"null", no_argument, NULL, '0'},
        {"data", required_argument, NULL, OPT_DATA},
        {"file", required_argument, NULL, OPT_FILE},
        {"count", required_argument, NULL, OPT_COUNT},
        {"interval", required_argument, NULL, OPT_INTERVAL},
        {"max-frame", required_argument, NULL, OPT_MAXFRAME},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"no-handshake", no_argument, NULL, OPT_NOHS},
        {"mem-budget", required_argument, NULL, OPT_MEMBUDGET},
        {"idle-timeout", required_argument, NULL, OPT_IDLE},
        {"progress-timeout", required_argument, NULL, OPT_PROGRESS},
        {"max-conns", required_argument, NULL, OPT_MAXCONNS},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"device", required_argument, NULL, OPT_DEVICE},
        {"local", required_argument, NULL, OPT_LOCAL},
        {"tos", required_argument, NULL, OPT_TOS},
        {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
        {"tls-key", required_argument, NULL, OPT_TLS_KEY},
        {"tls-ca", required_argument, NULL, OPT_TLS_CA},
        {"tls-name", required_argument, NULL, OPT_TLS_NAME},
        {"tls-no-verify-peer", no_argument, NULL, OPT_TLS_NOVERIFY},
        {"verbose", no_argument, NULL, 'v'},
        {"stats", required_argument, NULL, OPT_STATS},
        {"version", no_argument, NULL, OPT_VERSION},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":l:046vh", lo, NULL)) != -1) {
        switch (c) {
        case 'l':
            o.listen = true;
            o.addr = optarg;
            break;
        case OPT_ECHO:
            o.echo = true;
            break;
        case OPT_RECV:
            o.recv = true;
            break;
        case OPT_SYNC:
            o.sync = true;
            break;
        case OPT_RAW:
            o.raw = true;
            break;
        case OPT_HEX:
            o.hex = true;
            break;
        case '0':
            o.nul = true;
            break;
        case OPT_DATA:
            o.data = optarg;
            break;
        case OPT_FILE:
            o.file = optarg;
            break;
        case OPT_COUNT:
            o.count = parse_num("--count", optarg, 1, INT64_MAX, false);
            break;
        case OPT_INTERVAL:
            o.interval_ms = parse_num("--interval", optarg, 0, 86400000, false);
            break;
        case OPT_MAXFRAME:
            o.max_frame = (uint32_t)parse_num("--max-frame", optarg, 0, UINT32_MAX, true);
            break;
        case OPT_TIMEOUT:
            o.timeout_ms = parse_num("--timeout", optarg, 1, INT32_MAX, false);
            break;
        case OPT_NOHS:
            o.handshake = false;
            break;
        case OPT_MEMBUDGET:
            o.mem_budget = parse_num("--mem-budget", optarg, 0, INT64_MAX, true);
            break;
        case OPT_IDLE:
            o.idle_ms = parse_num("--idle-timeout", optarg, 0, INT32_MAX, false);
            break;
        case OPT_PROGRESS:
            o.progress_ms = parse_num("--progress-timeout", optarg, 0, INT32_MAX, false);
            break;
        case OPT_MAXCONNS:
            o.max_conns = parse_num("--max-conns", optarg, 0, INT32_MAX, false);
            break;
        case OPT_THREADS:
            o.threads = parse_num("--threads", optarg, 1, 64, false);
            break;
        case OPT_DEVICE:
            o.device = optarg;
            break;
        case OPT_LOCAL:
            o.local = optarg;
            break;
        case OPT_TOS:
            o.tos = parse_tos(optarg);
            break;
        case OPT_TLS_CERT:
            o.tls_cert = optarg;
            break;
        case OPT_TLS_KEY:
            o.tls_key = optarg;
            break;
        case OPT_TLS_CA:
            o.tls_ca = optarg;
            break;
        case OPT_TLS_NAME:
            o.tls_name = optarg;
            break;
        case OPT_TLS_NOVERIFY:
            o.tls_no_verify = true;
            break;
        case '4':
            o.family = TF_FAMILY_V4;
            break;
        case '6':
            o.family = TF_FAMILY_V6;
            break;
        case 'v':
            o.verbose = true;
            break;
        case OPT_STATS:
            o.stats_s = parse_num("--stats", optarg, 1, 86400, false);
            break;
        case OPT_VERSION:
            printf("tfcat (tcpframe) %s\n", tf_version_string());
            exit(0);
        case 'h':
            fputs(help, stdout);
            exit(0);
        case ':':
            usage_fail("option \"%s\" needs a value", argv[optind - 1]);
        default:
            usage_fail("unknown option \"%s\"", argv[optind - 1]);
        }
    }
    if (o.listen) {
        if (optind != argc)
            usage_fail("unexpected argument \"%s\" (listening on %s)", argv[optind], o.addr);
        if (o.recv || o.data || o.file || o.nul || o.interval_ms || o.local)
            usage_fail("--recv, --data, --file, -0, --interval and --local are for connecting, "
                       "not -l");
        if (o.tls_name)
            usage_fail("--tls-name is for connecting, not -l");
        inherited_socket();
    } else {
        if (optind == argc)
            usage_fail("missing ADDR (HOST:PORT to connect to, or -l ADDR to listen)");
        if (optind + 1 != argc)
            usage_fail("unexpected argument \"%s\"", argv[optind + 1]);
        o.addr = argv[optind];
        if (o.echo)
            usage_fail("--echo is for listening (-l)");
        if (o.stats_s)
            usage_fail("--stats is for listening (-l)");
        if (o.data && o.file)
            usage_fail("--data and --file both given: choose one");
    }
    if (o.raw && o.hex)
        usage_fail("--raw and --hex both given: choose one");
    if (o.threads > 1 && (o.sync || !o.listen))
        usage_fail("--threads is for the async listener (-l without --sync)");
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN); /* the library sends with MSG_NOSIGNAL; stdout is ours */
    parse_args(argc, argv);
    tf_tcp_config cfg;
    make_config(&cfg);
    char buf[TF_ADDRSTR_LEN];
    const char *addr = o.listen_fd >= 0 ? o.addr : check_address(o.addr, o.listen, buf, sizeof buf);
    if (!o.listen)
        return run_client(addr, &cfg);

    /* Signals go to the main thread only: block them before any thread exists (threads
     * inherit the mask), then wait for them with sigwait. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    main_thread = pthread_self();
    pthread_mutex_lock(&err_mu); /* until "listening on" is out */
    return o.sync ? listen_sync(addr, &cfg, &set) : listen_async(addr, &cfg, &set);
}
