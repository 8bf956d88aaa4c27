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
# The same proof with a 32-bit size_t and long; not part of `make check` (see verify/README.md).
verify-32:
	@WP_MACHDEP=x86_32 verify/wp.sh -- -wp-report-json build/wp/report-32.json >build/wp/wp-32.log 2>&1; \
	  python3 verify/summary.py build/wp/report-32.json
