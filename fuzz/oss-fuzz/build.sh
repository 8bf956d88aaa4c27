#!/bin/bash -eu
# OSS-Fuzz build script for tcpframe (https://google.github.io/oss-fuzz/getting-started/new-project-guide/).
# Inputs from the environment: CC, CFLAGS (sanitizer + -fsanitize=fuzzer-no-link), LIB_FUZZING_ENGINE,
# OUT, SRC; CXX and CXXFLAGS (the linker for the engine, default clang++ and $CFLAGS); WORK (a
# scratch directory, default a temporary one). Outputs in $OUT, for each fuzz/fuzz_*.c:
# the target, <target>_seed_corpus.zip, <target>.dict and <target>.options.
#
# The sources are $SRC/tcpframe (the OSS-Fuzz layout, see Dockerfile); when that does not exist
# (a local check), the checkout this script lives in.
#
# Local check:
#   CC=clang CFLAGS="-fsanitize=address,fuzzer-no-link" LIB_FUZZING_ENGINE=-fsanitize=fuzzer \
#     OUT=$(mktemp -d) SRC=$(cd ../../.. && pwd) fuzz/oss-fuzz/build.sh

if [ -d "$SRC/tcpframe/proto" ]; then
  REPO="$SRC/tcpframe"
else
  REPO="$(cd "$(dirname "$0")/../.." && pwd)"
fi
cd "$REPO"
: "${CXX:=clang++}"
command -v zip >/dev/null || { echo "build.sh: zip is required (apt-get install zip)" >&2; exit 1; }

# Objects go under the $WORK that OSS-Fuzz hands us (kept: it is theirs, and it survives for
# incremental rebuilds); a local run without one gets a temporary directory, removed at exit.
if [ -n "${WORK:-}" ]; then
  OBJ="$WORK/tcpframe-obj"
  rm -rf "$OBJ"
  mkdir -p "$OBJ"
else
  OBJ=$(mktemp -d)
  trap 'rm -rf "$OBJ"' EXIT
fi
: "${CXXFLAGS:=$CFLAGS}"

# The pure core, once, with the engine's instrumentation flags.
objs=()
for f in proto/*.c; do
  o="$OBJ/$(basename "$f" .c).o"
  $CC $CFLAGS -std=c11 -g -Iinclude -Iproto -c "$f" -o "$o"
  objs+=("$o")
done

# The OS side (io/), for the targets that drive a connection (fuzz_conn).
ioobjs=()
for f in io/*.c; do
  o="$OBJ/io_$(basename "$f" .c).o"
  $CC $CFLAGS -std=c11 -g -D_GNU_SOURCE -pthread -Iinclude -Iio -c "$f" -o "$o"
  ioobjs+=("$o")
done

for src in fuzz/fuzz_*.c; do
  t=$(basename "$src" .c)
  extra=() defs=()
  [ "$t" = fuzz_conn ] && extra=("${ioobjs[@]}" -pthread) defs=(-D_GNU_SOURCE -Iio)
  $CC $CFLAGS -std=c11 -g "${defs[@]}" -Iinclude -Iproto -Ifuzz -c "$src" -o "$OBJ/$t.o"
  # Link with the C++ driver and its flags: $LIB_FUZZING_ENGINE may be a C++ archive (libFuzzer,
  # AFL, honggfuzz), and OSS-Fuzz puts the sanitizer and C++ runtime flags in $CXXFLAGS.
  $CXX $CXXFLAGS "$OBJ/$t.o" "${objs[@]}" "${extra[@]}" $LIB_FUZZING_ENGINE -o "$OUT/$t"
  rm -f "$OUT/${t}_seed_corpus.zip"
  if [ -d "fuzz/corpus/$t" ] && [ -n "$(ls -A "fuzz/corpus/$t")" ]; then
    (cd "fuzz/corpus/$t" && zip -q -j "$OUT/${t}_seed_corpus.zip" ./*)
  fi
  cp fuzz/tcpframe.dict "$OUT/$t.dict"
  [ -f "fuzz/$t.options" ] && cp "fuzz/$t.options" "$OUT/$t.options"
done
echo "build.sh: built $(ls fuzz/fuzz_*.c | wc -l) targets into $OUT"
