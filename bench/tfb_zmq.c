/* bench/tfb_zmq.c -- "zmq": ZeroMQ (Debian's libzmq) PAIR sockets over tcp://127.0.0.1, one
 * context (one I/O thread, the default) for both ends, the server end on a thread of its own;
 * ZMQ_SNDBUF/ZMQ_RCVBUF as tcpframe's default (ZeroMQ sets TCP_NODELAY itself). Its own
 * framing (ZMTP), not tcpframe's. zmq_send / zmq_recv per message; 1 MiB messages are sent
 * zero-copy (zmq_msg_init_data) and received into a zmq_msg_t. Built only where libzmq is
 * found (pkg-config). Many connections: n PAIR pairs, each server socket on a port of its own,
 * zmq_poll over all of them on each side. */
#ifdef TFB_HAVE_ZMQ
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "tfb.h"

typedef struct pair {
    void *ctx, *c, *s;
    int job; /* 1 echo, 2 sink */
    long n;
    size_t len;
    double t_end;
} pair;

static void zcheck(int rc, const char *what)
{
    if (rc < 0)
        tfb_die("zmq: %s: %s", what, zmq_strerror(zmq_errno()));
}

static void *sock(void *ctx)
{
    void *s = zmq_socket(ctx, ZMQ_PAIR);
    int buf = TFB_SOCKBUF, zero = 0;
    if (!s)
        tfb_die("zmq: socket: %s", zmq_strerror(zmq_errno()));
    zcheck(zmq_setsockopt(s, ZMQ_SNDBUF, &buf, sizeof buf), "ZMQ_SNDBUF");
    zcheck(zmq_setsockopt(s, ZMQ_RCVBUF, &buf, sizeof buf), "ZMQ_RCVBUF");
    zcheck(zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero), "ZMQ_LINGER");
    return s;
}

static void *zmq_pair_new(void)
{
    pair *p = calloc(1, sizeof *p);
    if (!p)
        tfb_die("zmq: no memory");
    p->ctx = zmq_ctx_new();
    if (!p->ctx)
        tfb_die("zmq: ctx_new: %s", zmq_strerror(zmq_errno()));
    p->s = sock(p->ctx);
    p->c = sock(p->ctx);
    char ep[256];
    size_t l = sizeof ep;
    zcheck(zmq_bind(p->s, "tcp://127.0.0.1:*"), "bind");
    zcheck(zmq_getsockopt(p->s, ZMQ_LAST_ENDPOINT, ep, &l), "ZMQ_LAST_ENDPOINT");
    zcheck(zmq_connect(p->c, ep), "connect");
    /* one round trip: the connection is up */
    char b[1] = {0};
    zcheck(zmq_send(p->c, b, 1, 0), "send");
    zcheck(zmq_recv(p->s, b, 1, 0), "recv");
    zcheck(zmq_send(p->s, b, 1, 0), "send");
    zcheck(zmq_recv(p->c, b, 1, 0), "recv");
    return p;
}

static void *server_main(void *arg)
{
    pair *p = arg;
    uint8_t buf[TFB_SMALL];
    if (p->job == 1) {
        for (long i = 0; i < p->n; i++) {
            int k = zmq_recv(p->s, buf, sizeof buf, 0);
            zcheck(k, "recv");
            zcheck(zmq_send(p->s, buf, (size_t)k, 0), "send");
        }
        return NULL;
    }
    uint64_t sum = 0;
    long got = 0;
    zmq_msg_t m;
    zmq_msg_init(&m);
    for (long i = 0; i < p->n; i++) {
        size_t len;
        if (p->len <= TFB_SMALL) {
            int k = zmq_recv(p->s, buf, sizeof buf, 0);
            zcheck(k, "recv");
            len = (size_t)k;
            sum += tfb_sum(buf, len);
        } else {
            zcheck(zmq_msg_recv(&m, p->s, 0), "msg_recv");
            len = zmq_msg_size(&m);
            sum += tfb_sum(zmq_msg_data(&m), len);
        }
        if (len != p->len)
            tfb_die("zmq: got %zu bytes, sent %zu", len, p->len);
        got++;
    }
    zmq_msg_close(&m);
    p->t_end = tfb_now();
    tfb_verify("zmq", p->n, p->len, got, sum);
    return NULL;
}

static double zmq_rtt(void *arg, long n)
{
    pair *p = arg;
    uint8_t msg[TFB_SMALL], back[TFB_SMALL];
    tfb_fill(msg, sizeof msg);
    p->job = 1;
    p->n = n;
    pthread_t t;
    pthread_create(&t, NULL, server_main, p);
    double t0 = tfb_now();
    for (long i = 0; i < n; i++) {
        zcheck(zmq_send(p->c, msg, sizeof msg, 0), "send");
        zcheck(zmq_recv(p->c, back, sizeof back, 0), "recv");
    }
    double t1 = tfb_now();
    pthread_join(t, NULL);
    return t1 - t0;
}

static void no_free(void *data, void *hint)
{
    (void)data, (void)hint;
}

static double zmq_stream(void *arg, long n, size_t len)
{
    pair *p = arg;
    uint8_t *src = malloc(len);
    if (!src)
        tfb_die("zmq: no memory");
    tfb_fill(src, len);
    p->job = 2;
    p->n = n;
    p->len = len;
    pthread_t t;
    pthread_create(&t, NULL, server_main, p);
    double t0 = tfb_now();
    for (long i = 0; i < n; i++) {
        if (len <= TFB_SMALL) {
            tfb_set_seq(src, (uint64_t)i);
            zcheck(zmq_send(p->c, src, len, 0), "send");
        } else {
            zmq_msg_t m;
            zcheck(zmq_msg_init_data(&m, src, len, no_free, NULL), "msg_init_data");
            zcheck(zmq_msg_send(&m, p->c, 0), "msg_send");
        }
    }
    pthread_join(t, NULL);
    free(src);
    return p->t_end - t0;
}

static void zmq_pair_free(void *arg)
{
    pair *p = arg;
    zmq_close(p->c);
    zmq_close(p->s);
    zmq_ctx_term(p->ctx);
    free(p);
}

/* ---------------------------------------------------------------- many connections */

/* n PAIR pairs (a PAIR socket has one peer: each server socket binds a port of its own); the
 * server end is a thread with zmq_poll over all of its sockets, the client ends the calling
 * thread with another zmq_poll. */
typedef struct env {
    void *ctx;
    void **c, **s;
    int n;
    long total; /* the server thread's job: echo this many messages */
} env;

static void *zmq_env_new(void)
{
    env *e = calloc(1, sizeof *e);
    if (!e)
        tfb_die("zmq: no memory");
    e->ctx = zmq_ctx_new();
    if (!e->ctx)
        tfb_die("zmq: ctx_new: %s", zmq_strerror(zmq_errno()));
    zcheck(zmq_ctx_set(e->ctx, ZMQ_MAX_SOCKETS, 65536), "ZMQ_MAX_SOCKETS");
    return e;
}

static void zmq_env_add(void *arg, int n)
{
    env *e = arg;
    e->c = realloc(e->c, (size_t)(e->n + n) * sizeof *e->c);
    e->s = realloc(e->s, (size_t)(e->n + n) * sizeof *e->s);
    if (!e->c || !e->s)
        tfb_die("zmq: no memory");
    for (int i = e->n; i < e->n + n; i++) {
        char ep[256];
        size_t l = sizeof ep;
        e->s[i] = sock(e->ctx);
        e->c[i] = sock(e->ctx);
        zcheck(zmq_bind(e->s[i], "tcp://127.0.0.1:*"), "bind");
        zcheck(zmq_getsockopt(e->s[i], ZMQ_LAST_ENDPOINT, ep, &l), "ZMQ_LAST_ENDPOINT");
        zcheck(zmq_connect(e->c[i], ep), "connect");
    }
    /* one round trip on each: every connection is up */
    uint8_t b[1] = {0};
    for (int i = e->n; i < e->n + n; i++)
        zcheck(zmq_send(e->c[i], b, 1, 0), "send");
    for (int i = e->n; i < e->n + n; i++) {
        zcheck(zmq_recv(e->s[i], b, 1, 0), "recv");
        zcheck(zmq_send(e->s[i], b, 1, 0), "send");
    }
    for (int i = e->n; i < e->n + n; i++)
        zcheck(zmq_recv(e->c[i], b, 1, 0), "recv");
    e->n += n;
}

static void *env_server(void *arg)
{
    env *e = arg;
    zmq_pollitem_t *it = calloc((size_t)e->n, sizeof *it);
    uint8_t buf[TFB_SMALL];
    if (!it)
        tfb_die("zmq: no memory");
    for (int i = 0; i < e->n; i++)
        it[i] = (zmq_pollitem_t){.socket = e->s[i], .events = ZMQ_POLLIN};
    for (long left = e->total; left > 0;) {
        zcheck(zmq_poll(it, e->n, -1), "poll");
        for (int i = 0; i < e->n; i++) {
            if (!(it[i].revents & ZMQ_POLLIN))
                continue;
            int k;
            while ((k = zmq_recv(e->s[i], buf, sizeof buf, ZMQ_DONTWAIT)) >= 0) {
                zcheck(zmq_send(e->s[i], buf, (size_t)k, 0), "send");
                left--;
            }
        }
    }
    free(it);
    return NULL;
}

static double zmq_env_run(void *arg, long rounds)
{
    env *e = arg;
    zmq_pollitem_t *it = calloc((size_t)e->n, sizeof *it);
    long *done = calloc((size_t)e->n, sizeof *done);
    uint8_t msg[TFB_SMALL], buf[TFB_SMALL];
    if (!it || !done)
        tfb_die("zmq: no memory");
    tfb_fill(msg, sizeof msg);
    e->total = (long)e->n * rounds;
    pthread_t t;
    pthread_create(&t, NULL, env_server, e);
    double t0 = tfb_now();
    for (int i = 0; i < e->n; i++) {
        it[i] = (zmq_pollitem_t){.socket = e->c[i], .events = ZMQ_POLLIN};
        zcheck(zmq_send(e->c[i], msg, sizeof msg, 0), "send");
    }
    for (long left = e->total; left > 0;) {
        zcheck(zmq_poll(it, e->n, -1), "poll");
        for (int i = 0; i < e->n; i++) {
            if (!(it[i].revents & ZMQ_POLLIN))
                continue;
            while (zmq_recv(e->c[i], buf, sizeof buf, ZMQ_DONTWAIT) >= 0) {
                left--;
                if (++done[i] < rounds)
                    zcheck(zmq_send(e->c[i], msg, sizeof msg, 0), "send");
            }
        }
    }
    double t1 = tfb_now();
    pthread_join(t, NULL);
    free(it);
    free(done);
    return t1 - t0;
}

static void zmq_env_free(void *arg)
{
    env *e = arg;
    for (int i = 0; i < e->n; i++) {
        zmq_close(e->c[i]);
        zmq_close(e->s[i]);
    }
    zmq_ctx_term(e->ctx);
    free(e->c);
    free(e->s);
    free(e);
}

const tfb_sys tfb_zmq = {
    .name = "zmq",
    .pair_new = zmq_pair_new,
    .rtt = zmq_rtt,
    .stream = zmq_stream,
    .pair_free = zmq_pair_free,
    .env_new = zmq_env_new,
    .env_add = zmq_env_add,
    .env_run = zmq_env_run,
    .env_free = zmq_env_free,
};
#else
/* ISO C wants a translation unit to declare something. */
typedef int tfb_zmq_absent;
#endif
