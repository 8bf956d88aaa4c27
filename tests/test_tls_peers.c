/* tests/test_tls_peers.c -- the TLS 1.3 transport (SPEC 9.11) against peers no one here wrote:
 * openssl s_client (a client certificate, -verify_return_error) against a sync TLS server, and
 * the library's client against openssl s_server (-Verify 1 -verify_return_error); and the tf_io
 * conformance suite (tests/tu_io_conformance.h) over a TLS pair. Certificates: tests/tu_tls.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/x509_vfy.h>

#include "sync_internal.h"
#include "tcpframe/async.h"
#include "tcpframe/sync.h"
#include "tcpframe/tls.h"
#include "test_io_util.h"
#include "tu_io_conformance.h"
#include "tu_net.h"
#include "tu_sync.h"
#include "tu_tls.h"
#include "xport.h"
/* ---------------------------------------------------------------- openssl as the peer */

/* openssl s_client with a client certificate against a sync TLS server: it sends the magic and a
 * frame from its stdin; the server answers with its magic and an echo. */
static void test_tls_openssl_s_client_talks_to_server(void **state)
{
    (void)state;
    tf_tls_ctx *sk = tu_tls_ctx("server", 1, NULL);
    tf_tcp_config scfg = tu_tls_cfg(sk, 10000);
    char addr[TF_ADDRSTR_LEN];
    tu_tls_srv r;
    tu_tls_srv_start(&r, &scfg, addr, sizeof addr);
    char out[128];
    snprintf(out, sizeof out, "%s/s_client.out", tu_tls_dir);
    /* the magic, a frame "hello", then stay until the echo came (the output grows to 13 bytes) */
    tu_tls_sh("cd %s && ( ( printf 'UNIF\\000\\000\\000\\005hello'; i=0; while [ $i -lt 3000 ] && "
              "[ $(stat -c %%s s_client.out 2>/dev/null || echo 0) -lt 13 ]; do sleep 0.01; "
              "i=$((i+1)); done ) | openssl s_client -connect %s -quiet -verify_return_error "
              "-CAfile ca.pem -cert client.pem -key client.key -verify_hostname localhost "
              "> s_client.out 2>s_client.err & )",
              tu_tls_dir, addr);
    pthread_join(r.th, NULL);
    assert_int_equal(r.err, TF_OK);
    tf_tls_peer p;
    assert_int_equal(tf_tls_peer_sync(r.c, &p), TF_OK);
    assert_string_equal(p.subject, "CN=client");
    char b[16];
    size_t n = 0;
    assert_int_equal(tf_sync_conn_recv(r.c, b, sizeof b, &n, 10000), TF_OK);
    assert_int_equal(n, 5);
    assert_memory_equal(b, "hello", 5);
    assert_int_equal(tf_sync_conn_send(r.c, "hello", 5, 10000), TF_OK);
    uint8_t got[32];
    size_t have = 0;
    while (have < 13) { /* the watchdog bounds this wait */
        FILE *f = fopen(out, "rb");
        have = f ? fread(got, 1, sizeof got, f) : 0;
        if (f)
            fclose(f);
        tu_nap(10);
        tio_tick();
    }
    assert_int_equal(have, 13);
    assert_memory_equal(got, "UNIF\0\0\0\5hello", 13);
    tf_sync_conn_free(r.c);
    r.c = NULL;
    tu_tls_srv_stop(&r);
    tf_tls_ctx_free(sk);
}

/* openssl s_server (-Verify: it requires our certificate, -verify_return_error) with the
 * library's sync client: the magic from s_server's stdin, our magic and frame in its output. */
static void test_tls_openssl_s_server_with_library_client(void **state)
{
    (void)state;
    int port = 0;
    int pfd = tu_raw_unused_port(false, &port);
    if (pfd >= 0)
        close(pfd);
    assert_true(port > 0);
    char out[128];
    snprintf(out, sizeof out, "%s/s_server.out", tu_tls_dir);
    unlink(out);
    tu_tls_sh("cd %s && ( ( printf UNIF; i=0; while [ $i -lt 3000 ] && "
              "[ $(stat -c %%s s_server.out 2>/dev/null || echo 0) -lt 13 ]; do sleep 0.01; "
              "i=$((i+1)); done ) | openssl s_server -accept 127.0.0.1:%d -naccept 1 -quiet "
              "-cert server.pem -key server.key -CAfile ca.pem -Verify 1 -verify_return_error "
              "> s_server.out 2>s_server.err & )",
              tu_tls_dir, port);
    tf_tls_ctx *ck = tu_tls_ctx("client", 1, "127.0.0.1");
    tf_tcp_config ccfg = tu_tls_cfg(ck, 10000);
    ccfg.connect_retries = 1000; /* until s_server listens: refused, retried */
    ccfg.retry_delay_ms = 10;
    ccfg.retry_max_delay_ms = 10;
    ccfg.connect_timeout_ms = 60000;
    char addr[TF_ADDRSTR_LEN];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    tf_sync_conn *c = NULL;
    tf_errmsg msg;
    assert_int_equal(tf_sync_connect(addr, &ccfg, &c, NULL, &msg), TF_OK);
    tf_tls_peer p;
    assert_int_equal(tf_tls_peer_sync(c, &p), TF_OK);
    assert_true(p.verified);
    assert_string_equal(p.subject, "CN=server");
    assert_int_equal(tf_sync_conn_send(c, "hello", 5, 10000), TF_OK);
    uint8_t got[32];
    size_t have = 0;
    while (have < 13) { /* the watchdog bounds this wait */
        FILE *f = fopen(out, "rb");
        have = f ? fread(got, 1, sizeof got, f) : 0;
        if (f)
            fclose(f);
        tu_nap(10);
        tio_tick();
    }
    assert_int_equal(have, 13);
    assert_memory_equal(got, "UNIF\0\0\0\5hello", 13);
    tf_sync_conn_free(c);
    tf_tls_ctx_free(ck);
}

/* ---------------------------------------------------------------- conformance */

typedef struct tls_pair {
    int fd[2];
    tf__xport x[2];
    tf_fdio f[2];
    tf_io io[2];
    tf_tls_ctx *k[2];
} tls_pair;

static void tls_open(tu_ioc_pair *p)
{
    tls_pair *tp = calloc(1, sizeof *tp);
    assert_non_null(tp);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, tp->fd), 0);
    tp->k[0] = tu_tls_ctx("server", 1, NULL);
    tp->k[1] = tu_tls_ctx("client", 1, "localhost");
    for (int i = 0; i < 2; i++) {
        tf_tcp_config c = tu_tls_cfg(tp->k[i], 10000);
        int os = 0;
        assert_int_equal(tf__xport_open(&tp->x[i], &tp->f[i], tp->fd[i], &c, i == 0, &os), TF_OK);
    }
    bool done[2] = {false, false};
    for (int round = 0; !(done[0] && done[1]); round++) {
        assert_true(round < 100000);
        for (int i = 0; i < 2; i++) {
            tf_err e = TF_OK;
            int os = 0;
            if (!done[i]) {
                tf_step st = tf__xport_handshake(&tp->x[i], &e, &os);
                assert_int_not_equal(st, TF_ERROR);
                done[i] = st == TF_DONE;
            }
        }
        tio_tick();
    }
    for (int i = 0; i < 2; i++) {
        tp->io[i] = tf__xport_io(&tp->x[i]);
        p->io[i] = &tp->io[i];
    }
    p->impl = tp;
}

/* The pair's "event loop": held output (a sealed record the socket did not take) is pushed out
 * first, as the connections do before they wait; then poll for what the transport wants. */
static bool tls_wait(tu_ioc_pair *p, int side, int dir_, int ms)
{
    tls_pair *tp = p->impl;
    if (tp->fd[side] < 0)
        return false;
    for (int i = 0; i < 2; i++) {
        int os = 0;
        if (tp->fd[i] >= 0 && tf__xport_out_pending(&tp->x[i]))
            (void)tp->x[i].ops->flush(tp->x[i].ctx, &os);
    }
    unsigned w = tf__xport_wants(&tp->x[side], dir_ == TU_IOC_IN ? TF_WANT_READ : TF_WANT_WRITE);
    struct pollfd q = {
        .fd = tp->fd[side],
        .events = (short)(((w & TF_WANT_READ) ? POLLIN : 0) | ((w & TF_WANT_WRITE) ? POLLOUT : 0)),
        .revents = 0};
    return poll(&q, 1, ms) > 0;
}

static void tls_close_write(tu_ioc_pair *p, int side)
{
    tls_pair *tp = p->impl;
    int os = 0;
    while (tf__xport_out_pending(&tp->x[side]) &&
           tp->x[side].ops->flush(tp->x[side].ctx, &os) == TF_IO_AGAIN) {
        struct pollfd q = {.fd = tp->fd[side], .events = POLLOUT, .revents = 0};
        poll(&q, 1, 1000);
    }
    assert_int_equal(tp->x[side].ops->shutdown_wr(tp->x[side].ctx), 0);
}

/* A TLS end that goes away says so (close_notify) before it closes. */
static void tls_close(tu_ioc_pair *p, int side)
{
    tls_pair *tp = p->impl;
    if (tp->fd[side] >= 0) {
        (void)tp->x[side].ops->shutdown_wr(tp->x[side].ctx);
        shutdown(tp->fd[side], SHUT_RDWR);
        close(tp->fd[side]);
        tp->fd[side] = -1;
    }
}

static void tls_free(tu_ioc_pair *p)
{
    tls_pair *tp = p->impl;
    for (int i = 0; i < 2; i++) {
        tf__xport_close(&tp->x[i]);
        if (tp->fd[i] >= 0)
            close(tp->fd[i]);
        tf_tls_ctx_free(tp->k[i]);
    }
    free(tp);
}

static const tu_ioc_adapter tls_adapter = {"tls",     tls_open, tls_wait, tls_close_write,
                                           tls_close, EPIPE,    NULL,     tls_free};

int main(void)
{
    const struct CMUnitTest tests[] = {
        TIO_TEST(test_tls_openssl_s_client_talks_to_server),
        TIO_TEST(test_tls_openssl_s_server_with_library_client),
    };
    /* one group (run-test.sh counts one summary): these, then the conformance cases */
    enum { NT = sizeof tests / sizeof tests[0] };
    struct CMUnitTest all[NT + TU_IOC_NCASES];
    memcpy(all, tests, sizeof tests);
    size_t n = tu_ioc_tests(&tls_adapter, all + NT, tio_watchdog_setup, tio_watchdog_teardown);
    int rc = _cmocka_run_group_tests("tls", all, NT + n, tu_tls_setup, tu_tls_teardown);
    for (size_t i = 0; i < n; i++)
        free((char *)(uintptr_t)all[NT + i].name);
    return rc;
}
