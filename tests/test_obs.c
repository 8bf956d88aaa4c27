/* tests/test_obs.c -- observability (obs.h, SPEC 9.10): connection statistics of the async and
 * sync connections (messages and bytes each way, the queue, receives pending, pauses, the
 * poison, the size field), server statistics (accepted, rejected by reason, active,
 * handshakes, accept back-offs), the log hook (rejections, a turned-away client, timeouts, an
 * EMFILE rest or pause and a listen watch that failed, injected through the io/sys.c seam; the
 * level filter; off by default) and the connection events of async servers and clients (order
 * against on_accept / on_end, reasons).
 * Every test checks that no fd leaked. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <sys/socket.h>

#include "async_internal.h"
#include "tcpframe/async.h"
#include "tcpframe/obs.h"
#include "tcpframe/sync.h"
#include "test_io_util.h"
#include "tu_async.h"
#include "tu_net.h"
#include "tu_sync.h"

/* ---------------------------------------------------------------- helpers */

static tf_conn_stats astats(tf_async_conn *c)
{
    tf_conn_stats s;
    memset(&s, 0xAB, sizeof s);
    s.size = sizeof s;
    assert_int_equal(tf_async_conn_stats(c, &s), TF_OK);
    assert_int_equal(s.size, sizeof s);
    return s;
}

static tf_conn_stats sstats(const tf_sync_conn *c)
{
    tf_conn_stats s;
    memset(&s, 0xAB, sizeof s);
    s.size = sizeof s;
    assert_int_equal(tf_sync_conn_stats(c, &s), TF_OK);
    assert_int_equal(s.size, sizeof s);
    return s;
}

static tf_server_stats srv_astats(const tf_async_server *srv)
{
    tf_server_stats s;
    memset(&s, 0xAB, sizeof s);
    s.size = sizeof s;
    assert_int_equal(tf_async_server_stats(srv, &s), TF_OK);
    assert_int_equal(s.size, sizeof s);
    assert_int_equal(s.reserved, 0);
    return s;
}

static tf_server_stats srv_sstats(const tf_sync_server *srv)
{
    tf_server_stats s;
    memset(&s, 0xAB, sizeof s);
    s.size = sizeof s;
    assert_int_equal(tf_sync_server_stats(srv, &s), TF_OK);
    return s;
}

static tf_err fut_done(tf_future *fu, size_t *size, void **owned)
{
    assert_non_null(fu);
    assert_int_equal(tf_future_wait(fu), TF_OK);
    tf_err e = tf_future_get(fu, size, owned);
    tf_future_free(fu);
    return e;
}

/* The log hook's capture: every line, in order. */
enum { LOG_MAX = 32 };
typedef struct logcap {
    pthread_mutex_t mu;
    int n;
    tf_log_level level[LOG_MAX];
    char sub[LOG_MAX][32];
    char text[LOG_MAX][256];
    tio_ctr ctr;
} logcap;

static logcap g_log;

static void log_fn(tf_log_level level, const char *subsystem, const char *message, void *arg)
{
    logcap *l = arg;
    pthread_mutex_lock(&l->mu);
    if (l->n < LOG_MAX) {
        l->level[l->n] = level;
        snprintf(l->sub[l->n], sizeof l->sub[0], "%s", subsystem);
        snprintf(l->text[l->n], sizeof l->text[0], "%s", message);
        l->n++;
    }
    pthread_mutex_unlock(&l->mu);
    tio_ctr_add(&l->ctr, 1);
}

static void log_start(tf_log_level level)
{
    pthread_mutex_init(&g_log.mu, NULL);
    g_log.n = 0;
    tio_ctr_init(&g_log.ctr);
    assert_int_equal(tf_set_log(log_fn, &g_log, level), TF_OK);
}

static void log_end(void)
{
    assert_int_equal(tf_set_log(NULL, NULL, TF_LOG_OFF), TF_OK);
    tio_ctr_destroy(&g_log.ctr);
    pthread_mutex_destroy(&g_log.mu);
}

/* The index of the first line of |sub| containing |a| and |b|, or -1. */
static int log_find(const char *sub, const char *a, const char *b)
{
    int at = -1;
    pthread_mutex_lock(&g_log.mu);
    for (int i = 0; i < g_log.n && at < 0; i++)
        if (strcmp(g_log.sub[i], sub) == 0 && strstr(g_log.text[i], a) && strstr(g_log.text[i], b))
            at = i;
    pthread_mutex_unlock(&g_log.mu);
    return at;
}

/* A recorder of connection events (and of on_accept / on_end, as pseudo-events), in order. */
enum { EV_ACCEPT = 100, EV_END = 101, EV_MAX = 32 };
typedef struct evrec {
    pthread_mutex_t mu;
    int n;
    int ev[EV_MAX];
    tf_err err[EV_MAX];
    tf_async_conn *conn[EV_MAX];
    uint64_t msgs_recv[EV_MAX], bytes_recv[EV_MAX]; /* the connection's stats at the event */
    tio_ctr ctr;
    tio_ctr msgs; /* messages the server's stream got */
} evrec;

static void ev_init(evrec *r)
{
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->mu, NULL);
    tio_ctr_init(&r->ctr);
    tio_ctr_init(&r->msgs);
}

static void ev_destroy(evrec *r)
{
    tio_ctr_destroy(&r->ctr);
    tio_ctr_destroy(&r->msgs);
    pthread_mutex_destroy(&r->mu);
}

static void ev_add(evrec *r, tf_async_conn *c, int ev, tf_err err)
{
    tf_conn_stats s = {.size = sizeof s};
    TIO_CHECK_EQ(tf_async_conn_stats(c, &s), TF_OK);
    pthread_mutex_lock(&r->mu);
    if (r->n < EV_MAX) {
        r->ev[r->n] = ev;
        r->err[r->n] = err;
        r->conn[r->n] = c;
        r->msgs_recv[r->n] = s.msgs_recv;
        r->bytes_recv[r->n] = s.bytes_recv;
        r->n++;
    }
    pthread_mutex_unlock(&r->mu);
    tio_ctr_add(&r->ctr, 1);
}

static void on_event(tf_async_conn *c, tf_conn_event ev, tf_err err, int os_err, void *arg)
{
    (void)os_err;
    TIO_CHECK(c != NULL);
    ev_add(arg, c, (int)ev, err);
}

/* ---------------------------------------------------------------- async connection */

static const char TEN[] = "0123456789";

static void test_async_conn_stats_counts_messages_both_ways(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    tf_async_conn *a, *b;
    tu_pair_async(&f, NULL, &a, &b);
    tf_conn_stats s = astats(a);
    assert_int_equal(s.msgs_sent, 0);
    assert_int_equal(s.msgs_recv, 0);
    tf_future *r[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(tf_async_conn_recv_alloc(b, -1, &r[i]), TF_OK);
    assert_int_equal(astats(b).recv_pending, 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(tu_send_wait(a, TEN, 10), TF_OK);
    for (int i = 0; i < 3; i++) {
        void *m = NULL;
        size_t n = 0;
        assert_int_equal(fut_done(r[i], &n, &m), TF_OK);
        assert_int_equal(n, 10);
        free(m);
    }
    s = astats(a);
    assert_int_equal(s.msgs_sent, 3);
    assert_int_equal(s.bytes_sent, 30);
    assert_int_equal(s.msgs_recv, 0);
    assert_int_equal(s.bytes_recv, 0);
    assert_int_equal(s.queued_msgs, 0);
    assert_int_equal(s.queued_bytes, 0);
    assert_int_equal(s.err, TF_OK);
    assert_int_equal(s.pauses, 0);
    assert_int_equal(s.paused_ns, 0);
    s = astats(b);
    assert_int_equal(s.msgs_recv, 3);
    assert_int_equal(s.bytes_recv, 30);
    assert_int_equal(s.msgs_sent, 0);
    assert_int_equal(s.recv_pending, 0);
    /* and back, an empty message counts as a message of 0 bytes */
    assert_int_equal(tf_async_conn_recv_alloc(a, -1, &r[0]), TF_OK);
    assert_int_equal(tu_send_wait(b, NULL, 0), TF_OK);
    assert_int_equal(fut_done(r[0], NULL, NULL), TF_OK);
    assert_int_equal(astats(a).msgs_recv, 1);
    assert_int_equal(astats(a).bytes_recv, 0);
    assert_int_equal(astats(b).msgs_sent, 1);
    tf_async_conn_free(a);
    tf_async_conn_free(b);
    tu_fx_end(&f);
}

/* Stream mode counts too (a view delivered from the read buffer). */
static void on_stream_count(tf_async_conn *c, tf_err err, int os_err, const uint8_t *data,
                            size_t len, void *arg)
{
    (void)c, (void)os_err, (void)data, (void)len;
    if (err == TF_OK)
        tio_ctr_add(arg, 1);
}

static void test_async_conn_stats_stream(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    tf_async_conn *a, *b;
    tu_pair_async(&f, NULL, &a, &b);
    tio_ctr n;
    tio_ctr_init(&n);
    assert_int_equal(tf_async_conn_stream(b, on_stream_count, &n), TF_OK);
    for (int i = 0; i < 3; i++)
        assert_int_equal(tu_send_wait(a, TEN, 10), TF_OK);
    assert_true(tio_ctr_wait(&n, 3, 30000));
    tf_conn_stats s = astats(b);
    assert_int_equal(s.msgs_recv, 3);
    assert_int_equal(s.bytes_recv, 30);
    tf_async_conn_free(a);
    tf_async_conn_free(b);
    tu_fx_end(&f);
    tio_ctr_destroy(&n);
}

/* A peer that does not read: the queue fills, a send is refused with BUSY and the pause runs
 * until the queue drained. */
static void test_async_conn_stats_queue_and_pause(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    tf_tcp_config cfg = tu_cfg_default();
    cfg.send_queue_msgs = 2;
    int raw;
    tf_async_conn *c = tu_pair_raw(&f, &cfg, &raw);
    assert_true(tu_send_magic(raw));
    assert_true(tu_expect_magic(raw));
    enum { BIG = 4 << 20 };
    uint8_t *big = malloc(BIG);
    memset(big, 7, BIG);
    tf_future *s1, *s2, *s3 = NULL;
    assert_int_equal(tf_async_conn_send(c, big, BIG, -1, &s1), TF_OK);
    assert_int_equal(tf_async_conn_send(c, big, BIG, -1, &s2), TF_OK);
    assert_int_equal(astats(c).pauses, 0);
    assert_int_equal(tf_async_conn_send(c, big, BIG, -1, &s3), TF_ERR_BUSY);
    tf_conn_stats s = astats(c);
    assert_int_equal(s.queued_msgs, 2); /* 8 MiB cannot fit in a socketpair's buffer */
    assert_int_equal(s.queued_bytes, 2u * BIG);
    assert_int_equal(s.pauses, 1);
    uint64_t p1 = s.paused_ns;
    /* a second refusal is the same pause */
    assert_int_equal(tf_async_conn_send(c, big, BIG, -1, &s3), TF_ERR_BUSY);
    s = astats(c);
    assert_int_equal(s.pauses, 1);
    assert_true(s.paused_ns >= p1); /* under way: it grows */
    /* receives pending, beside */
    tf_future *r1, *r2;
    assert_int_equal(tf_async_conn_recv_alloc(c, -1, &r1), TF_OK);
    assert_int_equal(tf_async_conn_recv_alloc(c, -1, &r2), TF_OK);
    assert_int_equal(astats(c).recv_pending, 2);
    /* drain */
    uint8_t *sink = malloc(BIG);
    uint32_t len = 0;
    assert_true(tu_read_frame(raw, sink, BIG, &len));
    assert_int_equal(len, BIG);
    assert_true(tu_read_frame(raw, sink, BIG, &len));
    assert_int_equal(fut_done(s1, NULL, NULL), TF_OK);
    assert_int_equal(fut_done(s2, NULL, NULL), TF_OK);
    s = astats(c);
    assert_int_equal(s.queued_msgs, 0);
    assert_int_equal(s.queued_bytes, 0);
    assert_int_equal(s.msgs_sent, 2);
    assert_int_equal(s.bytes_sent, 2u * BIG);
    assert_int_equal(s.pauses, 1);
    assert_true(s.paused_ns > 0);
    assert_true(s.paused_ns >= p1);
    assert_int_equal(astats(c).paused_ns, s.paused_ns); /* over: it no longer grows */
    /* the receives complete, and the count falls */
    assert_true(tu_write_frame(raw, TEN, 10));
    assert_true(tu_write_frame(raw, TEN, 5));
    void *m = NULL;
    assert_int_equal(fut_done(r1, NULL, &m), TF_OK);
    free(m);
    m = NULL;
    assert_int_equal(fut_done(r2, NULL, &m), TF_OK);
    free(m);
    s = astats(c);
    assert_int_equal(s.recv_pending, 0);
    assert_int_equal(s.msgs_recv, 2);
    assert_int_equal(s.bytes_recv, 15);
    tf_async_conn_free(c);
    close(raw);
    free(sink);
    free(big);
    tu_fx_end(&f);
}

static void test_async_conn_stats_poison_and_half_close(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    int raw;
    tf_async_conn *c = tu_pair_raw(&f, NULL, &raw);
    assert_true(tu_send_magic(raw));
    assert_true(tu_expect_magic(raw));
    tf_future *r;
    assert_int_equal(tf_async_conn_recv_alloc(c, -1, &r), TF_OK);
    assert_true(tu_write_frame(raw, TEN, 10));
    void *m = NULL;
    assert_int_equal(fut_done(r, NULL, &m), TF_OK);
    free(m);
    /* the peer half-closes between messages: rx_end, no poison */
    assert_int_equal(tf_async_conn_recv_alloc(c, -1, &r), TF_OK);
    shutdown(raw, SHUT_WR);
    assert_int_equal(fut_done(r, NULL, NULL), TF_ERR_CLOSED);
    tf_conn_stats s = astats(c);
    assert_int_equal(s.err, TF_OK);
    assert_int_equal(s.rx_end, TF_ERR_CLOSED);
    assert_int_equal(s.msgs_recv, 1);
    tf_async_conn_free(c);
    close(raw);

    /* a close inside a frame: the poison */
    c = tu_pair_raw(&f, NULL, &raw);
    assert_true(tu_send_magic(raw));
    assert_true(tu_expect_magic(raw));
    assert_int_equal(tf_async_conn_recv_alloc(c, -1, &r), TF_OK);
    uint8_t part[7] = {0, 0, 0, 10, 'a', 'b', 'c'};
    assert_true(tu_write_all(raw, part, sizeof part));
    close(raw);
    assert_int_equal(fut_done(r, NULL, NULL), TF_ERR_TRUNCATED);
    s = astats(c);
    assert_int_equal(s.err, TF_ERR_TRUNCATED);
    assert_int_equal(s.os_err, 0);
    assert_int_equal(s.msgs_recv, 0);
    assert_int_equal(s.recv_pending, 0);
    tf_async_conn_free(c);
    tu_fx_end(&f);
}

/* The size field: older (smaller) and newer (larger) callers, refusals. */
static void test_conn_stats_size_field(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    tf_async_conn *a, *b;
    tu_pair_async(&f, NULL, &a, &b);
    assert_int_equal(tu_send_wait(a, TEN, 10), TF_OK);
    tf_conn_stats s;
    memset(&s, 0xAB, sizeof s);
    s.size = 0;
    assert_int_equal(tf_async_conn_stats(a, &s), TF_ERR_INVALID_ARGUMENT);
    assert_int_equal(tf_async_conn_stats(a, NULL), TF_ERR_INVALID_ARGUMENT);
    assert_int_equal(tf_async_conn_stats(NULL, &s), TF_ERR_INVALID_ARGUMENT);
    /* a caller whose struct ends after msgs_sent: nothing beyond it is written */
    size_t upto = offsetof(tf_conn_stats, bytes_sent);
    memset(&s, 0xAB, sizeof s);
    s.size = (uint32_t)upto;
    assert_int_equal(tf_async_conn_stats(a, &s), TF_OK);
    assert_int_equal(s.size, upto);
    assert_int_equal(s.msgs_sent, 1);
    const uint8_t *p = (const uint8_t *)&s;
    for (size_t i = upto; i < sizeof s; i++)
        assert_int_equal(p[i], 0xAB);
    /* a size that ends inside a field leaves that field out (no torn counter) */
    for (size_t cut = 1; cut < 8; cut++) {
        memset(&s, 0xAB, sizeof s);
        s.size = (uint32_t)(upto + cut);
        assert_int_equal(tf_async_conn_stats(a, &s), TF_OK);
        assert_int_equal(s.size, upto);
        for (size_t i = upto; i < sizeof s; i++)
            assert_int_equal(p[i], 0xAB);
    }
    memset(&s, 0xAB, sizeof s);
    s.size = 6; /* inside err */
    assert_int_equal(tf_async_conn_stats(a, &s), TF_OK);
    assert_int_equal(s.size, 4);
    /* a newer caller with a larger struct: ours is written, size says how much */
    struct {
        tf_conn_stats s;
        uint64_t later[4];
    } big;
    memset(&big, 0xCD, sizeof big);
    big.s.size = sizeof big;
    assert_int_equal(tf_async_conn_stats(a, &big.s), TF_OK);
    assert_int_equal(big.s.size, sizeof(tf_conn_stats));
    assert_int_equal(big.s.bytes_sent, 10);
    assert_int_equal(big.later[3], 0xCDCDCDCDCDCDCDCDull);
    tf_server_stats ss = {.size = 2};
    assert_int_equal(tf_sync_server_stats(NULL, &ss), TF_ERR_INVALID_ARGUMENT);
    tf_async_conn_free(a);
    tf_async_conn_free(b);
    tu_fx_end(&f);
}

/* ---------------------------------------------------------------- sync connection */

typedef struct sync_rx {
    tf_sync_conn *c;
    tf_err err;
    size_t len;
} sync_rx;

static void *sync_recv_main(void *p)
{
    sync_rx *x = p;
    char buf[64];
    x->err = tf_sync_conn_recv(x->c, buf, sizeof buf, &x->len, 30000);
    return NULL;
}

static void test_sync_conn_stats_counts_messages_both_ways(void **state)
{
    (void)state;
    int fds0 = tu_fd_count();
    tf_sync_conn *s, *c;
    tu_lib_pair("127.0.0.1", NULL, &s, &c);
    for (int i = 0; i < 3; i++)
        assert_int_equal(tf_sync_conn_send(c, TEN, 10, 10000), TF_OK);
    char buf[16];
    size_t n = 0;
    assert_int_equal(tf_sync_conn_recv(s, buf, sizeof buf, &n, 10000), TF_OK);
    assert_int_equal(tf_sync_conn_recv(s, buf, sizeof buf, &n, 10000), TF_OK);
    void *m = NULL;
    assert_int_equal(tf_sync_conn_recv_alloc(s, &m, &n, 10000), TF_OK);
    free(m);
    tf_conn_stats st = sstats(c);
    assert_int_equal(st.msgs_sent, 3);
    assert_int_equal(st.bytes_sent, 30);
    assert_int_equal(st.msgs_recv, 0);
    assert_int_equal(st.queued_msgs, 0);
    assert_int_equal(st.err, TF_OK);
    st = sstats(s);
    assert_int_equal(st.msgs_recv, 3);
    assert_int_equal(st.bytes_recv, 30);
    assert_int_equal(st.recv_pending, 0);
    /* a receive blocked on another thread shows as pending */
    sync_rx x = {.c = s};
    pthread_t t;
    pthread_create(&t, NULL, sync_recv_main, &x);
    long long dl = tio_now_ms() + 30000;
    while (sstats(s).recv_pending != 1 && tio_now_ms() < dl)
        tu_nap(1);
    assert_int_equal(sstats(s).recv_pending, 1);
    assert_int_equal(tf_sync_conn_send(c, TEN, 4, 10000), TF_OK);
    pthread_join(t, NULL);
    assert_int_equal(x.err, TF_OK);
    assert_int_equal(x.len, 4);
    st = sstats(s);
    assert_int_equal(st.recv_pending, 0);
    assert_int_equal(st.msgs_recv, 4);
    assert_int_equal(st.bytes_recv, 34);
    /* the peer's half-close */
    assert_int_equal(tf_sync_conn_shutdown(c), TF_OK);
    assert_int_equal(tf_sync_conn_recv(s, buf, sizeof buf, &n, 10000), TF_ERR_CLOSED);
    st = sstats(s);
    assert_int_equal(st.rx_end, TF_ERR_CLOSED);
    assert_int_equal(st.err, TF_OK);
    tf_sync_conn_free(s);
    tf_sync_conn_free(c);
    assert_int_equal(tu_fd_count(), fds0);
}

/* A send into a peer that does not read waits for room: a pause, until its timeout. */
static void test_sync_conn_stats_pause_and_poison(void **state)
{
    (void)state;
    int fds0 = tu_fd_count();
    int raw;
    tf_sync_conn *c = tu_raw_pair("127.0.0.1", NULL, &raw);
    enum { BIG = 16 << 20 };
    uint8_t *big = calloc(1, BIG);
    assert_int_equal(tf_sync_conn_send(c, big, BIG, 100), TF_ERR_TIMEOUT);
    tf_conn_stats st = sstats(c);
    assert_true(st.pauses >= 1);
    /* the send polled until its deadline: at least the 100 ms less the first write's time */
    assert_true(st.paused_ns >= 50u * 1000000u);
    assert_int_equal(st.err, TF_ERR_TIMEOUT); /* part of the frame had moved */
    assert_int_equal(st.msgs_sent, 0);
    assert_int_equal(st.queued_msgs, 0);
    assert_int_equal(st.queued_bytes, 0);
    assert_int_equal(sstats(c).paused_ns, st.paused_ns); /* over */
    tf_sync_conn_free(c);
    close(raw);
    free(big);
    assert_int_equal(tu_fd_count(), fds0);
}

/* ---------------------------------------------------------------- async server and client */

typedef struct srvctx {
    evrec ev;
} srvctx;

static void srv_on_end(tf_async_conn *c, tf_err err, int os_err, void *arg)
{
    (void)os_err;
    ev_add(arg, c, EV_END, err);
    tf_async_conn_free(c);
}

static void srv_stream(tf_async_conn *c, tf_err err, int os_err, const uint8_t *data, size_t len,
                       void *arg)
{
    (void)os_err, (void)data, (void)len;
    evrec *r = arg;
    if (err == TF_OK) {
        tio_ctr_add(&r->msgs, 1);
        return;
    }
    if (err == TF_ERR_CLOSED) { /* the client is done: close, on_end frees */
        tf_future *fu;
        if (tf_async_conn_close(c, &fu) == TF_OK)
            tf_future_free(fu);
    }
}

static void srv_on_accept(tf_async_server *s, tf_async_conn *c, void *arg)
{
    (void)s;
    ev_add(arg, c, EV_ACCEPT, TF_OK);
    TIO_CHECK_EQ(tf_async_conn_on_end(c, srv_on_end, arg), TF_OK);
    TIO_CHECK_EQ(tf_async_conn_stream(c, srv_stream, arg), TF_OK);
}

static void test_async_server_stats_events_and_log(void **state)
{
    (void)state;
    int fds0 = tu_fd_count();
    log_start(TF_LOG_WARN);
    evrec sev, cev;
    ev_init(&sev);
    ev_init(&cev);
    tf_evb *evb;
    assert_int_equal(tf_evb_new(&evb), TF_OK);
    assert_int_equal(tf_evb_start(evb), TF_OK);
    tf_async_server *srv;
    assert_int_equal(tf_async_server_new(evb, &srv), TF_OK);
    assert_int_equal(tf_async_server_on_event(srv, on_event, &sev), TF_OK);
    tf_async_server_on_accept(srv, srv_on_accept, &sev);
    assert_int_equal(tf_async_server_init(srv, "127.0.0.1:0", NULL, NULL), TF_OK);
    char addr[TF_ADDRSTR_LEN];
    assert_int_equal(tf_async_server_addr(srv, addr, sizeof addr), TF_OK);
    tf_server_stats ss = srv_astats(srv);
    assert_int_equal(ss.accepted, 0);
    assert_int_equal(ss.rejected, 0);
    assert_int_equal(ss.active, 0);

    /* a good client: 3 messages of 10 bytes */
    tf_async_client *cl;
    assert_int_equal(tf_async_client_new(evb, NULL, &cl, NULL), TF_OK);
    assert_int_equal(tf_async_client_on_event(cl, on_event, &cev), TF_OK);
    tf_future *fu;
    assert_int_equal(tf_async_client_connect(cl, addr, &fu, NULL), TF_OK);
    void *cc = NULL;
    assert_int_equal(fut_done(fu, NULL, &cc), TF_OK);
    assert_int_equal(tio_ctr_get(&cev.ctr), 1); /* CONNECTED came before the future */
    for (int i = 0; i < 3; i++)
        assert_int_equal(tu_send_wait(cc, TEN, 10), TF_OK);
    assert_true(tio_ctr_wait(&sev.msgs, 3, 30000));
    ss = srv_astats(srv);
    assert_int_equal(ss.accepted, 1);
    assert_int_equal(ss.active, 1);
    assert_int_equal(ss.handshaking, 0);
    assert_int_equal(ss.rejected, 0);

    /* a client with the wrong magic */
    int bad = tu_raw_connect(addr);
    assert_true(bad >= 0);
    char bad_peer[TF_ADDRSTR_LEN];
    struct sockaddr_in me;
    socklen_t ml = sizeof me;
    assert_int_equal(getsockname(bad, (struct sockaddr *)&me, &ml), 0);
    snprintf(bad_peer, sizeof bad_peer, "127.0.0.1:%d", ntohs(me.sin_port));
    assert_true(tu_expect_magic(bad));
    assert_true(tu_write_all(bad, "HTTP", 4));
    assert_true(tu_readable(bad, 10000)); /* closed by the server */
    close(bad);
    assert_true(tio_ctr_wait(&sev.ctr, 3, 30000)); /* CONNECTED, ACCEPT, HANDSHAKE_FAILED */
    assert_true(tio_ctr_wait(&g_log.ctr, 1, 30000));
    ss = srv_astats(srv);
    assert_int_equal(ss.rejected, 1);
    assert_int_equal(ss.rej_bad_magic, 1);
    assert_int_equal(ss.rej_timeout + ss.rej_closed + ss.rej_busy + ss.rej_io + ss.rej_other, 0);
    assert_int_equal(ss.accepted, 1);
    /* the rejected connection leaves the active count when the loop has finished with it */
    long long dl = tio_now_ms() + 30000;
    while (srv_astats(srv).active != 1 && tio_now_ms() < dl)
        tu_nap(1);
    assert_int_equal(srv_astats(srv).active, 1);
    assert_int_equal(tf_async_server_rejected(srv), 1);
    int at = log_find("async_server", bad_peer, "rejected");
    if (at < 0)
        fail_msg("no log line names %s: [%s]", bad_peer, g_log.n ? g_log.text[0] : "");
    assert_int_equal(g_log.level[at], TF_LOG_WARN);
    assert_non_null(strstr(g_log.text[at], tf_strerror(TF_ERR_BAD_MAGIC)));

    /* the client frees its connection: its CLOSED (CANCELLED) inside the free; the server's
     * stream ends (CLOSED), its close ends: CLOSED, then on_end */
    tf_async_conn_free(cc);
    assert_int_equal(tio_ctr_get(&cev.ctr), 2);
    assert_true(tio_ctr_wait(&sev.ctr, 5, 30000));
    pthread_mutex_lock(&cev.mu);
    assert_int_equal(cev.ev[0], TF_CONN_CONNECTED);
    assert_int_equal(cev.err[0], TF_OK);
    assert_int_equal(cev.ev[1], TF_CONN_CLOSED);
    assert_int_equal(cev.err[1], TF_ERR_CANCELLED);
    assert_ptr_equal(cev.conn[0], cev.conn[1]);
    pthread_mutex_unlock(&cev.mu);
    pthread_mutex_lock(&sev.mu);
    assert_int_equal(sev.n, 5);
    assert_int_equal(sev.ev[0], TF_CONN_CONNECTED); /* before on_accept */
    assert_int_equal(sev.ev[1], EV_ACCEPT);
    assert_ptr_equal(sev.conn[0], sev.conn[1]);
    assert_int_equal(sev.ev[2], TF_CONN_HANDSHAKE_FAILED);
    assert_int_equal(sev.err[2], TF_ERR_BAD_MAGIC);
    assert_int_equal(sev.ev[3], TF_CONN_CLOSED); /* before on_end, with the same reason */
    assert_int_equal(sev.err[3], TF_ERR_CLOSED);
    assert_ptr_equal(sev.conn[3], sev.conn[0]);
    assert_int_equal(sev.msgs_recv[3], 3); /* the stats read in the event */
    assert_int_equal(sev.bytes_recv[3], 30);
    assert_int_equal(sev.ev[4], EV_END);
    assert_int_equal(sev.err[4], TF_ERR_CLOSED);
    pthread_mutex_unlock(&sev.mu);
    dl = tio_now_ms() + 30000;
    while (srv_astats(srv).active != 0 && tio_now_ms() < dl)
        tu_nap(1);
    ss = srv_astats(srv);
    assert_int_equal(ss.active, 0);
    assert_int_equal(ss.accepted, 1);

    tf_async_client_free(cl);
    tf_async_server_free(srv);
    assert_int_equal(tf_evb_free(evb), TF_OK);
    ev_destroy(&sev);
    ev_destroy(&cev);
    log_end();
    assert_int_equal(tu_fd_count(), fds0);
}

/* max_conns: the second client is turned away (BUSY), counted under rej_busy and logged. */
static void test_async_server_stats_busy(void **state)
{
    (void)state;
    int fds0 = tu_fd_count();
    log_start(TF_LOG_WARN);
    tf_evb *evb;
    assert_int_equal(tf_evb_new(&evb), TF_OK);
    assert_int_equal(tf_evb_start(evb), TF_OK);
    tf_async_server *srv;
    assert_int_equal(tf_async_server_new(evb, &srv), TF_OK);
    tf_tcp_config cfg = tu_cfg_default();
    cfg.max_conns = 1;
    cfg.handshake_timeout_ms = 600000; /* the first client holds its place for the test */
    assert_int_equal(tf_async_server_init(srv, "127.0.0.1:0", &cfg, NULL), TF_OK);
    char addr[TF_ADDRSTR_LEN];
    assert_int_equal(tf_async_server_addr(srv, addr, sizeof addr), TF_OK);
    int one = tu_raw_connect(addr);
    assert_true(tu_expect_magic(one)); /* in its handshake: it holds the one place */
    tf_server_stats ss = srv_astats(srv);
    assert_int_equal(ss.handshaking, 1);
    assert_int_equal(ss.active, 1);
    int two = tu_raw_connect(addr);
    assert_true(tu_readable(two, 10000)); /* closed at once */
    assert_true(tio_ctr_wait(&g_log.ctr, 1, 30000));
    ss = srv_astats(srv);
    assert_int_equal(ss.rej_busy, 1);
    assert_int_equal(ss.rejected, 1);
    assert_true(log_find("async_server", "127.0.0.1:", "max_conns") >= 0);
    close(two);
    close(one);
    tf_async_server_free(srv);
    assert_int_equal(tf_evb_free(evb), TF_OK);
    log_end();
    assert_int_equal(tu_fd_count(), fds0);
}

/* The client's handshake fails against a server with the wrong magic: HANDSHAKE_FAILED before
 * the future fails, then nothing more. */
static void test_async_client_event_handshake_failed(void **state)
{
    (void)state;
    int fds0 = tu_fd_count();
    evrec cev;
    ev_init(&cev);
    int port;
    int lfd = tu_raw_listen(false, &port);
    assert_true(lfd >= 0);
    char addr[TF_ADDRSTR_LEN];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    tf_evb *evb;
    assert_int_equal(tf_evb_new(&evb), TF_OK);
    assert_int_equal(tf_evb_start(evb), TF_OK);
    tf_async_client *cl;
    assert_int_equal(tf_async_client_new(evb, NULL, &cl, NULL), TF_OK);
    assert_int_equal(tf_async_client_on_event(cl, on_event, &cev), TF_OK);
    tf_future *fu;
    assert_int_equal(tf_async_client_connect(cl, addr, &fu, NULL), TF_OK);
    int peer = accept(lfd, NULL, NULL);
    assert_true(peer >= 0);
    assert_true(tu_write_all(peer, "HTTP", 4));
    assert_int_equal(fut_done(fu, NULL, NULL), TF_ERR_BAD_MAGIC);
    assert_int_equal(tio_ctr_get(&cev.ctr), 1);
    pthread_mutex_lock(&cev.mu);
    assert_int_equal(cev.ev[0], TF_CONN_HANDSHAKE_FAILED);
    assert_int_equal(cev.err[0], TF_ERR_BAD_MAGIC);
    pthread_mutex_unlock(&cev.mu);
    tf_async_client_free(cl);
    assert_int_equal(tf_evb_free(evb), TF_OK);
    assert_int_equal(tio_ctr_get(&cev.ctr), 1);
    close(peer);
    close(lfd);
    ev_destroy(&cev);
    assert_int_equal(tu_fd_count(), fds0);
}

/* The client freed or cancelled inside its own event (CONNECTED, HANDSHAKE_FAILED): allowed by
 * async.h, and before the fix a use-after-free (the attempt finished a second time, and the
 * client's memory read after the free). Freed: the connect ends CANCELLED; cancelled: the
 * connect that just completed keeps its outcome. ASan checks the memory. */
typedef struct selfish {
    tf_async_client *cl;
    bool cancel;
    atomic_int events;
} selfish;

static void free_self_event(tf_async_conn *c, tf_conn_event ev, tf_err err, int os_err, void *arg)
{
    (void)c, (void)ev, (void)err, (void)os_err;
    selfish *sf = arg;
    atomic_fetch_add(&sf->events, 1);
    if (sf->cancel) {
        TIO_CHECK_EQ(tf_async_client_cancel(sf->cl), TF_OK);
    } else if (sf->cl) {
        tf_async_client_free(sf->cl);
        sf->cl = NULL;
    }
}

static void test_async_client_freed_or_cancelled_in_its_event(void **state)
{
    (void)state;
    int fds0 = tu_fd_count();
    for (int mode = 0; mode < 4; mode++) { /* bit 0: good magic; bit 1: cancel, not free */
        int port;
        int lfd = tu_raw_listen(false, &port);
        assert_true(lfd >= 0);
        char addr[TF_ADDRSTR_LEN];
        snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
        tf_evb *evb;
        assert_int_equal(tf_evb_new(&evb), TF_OK);
        assert_int_equal(tf_evb_start(evb), TF_OK);
        selfish sf = {.cancel = (mode & 2) != 0};
        assert_int_equal(tf_async_client_new(evb, NULL, &sf.cl, NULL), TF_OK);
        assert_int_equal(tf_async_client_on_event(sf.cl, free_self_event, &sf), TF_OK);
        tf_future *fu;
        assert_int_equal(tf_async_client_connect(sf.cl, addr, &fu, NULL), TF_OK);
        int peer = accept(lfd, NULL, NULL);
        assert_true(peer >= 0);
        assert_true(tu_write_all(peer, (mode & 1) ? "UNIF" : "HTTP", 4));
        void *conn = NULL;
        tf_err e = fut_done(fu, NULL, &conn);
        if (mode == 0 || mode == 2)
            assert_int_equal(e, TF_ERR_BAD_MAGIC);
        else if (mode == 1)
            assert_int_equal(e, TF_ERR_CANCELLED); /* the client was freed in CONNECTED */
        else
            assert_int_equal(e, TF_OK); /* cancelled in CONNECTED: this connect had completed */
        assert_int_equal(atomic_load(&sf.events), 1);
        tf_async_conn_free(conn);
        tf_async_client_free(sf.cl); /* NULL when freed in the event */
        assert_int_equal(tf_evb_free(evb), TF_OK);
        close(peer);
        close(lfd);
    }
    assert_int_equal(tu_fd_count(), fds0);
}

/* An idle connection dropped by idle_timeout_ms is logged with its reason. */
static void test_log_idle_timeout_drop(void **state)
{
    (void)state;
    log_start(TF_LOG_WARN);
    tu_fx f;
    tu_fx_start(&f);
    tf_tcp_config cfg = tu_cfg_default();
    cfg.idle_timeout_ms = 20;
    tf_async_conn *a, *b;
    tu_pair_async(&f, &cfg, &a, &b);
    assert_true(tio_ctr_wait(&g_log.ctr, 1, 30000));
    assert_true(log_find("async_conn", "dropped", "idle_timeout_ms") >= 0);
    tf_async_conn_free(a);
    tf_async_conn_free(b);
    tu_fx_end(&f);
    log_end();
}

/* ---------------------------------------------------------------- sync server */

typedef struct acceptor {
    tf_sync_server *srv;
    tf_sync_conn *c;
    tf_err err;
} acceptor;

static void *accept_main(void *p)
{
    acceptor *a = p;
    a->err = tf_sync_server_accept(a->srv, &a->c, NULL, NULL);
    return NULL;
}

static void bad_client(const char *addr)
{
    int bad = tu_raw_connect(addr);
    assert_true(bad >= 0);
    assert_true(tu_expect_magic(bad));
    assert_true(tu_write_all(bad, "HTTP", 4));
    assert_true(tu_readable(bad, 10000)); /* closed by the accepting thread */
    close(bad);
}

static void test_sync_server_stats_and_log(void **state)
{
    (void)state;
    int fds0 = tu_fd_count();
    log_start(TF_LOG_ERROR); /* rejections are WARN: filtered out first */
    char addr[TF_ADDRSTR_LEN];
    tf_sync_server *srv = tu_listen("127.0.0.1", NULL, addr, sizeof addr);
    acceptor a = {.srv = srv};
    pthread_t t;
    pthread_create(&t, NULL, accept_main, &a);
    bad_client(addr);
    long long dl = tio_now_ms() + 30000;
    while (srv_sstats(srv).rejected < 1 && tio_now_ms() < dl)
        tu_nap(1);
    tf_server_stats ss = srv_sstats(srv);
    assert_int_equal(ss.rejected, 1);
    assert_int_equal(ss.rej_bad_magic, 1);
    assert_int_equal(tio_ctr_get(&g_log.ctr), 0);
    assert_int_equal(tf_set_log(log_fn, &g_log, TF_LOG_WARN), TF_OK);
    bad_client(addr);
    assert_true(tio_ctr_wait(&g_log.ctr, 1, 30000));
    assert_true(log_find("sync_server", "127.0.0.1:", "rejected") >= 0);
    tf_sync_conn *c = NULL;
    tf_errmsg msg;
    assert_int_equal(tf_sync_connect(addr, NULL, &c, NULL, &msg), TF_OK);
    pthread_join(t, NULL);
    assert_int_equal(a.err, TF_OK);
    ss = srv_sstats(srv);
    assert_int_equal(ss.accepted, 1);
    assert_int_equal(ss.active, 1);
    assert_int_equal(ss.rejected, 2);
    assert_int_equal(ss.rej_bad_magic, 2);
    assert_int_equal(ss.handshaking, 0);
    tf_sync_conn_free(a.c);
    assert_int_equal(srv_sstats(srv).active, 0);
    /* the count outlives the server */
    tf_sync_server_free(srv);
    tf_sync_conn_free(c);
    log_end();
    assert_int_equal(tu_fd_count(), fds0);
}

/* Events of the sync server: HANDSHAKE_FAILED (no connection, the peer named), CONNECTED
 * before accept returns, CLOSED in the free with the reason (CLOSED after the peer's
 * half-close, CANCELLED when freed while open), the statistics readable in it; none after the
 * server's free. */
typedef struct sev_rec {
    pthread_mutex_t mu;
    int n;
    int ev[EV_MAX];
    tf_err err[EV_MAX];
    tf_sync_conn *conn[EV_MAX];
    char peer[EV_MAX][TF_ADDRSTR_LEN];
    uint64_t msgs_recv[EV_MAX];
} sev_rec;

static void on_sync_event(tf_sync_conn *c, const char *peer, tf_conn_event ev, tf_err err,
                          int os_err, void *arg)
{
    (void)os_err;
    sev_rec *r = arg;
    uint64_t msgs = 0;
    if (c) {
        tf_conn_stats st = {.size = sizeof st};
        TIO_CHECK_EQ(tf_sync_conn_stats(c, &st), TF_OK);
        msgs = st.msgs_recv;
    }
    pthread_mutex_lock(&r->mu);
    if (r->n < EV_MAX) {
        r->ev[r->n] = (int)ev;
        r->err[r->n] = err;
        r->conn[r->n] = c;
        snprintf(r->peer[r->n], sizeof r->peer[0], "%s", peer);
        r->msgs_recv[r->n] = msgs;
        r->n++;
    }
    pthread_mutex_unlock(&r->mu);
}

static tf_sync_conn *accept_one(tf_sync_server *srv, const char *addr, tf_sync_conn **client)
{
    acceptor a = {.srv = srv};
    pthread_t t;
    pthread_create(&t, NULL, accept_main, &a);
    assert_int_equal(tf_sync_connect(addr, NULL, client, NULL, NULL), TF_OK);
    pthread_join(t, NULL);
    assert_int_equal(a.err, TF_OK);
    return a.c;
}

static void test_sync_server_events(void **state)
{
    (void)state;
    int fds0 = tu_fd_count();
    sev_rec r;
    memset(&r, 0, sizeof r);
    pthread_mutex_init(&r.mu, NULL);
    char addr[TF_ADDRSTR_LEN];
    tf_sync_server *srv = tu_listen("127.0.0.1", NULL, addr, sizeof addr);
    assert_int_equal(tf_sync_server_on_event(srv, on_sync_event, &r), TF_OK);
    assert_int_equal(tf_sync_server_on_event(NULL, on_sync_event, &r), TF_ERR_INVALID_ARGUMENT);
    /* a wrong magic, then a good client that sends 3 messages and half-closes */
    acceptor a = {.srv = srv};
    pthread_t t;
    pthread_create(&t, NULL, accept_main, &a);
    bad_client(addr);
    tf_sync_conn *c1;
    assert_int_equal(tf_sync_connect(addr, NULL, &c1, NULL, NULL), TF_OK);
    pthread_join(t, NULL);
    assert_int_equal(a.err, TF_OK);
    pthread_mutex_lock(&r.mu);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.ev[0], TF_CONN_HANDSHAKE_FAILED);
    assert_int_equal(r.err[0], TF_ERR_BAD_MAGIC);
    assert_null(r.conn[0]);
    assert_non_null(strstr(r.peer[0], "127.0.0.1:"));
    assert_int_equal(r.ev[1], TF_CONN_CONNECTED);
    assert_ptr_equal(r.conn[1], a.c);
    pthread_mutex_unlock(&r.mu);
    for (int i = 0; i < 3; i++)
        assert_int_equal(tf_sync_conn_send(c1, TEN, 10, 10000), TF_OK);
    assert_int_equal(tf_sync_conn_shutdown(c1), TF_OK);
    char buf[16];
    size_t n;
    for (int i = 0; i < 3; i++)
        assert_int_equal(tf_sync_conn_recv(a.c, buf, sizeof buf, &n, 10000), TF_OK);
    assert_int_equal(tf_sync_conn_recv(a.c, buf, sizeof buf, &n, 10000), TF_ERR_CLOSED);
    tf_sync_conn *s1 = a.c;
    tf_sync_conn_free(s1);
    pthread_mutex_lock(&r.mu);
    assert_int_equal(r.n, 3);
    assert_int_equal(r.ev[2], TF_CONN_CLOSED);
    assert_int_equal(r.err[2], TF_ERR_CLOSED);
    assert_int_equal(r.msgs_recv[2], 3);
    assert_string_equal(r.peer[2], r.peer[1]);
    pthread_mutex_unlock(&r.mu);
    /* freed while open: CANCELLED */
    tf_sync_conn *c2;
    tf_sync_conn *s2 = accept_one(srv, addr, &c2);
    tf_sync_conn_free(s2);
    pthread_mutex_lock(&r.mu);
    assert_int_equal(r.n, 5);
    assert_int_equal(r.ev[3], TF_CONN_CONNECTED);
    assert_int_equal(r.ev[4], TF_CONN_CLOSED);
    assert_int_equal(r.err[4], TF_ERR_CANCELLED);
    pthread_mutex_unlock(&r.mu);
    /* none after the server's free */
    tf_sync_conn *c3;
    tf_sync_conn *s3 = accept_one(srv, addr, &c3);
    tf_sync_server_free(srv);
    tf_sync_conn_free(s3);
    pthread_mutex_lock(&r.mu);
    assert_int_equal(r.n, 6);
    assert_int_equal(r.ev[5], TF_CONN_CONNECTED);
    pthread_mutex_unlock(&r.mu);
    tf_sync_conn_free(c1);
    tf_sync_conn_free(c2);
    tf_sync_conn_free(c3);
    pthread_mutex_destroy(&r.mu);
    assert_int_equal(tu_fd_count(), fds0);
}

/* ---------------------------------------------------------------- accept back-offs, watches */

/* The seam's hook: the next |emfile_left| accept4 calls fail with EMFILE; the next
 * |watch_fails| epoll_ctl calls on a listening socket with ENOMEM. */
static atomic_int emfile_left, watch_fails;

static int hook_faults(tf__sys_op op, int fd, size_t *len)
{
    (void)len;
    if (op == TF__SYS_ACCEPT4 && atomic_fetch_sub(&emfile_left, 1) > 0)
        return EMFILE;
    if (op == TF__SYS_EPOLL_CTL) {
        int on = 0;
        socklen_t l = sizeof on;
        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &l) == 0 && on &&
            atomic_fetch_sub(&watch_fails, 1) > 0)
            return ENOMEM;
    }
    return 0;
}

/* Async: EMFILE in accept rests the listen socket (logged, counted); a listen watch that
 * could not be registered is logged and retried; the client is served after both. */
static void test_async_server_log_rest_and_watch(void **state)
{
    (void)state;
    int fds0 = tu_fd_count();
    log_start(TF_LOG_WARN);
    tf_evb *evb;
    assert_int_equal(tf_evb_new(&evb), TF_OK);
    assert_int_equal(tf_evb_start(evb), TF_OK);
    atomic_store(&watch_fails, 1);
    atomic_store(&emfile_left, 1);
    atomic_store(&tf__sys_hook, hook_faults);
    tf_async_server *srv;
    assert_int_equal(tf_async_server_new(evb, &srv), TF_OK);
    assert_int_equal(tf_async_server_init(srv, "127.0.0.1:0", NULL, NULL), TF_OK);
    char addr[TF_ADDRSTR_LEN];
    assert_int_equal(tf_async_server_addr(srv, addr, sizeof addr), TF_OK);
    int raw = tu_raw_connect(addr);
    assert_true(raw >= 0);
    assert_true(tu_expect_magic(raw)); /* accepted after the rests */
    atomic_store(&tf__sys_hook, NULL);
    assert_true(atomic_load(&watch_fails) <= 0); /* it failed once */
    assert_true(atomic_load(&emfile_left) <= 0);
    assert_true(log_find("async_server", "listen socket's watch", "resting") >= 0);
    int at = log_find("async_server", "accept: ", "resting");
    assert_true(at >= 0);
    assert_non_null(strstr(g_log.text[at], strerror(EMFILE)));
    tf_server_stats ss = srv_astats(srv);
    assert_int_equal(ss.accept_rests, 2);
    close(raw);
    tf_async_server_free(srv);
    assert_int_equal(tf_evb_free(evb), TF_OK);
    log_end();
    assert_int_equal(tu_fd_count(), fds0);
}

/* Sync: EMFILE in accept makes it pause (logged, counted), then the client is accepted. */
static void test_sync_server_log_accept_pause(void **state)
{
    (void)state;
    int fds0 = tu_fd_count();
    log_start(TF_LOG_WARN);
    char addr[TF_ADDRSTR_LEN];
    tf_sync_server *srv = tu_listen("127.0.0.1", NULL, addr, sizeof addr);
    atomic_store(&emfile_left, 1);
    atomic_store(&tf__sys_hook, hook_faults);
    acceptor a = {.srv = srv};
    pthread_t t;
    pthread_create(&t, NULL, accept_main, &a);
    tf_sync_conn *c = NULL;
    assert_int_equal(tf_sync_connect(addr, NULL, &c, NULL, NULL), TF_OK);
    pthread_join(t, NULL);
    atomic_store(&tf__sys_hook, NULL);
    assert_int_equal(a.err, TF_OK);
    int at = log_find("sync_server", "accept: ", "pausing");
    assert_true(at >= 0);
    assert_non_null(strstr(g_log.text[at], strerror(EMFILE)));
    tf_server_stats ss = srv_sstats(srv);
    assert_int_equal(ss.accept_rests, 1);
    assert_int_equal(ss.accepted, 1);
    tf_sync_conn_free(a.c);
    tf_sync_conn_free(c);
    tf_sync_server_free(srv);
    log_end();
    assert_int_equal(tu_fd_count(), fds0);
}

/* ---------------------------------------------------------------- the hook itself */

static void test_set_log_arguments(void **state)
{
    (void)state;
    assert_int_equal(atomic_load(&tf__log_level), TF_LOG_OFF); /* off by default */
    assert_int_equal(tf_set_log(log_fn, NULL, (tf_log_level)5), TF_ERR_INVALID_ARGUMENT);
    assert_int_equal(tf_set_log(log_fn, NULL, (tf_log_level)-1), TF_ERR_INVALID_ARGUMENT);
    assert_int_equal(atomic_load(&tf__log_level), TF_LOG_OFF);
    assert_int_equal(tf_set_log(NULL, NULL, TF_LOG_DEBUG), TF_OK); /* no hook: off */
    assert_int_equal(atomic_load(&tf__log_level), TF_LOG_OFF);
    assert_string_equal(tf_conn_event_name(TF_CONN_CONNECTED), "connected");
    assert_string_equal(tf_conn_event_name(TF_CONN_HANDSHAKE_FAILED), "handshake-failed");
    assert_string_equal(tf_conn_event_name(TF_CONN_CLOSED), "closed");
    assert_string_equal(tf_conn_event_name((tf_conn_event)0), "?");
}

int main(void)
{
    tio_filter_from_env();
    const struct CMUnitTest tests[] = {
        TIO_TEST(test_set_log_arguments),
        TIO_TEST(test_async_conn_stats_counts_messages_both_ways),
        TIO_TEST(test_async_conn_stats_stream),
        TIO_TEST(test_async_conn_stats_queue_and_pause),
        TIO_TEST(test_async_conn_stats_poison_and_half_close),
        TIO_TEST(test_conn_stats_size_field),
        TIO_TEST(test_sync_conn_stats_counts_messages_both_ways),
        TIO_TEST(test_sync_conn_stats_pause_and_poison),
        TIO_TEST(test_async_server_stats_events_and_log),
        TIO_TEST(test_async_server_stats_busy),
        TIO_TEST(test_async_client_event_handshake_failed),
        TIO_TEST(test_async_client_freed_or_cancelled_in_its_event),
        TIO_TEST(test_log_idle_timeout_drop),
        TIO_TEST(test_sync_server_stats_and_log),
        TIO_TEST(test_sync_server_events),
        TIO_TEST(test_async_server_log_rest_and_watch),
        TIO_TEST(test_sync_server_log_accept_pause),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
