# verify.mk -- Frama-C WP proof of proto/ (see verify/README.md).
.PHONY: verify verify-update
verify:
	@verify/check.sh
verify-update:
	@verify/check.sh --update
CHECK_EXTRA += verify
# Known bugs put back into a scratch copy; the proof must catch each (verify/README.md). Long
# (WP on the changed functions of ~26 mutants): run by .ci/run after `make check`.
.PHONY: mutants-proof verify-32 verify-cold
# The whole proof without the committed cache (~17 min on 2 idle cores; same verdict).
verify-cold:
	@WP_CACHE=none verify/check.sh
mutants-proof:
	@python3 verify/mutants.py
# The same proof with a 32-bit size_t and long (-machdep x86_32), judged by the same gate against
# its own table verify/proved_goals-32.txt; not part of `make check`, run by .ci/run after it
# (see verify/README.md). Its goals are in the committed cache too.
.PHONY: verify-32-update
verify-32:
	@WP_MACHDEP=x86_32 VERIFY_TAG=-32 verify/check.sh
verify-32-update:
	@WP_MACHDEP=x86_32 VERIFY_TAG=-32 verify/check.sh --update
