#!/usr/bin/env bash
# proto/ is pure: compiled as a normal hosted object at -O2, it may reference only the mem*
# functions (which the compiler itself may emit for struct copies).
set -eu
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for f in proto/*.c; do
  ${CC:-cc} -std=c11 -O2 -fno-stack-protector -Iinclude -Iproto -c "$f" -o "$tmp/$(basename "$f").o"
done
# Symbols proto/ needs from outside itself: undefined in some object, defined in none.
nm -u "$tmp"/*.o | awk 'NF==2{print $2}' | sort -u >"$tmp/undef"
nm --defined-only "$tmp"/*.o | awk 'NF==3{print $3}' | sort -u >"$tmp/def"
ext=$(comm -23 "$tmp/undef" "$tmp/def")
bad=$(printf '%s\n' $ext | grep -vE '^(memcpy|memmove|memset|memcmp)?$' || true)
if [ -n "$bad" ]; then
  echo "purity: FAILED: proto/ objects reference: $bad"
  mkdir -p build/results; echo "0 1" >build/results/purity; exit 1
fi
echo "purity: OK: proto/ needs only: $(echo $ext)"
mkdir -p build/results; echo "1 0" >build/results/purity
