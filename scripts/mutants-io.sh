#!/usr/bin/env bash
# mutants-io.sh -- the io tests must be able to fail. Each mutant puts back one of the seed
# loop's bugs (or removes one defence) in a scratch copy of io/evbase.c, rebuilds test_evbase
# against it and runs the tests meant to catch it: the mutant must be killed (a failed assertion
# or the no-progress watchdog). A surviving mutant fails `make check`.
# Writes build/results/mutants-io ("killed survived") and its log beside it.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/build/results/mutants-io
mkdir -p "$root/build/results"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
: >"$out.log"

clear='    atomic_store_explicit(&evb->pending, false, memory_order_seq_cst);'
# name # text in io/evbase.c (exactly once) # replacement # the tests (cmocka filters) that must
# each kill it
mutants=(
  "seed-lost-wakeup#$clear
    run_queue(evb);#    run_queue(evb);
$clear#*1m_round_trips *two_threads"
  "seed-late-unregister#    if (ticket < s->ticket)#    if (0 && ticket < s->ticket)#*register_storm*"
  "stale-event#    if (!s->active || s->gen != gen)#    if (!s->active && gen == gen)#*stale_event*"
)

killed=0 survived=0
for m in "${mutants[@]}"; do
  IFS='#' read -r -d '' name from to filter <<<"$m"
  filter=${filter%$'\n'}
  rm -rf "$work/src" && mkdir -p "$work/src"
  cp -r "$root/include" "$root/io" "$root/tests" "$work/src/"
  if ! FROM=$from TO=$to python3 - "$work/src/io/evbase.c" <<'EOF'
import os, sys
p = sys.argv[1]
s = open(p).read()
if s.count(os.environ["FROM"]) != 1:
    sys.exit(1)
open(p, "w").write(s.replace(os.environ["FROM"], os.environ["TO"]))
EOF
  then
    echo "mutant $name: did not apply (io/evbase.c changed?): counted as survived" | tee -a "$out.log"
    survived=$((survived + 1))
    continue
  fi
  if ! (cd "$work/src" && ${CC:-cc} -std=c11 -O1 -g -D_GNU_SOURCE -pthread -Iinclude -Itests \
    tests/test_evbase.c io/*.c -lcmocka -o "$work/t") >>"$out.log" 2>&1; then
    echo "mutant $name: does not build: counted as survived" | tee -a "$out.log"
    survived=$((survived + 1))
    continue
  fi
  alive=
  for f in $filter; do
    TF_TEST_WATCHDOG=5 TF_TEST_FILTER="$f" timeout -k 5 120 "$work/t" >"$work/run.log" 2>&1
    rc=$?
    if [ $rc -eq 0 ]; then
      alive="$alive $f"
    else
      how=$(grep -m1 -E 'WATCHDOG: no progress|ERROR' "$work/run.log")
      echo "mutant $name: killed by $f (exit $rc: $how)" | tee -a "$out.log"
    fi
  done
  if [ -n "$alive" ]; then
    echo "mutant $name: SURVIVED$alive" | tee -a "$out.log"
    survived=$((survived + 1))
  else
    killed=$((killed + 1))
  fi
done
echo "$killed $survived" >"$out"
echo "mutants-io: $killed killed, $survived survived"
[ "$survived" -eq 0 ]
