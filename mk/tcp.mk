# mk/tcp.mk -- the TCP layer's tests: the threaded ones also run under TSan (make check, make tsan).
# Included at the end of the top Makefile.

TSAN_TESTS += test_sync_conn test_sync_readahead test_sync_server test_sync_connect
