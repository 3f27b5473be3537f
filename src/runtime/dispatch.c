/*
 * dispatch.c - the WSP entries that set up, name and control sockets, and the
 * proc tables of trampolines into them; the entries that carry data or wait
 * are in dispatch_io.c.  Each entry: argument checks, conversion to Lua
 * values, the handler call, and conversion of the results back into the
 * caller's memory.  docs/api.md lists each handler's arguments and results.
 *
 * Every entry: checks pointers and lengths the caller gave (WSAEFAULT before
 * any Lua runs), then rt_begin / push arguments / RUN / read results / rt_end.
 * FAIL and FAULT end the call; each entry declares `errv`, its failure value.
 */
#include "dispatch.h"
#include "extfn.h"
#include <string.h>
#include <stdio.h>


/* Ends an inherited call made down in C (rt_begin_down): rc is the lower's. */
static int down_end(rt_call *c, int rc, LPINT err) {
  if (rc == 0) { rt_end(c); return 0; }
  rt_fail(c, err, *err ? *err : WSASYSCALLFAILURE);
  return SOCKET_ERROR;
}

int rt_min_addrlen(int af) { return af == AF_INET6 ? 28 : 16; }

/* For the entries the C core answers itself (no handler): takes the lock and
 * finds the socket, or fails with *err set. */
void rt_unlock_inst(lwsp_inst *I) {
  if (--I->depth == 0) rt_pump(I);
  rt_inst_leave(I);
  lwsp_mutex_unlock(&I->lock);
}
int rt_lock_inst(lwsp_inst *I, LPINT err) {
  if (!rt_inst_enter(I, err)) return 0;
  I->depth++;
  return 1;
}
lwsp_sock *rt_lock_sock(lwsp_inst *I, SOCKET s, LPINT err) {
  lwsp_sock *so;
  if (!rt_lock_inst(I, err)) return NULL;
  if (!(so = rt_sock_find(I, s))) { rt_unlock_inst(I); *err = WSAENOTSOCK; }
  return so;
}

void rt_ov_failed(LPWSAOVERLAPPED ov, int code) {
  if (!ov) return;
  ov->Internal = (ULONG_PTR)code;
  ov->InternalHigh = 0;
  ov->OffsetHigh = (DWORD)code;
}

static void push_opt_qos(lua_State *co, const QOS *q) { lwsp_push_qos(co, q); }

/* Reads an integer result within [lo, hi]; 0 on anything else. */
int rt_int_result(rt_call *c, int k, lua_Integer lo, lua_Integer hi, lua_Integer *out) {
  if (c->nres <= k || !lua_isinteger(c->co, c->base + k)) return 0;
  *out = lua_tointeger(c->co, c->base + k);
  return *out >= lo && *out <= hi;
}

/* A handler's integer at idx for a C field of [lo, hi] (32 bits or less):
 * 1 if it fits; else the handler, the field and the value are logged and the
 * caller fails the call with WSAEINVAL -- a value is never cut to fit. */
int rt_in_range(rt_call *c, int idx, const char *field, lua_Integer lo, lua_Integer hi) {
  lua_Integer v = lua_tointeger(c->co, idx);
  if (v >= lo && v <= hi) return 1;
  rt_soft_fault(c, "returned %lld for %s, outside %lld..%lld: the call fails with WSAEINVAL", (long long)v, field,
                (long long)lo, (long long)hi);
  return 0;
}

const char *rt_rtype(rt_call *c, int k) {
  return c->nres > k ? luaL_typename(c->co, c->base + k) : "nothing";
}

/* Ends an entry that made a socket (accept, joinleaf): an IFS provider's
 * handle from result k, and the new socket's handle returned. */
static SOCKET hand_over(lwsp_inst *I, rt_call *c, int k, LPINT err) {
  SOCKET h;
  if (I->ifs && !rt_sock_set_ifs(I, c->ns, c->co, c->base + k, err)) {
    rt_fail(c, err, *err);
    return INVALID_SOCKET;
  }
  h = c->ns->handle;
  c->ns = NULL;
  rt_end(c);
  return h;
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

SOCKET rt_wsp_accept(lwsp_inst *I, SOCKET s, struct sockaddr *addr, LPINT addrlen, LPCONDITIONPROC cond,
                       DWORD_PTR cbdata, LPINT err) {
  const SOCKET errv = INVALID_SOCKET;
  rt_call c;
  ERRP;
  if (addr && !addrlen) { *err = WSAEFAULT; return errv; }
  BEGIN(P_accept, s, 1);
  rt_reenable(I, c.so, FD_ACCEPT);
  if (addr && *addrlen < rt_min_addrlen(c.so->af)) FAIL(WSAEFAULT);
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
  if (addr && !rt_put_addr(&c, R(0), addr, addrlen, err)) return errv;
  return hand_over(I, &c, 1, err);
}

INT rt_wsp_addresstostring(lwsp_inst *I, LPSOCKADDR sa, DWORD salen, LPWSAPROTOCOL_INFOW pi, LPWSTR out,
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
  if (c.nres < 1 || lua_type(c.co, R(0)) != LUA_TSTRING) FAULT("returned %s where a string was expected", rt_rtype(&c, 0));
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

int rt_wsp_asyncselect(lwsp_inst *I, SOCKET s, HWND hwnd, unsigned int msg, LONG events, LPINT err) {
  const int errv = SOCKET_ERROR;
  rt_call c;
  ERRP;
  if (rt_live(I) && I->href[P_asyncselect] == LUA_NOREF) {
    CORE_TRACE(P_asyncselect, s, "window %llu, msg 0x%x, events 0x%lx", (unsigned long long)(uintptr_t)hwnd, msg,
               (unsigned long)events);
    lwsp_sock *so = rt_lock_sock(I, s, err);
    int rc;
    if (!so) { CORE_END(P_asyncselect, s, 1); return errv; }
    rc = rt_async_select(I, so, hwnd, msg, events, err);
    rt_unlock_inst(I);
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

int rt_wsp_bind(lwsp_inst *I, SOCKET s, const struct sockaddr *name, int namelen, LPINT err) {
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
int rt_wsp_cancelblockingcall(lwsp_inst *I, LPINT err) {
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

int rt_wsp_cleanup(lwsp_inst *I, LPINT err) { return lwsp_do_cleanup(I, err); }

/* A missing closesocket handler still closes: the handle must never leak.  A
 * handler that fails (for example WSAEWOULDBLOCK while lingering) keeps the
 * socket open, as closesocket does on Windows. */
int rt_wsp_closesocket(lwsp_inst *I, SOCKET s, LPINT err) {
  const int errv = SOCKET_ERROR;
  rt_call c;
  ERRP;
  if (rt_live(I) && I->href[P_closesocket] == LUA_NOREF) {
    lwsp_sock *so = rt_lock_sock(I, s, err);
    if (!so) return errv;
    rt_abort_socket(I, so);
    rt_sock_close(I, so);
    rt_unlock_inst(I);
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

int rt_wsp_connect(lwsp_inst *I, SOCKET s, const struct sockaddr *name, int namelen, LPWSABUF callerdata,
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

int rt_wsp_duplicatesocket(lwsp_inst *I, SOCKET s, DWORD pid, LPWSAPROTOCOL_INFOW pi, LPINT err) {
  const int errv = SOCKET_ERROR;
  rt_call c;
  WSAPROTOCOL_INFOW tmp;
  char msg[200];
  ERRP;
  if (!pi) { *err = WSAEFAULT; return errv; }
  BEGIN(P_duplicatesocket, s, 1);
  lua_pushinteger(c.co, pid);
  RUN();
  /* what the handler's table leaves out is the socket's own entry's (a
   * datagram socket's is the datagram entry, whichever entry started the
   * provider) */
  if (!c.so->catalog || !rt_catalog_info(&I->up, I->name, c.so->catalog, &tmp)) tmp = I->info;
  if (c.nres < 1 || !lua_istable(c.co, R(0))) FAULT("returned %s where protocol info (a table) was expected", rt_rtype(&c, 0));
  if (!lwsp_to_protocol_info(c.co, R(0), &tmp, msg, sizeof msg)) FAULT("returned bad protocol info: %s", msg);
  *pi = tmp;
  rt_end(&c);
  return 0;
}

int rt_wsp_enumnetworkevents(lwsp_inst *I, SOCKET s, WSAEVENT ev, LPWSANETWORKEVENTS ne, LPINT err) {
  const int errv = SOCKET_ERROR;
  rt_call c;
  lua_Integer mask;
  WSANETWORKEVENTS out;
  ERRP;
  if (!ne) { *err = WSAEFAULT; return errv; }
  if (rt_live(I) && I->href[P_enumnetworkevents] == LUA_NOREF) {
    CORE_TRACE(P_enumnetworkevents, s, "event 0x%llx", (unsigned long long)(uintptr_t)ev);
    lwsp_sock *so = rt_lock_sock(I, s, err);
    int rc;
    if (!so) { CORE_END(P_enumnetworkevents, s, 1); return errv; }
    rc = rt_enum_events(I, so, ev, ne, err);
    rt_unlock_inst(I);
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
  if (!rt_int_result(&c, 0, 0, FD_ALL_EVENTS, &mask)) FAULT("returned %s where an FD_* mask was expected", rt_rtype(&c, 0));
  memset(&out, 0, sizeof out);
  out.lNetworkEvents = (LONG)mask;
  if (HAS(1)) {
    if (!lua_istable(c.co, R(1))) FAULT("returned %s where a table of error codes was expected", rt_rtype(&c, 1));
    for (int i = 0; i < FD_MAX_EVENTS; i++) {
      int t = lua_rawgeti(c.co, R(1), (lua_Integer)1 << i);
      if (t != LUA_TNIL && !lua_isinteger(c.co, -1)) FAULT("returned a %s as the error code of FD bit %d", luaL_typename(c.co, -1), i);
      if (t != LUA_TNIL && !rt_in_range(&c, -1, "a network event's error code", 0, 0x7fffffff)) FAIL(WSAEINVAL);
      out.iErrorCode[i] = (int)lua_tointeger(c.co, -1);
      lua_pop(c.co, 1);
    }
  }
  *ne = out;
  rt_end(&c);
  return 0;
}

int rt_wsp_eventselect(lwsp_inst *I, SOCKET s, WSAEVENT ev, LONG events, LPINT err) {
  const int errv = SOCKET_ERROR;
  rt_call c;
  ERRP;
  if (rt_live(I) && I->href[P_eventselect] == LUA_NOREF) {
    CORE_TRACE(P_eventselect, s, "event 0x%llx, events 0x%lx", (unsigned long long)(uintptr_t)ev, (unsigned long)events);
    lwsp_sock *so = rt_lock_sock(I, s, err);
    int rc;
    if (!so) { CORE_END(P_eventselect, s, 1); return errv; }
    rc = rt_event_select(I, so, ev, events, err);
    rt_unlock_inst(I);
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
BOOL rt_wsp_getoverlappedresult(lwsp_inst *I, SOCKET s, LPWSAOVERLAPPED ov, LPDWORD bytes, BOOL wait,
                                  LPDWORD flags, LPINT err) {
  const BOOL errv = FALSE;
  rt_call c;
  lua_Integer n, f = 0;
  ERRP;
  if (!ov || !bytes || !flags) { *err = WSAEFAULT; return errv; }
  if (rt_live(I) && I->href[P_getoverlappedresult] == LUA_NOREF) {
    CORE_TRACE(P_getoverlappedresult, s, "overlapped 0x%llx, wait %d", (unsigned long long)(uintptr_t)ov, (int)wait);
    lwsp_sock *so = rt_lock_sock(I, s, err);
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
      rt_unlock_inst(I);
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
  if (!rt_int_result(&c, 0, 0, 0xffffffffLL, &n)) FAULT("returned %s where a byte count was expected", rt_rtype(&c, 0));
  if (HAS(1) && !rt_int_result(&c, 1, 0, 0xffffffffLL, &f)) FAULT("returned %s where flags were expected", rt_rtype(&c, 1));
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
int rt_wsp_getpeername(lwsp_inst *I, SOCKET s, struct sockaddr *n, LPINT l, LPINT e) { return name_entry(I, P_getpeername, s, n, l, e); }
int rt_wsp_getsockname(lwsp_inst *I, SOCKET s, struct sockaddr *n, LPINT l, LPINT e) { return name_entry(I, P_getsockname, s, n, l, e); }

int rt_wsp_getsockopt(lwsp_inst *I, SOCKET s, int level, int optname, char *optval, LPINT optlen, LPINT err) {
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
    if (!rt_in_range(&c, R(0), "a 4-byte option value", I32_MIN_, U32_MAX_)) FAIL(WSAEINVAL);
    v.i = (int32_t)(uint32_t)lua_tointeger(c.co, R(0));
    break;
  case LUA_TSTRING: src = lua_tolstring(c.co, R(0), &n); break;
  case LUA_TTABLE:
    if (level == SOL_SOCKET && optname == SO_LINGER) {
      lwsp_rawfield(c.co, R(0), "l_onoff");
      lwsp_rawfield(c.co, R(0), "l_linger");
      if (!lua_isinteger(c.co, -2) || !lua_isinteger(c.co, -1))
        FAULT("returned SO_LINGER without integer l_onoff and l_linger (%s, %s)", luaL_typename(c.co, -2), luaL_typename(c.co, -1));
      if (!rt_in_range(&c, -2, "SO_LINGER's l_onoff (a u_short)", 0, 0xffff) ||
          !rt_in_range(&c, -1, "SO_LINGER's l_linger (a u_short)", 0, 0xffff))
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
  default: FAULT("returned %s where an option value was expected", rt_rtype(&c, 0));
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
    if (!lua_isinteger(co, -1) || !rt_in_range(c, -1, "FLOWSPEC's " #n " (a ULONG)", 0, U32_MAX_)) return 0; \
    f->n = (ULONG)lua_tointeger(co, -1); \
  } \
  lua_pop(co, 1);
  F_(TokenRate) F_(TokenBucketSize) F_(PeakBandwidth) F_(Latency) F_(DelayVariation) F_(ServiceType)
  F_(MaxSduSize) F_(MinimumPolicedSize)
#undef F_
  return 1;
}

BOOL rt_wsp_getqosbyname(lwsp_inst *I, SOCKET s, LPWSABUF name, LPQOS qos, LPINT err) {
  const BOOL errv = FALSE;
  rt_call c;
  ERRP;
  if (!qos) { *err = WSAEFAULT; return errv; }
  BEGIN(P_getqosbyname, s, 1);
  rt_push_wsabuf(c.co, name);
  RUN();
  if (c.nres < 1 || !lua_istable(c.co, R(0))) FAULT("returned %s where a QOS table was expected", rt_rtype(&c, 0));
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

SOCKET rt_wsp_joinleaf(lwsp_inst *I, SOCKET s, const struct sockaddr *name, int namelen, LPWSABUF callerdata,
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

int rt_wsp_listen(lwsp_inst *I, SOCKET s, int backlog, LPINT err) {
  const int errv = SOCKET_ERROR;
  rt_call c;
  ERRP;
  BEGIN(P_listen, s, 1);
  lua_pushinteger(c.co, backlog);
  RUN();
  return rt_finish_ok(&c, err);
}

int rt_wsp_setsockopt(lwsp_inst *I, SOCKET s, int level, int optname, const char *optval, int optlen, LPINT err) {
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

int rt_wsp_shutdown(lwsp_inst *I, SOCKET s, int how, LPINT err) {
  const int errv = SOCKET_ERROR;
  rt_call c;
  ERRP;
  if (how < SD_RECEIVE || how > SD_BOTH) { *err = WSAEINVAL; return errv; }
  BEGIN(P_shutdown, s, 1);
  lua_pushinteger(c.co, how);
  RUN();
  return rt_finish_ok(&c, err);
}

SOCKET rt_wsp_socket(lwsp_inst *I, int af, int type, int protocol, LPWSAPROTOCOL_INFOW pi, GROUP g, DWORD flags,
                       LPINT err) {
  const SOCKET errv = INVALID_SOCKET;
  rt_call c;
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
  return hand_over(I, &c, 0, err);
}

INT rt_wsp_stringtoaddress(lwsp_inst *I, LPWSTR str, INT af, LPWSAPROTOCOL_INFOW pi, LPSOCKADDR addr,
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
static SOCKET WSPAPI accept_##n(SOCKET s, struct sockaddr *a, LPINT l, LPCONDITIONPROC f, DWORD_PTR d, LPINT e) { return rt_wsp_accept(&lwsp_instances[n], s, a, l, f, d, e); } \
static INT WSPAPI addresstostring_##n(LPSOCKADDR a, DWORD al, LPWSAPROTOCOL_INFOW p, LPWSTR o, LPDWORD ol, LPINT e) { return rt_wsp_addresstostring(&lwsp_instances[n], a, al, p, o, ol, e); } \
static int WSPAPI asyncselect_##n(SOCKET s, HWND h, unsigned int m, LONG ev, LPINT e) { return rt_wsp_asyncselect(&lwsp_instances[n], s, h, m, ev, e); } \
static int WSPAPI bind_##n(SOCKET s, const struct sockaddr *a, int l, LPINT e) { return rt_wsp_bind(&lwsp_instances[n], s, a, l, e); } \
static int WSPAPI cancelblockingcall_##n(LPINT e) { return rt_wsp_cancelblockingcall(&lwsp_instances[n], e); } \
static int WSPAPI cleanup_##n(LPINT e) { return rt_wsp_cleanup(&lwsp_instances[n], e); } \
static int WSPAPI closesocket_##n(SOCKET s, LPINT e) { return rt_wsp_closesocket(&lwsp_instances[n], s, e); } \
static int WSPAPI connect_##n(SOCKET s, const struct sockaddr *a, int l, LPWSABUF cd, LPWSABUF ce, LPQOS sq, LPQOS gq, LPINT e) { return rt_wsp_connect(&lwsp_instances[n], s, a, l, cd, ce, sq, gq, e); } \
static int WSPAPI duplicatesocket_##n(SOCKET s, DWORD pid, LPWSAPROTOCOL_INFOW p, LPINT e) { return rt_wsp_duplicatesocket(&lwsp_instances[n], s, pid, p, e); } \
static int WSPAPI enumnetworkevents_##n(SOCKET s, WSAEVENT ev, LPWSANETWORKEVENTS ne, LPINT e) { return rt_wsp_enumnetworkevents(&lwsp_instances[n], s, ev, ne, e); } \
static int WSPAPI eventselect_##n(SOCKET s, WSAEVENT ev, LONG m, LPINT e) { return rt_wsp_eventselect(&lwsp_instances[n], s, ev, m, e); } \
static BOOL WSPAPI getoverlappedresult_##n(SOCKET s, LPWSAOVERLAPPED o, LPDWORD b, BOOL w, LPDWORD f, LPINT e) { return rt_wsp_getoverlappedresult(&lwsp_instances[n], s, o, b, w, f, e); } \
static int WSPAPI getpeername_##n(SOCKET s, struct sockaddr *a, LPINT l, LPINT e) { return rt_wsp_getpeername(&lwsp_instances[n], s, a, l, e); } \
static int WSPAPI getsockname_##n(SOCKET s, struct sockaddr *a, LPINT l, LPINT e) { return rt_wsp_getsockname(&lwsp_instances[n], s, a, l, e); } \
static int WSPAPI getsockopt_##n(SOCKET s, int lv, int o, char *v, LPINT l, LPINT e) { return rt_wsp_getsockopt(&lwsp_instances[n], s, lv, o, v, l, e); } \
static BOOL WSPAPI getqosbyname_##n(SOCKET s, LPWSABUF nm, LPQOS q, LPINT e) { return rt_wsp_getqosbyname(&lwsp_instances[n], s, nm, q, e); } \
static int WSPAPI ioctl_##n(SOCKET s, DWORD c, LPVOID i, DWORD ci, LPVOID o, DWORD co, LPDWORD r, LPWSAOVERLAPPED ov, LPWSAOVERLAPPED_COMPLETION_ROUTINE cr, LPWSATHREADID t, LPINT e) { return rt_wsp_ioctl(&lwsp_instances[n], s, c, i, ci, o, co, r, ov, cr, t, e); } \
static SOCKET WSPAPI joinleaf_##n(SOCKET s, const struct sockaddr *a, int l, LPWSABUF cd, LPWSABUF ce, LPQOS sq, LPQOS gq, DWORD f, LPINT e) { return rt_wsp_joinleaf(&lwsp_instances[n], s, a, l, cd, ce, sq, gq, f, e); } \
static int WSPAPI listen_##n(SOCKET s, int b, LPINT e) { return rt_wsp_listen(&lwsp_instances[n], s, b, e); } \
static int WSPAPI recv_##n(SOCKET s, LPWSABUF b, DWORD nb, LPDWORD g, LPDWORD f, LPWSAOVERLAPPED o, LPWSAOVERLAPPED_COMPLETION_ROUTINE r, LPWSATHREADID t, LPINT e) { return rt_wsp_recv(&lwsp_instances[n], s, b, nb, g, f, o, r, t, e); } \
static int WSPAPI recvdisconnect_##n(SOCKET s, LPWSABUF d, LPINT e) { return rt_wsp_recvdisconnect(&lwsp_instances[n], s, d, e); } \
static int WSPAPI recvfrom_##n(SOCKET s, LPWSABUF b, DWORD nb, LPDWORD g, LPDWORD f, struct sockaddr *fr, LPINT fl, LPWSAOVERLAPPED o, LPWSAOVERLAPPED_COMPLETION_ROUTINE r, LPWSATHREADID t, LPINT e) { return rt_wsp_recvfrom(&lwsp_instances[n], s, b, nb, g, f, fr, fl, o, r, t, e); } \
static int WSPAPI select_##n(int nf, wsp_fd_set *r, wsp_fd_set *w, wsp_fd_set *x, wsp_timeval *tv, LPINT e) { return rt_wsp_select(&lwsp_instances[n], nf, r, w, x, tv, e); } \
static int WSPAPI send_##n(SOCKET s, LPWSABUF b, DWORD nb, LPDWORD sn, DWORD f, LPWSAOVERLAPPED o, LPWSAOVERLAPPED_COMPLETION_ROUTINE r, LPWSATHREADID t, LPINT e) { return rt_wsp_send(&lwsp_instances[n], s, b, nb, sn, f, o, r, t, e); } \
static int WSPAPI senddisconnect_##n(SOCKET s, LPWSABUF d, LPINT e) { return rt_wsp_senddisconnect(&lwsp_instances[n], s, d, e); } \
static int WSPAPI sendto_##n(SOCKET s, LPWSABUF b, DWORD nb, LPDWORD sn, DWORD f, const struct sockaddr *to, int tl, LPWSAOVERLAPPED o, LPWSAOVERLAPPED_COMPLETION_ROUTINE r, LPWSATHREADID t, LPINT e) { return rt_wsp_sendto(&lwsp_instances[n], s, b, nb, sn, f, to, tl, o, r, t, e); } \
static int WSPAPI setsockopt_##n(SOCKET s, int lv, int o, const char *v, int l, LPINT e) { return rt_wsp_setsockopt(&lwsp_instances[n], s, lv, o, v, l, e); } \
static int WSPAPI shutdown_##n(SOCKET s, int h, LPINT e) { return rt_wsp_shutdown(&lwsp_instances[n], s, h, e); } \
static SOCKET WSPAPI socket_##n(int af, int ty, int pr, LPWSAPROTOCOL_INFOW p, GROUP g, DWORD f, LPINT e) { return rt_wsp_socket(&lwsp_instances[n], af, ty, pr, p, g, f, e); } \
static INT WSPAPI stringtoaddress_##n(LPWSTR s, INT af, LPWSAPROTOCOL_INFOW p, LPSOCKADDR a, LPINT l, LPINT e) { return rt_wsp_stringtoaddress(&lwsp_instances[n], s, af, p, a, l, e); }

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
