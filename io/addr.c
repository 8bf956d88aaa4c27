/* io/addr.c -- "host:port" and "unix:" addresses: the pure parsers, resolution, formatting
 * (tcp.h, SPEC.md 9.2).
 *
 * tf_hostport_parse is pure (no syscall, no allocation, no locale): it is fuzzed on its own
 * (fuzz/fuzz_addr.c). Resolution never touches the resolver for a numeric host or the wildcard,
 * and answers a name under ".invalid" at once (RFC 6761 6.4) instead of asking DNS. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

#include "internal.h"

/* ---------------------------------------------------------------- parsing */

/* The input as a message quotes it: at most QUOTE_MAX bytes, bytes outside printable ASCII and
 * the double quote shown as '?', "..." when cut. */
#define QUOTE_MAX 96

static void quote(char *dst, const char *text)
{
    size_t i = 0;
    for (; text[i] != '\0' && i < QUOTE_MAX; i++) {
        unsigned char ch = (unsigned char)text[i];
        dst[i] = ch >= 0x20 && ch < 0x7f && ch != '"' ? (char)ch : '?';
    }
    if (text[i] != '\0') {
        memcpy(dst + i, "...", 3);
        i += 3;
    }
    dst[i] = '\0';
}

static tf_err bad(tf_errmsg *msg, const char *text, const char *fault)
{
    char q[QUOTE_MAX + 4];
    quote(q, text);
    tf__errmsg(msg, "bad address \"%s\": %s", q, fault);
    return TF_ERR_BAD_ADDRESS;
}

/* Digits only, at least one, value <= 65535 (leading zeros allowed). */
static tf_err parse_port(const char *text, const char *p, uint16_t *port, tf_errmsg *msg)
{
    if (*p == '\0')
        return bad(msg, text, "empty port after ':'");
    unsigned long v = 0;
    for (const char *q = p; *q != '\0'; q++) {
        if (*q < '0' || *q > '9')
            return bad(msg, text, "the port is not a number (digits only)");
        v = v * 10u + (unsigned long)(*q - '0');
        if (v > 65535u)
            v = 65536u; /* saturate: any longer digit string stays above the limit */
    }
    if (v > 65535u)
        return bad(msg, text, "the port is above 65535");
    *port = (uint16_t)v;
    return TF_OK;
}

tf_err tf_hostport_parse(const char *text, tf_hostport *out, tf_errmsg *msg)
{
    if (!text || !out) {
        tf__errmsg(msg, "bad address: %s is NULL", text ? "the result" : "the text");
        return TF_ERR_INVALID_ARGUMENT;
    }
    memset(out, 0, sizeof *out);
    if (tf_addr_is_unix(text))
        return bad(msg, text, "a unix: address has no host:port (a host named unix: \"unix.\")");

    const char *host, *host_end, *port;
    if (text[0] == '[') {
        host = text + 1;
        host_end = strchr(host, ']');
        if (!host_end)
            return bad(msg, text, "unclosed '['");
        if (host_end == host)
            return bad(msg, text, "empty brackets (write [::] for the wildcard)");
        if (host_end[1] == '\0')
            return bad(msg, text, "missing ':' before the port");
        if (host_end[1] != ':')
            return bad(msg, text, "text after ']' other than \":port\"");
        port = host_end + 2;
        out->bracketed = true;
    } else {
        host = text;
        const char *colon = strrchr(text, ':');
        if (!colon)
            return bad(msg, text, "missing ':' before the port");
        host_end = colon;
        port = colon + 1;
    }

    size_t hl = (size_t)(host_end - host);
    size_t colons = 0;
    for (const char *p = host; p < host_end; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch == '[' || ch == ']')
            return bad(msg, text, "stray bracket in the host");
        if (ch <= 0x20 || ch >= 0x7f)
            return bad(msg, text, "a space, control character or non-ASCII byte in the host");
        colons += ch == ':';
    }
    if (out->bracketed && colons < 2)
        return bad(msg, text, "brackets hold an IPv6 address");
    if (!out->bracketed && colons == 1)
        return bad(msg, text,
                   "the host is neither a name nor an IPv6 address (write IPv6 as [addr]:port)");
    if (hl >= TF_HOST_MAX)
        return bad(msg, text, "the host is too long (at most 255 characters)");

    tf_err e = parse_port(text, port, &out->port, msg);
    if (e != TF_OK)
        return e;

    bool v6any = hl == 2 && host[0] == ':' && host[1] == ':';
    if (hl == 0 || (hl == 1 && host[0] == '*') || v6any) {
        out->wildcard = true; /* host stays "" */
    } else {
        memcpy(out->host, host, hl);
        out->host[hl] = '\0';
        out->wildcard = strcmp(out->host, "0.0.0.0") == 0;
    }
    tf__errmsg_clear(msg);
    return TF_OK;
}

/* ---------------------------------------------------------------- Unix-domain addresses */

static const char unix_prefix[] = "unix:";
#define UNIX_PREFIX_LEN (sizeof unix_prefix - 1)

bool tf_addr_is_unix(const char *text)
{
    return text && strncmp(text, unix_prefix, UNIX_PREFIX_LEN) == 0;
}

/* bad() for a text that may hold NUL bytes or lack its own: quote a NUL-terminated copy (NUL
 * bytes shown as '?'). */
static tf_err bad_n(tf_errmsg *msg, const char *text, size_t len, const char *fault)
{
    char t[QUOTE_MAX + 2];
    size_t n = len < QUOTE_MAX + 1 ? len : QUOTE_MAX + 1; /* one more than quoted: "..." */
    for (size_t i = 0; i < n; i++)
        t[i] = text[i] != '\0' ? text[i] : '\x01';
    t[n] = '\0';
    return bad(msg, t, fault);
}

tf_err tf_unix_addr_parse(const char *text, size_t len, tf_addr *out, tf_errmsg *msg)
{
    if (!text || !out) {
        tf__errmsg(msg, "bad address: %s is NULL", text ? "the result" : "the text");
        return TF_ERR_INVALID_ARGUMENT;
    }
    memset(out, 0, sizeof *out);
    if (len < UNIX_PREFIX_LEN || memcmp(text, unix_prefix, UNIX_PREFIX_LEN) != 0)
        return bad_n(msg, text, len, "a Unix-domain address starts with \"unix:\"");
    const char *body = text + UNIX_PREFIX_LEN;
    size_t bl = len - UNIX_PREFIX_LEN;
    bool abstract = bl > 0 && body[0] == '@';
    if (abstract) {
        body++;
        bl--;
    }
    if (bl == 0)
        return bad_n(msg, text, len,
                     abstract ? "empty abstract name after \"unix:@\""
                              : "empty path after \"unix:\" (unix:/path or unix:@name)");
    if (memchr(body, '\0', bl))
        return bad_n(msg, text, len,
                     abstract ? "a NUL byte in the abstract name" : "a NUL byte in the path");
    if (bl > TF_UNIX_PATH_MAX)
        return bad_n(msg, text, len,
                     abstract ? "the abstract name is too long (at most 107 bytes)"
                              : "the path is too long (at most 107 bytes: sun_path)");
    struct sockaddr_un *su = (struct sockaddr_un *)&out->ss;
    su->sun_family = AF_UNIX;
    /* A path keeps its NUL in the length (as getsockname reports it); an abstract name is
     * exactly its bytes after the leading NUL. */
    memcpy(su->sun_path + (abstract ? 1 : 0), body, bl);
    out->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + bl);
    tf__errmsg_clear(msg);
    return TF_OK;
}

/* ---------------------------------------------------------------- resolution */

static void put_v4(tf_addrlist *l, uint32_t host_order, uint16_t port)
{
    tf_addr *a = &l->a[l->n++];
    memset(a, 0, sizeof *a);
    struct sockaddr_in *s = (struct sockaddr_in *)&a->ss;
    s->sin_family = AF_INET;
    s->sin_port = htons(port);
    s->sin_addr.s_addr = htonl(host_order);
    a->len = (socklen_t)sizeof *s;
}

static void put_v6(tf_addrlist *l, const struct in6_addr *ip, uint16_t port)
{
    tf_addr *a = &l->a[l->n++];
    memset(a, 0, sizeof *a);
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)&a->ss;
    s->sin6_family = AF_INET6;
    s->sin6_port = htons(port);
    s->sin6_addr = *ip;
    a->len = (socklen_t)sizeof *s;
}

static bool family_ok(int fam, int family)
{
    return family == TF_FAMILY_ANY || (family == TF_FAMILY_V4 && fam == AF_INET) ||
           (family == TF_FAMILY_V6 && fam == AF_INET6);
}

static const char *family_name(int family)
{
    return family == TF_FAMILY_V4 ? "IPv4" : "IPv6";
}

/* Copy getaddrinfo's answers of the wanted family, in order, without duplicates, at most
 * TF_ADDRS_MAX, each with |port|. */
static void take(tf_addrlist *out, const struct addrinfo *res, int family, uint16_t port)
{
    for (const struct addrinfo *r = res; r && out->n < TF_ADDRS_MAX; r = r->ai_next) {
        if (!family_ok(r->ai_family, family) || r->ai_addrlen > sizeof out->a[0].ss)
            continue;
        if (r->ai_family == AF_INET && r->ai_addrlen < sizeof(struct sockaddr_in))
            continue;
        if (r->ai_family == AF_INET6 && r->ai_addrlen < sizeof(struct sockaddr_in6))
            continue;
        if (r->ai_family != AF_INET && r->ai_family != AF_INET6)
            continue;
        tf_addr a;
        memset(&a, 0, sizeof a);
        memcpy(&a.ss, r->ai_addr, r->ai_addrlen);
        a.len = r->ai_addrlen;
        if (a.ss.ss_family == AF_INET)
            ((struct sockaddr_in *)&a.ss)->sin_port = htons(port);
        else
            ((struct sockaddr_in6 *)&a.ss)->sin6_port = htons(port);
        bool dup = false;
        for (size_t i = 0; i < out->n && !dup; i++)
            dup = out->a[i].len == a.len && memcmp(&out->a[i].ss, &a.ss, a.len) == 0;
        if (!dup)
            out->a[out->n++] = a;
    }
}

/* A name under the special-use domain "invalid" (RFC 6761 6.4: never resolves; resolver APIs
 * should answer negatively at once). Case-insensitive, with or without the root's dot. */
static bool under_invalid(const char *host)
{
    size_t n = strlen(host);
    if (n > 0 && host[n - 1] == '.')
        n--;
    static const char tld[] = "invalid";
    const size_t tl = sizeof tld - 1;
    if (n < tl || strncasecmp(host + n - tl, tld, tl) != 0)
        return false;
    return n == tl || host[n - tl - 1] == '.';
}

/* Numeric host (IPv4 or IPv6, with an optional %scope): getaddrinfo with AI_NUMERICHOST, which
 * never asks the resolver. Returns 0 and *res, or the getaddrinfo error (EAI_NONAME: a name). */
static int numeric(const char *host, struct addrinfo **res)
{
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST;
    return getaddrinfo(host, NULL, &hints, res);
}

tf_err tf_addr_resolve(const char *text, int family, bool passive, tf_addrlist *out, tf_errmsg *msg)
{
    if (!text || !out) {
        tf__errmsg(msg, "bad address: %s is NULL", text ? "the result" : "the text");
        return TF_ERR_INVALID_ARGUMENT;
    }
    out->n = 0;
    if (family != TF_FAMILY_ANY && family != TF_FAMILY_V4 && family != TF_FAMILY_V6) {
        tf__errmsg(msg, "bad address family %d (TF_FAMILY_ANY, _V4 or _V6)", family);
        return TF_ERR_INVALID_ARGUMENT;
    }
    (void)passive;
    if (tf_addr_is_unix(text)) {
        tf_err ue = tf_unix_addr_parse(text, strlen(text), &out->a[0], msg);
        if (ue == TF_OK)
            out->n = 1;
        return ue;
    }
    tf_hostport hp;
    tf_err e = tf_hostport_parse(text, &hp, msg);
    if (e != TF_OK)
        return e;

    if (hp.wildcard && hp.host[0] == '\0') {
        /* "", "*", "::", "[::]": bind every address (dual-stack [::] for ANY), or connect to
         * this machine. */
        if (passive) {
            if (family == TF_FAMILY_V4)
                put_v4(out, INADDR_ANY, hp.port);
            else
                put_v6(out, &in6addr_any, hp.port);
        } else {
            if (family != TF_FAMILY_V4)
                put_v6(out, &in6addr_loopback, hp.port);
            if (family != TF_FAMILY_V6)
                put_v4(out, INADDR_LOOPBACK, hp.port);
        }
        tf__errmsg_clear(msg);
        return TF_OK;
    }
    if (hp.wildcard) { /* "0.0.0.0": the IPv4 wildcard */
        if (family == TF_FAMILY_V6)
            return bad(msg, text, "no IPv6 address (0.0.0.0 is IPv4)");
        put_v4(out, passive ? INADDR_ANY : INADDR_LOOPBACK, hp.port);
        tf__errmsg_clear(msg);
        return TF_OK;
    }

    struct addrinfo *res = NULL;
    int g = numeric(hp.host, &res);
    if (g == 0) {
        take(out, res, family, hp.port);
        freeaddrinfo(res);
        if (out->n == 0) {
            char why[48];
            snprintf(why, sizeof why, "no %s address (the host is numeric)", family_name(family));
            return bad(msg, text, why);
        }
        tf__errmsg_clear(msg);
        return TF_OK;
    }
    if (g != EAI_NONAME) {
        char why[160];
        snprintf(why, sizeof why, "%s", gai_strerror(g));
        return bad(msg, text, why);
    }

    /* No host name has a colon: this was meant as IPv6 and is not one. Never ask DNS. */
    if (strchr(hp.host, ':'))
        return bad(msg, text, "the host is not an IPv6 address");
    if (under_invalid(hp.host))
        return bad(msg, text, "a name under .invalid never resolves (RFC 6761)");

    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = family == TF_FAMILY_V4   ? AF_INET
                      : family == TF_FAMILY_V6 ? AF_INET6
                                               : AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = passive ? AI_PASSIVE : 0;
    g = getaddrinfo(hp.host, NULL, &hints, &res);
    if (g != 0) {
        char why[192];
        if (g == EAI_SYSTEM) {
            char eb[128];
            snprintf(why, sizeof why, "resolving the name: %s", strerror_r(errno, eb, sizeof eb));
        } else if (family != TF_FAMILY_ANY) {
            snprintf(why, sizeof why, "no %s address: %s", family_name(family), gai_strerror(g));
        } else {
            snprintf(why, sizeof why, "%s", gai_strerror(g));
        }
        return bad(msg, text, why);
    }
    take(out, res, family, hp.port);
    freeaddrinfo(res);
    if (out->n == 0) {
        if (family == TF_FAMILY_ANY)
            return bad(msg, text, "the name has no IPv4 or IPv6 address");
        char why[48];
        snprintf(why, sizeof why, "the name has no %s address", family_name(family));
        return bad(msg, text, why);
    }
    tf__errmsg_clear(msg);
    return TF_OK;
}

bool tf_addr_is_numeric(const char *text)
{
    if (tf_addr_is_unix(text)) {
        tf_addr a;
        return tf_unix_addr_parse(text, strlen(text), &a, NULL) == TF_OK;
    }
    tf_hostport hp;
    if (!text || tf_hostport_parse(text, &hp, NULL) != TF_OK)
        return false;
    if (hp.wildcard)
        return true;
    struct addrinfo *res = NULL;
    if (numeric(hp.host, &res) != 0)
        return false;
    freeaddrinfo(res);
    return true;
}

/* ---------------------------------------------------------------- formatting */

/* "unix:/path", "unix:@name" or "unix:" (unnamed). */
static tf_err format_unix(const tf_addr *a, char *buf, size_t len)
{
    const size_t base = offsetof(struct sockaddr_un, sun_path);
    const struct sockaddr_un *su = (const struct sockaddr_un *)&a->ss;
    /* A path that fills sun_path (108 bytes, no NUL: legal on Linux) comes back from
     * getsockname / getpeername / accept with its length counted one past the struct (the
     * kernel counts a NUL it could not store): the path is then all of sun_path. */
    bool full = a->len == (socklen_t)sizeof(struct sockaddr_un) + 1 && su->sun_path[0] != '\0';
    if (a->len < (socklen_t)base || (a->len > (socklen_t)sizeof(struct sockaddr_un) && !full))
        return TF_ERR_INVALID_ARGUMENT;
    size_t pl = full ? sizeof su->sun_path : (size_t)a->len - base; /* bytes of sun_path in use */
    bool abstract = pl > 0 && su->sun_path[0] == '\0';
    const char *p = su->sun_path + (abstract ? 1 : 0);
    size_t n;
    if (abstract) {
        n = pl - 1;
    } else {
        n = strnlen(su->sun_path, pl); /* a path ends at its NUL (or fills sun_path) */
    }
    /* A (relative) path that starts with '@' is written "./@...": "unix:@" means abstract. */
    bool dot = !abstract && n > 0 && p[0] == '@';
    size_t need = UNIX_PREFIX_LEN + (abstract ? 1 : 0) + (dot ? 2 : 0) + n + 1;
    if (need > len) {
        if (len > 0)
            buf[0] = '\0';
        return TF_ERR_BUFFER_TOO_SMALL;
    }
    char *o = buf;
    memcpy(o, unix_prefix, UNIX_PREFIX_LEN);
    o += UNIX_PREFIX_LEN;
    if (abstract)
        *o++ = '@';
    if (dot) {
        *o++ = '.';
        *o++ = '/';
    }
    for (size_t i = 0; i < n; i++)
        *o++ = p[i] != '\0' ? p[i] : '@'; /* only an abstract name can hold a NUL */
    *o = '\0';
    return TF_OK;
}

tf_err tf_addr_format(const tf_addr *a, char *buf, size_t len)
{
    if (!a || !buf)
        return TF_ERR_INVALID_ARGUMENT;
    if (len > 0)
        buf[0] = '\0';
    if (a->ss.ss_family == AF_UNIX)
        return format_unix(a, buf, len);
    char ip[INET6_ADDRSTRLEN + 16];
    unsigned port;
    bool v6 = false;
    if (a->ss.ss_family == AF_INET && a->len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)&a->ss;
        if (!inet_ntop(AF_INET, &s->sin_addr, ip, sizeof ip))
            return TF_ERR_INVALID_ARGUMENT;
        port = ntohs(s->sin_port);
    } else if (a->ss.ss_family == AF_INET6 && a->len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)&a->ss;
        port = ntohs(s->sin6_port);
        if (IN6_IS_ADDR_V4MAPPED(&s->sin6_addr)) {
            if (!inet_ntop(AF_INET, &s->sin6_addr.s6_addr[12], ip, sizeof ip))
                return TF_ERR_INVALID_ARGUMENT;
        } else {
            if (!inet_ntop(AF_INET6, &s->sin6_addr, ip, sizeof ip))
                return TF_ERR_INVALID_ARGUMENT;
            if (s->sin6_scope_id != 0) {
                size_t n = strlen(ip);
                snprintf(ip + n, sizeof ip - n, "%%%u", (unsigned)s->sin6_scope_id);
            }
            v6 = true;
        }
    } else {
        return TF_ERR_INVALID_ARGUMENT;
    }
    int n = snprintf(buf, len, v6 ? "[%s]:%u" : "%s:%u", ip, port);
    if (n < 0 || (size_t)n >= len) {
        if (len > 0)
            buf[0] = '\0';
        return TF_ERR_BUFFER_TOO_SMALL;
    }
    return TF_OK;
}
