# mk/mutants.mk -- mutation testing of proto/ (issue 14); -included by the top Makefile.
#
#   make mutants        each mutant of scripts/mutants-proto.py (a bug put into a scratch copy of
#                       proto/) must be killed by the proto unit tests or the corpus replay;
#                       part of `make check` (about a minute on 2 cores)
#   make mutants-fuzz   each mutant must be killed by one of its fuzzers (fixed -seed, committed
#                       seeds, at most MUTANTS_FUZZ_SECONDS = 60 s each); run by .ci/run
#   make mutants MUTANTS="rx-max-signed tx-done-early"   only those
#
# Both print a table mutant x killers; a surviving mutant fails the target.

MUTANTS ?=

.PHONY: mutants mutants-fuzz
mutants:
	@scripts/mutants-proto.py tests $(MUTANTS)
mutants-fuzz:
	@scripts/mutants-proto.py fuzz $(MUTANTS)

CHECK_EXTRA += mutants
