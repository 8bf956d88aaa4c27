# tcpframe -- plain GNU make, no generator.
#
#   make                 libtcpframe.a + libtcpframe.so (build/plain/)
#   make run             build and run the main job (see README)
#   make check           every test: plain, ASan+UBSan, TSan (io), purity, proof, corpus replay
#   make install PREFIX=/usr/local [DESTDIR=...]
#   make abi-check       the .so exports exactly the TF_API functions; struct sizes (mk/abi.mk)
#   make install-test    install into a scratch DESTDIR, build examples/ against it (mk/abi.mk)
#
# Variants: V=plain (default), V=asan (ASan+UBSan), V=tsan. Objects go to build/$(V)/.
# Module fragments in mk/*.mk add their own targets (verify, fuzz, bench, ...).

V       ?= plain
O       := build/$(V)
CC      ?= cc
AR      ?= ar
PREFIX  ?= /usr/local
# The version lives in include/tcpframe/version.h only; the soname follows its major.
vpart = $(shell sed -n 's/^\#define TF_VERSION_$(1) \([0-9]*\)$$/\1/p' include/tcpframe/version.h)
VERSION_MAJOR := $(call vpart,MAJOR)
VERSION := $(VERSION_MAJOR).$(call vpart,MINOR).$(call vpart,PATCH)
SONAME  := libtcpframe.so.$(VERSION_MAJOR)
LIBDIR  ?= $(PREFIX)/lib

WARN := -Wall -Wextra -Wconversion -Wsign-conversion -Wshadow -Wstrict-prototypes \
        -Wmissing-prototypes -Wpointer-arith -Wcast-qual -Wundef -Wvla -Wformat=2
ifeq ($(CI),true)
WARN += -Werror
endif

SAN_plain :=
SAN_asan  := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
SAN_tsan  := -fsanitize=thread
OPT_plain := -O2
OPT_asan  := -O1
OPT_tsan  := -O1
SAN := $(SAN_$(V))

CFLAGS_ALL := -std=c11 $(OPT_$(V)) -g $(WARN) -Iinclude -fPIC $(SAN) $(CFLAGS)
# proto/ is plain C11 using nothing from libc but the mem* functions, no _GNU_SOURCE. It is
# compiled hosted so that GCC may turn the proved copy loop of rx.c into a memmove call
# (-ffreestanding kept a byte-at-a-time loop); scripts/purity.sh compiles proto/ hosted at -O2
# and checks that its objects need nothing else.
PROTO_CFLAGS := -Iproto
IO_CFLAGS    := -D_GNU_SOURCE -pthread
# Library objects: only TF_API declarations are visible outside the .so (include/tcpframe/
# export.h); the version script says the same at link time. Hidden symbols still link statically,
# so the tests reach the tf__ internals through libtcpframe.a. -MMD -MP: each object's .d file
# lists the headers it includes (make rebuilds what uses a changed header, nothing else).
LIB_CFLAGS   := -fvisibility=hidden
DEPFLAGS      = -MMD -MP
LIB_MAP      := scripts/tcpframe.map
LDLIBS_ALL   := -pthread $(LDLIBS)

PROTO_SRC := $(sort $(wildcard proto/*.c))
IO_SRC    := $(sort $(wildcard io/*.c))
LIB_OBJ   := $(PROTO_SRC:%.c=$(O)/%.o) $(IO_SRC:%.c=$(O)/%.o)
HEADERS   := $(wildcard include/tcpframe/*.h)

TEST_SRC  := $(sort $(wildcard tests/test_*.c))
TESTS     := $(TEST_SRC:tests/%.c=%)
# Tests that also run under TSan (threaded io tests); fragments append to it.
TSAN_TESTS ?=
# Extra steps of `make check` after the unit tests; fragments append to it.
CHECK_EXTRA :=

.PHONY: all lib deps deps-check run check test-run purity install uninstall clean distclean
.DEFAULT_GOAL := all

all: lib
lib: $(O)/libtcpframe.a $(O)/libtcpframe.so

# An object whose .d file is missing (first build, or built before the .d files existed) is
# rebuilt: the empty rules for $(DEP_FILES) at the end make a missing .d count as new.
$(O)/proto/%.o: proto/%.c $(O)/proto/%.d
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(LIB_CFLAGS) $(DEPFLAGS) $(PROTO_CFLAGS) -c $< -o $@

$(O)/io/%.o: io/%.c $(O)/io/%.d
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(LIB_CFLAGS) $(DEPFLAGS) $(IO_CFLAGS) -c $< -o $@

$(O)/libtcpframe.a: $(LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(O)/libtcpframe.so: $(LIB_OBJ) $(LIB_MAP)
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=$(LIB_MAP) $(SAN) -o $@ \
	  $(LIB_OBJ) $(LDLIBS_ALL)

# Shared test helpers: tests/tu_*.c (one prefix, tu_), compiled once into a small archive.
TU_SRC := $(sort $(wildcard tests/tu_*.c))
TU_OBJ := $(TU_SRC:%.c=$(O)/%.o)

$(O)/tests/tu_%.o: tests/tu_%.c $(O)/tests/tu_%.d
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(DEPFLAGS) $(IO_CFLAGS) -Itests -Iio -c $< -o $@

$(O)/tests/libtu.a: $(TU_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

# Every test links the static library, so it sees internal tf__ symbols too.
# (Compiled and linked in one step: gcc writes the dependencies to $@.d.)
$(O)/tests/%: tests/%.c $(O)/tests/%.d $(O)/libtcpframe.a $(O)/tests/libtu.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(DEPFLAGS) $(IO_CFLAGS) -Itests -Iio -o $@ $< $(O)/tests/libtu.a $(O)/libtcpframe.a -lcmocka $(LDLIBS_ALL)

# Install missing Debian packages (idempotent; a no-op when everything is there).
deps:
	@scripts/deps.sh build
deps-check:
	@scripts/deps.sh check

# Run the listed tests of this variant; each writes build/results/<variant>-<test>.
test-run: $(addprefix $(O)/tests/,$(TESTS))
	@mkdir -p build/results
	@fail=0; for t in $(TESTS); do \
	  scripts/run-test.sh $(V) $(O)/tests/$$t build/results/$(V)-$$t || fail=1; \
	done; exit $$fail

# proto/ must stay pure: plain objects may reference only the mem* functions.
purity:
	@scripts/purity.sh

check: deps-check
	@rm -rf build/results
	@status=0; \
	$(MAKE) --no-print-directory V=plain test-run || status=1; \
	$(MAKE) --no-print-directory V=asan test-run || status=1; \
	if [ -n "$(strip $(TSAN_TESTS))" ]; then \
	  $(MAKE) --no-print-directory V=tsan TESTS="$(TSAN_TESTS)" test-run || status=1; fi; \
	$(MAKE) --no-print-directory purity || status=1; \
	for step in $(CHECK_EXTRA); do $(MAKE) --no-print-directory $$step || status=1; done; \
	scripts/summary.sh build/results || status=1; \
	exit $$status

# Headers, libtcpframe.a, libtcpframe.so.X.Y.Z with its soname link (.so.X, what programs load)
# and its development link (.so, what -ltcpframe finds), tcpframe.pc; mk/run.mk adds tfcat and
# its man page (install-tools), mk/tls.mk the TLS layer (install-tls), mk/cmake.mk the CMake
# package, mk/man.mk the man pages.
install: lib
	install -d $(DESTDIR)$(PREFIX)/include/tcpframe $(DESTDIR)$(LIBDIR)/pkgconfig
	install -m 644 $(HEADERS) $(DESTDIR)$(PREFIX)/include/tcpframe/
	install -m 644 $(O)/libtcpframe.a $(DESTDIR)$(LIBDIR)/
	install -m 755 $(O)/libtcpframe.so $(DESTDIR)$(LIBDIR)/libtcpframe.so.$(VERSION)
	ln -sf libtcpframe.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libtcpframe.so
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' -e 's|@VERSION@|$(VERSION)|g' \
	  scripts/tcpframe.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/tcpframe.pc

uninstall:
	rm -rf $(DESTDIR)$(PREFIX)/include/tcpframe $(DESTDIR)$(LIBDIR)/pkgconfig/tcpframe.pc
	rm -f $(DESTDIR)$(LIBDIR)/libtcpframe.a $(DESTDIR)$(LIBDIR)/libtcpframe.so*

clean:
	rm -rf build

distclean: clean

# The generated header dependencies of this variant's objects and tests. Named as targets (empty
# rules), so that a missing one is not an intermediate file and forces its object's rebuild.
DEP_FILES := $(LIB_OBJ:.o=.d) $(TU_OBJ:.o=.d) $(TESTS:%=$(O)/tests/%.d)
$(DEP_FILES):
-include $(wildcard $(DEP_FILES))

-include $(sort $(wildcard mk/*.mk))
