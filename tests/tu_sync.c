/* tests/tu_sync.c -- see tu_sync.h. */
#include "tu_sync.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>

#include <cmocka.h>

#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "tu_net.h"

const char *tu_host(void **state)
{
    return *state ? (const char *)*state : "127.0.0.1";
}

tf_sync_server *tu_listen(const char *host, const tf_tcp_config *cfg, char *addr, size_t len)
{
    tf_sync_server *s;
    tf_errmsg msg;
    char spec[80];
    snprintf(spec, sizeof spec, "%s:0", host);
    assert_int_equal(tf_sync_server_new(&s), TF_OK);
    assert_int_equal(tf_sync_server_init(s, spec, cfg, &msg), TF_OK);
    char bound[TF_ADDRSTR_LEN];
    assert_int_equal(tf_sync_server_addr(s, bound, sizeof bound), TF_OK);
    snprintf(addr, len, "%s:%s", host, strrchr(bound, ':') + 1);
    return s;
}

static void *connect_main(void *arg)
{
    tu_connector *k = arg;
    unsigned long long t0 = tu_now_ms();
    k->err = tf_sync_connect(k->addr, k->cfg, &k->c, &k->os_err, &k->msg);
    k->ms = tu_now_ms() - t0;
    return NULL;
}

void tu_connect_start(tu_connector *k, const char *addr, const tf_tcp_config *cfg)
{
    memset(k, 0, sizeof *k);
    k->addr = addr;
    k->cfg = cfg;
    assert_int_equal(pthread_create(&k->thread, NULL, connect_main, k), 0);
}

void tu_connect_join(tu_connector *k)
{
    pthread_join(k->thread, NULL);
}

void tu_lib_pair(const char *host, const tf_tcp_config *cfg, tf_sync_conn **srv_side,
                 tf_sync_conn **cli_side)
{
    char addr[80];
    tf_sync_server *s = tu_listen(host, cfg, addr, sizeof addr);
    tu_connector k;
    tu_connect_start(&k, addr, cfg);
    tf_errmsg msg;
    tf_err e = tf_sync_server_accept(s, srv_side, NULL, &msg);
    tu_connect_join(&k);
    tf_sync_server_free(s);
    assert_int_equal(e, TF_OK);
    assert_int_equal(k.err, TF_OK);
    *cli_side = k.c;
}

tf_sync_conn *tu_raw_pair(const char *host, const tf_tcp_config *cfg, int *raw)
{
    char addr[80];
    tf_sync_server *s = tu_listen(host, cfg, addr, sizeof addr);
    *raw = tu_raw_connect(addr);
    assert_true(*raw >= 0);
    bool hs = !cfg || cfg->handshake;
    if (hs)
        assert_true(tu_send_magic(*raw));
    tf_sync_conn *c;
    assert_int_equal(tf_sync_server_accept(s, &c, NULL, NULL), TF_OK);
    tf_sync_server_free(s);
    if (hs)
        assert_true(tu_expect_magic(*raw));
    return c;
}

bool tu_host_v6(void **state)
{
    return tu_host(state)[0] == '[';
}

void tu_addr_of(char *buf, size_t len, const char *host, int port)
{
    snprintf(buf, len, "%s:%d", host, port);
}

void tu_nap(int ms)
{
    poll(NULL, 0, ms);
}

long tu_thread_cpu_ms(void)
{
    struct rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000L +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000L;
}

void tu_exchange(tf_sync_conn *a, tf_sync_conn *b)
{
    char buf[8];
    size_t len;
    assert_int_equal(tf_sync_conn_send(a, "ping", 4, 5000), TF_OK);
    assert_int_equal(tf_sync_conn_recv(b, buf, sizeof buf, &len, 5000), TF_OK);
    assert_int_equal(len, 4);
    assert_memory_equal(buf, "ping", 4);
    assert_int_equal(tf_sync_conn_send(b, "pong", 4, 5000), TF_OK);
    assert_int_equal(tf_sync_conn_recv(a, buf, sizeof buf, &len, 5000), TF_OK);
    assert_memory_equal(buf, "pong", 4);
}
