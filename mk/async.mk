# mk/async.mk -- the async TCP layer's tests also run under TSan (threaded: callers on the test
# thread, callbacks on the loop thread). Included at the end of the top Makefile.
TSAN_TESTS += test_async_conn test_async_life test_async_server test_async_edges test_async_peers

# The lifecycle chaos test (tests/test_async_chaos.c, issue 20): a short run in `make check`
# (plain 200 rounds, ASan 100, TSan 50; TF_TEST_CHAOS_ROUNDS / _OPS change them). The long run:
#
#   make chaos ROUNDS=N [SEED=S] [CHAOS_VARIANTS="asan tsan"]
#
# runs N rounds per variant from seed S (default: a random one, printed; a failing round prints
# its own seed and the command that replays it), every round to the end (failures counted).
TSAN_TESTS += test_async_chaos

ROUNDS ?= 1000
CHAOS_VARIANTS ?= plain asan tsan
SEED ?=

.PHONY: chaos
chaos:
	@for v in $(CHAOS_VARIANTS); do $(MAKE) --no-print-directory V=$$v build/$$v/tests/test_async_chaos || exit 1; done
	@mkdir -p build/results; seed="$(SEED)"; [ -n "$$seed" ] || seed=$$(od -An -N4 -tu4 /dev/urandom | tr -d ' '); \
	status=0; for v in $(CHAOS_VARIANTS); do \
	  res=build/results/chaos-$$v-test_async_chaos; \
	  echo "chaos [$$v]: $(ROUNDS) rounds from seed $$seed (log: $$res.log)"; \
	  TF_TEST_FILTER='test_async_chaos_rounds' TF_TEST_SEED=$$seed TF_TEST_CHAOS_ROUNDS=$(ROUNDS) \
	  TF_TEST_CHAOS_KEEP_GOING=1 TF_TEST_TIMEOUT=$${TF_TEST_TIMEOUT:-7200} \
	    scripts/run-test.sh $$v build/$$v/tests/test_async_chaos $$res >/dev/null; \
	  grep -E '^chaos|SUMMARY|WARNING: ThreadSanitizer|WATCHDOG' $$res.log | head -n 200; \
	  [ "$$(cut -d' ' -f2 $$res)" = 0 ] || status=1; \
	done; exit $$status

# One server over several loops (tests/test_async_multi.c, issue 25 item 6).
TSAN_TESTS += test_async_multi
