/* tests/test_async_multi.c -- one tf_async_server over several loops (tf_async_server_add_loop,
 * issue 25 item 6): connections spread over every loop (the fewest first), the accept callback
 * on the connection's loop thread, echo on every loop, accept futures; the server shut down
 * and freed from the test thread, its own loop's thread and another loop's thread while
 * connections are handed out, queued and in the handshake on every loop (no hang, every socket
 * of the server closed, handed-out ones still working); shutdown inside an accept callback, and
 * a shutdown that waits for a callback running on another loop;
 * max_conns and the receive-memory budget over all loops. Every test checks that no fd leaked. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "async_internal.h"
#include "tcpframe/async.h"
#include "test_io_util.h"
#include "tu_async.h"
#include "tu_net.h"

enum { NL = 3 }; /* loops per server: the server's own and two added */

typedef struct mfx {
    tf_evb *loops[NL];
    tf_async_server *s;
    char addr[TF_ADDRSTR_LEN];
    int fds0;
} mfx;

static void mfx_start(mfx *f, const tf_tcp_config *cfg, tf_async_accept_cb acb, void *arg)
{
    f->fds0 = tu_fd_count();
    for (int i = 0; i < NL; i++) {
        assert_int_equal(tf_evb_new(&f->loops[i]), TF_OK);
        assert_int_equal(tf_evb_start(f->loops[i]), TF_OK);
    }
    assert_int_equal(tf_async_server_new(f->loops[0], &f->s), TF_OK);
    for (int i = 1; i < NL; i++)
        assert_int_equal(tf_async_server_add_loop(f->s, f->loops[i]), TF_OK);
    if (acb)
        tf_async_server_on_accept(f->s, acb, arg);
    tf_tcp_config c = cfg ? *cfg : tu_cfg_default();
    c.handshake_timeout_ms = 60000; /* silent clients stay in the handshake for the test */
    tf_errmsg msg;
    if (tf_async_server_init(f->s, "127.0.0.1:0", &c, &msg) != TF_OK)
        fail_msg("init: %s", msg.text);
    assert_int_equal(tf_async_server_addr(f->s, f->addr, sizeof f->addr), TF_OK);
}

static void mfx_end(mfx *f)
{
    tf_async_server_free(f->s); /* idempotent after an earlier free: callers set s NULL */
    for (int i = 0; i < NL; i++)
        assert_int_equal(tf_evb_free(f->loops[i]), TF_OK);
    assert_int_equal(tu_fd_count(), f->fds0);
}

static int loop_index(const mfx *f, const tf_evb *e)
{
    for (int i = 0; i < NL; i++)
        if (f->loops[i] == e)
            return i;
    return -1;
}

/* A client that completes the handshake. */
static int client(const char *addr)
{
    int fd = tu_raw_connect(addr);
    assert_true(fd >= 0);
    assert_true(tu_send_magic(fd));
    assert_true(tu_expect_magic(fd));
    return fd;
}

/* Until the server has taken |n| connections (accepted, counted): a deadline as a watchdog. */
static void wait_active(tf_async_server *s, uint64_t n)
{
    long long end = tio_now_ms() + 30000;
    while (tf_async_server_active(s) != n) {
        if (tio_now_ms() > end)
            fail_msg("active %llu, expected %llu", (unsigned long long)tf_async_server_active(s),
                     (unsigned long long)n);
        usleep(1000);
    }
}

/* One message there and back through a raw client of an echoing connection. */
static void round_trip(int fd, int k)
{
    char msg[32], back[32];
    int n = snprintf(msg, sizeof msg, "ping %d", k);
    assert_true(tu_write_frame(fd, msg, (uint32_t)n));
    uint32_t len = 0;
    assert_true(tu_read_frame(fd, back, sizeof back, &len));
    assert_int_equal(len, n);
    assert_memory_equal(back, msg, (size_t)n);
}

/* The server closed this client (EOF or a reset), after reading its magic if it sent one. */
static void assert_closed(int fd)
{
    char b[16];
    long long end = tio_now_ms() + 30000;
    for (;;) {
        ssize_t r = read(fd, b, sizeof b);
        if (r <= 0)
            return;
        if (tio_now_ms() > end)
            fail_msg("fd %d still open", fd);
    }
}

static void echo_msg(tf_async_conn *c, tf_err err, int os_err, const uint8_t *data, size_t len,
                     void *arg)
{
    (void)os_err, (void)arg;
    if (err != TF_OK)
        return;
    uint8_t *copy = malloc(len ? len : 1);
    TIO_CHECK(copy != NULL);
    if (len)
        memcpy(copy, data, len);
    tf_future *f = NULL;
    TIO_CHECK_EQ(tf_async_conn_send_owned(c, copy, len, free, -1, &f), TF_OK);
    tf_future_free(f);
}

/* ---------------------------------------------------------------- spread and echo */

typedef struct spread {
    mfx *f;
    tf_async_conn *conns[16];
    int on[16]; /* loop index of conns[i] */
    int n;      /* under ctr's lock: bumped after conns[n] is set */
    pthread_mutex_t mu;
    tio_ctr accepted;
    bool shut_inside; /* the first callback shuts the server down */
} spread;

static void spread_accept(tf_async_server *s, tf_async_conn *c, void *arg)
{
    spread *sp = arg;
    tf_evb *e = tf_async_conn_evb(c);
    TIO_CHECK(tf_evb_in_loop_thread(e)); /* on the connection's own loop thread */
    int li = loop_index(sp->f, e);
    TIO_CHECK(li >= 0);
    pthread_mutex_lock(&sp->mu);
    int k = sp->n++;
    pthread_mutex_unlock(&sp->mu);
    TIO_CHECK(k < 16);
    if (k >= 16) {
        tf_async_conn_free(c);
        return;
    }
    sp->conns[k] = c;
    sp->on[k] = li;
    TIO_CHECK_EQ(tf_async_conn_stream(c, echo_msg, NULL), TF_OK);
    if (sp->shut_inside && k == 0)
        TIO_CHECK_EQ(tf_async_server_shutdown(s), TF_OK); /* does not wait for itself */
    tio_ctr_add(&sp->accepted, 1);
}

/* Nine clients over three loops: three on each (the fewest first; all stay connected), the
 * accept callback on each connection's loop thread, and every one echoes. The server is freed
 * with them connected: they are the caller's and go on echoing. */
static void test_multi_spread_echo(void **state)
{
    (void)state;
    mfx f;
    spread sp = {.f = &f};
    pthread_mutex_init(&sp.mu, NULL);
    tio_ctr_init(&sp.accepted);
    mfx_start(&f, NULL, spread_accept, &sp);
    enum { N = 9 };
    int cl[N];
    for (int i = 0; i < N; i++)
        cl[i] = client(f.addr);
    assert_true(tio_ctr_wait(&sp.accepted, N, 30000));
    int per[NL] = {0};
    for (int i = 0; i < N; i++)
        per[sp.on[i]]++;
    print_message("9 clients over 3 loops: %d, %d, %d\n", per[0], per[1], per[2]);
    for (int i = 0; i < NL; i++) {
        assert_int_equal(per[i], N / NL);
        assert_int_equal(tf__async_server_loop_live(f.s, f.loops[i]), N / NL);
    }
    for (int i = 0; i < N; i++)
        round_trip(cl[i], i);
    tf_async_server_free(f.s);
    f.s = NULL;
    for (int i = 0; i < N; i++)
        round_trip(cl[i], 100 + i); /* handed out: the server's end does not end them */
    for (int i = 0; i < N; i++)     /* in accept order, which across loops is not cl's */
        tf_async_conn_free(sp.conns[i]);
    for (int i = 0; i < N; i++) {
        assert_closed(cl[i]);
        close(cl[i]);
    }
    tio_off_main_assert();
    mfx_end(&f);
    tio_ctr_destroy(&sp.accepted);
    pthread_mutex_destroy(&sp.mu);
}

/* Accept futures: queued before the clients come and after; the connections land on every
 * loop and work there. */
static void test_multi_accept_futures(void **state)
{
    (void)state;
    mfx f;
    mfx_start(&f, NULL, NULL, NULL);
    enum { N = 6 };
    tf_future *acc[N];
    for (int i = 0; i < N / 2; i++)
        assert_int_equal(tf_async_server_accept(f.s, &acc[i]), TF_OK);
    int cl[N];
    for (int i = 0; i < N; i++)
        cl[i] = client(f.addr);
    wait_active(f.s, N);
    for (int i = N / 2; i < N; i++)
        assert_int_equal(tf_async_server_accept(f.s, &acc[i]), TF_OK);
    tf_async_conn *c[N];
    int per[NL] = {0};
    for (int i = 0; i < N; i++) {
        void *p = NULL;
        assert_int_equal(tu_fut_result(acc[i], NULL, &p), TF_OK);
        c[i] = p;
        int li = loop_index(&f, tf_async_conn_evb(c[i]));
        assert_true(li >= 0);
        per[li]++;
    }
    for (int i = 0; i < NL; i++)
        assert_int_equal(per[i], N / NL);
    /* Each connection's own peer is unknown here (accept order is not connect order across
     * loops): send from every connection, and every client gets exactly one message. */
    for (int i = 0; i < N; i++)
        assert_int_equal(tu_send_wait(c[i], "hello", 5), TF_OK);
    for (int i = 0; i < N; i++) {
        char b[8];
        uint32_t len = 0;
        assert_true(tu_read_frame(cl[i], b, sizeof b, &len));
        assert_int_equal(len, 5);
        assert_memory_equal(b, "hello", 5);
    }
    for (int i = 0; i < N; i++) {
        tf_async_conn_free(c[i]);
        close(cl[i]);
    }
    mfx_end(&f);
}

/* ---------------------------------------------------------------- shutdown and free */

typedef struct freer {
    tf_async_server *s;
    tio_ctr done;
} freer;

static void free_task(void *arg)
{
    freer *fr = arg;
    tf_async_server_free(fr->s);
    tio_ctr_add(&fr->done, 1);
}

/* With connections on every loop -- three handed out, three handshaken and queued, three
 * silent in the handshake (one of each per loop) -- the server is freed from the test thread,
 * from its own loop's thread, and from another of its loops' threads (which the teardown's
 * frees must not deadlock: the queued and handshaking connections of that loop are freed on
 * it). The queued and silent clients see their connections closed; the handed-out ones still
 * echo; no fd is left. */
static void test_multi_free_from_any_thread(void **state)
{
    (void)state;
    for (int who = 0; who < 3; who++) {
        mfx f;
        mfx_start(&f, NULL, NULL, NULL);
        enum { N = NL * 3 };
        int cl[N];
        tf_async_conn *out[NL];
        int outloop[NL];
        for (int i = 0; i < NL; i++) { /* handed out: one per loop (each takes the fewest) */
            tf_future *acc;
            assert_int_equal(tf_async_server_accept(f.s, &acc), TF_OK);
            cl[i] = client(f.addr);
            void *p = NULL;
            assert_int_equal(tu_fut_result(acc, NULL, &p), TF_OK);
            out[i] = p;
            outloop[i] = loop_index(&f, tf_async_conn_evb(out[i]));
            TIO_CHECK_EQ(tf_async_conn_stream(out[i], echo_msg, NULL), TF_OK);
        }
        for (int i = NL; i < 2 * NL; i++) /* handshaken, queued */
            cl[i] = client(f.addr);
        for (int i = 2 * NL; i < N; i++) /* silent: in the handshake */
            cl[i] = tu_raw_connect(f.addr);
        wait_active(f.s, N);
        for (int i = 0; i < NL; i++) {
            assert_int_equal(tf__async_server_loop_live(f.s, f.loops[i]), 3);
            assert_int_not_equal(outloop[i], -1);
        }
        if (who == 0) {
            tf_async_server_free(f.s);
        } else {
            freer fr = {.s = f.s};
            tio_ctr_init(&fr.done);
            /* who 1: the server's own loop; who 2: another of its loops */
            assert_int_equal(tf_evb_dispatch(f.loops[who == 1 ? 0 : 2], free_task, &fr), TF_OK);
            assert_true(tio_ctr_wait(&fr.done, 1, 30000));
            tio_ctr_destroy(&fr.done);
        }
        f.s = NULL;
        for (int i = NL; i < N; i++) {
            assert_closed(cl[i]);
            close(cl[i]);
        }
        for (int i = 0; i < NL; i++) {
            round_trip(cl[i], i);
            tf_async_conn_free(out[i]);
            close(cl[i]);
        }
        tio_off_main_assert();
        mfx_end(&f);
    }
}

/* Shutdown called inside an accept callback on an added loop's thread returns without waiting
 * for itself (and frees the server loop's silent client from there); no callback comes after;
 * the free afterwards is clean. */
static void test_multi_shutdown_inside_callback(void **state)
{
    (void)state;
    mfx f;
    spread sp = {.f = &f, .shut_inside = true};
    pthread_mutex_init(&sp.mu, NULL);
    tio_ctr_init(&sp.accepted);
    mfx_start(&f, NULL, spread_accept, &sp);
    int silent = tu_raw_connect(f.addr); /* on the server's loop */
    wait_active(f.s, 1);
    int c1 = client(f.addr); /* on the next loop: its callback shuts the server down */
    assert_true(tio_ctr_wait(&sp.accepted, 1, 30000));
    assert_int_equal(sp.on[0], 1);
    assert_closed(silent);
    close(silent);
    round_trip(c1, 1);
    int c2 = tu_raw_connect(f.addr); /* refused or closed: the listen socket is gone */
    if (c2 >= 0) {
        tu_send_magic(c2);
        assert_closed(c2);
        close(c2);
    }
    assert_int_equal(tio_ctr_get(&sp.accepted), 1);
    tf_async_server_free(f.s);
    f.s = NULL;
    tf_async_conn_free(sp.conns[0]);
    close(c1);
    tio_off_main_assert();
    mfx_end(&f);
    tio_ctr_destroy(&sp.accepted);
    pthread_mutex_destroy(&sp.mu);
}

/* An accept callback on an added loop's thread is still running when another thread shuts the
 * server down: the shutdown returns only after the callback has. The callback waits until it
 * sees the shutdown begun, then up to 300 ms for it to return: a shutdown that does not wait
 * returns meanwhile, which the callback records. */
typedef struct slow {
    tf_async_server *s;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool returned;   /* the shutdown returned */
    bool overlapped; /* ... while the callback ran */
    tio_ctr entered, left;
    tf_async_conn *c;
} slow;

static void slow_accept(tf_async_server *s, tf_async_conn *c, void *arg)
{
    slow *w = arg;
    w->c = c;
    tio_ctr_add(&w->entered, 1);
    tf_future *f = NULL;
    long long end = tio_now_ms() + 30000;
    while (tf_async_server_accept(s, &f) != TF_ERR_SHUTDOWN && tio_now_ms() < end) {
        tf_future_free(f); /* BAD_STATE (a callback is set): nothing was queued */
        f = NULL;
        usleep(1000);
    }
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_nsec += 300 * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&w->mu);
    int rc = 0;
    while (!w->returned && rc == 0)
        rc = pthread_cond_timedwait(&w->cv, &w->mu, &dl);
    w->overlapped = w->returned;
    pthread_mutex_unlock(&w->mu);
    tio_ctr_add(&w->left, 1);
}

static void *shut_main(void *arg)
{
    slow *w = arg;
    tf_async_server_shutdown(w->s);
    pthread_mutex_lock(&w->mu);
    w->returned = true;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

static void test_multi_shutdown_waits_for_callbacks(void **state)
{
    (void)state;
    mfx f;
    slow w = {0};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    tio_ctr_init(&w.entered);
    tio_ctr_init(&w.left);
    mfx_start(&f, NULL, slow_accept, &w);
    w.s = f.s;
    int silent = tu_raw_connect(f.addr); /* on the server's loop */
    wait_active(f.s, 1);
    int c1 = client(f.addr); /* on the next loop: its callback runs there */
    assert_true(tio_ctr_wait(&w.entered, 1, 30000));
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, shut_main, &w), 0);
    pthread_join(t, NULL);
    assert_true(tio_ctr_wait(&w.left, 1, 30000)); /* (at once, unless the shutdown did not wait) */
    assert_false(w.overlapped);
    assert_ptr_equal(tf_async_conn_evb(w.c), f.loops[1]);
    tf_async_conn_free(w.c);
    close(c1);
    close(silent);
    mfx_end(&f);
    tio_ctr_destroy(&w.entered);
    tio_ctr_destroy(&w.left);
    pthread_cond_destroy(&w.cv);
    pthread_mutex_destroy(&w.mu);
}

/* ---------------------------------------------------------------- limits over all loops */

typedef struct capped {
    tio_ctr rejects;
    _Atomic int why;
    _Atomic int wrong_thread;
    tf_evb *server_loop;
} capped;

static void cap_reject(tf_async_server *s, const char *peer, tf_err err, int os_err, void *arg)
{
    (void)s, (void)peer, (void)os_err;
    capped *k = arg;
    if (!tf_evb_in_loop_thread(k->server_loop))
        atomic_store(&k->wrong_thread, 1);
    atomic_store(&k->why, err);
    tio_ctr_add(&k->rejects, 1);
}

/* max_conns 4 over three loops: the fifth client is closed at once (BUSY, on the server's loop
 * thread); a connection freed on one loop lets the next client in, on that loop (the fewest). */
static void test_multi_max_conns(void **state)
{
    (void)state;
    mfx f;
    capped k = {0};
    tio_ctr_init(&k.rejects);
    tf_tcp_config cfg = tu_cfg_default();
    cfg.max_conns = 4;
    /* the reject callback before init: mfx_start sets only the accept one */
    f.fds0 = tu_fd_count();
    for (int i = 0; i < NL; i++) {
        assert_int_equal(tf_evb_new(&f.loops[i]), TF_OK);
        assert_int_equal(tf_evb_start(f.loops[i]), TF_OK);
    }
    assert_int_equal(tf_async_server_new(f.loops[0], &f.s), TF_OK);
    for (int i = 1; i < NL; i++)
        assert_int_equal(tf_async_server_add_loop(f.s, f.loops[i]), TF_OK);
    k.server_loop = f.loops[0];
    tf_async_server_on_reject(f.s, cap_reject, &k);
    assert_int_equal(tf_async_server_init(f.s, "127.0.0.1:0", &cfg, NULL), TF_OK);
    assert_int_equal(tf_async_server_addr(f.s, f.addr, sizeof f.addr), TF_OK);
    int cl[6];
    tf_async_conn *c[5];
    for (int i = 0; i < 4; i++) {
        tf_future *acc;
        assert_int_equal(tf_async_server_accept(f.s, &acc), TF_OK);
        cl[i] = client(f.addr);
        void *p = NULL;
        assert_int_equal(tu_fut_result(acc, NULL, &p), TF_OK);
        c[i] = p;
    }
    assert_int_equal(tf_async_server_active(f.s), 4);
    cl[4] = tu_raw_connect(f.addr);
    assert_closed(cl[4]);
    assert_true(tio_ctr_wait(&k.rejects, 1, 30000));
    assert_int_equal(atomic_load(&k.why), TF_ERR_BUSY);
    assert_int_equal(atomic_load(&k.wrong_thread), 0);
    assert_int_equal(tf_async_server_rejected(f.s), 1);
    /* loops now 2, 1, 1 (the first three one each, the fourth on loop 0 again); free one on
     * loop 1: it has the fewest, and the next client goes there */
    int victim = -1;
    for (int i = 0; i < 4 && victim < 0; i++)
        if (tf_async_conn_evb(c[i]) == f.loops[1])
            victim = i;
    assert_true(victim >= 0);
    tf_async_conn_free(c[victim]);
    assert_int_equal(tf_async_server_active(f.s), 3);
    tf_future *acc;
    assert_int_equal(tf_async_server_accept(f.s, &acc), TF_OK);
    cl[5] = client(f.addr);
    void *p = NULL;
    assert_int_equal(tu_fut_result(acc, NULL, &p), TF_OK);
    c[4] = p;
    assert_ptr_equal(tf_async_conn_evb(c[4]), f.loops[1]);
    for (int i = 0; i < 5; i++)
        if (i != victim)
            tf_async_conn_free(c[i]);
    for (int i = 0; i < 6; i++)
        close(cl[i]);
    mfx_end(&f);
    tio_ctr_destroy(&k.rejects);
}

typedef struct budget_srv {
    pthread_mutex_t mu;
    tf_async_conn *conns[NL];
    int nconns;
    tio_ctr got;
    size_t len[NL];
    bool intact[NL];
    int n;
} budget_srv;

static void budget_msg(tf_async_conn *c, tf_err err, int os_err, const uint8_t *data, size_t len,
                       void *arg)
{
    (void)c, (void)os_err;
    budget_srv *b = arg;
    if (err != TF_OK)
        return;
    pthread_mutex_lock(&b->mu);
    int k = b->n++;
    if (k < NL) {
        b->len[k] = len;
        b->intact[k] = len >= 4 && tu_check(data + 4, len - 4, data[0]);
    }
    pthread_mutex_unlock(&b->mu);
    tio_ctr_add(&b->got, 1);
}

static void budget_accept(tf_async_server *s, tf_async_conn *c, void *arg)
{
    (void)s;
    budget_srv *b = arg;
    pthread_mutex_lock(&b->mu);
    if (b->nconns < NL)
        b->conns[b->nconns++] = c;
    pthread_mutex_unlock(&b->mu);
    TIO_CHECK_EQ(tf_async_conn_stream(c, budget_msg, arg), TF_OK);
}

/* recv_mem_budget 1 MiB, three clients on three loops sending 4 MiB each at once: the loops
 * draw on one budget (waits and wake-ups cross threads), every message arrives intact, and the
 * memory held at once never passed the budget plus one message. */
static void test_multi_memory_budget(void **state)
{
    (void)state;
    mfx f;
    budget_srv b = {0};
    pthread_mutex_init(&b.mu, NULL);
    tio_ctr_init(&b.got);
    tf_tcp_config cfg = tu_cfg_default();
    cfg.recv_mem_budget = 1 << 20;
    mfx_start(&f, &cfg, budget_accept, &b);
    tu_bigsend bs[NL];
    pthread_t t[NL];
    for (int i = 0; i < NL; i++)
        bs[i] = (tu_bigsend){client(f.addr), (uint8_t)(i + 1), false};
    wait_active(f.s, NL);
    for (int i = 0; i < NL; i++)
        assert_int_equal(tf__async_server_loop_live(f.s, f.loops[i]), 1);
    for (int i = 0; i < NL; i++)
        assert_int_equal(pthread_create(&t[i], NULL, tu_send_big, &bs[i]), 0);
    assert_true(tio_ctr_wait(&b.got, NL, 60000));
    for (int i = 0; i < NL; i++) {
        pthread_join(t[i], NULL);
        assert_true(bs[i].ok);
        assert_int_equal(b.len[i], TU_BIG);
        assert_true(b.intact[i]);
    }
    size_t used = 1, peak = 0;
    uint64_t waits = 0;
    assert_int_equal(tf_async_server_mem_use(f.s, &used, &peak, &waits), TF_OK);
    print_message("budget 1 MiB, 3 x 4 MiB on 3 loops: peak %zu KiB, %llu waits\n", peak / 1024,
                  (unsigned long long)waits);
    assert_int_equal(used, 0);
    assert_true(peak <= (1u << 20) + TU_BIG);
    for (int i = 0; i < NL; i++) {
        tf_async_conn_free(b.conns[i]);
        close(bs[i].fd);
    }
    tio_off_main_assert();
    mfx_end(&f);
    tio_ctr_destroy(&b.got);
    pthread_mutex_destroy(&b.mu);
}

/* add_loop's refusals: NULL, a loop twice (its own too), after init. */
static void test_multi_add_loop_refusals(void **state)
{
    (void)state;
    tu_fx fx;
    tu_fx_start(&fx);
    tf_evb *other;
    assert_int_equal(tf_evb_new(&other), TF_OK);
    tf_async_server *s;
    assert_int_equal(tf_async_server_new(fx.evb, &s), TF_OK);
    assert_int_equal(tf_async_server_add_loop(NULL, other), TF_ERR_INVALID_ARGUMENT);
    assert_int_equal(tf_async_server_add_loop(s, NULL), TF_ERR_INVALID_ARGUMENT);
    assert_int_equal(tf_async_server_add_loop(s, fx.evb), TF_ERR_INVALID_ARGUMENT);
    assert_int_equal(tf_async_server_add_loop(s, other), TF_OK);
    assert_int_equal(tf_async_server_add_loop(s, other), TF_ERR_INVALID_ARGUMENT);
    assert_int_equal(tf_async_server_init(s, "127.0.0.1:0", NULL, NULL), TF_OK);
    tf_evb *third;
    assert_int_equal(tf_evb_new(&third), TF_OK);
    assert_int_equal(tf_async_server_add_loop(s, third), TF_ERR_BAD_STATE);
    tf_async_server_free(s);
    assert_int_equal(tf_evb_free(third), TF_OK);
    assert_int_equal(tf_evb_free(other), TF_OK);
    tu_fx_end(&fx);
}

/* ---------------------------------------------------------------- events over several loops */

/* Connection events (obs.h) of a server over three loops: CONNECTED on the connection's loop
 * thread before its accept callback, a bad magic's HANDSHAKE_FAILED, CLOSED for a connection
 * freed while the server runs; events of different loops may run at once (the counters are atomic); after the
 * shutdown no event runs, and a slow event under way on another loop is waited for. */
typedef struct evs {
    mfx *f;
    atomic_int connected, failed, closed, wrong_thread, accepted_before_connected, after_shut;
    atomic_bool shut;
    atomic_int slow;         /* 1: the next CLOSED event sleeps (the shutdown must wait) */
    atomic_int in_slow;      /* a slow event is running */
    tf_async_conn *conns[16];
    atomic_int n;
} evs;

static void evs_event(tf_async_conn *c, tf_conn_event ev, tf_err err, int os_err, void *arg)
{
    (void)err, (void)os_err;
    evs *e = arg;
    if (atomic_load(&e->shut))
        atomic_fetch_add(&e->after_shut, 1);
    if (!tf_evb_in_loop_thread(tf_async_conn_evb(c)))
        atomic_fetch_add(&e->wrong_thread, 1);
    if (ev == TF_CONN_CONNECTED)
        atomic_fetch_add(&e->connected, 1);
    else if (ev == TF_CONN_HANDSHAKE_FAILED)
        atomic_fetch_add(&e->failed, 1);
    else if (ev == TF_CONN_CLOSED) {
        atomic_fetch_add(&e->closed, 1);
        int one = 1;
        if (atomic_compare_exchange_strong(&e->slow, &one, 0)) {
            atomic_store(&e->in_slow, 1);
            usleep(200000); /* the shutdown, made meanwhile, must return after this */
            atomic_store(&e->in_slow, 2);
        }
    }
}

static void evs_accept(tf_async_server *s, tf_async_conn *c, void *arg)
{
    (void)s;
    evs *e = arg;
    if (atomic_load(&e->connected) <= atomic_load(&e->n))
        atomic_fetch_add(&e->accepted_before_connected, 1);
    int k = atomic_fetch_add(&e->n, 1);
    TIO_CHECK(k < 16);
    if (k < 16)
        e->conns[k] = c;
    else
        tf_async_conn_free(c);
}

static void *evs_free_one(void *arg)
{
    tf_async_conn_free(arg); /* its CLOSED event (slow) runs inside, on its loop */
    return NULL;
}

static void test_multi_events(void **state)
{
    (void)state;
    mfx f;
    evs e = {.f = &f};
    mfx_start(&f, NULL, evs_accept, &e);
    assert_int_equal(tf_async_server_on_event(f.s, evs_event, &e), TF_OK);
    enum { N = 6 };
    int cl[N];
    for (int i = 0; i < N; i++)
        cl[i] = client(f.addr);
    wait_active(f.s, N);
    long long end = tio_now_ms() + 30000;
    while (atomic_load(&e.n) < N && tio_now_ms() < end)
        usleep(1000);
    assert_int_equal(atomic_load(&e.n), N);
    int bad = tu_raw_connect(f.addr);
    assert_true(tu_write_all(bad, "XXXX", 4));
    assert_closed(bad);
    close(bad);
    end = tio_now_ms() + 30000;
    while (atomic_load(&e.failed) < 1 && tio_now_ms() < end)
        usleep(1000);
    assert_int_equal(atomic_load(&e.connected), N);
    assert_int_equal(atomic_load(&e.failed), 1);
    assert_int_equal(atomic_load(&e.accepted_before_connected), 0);
    /* a slow CLOSED event under way while the server shuts down: the shutdown waits for it */
    atomic_store(&e.slow, 1);
    pthread_t t;
    tf_async_conn *victim = NULL;
    for (int i = 0; i < N && !victim; i++) /* one not on the server's loop */
        if (tf_async_conn_evb(e.conns[i]) != f.loops[0])
            victim = e.conns[i];
    assert_non_null(victim);
    for (int i = 0; i < N; i++)
        if (e.conns[i] == victim)
            e.conns[i] = NULL;
    assert_int_equal(pthread_create(&t, NULL, evs_free_one, victim), 0);
    while (atomic_load(&e.in_slow) == 0)
        usleep(1000);
    assert_int_equal(tf_async_server_shutdown(f.s), TF_OK);
    assert_int_equal(atomic_load(&e.in_slow), 2); /* it returned after the slow event ended */
    atomic_store(&e.shut, true);
    pthread_join(t, NULL);
    for (int i = 0; i < N; i++)
        if (e.conns[i])
            tf_async_conn_free(e.conns[i]); /* no CLOSED event: the server is shut down */
    for (int i = 0; i < N; i++)
        close(cl[i]);
    assert_int_equal(atomic_load(&e.after_shut), 0);
    assert_int_equal(atomic_load(&e.wrong_thread), 0);
    assert_int_equal(atomic_load(&e.closed), 1); /* the victim's (freed while healthy) */
    tio_off_main_assert();
    mfx_end(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TIO_TEST(test_multi_spread_echo),
        TIO_TEST(test_multi_accept_futures),
        TIO_TEST(test_multi_free_from_any_thread),
        TIO_TEST(test_multi_shutdown_inside_callback),
        TIO_TEST(test_multi_shutdown_waits_for_callbacks),
        TIO_TEST(test_multi_max_conns),
        TIO_TEST(test_multi_memory_budget),
        TIO_TEST(test_multi_add_loop_refusals),
        TIO_TEST(test_multi_events),
    };
    tio_filter_from_env();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
