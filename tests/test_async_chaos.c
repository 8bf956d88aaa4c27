/* tests/test_async_chaos.c -- the lifecycle chaos test of the async connection (issue 20).
 *
 * Each round: a started loop, NCONN async connections over loopback TCP, each with a raw peer
 * on a thread of its own that misbehaves in a way chosen by the round's seed (reads slowly,
 * never reads, half-closes, resets, trickles its frames byte by byte, sends an oversized length
 * or a wrong magic). NUSER user threads and the loop's own callbacks issue random operations on
 * the connections: send (borrowed, owned), receive (span, allocating), each as a future and as
 * a callback op, message stream on and off, the writable callback on and off, close, abort,
 * free (of the connection itself and of another one from a callback), peer, error; the loop is
 * stopped at a random operation number (from a user thread or from a callback) or not at all.
 * The schedule is perturbed through io/sys.c (tf__perturb_set) to widen race windows.
 *
 * Invariants (a violation records the round's seed and what was seen):
 *  - every call returns a value of its Returns list (async.h), and a context-dependent one only
 *    in its context: SHUTDOWN after a stop was asked for, CANCELLED after an abort or free,
 *    BAD_STATE for a send only after a close, TOO_LARGE for a send only over max_send_len;
 *  - every accepted operation (call returned TF_OK) completes exactly once, a refused one
 *    never, with a reason the contract gives for what happened: CLOSED / TRUNCATED only after
 *    the peer ended its stream (TRUNCATED, not CLOSED, when it ended inside a frame), IO only
 *    after the peer reset or closed, TOO_LARGE / BAD_MAGIC only after the peer sent one,
 *    BUFFER_TOO_SMALL only after a small span was offered, TIMEOUT only with a timeout, never
 *    BUSY, BAD_STATE or NOMEM;
 *  - a close whose peer ends only after reading our end (it never ends first) does not fail
 *    with the peer's CLOSED or TRUNCATED (the flush succeeded);
 *  - every delivered message is one the peer sent, intact; on the loop thread in order;
 *  - a stream message is never delivered while a receive is pending that was accepted with no
 *    stream-off in between (stream and receives exclude each other);
 *  - the peer receives only frames of sends that completed OK, intact, each submitter's in its
 *    submission order; after a close that succeeded, exactly the accepted sends, all OK;
 *  - no callback (op, future completion, stream, writable) runs after tf_async_conn_free of its
 *    connection returned, or after tf_evb_stop returned on another thread;
 *  - at the end of a round, every owned send buffer was released exactly once, and the fd count
 *    is back to where it was.
 *
 * Seeded (TF_TEST_SEED, default 20; round r uses seed+r and prints it on failure: rerun with
 * TF_TEST_SEED=<that> TF_TEST_CHAOS_ROUNDS=1), bounded by operation count (TF_TEST_CHAOS_OPS per
 * round, TF_TEST_CHAOS_ROUNDS rounds), never by wall clock; the no-progress watchdog catches a
 * hang (and prints the round's seed). TF_TEST_CHAOS_KEEP_GOING=1 runs every round and counts
 * the failing ones instead of stopping at the first. `make chaos ROUNDS=N` is the long run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "internal.h"
#include "tcpframe/async.h"
#include "test_io_util.h"
#include "tu_async.h"
#include "tu_net.h"

enum { NCONN = 3, NUSER = 2, SUB_LOOP = NUSER, NSUB = NUSER + 1 };
enum { MAX_RECV = 8192, MAX_SEND = 65536, HDR = 12 };

/* ---------------------------------------------------------------- small helpers */

static uint64_t mix(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rnd(uint64_t *s)
{
    return tio_rand(s);
}

static uint32_t rndn(uint64_t *s, uint32_t n)
{
    return n ? (uint32_t)(rnd(s) >> 33) % n : 0;
}

static bool chance(uint64_t *s, uint32_t permille)
{
    return rndn(s, 1000) < permille;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8),
    p[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* ---------------------------------------------------------------- violations */

static atomic_int violations;
static char first_violation[512];
static _Atomic uint64_t round_seed_now; /* for the watchdog's message */
/* Distinct kinds of violation in the round (by format string), each with its first text. */
enum { MAXCLASS = 24 };
static pthread_mutex_t vmu = PTHREAD_MUTEX_INITIALIZER;
static const char *vfmt[MAXCLASS];
static char vtext[MAXCLASS][512];
static int vcount[MAXCLASS], nclass;

static void violation(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void violation(const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&vmu);
    if (atomic_fetch_add(&violations, 1) == 0)
        snprintf(first_violation, sizeof first_violation, "%s", text);
    int k = 0;
    while (k < nclass && vfmt[k] != fmt)
        k++;
    if (k == nclass && nclass < MAXCLASS) {
        vfmt[nclass] = fmt;
        snprintf(vtext[nclass], sizeof vtext[nclass], "%s", text);
        nclass++;
    }
    if (k < MAXCLASS)
        vcount[k]++;
    pthread_mutex_unlock(&vmu);
}

static void violations_print(void)
{
    for (int k = 0; k < nclass; k++)
        fprintf(stderr, "chaos:   %4d x %s\n", vcount[k], vtext[k]);
    nclass = 0;
    memset(vcount, 0, sizeof vcount);
    atomic_store(&violations, 0);
}

/* ---------------------------------------------------------------- the round's state */

enum peer_mode {
    P_GOOD,
    P_SLOW,
    P_MUTE,
    P_HALF,
    P_RESET,
    P_TRICKLE,
    P_OVERSIZE,
    P_BADMAGIC,
    P_NMODES
};
static const char *const mode_name[P_NMODES] = {"good",  "slow",    "mute",     "half-close",
                                                "reset", "trickle", "oversize", "bad-magic"};

enum kind { K_SEND, K_RECV, K_RALLOC, K_CLOSE };

typedef struct rec {
    struct rec *all_next;
    int conn, kind, sub;
    bool fut, owned, timeout, after_close;
    uint32_t seq;
    size_t len;     /* send: payload length; recv: span capacity */
    uint8_t *buf;   /* send: payload (borrowed) or a copy (owned); recv: span */
    uint8_t *block; /* owned send: [rec *][payload], released by the dtor */
    tf_async_op op;
    atomic_int calls;
    atomic_int err;
    atomic_int dtor_calls;
    atomic_bool accepted;
    atomic_bool registered;        /* future style: our then-callback is in place */
    _Atomic long t_accept, t_done; /* logical clock */
} rec;

typedef struct peer {
    int fd;
    int idx;
    enum peer_mode mode;
    bool hs;
    uint64_t rng;
    pthread_t th;
    /* what it read */
    uint8_t *in;
    size_t nin, capin;
    bool read_eof, read_err;
    /* what it wrote */
    uint32_t frames, frames_max;
    uint8_t *out;
    size_t nout, offout;
    bool out_done;
    bool wrote_partial_end; /* its stream ended inside a frame */
} peer;

typedef struct slot {
    tf_async_conn *c;
    int idx;
    tf_tcp_config cfg;
    peer p;
    /* users of c now; claimed: someone frees it (exactly one) */
    atomic_int users;
    atomic_int freed_done; /* 0, or freed by 1 another thread, 2 the loop thread */
    atomic_bool claimed, free_called, abort_called, close_called;
    /* the peer's doings, set before the act */
    atomic_bool peer_eof, peer_eof_mid, peer_reset, peer_closed, peer_oversize, peer_badmagic;
    atomic_bool small_span, timeout_used;
    atomic_bool abort_done; /* a tf_async_conn_abort call has returned */
    bool calm;              /* never closed, aborted, freed early or given a small span:
                             * a connection that stays healthy unless its peer breaks it */
    /* the writable callback (issue 20 bug 5): clocks of the last fire, of the start of the last
     * send refused with BUSY, of the last install call's start and the last removal's end */
    _Atomic long wr_fire, busy_start, wr_on_start, wr_off_end;
    atomic_bool stream_ever;
    _Atomic long on_clock; /* call start of the last stream-on that returned OK */
    long off[256][2];      /* stream-off calls: [start, end] clock (under mu) */
    int noff;
    bool off_overflow;
    _Atomic long end_clock; /* when the stream's end call ran */
    atomic_int stream_ends;
    atomic_int close_err; /* result of the accepted close, -1 none yet */
    atomic_bool close_accepted;
    atomic_int close_calls;
    rec *close_rec;        /* the accepted close (written before the end checks) */
    atomic_uint seq[NSUB]; /* next send seq per submitter */
    rec **sends[NSUB];     /* by seq (1-based), owned by the submitter */
    size_t nsends[NSUB], capsends[NSUB];
    pthread_mutex_t mu; /* pending receives list (bookkeeping only) */
    rec *pend[256];
    int npend;
    uint32_t last_seq_loop; /* loop thread: last delivered peer seq */
    atomic_int got[64];     /* deliveries per peer seq */
    atomic_bool wr_set;
} slot;

typedef struct round {
    uint64_t seed;
    tf_evb *evb;
    slot s[NCONN];
    atomic_long clk;
    atomic_long ops_left, ops_done, accepted, completed;
    long stop_at;
    atomic_bool stop_req, stop_returned;
    atomic_int stop_by; /* 0 none, 1 user, 2 loop, 3 main */
    _Atomic(rec *) all;
    atomic_bool peers_stop;
    atomic_bool draining; /* the quiesce phase: slow readers read at full speed */
    uint64_t loop_rng;    /* loop thread only */
    /* the server and the client of the round (half the rounds): each freed once, at a random
     * operation (from a user thread or a connection's callback) or at the end */
    tf_async_server *srv;
    tf_async_client *cli;
    char srv_addr[80]; /* "localhost:PORT": the client resolves a name */
    atomic_bool srv_claimed, cli_claimed;
    atomic_int srv_users, cli_users;
    atomic_int srv_freed;    /* tf_async_server_free returned */
    tf_async_conn *kept[64]; /* loop thread: server-side conns kept for the end */
    int naccepted;
    atomic_long connects, connects_done, accepts;
    int fds0;
} round_t;

static round_t R;
static _Thread_local bool tl_registering; /* inside our own tf_future_then */
static _Thread_local int tl_sub = -1;

static long tick(void)
{
    return atomic_fetch_add(&R.clk, 1) + 1;
}

/* ---------------------------------------------------------------- reasons */

static bool is_poison_reason(tf_err e)
{
    switch (e) {
    case TF_ERR_CLOSED:
    case TF_ERR_TRUNCATED:
    case TF_ERR_IO:
    case TF_ERR_TOO_LARGE:
    case TF_ERR_BUFFER_TOO_SMALL:
    case TF_ERR_NOMEM:
    case TF_ERR_BAD_MAGIC:
    case TF_ERR_TIMEOUT:
    case TF_ERR_CANCELLED:
    case TF_ERR_SHUTDOWN:
        return true;
    default:
        return false;
    }
}

/* Could |e| be the connection's reason now, given what was done to it so far? (Every flag is
 * set before the act it stands for, so a true flag read after the reason appeared is sound.) */
static const char *reason_unexplained(slot *s, tf_err e)
{
    switch (e) {
    case TF_OK:
        return NULL;
    case TF_ERR_SHUTDOWN:
        return atomic_load(&R.stop_req) ? NULL : "SHUTDOWN without a stop";
    case TF_ERR_CANCELLED:
        return atomic_load(&s->free_called) || atomic_load(&s->abort_called)
                   ? NULL
                   : "CANCELLED without abort or free";
    case TF_ERR_CLOSED:
        return atomic_load(&s->peer_eof) || atomic_load(&s->peer_reset)
                   ? NULL
                   : "CLOSED though the peer never ended its stream";
    case TF_ERR_TRUNCATED:
        return atomic_load(&s->peer_eof) || atomic_load(&s->peer_reset)
                   ? NULL
                   : "TRUNCATED though the peer never ended its stream";
    case TF_ERR_IO:
        return atomic_load(&s->peer_reset) || atomic_load(&s->peer_closed)
                   ? NULL
                   : "IO though the peer neither reset nor closed";
    case TF_ERR_TOO_LARGE:
        return atomic_load(&s->peer_oversize) ? NULL : "TOO_LARGE without an oversized length";
    case TF_ERR_BAD_MAGIC:
        return atomic_load(&s->peer_badmagic) ? NULL : "BAD_MAGIC without a wrong magic";
    case TF_ERR_BUFFER_TOO_SMALL:
        return atomic_load(&s->small_span) ? NULL : "BUFFER_TOO_SMALL without a small span";
    case TF_ERR_TIMEOUT:
        return atomic_load(&s->timeout_used) || atomic_load(&s->close_called)
                   ? NULL
                   : "TIMEOUT without a timeout or a close";
    default:
        return "not a documented reason";
    }
}

/* Return values per call over the whole test (TF_TEST_CHAOS_VERBOSE=1 prints them). */
enum { NCALLS = 12, NRC = 128 };
static const char *tally_name[NCALLS];
static atomic_long tally_n[NCALLS][NRC];

static void tally(const char *call, tf_err rc)
{
    int k = 0;
    pthread_mutex_lock(&vmu);
    while (k < NCALLS && tally_name[k] && strcmp(tally_name[k], call) != 0)
        k++;
    if (k < NCALLS && !tally_name[k])
        tally_name[k] = call;
    pthread_mutex_unlock(&vmu);
    if (k < NCALLS && (int)rc >= 0 && (int)rc < NRC)
        atomic_fetch_add(&tally_n[k][rc], 1);
}

static void tally_print(void)
{
    for (int k = 0; k < NCALLS && tally_name[k]; k++) {
        fprintf(stderr, "chaos: %-12s", tally_name[k]);
        for (int e = 0; e < NRC; e++)
            if (atomic_load(&tally_n[k][e]))
                fprintf(stderr, " %s %ld", tf_err_name((tf_err)e), atomic_load(&tally_n[k][e]));
        fprintf(stderr, "\n");
    }
}

/* async.h: submissions made after tf_async_conn_abort returned fail with CANCELLED, whatever
 * failed the connection before. |aborted| is the flag read before the call began. */
static void check_after_abort(slot *s, const char *call, bool aborted, tf_err rc)
{
    if (aborted && rc != TF_ERR_CANCELLED)
        violation("conn %d: %s after abort returned %s, not CANCELLED", s->idx, call,
                  tf_err_name(rc));
}

/* A call's return value: TF_OK, one of |extra| (terminated by TF_OK), or a poison reason the
 * context explains. */
static void check_ret(slot *s, const char *call, tf_err rc, const tf_err *extra)
{
    tally(call, rc);
    if (rc == TF_OK)
        return;
    for (const tf_err *x = extra; x && *x != TF_OK; x++)
        if (*x == rc)
            return;
    const char *why = is_poison_reason(rc) ? reason_unexplained(s, rc) : "not in its Returns list";
    if (why)
        violation("conn %d: %s returned %s: %s (peer %s)", s->idx, call, tf_err_name(rc), why,
                  mode_name[s->p.mode]);
}

static const char *kind_name(int k)
{
    return k == K_SEND ? "send" : k == K_RECV ? "recv" : k == K_RALLOC ? "recv_alloc" : "close";
}

/* ---------------------------------------------------------------- messages */

/* Our message: "CHAO", conn, submitter, seq (4), len (2, low bits), then pattern. */
static void fill_ours(uint8_t *b, size_t len, int conn, int sub, uint32_t seq)
{
    uint8_t h[HDR] = {'C', 'H', 'A', 'O', (uint8_t)conn,       (uint8_t)sub,
                      0,   0,   0,   0,   (uint8_t)(len >> 8), (uint8_t)len};
    put32(h + 6, seq);
    memcpy(b, h, len < HDR ? len : HDR);
    if (len > HDR)
        tu_fill(b + HDR, len - HDR, (uint32_t)(conn * 1000003 + sub * 7919) ^ seq);
}

/* The peer's message: "PEER", conn, 0, seq (4), len (2), then pattern. */
static void fill_peer(uint8_t *b, size_t len, int conn, uint32_t seq)
{
    uint8_t h[HDR] = {'P', 'E', 'E', 'R', (uint8_t)conn,       0,
                      0,   0,   0,   0,   (uint8_t)(len >> 8), (uint8_t)len};
    put32(h + 6, seq);
    memcpy(b, h, HDR);
    tu_fill(b + HDR, len - HDR, (uint32_t)conn * 31u + seq);
}

/* A message delivered to us (receive or stream): the peer's, intact. Returns its seq or 0. */
static uint32_t check_delivered(slot *s, const uint8_t *d, size_t len, const char *how)
{
    if (len < HDR || memcmp(d, "PEER", 4) != 0 || d[4] != (uint8_t)s->idx ||
        d[10] != (uint8_t)(len >> 8) || d[11] != (uint8_t)len) {
        violation("conn %d: %s delivered %zu bytes that are not a peer message (peer %s)", s->idx,
                  how, len, mode_name[s->p.mode]);
        return 0;
    }
    uint32_t seq = get32(d + 6);
    if (!tu_check(d + HDR, len - HDR, (uint32_t)s->idx * 31u + seq)) {
        violation("conn %d: %s delivered message %u corrupted", s->idx, how, seq);
        return 0;
    }
    return seq;
}

/* Every delivery is recorded (a message twice is a violation); on the loop thread, deliveries
 * come in the order the peer wrote them (a future completed before its then-callback was in
 * place is seen later, on its owner's thread, so only increase is checked); the end of the
 * round checks that no message is missing in between (unless a close dropped unclaimed data). */
static void delivered_seq(slot *s, uint32_t seq, const char *how)
{
    if (!seq)
        return;
    if (seq >= sizeof s->got / sizeof s->got[0]) {
        violation("conn %d: %s delivered message %u, the peer wrote fewer", s->idx, how, seq);
        return;
    }
    if (atomic_fetch_add(&s->got[seq], 1) != 0)
        violation("conn %d: %s delivered message %u twice", s->idx, how, seq);
    if (!tf_evb_in_loop_thread(R.evb) || tl_registering)
        return;
    if (seq <= s->last_seq_loop)
        violation("conn %d: %s delivered message %u after %u (order)", s->idx, how, seq,
                  s->last_seq_loop);
    else
        s->last_seq_loop = seq;
}

/* ---------------------------------------------------------------- completions */

static void after_free_check(slot *s, const char *what)
{
    if (tl_registering)
        return;
    int by = atomic_load(&s->freed_done);
    if (by == 1)
        violation("conn %d: %s callback ran after tf_async_conn_free returned (on another thread)",
                  s->idx, what);
    else if (by == 2)
        violation("conn %d: %s callback ran after tf_async_conn_free returned (it was called on "
                  "the loop thread, the op was accepted before it)",
                  s->idx, what);
    if (atomic_load(&R.stop_returned))
        violation("conn %d: %s callback ran after tf_evb_stop returned", s->idx, what);
}

static void pend_remove(slot *s, rec *r)
{
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->npend; i++)
        if (s->pend[i] == r) {
            s->pend[i] = s->pend[--s->npend];
            break;
        }
    pthread_mutex_unlock(&s->mu);
}

static void loop_act(int from_conn);

/* One completion of |r| with (err, data, len). */
static void completed(rec *r, tf_err err, int os_err, const uint8_t *data, size_t len)
{
    slot *s = &R.s[r->conn];
    after_free_check(s, kind_name(r->kind));
    atomic_store(&r->t_done, tick());
    int n = atomic_fetch_add(&r->calls, 1);
    if (n > 0)
        violation("conn %d: %s op completed %d times (%s now)", s->idx, kind_name(r->kind), n + 1,
                  tf_err_name(err));
    atomic_store(&r->err, (int)err);
    atomic_fetch_add(&R.completed, 1);
    tio_tick();
    if (r->kind == K_RECV || r->kind == K_RALLOC)
        pend_remove(s, r);
    if (err == TF_ERR_BUSY || err == TF_ERR_BAD_STATE || err == TF_ERR_INVALID_ARGUMENT) {
        violation("conn %d: %s op completed with %s", s->idx, kind_name(r->kind), tf_err_name(err));
    } else if (r->kind == K_CLOSE) {
        const char *why = reason_unexplained(s, err);
        if (why)
            violation("conn %d: close completed with %s (os_err %d): %s (peer %s)", s->idx,
                      tf_err_name(err), os_err, why, mode_name[s->p.mode]);
        bool peer_ends_after_us = s->p.mode == P_GOOD || s->p.mode == P_SLOW ||
                                  s->p.mode == P_TRICKLE || s->p.mode == P_MUTE;
        if (peer_ends_after_us && (err == TF_ERR_CLOSED || err == TF_ERR_TRUNCATED))
            violation("conn %d: close completed with %s, but the peer (%s) ends its stream only "
                      "after reading ours: the flush succeeded",
                      s->idx, tf_err_name(err), mode_name[s->p.mode]);
        atomic_store(&s->close_err, (int)err);
    } else {
        const char *why = reason_unexplained(s, err);
        if (why && !r->after_close)
            violation("conn %d: %s op completed with %s (os_err %d): %s (peer %s)", s->idx,
                      kind_name(r->kind), tf_err_name(err), os_err, why, mode_name[s->p.mode]);
        if (err == TF_ERR_CLOSED && r->kind != K_SEND && !r->after_close &&
            atomic_load(&s->peer_eof_mid))
            violation("conn %d: %s completed with CLOSED though the peer ended inside a frame "
                      "(TRUNCATED)",
                      s->idx, kind_name(r->kind));
        if (err == TF_OK && r->kind != K_SEND) {
            if (r->kind == K_RECV && len > r->len)
                violation("conn %d: recv of %zu bytes into a span of %zu", s->idx, len, r->len);
            uint32_t seq = check_delivered(s, data, len, kind_name(r->kind));
            delivered_seq(s, seq, kind_name(r->kind));
        }
        if (err == TF_OK && r->kind == K_SEND && len != r->len)
            violation("conn %d: send completed with length %zu, sent %zu", s->idx, len, r->len);
    }
    /* the loop's own callbacks act too */
    if (tf_evb_in_loop_thread(R.evb) && !tl_registering)
        loop_act(r->conn);
}

static void op_cb(tf_async_conn *c, tf_async_op *op, tf_err err, int os_err, uint8_t *data,
                  size_t len, void *arg)
{
    (void)c;
    rec *r = arg;
    if (op != &r->op)
        violation("conn %d: callback got a foreign op", r->conn);
    if (r->kind == K_SEND && err == TF_OK && data != r->buf)
        violation("conn %d: send callback data is not the payload", r->conn);
    completed(r, err, os_err, data, len);
    if (r->kind == K_RALLOC)
        free(data);
}

static void fut_cb(tf_future *fu, void *arg)
{
    rec *r = arg;
    size_t len = 0;
    void *owned = NULL;
    tf_err e = tf_future_get(fu, &len, &owned);
    completed(r, e, tf_future_os_err(fu), r->kind == K_RALLOC ? owned : r->buf, len);
    free(owned);
}

static void owned_dtor(void *p)
{
    uint8_t *b = p;
    rec *r;
    memcpy(&r, b - sizeof r, sizeof r);
    slot *s = &R.s[r->conn];
    if (atomic_fetch_add(&r->dtor_calls, 1) != 0)
        violation("conn %d: owned send buffer released twice", r->conn);
    if (!tf_evb_in_loop_thread(R.evb))
        violation("conn %d: owned send buffer released off the loop thread", s->idx);
    /* the record keeps the block pointer for the end check; the memory goes now */
    free(b - sizeof r);
}

static void stream_cb(tf_async_conn *c, tf_err err, int os_err, const uint8_t *data, size_t len,
                      void *arg)
{
    (void)c;
    (void)os_err;
    slot *s = arg;
    after_free_check(s, "stream");
    tio_tick();
    long now = tick();
    if (err != TF_OK) {
        atomic_fetch_add(&s->stream_ends, 1);
        atomic_store(&s->end_clock, now);
        if (data)
            violation("conn %d: stream end with data", s->idx);
        const char *why = reason_unexplained(s, err);
        if (why)
            violation("conn %d: stream ended with %s: %s (peer %s)", s->idx, tf_err_name(err), why,
                      mode_name[s->p.mode]);
        if (err == TF_ERR_CLOSED && atomic_load(&s->peer_eof_mid) && !atomic_load(&s->close_called))
            violation("conn %d: stream ended with CLOSED though the peer ended inside a frame",
                      s->idx);
    } else {
        uint32_t seq = check_delivered(s, data, len, "stream");
        delivered_seq(s, seq, "stream");
        /* a pending receive accepted while this stream was on, with no stream-off since the
         * stream's start: the two should have excluded each other */
        long on = atomic_load(&s->on_clock), end = atomic_load(&s->end_clock);
        pthread_mutex_lock(&s->mu);
        for (int i = 0; i < s->npend; i++) {
            rec *r = s->pend[i];
            long ta = atomic_load(&r->t_accept);
            /* a future whose then-callback is not in place yet may be complete already */
            bool known = !r->fut || atomic_load(&r->registered);
            /* an off call that may have been admitted between the stream's on and the
             * receive (it began before the receive returned and ended after the on began)
             * explains it: the loop applies the off later, the old callback runs until then */
            bool off_between = s->off_overflow;
            for (int k = 0; k < s->noff && !off_between; k++)
                off_between = s->off[k][0] < ta && s->off[k][1] > on;
            if (ta && known && on && !off_between && end < on && atomic_load(&r->calls) == 0)
                violation("conn %d: stream delivered message %u while a receive accepted at %ld "
                          "is pending (stream on at %ld, no stream-off in between): stream and "
                          "receive both accepted",
                          s->idx, seq, ta, on);
        }
        pthread_mutex_unlock(&s->mu);
    }
    if (tf_evb_in_loop_thread(R.evb))
        loop_act(s->idx);
}

static void writable_cb(tf_async_conn *c, void *arg)
{
    (void)c;
    slot *s = arg;
    after_free_check(s, "writable");
    tio_tick();
    atomic_store(&s->wr_fire, tick());
    if (!tf_evb_in_loop_thread(R.evb))
        violation("conn %d: writable callback off the loop thread", s->idx);
    loop_act(s->idx);
}

/* ---------------------------------------------------------------- operations */

static rec *new_rec(int conn, int kind, int sub)
{
    rec *r = calloc(1, sizeof *r);
    r->conn = conn;
    r->kind = kind;
    r->sub = sub;
    rec *head = atomic_load(&R.all);
    do
        r->all_next = head;
    while (!atomic_compare_exchange_weak(&R.all, &head, r));
    return r;
}

/* After an accepted future-style call: register the completion and drop our handle. */
static void register_future(rec *r, tf_future *fu)
{
    tl_registering = true;
    tf_err e = tf_future_then(fu, fut_cb, r);
    tl_registering = false;
    if (e != TF_OK)
        violation("conn %d: tf_future_then: %s", r->conn, tf_err_name(e));
    atomic_store(&r->registered, true);
    tf_future_free(fu);
}

static void accepted(rec *r)
{
    atomic_store(&r->t_accept, tick());
    atomic_store(&r->accepted, true);
    atomic_fetch_add(&R.accepted, 1);
}

static void sends_put(slot *s, int sub, uint32_t seq, rec *r)
{
    if (seq >= s->capsends[sub]) {
        size_t cap = s->capsends[sub] ? s->capsends[sub] * 2 : 64;
        while (cap <= seq)
            cap *= 2;
        s->sends[sub] = realloc(s->sends[sub], cap * sizeof *s->sends[sub]);
        memset(s->sends[sub] + s->capsends[sub], 0,
               (cap - s->capsends[sub]) * sizeof *s->sends[sub]);
        s->capsends[sub] = cap;
    }
    s->sends[sub][seq] = r;
    if (seq + 1 > s->nsends[sub])
        s->nsends[sub] = seq + 1;
}

static void max_store(_Atomic long *a, long v)
{
    long prev = atomic_load(a);
    while (prev < v && !atomic_compare_exchange_weak(a, &prev, v))
        ;
}

static void op_send(slot *s, int sub, uint64_t *g)
{
    uint32_t pick = rndn(g, 100);
    size_t len = HDR + rndn(g, 400);
    if (pick < 15)
        len = HDR + rndn(g, 30000);
    else if (pick < 17)
        len = MAX_SEND + 1 + rndn(g, 100); /* TOO_LARGE */
    int style = (int)rndn(g, 3);           /* 0 future borrowed, 1 callback, 2 owned */
    bool timeout = chance(g, 40);
    uint32_t seq = atomic_fetch_add(&s->seq[sub], 1) + 1;
    rec *r = new_rec(s->idx, K_SEND, sub);
    r->seq = seq;
    r->len = len;
    r->timeout = timeout;
    r->after_close = atomic_load(&s->close_called);
    r->fut = style != 1;
    r->owned = style == 2;
    r->buf = malloc(len);
    fill_ours(r->buf, len, s->idx, sub, seq);
    sends_put(s, sub, seq, r);
    if (timeout)
        atomic_store(&s->timeout_used, true);
    int64_t to = timeout ? (int64_t)rndn(g, 3) : -1;
    tf_err rc;
    tf_future *fu = NULL;
    bool aborted = atomic_load(&s->abort_done);
    long t_call = tick();
    if (style == 0) {
        rc = tf_async_conn_send(s->c, r->buf, len, to, &fu);
    } else if (style == 1) {
        rc = tf_async_conn_send_op(s->c, &r->op, r->buf, len, to, op_cb, r);
    } else {
        r->block = malloc(sizeof r + len);
        memcpy(r->block, &r, sizeof r);
        memcpy(r->block + sizeof r, r->buf, len);
        rc = tf_async_conn_send_owned(s->c, r->block + sizeof r, len, owned_dtor, to, &fu);
        if (rc != TF_OK) {
            free(r->block); /* refused: still ours */
            r->block = NULL;
        }
    }
    if (len <= MAX_SEND)
        check_after_abort(s, "send", aborted, rc);
    if (rc == TF_OK) {
        tally("send", rc);
        if (len > MAX_SEND)
            violation("conn %d: a send of %zu bytes over max_send_len was accepted", s->idx, len);
        accepted(r);
        if (fu)
            register_future(r, fu);
        return;
    }
    if (fu)
        violation("conn %d: refused send left a future", s->idx);
    if (rc == TF_ERR_BUSY)
        max_store(&s->busy_start, t_call);
    if (rc == TF_ERR_TOO_LARGE && len <= MAX_SEND && !atomic_load(&s->peer_oversize))
        violation("conn %d: send of %zu bytes refused with TOO_LARGE", s->idx, len);
    if (rc == TF_ERR_BAD_STATE && !atomic_load(&s->close_called))
        violation("conn %d: send refused with BAD_STATE before any close", s->idx);
    static const tf_err ok[] = {TF_ERR_TOO_LARGE, TF_ERR_BUSY, TF_ERR_BAD_STATE, TF_OK};
    check_ret(s, "send", rc, ok);
}

static void op_recv(slot *s, int sub, uint64_t *g, bool alloc)
{
    (void)sub;
    bool fut = chance(g, 500);
    bool timeout = chance(g, 40);
    rec *r = new_rec(s->idx, alloc ? K_RALLOC : K_RECV, sub);
    r->fut = fut;
    r->timeout = timeout;
    r->after_close = atomic_load(&s->close_called);
    if (!alloc) {
        uint32_t pick = rndn(g, 100);
        r->len = pick < 3 ? rndn(g, 64) : pick < 50 ? 4096 : 8192;
        if (s->calm)
            r->len = MAX_RECV; /* ... nor poisoned by a span too small */
        r->buf = malloc(r->len ? r->len : 1);
        if (r->len < MAX_RECV)
            atomic_store(&s->small_span, true);
    }
    if (timeout)
        atomic_store(&s->timeout_used, true);
    int64_t to = timeout ? (int64_t)rndn(g, 3) : -1;
    /* bookkeeping before the call: the completion may run inside it */
    pthread_mutex_lock(&s->mu);
    bool listed = s->npend < (int)(sizeof s->pend / sizeof s->pend[0]);
    if (listed)
        s->pend[s->npend++] = r;
    pthread_mutex_unlock(&s->mu);
    tf_err rc;
    tf_future *fu = NULL;
    bool aborted = atomic_load(&s->abort_done);
    if (alloc)
        rc = fut ? tf_async_conn_recv_alloc(s->c, to, &fu)
                 : tf_async_conn_recv_alloc_op(s->c, &r->op, to, op_cb, r);
    else
        rc = fut ? tf_async_conn_recv(s->c, r->buf, r->len, to, &fu)
                 : tf_async_conn_recv_op(s->c, &r->op, r->buf, r->len, to, op_cb, r);
    check_after_abort(s, alloc ? "recv_alloc" : "recv", aborted, rc);
    if (rc == TF_OK) {
        tally(alloc ? "recv_alloc" : "recv", rc);
        accepted(r);
        if (fu)
            register_future(r, fu);
        return;
    }
    pend_remove(s, r);
    if (fu)
        violation("conn %d: refused receive left a future", s->idx);
    if (rc == TF_ERR_BAD_STATE && !atomic_load(&s->stream_ever))
        violation("conn %d: receive refused with BAD_STATE, no stream was ever on", s->idx);
    static const tf_err ok[] = {TF_ERR_BUSY, TF_ERR_BAD_STATE, TF_OK};
    check_ret(s, alloc ? "recv_alloc" : "recv", rc, ok);
}

static void op_stream(slot *s, bool on)
{
    if (on)
        atomic_store(&s->stream_ever, true);
    long t0 = tick();
    int slot_i = -1;
    if (!on) {
        /* the off call's interval: it may be admitted anywhere inside it */
        pthread_mutex_lock(&s->mu);
        if (s->noff < (int)(sizeof s->off / sizeof s->off[0])) {
            slot_i = s->noff++;
            s->off[slot_i][0] = t0;
            s->off[slot_i][1] = LONG_MAX; /* still running */
        } else {
            s->off_overflow = true;
        }
        pthread_mutex_unlock(&s->mu);
    }
    bool aborted = atomic_load(&s->abort_done);
    tf_err rc = tf_async_conn_stream(s->c, on ? stream_cb : NULL, on ? s : NULL);
    if (on)
        check_after_abort(s, "stream on", aborted, rc);
    if (slot_i >= 0) {
        long t1 = tick();
        pthread_mutex_lock(&s->mu);
        s->off[slot_i][1] = t1;
        pthread_mutex_unlock(&s->mu);
    }
    if (rc == TF_OK && on) {
        /* (a receive still pending is caught when the stream delivers: a receive the library
         * completed may not have run its callback yet here) */
        long prev = atomic_load(&s->on_clock);
        while (prev < t0 && !atomic_compare_exchange_weak(&s->on_clock, &prev, t0))
            ;
    }
    static const tf_err ok[] = {TF_ERR_BAD_STATE, TF_OK};
    check_ret(s, on ? "stream on" : "stream off", rc, ok);
}

static void op_close(slot *s, int sub)
{
    atomic_store(&s->close_called, true);
    atomic_fetch_add(&s->close_calls, 1);
    rec *r = new_rec(s->idx, K_CLOSE, sub);
    r->fut = true;
    tf_future *fu = NULL;
    tf_err rc = tf_async_conn_close(s->c, &fu);
    if (rc == TF_OK) {
        tally("close", rc);
        if (atomic_exchange(&s->close_accepted, true))
            violation("conn %d: a second close accepted", s->idx);
        s->close_rec = r;
        accepted(r);
        register_future(r, fu);
        return;
    }
    if (rc == TF_ERR_BAD_STATE && atomic_load(&s->close_calls) == 1)
        violation("conn %d: the only close call refused with BAD_STATE", s->idx);
    static const tf_err ok[] = {TF_ERR_BAD_STATE, TF_OK};
    check_ret(s, "close", rc, ok);
}

static void op_small(slot *s, uint32_t which, uint64_t *g)
{
    tf_err rc;
    switch (which) {
    case 0: {
        char buf[96];
        rc = tf_async_conn_peer(s->c, buf, sizeof buf);
        if (rc != TF_OK && rc != TF_ERR_IO)
            violation("conn %d: peer returned %s", s->idx, tf_err_name(rc));
        if (rc == TF_OK && strncmp(buf, "127.0.0.1:", 10) != 0)
            violation("conn %d: peer says %s", s->idx, buf);
        break;
    }
    case 1: {
        int os = 0;
        rc = tf_async_conn_error(s->c, &os);
        check_ret(s, "error", rc, NULL);
        break;
    }
    case 2: {
        bool on = chance(g, 700);
        atomic_store(&s->wr_set, on);
        long t0 = tick();
        rc = tf_async_conn_on_writable(s->c, on ? writable_cb : NULL, s);
        long t1 = tick();
        if (on && rc == TF_OK)
            max_store(&s->wr_on_start, t0);
        else if (!on)
            max_store(&s->wr_off_end, t1);
        check_ret(s, "on_writable", rc, NULL);
        break;
    }
    default:
        atomic_store(&s->abort_called, true);
        rc = tf_async_conn_abort(s->c);
        if (rc != TF_OK)
            violation("conn %d: abort returned %s", s->idx, tf_err_name(rc));
        atomic_store(&s->abort_done, true);
        break;
    }
}

/* The uses this thread holds (a callback the loop thread runs inside one of its own calls may
 * free the connection that call is using: the library allows it, the freeing waits only for the
 * other threads). */
static _Thread_local int tl_held[NCONN];

/* Take the right to use s->c now; false if it is being freed. */
static bool use(slot *s)
{
    if (atomic_load(&s->claimed))
        return false;
    atomic_fetch_add(&s->users, 1);
    if (atomic_load(&s->claimed)) {
        atomic_fetch_sub(&s->users, 1);
        return false;
    }
    tl_held[s->idx]++;
    return true;
}

static void unuse(slot *s)
{
    tl_held[s->idx]--;
    atomic_fetch_sub(&s->users, 1);
}

/* Free s->c once (whoever claims it first). */
static void free_slot(slot *s)
{
    if (atomic_exchange(&s->claimed, true))
        return;
    while (atomic_load(&s->users) > tl_held[s->idx])
        sched_yield();
    atomic_store(&s->free_called, true);
    bool on_loop = R.evb && tf_evb_in_loop_thread(R.evb);
    tf_async_conn_free(s->c);
    atomic_store(&s->freed_done, on_loop ? 2 : 1);
}

static void stop_loop(int by)
{
    if (atomic_exchange(&R.stop_req, true))
        return;
    atomic_store(&R.stop_by, by);
    tf_err rc = tf_evb_stop(R.evb);
    if (rc != TF_OK)
        violation("tf_evb_stop: %s", tf_err_name(rc));
    if (!tf_evb_in_loop_thread(R.evb))
        atomic_store(&R.stop_returned, true);
}

/* ---------------------------------------------------------------- the server and the client */

static void accept_cb(tf_async_server *srv, tf_async_conn *c, void *arg)
{
    (void)srv;
    (void)arg;
    tio_tick();
    atomic_fetch_add(&R.accepts, 1);
    if (atomic_load(&R.srv_freed))
        violation("accept callback ran after tf_async_server_free returned");
    /* half are freed here (inside the server's callback), half at the end */
    if (rndn(&R.loop_rng, 2) == 0 || R.naccepted == (int)(sizeof R.kept / sizeof *R.kept))
        tf_async_conn_free(c);
    else
        R.kept[R.naccepted++] = c;
}

static void connect_cb(tf_future *fu, void *arg)
{
    atomic_int *calls = arg;
    tio_tick();
    void *owned = NULL;
    tf_err e = tf_future_get(fu, NULL, &owned);
    if (atomic_fetch_add(calls, 1) != 0)
        violation("a connect future completed twice");
    atomic_fetch_add(&R.connects_done, 1);
    switch (e) {
    case TF_OK:
    case TF_ERR_IO: /* refused: the server is gone */
    case TF_ERR_TIMEOUT:
    case TF_ERR_CLOSED: /* the server shut down during the handshake */
    case TF_ERR_TRUNCATED:
    case TF_ERR_CANCELLED: /* the client was freed */
    case TF_ERR_SHUTDOWN:
        break;
    default:
        violation("a connect future completed with %s", tf_err_name(e));
    }
    if (e == TF_OK && !owned)
        violation("a connect future said OK without a connection");
    tf_async_conn_free(owned); /* our end of it, at once, on whatever thread this is */
    free(calls);
}

static bool use_obj(atomic_bool *claimed, atomic_int *users)
{
    if (atomic_load(claimed))
        return false;
    atomic_fetch_add(users, 1);
    if (atomic_load(claimed)) {
        atomic_fetch_sub(users, 1);
        return false;
    }
    return true;
}

static void op_connect(void)
{
    if (!R.cli || !use_obj(&R.cli_claimed, &R.cli_users))
        return;
    atomic_int *calls = calloc(1, sizeof *calls);
    tf_future *fu = NULL;
    tf_errmsg msg;
    tf_err rc = tf_async_client_connect(R.cli, R.srv_addr, &fu, &msg);
    if (rc == TF_OK) {
        atomic_fetch_add(&R.connects, 1);
        tl_registering = true;
        if (tf_future_then(fu, connect_cb, calls) != TF_OK)
            violation("tf_future_then on a connect future failed");
        tl_registering = false;
        tf_future_free(fu);
    } else {
        if (rc != TF_ERR_SHUTDOWN)
            violation("tf_async_client_connect returned %s (%s)", tf_err_name(rc), msg.text);
        free(calls);
    }
    atomic_fetch_sub(&R.cli_users, 1);
}

/* Free the server / the client once (never from their own callbacks: async.h). */
static void free_server(void)
{
    if (!R.srv || atomic_exchange(&R.srv_claimed, true))
        return;
    while (atomic_load(&R.srv_users) > 0)
        sched_yield();
    tf_async_server_free(R.srv);
    atomic_store(&R.srv_freed, 1);
}

static void free_client(void)
{
    if (!R.cli || atomic_exchange(&R.cli_claimed, true))
        return;
    while (atomic_load(&R.cli_users) > 0)
        sched_yield();
    tf_async_client_free(R.cli);
}

/* One random operation on a random connection, by submitter |sub| with generator |g|. */
static void one_op(int sub, uint64_t *g, int from_conn)
{
    long k = atomic_fetch_sub(&R.ops_left, 1);
    if (k <= 0)
        return;
    long n = atomic_fetch_add(&R.ops_done, 1);
    tio_tick();
    if (n == R.stop_at) {
        stop_loop(sub == SUB_LOOP ? 2 : 1);
        return;
    }
    int ci = (int)rndn(g, NCONN);
    slot *s = &R.s[ci];
    uint32_t w = rndn(g, 1000);
    if (R.srv && rndn(g, 100) < 4) {
        /* the server and the client: connects (resolving a name: on the loop thread, on a
         * thread of its own), and their frees at a random point */
        uint32_t x = rndn(g, 100);
        if (x < 92)
            op_connect();
        else if (x < 96)
            free_client();
        else
            free_server();
        return;
    }
    if (s->calm && ((w >= 700 && w < 706) || w >= 996))
        w = 900; /* a calm connection is never closed or aborted ... */
    if (!s->calm && (w < 2 || (w < 5 && sub == SUB_LOOP))) {
        /* free: from a user thread, or from the loop's callbacks (of this connection or of
         * another one); ... nor freed before the end */
        (void)from_conn;
        free_slot(s);
        return;
    }
    if (!use(s))
        return;
    if (w < 330)
        op_send(s, sub, g);
    else if (w < 480)
        op_recv(s, sub, g, false);
    else if (w < 600)
        op_recv(s, sub, g, true);
    else if (w < 660)
        op_stream(s, true);
    else if (w < 700)
        op_stream(s, false);
    else if (w < 706)
        op_close(s, sub);
    else if (w < 780)
        op_small(s, 0, g);
    else if (w < 900)
        op_small(s, 1, g);
    else if (w < 996)
        op_small(s, 2, g);
    else
        op_small(s, 3, g);
    unuse(s);
}

/* From inside a completion on the loop thread: now and then, act (that is the "loop's own
 * callbacks" of the test). */
static void loop_act(int from_conn)
{
    if (atomic_load(&R.ops_left) <= 0 || !chance(&R.loop_rng, 300))
        return;
    int sub = tl_sub;
    tl_sub = SUB_LOOP;
    one_op(SUB_LOOP, &R.loop_rng, from_conn);
    tl_sub = sub;
}

static void *user_main(void *arg)
{
    int sub = (int)(intptr_t)arg;
    tl_sub = sub;
    uint64_t g = mix(R.seed * 131u + (uint64_t)sub + 1u);
    while (atomic_load(&R.ops_left) > 0) {
        one_op(sub, &g, -1);
        if (chance(&g, 300))
            sched_yield();
    }
    return NULL;
}

/* ---------------------------------------------------------------- peers */

static void peer_queue_frame(peer *p, slot *s)
{
    size_t len = HDR + rndn(&p->rng, 100) * (chance(&p->rng, 100) ? 60u : 3u);
    if (len > MAX_RECV)
        len = MAX_RECV;
    p->out = realloc(p->out, p->nout + 4 + len);
    put32(p->out + p->nout, (uint32_t)len);
    fill_peer(p->out + p->nout + 4, len, s->idx, ++p->frames);
    p->nout += 4 + len;
}

static void peer_recv(peer *p, size_t max)
{
    if (p->nin + max > p->capin) {
        p->capin = (p->nin + max) * 2;
        p->in = realloc(p->in, p->capin);
    }
    ssize_t n = recv(p->fd, p->in + p->nin, max, MSG_DONTWAIT);
    if (n > 0)
        p->nin += (size_t)n;
    else if (n == 0)
        p->read_eof = true;
    else if (errno != EAGAIN && errno != EINTR)
        p->read_err = true;
}

/* Write up to |max| queued bytes (never blocking). */
static void peer_send(peer *p, size_t max)
{
    size_t k = p->nout - p->offout;
    if (k > max)
        k = max;
    if (k == 0)
        return;
    ssize_t n = send(p->fd, p->out + p->offout, k, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0)
        p->offout += (size_t)n;
}

static void *peer_main(void *arg)
{
    slot *s = arg;
    peer *p = &s->p;
    bool ended_write = false;
    uint32_t end_after = 1 + rndn(&p->rng, p->frames_max + 1);
    if (p->hs) {
        static const uint8_t magic[4] = {'U', 'N', 'I', 'F'};
        static const uint8_t wrong[4] = {'U', 'N', 'I', 'X'};
        p->out = malloc(4);
        if (p->mode == P_BADMAGIC)
            atomic_store(&s->peer_badmagic, true);
        memcpy(p->out, p->mode == P_BADMAGIC ? wrong : magic, 4);
        p->nout = 4;
    }
    long turns = 0;
    for (;;) {
        bool stop = atomic_load(&R.peers_stop);
        turns++;
        /* write: frames one by one, as the mode says */
        if (!ended_write && p->offout == p->nout && p->frames < p->frames_max &&
            chance(&p->rng, 300) && p->mode != P_BADMAGIC)
            peer_queue_frame(p, s);
        if (!ended_write && p->offout < p->nout)
            peer_send(p, p->mode == P_TRICKLE ? 1 + rndn(&p->rng, 3)
                         : (p->mode == P_HALF || p->mode == P_RESET) && chance(&p->rng, 500)
                             ? 1 + rndn(&p->rng, 40)
                             : SIZE_MAX);
        if (!ended_write && p->frames >= end_after &&
            (p->mode == P_HALF || p->mode == P_RESET || p->mode == P_OVERSIZE)) {
            bool mid = p->offout < p->nout; /* inside the frame (or magic) being written */
            if (p->mode == P_OVERSIZE) {
                if (!mid) {
                    uint8_t big[6];
                    put32(big, chance(&p->rng, 500) ? 0xFFFFFFF0u : MAX_RECV + 1u);
                    big[4] = big[5] = 0xAB;
                    atomic_store(&s->peer_oversize, true);
                    (void)send(p->fd, big, sizeof big, MSG_DONTWAIT | MSG_NOSIGNAL);
                    ended_write = true;
                }
            } else if (!mid || chance(&p->rng, 200)) {
                /* end at a frame boundary, or now and then inside a frame */
                if (mid) {
                    atomic_store(&s->peer_eof_mid, true);
                    p->wrote_partial_end = true;
                }
                ended_write = true;
                if (p->mode == P_HALF) {
                    atomic_store(&s->peer_eof, true);
                    shutdown(p->fd, SHUT_WR);
                } else {
                    atomic_store(&s->peer_reset, true);
                    atomic_store(&s->peer_eof, true);
                    atomic_store(&s->peer_closed, true);
                    tu_close_rst(p->fd);
                    p->fd = -1;
                    break;
                }
            }
        }
        /* read */
        if (p->mode != P_MUTE || stop) {
            /* a slow reader reads a little now and then, except while the round drains */
            bool slow = p->mode == P_SLOW && !stop && !atomic_load(&R.draining);
            size_t max = slow ? 1 + rndn(&p->rng, 64) : 65536;
            if (!slow || chance(&p->rng, 300))
                peer_recv(p, max);
        }
        if (p->read_eof || p->read_err) {
            /* our side ended its stream: the peer closes (unread data: nothing, it read all) */
            if (!atomic_load(&s->peer_eof) && p->offout < p->nout && !ended_write)
                atomic_store(&s->peer_eof_mid, true);
            atomic_store(&s->peer_eof, true);
            atomic_store(&s->peer_closed, true);
            close(p->fd);
            p->fd = -1;
            break;
        }
        if (stop && (p->mode == P_MUTE || turns > 100000)) {
            peer_recv(p, 1 << 20);
            atomic_store(&s->peer_eof, true);
            atomic_store(&s->peer_closed, true);
            close(p->fd);
            p->fd = -1;
            break;
        }
        struct pollfd pf = {.fd = p->fd, .events = POLLIN, .revents = 0};
        if (p->offout < p->nout && !ended_write)
            pf.events |= POLLOUT;
        if (p->mode == P_MUTE && !stop)
            pf.events = p->offout < p->nout ? POLLOUT : 0;
        /* pacing only (1 ms); the verdicts never depend on it */
        (void)poll(&pf, 1, p->mode == P_SLOW || p->mode == P_TRICKLE ? 0 : 1);
        if (p->mode == P_SLOW || p->mode == P_TRICKLE)
            sched_yield();
    }
    return NULL;
}

/* ---------------------------------------------------------------- end-of-round checks */

/* The peer's bytes: our magic (with the handshake), then frames of sends that completed OK,
 * intact, each submitter's in increasing order; a cut frame only at the very end. */
static void check_peer_stream(slot *s)
{
    peer *p = &s->p;
    size_t i = 0;
    if (s->cfg.handshake) {
        if (p->nin < 4) {
            if (p->nin && memcmp(p->in, "UNIF", p->nin) != 0)
                violation("conn %d: peer got a wrong magic", s->idx);
            i = p->nin;
        } else if (memcmp(p->in, "UNIF", 4) != 0) {
            violation("conn %d: peer got a wrong magic", s->idx);
            return;
        } else {
            i = 4;
        }
    }
    uint32_t last[NSUB] = {0};
    size_t got = 0;
    while (i + 4 <= p->nin) {
        uint32_t len = get32(p->in + i);
        if (p->nin - i - 4 < len)
            break; /* a cut frame at the end (a failed send) */
        const uint8_t *m = p->in + i + 4;
        i += 4 + (size_t)len;
        if (len < HDR || memcmp(m, "CHAO", 4) != 0 || m[4] != (uint8_t)s->idx || m[5] >= NSUB) {
            violation("conn %d: peer got a frame of %u bytes that is not ours", s->idx, len);
            return;
        }
        int sub = m[5];
        uint32_t seq = get32(m + 6);
        rec *r = seq < s->nsends[sub] ? s->sends[sub][seq] : NULL;
        if (!r || r->len != len || memcmp(m, r->buf, len) != 0) {
            violation("conn %d: peer got a corrupted frame (submitter %d, seq %u, %u bytes)",
                      s->idx, sub, seq, len);
            return;
        }
        if (!atomic_load(&r->accepted))
            violation("conn %d: peer got send %d/%u that was refused", s->idx, sub, seq);
        else if (atomic_load(&r->err) != TF_OK)
            violation("conn %d: peer got send %d/%u, which completed with %s", s->idx, sub, seq,
                      tf_err_name((tf_err)atomic_load(&r->err)));
        if (seq <= last[sub]) {
            rec *o = s->sends[sub][last[sub]];
            violation("conn %d: peer got send %d/%u after %u (order): %u was %s%s%s accepted at "
                      "%ld done at %ld, %u was %s%s%s accepted at %ld done at %ld",
                      s->idx, sub, seq, last[sub], seq, r->fut ? "future" : "callback",
                      r->owned ? " owned" : "", r->timeout ? " timeout" : "",
                      atomic_load(&r->t_accept), atomic_load(&r->t_done), last[sub],
                      o->fut ? "future" : "callback", o->owned ? " owned" : "",
                      o->timeout ? " timeout" : "", atomic_load(&o->t_accept),
                      atomic_load(&o->t_done));
        }
        last[sub] = seq;
        got++;
    }
    /* after a close that succeeded: every accepted send went out, all of them OK */
    if (atomic_load(&s->close_err) == TF_OK && atomic_load(&s->close_accepted)) {
        for (int sub = 0; sub < NSUB; sub++)
            for (size_t q = 1; q < s->nsends[sub]; q++) {
                rec *r = s->sends[sub][q];
                if (!r || !atomic_load(&r->accepted))
                    continue;
                tf_err e = (tf_err)atomic_load(&r->err);
                if (e == TF_ERR_TIMEOUT && r->timeout)
                    continue;
                if (e != TF_OK)
                    violation("conn %d: close succeeded, but accepted send %d/%zu completed with "
                              "%s (send accepted at %ld done at %ld; close by %d accepted at %ld "
                              "done at %ld)",
                              s->idx, sub, q, tf_err_name(e), atomic_load(&r->t_accept),
                              atomic_load(&r->t_done), s->close_rec ? s->close_rec->sub : -1,
                              s->close_rec ? atomic_load(&s->close_rec->t_accept) : 0,
                              s->close_rec ? atomic_load(&s->close_rec->t_done) : 0);
            }
        size_t ok = 0;
        for (int sub = 0; sub < NSUB; sub++)
            for (size_t q = 1; q < s->nsends[sub]; q++) {
                rec *r = s->sends[sub][q];
                if (r && atomic_load(&r->accepted) && atomic_load(&r->err) == TF_OK)
                    ok++;
            }
        if (ok != got)
            violation("conn %d: close succeeded, %zu sends completed OK, the peer got %zu", s->idx,
                      ok, got);
    }
}

static void check_records(void)
{
    for (rec *r = atomic_load(&R.all); r; r = r->all_next) {
        int calls = atomic_load(&r->calls);
        bool acc = atomic_load(&r->accepted);
        if (calls != (acc ? 1 : 0))
            violation("conn %d: %s %s op %s, completed %d times", r->conn, kind_name(r->kind),
                      r->fut ? "future" : "callback", acc ? "accepted" : "refused", calls);
        if (r->kind == K_SEND && r->owned) {
            int d = atomic_load(&r->dtor_calls);
            if (d != (acc ? 1 : 0))
                violation("conn %d: owned send %s, buffer released %d times", r->conn,
                          acc ? "accepted" : "refused", d);
        }
    }
}

static void free_records(void)
{
    rec *r = atomic_load(&R.all);
    while (r) {
        rec *n = r->all_next;
        free(r->buf);
        free(r);
        r = n;
    }
    atomic_store(&R.all, NULL);
}

/* ---------------------------------------------------------------- a round */

static long chaos_ops(void)
{
    return tio_iters("TF_TEST_CHAOS_OPS", 400, 1, 2);
}

static void small_bufs(int fd)
{
    int v = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof v);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof v);
}

/* A loopback TCP pair: our end (returned) and the peer's (*peer_fd). Small buffers are set
 * before listen and connect: shrunk on an established connection, a receive buffer can stay
 * smaller than the window it advertised, and the kernel then drops the sender's segment and
 * retransmits it forever (seen: a 60 s stall ended by TCP_USER_TIMEOUT's ETIMEDOUT). */
static int pair(bool small, int *peer_fd)
{
    *peer_fd = -1;
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int a = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    if (small) {
        small_bufs(l);
        small_bufs(a);
    }
    if (l < 0 || a < 0 || bind(l, (struct sockaddr *)&sa, sl) != 0 || listen(l, 1) != 0 ||
        getsockname(l, (struct sockaddr *)&sa, &sl) != 0 ||
        connect(a, (struct sockaddr *)&sa, sl) != 0) {
        if (l >= 0)
            close(l);
        if (a >= 0)
            close(a);
        return -1;
    }
    *peer_fd = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    close(l);
    return a;
}

static atomic_long writable_checked; /* connections whose writable promise was checked */

static void noop_task(void *arg)
{
    (void)arg;
}

static long pending_sends(slot *s)
{
    long n = 0;
    for (rec *r = atomic_load(&R.all); r; r = r->all_next)
        if (r->conn == s->idx && r->kind == K_SEND && atomic_load(&r->accepted) &&
            atomic_load(&r->calls) == 0)
            n++;
    return n;
}

/* With the loop still running and every operation submitted: on each healthy connection whose
 * peer reads everything, let the send queue drain, then check that a send refused with BUSY got
 * its writable callback (async.h: it runs once the queue falls to send_low_water), if one was
 * installed at the end (no removal could come after the last install). No tick while waiting:
 * a queue that never drains is for the watchdog. */
static void quiesce(void)
{
    atomic_store(&R.draining, true);
    (void)tf_evb_dispatch_and_wait(R.evb, noop_task, NULL); /* what the users left in inboxes */
    for (int i = 0; i < NCONN; i++) {
        slot *s = &R.s[i];
        enum peer_mode m = s->p.mode;
        if (atomic_load(&s->claimed) || atomic_load(&s->close_called) ||
            atomic_load(&s->abort_called) || (m != P_GOOD && m != P_SLOW && m != P_TRICKLE))
            continue;
        while (pending_sends(s) > 0 && tf_async_conn_error(s->c, NULL) == TF_OK &&
               !atomic_load(&R.stop_req))
            sched_yield();
        (void)tf_evb_dispatch_and_wait(R.evb, noop_task, NULL); /* the callbacks after it */
        long busy = atomic_load(&s->busy_start), fire = atomic_load(&s->wr_fire);
        bool installed = atomic_load(&s->wr_on_start) > atomic_load(&s->wr_off_end);
        if (busy > 0 && installed && tf_async_conn_error(s->c, NULL) == TF_OK)
            atomic_fetch_add(&writable_checked, 1);
        if (busy > fire && installed && tf_async_conn_error(s->c, NULL) == TF_OK &&
            !atomic_load(&R.stop_req))
            violation("conn %d: the queue drained after a send refused with BUSY (at %ld), but "
                      "the writable callback did not run (last at %ld)",
                      i, busy, fire);
    }
}

static long last_round_ops, last_round_accepted;

/* One round; returns its operation count, or -1 on a failure. */
static long run_round(uint64_t seed, unsigned permille)
{
    memset(&R, 0, sizeof R);
    R.seed = seed;
    atomic_store(&round_seed_now, seed);
    uint64_t g = mix(seed);
    R.loop_rng = mix(seed ^ 0x100);
    long ops = chaos_ops();
    atomic_store(&R.ops_left, ops);
    R.stop_at = ops / 3 + (long)rndn(&g, (uint32_t)(ops + ops / 6)); /* half the rounds: never */
    tf__perturb_set(seed, permille);
    R.fds0 = tu_fd_count();

    if (tf_evb_new(&R.evb) != TF_OK)
        return violation("tf_evb_new failed"), -1;
    for (int i = 0; i < NCONN; i++) {
        slot *s = &R.s[i];
        s->idx = i;
        pthread_mutex_init(&s->mu, NULL);
        atomic_store(&s->close_err, -1);
        tf_tcp_config_init(&s->cfg);
        s->cfg.handshake = chance(&g, 500);
        s->cfg.max_recv_len = MAX_RECV;
        s->cfg.max_send_len = MAX_SEND;
        s->cfg.send_queue_msgs = 2 + rndn(&g, 8);
        s->cfg.send_queue_bytes = chance(&g, 300) ? 4096 + rndn(&g, 60000) : 1 << 20;
        s->cfg.send_low_water = s->cfg.send_queue_bytes / 4;
        s->cfg.recv_queue_ops = 2 + rndn(&g, 4);
        static const int64_t rbuf[3] = {64, 4096, 65536};
        s->cfg.read_buffer = rbuf[rndn(&g, 3)];
        s->cfg.linger_ms = chance(&g, 250) ? 1 : 60000;
        s->cfg.handshake_timeout_ms = 60000;
        if (chance(&g, 500))
            s->cfg.sndbuf = s->cfg.rcvbuf = 4096;
        int pfd = -1;
        int fd = pair(s->cfg.sndbuf == 4096, &pfd);
        if (fd < 0 || pfd < 0)
            return violation("loopback pair failed"), -1;
        s->p.fd = pfd;
        s->p.idx = i;
        s->p.hs = s->cfg.handshake;
        s->p.mode = (enum peer_mode)rndn(&g, P_NMODES);
        s->calm = i == 0 && chance(&g, 500);
        if (s->calm) {
            static const enum peer_mode calm_modes[4] = {P_GOOD, P_SLOW, P_TRICKLE, P_MUTE};
            s->p.mode = calm_modes[rndn(&g, 4)];
        }
        if (s->p.mode == P_BADMAGIC && !s->p.hs)
            s->p.mode = P_GOOD;
        s->p.rng = mix(seed ^ (0x200u + (unsigned)i));
        s->p.frames_max = 1 + rndn(&g, 30);
        tf_errmsg msg;
        tf_err rc = tf_async_conn_from_fd(R.evb, fd, &s->cfg, &s->c, &msg);
        if (rc != TF_OK)
            return violation("from_fd: %s: %s", tf_err_name(rc), msg.text), -1;
    }
    if (tf_evb_start(R.evb) != TF_OK)
        return violation("tf_evb_start failed"), -1;
    if (chance(&g, 500)) {
        tf_tcp_config sc;
        tf_tcp_config_init(&sc);
        sc.handshake_timeout_ms = 60000;
        sc.connect_retries = 0;
        sc.connect_timeout_ms = 60000;
        sc.linger_ms = 1;
        tf_errmsg msg;
        char addr[80];
        if (tf_async_server_new(R.evb, &R.srv) != TF_OK)
            return violation("tf_async_server_new failed"), -1;
        tf_async_server_on_accept(R.srv, accept_cb, NULL);
        if (tf_async_server_init(R.srv, "127.0.0.1:0", &sc, &msg) != TF_OK ||
            tf_async_server_addr(R.srv, addr, sizeof addr) != TF_OK ||
            tf_async_client_new(R.evb, &sc, &R.cli, &msg) != TF_OK)
            return violation("server/client setup failed: %s", msg.text), -1;
        const char *colon = strrchr(addr, ':');
        snprintf(R.srv_addr, sizeof R.srv_addr, "localhost%s", colon ? colon : ":0");
    }
    for (int i = 0; i < NCONN; i++)
        pthread_create(&R.s[i].p.th, NULL, peer_main, &R.s[i]);
    pthread_t users[NUSER];
    for (int u = 0; u < NUSER; u++)
        pthread_create(&users[u], NULL, user_main, (void *)(intptr_t)u);
    for (int u = 0; u < NUSER; u++)
        pthread_join(users[u], NULL);

    if (!atomic_load(&R.stop_req))
        quiesce();

    /* the end: stop now (before the frees) or after them, free what is left */
    bool stop_first = chance(&g, 500);
    if (stop_first)
        stop_loop(3);
    for (int i = 0; i < NCONN; i++)
        free_slot(&R.s[i]);
    free_client();
    free_server();
    stop_loop(3);
    for (int i = 0; i < R.naccepted; i++) /* the loop has stopped: its array is ours now */
        tf_async_conn_free(R.kept[i]);
    atomic_store(&R.stop_returned, true);
    tf_err frc = tf_evb_free(R.evb);
    if (frc != TF_OK)
        violation("tf_evb_free: %s", tf_err_name(frc));
    atomic_store(&R.peers_stop, true);
    for (int i = 0; i < NCONN; i++)
        pthread_join(R.s[i].p.th, NULL);

    check_records();
    for (int i = 0; i < NCONN; i++)
        check_peer_stream(&R.s[i]);
    for (int i = 0; i < NCONN; i++) {
        slot *s = &R.s[i];
        if (atomic_load(&s->close_called))
            continue;
        uint32_t top = 0;
        for (uint32_t q = 1; q < 64; q++)
            if (atomic_load(&s->got[q]))
                top = q;
        for (uint32_t q = 1; q < top; q++)
            if (!atomic_load(&s->got[q]))
                violation("conn %d: message %u was never delivered, %u was (peer %s)", i, q, top,
                          mode_name[s->p.mode]);
    }
    int fds = tu_fd_count();
    if (fds != R.fds0)
        violation("fds: %d before the round, %d after", R.fds0, fds);
    for (int i = 0; i < NCONN; i++) {
        slot *s = &R.s[i];
        free(s->p.in);
        free(s->p.out);
        for (int k = 0; k < NSUB; k++)
            free(s->sends[k]);
        pthread_mutex_destroy(&s->mu);
    }
    free_records();
    tf__perturb_set(0, 0);
    long n = atomic_load(&R.ops_done);
    if (n > chaos_ops())
        n = chaos_ops();
    last_round_accepted = atomic_load(&R.accepted);
    last_round_ops = n;
    return atomic_load(&violations) ? -1 : n;
}

/* ---------------------------------------------------------------- minimal reproductions
 *
 * What the chaos rounds found, cut down to deterministic tests (CHAOS_FINDINGS.md). Each blocks
 * the loop with a task until the test thread has submitted what must arrive in one inbox batch. */

typedef struct gate {
    _Atomic uint32_t open;
} gate;

static void repro_noop(void *arg)
{
    (void)arg;
}

static void gate_task(void *arg)
{
    gate *g = arg;
    (void)tf__baton_wait(&g->open, TF__FOREVER);
}

static tf_async_conn *repro_pair(tu_fx *f, int *raw)
{
    tf_tcp_config cfg;
    tf_tcp_config_init(&cfg);
    cfg.handshake = 0;
    return tu_pair_raw(f, &cfg, raw);
}

typedef struct repro {
    tf_async_conn *c;
    atomic_int stage;  /* 1: A's callback runs; 2: the test thread submitted C */
    atomic_bool freed; /* tf_async_conn_free returned (inside A's callback) */
    atomic_int b_calls, b_after_free;
    tf_err b_err;
    bool free_in_a;
    uint8_t c_msg[1];
} repro;

static void repro_a_cb(tf_async_conn *c, tf_async_op *op, tf_err err, int os_err, uint8_t *data,
                       size_t len, void *arg)
{
    (void)op, (void)err, (void)os_err, (void)data, (void)len;
    repro *r = arg;
    if (r->free_in_a) {
        tf_async_conn_free(c);
        atomic_store(&r->freed, true);
        return;
    }
    atomic_store(&r->stage, 1);
    while (atomic_load(&r->stage) != 2) /* the test thread submits C now (bounded: it runs) */
        sched_yield();
    /* any loop-thread call that takes the inbox: C is run here, B is still held by the batch */
    (void)tf_async_conn_on_writable(c, NULL, NULL);
}

static void repro_b_cb(tf_async_conn *c, tf_async_op *op, tf_err err, int os_err, uint8_t *data,
                       size_t len, void *arg)
{
    (void)c, (void)op, (void)os_err, (void)data, (void)len;
    repro *r = arg;
    r->b_err = err;
    atomic_fetch_add(&r->b_calls, 1);
    if (atomic_load(&r->freed))
        atomic_fetch_add(&r->b_after_free, 1);
}

static void repro_nop_cb(tf_async_conn *c, tf_async_op *op, tf_err err, int os_err, uint8_t *data,
                         size_t len, void *arg)
{
    (void)c, (void)op, (void)err, (void)os_err, (void)data, (void)len, (void)arg;
}

/* Finding 1: sends A, B from the test thread arrive in one inbox batch; A's completion callback
 * (run while the batch is being taken) makes a loop-thread call that takes the inbox again,
 * where C (submitted by the test thread after A completed) waits: C goes out before B although
 * the same thread submitted B first (async.h: "Submissions from one thread keep that thread's
 * order"). The peer must read A, B, C. */
static void test_repro_inbox_batch_order(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    int raw;
    repro r = {.c = NULL};
    r.c = repro_pair(&f, &raw);
    gate g = {0};
    assert_int_equal(tf_evb_dispatch(f.evb, gate_task, &g), TF_OK);
    tf_async_op oa, ob, oc;
    assert_int_equal(tf_async_conn_send_op(r.c, &oa, "A", 1, -1, repro_a_cb, &r), TF_OK);
    assert_int_equal(tf_async_conn_send_op(r.c, &ob, "B", 1, -1, repro_b_cb, &r), TF_OK);
    tf__baton_post(&g.open);
    while (atomic_load(&r.stage) != 1)
        sched_yield();
    assert_int_equal(tf_async_conn_send_op(r.c, &oc, "C", 1, -1, repro_nop_cb, NULL), TF_OK);
    atomic_store(&r.stage, 2);
    char got[3] = {0};
    for (int i = 0; i < 3; i++) {
        uint8_t b[8];
        uint32_t len = 0;
        assert_true(tu_read_frame(raw, b, sizeof b, &len));
        assert_int_equal(len, 1);
        got[i] = (char)b[0];
    }
    tf_async_conn_free(r.c);
    close(raw);
    tu_fx_end(&f);
    assert_memory_equal(got, "ABC", 3);
}

/* Finding 1 again, with a close: A and B from the test thread in one batch; A's callback waits
 * until the test thread called close (admitted after B), then takes the inbox: the close runs
 * before B, finds the send queue empty and shuts our side down; B then fails (EPIPE) and the
 * close with it -- issue 20's bug 2 through another door. Every send accepted before close must
 * be flushed: B completes OK, the peer reads A and B, the close succeeds. */
static void test_repro_inbox_batch_close(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    int raw;
    repro r = {.c = NULL};
    r.c = repro_pair(&f, &raw);
    gate g = {0};
    assert_int_equal(tf_evb_dispatch(f.evb, gate_task, &g), TF_OK);
    tf_async_op oa, ob;
    assert_int_equal(tf_async_conn_send_op(r.c, &oa, "A", 1, -1, repro_a_cb, &r), TF_OK);
    assert_int_equal(tf_async_conn_send_op(r.c, &ob, "B", 1, -1, repro_b_cb, &r), TF_OK);
    tf__baton_post(&g.open);
    while (atomic_load(&r.stage) != 1)
        sched_yield();
    tf_future *cf = NULL;
    assert_int_equal(tf_async_conn_close(r.c, &cf), TF_OK);
    atomic_store(&r.stage, 2);
    uint8_t b[8];
    uint32_t len = 0;
    bool got_a = tu_read_frame(raw, b, sizeof b, &len) && len == 1 && b[0] == 'A';
    bool got_b = tu_read_frame(raw, b, sizeof b, &len) && len == 1 && b[0] == 'B';
    close(raw);
    tf_err ce = tu_fut_result(cf, NULL, NULL);
    while (atomic_load(&r.b_calls) == 0)
        sched_yield();
    tf_async_conn_free(r.c);
    tu_fx_end(&f);
    assert_true(got_a);
    if (!got_b || r.b_err != TF_OK || ce != TF_OK)
        fail_msg("B %s (%s), close %s", got_b ? "reached the peer" : "never reached the peer",
                 tf_err_name(r.b_err), tf_err_name(ce));
}

/* Finding 2: sends A, B in one inbox batch; A's completion callback frees the connection on the
 * loop thread. B, accepted before the free, must complete inside that free call (async.h,
 * Lifetime); it completed after the free returned, from the rest of the batch. The batch is
 * now taken whole before the pump writes it (one sendmsg for A and B), so B has usually gone
 * out with A and completes OK inside the free; its outcome must match what the peer got: OK
 * and the peer reads B, or CANCELLED and it does not. */
static void test_repro_free_in_callback_batch(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    int raw;
    repro r = {.free_in_a = true};
    r.c = repro_pair(&f, &raw);
    gate g = {0};
    assert_int_equal(tf_evb_dispatch(f.evb, gate_task, &g), TF_OK);
    tf_async_op oa, ob;
    assert_int_equal(tf_async_conn_send_op(r.c, &oa, "A", 1, -1, repro_a_cb, &r), TF_OK);
    assert_int_equal(tf_async_conn_send_op(r.c, &ob, "B", 1, -1, repro_b_cb, &r), TF_OK);
    tf__baton_post(&g.open);
    /* the free happens on the loop; wait for B's completion (one dispatch round trip) */
    while (atomic_load(&r.b_calls) == 0)
        sched_yield();
    uint8_t b[8];
    uint32_t len = 0;
    bool got_a = tu_read_frame(raw, b, sizeof b, &len) && len == 1 && b[0] == 'A';
    bool got_b = tu_read_frame(raw, b, sizeof b, &len) && len == 1 && b[0] == 'B'; /* or EOF */
    close(raw);
    tu_fx_end(&f);
    assert_int_equal(atomic_load(&r.b_calls), 1);
    assert_int_equal(atomic_load(&r.b_after_free), 0);
    assert_true(got_a);
    if (r.b_err != (got_b ? TF_OK : TF_ERR_CANCELLED))
        fail_msg("B completed %s, and the peer %s it", tf_err_name(r.b_err),
                 got_b ? "read" : "never read");
}

typedef struct stopper {
    gate g;
    tf_evb *evb;
} stopper;

static void stop_after_gate(void *arg)
{
    stopper *st = arg;
    (void)tf__baton_wait(&st->g.open, TF__FOREVER);
    tf_evb_stop(st->evb); /* on the loop thread: returns at once, the drain follows */
}

/* Finding 3: a close accepted before the stop runs in the stop drain: the linger timer is
 * refused (the loop is stopping) and the connection fails with NOMEM, which the close future,
 * tf_async_conn_error and pending receives report. The reason is the stop: SHUTDOWN. */
static void test_repro_close_in_stop_drain(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    int raw;
    tf_async_conn *c = repro_pair(&f, &raw);
    stopper st = {.evb = f.evb};
    assert_int_equal(tf_evb_dispatch(f.evb, stop_after_gate, &st), TF_OK);
    tf_future *fu = NULL;
    assert_int_equal(tf_async_conn_close(c, &fu), TF_OK);
    tf__baton_post(&st.g.open);
    tf_err e = tu_fut_result(fu, NULL, NULL);
    int os = 0;
    tf_err ce = tf_async_conn_error(c, &os);
    tf_async_conn_free(c);
    close(raw);
    tu_fx_end(&f);
    assert_int_equal(e, TF_ERR_SHUTDOWN);
    assert_int_equal(ce, TF_ERR_SHUTDOWN);
}

/* Wait until the other end of the socketpair |raw| has read everything we wrote (SIOCOUTQ on a
 * UNIX stream socket: bytes the peer has not read yet). Bounded by the watchdog. */
static void wait_read_by_conn(int raw)
{
    for (;;) {
        int q = 0;
        assert_int_equal(ioctl(raw, SIOCOUTQ, &q), 0);
        if (q == 0)
            return;
        sched_yield();
        tio_tick();
    }
}

/* Finding 4: while the close lingers with nobody reading, the connection drops whatever it reads
 * -- at byte granularity, so a frame cut by a read loses its first part. A receive submitted
 * afterwards (allowed while lingering) then decodes the rest of that frame as a new length
 * prefix: TOO_LARGE (or a garbage message), and the close future, whose flush had succeeded,
 * reports TOO_LARGE. Either whole frames are dropped or the receive gets the next whole frame;
 * the close future is OK, TIMEOUT or a flush failure (async.h). */
static void test_repro_linger_drop_cuts_frame(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    int raw;
    tf_tcp_config cfg;
    tf_tcp_config_init(&cfg);
    cfg.handshake = 0;
    cfg.linger_ms = 60000;
    tf_async_conn *c = tu_pair_raw(&f, &cfg, &raw);
    tf_future *cf = NULL;
    assert_int_equal(tf_async_conn_close(c, &cf), TF_OK);
    uint8_t eof;
    assert_int_equal(read(raw, &eof, 1), 0); /* our side's SHUT_WR: lingering now */
    /* the first half of a 100-byte frame, while nobody wants a message: dropped */
    uint8_t half[4 + 50];
    memset(half, 0xFF, sizeof half);
    put32(half, 100);
    assert_true(tu_write_all(raw, half, sizeof half));
    wait_read_by_conn(raw);
    tf_future *rf = NULL;
    assert_int_equal(tf_async_conn_recv_alloc(c, -1, &rf), TF_OK);
    /* the loop has taken the receive before the rest comes (finding 6 is the other order) */
    assert_int_equal(tf_evb_dispatch_and_wait(f.evb, repro_noop, NULL), TF_OK);
    /* the frame's second half (0xFF bytes), then a whole frame "xyz" */
    uint8_t rest[50 + 4 + 3];
    memset(rest, 0xFF, 50);
    put32(rest + 50, 3);
    memcpy(rest + 54, "xyz", 3);
    assert_true(tu_write_all(raw, rest, sizeof rest));
    size_t len = 0;
    void *msg = NULL;
    tf_err re = tu_fut_result(rf, &len, &msg);
    close(raw); /* the peer closes: the linger ends */
    tf_err ce = tu_fut_result(cf, NULL, NULL);
    tf_async_conn_free(c);
    tu_fx_end(&f);
    bool whole = re == TF_OK && len == 3 && memcmp(msg, "xyz", 3) == 0;
    bool kept = re == TF_OK && len == 100; /* the frame was kept whole instead */
    free(msg);
    if (!whole && !kept)
        fail_msg("the receive after the linger's drop got %s (%zu bytes); close %s",
                 tf_err_name(re), len, tf_err_name(ce));
    assert_int_equal(ce, TF_OK);
}

/* Finding 8: while the close lingers, a receive admitted from another thread (call returned OK)
 * but not yet taken from the connection's inbox is not seen by the linger's drop: a frame that
 * arrives in that window is skipped as unclaimed, and the receive waits for a frame that never
 * comes (here until the linger times out, then TIMEOUT). Admitted receives must count as
 * claimed. A race: tried REPRO_LINGER_TRIES times (about once in 600 tries here). */
enum { REPRO_LINGER_TRIES = 2000 };

static void test_repro_linger_skips_admitted_recv(void **state)
{
    (void)state;
    int lost = 0, tries = 0;
    for (; tries < REPRO_LINGER_TRIES && lost == 0; tries++) {
        tu_fx f;
        tu_fx_start(&f);
        int raw;
        tf_tcp_config cfg;
        tf_tcp_config_init(&cfg);
        cfg.handshake = 0;
        cfg.linger_ms = 300; /* only bounds a lost receive's wait */
        tf_async_conn *c = tu_pair_raw(&f, &cfg, &raw);
        tf_future *cf = NULL;
        assert_int_equal(tf_async_conn_close(c, &cf), TF_OK);
        uint8_t eof;
        assert_int_equal(read(raw, &eof, 1), 0); /* lingering now */
        tf_future *rf = NULL;
        assert_int_equal(tf_async_conn_recv_alloc(c, -1, &rf), TF_OK);
        uint8_t fr[4 + 3];
        put32(fr, 3);
        memcpy(fr + 4, "xyz", 3);
        assert_true(tu_write_all(raw, fr, sizeof fr));
        size_t len = 0;
        void *msg = NULL;
        tf_err re = tu_fut_result(rf, &len, &msg);
        if (!(re == TF_OK && len == 3 && memcmp(msg, "xyz", 3) == 0))
            lost++;
        free(msg);
        close(raw);
        (void)tu_fut_result(cf, NULL, NULL);
        tf_async_conn_free(c);
        tu_fx_end(&f);
        tio_tick();
    }
    if (lost)
        fail_msg("a frame sent after the receive was accepted was dropped by the linger "
                 "(try %d of %d)",
                 tries, REPRO_LINGER_TRIES);
}

typedef struct client_gate {
    gate g;
    tf_async_client *cl;
} client_gate;

static void free_client_after_gate(void *arg)
{
    client_gate *cg = arg;
    (void)tf__baton_wait(&cg->g.open, TF__FOREVER);
    tf_async_client_free(cg->cl); /* on the loop thread, with the connect's start still queued */
}

/* Finding 9: a connect made off the loop thread (the address resolved in the caller) hands its
 * attempt to the loop with a task that holds no reference to the client; a free made on the loop
 * thread before that task runs frees the client at once (no resolver thread holds a reference),
 * and the task then reads the freed client (ASan: heap-use-after-free in begin,
 * io/async_client.c; the plain build may spin or crash). The connect must complete CANCELLED. */
static void test_repro_client_free_on_loop_before_begin(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    int port = 0;
    int lfd = tu_raw_listen(false, &port);
    assert_true(lfd >= 0);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    client_gate cg = {.cl = NULL};
    assert_int_equal(tf_async_client_new(f.evb, NULL, &cg.cl, NULL), TF_OK);
    assert_int_equal(tf_evb_dispatch(f.evb, free_client_after_gate, &cg), TF_OK);
    tf_future *fu = NULL;
    assert_int_equal(tf_async_client_connect(cg.cl, addr, &fu, NULL), TF_OK);
    tf__baton_post(&cg.g.open);
    tf_err e = tu_fut_result(fu, NULL, NULL);
    close(lfd);
    tu_fx_end(&f);
    assert_int_equal(e, TF_ERR_CANCELLED);
}

static tf_evb *stop_evb; /* the loop the SO_ERROR hook stops */

/* connect: made, then reported EINTR (it goes on in the background); SO_ERROR (asked on the
 * loop thread once the socket is writable): stop the loop first, then the real answer. */
static int hook_stop_at_so_error(tf__sys_op op, int fd, size_t *len)
{
    (void)fd, (void)len;
    if (op == TF__SYS_CONNECT)
        return EINTR;
    if (op == TF__SYS_SO_ERROR && stop_evb && tf_evb_in_loop_thread(stop_evb))
        tf_evb_stop(stop_evb); /* on the loop thread: returns at once */
    return 0;
}

/* Around finding 7: a connect whose socket connects once the loop is stopping completes with
 * SHUTDOWN (the stop's reason), not NOMEM. This path is right today; finding 7 comes through a
 * narrower window (a stop from another thread between begin()'s stopping check and its deadline
 * timer, or start()'s and its handshake timer), which no deterministic test reaches yet. */
static void test_repro_client_connect_at_stop(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    int port = 0;
    int lfd = tu_raw_listen(false, &port);
    assert_true(lfd >= 0);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    tf_tcp_config cfg;
    tf_tcp_config_init(&cfg);
    cfg.connect_retries = 0;
    tf_async_client *cl = NULL;
    assert_int_equal(tf_async_client_new(f.evb, &cfg, &cl, NULL), TF_OK);
    stop_evb = f.evb;
    atomic_store(&tf__sys_hook, hook_stop_at_so_error);
    tf_future *fu = NULL;
    assert_int_equal(tf_async_client_connect(cl, addr, &fu, NULL), TF_OK);
    tf_err e = tu_fut_result(fu, NULL, NULL);
    atomic_store(&tf__sys_hook, NULL);
    stop_evb = NULL;
    tf_async_client_free(cl);
    close(lfd);
    tu_fx_end(&f);
    assert_int_equal(e, TF_ERR_SHUTDOWN);
}

static atomic_int sendmsg_calls;

/* The first sendmsg says EAGAIN (the socket is "full"), the rest go through. */
static int hook_first_send_eagain(tf__sys_op op, int fd, size_t *len)
{
    (void)fd, (void)len;
    if (op == TF__SYS_SENDMSG && atomic_fetch_add(&sendmsg_calls, 1) == 0)
        return EAGAIN;
    return 0;
}

typedef struct two {
    tf_async_conn *c;
    atomic_int b_calls;
    tf_err b_err;
} two;

static void two_a_cb(tf_async_conn *c, tf_async_op *op, tf_err err, int os_err, uint8_t *data,
                     size_t len, void *arg)
{
    (void)op, (void)err, (void)os_err, (void)data, (void)len, (void)arg;
    tf_async_conn_free(c); /* from A's completion, inside the write that also took B */
}

static void two_b_cb(tf_async_conn *c, tf_async_op *op, tf_err err, int os_err, uint8_t *data,
                     size_t len, void *arg)
{
    (void)c, (void)op, (void)os_err, (void)data, (void)len;
    two *t = arg;
    t->b_err = err;
    atomic_fetch_add(&t->b_calls, 1);
}

/* Finding 5: A and B go out in one sendmsg; A's completion callback frees the connection (or
 * aborts, or anything that fails it) while write_advance still has B's bytes to account for:
 * B, which the kernel took whole and the peer receives, completes with CANCELLED. A sender
 * that retries cancelled messages sends it twice. */
static void test_repro_send_taken_then_cancelled(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    int raw;
    two t = {.c = NULL};
    t.c = repro_pair(&f, &raw);
    gate g = {0};
    assert_int_equal(tf_evb_dispatch(f.evb, gate_task, &g), TF_OK);
    atomic_store(&sendmsg_calls, 0);
    atomic_store(&tf__sys_hook, hook_first_send_eagain);
    tf_async_op oa, ob;
    assert_int_equal(tf_async_conn_send_op(t.c, &oa, "A", 1, -1, two_a_cb, &t), TF_OK);
    assert_int_equal(tf_async_conn_send_op(t.c, &ob, "B", 1, -1, two_b_cb, &t), TF_OK);
    tf__baton_post(&g.open);
    while (atomic_load(&t.b_calls) == 0)
        sched_yield();
    atomic_store(&tf__sys_hook, NULL);
    uint8_t b[8];
    uint32_t len = 0;
    bool got_a = tu_read_frame(raw, b, sizeof b, &len) && len == 1 && b[0] == 'A';
    bool got_b = tu_read_frame(raw, b, sizeof b, &len) && len == 1 && b[0] == 'B';
    close(raw);
    tu_fx_end(&f);
    assert_true(got_a);
    if (got_b && t.b_err != TF_OK)
        fail_msg("the peer received B, whose send completed with %s", tf_err_name(t.b_err));
}

/* ---------------------------------------------------------------- the tests */

static void put_u64(char *buf, size_t *n, uint64_t v)
{
    char d[24];
    size_t k = 0;
    do
        d[k++] = (char)('0' + v % 10u);
    while ((v /= 10u) && k < sizeof d);
    while (k)
        buf[(*n)++] = d[--k];
}

#if defined(TIO_ASAN)
/* ASan calls this when it found an error (before its report): name the round's seed. */
void __asan_on_error(void);
void __asan_on_error(void)
{
    char buf[96] = "chaos: AddressSanitizer error in round seed ";
    size_t n = strlen(buf);
    put_u64(buf, &n, atomic_load(&round_seed_now));
    buf[n++] = '\n';
    (void)!write(2, buf, n);
}
#endif

/* The watchdog names the round's seed before it judges. */
static void chaos_alarm(int sig)
{
    char buf[96] = "chaos: watchdog window ends in round seed ";
    size_t n = strlen(buf);
    put_u64(buf, &n, atomic_load(&round_seed_now));
    buf[n++] = '\n';
    (void)!write(2, buf, n);
    tio_on_alarm(sig);
}

/* A watchdog on a thread of its own, beside the SIGALRM one: under TSan a signal is delivered
 * only when its thread reaches an intercepted call, so a test whose threads all spin or sleep
 * in raw syscalls (a futex, sched_yield) was never judged (seen: 14 minutes). */
static atomic_bool chaos_dog_stop;

static void *chaos_dog(void *arg)
{
    (void)arg;
    unsigned window = tio_watchdog_secs();
    long seen = -1;
    unsigned still = 0;
    while (!atomic_load(&chaos_dog_stop)) {
        struct timespec one = {1, 0};
        nanosleep(&one, NULL);
        long now = atomic_load_explicit(&tio_progress, memory_order_relaxed);
        still = now == seen ? still + 1 : 0;
        seen = now;
        if (still >= window) {
            fprintf(stderr,
                    "\nchaos: WATCHDOG: no progress for %u s in round seed %llu; aborting\n",
                    window, (unsigned long long)atomic_load(&round_seed_now));
            tio_dump_threads();
            _exit(99);
        }
    }
    return NULL;
}

static uint64_t env_u64(const char *name, uint64_t dflt)
{
    const char *s = getenv(name);
    return s && *s ? strtoull(s, NULL, 0) : dflt;
}

static void test_async_chaos_rounds(void **state)
{
    (void)state;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = chaos_alarm;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);

    uint64_t base = env_u64("TF_TEST_SEED", 20);
    long rounds = tio_iters("TF_TEST_CHAOS_ROUNDS", 200, 2, 4);
    bool keep_going = env_u64("TF_TEST_CHAOS_KEEP_GOING", 0) != 0;
    /* the perturbation rate: TF_TEST_CHAOS_PERMILLE, else 0, 20, 100 per mille by round */
    const char *pe = getenv("TF_TEST_CHAOS_PERMILLE");
    long fixed_pm = pe && *pe ? atol(pe) : -1;
    long total = 0, total_acc = 0, failed = 0;
    pthread_t dog;
    atomic_store(&chaos_dog_stop, false);
    assert_int_equal(pthread_create(&dog, NULL, chaos_dog, NULL), 0);
    uint64_t pert0 = tf__perturb_count();
    long run = 0;
    for (long r = 0; r < rounds; r++, run++) {
        uint64_t seed = base + (uint64_t)r;
        unsigned pm = fixed_pm >= 0 ? (unsigned)fixed_pm : (unsigned[]){0, 20, 100}[r % 3];
        long n = run_round(seed, pm);
        total += last_round_ops;
        total_acc += last_round_accepted;
        if (n < 0) {
            failed++;
            fprintf(stderr,
                    "chaos: round %ld FAILED, seed %llu (replay: TF_TEST_SEED=%llu "
                    "TF_TEST_CHAOS_ROUNDS=1 TF_TEST_CHAOS_PERMILLE=%u): %s [%d violation(s); by "
                    "kind:]\n",
                    r, (unsigned long long)seed, (unsigned long long)seed, pm, first_violation,
                    atomic_load(&violations));
            violations_print();
            if (!keep_going) {
                run++;
                break;
            }
            continue;
        }
    }
    printf("chaos: %ld rounds from seed %llu, %ld operations (%ld per round; %ld accepted), %llu "
           "perturbations, %ld failed round(s)\n",
           run, (unsigned long long)base, total, run ? total / run : 0, total_acc,
           (unsigned long long)(tf__perturb_count() - pert0), failed);
    fflush(stdout);
    atomic_store(&chaos_dog_stop, true);
    pthread_join(dog, NULL);
    if (env_u64("TF_TEST_CHAOS_VERBOSE", 0)) {
        tally_print();
        fprintf(stderr, "chaos: writable callback after BUSY checked on %ld connections\n",
                atomic_load(&writable_checked));
    }
    assert_int_equal(failed, 0);
}

/* The knob itself: off costs nothing and makes no pause; on at 1000 per mille, every call
 * perturbs; the setting can be switched back off. */
static void test_perturb_knob(void **state)
{
    (void)state;
    tf__perturb_set(0, 0);
    uint64_t n0 = tf__perturb_count();
    for (int i = 0; i < 1000; i++)
        tf__perturb();
    assert_int_equal(tf__perturb_count() - n0, 0);
    tf__perturb_set(7, 1000);
    for (int i = 0; i < 200; i++)
        tf__perturb();
    assert_int_equal(tf__perturb_count() - n0, 200);
    tf__perturb_set(7, 100);
    uint64_t n1 = tf__perturb_count();
    for (int i = 0; i < 2000; i++)
        tf__perturb();
    uint64_t d = tf__perturb_count() - n1;
    assert_true(d > 100 && d < 400); /* about 200 of 2000 (seeded: the same every run) */
    tf__perturb_set(0, 0);
    n1 = tf__perturb_count();
    for (int i = 0; i < 1000; i++)
        tf__perturb();
    assert_int_equal(tf__perturb_count() - n1, 0);
}

int main(void)
{
    tio_filter_from_env();
    const struct CMUnitTest tests[] = {
        TIO_TEST(test_perturb_knob),
        TIO_TEST(test_repro_inbox_batch_order),
        TIO_TEST(test_repro_inbox_batch_close),
        TIO_TEST(test_repro_free_in_callback_batch),
        TIO_TEST(test_repro_close_in_stop_drain),
        TIO_TEST(test_repro_linger_drop_cuts_frame),
        TIO_TEST(test_repro_linger_skips_admitted_recv),
        TIO_TEST(test_repro_send_taken_then_cancelled),
        TIO_TEST(test_repro_client_free_on_loop_before_begin),
        TIO_TEST(test_repro_client_connect_at_stop),
        TIO_TEST(test_async_chaos_rounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
