/* io/sock.c -- the socket calls shared by the sync and async TCP layers: listen, non-blocking
 * connect start/finish, retry and back-off policy, names, accept's transient errors
 * (internal.h, SPEC.md 9.3); the same calls serve Unix-domain sockets (SPEC 9.9), whose own
 * parts live in io/unix.c. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

static const char *errtext(int e, char *buf, size_t len)
{
    return strerror_r(e, buf, len);
}

static bool is_v6_any(const tf_addr *a)
{
    if (a->ss.ss_family != AF_INET6)
        return false;
    const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)&a->ss;
    return IN6_IS_ADDR_UNSPECIFIED(&s->sin6_addr);
}

static uint16_t port_of(const tf_addr *a)
{
    if (a->ss.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
}

static void v4_any(tf_addr *a, uint16_t port)
{
    memset(a, 0, sizeof *a);
    struct sockaddr_in *s = (struct sockaddr_in *)&a->ss;
    s->sin_family = AF_INET;
    s->sin_port = htons(port);
    s->sin_addr.s_addr = htonl(INADDR_ANY);
    a->len = (socklen_t)sizeof *s;
}

/* What the config asks of a new socket before bind / connect (SPEC 9.4): SO_BINDTODEVICE,
 * then the user's hook. 0, or an errno value with the failed step's name in *call. */
static int prepare(int fd, int family, const tf_tcp_config *c, tf_sock_role role, const char **call)
{
    if (c->bind_device[0] != '\0' && family != AF_UNIX) { /* no interface under a Unix socket */
        socklen_t n = (socklen_t)strnlen(c->bind_device, sizeof c->bind_device);
        if (setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, c->bind_device, n) != 0) {
            *call = "setsockopt SO_BINDTODEVICE";
            return errno;
        }
    }
    if (c->sock_cb) {
        int e = c->sock_cb(c->sock_cb_arg, fd, family, role);
        if (e != 0) {
            *call = "socket callback";
            return e > 0 ? e : EINVAL; /* a negative answer is not an errno value */
        }
    }
    return 0;
}

/* Bind a Unix-domain listening socket to |a|. A socket file already at the path: a stale one
 * (nobody listens) is removed and the bind retried if the config says so; otherwise, and for a
 * live server or a file that is not a socket (never removed), EADDRINUSE with *why saying which. */
static int bind_unix(int fd, const tf_addr *a, const tf_tcp_config *c, const char **why)
{
    *why = NULL;
    if (bind(fd, (const struct sockaddr *)&a->ss, a->len) == 0)
        return 0;
    int e = errno;
    if (e != EADDRINUSE)
        return e;
    switch (tf__unix_probe(a)) {
    case TF__UNIX_STALE:
        if (c->unix_replace_stale != 1) {
            *why = "a stale socket file is there (nobody listens on it): remove it, or set "
                   "unix_replace_stale";
            return e;
        }
        if (!tf__unix_remove_stale(a)) {
            *why = "the stale socket file there could not be removed";
            return e;
        }
        if (bind(fd, (const struct sockaddr *)&a->ss, a->len) == 0)
            return 0;
        e = errno;
        *why = e == EADDRINUSE ? "another server bound the path after its stale file was removed"
                               : NULL;
        return e;
    case TF__UNIX_NOT_SOCKET:
        *why = "the path exists and is not a socket (left alone)";
        return e;
    case TF__UNIX_GONE:
        *why = "the file was removed meanwhile: try again";
        return e;
    case TF__UNIX_UNKNOWN:
        *why = "something is there that could not be examined (left alone)";
        return e;
    default:
        *why = a->len > (socklen_t)sizeof(sa_family_t) + 1 &&
                       ((const char *)&a->ss)[sizeof(sa_family_t)] == '\0'
                   ? "another socket holds the abstract name"
                   : "another server listens on it";
        return e;
    }
}

/* One listening socket on |a|, or -1 with *err and the failed call's name in *call (NULL: the
 * message is in *optmsg). A Unix path's file, once bound, is recorded in *owned. */
static int listen_one(const tf_addr *a, const tf_tcp_config *c, int *err, const char **call,
                      tf_errmsg *optmsg, tf__unix_owned *owned)
{
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *err = errno;
        *call = "socket";
        return -1;
    }
    int one = 1, zero = 0;
    const bool ux = a->ss.ss_family == AF_UNIX;
    if (!ux && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) {
        *call = "setsockopt SO_REUSEADDR";
        goto fail;
    }
    /* The v6 wildcard serves IPv4 too, whatever net.ipv6.bindv6only says. */
    if (is_v6_any(a) && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero) != 0) {
        *call = "setsockopt IPV6_V6ONLY=0";
        goto fail;
    }
    /* Before listen: accepted sockets inherit the options (and the receive buffer must be set
     * before the handshake for the window scale to reflect it). */
    int oerr = 0;
    if (tf__sock_apply(fd, c, false, &oerr, optmsg) != TF_OK) {
        close(fd);
        *err = oerr;
        *call = NULL; /* optmsg names the option */
        return -1;
    }
    int perr = prepare(fd, a->ss.ss_family, c, TF_SOCK_LISTEN, call);
    if (perr != 0) {
        close(fd);
        *err = perr;
        return -1;
    }
    if (ux) {
        const char *why = NULL;
        int berr = bind_unix(fd, a, c, &why);
        if (berr != 0) {
            close(fd);
            *err = berr;
            *call = NULL;
            char eb[128];
            tf__errmsg(optmsg, "bind: %s%s%s", errtext(berr, eb, sizeof eb), why ? ": " : "",
                       why ? why : "");
            return -1;
        }
        tf__unix_owned_note(owned, a);
    } else if (bind(fd, (const struct sockaddr *)&a->ss, a->len) != 0) {
        *call = "bind";
        goto fail;
    }
    int backlog = c->listen_backlog == TF_UNSET ? SOMAXCONN : (int)c->listen_backlog;
    if (listen(fd, backlog) != 0) {
        *call = "listen";
        *err = errno;
        close(fd);
        tf__unix_owned_release(owned); /* the file our bind made */
        return -1;
    }
    return fd;
fail:
    *err = errno;
    close(fd);
    return -1;
}

tf_err tf__sock_listen(const char *addr, const tf_tcp_config *c, int *fd, int *os_err,
                       tf_errmsg *msg)
{
    return tf__sock_listen_ex(addr, c, fd, os_err, msg, NULL);
}

tf_err tf__sock_listen_ex(const char *addr, const tf_tcp_config *c, int *fd, int *os_err,
                          tf_errmsg *msg, tf__unix_owned *owned)
{
    tf__unix_owned scratch;
    if (!owned)
        owned = &scratch;
    owned->set = false;
    if (os_err)
        *os_err = 0;
    if (fd)
        *fd = -1;
    if (!addr || !fd) {
        tf__errmsg(msg, "listen: %s is NULL", addr ? "the fd pointer" : "the address");
        return TF_ERR_INVALID_ARGUMENT;
    }
    tf_tcp_config cfg;
    tf_err e = tf__config_load(&cfg, c, msg);
    if (e != TF_OK)
        return e;
    tf_addrlist list;
    e = tf_addr_resolve(addr, TF_FAMILY_ANY, true, &list, msg);
    if (e != TF_OK)
        return e;
    if (tf__unix_rule(&cfg) && !tf_addr_is_unix(addr)) {
        tf__errmsg(msg,
                   "listen %s: bad config: unix_peer_uid / unix_peer_same_uid need a unix: "
                   "address (a TCP peer has no credentials)",
                   addr);
        return TF_ERR_INVALID_ARGUMENT;
    }

    int first_err = 0;
    tf_errmsg first;
    first.text[0] = '\0';
    for (size_t i = 0; i < list.n; i++) {
        tf_addr a = list.a[i];
        int err = 0;
        const char *call = NULL;
        tf_errmsg optmsg;
        int s = listen_one(&a, &cfg, &err, &call, &optmsg, owned);
        if (s < 0 && err == EAFNOSUPPORT && is_v6_any(&a)) {
            /* No IPv6 on this machine: the wildcard is 0.0.0.0. */
            v4_any(&a, port_of(&a));
            s = listen_one(&a, &cfg, &err, &call, &optmsg, owned);
        }
        if (s >= 0) {
            *fd = s;
            tf__errmsg_clear(msg);
            return TF_OK;
        }
        if (first_err == 0) {
            /* Report the most preferred address's failure: the later ones are fallbacks. */
            char as[TF_ADDRSTR_LEN], eb[128];
            if (tf_addr_format(&a, as, sizeof as) != TF_OK)
                snprintf(as, sizeof as, "?");
            first_err = err ? err : EINVAL;
            /* A name is shown with the address it resolved to. */
            char from[120] = "";
            if (!tf_addr_is_numeric(addr))
                snprintf(from, sizeof from, " (resolved from \"%.80s\")", addr);
            if (call)
                tf__errmsg(&first, "%s %s%s: %s", call, as, from,
                           errtext(first_err, eb, sizeof eb));
            else
                tf__errmsg(&first, "listen %s%s: %s", as, from, optmsg.text);
        }
    }
    if (os_err)
        *os_err = first_err;
    if (msg)
        *msg = first;
    return TF_ERR_IO;
}

/* Bind a client socket of |family| to the numeric |local| (validated by the config load). An
 * address of the other family cannot be bound: EAFNOSUPPORT. With port 0 the kernel picks the
 * port at connect time (IP_BIND_ADDRESS_NO_PORT, where the kernel has it), so that clients bound
 * to one address share the ephemeral ports across destinations. 0 or an errno value. */
static int bind_local(int fd, int family, const char *local)
{
    tf_addrlist l;
    int want = family == AF_INET ? TF_FAMILY_V4 : TF_FAMILY_V6;
    if (tf_addr_resolve(local, want, true, &l, NULL) != TF_OK || l.n == 0)
        return EAFNOSUPPORT;
    if (port_of(&l.a[0]) == 0) {
        int one = 1;
        (void)setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    }
    if (bind(fd, (const struct sockaddr *)&l.a[0].ss, l.a[0].len) != 0)
        return errno;
    return 0;
}

tf_err tf__sock_connect_start(const tf_addr *a, const tf_tcp_config *c, int *fd, bool *connected,
                              int *os_err)
{
    if (os_err)
        *os_err = 0;
    if (fd)
        *fd = -1;
    if (connected)
        *connected = false;
    if (!a || !fd || !connected)
        return TF_ERR_INVALID_ARGUMENT;
    tf_tcp_config cfg;
    if (tf__config_load(&cfg, c, NULL) != TF_OK)
        return TF_ERR_INVALID_ARGUMENT;
    int s = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s < 0) {
        if (os_err)
            *os_err = errno;
        return TF_ERR_IO;
    }
    int err = 0;
    if (tf__sock_apply(s, &cfg, false, &err, NULL) != TF_OK) {
        close(s);
        if (os_err)
            *os_err = err;
        return TF_ERR_IO;
    }
    const char *call = NULL;
    err = prepare(s, a->ss.ss_family, &cfg, TF_SOCK_CONNECT, &call);
    if (err == 0 && cfg.local_addr[0] != '\0' && a->ss.ss_family != AF_UNIX)
        err = bind_local(s, a->ss.ss_family, cfg.local_addr);
    if (err != 0) {
        close(s);
        if (os_err)
            *os_err = err;
        return TF_ERR_IO;
    }
    if (tf__sys_connect(s, (const struct sockaddr *)&a->ss, a->len) == 0) {
        *connected = true;
    } else if (errno != EINPROGRESS && errno != EINTR) {
        /* EINTR on a non-blocking connect: it goes on in the background, as EINPROGRESS. */
        err = errno;
        close(s);
        if (os_err)
            *os_err = err;
        return TF_ERR_IO;
    }
    *fd = s;
    return TF_OK;
}

tf_err tf__sock_connect_finish(int fd, int *os_err)
{
    if (os_err)
        *os_err = 0;
    if (fd < 0)
        return TF_ERR_INVALID_ARGUMENT;
    int err = 0;
    if (tf__sys_so_error(fd, &err) != 0)
        err = errno;
    if (err == 0) {
        /* SO_ERROR is 0 both when connected and while still in progress: tell them apart. */
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        if (getpeername(fd, (struct sockaddr *)&ss, &sl) != 0)
            err = errno == ENOTCONN ? EINPROGRESS : errno;
    }
    if (err == 0)
        return TF_OK;
    if (os_err)
        *os_err = err;
    return TF_ERR_IO;
}

bool tf__connect_retryable(int os_err)
{
    switch (os_err) {
    case ECONNREFUSED: /* nobody listens (yet) */
    case ETIMEDOUT:
    case EHOSTUNREACH:
    case ENETUNREACH:
    case EHOSTDOWN:
    case ENETDOWN:
    case ECONNRESET:
    case ECONNABORTED:
    case EADDRNOTAVAIL: /* no free local port for now */
    case EAGAIN:
    case ENOBUFS:
    case EINTR:
    case ENOENT: /* a Unix socket's path is not there: its server has not bound it yet */
        return true;
    default:
        return false;
    }
}

static uint32_t xorshift32(uint32_t *s)
{
    uint32_t x = *s ? *s : 0x9E3779B9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *s = x;
    return x;
}

/* d = min(cap, delay * 2^(attempt-1)); then minus a random part in [0, d/4], so the result is
 * never above the cap and never below three quarters of d (clients that failed together spread
 * out, even at the cap). TF_UNSET delay: 0; TF_UNSET cap: INT_MAX ms. */
uint64_t tf__backoff_ms(const tf_tcp_config *c, unsigned attempt, uint32_t *seed)
{
    if (!c || c->retry_delay_ms <= 0)
        return 0;
    uint64_t cap = c->retry_max_delay_ms >= 0 ? (uint64_t)c->retry_max_delay_ms : 2147483647u;
    uint64_t d = (uint64_t)c->retry_delay_ms;
    for (unsigned i = 1; i < attempt && d < cap; i++)
        d *= 2; /* d < cap <= INT64_MAX before the doubling: no overflow */
    if (d > cap)
        d = cap;
    if (seed && d >= 4)
        d -= xorshift32(seed) % (d / 4 + 1);
    return d;
}

tf_err tf__sock_name(int fd, bool peer, char *buf, size_t len)
{
    if (buf && len > 0)
        buf[0] = '\0';
    if (fd < 0 || !buf)
        return TF_ERR_INVALID_ARGUMENT;
    tf_addr a;
    memset(&a, 0, sizeof a);
    a.len = sizeof a.ss;
    int rc = peer ? getpeername(fd, (struct sockaddr *)&a.ss, &a.len)
                  : getsockname(fd, (struct sockaddr *)&a.ss, &a.len);
    if (rc != 0)
        return TF_ERR_IO;
    return tf_addr_format(&a, buf, len);
}

const char *tf__sock_label(int fd, bool peer, char *buf, size_t len)
{
    if (tf__sock_name(fd, peer, buf, len) != TF_OK && len > 1)
        strcpy(buf, "?");
    return buf;
}

bool tf__accept_transient(int os_err)
{
    switch (os_err) {
    case ECONNABORTED: /* the client left before we took it */
    case EMFILE:       /* fd or memory exhaustion: may clear as others close */
    case ENFILE:
    case ENOBUFS:
    case ENOMEM:
    case EINTR:
    /* Linux hands pending network errors of the new connection to accept (accept(2), NOTES):
     * retry as for EAGAIN. */
    case ENETDOWN:
    case EPROTO:
    case ENOPROTOOPT:
    case EHOSTDOWN:
    case ENONET:
    case EHOSTUNREACH:
    case EOPNOTSUPP:
    case ENETUNREACH:
    case EPERM: /* firewall rules forbid the connection */
        return true;
    default:
        return false;
    }
}

tf_err tf__sock_listen_fd(int fd, const tf_tcp_config *c, int *os_err, tf_errmsg *msg)
{
    if (os_err)
        *os_err = 0;
    if (fd < 0 || !c) {
        tf__errmsg(msg, "listen fd %d: bad argument", fd);
        return TF_ERR_INVALID_ARGUMENT;
    }
    int type = 0, listening = 0, family = 0;
    socklen_t tl = sizeof type, ll = sizeof listening, fl = sizeof family;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0) {
        int e = errno;
        char eb[128];
        tf__errmsg(msg, "listen fd %d: not a socket: %s", fd, errtext(e, eb, sizeof eb));
        if (os_err)
            *os_err = e;
        return TF_ERR_INVALID_ARGUMENT;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &family, &fl) != 0 ||
        getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ll) != 0) {
        int e = errno;
        char eb[128];
        tf__errmsg(msg, "listen fd %d: getsockopt: %s", fd, errtext(e, eb, sizeof eb));
        if (os_err)
            *os_err = e;
        return TF_ERR_IO;
    }
    const bool fam_ok = family == AF_INET || family == AF_INET6 || family == AF_UNIX;
    if (type != SOCK_STREAM || !fam_ok || !listening) {
        tf__errmsg(msg, "listen fd %d: not a listening stream socket (%s%s%s)", fd,
                   type != SOCK_STREAM ? "not a stream socket" : "",
                   type == SOCK_STREAM && !fam_ok ? "neither IPv4, IPv6 nor Unix-domain" : "",
                   type == SOCK_STREAM && fam_ok && !listening ? "listen() was not called on it"
                                                               : "");
        return TF_ERR_INVALID_ARGUMENT;
    }
    if (family != AF_UNIX && tf__unix_rule(c)) {
        tf__errmsg(msg,
                   "listen fd %d: bad config: unix_peer_uid / unix_peer_same_uid need a "
                   "Unix-domain socket (a TCP peer has no credentials)",
                   fd);
        return TF_ERR_INVALID_ARGUMENT;
    }
    int fl_st = fcntl(fd, F_GETFL);
    int fd_fl = fcntl(fd, F_GETFD);
    if (fl_st < 0 || fd_fl < 0 || fcntl(fd, F_SETFL, fl_st | O_NONBLOCK) != 0 ||
        fcntl(fd, F_SETFD, fd_fl | FD_CLOEXEC) != 0) {
        int e = errno;
        char eb[128];
        tf__errmsg(msg, "listen fd %d: fcntl: %s", fd, errtext(e, eb, sizeof eb));
        if (os_err)
            *os_err = e;
        return TF_ERR_IO;
    }
    /* Accepted sockets inherit the listener's options; the sync server applies them to each
     * accepted socket as well. The backlog is changed only if the config sets one. */
    tf_errmsg om;
    if (tf__sock_apply(fd, c, false, os_err, &om) != TF_OK) {
        tf__errmsg(msg, "listen fd %d: %s", fd, om.text);
        return TF_ERR_IO;
    }
    if (c->listen_backlog != TF_UNSET && listen(fd, (int)c->listen_backlog) != 0) {
        int e = errno;
        char eb[128];
        tf__errmsg(msg, "listen fd %d: listen: %s", fd, errtext(e, eb, sizeof eb));
        if (os_err)
            *os_err = e;
        return TF_ERR_IO;
    }
    tf__errmsg_clear(msg);
    return TF_OK;
}
