/*
 * calls.c - the call machinery: entering and leaving an instance, the
 * coroutine pool, and running a handler on a coroutine (rt_begin, rt_run,
 * rt_end), which the 30 entries of dispatch.c and dispatch_io.c share.
 */
#include "runtime.h"
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdarg.h>
#include <limits.h>
#include <stdint.h>

/* This thread's entries into each instance, and into any: a WSPCleanup from
 * inside its own instance is refused, and a provider that reaches itself
 * through what it calls is stopped before the stack runs out. */
static _Thread_local int tls_in[LWSP_MAX_INSTANCES];
static _Thread_local int tls_nest;
#define MAX_NEST 24

/* Whether this thread is inside one of I's calls now. */
int rt_inside(lwsp_inst *I) { return tls_in[I->slot] > 0; }

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

/* A provider fault's log line, naming the handler. */
static void fault_line(rt_call *c, const char *fmt, va_list ap) {
  char msg[512];
  vsnprintf(msg, sizeof msg, fmt, ap);
  lwsp_log(c->I->name, "handler '%s' (%s): %s", lwsp_proc_names[c->proc], lwsp_spi_names[c->proc], msg);
}

/* Logs a provider fault with the handler's name; the call fails with WSAENETDOWN. */
int rt_fault(rt_call *c, LPINT err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fault_line(c, fmt, ap);
  va_end(ap);
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
  va_list ap;
  va_start(ap, fmt);
  fault_line(c, fmt, ap);
  va_end(ap);
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

/* An address argument lwsp will read: long enough for its family, no longer than a SOCKADDR_STORAGE. */
int rt_addr_ok(const struct sockaddr *sa, int len) {
  int need;
  if (!sa || len < 2) return 0;
  need = sa->sa_family == AF_INET ? 16 : sa->sa_family == AF_INET6 ? 28 : 2;
  return len >= need && len <= (int)sizeof(SOCKADDR_STORAGE);
}

int rt_push_addr_arg(rt_call *c, const struct sockaddr *sa, int len) {
  if (!rt_addr_ok(sa, len)) return 0;
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
