/* tests/test_tcp_config.c -- the socket configuration (tcp.h, io/tcp_config.c): production
 * and OS defaults, validation of every field (the message names the field and its value), the
 * size-based extensibility rule (older smaller and newer larger callers), and tf__errmsg. The
 * socket helpers built on it (io/sock.c) are tested in test_sock.c. Every test checks that it
 * leaked no fd. */
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

/* ---------------------------------------------------------------- helpers */

static int custom_cb(void *arg, int fd, int family, tf_sock_role role)
{
    (void)arg, (void)fd, (void)family, (void)role;
    return 0;
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
    c->ip_tos = 0x28;
    c->priority = 5;
    strcpy(c->bind_device, "lo");
    strcpy(c->local_addr, "127.0.0.1:0");
    c->sock_cb = custom_cb;
    c->sock_cb_arg = c;
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
    assert_int_equal(c.ip_tos, TF_UNSET);
    assert_int_equal(c.priority, TF_UNSET);
    assert_string_equal(c.bind_device, "");
    assert_string_equal(c.local_addr, "");
    assert_null(c.sock_cb);
    assert_null(c.sock_cb_arg);
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
BAD(ip_tos, 256, huge)
BAD(ip_tos, -2, neg)
BAD(priority, -2, neg)
BAD(priority, (int64_t)INT_MAX + 1, huge)
#undef BAD
static void set_bind_device_no_nul(tf_tcp_config *c)
{
    memset(c->bind_device, 'e', sizeof c->bind_device);
}
static void set_local_addr_no_nul(tf_tcp_config *c)
{
    memset(c->local_addr, '1', sizeof c->local_addr);
}
static void set_local_addr_name(tf_tcp_config *c)
{
    strcpy(c->local_addr, "localhost:0");
}
static void set_local_addr_no_port(tf_tcp_config *c)
{
    strcpy(c->local_addr, "127.0.0.1");
}

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
    {"ip_tos = 256: must be 0..255", set_ip_tos_huge},
    {"ip_tos = -2: ", set_ip_tos_neg},
    {"priority = -2: ", set_priority_neg},
    {"priority = 2147483648: must be 0..2147483647", set_priority_huge},
    {"bind_device has no NUL in its 16 bytes", set_bind_device_no_nul},
    {"local_addr has no NUL in its 64 bytes", set_local_addr_no_nul},
    {"local_addr = \"localhost:0\": must be a numeric address", set_local_addr_name},
    {"local_addr: bad address \"127.0.0.1\": missing ':'", set_local_addr_no_port},
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

static void test_config_load_size_before_socket_fields_gives_unset(void **state)
{
    (void)state;
    /* A caller built before the socket-level fields (issue 24): the struct ended at
     * accept_queue (192 bytes on x86_64). Past it: garbage, which must not be read. */
    const size_t old = offsetof(tf_tcp_config, accept_queue) + sizeof(int64_t);
    tf_tcp_config src, got;
    custom(&src);
    memset((unsigned char *)&src + old, 0xee, sizeof src - old);
    src.size = (uint32_t)old;
    tf_errmsg m;
    assert_int_equal(tf__config_load(&got, &src, &m), TF_OK);
    assert_int_equal(got.accept_queue, 3);
    assert_int_equal(got.ip_tos, TF_UNSET);
    assert_int_equal(got.priority, TF_UNSET);
    assert_string_equal(got.bind_device, "");
    assert_string_equal(got.local_addr, "");
    assert_null(got.sock_cb);
    assert_null(got.sock_cb_arg);
    /* The same caller sees its own bytes only from init_sized. */
    union {
        tf_tcp_config c;
        unsigned char b[sizeof(tf_tcp_config)];
    } u;
    memset(u.b, 0xab, sizeof u.b);
    tf_tcp_config_init_sized(&u.c, old);
    for (size_t i = old; i < sizeof u.b; i++)
        assert_int_equal(u.b[i], 0xab);
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

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, tu_fd_setup, tu_fd_teardown)
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
        T(test_config_load_size_before_socket_fields_gives_unset),
        T(test_config_init_sized_older_writes_only_its_bytes),
        T(test_config_newer_size_unknown_fields_must_be_zero),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
