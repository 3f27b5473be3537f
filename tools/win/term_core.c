/*
 * term_core.c - the one function busted needs from the `term.core` module,
 * for running the suite under Wine: term.core.isatty(file).
 */
#include <io.h>
#include <stdio.h>
#include "lua.h"
#include "lauxlib.h"

static int t_isatty(lua_State *L) {
  luaL_Stream *f = luaL_checkudata(L, 1, LUA_FILEHANDLE);
  lua_pushboolean(L, f->f && _isatty(_fileno(f->f)));
  return 1;
}

__declspec(dllexport) int luaopen_term_core(lua_State *L);
__declspec(dllexport) int luaopen_term_core(lua_State *L) {
  static const luaL_Reg fns[] = {{"isatty", t_isatty}, {NULL, NULL}};
  luaL_newlib(L, fns);
  return 1;
}
