/*
 * trace.c - trace records of every crossing: application calls into the host,
 * WSP calls into each provider, upcalls back, and completions.  Off by
 * default; when off each crossing costs one load and a branch.  Records are
 * kept in memory (lwsp.trace.records) and, when a file is given, written as
 * JSON Lines as they happen.
 */
#include "runtime.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef LWSP_NO_TRACE
int lwsp_tracing_flag;
#endif

typedef struct trec {
  unsigned long seq, thread;
  double t;
  char kind[12];       /* call, return, upcall, complete */
  char from[40], to[40];
  char name[40];
  unsigned long long sock;
  int error, depth;
  double us;
  char args[LWSP_TRACE_TEXT], res[LWSP_TRACE_TEXT];   /* arguments in, results out, summarised */
  int open;            /* a call whose arguments are still to come */
  char *log;           /* log lines written on this thread since its last return (malloc'd) */
} trec;

/* Guards the records and the file; taken last (under a provider's lock or
 * the host's), and nothing is called with it held. */
static lwsp_mutex trace_lock;

/* Called once, from the runtime's global init (lwsp.c), before any record. */
void lwsp_trace_init(void) { lwsp_mutex_init(&trace_lock); }

static trec *recs;
static size_t nrecs, caprecs, written;   /* written: records already in the file */
static unsigned long seq;
static double t0;
static FILE *out;
static _Thread_local int depth;
static _Thread_local double starts[64];
static _Thread_local const char *parties[64];   /* who is running on this thread, by depth */

static _Thread_local const char *self_party;   /* acting as this party ... */
static _Thread_local int self_depth;            /* ... at this call depth */
static _Thread_local int app_thread;            /* the application has called the host on this thread */
static _Thread_local int app_api;               /* inside an application call that uses an upcall's code */
static _Thread_local char *pending_log;         /* log lines for this thread's next return record */

/* lwsp_log's hook: while tracing, a log line waits for the next return on
 * its thread (the call that wrote it, or the one it ran under). */
static void trace_log_line(const char *line) {
  size_t have, n;
  char *m;
  if (!lwsp_tracing || depth == 0) return;
  have = pending_log ? strlen(pending_log) : 0;
  n = strlen(line);
  if (have + n > 16384) return;
  if (!(m = realloc(pending_log, have + n + 2))) return;
  if (have) m[have++] = '\n';
  memcpy(m + have, line, n + 1);
  pending_log = m;
}

void lwsp_trace_app_thread(void) { app_thread = 1; }
void lwsp_trace_app_api(int on) { app_api = on; }

/* The party running on this thread now: outside any call, "application" on
 * the application's threads, "provider thread" on a thread of a provider's own. */
const char *lwsp_trace_party(void) {
  if (self_party && depth == self_depth) return self_party;
  if (depth > 0 && depth <= 64) return parties[depth - 1];
  return app_thread ? "application" : "provider thread";
}

lwsp_trace_self_t lwsp_trace_self(const char *party) {
  lwsp_trace_self_t prev = {self_party, self_depth};
  self_party = party;
  self_depth = depth;
  return prev;
}

void lwsp_trace_restore(lwsp_trace_self_t prev) {
  self_party = prev.party;
  self_depth = prev.depth;
}

/* A JSON string body: quotes, backslashes and control characters escaped. */
static void json_str(FILE *f, const char *s) {
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\') fprintf(f, "\\%c", ch);
    else if (ch < 0x20) fprintf(f, "\\u%04x", ch);
    else fputc(ch, f);
  }
}

/* Writes the records not yet in the file, in order, up to the first one still
 * waiting for its arguments.  Under trace_lock. */
static void flush_file(void) {
  for (; out && written < nrecs && !recs[written].open; written++) {
    trec *r = &recs[written];
    const char *en = r->error ? lwsp_error_name(r->error) : NULL;
    fprintf(out, "{\"seq\":%lu,\"t\":%.6f,\"thread\":%lu,\"kind\":\"%s\",\"from\":\"", r->seq, r->t, r->thread, r->kind);
    json_str(out, r->from);
    fputs("\",\"to\":\"", out);
    json_str(out, r->to);
    fputs("\",\"name\":\"", out);
    json_str(out, r->name);
    fprintf(out, "\",\"socket\":%llu,\"error\":%d,\"errname\":\"%s\",\"us\":%.1f,\"depth\":%d,\"args\":\"", r->sock,
            r->error, en ? en : "", r->us, r->depth);
    json_str(out, r->args);
    fputs("\",\"result\":\"", out);
    json_str(out, r->res);
    if (r->log) { fputs("\",\"log\":\"", out); json_str(out, r->log); }
    fputs("\"}\n", out);
  }
  if (out) fflush(out);
}

static unsigned long add(const char *kind, const char *from, const char *to, const char *name, SOCKET s, int error,
                         double us, int d, const char *args, const char *res) {
  trec *r;
  unsigned long n;
  lwsp_mutex_lock(&trace_lock);
  if (!lwsp_tracing) { lwsp_mutex_unlock(&trace_lock); return 0; }
  if (nrecs == caprecs) {
    size_t nc = caprecs ? caprecs * 2 : 1024;
    trec *m = nc > 1000000 ? NULL : realloc(recs, nc * sizeof *m);
    if (!m) { lwsp_mutex_unlock(&trace_lock); return 0; }
    recs = m;
    caprecs = nc;
  }
  r = &recs[nrecs++];
  memset(r, 0, sizeof *r);
  r->seq = n = ++seq;
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
  r->open = args == NULL && strcmp(kind, "call") == 0;
  snprintf(r->args, sizeof r->args, "%s", args ? args : "");
  snprintf(r->res, sizeof r->res, "%s", res ? res : "");
  if (pending_log && kind[0] == 'r') { r->log = pending_log; pending_log = NULL; }
  flush_file();
  lwsp_mutex_unlock(&trace_lock);
  return n;
}

void lwsp_trace_args(unsigned long n, const char *args, SOCKET s) {
  lwsp_mutex_lock(&trace_lock);
  if (n >= 1 && n <= nrecs && recs[n - 1].seq == n && recs[n - 1].open) {
    if (s) recs[n - 1].sock = (unsigned long long)s;
    snprintf(recs[n - 1].args, sizeof recs[n - 1].args, "%s", args ? args : "");
    recs[n - 1].open = 0;
    flush_file();
  }
  lwsp_mutex_unlock(&trace_lock);
}

unsigned long lwsp_trace_enter(const char *from, const char *to, const char *name, SOCKET s, const char *args) {
  unsigned long n;
  if (depth < 64) { starts[depth] = lwsp_now(); parties[depth] = to; }
  n = add("call", from, to, name, s, 0, 0, depth, args, NULL);
  depth++;
  return n;
}

void lwsp_trace_leave(const char *from, const char *to, const char *name, SOCKET s, int error, const char *res) {
  double us = 0;
  if (depth > 0) depth--;
  if (depth < 64) us = (lwsp_now() - starts[depth]) * 1e6;
  add("return", to, from, name, s, error, us, depth, NULL, res);
}

/* (the application's WSACreateEvent and the like share the upcalls' code: not upcalls) */
void lwsp_trace_event(const char *kind, const char *from, const char *to, const char *name, SOCKET s, int error) {
  if (app_api && depth == 0 && kind[0] == 'u') return;
  add(kind, from, to, name, s, error, 0, depth, "", NULL);
}

void lwsp_trace_event_args(const char *kind, const char *from, const char *to, const char *name, SOCKET s, int error,
                           const char *args) {
  if (app_api && depth == 0 && kind[0] == 'u') return;
  add(kind, from, to, name, s, error, 0, depth, args ? args : "", NULL);
}

/* A protocol info table (lwsp_push_protocol_info's), by the fields that say
 * what it is: "{entry 1006, type 1, protocol 6, chain 1005 1001}". */
static int protocol_info(lua_State *L, int t, char *buf, size_t n) {
  static const char *const fields[] = {"dwCatalogEntryId", "iSocketType", "iProtocol"};
  lua_Integer v[3];
  size_t used;
  for (int k = 0; k < 3; k++) {
    lua_pushstring(L, fields[k]);
    if (lua_rawget(L, t) != LUA_TNUMBER || !lua_isinteger(L, -1)) { lua_pop(L, 1); return 0; }
    v[k] = lua_tointeger(L, -1);
    lua_pop(L, 1);
  }
  used = (size_t)snprintf(buf, n, "{entry %lld, type %lld, protocol %lld", (long long)v[0], (long long)v[1],
                          (long long)v[2]);
  lua_pushliteral(L, "ProtocolChain");
  if (lua_rawget(L, t) == LUA_TTABLE && used < n) {
    lua_Integer len = (lua_Integer)lua_rawlen(L, -1);
    used += (size_t)snprintf(buf + used, n - used, ", chain");
    for (lua_Integer i = 1; i <= len && i <= 7 && used < n; i++) {
      lua_rawgeti(L, -1, i);
      used += (size_t)snprintf(buf + used, n - used, " %lld", (long long)lua_tointeger(L, -1));
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  if (used < n) snprintf(buf + used, n - used, "}");
  return 1;
}

/* An array of integers or sockets (an fd_set's handles, a list of events):
 * "{264, 268}", "{s264}"; its first few, then "...". */
static int array(lua_State *L, int t, char *buf, size_t n) {
  lua_Integer len = (lua_Integer)lua_rawlen(L, t);
  size_t used;
  if (len == 0) {   /* an empty table: "{}" */
    lua_pushnil(L);
    if (lua_next(L, t)) { lua_pop(L, 2); return 0; }
    snprintf(buf, n, "{}");
    return 1;
  }
  used = (size_t)snprintf(buf, n, "{");
  for (lua_Integer i = 1; i <= len; i++) {
    char one[24];
    int ty = lua_rawgeti(L, t, i);
    if (ty == LUA_TNUMBER && lua_isinteger(L, -1)) snprintf(one, sizeof one, "%lld", (long long)lua_tointeger(L, -1));
    else if (ty == LUA_TTABLE) {
      lua_pushliteral(L, "handle");
      if (lua_rawget(L, -2) != LUA_TNUMBER) { lua_pop(L, 2); return 0; }
      snprintf(one, sizeof one, "s%lld", (long long)lua_tointeger(L, -1));
      lua_pop(L, 1);
    } else { lua_pop(L, 1); return 0; }
    lua_pop(L, 1);
    if (used + strlen(one) + 8 >= n) { used += (size_t)snprintf(buf + used, n - used, ", ..."); break; }
    used += (size_t)snprintf(buf + used, n - used, "%s%s", i > 1 ? ", " : "", one);
  }
  if (used < n) snprintf(buf + used, n - used, "}");
  return 1;
}

/* One value, briefly: numbers, short strings quoted, longer ones by length,
 * sockets (a table with a handle) as sN, addresses as text.  Raw access only:
 * a handler's values may carry metamethods that must not run here. */
static void one_value(lua_State *L, int i, char *buf, size_t n) {
  switch (lua_type(L, i)) {
  case LUA_TNUMBER:
    if (lua_isinteger(L, i)) snprintf(buf, n, "%lld", (long long)lua_tointeger(L, i));
    else snprintf(buf, n, "%.6g", (double)lua_tonumber(L, i));
    return;
  case LUA_TBOOLEAN: snprintf(buf, n, "%s", lua_toboolean(L, i) ? "true" : "false"); return;
  case LUA_TNIL: snprintf(buf, n, "nil"); return;
  case LUA_TSTRING: {
    size_t len, k;
    const char *str = lua_tolstring(L, i, &len);
    int printable = len <= 24;
    for (k = 0; printable && k < len; k++)
      if ((unsigned char)str[k] < 0x20 || (unsigned char)str[k] >= 0x7f || str[k] == '"') printable = 0;
    if (printable) snprintf(buf, n, "\"%s\"", str);
    else snprintf(buf, n, "<%zu bytes>", len);
    return;
  }
  case LUA_TTABLE: {
    int t = lua_absindex(L, i);
    lua_pushliteral(L, "handle");
    if (lua_rawget(L, t) == LUA_TNUMBER) {
      snprintf(buf, n, "s%lld", (long long)lua_tointeger(L, -1));
      lua_pop(L, 1);
      return;
    }
    lua_pop(L, 1);
    lua_pushliteral(L, "address");
    if (lua_rawget(L, t) == LUA_TSTRING) {
      const char *a = lua_tostring(L, -1);
      long long port = 0;
      lua_pushliteral(L, "port");
      if (lua_rawget(L, t) == LUA_TNUMBER) port = (long long)lua_tointeger(L, -1);
      snprintf(buf, n, strchr(a, ':') ? "[%s]:%lld" : "%s:%lld", a, port);
      lua_pop(L, 2);
      return;
    }
    lua_pop(L, 1);
    if (protocol_info(L, t, buf, n) || array(L, t, buf, n)) return;
    snprintf(buf, n, "{...}");
    return;
  }
  default: snprintf(buf, n, "<%s>", luaL_typename(L, i)); return;
  }
}

void lwsp_trace_values(lua_State *L, int first, int last, char *buf, size_t n) {
  size_t used = 0;
  buf[0] = 0;
  if (!lua_checkstack(L, 4)) return;
  for (int i = first; i <= last && used + 1 < n; i++) {
    char one[72];
    one_value(L, i, one, sizeof one);
    used += (size_t)snprintf(buf + used, n - used, "%s%s", i > first ? ", " : "", one);
  }
  if (used >= n && n > 4) memcpy(buf + n - 4, "...", 4);
}

void lwsp_trace_protocol_info(char *buf, size_t n, const WSAPROTOCOL_INFOW *pi) {
  size_t used = (size_t)snprintf(buf, n, "{entry %lu, type %d, protocol %d, chain", (unsigned long)pi->dwCatalogEntryId,
                                 pi->iSocketType, pi->iProtocol);
  for (int i = 0; i < pi->ProtocolChain.ChainLen && i < MAX_PROTOCOL_CHAIN && used < n; i++)
    used += (size_t)snprintf(buf + used, n - used, " %lu", (unsigned long)pi->ProtocolChain.ChainEntries[i]);
  if (used < n) snprintf(buf + used, n - used, "}");
}

static size_t one_set(char *buf, size_t n, const wsp_fd_set *set) {
  size_t used;
  unsigned i, k = set ? set->fd_count : 0;
  if (!set) return (size_t)snprintf(buf, n, "nil");
  used = (size_t)snprintf(buf, n, "{");
  for (i = 0; i < k && i < WSP_FD_SETSIZE && used + 28 < n; i++)
    used += (size_t)snprintf(buf + used, n - used, "%s%llu", i ? ", " : "", (unsigned long long)set->fd_array[i]);
  if (used < n) used += (size_t)snprintf(buf + used, n - used, "%s}", i < k ? ", ..." : "");
  return used;
}

void lwsp_trace_fdsets(char *buf, size_t n, const wsp_fd_set *r, const wsp_fd_set *w, const wsp_fd_set *e,
                       const wsp_timeval *tv) {
  const wsp_fd_set *sets[3] = {r, w, e};
  size_t used = 0;
  buf[0] = 0;
  for (int k = 0; k < 3 && used < n; k++) {
    if (k && used + 2 < n) used += (size_t)snprintf(buf + used, n - used, ", ");
    if (used < n) used += one_set(buf + used, n - used, sets[k]);
  }
  if (used >= n) return;
  if (tv) snprintf(buf + used, n - used, ", %g", (double)tv->tv_sec + (double)tv->tv_usec / 1e6);
  else snprintf(buf + used, n - used, ", nil");
}

/* trace.start([file]) -> true: clears the records and starts tracing */
static int t_start(lua_State *L) {
  const char *file = luaL_optstring(L, 1, NULL);
  lwsp_mutex_lock(&trace_lock);
  if (out) { fclose(out); out = NULL; }
  if (file && !(out = fopen(file, "w"))) { lwsp_mutex_unlock(&trace_lock); return luaL_error(L, "cannot write %s", file); }
  for (size_t i = 0; i < nrecs; i++) { free(recs[i].log); recs[i].log = NULL; }
  nrecs = 0;
  written = 0;
  seq = 0;
  t0 = lwsp_now();
#ifdef LWSP_NO_TRACE
  if (out) { fclose(out); out = NULL; }
  lwsp_mutex_unlock(&trace_lock);
  return luaL_error(L, "this lwsp was built without tracing (LWSP_NO_TRACE)");
#else
  __atomic_store_n(&lwsp_tracing_flag, 1, __ATOMIC_RELAXED);
#endif
  lwsp_mutex_unlock(&trace_lock);
  lua_pushboolean(L, 1);
  return 1;
}

/* trace.stop() -> number of records */
static int t_stop(lua_State *L) {
  size_t n;
  lwsp_mutex_lock(&trace_lock);
#ifndef LWSP_NO_TRACE
  __atomic_store_n(&lwsp_tracing_flag, 0, __ATOMIC_RELAXED);
#endif
  for (size_t i = written; i < nrecs; i++) recs[i].open = 0;   /* a call still running: written without arguments */
  flush_file();
  if (out) { fclose(out); out = NULL; }
  n = nrecs;
  lwsp_mutex_unlock(&trace_lock);
  lua_pushinteger(L, (lua_Integer)n);
  return 1;
}

/* trace.records() -> array of {seq, t, thread, kind, from, to, name, socket, error, errname, us, depth}
 *
 * No Lua call runs under trace_lock: an allocation may run a finalizer that
 * takes a provider's lock or the host's, which are taken before trace_lock
 * everywhere else (and a memory error would leave the lock held).  So the
 * records are copied into a userdata under the lock, then turned into tables
 * without it. */
static int t_records(lua_State *L) {
  size_t n, logs = 0, cap, have, used;
  trec *snap;
  char *text;
  /* how much room: counted under the lock, allocated without it */
  lwsp_mutex_lock(&trace_lock);
  n = nrecs;
  for (size_t i = 0; i < n; i++)
    if (recs[i].log) logs += strlen(recs[i].log) + 1;
  lwsp_mutex_unlock(&trace_lock);
  cap = n * sizeof(trec) + logs;
  snap = lua_newuserdatauv(L, cap ? cap : 1, 0);
  text = (char *)(snap + n);
  used = 0;
  /* the copy: records kept meanwhile past n are left for the next call, and
   * a log that no longer fits (a trace.start in between) is left out */
  lwsp_mutex_lock(&trace_lock);
  have = nrecs < n ? nrecs : n;
  memcpy(snap, recs, have * sizeof(trec));
  for (size_t i = 0; i < have; i++) {
    size_t len;
    if (!recs[i].log) continue;
    len = strlen(recs[i].log) + 1;
    if (used + len > logs) { snap[i].log = NULL; continue; }
    memcpy(text + used, recs[i].log, len);
    snap[i].log = text + used;
    used += len;
  }
  lwsp_mutex_unlock(&trace_lock);
  lua_createtable(L, (int)have, 0);
  for (size_t i = 0; i < have; i++) {
    trec *r = &snap[i];
    const char *en = r->error ? lwsp_error_name(r->error) : NULL;
    lua_createtable(L, 0, 14);
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
    lua_pushstring(L, r->args); lua_setfield(L, -2, "args");
    lua_pushstring(L, r->res); lua_setfield(L, -2, "result");
    if (r->log) { lua_pushstring(L, r->log); lua_setfield(L, -2, "log"); }
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

/* The host's application calls, each wrapped to trace its entry and exit. */
static int traced(lua_State *L) {
  lua_CFunction f = lua_tocfunction(L, lua_upvalueindex(1));
  const char *name = lua_tostring(L, lua_upvalueindex(2));
  SOCKET s;
  int n, err = 0;
  char text[LWSP_TRACE_TEXT];
  if (!lwsp_tracing) return f(L);
  app_thread = 1;
  /* the socket: the first argument, but for the calls whose first argument is
   * something else (socket() gets its socket from its result) */
  s = 0;
  if (lua_isinteger(L, 1)) {
    static const char *const not_socket[] = {"socket", "select", "address_to_string", "string_to_address",
                                             "cancel_blocking_call", "sleep", "wait", "dequeue", "messages", NULL};
    const char *const *k = not_socket;
    while (*k && strcmp(*k, name)) k++;
    if (!*k) s = (SOCKET)lua_tointeger(L, 1);
  }
  lwsp_trace_values(L, 1, lua_gettop(L), text, sizeof text);
  lwsp_trace_enter("application", "host", name, s, text);
  /* run protected, so a raised argument error still closes the record */
  lua_pushcfunction(L, f);
  lua_insert(L, 1);
  if (lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, 0) != LUA_OK) {
    lwsp_trace_leave("application", "host", name, s, 0, "raised an error");
    return lua_error(L);
  }
  n = lua_gettop(L);
  if (n >= 3 && lua_isnil(L, -n) && lua_isinteger(L, -n + 2)) err = (int)lua_tointeger(L, -n + 2);
  text[0] = 0;
  if (!err) lwsp_trace_values(L, lua_gettop(L) - n + 1, lua_gettop(L), text, sizeof text);
  if (!err && n >= 1 && !strcmp(name, "socket") && lua_isinteger(L, -n)) s = (SOCKET)lua_tointeger(L, -n);
  lwsp_trace_leave("application", "host", name, s, err, text);
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
  /* set once, when lwsp is first loaded (before any thread of its own runs) */
  if (lwsp_log_hook != trace_log_line) lwsp_log_hook = trace_log_line;
  luaL_newlib(L, fns);
  return 1;
}
