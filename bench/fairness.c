/* bench/fairness.c -- a good client's echo latency on an async echo server while four clients
 * stream 60 MiB frames through it (issue 25 item 6; SPEC 9.7 "Timeouts and fairness", "Several
 * loops"). Three settings, each with a fresh server on loopback:
 *   before: io_budget unlimited (INT64_MAX), one loop
 *   after:  the default io_budget (1 MiB), one loop; and the same on two loops
 * Each fat client is a sync connection with a sending thread (60 MiB frames, back to back) and
 * a receiving thread (its echoes, into one span). Once every fat client has had an echo back, the
 * good client sends a 16-byte message every 10 ms and waits for its echo; the median and the
 * maximum of those round trips are printed, with the fat clients' echo throughput meanwhile and
 * the longest echo callback (its copy of a whole message: work on the loop no io_budget splits).
 * Each setting runs twice: the echo as tfcat does it (message-stream mode, a copy of each
 * message sent), and by allocating receives whose buffers are sent as they are (no copy).
 * Figures, not a test: nothing here fails on a time (the machine's other load moves them).
 *
 *   make bench-fairness   (or: build/plain/bench/fairness [probes] [frame_mib] [fat_clients])
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tcpframe/async.h"
#include "tcpframe/sync.h"

enum { MAX_FAT = 16, MAX_CONNS = MAX_FAT + 1 };

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void check(tf_err e, const char *what)
{
    if (e != TF_OK) {
        fprintf(stderr, "fairness: %s: %s\n", what, tf_strerror(e));
        exit(1);
    }
}

/* ---------------------------------------------------------------- the echo server */

typedef struct server {
    pthread_mutex_t mu;
    tf_async_conn *conns[MAX_CONNS];
    int nconns;
    atomic_long busy; /* echoes refused with BUSY (the queue bound is set high: should stay 0) */
    _Atomic double cb_max_ms; /* the longest echo callback (its copy of the message) */
    bool nocopy;              /* echo by allocating receives, each buffer sent as it is */
    tf_async_op ops[MAX_CONNS];
} server;

static void echo_alloc(tf_async_conn *c, tf_async_op *op, tf_err err, int os_err, uint8_t *data,
                       size_t len, void *arg)
{
    (void)os_err;
    server *sv = arg;
    if (err != TF_OK)
        return; /* the run's end: main frees the connection */
    tf_future *f = NULL;
    tf_err e = data ? tf_async_conn_send_owned(c, data, len, free, -1, &f)
                    : tf_async_conn_send(c, NULL, 0, -1, &f); /* an empty message */
    if (e != TF_OK) {
        free(data);
        if (e == TF_ERR_BUSY)
            atomic_fetch_add(&sv->busy, 1);
    }
    tf_future_free(f);
    tf_async_conn_recv_alloc_op(c, op, -1, echo_alloc, sv); /* the record is ours again */
}

static void echo_msg(tf_async_conn *c, tf_err err, int os_err, const uint8_t *data, size_t len,
                     void *arg)
{
    (void)os_err;
    server *sv = arg;
    if (err != TF_OK)
        return; /* the run's end: main frees the connection */
    double t0 = now_ms();
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy)
        return;
    memcpy(copy, data, len);
    double took = now_ms() - t0, was = atomic_load(&sv->cb_max_ms);
    while (took > was && !atomic_compare_exchange_weak(&sv->cb_max_ms, &was, took))
        ;
    tf_future *f = NULL;
    tf_err e = tf_async_conn_send_owned(c, copy, len, free, -1, &f);
    if (e != TF_OK) {
        free(copy);
        if (e == TF_ERR_BUSY)
            atomic_fetch_add(&sv->busy, 1);
        return;
    }
    tf_future_free(f);
}

static void on_accept(tf_async_server *s, tf_async_conn *c, void *arg)
{
    (void)s;
    server *sv = arg;
    pthread_mutex_lock(&sv->mu);
    int k = sv->nconns;
    bool room = k < MAX_CONNS;
    if (room)
        sv->conns[sv->nconns++] = c;
    pthread_mutex_unlock(&sv->mu);
    tf_err e = !room        ? TF_ERR_BUSY
               : sv->nocopy ? tf_async_conn_recv_alloc_op(c, &sv->ops[k], -1, echo_alloc, sv)
                            : tf_async_conn_stream(c, echo_msg, sv);
    if (e != TF_OK)
        fprintf(stderr, "fairness: a connection was not served\n");
}

/* ---------------------------------------------------------------- the fat clients */

typedef struct fat {
    tf_sync_conn *c;
    const uint8_t *frame;
    size_t len;
    uint8_t *span;
    atomic_bool *stop;
    atomic_long echoes;
    pthread_t tx, rx;
} fat;

static void *fat_send(void *arg)
{
    fat *f = arg;
    while (!atomic_load(f->stop) && tf_sync_conn_send(f->c, f->frame, f->len, -1) == TF_OK)
        ;
    return NULL;
}

static void *fat_recv(void *arg)
{
    fat *f = arg;
    size_t n;
    while (tf_sync_conn_recv(f->c, f->span, f->len, &n, -1) == TF_OK)
        atomic_fetch_add(&f->echoes, 1);
    return NULL;
}

/* ---------------------------------------------------------------- one setting */

static void run(const char *name, bool nocopy, int64_t io_budget, int loops, int probes,
                size_t frame_len, int nfat)
{
    tf_tcp_config cfg;
    tf_tcp_config_init(&cfg);
    cfg.io_budget = io_budget;
    cfg.send_queue_bytes = INT64_MAX / 2; /* echoes of fat frames never refused: no pause logic */
    cfg.send_queue_msgs = 1 << 20;
    tf_evb *evb[2] = {NULL, NULL};
    for (int i = 0; i < loops; i++) {
        check(tf_evb_new(&evb[i]), "evb_new");
        check(tf_evb_start(evb[i]), "evb_start");
    }
    server sv = {.nconns = 0, .nocopy = nocopy};
    pthread_mutex_init(&sv.mu, NULL);
    tf_async_server *s;
    check(tf_async_server_new(evb[0], &s), "server_new");
    for (int i = 1; i < loops; i++)
        check(tf_async_server_add_loop(s, evb[i]), "add_loop");
    tf_async_server_on_accept(s, on_accept, &sv);
    check(tf_async_server_init(s, "127.0.0.1:0", &cfg, NULL), "server_init");
    char addr[TF_ADDRSTR_LEN];
    check(tf_async_server_addr(s, addr, sizeof addr), "server_addr");

    uint8_t *frame = malloc(frame_len);
    if (!frame)
        check(TF_ERR_NOMEM, "frame");
    memset(frame, 0x5a, frame_len);
    atomic_bool stop = false;
    fat fats[MAX_FAT];
    for (int i = 0; i < nfat; i++) {
        fat *f = &fats[i];
        *f = (fat){.frame = frame, .len = frame_len, .stop = &stop};
        atomic_init(&f->echoes, 0);
        f->span = malloc(frame_len);
        if (!f->span)
            check(TF_ERR_NOMEM, "span");
        check(tf_sync_connect(addr, &cfg, &f->c, NULL, NULL), "fat connect");
        pthread_create(&f->tx, NULL, fat_send, f);
        pthread_create(&f->rx, NULL, fat_recv, f);
    }
    tf_sync_conn *good;
    check(tf_sync_connect(addr, &cfg, &good, NULL, NULL), "good connect");
    /* Every stream under way: each fat client has had an echo back. */
    for (int i = 0; i < nfat; i++)
        while (atomic_load(&fats[i].echoes) < 1)
            usleep(1000);
    long echoes0 = 0;
    for (int i = 0; i < nfat; i++)
        echoes0 += atomic_load(&fats[i].echoes);
    double *lat = calloc((size_t)probes, sizeof *lat);
    double t_start = now_ms();
    char msg[16] = "probe-0123456789", back[16];
    for (int i = 0; i < probes; i++) {
        double t0 = now_ms();
        size_t n = 0;
        check(tf_sync_conn_send(good, msg, sizeof msg, -1), "probe send");
        check(tf_sync_conn_recv(good, back, sizeof back, &n, -1), "probe recv");
        lat[i] = now_ms() - t0;
        usleep(10000);
    }
    double secs = (now_ms() - t_start) / 1e3;
    long echoes = -echoes0;
    for (int i = 0; i < nfat; i++)
        echoes += atomic_load(&fats[i].echoes);
    int per_loop[2] = {0, 0};
    pthread_mutex_lock(&sv.mu);
    for (int i = 0; i < sv.nconns; i++)
        per_loop[tf_async_conn_evb(sv.conns[i]) == evb[0] ? 0 : 1]++;
    pthread_mutex_unlock(&sv.mu);
    qsort(lat, (size_t)probes, sizeof *lat, cmp_d);
    double med = probes % 2 ? lat[probes / 2] : (lat[probes / 2 - 1] + lat[probes / 2]) / 2;
    printf("  %-34s median %8.2f ms   max %8.2f ms   fat echoes %6.0f MiB/s   "
           "connections per loop %d/%d   longest echo copy %.1f ms\n",
           name, med, lat[probes - 1], (double)echoes * (double)frame_len / (1 << 20) / secs,
           per_loop[0], per_loop[1], atomic_load(&sv.cb_max_ms));
    fflush(stdout);
    if (atomic_load(&sv.busy))
        printf("  (%ld echoes refused with BUSY)\n", atomic_load(&sv.busy));

    /* Teardown: the server's ends go first (the fat threads see their sockets fail). */
    atomic_store(&stop, true);
    tf_async_server_shutdown(s);
    pthread_mutex_lock(&sv.mu);
    int nc = sv.nconns;
    sv.nconns = 0;
    pthread_mutex_unlock(&sv.mu);
    for (int i = 0; i < nc; i++)
        tf_async_conn_free(sv.conns[i]);
    for (int i = 0; i < nfat; i++) {
        pthread_join(fats[i].tx, NULL);
        pthread_join(fats[i].rx, NULL);
        tf_sync_conn_free(fats[i].c);
        free(fats[i].span);
    }
    tf_sync_conn_free(good);
    tf_async_server_free(s);
    for (int i = 0; i < loops; i++) {
        tf_evb_stop(evb[i]);
        tf_evb_free(evb[i]);
    }
    pthread_mutex_destroy(&sv.mu);
    free(frame);
    free(lat);
}

int main(int argc, char **argv)
{
    int probes = argc > 1 ? atoi(argv[1]) : 100;
    long mib = argc > 2 ? atol(argv[2]) : 60;
    int nfat = argc > 3 ? atoi(argv[3]) : 4;
    if (probes < 1 || mib < 1 || mib > 63 || nfat < 1 || nfat > MAX_FAT) {
        fprintf(stderr, "usage: fairness [probes >= 1] [frame_mib 1..63] [fat_clients 1..%d]\n",
                MAX_FAT);
        return 2;
    }
    size_t len = (size_t)mib << 20;
    double load[1] = {-1};
    if (getloadavg(load, 1) < 1)
        load[0] = -1;
    printf("fairness: %d clients streaming %ld MiB frames through an async echo server; a good "
           "client's 16-byte echo, %d probes 10 ms apart (%ld cores online, load %.1f)\n",
           nfat, mib, probes, sysconf(_SC_NPROCESSORS_ONLN), load[0]);
    tf_tcp_config d;
    tf_tcp_config_init(&d);
    char after[64];
    for (int nocopy = 0; nocopy < 2; nocopy++) {
        printf(nocopy ? "echo by allocating receives, each buffer sent as it is (no copy):\n"
                      : "echo in message-stream mode, a copy of each message sent (as tfcat):\n");
        run("before: io_budget unlimited, 1 loop", nocopy, INT64_MAX, 1, probes, len, nfat);
        snprintf(after, sizeof after, "after:  io_budget %lld KiB, 1 loop",
                 (long long)d.io_budget / 1024);
        run(after, nocopy, d.io_budget, 1, probes, len, nfat);
        snprintf(after, sizeof after, "after:  io_budget %lld KiB, 2 loops",
                 (long long)d.io_budget / 1024);
        run(after, nocopy, d.io_budget, 2, probes, len, nfat);
    }
    return 0;
}
