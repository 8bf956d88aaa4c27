#!/usr/bin/env bash
# proto/ is pure: compiled as a normal hosted object at -O2, it may reference only the mem*
# functions (which the compiler itself may emit for struct copies).
set -eu
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for f in proto/*.c; do
  ${CC:-cc} -std=c11 -O2 -fno-stack-protector -Iinclude -Iproto -c "$f" -o "$tmp/$(basename "$f").o"
done
bad=$(nm -u "$tmp"/*.o | awk 'NF==2{print $2}' | grep -vE '^(memcpy|memmove|memset|memcmp)$' | sort -u || true)
if [ -n "$bad" ]; then
  echo "purity: FAILED: proto/ objects reference: $bad"; exit 1
fi
echo "purity: proto/ references only: $(nm -u "$tmp"/*.o | awk 'NF==2{print $2}' | sort -u | tr '\n' ' ')"
