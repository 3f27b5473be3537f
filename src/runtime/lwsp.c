/*
 * lwsp.c - the provider runtime.
 *
 * WSPStartup creates (or shares) one instance per provider GUID: a Lua state
 * running the provider's script, a recursive lock that serialises every entry
 * into that state, and a socket table whose slots carry generation numbers so
 * that a handle context maps back to its Lua socket in O(1) and a stale handle
 * is recognised.  Each of LWSP_MAX_INSTANCES slots has its own proc table of 30
 * trampolines (generated below), so every entry knows its instance without a
 * lookup, including WSPCleanup, WSPSelect and WSPCancelBlockingCall, which carry
 * no socket.  Every handler runs in a coroutine; a Lua error, a bad return value
 * or a bad argument from the caller becomes a Winsock error and a log line.
 */
#include "runtime.h"
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdarg.h>
#include <limits.h>
#include <stdint.h>
#ifndef _WIN32
#  include <dlfcn.h>
#endif

const char *const lwsp_proc_names[LWSP_NPROCS] = {
#define N_(i, lname, sname) #lname,
  LWSP_PROCS(N_)
#undef N_
};
const char *const lwsp_spi_names[LWSP_NPROCS] = {
#define N_(i, lname, sname) "WSP" #sname,
  LWSP_PROCS(N_)
#undef N_
};

lwsp_inst lwsp_instances[LWSP_MAX_INSTANCES];
static lwsp_mutex g_lock;
static uint32_t g_gen;

/* This thread's entries into each instance, and into any: a WSPCleanup from
 * inside its own instance is refused, and a provider that reaches itself
 * through what it calls is stopped before the stack runs out. */
static _Thread_local int tls_in[LWSP_MAX_INSTANCES];
static _Thread_local int tls_nest;
#define MAX_NEST 24

#ifdef _WIN32
static INIT_ONCE g_once = INIT_ONCE_STATIC_INIT;
static BOOL CALLBACK init_once(PINIT_ONCE o, PVOID p, PVOID *c) {
  (void)o; (void)p; (void)c;
  lwsp_mutex_init(&g_lock);
  lwsp_trace_init();
  rt_budget_init();
  for (int i = 0; i < LWSP_MAX_INSTANCES; i++) {
    lwsp_instances[i].slot = i;
    lwsp_mutex_init(&lwsp_instances[i].lock);
    lwsp_cond_init(&lwsp_instances[i].cond);
    lwsp_instances[i].apc_spares.max = APC_SPARES;
  }
  return TRUE;
}
static void global_init(void) { InitOnceExecuteOnce(&g_once, init_once, NULL, NULL); }
#else
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static void init_once(void) {
  lwsp_mutex_init(&g_lock);
  lwsp_trace_init();
  rt_budget_init();
  for (int i = 0; i < LWSP_MAX_INSTANCES; i++) {
    lwsp_instances[i].slot = i;
    lwsp_mutex_init(&lwsp_instances[i].lock);
    lwsp_cond_init(&lwsp_instances[i].cond);
    lwsp_instances[i].apc_spares.max = APC_SPARES;
  }
}
static void global_init(void) { pthread_once(&g_once, init_once); }
#endif

static uint32_t next_gen(void) {
  uint32_t g;
  do g = __atomic_add_fetch(&g_gen, 1, __ATOMIC_RELAXED); while (g == 0);
  return g;
}

/* The host's function comes from the module that supplied the upcall table
 * (ws2_32.dll on Windows, lwsp's host module elsewhere), never from lwsp's
 * own module, which would not know the host's handles. */
LPWPUCOMPLETEOVERLAPPEDREQUEST lwsp_find_complete(const WSPUPCALLTABLE *up, char *why, size_t whylen) {
  return lwsp_host_complete_export(up, why, whylen);
}

/* ---- sockets: slots with generations ------------------------------------------
 * A non-IFS handle's context is (generation << IDX_BITS | index + 1).  The
 * generation is process-wide and never 0, so a context from a closed socket,
 * or from an instance that has since been cleaned up, never matches. */
#define IDX_BITS (sizeof(DWORD_PTR) >= 8 ? 32 : 16)
#define IDX_MASK ((((DWORD_PTR)1) << IDX_BITS) - 1)

static DWORD_PTR rt_sock_context(lwsp_sock *so) {
  return ((DWORD_PTR)so->gen << IDX_BITS) | (DWORD_PTR)(so->idx + 1);
}

lwsp_sock *rt_sock_at(lwsp_inst *I, uint32_t idx) {
  return &I->chunks[idx / LWSP_SOCK_CHUNK][idx % LWSP_SOCK_CHUNK];
}

static lwsp_sock *rt_sock_alloc(lwsp_inst *I) {
  lwsp_sock *so;
  uint32_t idx;
  if (I->free_head) {
    idx = I->free_head - 1;
    so = rt_sock_at(I, idx);
    I->free_head = so->next_free;
  } else {
    idx = I->nsocks;
    if (idx >= IDX_MASK - 1) return NULL;
    if (idx == I->nchunks * LWSP_SOCK_CHUNK) {
      lwsp_sock **nc = realloc(I->chunks, (I->nchunks + 1) * sizeof *nc);
      if (!nc) return NULL;
      I->chunks = nc;
      if (!(nc[I->nchunks] = calloc(LWSP_SOCK_CHUNK, sizeof(lwsp_sock)))) return NULL;
      I->nchunks++;
    }
    I->nsocks++;
    so = rt_sock_at(I, idx);
  }
  memset(so, 0, sizeof *so);
  so->idx = idx;
  so->gen = next_gen() & (uint32_t)(sizeof(DWORD_PTR) >= 8 ? 0xffffffffu : 0xffffu);
  if (!so->gen) so->gen = 1;
  so->ref = LUA_NOREF;
  return so;
}

static void rt_sock_free(lwsp_inst *I, lwsp_sock *so) {
  luaL_unref(I->L, LUA_REGISTRYINDEX, so->ref);
  if (so->ifs && so->handle) lwsp_map_del(&I->ifsmap, so->handle);
  so->gen = 0;
  so->ref = LUA_NOREF;
  so->handle = 0;
  so->next_free = I->free_head;
  I->free_head = so->idx + 1;
}

/* Finds the live socket for a handle of this instance, or NULL. */
lwsp_sock *rt_sock_find(lwsp_inst *I, SOCKET s) {
  DWORD_PTR ctx = 0;
  INT e = 0;
  uint32_t idx;
  lwsp_sock *so;
  if (I->ifsmap.count) {
    void *v = lwsp_map_get(&I->ifsmap, s);
    if (v) return rt_sock_at(I, (uint32_t)((uintptr_t)v - 1))->closing ? NULL : rt_sock_at(I, (uint32_t)((uintptr_t)v - 1));
  }
  if (I->up.lpWPUQuerySocketHandleContext(s, &ctx, &e) != 0) return NULL;
  idx = (uint32_t)(ctx & IDX_MASK);
  if (idx == 0 || idx > I->nsocks) return NULL;
  so = rt_sock_at(I, idx - 1);
  if (so->gen == 0 || so->closing || so->ifs || so->handle != s || (DWORD_PTR)so->gen != (ctx >> IDX_BITS)) return NULL;
  return so;
}

/* Creates the socket's Lua table {handle = h} and, for non-IFS providers, its
 * handle through WPUCreateSocketHandle.  Leaves the table on L's stack. */
lwsp_sock *rt_sock_open(lwsp_inst *I, lua_State *co, int af, DWORD catalog, LPINT err) {
  lwsp_sock *so = rt_sock_alloc(I);
  if (!so) { *err = WSAENOBUFS; return NULL; }
  so->af = af;
  so->catalog = catalog;
  if (!I->ifs) {
    INT e = 0;
    SOCKET h = I->up.lpWPUCreateSocketHandle(so->catalog, rt_sock_context(so), &e);
    if (h == INVALID_SOCKET) {
      lwsp_log(I->name, "WPUCreateSocketHandle failed: %s", lwsp_error_name(e) ? lwsp_error_name(e) : "?");
      rt_sock_free(I, so);
      *err = e ? e : WSAENOBUFS;
      return NULL;
    }
    so->handle = h;
  }
  lua_createtable(co, 0, 4);
  if (so->handle) {
    lua_pushinteger(co, (lua_Integer)so->handle);
    lua_setfield(co, -2, "handle");
  }
  lua_pushvalue(co, -1);
  so->ref = luaL_ref(co, LUA_REGISTRYINDEX);
  return so;
}

static void sock_destroy(lwsp_inst *I, lwsp_sock *so) {
  if (!so->ifs && so->handle) {
    INT e = 0;
    if (I->up.lpWPUCloseSocketHandle(so->handle, &e) != 0)
      lwsp_log(I->name, "WPUCloseSocketHandle(%llu) failed: %d", (unsigned long long)so->handle, e);
  }
  rt_sock_free(I, so);
}

/* Gives up a socket: its Lua table at once, its handle (WPUCloseSocketHandle)
 * and slot once no operation or completion delivery is outstanding. */
void rt_sock_close(lwsp_inst *I, lwsp_sock *so) {
  so->closing = 1;
  luaL_unref(I->L, LUA_REGISTRYINDEX, so->ref);
  so->ref = LUA_NOREF;
  if (so->pending == 0) sock_destroy(I, so);
}

void rt_sock_release(lwsp_inst *I, lwsp_sock *so) {
  if (--so->pending == 0 && so->closing) sock_destroy(I, so);
}

/* Registers an IFS handle proposed by the provider's handler. */
int rt_sock_set_ifs(lwsp_inst *I, lwsp_sock *so, lua_State *co, int idx, LPINT err) {
  INT e = 0;
  SOCKET h;
  if (!lua_isinteger(co, idx) || lua_tointeger(co, idx) <= 0) {
    lwsp_log(I->name, "an IFS provider must return its socket handle (an integer), got %s", luaL_typename(co, idx));
    *err = WSAENETDOWN;
    return 0;
  }
  h = I->up.lpWPUModifyIFSHandle(so->catalog, (SOCKET)lua_tointeger(co, idx), &e);
  if (h == INVALID_SOCKET) { *err = e ? e : WSAEINVAL; return 0; }
  if (!lwsp_map_put(&I->ifsmap, h, (void *)(uintptr_t)(so->idx + 1))) { *err = WSAENOBUFS; return 0; }
  so->ifs = 1;
  so->handle = h;
  lua_rawgeti(co, LUA_REGISTRYINDEX, so->ref);
  lua_pushinteger(co, (lua_Integer)h);
  lua_setfield(co, -2, "handle");
  lua_pop(co, 1);
  return 1;
}

/* ---- calls ---------------------------------------------------------------------
 * rt_begin() takes the instance lock, finds the socket and the handler, and puts
 * the handler (and the socket table) on a coroutine; rt_run() resumes it; rt_end()
 * returns the coroutine to the pool and unlocks.  Between begin and end the
 * caller converts arguments and results on c->co. */

int rt_inst_enter(lwsp_inst *I, LPINT err) {
  if (!rt_live(I)) { *err = WSANOTINITIALISED; return 0; }
  lwsp_mutex_lock(&I->lock);
  if (!I->active || I->closing) { lwsp_mutex_unlock(&I->lock); *err = WSANOTINITIALISED; return 0; }
  if (tls_nest >= MAX_NEST) {
    lwsp_log(I->name, "calls into providers nest %d deep on one thread (does the provider reach itself?): WSAENETDOWN",
             tls_nest);
    lwsp_mutex_unlock(&I->lock);
    *err = WSAENETDOWN;
    return 0;
  }
  I->inside++;
  tls_in[I->slot]++;
  tls_nest++;
  return 1;
}

void rt_inst_leave(lwsp_inst *I) {
  tls_in[I->slot]--;
  tls_nest--;
  if (--I->inside == 0 && I->closing) lwsp_cond_broadcast(&I->cond);
}

int rt_inside_guid(const GUID *g) {
  for (int i = 0; i < LWSP_MAX_INSTANCES; i++)
    if (tls_in[i] > 0 && lwsp_guid_eq(&lwsp_instances[i].id, g)) return 1;
  return 0;
}

void rt_inst_mark(lwsp_inst *I, int d) {
  tls_in[I->slot] += d;
  tls_nest += d;
}

/* A call that fails before its handler runs: undone, and its trace closed. */
static int begin_fail(rt_call *c, SOCKET s, LPINT err, int code) {
  lwsp_inst *I = c->I;
  I->depth--;
  if (c->traced) {
    lwsp_trace_args(c->tseq, "", 0);
    lwsp_trace_leave(c->caller, I->name, lwsp_spi_names[c->proc], s, code, "");
  }
  rt_inst_leave(I);
  lwsp_mutex_unlock(&I->lock);
  *err = code;
  return 0;
}

/* Idle coroutines wait in a C array, each anchored by its own reference,
 * which anchors it while it runs too (other threads use L's stack while a
 * call waits, so the stack is no anchor). */
lua_State *rt_co_take(lwsp_inst *I, int *ref) {
  lua_State *co;
  if (I->npool > 0) {
    I->npool--;
    *ref = I->pool_ref[I->npool];
    return I->pool_co[I->npool];
  }
  co = lua_newthread(I->L);
  *ref = luaL_ref(I->L, LUA_REGISTRYINDEX);
  return co;
}

void rt_co_give(lwsp_inst *I, lua_State *co, int ref) {
  if (I->npool < LWSP_POOL) {
    lua_settop(co, 0);
    I->pool_co[I->npool] = co;
    I->pool_ref[I->npool++] = ref;
  } else {
    rt_co_drop(I, co, ref);
  }
}

void rt_co_drop(lwsp_inst *I, lua_State *co, int ref) {
  if (ref == LUA_NOREF) return;
  rt_budget_forget(I, co);   /* the watchdog lets go of it before the collector may take it */
  luaL_unref(I->L, LUA_REGISTRYINDEX, ref);
}

/* The handler (and the socket table) on a coroutine from the pool. */
static int enter(rt_call *c, SOCKET s, LPINT err) {
  lwsp_inst *I = c->I;
  lua_State *L = I->L;
  c->low = NULL;
  if (I->href[c->proc] == LUA_NOREF) return begin_fail(c, s, err, WSAEOPNOTSUPP);
  if (!lua_checkstack(L, 4)) return begin_fail(c, s, err, WSAENOBUFS);
  c->co = rt_co_take(I, &c->co_ref);
  if (!lua_checkstack(c->co, 16)) {
    rt_co_drop(I, c->co, c->co_ref);
    c->co = NULL;
    return begin_fail(c, s, err, WSAENOBUFS);
  }
  lua_rawgeti(c->co, LUA_REGISTRYINDEX, I->href[c->proc]);
  if (c->so) lua_rawgeti(c->co, LUA_REGISTRYINDEX, c->so->ref);
  return 1;
}

/* Locks, and finds the socket: 0 (the call over, *err set) when it cannot go on. */
static int begin(rt_call *c, lwsp_inst *I, int proc, SOCKET s, int need_sock, LPINT err) {
  c->I = I;
  c->proc = proc;
  c->so = NULL;
  c->broken = 0;
  c->co = NULL;
  c->ns = NULL;
  c->view = NULL;
  c->can_wait = 0;
  c->ov = NULL;
  c->pending = 0;
  c->traced = 0;
  c->err_code = 0;
  c->nres = 0;
  c->low = NULL;
  c->behind = 0;
  c->ov_serial = 0;
  c->co_ref = LUA_NOREF;
  if (!rt_inst_enter(I, err)) return 0;
  I->depth++;
  if ((c->traced = lwsp_tracing) != 0) {
    /* recorded now, in order; its arguments are filled in when the handler first runs */
    c->caller = lwsp_trace_party();
    c->tseq = lwsp_trace_enter(c->caller, I->name, lwsp_spi_names[proc], s, NULL);
    c->entered = 0;
    c->tsock = 0;
  }
  if (need_sock && (c->so = rt_sock_find(I, s)) == NULL) return begin_fail(c, s, err, WSAENOTSOCK);
  return 1;
}

int rt_begin(rt_call *c, lwsp_inst *I, int proc, SOCKET s, int need_sock, LPINT err) {
  return begin(c, I, proc, s, need_sock, err) && enter(c, s, err);
}

int rt_begin_down(rt_call *c, lwsp_inst *I, int proc, SOCKET s, int may_go_down, LPINT err) {
  if (!begin(c, I, proc, s, 1, err)) return 0;
  c->behind = may_go_down == 2 && c->so->ov_out[rt_dir_of(proc)] > 0;
  if (may_go_down && I->inherited[proc] && !c->traced && !lwsp_faults_armed &&
      (!c->behind || proc == P_recv) && rt_lower_resolve(I, c->so, &c->low, &c->lh))
    return 1;
  return enter(c, s, err);
}

int rt_enter_lua(rt_call *c, LPINT err) { return enter(c, c->so->handle, err); }

void rt_end(rt_call *c) {
  lwsp_inst *I = c->I;
  SOCKET traced_sock = c->so ? c->so->handle : 0;
  if (c->so && c->proc == P_closesocket) c->so->close_running = 0;   /* its own close is over */
  if (c->ns) { rt_sock_close(I, c->ns); c->ns = NULL; }
  if (c->traced) {
    char res[LWSP_TRACE_TEXT];
    res[0] = 0;
    if (!c->entered) lwsp_trace_args(c->tseq, "", 0);
    else if (c->tsock) traced_sock = c->tsock;
    if (c->co && !c->pending && !c->err_code && c->nres > 0 && c->base >= 1 && c->base + c->nres - 1 <= lua_gettop(c->co))
      lwsp_trace_values(c->co, c->base, c->base + c->nres - 1, res, sizeof res);
    lwsp_trace_leave(c->caller, I->name, lwsp_spi_names[c->proc], traced_sock, c->err_code, res);
  }
  if (c->view) { rt_view_end(I, c->view); c->view = NULL; }
  if (c->ov_serial && I->ov_live == c->ov_serial) I->ov_live = 0;   /* its lwsp.overlapped dies with the call */
  if (c->co) {
    if (!c->pending && !c->broken && lua_status(c->co) == LUA_OK) {
      rt_co_give(I, c->co, c->co_ref);
    } else {
      rt_co_drop(I, c->co, c->co_ref);   /* LUA_NOREF once a pending operation owns it */
    }
  }
  if (--I->depth == 0) rt_pump(I);
  rt_inst_leave(I);
  lwsp_mutex_unlock(&I->lock);
}

int rt_fail(rt_call *c, LPINT err, int code) {
  *err = code;
  c->err_code = code;
  /* FD_WRITE is re-armed by a send that would have blocked */
  if (code == WSAEWOULDBLOCK && c->so && (c->proc == P_send || c->proc == P_sendto)) rt_reenable(c->I, c->so, FD_WRITE);
  rt_end(c);
  return 0;
}

/* Logs a provider fault with the handler's name; the call fails with WSAENETDOWN. */
int rt_fault(rt_call *c, LPINT err, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  lwsp_log(c->I->name, "handler '%s' (%s): %s", lwsp_proc_names[c->proc], lwsp_spi_names[c->proc], msg);
  return rt_fail(c, err, WSAENETDOWN);
}

/* The handler's coroutine is done for: its variables are closed under the
 * budget (not when its run was condemned), and it is not reused. */
static void kill(rt_call *c, int condemned) {
  rt_budget_close(c->I, c->co, condemned);
  c->broken = 1;
}

/* A handler's error as a Winsock error: running out of memory (a memory
 * error, or the "not enough memory" that Lua's buffers raise as an ordinary
 * error) is WSAENOBUFS, anything else WSAENETDOWN.  The error is at -1. */
int rt_error_code(lua_State *co, int st) {
  if (st == LUA_ERRMEM) return WSAENOBUFS;
  if (lua_type(co, -1) == LUA_TSTRING && strcmp(lua_tostring(co, -1), "not enough memory") == 0) return WSAENOBUFS;
  return WSAENETDOWN;
}

/* The text of an error value, without running any of its metamethods. */
const char *rt_error_text(lua_State *L, int idx) {
  switch (lua_type(L, idx)) {
  case LUA_TSTRING: case LUA_TNUMBER: return lua_tostring(L, idx);
  case LUA_TNIL: return "(error object is a nil value)";
  case LUA_TBOOLEAN: return "(error object is a boolean value)";
  case LUA_TTABLE: return "(error object is a table value)";
  case LUA_TFUNCTION: return "(error object is a function value)";
  case LUA_TTHREAD: return "(error object is a thread value)";
  default: return "(error object is a userdata value)";
  }
}

void rt_trace_entered(rt_call *c) {
  if (c->traced && !c->entered) {
    char args[LWSP_TRACE_TEXT];
    lwsp_trace_values(c->co, 2, lua_gettop(c->co), args, sizeof args);
    c->tsock = c->so ? c->so->handle : c->ns ? c->ns->handle : 0;   /* WSPSocket, WSPAccept: the new socket */
    lwsp_trace_args(c->tseq, args, c->tsock);
    c->entered = 1;
  }
}

int rt_run_in_turn(rt_call *c, LPINT err) {
  int dir = rt_dir_of(c->proc);
  if (c->ov && dir >= 0 && c->so && c->so->ov_out[dir] > 0) {
    rt_trace_entered(c);
    return RT_QUEUED;
  }
  return rt_run(c, err);
}

int rt_run(rt_call *c, LPINT err) {
  lua_State *co = c->co;
  int nargs = lua_gettop(co) - 1;
  rt_trace_entered(c);
  for (;;) {
    int nres = 0, st, outer = c->I->may_wait, condemned;
    rt_run_mark run;
    /* what a yield will do: wait (blocking, overlapped), or fail the call */
    c->I->may_wait = c->can_wait && (c->ov || (!(c->so && c->so->nonblocking) && c->I->depth <= 1));
    c->I->limited = 1;
    c->I->lua_runs++;
    run = rt_budget_enter(c->I, co);
    st = lua_resume(co, c->I->L, nargs, &nres);
    condemned = rt_budget_leave(c->I, run);
    c->I->limited = 0;
    c->I->may_wait = outer;
    nargs = 0;
    if (condemned && (st == LUA_OK || st == LUA_YIELD)) {   /* it caught the budget's error: the call fails all the same */
      lwsp_log(c->I->name, "handler '%s' (%s) raised an error: %s (caught by the handler, which was stopped all the same)",
               lwsp_proc_names[c->proc], lwsp_spi_names[c->proc], rt_budget_message());
      kill(c, 1);
      rt_fail(c, err, WSAENETDOWN);
      return RT_FAILED;
    }
    if (st == LUA_OK) {
      c->nres = nres;
      c->base = lua_gettop(co) - nres + 1;
      return RT_DONE;
    }
    if (st == LUA_YIELD) {
      if (nres > 2) lua_pop(co, nres - 2);
      for (; nres < 2; nres++) lua_pushnil(co);   /* key, timeout */
      if (!c->can_wait) {
        kill(c, 0);
        rt_fault(c, err, "yielded, but this call cannot wait (only overlapped and blocking calls can)");
        return RT_FAILED;
      }
      if (c->ov) return RT_PENDING;
      if (c->so && c->so->nonblocking) { kill(c, 0); rt_fail(c, err, WSAEWOULDBLOCK); return RT_FAILED; }
      if (c->I->depth > 1) {
        kill(c, 0);
        lwsp_log(c->I->name, "handler '%s' would block inside another call into the provider: WSAEWOULDBLOCK",
                 lwsp_proc_names[c->proc]);
        rt_fail(c, err, WSAEWOULDBLOCK);
        return RT_FAILED;
      }
      if (!rt_block(c, err)) return RT_FAILED;
      nargs = 1;
      continue;
    }
    luaL_traceback(c->I->L, co, rt_error_text(co, -1), 0);
    lwsp_log(c->I->name, "handler '%s' (%s) raised an error: %s", lwsp_proc_names[c->proc], lwsp_spi_names[c->proc],
             lua_tostring(c->I->L, -1));
    lua_pop(c->I->L, 1);
    st = rt_error_code(co, st);
    kill(c, condemned);
    rt_fail(c, err, st);
    return RT_FAILED;
  }
}

/* Reads a Winsock error code from a handler result: an integer, or a name such
 * as "WSAEWOULDBLOCK" (optionally followed by ": text").  0 if it is neither. */
static int rt_code_at(lua_State *co, int idx) {
  if (lua_isinteger(co, idx)) {
    lua_Integer v = lua_tointeger(co, idx);
    return v > 0 && v <= 0x7fffffff ? (int)v : 0;
  }
  if (lua_type(co, idx) == LUA_TSTRING) {
    char name[64];
    const char *s = lua_tostring(co, idx);
    size_t n = strcspn(s, ":");
    if (n >= sizeof name) return 0;
    memcpy(name, s, n);
    name[n] = 0;
    return lwsp_error_code(name);
  }
  return 0;
}

int rt_soft_fault(rt_call *c, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  lwsp_log(c->I->name, "handler '%s' (%s): %s", lwsp_proc_names[c->proc], lwsp_spi_names[c->proc], msg);
  return WSAENETDOWN;
}

/* Handler results: (nil|false, code) is a failure and gives the code.  (false)
 * or (nil, junk) is a fault: logged, -1.  No result at all is a fault too
 * (a forgotten `return`), and so is a lone nil, except from the handlers
 * whose success may be nothing (ioctl, cleanup).  Anything else: 0. */
int rt_result_error(rt_call *c) {
  lua_State *co = c->co;
  int code;
  if (c->nres == 0 || (c->nres == 1 && lua_isnil(co, c->base))) {
    if (c->proc == P_ioctl || c->proc == P_cleanup) return 0;
    if (c->nres == 1) { rt_soft_fault(c, "returned nil without a Winsock error code"); return -1; }
    rt_soft_fault(c, "returned nothing: a handler returns its result (true for success) or nil and an error "
                  "(missing a `return`? a layer ends with `return P.base.%s(...)`)", lwsp_proc_names[c->proc]);
    return -1;
  }
  if (lua_toboolean(co, c->base)) return 0;
  code = c->nres >= 2 ? rt_code_at(co, c->base + 1) : 0;
  if (code == 0 && c->nres >= 3) code = rt_code_at(co, c->base + 2);
  if (code == 0) {
    const char *what = lua_isnil(co, c->base) ? "nil" : "false";
    int at = c->nres >= 2 ? c->base + 1 : 0;
    if (at && lua_type(co, at) == LUA_TSTRING)
      rt_soft_fault(c, "returned %s without a Winsock error code: \"%.*s\" is not a Winsock error name "
                    "(names are those of wsp, such as \"WSAECONNREFUSED\")",
                    what, (int)strcspn(lua_tostring(co, at), ":"), lua_tostring(co, at));
    else if (at && lua_isinteger(co, at))
      rt_soft_fault(c, "returned %s without a Winsock error code: %lld is not one", what,
                    (long long)lua_tointeger(co, at));
    else
      rt_soft_fault(c, "returned %s without a Winsock error code", what);
    return -1;
  }
  return code;
}

int rt_failed(rt_call *c, LPINT err) {
  int code = rt_result_error(c);
  if (code == 0) return 0;
  rt_fail(c, err, code < 0 ? WSAENETDOWN : code);
  return 1;
}

/* For handlers whose only result is success: nothing, true, or (nil, code). */
int rt_finish_ok(rt_call *c, LPINT err) {
  if (rt_failed(c, err)) return SOCKET_ERROR;
  rt_end(c);
  return 0;
}

int rt_push_addr_arg(rt_call *c, const struct sockaddr *sa, int len) {
  int need;
  if (!sa || len < 2) return 0;
  need = sa->sa_family == AF_INET ? 16 : sa->sa_family == AF_INET6 ? 28 : 2;
  if (len < need || len > (int)sizeof(SOCKADDR_STORAGE)) return 0;
  lwsp_push_sockaddr(c->co, sa, len);
  return 1;
}

/* Writes the address result at idx into (name, *namelen); WSAEFAULT if short. */
int rt_put_addr(rt_call *c, int idx, struct sockaddr *name, LPINT namelen, LPINT err) {
  SOCKADDR_STORAGE ss;
  int len;
  if (!lwsp_to_sockaddr(c->co, idx, &ss, &len)) {
    rt_fault(c, err, "returned %s where an address was expected", luaL_typename(c->co, idx));
    return 0;
  }
  if (*namelen < len) { *namelen = len; rt_fail(c, err, WSAEFAULT); return 0; }
  memcpy(name, &ss, (size_t)len);
  *namelen = len;
  return 1;
}

/* Gathers WSABUFs into one Lua string on co; 0 on a bad buffer. */
int rt_push_bufs(lua_State *co, const WSABUF *b, DWORD n, size_t *total) {
  luaL_Buffer lb;
  size_t t = 0;
  if (n && !b) return 0;
  for (DWORD i = 0; i < n; i++) {
    if (b[i].len && !b[i].buf) return 0;
    t += b[i].len;
  }
  *total = t;
  if (n == 1) { lua_pushlstring(co, b[0].buf ? b[0].buf : "", b[0].len); return 1; }
  luaL_buffinit(co, &lb);
  for (DWORD i = 0; i < n; i++) luaL_addlstring(&lb, b[i].buf ? b[i].buf : "", b[i].len);
  luaL_pushresult(&lb);
  return 1;
}

int rt_check_bufs(const WSABUF *b, DWORD n, size_t *total) {
  size_t t = 0;
  if (!b) return WSAEFAULT;
  if (n == 0) return WSAEINVAL;   /* no buffer: a stream receive would read as the peer's close */
  for (DWORD i = 0; i < n; i++) {
    if (b[i].len && !b[i].buf) return WSAEFAULT;
    t += b[i].len;
  }
  *total = t;
  return 0;
}

size_t rt_scatter(const WSABUF *b, DWORD n, const char *data, size_t len) {
  size_t off = 0;
  for (DWORD i = 0; i < n && off < len; i++) {
    size_t k = b[i].len < len - off ? b[i].len : len - off;
    memcpy(b[i].buf, data + off, k);
    off += k;
  }
  return off;
}

void rt_push_wsabuf(lua_State *co, const WSABUF *b) {
  if (b && b->buf && b->len) lua_pushlstring(co, b->buf, b->len);
  else lua_pushnil(co);
}

/* ---- overlapped completion at once ---------------------------------------------
 * A call given an overlapped structure that finishes inside the handler still
 * completes through the caller's mechanism, as on Windows. */
typedef struct apc_ctx {
  LPWSAOVERLAPPED_COMPLETION_ROUTINE routine;
  LPWSAOVERLAPPED ov;
  DWORD error, bytes, flags;
  lwsp_inst *I;
  uint32_t epoch;
  lwsp_sock *so;
} apc_ctx;

/* Runs on the issuing thread in an alertable wait: the routine first (the
 * socket's handle is still valid), then the socket's pending count drops. */
static void CALLBACK apc_complete(DWORD_PTR ctx) {
  apc_ctx *a = (apc_ctx *)ctx;
  lwsp_inst *I = a->I;
  a->routine(a->error, a->bytes, a->ov, a->flags);
  lwsp_mutex_lock(&I->lock);
  if (I->active && I->epoch == a->epoch) rt_sock_release(I, a->so);
  lwsp_spare_give(&I->apc_spares, a);
  lwsp_mutex_unlock(&I->lock);
}

void rt_overlapped_done(lwsp_inst *I, lwsp_sock *so, SOCKET s, LPWSAOVERLAPPED ov,
                        LPWSAOVERLAPPED_COMPLETION_ROUTINE routine, LPWSATHREADID tid, DWORD error, DWORD bytes,
                        DWORD flags) {
  INT e = 0;
  lwsp_ov_done(ov, error, bytes, flags);
  if (routine) {
    apc_ctx *a = lwsp_spare_take(&I->apc_spares, sizeof *a);   /* every caller holds the provider lock */
    if (!a || !tid) {
      lwsp_log(I->name, "cannot queue the completion routine: %s", a ? "no thread id" : "out of memory");
      lwsp_spare_give(&I->apc_spares, a);
      return;
    }
    a->routine = routine; a->ov = ov; a->error = error; a->bytes = bytes; a->flags = flags;
    a->I = I; a->epoch = I->epoch; a->so = so;
    so->pending++;
    if (I->up.lpWPUQueueApc(tid, apc_complete, (DWORD_PTR)a, &e) != 0) {
      lwsp_log(I->name, "WPUQueueApc failed (error %d): the completion routine will not run", e);
      so->pending--;
      lwsp_spare_give(&I->apc_spares, a);
    }
  } else if (so->ifs) {
    /* An IFS handle is not the host's: WPUCompleteOverlappedRequest refuses
     * it.  Its completion signals the event itself, as the kernel does for
     * an IFS handle's I/O (docs/api.md, "IFS providers"). */
    WSAEVENT ev = (WSAEVENT)((uintptr_t)ov->hEvent & ~(uintptr_t)1);
    if (ev && !I->up.lpWPUSetEvent(ev, &e))
      lwsp_log(I->name, "IFS socket %llu: WPUSetEvent on the overlapped call's event failed (error %d)",
               (unsigned long long)s, e);
  } else if (!I->complete || I->complete(s, ov, error, bytes, &e) != 0) {
    lwsp_log(I->name, "WPUCompleteOverlappedRequest failed (error %d)", e);
  }
}

/* ---- instances ------------------------------------------------------------------ */
static void *inst_alloc(void *ud, void *ptr, size_t osize, size_t nsize);

/* A provider's state is told by its allocator, which no Lua code can change
 * (a registry entry could be). */
lwsp_inst *lwsp_inst_of(lua_State *L) {
  void *ud = NULL;
  return lua_getallocf(L, &ud) == inst_alloc ? (lwsp_inst *)ud : NULL;
}

/* The provider state's allocator counts its bytes, so a ceiling can be set. */
static void *inst_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  lwsp_inst *I = ud;
  size_t old = ptr ? osize : 0;
  void *p;
  if (nsize == 0) {
    free(ptr);
    I->mem -= old;
    return NULL;
  }
  if (I->limited && I->mem_limit && nsize > old && I->mem + (nsize - old) > I->mem_limit) return NULL;
  p = realloc(ptr, nsize);
  if (p) I->mem = I->mem - old + nsize;
  return p;
}

/* Lua's warnings come in pieces (tocont: more follow); one log line per
 * warning, control messages "@off" and "@on" as Lua defines them. */
static void inst_warn(void *ud, const char *msg, int tocont) {
  lwsp_inst *I = ud;
  size_t n = strlen(msg);
  if (I->nwarn == 0 && !tocont && msg[0] == '@') {
    if (!strcmp(msg, "@off")) I->warn_off = 1;
    else if (!strcmp(msg, "@on")) I->warn_off = 0;
    return;
  }
  if (I->nwarn < sizeof I->warn - 1) {
    size_t k = n < sizeof I->warn - 1 - I->nwarn ? n : sizeof I->warn - 1 - I->nwarn;
    memcpy(I->warn + I->nwarn, msg, k);
    I->nwarn += k;
    if (k < n) memcpy(I->warn + sizeof I->warn - 4, "...", 3), I->nwarn = sizeof I->warn - 1;
  }
  if (tocont) return;
  I->warn[I->nwarn] = 0;
  if (!I->warn_off) lwsp_log(I->name, "warning: %s", I->warn);
  I->nwarn = 0;
}

static int msgh(lua_State *L) {
  luaL_traceback(L, L, rt_error_text(L, 1), 1);
  return 1;
}

static void dirname_of(const char *path, char *out, size_t len) {
  const char *slash = strrchr(path, '/');
#ifdef _WIN32
  const char *bs = strrchr(path, '\\');
  if (!slash || (bs && bs > slash)) slash = bs;
#endif
  if (!slash) { snprintf(out, len, "."); return; }
  snprintf(out, len, "%.*s", (int)(slash - path), path);
}

/* Reads $name as a whole decimal number in [0, max]: 1 with *out, 0 when it
 * is unset or not such a number (then logged; the caller keeps its default).
 * "abc", "1e5", "12 ", "-3" and values past max are refused, never cut. */
static int env_count(lwsp_inst *I, const char *name, long long max, long long *out) {
  const char *v = getenv(name);
  long long n = 0;
  const char *p;
  if (!v) return 0;
  for (p = v; *p >= '0' && *p <= '9'; p++) {
    if (n > (max - (*p - '0')) / 10) break;
    n = n * 10 + (*p - '0');
  }
  if (p == v || *p) {
    lwsp_log(I->name, "WSPStartup: ignoring $%s='%.40s': not a whole number from 0 to %lld; the default applies", name, v, max);
    return 0;
  }
  *out = n;
  return 1;
}

/* Runs the provider script and reads its table of handlers (in a protected
 * call, under the budget: its metamethods, if any, run too).  Raises the
 * message to log. */
static int run_script(lua_State *L) {
  lwsp_inst *I = lua_touserdata(L, 1);
  lua_pushcfunction(L, msgh);
  if (luaL_loadfilex(L, I->script, "t") != LUA_OK)
    return luaL_error(L, "cannot load provider script %s: %s", I->script, rt_error_text(L, -1));
  lwsp_push_guid(L, &I->id);
  lwsp_push_protocol_info(L, &I->info);
  if (lua_pcall(L, 2, 1, 2) != LUA_OK) return luaL_error(L, "provider script %s failed: %s", I->script, rt_error_text(L, -1));
  if (!lua_istable(L, -1))
    return luaL_error(L, "provider script %s returned %s, not a table of handlers", I->script, luaL_typename(L, -1));
  for (int i = 0; i < LWSP_NPROCS; i++) {
    int t = lwsp_rawfield(L, -1, lwsp_proc_names[i]);
    if (t == LUA_TFUNCTION) {
      I->href[i] = luaL_ref(L, LUA_REGISTRYINDEX);
    } else if (t == LUA_TNIL) {
      lua_pop(L, 1);
    } else {
      return luaL_error(L, "provider script %s: handler '%s' is a %s, not a function", I->script, lwsp_proc_names[i],
                        luaL_typename(L, -1));
    }
  }
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    if (lua_type(L, -2) == LUA_TSTRING && lua_isfunction(L, -1)) {
      const char *k = lua_tostring(L, -2);
      int known = 0;
      for (int i = 0; i < LWSP_NPROCS && !known; i++) known = strcmp(k, lwsp_proc_names[i]) == 0;
      if (!known) lwsp_log(I->name, "provider script %s: '%s' is not an SPI handler name; it is never called", I->script, k);
    }
    lua_pop(L, 1);
  }
  lwsp_rawfield(L, -1, "ifs");
  I->ifs = lua_toboolean(L, -1);
  lwsp_rawfield(L, -2, "views");
  I->views = lua_toboolean(L, -1);
  lwsp_rawfield(L, -3, "budget");
  if (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 0 && (unsigned long long)lua_tointeger(L, -1) <= (unsigned long long)LONG_MAX)
    I->budget = (long)lua_tointeger(L, -1);
  else if (!lua_isnil(L, -1))
    lwsp_log(I->name, "provider script %s: ignoring budget (%s%s): not an integer from 0 to %ld", I->script,
             luaL_typename(L, -1), lua_isinteger(L, -1) ? " out of range" : "", LONG_MAX);
  lwsp_rawfield(L, -4, "memory_limit");
  if (lua_isinteger(L, -1) && lua_tointeger(L, -1) > 0 && (unsigned long long)lua_tointeger(L, -1) <= (unsigned long long)SIZE_MAX)
    I->mem_limit = (size_t)lua_tointeger(L, -1);
  else if (!lua_isnil(L, -1))
    lwsp_log(I->name, "provider script %s: ignoring memory_limit (%s): not a positive integer", I->script,
             luaL_typename(L, -1));
  if (lwsp_rawfield(L, -5, "description") == LUA_TSTRING) {
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, "lwsp.description");
  }
  lua_pop(L, 5);
  lua_setfield(L, LUA_REGISTRYINDEX, "lwsp.handlers");
  return 0;
}

/* Builds the instance's Lua state and runs the provider script.  On failure,
 * logs why (naming the file) and returns 0 with the state closed. */
static int inst_open(lwsp_inst *I, const WSAPROTOCOL_INFOW *info, const WSPUPCALLTABLE *up, const GUID *id,
                     DWORD layer_id) {
  char err[1200], sdir[1024], mdir[1024];
  lua_State *L;
  const char *mod = lwsp_module_path();
  memset((char *)I + offsetof(lwsp_inst, startups), 0, sizeof *I - offsetof(lwsp_inst, startups));
  I->epoch++;
  I->id = *id;
  I->layer_id = layer_id;
  lwsp_guid_format(&I->id, I->name);
  I->up = *up;
  I->info = *info;
  if (!(I->complete = lwsp_find_complete(up, err, sizeof err))) {
    lwsp_log(I->name, "WSPStartup: the host offers no WPUCompleteOverlappedRequest: %s; "
             "overlapped calls could not complete", err);
    return 0;
  }
  for (int i = 0; i < LWSP_NPROCS; i++) I->href[i] = LUA_NOREF;
  if (!lwsp_registry_get(&I->id, I->script, sizeof I->script, err, sizeof err)) {
    lwsp_log(I->name, "WSPStartup: %s", err);
    return 0;
  }
  if (!lwsp_path_is_absolute(I->script)) {
    lwsp_log(I->name, "WSPStartup: refusing script path '%s': it must be absolute", I->script);
    return 0;
  }
  {
    /* defaults: $LWSP_BUDGET instructions per handler run (100 million if
     * unset, 0 = none) and $LWSP_MEMORY_LIMIT bytes for the state (none) */
    long long v;
    I->budget = env_count(I, "LWSP_BUDGET", LONG_MAX, &v) ? (long)v : 100000000L;
    I->mem_limit = env_count(I, "LWSP_MEMORY_LIMIT", (long long)(SIZE_MAX > LLONG_MAX ? LLONG_MAX : SIZE_MAX), &v) ? (size_t)v : 0;
  }
  L = lua_newstate(inst_alloc, I);
  if (!L) { lwsp_log(I->name, "WSPStartup: cannot create a Lua state"); return 0; }
  I->L = L;
  rt_budget_bind(L, I);
  lua_setwarnf(L, inst_warn, I);
  lua_pushstring(L, I->name);             /* wsp.log's tag in this provider */
  lua_setfield(L, LUA_REGISTRYINDEX, "lwsp.log_who");
  lwsp_log_name(I->name, I->script);
  lua_pushboolean(L, 1);                  /* $LUA_PATH, $LUA_CPATH: not in a provider (sandbox.c) */
  lua_setfield(L, LUA_REGISTRYINDEX, "LUA_NOENV");
  luaL_openlibs(L);
  rt_budget_open(L, I);
  luaL_requiref(L, "lwsp", luaopen_lwsp, 0);
  lua_pop(L, 1);
  rt_sandbox_open(L);
  dirname_of(I->script, sdir, sizeof sdir);
  dirname_of(mod ? mod : ".", mdir, sizeof mdir);
  rt_sandbox_paths(I, L, sdir, mdir);
  lua_settop(L, 0);
  lua_newtable(L);
  I->waits_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_newtable(L);
  I->timers_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (!rt_trusted_file(I->script, err, sizeof err)) {
    lwsp_log(I->name, "WSPStartup: refusing provider script %s: %s", I->script, err);
    goto fail;
  }
  /* the script's top level, and what lwsp reads from its table, run under
   * the budget (the default one: the script's own is not known yet) */
  rt_budget_attach(I);
  {
    rt_run_mark run;
    int st, condemned;
    lua_pushcfunction(L, run_script);
    lua_pushlightuserdata(L, I);
    I->limited = 1;
    run = rt_budget_enter(I, L);
    st = lua_pcall(L, 1, 0, 0);
    condemned = rt_budget_leave(I, run);
    I->limited = 0;
    rt_budget_disarm(L);
    if (st != LUA_OK) {
      lwsp_log(I->name, "WSPStartup: %s", rt_error_text(L, -1));
      goto fail;
    }
    if (condemned) {
      lwsp_log(I->name, "WSPStartup: provider script %s: %s (caught by the script, which was stopped all the same)",
               I->script, rt_budget_message());
      goto fail;
    }
  }
  rt_budget_attach(I);   /* with the script's own budget */
  rt_lower_inherited(I);
  lua_settop(L, 0);
  return 1;
fail:
  rt_budget_detach(I);
  lua_close(L);
  I->L = NULL;
  rt_upcalls_close(I);
  return 0;
}

static void fill_data(lwsp_inst *I, LPWSPDATA data) {
  char d[300];
  const char *desc = NULL;
  size_t n;
  memset(data, 0, sizeof *data);
  data->wVersion = MAKEWORD_(2, 2);
  data->wHighVersion = MAKEWORD_(2, 2);
  if (lua_getfield(I->L, LUA_REGISTRYINDEX, "lwsp.description") == LUA_TSTRING) desc = lua_tostring(I->L, -1);
  snprintf(d, sizeof d, "%s", desc ? desc : "lwsp Lua provider");
  lua_pop(I->L, 1);
  n = lwsp_utf8_to_utf16(d, strlen(d), data->szDescription, WSPDESCRIPTION_LEN);
  if (n > WSPDESCRIPTION_LEN) n = WSPDESCRIPTION_LEN;
  data->szDescription[n] = 0;
}

static int upcalls_complete(const WSPUPCALLTABLE *up) {
  void *const *p = (void *const *)up;
  for (size_t i = 0; i < sizeof *up / sizeof(void *); i++)
    if (!p[i]) return 0;
  return 1;
}

/* The GUID whose script a start runs, found by walking the ProtocolChain it
 * is given: the entry's own GUID when it has a mapping, else the first entry
 * of its chain whose GUID has one.  lwsp under another LSP is started with
 * that LSP's chain entry (as the LSP sample passes it down), and the chains
 * WSCInstallProviderAndChains makes carry GUIDs of their own: only the layered
 * entry's GUID is mapped.  A chain naming one id twice would make a layer
 * load itself: refused.  *layer_id is the matched entry's catalog id (0 when
 * the entry's own GUID matched outside a chain). */
static int start_guid(const WSAPROTOCOL_INFOW *info, const WSPUPCALLTABLE *up, GUID *id, DWORD *layer_id,
                      char *why, size_t whylen) {
  char path[1024], err[1200];
  int n = info->ProtocolChain.ChainLen;
  *id = info->ProviderId;
  *layer_id = 0;
  if (n >= 2 && n <= MAX_PROTOCOL_CHAIN) {
    for (int i = 0; i < n; i++)
      for (int j = i + 1; j < n; j++)
        if (info->ProtocolChain.ChainEntries[i] == info->ProtocolChain.ChainEntries[j]) {
          snprintf(why, whylen, "the protocol chain names catalog entry %lu twice; refusing to load a layer into itself",
                   (unsigned long)info->ProtocolChain.ChainEntries[i]);
          return 0;
        }
  }
  if (lwsp_registry_get(id, path, sizeof path, err, sizeof err)) {
    for (int i = 0; n >= 2 && n <= MAX_PROTOCOL_CHAIN && i < n && !*layer_id; i++) {
      WSAPROTOCOL_INFOW e;
      DWORD cid = info->ProtocolChain.ChainEntries[i];
      int found = rt_catalog_info(up, NULL, cid, &e);
      if (found && lwsp_guid_eq(&e.ProviderId, id)) *layer_id = cid;
    }
    return 1;
  }
  for (int i = 0; n >= 2 && n <= MAX_PROTOCOL_CHAIN && i < n; i++) {
    WSAPROTOCOL_INFOW e;
    DWORD cid = info->ProtocolChain.ChainEntries[i];
    int found = rt_catalog_info(up, NULL, cid, &e);
    if (found && lwsp_registry_get(&e.ProviderId, path, sizeof path, err, sizeof err)) {
      *id = e.ProviderId;
      *layer_id = cid;
      return 1;
    }
  }
  snprintf(why, whylen, "%s", err);
  return 1;    /* inst_open logs the missing mapping under the entry's own GUID */
}

LWSP_EXPORT int WSPAPI WSPStartup(WORD wVersionRequested, LPWSPDATA lpWSPData, LPWSAPROTOCOL_INFOW lpProtocolInfo,
                                  WSPUPCALLTABLE UpcallTable, LPWSPPROC_TABLE lpProcTable) {
  BYTE major = (BYTE)(wVersionRequested & 0xff), minor = (BYTE)(wVersionRequested >> 8);
  lwsp_inst *I = NULL;
  char g[39], why[1200];
  GUID id;
  DWORD layer_id;
  global_init();
  if (!lpWSPData || !lpProtocolInfo || !lpProcTable) {
    lwsp_log("WSPStartup", "NULL WSPDATA, protocol info or proc table");
    return WSAEFAULT;
  }
  lwsp_guid_format(&lpProtocolInfo->ProviderId, g);
  if (major < 2 || (major == 2 && minor < 2)) {
    lwsp_log(g, "WSPStartup: version %u.%u requested; lwsp speaks 2.2", major, minor);
    return WSAVERNOTSUPPORTED;
  }
  if (!upcalls_complete(&UpcallTable)) {
    lwsp_log(g, "WSPStartup: the host's upcall table has NULL entries");
    return WSAEPROVIDERFAILEDINIT;
  }
  if (!start_guid(lpProtocolInfo, &UpcallTable, &id, &layer_id, why, sizeof why)) {
    lwsp_log(g, "WSPStartup: %s", why);
    return WSAEPROVIDERFAILEDINIT;
  }
  lwsp_mutex_lock(&g_lock);
  for (int i = 0; i < LWSP_MAX_INSTANCES && !I; i++)
    if (lwsp_instances[i].active && !lwsp_instances[i].closing &&
        lwsp_guid_eq(&lwsp_instances[i].id, &id))
      I = &lwsp_instances[i];   /* (one whose last WSPCleanup has begun is not shared: a new one begins) */
  if (I) {
    lwsp_mutex_lock(&I->lock);
    I->startups++;
    fill_data(I, lpWSPData);
    lwsp_mutex_unlock(&I->lock);
  } else {
    for (int i = 0; i < LWSP_MAX_INSTANCES && !I; i++)
      if (!lwsp_instances[i].active) I = &lwsp_instances[i];
    if (!I) {
      lwsp_mutex_unlock(&g_lock);
      lwsp_log(g, "WSPStartup: more than %d Lua providers in one process", LWSP_MAX_INSTANCES);
      return WSAEPROVIDERFAILEDINIT;
    }
    lwsp_mutex_lock(&I->lock);
    if (!inst_open(I, lpProtocolInfo, &UpcallTable, &id, layer_id)) {
      lwsp_mutex_unlock(&I->lock);
      lwsp_mutex_unlock(&g_lock);
      return WSAEPROVIDERFAILEDINIT;
    }
    I->startups = 1;
    fill_data(I, lpWSPData);
    __atomic_store_n(&I->active, 1, __ATOMIC_RELEASE);
    lwsp_mutex_unlock(&I->lock);
  }
  lwsp_fill_procs(I->slot, lpProcTable);
  lwsp_mutex_unlock(&g_lock);
  return 0;
}

/* One WSPCleanup per successful WSPStartup.  The last one stops the instance
 * in this order: no new call gets in (closing), every pending or blocked call
 * is aborted and every waiter woken, the service thread is joined, and it
 * waits until no thread is inside any more (aborting again what was begun
 * meanwhile); only then does it run the script's cleanup handler, close the
 * sockets still open, the Lua state and the layers below.  From inside one of
 * the instance's own calls (a handler, a timer, a blocking hook) it is
 * refused with WSAEINPROGRESS and nothing changes. */
int lwsp_do_cleanup(lwsp_inst *I, LPINT err) {
  INT dummy;
  if (!err) err = &dummy;
  global_init();
  if (tls_in[I->slot] > 0) {
    lwsp_log(I->name, "WSPCleanup called from inside one of the provider's own calls: refused (WSAEINPROGRESS)");
    *err = WSAEINPROGRESS;
    return SOCKET_ERROR;
  }
  lwsp_mutex_lock(&g_lock);
  lwsp_mutex_lock(&I->lock);
  if (!I->active || I->closing || I->startups <= 0) {
    lwsp_mutex_unlock(&I->lock);
    lwsp_mutex_unlock(&g_lock);
    *err = WSANOTINITIALISED;
    return SOCKET_ERROR;
  }
  if (--I->startups > 0) {
    lwsp_mutex_unlock(&I->lock);
    lwsp_mutex_unlock(&g_lock);
    return 0;
  }
  I->closing = 1;
  /* handlers still running may start other providers (their lower layers):
   * the global lock is not held while they finish */
  lwsp_mutex_unlock(&g_lock);
  for (;;) {
    rt_abort_all(I);
    rt_service_stop(I);
    if (I->inside == 0) break;
    lwsp_cond_wait(&I->cond, &I->lock, 50);
  }
  I->cleaning = 1;
  if (I->href[P_cleanup] != LUA_NOREF) {
    lua_State *L = I->L;
    rt_run_mark run;
    int st, condemned;
    lua_pushcfunction(L, msgh);
    lua_rawgeti(L, LUA_REGISTRYINDEX, I->href[P_cleanup]);
    rt_inst_mark(I, 1);   /* (a WSPCleanup from the handler is refused) */
    I->limited = 1;
    I->lua_runs++;
    run = rt_budget_enter(I, L);
    st = lua_pcall(L, 0, 0, -2);
    condemned = rt_budget_leave(I, run);
    I->limited = 0;
    rt_budget_disarm(L);
    rt_inst_mark(I, -1);
    if (st != LUA_OK)
      lwsp_log(I->name, "handler 'cleanup' (WSPCleanup) raised an error: %s", rt_error_text(L, -1));
    else if (condemned)
      lwsp_log(I->name, "handler 'cleanup' (WSPCleanup) raised an error: %s (caught by the handler, which was stopped all the same)",
               rt_budget_message());
    lua_settop(L, 0);
    rt_abort_all(I);       /* what it began */
    rt_service_stop(I);
  }
  for (uint32_t i = 0; i < I->nsocks; i++)
    if (rt_sock_at(I, i)->gen) { rt_sock_at(I, i)->pending = 0; rt_sock_close(I, rt_sock_at(I, i)); }
  rt_budget_detach(I);
  lua_close(I->L);
  I->L = NULL;
  rt_views_free(I);
  for (uint32_t i = 0; i < I->nchunks; i++) free(I->chunks[i]);
  free(I->chunks);
  I->chunks = NULL;
  I->nsocks = I->nchunks = I->free_head = 0;
  lwsp_map_free(&I->ifsmap);
  rt_upcalls_close(I);
  I->epoch++;              /* completion routines still queued find nothing of this life */
  lwsp_mutex_unlock(&I->lock);
  /* after the state (its sockets' lower handles go with the lower layer), and
   * without the instance lock: a Lua layer below takes the global lock in its
   * own WSPCleanup.  Nothing else touches the instance while it is closing. */
  rt_lower_close_all(I);
  /* the slot is free again (in lock order: global, then the instance's) */
  lwsp_mutex_lock(&g_lock);
  lwsp_mutex_lock(&I->lock);
  __atomic_store_n(&I->active, 0, __ATOMIC_RELEASE);
  I->closing = I->cleaning = 0;
  lwsp_mutex_unlock(&I->lock);
  lwsp_mutex_unlock(&g_lock);
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
static int l_guid(lua_State *L) {
  GUID g;
  lwsp_guid_new(&g);
  lwsp_push_guid(L, &g);
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
/* registry.set_root(dir): on POSIX, creates the folder and points this
 * process's $LWSP_REGISTRY at it (what a host's environment would do); not on
 * Windows. */
static int l_reg_set_root(lua_State *L) {
  const char *d = luaL_checkstring(L, 1);
  if (!lwsp_path_is_absolute(d)) return luaL_argerror(L, 1, "must be an absolute path");
#ifdef _WIN32
  lua_pushnil(L);
  lua_pushstring(L, "on Windows the registry is HKLM\\SOFTWARE\\lwsp\\Providers");
  return 2;
#else
  if (!lwsp_mkdirs(d)) { lua_pushnil(L); lua_pushfstring(L, "cannot create %s", d); return 2; }
  if (setenv("LWSP_REGISTRY", d, 1) != 0) { lua_pushnil(L); lua_pushstring(L, "setenv failed"); return 2; }
  lua_pushboolean(L, 1);
  return 1;
#endif
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
  lua_pushinteger(L, I->startups); lua_setfield(L, -2, "startups");
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
    {NULL, NULL}};
  static const luaL_Reg reg[] = {
    {"get", l_reg_get}, {"list", l_reg_list}, {"where", l_reg_where},
    {"set", l_reg_set}, {"remove", l_reg_remove}, {"set_root", l_reg_set_root}, {NULL, NULL}};
  static const luaL_Reg reg_read[] = {{"get", l_reg_get}, {"list", l_reg_list}, {"where", l_reg_where}, {NULL, NULL}};
  lwsp_inst *I = lwsp_inst_of(L);
  global_init();
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
