# mk/cmake.mk -- the CMake package (issue 24, SPEC.md 10.3); -included by the top Makefile.
#
#   make install   also installs $(LIBDIR)/cmake/tcpframe/tcpframeConfig.cmake and
#                  tcpframeConfigVersion.cmake (install-cmake), made from scripts/*.cmake.in:
#                  imported targets tcpframe::tcpframe (the .so) and tcpframe::tcpframe_static
#                  (the .a), both with the include directory and Threads::Threads; when the
#                  TLS files are installed (mk/tls.mk) and OpenSSL 3 is found, tcpframe::tls
#                  (libtcpframe_tls.a + tcpframe::tcpframe_static + OpenSSL::SSL/Crypto;
#                  COMPONENTS tls makes it required); the version file accepts a request of
#                  the same major (SameMajorVersion).
#
# The config file finds the library and headers relative to itself (relocatable, DESTDIR-safe):
# the library directory is two levels up, the include directory is PREFIX/include as seen from
# LIBDIR/cmake/tcpframe (realpath -m: the directories need not exist yet).

CMAKEDIR ?= $(LIBDIR)/cmake/tcpframe
CMAKE_SUBST = -e 's|@VERSION@|$(VERSION)|g' -e 's|@MAJOR@|$(VERSION_MAJOR)|g' \
  -e "s|@CONFIG_TO_INCLUDEDIR@|$$(realpath -m --relative-to=$(CMAKEDIR) $(PREFIX)/include)|g" \
  -e "s|@SIZEOF_VOID_P@|$$(echo __SIZEOF_POINTER__ | $(CC) -E -P - | tr -d ' \n')|g"

.PHONY: install-cmake uninstall-cmake
install: install-cmake
uninstall: uninstall-cmake

install-cmake:
	install -d $(DESTDIR)$(CMAKEDIR)
	sed $(CMAKE_SUBST) scripts/tcpframeConfig.cmake.in > $(DESTDIR)$(CMAKEDIR)/tcpframeConfig.cmake
	sed $(CMAKE_SUBST) scripts/tcpframeConfigVersion.cmake.in \
	  > $(DESTDIR)$(CMAKEDIR)/tcpframeConfigVersion.cmake

uninstall-cmake:
	rm -f $(DESTDIR)$(CMAKEDIR)/tcpframeConfig.cmake $(DESTDIR)$(CMAKEDIR)/tcpframeConfigVersion.cmake
	-rmdir $(DESTDIR)$(CMAKEDIR) 2>/dev/null
