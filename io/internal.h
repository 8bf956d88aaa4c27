/* io/internal.h -- symbols shared between io/ modules (and tests); not installed. */
#ifndef TCPFRAME_IO_INTERNAL_H
#define TCPFRAME_IO_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tcpframe/evbase.h"
#include "tcpframe/future.h"

/* Deadline meaning "never". */
#define TF__FOREVER UINT64_MAX

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t tf__now_ns(void);

/* The loop whose callbacks the calling thread runs now, or NULL. */
tf_evb *tf__evb_current(void);

/* Sleep while *word == val, until woken or the absolute CLOCK_MONOTONIC deadline (TF__FOREVER:
 * none). May return spuriously. False only if the deadline passed. */
bool tf__futex_wait(_Atomic uint32_t *word, uint32_t val, uint64_t deadline_ns);
/* Wake every thread sleeping on |word|. */
void tf__futex_wake(_Atomic uint32_t *word);

/* tf_promise_new, with |extra| zeroed bytes for the caller (at most 192) in the same allocation as
 * the shared state (*mem, aligned for any object): one allocation per operation instead of two,
 * and reused from a per-thread cache when one is there (future.c), released
 * with the state (by whichever end or callback drops the last reference, on that thread), so
 * the caller must not touch them once it dropped its end. tf__promise_mem_done(mem, extra): the
 * caller is done with them (an ASan build poisons them, so a later use is reported). TF_OK;
 * NOMEM (*p, *f, *mem NULL). */
tf_err tf__promise_new_with(size_t extra, tf_promise **p, tf_future **f, void **mem);
void tf__promise_mem_done(void *mem, size_t extra);

/* tf_promise_set / tf_promise_fail for the library's own operation futures (async_conn's
 * op_done): on a loop thread the futex wake of a waiter is deferred to the end of the loop's
 * iteration (SPEC 8.5), so a thread waiting on a batch of them is woken once. */
tf_err tf__promise_set_deferred(tf_promise *p, tf_err err, size_t size, void *owned,
                                tf_dtor dtor);
tf_err tf__promise_fail_deferred(tf_promise *p, tf_err err, int os_err);
/* Tests: a thread sleeps (or is about to sleep) on |f| (its WAITERS bit is set). */
bool tf__future_waited(const tf_future *f);

/* Wake now the waiters of the futures this (loop) thread completed and deferred (future.c):
 * run by the loop at the end of every iteration, at its drain, and before a loop thread blocks.
 * Nothing if none. */
void tf__future_flush_wakes(void);

/* A one-shot baton: 0 = not posted, 1 = posted, 2 = not posted and a waiter sleeps.
 * Post publishes with release; wait returns with acquire. The poster may touch the word once
 * after the waiter could have returned (futex wake of a dead address is harmless). */
void tf__baton_post(_Atomic uint32_t *b);
/* True once posted; false if the deadline passed first. */
bool tf__baton_wait(_Atomic uint32_t *b, uint64_t deadline_ns);

/* Stop hooks, loop thread only: fn(arg) runs once on the loop thread when the loop stops,
 * after the drain of dispatched work and before the fd watches and timers are dropped. An
 * object that lives on a loop adds one (embedded, no allocation) and removes it when it is
 * destroyed. */
typedef struct tf__evb_hook {
    struct tf__evb_hook *next, *prev;
    tf_evb_fn fn;
    void *arg;
    bool linked;
} tf__evb_hook;
void tf__evb_hook_add(tf_evb *evb, tf__evb_hook *h, tf_evb_fn fn, void *arg);
void tf__evb_hook_remove(tf_evb *evb, tf__evb_hook *h);
/* Cancel and release the handle in *t (if any) and clear it: a timer the caller no longer
 * wants. */
void tf__evb_timer_drop(tf_evb_timer **t);
/* True once stop() was called (any thread). */
bool tf__evb_stopping(const tf_evb *evb);
/* tf_evb_dispatch_and_wait, also from the thread of another loop: the teardown of an object
 * freed there (a connection, server or client of |evb|) must have run when the free returns.
 * That caller's loop waits meanwhile; two loops doing this to each other at the same moment
 * would deadlock (async.h, Lifetime). */
tf_err tf__evb_teardown_wait(tf_evb *evb, tf_evb_fn fn, void *arg);
/* Block until the loop is STOPPED (drained, hooks run). Never on the loop thread. */
void tf__evb_wait_stopped(tf_evb *evb);

/* Test introspection, loop thread only: is |fd| watched now (and with which arg)? */
bool tf__evb_fd_watched(const tf_evb *evb, int fd, void **arg);
/* Test introspection, loop thread only: timers in the heap (incl. lazily cancelled ones). */
size_t tf__evb_timer_count(const tf_evb *evb);
/* Test introspection, any thread: eventfd writes so far (wake-ups requested). */
uint64_t tf__evb_wake_count(const tf_evb *evb);


/* ---------------------------------------------------------------- TCP layer (SPEC 9) */

#include "tcpframe/conn.h"
#include "tcpframe/tcp.h"

/* The generic connection (conn.h): every connection type embeds a tf_conn as its FIRST member
 * and points it at its ops table. */
typedef struct tf_conn_ops {
    /* timeout_ms: -1 (none) or 0..INT_MAX, checked by io/conn.c. */
    tf_err (*send)(tf_conn *c, const void *buf, size_t len, int64_t timeout_ms, tf_future **out);
    tf_err (*recv)(tf_conn *c, void *buf, size_t cap, int64_t timeout_ms, tf_future **out);
    tf_err (*recv_alloc)(tf_conn *c, int64_t timeout_ms, tf_future **out);
    tf_err (*close)(tf_conn *c, tf_future **out);
    tf_err (*error)(const tf_conn *c, int *os_err);
    void (*free)(tf_conn *c);
} tf_conn_ops;

struct tf_conn {
    const tf_conn_ops *ops;
};

/* Write a message (printf format) into |m| (NULL: no-op); clear it. */
void tf__errmsg(tf_errmsg *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void tf__errmsg_clear(tf_errmsg *m);

/* The effective config: |src| NULL gives the defaults; fields past src->size keep their
 * defaults; then validated. TF_OK or INVALID_ARGUMENT (msg names the field). */
tf_err tf__config_load(tf_tcp_config *dst, const tf_tcp_config *src, tf_errmsg *msg);

/* Apply the socket options of |c| to |fd| (SO_SNDBUF, SO_RCVBUF, TCP_NODELAY, SO_KEEPALIVE,
 * TCP_KEEPIDLE/INTVL/CNT, TCP_USER_TIMEOUT, IP_TOS (+ IPV6_TCLASS on IPv6 sockets; neither on
 * other families), SO_PRIORITY; TF_UNSET fields are left alone). lenient: ignore
 * options the socket's protocol lacks (EOPNOTSUPP, ENOPROTOOPT: a UNIX socketpair).
 * TF_OK; IO (*os_err set; msg names the option and value). */
tf_err tf__sock_apply(int fd, const tf_tcp_config *c, bool lenient, int *os_err, tf_errmsg *msg);

/* Resolve |addr| passively, then socket (non-blocking, close-on-exec) + SO_REUSEADDR (+
 * IPV6_V6ONLY=0 for the v6 wildcard; 0.0.0.0 instead if socket() says EAFNOSUPPORT) + the
 * options of |c| (NULL: defaults) + SO_BINDTODEVICE + c->sock_cb + bind + listen(backlog) on
 * the first address that works.
 * TF_OK (*fd set); BAD_ADDRESS; INVALID_ARGUMENT (NULL, bad config); IO (*os_err, *fd = -1;
 * msg names the call and the first address's failure: "bind 127.0.0.1:7000: <strerror>"). */
tf_err tf__sock_listen(const char *addr, const tf_tcp_config *c, int *fd, int *os_err,
                       tf_errmsg *msg);

/* Take over an already listening socket |fd| for a server (tf_*_server_init_fd): it must be
 * a listening SOCK_STREAM socket of AF_INET or AF_INET6 (else INVALID_ARGUMENT, msg says what it
 * is instead); it is made non-blocking and close-on-exec, the options of |c| (a loaded config)
 * are applied and, if c->listen_backlog is set, listen() is called again with it. bind_device,
 * local_addr and sock_cb do not apply (the socket is bound). TF_OK; INVALID_ARGUMENT; IO
 * (*os_err, msg). The fd is never closed here. */
tf_err tf__sock_listen_fd(int fd, const tf_tcp_config *c, int *os_err, tf_errmsg *msg);

/* Start a non-blocking connect to |a|: socket (non-blocking, close-on-exec), options of |c|
 * applied before connect, then SO_BINDTODEVICE, c->sock_cb and the bind to c->local_addr (if
 * set), connect(). TF_OK with *connected true (done at once) or false
 * (EINPROGRESS: wait for writability, then tf__sock_connect_finish); IO with *os_err (and no fd
 * left open, *fd = -1). */
tf_err tf__sock_connect_start(const tf_addr *a, const tf_tcp_config *c, int *fd, bool *connected,
                              int *os_err);
/* The outcome of a connect in progress (getsockopt SO_ERROR), once the fd is writable: TF_OK
 * or IO with *os_err (EINPROGRESS if it is in fact still in progress). The fd stays open. */
tf_err tf__sock_connect_finish(int fd, int *os_err);
/* Worth retrying a connect after this error (refused, timed out, unreachable, reset, ...). */
bool tf__connect_retryable(int os_err);
/* Back-off before retry number |attempt| (1, 2, ...; 0 counts as 1): d = retry_delay_ms *
 * 2^(attempt-1) capped at retry_max_delay_ms (TF_UNSET: INT_MAX), minus a random part of up to
 * d/4 from *seed (NULL: none), so never above the cap. TF_UNSET or 0 delay: 0. */
uint64_t tf__backoff_ms(const tf_tcp_config *c, unsigned attempt, uint32_t *seed);

/* getsockname (peer false) or getpeername (peer true) of fd, formatted as tf_addr_format. */
tf_err tf__sock_name(int fd, bool peer, char *buf, size_t len);
/* The same for a log line or a report: "?" when the address is unknown. Returns buf. */
const char *tf__sock_label(int fd, bool peer, char *buf, size_t len);

/* accept4 errors worth retrying after a pause (fd or memory exhaustion, aborted connection). */
bool tf__accept_transient(int os_err);

/* ---------------------------------------------------------------- Unix-domain sockets (io/unix.c) */

#include <sys/types.h>

/* The listening path a server created (SPEC 9.9): removed when the server stops, if it is still
 * that file (a socket with the same device and inode). set false: nothing to remove (a TCP or
 * abstract address, a socket taken over with init_fd). */
typedef struct tf__unix_owned {
    bool set;
    char path[TF_UNIX_PATH_MAX + 1];
    dev_t dev;
    ino_t ino;
} tf__unix_owned;

/* tf__sock_listen, and for a "unix:/path" address the file its bind made in *owned (NULL: not
 * wanted; the caller then never learns it). A path where a socket file exists already: if
 * nobody listens on it (a stale file) and c->unix_replace_stale is 1, it is removed and the
 * bind retried once; else IO (EADDRINUSE) and msg says which case it is (stale, another
 * server, or not a socket: never removed). With c->unix_peer_uid or unix_peer_same_uid set, a
 * non-unix address is INVALID_ARGUMENT. */
tf_err tf__sock_listen_ex(const char *addr, const tf_tcp_config *c, int *fd, int *os_err,
                          tf_errmsg *msg, tf__unix_owned *owned);
/* Remove o's path if it is still the file we bound (then o->set is false). NULL, unset: no-op. */
void tf__unix_owned_release(tf__unix_owned *o);
/* Record the socket file bound at |a| (if |a| is a path) in *o. */
void tf__unix_owned_note(tf__unix_owned *o, const tf_addr *a);

/* SO_DOMAIN of fd (AF_UNSPEC if unknown). */
int tf__sock_domain(int fd);
/* SO_PEERCRED of fd: TF_OK; INVALID_ARGUMENT (fd < 0 or not AF_UNIX: *out zeroed); IO. */
tf_err tf__peer_cred(int fd, tf_peer_cred *out, int *os_err);
/* The config restricts the uids of Unix-domain clients (unix_peer_uid or unix_peer_same_uid). */
bool tf__unix_rule(const tf_tcp_config *c);
/* An accepted socket against the config's uid rule: TF_OK (no rule, or the peer's uid is
 * allowed) or PEER_DENIED (another uid, or no credentials: not a Unix socket; *os_err the
 * getsockopt error if that failed). */
tf_err tf__unix_peer_check(int fd, const tf_tcp_config *c, int *os_err);
/* What holds the path of the AF_UNIX address |a| after bind said EADDRINUSE. */
enum { TF__UNIX_LIVE, TF__UNIX_STALE, TF__UNIX_NOT_SOCKET, TF__UNIX_GONE, TF__UNIX_UNKNOWN };
int tf__unix_probe(const tf_addr *a);
/* Unlink a's path if it is a socket file (a stale one, by the probe). True if removed. */
bool tf__unix_remove_stale(const tf_addr *a);
/* The path of a path-bound AF_UNIX address (TF_UNIX_PATH_MAX + 1 bytes); false otherwise. */
bool tf__unix_path_of(const tf_addr *a, char *path);


/* Allocation of buffers handed to users (received messages): tf__alloc unless a test replaced it
 * (the seam counts allocations and injects failures). Memory from it is released with free(). */
extern void *(*tf__malloc_hook)(size_t n);
void *tf__malloc(size_t n);
/* Grow a user buffer from tf__malloc to |n| bytes, keeping its first |old|: tf__realloc, or,
 * with the hook set, a new buffer from the hook, a copy and a free of the old one. NULL: no
 * memory, and |p| is unchanged (still the caller's). */
void *tf__grow(void *p, size_t old, size_t n);

/* ---------------------------------------------------------------- syscall seam (io/sys.c) */

#include <sys/socket.h>
#include <sys/types.h>

struct iovec;
struct epoll_event;

/* The calls of io/ that a test may intercept. */
typedef enum tf__sys_op {
    TF__SYS_READ,
    TF__SYS_SENDMSG,
    TF__SYS_WRITEV,
    TF__SYS_ACCEPT4,
    TF__SYS_CONNECT,
    TF__SYS_SO_ERROR,
    TF__SYS_EPOLL_CTL,
    TF__SYS_EVENTFD_WRITE,
    TF__SYS_MALLOC,
    TF__SYS_NOPS
} tf__sys_op;

/* A test's hook, asked before each wrapped call (any thread; NULL in production). fd is the
 * call's file descriptor (epoll_ctl: the watched fd; malloc: -1). len (NULL for calls that move
 * no bytes) is the byte count about to be moved or allocated. Returns 0 to make the real call
 * (read, sendmsg, writev: moving at most *len bytes, which the hook may lower to make a short
 * transfer) or an errno value to fail it with (SO_ERROR: reported as the socket's pending error;
 * malloc: NULL) without making it -- except EINTR for connect, which is made (an interrupted
 * connect goes on in the background) and then reported as EINTR. */
typedef int (*tf__sys_hook_fn)(tf__sys_op op, int fd, size_t *len);
extern _Atomic(tf__sys_hook_fn) tf__sys_hook;

ssize_t tf__sys_read(int fd, void *buf, size_t len);
ssize_t tf__sys_sendmsg(int fd, const struct msghdr *mh, int flags);
ssize_t tf__sys_writev(int fd, const struct iovec *iov, int cnt);
int tf__sys_accept4(int fd, struct sockaddr *addr, socklen_t *alen, int flags);
int tf__sys_connect(int fd, const struct sockaddr *addr, socklen_t alen);
/* getsockopt(SO_ERROR) into *err: 0, or -1 with errno. */
int tf__sys_so_error(int fd, int *err);
int tf__sys_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev);
/* Add 1 to the eventfd |fd|: 0, or -1 with errno. */
int tf__sys_eventfd_write(int fd);
/* The library's own allocations (released with free()). */
void *tf__alloc(size_t n);
void *tf__calloc(size_t n, size_t size);
/* realloc(p, n) behind the seam's malloc question (a failure leaves p as it was). */
void *tf__realloc(void *p, size_t n);

/* Schedule perturbation (test builds and test runs; SPEC 9.8). Off unless the environment
 * variable TF_PERTURB is "SEED" or "SEED:PERMILLE" (SEED a non-zero number, decimal or 0x-hex;
 * PERMILLE 1-1000, default 50) at the first call, or a test switched it on with
 * tf__perturb_set. When on, each wrapped call above (before it is made) and each tf__perturb()
 * call, with probability PERMILLE/1000, yields the CPU (sched_yield) or pauses for 1-16 us
 * (nanosleep), to widen race windows. Each thread draws from its own xorshift generator,
 * seeded from SEED and the order in which threads first perturb (no shared state but the
 * settings). Off: one relaxed atomic load and a predictable branch. Any thread. */
void tf__perturb(void);
/* Switch the perturbation on with |seed| and |permille| (0 switches it off; above 1000: 1000),
 * overriding TF_PERTURB. Threads reseed from |seed| at their next perturbation. Any thread. */
void tf__perturb_set(uint64_t seed, unsigned permille);
/* Perturbations made so far (yields + pauses, all threads), for tests. */
uint64_t tf__perturb_count(void);

#endif /* TCPFRAME_IO_INTERNAL_H */
