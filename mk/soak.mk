# mk/soak.mk -- the soak of the async server (issue 15); -included by the top Makefile.
#
#   make soak SECONDS=N    build/plain/tools/tfsoak -t N: random clients connect, exchange,
#                          misbehave (bad magic, oversized length, reset mid-frame, silent,
#                          trickle, mute after the magic, half-close, paused then reset, a
#                          60 MiB declared length) and leave for N seconds (default 60);
#                          then the server's fds, RSS, connections, receive memory and pending
#                          operations must be back to the baseline (figures printed). Not part of `make check`; .ci/run
#                          runs it for 60 s. SOAK_ARGS: more tfsoak options (-c threads, -s seed).

SOAK_ARGS ?=

.PHONY: soak
soak:
	@$(MAKE) --no-print-directory V=plain build/plain/tools/tfsoak
	build/plain/tools/tfsoak -t $(SECONDS) $(SOAK_ARGS)
