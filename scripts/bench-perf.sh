#!/usr/bin/env bash
# bench-perf.sh -- syscalls and context switches per message for each tfbench system (issue 21):
# every (workload, system) runs twice under `perf stat` (raw_syscalls:sys_enter,
# context-switches; the whole process, every thread), with --count N and --count 2N; the
# difference divided by N is the cost of one message (one round trip for rtt_64 and conns_1k:
# per connection round trip), without the setup both runs share (connects, threads, the pilot
# that --count skips). Counts, not times: they hardly move with the machine's load.
#
#   scripts/bench-perf.sh [TFBENCH] [WORKLOADS] [SYSTEMS]
#     TFBENCH    default build/bin/tfbench (make build/bin/tfbench first)
#     WORKLOADS  default rtt_64,stream_64,conns_1k
#     SYSTEMS    default raw,sync,async_cb,async_future,zmq
# Needs perf (Debian: linux-perf) and permission to count tracepoints (root, or
# kernel.perf_event_paranoid <= 1 with access to tracefs).
set -eu
bench=${1:-build/bin/tfbench}
workloads=${2:-rtt_64,stream_64,conns_1k}
systems=${3:-raw,sync,async_cb,async_future,zmq}
command -v perf >/dev/null || { echo "bench-perf: perf not found (apt install linux-perf)" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
count() { # workload system n -> "syscalls csw"
  perf stat -x, -e raw_syscalls:sys_enter,context-switches -o "$tmp/p" \
    "$bench" --reps 1 --count "$3" --workload "$1" --system "$2" >"$tmp/out" 2>"$tmp/err" ||
    { echo "bench-perf: $1 $2: tfbench failed" >&2; cat "$tmp/err" >&2; exit 1; }
  awk -F, '/raw_syscalls:sys_enter/ {s=$1} /context-switches/ {c=$1} END {print s, c}' "$tmp/p"
}
printf '%-10s %-13s %10s %12s %12s\n' workload system n syscalls/msg ctxsw/msg
for w in ${workloads//,/ }; do
  case $w in
    rtt_64) n=20000 ;;
    stream_64) n=1000000 ;;
    conns_1k) n=20 ;; # rounds over 1000 connections
    stream_1m) n=200 ;;
    *) echo "bench-perf: unknown workload $w" >&2; exit 2 ;;
  esac
  per=1; [ "$w" = conns_1k ] && per=1000
  for s in ${systems//,/ }; do
    [ "$w" = conns_1k ] && [ "$s" = sync ] && continue
    read -r s1 c1 < <(count "$w" "$s" "$n")
    read -r s2 c2 < <(count "$w" "$s" $((2 * n)))
    awk -v w="$w" -v s="$s" -v n="$n" -v per="$per" -v s1="$s1" -v s2="$s2" -v c1="$c1" -v c2="$c2" \
      'BEGIN { m = n * per; printf "%-10s %-13s %10d %12.3f %12.3f\n", w, s, m, (s2 - s1) / m, (c2 - c1) / m }'
  done
done
