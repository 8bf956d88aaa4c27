# verify.mk -- Frama-C WP proof of proto/ (see verify/README.md).
.PHONY: verify verify-update
verify:
	@verify/check.sh
verify-update:
	@verify/check.sh --update
CHECK_EXTRA += verify
