/* tests/tu_tls.c -- what the TLS tests share (tests/tu_tls.h): certificates made with the
 * openssl CLI in a scratch directory, contexts and configs, a sync TLS server on a thread. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tu_sync.h"
#include "tu_tls.h"

char tu_tls_dir[64];

void tu_tls_sh(const char *fmt, ...)
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

const char *tu_tls_path(const char *name)
{
    static char buf[8][128];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 128, "%s/%s", tu_tls_dir, name);
    return p;
}

/* A key and a certificate NAME signed by CA, CN and SAN given, valid for DAYS (-1: expired
 * yesterday). */
static void make_cert(const char *name, const char *ca, const char *cn, const char *san, int days)
{
    tu_tls_sh("cd %s && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
              "-keyout %s.key -out %s.csr -subj /CN=%s 2>/dev/null >/dev/null",
              tu_tls_dir, name, name, cn);
    tu_tls_sh("cd %s && printf 'subjectAltName=%s\\n' > %s.ext", tu_tls_dir, san, name);
    tu_tls_sh("cd %s && openssl x509 -req -in %s.csr -CA %s.pem -CAkey %s.key -CAcreateserial "
              "-days %d -extfile %s.ext -out %s.pem 2>/dev/null >/dev/null",
              tu_tls_dir, name, ca, ca, days, name, name);
}

int tu_tls_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    snprintf(tu_tls_dir, sizeof tu_tls_dir, "/tmp/tf-tls-XXXXXX");
    if (!mkdtemp(tu_tls_dir))
        return -1;
    for (int i = 0; i < 2; i++) {
        const char *ca = i ? "ca2" : "ca";
        tu_tls_sh("cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
                  "-keyout %s.key -out %s.pem -subj /CN=%s -days 2 2>/dev/null >/dev/null",
                  tu_tls_dir, ca, ca, ca);
    }
    make_cert("server", "ca", "server", "DNS:localhost,IP:127.0.0.1", 2);
    make_cert("client", "ca", "client", "DNS:client.example", 2);
    make_cert("expired", "ca", "expired", "DNS:client.example", -1);
    make_cert("stranger", "ca2", "stranger", "DNS:client.example", 2);
    return 0;
}

int tu_tls_teardown(void **state)
{
    (void)state;
    tu_tls_sh("rm -rf %s", tu_tls_dir);
    return 0;
}

/* A context: cert NAME (NULL: none), our CA, verify, peer name. */
tf_tls_ctx *tu_tls_ctx(const char *name, int verify, const char *peer_name)
{
    tf_tls_config t;
    tf_tls_config_init(&t);
    char cert[128], key[128];
    if (name) {
        snprintf(cert, sizeof cert, "%s/%s.pem", tu_tls_dir, name);
        snprintf(key, sizeof key, "%s/%s.key", tu_tls_dir, name);
        t.cert_file = cert;
        t.key_file = key;
    }
    t.ca_file = tu_tls_path("ca.pem");
    t.verify_peer = verify;
    t.peer_name = peer_name;
    tf_tls_ctx *k = NULL;
    tf_errmsg msg;
    tf_err e = tf_tls_ctx_new(&t, &k, &msg);
    if (e != TF_OK)
        fail_msg("tf_tls_ctx_new: %s", msg.text);
    return k;
}

tf_tcp_config tu_tls_cfg(tf_tls_ctx *k, int64_t hs_ms)
{
    tf_tcp_config c;
    tf_tcp_config_init(&c);
    c.tls = k;
    c.handshake_timeout_ms = hs_ms;
    c.connect_retries = 0;
    c.connect_timeout_ms = 10000;
    return c;
}

/* ---------------------------------------------------------------- sync, mutual */

static void on_reject(void *arg, const char *peer, tf_err err, int os_err)
{
    (void)peer;
    tu_tls_srv *r = arg;
    r->rej_err = err;
    r->rej_os = os_err;
    atomic_fetch_add(&r->rejects, 1);
}

static void *accept_main(void *arg)
{
    tu_tls_srv *r = arg;
    tf_errmsg msg;
    r->err = tf_sync_server_accept(r->s, &r->c, NULL, &msg);
    return NULL;
}

void tu_tls_srv_start(tu_tls_srv *r, const tf_tcp_config *cfg, char *addr, size_t len)
{
    memset(r, 0, sizeof *r);
    atomic_init(&r->rejects, 0);
    r->s = tu_listen("127.0.0.1", cfg, addr, len);
    tf_sync_server_on_reject(r->s, on_reject, r);
    assert_int_equal(pthread_create(&r->th, NULL, accept_main, r), 0);
}

void tu_tls_srv_stop(tu_tls_srv *r)
{
    tf_sync_server_shutdown(r->s);
    pthread_join(r->th, NULL);
    tf_sync_conn_free(r->c);
    tf_sync_server_free(r->s);
}
