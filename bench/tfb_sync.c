/* bench/tfb_sync.c -- "sync": tf_sync_conn on both ends (tf_sync_server + tf_sync_connect,
 * default config), the server end on a thread of its own. One message per call: a stream of
 * small messages is one sendmsg per message (the blocking API has no batch). Many
 * connections: only memory is measured (a blocking API serves many connections with a thread
 * each, which is not this workload). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "tcpframe/sync.h"
#include "tfb.h"

typedef struct pair {
    tf_sync_server *srv;
    tf_sync_conn *c, *s;
    char addr[TF_ADDRSTR_LEN];
    uint8_t *big;
    int job; /* 1 echo, 2 sink */
    long n;
    size_t len;
    double t_end;
} pair;

typedef struct acceptor {
    tf_sync_server *srv;
    tf_sync_conn **out;
    int n;
} acceptor;

static void *accept_main(void *arg)
{
    acceptor *a = arg;
    tf_errmsg msg;
    for (int i = 0; i < a->n; i++)
        if (tf_sync_server_accept(a->srv, &a->out[i], NULL, &msg) != TF_OK)
            tfb_die("sync: accept: %s", msg.text);
    return NULL;
}

static tf_sync_server *server_new(char *addr, const char *bind)
{
    tf_sync_server *srv;
    tf_errmsg msg;
    tfb_check(tf_sync_server_new(&srv), "sync: server_new");
    if (tf_sync_server_init(srv, bind, tfb_server_cfg, &msg) != TF_OK)
        tfb_die("sync: server init: %s", msg.text);
    tfb_check(tf_sync_server_addr(srv, addr, TF_ADDRSTR_LEN), "sync: server addr");
    return srv;
}

/* n connections: the server accepts on a thread while this one connects. */
static void connect_n(tf_sync_server *srv, const char *addr, int n, tf_sync_conn **cs,
                      tf_sync_conn **ss)
{
    acceptor a = {srv, ss, n};
    pthread_t t;
    tf_errmsg msg;
    pthread_create(&t, NULL, accept_main, &a);
    for (int i = 0; i < n; i++)
        if (tf_sync_connect(addr, tfb_client_cfg, &cs[i], NULL, &msg) != TF_OK)
            tfb_die("sync: connect: %s", msg.text);
    pthread_join(t, NULL);
}

static void *pair_new_at(const char *bind)
{
    pair *p = calloc(1, sizeof *p);
    if (!p || !(p->big = malloc(TFB_BIG)))
        tfb_die("sync: no memory");
    p->srv = server_new(p->addr, bind);
    connect_n(p->srv, p->addr, 1, &p->c, &p->s);
    return p;
}

static void *sync_pair_new(void)
{
    return pair_new_at("127.0.0.1:0");
}

static void *sync_unix_pair_new(void)
{
    char at[TF_ADDRSTR_LEN];
    tfb_unix_addr(at, sizeof at, "sync");
    return pair_new_at(at);
}

static void *server_main(void *arg)
{
    pair *p = arg;
    uint8_t buf[TFB_SMALL];
    size_t len;
    if (p->job == 1) {
        for (long i = 0; i < p->n; i++) {
            tfb_check(tf_sync_conn_recv(p->s, buf, sizeof buf, &len, -1), "sync: recv");
            tfb_check(tf_sync_conn_send(p->s, buf, len, -1), "sync: send");
        }
        return NULL;
    }
    uint64_t sum = 0;
    long got = 0;
    for (long i = 0; i < p->n; i++) {
        tfb_check(tf_sync_conn_recv(p->s, p->big, TFB_BIG, &len, -1), "sync: recv");
        if (len != p->len)
            tfb_die("sync: got %zu bytes, sent %zu", len, p->len);
        sum += tfb_sum(p->big, len);
        got++;
    }
    p->t_end = tfb_now();
    tfb_verify("sync", p->n, p->len, got, sum);
    return NULL;
}

static double sync_rtt(void *arg, long n)
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
        size_t len;
        tfb_check(tf_sync_conn_send(p->c, msg, sizeof msg, -1), "sync: send");
        tfb_check(tf_sync_conn_recv(p->c, back, sizeof back, &len, -1), "sync: recv");
    }
    double t1 = tfb_now();
    pthread_join(t, NULL);
    return t1 - t0;
}

static double sync_stream(void *arg, long n, size_t len)
{
    pair *p = arg;
    uint8_t *src = malloc(len);
    if (!src)
        tfb_die("sync: no memory");
    tfb_fill(src, len);
    p->job = 2;
    p->n = n;
    p->len = len;
    pthread_t t;
    pthread_create(&t, NULL, server_main, p);
    double t0 = tfb_now();
    for (long i = 0; i < n; i++) {
        if (len <= TFB_SMALL)
            tfb_set_seq(src, (uint64_t)i);
        tfb_check(tf_sync_conn_send(p->c, src, len, -1), "sync: send");
    }
    pthread_join(t, NULL);
    free(src);
    return p->t_end - t0;
}

static void sync_pair_free(void *arg)
{
    pair *p = arg;
    tf_sync_conn_free(p->c);
    tf_sync_conn_free(p->s);
    tf_sync_server_free(p->srv);
    free(p->big);
    free(p);
}

/* ---------------------------------------------------------------- many connections (memory) */

typedef struct env {
    tf_sync_server *srv;
    char addr[TF_ADDRSTR_LEN];
    tf_sync_conn **cs, **ss;
    int n;
} env;

static void *sync_env_new(void)
{
    env *e = calloc(1, sizeof *e);
    if (!e)
        tfb_die("sync: no memory");
    e->srv = server_new(e->addr, "127.0.0.1:0");
    return e;
}

static void sync_env_add(void *arg, int n)
{
    env *e = arg;
    e->cs = realloc(e->cs, (size_t)(e->n + n) * sizeof *e->cs);
    e->ss = realloc(e->ss, (size_t)(e->n + n) * sizeof *e->ss);
    if (!e->cs || !e->ss)
        tfb_die("sync: no memory");
    connect_n(e->srv, e->addr, n, e->cs + e->n, e->ss + e->n);
    e->n += n;
}

static void sync_env_free(void *arg)
{
    env *e = arg;
    for (int i = 0; i < e->n; i++) {
        tf_sync_conn_free(e->cs[i]);
        tf_sync_conn_free(e->ss[i]);
    }
    tf_sync_server_free(e->srv);
    free(e->cs);
    free(e->ss);
    free(e);
}

const tfb_sys tfb_sync = {
    .name = "sync",
    .pair_new = sync_pair_new,
    .rtt = sync_rtt,
    .stream = sync_stream,
    .pair_free = sync_pair_free,
    .env_new = sync_env_new,
    .env_add = sync_env_add,
    .env_run = NULL,
    .env_free = sync_env_free,
};

const tfb_sys tfb_sync_unix = {
    .name = "sync_unix",
    .pair_new = sync_unix_pair_new,
    .rtt = sync_rtt,
    .stream = sync_stream,
    .pair_free = sync_pair_free,
    .small_only = true,
};
