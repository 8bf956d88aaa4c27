#!/usr/bin/env bash
# check.sh [--update] -- prove all of proto/ with Frama-C WP and judge the result (`make verify`).
# Fails if frama-c fails, if any goal is unproved, if any smoke test finds dead code or an
# inconsistent precondition, or if the goal count differs from verify/proved_goals.txt (a proof
# must never shrink silently: after a deliberate change, rerun with --update and commit the file).
set -u
cd "$(dirname "$0")/.."
mkdir -p build/wp
log=build/wp/wp.log json=build/wp/report.json expect=verify/proved_goals.txt
rm -f "$json"
start=$(date +%s)
verify/wp.sh -- -wp-report-json "$json" >"$log" 2>&1
rc=$?
secs=$(( $(date +%s) - start ))
line=$(grep -E '^\[wp\] Proved goals:' "$log" | tail -1)
proved=$(echo "$line" | sed -E 's/.*: *([0-9]+) *\/ *([0-9]+).*/\1/')
total=$(echo "$line" | sed -E 's/.*: *([0-9]+) *\/ *([0-9]+).*/\2/')
fail=0
if [ "$rc" -ne 0 ] || [ -z "$line" ]; then
  tail -30 "$log"; echo "verify: FAILED: frama-c exited $rc"
  mkdir -p build/results; echo "0 1" >build/results/verify; exit 1
fi
[ -s "$json" ] && python3 verify/summary.py "$json"
grep -E '\[wp\] \[(Failed|Unknown|Timeout)\]|Goal .*: (Unknown|Timeout|Failed)' "$log" | head -20
smoke=$(grep -E 'Smoke-test' "$log" | grep -v '\[Passed\]' | head -10)
if [ -n "$smoke" ]; then echo "$smoke"; echo "verify: FAILED: smoke tests found dead code or inconsistent requirements"; fail=1; fi
if [ "$proved" != "$total" ]; then echo "verify: FAILED: $((total - proved)) goal(s) unproved"; fail=1; fi
# No admitted lemma or assertion may stand in the model (the word is split so that this script
# does not match its own search).
if grep -qE "\\badm""it\\b" proto/*.c proto/*.h include/tcpframe/*.h; then
  echo "verify: FAILED: an ACSL admission stands in proto/"; fail=1; fi
if [ "${1:-}" = --update ] && [ $fail -eq 0 ]; then
  echo "$proved / $total" >"$expect"; echo "verify: recorded $proved / $total in $expect"
elif [ "$(cat "$expect" 2>/dev/null)" != "$proved / $total" ]; then
  echo "verify: FAILED: proved $proved / $total but $expect says '$(cat "$expect" 2>/dev/null)';"
  echo "        if the change of contracts is deliberate, run 'make verify-update' and commit $expect"
  fail=1
fi
echo "verify: $proved / $total goals proved in ${secs}s (full log: $log, per goal: $json)"
# One line for `make check`'s summary: the proof counts as one check.
mkdir -p build/results; echo "$((1 - fail)) $fail" >build/results/verify
exit $fail
