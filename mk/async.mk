# mk/async.mk -- the async TCP layer's tests also run under TSan (threaded: callers on the test
# thread, callbacks on the loop thread). Included at the end of the top Makefile.
TSAN_TESTS += test_async_conn test_async_life test_async_server test_async_edges test_async_peers
