/*
 * poller.c - the service thread's watch of a layered provider's lower
 * sockets: a lower WSPSelect over what the sockets' selected events want,
 * turned into network events (FD_READ, FD_WRITE, FD_CONNECT, ...) for the
 * sockets above, without the provider lock held while it waits.
 */
#include "lower.h"
#include <stdio.h>
#include <string.h>

/* ---- the poller (service thread) ------------------------------------------------------ */
static int watch_wants(const lwatch *w, int dir) {
  const lwsp_sock *so = w->so;
  LONG on;
  if (!so->gen || so->gen != w->gen || !so->ev.mode) return 0;
  on = so->ev.mask & so->ev.enabled & ~so->ev_level;
  return dir == 0 ? (on & (FD_READ | FD_ACCEPT | FD_CLOSE)) != 0 : (on & (FD_WRITE | FD_CONNECT)) != 0;
}

static void watch_ready(lwsp_lower *low, lwatch *w, int dir) {
  lwsp_inst *I = low->I;
  if (dir == 1) {
    if (w->connecting) {
      /* FD_CONNECT carries the connection's outcome (SO_ERROR of the lower socket) */
      int e = 0, len = 4, rc;
      INT err = 0;
      lwsp_sock *so = w->so;
      uint32_t gen = w->gen;
      w->connecting = 0;
      DOWN(I, rc = low->procs.lpWSPGetSockOpt(w->h, SOL_SOCKET, SO_ERROR, (char *)&e, &len, &err));
      if (so->gen != gen) return;
      rt_net_event(I, so, FD_CONNECT, rc == 0 ? e : err);
      if (rc != 0 || e != 0) return;
      rt_net_event(I, so, FD_WRITE, 0);
      return;
    }
    rt_net_event(I, w->so, FD_WRITE, 0);
    return;
  }
  if (w->listening) { rt_net_event(I, w->so, FD_ACCEPT, 0); return; }
  {
    char c;
    WSABUF b = {1, &c};
    DWORD got = 0, flags = MSG_PEEK;
    INT err = 0;
    int rc;
    SOCKET h = w->h;
    lwsp_sock *so = w->so;
    uint32_t gen = w->gen;
    TRACED_DOWN("WSPRecv", h, "1, MSG_PEEK", rc != 0, rc = low->procs.lpWSPRecv(h, &b, 1, &got, &flags, NULL, NULL, NULL, &err));
    if (so->gen != gen) return;
    if (rc == 0 && got == 0) rt_net_event(I, so, FD_CLOSE, 0);
    else if (rc == 0 || err == WSAEMSGSIZE) rt_net_event(I, so, FD_READ, 0);
    else if (err != WSAEWOULDBLOCK) rt_net_event(I, so, FD_CLOSE, err);
  }
}

/* Wakes the waiter registered at low->regs[i] and drops its registration
 * (the last one takes its place). */
static void wake_reg(lwsp_inst *I, lwsp_lower *low, size_t i) {
  lua_pushfstring(I->L, "%c%I", low->regs[i].dir ? 'w' : 'r', (lua_Integer)low->regs[i].h);
  rt_wake(I, I->L, -1);
  lua_pop(I->L, 1);
  low->regs[i] = low->regs[--low->nregs];
}

/* The lower WSPSelect failed: a socket was closed meanwhile.  Wakes and drops
 * the waiters on what the lower layer no longer knows. */
static void drop_closed(lwsp_inst *I, lwsp_lower *low) {
  for (size_t i = 0; i < low->nregs;) {
    int opt = 0, len = 4;
    INT e2 = 0, r2;
    SOCKET h = low->regs[i].h;
    DOWN(I, r2 = low->procs.lpWSPGetSockOpt(h, SOL_SOCKET, SO_TYPE, (char *)&opt, &len, &e2));
    if (r2 == SOCKET_ERROR && e2 == WSAENOTSOCK) wake_reg(I, low, i);
    else i++;
  }
}

int rt_lower_poll(lwsp_inst *I, long max_ms) {
  int polled = 0;
  for (lwsp_lower *low = I->lowers; low; low = low->next) {
    wsp_fd_set rs, ws, xs;
    wsp_timeval tv;
    INT err = 0;
    int rc;
    long ms;
    rs.fd_count = ws.fd_count = 0;
    /* more waiters than a select set holds: each poll starts where the last
     * one stopped, so every waiter is polled in its turn */
    static size_t rot;
    size_t from = low->nregs ? __atomic_fetch_add(&rot, WSP_FD_SETSIZE, __ATOMIC_RELAXED) % low->nregs : 0;
    for (size_t n = 0; n < low->nregs && rs.fd_count < WSP_FD_SETSIZE && ws.fd_count < WSP_FD_SETSIZE; n++) {
      size_t i = (from + n) % low->nregs;
      wsp_fd_set *s = low->regs[i].dir ? &ws : &rs;
      if (!lwsp_fd_isset(low->regs[i].h, s)) s->fd_array[s->fd_count++] = low->regs[i].h;
    }
    for (size_t i = 0; i < low->nwatches; i++)
      for (int dir = 0; dir < 2; dir++) {
        wsp_fd_set *s = dir ? &ws : &rs;
        if (s->fd_count < WSP_FD_SETSIZE && watch_wants(&low->watches[i], dir) && !lwsp_fd_isset(low->watches[i].h, s))
          s->fd_array[s->fd_count++] = low->watches[i].h;
      }
    if (!rs.fd_count && !ws.fd_count) continue;
    /* Winsock reports a failed connect in the except set, not the write set:
     * whatever waits to write also wakes on an exception */
    xs = ws;
    polled = 1;
    ms = max_ms < 0 || max_ms > 20 ? 20 : max_ms;
    tv.tv_sec = 0;
    tv.tv_usec = (LONG)(ms * 1000);
    {
      char targs[LWSP_TRACE_TEXT] = "";
      if (lwsp_tracing && low->foreign)
        lwsp_trace_fdsets(targs, sizeof targs, rs.fd_count ? &rs : NULL, ws.fd_count ? &ws : NULL,
                          xs.fd_count ? &xs : NULL, &tv);
      TRACED_DOWN("WSPSelect", 0, targs, rc == SOCKET_ERROR,
                  rc = low->procs.lpWSPSelect(0, rs.fd_count ? &rs : NULL, ws.fd_count ? &ws : NULL,
                                              xs.fd_count ? &xs : NULL, &tv, &err));
    }
    if (rc != SOCKET_ERROR)
      for (unsigned k = 0; k < xs.fd_count; k++)
        if (!lwsp_fd_isset(xs.fd_array[k], &ws) && ws.fd_count < WSP_FD_SETSIZE) ws.fd_array[ws.fd_count++] = xs.fd_array[k];
    if (rc == SOCKET_ERROR) {
      drop_closed(I, low);
      continue;
    }
    for (int dir = 0; dir < 2; dir++) {
      wsp_fd_set *s = dir ? &ws : &rs;
      for (unsigned k = 0; k < s->fd_count; k++) {
        SOCKET h = s->fd_array[k];
        for (size_t i = 0; i < low->nregs;) {
          if (low->regs[i].h == h && low->regs[i].dir == dir) wake_reg(I, low, i);
          else i++;
        }
        for (size_t i = 0; i < low->nwatches; i++)
          if (low->watches[i].h == h && watch_wants(&low->watches[i], dir)) watch_ready(low, &low->watches[i], dir);
      }
    }
  }
  return polled;
}

void rt_lower_close_all(lwsp_inst *I) {
  while (I->lowers) {
    lwsp_lower *low = I->lowers;
    INT err = 0;
    I->lowers = low->next;
    if (low->started) {
      int rc, tr = lwsp_tracing;
      if (tr) lwsp_trace_enter(I->name, low->lname, "WSPCleanup", 0, "");
      DOWN(I, rc = low->procs.lpWSPCleanup(&err));
      if (tr) lwsp_trace_leave(I->name, low->lname, "WSPCleanup", 0, rc ? err : 0, "");
      lwsp_dlclose(low->lib);
    }
    low->started = 0;
    free(low->regs);
    free(low->watches);
    free(low);
  }
}
