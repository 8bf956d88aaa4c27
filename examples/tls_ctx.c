/* examples/tls_ctx.c -- the TLS layer (tcpframe/tls.h, libtcpframe_tls.a; README "TLS 1.3")
 * linked from an installed tcpframe, with no certificate at hand:
 *
 *   1. a default tf_tls_config (verify_peer 1, no CA) is refused with TF_ERR_INVALID_ARGUMENT;
 *   2. verify_peer 0 and no files make a context (a client that accepts any server);
 *   3. a TLS client with that context, given a peer that answers its ClientHello with plain
 *      text (one end of a socketpair), fails the handshake with TF_ERR_TLS and OpenSSL's reason;
 *   4. tf_tls_strerror gives the X.509 text of a verify result.
 * Exits 0 when every outcome is the documented one. The TLS archive goes with the static
 * library (it uses its internal transport seam) and OpenSSL:
 *
 *   cc tls_ctx.c $(pkg-config --cflags --static --libs tcpframe-tls) -o tls_ctx
 *   CMake: target_link_libraries(tls_ctx PRIVATE tcpframe::tls)
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <tcpframe/sync.h>
#include <tcpframe/tls.h>

static int failed(const char *what, tf_err got, const char *text)
{
    fprintf(stderr, "tls_ctx: %s: got %s (%s)\n", what, tf_err_name(got), text);
    return 1;
}

int main(void)
{
    tf_tls_config t;
    tf_tls_ctx *ctx = NULL;
    tf_errmsg msg;

    /* 1. verify_peer 1 (the default) needs ca_file or ca_dir. */
    tf_tls_config_init(&t);
    tf_err e = tf_tls_ctx_new(&t, &ctx, &msg);
    if (e != TF_ERR_INVALID_ARGUMENT || ctx != NULL)
        return failed("default config", e, msg.text);
    printf("default config refused: %s\n", msg.text);

    /* 2. No files, no verification: a context. */
    t.verify_peer = 0;
    e = tf_tls_ctx_new(&t, &ctx, &msg);
    if (e != TF_OK)
        return failed("verify_peer 0", e, msg.text);

    /* 3. The peer answers with something that is not TLS. Its end takes our ClientHello into
     * its socket buffer and is never read; its write side is shut, so the handshake ends at
     * once (the handshake timeout is only a watchdog). */
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        return perror("tls_ctx: socketpair"), tf_tls_ctx_free(ctx), 1;
    static const char reply[] = "HTTP/1.0 400 Bad Request\r\n\r\n";
    if (write(sv[1], reply, sizeof reply - 1) != (ssize_t)(sizeof reply - 1) ||
        shutdown(sv[1], SHUT_WR) != 0)
        return perror("tls_ctx: write"), tf_tls_ctx_free(ctx), 1;
    tf_tcp_config cfg;
    tf_tcp_config_init(&cfg);
    cfg.tls = ctx;
    cfg.handshake_timeout_ms = 10000;
    tf_sync_conn *c = NULL;
    int os_err = 0;
    e = tf_sync_conn_from_fd(sv[0], &cfg, &c, &os_err, &msg); /* closes sv[0] on error */
    close(sv[1]);
    if (e != TF_ERR_TLS || c != NULL) {
        tf_sync_conn_free(c);
        tf_tls_ctx_free(ctx);
        return failed("handshake with a plain-text peer", e, msg.text);
    }
    printf("plain-text peer refused: %s\n", tf_tls_strerror(e, os_err));
    tf_tls_ctx_free(ctx);

    /* 4. 10 is X509_V_ERR_CERT_HAS_EXPIRED. */
    const char *text = tf_tls_strerror(TF_ERR_TLS_VERIFY, 10);
    if (strcmp(text, "certificate has expired") != 0)
        return failed("tf_tls_strerror(TF_ERR_TLS_VERIFY, 10)", TF_ERR_TLS_VERIFY, text);
    printf("verify result 10: %s\n", text);
    return 0;
}
