# mk/run.mk -- the tools; -included by the top Makefile.
#
#   make                 also builds build/bin/tfcat (tools/tfcat.c: netcat for framed messages)
#   make run             installs the compiler if missing (deps), builds everything and runs
#                        build/plain/tools/tfdemo: the loopback TCP demo (tools/tfdemo.c), and
#                        one exchange over mutual TLS (certificates made by the demo itself)
#   make run RUN_ARGS="-r 50"    options passed to the demo (tfdemo -h)
#   make install         also installs bin/tfcat and share/man/man1/tfcat.1 (install-tools)
#   make check           also runs tests/test_tfcat.sh against build/bin/tfcat (check-tfcat) and
#                        an ASan+UBSan build of it (check-tfcat-asan)
#
# The demo and tfcat link libtcpframe.a, libtcpframe_tls.a and OpenSSL, no cmocka (the demo's
# TLS exchange, tfcat's --tls-* options; mk/tls.mk has their rule): `make run` works on a box
# with nothing but gcc, make, libc6-dev and libssl-dev (scripts/deps.sh build; no openssl CLI:
# the demo makes its certificates with the library). Both are always the optimised plain build.

TFDEMO   := build/plain/tools/tfdemo
TFCAT    := build/bin/tfcat
RUN_ARGS ?=
MANDIR   ?= $(PREFIX)/share/man

.PHONY: install-tools uninstall-tools check-tfcat check-tfcat-asan FORCE

all: $(TFCAT)
install: install-tools
uninstall: uninstall-tools

run: deps
	@$(MAKE) --no-print-directory V=plain lib $(TFCAT) $(TFDEMO)
	$(TFDEMO) $(RUN_ARGS)

$(O)/tools/%: tools/%.c $(HEADERS) $(O)/libtcpframe.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(IO_CFLAGS) -o $@ $< \
	  $(O)/libtcpframe.a $(LDLIBS_ALL)

ifeq ($(V),plain)
$(TFCAT): $(O)/tools/tfcat
	@mkdir -p $(@D)
	cp $< $@
else
$(TFCAT): FORCE
	@$(MAKE) --no-print-directory V=plain $(TFCAT)
endif
FORCE:

install-tools: $(TFCAT)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(MANDIR)/man1
	install -m 755 $(TFCAT) $(DESTDIR)$(PREFIX)/bin/tfcat
	install -m 644 tools/tfcat.1 $(DESTDIR)$(MANDIR)/man1/tfcat.1

uninstall-tools:
	rm -f $(DESTDIR)$(PREFIX)/bin/tfcat $(DESTDIR)$(MANDIR)/man1/tfcat.1

# End-to-end tests of tfcat over loopback (a shell suite; it prints cmocka's summary lines so
# that scripts/run-test.sh records its counts in build/results like any test binary).
# check-tfcat-asan: the same suite against an ASan+UBSan build of tfcat.
check-tfcat: $(TFCAT)
	@mkdir -p build/results
	@TFCAT=$(TFCAT) scripts/run-test.sh plain tests/test_tfcat.sh build/results/plain-test_tfcat
check-tfcat-asan:
	@$(MAKE) --no-print-directory V=asan build/asan/tools/tfcat
	@mkdir -p build/results
	@TFCAT=build/asan/tools/tfcat scripts/run-test.sh asan tests/test_tfcat.sh \
	  build/results/asan-test_tfcat
CHECK_EXTRA += check-tfcat check-tfcat-asan
