/* tls/tls.c -- the TLS 1.3 transport of the seam (io/xport.h) over OpenSSL 3, and its context
 * (tcpframe/tls.h, SPEC 9.11).
 *
 * OpenSSL's non-blocking API over the connection's socket, through a BIO of our own that makes
 * the library's syscalls (tf__sys_read, tf__sys_sendmsg with MSG_NOSIGNAL: no SIGPIPE, and the
 * test hooks reach TLS too). The connection's loop (poll or epoll) does the waiting: every call
 * here returns at once, and wants() says which event OpenSSL waits for.
 *
 * Reads are drained-exact (io/xport.h): SSL_read is repeated until the buffer is full or OpenSSL
 * needs the socket, so a short read means nothing is buffered in OpenSSL either. Writes copy up
 * to one record's worth into a staging buffer and seal it with SSL_write; a record the socket did
 * not take stays staged (counted as written, like bytes in the kernel's buffer) and goes out
 * with flush, retried with the same bytes as OpenSSL requires.
 *
 * The sync connection reads and writes from two threads: one mutex serialises every call on the
 * SSL object (none of them blocks). */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "internal.h"
#include "tcpframe/tls.h"
#include "xport.h"

#define STAGE_CAP 16384 /* one TLS record's plaintext */

struct tf_tls_ctx {
    tf__xport_maker maker; /* first: io/ opens transports through it */
    SSL_CTX *ssl;
    char *peer_name;
    bool name_is_ip;
    bool verify;
    unsigned char alpn[256]; /* wire format: length byte + name */
    size_t alpn_len;
};

typedef struct tls_x {
    pthread_mutex_t mu;
    SSL *ssl;
    int fd;
    unsigned rd_need, wr_need, hs_need; /* TF_WANT_* of the last AGAIN per direction */
    long rd_sticky;                     /* the read side's end (1 EOF, -1 failure): 0 none */
    int rd_sticky_os;
    tf_err fail; /* the TLS reason of the first failure (TF_OK none) */
    int fail_os;
    uint8_t stage[STAGE_CAP];
    size_t staged; /* bytes sealed and counted as written, not yet taken by the socket */
    bool hs_finished; /* the handshake returned DONE (later "in init" is post-handshake) */
    bool fin_pending; /* shutdown_wr met a full socket (or a post-handshake message under way):
                       * our close_notify waits, and the FIN after it (flush sends both;
                       * out_pending says so; wr_need what it waits for) */
    bool has_peer;
    tf_tls_peer peer;
} tls_x;

/* ---------------------------------------------------------------- the socket BIO */

/* Made by the first connection; a failure (no memory) is retried by the next one, so a
 * transient allocation failure does not leave TLS broken for the process. */
static _Atomic(BIO_METHOD *) bio_method;
static pthread_mutex_t bio_mu = PTHREAD_MUTEX_INITIALIZER;

static int bio_write(BIO *b, const char *buf, int len)
{
    int fd = (int)(intptr_t)BIO_get_data(b);
    struct iovec v = {.iov_base = (void *)(uintptr_t)buf, .iov_len = (size_t)len};
    struct msghdr mh = {0};
    mh.msg_iov = &v;
    mh.msg_iovlen = 1;
    BIO_clear_retry_flags(b);
    ssize_t n = tf__sys_sendmsg(fd, &mh, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        BIO_set_retry_write(b);
    return (int)n;
}

static int bio_read(BIO *b, char *buf, int len)
{
    int fd = (int)(intptr_t)BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t n = tf__sys_read(fd, buf, (size_t)len);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        BIO_set_retry_read(b);
    return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b, (void)num, (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static BIO_METHOD *bio_get_method(void)
{
    BIO_METHOD *m = atomic_load_explicit(&bio_method, memory_order_acquire);
    if (m)
        return m;
    pthread_mutex_lock(&bio_mu);
    m = atomic_load_explicit(&bio_method, memory_order_relaxed);
    if (!m) {
        m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "tcpframe");
        if (m && BIO_meth_set_write(m, bio_write) && BIO_meth_set_read(m, bio_read) &&
            BIO_meth_set_ctrl(m, bio_ctrl) && BIO_meth_set_create(m, bio_create)) {
            atomic_store_explicit(&bio_method, m, memory_order_release);
        } else {
            BIO_meth_free(m);
            m = NULL;
        }
    }
    pthread_mutex_unlock(&bio_mu);
    return m;
}

/* ---------------------------------------------------------------- errors */

/* OpenSSL's packed reason code as a positive int (library and reason; fits 31 bits). */
static int packed(unsigned long e)
{
    return (int)(ERR_PACK(ERR_GET_LIB(e), 0, ERR_GET_REASON(e)) & 0x7fffffffUL);
}

const char *tf_tls_strerror(tf_err err, int os_err)
{
    if (err == TF_ERR_TLS_VERIFY)
        return X509_verify_cert_error_string(os_err);
    if (err == TF_ERR_TLS) {
        /* OpenSSL loads its reason strings when a context is made: a reason asked for before
         * (a test, a log line of another process's code) would read "unknown" (attack 6). */
        OPENSSL_init_ssl(OPENSSL_INIT_LOAD_SSL_STRINGS | OPENSSL_INIT_LOAD_CRYPTO_STRINGS, NULL);
        const char *s = ERR_reason_error_string((unsigned long)os_err);
        return s ? s : "unknown TLS failure";
    }
    if (os_err != 0)
        return strerror(os_err);
    return tf_strerror(err);
}

/* Classify a failed call (|r| its return, under mu): the tf_err and os_err to report, the TLS
 * reason recorded for failure(). AGAIN answers set *need and return TF_OK. */
static tf_err classify(tls_x *t, int r, unsigned *need, int *os_err)
{
    int se = SSL_get_error(t->ssl, r);
    int sys = errno;
    if (se == SSL_ERROR_WANT_READ) {
        *need = TF_WANT_READ;
        return TF_OK;
    }
    if (se == SSL_ERROR_WANT_WRITE) {
        *need = TF_WANT_WRITE;
        return TF_OK;
    }
    if (se == SSL_ERROR_ZERO_RETURN) {
        *os_err = 0;
        return TF_ERR_CLOSED; /* the peer's close_notify: a clean end */
    }
    unsigned long e = ERR_peek_last_error();
    tf_err out;
    int os;
    if (se == SSL_ERROR_SYSCALL && e == 0) {
        out = sys != 0 ? TF_ERR_IO : TF_ERR_TRUNCATED;
        os = sys;
    } else if (ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED &&
               SSL_get_verify_result(t->ssl) != X509_V_OK) {
        out = TF_ERR_TLS_VERIFY;
        os = (int)SSL_get_verify_result(t->ssl);
    } else {
        out = TF_ERR_TLS;
        os = e != 0 ? packed(e) : EPROTO;
    }
    ERR_clear_error();
    if (t->fail == TF_OK && (out == TF_ERR_TLS || out == TF_ERR_TLS_VERIFY)) {
        t->fail = out;
        t->fail_os = os;
    }
    *os_err = os;
    return out;
}

/* A tf_io answer for a failure classified as |e|: EOF for CLOSED, else FAIL with an errno
 * (EPROTO for TLS reasons: failure() gives the real one). */
static long io_answer(tf_err e, int os, int *os_err)
{
    if (e == TF_ERR_CLOSED)
        return 0;
    if (e == TF_ERR_TLS || e == TF_ERR_TLS_VERIFY || e == TF_ERR_TRUNCATED || os == 0)
        os = EPROTO;
    *os_err = os;
    return TF_IO_FAIL;
}

/* ---------------------------------------------------------------- the transport */

static long x_read(void *ctx, uint8_t *buf, size_t len, int *os_err)
{
    tls_x *t = ctx;
    pthread_mutex_lock(&t->mu);
    long ans;
    if (t->rd_sticky != 0) {
        ans = t->rd_sticky == 1 ? 0 : TF_IO_FAIL;
        if (ans == TF_IO_FAIL)
            *os_err = t->rd_sticky_os;
        pthread_mutex_unlock(&t->mu);
        return ans;
    }
    size_t got = 0;
    ans = TF_IO_AGAIN;
    t->rd_need = TF_WANT_READ;
    while (got < len) {
        size_t n = 0;
        ERR_clear_error();
        errno = 0;
        int r = SSL_read_ex(t->ssl, buf + got, len - got, &n);
        if (r == 1) {
            got += n;
            continue;
        }
        unsigned need = 0;
        int os = 0;
        tf_err e = classify(t, r, &need, &os);
        if (e == TF_ERR_TRUNCATED && t->fail == TF_OK) {
            /* The socket's EOF without close_notify: OpenSSL's own reason for it, so that it
             * reads the same whichever way OpenSSL reported it. */
            t->fail = e = TF_ERR_TLS;
            t->fail_os = os = packed(ERR_PACK(ERR_LIB_SSL, 0, SSL_R_UNEXPECTED_EOF_WHILE_READING));
        }
        if (e == TF_OK) {
            t->rd_need = need;
            ans = TF_IO_AGAIN;
        } else {
            /* The end is final: every later read answers it again, without OpenSSL (bytes
             * returned first come now, the end at the next call). */
            ans = io_answer(e, os, &os);
            t->rd_sticky = ans == 0 ? 1 : -1;
            t->rd_sticky_os = os;
            if (got == 0 && ans == TF_IO_FAIL)
                *os_err = os;
        }
        break;
    }
    pthread_mutex_unlock(&t->mu);
    return got > 0 ? (long)got : ans;
}

/* Seal what is staged (under mu): 0 when the socket took it, else a tf_io answer. */
static long push(tls_x *t, int *os_err)
{
    while (t->staged > 0) {
        size_t n = 0;
        ERR_clear_error();
        errno = 0;
        int r = SSL_write_ex(t->ssl, t->stage, t->staged, &n);
        if (r == 1) {
            if (n < t->staged)
                memmove(t->stage, t->stage + n, t->staged - n);
            t->staged -= n;
            continue;
        }
        unsigned need = 0;
        int os = 0;
        tf_err e = classify(t, r, &need, &os);
        if (e == TF_OK) {
            t->wr_need = need;
            return TF_IO_AGAIN;
        }
        long a = io_answer(e == TF_ERR_CLOSED ? TF_ERR_IO : e, os ? os : EPIPE, os_err);
        return a;
    }
    return 0;
}

/* Our close_notify (under mu): sealed and sent, or, when the socket is full, held by OpenSSL
 * (fin_pending: SSL_shutdown is called again until it went). Then the FIN -- never before the
 * close_notify left, or the peer reads an EOF without it (TF_ERR_TLS, not CLOSED). 0 when the
 * FIN went (or, |force|, whatever became of the close_notify); TF_IO_AGAIN (wr_need) while the
 * close_notify waits for room; TF_IO_FAIL (*os_err) when the FIN could not be sent. */
static long send_close(tls_x *t, bool force, int *os_err)
{
    ERR_clear_error();
    errno = 0;
    unsigned need = 0; /* what the held close_notify waits for (0: it went, or cannot) */
    int r = 1;
    if (t->hs_finished && SSL_in_init(t->ssl)) {
        /* A post-handshake message under way (TLS 1.3 session tickets: the server's still to
         * write, or the client's half read): OpenSSL refuses to shut down then ("shutdown while
         * in init") and only the FIN would go -- the peer reads an EOF without close_notify,
         * TF_ERR_TLS (the TLS soak's lost half-closes). Finish that message first: the
         * handshake step moves only its records. */
        r = SSL_do_handshake(t->ssl);
        int se = r == 1 ? SSL_ERROR_NONE : SSL_get_error(t->ssl, r);
        need = se == SSL_ERROR_WANT_READ ? TF_WANT_READ : se == SSL_ERROR_WANT_WRITE ? TF_WANT_WRITE : 0;
    }
    if (r == 1) {
        /* First call: sends the alert (-1 with WANT_WRITE if the socket took it not whole);
         * later calls, with the alert still held: send what is left of it (0 once it went). */
        r = SSL_shutdown(t->ssl);
        if (r < 0 && SSL_get_error(t->ssl, r) == SSL_ERROR_WANT_WRITE)
            need = TF_WANT_WRITE;
    }
    ERR_clear_error();
    t->fin_pending = need != 0 && !force;
    if (t->fin_pending) {
        t->wr_need = need;
        return TF_IO_AGAIN;
    }
    if (shutdown(t->fd, SHUT_WR) != 0) {
        *os_err = errno;
        return TF_IO_FAIL;
    }
    return 0;
}

static long x_flush(void *ctx, int *os_err)
{
    tls_x *t = ctx;
    pthread_mutex_lock(&t->mu);
    long r = push(t, os_err);
    if (r == 0 && t->fin_pending)
        r = send_close(t, false, os_err);
    pthread_mutex_unlock(&t->mu);
    return r;
}

static bool x_out_pending(void *ctx)
{
    tls_x *t = ctx;
    pthread_mutex_lock(&t->mu);
    bool p = t->staged > 0 || t->fin_pending;
    pthread_mutex_unlock(&t->mu);
    return p;
}

/* Stage and seal the pieces record by record; stop when the socket is full (the last record
 * stays staged and counts as written). */
static long x_writev(void *ctx, const struct iovec *v, int cnt, int *os_err)
{
    tls_x *t = ctx;
    pthread_mutex_lock(&t->mu);
    long r = push(t, os_err);
    if (r != 0) {
        pthread_mutex_unlock(&t->mu);
        return r;
    }
    size_t moved = 0;
    int i = 0;
    size_t off = 0;
    while (i < cnt) {
        while (i < cnt && t->staged < STAGE_CAP) {
            size_t k = v[i].iov_len - off;
            if (k > STAGE_CAP - t->staged)
                k = STAGE_CAP - t->staged;
            memcpy(t->stage + t->staged, (const uint8_t *)v[i].iov_base + off, k);
            t->staged += k;
            off += k;
            if (off == v[i].iov_len) {
                i++;
                off = 0;
            }
        }
        if (t->staged == 0)
            break;
        size_t sealed = t->staged;
        r = push(t, os_err);
        if (r == 0 || r == TF_IO_AGAIN)
            moved += sealed; /* taken, or staged: written either way */
        if (r != 0)
            break;
    }
    pthread_mutex_unlock(&t->mu);
    if (moved > 0)
        return (long)moved;
    return r == 0 ? TF_IO_AGAIN : r;
}

static long x_write(void *ctx, const tf_iov *iov, size_t cnt, int *os_err)
{
    if (iov == NULL || cnt < 1 || cnt > 2) {
        *os_err = EINVAL;
        return TF_IO_FAIL;
    }
    struct iovec v[2];
    for (size_t i = 0; i < cnt; i++) {
        v[i].iov_base = (void *)(uintptr_t)iov[i].base;
        v[i].iov_len = iov[i].len;
    }
    return x_writev(ctx, v, (int)cnt, os_err);
}

/* Our close_notify, then the FIN. A socket too full for the close_notify keeps both back
 * (out_pending; flush sends them when there is room) and answers 0: the connections flush
 * before they wait. Called again while they are held (a connection that cannot wait longer),
 * it sends the FIN at once, with whatever of the close_notify the socket takes. */
static int x_shutdown_wr(void *ctx)
{
    tls_x *t = ctx;
    pthread_mutex_lock(&t->mu);
    int os = 0;
    (void)push(t, &os);
    bool again = t->fin_pending;
    long r = send_close(t, again, &os);
    pthread_mutex_unlock(&t->mu);
    return r == TF_IO_FAIL ? (os ? os : EIO) : 0;
}

static unsigned x_wants(void *ctx, unsigned dir)
{
    tls_x *t = ctx;
    pthread_mutex_lock(&t->mu);
    unsigned w = dir == TF_WANT_READ ? t->rd_need : dir == TF_WANT_WRITE ? t->wr_need : t->hs_need;
    pthread_mutex_unlock(&t->mu);
    return w ? w : (dir ? dir : TF_WANT_READ);
}

static tf_err x_failure(void *ctx, int *os_err)
{
    tls_x *t = ctx;
    pthread_mutex_lock(&t->mu);
    if (t->fail == TF_OK) {
        /* A write failed (EPIPE, ECONNRESET) before the peer's alert was read: read it now, so
         * the reason is the peer's ("certificate required"), not the broken pipe. */
        uint8_t tmp[256];
        size_t n = 0;
        ERR_clear_error();
        errno = 0;
        int r = SSL_read_ex(t->ssl, tmp, sizeof tmp, &n);
        if (r != 1) {
            unsigned need = 0;
            int os = 0;
            (void)classify(t, r, &need, &os);
        }
    }
    tf_err e = t->fail;
    *os_err = t->fail_os;
    pthread_mutex_unlock(&t->mu);
    return e;
}

/* The peer's identity, once the handshake finished (under mu). */
static void take_peer(tls_x *t)
{
    X509 *cert = SSL_get0_peer_certificate(t->ssl);
    const unsigned char *proto = NULL;
    unsigned plen = 0;
    SSL_get0_alpn_selected(t->ssl, &proto, &plen);
    if (proto && plen < sizeof t->peer.alpn) {
        memcpy(t->peer.alpn, proto, plen);
        t->peer.alpn[plen] = '\0';
    }
    if (!cert)
        return;
    t->has_peer = true;
    t->peer.verified = SSL_get_verify_result(t->ssl) == X509_V_OK &&
                       (SSL_get_verify_mode(t->ssl) & SSL_VERIFY_PEER) != 0;
    BIO *m = BIO_new(BIO_s_mem());
    if (m) {
        X509_NAME_print_ex(m, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253);
        int n = BIO_read(m, t->peer.subject, (int)sizeof t->peer.subject - 1);
        t->peer.subject[n > 0 ? n : 0] = '\0';
        BIO_free(m);
    }
    GENERAL_NAMES *sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    size_t at = 0;
    for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        char item[300] = "";
        if (g->type == GEN_DNS) {
            snprintf(item, sizeof item, "DNS:%.*s", ASN1_STRING_length(g->d.dNSName),
                     (const char *)ASN1_STRING_get0_data(g->d.dNSName));
        } else if (g->type == GEN_IPADD) {
            char ip[INET6_ADDRSTRLEN] = "?";
            int l = ASN1_STRING_length(g->d.iPAddress);
            const unsigned char *d = ASN1_STRING_get0_data(g->d.iPAddress);
            if (l == 4 || l == 16)
                inet_ntop(l == 4 ? AF_INET : AF_INET6, d, ip, sizeof ip);
            snprintf(item, sizeof item, "IP:%s", ip);
        } else {
            continue;
        }
        int w = snprintf(t->peer.sans + at, sizeof t->peer.sans - at, "%s%s", at ? ", " : "", item);
        if (w < 0 || (size_t)w >= sizeof t->peer.sans - at)
            break;
        at += (size_t)w;
    }
    GENERAL_NAMES_free(sans);
    unsigned int dl = 0;
    X509_digest(cert, EVP_sha256(), t->peer.sha256, &dl);
}

static tf_step x_handshake(void *ctx, tf_err *err, int *os_err)
{
    tls_x *t = ctx;
    pthread_mutex_lock(&t->mu);
    ERR_clear_error();
    errno = 0;
    int r = SSL_do_handshake(t->ssl);
    tf_step st = TF_DONE;
    if (r == 1) {
        t->hs_finished = true;
        take_peer(t);
    } else {
        unsigned need = 0;
        tf_err e = classify(t, r, &need, os_err);
        if (e == TF_OK) {
            t->hs_need = need;
            st = TF_AGAIN;
        } else {
            *err = e == TF_ERR_CLOSED ? TF_ERR_TRUNCATED : e;
            st = TF_ERROR;
        }
    }
    pthread_mutex_unlock(&t->mu);
    return st;
}

static void x_free(void *ctx)
{
    tls_x *t = ctx;
    SSL_free(t->ssl);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

/* An end met behind the bytes a read returned waits for the next read (rd_sticky), and the
 * socket may never become readable again (the peer keeps its TCP side open): the connection
 * must read again without waiting. OpenSSL holds no record after a short read (x_read reads
 * until WANT_READ), but SSL_pending is asked too. */
static bool x_in_pending(void *ctx)
{
    tls_x *t = ctx;
    pthread_mutex_lock(&t->mu);
    bool p = t->rd_sticky != 0 || SSL_pending(t->ssl) > 0;
    pthread_mutex_unlock(&t->mu);
    return p;
}

static const tf__xport_ops tls_ops = {
    .name = "tls",
    .read = x_read,
    .write = x_write,
    .writev = x_writev,
    .shutdown_wr = x_shutdown_wr,
    .out_pending = x_out_pending,
    .flush = x_flush,
    .failure = x_failure,
    .wants = x_wants,
    .handshake = x_handshake,
    .free = x_free,
    .in_pending = x_in_pending,
};

static tf_err x_open(const tf__xport_maker *mk, int fd, bool server, const tf__xport_ops **ops,
                     void **out, int *os_err)
{
    const tf_tls_ctx *k = (const tf_tls_ctx *)(const void *)mk;
    BIO_METHOD *bm = bio_get_method();
    if (!bm)
        return TF_ERR_NOMEM;
    tls_x *t = tf__calloc(1, sizeof *t);
    if (!t)
        return TF_ERR_NOMEM;
    if (pthread_mutex_init(&t->mu, NULL) != 0) {
        free(t);
        return TF_ERR_NOMEM;
    }
    t->fd = fd;
    ERR_clear_error();
    t->ssl = SSL_new(k->ssl);
    BIO *b = t->ssl ? BIO_new(bm) : NULL;
    if (!b) {
        unsigned long e = ERR_peek_last_error();
        *os_err = e ? packed(e) : 0;
        SSL_free(t->ssl);
        pthread_mutex_destroy(&t->mu);
        free(t);
        ERR_clear_error();
        return TF_ERR_NOMEM;
    }
    BIO_set_data(b, (void *)(intptr_t)fd);
    SSL_set_bio(t->ssl, b, b);
    bool ok = true;
    if (server) {
        SSL_set_accept_state(t->ssl);
    } else {
        SSL_set_connect_state(t->ssl);
        if (k->peer_name && !k->name_is_ip) {
            ok = SSL_set1_host(t->ssl, k->peer_name) == 1 &&
                 SSL_set_tlsext_host_name(t->ssl, k->peer_name) == 1;
        } else if (k->peer_name) {
            ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), k->peer_name) == 1;
        }
        if (ok && k->alpn_len)
            ok = SSL_set_alpn_protos(t->ssl, k->alpn, (unsigned)k->alpn_len) == 0;
    }
    if (!ok) {
        unsigned long e = ERR_peek_last_error();
        *os_err = e ? packed(e) : EINVAL;
        x_free(t);
        ERR_clear_error();
        return TF_ERR_TLS;
    }
    t->rd_need = TF_WANT_READ;
    t->wr_need = TF_WANT_WRITE;
    t->hs_need = server ? TF_WANT_READ : TF_WANT_WRITE;
    *ops = &tls_ops;
    *out = t;
    return TF_OK;
}

/* ---------------------------------------------------------------- context */

void tf_tls_config_init(tf_tls_config *c)
{
    memset(c, 0, sizeof *c);
    c->size = sizeof *c;
    c->verify_peer = 1;
}

/* A server offers nothing but checks the client's ALPN list for ours. */
static int alpn_select(SSL *s, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)s;
    const tf_tls_ctx *k = arg;
    unsigned char *sel = NULL;
    if (SSL_select_next_proto(&sel, outlen, k->alpn, (unsigned)k->alpn_len, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* msg = "<what> <path>: <OpenSSL's reason>" for the error on top of the queue. */
static tf_err file_error(tf_errmsg *msg, const char *what, const char *path)
{
    unsigned long e = ERR_peek_last_error();
    const char *why = e ? ERR_reason_error_string(e) : NULL;
    if (!why && errno)
        why = strerror(errno);
    tf__errmsg(msg, "%s %s: %s", what, path, why ? why : "unusable");
    ERR_clear_error();
    return TF_ERR_TLS;
}

tf_err tf_tls_ctx_new(const tf_tls_config *cfg, tf_tls_ctx **out, tf_errmsg *msg)
{
    tf__errmsg_clear(msg);
    if (out)
        *out = NULL;
    if (!cfg || !out) {
        tf__errmsg(msg, "tls: %s is NULL", cfg ? "out" : "cfg");
        return TF_ERR_INVALID_ARGUMENT;
    }
    if (cfg->size < sizeof *cfg) {
        tf__errmsg(msg, "tls: size %u: call tf_tls_config_init first", (unsigned)cfg->size);
        return TF_ERR_INVALID_ARGUMENT;
    }
    if (cfg->verify_peer != 0 && cfg->verify_peer != 1) {
        tf__errmsg(msg, "tls: verify_peer %d: 0 or 1", cfg->verify_peer);
        return TF_ERR_INVALID_ARGUMENT;
    }
    if (!cfg->cert_file != !cfg->key_file) {
        tf__errmsg(msg, "tls: %s without %s", cfg->cert_file ? "cert_file" : "key_file",
                   cfg->cert_file ? "key_file" : "cert_file");
        return TF_ERR_INVALID_ARGUMENT;
    }
    if (cfg->verify_peer && !cfg->ca_file && !cfg->ca_dir) {
        tf__errmsg(msg, "tls: verify_peer needs ca_file or ca_dir");
        return TF_ERR_INVALID_ARGUMENT;
    }
    size_t al = cfg->alpn ? strlen(cfg->alpn) : 0;
    if (cfg->alpn && (al == 0 || al > 255)) {
        tf__errmsg(msg, "tls: alpn \"%s\": 1 to 255 bytes", cfg->alpn);
        return TF_ERR_INVALID_ARGUMENT;
    }
    tf_tls_ctx *k = tf__calloc(1, sizeof *k);
    if (!k)
        return TF_ERR_NOMEM;
    k->maker.open = x_open;
    k->verify = cfg->verify_peer == 1;
    if (al) {
        k->alpn[0] = (unsigned char)al;
        memcpy(k->alpn + 1, cfg->alpn, al);
        k->alpn_len = al + 1;
    }
    if (cfg->peer_name) {
        unsigned char tmp[16];
        k->name_is_ip = inet_pton(AF_INET, cfg->peer_name, tmp) == 1 ||
                        inet_pton(AF_INET6, cfg->peer_name, tmp) == 1;
        k->peer_name = strdup(cfg->peer_name);
        if (!k->peer_name) {
            free(k);
            return TF_ERR_NOMEM;
        }
    }
    ERR_clear_error();
    tf_err rc = TF_OK;
    k->ssl = SSL_CTX_new(TLS_method());
    if (!k->ssl) {
        rc = TF_ERR_NOMEM;
        goto fail;
    }
    SSL_CTX_set_min_proto_version(k->ssl, TLS1_3_VERSION);
    SSL_CTX_set_num_tickets(k->ssl, 0); /* no resumption: nothing to send after the handshake */
    SSL_CTX_set_session_cache_mode(k->ssl, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_mode(k->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_clear_mode(k->ssl, SSL_MODE_AUTO_RETRY);
    if (cfg->cert_file) {
        errno = 0;
        if (SSL_CTX_use_certificate_chain_file(k->ssl, cfg->cert_file) != 1) {
            rc = file_error(msg, "cert_file", cfg->cert_file);
            goto fail;
        }
        errno = 0;
        if (SSL_CTX_use_PrivateKey_file(k->ssl, cfg->key_file, SSL_FILETYPE_PEM) != 1) {
            rc = file_error(msg, "key_file", cfg->key_file);
            goto fail;
        }
        if (SSL_CTX_check_private_key(k->ssl) != 1) {
            rc = file_error(msg, "key_file", cfg->key_file);
            goto fail;
        }
    }
    if (cfg->ca_file || cfg->ca_dir) {
        errno = 0;
        if (cfg->ca_file && SSL_CTX_load_verify_file(k->ssl, cfg->ca_file) != 1) {
            rc = file_error(msg, "ca_file", cfg->ca_file);
            goto fail;
        }
        if (cfg->ca_dir && SSL_CTX_load_verify_dir(k->ssl, cfg->ca_dir) != 1) {
            rc = file_error(msg, "ca_dir", cfg->ca_dir);
            goto fail;
        }
    }
    SSL_CTX_set_verify(
        k->ssl, k->verify ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_NONE,
        NULL);
    if (k->alpn_len)
        SSL_CTX_set_alpn_select_cb(k->ssl, alpn_select, k);
    *out = k;
    return TF_OK;
fail:
    ERR_clear_error();
    tf_tls_ctx_free(k);
    return rc;
}

void tf_tls_ctx_free(tf_tls_ctx *k)
{
    if (!k)
        return;
    SSL_CTX_free(k->ssl); /* reference counted: live connections keep it */
    free(k->peer_name);
    free(k);
}

/* ---------------------------------------------------------------- the peer */

static tf_err peer_of(const tf__xport *x, tf_tls_peer *out)
{
    if (x->ops != &tls_ops || !x->ctx)
        return TF_ERR_BAD_STATE;
    tls_x *t = x->ctx;
    pthread_mutex_lock(&t->mu);
    bool has = t->has_peer;
    if (has)
        *out = t->peer;
    pthread_mutex_unlock(&t->mu);
    return has ? TF_OK : TF_ERR_BAD_STATE;
}

tf_err tf_tls_peer_sync(const tf_sync_conn *c, tf_tls_peer *out)
{
    if (!c || !out)
        return TF_ERR_INVALID_ARGUMENT;
    return peer_of(tf__sync_conn_xport(c), out);
}

tf_err tf_tls_peer_async(const tf_async_conn *c, tf_tls_peer *out)
{
    if (!c || !out)
        return TF_ERR_INVALID_ARGUMENT;
    return peer_of(tf__async_conn_xport(c), out);
}

void tf_tls_fingerprint_hex(const tf_tls_peer *p, char buf[65])
{
    for (size_t i = 0; i < 32; i++)
        snprintf(buf + 2 * i, 3, "%02x", p->sha256[i]);
    buf[64] = '\0';
}
