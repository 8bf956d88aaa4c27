/* io/internal.h -- symbols shared between io/ modules (and tests); not installed. */
#ifndef TCPFRAME_IO_INTERNAL_H
#define TCPFRAME_IO_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tcpframe/evbase.h"
#include "tcpframe/future.h"

/* Deadline meaning "never". */
#define TF__FOREVER UINT64_MAX

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t tf__now_ns(void);

/* The loop whose callbacks the calling thread runs now, or NULL. */
tf_evb *tf__evb_current(void);

/* Sleep while *word == val, until woken or the absolute CLOCK_MONOTONIC deadline (TF__FOREVER:
 * none). May return spuriously. False only if the deadline passed. */
bool tf__futex_wait(_Atomic uint32_t *word, uint32_t val, uint64_t deadline_ns);
/* Wake every thread sleeping on |word|. */
void tf__futex_wake(_Atomic uint32_t *word);

/* A one-shot baton: 0 = not posted, 1 = posted, 2 = not posted and a waiter sleeps.
 * Post publishes with release; wait returns with acquire. The poster may touch the word once
 * after the waiter could have returned (futex wake of a dead address is harmless). */
void tf__baton_post(_Atomic uint32_t *b);
/* True once posted; false if the deadline passed first. */
bool tf__baton_wait(_Atomic uint32_t *b, uint64_t deadline_ns);

/* Test introspection, loop thread only: is |fd| watched now (and with which arg)? */
bool tf__evb_fd_watched(const tf_evb *evb, int fd, void **arg);
/* Test introspection, loop thread only: timers in the heap (incl. lazily cancelled ones). */
size_t tf__evb_timer_count(const tf_evb *evb);
/* Test introspection, any thread: eventfd writes so far (wake-ups requested). */
uint64_t tf__evb_wake_count(const tf_evb *evb);

#endif /* TCPFRAME_IO_INTERNAL_H */
