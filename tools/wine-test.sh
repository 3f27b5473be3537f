#!/usr/bin/env bash
# The busted suite under Wine against the x86_64 Windows build (lwsp.dll and
# lua.exe from tools/mingw-build.sh).  busted's own C modules are built here
# for Windows: LuaFileSystem from Debian's lua-filesystem source package, and
# lwsp's small term.core and system.core (tools/win/).  Specs tagged posix,
# or subprocess are left out (each tag's reason is beside the spec) and
# counted at the end.  bin/lwsp-run specs start the same lua.exe
# ($LWSP_LUA_EXE) through cmd.exe.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
dir=$top/build/mingw/x86_64
mods=$dir/busted
cc=x86_64-w64-mingw32-gcc
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
need=()
for p in wine64 lua-busted; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if ((${#need[@]})); then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
[ -f "$dir/lwsp.dll" ] || bash tools/mingw-build.sh

mkdir -p "$mods/term" "$mods/system"
if [ ! -f "$mods/lfs.dll" ]; then
  src=$top/build/mingw/src
  if ! ls "$src"/lua-filesystem_*.orig.tar.gz >/dev/null 2>&1; then
    (cd "$src" && apt-get source --download-only lua-filesystem >/dev/null 2>&1)
  fi
  rm -rf "$src/lfs" && mkdir "$src/lfs"
  tar -xzf "$src"/lua-filesystem_*.orig.tar.gz -C "$src/lfs" --strip-components=1
  $cc -O2 -shared -I"$dir/lua-src/src" -o "$mods/lfs.dll" "$src/lfs/src/lfs.c" "$dir/lua54.dll"
fi
$cc -std=gnu11 -O2 -Wall -Wextra -Werror -shared -I"$dir/lua-src/src" -o "$mods/term/core.dll" tools/win/term_core.c "$dir/lua54.dll"
$cc -std=gnu11 -O2 -Wall -Wextra -Werror -shared -I"$dir/lua-src/src" -o "$mods/system/core.dll" tools/win/system_core.c "$dir/lua54.dll"
$cc -std=gnu11 -O2 -Isrc/spi -shared -o "$dir/test_nullproc.dll" spec/tools/nullproc.c
$cc -std=gnu11 -O2 -Wall -Wextra -Werror -municode -o "$dir/limited.exe" spec/tools/limited.c -ladvapi32

win() { printf 'Z:%s' "$1" | tr / '\\'; }
W=$(win "$top")
export WINEPREFIX=$top/build/wine WINEARCH=win64 WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml=" DISPLAY=
# A prefix made before Debian's 32-bit Wine was installed has an empty
# SysWOW64, where the 32-bit specs look for what a 32-bit process loads:
# made again, complete.
if [ -d /usr/lib/i386-linux-gnu/wine/i386-windows ] && [ -d "$WINEPREFIX/drive_c/windows" ] &&
   [ -z "$(ls -A "$WINEPREFIX/drive_c/windows/syswow64" 2>/dev/null)" ]; then
  echo "wine-test: $WINEPREFIX predates the 32-bit Wine: making it again"
  /usr/lib/wine/wineserver -k 2>/dev/null || true
  rm -rf "$WINEPREFIX"
fi
export LWSP_EXAMPLES="$W\\examples" LWSP_LUA_EXE="$(win "$dir/lua.exe")"
export LUA_PATH="$W\\lua\\?.lua;$W\\lua\\?\\init.lua;Z:\\usr\\share\\lua\\5.4\\?.lua;Z:\\usr\\share\\lua\\5.4\\?\\init.lua"
export LUA_CPATH="$(win "$mods")\\?.dll;$(win "$dir")\\?.dll"
set +e
/usr/lib/wine/wine64 "$dir/lua.exe" 'Z:\usr\bin\busted' --run=wine "$@" </dev/null 2>&1 | stdbuf -oL tr -d '\r' |
  grep --line-buffered -v 'created the configuration directory\|rundll32\|has been updated'
status=${PIPESTATUS[0]}
set -e
count() { env -u LUA_PATH -u LUA_CPATH lua5.4 /usr/bin/busted --list "$@" 2>/dev/null | grep -c ':[0-9]*: ' || true; }
all=$(count)
kept=$(count --exclude-tags=posix,subprocess)
echo "wine-test: $((all - kept)) of $all specs not run under Wine (tagged subprocess: $(count --tags=subprocess)," \
  "posix: $(count --tags=posix))"
exit "$status"
