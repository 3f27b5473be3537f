#!/usr/bin/env bash
# The provider tree as it ships, for each Windows architecture:
#
#   build/mingw/<arch>/provider/lwsp.dll          Lua 5.4 linked in (no lua54.dll)
#   build/mingw/<arch>/provider/lwsp_native.dll   the native base provider, no Lua DLL either
#   build/mingw/<arch>/provider/lua/wsp/*.lua     lwsp's Lua modules
#
# ws2_32 loads a provider by its full path into processes that know nothing of
# lwsp: the DLLs a provider imports are searched for from the application's
# folder and the system's, never the provider's, so the provider imports
# system DLLs only.  Its Lua modules are found from its own path
# (GetModuleFileNameW of its own module, src/spi/platform.c lwsp_module_path) as
# <folder of lwsp.dll>\lua (src/runtime/sandbox.c rt_sandbox_paths); nothing comes
# from the current folder, PATH, LUA_PATH or LUA_CPATH.  Install the folder as
# it is (say %ProgramFiles%\lwsp) and name its lwsp.dll in the catalog.
#
# Called by tools/mingw-build.sh once lua-src/ is unpacked for each arch, with
# the runtime's sources in $SRCS.  The module build beside it
# (build/mingw/<arch>/lwsp.dll, which imports lua54.dll) stays what lua.exe
# loads for the specs.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${SRCS:?the source list of the runtime}" "${NATIVE_SRCS:?the native base provider sources}" "${INCS:?the include folders}"
out=build/mingw
WARN="-Wall -Wextra -Werror -Wshadow -Wstrict-prototypes"
for arch in ${LWSP_ARCHS:-x86_64 i686}; do
  cc=$arch-w64-mingw32-gcc
  dir=$out/$arch
  static=$dir/lua-static
  prov=$dir/provider
  # Lua's core and libraries as a static library, built without
  # LUA_BUILD_AS_DLL so that none of its functions is exported from lwsp.dll
  if [ ! -f "$static/src/liblua.a" ]; then
    rm -rf "$static" && cp -r "$out/src/lua-5.4" "$static"
    make -s -C "$static/src" liblua.a CC="$cc -std=gnu99" \
      AR="$arch-w64-mingw32-ar rc" RANLIB="$arch-w64-mingw32-ranlib" >/dev/null
  fi
  mkdir -p "$prov"
  rm -rf "$prov/lua" && mkdir -p "$prov/lua" && cp -r lua/wsp "$prov/lua/"
  cp src/runtime/lwsp.def "$prov/lwsp.def"
  # shellcheck disable=SC2086
  $cc -std=gnu11 -O2 $WARN -D__USE_MINGW_ANSI_STDIO=1 -I"$static/src" $INCS -shared -o "$prov/lwsp.dll" \
    $SRCS "$prov/lwsp.def" "$static/src/liblua.a" -lws2_32 -luser32 -static-libgcc -Wl,--enable-stdcall-fixup
  # shellcheck disable=SC2086
  $cc -std=gnu11 -O2 $WARN -D__USE_MINGW_ANSI_STDIO=1 -I"$static/src" $INCS -shared -o "$prov/lwsp_native.dll" \
    $NATIVE_SRCS src/native/lwsp_native.def -lws2_32 -static-libgcc -Wl,--enable-stdcall-fixup
  # what a process in another folder must be able to load: system DLLs only,
  # and lwsp's exports only (no Lua function exported)
  for name in lwsp.dll lwsp_native.dll; do
    dump=$($arch-w64-mingw32-objdump -p "$prov/$name")
    imports=$(echo "$dump" | awk '/DLL Name:/ {print tolower($3)}' | sort -u | tr '\n' ' ')
    for d in $imports; do
      case $d in
        kernel32.dll|msvcrt.dll|ws2_32.dll|user32.dll|advapi32.dll|rpcrt4.dll|api-ms-win-*) ;;
        *) echo "$prov/$name imports $d, which a process in another folder may not find"; exit 1 ;;
      esac
    done
    exports=$(echo "$dump" | awk '/\[Ordinal\/Name Pointer\] Table/ {t=1; next} t && NF==0 {t=0} t {print $NF}')
    if echo "$exports" | grep -q '^lua'; then
      [ "$name" = lwsp.dll ] && [ "$(echo "$exports" | grep '^lua')" = luaopen_lwsp ] ||
        { echo "$prov/$name exports Lua's functions:"; echo "$exports" | grep '^lua' | head; exit 1; }
    fi
    echo "built $prov/$name (imports: $imports)"
  done
done
