/* bench/tfbench.c -- tcpframe side by side with the raw-socket limit and ZeroMQ, in one run
 * (issue 12; bench/README.md has the method and the figures).
 *
 *   make bench                          deps (ZeroMQ), build, run: the table on stdout
 *   build/bin/tfbench [--json] [--json-file PATH] [--quick] [--reps N] [--conns N]
 *                     [--workload rtt_64,stream_64,...] [--system raw,sync,...] [--tls DIR]
 *                     [--baseline EARLIER.json] [--count N]
 *
 * --json prints JSON instead of the table; --json-file PATH writes it besides the table.
 * Workloads: rtt_64 (64 B ping-pong, us per round trip), stream_64 (64 B one way, messages/s,
 * the receiver counts and checksums), stream_1m (1 MiB one way, GB/s), conns_1k (1000
 * connections ping-ponging at once on one loop per side, round trips/s in all), mem_per_conn
 * (RSS growth per connection end after 1000 idle connections, KiB; measured in a fresh child
 * process). Systems: raw, sync, async_cb, async_future, zmq (when built with libzmq), and
 * sync_unix, async_cb_unix (rtt_64 and stream_64 over a Unix-domain socket).
 * Each figure: min / median / max over --reps repetitions (default 7), the systems of a
 * workload taking turns within each repetition, so that the load of a shared machine falls on
 * all of them alike; the ratios are of medians. Before the repetitions a pilot run of each
 * system sizes its runs to about 0.3 s (and warms it up). --quick: one short repetition of
 * each, no pilot: a smoke test (every receiver still checks its count and checksum; any
 * failure exits non-zero), not a measurement. --count N: every run exactly N messages (round
 * trips; MiB for stream_1m; rounds over all connections for conns_1k), no pilot: what
 * scripts/bench-perf.sh runs under perf stat to count syscalls and context switches per message.
 * --tls DIR: tcpframe's systems (sync, async_cb, async_future) run over mutual TLS 1.3 with
 * DIR/ca.pem, DIR/server.pem + .key, DIR/client.pem + .key (the server's certificate for
 * "localhost"); raw, zmq and mem_per_conn stay plain TCP and are left out.
 * The table is followed by the targets of issues 12 and 21. --baseline FILE: an earlier run's
 * JSON (--json-file); every ratio of this run is printed beside its ratio there, a change for
 * the worse by more than 5% flagged, and stream_64 sync is judged against its figure there.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tcpframe/tls.h"

#include "tfb.h"

/* ---------------------------------------------------------------- helpers (tfb.h) */

void tfb_unix_addr(char *buf, size_t len, const char *sys)
{
    static unsigned seq; /* pairs are made on the main thread */
    snprintf(buf, len, "unix:@tfbench-%ld-%s-%u", (long)getpid(), sys, seq++);
}

double tfb_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void tfb_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("tfbench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

void tfb_check(tf_err e, const char *what)
{
    if (e != TF_OK)
        tfb_die("%s: %s", what, tf_strerror(e));
}

const uint8_t tfb_magic[4] = {0x55, 0x4E, 0x49, 0x46};

void tfb_put_len(uint8_t *p, uint32_t len)
{
    p[0] = (uint8_t)(len >> 24);
    p[1] = (uint8_t)(len >> 16);
    p[2] = (uint8_t)(len >> 8);
    p[3] = (uint8_t)len;
}

uint32_t tfb_get_len(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

void tfb_fill(uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(i * 7 + 1);
}

void tfb_set_seq(uint8_t *p, uint64_t seq)
{
    memcpy(p, &seq, sizeof seq);
}

uint64_t tfb_sum(const uint8_t *p, size_t len)
{
    uint64_t s = 0, w;
    size_t n = len < TFB_SMALL ? len : TFB_SMALL;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        memcpy(&w, p + i, 8);
        s += w;
    }
    for (; i < n; i++)
        s += p[i];
    return s;
}

uint64_t tfb_expect(long n, size_t len)
{
    uint8_t pat[TFB_SMALL];
    size_t m = len < TFB_SMALL ? len : TFB_SMALL;
    tfb_fill(pat, m);
    uint64_t un = (uint64_t)n;
    if (len <= TFB_SMALL && len >= 8) { /* the first word is the sequence number */
        memset(pat, 0, 8);
        return un * tfb_sum(pat, m) + (un * (un - 1)) / 2;
    }
    return un * tfb_sum(pat, m);
}

void tfb_verify(const char *sys, long n, size_t len, long got, uint64_t sum)
{
    if (got != n || sum != tfb_expect(n, len))
        tfb_die("%s: receiver counted %ld messages of %zu bytes (sum %llu), expected %ld (sum "
                "%llu)",
                sys, got, len, (unsigned long long)sum, n, (unsigned long long)tfb_expect(n, len));
}

/* ---------------------------------------------------------------- systems, workloads */

static const tfb_sys *const systems[] = {
    &tfb_raw, &tfb_sync, &tfb_async_cb, &tfb_async_future,
#ifdef TFB_HAVE_ZMQ
    &tfb_zmq,
#endif
    &tfb_sync_unix, &tfb_async_cb_unix, &tfb_raw_1w, &tfb_raw_1w_exact,
};
#define NSYS ((int)(sizeof systems / sizeof systems[0]))

enum { W_RTT, W_S64, W_S1M, W_CONNS, W_MEM, NW };
static const char *const wname[NW] = {"rtt_64", "stream_64", "stream_1m", "conns_1k",
                                      "mem_per_conn"};
static const char *const wunit[NW] = {"us", "msg/s", "GB/s", "msg/s", "KiB"};

#define MAXREPS 99
typedef struct cell {
    int n;
    double v[MAXREPS];
    double min, med, max;
} cell;

static cell res[NW][NSYS];
/* CPU time of the whole process (every thread: both ends, loops, ZeroMQ's I/O thread) per
 * message (per round trip for rtt_64 and conns_1k), in microseconds: unlike the times, it
 * hardly moves when other processes take the cores. */
static cell cpu[NW][NSYS];

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}
static int reps = 7, nconns = 1000;
static bool quick, json;
static long count; /* --count: every run this size, no pilot (0: sized by the pilot) */
static const char *json_file;
static bool want_w[NW], want_s[NSYS];

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void summarise(cell *c)
{
    double v[MAXREPS];
    memcpy(v, c->v, (size_t)c->n * sizeof *v);
    qsort(v, (size_t)c->n, sizeof *v, cmp_d);
    c->min = v[0];
    c->max = v[c->n - 1];
    c->med = c->n % 2 ? v[c->n / 2] : (v[c->n / 2 - 1] + v[c->n / 2]) / 2;
}

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
}

/* Runs of about this long once sized by the pilot. */
#define TARGET_S 0.3

static long sized(long pilot_n, double pilot_s, long min_n)
{
    if (quick)
        return pilot_n;
    if (count > 0)
        return count;
    double n = (double)pilot_n * TARGET_S / (pilot_s > 1e-6 ? pilot_s : 1e-6);
    return n < (double)min_n ? min_n : (long)n;
}

/* One run of workload w on system s with size n (messages): its figure, and its CPU time per
 * message in cpu[w][si]. */
static double run_pair(int w, int si, void *h, long n)
{
    const tfb_sys *s = systems[si];
    double c0 = cpu_s(), v;
    switch (w) {
    case W_RTT:
        v = s->rtt(h, n) / (double)n * 1e6;
        break;
    case W_S64:
        v = (double)n / s->stream(h, n, TFB_SMALL);
        break;
    default:
        v = (double)n * TFB_BIG / s->stream(h, n, TFB_BIG) / 1e9;
        break;
    }
    cpu[w][si].v[cpu[w][si].n++] = (cpu_s() - c0) / (double)n * 1e6;
    return v;
}

/* Whether system s (its pair h[s]) runs workload w: small_only systems skip stream_1m, and a
 * system without a member for the workload skips it. */
static bool runs(int w, int s, void *const *h)
{
    return h[s] && !(w == W_S1M && systems[s]->small_only) && !(w == W_RTT && !systems[s]->rtt);
}

static void pair_workloads(void)
{
    void *h[NSYS] = {0};
    bool any = want_w[W_RTT] || want_w[W_S64] || want_w[W_S1M];
    if (!any)
        return;
    for (int s = 0; s < NSYS; s++)
        if (want_s[s] && systems[s]->pair_new)
            h[s] = systems[s]->pair_new();
    for (int w = W_RTT; w <= W_S1M; w++) {
        if (!want_w[w])
            continue;
        long n[NSYS];
        const long pilot = w == W_RTT   ? (quick ? 200 : 1000)
                           : w == W_S64 ? (quick ? 20000 : 50000)
                                        : (quick ? 16 : 64);
        for (int s = 0; s < NSYS; s++) {
            if (!runs(w, s, h))
                continue;
            if (quick) { /* one short run: the only repetition */
                res[w][s].v[res[w][s].n++] = run_pair(w, s, h[s], pilot);
                continue;
            }
            if (count > 0) { /* a fixed size: no pilot (perf stat per message: scripts/) */
                n[s] = count;
                continue;
            }
            double t0 = tfb_now();
            if (w == W_RTT)
                systems[s]->rtt(h[s], pilot);
            else
                systems[s]->stream(h[s], pilot, w == W_S64 ? TFB_SMALL : TFB_BIG);
            n[s] = sized(pilot, tfb_now() - t0, pilot / 4);
        }
        if (quick)
            continue;
        for (int r = 0; r < reps; r++) {
            note("\r%s: repetition %d/%d", wname[w], r + 1, reps);
            for (int s = 0; s < NSYS; s++)
                if (runs(w, s, h))
                    res[w][s].v[res[w][s].n++] = run_pair(w, s, h[s], n[s]);
        }
        note("\n");
    }
    for (int s = 0; s < NSYS; s++)
        if (h[s])
            systems[s]->pair_free(h[s]);
}

static void conns_workload(void)
{
    void *h[NSYS] = {0};
    long n[NSYS];
    if (!want_w[W_CONNS])
        return;
    for (int s = 0; s < NSYS; s++) {
        if (!want_s[s] || !systems[s]->env_run)
            continue;
        h[s] = systems[s]->env_new();
        systems[s]->env_add(h[s], nconns);
        long pilot = quick ? 3 : 5;
        n[s] = pilot;
        if (quick)
            continue;
        if (count > 0) {
            n[s] = count;
            continue;
        }
        double t0 = tfb_now();
        systems[s]->env_run(h[s], pilot);
        n[s] = sized(pilot, tfb_now() - t0, 2);
    }
    for (int r = 0; r < reps; r++) {
        if (!quick)
            note("\r%s: repetition %d/%d", wname[W_CONNS], r + 1, reps);
        for (int s = 0; s < NSYS; s++)
            if (h[s]) {
                double c0 = cpu_s(), t = systems[s]->env_run(h[s], n[s]);
                double msgs = (double)nconns * (double)n[s];
                res[W_CONNS][s].v[res[W_CONNS][s].n++] = msgs / t;
                cpu[W_CONNS][s].v[cpu[W_CONNS][s].n++] = (cpu_s() - c0) / msgs * 1e6;
            }
    }
    if (!quick)
        note("\n");
    for (int s = 0; s < NSYS; s++)
        if (h[s])
            systems[s]->env_free(h[s]);
}

/* ---------------------------------------------------------------- memory (child process) */

static long rss_bytes(void)
{
    long size = 0, res_pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f || fscanf(f, "%ld %ld", &size, &res_pages) != 2)
        tfb_die("/proc/self/statm: %s", strerror(errno));
    fclose(f);
    return res_pages * sysconf(_SC_PAGESIZE);
}

/* In a fresh process: warm the system up with a few connections (and one round trip each
 * where it has the workload), then RSS growth over n more connections, per connection end
 * (both ends live in this process: growth / (2 n)). */
static int mem_child(const char *name, int n)
{
    for (int s = 0; s < NSYS; s++) {
        const tfb_sys *sys = systems[s];
        if (strcmp(sys->name, name) != 0 || !sys->env_add)
            continue;
        void *e = sys->env_new();
        sys->env_add(e, 8);
        if (sys->env_run)
            sys->env_run(e, 1);
        long r0 = rss_bytes();
        sys->env_add(e, n);
        long r1 = rss_bytes();
        printf("%.1f\n", (double)(r1 - r0) / (2.0 * n));
        fflush(stdout);
        _exit(0);
    }
    tfb_die("--mem-child: no system %s with connections", name);
}

static double mem_run(const char *self, const char *name)
{
    int pfd[2];
    char nbuf[16];
    snprintf(nbuf, sizeof nbuf, "%d", nconns);
    if (pipe(pfd) != 0)
        tfb_die("pipe: %s", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        tfb_die("fork: %s", strerror(errno));
    if (pid == 0) {
        dup2(pfd[1], 1);
        close(pfd[0]);
        close(pfd[1]);
        execl(self, self, "--mem-child", name, nbuf, (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    char out[64] = {0};
    size_t got = 0;
    ssize_t k;
    while (got < sizeof out - 1 && (k = read(pfd[0], out + got, sizeof out - 1 - got)) > 0)
        got += (size_t)k;
    close(pfd[0]);
    int st;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || got == 0)
        tfb_die("mem_per_conn: %s: the child failed", name);
    return atof(out) / 1024.0;
}

static void mem_workload(void)
{
    char self[4096];
    if (!want_w[W_MEM])
        return;
    ssize_t l = readlink("/proc/self/exe", self, sizeof self - 1);
    if (l <= 0)
        tfb_die("readlink /proc/self/exe: %s", strerror(errno));
    self[l] = 0;
    for (int r = 0; r < reps; r++) {
        if (!quick)
            note("\r%s: repetition %d/%d", wname[W_MEM], r + 1, reps);
        for (int s = 0; s < NSYS; s++)
            if (want_s[s] && systems[s]->env_add)
                res[W_MEM][s].v[res[W_MEM][s].n++] = mem_run(self, systems[s]->name);
    }
    if (!quick)
        note("\n");
}

/* ---------------------------------------------------------------- report */

/* A target: the median ratio sys/base of workload w (cpu: of CPU time per message instead), or
 * base NULL: the figure itself (vs_baseline: against the --baseline run's figure). */
typedef struct target {
    int issue;
    int w;
    const char *sys, *base;
    bool at_most;
    double limit;
    bool cpu, vs_baseline;
} target;

static const target targets[] = {
    {12, W_RTT, "sync", "raw", true, 1.10, false, false},
    {12, W_RTT, "async_cb", "raw", true, 1.20, false, false},
    {12, W_RTT, "async_future", "raw", true, 1.60, false, false},
    {12, W_S64, "async_cb", "zmq", false, 1.5, false, false},
    {12, W_S1M, "sync", "raw", false, 0.90, false, false},
    {12, W_S1M, "async_cb", "raw", false, 0.90, false, false},
    {12, W_S1M, "async_future", "raw", false, 0.90, false, false},
    {12, W_CONNS, "async_cb", "raw", false, 0.80, false, false},
    {12, W_MEM, "async_cb", NULL, true, 4.0, false, false},
    /* issue 21: the future path at ZeroMQ's speed, the sync path at the raw limit */
    {21, W_S64, "async_future", "zmq", false, 1.0, false, false},
    {21, W_S64, "async_future", "zmq", true, 1.0, true, false},
    {21, W_RTT, "sync", "raw", true, 1.10, false, false},
    {21, W_RTT, "async_future", "raw", true, 1.40, false, false},
    {21, W_RTT, "async_cb", "raw", true, 1.10, false, false},
    {21, W_S1M, "async_future", "raw", false, 0.95, false, false},
    {21, W_CONNS, "async_future", "raw", false, 0.80, false, false},
    {21, W_S64, "sync", NULL, false, 1.5, false, true},
};

static int sys_index(const char *name)
{
    for (int s = 0; s < NSYS; s++)
        if (strcmp(systems[s]->name, name) == 0)
            return s;
    return -1;
}

static bool have(int w, int s)
{
    return s >= 0 && res[w][s].n > 0;
}

/* The median ratio sys/base for workload w; false if either is missing (or base is 0). */
static bool ratio(int w, int s, int b, double *out)
{
    if (!have(w, s) || !have(w, b) || res[w][b].med <= 0)
        return false;
    *out = res[w][s].med / res[w][b].med;
    return true;
}

/* The same for the median CPU time per message. */
static bool cpu_ratio(int w, int s, int b, double *out)
{
    if (s < 0 || b < 0 || !cpu[w][s].n || !cpu[w][b].n || cpu[w][b].med <= 0)
        return false;
    *out = cpu[w][s].med / cpu[w][b].med;
    return true;
}

/* ---------------------------------------------------------------- the ratios (JSON, baseline) */

/* Every ratio of this run, as the JSON "ratios" names it: each system against raw (figures and
 * CPU time per message; not memory, where raw's figure is the bench's own record), and
 * async_cb, async_future against zmq on stream_64. lower: a lower value is better. */
typedef struct named_ratio {
    char key[96];
    double v;
    bool lower;
} named_ratio;

#define MAXRATIOS 128

static size_t collect_ratios(named_ratio *out)
{
    size_t n = 0;
    for (int w = 0; w < W_MEM; w++)
        for (int s = 1; s < NSYS; s++) {
            double x;
            if (ratio(w, s, 0, &x)) {
                snprintf(out[n].key, sizeof out[n].key, "%s/raw %s", systems[s]->name, wname[w]);
                out[n].v = x;
                out[n++].lower = w == W_RTT;
            }
            if (cpu_ratio(w, s, 0, &x)) {
                snprintf(out[n].key, sizeof out[n].key, "%s/raw cpu_us %s", systems[s]->name,
                         wname[w]);
                out[n].v = x;
                out[n++].lower = true;
            }
        }
    /* stream_64 against ZeroMQ, and the sync stream against raw with the same one write per
     * message (its receiver buffered, or exact as the sync receive was before the read-ahead) */
    static const char *const vs[][2] = {{"async_cb", "zmq"},
                                        {"async_future", "zmq"},
                                        {"sync", "raw_1w"},
                                        {"sync", "raw_1w_exact"}};
    for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) {
        int a = sys_index(vs[i][0]), z = sys_index(vs[i][1]);
        double x;
        if (ratio(W_S64, a, z, &x)) {
            snprintf(out[n].key, sizeof out[n].key, "%s/%s stream_64", vs[i][0], vs[i][1]);
            out[n].v = x;
            out[n++].lower = false;
        }
        if (cpu_ratio(W_S64, a, z, &x)) {
            snprintf(out[n].key, sizeof out[n].key, "%s/%s cpu_us stream_64", vs[i][0], vs[i][1]);
            out[n].v = x;
            out[n++].lower = true;
        }
    }
    return n;
}

/* --baseline FILE: an earlier run's JSON (this program's own format, read back loosely). */
static const char *baseline_file;
static named_ratio base_ratios[MAXRATIOS];
static size_t nbase;
static double base_s64_sync; /* its stream_64 sync median msg/s, 0 if absent */

/* The next JSON string at or after *p (no escapes: this program writes none): copied to buf,
 * *p moved past it. False when there is none before |end|. */
static bool json_str(const char **p, const char *end, char *buf, size_t len)
{
    const char *a = memchr(*p, '"', (size_t)(end - *p));
    if (!a)
        return false;
    const char *b = memchr(a + 1, '"', (size_t)(end - a - 1));
    if (!b || (size_t)(b - a - 1) >= len)
        return false;
    memcpy(buf, a + 1, (size_t)(b - a - 1));
    buf[b - a - 1] = '\0';
    *p = b + 1;
    return true;
}

static void load_baseline(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        tfb_die("--baseline %s: %s", path, strerror(errno));
    static char text[1 << 20];
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[len] = '\0';
    /* stream_64 sync's median, in the results */
    const char *r = strstr(text, "\"workload\": \"stream_64\", \"system\": \"sync\"");
    const char *m = r ? strstr(r, "\"median\": ") : NULL;
    if (m)
        base_s64_sync = strtod(m + strlen("\"median\": "), NULL);
    const char *p = strstr(text, "\"ratios\": {");
    if (!p)
        tfb_die("--baseline %s: no \"ratios\" in it (a tfbench JSON file?)", path);
    p += strlen("\"ratios\": {");
    const char *close = strchr(p, '}');
    if (!close)
        tfb_die("--baseline %s: \"ratios\" not closed", path);
    char key[96];
    while (nbase < MAXRATIOS && json_str(&p, close, key, sizeof key)) {
        const char *colon = strchr(p, ':');
        if (!colon || colon > close)
            break;
        char *after;
        double v = strtod(colon + 1, &after);
        if (after == colon + 1)
            tfb_die("--baseline %s: \"%s\" has no number", path, key);
        snprintf(base_ratios[nbase].key, sizeof base_ratios[nbase].key, "%s", key);
        base_ratios[nbase++].v = v;
        p = after;
    }
}

static bool base_ratio(const char *key, double *out)
{
    for (size_t i = 0; i < nbase; i++)
        if (strcmp(base_ratios[i].key, key) == 0) {
            *out = base_ratios[i].v;
            return true;
        }
    return false;
}

/* Every ratio of this run beside the baseline's; a change worse by more than 5% is flagged. */
static void print_baseline(void)
{
    static named_ratio now[MAXRATIOS];
    size_t n = collect_ratios(now);
    printf("\nagainst the baseline %s (each run's own ratios of medians; a change for the worse "
           "by more than 5%% is flagged):\n",
           baseline_file);
    printf("  %-36s %9s %9s %8s\n", "ratio", "baseline", "now", "change");
    int worse = 0;
    for (size_t i = 0; i < n; i++) {
        double b;
        if (!base_ratio(now[i].key, &b)) {
            printf("  %-36s %9s %9.3g\n", now[i].key, "-", now[i].v);
            continue;
        }
        double ch = b > 0 ? now[i].v / b - 1.0 : 0.0;
        bool bad = now[i].lower ? ch > 0.05 : ch < -0.05;
        worse += bad;
        printf("  %-36s %9.3g %9.3g %+7.1f%%%s\n", now[i].key, b, now[i].v, ch * 100.0,
               bad ? "  WORSE" : "");
    }
    for (size_t i = 0; i < nbase; i++) {
        bool found = false;
        for (size_t j = 0; j < n && !found; j++)
            found = strcmp(now[j].key, base_ratios[i].key) == 0;
        if (!found)
            printf("  %-36s %9.3g %9s\n", base_ratios[i].key, base_ratios[i].v, "-");
    }
    printf("  %d ratio%s worse by more than 5%%\n", worse, worse == 1 ? "" : "s");
}

static void fmt(char *buf, size_t len, double v)
{
    if (v >= 1e6)
        snprintf(buf, len, "%.3fM", v / 1e6);
    else if (v >= 1e4)
        snprintf(buf, len, "%.1fk", v / 1e3);
    else
        snprintf(buf, len, "%.2f", v);
}

static void print_target(const target *t)
{
    int s = sys_index(t->sys), b = t->base ? sys_index(t->base) : -1;
    char what[64];
    double v = 0;
    bool ok;
    if (t->vs_baseline) {
        snprintf(what, sizeof what, "%s %s %s/baseline", wname[t->w], t->sys, wunit[t->w]);
        ok = have(t->w, s) && base_s64_sync > 0;
        if (have(t->w, s) && !ok) {
            char f[32];
            fmt(f, sizeof f, res[t->w][s].med);
            printf("  %-34s %s %.2f: %s now; not judged (no --baseline with it)\n", what,
                   t->at_most ? "<=" : ">=", t->limit, f);
            return;
        }
        if (ok)
            v = res[t->w][s].med / base_s64_sync;
    } else if (t->base) {
        snprintf(what, sizeof what, "%s %s/%s%s", wname[t->w], t->sys, t->base,
                 t->cpu ? " cpu_us" : "");
        ok = t->cpu ? cpu_ratio(t->w, s, b, &v) : ratio(t->w, s, b, &v);
    } else {
        snprintf(what, sizeof what, "%s %s (%s)", wname[t->w], t->sys, wunit[t->w]);
        ok = have(t->w, s);
        v = ok ? res[t->w][s].med : 0;
    }
    if (!ok) {
        printf("  %-34s %s %.2f: not measured\n", what, t->at_most ? "<=" : ">=", t->limit);
        return;
    }
    bool met = t->at_most ? v <= t->limit : v >= t->limit;
    char best[48] = "";
    if (t->base) { /* best of run against best of run: what the load leaves least touched */
        const cell *c = t->cpu ? cpu[t->w] : res[t->w];
        bool lower = t->cpu || t->w == W_RTT || t->w == W_MEM;
        double x = lower ? c[b].min : c[b].max;
        if (x > 0)
            snprintf(best, sizeof best, "  (best/best %.2f)", (lower ? c[s].min : c[s].max) / x);
    }
    printf("  %-34s %s %.2f: %6.2f  %-6s%s\n", what, t->at_most ? "<=" : ">=", t->limit, v,
           met ? "met" : "MISSED", best);
}

/* The sync stream beside raw with the same sender (one write per message): a receiver faster
 * than that sender lets every write leave as a segment of its own, a slower one (raw_1w_exact)
 * closes the window and the writes coalesce -- see bench/README.md. Information, no target. */
static void print_one_write(void)
{
    int a = sys_index("sync"), b = sys_index("raw_1w"), e = sys_index("raw_1w_exact");
    double x, y;
    if (!ratio(W_S64, a, b, &x) || !ratio(W_S64, a, e, &y))
        return;
    char f[3][32];
    fmt(f[0], sizeof f[0], res[W_S64][a].med);
    fmt(f[1], sizeof f[1], res[W_S64][b].med);
    fmt(f[2], sizeof f[2], res[W_S64][e].med);
    printf("\nstream_64, one write per message: sync %s msg/s, raw_1w %s (buffered reader), "
           "raw_1w_exact %s (prefix and payload read apart): sync/raw_1w %.2f, "
           "sync/raw_1w_exact %.2f\n",
           f[0], f[1], f[2], x, y);
}

static void print_table(void)
{
    printf("%-13s %-13s %-6s %10s %10s %10s %7s %9s %7s\n", "workload", "system", "unit", "min",
           "median", "max", "/raw", "cpu_us", "/raw");
    for (int w = 0; w < NW; w++)
        for (int s = 0; s < NSYS; s++) {
            if (!have(w, s))
                continue;
            char a[32], b[32], c[32], r[32] = "-";
            fmt(a, sizeof a, res[w][s].min);
            fmt(b, sizeof b, res[w][s].med);
            fmt(c, sizeof c, res[w][s].max);
            double x;
            if (ratio(w, s, 0, &x) && w != W_MEM)
                snprintf(r, sizeof r, "%.2f", x);
            char cu[32] = "-", cr[32] = "-";
            if (cpu[w][s].n) {
                snprintf(cu, sizeof cu, "%.3g", cpu[w][s].med);
                if (cpu[w][0].n && cpu[w][0].med > 0)
                    snprintf(cr, sizeof cr, "%.2f", cpu[w][s].med / cpu[w][0].med);
            }
            printf("%-13s %-13s %-6s %10s %10s %10s %7s %9s %7s\n", wname[w], systems[s]->name,
                   wunit[w], a, b, c, r, cu, cr);
        }
    if (quick) {
        printf("\ntargets: not judged (--quick is a smoke test, not a measurement)\n");
        return;
    }
    for (int issue = 12; issue <= 21; issue += 9) {
        printf("\nissue %d targets (ratios of medians within this run, %d repetition%s):\n", issue,
               reps, reps == 1 ? "" : "s");
        for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++)
            if (targets[i].issue == issue)
                print_target(&targets[i]);
    }
    print_one_write();
    if (baseline_file)
        print_baseline();
}

static void print_json(FILE *out)
{
    fprintf(out, "{\"version\": 1, \"reps\": %d,\n \"results\": [", reps);
    bool first = true;
    for (int w = 0; w < NW; w++)
        for (int s = 0; s < NSYS; s++) {
            if (!have(w, s))
                continue;
            fprintf(out,
                    "%s\n  {\"workload\": \"%s\", \"system\": \"%s\", \"unit\": \"%s\", "
                    "\"min\": %.6g, \"median\": %.6g, \"max\": %.6g",
                    first ? "" : ",", wname[w], systems[s]->name, wunit[w], res[w][s].min,
                    res[w][s].med, res[w][s].max);
            if (cpu[w][s].n)
                fprintf(out, ", \"cpu_us_per_msg\": %.4g", cpu[w][s].med);
            fprintf(out, "}");
            first = false;
        }
    fprintf(out, "],\n \"ratios\": {");
    static named_ratio r[MAXRATIOS];
    size_t n = collect_ratios(r);
    for (size_t i = 0; i < n; i++)
        fprintf(out, "%s\n  \"%s\": %.4g", i ? "," : "", r[i].key, r[i].v);
    fprintf(out, "}}\n");
}

/* ---------------------------------------------------------------- main */

static void pick(const char *list, const char *const *names, int n, bool *want, const char *what)
{
    for (int i = 0; i < n; i++)
        want[i] = false;
    char *copy = strdup(list), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int i = 0;
        while (i < n && strcmp(names[i], t) != 0)
            i++;
        if (i == n)
            tfb_die("no %s named \"%s\"", what, t);
        want[i] = true;
    }
    free(copy);
}

static void usage(void)
{
    fprintf(stderr, "usage: tfbench [--json] [--json-file PATH] [--quick] [--reps N] [--conns N] "
                    "[--workload LIST] [--system LIST] [--tls DIR] [--baseline FILE.json] "
                    "[--count N]\n");
    exit(2);
}

const tf_tcp_config *tfb_server_cfg, *tfb_client_cfg;
static tf_tcp_config tls_cfg[2];

/* --tls DIR: TLS 1.3 contexts for tcpframe's servers and clients (kept until exit). */
static void tls_setup(const char *dir)
{
    char f[5][1024];
    static const char *const names[5] = {"ca.pem", "server.pem", "server.key", "client.pem",
                                         "client.key"};
    for (int i = 0; i < 5; i++)
        snprintf(f[i], sizeof f[i], "%s/%s", dir, names[i]);
    for (int i = 0; i < 2; i++) {
        tf_tls_config t;
        tf_tls_config_init(&t);
        t.ca_file = f[0];
        t.cert_file = f[1 + 2 * i];
        t.key_file = f[2 + 2 * i];
        t.peer_name = i ? "localhost" : NULL;
        tf_tls_ctx *k;
        tf_errmsg msg;
        if (tf_tls_ctx_new(&t, &k, &msg) != TF_OK)
            tfb_die("--tls: %s", msg.text);
        tf_tcp_config_init(&tls_cfg[i]);
        tls_cfg[i].tls = k;
    }
    tfb_server_cfg = &tls_cfg[0];
    tfb_client_cfg = &tls_cfg[1];
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (argc == 4 && strcmp(argv[1], "--mem-child") == 0)
        return mem_child(argv[2], atoi(argv[3]));
    const char *sysnames[NSYS];
    for (int s = 0; s < NSYS; s++) {
        sysnames[s] = systems[s]->name;
        want_s[s] = true;
    }
    for (int w = 0; w < NW; w++)
        want_w[w] = true;
    bool reps_set = false, conns_set = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--json") == 0)
            json = true;
        else if (strcmp(a, "--json-file") == 0 && i + 1 < argc)
            json_file = argv[++i];
        else if (strcmp(a, "--quick") == 0)
            quick = true;
        else if (strcmp(a, "--reps") == 0 && i + 1 < argc) {
            reps = atoi(argv[++i]);
            reps_set = true;
        } else if (strcmp(a, "--conns") == 0 && i + 1 < argc) {
            nconns = atoi(argv[++i]);
            conns_set = true;
        } else if (strcmp(a, "--workload") == 0 && i + 1 < argc)
            pick(argv[++i], wname, NW, want_w, "workload");
        else if (strcmp(a, "--system") == 0 && i + 1 < argc)
            pick(argv[++i], sysnames, NSYS, want_s, "system");
        else if (strcmp(a, "--tls") == 0 && i + 1 < argc)
            tls_setup(argv[++i]);
        else if (strcmp(a, "--baseline") == 0 && i + 1 < argc)
            baseline_file = argv[++i];
        else if (strcmp(a, "--count") == 0 && i + 1 < argc)
            count = atol(argv[++i]);
        else
            usage();
    }
    if (tfb_server_cfg) { /* TLS is tcpframe's: the other systems and the child stay out */
        for (int s = 0; s < NSYS; s++)
            if (systems[s] == &tfb_raw || systems[s] == &tfb_raw_1w || systems[s] == &tfb_raw_1w_exact ||
                strcmp(systems[s]->name, "zmq") == 0)
                want_s[s] = false;
        want_w[W_MEM] = false;
    }
    if (quick) {
        if (!reps_set)
            reps = 1;
        if (!conns_set)
            nconns = 200;
    }
    if (reps < 1 || reps > MAXREPS || nconns < 1 || nconns > 100000 || count < 0 ||
        (count > 0 && quick))
        usage();
    if (quick)
        reps = 1;
    if (baseline_file)
        load_baseline(baseline_file); /* before the run: a bad file fails at once */
    /* raw is every ratio's base: --system without raw (to profile one system) prints no ratio */
    double t0 = tfb_now();
    pair_workloads();
    conns_workload();
    mem_workload();
    for (int w = 0; w < NW; w++)
        for (int s = 0; s < NSYS; s++)
            if (res[w][s].n) {
                summarise(&res[w][s]);
                if (cpu[w][s].n)
                    summarise(&cpu[w][s]);
            }
    if (json)
        print_json(stdout);
    else
        print_table();
    if (json_file) {
        FILE *f = fopen(json_file, "w");
        if (!f)
            tfb_die("%s: %s", json_file, strerror(errno));
        print_json(f);
        if (fclose(f) != 0)
            tfb_die("%s: %s", json_file, strerror(errno));
    }
    note("tfbench: %.1f s%s\n", tfb_now() - t0,
         quick ? " (--quick: a smoke test, not a measurement)" : "");
    return 0;
}
