/* bench/tfb_async.c -- tcpframe async, two ways, default config:
 *
 *   async_cb      both ends callbacks on their loops: the server end (its own loop) in
 *                 message-stream mode echoing with callback-style sends from a slot pool or
 *                 counting (sink); the client end (another loop) in message-stream mode, its
 *                 sends callback-style tf_async_op records resubmitted from their completion
 *                 (a stream keeps many in flight: the loop gathers them into one sendmsg).
 *   async_future  the same server end; the client is the calling thread, off the loop, with a
 *                 future per operation (send futures dropped at once, receive futures waited
 *                 on; a stream keeps a window of send futures and waits on the oldest).
 */
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "tcpframe/async.h"
#include "tfb.h"

typedef struct env env;

/* ---------------------------------------------------------------- server end */

typedef struct sconn sconn;
typedef struct slot {
    tf_async_op op;
    sconn *sc;
    struct slot *next, *all;
    uint8_t buf[TFB_SMALL];
} slot;

struct sconn {
    tf_async_conn *c;
    env *e;
    slot *free_slots, *all_slots;
    sconn *next;
};

/* The client end of an async_cb connection: a few send records for its ping-pong. */
typedef struct cop {
    tf_async_op op;
    struct cconn *cc;
    bool busy;
} cop;

typedef struct cconn {
    tf_async_conn *c;
    env *e;
    long done;
    cop ops[4];
    uint8_t rbuf[TFB_SMALL];
} cconn;

/* A stream sender's record: its payload stays put until its completion. */
typedef struct sop {
    tf_async_op op;
    env *e;
    struct sop *next; /* free list */
    uint8_t buf[TFB_SMALL];
} sop;

struct env {
    bool futures;
    const char *name;
    tf_evb *sevb, *cevb;
    tf_async_server *srv;
    tf_async_client *cl;
    char addr[TF_ADDRSTR_LEN];
    pthread_mutex_t mu;
    sconn *sconns; /* appended on the server loop, under mu */
    sem_t accepted;
    /* server end: 1 echo, 2 sink (set by the main thread while no message flows) */
    atomic_int mode;
    long sink_target, sink_got;
    size_t sink_len;
    uint64_t sink_sum;
    double t_end;
    sem_t done;
    /* client ends */
    cconn **cc;
    int n;
    long rounds, left;
    /* stream sender (client loop) */
    sop *sops;
    int nsops, st_k; /* records allocated, in use by this stream */
    long st_n, st_sent;
    int st_inflight; /* records submitted and not completed */
    sop *st_free;
    sem_t st_done; /* posted when the last record completed */
    size_t st_len;
    uint8_t msg[TFB_SMALL];
    uint8_t *big;
};

static void slot_sent(tf_async_conn *c, tf_async_op *op, tf_err err, int os_err, uint8_t *data,
                      size_t len, void *arg)
{
    (void)c, (void)op, (void)err, (void)os_err, (void)data, (void)len;
    slot *s = arg;
    s->next = s->sc->free_slots;
    s->sc->free_slots = s;
}

static void srv_msg(tf_async_conn *c, tf_err err, int os_err, const uint8_t *data, size_t len,
                    void *arg)
{
    (void)os_err;
    sconn *sc = arg;
    env *e = sc->e;
    if (err != TF_OK)
        return; /* the stream ended: teardown */
    if (atomic_load_explicit(&e->mode, memory_order_relaxed) == 2) {
        if (len != e->sink_len)
            tfb_die("%s: got %zu bytes, sent %zu", e->name, len, e->sink_len);
        e->sink_sum += tfb_sum(data, len);
        if (++e->sink_got == e->sink_target) {
            e->t_end = tfb_now();
            sem_post(&e->done);
        }
        return;
    }
    slot *s = sc->free_slots;
    if (s) {
        sc->free_slots = s->next;
    } else {
        s = calloc(1, sizeof *s);
        if (!s)
            tfb_die("%s: no memory", e->name);
        s->sc = sc;
        s->all = sc->all_slots;
        sc->all_slots = s;
    }
    if (len > sizeof s->buf)
        tfb_die("%s: echo of %zu bytes", e->name, len);
    memcpy(s->buf, data, len);
    tfb_check(tf_async_conn_send_op(c, &s->op, s->buf, len, -1, slot_sent, s),
              "async: server send_op");
}

static void on_accept(tf_async_server *s, tf_async_conn *c, void *arg)
{
    (void)s;
    env *e = arg;
    sconn *sc = calloc(1, sizeof *sc);
    if (!sc)
        tfb_die("%s: no memory", e->name);
    sc->c = c;
    sc->e = e;
    tfb_check(tf_async_conn_stream(c, srv_msg, sc), "async: server stream");
    pthread_mutex_lock(&e->mu);
    sc->next = e->sconns;
    e->sconns = sc;
    pthread_mutex_unlock(&e->mu);
    sem_post(&e->accepted);
}

/* ---------------------------------------------------------------- client end (callbacks) */

static void cop_sent(tf_async_conn *c, tf_async_op *op, tf_err err, int os_err, uint8_t *data,
                     size_t len, void *arg)
{
    (void)c, (void)op, (void)os_err, (void)data, (void)len;
    cop *o = arg;
    o->busy = false;
    if (err != TF_OK && err != TF_ERR_CANCELLED)
        tfb_die("async_cb: send: %s", tf_strerror(err));
}

static void cc_ping(cconn *cc)
{
    for (int i = 0; i < 4; i++) {
        cop *o = &cc->ops[i];
        if (!o->busy) {
            o->busy = true;
            o->cc = cc;
            tfb_check(tf_async_conn_send_op(cc->c, &o->op, cc->e->msg, TFB_SMALL, -1, cop_sent, o),
                      "async_cb: send_op");
            return;
        }
    }
    tfb_die("async_cb: every send record is busy");
}

static void cli_msg(tf_async_conn *c, tf_err err, int os_err, const uint8_t *data, size_t len,
                    void *arg)
{
    (void)c, (void)os_err, (void)data;
    cconn *cc = arg;
    env *e = cc->e;
    if (err != TF_OK)
        return; /* teardown */
    if (len != TFB_SMALL)
        tfb_die("async_cb: echo of %zu bytes", len);
    if (++cc->done < e->rounds)
        cc_ping(cc);
    if (--e->left == 0)
        sem_post(&e->done);
}

static void run_start(void *arg)
{
    env *e = arg;
    for (int i = 0; i < e->n; i++) {
        e->cc[i]->done = 0;
        cc_ping(e->cc[i]);
    }
}

/* ---------------------------------------------------------------- env */

static void *env_new_at(bool futures, const char *bind, const char *name)
{
    env *e = calloc(1, sizeof *e);
    if (!e)
        tfb_die("async: no memory");
    e->futures = futures;
    e->name = name;
    e->big = malloc(TFB_BIG);
    if (!e->big)
        tfb_die("async: no memory");
    tfb_fill(e->big, TFB_BIG);
    tfb_fill(e->msg, sizeof e->msg);
    pthread_mutex_init(&e->mu, NULL);
    sem_init(&e->accepted, 0, 0);
    sem_init(&e->done, 0, 0);
    sem_init(&e->st_done, 0, 0);
    atomic_init(&e->mode, 1);
    tf_errmsg msg;
    tfb_check(tf_evb_new(&e->sevb), "evb_new");
    tfb_check(tf_evb_new(&e->cevb), "evb_new");
    tfb_check(tf_evb_start(e->sevb), "evb_start");
    tfb_check(tf_evb_start(e->cevb), "evb_start");
    tfb_check(tf_async_server_new(e->sevb, &e->srv), "async_server_new");
    tf_async_server_on_accept(e->srv, on_accept, e);
    if (tf_async_server_init(e->srv, bind, tfb_server_cfg, &msg) != TF_OK)
        tfb_die("%s: server init: %s", e->name, msg.text);
    tfb_check(tf_async_server_addr(e->srv, e->addr, sizeof e->addr), "async_server_addr");
    tfb_check(tf_async_client_new(e->cevb, tfb_client_cfg, &e->cl, &msg), "async_client_new");
    return e;
}

static void *env_new(bool futures)
{
    return env_new_at(futures, "127.0.0.1:0", futures ? "async_future" : "async_cb");
}

static void *cb_env_new(void)
{
    return env_new(false);
}

static void *fut_env_new(void)
{
    return env_new(true);
}

static void env_add(void *arg, int n)
{
    env *e = arg;
    tf_future **fs = calloc((size_t)n, sizeof *fs);
    e->cc = realloc(e->cc, (size_t)(e->n + n) * sizeof *e->cc);
    if (!fs || !e->cc)
        tfb_die("async: no memory");
    tf_errmsg msg;
    for (int i = 0; i < n; i++)
        if (tf_async_client_connect(e->cl, e->addr, &fs[i], &msg) != TF_OK)
            tfb_die("%s: connect: %s", e->name, msg.text);
    for (int i = 0; i < n; i++) {
        void *c = NULL;
        tf_err rc = tf_future_get(fs[i], NULL, &c);
        if (rc != TF_OK)
            tfb_die("%s: connect: %s (%s)", e->name, tf_strerror(rc),
                    strerror(tf_future_os_err(fs[i])));
        tf_future_free(fs[i]);
        cconn *cc = calloc(1, sizeof *cc);
        if (!cc)
            tfb_die("async: no memory");
        cc->c = c;
        cc->e = e;
        if (!e->futures)
            tfb_check(tf_async_conn_stream(cc->c, cli_msg, cc), "async_cb: stream");
        e->cc[e->n++] = cc;
    }
    free(fs);
    for (int i = 0; i < n; i++)
        while (sem_wait(&e->accepted) != 0) {
        }
}

static double cb_run(void *arg, long rounds)
{
    env *e = arg;
    e->rounds = rounds;
    e->left = (long)e->n * rounds;
    double t0 = tfb_now();
    tfb_check(tf_evb_dispatch(e->cevb, run_start, e), "dispatch");
    while (sem_wait(&e->done) != 0) {
    }
    return tfb_now() - t0;
}

/* Every round: a receive and a send on every connection, then wait for every receive. */
static double fut_run(void *arg, long rounds)
{
    env *e = arg;
    tf_future **r = malloc((size_t)e->n * sizeof *r);
    if (!r)
        tfb_die("async: no memory");
    double t0 = tfb_now();
    for (long k = 0; k < rounds; k++) {
        for (int i = 0; i < e->n; i++) {
            tf_future *s;
            tfb_check(tf_async_conn_recv(e->cc[i]->c, e->cc[i]->rbuf, TFB_SMALL, -1, &r[i]),
                      "async_future: recv");
            tfb_check(tf_async_conn_send(e->cc[i]->c, e->msg, TFB_SMALL, -1, &s),
                      "async_future: send");
            tf_future_free(s);
        }
        for (int i = 0; i < e->n; i++) {
            size_t len = 0;
            tfb_check(tf_future_get(r[i], &len, NULL), "async_future: recv");
            if (len != TFB_SMALL)
                tfb_die("async_future: echo of %zu bytes", len);
            tf_future_free(r[i]);
        }
    }
    double t = tfb_now() - t0;
    free(r);
    return t;
}

static void env_free(void *arg)
{
    env *e = arg;
    for (int i = 0; i < e->n; i++) {
        tf_async_conn_free(e->cc[i]->c);
        free(e->cc[i]);
    }
    free(e->cc);
    while (e->sconns) {
        sconn *sc = e->sconns;
        e->sconns = sc->next;
        tf_async_conn_free(sc->c);
        while (sc->all_slots) {
            slot *s = sc->all_slots;
            sc->all_slots = s->all;
            free(s);
        }
        free(sc);
    }
    tf_async_client_free(e->cl);
    tf_async_server_free(e->srv);
    tfb_check(tf_evb_free(e->cevb), "evb_free");
    tfb_check(tf_evb_free(e->sevb), "evb_free");
    sem_destroy(&e->accepted);
    sem_destroy(&e->done);
    sem_destroy(&e->st_done);
    pthread_mutex_destroy(&e->mu);
    free(e->sops);
    free(e->big);
    free(e);
}

/* ---------------------------------------------------------------- pair workloads */

static void *cb_pair_new(void)
{
    void *e = cb_env_new();
    env_add(e, 1);
    return e;
}

static void *cb_unix_pair_new(void)
{
    char at[TF_ADDRSTR_LEN];
    tfb_unix_addr(at, sizeof at, "async_cb");
    void *e = env_new_at(false, at, "async_cb_unix");
    env_add(e, 1);
    return e;
}

static void *fut_pair_new(void)
{
    void *e = fut_env_new();
    env_add(e, 1);
    return e;
}

static double cb_rtt(void *arg, long n)
{
    return cb_run(arg, n);
}

static double fut_rtt(void *arg, long n)
{
    return fut_run(arg, n);
}

static void sink_arm_task(void *arg)
{
    env *e = arg;
    e->sink_got = 0;
    e->sink_sum = 0;
    atomic_store(&e->mode, 2);
}

/* The server end counts n messages of len bytes (armed on its loop: no race with it). */
static void sink_arm(env *e, long n, size_t len)
{
    e->sink_target = n;
    e->sink_len = len;
    tfb_check(tf_evb_dispatch_and_wait(e->sevb, sink_arm_task, e), "dispatch_and_wait");
}

static void st_sent_cb(tf_async_conn *c, tf_async_op *op, tf_err err, int os_err, uint8_t *data,
                       size_t len, void *arg);

static double sink_wait(env *e, double t0)
{
    while (sem_wait(&e->done) != 0) {
    }
    atomic_store(&e->mode, 1);
    tfb_verify(e->name, e->sink_target, e->sink_len, e->sink_got, e->sink_sum);
    return e->t_end - t0;
}

static void st_submit(sop *o)
{
    env *e = o->e;
    const uint8_t *buf = e->big;
    if (e->st_len <= TFB_SMALL) {
        tfb_set_seq(o->buf, (uint64_t)e->st_sent);
        buf = o->buf;
    }
    e->st_sent++;
    e->st_inflight++;
    tfb_check(tf_async_conn_send_op(e->cc[0]->c, &o->op, buf, e->st_len, -1, st_sent_cb, o),
              "async_cb: stream send_op");
}

/* Submit free records until st_k are in flight. Called from a completion callback, the
 * submissions queue up and the loop gathers them into one sendmsg when the callback returns. */
static void st_top_up(env *e)
{
    while (e->st_free && e->st_sent < e->st_n) {
        sop *o = e->st_free;
        e->st_free = o->next;
        st_submit(o);
    }
}

static void st_sent_cb(tf_async_conn *c, tf_async_op *op, tf_err err, int os_err, uint8_t *data,
                       size_t len, void *arg)
{
    (void)c, (void)op, (void)os_err, (void)data, (void)len;
    sop *o = arg;
    env *e = o->e;
    if (err != TF_OK)
        tfb_die("async_cb: stream send: %s", tf_strerror(err));
    o->next = e->st_free;
    e->st_free = o;
    e->st_inflight--;
    st_top_up(e);
    if (e->st_inflight == 0)
        sem_post(&e->st_done); /* the sink may have counted the last message before this */
}

/* One send from outside any callback of the connection: it is written at once (the queue is
 * empty), and its completion callback submits the rest of the window. (Submitting the whole
 * window here would write each message with a sendmsg of its own: the first one's callback
 * would resubmit it at once, again alone in the queue.) */
static void st_start(void *arg)
{
    env *e = arg;
    e->st_free = NULL;
    for (int i = e->st_k - 1; i >= 0; i--) {
        e->sops[i].next = e->st_free;
        e->st_free = &e->sops[i];
    }
    sop *o = e->st_free;
    e->st_free = o->next;
    st_submit(o);
}

/* Small messages: 512 sends in flight (one sendmsg of up to IOV_MAX pieces gathers 511 frames);
 * 1 MiB: 8 in flight. */
static double cb_stream(void *arg, long n, size_t len)
{
    env *e = arg;
    int k = len <= TFB_SMALL ? 512 : 8;
    if (e->nsops < k) {
        free(e->sops);
        e->sops = calloc((size_t)k, sizeof *e->sops);
        if (!e->sops)
            tfb_die("async: no memory");
        e->nsops = k;
    }
    for (int i = 0; i < k; i++) {
        e->sops[i].e = e;
        tfb_fill(e->sops[i].buf, sizeof e->sops[i].buf);
    }
    e->st_n = n;
    e->st_sent = 0;
    e->st_len = len;
    e->st_k = k;
    e->st_inflight = 0;
    sink_arm(e, n, len);
    double t0 = tfb_now();
    tfb_check(tf_evb_dispatch(e->cevb, st_start, e), "dispatch");
    double t = sink_wait(e, t0);
    while (sem_wait(&e->st_done) != 0) {
    }
    return t;
}

/* A window of send futures (512 small, 8 large), the oldest waited on before its slot is
 * reused. */
static double fut_stream(void *arg, long n, size_t len)
{
    env *e = arg;
    int k = len <= TFB_SMALL ? 512 : 8;
    tf_future **fs = calloc((size_t)k, sizeof *fs);
    uint8_t(*bufs)[TFB_SMALL] = malloc((size_t)k * TFB_SMALL);
    if (!fs || !bufs)
        tfb_die("async: no memory");
    for (int i = 0; i < k; i++)
        tfb_fill(bufs[i], TFB_SMALL);
    sink_arm(e, n, len);
    double t0 = tfb_now();
    for (long i = 0; i < n; i++) {
        int j = (int)(i % k);
        if (fs[j]) {
            tfb_check(tf_future_get(fs[j], NULL, NULL), "async_future: send");
            tf_future_free(fs[j]);
        }
        const uint8_t *buf = e->big;
        if (len <= TFB_SMALL) {
            tfb_set_seq(bufs[j], (uint64_t)i);
            buf = bufs[j];
        }
        tfb_check(tf_async_conn_send(e->cc[0]->c, buf, len, -1, &fs[j]), "async_future: send");
    }
    double t = sink_wait(e, t0);
    for (int j = 0; j < k; j++)
        if (fs[j]) {
            tfb_check(tf_future_get(fs[j], NULL, NULL), "async_future: send");
            tf_future_free(fs[j]);
        }
    free(fs);
    free(bufs);
    return t;
}

static void pair_free(void *arg)
{
    env_free(arg);
}

const tfb_sys tfb_async_cb = {
    .name = "async_cb",
    .pair_new = cb_pair_new,
    .rtt = cb_rtt,
    .stream = cb_stream,
    .pair_free = pair_free,
    .env_new = cb_env_new,
    .env_add = env_add,
    .env_run = cb_run,
    .env_free = env_free,
};

const tfb_sys tfb_async_cb_unix = {
    .name = "async_cb_unix",
    .pair_new = cb_unix_pair_new,
    .rtt = cb_rtt,
    .stream = cb_stream,
    .pair_free = pair_free,
    .small_only = true,
};

const tfb_sys tfb_async_future = {
    .name = "async_future",
    .pair_new = fut_pair_new,
    .rtt = fut_rtt,
    .stream = fut_stream,
    .pair_free = pair_free,
    .env_new = fut_env_new,
    .env_add = env_add,
    .env_run = fut_run,
    .env_free = env_free,
};
