/* tcpframe/tls.h -- TLS 1.3 under the framing (OpenSSL 3), mutual authentication by default
 * (SPEC 9.11).
 *
 * An optional adapter: libtcpframe_tls.a (tls/, `make tls`; `make install` installs it and this
 * header as <tcpframe/tls.h>), linked with libtcpframe.a (it uses the static library's
 * internals) and -lssl -lcrypto: `pkg-config --static --libs tcpframe-tls`, or CMake's
 * tcpframe::tls. The plain library never needs OpenSSL. Make a context from a config once,
 * point tf_tcp_config.tls at it, and every server, client and connection made with that config
 * runs the TLS handshake first and then the magic exchange inside TLS, under the one
 * handshake_timeout_ms; frames then travel as TLS application data (uniflow's framing inside).
 *
 *   tf_tls_config t;
 *   tf_tls_config_init(&t);
 *   t.cert_file = "server.pem"; t.key_file = "server.key"; t.ca_file = "ca.pem";
 *   tf_tls_ctx *ctx;
 *   if (tf_tls_ctx_new(&t, &ctx, &msg) != TF_OK) die(msg.text);
 *   cfg.tls = ctx;                        // tf_tcp_config: then tf_sync_server_init(.., &cfg, ..)
 *
 * Roles: a server (sync or async) takes the TLS server side; tf_sync_connect, the async client
 * and the *_from_fd calls the client side. The socket of a TLS connection (tf_sync_conn_fd)
 * carries TLS records: poll it if you like, never read or write it yourself.
 *
 * Failures. A handshake that fails is reported with TF_ERR_TLS (os_err: OpenSSL's packed reason
 * code, e.g. the peer's alert or "peer did not return a certificate") or TF_ERR_TLS_VERIFY
 * (os_err: the X.509 verify result, e.g. 10 "certificate has expired", 62 "hostname mismatch");
 * a server counts and reports it through on_reject like a wrong magic. tf_tls_strerror turns
 * the pair into OpenSSL's text. An EOF without the peer's close_notify is an error (TF_ERR_TLS,
 * "unexpected eof while reading"): a peer cannot end the stream early unnoticed.
 *
 * Threads: a context is immutable once made and may be shared by any number of threads and
 * connections; it must outlive every server, client and connection made with a config that
 * points at it.
 */
#ifndef TCPFRAME_TLS_H
#define TCPFRAME_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tcpframe/async.h"
#include "tcpframe/err.h"
#include "tcpframe/export.h"
#include "tcpframe/sync.h"
#include "tcpframe/tcp.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What a context is made of. Strings are borrowed for the call to tf_tls_ctx_new only. */
typedef struct tf_tls_config {
    uint32_t size;         /* sizeof(tf_tls_config), set by init */
    const char *cert_file; /* PEM: our certificate, then its intermediates; NULL: none (a client
                            * without one: a server that requires one refuses it) */
    const char *key_file;  /* PEM private key of cert_file; required with it */
    const char *ca_file;   /* PEM bundle of the CAs that vouch for the peer; NULL: none */
    const char *ca_dir;    /* a hashed CA directory (openssl rehash); NULL: none */
    int verify_peer;       /* 1 (default): the peer must present a certificate that verifies
                            * against ca_file / ca_dir (a server asks the client for one); 0: a
                            * server asks for none and a client accepts any server */
    const char *peer_name; /* client: the name (DNS, or an IP address) the server's certificate
                            * must carry in its subjectAltName; NULL: the chain is checked, the
                            * name is not */
    const char *alpn;      /* an ALPN protocol, e.g. "uniflow": a client offers it; a server
                            * refuses a client that offers others only (a client that offers
                            * none is not asked); NULL: none */
} tf_tls_config;

/* The defaults: nothing set, verify_peer 1. Cannot fail; c must not be NULL. */
TF_API void tf_tls_config_init(tf_tls_config *c);

/* Make a context from |cfg|: TLS 1.3 only, no session tickets, the certificate chain and key
 * loaded and matched, the CAs loaded. Every file is read now.
 *   TF_OK                    *out is the context (free with tf_tls_ctx_free)
 *   TF_ERR_INVALID_ARGUMENT  NULL argument; a key without a certificate or the other way round;
 *                            verify_peer 1 without ca_file or ca_dir; verify_peer not 0/1;
 *                            an alpn longer than 255 bytes (msg names the field)
 *   TF_ERR_TLS               a file OpenSSL could not use: msg is "<field> <path>: <OpenSSL's
 *                            reason>" ("key_file k.pem: key values mismatch")
 *   TF_ERR_NOMEM             no memory */
TF_API tf_err tf_tls_ctx_new(const tf_tls_config *cfg, tf_tls_ctx **out, tf_errmsg *msg);

/* Free a context (NULL: no-op). Connections made with it keep what they need of it. */
TF_API void tf_tls_ctx_free(tf_tls_ctx *ctx);

/* OpenSSL's text for a TLS failure: |err| TF_ERR_TLS_VERIFY gives the X.509 verify text of
 * |os_err|, TF_ERR_TLS the reason text of the packed code |os_err|; any other err gives
 * strerror(os_err) when os_err is set, else tf_strerror(err). Never NULL; static strings
 * (thread-safe). */
TF_API const char *tf_tls_strerror(tf_err err, int os_err);

/* The peer's identity, taken when the handshake finished. */
#define TF_TLS_TEXT_LEN 512
typedef struct tf_tls_peer {
    bool verified;                 /* its chain verified against our CAs (verify_peer 1) */
    char subject[TF_TLS_TEXT_LEN]; /* RFC 2253, "CN=client,O=test" */
    char sans[TF_TLS_TEXT_LEN];    /* subjectAltNames, "DNS:a.example, IP:127.0.0.1" ("" none) */
    uint8_t sha256[32];            /* SHA-256 of the certificate (DER) */
    char alpn[256];                /* the ALPN protocol agreed on ("" none) */
} tf_tls_peer;

/* The TLS peer of a handshaken connection. Any thread (the identity does not change).
 *   TF_OK                    *out filled
 *   TF_ERR_BAD_STATE         not a TLS connection, or the peer presented no certificate
 *   TF_ERR_INVALID_ARGUMENT  NULL */
TF_API tf_err tf_tls_peer_sync(const tf_sync_conn *c, tf_tls_peer *out);
TF_API tf_err tf_tls_peer_async(const tf_async_conn *c, tf_tls_peer *out);

/* The fingerprint as 64 lowercase hex digits and a NUL into buf[65]. */
TF_API void tf_tls_fingerprint_hex(const tf_tls_peer *p, char buf[65]);

#ifdef __cplusplus
}
#endif
#endif /* TCPFRAME_TLS_H */
