# mk/tls.mk -- the TLS 1.3 transport (tls/, OpenSSL 3: SPEC 9.11); included by the top Makefile.
#
#   make tls             build/$(V)/libtcpframe_tls.a: link it with libtcpframe.a and
#                        -lssl -lcrypto (it uses the library's internal transport seam, so it goes
#                        with the static library); the header is tls/tcpframe/tls.h
#
# libtcpframe.a / .so never need OpenSSL: only this archive, tests/test_tls* and tfcat link it.

TLS_SRC    := $(sort $(wildcard tls/*.c))
TLS_OBJ    := $(TLS_SRC:%.c=$(O)/%.o)
TLS_LIB    := $(O)/libtcpframe_tls.a
TLS_LDLIBS := -lssl -lcrypto
TLS_CFLAGS := -Itls -Iio

.PHONY: tls
tls: $(TLS_LIB)

$(O)/tls/%.o: tls/%.c $(O)/tls/%.d
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(LIB_CFLAGS) $(DEPFLAGS) $(IO_CFLAGS) $(TLS_CFLAGS) -c $< -o $@

$(TLS_LIB): $(TLS_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

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
$(O)/tools/tfcat $(O)/tools/tfdemo: $(O)/tools/%: tools/%.c $(HEADERS) tls/tcpframe/tls.h $(TLS_LIB) \
  $(O)/libtcpframe.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(IO_CFLAGS) -Itls -o $@ $< $(TLS_LIB) $(O)/libtcpframe.a $(TLS_LDLIBS) \
	  $(LDLIBS_ALL)
