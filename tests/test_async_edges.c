/* tests/test_async_edges.c -- the async layer's lifecycle edges (issue 20): one regression test
 * per confirmed bug, each named after it. Use-after-free of a stop hook (1), a send accepted
 * before close (2), a client freed while a name resolves (3), stream and receive racing (4), the
 * writable callback after BUSY (5), the reasons around the close linger (6), a read buffer that
 * cannot be allocated (7), the peer address of a closed connection (8), and the smaller ones (9):
 * BUSY is exact under concurrent refusals, a back-off timer that cannot be made, init racing
 * shutdown, a stream stopped in the middle of a frame, the hold buffer after a poison and when
 * empty, submissions after abort. The races run many rounds, each bounded by count and watched
 * by the no-progress watchdog; ASan and TSan (mk/async.mk) see the memory and the races. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>

#include "async_internal.h"
#include "tcpframe/async.h"
#include "test_io_util.h"
#include "tu_async.h"
#include "tu_net.h"

/* Run fn(arg) on the loop thread and wait for it. */
static void on_loop(tf_evb *evb, tf_evb_fn fn, void *arg)
{
    assert_int_equal(tf_evb_dispatch_and_wait(evb, fn, arg), TF_OK);
}

static void loop_settle(tf_evb *evb)
{
    tu_loop_settle(evb);
}

static tf_async_conn *raw_ready(tu_fx *f, const tf_tcp_config *cfg, int *raw)
{
    tf_async_conn *c = tu_pair_raw(f, cfg, raw);
    assert_true(tu_send_magic(*raw));
    assert_true(tu_expect_magic(*raw));
    return c;
}

/* ---------------------------------------------------------------- 1: stop hook after free */

typedef struct victims {
    tf_async_conn *b1, *b2;
    int ends;
} victims;

static void free_others_at_end(tf_async_conn *c, tf_err err, int os_err, const uint8_t *data,
                               size_t len, void *arg)
{
    (void)c, (void)os_err, (void)data, (void)len;
    victims *v = arg;
    if (err == TF_OK)
        return;
    v->ends++;
    TIO_CHECK_EQ(err, TF_ERR_SHUTDOWN);
    tf_async_conn_free(v->b1); /* their stop hooks are still on the loop's list */
    tf_async_conn_free(v->b2);
    v->b1 = v->b2 = NULL;
}

/* Bug 1a: a connection freed from another connection's SHUTDOWN callback, while the stop drain
 * walks the hooks: the freed one's hook must leave the list (ASan: heap-use-after-free in
 * tf__evb_hook_remove before the fix). The victims are started first, so their hooks come after
 * the killer's in the drain. */
static void test_bug1_free_from_shutdown_callback(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    victims v = {0};
    tu_pair_async(&f, NULL, &v.b1, &v.b2);
    loop_settle(f.evb);
    tf_async_conn *a1, *a2;
    tu_pair_async(&f, NULL, &a1, &a2);
    assert_int_equal(tf_async_conn_stream(a1, free_others_at_end, &v), TF_OK);
    loop_settle(f.evb);
    assert_int_equal(tf_evb_stop(f.evb), TF_OK);
    assert_int_equal(v.ends, 1);
    assert_null(v.b1);
    tf_async_conn_free(a1);
    tf_async_conn_free(a2);
    tu_fx_end(&f);
}

typedef struct stopper {
    tf_evb *evb;
    tf_async_conn *c;
    tf_async_server *s;
} stopper;

static void stop_then_free(void *arg)
{
    stopper *st = arg;
    tf_evb_stop(st->evb); /* on the loop thread: only marks it stopping */
    tf_async_conn_free(st->c);
    tf_async_server_free(st->s);
}

/* Bug 1b: a loop task stops the loop, then frees a connection and a server: both must unhook
 * although the loop is stopping. */
static void test_bug1_stop_then_free_in_task(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    stopper st = {.evb = f.evb};
    tf_async_conn *peer;
    tu_pair_async(&f, NULL, &st.c, &peer);
    assert_int_equal(tf_async_server_new(f.evb, &st.s), TF_OK);
    assert_int_equal(tf_async_server_init(st.s, "127.0.0.1:0", NULL, NULL), TF_OK);
    loop_settle(f.evb);
    assert_int_equal(tf_evb_dispatch(f.evb, stop_then_free, &st), TF_OK);
    assert_int_equal(tf_evb_stop(f.evb), TF_OK);
    tf_async_conn_free(peer);
    tu_fx_end(&f);
}

/* ---------------------------------------------------------------- 2: close after a send */

typedef struct gate {
    atomic_int stage;
    tf_async_conn *c;
    tf_future *close_f;
    tf_err close_rc;
} gate;

static void close_when_told(void *arg)
{
    gate *g = arg;
    atomic_store(&g->stage, 1);
    while (atomic_load(&g->stage) != 2)
        tio_tick(); /* the main thread submits a send meanwhile: it waits behind this task */
    g->close_rc = tf_async_conn_close(g->c, &g->close_f);
}

/* Bug 2: a send accepted on a user thread is still in the hand-off when the loop thread runs
 * close: it must be flushed before SHUT_WR (before the fix: EPIPE, the message lost, the close
 * failed). */
static void test_bug2_close_flushes_send_in_handoff(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    int raw;
    tf_async_conn *c = raw_ready(&f, NULL, &raw);
    gate g = {.c = c};
    assert_int_equal(tf_evb_dispatch(f.evb, close_when_told, &g), TF_OK);
    while (atomic_load(&g.stage) != 1)
        tio_tick();
    tf_future *s;
    assert_int_equal(tf_async_conn_send(c, "accepted", 8, -1, &s), TF_OK);
    atomic_store(&g.stage, 2);
    loop_settle(f.evb);
    assert_int_equal(g.close_rc, TF_OK);
    char buf[16];
    uint32_t len = 0;
    assert_true(tu_read_frame(raw, buf, sizeof buf, &len));
    assert_int_equal(len, 8);
    assert_memory_equal(buf, "accepted", 8);
    assert_int_equal(read(raw, buf, 1), 0); /* then our FIN */
    assert_int_equal(tu_fut_result(s, NULL, NULL), TF_OK);
    close(raw);
    assert_int_equal(tu_fut_result(g.close_f, NULL, NULL), TF_OK);
    tf_async_conn_free(c);
    tu_fx_end(&f);
}

/* ---------------------------------------------------------------- 3: client freed resolving */

typedef struct resolving {
    tf_async_client *cl;
    tf_future *fu;
    tf_err rc;
} resolving;

static void connect_then_free(void *arg)
{
    resolving *r = arg;
    r->rc = tf_async_client_connect(r->cl, "localhost:1", &r->fu, NULL); /* a name: a thread */
    tf_async_client_free(r->cl);
}

/* Bug 3: an async client freed on its loop thread while its resolver thread runs: the attempt
 * reaches the loop later and must not read the freed client (ASan before the fix). */
static void test_bug3_client_freed_while_resolving(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    for (int round = 0; round < 20; round++) {
        resolving r = {0};
        assert_int_equal(tf_async_client_new(f.evb, NULL, &r.cl, NULL), TF_OK);
        on_loop(f.evb, connect_then_free, &r);
        assert_int_equal(r.rc, TF_OK);
        assert_int_equal(tu_fut_result(r.fu, NULL, NULL), TF_ERR_CANCELLED);
        tio_tick();
    }
    tu_fx_end(&f);
}

/* ---------------------------------------------------------------- 4: stream vs receive */

typedef struct racer {
    pthread_barrier_t go;
    tf_async_conn *c;
    tf_err stream_rc, recv_rc;
    tf_future *fu;
    int rounds;
} racer;

static void ignore_msg(tf_async_conn *c, tf_err err, int os_err, const uint8_t *data, size_t len,
                       void *arg)
{
    (void)c, (void)err, (void)os_err, (void)data, (void)len, (void)arg;
}

static void *stream_racer(void *arg)
{
    racer *r = arg;
    for (int i = 0; i < r->rounds; i++) {
        pthread_barrier_wait(&r->go);
        r->stream_rc = tf_async_conn_stream(r->c, ignore_msg, NULL);
        pthread_barrier_wait(&r->go);
        pthread_barrier_wait(&r->go); /* the main thread checks and cleans up */
    }
    return NULL;
}

/* Bug 4: tf_async_conn_stream and a receive submitted at once from two threads: at most one
 * may succeed (before the fix both could, and the receive then never completed). */
static void test_bug4_stream_and_recv_race(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    tf_async_conn *a, *b;
    tu_pair_async(&f, NULL, &a, &b);
    racer r = {.c = b, .rounds = (int)tio_iters("TF_TEST_RACE_ROUNDS", 3000, 3, 6)};
    pthread_barrier_init(&r.go, NULL, 2);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, stream_racer, &r), 0);
    int both = 0, streams = 0, recvs = 0;
    for (int i = 0; i < r.rounds; i++) {
        pthread_barrier_wait(&r.go);
        r.recv_rc = tf_async_conn_recv_alloc(b, -1, &r.fu);
        pthread_barrier_wait(&r.go);
        both += r.stream_rc == TF_OK && r.recv_rc == TF_OK;
        if (r.stream_rc == TF_OK) {
            streams++;
            assert_int_equal(tf_async_conn_stream(b, NULL, NULL), TF_OK);
        }
        if (r.recv_rc == TF_OK) {
            recvs++;
            if (r.stream_rc != TF_OK) {
                assert_int_equal(tu_send_wait(a, "m", 1), TF_OK);
                assert_int_equal(tu_fut_result(r.fu, NULL, NULL), TF_OK);
            }
        } else {
            assert_int_equal(r.recv_rc, TF_ERR_BAD_STATE);
        }
        tio_tick();
        if (both)
            r.rounds = i + 1; /* the racer reads it after the barrier: both stop here */
        pthread_barrier_wait(&r.go);
    }
    pthread_join(t, NULL);
    pthread_barrier_destroy(&r.go);
    assert_int_equal(both, 0);
    assert_true(streams + recvs >= 1);
    tf_async_conn_free(b); /* also cancels a receive left pending under a stream */
    tf_async_conn_free(a);
    tu_fx_end(&f);
}

/* ---------------------------------------------------------------- 5: writable after BUSY */

typedef struct pusher {
    tio_ctr wr;
    tf_async_conn *c;
    long sent, target;
    int raw;
} pusher;

static void wr_cb(tf_async_conn *c, void *arg)
{
    (void)c;
    tio_ctr_add(&((pusher *)arg)->wr, 1);
}

static void *drain_peer(void *arg)
{
    pusher *p = arg;
    uint8_t buf[64];
    uint32_t len;
    for (long i = 0; i < p->target; i++) {
        if (!tu_read_frame(p->raw, buf, sizeof buf, &len))
            break;
        tio_tick();
    }
    return NULL;
}

static void done_cb(tf_async_conn *c, tf_async_op *op, tf_err err, int os_err, uint8_t *data,
                    size_t len, void *arg)
{
    (void)c, (void)err, (void)os_err, (void)data, (void)len, (void)arg;
    free(op);
}

/* Bug 5: a sender that waits for the writable callback after every BUSY must always get it
 * (before the fix the counters were given back before the mark was set: ~1 in 300k refusals
 * waited forever). A tight queue bound makes every few sends a BUSY. */
static void test_bug5_writable_after_busy_never_lost(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    tf_tcp_config cfg = tu_cfg_default();
    cfg.send_queue_msgs = 2;
    cfg.send_low_water = 0;
    int raw;
    tf_async_conn *c = raw_ready(&f, &cfg, &raw);
    pusher p = {.c = c, .raw = raw, .target = tio_iters("TF_TEST_BUSY_SENDS", 200000, 4, 10)};
    tio_ctr_init(&p.wr);
    assert_int_equal(tf_async_conn_on_writable(c, wr_cb, &p), TF_OK);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, drain_peer, &p), 0);
    long busy = 0;
    while (p.sent < p.target) {
        tf_async_op *op = malloc(sizeof *op);
        long seen = tio_ctr_get(&p.wr);
        tf_err rc = tf_async_conn_send_op(c, op, "0123456789", 10, -1, done_cb, NULL);
        if (rc == TF_OK) {
            p.sent++;
            continue;
        }
        free(op);
        assert_int_equal(rc, TF_ERR_BUSY);
        busy++;
        /* Every refusal is followed by exactly one writable call (or one was already due). */
        assert_true(tio_ctr_wait(&p.wr, seen + 1, 60000));
    }
    pthread_join(t, NULL);
    print_message("bug5: %ld sends, %ld BUSY refusals, %ld writable calls\n", p.sent, busy,
                  tio_ctr_get(&p.wr));
    assert_true(busy > 0);
    tf_async_conn_free(c);
    close(raw);
    tio_ctr_destroy(&p.wr);
    tu_fx_end(&f);
}

/* ---------------------------------------------------------------- 6: linger reasons */

/* Bug 6a: the peer stays open and silent through the whole linger: the pending receive and the
 * connection's reason say TIMEOUT, not CLOSED (the peer never closed). */
static void test_bug6a_linger_timeout_reason(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    tf_tcp_config cfg = tu_cfg_default();
    cfg.linger_ms = 30;
    int raw;
    tf_async_conn *c = raw_ready(&f, &cfg, &raw);
    tf_future *r, *cl;
    assert_int_equal(tf_async_conn_recv_alloc(c, -1, &r), TF_OK);
    assert_int_equal(tf_async_conn_close(c, &cl), TF_OK);
    assert_int_equal(tu_fut_result(cl, NULL, NULL), TF_ERR_TIMEOUT);
    assert_int_equal(tu_fut_result(r, NULL, NULL), TF_ERR_TIMEOUT);
    assert_int_equal(tf_async_conn_error(c, NULL), TF_ERR_TIMEOUT);
    tf_async_conn_free(c);
    close(raw);
    tu_fx_end(&f);
}

/* Bug 6b/6c: during the linger the peer closes after half a length prefix (b), or inside a
 * frame's payload (c): the pending receive says TRUNCATED (SPEC 2.4), and the close future OK
 * (our flush succeeded and the peer closed). */
static void test_bug6bc_peer_closes_mid_frame_in_linger(void **state)
{
    (void)state;
    static const uint8_t cut[2][6] = {{0, 0}, {0, 0, 0, 9, 'a', 'b'}};
    static const size_t cutlen[2] = {2, 6};
    for (int k = 0; k < 2; k++) {
        tu_fx f;
        tu_fx_start(&f);
        int raw;
        tf_async_conn *c = raw_ready(&f, NULL, &raw);
        tf_future *r, *cl;
        assert_int_equal(tf_async_conn_recv_alloc(c, -1, &r), TF_OK);
        assert_int_equal(tf_async_conn_close(c, &cl), TF_OK);
        char b;
        assert_int_equal(read(raw, &b, 1), 0); /* the flush is over: our FIN came */
        assert_true(tu_write_all(raw, cut[k], cutlen[k]));
        close(raw);
        assert_int_equal(tu_fut_result(r, NULL, NULL), TF_ERR_TRUNCATED);
        assert_int_equal(tu_fut_result(cl, NULL, NULL), TF_OK);
        assert_int_equal(tf_async_conn_error(c, NULL), TF_ERR_TRUNCATED);
        tf_async_conn_free(c);
        tu_fx_end(&f);
    }
}

/* ---------------------------------------------------------------- 7: read buffer NOMEM */

enum { ODD_READ_BUFFER = 777773 };

static int fail_odd_alloc(tf__sys_op op, int fd, size_t *len)
{
    (void)fd;
    return op == TF__SYS_MALLOC && len && *len == ODD_READ_BUFFER ? ENOMEM : 0;
}

/* Bug 7: the per-thread read buffer cannot be allocated: the receive fails with NOMEM (before
 * the fix: taken for "busy", the pump re-dispatched itself forever at 100% CPU). */
static void test_bug7_read_buffer_nomem_fails(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    tf_tcp_config cfg = tu_cfg_default();
    cfg.read_buffer = ODD_READ_BUFFER;
    tf_async_conn *a, *b;
    tu_pair_async(&f, &cfg, &a, &b);
    assert_int_equal(tu_send_wait(a, "x", 1), TF_OK);
    atomic_store(&tf__sys_hook, fail_odd_alloc);
    tf_future *r;
    assert_int_equal(tf_async_conn_recv_alloc(b, -1, &r), TF_OK);
    tf_err e = tu_fut_result(r, NULL, NULL);
    atomic_store(&tf__sys_hook, NULL);
    assert_int_equal(e, TF_ERR_NOMEM);
    assert_int_equal(tf_async_conn_error(b, NULL), TF_ERR_NOMEM);
    tf_async_conn_free(a);
    tf_async_conn_free(b);
    tu_fx_end(&f);
}

/* ---------------------------------------------------------------- 8: peer after abort */

typedef struct peeker {
    tf_async_conn *c;
    atomic_bool stop;
    long ok;
    char want[TF_ADDRSTR_LEN];
    bool same;
} peeker;

static void *peek_loop(void *arg)
{
    peeker *p = arg;
    while (!atomic_load(&p->stop)) {
        char buf[TF_ADDRSTR_LEN];
        if (tf_async_conn_peer(p->c, buf, sizeof buf) == TF_OK) {
            p->ok++;
            p->same = p->same && strcmp(buf, p->want) == 0;
        }
    }
    return NULL;
}

/* Bug 8: tf_async_conn_peer from any thread while the loop aborts (closes) the socket: no race
 * on the fd (TSan before the fix), and the address stays the peer's after the close. */
static void test_bug8_peer_any_thread_after_abort(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    int lport = 0;
    int lfd = tu_raw_listen(false, &lport);
    assert_true(lfd >= 0);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", lport);
    int cfd = tu_raw_connect(addr);
    assert_true(cfd >= 0);
    int sfd = accept(lfd, NULL, NULL);
    assert_true(sfd >= 0);
    tf_tcp_config cfg = tu_cfg_default();
    cfg.handshake = false;
    tf_async_conn *c;
    assert_int_equal(tf_async_conn_from_fd(f.evb, cfd, &cfg, &c, NULL), TF_OK);
    peeker p = {.c = c, .same = true};
    snprintf(p.want, sizeof p.want, "127.0.0.1:%d", lport);
    char buf[TF_ADDRSTR_LEN];
    assert_int_equal(tf_async_conn_peer(c, buf, sizeof buf), TF_OK);
    assert_string_equal(buf, p.want);
    assert_int_equal(tf_async_conn_peer(c, buf, 5), TF_ERR_BUFFER_TOO_SMALL);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, peek_loop, &p), 0);
    assert_int_equal(tf_async_conn_abort(c), TF_OK);
    loop_settle(f.evb);
    atomic_store(&p.stop, true);
    pthread_join(t, NULL);
    assert_true(p.same);
    assert_int_equal(tf_async_conn_peer(c, buf, sizeof buf), TF_OK);
    assert_string_equal(buf, p.want);
    tf_async_conn_free(c);
    close(sfd);
    close(lfd);
    tu_fx_end(&f);
}

/* ---------------------------------------------------------------- 9: the smaller ones */

typedef struct hog {
    tf_async_conn *c;
    atomic_bool stop;
    atomic_int started;
    long refused;
} hog;

static void *big_refused_sends(void *arg)
{
    hog *h = arg;
    static uint8_t big[600 * 1024];
    while (!atomic_load(&h->stop)) {
        tf_future *fu = NULL;
        tf_err rc = tf_async_conn_send(h->c, big, sizeof big, -1, &fu);
        if (rc == TF_OK) { /* cannot be: the queue holds more than the bound allows */
            tf_future_free(fu);
            h->refused = -1000000000;
            return NULL;
        }
        h->refused++;
        atomic_store(&h->started, 1);
    }
    return NULL;
}

static void op_ignore(tf_async_conn *c, tf_async_op *op, tf_err err, int os_err, uint8_t *data,
                      size_t len, void *arg)
{
    (void)c, (void)op, (void)err, (void)os_err, (void)data, (void)len, (void)arg;
}

/* Bug 9a: BUSY is exact: a concurrent send that is refused (it would pass the byte bound) must
 * never make a small send that fits fail with BUSY. A 500 KiB message is stuck in the queue (the
 * peer does not read); the bound is 1 MiB; 600 KiB sends are refused on one thread while 100 B
 * sends (3000 of them, 300 KB in all) go in on another. */
static void test_bug9_busy_is_exact(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    tf_tcp_config cfg = tu_cfg_default();
    cfg.sndbuf = 4096;
    cfg.send_queue_bytes = 1024 * 1024;
    cfg.send_queue_msgs = 100000;
    int raw;
    tf_async_conn *c = raw_ready(&f, &cfg, &raw);
    static uint8_t stuck[500 * 1024];
    tf_future *s0;
    assert_int_equal(tf_async_conn_send(c, stuck, sizeof stuck, -1, &s0), TF_OK);
    hog h = {.c = c};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, big_refused_sends, &h), 0);
    while (atomic_load(&h.started) == 0)
        tio_tick(); /* the refusals run before and during every small send */
    long n = tio_iters("TF_TEST_BUSY_EXACT", 3000, 2, 4), busy = 0;
    static tf_async_op ops[3000];
    static uint8_t small[100];
    for (long i = 0; i < n; i++) {
        tf_err rc = tf_async_conn_send_op(c, &ops[i], small, sizeof small, -1, op_ignore, NULL);
        busy += rc == TF_ERR_BUSY;
        TIO_CHECK_EQ(rc, TF_OK);
        tio_tick();
    }
    atomic_store(&h.stop, true);
    pthread_join(t, NULL);
    print_message("bug9a: %ld small sends, %ld BUSY, %ld large refused\n", n, busy, h.refused);
    assert_int_equal(busy, 0);
    assert_true(h.refused > 0);
    tf_async_conn_free(c);
    assert_int_equal(tu_fut_result(s0, NULL, NULL), TF_ERR_CANCELLED);
    close(raw);
    tu_fx_end(&f);
}

/* Bug 9b: accept fails with EMFILE and the back-off timer cannot be made (no memory): the server
 * must not go deaf -- a client is still accepted. */
static atomic_int deaf_stage;

static int emfile_then_nomem(tf__sys_op op, int fd, size_t *len)
{
    (void)fd, (void)len;
    if (op == TF__SYS_ACCEPT4 && atomic_load(&deaf_stage) == 0) {
        atomic_store(&deaf_stage, 1);
        return EMFILE;
    }
    if (op == TF__SYS_MALLOC && atomic_load(&deaf_stage) == 1) {
        atomic_store(&deaf_stage, 2); /* the back-off timer's allocation */
        return ENOMEM;
    }
    return 0;
}

static void test_bug9_server_backoff_timer_nomem(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    tf_async_server *s;
    assert_int_equal(tf_async_server_new(f.evb, &s), TF_OK);
    assert_int_equal(tf_async_server_init(s, "127.0.0.1:0", NULL, NULL), TF_OK);
    char addr[TF_ADDRSTR_LEN];
    assert_int_equal(tf_async_server_addr(s, addr, sizeof addr), TF_OK);
    tf_future *acc;
    assert_int_equal(tf_async_server_accept(s, &acc), TF_OK);
    loop_settle(f.evb);
    atomic_store(&deaf_stage, 0);
    atomic_store(&tf__sys_hook, emfile_then_nomem);
    int raw = tu_raw_connect(addr);
    assert_true(raw >= 0);
    assert_true(tu_send_magic(raw));
    assert_true(tu_expect_magic(raw)); /* accepted after all: the handshake ran */
    atomic_store(&tf__sys_hook, NULL);
    assert_int_equal(atomic_load(&deaf_stage), 2);
    void *conn = NULL;
    assert_int_equal(tu_fut_result(acc, NULL, &conn), TF_OK);
    tf_async_conn_free(conn);
    close(raw);
    tf_async_server_free(s);
    tu_fx_end(&f);
}

/* Bug 9c: init racing shutdown from two threads: no listen fd leaks, and the server ends shut
 * (later inits refuse with SHUTDOWN). */
typedef struct initrace {
    pthread_barrier_t go;
    tf_async_server *s;
    tf_err rc;
} initrace;

static void *racing_init(void *arg)
{
    initrace *r = arg;
    pthread_barrier_wait(&r->go);
    r->rc = tf_async_server_init(r->s, "127.0.0.1:0", NULL, NULL);
    return NULL;
}

static void test_bug9_init_races_shutdown(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    long rounds = tio_iters("TF_TEST_RACE_ROUNDS", 300, 2, 4);
    int listening = 0;
    for (long i = 0; i < rounds; i++) {
        initrace r;
        pthread_barrier_init(&r.go, NULL, 2);
        assert_int_equal(tf_async_server_new(f.evb, &r.s), TF_OK);
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, racing_init, &r), 0);
        pthread_barrier_wait(&r.go);
        assert_int_equal(tf_async_server_shutdown(r.s), TF_OK);
        pthread_join(t, NULL);
        assert_true(r.rc == TF_OK || r.rc == TF_ERR_SHUTDOWN);
        listening += r.rc == TF_OK;
        assert_int_equal(tf_async_server_init(r.s, "127.0.0.1:0", NULL, NULL), TF_ERR_SHUTDOWN);
        tf_async_server_free(r.s);
        pthread_barrier_destroy(&r.go);
        loop_settle(f.evb);
        assert_int_equal(tu_fd_count(), f.fds0 + 2); /* the loop's epoll and eventfd only */
        tio_tick();
    }
    print_message("bug9c: %d of %ld inits won the race\n", listening, rounds);
    tu_fx_end(&f);
}

/* Bug 9d: a stream stopped from outside its callback while a frame is half read: the frame
 * must never reach the old callback; the next receive gets it whole. */
typedef struct oldcb {
    atomic_int after_stop;
    atomic_bool stopped;
} oldcb;

static void old_stream(tf_async_conn *c, tf_err err, int os_err, const uint8_t *data,
                       size_t len, void *arg)
{
    (void)c, (void)err, (void)os_err, (void)data, (void)len;
    oldcb *o = arg;
    if (atomic_load(&o->stopped))
        atomic_fetch_add(&o->after_stop, 1);
}

static void test_bug9_stream_stopped_mid_frame(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    int raw;
    tf_async_conn *c = raw_ready(&f, NULL, &raw);
    oldcb o = {0};
    assert_int_equal(tf_async_conn_stream(c, old_stream, &o), TF_OK);
    static const uint8_t head[] = {0, 0, 0, 10, '0', '1', '2'};
    assert_true(tu_write_all(raw, head, sizeof head));
    loop_settle(f.evb); /* the loop has read the head: the stream's buffer is bound */
    assert_int_equal(tf_async_conn_stream(c, NULL, NULL), TF_OK);
    atomic_store(&o.stopped, true);
    assert_true(tu_write_all(raw, "3456789", 7));
    loop_settle(f.evb);
    tf_future *r;
    assert_int_equal(tf_async_conn_recv_alloc(c, -1, &r), TF_OK);
    size_t n = 0;
    void *m = NULL;
    assert_int_equal(tu_fut_result(r, &n, &m), TF_OK);
    assert_int_equal(n, 10);
    assert_memory_equal(m, "0123456789", 10);
    free(m);
    assert_int_equal(atomic_load(&o.after_stop), 0);
    /* the same with a span receive, and the stream back on for the one after */
    assert_true(tu_write_frame(raw, "abc", 3));
    char span[8];
    assert_int_equal(tf_async_conn_recv(c, span, sizeof span, -1, &r), TF_OK);
    assert_int_equal(tu_fut_result(r, &n, NULL), TF_OK);
    assert_int_equal(n, 3);
    tf_async_conn_free(c);
    close(raw);
    tu_fx_end(&f);
}

/* Bug 9e/9f: the hold buffer. Two frames arrive in one read with one receive pending: the second
 * waits in the hold buffer. (e) The next receive is a span too small for it: the poison must
 * leave the hold empty (before the fix hold_len wrapped around). (f) With a fitting receive,
 * once the hold is empty no buffer is kept (SPEC: an idle connection holds no buffer). */
typedef struct holdq {
    tf_async_conn *c;
    size_t len, cap;
} holdq;

static void read_hold(void *arg)
{
    holdq *q = arg;
    q->len = tf__async_conn_held(q->c, &q->cap);
}

static void test_bug9_hold_after_poison_and_released(void **state)
{
    (void)state;
    for (int fits = 0; fits < 2; fits++) {
        tu_fx f;
        tu_fx_start(&f);
        int raw;
        tf_async_conn *c = raw_ready(&f, NULL, &raw);
        tf_future *r;
        assert_int_equal(tf_async_conn_recv_alloc(c, -1, &r), TF_OK);
        static uint8_t two[4 + 5 + 4 + 20] = {0, 0, 0, 5, 'f', 'i', 'r', 's', 't', 0, 0, 0, 20};
        assert_true(tu_write_all(raw, two, sizeof two));
        assert_int_equal(tu_fut_result(r, NULL, NULL), TF_OK);
        loop_settle(f.evb);
        holdq q = {.c = c};
        on_loop(f.evb, read_hold, &q);
        assert_int_equal(q.len, 24);
        assert_true(q.cap >= 24);
        char span[32];
        assert_int_equal(tf_async_conn_recv(c, span, fits ? 32 : 8, -1, &r), TF_OK);
        assert_int_equal(tu_fut_result(r, NULL, NULL), fits ? TF_OK : TF_ERR_BUFFER_TOO_SMALL);
        on_loop(f.evb, read_hold, &q);
        assert_int_equal(q.len, 0);
        assert_int_equal(q.cap, 0);
        tf_async_conn_free(c);
        close(raw);
        tu_fx_end(&f);
    }
}

/* Bug 9g: after abort, later submissions fail with CANCELLED as documented -- also when the
 * connection had failed for another reason first. */
static void test_bug9_abort_then_cancelled(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    int raw;
    tf_async_conn *c = raw_ready(&f, NULL, &raw);
    tf_future *r;
    assert_int_equal(tf_async_conn_recv_alloc(c, -1, &r), TF_OK);
    close(raw); /* first failure: CLOSED */
    assert_int_equal(tu_fut_result(r, NULL, NULL), TF_ERR_CLOSED);
    assert_int_equal(tf_async_conn_abort(c), TF_OK);
    tf_future *x = NULL;
    assert_int_equal(tf_async_conn_send(c, "x", 1, -1, &x), TF_ERR_CANCELLED);
    assert_int_equal(tf_async_conn_recv_alloc(c, -1, &x), TF_ERR_CANCELLED);
    loop_settle(f.evb); /* the reason is the loop's: it says CANCELLED once the abort ran */
    assert_int_equal(tf_async_conn_error(c, NULL), TF_ERR_CANCELLED);
    tf_async_conn_free(c);
    tu_fx_end(&f);
}


/* ---------------------------------------------------------------- found by the attack */

typedef struct xloop {
    tf_async_conn *c;
    tf_async_server *s;
    tf_async_client *cl;
    tf_async_op *ops;
    atomic_int done;
    int done_at_return;
} xloop;

static void count_done(tf_async_conn *c, tf_async_op *op, tf_err err, int os_err, uint8_t *data,
                       size_t len, void *arg)
{
    (void)c, (void)op, (void)os_err, (void)data, (void)len;
    TIO_CHECK_EQ(err, TF_ERR_CANCELLED);
    atomic_fetch_add(&((xloop *)arg)->done, 1);
}

static void free_from_other_loop(void *arg)
{
    xloop *x = arg;
    tf_async_conn_free(x->c);
    x->done_at_return = atomic_load(&x->done);
    free(x->ops); /* allowed: every callback has run */
    tf_async_server_free(x->s);
    tf_async_client_free(x->cl);
}

/* A connection, a server and a client of loop L2 freed from a task of loop L1: the frees return
 * only after L2 ran the teardown (before the fix they returned at once: the CANCELLED callbacks
 * ran later and touched freed op records; the server's hook, listen watch and the client's
 * attempts were used after free -- ASan). */
static void test_free_from_another_loops_thread(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    tf_evb *l1;
    assert_int_equal(tf_evb_new(&l1), TF_OK);
    assert_int_equal(tf_evb_start(l1), TF_OK);
    for (int round = 0; round < 20; round++) {
        xloop x = {0};
        tf_async_conn *peer;
        tu_pair_async(&f, NULL, &x.c, &peer);
        x.ops = malloc(3 * sizeof *x.ops);
        for (int i = 0; i < 3; i++)
            assert_int_equal(tf_async_conn_recv_alloc_op(x.c, &x.ops[i], -1, count_done, &x),
                             TF_OK);
        assert_int_equal(tf_async_server_new(f.evb, &x.s), TF_OK);
        assert_int_equal(tf_async_server_init(x.s, "127.0.0.1:0", NULL, NULL), TF_OK);
        assert_int_equal(tf_async_client_new(f.evb, NULL, &x.cl, NULL), TF_OK);
        char addr[TF_ADDRSTR_LEN];
        assert_int_equal(tf_async_server_addr(x.s, addr, sizeof addr), TF_OK);
        tf_future *cf;
        assert_int_equal(tf_async_client_connect(x.cl, addr, &cf, NULL), TF_OK);
        assert_int_equal(tf_evb_dispatch_and_wait(l1, free_from_other_loop, &x), TF_OK);
        assert_int_equal(x.done_at_return, 3);
        tf_err ce = tu_fut_result(cf, NULL, NULL); /* connected (then freed with the future) */
        assert_true(ce == TF_OK || ce == TF_ERR_CANCELLED || ce == TF_ERR_SHUTDOWN);
        tf_async_conn_free(peer);
        tio_tick();
    }
    assert_int_equal(tf_evb_free(l1), TF_OK);
    tu_fx_end(&f);
}

typedef struct nester {
    tf_async_conn *c;
    int depth, max_depth, calls;
    tio_ctr ended;
} nester;

static void abort_inside(tf_async_conn *c, tf_err err, int os_err, const uint8_t *data, size_t len,
                         void *arg)
{
    (void)os_err, (void)data, (void)len;
    nester *n = arg;
    n->depth++;
    if (n->depth > n->max_depth)
        n->max_depth = n->depth;
    n->calls++;
    if (err == TF_OK)
        TIO_CHECK_EQ(tf_async_conn_abort(c), TF_OK); /* its cancellations come after this call */
    else
        tio_ctr_add(&n->ended, 1);
    n->depth--;
}

/* abort from inside a stream callback does not re-enter that callback (the stream's CANCELLED
 * end came nested before the fix). */
static void test_abort_inside_callback_not_nested(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    tf_async_conn *a, *b;
    tu_pair_async(&f, NULL, &a, &b);
    nester n = {.c = b};
    tio_ctr_init(&n.ended);
    assert_int_equal(tf_async_conn_stream(b, abort_inside, &n), TF_OK);
    assert_int_equal(tu_send_wait(a, "x", 1), TF_OK);
    assert_true(tio_ctr_wait(&n.ended, 1, 10000));
    assert_int_equal(n.max_depth, 1);
    assert_int_equal(n.calls, 2); /* the message, then the end (CANCELLED) */
    tf_async_conn_free(b);
    tf_async_conn_free(a);
    tio_ctr_destroy(&n.ended);
    tu_fx_end(&f);
}

/* A close whose flush fails on the peer's reset releases the socket at once (before the fix it
 * stayed open until free). */
static void test_close_failed_by_reset_releases_fd(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    int lport;
    int lfd = tu_raw_listen(false, &lport);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", lport);
    int base = tu_fd_count();
    int cfd = tu_raw_connect(addr);
    int raw = accept(lfd, NULL, NULL);
    assert_true(cfd >= 0 && raw >= 0);
    tf_tcp_config cfg = tu_cfg_default();
    cfg.sndbuf = 4096;
    tf_async_conn *c;
    assert_int_equal(tf_async_conn_from_fd(f.evb, cfd, &cfg, &c, NULL), TF_OK);
    assert_true(tu_send_magic(raw));
    assert_true(tu_expect_magic(raw));
    static uint8_t big[4 << 20];
    tf_future *s, *cl;
    assert_int_equal(tf_async_conn_send(c, big, sizeof big, -1, &s), TF_OK);
    assert_int_equal(tf_async_conn_close(c, &cl), TF_OK);
    tu_loop_settle(f.evb); /* the close is flushing (else it would find the failure and release) */
    tu_close_rst(raw);
    assert_int_equal(tu_fut_result(cl, NULL, NULL), TF_ERR_IO);
    assert_int_equal(tu_fut_result(s, NULL, NULL), TF_ERR_IO);
    tu_loop_settle(f.evb);
    assert_int_equal(tu_fd_count(), base - 0); /* cfd and raw both gone, before the free */
    tf_async_conn_free(c);
    close(lfd);
    tu_fx_end(&f);
}

typedef struct deep {
    int depth, max_depth;
    int wr_calls, end_calls;
    tio_ctr done;
} deep;

static void deep_writable(tf_async_conn *c, void *arg)
{
    (void)c;
    deep *d = arg;
    d->depth++;
    d->max_depth = d->depth > d->max_depth ? d->depth : d->max_depth;
    d->wr_calls++;
    d->depth--;
}

static void deep_end(tf_async_conn *c, tf_err err, int os_err, void *arg)
{
    (void)c, (void)err, (void)os_err;
    deep *d = arg;
    d->depth++;
    d->max_depth = d->depth > d->max_depth ? d->depth : d->max_depth;
    d->end_calls++;
    tio_ctr_add(&d->done, 1);
    d->depth--;
}

static void deep_msg(tf_async_conn *c, tf_err err, int os_err, const uint8_t *data, size_t len,
                     void *arg)
{
    (void)os_err, (void)data, (void)len;
    deep *d = arg;
    d->depth++;
    d->max_depth = d->depth > d->max_depth ? d->depth : d->max_depth;
    if (err == TF_ERR_CLOSED) {
        /* The peer half-closed. A writable callback (nothing queued: due at once), then a close
         * (the peer's EOF came: it ends at once) and its end notification: none of them may run
         * nested in this callback. */
        TIO_CHECK_EQ(tf_async_conn_on_writable(c, deep_writable, d), TF_OK);
        TIO_CHECK_EQ(tf_async_conn_on_end(c, deep_end, d), TF_OK);
        tf_future *f = NULL;
        TIO_CHECK_EQ(tf_async_conn_close(c, &f), TF_OK);
        tf_future_free(f);
    }
    d->depth--;
}

/* Settings and a close made inside a callback of the connection take effect after it returned:
 * their own callbacks are never nested in it (async.h). */
static void test_settings_inside_callback_not_nested(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    int raw;
    tf_async_conn *c = raw_ready(&f, NULL, &raw);
    deep d = {0};
    tio_ctr_init(&d.done);
    assert_int_equal(tf_async_conn_stream(c, deep_msg, &d), TF_OK);
    assert_int_equal(shutdown(raw, SHUT_WR), 0);
    assert_true(tio_ctr_wait(&d.done, 1, 10000));
    assert_int_equal(d.max_depth, 1);
    assert_int_equal(d.end_calls, 1);
    tf_async_conn_free(c);
    close(raw);
    tio_ctr_destroy(&d.done);
    tu_fx_end(&f);
}

/* ---------------------------------------------------------------- the second attack (issue 25)
 *
 * An adversarial review of the code written for issue 25 (from the headers and SPEC only)
 * confirmed four bugs; each test below failed before its fix. */

/* A1: streams set and removed inside a callback act as the last setting. 40 one-byte frames
 * (0..39) arrive in one read; at frame 0 cb1 stops itself, starts cb2 and stops again (mode 0:
 * the next receive gets frame 1), or also starts cb3 after that (mode 1: cb3 gets 1..39).
 * Before the fix the start of cb2 delivered every buffered frame to it before the stop that
 * followed was applied, although that stop had returned TF_OK. */
typedef struct flipper {
    int mode;
    int active;   /* the callback that may be called (0: none) */
    int next;     /* the frame expected next */
    int calls[4]; /* messages per callback */
    int wrong;    /* calls to a callback that was not the active one */
    int disorder; /* frames out of order */
} flipper;

static void flip_common(int who, tf_async_conn *c, tf_err err, const uint8_t *data, size_t len,
                        flipper *fl);

static void flip1(tf_async_conn *c, tf_err err, int os_err, const uint8_t *data, size_t len,
                  void *arg)
{
    (void)os_err;
    flip_common(1, c, err, data, len, arg);
}

static void flip2(tf_async_conn *c, tf_err err, int os_err, const uint8_t *data, size_t len,
                  void *arg)
{
    (void)os_err;
    flip_common(2, c, err, data, len, arg);
}

static void flip3(tf_async_conn *c, tf_err err, int os_err, const uint8_t *data, size_t len,
                  void *arg)
{
    (void)os_err;
    flip_common(3, c, err, data, len, arg);
}

static void flip_common(int who, tf_async_conn *c, tf_err err, const uint8_t *data, size_t len,
                        flipper *fl)
{
    if (who != fl->active)
        fl->wrong++;
    if (err != TF_OK)
        return;
    fl->calls[who]++;
    if (len != 1 || data[0] != fl->next)
        fl->disorder++;
    fl->next++;
    if (who == 1 && len == 1 && data[0] == 0) {
        TIO_CHECK_EQ(tf_async_conn_stream(c, NULL, NULL), TF_OK);
        TIO_CHECK_EQ(tf_async_conn_stream(c, flip2, fl), TF_OK);
        TIO_CHECK_EQ(tf_async_conn_stream(c, NULL, NULL), TF_OK);
        fl->active = 0;
        if (fl->mode == 1) {
            TIO_CHECK_EQ(tf_async_conn_stream(c, flip3, fl), TF_OK);
            fl->active = 3;
        }
    }
}

static void write_40_frames(int raw)
{
    uint8_t wire[40 * 5];
    for (int i = 0; i < 40; i++) {
        static const uint8_t one[4] = {0, 0, 0, 1};
        memcpy(wire + 5 * i, one, 4);
        wire[5 * i + 4] = (uint8_t)i;
    }
    assert_true(tu_write_all(raw, wire, sizeof wire));
}

static void test_attack2_stream_set_and_removed_in_callback(void **state)
{
    (void)state;
    for (int mode = 0; mode < 2; mode++) {
        tu_fx f;
        tu_fx_start(&f);
        int raw;
        tf_async_conn *c = raw_ready(&f, NULL, &raw);
        write_40_frames(raw);
        loop_settle(f.evb);
        flipper fl = {.mode = mode, .active = 1};
        assert_int_equal(tf_async_conn_stream(c, flip1, &fl), TF_OK);
        loop_settle(f.evb);
        loop_settle(f.evb);
        if (mode == 0) {
            assert_int_equal(fl.calls[1], 1);
            assert_int_equal(fl.calls[2], 0);
            tf_future *r;
            assert_int_equal(tf_async_conn_recv_alloc(c, -1, &r), TF_OK);
            size_t n = 0;
            void *m = NULL;
            assert_int_equal(tu_fut_result(r, &n, &m), TF_OK);
            assert_int_equal(n, 1);
            assert_int_equal(((uint8_t *)m)[0], 1); /* the frame after the one cb1 took */
            free(m);
        } else {
            assert_int_equal(fl.calls[1], 1);
            assert_int_equal(fl.calls[2], 0);
            assert_int_equal(fl.calls[3], 39);
        }
        assert_int_equal(fl.wrong, 0);
        assert_int_equal(fl.disorder, 0);
        tf_async_conn_free(c);
        close(raw);
        tu_fx_end(&f);
    }
}

/* A connection over loopback TCP (a reset needs TCP: the test pairs are Unix sockets) with
 * its raw peer, past the handshake. */
static tf_async_conn *tcp_ready(tu_fx *f, const tf_tcp_config *cfg, int *raw)
{
    int port = 0;
    int l = tu_raw_listen(false, &port);
    assert_true(l >= 0);
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    int cl = tu_raw_connect(addr); /* blocking: the backlog completes it */
    assert_true(cl >= 0);
    int s = accept(l, NULL, NULL);
    assert_true(s >= 0);
    close(l);
    tf_async_conn *c = NULL;
    assert_int_equal(tf_async_conn_from_fd(f->evb, s, cfg, &c, NULL), TF_OK);
    assert_true(tu_send_magic(cl));
    assert_true(tu_expect_magic(cl));
    *raw = cl;
    return c;
}

/* A1, the other settings: a writable callback set and removed inside a send's completion is
 * never called (before: once), and an end notification set and removed inside the stream's
 * end call of a failed connection is never called (before: once, after its removal). */
typedef struct setrm {
    atomic_int wcalls, ecalls, ends;
} setrm;

static void setrm_writable(tf_async_conn *c, void *arg)
{
    (void)c;
    ((setrm *)arg)->wcalls++;
}

static void setrm_end(tf_async_conn *c, tf_err err, int os_err, void *arg)
{
    (void)c, (void)err, (void)os_err;
    ((setrm *)arg)->ecalls++;
}

static void setrm_sent(tf_async_conn *c, tf_async_op *op, tf_err err, int os_err, uint8_t *data,
                       size_t len, void *arg)
{
    (void)op, (void)err, (void)os_err, (void)data, (void)len;
    TIO_CHECK_EQ(tf_async_conn_on_writable(c, setrm_writable, arg), TF_OK);
    TIO_CHECK_EQ(tf_async_conn_on_writable(c, NULL, NULL), TF_OK);
}

static void setrm_stream(tf_async_conn *c, tf_err err, int os_err, const uint8_t *data,
                         size_t len, void *arg)
{
    (void)os_err, (void)data, (void)len;
    if (err == TF_OK)
        return;
    ((setrm *)arg)->ends++;
    TIO_CHECK_EQ(tf_async_conn_on_end(c, setrm_end, arg), TF_OK);
    TIO_CHECK_EQ(tf_async_conn_on_end(c, NULL, NULL), TF_OK);
}

/* Hold the loop thread until g->stage is 2 (it says it is here by setting 1). */
static void hold_loop(void *arg)
{
    gate *g = arg;
    atomic_store(&g->stage, 1);
    while (atomic_load(&g->stage) != 2)
        tio_tick();
}

static void test_attack2_writable_and_end_set_and_removed_in_callback(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    int raw;
    tf_tcp_config cfg = tu_cfg_default();
    cfg.send_queue_msgs = 1;
    tf_async_conn *c = tcp_ready(&f, &cfg, &raw);
    setrm s = {0};
    tf_async_op a, b;
    /* A admitted while a task holds the loop, B refused BUSY: the writable mark is set, and
     * A's completion finds its condition true */
    gate g = {0};
    assert_int_equal(tf_evb_dispatch(f.evb, hold_loop, &g), TF_OK);
    while (atomic_load(&g.stage) != 1)
        tio_tick();
    assert_int_equal(tf_async_conn_send_op(c, &a, "A", 1, -1, setrm_sent, &s), TF_OK);
    assert_int_equal(tf_async_conn_send_op(c, &b, "B", 1, -1, setrm_sent, &s), TF_ERR_BUSY);
    atomic_store(&g.stage, 2);
    uint8_t buf[8];
    uint32_t len;
    assert_true(tu_read_frame(raw, buf, sizeof buf, &len));
    loop_settle(f.evb);
    assert_int_equal(s.wcalls, 0);
    /* the end: a stream whose connection fails (the peer resets) */
    assert_int_equal(tf_async_conn_stream(c, setrm_stream, &s), TF_OK);
    loop_settle(f.evb);
    tu_close_rst(raw);
    for (int i = 0; i < 3000 && atomic_load(&s.ends) == 0; i++) /* no-progress bound: 30 s */
        usleep(10000);
    assert_int_equal(atomic_load(&s.ends), 1);
    assert_int_equal(tf_async_conn_error(c, NULL), TF_ERR_IO); /* over: an end is due */
    loop_settle(f.evb);
    assert_int_equal(atomic_load(&s.ecalls), 0);
    tf_async_conn_free(c);
    tu_fx_end(&f);
}

/* A2: an abort made inside a callback cancels what is queued as soon as the callback returns.
 * (a) 10 receives queued and 10 frames in one read; the 3rd receive's callback aborts: the 7
 * others complete CANCELLED (before: OK). (b) 5 sends submitted inside a receive callback, then
 * an abort there: all 5 complete CANCELLED and the peer never reads them (before: OK, sent). */
typedef struct aborter {
    tf_async_conn *c;
    atomic_int done_ok, cancelled, other, after_abort_ok;
    bool aborted;
    int sends; /* (b): sends to submit before the abort */
    tf_async_op sops[5];
    atomic_int sent_ok, sent_cancelled;
} aborter;

static void ab_sent(tf_async_conn *c, tf_async_op *op, tf_err err, int os_err, uint8_t *data,
                    size_t len, void *arg)
{
    (void)c, (void)op, (void)os_err, (void)data, (void)len;
    aborter *a = arg;
    if (err == TF_OK)
        a->sent_ok++;
    else if (err == TF_ERR_CANCELLED)
        a->sent_cancelled++;
}

static void ab_recv(tf_async_conn *c, tf_async_op *op, tf_err err, int os_err, uint8_t *data,
                    size_t len, void *arg)
{
    (void)op, (void)os_err, (void)len;
    aborter *a = arg;
    free(data);
    if (err == TF_ERR_CANCELLED) {
        a->cancelled++;
        return;
    }
    if (err != TF_OK) {
        a->other++;
        return;
    }
    a->done_ok++;
    if (a->aborted)
        a->after_abort_ok++;
    if (a->done_ok == 3 && !a->aborted) {
        for (int i = 0; i < a->sends; i++)
            TIO_CHECK_EQ(tf_async_conn_send_op(c, &a->sops[i], "reply", 5, -1, ab_sent, a), TF_OK);
        TIO_CHECK_EQ(tf_async_conn_abort(c), TF_OK);
        a->aborted = true;
    }
}

static void test_attack2_abort_in_callback_cancels_queued(void **state)
{
    (void)state;
    for (int sends = 0; sends <= 5; sends += 5) {
        tu_fx f;
        tu_fx_start(&f);
        int raw;
        tf_async_conn *c = raw_ready(&f, NULL, &raw);
        aborter a = {.c = c, .sends = sends};
        tf_async_op ops[10];
        for (int i = 0; i < 10; i++)
            assert_int_equal(tf_async_conn_recv_alloc_op(c, &ops[i], -1, ab_recv, &a), TF_OK);
        loop_settle(f.evb);
        write_40_frames(raw);
        for (int i = 0; i < 3000 && atomic_load(&a.done_ok) + atomic_load(&a.cancelled) +
                                            atomic_load(&a.other) < 10; i++)
            usleep(10000); /* no-progress bound: 30 s */
        loop_settle(f.evb);
        assert_int_equal(a.done_ok, 3);
        assert_int_equal(a.after_abort_ok, 0);
        assert_int_equal(a.cancelled, 7);
        assert_int_equal(a.other, 0);
        assert_int_equal(a.sent_ok, 0);
        assert_int_equal(a.sent_cancelled, sends);
        uint8_t buf[8];
        uint32_t len;
        assert_false(tu_read_frame(raw, buf, sizeof buf, &len)); /* reset, no reply frame */
        tf_async_conn_free(c);
        close(raw);
        tu_fx_end(&f);
    }
}

/* A3: a connection that waits for nothing (idle: no operation, no stream; or its stream
 * paused) learns of its peer's reset: its end notification runs with IO (before: never -- the
 * socket was not watched at all, and a server freeing connections in on_end leaked them). */
typedef struct ender {
    tio_ctr ends;
    tf_err why;
} ender;

static void ender_end(tf_async_conn *c, tf_err err, int os_err, void *arg)
{
    (void)c, (void)os_err;
    ender *e = arg;
    e->why = err;
    tio_ctr_add(&e->ends, 1);
}

static void test_attack2_idle_or_paused_learns_reset(void **state)
{
    (void)state;
    for (int mode = 0; mode < 3; mode++) { /* idle; paused stream; idle after the peer's FIN */
        tu_fx f;
        tu_fx_start(&f);
        int raw;
        tf_async_conn *c = tcp_ready(&f, NULL, &raw);
        ender e = {.why = TF_OK};
        tio_ctr_init(&e.ends);
        assert_int_equal(tf_async_conn_on_end(c, ender_end, &e), TF_OK);
        if (mode == 1) {
            assert_int_equal(tf_async_conn_stream(c, setrm_stream, &(setrm){0}), TF_OK);
            loop_settle(f.evb);
            assert_int_equal(tf_async_conn_stream(c, NULL, NULL), TF_OK);
        }
        if (mode == 2) {
            assert_int_equal(shutdown(raw, SHUT_WR), 0);
            loop_settle(f.evb);
        }
        loop_settle(f.evb);
        assert_int_equal(tio_ctr_get(&e.ends), 0);
        tu_close_rst(raw);
        if (!tio_ctr_wait(&e.ends, 1, 30000)) /* a no-progress bound */
            fail_msg("mode %d: no end notification after the reset", mode);
        assert_int_equal(e.why, TF_ERR_IO);
        tf_async_conn_free(c);
        tio_ctr_destroy(&e.ends);
        tu_fx_end(&f);
    }
}

/* A4: a stream stopped in the middle of a frame has that frame finished (read whole and kept
 * for the next consumer), so its memory -- and a server budget's overdraft -- is given back;
 * before, the socket was no longer watched for reading and the rest of the frame stayed in the
 * kernel (a budget's other connections then waited for that memory forever). */
static void test_attack2_stream_stopped_mid_frame_finishes_it(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    int raw, mine;
    tf_async_conn *c = tu_pair_raw_fds(&f, NULL, &raw, &mine);
    assert_true(tu_send_magic(raw));
    assert_true(tu_expect_magic(raw));
    oldcb o = {0};
    assert_int_equal(tf_async_conn_stream(c, old_stream, &o), TF_OK);
    const size_t len = 1u << 20, first = 300u << 10;
    uint8_t *big = malloc(4 + len);
    assert_non_null(big);
    big[0] = 0, big[1] = 0x10, big[2] = 0, big[3] = 0; /* 1 MiB */
    tu_fill(big + 4, len, 7);
    assert_true(tu_write_all(raw, big, 4 + first));
    loop_settle(f.evb);
    assert_int_equal(tf_async_conn_stream(c, NULL, NULL), TF_OK);
    atomic_store(&o.stopped, true);
    assert_true(tu_write_all(raw, big + 4 + first, len - first));
    int unread = -1;
    for (int i = 0; i < 3000; i++) { /* no-progress bound: 30 s */
        loop_settle(f.evb);
        assert_int_equal(ioctl(mine, FIONREAD, &unread), 0);
        if (unread == 0)
            break;
        usleep(10000);
    }
    assert_int_equal(unread, 0); /* the frame was read whole while the stream is stopped */
    tf_future *r;
    assert_int_equal(tf_async_conn_recv_alloc(c, -1, &r), TF_OK);
    size_t n = 0;
    void *m = NULL;
    assert_int_equal(tu_fut_result(r, &n, &m), TF_OK);
    assert_int_equal(n, len);
    assert_true(tu_check(m, len, 7));
    free(m);
    free(big);
    assert_int_equal(atomic_load(&o.after_stop), 0);
    tf_async_conn_free(c);
    close(raw);
    tu_fx_end(&f);
}

/* ---------------------------------------------------------------- attack 4: the deferred wake */

/* A flag one thread raises and another waits for, at most |ms| (a no-progress bound). */
typedef struct flag {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool up;
} flag;

static void flag_raise(flag *f)
{
    pthread_mutex_lock(&f->mu);
    f->up = true;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

static bool flag_wait(flag *f, long ms)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += ms / 1000;
    pthread_mutex_lock(&f->mu);
    int rc = 0;
    while (!f->up && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&f->cv, &f->mu, &dl);
    bool up = f->up;
    pthread_mutex_unlock(&f->mu);
    return up;
}

typedef struct wake4 {
    tf_future *fut;
    tf_promise *prom;
    flag woke;        /* the waiting thread saw its future ready */
    bool saw_wake;    /* the loop's callback saw that before it returned */
    tf_evb *other;    /* (stop case) the loop stopped from the callback */
    tf_err stop_rc;
} wake4;

static void *waiter4(void *arg)
{
    wake4 *w = arg;
    (void)tf_future_wait(w->fut);
    flag_raise(&w->woke);
    return NULL;
}

/* Start the waiter and return once it sleeps on its future (a no-progress bound only). */
static void waiter4_start(wake4 *w, pthread_t *t)
{
    assert_int_equal(pthread_create(t, NULL, waiter4, w), 0);
    for (int i = 0; !tf__future_waited(w->fut); i++) {
        assert_true(i < 100000);
        struct timespec ms = {0, 100000};
        nanosleep(&ms, NULL);
    }
}

static void set_then_wait(void *arg)
{
    wake4 *w = arg;
    tf_promise_set(w->prom, TF_OK, 7, NULL, NULL);
    w->saw_wake = flag_wait(&w->woke, 10000);
}

/* Attack 4, finding 1: a user's tf_promise_set on a loop thread wakes the waiter before it
 * returns (future.h), as on any other thread: the callback sees the waiter awake before it
 * returns (before, the wake was deferred to the end of the loop's iteration for every promise:
 * a callback that then waited for the woken thread waited forever). */
static void test_attack4_user_promise_set_on_loop_wakes_at_once(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    wake4 w = {.saw_wake = false};
    pthread_mutex_init(&w.woke.mu, NULL);
    pthread_cond_init(&w.woke.cv, NULL);
    assert_int_equal(tf_promise_new(&w.prom, &w.fut), TF_OK);
    pthread_t t;
    waiter4_start(&w, &t);
    assert_int_equal(tf_evb_dispatch_and_wait(f.evb, set_then_wait, &w), TF_OK);
    pthread_join(t, NULL);
    assert_true(w.saw_wake);
    size_t n = 0;
    assert_int_equal(tf_future_get(w.fut, &n, NULL), TF_OK);
    assert_int_equal(n, 7);
    tf_promise_free(w.prom);
    tf_future_free(w.fut);
    pthread_cond_destroy(&w.woke.cv);
    pthread_mutex_destroy(&w.woke.mu);
    tu_fx_end(&f);
}

static void wait_for_waiter(void *arg)
{
    wake4 *w = arg;
    w->saw_wake = flag_wait(&w->woke, 10000); /* loop 2 busy until the waiter woke */
}

static void second_then_stop(tf_async_conn *c, tf_async_op *op, tf_err err, int os_err,
                             uint8_t *data, size_t len, void *arg)
{
    (void)c, (void)op, (void)err, (void)os_err, (void)data, (void)len;
    wake4 *w = arg;
    w->stop_rc = tf_evb_stop(w->other); /* blocks until loop 2's task is over */
}

/* Attack 4, finding 2: a loop thread that completed an operation's future (its wake deferred to
 * the end of the iteration) and then blocks in tf_evb_stop of another loop wakes the waiter
 * first: here loop 2 is busy until that waiter is awake, so without the flush each loop waits
 * for the other (loop 2's task gave up after its 10 s bound). */
static void test_attack4_deferred_wake_flushed_before_blocking_stop(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    tf_evb *l2;
    assert_int_equal(tf_evb_new(&l2), TF_OK);
    assert_int_equal(tf_evb_start(l2), TF_OK);
    tf_tcp_config cfg = tu_cfg_default();
    int raw;
    tf_async_conn *c = tu_pair_raw(&f, &cfg, &raw);
    assert_true(tu_send_magic(raw));
    assert_true(tu_expect_magic(raw));
    wake4 w = {.other = l2, .stop_rc = TF_ERR_BAD_STATE};
    pthread_mutex_init(&w.woke.mu, NULL);
    pthread_cond_init(&w.woke.cv, NULL);
    uint8_t b1[16], b2[16];
    assert_int_equal(tf_async_conn_recv(c, b1, sizeof b1, -1, &w.fut), TF_OK);
    tf_async_op op;
    assert_int_equal(tf_async_conn_recv_op(c, &op, b2, sizeof b2, -1, second_then_stop, &w),
                     TF_OK);
    pthread_t t;
    waiter4_start(&w, &t);
    assert_int_equal(tf_evb_dispatch(l2, wait_for_waiter, &w), TF_OK);
    uint8_t two[2 * (4 + 3)] = {0, 0, 0, 3, 'o', 'n', 'e', 0, 0, 0, 3, 't', 'w', 'o'};
    assert_true(tu_write_all(raw, two, sizeof two)); /* both in one read: one pump */
    pthread_join(t, NULL);
    tu_loop_settle(f.evb); /* the callback returned from tf_evb_stop: l2 is no longer in use */
    assert_int_equal(tf_evb_free(l2), TF_OK);
    assert_true(w.saw_wake);
    assert_int_equal(w.stop_rc, TF_OK);
    size_t n = 0;
    assert_int_equal(tf_future_get(w.fut, &n, NULL), TF_OK);
    assert_int_equal(n, 3);
    tf_future_free(w.fut);
    tf_async_conn_free(c);
    close(raw);
    pthread_cond_destroy(&w.woke.cv);
    pthread_mutex_destroy(&w.woke.mu);
    tu_fx_end(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TIO_TEST(test_bug1_free_from_shutdown_callback),
        TIO_TEST(test_bug1_stop_then_free_in_task),
        TIO_TEST(test_bug2_close_flushes_send_in_handoff),
        TIO_TEST(test_bug3_client_freed_while_resolving),
        TIO_TEST(test_bug4_stream_and_recv_race),
        TIO_TEST(test_bug5_writable_after_busy_never_lost),
        TIO_TEST(test_bug6a_linger_timeout_reason),
        TIO_TEST(test_bug6bc_peer_closes_mid_frame_in_linger),
        TIO_TEST(test_bug7_read_buffer_nomem_fails),
        TIO_TEST(test_bug8_peer_any_thread_after_abort),
        TIO_TEST(test_bug9_busy_is_exact),
        TIO_TEST(test_bug9_server_backoff_timer_nomem),
        TIO_TEST(test_bug9_init_races_shutdown),
        TIO_TEST(test_bug9_stream_stopped_mid_frame),
        TIO_TEST(test_bug9_hold_after_poison_and_released),
        TIO_TEST(test_bug9_abort_then_cancelled),
        TIO_TEST(test_free_from_another_loops_thread),
        TIO_TEST(test_abort_inside_callback_not_nested),
        TIO_TEST(test_close_failed_by_reset_releases_fd),
        TIO_TEST(test_settings_inside_callback_not_nested),
        TIO_TEST(test_attack2_stream_set_and_removed_in_callback),
        TIO_TEST(test_attack2_writable_and_end_set_and_removed_in_callback),
        TIO_TEST(test_attack2_abort_in_callback_cancels_queued),
        TIO_TEST(test_attack2_idle_or_paused_learns_reset),
        TIO_TEST(test_attack4_user_promise_set_on_loop_wakes_at_once),
        TIO_TEST(test_attack4_deferred_wake_flushed_before_blocking_stop),
        TIO_TEST(test_attack2_stream_stopped_mid_frame_finishes_it),
    };
    tio_filter_from_env();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
