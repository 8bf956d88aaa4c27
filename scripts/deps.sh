#!/usr/bin/env bash
# Install the Debian 12 packages tcpframe needs, only those that are missing (idempotent).
#   deps.sh build   compiler, make and OpenSSL's headers (libssl-dev: tfcat's TLS): enough for
#                   `make` and `make run`
#   deps.sh check   everything `make check` uses: cmocka, GoogleTest (tests/cpp), the openssl CLI
#                   (tests/tu_tls.c: certificates; s_server / s_client), clang + libFuzzer
#                   runtime, Frama-C + provers, cmake (install-test: the CMake package), groff +
#                   man-db (the man pages)
#   deps.sh bench   what `make bench` adds: ZeroMQ (libzmq3-dev, found with pkg-config) for tfbench
set -euo pipefail
group=${1:-check}
pkgs=(gcc make libc6-dev libssl-dev)
if [ "$group" = check ]; then
  pkgs+=(openssl python3 libcmocka-dev libgtest-dev pkg-config g++ cmake groff-base man-db clang libclang-rt-14-dev llvm frama-c-base why3 z3 cvc4 cvc5)
fi
if [ "$group" = bench ]; then
  pkgs+=(pkg-config libzmq3-dev)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "deps: installing missing packages: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO=sudo; else
    echo "deps: not root and no sudo; install these yourself: ${missing[*]}" >&2; exit 1; fi
else SUDO=; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
