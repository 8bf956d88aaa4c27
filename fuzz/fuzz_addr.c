/* Target: tf_hostport_parse + tf_unix_addr_parse + tf_addr_format */
/* fuzz_addr -- the "host:port" parser (tcp.h, SPEC 9.2) over arbitrary text, and the formatter
 * over arbitrary socket addresses. Input: the whole input is the text (cut at its first NUL); its
 * first 24 bytes are also the material of one socket address for the formatter (byte 0 picks
 * IPv4, IPv6, IPv4-mapped IPv6 or IPv6 with a scope id; then port, address, scope).
 *
 * The whole input (NUL bytes included) is also given to tf_unix_addr_parse, and byte 0 of the
 * formatter's material may pick a Unix-domain address (a path or abstract name made of the
 * input's bytes, or an unnamed one).
 *
 * Oracles:
 *  - pure: the parse allocates nothing (sanitizer malloc hook), leaves errno alone, and gives
 *    the same answer and message twice;
 *  - a small independent reference parser accepts exactly the same texts, with the same host and
 *    port;
 *  - accepted: host shorter than TF_HOST_MAX, no bracket, space or control character in it;
 *    wildcard iff host "" or "0.0.0.0"; re-serialised ("[v6]:port", "host:port", ":port") it
 *    parses back to the same host, port and wildcard; a v6 host also round-trips bare
 *    ("v6:port", split at the last colon);
 *  - refused: BAD_ADDRESS, the message starts `bad address "` + the input as quoted (printable
 *    ASCII kept, others '?', cut at 96 with "...") + `": `, and is NUL-terminated in the buffer;
 *  - format: TF_ADDRSTR_LEN always suffices; the text parses back to the same port and a host
 *    that inet_pton reads as the same address; one byte less than needed is BUFFER_TOO_SMALL;
 *  - unix: tf_unix_addr_parse is pure as above and accepts exactly "unix:" + an optional '@' +
 *    1..107 bytes without NUL (a reference check); the address is the one built by hand; it
 *    formats back to the input byte for byte; a refusal quotes the input (NUL bytes as '?');
 *    tf_hostport_parse refuses every "unix:" text; a formatted path, abstract name or unnamed
 *    address parses back to the same bytes ("unix:" for the unnamed one, which is refused).
 *
 * The parser lives in io/addr.c with the resolver, which this target never calls (a name would
 * reach DNS): the io sources are compiled into this file so that the fuzz build needs no rule
 * of its own. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <string.h>
#include <sys/un.h>

#include "../io/addr.c"
#include "../io/errmsg.c"
#include "fuzz_common.h"

/* ---------------------------------------------------------------- allocation watch */

/* Present under ASan, MSan, TSan, LSan (gcc and clang); absent without a sanitizer runtime. */
int __sanitizer_install_malloc_and_free_hooks(void (*m)(const volatile void *, size_t),
                                              void (*f)(const volatile void *))
    __attribute__((weak));

static volatile int watching;
static volatile unsigned long allocs_seen;

FZ_NOCOV static void on_malloc(const volatile void *p, size_t n)
{
    (void)p;
    (void)n;
    if (watching)
        allocs_seen++;
}

FZ_NOCOV static void on_free(const volatile void *p)
{
    (void)p;
}

/* ---------------------------------------------------------------- reference parser */

typedef struct ref {
    int ok;
    char host[TF_HOST_MAX];
    unsigned port;
} ref;

FZ_NOCOV static int ref_host_char_ok(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != '[' && c != ']';
}

/* The grammar of tcp.h, written a second way (indices, no pointer arithmetic on the result). */
FZ_NOCOV static void ref_parse(const char *t, ref *r)
{
    size_t n = strlen(t), hs, he, ps;
    int br = 0;
    r->ok = 0;
    if (n >= 5 && t[0] == 'u' && t[1] == 'n' && t[2] == 'i' && t[3] == 'x' && t[4] == ':')
        return; /* a Unix-domain address, not host:port */
    if (n > 0 && t[0] == '[') {
        size_t j = 1;
        while (j < n && t[j] != ']')
            j++;
        if (j == n || j == 1 || j + 1 >= n || t[j + 1] != ':')
            return;
        hs = 1, he = j, ps = j + 2, br = 1;
    } else {
        size_t j = n;
        while (j > 0 && t[j - 1] != ':')
            j--;
        if (j == 0)
            return;
        hs = 0, he = j - 1, ps = j;
    }
    size_t colons = 0;
    for (size_t i = hs; i < he; i++) {
        if (!ref_host_char_ok((unsigned char)t[i]))
            return;
        colons += t[i] == ':';
    }
    if ((br && colons < 2) || (!br && colons == 1) || he - hs >= TF_HOST_MAX)
        return;
    if (ps >= n)
        return;
    unsigned long v = 0;
    for (size_t i = ps; i < n; i++) {
        if (t[i] < '0' || t[i] > '9')
            return;
        if (v <= 65535)
            v = v * 10 + (unsigned long)(t[i] - '0');
    }
    if (v > 65535)
        return;
    r->ok = 1;
    r->port = (unsigned)v;
    memcpy(r->host, t + hs, he - hs);
    r->host[he - hs] = 0;
    if (strcmp(r->host, "*") == 0 || strcmp(r->host, "::") == 0)
        r->host[0] = 0;
}

/* ---------------------------------------------------------------- oracles */

static tf_err parse_watched(const char *text, tf_hostport *hp, tf_errmsg *m)
{
    errno = 12345;
    allocs_seen = 0;
    watching = 1;
    tf_err e = tf_hostport_parse(text, hp, m);
    watching = 0;
    CHECK(errno == 12345);
    CHECK(allocs_seen == 0);
    return e;
}

FZ_NOCOV static void check_quoted(const char *text, const tf_errmsg *m)
{
    char want[TF_ERRMSG_LEN];
    size_t k = 0, i = 0;
    k += (size_t)snprintf(want, sizeof want, "bad address \"");
    for (; text[i] && i < 96; i++) {
        unsigned char c = (unsigned char)text[i];
        want[k++] = c >= 0x20 && c < 0x7f && c != '"' ? (char)c : '?';
    }
    if (text[i]) {
        memcpy(want + k, "...", 3);
        k += 3;
    }
    memcpy(want + k, "\": ", 4);
    CHECK(memchr(m->text, 0, sizeof m->text) != NULL);
    CHECK(strncmp(m->text, want, strlen(want)) == 0);
}

FZ_NOCOV static void check_reparse(const char *text2, const tf_hostport *hp)
{
    tf_hostport b;
    tf_errmsg m;
    tf_err e = parse_watched(text2, &b, &m);
    if (e != TF_OK)
        fprintf(stderr, "re-serialised \"%s\": %s\n", text2, m.text);
    CHECK(e == TF_OK);
    CHECK(strcmp(b.host, hp->host) == 0);
    CHECK(b.port == hp->port);
    CHECK(b.wildcard == hp->wildcard);
}

static void fuzz_parse(const char *text)
{
    tf_hostport a, a2;
    tf_errmsg m, m2;
    tf_err e = parse_watched(text, &a, &m);
    tf_err e2 = parse_watched(text, &a2, &m2);
    CHECK(e == e2);
    CHECK(strcmp(m.text, m2.text) == 0);

    ref r;
    ref_parse(text, &r);
    CHECK((e == TF_OK) == (r.ok == 1));
    if (e != TF_OK) {
        CHECK(e == TF_ERR_BAD_ADDRESS);
        check_quoted(text, &m);
        return;
    }
    CHECK(memcmp(&a, &a2, sizeof a) == 0);
    CHECK(m.text[0] == '\0');
    CHECK(a.port == r.port);
    CHECK(strcmp(a.host, r.host) == 0);
    CHECK(a.bracketed == (text[0] == '['));

    size_t hl = strlen(a.host);
    CHECK(hl < TF_HOST_MAX);
    for (size_t i = 0; i < hl; i++)
        CHECK(ref_host_char_ok((unsigned char)a.host[i]));
    CHECK(a.wildcard == (hl == 0 || strcmp(a.host, "0.0.0.0") == 0));

    char text2[TF_HOST_MAX + 16];
    if (hl == 0)
        snprintf(text2, sizeof text2, ":%u", a.port);
    else if (strchr(a.host, ':'))
        snprintf(text2, sizeof text2, "[%s]:%u", a.host, a.port);
    else
        snprintf(text2, sizeof text2, "%s:%u", a.host, a.port);
    check_reparse(text2, &a);
    if (strchr(a.host, ':')) {
        snprintf(text2, sizeof text2, "%s:%u", a.host, a.port);
        if (tf_addr_is_unix(text2)) { /* unbracketed, "unix:..." is a Unix address: refused */
            tf_hostport hp2;
            tf_errmsg mu;
            CHECK(parse_watched(text2, &hp2, &mu) == TF_ERR_BAD_ADDRESS);
        } else {
            check_reparse(text2, &a);
        }
    }
}

/* ---------------------------------------------------------------- Unix-domain addresses */

static tf_err unix_watched(const char *text, size_t len, tf_addr *a, tf_errmsg *m)
{
    errno = 12345;
    allocs_seen = 0;
    watching = 1;
    tf_err e = tf_unix_addr_parse(text, len, a, m);
    watching = 0;
    CHECK(errno == 12345);
    CHECK(allocs_seen == 0);
    return e;
}

/* The address by hand: sun_family, then the name at sun_path (+1 for an abstract one), len
 * the family's offset + 1 (the path's NUL or the abstract lead NUL) + the name's length. */
FZ_NOCOV static void ref_unix(tf_addr *a, int abstract, const char *name, size_t nl)
{
    memset(a, 0, sizeof *a);
    struct sockaddr_un *u = (struct sockaddr_un *)&a->ss;
    u->sun_family = AF_UNIX;
    memcpy(u->sun_path + (abstract ? 1 : 0), name, nl);
    a->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + nl);
}

static void fuzz_unix(const uint8_t *d, size_t n)
{
    const char *t = (const char *)d;
    tf_addr a, a2;
    tf_errmsg m, m2;
    tf_err e = unix_watched(t, n, &a, &m);
    tf_err e2 = unix_watched(t, n, &a2, &m2);
    CHECK(e == e2);
    CHECK(strcmp(m.text, m2.text) == 0);

    int prefix = n >= 5 && memcmp(t, "unix:", 5) == 0;
    int abstract = prefix && n > 5 && t[5] == '@';
    size_t off = prefix ? 5u + (abstract ? 1u : 0u) : 0u;
    size_t nl = prefix ? n - off : 0;
    int ok = prefix && nl >= 1 && nl <= TF_UNIX_PATH_MAX && !memchr(t + off, 0, nl);
    CHECK((e == TF_OK) == ok);
    if (!ok) {
        CHECK(e == TF_ERR_BAD_ADDRESS);
        char shown[1024];
        size_t k = n < sizeof shown - 1 ? n : sizeof shown - 1;
        for (size_t i = 0; i < k; i++)
            shown[i] = t[i] ? t[i] : '\x01';
        shown[k] = 0;
        check_quoted(shown, &m);
        tf_addr zero;
        memset(&zero, 0, sizeof zero);
        CHECK(memcmp(&a, &zero, sizeof a) == 0);
        return;
    }
    CHECK(m.text[0] == '\0');
    tf_addr want;
    ref_unix(&want, abstract, t + off, nl);
    CHECK(memcmp(&a, &want, sizeof a) == 0);
    char buf[TF_ADDRSTR_LEN];
    CHECK(tf_addr_format(&a, buf, sizeof buf) == TF_OK);
    CHECK(strlen(buf) == n && memcmp(buf, t, n) == 0);
    /* As a C string (the input had no NUL): host:port refuses it, resolve gives the address. */
    tf_hostport hp;
    CHECK(parse_watched(buf, &hp, &m) == TF_ERR_BAD_ADDRESS);
    CHECK(tf_addr_is_unix(buf));
}

/* A Unix-domain address for the formatter: kind 0 a path, 1 an abstract name, 2 unnamed; the
 * name's length from |sel| (1..107), its bytes from the input (NUL bytes made 'x'). */
static void fuzz_format_unix(const uint8_t *d, size_t n, int kind, unsigned sel)
{
    char name[TF_UNIX_PATH_MAX];
    size_t nl = 1 + sel % TF_UNIX_PATH_MAX;
    for (size_t i = 0; i < nl; i++) {
        char c = n > 3 ? (char)d[3 + i % (n - 3)] : 'a';
        name[i] = c ? c : 'x';
    }
    tf_addr a;
    if (kind == 2) {
        memset(&a, 0, sizeof a);
        a.ss.ss_family = AF_UNIX;
        a.len = (socklen_t)sizeof(sa_family_t);
    } else {
        ref_unix(&a, kind == 1, name, nl);
    }
    char buf[TF_ADDRSTR_LEN];
    CHECK(tf_addr_format(&a, buf, sizeof buf) == TF_OK);
    size_t len = strlen(buf);
    char small[TF_ADDRSTR_LEN];
    CHECK(tf_addr_format(&a, small, len) == TF_ERR_BUFFER_TOO_SMALL);
    CHECK(tf_addr_format(&a, small, len + 1) == TF_OK);
    CHECK(strcmp(small, buf) == 0);
    tf_addr b;
    tf_err e = unix_watched(buf, len, &b, NULL);
    if (kind == 2) {
        CHECK(strcmp(buf, "unix:") == 0);
        CHECK(e == TF_ERR_BAD_ADDRESS);
        return;
    }
    if (kind == 0 && name[0] == '@') {
        /* a relative path that starts with '@' is written "./@..." ("unix:@" is abstract): the
         * same file; parsed back it is that longer path, if it still fits */
        CHECK(len == 7 + nl && memcmp(buf, "unix:./", 7) == 0 && memcmp(buf + 7, name, nl) == 0);
        if (nl + 2 > TF_UNIX_PATH_MAX) {
            CHECK(e == TF_ERR_BAD_ADDRESS);
            return;
        }
        char dotted[TF_UNIX_PATH_MAX];
        memcpy(dotted, "./", 2);
        memcpy(dotted + 2, name, nl);
        ref_unix(&a, 0, dotted, nl + 2);
    }
    CHECK(e == TF_OK);
    CHECK(memcmp(&a, &b, sizeof a) == 0);
}

static void fuzz_format(const uint8_t *d, size_t n)
{
    uint8_t b[24] = {0};
    memcpy(b, d, n < sizeof b ? n : sizeof b);
    tf_addr a;
    memset(&a, 0, sizeof a);
    uint16_t port = (uint16_t)(b[1] * 256u + b[2]);
    if (b[0] % 8u >= 5u) { /* 5, 6, 7: a Unix-domain path, abstract name, unnamed */
        fuzz_format_unix(d, n, (int)(b[0] % 8u) - 5, port);
        return;
    }
    int kind = b[0] % 4u;
    if (kind == 0) {
        struct sockaddr_in *s = (struct sockaddr_in *)&a.ss;
        s->sin_family = AF_INET;
        s->sin_port = htons(port);
        memcpy(&s->sin_addr, b + 3, 4);
        a.len = sizeof *s;
    } else {
        struct sockaddr_in6 *s = (struct sockaddr_in6 *)&a.ss;
        s->sin6_family = AF_INET6;
        s->sin6_port = htons(port);
        memcpy(&s->sin6_addr, b + 3, 16);
        if (kind == 2) { /* IPv4-mapped */
            memset(&s->sin6_addr, 0, 10);
            s->sin6_addr.s6_addr[10] = 0xff;
            s->sin6_addr.s6_addr[11] = 0xff;
        }
        if (kind == 3)
            s->sin6_scope_id =
                (uint32_t)b[19] << 24 | (uint32_t)b[20] << 16 | (uint32_t)b[21] << 8 | b[22];
        a.len = sizeof *s;
    }
    char buf[TF_ADDRSTR_LEN];
    CHECK(tf_addr_format(&a, buf, sizeof buf) == TF_OK);
    size_t len = strlen(buf);
    char small[TF_ADDRSTR_LEN];
    CHECK(tf_addr_format(&a, small, len) == TF_ERR_BUFFER_TOO_SMALL);
    CHECK(small[0] == '\0' || len == 0);
    CHECK(tf_addr_format(&a, small, len + 1) == TF_OK);
    CHECK(strcmp(small, buf) == 0);

    tf_hostport hp;
    CHECK(parse_watched(buf, &hp, NULL) == TF_OK);
    CHECK(hp.port == port);
    char host[TF_HOST_MAX];
    strcpy(host, hp.host);
    char *pct = strchr(host, '%');
    if (pct)
        *pct = '\0';
    if (hp.wildcard && host[0] == '\0')
        strcpy(host, "::");
    unsigned char ip[16];
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&a.ss;
    if (a.ss.ss_family == AF_INET) {
        CHECK(inet_pton(AF_INET, host, ip) == 1);
        CHECK(memcmp(ip, b + 3, 4) == 0);
    } else if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) { /* shown as IPv4, any scope dropped */
        CHECK(inet_pton(AF_INET, host, ip) == 1);
        CHECK(memcmp(ip, &s6->sin6_addr.s6_addr[12], 4) == 0);
    } else {
        CHECK(inet_pton(AF_INET6, host, ip) == 1);
        CHECK(memcmp(ip, &s6->sin6_addr, 16) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int hooked;
    if (!hooked) {
        hooked = 1;
        if (__sanitizer_install_malloc_and_free_hooks)
            __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free);
    }
    char text[1024];
    size_t n = size < sizeof text - 1 ? size : sizeof text - 1;
    memcpy(text, data, n);
    text[n] = '\0';
    fuzz_parse(text);
    fuzz_unix(data, size);
    fuzz_format(data, size);
    return 0;
}
