/* tests/tu_net.c -- see tu_net.h. Plain syscalls only: these peers must not share code with the
 * library they judge. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tu_net.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

int tu_fd_count(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own fd */
}

static int fds_before;

int tu_fd_setup(void **state)
{
    (void)state;
    fds_before = tu_fd_count();
    return fds_before < 0 ? -1 : 0;
}

int tu_fd_teardown(void **state)
{
    (void)state;
    int now = tu_fd_count();
    if (now != fds_before) {
        fprintf(stderr, "fd leak: %d open before the test, %d after\n", fds_before, now);
        return -1;
    }
    return 0;
}

int tu_getopt_int(int fd, int level, int name)
{
    int v = -12345;
    socklen_t len = sizeof v;
    assert_int_equal(getsockopt(fd, level, name, &v, &len), 0);
    return v;
}

static atomic_long alloc_calls;
static atomic_size_t alloc_bytes;
static atomic_size_t alloc_max;
static long alloc_fail_after = -1;

static void *counting_malloc(size_t n)
{
    long k = atomic_fetch_add(&alloc_calls, 1);
    if (alloc_fail_after >= 0 && k >= alloc_fail_after)
        return NULL;
    atomic_fetch_add(&alloc_bytes, n);
    size_t m = atomic_load(&alloc_max);
    while (n > m && !atomic_compare_exchange_weak(&alloc_max, &m, n))
        ;
    return malloc(n);
}

size_t tu_alloc_max(void)
{
    return atomic_load(&alloc_max);
}

void tu_alloc_count(long fail_after)
{
    atomic_store(&alloc_calls, 0);
    atomic_store(&alloc_bytes, 0);
    atomic_store(&alloc_max, 0);
    alloc_fail_after = fail_after;
    tf__malloc_hook = counting_malloc;
}

long tu_alloc_calls(void)
{
    return atomic_load(&alloc_calls);
}

size_t tu_alloc_bytes(void)
{
    return atomic_load(&alloc_bytes);
}

void tu_alloc_reset(void)
{
    tf__malloc_hook = NULL;
    alloc_fail_after = -1;
}

int tu_raw_connect(const char *addr)
{
    char host[128];
    const char *colon = strrchr(addr, ':');
    if (!colon)
        return -1;
    size_t hl = (size_t)(colon - addr);
    if (hl >= sizeof host)
        return -1;
    memcpy(host, addr, hl);
    host[hl] = 0;
    int port = atoi(colon + 1);
    char *h = host;
    if (h[0] == '[') {
        h++;
        h[strlen(h) - 1] = 0;
    }
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t len;
    int fam;
    if (strchr(h, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, h, &s6->sin6_addr) != 1)
            return -1;
        len = sizeof *s6;
        fam = AF_INET6;
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, h, &s4->sin_addr) != 1)
            return -1;
        len = sizeof *s4;
        fam = AF_INET;
    }
    int fd = socket(fam, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&ss, len) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int tu_raw_listen(bool v6, int *port)
{
    int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t len;
    if (v6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_addr = in6addr_loopback;
        len = sizeof *s6;
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof *s4;
    }
    if (bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 64) != 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
        close(fd);
        return -1;
    }
    *port = v6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
               : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

bool tu_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == ENOTSOCK)
            n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

bool tu_read_all(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

bool tu_write_frame(int fd, const void *buf, uint32_t len)
{
    unsigned char h[4] = {(unsigned char)(len >> 24), (unsigned char)(len >> 16),
                          (unsigned char)(len >> 8), (unsigned char)len};
    return tu_write_all(fd, h, 4) && tu_write_all(fd, buf, len);
}

bool tu_read_frame(int fd, void *buf, size_t cap, uint32_t *len)
{
    unsigned char h[4];
    if (!tu_read_all(fd, h, 4))
        return false;
    uint32_t l = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
    if (l > cap)
        return false;
    *len = l;
    return tu_read_all(fd, buf, l);
}

bool tu_send_magic(int fd)
{
    return tu_write_all(fd, "UNIF", 4);
}

bool tu_expect_magic(int fd)
{
    char m[4];
    return tu_read_all(fd, m, 4) && memcmp(m, "UNIF", 4) == 0;
}

void tu_fill(void *buf, size_t len, uint32_t seed)
{
    unsigned char *p = buf;
    uint32_t x = seed * 2654435761u + 12345u;
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        p[i] = (unsigned char)(x >> 16);
    }
}

bool tu_check(const void *buf, size_t len, uint32_t seed)
{
    const unsigned char *p = buf;
    uint32_t x = seed * 2654435761u + 12345u;
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        if (p[i] != (unsigned char)(x >> 16))
            return false;
    }
    return true;
}

uint64_t tu_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- sync layer helpers */

static socklen_t loop_addr(bool v6, int port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (v6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_addr = in6addr_loopback;
        s6->sin6_port = htons((uint16_t)port);
        return sizeof *s6;
    }
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    s4->sin_family = AF_INET;
    s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s4->sin_port = htons((uint16_t)port);
    return sizeof *s4;
}

static int bound_socket(bool v6, int *port)
{
    int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_storage ss;
    socklen_t len = loop_addr(v6, 0, &ss);
    if (bind(fd, (struct sockaddr *)&ss, len) != 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
        close(fd);
        return -1;
    }
    *port = v6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
               : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

int tu_raw_listen_backlog(bool v6, int backlog, int *port)
{
    int fd = bound_socket(v6, port);
    if (fd >= 0 && listen(fd, backlog) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int tu_raw_connect_start(bool v6, int port)
{
    int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_storage ss;
    socklen_t len = loop_addr(v6, port, &ss);
    if (connect(fd, (struct sockaddr *)&ss, len) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

int tu_raw_unused_port(bool v6, int *port)
{
    return bound_socket(v6, port);
}

void tu_close_rst(int fd)
{
    struct linger l = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close(fd);
}

bool tu_readable(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN, .revents = 0};
    return poll(&p, 1, ms) == 1;
}

uint8_t tu_chat_byte(size_t i, size_t each)
{
    size_t frame = i / (4 + each), at = i % (4 + each);
    if (at < 4)
        return at == 3 ? (uint8_t)each : 0;
    uint8_t body[256];
    tu_fill(body, each, (uint32_t)frame);
    return body[at - 4];
}

void tu_chat_burst(int fd, size_t *wrote, size_t each, int burst, long gap_ns)
{
    int fl = fcntl(fd, F_GETFL);
    assert_int_equal(fcntl(fd, F_SETFL, fl | O_NONBLOCK), 0);
    for (int k = 0; k < burst; k++) {
        uint8_t b[3];
        for (size_t j = 0; j < 3; j++)
            b[j] = tu_chat_byte(*wrote + j, each);
        ssize_t w = send(fd, b, 3, MSG_NOSIGNAL);
        if (w <= 0)
            break;
        *wrote += (size_t)w;
        struct timespec g = {0, gap_ns};
        nanosleep(&g, NULL);
    }
    assert_int_equal(fcntl(fd, F_SETFL, fl), 0);
}

bool tu_read_or_stall(int fd, size_t n, uint64_t stall_ms, void (*tick)(void))
{
    static uint8_t sink[1 << 16];
    uint64_t last = tu_now_ms();
    while (n > 0) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 100) == 1) {
            ssize_t r = read(fd, sink, n < sizeof sink ? n : sizeof sink);
            if (r <= 0)
                return false;
            n -= (size_t)r;
            last = tu_now_ms();
            tick();
        } else if (tu_now_ms() - last > stall_ms) {
            return false;
        }
    }
    return true;
}

int tu_tcp_pair_small_rcvbuf(int rcvbuf, int *lfd, int *raw)
{
    int lport;
    *lfd = tu_raw_listen(false, &lport);
    assert_true(*lfd >= 0);
    assert_int_equal(setsockopt(*lfd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf), 0);
    *raw = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(*raw >= 0);
    int mib = 1 << 20, one = 1;
    assert_int_equal(setsockopt(*raw, SOL_SOCKET, SO_SNDBUF, &mib, sizeof mib), 0);
    assert_int_equal(setsockopt(*raw, SOL_SOCKET, SO_RCVBUF, &mib, sizeof mib), 0);
    assert_int_equal(setsockopt(*raw, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one), 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)lport)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(*raw, (struct sockaddr *)&sa, sizeof sa), 0);
    int fd = accept(*lfd, NULL, NULL);
    assert_true(fd >= 0);
    return fd;
}
