# mk/stress.mk -- the connection layer under faults, scale and time (issue 15); -included by the
# top Makefile.
#
#   tests/test_faults.c    the fault-injection matrix over io/sys.c's seam: plain and ASan
#                          (every test_*.c), TSan here
TSAN_TESTS += test_faults
#   tests/test_scale.c     1,000 concurrent async connections on one server loop, ping-pong with
#                          checksummed mixed sizes, RSS per connection printed (TSan: 250)
TSAN_TESTS += test_scale
