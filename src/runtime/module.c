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
  &lwsp_tracing,
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

