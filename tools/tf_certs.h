/* tools/tf_certs.h -- throwaway certificates for the tools' TLS runs (tfdemo's exchange,
 * tfsoak -T), made with OpenSSL's API so that no openssl command is needed. Not a library
 * part: compiled into the tools that use it. */
#ifndef TCPFRAME_TOOLS_TF_CERTS_H
#define TCPFRAME_TOOLS_TF_CERTS_H

#include <stdbool.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "tcpframe/err.h"
#include "tcpframe/tls.h"

/* A P-256 key and a certificate for |cn| (|san| NULL: a CA, else its subjectAltName, e.g.
 * "IP:127.0.0.1"), signed by |ca| / |ca_key| (NULL: self-signed), valid from a minute ago for an
 * hour, written to DIR/NAME.pem and DIR/NAME.key. With |k_out| / |x_out| the caller keeps the
 * key and certificate (a CA signs the others with them) and frees them.
 *   true   written
 *   false  OpenSSL or the file system failed (nothing kept) */
bool tfc_make_cert(const char *dir, const char *name, const char *cn, const char *san, X509 *ca,
                   EVP_PKEY *ca_key, long serial, EVP_PKEY **k_out, X509 **x_out);

/* A TLS context with DIR/NAME.pem and .key (|name| NULL: no certificate), trusting DIR/ca.pem,
 * checking the peer's name |peer_name| (NULL: none).
 *   the context   made
 *   NULL          tf_tls_ctx_new refused it: *msg says why */
tf_tls_ctx *tfc_tls_ctx(const char *dir, const char *name, const char *peer_name, tf_errmsg *msg);

#endif /* TCPFRAME_TOOLS_TF_CERTS_H */
