# mk/io.mk -- io/ event loop and futures: TSan test list and the io mutants.
# Included at the end of the top Makefile.

# The threaded io tests also run under TSan in `make check` (and `make tsan`, below).
TSAN_TESTS += test_evbase test_future

# `make bench` (tfbench and bench_dispatch): mk/bench.mk.

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
