/* tests/test_sockctl.c -- socket-level control (tcp.h, SPEC 9.4; issue 24): IP_TOS /
 * IPV6_TCLASS and SO_PRIORITY read back, SO_BINDTODEVICE on listening and connecting sockets,
 * the socket hook (called once, before bind / connect, after the options; its errno fails the
 * call), local_addr (the server sees the client's chosen address), and servers started on an
 * already-listening fd (sync and async: the fd is taken over, checked, closed on failure).
 * Loopback only; every test checks that it leaked no fd. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"
#include "tcpframe/async.h"
#include "tcpframe/fdio.h"
#include "tcpframe/sync.h"
#include "tu_async.h"
#include "tu_net.h"
#include "tu_sync.h"

#define DEADLINE_MS 10000

static bool fd_is_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0 || errno != EBADF;
}

static void resolve1(const char *text, tf_addr *a)
{
    tf_addrlist l;
    assert_int_equal(tf_addr_resolve(text, TF_FAMILY_ANY, false, &l, NULL), TF_OK);
    *a = l.a[0];
}

/* Connect a tf__sock_connect_start socket to |lfd|'s address under |c|; accept it. */
static void dial(int lfd, const tf_tcp_config *c, int *cfd, int *afd)
{
    char name[TF_ADDRSTR_LEN];
    assert_int_equal(tf__sock_name(lfd, false, name, sizeof name), TF_OK);
    tf_addr a;
    resolve1(name, &a);
    bool done = false;
    int err = 0;
    assert_int_equal(tf__sock_connect_start(&a, c, cfd, &done, &err), TF_OK);
    if (!done)
        assert_int_equal(tf_fd_wait(*cfd, POLLOUT, DEADLINE_MS), TF_OK);
    assert_int_equal(tf__sock_connect_finish(*cfd, &err), TF_OK);
    assert_int_equal(tf_fd_wait(lfd, POLLIN, DEADLINE_MS), TF_OK);
    *afd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    assert_true(*afd >= 0);
}

/* ---------------------------------------------------------------- TOS, priority */

static void test_sock_apply_tos_and_priority_read_back(void **state)
{
    (void)state;
    tf_tcp_config c;
    tf_tcp_config_init_os(&c);
    c.ip_tos = 0x28; /* AF11 (DSCP 10), ECN bits clear: TCP keeps those to itself */
    c.priority = 5;
    int v4 = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int v6 = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(v4 >= 0 && v6 >= 0);
    tf_errmsg m;
    assert_int_equal(tf__sock_apply(v4, &c, false, NULL, &m), TF_OK);
    assert_int_equal(tf__sock_apply(v6, &c, false, NULL, &m), TF_OK);
    assert_int_equal(tu_getopt_int(v4, IPPROTO_IP, IP_TOS), 0x28);
    assert_int_equal(tu_getopt_int(v4, SOL_SOCKET, SO_PRIORITY), 5);
    assert_int_equal(tu_getopt_int(v6, IPPROTO_IPV6, IPV6_TCLASS), 0x28);
    assert_int_equal(tu_getopt_int(v6, IPPROTO_IP, IP_TOS), 0x28); /* v4-mapped traffic */
    assert_int_equal(tu_getopt_int(v6, SOL_SOCKET, SO_PRIORITY), 5);
    close(v4);
    close(v6);

    /* Unset: the kernel's values stay. */
    tf_tcp_config_init(&c);
    v4 = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int tos0 = tu_getopt_int(v4, IPPROTO_IP, IP_TOS), prio0 = tu_getopt_int(v4, SOL_SOCKET, SO_PRIORITY);
    assert_int_equal(tf__sock_apply(v4, &c, false, NULL, &m), TF_OK);
    assert_int_equal(tu_getopt_int(v4, IPPROTO_IP, IP_TOS), tos0);
    assert_int_equal(tu_getopt_int(v4, SOL_SOCKET, SO_PRIORITY), prio0);
    close(v4);
}

static void test_sock_apply_tos_skipped_on_unix_socket(void **state)
{
    (void)state;
    tf_tcp_config c;
    tf_tcp_config_init_os(&c);
    c.ip_tos = 0x10;
    c.priority = 2;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    /* Not IP: no IP_TOS attempted even strictly; SO_PRIORITY is a socket-level option. */
    tf_errmsg m;
    assert_int_equal(tf__sock_apply(sv[0], &c, false, NULL, &m), TF_OK);
    assert_int_equal(tu_getopt_int(sv[0], SOL_SOCKET, SO_PRIORITY), 2);
    close(sv[0]);
    close(sv[1]);
}

static void test_accepted_socket_carries_tos_and_priority(void **state)
{
    (void)state;
    tf_tcp_config c;
    tf_tcp_config_init(&c);
    c.ip_tos = 0x48;
    c.priority = 4;
    int lfd = -1, cfd = -1, afd = -1;
    tf_errmsg m;
    assert_int_equal(tf__sock_listen("127.0.0.1:0", &c, &lfd, NULL, &m), TF_OK);
    assert_int_equal(tu_getopt_int(lfd, IPPROTO_IP, IP_TOS), 0x48);
    dial(lfd, &c, &cfd, &afd);
    assert_int_equal(tu_getopt_int(cfd, IPPROTO_IP, IP_TOS), 0x48);
    assert_int_equal(tu_getopt_int(cfd, SOL_SOCKET, SO_PRIORITY), 4);
    /* The sync server sets them on each accepted socket too; the kernel copies IP_TOS. */
    assert_int_equal(tu_getopt_int(afd, IPPROTO_IP, IP_TOS), 0x48);
    close(afd);
    close(cfd);
    close(lfd);
}

/* ---------------------------------------------------------------- SO_BINDTODEVICE */

static void bound_device(int fd, char *buf, size_t len)
{
    socklen_t l = (socklen_t)len;
    memset(buf, 0, len);
    assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, buf, &l), 0);
}

static void test_bind_device_listen_and_connect_on_lo(void **state)
{
    (void)state;
    tf_tcp_config c;
    tf_tcp_config_init(&c);
    strcpy(c.bind_device, "lo");
    int lfd = -1, err = 0, cfd = -1, afd = -1;
    tf_errmsg m;
    tf_err e = tf__sock_listen("127.0.0.1:0", &c, &lfd, &err, &m);
    if (e != TF_OK && err == EPERM)
        skip(); /* SO_BINDTODEVICE needs CAP_NET_RAW on this kernel */
    assert_int_equal(e, TF_OK);
    char dev[IFNAMSIZ];
    bound_device(lfd, dev, sizeof dev);
    assert_string_equal(dev, "lo");
    dial(lfd, &c, &cfd, &afd);
    bound_device(cfd, dev, sizeof dev);
    assert_string_equal(dev, "lo");
    close(afd);
    close(cfd);
    close(lfd);
}

static void test_bind_device_unknown_fails_named(void **state)
{
    (void)state;
    tf_tcp_config c;
    tf_tcp_config_init(&c);
    strcpy(c.bind_device, "tfnodev0");
    int lfd = -1, err = 0;
    tf_errmsg m;
    assert_int_equal(tf__sock_listen("127.0.0.1:0", &c, &lfd, &err, &m), TF_ERR_IO);
    assert_int_equal(lfd, -1);
    if (err == EPERM)
        skip();
    assert_int_equal(err, ENODEV);
    assert_non_null(strstr(m.text, "setsockopt SO_BINDTODEVICE 127.0.0.1:0: "));
    /* A client socket: the connect fails before it starts, no fd left. */
    tf_addr a;
    resolve1("127.0.0.1:9", &a);
    int fd = 7777;
    bool done = true;
    assert_int_equal(tf__sock_connect_start(&a, &c, &fd, &done, &err), TF_ERR_IO);
    assert_int_equal(fd, -1);
    assert_int_equal(err, ENODEV);
}

/* ---------------------------------------------------------------- the socket hook */

typedef struct hook_log {
    int calls, fd, family;
    tf_sock_role role;
    int answer;     /* what the hook returns */
    bool bound;     /* the socket had a local port when the hook ran */
    bool connected; /* ... or a peer */
    int nodelay;    /* TCP_NODELAY as the hook saw it (the config's options come first) */
} hook_log;

static int hook(void *arg, int fd, int family, tf_sock_role role)
{
    hook_log *h = arg;
    h->calls++;
    h->fd = fd;
    h->family = family;
    h->role = role;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    h->bound = getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 &&
               ((struct sockaddr_in *)&ss)->sin_port != 0;
    sl = sizeof ss;
    h->connected = getpeername(fd, (struct sockaddr *)&ss, &sl) == 0;
    int v = -1;
    socklen_t vl = sizeof v;
    getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &vl);
    h->nodelay = v;
    return h->answer;
}

static void test_sock_cb_runs_before_bind_and_connect(void **state)
{
    (void)state;
    const char *where[] = {"127.0.0.1:0", "[::1]:0"};
    for (int i = 0; i < 2; i++) {
        hook_log lh = {0}, ch = {0};
        tf_tcp_config lc, cc;
        tf_tcp_config_init(&lc);
        lc.sock_cb = hook;
        lc.sock_cb_arg = &lh;
        cc = lc;
        cc.sock_cb_arg = &ch;
        strcpy(cc.local_addr, i == 0 ? "127.0.0.1:0" : "[::1]:0");
        int lfd = -1, cfd = -1, afd = -1;
        tf_errmsg m;
        assert_int_equal(tf__sock_listen(where[i], &lc, &lfd, NULL, &m), TF_OK);
        assert_int_equal(lh.calls, 1);
        assert_int_equal(lh.fd, lfd);
        assert_int_equal(lh.family, i == 0 ? AF_INET : AF_INET6);
        assert_int_equal(lh.role, TF_SOCK_LISTEN);
        assert_false(lh.bound);
        assert_int_equal(lh.nodelay, 1);
        dial(lfd, &cc, &cfd, &afd);
        assert_int_equal(ch.calls, 1);
        assert_int_equal(ch.fd, cfd);
        assert_int_equal(ch.family, i == 0 ? AF_INET : AF_INET6);
        assert_int_equal(ch.role, TF_SOCK_CONNECT);
        assert_false(ch.bound); /* before the local bind */
        assert_false(ch.connected);
        assert_int_equal(ch.nodelay, 1);
        assert_int_equal(lh.calls, 1); /* accepted sockets are not passed to it */
        close(afd);
        close(cfd);
        close(lfd);
    }
}

static void test_sock_cb_error_fails_the_call(void **state)
{
    (void)state;
    hook_log h = {.answer = EPERM};
    tf_tcp_config c;
    tf_tcp_config_init(&c);
    c.sock_cb = hook;
    c.sock_cb_arg = &h;
    int lfd = -1, err = 0;
    tf_errmsg m;
    assert_int_equal(tf__sock_listen("127.0.0.1:0", &c, &lfd, &err, &m), TF_ERR_IO);
    assert_int_equal(lfd, -1);
    assert_int_equal(err, EPERM);
    assert_non_null(strstr(m.text, "socket callback 127.0.0.1:0: "));
    assert_false(fd_is_open(h.fd)); /* the library closed the socket */

    tf_addr a;
    resolve1("127.0.0.1:9", &a);
    int fd = 1234;
    bool done = true;
    h.answer = -3; /* not an errno value: EINVAL */
    assert_int_equal(tf__sock_connect_start(&a, &c, &fd, &done, &err), TF_ERR_IO);
    assert_int_equal(fd, -1);
    assert_int_equal(err, EINVAL);
    assert_false(fd_is_open(h.fd));

    /* Through the public API: a sync connect reports it, not retried (EACCES is final). */
    h.answer = EACCES;
    h.calls = 0;
    tf_sync_conn *conn = NULL;
    int os = 0;
    assert_int_equal(tf_sync_connect("127.0.0.1:9", &c, &conn, &os, &m), TF_ERR_IO);
    assert_null(conn);
    assert_int_equal(os, EACCES);
    assert_int_equal(h.calls, 1);
}

/* ---------------------------------------------------------------- local_addr */

static void test_local_addr_is_the_peer_the_server_sees(void **state)
{
    (void)state;
    tf_tcp_config c;
    tf_tcp_config_init(&c);
    strcpy(c.local_addr, "127.0.0.2:0");
    int lfd = -1, cfd = -1, afd = -1;
    assert_int_equal(tf__sock_listen("127.0.0.1:0", NULL, &lfd, NULL, NULL), TF_OK);
    dial(lfd, &c, &cfd, &afd);
    char peer[TF_ADDRSTR_LEN], local[TF_ADDRSTR_LEN];
    assert_int_equal(tf__sock_name(afd, true, peer, sizeof peer), TF_OK);
    assert_int_equal(tf__sock_name(cfd, false, local, sizeof local), TF_OK);
    assert_string_equal(peer, local);
    assert_true(strncmp(peer, "127.0.0.2:", 10) == 0);
    close(afd);
    close(cfd);

    /* A fixed local port, v6 too. */
    int pfd = -1, port = 0;
    pfd = tu_raw_unused_port(true, &port); /* a free port, held until we bind it ourselves */
    assert_true(pfd >= 0);
    close(pfd);
    int l6 = -1;
    assert_int_equal(tf__sock_listen("[::1]:0", NULL, &l6, NULL, NULL), TF_OK);
    snprintf(c.local_addr, sizeof c.local_addr, "[::1]:%d", port);
    dial(l6, &c, &cfd, &afd);
    assert_int_equal(tf__sock_name(afd, true, peer, sizeof peer), TF_OK);
    char want[TF_ADDRSTR_LEN];
    snprintf(want, sizeof want, "[::1]:%d", port);
    assert_string_equal(peer, want);
    close(afd);
    close(cfd);
    close(l6);
    close(lfd);
}

static void test_local_addr_other_family_refused(void **state)
{
    (void)state;
    tf_tcp_config c;
    tf_tcp_config_init(&c);
    strcpy(c.local_addr, "[::1]:0");
    tf_addr a;
    resolve1("127.0.0.1:9", &a);
    int fd = 5, err = 0;
    bool done = true;
    assert_int_equal(tf__sock_connect_start(&a, &c, &fd, &done, &err), TF_ERR_IO);
    assert_int_equal(fd, -1);
    assert_int_equal(err, EAFNOSUPPORT);
}

static void test_sync_connect_with_local_addr(void **state)
{
    (void)state;
    char addr[TF_ADDRSTR_LEN + 16];
    tf_sync_server *s = tu_listen("127.0.0.1", NULL, addr, sizeof addr);
    tf_tcp_config c;
    tf_tcp_config_init(&c);
    strcpy(c.local_addr, "127.0.0.3:0");
    tu_connector k;
    tu_connect_start(&k, addr, &c);
    tf_sync_conn *srv = NULL;
    tf_errmsg m;
    assert_int_equal(tf_sync_server_accept(s, &srv, NULL, &m), TF_OK);
    tu_connect_join(&k);
    assert_int_equal(k.err, TF_OK);
    char peer[TF_ADDRSTR_LEN];
    assert_int_equal(tf_sync_conn_peer(srv, peer, sizeof peer), TF_OK);
    assert_true(strncmp(peer, "127.0.0.3:", 10) == 0);
    tu_exchange(srv, k.c);
    tf_sync_conn_free(k.c);
    tf_sync_conn_free(srv);
    tf_sync_server_free(s);
}

/* The async client: local_addr and the hook go through the same socket path; the hook runs on
 * the loop thread (tcp.h). */
typedef struct loop_hook {
    tf_evb *evb;
    int calls;
    bool on_loop;
} loop_hook;

static int loop_hook_fn(void *arg, int fd, int family, tf_sock_role role)
{
    (void)fd, (void)family;
    loop_hook *h = arg;
    h->calls++;
    h->on_loop = tf_evb_in_loop_thread(h->evb) && role == TF_SOCK_CONNECT;
    return 0;
}

static void test_async_client_local_addr_and_hook_on_loop(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    char addr[TF_ADDRSTR_LEN + 16];
    tf_sync_server *s = tu_listen("127.0.0.1", NULL, addr, sizeof addr);
    loop_hook h = {.evb = f.evb};
    tf_tcp_config c;
    tf_tcp_config_init(&c);
    strcpy(c.local_addr, "127.0.0.4:0");
    c.sock_cb = loop_hook_fn;
    c.sock_cb_arg = &h;
    tf_async_client *cl;
    tf_errmsg m;
    assert_int_equal(tf_async_client_new(f.evb, &c, &cl, &m), TF_OK);
    tf_future *fu = NULL;
    assert_int_equal(tf_async_client_connect(cl, addr, &fu, &m), TF_OK);
    tf_sync_conn *srv = NULL;
    assert_int_equal(tf_sync_server_accept(s, &srv, NULL, &m), TF_OK);
    void *owned = NULL;
    assert_int_equal(tu_fut_result(fu, NULL, &owned), TF_OK);
    char peer[TF_ADDRSTR_LEN];
    assert_int_equal(tf_sync_conn_peer(srv, peer, sizeof peer), TF_OK);
    assert_true(strncmp(peer, "127.0.0.4:", 10) == 0);
    assert_int_equal(h.calls, 1); /* read after the future: the loop wrote it before */
    assert_true(h.on_loop);
    tf_async_conn_free(owned);
    tf_sync_conn_free(srv);
    tf_async_client_free(cl);
    tf_sync_server_free(s);
    tu_fx_end(&f);
}

/* ---------------------------------------------------------------- servers on a given fd */

static void test_sync_server_init_fd_serves_and_owns_fd(void **state)
{
    (void)state;
    int port = 0;
    int lfd = tu_raw_listen(false, &port); /* blocking, as another program would hand it over */
    assert_true(lfd >= 0);
    fcntl(lfd, F_SETFD, 0);
    tf_sync_server *s;
    assert_int_equal(tf_sync_server_new(&s), TF_OK);
    tf_tcp_config c;
    tf_tcp_config_init(&c);
    c.ip_tos = 0x20;
    tf_errmsg m;
    assert_int_equal(tf_sync_server_init_fd(s, lfd, &c, &m), TF_OK);
    assert_string_equal(m.text, "");
    assert_true(fcntl(lfd, F_GETFL) & O_NONBLOCK);
    assert_true(fcntl(lfd, F_GETFD) & FD_CLOEXEC);
    assert_int_equal(tu_getopt_int(lfd, IPPROTO_IP, IP_TOS), 0x20);
    char bound[TF_ADDRSTR_LEN], want[TF_ADDRSTR_LEN];
    assert_int_equal(tf_sync_server_addr(s, bound, sizeof bound), TF_OK);
    snprintf(want, sizeof want, "127.0.0.1:%d", port);
    assert_string_equal(bound, want);
    /* A second init: refused, and the fd given to it is the server's to close. */
    int other = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(tf_sync_server_init_fd(s, other, NULL, &m), TF_ERR_BAD_STATE);
    assert_false(fd_is_open(other));
    tu_connector k;
    tu_connect_start(&k, want, NULL);
    tf_sync_conn *srv = NULL;
    assert_int_equal(tf_sync_server_accept(s, &srv, NULL, &m), TF_OK);
    tu_connect_join(&k);
    assert_int_equal(k.err, TF_OK);
    tu_exchange(srv, k.c);
    tf_sync_conn_free(k.c);
    tf_sync_conn_free(srv);
    tf_sync_server_free(s);
    assert_false(fd_is_open(lfd));
}

/* Each kind of fd that is not a listening TCP or Unix socket (or breaks the config's Unix-only
 * uid rule): INVALID_ARGUMENT naming it, fd closed. */
static void test_server_init_fd_refuses_other_fds(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    for (int kind = 0; kind < 4; kind++) {
        for (int mode = 0; mode < 2; mode++) {
            int fd = -1, p[2] = {-1, -1};
            const char *why = NULL;
            tf_tcp_config rule;
            const tf_tcp_config *cfg = NULL;
            if (kind == 0) {
                assert_int_equal(pipe2(p, O_CLOEXEC), 0);
                fd = p[0];
                why = "not a socket";
            } else if (kind == 1) {
                fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                why = "listen() was not called on it";
            } else if (kind == 2) {
                fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
                why = "not a stream socket";
            } else {
                /* A listening TCP socket with the Unix-only uid rule (a Unix-domain listening
                 * socket is taken: SPEC 9.9). */
                int port = 0;
                fd = tu_raw_listen(false, &port);
                tf_tcp_config_init(&rule);
                rule.unix_peer_same_uid = 1;
                cfg = &rule;
                why = "need a Unix-domain socket";
            }
            assert_true(fd >= 0);
            tf_errmsg m;
            tf_err e;
            if (mode == 0) {
                tf_sync_server *s;
                assert_int_equal(tf_sync_server_new(&s), TF_OK);
                e = tf_sync_server_init_fd(s, fd, cfg, &m);
                tf_sync_server_free(s);
            } else {
                tf_async_server *s;
                assert_int_equal(tf_async_server_new(f.evb, &s), TF_OK);
                e = tf_async_server_init_fd(s, fd, cfg, &m);
                tf_async_server_free(s);
            }
            if (e != TF_ERR_INVALID_ARGUMENT || !strstr(m.text, why))
                fail_msg("kind %d mode %d: %s \"%s\"", kind, mode, tf_err_name(e), m.text);
            assert_false(fd_is_open(fd));
            if (p[1] >= 0)
                close(p[1]);
        }
    }
    /* fd < 0, NULL server. */
    tf_sync_server *s;
    assert_int_equal(tf_sync_server_new(&s), TF_OK);
    assert_int_equal(tf_sync_server_init_fd(s, -1, NULL, NULL), TF_ERR_INVALID_ARGUMENT);
    tf_sync_server_free(s);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(tf_sync_server_init_fd(NULL, fd, NULL, NULL), TF_ERR_INVALID_ARGUMENT);
    assert_false(fd_is_open(fd));
    tf_async_server *as;
    assert_int_equal(tf_async_server_new(f.evb, &as), TF_OK);
    assert_int_equal(tf_async_server_init_fd(as, -1, NULL, NULL), TF_ERR_INVALID_ARGUMENT);
    /* A bad config: refused, fd closed. */
    tf_tcp_config c;
    tf_tcp_config_init(&c);
    c.sndbuf = 0;
    int port = 0;
    fd = tu_raw_listen(false, &port);
    tf_errmsg m;
    assert_int_equal(tf_async_server_init_fd(as, fd, &c, &m), TF_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(m.text, "sndbuf"));
    assert_false(fd_is_open(fd));
    tf_async_server_free(as);
    tu_fx_end(&f);
}

static void test_async_server_init_fd_accepts(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    int port = 0;
    int lfd = tu_raw_listen(true, &port);
    assert_true(lfd >= 0);
    tf_async_server *s;
    assert_int_equal(tf_async_server_new(f.evb, &s), TF_OK);
    tf_errmsg m;
    assert_int_equal(tf_async_server_init_fd(s, lfd, NULL, &m), TF_OK);
    char bound[TF_ADDRSTR_LEN], want[TF_ADDRSTR_LEN];
    assert_int_equal(tf_async_server_addr(s, bound, sizeof bound), TF_OK);
    snprintf(want, sizeof want, "[::1]:%d", port);
    assert_string_equal(bound, want);
    tf_future *fu = NULL;
    assert_int_equal(tf_async_server_accept(s, &fu), TF_OK);
    tf_sync_conn *cli = NULL;
    assert_int_equal(tf_sync_connect(want, NULL, &cli, NULL, &m), TF_OK);
    void *owned = NULL;
    assert_int_equal(tu_fut_result(fu, NULL, &owned), TF_OK);
    tf_async_conn *srv = owned;
    assert_non_null(srv);
    assert_int_equal(tf_sync_conn_send(cli, "ping", 4, DEADLINE_MS), TF_OK);
    tf_future *rf = NULL;
    assert_int_equal(tf_async_conn_recv_alloc(srv, DEADLINE_MS, &rf), TF_OK);
    size_t n = 0;
    void *msg = NULL;
    assert_int_equal(tu_fut_result(rf, &n, &msg), TF_OK);
    assert_int_equal(n, 4);
    assert_memory_equal(msg, "ping", 4);
    free(msg);
    tf_async_conn_free(srv);
    tf_sync_conn_free(cli);
    tf_async_server_free(s);
    assert_false(fd_is_open(lfd));
    tu_fx_end(&f);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, tu_fd_setup, tu_fd_teardown)
    const struct CMUnitTest tests[] = {
        T(test_sock_apply_tos_and_priority_read_back),
        T(test_sock_apply_tos_skipped_on_unix_socket),
        T(test_accepted_socket_carries_tos_and_priority),
        T(test_bind_device_listen_and_connect_on_lo),
        T(test_bind_device_unknown_fails_named),
        T(test_sock_cb_runs_before_bind_and_connect),
        T(test_sock_cb_error_fails_the_call),
        T(test_local_addr_is_the_peer_the_server_sees),
        T(test_local_addr_other_family_refused),
        T(test_sync_connect_with_local_addr),
        T(test_async_client_local_addr_and_hook_on_loop),
        T(test_sync_server_init_fd_serves_and_owns_fd),
        T(test_server_init_fd_refuses_other_fds),
        T(test_async_server_init_fd_accepts),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
