#!/usr/bin/env bash
# run-test.sh VARIANT BINARY RESULTFILE -- run one cmocka (or GoogleTest) binary under a watchdog and record
# "passed failed" counts in RESULTFILE. A hang is a failure (the watchdog kills it), never a wait.
set -u
variant=$1 bin=$2 out=$3
limit=${TF_TEST_TIMEOUT:-600}
name=$(basename "$bin")
log=$out.log
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ${TSAN_OPTIONS:-}" \
ASAN_OPTIONS="detect_leaks=1 abort_on_error=0 ${ASAN_OPTIONS:-}" \
UBSAN_OPTIONS="print_stacktrace=1 halt_on_error=1 ${UBSAN_OPTIONS:-}" \
  timeout -k 10 "$limit" "$bin" >"$log" 2>&1
rc=$?
# cmocka prints "[  PASSED  ] 3 test(s)."; GoogleTest "[  PASSED  ] 3 tests." / "1 test.", and
# "[  FAILED  ] 2 tests, listed below:" (its per-test FAILED lines carry no count).
passed=$(sed -n 's/^\[  PASSED  \] \([0-9][0-9]*\) test\(s\|(s)\)\{0,1\}\..*/\1/p' "$log" | tail -1)
failed=$(sed -n 's/^\[  FAILED  \] \([0-9][0-9]*\) test\(s\|(s)\)\{0,1\}[,.].*/\1/p' "$log" | tail -1)
passed=${passed:-0} failed=${failed:-0}
if [ $rc -ne 0 ] && [ "$failed" -eq 0 ]; then
  failed=1   # crashed, sanitizer report, or watchdog: count the binary as one failure
  [ $rc -eq 124 ] || [ $rc -eq 137 ] && echo "[$variant] $name: WATCHDOG: killed after ${limit}s" >>"$log"
fi
echo "$passed $failed" >"$out"
if [ $rc -ne 0 ] || [ "$failed" -ne 0 ]; then
  cat "$log"
  echo "[$variant] $name: FAILED (exit $rc, $passed passed, $failed failed)"
  exit 1
fi
echo "[$variant] $name: $passed passed"
