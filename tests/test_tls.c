/* tests/test_tls.c -- the TLS 1.3 transport (tls/tcpframe/tls.h, SPEC 9.9): the tf_io
 * conformance suite over a TLS pair, context errors naming the file and OpenSSL's reason, mutual
 * authentication between the library's sync and async ends with the peer's identity, each
 * rejection with its reason (no client certificate, a wrong CA, an expired certificate, a wrong
 * server name, a plaintext client), and openssl s_server / s_client as the peer. The
 * certificates are made by the test with the openssl CLI in a scratch directory. */
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

#include "tcpframe/async.h"
#include "tcpframe/sync.h"
#include "tcpframe/tls.h"
#include "test_io_util.h"
#include "tu_io_conformance.h"
#include "tu_net.h"
#include "tu_sync.h"
#include "sync_internal.h"
#include "xport.h"

static char dir[64];

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    if (system(cmd) != 0) {
        fprintf(stderr, "failed: %s\n", cmd);
        abort();
    }
}

static const char *path(const char *name)
{
    static char buf[8][128];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 128, "%s/%s", dir, name);
    return p;
}

/* A key and a certificate NAME signed by CA (or self-signed with CA ""), CN and SAN given,
 * valid for DAYS (-1: expired yesterday). */
static void make_cert(const char *name, const char *ca, const char *cn, const char *san, int days)
{
    sh("cd %s && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout %s.key "
       "-out %s.csr -subj /CN=%s 2>/dev/null >/dev/null",
       dir, name, name, cn);
    sh("cd %s && printf 'subjectAltName=%s\\n' > %s.ext", dir, san, name);
    sh("cd %s && openssl x509 -req -in %s.csr -CA %s.pem -CAkey %s.key -CAcreateserial -days %d "
       "-extfile %s.ext -out %s.pem 2>/dev/null >/dev/null",
       dir, name, ca, ca, days, name, name);
}

static int group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    snprintf(dir, sizeof dir, "/tmp/tf-tls-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    for (int i = 0; i < 2; i++) {
        const char *ca = i ? "ca2" : "ca";
        sh("cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
           "-keyout %s.key -out %s.pem -subj /CN=%s -days 2 2>/dev/null >/dev/null",
           dir, ca, ca, ca);
    }
    make_cert("server", "ca", "server", "DNS:localhost,IP:127.0.0.1", 2);
    make_cert("client", "ca", "client", "DNS:client.example", 2);
    make_cert("expired", "ca", "expired", "DNS:client.example", -1);
    make_cert("stranger", "ca2", "stranger", "DNS:client.example", 2);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    sh("rm -rf %s", dir);
    return 0;
}

/* A context: cert NAME (NULL: none), our CA, verify, peer name. */
static tf_tls_ctx *ctx_of(const char *name, int verify, const char *peer_name)
{
    tf_tls_config t;
    tf_tls_config_init(&t);
    char cert[128], key[128];
    if (name) {
        snprintf(cert, sizeof cert, "%s/%s.pem", dir, name);
        snprintf(key, sizeof key, "%s/%s.key", dir, name);
        t.cert_file = cert;
        t.key_file = key;
    }
    t.ca_file = path("ca.pem");
    t.verify_peer = verify;
    t.peer_name = peer_name;
    tf_tls_ctx *k = NULL;
    tf_errmsg msg;
    tf_err e = tf_tls_ctx_new(&t, &k, &msg);
    if (e != TF_OK)
        fail_msg("tf_tls_ctx_new: %s", msg.text);
    return k;
}

static tf_tcp_config cfg_of(tf_tls_ctx *k, int64_t hs_ms)
{
    tf_tcp_config c;
    tf_tcp_config_init(&c);
    c.tls = k;
    c.handshake_timeout_ms = hs_ms;
    c.connect_retries = 0;
    c.connect_timeout_ms = 10000;
    return c;
}

/* ---------------------------------------------------------------- context errors */

static void test_tls_ctx_errors_name_the_file(void **state)
{
    (void)state;
    tf_tls_config t;
    tf_tls_config_init(&t);
    tf_tls_ctx *k = NULL;
    tf_errmsg msg;
    t.cert_file = path("server.pem");
    assert_int_equal(tf_tls_ctx_new(&t, &k, &msg), TF_ERR_INVALID_ARGUMENT); /* no key */
    assert_non_null(strstr(msg.text, "cert_file without key_file"));
    t.key_file = path("client.key"); /* the wrong key */
    t.ca_file = path("ca.pem");
    assert_int_equal(tf_tls_ctx_new(&t, &k, &msg), TF_ERR_TLS);
    assert_non_null(strstr(msg.text, "key_file"));
    assert_non_null(strstr(msg.text, "client.key"));
    assert_non_null(strstr(msg.text, "mismatch"));
    t.key_file = path("server.key");
    t.ca_file = path("nosuch.pem");
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

/* ---------------------------------------------------------------- sync, mutual */

typedef struct srv_run {
    tf_sync_server *s;
    tf_sync_conn *c;
    tf_err err;
    atomic_int rejects; /* published after rej_err and rej_os */
    tf_err rej_err;
    int rej_os;
    pthread_t th;
} srv_run;

static void on_reject(void *arg, const char *peer, tf_err err, int os_err)
{
    (void)peer;
    srv_run *r = arg;
    r->rej_err = err;
    r->rej_os = os_err;
    atomic_fetch_add(&r->rejects, 1);
}

static void *accept_main(void *arg)
{
    srv_run *r = arg;
    tf_errmsg msg;
    r->err = tf_sync_server_accept(r->s, &r->c, NULL, &msg);
    return NULL;
}

static void srv_start(srv_run *r, const tf_tcp_config *cfg, char *addr, size_t len)
{
    memset(r, 0, sizeof *r);
    atomic_init(&r->rejects, 0);
    r->s = tu_listen("127.0.0.1", cfg, addr, len);
    tf_sync_server_on_reject(r->s, on_reject, r);
    assert_int_equal(pthread_create(&r->th, NULL, accept_main, r), 0);
}

static void srv_stop(srv_run *r)
{
    tf_sync_server_shutdown(r->s);
    pthread_join(r->th, NULL);
    tf_sync_conn_free(r->c);
    tf_sync_server_free(r->s);
}

static void test_tls_sync_mutual_exchange_and_identity(void **state)
{
    (void)state;
    int fds = tu_fd_count();
    tf_tls_ctx *sk = ctx_of("server", 1, NULL), *ck = ctx_of("client", 1, "localhost");
    tf_tcp_config scfg = cfg_of(sk, 10000), ccfg = cfg_of(ck, 10000);
    char addr[TF_ADDRSTR_LEN];
    srv_run r;
    srv_start(&r, &scfg, addr, sizeof addr);
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
    FILE *f = popen("true", "r");
    pclose(f);
    char cmd[256];
    snprintf(cmd, sizeof cmd,
             "openssl x509 -in %s -noout -fingerprint -sha256 | sed 's/.*=//; s/://g' | "
             "tr A-F a-f",
             path("client.pem"));
    f = popen(cmd, "r");
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
    srv_stop(&r);
    tf_tls_ctx_free(sk);
    tf_tls_ctx_free(ck);
    assert_int_equal(tu_fd_count(), fds);
}

/* A client made with |ck| is refused: the connect fails and the server rejects it with
 * |want| (and the X.509 code |code| for TLS_VERIFY; any for TLS). */
static void refused(tf_tls_ctx *ck, tf_err want, int code, const char *text)
{
    tf_tls_ctx *sk = ctx_of("server", 1, NULL);
    tf_tcp_config scfg = cfg_of(sk, 10000), ccfg = cfg_of(ck, 10000);
    char addr[TF_ADDRSTR_LEN];
    srv_run r;
    srv_start(&r, &scfg, addr, sizeof addr);
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
    srv_stop(&r);
    tf_tls_ctx_free(sk);
}

static void test_tls_sync_no_client_cert_rejected(void **state)
{
    (void)state;
    tf_tls_ctx *ck = ctx_of(NULL, 1, "localhost");
    refused(ck, TF_ERR_TLS, -1, "certificate");
    tf_tls_ctx_free(ck);
}

static void test_tls_sync_wrong_ca_rejected(void **state)
{
    (void)state;
    tf_tls_ctx *ck = ctx_of("stranger", 1, "localhost");
    refused(ck, TF_ERR_TLS_VERIFY, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, "issuer");
    tf_tls_ctx_free(ck);
}

static void test_tls_sync_expired_rejected(void **state)
{
    (void)state;
    tf_tls_ctx *ck = ctx_of("expired", 1, "localhost");
    refused(ck, TF_ERR_TLS_VERIFY, X509_V_ERR_CERT_HAS_EXPIRED, "expired");
    tf_tls_ctx_free(ck);
}

static void test_tls_sync_wrong_name_refused_by_client(void **state)
{
    (void)state;
    tf_tls_ctx *sk = ctx_of("server", 1, NULL), *ck = ctx_of("client", 1, "wrong.example");
    tf_tcp_config scfg = cfg_of(sk, 10000), ccfg = cfg_of(ck, 10000);
    char addr[TF_ADDRSTR_LEN];
    srv_run r;
    srv_start(&r, &scfg, addr, sizeof addr);
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
    srv_stop(&r);
    tf_tls_ctx_free(sk);
    tf_tls_ctx_free(ck);
}

static void test_tls_sync_plaintext_client_rejected_in_deadline(void **state)
{
    (void)state;
    tf_tls_ctx *sk = ctx_of("server", 1, NULL);
    tf_tcp_config scfg = cfg_of(sk, 300);
    char addr[TF_ADDRSTR_LEN];
    srv_run r;
    srv_start(&r, &scfg, addr, sizeof addr);
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
    srv_stop(&r);
    tf_tls_ctx_free(sk);
}

/* ---------------------------------------------------------------- async */

static void test_tls_async_server_and_client(void **state)
{
    (void)state;
    int fds = tu_fd_count();
    tf_tls_ctx *sk = ctx_of("server", 1, NULL), *ck = ctx_of("client", 1, "127.0.0.1");
    tf_tcp_config scfg = cfg_of(sk, 10000), ccfg = cfg_of(ck, 10000);
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
    tf_tls_ctx *bad = ctx_of("client", 1, "wrong.example");
    tf_tcp_config bcfg = cfg_of(bad, 10000);
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

/* ---------------------------------------------------------------- openssl as the peer */

/* openssl s_client with a client certificate against a sync TLS server: it sends the magic and a
 * frame from its stdin; the server answers with its magic and an echo. */
static void test_tls_openssl_s_client_talks_to_server(void **state)
{
    (void)state;
    tf_tls_ctx *sk = ctx_of("server", 1, NULL);
    tf_tcp_config scfg = cfg_of(sk, 10000);
    char addr[TF_ADDRSTR_LEN];
    srv_run r;
    srv_start(&r, &scfg, addr, sizeof addr);
    char out[128];
    snprintf(out, sizeof out, "%s/s_client.out", dir);
    /* the magic, a frame "hello", then stay until the echo came (the output grows to 13 bytes) */
    sh("cd %s && ( ( printf 'UNIF\\000\\000\\000\\005hello'; i=0; while [ $i -lt 3000 ] && "
       "[ $(stat -c %%s s_client.out 2>/dev/null || echo 0) -lt 13 ]; do sleep 0.01; "
       "i=$((i+1)); done ) | openssl s_client -connect %s -quiet -verify_return_error "
       "-CAfile ca.pem -cert client.pem -key client.key -verify_hostname localhost "
       "> s_client.out 2>s_client.err & )",
       dir, addr);
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
    srv_stop(&r);
    (void)out;
    tf_tls_ctx_free(sk);
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
    tf_tls_ctx *sk = ctx_of("server", 1, NULL);
    tf_tcp_config scfg = cfg_of(sk, 10000);
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
        tf_tls_ctx *ck = ctx_of(who[i], 1, "localhost");
        tf_tcp_config ccfg = cfg_of(ck, 10000);
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
    tf_tls_ctx *ck = ctx_of("client", 1, "localhost");
    tf_tcp_config ccfg = cfg_of(ck, 10000);
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
    tf_tls_ctx *sk = ctx_of("server", 1, NULL);
    tf_tcp_config scfg = cfg_of(sk, 10000);
    char addr[TF_ADDRSTR_LEN];
    srv_run r;
    srv_start(&r, &scfg, addr, sizeof addr);
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
    tf_tls_ctx *ck = ctx_of("client", 1, "localhost");
    tf_tcp_config ccfg = cfg_of(ck, 10000);
    tf_sync_conn *c = NULL;
    assert_int_equal(tf_sync_connect(addr, &ccfg, &c, NULL, NULL), TF_OK);
    pthread_join(r.th, NULL);
    assert_int_equal(r.err, TF_OK);
    tu_exchange(c, r.c);
    tf_sync_conn_free(c);
    srv_stop(&r);
    tf_tls_ctx_free(ck);
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
    snprintf(out, sizeof out, "%s/s_server.out", dir);
    unlink(out);
    sh("cd %s && ( ( printf UNIF; i=0; while [ $i -lt 3000 ] && "
       "[ $(stat -c %%s s_server.out 2>/dev/null || echo 0) -lt 13 ]; do sleep 0.01; "
       "i=$((i+1)); done ) | openssl s_server -accept 127.0.0.1:%d -naccept 1 -quiet "
       "-cert server.pem -key server.key -CAfile ca.pem -Verify 1 -verify_return_error "
       "> s_server.out 2>s_server.err & )",
       dir, port);
    tf_tls_ctx *ck = ctx_of("client", 1, "127.0.0.1");
    tf_tcp_config ccfg = cfg_of(ck, 10000);
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
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, tp->fd),
                     0);
    tp->k[0] = ctx_of("server", 1, NULL);
    tp->k[1] = ctx_of("client", 1, "localhost");
    for (int i = 0; i < 2; i++) {
        tf_tcp_config c = cfg_of(tp->k[i], 10000);
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
    struct pollfd q = {.fd = tp->fd[side],
                       .events = (short)(((w & TF_WANT_READ) ? POLLIN : 0) |
                                         ((w & TF_WANT_WRITE) ? POLLOUT : 0)),
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

static const tu_ioc_adapter tls_adapter = {"tls", tls_open, tls_wait, tls_close_write, tls_close,
                                           EPIPE, NULL, tls_free};

int main(void)
{
    const struct CMUnitTest tests[] = {
        TIO_TEST(test_tls_ctx_errors_name_the_file),
        TIO_TEST(test_tls_sync_mutual_exchange_and_identity),
        TIO_TEST(test_tls_sync_no_client_cert_rejected),
        TIO_TEST(test_tls_sync_wrong_ca_rejected),
        TIO_TEST(test_tls_sync_expired_rejected),
        TIO_TEST(test_tls_sync_wrong_name_refused_by_client),
        TIO_TEST(test_tls_sync_plaintext_client_rejected_in_deadline),
        TIO_TEST(test_tls_async_server_and_client),
        TIO_TEST(test_tls_openssl_s_client_talks_to_server),
        TIO_TEST(test_tls_async_server_rejects_like_wrong_magic),
        TIO_TEST(test_tls_sync_reset_mid_handshake),
        TIO_TEST(test_tls_openssl_s_server_with_library_client),
    };
    int rc = cmocka_run_group_tests_name("tls", tests, group_setup, NULL);
    struct CMUnitTest conf[TU_IOC_NCASES];
    size_t n = tu_ioc_tests(&tls_adapter, conf, tio_watchdog_setup, tio_watchdog_teardown);
    rc += _cmocka_run_group_tests("tls conformance", conf, n, NULL, NULL);
    for (size_t i = 0; i < n; i++)
        free((char *)(uintptr_t)conf[i].name);
    group_teardown(NULL);
    return rc;
}
