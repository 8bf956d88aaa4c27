/* tests/test_io_conformance.c -- the tf_io conformance suite (tests/tu_io_conformance.h) run
 * against tf_fdio over a non-blocking AF_UNIX socketpair and over a pair of pipes, and against
 * the in-memory reference adapter. A new adapter adds its factory here (or in a test of its
 * own) the same way. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>

#include "tcpframe/fdio.h"
#include "test_io_util.h"
#include "tu_io_conformance.h"

/* ---------------------------------------------------------------- fdio pairs */

typedef struct fd_pair {
    int rfd[2], wfd[2]; /* end i reads rfd[i] and writes wfd[i]; -1 once closed */
    tf_fdio f[2];
    bool socket;
} fd_pair;

static void set_nonblock(int fd, bool on)
{
    int fl = fcntl(fd, F_GETFL);
    assert_true(fl >= 0);
    assert_int_equal(fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK), 0);
}

static void fd_finish(tu_ioc_pair *p, fd_pair *fp)
{
    for (int i = 0; i < 2; i++) {
        tf_fdio_init(&fp->f[i], fp->rfd[i], fp->wfd[i]);
        p->io[i] = tf_fdio_io(&fp->f[i]);
    }
    p->impl = fp;
}

static void socketpair_open(tu_ioc_pair *p)
{
    fd_pair *fp = calloc(1, sizeof *fp);
    assert_non_null(fp);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    fp->rfd[0] = fp->wfd[0] = sv[0];
    fp->rfd[1] = fp->wfd[1] = sv[1];
    fp->socket = true;
    fd_finish(p, fp);
}

static void pipes_open(tu_ioc_pair *p)
{
    fd_pair *fp = calloc(1, sizeof *fp);
    assert_non_null(fp);
    int ab[2], ba[2];
    assert_int_equal(pipe2(ab, O_NONBLOCK | O_CLOEXEC), 0);
    assert_int_equal(pipe2(ba, O_NONBLOCK | O_CLOEXEC), 0);
    fp->wfd[0] = ab[1];
    fp->rfd[1] = ab[0];
    fp->wfd[1] = ba[1];
    fp->rfd[0] = ba[0];
    fd_finish(p, fp);
}

static bool fd_wait(tu_ioc_pair *p, int side, int dir, int ms)
{
    fd_pair *fp = p->impl;
    int fd = dir == TU_IOC_IN ? fp->rfd[side] : fp->wfd[side];
    return fd >= 0 && tf_fd_wait(fd, dir == TU_IOC_IN ? POLLIN : POLLOUT, ms) == TF_OK;
}

static void fd_close_write(tu_ioc_pair *p, int side)
{
    fd_pair *fp = p->impl;
    if (fp->socket) {
        assert_int_equal(shutdown(fp->wfd[side], SHUT_WR), 0);
    } else {
        assert_int_equal(close(fp->wfd[side]), 0);
        fp->wfd[side] = -1;
    }
}

static void fd_close(tu_ioc_pair *p, int side)
{
    fd_pair *fp = p->impl;
    if (fp->rfd[side] >= 0)
        close(fp->rfd[side]);
    if (fp->wfd[side] >= 0 && fp->wfd[side] != fp->rfd[side])
        close(fp->wfd[side]);
    fp->rfd[side] = fp->wfd[side] = -1;
}

static void fd_free(tu_ioc_pair *p)
{
    fd_close(p, 0);
    fd_close(p, 1);
    free(p->impl);
    p->impl = NULL;
}

/* EINTR: the fd is made blocking so that the call sleeps, and a POSIX timer's SIGUSR1 (handler
 * installed without SA_RESTART) interrupts it 20 ms later. */
static void on_usr1(int sig)
{
    (void)sig;
}

static long fd_interrupted(tu_ioc_pair *p, int side, int dir)
{
    fd_pair *fp = p->impl;
    int fd = dir == TU_IOC_IN ? fp->rfd[side] : fp->wfd[side];
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGUSR1, &sa, &old), 0);
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_SIGNAL;
    sev.sigev_signo = SIGUSR1;
    timer_t t;
    assert_int_equal(timer_create(CLOCK_MONOTONIC, &sev, &t), 0);
    struct itimerspec its;
    memset(&its, 0, sizeof its);
    its.it_value.tv_nsec = 20 * 1000000L;
    its.it_interval.tv_nsec = 20 * 1000000L; /* again, should the first come too early */
    set_nonblock(fd, false);
    assert_int_equal(timer_settime(t, 0, &its, NULL), 0);
    const tf_io *io = p->io[side];
    uint8_t b = 0;
    tf_iov v = {&b, 1};
    int e = 0;
    long n = dir == TU_IOC_IN ? io->read(io->ctx, &b, 1, &e) : io->write(io->ctx, &v, 1, &e);
    assert_int_equal(timer_delete(t), 0);
    set_nonblock(fd, true);
    sigaction(SIGUSR1, &old, NULL);
    return n;
}

static const tu_ioc_adapter fdio_socketpair = {"fdio_socketpair", socketpair_open, fd_wait,
                                               fd_close_write,    fd_close,        EPIPE,
                                               fd_interrupted,    fd_free};
static const tu_ioc_adapter fdio_pipes = {"fdio_pipes", pipes_open, fd_wait,        fd_close_write,
                                          fd_close,     EPIPE,      fd_interrupted, fd_free};

int main(void)
{
    const tu_ioc_adapter *adapters[] = {&fdio_socketpair, &fdio_pipes, &tu_ioc_mem};
    enum { N = 3 };
    struct CMUnitTest tests[N * TU_IOC_NCASES];
    size_t n = 0;
    for (size_t i = 0; i < N; i++)
        n += tu_ioc_tests(adapters[i], tests + n, tio_watchdog_setup, tio_watchdog_teardown);
    tio_filter_from_env();
    int rc = _cmocka_run_group_tests("tf_io conformance", tests, n, NULL, NULL);
    for (size_t i = 0; i < n; i++)
        free((char *)(uintptr_t)tests[i].name);
    return rc;
}
