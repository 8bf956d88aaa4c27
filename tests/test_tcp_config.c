/* tests/test_tcp_config.c -- the socket configuration (tcp.h, io/tcp_config.c) and the socket
 * helpers built on it (io/sock.c): production and OS defaults, validation of every field (the
 * message names the field and its value), the size-based extensibility rule (older smaller and
 * newer larger callers), options applied to real sockets and read back with getsockopt, the OS
 * default config leaving a socket as the kernel made it, listen on loopback v4/v6 and the
 * wildcard, EADDRINUSE named, connect to a listening and to a closed port, retry and back-off
 * policy. Loopback only. Every test checks that it leaked no fd. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "tcpframe/fdio.h"
#include "tcpframe/proto.h"
#include "tu_net.h"

#define DEADLINE_MS 10000

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

static int getopt_int(int fd, int level, int name)
{
    int v = -12345;
    socklen_t len = sizeof v;
    assert_int_equal(getsockopt(fd, level, name, &v, &len), 0);
    return v;
}

/* A value that validates and differs from both init and init_os for every field. */
static void custom(tf_tcp_config *c)
{
    tf_tcp_config_init(c);
    c->connect_timeout_ms = 1234;
    c->sndbuf = 65536;
    c->rcvbuf = 131072;
    c->nodelay = 0;
    c->keepalive = 0;
    c->keepalive_idle_s = 120;
    c->keepalive_intvl_s = 7;
    c->keepalive_cnt = 4;
    c->user_timeout_ms = 12345;
    c->listen_backlog = 17;
    c->accept_retries = 2;
    c->connect_retries = 3;
    c->retry_delay_ms = 50;
    c->retry_max_delay_ms = 400;
    c->handshake_timeout_ms = 777;
    c->max_recv_len = 1000;
    c->max_send_len = 2000;
    c->handshake = 0;
    c->send_queue_bytes = 5000;
    c->send_queue_msgs = 9;
    c->send_low_water = 100;
    c->recv_queue_ops = 11;
    c->read_buffer = 4096;
    c->linger_ms = 0;
    c->accept_queue = 3;
}

/* ---------------------------------------------------------------- tf__errmsg */

static void test_errmsg_formats_truncates_and_clears(void **state)
{
    (void)state;
    tf_errmsg m;
    tf__errmsg(&m, "connect %s: %s (%d attempts)", "127.0.0.1:7000", "Connection refused", 10);
    assert_string_equal(m.text, "connect 127.0.0.1:7000: Connection refused (10 attempts)");
    /* Too long: cut, NUL-terminated, and marked as cut. */
    char big[2 * TF_ERRMSG_LEN];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    tf__errmsg(&m, "x %s", big);
    assert_int_equal(strlen(m.text), TF_ERRMSG_LEN - 1);
    assert_string_equal(m.text + TF_ERRMSG_LEN - 4, "...");
    assert_true(strncmp(m.text, "x zzz", 5) == 0);
    /* Exactly full: not cut. */
    big[TF_ERRMSG_LEN - 1] = '\0';
    tf__errmsg(&m, "%s", big);
    assert_string_equal(m.text, big);
    tf__errmsg_clear(&m);
    assert_string_equal(m.text, "");
    tf__errmsg(NULL, "ignored %d", 1); /* NULL: no-op */
    tf__errmsg_clear(NULL);
}

/* ---------------------------------------------------------------- init */

static void test_tcp_config_init_production_values(void **state)
{
    (void)state;
    tf_tcp_config c;
    memset(&c, 0x5a, sizeof c);
    tf_tcp_config_init(&c);
    assert_int_equal(c.size, sizeof(tf_tcp_config));
    assert_int_equal(c.connect_timeout_ms, 30000);
    assert_int_equal(c.sndbuf, 1048576);
    assert_int_equal(c.rcvbuf, 1048576);
    assert_int_equal(c.nodelay, 1);
    assert_int_equal(c.keepalive, 1);
    assert_int_equal(c.keepalive_idle_s, 60);
    assert_int_equal(c.keepalive_intvl_s, 5);
    assert_int_equal(c.keepalive_cnt, 3);
    assert_int_equal(c.user_timeout_ms, 60000);
    assert_int_equal(c.listen_backlog, TF_UNSET);
    assert_int_equal(c.accept_retries, 5);
    assert_int_equal(c.connect_retries, 10);
    assert_int_equal(c.retry_delay_ms, 1000);
    assert_int_equal(c.retry_max_delay_ms, 30000);
    assert_int_equal(c.handshake_timeout_ms, 5000);
    assert_int_equal(c.max_recv_len, TF_DEFAULT_MAX_LEN);
    assert_int_equal(c.max_send_len, TF_DEFAULT_MAX_LEN);
    assert_int_equal(c.handshake, 1);
    assert_int_equal(c.send_queue_bytes, 64 * 1048576 + 1048576);
    assert_int_equal(c.send_queue_msgs, 65536);
    assert_int_equal(c.send_low_water, 262144);
    assert_int_equal(c.recv_queue_ops, 65536);
    assert_int_equal(c.read_buffer, 65536);
    assert_int_equal(c.linger_ms, 5000);
    assert_int_equal(c.accept_queue, 128);
}

static void test_tcp_config_init_os_every_option_unset(void **state)
{
    (void)state;
    tf_tcp_config c, d;
    memset(&c, 0x5a, sizeof c);
    tf_tcp_config_init_os(&c);
    tf_tcp_config_init(&d);
    assert_int_equal(c.size, sizeof(tf_tcp_config));
    const int64_t *unset[] = {
        &c.connect_timeout_ms,   &c.sndbuf,          &c.rcvbuf,          &c.keepalive_idle_s,
        &c.keepalive_intvl_s,    &c.keepalive_cnt,   &c.user_timeout_ms, &c.listen_backlog,
        &c.accept_retries,       &c.connect_retries, &c.retry_delay_ms,  &c.retry_max_delay_ms,
        &c.handshake_timeout_ms,
    };
    for (size_t i = 0; i < sizeof unset / sizeof unset[0]; i++)
        assert_int_equal(*unset[i], TF_UNSET);
    assert_int_equal(c.nodelay, TF_UNSET);
    assert_int_equal(c.keepalive, TF_UNSET);
    /* Not options: as tf_tcp_config_init. */
    assert_int_equal(c.handshake, 1);
    assert_int_equal(c.max_recv_len, TF_DEFAULT_MAX_LEN);
    assert_int_equal(c.max_send_len, TF_DEFAULT_MAX_LEN);
    assert_int_equal(c.send_queue_bytes, d.send_queue_bytes);
    assert_int_equal(c.send_queue_msgs, d.send_queue_msgs);
    assert_int_equal(c.send_low_water, d.send_low_water);
    assert_int_equal(c.recv_queue_ops, d.recv_queue_ops);
    assert_int_equal(c.read_buffer, d.read_buffer);
    assert_int_equal(c.linger_ms, d.linger_ms);
    assert_int_equal(c.accept_queue, d.accept_queue);
}

static void test_tcp_config_init_function_pointer_same_as_macro(void **state)
{
    (void)state;
    /* The functions behind the macros exist (for function pointers and other languages). */
    void (*init)(tf_tcp_config *) = &tf_tcp_config_init;
    void (*init_os)(tf_tcp_config *) = &tf_tcp_config_init_os;
    tf_tcp_config a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    init(&a);
    tf_tcp_config_init(&b);
    assert_memory_equal(&a, &b, sizeof a);
    init_os(&a);
    tf_tcp_config_init_os(&b);
    assert_memory_equal(&a, &b, sizeof a);
}

/* ---------------------------------------------------------------- validate */

static void test_tcp_config_validate_accepts_both_inits(void **state)
{
    (void)state;
    tf_tcp_config c;
    tf_errmsg m;
    strcpy(m.text, "stale");
    tf_tcp_config_init(&c);
    assert_int_equal(tf_tcp_config_validate(&c, &m), TF_OK);
    assert_string_equal(m.text, "");
    tf_tcp_config_init_os(&c);
    assert_int_equal(tf_tcp_config_validate(&c, &m), TF_OK);
    custom(&c);
    assert_int_equal(tf_tcp_config_validate(&c, &m), TF_OK);
    assert_int_equal(tf_tcp_config_validate(&c, NULL), TF_OK);
}

typedef struct bad_case {
    const char *expect; /* start of the message after "bad config: " */
    void (*set)(tf_tcp_config *c);
} bad_case;

#define BAD(name, value, text)                                                                     \
    static void set_##name##_##text(tf_tcp_config *c)                                              \
    {                                                                                              \
        c->name = value;                                                                           \
    }
BAD(connect_timeout_ms, -5, neg)
BAD(connect_timeout_ms, 0, zero)
BAD(connect_timeout_ms, (int64_t)INT_MAX + 1, huge)
BAD(sndbuf, 0, zero)
BAD(sndbuf, -2, neg)
BAD(sndbuf, (int64_t)INT_MAX + 1, huge)
BAD(rcvbuf, 0, zero)
BAD(nodelay, 2, two)
BAD(nodelay, -2, neg)
BAD(keepalive, 7, seven)
BAD(keepalive_idle_s, 0, zero)
BAD(keepalive_idle_s, 32768, huge)
BAD(keepalive_intvl_s, -3, neg)
BAD(keepalive_cnt, 128, huge)
BAD(user_timeout_ms, -2, neg)
BAD(listen_backlog, 0, zero)
BAD(accept_retries, 0, zero)
BAD(connect_retries, -2, neg)
BAD(retry_delay_ms, -100, neg)
BAD(retry_max_delay_ms, -7, neg)
BAD(handshake_timeout_ms, -2, neg)
BAD(handshake, 3, three)
BAD(send_queue_bytes, 0, zero)
BAD(send_queue_msgs, 0, zero)
BAD(send_low_water, -2, neg)
BAD(recv_queue_ops, 0, zero)
BAD(read_buffer, 0, zero)
BAD(read_buffer, TF_UNSET, unset)
BAD(send_low_water, TF_UNSET, unset)
BAD(linger_ms, -2, neg)
BAD(accept_queue, 0, zero)
#undef BAD

static void set_delay_above_cap(tf_tcp_config *c)
{
    c->retry_delay_ms = 5000;
    c->retry_max_delay_ms = 1000;
}

static void set_handshake_timeout_zero(tf_tcp_config *c)
{
    c->handshake = 1;
    c->handshake_timeout_ms = 0;
}

static void set_low_water_above_queue(tf_tcp_config *c)
{
    c->send_queue_bytes = 1000;
    c->send_low_water = 1001;
}

static void set_size_zero(tf_tcp_config *c)
{
    c->size = 0;
}

static void set_size_tiny(tf_tcp_config *c)
{
    c->size = 3;
}

static const bad_case bad_cases[] = {
    {"connect_timeout_ms = -5: ", set_connect_timeout_ms_neg},
    {"connect_timeout_ms = 0: ", set_connect_timeout_ms_zero},
    {"connect_timeout_ms = 2147483648: ", set_connect_timeout_ms_huge},
    {"sndbuf = 0: ", set_sndbuf_zero},
    {"sndbuf = -2: ", set_sndbuf_neg},
    {"sndbuf = 2147483648: ", set_sndbuf_huge},
    {"rcvbuf = 0: ", set_rcvbuf_zero},
    {"nodelay = 2: must be 0, 1 or TF_UNSET", set_nodelay_two},
    {"nodelay = -2: ", set_nodelay_neg},
    {"keepalive = 7: ", set_keepalive_seven},
    {"keepalive_idle_s = 0: ", set_keepalive_idle_s_zero},
    {"keepalive_idle_s = 32768: must be 1..32767", set_keepalive_idle_s_huge},
    {"keepalive_intvl_s = -3: ", set_keepalive_intvl_s_neg},
    {"keepalive_cnt = 128: must be 1..127", set_keepalive_cnt_huge},
    {"user_timeout_ms = -2: ", set_user_timeout_ms_neg},
    {"listen_backlog = 0: ", set_listen_backlog_zero},
    {"accept_retries = 0: ", set_accept_retries_zero},
    {"connect_retries = -2: ", set_connect_retries_neg},
    {"retry_delay_ms = -100: ", set_retry_delay_ms_neg},
    {"retry_max_delay_ms = -7: ", set_retry_max_delay_ms_neg},
    {"handshake_timeout_ms = -2: ", set_handshake_timeout_ms_neg},
    {"handshake = 3: ", set_handshake_three},
    {"send_queue_bytes = 0: ", set_send_queue_bytes_zero},
    {"send_queue_msgs = 0: ", set_send_queue_msgs_zero},
    {"send_low_water = -2: ", set_send_low_water_neg},
    {"recv_queue_ops = 0: ", set_recv_queue_ops_zero},
    {"read_buffer = 0: ", set_read_buffer_zero},
    {"read_buffer = -1: must be 1..2147483647", set_read_buffer_unset},
    {"send_low_water = -1: must be 0..9223372036854775807", set_send_low_water_unset},
    {"linger_ms = -2: ", set_linger_ms_neg},
    {"accept_queue = 0: ", set_accept_queue_zero},
    {"retry_delay_ms = 5000 is above retry_max_delay_ms = 1000", set_delay_above_cap},
    {"handshake_timeout_ms = 0 with the handshake on", set_handshake_timeout_zero},
    {"send_low_water = 1001 is above send_queue_bytes = 1000", set_low_water_above_queue},
    {"size = 0: ", set_size_zero},
    {"size = 3: ", set_size_tiny},
};

static void test_tcp_config_validate_rejects_each_bad_field(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        /* From both starting points: the check does not depend on the other fields' values. */
        for (int os = 0; os < 2; os++) {
            tf_tcp_config c;
            tf_errmsg m;
            if (os)
                tf_tcp_config_init_os(&c);
            else
                tf_tcp_config_init(&c);
            bad_cases[i].set(&c);
            tf_err e = tf_tcp_config_validate(&c, &m);
            char want[TF_ERRMSG_LEN];
            snprintf(want, sizeof want, "bad config: %s", bad_cases[i].expect);
            if (e != TF_ERR_INVALID_ARGUMENT || strncmp(m.text, want, strlen(want)) != 0)
                fail_msg("case %zu (%s): %s, \"%s\"", i, os ? "init_os" : "init", tf_err_name(e),
                         m.text);
            /* tf__config_load refuses it the same way. */
            tf_tcp_config d;
            tf_errmsg m2;
            assert_int_equal(tf__config_load(&d, &c, &m2), TF_ERR_INVALID_ARGUMENT);
            assert_string_equal(m2.text, m.text);
        }
    }
}

static void test_tcp_config_validate_names_first_bad_field(void **state)
{
    (void)state;
    tf_tcp_config c;
    tf_errmsg m;
    tf_tcp_config_init(&c);
    c.accept_retries = 0;
    c.sndbuf = 0;
    assert_int_equal(tf_tcp_config_validate(&c, &m), TF_ERR_INVALID_ARGUMENT);
    assert_true(strncmp(m.text, "bad config: sndbuf = 0", 22) == 0);
}

static void test_tcp_config_validate_accepts_boundaries(void **state)
{
    (void)state;
    tf_tcp_config c;
    tf_errmsg m;
    tf_tcp_config_init(&c);
    c.connect_timeout_ms = INT_MAX;
    c.sndbuf = 1;
    c.rcvbuf = INT_MAX;
    c.nodelay = 0;
    c.keepalive_idle_s = 32767;
    c.keepalive_intvl_s = 1;
    c.keepalive_cnt = 127;
    c.user_timeout_ms = 0; /* the kernel's own rule */
    c.listen_backlog = 1;
    c.accept_retries = 1;
    c.connect_retries = 0; /* one attempt */
    c.retry_delay_ms = 0;
    c.retry_max_delay_ms = 0;
    c.max_recv_len = 0;
    c.max_send_len = UINT32_MAX;
    c.send_low_water = c.send_queue_bytes;
    c.linger_ms = 0;
    assert_int_equal(tf_tcp_config_validate(&c, &m), TF_OK);
    /* No deadline for the handshake; a zero deadline is fine when there is no handshake. */
    c.handshake_timeout_ms = TF_UNSET;
    assert_int_equal(tf_tcp_config_validate(&c, &m), TF_OK);
    c.handshake = 0;
    c.handshake_timeout_ms = 0;
    assert_int_equal(tf_tcp_config_validate(&c, &m), TF_OK);
    c.handshake = TF_UNSET;
    c.handshake_timeout_ms = 1;
    assert_int_equal(tf_tcp_config_validate(&c, &m), TF_OK);
}

static void test_tcp_config_validate_explicit_keepalive_disable(void **state)
{
    (void)state;
    tf_tcp_config c;
    tf_errmsg m;
    tf_tcp_config_init(&c);
    c.keepalive = 0; /* the three times stay set: valid */
    assert_int_equal(tf_tcp_config_validate(&c, &m), TF_OK);
    c.keepalive_idle_s = c.keepalive_intvl_s = c.keepalive_cnt = TF_UNSET;
    assert_int_equal(tf_tcp_config_validate(&c, &m), TF_OK);
    tf_tcp_config_init_os(&c);
    c.keepalive = 0;
    assert_int_equal(tf_tcp_config_validate(&c, &m), TF_OK);
}

static void test_tcp_config_validate_null(void **state)
{
    (void)state;
    tf_errmsg m;
    assert_int_equal(tf_tcp_config_validate(NULL, &m), TF_ERR_INVALID_ARGUMENT);
    assert_string_equal(m.text, "bad config: NULL");
    assert_int_equal(tf_tcp_config_validate(NULL, NULL), TF_ERR_INVALID_ARGUMENT);
}

/* ---------------------------------------------------------------- size-based extensibility */

static void test_config_load_null_gives_defaults(void **state)
{
    (void)state;
    tf_tcp_config got, want;
    tf_errmsg m;
    strcpy(m.text, "stale");
    memset(&got, 0x77, sizeof got);
    assert_int_equal(tf__config_load(&got, NULL, &m), TF_OK);
    tf_tcp_config_init(&want);
    assert_memory_equal(&got, &want, sizeof got);
    assert_string_equal(m.text, "");
}

static void test_config_load_copies_every_field(void **state)
{
    (void)state;
    tf_tcp_config src, got;
    custom(&src);
    assert_int_equal(tf__config_load(&got, &src, NULL), TF_OK);
    assert_memory_equal(&got, &src, sizeof got);
}

static void test_config_load_older_size_keeps_later_defaults(void **state)
{
    (void)state;
    /* A caller built when the struct ended after |handshake| (before the async fields). */
    const size_t old = offsetof(tf_tcp_config, handshake) + sizeof(int);
    tf_tcp_config src, got, def;
    custom(&src);
    /* What lies past the old size is not the caller's: garbage that must be ignored. */
    memset((unsigned char *)&src + old, 0xee, sizeof src - old);
    src.size = (uint32_t)old;
    tf_errmsg m;
    assert_int_equal(tf__config_load(&got, &src, &m), TF_OK);
    tf_tcp_config_init(&def);
    assert_int_equal(got.size, sizeof(tf_tcp_config));
    assert_int_equal(got.connect_timeout_ms, 1234);
    assert_int_equal(got.handshake, 0);
    assert_int_equal(got.max_send_len, 2000);
    assert_int_equal(got.send_queue_bytes, def.send_queue_bytes);
    assert_int_equal(got.send_low_water, def.send_low_water);
    assert_int_equal(got.read_buffer, def.read_buffer);
    assert_int_equal(got.accept_queue, def.accept_queue);
    assert_int_equal(tf_tcp_config_validate(&src, &m), TF_OK);

    /* A size that ends inside a field: that field is not the caller's either. */
    src.size = (uint32_t)(offsetof(tf_tcp_config, max_send_len) + 2);
    assert_int_equal(tf__config_load(&got, &src, &m), TF_OK);
    assert_int_equal(got.max_recv_len, 1000);
    assert_int_equal(got.max_send_len, TF_DEFAULT_MAX_LEN);
    assert_int_equal(got.handshake, 1);
}

static void test_config_init_sized_older_writes_only_its_bytes(void **state)
{
    (void)state;
    const size_t old = offsetof(tf_tcp_config, send_queue_bytes);
    union {
        tf_tcp_config c;
        unsigned char b[sizeof(tf_tcp_config)];
    } u;
    memset(u.b, 0xab, sizeof u.b);
    tf_tcp_config_init_sized(&u.c, old);
    assert_int_equal(u.c.size, old);
    assert_int_equal(u.c.connect_timeout_ms, 30000);
    assert_int_equal(u.c.handshake, 1);
    for (size_t i = old; i < sizeof u.b; i++)
        if (u.b[i] != 0xab)
            fail_msg("byte %zu past the caller's %zu bytes was written", i, old);
    memset(u.b, 0xab, sizeof u.b);
    tf_tcp_config_init_os_sized(&u.c, old);
    assert_int_equal(u.c.size, old);
    assert_int_equal(u.c.sndbuf, TF_UNSET);
    for (size_t i = old; i < sizeof u.b; i++)
        assert_int_equal(u.b[i], 0xab);
}

static void test_config_newer_size_unknown_fields_must_be_zero(void **state)
{
    (void)state;
    /* A caller built against a newer header with one more field. */
    struct newer {
        tf_tcp_config c;
        int64_t future;
    } n;
    memset(&n, 0x5a, sizeof n);
    tf_tcp_config_init_sized(&n.c, sizeof n);
    assert_int_equal(n.c.size, sizeof n);
    assert_int_equal(n.future, 0); /* this library zeroes what it does not know */
    tf_errmsg m;
    assert_int_equal(tf_tcp_config_validate(&n.c, &m), TF_OK);
    tf_tcp_config got;
    assert_int_equal(tf__config_load(&got, &n.c, &m), TF_OK);
    assert_int_equal(got.size, sizeof got);
    /* The newer field set: this library cannot honour it. */
    n.future = 1;
    assert_int_equal(tf_tcp_config_validate(&n.c, &m), TF_ERR_INVALID_ARGUMENT);
    char want[64];
    snprintf(want, sizeof want, "bad config: size = %zu: ", sizeof n);
    assert_true(strncmp(m.text, want, strlen(want)) == 0);
    assert_non_null(strstr(m.text, "newer"));
}

/* ---------------------------------------------------------------- tf__sock_apply */

/* A fresh TCP socket (not connected). */
static int tcp_socket(int family)
{
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    return fd;
}

/* SO_SNDBUF/SO_RCVBUF read back doubled on Linux (bookkeeping overhead), clamped by
 * net.core.[wr]mem_max: set v <= the max, read back between v and 2v. */
static void expect_buf(int fd, int name, int64_t v)
{
    int got = getopt_int(fd, SOL_SOCKET, name);
    if (got < v || got > 2 * v)
        fail_msg("%s set to %lld, reads back %d", name == SO_SNDBUF ? "SO_SNDBUF" : "SO_RCVBUF",
                 (long long)v, got);
}

static void test_sock_apply_custom_values_read_back(void **state)
{
    (void)state;
    tf_tcp_config c;
    tf_tcp_config_init(&c);
    c.sndbuf = 65536;
    c.rcvbuf = 131072;
    c.nodelay = 1;
    c.keepalive = 1;
    c.keepalive_idle_s = 120;
    c.keepalive_intvl_s = 7;
    c.keepalive_cnt = 4;
    c.user_timeout_ms = 12345;
    for (int fam = 0; fam < 2; fam++) {
        int fd = tcp_socket(fam ? AF_INET6 : AF_INET);
        int err = -1;
        tf_errmsg m;
        strcpy(m.text, "stale");
        assert_int_equal(tf__sock_apply(fd, &c, false, &err, &m), TF_OK);
        assert_int_equal(err, 0);
        assert_string_equal(m.text, "");
        expect_buf(fd, SO_SNDBUF, 65536);
        expect_buf(fd, SO_RCVBUF, 131072);
        assert_int_equal(getopt_int(fd, IPPROTO_TCP, TCP_NODELAY), 1);
        assert_int_equal(getopt_int(fd, SOL_SOCKET, SO_KEEPALIVE), 1);
        assert_int_equal(getopt_int(fd, IPPROTO_TCP, TCP_KEEPIDLE), 120);
        assert_int_equal(getopt_int(fd, IPPROTO_TCP, TCP_KEEPINTVL), 7);
        assert_int_equal(getopt_int(fd, IPPROTO_TCP, TCP_KEEPCNT), 4);
        assert_int_equal(getopt_int(fd, IPPROTO_TCP, TCP_USER_TIMEOUT), 12345);
        /* And back off: 0 is applied, not skipped. */
        c.nodelay = 0;
        c.user_timeout_ms = 0;
        assert_int_equal(tf__sock_apply(fd, &c, false, &err, &m), TF_OK);
        assert_int_equal(getopt_int(fd, IPPROTO_TCP, TCP_NODELAY), 0);
        assert_int_equal(getopt_int(fd, IPPROTO_TCP, TCP_USER_TIMEOUT), 0);
        c.nodelay = 1;
        c.user_timeout_ms = 12345;
        close(fd);
    }
}

static void test_sock_apply_production_defaults_read_back(void **state)
{
    (void)state;
    tf_tcp_config c;
    tf_tcp_config_init(&c);
    int fd = tcp_socket(AF_INET);
    assert_int_equal(tf__sock_apply(fd, &c, false, NULL, NULL), TF_OK);
    /* 1 MiB may be clamped by net.core.wmem_max/rmem_max: at least the kernel default grew. */
    int snd = getopt_int(fd, SOL_SOCKET, SO_SNDBUF);
    int rcv = getopt_int(fd, SOL_SOCKET, SO_RCVBUF);
    assert_true(snd >= 2 * 4096 && snd <= 2 * 1048576);
    assert_true(rcv >= 2 * 4096 && rcv <= 2 * 1048576);
    assert_int_equal(getopt_int(fd, IPPROTO_TCP, TCP_NODELAY), 1);
    assert_int_equal(getopt_int(fd, SOL_SOCKET, SO_KEEPALIVE), 1);
    assert_int_equal(getopt_int(fd, IPPROTO_TCP, TCP_KEEPIDLE), 60);
    assert_int_equal(getopt_int(fd, IPPROTO_TCP, TCP_KEEPINTVL), 5);
    assert_int_equal(getopt_int(fd, IPPROTO_TCP, TCP_KEEPCNT), 3);
    assert_int_equal(getopt_int(fd, IPPROTO_TCP, TCP_USER_TIMEOUT), 60000);
    close(fd);
}

static void test_sock_apply_os_defaults_leave_socket_alone(void **state)
{
    (void)state;
    static const struct {
        int level, name;
    } opts[] = {
        {SOL_SOCKET, SO_SNDBUF},    {SOL_SOCKET, SO_RCVBUF},         {IPPROTO_TCP, TCP_NODELAY},
        {SOL_SOCKET, SO_KEEPALIVE}, {IPPROTO_TCP, TCP_KEEPIDLE},     {IPPROTO_TCP, TCP_KEEPINTVL},
        {IPPROTO_TCP, TCP_KEEPCNT}, {IPPROTO_TCP, TCP_USER_TIMEOUT},
    };
    enum { N = sizeof opts / sizeof opts[0] };
    int fd = tcp_socket(AF_INET);
    int before[N];
    for (size_t i = 0; i < N; i++)
        before[i] = getopt_int(fd, opts[i].level, opts[i].name);
    tf_tcp_config c;
    tf_tcp_config_init_os(&c);
    assert_int_equal(tf__sock_apply(fd, &c, false, NULL, NULL), TF_OK);
    for (size_t i = 0; i < N; i++)
        assert_int_equal(getopt_int(fd, opts[i].level, opts[i].name), before[i]);
    close(fd);
}

static void test_sock_apply_keepalive_off_leaves_times(void **state)
{
    (void)state;
    int fd = tcp_socket(AF_INET);
    int idle = 77;
    assert_int_equal(setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle), 0);
    int one = 1;
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one), 0);
    tf_tcp_config c;
    tf_tcp_config_init(&c);
    c.keepalive = 0; /* times still 60/5/3 in the config */
    assert_int_equal(tf__sock_apply(fd, &c, false, NULL, NULL), TF_OK);
    assert_int_equal(getopt_int(fd, SOL_SOCKET, SO_KEEPALIVE), 0);
    assert_int_equal(getopt_int(fd, IPPROTO_TCP, TCP_KEEPIDLE), 77);
    close(fd);
}

static void test_sock_apply_unix_socketpair_strict_and_lenient(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    tf_tcp_config c;
    tf_tcp_config_init(&c);
    c.sndbuf = 65536;
    int err = 0;
    tf_errmsg m;
    /* Strict: the first TCP option fails, named with its value and the OS's reason. */
    assert_int_equal(tf__sock_apply(sv[0], &c, false, &err, &m), TF_ERR_IO);
    assert_int_equal(err, EOPNOTSUPP);
    assert_true(strncmp(m.text, "setsockopt TCP_NODELAY=1: ", 26) == 0);
    /* Lenient: TCP options skipped, socket-level ones applied. */
    c.sndbuf = 32768;
    c.keepalive = 1;
    assert_int_equal(tf__sock_apply(sv[1], &c, true, &err, &m), TF_OK);
    assert_int_equal(err, 0);
    assert_string_equal(m.text, "");
    expect_buf(sv[1], SO_SNDBUF, 32768);
    assert_int_equal(getopt_int(sv[1], SOL_SOCKET, SO_KEEPALIVE), 1);
    close(sv[0]);
    close(sv[1]);
}

static void test_sock_apply_not_a_socket_fails_even_lenient(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    tf_tcp_config c;
    tf_tcp_config_init(&c);
    for (int lenient = 0; lenient < 2; lenient++) {
        int err = 0;
        tf_errmsg m;
        assert_int_equal(tf__sock_apply(p[0], &c, lenient, &err, &m), TF_ERR_IO);
        assert_int_equal(err, ENOTSOCK);
        assert_true(strncmp(m.text, "setsockopt SO_SNDBUF=1048576: ", 30) == 0);
    }
    assert_int_equal(tf__sock_apply(-1, &c, false, NULL, NULL), TF_ERR_INVALID_ARGUMENT);
    assert_int_equal(tf__sock_apply(p[0], NULL, false, NULL, NULL), TF_ERR_INVALID_ARGUMENT);
    close(p[0]);
    close(p[1]);
}

/* ---------------------------------------------------------------- tf__sock_listen */

static void expect_listening(int fd)
{
    assert_true(fd >= 0);
    assert_int_equal(getopt_int(fd, SOL_SOCKET, SO_ACCEPTCONN), 1);
    assert_int_equal(getopt_int(fd, SOL_SOCKET, SO_REUSEADDR), 1);
    assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
}

/* The port of a "host:port" text. */
static int port_of(const char *s)
{
    const char *c = strrchr(s, ':');
    assert_non_null(c);
    return atoi(c + 1);
}

/* Connect a raw client to |addr|, accept it on |lfd| (non-blocking: wait), close both. */
static void expect_accepts(int lfd, const char *addr)
{
    int cfd = tu_raw_connect(addr);
    if (cfd < 0)
        fail_msg("raw connect to %s failed: %s", addr, strerror(errno));
    assert_int_equal(tf_fd_wait(lfd, POLLIN, DEADLINE_MS), TF_OK);
    int afd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    assert_true(afd >= 0);
    close(afd);
    close(cfd);
}

static void test_sock_listen_ipv4_loopback_ephemeral(void **state)
{
    (void)state;
    int fd = -7, err = -1;
    tf_errmsg m;
    strcpy(m.text, "stale");
    assert_int_equal(tf__sock_listen("127.0.0.1:0", NULL, &fd, &err, &m), TF_OK);
    assert_int_equal(err, 0);
    assert_string_equal(m.text, "");
    expect_listening(fd);
    char name[TF_ADDRSTR_LEN];
    assert_int_equal(tf__sock_name(fd, false, name, sizeof name), TF_OK);
    assert_true(strncmp(name, "127.0.0.1:", 10) == 0);
    assert_true(port_of(name) > 0);
    /* The default options were applied (accepted sockets inherit them). */
    assert_int_equal(getopt_int(fd, IPPROTO_TCP, TCP_NODELAY), 1);
    assert_int_equal(getopt_int(fd, IPPROTO_TCP, TCP_KEEPIDLE), 60);
    expect_accepts(fd, name);
    close(fd);
}

static void test_sock_listen_ipv6_loopback_ephemeral(void **state)
{
    (void)state;
    int fd = -1;
    tf_errmsg m;
    assert_int_equal(tf__sock_listen("[::1]:0", NULL, &fd, NULL, &m), TF_OK);
    expect_listening(fd);
    char name[TF_ADDRSTR_LEN];
    assert_int_equal(tf__sock_name(fd, false, name, sizeof name), TF_OK);
    assert_true(strncmp(name, "[::1]:", 6) == 0);
    expect_accepts(fd, name);
    close(fd);
}

static void test_sock_listen_wildcard_dual_stack(void **state)
{
    (void)state;
    const char *forms[] = {":0", "*:0", "[::]:0"};
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        int fd = -1;
        tf_errmsg m;
        assert_int_equal(tf__sock_listen(forms[i], NULL, &fd, NULL, &m), TF_OK);
        expect_listening(fd);
        char name[TF_ADDRSTR_LEN];
        assert_int_equal(tf__sock_name(fd, false, name, sizeof name), TF_OK);
        assert_true(strncmp(name, "[::]:", 5) == 0);
        assert_int_equal(getopt_int(fd, IPPROTO_IPV6, IPV6_V6ONLY), 0);
        /* Both families reach it. */
        char to[TF_ADDRSTR_LEN];
        snprintf(to, sizeof to, "127.0.0.1:%d", port_of(name));
        expect_accepts(fd, to);
        snprintf(to, sizeof to, "[::1]:%d", port_of(name));
        expect_accepts(fd, to);
        close(fd);
    }
}

/* The child of test_sock_listen_wildcard_dual_stack_despite_bindv6only: 0 on success, else
 * the number of the check that failed (77: no permission for a network namespace). */
static int v6only_child(void)
{
    if (unshare(CLONE_NEWNET) != 0)
        return 77;
    /* net.ipv6.bindv6only is per network namespace: set it in ours only. */
    int f = open("/proc/sys/net/ipv6/bindv6only", O_WRONLY | O_CLOEXEC);
    if (f < 0 || write(f, "1", 1) != 1)
        return 77;
    close(f);
    /* A new namespace's loopback is down. */
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) != 0)
        return 1;
    ifr.ifr_flags = (short)(ifr.ifr_flags | IFF_UP);
    if (ioctl(s, SIOCSIFFLAGS, &ifr) != 0)
        return 2;
    close(s);
    /* The setting took: a plain IPv6 socket is v6-only here. */
    int p = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int v = 0;
    socklen_t len = sizeof v;
    if (p < 0 || getsockopt(p, IPPROTO_IPV6, IPV6_V6ONLY, &v, &len) != 0 || v != 1)
        return 3;
    close(p);
    int fd = -1;
    if (tf__sock_listen(":0", NULL, &fd, NULL, NULL) != TF_OK)
        return 4;
    len = sizeof v;
    if (getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v, &len) != 0 || v != 0)
        return 5;
    char name[TF_ADDRSTR_LEN], to[TF_ADDRSTR_LEN];
    if (tf__sock_name(fd, false, name, sizeof name) != TF_OK)
        return 6;
    snprintf(to, sizeof to, "127.0.0.1:%s", strrchr(name, ':') + 1);
    int c = tu_raw_connect(to);
    if (c < 0)
        return 7;
    close(c);
    close(fd);
    return 0;
}

static void test_sock_listen_wildcard_dual_stack_despite_bindv6only(void **state)
{
    (void)state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(v6only_child());
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    if (WEXITSTATUS(st) == 77)
        skip(); /* no CAP_SYS_ADMIN: cannot make a network namespace */
    assert_int_equal(WEXITSTATUS(st), 0);
}

static void test_sock_listen_address_in_use_names_address(void **state)
{
    (void)state;
    int fd1 = -1, fd2 = 5, err = 0;
    tf_errmsg m;
    assert_int_equal(tf__sock_listen("127.0.0.1:0", NULL, &fd1, NULL, &m), TF_OK);
    char name[TF_ADDRSTR_LEN];
    assert_int_equal(tf__sock_name(fd1, false, name, sizeof name), TF_OK);
    assert_int_equal(tf__sock_listen(name, NULL, &fd2, &err, &m), TF_ERR_IO);
    assert_int_equal(fd2, -1);
    assert_int_equal(err, EADDRINUSE);
    char want[128];
    snprintf(want, sizeof want, "bind %s: %s", name, strerror(EADDRINUSE));
    assert_string_equal(m.text, want);
    close(fd1);
}

/* Hold every address "localhost" resolves to on one port; *n sockets in fds; the port. */
static int hold_localhost(int *fds, size_t *n)
{
    tf_addrlist l;
    tf_errmsg m;
    if (tf_addr_resolve("localhost:0", TF_FAMILY_ANY, true, &l, &m) != TF_OK)
        fail_msg("%s", m.text);
    for (int round = 0; round < 20; round++) {
        int port = 0;
        *n = 0;
        bool ok = true;
        for (size_t i = 0; i < l.n && ok; i++) {
            tf_addr a = l.a[i];
            if (a.ss.ss_family == AF_INET)
                ((struct sockaddr_in *)&a.ss)->sin_port = htons((uint16_t)port);
            else
                ((struct sockaddr_in6 *)&a.ss)->sin6_port = htons((uint16_t)port);
            int fd = socket(a.ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
            assert_true(fd >= 0);
            if (bind(fd, (struct sockaddr *)&a.ss, a.len) != 0 || listen(fd, 1) != 0) {
                close(fd); /* that port is taken on this family: another round */
                ok = false;
                break;
            }
            fds[(*n)++] = fd;
            if (port == 0) {
                char name[TF_ADDRSTR_LEN];
                assert_int_equal(tf__sock_name(fd, false, name, sizeof name), TF_OK);
                port = port_of(name);
            }
        }
        if (ok)
            return port;
        for (size_t i = 0; i < *n; i++)
            close(fds[i]);
    }
    fail_msg("no port free on every address of localhost in 20 tries");
    return -1;
}

static void test_sock_listen_name_in_use_names_resolved_address(void **state)
{
    (void)state;
    int held[TF_ADDRS_MAX];
    size_t n = 0;
    int port = hold_localhost(held, &n);
    char text[32];
    snprintf(text, sizeof text, "localhost:%d", port);
    tf_addrlist l;
    assert_int_equal(tf_addr_resolve(text, TF_FAMILY_ANY, true, &l, NULL), TF_OK);
    char first[TF_ADDRSTR_LEN];
    assert_int_equal(tf_addr_format(&l.a[0], first, sizeof first), TF_OK);
    int fd = 5, err = 0;
    tf_errmsg m;
    assert_int_equal(tf__sock_listen(text, NULL, &fd, &err, &m), TF_ERR_IO);
    assert_int_equal(fd, -1);
    assert_int_equal(err, EADDRINUSE);
    char want[TF_ERRMSG_LEN];
    snprintf(want, sizeof want, "bind %s (resolved from \"%s\"): %s", first, text,
             strerror(EADDRINUSE));
    assert_string_equal(m.text, want);
    for (size_t i = 0; i < n; i++)
        close(held[i]);
}

static void test_sock_listen_bad_address_and_config(void **state)
{
    (void)state;
    int fd = 5, err = 0;
    tf_errmsg m;
    assert_int_equal(tf__sock_listen("127.0.0.1", NULL, &fd, &err, &m), TF_ERR_BAD_ADDRESS);
    assert_int_equal(fd, -1);
    assert_true(strncmp(m.text, "bad address \"127.0.0.1\"", 23) == 0);
    tf_tcp_config c;
    tf_tcp_config_init(&c);
    c.listen_backlog = 0;
    assert_int_equal(tf__sock_listen("127.0.0.1:0", &c, &fd, &err, &m), TF_ERR_INVALID_ARGUMENT);
    assert_true(strncmp(m.text, "bad config: listen_backlog = 0", 30) == 0);
    assert_int_equal(tf__sock_listen(NULL, NULL, &fd, &err, &m), TF_ERR_INVALID_ARGUMENT);
    assert_int_equal(tf__sock_listen("127.0.0.1:0", NULL, NULL, &err, &m), TF_ERR_INVALID_ARGUMENT);
}

static void test_sock_listen_custom_options_and_backlog(void **state)
{
    (void)state;
    tf_tcp_config c;
    tf_tcp_config_init_os(&c);
    c.rcvbuf = 65536;
    c.listen_backlog = 1;
    int fd = -1;
    assert_int_equal(tf__sock_listen("127.0.0.1:0", &c, &fd, NULL, NULL), TF_OK);
    expect_listening(fd);
    expect_buf(fd, SO_RCVBUF, 65536);
    close(fd);
}

/* ---------------------------------------------------------------- connect */

static void resolve1(const char *text, tf_addr *a)
{
    tf_addrlist l;
    tf_errmsg m;
    if (tf_addr_resolve(text, TF_FAMILY_ANY, false, &l, &m) != TF_OK)
        fail_msg("%s", m.text);
    *a = l.a[0];
}

static void test_sock_connect_start_to_listening_port(void **state)
{
    (void)state;
    const char *where[] = {"127.0.0.1:0", "[::1]:0"};
    for (size_t i = 0; i < 2; i++) {
        int lfd = -1;
        assert_int_equal(tf__sock_listen(where[i], NULL, &lfd, NULL, NULL), TF_OK);
        char name[TF_ADDRSTR_LEN];
        assert_int_equal(tf__sock_name(lfd, false, name, sizeof name), TF_OK);
        tf_addr a;
        resolve1(name, &a);
        int fd = -1, err = -1;
        bool done = true;
        assert_int_equal(tf__sock_connect_start(&a, NULL, &fd, &done, &err), TF_OK);
        assert_true(fd >= 0);
        assert_int_equal(err, 0);
        assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
        assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
        if (!done)
            assert_int_equal(tf_fd_wait(fd, POLLOUT, DEADLINE_MS), TF_OK);
        assert_int_equal(tf__sock_connect_finish(fd, &err), TF_OK);
        assert_int_equal(err, 0);
        /* The options went on before connect. */
        assert_int_equal(getopt_int(fd, IPPROTO_TCP, TCP_NODELAY), 1);
        assert_int_equal(getopt_int(fd, IPPROTO_TCP, TCP_USER_TIMEOUT), 60000);
        char peer[TF_ADDRSTR_LEN];
        assert_int_equal(tf__sock_name(fd, true, peer, sizeof peer), TF_OK);
        assert_string_equal(peer, name);
        assert_int_equal(tf_fd_wait(lfd, POLLIN, DEADLINE_MS), TF_OK);
        int afd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        assert_true(afd >= 0);
        /* The accepted side's peer is our local address. */
        char local[TF_ADDRSTR_LEN], apeer[TF_ADDRSTR_LEN];
        assert_int_equal(tf__sock_name(fd, false, local, sizeof local), TF_OK);
        assert_int_equal(tf__sock_name(afd, true, apeer, sizeof apeer), TF_OK);
        assert_string_equal(local, apeer);
        close(afd);
        close(fd);
        close(lfd);
    }
}

/* Listen and connect under |c|, accept, move a byte each way; *cfd and *afd stay open. */
static void connect_pair(const tf_tcp_config *c, int *cfd, int *afd)
{
    int lfd = -1, err = 0;
    tf_errmsg m;
    if (tf__sock_listen("127.0.0.1:0", c, &lfd, &err, &m) != TF_OK)
        fail_msg("%s", m.text);
    char name[TF_ADDRSTR_LEN];
    assert_int_equal(tf__sock_name(lfd, false, name, sizeof name), TF_OK);
    tf_addr a;
    resolve1(name, &a);
    bool done = false;
    assert_int_equal(tf__sock_connect_start(&a, c, cfd, &done, &err), TF_OK);
    if (!done)
        assert_int_equal(tf_fd_wait(*cfd, POLLOUT, DEADLINE_MS), TF_OK);
    assert_int_equal(tf__sock_connect_finish(*cfd, &err), TF_OK);
    assert_int_equal(tf_fd_wait(lfd, POLLIN, DEADLINE_MS), TF_OK);
    *afd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    assert_true(*afd >= 0);
    close(lfd);
    char x = 'x', y = 0;
    assert_int_equal(send(*cfd, &x, 1, MSG_NOSIGNAL), 1);
    assert_true(tu_read_all(*afd, &y, 1));
    assert_int_equal(y, 'x');
    assert_int_equal(send(*afd, "y", 1, MSG_NOSIGNAL), 1);
    assert_int_equal(tf_fd_wait(*cfd, POLLIN, DEADLINE_MS), TF_OK);
    assert_int_equal(recv(*cfd, &y, 1, 0), 1);
    assert_int_equal(y, 'y');
}

static void test_sock_connect_os_default_config_connects(void **state)
{
    (void)state;
    /* The kernel's own values on a fresh socket, to compare with. */
    int probe = tcp_socket(AF_INET);
    int nodelay = getopt_int(probe, IPPROTO_TCP, TCP_NODELAY);
    int keepalive = getopt_int(probe, SOL_SOCKET, SO_KEEPALIVE);
    int idle = getopt_int(probe, IPPROTO_TCP, TCP_KEEPIDLE);
    int ut = getopt_int(probe, IPPROTO_TCP, TCP_USER_TIMEOUT);
    close(probe);
    tf_tcp_config c;
    tf_tcp_config_init_os(&c);
    int cfd = -1, afd = -1;
    connect_pair(&c, &cfd, &afd);
    for (int i = 0; i < 2; i++) {
        int fd = i ? afd : cfd;
        assert_int_equal(getopt_int(fd, IPPROTO_TCP, TCP_NODELAY), nodelay);
        assert_int_equal(getopt_int(fd, SOL_SOCKET, SO_KEEPALIVE), keepalive);
        assert_int_equal(getopt_int(fd, IPPROTO_TCP, TCP_KEEPIDLE), idle);
        assert_int_equal(getopt_int(fd, IPPROTO_TCP, TCP_USER_TIMEOUT), ut);
    }
    close(cfd);
    close(afd);
}

static void test_sock_connect_custom_config_connects(void **state)
{
    (void)state;
    tf_tcp_config c;
    custom(&c); /* nodelay 0, keepalive 0 (times 120/7/4 not applied), user timeout 12345 */
    c.nodelay = 1;
    c.keepalive = 1;
    int cfd = -1, afd = -1;
    connect_pair(&c, &cfd, &afd);
    /* The connecting socket got them before connect; the accepted one from its listener. */
    for (int i = 0; i < 2; i++) {
        int fd = i ? afd : cfd;
        expect_buf(fd, SO_SNDBUF, 65536);
        expect_buf(fd, SO_RCVBUF, 131072);
        assert_int_equal(getopt_int(fd, IPPROTO_TCP, TCP_NODELAY), 1);
        assert_int_equal(getopt_int(fd, SOL_SOCKET, SO_KEEPALIVE), 1);
        assert_int_equal(getopt_int(fd, IPPROTO_TCP, TCP_KEEPIDLE), 120);
        assert_int_equal(getopt_int(fd, IPPROTO_TCP, TCP_KEEPINTVL), 7);
        assert_int_equal(getopt_int(fd, IPPROTO_TCP, TCP_KEEPCNT), 4);
        assert_int_equal(getopt_int(fd, IPPROTO_TCP, TCP_USER_TIMEOUT), 12345);
    }
    close(cfd);
    close(afd);
}

static void test_sock_connect_start_closed_port_refused(void **state)
{
    (void)state;
    /* A port that was free a moment ago: bind, read it, close. Nothing listens there now. */
    int lfd = -1;
    assert_int_equal(tf__sock_listen("127.0.0.1:0", NULL, &lfd, NULL, NULL), TF_OK);
    char name[TF_ADDRSTR_LEN];
    assert_int_equal(tf__sock_name(lfd, false, name, sizeof name), TF_OK);
    close(lfd);
    tf_addr a;
    resolve1(name, &a);
    int fd = -1, err = 0;
    bool done = false;
    tf_err e = tf__sock_connect_start(&a, NULL, &fd, &done, &err);
    if (e == TF_OK) {
        assert_false(done);
        assert_int_equal(tf_fd_wait(fd, POLLOUT, DEADLINE_MS), TF_OK);
        assert_int_equal(tf__sock_connect_finish(fd, &err), TF_ERR_IO);
        close(fd);
    } else {
        assert_int_equal(e, TF_ERR_IO);
        assert_int_equal(fd, -1); /* no fd left open */
    }
    assert_int_equal(err, ECONNREFUSED);
    assert_true(tf__connect_retryable(err));
}

static void test_sock_connect_finish_still_in_progress(void **state)
{
    (void)state;
    /* A listener whose accept queue is full drops further SYNs: their connects stay in
     * progress (SYN_SENT, retransmitting) for as long as we look. */
    tf_tcp_config c;
    tf_tcp_config_init_os(&c);
    c.listen_backlog = 1;
    int lfd = -1;
    assert_int_equal(tf__sock_listen("127.0.0.1:0", &c, &lfd, NULL, NULL), TF_OK);
    char name[TF_ADDRSTR_LEN];
    assert_int_equal(tf__sock_name(lfd, false, name, sizeof name), TF_OK);
    tf_addr a;
    resolve1(name, &a);
    int fds[16];
    size_t n = 0;
    bool pending = false;
    while (n < 16 && !pending) {
        bool done = false;
        int err = 0;
        assert_int_equal(tf__sock_connect_start(&a, &c, &fds[n], &done, &err), TF_OK);
        int fd = fds[n++];
        if (done || tf_fd_wait(fd, POLLOUT, 200) == TF_OK) {
            assert_int_equal(tf__sock_connect_finish(fd, &err), TF_OK);
            continue;
        }
        /* Not writable: SO_ERROR is 0, yet it is not connected. */
        assert_int_equal(tf__sock_connect_finish(fd, &err), TF_ERR_IO);
        assert_int_equal(err, EINPROGRESS);
        pending = true;
    }
    assert_true(pending);
    for (size_t i = 0; i < n; i++)
        close(fds[i]);
    close(lfd);
}

static void test_sock_connect_start_fails_at_once_without_fd(void **state)
{
    (void)state;
    /* connect() itself refuses, before any packet: a link-local IPv6 without a scope id
     * (EINVAL), the IPv4 broadcast address (ENETUNREACH: no route for TCP). */
    static const struct {
        const char *addr;
        int err;
        bool retryable;
    } cases[] = {{"[fe80::1]:80", EINVAL, false}, {"255.255.255.255:80", ENETUNREACH, true}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tf_addr a;
        resolve1(cases[i].addr, &a);
        int fd = 7, err = 0;
        bool done = true;
        assert_int_equal(tf__sock_connect_start(&a, NULL, &fd, &done, &err), TF_ERR_IO);
        assert_int_equal(fd, -1);
        assert_false(done);
        assert_int_equal(err, cases[i].err);
        assert_true(tf__connect_retryable(err) == cases[i].retryable);
    }
}

static void test_sock_connect_start_bad_arguments(void **state)
{
    (void)state;
    tf_addr a;
    resolve1("127.0.0.1:1", &a);
    int fd = 3, err = 0;
    bool done;
    assert_int_equal(tf__sock_connect_start(NULL, NULL, &fd, &done, &err), TF_ERR_INVALID_ARGUMENT);
    assert_int_equal(fd, -1);
    assert_int_equal(tf__sock_connect_start(&a, NULL, NULL, &done, &err), TF_ERR_INVALID_ARGUMENT);
    tf_tcp_config c;
    tf_tcp_config_init(&c);
    c.sndbuf = 0;
    assert_int_equal(tf__sock_connect_start(&a, &c, &fd, &done, &err), TF_ERR_INVALID_ARGUMENT);
    assert_int_equal(fd, -1);
    /* An address family the OS has no sockets for: IO with its errno, no fd. */
    tf_addr bogus = a;
    bogus.ss.ss_family = AF_MAX + 1;
    assert_int_equal(tf__sock_connect_start(&bogus, NULL, &fd, &done, &err), TF_ERR_IO);
    assert_int_equal(err, EAFNOSUPPORT);
    assert_int_equal(fd, -1);
    assert_int_equal(tf__sock_connect_finish(-1, &err), TF_ERR_INVALID_ARGUMENT);
}

static void test_sock_connect_finish_not_a_socket(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    int err = 0;
    assert_int_equal(tf__sock_connect_finish(p[0], &err), TF_ERR_IO);
    assert_int_equal(err, ENOTSOCK);
    close(p[0]);
    close(p[1]);
}

static void test_sock_name_errors(void **state)
{
    (void)state;
    char buf[TF_ADDRSTR_LEN];
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    /* A UNIX socket has no host:port. */
    assert_int_equal(tf__sock_name(sv[0], true, buf, sizeof buf), TF_ERR_INVALID_ARGUMENT);
    close(sv[0]);
    close(sv[1]);
    /* An unconnected TCP socket has no peer. */
    int fd = tcp_socket(AF_INET);
    assert_int_equal(tf__sock_name(fd, true, buf, sizeof buf), TF_ERR_IO);
    assert_int_equal(errno, ENOTCONN);
    assert_int_equal(tf__sock_name(fd, false, buf, 3), TF_ERR_BUFFER_TOO_SMALL);
    close(fd);
    assert_int_equal(tf__sock_name(-1, false, buf, sizeof buf), TF_ERR_INVALID_ARGUMENT);
}

/* ---------------------------------------------------------------- retry policy */

static void test_connect_retryable_classes(void **state)
{
    (void)state;
    const int yes[] = {ECONNREFUSED, ETIMEDOUT,    EHOSTUNREACH,  ENETUNREACH,
                       ECONNRESET,   ECONNABORTED, EADDRNOTAVAIL, EINTR};
    const int no[] = {0, EACCES, EPERM, EINVAL, EAFNOSUPPORT, EBADF, EISCONN, ENOTSOCK};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
        assert_true(tf__connect_retryable(yes[i]));
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        assert_false(tf__connect_retryable(no[i]));
}

static void test_accept_transient_classes(void **state)
{
    (void)state;
    const int yes[] = {ECONNABORTED, EMFILE, ENFILE, ENOBUFS, ENOMEM, EINTR, EPROTO};
    const int no[] = {0, EBADF, EINVAL, ENOTSOCK, EFAULT};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
        assert_true(tf__accept_transient(yes[i]));
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        assert_false(tf__accept_transient(no[i]));
}

static void test_backoff_grows_and_caps(void **state)
{
    (void)state;
    tf_tcp_config c;
    tf_tcp_config_init(&c); /* 1000 ms doubling, cap 30000 */
    const uint64_t want[] = {1000, 1000, 2000, 4000, 8000, 16000, 30000, 30000};
    for (unsigned n = 0; n < sizeof want / sizeof want[0]; n++)
        assert_int_equal(tf__backoff_ms(&c, n, NULL), want[n]); /* no seed: no jitter */
    assert_int_equal(tf__backoff_ms(&c, 1000, NULL), 30000);    /* no overflow */
    assert_int_equal(tf__backoff_ms(&c, UINT32_MAX, NULL), 30000);
    /* No cap: grows to INT_MAX ms and stays. */
    c.retry_max_delay_ms = TF_UNSET;
    assert_int_equal(tf__backoff_ms(&c, 40, NULL), INT_MAX);
    /* No delay: retry at once. */
    c.retry_delay_ms = TF_UNSET;
    assert_int_equal(tf__backoff_ms(&c, 3, NULL), 0);
    c.retry_delay_ms = 0;
    assert_int_equal(tf__backoff_ms(&c, 3, NULL), 0);
    assert_int_equal(tf__backoff_ms(NULL, 3, NULL), 0);
}

static void test_backoff_jitter_bounded_and_deterministic(void **state)
{
    (void)state;
    tf_tcp_config c;
    tf_tcp_config_init(&c);
    uint32_t s1 = 42, s2 = 42, s3 = 7;
    bool varied = false, differs = false;
    uint64_t prev = 0;
    for (unsigned n = 1; n <= 40; n++) {
        uint64_t full = tf__backoff_ms(&c, n, NULL);
        uint64_t a = tf__backoff_ms(&c, n, &s1);
        uint64_t b = tf__backoff_ms(&c, n, &s2);
        uint64_t d = tf__backoff_ms(&c, n, &s3);
        assert_int_equal(a, b);                         /* same seed, same sequence */
        assert_true(a <= full && a >= full - full / 4); /* at most a quarter off, never above */
        assert_true(d <= full && d >= full - full / 4);
        varied |= n > 6 && a != prev; /* jitter at the cap too */
        differs |= a != d;
        prev = a;
    }
    assert_true(varied);
    assert_true(differs);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_errmsg_formats_truncates_and_clears),
        T(test_tcp_config_init_production_values),
        T(test_tcp_config_init_os_every_option_unset),
        T(test_tcp_config_init_function_pointer_same_as_macro),
        T(test_tcp_config_validate_accepts_both_inits),
        T(test_tcp_config_validate_rejects_each_bad_field),
        T(test_tcp_config_validate_names_first_bad_field),
        T(test_tcp_config_validate_accepts_boundaries),
        T(test_tcp_config_validate_explicit_keepalive_disable),
        T(test_tcp_config_validate_null),
        T(test_config_load_null_gives_defaults),
        T(test_config_load_copies_every_field),
        T(test_config_load_older_size_keeps_later_defaults),
        T(test_config_init_sized_older_writes_only_its_bytes),
        T(test_config_newer_size_unknown_fields_must_be_zero),
        T(test_sock_apply_custom_values_read_back),
        T(test_sock_apply_production_defaults_read_back),
        T(test_sock_apply_os_defaults_leave_socket_alone),
        T(test_sock_apply_keepalive_off_leaves_times),
        T(test_sock_apply_unix_socketpair_strict_and_lenient),
        T(test_sock_apply_not_a_socket_fails_even_lenient),
        T(test_sock_listen_ipv4_loopback_ephemeral),
        T(test_sock_listen_ipv6_loopback_ephemeral),
        T(test_sock_listen_wildcard_dual_stack),
        T(test_sock_listen_wildcard_dual_stack_despite_bindv6only),
        T(test_sock_listen_address_in_use_names_address),
        T(test_sock_listen_name_in_use_names_resolved_address),
        T(test_sock_listen_bad_address_and_config),
        T(test_sock_listen_custom_options_and_backlog),
        T(test_sock_connect_start_to_listening_port),
        T(test_sock_connect_os_default_config_connects),
        T(test_sock_connect_custom_config_connects),
        T(test_sock_connect_start_closed_port_refused),
        T(test_sock_connect_finish_still_in_progress),
        T(test_sock_connect_start_fails_at_once_without_fd),
        T(test_sock_connect_start_bad_arguments),
        T(test_sock_connect_finish_not_a_socket),
        T(test_sock_name_errors),
        T(test_connect_retryable_classes),
        T(test_accept_transient_classes),
        T(test_backoff_grows_and_caps),
        T(test_backoff_jitter_bounded_and_deterministic),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
