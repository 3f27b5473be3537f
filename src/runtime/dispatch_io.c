/*
 * dispatch_io.c - the WSP entries that carry data or wait: WSPRecv,
 * WSPRecvFrom, WSPRecvDisconnect, WSPSend, WSPSendTo, WSPSendDisconnect,
 * WSPIoctl and WSPSelect.  Blocking, non-blocking and overlapped calls share
 * one path: the handler runs (or waits), and data_end copies what it gave
 * into the caller's buffers or completes the overlapped request.
 */
#include "dispatch.h"
#include "extfn.h"
#include <string.h>
#include <stdio.h>

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
      if (!rt_in_range(c, c->base, "a 4-byte ioctl result (u_long)", I32_MIN_, U32_MAX_)) return WSAEINVAL;
      u = (uint32_t)lua_tointeger(c->co, c->base);
      data = (const char *)&u;
      n = 4;
      break;
    case LUA_TNIL: case LUA_TBOOLEAN: break;
    default: return rt_soft_fault(c, "returned %s where ioctl output was expected", rt_rtype(c, 0));
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
  if (rc == RT_FAILED) { rt_ov_failed(ov, *err); return SOCKET_ERROR; }
  if (rc == RT_PENDING || rc == RT_QUEUED) {
    if (!(rc == RT_PENDING ? rt_pend : rt_defer)(c, io, finish, routine, tid, err)) {
      rt_ov_failed(ov, *err);
      return SOCKET_ERROR;
    }
    *err = c->err_code = WSA_IO_PENDING;
    rt_end(c);
    return SOCKET_ERROR;
  }
  if (rt_failed(c, err)) { rt_ov_failed(ov, *err); return SOCKET_ERROR; }
  e = finish(c, io, &bytes, &fl);
  if (count) *count = bytes;
  if (flags) *flags = fl;
  if (e) {
    rt_ov_failed(ov, e);
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

int rt_wsp_ioctl(lwsp_inst *I, SOCKET s, DWORD code, LPVOID in, DWORD cbin, LPVOID out, DWORD cbout,
                   LPDWORD returned, LPWSAOVERLAPPED ov, LPWSAOVERLAPPED_COMPLETION_ROUTINE routine,
                   LPWSATHREADID tid, LPINT err) {
  const int errv = SOCKET_ERROR;
  rt_call c;
  rt_io io;
  ERRP;
  if ((!returned && !ov) || (cbin && !in) || (cbout && !out) || !overlapped_args(ov, routine, tid)) {
    *err = WSAEFAULT;
    rt_ov_failed(ov, WSAEFAULT);
    return errv;
  }
  if (code == FIONBIO && (!in || cbin < 4)) { *err = WSAEFAULT; rt_ov_failed(ov, WSAEFAULT); return errv; }
  { int rc; if (rt_ext_ioctl(I, s, code, in, cbin, out, cbout, returned, ov, routine, tid, err, &rc)) return rc; }
  if (code == FIONBIO && I->href[P_ioctl] == LUA_NOREF) {
    /* the C core keeps the blocking mode; a handler, if any, is told too */
    lwsp_sock *so = rt_lock_sock(I, s, err);
    uint32_t v;
    if (!so) return errv;
    memcpy(&v, in, 4);
    if (!v && so->ev.mode) { rt_unlock_inst(I); *err = WSAEINVAL; return errv; } /* selected sockets stay non-blocking */
    so->nonblocking = v != 0;
    rt_unlock_inst(I);
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
    if (!v && c.so->ev.mode) FAIL(WSAEINVAL);   /* selected sockets stay non-blocking */
    c.so->nonblocking = v != 0;
  }
  return data_end(&c, rt_run(&c, err), &io, finish_ioctl, returned, NULL, ov, routine, tid, err);
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
  if (c->nres > fk && !lua_isnil(c->co, c->base + fk) && !rt_int_result(c, fk, 0, 0xffffffffLL, &fl))
    return rt_soft_fault(c, "returned %s where flags were expected", rt_rtype(c, fk));
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
  if (from && io->from) {
    SOCKADDR_STORAGE ss;
    int alen;
    if (c->nres < 2 || !lwsp_to_sockaddr(c->co, c->base + 1, &ss, &alen))
      return rt_soft_fault(c, "returned %s where the sender's address was expected", rt_rtype(c, 1));
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
    rt_ov_failed(ov, bad);
    return errv;
  }
  /* (an overlapped WSPRecvFrom runs its handler: only WSPRecv's queue ahead of it) */
  if (!rt_begin_down(&c, I, proc, s, proc == P_recv ? (ov ? 2 : 1) : proc == P_recvfrom && !ov, err)) return errv;
  rt_reenable(I, c.so, (*flags & MSG_OOB) ? FD_OOB : FD_READ);
  if (from && *fromlen < rt_min_addrlen(c.so->af)) { rt_ov_failed(ov, WSAEFAULT); FAIL(WSAEFAULT); }
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
    if (rt_down_recv(&c, bufs, nbufs, &n, &fl, from, fromlen, &e) == 0) {
      if (got) *got = n;
      *flags = fl;
      if (ov) rt_overlapped_done(I, c.so, c.so->handle, ov, routine, tid, 0, n, fl);
      rt_end(&c);
      return 0;
    }
    if (e != WSAEWOULDBLOCK || (!ov && c.so->nonblocking)) {   /* (the handler could only say the same) */
      if (got) *got = n;
      rt_ov_failed(ov, e ? e : WSASYSCALLFAILURE);
      FAIL(e ? e : WSASYSCALLFAILURE);
    }
    if (!ov && I->depth == 1) {                 /* blocking: waits on this thread for the layer below */
      if (!rt_block_down(&c, 0, err)) return errv;
      fl = *flags;
      goto again;
    }
    if (!rt_enter_lua(&c, err)) return errv;   /* the handler waits */
  }
  c.can_wait = 1;
  if (!(c.view = rt_push_recv_args(I, c.co, &io)) && I->views) { rt_ov_failed(ov, WSAENOBUFS); FAIL(WSAENOBUFS); }
  return data_end(&c, rt_run_in_turn(&c, err), &io, finish_recv, got, flags, ov, routine, tid, err);
}

int rt_wsp_recv(lwsp_inst *I, SOCKET s, LPWSABUF bufs, DWORD nbufs, LPDWORD got, LPDWORD flags,
                  LPWSAOVERLAPPED ov, LPWSAOVERLAPPED_COMPLETION_ROUTINE routine, LPWSATHREADID tid, LPINT err) {
  return recv_entry(I, P_recv, s, bufs, nbufs, got, flags, NULL, NULL, ov, routine, tid, err);
}

int rt_wsp_recvdisconnect(lwsp_inst *I, SOCKET s, LPWSABUF data, LPINT err) {
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

int rt_wsp_recvfrom(lwsp_inst *I, SOCKET s, LPWSABUF bufs, DWORD nbufs, LPDWORD got, LPDWORD flags,
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

int rt_wsp_select(lwsp_inst *I, int nfds, wsp_fd_set *r, wsp_fd_set *w, wsp_fd_set *e, wsp_timeval *tv,
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
    char sets_[LWSP_TRACE_TEXT] = "";
    if (lwsp_tracing) lwsp_trace_fdsets(sets_, sizeof sets_, r, w, e, tv);
    CORE_TRACE(P_select, 0, "%s", sets_);
    if (!rt_lock_inst(I, err)) { CORE_END(P_select, 0, 1); return errv; }
    rc = rt_select(I, r, w, e, tv, err);
    rt_unlock_inst(I);
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
  if (!rt_int_result(c, 0, 0, (lua_Integer)io->cap, &n))
    return rt_soft_fault(c, "returned %s where a byte count from 0 to %llu was expected", rt_rtype(c, 0),
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
    rt_ov_failed(ov, bad);
    return errv;
  }
  if (!rt_begin_down(&c, I, proc, s, (proc == P_send || proc == P_sendto) && !ov, err)) return errv;
  if (c.low && proc == P_sendto && to && !rt_addr_ok(to, tolen)) FAIL(WSAEFAULT);
  if (c.low) {
    for (;;) {
      DWORD n = 0, k = 0;
      INT e = 0;
      if (rt_down_send(&c, bufs, nbufs, &n, flags, to, tolen, &e) == 0) {
        /* done, or (a blocking send goes down whole) the rest goes after it;
         * a datagram goes whole or not at all, and sendto makes one call */
        size_t skip = n;
        if (n >= total || c.so->nonblocking || proc == P_sendto) { *sent = (DWORD)(before + n); rt_end(&c); return 0; }
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
  else if (!(c.view = rt_push_view(I, c.co, bufs, nbufs, total, 0))) { rt_ov_failed(ov, WSAENOBUFS); FAIL(WSAENOBUFS); }
  if (proc == P_sendto) {
    if (to) {
      if (!rt_push_addr_arg(&c, to, tolen)) { rt_ov_failed(ov, WSAEFAULT); FAIL(WSAEFAULT); }
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

int rt_wsp_send(lwsp_inst *I, SOCKET s, LPWSABUF b, DWORD n, LPDWORD sent, DWORD flags, LPWSAOVERLAPPED ov,
                  LPWSAOVERLAPPED_COMPLETION_ROUTINE r, LPWSATHREADID t, LPINT e) {
  return send_common(I, P_send, s, b, n, sent, flags, NULL, 0, ov, r, t, e);
}

int rt_wsp_senddisconnect(lwsp_inst *I, SOCKET s, LPWSABUF data, LPINT err) {
  const int errv = SOCKET_ERROR;
  rt_call c;
  ERRP;
  if (data && data->len && !data->buf) { *err = WSAEFAULT; return errv; }
  BEGIN(P_senddisconnect, s, 1);
  rt_push_wsabuf(c.co, data);
  RUN();
  return rt_finish_ok(&c, err);
}

int rt_wsp_sendto(lwsp_inst *I, SOCKET s, LPWSABUF b, DWORD n, LPDWORD sent, DWORD flags,
                    const struct sockaddr *to, int tolen, LPWSAOVERLAPPED ov, LPWSAOVERLAPPED_COMPLETION_ROUTINE r,
                    LPWSATHREADID t, LPINT e) {
  return send_common(I, P_sendto, s, b, n, sent, flags, to, tolen, ov, r, t, e);
}
