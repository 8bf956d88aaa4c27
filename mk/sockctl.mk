# mk/sockctl.mk -- socket-level control and the generic view's timeouts (issue 24): these tests
# run a loop thread (async servers and connections), so they also run under TSan.
# Included at the end of the top Makefile.
TSAN_TESTS += test_sockctl test_conn
