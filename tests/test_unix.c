/* tests/test_unix.c -- Unix-domain sockets (SPEC 9.9): sync and async servers and clients over a
 * path and an abstract name (echo, peer addresses, TCP options skipped), the listening path
 * removed at shutdown only when the server created it and it is still that file (a stale
 * socket file refused or replaced, a regular file or a live server never touched, a path
 * taken over with init_fd kept), the peer's credentials (this process's pid, uid, gid; TCP
 * has none), the uid rule (rejects counted and reported as PEER_DENIED), a client started before
 * its server (ENOENT retried), bad addresses.
 * Every test checks that no fd leaked. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"
#include "tcpframe/async.h"
#include "tcpframe/sync.h"
#include "tu_async.h"
#include "tu_net.h"
#include "tu_sync.h"

/* ---------------------------------------------------------------- fixture */

static int fds_before;
static char dir[64]; /* a fresh directory per test for the socket files */

static int setup(void **state)
{
    (void)state;
    fds_before = tu_fd_count();
    snprintf(dir, sizeof dir, "/tmp/tf-unix-XXXXXX");
    return fds_before < 0 || !mkdtemp(dir) ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        return -1;
    int now = tu_fd_count();
    if (now != fds_before) {
        fprintf(stderr, "fd leak: %d open before the test, %d after\n", fds_before, now);
        return -1;
    }
    return 0;
}

/* "unix:<dir>/<name>" into addr; the bare path into path (if not NULL). */
static void unix_path(char *addr, size_t len, char *path, size_t plen, const char *name)
{
    snprintf(addr, len, "unix:%s/%s", dir, name);
    if (path)
        snprintf(path, plen, "%s/%s", dir, name);
}

/* An abstract name no other run of this test uses at the same time. */
static void unix_abstract(char *addr, size_t len, const char *name)
{
    static unsigned seq;
    snprintf(addr, len, "unix:@tf-test-%ld-%u-%s", (long)getpid(), seq++, name);
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static bool is_socket_file(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0 && S_ISSOCK(st.st_mode);
}

/* A config with every TCP-only option set: all skipped on a Unix socket, none an error. */
static tf_tcp_config tcp_heavy(void)
{
    tf_tcp_config c;
    tf_tcp_config_init(&c);
    c.nodelay = 1;
    c.keepalive = 1;
    c.user_timeout_ms = 1000;
    c.ip_tos = 16;
    c.sndbuf = 65536;
    c.rcvbuf = 65536;
    c.connect_timeout_ms = 10000;
    return c;
}

static void expect_self_cred(const tf_peer_cred *pc)
{
    assert_int_equal(pc->pid, getpid());
    assert_int_equal(pc->uid, getuid());
    assert_int_equal(pc->gid, getgid());
}

/* ---------------------------------------------------------------- sync */

/* A sync server on |addr|, one client, one message each way, peers and credentials. */
static void sync_echo(const char *addr)
{
    tf_tcp_config cfg = tcp_heavy();
    tf_sync_server *s;
    tf_errmsg msg;
    assert_int_equal(tf_sync_server_new(&s), TF_OK);
    tf_err e = tf_sync_server_init(s, addr, &cfg, &msg);
    if (e != TF_OK)
        fail_msg("init %s: %s", addr, msg.text);
    char bound[TF_ADDRSTR_LEN];
    assert_int_equal(tf_sync_server_addr(s, bound, sizeof bound), TF_OK);
    assert_string_equal(bound, addr);

    tu_connector k;
    tu_connect_start(&k, addr, &cfg);
    tf_sync_conn *srv = NULL;
    assert_int_equal(tf_sync_server_accept(s, &srv, NULL, &msg), TF_OK);
    tu_connect_join(&k);
    if (k.err != TF_OK)
        fail_msg("connect %s: %s", addr, k.msg.text);
    tu_exchange(srv, k.c);
    tu_exchange(k.c, srv);

    char peer[TF_ADDRSTR_LEN];
    assert_int_equal(tf_sync_conn_peer(srv, peer, sizeof peer), TF_OK);
    assert_string_equal(peer, "unix:"); /* the client never bound: unnamed */
    assert_int_equal(tf_sync_conn_peer(k.c, peer, sizeof peer), TF_OK);
    assert_string_equal(peer, addr);
    tf_peer_cred pc;
    assert_int_equal(tf_sync_conn_peer_cred(srv, &pc), TF_OK);
    expect_self_cred(&pc);
    assert_int_equal(tf_sync_conn_peer_cred(k.c, &pc), TF_OK);
    expect_self_cred(&pc);
    /* Still known after the peer has gone. */
    tf_sync_conn_free(k.c);
    assert_int_equal(tf_sync_conn_peer_cred(srv, &pc), TF_OK);
    expect_self_cred(&pc);
    tf_sync_conn_free(srv);
    tf_sync_server_free(s);
}

static void test_unix_sync_echo_path_and_unlinked_at_shutdown(void **state)
{
    (void)state;
    char addr[TF_ADDRSTR_LEN], path[TF_ADDRSTR_LEN];
    unix_path(addr, sizeof addr, path, sizeof path, "sync.sock");
    sync_echo(addr);
    assert_false(exists(path)); /* we created it: removed */

    /* Shutdown alone (before free) removes it too. */
    tf_sync_server *s;
    assert_int_equal(tf_sync_server_new(&s), TF_OK);
    assert_int_equal(tf_sync_server_init(s, addr, NULL, NULL), TF_OK);
    assert_true(is_socket_file(path));
    assert_int_equal(tf_sync_server_shutdown(s), TF_OK);
    assert_false(exists(path));
    tf_sync_server_free(s);
}

static void test_unix_sync_echo_abstract(void **state)
{
    (void)state;
    char addr[TF_ADDRSTR_LEN];
    unix_abstract(addr, sizeof addr, "sync");
    sync_echo(addr);
    /* The name is free again once the server is gone: a new server takes it. */
    tf_sync_server *s;
    assert_int_equal(tf_sync_server_new(&s), TF_OK);
    assert_int_equal(tf_sync_server_init(s, addr, NULL, NULL), TF_OK);
    tf_sync_server_free(s);
}

/* A sync pair over TCP: no credentials. */
static void test_unix_peer_cred_refused_on_tcp(void **state)
{
    (void)state;
    tf_sync_conn *a, *b;
    tu_lib_pair("127.0.0.1", NULL, &a, &b);
    tf_peer_cred pc;
    memset(&pc, 0xa5, sizeof pc);
    assert_int_equal(tf_sync_conn_peer_cred(a, &pc), TF_ERR_INVALID_ARGUMENT);
    assert_int_equal(pc.pid, 0);
    assert_int_equal(pc.uid, 0);
    assert_int_equal(tf_sync_conn_peer_cred(b, NULL), TF_ERR_INVALID_ARGUMENT);
    assert_int_equal(tf_sync_conn_peer_cred(NULL, &pc), TF_ERR_INVALID_ARGUMENT);
    tf_sync_conn_free(a);
    tf_sync_conn_free(b);
}

/* ---------------------------------------------------------------- the listening path */

/* A socket file nobody listens on (as a crashed server leaves it). */
static void make_stale(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_un su = {.sun_family = AF_UNIX};
    snprintf(su.sun_path, sizeof su.sun_path, "%s", path);
    assert_int_equal(bind(fd, (struct sockaddr *)&su, sizeof su), 0);
    close(fd);
    assert_true(is_socket_file(path));
}

static void test_unix_stale_socket_refused_unless_replace_stale(void **state)
{
    (void)state;
    char addr[TF_ADDRSTR_LEN], path[TF_ADDRSTR_LEN];
    unix_path(addr, sizeof addr, path, sizeof path, "stale.sock");
    make_stale(path);
    for (int mode = 0; mode < 2; mode++) {
        tf_errmsg msg;
        tf_err e;
        int os = 0;
        if (mode == 0) {
            tf_sync_server *s;
            assert_int_equal(tf_sync_server_new(&s), TF_OK);
            e = tf_sync_server_init(s, addr, NULL, &msg);
            tf_sync_server_free(s);
        } else {
            tu_fx f;
            tu_fx_start(&f);
            tf_async_server *s;
            assert_int_equal(tf_async_server_new(f.evb, &s), TF_OK);
            e = tf_async_server_init(s, addr, NULL, &msg);
            tf_async_server_free(s);
            tu_fx_end(&f);
        }
        (void)os;
        if (e != TF_ERR_IO || !strstr(msg.text, "stale socket file") ||
            !strstr(msg.text, "unix_replace_stale") || !strstr(msg.text, addr))
            fail_msg("mode %d: %s \"%s\"", mode, tf_err_name(e), msg.text);
        assert_true(is_socket_file(path)); /* left as it was */
    }
    /* With the flag: replaced, served, and removed at the end (it is ours now). */
    tf_tcp_config cfg;
    tf_tcp_config_init(&cfg);
    cfg.unix_replace_stale = 1;
    tf_sync_server *s;
    assert_int_equal(tf_sync_server_new(&s), TF_OK);
    tf_errmsg msg;
    tf_err e = tf_sync_server_init(s, addr, &cfg, &msg);
    if (e != TF_OK)
        fail_msg("replace: %s", msg.text);
    tu_connector k;
    tu_connect_start(&k, addr, NULL);
    tf_sync_conn *c = NULL;
    assert_int_equal(tf_sync_server_accept(s, &c, NULL, NULL), TF_OK);
    tu_connect_join(&k);
    assert_int_equal(k.err, TF_OK);
    tu_exchange(c, k.c);
    tf_sync_conn_free(c);
    tf_sync_conn_free(k.c);
    tf_sync_server_free(s);
    assert_false(exists(path));

    /* Async with the flag. */
    make_stale(path);
    tu_fx f;
    tu_fx_start(&f);
    tf_async_server *as;
    assert_int_equal(tf_async_server_new(f.evb, &as), TF_OK);
    assert_int_equal(tf_async_server_init(as, addr, &cfg, &msg), TF_OK);
    assert_true(is_socket_file(path));
    tf_async_server_free(as);
    assert_false(exists(path));
    tu_fx_end(&f);
}

static void test_unix_path_not_a_socket_never_removed(void **state)
{
    (void)state;
    char addr[TF_ADDRSTR_LEN], path[TF_ADDRSTR_LEN];
    unix_path(addr, sizeof addr, path, sizeof path, "file");
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "keep", 4), 4);
    close(fd);
    tf_tcp_config cfg;
    tf_tcp_config_init(&cfg);
    cfg.unix_replace_stale = 1; /* even so */
    tf_sync_server *s;
    assert_int_equal(tf_sync_server_new(&s), TF_OK);
    tf_errmsg msg;
    int os = 0;
    (void)os;
    assert_int_equal(tf_sync_server_init(s, addr, &cfg, &msg), TF_ERR_IO);
    assert_non_null(strstr(msg.text, "not a socket"));
    tf_sync_server_free(s);
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_size, 4);
}

static void test_unix_live_server_not_replaced(void **state)
{
    (void)state;
    char addr[TF_ADDRSTR_LEN], path[TF_ADDRSTR_LEN];
    unix_path(addr, sizeof addr, path, sizeof path, "live.sock");
    tf_sync_server *a, *b;
    assert_int_equal(tf_sync_server_new(&a), TF_OK);
    assert_int_equal(tf_sync_server_init(a, addr, NULL, NULL), TF_OK);
    tf_tcp_config cfg;
    tf_tcp_config_init(&cfg);
    cfg.unix_replace_stale = 1;
    assert_int_equal(tf_sync_server_new(&b), TF_OK);
    tf_errmsg msg;
    assert_int_equal(tf_sync_server_init(b, addr, &cfg, &msg), TF_ERR_IO);
    assert_non_null(strstr(msg.text, "another server listens on it"));
    tf_sync_server_free(b); /* never bound: removes nothing */
    assert_true(is_socket_file(path));
    /* The first server still serves (the probe's connection is dropped as a failed handshake). */
    tu_connector k;
    tu_connect_start(&k, addr, NULL);
    tf_sync_conn *c = NULL;
    assert_int_equal(tf_sync_server_accept(a, &c, NULL, NULL), TF_OK);
    tu_connect_join(&k);
    assert_int_equal(k.err, TF_OK);
    tf_sync_conn_free(c);
    tf_sync_conn_free(k.c);
    tf_sync_server_free(a);
    assert_false(exists(path));

    /* An abstract name in use: refused, and says so. */
    char abs[TF_ADDRSTR_LEN];
    unix_abstract(abs, sizeof abs, "live");
    assert_int_equal(tf_sync_server_new(&a), TF_OK);
    assert_int_equal(tf_sync_server_init(a, abs, NULL, NULL), TF_OK);
    assert_int_equal(tf_sync_server_new(&b), TF_OK);
    assert_int_equal(tf_sync_server_init(b, abs, &cfg, &msg), TF_ERR_IO);
    assert_non_null(strstr(msg.text, "abstract name"));
    tf_sync_server_free(b);
    tf_sync_server_free(a);
}

/* The path was replaced while the server ran: the new file is not ours and stays. */
static void test_unix_replaced_path_not_removed(void **state)
{
    (void)state;
    char addr[TF_ADDRSTR_LEN], path[TF_ADDRSTR_LEN];
    unix_path(addr, sizeof addr, path, sizeof path, "moved.sock");
    for (int mode = 0; mode < 2; mode++) {
        tf_sync_server *s;
        assert_int_equal(tf_sync_server_new(&s), TF_OK);
        assert_int_equal(tf_sync_server_init(s, addr, NULL, NULL), TF_OK);
        assert_int_equal(unlink(path), 0);
        if (mode == 0) {
            make_stale(path); /* another socket file, another inode */
        } else {
            int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
            assert_true(fd >= 0);
            close(fd);
        }
        tf_sync_server_free(s);
        assert_true(exists(path));
        assert_int_equal(unlink(path), 0);
    }
}

/* A listening socket bound to |path| by hand. */
static int listening_fd(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_un su = {.sun_family = AF_UNIX};
    assert_true(strlen(path) < sizeof su.sun_path);
    memcpy(su.sun_path, path, strlen(path) + 1);
    assert_int_equal(bind(fd, (struct sockaddr *)&su, sizeof su), 0);
    assert_int_equal(listen(fd, 8), 0);
    return fd;
}

/* A listening socket taken over (init_fd): its path is not the server's to remove. */
static void test_unix_init_fd_path_kept(void **state)
{
    (void)state;
    char addr[TF_ADDRSTR_LEN], path[TF_ADDRSTR_LEN];
    unix_path(addr, sizeof addr, path, sizeof path, "given.sock");
    tf_errmsg msg;
    tf_sync_server *s;
    assert_int_equal(tf_sync_server_new(&s), TF_OK);
    assert_int_equal(tf_sync_server_init_fd(s, listening_fd(path), NULL, &msg), TF_OK);
    char bound[TF_ADDRSTR_LEN];
    assert_int_equal(tf_sync_server_addr(s, bound, sizeof bound), TF_OK);
    assert_string_equal(bound, addr);
    tu_connector k;
    tu_connect_start(&k, addr, NULL);
    tf_sync_conn *c = NULL;
    assert_int_equal(tf_sync_server_accept(s, &c, NULL, NULL), TF_OK);
    tu_connect_join(&k);
    assert_int_equal(k.err, TF_OK);
    tf_sync_conn_free(c);
    tf_sync_conn_free(k.c);
    tf_sync_server_free(s);
    assert_true(is_socket_file(path));
    assert_int_equal(unlink(path), 0);

    tu_fx f;
    tu_fx_start(&f);
    tf_async_server *as;
    assert_int_equal(tf_async_server_new(f.evb, &as), TF_OK);
    assert_int_equal(tf_async_server_init_fd(as, listening_fd(path), NULL, &msg), TF_OK);
    tf_async_server_free(as);
    tu_fx_end(&f);
    assert_true(is_socket_file(path));
}

/* ---------------------------------------------------------------- the uid rule */

typedef struct rejects {
    tf_sync_server *s;
    int n;
    tf_err err;
    char peer[TF_ADDRSTR_LEN];
} rejects;

/* The sync reject hook: note it, then end the accept that runs it (nobody else will come). */
static void on_sync_reject(void *arg, const char *peer, tf_err err, int os_err)
{
    rejects *r = arg;
    (void)os_err;
    r->n++;
    r->err = err;
    snprintf(r->peer, sizeof r->peer, "%s", peer);
    tf_sync_server_shutdown(r->s);
}

/* A uid that is not ours (nor root's, nor (uid_t)-1). */
static int64_t other_uid(void)
{
    return getuid() == 4242 ? 4243 : 4242;
}

static void test_unix_sync_uid_rule_rejects_and_admits(void **state)
{
    (void)state;
    char addr[TF_ADDRSTR_LEN];
    unix_abstract(addr, sizeof addr, "rule");
    tf_tcp_config cfg;
    tf_tcp_config_init(&cfg);
    cfg.unix_peer_uid = other_uid();
    tf_sync_server *s;
    assert_int_equal(tf_sync_server_new(&s), TF_OK);
    assert_int_equal(tf_sync_server_init(s, addr, &cfg, NULL), TF_OK);
    rejects r = {.s = s};
    tf_sync_server_on_reject(s, on_sync_reject, &r);
    tu_connector k;
    tf_tcp_config ccfg;
    tf_tcp_config_init(&ccfg);
    ccfg.connect_retries = 0;
    tu_connect_start(&k, addr, &ccfg);
    tf_sync_conn *c = NULL;
    tf_errmsg msg;
    assert_int_equal(tf_sync_server_accept(s, &c, NULL, &msg), TF_ERR_SHUTDOWN);
    tu_connect_join(&k);
    assert_int_not_equal(k.err, TF_OK); /* closed before the magic came back */
    assert_null(k.c);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.err, TF_ERR_PEER_DENIED);
    assert_string_equal(r.peer, "unix:");
    assert_int_equal(tf_sync_server_rejected(s), 1);
    tf_sync_server_free(s);

    /* The same uid as the server (alone, or beside another uid): admitted. */
    for (int both = 0; both < 2; both++) {
        tf_tcp_config_init(&cfg);
        cfg.unix_peer_same_uid = 1;
        if (both)
            cfg.unix_peer_uid = other_uid();
        assert_int_equal(tf_sync_server_new(&s), TF_OK);
        assert_int_equal(tf_sync_server_init(s, addr, &cfg, NULL), TF_OK);
        tu_connect_start(&k, addr, NULL);
        assert_int_equal(tf_sync_server_accept(s, &c, NULL, &msg), TF_OK);
        tu_connect_join(&k);
        assert_int_equal(k.err, TF_OK);
        tu_exchange(c, k.c);
        assert_int_equal(tf_sync_server_rejected(s), 0);
        tf_sync_conn_free(c);
        tf_sync_conn_free(k.c);
        tf_sync_server_free(s);
    }
    /* Our own uid by number. */
    tf_tcp_config_init(&cfg);
    cfg.unix_peer_uid = getuid();
    assert_int_equal(tf_sync_server_new(&s), TF_OK);
    assert_int_equal(tf_sync_server_init(s, addr, &cfg, NULL), TF_OK);
    tu_connect_start(&k, addr, NULL);
    assert_int_equal(tf_sync_server_accept(s, &c, NULL, &msg), TF_OK);
    tu_connect_join(&k);
    assert_int_equal(k.err, TF_OK);
    tf_sync_conn_free(c);
    tf_sync_conn_free(k.c);
    tf_sync_server_free(s);
}

/* The rule needs a Unix address: a TCP server with it is refused at init, never open. */
static void test_unix_uid_rule_refused_on_tcp_server(void **state)
{
    (void)state;
    tf_tcp_config cfg;
    tf_tcp_config_init(&cfg);
    cfg.unix_peer_same_uid = 1;
    tf_sync_server *s;
    assert_int_equal(tf_sync_server_new(&s), TF_OK);
    tf_errmsg msg;
    assert_int_equal(tf_sync_server_init(s, "127.0.0.1:0", &cfg, &msg), TF_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(msg.text, "need a unix: address"));
    tf_sync_server_free(s);
    tu_fx f;
    tu_fx_start(&f);
    tf_async_server *as;
    assert_int_equal(tf_async_server_new(f.evb, &as), TF_OK);
    assert_int_equal(tf_async_server_init(as, "127.0.0.1:0", &cfg, &msg), TF_ERR_INVALID_ARGUMENT);
    tf_async_server_free(as);
    tu_fx_end(&f);
    /* Out of range: (uid_t)-1 means "no uid" to the kernel. */
    cfg.unix_peer_uid = 4294967295LL;
    assert_int_equal(tf_tcp_config_validate(&cfg, &msg), TF_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(msg.text, "unix_peer_uid"));
    cfg.unix_peer_uid = TF_UNSET;
    cfg.unix_peer_same_uid = 2;
    assert_int_equal(tf_tcp_config_validate(&cfg, &msg), TF_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(msg.text, "unix_peer_same_uid"));
}

/* ---------------------------------------------------------------- async */

static tf_err fut_take(tf_future *fu, void **owned)
{
    assert_non_null(fu);
    assert_int_equal(tf_future_wait(fu), TF_OK);
    tf_err e = tf_future_get(fu, NULL, owned);
    tf_future_free(fu);
    return e;
}

static void async_exchange(tf_async_conn *a, tf_async_conn *b, size_t len, uint32_t seed)
{
    uint8_t *src = malloc(len ? len : 1);
    tu_fill(src, len, seed);
    tf_future *r;
    assert_int_equal(tf_async_conn_recv_alloc(b, -1, &r), TF_OK);
    assert_int_equal(tu_send_wait(a, src, len), TF_OK);
    void *got = NULL;
    size_t n = 0;
    assert_int_equal(tu_fut_result(r, &n, &got), TF_OK);
    assert_int_equal(n, len);
    assert_true(tu_check(got, len, seed));
    free(got);
    free(src);
}

static void async_echo(const char *addr)
{
    tu_fx f;
    tu_fx_start(&f);
    tf_tcp_config cfg = tcp_heavy();
    tf_async_server *s;
    tf_async_client *cl;
    tf_errmsg msg;
    assert_int_equal(tf_async_server_new(f.evb, &s), TF_OK);
    tf_err e = tf_async_server_init(s, addr, &cfg, &msg);
    if (e != TF_OK)
        fail_msg("init %s: %s", addr, msg.text);
    char bound[TF_ADDRSTR_LEN];
    assert_int_equal(tf_async_server_addr(s, bound, sizeof bound), TF_OK);
    assert_string_equal(bound, addr);
    assert_int_equal(tf_async_client_new(f.evb, &cfg, &cl, NULL), TF_OK);
    tf_future *af, *cf;
    assert_int_equal(tf_async_server_accept(s, &af), TF_OK);
    assert_int_equal(tf_async_client_connect(cl, addr, &cf, &msg), TF_OK);
    void *cv = NULL, *sv = NULL;
    assert_int_equal(fut_take(cf, &cv), TF_OK);
    assert_int_equal(fut_take(af, &sv), TF_OK);
    tf_async_conn *c = cv, *sc = sv;
    async_exchange(c, sc, 100, 1);
    async_exchange(sc, c, 1 << 20, 2);
    char peer[TF_ADDRSTR_LEN];
    assert_int_equal(tf_async_conn_peer(sc, peer, sizeof peer), TF_OK);
    assert_string_equal(peer, "unix:");
    assert_int_equal(tf_async_conn_peer(c, peer, sizeof peer), TF_OK);
    assert_string_equal(peer, addr);
    tf_peer_cred pc;
    assert_int_equal(tf_async_conn_peer_cred(sc, &pc), TF_OK);
    expect_self_cred(&pc);
    assert_int_equal(tf_async_conn_peer_cred(c, &pc), TF_OK);
    expect_self_cred(&pc);
    tf_async_conn_free(c);
    assert_int_equal(tf_async_conn_peer_cred(sc, &pc), TF_OK); /* kept after the peer left */
    expect_self_cred(&pc);
    tf_async_conn_free(sc);
    tf_async_client_free(cl);
    assert_int_equal(tf_async_server_shutdown(s), TF_OK);
    tf_async_server_free(s);
    tu_fx_end(&f);
}

static void test_unix_async_echo_path_and_unlinked_at_shutdown(void **state)
{
    (void)state;
    char addr[TF_ADDRSTR_LEN], path[TF_ADDRSTR_LEN];
    unix_path(addr, sizeof addr, path, sizeof path, "async.sock");
    async_echo(addr);
    assert_false(exists(path));
    /* Shutdown (before free) removes it. */
    tu_fx f;
    tu_fx_start(&f);
    tf_async_server *s;
    assert_int_equal(tf_async_server_new(f.evb, &s), TF_OK);
    assert_int_equal(tf_async_server_init(s, addr, NULL, NULL), TF_OK);
    assert_true(is_socket_file(path));
    assert_int_equal(tf_async_server_shutdown(s), TF_OK);
    assert_false(exists(path));
    tf_async_server_free(s);
    tu_fx_end(&f);
}

static void test_unix_async_echo_abstract(void **state)
{
    (void)state;
    char addr[TF_ADDRSTR_LEN];
    unix_abstract(addr, sizeof addr, "async");
    async_echo(addr);
}

typedef struct arejects {
    _Atomic int n;
    _Atomic int err;
    char peer[TF_ADDRSTR_LEN];
} arejects;

static void on_async_reject(tf_async_server *s, const char *peer, tf_err err, int os_err, void *arg)
{
    (void)s;
    (void)os_err;
    arejects *r = arg;
    snprintf(r->peer, sizeof r->peer, "%s", peer);
    atomic_store(&r->err, (int)err);
    atomic_fetch_add(&r->n, 1); /* last: the test reads peer after it sees n */
}

static void test_unix_async_uid_rule_rejects_and_admits(void **state)
{
    (void)state;
    char addr[TF_ADDRSTR_LEN];
    unix_abstract(addr, sizeof addr, "arule");
    tu_fx f;
    tu_fx_start(&f);
    tf_tcp_config cfg;
    tf_tcp_config_init(&cfg);
    cfg.unix_peer_uid = other_uid();
    cfg.connect_timeout_ms = 10000;
    tf_async_server *s;
    assert_int_equal(tf_async_server_new(f.evb, &s), TF_OK);
    arejects r;
    memset(&r, 0, sizeof r);
    tf_async_server_on_reject(s, on_async_reject, &r);
    assert_int_equal(tf_async_server_init(s, addr, &cfg, NULL), TF_OK);
    tf_async_client *cl;
    assert_int_equal(tf_async_client_new(f.evb, &cfg, &cl, NULL), TF_OK);
    tf_future *cf;
    assert_int_equal(tf_async_client_connect(cl, addr, &cf, NULL), TF_OK);
    void *cv = NULL;
    tf_err e = fut_take(cf, &cv);
    assert_int_not_equal(e, TF_OK); /* the server closed it before any magic */
    assert_null(cv);
    /* The reject ran on the loop before the close the client saw. */
    assert_int_equal(atomic_load(&r.n), 1);
    assert_int_equal(atomic_load(&r.err), TF_ERR_PEER_DENIED);
    assert_string_equal(r.peer, "unix:");
    assert_int_equal(tf_async_server_rejected(s), 1);
    tf_async_server_free(s);

    /* The server's own uid: admitted. */
    tf_tcp_config_init(&cfg);
    cfg.unix_peer_same_uid = 1;
    assert_int_equal(tf_async_server_new(f.evb, &s), TF_OK);
    assert_int_equal(tf_async_server_init(s, addr, &cfg, NULL), TF_OK);
    tf_future *af;
    assert_int_equal(tf_async_server_accept(s, &af), TF_OK);
    assert_int_equal(tf_async_client_connect(cl, addr, &cf, NULL), TF_OK);
    void *sv = NULL;
    assert_int_equal(fut_take(cf, &cv), TF_OK);
    assert_int_equal(fut_take(af, &sv), TF_OK);
    async_exchange(cv, sv, 10, 3);
    assert_int_equal(tf_async_server_rejected(s), 0);
    tf_async_conn_free(cv);
    tf_async_conn_free(sv);
    tf_async_client_free(cl);
    tf_async_server_free(s);
    tu_fx_end(&f);
}

static void test_unix_async_peer_cred_tcp_and_socketpair(void **state)
{
    (void)state;
    tu_fx f;
    tu_fx_start(&f);
    /* A socketpair: both ends are this process. */
    tf_async_conn *a, *b;
    tu_pair_async(&f, NULL, &a, &b);
    tf_peer_cred pc;
    assert_int_equal(tf_async_conn_peer_cred(a, &pc), TF_OK);
    expect_self_cred(&pc);
    char peer[TF_ADDRSTR_LEN];
    assert_int_equal(tf_async_conn_peer(a, peer, sizeof peer), TF_OK);
    assert_string_equal(peer, "unix:");
    tf_async_conn_free(a);
    tf_async_conn_free(b);
    /* TCP: none. */
    tf_async_server *s;
    tf_async_client *cl;
    assert_int_equal(tf_async_server_new(f.evb, &s), TF_OK);
    assert_int_equal(tf_async_server_init(s, "127.0.0.1:0", NULL, NULL), TF_OK);
    char addr[TF_ADDRSTR_LEN];
    assert_int_equal(tf_async_server_addr(s, addr, sizeof addr), TF_OK);
    assert_int_equal(tf_async_client_new(f.evb, NULL, &cl, NULL), TF_OK);
    tf_future *af, *cf;
    assert_int_equal(tf_async_server_accept(s, &af), TF_OK);
    assert_int_equal(tf_async_client_connect(cl, addr, &cf, NULL), TF_OK);
    void *cv = NULL, *sv = NULL;
    assert_int_equal(fut_take(cf, &cv), TF_OK);
    assert_int_equal(fut_take(af, &sv), TF_OK);
    memset(&pc, 0xa5, sizeof pc);
    assert_int_equal(tf_async_conn_peer_cred(cv, &pc), TF_ERR_INVALID_ARGUMENT);
    assert_int_equal(pc.uid, 0);
    assert_int_equal(tf_async_conn_peer_cred(sv, NULL), TF_ERR_INVALID_ARGUMENT);
    assert_int_equal(tf_async_conn_peer_cred(NULL, &pc), TF_ERR_INVALID_ARGUMENT);
    tf_async_conn_free(cv);
    tf_async_conn_free(sv);
    tf_async_client_free(cl);
    tf_async_server_free(s);
    tu_fx_end(&f);
}

/* ---------------------------------------------------------------- client before server */

static _Atomic unsigned connects; /* connect() calls seen by the hook */

static int count_connects(tf__sys_op op, int fd, size_t *len)
{
    (void)fd;
    (void)len;
    if (op == TF__SYS_CONNECT)
        atomic_fetch_add(&connects, 1u);
    return 0;
}

/* A client started before its server: ENOENT (no socket file yet) is retried like a refused
 * connect, so once the server binds the client gets in. The server is started only after a
 * second connect() call: the first one failed and was retried (no timing involved). */
static void test_unix_client_before_server_retries_enoent(void **state)
{
    (void)state;
    char addr[TF_ADDRSTR_LEN];
    unix_path(addr, sizeof addr, NULL, 0, "late.sock");
    tf_tcp_config cfg;
    tf_tcp_config_init(&cfg);
    cfg.retry_delay_ms = 5;
    cfg.retry_max_delay_ms = 20;
    cfg.connect_retries = 100000;
    cfg.connect_timeout_ms = 60000;
    for (int mode = 0; mode < 2; mode++) {
        atomic_store(&connects, 0u);
        atomic_store(&tf__sys_hook, count_connects);
        tu_fx f;
        tu_fx_start(&f);
        tf_async_client *cl = NULL;
        tf_future *cf = NULL;
        tu_connector k;
        if (mode == 0) {
            tu_connect_start(&k, addr, &cfg);
        } else {
            assert_int_equal(tf_async_client_new(f.evb, &cfg, &cl, NULL), TF_OK);
            assert_int_equal(tf_async_client_connect(cl, addr, &cf, NULL), TF_OK);
        }
        /* A no-progress watchdog: without the retry the second connect() never comes. */
        for (uint64_t t0 = tu_now_ms(); atomic_load(&connects) < 2; tu_nap(1))
            if (tu_now_ms() - t0 > 60000)
                fail_msg("mode %d: ENOENT was not retried (%u connect calls)", mode,
                         atomic_load(&connects));
        atomic_store(&tf__sys_hook, NULL);
        if (mode == 0) {
            tf_sync_server *s;
            assert_int_equal(tf_sync_server_new(&s), TF_OK);
            assert_int_equal(tf_sync_server_init(s, addr, NULL, NULL), TF_OK);
            tf_sync_conn *c = NULL;
            assert_int_equal(tf_sync_server_accept(s, &c, NULL, NULL), TF_OK);
            tu_connect_join(&k);
            if (k.err != TF_OK)
                fail_msg("sync connect: %s", k.msg.text);
            tu_exchange(c, k.c);
            tf_sync_conn_free(c);
            tf_sync_conn_free(k.c);
            tf_sync_server_free(s);
        } else {
            tf_async_server *s;
            assert_int_equal(tf_async_server_new(f.evb, &s), TF_OK);
            assert_int_equal(tf_async_server_init(s, addr, NULL, NULL), TF_OK);
            tf_future *af;
            assert_int_equal(tf_async_server_accept(s, &af), TF_OK);
            void *cv = NULL, *sv = NULL;
            assert_int_equal(fut_take(cf, &cv), TF_OK);
            assert_int_equal(fut_take(af, &sv), TF_OK);
            async_exchange(cv, sv, 10, 4);
            tf_async_conn_free(cv);
            tf_async_conn_free(sv);
            tf_async_client_free(cl);
            tf_async_server_free(s);
        }
        tu_fx_end(&f);
    }
}

/* ---------------------------------------------------------------- bad addresses */

static void test_unix_bad_addresses_and_missing_path(void **state)
{
    (void)state;
    tf_errmsg msg;
    tf_sync_server *s;
    assert_int_equal(tf_sync_server_new(&s), TF_OK);
    assert_int_equal(tf_sync_server_init(s, "unix:", NULL, &msg), TF_ERR_BAD_ADDRESS);
    assert_non_null(strstr(msg.text, "empty path"));
    tf_sync_server_free(s);
    tf_sync_conn *c = NULL;
    assert_int_equal(tf_sync_connect("unix:@", NULL, &c, NULL, &msg), TF_ERR_BAD_ADDRESS);
    assert_non_null(strstr(msg.text, "empty abstract name"));
    char longp[TF_ADDRSTR_LEN + 8];
    snprintf(longp, sizeof longp, "unix:/%0120d", 0);
    assert_int_equal(tf_sync_connect(longp, NULL, &c, NULL, &msg), TF_ERR_BAD_ADDRESS);
    assert_non_null(strstr(msg.text, "too long"));

    /* Nobody there: ENOENT, retried like a refused connect, then IO with the path named. */
    char addr[TF_ADDRSTR_LEN];
    unix_path(addr, sizeof addr, NULL, 0, "nobody.sock");
    tf_tcp_config cfg;
    tf_tcp_config_init(&cfg);
    cfg.connect_retries = 1;
    cfg.retry_delay_ms = 1;
    int os = 0;
    assert_int_equal(tf_sync_connect(addr, &cfg, &c, &os, &msg), TF_ERR_IO);
    assert_int_equal(os, ENOENT);
    assert_non_null(strstr(msg.text, addr));
    assert_non_null(strstr(msg.text, "2 attempts"));

    tu_fx f;
    tu_fx_start(&f);
    tf_async_client *cl;
    assert_int_equal(tf_async_client_new(f.evb, NULL, &cl, NULL), TF_OK);
    tf_future *fu = NULL;
    assert_int_equal(tf_async_client_connect(cl, "unix:", &fu, &msg), TF_ERR_BAD_ADDRESS);
    assert_null(fu);
    assert_non_null(strstr(msg.text, "empty path"));
    assert_int_equal(tf_async_client_connect(cl, longp, &fu, &msg), TF_ERR_BAD_ADDRESS);
    assert_non_null(strstr(msg.text, "too long"));
    tf_async_client_free(cl);
    tu_fx_end(&f);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_unix_sync_echo_path_and_unlinked_at_shutdown),
        T(test_unix_sync_echo_abstract),
        T(test_unix_peer_cred_refused_on_tcp),
        T(test_unix_stale_socket_refused_unless_replace_stale),
        T(test_unix_path_not_a_socket_never_removed),
        T(test_unix_live_server_not_replaced),
        T(test_unix_replaced_path_not_removed),
        T(test_unix_init_fd_path_kept),
        T(test_unix_sync_uid_rule_rejects_and_admits),
        T(test_unix_uid_rule_refused_on_tcp_server),
        T(test_unix_async_echo_path_and_unlinked_at_shutdown),
        T(test_unix_async_echo_abstract),
        T(test_unix_async_uid_rule_rejects_and_admits),
        T(test_unix_async_peer_cred_tcp_and_socketpair),
        T(test_unix_client_before_server_retries_enoent),
        T(test_unix_bad_addresses_and_missing_path),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
