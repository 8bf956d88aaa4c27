# tcpframe -- plain GNU make, no generator.
#
#   make                 libtcpframe.a + libtcpframe.so (build/plain/)
#   make run             build and run the main job (see README)
#   make check           every test: plain, ASan+UBSan, TSan (io), purity, proof, corpus replay
#   make install PREFIX=/usr/local [DESTDIR=...]
#
# Variants: V=plain (default), V=asan (ASan+UBSan), V=tsan. Objects go to build/$(V)/.
# Module fragments in mk/*.mk add their own targets (verify, fuzz, bench, ...).

V       ?= plain
O       := build/$(V)
CC      ?= cc
AR      ?= ar
PREFIX  ?= /usr/local
VERSION := 0.1.0

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

$(O)/proto/%.o: proto/%.c $(HEADERS) $(wildcard proto/*.h)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(PROTO_CFLAGS) -c $< -o $@

$(O)/io/%.o: io/%.c $(HEADERS) $(wildcard io/*.h)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(IO_CFLAGS) -c $< -o $@

$(O)/libtcpframe.a: $(LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(O)/libtcpframe.so: $(LIB_OBJ)
	$(CC) -shared -Wl,-soname,libtcpframe.so.0 $(SAN) -o $@ $^ $(LDLIBS_ALL)

# Shared test helpers: tests/tu_*.c (one prefix, tu_), compiled once into a small archive.
TU_SRC := $(sort $(wildcard tests/tu_*.c))
TU_OBJ := $(TU_SRC:%.c=$(O)/%.o)

$(O)/tests/tu_%.o: tests/tu_%.c tests/*.h $(HEADERS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(IO_CFLAGS) -Itests -Iio -c $< -o $@

$(O)/tests/libtu.a: $(TU_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

# Every test links the static library, so it sees internal tf__ symbols too.
$(O)/tests/%: tests/%.c tests/*.h $(O)/libtcpframe.a $(O)/tests/libtu.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(IO_CFLAGS) -Itests -Iio -o $@ $< $(O)/tests/libtu.a $(O)/libtcpframe.a -lcmocka $(LDLIBS_ALL)

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

install: lib
	install -d $(DESTDIR)$(PREFIX)/include/tcpframe $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 644 $(HEADERS) $(DESTDIR)$(PREFIX)/include/tcpframe/
	install -m 644 $(O)/libtcpframe.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(O)/libtcpframe.so $(DESTDIR)$(PREFIX)/lib/libtcpframe.so.$(VERSION)
	ln -sf libtcpframe.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libtcpframe.so.0
	ln -sf libtcpframe.so.0 $(DESTDIR)$(PREFIX)/lib/libtcpframe.so
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' scripts/tcpframe.pc.in \
	  > $(DESTDIR)$(PREFIX)/lib/pkgconfig/tcpframe.pc

uninstall:
	rm -rf $(DESTDIR)$(PREFIX)/include/tcpframe $(DESTDIR)$(PREFIX)/lib/pkgconfig/tcpframe.pc
	rm -f $(DESTDIR)$(PREFIX)/lib/libtcpframe.a $(DESTDIR)$(PREFIX)/lib/libtcpframe.so*

clean:
	rm -rf build

distclean: clean

-include $(sort $(wildcard mk/*.mk))
