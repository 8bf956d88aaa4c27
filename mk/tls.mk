# mk/tls.mk -- the TLS 1.3 transport (tls/, OpenSSL 3: SPEC 9.11); included by the top Makefile.
#
#   make tls             build/$(V)/libtcpframe_tls.a: link it with libtcpframe.a and
#                        -lssl -lcrypto (it uses the library's internal transport seam, so it goes
#                        with the static library); the header is tls/tcpframe/tls.h
#   make install         also installs tls.h in $(PREFIX)/include/tcpframe, the archive in
#                        $(LIBDIR) and $(LIBDIR)/pkgconfig/tcpframe-tls.pc (install-tls; the
#                        CMake package's tcpframe::tls: mk/cmake.mk). Static only: a shared
#                        libtcpframe_tls.so would need the seam exported from libtcpframe.so.
#
# libtcpframe.a / .so never need OpenSSL: only this archive, tests/test_tls* and tfcat link it.

TLS_SRC    := $(sort $(wildcard tls/*.c))
TLS_OBJ    := $(TLS_SRC:%.c=$(O)/%.o)
TLS_LIB    := $(O)/libtcpframe_tls.a
TLS_LDLIBS := -lssl -lcrypto
TLS_CFLAGS := -Itls -Iio

.PHONY: tls install-tls uninstall-tls
tls: $(TLS_LIB)

$(O)/tls/%.o: tls/%.c $(O)/tls/%.d
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(LIB_CFLAGS) $(DEPFLAGS) $(IO_CFLAGS) $(TLS_CFLAGS) -c $< -o $@

$(TLS_LIB): $(TLS_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

# tcpframe-tls.pc (scripts/tcpframe-tls.pc.in): Libs name the archive and libtcpframe.a (-l:), not
# -ltcpframe (the .so): the archive needs the static library's internals; OpenSSL in Requires,
# so `pkg-config --libs tcpframe-tls` (with or without --static) is a complete link.
install: install-tls
uninstall: uninstall-tls

install-tls: $(TLS_LIB)
	install -d $(DESTDIR)$(PREFIX)/include/tcpframe $(DESTDIR)$(LIBDIR)/pkgconfig
	install -m 644 tls/tcpframe/tls.h $(DESTDIR)$(PREFIX)/include/tcpframe/
	install -m 644 $(TLS_LIB) $(DESTDIR)$(LIBDIR)/
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' -e 's|@VERSION@|$(VERSION)|g' \
	  scripts/tcpframe-tls.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/tcpframe-tls.pc

uninstall-tls:
	rm -f $(DESTDIR)$(PREFIX)/include/tcpframe/tls.h $(DESTDIR)$(LIBDIR)/libtcpframe_tls.a \
	  $(DESTDIR)$(LIBDIR)/pkgconfig/tcpframe-tls.pc

TLS_DEPS := $(TLS_OBJ:.o=.d)
$(TLS_DEPS):
-include $(wildcard $(TLS_DEPS))

# tests/test_tls.c (the library's own ends), tests/test_tls_peers.c (openssl s_server /
# s_client, the conformance suite over TLS) and tests/test_tls_faults.c (every allocation of a
# TLS connect + handshake + echo failed in turn): certificates made by tests/tu_tls.c with the
# openssl CLI. They link this archive and OpenSSL; tu_tls.o needs tls/'s header (the other tests never
# pull it out of libtu.a).
TLS_TESTS := test_tls test_tls_peers test_tls_faults
$(TLS_TESTS:%=$(O)/tests/%): $(O)/tests/%: tests/%.c $(O)/tests/%.d $(TLS_LIB) $(O)/libtcpframe.a \
  $(O)/tests/libtu.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(DEPFLAGS) $(IO_CFLAGS) $(TLS_CFLAGS) -Itests -o $@ $< $(O)/tests/libtu.a \
	  $(TLS_LIB) $(O)/libtcpframe.a -lcmocka $(TLS_LDLIBS) $(LDLIBS_ALL)

$(O)/tests/tu_tls.o: tests/tu_tls.c $(O)/tests/tu_tls.d
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(DEPFLAGS) $(IO_CFLAGS) $(TLS_CFLAGS) -Itests -c $< -o $@

TSAN_TESTS += test_tls test_tls_peers test_tls_faults

# tfcat speaks TLS (--tls-*) and the demo makes one TLS exchange (its certificates made with
# OpenSSL's API): both link this archive and OpenSSL (scripts/deps.sh build installs
# libssl-dev); this rule replaces mk/run.mk's generic one for them.
# tfdemo (and tfsoak, mk/soak.mk) make their certificates with tools/tf_certs.c.
TOOLS_CERTS := tools/tf_certs.c tools/tf_certs.h
$(O)/tools/tfcat $(O)/tools/tfdemo: $(O)/tools/%: tools/%.c $(HEADERS) tls/tcpframe/tls.h $(TLS_LIB) \
  $(O)/libtcpframe.a $(TOOLS_CERTS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(IO_CFLAGS) -Itls -o $@ $< $(if $(filter tfdemo,$*),tools/tf_certs.c) \
	  $(TLS_LIB) $(O)/libtcpframe.a $(TLS_LDLIBS) $(LDLIBS_ALL)
