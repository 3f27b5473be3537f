/*
 * fuzz_script.c - libFuzzer target for a provider's script: the input is
 * turned into a provider script by fuzz/script_driver.lua (handler bodies from
 * a small grammar), which installs it through lwsp's host with a small
 * instruction budget and memory ceiling and drives a few calls into it.  The
 * driver returns text when a call outlasts its bound or the host is left
 * inconsistent; that, a crash or a sanitizer report is a finding.  Run it
 * with -timeout as the outer bound.  LWSP_FUZZ_HOLES=1 lets the grammar make
 * the constructs the budget does not bound yet (see the driver).
 */
#include "common.h"
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static lua_State *L;
static int driver;

/* The process's CPU time: a bound on work that a busy machine does not trip
 * (a call that waits instead of working is the outer -timeout's to catch). */
static int now(lua_State *l) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  lua_pushnumber(l, (lua_Number)ts.tv_sec + ts.tv_nsec / 1e9);
  return 1;
}

static void setup(void) {
  char cwd[1024], code[4096], dir[] = "/tmp/lwsp-fuzz-script-XXXXXX";
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
  snprintf(code, sizeof code, "%s/provider.lua", dir);
  lua_pushstring(L, code);
  lua_setglobal(L, "SCRIPT_PATH");
  lua_pushcfunction(L, now);
  lua_setglobal(L, "NOW");
  snprintf(code, sizeof code, "%s/fuzz/script_driver.lua", cwd);
  if (luaL_dofile(L, code) != LUA_OK) { fprintf(stderr, "%s\n", lua_tostring(L, -1)); abort(); }
  driver = luaL_ref(L, LUA_REGISTRYINDEX);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
  if (!L) setup();
  lua_rawgeti(L, LUA_REGISTRYINDEX, driver);
  lua_pushlstring(L, (const char *)d, n);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) { fprintf(stderr, "fuzz_script: the driver raised: %s\n", lua_tostring(L, -1)); abort(); }
  if (lua_isstring(L, -1)) { fprintf(stderr, "fuzz_script: %s\n", lua_tostring(L, -1)); abort(); }
  lua_pop(L, 1);
  return 0;
}
