/*
 * catalog.c - lwsp.host's catalog and providers in Lua: install, remove,
 * order and list catalog entries; load a provider, one more WSPStartup of
 * it (a provider object with cleanup and data), and WSACleanup.
 */
#include "host.h"
#include <string.h>

#define PROVIDER_MT "lwsp.hostprovider"

/* ---- catalog ------------------------------------------------------------------------- */
/* install(info, path, kind) -> catalog id.  kind: "base" (chain {self}),
 * "layer" (ChainLen 0, the LSP's own hidden entry) or "chain" (info's
 * ProtocolChain lists the layer entry first and the base last). */
static int h_install(lua_State *L) {
  WSAPROTOCOL_INFOW info;
  char msg[200];
  const char *path = luaL_checkstring(L, 2);
  static const char *const kinds[] = {"base", "layer", "chain", NULL};
  int kind = luaL_checkoption(L, 3, "base", kinds);
  DWORD id;
  memset(&info, 0, sizeof info);
  info.iVersion = 2;
  if (!lwsp_to_protocol_info(L, 1, &info, msg, sizeof msg)) return luaL_argerror(L, 1, msg);
  if (kind == 2 && info.ProtocolChain.ChainLen < 2) return luaL_argerror(L, 1, "a chain entry needs at least 2 ProtocolChain entries");
  host_init();
  lwsp_mutex_lock(&host_lock);
  id = host_next_catalog_id();
  info.dwCatalogEntryId = id;
  if (kind == 0) { info.ProtocolChain.ChainLen = 1; info.ProtocolChain.ChainEntries[0] = id; }
  if (kind == 1) info.ProtocolChain.ChainLen = 0;
  if (!host_catalog_add(&info, path)) { lwsp_mutex_unlock(&host_lock); return host_fail(L, WSAENOBUFS); }
  lwsp_mutex_unlock(&host_lock);
  lua_pushinteger(L, id);
  return 1;
}

static int h_remove(lua_State *L) {
  int found;
  DWORD id = HOST_DWORD(L, 1, "catalog id");   /* read before the lock: a bad one raises */
  host_init();
  lwsp_mutex_lock(&host_lock);
  found = host_catalog_remove(id);
  lwsp_mutex_unlock(&host_lock);
  return found ? host_ok(L) : host_fail(L, WSAEINVAL);
}

/* order({ids}) -> true: the catalog in that order (WSCWriteProviderOrder);
 * WSAEINVAL unless the ids name every entry exactly once */
static int h_order(lua_State *L) {
  DWORD ids[512];
  size_t n;
  int rc;
  luaL_checktype(L, 1, LUA_TTABLE);
  n = lua_rawlen(L, 1);
  luaL_argcheck(L, n <= 512, 1, "at most 512 entries");
  for (size_t i = 0; i < n; i++) {
    lua_rawgeti(L, 1, (lua_Integer)i + 1);
    lua_Integer v = lua_tointegerx(L, -1, NULL);
    if (!lua_isinteger(L, -1) || v < 0 || v > 0xffffffffLL) return luaL_argerror(L, 1, "catalog ids must be integers (0..4294967295)");
    ids[i] = (DWORD)v;
    lua_pop(L, 1);
  }
  host_init();
  lwsp_mutex_lock(&host_lock);
  rc = host_catalog_order(ids, n);
  lwsp_mutex_unlock(&host_lock);
  return rc ? host_fail(L, rc) : host_ok(L);
}

/* catalog() -> array of protocol info tables, each with its path */
static int h_catalog(lua_State *L) {
  size_t n, have;
  hentry *copy;
  host_init();
  /* copied under the lock into a userdata sized without it, then pushed:
   * no Lua call (an allocation may run a finalizer) under host_lock */
  lwsp_mutex_lock(&host_lock);
  n = host_catalog_count();
  lwsp_mutex_unlock(&host_lock);
  copy = lua_newuserdatauv(L, (n ? n : 1) * sizeof *copy, 0);
  lwsp_mutex_lock(&host_lock);
  have = host_catalog_count() < n ? host_catalog_count() : n;
  for (size_t i = 0; i < have; i++) copy[i] = *host_catalog_at(i);
  lwsp_mutex_unlock(&host_lock);
  lua_createtable(L, (int)have, 0);
  for (size_t i = 0; i < have; i++) {
    lwsp_push_protocol_info(L, &copy[i].info);
    lua_pushstring(L, copy[i].path);
    lua_setfield(L, -2, "path");
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

/* ---- providers ------------------------------------------------------------------------ */
/* load(catalog id) -> true: the ws2_32-style load, once per provider GUID */
static int h_load(lua_State *L) {
  INT err = 0;
  if (!host_load(HOST_DWORD(L, 1, "catalog id"), &err)) return host_fail(L, err);
  return host_ok(L);
}

typedef struct { hprov *p; } provider_ud;

/* startup(catalog id) -> provider: one more WSPStartup, as an LSP makes for the
 * layer below; provider:cleanup() gives it back. */
static int h_startup(lua_State *L) {
  INT err = 0;
  hprov *p = host_provider_startup(HOST_DWORD(L, 1, "catalog id"), &err);
  provider_ud *u;
  if (!p) return host_fail(L, err);
  u = lua_newuserdatauv(L, sizeof *u, 0);
  u->p = p;
  luaL_setmetatable(L, PROVIDER_MT);
  return 1;
}
static int prov_cleanup(lua_State *L) {
  provider_ud *u = luaL_checkudata(L, 1, PROVIDER_MT);
  INT err = 0;
  hprov *p = u->p;
  if (!p) return host_fail(L, WSANOTINITIALISED);
  if (host_provider_cleanup(p, &err) != 0) {
    if (err != WSAEINPROGRESS) u->p = NULL;   /* refused: the startup is still this object's */
    return host_fail(L, err);
  }
  u->p = NULL;
  return host_ok(L);
}
static int prov_data(lua_State *L) {
  provider_ud *u = luaL_checkudata(L, 1, PROVIDER_MT);
  if (!u->p) return host_fail(L, WSANOTINITIALISED);
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, u->p->data.wVersion); lua_setfield(L, -2, "wVersion");
  lua_pushinteger(L, u->p->data.wHighVersion); lua_setfield(L, -2, "wHighVersion");
  lwsp_push_wstr(L, u->p->data.szDescription, WSPDESCRIPTION_LEN + 1); lua_setfield(L, -2, "szDescription");
  lua_pushinteger(L, u->p->startups); lua_setfield(L, -2, "startups");
  return 1;
}
static int prov_gc(lua_State *L) {
  provider_ud *u = luaL_checkudata(L, 1, PROVIDER_MT);
  if (u->p) { INT e; host_provider_cleanup(u->p, &e); u->p = NULL; }
  return 0;
}

/* cleanup([close_sockets = true]) -> n: WSACleanup; closes the sockets of
 * loaded providers and gives back their startups (with false, each provider's
 * last WSPCleanup meets its sockets still open, and any call in flight). */
static int h_cleanup(lua_State *L) {
  lua_pushinteger(L, host_cleanup_all(lua_isnoneornil(L, 1) || lua_toboolean(L, 1)));
  return 1;
}

/* The calls above into the host table on top, and the provider objects' metatable. */
void host_catalog_open(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"install", h_install}, {"remove", h_remove}, {"catalog", h_catalog}, {"order", h_order}, {"load", h_load},
    {"startup", h_startup}, {"cleanup", h_cleanup}, {NULL, NULL}};
  static const luaL_Reg pm[] = {{"cleanup", prov_cleanup}, {"data", prov_data}, {NULL, NULL}};
  host_class(L, PROVIDER_MT, prov_gc, pm);
  luaL_setfuncs(L, fns, 0);
}
