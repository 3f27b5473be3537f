#!/usr/bin/env bash
# Cross-builds lwsp for Windows with mingw-w64: Lua 5.4 from Debian's source
# package (lua54.dll), then lwsp.dll against it, for x86_64 and i686, into
# build/mingw/<arch>/, with the host module (lwsp/host.dll) and the native
# base provider.  Checks that WSPStartup and luaopen_lwsp are exported
# undecorated, and that the provider DLL exports none of the host's names.  Installs what it needs (deb-src entry, mingw-w64).
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
out=$top/build/mingw
mkdir -p "$out/src"
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo

dpkg-query -W -f='${Status}' mingw-w64 2>/dev/null | grep -q "install ok installed" || {
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends mingw-w64 >/dev/null
}

if [ ! -d "$out/src/lua-5.4" ]; then
  if ! ls "$out"/src/lua5.4_*.orig.tar.gz >/dev/null 2>&1; then
    if ! grep -rqs "deb-src\|Types:.*deb-src" /etc/apt/sources.list /etc/apt/sources.list.d/; then
      printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' |
        $sudo tee /etc/apt/sources.list.d/lwsp-deb-src.sources >/dev/null
      $sudo apt-get update -qq
    fi
    (cd "$out/src" && apt-get source --download-only lua5.4 >/dev/null 2>&1)
  fi
  (cd "$out/src" && rm -rf lua-5.4 && mkdir lua-5.4 && tar -xzf lua5.4_*.orig.tar.gz -C lua-5.4 --strip-components=1 &&
   mkdir -p deb && tar -xJf lua5.4_*.debian.tar.xz -C deb &&
   cd lua-5.4 && for p in 0004-cve-2022-28805.patch 0005-cve-2022-33099.patch; do patch -s -p1 < ../deb/debian/patches/$p; done)
fi

INCS="-Isrc/spi -Isrc/runtime -Isrc/host -Isrc/native"
SRCS=$(tools/sources.sh SPI_SRCS LOG_SRCS VALUES_SRCS RUNTIME_SRCS)   # src/sources.mk
HOST_SRCS=$(tools/sources.sh SPI_SRCS VALUES_SRCS HOST_SRCS TESTKIT_SRCS)
NATIVE_SRCS=$(tools/sources.sh SPI_SRCS LOG_SRCS NATIVE_SRCS NATIVE_WIN_SRCS)
for arch in x86_64 i686; do
  cc=$arch-w64-mingw32-gcc
  dir=$out/$arch
  mkdir -p "$dir"
  # -static-libgcc: i686's 64-bit integer division is libgcc's, which would
  # otherwise be libgcc_s_dw2-1.dll, found nowhere (lua.exe would not start)
  if [ ! -f "$dir/lua54.dll" ] || [ ! -d "$dir/lua-src" ] ||
     [[ $($arch-w64-mingw32-objdump -p "$dir/lua54.dll") == *"DLL Name: libgcc"* ]]; then
    rm -rf "$dir/lua-src" && cp -r "$out/src/lua-5.4" "$dir/lua-src"
    make -s -C "$dir/lua-src/src" mingw CC="$cc -std=gnu99 -static-libgcc" >/dev/null
    cp "$dir/lua-src/src/lua54.dll" "$dir/lua-src/src/lua.exe" "$dir/"
  fi
  for name in lua54.dll lua.exe; do     # what lua.exe needs: the system's DLLs and lua54.dll beside it
    for d in $($arch-w64-mingw32-objdump -p "$dir/$name" | awk '/DLL Name:/ {print tolower($3)}'); do
      case $d in kernel32.dll|msvcrt.dll|lua54.dll) ;; *) echo "$dir/$name imports $d, which is not beside it"; exit 1 ;; esac
    done
  done
  # lwsp's Lua modules beside lwsp.dll: a provider's search path (docs/api.md, Containment)
  rm -rf "$dir/lua" && mkdir -p "$dir/lua" && cp -r lua/wsp "$dir/lua/"
  # shellcheck disable=SC2086
  $cc -std=gnu11 -O2 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -D__USE_MINGW_ANSI_STDIO=1 \
    -I"$dir/lua-src/src" $INCS -shared -o "$dir/lwsp.dll" $SRCS src/runtime/lwsp.def "$dir/lua54.dll" -lws2_32 -luser32 \
    -static-libgcc -Wl,--enable-stdcall-fixup
  # the host module (require "lwsp.host"): its .def's aliases name the stdcall symbols on i686
  mkdir -p "$dir/lwsp"
  if [ "$arch" = i686 ]; then
    sed 's/= lwsp_export_complete$/= lwsp_export_complete@20/; s/= lwsp_export_enum_protocols$/= lwsp_export_enum_protocols@16/' \
      src/host/lwsp_host.def >"$dir/lwsp_host.def"
  else cp src/host/lwsp_host.def "$dir/lwsp_host.def"; fi
  # shellcheck disable=SC2086
  $cc -std=gnu11 -O2 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -D__USE_MINGW_ANSI_STDIO=1 -DLWSP_HOST_MODULE \
    -I"$dir/lua-src/src" $INCS -shared -o "$dir/lwsp/host.dll" $HOST_SRCS "$dir/lwsp_host.def" "$dir/lua54.dll" \
    -lws2_32 -luser32 -static-libgcc -Wl,--enable-stdcall-fixup
  # the native base provider over Winsock
  # shellcheck disable=SC2086
  $cc -std=gnu11 -O2 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -D__USE_MINGW_ANSI_STDIO=1 \
    -I"$dir/lua-src/src" $INCS -shared -o "$dir/lwsp_native.dll" $NATIVE_SRCS \
    src/native/lwsp_native.def -lws2_32 -static-libgcc -Wl,--enable-stdcall-fixup
  for dll in lwsp.dll:WSPStartup:luaopen_lwsp lwsp/host.dll:luaopen_lwsp_host:WPUCompleteOverlappedRequest:WSCEnumProtocols \
             lwsp_native.dll:WSPStartup; do
    name=${dll%%:*}
    exports=$($arch-w64-mingw32-objdump -p "$dir/$name" | awk '/\[Ordinal\/Name Pointer\] Table/ {t=1; next} t && NF==0 {t=0} t {print $NF}')
    for sym in $(echo "${dll#*:}" | tr ':' ' '); do
      echo "$exports" | grep -qx "$sym" || { echo "$name ($arch) does not export $sym undecorated"; echo "$exports"; exit 1; }
    done
    # the provider DLL carries the runtime only: ws2_32's names are the host's (spec/30-layout_spec.lua)
    if [ "$name" != lwsp/host.dll ] && echo "$exports" | grep -q 'WPUCompleteOverlappedRequest\|WSCEnumProtocols\|host'; then
      echo "$name ($arch) exports a name of the host's"; echo "$exports"; exit 1
    fi
    echo "built $dir/$name (exports: $(echo $exports | tr '\n' ' '))"
  done
done
# the provider tree as it ships: Lua linked in, its modules beside it
SRCS="$SRCS" NATIVE_SRCS="$NATIVE_SRCS" INCS="$INCS" bash tools/mingw-provider.sh
