/* tests/test_tls_faults.c -- allocation failures in the TLS path (SPEC 9.11): OpenSSL's
 * allocations (CRYPTO_set_mem_functions, installed first thing in main, before any OpenSSL
 * call) and the library's own (tf__alloc and friends, through io/sys.c's hook) share one
 * countdown that makes the Nth allocation of a run fail. A run is a sync, or an async, TLS
 * connect + mutual handshake + one 64-byte echo against a server of the same kind (the server
 * made before the countdown is armed, so its accept, handshake and echo are inside it). For
 * N = 1, 2, 3, ... (make check: every 4th N; TF_TLS_FAULTS_STRIDE=1, run by .ci/run: every one)
 * until a run makes fewer than N allocations: each run either succeeds with
 * the echo byte-exact, or ends with a clear error code (NOMEM, TLS, TLS_VERIFY, IO, CLOSED,
 * TRUNCATED: never a timeout, a crash or a hang), and afterwards every fd is back (ASan: no
 * leak). The last run, which no failure touched, must succeed. Before the sweeps, the first TLS
 * connection of the process meets a failure of the socket BIO's method (made once) and the
 * next one must succeed. Certificates: tests/tu_tls.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "internal.h"
#include "tcpframe/async.h"
#include "tcpframe/sync.h"
#include "tcpframe/tls.h"
#include "test_io_util.h"
#include "tu_net.h"
#include "tu_sync.h"
#include "tu_tls.h"

enum { MSG = 64, OP_MS = 10000, MAX_RUNS = 200000 };

/* ---------------------------------------------------------------- the countdown */

static atomic_long al_at;    /* the allocation to fail (1-based); 0: off */
static atomic_long al_count; /* allocations seen since armed */
static atomic_int al_hit;    /* the failure was made */
static const char *al_file;  /* where (OpenSSL's file and line; "the library"), for messages */
static int al_line;
static _Atomic(const char *) al_match; /* set: fail every OpenSSL allocation from this file */

static bool al_fail(const char *file, int line)
{
    const char *match = atomic_load(&al_match);
    if (match) {
        if (!file || !strstr(file, match))
            return false;
    } else {
        long at = atomic_load_explicit(&al_at, memory_order_relaxed);
        if (at <= 0)
            return false;
        if (atomic_fetch_add(&al_count, 1) + 1 != at)
            return false;
    }
    al_file = file;
    al_line = line;
    atomic_store(&al_hit, 1); /* publishes al_file, al_line */
    return true;
}

static void *ossl_malloc(size_t n, const char *file, int line)
{
    return al_fail(file, line) ? NULL : malloc(n);
}

static void *ossl_realloc(void *p, size_t n, const char *file, int line)
{
    if (p && n == 0) { /* a free, not an allocation */
        free(p);
        return NULL;
    }
    return al_fail(file, line) ? NULL : realloc(p, n);
}

static void ossl_free(void *p, const char *file, int line)
{
    (void)file, (void)line;
    free(p);
}

/* io/sys.c's hook: the library's allocations count; every other call goes through. */
static int lib_hook(tf__sys_op op, int fd, size_t *len)
{
    (void)fd, (void)len;
    return op == TF__SYS_MALLOC && al_fail("the library (tf__alloc)", 0) ? ENOMEM : 0;
}

static void arm(long at)
{
    atomic_store(&al_count, 0);
    atomic_store(&al_hit, 0);
    atomic_store(&al_at, at);
}

static void disarm(void)
{
    atomic_store(&al_at, 0);
    atomic_store(&al_match, NULL);
}

/* What a run that met a failure may end with. A verification that ran out of memory fails
 * closed with TLS_VERIFY, but OpenSSL 3.0 does not always say why: besides
 * X509_V_ERR_OUT_OF_MEM it reports, e.g., 66 "EE certificate key too weak" (its key-strength
 * check cannot tell a failed allocation from a weak key); any verify result is accepted. */
static bool clear_error(tf_err e, int os)
{
    (void)os;
    return e == TF_ERR_NOMEM || e == TF_ERR_TLS || e == TF_ERR_IO || e == TF_ERR_CLOSED ||
           e == TF_ERR_TRUNCATED || e == TF_ERR_TLS_VERIFY;
}

typedef struct tally {
    long runs, ok, err[8];
    tf_err kinds[8];
    int nkinds;
} tally;

static void count(tally *t, tf_err e)
{
    t->runs++;
    if (e == TF_OK) {
        t->ok++;
        return;
    }
    for (int i = 0; i < t->nkinds; i++)
        if (t->kinds[i] == e) {
            t->err[i]++;
            return;
        }
    if (t->nkinds < 8) {
        t->kinds[t->nkinds] = e;
        t->err[t->nkinds++] = 1;
    }
}

static void report(const char *what, const tally *t, long allocs)
{
    char buf[256];
    int n = snprintf(buf, sizeof buf, "%s: %ld allocations in a run; %ld runs: %ld ok", what,
                     allocs, t->runs, t->ok);
    for (int i = 0; i < t->nkinds && n > 0 && (size_t)n < sizeof buf; i++)
        n += snprintf(buf + n, sizeof buf - (size_t)n, ", %ld %s", t->err[i],
                      tf_err_name(t->kinds[i]));
    print_message("%s\n", buf);
}

/* Every N until a run needs no failure; |run| returns the client's verdict. No run without
 * failures comes first: the first TLS connection of the process meets the failures too (the
 * socket BIO's method, made once, must be retried after a failure, not left broken: the runs
 * after it would all fail with NOMEM and no failure made). */
static void sweep(const char *what, tf_err (*run)(long at, long *allocs, int *os))
{
    tally t = {0};
    int fds = tu_fd_count();
    long allocs = 0;
    int os = 0;
    tf_err e = TF_OK;
    const char *from = getenv("TF_TLS_FAULTS_FROM"); /* debugging: start at this N */
    /* make check fails every 4th allocation point (about 2,000 runs per sweep, seconds);
     * .ci/run sweeps them all (TF_TLS_FAULTS_STRIDE=1, plain and ASan: minutes) */
    const char *st = getenv("TF_TLS_FAULTS_STRIDE");
    long stride = st && atol(st) > 0 ? atol(st) : 4;
    for (long at = from && atol(from) > 0 ? atol(from) : 1; at <= MAX_RUNS; at += stride) {
        os = 0;
        e = run(at, &allocs, &os);
        bool hit = atomic_load(&al_hit);
        tio_tick();
        count(&t, e);
        if (e != TF_OK && !clear_error(e, os))
            fail_msg("%s: allocation %ld (%s:%d) failed: the run ended with %s (%d: %s)", what, at,
                     al_file, al_line, tf_err_name(e), os, tf_tls_strerror(e, os));
        if (e != TF_OK && !hit)
            fail_msg("%s: no failure made, yet the run ended with %s", what, tf_err_name(e));
        int now = tu_fd_count();
        if (now != fds)
            fail_msg("%s: allocation %ld failed: %d fds open after the run, %d before", what, at,
                     now, fds);
        if (!hit) /* fewer than |at| allocations: every point was tried */
            break;
        assert_true(at < MAX_RUNS);
    }
    assert_int_equal(e, TF_OK); /* the run no failure touched */
    report(what, &t, allocs);
    assert_true(allocs > 1);
    assert_true(t.runs > 1);
    assert_true(t.ok < t.runs); /* some failure was reported */
}

static tf_tls_ctx *g_sk, *g_ck; /* made once, before any countdown */

static int ctx_setup(void **state)
{
    if (tu_tls_setup(state) != 0)
        return -1;
    g_sk = tu_tls_ctx("server", 1, NULL);
    g_ck = tu_tls_ctx("client", 1, "127.0.0.1");
    atomic_store(&tf__sys_hook, lib_hook);
    return 0;
}

static int ctx_teardown(void **state)
{
    atomic_store(&tf__sys_hook, NULL);
    tf_tls_ctx_free(g_sk);
    tf_tls_ctx_free(g_ck);
    return tu_tls_teardown(state);
}

/* ---------------------------------------------------------------- sync */

typedef struct sync_srv {
    tf_sync_server *s;
    tf_err err; /* accept, then the echo */
} sync_srv;

static void *sync_echo_main(void *arg)
{
    sync_srv *r = arg;
    tf_sync_conn *c = NULL;
    r->err = tf_sync_server_accept(r->s, &c, NULL, NULL);
    if (r->err != TF_OK)
        return NULL;
    uint8_t b[MSG];
    size_t n = 0;
    r->err = tf_sync_conn_recv(c, b, sizeof b, &n, OP_MS);
    if (r->err == TF_OK)
        r->err = tf_sync_conn_send(c, b, n, OP_MS);
    tf_sync_conn_free(c);
    return NULL;
}

static tf_err sync_run(long at, long *allocs, int *os)
{
    tf_tcp_config scfg = tu_tls_cfg(g_sk, OP_MS), ccfg = tu_tls_cfg(g_ck, OP_MS);
    char addr[TF_ADDRSTR_LEN];
    sync_srv r = {tu_listen("127.0.0.1", &scfg, addr, sizeof addr), TF_OK};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, sync_echo_main, &r), 0);
    uint8_t m[MSG], back[MSG];
    tu_fill(m, sizeof m, (uint32_t)at);
    arm(at);
    tf_sync_conn *c = NULL;
    tf_err e = tf_sync_connect(addr, &ccfg, &c, os, NULL);
    size_t n = 0;
    if (e == TF_OK)
        e = tf_sync_conn_send(c, m, sizeof m, OP_MS);
    if (e == TF_OK)
        e = tf_sync_conn_recv(c, back, sizeof back, &n, OP_MS);
    if (e != TF_OK && c)
        tf_sync_conn_error(c, os);
    *allocs = atomic_load(&al_count);
    disarm();
    if (e == TF_OK && (n != sizeof m || memcmp(m, back, n) != 0))
        fail_msg("sync: allocation %ld failed: the echo came back different", at);
    tf_sync_conn_free(c);
    tf_sync_server_shutdown(r.s); /* a refused client leaves the accept waiting */
    pthread_join(th, NULL);
    tf_sync_server_free(r.s);
    if (r.err == TF_ERR_TIMEOUT)
        fail_msg("sync: allocation %ld failed: the server's end timed out", at);
    if (e == TF_OK && r.err != TF_OK)
        fail_msg("sync: allocation %ld failed: the echo came back, the server says %s", at,
                 tf_err_name(r.err));
    return e;
}

/* The first TLS connection of the process makes the socket BIO's method (once): when OpenSSL
 * cannot allocate it, that connection fails with a clear error, and the next one makes it
 * (TLS is not left broken for the process). Runs first, before any other connection. */
static void test_tls_faults_first_connection_bio_method_retried(void **state)
{
    (void)state;
    int fds = tu_fd_count();
    long allocs = 0;
    int os = 0;
    atomic_store(&al_match, "bio_meth.c"); /* arm() keeps it; disarm() clears it */
    tf_err e = sync_run(1, &allocs, &os);
    assert_true(atomic_load(&al_hit));
    assert_int_equal(e, TF_ERR_NOMEM);
    assert_int_equal(tu_fd_count(), fds);
    e = sync_run(LONG_MAX, &allocs, &os); /* counted, no failure */
    assert_false(atomic_load(&al_hit));
    assert_int_equal(e, TF_OK);
    assert_int_equal(tu_fd_count(), fds);
}

static void test_tls_faults_sync_alloc_every_point(void **state)
{
    (void)state;
    sweep("sync", sync_run);
}

/* ---------------------------------------------------------------- async */

/* The server's end echoes what it reads (its buffers are the test's, not counted). */
static void echo_msg(tf_async_conn *c, tf_err err, int os_err, const uint8_t *data, size_t len,
                     void *arg)
{
    (void)os_err, (void)arg;
    if (err != TF_OK) {
        tf_async_conn_free(c);
        return;
    }
    tf_future *f = NULL;
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy || (memcpy(copy, data, len),
                  tf_async_conn_send_owned(c, copy, len, free, OP_MS, &f) != TF_OK)) {
        free(copy);
        tf_async_conn_abort(c);
        return;
    }
    /* On the loop thread the send may be refused at once, through its future (NOMEM: its
     * timer); an echo that will never come must not leave the client waiting. */
    if (tf_future_is_ready(f) && tf_future_get(f, NULL, NULL) != TF_OK)
        tf_async_conn_abort(c);
    tf_future_free(f);
}

static void on_accept(tf_async_server *s, tf_async_conn *c, void *arg)
{
    (void)s, (void)arg;
    if (tf_async_conn_stream(c, echo_msg, NULL) != TF_OK)
        tf_async_conn_free(c);
}

static tf_err take(tf_future *f, size_t *n, void **owned, int *os)
{
    tf_err e = tf_future_wait_for(f, OP_MS * 2); /* a watchdog: the ops have their own */
    if (e == TF_OK)
        e = tf_future_get(f, n, owned);
    if (e != TF_OK && *os == 0)
        *os = tf_future_os_err(f);
    tf_future_free(f);
    return e;
}

static tf_err async_run(long at, long *allocs, int *os)
{
    tf_tcp_config scfg = tu_tls_cfg(g_sk, OP_MS), ccfg = tu_tls_cfg(g_ck, OP_MS);
    tf_evb *evb = NULL;
    tf_async_server *s = NULL;
    char addr[TF_ADDRSTR_LEN];
    assert_int_equal(tf_evb_new(&evb), TF_OK);
    assert_int_equal(tf_evb_start(evb), TF_OK);
    assert_int_equal(tf_async_server_new(evb, &s), TF_OK);
    tf_async_server_on_accept(s, on_accept, NULL);
    assert_int_equal(tf_async_server_init(s, "127.0.0.1:0", &scfg, NULL), TF_OK);
    assert_int_equal(tf_async_server_addr(s, addr, sizeof addr), TF_OK);
    uint8_t m[MSG];
    tu_fill(m, sizeof m, (uint32_t)at);
    arm(at);
    tf_async_client *cl = NULL;
    tf_future *cf = NULL, *sf = NULL, *rf = NULL;
    void *c = NULL, *back = NULL;
    size_t n = 0;
    tf_err e = tf_async_client_new(evb, &ccfg, &cl, NULL);
    if (e == TF_OK)
        e = tf_async_client_connect(cl, addr, &cf, NULL);
    if (e == TF_OK)
        e = take(cf, NULL, &c, os);
    if (e == TF_OK)
        e = tf_async_conn_recv_alloc(c, OP_MS, &rf);
    if (e == TF_OK)
        e = tf_async_conn_send(c, m, sizeof m, OP_MS, &sf);
    if (sf) {
        tf_err se = take(sf, NULL, NULL, os);
        if (e == TF_OK)
            e = se;
    }
    if (rf) {
        tf_err re = take(rf, &n, &back, os);
        if (e == TF_OK)
            e = re;
    }
    *allocs = atomic_load(&al_count);
    disarm();
    if (e == TF_OK && (n != sizeof m || memcmp(m, back, n) != 0))
        fail_msg("async: allocation %ld failed: the echo came back different", at);
    free(back);
    tf_async_conn_free(c);
    tf_async_client_free(cl);
    tf_async_server_shutdown(s);
    tf_async_server_free(s);
    tf_evb_free(evb);
    return e;
}

static void test_tls_faults_async_alloc_every_point(void **state)
{
    (void)state;
    sweep("async", async_run);
}

int main(void)
{
    /* Before anything can call OpenSSL. */
    if (!CRYPTO_set_mem_functions(ossl_malloc, ossl_realloc, ossl_free)) {
        fprintf(stderr, "test_tls_faults: CRYPTO_set_mem_functions refused (too late)\n");
        return 1;
    }
    tio_filter_from_env();
    const struct CMUnitTest tests[] = {
        TIO_TEST(test_tls_faults_first_connection_bio_method_retried), /* first: see there */
        TIO_TEST(test_tls_faults_sync_alloc_every_point),
        TIO_TEST(test_tls_faults_async_alloc_every_point),
    };
    return cmocka_run_group_tests_name("tls_faults", tests, ctx_setup, ctx_teardown);
}
