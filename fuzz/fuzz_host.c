/*
 * fuzz_host.c - libFuzzer target for lwsp's host: every one of its
 * application-facing calls (lwsp.host.*), and the objects it gives out, made
 * from Lua with arguments taken from the input, by fuzz/host_driver.lua,
 * against memnet.  The host, the runtime and the provider all run in this
 * process.  A Lua error in a call is expected (a refused argument); the
 * driver returns text when an invariant breaks (a spawned call that never
 * ends, a host that no longer carries data), and that is a finding.
 */
#include "common.h"
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static lua_State *L;
static int driver;

static void setup(void) {
  char cwd[1024], code[4096], dir[] = "/tmp/lwsp-fuzz-host-XXXXXX";
  if (!getcwd(cwd, sizeof cwd) || !mkdtemp(dir)) abort();
  setenv("LWSP_REGISTRY", dir, 1);
  setenv("LWSP_LOG", "off", 1);
  snprintf(code, sizeof code, "%s/lua/?.lua;%s/lua/?/init.lua;;", cwd, cwd);
  setenv("LUA_PATH", code, 1);
  snprintf(code, sizeof code, "%s/build/fuzz/?.so;;", cwd);   /* the host module: build/fuzz/lwsp/host.so */
  setenv("LUA_CPATH", code, 1);
  L = luaL_newstate();
  luaL_openlibs(L);
  luaL_requiref(L, "lwsp", luaopen_lwsp, 0);
  lua_pop(L, 1);
  lua_pushstring(L, cwd);
  lua_setglobal(L, "FUZZ_ROOT");
  snprintf(code, sizeof code, "%s/fuzz/host_driver.lua", cwd);
  if (luaL_dofile(L, code) != LUA_OK) { fprintf(stderr, "%s\n", lua_tostring(L, -1)); abort(); }
  driver = luaL_ref(L, LUA_REGISTRYINDEX);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
  if (!L) setup();
  lua_rawgeti(L, LUA_REGISTRYINDEX, driver);
  lua_pushlstring(L, (const char *)d, n);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    /* the driver's own calls are protected: an error here escaped them */
    fprintf(stderr, "fuzz_host: the driver raised: %s\n", lua_tostring(L, -1));
    abort();
  }
  if (lua_isstring(L, -1)) { fprintf(stderr, "fuzz_host: %s\n", lua_tostring(L, -1)); abort(); }
  lua_pop(L, 1);
  return 0;
}
