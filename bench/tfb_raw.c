/* bench/tfb_raw.c -- "raw": the limit. Hand-written loops over plain sockets with tcpframe's
 * wire format (magic, 4-byte big-endian prefix): blocking sockets, one writev per frame (a
 * stream of small messages packs many frames into each write), a buffered reader that parses
 * frames in place; for many connections one epoll loop per side, level-triggered, one write of
 * all replies per read. Same socket options as tcpframe's defaults (TCP_NODELAY, 1 MiB
 * buffers). */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "tfb.h"

/* ---------------------------------------------------------------- sockets */

static void opts(int fd)
{
    int one = 1, buf = TFB_SOCKBUF;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf) != 0)
        tfb_die("raw: setsockopt: %s", strerror(errno));
}

static int listen_any(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    if (fd < 0)
        tfb_die("raw: socket: %s", strerror(errno));
    opts(fd);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 4096) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &l) != 0)
        tfb_die("raw: bind/listen: %s", strerror(errno));
    *port = ntohs(a.sin_port);
    return fd;
}

static int connect_to(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0)
        tfb_die("raw: socket: %s", strerror(errno));
    opts(fd);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
        tfb_die("raw: connect: %s", strerror(errno));
    return fd;
}

static void write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t k = send(fd, b, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            tfb_die("raw: send: %s", k < 0 ? strerror(errno) : "0");
        b += k;
        n -= (size_t)k;
    }
}

static void read_all(int fd, void *p, size_t n)
{
    uint8_t *b = p;
    while (n > 0) {
        ssize_t k = read(fd, b, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            tfb_die("raw: read: %s", k < 0 ? strerror(errno) : "peer closed");
        b += k;
        n -= (size_t)k;
    }
}

/* One frame with one writev (prefix + payload); a partial write finishes with send. */
static void send_frame(int fd, const void *p, size_t len)
{
    uint8_t hdr[4];
    tfb_put_len(hdr, (uint32_t)len);
    struct iovec v[2] = {{hdr, 4}, {(void *)(uintptr_t)p, len}};
    ssize_t k;
    do
        k = writev(fd, v, 2);
    while (k < 0 && errno == EINTR);
    if (k < 0)
        tfb_die("raw: writev: %s", strerror(errno));
    size_t done = (size_t)k;
    if (done < 4) {
        write_all(fd, hdr + done, 4 - done);
        done = 4;
    }
    if (done - 4 < len)
        write_all(fd, (const uint8_t *)p + (done - 4), len - (done - 4));
}

/* ---------------------------------------------------------------- buffered reader */

#define RD_CAP (64 * 1024)
typedef struct rd {
    int fd;
    size_t off, len;
    uint8_t buf[RD_CAP];
} rd;

/* Make n (<= RD_CAP) bytes available at buf + off. */
static void rd_need(rd *r, size_t n)
{
    if (r->len >= n)
        return;
    if (r->off + n > RD_CAP) {
        memmove(r->buf, r->buf + r->off, r->len);
        r->off = 0;
    }
    while (r->len < n) {
        ssize_t k = read(r->fd, r->buf + r->off + r->len, RD_CAP - r->off - r->len);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            tfb_die("raw: read: %s", k < 0 ? strerror(errno) : "peer closed");
        r->len += (size_t)k;
    }
}

/* The next frame: a view into the buffer (small frames), or copied into dst (cap bytes; the
 * rest of a large frame is read straight into it). */
static const uint8_t *rd_frame(rd *r, uint8_t *dst, size_t cap, size_t *len)
{
    rd_need(r, 4);
    size_t n = tfb_get_len(r->buf + r->off);
    r->off += 4;
    r->len -= 4;
    *len = n;
    if (n <= RD_CAP && (n <= 4096 || !dst)) {
        rd_need(r, n);
        const uint8_t *p = r->buf + r->off;
        r->off += n;
        r->len -= n;
        return p;
    }
    if (!dst || n > cap)
        tfb_die("raw: frame of %zu bytes, room for %zu", n, cap);
    size_t have = r->len < n ? r->len : n;
    memcpy(dst, r->buf + r->off, have);
    r->off += have;
    r->len -= have;
    read_all(r->fd, dst + have, n - have);
    return dst;
}

/* ---------------------------------------------------------------- a pair */

typedef struct pair {
    int cfd, sfd;
    rd *crd, *srd;
    uint8_t *big;
    /* the server thread's job */
    int job; /* 1 echo, 2 sink */
    /* raw_1w / raw_1w_exact (stream_64 only): one writev per message, as tcpframe's sync
     * sender; exact: the reader reads the prefix, then the payload (no buffer) */
    bool one_write, exact;
    long n;
    size_t len;
    double t_end;
} pair;

static void handshake(int fd)
{
    uint8_t m[4];
    write_all(fd, tfb_magic, 4);
    read_all(fd, m, 4);
    if (memcmp(m, tfb_magic, 4) != 0)
        tfb_die("raw: bad magic");
}

static void *hs_thread(void *arg)
{
    handshake(*(int *)arg);
    return NULL;
}

static void *raw_pair_new(void)
{
    pair *p = calloc(1, sizeof *p);
    if (!p)
        tfb_die("raw: no memory");
    p->crd = malloc(sizeof *p->crd);
    p->srd = malloc(sizeof *p->srd);
    p->big = malloc(TFB_BIG);
    if (!p->crd || !p->srd || !p->big)
        tfb_die("raw: no memory");
    uint16_t port;
    int l = listen_any(&port);
    p->cfd = connect_to(port);
    p->sfd = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    if (p->sfd < 0)
        tfb_die("raw: accept: %s", strerror(errno));
    close(l);
    pthread_t t;
    pthread_create(&t, NULL, hs_thread, &p->sfd);
    handshake(p->cfd);
    pthread_join(t, NULL);
    *p->crd = (rd){.fd = p->cfd};
    *p->srd = (rd){.fd = p->sfd};
    return p;
}

static void *server_main(void *arg)
{
    pair *p = arg;
    size_t len;
    if (p->job == 1) {
        for (long i = 0; i < p->n; i++) {
            const uint8_t *m = rd_frame(p->srd, NULL, 0, &len);
            send_frame(p->sfd, m, len);
        }
        return NULL;
    }
    uint64_t sum = 0;
    long got = 0;
    for (long i = 0; i < p->n; i++) {
        const uint8_t *m = p->big;
        if ((p->len > RD_CAP && p->srd->len == 0) || p->exact) {
            /* Large frames: the prefix, then the payload straight into place. Through the
             * buffered reader (a read of up to 64 KiB into its buffer, a copy, the rest
             * straight into place) this ran ~15% slower here. raw_1w_exact: every frame. */
            uint8_t h[4];
            read_all(p->sfd, h, 4);
            len = tfb_get_len(h);
            if (len > TFB_BIG)
                tfb_die("raw: frame of %zu bytes", len);
            read_all(p->sfd, p->big, len);
        } else {
            m = rd_frame(p->srd, p->big, TFB_BIG, &len);
        }
        if (len != p->len)
            tfb_die("raw: got %zu bytes, sent %zu", len, p->len);
        sum += tfb_sum(m, len);
        got++;
    }
    p->t_end = tfb_now();
    tfb_verify("raw", p->n, p->len, got, sum);
    return NULL;
}

static double raw_rtt(void *arg, long n)
{
    pair *p = arg;
    uint8_t msg[TFB_SMALL];
    tfb_fill(msg, sizeof msg);
    p->job = 1;
    p->n = n;
    pthread_t t;
    pthread_create(&t, NULL, server_main, p);
    double t0 = tfb_now();
    for (long i = 0; i < n; i++) {
        size_t len;
        send_frame(p->cfd, msg, sizeof msg);
        rd_frame(p->crd, NULL, 0, &len);
        if (len != sizeof msg)
            tfb_die("raw: echo of %zu bytes", len);
    }
    double t1 = tfb_now();
    pthread_join(t, NULL);
    return t1 - t0;
}

/* Small messages: up to 256 frames packed into one write (the batching limit); large ones:
 * one writev each. */
static double raw_stream(void *arg, long n, size_t len)
{
    pair *p = arg;
    p->job = 2;
    p->n = n;
    p->len = len;
    pthread_t t;
    pthread_create(&t, NULL, server_main, p);
    double t0 = tfb_now();
    if (p->one_write) {
        uint8_t pat[TFB_SMALL];
        tfb_fill(pat, len);
        for (long i = 0; i < n; i++) {
            tfb_set_seq(pat, (uint64_t)i);
            send_frame(p->cfd, pat, len);
        }
    } else if (len <= TFB_SMALL) {
        enum { BATCH = 256 };
        static uint8_t out[BATCH * (4 + TFB_SMALL)];
        uint8_t pat[TFB_SMALL];
        tfb_fill(pat, len);
        long i = 0;
        while (i < n) {
            size_t k = 0;
            for (int b = 0; b < BATCH && i < n; b++, i++) {
                tfb_put_len(out + k, (uint32_t)len);
                memcpy(out + k + 4, pat, len);
                tfb_set_seq(out + k + 4, (uint64_t)i);
                k += 4 + len;
            }
            write_all(p->cfd, out, k);
        }
    } else {
        uint8_t *src = malloc(len);
        if (!src)
            tfb_die("raw: no memory");
        tfb_fill(src, len);
        for (long i = 0; i < n; i++)
            send_frame(p->cfd, src, len);
        free(src);
    }
    pthread_join(t, NULL);
    return p->t_end - t0;
}

static void raw_pair_free(void *arg)
{
    pair *p = arg;
    close(p->cfd);
    close(p->sfd);
    free(p->crd);
    free(p->srd);
    free(p->big);
    free(p);
}

/* ---------------------------------------------------------------- many connections */

/* One side of a connection in an epoll loop: bytes read and not yet parsed. */
typedef struct ep_conn {
    int fd;
    bool hs_done;
    long done; /* client: round trips completed */
    size_t len;
    uint8_t buf[1024];
} ep_conn;

typedef struct env {
    int lfd, sep, cep, stop_fd;
    uint16_t port;
    pthread_t srv;
    atomic_int accepted;
    int n;
    ep_conn **sc, **cc; /* server ends (server thread only), client ends */
    int ns, cap_s, cap_c;
    uint8_t msg[TFB_SMALL];
} env;

static void nonblock(int fd)
{
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static void ep_add(int ep, int fd, void *ptr)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = ptr};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
        tfb_die("raw: epoll_ctl: %s", strerror(errno));
}

/* Read what is there; returns false if the peer closed. */
static bool ep_read(ep_conn *c)
{
    ssize_t k = read(c->fd, c->buf + c->len, sizeof c->buf - c->len);
    if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR))
        return false;
    if (k > 0)
        c->len += (size_t)k;
    return true;
}

/* The server thread's epoll marks for the listen socket (0) and the stop eventfd (1). */
static const int *marks(int which)
{
    static const int m[2];
    return &m[which];
}

static void *env_server(void *arg)
{
    env *e = arg;
    struct epoll_event evs[256];
    uint8_t out[sizeof((ep_conn *)0)->buf];
    for (;;) {
        int k = epoll_wait(e->sep, evs, 256, -1);
        if (k < 0 && errno == EINTR)
            continue;
        for (int i = 0; i < k; i++) {
            void *ptr = evs[i].data.ptr;
            if (ptr == marks(1))
                return NULL;
            if (ptr == marks(0)) {
                int fd;
                while ((fd = accept4(e->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0) {
                    ep_conn *c = calloc(1, sizeof *c);
                    if (!c)
                        tfb_die("raw: no memory");
                    c->fd = fd;
                    write_all(fd, tfb_magic, 4);
                    if (e->ns == e->cap_s) {
                        e->cap_s = e->cap_s ? 2 * e->cap_s : 64;
                        e->sc = realloc(e->sc, (size_t)e->cap_s * sizeof *e->sc);
                    }
                    e->sc[e->ns++] = c;
                    ep_add(e->sep, fd, c);
                    atomic_fetch_add(&e->accepted, 1);
                }
                continue;
            }
            ep_conn *c = ptr;
            if (!ep_read(c)) {
                epoll_ctl(e->sep, EPOLL_CTL_DEL, c->fd, NULL);
                continue;
            }
            size_t off = 0, o = 0;
            if (!c->hs_done && c->len >= 4) {
                if (memcmp(c->buf, tfb_magic, 4) != 0)
                    tfb_die("raw: bad magic");
                c->hs_done = true;
                off = 4;
            }
            while (c->hs_done && c->len - off >= 4) {
                size_t n = tfb_get_len(c->buf + off);
                if (c->len - off < 4 + n)
                    break;
                memcpy(out + o, c->buf + off, 4 + n); /* the reply: the same frame */
                o += 4 + n;
                off += 4 + n;
            }
            memmove(c->buf, c->buf + off, c->len - off);
            c->len -= off;
            if (o)
                write_all(c->fd, out, o);
        }
    }
}

static void *raw_env_new(void)
{
    env *e = calloc(1, sizeof *e);
    if (!e)
        tfb_die("raw: no memory");
    e->lfd = listen_any(&e->port);
    nonblock(e->lfd);
    e->sep = epoll_create1(EPOLL_CLOEXEC);
    e->cep = epoll_create1(EPOLL_CLOEXEC);
    e->stop_fd = eventfd(0, EFD_CLOEXEC);
    if (e->sep < 0 || e->cep < 0 || e->stop_fd < 0)
        tfb_die("raw: epoll/eventfd: %s", strerror(errno));
    tfb_fill(e->msg, sizeof e->msg);
    return e;
}

static void raw_env_add(void *arg, int n)
{
    env *e = arg;
    if (!e->srv) {
        ep_add(e->sep, e->lfd, (void *)(uintptr_t)marks(0));
        ep_add(e->sep, e->stop_fd, (void *)(uintptr_t)marks(1));
        pthread_create(&e->srv, NULL, env_server, e);
    }
    if (e->n + n > e->cap_c) {
        e->cap_c = e->n + n;
        e->cc = realloc(e->cc, (size_t)e->cap_c * sizeof *e->cc);
    }
    for (int i = 0; i < n; i++) {
        ep_conn *c = calloc(1, sizeof *c);
        if (!c)
            tfb_die("raw: no memory");
        c->fd = connect_to(e->port);
        handshake(c->fd);
        nonblock(c->fd);
        ep_add(e->cep, c->fd, c);
        e->cc[e->n++] = c;
    }
    while (atomic_load(&e->accepted) < e->n)
        usleep(100);
}

static double raw_env_run(void *arg, long rounds)
{
    env *e = arg;
    struct epoll_event evs[256];
    long left = (long)e->n * rounds;
    double t0 = tfb_now();
    for (int i = 0; i < e->n; i++) {
        e->cc[i]->done = 0;
        send_frame(e->cc[i]->fd, e->msg, sizeof e->msg);
    }
    while (left > 0) {
        int k = epoll_wait(e->cep, evs, 256, -1);
        if (k < 0 && errno == EINTR)
            continue;
        for (int i = 0; i < k; i++) {
            ep_conn *c = evs[i].data.ptr;
            if (!ep_read(c))
                tfb_die("raw: a server end closed");
            size_t off = 0;
            while (c->len - off >= 4) {
                size_t n = tfb_get_len(c->buf + off);
                if (c->len - off < 4 + n)
                    break;
                off += 4 + n;
                left--;
                if (++c->done < rounds)
                    send_frame(c->fd, e->msg, sizeof e->msg);
            }
            memmove(c->buf, c->buf + off, c->len - off);
            c->len -= off;
        }
    }
    return tfb_now() - t0;
}

static void raw_env_free(void *arg)
{
    env *e = arg;
    if (e->srv) {
        uint64_t one = 1;
        if (write(e->stop_fd, &one, sizeof one) != sizeof one)
            tfb_die("raw: eventfd write");
        pthread_join(e->srv, NULL);
    }
    for (int i = 0; i < e->n; i++) {
        close(e->cc[i]->fd);
        free(e->cc[i]);
    }
    for (int i = 0; i < e->ns; i++) {
        close(e->sc[i]->fd);
        free(e->sc[i]);
    }
    free(e->cc);
    free(e->sc);
    close(e->lfd);
    close(e->sep);
    close(e->cep);
    close(e->stop_fd);
    free(e);
}

/* The one-write variants: stream_64 only (the sender's writes as tcpframe's sync send, the
 * receiver buffered or exact), to show what a sender of one message per write is bound by. */
static void *raw_1w_new(void)
{
    pair *p = raw_pair_new();
    p->one_write = true;
    return p;
}

static void *raw_1w_exact_new(void)
{
    pair *p = raw_1w_new();
    p->exact = true;
    return p;
}

const tfb_sys tfb_raw_1w = {
    .name = "raw_1w",
    .pair_new = raw_1w_new,
    .stream = raw_stream,
    .pair_free = raw_pair_free,
    .small_only = true,
};

const tfb_sys tfb_raw_1w_exact = {
    .name = "raw_1w_exact",
    .pair_new = raw_1w_exact_new,
    .stream = raw_stream,
    .pair_free = raw_pair_free,
    .small_only = true,
};

const tfb_sys tfb_raw = {
    .name = "raw",
    .pair_new = raw_pair_new,
    .rtt = raw_rtt,
    .stream = raw_stream,
    .pair_free = raw_pair_free,
    .env_new = raw_env_new,
    .env_add = raw_env_add,
    .env_run = raw_env_run,
    .env_free = raw_env_free,
};
