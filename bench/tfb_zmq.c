/* bench/tfb_zmq.c -- "zmq": ZeroMQ (Debian's libzmq) PAIR sockets over tcp://127.0.0.1, one
 * context (one I/O thread, the default) for both ends, the server end on a thread of its own;
 * ZMQ_SNDBUF/ZMQ_RCVBUF as tcpframe's default (ZeroMQ sets TCP_NODELAY itself). Its own
 * framing (ZMTP), not tcpframe's. zmq_send / zmq_recv per message; 1 MiB messages are sent
 * zero-copy (zmq_msg_init_data) and received into a zmq_msg_t. Built only where libzmq is
 * found (pkg-config); the many-connection workloads are not run for it. */
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

const tfb_sys tfb_zmq = {
    .name = "zmq",
    .pair_new = zmq_pair_new,
    .rtt = zmq_rtt,
    .stream = zmq_stream,
    .pair_free = zmq_pair_free,
};
#else
/* ISO C wants a translation unit to declare something. */
typedef int tfb_zmq_absent;
#endif
