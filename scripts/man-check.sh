#!/usr/bin/env bash
# man-check.sh MANDIR RESULTFILE -- the generated reference manual against the headers
# (SPEC.md 10.4). MANDIR is what scripts/gen-man.py wrote (build/man). Fails when:
#   1. a function the public headers declare (include/tcpframe/*.h and the TLS layer's
#      tls/tcpframe/tls.h; the compiler's view: gcc -aux-info, as scripts/abi-check.sh;
#      independent of gen-man.py's parser) has no page in MANDIR/man3;
#   2. a page in MANDIR/man3 is for a function the headers no longer declare;
#   3. a page (man3 or tcpframe.7) names a tf_ identifier that exists nowhere in the headers'
#      code: a function, type, macro or field that was renamed or removed while a comment (or
#      SPEC.md / README.md text copied into tcpframe.7) still mentions it;
#   4. groff warns about a page (-ww), or tcpframe.7 is missing.
# Records "1 0" or "0 1" in RESULTFILE for make check's summary (scripts/summary.sh).
set -u
dir=$1 out=$2
cd "$(dirname "$0")/.."
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail=0
bad() { echo "man-check: $*"; fail=1; }
CC=${ABI_CC:-gcc}

headers=(include/tcpframe/*.h tls/tcpframe/tls.h)
for h in "${headers[@]}"; do echo "#include \"tcpframe/$(basename "$h")\""; done >"$tmp/all.c"
$CC -std=c11 -D_GNU_SOURCE -Iinclude -Itls -aux-info "$tmp/aux.txt" -c "$tmp/all.c" -o "$tmp/all.o" ||
  bad "the public headers do not compile"
grep -E '(include|tls)/tcpframe/' "$tmp/aux.txt" | grep -v '\*/ static ' |
  sed -n 's/^.*\*\/ extern [^(]*[^A-Za-z0-9_]\([A-Za-z_][A-Za-z0-9_]*\) (.*$/\1/p' |
  sort -u >"$tmp/declared"
ls "$dir/man3" 2>/dev/null | sed -n 's/\.3$//p' | sort -u >"$tmp/pages"
ndecl=$(wc -l <"$tmp/declared") npages=$(wc -l <"$tmp/pages")
[ "$ndecl" -gt 0 ] || bad "no declaration found in ${headers[*]}"

# 1, 2.
missing=$(comm -23 "$tmp/declared" "$tmp/pages")
stale=$(comm -13 "$tmp/declared" "$tmp/pages")
[ -z "$missing" ] || bad "TF_API functions without a page: $(echo $missing)"
[ -z "$stale" ] || bad "pages for functions the headers do not declare: $(echo $stale)"
[ -f "$dir/man7/tcpframe.7" ] || bad "$dir/man7/tcpframe.7 is missing"

# 3. Identifiers of the headers' code (comments stripped by the preprocessor, -fpreprocessed
# keeps the macros' names; -dD keeps the #defines).
for h in "${headers[@]}"; do
  $CC -fpreprocessed -dD -E -P "$h" 2>/dev/null
done | grep -o '\btf_[A-Za-z0-9_]*' | sort -u >"$tmp/known"
cat "$tmp/declared" >>"$tmp/known"
# Words of the pages as a reader sees them (roff escapes dropped); a name cut short by a
# pattern (tf_*_conn_from_fd, tf_be32_put/_get) ends with '_' and is not a name.
for p in "$dir"/man3/*.3 "$dir"/man7/*.7; do
  [ -f "$p" ] || continue
  sed -e 's/\\f[BIRP]//g' -e 's/\\-/-/g' -e 's/\\e/\\/g' "$p" |
    grep -o '\btf_[A-Za-z0-9_]*' | grep -v '_$' | sed "s|^|$(basename "$p") |"
done | sort -u >"$tmp/named"
unknown=$(awk 'NR == FNR { k[$1] = 1; next } !($2 in k)' "$tmp/known" "$tmp/named")
[ -z "$unknown" ] || bad "pages name identifiers that no header defines (page: name):
$(echo "$unknown" | sed 's/^/  /')"

# 4.
for p in "$dir"/man3/*.3 "$dir"/man7/*.7; do
  [ -f "$p" ] || continue
  w=$(groff -man -Tutf8 -ww -z "$p" 2>&1)
  [ -z "$w" ] || bad "groff warns about $(basename "$p"): $w"
done

mkdir -p "$(dirname "$out")"
if [ $fail -eq 0 ]; then
  echo "1 0" >"$out"
  echo "man-check: OK: $npages pages for the $ndecl TF_API functions, tcpframe.7; every tf_ name" \
       "they mention exists; groff -ww clean"
else
  echo "0 1" >"$out"
  echo "man-check: FAILED ($dir)"
fi
exit $fail
