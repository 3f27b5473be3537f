/*
 * dispatch.c - the 30 WSP entries: argument checks, conversion to Lua values,
 * the handler call, and conversion of the results back into the caller's
 * memory.  docs/api.md lists each handler's arguments and results.
 *
 * Every entry: checks pointers and lengths the caller gave (WSAEFAULT before
 * any Lua runs), then rt_begin / push arguments / RUN / read results / rt_end.
 * FAIL and FAULT end the call; each entry declares `errv`, its failure value.
 */
#include "runtime.h"
#include "extfn.h"
#include <string.h>
#include <stdio.h>

#define ERRP INT errp_; if (!err) err = &errp_
#define FAIL(code) do { rt_fail(&c, err, (code)); return errv; } while (0)
#define FAULT(...) do { rt_fault(&c, err, __VA_ARGS__); return errv; } while (0)
#define RUN() do { if (rt_run(&c, err) != RT_DONE || rt_failed(&c, err)) return errv; } while (0)
#define BEGIN(proc, s, need) do { if (!rt_begin(&c, I, (proc), (s), (need), err)) return errv; } while (0)
#define R(k) (c.base + (k))          /* index of result k (0-based) on c.co */
#define HAS(k) (c.nres > (k) && !lua_isnil(c.co, R(k)))

/* Ends an inherited call made down in C (rt_begin_down): rc is the lower's. */
static int down_end(rt_call *c, int rc, LPINT err) {
  if (rc == 0) { rt_end(c); return 0; }
  rt_fail(c, err, *err ? *err : WSASYSCALLFAILURE);
  return SOCKET_ERROR;
}

static int min_addrlen(int af) { return af == AF_INET6 ? 28 : 16; }

/* The trace of an entry the C core answers itself (no handler to record it). */
#define CORE_TRACE(proc, s, ...) \
  const char *core_caller_ = NULL; \
  int core_tr_ = lwsp_tracing; \
  if (core_tr_) { \
    char core_args_[LWSP_TRACE_TEXT]; \
    snprintf(core_args_, sizeof core_args_, __VA_ARGS__); \
    core_caller_ = lwsp_trace_party(); \
    lwsp_trace_enter(core_caller_, I->name, lwsp_spi_names[proc], (s), core_args_); \
  }
#define CORE_END(proc, s, failed) \
  do { if (core_tr_) lwsp_trace_leave(core_caller_, I->name, lwsp_spi_names[proc], (s), (failed) ? *err : 0, ""); } while (0)

/* For the entries the C core answers itself (no handler): takes the lock and
 * finds the socket, or fails with *err set. */
static void unlock_inst(lwsp_inst *I) {
  if (--I->depth == 0) rt_pump(I);
  rt_inst_leave(I);
  lwsp_mutex_unlock(&I->lock);
}
static int lock_inst(lwsp_inst *I, LPINT err) {
  if (!rt_inst_enter(I, err)) return 0;
  I->depth++;
  return 1;
}
static lwsp_sock *lock_sock(lwsp_inst *I, SOCKET s, LPINT err) {
  lwsp_sock *so;
  if (!lock_inst(I, err)) return NULL;
  if (!(so = rt_sock_find(I, s))) { unlock_inst(I); *err = WSAENOTSOCK; }
  return so;
}

static void ov_failed(LPWSAOVERLAPPED ov, int code) {
  if (!ov) return;
  ov->Internal = (ULONG_PTR)code;
  ov->InternalHigh = 0;
  ov->OffsetHigh = (DWORD)code;
}

static void push_opt_qos(lua_State *co, const QOS *q) { lwsp_push_qos(co, q); }

/* Reads an integer result within [lo, hi]; 0 on anything else. */
static int int_result(rt_call *c, int k, lua_Integer lo, lua_Integer hi, lua_Integer *out) {
  if (c->nres <= k || !lua_isinteger(c->co, c->base + k)) return 0;
  *out = lua_tointeger(c->co, c->base + k);
  return *out >= lo && *out <= hi;
}

/* A handler's integer at idx for a C field of [lo, hi] (32 bits or less):
 * 1 if it fits; else the handler, the field and the value are logged and the
 * caller fails the call with WSAEINVAL -- a value is never cut to fit. */
#define I32_MIN_ (-(lua_Integer)0x80000000LL)
#define U32_MAX_ ((lua_Integer)0xffffffffLL)
static int in_range(rt_call *c, int idx, const char *field, lua_Integer lo, lua_Integer hi) {
  lua_Integer v = lua_tointeger(c->co, idx);
  if (v >= lo && v <= hi) return 1;
  rt_soft_fault(c, "returned %lld for %s, outside %lld..%lld: the call fails with WSAEINVAL", (long long)v, field,
                (long long)lo, (long long)hi);
  return 0;
}

static const char *rtype(rt_call *c, int k) {
  return c->nres > k ? luaL_typename(c->co, c->base + k) : "nothing";
}

/* condition(caller_address [, caller_data]) -> CF_ACCEPT | CF_REJECT | CF_DEFER */
static int l_condition(lua_State *L) {
  LPCONDITIONPROC fn;
  void *p = lua_touserdata(L, lua_upvalueindex(1));
  DWORD_PTR data = (DWORD_PTR)lua_tointeger(L, lua_upvalueindex(2));
  SOCKADDR_STORAGE ss;
  int len = 0;
  WSABUF id = {0, NULL}, cdata = {0, NULL};
  GROUP g = 0;
  size_t n;
  memcpy(&fn, &p, sizeof fn);
  if (!lua_isnoneornil(L, 1)) {
    if (!lwsp_to_sockaddr(L, 1, &ss, &len)) return luaL_argerror(L, 1, LWSP_ADDRESS_FORMS);
    id.len = (ULONG)len;
    id.buf = (CHAR *)&ss;
  }
  if (lua_isstring(L, 2)) {
    cdata.buf = (CHAR *)lua_tolstring(L, 2, &n);
    cdata.len = (ULONG)n;
  }
  lua_pushinteger(L, fn(len ? &id : NULL, cdata.buf ? &cdata : NULL, NULL, NULL, NULL, NULL, &g, data));
  return 1;
}

static SOCKET e_accept(lwsp_inst *I, SOCKET s, struct sockaddr *addr, LPINT addrlen, LPCONDITIONPROC cond,
                       DWORD_PTR cbdata, LPINT err) {
  const SOCKET errv = INVALID_SOCKET;
  rt_call c;
  SOCKET h;
  ERRP;
  if (addr && !addrlen) { *err = WSAEFAULT; return errv; }
  BEGIN(P_accept, s, 1);
  rt_reenable(I, c.so, FD_ACCEPT);
  if (addr && *addrlen < min_addrlen(c.so->af)) FAIL(WSAEFAULT);
  if (!(c.ns = rt_sock_open(I, c.co, c.so->af, c.so->catalog, err))) FAIL(*err);
  c.can_wait = 1;
  if (cond) {
    void *p;
    memcpy(&p, &cond, sizeof p);
    lua_pushlightuserdata(c.co, p);
    lua_pushinteger(c.co, (lua_Integer)cbdata);
    lua_pushcclosure(c.co, l_condition, 2);
  } else {
    lua_pushnil(c.co);
  }
  RUN();
  if (I->ifs && !rt_sock_set_ifs(I, c.ns, c.co, R(1), err)) FAIL(*err);
  if (addr && !rt_put_addr(&c, R(0), addr, addrlen, err)) return errv;
  h = c.ns->handle;
  c.ns = NULL;
  rt_end(&c);
  return h;
}

static INT e_addresstostring(lwsp_inst *I, LPSOCKADDR sa, DWORD salen, LPWSAPROTOCOL_INFOW pi, LPWSTR out,
                             LPDWORD outlen, LPINT err) {
  const INT errv = SOCKET_ERROR;
  rt_call c;
  WCHAR w[512];
  size_t len, units;
  const char *str;
  ERRP;
  if (!sa || !outlen) { *err = WSAEFAULT; return errv; }
  BEGIN(P_addresstostring, 0, 0);
  if (!rt_push_addr_arg(&c, sa, (int)salen)) FAIL(WSAEFAULT);
  if (pi) lwsp_push_protocol_info(c.co, pi); else lua_pushnil(c.co);
  RUN();
  if (c.nres < 1 || lua_type(c.co, R(0)) != LUA_TSTRING) FAULT("returned %s where a string was expected", rtype(&c, 0));
  str = lua_tolstring(c.co, R(0), &len);
  units = lwsp_utf8_to_utf16(str, len, w, 511);
  if (units > 511) FAULT("returned an address string longer than 511 characters");
  if (!out || *outlen < units + 1) { *outlen = (DWORD)(units + 1); FAIL(WSAEFAULT); }
  memcpy(out, w, units * sizeof(WCHAR));
  out[units] = 0;
  *outlen = (DWORD)(units + 1);
  rt_end(&c);
  return 0;
}

static int e_asyncselect(lwsp_inst *I, SOCKET s, HWND hwnd, unsigned int msg, LONG events, LPINT err) {
  const int errv = SOCKET_ERROR;
  rt_call c;
  ERRP;
  if (rt_live(I) && I->href[P_asyncselect] == LUA_NOREF) {
    CORE_TRACE(P_asyncselect, s, "window %llu, msg 0x%x, events 0x%lx", (unsigned long long)(uintptr_t)hwnd, msg,
               (unsigned long)events);
    lwsp_sock *so = lock_sock(I, s, err);
    int rc;
    if (!so) { CORE_END(P_asyncselect, s, 1); return errv; }
    rc = rt_async_select(I, so, hwnd, msg, events, err);
    unlock_inst(I);
    CORE_END(P_asyncselect, s, rc == SOCKET_ERROR);
    return rc;
  }
  BEGIN(P_asyncselect, s, 1);
  lua_pushinteger(c.co, (lua_Integer)(uintptr_t)hwnd);
  lua_pushinteger(c.co, msg);
  lua_pushinteger(c.co, events);
  RUN();
  c.so->nonblocking = 1;  /* WSAAsyncSelect puts the socket in non-blocking mode */
  return rt_finish_ok(&c, err);
}

static int e_bind(lwsp_inst *I, SOCKET s, const struct sockaddr *name, int namelen, LPINT err) {
  const int errv = SOCKET_ERROR;
  rt_call c;
  ERRP;
  if (!name) { *err = WSAEFAULT; return errv; }
  BEGIN(P_bind, s, 1);
  if (!rt_push_addr_arg(&c, name, namelen)) FAIL(WSAEFAULT);
  RUN();
  return rt_finish_ok(&c, err);
}

/* The C core owns blocking waits, so it owns their cancellation: the blocked
 * call on this thread fails with WSAEINTR.  No blocking call: WSAEINVAL. */
static int e_cancelblockingcall(lwsp_inst *I, LPINT err) {
  int e;
  ERRP;
  if (!rt_live(I)) { *err = WSANOTINITIALISED; return SOCKET_ERROR; }
  {
    CORE_TRACE(P_cancelblockingcall, 0, "%s", "");
    e = rt_cancel_blocking(I);
    if (e) *err = e;
    CORE_END(P_cancelblockingcall, 0, e != 0);
  }
  return e ? SOCKET_ERROR : 0;
}

static int e_cleanup(lwsp_inst *I, LPINT err) { return lwsp_do_cleanup(I, err); }

/* A missing closesocket handler still closes: the handle must never leak.  A
 * handler that fails (for example WSAEWOULDBLOCK while lingering) keeps the
 * socket open, as closesocket does on Windows. */
static int e_closesocket(lwsp_inst *I, SOCKET s, LPINT err) {
  const int errv = SOCKET_ERROR;
  rt_call c;
  ERRP;
  if (rt_live(I) && I->href[P_closesocket] == LUA_NOREF) {
    lwsp_sock *so = lock_sock(I, s, err);
    if (!so) return errv;
    rt_abort_socket(I, so);
    rt_sock_close(I, so);
    unlock_inst(I);
    return 0;
  }
  BEGIN(P_closesocket, s, 1);
  c.so->close_running = 1;    /* cleared by rt_end */
  RUN();
  rt_abort_socket(I, c.so);
  c.ns = c.so; /* rt_end closes it */
  rt_end(&c);
  return 0;
}

static int e_connect(lwsp_inst *I, SOCKET s, const struct sockaddr *name, int namelen, LPWSABUF callerdata,
                     LPWSABUF calleedata, LPQOS sqos, LPQOS gqos, LPINT err) {
  const int errv = SOCKET_ERROR;
  rt_call c;
  ERRP;
  if (!name) { *err = WSAEFAULT; return errv; }
  BEGIN(P_connect, s, 1);
  rt_reenable(I, c.so, FD_CONNECT);
  c.can_wait = 1;
  if (!rt_push_addr_arg(&c, name, namelen)) FAIL(WSAEFAULT);
  rt_push_wsabuf(c.co, callerdata);
  push_opt_qos(c.co, sqos);
  push_opt_qos(c.co, gqos);
  RUN();
  if (calleedata && calleedata->buf) {
    size_t n = 0;
    const char *d = c.nres > 1 && lua_type(c.co, R(1)) == LUA_TSTRING ? lua_tolstring(c.co, R(1), &n) : NULL;
    if (n > calleedata->len) n = calleedata->len;
    if (d) memcpy(calleedata->buf, d, n);
    calleedata->len = (ULONG)n;
  }
  rt_end(&c);
  return 0;
}

static int e_duplicatesocket(lwsp_inst *I, SOCKET s, DWORD pid, LPWSAPROTOCOL_INFOW pi, LPINT err) {
  const int errv = SOCKET_ERROR;
  rt_call c;
  WSAPROTOCOL_INFOW tmp;
  char msg[200];
  ERRP;
  if (!pi) { *err = WSAEFAULT; return errv; }
  BEGIN(P_duplicatesocket, s, 1);
  lua_pushinteger(c.co, pid);
  RUN();
  tmp = I->info;
  if (c.nres < 1 || !lua_istable(c.co, R(0))) FAULT("returned %s where protocol info (a table) was expected", rtype(&c, 0));
  if (!lwsp_to_protocol_info(c.co, R(0), &tmp, msg, sizeof msg)) FAULT("returned bad protocol info: %s", msg);
  *pi = tmp;
  rt_end(&c);
  return 0;
}

static int e_enumnetworkevents(lwsp_inst *I, SOCKET s, WSAEVENT ev, LPWSANETWORKEVENTS ne, LPINT err) {
  const int errv = SOCKET_ERROR;
  rt_call c;
  lua_Integer mask;
  WSANETWORKEVENTS out;
  ERRP;
  if (!ne) { *err = WSAEFAULT; return errv; }
  if (rt_live(I) && I->href[P_enumnetworkevents] == LUA_NOREF) {
    CORE_TRACE(P_enumnetworkevents, s, "event 0x%llx", (unsigned long long)(uintptr_t)ev);
    lwsp_sock *so = lock_sock(I, s, err);
    int rc;
    if (!so) { CORE_END(P_enumnetworkevents, s, 1); return errv; }
    rc = rt_enum_events(I, so, ev, ne, err);
    unlock_inst(I);
    if (core_tr_ && rc == 0) {
      char res[LWSP_TRACE_TEXT];
      snprintf(res, sizeof res, "events 0x%lx", (unsigned long)ne->lNetworkEvents);
      lwsp_trace_leave(core_caller_, I->name, lwsp_spi_names[P_enumnetworkevents], s, 0, res);
    } else {
      CORE_END(P_enumnetworkevents, s, rc == SOCKET_ERROR);
    }
    return rc;
  }
  BEGIN(P_enumnetworkevents, s, 1);
  lua_pushinteger(c.co, (lua_Integer)(uintptr_t)ev);
  RUN();
  if (!int_result(&c, 0, 0, FD_ALL_EVENTS, &mask)) FAULT("returned %s where an FD_* mask was expected", rtype(&c, 0));
  memset(&out, 0, sizeof out);
  out.lNetworkEvents = (LONG)mask;
  if (HAS(1)) {
    if (!lua_istable(c.co, R(1))) FAULT("returned %s where a table of error codes was expected", rtype(&c, 1));
    for (int i = 0; i < FD_MAX_EVENTS; i++) {
      int t = lua_rawgeti(c.co, R(1), (lua_Integer)1 << i);
      if (t != LUA_TNIL && !lua_isinteger(c.co, -1)) FAULT("returned a %s as the error code of FD bit %d", luaL_typename(c.co, -1), i);
      if (t != LUA_TNIL && !in_range(&c, -1, "a network event's error code", 0, 0x7fffffff)) FAIL(WSAEINVAL);
      out.iErrorCode[i] = (int)lua_tointeger(c.co, -1);
      lua_pop(c.co, 1);
    }
  }
  *ne = out;
  rt_end(&c);
  return 0;
}

static int e_eventselect(lwsp_inst *I, SOCKET s, WSAEVENT ev, LONG events, LPINT err) {
  const int errv = SOCKET_ERROR;
  rt_call c;
  ERRP;
  if (rt_live(I) && I->href[P_eventselect] == LUA_NOREF) {
    CORE_TRACE(P_eventselect, s, "event 0x%llx, events 0x%lx", (unsigned long long)(uintptr_t)ev, (unsigned long)events);
    lwsp_sock *so = lock_sock(I, s, err);
    int rc;
    if (!so) { CORE_END(P_eventselect, s, 1); return errv; }
    rc = rt_event_select(I, so, ev, events, err);
    unlock_inst(I);
    CORE_END(P_eventselect, s, rc == SOCKET_ERROR);
    return rc;
  }
  BEGIN(P_eventselect, s, 1);
  lua_pushinteger(c.co, (lua_Integer)(uintptr_t)ev);
  lua_pushinteger(c.co, events);
  RUN();
  c.so->nonblocking = 1;  /* so does WSAEventSelect */
  return rt_finish_ok(&c, err);
}

/* Without a handler the C core answers from the WSAOVERLAPPED fields, which
 * every completion in lwsp fills in as SPI.md describes. */
static BOOL e_getoverlappedresult(lwsp_inst *I, SOCKET s, LPWSAOVERLAPPED ov, LPDWORD bytes, BOOL wait,
                                  LPDWORD flags, LPINT err) {
  const BOOL errv = FALSE;
  rt_call c;
  lua_Integer n, f = 0;
  ERRP;
  if (!ov || !bytes || !flags) { *err = WSAEFAULT; return errv; }
  if (rt_live(I) && I->href[P_getoverlappedresult] == LUA_NOREF) {
    CORE_TRACE(P_getoverlappedresult, s, "overlapped 0x%llx, wait %d", (unsigned long long)(uintptr_t)ov, (int)wait);
    lwsp_sock *so = lock_sock(I, s, err);
    if (!so) { CORE_END(P_getoverlappedresult, s, 1); return errv; }
    if (wait && I->depth == 1) {
      /* wait for this provider's own operation on ov to end */
      I->depth = 0;
      while (ov->Internal == WSS_OPERATION_IN_PROGRESS && rt_find_op(I, ov))
        lwsp_cond_wait(&I->cond, &I->lock, -1);
      I->depth = 1;
    }
    /* completions write the fields under the lock: read them under it, so
     * that a completed Internal never comes with the bytes not yet written */
    {
      ULONG_PTR internal = ov->Internal, got = ov->InternalHigh;
      DWORD fl = ov->Offset, error = ov->OffsetHigh;
      unlock_inst(I);
      if (internal == WSS_OPERATION_IN_PROGRESS) {
        *err = WSA_IO_INCOMPLETE;
        CORE_END(P_getoverlappedresult, s, 1);
        return errv;
      }
      *bytes = (DWORD)got;
      *flags = fl;
      if (error) { *err = (INT)error; CORE_END(P_getoverlappedresult, s, 1); return errv; }
    }
    CORE_END(P_getoverlappedresult, s, 0);
    return TRUE;
  }
  BEGIN(P_getoverlappedresult, s, 1);
  rt_push_overlapped(&c, ov);
  lua_pushboolean(c.co, wait);
  RUN();
  if (!int_result(&c, 0, 0, 0xffffffffLL, &n)) FAULT("returned %s where a byte count was expected", rtype(&c, 0));
  if (HAS(1) && !int_result(&c, 1, 0, 0xffffffffLL, &f)) FAULT("returned %s where flags were expected", rtype(&c, 1));
  *bytes = (DWORD)n;
  *flags = (DWORD)f;
  rt_end(&c);
  return TRUE;
}

static int name_entry(lwsp_inst *I, int proc, SOCKET s, struct sockaddr *name, LPINT namelen, LPINT err) {
  const int errv = SOCKET_ERROR;
  rt_call c;
  ERRP;
  if (!name || !namelen) { *err = WSAEFAULT; return errv; }
  if (!rt_begin_down(&c, I, proc, s, 1, err)) return errv;
  if (c.low) return down_end(&c, rt_down_name(&c, proc == P_getpeername, name, namelen, err), err);
  RUN();
  if (!rt_put_addr(&c, R(0), name, namelen, err)) return errv;
  rt_end(&c);
  return 0;
}
static int e_getpeername(lwsp_inst *I, SOCKET s, struct sockaddr *n, LPINT l, LPINT e) { return name_entry(I, P_getpeername, s, n, l, e); }
static int e_getsockname(lwsp_inst *I, SOCKET s, struct sockaddr *n, LPINT l, LPINT e) { return name_entry(I, P_getsockname, s, n, l, e); }

static int e_getsockopt(lwsp_inst *I, SOCKET s, int level, int optname, char *optval, LPINT optlen, LPINT err) {
  const int errv = SOCKET_ERROR;
  rt_call c;
  union { int32_t i; LINGER l; WSAPROTOCOL_INFOW pi; char raw[sizeof(WSAPROTOCOL_INFOW)]; } v;
  const void *src = &v;
  size_t n = 4;
  char msg[200];
  ERRP;
  if (!optval || !optlen || *optlen < 0) { *err = WSAEFAULT; return errv; }
  /* (wsp.layered answers SO_PROTOCOL_INFOW itself: the layered entry) */
  if (!rt_begin_down(&c, I, P_getsockopt, s,
                     !(level == SOL_SOCKET && optname == SO_PROTOCOL_INFOW) && *optlen <= (int)sizeof v, err))
    return errv;
  if (c.low) return down_end(&c, rt_down_getsockopt(&c, level, optname, optval, optlen, err), err);
  lua_pushinteger(c.co, level);
  lua_pushinteger(c.co, optname);
  lua_pushinteger(c.co, *optlen);
  RUN();
  switch (c.nres ? lua_type(c.co, R(0)) : LUA_TNONE) {
  case LUA_TBOOLEAN: v.i = lua_toboolean(c.co, R(0)); break;
  case LUA_TNUMBER:
    if (!lua_isinteger(c.co, R(0))) FAULT("returned a non-integer number as an option value");
    if (!in_range(&c, R(0), "a 4-byte option value", I32_MIN_, U32_MAX_)) FAIL(WSAEINVAL);
    v.i = (int32_t)(uint32_t)lua_tointeger(c.co, R(0));
    break;
  case LUA_TSTRING: src = lua_tolstring(c.co, R(0), &n); break;
  case LUA_TTABLE:
    if (level == SOL_SOCKET && optname == SO_LINGER) {
      lwsp_rawfield(c.co, R(0), "l_onoff");
      lwsp_rawfield(c.co, R(0), "l_linger");
      if (!lua_isinteger(c.co, -2) || !lua_isinteger(c.co, -1))
        FAULT("returned SO_LINGER without integer l_onoff and l_linger (%s, %s)", luaL_typename(c.co, -2), luaL_typename(c.co, -1));
      if (!in_range(&c, -2, "SO_LINGER's l_onoff (a u_short)", 0, 0xffff) ||
          !in_range(&c, -1, "SO_LINGER's l_linger (a u_short)", 0, 0xffff))
        FAIL(WSAEINVAL);
      v.l.l_onoff = (USHORT)lua_tointeger(c.co, -2);
      v.l.l_linger = (USHORT)lua_tointeger(c.co, -1);
      lua_pop(c.co, 2);
    } else if (level == SOL_SOCKET && optname == SO_PROTOCOL_INFOW) {
      v.pi = I->info;
      if (!lwsp_to_protocol_info(c.co, R(0), &v.pi, msg, sizeof msg)) FAULT("returned bad protocol info: %s", msg);
      n = sizeof v.pi;
    } else {
      FAULT("returned a table for option %d/%d (tables are for SO_LINGER and SO_PROTOCOL_INFOW)", level, optname);
    }
    break;
  default: FAULT("returned %s where an option value was expected", rtype(&c, 0));
  }
  if ((size_t)*optlen < n) FAIL(WSAEFAULT);
  memcpy(optval, src, n);
  *optlen = (int)n;
  rt_end(&c);
  return 0;
}

/* 0 (logged) when a field is out of the ULONG range or not an integer */
static int to_flowspec(rt_call *c, int idx, FLOWSPEC *f) {
  lua_State *co = c->co;
  if (!lua_istable(co, idx)) return 1;
#define F_(n) \
  if (lwsp_rawfield(co, idx, #n) != LUA_TNIL) { \
    if (!lua_isinteger(co, -1) || !in_range(c, -1, "FLOWSPEC's " #n " (a ULONG)", 0, U32_MAX_)) return 0; \
    f->n = (ULONG)lua_tointeger(co, -1); \
  } \
  lua_pop(co, 1);
  F_(TokenRate) F_(TokenBucketSize) F_(PeakBandwidth) F_(Latency) F_(DelayVariation) F_(ServiceType)
  F_(MaxSduSize) F_(MinimumPolicedSize)
#undef F_
  return 1;
}

static BOOL e_getqosbyname(lwsp_inst *I, SOCKET s, LPWSABUF name, LPQOS qos, LPINT err) {
  const BOOL errv = FALSE;
  rt_call c;
  ERRP;
  if (!qos) { *err = WSAEFAULT; return errv; }
  BEGIN(P_getqosbyname, s, 1);
  rt_push_wsabuf(c.co, name);
  RUN();
  if (c.nres < 1 || !lua_istable(c.co, R(0))) FAULT("returned %s where a QOS table was expected", rtype(&c, 0));
  {
    QOS q = *qos;
    lwsp_rawfield(c.co, R(0), "SendingFlowspec");
    if (!to_flowspec(&c, lua_gettop(c.co), &q.SendingFlowspec)) FAIL(WSAEINVAL);
    lwsp_rawfield(c.co, R(0), "ReceivingFlowspec");
    if (!to_flowspec(&c, lua_gettop(c.co), &q.ReceivingFlowspec)) FAIL(WSAEINVAL);
    lua_pop(c.co, 2);
    *qos = q;
  }
  rt_end(&c);
  return TRUE;
}

static int finish_ioctl(rt_call *c, const rt_io *io, DWORD *bytes, DWORD *flags) {
  size_t n = 0;
  const char *data = NULL;
  uint32_t u;
  *flags = 0;
  if (c->nres > 0) {
    switch (lua_type(c->co, c->base)) {
    case LUA_TSTRING: data = lua_tolstring(c->co, c->base, &n); break;
    case LUA_TNUMBER:
      if (!lua_isinteger(c->co, c->base)) return rt_soft_fault(c, "returned a non-integer number");
      if (!in_range(c, c->base, "a 4-byte ioctl result (u_long)", I32_MIN_, U32_MAX_)) return WSAEINVAL;
      u = (uint32_t)lua_tointeger(c->co, c->base);
      data = (const char *)&u;
      n = 4;
      break;
    case LUA_TNIL: case LUA_TBOOLEAN: break;
    default: return rt_soft_fault(c, "returned %s where ioctl output was expected", rtype(c, 0));
    }
  }
  if (n > io->cbout) return WSAEFAULT;
  if (n) memcpy(io->out, data, n);
  *bytes = (DWORD)n;
  return 0;
}

/* The data entries (send, sendto, recv, recvfrom, ioctl) end the same way:
 * at once (results to the caller, and the overlapped mechanism notified), or
 * pending (WSA_IO_PENDING; the results follow when the handler finishes). */
static int data_end(rt_call *c, int rc, const rt_io *io, rt_finish_fn finish, LPDWORD count, LPDWORD flags,
                    LPWSAOVERLAPPED ov, LPWSAOVERLAPPED_COMPLETION_ROUTINE routine, LPWSATHREADID tid, LPINT err) {
  DWORD bytes = 0, fl = 0;
  int e;
  if (rc == RT_FAILED) { ov_failed(ov, *err); return SOCKET_ERROR; }
  if (rc == RT_PENDING || rc == RT_QUEUED) {
    if (!(rc == RT_PENDING ? rt_pend : rt_defer)(c, io, finish, routine, tid, err)) {
      ov_failed(ov, *err);
      return SOCKET_ERROR;
    }
    *err = c->err_code = WSA_IO_PENDING;
    rt_end(c);
    return SOCKET_ERROR;
  }
  if (rt_failed(c, err)) { ov_failed(ov, *err); return SOCKET_ERROR; }
  e = finish(c, io, &bytes, &fl);
  if (count) *count = bytes;
  if (flags) *flags = fl;
  if (e) {
    ov_failed(ov, e);
    if (ov) ov->InternalHigh = bytes;
    rt_fail(c, err, e);
    return SOCKET_ERROR;
  }
  if (ov) rt_overlapped_done(c->I, c->so, c->so->handle, ov, routine, tid, 0, bytes, fl);
  rt_end(c);
  return 0;
}

/* Checks shared by the overlapped-capable entries. */
static int overlapped_args(LPWSAOVERLAPPED ov, LPWSAOVERLAPPED_COMPLETION_ROUTINE routine, LPWSATHREADID tid) {
  return !routine || (ov && tid);
}

static int e_ioctl(lwsp_inst *I, SOCKET s, DWORD code, LPVOID in, DWORD cbin, LPVOID out, DWORD cbout,
                   LPDWORD returned, LPWSAOVERLAPPED ov, LPWSAOVERLAPPED_COMPLETION_ROUTINE routine,
                   LPWSATHREADID tid, LPINT err) {
  const int errv = SOCKET_ERROR;
  rt_call c;
  rt_io io;
  ERRP;
  if ((!returned && !ov) || (cbin && !in) || (cbout && !out) || !overlapped_args(ov, routine, tid)) {
    *err = WSAEFAULT;
    ov_failed(ov, WSAEFAULT);
    return errv;
  }
  if (code == FIONBIO && (!in || cbin < 4)) { *err = WSAEFAULT; ov_failed(ov, WSAEFAULT); return errv; }
  { int rc; if (rt_ext_ioctl(I, s, code, in, cbin, out, cbout, returned, ov, routine, tid, err, &rc)) return rc; }
  if (code == FIONBIO && I->href[P_ioctl] == LUA_NOREF) {
    /* the C core keeps the blocking mode; a handler, if any, is told too */
    lwsp_sock *so = lock_sock(I, s, err);
    uint32_t v;
    if (!so) return errv;
    memcpy(&v, in, 4);
    if (!v && so->ev_mode) { unlock_inst(I); *err = WSAEINVAL; return errv; } /* selected sockets stay non-blocking */
    so->nonblocking = v != 0;
    unlock_inst(I);
    if (returned) *returned = 0;
    return 0;
  }
  BEGIN(P_ioctl, s, 1);
  rt_reenable(I, c.so, code == SIO_GET_QOS ? FD_QOS : code == SIO_GET_GROUP_QOS ? FD_GROUP_QOS
                       : code == SIO_ROUTING_INTERFACE_CHANGE ? FD_ROUTING_INTERFACE_CHANGE
                       : code == SIO_ADDRESS_LIST_CHANGE ? FD_ADDRESS_LIST_CHANGE : 0);
  c.can_wait = 1;
  c.ov = ov;
  lua_pushinteger(c.co, code);
  if (in) lua_pushlstring(c.co, (const char *)in, cbin); else lua_pushnil(c.co);
  lua_pushinteger(c.co, cbout);
  memset(&io, 0, sizeof io);
  io.out = out;
  io.cbout = cbout;
  if (code == FIONBIO) {
    uint32_t v;
    memcpy(&v, in, 4);
    if (!v && c.so->ev_mode) FAIL(WSAEINVAL);   /* selected sockets stay non-blocking */
    c.so->nonblocking = v != 0;
  }
  return data_end(&c, rt_run(&c, err), &io, finish_ioctl, returned, NULL, ov, routine, tid, err);
}

static SOCKET e_joinleaf(lwsp_inst *I, SOCKET s, const struct sockaddr *name, int namelen, LPWSABUF callerdata,
                         LPWSABUF calleedata, LPQOS sqos, LPQOS gqos, DWORD flags, LPINT err) {
  const SOCKET errv = INVALID_SOCKET;
  rt_call c;
  ERRP;
  (void)calleedata;
  if (!name) { *err = WSAEFAULT; return errv; }
  BEGIN(P_joinleaf, s, 1);
  if (!rt_push_addr_arg(&c, name, namelen)) FAIL(WSAEFAULT);
  rt_push_wsabuf(c.co, callerdata);
  push_opt_qos(c.co, sqos);
  push_opt_qos(c.co, gqos);
  lua_pushinteger(c.co, flags);
  RUN();
  rt_end(&c);
  return s;
}

static int e_listen(lwsp_inst *I, SOCKET s, int backlog, LPINT err) {
  const int errv = SOCKET_ERROR;
  rt_call c;
  ERRP;
  BEGIN(P_listen, s, 1);
  lua_pushinteger(c.co, backlog);
  RUN();
  return rt_finish_ok(&c, err);
}

void *rt_push_recv_args(lwsp_inst *I, lua_State *co, const rt_io *io) {
  void *view = NULL;
  if (I->views) {
    if (!(view = rt_push_view(I, co, io->bufs, io->nbufs, io->cap, 1))) return NULL;
  } else {
    lua_pushinteger(co, (lua_Integer)io->cap);
  }
  lua_pushinteger(co, io->flags);
  return view;
}

/* recv and recvfrom: copies the data result into the caller's buffers (or
 * takes the count written to a view).  Data longer than the buffers is cut,
 * with WSAEMSGSIZE; recvfrom also writes the sender's address. */
static int finish_recv(rt_call *c, const rt_io *io, DWORD *bytes, DWORD *flags) {
  int from = c->proc == P_recvfrom, fk = from ? 2 : 1;
  size_t len, k;
  lua_Integer fl = 0;
  if (c->nres > fk && !lua_isnil(c->co, c->base + fk) && !int_result(c, fk, 0, 0xffffffffLL, &fl))
    return rt_soft_fault(c, "returned %s where flags were expected", rtype(c, fk));
  if (c->I->views) {
    lua_Integer n;
    if (!int_result(c, 0, 0, (lua_Integer)io->cap, &n))
      return rt_soft_fault(c, "returned %s where the count of bytes written to the view (0 to %llu) was expected",
                           rtype(c, 0), (unsigned long long)io->cap);
    len = k = (size_t)n;
  } else {
    const char *data;
    if (c->nres < 1 || lua_type(c->co, c->base) != LUA_TSTRING)
      return rt_soft_fault(c, "returned %s where data (a string) was expected", rtype(c, 0));
    data = lua_tolstring(c->co, c->base, &len);
    k = rt_scatter(io->bufs, io->nbufs, data, len);
  }
  if (from && io->from) {
    SOCKADDR_STORAGE ss;
    int alen;
    if (c->nres < 2 || !lwsp_to_sockaddr(c->co, c->base + 1, &ss, &alen))
      return rt_soft_fault(c, "returned %s where the sender's address was expected", rtype(c, 1));
    if (*io->fromlen < alen) { *io->fromlen = alen; return WSAEFAULT; }
    memcpy(io->from, &ss, (size_t)alen);
    *io->fromlen = alen;
  }
  *bytes = (DWORD)k;
  *flags = (DWORD)fl;
  if (len > io->cap) {
    if (!(c->I->info.dwServiceFlags1 & XP1_MESSAGE_ORIENTED))
      lwsp_log(c->I->name, "handler '%s' returned %llu bytes for a %llu-byte buffer: the rest is lost",
               lwsp_proc_names[c->proc], (unsigned long long)len, (unsigned long long)io->cap);
    return WSAEMSGSIZE;
  }
  return 0;
}

static int recv_entry(lwsp_inst *I, int proc, SOCKET s, LPWSABUF bufs, DWORD nbufs, LPDWORD got, LPDWORD flags,
                      struct sockaddr *from, LPINT fromlen, LPWSAOVERLAPPED ov,
                      LPWSAOVERLAPPED_COMPLETION_ROUTINE routine, LPWSATHREADID tid, LPINT err) {
  const int errv = SOCKET_ERROR;
  rt_call c;
  rt_io io;
  size_t cap;
  int bad;
  ERRP;
  if (!flags || (!got && !ov) || (from && !fromlen) || !overlapped_args(ov, routine, tid)) bad = WSAEFAULT;
  else bad = rt_check_bufs(bufs, nbufs, &cap);
  if (bad) {
    *err = bad;
    ov_failed(ov, bad);
    return errv;
  }
  if (!rt_begin_down(&c, I, proc, s, proc != P_recv ? 0 : ov ? 2 : 1, err)) return errv;
  rt_reenable(I, c.so, (*flags & MSG_OOB) ? FD_OOB : FD_READ);
  memset(&io, 0, sizeof io);
  io.bufs = bufs;
  io.nbufs = nbufs;
  io.cap = cap;
  io.from = from;
  io.fromlen = fromlen;
  io.flags = *flags;
  c.ov = ov;
  /* an inherited receive behind others queues with no coroutine */
  if (c.low && c.behind) return data_end(&c, RT_QUEUED, &io, finish_recv, got, flags, ov, routine, tid, err);
  if (c.low) {
    DWORD n = 0, fl = *flags;
    INT e = 0;
  again:
    if (rt_down_recv(&c, bufs, nbufs, &n, &fl, &e) == 0) {
      if (got) *got = n;
      *flags = fl;
      if (ov) rt_overlapped_done(I, c.so, c.so->handle, ov, routine, tid, 0, n, fl);
      rt_end(&c);
      return 0;
    }
    if (e != WSAEWOULDBLOCK || (!ov && c.so->nonblocking)) {   /* (the handler could only say the same) */
      if (got) *got = n;
      ov_failed(ov, e ? e : WSASYSCALLFAILURE);
      FAIL(e ? e : WSASYSCALLFAILURE);
    }
    if (!ov && I->depth == 1) {                 /* blocking: waits on this thread for the layer below */
      if (!rt_block_down(&c, 0, err)) return errv;
      fl = *flags;
      goto again;
    }
    if (!rt_enter_lua(&c, err)) return errv;   /* the handler waits */
  }
  if (from && *fromlen < min_addrlen(c.so->af)) { ov_failed(ov, WSAEFAULT); FAIL(WSAEFAULT); }
  c.can_wait = 1;
  if (!(c.view = rt_push_recv_args(I, c.co, &io)) && I->views) { ov_failed(ov, WSAENOBUFS); FAIL(WSAENOBUFS); }
  return data_end(&c, rt_run_in_turn(&c, err), &io, finish_recv, got, flags, ov, routine, tid, err);
}

static int e_recv(lwsp_inst *I, SOCKET s, LPWSABUF bufs, DWORD nbufs, LPDWORD got, LPDWORD flags,
                  LPWSAOVERLAPPED ov, LPWSAOVERLAPPED_COMPLETION_ROUTINE routine, LPWSATHREADID tid, LPINT err) {
  return recv_entry(I, P_recv, s, bufs, nbufs, got, flags, NULL, NULL, ov, routine, tid, err);
}

static int e_recvdisconnect(lwsp_inst *I, SOCKET s, LPWSABUF data, LPINT err) {
  const int errv = SOCKET_ERROR;
  rt_call c;
  ERRP;
  BEGIN(P_recvdisconnect, s, 1);
  RUN();
  if (data) {
    size_t n = 0;
    const char *d = c.nres > 0 && lua_type(c.co, R(0)) == LUA_TSTRING ? lua_tolstring(c.co, R(0), &n) : NULL;
    if (n && !data->buf) FAIL(WSAEFAULT);
    if (n > data->len) FAIL(WSAEMSGSIZE);
    if (d) memcpy(data->buf, d, n);
    data->len = (ULONG)n;
  }
  rt_end(&c);
  return 0;
}

static int e_recvfrom(lwsp_inst *I, SOCKET s, LPWSABUF bufs, DWORD nbufs, LPDWORD got, LPDWORD flags,
                      struct sockaddr *from, LPINT fromlen, LPWSAOVERLAPPED ov,
                      LPWSAOVERLAPPED_COMPLETION_ROUTINE routine, LPWSATHREADID tid, LPINT err) {
  return recv_entry(I, P_recvfrom, s, bufs, nbufs, got, flags, from, fromlen, ov, routine, tid, err);
}

/* Pushes the sockets of an fd_set as an array of socket tables. */
static int push_set(rt_call *c, wsp_fd_set *set) {
  if (!set) { lua_pushnil(c->co); return 1; }
  lua_createtable(c->co, (int)set->fd_count, 0);
  for (unsigned i = 0; i < set->fd_count; i++) {
    lwsp_sock *so = rt_sock_find(c->I, set->fd_array[i]);
    if (!so) return 0;
    lua_rawgeti(c->co, LUA_REGISTRYINDEX, so->ref);
    lua_rawseti(c->co, -2, i + 1);
  }
  return 1;
}

/* Keeps in set only the sockets the handler returned as ready. */
static int pull_set(rt_call *c, int k, wsp_fd_set *set) {
  wsp_fd_set out;
  lua_State *co = c->co;
  if (!set) return 1;
  out.fd_count = 0;
  if (c->nres > k && lua_istable(co, c->base + k)) {
    lua_Integer n = (lua_Integer)lua_rawlen(co, c->base + k);
    for (lua_Integer i = 1; i <= n && out.fd_count < WSP_FD_SETSIZE; i++) {
      SOCKET h;
      lua_rawgeti(co, c->base + k, i);
      lwsp_rawfield(co, -1, "handle");
      h = (SOCKET)lua_tointeger(co, -1);
      lua_pop(co, 2);
      if (!lwsp_fd_isset(h, set)) return 0;
      if (!lwsp_fd_isset(h, &out)) out.fd_array[out.fd_count++] = h;
    }
  } else if (c->nres > k && !lua_isnil(co, c->base + k)) {
    return 0;
  }
  *set = out;
  return 1;
}

static int e_select(lwsp_inst *I, int nfds, wsp_fd_set *r, wsp_fd_set *w, wsp_fd_set *e, wsp_timeval *tv,
                    LPINT err) {
  const int errv = SOCKET_ERROR;
  rt_call c;
  ERRP;
  (void)nfds;
  if ((!r && !w && !e) || (tv && (tv->tv_sec < 0 || tv->tv_usec < 0)) || (r && r->fd_count > WSP_FD_SETSIZE) ||
      (w && w->fd_count > WSP_FD_SETSIZE) || (e && e->fd_count > WSP_FD_SETSIZE)) {
    *err = WSAEINVAL;
    return errv;
  }
  if (rt_live(I) && I->href[P_select] == LUA_NOREF) {
    int rc;
    CORE_TRACE(P_select, 0, "%u, %u, %u sockets", r ? r->fd_count : 0, w ? w->fd_count : 0, e ? e->fd_count : 0);
    if (!lock_inst(I, err)) { CORE_END(P_select, 0, 1); return errv; }
    rc = rt_select(I, r, w, e, tv, err);
    unlock_inst(I);
    CORE_END(P_select, 0, rc == SOCKET_ERROR);
    return rc;
  }
  BEGIN(P_select, 0, 0);
  c.can_wait = 1;
  if (!push_set(&c, r) || !push_set(&c, w) || !push_set(&c, e)) FAIL(WSAENOTSOCK);
  if (tv) lua_pushnumber(c.co, tv->tv_sec + tv->tv_usec / 1e6); else lua_pushnil(c.co);
  RUN();
  if (!pull_set(&c, 0, r) || !pull_set(&c, 1, w) || !pull_set(&c, 2, e))
    FAULT("must return arrays of sockets taken from the sets it was given");
  rt_end(&c);
  return (int)((r ? r->fd_count : 0) + (w ? w->fd_count : 0) + (e ? e->fd_count : 0));
}

static int finish_send(rt_call *c, const rt_io *io, DWORD *bytes, DWORD *flags) {
  lua_Integer n;
  if (!int_result(c, 0, 0, (lua_Integer)io->cap, &n))
    return rt_soft_fault(c, "returned %s where a byte count from 0 to %llu was expected", rtype(c, 0),
                         (unsigned long long)io->cap);
  *bytes = (DWORD)(n + io->before);
  *flags = 0;
  return 0;
}

static int send_common(lwsp_inst *I, int proc, SOCKET s, LPWSABUF bufs, DWORD nbufs, LPDWORD sent, DWORD flags,
                       const struct sockaddr *to, int tolen, LPWSAOVERLAPPED ov,
                       LPWSAOVERLAPPED_COMPLETION_ROUTINE routine, LPWSATHREADID tid, LPINT err) {
  const int errv = SOCKET_ERROR;
  rt_call c;
  rt_io io;
  size_t total, before = 0;
  WSABUF rest[16];
  int bad;
  ERRP;
  if ((!sent && !ov) || !overlapped_args(ov, routine, tid)) bad = WSAEFAULT;
  else bad = rt_check_bufs(bufs, nbufs, &total);
  if (bad) {
    *err = bad;
    ov_failed(ov, bad);
    return errv;
  }
  if (!rt_begin_down(&c, I, proc, s, proc == P_send && !ov, err)) return errv;
  if (c.low) {
    for (;;) {
      DWORD n = 0, k = 0;
      INT e = 0;
      if (rt_down_send(&c, bufs, nbufs, &n, flags, &e) == 0) {
        /* done, or (a blocking send goes down whole) the rest goes after it */
        size_t skip = n;
        if (n >= total || c.so->nonblocking) { *sent = (DWORD)(before + n); rt_end(&c); return 0; }
        while (k < nbufs && skip >= bufs[k].len) skip -= bufs[k++].len;
        if (nbufs - k > sizeof rest / sizeof *rest) { *sent = (DWORD)(before + n); rt_end(&c); return 0; }
        memmove(rest, bufs + k, (nbufs - k) * sizeof *rest);
        rest[0].buf += skip;
        rest[0].len -= (ULONG)skip;
        bufs = rest;
        nbufs -= k;
        total -= n;
        before += n;
      } else if (e != WSAEWOULDBLOCK || c.so->nonblocking) {   /* (the handler could only say the same) */
        if (before) { *sent = (DWORD)before; rt_end(&c); return 0; }   /* the error shows on the next call */
        FAIL(e ? e : WSASYSCALLFAILURE);
      }
      if (I->depth > 1) break;                      /* inside another call: the handler says what it can */
      if (!rt_block_down(&c, 1, err)) return errv;  /* waits on this thread for the layer below */
    }
    if (!rt_enter_lua(&c, err)) return errv;   /* the handler waits */
  }
  c.can_wait = 1;
  c.ov = ov;
  if (!I->views) rt_push_bufs(c.co, bufs, nbufs, &total);
  else if (!(c.view = rt_push_view(I, c.co, bufs, nbufs, total, 0))) { ov_failed(ov, WSAENOBUFS); FAIL(WSAENOBUFS); }
  if (proc == P_sendto) {
    if (to) {
      if (!rt_push_addr_arg(&c, to, tolen)) { ov_failed(ov, WSAEFAULT); FAIL(WSAEFAULT); }
    } else {
      lua_pushnil(c.co);
    }
  }
  lua_pushinteger(c.co, flags);
  memset(&io, 0, sizeof io);
  io.bufs = bufs;
  io.nbufs = I->views ? nbufs : 0;   /* string mode copied the data already */
  io.cap = total;
  io.before = before;
  return data_end(&c, rt_run_in_turn(&c, err), &io, finish_send, sent, NULL, ov, routine, tid, err);
}

static int e_send(lwsp_inst *I, SOCKET s, LPWSABUF b, DWORD n, LPDWORD sent, DWORD flags, LPWSAOVERLAPPED ov,
                  LPWSAOVERLAPPED_COMPLETION_ROUTINE r, LPWSATHREADID t, LPINT e) {
  return send_common(I, P_send, s, b, n, sent, flags, NULL, 0, ov, r, t, e);
}

static int e_senddisconnect(lwsp_inst *I, SOCKET s, LPWSABUF data, LPINT err) {
  const int errv = SOCKET_ERROR;
  rt_call c;
  ERRP;
  if (data && data->len && !data->buf) { *err = WSAEFAULT; return errv; }
  BEGIN(P_senddisconnect, s, 1);
  rt_push_wsabuf(c.co, data);
  RUN();
  return rt_finish_ok(&c, err);
}

static int e_sendto(lwsp_inst *I, SOCKET s, LPWSABUF b, DWORD n, LPDWORD sent, DWORD flags,
                    const struct sockaddr *to, int tolen, LPWSAOVERLAPPED ov, LPWSAOVERLAPPED_COMPLETION_ROUTINE r,
                    LPWSATHREADID t, LPINT e) {
  return send_common(I, P_sendto, s, b, n, sent, flags, to, tolen, ov, r, t, e);
}

static int e_setsockopt(lwsp_inst *I, SOCKET s, int level, int optname, const char *optval, int optlen, LPINT err) {
  const int errv = SOCKET_ERROR;
  rt_call c;
  ERRP;
  if (optlen < 0 || (optlen > 0 && !optval)) { *err = WSAEFAULT; return errv; }
  if (!rt_begin_down(&c, I, P_setsockopt, s, 1, err)) return errv;
  if (c.low) {
    char tmp[64];
    if (optlen <= (int)sizeof tmp) optval = rt_ext_map_option(I, level, optname, optval, optlen, tmp);
    return down_end(&c, rt_down_setsockopt(&c, level, optname, optval ? optval : "", optlen, err), err);
  }
  lua_pushinteger(c.co, level);
  lua_pushinteger(c.co, optname);
  switch (optlen) {
  case 1: lua_pushinteger(c.co, (unsigned char)optval[0]); break;
  case 2: { int16_t v; memcpy(&v, optval, 2); lua_pushinteger(c.co, v); break; }
  case 4: { int32_t v; memcpy(&v, optval, 4); lua_pushinteger(c.co, v); break; }
  case 8: { int64_t v; memcpy(&v, optval, 8); lua_pushinteger(c.co, v); break; }
  default: lua_pushnil(c.co);
  }
  lua_pushlstring(c.co, optval ? optval : "", (size_t)optlen);
  RUN();
  return rt_finish_ok(&c, err);
}

static int e_shutdown(lwsp_inst *I, SOCKET s, int how, LPINT err) {
  const int errv = SOCKET_ERROR;
  rt_call c;
  ERRP;
  if (how < SD_RECEIVE || how > SD_BOTH) { *err = WSAEINVAL; return errv; }
  BEGIN(P_shutdown, s, 1);
  lua_pushinteger(c.co, how);
  RUN();
  return rt_finish_ok(&c, err);
}

static SOCKET e_socket(lwsp_inst *I, int af, int type, int protocol, LPWSAPROTOCOL_INFOW pi, GROUP g, DWORD flags,
                       LPINT err) {
  const SOCKET errv = INVALID_SOCKET;
  rt_call c;
  SOCKET h;
  ERRP;
  if (!pi) { *err = WSAEFAULT; return errv; }
  BEGIN(P_socket, 0, 0);
  if (!(c.ns = rt_sock_open(I, c.co, af > 0 ? af : pi->iAddressFamily, lwsp_own_entry(I, pi), err))) FAIL(*err);
  lua_pushinteger(c.co, af);
  lua_pushinteger(c.co, type);
  lua_pushinteger(c.co, protocol);
  lwsp_push_protocol_info(c.co, pi);
  lua_pushinteger(c.co, g);
  lua_pushinteger(c.co, flags);
  RUN();
  if (I->ifs && !rt_sock_set_ifs(I, c.ns, c.co, R(0), err)) FAIL(*err);
  h = c.ns->handle;
  c.ns = NULL;
  rt_end(&c);
  return h;
}

static INT e_stringtoaddress(lwsp_inst *I, LPWSTR str, INT af, LPWSAPROTOCOL_INFOW pi, LPSOCKADDR addr,
                             LPINT addrlen, LPINT err) {
  const INT errv = SOCKET_ERROR;
  rt_call c;
  char buf[1024];
  size_t n;
  ERRP;
  if (!str || !addrlen) { *err = WSAEFAULT; return errv; }
  n = lwsp_utf16_to_utf8(str, lwsp_wcslen(str, 512), buf, sizeof buf);
  BEGIN(P_stringtoaddress, 0, 0);
  lua_pushlstring(c.co, buf, n);
  lua_pushinteger(c.co, af);
  if (pi) lwsp_push_protocol_info(c.co, pi); else lua_pushnil(c.co);
  RUN();
  if (!addr) { *addrlen = 0; FAIL(WSAEFAULT); }
  if (!rt_put_addr(&c, R(0), addr, addrlen, err)) return errv;
  rt_end(&c);
  return 0;
}

/* ---- the proc tables: 30 trampolines per instance slot ---------------------- */
#define SLOT_FUNCS(n) \
static SOCKET WSPAPI accept_##n(SOCKET s, struct sockaddr *a, LPINT l, LPCONDITIONPROC f, DWORD_PTR d, LPINT e) { return e_accept(&lwsp_instances[n], s, a, l, f, d, e); } \
static INT WSPAPI addresstostring_##n(LPSOCKADDR a, DWORD al, LPWSAPROTOCOL_INFOW p, LPWSTR o, LPDWORD ol, LPINT e) { return e_addresstostring(&lwsp_instances[n], a, al, p, o, ol, e); } \
static int WSPAPI asyncselect_##n(SOCKET s, HWND h, unsigned int m, LONG ev, LPINT e) { return e_asyncselect(&lwsp_instances[n], s, h, m, ev, e); } \
static int WSPAPI bind_##n(SOCKET s, const struct sockaddr *a, int l, LPINT e) { return e_bind(&lwsp_instances[n], s, a, l, e); } \
static int WSPAPI cancelblockingcall_##n(LPINT e) { return e_cancelblockingcall(&lwsp_instances[n], e); } \
static int WSPAPI cleanup_##n(LPINT e) { return e_cleanup(&lwsp_instances[n], e); } \
static int WSPAPI closesocket_##n(SOCKET s, LPINT e) { return e_closesocket(&lwsp_instances[n], s, e); } \
static int WSPAPI connect_##n(SOCKET s, const struct sockaddr *a, int l, LPWSABUF cd, LPWSABUF ce, LPQOS sq, LPQOS gq, LPINT e) { return e_connect(&lwsp_instances[n], s, a, l, cd, ce, sq, gq, e); } \
static int WSPAPI duplicatesocket_##n(SOCKET s, DWORD pid, LPWSAPROTOCOL_INFOW p, LPINT e) { return e_duplicatesocket(&lwsp_instances[n], s, pid, p, e); } \
static int WSPAPI enumnetworkevents_##n(SOCKET s, WSAEVENT ev, LPWSANETWORKEVENTS ne, LPINT e) { return e_enumnetworkevents(&lwsp_instances[n], s, ev, ne, e); } \
static int WSPAPI eventselect_##n(SOCKET s, WSAEVENT ev, LONG m, LPINT e) { return e_eventselect(&lwsp_instances[n], s, ev, m, e); } \
static BOOL WSPAPI getoverlappedresult_##n(SOCKET s, LPWSAOVERLAPPED o, LPDWORD b, BOOL w, LPDWORD f, LPINT e) { return e_getoverlappedresult(&lwsp_instances[n], s, o, b, w, f, e); } \
static int WSPAPI getpeername_##n(SOCKET s, struct sockaddr *a, LPINT l, LPINT e) { return e_getpeername(&lwsp_instances[n], s, a, l, e); } \
static int WSPAPI getsockname_##n(SOCKET s, struct sockaddr *a, LPINT l, LPINT e) { return e_getsockname(&lwsp_instances[n], s, a, l, e); } \
static int WSPAPI getsockopt_##n(SOCKET s, int lv, int o, char *v, LPINT l, LPINT e) { return e_getsockopt(&lwsp_instances[n], s, lv, o, v, l, e); } \
static BOOL WSPAPI getqosbyname_##n(SOCKET s, LPWSABUF nm, LPQOS q, LPINT e) { return e_getqosbyname(&lwsp_instances[n], s, nm, q, e); } \
static int WSPAPI ioctl_##n(SOCKET s, DWORD c, LPVOID i, DWORD ci, LPVOID o, DWORD co, LPDWORD r, LPWSAOVERLAPPED ov, LPWSAOVERLAPPED_COMPLETION_ROUTINE cr, LPWSATHREADID t, LPINT e) { return e_ioctl(&lwsp_instances[n], s, c, i, ci, o, co, r, ov, cr, t, e); } \
static SOCKET WSPAPI joinleaf_##n(SOCKET s, const struct sockaddr *a, int l, LPWSABUF cd, LPWSABUF ce, LPQOS sq, LPQOS gq, DWORD f, LPINT e) { return e_joinleaf(&lwsp_instances[n], s, a, l, cd, ce, sq, gq, f, e); } \
static int WSPAPI listen_##n(SOCKET s, int b, LPINT e) { return e_listen(&lwsp_instances[n], s, b, e); } \
static int WSPAPI recv_##n(SOCKET s, LPWSABUF b, DWORD nb, LPDWORD g, LPDWORD f, LPWSAOVERLAPPED o, LPWSAOVERLAPPED_COMPLETION_ROUTINE r, LPWSATHREADID t, LPINT e) { return e_recv(&lwsp_instances[n], s, b, nb, g, f, o, r, t, e); } \
static int WSPAPI recvdisconnect_##n(SOCKET s, LPWSABUF d, LPINT e) { return e_recvdisconnect(&lwsp_instances[n], s, d, e); } \
static int WSPAPI recvfrom_##n(SOCKET s, LPWSABUF b, DWORD nb, LPDWORD g, LPDWORD f, struct sockaddr *fr, LPINT fl, LPWSAOVERLAPPED o, LPWSAOVERLAPPED_COMPLETION_ROUTINE r, LPWSATHREADID t, LPINT e) { return e_recvfrom(&lwsp_instances[n], s, b, nb, g, f, fr, fl, o, r, t, e); } \
static int WSPAPI select_##n(int nf, wsp_fd_set *r, wsp_fd_set *w, wsp_fd_set *x, wsp_timeval *tv, LPINT e) { return e_select(&lwsp_instances[n], nf, r, w, x, tv, e); } \
static int WSPAPI send_##n(SOCKET s, LPWSABUF b, DWORD nb, LPDWORD sn, DWORD f, LPWSAOVERLAPPED o, LPWSAOVERLAPPED_COMPLETION_ROUTINE r, LPWSATHREADID t, LPINT e) { return e_send(&lwsp_instances[n], s, b, nb, sn, f, o, r, t, e); } \
static int WSPAPI senddisconnect_##n(SOCKET s, LPWSABUF d, LPINT e) { return e_senddisconnect(&lwsp_instances[n], s, d, e); } \
static int WSPAPI sendto_##n(SOCKET s, LPWSABUF b, DWORD nb, LPDWORD sn, DWORD f, const struct sockaddr *to, int tl, LPWSAOVERLAPPED o, LPWSAOVERLAPPED_COMPLETION_ROUTINE r, LPWSATHREADID t, LPINT e) { return e_sendto(&lwsp_instances[n], s, b, nb, sn, f, to, tl, o, r, t, e); } \
static int WSPAPI setsockopt_##n(SOCKET s, int lv, int o, const char *v, int l, LPINT e) { return e_setsockopt(&lwsp_instances[n], s, lv, o, v, l, e); } \
static int WSPAPI shutdown_##n(SOCKET s, int h, LPINT e) { return e_shutdown(&lwsp_instances[n], s, h, e); } \
static SOCKET WSPAPI socket_##n(int af, int ty, int pr, LPWSAPROTOCOL_INFOW p, GROUP g, DWORD f, LPINT e) { return e_socket(&lwsp_instances[n], af, ty, pr, p, g, f, e); } \
static INT WSPAPI stringtoaddress_##n(LPWSTR s, INT af, LPWSAPROTOCOL_INFOW p, LPSOCKADDR a, LPINT l, LPINT e) { return e_stringtoaddress(&lwsp_instances[n], s, af, p, a, l, e); }

#define SLOT_TABLE(n) { accept_##n, addresstostring_##n, asyncselect_##n, bind_##n, cancelblockingcall_##n, \
  cleanup_##n, closesocket_##n, connect_##n, duplicatesocket_##n, enumnetworkevents_##n, eventselect_##n, \
  getoverlappedresult_##n, getpeername_##n, getsockname_##n, getsockopt_##n, getqosbyname_##n, ioctl_##n, \
  joinleaf_##n, listen_##n, recv_##n, recvdisconnect_##n, recvfrom_##n, select_##n, send_##n, \
  senddisconnect_##n, sendto_##n, setsockopt_##n, shutdown_##n, socket_##n, stringtoaddress_##n },

#define SLOTS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15)
_Static_assert(LWSP_MAX_INSTANCES == 16, "SLOTS lists one entry per instance slot");

SLOTS(SLOT_FUNCS)
static const WSPPROC_TABLE slot_tables[LWSP_MAX_INSTANCES] = { SLOTS(SLOT_TABLE) };

void lwsp_fill_procs(int slot, LPWSPPROC_TABLE procs) { *procs = slot_tables[slot]; }
