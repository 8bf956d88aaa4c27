/* bench/tfb.h -- what the parts of tfbench share: the system interface each one implements
 * (bench/tfb_raw.c, tfb_sync.c, tfb_async.c, tfb_zmq.c), payload checksums and small helpers.
 * See bench/README.md for the workloads and how each system runs them.
 */
#ifndef TFBENCH_TFB_H
#define TFBENCH_TFB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tcpframe/err.h"
#include "tcpframe/tcp.h"

/* Payload sizes of the workloads. */
#define TFB_SMALL 64
#define TFB_BIG (1u << 20)
/* Socket buffers every system asks for: tcpframe's default (tf_tcp_config_init), mirrored by
 * the raw loop and ZeroMQ so that the figures compare code, not configuration. */
#define TFB_SOCKBUF (1 << 20)

/* One system under test. A pair is one connection, client end and server end in this
 * process (the server end served by a thread or a loop of its own); an env ("connection
 * environment") is a server on one loop/thread and the client ends on another, to which
 * connections are added. Every function dies (tfb_die) on an unexpected failure: a bench that
 * measured a broken run must not print a figure. NULL members: the workload is not run. */
typedef struct tfb_sys {
    const char *name;
    void *(*pair_new)(void);
    /* n round trips of a TFB_SMALL message; seconds. */
    double (*rtt)(void *pair, long n);
    /* n messages of len bytes client -> server, the receiver counting and checksumming;
     * seconds from the first send to the receiver's last message. */
    double (*stream)(void *pair, long n, size_t len);
    void (*pair_free)(void *pair);
    void *(*env_new)(void);
    /* Connect n more connections; returns once both ends of each exist. */
    void (*env_add)(void *env, int n);
    /* Every connection does |rounds| TFB_SMALL round trips, all at once; seconds. */
    double (*env_run)(void *env, long rounds);
    void (*env_free)(void *env);
    /* Only rtt_64 and stream_64 (the Unix-socket variants: SPEC 9.9). */
    bool small_only;
} tfb_sys;

extern const tfb_sys tfb_raw, tfb_sync, tfb_async_cb, tfb_async_future;
/* sync and async_cb over a Unix-domain socket (an abstract name) instead of TCP loopback. */
extern const tfb_sys tfb_sync_unix, tfb_async_cb_unix;
/* raw with one writev per message (stream_64 only), its reader buffered (raw_1w) or reading
 * each prefix and payload exactly (raw_1w_exact): the bounds of tcpframe's sync stream. */
extern const tfb_sys tfb_raw_1w, tfb_raw_1w_exact;

/* The configs of tcpframe's servers and clients: NULL (the defaults) unless --tls made TLS 1.3
 * ones (tfbench.c). */
extern const tf_tcp_config *tfb_server_cfg, *tfb_client_cfg;
#ifdef TFB_HAVE_ZMQ
extern const tfb_sys tfb_zmq;
#endif

/* A fresh abstract Unix-socket address for system |sys|: "unix:@tfbench-PID-SYS-N". */
void tfb_unix_addr(char *buf, size_t len, const char *sys);

/* CLOCK_MONOTONIC in seconds. */
double tfb_now(void);
/* Print "tfbench: <message>" to stderr and exit(2). */
void tfb_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* Die with the operation's name and the reason unless e is TF_OK. */
void tfb_check(tf_err e, const char *what);

/* Payloads: a fixed pattern (tfb_fill) whose first 8 bytes a stream overwrites with the
 * message's sequence number (tfb_set_seq). The receiver adds up the first TFB_SMALL bytes of
 * every message as 8 little-endian words (tfb_sum); tfb_expect gives the total for messages
 * 0..n-1 (with_seq) or n copies of the pattern. */
void tfb_fill(uint8_t *p, size_t len);
void tfb_set_seq(uint8_t *p, uint64_t seq);
uint64_t tfb_sum(const uint8_t *p, size_t len);
uint64_t tfb_expect(long n, size_t len);
/* Compare a receiver's count and checksum with what n messages of len bytes give. */
void tfb_verify(const char *sys, long n, size_t len, long got, uint64_t sum);

/* The 4-byte big-endian length prefix and the handshake magic ("UNIF"), for the raw loop. */
void tfb_put_len(uint8_t *p, uint32_t len);
uint32_t tfb_get_len(const uint8_t *p);
extern const uint8_t tfb_magic[4];

#endif /* TFBENCH_TFB_H */
