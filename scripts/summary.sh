#!/usr/bin/env bash
# summary.sh DIR -- add up the result files of run-test.sh and print the closing line.
set -u
dir=$1 p=0 f=0
for r in "$dir"/*; do
  case $r in *.log) continue ;; esac
  [ -f "$r" ] || continue
  read -r a b <"$r"; p=$((p + a)); f=$((f + b))
done
echo "check: $p passed, $f failed"
[ "$p" -gt 0 ] && [ "$f" -eq 0 ]
