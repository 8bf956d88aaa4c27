/* tools/tf_certs.c -- throwaway certificates for the tools' TLS runs (tools/tf_certs.h). */
#include <stdio.h>

#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "tf_certs.h"

/* DIR/NAME.pem (the certificate) and DIR/NAME.key. */
static bool write_pem(const char *dir, const char *name, EVP_PKEY *k, X509 *x)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s.pem", dir, name);
    FILE *f = fopen(path, "w");
    bool ok = f && PEM_write_X509(f, x) == 1;
    if (f && fclose(f) != 0)
        ok = false;
    snprintf(path, sizeof path, "%s/%s.key", dir, name);
    f = ok ? fopen(path, "w") : NULL;
    ok = f && PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) == 1;
    if (f && fclose(f) != 0)
        ok = false;
    return ok;
}

static bool add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    bool ok = e && X509_add_ext(x, e, -1) == 1;
    X509_EXTENSION_free(e);
    return ok;
}

bool tfc_make_cert(const char *dir, const char *name, const char *cn, const char *san, X509 *ca,
                   EVP_PKEY *ca_key, long serial, EVP_PKEY **k_out, X509 **x_out)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    bool ok = k && x && X509_set_version(x, 2) == 1 &&
              ASN1_INTEGER_set(X509_get_serialNumber(x), serial) == 1 &&
              X509_gmtime_adj(X509_getm_notBefore(x), -60) &&
              X509_gmtime_adj(X509_getm_notAfter(x), 3600) && X509_set_pubkey(x, k) == 1 &&
              X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                                         (const unsigned char *)cn, -1, -1, 0) == 1 &&
              X509_set_issuer_name(x, X509_get_subject_name(ca ? ca : x)) == 1;
    if (ok && !san)
        ok = add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE") &&
             add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign") &&
             add_ext(x, x, NID_subject_key_identifier, "hash");
    else if (ok)
        ok = add_ext(x, ca, NID_basic_constraints, "critical,CA:FALSE") &&
             add_ext(x, ca, NID_authority_key_identifier, "keyid") &&
             add_ext(x, ca, NID_subject_alt_name, san);
    ok = ok && X509_sign(x, ca_key ? ca_key : k, EVP_sha256()) > 0 && write_pem(dir, name, k, x);
    if (ok && k_out) {
        *k_out = k;
        *x_out = x;
        return true;
    }
    EVP_PKEY_free(k);
    X509_free(x);
    return ok;
}

tf_tls_ctx *tfc_tls_ctx(const char *dir, const char *name, const char *peer_name, tf_errmsg *msg)
{
    char cert[256], key[256], ca[256];
    snprintf(cert, sizeof cert, "%s/%s.pem", dir, name ? name : "");
    snprintf(key, sizeof key, "%s/%s.key", dir, name ? name : "");
    snprintf(ca, sizeof ca, "%s/ca.pem", dir);
    tf_tls_config t;
    tf_tls_config_init(&t);
    t.cert_file = name ? cert : NULL;
    t.key_file = name ? key : NULL;
    t.ca_file = ca;
    t.peer_name = peer_name;
    tf_tls_ctx *k = NULL;
    return tf_tls_ctx_new(&t, &k, msg) == TF_OK ? k : NULL;
}
