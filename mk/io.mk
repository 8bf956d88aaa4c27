# mk/io.mk -- io/ event loop and futures: TSan test list and the dispatch benchmark.
# Included at the end of the top Makefile.

# The threaded io tests also run under TSan in `make check` (and `make tsan`, below).
TSAN_TESTS += test_evbase test_future

# `make bench`: always the optimised plain build, whatever V says.
BENCH_BIN := build/plain/bench/bench_dispatch

.PHONY: bench
bench:
	@$(MAKE) --no-print-directory V=plain $(BENCH_BIN)
	$(BENCH_BIN)

build/plain/bench/%: bench/%.c $(HEADERS) $(O)/libtcpframe.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(IO_CFLAGS) -o $@ $< $(O)/libtcpframe.a $(LDLIBS_ALL)

# `make tsan`: only the TSan runs of the threaded tests (`make check` runs them too).
.PHONY: tsan
tsan:
	@mkdir -p build/results
	@$(MAKE) --no-print-directory V=tsan TESTS="$(TSAN_TESTS)" test-run

# `make mutants-io`: the io tests must catch the seed loop's bugs when they are put back into a
# scratch copy of io/evbase.c (lost wake-up, late unregister, stale event). Part of `make check`.
.PHONY: mutants-io
mutants-io:
	@scripts/mutants-io.sh
CHECK_EXTRA += mutants-io
