# mk/abi.mk -- the library as its users see it (issue 16); -included by the top Makefile.
#
#   make abi-check      build/plain/libtcpframe.so exports exactly the TF_API functions of
#                       include/tcpframe/*.h, all in version node TCPFRAME_<major>, soname
#                       libtcpframe.so.<major>, struct sizes as in scripts/abi-sizes.txt
#                       (scripts/abi-check.sh); records build/results/abi-check
#   make install-test   `make install` into a scratch DESTDIR, then builds and runs examples/
#                       against the installed files only, with pkg-config: shared, --static, and
#                       a C++ translation unit; with CMake's find_package (tcpframe::tcpframe,
#                       tcpframe::tcpframe_static); the TLS layer (tls.h, tcpframe-tls.pc,
#                       tcpframe::tls: examples/tls_ctx.c); man -l on some pages
#                       (scripts/install-test.sh);
#                       records
#                       build/results/install-test
#
# Both are part of `make check` (CHECK_EXTRA) and always use the plain build.

.PHONY: abi-check install-test

abi-check:
	@$(MAKE) --no-print-directory V=plain build/plain/libtcpframe.so
	@scripts/abi-check.sh build/plain/libtcpframe.so build/results/abi-check

install-test:
	@$(MAKE) --no-print-directory V=plain lib
	@scripts/install-test.sh build/results/install-test

CHECK_EXTRA += abi-check install-test
