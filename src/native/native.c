/*
 * native.c - lwsp's native base provider: TCP and UDP over IPv4 and IPv6 on
 * the operating system's own sockets (native_os.c), built as its own DLL
 * (lwsp_native) with its own WSPStartup.  Layered Lua providers sit on it to
 * carry real traffic.  This file holds the provider's state and lifetime,
 * its socket slots, network events and overlapped machinery; the WSP entries
 * are in native_wsp.c, the extension functions in native_ext.c (native.h).
 *
 * OS sockets are always non-blocking underneath.  A blocking call retries
 * after poll() on its own thread, without the provider lock, polling the
 * blocking hook and honouring WSPCancelBlockingCall.  An overlapped call that
 * cannot finish at once is queued to the provider's worker thread, which
 * polls the queued sockets (and those with selected network events) and
 * completes each operation exactly once through WPUQueueApc or
 * WPUCompleteOverlappedRequest.  On Windows an overlapped send or receive
 * is Winsock's own overlapped I/O instead, completing on the provider's
 * completion port, where a second worker picks it up and completes the
 * caller's operation; closesocket and cleanup cancel such I/O and wait until
 * each operation has been completed (WSA_OPERATION_ABORTED) while its handle
 * is still valid.  Handles are non-IFS, from WPUCreateSocketHandle, with
 * (generation, slot) contexts.
 */
#include "native.h"

#define NCHUNK 256

nv_state nv;
static _Thread_local int tls_cancel, tls_blocking;

#ifdef _WIN32
static INIT_ONCE once = INIT_ONCE_STATIC_INIT;
static BOOL CALLBACK init_cb(PINIT_ONCE o, PVOID p, PVOID *c) {
  (void)o; (void)p; (void)c;
  lwsp_mutex_init(&nv.lock);
  lwsp_cond_init(&nv.cond);
  return TRUE;
}
static void init(void) { InitOnceExecuteOnce(&once, init_cb, NULL, NULL); }
#else
static pthread_once_t once = PTHREAD_ONCE_INIT;
static void init_cb(void) { lwsp_mutex_init(&nv.lock); lwsp_cond_init(&nv.cond); }
static void init(void) { pthread_once(&once, init_cb); }
#endif

/* ---- sockets ---------------------------------------------------------------------- */
nv_sock *nv_at(uint32_t i) { return &nv.chunks[i / NCHUNK][i % NCHUNK]; }

nv_sock *nv_sock_alloc(void) {
  nv_sock *so;
  uint32_t i;
  if (nv.nfree) i = nv.freelist[--nv.nfree];
  else {
    i = nv.nsocks;
    if (i == nv.nchunks * NCHUNK) {
      nv_sock **c = realloc(nv.chunks, (nv.nchunks + 1) * sizeof *c);
      uint32_t *f;
      if (!c) return NULL;
      nv.chunks = c;
      if (!(c[nv.nchunks] = calloc(NCHUNK, sizeof(nv_sock)))) return NULL;
      if (!(f = realloc(nv.freelist, (nv.nchunks + 1) * NCHUNK * sizeof *f))) return NULL;
      nv.freelist = f;
      nv.nchunks++;
    }
    nv.nsocks++;
  }
  so = nv_at(i);
  memset(so, 0, sizeof *so);
  so->idx = i;
  do so->gen = ++nv.gen & (uint32_t)(sizeof(DWORD_PTR) >= 8 ? 0xffffffffu : 0xffffu); while (!so->gen);
  so->fd = -1;
  return so;
}
void nv_sock_free(nv_sock *so) {
  so->gen = 0;
  nv.freelist[nv.nfree++] = so->idx;
}
/* context: generation << NIDX_BITS | slot + 1 (16/16 bits on 32-bit Windows) */
#define NIDX_BITS (sizeof(DWORD_PTR) >= 8 ? 32u : 16u)
#define NIDX_MASK ((((DWORD_PTR)1) << NIDX_BITS) - 1)
static DWORD_PTR ctx_of(nv_sock *so) { return ((DWORD_PTR)so->gen << NIDX_BITS) | (DWORD_PTR)(so->idx + 1); }

/* Finds the socket behind a handle (under the lock). */
nv_sock *nv_find(SOCKET s) {
  DWORD_PTR ctx = 0;
  INT e = 0;
  uint32_t i;
  nv_sock *so;
  if (nv.up.lpWPUQuerySocketHandleContext(s, &ctx, &e) != 0) return NULL;
  i = (uint32_t)(ctx & NIDX_MASK);
  if (!i || i > nv.nsocks) return NULL;
  so = nv_at(i - 1);
  return so->gen && so->h == s && (DWORD_PTR)so->gen == (ctx >> NIDX_BITS) ? so : NULL;
}

SOCKET nv_new_handle(nv_sock *so, LPINT err) {
  SOCKET h = nv.up.lpWPUCreateSocketHandle(so->catalog, ctx_of(so), err);
  if (h == INVALID_SOCKET) return h;
  so->h = h;
  return h;
}

/* The last thread out of a system call made with the lock released frees a
 * socket closed meanwhile (native_wsp.c, UNLOCKED_IO). */
void nv_unbusy(nv_sock *so) {   /* under the lock */
  if (--so->busy == 0 && so->dead) {
    long long fd = so->fd;
    int open = so->dead == 1;
    __atomic_store_n(&so->dead, 0, __ATOMIC_RELEASE);
    nv_sock_free(so);
    if (open) nos_close(fd);
  }
}

/* Waits until fd is ready for ev, polling the hook: 0, or -WSAEINTR. */
int nv_wait_fd(nv_sock *so, long long fd, short ev) {
  LPBLOCKINGCALLBACK hook = NULL;
  DWORD_PTR ctx = 0;
  INT e = 0;
  nv.up.lpWPUQueryBlockingCallback(so->catalog, &hook, &ctx, &e);
  tls_blocking = 1;
  for (;;) {
    nos_pollfd p = {fd, ev, 0};
    if (tls_cancel || __atomic_load_n(&so->dead, __ATOMIC_ACQUIRE)) { tls_cancel = 0; tls_blocking = 0; return -WSAEINTR; }
    if (nos_poll(&p, 1, hook ? 10 : 100) > 0) break;
    if (hook) hook(ctx);
  }
  tls_blocking = 0;
  return 0;
}

int nv_cancel_blocking(void) {
  if (!tls_blocking) return 0;
  tls_cancel = 1;
  return 1;
}

/* ---- network events ---------------------------------------------------------------- */
static void ev_record(nv_sock *so, LONG bit, int error) {
  INT e = 0;
  if (lwsp_netev_record(&so->ev, bit, error)) lwsp_netev_deliver(&so->ev, &nv.up, so->h, bit, error, &e);
}

static short ev_wanted(nv_sock *so) {
  short ev = 0;
  LONG on = so->ev.mode ? so->ev.mask & so->ev.enabled : 0;
  if (on & (FD_READ | FD_ACCEPT | FD_CLOSE | FD_OOB)) ev |= NOS_IN;
  if (on & (FD_WRITE | FD_CONNECT)) ev |= NOS_OUT;
  return ev;
}

/* The worker saw fd ready: record the events that apply. */
static void ev_ready(nv_sock *so, short rev) {
  if (so->connecting && (rev & (NOS_OUT | NOS_ERR | NOS_HUP))) {
    int r = nos_connect_result(so->fd);
    so->connecting = 0;
    ev_record(so, FD_CONNECT, r < 0 ? -r : 0);
    if (r == 0) ev_record(so, FD_WRITE, 0);
    return;
  }
  if (rev & NOS_OUT) ev_record(so, FD_WRITE, 0);
  if (rev & (NOS_IN | NOS_HUP | NOS_ERR)) {
    if (so->listening) { ev_record(so, FD_ACCEPT, 0); return; }
    if (so->type == SOCK_STREAM) {
      char c;
      long n = nos_recv(so->fd, &c, 1, MSG_PEEK, NULL, NULL, 0);
      if (n == -WSAEWOULDBLOCK) return;   /* a stale readiness: the data went to a recv meanwhile */
      if (n == 0 || n < 0) {
        if (!so->closed_seen) { so->closed_seen = 1; ev_record(so, FD_CLOSE, n < 0 ? (int)-n : 0); }
        return;
      }
    }
    ev_record(so, FD_READ, 0);
  }
}

/* ---- overlapped operations ------------------------------------------------------------ */
/* Completion routines not yet run, per handle (under the lock): a closed
 * socket's handle stays registered until the last of them has been delivered
 * (SPI.md), so the handle a routine's caller knows is never a new socket's. */
typedef struct { SOCKET h; int apcs, closed; } nhold;
static nhold *holds;
static size_t nholds, holds_cap;
static nhold *hold_of(SOCKET h) {
  for (size_t i = 0; i < nholds; i++)
    if (holds[i].h == h) return &holds[i];
  return NULL;
}
static int hold_take(SOCKET h) {
  nhold *hd = hold_of(h);
  if (!hd) {
    if (nholds == holds_cap) {
      size_t cap = holds_cap ? holds_cap * 2 : 16;
      nhold *n = realloc(holds, cap * sizeof *n);
      if (!n) return 0;
      holds = n;
      holds_cap = cap;
    }
    hd = &holds[nholds++];
    hd->h = h;
    hd->apcs = hd->closed = 0;
  }
  hd->apcs++;
  return 1;
}
/* WPUCloseSocketHandle now, or once the handle's last routine has run. */
void nv_close_handle(SOCKET h) {
  nhold *hd = hold_of(h);
  INT e = 0;
  if (hd) hd->closed = 1;
  else nv.up.lpWPUCloseSocketHandle(h, &e);
}

typedef struct apc_ctx { LPWSAOVERLAPPED_COMPLETION_ROUTINE routine; LPWSAOVERLAPPED ov; DWORD err, bytes, flags; SOCKET h; } apc_ctx;
static void CALLBACK run_apc(DWORD_PTR p) {
  apc_ctx *a = (apc_ctx *)p;
  nhold *hd;
  a->routine(a->err, a->bytes, a->ov, a->flags);
  lwsp_mutex_lock(&nv.lock);
  if (a->h && (hd = hold_of(a->h)) != NULL && --hd->apcs == 0) {
    INT e = 0;
    if (hd->closed) nv.up.lpWPUCloseSocketHandle(a->h, &e);
    *hd = holds[--nholds];
  }
  lwsp_mutex_unlock(&nv.lock);
  free(a);
}

void nv_notify(SOCKET h, LPWSAOVERLAPPED ov, LPWSAOVERLAPPED_COMPLETION_ROUTINE routine, LPWSATHREADID tid,
               DWORD error, DWORD bytes, DWORD flags) {
  INT e = 0;
  int signalled;   /* (the native base keeps no trace) */
  lwsp_ov_done(ov, error, bytes, flags);
  if (routine) {
    apc_ctx *a = malloc(sizeof *a);
    if (!a) return;
    a->routine = routine; a->ov = ov; a->err = error; a->bytes = bytes; a->flags = flags;
    lwsp_mutex_lock(&nv.lock);
    a->h = hold_take(h) ? h : 0;
    if (nv.up.lpWPUQueueApc(tid, run_apc, (DWORD_PTR)a, &e) != 0) {
      nhold *hd = a->h ? hold_of(h) : NULL;
      if (hd && --hd->apcs == 0) {
        if (hd->closed) nv.up.lpWPUCloseSocketHandle(h, &e);
        *hd = holds[--nholds];
      }
      free(a);
      lwsp_log(NV_WHO, "WPUQueueApc failed (%d)", e);
    }
    lwsp_mutex_unlock(&nv.lock);
  } else if (!nv.complete || lwsp_complete_checked(NV_WHO, nv.complete, &nv.up, h, ov, error, bytes, &e, &signalled) != 0) {
    lwsp_log(NV_WHO, "WPUCompleteOverlappedRequest failed (%d)", e);
  }
}

size_t nv_total_of(const WSABUF *b, DWORD n) {
  size_t t = 0;
  for (DWORD i = 0; i < n; i++) t += b[i].len;
  return t;
}

/* One attempt at a send: all of the buffers from op->done on.  Returns 1 when
 * finished (bytes in *n), 0 to wait, or -error. */
long nv_try_send(nv_sock *so, const WSABUF *b, DWORD nb, size_t *done, DWORD flags, const void *to, int tolen,
                 int whole) {
  size_t off = *done;
  for (DWORD i = 0; i < nb; i++) {
    if (off >= b[i].len) { off -= b[i].len; continue; }
    long n = nos_send(so->fd, b[i].buf + off, b[i].len - off, (int)flags, to, tolen);
    if (n == -WSAEWOULDBLOCK) return *done && !whole ? 1 : 0;
    if (n < 0) return n;
    *done += (size_t)n;
    if ((size_t)n < b[i].len - off) return whole ? 0 : 1;
    off = 0;
  }
  return 1;
}

/* One attempt at a receive into the buffers: 1 done (bytes in *got, WSAEMSGSIZE
 * as -WSAEMSGSIZE with *got set), 0 to wait, or -error. */
long nv_try_recv(nv_sock *so, const WSABUF *b, DWORD nb, DWORD *flags, struct sockaddr *from, LPINT fromlen,
                 DWORD *got) {
  size_t total = nv_total_of(b, nb);
  char stack[2048], *tmp = stack;
  long n;
  int fl = fromlen ? *fromlen : 0;
  if (nb == 1) n = nos_recv(so->fd, b[0].buf, b[0].len, (int)*flags, from, from ? &fl : NULL, so->type == SOCK_DGRAM);
  else {
    if (total > sizeof stack && !(tmp = malloc(total))) return -WSAENOBUFS;
    n = nos_recv(so->fd, tmp, total, (int)*flags, from, from ? &fl : NULL, so->type == SOCK_DGRAM);
    if (n > 0) {
      size_t o = 0, k = (size_t)n < total ? (size_t)n : total;
      for (DWORD i = 0; i < nb && o < k; i++) {
        size_t c = b[i].len < k - o ? b[i].len : k - o;
        memcpy(b[i].buf, tmp + o, c);
        o += c;
      }
    }
    if (tmp != stack) free(tmp);
  }
  if (n == -WSAEWOULDBLOCK) return 0;
  if (n < 0) return n;
  if (from && fromlen) *fromlen = fl;
  *flags = 0;
  if ((size_t)n > total) { *got = (DWORD)total; *flags = MSG_PARTIAL; return -WSAEMSGSIZE; }
  *got = (DWORD)n;
  return 1;
}

void nv_op_finish(nv_op *op, int error, DWORD bytes, DWORD flags) {
  nv_notify(op->so->h, op->ov, op->routine, &op->tid, (DWORD)error, bytes, flags);
  if (op->x) nv_ext_free(op);
  free(op);
}

/* Worker: polls the queued operations' sockets and the selected sockets. */
static void worker(void *arg) {
  (void)arg;
  lwsp_mutex_lock(&nv.lock);
  while (!nv.stop) {
    nos_pollfd p[256];
    nv_sock *owner[256];
    int n = 0;
    p[n].fd = nv.pipe[0]; p[n].events = NOS_IN; owner[n++] = NULL;
    for (nv_op *op = nv.ops; op && n < 256; op = op->next) {
      p[n].fd = op->so->fd;
      p[n].events = op->kind == NV_OP_SEND ? NOS_OUT : NOS_IN;
      if (op->x) p[n].events = nv_ext_events(op, &p[n].fd);
      owner[n++] = op->so;
    }
    for (uint32_t i = 0; i < nv.nsocks && n < 256; i++) {
      nv_sock *so = nv_at(i);
      short ev;
      if (!so->gen || !(ev = ev_wanted(so))) continue;
      p[n].fd = so->fd; p[n].events = ev; owner[n++] = so;
    }
    NV_UNLOCK();
    nos_poll(p, n, 1000);
    nos_drain(nv.pipe[0]);
    lwsp_mutex_lock(&nv.lock);
    /* queued operations first, then events.  Per socket and direction they
     * finish in the order they were posted: once one cannot finish this
     * round, the ones after it wait too (no reordered or interleaved bytes). */
    nv.round++;
    for (nv_op **pp = &nv.ops; *pp;) {
      nv_op *op = *pp;
      long r;
      DWORD got = 0, fl = op->flags;
      if (op->so->gen != op->gen) { *pp = op->next; nv_op_finish(op, WSA_OPERATION_ABORTED, 0, 0); continue; }
      if (op->so->blocked[op->kind] == nv.round) { pp = &op->next; continue; }
      if (op->x)
        r = nv_ext_step(op, &got, &fl);
      else if (op->kind == NV_OP_SEND)
        r = nv_try_send(op->so, op->bufs, op->nbufs, &op->done, op->flags, op->tolen ? (void *)&op->to : NULL, op->tolen, 1);
      else
        r = nv_try_recv(op->so, op->bufs, op->nbufs, &fl, op->from, op->fromlen, &got);
      if (r == 0) { op->so->blocked[op->kind] = nv.round; pp = &op->next; continue; }
      *pp = op->next;
      op->so->queued[op->kind]--;
      if (op->kind == NV_OP_SEND && !op->x) nv_op_finish(op, r < 0 ? (int)-r : 0, (DWORD)op->done, 0);
      else nv_op_finish(op, r < 0 ? (int)-r : 0, got, fl);
    }
    for (int i = 1; i < n; i++)
      if (owner[i] && p[i].revents && owner[i]->gen && ev_wanted(owner[i])) ev_ready(owner[i], p[i].revents);
  }
  NV_UNLOCK();
}

void nv_poke(void) { nos_poke(nv.pipe[1]); }

/* A new operation record for the caller's overlapped call (NULL when out of
 * memory); the overlapped is marked in progress. */
nv_op *nv_op_new(nv_sock *so, int kind, LPWSAOVERLAPPED ov, LPWSAOVERLAPPED_COMPLETION_ROUTINE routine,
                 LPWSATHREADID tid) {
  nv_op *op = calloc(1, sizeof *op);
  if (!op) return NULL;
  op->so = so; op->gen = so->gen; op->kind = kind;
  op->ov = ov; op->routine = routine;
  if (tid) op->tid = *tid;
  ov->Internal = WSS_OPERATION_IN_PROGRESS;
  ov->InternalHigh = 0;
  return op;
}

void nv_op_post(nv_op *op) {
  nv_op **pp = &nv.ops;
  while (*pp) pp = &(*pp)->next;
  *pp = op;
  op->so->queued[op->kind]++;
  nv_poke();
}

/* Queues an overlapped operation that could not finish at once. */
int nv_queue_op(nv_sock *so, int kind, LPWSABUF b, DWORD nb, size_t done, DWORD flags, const struct sockaddr *to,
                int tolen, struct sockaddr *from, LPINT fromlen, LPWSAOVERLAPPED ov,
                LPWSAOVERLAPPED_COMPLETION_ROUTINE routine, LPWSATHREADID tid, LPINT err) {
  nv_op *op;
  if (nb > 8 || !(op = nv_op_new(so, kind, ov, routine, tid))) return nv_fail(err, WSAENOBUFS);
  memcpy(op->bufs, b, nb * sizeof *b);
  op->nbufs = nb; op->done = done; op->flags = flags;
  if (to) { memcpy(&op->to, to, (size_t)tolen); op->tolen = tolen; }
  op->from = from; op->fromlen = fromlen;
  nv_op_post(op);
  return nv_fail(err, WSA_IO_PENDING);
}

#ifdef _WIN32
/* ---- Windows: overlapped calls as Winsock overlapped I/O ---------------------------- */
static void unlink_inflight(nv_op *op) {
  for (nv_op **pp = &nv.inflight; *pp; pp = &(*pp)->next)
    if (*pp == op) { *pp = op->next; return; }
}

/* Under the lock (released here): starts the OS's own overlapped send or
 * receive for the caller's operation. */
int nv_os_overlapped(nv_sock *so, int kind, LPWSABUF b, DWORD nb, LPDWORD count, LPDWORD flagsp, DWORD flags,
                     const struct sockaddr *to, int tolen, struct sockaddr *from, LPINT fromlen,
                     LPWSAOVERLAPPED ov, LPWSAOVERLAPPED_COMPLETION_ROUTINE routine, LPWSATHREADID tid, LPINT err) {
  unsigned long n = 0, fl = 0;
  int r;
  nv_op *op = nv_op_new(so, kind, ov, routine, tid);
  if (!op) { NV_UNLOCK(); return nv_fail(err, WSAENOBUFS); }
  so->ov_os++;
  op->next = nv.inflight;
  nv.inflight = op;
  so->inflight++;
  r = nos_ov_start(so->fd, kind == NV_OP_SEND, b, nb, flags, to, tolen, from, fromlen, op, &n, &fl);
  if (r < 0) {
    unlink_inflight(op);
    so->inflight--;
    free(op);
    NV_UNLOCK();
    ov->Internal = ov->OffsetHigh = (DWORD)-r;
    ov->InternalHigh = n;
    if (count) *count = (DWORD)n;
    return nv_fail(err, -r);
  }
  NV_UNLOCK();
  if (r == 0) return nv_fail(err, WSA_IO_PENDING);
  /* done at once: the results now, the notification when its packet comes */
  if (count) *count = (DWORD)n;
  if (flagsp) *flagsp = (DWORD)fl;
  return 0;
}

/* Second worker: completions from the port, each delivered exactly once. */
static void cworker(void *arg) {
  (void)arg;
  for (;;) {
    void *ctx = NULL;
    unsigned long bytes = 0, fl = 0;
    int error = 0, r = nos_port_wait(&ctx, &bytes, &fl, &error, 1000);
    lwsp_mutex_lock(&nv.lock);
    if (r == 1 && ctx) {
      nv_op *op = ctx;
      unlink_inflight(op);
      op->so->inflight--;
      /* cancelled by closesocket: Windows says ERROR_OPERATION_ABORTED, Wine another status */
      if (error && op->so->closing) error = WSA_OPERATION_ABORTED;
      nv_notify(op->so->h, op->ov, op->routine, &op->tid, (DWORD)error, (DWORD)bytes, (DWORD)fl);
      free(op);
      lwsp_cond_broadcast(&nv.cond);
    }
    if (r < 0 || (nv.cstop && !nv.inflight)) { NV_UNLOCK(); return; }
    NV_UNLOCK();
  }
}

/* Under the lock: cancels the socket's Winsock I/O (by closing it) and waits
 * until every operation has been completed.  Returns 1 when fd was closed. */
int nv_os_drain(nv_sock *so) {
  double deadline;
  if (!so->inflight) return 0;
  so->closing = 1;
  nos_close(so->fd);
  deadline = lwsp_now() + 10.0;
  while (so->inflight && lwsp_now() < deadline) lwsp_cond_wait(&nv.cond, &nv.lock, 100);
  if (so->inflight) lwsp_log(NV_WHO, "closesocket: %d overlapped operation(s) never completed", so->inflight);
  return 1;
}
#endif

/* ---- the provider's lifetime ------------------------------------------------------------ */
LWSP_EXPORT int WSPAPI WSPStartup(WORD ver, LPWSPDATA data, LPWSAPROTOCOL_INFOW pi, WSPUPCALLTABLE up,
                                  LPWSPPROC_TABLE table) {
  static const char desc[] = "lwsp native base provider (TCP/UDP over the OS's sockets)";
  char why[600];
  size_t k;
  init();
  if (!data || !pi || !table) return WSAEFAULT;
  if ((ver & 0xff) < 2 || ((ver & 0xff) == 2 && (ver >> 8) < 2)) return WSAVERNOTSUPPORTED;
  lwsp_mutex_lock(&nv.lock);
  if (nv.startups++ == 0) {
    nv.up = up;
    nv.info = *pi;
    /* ws2_32 exports it by name, and so does every host: the one that counts
     * is in the module that supplied the upcall table */
    if (!(nv.complete = lwsp_host_complete_export(&up, why, sizeof why))) {
      nv.startups = 0;
      NV_UNLOCK();
      lwsp_log(NV_WHO, "WSPStartup: the host offers no WPUCompleteOverlappedRequest: %s; overlapped calls could not complete", why);
      return WSAEPROVIDERFAILEDINIT;
    }
    nv.stop = 0;
#ifdef _WIN32
    nv.cstop = 0;
    if (nos_port_open() != 0 || !(nv.cworker = lwsp_thread_start(cworker, NULL))) {
      nv.startups = 0;
      nos_port_close();
      NV_UNLOCK();
      lwsp_log(NV_WHO, "WSPStartup: cannot open the completion port");
      return WSAEPROVIDERFAILEDINIT;
    }
#endif
    if (nos_pipe(nv.pipe) != 0 || !(nv.worker = lwsp_thread_start(worker, NULL))) {
      nv.startups = 0;
      NV_UNLOCK();
      lwsp_log(NV_WHO, "WSPStartup: cannot start the worker thread");
      return WSAEPROVIDERFAILEDINIT;
    }
  }
  NV_UNLOCK();
  memset(data, 0, sizeof *data);
  data->wVersion = data->wHighVersion = MAKEWORD_(2, 2);
  k = lwsp_utf8_to_utf16(desc, sizeof desc - 1, data->szDescription, WSPDESCRIPTION_LEN);
  data->szDescription[k] = 0;
  *table = nv_procs;
  return 0;
}

int WSPAPI nv_cleanup(LPINT err) {
  lwsp_thread *t;
  NV_ERRP;
  lwsp_mutex_lock(&nv.lock);
  if (nv.startups == 0) { NV_UNLOCK(); return nv_fail(err, WSANOTINITIALISED); }
  if (--nv.startups > 0) { NV_UNLOCK(); return 0; }
  while (nv.ops) { nv_op *op = nv.ops; nv.ops = op->next; nv_op_finish(op, WSA_OPERATION_ABORTED, 0, 0); }
  for (uint32_t i = 0; i < nv.nsocks; i++) {
    nv_sock *so = nv_at(i);
    int closed = 0;
#ifdef _WIN32
    if (so->gen) closed = nv_os_drain(so);
#endif
    if (so->gen) { INT e; nv.up.lpWPUCloseSocketHandle(so->h, &e); if (!closed) nos_close(so->fd); nv_sock_free(so); }
  }
  nv_dup_forget_all();
  nv.stop = 1;
  t = nv.worker;
  nv.worker = NULL;
  nv_poke();
#ifdef _WIN32
  {
    lwsp_thread *ct = nv.cworker;
    nv.cworker = NULL;
    nv.cstop = 1;
    nos_port_wake();
    NV_UNLOCK();
    lwsp_thread_join(ct);
    lwsp_mutex_lock(&nv.lock);
    nos_port_close();
  }
#endif
  NV_UNLOCK();
  lwsp_thread_join(t);
  lwsp_mutex_lock(&nv.lock);
  nos_close(nv.pipe[0]);
  nos_close(nv.pipe[1]);
  for (uint32_t i = 0; i < nv.nchunks; i++) free(nv.chunks[i]);
  free(nv.chunks);
  free(nv.freelist);
  nv.chunks = NULL; nv.freelist = NULL;
  nv.nsocks = nv.nchunks = nv.nfree = 0;
  NV_UNLOCK();
  return 0;
}
