/*
 * events.c - network events, kept by the C core for every provider.
 *
 * A provider reports that a condition occurred with lwsp.event(s, FD_x
 * [, error]).  lwsp keeps, per socket, the selected events, the recorded ones
 * with their error codes, the ones currently enabled (the re-enabling rules)
 * and the conditions still standing, and delivers through WPUSetEvent
 * (WSPEventSelect) or WPUPostMessage (WSPAsyncSelect).  WSPSelect answers from
 * the standing conditions.  Re-enabling: FD_READ by recv/recvfrom, FD_OOB by
 * recv with MSG_OOB, FD_ACCEPT by accept, FD_CONNECT by connect, FD_WRITE by a
 * send that failed with WSAEWOULDBLOCK, FD_QOS/FD_GROUP_QOS by SIO_GET_QOS/
 * SIO_GET_GROUP_QOS, FD_ROUTING_INTERFACE_CHANGE and FD_ADDRESS_LIST_CHANGE by
 * their SIO_ ioctls; FD_CLOSE once.  Selecting events clears the record,
 * cancels the other mechanism, and records the standing conditions at once.
 */
#include "runtime.h"

/* Records and delivers bit if it is selected and enabled. */
static void record(lwsp_inst *I, lwsp_sock *so, LONG bit, int error) {
  INT e = 0;
  if (!lwsp_netev_record(&so->ev, bit, error) || lwsp_netev_deliver(&so->ev, &I->up, so->handle, bit, error, &e)) return;
  if (so->ev.mode == 1) lwsp_log(I->name, "WPUSetEvent for socket %llu failed (error %d)", (unsigned long long)so->handle, e);
  else lwsp_log(I->name, "WPUPostMessage for socket %llu failed", (unsigned long long)so->handle);
}

void rt_net_event(lwsp_inst *I, lwsp_sock *so, LONG bit, int error) {
  int i = lwsp_netev_index(bit);
  if (i < 0) return;
  so->ev_level |= bit;
  so->ev_level_error[i] = error;
  record(I, so, bit, error);
  lwsp_cond_broadcast(&I->cond);        /* a blocked WSPSelect looks again */
}

void rt_reenable(lwsp_inst *I, lwsp_sock *so, LONG bits) {
  if (!bits) return;
  so->ev.enabled |= bits;
  so->ev_level &= ~(bits & ~(LONG)FD_CLOSE);
  if (so->ev.mode && I->lowers) lwsp_cond_broadcast(&I->cond);   /* the poller watches again */
}

/* After a selection (lwsp_netev_select cleared the record and enabled every
 * event): the standing conditions are recorded at once. */
static void reselect(lwsp_inst *I, lwsp_sock *so) {
  so->nonblocking = 1;
  for (int i = 0; i < FD_MAX_EVENTS; i++)
    if (so->ev_level & (1L << i)) record(I, so, 1L << i, so->ev_level_error[i]);
  lwsp_cond_broadcast(&I->cond);   /* a layered provider's poller watches the new selection */
}

int rt_event_select(lwsp_inst *I, lwsp_sock *so, WSAEVENT ev, LONG mask, LPINT err) {
  int r = lwsp_netev_select(&so->ev, 1, ev, NULL, 0, mask);
  if (r) { *err = r; return SOCKET_ERROR; }
  reselect(I, so);
  return 0;
}

int rt_async_select(lwsp_inst *I, lwsp_sock *so, HWND hwnd, UINT msg, LONG mask, LPINT err) {
  int r = lwsp_netev_select(&so->ev, 2, WSA_INVALID_EVENT, hwnd, msg, mask);
  if (r) { *err = r; return SOCKET_ERROR; }
  reselect(I, so);
  return 0;
}

int rt_enum_events(lwsp_inst *I, lwsp_sock *so, WSAEVENT ev, LPWSANETWORKEVENTS ne, LPINT err) {
  int r = lwsp_netev_enum(&so->ev, &I->up, ev, ne);
  if (r) { *err = r; return SOCKET_ERROR; }
  return 0;
}

/* Readable: data, a connection to accept, or the close; writable: room to
 * send or a completed connect; except: out-of-band data or a failed connect. */
static int ready(lwsp_sock *so, int which) {
  LONG l = so->ev_level;
  if (which == 0) return (l & (FD_READ | FD_ACCEPT | FD_CLOSE)) != 0;
  if (which == 1) return (l & FD_WRITE) || ((l & FD_CONNECT) && !so->ev_level_error[4]);
  return (l & FD_OOB) || ((l & FD_CONNECT) && so->ev_level_error[4]);
}

int rt_select(lwsp_inst *I, wsp_fd_set *r, wsp_fd_set *w, wsp_fd_set *e, const wsp_timeval *tv, LPINT err) {
  wsp_fd_set *sets[3] = {r, w, e};
  double deadline = tv ? lwsp_now() + tv->tv_sec + tv->tv_usec / 1e6 : 0;
  int depth = I->depth;
  for (int k = 0; k < 3; k++)
    if (sets[k])
      for (unsigned i = 0; i < sets[k]->fd_count; i++)
        if (!rt_sock_find(I, sets[k]->fd_array[i])) { *err = WSAENOTSOCK; return SOCKET_ERROR; }
  for (;;) {
    wsp_fd_set out[3];
    int n = 0;
    for (int k = 0; k < 3; k++) {
      out[k].fd_count = 0;
      if (!sets[k]) continue;
      for (unsigned i = 0; i < sets[k]->fd_count; i++) {
        lwsp_sock *so = rt_sock_find(I, sets[k]->fd_array[i]);
        if (so && ready(so, k)) out[k].fd_array[out[k].fd_count++] = sets[k]->fd_array[i];
      }
      n += (int)out[k].fd_count;
    }
    if (n || (tv && lwsp_now() >= deadline) || depth > 1) {
      for (int k = 0; k < 3; k++)
        if (sets[k]) *sets[k] = out[k];
      return n;
    }
    I->depth = 0;
    lwsp_cond_wait(&I->cond, &I->lock, tv ? (long)((deadline - lwsp_now()) * 1000) + 1 : -1);
    I->depth = depth;
  }
}

/* lwsp.event(s, FD_x [, error]) -> true: the provider reports a network event */
static int l_event(lua_State *L) {
  lwsp_inst *I = lua_touserdata(L, lua_upvalueindex(1));
  lua_Integer bit = luaL_checkinteger(L, 2), error = luaL_optinteger(L, 3, 0);
  lwsp_sock *so;
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_argcheck(L, bit > 0 && bit <= 0x7fffffff && lwsp_netev_index((LONG)bit) >= 0, 2, "one FD_* event");
  luaL_argcheck(L, error >= 0 && error <= 0xffff, 3, "a Winsock error code");
  lua_getfield(L, 1, "handle");
  so = lua_isinteger(L, -1) ? rt_sock_find(I, (SOCKET)lua_tointeger(L, -1)) : NULL;
  lua_pop(L, 1);
  if (!so) return lwsp_push_error(L, WSAENOTSOCK);
  lua_rawgeti(L, LUA_REGISTRYINDEX, so->ref);
  if (!lua_rawequal(L, -1, 1)) return lwsp_push_error(L, WSAENOTSOCK);
  rt_net_event(I, so, (LONG)bit, (int)error);
  lua_pushboolean(L, 1);
  return 1;
}

/* lwsp.selected(s) -> mask, mode ("event", "message" or nil): what the
 * application selected on this socket */
static int l_selected(lua_State *L) {
  lwsp_inst *I = lua_touserdata(L, lua_upvalueindex(1));
  lwsp_sock *so;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "handle");
  so = lua_isinteger(L, -1) ? rt_sock_find(I, (SOCKET)lua_tointeger(L, -1)) : NULL;
  if (!so) return lwsp_push_error(L, WSAENOTSOCK);
  lua_pushinteger(L, so->ev.mode ? so->ev.mask : 0);
  if (so->ev.mode == 1) lua_pushliteral(L, "event");
  else if (so->ev.mode == 2) lua_pushliteral(L, "message");
  else lua_pushnil(L);
  return 2;
}

int rt_events_open(lua_State *L, lwsp_inst *I) {
  static const luaL_Reg fns[] = {{"event", l_event}, {"selected", l_selected}, {NULL, NULL}};
  lua_pushlightuserdata(L, I);
  luaL_setfuncs(L, fns, 1);
  return 0;
}
