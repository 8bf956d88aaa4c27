/* io/sync_conn.c -- the blocking connection (sync.h, SPEC 9.6): proto/'s machines over a
 * non-blocking socket, each call trying the syscall first and polling with its deadline only
 * when it would block; receives through a read-ahead buffer (issue 21); the gathered batch send
 * (tf_sync_conn_sendv); the poison; the generic view (conn.h) with ready futures. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "sync_internal.h"
#include "tcpframe/fdio.h"
#include "xport.h"
#include "tcpframe/proto.h"

struct tf_sync_conn {
    tf_conn base; /* first: the generic view (conn.h, internal.h) */
    int fd;
    tf_fdio fdio;    /* plain TCP: the transport's context (its halves share nothing) */
    tf__xport x;     /* the transport (io/xport.h): plain TCP over fdio, or TLS */
    tf_io io;        /* proto's view of the transport */
    tf_tx tx;        /* sending thread only */
    uint64_t tx_stuck_ns; /* sending thread only: the socket has taken nothing since (0: it did) */
    /* Receiving thread only: the receiver, and the read-ahead (TF_SYNC_READAHEAD bytes, made
     * at the first read that goes through it): rb_len bytes read from the transport and not
     * yet taken, at rb + rb_off. */
    tf_rx rx;
    uint8_t *rb;
    size_t rb_off, rb_len;
    size_t rx_moved; /* bytes of the current frame taken by the current receive call */
    bool rd_drained; /* plain TCP: the last read was short, so the next one polls first */
    bool rx_closed;  /* the peer's clean close was met between messages (sticky) */
    bool rx_large;   /* the current (else the last) frame is TF_SYNC_READAHEAD bytes or more */
    /* The read side's token: 0 free, 1 a receive call holds it (for the whole call), 2 the
     * sending thread's stall relief holds it (for one non-blocking read into rb). Whoever
     * holds it owns rx .. rx_large. */
    atomic_uint rd_token;
    atomic_uint relief_reads; /* reads the relief made (tests: tf__sync_conn_relief_reads) */
    uint32_t max_send_len, max_recv_len;
    int64_t linger_ms; /* cfg->linger_ms: how long shutdown waits to send TLS's close_notify */
    /* The poison: 0 while healthy, else the tf_err in the low half and the os_err in the high
     * half, so one CAS records both and the first failure wins across the two threads. */
    _Atomic uint64_t poison;
    atomic_bool wr_shut; /* tf_sync_conn_shutdown was called */
    tf_addr peer;        /* taken when the connection was made (valid if has_peer) */
    bool has_peer;
    /* Statistics (SPEC 9.10): each written by one thread (the sending or the receiving one),
     * read by any (relaxed). */
    atomic_uint_fast64_t st_msgs_sent, st_bytes_sent, st_q_msgs, st_q_bytes, st_pause_ns,
        st_paused_ns, st_pauses;
    atomic_uint_fast64_t st_msgs_recv, st_bytes_recv, st_in_recv, st_rx_end;
    tf__sync_sink *sink; /* the server's live count and events, or NULL */
};

/* ---------------------------------------------------------------- time and poll */

/* poll() bits for TF_WANT_* bits. */
static short poll_events(unsigned w)
{
    return (short)(((w & TF_WANT_READ) ? POLLIN : 0) | ((w & TF_WANT_WRITE) ? POLLOUT : 0));
}

uint64_t tf__deadline_ms(int64_t ms)
{
    if (ms < 0)
        return TF__FOREVER;
    uint64_t now = tf__now_ns();
    uint64_t add =
        (uint64_t)ms > (TF__FOREVER - now) / 1000000u ? TF__FOREVER - now : (uint64_t)ms * 1000000u;
    return now + add;
}

int tf__poll_ms(uint64_t deadline)
{
    if (deadline == TF__FOREVER)
        return -1;
    uint64_t now = tf__now_ns();
    if (now >= deadline)
        return 0;
    uint64_t ms = (deadline - now + 999999u) / 1000000u;
    return ms > (uint64_t)INT_MAX ? INT_MAX : (int)ms;
}

tf_err tf__sync_wait(int fd, short events, int cancel_fd, uint64_t deadline_ns, int *os_err)
{
    struct pollfd p[2] = {{.fd = fd, .events = events, .revents = 0},
                          {.fd = cancel_fd, .events = POLLIN, .revents = 0}};
    nfds_t n = cancel_fd >= 0 ? 2 : 1;
    for (;;) {
        int rc = poll(p, n, tf__poll_ms(deadline_ns));
        if (rc < 0 && errno != EINTR) {
            *os_err = errno;
            return TF_ERR_IO;
        }
        if (rc > 0 && n == 2 && p[1].revents != 0)
            return TF_ERR_SHUTDOWN;
        if (rc > 0 && (p[0].revents & POLLNVAL)) {
            *os_err = EBADF;
            return TF_ERR_IO;
        }
        if (rc > 0)
            return TF_OK;
        if (deadline_ns != TF__FOREVER && tf__now_ns() >= deadline_ns)
            return TF_ERR_TIMEOUT;
    }
}

const char *tf__sync_reason(tf_err err, int os_err, char *buf, size_t len)
{
    if (os_err == 0 || len == 0)
        return tf_strerror(err);
    if (err == TF_ERR_TLS || err == TF_ERR_TLS_VERIFY) { /* os_err is OpenSSL's, not errno */
        snprintf(buf, len, "%s (%d)", tf_strerror(err), os_err);
        return buf;
    }
    /* GNU strerror_r may return a static string instead of filling buf. */
    const char *s = strerror_r(os_err, buf, len);
    if (s != buf)
        snprintf(buf, len, "%s", s);
    return buf;
}

/* ---------------------------------------------------------------- the poison */

static tf_err poisoned(const tf_sync_conn *c, int *os_err)
{
    uint64_t v = atomic_load(&c->poison);
    if (os_err)
        *os_err = (int)(uint32_t)(v >> 32);
    return (tf_err)(uint32_t)v;
}

/* Record |err| unless a failure was recorded first, and shut the socket down both ways (a
 * thread blocked on the other direction wakes up). Returns the recorded reason. */
static tf_err poison(tf_sync_conn *c, tf_err err, int os_err)
{
    uint64_t want = (uint64_t)(uint32_t)err | (uint64_t)(uint32_t)os_err << 32;
    uint64_t seen = 0;
    if (!atomic_compare_exchange_strong(&c->poison, &seen, want))
        return (tf_err)(uint32_t)seen;
    shutdown(c->fd, SHUT_RDWR);
    return err;
}

/* ---------------------------------------------------------------- make and free */

static const tf_conn_ops sync_ops;

/* Push out what the transport accepted and still holds (TLS; plain TCP holds nothing), until
 * |deadline_ns|: TF_OK, or the reason it failed (*os_err). */
static tf_err out_flush(tf_sync_conn *c, uint64_t deadline_ns, int cancel_fd, int *os_err)
{
    if (!c->x.ops->flush)
        return TF_OK;
    for (;;) {
        long r = c->x.ops->flush(c->x.ctx, os_err);
        if (r == 0)
            return TF_OK;
        if (r == TF_IO_FAIL)
            return tf__xport_reason(&c->x, TF_ERR_IO, os_err);
        if (r == TF_IO_AGAIN) {
            short ev = poll_events(tf__xport_wants(&c->x, TF_WANT_WRITE));
            tf_err e = tf__sync_wait(c->fd, ev, cancel_fd, deadline_ns, os_err);
            if (e != TF_OK)
                return e;
        }
    }
}

/* The transport's handshake (TLS), then the magic inside it, under one deadline. */
static tf_err handshake(tf_sync_conn *c, bool magic, uint64_t deadline_ns, int cancel_fd,
                        int *os_err)
{
    for (;;) {
        tf_err err = TF_OK;
        tf_step st = tf__xport_handshake(&c->x, &err, os_err);
        if (st == TF_DONE)
            break;
        if (st == TF_ERROR)
            return err;
        short ev = poll_events(tf__xport_wants(&c->x, 0));
        tf_err e = tf__sync_wait(c->fd, ev, cancel_fd, deadline_ns, os_err);
        if (e != TF_OK)
            return e;
    }
    if (!magic)
        return TF_OK;
    tf_hs hs;
    tf_hs_init(&hs);
    for (;;) {
        tf_step st = tf_hs_try(&hs, &c->io);
        if (st == TF_DONE)
            return out_flush(c, deadline_ns, cancel_fd, os_err);
        if (st == TF_ERROR)
            return tf__xport_reason(&c->x, tf_hs_error(&hs, os_err), os_err);
        unsigned w = tf_hs_wants(&hs), need = 0;
        if (w & TF_WANT_READ)
            need |= tf__xport_wants(&c->x, TF_WANT_READ);
        if (w & TF_WANT_WRITE)
            need |= tf__xport_wants(&c->x, TF_WANT_WRITE);
        tf_err e = tf__sync_wait(c->fd, poll_events(need), cancel_fd, deadline_ns, os_err);
        if (e != TF_OK)
            return e;
    }
}

tf_err tf__sync_conn_wrap(int fd, const tf_tcp_config *cfg, const tf_addr *peer, tf__xport *x,
                          tf_sync_conn **out)
{
    *out = NULL;
    tf_sync_conn *c = tf__calloc(1, sizeof *c);
    if (!c) {
        if (x)
            tf__xport_close(x);
        close(fd);
        return TF_ERR_NOMEM;
    }
    c->base.ops = &sync_ops;
    c->fd = fd;
    tf_fdio_init(&c->fdio, fd, fd);
    c->x = (tf__xport){.ops = &tf__xport_tcp, .ctx = &c->fdio, .hs_done = true};
    if (x && x->ops != &tf__xport_tcp) {
        c->x = *x; /* the transport moves in (its context is not the caller's fdio) */
        x->ctx = NULL;
    }
    c->io = tf__xport_io(&c->x);
    c->max_send_len = cfg->max_send_len;
    c->max_recv_len = cfg->max_recv_len;
    c->linger_ms = cfg->linger_ms;
    tf_tx_init(&c->tx, cfg->max_send_len);
    tf_rx_init(&c->rx, cfg->max_recv_len);
    atomic_init(&c->poison, 0);
    atomic_init(&c->wr_shut, false);
    if (peer) {
        c->peer = *peer;
    } else { /* connect, from_fd: ask the socket now, while the peer is surely there */
        c->peer.len = sizeof c->peer.ss;
        if (getpeername(fd, (struct sockaddr *)&c->peer.ss, &c->peer.len) != 0)
            c->peer.len = 0;
    }
    int fam = c->peer.ss.ss_family;
    c->has_peer = c->peer.len > 0 && (fam == AF_INET || fam == AF_INET6 || fam == AF_UNIX);
    *out = c;
    return TF_OK;
}

tf_err tf__sync_conn_open(int fd, const tf_tcp_config *cfg, uint64_t deadline_ns, int cancel_fd,
                          tf_sync_conn **out, int *os_err)
{
    *os_err = 0;
    *out = NULL;
    tf__xport x;
    tf_fdio scratch;
    tf_err e = tf__xport_open(&x, &scratch, fd, cfg, false, os_err);
    if (e != TF_OK) {
        close(fd);
        return e;
    }
    tf_sync_conn *c;
    e = tf__sync_conn_wrap(fd, cfg, NULL, &x, &c);
    if (e != TF_OK)
        return e;
    if (cfg->handshake || !c->x.hs_done) {
        e = handshake(c, cfg->handshake != 0, deadline_ns, cancel_fd, os_err);
        if (e != TF_OK) {
            tf_sync_conn_free(c);
            return e;
        }
    }
    *out = c;
    return TF_OK;
}

static tf_err from_fd(int fd, const tf_tcp_config *cfg, tf_sync_conn **out, int *os_err,
                      tf_errmsg *msg)
{
    tf_tcp_config k;
    tf_err e = tf__config_load(&k, cfg, msg);
    if (e != TF_OK) {
        close(fd);
        return e;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) {
        *os_err = errno;
        tf__errmsg(msg, "fd %d: fcntl O_NONBLOCK: %s", fd, strerror(*os_err));
        close(fd);
        return TF_ERR_IO;
    }
    e = tf__sock_apply(fd, &k, true, os_err, msg);
    if (e != TF_OK) {
        close(fd);
        return e;
    }
    e = tf__sync_conn_open(fd, &k, tf__deadline_ms(k.handshake_timeout_ms), -1, out, os_err);
    if (e != TF_OK) {
        char why[128];
        tf__errmsg(msg, "handshake on fd %d: %s", fd, tf__sync_reason(e, *os_err, why, sizeof why));
    }
    return e;
}

tf_err tf_sync_conn_from_fd(int fd, const tf_tcp_config *cfg, tf_sync_conn **out, int *os_err,
                            tf_errmsg *msg)
{
    int os = 0;
    tf__errmsg_clear(msg);
    if (out)
        *out = NULL;
    tf_err e = TF_ERR_INVALID_ARGUMENT;
    if (fd < 0 || !out) {
        if (fd >= 0)
            close(fd);
        tf__errmsg(msg, "from_fd: %s", fd < 0 ? "negative fd" : "out is NULL");
    } else {
        e = from_fd(fd, cfg, out, &os, msg);
    }
    if (os_err)
        *os_err = os;
    return e;
}

/* The peer's address as text, "?" if none. */
static void peer_text(const tf_sync_conn *c, char *buf, size_t len)
{
    if (tf_sync_conn_peer(c, buf, len) != TF_OK)
        snprintf(buf, len, "?");
}

void tf__sync_conn_track(tf_sync_conn *c, tf__sync_sink *k)
{
    atomic_fetch_add_explicit(&k->refs, 1u, memory_order_relaxed);
    atomic_fetch_add_explicit(&k->live, 1u, memory_order_relaxed);
    c->sink = k;
    char peer[TF_ADDRSTR_LEN];
    peer_text(c, peer, sizeof peer);
    tf__sync_sink_tell(k, c, peer, TF_CONN_CONNECTED, TF_OK, 0);
}

void tf_sync_conn_free(tf_sync_conn *c)
{
    if (!c)
        return;
    if (c->sink) {
        /* CLOSED: the poison, else CLOSED if the peer closed its side, else CANCELLED (freed
         * while open), as an async connection says. */
        int os = 0;
        tf_err e = poisoned(c, &os);
        if (e == TF_OK)
            e = atomic_load_explicit(&c->st_rx_end, memory_order_relaxed) ? TF_ERR_CLOSED
                                                                           : TF_ERR_CANCELLED;
        char peer[TF_ADDRSTR_LEN];
        peer_text(c, peer, sizeof peer);
        tf__sync_sink_tell(c->sink, c, peer, TF_CONN_CLOSED, e, os);
        atomic_fetch_sub_explicit(&c->sink->live, 1u, memory_order_relaxed);
        tf__sync_sink_unref(c->sink);
    }
    /* A transport with an end of its own (TLS: close_notify) says it, as close() says FIN:
     * best effort, never blocking; not after a failure or after our shutdown already did. */
    if (c->x.ops != &tf__xport_tcp && poisoned(c, NULL) == TF_OK && !atomic_load(&c->wr_shut))
        (void)c->x.ops->shutdown_wr(c->x.ctx);
    tf__xport_close(&c->x);
    close(c->fd);
    free(c->rb);
    free(c);
}

/* ---------------------------------------------------------------- send */

/* Wait (until |dl|) until the transport can take more (|ev|: room in the socket's buffer, or
 * what TLS waits for): the time counts as a pause (stats). */
/* ---------------------------------------------------------------- the kernel's stall

 * A sender blocked while nobody reads (its owner reads only after the send, as an echo does)
 * can be stalled by the kernel (SPEC 9.3, issue 25 item 8): once the receive queue is over its
 * buffer, Linux drops the peer's segments, and with them the ACKs of our data; the send never
 * completes. So a send that has waited RELIEF_MS for the socket to take more reads what the
 * socket holds into the read-ahead (plain TCP only, as the async relief; at most FIONREAD
 * bytes, never the EOF; up to TF_SYNC_READAHEAD held), which reopens the window -- unless a
 * receive holds the read side, in which case that receive reads. */
enum { RELIEF_MS = 200 };

static void rd_take(tf_sync_conn *c)
{
    unsigned z = 0;
    while (!atomic_compare_exchange_weak_explicit(&c->rd_token, &z, 1u, memory_order_acquire,
                                                  memory_order_relaxed)) {
        z = 0;
        sched_yield(); /* the relief holds it for one non-blocking read */
    }
}

static void rd_give(tf_sync_conn *c)
{
    atomic_store_explicit(&c->rd_token, 0u, memory_order_release);
}

static void relief(tf_sync_conn *c)
{
    unsigned z = 0;
    if (!atomic_compare_exchange_strong_explicit(&c->rd_token, &z, 2u, memory_order_acquire,
                                                 memory_order_relaxed))
        return; /* a receive holds the read side: it reads */
    int avail = 0;
    if (!c->rx_closed && ioctl(c->fd, FIONREAD, &avail) == 0 && avail > 0) {
        if (!c->rb)
            c->rb = tf__alloc(TF_SYNC_READAHEAD);
        if (c->rb && c->rb_off > 0) {
            memmove(c->rb, c->rb + c->rb_off, c->rb_len);
            c->rb_off = 0;
        }
        size_t room = c->rb ? TF_SYNC_READAHEAD - c->rb_len : 0;
        size_t want = (size_t)avail < room ? (size_t)avail : room;
        int os = 0;
        long r = want ? c->io.read(c->io.ctx, c->rb + c->rb_len, want, &os) : 0;
        if (r > 0) {
            c->rb_len += (size_t)r;
            c->rd_drained = false; /* more may be there: the next receive reads first */
            atomic_fetch_add_explicit(&c->relief_reads, 1u, memory_order_relaxed);
        } /* an error is the next receive's to find */
    }
    rd_give(c);
}

unsigned tf__sync_conn_relief_reads(const tf_sync_conn *c)
{
    return atomic_load_explicit(&c->relief_reads, memory_order_relaxed);
}

static tf_err send_wait(tf_sync_conn *c, short ev, uint64_t dl, int *os)
{
    uint64_t t0 = tf__now_ns();
    atomic_store_explicit(&c->st_pause_ns, t0, memory_order_relaxed);
    tf__stat_add(&c->st_pauses, 1u);
    tf_err e;
    if (!c->tx_stuck_ns)
        c->tx_stuck_ns = t0; /* counted across calls: short timeouts in a retry loop add up */
    for (;;) {
        uint64_t step = dl, due = c->tx_stuck_ns + RELIEF_MS * 1000000ull, now = tf__now_ns();
        if (c->x.ops == &tf__xport_tcp && due < dl)
            step = due > now ? due : now;
        e = tf__sync_wait(c->fd, ev, -1, step, os);
        if (e != TF_ERR_TIMEOUT || step == dl)
            break;
        relief(c); /* RELIEF_MS without the socket taking more */
        c->tx_stuck_ns = tf__now_ns();
    }
    if (e == TF_OK)
        c->tx_stuck_ns = 0; /* writable: it takes bytes again */
    atomic_store_explicit(&c->st_pause_ns, 0u, memory_order_relaxed);
    tf__stat_add(&c->st_paused_ns, tf__now_ns() - t0);
    return e;
}

/* What refuses any send at once: the poison, or our sending side shut down (BAD_STATE). */
static tf_err send_begin(const tf_sync_conn *c)
{
    tf_err e = poisoned(c, NULL);
    if (e != TF_OK)
        return e;
    return atomic_load(&c->wr_shut) ? TF_ERR_BAD_STATE : TF_OK;
}

/* The frame begun in c->tx, until it is sent, fails or |timeout_ms| passes. */
static tf_err send_frame(tf_sync_conn *c, size_t len, int timeout_ms)
{
    uint64_t dl = tf__deadline_ms(timeout_ms);
    for (;;) {
        int os = 0;
        tf_step st = tf_tx_try(&c->tx, &c->io);
        if (st == TF_DONE) {
            c->tx_stuck_ns = 0;
            if (!c->x.ops->flush)
                return TF_OK;
            tf_err e = out_flush(c, dl, -1, &os); /* the frame moved: a failure here poisons */
            return e == TF_OK ? TF_OK : poison(c, e, os);
        }
        if (st == TF_ERROR) {
            tf_err e = tf__xport_reason(&c->x, tf_tx_error(&c->tx, &os), &os);
            return poison(c, e, os);
        }
        tf_err e = send_wait(c, poll_events(tf__xport_wants(&c->x, TF_WANT_WRITE)), dl, &os);
        if (e == TF_ERR_TIMEOUT && tf_tx_pending(&c->tx) == len + TF_HDR_LEN) {
            tf_tx_init(&c->tx, c->max_send_len); /* nothing moved: drop the frame, stay usable */
            return TF_ERR_TIMEOUT;
        }
        if (e != TF_OK)
            return poison(c, e, os);
    }
}

tf_err tf_sync_conn_send(tf_sync_conn *c, const void *buf, size_t len, int timeout_ms)
{
    if (!c || (!buf && len > 0))
        return TF_ERR_INVALID_ARGUMENT;
    tf_err e = send_begin(c);
    if (e != TF_OK)
        return e;
    e = tf_tx_begin(&c->tx, buf, len); /* TOO_LARGE refuses, changing nothing */
    if (e != TF_OK)
        return e;
    atomic_store_explicit(&c->st_q_bytes, len, memory_order_relaxed);
    atomic_store_explicit(&c->st_q_msgs, 1u, memory_order_relaxed);
    e = send_frame(c, len, timeout_ms);
    atomic_store_explicit(&c->st_q_msgs, 0u, memory_order_relaxed);
    atomic_store_explicit(&c->st_q_bytes, 0u, memory_order_relaxed);
    if (e == TF_OK) {
        tf__stat_add(&c->st_msgs_sent, 1u);
        tf__stat_add(&c->st_bytes_sent, len);
    }
    return e;
}

/* ---------------------------------------------------------------- send a batch */

/* Messages per gathered write: a prefix and a payload piece each, within IOV_MAX (1024); and
 * the most bytes one write gathers beyond its first message. */
#define SENDV_BATCH 256u
#define SENDV_MAX_BYTES ((size_t)SSIZE_MAX / 2)

/* |r| bytes of v[*at..cnt) were written: skip the pieces they covered and cut the one they ended
 * in. */
static void iov_advance(struct iovec *v, int *at, int cnt, size_t r)
{
    while (r > 0 && *at < cnt) {
        if (r >= v[*at].iov_len) {
            r -= v[*at].iov_len;
            (*at)++;
        } else {
            v[*at].iov_base = (uint8_t *)v[*at].iov_base + r;
            v[*at].iov_len -= r;
            r = 0;
        }
    }
}

/* Write v[0..cnt) (|left| bytes) through the transport, resuming partial writes, until |dl|.
 * *moved is set once a byte went. TF_OK, or the outcome (not yet recorded: the caller decides
 * whether it poisons). */
static tf_err write_all(tf_sync_conn *c, struct iovec *v, int cnt, size_t left, uint64_t dl,
                        bool *moved, int *os)
{
    int at = 0;
    while (at < cnt) {
        long r = c->x.ops->writev(c->x.ctx, v + at, cnt - at, os);
        if (r > 0) {
            if ((size_t)r > left)
                return TF_ERR_INVALID_ARGUMENT; /* the transport broke its contract */
            left -= (size_t)r;
            c->tx_stuck_ns = 0;
            *moved = true;
            iov_advance(v, &at, cnt, (size_t)r);
            continue;
        }
        if (r == 0)
            return TF_ERR_CLOSED; /* as tf_tx_try: the kernel took no byte */
        if (r == TF_IO_FAIL)
            return tf__xport_reason(&c->x, TF_ERR_IO, os);
        if (r == TF_IO_AGAIN) {
            tf_err e =
                send_wait(c, poll_events(tf__xport_wants(&c->x, TF_WANT_WRITE)), dl, os);
            if (e != TF_OK)
                return e;
        } /* TF_IO_INTR: write again */
    }
    return TF_OK;
}

tf_err tf_sync_conn_sendv(tf_sync_conn *c, const tf_iov *msgs, size_t n, int timeout_ms)
{
    if (!c || (!msgs && n > 0))
        return TF_ERR_INVALID_ARGUMENT;
    tf_err e = send_begin(c);
    if (e != TF_OK)
        return e;
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) { /* refusals first: nothing is sent unless all are fine */
        if (!msgs[i].base && msgs[i].len > 0)
            return TF_ERR_INVALID_ARGUMENT;
        if (msgs[i].len > c->max_send_len)
            return TF_ERR_TOO_LARGE;
        total += msgs[i].len;
    }
    if (n == 0)
        return TF_OK;
    uint64_t dl = tf__deadline_ms(timeout_ms);
    atomic_store_explicit(&c->st_q_bytes, total, memory_order_relaxed);
    atomic_store_explicit(&c->st_q_msgs, n, memory_order_relaxed);
    struct iovec v[2 * SENDV_BATCH];
    uint8_t hdr[SENDV_BATCH][TF_HDR_LEN];
    bool moved = false;
    int os = 0;
    for (size_t i = 0; i < n && e == TF_OK;) {
        size_t k = 0, bytes = 0;
        int cnt = 0;
        for (; k < SENDV_BATCH && i + k < n; k++) {
            const tf_iov *m = &msgs[i + k];
            /* A write's total must fit a ssize_t (32-bit size_t: a few large messages). */
            size_t used = bytes + k * TF_HDR_LEN;
            if (k > 0 && (used > SENDV_MAX_BYTES || m->len + TF_HDR_LEN > SENDV_MAX_BYTES - used))
                break;
            tf_be32_put(hdr[k], (uint32_t)m->len);
            v[cnt++] = (struct iovec){.iov_base = hdr[k], .iov_len = TF_HDR_LEN};
            if (m->len > 0) /* const dropped by the POSIX API, not written through */
                v[cnt++] = (struct iovec){.iov_base = (void *)(uintptr_t)m->base,
                                          .iov_len = m->len};
            bytes += m->len;
        }
        e = write_all(c, v, cnt, bytes + k * TF_HDR_LEN, dl, &moved, &os);
        if (e == TF_OK) {
            i += k;
            tf__stat_add(&c->st_msgs_sent, k);
            tf__stat_add(&c->st_bytes_sent, bytes);
            total -= bytes;
            atomic_store_explicit(&c->st_q_bytes, total, memory_order_relaxed);
            atomic_store_explicit(&c->st_q_msgs, n - i, memory_order_relaxed);
        }
    }
    if (e == TF_OK)
        e = out_flush(c, dl, -1, &os);
    atomic_store_explicit(&c->st_q_msgs, 0u, memory_order_relaxed);
    atomic_store_explicit(&c->st_q_bytes, 0u, memory_order_relaxed);
    if (e == TF_OK || (e == TF_ERR_TIMEOUT && !moved))
        return e; /* a TIMEOUT before any byte went: the batch is forgotten, still usable */
    return poison(c, e, os);
}

/* ---------------------------------------------------------------- receive */

/* Poison after a failed receive. */
static tf_err recv_fail(tf_sync_conn *c, tf_err err, int os_err)
{
    return poison(c, err, os_err);
}

/* The peer closed between messages: the receive direction is closed for good (every later
 * receive comes here at once). A clean EOF closes the receive direction only: nothing is
 * poisoned and sends go on until the write side itself fails (SPEC 9.6). Unless the EOF is our
 * own shutdown(SHUT_RDWR) after a failure of the other direction: the poison is recorded before
 * that shutdown, so it is seen here and reported instead. */
static tf_err closed(tf_sync_conn *c)
{
    c->rx_closed = true;
    tf_err e = poisoned(c, NULL);
    if (e == TF_OK)
        atomic_store_explicit(&c->st_rx_end, (uint_fast64_t)TF_ERR_CLOSED, memory_order_relaxed);
    return e != TF_OK ? e : TF_ERR_CLOSED;
}

/* One read of at most |n| bytes into |buf| through the transport. At a frame boundary, when the
 * last read of plain TCP was short (the socket was drained then: a reply not yet sent, a peer
 * that waits for us), it polls first instead of trying a read that would most likely say
 * AGAIN; otherwise (inside a frame, whose rest is most likely on its way) it reads first and
 * polls (until |deadline|) only on AGAIN. TF_OK: *got bytes, 0 at EOF; TIMEOUT; IO (*os_err). */
static tf_err read_wait(tf_sync_conn *c, uint8_t *buf, size_t n, uint64_t deadline, size_t *got,
                        int *os_err)
{
    bool wait = c->rd_drained && c->rx_moved == 0;
    for (;;) {
        if (wait) {
            short ev = poll_events(tf__xport_wants(&c->x, TF_WANT_READ));
            tf_err e = tf__sync_wait(c->fd, ev, -1, deadline, os_err);
            if (e != TF_OK)
                return e;
        }
        long r = c->io.read(c->io.ctx, buf, n, os_err);
        if (r >= 0) {
            /* TLS may want the socket writable for a read: it always reads first. */
            c->rd_drained = (size_t)r < n && r > 0 && c->x.ops == &tf__xport_tcp;
            *got = (size_t)r;
            return TF_OK;
        }
        if (r == TF_IO_FAIL)
            return tf__xport_reason(&c->x, TF_ERR_IO, os_err);
        wait = r == TF_IO_AGAIN; /* TF_IO_INTR: read again */
    }
}

/* Up to |want| bytes of the stream into |dst|: *got > 0 bytes, or 0 at EOF. Bytes read ahead
 * are taken first (no syscall); else one read: straight into dst when want is at least the
 * read-ahead's size, the frame (or, for a prefix, the one before) is that large, or the
 * read-ahead cannot be made; else as much as the transport has into the read-ahead, whose
 * first bytes are then taken. TF_OK; TIMEOUT; IO. */
static tf_err take(tf_sync_conn *c, uint8_t *dst, size_t want, uint64_t deadline, size_t *got,
                   int *os_err)
{
    if (c->rb_len == 0) {
        if (!c->rb && want < TF_SYNC_READAHEAD)
            c->rb = tf__alloc(TF_SYNC_READAHEAD); /* NULL: read exactly, as without one */
        /* The rest of a large body, and the prefix after it (the next is likely large too),
         * are read in place: a stream of large messages is not copied through the buffer. */
        if (want >= TF_SYNC_READAHEAD || !c->rb || c->rx_large)
            return read_wait(c, dst, want, deadline, got, os_err);
        size_t n = 0;
        tf_err e = read_wait(c, c->rb, TF_SYNC_READAHEAD, deadline, &n, os_err);
        if (e != TF_OK || n == 0) {
            *got = 0;
            return e;
        }
        c->rb_off = 0;
        c->rb_len = n;
    }
    size_t k = want < c->rb_len ? want : c->rb_len;
    memcpy(dst, c->rb + c->rb_off, k);
    c->rb_off += k;
    c->rb_len -= k;
    *got = k;
    return TF_OK;
}

/* take() for the current frame, with the outcomes of a receive: TF_OK (*got > 0, counted in
 * rx_moved); else the outcome to return (recorded): CLOSED at an EOF before any byte of the
 * frame, TRUNCATED after some; TIMEOUT unrecorded if no byte of the frame was taken in this
 * call (still at a frame boundary), else poisoned (the stream is out of step). */
static tf_err take_frame(tf_sync_conn *c, uint8_t *dst, size_t want, uint64_t deadline,
                         size_t *got)
{
    int os = 0;
    tf_err e = take(c, dst, want, deadline, got, &os);
    if (e == TF_OK && *got == 0)
        e = c->rx_moved == 0 ? TF_ERR_CLOSED : TF_ERR_TRUNCATED;
    if (e == TF_OK) {
        c->rx_moved += *got;
        return TF_OK;
    }
    if (e == TF_ERR_CLOSED)
        return closed(c);
    if (e == TF_ERR_TIMEOUT && c->rx_moved == 0)
        return TF_ERR_TIMEOUT;
    return recv_fail(c, e, os);
}

/* The start of a receive: the poison or the sticky CLOSED, else TF_OK (rx_moved reset). */
static tf_err recv_begin(tf_sync_conn *c)
{
    tf_err e = poisoned(c, NULL);
    if (e != TF_OK)
        return e;
    if (c->rx_closed)
        return closed(c);
    c->rx_moved = 0;
    return TF_OK;
}

/* The receiver's failure (sticky in it) as the receive's outcome. */
static tf_err rx_failed(tf_sync_conn *c)
{
    int os = 0;
    tf_err e = tf_rx_error(&c->rx, &os);
    return recv_fail(c, e, os);
}

/* The length prefix through the receiver's sans-I/O calls (so the max check is proto's), then,
 * with |sink| (span mode: alloc NULL), the payload through them too: TF_OK with *len and, with
 * a sink, *msg; without one, TF_OK once the receiver wants its target (*len > 0) or saw an empty
 * message (*len 0). Otherwise the outcome to return. */
static tf_err recv_frame(tf_sync_conn *c, const tf_sink *sink, uint64_t deadline, size_t *len,
                         tf_msg *msg)
{
    for (;;) {
        if (tf_rx_wants_target(&c->rx, len)) {
            c->rx_large = *len >= TF_SYNC_READAHEAD;
            if (!sink)
                return TF_OK;
            if (tf_rx_set_target(&c->rx, sink->buf, sink->cap) != TF_OK)
                return rx_failed(c); /* BUFFER_TOO_SMALL, before a payload byte is read */
        }
        uint8_t *at;
        size_t want = tf_rx_next(&c->rx, &at);
        if (want == 0)
            return rx_failed(c);
        size_t got = 0;
        tf_err e = take_frame(c, at, want, deadline, &got);
        if (e != TF_OK)
            return e;
        tf_msg m;
        tf_step st = tf_rx_advance(&c->rx, got, &m);
        if (st == TF_DONE) {
            if (m.len == 0)
                c->rx_large = false;
            *len = m.len;
            if (msg)
                *msg = m;
            return TF_OK;
        }
        if (st == TF_ERROR) /* TOO_LARGE as the 4th prefix byte lands, before any target */
            return rx_failed(c);
    }
}

tf_err tf_sync_conn_recv(tf_sync_conn *c, void *buf, size_t cap, size_t *len, int timeout_ms)
{
    if (len)
        *len = 0;
    if (!c || !len || (!buf && cap > 0))
        return TF_ERR_INVALID_ARGUMENT;
    rd_take(c);
    tf_err e = recv_begin(c);
    if (e != TF_OK) {
        rd_give(c);
        return e;
    }
    tf_sink sink = {.buf = buf, .cap = cap, .alloc = NULL, .ctx = NULL};
    tf_msg msg;
    size_t n = 0;
    atomic_store_explicit(&c->st_in_recv, 1u, memory_order_relaxed);
    e = recv_frame(c, &sink, tf__deadline_ms(timeout_ms), &n, &msg);
    atomic_store_explicit(&c->st_in_recv, 0u, memory_order_relaxed);
    rd_give(c);
    if (e == TF_OK) {
        *len = n;
        tf__stat_add(&c->st_msgs_recv, 1u);
        tf__stat_add(&c->st_bytes_recv, n);
    }
    return e;
}

/* The first buffer of a message body in alloc mode. Memory is committed as bytes arrive
 * (issue 25): min(len, GROW_MIN) first, doubled each time it fills, the last step exactly to
 * len; a peer that declares a large length and sends little binds little. A body already read
 * ahead in full gets its exact buffer at once. */
#define GROW_MIN 65536u

/* The body of |len| bytes into a buffer grown as it fills (see GROW_MIN); the receiver, which
 * waits for its target, is reset to wait for the next prefix once the body is complete. */
static tf_err recv_body(tf_sync_conn *c, size_t len, uint64_t deadline, void **out)
{
    size_t cap = len < GROW_MIN || c->rb_len >= len ? len : GROW_MIN, have = 0;
    uint8_t *buf = tf__malloc(cap);
    if (!buf)
        return recv_fail(c, TF_ERR_NOMEM, 0);
    while (have < len) {
        if (have == cap) {
            size_t next = cap > len / 2 ? len : cap * 2;
            uint8_t *grown = tf__grow(buf, have, next);
            if (!grown) {
                free(buf);
                return recv_fail(c, TF_ERR_NOMEM, 0);
            }
            buf = grown;
            cap = next;
        }
        size_t got = 0;
        tf_err e = take_frame(c, buf + have, cap - have, deadline, &got);
        if (e != TF_OK) { /* the prefix was taken: never CLOSED, a TIMEOUT poisons */
            free(buf);
            return e;
        }
        have += got;
    }
    tf_rx_init(&c->rx, c->max_recv_len);
    *out = buf;
    return TF_OK;
}

tf_err tf_sync_conn_recv_alloc(tf_sync_conn *c, void **buf, size_t *len, int timeout_ms)
{
    if (buf)
        *buf = NULL;
    if (len)
        *len = 0;
    if (!c || !buf || !len)
        return TF_ERR_INVALID_ARGUMENT;
    rd_take(c);
    tf_err e = recv_begin(c);
    if (e != TF_OK) {
        rd_give(c);
        return e;
    }
    uint64_t dl = tf__deadline_ms(timeout_ms);
    size_t n = 0;
    atomic_store_explicit(&c->st_in_recv, 1u, memory_order_relaxed);
    e = recv_frame(c, NULL, dl, &n, NULL);
    if (e == TF_OK && n > 0)
        e = recv_body(c, n, dl, buf);
    atomic_store_explicit(&c->st_in_recv, 0u, memory_order_relaxed);
    rd_give(c);
    if (e == TF_OK) {
        *len = n;
        tf__stat_add(&c->st_msgs_recv, 1u);
        tf__stat_add(&c->st_bytes_recv, n);
    }
    return e;
}

/* ---------------------------------------------------------------- the rest */

tf_err tf_sync_conn_shutdown(tf_sync_conn *c)
{
    if (!c)
        return TF_ERR_INVALID_ARGUMENT;
    tf_err e = poisoned(c, NULL);
    if (e != TF_OK)
        return e;
    if (atomic_exchange(&c->wr_shut, true))
        return TF_ERR_BAD_STATE;
    int se = c->x.ops->shutdown_wr(c->x.ctx);
    if (se != 0)
        return poison(c, TF_ERR_IO, se);
    if (tf__xport_out_pending(&c->x)) {
        /* TLS on a full socket holds our close_notify and the FIN behind it: push them out, for
         * up to linger_ms; past that the FIN goes with whatever of the close_notify went. */
        int os = 0;
        e = out_flush(c, tf__deadline_ms(c->linger_ms), -1, &os);
        if (e == TF_ERR_TIMEOUT && (se = c->x.ops->shutdown_wr(c->x.ctx)) != 0)
            e = TF_ERR_IO, os = se;
        else if (e == TF_ERR_TIMEOUT)
            e = TF_OK;
        if (e != TF_OK)
            return poison(c, e, os);
    }
    return TF_OK;
}

tf_err tf_sync_conn_error(const tf_sync_conn *c, int *os_err)
{
    if (!c) {
        if (os_err)
            *os_err = 0;
        return TF_ERR_INVALID_ARGUMENT;
    }
    return poisoned(c, os_err);
}

static uint64_t ld(const atomic_uint_fast64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

tf_err tf_sync_conn_stats(const tf_sync_conn *c, tf_conn_stats *out)
{
    if (!c)
        return TF_ERR_INVALID_ARGUMENT;
    tf_conn_stats s;
    memset(&s, 0, sizeof s);
    int os = 0;
    s.err = (int32_t)poisoned(c, &os);
    s.os_err = os;
    s.rx_end = (int32_t)ld(&c->st_rx_end);
    s.msgs_sent = ld(&c->st_msgs_sent);
    s.bytes_sent = ld(&c->st_bytes_sent);
    s.msgs_recv = ld(&c->st_msgs_recv);
    s.bytes_recv = ld(&c->st_bytes_recv);
    s.queued_msgs = ld(&c->st_q_msgs);
    s.queued_bytes = ld(&c->st_q_bytes);
    s.recv_pending = ld(&c->st_in_recv);
    uint64_t since = ld(&c->st_pause_ns);
    s.paused_ns = ld(&c->st_paused_ns);
    uint64_t now = tf__now_ns();
    if (since && now > since)
        s.paused_ns += now - since;
    s.pauses = ld(&c->st_pauses);
    return tf__stats_copy(out, &s, sizeof s, offsetof(tf_conn_stats, msgs_sent));
}

int tf_sync_conn_fd(const tf_sync_conn *c)
{
    return c ? c->fd : -1;
}

tf_err tf_sync_conn_peer(const tf_sync_conn *c, char *buf, size_t len)
{
    if (!c || !buf)
        return TF_ERR_INVALID_ARGUMENT;
    if (c->has_peer)
        return tf_addr_format(&c->peer, buf, len);
    return tf__sock_name(c->fd, true, buf, len);
}

tf_err tf_sync_conn_peer_cred(const tf_sync_conn *c, tf_peer_cred *out)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!c || !out)
        return TF_ERR_INVALID_ARGUMENT;
    /* The kernel keeps the credentials with the socket from connect on: the same answer at
     * any time, also after the peer has gone. */
    int os = 0;
    return tf__peer_cred(c->fd, out, &os);
}

/* ---------------------------------------------------------------- generic view (conn.h) */

static tf_sync_conn *of(tf_conn *b)
{
    return (tf_sync_conn *)(void *)b; /* base is the first member */
}

/* The generic view's operations run the blocking call, then hand its outcome to a future made
 * BEFORE the call: if no future can be made the operation is not started (conn.h: NOMEM means
 * the call did not start), never done with its outcome lost (a message sent but reported as
 * failed, or received and dropped). */
static tf_err begin(tf_promise **p, tf_future **out)
{
    return tf_promise_new(p, out) == TF_OK ? TF_OK : TF_ERR_NOMEM;
}

/* Settle the promise with the outcome; an owned buffer goes with it (freed by the future). */
static tf_err settle(tf_promise *p, tf_err e, size_t size, void *owned)
{
    tf_promise_set(p, e, size, owned, owned ? free : NULL);
    tf_promise_free(p);
    return TF_OK;
}

/* io/conn.c checked timeout_ms: -1 or 0..INT_MAX, so it fits the sync calls' int. */
static tf_err op_send(tf_conn *b, const void *buf, size_t len, int64_t timeout_ms,
                      tf_future **out)
{
    tf_promise *p;
    if (begin(&p, out) != TF_OK)
        return TF_ERR_NOMEM;
    tf_err e = tf_sync_conn_send(of(b), buf, len, (int)timeout_ms);
    return settle(p, e, e == TF_OK ? len : 0, NULL);
}

static tf_err op_recv(tf_conn *b, void *buf, size_t cap, int64_t timeout_ms, tf_future **out)
{
    tf_promise *p;
    if (begin(&p, out) != TF_OK)
        return TF_ERR_NOMEM;
    size_t n = 0;
    tf_err e = tf_sync_conn_recv(of(b), buf, cap, &n, (int)timeout_ms);
    return settle(p, e, n, NULL);
}

static tf_err op_recv_alloc(tf_conn *b, int64_t timeout_ms, tf_future **out)
{
    tf_promise *p;
    if (begin(&p, out) != TF_OK)
        return TF_ERR_NOMEM;
    void *data = NULL;
    size_t n = 0;
    tf_err e = tf_sync_conn_recv_alloc(of(b), &data, &n, (int)timeout_ms);
    return settle(p, e, n, data);
}

/* A sync send is complete when it returns, so there is nothing to flush: our FIN goes out
 * after the last message, then the socket is shut down both ways and later calls fail with
 * NOT_CONNECTED. The descriptor is released by free (a receiving thread may still poll it). */
static tf_err op_close(tf_conn *b, tf_future **out)
{
    tf_sync_conn *c = of(b);
    tf_err e = tf_sync_conn_shutdown(c);
    if (e == TF_ERR_BAD_STATE)
        e = TF_OK; /* already half-closed: nothing left to flush */
    poison(c, TF_ERR_NOT_CONNECTED, 0);
    tf_err fe = tf_future_new_ready(out, e, 0, NULL, NULL);
    return fe == TF_OK ? TF_OK : TF_ERR_NOMEM;
}

static tf_err op_error(const tf_conn *b, int *os_err)
{
    return tf_sync_conn_error((const tf_sync_conn *)(const void *)b, os_err);
}

static void op_free(tf_conn *b)
{
    tf_sync_conn_free(of(b));
}

static const tf_conn_ops sync_ops = {
    .send = op_send,
    .recv = op_recv,
    .recv_alloc = op_recv_alloc,
    .close = op_close,
    .error = op_error,
    .free = op_free,
};

tf_conn *tf_sync_conn_base(tf_sync_conn *c)
{
    return c ? &c->base : NULL;
}

/* The connection's transport (tls/ reads the peer's identity from it). */
const tf__xport *tf__sync_conn_xport(const tf_sync_conn *c)
{
    return &c->x;
}
