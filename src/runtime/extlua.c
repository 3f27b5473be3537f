/*
 * extlua.c - extension functions carried by a script's own handlers.
 *
 * A script whose `acceptex`, `connectex` or `disconnectex` is a function of
 * its own (not wsp.layered's passthrough, which lwsp.inherited marks) carries
 * that call itself: the handler runs on the ioctl entry's machinery as the
 * data entries' handlers do -- it may wait (wsp.wait), so an overlapped call
 * is reported pending and completed by event, port or routine when the
 * handler returns, a call without an overlapped blocks (or fails with
 * WSAEWOULDBLOCK on a non-blocking socket), a fault becomes WSAENETDOWN and a
 * log line, and a close or the last WSPCleanup aborts it.  The handler calls
 * the layer below with the lower layer's methods low:connectex, low:acceptex
 * and low:disconnectex (wsp.layered's base.connectex, ...), each of which
 * starts the layer below's own function on the lower socket with an
 * overlapped of this file's and returns an operation object: op:done() tells
 * whether it has completed, wsp.wait(op) waits for it (the service thread
 * wakes the key when the lower overlapped completes), op:result() gives its
 * results.
 *
 * An instance that carries AcceptEx owns the address blocks of its callers'
 * output buffers: each is an INT length followed by the sockaddr (the native
 * base's layout), and its GetAcceptExSockaddrs reads them back.
 */
#include "extlua.h"
#include "extfn.h"
#include "lower.h"
#include "dispatch.h"
#include "spi_ext.h"
#include <stdlib.h>
#include <string.h>

#define EXTOP_MT "lwsp.extop"
#define ADDR_BLOCK (16 + (int)sizeof(SOCKADDR_STORAGE))   /* what a lower AcceptEx gets for each address */

typedef struct lop {
  struct lop *next;
  WSAOVERLAPPED low_ov;          /* the lower call's own */
  lwsp_inst *I;
  struct lwsp_lower *low;
  SOCKET lh;
  int ext;
  int ref;                       /* anchors the operation object while the call below is outstanding */
  struct lop **ud;               /* the object's pointer to this record (NULL: the object is gone) */
  int done;
  DWORD error, bytes, flags;
  DWORD rcvlen;                  /* AcceptEx: the data part of buf */
  LPFN_GETACCEPTEXSOCKADDRS getaddrs;   /* AcceptEx: the layer below's */
  char *buf;                     /* ConnectEx's data, AcceptEx's output: the layer below may write it until done */
  WSAMSG msg;                    /* WSARecvMsg: the message (data: buf, rcvlen; control: after it) */
  WSABUF wb;
  SOCKADDR_STORAGE from;
  DWORD ctllen;
} lop;

static struct { lop *pending, *orphans; int own_addrs; } XL[LWSP_MAX_INSTANCES];

/* ---- which calls a script carries --------------------------------------------------- */
int rt_extlua_carried(lwsp_inst *I, int ext) {
  lua_State *L = I->L;
  const char *name = rt_ext_handler_names[ext];
  int carried = 0, top;
  if ((ext != 0 && ext != 2 && ext != 3 && ext != 6) || !name || !L || !lua_checkstack(L, 4)) return 0;
  top = lua_gettop(L);
  if (lua_getfield(L, LUA_REGISTRYINDEX, "lwsp.handlers") == LUA_TTABLE &&
      (lua_pushstring(L, name), lua_rawget(L, -2)) == LUA_TFUNCTION) {
    carried = 1;
    if (lua_getfield(L, LUA_REGISTRYINDEX, "lwsp.inherited") == LUA_TTABLE) {
      lua_pushvalue(L, -2);
      if (lua_rawget(L, -2) == LUA_TSTRING && strcmp(lua_tostring(L, -1), name) == 0) carried = 0;
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  lua_settop(L, top);
  return carried;
}

/* ---- the carried call ------------------------------------------------------------------ */
/* rt_begin on the ioctl entry with the script's handler for ext in place of ioctl's. */
static int x_begin(rt_call *c, lwsp_inst *I, SOCKET s, int ext, LPWSAOVERLAPPED ov, INT *e) {
  if (!rt_begin(c, I, P_ioctl, s, 1, e)) return 0;
  lua_getfield(c->co, LUA_REGISTRYINDEX, "lwsp.handlers");
  lua_pushstring(c->co, rt_ext_handler_names[ext]);
  lua_rawget(c->co, -2);
  lua_replace(c->co, -4);
  lua_pop(c->co, 1);
  c->can_wait = 1;
  c->ov = ov;
  return 1;
}

/* As dispatch_io.c's data_end, for a function without lpErrno: 0 done, else the error (WSA_IO_PENDING). */
static void close_tid(lwsp_inst *I, LPWSATHREADID tid) {
  INT e;
  if (tid) I->up.lpWPUCloseThread(tid, &e);
}

/* As dispatch_io.c's data_end, for a function without lpErrno: 0 done, else
 * the error (WSA_IO_PENDING).  routine, tid: a completion routine and the
 * caller's thread, opened for this call (closed here, or by the pending
 * operation once it has queued the routine). */
static int x_end_r(rt_call *c, int rc, const rt_io *io, rt_finish_fn finish, LPDWORD count, LPWSAOVERLAPPED ov,
                   LPWSAOVERLAPPED_COMPLETION_ROUTINE routine, LPWSATHREADID tid, INT *err) {
  DWORD bytes = 0, fl = 0;
  int e;
  rt_op *op;
  if (rc == RT_FAILED) { close_tid(c->I, tid); rt_ov_failed(ov, *err); return *err ? *err : WSAENETDOWN; }
  if (rc == RT_PENDING) {
    if (!(op = rt_pend(c, io, finish, routine, tid, err))) { close_tid(c->I, tid); rt_ov_failed(ov, *err); return *err; }
    op->own_tid = tid != NULL;
    c->err_code = WSA_IO_PENDING;
    rt_end(c);
    return WSA_IO_PENDING;
  }
  if (rt_failed(c, err)) { close_tid(c->I, tid); rt_ov_failed(ov, *err); return *err; }
  e = finish(c, io, &bytes, &fl);
  if (count) *count = bytes;
  if (e) {
    close_tid(c->I, tid);
    rt_ov_failed(ov, e);
    rt_fail(c, err, e);
    return e;
  }
  if (ov) rt_overlapped_done(c->I, c->so, c->so->handle, ov, routine, tid, 0, bytes, fl);
  close_tid(c->I, tid);
  rt_end(c);
  return 0;
}
static int x_end(rt_call *c, int rc, const rt_io *io, rt_finish_fn finish, LPDWORD count, LPWSAOVERLAPPED ov,
                 INT *err) {
  return x_end_r(c, rc, io, finish, count, ov, NULL, NULL, err);
}

static int finish_connectex(rt_call *c, const rt_io *io, DWORD *bytes, DWORD *flags) {
  lua_Integer n;
  *flags = 0;
  if (!rt_int_result(c, 0, 0, (lua_Integer)io->cap, &n))
    return rt_soft_fault(c, "returned %s where the count of bytes sent (0 to %llu) was expected", rt_rtype(c, 0),
                         (unsigned long long)io->cap);
  *bytes = (DWORD)n;
  return 0;
}

static int finish_disconnectex(rt_call *c, const rt_io *io, DWORD *bytes, DWORD *flags) {
  (void)io;
  *bytes = *flags = 0;
  if (c->nres < 1 || lua_type(c->co, c->base) != LUA_TBOOLEAN || !lua_toboolean(c->co, c->base))
    return rt_soft_fault(c, "returned %s where true was expected", rt_rtype(c, 0));
  return 0;
}

/* One address block: an INT length, then the sockaddr. */
static int put_block(rt_call *c, int k, char *at, DWORD room) {
  SOCKADDR_STORAGE ss;
  int len;
  INT n;
  if (c->nres <= k || !lwsp_to_sockaddr(c->co, c->base + k, &ss, &len))
    return rt_soft_fault(c, "returned %s where an address was expected", rt_rtype(c, k));
  if ((DWORD)len + sizeof n > room) return WSAEFAULT;
  n = len;
  memcpy(at, &n, sizeof n);
  memcpy(at + sizeof n, &ss, (size_t)len);
  return 0;
}

/* AcceptEx's results: data, local address, remote address.  io: out the
 * caller's buffer, cap the data part, cbout and before the address blocks. */
static int finish_acceptex(rt_call *c, const rt_io *io, DWORD *bytes, DWORD *flags) {
  const char *data;
  size_t n;
  int e;
  char *out = io->out;
  *flags = 0;
  if (c->nres < 1 || lua_type(c->co, c->base) != LUA_TSTRING)
    return rt_soft_fault(c, "returned %s where the data received (a string) was expected", rt_rtype(c, 0));
  data = lua_tolstring(c->co, c->base, &n);
  if (n > io->cap) return rt_soft_fault(c, "returned %llu bytes of data for a buffer of %llu", (unsigned long long)n,
                                        (unsigned long long)io->cap);
  if ((e = put_block(c, 1, out + io->cap, io->cbout)) != 0) return e;
  if ((e = put_block(c, 2, out + io->cap + io->cbout, (DWORD)io->before)) != 0) return e;
  if (n) memcpy(out, data, n);
  *bytes = (DWORD)n;
  return 0;
}

int rt_extlua_connectex(lwsp_inst *I, SOCKET s, const struct sockaddr *name, int namelen, PVOID data, DWORD len,
                        LPDWORD sent, LPOVERLAPPED ov) {
  rt_call c;
  rt_io io;
  WSABUF wb;
  INT e = 0;
  if (!ov) return WSAEINVAL;   /* (in the native base's order: the overlapped, then the pointers) */
  if (!name || namelen < 2 || namelen < rt_min_addrlen(name->sa_family) || (len && !data)) return WSAEFAULT;
  if (!x_begin(&c, I, s, 2, ov, &e)) return e;
  if (!rt_push_addr_arg(&c, name, namelen)) { rt_fail(&c, &e, WSAEFAULT); return WSAEFAULT; }
  wb.buf = data;
  wb.len = len;
  memset(&io, 0, sizeof io);
  io.bufs = &wb;
  io.nbufs = 1;
  io.cap = len;
  if (I->views) {
    if (!(c.view = rt_push_view(I, c.co, &wb, 1, len, 0))) { rt_fail(&c, &e, WSAENOBUFS); return WSAENOBUFS; }
  } else {
    lua_pushlstring(c.co, data ? (const char *)data : "", len);
  }
  return x_end(&c, rt_run(&c, &e), &io, finish_connectex, sent, ov, &e);
}

int rt_extlua_acceptex(lwsp_inst *I, SOCKET s, SOCKET as, PVOID out, DWORD rcvlen, DWORD loclen, DWORD remlen,
                       LPDWORD got, LPOVERLAPPED ov) {
  rt_call c;
  rt_io io;
  lwsp_sock *aso;
  INT e = 0;
  int need;
  if (!ov) return WSAEINVAL;
  if (!out) return WSAEFAULT;
  if (!x_begin(&c, I, s, 0, ov, &e)) return e;
  need = rt_min_addrlen(c.so->af) + 16;
  if ((int)loclen < need || (int)remlen < need) { rt_fail(&c, &e, WSAEFAULT); return WSAEFAULT; }
  if (!(aso = rt_sock_find(I, as)) || aso->closing) { rt_fail(&c, &e, WSAENOTSOCK); return WSAENOTSOCK; }
  if (aso == c.so) { rt_fail(&c, &e, WSAEINVAL); return WSAEINVAL; }
  lua_rawgeti(c.co, LUA_REGISTRYINDEX, aso->ref);
  lua_pushinteger(c.co, rcvlen);
  memset(&io, 0, sizeof io);
  io.out = out;
  io.cap = rcvlen;
  io.cbout = loclen;
  io.before = remlen;
  return x_end(&c, rt_run(&c, &e), &io, finish_acceptex, got, ov, &e);
}

int rt_extlua_disconnectex(lwsp_inst *I, SOCKET s, LPOVERLAPPED ov, DWORD flags, DWORD reserved) {
  rt_call c;
  rt_io io;
  INT e = 0;
  if (reserved || (flags & ~(DWORD)TF_REUSE_SOCKET)) return WSAEINVAL;
  if (!x_begin(&c, I, s, 3, ov, &e)) return e;
  lua_pushinteger(c.co, flags);
  memset(&io, 0, sizeof io);
  return x_end(&c, rt_run(&c, &e), &io, finish_disconnectex, NULL, ov, &e);
}

/* ---- WSARecvMsg ------------------------------------------------------------------------ */
/* Control data as a handler sees it: a list of {level =, type =, data =}. */
static void push_control(lua_State *L, const char *buf, size_t len) {
  const size_t hl = WSA_CMSGDATA_ALIGN(sizeof(WSACMSGHDR));
  size_t at = 0;
  int k = 0;
  lua_newtable(L);
  while (buf && at + sizeof(WSACMSGHDR) <= len) {
    WSACMSGHDR h;
    memcpy(&h, buf + at, sizeof h);
    if (h.cmsg_len < hl || h.cmsg_len > len - at) break;
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, h.cmsg_level);
    lua_setfield(L, -2, "level");
    lua_pushinteger(L, h.cmsg_type);
    lua_setfield(L, -2, "type");
    lua_pushlstring(L, buf + at + hl, h.cmsg_len - hl);
    lua_setfield(L, -2, "data");
    lua_rawseti(L, -2, ++k);
    at += WSA_CMSGHDR_ALIGN(h.cmsg_len);
  }
}

/* Result k (nil, or a list as push_control's) into the caller's control
 * buffer: what does not fit sets MSG_CTRUNC; ctl->len becomes what was written. */
static int put_control(rt_call *c, int k, LPWSABUF ctl, DWORD *fl) {
  lua_State *co = c->co;
  size_t at = 0, room = ctl->buf ? ctl->len : 0;
  int idx = c->base + k;
  if (c->nres <= k || lua_isnil(co, idx)) { ctl->len = 0; return 0; }
  if (!lua_istable(co, idx)) return rt_soft_fault(c, "returned %s where control data (a table) was expected", rt_rtype(c, k));
  for (lua_Integer i = 1;; i++) {
    WSACMSGHDR h;
    lua_Integer lv, ty;
    const char *d;
    size_t n;
    int ok;
    if (lua_rawgeti(co, idx, i) == LUA_TNIL) { lua_pop(co, 1); break; }
    ok = lua_istable(co, -1) && lua_getfield(co, -1, "level") == LUA_TNUMBER && lua_getfield(co, -2, "type") == LUA_TNUMBER &&
         lua_getfield(co, -3, "data") == LUA_TSTRING;
    if (!ok || !lua_isinteger(co, -3) || !lua_isinteger(co, -2)) {
      lua_settop(co, c->base + c->nres - 1);
      return rt_soft_fault(c, "returned control data whose entry %lld is not {level =, type =, data =}", (long long)i);
    }
    lv = lua_tointeger(co, -3);
    ty = lua_tointeger(co, -2);
    d = lua_tolstring(co, -1, &n);
    if (at > room || WSA_CMSG_LEN(n) > room - at) { *fl |= MSG_CTRUNC; lua_settop(co, c->base + c->nres - 1); break; }
    memset(&h, 0, sizeof h);
    h.cmsg_len = WSA_CMSG_LEN(n);
    h.cmsg_level = (INT)lv;
    h.cmsg_type = (INT)ty;
    memcpy(ctl->buf + at, &h, sizeof h);
    if (n) memcpy(ctl->buf + at + WSA_CMSGDATA_ALIGN(sizeof(WSACMSGHDR)), d, n);
    at += WSA_CMSG_SPACE(n);
    lua_settop(co, c->base + c->nres - 1);
  }
  ctl->len = (ULONG)(at < room ? at : room);
  return 0;
}

/* WSARecvMsg's results: data (or, with views, the count written), sender,
 * control data, flags.  MSG_TRUNC in the flags: the datagram was cut, the
 * call fails with WSAEMSGSIZE and what arrived in place. */
static int finish_recvmsg(rt_call *c, const rt_io *io, DWORD *bytes, DWORD *flags) {
  LPWSAMSG m = io->out;
  lua_Integer fl = 0;
  DWORD cfl = 0;
  size_t len, k;
  int e;
  if (c->nres > 3 && !lua_isnil(c->co, c->base + 3) && !rt_int_result(c, 3, 0, 0xffffffffLL, &fl))
    return rt_soft_fault(c, "returned %s where flags were expected", rt_rtype(c, 3));
  if (c->I->views) {
    lua_Integer n;
    if (!rt_int_result(c, 0, 0, (lua_Integer)io->cap, &n))
      return rt_soft_fault(c, "returned %s where the count of bytes written to the view (0 to %llu) was expected",
                           rt_rtype(c, 0), (unsigned long long)io->cap);
    len = k = (size_t)n;
  } else {
    const char *data;
    if (c->nres < 1 || lua_type(c->co, c->base) != LUA_TSTRING)
      return rt_soft_fault(c, "returned %s where data (a string) was expected", rt_rtype(c, 0));
    data = lua_tolstring(c->co, c->base, &len);
    k = rt_scatter(io->bufs, io->nbufs, data, len);
  }
  {
    SOCKADDR_STORAGE ss;
    int alen;
    if (c->nres < 2 || !lwsp_to_sockaddr(c->co, c->base + 1, &ss, &alen))
      return rt_soft_fault(c, "returned %s where the sender's address was expected", rt_rtype(c, 1));
    if (m->name) {
      if (m->namelen < alen) return WSAEFAULT;
      memcpy(m->name, &ss, (size_t)alen);
      m->namelen = alen;
    }
  }
  if ((e = put_control(c, 2, &m->Control, &cfl)) != 0) return e;
  fl |= cfl;
  if (len > io->cap) fl |= MSG_TRUNC;
  m->dwFlags = (ULONG)fl;
  *bytes = (DWORD)k;
  *flags = (DWORD)fl;
  return fl & MSG_TRUNC ? WSAEMSGSIZE : 0;
}

int rt_extlua_wsarecvmsg(lwsp_inst *I, SOCKET s, LPWSAMSG m, LPDWORD got, LPWSAOVERLAPPED ov,
                         LPWSAOVERLAPPED_COMPLETION_ROUTINE routine) {
  rt_call c;
  rt_io io;
  WSATHREADID tid;
  INT e = 0;
  size_t total = 0;
  /* (in the native base's order: the pointers, then the buffers; no Control.buf: no room for control data) */
  if (!m || (!got && !ov) || (m->dwBufferCount && !m->lpBuffers) || (m->name && m->namelen < 16)) return WSAEFAULT;
  if ((e = rt_check_bufs(m->lpBuffers, m->dwBufferCount, &total)) != 0) return e;
  if (total > 0x7fffffff) return WSAEINVAL;
  if (!x_begin(&c, I, s, 6, ov, &e)) return e;
  memset(&io, 0, sizeof io);
  io.bufs = m->lpBuffers;
  io.nbufs = m->dwBufferCount;
  io.cap = total;
  io.out = m;
  if (I->views) {
    if (!(c.view = rt_push_view(I, c.co, io.bufs, io.nbufs, total, 1))) { rt_fail(&c, &e, WSAENOBUFS); return WSAENOBUFS; }
  } else {
    lua_pushinteger(c.co, (lua_Integer)total);
  }
  lua_pushinteger(c.co, m->Control.buf ? m->Control.len : 0);
  lua_pushinteger(c.co, m->dwFlags);
  if (ov && routine && I->up.lpWPUOpenCurrentThread(&tid, &e) != 0) {
    if (!e) e = WSAENOBUFS;
    rt_ov_failed(ov, e);
    rt_fail(&c, &e, e);
    return e;
  }
  return x_end_r(&c, rt_run(&c, &e), &io, finish_recvmsg, got, ov, ov ? routine : NULL, ov && routine ? &tid : NULL,
                 &e);
}

/* GetAcceptExSockaddrs for an instance that carries AcceptEx: its own blocks. */
static void read_block(char *at, DWORD room, struct sockaddr **sa, LPINT len) {
  INT n = 0;
  if (room >= sizeof n) memcpy(&n, at, sizeof n);
  if (n < 2 || (DWORD)n + sizeof n > room) { if (sa) *sa = NULL; if (len) *len = 0; return; }
  if (sa) *sa = (struct sockaddr *)(at + sizeof n);
  if (len) *len = n;
}
int rt_extlua_getaddrs(lwsp_inst *I, PVOID out, DWORD rcvlen, DWORD loclen, DWORD remlen, struct sockaddr **loc,
                       LPINT locl, struct sockaddr **rem, LPINT reml) {
  if (!XL[I->slot].own_addrs) return 0;
  if (!out) { read_block(NULL, 0, loc, locl); read_block(NULL, 0, rem, reml); return 1; }
  read_block((char *)out + rcvlen, loclen, loc, locl);
  read_block((char *)out + rcvlen + loclen, remlen, rem, reml);
  return 1;
}
void rt_extlua_own_addrs(lwsp_inst *I, int own) { XL[I->slot].own_addrs = own; }

/* ---- the calls down, as operation objects ---------------------------------------------------- */
static lwsp_lower *check_low(lua_State *L, lwsp_inst **I) {
  lower_ud *u = luaL_checkudata(L, 1, LOWER_MT);
  if (!u->low || !u->low->started) luaL_error(L, "the lower layer has been cleaned up");
  *I = u->low->I;
  return u->low;
}

static lop **new_ud(lua_State *L) {
  lop **ud = lua_newuserdatauv(L, sizeof *ud, 1);   /* (WSARecvMsg: the view its data goes to) */
  *ud = NULL;
  luaL_setmetatable(L, EXTOP_MT);
  return ud;
}

/* After the call down: the object on top of L, or nil and the error (the record freed). */
static int started(lua_State *L, lwsp_inst *I, lop *op, lop **ud, BOOL ok, int e) {
  if (ok) {
    op->done = 1;
  } else if (e != WSA_IO_PENDING) {
    *ud = NULL;
    free(op->buf);
    free(op);
    return lwsp_push_error(L, e ? e : WSASYSCALLFAILURE);
  } else {
    lua_pushvalue(L, -1);
    op->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    op->next = XL[I->slot].pending;
    XL[I->slot].pending = op;
    rt_service_start(I);
    lwsp_cond_broadcast(&I->cond);   /* a service thread asleep with nothing due polls again */
  }
  return 1;
}

static lop *new_op(lua_State *L, lwsp_inst *I, lwsp_lower *low, SOCKET lh, int ext, size_t buflen, lop ***udp) {
  lop *op;
  lop **ud = new_ud(L);
  if (!(op = calloc(1, sizeof *op)) || (buflen && !(op->buf = malloc(buflen)))) {
    free(op);
    return NULL;
  }
  op->I = I; op->low = low; op->lh = lh; op->ext = ext; op->ref = LUA_NOREF;
  op->ud = ud;
  *ud = op;
  *udp = ud;
  return op;
}

#define LOW_FN(type, var, ext) \
  type var; \
  { void (*g_)(void) = rt_ext_lower_fn(I, low, h, (ext), &e); \
    if (!g_) return lwsp_push_error(L, e ? e : WSAEOPNOTSUPP); \
    memcpy(&var, &g_, sizeof var); }

/* low:connectex(h, addr, data) -> operation | nil, error */
static int m_connectex(lua_State *L) {
  lwsp_inst *I;
  lwsp_lower *low = check_low(L, &I);
  SOCKET h = (SOCKET)luaL_checkinteger(L, 2);
  SOCKADDR_STORAGE ss;
  int len;
  size_t n = 0;
  const WSABUF *vb;
  DWORD nvb, sent = 0;
  const char *data = NULL;
  INT e = 0;
  lop *op, **ud;
  BOOL ok;
  if (!lwsp_to_sockaddr(L, 3, &ss, &len)) return luaL_argerror(L, 3, LWSP_ADDRESS_FORMS);
  if (rt_view_bufs(L, 4, &vb, &nvb, &n, 0)) {
    luaL_argcheck(L, nvb <= 1, 4, "a view of more than one buffer");
    data = nvb ? vb[0].buf : "";
  } else {
    data = luaL_optlstring(L, 4, "", &n);
  }
  luaL_argcheck(L, n <= 0x7fffffff, 4, "longer than a WSABUF holds");
  if (I->closing && !I->cleaning) return lwsp_push_error(L, WSAENETDOWN);
  LOW_FN(LPFN_CONNECTEX, f, 2);
  if (!(op = new_op(L, I, low, h, 2, n, &ud))) return lwsp_push_error(L, WSAENOBUFS);
  if (n) memcpy(op->buf, data, n);
  DOWN(I, ok = f(h, (struct sockaddr *)&ss, len, op->buf, (DWORD)n, &sent, &op->low_ov));
  if (ok) op->bytes = sent;
  return started(L, I, op, ud, ok, ok ? 0 : rt_ext_last_error(I));
}

/* low:acceptex(h, accept_h, len) -> operation | nil, error */
static int m_acceptex(lua_State *L) {
  lwsp_inst *I;
  lwsp_lower *low = check_low(L, &I);
  SOCKET h = (SOCKET)luaL_checkinteger(L, 2), ah = (SOCKET)luaL_checkinteger(L, 3);
  lua_Integer rcv = luaL_optinteger(L, 4, 0);
  DWORD got = 0;
  INT e = 0;
  lop *op, **ud;
  BOOL ok;
  luaL_argcheck(L, rcv >= 0 && rcv <= 16 * 1024 * 1024, 4, "length out of range");
  if (I->closing && !I->cleaning) return lwsp_push_error(L, WSAENETDOWN);
  LOW_FN(LPFN_ACCEPTEX, f, 0);
  LOW_FN(LPFN_GETACCEPTEXSOCKADDRS, ga, 1);
  if (!(op = new_op(L, I, low, h, 0, (size_t)rcv + 2 * ADDR_BLOCK, &ud))) return lwsp_push_error(L, WSAENOBUFS);
  op->rcvlen = (DWORD)rcv;
  op->getaddrs = ga;
  DOWN(I, ok = f(h, ah, op->buf, (DWORD)rcv, ADDR_BLOCK, ADDR_BLOCK, &got, &op->low_ov));
  if (ok) op->bytes = got;
  return started(L, I, op, ud, ok, ok ? 0 : rt_ext_last_error(I));
}

/* low:disconnectex(h [, flags]) -> operation | nil, error */
static int m_disconnectex(lua_State *L) {
  lwsp_inst *I;
  lwsp_lower *low = check_low(L, &I);
  SOCKET h = (SOCKET)luaL_checkinteger(L, 2);
  lua_Integer fl = luaL_optinteger(L, 3, 0);
  INT e = 0;
  lop *op, **ud;
  BOOL ok;
  luaL_argcheck(L, fl >= 0 && fl <= 0xffffffffLL, 3, "out of the 32-bit range");
  if (I->closing && !I->cleaning) return lwsp_push_error(L, WSAENETDOWN);
  LOW_FN(LPFN_DISCONNECTEX, f, 3);
  if (!(op = new_op(L, I, low, h, 3, 0, &ud))) return lwsp_push_error(L, WSAENOBUFS);
  DOWN(I, ok = f(h, &op->low_ov, (DWORD)fl, 0));
  return started(L, I, op, ud, ok, ok ? 0 : rt_ext_last_error(I));
}

/* low:wsarecvmsg(h, len | view, control [, flags]) -> operation | nil, error */
static int m_wsarecvmsg(lua_State *L) {
  lwsp_inst *I;
  lwsp_lower *low = check_low(L, &I);
  SOCKET h = (SOCKET)luaL_checkinteger(L, 2);
  const WSABUF *vb;
  DWORD nvb, got = 0;
  size_t vlen;
  int view = rt_view_bufs(L, 3, &vb, &nvb, &vlen, 1);
  lua_Integer len = view ? (lua_Integer)vlen : luaL_checkinteger(L, 3);
  lua_Integer cl = luaL_optinteger(L, 4, 0), fl = luaL_optinteger(L, 5, 0);
  INT e = 0, rc;
  lop *op, **ud;
  luaL_argcheck(L, len >= 0 && len <= 16 * 1024 * 1024, 3, "length out of range");
  luaL_argcheck(L, cl >= 0 && cl <= 65536, 4, "control length out of range");
  luaL_argcheck(L, fl >= 0 && fl <= 0xffffffffLL, 5, "out of the 32-bit range");
  if (I->closing && !I->cleaning) return lwsp_push_error(L, WSAENETDOWN);
  LOW_FN(LPFN_WSARECVMSG, f, 6);
  if (!(op = new_op(L, I, low, h, 6, (size_t)(len + cl), &ud))) return lwsp_push_error(L, WSAENOBUFS);
  if (view) { lua_pushvalue(L, 3); lua_setiuservalue(L, -2, 1); }
  op->rcvlen = (DWORD)len;
  op->ctllen = (DWORD)cl;
  op->wb.buf = op->buf;
  op->wb.len = (ULONG)len;
  op->msg.name = (LPSOCKADDR)&op->from;
  op->msg.namelen = sizeof op->from;
  op->msg.lpBuffers = &op->wb;
  op->msg.dwBufferCount = 1;
  op->msg.Control.buf = cl ? op->buf + len : NULL;
  op->msg.Control.len = (ULONG)cl;
  op->msg.dwFlags = (ULONG)fl;
  DOWN(I, rc = f(h, &op->msg, &got, &op->low_ov, NULL));
  if (rc == 0) { op->bytes = got; op->flags = op->msg.dwFlags; }
  return started(L, I, op, ud, rc == 0, rc == 0 ? 0 : rt_ext_last_error(I));
}

/* op:result() of a WSARecvMsg: data (or the count written to the view), sender, control, flags */
static int recvmsg_result(lua_State *L, lop *op) {
  DWORD n = op->bytes <= op->rcvlen ? op->bytes : op->rcvlen, fl = op->flags | op->msg.dwFlags;
  size_t cl = op->msg.Control.len <= op->ctllen ? op->msg.Control.len : op->ctllen;
  if (op->error == WSAEMSGSIZE) fl |= MSG_TRUNC;
  if (lua_getiuservalue(L, 1, 1) != LUA_TNIL) {
    const WSABUF *vb;
    DWORD nvb;
    size_t vlen;
    if (!rt_view_bufs(L, -1, &vb, &nvb, &vlen, 1)) return luaL_error(L, "not a view");
    n = (DWORD)rt_scatter(vb, nvb, op->buf, n);
    lua_pop(L, 1);
    lua_pushinteger(L, n);
  } else {
    lua_pop(L, 1);
    lua_pushlstring(L, op->buf ? op->buf : "", n);
  }
  if (op->msg.namelen > 0 && op->msg.namelen <= (INT)sizeof op->from) lwsp_push_sockaddr(L, (struct sockaddr *)&op->from, op->msg.namelen);
  else lua_pushnil(L);
  push_control(L, op->msg.Control.buf, cl);
  lua_pushinteger(L, fl);
  return 4;
}

static lop *check_op(lua_State *L) {
  lop **ud = luaL_checkudata(L, 1, EXTOP_MT);
  return *ud;
}

/* op:done() -> whether the call below has completed */
static int op_done(lua_State *L) {
  lop *op = check_op(L);
  lua_pushboolean(L, !op || op->done);
  return 1;
}

/* op:result() -> connectex: bytes sent; acceptex: data, local, remote;
 * disconnectex: true; or nil, error (WSA_IO_INCOMPLETE while outstanding) */
static int op_result(lua_State *L) {
  lop *op = check_op(L);
  if (!op) return lwsp_push_error(L, WSA_OPERATION_ABORTED);
  if (!op->done) return lwsp_push_error(L, WSA_IO_INCOMPLETE);
  if (op->ext == 6 && (!op->error || op->error == WSAEMSGSIZE)) return recvmsg_result(L, op);
  if (op->error) return lwsp_push_error(L, (int)op->error);
  if (op->ext == 2) { lua_pushinteger(L, op->bytes); return 1; }
  if (op->ext == 3) { lua_pushboolean(L, 1); return 1; }
  {
    struct sockaddr *la = NULL, *ra = NULL;
    INT lal = 0, ral = 0;
    char *lo = op->buf + op->rcvlen, *hi = lo + 2 * ADDR_BLOCK;
    DWORD n = op->bytes <= op->rcvlen ? op->bytes : op->rcvlen;
    lua_pushlstring(L, op->buf, n);
    op->getaddrs(op->buf, op->rcvlen, ADDR_BLOCK, ADDR_BLOCK, &la, &lal, &ra, &ral);
    /* what the layer below points at must lie in the buffer it was given */
    if (la && (char *)la >= lo && lal > 0 && (char *)la + lal <= hi) lwsp_push_sockaddr(L, la, lal); else lua_pushnil(L);
    if (ra && (char *)ra >= lo && ral > 0 && (char *)ra + ral <= hi) lwsp_push_sockaddr(L, ra, ral); else lua_pushnil(L);
    return 3;
  }
}

static void free_op(lop *op) { free(op->buf); free(op); }

static int op_gc(lua_State *L) {
  lop **ud = luaL_checkudata(L, 1, EXTOP_MT);
  lop *op = *ud;
  *ud = NULL;
  if (op) {
    op->ud = NULL;
    if (op->done) free_op(op);   /* (an outstanding one is anchored by its ref: never here) */
  }
  return 0;
}

void rt_extlua_methods(lua_State *L) {
  static const luaL_Reg m[] = {{"connectex", m_connectex}, {"acceptex", m_acceptex},
                               {"disconnectex", m_disconnectex}, {"wsarecvmsg", m_wsarecvmsg}, {NULL, NULL}};
  static const luaL_Reg opm[] = {{"done", op_done}, {"result", op_result}, {NULL, NULL}};
  luaL_setfuncs(L, m, 0);
  if (luaL_newmetatable(L, EXTOP_MT)) {
    lua_pushcfunction(L, op_gc);
    lua_setfield(L, -2, "__gc");
    luaL_newlib(L, opm);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
}

/* ---- the service thread and the last WSPCleanup ------------------------------------------ */
static int finished(lop *op) {
  return __atomic_load_n(&op->low_ov.Internal, __ATOMIC_ACQUIRE) != WSS_OPERATION_IN_PROGRESS;
}

void rt_extlua_poll(lwsp_inst *I, long *ms) {
  lop **pp = &XL[I->slot].pending, *done = NULL;
  while (*pp) {
    lop *op = *pp;
    if (!finished(op)) { pp = &op->next; continue; }
    *pp = op->next;
    op->next = done;
    done = op;
  }
  while (done) {
    lop *op = done;
    done = op->next;
    op->next = NULL;
    rt_ext_lower_results(I, op->low, op->lh, &op->low_ov, &op->error, &op->bytes, &op->flags);
    op->done = 1;
    if (op->ref != LUA_NOREF && I->L) {
      lua_rawgeti(I->L, LUA_REGISTRYINDEX, op->ref);
      if (rt_wake(I, I->L, -1)) *ms = 0;   /* the service loop pumps the woken handler at once */
      lua_pop(I->L, 1);
      luaL_unref(I->L, LUA_REGISTRYINDEX, op->ref);   /* (the object may go now: it frees the record) */
      op->ref = LUA_NOREF;
    }
  }
  if (XL[I->slot].pending && (*ms < 0 || *ms > 2)) *ms = 2;
}

void rt_extlua_abort(lwsp_inst *I) {
  while (XL[I->slot].pending) {
    lop *op = XL[I->slot].pending;
    XL[I->slot].pending = op->next;
    /* the layer below may still write it: freed once it is closed; its object forgets it */
    if (op->ud) *op->ud = NULL;
    op->ud = NULL;
    if (op->ref != LUA_NOREF && I->L) luaL_unref(I->L, LUA_REGISTRYINDEX, op->ref);
    op->ref = LUA_NOREF;
    op->next = XL[I->slot].orphans;
    XL[I->slot].orphans = op;
  }
  XL[I->slot].own_addrs = 0;
}

void rt_extlua_free(lwsp_inst *I) {
  while (XL[I->slot].orphans) {
    lop *op = XL[I->slot].orphans;
    XL[I->slot].orphans = op->next;
    free_op(op);
  }
}
