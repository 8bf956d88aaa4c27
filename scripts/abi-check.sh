#!/usr/bin/env bash
# abi-check.sh LIB.so RESULTFILE -- the shared library's ABI against the headers (SPEC.md 10):
#   1. the dynamic symbols it defines are exactly the functions the public headers declare
#      (gcc -aux-info over every include/tcpframe/*.h, static inline helpers left out): an
#      exported tf__ internal, test hook or stray symbol fails; so does a declared function that
#      is not exported (a declaration without TF_API is hidden by -fvisibility=hidden);
#   2. every export carries the version node TCPFRAME_<major> of scripts/tcpframe.map;
#   3. the soname is libtcpframe.so.<major> (include/tcpframe/version.h);
#   4. the exposed structs have the sizes recorded in scripts/abi-sizes.txt (x86_64): a change is
#      an ABI break (a new major, then update the file); tf_tcp_config may only grow (appended
#      fields, its size field tells the library which ones a caller has).
# Records "1 0" or "0 1" in RESULTFILE, like scripts/run-test.sh, for make check's summary.
set -u
so=$1 out=$2
cd "$(dirname "$0")/.."
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail=0
bad() { echo "abi-check: $*"; fail=1; }
CC=${ABI_CC:-gcc} # -aux-info is a gcc option

major=$(sed -n 's/^#define TF_VERSION_MAJOR \([0-9]*\)$/\1/p' include/tcpframe/version.h)
[ -n "$major" ] || bad "no TF_VERSION_MAJOR in include/tcpframe/version.h"

# 1. Declared: every function prototype the public headers make (as the compiler sees them).
for h in include/tcpframe/*.h; do echo "#include \"tcpframe/$(basename "$h")\""; done >"$tmp/all.c"
if ! $CC -std=c11 -D_GNU_SOURCE -Iinclude -aux-info "$tmp/aux.txt" -c "$tmp/all.c" -o "$tmp/all.o"; then
  bad "the public headers do not compile"
fi
grep 'include/tcpframe/' "$tmp/aux.txt" | grep -v '\*/ static ' |
  sed -n 's/^.*\*\/ extern [^(]*[^A-Za-z0-9_]\([A-Za-z_][A-Za-z0-9_]*\) (.*$/\1/p' |
  sort -u >"$tmp/declared"
# Exported: defined dynamic symbols, version suffix dropped; the version node itself (an
# absolute symbol named TCPFRAME_0) is checked separately.
nm -D --defined-only "$so" | awk '$2 != "A" {print $3}' | sed 's/@.*//' | sort -u >"$tmp/exported"
ndecl=$(wc -l <"$tmp/declared") nexp=$(wc -l <"$tmp/exported")
[ "$ndecl" -gt 0 ] || bad "no declaration found in include/tcpframe/*.h"
extra=$(comm -13 "$tmp/declared" "$tmp/exported")
missing=$(comm -23 "$tmp/declared" "$tmp/exported")
internal=$(printf '%s\n' $extra | grep '^tf__' || true)
other=$(printf '%s\n' $extra | grep -v '^tf__' || true)
[ -z "$internal" ] || bad "internal symbols exported (mark nothing tf__ with TF_API): $(echo $internal)"
[ -z "$other" ] || bad "exported but declared in no public header: $(echo $other)"
[ -z "$missing" ] || bad "declared in include/tcpframe/ but not exported (TF_API missing?): $(echo $missing)"

# 2. Version node: every defined export is tf_x@@TCPFRAME_<major>.
unversioned=$(nm -D --defined-only "$so" | awk '$2 != "A" {print $3}' | grep -v "@@TCPFRAME_$major\$" || true)
[ -z "$unversioned" ] || bad "exports without the version node TCPFRAME_$major: $(echo $unversioned | head -c 300)"

# 3. soname.
soname=$(readelf -d "$so" | sed -n 's/.*Library soname: \[\(.*\)\].*/\1/p')
[ "$soname" = "libtcpframe.so.$major" ] || bad "soname is '$soname', expected libtcpframe.so.$major"

# 4. Struct sizes.
{
  echo '#include <stdio.h>'
  for h in include/tcpframe/*.h; do echo "#include \"tcpframe/$(basename "$h")\""; done
  echo 'int main(void) {'
  awk '!/^#/ && NF == 2 {printf "    printf(\"%%s %%zu\\n\", \"%s\", sizeof(%s));\n", $1, $1}' scripts/abi-sizes.txt
  echo '    return 0; }'
} >"$tmp/sizes.c"
if $CC -std=c11 -D_GNU_SOURCE -Iinclude "$tmp/sizes.c" -o "$tmp/sizes" && "$tmp/sizes" >"$tmp/sizes.txt"; then
  while read -r name want; do
    have=$(awk -v n="$name" '$1 == n {print $2}' "$tmp/sizes.txt")
    if [ "$name" = tf_tcp_config ] || [ "$name" = tf_conn_stats ] || [ "$name" = tf_server_stats ]; then
      [ "$have" -ge "$want" ] || bad "sizeof($name) = $have shrank below $want (fields are only appended)"
    elif [ "$have" != "$want" ]; then
      bad "sizeof($name) = $have, scripts/abi-sizes.txt says $want: an ABI change (new major)"
    fi
  done < <(awk '!/^#/ && NF == 2' scripts/abi-sizes.txt)
else
  bad "the struct size probe does not build"
fi

mkdir -p "$(dirname "$out")"
if [ $fail -eq 0 ]; then
  echo "1 0" >"$out"
  echo "abi-check: OK: $nexp exports = the $ndecl TF_API declarations, all @@TCPFRAME_$major;" \
       "soname $soname; $(awk '!/^#/ && NF == 2' scripts/abi-sizes.txt | wc -l) struct sizes as recorded"
else
  echo "0 1" >"$out"
  echo "abi-check: FAILED ($so)"
fi
exit $fail
