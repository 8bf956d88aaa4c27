#!/usr/bin/env bash
# check.sh [--update] -- prove all of proto/ with Frama-C WP and judge the result (`make verify`).
# The verdict is read from WP's JSON report, not from log text. Fails if frama-c fails, if any
# goal is unproved, if any smoke test finds dead code or an inconsistent precondition, if an
# annotation in proto/ assumes instead of proving (axiom, lemma, assumed clauses, check: verify/forbid.py),
# or if the goals per function differ from verify/proved_goals.txt (a proof must never shrink
# silently: after a deliberate change, rerun with --update, which prints what changed per
# function, and commit the file).
set -u
cd "$(dirname "$0")/.."
mkdir -p build/wp build/results
# VERIFY_TAG=-32 (with WP_MACHDEP=x86_32: `make verify-32`) keeps its own log, report, goal table
# and result line, so the two machine models are judged alike and side by side.
tag=${VERIFY_TAG:-}
log=build/wp/wp$tag.log json=build/wp/report$tag.json expect=verify/proved_goals$tag.txt
rm -f "$json"
fail=0
python3 verify/forbid.py proto/*.c proto/*.h include/tcpframe/*.h || fail=1
start=$(date +%s)
verify/wp.sh -- -wp-report-json "$json" >"$log" 2>&1
rc=$?
secs=$(( $(date +%s) - start ))
if [ "$rc" -ne 0 ] || [ ! -s "$json" ]; then
  tail -30 "$log"; echo "verify: FAILED: frama-c exited $rc (no report)"
  echo "0 1" >build/results/verify$tag; exit 1
fi
if [ "${1:-}" = --update ] && [ $fail -eq 0 ]; then
  python3 verify/summary.py "$json" --update "$expect" || fail=1
else
  python3 verify/summary.py "$json" --check "$expect" || fail=1
fi
echo "verify$tag: $(head -1 "$expect") expected; machine model ${WP_MACHDEP:-x86_64}; run took ${secs}s (log: $log, per goal: $json)"
[ $fail -eq 0 ] && echo "verify: OK" || echo "verify: FAILED"
# One line for `make check`'s summary: the proof counts as one check.
echo "$((1 - fail)) $fail" >build/results/verify$tag
exit $fail
