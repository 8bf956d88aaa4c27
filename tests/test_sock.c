/* tests/test_sock.c -- the socket helpers (io/sock.c) built on the configuration of tcp.h:
 * options applied to real sockets and read back with getsockopt, the OS default config leaving
 * a socket as the kernel made it, listen on loopback v4/v6 and the wildcard, EADDRINUSE named,
 * connect to a listening and to a closed port, retry and back-off policy. Loopback only. Every
 * test checks that it leaked no fd. (Split from test_tcp_config.c.) */
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
    int got = tu_getopt_int(fd, SOL_SOCKET, name);
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
        assert_int_equal(tu_getopt_int(fd, IPPROTO_TCP, TCP_NODELAY), 1);
        assert_int_equal(tu_getopt_int(fd, SOL_SOCKET, SO_KEEPALIVE), 1);
        assert_int_equal(tu_getopt_int(fd, IPPROTO_TCP, TCP_KEEPIDLE), 120);
        assert_int_equal(tu_getopt_int(fd, IPPROTO_TCP, TCP_KEEPINTVL), 7);
        assert_int_equal(tu_getopt_int(fd, IPPROTO_TCP, TCP_KEEPCNT), 4);
        assert_int_equal(tu_getopt_int(fd, IPPROTO_TCP, TCP_USER_TIMEOUT), 12345);
        /* And back off: 0 is applied, not skipped. */
        c.nodelay = 0;
        c.user_timeout_ms = 0;
        assert_int_equal(tf__sock_apply(fd, &c, false, &err, &m), TF_OK);
        assert_int_equal(tu_getopt_int(fd, IPPROTO_TCP, TCP_NODELAY), 0);
        assert_int_equal(tu_getopt_int(fd, IPPROTO_TCP, TCP_USER_TIMEOUT), 0);
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
    int snd = tu_getopt_int(fd, SOL_SOCKET, SO_SNDBUF);
    int rcv = tu_getopt_int(fd, SOL_SOCKET, SO_RCVBUF);
    assert_true(snd >= 2 * 4096 && snd <= 2 * 1048576);
    assert_true(rcv >= 2 * 4096 && rcv <= 2 * 1048576);
    assert_int_equal(tu_getopt_int(fd, IPPROTO_TCP, TCP_NODELAY), 1);
    assert_int_equal(tu_getopt_int(fd, SOL_SOCKET, SO_KEEPALIVE), 1);
    assert_int_equal(tu_getopt_int(fd, IPPROTO_TCP, TCP_KEEPIDLE), 60);
    assert_int_equal(tu_getopt_int(fd, IPPROTO_TCP, TCP_KEEPINTVL), 5);
    assert_int_equal(tu_getopt_int(fd, IPPROTO_TCP, TCP_KEEPCNT), 3);
    assert_int_equal(tu_getopt_int(fd, IPPROTO_TCP, TCP_USER_TIMEOUT), 60000);
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
        before[i] = tu_getopt_int(fd, opts[i].level, opts[i].name);
    tf_tcp_config c;
    tf_tcp_config_init_os(&c);
    assert_int_equal(tf__sock_apply(fd, &c, false, NULL, NULL), TF_OK);
    for (size_t i = 0; i < N; i++)
        assert_int_equal(tu_getopt_int(fd, opts[i].level, opts[i].name), before[i]);
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
    assert_int_equal(tu_getopt_int(fd, SOL_SOCKET, SO_KEEPALIVE), 0);
    assert_int_equal(tu_getopt_int(fd, IPPROTO_TCP, TCP_KEEPIDLE), 77);
    close(fd);
}

static void test_sock_apply_unix_socketpair_strict_and_lenient(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    tf_tcp_config c;
    tf_tcp_config_init(&c);
    c.ip_tos = 16;
    /* Strict or lenient alike: on a Unix-domain socket the TCP options, keepalive and the
     * traffic class are skipped (SPEC 9.9), the socket-level ones applied. */
    for (int lenient = 0; lenient < 2; lenient++) {
        int err = -1;
        tf_errmsg m;
        c.sndbuf = lenient ? 32768 : 65536;
        assert_int_equal(tf__sock_apply(sv[lenient], &c, lenient, &err, &m), TF_OK);
        assert_int_equal(err, 0);
        assert_string_equal(m.text, "");
        expect_buf(sv[lenient], SO_SNDBUF, (int)c.sndbuf);
        assert_int_equal(tu_getopt_int(sv[lenient], SOL_SOCKET, SO_KEEPALIVE), 0);
    }
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
    assert_int_equal(tu_getopt_int(fd, SOL_SOCKET, SO_ACCEPTCONN), 1);
    assert_int_equal(tu_getopt_int(fd, SOL_SOCKET, SO_REUSEADDR), 1);
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
    assert_int_equal(tu_getopt_int(fd, IPPROTO_TCP, TCP_NODELAY), 1);
    assert_int_equal(tu_getopt_int(fd, IPPROTO_TCP, TCP_KEEPIDLE), 60);
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
        assert_int_equal(tu_getopt_int(fd, IPPROTO_IPV6, IPV6_V6ONLY), 0);
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
    char want[TF_ADDRSTR_LEN + 64];
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
        assert_int_equal(tu_getopt_int(fd, IPPROTO_TCP, TCP_NODELAY), 1);
        assert_int_equal(tu_getopt_int(fd, IPPROTO_TCP, TCP_USER_TIMEOUT), 60000);
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
    int nodelay = tu_getopt_int(probe, IPPROTO_TCP, TCP_NODELAY);
    int keepalive = tu_getopt_int(probe, SOL_SOCKET, SO_KEEPALIVE);
    int idle = tu_getopt_int(probe, IPPROTO_TCP, TCP_KEEPIDLE);
    int ut = tu_getopt_int(probe, IPPROTO_TCP, TCP_USER_TIMEOUT);
    close(probe);
    tf_tcp_config c;
    tf_tcp_config_init_os(&c);
    int cfd = -1, afd = -1;
    connect_pair(&c, &cfd, &afd);
    for (int i = 0; i < 2; i++) {
        int fd = i ? afd : cfd;
        assert_int_equal(tu_getopt_int(fd, IPPROTO_TCP, TCP_NODELAY), nodelay);
        assert_int_equal(tu_getopt_int(fd, SOL_SOCKET, SO_KEEPALIVE), keepalive);
        assert_int_equal(tu_getopt_int(fd, IPPROTO_TCP, TCP_KEEPIDLE), idle);
        assert_int_equal(tu_getopt_int(fd, IPPROTO_TCP, TCP_USER_TIMEOUT), ut);
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
        assert_int_equal(tu_getopt_int(fd, IPPROTO_TCP, TCP_NODELAY), 1);
        assert_int_equal(tu_getopt_int(fd, SOL_SOCKET, SO_KEEPALIVE), 1);
        assert_int_equal(tu_getopt_int(fd, IPPROTO_TCP, TCP_KEEPIDLE), 120);
        assert_int_equal(tu_getopt_int(fd, IPPROTO_TCP, TCP_KEEPINTVL), 7);
        assert_int_equal(tu_getopt_int(fd, IPPROTO_TCP, TCP_KEEPCNT), 4);
        assert_int_equal(tu_getopt_int(fd, IPPROTO_TCP, TCP_USER_TIMEOUT), 12345);
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
    /* A socketpair's ends are unnamed Unix-domain sockets: "unix:" (SPEC 9.9). */
    assert_int_equal(tf__sock_name(sv[0], true, buf, sizeof buf), TF_OK);
    assert_string_equal(buf, "unix:");
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
    const int yes[] = {ECONNREFUSED, ETIMEDOUT,     EHOSTUNREACH, ENETUNREACH, ECONNRESET,
                       ECONNABORTED, EADDRNOTAVAIL, EINTR,        ENOENT};
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
#define T(f) cmocka_unit_test_setup_teardown(f, tu_fd_setup, tu_fd_teardown)
    const struct CMUnitTest tests[] = {
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
