# mk/cpp.mk -- the C++20 layers (include/tcpframe/tcpframe.hpp, uniflow.hpp; issue 23); -included
# by the top Makefile.
#
#   make cpp-tests       build the GoogleTest suites tests/cpp/test_*.cpp of this variant
#                        (build/$(V)/tests/cpp/), with g++ -std=c++20 -Wall -Wextra -Werror
#   make cpp-test-run    run them; each records build/results/$(V)-cpp-<suite> (run-test.sh)
#   make check-cpp       the suites plain, ASan+UBSan and TSan, then cpp-clang (part of `make check`)
#   make cpp-clang       clang++ -std=c++20 -Wall -Wextra -Werror -fsyntax-only of both headers, the
#                        suites and the C++ examples; records build/results/cpp-clang
#   make install         also installs the two .hpp headers (install-cpp)
#
# The suites link libtcpframe.a and Debian's libgtest-dev (scripts/deps.sh check).

CXX      ?= g++
CLANGXX  ?= clang++
CPP_HDRS := $(wildcard include/tcpframe/*.hpp)
CXXFLAGS_ALL = -std=c++20 $(OPT_$(V)) -g -Wall -Wextra -Werror -Iinclude -Itests/cpp $(SAN) -pthread $(CXXFLAGS)

CPP_TEST_SRC := $(sort $(wildcard tests/cpp/test_*.cpp))
CPP_TESTS    := $(CPP_TEST_SRC:tests/cpp/%.cpp=%)

.PHONY: cpp-tests cpp-test-run check-cpp cpp-clang install-cpp

$(O)/tests/cpp/%: tests/cpp/%.cpp $(CPP_HDRS) tests/cpp/tu_cpp.hpp $(HEADERS) $(O)/libtcpframe.a
	@mkdir -p $(@D)
	$(CXX) $(CXXFLAGS_ALL) -o $@ $< $(O)/libtcpframe.a -lgtest -lgtest_main $(LDLIBS_ALL)

cpp-tests: $(addprefix $(O)/tests/cpp/,$(CPP_TESTS))

cpp-test-run: cpp-tests
	@mkdir -p build/results
	@fail=0; for t in $(CPP_TESTS); do \
	  scripts/run-test.sh $(V) $(O)/tests/cpp/$$t build/results/$(V)-cpp-$$t || fail=1; \
	done; exit $$fail

check-cpp:
	@status=0; for v in plain asan tsan; do \
	  $(MAKE) --no-print-directory V=$$v cpp-test-run || status=1; done; \
	$(MAKE) --no-print-directory cpp-clang || status=1; exit $$status

cpp-clang:
	@mkdir -p build/results
	@pass=0 fail=0; for f in $(CPP_HDRS) $(CPP_TEST_SRC) $(wildcard examples/*_cxx.cpp); do \
	  if $(CLANGXX) -std=c++20 -Wall -Wextra -Werror -Iinclude -Itests/cpp -fsyntax-only -x c++ $$f \
	     >>build/results/cpp-clang.log 2>&1; then pass=$$((pass + 1)); \
	  else fail=$$((fail + 1)); echo "cpp-clang: $$f does not compile with $(CLANGXX)"; fi; \
	done; echo "$$pass $$fail" >build/results/cpp-clang; \
	echo "cpp-clang: $$pass compiled, $$fail failed"; [ $$fail -eq 0 ]

install: install-cpp
install-cpp:
	install -d $(DESTDIR)$(PREFIX)/include/tcpframe
	install -m 644 $(CPP_HDRS) $(DESTDIR)$(PREFIX)/include/tcpframe/

CHECK_EXTRA += check-cpp
