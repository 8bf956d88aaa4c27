/* tests/tu_io_conformance.h -- the tf_io conformance suite (README "Adding a transport").
 *
 * An adapter (a tf_io over some transport) proves it keeps the tf_io contract of SPEC 3.2 by
 * supplying a factory for a connected pair of ends and a few controls; the suite then drives
 * the proto/ machines over it: the handshake, a frame cut at every split point both ways,
 * messages of 0 B to 1 MiB in span and alloc mode, EOF between frames (CLOSED) and inside the
 * magic and a frame (TRUNCATED), AGAIN on an empty and a full end, interrupted calls (INTR), and
 * the error mapping (a write to a gone peer is TF_IO_FAIL with the OS error, so the core reports
 * TF_ERR_IO with it). Every call the core makes goes through a checker that fails the test on
 * any answer outside the contract (more bytes than asked, an unknown negative, FAIL without
 * os_err), and the same round trips run again through a shaper that turns answers into random
 * short counts, TF_IO_AGAIN and TF_IO_INTR.
 *
 * Use (tests/test_io_conformance.c does it for fdio and the in-memory reference below):
 *
 *   static const tu_ioc_adapter mine = {"mine", my_open, my_wait, my_close_write, my_close,
 *                                       EPIPE, my_interrupted, my_free};
 *   struct CMUnitTest tests[TU_IOC_NCASES];
 *   size_t n = tu_ioc_tests(&mine, tests, setup, teardown);   // one cmocka test per case
 *   int rc = _cmocka_run_group_tests("mine", tests, n, NULL, NULL);
 *   for (size_t i = 0; i < n; i++) free((char *)tests[i].name);
 */
#ifndef TCPFRAME_TU_IO_CONFORMANCE_H
#define TCPFRAME_TU_IO_CONFORMANCE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include <cmocka.h>

#include "tcpframe/proto.h"

/* Directions for wait and interrupted. */
enum { TU_IOC_IN = 1, TU_IOC_OUT = 2 };

typedef struct tu_ioc_adapter tu_ioc_adapter;

/* A connected pair: what end 0 writes, end 1 reads, and the other way round. */
typedef struct tu_ioc_pair {
    const tf_io *io[2];
    void *impl; /* the adapter's */
} tu_ioc_pair;

struct tu_ioc_adapter {
    const char *name;
    /* Set up a connected pair with nothing in flight. Both ends non-blocking: a read of an
     * empty end and a write to a full one answer TF_IO_AGAIN. Fail the test if it cannot. */
    void (*open)(tu_ioc_pair *p);
    /* Wait until end |side| can move bytes in |dir| (or sees EOF / an error), at most |ms|
     * milliseconds; false if the time ran out. A transport without readiness may return true
     * at once (the suite retries). */
    bool (*wait)(tu_ioc_pair *p, int side, int dir, int ms);
    /* End |side| stops writing for good: the peer reads the bytes in flight, then 0 (EOF).
     * A socket: shutdown(SHUT_WR); a pipe: close its write end. */
    void (*close_write)(tu_ioc_pair *p, int side);
    /* End |side| goes away entirely (closes both directions): the peer's writes then fail. */
    void (*close)(tu_ioc_pair *p, int side);
    /* The os_err of a write to a peer that is gone (EPIPE for sockets and pipes). */
    int gone_errno;
    /* Optional (NULL: the INTR case checks only the core's side): make one call of end |side|
     * in |dir| -- a read of an empty end, or a write to a full one -- be interrupted before any
     * byte moved, and return that call's answer (the suite expects TF_IO_INTR). */
    long (*interrupted)(tu_ioc_pair *p, int side, int dir);
    /* Release everything of the pair (whatever was closed already). */
    void (*free)(tu_ioc_pair *p);
};

/* The number of cases. */
#define TU_IOC_NCASES 10

/* Fill tests[0..TU_IOC_NCASES) with the suite's cases for |ad| (names "<ad->name>: <case>",
 * malloc()'d: free((char *)tests[i].name) after the run), each with |setup| / |teardown| (e.g. a
 * watchdog; they must leave *state alone: it is the adapter). Returns TU_IOC_NCASES. */
size_t tu_ioc_tests(const tu_ioc_adapter *ad, struct CMUnitTest *tests, CMFixtureFunction setup,
                    CMFixtureFunction teardown);

/* The in-memory reference adapter: two bounded rings (4096 bytes each way), no
 * syscall; short answers come from the capacity; closes and interrupts are flags. Read it as
 * the smallest complete tf_io. */
extern const tu_ioc_adapter tu_ioc_mem;

#endif /* TCPFRAME_TU_IO_CONFORMANCE_H */
