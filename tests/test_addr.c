/* tests/test_addr.c -- addresses (tcp.h, io/addr.c): the tf_hostport_parse table (every accepted
 * form, every fault, each error message quoting the input), resolution of numeric hosts, the
 * wildcard forms, family filters, localhost, a name under .invalid (RFC 6761: answered without
 * asking DNS), tf_addr_is_numeric, and the tf_addr_format round trip. No test leaves the machine:
 * only loopback, wildcard and numeric addresses are resolved, and "localhost" comes from
 * /etc/hosts. Every test checks that it leaked no fd. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "internal.h"
#include "tu_net.h"

/* ---------------------------------------------------------------- helpers */

/* The text a message must start with: bad address "<input>": */
static void expect_quoted(const tf_errmsg *m, const char *input, const char *fault)
{
    char head[TF_ERRMSG_LEN + 32];
    snprintf(head, sizeof head, "bad address \"%s\": ", input);
    if (strncmp(m->text, head, strlen(head)) != 0 || !strstr(m->text, fault))
        fail_msg("input \"%s\": message \"%s\" does not start with '%s' or lacks \"%s\"", input,
                 m->text, head, fault);
}

static void fill_msg(tf_errmsg *m)
{
    memset(m->text, 'x', sizeof m->text - 1);
    m->text[sizeof m->text - 1] = '\0';
}

static void expect_v4(const tf_addr *a, const char *ip, uint16_t port)
{
    assert_int_equal(a->ss.ss_family, AF_INET);
    assert_int_equal(a->len, sizeof(struct sockaddr_in));
    const struct sockaddr_in *s = (const struct sockaddr_in *)&a->ss;
    char got[INET_ADDRSTRLEN];
    assert_non_null(inet_ntop(AF_INET, &s->sin_addr, got, sizeof got));
    assert_string_equal(got, ip);
    assert_int_equal(ntohs(s->sin_port), port);
}

static void expect_v6(const tf_addr *a, const char *ip, uint16_t port)
{
    assert_int_equal(a->ss.ss_family, AF_INET6);
    assert_int_equal(a->len, sizeof(struct sockaddr_in6));
    const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)&a->ss;
    char got[INET6_ADDRSTRLEN];
    assert_non_null(inet_ntop(AF_INET6, &s->sin6_addr, got, sizeof got));
    assert_string_equal(got, ip);
    assert_int_equal(ntohs(s->sin6_port), port);
}

/* ---------------------------------------------------------------- tf_hostport_parse */

typedef struct parse_ok {
    const char *text;
    const char *host;
    uint16_t port;
    bool wildcard, bracketed;
} parse_ok;

static const parse_ok valid[] = {
    {"127.0.0.1:9000", "127.0.0.1", 9000, false, false},
    {"localhost:9000", "localhost", 9000, false, false},
    {"example.com:1", "example.com", 1, false, false},
    {"[::1]:9000", "::1", 9000, false, true},
    {"::1:9000", "::1", 9000, false, false}, /* bare IPv6: split at the last colon */
    {"fe80::1%eth0:80", "fe80::1%eth0", 80, false, false},
    {"[fe80::1%eth0]:80", "fe80::1%eth0", 80, false, true},
    {"[::ffff:1.2.3.4]:7", "::ffff:1.2.3.4", 7, false, true},
    {"2001:db8::42:65535", "2001:db8::42", 65535, false, false},
    {":9000", "", 9000, true, false},
    {"*:9000", "", 9000, true, false},
    {"[::]:9000", "", 9000, true, true},
    {":::9000", "", 9000, true, false},
    {"0.0.0.0:9000", "0.0.0.0", 9000, true, false},
    {"host:0", "host", 0, false, false},
    {":0", "", 0, true, false},
    {"h:00080", "h", 80, false, false},
    {"h:65535", "h", 65535, false, false},
    {"*.x:1", "*.x", 1, false, false}, /* only "*" alone is the wildcard */
};

static void test_hostport_parse_valid_forms(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++) {
        const parse_ok *v = &valid[i];
        tf_hostport hp;
        tf_errmsg m;
        fill_msg(&m);
        tf_err e = tf_hostport_parse(v->text, &hp, &m);
        if (e != TF_OK)
            fail_msg("\"%s\": %s (%s)", v->text, tf_err_name(e), m.text);
        if (strcmp(hp.host, v->host) != 0 || hp.port != v->port || hp.wildcard != v->wildcard ||
            hp.bracketed != v->bracketed)
            fail_msg("\"%s\": host \"%s\" port %u wildcard %d bracketed %d", v->text, hp.host,
                     hp.port, hp.wildcard, hp.bracketed);
        assert_string_equal(m.text, ""); /* cleared on success */
    }
}

typedef struct parse_bad {
    const char *text;
    const char *fault; /* a part of the message naming the fault */
} parse_bad;

static const parse_bad invalid[] = {
    {"", "missing ':' before the port"},
    {"127.0.0.1", "missing ':' before the port"},
    {"localhost", "missing ':' before the port"},
    {"127.0.0.1:", "empty port"},
    {":", "empty port"},
    {"127.0.0.1:abc", "not a number"},
    {"127.0.0.1:-1", "not a number"},
    {"127.0.0.1:+80", "not a number"},
    {"127.0.0.1: 80", "not a number"},
    {"127.0.0.1:80 ", "not a number"},
    {"127.0.0.1:0x50", "not a number"},
    {"127.0.0.1:65536", "above 65535"},
    {"127.0.0.1:99999999999999999999999999", "above 65535"},
    {"[]:1", "empty brackets"},
    {"[::1:80", "unclosed '['"},
    {"[", "unclosed '['"},
    {"[::1]", "missing ':' before the port"},
    {"[::1]x:80", "text after ']'"},
    {"[::1]80", "text after ']'"},
    {"[::1]:", "empty port"},
    {"[::1]:x", "not a number"},
    {"[::1]:80]", "not a number"},
    {"[127.0.0.1]:80", "brackets hold an IPv6 address"},
    {"[:1]:80", "brackets hold an IPv6 address"},
    {"[[::1]]:80", "text after ']'"},
    {"[a[b]:80", "stray bracket"},
    {"a]:80", "stray bracket"},
    {"::1]:80", "stray bracket"},
    {"a b:80", "a space, control character or non-ASCII byte"},
    {"a\tb:80", "a space, control character or non-ASCII byte"},
    {"b\xc3\xbc"
     "cher.de:80",
     "a space, control character or non-ASCII byte"},
    {"\x01:80", "a space, control character or non-ASCII byte"},
    {"::1", "neither a name nor an IPv6 address"}, /* host ":", port 1: a v6 without port */
    {"a:b:80", "neither a name nor an IPv6 address"},
    {"::80", "neither a name nor an IPv6 address"},
};

static void test_hostport_parse_errors_quote_input(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
        const parse_bad *b = &invalid[i];
        tf_hostport hp;
        tf_errmsg m;
        fill_msg(&m);
        tf_err e = tf_hostport_parse(b->text, &hp, &m);
        if (e != TF_ERR_BAD_ADDRESS)
            fail_msg("\"%s\": %s, expected BAD_ADDRESS", b->text, tf_err_name(e));
        /* Bytes outside printable ASCII are shown as '?'. */
        char shown[64];
        size_t k = 0;
        for (; b->text[k]; k++)
            shown[k] = (unsigned char)b->text[k] < 0x20 || (unsigned char)b->text[k] >= 0x7f
                           ? '?'
                           : b->text[k];
        shown[k] = '\0';
        expect_quoted(&m, shown, b->fault);
    }
}

static void test_hostport_parse_host_length_limit(void **state)
{
    (void)state;
    char text[TF_HOST_MAX + 16];
    tf_hostport hp;
    tf_errmsg m;
    /* 255 characters: the longest host kept. */
    memset(text, 'a', TF_HOST_MAX - 1);
    strcpy(text + TF_HOST_MAX - 1, ":80");
    assert_int_equal(tf_hostport_parse(text, &hp, &m), TF_OK);
    assert_int_equal(strlen(hp.host), TF_HOST_MAX - 1);
    assert_int_equal(hp.port, 80);
    /* 256: too long; the message quotes a cut input ending in "...". */
    memset(text, 'a', TF_HOST_MAX);
    strcpy(text + TF_HOST_MAX, ":80");
    assert_int_equal(tf_hostport_parse(text, &hp, &m), TF_ERR_BAD_ADDRESS);
    assert_non_null(strstr(m.text, "too long"));
    assert_non_null(strstr(m.text, "aaaa...\": "));
    assert_true(strncmp(m.text, "bad address \"aaaa", 17) == 0);
    assert_true(strlen(m.text) < sizeof m.text - 1);
}

static void test_hostport_parse_quote_shows_double_quote_as_question_mark(void **state)
{
    (void)state;
    tf_hostport hp;
    tf_errmsg m;
    assert_int_equal(tf_hostport_parse("a\"b", &hp, &m), TF_ERR_BAD_ADDRESS);
    assert_string_equal(m.text, "bad address \"a?b\": missing ':' before the port");
}

static void test_hostport_parse_null_arguments(void **state)
{
    (void)state;
    tf_hostport hp;
    tf_errmsg m;
    assert_int_equal(tf_hostport_parse(NULL, &hp, &m), TF_ERR_INVALID_ARGUMENT);
    assert_true(m.text[0] != '\0');
    assert_int_equal(tf_hostport_parse("a:1", NULL, &m), TF_ERR_INVALID_ARGUMENT);
    /* msg NULL is accepted on both paths. */
    assert_int_equal(tf_hostport_parse("a:1", &hp, NULL), TF_OK);
    assert_int_equal(tf_hostport_parse("a", &hp, NULL), TF_ERR_BAD_ADDRESS);
}

/* ---------------------------------------------------------------- tf_addr_resolve */

static void test_addr_resolve_ipv4_numeric(void **state)
{
    (void)state;
    tf_addrlist l;
    tf_errmsg m;
    fill_msg(&m);
    assert_int_equal(tf_addr_resolve("127.0.0.1:9000", TF_FAMILY_ANY, false, &l, &m), TF_OK);
    assert_int_equal(l.n, 1);
    expect_v4(&l.a[0], "127.0.0.1", 9000);
    assert_string_equal(m.text, "");
    assert_int_equal(tf_addr_resolve("127.0.0.1:9000", TF_FAMILY_V4, true, &l, &m), TF_OK);
    assert_int_equal(l.n, 1);
    expect_v4(&l.a[0], "127.0.0.1", 9000);
}

static void test_addr_resolve_ipv6_numeric_both_spellings(void **state)
{
    (void)state;
    tf_addrlist l;
    tf_errmsg m;
    const char *forms[] = {"[::1]:9000", "::1:9000"};
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(tf_addr_resolve(forms[i], TF_FAMILY_ANY, false, &l, &m), TF_OK);
        assert_int_equal(l.n, 1);
        expect_v6(&l.a[0], "::1", 9000);
        assert_int_equal(tf_addr_resolve(forms[i], TF_FAMILY_V6, true, &l, &m), TF_OK);
        assert_int_equal(l.n, 1);
        expect_v6(&l.a[0], "::1", 9000);
    }
}

static void test_addr_resolve_localhost_is_loopback(void **state)
{
    (void)state;
    tf_addrlist l;
    tf_errmsg m;
    assert_int_equal(tf_addr_resolve("localhost:80", TF_FAMILY_ANY, false, &l, &m), TF_OK);
    assert_true(l.n >= 1 && l.n <= TF_ADDRS_MAX);
    for (size_t i = 0; i < l.n; i++) {
        const tf_addr *a = &l.a[i];
        if (a->ss.ss_family == AF_INET) {
            const struct sockaddr_in *s = (const struct sockaddr_in *)&a->ss;
            assert_int_equal(ntohl(s->sin_addr.s_addr) >> 24, 127);
            assert_int_equal(ntohs(s->sin_port), 80);
        } else {
            assert_int_equal(a->ss.ss_family, AF_INET6);
            const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)&a->ss;
            assert_true(IN6_IS_ADDR_LOOPBACK(&s->sin6_addr));
            assert_int_equal(ntohs(s->sin6_port), 80);
        }
        /* De-duplicated. */
        for (size_t j = 0; j < i; j++)
            assert_false(l.a[j].len == a->len && memcmp(&l.a[j].ss, &a->ss, a->len) == 0);
    }
    /* The family filter keeps only IPv4 answers. */
    assert_int_equal(tf_addr_resolve("localhost:80", TF_FAMILY_V4, false, &l, &m), TF_OK);
    assert_true(l.n >= 1);
    for (size_t i = 0; i < l.n; i++)
        assert_int_equal(l.a[i].ss.ss_family, AF_INET);
}

static void test_addr_resolve_invalid_tld_fails_without_resolver(void **state)
{
    (void)state;
    const char *names[] = {"nothing.invalid:80", "a.b.INVALID:80", "x.invalid.:80", "invalid:1"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        tf_addrlist l;
        tf_errmsg m;
        l.n = 5;
        assert_int_equal(tf_addr_resolve(names[i], TF_FAMILY_ANY, false, &l, &m),
                         TF_ERR_BAD_ADDRESS);
        assert_int_equal(l.n, 0);
        expect_quoted(&m, names[i], "never resolves");
    }
    /* "invalid" as a label elsewhere is an ordinary name: it is not refused by this rule (not
     * resolved here: that would ask DNS). */
    tf_hostport hp;
    assert_int_equal(tf_hostport_parse("notinvalid:1", &hp, NULL), TF_OK);
    assert_false(tf_addr_is_numeric("notinvalid:1"));
}

static void test_addr_resolve_parse_error_is_bad_address(void **state)
{
    (void)state;
    tf_addrlist l;
    tf_errmsg m;
    assert_int_equal(tf_addr_resolve("127.0.0.1", TF_FAMILY_ANY, false, &l, &m),
                     TF_ERR_BAD_ADDRESS);
    expect_quoted(&m, "127.0.0.1", "missing ':'");
    assert_int_equal(tf_addr_resolve("[]:1", TF_FAMILY_ANY, true, &l, &m), TF_ERR_BAD_ADDRESS);
    expect_quoted(&m, "[]:1", "empty brackets");
    /* A host with a colon is IPv6 or nothing (no name has one): refused without DNS. */
    assert_int_equal(tf_addr_resolve("[::1::2]:1", TF_FAMILY_ANY, false, &l, &m),
                     TF_ERR_BAD_ADDRESS);
    expect_quoted(&m, "[::1::2]:1", "not an IPv6 address");
    assert_int_equal(tf_addr_resolve("1::2::3:1", TF_FAMILY_ANY, true, &l, &m), TF_ERR_BAD_ADDRESS);
    expect_quoted(&m, "1::2::3:1", "not an IPv6 address");
}

static void test_addr_resolve_wildcard_forms(void **state)
{
    (void)state;
    const char *forms[] = {":7000", "*:7000", "[::]:7000", ":::7000"};
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        tf_addrlist l;
        tf_errmsg m;
        /* Bind: dual-stack [::] for ANY, else the family's wildcard. */
        assert_int_equal(tf_addr_resolve(forms[i], TF_FAMILY_ANY, true, &l, &m), TF_OK);
        assert_int_equal(l.n, 1);
        expect_v6(&l.a[0], "::", 7000);
        assert_int_equal(tf_addr_resolve(forms[i], TF_FAMILY_V4, true, &l, &m), TF_OK);
        assert_int_equal(l.n, 1);
        expect_v4(&l.a[0], "0.0.0.0", 7000);
        assert_int_equal(tf_addr_resolve(forms[i], TF_FAMILY_V6, true, &l, &m), TF_OK);
        assert_int_equal(l.n, 1);
        expect_v6(&l.a[0], "::", 7000);
        /* Connect: this machine's loopback, IPv6 first for ANY. */
        assert_int_equal(tf_addr_resolve(forms[i], TF_FAMILY_ANY, false, &l, &m), TF_OK);
        assert_int_equal(l.n, 2);
        expect_v6(&l.a[0], "::1", 7000);
        expect_v4(&l.a[1], "127.0.0.1", 7000);
        assert_int_equal(tf_addr_resolve(forms[i], TF_FAMILY_V4, false, &l, &m), TF_OK);
        assert_int_equal(l.n, 1);
        expect_v4(&l.a[0], "127.0.0.1", 7000);
        assert_int_equal(tf_addr_resolve(forms[i], TF_FAMILY_V6, false, &l, &m), TF_OK);
        assert_int_equal(l.n, 1);
        expect_v6(&l.a[0], "::1", 7000);
    }
}

static void test_addr_resolve_ipv4_wildcard(void **state)
{
    (void)state;
    tf_addrlist l;
    tf_errmsg m;
    assert_int_equal(tf_addr_resolve("0.0.0.0:81", TF_FAMILY_ANY, true, &l, &m), TF_OK);
    assert_int_equal(l.n, 1);
    expect_v4(&l.a[0], "0.0.0.0", 81);
    assert_int_equal(tf_addr_resolve("0.0.0.0:81", TF_FAMILY_ANY, false, &l, &m), TF_OK);
    assert_int_equal(l.n, 1);
    expect_v4(&l.a[0], "127.0.0.1", 81);
    assert_int_equal(tf_addr_resolve("0.0.0.0:81", TF_FAMILY_V6, true, &l, &m), TF_ERR_BAD_ADDRESS);
    expect_quoted(&m, "0.0.0.0:81", "no IPv6 address");
}

static void test_addr_resolve_family_filter_mismatch(void **state)
{
    (void)state;
    tf_addrlist l;
    tf_errmsg m;
    assert_int_equal(tf_addr_resolve("127.0.0.1:80", TF_FAMILY_V6, false, &l, &m),
                     TF_ERR_BAD_ADDRESS);
    assert_int_equal(l.n, 0);
    expect_quoted(&m, "127.0.0.1:80", "no IPv6 address");
    assert_int_equal(tf_addr_resolve("[::1]:80", TF_FAMILY_V4, true, &l, &m), TF_ERR_BAD_ADDRESS);
    expect_quoted(&m, "[::1]:80", "no IPv4 address");
}

static void test_addr_resolve_bad_arguments(void **state)
{
    (void)state;
    tf_addrlist l;
    tf_errmsg m;
    assert_int_equal(tf_addr_resolve(NULL, TF_FAMILY_ANY, false, &l, &m), TF_ERR_INVALID_ARGUMENT);
    assert_int_equal(tf_addr_resolve("a:1", TF_FAMILY_ANY, false, NULL, &m),
                     TF_ERR_INVALID_ARGUMENT);
    assert_int_equal(tf_addr_resolve("127.0.0.1:1", 5, false, &l, &m), TF_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(m.text, "family 5"));
    assert_int_equal(tf_addr_resolve("127.0.0.1:1", TF_FAMILY_ANY, false, &l, NULL), TF_OK);
}

static void test_addr_resolve_scope_id(void **state)
{
    (void)state;
    tf_addrlist l;
    assert_int_equal(tf_addr_resolve("[fe80::1%1]:80", TF_FAMILY_ANY, false, &l, NULL), TF_OK);
    assert_int_equal(l.n, 1);
    expect_v6(&l.a[0], "fe80::1", 80);
    assert_int_equal(((const struct sockaddr_in6 *)&l.a[0].ss)->sin6_scope_id, 1);
}

/* ---------------------------------------------------------------- tf_addr_is_numeric */

static void test_addr_is_numeric_forms(void **state)
{
    (void)state;
    assert_true(tf_addr_is_numeric("127.0.0.1:1"));
    assert_true(tf_addr_is_numeric("[::1]:1"));
    assert_true(tf_addr_is_numeric("::1:1"));
    assert_true(tf_addr_is_numeric("[fe80::1%1]:1"));
    assert_true(tf_addr_is_numeric(":1"));
    assert_true(tf_addr_is_numeric("*:1"));
    assert_true(tf_addr_is_numeric("0.0.0.0:1"));
    assert_false(tf_addr_is_numeric("localhost:1"));
    assert_false(tf_addr_is_numeric("x.invalid:1"));
    assert_false(tf_addr_is_numeric("127.0.0.1"));     /* no port: does not parse */
    assert_false(tf_addr_is_numeric("1.2.3.4:70000")); /* bad port */
    assert_false(tf_addr_is_numeric(NULL));
}

/* ---------------------------------------------------------------- tf_addr_format */

typedef struct fmt_case {
    const char *in;   /* resolved (numeric) */
    const char *text; /* its formatted form */
} fmt_case;

static void test_addr_format_round_trip(void **state)
{
    (void)state;
    static const fmt_case cases[] = {
        {"127.0.0.1:9000", "127.0.0.1:9000"},
        {"10.1.2.3:0", "10.1.2.3:0"},
        {"255.255.255.255:65535", "255.255.255.255:65535"},
        {"[::1]:9000", "[::1]:9000"},
        {"::1:9000", "[::1]:9000"},
        {"[2001:DB8:0:0:0:0:0:42]:1", "[2001:db8::42]:1"},
        {"[::ffff:127.0.0.1]:80", "127.0.0.1:80"}, /* IPv4-mapped shown as IPv4 */
        {"[fe80::1%3]:80", "[fe80::1%3]:80"},
        {"[ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe%4294967295]:65535",
         "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe%4294967295]:65535"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tf_addrlist l, l2;
        tf_errmsg m;
        if (tf_addr_resolve(cases[i].in, TF_FAMILY_ANY, false, &l, &m) != TF_OK)
            fail_msg("%s: %s", cases[i].in, m.text);
        assert_int_equal(l.n, 1);
        char buf[TF_ADDRSTR_LEN];
        assert_int_equal(tf_addr_format(&l.a[0], buf, sizeof buf), TF_OK);
        assert_string_equal(buf, cases[i].text);
        /* The formatted text parses back to the same address (the mapped one to its IPv4). */
        assert_int_equal(tf_addr_resolve(buf, TF_FAMILY_ANY, false, &l2, &m), TF_OK);
        assert_int_equal(l2.n, 1);
        char buf2[TF_ADDRSTR_LEN];
        assert_int_equal(tf_addr_format(&l2.a[0], buf2, sizeof buf2), TF_OK);
        assert_string_equal(buf2, buf);
        if (strstr(cases[i].in, "ffff:127") == NULL) {
            assert_int_equal(l2.a[0].len, l.a[0].len);
            assert_memory_equal(&l2.a[0].ss, &l.a[0].ss, l.a[0].len);
        }
    }
}

static void test_addr_format_buffer_too_small(void **state)
{
    (void)state;
    tf_addrlist l;
    assert_int_equal(tf_addr_resolve("127.0.0.1:9000", TF_FAMILY_ANY, false, &l, NULL), TF_OK);
    char buf[32];
    /* "127.0.0.1:9000" is 14 characters: 15 bytes with the NUL. */
    memset(buf, 'x', sizeof buf);
    assert_int_equal(tf_addr_format(&l.a[0], buf, 14), TF_ERR_BUFFER_TOO_SMALL);
    assert_string_equal(buf, "");
    assert_int_equal(tf_addr_format(&l.a[0], buf, 0), TF_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(tf_addr_format(&l.a[0], buf, 15), TF_OK);
    assert_string_equal(buf, "127.0.0.1:9000");
}

static void test_addr_format_bad_arguments(void **state)
{
    (void)state;
    char buf[TF_ADDRSTR_LEN];
    tf_addr a;
    memset(&a, 0, sizeof a);
    assert_int_equal(tf_addr_format(NULL, buf, sizeof buf), TF_ERR_INVALID_ARGUMENT);
    assert_int_equal(tf_addr_format(&a, NULL, sizeof buf), TF_ERR_INVALID_ARGUMENT);
    /* AF_UNIX with a length shorter than its family or longer than a sockaddr_un. */
    struct sockaddr_un *u = (struct sockaddr_un *)&a.ss;
    u->sun_family = AF_UNIX;
    a.len = 1;
    assert_int_equal(tf_addr_format(&a, buf, sizeof buf), TF_ERR_INVALID_ARGUMENT);
    a.len = sizeof *u + 1;
    assert_int_equal(tf_addr_format(&a, buf, sizeof buf), TF_ERR_INVALID_ARGUMENT);
    /* A family this layer does not format. */
    a.ss.ss_family = AF_PACKET;
    a.len = sizeof a.ss;
    assert_int_equal(tf_addr_format(&a, buf, sizeof buf), TF_ERR_INVALID_ARGUMENT);
    /* AF_INET with a length too short for a sockaddr_in. */
    a.ss.ss_family = AF_INET;
    a.len = 4;
    assert_int_equal(tf_addr_format(&a, buf, sizeof buf), TF_ERR_INVALID_ARGUMENT);
}

/* ---------------------------------------------------------------- Unix-domain addresses */

static void expect_unix(const tf_addr *a, bool abstract, const char *name)
{
    size_t n = strlen(name);
    const struct sockaddr_un *u = (const struct sockaddr_un *)&a->ss;
    assert_int_equal(a->ss.ss_family, AF_UNIX);
    assert_int_equal(a->len, offsetof(struct sockaddr_un, sun_path) + 1 + n);
    if (abstract) {
        assert_int_equal(u->sun_path[0], '\0');
        assert_memory_equal(u->sun_path + 1, name, n);
    } else {
        assert_string_equal(u->sun_path, name);
    }
    /* Every other byte zero: two parses of one text compare equal as bytes. */
    const unsigned char *b = (const unsigned char *)&a->ss;
    for (size_t i = a->len; i < sizeof a->ss; i++)
        assert_int_equal(b[i], 0);
}

/* A string of n copies of ch. */
static const char *repeat(char *buf, char ch, size_t n)
{
    memset(buf, ch, n);
    buf[n] = '\0';
    return buf;
}

static void test_unix_addr_parse_path_abstract_relative_round_trip(void **state)
{
    (void)state;
    char name[TF_UNIX_PATH_MAX + 2], text[TF_ADDRSTR_LEN], back[TF_ADDRSTR_LEN];
    const struct {
        const char *text;
        bool abstract;
        const char *name;
    } ok[] = {
        {"unix:/tmp/tf.sock", false, "/tmp/tf.sock"},
        {"unix:rel.sock", false, "rel.sock"},
        {"unix:./a b:c@d", false, "./a b:c@d"}, /* spaces, colons and '@' inside: bytes */
        {"unix:@tf-abstract", true, "tf-abstract"},
        {"unix:@@", true, "@"},
        {"unix:/", false, "/"},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        tf_addr a;
        tf_errmsg m;
        fill_msg(&m);
        tf_err e = tf_unix_addr_parse(ok[i].text, strlen(ok[i].text), &a, &m);
        if (e != TF_OK)
            fail_msg("\"%s\": %s (%s)", ok[i].text, tf_err_name(e), m.text);
        assert_string_equal(m.text, "");
        expect_unix(&a, ok[i].abstract, ok[i].name);
        assert_int_equal(tf_addr_format(&a, back, sizeof back), TF_OK);
        assert_string_equal(back, ok[i].text);
        /* The resolver gives the same one address, whatever the family asked. */
        tf_addrlist l;
        assert_int_equal(tf_addr_resolve(ok[i].text, TF_FAMILY_V4, true, &l, &m), TF_OK);
        assert_int_equal(l.n, 1);
        assert_memory_equal(&l.a[0], &a, sizeof a);
        assert_true(tf_addr_is_numeric(ok[i].text));
        assert_true(tf_addr_is_unix(ok[i].text));
    }
    /* The longest path and abstract name: 107 bytes each, and their text fits TF_ADDRSTR_LEN. */
    for (int abstract = 0; abstract < 2; abstract++) {
        snprintf(text, sizeof text, "unix:%s%s", abstract ? "@" : "",
                 repeat(name, 'p', TF_UNIX_PATH_MAX));
        tf_addr a;
        assert_int_equal(tf_unix_addr_parse(text, strlen(text), &a, NULL), TF_OK);
        expect_unix(&a, abstract, name);
        assert_int_equal(tf_addr_format(&a, back, sizeof back), TF_OK);
        assert_string_equal(back, text);
        /* One byte short of the room: BUFFER_TOO_SMALL, buf "". */
        assert_int_equal(tf_addr_format(&a, back, strlen(text)), TF_ERR_BUFFER_TOO_SMALL);
        assert_string_equal(back, "");
    }
}

static void test_unix_addr_parse_errors_are_clear(void **state)
{
    (void)state;
    char name[TF_UNIX_PATH_MAX + 2], text[TF_ADDRSTR_LEN + 8];
    const struct {
        const char *text;
        size_t len; /* 0: strlen */
        const char *shown, *fault;
    } bad[] = {
        {"unix:", 0, "unix:", "empty path"},
        {"unix:@", 0, "unix:@", "empty abstract name"},
        {"unix:/tmp/a\0b", 13, "unix:/tmp/a?b", "a NUL byte in the path"},
        {"unix:@a\0b", 9, "unix:@a?b", "a NUL byte in the abstract name"},
        {"unux:/tmp/x", 0, "unux:/tmp/x", "starts with \"unix:\""},
        {"unix", 0, "unix", "starts with \"unix:\""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tf_addr a;
        tf_errmsg m;
        size_t len = bad[i].len ? bad[i].len : strlen(bad[i].text);
        memset(&a, 0xa5, sizeof a);
        assert_int_equal(tf_unix_addr_parse(bad[i].text, len, &a, &m), TF_ERR_BAD_ADDRESS);
        expect_quoted(&m, bad[i].shown, bad[i].fault);
        tf_addr zero;
        memset(&zero, 0, sizeof zero);
        assert_memory_equal(&a, &zero, sizeof a);
    }
    /* 108 bytes: one more than sun_path holds (with the path's NUL or the name's lead NUL). */
    for (int abstract = 0; abstract < 2; abstract++) {
        snprintf(text, sizeof text, "unix:%s%s", abstract ? "@" : "",
                 repeat(name, 'p', TF_UNIX_PATH_MAX + 1));
        tf_addr a;
        tf_errmsg m;
        assert_int_equal(tf_unix_addr_parse(text, strlen(text), &a, &m), TF_ERR_BAD_ADDRESS);
        assert_non_null(strstr(m.text, "too long (at most 107 bytes"));
        /* Everything that takes an address says the same. */
        tf_addrlist l;
        assert_int_equal(tf_addr_resolve(text, TF_FAMILY_ANY, false, &l, &m), TF_ERR_BAD_ADDRESS);
        assert_int_equal(l.n, 0);
        assert_non_null(strstr(m.text, "too long"));
        assert_false(tf_addr_is_numeric(text));
    }
    tf_addrlist l;
    tf_errmsg m;
    assert_int_equal(tf_addr_resolve("unix:", TF_FAMILY_ANY, true, &l, &m), TF_ERR_BAD_ADDRESS);
    expect_quoted(&m, "unix:", "empty path");
    assert_false(tf_addr_is_numeric("unix:"));
    /* host:port is not a Unix address, nor the other way round. */
    tf_hostport hp;
    assert_int_equal(tf_hostport_parse("unix:80", &hp, &m), TF_ERR_BAD_ADDRESS);
    expect_quoted(&m, "unix:80", "a unix: address has no host:port");
    assert_int_equal(tf_hostport_parse("unix.:80", &hp, &m), TF_OK);
    assert_false(tf_addr_is_unix("unix.:80"));
    assert_false(tf_addr_is_unix(NULL));
    tf_addr a;
    assert_int_equal(tf_unix_addr_parse(NULL, 0, &a, &m), TF_ERR_INVALID_ARGUMENT);
    assert_int_equal(tf_unix_addr_parse("unix:/x", 7, NULL, &m), TF_ERR_INVALID_ARGUMENT);
    /* A config's local_addr is a host:port, never a unix: address. */
    tf_tcp_config c;
    tf_tcp_config_init(&c);
    snprintf(c.local_addr, sizeof c.local_addr, "unix:/tmp/x");
    assert_int_equal(tf_tcp_config_validate(&c, &m), TF_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(m.text, "local_addr"));
}

static void test_unix_addr_format_unnamed_and_nul_in_abstract(void **state)
{
    (void)state;
    tf_addr a;
    memset(&a, 0, sizeof a);
    struct sockaddr_un *u = (struct sockaddr_un *)&a.ss;
    u->sun_family = AF_UNIX;
    char buf[TF_ADDRSTR_LEN];
    /* Unnamed (accept's peer for a client that never bound; a socketpair). */
    a.len = sizeof(sa_family_t);
    assert_int_equal(tf_addr_format(&a, buf, sizeof buf), TF_OK);
    assert_string_equal(buf, "unix:");
    /* An abstract name with a NUL inside: shown as '@' (as ss(8) does). */
    memcpy(u->sun_path, "\0ab\0c", 5);
    a.len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 5);
    assert_int_equal(tf_addr_format(&a, buf, sizeof buf), TF_OK);
    assert_string_equal(buf, "unix:@ab@c");
    /* A path that fills sun_path without its NUL (the kernel allows it): all 108 bytes. */
    memset(u->sun_path, 'q', sizeof u->sun_path);
    a.len = sizeof *u;
    assert_int_equal(tf_addr_format(&a, buf, sizeof buf), TF_OK);
    assert_int_equal(strlen(buf), 5 + sizeof u->sun_path);
    /* ... as getpeername / accept report it: its length one past the struct (the kernel counts
     * the NUL it could not store; the attack's peer of a 108-byte client path) */
    a.len = sizeof *u + 1;
    assert_int_equal(tf_addr_format(&a, buf, sizeof buf), TF_OK);
    assert_int_equal(strlen(buf), 5 + sizeof u->sun_path);
    /* a relative path that starts with '@' is written "./@..." ("unix:@" is abstract) */
    memset(u->sun_path, 0, sizeof u->sun_path);
    memcpy(u->sun_path, "@sock", 5);
    a.len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 6);
    assert_int_equal(tf_addr_format(&a, buf, sizeof buf), TF_OK);
    assert_string_equal(buf, "unix:./@sock");
    assert_int_equal(tf_addr_format(&a, buf, 12), TF_ERR_BUFFER_TOO_SMALL);
    memset(u->sun_path, 'q', sizeof u->sun_path);
    /* two past, or an abstract name one past: not an address the kernel gives */
    a.len = sizeof *u + 2;
    assert_int_equal(tf_addr_format(&a, buf, sizeof buf), TF_ERR_INVALID_ARGUMENT);
    u->sun_path[0] = '\0';
    a.len = sizeof *u + 1;
    assert_int_equal(tf_addr_format(&a, buf, sizeof buf), TF_ERR_INVALID_ARGUMENT);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, tu_fd_setup, tu_fd_teardown)
    const struct CMUnitTest tests[] = {
        T(test_hostport_parse_valid_forms),
        T(test_hostport_parse_errors_quote_input),
        T(test_hostport_parse_host_length_limit),
        T(test_hostport_parse_quote_shows_double_quote_as_question_mark),
        T(test_hostport_parse_null_arguments),
        T(test_addr_resolve_ipv4_numeric),
        T(test_addr_resolve_ipv6_numeric_both_spellings),
        T(test_addr_resolve_localhost_is_loopback),
        T(test_addr_resolve_invalid_tld_fails_without_resolver),
        T(test_addr_resolve_parse_error_is_bad_address),
        T(test_addr_resolve_wildcard_forms),
        T(test_addr_resolve_ipv4_wildcard),
        T(test_addr_resolve_family_filter_mismatch),
        T(test_addr_resolve_bad_arguments),
        T(test_addr_resolve_scope_id),
        T(test_addr_is_numeric_forms),
        T(test_addr_format_round_trip),
        T(test_addr_format_buffer_too_small),
        T(test_addr_format_bad_arguments),
        T(test_unix_addr_parse_path_abstract_relative_round_trip),
        T(test_unix_addr_parse_errors_are_clear),
        T(test_unix_addr_format_unnamed_and_nul_in_abstract),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
