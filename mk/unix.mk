# mk/unix.mk -- Unix-domain sockets (SPEC 9.9): the threaded test also runs under TSan.
# Included at the end of the top Makefile.
TSAN_TESTS += test_unix
