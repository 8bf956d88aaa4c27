/* io/tcp_config.c -- tf_tcp_config: defaults, validation, the size-based load and the socket
 * options (tcp.h, SPEC.md 9.3).
 *
 * One table lists every field after |size| with its offset, width and range; copying a caller's
 * (possibly older, smaller) struct, validating it and naming a bad field all walk that table, so
 * a field appended to the struct is handled by adding one line here. */
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include "internal.h"
#include "tcpframe/proto.h"

/* Durations are capped at INT_MAX ms (about 24.8 days): every timeout then fits poll()'s int and
 * no deadline arithmetic in nanoseconds can overflow. */
#define MS_MAX ((int64_t)INT_MAX)
/* Kernel limits of the keepalive options (MAX_TCP_KEEPIDLE, MAX_TCP_KEEPINTVL, MAX_TCP_KEEPCNT). */
#define KEEPIDLE_MAX 32767
#define KEEPINTVL_MAX 32767
#define KEEPCNT_MAX 127

enum kind {
    K_I64,  /* int64_t in [min, max], or TF_UNSET */
    K_SET,  /* int64_t in [min, max]: TF_UNSET has no meaning here (a buffer needs a size) */
    K_BOOL, /* int: 0, 1 or TF_UNSET */
    K_U32,  /* uint32_t: every value is valid */
    K_STR,  /* char[width]: NUL-terminated within its width (checked by check_strings) */
    K_PTR,  /* a pointer (function or data): every value is valid */
};

typedef struct field {
    const char *name;
    size_t off, width;
    enum kind kind;
    int64_t min, max;
} field;

/* clang-format off */
#define F(name, kind, min, max) \
    {#name, offsetof(tf_tcp_config, name), sizeof(((tf_tcp_config *)0)->name), kind, min, max}
/* clang-format on */

static const field fields[] = {
    F(connect_timeout_ms, K_I64, 1, MS_MAX),
    F(sndbuf, K_I64, 1, INT_MAX),
    F(rcvbuf, K_I64, 1, INT_MAX),
    F(nodelay, K_BOOL, 0, 1),
    F(keepalive, K_BOOL, 0, 1),
    F(keepalive_idle_s, K_I64, 1, KEEPIDLE_MAX),
    F(keepalive_intvl_s, K_I64, 1, KEEPINTVL_MAX),
    F(keepalive_cnt, K_I64, 1, KEEPCNT_MAX),
    F(user_timeout_ms, K_I64, 0, INT_MAX),
    F(listen_backlog, K_I64, 1, INT_MAX),
    F(accept_retries, K_I64, 1, INT_MAX),
    F(connect_retries, K_I64, 0, INT_MAX),
    F(retry_delay_ms, K_I64, 0, MS_MAX),
    F(retry_max_delay_ms, K_I64, 0, MS_MAX),
    F(handshake_timeout_ms, K_I64, 0, MS_MAX),
    F(max_recv_len, K_U32, 0, UINT32_MAX),
    F(max_send_len, K_U32, 0, UINT32_MAX),
    F(handshake, K_BOOL, 0, 1),
    F(send_queue_bytes, K_I64, 1, INT64_MAX),
    F(send_queue_msgs, K_I64, 1, INT64_MAX),
    F(send_low_water, K_SET, 0, INT64_MAX),
    F(recv_queue_ops, K_I64, 1, INT64_MAX),
    F(read_buffer, K_SET, 1, INT_MAX),
    F(linger_ms, K_I64, 0, MS_MAX),
    F(accept_queue, K_I64, 1, INT_MAX),
    F(ip_tos, K_I64, 0, 255),
    F(priority, K_I64, 0, INT_MAX),
    F(bind_device, K_STR, 0, 0),
    F(local_addr, K_STR, 0, 0),
    F(sock_cb, K_PTR, 0, 0),
    F(sock_cb_arg, K_PTR, 0, 0),
    F(recv_mem_budget, K_I64, 1, INT64_MAX),
    F(idle_timeout_ms, K_I64, 1, MS_MAX),
    F(progress_timeout_ms, K_I64, 1, MS_MAX),
    F(max_conns, K_I64, 1, INT_MAX),
    F(io_budget, K_SET, 1, INT64_MAX),
    F(unix_peer_uid, K_I64, 0, 4294967294LL), /* (uid_t)-1 is "no uid" to the kernel */
    F(unix_peer_same_uid, K_BOOL, 0, 1),
    F(unix_replace_stale, K_BOOL, 0, 1),
    F(tls, K_PTR, 0, 0),
};
#undef F

#define NFIELDS (sizeof fields / sizeof fields[0])

/* The table must reach the struct's last field (a field appended without its line would be
 * neither copied nor checked). */
_Static_assert(offsetof(tf_tcp_config, tls) + sizeof(void *) == sizeof(tf_tcp_config),
               "tf_tcp_config grew: add the new field to the table in io/tcp_config.c");

static int64_t get(const tf_tcp_config *c, const field *f)
{
    const unsigned char *p = (const unsigned char *)c + f->off;
    switch (f->kind) {
    case K_BOOL: {
        int v;
        memcpy(&v, p, sizeof v);
        return v;
    }
    case K_U32: {
        uint32_t v;
        memcpy(&v, p, sizeof v);
        return v;
    }
    default: {
        int64_t v;
        memcpy(&v, p, sizeof v);
        return v;
    }
    }
}

static void defaults(tf_tcp_config *c)
{
    memset(c, 0, sizeof *c);
    c->size = (uint32_t)sizeof *c;
    c->connect_timeout_ms = 30000;
    c->sndbuf = 1048576;
    c->rcvbuf = 1048576;
    c->nodelay = 1;
    c->keepalive = 1;
    c->keepalive_idle_s = 60;
    c->keepalive_intvl_s = 5;
    c->keepalive_cnt = 3;
    c->user_timeout_ms = 60000;
    c->listen_backlog = TF_UNSET;
    c->accept_retries = 5;
    c->connect_retries = 10;
    c->retry_delay_ms = 1000;
    c->retry_max_delay_ms = 30000;
    c->handshake_timeout_ms = 5000;
    c->max_recv_len = TF_DEFAULT_MAX_LEN;
    c->max_send_len = TF_DEFAULT_MAX_LEN;
    c->handshake = 1;
    c->send_queue_bytes = (int64_t)TF_DEFAULT_MAX_LEN + 1048576;
    c->send_queue_msgs = 65536;
    c->send_low_water = 262144;
    c->recv_queue_ops = 65536;
    c->read_buffer = 65536;
    c->linger_ms = 5000;
    c->accept_queue = 128;
    c->ip_tos = TF_UNSET;
    c->priority = TF_UNSET;
    /* bind_device, local_addr "", sock_cb and its arg NULL: the memset */
    c->recv_mem_budget = TF_UNSET;
    c->idle_timeout_ms = TF_UNSET;
    c->progress_timeout_ms = TF_UNSET;
    c->max_conns = TF_UNSET;
    c->io_budget = 1048576;
    c->unix_peer_uid = TF_UNSET;
    /* unix_peer_same_uid, unix_replace_stale 0: the memset */
}

/* The string fields: NUL-terminated within their arrays; local_addr a numeric host:port (so
 * that binding it never calls the resolver, also on a loop thread). */
static tf_err check_strings(const tf_tcp_config *c, tf_errmsg *msg)
{
    if (!memchr(c->bind_device, '\0', sizeof c->bind_device)) {
        tf__errmsg(msg,
                   "bad config: bind_device has no NUL in its %zu bytes (an interface name "
                   "is at most %zu characters)",
                   sizeof c->bind_device, sizeof c->bind_device - 1);
        return TF_ERR_INVALID_ARGUMENT;
    }
    if (!memchr(c->local_addr, '\0', sizeof c->local_addr)) {
        tf__errmsg(msg, "bad config: local_addr has no NUL in its %zu bytes", sizeof c->local_addr);
        return TF_ERR_INVALID_ARGUMENT;
    }
    if (c->local_addr[0] != '\0') {
        tf_hostport hp;
        tf_errmsg why;
        if (tf_hostport_parse(c->local_addr, &hp, &why) != TF_OK) {
            tf__errmsg(msg, "bad config: local_addr: %s", why.text);
            return TF_ERR_INVALID_ARGUMENT;
        }
        if (!tf_addr_is_numeric(c->local_addr)) {
            tf__errmsg(msg,
                       "bad config: local_addr = \"%s\": must be a numeric address "
                       "(no name resolution)",
                       c->local_addr);
            return TF_ERR_INVALID_ARGUMENT;
        }
    }
    return TF_OK;
}

static void os_defaults(tf_tcp_config *c)
{
    defaults(c);
    c->connect_timeout_ms = TF_UNSET;
    c->sndbuf = TF_UNSET;
    c->rcvbuf = TF_UNSET;
    c->nodelay = TF_UNSET;
    c->keepalive = TF_UNSET;
    c->keepalive_idle_s = TF_UNSET;
    c->keepalive_intvl_s = TF_UNSET;
    c->keepalive_cnt = TF_UNSET;
    c->user_timeout_ms = TF_UNSET;
    c->listen_backlog = TF_UNSET;
    c->accept_retries = TF_UNSET;
    c->connect_retries = TF_UNSET;
    c->retry_delay_ms = TF_UNSET;
    c->retry_max_delay_ms = TF_UNSET;
    c->handshake_timeout_ms = TF_UNSET;
}

/* Write |full| into the caller's struct of |size| bytes: the fields that fit, the size, and
 * zeros past this library's struct (fields of a newer header this library does not know). */
static void store_sized(tf_tcp_config *c, size_t size, const tf_tcp_config *full)
{
    if (size >= sizeof *c) {
        memcpy(c, full, sizeof *c);
        memset((unsigned char *)c + sizeof *c, 0, size - sizeof *c);
    } else {
        for (size_t i = 0; i < NFIELDS; i++)
            if (fields[i].off + fields[i].width <= size)
                memcpy((unsigned char *)c + fields[i].off,
                       (const unsigned char *)full + fields[i].off, fields[i].width);
    }
    if (size >= sizeof c->size)
        c->size = (uint32_t)size;
}

void tf_tcp_config_init_sized(tf_tcp_config *c, size_t size)
{
    tf_tcp_config d;
    defaults(&d);
    store_sized(c, size, &d);
}

void tf_tcp_config_init_os_sized(tf_tcp_config *c, size_t size)
{
    tf_tcp_config d;
    os_defaults(&d);
    store_sized(c, size, &d);
}

void(tf_tcp_config_init)(tf_tcp_config *c)
{
    tf_tcp_config_init_sized(c, sizeof *c);
}

void(tf_tcp_config_init_os)(tf_tcp_config *c)
{
    tf_tcp_config_init_os_sized(c, sizeof *c);
}

/* Check a whole (this library's size) config; name the first bad field. */
static tf_err check(const tf_tcp_config *c, tf_errmsg *msg)
{
    for (size_t i = 0; i < NFIELDS; i++) {
        const field *f = &fields[i];
        if (f->kind == K_U32 || f->kind == K_STR || f->kind == K_PTR)
            continue;
        int64_t v = get(c, f);
        if ((v == TF_UNSET && f->kind != K_SET) || (v >= f->min && v <= f->max))
            continue;
        if (f->kind == K_SET)
            tf__errmsg(msg, "bad config: %s = %lld: must be %lld..%lld", f->name, (long long)v,
                       (long long)f->min, (long long)f->max);
        else if (f->kind == K_BOOL)
            tf__errmsg(msg, "bad config: %s = %lld: must be 0, 1 or TF_UNSET (-1)", f->name,
                       (long long)v);
        else
            tf__errmsg(msg, "bad config: %s = %lld: must be %lld..%lld or TF_UNSET (-1)", f->name,
                       (long long)v, (long long)f->min, (long long)f->max);
        return TF_ERR_INVALID_ARGUMENT;
    }
    if (check_strings(c, msg) != TF_OK) /* the last fields in declaration order */
        return TF_ERR_INVALID_ARGUMENT;
    if (c->retry_delay_ms != TF_UNSET && c->retry_max_delay_ms != TF_UNSET &&
        c->retry_delay_ms > c->retry_max_delay_ms) {
        tf__errmsg(msg, "bad config: retry_delay_ms = %lld is above retry_max_delay_ms = %lld",
                   (long long)c->retry_delay_ms, (long long)c->retry_max_delay_ms);
        return TF_ERR_INVALID_ARGUMENT;
    }
    if (c->handshake != 0 && c->handshake_timeout_ms == 0) {
        tf__errmsg(msg, "bad config: handshake_timeout_ms = 0 with the handshake on: no "
                        "handshake could finish (TF_UNSET (-1) for no deadline)");
        return TF_ERR_INVALID_ARGUMENT;
    }
    if (c->send_queue_bytes != TF_UNSET && c->send_low_water > c->send_queue_bytes) {
        tf__errmsg(msg, "bad config: send_low_water = %lld is above send_queue_bytes = %lld",
                   (long long)c->send_low_water, (long long)c->send_queue_bytes);
        return TF_ERR_INVALID_ARGUMENT;
    }

    tf__errmsg_clear(msg);
    return TF_OK;
}

tf_err tf__config_load(tf_tcp_config *dst, const tf_tcp_config *src, tf_errmsg *msg)
{
    defaults(dst);
    if (!src) {
        tf__errmsg_clear(msg);
        return TF_OK;
    }
    size_t size = src->size;
    if (size < sizeof src->size) {
        tf__errmsg(msg,
                   "bad config: size = %zu: initialise the config with tf_tcp_config_init "
                   "or tf_tcp_config_init_os",
                   size);
        return TF_ERR_INVALID_ARGUMENT;
    }
    if (size > sizeof *src) {
        /* A newer caller: its extra fields must be zero (this library cannot honour them). */
        const unsigned char *tail = (const unsigned char *)src + sizeof *src;
        for (size_t i = 0; i < size - sizeof *src; i++)
            if (tail[i] != 0) {
                tf__errmsg(msg,
                           "bad config: size = %zu: byte %zu is set, past the %zu bytes this "
                           "library knows (built against a newer tcpframe?)",
                           size, sizeof *src + i, sizeof *src);
                return TF_ERR_INVALID_ARGUMENT;
            }
    }
    for (size_t i = 0; i < NFIELDS; i++)
        if (fields[i].off + fields[i].width <= size)
            memcpy((unsigned char *)dst + fields[i].off, (const unsigned char *)src + fields[i].off,
                   fields[i].width);
    return check(dst, msg);
}

tf_err tf_tcp_config_validate(const tf_tcp_config *c, tf_errmsg *msg)
{
    if (!c) {
        tf__errmsg(msg, "bad config: NULL");
        return TF_ERR_INVALID_ARGUMENT;
    }
    tf_tcp_config tmp;
    return tf__config_load(&tmp, c, msg);
}

/* ---------------------------------------------------------------- socket options */

typedef struct opt {
    int level, name;
    const char *text;
    int64_t value;
} opt;

static bool ignorable(const opt *o, int e)
{
    if (e == EOPNOTSUPP || e == ENOPROTOOPT)
        return true;
    return e == EINVAL && o->level == IPPROTO_TCP;
}

tf_err tf__sock_apply(int fd, const tf_tcp_config *c, bool lenient, int *os_err, tf_errmsg *msg)
{
    if (os_err)
        *os_err = 0;
    if (fd < 0 || !c) {
        tf__errmsg(msg, "setsockopt: bad argument (fd %d, config %s)", fd, c ? "set" : "NULL");
        return TF_ERR_INVALID_ARGUMENT;
    }
    /* The traffic class: IP_TOS on IPv4 sockets; on IPv6 ones IPV6_TCLASS and IP_TOS too (a
     * dual-stack socket carries IPv4 traffic for v4-mapped peers). Not on other families. On a
     * Unix-domain socket the TCP options and keepalive have no meaning and are skipped (SPEC
     * 9.9): the buffers and the priority remain. */
    int domain = AF_UNSPEC;
    socklen_t dl = sizeof domain;
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &dl) != 0)
        domain = AF_UNSPEC;
    const bool tcp = domain != AF_UNIX;
    /* Keepalive times only matter with keepalive on; with it explicitly off they are left. */
    const bool ka_times = c->keepalive != 0 && tcp;
    const int64_t tos4 = domain == AF_INET || domain == AF_INET6 ? c->ip_tos : TF_UNSET;
    const int64_t tos6 = domain == AF_INET6 ? c->ip_tos : TF_UNSET;
    const opt opts[] = {
        {SOL_SOCKET, SO_SNDBUF, "SO_SNDBUF", c->sndbuf},
        {SOL_SOCKET, SO_RCVBUF, "SO_RCVBUF", c->rcvbuf},
        {IPPROTO_TCP, TCP_NODELAY, "TCP_NODELAY", tcp ? c->nodelay : TF_UNSET},
        {SOL_SOCKET, SO_KEEPALIVE, "SO_KEEPALIVE", tcp ? c->keepalive : TF_UNSET},
        {IPPROTO_TCP, TCP_KEEPIDLE, "TCP_KEEPIDLE", ka_times ? c->keepalive_idle_s : TF_UNSET},
        {IPPROTO_TCP, TCP_KEEPINTVL, "TCP_KEEPINTVL", ka_times ? c->keepalive_intvl_s : TF_UNSET},
        {IPPROTO_TCP, TCP_KEEPCNT, "TCP_KEEPCNT", ka_times ? c->keepalive_cnt : TF_UNSET},
        {IPPROTO_TCP, TCP_USER_TIMEOUT, "TCP_USER_TIMEOUT", tcp ? c->user_timeout_ms : TF_UNSET},
        {IPPROTO_IP, IP_TOS, "IP_TOS", tos4},
        {IPPROTO_IPV6, IPV6_TCLASS, "IPV6_TCLASS", tos6},
        {SOL_SOCKET, SO_PRIORITY, "SO_PRIORITY", c->priority},
    };
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        const opt *o = &opts[i];
        if (o->value == TF_UNSET)
            continue;
        if (o->value < 0 || o->value > INT_MAX) {
            tf__errmsg(msg, "setsockopt %s=%lld: out of range", o->text, (long long)o->value);
            if (os_err)
                *os_err = EINVAL;
            return TF_ERR_IO;
        }
        int v = (int)o->value;
        if (setsockopt(fd, o->level, o->name, &v, sizeof v) == 0)
            continue;
        int e = errno;
        if (lenient && ignorable(o, e))
            continue;
        if (os_err)
            *os_err = e;
        char eb[128];
        tf__errmsg(msg, "setsockopt %s=%d: %s", o->text, v, strerror_r(e, eb, sizeof eb));
        return TF_ERR_IO;
    }
    tf__errmsg_clear(msg);
    return TF_OK;
}
