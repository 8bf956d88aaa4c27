# mk/man.mk -- the reference manual, generated from the headers (issue 24, SPEC.md 10.4);
# -included by the top Makefile.
#
#   make man         build/man/man3/<function>.3 for every TF_API function (include/tcpframe/
#                    and the TLS layer's tls/tcpframe/tls.h) and build/man/man7/tcpframe.7 (scripts/gen-man.py; python3). Regenerated when a
#                    header, SPEC.md, README.md or the script changes; nothing generated is
#                    committed.
#   make man-check   every TF_API function has a page, no page is for a function that is gone,
#                    every tf_ name a page mentions exists, groff -ww is silent
#                    (scripts/man-check.sh); records build/results/man-check. Part of make check.
#   make install     also installs the pages in $(MANDIR)/man3 and man7 (install-man).

MANDIR  ?= $(PREFIX)/share/man
MAN_OUT := build/man
MAN_STAMP := $(MAN_OUT)/.stamp

.PHONY: man man-check install-man uninstall-man
install: install-man
uninstall: uninstall-man

man: $(MAN_STAMP)
$(MAN_STAMP): scripts/gen-man.py $(HEADERS) tls/tcpframe/tls.h SPEC.md README.md
	@python3 scripts/gen-man.py --out $(MAN_OUT)
	@touch $@

man-check: $(MAN_STAMP)
	@scripts/man-check.sh $(MAN_OUT) build/results/man-check

install-man: $(MAN_STAMP)
	install -d $(DESTDIR)$(MANDIR)/man3 $(DESTDIR)$(MANDIR)/man7
	install -m 644 $(MAN_OUT)/man3/*.3 $(DESTDIR)$(MANDIR)/man3/
	install -m 644 $(MAN_OUT)/man7/tcpframe.7 $(DESTDIR)$(MANDIR)/man7/

# Every tf_*.3 of MANDIR is ours (the library's prefix), also pages of functions a newer
# version no longer has.
uninstall-man:
	rm -f $(DESTDIR)$(MANDIR)/man3/tf_*.3 $(DESTDIR)$(MANDIR)/man7/tcpframe.7

CHECK_EXTRA += man-check
