/* tests/test_scale.c -- 1,000 concurrent async connections on one server loop (issue 15).
 *
 * One server loop echoes in message-stream mode; a client loop connects 1,000 clients at once
 * (tf_async_client) and each plays ping-pong with messages of mixed sizes (0 B to 64 KiB) whose
 * first bytes name the client and the round and whose rest is a pattern seeded by both: a lost,
 * duplicated, reordered or crossed message fails the check. Both loops are driven by callbacks
 * only (op records, then-callbacks). The resident memory (/proc/self/statm) is printed before
 * the connections, with every connection up and idle, and after the exchange: the growth per
 * connection counts both ends (client and server side live in this process). The soft
 * RLIMIT_NOFILE is raised to the hard one; TF_SCALE_CONNS and TF_SCALE_ROUNDS override the
 * figures (the connection count is lowered if the fd limit cannot hold both ends). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sys/resource.h>

#include "tcpframe/async.h"
#include "test_io_util.h"
#include "tu_net.h"

/* ---------------------------------------------------------------- helpers */

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return -1;
    long size = 0, res = 0;
    if (fscanf(f, "%ld %ld", &size, &res) != 2)
        res = -1;
    fclose(f);
    return res < 0 ? -1 : res * (sysconf(_SC_PAGESIZE) / 1024);
}

/* Message |seq| of client |id|: its size, and its bytes (id and seq in the first 8, then a
 * pattern seeded by both). */
static size_t msg_size(uint32_t id, uint32_t seq)
{
    uint32_t h = (id * 2654435761u) ^ (seq * 40503u);
    switch (h % 8u) {
    case 0:
        return 0;
    case 1:
        return 1 + h % 7u;
    case 2:
    case 3:
    case 4:
        return 8 + h % 200u;
    case 5:
    case 6:
        return 200 + h % 4000u;
    default:
        return (h % 16u) == 7u ? 65536 : 4096 + h % 12000u;
    }
}

static uint32_t msg_seed(uint32_t id, uint32_t seq)
{
    return id * 100003u + seq;
}

static void msg_fill(uint8_t *b, size_t len, uint32_t id, uint32_t seq)
{
    if (len >= 8) {
        memcpy(b, &id, 4);
        memcpy(b + 4, &seq, 4);
        tu_fill(b + 8, len - 8, msg_seed(id, seq));
    } else {
        tu_fill(b, len, msg_seed(id, seq));
    }
}

static bool msg_ok(const uint8_t *b, size_t len, uint32_t id, uint32_t seq)
{
    if (len != msg_size(id, seq))
        return false;
    if (len >= 8) {
        uint32_t i, s;
        memcpy(&i, b, 4);
        memcpy(&s, b + 4, 4);
        return i == id && s == seq && tu_check(b + 8, len - 8, msg_seed(id, seq));
    }
    return tu_check(b, len, msg_seed(id, seq));
}

/* ---------------------------------------------------------------- server: echo */

static atomic_long srv_msgs, srv_closed, srv_bad;

static void echo_msg(tf_async_conn *c, tf_err err, int os_err, const uint8_t *data, size_t len,
                     void *arg)
{
    (void)os_err;
    (void)arg;
    if (err != TF_OK) {
        if (err != TF_ERR_CLOSED)
            atomic_fetch_add(&srv_bad, 1);
        atomic_fetch_add(&srv_closed, 1);
        tf_async_conn_free(c);
        return;
    }
    atomic_fetch_add(&srv_msgs, 1);
    uint8_t *copy = malloc(len ? len : 1);
    if (len)
        memcpy(copy, data, len);
    tf_future *fu = NULL;
    if (tf_async_conn_send_owned(c, copy, len, free, -1, &fu) == TF_OK) {
        tf_future_free(fu);
    } else {
        free(copy);
        atomic_fetch_add(&srv_bad, 1);
    }
}

static void on_accept(tf_async_server *s, tf_async_conn *c, void *arg)
{
    (void)s;
    (void)arg;
    if (tf_async_conn_stream(c, echo_msg, NULL) != TF_OK) {
        atomic_fetch_add(&srv_bad, 1);
        tf_async_conn_free(c);
    }
}

/* ---------------------------------------------------------------- clients: ping-pong */

typedef struct cli {
    uint32_t id, seq, rounds;
    tf_async_conn *c;
    tf_future *cfut;
    tf_async_op sop, rop;
    uint8_t *buf;
    tio_ctr *up, *done;
    bool failed;
} cli;

static atomic_long cli_bad;

static void round_start(cli *k);

static void on_sent(tf_async_conn *c, tf_async_op *op, tf_err err, int os_err, uint8_t *data,
                    size_t len, void *arg)
{
    (void)c, (void)op, (void)os_err, (void)data, (void)len;
    cli *k = arg;
    if (err != TF_OK && !k->failed) {
        k->failed = true;
        atomic_fetch_add(&cli_bad, 1);
        tio_ctr_add(k->done, 1);
    }
}

static void on_echo(tf_async_conn *c, tf_async_op *op, tf_err err, int os_err, uint8_t *data,
                    size_t len, void *arg)
{
    (void)c, (void)op, (void)os_err;
    cli *k = arg;
    bool ok = err == TF_OK && msg_ok(data, len, k->id, k->seq);
    free(data);
    if (k->failed)
        return;
    if (!ok) {
        k->failed = true;
        atomic_fetch_add(&cli_bad, 1);
        tio_ctr_add(k->done, 1);
        return;
    }
    free(k->buf);
    k->buf = NULL;
    if (++k->seq == k->rounds) {
        tio_ctr_add(k->done, 1);
        return;
    }
    round_start(k);
}

static void round_start(cli *k)
{
    size_t len = msg_size(k->id, k->seq);
    k->buf = malloc(len ? len : 1);
    msg_fill(k->buf, len, k->id, k->seq);
    if (tf_async_conn_recv_alloc_op(k->c, &k->rop, -1, on_echo, k) != TF_OK ||
        tf_async_conn_send_op(k->c, &k->sop, k->buf, len, -1, on_sent, k) != TF_OK) {
        k->failed = true;
        atomic_fetch_add(&cli_bad, 1);
        tio_ctr_add(k->done, 1);
    }
}

static void on_connected(tf_future *f, void *arg)
{
    cli *k = arg;
    void *c = NULL;
    if (tf_future_get(f, NULL, &c) != TF_OK || !c) {
        k->failed = true;
        atomic_fetch_add(&cli_bad, 1);
        tio_ctr_add(k->up, 1);
        tio_ctr_add(k->done, 1);
        return;
    }
    k->c = c;
    tio_ctr_add(k->up, 1);
}

/* Start every client's first round on the client loop (once all are connected). */
typedef struct starter {
    cli *v;
    long n;
} starter;

static void start_all(void *arg)
{
    starter *s = arg;
    for (long i = 0; i < s->n; i++)
        if (s->v[i].c && !s->v[i].failed)
            round_start(&s->v[i]);
}

/* Wait for |c| to reach n, ticking the watchdog while it moves; false if it stalls for |ms|. */
static bool wait_progress(tio_ctr *c, long n, long ms)
{
    long last = -1;
    long long since = tio_now_ms();
    while (!tio_ctr_wait(c, n, 200)) {
        long v = tio_ctr_get(c);
        if (v != last) {
            last = v;
            since = tio_now_ms();
            tio_tick();
        } else if (tio_now_ms() - since > ms) {
            return false;
        }
    }
    return true;
}

/* ---------------------------------------------------------------- the test */

static void test_scale_1k_connections_ping_pong(void **state)
{
    (void)state;
    long n = tio_iters("TF_SCALE_CONNS", 1000, 1, 4);
    const long rounds = tio_iters("TF_SCALE_ROUNDS", 20, 2, 4);
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    const long room = ((long)rl.rlim_cur - 64) / 2;
    if (room < n) {
        printf("scale: RLIMIT_NOFILE %ld holds only %ld connections (both ends)\n",
               (long)rl.rlim_cur, room);
        n = room;
    }
    const int fds0 = tu_fd_count();
    atomic_store(&srv_msgs, 0);
    atomic_store(&srv_closed, 0);
    atomic_store(&srv_bad, 0);
    atomic_store(&cli_bad, 0);

    tf_evb *es, *ec;
    assert_int_equal(tf_evb_new(&es), TF_OK);
    assert_int_equal(tf_evb_start(es), TF_OK);
    assert_int_equal(tf_evb_new(&ec), TF_OK);
    assert_int_equal(tf_evb_start(ec), TF_OK);
    tf_tcp_config cfg;
    tf_tcp_config_init(&cfg);
    cfg.connect_timeout_ms = 60000;
    cfg.handshake_timeout_ms = 60000;
    cfg.accept_queue = 4096;
    tf_async_server *srv;
    assert_int_equal(tf_async_server_new(es, &srv), TF_OK);
    tf_async_server_on_accept(srv, on_accept, NULL);
    tf_errmsg msg;
    if (tf_async_server_init(srv, "127.0.0.1:0", &cfg, &msg) != TF_OK)
        fail_msg("server: %s", msg.text);
    char addr[TF_ADDRSTR_LEN];
    assert_int_equal(tf_async_server_addr(srv, addr, sizeof addr), TF_OK);
    tf_async_client *cl;
    assert_int_equal(tf_async_client_new(ec, &cfg, &cl, NULL), TF_OK);

    const long rss0 = rss_kib();
    const long long t0 = tio_now_ms();
    tio_ctr up, done;
    tio_ctr_init(&up);
    tio_ctr_init(&done);
    cli *v = calloc((size_t)n, sizeof *v);
    for (long i = 0; i < n; i++) {
        v[i].id = (uint32_t)i;
        v[i].rounds = (uint32_t)rounds;
        v[i].up = &up;
        v[i].done = &done;
        tf_future *fu = NULL;
        if (tf_async_client_connect(cl, addr, &fu, &msg) != TF_OK)
            fail_msg("connect %ld: %s", i, msg.text);
        v[i].cfut = fu;
        assert_int_equal(tf_future_then(fu, on_connected, &v[i]), TF_OK);
    }
    if (!wait_progress(&up, n, 60000))
        fail_msg("only %ld of %ld clients connected", tio_ctr_get(&up), n);
    const long long t1 = tio_now_ms();
    const long rss1 = rss_kib();
    assert_int_equal(atomic_load(&cli_bad), 0);

    starter st = {v, n};
    assert_int_equal(tf_evb_dispatch(ec, start_all, &st), TF_OK);
    if (!wait_progress(&done, n, 60000))
        fail_msg("only %ld of %ld clients finished", tio_ctr_get(&done), n);
    const long long t2 = tio_now_ms();
    const long rss2 = rss_kib();
    assert_int_equal(atomic_load(&cli_bad), 0);
    assert_int_equal(atomic_load(&srv_bad), 0);
    assert_int_equal(atomic_load(&srv_msgs), n * rounds);

    for (long i = 0; i < n; i++) {
        tf_async_conn_free(v[i].c);
        tf_future_free(v[i].cfut);
        free(v[i].buf);
    }
    /* every server side sees CLOSED and frees itself */
    tio_ctr closed;
    tio_ctr_init(&closed);
    for (long long t = tio_now_ms(); atomic_load(&srv_closed) < n;) {
        tio_ctr_wait(&closed, 1, 20);
        if (tio_now_ms() - t > 60000)
            fail_msg("only %ld of %ld server sides closed", atomic_load(&srv_closed), n);
    }
    tio_ctr_destroy(&closed);
    tf_async_client_free(cl);
    tf_async_server_free(srv);
    assert_int_equal(tf_evb_free(ec), TF_OK);
    assert_int_equal(tf_evb_free(es), TF_OK);
    free(v);
    tio_ctr_destroy(&up);
    tio_ctr_destroy(&done);
    assert_int_equal(tu_fd_count(), fds0);

    printf("scale: %ld connections, %ld round trips each (%ld messages echoed, mixed 0 B - 64 KiB): "
           "connect+handshake %lld ms, exchange %lld ms\n",
           n, rounds, n * rounds, t1 - t0, t2 - t1);
    printf("scale: RSS %ld KiB before, %ld KiB with all connected (idle), %ld KiB after the "
           "exchange: %.1f KiB per connection idle, %.1f KiB after traffic (both ends each)\n",
           rss0, rss1, rss2, (double)(rss1 - rss0) / (double)n, (double)(rss2 - rss0) / (double)n);
}

int main(void)
{
    tio_filter_from_env();
    const struct CMUnitTest tests[] = {
        TIO_TEST(test_scale_1k_connections_ping_pong),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
