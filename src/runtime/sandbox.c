/*
 * sandbox.c - what code a provider's Lua state may load, and from where.
 *
 * A provider state runs inside other people's processes, so:
 * - binary chunks are never loaded: load, loadfile, dofile and require's
 *   loaders are lwsp's, text only ("t"), whatever mode a script asks for
 *   (a crafted chunk crashes the VM; string.dump products are binary too);
 * - the search path is fixed by lwsp, never by the environment ($LUA_PATH,
 *   $LUA_CPATH, $LUA_INIT are ignored): the script's own folder and lwsp's
 *   own Lua folders (rt_sandbox_paths);
 * - C modules load only from the folder lwsp's own module is in, whatever
 *   package.cpath says, and package.loadlib is gone;
 * - on POSIX a script or module is loaded only if it is a regular file that
 *   is not world-writable and is owned by root or by the process's effective
 *   user, and every folder above it is owned by root or that user and is not
 *   world-writable unless sticky (rt_trusted_file);
 * - debug functions that write where lwsp keeps its own references
 *   (getregistry, setupvalue, upvaluejoin, setmetatable, setuservalue,
 *   getuservalue, setlocal) are removed: with them a script could swap an
 *   upcall's instance pointer or dress one userdata as another.
 * None of the originals stays reachable from Lua: the replacements are C
 * functions without upvalues, and the one original lwsp still calls
 * (package.loadlib, for C modules) is kept as a C pointer.
 */
#ifndef _WIN32
#  define _GNU_SOURCE
#endif
#include "runtime.h"
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifndef _WIN32
#  include <sys/stat.h>
#  include <unistd.h>
#  include <limits.h>
#endif

#ifdef _WIN32
#  define SEP "\\"
#  define CEXT ".dll"
#else
#  define SEP "/"
#  define CEXT ".so"
#endif

static lua_CFunction orig_loadlib;   /* Lua's package.loadlib, the same in every state */

/* ---- trust ------------------------------------------------------------------- */
#ifndef _WIN32
static int owner_ok(const struct stat *st) { return st->st_uid == 0 || st->st_uid == geteuid(); }

int rt_trusted_dir(const char *dir, char *why, size_t n) {
  char real[PATH_MAX], *p;
  struct stat st;
  if (!realpath(dir, real)) { snprintf(why, n, "%s: cannot resolve", dir); return 0; }
  for (;;) {
    if (stat(real, &st) != 0) { snprintf(why, n, "%s: cannot stat", real); return 0; }
    if (!S_ISDIR(st.st_mode)) { snprintf(why, n, "%s is not a folder", real); return 0; }
    if (!owner_ok(&st)) { snprintf(why, n, "folder %s is owned by another user (uid %lu)", real, (unsigned long)st.st_uid); return 0; }
    if ((st.st_mode & S_IWOTH) && !(st.st_mode & S_ISVTX)) { snprintf(why, n, "folder %s is world-writable", real); return 0; }
    if (strcmp(real, "/") == 0) return 1;
    p = strrchr(real, '/');
    if (p == real) p[1] = 0; else *p = 0;
  }
}

int rt_trusted_file(const char *path, char *why, size_t n) {
  char real[PATH_MAX], *slash;
  struct stat st;
  if (!realpath(path, real)) return 1;   /* no such file: the loader says so */
  if (stat(real, &st) != 0 || !S_ISREG(st.st_mode)) { snprintf(why, n, "%s is not a regular file", real); return 0; }
  if (st.st_mode & S_IWOTH) { snprintf(why, n, "%s is world-writable", real); return 0; }
  if (!owner_ok(&st)) { snprintf(why, n, "%s is owned by another user (uid %lu)", real, (unsigned long)st.st_uid); return 0; }
  slash = strrchr(real, '/');
  if (slash == real) slash[1] = 0; else *slash = 0;
  return rt_trusted_dir(real, why, n);
}
#else
/* On Windows the install's ACLs decide (HKLM and Program Files are the administrators'). */
int rt_trusted_dir(const char *dir, char *why, size_t n) { (void)dir; (void)why; (void)n; return 1; }
int rt_trusted_file(const char *path, char *why, size_t n) { (void)path; (void)why; (void)n; return 1; }
#endif

static lwsp_inst *sb_inst(lua_State *L) { return lwsp_inst_of(L); }

/* ---- text-only loaders -------------------------------------------------------- */
#define READER_SLOT 5
static const char *fn_reader(lua_State *L, void *ud, size_t *size) {
  (void)ud;
  luaL_checkstack(L, 2, "too many nested functions");
  lua_pushvalue(L, 1);
  lua_call(L, 0, 1);
  if (lua_isnil(L, -1)) { lua_pop(L, 1); *size = 0; return NULL; }
  if (!lua_isstring(L, -1)) luaL_error(L, "reader function must return a string");
  lua_replace(L, READER_SLOT);
  return lua_tolstring(L, READER_SLOT, size);
}

/* load(chunk [, chunkname [, mode [, env]]]): Lua's, but text only */
static int sb_load(lua_State *L) {
  size_t len;
  const char *s = lua_tolstring(L, 1, &len);
  const char *mode = luaL_optstring(L, 3, "bt");
  int env = !lua_isnone(L, 4) ? 4 : 0, st;
  const char *m = strchr(mode, 't') ? "t" : "";   /* "" refuses text too, as mode "b" would */
  if (s) {
    st = luaL_loadbufferx(L, s, len, luaL_optstring(L, 2, s), m);
  } else {
    const char *name = luaL_optstring(L, 2, "=(load)");
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_settop(L, READER_SLOT);
    st = lua_load(L, fn_reader, NULL, name, m);
  }
  if (st != LUA_OK) { luaL_pushfail(L); lua_insert(L, -2); return 2; }
  if (env) {
    lua_pushvalue(L, env);
    if (!lua_setupvalue(L, -2, 1)) lua_pop(L, 1);
  }
  return 1;
}

/* loadfile(filename [, mode [, env]]): text only, and never the host's
 * standard input */
static int sb_loadfile(lua_State *L) {
  const char *fname = luaL_optstring(L, 1, NULL);
  if (!fname) return luaL_argerror(L, 1, "a file name (standard input is not a provider's)");
  const char *mode = luaL_optstring(L, 2, "bt");
  int env = !lua_isnone(L, 3) ? 3 : 0;
  if (luaL_loadfilex(L, fname, strchr(mode, 't') ? "t" : "") != LUA_OK) { luaL_pushfail(L); lua_insert(L, -2); return 2; }
  if (env) {
    lua_pushvalue(L, env);
    if (!lua_setupvalue(L, -2, 1)) lua_pop(L, 1);
  }
  return 1;
}

static int dofile_cont(lua_State *L, int d1, lua_KContext d2) {
  (void)d1; (void)d2;
  return lua_gettop(L) - 1;
}
/* dofile(filename): text only, and never the host's standard input */
static int sb_dofile(lua_State *L) {
  const char *fname = luaL_optstring(L, 1, NULL);
  if (!fname) return luaL_argerror(L, 1, "a file name (standard input is not a provider's)");
  lua_settop(L, 1);
  if (luaL_loadfilex(L, fname, "t") != LUA_OK) return lua_error(L);
  lua_callk(L, 0, LUA_MULTRET, 0, dofile_cont);
  return dofile_cont(L, 0, 0);
}

/* ---- require's searchers ------------------------------------------------------- */
static int readable(const char *f) {
  FILE *fp = fopen(f, "r");
  if (!fp) return 0;
  fclose(fp);
  return 1;
}

/* Finds name (dots become folder separators) in the ;-separated templates of
 * path; pushes the file name (1), or the list of files tried (0). */
static int search(lua_State *L, const char *name, const char *path) {
  luaL_Buffer tried;
  const char *n = luaL_gsub(L, name, ".", SEP);   /* (stays on the stack, below the buffer) */
  luaL_buffinit(L, &tried);
  while (*path) {
    const char *end = strchr(path, ';');
    size_t len = end ? (size_t)(end - path) : strlen(path);
    if (len > 0) {
      const char *f;
      luaL_addstring(&tried, "\n\tno file '");
      lua_pushlstring(L, path, len);
      f = luaL_gsub(L, lua_tostring(L, -1), "?", n);
      lua_remove(L, -2);
      if (readable(f)) { lua_replace(L, -3); lua_pop(L, 1); return 1; }
      luaL_addvalue(&tried);
      luaL_addstring(&tried, "'");
    }
    path += len + (end != NULL);
  }
  luaL_pushresult(&tried);
  lua_remove(L, -2);
  return 0;
}

static int refuse_module(lua_State *L, const char *name, const char *file, const char *why) {
  lwsp_inst *I = sb_inst(L);
  if (I) lwsp_log(I->name, "refusing module '%s' from %s: %s", name, file, why);
  return luaL_error(L, "error loading module '%s' from file '%s':\n\trefused: %s", name, file, why);
}

/* Lua modules: package.path (the script may change it), trusted files, text only. */
static int sb_search_lua(lua_State *L) {
  const char *name = luaL_checkstring(L, 1), *file, *path;
  char why[600];
  lua_getfield(L, lua_upvalueindex(1), "path");
  if (!(path = lua_tostring(L, -1))) return luaL_error(L, "'package.path' must be a string");
  if (!search(L, name, path)) return 1;                  /* the files tried */
  file = lua_tostring(L, -1);
  if (!rt_trusted_file(file, why, sizeof why)) return refuse_module(L, name, file, why);
  if (luaL_loadfilex(L, file, "t") != LUA_OK)
    return luaL_error(L, "error loading module '%s' from file '%s':\n\t%s", lua_tostring(L, 1), file, lua_tostring(L, -1));
  lua_pushstring(L, file);
  return 2;
}

/* C modules: only from the folder lwsp's own module is in. */
static int sb_search_c(lua_State *L) {
  const char *name = luaL_checkstring(L, 1), *file, *dash;
  const char *mod = lwsp_module_path(), *slash;
  char why[600];
  if (!mod) { lua_pushliteral(L, "\n\tno C modules: lwsp's own folder is unknown"); return 1; }
  slash = strrchr(mod, '/');
#ifdef _WIN32
  { const char *bs = strrchr(mod, '\\'); if (!slash || (bs && bs > slash)) slash = bs; }
#endif
  if (!slash) { lua_pushliteral(L, "\n\tno C modules: lwsp's own folder is unknown"); return 1; }
  lua_pushlstring(L, mod, (size_t)(slash - mod + 1));
  lua_pushstring(L, "?" CEXT);
  lua_concat(L, 2);
  if (!search(L, name, lua_tostring(L, -1))) return 1;
  file = lua_tostring(L, -1);
  if (!rt_trusted_file(file, why, sizeof why)) return refuse_module(L, name, file, why);
  lua_pushcfunction(L, orig_loadlib);
  lua_pushvalue(L, -2);
  dash = strchr(name, '-');          /* "a.b-v2" opens luaopen_a_b, as Lua's own searcher does */
  lua_pushliteral(L, "luaopen_");
  lua_pushlstring(L, name, dash ? (size_t)(dash - name) : strlen(name));
  luaL_gsub(L, lua_tostring(L, -1), ".", "_");
  lua_remove(L, -2);
  lua_concat(L, 2);
  lua_call(L, 2, 2);
  if (lua_isnil(L, -2))
    return luaL_error(L, "error loading module '%s' from file '%s':\n\t%s", name, file, lua_tostring(L, -1));
  lua_pop(L, 1);
  lua_pushstring(L, file);
  return 2;
}

/* ---- the state ------------------------------------------------------------------ */
static void remove_field(lua_State *L, int t, const char *k) {
  lua_pushnil(L);
  lua_setfield(L, t, k);
}

void rt_sandbox_open(lua_State *L) {
  int top = lua_gettop(L);
  static const char *const debug_gone[] = {"getregistry", "setupvalue", "upvaluejoin", "setmetatable",
                                           "setuservalue", "getuservalue", "setlocal", NULL};
  lua_register(L, "load", sb_load);
  lua_register(L, "loadfile", sb_loadfile);
  lua_register(L, "dofile", sb_dofile);
  if (lua_getglobal(L, "debug") == LUA_TTABLE)
    for (int i = 0; debug_gone[i]; i++) remove_field(L, top + 1, debug_gone[i]);
  lua_settop(L, top);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, LUA_LOADLIBNAME) == LUA_TTABLE) {
    int pkg = lua_gettop(L);
    if (lua_getfield(L, pkg, "loadlib") == LUA_TFUNCTION && lua_iscfunction(L, -1) && !orig_loadlib)
      orig_loadlib = lua_tocfunction(L, -1);
    lua_pop(L, 1);
    remove_field(L, pkg, "loadlib");
    lua_createtable(L, 3, 0);
    lua_getfield(L, pkg, "searchers");
    lua_rawgeti(L, -1, 1);                 /* package.preload: functions the state already holds */
    lua_rawseti(L, -3, 1);
    lua_pop(L, 1);
    lua_pushvalue(L, pkg);
    lua_pushcclosure(L, sb_search_lua, 1);
    lua_rawseti(L, -2, 2);
    if (orig_loadlib) {
      lua_pushcfunction(L, sb_search_c);
      lua_rawseti(L, -2, 3);
    }
    lua_setfield(L, pkg, "searchers");
  }
  lua_settop(L, top);
}

/* Sets package.path and package.cpath to the trusted ones: the script's
 * folder, lwsp's Lua folder beside its module (<dir>/lua), and, when the
 * module sits in an install tree's lib/lua/5.4 (luarocks, or lib/<arch>/lua/5.4),
 * that tree's share/lua/5.4.  A folder that fails rt_trusted_dir is left out
 * and logged.  package.cpath is <module dir>/?.so, the only place C modules
 * come from. */
void rt_sandbox_paths(lwsp_inst *I, lua_State *L, const char *sdir, const char *mdir) {
  char dirs[3][1100], why[600];
  int nd = 0, nsep = 0;
  size_t ml = strlen(mdir), cut[5];
  luaL_Buffer b;
  snprintf(dirs[nd++], sizeof dirs[0], "%s", sdir);
  snprintf(dirs[nd++], sizeof dirs[0], "%s" SEP "lua", mdir);
  /* the last separators of mdir: <prefix>/lib/lua/5.4 or <prefix>/lib/<x>/lua/5.4 */
  for (size_t k = ml; k > 0 && nsep < 5; k--)
    if (mdir[k - 1] == '/' || mdir[k - 1] == '\\') cut[nsep++] = k - 1;
  if (nsep >= 3 && strcmp(mdir + cut[0] + 1, "5.4") == 0 && cut[0] - cut[1] == 4 && strncmp(mdir + cut[1] + 1, "lua", 3) == 0) {
    size_t lib = (size_t)-1;
    if (cut[1] - cut[2] == 4 && strncmp(mdir + cut[2] + 1, "lib", 3) == 0) lib = cut[2];
    else if (nsep >= 4 && cut[2] - cut[3] == 4 && strncmp(mdir + cut[3] + 1, "lib", 3) == 0) lib = cut[3];
    if (lib != (size_t)-1)
      snprintf(dirs[nd++], sizeof dirs[0], "%.*s" SEP "share" SEP "lua" SEP "5.4", (int)lib, mdir);
  }
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_getfield(L, -1, LUA_LOADLIBNAME);
  luaL_buffinit(L, &b);
  for (int i = 0; i < nd; i++) {
    if (!rt_trusted_dir(dirs[i], why, sizeof why)) {
      if (i > 0) lwsp_log(I->name, "leaving %s out of the module search path: %s", dirs[i], why);
      continue;
    }
    if (luaL_bufflen(&b)) luaL_addchar(&b, ';');
    luaL_addstring(&b, dirs[i]);
    luaL_addstring(&b, SEP "?.lua");
    if (i > 0) {
      luaL_addchar(&b, ';');
      luaL_addstring(&b, dirs[i]);
      luaL_addstring(&b, SEP "?" SEP "init.lua");
    }
  }
  luaL_pushresult(&b);
  lua_setfield(L, -2, "path");
  lua_pushfstring(L, "%s" SEP "?" CEXT, mdir);
  lua_setfield(L, -2, "cpath");
  lua_pop(L, 2);
}
