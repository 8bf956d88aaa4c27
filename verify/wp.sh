#!/usr/bin/env bash
# wp.sh [FILES...] [-- extra frama-c options] -- run Frama-C WP on proto/ (default: every file).
# Used by `make verify`; handy alone:  verify/wp.sh proto/hs.c -- -wp-fct tf_hs_try
set -u
cd "$(dirname "$0")/.."
mkdir -p build/wp
export WHY3CONFIG=$PWD/build/wp/why3.conf
[ -s "$WHY3CONFIG" ] || why3 config detect -C "$WHY3CONFIG" >/dev/null 2>&1
files=() extra=()
while [ $# -gt 0 ]; do
  if [ "$1" = -- ]; then shift; extra=("$@"); break; fi
  files+=("$1"); shift
done
[ ${#files[@]} -gt 0 ] || files=(proto/*.c)
exec frama-c -cpp-extra-args="-Iinclude -Iproto -D__FRAMAC__" -machdep x86_64 "${files[@]}" \
  -rte-no-pointer-call \
  -wp -wp-rte -wp-prover "${WP_PROVERS:-cvc4}" -wp-timeout "${WP_TIMEOUT:-10}" -wp-par "${WP_PAR:-4}" \
  -wp-no-warn-memory-model -warn-signed-overflow -warn-unsigned-overflow \
  -warn-signed-downcast -warn-unsigned-downcast -wp-smoke-tests -wp-smoke-timeout "${WP_SMOKE_TIMEOUT:-1}" \
  "${extra[@]}"
