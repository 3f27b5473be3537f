/*
 * upcalls.c - the upcall table, callable from a provider script as
 * lwsp.upcall.<name>.  Each function calls the host's WPU* entry that the
 * provider received in WSPStartup and returns Lua-style results: the value (or
 * true) on success, nil, "WSAENAME: text", code on failure.
 *
 * Nothing a script hands back is taken as a pointer or as somebody else's
 * object.  An overlapped structure reaches Lua only as an overlapped object
 * (lwsp.wsp_overlapped) that lwsp made for the running call and that dies
 * when the call returns;
 * socket handles a script may close are the ones it created itself, handles
 * it may query are those and its own sockets', catalog ids are its own;
 * events it may close are the ones it created, events it may set or reset are
 * those and the ones the application selected on its sockets; messages go
 * only to a window and message that the application gave one of its sockets
 * in WSPAsyncSelect, with that socket as wParam.  Anything else fails with a
 * Winsock error and a log line, or raises when it is not even the right type.
 */
#include "runtime.h"
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <stdarg.h>

#define THREADID_MT "lwsp.threadid"
#define OVERLAPPED_MT "lwsp.wsp_overlapped"   /* (the host has its own "lwsp.overlapped") */

typedef struct {
  WSATHREADID tid;
  int open;
  lwsp_inst *I;
  uint32_t epoch;
} threadid_ud;

typedef struct {
  LPWSAOVERLAPPED ov;
  SOCKET s;            /* the socket of the call it was given to, */
  lwsp_sock *so;       /* its slot (slots stay put), */
  uint32_t gen;        /* and its generation then */
  uint32_t serial;     /* usable while I->ov_live == serial */
} overlapped_ud;

static lwsp_inst *inst(lua_State *L) {
  lwsp_inst *I = (lwsp_inst *)lua_touserdata(L, lua_upvalueindex(1));
  if (!I) luaL_error(L, "lwsp: upcall without its provider");   /* (its upvalue cannot be replaced from Lua: see lwsp.c) */
  rt_budget_charge(I, L);
  return I;
}

static int ok_or_fail(lua_State *L, int rc, INT err) {
  if (rc != 0) return lwsp_push_error(L, err ? err : WSASYSCALLFAILURE);
  lua_pushboolean(L, 1);
  return 1;
}

/* Logs why a script's argument was refused and returns the failure triple. */
static int refuse(lua_State *L, lwsp_inst *I, int code, const char *fmt, ...) {
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  lwsp_log(I->name, "wsp.upcall: %s", msg);
  return lwsp_push_error(L, code);
}

/* An integer argument that must fit a DWORD (0 .. 2^32-1). */
static DWORD check_dword(lua_State *L, int idx) {
  lua_Integer v = luaL_checkinteger(L, idx);
  luaL_argcheck(L, v >= 0 && v <= (lua_Integer)0xffffffffLL, idx, "out of the 32-bit unsigned range");
  return (DWORD)v;
}
static DWORD opt_dword(lua_State *L, int idx, DWORD def) {
  return lua_isnoneornil(L, idx) ? def : check_dword(L, idx);
}

/* A catalog id of this provider: its own, or one its sockets were opened under. */
static int own_catalog(lwsp_inst *I, DWORD id) {
  if (id == I->info.dwCatalogEntryId) return 1;
  for (uint32_t i = 0; i < I->nsocks; i++) {
    lwsp_sock *so = rt_sock_at(I, i);
    if (so->gen && so->catalog == id) return 1;
  }
  return 0;
}

/* A live socket of this provider whose handle is s (IFS or not), or NULL. */
static lwsp_sock *own_socket(lwsp_inst *I, SOCKET s) {
  for (uint32_t i = 0; i < I->nsocks; i++) {
    lwsp_sock *so = rt_sock_at(I, i);
    if (so->gen && !so->closing && so->handle && so->handle == s) return so;
  }
  return NULL;
}

static SOCKET check_handle(lua_State *L, int idx) {
  lua_Integer v = luaL_checkinteger(L, idx);
  luaL_argcheck(L, v > 0 && (uint64_t)v <= (uint64_t)(SOCKET)~(SOCKET)0, idx, "not a socket handle");
  return (SOCKET)v;
}

/* An event argument: a handle value; whether this provider may use it is checked by the caller. */
static WSAEVENT check_event(lua_State *L, int idx) {
  lua_Integer v = luaL_checkinteger(L, idx);
  luaL_argcheck(L, v != 0 && (uint64_t)v <= (uint64_t)UINTPTR_MAX, idx, "not an event handle");
  return (WSAEVENT)(uintptr_t)v;
}
static int own_event(lwsp_inst *I, WSAEVENT ev) { return lwsp_map_get(&I->own_events, (SOCKET)(uintptr_t)ev) != NULL; }
static int selected_event(lwsp_inst *I, WSAEVENT ev) {
  for (uint32_t i = 0; i < I->nsocks; i++) {
    lwsp_sock *so = rt_sock_at(I, i);
    if (so->gen && !so->closing && so->ev.mode == 1 && so->ev.event == ev) return 1;
  }
  return 0;
}

/* create_socket_handle(catalog_id, context) -> handle; catalog_id must be
 * this provider's (a handle under another provider's entry would hand that
 * provider a context it never made) */
static int u_create_socket_handle(lua_State *L) {
  lwsp_inst *I = inst(L);
  INT e = 0;
  DWORD cat = check_dword(L, 1);
  lua_Integer ctx = luaL_checkinteger(L, 2);
  SOCKET h;
  if (!own_catalog(I, cat))
    return refuse(L, I, WSAEINVALIDPROVIDER, "create_socket_handle: catalog entry %lu is not this provider's", (unsigned long)cat);
  h = I->up.lpWPUCreateSocketHandle(cat, (DWORD_PTR)ctx, &e);
  if (h == INVALID_SOCKET) return lwsp_push_error(L, e ? e : WSASYSCALLFAILURE);
  if (!lwsp_map_put(&I->own_handles, h, (void *)1)) {
    I->up.lpWPUCloseSocketHandle(h, &e);
    return lwsp_push_error(L, WSAENOBUFS);
  }
  lua_pushinteger(L, (lua_Integer)h);
  return 1;
}
/* close_socket_handle(handle) -> true; only a handle the script created */
static int u_close_socket_handle(lua_State *L) {
  lwsp_inst *I = inst(L);
  SOCKET h = check_handle(L, 1);
  INT e = 0;
  int rc;
  if (!lwsp_map_get(&I->own_handles, h))
    return refuse(L, I, WSAENOTSOCK, "close_socket_handle: handle %llu was not created by this provider's script",
                  (unsigned long long)h);
  rc = I->up.lpWPUCloseSocketHandle(h, &e);
  if (rc == 0) lwsp_map_del(&I->own_handles, h);
  return ok_or_fail(L, rc, e);
}
/* query_socket_handle_context(handle) -> context; a handle the script
 * created, or one of this provider's sockets */
static int u_query_socket_handle_context(lua_State *L) {
  lwsp_inst *I = inst(L);
  SOCKET h = check_handle(L, 1);
  INT e = 0;
  DWORD_PTR ctx = 0;
  if (!lwsp_map_get(&I->own_handles, h) && !own_socket(I, h))
    return refuse(L, I, WSAENOTSOCK, "query_socket_handle_context: handle %llu is not this provider's",
                  (unsigned long long)h);
  if (I->up.lpWPUQuerySocketHandleContext(h, &ctx, &e) != 0)
    return lwsp_push_error(L, e ? e : WSASYSCALLFAILURE);
  lua_pushinteger(L, (lua_Integer)ctx);
  return 1;
}
/* modify_ifs_handle(catalog_id, proposed) -> handle */
static int u_modify_ifs_handle(lua_State *L) {
  lwsp_inst *I = inst(L);
  INT e = 0;
  DWORD cat = check_dword(L, 1);
  SOCKET p = check_handle(L, 2), h;
  if (!own_catalog(I, cat))
    return refuse(L, I, WSAEINVALIDPROVIDER, "modify_ifs_handle: catalog entry %lu is not this provider's", (unsigned long)cat);
  h = I->up.lpWPUModifyIFSHandle(cat, p, &e);
  if (h == INVALID_SOCKET) return lwsp_push_error(L, e ? e : WSASYSCALLFAILURE);
  lua_pushinteger(L, (lua_Integer)h);
  return 1;
}
/* create_event() -> event */
static int u_create_event(lua_State *L) {
  lwsp_inst *I = inst(L);
  INT e = 0;
  WSAEVENT ev = I->up.lpWPUCreateEvent(&e);
  if (ev == WSA_INVALID_EVENT) return lwsp_push_error(L, e ? e : WSASYSCALLFAILURE);
  if (!lwsp_map_put(&I->own_events, (SOCKET)(uintptr_t)ev, (void *)1)) {
    I->up.lpWPUCloseEvent(ev, &e);
    return lwsp_push_error(L, WSAENOBUFS);
  }
  lua_pushinteger(L, (lua_Integer)(uintptr_t)ev);
  return 1;
}
static int event_call(lua_State *L, LPWPUSETEVENT fn, const char *name, int may_be_selected) {
  lwsp_inst *I = inst(L);
  WSAEVENT ev = check_event(L, 1);
  INT e = 0;
  if (!own_event(I, ev) && !(may_be_selected && selected_event(I, ev)))
    return refuse(L, I, WSA_INVALID_HANDLE, "%s: event 0x%llx is not one this provider created%s", name,
                  (unsigned long long)(uintptr_t)ev, may_be_selected ? " or one selected on its sockets" : "");
  if (!fn(ev, &e)) return lwsp_push_error(L, e ? e : WSA_INVALID_HANDLE);
  lua_pushboolean(L, 1);
  return 1;
}
/* set_event(event), reset_event(event) -> true: an event the script created
 * or one WSPEventSelect gave a socket of this provider */
static int u_set_event(lua_State *L) { return event_call(L, inst(L)->up.lpWPUSetEvent, "set_event", 1); }
static int u_reset_event(lua_State *L) { return event_call(L, inst(L)->up.lpWPUResetEvent, "reset_event", 1); }
/* close_event(event) -> true: only an event the script created */
static int u_close_event(lua_State *L) {
  lwsp_inst *I = inst(L);
  int n = event_call(L, I->up.lpWPUCloseEvent, "close_event", 0);
  if (lua_toboolean(L, -1)) lwsp_map_del(&I->own_events, (SOCKET)(uintptr_t)check_event(L, 1));
  return n;
}

/* fd_isset(handle, {handles...}) -> boolean, through the host's WPUFDIsSet */
static int u_fd_isset(lua_State *L) {
  wsp_fd_set set;
  lua_Integer n;
  luaL_checktype(L, 2, LUA_TTABLE);
  n = (lua_Integer)lua_rawlen(L, 2);
  luaL_argcheck(L, n <= WSP_FD_SETSIZE, 2, "an fd_set holds at most 64 handles");
  set.fd_count = (unsigned)n;
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, 2, i);
    set.fd_array[i - 1] = (SOCKET)luaL_checkinteger(L, -1);   /* values only: WPUFDIsSet compares them */
    lua_pop(L, 1);
  }
  lua_pushboolean(L, inst(L)->up.lpWPUFDIsSet((SOCKET)luaL_checkinteger(L, 1), &set) != 0);
  return 1;
}

/* get_provider_path(guid) -> path */
static int u_get_provider_path(lua_State *L) {
  GUID g;
  WCHAR path[1024];
  char out[3072];
  INT len = 1024, e = 0;
  if (!lwsp_guid_parse(luaL_checkstring(L, 1), &g)) return luaL_argerror(L, 1, "not a GUID");
  if (inst(L)->up.lpWPUGetProviderPath(&g, path, &len, &e) != 0) return lwsp_push_error(L, e ? e : WSASYSCALLFAILURE);
  lua_pushlstring(L, out, lwsp_utf16_to_utf8(path, lwsp_wcslen(path, 1024), out, sizeof out));
  return 1;
}

/* post_message(hwnd, msg, wparam, lparam) -> boolean: wparam must be a
 * socket of this provider that the application selected with WSPAsyncSelect
 * for that window and message (a window procedure trusts what it is sent) */
static int u_post_message(lua_State *L) {
  lwsp_inst *I = inst(L);
  lua_Integer hwnd = luaL_checkinteger(L, 1), wp = luaL_checkinteger(L, 3), lp = luaL_checkinteger(L, 4);
  DWORD msg = check_dword(L, 2);
  lwsp_sock *so = wp > 0 ? own_socket(I, (SOCKET)wp) : NULL;
  BOOL ok;
  if (!so || so->ev.mode != 2 || (lua_Integer)(uintptr_t)so->ev.hwnd != hwnd || so->ev.msg != msg)
    return refuse(L, I, WSAEINVAL,
                  "post_message: window 0x%llx, message 0x%lx was not selected by the application for socket %lld of this provider",
                  (unsigned long long)hwnd, (unsigned long)msg, (long long)wp);
  luaL_argcheck(L, lp >= 0 && lp <= (lua_Integer)0xffffffffLL, 4, "out of the 32-bit unsigned range");
  ok = I->up.lpWPUPostMessage(so->ev.hwnd, (UINT)msg, (WPARAM)wp, (LPARAM)lp);
  lua_pushboolean(L, ok);
  return 1;
}

/* query_blocking_callback([catalog_id]) -> address, context | false when none */
static int u_query_blocking_callback(lua_State *L) {
  lwsp_inst *I = inst(L);
  LPBLOCKINGCALLBACK fn = NULL;
  DWORD_PTR ctx = 0;
  INT e = 0;
  void *p;
  if (I->up.lpWPUQueryBlockingCallback(opt_dword(L, 1, I->info.dwCatalogEntryId), &fn, &ctx, &e) != 0)
    return lwsp_push_error(L, e ? e : WSASYSCALLFAILURE);
  if (!fn) { lua_pushboolean(L, 0); return 1; }
  memcpy(&p, &fn, sizeof p);
  lua_pushinteger(L, (lua_Integer)(uintptr_t)p);
  lua_pushinteger(L, (lua_Integer)ctx);
  return 2;
}

/* open_current_thread() -> thread id (closed by close_thread or when collected) */
static int u_open_current_thread(lua_State *L) {
  lwsp_inst *I = inst(L);
  threadid_ud *t = lua_newuserdatauv(L, sizeof *t, 0);
  INT e = 0;
  memset(t, 0, sizeof *t);
  luaL_setmetatable(L, THREADID_MT);
  if (I->up.lpWPUOpenCurrentThread(&t->tid, &e) != 0) return lwsp_push_error(L, e ? e : WSASYSCALLFAILURE);
  t->open = 1;
  t->I = I;
  t->epoch = I->epoch;
  return 1;
}
static int close_thread(threadid_ud *t, INT *e) {
  if (!t->open) return 0;
  t->open = 0;
  return t->I->up.lpWPUCloseThread(&t->tid, e);
}
/* close_thread(thread id) -> true */
static int u_close_thread(lua_State *L) {
  threadid_ud *t = luaL_checkudata(L, 1, THREADID_MT);
  INT e = 0;
  int rc = close_thread(t, &e);
  return ok_or_fail(L, rc, e);
}
static int threadid_gc(lua_State *L) {
  INT e = 0;
  close_thread(luaL_checkudata(L, 1, THREADID_MT), &e);
  return 0;
}

/* An APC queued from Lua: runs fn under the provider lock on the target
 * thread, counted as a thread inside the instance, unless the instance has
 * since been cleaned up (or its last WSPCleanup has begun). */
typedef struct { lwsp_inst *I; uint32_t epoch; int ref; } lua_apc;
static void CALLBACK run_lua_apc(DWORD_PTR ctx) {
  lua_apc *a = (lua_apc *)ctx;
  lwsp_inst *I = a->I;
  INT e = 0;
  if (!rt_inst_enter(I, &e)) { free(a); return; }
  if (I->epoch == a->epoch) {
    lua_State *L = I->L;
    int top = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, a->ref);
    luaL_unref(L, LUA_REGISTRYINDEX, a->ref);
    rt_run_limited(I, L, "APC");
    lua_settop(L, top);
  }
  rt_inst_leave(I);
  lwsp_mutex_unlock(&I->lock);
  free(a);
}
/* queue_apc(thread id, fn) -> true; fn runs on that thread in an alertable wait */
static int u_queue_apc(lua_State *L) {
  lwsp_inst *I = inst(L);
  threadid_ud *t = luaL_checkudata(L, 1, THREADID_MT);
  lua_apc *a;
  INT e = 0;
  luaL_checktype(L, 2, LUA_TFUNCTION);
  luaL_argcheck(L, t->open, 1, "thread id is closed");
  if (!(a = malloc(sizeof *a))) return lwsp_push_error(L, WSAENOBUFS);
  a->I = I;
  a->epoch = I->epoch;
  lua_pushvalue(L, 2);
  a->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (I->up.lpWPUQueueApc(&t->tid, run_lua_apc, (DWORD_PTR)a, &e) != 0) {
    luaL_unref(L, LUA_REGISTRYINDEX, a->ref);
    free(a);
    return lwsp_push_error(L, e ? e : WSASYSCALLFAILURE);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* ---- overlapped structures: checked objects ---------------------------------- */
void rt_push_overlapped(rt_call *c, LPWSAOVERLAPPED ov) {
  lwsp_inst *I = c->I;
  overlapped_ud *u = lua_newuserdatauv(c->co, sizeof *u, 0);
  u->ov = ov;
  u->s = c->so ? c->so->handle : 0;
  u->so = c->so;
  u->gen = c->so ? c->so->gen : 0;
  if (++I->ov_serial == 0) ++I->ov_serial;
  u->serial = c->ov_serial = I->ov_live = I->ov_serial;
  luaL_setmetatable(c->co, OVERLAPPED_MT);
}

/* The live overlapped at idx: raises on anything else. */
static overlapped_ud *check_overlapped(lua_State *L, lwsp_inst *I, int idx) {
  overlapped_ud *u = luaL_checkudata(L, idx, OVERLAPPED_MT);
  if (u->serial == 0 || u->serial != I->ov_live) luaL_argerror(L, idx, "overlapped used after its call returned");
  return u;
}

/* ov.Internal, .InternalHigh, .Offset, .OffsetHigh while live; ov.address always */
static int ov_index(lua_State *L) {
  lwsp_inst *I = lua_touserdata(L, lua_upvalueindex(1));
  overlapped_ud *u = luaL_checkudata(L, 1, OVERLAPPED_MT);
  const char *k = luaL_checkstring(L, 2);
  if (strcmp(k, "address") == 0) { lua_pushinteger(L, (lua_Integer)(uintptr_t)u->ov); return 1; }
  check_overlapped(L, I, 1);
  if (strcmp(k, "Internal") == 0) lua_pushinteger(L, (lua_Integer)u->ov->Internal);
  else if (strcmp(k, "InternalHigh") == 0) lua_pushinteger(L, (lua_Integer)u->ov->InternalHigh);
  else if (strcmp(k, "Offset") == 0) lua_pushinteger(L, (lua_Integer)u->ov->Offset);
  else if (strcmp(k, "OffsetHigh") == 0) lua_pushinteger(L, (lua_Integer)u->ov->OffsetHigh);
  else lua_pushnil(L);
  return 1;
}
static int ov_tostring(lua_State *L) {
  lwsp_inst *I = lua_touserdata(L, lua_upvalueindex(1));
  overlapped_ud *u = luaL_checkudata(L, 1, OVERLAPPED_MT);
  lua_pushfstring(L, "overlapped (%s)", u->serial == I->ov_live ? "live" : "its call returned");
  return 1;
}

/* complete_overlapped_request(handle, overlapped, error, bytes) -> true: the
 * overlapped object of the running call, on its own socket */
static int u_complete_overlapped_request(lua_State *L) {
  lwsp_inst *I = inst(L);
  INT e = 0;
  SOCKET s = check_handle(L, 1);
  overlapped_ud *u = check_overlapped(L, I, 2);
  DWORD error = check_dword(L, 3), bytes = check_dword(L, 4);
  if (!I->complete) return lwsp_push_error(L, WSASYSCALLFAILURE);
  if (rt_find_op(I, u->ov))   /* completed twice, the second write could land after the application freed it */
    return refuse(L, I, WSAEINVAL, "complete_overlapped_request: an operation of this provider on that overlapped is "
                  "still pending; lwsp completes it");
  if (s == u->s && u->so && u->so->gen == u->gen && !u->so->closing)   /* (the usual case, in O(1)) */
    return ok_or_fail(L, I->complete(s, u->ov, error, bytes, &e), e);
  if (!own_socket(I, s))
    return refuse(L, I, WSAENOTSOCK, "complete_overlapped_request: handle %llu is not a socket of this provider",
                  (unsigned long long)s);
  return refuse(L, I, WSAEINVAL, "complete_overlapped_request: the overlapped was given for socket %llu, not %llu%s",
                (unsigned long long)u->s, (unsigned long long)s, s == u->s ? " (closed since)" : "");
}

/* Cleanup: handles and events the script created and left open go with it. */
static void close_handle_cb(SOCKET h, void *v, void *ud) {
  lwsp_inst *I = ud;
  INT e = 0;
  (void)v;
  I->up.lpWPUCloseSocketHandle(h, &e);
}
static void close_event_cb(SOCKET h, void *v, void *ud) {
  lwsp_inst *I = ud;
  INT e = 0;
  (void)v;
  I->up.lpWPUCloseEvent((WSAEVENT)(uintptr_t)h, &e);
}
void rt_upcalls_close(lwsp_inst *I) {
  lwsp_map_each(&I->own_handles, close_handle_cb, I);
  lwsp_map_each(&I->own_events, close_event_cb, I);
  lwsp_map_free(&I->own_handles);
  lwsp_map_free(&I->own_events);
  I->ov_live = 0;
}

int lwsp_upcalls_open(lua_State *L, void *instp) {
  static const luaL_Reg fns[] = {
    {"create_socket_handle", u_create_socket_handle}, {"close_socket_handle", u_close_socket_handle},
    {"query_socket_handle_context", u_query_socket_handle_context}, {"modify_ifs_handle", u_modify_ifs_handle},
    {"create_event", u_create_event}, {"set_event", u_set_event}, {"reset_event", u_reset_event},
    {"close_event", u_close_event}, {"fd_isset", u_fd_isset}, {"get_provider_path", u_get_provider_path},
    {"post_message", u_post_message}, {"query_blocking_callback", u_query_blocking_callback},
    {"open_current_thread", u_open_current_thread}, {"close_thread", u_close_thread},
    {"queue_apc", u_queue_apc}, {"complete_overlapped_request", u_complete_overlapped_request},
    {NULL, NULL}};
  if (luaL_newmetatable(L, THREADID_MT)) {
    lua_pushcfunction(L, threadid_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushliteral(L, THREADID_MT);
    lua_setfield(L, -2, "__metatable");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, OVERLAPPED_MT)) {
    static const luaL_Reg ov_fns[] = {{"__index", ov_index}, {"__tostring", ov_tostring}, {NULL, NULL}};
    lua_pushlightuserdata(L, instp);
    luaL_setfuncs(L, ov_fns, 1);
    lua_pushliteral(L, OVERLAPPED_MT);
    lua_setfield(L, -2, "__metatable");
  }
  lua_pop(L, 1);
  luaL_newlibtable(L, fns);
  lua_pushlightuserdata(L, instp);
  luaL_setfuncs(L, fns, 1);
  return 1;
}
