/*
 * module.c - what the lwsp module gives an application's state besides the
 * runtime's own tables: the log's Lua face, and the runtime's link -- the
 * one log, trace, fault hook and instance table of the process, which the
 * host module (src/host, require "lwsp.host") takes from lwsp._runtime so
 * that it shares them instead of keeping copies.  The fault hook is the
 * only trace of the test kit in the runtime: a pointer that stays NULL
 * unless the host module's fault injection (src/testkit/fault.c) sets it.
 */
#include "runtime.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

volatile int lwsp_faults_armed;
static int (*fault_hook)(const char *point);

int lwsp_fault(const char *point) {
  int (*f)(const char *) = fault_hook;
  return f ? f(point) : 0;
}

#ifdef LWSP_NO_TRACE
static volatile int no_tracing;
#endif

static const lwsp_runtime_link link = {
  LWSP_LINK_VERSION,
#ifdef LWSP_NO_TRACE
  &no_tracing,
#else
  &lwsp_tracing_flag,
#endif
  &lwsp_faults_armed, &fault_hook, lwsp_vlog,
  lwsp_trace_enter, lwsp_trace_leave, lwsp_trace_event, lwsp_trace_event_args, lwsp_trace_party,
  lwsp_trace_values, lwsp_trace_wrap, lwsp_trace_app_thread, lwsp_trace_app_api,
  WSPStartup, lwsp_spi_names, lwsp_inst_of, lwsp_instances, rt_sock_at,
};

void lwsp_push_link(lua_State *L) { lua_pushlightuserdata(L, (void *)&link); }

/* ---- the log's Lua face ------------------------------------------------------ */
static void push_line(const char *line, void *ud) {
  lua_State *L = ud;
  lua_pushstring(L, line);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
}

/* lwsp.log_lines([since]) -> array of lines, next sequence number */
static int l_log_lines(lua_State *L) {
  lua_Integer since = luaL_optinteger(L, 1, 0);
  lua_newtable(L);
  lua_pushinteger(L, (lua_Integer)lwsp_log_lines(since > 0 ? (unsigned long)since : 0, push_line, L));
  return 2;
}

/* lwsp.log(msg) writes one line tagged "lua". */
static int l_log(lua_State *L) {
  const char *who = luaL_optstring(L, 2, NULL);
  char tag[64];
  if (!who) {      /* inside a provider: its GUID (named as above); else "lua" */
    lua_getfield(L, LUA_REGISTRYINDEX, "lwsp.log_who");
    snprintf(tag, sizeof tag, "%s", lua_isstring(L, -1) ? lua_tostring(L, -1) : "lua");
    lua_pop(L, 1);
    who = tag;
  }
  lwsp_log(who, "%s", luaL_checkstring(L, 1));
  return 0;
}

/* lwsp.set_log(target): a file path, "-" for stderr, "off", or nil for $LWSP_LOG. */
static int l_set_log(lua_State *L) {
  lwsp_log_target(luaL_optstring(L, 1, NULL));
  return 0;
}

int lwsp_log_open(lua_State *L) {
  lua_pushcfunction(L, l_log); lua_setfield(L, -2, "log");
  lua_pushcfunction(L, l_log_lines); lua_setfield(L, -2, "log_lines");
  lua_pushcfunction(L, l_set_log); lua_setfield(L, -2, "set_log");
  return 0;
}

/* ---- the Lua module ------------------------------------------------------------- */
static int l_errname(lua_State *L) {
  const char *n = lwsp_error_name((int)luaL_checkinteger(L, 1));
  if (n) lua_pushstring(L, n); else lua_pushnil(L);
  return 1;
}
/* lwsp.error(code) -> nil, "WSAENAME: text", code (the failure triple) */
static int l_error(lua_State *L) { return lwsp_push_error(L, (int)luaL_checkinteger(L, 1)); }
static int l_path(lua_State *L) {
  const char *p = lwsp_module_path();
  if (p) lua_pushstring(L, p); else lua_pushnil(L);
  return 1;
}
/* lwsp.guid() -> a new GUID, and what made it: "UuidCreate" or "random" */
static int l_guid(lua_State *L) {
  GUID g;
  const char *source = lwsp_guid_new(&g);
  lwsp_push_guid(L, &g);
  lua_pushstring(L, source);
  return 2;
}
/* lwsp.process_id() -> the current process's id (what WSPDuplicateSocket's
 * dwProcessId names when the target is this process) */
static int l_process_id(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)lwsp_process_id());
  return 1;
}
static GUID check_guid(lua_State *L, int idx) {
  GUID g;
  if (!lwsp_guid_parse(luaL_checkstring(L, idx), &g)) luaL_argerror(L, idx, "not a GUID");
  return g;
}
static int l_reg_get(lua_State *L) {
  GUID g = check_guid(L, 1);
  char out[2048], err[1200];
  if (!lwsp_registry_get(&g, out, sizeof out, err, sizeof err)) { lua_pushnil(L); lua_pushstring(L, err); return 2; }
  lua_pushstring(L, out);
  return 1;
}
static int check_view(lua_State *L, int idx) {
  int v = (int)luaL_optinteger(L, idx, 0);
  luaL_argcheck(L, v == 0 || v == 32 || v == 64, idx, "view is 32, 64 or nil");
  return v;
}
static int l_reg_set(lua_State *L) {
  GUID g = check_guid(L, 1);
  size_t n;
  const char *p = luaL_checklstring(L, 2, &n);
  char err[1200];
  if (!lwsp_path_is_absolute(p)) luaL_argerror(L, 2, "script path must be absolute");
  /* what WSPStartup would refuse is never written (it would not be cut either) */
  if (memchr(p, 0, n) || strpbrk(p, "\r\n")) luaL_argerror(L, 2, "script path contains a NUL or a line break");
  if (n >= sizeof lwsp_instances[0].script) luaL_argerror(L, 2, "script path is longer than 1023 bytes");
  if (!lwsp_registry_set(&g, p, check_view(L, 3), err, sizeof err)) { lua_pushnil(L); lua_pushstring(L, err); return 2; }
  lua_pushboolean(L, 1);
  return 1;
}
static int l_reg_remove(lua_State *L) {
  GUID g = check_guid(L, 1);
  char err[1200];
  if (!lwsp_registry_remove(&g, check_view(L, 2), err, sizeof err)) { lua_pushnil(L); lua_pushstring(L, err); return 2; }
  lua_pushboolean(L, 1);
  return 1;
}
/* registry.on_failure(guid) -> "fail" | "passthrough": what the install
 * chose for its layer when the script cannot run */
static int l_reg_on_failure(lua_State *L) {
  GUID g = check_guid(L, 1);
  lua_pushstring(L, lwsp_registry_on_failure(&g) ? "passthrough" : "fail");
  return 1;
}
/* registry.set_on_failure(guid, "fail" | "passthrough" [, view]) -> true | nil, message */
static int l_reg_set_on_failure(lua_State *L) {
  static const char *const modes[] = {"fail", "passthrough", NULL};
  GUID g = check_guid(L, 1);
  int mode = luaL_checkoption(L, 2, NULL, modes);
  char err[1200];
  if (!lwsp_registry_set_on_failure(&g, mode, check_view(L, 3), err, sizeof err)) { lua_pushnil(L); lua_pushstring(L, err); return 2; }
  lua_pushboolean(L, 1);
  return 1;
}
/* registry.config(guid) -> text | nil (none) | nil, message: the provider's
 * configuration, a Lua table literal kept beside its entry */
static int l_reg_config(lua_State *L) {
  GUID g = check_guid(L, 1);
  char err[1200], *text;
  if (!lwsp_registry_config(&g, &text, err, sizeof err)) { lua_pushnil(L); lua_pushstring(L, err); return 2; }
  if (!text) { lua_pushnil(L); return 1; }
  lua_pushstring(L, text);
  free(text);
  return 1;
}
/* registry.set_config(guid, text | nil [, view]) -> true | nil, message */
static int l_reg_set_config(lua_State *L) {
  GUID g = check_guid(L, 1);
  const char *text = luaL_optstring(L, 2, NULL);
  char err[1200];
  if (!lwsp_registry_set_config(&g, text, check_view(L, 3), err, sizeof err)) { lua_pushnil(L); lua_pushstring(L, err); return 2; }
  lua_pushboolean(L, 1);
  return 1;
}
static void reg_put(const char *guid, const char *path, void *ud) {
  lua_State *L = ud;
  lua_pushstring(L, path);
  lua_setfield(L, -2, guid);
}
/* registry.list([view]) -> {["{GUID}"] = script path, ...} | nil, message */
static int l_reg_list(lua_State *L) {
  char err[1200];
  int view = check_view(L, 1);
  lua_newtable(L);
  if (!lwsp_registry_each(view, reg_put, L, err, sizeof err)) { lua_pushnil(L); lua_pushstring(L, err); return 2; }
  return 1;
}
/* registry.set_root(root) -> true | nil, message: where this process's
 * registrations go from now on (what a host's environment would say with
 * $LWSP_REGISTRY): on POSIX an absolute folder, created; on Windows "HKCU"
 * (the user's) or "HKLM" (the system's). */
static int l_reg_set_root(lua_State *L) {
  const char *d = luaL_checkstring(L, 1);
  char err[1200];
#ifndef _WIN32
  if (!lwsp_path_is_absolute(d)) return luaL_argerror(L, 1, "must be an absolute path");
#endif
  if (!lwsp_registry_set_root(d, err, sizeof err)) { lua_pushnil(L); lua_pushstring(L, err); return 2; }
  lua_pushboolean(L, 1);
  return 1;
}
/* registry.where() -> the registry's place | nil, why ($LWSP_REGISTRY unusable) */
static int l_reg_where(lua_State *L) {
  char buf[2048];
  const char *w = lwsp_registry_where(buf, sizeof buf);
  if (!w) lua_pushnil(L);
  lua_pushstring(L, buf);
  return w ? 1 : 2;
}
/* lwsp.parse_address(text [, family]) -> address table | nil, message */
static int l_parse_address(lua_State *L) {
  SOCKADDR_STORAGE ss;
  int len;
  if (!lwsp_parse_address(luaL_checkstring(L, 1), (int)luaL_optinteger(L, 2, AF_UNSPEC), &ss, &len)) {
    lua_pushnil(L);
    lua_pushfstring(L, "not an address: %s", lua_tostring(L, 1));
    return 2;
  }
  lwsp_push_sockaddr(L, (struct sockaddr *)&ss, len);
  return 1;
}
/* lwsp.format_address(address) -> "a.b.c.d:port" | "[v6]:port" */
static int l_format_address(lua_State *L) {
  SOCKADDR_STORAGE ss;
  int len;
  char out[100];
  if (!lwsp_to_sockaddr(L, 1, &ss, &len) || !lwsp_format_address((struct sockaddr *)&ss, len, out, sizeof out))
    return luaL_argerror(L, 1, "not an IPv4 or IPv6 address");
  lua_pushstring(L, out);
  return 1;
}
/* lwsp.provider_stats() in a provider state: memory and sockets. */
static int l_stats(lua_State *L) {
  lwsp_inst *I = lwsp_inst_of(L);
  uint32_t live = 0;
  if (!I) return 0;
  for (uint32_t i = 0; i < I->nsocks; i++) live += rt_sock_at(I, i)->gen != 0;
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, (lua_Integer)I->mem); lua_setfield(L, -2, "memory");
  lua_pushinteger(L, live); lua_setfield(L, -2, "sockets");
  lua_pushinteger(L, __atomic_load_n(&I->startups, __ATOMIC_RELAXED)); lua_setfield(L, -2, "startups");
  return 1;
}

/* The module.  The host is a module of its own (src/host, require
 * "lwsp.host"), which takes the runtime's link from _runtime in an
 * application's state.  In a provider's own state it is the provider's side
 * only: no _runtime (so no host), no lwsp.trace or lwsp.wsc, no set_log, and
 * a registry that can only be read -- a provider must not drive the host that loaded it, nor change what
 * the process logs, traces or installs. */
LWSP_EXPORT int luaopen_lwsp(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"errname", l_errname}, {"error", l_error}, {"path", l_path}, {"guid", l_guid},
    {"parse_address", l_parse_address}, {"format_address", l_format_address}, {"stats", l_stats},
    {"process_id", l_process_id}, {NULL, NULL}};
  static const luaL_Reg reg[] = {
    {"get", l_reg_get}, {"list", l_reg_list}, {"where", l_reg_where},
    {"set", l_reg_set}, {"remove", l_reg_remove}, {"set_root", l_reg_set_root},
    {"on_failure", l_reg_on_failure}, {"set_on_failure", l_reg_set_on_failure},
    {"config", l_reg_config}, {"set_config", l_reg_set_config}, {NULL, NULL}};
  static const luaL_Reg reg_read[] = {{"get", l_reg_get}, {"list", l_reg_list}, {"where", l_reg_where},
                                      {"on_failure", l_reg_on_failure}, {"config", l_reg_config}, {NULL, NULL}};
  lwsp_inst *I = lwsp_inst_of(L);
  rt_global_init();
  luaL_newlib(L, fns);
  lwsp_log_open(L);
  lua_pushstring(L, LWSP_VERSION);
  lua_setfield(L, -2, "version");
  lwsp_const_open(L);
  lua_setfield(L, -2, "const");
  if (I) luaL_newlib(L, reg_read); else luaL_newlib(L, reg);
  lua_setfield(L, -2, "registry");
  lua_createtable(L, LWSP_NPROCS, 0);
  for (int i = 0; i < LWSP_NPROCS; i++) {
    lua_pushstring(L, lwsp_spi_names[i]);
    lua_setfield(L, -2, lwsp_proc_names[i]);
  }
  lua_setfield(L, -2, "handler_names");
  if (!I) {
    lwsp_push_link(L);
    lua_setfield(L, -2, "_runtime");
    lwsp_trace_open(L);
    lua_setfield(L, -2, "trace");
    lwsp_wsc_open(L);
    lua_setfield(L, -2, "wsc");
  } else {
    lua_pushnil(L);
    lua_setfield(L, -2, "set_log");
  }
  if (I) {
    lwsp_upcalls_open(L, I);
    lua_setfield(L, -2, "upcall");
    rt_pending_open(L, I);
    rt_events_open(L, I);
    rt_lower_open(L, I);
    lua_createtable(L, 0, 4);
    lwsp_push_guid(L, &I->id); lua_setfield(L, -2, "guid");
    lua_pushinteger(L, I->info.dwCatalogEntryId); lua_setfield(L, -2, "catalog_id");
    lwsp_push_protocol_info(L, &I->info); lua_setfield(L, -2, "info");
    lua_pushstring(L, I->script); lua_setfield(L, -2, "script");
    lua_setfield(L, -2, "provider");
  }
  {
    /* the sub-tables under their own names in package.loaded: an argument
     * error raised in one of their functions called from C (pcall, a
     * handler) names it ('lwsp.host.socket'), where Lua's search of the
     * loaded modules, two levels deep, would say '?' */
    static const char *const subs[] = {"host", "registry", "upcall", "trace", "wsc", "lower_methods", NULL};
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    for (const char *const *k = subs; *k; k++) {
      if (lua_getfield(L, -2, *k) == LUA_TTABLE) {
        lua_pushfstring(L, "lwsp.%s", *k);
        lua_insert(L, -2);
        lua_rawset(L, -3);
      } else {
        lua_pop(L, 1);
      }
    }
    lua_pop(L, 1);
  }
  return 1;
}
