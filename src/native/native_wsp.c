/*
 * native_wsp.c - the native base provider's WSP entries and its procedure
 * table (nv_procs), over the slots, waits, events and overlapped machinery
 * of native.c (native.h).  Each entry takes the lock, finds its socket
 * (LOCKED_SOCK) and answers as Winsock's own provider would.
 */
#include "native.h"

#define LOCKED_SOCK(s) nv_sock *so; lwsp_mutex_lock(&nv.lock); \
  if (!nv.startups || !(so = nv_find(s))) { lwsp_mutex_unlock(&nv.lock); *err = nv.startups ? WSAENOTSOCK : WSANOTINITIALISED; return SOCKET_ERROR; }

/* A send (of one buffer) or a receive of UNLOCKED_IO bytes or more makes its
 * system call with the lock released, so that one socket's copy never holds
 * up another's, nor the other direction of the same socket: busy keeps the
 * slot and its fd while it does.
 * A close meanwhile shuts the socket down (a blocked call wakes and fails
 * with WSAEINTR) and leaves the rest to the last one out (nv_unbusy).  Calls of one
 * direction on one socket still make their system calls one at a time
 * (io_begin), as they did under the lock: Winsock, and Wine more so, may
 * answer a non-blocking call made while another of its direction is under way
 * with WSAEWOULDBLOCK (a layer's MSG_PEEK beside an application's recv). */
#define UNLOCKED_IO 4096   /* bytes: a smaller call keeps the lock through its system call (cheaper than its round trip) */
static void io_wait(nv_sock *so, int kind) {    /* under the lock: its turn */
  while (so->io[kind]) {
    so->io_waiting++;
    lwsp_cond_wait(&nv.cond, &nv.lock, -1);
    so->io_waiting--;
  }
}
static void io_begin(nv_sock *so, int kind) {   /* under the lock; returns with it released */
  io_wait(so, kind);
  so->io[kind] = 1;
  lwsp_mutex_unlock(&nv.lock);
}
static void io_end(nv_sock *so, int kind) {     /* takes the lock back */
  lwsp_mutex_lock(&nv.lock);
  so->io[kind] = 0;
  if (so->io_waiting) lwsp_cond_broadcast(&nv.cond);
}
/* One try of a send or receive (expr) at its turn: with the lock kept, or
 * released for the system call. */
#define IO_TRY(so, kind, keep_lock, expr) do { \
    if (keep_lock) { io_wait((so), (kind)); expr; } \
    else { io_begin((so), (kind)); expr; io_end((so), (kind)); } \
  } while (0)

static SOCKET dup_open(LPWSAPROTOCOL_INFOW pi, LPINT err);
static SOCKET WSPAPI n_socket(int af, int type, int protocol, LPWSAPROTOCOL_INFOW pi, GROUP g, DWORD flags, LPINT err) {
  nv_sock *so;
  long long fd;
  NV_ERRP;
  (void)g; (void)flags;
  if (!pi) { *err = WSAEFAULT; return INVALID_SOCKET; }
  if (pi->dwProviderReserved) return dup_open(pi, err);        /* a duplicate's (WSPDuplicateSocket) */
  if (af <= 0) af = pi->iAddressFamily;
  if (type <= 0) type = pi->iSocketType;
  if (protocol == 0 || protocol == FROM_PROTOCOL_INFO) protocol = pi->iProtocol;
  if ((type == SOCK_STREAM && protocol != IPPROTO_TCP) || (type == SOCK_DGRAM && protocol != IPPROTO_UDP)) {
    *err = WSAEPROTONOSUPPORT;
    return INVALID_SOCKET;
  }
  fd = nos_socket(af, type, protocol);
  if (fd < 0) { *err = (INT)-fd; return INVALID_SOCKET; }
  lwsp_mutex_lock(&nv.lock);
  if (!(so = nv_sock_alloc())) { NV_UNLOCK(); nos_close(fd); *err = WSAENOBUFS; return INVALID_SOCKET; }
  so->fd = fd; so->af = af; so->type = type; so->catalog = pi->dwCatalogEntryId;
  if (nv_new_handle(so, err) == INVALID_SOCKET) { nv_sock_free(so); NV_UNLOCK(); nos_close(fd); return INVALID_SOCKET; }
  NV_UNLOCK();
  return so->h;
}

static int WSPAPI n_closesocket(SOCKET s, LPINT err) {
  long long fd;
  int closed = 0;
  NV_ERRP;
  LOCKED_SOCK(s);
  fd = so->fd;
#ifdef _WIN32
  closed = nv_os_drain(so);
#endif
  for (nv_op **pp = &nv.ops; *pp;) {
    nv_op *op = *pp;
    if (op->so == so) { *pp = op->next; nv_op_finish(op, WSA_OPERATION_ABORTED, 0, 0); }
    else pp = &op->next;
  }
  nv_close_handle(s);
  if (so->busy) {
    __atomic_store_n(&so->dead, closed ? 2 : 1, __ATOMIC_RELEASE);   /* 2: fd is closed already */
    so->h = 0;                          /* no handle finds it now */
    so->ev.mode = 0;                    /* and it reports no more events */
    if (!closed && !so->shared) nos_shutdown(fd, 2);   /* wakes a call blocked on it (else its next poll does) */
    NV_UNLOCK();
    nv_poke();
    return 0;
  }
  nv_sock_free(so);
  NV_UNLOCK();
  if (!closed) nos_close(fd);
  nv_poke();
  return 0;
}

static int WSPAPI n_bind(SOCKET s, const struct sockaddr *name, int len, LPINT err) {
  int r;
  NV_ERRP;
  if (!name) return nv_fail(err, WSAEFAULT);
  LOCKED_SOCK(s);
  r = nos_bind(so->fd, name, len);
  NV_UNLOCK();
  return r < 0 ? nv_fail(err, -r) : 0;
}

static int WSPAPI n_listen(SOCKET s, int backlog, LPINT err) {
  int r;
  NV_ERRP;
  LOCKED_SOCK(s);
  r = nos_listen(so->fd, backlog);
  if (r == 0) so->listening = 1;
  NV_UNLOCK();
  nv_poke();
  return r < 0 ? nv_fail(err, -r) : 0;
}

static int WSPAPI n_connect(SOCKET s, const struct sockaddr *name, int len, LPWSABUF cd, LPWSABUF ce, LPQOS sq,
                            LPQOS gq, LPINT err) {
  int r, nb;
  long long fd;
  NV_ERRP;
  (void)cd; (void)sq; (void)gq;
  if (ce) ce->len = 0;
  if (!name) return nv_fail(err, WSAEFAULT);
  LOCKED_SOCK(s);
  so->ev.enabled |= FD_CONNECT;
  r = nos_connect(so->fd, name, len);
  fd = so->fd;
  nb = so->nonblocking;
  if (r == -WSAEWOULDBLOCK) so->connecting = 1;
  if (r == 0 || r == -WSAEWOULDBLOCK) so->peer = 1;
  NV_UNLOCK();
  nv_poke();
  if (r == -WSAEWOULDBLOCK && !nb) {
    if ((r = nv_wait_fd(so, fd, NOS_OUT)) == 0) r = nos_connect_result(fd);
    lwsp_mutex_lock(&nv.lock);
    so->connecting = 0;
    NV_UNLOCK();
  }
  return r < 0 ? nv_fail(err, -r) : 0;
}

static SOCKET WSPAPI n_accept(SOCKET s, struct sockaddr *addr, LPINT addrlen, LPCONDITIONPROC cond, DWORD_PTR cb,
                              LPINT err) {
  nv_sock *ns;
  long long fd, lfd;
  int nb, len;
  SOCKADDR_STORAGE ss;
  NV_ERRP;
  (void)cond; (void)cb;
  if (addr && (!addrlen || *addrlen < 16)) { *err = WSAEFAULT; return INVALID_SOCKET; }
  {
    LOCKED_SOCK(s);
    so->ev.enabled |= FD_ACCEPT;
    lfd = so->fd;
    nb = so->nonblocking;
    NV_UNLOCK();
    nv_poke();
    for (;;) {
      len = sizeof ss;
      fd = nos_accept(lfd, &ss, &len);
      if (fd != -WSAEWOULDBLOCK || nb) break;
      if ((fd = nv_wait_fd(so, lfd, NOS_IN)) < 0) break;
    }
    if (fd < 0) { *err = (INT)-fd; return INVALID_SOCKET; }
    if (addr) {
      if (*addrlen < len) { nos_close(fd); *addrlen = len; *err = WSAEFAULT; return INVALID_SOCKET; }
      memcpy(addr, &ss, (size_t)len);
      *addrlen = len;
    }
    lwsp_mutex_lock(&nv.lock);
    if (!(ns = nv_sock_alloc())) { NV_UNLOCK(); nos_close(fd); *err = WSAENOBUFS; return INVALID_SOCKET; }
    ns->fd = fd; ns->af = so->af; ns->type = so->type; ns->catalog = so->catalog;
    ns->ev.mode = so->ev.mode; ns->ev.mask = so->ev.mask; ns->ev.event = so->ev.event;
    ns->ev.hwnd = so->ev.hwnd; ns->ev.msg = so->ev.msg; ns->ev.enabled = FD_ALL_EVENTS;
    ns->nonblocking = so->nonblocking;
    ns->peer = 1;
    if (nv_new_handle(ns, err) == INVALID_SOCKET) { nv_sock_free(ns); NV_UNLOCK(); nos_close(fd); return INVALID_SOCKET; }
    NV_UNLOCK();
    nv_poke();
    return ns->h;
  }
}

int nv_send_entry(SOCKET s, LPWSABUF b, DWORD nb, LPDWORD sent, DWORD flags, const struct sockaddr *to, int tolen,
                  LPWSAOVERLAPPED ov, LPWSAOVERLAPPED_COMPLETION_ROUTINE routine, LPWSATHREADID tid, LPINT err) {
  size_t done = 0;
  long r;
  int nonblocking, evs;
  long long fd;
  NV_ERRP;
  if ((!sent && !ov) || !b) return nv_fail(err, WSAEFAULT);
  if (nb == 0) return nv_fail(err, WSAEINVAL);   /* as lwsp's runtime (docs/api.md) */
  LOCKED_SOCK(s);
#ifdef _WIN32
  if (ov) return nv_os_overlapped(so, NV_OP_SEND, b, nb, sent, NULL, flags, to, tolen, NULL, NULL, ov, routine, tid, err);
#endif
  fd = so->fd;
  nonblocking = so->nonblocking;
  if (ov) {
    so->ov_polled++;
    /* an overlapped send behind others waits its turn */
    r = so->queued[NV_OP_SEND] ? 0 : nv_try_send(so, b, nb, &done, flags, to, tolen, 1);
    if (r == 0) { int rc = nv_queue_op(so, NV_OP_SEND, b, nb, done, flags, to, tolen, NULL, NULL, ov, routine, tid, err); NV_UNLOCK(); return rc; }
    NV_UNLOCK();
    if (r < 0) { ov->Internal = ov->OffsetHigh = (DWORD)-r; return nv_fail(err, (int)-r); }
    if (sent) *sent = (DWORD)done;
    nv_notify(s, ov, routine, tid, 0, (DWORD)done, 0);
    return 0;
  }
  /* several buffers are several system calls: their tries keep the lock, so
   * that another thread's send cannot fall between them; so does a small send */
  so->busy++;
  for (;;) {
    IO_TRY(so, NV_OP_SEND, nb > 1 || b[0].len < UNLOCKED_IO, r = nv_try_send(so, b, nb, &done, flags, to, tolen, !nonblocking));
    if (r != 0 || nonblocking || so->dead) break;
    NV_UNLOCK();
    r = nv_wait_fd(so, fd, NOS_OUT);
    lwsp_mutex_lock(&nv.lock);
    if (r < 0) break;
  }
  if (so->dead && r <= 0) r = -WSAEINTR;    /* closed by another thread meanwhile */
  if (r == -WSAECONNRESET && !so->peer && so->type == SOCK_STREAM) r = -WSAENOTCONN;   /* as Winsock */
  if (r == 0) so->ev.enabled |= FD_WRITE;   /* (non-blocking) FD_WRITE comes again once it can go on */
  evs = so->ev.mode != 0;
  nv_unbusy(so);
  NV_UNLOCK();
  if (r == 0) { if (evs) nv_poke(); return nv_fail(err, WSAEWOULDBLOCK); }
  if (r < 0) return nv_fail(err, (int)-r);
  if (sent) *sent = (DWORD)done;
  return 0;
}

static int recv_entry(SOCKET s, LPWSABUF b, DWORD nb, LPDWORD got, LPDWORD flags, struct sockaddr *from, LPINT fromlen,
                      LPWSAOVERLAPPED ov, LPWSAOVERLAPPED_COMPLETION_ROUTINE routine, LPWSATHREADID tid, LPINT err) {
  long r;
  DWORD n = 0, fl;
  int nonblocking;
  long long fd;
  NV_ERRP;
  if (!flags || (!got && !ov) || !b || (from && !fromlen)) return nv_fail(err, WSAEFAULT);
  if (nb == 0) return nv_fail(err, WSAEINVAL);   /* 0 bytes would read as the peer's close */
  fl = *flags;
  LOCKED_SOCK(s);
  so->ev.enabled |= (*flags & MSG_OOB) ? FD_OOB : FD_READ;
#ifdef _WIN32
  if (ov) return nv_os_overlapped(so, NV_OP_RECV, b, nb, got, flags, *flags, NULL, 0, from, fromlen, ov, routine, tid, err);
#endif
  fd = so->fd;
  nonblocking = so->nonblocking;
  if (ov) {
    so->ov_polled++;
    r = so->queued[NV_OP_RECV] ? 0 : nv_try_recv(so, b, nb, &fl, from, fromlen, &n);
    if (r == 0) { int rc = nv_queue_op(so, NV_OP_RECV, b, nb, 0, *flags, NULL, 0, from, fromlen, ov, routine, tid, err); NV_UNLOCK(); return rc; }
    NV_UNLOCK();
  } else {
    int small = nv_total_of(b, nb) < UNLOCKED_IO;
    so->busy++;
    for (;;) {
      fl = *flags;
      IO_TRY(so, NV_OP_RECV, small, r = nv_try_recv(so, b, nb, &fl, from, fromlen, &n));
      if (r == 0 && so->ev.mode) nv_poke();   /* the worker polls for FD_READ again (its network events) */
      if (r != 0 || nonblocking || so->dead) break;
      NV_UNLOCK();
      r = nv_wait_fd(so, fd, NOS_IN);
      lwsp_mutex_lock(&nv.lock);
      if (r < 0) break;
    }
    if (so->dead && (r <= 0 || n == 0)) r = -WSAEINTR;   /* closed by another thread meanwhile */
    nv_unbusy(so);
    NV_UNLOCK();
    if (r == 0) return nv_fail(err, WSAEWOULDBLOCK);
  }
  if (got) *got = n;
  if (r < 0) {
    if (ov) { ov->Internal = ov->OffsetHigh = (DWORD)-r; ov->InternalHigh = n; }
    return nv_fail(err, (int)-r);
  }
  *flags = fl;
  if (ov) nv_notify(s, ov, routine, tid, 0, n, fl);
  return 0;
}

static int WSPAPI n_send(SOCKET s, LPWSABUF b, DWORD nb, LPDWORD sent, DWORD flags, LPWSAOVERLAPPED ov,
                         LPWSAOVERLAPPED_COMPLETION_ROUTINE r, LPWSATHREADID t, LPINT err) {
  return nv_send_entry(s, b, nb, sent, flags, NULL, 0, ov, r, t, err);
}
static int WSPAPI n_sendto(SOCKET s, LPWSABUF b, DWORD nb, LPDWORD sent, DWORD flags, const struct sockaddr *to, int tolen,
                           LPWSAOVERLAPPED ov, LPWSAOVERLAPPED_COMPLETION_ROUTINE r, LPWSATHREADID t, LPINT err) {
  return nv_send_entry(s, b, nb, sent, flags, to, tolen, ov, r, t, err);
}
static int WSPAPI n_recv(SOCKET s, LPWSABUF b, DWORD nb, LPDWORD got, LPDWORD flags, LPWSAOVERLAPPED ov,
                         LPWSAOVERLAPPED_COMPLETION_ROUTINE r, LPWSATHREADID t, LPINT err) {
  return recv_entry(s, b, nb, got, flags, NULL, NULL, ov, r, t, err);
}
static int WSPAPI n_recvfrom(SOCKET s, LPWSABUF b, DWORD nb, LPDWORD got, LPDWORD flags, struct sockaddr *from,
                             LPINT fromlen, LPWSAOVERLAPPED ov, LPWSAOVERLAPPED_COMPLETION_ROUTINE r, LPWSATHREADID t,
                             LPINT err) {
  return recv_entry(s, b, nb, got, flags, from, fromlen, ov, r, t, err);
}

static int WSPAPI n_shutdown(SOCKET s, int how, LPINT err) {
  int r;
  NV_ERRP;
  if (how < 0 || how > 2) return nv_fail(err, WSAEINVAL);
  LOCKED_SOCK(s);
  r = nos_shutdown(so->fd, how);
  NV_UNLOCK();
  return r < 0 ? nv_fail(err, -r) : 0;
}

static int name_entry(SOCKET s, int peer, struct sockaddr *name, LPINT len, LPINT err) {
  int r;
  NV_ERRP;
  if (!name || !len) return nv_fail(err, WSAEFAULT);
  LOCKED_SOCK(s);
  r = nos_name(so->fd, peer, name, len);
  NV_UNLOCK();
  return r < 0 ? nv_fail(err, -r) : 0;
}
static int WSPAPI n_getsockname(SOCKET s, struct sockaddr *n, LPINT l, LPINT e) { return name_entry(s, 0, n, l, e); }
static int WSPAPI n_getpeername(SOCKET s, struct sockaddr *n, LPINT l, LPINT e) { return name_entry(s, 1, n, l, e); }

static int WSPAPI n_getsockopt(SOCKET s, int level, int name, char *val, LPINT len, LPINT err) {
  int r;
  NV_ERRP;
  if (!val || !len) return nv_fail(err, WSAEFAULT);
  LOCKED_SOCK(s);
  if (level == SOL_SOCKET && name == SO_PROTOCOL_INFOW) {
    r = *len < (int)sizeof(WSAPROTOCOL_INFOW) ? -WSAEFAULT : 0;
    if (!r) { memcpy(val, &nv.info, sizeof nv.info); *len = sizeof nv.info; }
  } else {
    r = nos_getsockopt(so->fd, level, name, val, len);
  }
  NV_UNLOCK();
  return r < 0 ? nv_fail(err, -r) : 0;
}

static int WSPAPI n_setsockopt(SOCKET s, int level, int name, const char *val, int len, LPINT err) {
  int r;
  NV_ERRP;
  if (len < 0 || (len && !val)) return nv_fail(err, WSAEFAULT);
  LOCKED_SOCK(s);
  if (!nv_ext_setsockopt(so, level, name, val, len, &r)) r = nos_setsockopt(so->fd, level, name, val, len);
  NV_UNLOCK();
  return r < 0 ? nv_fail(err, -r) : 0;
}

static int WSPAPI n_ioctl(SOCKET s, DWORD code, LPVOID in, DWORD cbin, LPVOID out, DWORD cbout, LPDWORD ret,
                          LPWSAOVERLAPPED ov, LPWSAOVERLAPPED_COMPLETION_ROUTINE routine, LPWSATHREADID tid, LPINT err) {
  int r = 0;
  uint32_t v = 0;
  NV_ERRP;
  if ((!ret && !ov) || (cbin && !in) || (cbout && !out)) return nv_fail(err, WSAEFAULT);
  LOCKED_SOCK(s);
  if (code == FIONBIO) {
    if (cbin < 4) r = -WSAEFAULT;
    else { memcpy(&v, in, 4); if (!v && so->ev.mode) r = -WSAEINVAL; else so->nonblocking = v != 0; }
    if (ret) *ret = 0;
  } else if (code == FIONREAD) {
    unsigned long n = 0;
    if (cbout < 4) r = -WSAEFAULT;
    else if ((r = nos_readable_bytes(so->fd, &n)) == 0) { v = (uint32_t)n; memcpy(out, &v, 4); if (ret) *ret = 4; }
  } else if (code == SIOCATMARK) {
    if (cbout < 4) r = -WSAEFAULT;
    else { v = nos_atmark(so->fd) != 0; memcpy(out, &v, 4); if (ret) *ret = 4; }
  } else if (code == SIO_LWSP_NATIVE_ENGINE) {
    /* which engine serves this socket's overlapped I/O, and how many operations each took */
#ifdef _WIN32
    uint32_t info[3] = {LWSP_ENGINE_OS_OVERLAPPED, so->ov_os, so->ov_polled};
#else
    uint32_t info[3] = {LWSP_ENGINE_POLLED, so->ov_os, so->ov_polled};
#endif
    if (cbout < sizeof info) r = -WSAEFAULT;
    else { memcpy(out, info, sizeof info); if (ret) *ret = sizeof info; }
  } else if (!nv_ext_ioctl(so, code, in, cbin, out, cbout, ret, &r)) {
    r = -WSAEINVAL;
  }
  NV_UNLOCK();
  if (r < 0) return nv_fail(err, -r);
  if (ov) nv_notify(s, ov, routine, tid, 0, ret ? *ret : 0, 0);
  return 0;
}

static int select_mode(nv_sock *so, int mode, WSAEVENT ev, HWND hwnd, UINT msg, LONG mask, LPINT err) {
  int r = lwsp_netev_select(&so->ev, mode, ev, hwnd, msg, mask);
  if (r) return nv_fail(err, r);
  so->nonblocking = 1;
  nv_poke();
  return 0;
}
static int WSPAPI n_eventselect(SOCKET s, WSAEVENT ev, LONG mask, LPINT err) {
  int r;
  NV_ERRP;
  LOCKED_SOCK(s);
  r = select_mode(so, 1, ev, NULL, 0, mask, err);
  NV_UNLOCK();
  return r;
}
static int WSPAPI n_asyncselect(SOCKET s, HWND hwnd, unsigned int msg, LONG mask, LPINT err) {
  int r;
  NV_ERRP;
  LOCKED_SOCK(s);
  r = select_mode(so, 2, NULL, hwnd, msg, mask, err);
  NV_UNLOCK();
  return r;
}
static int WSPAPI n_enumnetworkevents(SOCKET s, WSAEVENT ev, LPWSANETWORKEVENTS ne, LPINT err) {
  int r;
  NV_ERRP;
  if (!ne) return nv_fail(err, WSAEFAULT);
  LOCKED_SOCK(s);
  r = lwsp_netev_enum(&so->ev, &nv.up, ev, ne);
  NV_UNLOCK();
  return r ? nv_fail(err, r) : 0;
}

/* One poll entry per OS socket, with the events of every set it is in: a
 * socket in two sets (readable? writable?) listed twice was answered in one
 * entry only by Winsock's WSAPoll under Wine (c readable, yet reported only
 * as writable when also in the write set). */
static int WSPAPI n_select(int nfds, wsp_fd_set *r, wsp_fd_set *w, wsp_fd_set *x, wsp_timeval *tv, LPINT err) {
  nos_pollfd p[3 * WSP_FD_SETSIZE];
  int at[3][WSP_FD_SETSIZE];   /* each set's sockets' poll entries */
  wsp_fd_set *sets[3] = {r, w, x};
  int n = 0, ready, ms;
  NV_ERRP;
  (void)nfds;
  if (!r && !w && !x) return nv_fail(err, WSAEINVAL);
  if (tv && (tv->tv_sec < 0 || tv->tv_usec < 0)) return nv_fail(err, WSAEINVAL);
  ms = tv ? (int)(tv->tv_sec * 1000 + tv->tv_usec / 1000) : -1;
  lwsp_mutex_lock(&nv.lock);
  for (int k = 0; k < 3; k++) {
    if (!sets[k]) continue;
    if (sets[k]->fd_count > WSP_FD_SETSIZE) { NV_UNLOCK(); return nv_fail(err, WSAEINVAL); }
    for (unsigned i = 0; i < sets[k]->fd_count; i++) {
      nv_sock *so = nv_find(sets[k]->fd_array[i]);
      int j = 0;
      if (!so) { NV_UNLOCK(); return nv_fail(err, WSAENOTSOCK); }
      while (j < n && p[j].fd != so->fd) j++;
      if (j == n) { p[n].fd = so->fd; p[n].events = 0; n++; }
      p[j].events |= k == 1 ? NOS_OUT : NOS_IN;
      at[k][i] = j;
    }
  }
  NV_UNLOCK();
  ready = nos_poll(p, n, ms);
  if (ready < 0) return nv_fail(err, -ready);
  ready = 0;
  for (int k = 0; k < 3; k++) {
    wsp_fd_set out;
    if (!sets[k]) continue;
    out.fd_count = 0;
    for (unsigned i = 0; i < sets[k]->fd_count; i++) {
      short want = k == 1 ? NOS_OUT : k == 0 ? (NOS_IN | NOS_HUP | NOS_ERR) : NOS_ERR;
      if (p[at[k][i]].revents & want) out.fd_array[out.fd_count++] = sets[k]->fd_array[i];
    }
    ready += (int)out.fd_count;
    *sets[k] = out;
  }
  return ready;
}

static BOOL WSPAPI n_getoverlappedresult(SOCKET s, LPWSAOVERLAPPED ov, LPDWORD bytes, BOOL wait, LPDWORD flags,
                                         LPINT err) {
  NV_ERRP;
  if (!ov || !bytes || !flags) { *err = WSAEFAULT; return FALSE; }
  {
    nv_sock *so;
    lwsp_mutex_lock(&nv.lock);
    so = nv.startups ? nv_find(s) : NULL;
    NV_UNLOCK();
    if (!so) { *err = WSAENOTSOCK; return FALSE; }
  }
  while (wait && ov->Internal == WSS_OPERATION_IN_PROGRESS) {
    nos_pollfd none = {nv.pipe[0], 0, 0};
    nos_poll(&none, 1, 1);
  }
  if (ov->Internal == WSS_OPERATION_IN_PROGRESS) { *err = WSA_IO_INCOMPLETE; return FALSE; }
  *bytes = (DWORD)ov->InternalHigh;
  *flags = ov->Offset;
  if (ov->OffsetHigh) { *err = (INT)ov->OffsetHigh; return FALSE; }
  return TRUE;
}

static int WSPAPI n_cancelblockingcall(LPINT err) {
  NV_ERRP;
  if (!nv_cancel_blocking()) return nv_fail(err, WSAEINVAL);
  return 0;
}

static INT WSPAPI n_addresstostring(LPSOCKADDR sa, DWORD salen, LPWSAPROTOCOL_INFOW pi, LPWSTR out, LPDWORD outlen,
                                    LPINT err) {
  char text[100];
  WCHAR w[100];
  size_t k;
  NV_ERRP;
  (void)pi;
  if (!sa || !outlen) return nv_fail(err, WSAEFAULT);
  if (!lwsp_format_address(sa, (int)salen, text, sizeof text)) return nv_fail(err, WSAEINVAL);
  k = lwsp_utf8_to_utf16(text, strlen(text), w, 99);
  if (!out || *outlen < k + 1) { *outlen = (DWORD)k + 1; return nv_fail(err, WSAEFAULT); }
  memcpy(out, w, k * sizeof(WCHAR));
  out[k] = 0;
  *outlen = (DWORD)k + 1;
  return 0;
}

static INT WSPAPI n_stringtoaddress(LPWSTR str, INT af, LPWSAPROTOCOL_INFOW pi, LPSOCKADDR addr, LPINT len, LPINT err) {
  char text[200];
  SOCKADDR_STORAGE ss;
  int n;
  NV_ERRP;
  (void)pi;
  if (!str || !len) return nv_fail(err, WSAEFAULT);
  text[lwsp_utf16_to_utf8(str, lwsp_wcslen(str, 100), text, sizeof text - 1)] = 0;
  if (!lwsp_parse_address(text, af, &ss, &n)) return nv_fail(err, WSAEINVAL);
  if (!addr || *len < n) { *len = n; return nv_fail(err, WSAEFAULT); }
  memcpy(addr, &ss, (size_t)n);
  *len = n;
  return 0;
}


/* ---- WSPDuplicateSocket: another descriptor for the same OS socket --------------------
 * Within this process only (another pid: WSAEINVAL).  WSPDuplicateSocket
 * duplicates the OS socket at once (dup(); the two share the socket's state
 * and data) and keeps it under a reference that dwProviderReserved carries;
 * WSPSocket given that info takes it (once) into a descriptor of its own.
 * Closing one descriptor closes its own OS handle only.  A reference never
 * used keeps its OS handle open, as a duplicate handed to another process
 * would. */
typedef struct { DWORD ref; long long fd; int af, type, listening, peer; } ndup;
static ndup dups[64];
static DWORD dup_next = 1;

static int WSPAPI n_duplicatesocket(SOCKET s, DWORD pid, LPWSAPROTOCOL_INFOW pi, LPINT err) {
  long long fd;
  ndup *d = NULL;
  NV_ERRP;
  if (!pi) return nv_fail(err, WSAEFAULT);
  LOCKED_SOCK(s);
  if (pid != (DWORD)lwsp_process_id()) { NV_UNLOCK(); return nv_fail(err, WSAEINVAL); }
  for (size_t i = 0; i < sizeof dups / sizeof dups[0] && !d; i++) if (!dups[i].ref) d = &dups[i];
  if (!d) { NV_UNLOCK(); return nv_fail(err, WSAEMFILE); }
  if ((fd = nos_dup(so->fd)) < 0) { NV_UNLOCK(); return nv_fail(err, (int)-fd); }
  d->ref = dup_next;
  dup_next = dup_next < 0x7fffffff ? dup_next + 1 : 1;
  d->fd = fd; d->af = so->af; d->type = so->type; d->listening = so->listening; d->peer = so->peer;
  so->shared = 1;
  *pi = nv.info;
  pi->dwCatalogEntryId = so->catalog;
  pi->iAddressFamily = so->af;
  pi->iSocketType = so->type;
  pi->iProtocol = so->type == SOCK_STREAM ? IPPROTO_TCP : IPPROTO_UDP;
  pi->dwProviderReserved = d->ref;
  NV_UNLOCK();
  return 0;
}

/* The last WSPCleanup's half (under the lock): references never used give their OS handles back. */
void nv_dup_forget_all(void) {
  for (size_t i = 0; i < sizeof dups / sizeof dups[0]; i++)
    if (dups[i].ref) { nos_close(dups[i].fd); dups[i].ref = 0; }
}

/* WSPSocket's half: the descriptor for a reference (WSAEINVAL if unknown or used). */
static SOCKET dup_open(LPWSAPROTOCOL_INFOW pi, LPINT err) {
  ndup *d = NULL;
  nv_sock *so;
  lwsp_mutex_lock(&nv.lock);
  for (size_t i = 0; i < sizeof dups / sizeof dups[0] && !d; i++) if (dups[i].ref && dups[i].ref == pi->dwProviderReserved) d = &dups[i];
  if (!d) { NV_UNLOCK(); *err = WSAEINVAL; return INVALID_SOCKET; }
  if (!(so = nv_sock_alloc())) { NV_UNLOCK(); *err = WSAENOBUFS; return INVALID_SOCKET; }
  so->fd = d->fd; so->af = d->af; so->type = d->type; so->catalog = pi->dwCatalogEntryId;
  so->listening = d->listening; so->peer = d->peer; so->shared = 1;
  if (nv_new_handle(so, err) == INVALID_SOCKET) { nv_sock_free(so); NV_UNLOCK(); return INVALID_SOCKET; }
  d->ref = 0;
  NV_UNLOCK();
  return so->h;
}
static BOOL WSPAPI n_getqosbyname(SOCKET s, LPWSABUF name, LPQOS q, LPINT err) {
  NV_ERRP; (void)s; (void)name; (void)q;
  *err = WSAEOPNOTSUPP;
  return FALSE;
}
static SOCKET WSPAPI n_joinleaf(SOCKET s, const struct sockaddr *a, int l, LPWSABUF cd, LPWSABUF ce, LPQOS sq, LPQOS gq,
                                DWORD f, LPINT err) {
  NV_ERRP; (void)s; (void)a; (void)l; (void)cd; (void)ce; (void)sq; (void)gq; (void)f;
  *err = WSAEOPNOTSUPP;
  return INVALID_SOCKET;
}
static int WSPAPI n_recvdisconnect(SOCKET s, LPWSABUF d, LPINT err) { NV_ERRP; (void)s; (void)d; return nv_fail(err, WSAEOPNOTSUPP); }
static int WSPAPI n_senddisconnect(SOCKET s, LPWSABUF d, LPINT err) { NV_ERRP; (void)s; (void)d; return nv_fail(err, WSAEOPNOTSUPP); }

const WSPPROC_TABLE nv_procs = {
  n_accept, n_addresstostring, n_asyncselect, n_bind, n_cancelblockingcall, nv_cleanup, n_closesocket,
  n_connect, n_duplicatesocket, n_enumnetworkevents, n_eventselect, n_getoverlappedresult, n_getpeername,
  n_getsockname, n_getsockopt, n_getqosbyname, n_ioctl, n_joinleaf, n_listen, n_recv, n_recvdisconnect,
  n_recvfrom, n_select, n_send, n_senddisconnect, n_sendto, n_setsockopt, n_shutdown, n_socket,
  n_stringtoaddress};

