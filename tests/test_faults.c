/* tests/test_faults.c -- systematic fault injection below the connection layer (issue 15).
 *
 * The seam of io/sys.c (tf__sys_hook) sees every read, sendmsg, writev, SO_ERROR query,
 * epoll_ctl, eventfd write and library allocation. A scenario is a handshake and N messages both
 * ways between a connection under test (sync or async, through the generic tf_conn view) and a
 * raw peer (two threads with plain syscalls over a UNIX socketpair), with small or large
 * messages and span or allocating receives. Each scenario runs once to count the calls of each
 * kind, then once per (kind, call index k, answer): EINTR, EAGAIN, a short transfer of one byte
 * (transient: the exchange must complete byte-exact), or a fatal answer (ECONNRESET on a read,
 * EPIPE on a send, a pending ECONNRESET from SO_ERROR, ENOMEM from epoll_ctl, NULL from malloc:
 * every operation either completed byte-exact before the fault or failed with the injected
 * reason, and in each direction no operation succeeds after one failed, except around a refused
 * submission). Every run also checks: each future resolved exactly once (a then-callback
 * counter), no hang (a bounded wait per future, the watchdog around each test), no fd leaked
 * (/proc/self/fd), no memory leaked (ASan), and the peer received exactly the messages whose
 * sends succeeded, in order. Three more scenarios connect and accept over loopback (async client
 * and server, sync connect to the async server, async client to the sync server): there the
 * faults hit both ends, and those a connect or an accept must survive are checked as such.
 *
 * Every call index is tried (the whole matrix takes seconds); TF_FAULTS_STRIDE=n tries only
 * the first 24 indices and every n-th after them. The figures (calls counted, points and runs
 * per scenario, the matrix size) are printed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sys/socket.h>

#include "internal.h"
#include "tcpframe/async.h"
#include "tcpframe/sync.h"
#include "test_io_util.h"
#include "tu_net.h"

/* ---------------------------------------------------------------- the hook */

enum { A_NONE, A_EINTR, A_EAGAIN, A_SHORT, A_FATAL, A_ABORTED, A_EMFILE, A_REFUSED };
static const char *const answer_name[] = {"none",  "EINTR",        "EAGAIN", "short",
                                          "fatal", "ECONNABORTED", "EMFILE", "ECONNREFUSED"};
static const char *const op_name[TF__SYS_NOPS] = {
    "read", "sendmsg", "writev", "accept4", "connect", "SO_ERROR", "epoll_ctl", "eventfd", "malloc"};

static atomic_int hk_armed;
static int hk_fd = -1;          /* the connection's fd: fd calls on others are not counted */
static atomic_long hk_calls[TF__SYS_NOPS];
static int hk_op = -1;          /* the kind to fault */
static long hk_at = -1;         /* its call index */
static int hk_answer;
static atomic_int hk_hit;       /* the fault was injected */
static bool hk_trace;           /* TF_FAULTS_TRACE=1: print every call the hook sees */

/* The errno a fatal answer gives for each kind. */
static int fatal_errno(int op)
{
    switch (op) {
    case TF__SYS_READ:
    case TF__SYS_SO_ERROR:
        return ECONNRESET;
    case TF__SYS_SENDMSG:
    case TF__SYS_WRITEV:
        return EPIPE;
    default:
        return ENOMEM;
    }
}

static int hook(tf__sys_op op, int fd, size_t *len)
{
    if (!atomic_load_explicit(&hk_armed, memory_order_acquire))
        return 0;
    if (op != TF__SYS_MALLOC && op != TF__SYS_EVENTFD_WRITE && hk_fd >= 0 && fd != hk_fd)
        return 0;
    long k = atomic_fetch_add(&hk_calls[op], 1);
    if (hk_trace)
        fprintf(stderr, "  sys: %s #%ld fd %d%s\n", op_name[op], k, fd,
                (int)op == hk_op && k == hk_at ? " <- fault" : "");
    if ((int)op != hk_op || k != hk_at)
        return 0;
    atomic_store(&hk_hit, 1);
    switch (hk_answer) {
    case A_EINTR:
        return EINTR;
    case A_EAGAIN:
        return EAGAIN;
    case A_SHORT:
        if (len && *len > 1)
            *len = 1;
        return 0;
    case A_FATAL:
        return fatal_errno(op);
    case A_ABORTED:
        return ECONNABORTED;
    case A_EMFILE:
        return EMFILE;
    case A_REFUSED:
        return ECONNREFUSED;
    default:
        return 0;
    }
}

/* The answers worth trying on each kind (realistic ones: an eventfd write is never refused
 * with EAGAIN while the counter is low, epoll_ctl never says EINTR). */
static int answers_of(int op, int out[4])
{
    int n = 0;
    switch (op) {
    case TF__SYS_READ:
    case TF__SYS_SENDMSG:
    case TF__SYS_WRITEV:
        out[n++] = A_EINTR;
        out[n++] = A_EAGAIN;
        out[n++] = A_SHORT;
        out[n++] = A_FATAL;
        break;
    case TF__SYS_EVENTFD_WRITE:
        out[n++] = A_EINTR;
        break;
    case TF__SYS_SO_ERROR:
    case TF__SYS_EPOLL_CTL:
    case TF__SYS_MALLOC:
        out[n++] = A_FATAL;
        break;
    default:
        break;
    }
    return n;
}

/* ---------------------------------------------------------------- the raw peer */

#define MAXMSG 8

typedef struct scen {
    const char *name;
    bool async, alloc;
    size_t n;
    size_t sizes[MAXMSG];
} scen;

typedef struct peer {
    int fd;
    const scen *sc;
    pthread_t wr, rd;
    size_t got;                /* frames the reader took, each checked against seed got_seed */
    uint32_t got_len[MAXMSG];
    uint8_t *got_buf[MAXMSG];
} peer;

static void *peer_writer(void *arg)
{
    peer *p = arg;
    if (!tu_send_magic(p->fd))
        return NULL;
    for (size_t i = 0; i < p->sc->n; i++) {
        size_t len = p->sc->sizes[i];
        uint8_t *b = malloc(len ? len : 1);
        tu_fill(b, len, (uint32_t)(1000 + i));
        bool ok = tu_write_frame(p->fd, b, (uint32_t)len);
        free(b);
        if (!ok)
            break;
    }
    return NULL;
}

static void *peer_reader(void *arg)
{
    peer *p = arg;
    if (!tu_expect_magic(p->fd))
        return NULL;
    while (p->got < MAXMSG) {
        size_t cap = 1u << 20;
        uint8_t *b = malloc(cap);
        uint32_t len = 0;
        if (!tu_read_frame(p->fd, b, cap, &len)) {
            free(b);
            break;
        }
        p->got_len[p->got] = len;
        p->got_buf[p->got++] = b;
    }
    return NULL;
}

/* ---------------------------------------------------------------- one run */

typedef struct opres {
    tf_future *fu;
    atomic_int thens;
    tf_err submit; /* the submission's own answer */
    tf_err err;
    int os_err;
    size_t size;
    void *owned;
} opres;

static void on_then(tf_future *f, void *arg)
{
    (void)f;
    atomic_fetch_add((atomic_int *)arg, 1);
}

static void submit(opres *r, tf_err rc, tf_future *fu)
{
    r->submit = rc;
    r->fu = rc == TF_OK ? fu : NULL;
    if (r->fu)
        assert_int_equal(tf_future_then(r->fu, on_then, &r->thens), TF_OK);
}

/* Run scenario |sc| with the hook as set (hk_op/hk_at/hk_answer); check everything. |what|
 * names the run in failure messages. */
static void run_one(const scen *sc, const char *what)
{
    const int fds0 = tu_fd_count();
    tf_evb *evb = NULL;
    if (sc->async) {
        assert_int_equal(tf_evb_new(&evb), TF_OK);
        assert_int_equal(tf_evb_start(evb), TF_OK);
    }
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    peer p;
    memset(&p, 0, sizeof p);
    p.fd = sv[1];
    p.sc = sc;
    assert_int_equal(pthread_create(&p.wr, NULL, peer_writer, &p), 0);
    assert_int_equal(pthread_create(&p.rd, NULL, peer_reader, &p), 0);

    tf_tcp_config cfg;
    tf_tcp_config_init(&cfg);
    cfg.handshake_timeout_ms = 60000; /* a stalled handshake is a hang, not a timeout */

    for (int i = 0; i < TF__SYS_NOPS; i++)
        atomic_store(&hk_calls[i], 0);
    atomic_store(&hk_hit, 0);
    hk_fd = sv[0];
    atomic_store_explicit(&hk_armed, 1, memory_order_release);

    tf_conn *c = NULL;
    tf_sync_conn *sc_conn = NULL;
    tf_async_conn *ac = NULL;
    tf_err open_rc;
    int open_os = 0;
    if (sc->async) {
        open_rc = tf_async_conn_from_fd(evb, sv[0], &cfg, &ac, NULL);
        if (open_rc == TF_OK)
            c = tf_async_conn_base(ac);
        else
            close(sv[0]); /* not taken over */
    } else {
        open_rc = tf_sync_conn_from_fd(sv[0], &cfg, &sc_conn, &open_os, NULL);
        if (open_rc == TF_OK)
            c = tf_sync_conn_base(sc_conn);
    }

    opres snd[MAXMSG], rcv[MAXMSG];
    memset(snd, 0, sizeof snd);
    memset(rcv, 0, sizeof rcv);
    uint8_t *out[MAXMSG] = {0}, *in[MAXMSG] = {0};
    size_t maxlen = 1;
    for (size_t i = 0; i < sc->n; i++)
        maxlen = sc->sizes[i] > maxlen ? sc->sizes[i] : maxlen;
    for (size_t i = 0; i < sc->n; i++) {
        size_t len = sc->sizes[i];
        out[i] = malloc(len ? len : 1);
        tu_fill(out[i], len, (uint32_t)i);
        in[i] = malloc(maxlen);
    }
    if (c) {
        /* Async: everything is queued at once. Sync: the sends, then the receives (the peer
         * reads and writes on threads of its own, so neither side waits for the other). */
        for (size_t i = 0; i < sc->n; i++) {
            tf_future *fu = NULL;
            tf_err rc = tf_conn_send(c, out[i], sc->sizes[i], &fu);
            submit(&snd[i], rc, fu);
        }
        for (size_t i = 0; i < sc->n; i++) {
            tf_future *fu = NULL;
            tf_err rc = sc->alloc ? tf_conn_recv_alloc(c, &fu)
                                  : tf_conn_recv(c, in[i], maxlen, &fu);
            submit(&rcv[i], rc, fu);
        }
    }
    opres *all[2] = {snd, rcv};
    for (int d = 0; d < 2; d++) {
        for (size_t i = 0; i < sc->n; i++) {
            opres *r = &all[d][i];
            if (!r->fu) {
                r->err = c ? r->submit : open_rc;
                continue;
            }
            if (tf_future_wait_for(r->fu, 30000) != TF_OK)
                fail_msg("%s: %s %zu never resolved", what, d ? "receive" : "send", i);
            r->err = tf_future_get(r->fu, &r->size, &r->owned);
            r->os_err = tf_future_os_err(r->fu);
        }
    }
    int conn_os = 0;
    tf_err conn_err = c ? tf_conn_error(c, &conn_os) : open_rc;
    if (!c)
        conn_os = open_os;
    tf_conn_free(c);
    atomic_store_explicit(&hk_armed, 0, memory_order_release);
    pthread_join(p.wr, NULL);
    pthread_join(p.rd, NULL);
    close(sv[1]);
    if (evb)
        assert_int_equal(tf_evb_free(evb), TF_OK);

    /* exactly once, and the futures' own outcome */
    for (int d = 0; d < 2; d++)
        for (size_t i = 0; i < sc->n; i++) {
            opres *r = &all[d][i];
            if (r->fu && atomic_load(&r->thens) != 1)
                fail_msg("%s: %s %zu: then-callback ran %d times", what, d ? "recv" : "send", i,
                         atomic_load(&r->thens));
            tf_future_free(r->fu);
        }

    const bool hit = atomic_load(&hk_hit) != 0;
    const bool fatal = hit && hk_answer == A_FATAL;
    const int fe = fatal ? fatal_errno(hk_op) : 0;
    const tf_err fr = hk_op == TF__SYS_MALLOC ? TF_ERR_NOMEM : TF_ERR_IO;
    for (int d = 0; d < 2; d++) {
        bool failed_before = false;
        size_t j = 0; /* the message a receive gets: refused submissions take none */
        for (size_t i = 0; i < sc->n; i++) {
            opres *r = &all[d][i];
            const char *dn = d ? "recv" : "send";
            if (r->err == TF_OK) {
                /* the malloc kind may refuse one submission and accept later ones */
                if (failed_before && hk_op != TF__SYS_MALLOC)
                    fail_msg("%s: %s %zu succeeded after an earlier one failed", what, dn, i);
                if (d == 1) {
                    if (r->size != sc->sizes[j])
                        fail_msg("%s: recv %zu: %zu bytes, want %zu", what, i, r->size,
                                 sc->sizes[j]);
                    const uint8_t *data = sc->alloc ? r->owned : in[i];
                    if (r->size && !tu_check(data, r->size, (uint32_t)(1000 + j)))
                        fail_msg("%s: recv %zu: wrong bytes", what, i);
                } else if (r->size != sc->sizes[i]) {
                    fail_msg("%s: send %zu: size %zu", what, i, r->size);
                }
            } else {
                failed_before = true;
                if (!fatal)
                    fail_msg("%s: %s %zu failed with %s (os %d) under a transient answer", what,
                             dn, i, tf_err_name(r->err), r->os_err);
                if (r->err != fr)
                    fail_msg("%s: %s %zu failed with %s (os %d), want %s", what, dn, i,
                             tf_err_name(r->err), r->os_err, tf_err_name(fr));
                if (r->os_err != 0 && fr == TF_ERR_IO && r->os_err != fe)
                    fail_msg("%s: %s %zu failed with os %d, want %d", what, dn, i, r->os_err, fe);
            }
            if (r->submit == TF_OK)
                j++;
            free(r->owned);
        }
    }
    if (conn_err != TF_OK) {
        if (!fatal)
            fail_msg("%s: connection poisoned with %s under a transient answer", what,
                     tf_err_name(conn_err));
        if (conn_err != fr || (fr == TF_ERR_IO && conn_os != fe))
            fail_msg("%s: connection poisoned with %s (os %d), want %s (os %d)", what,
                     tf_err_name(conn_err), conn_os, tf_err_name(fr), fe);
    }
    /* the peer got exactly the messages whose sends succeeded, in order */
    size_t k = 0;
    for (size_t i = 0; i < sc->n; i++) {
        if (snd[i].err != TF_OK)
            continue;
        if (k >= p.got)
            fail_msg("%s: the peer did not get send %zu (got %zu messages)", what, i, p.got);
        if (p.got_len[k] != sc->sizes[i] || !tu_check(p.got_buf[k], p.got_len[k], (uint32_t)i))
            fail_msg("%s: the peer's message %zu is not send %zu", what, k, i);
        k++;
    }
    if (k != p.got)
        fail_msg("%s: the peer got %zu messages, %zu sends succeeded", what, p.got, k);
    for (size_t i = 0; i < p.got; i++)
        free(p.got_buf[i]);
    for (size_t i = 0; i < sc->n; i++) {
        free(out[i]);
        free(in[i]);
    }
    if (tu_fd_count() != fds0)
        fail_msg("%s: %d fds before, %d after", what, fds0, tu_fd_count());
}

/* ---------------------------------------------------------------- the matrix */

static long matrix_total;

static void run_matrix(const scen *sc)
{
    const long stride = tio_iters("TF_FAULTS_STRIDE", 1, 1, 1);
    char what[160];
    /* the counting run */
    hk_op = -1;
    hk_at = -1;
    hk_answer = A_NONE;
    /* the counts of the async scenarios depend on timing (how the peer's bytes arrive):
     * the most of three counting runs */
    long count[TF__SYS_NOPS] = {0};
    for (int r = 0; r < 3; r++) {
        snprintf(what, sizeof what, "%s, counting run %d", sc->name, r + 1);
        run_one(sc, what);
        for (int i = 0; i < TF__SYS_NOPS; i++)
            if (atomic_load(&hk_calls[i]) > count[i])
                count[i] = atomic_load(&hk_calls[i]);
    }
    long points = 0, runs = 0;
    char counts[256] = "";
    for (int op = 0; op < TF__SYS_NOPS; op++) {
        int ans[4];
        int na = answers_of(op, ans);
        if (count[op] == 0 || na == 0)
            continue;
        size_t l = strlen(counts);
        snprintf(counts + l, sizeof counts - l, " %s %ld", op_name[op], count[op]);
        /* a few extra indices past the count: the counts vary with timing */
        const long last = count[op] + 2;
        for (long k = 0; k < last; k++) {
            if (k >= 24 && (k % stride) != 0 && k != count[op] - 1)
                continue;
            points++;
            for (int a = 0; a < na; a++) {
                hk_op = op;
                hk_at = k;
                hk_answer = ans[a];
                snprintf(what, sizeof what, "%s, %s call %ld: %s", sc->name, op_name[op], k,
                         answer_name[ans[a]]);
                run_one(sc, what);
                runs++;
                tio_tick();
            }
        }
    }
    hk_op = -1;
    matrix_total += runs;
    printf("faults: %s: calls:%s; %ld points, %ld runs\n", sc->name, counts, points, runs);
}

/* ---------------------------------------------------------------- connect and accept */

/* An async server and a client (the async client on the same loop, or the sync connect on the
 * test thread) over loopback: connect, handshake, 3 messages each way through the generic view.
 * Faults hit every fd (both ends). Answers that a connect or an accept must survive (EINTR,
 * EAGAIN, ECONNABORTED and EMFILE from accept4 -- the server backs off and resumes --,
 * ECONNREFUSED from connect or SO_ERROR during the connect -- retried --, short transfers)
 * must leave the exchange complete and byte-exact. Fatal answers on the byte path (read,
 * sendmsg, SO_ERROR on an event, epoll_ctl, malloc) may fail operations, with the reasons such
 * faults have on either end: IO, CLOSED, TRUNCATED, NOMEM, BAD_MAGIC (a handshake cut), the
 * client's TIMEOUT never. */
enum { NET_MSGS = 3 };

static bool may_fail(int op, int answer)
{
    if (answer == A_FATAL)
        return op != TF__SYS_ACCEPT4 && op != TF__SYS_CONNECT;
    return false;
}

static int net_answers(int op, int out[4])
{
    int n = 0;
    switch (op) {
    case TF__SYS_READ:
    case TF__SYS_SENDMSG:
        out[n++] = A_EINTR;
        out[n++] = A_EAGAIN;
        out[n++] = A_SHORT;
        out[n++] = A_FATAL;
        break;
    case TF__SYS_ACCEPT4:
        out[n++] = A_EINTR;
        out[n++] = A_EAGAIN;
        out[n++] = A_ABORTED;
        out[n++] = A_EMFILE;
        break;
    case TF__SYS_CONNECT:
        out[n++] = A_EINTR;
        out[n++] = A_REFUSED;
        break;
    case TF__SYS_SO_ERROR:
        out[n++] = A_FATAL; /* ECONNRESET as a pending error */
        break;
    case TF__SYS_EVENTFD_WRITE:
        out[n++] = A_EINTR;
        break;
    case TF__SYS_EPOLL_CTL:
    case TF__SYS_MALLOC:
        out[n++] = A_FATAL;
        break;
    default:
        break;
    }
    return n;
}

static bool net_reason_ok(tf_err e)
{
    return e == TF_ERR_IO || e == TF_ERR_CLOSED || e == TF_ERR_TRUNCATED || e == TF_ERR_NOMEM ||
           e == TF_ERR_BAD_MAGIC || e == TF_ERR_SHUTDOWN || e == TF_ERR_CANCELLED;
}

static tf_err fut_done(tf_future *fu, size_t *size, void **owned, const char *what,
                       const char *name)
{
    if (tf_future_wait_for(fu, 30000) != TF_OK)
        fail_msg("%s: %s never resolved", what, name);
    tf_err e = tf_future_get(fu, size, owned);
    tf_future_free(fu);
    return e;
}

typedef struct sacc {
    tf_sync_server *s;
    tf_sync_conn *c;
    tf_err e;
    tio_ctr done;
} sacc;

static void *sacc_main(void *p)
{
    sacc *x = p;
    x->e = tf_sync_server_accept(x->s, &x->c, NULL, NULL);
    tio_ctr_add(&x->done, 1);
    return NULL;
}

/* mode 0: async client and server; 1: sync connect to the async server; 2: async client to
 * the sync server (its accept on a thread). */
static void net_one(int mode, const char *what)
{
    const bool sync_client = mode == 1, sync_server = mode == 2;
    const int fds0 = tu_fd_count();
    tf_evb *evb;
    assert_int_equal(tf_evb_new(&evb), TF_OK);
    assert_int_equal(tf_evb_start(evb), TF_OK);
    tf_tcp_config cfg;
    tf_tcp_config_init(&cfg);
    cfg.retry_delay_ms = 5; /* an injected refusal is retried at once */
    cfg.retry_max_delay_ms = 20;
    cfg.connect_timeout_ms = 60000;
    cfg.handshake_timeout_ms = 60000;
    tf_async_server *srv = NULL;
    sacc sx;
    memset(&sx, 0, sizeof sx);
    char addr[TF_ADDRSTR_LEN];
    if (sync_server) {
        assert_int_equal(tf_sync_server_new(&sx.s), TF_OK);
        assert_int_equal(tf_sync_server_init(sx.s, "127.0.0.1:0", &cfg, NULL), TF_OK);
        assert_int_equal(tf_sync_server_addr(sx.s, addr, sizeof addr), TF_OK);
        tio_ctr_init(&sx.done);
    } else {
        assert_int_equal(tf_async_server_new(evb, &srv), TF_OK);
        assert_int_equal(tf_async_server_init(srv, "127.0.0.1:0", &cfg, NULL), TF_OK);
        assert_int_equal(tf_async_server_addr(srv, addr, sizeof addr), TF_OK);
    }
    tf_async_client *cl;
    assert_int_equal(tf_async_client_new(evb, &cfg, &cl, NULL), TF_OK);

    for (int i = 0; i < TF__SYS_NOPS; i++)
        atomic_store(&hk_calls[i], 0);
    atomic_store(&hk_hit, 0);
    hk_fd = -1;
    atomic_store_explicit(&hk_armed, 1, memory_order_release);

    const bool tolerant = may_fail(hk_op, hk_answer);
    const uint64_t rej0 = sync_server ? tf_sync_server_rejected(sx.s)
                                      : tf_async_server_rejected(srv); /* before the client */
    tf_future *af = NULL, *cf = NULL;
    tf_err arc = TF_OK;
    pthread_t sat;
    if (sync_server)
        assert_int_equal(pthread_create(&sat, NULL, sacc_main, &sx), 0);
    else
        arc = tf_async_server_accept(srv, &af);
    tf_conn *a = NULL, *b = NULL; /* client end, server end */
    tf_sync_conn *sc = NULL;
    tf_err crc;
    if (sync_client) {
        crc = tf_sync_connect(addr, &cfg, &sc, NULL, NULL);
        a = sc ? tf_sync_conn_base(sc) : NULL;
    } else {
        crc = tf_async_client_connect(cl, addr, &cf, NULL);
        if (crc == TF_OK) {
            void *c = NULL;
            crc = fut_done(cf, NULL, &c, what, "connect");
            a = c ? tf_async_conn_base(c) : NULL;
        }
    }
    if (crc != TF_OK && !(tolerant && net_reason_ok(crc)))
        fail_msg("%s: connect: %s", what, tf_err_name(crc));
    bool take = arc == TF_OK && a && !sync_server;
    bool sync_taken = false;
    if (sync_server && a) {
        /* as below: the sync accept may rightly wait for another client */
        const long long t0 = tio_now_ms();
        while (!tio_ctr_wait(&sx.done, 1, 5) &&
               !(tolerant && tf_sync_server_rejected(sx.s) != rej0))
            if (tio_now_ms() - t0 > 30000)
                fail_msg("%s: sync accept never returned, no client rejected", what);
        if (tio_ctr_get(&sx.done) > 0) {
            sync_taken = true;
            b = sx.c ? tf_sync_conn_base(sx.c) : NULL;
            if (sx.e != TF_OK && !(tolerant && net_reason_ok(sx.e)))
                fail_msg("%s: sync accept: %s", what, tf_err_name(sx.e));
        }
    }
    if (take && tolerant) {
        /* the server may have dropped this client in its handshake (a fault on its side):
         * then the accept rightly waits for another client */
        const long long t0 = tio_now_ms();
        while (tf_future_wait_for(af, 5) != TF_OK && tf_async_server_rejected(srv) == rej0)
            if (tio_now_ms() - t0 > 30000)
                fail_msg("%s: accept never resolved, no client rejected", what);
        take = tf_future_is_ready(af);
    }
    if (take) {
        void *c = NULL;
        arc = fut_done(af, NULL, &c, what, "accept");
        af = NULL;
        b = c ? tf_async_conn_base(c) : NULL;
        if (arc != TF_OK && !(tolerant && net_reason_ok(arc)))
            fail_msg("%s: accept: %s", what, tf_err_name(arc));
    } else if (arc != TF_OK && !(tolerant && net_reason_ok(arc))) {
        fail_msg("%s: accept refused: %s", what, tf_err_name(arc));
    }
    tf_future *left[2 * NET_MSGS];
    int nleft = 0;
    if (a && b) {
        /* client -> server, then server -> client; each op OK and exact, or (fatal answers
         * only) failed with a reason such a fault has */
        tf_conn *from[2] = {a, b}, *to[2] = {b, a};
        for (int d = 0; d < 2; d++) {
            uint8_t *msg[NET_MSGS];
            tf_future *sf[NET_MSGS] = {0}, *rf[NET_MSGS] = {0};
            tf_err src[NET_MSGS], rrc[NET_MSGS];
            /* receives first, unless the receiver is the sync end (its calls block): then the
             * (async) sends first */
            const bool sync_rx = (sync_client && d == 1) || (sync_server && d == 0);
            for (int i = 0; i < NET_MSGS; i++) {
                size_t len = (size_t)(i == 1 ? 100000 : 10 * i);
                msg[i] = malloc(len ? len : 1);
                tu_fill(msg[i], len, (uint32_t)(d * 10 + i));
                if (!sync_rx)
                    rrc[i] = tf_conn_recv_alloc(to[d], &rf[i]);
            }
            for (int i = 0; i < NET_MSGS; i++)
                src[i] = tf_conn_send(from[d], msg[i], (size_t)(i == 1 ? 100000 : 10 * i), &sf[i]);
            if (sync_rx) {
                int accepted = 0;
                for (int i = 0; i < NET_MSGS; i++)
                    accepted += src[i] == TF_OK;
                /* a blocking receive with no message coming would wait for ever: only as many
                 * as sends were accepted */
                for (int i = 0; i < NET_MSGS; i++)
                    rrc[i] = i < accepted ? tf_conn_recv_alloc(to[d], &rf[i]) : TF_ERR_NOMEM;
            }
            /* a refused submission (NOMEM) moves nothing: receive j gets the j-th accepted
             * send */
            int sent_idx[NET_MSGS], nsent = 0, j = 0;
            for (int i = 0; i < NET_MSGS; i++)
                if (src[i] == TF_OK)
                    sent_idx[nsent++] = i;
            for (int i = 0; i < NET_MSGS; i++) {
                size_t n = 0;
                void *got = NULL;
                tf_err se = src[i] == TF_OK ? fut_done(sf[i], NULL, NULL, what, "send") : src[i];
                if (rrc[i] == TF_OK && j >= nsent) {
                    /* a send was refused: no message for this receive; the free ends it */
                    left[nleft++] = rf[i];
                    free(msg[i]);
                    continue;
                }
                tf_err re = rrc[i] == TF_OK ? fut_done(rf[i], &n, &got, what, "recv") : rrc[i];
                if (se != TF_OK && !(tolerant && net_reason_ok(se)))
                    fail_msg("%s: send %d/%d: %s", what, d, i, tf_err_name(se));
                if (re != TF_OK && !(tolerant && net_reason_ok(re)))
                    fail_msg("%s: recv %d/%d: %s", what, d, i, tf_err_name(re));
                if (re == TF_OK) {
                    if (j >= nsent)
                        fail_msg("%s: recv %d/%d: a message nobody sent", what, d, i);
                    int k = sent_idx[j];
                    size_t len = (size_t)(k == 1 ? 100000 : 10 * k);
                    if (n != len || !tu_check(got, n, (uint32_t)(d * 10 + k)))
                        fail_msg("%s: recv %d/%d: wrong message (%zu bytes)", what, d, i, n);
                }
                if (rrc[i] == TF_OK)
                    j++;
                free(got);
                free(msg[i]);
            }
        }
    }
    tf_conn_free(a);
    tf_conn_free(b);
    for (int i = 0; i < nleft; i++) {
        tf_err e = fut_done(left[i], NULL, NULL, what, "receive left without a message");
        if (e == TF_OK)
            fail_msg("%s: a receive without a message succeeded", what);
    }
    if (sync_server) {
        if (!sync_taken) { /* the accept thread still waits: the shutdown ends it */
            tf_sync_server_shutdown(sx.s);
            tio_ctr_wait(&sx.done, 1, 30000);
            if (sx.c) /* it took a client after all */
                tf_sync_conn_free(sx.c);
            else if (sx.e != TF_ERR_SHUTDOWN && !(tolerant && net_reason_ok(sx.e)))
                fail_msg("%s: sync accept at shutdown: %s", what, tf_err_name(sx.e));
        }
        pthread_join(sat, NULL);
    }
    if (af) { /* the accept still pending: the server's shutdown resolves it */
        tf_async_server_shutdown(srv);
        tf_err e = fut_done(af, NULL, NULL, what, "pending accept");
        if (e != TF_OK && e != TF_ERR_SHUTDOWN && !(tolerant && net_reason_ok(e)))
            fail_msg("%s: pending accept: %s", what, tf_err_name(e));
    }
    atomic_store_explicit(&hk_armed, 0, memory_order_release);
    tf_async_client_free(cl);
    tf_async_server_free(srv);
    if (sync_server) {
        tf_sync_server_free(sx.s);
        tio_ctr_destroy(&sx.done);
    }
    assert_int_equal(tf_evb_free(evb), TF_OK);
    if (tu_fd_count() != fds0)
        fail_msg("%s: %d fds before, %d after", what, fds0, tu_fd_count());
}

static void net_matrix(int mode)
{
    static const char *const names[] = {"async client and server", "sync connect to async server",
                                        "async client to sync server"};
    const char *name = names[mode];
    char what[160];
    long count[TF__SYS_NOPS] = {0};
    hk_op = -1;
    hk_at = -1;
    hk_answer = A_NONE;
    for (int r = 0; r < 3; r++) {
        snprintf(what, sizeof what, "%s, counting run %d", name, r + 1);
        net_one(mode, what);
        for (int i = 0; i < TF__SYS_NOPS; i++)
            if (atomic_load(&hk_calls[i]) > count[i])
                count[i] = atomic_load(&hk_calls[i]);
    }
    const long stride = tio_iters("TF_FAULTS_STRIDE", 1, 1, 1);
    long points = 0, runs = 0;
    char counts[256] = "";
    for (int op = 0; op < TF__SYS_NOPS; op++) {
        int ans[4];
        int na = net_answers(op, ans);
        if (count[op] == 0 || na == 0)
            continue;
        size_t l = strlen(counts);
        snprintf(counts + l, sizeof counts - l, " %s %ld", op_name[op], count[op]);
        for (long k = 0; k < count[op] + 2; k++) {
            if (k >= 24 && (k % stride) != 0 && k != count[op] - 1)
                continue;
            points++;
            for (int a = 0; a < na; a++) {
                hk_op = op;
                hk_at = k;
                hk_answer = ans[a];
                snprintf(what, sizeof what, "%s, %s call %ld: %s", name, op_name[op], k,
                         answer_name[ans[a]]);
                net_one(mode, what);
                runs++;
                tio_tick();
            }
        }
    }
    hk_op = -1;
    matrix_total += runs;
    printf("faults: %s: calls:%s; %ld points, %ld runs\n", name, counts, points, runs);
}

static void test_faults_async_connect_accept(void **s) { (void)s; net_matrix(0); }
static void test_faults_sync_connect_accept(void **s) { (void)s; net_matrix(1); }
static void test_faults_sync_server_accept(void **s) { (void)s; net_matrix(2); }

static const scen SCEN[] = {
    {"sync small span", false, false, 6, {0, 1, 5, 100, 1000, 4000}},
    {"sync small alloc", false, true, 6, {0, 1, 5, 100, 1000, 4000}},
    {"sync large span", false, false, 3, {70000, 1, 300000}},
    {"sync large alloc", false, true, 3, {70000, 1, 300000}},
    {"async small span", true, false, 6, {0, 1, 5, 100, 1000, 4000}},
    {"async small alloc", true, true, 6, {0, 1, 5, 100, 1000, 4000}},
    {"async large span", true, false, 3, {70000, 1, 300000}},
    {"async large alloc", true, true, 3, {70000, 1, 300000}},
};

static void test_faults_sync_small_span(void **s) { (void)s; run_matrix(&SCEN[0]); }
static void test_faults_sync_small_alloc(void **s) { (void)s; run_matrix(&SCEN[1]); }
static void test_faults_sync_large_span(void **s) { (void)s; run_matrix(&SCEN[2]); }
static void test_faults_sync_large_alloc(void **s) { (void)s; run_matrix(&SCEN[3]); }
static void test_faults_async_small_span(void **s) { (void)s; run_matrix(&SCEN[4]); }
static void test_faults_async_small_alloc(void **s) { (void)s; run_matrix(&SCEN[5]); }
static void test_faults_async_large_span(void **s) { (void)s; run_matrix(&SCEN[6]); }
static void test_faults_async_large_alloc(void **s) { (void)s; run_matrix(&SCEN[7]); }

/* A failed test may leave the hook armed: disarm it before the next one. */
static int setup(void **state)
{
    atomic_store(&hk_armed, 0);
    hk_op = -1;
    return tio_watchdog_setup(state);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, tio_watchdog_teardown)

static int print_total(void **s)
{
    (void)s;
    printf("faults: matrix: %zu scenarios, %ld runs in all\n", sizeof SCEN / sizeof SCEN[0] + 3,
           matrix_total);
    return 0;
}

int main(void)
{
    tio_filter_from_env();
    hk_trace = getenv("TF_FAULTS_TRACE") && atoi(getenv("TF_FAULTS_TRACE")) > 0;
    atomic_store(&tf__sys_hook, hook);
    const struct CMUnitTest tests[] = {
        T(test_faults_sync_small_span),   T(test_faults_sync_small_alloc),
        T(test_faults_sync_large_span),   T(test_faults_sync_large_alloc),
        T(test_faults_async_small_span),  T(test_faults_async_small_alloc),
        T(test_faults_async_large_span),  T(test_faults_async_large_alloc),
        T(test_faults_async_connect_accept), T(test_faults_sync_connect_accept),
        T(test_faults_sync_server_accept),
    };
    return cmocka_run_group_tests(tests, NULL, print_total);
}
