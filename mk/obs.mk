# mk/obs.mk -- observability (issue 24 item 3, SPEC 9.10): its test runs under TSan too (stats read
# from the test thread while the loop and accepting threads count).
TSAN_TESTS += test_obs
