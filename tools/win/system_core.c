/*
 * system_core.c - what busted needs from the `system.core` module, for
 * running the suite under Wine: gettime() (seconds since the epoch),
 * monotime() (seconds, monotonic) and sleep(seconds).
 */
#include <windows.h>
#include "lua.h"
#include "lauxlib.h"

static int s_gettime(lua_State *L) {
  FILETIME ft;
  ULARGE_INTEGER u;
  GetSystemTimeAsFileTime(&ft);
  u.LowPart = ft.dwLowDateTime;
  u.HighPart = ft.dwHighDateTime;
  /* 100 ns ticks since 1601 -> seconds since 1970 */
  lua_pushnumber(L, (double)(u.QuadPart - 116444736000000000ULL) / 1e7);
  return 1;
}

static int s_monotime(lua_State *L) {
  LARGE_INTEGER f, c;
  QueryPerformanceFrequency(&f);
  QueryPerformanceCounter(&c);
  lua_pushnumber(L, (double)c.QuadPart / (double)f.QuadPart);
  return 1;
}

static int s_sleep(lua_State *L) {
  lua_Number s = luaL_checknumber(L, 1);
  Sleep(s > 0 ? (DWORD)(s * 1000 + 0.5) : 0);
  return 0;
}

__declspec(dllexport) int luaopen_system_core(lua_State *L);
__declspec(dllexport) int luaopen_system_core(lua_State *L) {
  static const luaL_Reg fns[] = {{"gettime", s_gettime}, {"monotime", s_monotime}, {"sleep", s_sleep}, {NULL, NULL}};
  luaL_newlib(L, fns);
  return 1;
}
