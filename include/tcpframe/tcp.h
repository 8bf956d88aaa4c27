/* tcpframe/tcp.h -- what the TCP layer's sync and async halves share: error messages,
 * addresses ("host:port", and "unix:/path" or "unix:@name" for Unix-domain sockets), the
 * peer's credentials on a Unix-domain socket and the socket configuration (SPEC.md section 9).
 *
 * Threads: every function here is thread-safe (no global state); tf_addr_resolve may block in
 * the resolver for a host name and must not be called on an event-loop thread with one.
 */
#ifndef TCPFRAME_TCP_H
#define TCPFRAME_TCP_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "tcpframe/err.h"
#include "tcpframe/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- error messages */

/* A sentence for humans that names what failed and the input concerned, e.g.
 * `connect 127.0.0.1:7000: Connection refused (10 attempts)` or
 * `bad address "127.0.0.1": missing ':' before the port`. Every call that takes a tf_errmsg *
 * accepts NULL; on TF_OK it leaves the text empty (""). Always NUL-terminated. */
#define TF_ERRMSG_LEN 256
typedef struct tf_errmsg {
    char text[TF_ERRMSG_LEN];
} tf_errmsg;

/* ---------------------------------------------------------------- addresses */

/* Longest host part kept (a DNS name is at most 253 characters). */
#define TF_HOST_MAX 256
/* Room for any formatted address: "[" + IPv6 text (45) + "]:" + port (5) + NUL for IP; for a
 * Unix-domain socket "unix:" + "@" + 107 bytes + NUL (SPEC 9.2). */
#define TF_ADDRSTR_LEN 128
/* The config's local_addr (a numeric "host:port"): the IP room above. */
#define TF_LOCAL_ADDR_LEN 64
/* Longest Unix-domain socket path or abstract name kept (sun_path holds 108 bytes: a path with
 * its NUL, or the abstract name after its leading NUL byte). */
#define TF_UNIX_PATH_MAX 107

/* A parsed "host:port" (pure syntax, no resolution). */
typedef struct tf_hostport {
    char host[TF_HOST_MAX]; /* without brackets; "" for the wildcard ("", "*", "::" / "[::]") */
    uint16_t port;          /* 0 = ephemeral (bind) */
    bool wildcard;          /* "", "*", "[::]" or "::" (and "0.0.0.0": the IPv4 wildcard) */
    bool bracketed;         /* written as [v6]:port */
} tf_hostport;

/* Parse |text| as host:port (SPEC.md 9.2). Accepted forms:
 *   127.0.0.1:9000     IPv4 (or a host name: localhost:9000, a name in /etc/hosts)
 *   [::1]:9000         IPv6 in brackets (an optional %scope inside)
 *   ::1:9000           bare IPv6, split at the LAST colon (uniflow's format)
 *   :9000  *:9000  [::]:9000  :::9000   the wildcard (bind on every address, IPv6 dual-stack)
 *   0.0.0.0:9000       the IPv4 wildcard (host kept, wildcard true)
 * The port is 1+ ASCII digits, at most 65535. The host is at most 255 characters, without
 * space, control character, non-ASCII byte or bracket; a host with colons is IPv6 and has two
 * or more.
 * A pure function: no resolver, no syscall, no allocation; thread-safe.
 *   TF_OK                    *out filled; msg ""
 *   TF_ERR_BAD_ADDRESS       missing ':', empty or non-numeric port, port > 65535, empty or
 *                            unclosed brackets, text after ']' other than ":port", brackets
 *                            without an IPv6 address, a host with one colon, a space, control
 *                            character, non-ASCII byte or stray bracket in the host, host too
 *                            long, a "unix:" address (not host:port: tf_unix_addr_parse);
 *                            msg is `bad address "<input>": <fault>` (*out zeroed)
 *   TF_ERR_INVALID_ARGUMENT  text or out NULL */
TF_API tf_err tf_hostport_parse(const char *text, tf_hostport *out, tf_errmsg *msg);

/* A resolved socket address. */
typedef struct tf_addr {
    struct sockaddr_storage ss;
    socklen_t len;
} tf_addr;

/* True if |text| (not NULL) starts with "unix:": a Unix-domain socket address, read by
 * tf_unix_addr_parse (and by tf_addr_resolve and every call that takes an address). A host
 * named "unix" is written "unix.:port". Pure. */
TF_API bool tf_addr_is_unix(const char *text);

/* Parse the |len| bytes at |text| (need not be NUL-terminated) as a Unix-domain socket address
 * (SPEC 9.2):
 *   unix:/run/app.sock   a path (relative ones such as "unix:app.sock" are relative to the
 *                        working directory of the process that binds or connects)
 *   unix:@name           a Linux abstract name: no file; the bytes after '@' are the name
 * The path or name is 1..TF_UNIX_PATH_MAX (107) bytes, any byte but NUL. *out is an AF_UNIX
 * address: a path is NUL-terminated (len counts the NUL), an abstract name has sun_path[0] NUL
 * and len ends at its last byte; every other byte of *out is zero. Pure, thread-safe.
 *   TF_OK                    *out filled; msg ""
 *   TF_ERR_BAD_ADDRESS       not "unix:" first, an empty path ("unix:") or name ("unix:@"), a
 *                            NUL byte inside, more than 107 bytes; msg is
 *                            `bad address "<input>": <fault>` (*out zeroed)
 *   TF_ERR_INVALID_ARGUMENT  text or out NULL */
TF_API tf_err tf_unix_addr_parse(const char *text, size_t len, tf_addr *out, tf_errmsg *msg);

/* Address family choice for resolution: any, IPv4 only, IPv6 only. */
enum { TF_FAMILY_ANY = 0, TF_FAMILY_V4 = 4, TF_FAMILY_V6 = 6 };

/* At most this many addresses are kept from a resolution (tried in order). */
#define TF_ADDRS_MAX 8
typedef struct tf_addrlist {
    size_t n;
    tf_addr a[TF_ADDRS_MAX];
} tf_addrlist;

/* Parse |text| and resolve it into addresses to connect to (passive = false) or to bind
 * (passive = true). A numeric host never touches the resolver (getaddrinfo with
 * AI_NUMERICHOST), nor does a host with a colon that is not IPv6 (refused) or a name under
 * ".invalid" (refused at once, RFC 6761); another name is resolved with getaddrinfo (may
 * block: never call it on a loop thread with a name), duplicates dropped. The wildcard binds
 * [::] dual-stack (TF_FAMILY_ANY), or 0.0.0.0 / [::] for V4 / V6; connecting to the wildcard
 * means the loopback ([::1] then 127.0.0.1 for ANY; 0.0.0.0 connects to 127.0.0.1). A "unix:"
 * address gives the one AF_UNIX address of tf_unix_addr_parse (whatever the family).
 *   TF_OK                    out->n (1..TF_ADDRS_MAX) addresses, in the resolver's order
 *   TF_ERR_BAD_ADDRESS       a parse error (as tf_hostport_parse), a name that does not
 *                            resolve (msg has gai_strerror's reason), or no address of the
 *                            requested family; msg quotes the input (out->n = 0)
 *   TF_ERR_INVALID_ARGUMENT  text or out NULL, family not one of TF_FAMILY_* */
TF_API tf_err tf_addr_resolve(const char *text, int family, bool passive, tf_addrlist *out,
                              tf_errmsg *msg);

/* True if |text| parses and its host is numeric or the wildcard, or it is a "unix:" address
 * that parses (resolving it will not touch the resolver). */
TF_API bool tf_addr_is_numeric(const char *text);

/* Format |a| as "1.2.3.4:port" or "[v6]:port" (a non-zero scope id as "%<number>";
 * IPv4-mapped IPv6 shown as IPv4), or a Unix-domain address as "unix:/path" or "unix:@name"
 * (the bytes as they are; a NUL byte inside an abstract name shown as '@', as ss(8) does) and
 * an unnamed one (a client socket that never bound: accept's peer) as "unix:". The text parses
 * back to the same address, except "unix:" and an abstract name holding NUL bytes. Pure.
 *   TF_OK                    buf holds the text
 *   TF_ERR_INVALID_ARGUMENT  a or buf NULL, a family other than AF_INET / AF_INET6 / AF_UNIX,
 *                            or a->len too short for its family (or too long for AF_UNIX)
 *   TF_ERR_BUFFER_TOO_SMALL  len too small (buf "" if len > 0): TF_ADDRSTR_LEN always suffices */
TF_API tf_err tf_addr_format(const tf_addr *a, char *buf, size_t len);

/* ---------------------------------------------------------------- socket configuration */

/* "Leave it to the OS" for every optional field. */
#define TF_UNSET (-1)

/* Room for a network interface name with its NUL (Linux IFNAMSIZ). */
#define TF_IFNAME_LEN 16

/* What a socket handed to a tf_sock_cb is being prepared for. */
typedef enum tf_sock_role {
    TF_SOCK_LISTEN = 1, /* a server's socket: bind and listen follow */
    TF_SOCK_CONNECT = 2 /* a client's socket: the local bind (local_addr) and connect follow */
} tf_sock_role;

/* The config's socket hook (sock_cb): called with every socket the library creates to listen or
 * to connect, after the config's own options (bind_device included) and before bind / connect,
 * for anything the config does not cover (SO_MARK, IP_BIND_ADDRESS_NO_PORT, SO_REUSEPORT, a
 * BPF filter, ...). |fd| is borrowed for the call: do not close it or change O_NONBLOCK.
 * |family| is AF_INET, AF_INET6 or AF_UNIX. It runs on the thread that makes the socket: the
 * caller's for tf_sync_connect and the servers' init, the loop thread for
 * tf_async_client_connect (it must not block there). Sockets taken over (tf_*_conn_from_fd,
 * tf_*_server_init_fd) and accepted ones are not passed to it.
 * Return 0 to go on, or an errno value: the socket is closed and the call fails with TF_ERR_IO
 * and that OS error (a connect treats it as any failed attempt: retried if the error is one
 * worth retrying, SPEC 9.3). */
typedef int (*tf_sock_cb)(void *arg, int fd, int family, tf_sock_role role);

/* One configuration for sockets, connects, servers and connections, sync and async
 * (SPEC.md 9.3 has each field's range). Initialise with tf_tcp_config_init (uniflow's
 * production defaults) or tf_tcp_config_init_os (every socket option and limit TF_UNSET), then
 * change fields. Durations in milliseconds (at most INT_MAX), sizes in bytes. TF_UNSET means
 * "the OS default" for a socket option, "no deadline" for a timeout, "no retry" for the
 * retries, "no bound" for a queue; read_buffer and send_low_water must be set.
 * Extensible: |size| is set by init to sizeof(tf_tcp_config) as the caller was compiled; fields
 * are only ever appended, and the library treats fields past |size| as their defaults, so a
 * program built against an older header keeps working with a newer library. A NULL config
 * everywhere means tf_tcp_config_init's defaults. The library copies the config: it need not
 * outlive the call it is passed to. */
/* A TLS context (tcpframe/tls.h): opaque here, made and freed by libtcpframe_tls. */
typedef struct tf_tls_ctx tf_tls_ctx;

typedef struct tf_tcp_config {
    uint32_t size;                 /* sizeof(tf_tcp_config) at the caller's build; set by init */
    int64_t connect_timeout_ms;    /* whole connect incl. retries and handshake; default 30000 */
    int64_t sndbuf;                /* SO_SNDBUF; default 1 MiB */
    int64_t rcvbuf;                /* SO_RCVBUF; default 1 MiB */
    int nodelay;                   /* TCP_NODELAY 1/0; default 1 */
    int keepalive;                 /* SO_KEEPALIVE 1/0; default 1 */
    int64_t keepalive_idle_s;      /* TCP_KEEPIDLE; default 60 */
    int64_t keepalive_intvl_s;     /* TCP_KEEPINTVL; default 5 */
    int64_t keepalive_cnt;         /* TCP_KEEPCNT; default 3 */
    int64_t user_timeout_ms;       /* TCP_USER_TIMEOUT; default 60000 */
    int64_t listen_backlog;        /* listen(); default / TF_UNSET: SOMAXCONN */
    int64_t accept_retries;        /* sync accept: transient failures retried in a row; default 5 */
    int64_t connect_retries;       /* retries after the first attempt; default 10 */
    int64_t retry_delay_ms;        /* first back-off (doubles, with jitter); default 1000 */
    int64_t retry_max_delay_ms;    /* back-off cap; default 30000 */
    int64_t handshake_timeout_ms;  /* magic exchange deadline; default 5000 */
    uint32_t max_recv_len;         /* largest payload accepted; default 64 MiB */
    uint32_t max_send_len;         /* largest payload sent; default 64 MiB */
    int handshake;                 /* 1: exchange the magic; 0: plain length-prefixed peers */
    /* async connections (async.h) */
    int64_t send_queue_bytes;      /* queued payload bytes before BUSY; default 64 MiB + 1 MiB */
    int64_t send_queue_msgs;       /* queued messages before BUSY; default 65536 */
    int64_t send_low_water;        /* writable callback when queued bytes fall to this; 256 KiB */
    int64_t recv_queue_ops;        /* pending receives before BUSY; default 65536 */
    int64_t read_buffer;           /* read-ahead buffer; default 65536 */
    int64_t linger_ms;             /* graceful close waits this long for the peer; default 5000 */
    int64_t accept_queue;          /* async server: handshaken, unclaimed connections; 128 */
    /* socket-level control (SPEC 9.4); every default: unset */
    int64_t ip_tos;                /* IP_TOS (and IPV6_TCLASS on IPv6 sockets) 0..255 */
    int64_t priority;              /* SO_PRIORITY 0..2^31-1 (above 6 needs CAP_NET_ADMIN) */
    char bind_device[TF_IFNAME_LEN]; /* SO_BINDTODEVICE for listening and connecting
                                      * sockets ("eth1"); "" none */
    char local_addr[TF_LOCAL_ADDR_LEN]; /* clients: bind here before connect, a numeric
                                         * "host:port" (port 0: any; "10.0.0.2:0"); "" none;
                                         * not for unix: addresses (ignored there) */
    tf_sock_cb sock_cb;            /* called with each new socket before bind / connect */
    void *sock_cb_arg;             /* its first argument */
    /* hostile peers (SPEC 9.7 "Receive memory", "Timeouts and fairness"), async only */
    int64_t recv_mem_budget;       /* server: bytes of partial messages of all its connections
                                    * together; default TF_UNSET: no bound */
    int64_t idle_timeout_ms;       /* TIMEOUT when no message was received or sent for this
                                    * long; default TF_UNSET: off */
    int64_t progress_timeout_ms;   /* TIMEOUT when a message's first byte came this long ago and
                                    * its last did not; default TF_UNSET: off */
    int64_t max_conns;             /* server: connections at once (in the handshake or handed
                                    * out and not freed); more are accepted and closed at once,
                                    * counted as rejected; default TF_UNSET: no cap */
    int64_t io_budget;             /* bytes one connection reads per turn before the loop serves
                                    * the others (fairness); default 1 MiB */
    /* Unix-domain sockets (SPEC 9.9) */
    int64_t unix_peer_uid;         /* server: accept Unix-domain clients of this uid only
                                    * (0..4294967294); default TF_UNSET: any uid */
    int unix_peer_same_uid;        /* server: 1: accept Unix-domain clients of the server's
                                    * effective uid (also with unix_peer_uid: either may match);
                                    * default 0. Either set: the server must listen on a unix:
                                    * address; other clients are rejected (TF_ERR_PEER_DENIED) */
    int unix_replace_stale;        /* server: 1: a socket file at the path that nobody listens
                                    * on (left by a crash) is removed and the bind retried;
                                    * default 0: init fails and says so */
    /* the transport (SPEC 9.11) */
    tf_tls_ctx *tls;               /* TLS 1.3 over the socket (tcpframe/tls.h, libtcpframe_tls;
                                    * borrowed: keep it until the servers, clients and
                                    * connections made with this config are freed); default
                                    * NULL: plain TCP */
} tf_tcp_config;

/* uniflow's production defaults (above). Cannot fail; c must not be NULL.
 * A macro over tf_tcp_config_init_sized(c, sizeof(tf_tcp_config)), so that |size| is the
 * caller's sizeof and a library with a larger struct never writes past the caller's; the
 * function of the same name (same effect at this header's size) exists for function pointers
 * and other languages. */
TF_API void tf_tcp_config_init(tf_tcp_config *c);
#define tf_tcp_config_init(c) tf_tcp_config_init_sized((c), sizeof(tf_tcp_config))

/* Every socket option and limit TF_UNSET (the OS decides): connect_timeout_ms, sndbuf, rcvbuf,
 * nodelay, keepalive and its three times, user_timeout_ms, listen_backlog, the retries and their
 * delays, handshake_timeout_ms. Handshake on, max lengths 64 MiB, the async queues and buffers
 * as tf_tcp_config_init. Cannot fail; c must not be NULL. A macro as tf_tcp_config_init. */
TF_API void tf_tcp_config_init_os(tf_tcp_config *c);
#define tf_tcp_config_init_os(c) tf_tcp_config_init_os_sized((c), sizeof(tf_tcp_config))

/* What the two macros call: fill the fields of |c| that lie within its first |size| bytes, set
 * c->size = size (if it has room for it) and zero any bytes past this library's struct. */
TF_API void tf_tcp_config_init_sized(tf_tcp_config *c, size_t size);
TF_API void tf_tcp_config_init_os_sized(tf_tcp_config *c, size_t size);

/* Check every field within c->size bytes (later ones are defaults), in declaration order,
 * then the rules between fields. Every call that takes a config runs the same check.
 *   TF_OK                    valid; msg ""
 *   TF_ERR_INVALID_ARGUMENT  c NULL, or the first bad field: out of its range (negative other
 *                            than TF_UNSET, a zero buffer size, count or timeout, a boolean not
 *                            0/1/TF_UNSET, a keepalive time over the kernel's limit), size 0..3
 *                            or larger than this library's struct with a byte past it set,
 *                            retry_delay_ms > retry_max_delay_ms, handshake_timeout_ms 0 with
 *                            the handshake on, send_low_water > send_queue_bytes, a
 *                            bind_device or local_addr without its NUL, a local_addr that does
 *                            not parse as a numeric "host:port"; msg names the field and its
 *                            value ("bad config: sndbuf = 0: must be ...") */
TF_API tf_err tf_tcp_config_validate(const tf_tcp_config *c, tf_errmsg *msg);

/* ---------------------------------------------------------------- peer credentials */

/* Who is at the other end of a Unix-domain connection (SO_PEERCRED): the process that made
 * its socket (connect or socketpair) and that process's effective uid and gid at that moment. */
typedef struct tf_peer_cred {
    pid_t pid; /* 0 if the peer is in another PID namespace the kernel cannot map */
    uid_t uid;
    gid_t gid;
} tf_peer_cred;

#ifdef __cplusplus
}
#endif
#endif /* TCPFRAME_TCP_H */
