/* tests/test_sync_connect.c -- the blocking connect (sync.h, SPEC 9.6) over loopback
 * (127.0.0.1 and ::1), against peers that are not a tcpframe server: nothing listening
 * (retries counted from the message, which names the address and the reason), retries cut
 * short by the connect timeout, a listener whose accept queue is full (the kernel drops our
 * SYN: a real connect timeout), a listener that never answers the magic (handshake timeout),
 * wrong servers (bad magic, early close, truncated magic), handshake off, a server trickling
 * its magic one byte at a time, and bad arguments. Every test runs under the no-progress
 * watchdog and checks in its teardown that no fd leaked. Assertions only on the main thread. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sys/socket.h>

#include "tcpframe/sync.h"
#include "test_io_util.h"
#include "tu_net.h"
#include "tu_sync.h"

/* ---------------------------------------------------------------- fixture */

/* Per test: the watchdog and the open-fd count, checked in the teardown. *state is the host. */
static int fds_before;

static int setup(void **state)
{
    fds_before = tu_fd_count();
    return tio_watchdog_setup(state);
}

static int teardown(void **state)
{
    tu_alloc_reset();
    tio_watchdog_teardown(state);
    assert_int_equal(tu_fd_count(), fds_before); /* no fd leaked */
    return 0;
}

/* ---------------------------------------------------------------- connect failures */

/* Nothing listens: every attempt is refused; 3 retries = 4 attempts, counted in the message,
 * which names the address and the reason. */
static void test_connect_nothing_listening(void **state)
{
    int port;
    int hold = tu_raw_unused_port(tu_host_v6(state), &port);
    assert_true(hold >= 0);
    char addr[80];
    tu_addr_of(addr, sizeof addr, tu_host(state), port);
    tf_tcp_config cfg;
    tf_tcp_config_init(&cfg);
    cfg.connect_retries = 3;
    cfg.retry_delay_ms = 10;
    cfg.retry_max_delay_ms = 40;
    tf_sync_conn *c = (tf_sync_conn *)&cfg;
    int os = 0;
    tf_errmsg msg;
    assert_int_equal(tf_sync_connect(addr, &cfg, &c, &os, &msg), TF_ERR_IO);
    printf("# %s\n", msg.text);
    assert_null(c);
    assert_int_equal(os, ECONNREFUSED);
    assert_non_null(strstr(msg.text, addr));
    assert_non_null(strstr(msg.text, strerror(ECONNREFUSED)));
    assert_non_null(strstr(msg.text, "(4 attempts)"));
    cfg.connect_retries = 0;
    assert_int_equal(tf_sync_connect(addr, &cfg, &c, &os, &msg), TF_ERR_IO);
    assert_non_null(strstr(msg.text, "(1 attempt)"));
    close(hold);
}

/* Retries that would outlast the connect timeout end with TIMEOUT inside it. */
static void test_connect_retries_bounded_by_timeout(void **state)
{
    int port;
    int hold = tu_raw_unused_port(tu_host_v6(state), &port);
    char addr[80];
    tu_addr_of(addr, sizeof addr, tu_host(state), port);
    tf_tcp_config cfg;
    tf_tcp_config_init(&cfg);
    cfg.connect_retries = 1000;
    cfg.retry_delay_ms = 20;
    cfg.retry_max_delay_ms = 80;
    cfg.connect_timeout_ms = 300;
    tf_sync_conn *c;
    int os = 0;
    tf_errmsg msg;
    uint64_t t0 = tu_now_ms();
    assert_int_equal(tf_sync_connect(addr, &cfg, &c, &os, &msg), TF_ERR_TIMEOUT);
    uint64_t took = tu_now_ms() - t0;
    printf("# %s [%llu ms]\n", msg.text, (unsigned long long)took);
    assert_int_equal(os, ECONNREFUSED); /* what the last attempt met */
    assert_non_null(strstr(msg.text, addr));
    assert_true(took < 300u + 2000u); /* bounded by the timeout, generously */
    int attempts = atoi(strrchr(msg.text, '(') + 1);
    assert_true(attempts >= 2 && attempts < 1000); /* it retried, and stopped early */
    close(hold);
}

/* A listener that never accepts, its queue full (backlog 0 and raw connects): the kernel drops
 * our SYN, so only the connect timeout ends the attempt. */
static void test_connect_timeout_full_backlog(void **state)
{
    int port;
    int lfd = tu_raw_listen_backlog(tu_host_v6(state), 0, &port);
    assert_true(lfd >= 0);
    int fill[4];
    for (int i = 0; i < 4; i++)
        fill[i] = tu_raw_connect_start(tu_host_v6(state), port);
    tu_nap(50);
    char addr[80];
    tu_addr_of(addr, sizeof addr, tu_host(state), port);
    tf_tcp_config cfg;
    tf_tcp_config_init(&cfg);
    cfg.connect_timeout_ms = 300;
    tf_sync_conn *c;
    tf_errmsg msg;
    uint64_t t0 = tu_now_ms();
    assert_int_equal(tf_sync_connect(addr, &cfg, &c, NULL, &msg), TF_ERR_TIMEOUT);
    uint64_t took = tu_now_ms() - t0;
    printf("# %s [%llu ms]\n", msg.text, (unsigned long long)took);
    assert_true(took >= 300u && took < 300u + 5000u);
    assert_true(strncmp(msg.text, "connect ", 8) == 0); /* the connect, not the handshake */
    assert_non_null(strstr(msg.text, addr));
    for (int i = 0; i < 4; i++)
        if (fill[i] >= 0)
            close(fill[i]);
    close(lfd);
}

/* The TCP connect succeeds (the kernel queues it) but nobody ever answers the magic. */
static void test_connect_handshake_timeout(void **state)
{
    int port;
    int lfd = tu_raw_listen_backlog(tu_host_v6(state), 8, &port);
    char addr[80];
    tu_addr_of(addr, sizeof addr, tu_host(state), port);
    tf_tcp_config cfg;
    tf_tcp_config_init(&cfg);
    cfg.handshake_timeout_ms = 200;
    tf_sync_conn *c;
    tf_errmsg msg;
    uint64_t t0 = tu_now_ms();
    assert_int_equal(tf_sync_connect(addr, &cfg, &c, NULL, &msg), TF_ERR_TIMEOUT);
    printf("# %s [%llu ms]\n", msg.text, (unsigned long long)(tu_now_ms() - t0));
    assert_true(strncmp(msg.text, "handshake with ", 15) == 0);
    close(lfd);
}

/* A raw server answers the connect's handshake with |reply| (n bytes) after reading our magic,
 * then closes. */
static tf_err connect_to_raw_server(void **state, const char *reply, size_t n, tf_errmsg *msg)
{
    int port;
    int lfd = tu_raw_listen_backlog(tu_host_v6(state), 8, &port);
    char addr[80];
    tu_addr_of(addr, sizeof addr, tu_host(state), port);
    tu_connector k;
    tu_connect_start(&k, addr, NULL);
    int fd = accept(lfd, NULL, NULL);
    assert_true(fd >= 0);
    assert_true(tu_expect_magic(fd));
    if (n)
        assert_true(tu_write_all(fd, reply, n));
    close(fd);
    tu_connect_join(&k);
    close(lfd);
    *msg = k.msg;
    assert_null(k.c);
    return k.err;
}

static void test_connect_rejects_wrong_server(void **state)
{
    tf_errmsg msg;
    assert_int_equal(connect_to_raw_server(state, "HTTP", 4, &msg), TF_ERR_BAD_MAGIC);
    printf("# %s\n", msg.text);
    assert_true(strncmp(msg.text, "handshake with ", 15) == 0);
    assert_int_equal(connect_to_raw_server(state, NULL, 0, &msg), TF_ERR_CLOSED);
    assert_int_equal(connect_to_raw_server(state, "UNI", 3, &msg), TF_ERR_TRUNCATED);
}

/* Handshake off: the connect returns right after the TCP connect; frames from the first byte. */
static void test_connect_handshake_off(void **state)
{
    int port;
    int lfd = tu_raw_listen_backlog(tu_host_v6(state), 8, &port);
    char addr[80];
    tu_addr_of(addr, sizeof addr, tu_host(state), port);
    tf_tcp_config cfg;
    tf_tcp_config_init(&cfg);
    cfg.handshake = 0;
    tf_sync_conn *c;
    assert_int_equal(tf_sync_connect(addr, &cfg, &c, NULL, NULL), TF_OK); /* nobody accepted */
    int fd = accept(lfd, NULL, NULL);
    assert_true(fd >= 0);
    assert_int_equal(tf_sync_conn_send(c, "plain", 5, 5000), TF_OK);
    char buf[8];
    uint32_t l;
    assert_true(tu_read_frame(fd, buf, sizeof buf, &l)); /* no magic before it */
    assert_int_equal(l, 5);
    assert_true(tu_write_frame(fd, "back", 4));
    size_t len;
    assert_int_equal(tf_sync_conn_recv(c, buf, sizeof buf, &len, 5000), TF_OK);
    assert_int_equal(len, 4);
    tf_sync_conn_free(c);
    close(fd);
    close(lfd);
}

/* A server that trickles its magic and a frame one byte at a time, 2 ms apart. */
static void test_connect_trickle_server(void **state)
{
    static const uint8_t bytes[] = {'U', 'N', 'I', 'F', 0, 0, 0, 3, 'a', 'b', 'c'};
    int port;
    int lfd = tu_raw_listen_backlog(tu_host_v6(state), 8, &port);
    char addr[80];
    tu_addr_of(addr, sizeof addr, tu_host(state), port);
    tu_connector k;
    tu_connect_start(&k, addr, NULL);
    int fd = accept(lfd, NULL, NULL);
    assert_true(fd >= 0);
    for (size_t i = 0; i < sizeof bytes; i++) {
        assert_true(tu_write_all(fd, &bytes[i], 1));
        tu_nap(2);
    }
    assert_true(tu_expect_magic(fd));
    tu_connect_join(&k);
    assert_int_equal(k.err, TF_OK);
    char buf[8];
    size_t len;
    assert_int_equal(tf_sync_conn_recv(k.c, buf, sizeof buf, &len, 5000), TF_OK);
    assert_int_equal(len, 3);
    assert_memory_equal(buf, "abc", 3);
    tf_sync_conn_free(k.c);
    close(fd);
    close(lfd);
}

/* A host name goes through the resolver; each address it gives is tried in turn. */
static void test_connect_by_name(void **state)
{
    (void)state;
    char addr[80];
    tf_sync_server *s = tu_listen("127.0.0.1", NULL, addr, sizeof addr);
    char name[80];
    snprintf(name, sizeof name, "localhost%s", strrchr(addr, ':'));
    tu_connector k;
    tu_connect_start(&k, name, NULL);
    tf_sync_conn *c;
    assert_int_equal(tf_sync_server_accept(s, &c, NULL, NULL), TF_OK);
    tu_connect_join(&k);
    assert_int_equal(k.err, TF_OK);
    tu_exchange(c, k.c);
    tf_sync_conn_free(c);
    tf_sync_conn_free(k.c);
    tf_sync_server_free(s);
}

static void test_connect_bad_arguments(void **state)
{
    (void)state;
    tf_sync_conn *c;
    tf_errmsg msg;
    assert_int_equal(tf_sync_connect("localhost", NULL, &c, NULL, &msg), TF_ERR_BAD_ADDRESS);
    printf("# %s\n", msg.text);
    assert_int_equal(tf_sync_connect("[::1:80", NULL, &c, NULL, &msg), TF_ERR_BAD_ADDRESS);
    assert_int_equal(tf_sync_connect(NULL, NULL, &c, NULL, &msg), TF_ERR_INVALID_ARGUMENT);
    assert_int_equal(tf_sync_connect("127.0.0.1:1", NULL, NULL, NULL, &msg),
                     TF_ERR_INVALID_ARGUMENT);
    tf_tcp_config cfg;
    tf_tcp_config_init(&cfg);
    cfg.connect_timeout_ms = -5;
    assert_int_equal(tf_sync_connect("127.0.0.1:1", &cfg, &c, NULL, &msg), TF_ERR_INVALID_ARGUMENT);
    printf("# %s\n", msg.text);
    assert_non_null(strstr(msg.text, "connect_timeout_ms"));
}

/* ---------------------------------------------------------------- main */

#define V4 ((void *)"127.0.0.1")
#define V6 ((void *)"[::1]")
#define T(f, host) cmocka_unit_test_prestate_setup_teardown(f, setup, teardown, host)
#define T2(f) T(f, V4), T(f, V6)

int main(void)
{
    tio_filter_from_env();
    /* clang-format off */
    const struct CMUnitTest tests[] = {
        T2(test_connect_nothing_listening),
        T2(test_connect_retries_bounded_by_timeout),
        T2(test_connect_timeout_full_backlog),
        T2(test_connect_handshake_timeout),
        T2(test_connect_rejects_wrong_server),
        T2(test_connect_handshake_off),
        T2(test_connect_trickle_server),
        T(test_connect_by_name, NULL),
        T(test_connect_bad_arguments, NULL),
    };
    /* clang-format on */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
