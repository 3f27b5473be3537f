/*
 * objects.c - the host's kernel-object stand-ins in lwsp.host: events and
 * waits, windows and their message queues, completion ports, alertable
 * sleeps and APCs, and a per-thread blocking hook.
 */
#include "host.h"
#include <stdlib.h>
#include <string.h>

static int fail(lua_State *L, int code) { return lwsp_push_error(L, code ? code : WSASYSCALLFAILURE); }

/* create_event() -> event (manual-reset, not signalled), through WPUCreateEvent */
static int o_create_event(lua_State *L) {
  INT err = 0;
  WSAEVENT e;
  lwsp_trace_app_api(1);
  e = host_upcalls.lpWPUCreateEvent(&err);
  lwsp_trace_app_api(0);
  if (e == WSA_INVALID_EVENT) return fail(L, err);
  lua_pushinteger(L, (lua_Integer)(uintptr_t)e);
  return 1;
}
static int ev_call(lua_State *L, LPWPUSETEVENT fn) {
  INT err = 0;
  WSAEVENT ev = (WSAEVENT)(uintptr_t)luaL_checkinteger(L, 1);
  BOOL ok;
  lwsp_trace_app_api(1);
  ok = fn(ev, &err);
  lwsp_trace_app_api(0);
  if (!ok) return fail(L, err);
  lua_pushboolean(L, 1);
  return 1;
}
static int o_set_event(lua_State *L) { return ev_call(L, host_upcalls.lpWPUSetEvent); }
static int o_reset_event(lua_State *L) { return ev_call(L, host_upcalls.lpWPUResetEvent); }
static int o_close_event(lua_State *L) { return ev_call(L, host_upcalls.lpWPUCloseEvent); }

/* event_state(event) -> signalled (boolean) | nil, error */
static int o_event_state(lua_State *L) {
  int v = hk_event_state((WSAEVENT)(uintptr_t)luaL_checkinteger(L, 1));
  if (v < 0) return fail(L, WSA_INVALID_HANDLE);
  lua_pushboolean(L, v);
  return 1;
}

/* object_type(h) -> "event" | "port" | "thread" | "window" | "other" | nil:
 * on Windows the kernel's answer, so specs see the host use real objects. */
static int o_object_type(lua_State *L) {
  const char *k = hk_object_type((uintptr_t)luaL_checkinteger(L, 1));
  if (k) lua_pushstring(L, k); else lua_pushnil(L);
  return 1;
}

/* wait({events}, wait_all, timeout_ms|nil, alertable) -> index (1-based)
 * | "timeout" | "io_completion" (APCs ran) | nil, error */
static int o_wait(lua_State *L) {
  uintptr_t hs[64];
  lua_Integer n;
  long ms = host_arg_ms(L, 3, -1);
  int r;
  luaL_checktype(L, 1, LUA_TTABLE);
  n = (lua_Integer)lua_rawlen(L, 1);
  /* no events would be a sleep that may never end: WaitForMultipleObjects refuses it too */
  luaL_argcheck(L, n >= 1 && n <= 64, 1, "1 to 64 events");
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    hs[i - 1] = (uintptr_t)luaL_checkinteger(L, -1);
    lua_pop(L, 1);
  }
  r = host_wait(hs, (int)n, lua_toboolean(L, 2), ms, lua_toboolean(L, 4));
  if (r >= 0) lua_pushinteger(L, r + 1);
  else if (r == -1) lua_pushliteral(L, "timeout");
  else if (r == -2) lua_pushliteral(L, "io_completion");
  else return fail(L, WSA_INVALID_HANDLE);
  return 1;
}

/* sleep(ms [, alertable]) -> "timeout" | "io_completion" */
static int o_sleep(lua_State *L) {
  int r = host_wait(NULL, 0, 0, (long)host_arg_range(L, 1, 0, HOST_MAX_MS, "timeout"), lua_toboolean(L, 2));
  if (r == -2) lua_pushliteral(L, "io_completion"); else lua_pushliteral(L, "timeout");
  return 1;
}

/* window() -> hwnd, a message queue that WPUPostMessage posts to */
static int o_window(lua_State *L) {
  uintptr_t h = host_new_window();
  if (!h) return fail(L, WSAENOBUFS);
  lua_pushinteger(L, (lua_Integer)h);
  return 1;
}

/* messages(hwnd [, timeout_ms]) -> array of {msg =, wparam =, lparam =, event =, error =},
 * waiting up to timeout_ms for the first one. */
static int o_messages(lua_State *L) {
  hmsg *list;
  uintptr_t hwnd = (uintptr_t)luaL_checkinteger(L, 1);
  int k = 0, r = hk_take_messages(hwnd, host_arg_ms(L, 2, 0), &list);
  if (r == HK_WRONG_THREAD) return luaL_error(L, "a window's messages are read on the thread that created it");
  if (r != 0) return fail(L, WSA_INVALID_HANDLE);
  lua_newtable(L);
  while (list) {
    hmsg *m = list;
    list = m->next;
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, m->msg); lua_setfield(L, -2, "msg");
    lua_pushinteger(L, (lua_Integer)m->wparam); lua_setfield(L, -2, "wparam");
    lua_pushinteger(L, (lua_Integer)m->lparam); lua_setfield(L, -2, "lparam");
    lua_pushinteger(L, (lua_Integer)(m->lparam & 0xffff)); lua_setfield(L, -2, "event");
    lua_pushinteger(L, (lua_Integer)((m->lparam >> 16) & 0xffff)); lua_setfield(L, -2, "error");
    lua_rawseti(L, -2, ++k);
    free(m);
  }
  return 1;
}

/* port() -> completion port */
static int o_port(lua_State *L) {
  uintptr_t h = host_new_port();
  if (!h) return fail(L, WSAENOBUFS);
  lua_pushinteger(L, (lua_Integer)h);
  return 1;
}

/* associate(s, port, key) -> true: completions of s post packets to port */
static int o_associate(lua_State *L) {
  SOCKET s = (SOCKET)luaL_checkinteger(L, 1);
  uintptr_t h = (uintptr_t)luaL_checkinteger(L, 2);
  ULONG_PTR key = (ULONG_PTR)luaL_optinteger(L, 3, 0);   /* read before the lock: a bad one raises */
  hport *p;
  hsock *hs;
  lwsp_mutex_lock(&host_lock);
  p = host_port(h);
  hs = host_sock(s);
  if (p && hs) { hs->port = p; hs->key = key; }
  lwsp_mutex_unlock(&host_lock);
  if (!hs) return fail(L, WSAENOTSOCK);
  if (!p) return fail(L, WSA_INVALID_HANDLE);
  lua_pushboolean(L, 1);
  return 1;
}

/* post(port, bytes, key [, overlapped]) -> true */
static int o_post(lua_State *L) {
  hport *p;
  /* every argument read before the lock is taken: a bad one raises */
  uintptr_t h = (uintptr_t)luaL_checkinteger(L, 1);
  DWORD bytes = HOST_DWORD(L, 2, "bytes");
  ULONG_PTR key = (ULONG_PTR)luaL_checkinteger(L, 3);
  LPWSAOVERLAPPED ov = (LPWSAOVERLAPPED)(uintptr_t)luaL_optinteger(L, 4, 0);
  lwsp_mutex_lock(&host_lock);
  if ((p = host_port(h)) != NULL) host_post(p, bytes, key, ov);
  lwsp_mutex_unlock(&host_lock);
  if (!p) return fail(L, WSA_INVALID_HANDLE);
  lua_pushboolean(L, 1);
  return 1;
}

/* dequeue(port [, timeout_ms]) -> bytes, key, overlapped | nil, "timeout" */
static int o_dequeue(lua_State *L) {
  hpacket k;
  uintptr_t port = (uintptr_t)luaL_checkinteger(L, 1);
  int r = host_dequeue(port, host_arg_ms(L, 2, -1), &k);
  if (r < 0) return fail(L, WSA_INVALID_HANDLE);
  if (r == 0) { lua_pushnil(L); lua_pushliteral(L, "timeout"); return 2; }
  lua_pushinteger(L, k.bytes);
  lua_pushinteger(L, (lua_Integer)k.key);
  lua_pushinteger(L, (lua_Integer)(uintptr_t)k.ov);
  return 3;
}

/* close_object(h) -> true: closes a window or a port */
static int o_close_object(lua_State *L) {
  if (!host_close_object((uintptr_t)luaL_checkinteger(L, 1))) return fail(L, WSA_INVALID_HANDLE);
  lua_pushboolean(L, 1);
  return 1;
}

static BOOL CALLBACK counting_hook(DWORD_PTR ctx) {
  hthread *t = (hthread *)ctx;
  t->hook_calls++;
  return FALSE;
}

/* blocking_hook(enable) -> calls so far: installs (or removes) a blocking hook
 * on this thread that counts its calls. */
static int o_blocking_hook(lua_State *L) {
  hthread *t = host_current_thread();
  if (!t) return fail(L, WSAENOBUFS);
  if (!lua_isnone(L, 1)) {
    t->hook = lua_toboolean(L, 1) ? counting_hook : NULL;
    t->hook_ctx = (DWORD_PTR)t;
  }
  lua_pushinteger(L, t->hook_calls);
  return 1;
}

/* thread_id() -> this thread's host record (what WPUOpenCurrentThread hands
 * out on POSIX and the blocking hook's context), its OS id, and the handle the
 * host passes providers as lpThreadId (a real thread handle on Windows) */
static int o_thread_id(lua_State *L) {
  hthread *t = host_current_thread();
  lua_pushinteger(L, (lua_Integer)(uintptr_t)t);
  lua_pushinteger(L, (lua_Integer)(t ? t->os_id : 0));
  lua_pushinteger(L, (lua_Integer)(uintptr_t)(t ? t->handle : NULL));
  return 3;
}

/* thread_refs() -> references held on this thread's record (1 = only its own) */
static int o_thread_refs(lua_State *L) {
  hthread *t = host_current_thread();
  int n;
  lwsp_mutex_lock(&host_lock);
  n = t ? t->refs : 0;
  lwsp_mutex_unlock(&host_lock);
  lua_pushinteger(L, n);
  return 1;
}

/* ---- overlapped structures ---------------------------------------------------
 * overlapped([event]) -> a WSAOVERLAPPED in C memory; fields read and written
 * by name (Internal, InternalHigh, Offset, OffsetHigh, hEvent), `address` is
 * the pointer the provider sees. */
#define OV_MT "lwsp.overlapped"

host_ov *host_check_ov(lua_State *L, int idx) {
  host_ov *h = *(host_ov **)luaL_checkudata(L, idx, OV_MT);
  if (!h) luaL_argerror(L, idx, "overlapped is freed");
  return h;
}

/* A provider writes Internal on another thread when the operation ends:
 * read it once, with the ordering that makes what it wrote before visible. */
static ULONG_PTR ov_status(host_ov *h) { return __atomic_load_n(&h->ov.Internal, __ATOMIC_ACQUIRE); }

int host_ov_busy(host_ov *h) {
  if (h->posted && ov_status(h) != WSS_OPERATION_IN_PROGRESS) h->posted = 0;
  return h->posted;
}

void host_ov_posted(host_ov *h, int rc, int err) {
  h->posted = rc == SOCKET_ERROR && err == WSA_IO_PENDING;
}

static int o_overlapped(lua_State *L) {
  HANDLE ev = (HANDLE)(uintptr_t)luaL_optinteger(L, 1, 0);
  host_ov **u = lua_newuserdatauv(L, sizeof *u, 0);
  *u = NULL;
  luaL_setmetatable(L, OV_MT);
  if (!(*u = calloc(1, sizeof **u))) return fail(L, WSAENOBUFS);
  (*u)->ov.hEvent = ev;
  return 1;
}
static int ov_index(lua_State *L) {
  host_ov *h = host_check_ov(L, 1);
  WSAOVERLAPPED *ov = &h->ov;
  const char *k = luaL_checkstring(L, 2);
  if (strcmp(k, "Internal") == 0) lua_pushinteger(L, (lua_Integer)ov->Internal);
  else if (strcmp(k, "InternalHigh") == 0) lua_pushinteger(L, (lua_Integer)ov->InternalHigh);
  else if (strcmp(k, "Offset") == 0) lua_pushinteger(L, ov->Offset);
  else if (strcmp(k, "OffsetHigh") == 0) lua_pushinteger(L, ov->OffsetHigh);
  else if (strcmp(k, "hEvent") == 0) lua_pushinteger(L, (lua_Integer)(uintptr_t)ov->hEvent);
  else if (strcmp(k, "address") == 0) lua_pushinteger(L, (lua_Integer)(uintptr_t)ov);
  else if (strcmp(k, "data") == 0) {
    /* the bytes an overlapped receive delivered (InternalHigh of them) */
    size_t n = ov->InternalHigh < h->cap ? (size_t)ov->InternalHigh : h->cap;
    lua_pushlstring(L, h->buf ? h->buf : "", h->buf ? n : 0);
  } else if (strcmp(k, "from") == 0) {
    if (h->fromlen > 0) lwsp_push_sockaddr(L, (struct sockaddr *)&h->from, h->fromlen); else lua_pushnil(L);
  } else if (strcmp(k, "pending") == 0) lua_pushboolean(L, ov_status(h) == WSS_OPERATION_IN_PROGRESS);
  else lua_pushnil(L);
  return 1;
}
/* Fields are the application's to write, except while an operation the host
 * posted with the structure is pending (the provider owns them then). */
static int ov_newindex(lua_State *L) {
  host_ov *h = host_check_ov(L, 1);
  WSAOVERLAPPED *ov = &h->ov;
  const char *k = luaL_checkstring(L, 2);
  lua_Integer v = luaL_checkinteger(L, 3);
  if (host_ov_busy(h)) return luaL_argerror(L, 1, "overlapped is in use by a pending operation");
  if (strcmp(k, "Internal") == 0) ov->Internal = (ULONG_PTR)v;
  else if (strcmp(k, "InternalHigh") == 0) ov->InternalHigh = (ULONG_PTR)v;
  else if (strcmp(k, "Offset") == 0) ov->Offset = (DWORD)v;
  else if (strcmp(k, "OffsetHigh") == 0) ov->OffsetHigh = (DWORD)v;
  else if (strcmp(k, "hEvent") == 0) ov->hEvent = (HANDLE)(uintptr_t)v;
  else return luaL_argerror(L, 2, "not a WSAOVERLAPPED field");
  return 0;
}
/* A structure a provider may still write to is never freed: it is leaked,
 * and the leak is logged.  Called by hand (__gc, __close), it frees once and
 * the userdata then refuses every use. */
static int ov_gc(lua_State *L) {
  host_ov **u = luaL_checkudata(L, 1, OV_MT);
  if (!*u) return 0;
  if (host_ov_busy(*u) || ov_status(*u) == WSS_OPERATION_IN_PROGRESS) {
    lwsp_log("host", "overlapped %p collected while pending: kept, not freed", (void *)*u);
    host_park(*u);
  } else {
    free((*u)->buf);
    free(*u);
  }
  *u = NULL;
  return 0;
}

/* get_overlapped_result(s, overlapped [, wait]) -> bytes, flags */
static int o_get_overlapped_result(lua_State *L) {
  SOCKET s = (SOCKET)luaL_checkinteger(L, 1);
  host_ov *h = host_check_ov(L, 2);
  WSAOVERLAPPED *ov = &h->ov;
  int wait = lua_toboolean(L, 3);
  DWORD bytes = 0, flags = 0;
  INT err = 0;
  hsock *hs;
  hprov *p;
  lwsp_mutex_lock(&host_lock);
  hs = host_sock(s);
  p = hs ? hs->prov : NULL;
  lwsp_mutex_unlock(&host_lock);
  if (!p) return fail(L, hs ? WSANOTINITIALISED : WSAENOTSOCK);
  /* a structure marked pending by hand has no operation to end its wait */
  if (wait && ov_status(h) == WSS_OPERATION_IN_PROGRESS && !host_ov_busy(h))
    return luaL_argerror(L, 2, "overlapped has no pending operation to wait for");
  if (!HCALL_BOOL(L, p, WSPGetOverlappedResult, s, &err, s, ov, &bytes, wait, &flags, &err)) return fail(L, err);
  lua_pushinteger(L, bytes);
  lua_pushinteger(L, flags);
  return 2;
}

int lwsp_hostobj_open(lua_State *L);
int lwsp_hostobj_open(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"create_event", o_create_event}, {"set_event", o_set_event}, {"reset_event", o_reset_event},
    {"close_event", o_close_event}, {"event_state", o_event_state}, {"object_type", o_object_type}, {"wait", o_wait}, {"sleep", o_sleep},
    {"window", o_window}, {"messages", o_messages}, {"port", o_port}, {"associate", o_associate},
    {"post", o_post}, {"dequeue", o_dequeue}, {"close_object", o_close_object},
    {"blocking_hook", o_blocking_hook}, {"thread_id", o_thread_id}, {"thread_refs", o_thread_refs},
    {"overlapped", o_overlapped}, {"get_overlapped_result", o_get_overlapped_result},
    {NULL, NULL}};
  if (luaL_newmetatable(L, OV_MT)) {
    lua_pushcfunction(L, ov_index); lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, ov_newindex); lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, ov_gc); lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, ov_gc); lua_setfield(L, -2, "__close");
  }
  lua_pop(L, 1);
  luaL_setfuncs(L, fns, 0);
  return 0;
}

/* The metatable mt of the host's objects: gc at collection and at the close
 * of a to-be-closed variable, methods as __index. */
void host_class(lua_State *L, const char *mt, lua_CFunction gc, const luaL_Reg *methods) {
  if (luaL_newmetatable(L, mt)) {
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__close");
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
}
