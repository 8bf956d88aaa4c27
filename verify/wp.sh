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
skip=()
if [ ${#files[@]} -eq 0 ]; then
  files=(proto/*.c)
  # The static inline helpers of proto.h and core.h are compiled into every file that includes
  # them; Frama-C renames the copies (tf_be32_get_0, ...). They are the same source text, proved
  # once under their own name; the copies are skipped.
  skip=(-wp-skip-fct "tf__io_answer_0,tf__io_answer_1,tf_be32_get_0,tf_be32_get_1,tf_be32_get_2,tf_be32_put_0,tf_be32_put_1,tf_be32_put_2")
fi
# WP's cache: a goal whose text, prover and limits are unchanged is not re-run (the key is a
# digest of the goal, so a changed goal is always proved again). It is committed (verify/cache:
# one small JSON verdict per goal digest), so a clean clone replays the unchanged goals instead
# of spending ~17 min of CVC4 on them; new goals are proved and added (commit the new files).
# WP_CACHE=none proves everything from scratch (`make verify-cold`).
cache=${WP_CACHE:-update} cachedir=${WP_CACHE_DIR:-$PWD/verify/cache}
mkdir -p "$cachedir"
# Verdicts are by prover steps, not wall-clock time (TOOLCHAIN.md): a goal proves or fails the
# same way on an idle or a loaded machine. CVC4 counts its resource units (--rlimit) and stops at
# WP_STEPS; the slowest goal here takes ~532k. Smoke tests get the same step budget, so a smoke
# test that "passes" has searched as hard for an inconsistency as a proof searches for a proof.
# The wall-clock timeouts are a safety net only, generous enough never to decide a goal that
# would end within its steps, even on a loaded machine.
exec frama-c -cpp-extra-args="-Iinclude -Iproto -D__FRAMAC__ -DTF_API=" -machdep "${WP_MACHDEP:-x86_64}" \
  "${files[@]}" -rte-no-pointer-call \
  -wp -wp-rte -wp-prover "${WP_PROVERS:-cvc4}" -wp-steps "${WP_STEPS:-600000}" \
  -wp-timeout "${WP_TIMEOUT:-120}" -wp-par "${WP_PAR:-$(nproc)}" \
  -wp-no-warn-memory-model -warn-signed-overflow -warn-unsigned-overflow \
  -warn-signed-downcast -warn-unsigned-downcast \
  -wp-smoke-tests -wp-smoke-timeout "${WP_SMOKE_TIMEOUT:-120}" \
  "${skip[@]}" -wp-cache "$cache" -wp-cache-dir "$cachedir" \
  "${extra[@]}"
