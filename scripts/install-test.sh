#!/usr/bin/env bash
# install-test.sh RESULTFILE -- the installed package, tested as a user would (SPEC.md 10):
#   1. `make install` into a scratch DESTDIR with PREFIX=/usr/local: the headers, libtcpframe.a,
#      libtcpframe.so.X.Y.Z with its links .so.X (the soname) and .so, tcpframe.pc, the TLS
#      layer (tls.h, libtcpframe_tls.a, tcpframe-tls.pc), tfcat and its man page are where they
#      belong;
#   2. every installed header (tls.h too) compiles alone, as C11 (-pedantic) and as C++11; the
#      C++ layers (tcpframe.hpp, uniflow.hpp) alone as C++20;
#   3. every examples/*.c is built from a directory outside the tree with only
#      `pkg-config --cflags --libs tcpframe` (PKG_CONFIG_SYSROOT_DIR points pkg-config into the
#      DESTDIR): linked against the .so (NEEDED libtcpframe.so.X, loaded from the DESTDIR) and
#      against the .a (`pkg-config --static`; no libtcpframe.so needed at run time), and
#      examples/headers.cpp with c++ (C++11), the examples that use the C++ layers (echo_cxx.cpp)
#      with c++ -std=c++20; examples/tls_*.c with only `pkg-config --cflags --static --libs
#      tcpframe-tls` (OpenSSL's .pc from the system), needing libssl.so.3 and no libtcpframe.so;
#   4. the programs run: custom_transport, headers and echo_cxx (C++ echo self-test) both ways,
#      and the async echo_server with the sync client (a shared server with a static client and
#      the other way round), and tls_ctx (the TLS layer without certificates);
#   5. the same examples built as a CMake project (examples/CMakeLists.txt) with only
#      find_package(tcpframe CONFIG REQUIRED) and CMAKE_PREFIX_PATH pointed into the DESTDIR:
#      tcpframe::tcpframe (NEEDED libtcpframe.so.X) and tcpframe::tcpframe_static (no
#      libtcpframe at run time), run as in 4, and tls_ctx with tcpframe::tls (the static
#      archives and OpenSSL); a request for the next major is refused, COMPONENTS tls is
#      accepted, an unknown component refused; with the TLS files removed (make uninstall-tls)
#      the package is still found, without tcpframe::tls, and COMPONENTS tls is refused
#      (then make install-tls puts them back for 7);
#   6. the man pages: one per TF_API function and tcpframe(7) installed, `man -l` renders some;
#   7. `make uninstall` leaves no file behind.
# Each numbered step's checks count as passed or failed in RESULTFILE ("passed failed").
set -u
out=$1
mkdir -p "$(dirname "$out")"
out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out") # the steps below change directory
cd "$(dirname "$0")/.."
top=$PWD
tmp=$(mktemp -d); trap 'rm -rf "$tmp"; [ -n "${srv:-}" ] && kill "$srv" 2>/dev/null' EXIT
dest=$tmp/dest prefix=/usr/local
log=$out.log
: >"$log"
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "install-test: FAILED: $*" | tee -a "$log"; }
run() { echo "+ $*" >>"$log"; "$@" >>"$log" 2>&1; }

major=$(sed -n 's/^#define TF_VERSION_MAJOR \([0-9]*\)$/\1/p' include/tcpframe/version.h)
minor=$(sed -n 's/^#define TF_VERSION_MINOR \([0-9]*\)$/\1/p' include/tcpframe/version.h)
patch=$(sed -n 's/^#define TF_VERSION_PATCH \([0-9]*\)$/\1/p' include/tcpframe/version.h)
version=$major.$minor.$patch

# 1. Install.
if run make --no-print-directory V=plain install DESTDIR="$dest" PREFIX=$prefix; then ok
else bad "make install DESTDIR=$dest PREFIX=$prefix"; fi
lib=$dest$prefix/lib inc=$dest$prefix/include/tcpframe
for h in include/tcpframe/*.h include/tcpframe/*.hpp; do
  [ -f "$h" ] || continue
  cmp -s "$h" "$inc/$(basename "$h")" && ok || bad "header $(basename "$h") not installed"
done
cmp -s tls/tcpframe/tls.h "$inc/tls.h" && ok || bad "header tls.h not installed"
[ -f "$lib/libtcpframe.a" ] && ok || bad "libtcpframe.a not installed"
[ -f "$lib/libtcpframe_tls.a" ] && ok || bad "libtcpframe_tls.a not installed"
[ -f "$lib/libtcpframe.so.$version" ] && ok || bad "libtcpframe.so.$version not installed"
[ "$(readlink "$lib/libtcpframe.so.$major")" = "libtcpframe.so.$version" ] && ok ||
  bad "libtcpframe.so.$major is not a link to libtcpframe.so.$version"
[ "$(readlink "$lib/libtcpframe.so")" = "libtcpframe.so.$major" ] && ok ||
  bad "libtcpframe.so is not a link to libtcpframe.so.$major"
[ -f "$lib/pkgconfig/tcpframe.pc" ] && ok || bad "tcpframe.pc not installed"
[ -f "$lib/pkgconfig/tcpframe-tls.pc" ] && ok || bad "tcpframe-tls.pc not installed"
for f in tcpframeConfig.cmake tcpframeConfigVersion.cmake; do
  [ -f "$lib/cmake/tcpframe/$f" ] && ok || bad "lib/cmake/tcpframe/$f not installed"
done
if [ -f tools/tfcat.1 ]; then
  [ -x "$dest$prefix/bin/tfcat" ] && ok || bad "bin/tfcat not installed"
  [ -f "$dest$prefix/share/man/man1/tfcat.1" ] && ok || bad "tfcat.1 not installed"
  run "$dest$prefix/bin/tfcat" --help && ok || bad "the installed tfcat --help fails"
fi

syspc=$(pkg-config --variable pc_path pkg-config) # OpenSSL's .pc files, for tcpframe-tls
export PKG_CONFIG_PATH=$lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=$dest PKG_CONFIG_LIBDIR=$lib/pkgconfig
[ "$(pkg-config --modversion tcpframe 2>>"$log")" = "$version" ] && ok ||
  bad "pkg-config --modversion tcpframe is not $version"
cflags=$(pkg-config --cflags tcpframe) libs=$(pkg-config --libs tcpframe)
slibs=$(pkg-config --static --libs tcpframe | sed 's/-ltcpframe\b/-l:libtcpframe.a/')
echo "cflags: $cflags; libs: $libs; static: $slibs" >>"$log"
case "$cflags $libs" in *"$top"*) bad "pkg-config points into the source tree" ;; *) ok ;; esac
# tcpframe-tls: static only; its Libs name libtcpframe.a, and OpenSSL comes from the system.
tlspc() { PKG_CONFIG_LIBDIR=$lib/pkgconfig:$syspc pkg-config "$@"; }
[ "$(tlspc --modversion tcpframe-tls 2>>"$log")" = "$version" ] && ok ||
  bad "pkg-config --modversion tcpframe-tls is not $version"
tlsflags=$(tlspc --cflags --static --libs tcpframe-tls 2>>"$log")
echo "tcpframe-tls --static: $tlsflags" >>"$log"
case "$tlsflags" in *"$top"*) bad "pkg-config tcpframe-tls points into the source tree" ;; *) ok ;; esac
case " $tlsflags " in *" -ltcpframe "*) bad "pkg-config tcpframe-tls names the .so (-ltcpframe)" ;; *) ok ;; esac

# Everything from here is built outside the tree, with only the installed files.
mkdir -p "$tmp/work/shared" "$tmp/work/static"
cp examples/*.c examples/*.cpp "$tmp/work/"
mkdir -p "$tmp/work/tls"
mv "$tmp/work"/tls_*.c "$tmp/work/tls/" # the TLS layer's: built with tcpframe-tls (3)
cd "$tmp/work"

# 2. Each header alone, as C and as C++.
for h in "$inc"/*.h; do
  hn=tcpframe/$(basename "$h")
  printf '#include <%s>\ntypedef int tf_install_test_nonempty;\n' "$hn" >"$tmp/one.c"
  run ${CC:-cc} -std=c11 -pedantic -Wall -Wextra -Werror $cflags -fsyntax-only "$tmp/one.c" && ok ||
    bad "$hn does not compile alone as C11"
  run ${CXX:-c++} -std=c++11 -pedantic -Wall -Wextra -Werror $cflags -fsyntax-only -x c++ "$tmp/one.c" &&
    ok || bad "$hn does not compile alone as C++11"
done

for h in "$inc"/*.hpp; do
  [ -f "$h" ] || continue
  hn=tcpframe/$(basename "$h")
  printf '#include <%s>\nint tf_install_test_nonempty;\n' "$hn" >"$tmp/one.cpp"
  run ${CXX:-c++} -std=c++20 -Wall -Wextra -Werror $cflags -fsyntax-only "$tmp/one.cpp" && ok ||
    bad "$hn does not compile alone as C++20"
done

# 3. The examples, shared and static.
progs=()
for src in *.c; do
  p=${src%.c}; progs+=("$p")
  run ${CC:-cc} -std=c11 -O2 -Wall -Wextra -Werror $cflags "$src" -o "shared/$p" $libs && ok ||
    bad "examples/$src does not build against the .so"
  run ${CC:-cc} -std=c11 -O2 -Wall -Wextra -Werror $cflags "$src" -o "static/$p" $slibs && ok ||
    bad "examples/$src does not build against the .a"
done
for src in *.cpp; do
  p=${src%.cpp}; progs+=("$p")
  std=c++11   # the C headers promise C++11; the C++ layers need C++20
  grep -q '#include <tcpframe/[a-z]*\.hpp>' "$src" && std=c++20
  run ${CXX:-c++} -std=$std -O2 -Wall -Wextra -Werror $cflags "$src" -o "shared/$p" $libs && ok ||
    bad "examples/$src does not build with c++ -std=$std against the .so"
  run ${CXX:-c++} -std=$std -O2 -Wall -Wextra -Werror $cflags "$src" -o "static/$p" $slibs && ok ||
    bad "examples/$src does not build with c++ -std=$std against the .a"
done
for p in "${progs[@]}"; do
  [ -x "shared/$p" ] && [ -x "static/$p" ] || continue
  readelf -d "shared/$p" | grep -q "NEEDED.*\[libtcpframe.so.$major\]" && ok ||
    bad "shared/$p does not need libtcpframe.so.$major"
  readelf -d "static/$p" | grep -q "NEEDED.*libtcpframe" && bad "static/$p needs libtcpframe.so" || ok
done
# The TLS layer: the static archives, OpenSSL shared.
tlsprogs=()
for src in tls/*.c; do
  [ -f "$src" ] || continue
  p=${src%.c}; tlsprogs+=("$p")
  run ${CC:-cc} -std=c11 -O2 -Wall -Wextra -Werror "$src" -o "$p" $tlsflags && ok ||
    bad "examples/${src#tls/} does not build with pkg-config --static tcpframe-tls"
  [ -x "$p" ] || continue
  readelf -d "$p" | grep -q "NEEDED.*libtcpframe" && bad "$p needs libtcpframe.so" || ok
  readelf -d "$p" | grep -q "NEEDED.*\[libssl.so" && ok || bad "$p does not need libssl.so"
done
[ ${#tlsprogs[@]} -gt 0 ] && ok || bad "no examples/tls_*.c"

# 4. Run them. The shared builds find the library in the DESTDIR only.
export LD_LIBRARY_PATH=$lib
if [ -x shared/custom_transport ]; then
  LD_DEBUG=libs shared/custom_transport >>"$log" 2>"$tmp/ld.txt" && ok || bad "shared custom_transport fails"
  grep -q "calling init: $lib/libtcpframe.so.$major" "$tmp/ld.txt" && ok ||
    bad "shared custom_transport did not load $lib/libtcpframe.so.$major"
fi
for kind in shared static; do
  for p in custom_transport headers echo_cxx; do
    [ -x "$kind/$p" ] || continue
    run timeout 60 "$kind/$p" && ok || bad "$kind/$p fails"
  done
done
# echo_server (async) and client (sync): each build of the server with the other's client.
echo_pair() { # SERVER CLIENT: the server serves the client twice, then exits 0
  [ -x "$1" ] && [ -x "$2" ] || { bad "$1 or $2 not built"; return; }
  rm -f srv.out
  timeout 60 "$1" 127.0.0.1:0 2 >srv.out 2>>"$log" &
  srv=$!
  local addr=
  for _ in $(seq 100); do
    addr=$(sed -n 's/^listening on //p' srv.out 2>/dev/null)
    [ -n "$addr" ] && break
    sleep 0.1
  done
  if [ -z "$addr" ]; then bad "$1 did not start"; kill $srv; wait $srv; srv=; return; fi
  local got
  got=$(timeout 30 "$2" "$addr" hello "" "framed world" 2>>"$log")
  [ "$got" = "$(printf 'hello\n\nframed world')" ] && ok || bad "$2 against $1: '$got'"
  run timeout 30 "$2" "$addr" again && ok || bad "$2 (second) against $1"
  wait $srv && ok || bad "$1 did not exit 0 after its 2 clients"
  srv=
}
echo_pair shared/echo_server static/client
echo_pair static/echo_server shared/client
for p in "${tlsprogs[@]}"; do
  [ -x "$p" ] && { run timeout 60 "$p" && ok || bad "$p fails"; }
done

# 5. CMake: find_package(tcpframe CONFIG REQUIRED), the shared and the static target.
if command -v cmake >/dev/null; then
  cp "$top/examples/CMakeLists.txt" tls/tls_*.c .
  for kind in shared static; do
    st=OFF; [ $kind = static ] && st=ON
    if run cmake -S . -B "cmake-$kind" -DCMAKE_PREFIX_PATH="$dest$prefix" -DTCPFRAME_STATIC=$st \
         -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_FLAGS="-Wall -Wextra -Werror" \
         -DCMAKE_CXX_FLAGS="-Wall -Wextra -Werror" &&
       run cmake --build "cmake-$kind" -- VERBOSE=1; then ok
    else bad "examples/ do not build with CMake (tcpframe::tcpframe$([ $kind = static ] && echo _static))"; fi
    grep -q "$dest$prefix/include" "cmake-$kind/CMakeFiles/client.dir/flags.make" 2>>"$log" && ok ||
      bad "cmake-$kind: the include directory of the imported target is not the installed one"
  done
  for p in client echo_server custom_transport headers echo_cxx; do
    [ -x "cmake-shared/$p" ] && [ -x "cmake-static/$p" ] || { bad "cmake: $p not built"; continue; }
    readelf -d "cmake-shared/$p" | grep -q "NEEDED.*\[libtcpframe.so.$major\]" && ok ||
      bad "cmake-shared/$p does not need libtcpframe.so.$major"
    readelf -d "cmake-static/$p" | grep -q "NEEDED.*libtcpframe" && bad "cmake-static/$p needs libtcpframe.so" || ok
  done
  for kind in cmake-shared cmake-static; do
    for p in custom_transport headers echo_cxx; do
      [ -x "$kind/$p" ] && { run timeout 60 "$kind/$p" && ok || bad "$kind/$p fails"; }
    done
  done
  # tcpframe::tls: the static archives and OpenSSL, whichever TCPFRAME_STATIC.
  for kind in cmake-shared cmake-static; do
    for p in "${tlsprogs[@]}"; do
      p=$kind/${p#tls/}
      [ -x "$p" ] || { bad "cmake: $p not built (tcpframe::tls)"; continue; }
      readelf -d "$p" | grep -q "NEEDED.*libtcpframe" && bad "$p needs libtcpframe.so" || ok
      readelf -d "$p" | grep -q "NEEDED.*\[libssl.so" && ok || bad "$p does not need libssl.so"
      run timeout 60 "$p" && ok || bad "$p fails"
    done
  done
  echo_pair cmake-shared/echo_server cmake-static/client
  echo_pair cmake-static/echo_server shared/client
  # SameMajorVersion: the next major is refused, this major's lower minor accepted; the tls
  # component is there, no other; without the TLS files the package stays usable.
  mkdir -p vcheck
  vcheck() { # "FIND_PACKAGE_ARGS:found|not[:tls|notls]" (tls: tcpframe::tls defined)
    local args=${1%%:*} rest=${1#*:}
    printf 'cmake_minimum_required(VERSION 3.13)\nproject(v C)\nfind_package(tcpframe %s CONFIG)\nif(TARGET tcpframe::tls)\n  set(t tls)\nelse()\n  set(t notls)\nendif()\nmessage(STATUS "tcpframe_FOUND=${tcpframe_FOUND}:${t}")\n' \
      "$args" >vcheck/CMakeLists.txt
    rm -rf vcheck/b
    local found
    found=$(cmake -S vcheck -B vcheck/b -DCMAKE_PREFIX_PATH="$dest$prefix" 2>>"$log" | sed -n 's/.*tcpframe_FOUND=//p')
    case "${rest%%:*}:$found" in
      found:1:* | not:0:*) [ "$rest" = "${rest%%:*}" ] || [ "${rest#*:}" = "${found#*:}" ] ;;
      *) false ;;
    esac && ok || bad "find_package(tcpframe $args): tcpframe_FOUND:tcpframe::tls is '$found', not '$rest'"
  }
  vcheck "$major.0:found:tls"
  vcheck "$((major + 1)):not"
  vcheck "$major.0 COMPONENTS tls:found:tls"
  vcheck "$major.0 COMPONENTS nosuch:not"
  cd "$top"
  run make --no-print-directory V=plain uninstall-tls DESTDIR="$dest" PREFIX=$prefix && ok ||
    bad "make uninstall-tls"
  cd "$tmp/work"
  vcheck "$major.0:found:notls"
  vcheck "$major.0 COMPONENTS tls:not"
  cd "$top" # back, so that 7 sees `make uninstall` remove the TLS files too
  run make --no-print-directory V=plain install-tls DESTDIR="$dest" PREFIX=$prefix && ok ||
    bad "make install-tls"
  [ -f "$inc/tls.h" ] && ok || bad "make install-tls did not put tls.h back"
  cd "$tmp/work"
else
  bad "cmake not found (scripts/deps.sh check installs it)"
fi

# 6. Man pages: tcpframe(7) and one page per TF_API function, rendered by man -l.
man3=$dest$prefix/share/man/man3 man7=$dest$prefix/share/man/man7
[ -f "$man7/tcpframe.7" ] && ok || bad "share/man/man7/tcpframe.7 not installed"
nman=$(ls "$man3"/tf_*.3 2>/dev/null | wc -l)
ndecl=$(cat "$top"/include/tcpframe/*.h "$top"/tls/tcpframe/tls.h | grep -c '^TF_API ')
[ "$nman" -ge "$ndecl" ] && ok || bad "$nman pages in share/man/man3 for $ndecl TF_API declarations"
for pg in "$man7/tcpframe.7" "$man3/tf_sync_connect.3" "$man3/tf_rx_advance.3" "$man3/tf_strerror.3" \
  "$man3/tf_tls_ctx_new.3"; do
  if [ -f "$pg" ] && MANWIDTH=80 man -l "$pg" >"$tmp/man.txt" 2>>"$log" &&
     grep -q "$(basename "${pg%.*}")" "$tmp/man.txt"; then ok
  else bad "man -l $(basename "$pg") does not render"; fi
done

# 7. Uninstall.
cd "$top"
if run make --no-print-directory V=plain uninstall DESTDIR="$dest" PREFIX=$prefix; then ok
else bad "make uninstall"; fi
left=$(find "$dest" -type f -o -type l)
[ -z "$left" ] && ok || bad "make uninstall left: $(echo $left)"

echo "$pass $fail" >"$out"
if [ $fail -eq 0 ]; then
  echo "install-test: OK: $pass checks (install, headers alone as C and C++, examples shared and static with pkg-config and CMake, the TLS layer, runs, man pages, uninstall)"
else
  echo "install-test: $fail of $((pass + fail)) checks FAILED (log $log)"
fi
[ $fail -eq 0 ]
