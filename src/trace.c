/*
 * trace.c - trace records of every crossing: application calls into the host,
 * WSP calls into each provider, upcalls back, and completions.  Off by
 * default; when off each crossing costs one load and a branch.  Records are
 * kept in memory (lwsp.trace.records) and, when a file is given, written as
 * JSON Lines as they happen.
 */
#include "host.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

volatile int lwsp_tracing;

typedef struct trec {
  unsigned long seq, thread;
  double t;
  char kind[12];       /* call, return, upcall, complete */
  char from[40], to[40];
  char name[40];
  unsigned long long sock;
  int error, depth;
  double us;
} trec;

static trec *recs;
static size_t nrecs, caprecs;
static unsigned long seq;
static double t0;
static FILE *out;
static _Thread_local int depth;
static _Thread_local double starts[64];
static _Thread_local const char *parties[64];   /* who is running on this thread, by depth */

/* The party running on this thread now: "application" outside any call. */
const char *lwsp_trace_party(void) {
  return depth > 0 && depth <= 64 ? parties[depth - 1] : "application";
}

static void add(const char *kind, const char *from, const char *to, const char *name, SOCKET s, int error, double us,
                int d) {
  trec *r;
  lwsp_mutex_lock(&host_lock);
  if (!lwsp_tracing) { lwsp_mutex_unlock(&host_lock); return; }
  if (nrecs == caprecs) {
    size_t nc = caprecs ? caprecs * 2 : 1024;
    trec *n = realloc(recs, nc * sizeof *n);
    if (!n || nc > 1000000) { lwsp_mutex_unlock(&host_lock); return; }
    recs = n;
    caprecs = nc;
  }
  r = &recs[nrecs++];
  memset(r, 0, sizeof *r);
  r->seq = ++seq;
  r->thread = lwsp_thread_id();
  r->t = lwsp_now() - t0;
  snprintf(r->kind, sizeof r->kind, "%s", kind);
  snprintf(r->from, sizeof r->from, "%s", from);
  snprintf(r->to, sizeof r->to, "%s", to);
  snprintf(r->name, sizeof r->name, "%s", name);
  r->sock = (unsigned long long)s;
  r->error = error;
  r->us = us;
  r->depth = d;
  if (out) {
    const char *en = error ? lwsp_error_name(error) : NULL;
    fprintf(out, "{\"seq\":%lu,\"t\":%.6f,\"thread\":%lu,\"kind\":\"%s\",\"from\":\"%s\",\"to\":\"%s\",\"name\":\"%s\","
                 "\"socket\":%llu,\"error\":%d,\"errname\":\"%s\",\"us\":%.1f,\"depth\":%d}\n",
            r->seq, r->t, r->thread, r->kind, r->from, r->to, r->name, r->sock, error, en ? en : "", us, d);
    fflush(out);
  }
  lwsp_mutex_unlock(&host_lock);
}

void lwsp_trace_enter(const char *from, const char *to, const char *name, SOCKET s) {
  if (depth < 64) { starts[depth] = lwsp_now(); parties[depth] = to; }
  add("call", from, to, name, s, 0, 0, depth);
  depth++;
}

void lwsp_trace_leave(const char *from, const char *to, const char *name, SOCKET s, int error) {
  double us = 0;
  if (depth > 0) depth--;
  if (depth < 64) us = (lwsp_now() - starts[depth]) * 1e6;
  add("return", to, from, name, s, error, us, depth);
}

void lwsp_trace_event(const char *kind, const char *from, const char *to, const char *name, SOCKET s, int error) {
  add(kind, from, to, name, s, error, 0, depth);
}

/* trace.start([file]) -> true: clears the records and starts tracing */
static int t_start(lua_State *L) {
  const char *file = luaL_optstring(L, 1, NULL);
  host_init();
  lwsp_mutex_lock(&host_lock);
  if (out) { fclose(out); out = NULL; }
  if (file && !(out = fopen(file, "w"))) { lwsp_mutex_unlock(&host_lock); return luaL_error(L, "cannot write %s", file); }
  nrecs = 0;
  seq = 0;
  t0 = lwsp_now();
  lwsp_tracing = 1;
  lwsp_mutex_unlock(&host_lock);
  lua_pushboolean(L, 1);
  return 1;
}

/* trace.stop() -> number of records */
static int t_stop(lua_State *L) {
  lwsp_mutex_lock(&host_lock);
  lwsp_tracing = 0;
  if (out) { fclose(out); out = NULL; }
  lua_pushinteger(L, (lua_Integer)nrecs);
  lwsp_mutex_unlock(&host_lock);
  return 1;
}

/* trace.records() -> array of {seq, t, thread, kind, from, to, name, socket, error, errname, us, depth} */
static int t_records(lua_State *L) {
  lwsp_mutex_lock(&host_lock);
  lua_createtable(L, (int)nrecs, 0);
  for (size_t i = 0; i < nrecs; i++) {
    trec *r = &recs[i];
    const char *en = r->error ? lwsp_error_name(r->error) : NULL;
    lua_createtable(L, 0, 12);
    lua_pushinteger(L, (lua_Integer)r->seq); lua_setfield(L, -2, "seq");
    lua_pushnumber(L, r->t); lua_setfield(L, -2, "t");
    lua_pushinteger(L, (lua_Integer)r->thread); lua_setfield(L, -2, "thread");
    lua_pushstring(L, r->kind); lua_setfield(L, -2, "kind");
    lua_pushstring(L, r->from); lua_setfield(L, -2, "from");
    lua_pushstring(L, r->to); lua_setfield(L, -2, "to");
    lua_pushstring(L, r->name); lua_setfield(L, -2, "name");
    lua_pushinteger(L, (lua_Integer)r->sock); lua_setfield(L, -2, "socket");
    lua_pushinteger(L, r->error); lua_setfield(L, -2, "error");
    if (en) { lua_pushstring(L, en); lua_setfield(L, -2, "errname"); }
    lua_pushnumber(L, r->us); lua_setfield(L, -2, "us");
    lua_pushinteger(L, r->depth); lua_setfield(L, -2, "depth");
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lwsp_mutex_unlock(&host_lock);
  return 1;
}

/* The host's application calls, each wrapped to trace its entry and exit. */
static int traced(lua_State *L) {
  lua_CFunction f = lua_tocfunction(L, lua_upvalueindex(1));
  const char *name = lua_tostring(L, lua_upvalueindex(2));
  SOCKET s = lua_isinteger(L, 1) ? (SOCKET)lua_tointeger(L, 1) : 0;
  int n, err = 0;
  if (!lwsp_tracing) return f(L);
  lwsp_trace_enter("application", "host", name, s);
  n = f(L);
  if (n >= 3 && lua_isnil(L, -n) && lua_isinteger(L, -n + 2)) err = (int)lua_tointeger(L, -n + 2);
  lwsp_trace_leave("application", "host", name, s, err);
  return n;
}

void lwsp_trace_wrap(lua_State *L, const char *const *names) {
  for (; *names; names++) {
    if (lua_getfield(L, -1, *names) != LUA_TFUNCTION) { lua_pop(L, 1); continue; }
    lua_pushstring(L, *names);
    lua_pushcclosure(L, traced, 2);
    lua_setfield(L, -2, *names);
  }
}

int lwsp_trace_open(lua_State *L) {
  static const luaL_Reg fns[] = {{"start", t_start}, {"stop", t_stop}, {"records", t_records}, {NULL, NULL}};
  luaL_newlib(L, fns);
  return 1;
}
