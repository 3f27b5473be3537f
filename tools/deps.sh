#!/usr/bin/env bash
# Installs the Debian packages lwsp needs, and only those that are missing.
#   tools/deps.sh run    - enough to build lwsp and run the demo
#   tools/deps.sh test   - also busted, luacheck, ldoc, luarocks, valgrind, mingw-w64, clang and chromium (the trace page)
set -euo pipefail
profile=${1:-test}
pkgs=(gcc make lua5.4 liblua5.4-dev python3 curl)
# (curl for make demo; curl, wget, git, nodejs, ssh and psql: spec/30-preload_spec.lua runs them through the chain)
if [ "$profile" = test ]; then
  pkgs+=(lua-busted lua-check lua-ldoc luarocks valgrind mingw-w64 binutils clang libclang-rt-14-dev chromium fonts-liberation)
  pkgs+=(wget git nodejs proxychains4 microsocks)
  # (ssh to a private sshd and psql to a private PostgreSQL, through the chain: spec/30-preload_spec.lua)
  pkgs+=(openssh-client openssh-server postgresql)
fi
need=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
# The i686 provider under Wine (make wine32): Debian's 32-bit Wine, which
# needs the i386 architecture (and brings i386 copies of the libraries it uses,
# at the same versions as the amd64 ones: apt may upgrade those to match).
if [ "$profile" = test ] && ! dpkg-query -W -f='${Status}' wine32:i386 2>/dev/null | grep -q "install ok installed"; then
  if ! dpkg --print-foreign-architectures | grep -qx i386; then
    if [ "$(id -u)" = 0 ]; then dpkg --add-architecture i386; else sudo dpkg --add-architecture i386; fi
  fi
  need+=(wine32:i386)
fi
if ((${#need[@]})); then
  echo "lwsp: installing ${need[*]}"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
