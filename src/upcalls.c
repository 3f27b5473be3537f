/*
 * upcalls.c - the upcall table, callable from a provider script as
 * lwsp.upcall.<name>.  Each function calls the host's WPU* entry that the
 * provider received in WSPStartup and returns Lua-style results: the value (or
 * true) on success, nil, "WSAENAME: text", code on failure.
 */
#include "runtime.h"
#include <stdlib.h>
#include <string.h>

#define THREADID_MT "lwsp.threadid"

typedef struct {
  WSATHREADID tid;
  int open;
  lwsp_inst *I;
  uint32_t epoch;
} threadid_ud;

static lwsp_inst *inst(lua_State *L) {
  return (lwsp_inst *)lua_touserdata(L, lua_upvalueindex(1));
}

static int ok_or_fail(lua_State *L, int rc, INT err) {
  if (rc != 0) return lwsp_push_error(L, err ? err : WSASYSCALLFAILURE);
  lua_pushboolean(L, 1);
  return 1;
}

static WSAEVENT check_event(lua_State *L, int idx) {
  return (WSAEVENT)(uintptr_t)luaL_checkinteger(L, idx);
}

/* create_socket_handle(catalog_id, context) -> handle */
static int u_create_socket_handle(lua_State *L) {
  lwsp_inst *I = inst(L);
  INT e = 0;
  SOCKET h = I->up.lpWPUCreateSocketHandle((DWORD)luaL_checkinteger(L, 1), (DWORD_PTR)luaL_checkinteger(L, 2), &e);
  if (h == INVALID_SOCKET) return lwsp_push_error(L, e ? e : WSASYSCALLFAILURE);
  lua_pushinteger(L, (lua_Integer)h);
  return 1;
}
/* close_socket_handle(handle) -> true */
static int u_close_socket_handle(lua_State *L) {
  INT e = 0;
  int rc = inst(L)->up.lpWPUCloseSocketHandle((SOCKET)luaL_checkinteger(L, 1), &e);
  return ok_or_fail(L, rc, e);
}
/* query_socket_handle_context(handle) -> context */
static int u_query_socket_handle_context(lua_State *L) {
  INT e = 0;
  DWORD_PTR ctx = 0;
  if (inst(L)->up.lpWPUQuerySocketHandleContext((SOCKET)luaL_checkinteger(L, 1), &ctx, &e) != 0)
    return lwsp_push_error(L, e ? e : WSASYSCALLFAILURE);
  lua_pushinteger(L, (lua_Integer)ctx);
  return 1;
}
/* modify_ifs_handle(catalog_id, proposed) -> handle */
static int u_modify_ifs_handle(lua_State *L) {
  INT e = 0;
  SOCKET h = inst(L)->up.lpWPUModifyIFSHandle((DWORD)luaL_checkinteger(L, 1), (SOCKET)luaL_checkinteger(L, 2), &e);
  if (h == INVALID_SOCKET) return lwsp_push_error(L, e ? e : WSASYSCALLFAILURE);
  lua_pushinteger(L, (lua_Integer)h);
  return 1;
}
/* create_event() -> event */
static int u_create_event(lua_State *L) {
  INT e = 0;
  WSAEVENT ev = inst(L)->up.lpWPUCreateEvent(&e);
  if (ev == WSA_INVALID_EVENT) return lwsp_push_error(L, e ? e : WSASYSCALLFAILURE);
  lua_pushinteger(L, (lua_Integer)(uintptr_t)ev);
  return 1;
}
static int event_call(lua_State *L, LPWPUSETEVENT fn) {
  INT e = 0;
  if (!fn(check_event(L, 1), &e)) return lwsp_push_error(L, e ? e : WSA_INVALID_HANDLE);
  lua_pushboolean(L, 1);
  return 1;
}
/* set_event(event), reset_event(event), close_event(event) -> true */
static int u_set_event(lua_State *L) { return event_call(L, inst(L)->up.lpWPUSetEvent); }
static int u_reset_event(lua_State *L) { return event_call(L, inst(L)->up.lpWPUResetEvent); }
static int u_close_event(lua_State *L) { return event_call(L, inst(L)->up.lpWPUCloseEvent); }

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
    set.fd_array[i - 1] = (SOCKET)luaL_checkinteger(L, -1);
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

/* post_message(hwnd, msg, wparam, lparam) -> boolean */
static int u_post_message(lua_State *L) {
  BOOL ok = inst(L)->up.lpWPUPostMessage((HWND)(uintptr_t)luaL_checkinteger(L, 1), (UINT)luaL_checkinteger(L, 2),
                                         (WPARAM)luaL_checkinteger(L, 3), (LPARAM)luaL_checkinteger(L, 4));
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
  if (I->up.lpWPUQueryBlockingCallback((DWORD)luaL_optinteger(L, 1, I->info.dwCatalogEntryId), &fn, &ctx, &e) != 0)
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
    rt_run_mark run;
    I->limited = 1;
    I->lua_runs++;
    run = rt_budget_enter(I, L);
    if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
      I->limited = 0;
      lwsp_log(I->name, "APC raised an error: %s", lua_tostring(L, -1));
    }
    I->limited = 0;
    rt_budget_leave(I, run);
    rt_budget_disarm(L);   /* lwsp's own code runs on L next */
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

/* complete_overlapped_request(handle, overlapped, error, bytes) -> true */
static int u_complete_overlapped_request(lua_State *L) {
  lwsp_inst *I = inst(L);
  INT e = 0;
  int rc;
  LPWSAOVERLAPPED ov = (LPWSAOVERLAPPED)(uintptr_t)luaL_checkinteger(L, 2);
  if (!I->complete) return lwsp_push_error(L, WSASYSCALLFAILURE);
  luaL_argcheck(L, ov != NULL, 2, "NULL overlapped");
  rc = I->complete((SOCKET)luaL_checkinteger(L, 1), ov, (DWORD)luaL_checkinteger(L, 3), (DWORD)luaL_checkinteger(L, 4), &e);
  return ok_or_fail(L, rc, e);
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
  }
  lua_pop(L, 1);
  luaL_newlibtable(L, fns);
  lua_pushlightuserdata(L, instp);
  luaL_setfuncs(L, fns, 1);
  return 1;
}
