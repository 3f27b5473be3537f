/*
 * wsc.c - lwsp.wsc: the real Winsock catalog (WSCEnumProtocols,
 * WSCInstallProvider[AndChains][64_32], WSCWriteProviderOrder[32],
 * WSCDeinstallProvider[32], WSCGetProviderPath[32], WSCUpdateProvider[32],
 * WSCSetProviderInfo[32]; and the ACL, environment and process questions an
 * install asks) for the installer in
 * lua/wsp/catalog.lua, and the catalog lookup a layer loaded by ws2_32 uses
 * to find the layer below it.
 *
 * Every function is looked up in ws2_32 at run time: which of them exist
 * depends on the Windows version and the process's architecture (and Wine
 * has only stubs of a few), so a missing one is an answer, not a load error.
 * Elsewhere there is no Winsock catalog: lwsp.wsc.available is false and each
 * call returns nil and a message.
 */
#include "runtime.h"
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#ifdef _WIN32
#  include <aclapi.h>
#  include <sddl.h>
#endif

#define NOT_HERE "no Winsock catalog on this system (lwsp's own host has its catalog in lwsp.host)"

#ifdef _WIN32
typedef int (WSPAPI *enum_fn)(LPINT, LPWSAPROTOCOL_INFOW, LPDWORD, LPINT);
typedef int (WSPAPI *install_fn)(LPGUID, const WCHAR *, const LPWSAPROTOCOL_INFOW, DWORD, LPINT);
typedef int (WSPAPI *chains_fn)(LPGUID, const LPWSTR, const LPWSTR, DWORD, LPWSAPROTOCOL_INFOW, DWORD, LPDWORD, LPINT);
typedef int (WSPAPI *chains64_fn)(LPGUID, const LPWSTR, const LPWSTR, const LPWSTR, DWORD, LPWSAPROTOCOL_INFOW, DWORD, LPDWORD, LPINT);
typedef int (WSPAPI *order_fn)(LPDWORD, DWORD);
typedef int (WSPAPI *deinstall_fn)(LPGUID, LPINT);
typedef int (WSPAPI *path_fn)(LPGUID, WCHAR *, LPINT, LPINT);
typedef int (WSPAPI *setinfo_fn)(LPGUID, int, PBYTE, size_t, DWORD, LPINT);

static void *ws2(const char *name) {
  HMODULE m = GetModuleHandleW(L"ws2_32.dll");
  if (!m) m = LoadLibraryW(L"ws2_32.dll");
  return m ? (void *)GetProcAddress(m, name) : NULL;
}
#define WS2(type, name) ((type)(void (*)(void))ws2(name))

static int missing(lua_State *L, const char *name) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s is not available in this ws2_32", name);
  return 2;
}
static int check_view(lua_State *L, int idx) {
  int v = (int)luaL_optinteger(L, idx, 0);
  luaL_argcheck(L, v == 0 || v == 32 || v == 64, idx, "view is 32, 64 or nil");
#ifndef _WIN64
  if (v == 64) luaL_argerror(L, idx, "a 32-bit process cannot reach the 64-bit catalog");
  if (v == 32) v = 0;   /* a 32-bit process's own catalog is the 32-bit one */
#else
  if (v == 64) v = 0;
#endif
  return v;
}
static GUID check_guid(lua_State *L, int idx) {
  GUID g;
  if (!lwsp_guid_parse(luaL_checkstring(L, idx), &g)) luaL_argerror(L, idx, "not a GUID");
  return g;
}
static WCHAR *check_wide(lua_State *L, int idx, WCHAR *buf, size_t n) {
  size_t len;
  const char *s = luaL_checklstring(L, idx, &len);
  size_t k = lwsp_utf8_to_utf16(s, len, buf, n - 1);
  buf[k] = 0;
  return buf;
}

/* The whole catalog of a view, in a malloc'd array; NULL with *err set. */
static WSAPROTOCOL_INFOW *enum_all(int view, int *count, INT *err, const char **which) {
  enum_fn fn = view == 32 ? WS2(enum_fn, "WSCEnumProtocols32") : WS2(enum_fn, "WSCEnumProtocols");
  WSAPROTOCOL_INFOW *buf = NULL;
  DWORD len = 0;
  int n;
  *which = view == 32 ? "WSCEnumProtocols32" : "WSCEnumProtocols";
  if (!fn) { *err = -1; return NULL; }
  for (int tries = 0; tries < 4; tries++) {
    *err = 0;
    n = fn(NULL, buf, &len, err);
    if (n != SOCKET_ERROR) { *count = n; return buf ? buf : calloc(1, sizeof *buf); }
    if (*err != WSAENOBUFS) break;
    free(buf);
    if (!(buf = malloc(len ? len : sizeof *buf))) { *err = WSA_NOT_ENOUGH_MEMORY; return NULL; }
  }
  free(buf);
  return NULL;
}

static void push_path(lua_State *L, const GUID *g, int view) {
  path_fn fn = view == 32 ? WS2(path_fn, "WSCGetProviderPath32") : WS2(path_fn, "WSCGetProviderPath");
  WCHAR w[MAX_PATH * 2];
  char out[MAX_PATH * 6];
  INT len = MAX_PATH * 2, err = 0;
  GUID id = *g;
  w[0] = 0;
  if (fn && fn(&id, w, &len, &err) == 0 && w[0]) {
    out[lwsp_utf16_to_utf8(w, lwsp_wcslen(w, MAX_PATH * 2), out, sizeof out - 1)] = 0;
    lua_pushstring(L, out);
  } else {
    lua_pushnil(L);
  }
}

/* enum([view]) -> array of protocol info tables (with path when ws2_32 gives
 * one) | nil, message */
static int w_enum(lua_State *L) {
  int view = check_view(L, 1), n = 0;
  INT err = 0;
  const char *which;
  WSAPROTOCOL_INFOW *all = enum_all(view, &n, &err, &which);
  if (!all && err == -1) return missing(L, which);
  if (!all) return lwsp_push_error(L, err ? err : WSASYSCALLFAILURE);
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lwsp_push_protocol_info(L, &all[i]);
    push_path(L, &all[i].ProviderId, view);
    lua_setfield(L, -2, "path");
    lua_rawseti(L, -2, i + 1);
  }
  free(all);
  return 1;
}

static WSAPROTOCOL_INFOW *check_infos(lua_State *L, int idx, DWORD *n) {
  WSAPROTOCOL_INFOW *infos;
  char msg[200];
  luaL_checktype(L, idx, LUA_TTABLE);
  *n = (DWORD)lua_rawlen(L, idx);
  luaL_argcheck(L, *n > 0 && *n <= 64, idx, "1 to 64 protocol entries");
  infos = lua_newuserdatauv(L, *n * sizeof *infos, 0);   /* collected with the call */
  memset(infos, 0, *n * sizeof *infos);
  for (DWORD i = 0; i < *n; i++) {
    lua_rawgeti(L, idx, (lua_Integer)i + 1);
    infos[i].iVersion = 2;
    if (!lwsp_to_protocol_info(L, lua_gettop(L), &infos[i], msg, sizeof msg)) luaL_argerror(L, idx, msg);
    lua_pop(L, 1);
  }
  return infos;
}

/* A call of ws2_32's (guid, dll path, infos, count, &err) family -- install
 * and update -- with (guid, dll path, {protocol infos}) at 1..3:
 * true | nil, message, code. */
static int provider_call(lua_State *L, const char *name) {
  GUID g = check_guid(L, 1);
  WCHAR path[MAX_PATH * 2];
  DWORD n;
  WSAPROTOCOL_INFOW *infos;
  install_fn fn = WS2(install_fn, name);   /* (WSCUpdateProvider's type is the same) */
  INT err = 0;
  check_wide(L, 2, path, MAX_PATH * 2);
  infos = check_infos(L, 3, &n);
  if (!fn) return missing(L, name);
  if (fn(&g, path, infos, n, &err) != 0) return lwsp_push_error(L, err ? err : WSASYSCALLFAILURE);
  lua_pushboolean(L, 1);
  return 1;
}

/* install(guid, dll path, {protocol infos} [, both]) -> true | nil, message, code:
 * WSCInstallProvider (this process's catalog), or with both
 * WSCInstallProvider64_32 (the same path in the 64- and 32-bit catalogs). */
static int w_install(lua_State *L) {
  return provider_call(L, lua_toboolean(L, 4) ? "WSCInstallProvider64_32" : "WSCInstallProvider");
}

/* install_and_chains(guid, dll path, dll path 32 | nil, name, service flags,
 * {protocol infos of the bases}) -> catalog id of the layered entry | nil,
 * message, code.  WSCInstallProviderAndChains64_32 in a 64-bit process,
 * WSCInstallProviderAndChains in a 32-bit one. */
static int w_install_and_chains(lua_State *L) {
  GUID g = check_guid(L, 1);
  WCHAR path[MAX_PATH * 2], path32[MAX_PATH * 2], name[WSAPROTOCOL_LEN + 1];
  DWORD flags = (DWORD)luaL_checkinteger(L, 5), n, id = 0;
  WSAPROTOCOL_INFOW *infos;
  INT err = 0;
  int rc;
  check_wide(L, 2, path, MAX_PATH * 2);
  if (!lua_isnoneornil(L, 3)) check_wide(L, 3, path32, MAX_PATH * 2); else wcscpy(path32, path);
  check_wide(L, 4, name, WSAPROTOCOL_LEN + 1);
  infos = check_infos(L, 6, &n);
#ifdef _WIN64
  {
    chains64_fn fn = WS2(chains64_fn, "WSCInstallProviderAndChains64_32");
    if (!fn) return missing(L, "WSCInstallProviderAndChains64_32");
    rc = fn(&g, path, path32, name, flags, infos, n, &id, &err);
  }
#else
  {
    chains_fn fn = WS2(chains_fn, "WSCInstallProviderAndChains");
    if (!fn) return missing(L, "WSCInstallProviderAndChains");
    rc = fn(&g, path, name, flags, infos, n, &id, &err);
  }
#endif
  if (rc != 0) return lwsp_push_error(L, err ? err : WSASYSCALLFAILURE);
  lua_pushinteger(L, id);
  return 1;
}

/* write_order({ids} [, view]) -> true | nil, message, code */
static int w_write_order(lua_State *L) {
  int view = check_view(L, 2);
  const char *name = view == 32 ? "WSCWriteProviderOrder32" : "WSCWriteProviderOrder";
  order_fn fn = WS2(order_fn, name);
  DWORD n, *ids;
  int rc;
  luaL_checktype(L, 1, LUA_TTABLE);
  n = (DWORD)lua_rawlen(L, 1);
  luaL_argcheck(L, n > 0 && n <= 4096, 1, "1 to 4096 catalog ids");
  ids = lua_newuserdatauv(L, n * sizeof *ids, 0);
  for (DWORD i = 0; i < n; i++) {
    lua_rawgeti(L, 1, (lua_Integer)i + 1);
    ids[i] = (DWORD)luaL_checkinteger(L, -1);
    lua_pop(L, 1);
  }
  if (!fn) return missing(L, name);
  if ((rc = fn(ids, n)) != 0) return lwsp_push_error(L, rc);
  lua_pushboolean(L, 1);
  return 1;
}

/* deinstall(guid [, view]) -> true | nil, message, code */
static int w_deinstall(lua_State *L) {
  GUID g = check_guid(L, 1);
  int view = check_view(L, 2);
  const char *name = view == 32 ? "WSCDeinstallProvider32" : "WSCDeinstallProvider";
  deinstall_fn fn = WS2(deinstall_fn, name);
  INT err = 0;
  if (!fn) return missing(L, name);
  if (fn(&g, &err) != 0) return lwsp_push_error(L, err ? err : WSASYSCALLFAILURE);
  lua_pushboolean(L, 1);
  return 1;
}

/* provider_path(guid [, view]) -> path | nil */
static int w_provider_path(lua_State *L) {
  GUID g = check_guid(L, 1);
  push_path(L, &g, check_view(L, 2));
  return 1;
}

/* update(guid, dll path, {protocol infos with their catalog ids} [, view]) ->
 * true | nil, message, code: WSCUpdateProvider(32), what the LSP sample uses to
 * rewrite other providers' chains around a removed layer. */
static int w_update(lua_State *L) {
  return provider_call(L, check_view(L, 4) == 32 ? "WSCUpdateProvider32" : "WSCUpdateProvider");
}

/* the values lua/wsp/catalog.lua's CATEGORIES table names */
_Static_assert(LSP_INSPECTOR == 0x1 && LSP_REDIRECTOR == 0x2 && LSP_PROXY == 0x4 && LSP_FIREWALL == 0x8 &&
               LSP_INBOUND_MODIFY == 0x10 && LSP_OUTBOUND_MODIFY == 0x20 && LSP_CRYPTO_COMPRESS == 0x40 &&
               LSP_LOCAL_CACHE == 0x80 && LSP_SYSTEM == 0x80000000 && ProviderInfoLspCategories == 0,
               "LSP categories as catalog.CATEGORIES has them");

/* set_category(guid, categories [, view]) -> true | nil, message, code:
 * WSCSetProviderInfo(32) with ProviderInfoLspCategories (0). */
static int w_set_category(lua_State *L) {
  GUID g = check_guid(L, 1);
  DWORD cats = (DWORD)luaL_checkinteger(L, 2);
  int view = check_view(L, 3);
  const char *name = view == 32 ? "WSCSetProviderInfo32" : "WSCSetProviderInfo";
  setinfo_fn fn = WS2(setinfo_fn, name);
  INT err = 0;
  if (!fn) return missing(L, name);
  if (fn(&g, 0, (PBYTE)&cats, sizeof cats, 0, &err) != 0) return lwsp_push_error(L, err ? err : WSASYSCALLFAILURE);
  lua_pushboolean(L, 1);
  return 1;
}

/* Administrators, SYSTEM and TrustedInstaller: who may change what every
 * process runs. */
static int trusted_sid(PSID sid) {
  static const char ti[] = "S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464";
  char *str = NULL;
  int ok;
  if (!sid || !IsValidSid(sid)) return 0;
  if (IsWellKnownSid(sid, WinBuiltinAdministratorsSid) || IsWellKnownSid(sid, WinLocalSystemSid)) return 1;
  if (!ConvertSidToStringSidA(sid, &str)) return 0;
  ok = strcmp(str, ti) == 0;
  LocalFree(str);
  return ok;
}
static void sid_text(PSID sid, char *out, size_t len) {
  WCHAR name[256], dom[256];
  DWORD nn = 256, dn = 256;
  SID_NAME_USE use;
  char *str = NULL;
  if (LookupAccountSidW(NULL, sid, name, &nn, dom, &dn, &use)) {
    char a[300], b[300];
    a[lwsp_utf16_to_utf8(dom, dn, a, sizeof a - 1)] = 0;
    b[lwsp_utf16_to_utf8(name, nn, b, sizeof b - 1)] = 0;
    snprintf(out, len, "%s%s%s", a, a[0] ? "\\" : "", b);
  } else if (ConvertSidToStringSidA(sid, &str)) {
    snprintf(out, len, "%s", str);
    LocalFree(str);
  } else {
    snprintf(out, len, "an unknown account");
  }
}

/* insecure(path) -> nil when the file or folder can be changed only by
 * administrators, SYSTEM and TrustedInstaller, else why not (a string).
 * A path that does not exist is judged by the nearest folder above it that
 * does: whoever can add files or folders there can create it.  An ACL that
 * cannot be read counts as insecure. */
#define WRITE_RIGHTS (FILE_WRITE_DATA | FILE_APPEND_DATA | FILE_WRITE_EA | FILE_DELETE_CHILD | DELETE | \
                      WRITE_DAC | WRITE_OWNER | GENERIC_WRITE | GENERIC_ALL)
static int w_insecure(lua_State *L) {
  WCHAR w[MAX_PATH * 2];
  char at[MAX_PATH * 6], who[600];
  const char *given = luaL_checkstring(L, 1);
  PSID owner = NULL;
  PACL dacl = NULL;
  PSECURITY_DESCRIPTOR sd = NULL;
  DWORD rc;
  size_t len;
  int created = 0;
  check_wide(L, 1, w, MAX_PATH * 2);
  len = wcslen(w);
  while (len > 0 && (w[len - 1] == L'\\' || w[len - 1] == L'/')) w[--len] = 0;
  while (GetFileAttributesW(w) == INVALID_FILE_ATTRIBUTES) {
    while (len > 0 && w[len - 1] != L'\\' && w[len - 1] != L'/') w[--len] = 0;
    while (len > 0 && (w[len - 1] == L'\\' || w[len - 1] == L'/')) w[--len] = 0;
    created = 1;
    if (len < 2) { lua_pushfstring(L, "%s: no folder above it exists", given); return 1; }
    if (len == 2 && w[1] == L':') { w[2] = L'\\'; w[3] = 0; break; }
  }
  at[lwsp_utf16_to_utf8(w, wcslen(w), at, sizeof at - 1)] = 0;
  rc = GetNamedSecurityInfoW(w, SE_FILE_OBJECT, OWNER_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION, &owner, NULL,
                             &dacl, NULL, &sd);
  if (rc != ERROR_SUCCESS) { lua_pushfstring(L, "%s: the ACL of %s cannot be read (error %d)", given, at, (int)rc); return 1; }
  who[0] = 0;
  if (!trusted_sid(owner)) {
    char o[600];
    sid_text(owner, o, sizeof o);
    snprintf(who, sizeof who, "%s (the owner of %s)", o, at);
  } else if (!dacl) {
    snprintf(who, sizeof who, "everyone (%s has no DACL)", at);
  } else {
    for (DWORD i = 0; i < dacl->AceCount && !who[0]; i++) {
      ACE_HEADER *h;
      ACCESS_ALLOWED_ACE *a;
      if (!GetAce(dacl, i, (void **)&h) || h->AceType != ACCESS_ALLOWED_ACE_TYPE || (h->AceFlags & INHERIT_ONLY_ACE)) continue;
      a = (ACCESS_ALLOWED_ACE *)h;
      if (!(a->Mask & WRITE_RIGHTS) || trusted_sid((PSID)&a->SidStart)) continue;
      sid_text((PSID)&a->SidStart, who, sizeof who);
    }
  }
  if (!who[0]) lua_pushnil(L);
  else if (created) lua_pushfstring(L, "%s does not exist and %s can create it (in %s)", given, who, at);
  else lua_pushfstring(L, "%s can be changed by %s", given, who);
  LocalFree(sd);
  return 1;
}

/* expand(path [, view]) -> path with %VARIABLES% expanded by
 * ExpandEnvironmentStringsW, as a process of that view's architecture would
 * see it (a 32-bit process on a 64-bit Windows has the x86 Program Files
 * folders, and system32 redirected to SysWOW64). */
static int w_expand(lua_State *L) {
  const char *in = luaL_checkstring(L, 1);
  int view = check_view(L, 2);
  char out[MAX_PATH * 6];
  luaL_Buffer b;
  if (view == 32) {
    /* only a 64-bit process reaches here with view 32 (check_view) */
    luaL_buffinit(L, &b);
    for (const char *p = in; *p;) {
      if (_strnicmp(p, "%ProgramFiles%", 14) == 0) { luaL_addstring(&b, "%ProgramFiles(x86)%"); p += 14; }
      else if (_strnicmp(p, "%CommonProgramFiles%", 20) == 0) { luaL_addstring(&b, "%CommonProgramFiles(x86)%"); p += 20; }
      else luaL_addchar(&b, *p++);
    }
    luaL_pushresult(&b);
    in = lua_tostring(L, -1);
  }
  if (!lwsp_expand_env(in, out, sizeof out)) return luaL_error(L, "path too long to expand");
  if (view == 32) {
    char *sys = NULL;
    for (char *p = out; *p && !sys; p++) if (_strnicmp(p, "\\system32\\", 10) == 0) sys = p;
    if (sys) memcpy(sys, "\\SysWOW64\\", 10);
  }
  lua_pushstring(L, out);
  return 1;
}

/* mkdir(path) -> true | nil, message: the folder and the folders above it */
static int w_mkdir(lua_State *L) {
  WCHAR w[MAX_PATH * 2];
  size_t len;
  check_wide(L, 1, w, MAX_PATH * 2);
  len = wcslen(w);
  for (size_t i = 3; i <= len; i++) {
    if (i == len || w[i] == L'\\' || w[i] == L'/') {
      WCHAR c = w[i];
      w[i] = 0;
      if (!CreateDirectoryW(w, NULL) && GetLastError() != ERROR_ALREADY_EXISTS) {
        lua_pushnil(L);
        lua_pushfstring(L, "cannot create %s (error %d)", luaL_checkstring(L, 1), (int)GetLastError());
        return 2;
      }
      w[i] = c;
    }
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* os_bits() -> 64 on a 64-bit Windows (this process 64-bit, or 32-bit under
 * WOW64), else 32 */
static int w_os_bits(lua_State *L) {
  BOOL wow = FALSE;
#ifdef _WIN64
  (void)wow;
  lua_pushinteger(L, 64);
#else
  lua_pushinteger(L, IsWow64Process(GetCurrentProcess(), &wow) && wow ? 64 : 32);
#endif
  return 1;
}

/* lua_exe() -> the path of this process's executable (the lua.exe that runs
 * lwsp-catalog, which the test start runs again) */
static int w_lua_exe(lua_State *L) {
  WCHAR w[MAX_PATH * 2];
  char out[MAX_PATH * 6];
  DWORD n = GetModuleFileNameW(NULL, w, MAX_PATH * 2);
  if (n == 0 || n >= MAX_PATH * 2) { lua_pushnil(L); return 1; }
  out[lwsp_utf16_to_utf8(w, n, out, sizeof out - 1)] = 0;
  lua_pushstring(L, out);
  return 1;
}

/* has(name) -> whether ws2_32 exports that WSC function here */
static int w_has(lua_State *L) {
  lua_pushboolean(L, ws2(luaL_checkstring(L, 1)) != NULL);
  return 1;
}

int lwsp_wsc_catalog_info(DWORD id, WSAPROTOCOL_INFOW *info) {
  int n = 0, found = 0;
  INT err = 0;
  const char *which;
  WSAPROTOCOL_INFOW *all = enum_all(0, &n, &err, &which);
  for (int i = 0; all && i < n && !found; i++)
    if (all[i].dwCatalogEntryId == id) { *info = all[i]; found = 1; }
  free(all);
  return found;
}

/* entry(id) -> protocol info | nil: what a layer loaded by ws2_32 finds */
static int w_entry(lua_State *L) {
  WSAPROTOCOL_INFOW info;
  if (!lwsp_wsc_catalog_info((DWORD)luaL_checkinteger(L, 1), &info)) { lua_pushnil(L); return 1; }
  lwsp_push_protocol_info(L, &info);
  return 1;
}

int lwsp_wsc_open(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"enum", w_enum}, {"install", w_install}, {"install_and_chains", w_install_and_chains},
    {"write_order", w_write_order}, {"deinstall", w_deinstall}, {"provider_path", w_provider_path},
    {"has", w_has}, {"entry", w_entry}, {"update", w_update}, {"set_category", w_set_category},
    {"insecure", w_insecure}, {"expand", w_expand}, {"os_bits", w_os_bits}, {"lua_exe", w_lua_exe}, {"mkdir", w_mkdir},
    {NULL, NULL}};
  luaL_newlib(L, fns);
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "available");
#ifdef _WIN64
  lua_pushinteger(L, 64);
#else
  lua_pushinteger(L, 32);
#endif
  lua_setfield(L, -2, "bits");
  return 1;
}

#else
/* ======================================================================== elsewhere */
int lwsp_wsc_catalog_info(DWORD id, WSAPROTOCOL_INFOW *info) { (void)id; (void)info; return 0; }

static int not_here(lua_State *L) {
  lua_pushnil(L);
  lua_pushliteral(L, NOT_HERE);
  return 2;
}
static int w_has(lua_State *L) { luaL_checkstring(L, 1); lua_pushboolean(L, 0); return 1; }
/* mkdir(path) -> true | nil, message (staging works on any system) */
static int w_mkdir(lua_State *L) {
  const char *p = luaL_checkstring(L, 1);
  if (lwsp_mkdirs(p)) { lua_pushboolean(L, 1); return 1; }
  lua_pushnil(L);
  lua_pushfstring(L, "cannot create %s", p);
  return 2;
}

int lwsp_wsc_open(lua_State *L) {
  static const char *const names[] = {"enum", "install", "install_and_chains", "write_order", "deinstall",
                                      "provider_path", "entry", "update", "set_category", "insecure", "expand",
                                      "os_bits", "lua_exe", NULL};
  lua_createtable(L, 0, 10);
  for (int i = 0; names[i]; i++) {
    lua_pushcfunction(L, not_here);
    lua_setfield(L, -2, names[i]);
  }
  lua_pushcfunction(L, w_has);
  lua_setfield(L, -2, "has");
  lua_pushcfunction(L, w_mkdir);
  lua_setfield(L, -2, "mkdir");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "available");
  lua_pushinteger(L, (lua_Integer)(sizeof(void *) * 8));
  lua_setfield(L, -2, "bits");
  return 1;
}
#endif
