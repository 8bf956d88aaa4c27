/* tests/test_tls.c -- the TLS 1.3 transport (tls/tcpframe/tls.h, SPEC 9.11) between the
 * library's own ends: context errors naming the field, the file and OpenSSL's reason; mutual
 * authentication (sync and async) with the peer's identity; each refusal with its reason (no
 * client certificate, a wrong CA, an expired certificate, a wrong server name, a plaintext
 * client, a reset mid-handshake) on the sync and async servers; one connection used by a sending
 * and a receiving thread at once. Certificates: tests/tu_tls.c (openssl CLI, scratch dir). */
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
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include "async_internal.h"
#include "sync_internal.h"
#include "tcpframe/async.h"
#include "tcpframe/sync.h"
#include "tcpframe/tls.h"
#include "test_io_util.h"
#include "tu_async.h"
#include "tu_io_conformance.h"
#include "tu_net.h"
#include "tu_sync.h"
#include "tu_tls.h"
#include "xport.h"
/* ---------------------------------------------------------------- context errors */

/* OpenSSL's reason strings before any TLS context was made (attack 6: "unknown TLS failure").
 * Runs first, in a child, so that nothing in this process has initialised OpenSSL yet. */
static void test_tls_strerror_before_any_context(void **state)
{
    (void)state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int code = (int)(ERR_PACK(ERR_LIB_SSL, 0, SSL_R_UNEXPECTED_EOF_WHILE_READING) & 0x7fffffffUL);
        const char *s = tf_tls_strerror(TF_ERR_TLS, code);
        _exit(s && strstr(s, "unexpected eof") ? 0 : 1);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

static void test_tls_ctx_errors_name_the_file(void **state)
{
    (void)state;
    tf_tls_config t;
    tf_tls_config_init(&t);
    tf_tls_ctx *k = NULL;
    tf_errmsg msg;
    t.cert_file = tu_tls_path("server.pem");
    assert_int_equal(tf_tls_ctx_new(&t, &k, &msg), TF_ERR_INVALID_ARGUMENT); /* no key */
    assert_non_null(strstr(msg.text, "cert_file without key_file"));
    t.key_file = tu_tls_path("client.key"); /* the wrong key */
    t.ca_file = tu_tls_path("ca.pem");
    assert_int_equal(tf_tls_ctx_new(&t, &k, &msg), TF_ERR_TLS);
    assert_non_null(strstr(msg.text, "key_file"));
    assert_non_null(strstr(msg.text, "client.key"));
    assert_non_null(strstr(msg.text, "mismatch"));
    t.key_file = tu_tls_path("server.key");
    t.ca_file = tu_tls_path("nosuch.pem");
    assert_int_equal(tf_tls_ctx_new(&t, &k, &msg), TF_ERR_TLS);
    assert_non_null(strstr(msg.text, "ca_file"));
    assert_non_null(strstr(msg.text, "nosuch.pem"));
    t.ca_file = NULL;
    assert_int_equal(tf_tls_ctx_new(&t, &k, &msg), TF_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(msg.text, "ca_file"));
    t.verify_peer = 0; /* no CA needed then */
    assert_int_equal(tf_tls_ctx_new(&t, &k, &msg), TF_OK);
    assert_string_equal(msg.text, "");
    tf_tls_ctx_free(k);
    assert_null(k = NULL);
}

static void test_tls_sync_mutual_exchange_and_identity(void **state)
{
    (void)state;
    int fds = tu_fd_count();
    tf_tls_ctx *sk = tu_tls_ctx("server", 1, NULL), *ck = tu_tls_ctx("client", 1, "localhost");
    tf_tcp_config scfg = tu_tls_cfg(sk, 10000), ccfg = tu_tls_cfg(ck, 10000);
    char addr[TF_ADDRSTR_LEN];
    tu_tls_srv r;
    tu_tls_srv_start(&r, &scfg, addr, sizeof addr);
    tf_sync_conn *c = NULL;
    tf_errmsg msg;
    assert_int_equal(tf_sync_connect(addr, &ccfg, &c, NULL, &msg), TF_OK);
    pthread_join(r.th, NULL);
    assert_int_equal(r.err, TF_OK);
    tu_exchange(c, r.c); /* messages both ways, 0 B .. large */
    tf_tls_peer p;
    assert_int_equal(tf_tls_peer_sync(r.c, &p), TF_OK); /* the server sees the client */
    assert_true(p.verified);
    assert_string_equal(p.subject, "CN=client");
    assert_string_equal(p.sans, "DNS:client.example");
    char hex[65], want[200];
    tf_tls_fingerprint_hex(&p, hex);
    char cmd[256];
    snprintf(cmd, sizeof cmd,
             "openssl x509 -in %s -noout -fingerprint -sha256 | sed 's/.*=//; s/://g' | "
             "tr A-F a-f",
             tu_tls_path("client.pem"));
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    assert_non_null(fgets(want, sizeof want, f));
    pclose(f);
    want[strcspn(want, "\n")] = '\0';
    assert_string_equal(hex, want);
    assert_int_equal(tf_tls_peer_sync(c, &p), TF_OK); /* the client sees the server */
    assert_string_equal(p.subject, "CN=server");
    assert_string_equal(p.sans, "DNS:localhost, IP:127.0.0.1");
    /* a clean close: the peer reads CLOSED (close_notify), not a TLS error */
    assert_int_equal(tf_sync_conn_shutdown(c), TF_OK);
    char b[8];
    size_t n;
    assert_int_equal(tf_sync_conn_recv(r.c, b, sizeof b, &n, 10000), TF_ERR_CLOSED);
    tf_sync_conn_free(c);
    tu_tls_srv_stop(&r);
    tf_tls_ctx_free(sk);
    tf_tls_ctx_free(ck);
    assert_int_equal(tu_fd_count(), fds);
}

/* A client made with |ck| is refused: the connect fails and the server rejects it with
 * |want| (and the X.509 code |code| for TLS_VERIFY; any for TLS). */
static void refused(tf_tls_ctx *ck, tf_err want, int code, const char *text)
{
    tf_tls_ctx *sk = tu_tls_ctx("server", 1, NULL);
    tf_tcp_config scfg = tu_tls_cfg(sk, 10000), ccfg = tu_tls_cfg(ck, 10000);
    char addr[TF_ADDRSTR_LEN];
    tu_tls_srv r;
    tu_tls_srv_start(&r, &scfg, addr, sizeof addr);
    tf_sync_conn *c = NULL;
    tf_errmsg msg;
    int os = 0;
    tf_err e = tf_sync_connect(addr, &ccfg, &c, &os, &msg);
    /* The server's alert ends the magic exchange (TLS), or its close reset the connection
     * before the alert was read (IO): the server's reason below is the one that counts. */
    assert_true(e == TF_ERR_TLS || (e == TF_ERR_IO && os == ECONNRESET));
    for (int i = 0; i < 100000 && atomic_load(&r.rejects) == 0; i++) {
        tu_nap(1);
        tio_tick();
    }
    assert_int_equal(atomic_load(&r.rejects), 1);
    assert_int_equal(r.rej_err, want);
    if (code >= 0)
        assert_int_equal(r.rej_os, code);
    assert_non_null(strstr(tf_tls_strerror(r.rej_err, r.rej_os), text));
    tu_tls_srv_stop(&r);
    tf_tls_ctx_free(sk);
}

static void test_tls_sync_no_client_cert_rejected(void **state)
{
    (void)state;
    tf_tls_ctx *ck = tu_tls_ctx(NULL, 1, "localhost");
    refused(ck, TF_ERR_TLS, -1, "certificate");
    tf_tls_ctx_free(ck);
}

static void test_tls_sync_wrong_ca_rejected(void **state)
{
    (void)state;
    tf_tls_ctx *ck = tu_tls_ctx("stranger", 1, "localhost");
    refused(ck, TF_ERR_TLS_VERIFY, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, "issuer");
    tf_tls_ctx_free(ck);
}

static void test_tls_sync_expired_rejected(void **state)
{
    (void)state;
    tf_tls_ctx *ck = tu_tls_ctx("expired", 1, "localhost");
    refused(ck, TF_ERR_TLS_VERIFY, X509_V_ERR_CERT_HAS_EXPIRED, "expired");
    tf_tls_ctx_free(ck);
}

static void test_tls_sync_wrong_name_refused_by_client(void **state)
{
    (void)state;
    tf_tls_ctx *sk = tu_tls_ctx("server", 1, NULL), *ck = tu_tls_ctx("client", 1, "wrong.example");
    tf_tcp_config scfg = tu_tls_cfg(sk, 10000), ccfg = tu_tls_cfg(ck, 10000);
    char addr[TF_ADDRSTR_LEN];
    tu_tls_srv r;
    tu_tls_srv_start(&r, &scfg, addr, sizeof addr);
    tf_sync_conn *c = NULL;
    tf_errmsg msg;
    int os = 0;
    assert_int_equal(tf_sync_connect(addr, &ccfg, &c, &os, &msg), TF_ERR_TLS_VERIFY);
    assert_int_equal(os, X509_V_ERR_HOSTNAME_MISMATCH);
    assert_non_null(strstr(tf_tls_strerror(TF_ERR_TLS_VERIFY, os), "mismatch"));
    for (int i = 0; i < 100000 && atomic_load(&r.rejects) == 0; i++) {
        tu_nap(1);
        tio_tick();
    }
    assert_int_equal(atomic_load(&r.rejects), 1); /* the server saw the client's alert */
    tu_tls_srv_stop(&r);
    tf_tls_ctx_free(sk);
    tf_tls_ctx_free(ck);
}

static void test_tls_sync_plaintext_client_rejected_in_deadline(void **state)
{
    (void)state;
    tf_tls_ctx *sk = tu_tls_ctx("server", 1, NULL);
    tf_tcp_config scfg = tu_tls_cfg(sk, 300);
    char addr[TF_ADDRSTR_LEN];
    tu_tls_srv r;
    tu_tls_srv_start(&r, &scfg, addr, sizeof addr);
    int fd = tu_raw_connect(addr);
    assert_true(fd >= 0);
    assert_true(tu_send_magic(fd)); /* 4 bytes: not even a TLS record header */
    for (int i = 0; i < 100000 && atomic_load(&r.rejects) == 0; i++) {
        tu_nap(1);
        tio_tick();
    }
    assert_int_equal(atomic_load(&r.rejects), 1);
    assert_int_equal(r.rej_err, TF_ERR_TIMEOUT);
    uint8_t b[64];
    ssize_t n;
    while ((n = read(fd, b, sizeof b)) > 0) /* the server closed it: no magic ever came */
        assert_true(n <= (ssize_t)sizeof b);
    close(fd);
    tu_tls_srv_stop(&r);
    tf_tls_ctx_free(sk);
}

/* ---------------------------------------------------------------- async */

static void test_tls_async_server_and_client(void **state)
{
    (void)state;
    int fds = tu_fd_count();
    tf_tls_ctx *sk = tu_tls_ctx("server", 1, NULL), *ck = tu_tls_ctx("client", 1, "127.0.0.1");
    tf_tcp_config scfg = tu_tls_cfg(sk, 10000), ccfg = tu_tls_cfg(ck, 10000);
    tf_evb *evb;
    assert_int_equal(tf_evb_new(&evb), TF_OK);
    assert_int_equal(tf_evb_start(evb), TF_OK);
    tf_async_server *s;
    char addr[TF_ADDRSTR_LEN];
    assert_int_equal(tf_async_server_new(evb, &s), TF_OK);
    assert_int_equal(tf_async_server_init(s, "127.0.0.1:0", &scfg, NULL), TF_OK);
    assert_int_equal(tf_async_server_addr(s, addr, sizeof addr), TF_OK);
    tf_future *af;
    assert_int_equal(tf_async_server_accept(s, &af), TF_OK);
    /* a sync TLS client against the async TLS server */
    tf_sync_conn *c = NULL;
    tf_errmsg msg;
    assert_int_equal(tf_sync_connect(addr, &ccfg, &c, NULL, &msg), TF_OK);
    assert_int_equal(tf_future_wait(af), TF_OK);
    void *ac = NULL;
    assert_int_equal(tf_future_get(af, NULL, &ac), TF_OK);
    tf_future_free(af);
    tf_tls_peer p;
    assert_int_equal(tf_tls_peer_async(ac, &p), TF_OK);
    assert_string_equal(p.subject, "CN=client");
    /* echo: 0 B, 64 B, 1 MiB */
    static const size_t lens[] = {0, 64, 1u << 20};
    for (size_t i = 0; i < 3; i++) {
        uint8_t *m = malloc(lens[i] + 1);
        tu_fill(m, lens[i], (uint32_t)i);
        assert_int_equal(tf_sync_conn_send(c, m, lens[i], 10000), TF_OK);
        tf_future *rf;
        assert_int_equal(tf_async_conn_recv_alloc(ac, 10000, &rf), TF_OK);
        assert_int_equal(tf_future_wait(rf), TF_OK);
        size_t n = 0;
        void *got = NULL;
        assert_int_equal(tf_future_get(rf, &n, &got), TF_OK);
        assert_int_equal(n, lens[i]);
        tf_future *sf;
        assert_int_equal(tf_async_conn_send(ac, got, n, 10000, &sf), TF_OK);
        assert_int_equal(tf_future_get(sf, NULL, NULL), TF_OK);
        tf_future_free(sf);
        free(got); /* ours since the get; the send borrowed it until its future was ready */
        tf_future_free(rf);
        void *back = NULL;
        size_t bn = 0;
        assert_int_equal(tf_sync_conn_recv_alloc(c, &back, &bn, 10000), TF_OK);
        assert_int_equal(bn, lens[i]);
        assert_true(tu_check(back, bn, (uint32_t)i));
        free(back);
        free(m);
    }
    /* the async side closes: flush, close_notify + FIN, the client reads CLOSED and closes */
    tf_future *cf;
    assert_int_equal(tf_async_conn_close(ac, &cf), TF_OK);
    char b[4];
    size_t n;
    assert_int_equal(tf_sync_conn_recv(c, b, sizeof b, &n, 10000), TF_ERR_CLOSED);
    assert_int_equal(tf_sync_conn_shutdown(c), TF_OK);
    assert_int_equal(tf_future_get(cf, NULL, NULL), TF_OK);
    tf_future_free(cf);
    tf_async_conn_free(ac);
    tf_sync_conn_free(c);
    /* an async TLS client refused for its name */
    tf_tls_ctx *bad = tu_tls_ctx("client", 1, "wrong.example");
    tf_tcp_config bcfg = tu_tls_cfg(bad, 10000);
    tf_async_client *cl;
    assert_int_equal(tf_async_client_new(evb, &bcfg, &cl, NULL), TF_OK);
    tf_future *kf;
    assert_int_equal(tf_async_client_connect(cl, addr, &kf, NULL), TF_OK);
    assert_int_equal(tf_future_get(kf, NULL, NULL), TF_ERR_TLS_VERIFY);
    assert_int_equal(tf_future_os_err(kf), X509_V_ERR_HOSTNAME_MISMATCH);
    tf_future_free(kf);
    tf_async_client_free(cl);
    tf_async_server_free(s);
    tf_evb_free(evb);
    tf_tls_ctx_free(bad);
    tf_tls_ctx_free(sk);
    tf_tls_ctx_free(ck);
    assert_int_equal(tu_fd_count(), fds);
}

/* The async server counts and reports a refused TLS client like a wrong magic, with OpenSSL's
 * reason, and goes on serving. */
typedef struct arej {
    atomic_int n;
    tf_err err[4];
    int os[4];
} arej;

static void on_areject(tf_async_server *s, const char *peer, tf_err err, int os_err, void *arg)
{
    (void)s, (void)peer;
    arej *r = arg;
    int i = atomic_load(&r->n);
    if (i < 4) {
        r->err[i] = err;
        r->os[i] = os_err;
    }
    atomic_store(&r->n, i + 1); /* the loop thread is the only writer */
}

static void test_tls_async_server_rejects_like_wrong_magic(void **state)
{
    (void)state;
    int fds = tu_fd_count();
    tf_tls_ctx *sk = tu_tls_ctx("server", 1, NULL);
    tf_tcp_config scfg = tu_tls_cfg(sk, 10000);
    tf_evb *evb;
    assert_int_equal(tf_evb_new(&evb), TF_OK);
    assert_int_equal(tf_evb_start(evb), TF_OK);
    tf_async_server *s;
    char addr[TF_ADDRSTR_LEN];
    arej r;
    memset(&r, 0, sizeof r);
    atomic_init(&r.n, 0);
    assert_int_equal(tf_async_server_new(evb, &s), TF_OK);
    tf_async_server_on_reject(s, on_areject, &r);
    assert_int_equal(tf_async_server_init(s, "127.0.0.1:0", &scfg, NULL), TF_OK);
    assert_int_equal(tf_async_server_addr(s, addr, sizeof addr), TF_OK);
    static const char *const who[] = {NULL, "expired", "stranger"};
    static const tf_err want[] = {TF_ERR_TLS, TF_ERR_TLS_VERIFY, TF_ERR_TLS_VERIFY};
    static const int code[] = {-1, X509_V_ERR_CERT_HAS_EXPIRED,
                               X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY};
    for (int i = 0; i < 3; i++) {
        tf_tls_ctx *ck = tu_tls_ctx(who[i], 1, "localhost");
        tf_tcp_config ccfg = tu_tls_cfg(ck, 10000);
        tf_sync_conn *c = NULL;
        assert_int_not_equal(tf_sync_connect(addr, &ccfg, &c, NULL, NULL), TF_OK);
        for (int k = 0; k < 100000 && atomic_load(&r.n) == i; k++) {
            tu_nap(1);
            tio_tick();
        }
        assert_int_equal(atomic_load(&r.n), i + 1);
        assert_int_equal(r.err[i], want[i]);
        if (code[i] >= 0)
            assert_int_equal(r.os[i], code[i]);
        tf_tls_ctx_free(ck);
    }
    assert_non_null(strstr(tf_tls_strerror(r.err[0], r.os[0]), "did not return a certificate"));
    assert_int_equal(tf_async_server_rejected(s), 3);
    /* and a good client still gets in */
    tf_tls_ctx *ck = tu_tls_ctx("client", 1, "localhost");
    tf_tcp_config ccfg = tu_tls_cfg(ck, 10000);
    tf_future *af;
    assert_int_equal(tf_async_server_accept(s, &af), TF_OK);
    tf_sync_conn *c = NULL;
    assert_int_equal(tf_sync_connect(addr, &ccfg, &c, NULL, NULL), TF_OK);
    void *ac = NULL;
    assert_int_equal(tf_future_get(af, NULL, &ac), TF_OK);
    tf_future_free(af);
    tf_async_conn_free(ac);
    tf_sync_conn_free(c);
    tf_async_server_free(s);
    tf_evb_free(evb);
    tf_tls_ctx_free(ck);
    tf_tls_ctx_free(sk);
    assert_int_equal(tu_fd_count(), fds);
}

/* A client that resets in the middle of its TLS handshake (half a ClientHello) is rejected
 * with the reset; the server goes on. */
static void test_tls_sync_reset_mid_handshake(void **state)
{
    (void)state;
    tf_tls_ctx *sk = tu_tls_ctx("server", 1, NULL);
    tf_tcp_config scfg = tu_tls_cfg(sk, 10000);
    char addr[TF_ADDRSTR_LEN];
    tu_tls_srv r;
    tu_tls_srv_start(&r, &scfg, addr, sizeof addr);
    int fd = tu_raw_connect(addr);
    assert_true(fd >= 0);
    static const uint8_t part[] = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03};
    assert_true(tu_write_all(fd, part, sizeof part));
    for (int i = 0; i < 100000 && tf__sync_server_pending(r.s) == 0; i++) {
        tu_nap(1); /* accepted, its handshake under way: then the reset */
        tio_tick();
    }
    tu_close_rst(fd);
    for (int i = 0; i < 100000 && atomic_load(&r.rejects) == 0; i++) {
        tu_nap(1);
        tio_tick();
    }
    assert_int_equal(atomic_load(&r.rejects), 1);
    assert_int_equal(r.rej_err, TF_ERR_IO);
    assert_int_equal(r.rej_os, ECONNRESET);
    tf_tls_ctx *ck = tu_tls_ctx("client", 1, "localhost");
    tf_tcp_config ccfg = tu_tls_cfg(ck, 10000);
    tf_sync_conn *c = NULL;
    assert_int_equal(tf_sync_connect(addr, &ccfg, &c, NULL, NULL), TF_OK);
    pthread_join(r.th, NULL);
    assert_int_equal(r.err, TF_OK);
    tu_exchange(c, r.c);
    tf_sync_conn_free(c);
    tu_tls_srv_stop(&r);
    tf_tls_ctx_free(ck);
    tf_tls_ctx_free(sk);
}

/* One sync TLS connection used by two threads at once (a sender and a receiver, as sync.h
 * allows): the transport serialises its SSL calls; everything arrives in order. */
typedef struct duo {
    tf_sync_conn *c;
    int n;
    tf_err err;
} duo;

static void *duo_send(void *arg)
{
    duo *d = arg;
    uint8_t m[300];
    for (int i = 0; i < d->n && d->err == TF_OK; i++) {
        size_t len = (size_t)(i % 300);
        tu_fill(m, len, (uint32_t)i);
        d->err = tf_sync_conn_send(d->c, m, len, 30000);
    }
    return NULL;
}

static void *duo_echo(void *arg)
{
    duo *d = arg;
    void *m;
    size_t n;
    while ((d->err = tf_sync_conn_recv_alloc(d->c, &m, &n, 30000)) == TF_OK) {
        tf_err e = tf_sync_conn_send(d->c, m, n, 30000);
        free(m);
        if (e != TF_OK) {
            d->err = e;
            break;
        }
    }
    return NULL;
}

static void test_tls_sync_two_threads_one_connection(void **state)
{
    (void)state;
    tf_tls_ctx *sk = tu_tls_ctx("server", 1, NULL), *ck = tu_tls_ctx("client", 1, "localhost");
    tf_tcp_config scfg = tu_tls_cfg(sk, 10000), ccfg = tu_tls_cfg(ck, 10000);
    char addr[TF_ADDRSTR_LEN];
    tu_tls_srv r;
    tu_tls_srv_start(&r, &scfg, addr, sizeof addr);
    tf_sync_conn *c = NULL;
    assert_int_equal(tf_sync_connect(addr, &ccfg, &c, NULL, NULL), TF_OK);
    pthread_join(r.th, NULL);
    assert_int_equal(r.err, TF_OK);
    duo echo = {r.c, 0, TF_OK}, snd = {c, 3000, TF_OK};
    pthread_t te, ts;
    assert_int_equal(pthread_create(&te, NULL, duo_echo, &echo), 0);
    assert_int_equal(pthread_create(&ts, NULL, duo_send, &snd), 0);
    for (int i = 0; i < snd.n; i++) { /* this thread receives while the other sends */
        void *m = NULL;
        size_t n = 0;
        assert_int_equal(tf_sync_conn_recv_alloc(c, &m, &n, 30000), TF_OK);
        assert_int_equal(n, (size_t)(i % 300));
        assert_true(tu_check(m, n, (uint32_t)i));
        free(m);
        tio_tick();
    }
    pthread_join(ts, NULL);
    assert_int_equal(snd.err, TF_OK);
    assert_int_equal(tf_sync_conn_shutdown(c), TF_OK);
    pthread_join(te, NULL);
    assert_int_equal(echo.err, TF_ERR_CLOSED);
    tf_sync_conn_free(c);
    tu_tls_srv_stop(&r);
    tf_tls_ctx_free(sk);
    tf_tls_ctx_free(ck);
}

/* tf_sync_conn_sendv over TLS (the transport's writev seals the gathered pieces, the flush
 * pushes the last record) and the read-ahead over TLS: 400 messages (empty to 300 KiB) in one
 * batch, received whole and in order on the other side; a batch back. */
static void test_tls_sync_sendv_batch(void **state)
{
    (void)state;
    tf_tls_ctx *sk = tu_tls_ctx("server", 1, NULL), *ck = tu_tls_ctx("client", 1, "localhost");
    tf_tcp_config scfg = tu_tls_cfg(sk, 10000), ccfg = tu_tls_cfg(ck, 10000);
    char addr[TF_ADDRSTR_LEN];
    tu_tls_srv r;
    tu_tls_srv_start(&r, &scfg, addr, sizeof addr);
    tf_sync_conn *c = NULL;
    assert_int_equal(tf_sync_connect(addr, &ccfg, &c, NULL, NULL), TF_OK);
    pthread_join(r.th, NULL);
    assert_int_equal(r.err, TF_OK);
    enum { N = 400 };
    tf_iov v[N];
    uint8_t *big = malloc(300 * 1024);
    uint8_t small[N][64];
    for (int i = 0; i < N; i++) {
        size_t len = i == 123 ? 300 * 1024 : (size_t)(i % 64);
        uint8_t *p = i == 123 ? big : small[i];
        tu_fill(p, len, (uint32_t)i);
        v[i] = (tf_iov){.base = p, .len = len};
    }
    assert_int_equal(tf_sync_conn_sendv(c, v, N, 10000), TF_OK);
    for (int i = 0; i < N; i++) {
        void *m = NULL;
        size_t n = 0;
        assert_int_equal(tf_sync_conn_recv_alloc(r.c, &m, &n, 10000), TF_OK);
        assert_int_equal(n, v[i].len);
        assert_true(tu_check(m, n, (uint32_t)i));
        free(m);
    }
    assert_int_equal(tf_sync_conn_sendv(r.c, v, 10, 10000), TF_OK);
    for (int i = 0; i < 10; i++) {
        uint8_t b[64];
        size_t n = 0;
        assert_int_equal(tf_sync_conn_recv(c, b, sizeof b, &n, 10000), TF_OK);
        assert_int_equal(n, v[i].len);
        assert_true(tu_check(b, n, (uint32_t)i));
    }
    tf_conn_stats st = {.size = sizeof st};
    assert_int_equal(tf_sync_conn_stats(r.c, &st), TF_OK);
    assert_int_equal(st.msgs_recv, N);
    assert_int_equal(st.msgs_sent, 10);
    free(big);
    tf_sync_conn_free(c);
    tu_tls_srv_stop(&r);
    tf_tls_ctx_free(sk);
    tf_tls_ctx_free(ck);
}

/* ALPN: both ends agree on "uniflow" (both see it); a client that offers only another
 * protocol is refused by the server. */
static tf_tls_ctx *alpn_ctx(const char *cert, const char *alpn)
{
    tf_tls_config t;
    tf_tls_config_init(&t);
    char c[128], k[128];
    snprintf(c, sizeof c, "%s/%s.pem", tu_tls_dir, cert);
    snprintf(k, sizeof k, "%s/%s.key", tu_tls_dir, cert);
    t.cert_file = c;
    t.key_file = k;
    t.ca_file = tu_tls_path("ca.pem");
    t.peer_name = strcmp(cert, "client") == 0 ? "localhost" : NULL;
    t.alpn = alpn;
    tf_tls_ctx *x = NULL;
    tf_errmsg msg;
    if (tf_tls_ctx_new(&t, &x, &msg) != TF_OK)
        fail_msg("tf_tls_ctx_new: %s", msg.text);
    return x;
}

static void test_tls_alpn_agreed_or_refused(void **state)
{
    (void)state;
    tf_tls_ctx *sk = alpn_ctx("server", "uniflow"), *ck = alpn_ctx("client", "uniflow");
    tf_tcp_config scfg = tu_tls_cfg(sk, 10000), ccfg = tu_tls_cfg(ck, 10000);
    char addr[TF_ADDRSTR_LEN];
    tu_tls_srv r;
    tu_tls_srv_start(&r, &scfg, addr, sizeof addr);
    tf_sync_conn *c = NULL;
    assert_int_equal(tf_sync_connect(addr, &ccfg, &c, NULL, NULL), TF_OK);
    pthread_join(r.th, NULL);
    assert_int_equal(r.err, TF_OK);
    tf_tls_peer p;
    assert_int_equal(tf_tls_peer_sync(c, &p), TF_OK);
    assert_string_equal(p.alpn, "uniflow");
    assert_int_equal(tf_tls_peer_sync(r.c, &p), TF_OK);
    assert_string_equal(p.alpn, "uniflow");
    tf_sync_conn_free(c);
    tu_tls_srv_stop(&r);
    tf_tls_ctx *other = alpn_ctx("client", "other");
    tf_tcp_config ocfg = tu_tls_cfg(other, 10000);
    tu_tls_srv_start(&r, &scfg, addr, sizeof addr);
    int os = 0;
    assert_int_equal(tf_sync_connect(addr, &ocfg, &c, &os, NULL), TF_ERR_TLS);
    assert_non_null(strstr(tf_tls_strerror(TF_ERR_TLS, os), "no application protocol"));
    for (int i = 0; i < 100000 && atomic_load(&r.rejects) == 0; i++) {
        tu_nap(1);
        tio_tick();
    }
    assert_int_equal(atomic_load(&r.rejects), 1);
    assert_int_equal(r.rej_err, TF_ERR_TLS);
    tu_tls_srv_stop(&r);
    tf_tls_ctx_free(other);
    tf_tls_ctx_free(sk);
    tf_tls_ctx_free(ck);
}

/* ---------------------------------------------------------------- hostile TLS peers */

/* A TLS client driven by hand over a raw socket (the library's transport, no connection
 * around it): handshake and magic done, so the test can then misbehave below or above TLS. */
typedef struct raw_tls {
    int fd;
    tf_fdio f;
    tf__xport x;
    tf_tls_ctx *k;
} raw_tls;

static void raw_tls_open(raw_tls *t, const char *addr)
{
    t->fd = tu_raw_connect(addr);
    assert_true(t->fd >= 0);
    assert_int_equal(fcntl(t->fd, F_SETFL, fcntl(t->fd, F_GETFL) | O_NONBLOCK), 0);
    t->k = tu_tls_ctx("client", 1, "localhost");
    tf_tcp_config c = tu_tls_cfg(t->k, 10000);
    int os = 0;
    assert_int_equal(tf__xport_open(&t->x, &t->f, t->fd, &c, false, &os), TF_OK);
    tf_step st;
    tf_err e = TF_OK;
    while ((st = tf__xport_handshake(&t->x, &e, &os)) == TF_AGAIN) {
        unsigned w = tf__xport_wants(&t->x, 0);
        struct pollfd q = {
            t->fd, (short)((w & TF_WANT_READ ? POLLIN : 0) | (w & TF_WANT_WRITE ? POLLOUT : 0)), 0};
        poll(&q, 1, 100);
        tio_tick();
    }
    assert_int_equal(st, TF_DONE);
    tf_io io = tf__xport_io(&t->x);
    tf_hs hs;
    tf_hs_init(&hs);
    while ((st = tf_hs_try(&hs, &io)) == TF_AGAIN) {
        struct pollfd q = {t->fd, POLLIN, 0};
        poll(&q, 1, 100);
        tio_tick();
    }
    assert_int_equal(st, TF_DONE);
}

/* Bytes through TLS (sealed records), all of them. */
static void raw_tls_send(raw_tls *t, const void *p, size_t n)
{
    tf_iov v = {p, n};
    int os = 0;
    long r = t->x.ops->write(t->x.ctx, &v, 1, &os);
    assert_int_equal(r, (long)n);
    while (tf__xport_out_pending(&t->x))
        assert_true(t->x.ops->flush(t->x.ctx, &os) != TF_IO_FAIL);
}

static void raw_tls_close(raw_tls *t)
{
    tf__xport_close(&t->x);
    close(t->fd);
    tf_tls_ctx_free(t->k);
}

/* The async server's view of the next client: its connection's next receive outcome. */
static tf_err next_recv(tf_async_server *s, int *os)
{
    tf_future *af;
    assert_int_equal(tf_async_server_accept(s, &af), TF_OK);
    void *c = NULL;
    assert_int_equal(tf_future_get(af, NULL, &c), TF_OK);
    tf_future_free(af);
    tf_future *rf;
    assert_int_equal(tf_async_conn_recv_alloc(c, -1, &rf), TF_OK);
    tf_err e = tf_future_get(rf, NULL, NULL);
    *os = tf_future_os_err(rf);
    tf_future_free(rf);
    tf_async_conn_free(c);
    return e;
}

/* Over TLS, an async server with a progress timeout drops a slowloris (a frame started and
 * never finished: TIMEOUT); a peer that writes garbage below TLS after the handshake fails the
 * record (TLS, OpenSSL's reason); a peer that closes in the middle of a record, or without its
 * close_notify, is an error too (TLS: "unexpected eof"), not a clean end. */
static void test_tls_async_hostile_peers(void **state)
{
    (void)state;
    int fds = tu_fd_count();
    tf_tls_ctx *sk = tu_tls_ctx("server", 1, NULL);
    tf_tcp_config scfg = tu_tls_cfg(sk, 10000);
    scfg.progress_timeout_ms = 300;
    tf_evb *evb;
    assert_int_equal(tf_evb_new(&evb), TF_OK);
    assert_int_equal(tf_evb_start(evb), TF_OK);
    tf_async_server *s;
    char addr[TF_ADDRSTR_LEN];
    assert_int_equal(tf_async_server_new(evb, &s), TF_OK);
    assert_int_equal(tf_async_server_init(s, "127.0.0.1:0", &scfg, NULL), TF_OK);
    assert_int_equal(tf_async_server_addr(s, addr, sizeof addr), TF_OK);
    raw_tls t;
    int os = 0;
    /* slowloris: 100 bytes announced, 3 sent */
    raw_tls_open(&t, addr);
    raw_tls_send(&t, "\0\0\0\144abc", 7);
    assert_int_equal(next_recv(s, &os), TF_ERR_TIMEOUT);
    raw_tls_close(&t);
    /* garbage under TLS: a record of type 23 whose ciphertext does not authenticate */
    raw_tls_open(&t, addr);
    static const uint8_t junk[] = {23, 3,  3,  0,  20, 1,  2,  3,  4,  5,  6,  7, 8,
                                   9,  10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20};
    assert_true(tu_write_all(t.fd, junk, sizeof junk));
    assert_int_equal(next_recv(s, &os), TF_ERR_TLS);
    assert_non_null(tf_tls_strerror(TF_ERR_TLS, os));
    raw_tls_close(&t);
    /* half a record header, then the socket closes */
    raw_tls_open(&t, addr);
    assert_true(tu_write_all(t.fd, junk, 3));
    shutdown(t.fd, SHUT_WR);
    assert_int_equal(next_recv(s, &os), TF_ERR_TLS);
    if (!strstr(tf_tls_strerror(TF_ERR_TLS, os), "unexpected eof"))
        fail_msg("reason %d: %s", os, tf_tls_strerror(TF_ERR_TLS, os));
    raw_tls_close(&t);
    /* a whole message, then EOF without close_notify: the message arrives, then the error */
    raw_tls_open(&t, addr);
    raw_tls_send(&t, "\0\0\0\2hi", 6);
    shutdown(t.fd, SHUT_WR);
    tf_future *af;
    assert_int_equal(tf_async_server_accept(s, &af), TF_OK);
    void *c = NULL;
    assert_int_equal(tf_future_get(af, NULL, &c), TF_OK);
    tf_future_free(af);
    tf_future *rf;
    size_t n = 0;
    assert_int_equal(tf_async_conn_recv_alloc(c, -1, &rf), TF_OK);
    assert_int_equal(tf_future_get(rf, &n, NULL), TF_OK);
    assert_int_equal(n, 2);
    tf_future_free(rf);
    assert_int_equal(tf_async_conn_recv_alloc(c, -1, &rf), TF_OK);
    assert_int_equal(tf_future_get(rf, NULL, NULL), TF_ERR_TLS);
    tf_future_free(rf);
    tf_async_conn_free(c);
    raw_tls_close(&t);
    tf_async_server_free(s);
    tf_evb_free(evb);
    tf_tls_ctx_free(sk);
    assert_int_equal(tu_fd_count(), fds);
}

/* ---------------------------------------------------------------- OpenSSL as the server peer */

/* The peer of the tests below: OpenSSL's server side on a blocking socket (the library's own
 * ends are all clients when made from an fd). */
typedef struct speer {
    SSL_CTX *ctx;
    SSL *ssl;
    int fd;
} speer;

static void speer_open(speer *p, int fd)
{
    p->fd = fd;
    p->ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(p->ctx);
    assert_int_equal(SSL_CTX_set_min_proto_version(p->ctx, TLS1_3_VERSION), 1);
    assert_int_equal(SSL_CTX_use_certificate_chain_file(p->ctx, tu_tls_path("server.pem")), 1);
    assert_int_equal(
        SSL_CTX_use_PrivateKey_file(p->ctx, tu_tls_path("server.key"), SSL_FILETYPE_PEM), 1);
    p->ssl = SSL_new(p->ctx);
    assert_non_null(p->ssl);
    assert_int_equal(SSL_set_fd(p->ssl, fd), 1);
    struct timeval tv = {0, 100000}; /* reads wake every 100 ms: the no-progress watchdog */
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    uint64_t t0 = tu_now_ms();
    int r;
    while ((r = SSL_accept(p->ssl)) != 1 && SSL_get_error(p->ssl, r) == SSL_ERROR_WANT_READ &&
           tu_now_ms() - t0 < 20000)
        ;
    assert_int_equal(r, 1);
}

static void speer_close(speer *p)
{
    SSL_free(p->ssl);
    SSL_CTX_free(p->ctx);
    close(p->fd);
}

static void speer_write(speer *p, const void *b, size_t n)
{
    size_t w = 0;
    assert_int_equal(SSL_write_ex(p->ssl, b, n, &w), 1);
    assert_int_equal(w, n);
}

/* Read |n| bytes (discarded; into |out| when not NULL); false when no byte came for |stall_ms|
 * (a no-progress window, not a speed verdict) or the stream ended. */
static bool speer_read(speer *p, uint8_t *out, size_t n, uint64_t stall_ms)
{
    static uint8_t sink[1 << 16];
    uint64_t last = tu_now_ms();
    while (n > 0) {
        size_t got = 0;
        uint8_t *dst = out ? out : sink;
        int r = SSL_read_ex(p->ssl, dst, n < sizeof sink ? n : sizeof sink, &got);
        if (r == 1) {
            n -= got;
            if (out)
                out += got;
            last = tu_now_ms();
            tio_tick();
            continue;
        }
        if (SSL_get_error(p->ssl, r) != SSL_ERROR_WANT_READ)
            return false;
        ERR_clear_error();
        if (tu_now_ms() - last > stall_ms)
            return false;
    }
    return true;
}

enum { TCHAT_EACH = 8 };

/* The peer's side of a sync TLS pair: the handshake and the magic on a thread, while the
 * library's from_fd runs its own. */
static void *speer_main(void *arg)
{
    speer *p = arg;
    speer_open(p, p->fd);
    speer_write(p, "UNIF", 4);
    uint8_t m[4];
    assert_true(speer_read(p, m, 4, 20000));
    assert_memory_equal(m, "UNIF", 4);
    return NULL;
}

/* The transport's ends are final (io/xport.h): once a TLS read answered EOF (close_notify) or
 * FAIL (a record that is not one), every later read answers the same without OpenSSL. */
static void test_tls_read_end_is_final(void **state)
{
    (void)state;
    tf_tls_ctx *ck = tu_tls_ctx("client", 1, "127.0.0.1");
    tf_tcp_config cfg = tu_tls_cfg(ck, 20000);
    for (int garbage = 0; garbage < 2; garbage++) {
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        speer p = {.fd = sv[1]};
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, speer_main, &p), 0);
        tf_sync_conn *c = NULL;
        assert_int_equal(tf_sync_conn_from_fd(sv[0], &cfg, &c, NULL, NULL), TF_OK);
        pthread_join(t, NULL);
        if (garbage)
            assert_true(tu_write_all(p.fd, "\x17\x03\x03\x00\x05hello", 10)); /* a forged record */
        else
            assert_true(SSL_shutdown(p.ssl) >= 0); /* close_notify */
        const tf__xport *x = tf__sync_conn_xport(c);
        uint8_t b[64];
        int os1 = 0, os2 = 0;
        long r1, r2;
        uint64_t t0 = tu_now_ms();
        while ((r1 = x->ops->read(x->ctx, b, sizeof b, &os1)) == TF_IO_AGAIN ||
               r1 == TF_IO_INTR) { /* the session ticket first; the end on its way */
            assert_true(tu_now_ms() - t0 < 20000);
            struct pollfd pf = {sv[0], POLLIN, 0};
            (void)poll(&pf, 1, 100);
        }
        r2 = x->ops->read(x->ctx, b, sizeof b, &os2);
        print_message("tls end (%s): %ld then %ld, os_err %d then %d\n",
                      garbage ? "forged record" : "close_notify", r1, r2, os1, os2);
        assert_int_equal(r1, garbage ? TF_IO_FAIL : 0);
        assert_int_equal(r2, r1);
        assert_int_equal(os2, os1);
        tf_sync_conn_free(c);
        speer_close(&p);
    }
    tf_tls_ctx_free(ck);
}

/* ---------------------------------------------------------------- an end behind frames */

typedef struct endseen {
    tio_ctr n;
    atomic_int end; /* -1 none yet, else the tf_err the stream ended with */
    bool bad;
} endseen;

static void endseen_cb(tf_async_conn *c, tf_err err, int os_err, const uint8_t *data, size_t len,
                       void *arg)
{
    (void)c, (void)os_err;
    endseen *k = arg;
    if (err != TF_OK) {
        atomic_store(&k->end, (int)err);
        return;
    }
    if (len != TCHAT_EACH || !tu_check(data, len, (uint32_t)tio_ctr_get(&k->n)))
        k->bad = true;
    tio_ctr_add(&k->n, 1);
}

/* Attack 5 (B3): the peer's end right behind its last frames -- a close_notify with its TCP side
 * kept open (a two-way SSL_shutdown waits so for ours), or a forged record -- comes out of one
 * read with the frames. The read is short, yet the end waits in the transport and the socket
 * stays silent: before, the async connection counted itself drained and waited for an event
 * that never came (the frames, then nothing, forever; a close timed out). Now it reads again at
 * once: CLOSED after every frame (a half-close: sends go on), or TLS. Both with the stream on
 * before the bytes arrive and started after they wait in the socket. */
static void test_tls_async_end_behind_frames_reported(void **state)
{
    (void)state;
    tf_tls_ctx *ck = tu_tls_ctx("client", 1, "127.0.0.1");
    tf_tcp_config cfg = tu_tls_cfg(ck, 20000);
    tu_fx f;
    tu_fx_start(&f);
    for (int v = 0; v < 4; v++) {
        bool forged = v & 1, stream_first = v & 2;
        enum { N = 5 };
        int raw, mine;
        tf_async_conn *c = tu_pair_raw_fds(&f, &cfg, &raw, &mine);
        speer p;
        speer_open(&p, raw);
        speer_write(&p, "UNIF", 4);
        uint8_t m[4];
        assert_true(speer_read(&p, m, 4, 20000));
        endseen k = {.bad = false};
        tio_ctr_init(&k.n);
        atomic_init(&k.end, -1);
        if (stream_first)
            assert_int_equal(tf_async_conn_stream(c, endseen_cb, &k), TF_OK);
        uint8_t frames[N * (4 + TCHAT_EACH)];
        for (size_t j = 0; j < sizeof frames; j++)
            frames[j] = tu_chat_byte(j, TCHAT_EACH);
        if (forged) { /* the frames and a forged record in one write: one segment */
            static const uint8_t rec[10] = {0x17, 3, 3, 0, 5, 'h', 'e', 'l', 'l', 'o'};
            speer_write(&p, frames, sizeof frames);
            assert_true(tu_write_all(raw, rec, sizeof rec));
        } else {
            speer_write(&p, frames, sizeof frames);
            assert_true(SSL_shutdown(p.ssl) >= 0); /* close_notify; our TCP side stays open */
        }
        (void)mine; /* a Unix pair: what the peer wrote waits in our socket already */
        if (!stream_first)
            assert_int_equal(tf_async_conn_stream(c, endseen_cb, &k), TF_OK);
        assert_true(tio_ctr_wait(&k.n, N, 20000));
        for (uint64_t t0 = tu_now_ms(); atomic_load(&k.end) < 0;) { /* watchdog only */
            assert_true(tu_now_ms() - t0 < 20000);
            struct timespec ms = {0, 2000000};
            nanosleep(&ms, NULL);
        }
        print_message("tls end behind %d frames (%s, stream %s): %s\n", N,
                      forged ? "forged record" : "close_notify",
                      stream_first ? "on first" : "started after", tf_err_name(atomic_load(&k.end)));
        assert_int_equal(tio_ctr_get(&k.n), N);
        assert_false(k.bad);
        assert_int_equal(atomic_load(&k.end), forged ? TF_ERR_TLS : TF_ERR_CLOSED);
        tf_async_conn_free(c);
        speer_close(&p);
        tio_ctr_destroy(&k.n);
    }
    /* The close: the peer's frames and close_notify wait unread; our close flushes, sends ours,
     * and finds the peer's end behind the frames: OK (before: TIMEOUT after the linger). */
    int raw, mine;
    tf_async_conn *c = tu_pair_raw_fds(&f, &cfg, &raw, &mine);
    (void)mine;
    speer p;
    speer_open(&p, raw);
    speer_write(&p, "UNIF", 4);
    uint8_t m[4];
    assert_true(speer_read(&p, m, 4, 20000));
    uint8_t frames[3 * (4 + TCHAT_EACH)];
    for (size_t j = 0; j < sizeof frames; j++)
        frames[j] = tu_chat_byte(j, TCHAT_EACH);
    speer_write(&p, frames, sizeof frames);
    assert_true(SSL_shutdown(p.ssl) >= 0);
    tf_future *cf;
    assert_int_equal(tf_async_conn_close(c, &cf), TF_OK);
    assert_int_equal(tu_fut_result(cf, NULL, NULL), TF_OK);
    tf_async_conn_free(c);
    speer_close(&p);
    tu_fx_end(&f);
    tf_tls_ctx_free(ck);
}

/* ---------------------------------------------------------------- close_notify on a full socket */

/* Found by the TLS soak (tools/tfsoak.c -T, half-close): a half-close whose close_notify met a
 * full socket lost it -- x_shutdown_wr ignored SSL_shutdown's WANT_WRITE and sent the FIN at
 * once, so the peer read an EOF without close_notify (TF_ERR_TLS, "unexpected eof") instead of
 * CLOSED and failed the connection. The hook answers EAGAIN (a full socket) to the first
 * sendmsg of a 24-byte record (the close_notify) on any fd but the peer's (which sends nothing
 * meanwhile); the peer must still read CLOSED. */
static atomic_int cn_skip_fd = -1, cn_hits;

static int cn_hook(tf__sys_op op, int fd, size_t *len)
{
    if (op == TF__SYS_SENDMSG && fd != atomic_load(&cn_skip_fd) && len && *len == 24 &&
        atomic_fetch_add(&cn_hits, 1) == 0)
        return EAGAIN;
    return 0;
}

static void cn_arm(int skip_fd)
{
    atomic_store(&cn_hits, 0);
    atomic_store(&cn_skip_fd, skip_fd);
    atomic_store(&tf__sys_hook, cn_hook);
}

static void cn_disarm(void)
{
    atomic_store(&tf__sys_hook, NULL);
}

static void test_tls_sync_shutdown_close_notify_waits_for_room(void **state)
{
    (void)state;
    int fds = tu_fd_count();
    tf_tls_ctx *sk = tu_tls_ctx("server", 1, NULL), *ck = tu_tls_ctx("client", 1, "localhost");
    tf_tcp_config scfg = tu_tls_cfg(sk, 10000), ccfg = tu_tls_cfg(ck, 10000);
    char addr[TF_ADDRSTR_LEN];
    tu_tls_srv r;
    tu_tls_srv_start(&r, &scfg, addr, sizeof addr);
    tf_sync_conn *c = NULL;
    assert_int_equal(tf_sync_connect(addr, &ccfg, &c, NULL, NULL), TF_OK);
    pthread_join(r.th, NULL);
    assert_int_equal(r.err, TF_OK);
    assert_int_equal(tf_sync_conn_send(c, "abc", 3, 10000), TF_OK);
    cn_arm(tf_sync_conn_fd(r.c));
    tf_err e = tf_sync_conn_shutdown(c);
    cn_disarm();
    assert_true(atomic_load(&cn_hits) >= 1); /* the close_notify met the full socket */
    assert_int_equal(e, TF_OK);
    char b[8];
    size_t n = 0;
    assert_int_equal(tf_sync_conn_recv(r.c, b, sizeof b, &n, 10000), TF_OK);
    assert_int_equal(n, 3);
    int os = 0;
    e = tf_sync_conn_recv(r.c, b, sizeof b, &n, 10000);
    (void)tf_sync_conn_error(r.c, &os);
    if (e != TF_ERR_CLOSED)
        fail_msg("the server read %s (%s), not CLOSED", tf_err_name(e), tf_tls_strerror(e, os));
    /* the half-closed client still reads: the server's answer, then its CLOSED */
    assert_int_equal(tf_sync_conn_send(r.c, "de", 2, 10000), TF_OK);
    assert_int_equal(tf_sync_conn_shutdown(r.c), TF_OK);
    assert_int_equal(tf_sync_conn_recv(c, b, sizeof b, &n, 10000), TF_OK);
    assert_int_equal(n, 2);
    assert_int_equal(tf_sync_conn_recv(c, b, sizeof b, &n, 10000), TF_ERR_CLOSED);
    tf_sync_conn_free(c);
    tu_tls_srv_stop(&r);
    tf_tls_ctx_free(sk);
    tf_tls_ctx_free(ck);
    assert_int_equal(tu_fd_count(), fds);
}

static void test_tls_async_close_close_notify_waits_for_room(void **state)
{
    (void)state;
    int fds = tu_fd_count();
    tf_tls_ctx *sk = tu_tls_ctx("server", 1, NULL), *ck = tu_tls_ctx("client", 1, "127.0.0.1");
    tf_tcp_config scfg = tu_tls_cfg(sk, 10000), ccfg = tu_tls_cfg(ck, 10000);
    tf_evb *evb;
    assert_int_equal(tf_evb_new(&evb), TF_OK);
    assert_int_equal(tf_evb_start(evb), TF_OK);
    tf_async_server *s;
    char addr[TF_ADDRSTR_LEN];
    assert_int_equal(tf_async_server_new(evb, &s), TF_OK);
    assert_int_equal(tf_async_server_init(s, "127.0.0.1:0", &scfg, NULL), TF_OK);
    assert_int_equal(tf_async_server_addr(s, addr, sizeof addr), TF_OK);
    tf_future *af;
    assert_int_equal(tf_async_server_accept(s, &af), TF_OK);
    tf_sync_conn *c = NULL;
    assert_int_equal(tf_sync_connect(addr, &ccfg, &c, NULL, NULL), TF_OK);
    void *ac = NULL;
    assert_int_equal(tf_future_get(af, NULL, &ac), TF_OK);
    tf_future_free(af);
    tf_future *sf, *cf;
    assert_int_equal(tf_async_conn_send(ac, "abc", 3, 10000, &sf), TF_OK);
    assert_int_equal(tf_future_get(sf, NULL, NULL), TF_OK);
    tf_future_free(sf);
    cn_arm(tf_sync_conn_fd(c));
    assert_int_equal(tf_async_conn_close(ac, &cf), TF_OK);
    char b[8];
    size_t n = 0;
    assert_int_equal(tf_sync_conn_recv(c, b, sizeof b, &n, 10000), TF_OK);
    assert_int_equal(n, 3);
    int os = 0;
    tf_err e = tf_sync_conn_recv(c, b, sizeof b, &n, 10000);
    (void)tf_sync_conn_error(c, &os);
    cn_disarm();
    assert_true(atomic_load(&cn_hits) >= 1);
    if (e != TF_ERR_CLOSED)
        fail_msg("the client read %s (%s), not CLOSED", tf_err_name(e), tf_tls_strerror(e, os));
    assert_int_equal(tf_sync_conn_shutdown(c), TF_OK);
    assert_int_equal(tf_future_get(cf, NULL, NULL), TF_OK);
    tf_future_free(cf);
    tf_async_conn_free(ac);
    tf_sync_conn_free(c);
    tf_async_server_free(s);
    tf_evb_free(evb);
    tf_tls_ctx_free(sk);
    tf_tls_ctx_free(ck);
    assert_int_equal(tu_fd_count(), fds);
}

/* The async close's close_notify held by a full socket while the peer's own close_notify and
 * FIN arrive: the connection must still send ours (and the FIN) before it closes the socket --
 * the peer, half-closed, reads CLOSED, not an EOF without close_notify. The hook keeps the
 * server's close_notify back until the client's shutdown was read by the server's loop (every
 * loop turn tries the held close_notify first, then reads: a few more tries after the client's
 * shutdown returned mean its EOF was read). */
static atomic_int ch_skip_fd = -1, ch_hold, ch_tries;

static int ch_hook(tf__sys_op op, int fd, size_t *len)
{
    if (op == TF__SYS_SENDMSG && fd != atomic_load(&ch_skip_fd) && len && *len == 24) {
        atomic_fetch_add(&ch_tries, 1);
        if (atomic_load(&ch_hold))
            return EAGAIN;
    }
    return 0;
}

static void ch_wait_tries(int n)
{
    for (int i = 0; i < 100000 && atomic_load(&ch_tries) < n; i++) {
        tu_nap(1);
        tio_tick();
    }
    assert_true(atomic_load(&ch_tries) >= n);
}

static void test_tls_async_close_notify_held_past_peer_eof(void **state)
{
    (void)state;
    int fds = tu_fd_count();
    tf_tls_ctx *sk = tu_tls_ctx("server", 1, NULL), *ck = tu_tls_ctx("client", 1, "127.0.0.1");
    tf_tcp_config scfg = tu_tls_cfg(sk, 10000), ccfg = tu_tls_cfg(ck, 10000);
    tf_evb *evb;
    assert_int_equal(tf_evb_new(&evb), TF_OK);
    assert_int_equal(tf_evb_start(evb), TF_OK);
    tf_async_server *s;
    char addr[TF_ADDRSTR_LEN];
    assert_int_equal(tf_async_server_new(evb, &s), TF_OK);
    assert_int_equal(tf_async_server_init(s, "127.0.0.1:0", &scfg, NULL), TF_OK);
    assert_int_equal(tf_async_server_addr(s, addr, sizeof addr), TF_OK);
    tf_future *af;
    assert_int_equal(tf_async_server_accept(s, &af), TF_OK);
    tf_sync_conn *c = NULL;
    assert_int_equal(tf_sync_connect(addr, &ccfg, &c, NULL, NULL), TF_OK);
    void *ac = NULL;
    assert_int_equal(tf_future_get(af, NULL, &ac), TF_OK);
    tf_future_free(af);
    tf_future *sf, *cf;
    assert_int_equal(tf_async_conn_send(ac, "abc", 3, 10000, &sf), TF_OK);
    assert_int_equal(tf_future_get(sf, NULL, NULL), TF_OK);
    tf_future_free(sf);
    atomic_store(&ch_tries, 0);
    atomic_store(&ch_hold, 1);
    atomic_store(&ch_skip_fd, tf_sync_conn_fd(c));
    atomic_store(&tf__sys_hook, ch_hook);
    assert_int_equal(tf_async_conn_close(ac, &cf), TF_OK);
    char b[8];
    size_t n = 0;
    assert_int_equal(tf_sync_conn_recv(c, b, sizeof b, &n, 10000), TF_OK);
    assert_int_equal(n, 3);
    ch_wait_tries(1); /* the server's close_notify is held */
    assert_int_equal(tf_sync_conn_shutdown(c), TF_OK);
    ch_wait_tries(atomic_load(&ch_tries) + 3); /* ... and the server read our EOF meanwhile */
    assert_false(tf_future_is_ready(cf)); /* still sending its close_notify */
    atomic_store(&ch_hold, 0);
    tf_err e = tf_sync_conn_recv(c, b, sizeof b, &n, 10000);
    int os = 0;
    (void)tf_sync_conn_error(c, &os);
    atomic_store(&tf__sys_hook, NULL);
    if (e != TF_ERR_CLOSED)
        fail_msg("the client read %s (%s), not CLOSED", tf_err_name(e), tf_tls_strerror(e, os));
    assert_int_equal(tf_future_get(cf, NULL, NULL), TF_OK);
    tf_future_free(cf);
    tf_async_conn_free(ac);
    tf_sync_conn_free(c);
    tf_async_server_free(s);
    tf_evb_free(evb);
    tf_tls_ctx_free(sk);
    tf_tls_ctx_free(ck);
    assert_int_equal(tu_fd_count(), fds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TIO_TEST(test_tls_strerror_before_any_context),
        TIO_TEST(test_tls_ctx_errors_name_the_file),
        TIO_TEST(test_tls_sync_mutual_exchange_and_identity),
        TIO_TEST(test_tls_sync_no_client_cert_rejected),
        TIO_TEST(test_tls_sync_wrong_ca_rejected),
        TIO_TEST(test_tls_sync_expired_rejected),
        TIO_TEST(test_tls_sync_wrong_name_refused_by_client),
        TIO_TEST(test_tls_sync_plaintext_client_rejected_in_deadline),
        TIO_TEST(test_tls_async_server_and_client),
        TIO_TEST(test_tls_async_server_rejects_like_wrong_magic),
        TIO_TEST(test_tls_sync_reset_mid_handshake),
        TIO_TEST(test_tls_sync_two_threads_one_connection),
        TIO_TEST(test_tls_sync_sendv_batch),
        TIO_TEST(test_tls_async_hostile_peers),
        TIO_TEST(test_tls_alpn_agreed_or_refused),
        TIO_TEST(test_tls_read_end_is_final),
        TIO_TEST(test_tls_async_end_behind_frames_reported),
        TIO_TEST(test_tls_sync_shutdown_close_notify_waits_for_room),
        TIO_TEST(test_tls_async_close_close_notify_waits_for_room),
        TIO_TEST(test_tls_async_close_notify_held_past_peer_eof),
    };
    return cmocka_run_group_tests_name("tls", tests, tu_tls_setup, tu_tls_teardown);
}
