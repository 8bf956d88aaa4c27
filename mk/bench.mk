# mk/bench.mk -- benchmarks (issue 12); -included by the top Makefile.
#
#   make bench                      installs what is missing (scripts/deps.sh bench: ZeroMQ), builds
#                                   build/bin/tfbench and runs it (the table on stdout, the same
#                                   figures as JSON in build/bench/tfbench.json), then
#                                   bench_dispatch (the loop's hand-off figures, SPEC 8.6)
#   make bench BENCH_ARGS=--json    tfbench's options (see bench/README.md)
#   make tfbench-quick              `tfbench --quick` as a smoke test: part of `make check`
#                                   (CHECK_EXTRA); records "1 0" or "0 1" in
#                                   build/results/tfbench-quick. Never fails on a timing.
#
# Always the optimised plain build, whatever V says. tfbench is built with ZeroMQ (the zmq
# rows) when pkg-config finds libzmq, else without them; a change of that rebuilds it.

TFBENCH      := build/bin/tfbench
TFBENCH_SRC  := bench/tfbench.c $(sort $(wildcard bench/tfb_*.c))
BENCH_ARGS   ?=
TFB_ZMQ      := $(shell pkg-config --exists libzmq 2>/dev/null && echo 1)
TFB_ZMQ_CFLAGS := $(if $(TFB_ZMQ),-DTFB_HAVE_ZMQ $(shell pkg-config --cflags libzmq))
TFB_ZMQ_LIBS   := $(if $(TFB_ZMQ),$(shell pkg-config --libs libzmq))
TFBENCH_QUICK_TIMEOUT ?= 300

.PHONY: bench tfbench-quick FORCE

bench:
	@scripts/deps.sh bench
	@$(MAKE) --no-print-directory V=plain $(TFBENCH) build/plain/bench/bench_dispatch
	@mkdir -p build/bench
	$(TFBENCH) --json-file build/bench/tfbench.json $(BENCH_ARGS)
	build/plain/bench/bench_dispatch

# Records whether ZeroMQ was found; rewritten only when that changes.
build/bin/tfbench.zmq: FORCE
	@mkdir -p $(@D)
	@echo '$(TFB_ZMQ)' | cmp -s - $@ || echo '$(TFB_ZMQ)' >$@

$(TFBENCH): $(TFBENCH_SRC) bench/tfb.h build/bin/tfbench.zmq $(HEADERS) $(O)/libtcpframe.a \
  $(O)/libtcpframe_tls.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(IO_CFLAGS) $(TFB_ZMQ_CFLAGS) -Itls -o $@ $(TFBENCH_SRC) \
	  $(O)/libtcpframe_tls.a $(O)/libtcpframe.a $(TFB_ZMQ_LIBS) -lssl -lcrypto $(LDLIBS_ALL)

build/plain/bench/%: bench/%.c $(HEADERS) $(O)/libtcpframe.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(IO_CFLAGS) -o $@ $< $(O)/libtcpframe.a $(LDLIBS_ALL)

# A smoke test: every system and workload once, short; the receivers check counts and
# checksums, so only a broken run (or a hang: the watchdog) fails it, never a slow one.
tfbench-quick:
	@mkdir -p build/results; out=build/results/tfbench-quick; \
	if $(MAKE) --no-print-directory V=plain $(TFBENCH) >$$out.log 2>&1 && \
	   timeout -k 10 $(TFBENCH_QUICK_TIMEOUT) $(TFBENCH) --quick >>$$out.log 2>&1; then \
	  echo "1 0" >$$out; echo "tfbench --quick: passed"; \
	else \
	  echo "0 1" >$$out; cat $$out.log; echo "tfbench --quick: FAILED (log $$out.log)"; exit 1; \
	fi

CHECK_EXTRA += tfbench-quick

# The fairness figures of issue 25 item 6 (bench/fairness.c): a good client's echo latency under
# four clients streaming 60 MiB frames, before (io_budget unlimited, one loop) and after (the
# default io_budget; on two loops). Prints figures; never fails on a timing.
#   make bench-fairness [FAIRNESS_ARGS="probes frame_mib fat_clients"]
FAIRNESS_ARGS ?=
.PHONY: bench-fairness
bench-fairness:
	@$(MAKE) --no-print-directory V=plain build/plain/bench/fairness
	build/plain/bench/fairness $(FAIRNESS_ARGS)
