/*
 * native_ext.c - the native base's extension functions (AcceptEx,
 * GetAcceptExSockaddrs, ConnectEx, DisconnectEx, TransmitFile,
 * TransmitPackets, WSARecvMsg, WSASendMsg), answered to
 * SIO_GET_EXTENSION_FUNCTION_POINTER, built from the OS calls of
 * native_os.c and native_os_ext.c.  They share native.c's sockets, its lock
 * and its worker (native.h); this file's own helpers are static, named nx_.
 *
 * An overlapped call that is not refused at once always reports
 * WSA_IO_PENDING and completes through the worker, as a queued send or
 * receive does: the worker polls what the operation waits for
 * (nv_ext_events) and runs its next step (nv_ext_step) until it is done.  The
 * same steps run a call without an overlapped (TransmitFile, DisconnectEx,
 * WSARecvMsg) on the caller's thread, blocking as its socket's mode says.
 * The functions take no lpErrno: they report through the host's
 * WSASetLastError (nx_error).
 *
 * AcceptEx's output buffer: the data received first (dwReceiveDataLength
 * bytes at most), then the local address block, then the remote one; a
 * block is an INT length followed by the Windows sockaddr, and
 * GetAcceptExSockaddrs reads them back.
 */
#include "native.h"
#include "spi_ext.h"
#include "native_os_ext.h"

enum { NX_ACCEPT, NX_CONNECT, NX_TRANSMIT, NX_RECVMSG };
typedef struct nseg { const char *buf; long long file; unsigned long long off; DWORD len; int whole; } nseg;
struct nv_ext {
  int fn, phase;
  SOCKET as;                    /* AcceptEx: the accept socket */
  char *out;                    /* AcceptEx: the caller's buffer; ConnectEx: the data to send */
  DWORD rcvlen, loclen, remlen, sendlen;
  size_t done;                  /* bytes sent (ConnectEx, the transmits) */
  nseg *segs;                   /* the transmits: what to send, in order */
  DWORD nsegs, cur;
  unsigned long long segdone;   /* bytes of segs[cur] sent */
  char chunk[16384];            /* a file's bytes read but not all sent yet */
  size_t chunk_len, chunk_off;
  DWORD per_send, tflags;
  LPWSAMSG msg;                 /* WSARecvMsg */
  int opened_thread;            /* the routine's thread id came from WPUOpenCurrentThread */
};

/* ---- errors: WSASetLastError of the module that gave the upcall table ------------ */
#ifdef _WIN32
static void nx_error(int e) { WSASetLastError(e); }
#else
static void (*nx_set_last)(int);
static void nx_error(int e) {
  static int looked;
  if (!looked) {
    char why[200];
    void (*f)(void) = lwsp_host_sym(&nv.up, "WSASetLastError", why, sizeof why);
    memcpy(&nx_set_last, &f, sizeof f);
    looked = 1;
    if (!nx_set_last) lwsp_log(NV_WHO, "the host offers no WSASetLastError: %s", why);
  }
  if (nx_set_last) nx_set_last(e);
}
#endif
static BOOL nx_fail(int e) { nx_error(e); return FALSE; }

/* ---- the steps -------------------------------------------------------------------- */
static void nx_put_addr(char *block, DWORD blocklen, const void *addr, int len) {
  INT l = len;
  memset(block, 0, blocklen);
  memcpy(block, &l, sizeof l);
  memcpy(block + sizeof l, addr, (size_t)len);
}

/* What the operation waits for: events, and the fd they are on. */
short nv_ext_events(nv_op *op, long long *fd) {
  nv_ext *x = op->x;
  *fd = op->so->fd;
  if (x->fn == NX_ACCEPT) {
    nv_sock *as;
    if (x->phase == 0) return NOS_IN;
    if ((as = nv_find(x->as)) != NULL) *fd = as->fd;
    return NOS_IN;
  }
  if (x->fn == NX_RECVMSG) return NOS_IN;
  return NOS_OUT;
}

/* One send of what is left of buf: 1 all of it sent, 0 to wait, -error. */
static long nx_send_all(nv_sock *so, const char *buf, size_t len, size_t *done) {
  while (*done < len) {
    long n = nos_send(so->fd, buf + *done, len - *done, 0, NULL, 0);
    if (n == -WSAEWOULDBLOCK) return 0;
    if (n < 0) return n;
    *done += (size_t)n;
  }
  return 1;
}

static long nx_disconnect(nv_sock *so, DWORD flags);

/* The transmits: the segments in order, a file read a chunk at a time. */
static long nx_transmit(nv_op *op) {
  nv_ext *x = op->x;
  nv_sock *so = op->so;
  while (x->cur < x->nsegs) {
    nseg *g = &x->segs[x->cur];
    if (!g->file) {
      size_t d = (size_t)x->segdone;
      long r = nx_send_all(so, g->buf, g->len, &d);
      x->done += d - (size_t)x->segdone;
      x->segdone = d;
      if (r <= 0) return r;
    } else {
      for (;;) {
        if (x->chunk_off == x->chunk_len) {
          size_t want = sizeof x->chunk;
          long n;
          if (x->per_send && x->per_send < want) want = x->per_send;
          if (!g->whole && g->len - x->segdone < want) want = (size_t)(g->len - x->segdone);
          if (want == 0) break;
          n = nos_pread(g->file, x->chunk, want, g->off + x->segdone);
          if (n < 0) return n;
          if (n == 0) break;            /* the file's end */
          x->chunk_len = (size_t)n;
          x->chunk_off = 0;
        }
        {
          size_t d = x->chunk_off;
          long r = nx_send_all(so, x->chunk, x->chunk_len, &d);
          x->done += d - x->chunk_off;
          x->segdone += d - x->chunk_off;
          x->chunk_off = d;
          if (r <= 0) return r;
        }
      }
    }
    x->cur++;
    x->segdone = 0;
    x->chunk_len = x->chunk_off = 0;
  }
  if (x->tflags & TF_DISCONNECT) {
    long r = nx_disconnect(so, x->tflags & TF_REUSE_SOCKET);
    if (r < 0) return r;
  }
  return 1;
}

/* WSARecvMsg: the datagram into the buffers, the sender, the destination as
 * IP_PKTINFO/IPV6_PKTINFO control data. */
static long nx_recvmsg(nv_sock *so, LPWSAMSG m, DWORD *got) {
  size_t total = nv_total_of(m->lpBuffers, m->dwBufferCount), o = 0, k;
  char stack[2048], *tmp = stack;
  nos_pktinfo pi;
  int fl = m->name ? m->namelen : 0;
  long n;
  DWORD flags = 0, ctl = 0;
  if (total > sizeof stack && !(tmp = malloc(total))) return -WSAENOBUFS;
  n = nos_recvmsg(so->fd, tmp, total, m->name, m->name ? &fl : NULL, &pi);
  if (n >= 0) {
    k = (size_t)n < total ? (size_t)n : total;
    for (DWORD i = 0; i < m->dwBufferCount && o < k; i++) {
      size_t c = m->lpBuffers[i].len < k - o ? m->lpBuffers[i].len : k - o;
      memcpy(m->lpBuffers[i].buf, tmp + o, c);
      o += c;
    }
  }
  if (tmp != stack) free(tmp);
  if (n == -WSAEWOULDBLOCK) return 0;
  if (n < 0) return n;
  if (m->name) m->namelen = fl;
  if (pi.af) {
    size_t dlen = pi.af == AF_INET ? sizeof(IN_PKTINFO) : sizeof(IN6_PKTINFO);
    if (m->Control.buf && m->Control.len >= WSA_CMSG_SPACE(dlen)) {
      WSACMSGHDR h;
      memset(m->Control.buf, 0, WSA_CMSG_SPACE(dlen));
      h.cmsg_len = WSA_CMSG_LEN(dlen);
      h.cmsg_level = pi.af == AF_INET ? IPPROTO_IP : IPPROTO_IPV6;
      h.cmsg_type = pi.af == AF_INET ? IP_PKTINFO : IPV6_PKTINFO;
      memcpy(m->Control.buf, &h, sizeof h);
      if (pi.af == AF_INET) {
        IN_PKTINFO p;
        memcpy(&p.ipi_addr, pi.addr, 4);
        p.ipi_ifindex = pi.ifindex;
        memcpy(WSA_CMSG_DATA(m->Control.buf), &p, sizeof p);
      } else {
        IN6_PKTINFO p;
        memcpy(&p.ipi6_addr, pi.addr, 16);
        p.ipi6_ifindex = pi.ifindex;
        memcpy(WSA_CMSG_DATA(m->Control.buf), &p, sizeof p);
      }
      ctl = (DWORD)WSA_CMSG_SPACE(dlen);
    } else flags |= MSG_CTRUNC;
  }
  m->Control.len = ctl;
  if ((size_t)n > total) { flags |= MSG_TRUNC; m->dwFlags = flags; *got = (DWORD)total; return -WSAEMSGSIZE; }
  m->dwFlags = flags;
  *got = (DWORD)n;
  return 1;
}

/* One step of an operation (under the lock): 1 done (*bytes), 0 to wait, -error. */
long nv_ext_step(nv_op *op, DWORD *bytes, DWORD *flags) {
  nv_ext *x = op->x;
  nv_sock *so = op->so;
  long r;
  *flags = 0;
  switch (x->fn) {
  case NX_ACCEPT: {
    nv_sock *as = nv_find(x->as);
    if (!as) return -WSA_OPERATION_ABORTED;   /* the accept socket was closed meanwhile */
    if (x->phase == 0) {
      SOCKADDR_STORAGE rem, loc;
      int rl = sizeof rem, ll = sizeof loc;
      long long fd = nos_accept(so->fd, &rem, &rl);
      if (fd == -WSAEWOULDBLOCK) return 0;
      if (fd < 0) return (long)fd;
      if (nos_name(fd, 0, &loc, &ll) < 0) ll = 0;
      nos_close(as->fd);
      as->fd = fd;
      as->peer = 1;
      as->connecting = as->listening = 0;
      as->closed_seen = 0;
      nx_put_addr(x->out + x->rcvlen, x->loclen, &loc, ll);
      nx_put_addr(x->out + x->rcvlen + x->loclen, x->remlen, &rem, rl);
      x->phase = 1;
      if (!x->rcvlen) { *bytes = 0; return 1; }
    }
    r = nos_recv(as->fd, x->out, x->rcvlen, 0, NULL, NULL, 0);
    if (r == -WSAEWOULDBLOCK) return 0;
    if (r < 0) return r;
    *bytes = (DWORD)r;
    return 1;
  }
  case NX_CONNECT:
    if (x->phase == 0) {
      int e = nos_connect_result(so->fd), pl = sizeof x->chunk;
      if (e < 0) return e;
      if (nos_name(so->fd, 1, x->chunk, &pl) < 0) return 0;   /* still under way */
      x->phase = 1;
    }
    r = nx_send_all(so, x->out, x->sendlen, &x->done);
    if (r <= 0) return r;
    *bytes = (DWORD)x->done;
    return 1;
  case NX_TRANSMIT:
    r = nx_transmit(op);
    if (r <= 0) return r;
    *bytes = (DWORD)x->done;
    return 1;
  default:
    r = nx_recvmsg(so, x->msg, bytes);
    if (r == -WSAEMSGSIZE) *flags = x->msg->dwFlags;
    return r;
  }
}

void nv_ext_free(nv_op *op) {
  nv_ext *x = op->x;
  if (x->opened_thread) { INT e = 0; nv.up.lpWPUCloseThread(&op->tid, &e); }
  free(x->segs);
  free(x);
  op->x = NULL;
}

/* A pending operation for an overlapped call: queued for the worker;
 * WSA_IO_PENDING is what the caller reports. */
static void nx_queue(nv_sock *so, int kind, nv_ext *x, LPWSAOVERLAPPED ov, LPWSAOVERLAPPED_COMPLETION_ROUTINE routine,
                     LPWSATHREADID tid, int opened, int *failed) {
  nv_op *op = nv_op_new(so, kind, ov, routine, tid);
  *failed = !op;
  if (!op) { free(x->segs); free(x); return; }
  x->opened_thread = opened;
  op->x = x;
  nv_op_post(op);
}

/* Runs x on the caller's thread (under the lock, which is released while it
 * waits): 1 done, -error. */
static long nx_run(nv_sock *so, nv_ext *x, DWORD *bytes, DWORD *flags) {
  nv_op op;
  long r;
  long long fd;
  memset(&op, 0, sizeof op);
  op.so = so; op.gen = so->gen; op.x = x;
  so->busy++;
  for (;;) {
    short ev;
    r = nv_ext_step(&op, bytes, flags);
    if (r != 0) break;
    if (so->nonblocking) { r = -WSAEWOULDBLOCK; break; }
    if (so->dead) { r = -WSAEINTR; break; }
    ev = nv_ext_events(&op, &fd);
    NV_UNLOCK();
    r = nv_wait_fd(so, fd, ev);
    lwsp_mutex_lock(&nv.lock);
    if (r < 0) break;
  }
  nv_unbusy(so);
  return r;
}

/* Either queues x (ov) or runs it now; the BOOL an extension function returns. */
static BOOL nx_start(nv_sock *so, int kind, nv_ext *x, LPWSAOVERLAPPED ov, LPDWORD bytes) {
  int failed;
  DWORD n = 0, fl = 0;
  long r;
  if (ov) {
    nx_queue(so, kind, x, ov, NULL, NULL, 0, &failed);
    NV_UNLOCK();
    return nx_fail(failed ? WSAENOBUFS : WSA_IO_PENDING);
  }
  r = nx_run(so, x, &n, &fl);
  NV_UNLOCK();
  free(x->segs);
  free(x);
  if (bytes) *bytes = n;
  return r < 0 ? nx_fail((int)-r) : TRUE;
}

#define NX_SOCK(s) nv_sock *so; lwsp_mutex_lock(&nv.lock); \
  if (!nv.startups || !(so = nv_find(s))) { NV_UNLOCK(); return nx_fail(nv.startups ? WSAENOTSOCK : WSANOTINITIALISED); }
#define NX_NEW(x) nv_ext *x = calloc(1, sizeof *x); if (!x) return nx_fail(WSAENOBUFS)

/* ---- the functions ------------------------------------------------------------------ */
static BOOL WSAAPI nx_acceptex(SOCKET ls, SOCKET s, PVOID out, DWORD rcvlen, DWORD loclen, DWORD remlen, LPDWORD got,
                               LPOVERLAPPED ov) {
  nv_sock *as;
  if (!ov) return nx_fail(WSAEINVAL);
  if (!out) return nx_fail(WSAEFAULT);
  if (got) *got = 0;
  NX_SOCK(ls);
  if (!so->listening) { NV_UNLOCK(); return nx_fail(WSAEINVAL); }
  /* each block: 16 bytes more than the family's longest address */
  if (loclen < (so->af == AF_INET6 ? 28u : 16u) + 16 || remlen < (so->af == AF_INET6 ? 28u : 16u) + 16) {
    NV_UNLOCK();
    return nx_fail(WSAEFAULT);
  }
  if (!(as = nv_find(s))) { NV_UNLOCK(); return nx_fail(WSAENOTSOCK); }
  if (as == so || as->peer || as->type != SOCK_STREAM) { NV_UNLOCK(); return nx_fail(WSAEINVAL); }
  {
    NX_NEW(x);
    x->fn = NX_ACCEPT; x->as = s; x->out = out; x->rcvlen = rcvlen; x->loclen = loclen; x->remlen = remlen;
    return nx_start(so, NV_OP_RECV, x, ov, NULL);
  }
}

static VOID WSAAPI nx_getacceptexsockaddrs(PVOID out, DWORD rcvlen, DWORD loclen, DWORD remlen, struct sockaddr **loc,
                                           LPINT loclenp, struct sockaddr **rem, LPINT remlenp) {
  char *b = out;
  INT l;
  if (!b) return;
  memcpy(&l, b + rcvlen, sizeof l);
  if (loc) *loc = (struct sockaddr *)(b + rcvlen + sizeof l);
  if (loclenp) *loclenp = l >= 0 && (DWORD)l + sizeof l <= loclen ? l : 0;
  memcpy(&l, b + rcvlen + loclen, sizeof l);
  if (rem) *rem = (struct sockaddr *)(b + rcvlen + loclen + sizeof l);
  if (remlenp) *remlenp = l >= 0 && (DWORD)l + sizeof l <= remlen ? l : 0;
}

static BOOL WSAAPI nx_connectex(SOCKET s, const struct sockaddr *name, int namelen, PVOID data, DWORD len,
                                LPDWORD sent, LPOVERLAPPED ov) {
  SOCKADDR_STORAGE me;
  int ml = sizeof me, r;
  if (!ov) return nx_fail(WSAEINVAL);
  /* a name shorter than its family's address is the caller's fault (Winsock's own took it for an address) */
  if (!name || namelen < 2 || namelen < (name->sa_family == AF_INET6 ? 28 : 16) || (len && !data))
    return nx_fail(WSAEFAULT);
  if (sent) *sent = 0;
  NX_SOCK(s);
  if (so->type != SOCK_STREAM || so->listening) { NV_UNLOCK(); return nx_fail(WSAEINVAL); }
  if (so->peer) { NV_UNLOCK(); return nx_fail(WSAEISCONN); }
  if (so->ext_reused) {   /* a socket DisconnectEx made ready for reuse keeps its bound state */
    SOCKADDR_STORAGE any;
    memset(&any, 0, sizeof any);
    any.ss_family = (short)so->af;
    nos_bind(so->fd, &any, so->af == AF_INET6 ? 28 : 16);
    so->ext_reused = 0;
  }
  /* an unbound socket: its name is the wildcard address with port 0 */
  if (nos_name(so->fd, 0, &me, &ml) < 0 || ((struct sockaddr_in *)&me)->sin_port == 0) {
    NV_UNLOCK();
    return nx_fail(WSAEINVAL);
  }
  r = nos_connect(so->fd, name, namelen);
  if (r < 0 && r != -WSAEWOULDBLOCK) { NV_UNLOCK(); return nx_fail(-r); }
  so->peer = 1;
  {
    NX_NEW(x);
    x->fn = NX_CONNECT; x->out = data; x->sendlen = len;
    return nx_start(so, NV_OP_SEND, x, ov, sent);
  }
}

/* Shuts s down for sending; with reuse, a fresh OS socket takes its place. */
static long nx_disconnect(nv_sock *so, DWORD reuse) {
  nos_shutdown(so->fd, SD_SEND);
  if (reuse) {
    long long fd = nos_socket(so->af, so->type, so->type == SOCK_STREAM ? IPPROTO_TCP : IPPROTO_UDP);
    if (fd < 0) return (long)fd;
    nos_close(so->fd);
    so->fd = fd;
    so->peer = so->connecting = so->listening = so->closed_seen = 0;
    so->ext_reused = 1;
  }
  return 0;
}

static BOOL WSAAPI nx_disconnectex(SOCKET s, LPOVERLAPPED ov, DWORD flags, DWORD reserved) {
  long r;
  if (reserved || (flags & ~(DWORD)TF_REUSE_SOCKET)) return nx_fail(WSAEINVAL);
  NX_SOCK(s);
  if (so->type != SOCK_STREAM) { NV_UNLOCK(); return nx_fail(WSAEOPNOTSUPP); }
  if (!so->peer) { NV_UNLOCK(); return nx_fail(WSAENOTCONN); }
  r = nx_disconnect(so, flags & TF_REUSE_SOCKET);
  NV_UNLOCK();
  if (r < 0) return nx_fail((int)-r);
  if (ov) {
    nv_op *op;
    lwsp_mutex_lock(&nv.lock);
    if (!(so = nv_find(s)) || !(op = nv_op_new(so, NV_OP_SEND, ov, NULL, NULL))) { NV_UNLOCK(); return nx_fail(WSAENOBUFS); }
    NV_UNLOCK();
    nv_op_finish(op, 0, 0, 0);
    return nx_fail(WSA_IO_PENDING);
  }
  return TRUE;
}

static BOOL transmit(SOCKET s, nseg *segs, DWORD nsegs, DWORD per_send, LPOVERLAPPED ov, DWORD flags) {
  if (flags & ~(DWORD)(TF_DISCONNECT | TF_REUSE_SOCKET | TF_WRITE_BEHIND | TF_USE_SYSTEM_THREAD | TF_USE_KERNEL_APC)) {
    free(segs);
    return nx_fail(WSAEINVAL);
  }
  if ((flags & TF_REUSE_SOCKET) && !(flags & TF_DISCONNECT)) { free(segs); return nx_fail(WSAEINVAL); }
  {
    nv_sock *so;
    nv_ext *x;
    lwsp_mutex_lock(&nv.lock);
    if (!nv.startups || !(so = nv_find(s))) { NV_UNLOCK(); free(segs); return nx_fail(nv.startups ? WSAENOTSOCK : WSANOTINITIALISED); }
    if (so->type != SOCK_STREAM) { NV_UNLOCK(); free(segs); return nx_fail(WSAENOTCONN); }
    if (!so->peer) { NV_UNLOCK(); free(segs); return nx_fail(WSAENOTCONN); }
    if (!(x = calloc(1, sizeof *x))) { NV_UNLOCK(); free(segs); return nx_fail(WSAENOBUFS); }
    x->fn = NX_TRANSMIT; x->segs = segs; x->nsegs = nsegs; x->per_send = per_send; x->tflags = flags;
    return nx_start(so, NV_OP_SEND, x, ov, NULL);
  }
}

static BOOL WSAAPI nx_transmitfile(SOCKET s, HANDLE file, DWORD len, DWORD per_send, LPOVERLAPPED ov,
                                   LPTRANSMIT_FILE_BUFFERS tb, DWORD flags) {
  nseg *g = calloc(3, sizeof *g);
  DWORD n = 0;
  if (!g) return nx_fail(WSAENOBUFS);
  if (tb && tb->Head && tb->HeadLength) { g[n].buf = tb->Head; g[n++].len = tb->HeadLength; }
  if (file) {
    long long pos;
    if (ov) pos = (long long)(((unsigned long long)ov->OffsetHigh << 32) | ov->Offset);
    else if ((pos = nos_file_pos((long long)(intptr_t)file)) < 0) { free(g); return nx_fail((int)-pos); }
    g[n].file = (long long)(intptr_t)file;
    g[n].off = (unsigned long long)pos;
    g[n].len = len;
    g[n++].whole = len == 0;
  }
  if (tb && tb->Tail && tb->TailLength) { g[n].buf = tb->Tail; g[n++].len = tb->TailLength; }
  return transmit(s, g, n, per_send, ov, flags);
}

static BOOL WSAAPI nx_transmitpackets(SOCKET s, LPTRANSMIT_PACKETS_ELEMENT els, DWORD count, DWORD per_send,
                                      LPOVERLAPPED ov, DWORD flags) {
  nseg *g;
  if (count && !els) return nx_fail(WSAEFAULT);
  if (!(g = calloc(count ? count : 1, sizeof *g))) return nx_fail(WSAENOBUFS);
  for (DWORD i = 0; i < count; i++) {
    ULONG kind = els[i].dwElFlags & (TP_ELEMENT_MEMORY | TP_ELEMENT_FILE);
    if (kind == TP_ELEMENT_MEMORY) {
      if (els[i].cLength && !els[i].pBuffer) { free(g); return nx_fail(WSAEFAULT); }
      g[i].buf = els[i].pBuffer;
      g[i].len = els[i].cLength;
    } else if (kind == TP_ELEMENT_FILE) {
      long long off = els[i].nFileOffset.QuadPart;
      if (off == -1 && (off = nos_file_pos((long long)(intptr_t)els[i].hFile)) < 0) { free(g); return nx_fail((int)-off); }
      g[i].file = (long long)(intptr_t)els[i].hFile;
      g[i].off = (unsigned long long)off;
      g[i].len = els[i].cLength;
      g[i].whole = els[i].cLength == 0;
    } else {
      free(g);
      return nx_fail(WSAEINVAL);
    }
  }
  return transmit(s, g, count, per_send, ov, flags);
}

static INT WSAAPI nx_wsarecvmsg(SOCKET s, LPWSAMSG m, LPDWORD got, LPWSAOVERLAPPED ov,
                                LPWSAOVERLAPPED_COMPLETION_ROUTINE routine) {
  WSATHREADID tid;
  INT e = 0;
  int opened = 0, failed;
  if (!m || (!got && !ov) || (m->dwBufferCount && !m->lpBuffers) || (m->name && m->namelen < 16))
    { nx_error(WSAEFAULT); return SOCKET_ERROR; }
  if (m->dwBufferCount == 0) { nx_error(WSAEINVAL); return SOCKET_ERROR; }
  if (routine && !ov) routine = NULL;
  if (routine) {
    if (nv.up.lpWPUOpenCurrentThread(&tid, &e) != 0) { nx_error(e ? e : WSAENOBUFS); return SOCKET_ERROR; }
    opened = 1;
  }
  {
    nv_sock *so;
    nv_ext *x;
    lwsp_mutex_lock(&nv.lock);
    if (!nv.startups || !(so = nv_find(s)) || so->type != SOCK_DGRAM || !(x = calloc(1, sizeof *x))) {
      int code = !nv.startups ? WSANOTINITIALISED : !so ? WSAENOTSOCK : so->type != SOCK_DGRAM ? WSAEOPNOTSUPP : WSAENOBUFS;
      NV_UNLOCK();
      if (opened) nv.up.lpWPUCloseThread(&tid, &e);
      nx_error(code);
      return SOCKET_ERROR;
    }
    x->fn = NX_RECVMSG; x->msg = m;
    so->ev.enabled |= FD_READ;
    if (ov) {
      nx_queue(so, NV_OP_RECV, x, ov, routine, opened ? &tid : NULL, opened, &failed);
      NV_UNLOCK();
      if (failed && opened) nv.up.lpWPUCloseThread(&tid, &e);
      nx_error(failed ? WSAENOBUFS : WSA_IO_PENDING);
      return SOCKET_ERROR;
    } else {
      DWORD n = 0, fl = 0;
      long r = nx_run(so, x, &n, &fl);
      NV_UNLOCK();
      free(x);
      if (got) *got = n;
      if (r < 0) { nx_error((int)-r); return SOCKET_ERROR; }
      return 0;
    }
  }
}

static INT WSAAPI nx_wsasendmsg(SOCKET s, LPWSAMSG m, DWORD flags, LPDWORD sent, LPWSAOVERLAPPED ov,
                                LPWSAOVERLAPPED_COMPLETION_ROUTINE routine) {
  WSATHREADID tid;
  INT e = 0, rc;
  int opened = 0;
  if (!m || (!sent && !ov) || (m->dwBufferCount && !m->lpBuffers)) { nx_error(WSAEFAULT); return SOCKET_ERROR; }
  if (routine && !ov) routine = NULL;
  if (routine) {
    if (nv.up.lpWPUOpenCurrentThread(&tid, &e) != 0) { nx_error(e ? e : WSAENOBUFS); return SOCKET_ERROR; }
    opened = 1;
  }
  rc = nv_send_entry(s, m->lpBuffers, m->dwBufferCount, sent, flags, m->name, m->name ? m->namelen : 0, ov, routine,
                  opened ? &tid : NULL, &e);
  /* the routine's APC is queued (or the call failed): the thread id is no longer needed */
  if (opened) { INT e2 = 0; nv.up.lpWPUCloseThread(&tid, &e2); }
  if (rc != 0) { nx_error(e); return SOCKET_ERROR; }
  return 0;
}

/* ---- the ioctls and options ----------------------------------------------------------- */
static void (*const nx_funcs[LWSP_EXT_COUNT])(void) = {
  (void (*)(void))nx_acceptex, (void (*)(void))nx_getacceptexsockaddrs, (void (*)(void))nx_connectex,
  (void (*)(void))nx_disconnectex, (void (*)(void))nx_transmitfile, (void (*)(void))nx_transmitpackets,
  (void (*)(void))nx_wsarecvmsg, (void (*)(void))nx_wsasendmsg};

/* The ioctls of this file (under the lock): 1 when code is one of them
 * (*r: 0 or -error), 0 otherwise. */
int nv_ext_ioctl(nv_sock *so, DWORD code, LPVOID in, DWORD cbin, LPVOID out, DWORD cbout, LPDWORD ret, int *r) {
  if (code == SIO_GET_EXTENSION_FUNCTION_POINTER) {
    int i = cbin >= sizeof(GUID) ? lwsp_ext_index(in) : -1;
    if (cbin < sizeof(GUID)) *r = -WSAEFAULT;
    else if (i < 0) *r = -WSAEINVAL;
    else if (cbout < sizeof(void *)) *r = -WSAEFAULT;
    else { memcpy(out, &nx_funcs[i], sizeof(void *)); if (ret) *ret = sizeof(void *); *r = 0; }
    return 1;
  }
  if (code == SIO_BASE_HANDLE || code == SIO_BSP_HANDLE || code == SIO_BSP_HANDLE_SELECT || code == SIO_BSP_HANDLE_POLL) {
    /* the base provider: its own handle */
    if (cbout < sizeof(SOCKET)) *r = -WSAEFAULT;
    else { memcpy(out, &so->h, sizeof(SOCKET)); if (ret) *ret = sizeof(SOCKET); *r = 0; }
    return 1;
  }
  return 0;
}

/* SO_UPDATE_ACCEPT_CONTEXT / SO_UPDATE_CONNECT_CONTEXT: 1 when name is one
 * of them (*r: 0 or -error). */
int nv_ext_setsockopt(nv_sock *so, int level, int name, const char *val, int len, int *r) {
  SOCKET ls;
  if (level != SOL_SOCKET || (name != SO_UPDATE_ACCEPT_CONTEXT && name != SO_UPDATE_CONNECT_CONTEXT)) return 0;
  if (name == SO_UPDATE_CONNECT_CONTEXT) { *r = so->peer ? 0 : -WSAENOTCONN; return 1; }
  if (len < (int)sizeof(SOCKET)) { *r = -WSAEFAULT; return 1; }
  memcpy(&ls, val, sizeof ls);
  *r = !nv_find(ls) ? -WSAENOTSOCK : so->peer ? 0 : -WSAENOTCONN;
  return 1;
}
