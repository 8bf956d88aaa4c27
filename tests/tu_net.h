/* tests/tu_net.h -- shared helpers of the TCP tests (tests/tu_net.c): fd counting, a counting
 * allocator on the library's allocation seam, raw peers that speak (or break) the wire format
 * with plain syscalls, independent of the library. */
#ifndef TCPFRAME_TU_NET_H
#define TCPFRAME_TU_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Open fds of this process (entries of /proc/self/fd, minus the one used to count). */
int tu_fd_count(void);
/* A cmocka setup / teardown pair: the teardown fails the test when the open-fd count differs
 * from the setup's (an fd leaked or was closed twice). */
int tu_fd_setup(void **state);
int tu_fd_teardown(void **state);

/* getsockopt of an int option; the test fails if the call does. */
int tu_getopt_int(int fd, int level, int name);

/* Route the library's user-buffer allocations (tf__malloc) through a counter; fail_after >= 0
 * makes allocation number fail_after+1 onwards return NULL. tu_alloc_reset() restores malloc. */
void tu_alloc_count(long fail_after);
long tu_alloc_calls(void);
size_t tu_alloc_bytes(void);
/* The largest single allocation since tu_alloc_count. */
size_t tu_alloc_max(void);
void tu_alloc_reset(void);

/* A blocking TCP client socket connected to "127.0.0.1:port"-style |addr| (numeric host,
 * [v6] accepted), or -1. */
int tu_raw_connect(const char *addr);
/* A blocking listening socket on loopback (v6: "::1") with an ephemeral port; *port set. */
int tu_raw_listen(bool v6, int *port);

/* Write all |len| bytes (blocking, MSG_NOSIGNAL); false on error. */
bool tu_write_all(int fd, const void *buf, size_t len);
/* Read exactly |len| bytes (blocking); false on EOF or error. */
bool tu_read_all(int fd, void *buf, size_t len);
/* Write a frame: 4-byte big-endian length built by hand, then the payload. */
bool tu_write_frame(int fd, const void *buf, uint32_t len);
/* Read one frame into buf (cap); *len its length; false on EOF, error or a frame over cap. */
bool tu_read_frame(int fd, void *buf, size_t cap, uint32_t *len);
/* Send the magic "UNIF" / read 4 bytes and check they are the magic. */
bool tu_send_magic(int fd);
bool tu_expect_magic(int fd);

/* Fill |buf| with a deterministic pattern for message |seed|; check it. */
void tu_fill(void *buf, size_t len, uint32_t seed);
bool tu_check(const void *buf, size_t len, uint32_t seed);

/* CLOCK_MONOTONIC milliseconds. */
uint64_t tu_now_ms(void);

/* ---- the kernel's stall (issue 25 item 8; tests/test_async_peers.c, test_sync_readahead.c) */

/* Byte |i| of a peer's chatter: frames of |each| (< 256) bytes, frame k filled by tu_fill(k). */
uint8_t tu_chat_byte(size_t i, size_t each);
/* Write up to |burst| 3-byte pieces of the chatter from byte *wrote on (non-blocking; each its
 * own segment under TCP_NODELAY), |gap_ns| apart; *wrote advances by what was taken. */
void tu_chat_burst(int fd, size_t *wrote, size_t each, int burst, long gap_ns);
/* Read |n| bytes from |fd| (discarded), calling tick() on progress; false at EOF or error, or
 * when no byte came for |stall_ms| (a no-progress window, not a speed verdict). */
bool tu_read_or_stall(int fd, size_t n, uint64_t stall_ms, void (*tick)(void));
/* A loopback TCP pair whose accepted end has a |rcvbuf| receive buffer from the SYN on; the
 * other end (*raw: 1 MiB buffers, TCP_NODELAY) connected. Returns the accepted fd; *lfd is the
 * listener (the test closes all three). */
int tu_tcp_pair_small_rcvbuf(int rcvbuf, int *lfd, int *raw);

/* ---- sync layer helpers (tests/test_sync_*.c) */

/* A blocking listening socket on loopback (v6: "::1") with |backlog|; *port set; or -1. */
int tu_raw_listen_backlog(bool v6, int backlog, int *port);
/* Start a non-blocking connect to loopback (v6: ::1) |port| without waiting; the fd or -1. */
int tu_raw_connect_start(bool v6, int port);
/* A loopback socket bound to a free port (*port) but not listening: connects to it are
 * refused for as long as it stays open (nobody else can take the port). The fd or -1. */
int tu_raw_unused_port(bool v6, int *port);
/* Close |fd| with a reset (SO_LINGER 0) instead of a FIN. */
void tu_close_rst(int fd);
/* True once |fd| has data or EOF to read within |ms| milliseconds. */
bool tu_readable(int fd, int ms);

#endif /* TCPFRAME_TU_NET_H */
