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

/* ---------------------------------------------------------------- fd leak check */

static int fds_before;

static int setup(void **state)
{
    (void)state;
    fds_before = tu_fd_count();
    return fds_before < 0 ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    int now = tu_fd_count();
    if (now != fds_before) {
        fprintf(stderr, "fd leak: %d open before the test, %d after\n", fds_before, now);
        return -1;
    }
    return 0;
}

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
    /* AF_UNIX: not an address of this layer. */
    struct sockaddr_un *u = (struct sockaddr_un *)&a.ss;
    u->sun_family = AF_UNIX;
    a.len = sizeof *u;
    assert_int_equal(tf_addr_format(&a, buf, sizeof buf), TF_ERR_INVALID_ARGUMENT);
    /* AF_INET with a length too short for a sockaddr_in. */
    a.ss.ss_family = AF_INET;
    a.len = 4;
    assert_int_equal(tf_addr_format(&a, buf, sizeof buf), TF_ERR_INVALID_ARGUMENT);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
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
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
