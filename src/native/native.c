/*
 * native.c - lwsp's native base provider: TCP and UDP over IPv4 and IPv6 on
 * the operating system's own sockets (native_os.c), built as its own DLL
 * (lwsp_native) with its own WSPStartup.  Layered Lua providers sit on it to
 * carry real traffic.
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
#include "common.h"
#include "native_os.h"
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

#define NCHUNK 256
#define WHO "native"

typedef struct nsock {
  uint32_t gen, idx;
  SOCKET h;
  long long fd;
  int af, type;
  DWORD catalog;
  int nonblocking, listening, connecting;
  int peer;                    /* connected, or a connect under way, once: a stream
                                  send failing with EPIPE before that is WSAENOTCONN */
  int ev_mode;                 /* 0, 1 event select, 2 async select */
  LONG ev_mask, ev_enabled, ev_recorded;
  int ev_error[FD_MAX_EVENTS];
  WSAEVENT ev_event;
  HWND ev_hwnd;
  UINT ev_msg;
  int closed_seen;
  int queued[2];               /* overlapped sends and receives waiting in N.ops */
  uint32_t blocked[2];         /* the worker round in which the first of them could not finish */
  int inflight;                /* Windows: overlapped I/O of this socket still in Winsock */
  int closing;                 /* Windows: its Winsock socket closed to cancel that I/O */
  uint32_t ov_os, ov_polled;   /* overlapped sends and receives handed to the OS / served by the worker */
  int busy;                    /* threads in a send or receive of it with the lock released */
  int io[2];                   /* a send [OP_SEND] or receive [OP_RECV] of it is in its system call */
  int io_waiting;              /* calls waiting for their turn at it */
  int dead;                    /* closed while busy: the last of them closes fd and frees the slot */
  int ext_reused;              /* a fresh OS socket after DisconnectEx(TF_REUSE_SOCKET) (native_ext.inc) */
  int shared;                  /* its OS socket has another descriptor (WSPDuplicateSocket): never shut down on close */
} nsock;

enum { OP_SEND, OP_RECV };
typedef struct nop {
  struct nop *next;
  nsock *so;
  uint32_t gen;
  int kind;
  WSABUF bufs[8];
  DWORD nbufs;
  size_t done;                 /* bytes sent so far (sends complete whole) */
  DWORD flags;
  SOCKADDR_STORAGE to;
  int tolen;
  struct sockaddr *from;
  LPINT fromlen;
  LPWSAOVERLAPPED ov;
  LPWSAOVERLAPPED_COMPLETION_ROUTINE routine;
  WSATHREADID tid;
  struct nx *x;                /* an extension function's operation (native_ext.inc) */
} nop;
typedef struct nx nx;
static int nx_setsockopt(nsock *so, int level, int name, const char *val, int len, int *r);
static short nx_events(nop *op, long long *fd);
static long nx_step(nop *op, DWORD *bytes, DWORD *flags);
static void nx_free(nop *op);

static struct {
  lwsp_mutex lock;
  int startups;
  WSPUPCALLTABLE up;
  WSAPROTOCOL_INFOW info;
  LPWPUCOMPLETEOVERLAPPEDREQUEST complete;
  nsock **chunks;
  uint32_t nsocks, nchunks, nfree;
  uint32_t *freelist;
  uint32_t gen;
  nop *ops;                    /* in the order they were posted */
  uint32_t round;
  lwsp_thread *worker;
  int stop;
  long long pipe[2];
  lwsp_cond cond;              /* inflight counts dropping */
#ifdef _WIN32
  nop *inflight;               /* operations running as Winsock overlapped I/O */
  lwsp_thread *cworker;        /* completes them from the port */
  int cstop;
#endif
} N;
static _Thread_local int tls_cancel, tls_blocking;

#ifdef _WIN32
static INIT_ONCE once = INIT_ONCE_STATIC_INIT;
static BOOL CALLBACK init_cb(PINIT_ONCE o, PVOID p, PVOID *c) {
  (void)o; (void)p; (void)c;
  lwsp_mutex_init(&N.lock);
  lwsp_cond_init(&N.cond);
  return TRUE;
}
static void init(void) { InitOnceExecuteOnce(&once, init_cb, NULL, NULL); }
#else
static pthread_once_t once = PTHREAD_ONCE_INIT;
static void init_cb(void) { lwsp_mutex_init(&N.lock); lwsp_cond_init(&N.cond); }
static void init(void) { pthread_once(&once, init_cb); }
#endif

/* ---- sockets ---------------------------------------------------------------------- */
static nsock *at(uint32_t i) { return &N.chunks[i / NCHUNK][i % NCHUNK]; }

static nsock *sock_alloc(void) {
  nsock *so;
  uint32_t i;
  if (N.nfree) i = N.freelist[--N.nfree];
  else {
    i = N.nsocks;
    if (i == N.nchunks * NCHUNK) {
      nsock **c = realloc(N.chunks, (N.nchunks + 1) * sizeof *c);
      uint32_t *f;
      if (!c) return NULL;
      N.chunks = c;
      if (!(c[N.nchunks] = calloc(NCHUNK, sizeof(nsock)))) return NULL;
      if (!(f = realloc(N.freelist, (N.nchunks + 1) * NCHUNK * sizeof *f))) return NULL;
      N.freelist = f;
      N.nchunks++;
    }
    N.nsocks++;
  }
  so = at(i);
  memset(so, 0, sizeof *so);
  so->idx = i;
  do so->gen = ++N.gen & (uint32_t)(sizeof(DWORD_PTR) >= 8 ? 0xffffffffu : 0xffffu); while (!so->gen);
  so->fd = -1;
  return so;
}
static void sock_free(nsock *so) {
  so->gen = 0;
  N.freelist[N.nfree++] = so->idx;
}
/* context: generation << NIDX_BITS | slot + 1 (16/16 bits on 32-bit Windows) */
#define NIDX_BITS (sizeof(DWORD_PTR) >= 8 ? 32u : 16u)
#define NIDX_MASK ((((DWORD_PTR)1) << NIDX_BITS) - 1)
static DWORD_PTR ctx_of(nsock *so) { return ((DWORD_PTR)so->gen << NIDX_BITS) | (DWORD_PTR)(so->idx + 1); }

/* Finds the socket behind a handle (under the lock). */
static nsock *find(SOCKET s) {
  DWORD_PTR ctx = 0;
  INT e = 0;
  uint32_t i;
  nsock *so;
  if (N.up.lpWPUQuerySocketHandleContext(s, &ctx, &e) != 0) return NULL;
  i = (uint32_t)(ctx & NIDX_MASK);
  if (!i || i > N.nsocks) return NULL;
  so = at(i - 1);
  return so->gen && so->h == s && (DWORD_PTR)so->gen == (ctx >> NIDX_BITS) ? so : NULL;
}

/* A send (of one buffer) or a receive of UNLOCKED_IO bytes or more makes its
 * system call with the lock released, so that one socket's copy never holds
 * up another's, nor the other direction of the same socket: busy keeps the
 * slot and its fd while it does.
 * A close meanwhile shuts the socket down (a blocked call wakes and fails
 * with WSAEINTR) and leaves the rest to the last one out.  Calls of one
 * direction on one socket still make their system calls one at a time
 * (io_begin), as they did under the lock: Winsock, and Wine more so, may
 * answer a non-blocking call made while another of its direction is under way
 * with WSAEWOULDBLOCK (a layer's MSG_PEEK beside an application's recv). */
#define UNLOCKED_IO 4096   /* bytes: a smaller call keeps the lock through its system call (cheaper than its round trip) */
static void io_wait(nsock *so, int kind) {    /* under the lock: its turn */
  while (so->io[kind]) {
    so->io_waiting++;
    lwsp_cond_wait(&N.cond, &N.lock, -1);
    so->io_waiting--;
  }
}
static void io_begin(nsock *so, int kind) {   /* under the lock; returns with it released */
  io_wait(so, kind);
  so->io[kind] = 1;
  lwsp_mutex_unlock(&N.lock);
}
static void io_end(nsock *so, int kind) {     /* takes the lock back */
  lwsp_mutex_lock(&N.lock);
  so->io[kind] = 0;
  if (so->io_waiting) lwsp_cond_broadcast(&N.cond);
}
/* One try of a send or receive (expr) at its turn: with the lock kept, or
 * released for the system call. */
#define IO_TRY(so, kind, keep_lock, expr) do { \
    if (keep_lock) { io_wait((so), (kind)); expr; } \
    else { io_begin((so), (kind)); expr; io_end((so), (kind)); } \
  } while (0)
static void unbusy(nsock *so) {   /* under the lock */
  if (--so->busy == 0 && so->dead) {
    long long fd = so->fd;
    int open = so->dead == 1;
    __atomic_store_n(&so->dead, 0, __ATOMIC_RELEASE);
    sock_free(so);
    if (open) nos_close(fd);
  }
}

#define ERRP INT errp_; if (!err) err = &errp_
#define LOCKED_SOCK(s) nsock *so; lwsp_mutex_lock(&N.lock); \
  if (!N.startups || !(so = find(s))) { lwsp_mutex_unlock(&N.lock); *err = N.startups ? WSAENOTSOCK : WSANOTINITIALISED; return SOCKET_ERROR; }
#define UNLOCK() lwsp_mutex_unlock(&N.lock)

static int fail(LPINT err, int code) { *err = code; return SOCKET_ERROR; }

/* Waits until fd is ready for ev, polling the hook: 0, or -WSAEINTR. */
static int wait_fd(nsock *so, long long fd, short ev) {
  LPBLOCKINGCALLBACK hook = NULL;
  DWORD_PTR ctx = 0;
  INT e = 0;
  N.up.lpWPUQueryBlockingCallback(so->catalog, &hook, &ctx, &e);
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

/* ---- network events ---------------------------------------------------------------- */
static void ev_record(nsock *so, LONG bit, int error) {
  int i = 0;
  INT e = 0;
  while ((1L << i) != bit) i++;
  if (!so->ev_mode || !(so->ev_mask & bit) || !(so->ev_enabled & bit)) return;
  so->ev_enabled &= ~bit;
  so->ev_recorded |= bit;
  so->ev_error[i] = error;
  if (so->ev_mode == 1) N.up.lpWPUSetEvent(so->ev_event, &e);
  else N.up.lpWPUPostMessage(so->ev_hwnd, so->ev_msg, (WPARAM)so->h, LWSP_SELECTREPLY(bit, error));
}

static short ev_wanted(nsock *so) {
  short ev = 0;
  LONG on = so->ev_mode ? so->ev_mask & so->ev_enabled : 0;
  if (on & (FD_READ | FD_ACCEPT | FD_CLOSE | FD_OOB)) ev |= NOS_IN;
  if (on & (FD_WRITE | FD_CONNECT)) ev |= NOS_OUT;
  return ev;
}

/* The worker saw fd ready: record the events that apply. */
static void ev_ready(nsock *so, short rev) {
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
static void close_handle(SOCKET h) {
  nhold *hd = hold_of(h);
  INT e = 0;
  if (hd) hd->closed = 1;
  else N.up.lpWPUCloseSocketHandle(h, &e);
}

typedef struct apc_ctx { LPWSAOVERLAPPED_COMPLETION_ROUTINE routine; LPWSAOVERLAPPED ov; DWORD err, bytes, flags; SOCKET h; } apc_ctx;
static void CALLBACK run_apc(DWORD_PTR p) {
  apc_ctx *a = (apc_ctx *)p;
  nhold *hd;
  a->routine(a->err, a->bytes, a->ov, a->flags);
  lwsp_mutex_lock(&N.lock);
  if (a->h && (hd = hold_of(a->h)) != NULL && --hd->apcs == 0) {
    INT e = 0;
    if (hd->closed) N.up.lpWPUCloseSocketHandle(a->h, &e);
    *hd = holds[--nholds];
  }
  lwsp_mutex_unlock(&N.lock);
  free(a);
}

static void notify(SOCKET h, LPWSAOVERLAPPED ov, LPWSAOVERLAPPED_COMPLETION_ROUTINE routine, LPWSATHREADID tid,
                   DWORD error, DWORD bytes, DWORD flags) {
  INT e = 0;
  int signalled;   /* (the native base keeps no trace) */
  lwsp_ov_done(ov, error, bytes, flags);
  if (routine) {
    apc_ctx *a = malloc(sizeof *a);
    if (!a) return;
    a->routine = routine; a->ov = ov; a->err = error; a->bytes = bytes; a->flags = flags;
    lwsp_mutex_lock(&N.lock);
    a->h = hold_take(h) ? h : 0;
    if (N.up.lpWPUQueueApc(tid, run_apc, (DWORD_PTR)a, &e) != 0) {
      nhold *hd = a->h ? hold_of(h) : NULL;
      if (hd && --hd->apcs == 0) {
        if (hd->closed) N.up.lpWPUCloseSocketHandle(h, &e);
        *hd = holds[--nholds];
      }
      free(a);
      lwsp_log(WHO, "WPUQueueApc failed (%d)", e);
    }
    lwsp_mutex_unlock(&N.lock);
  } else if (!N.complete || lwsp_complete_checked(WHO, N.complete, &N.up, h, ov, error, bytes, &e, &signalled) != 0) {
    lwsp_log(WHO, "WPUCompleteOverlappedRequest failed (%d)", e);
  }
}

static size_t total_of(const WSABUF *b, DWORD n) {
  size_t t = 0;
  for (DWORD i = 0; i < n; i++) t += b[i].len;
  return t;
}

/* One attempt at a send: all of the buffers from op->done on.  Returns 1 when
 * finished (bytes in *n), 0 to wait, or -error. */
static long try_send(nsock *so, const WSABUF *b, DWORD nb, size_t *done, DWORD flags, const void *to, int tolen,
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
static long try_recv(nsock *so, const WSABUF *b, DWORD nb, DWORD *flags, struct sockaddr *from, LPINT fromlen,
                     DWORD *got) {
  size_t total = total_of(b, nb);
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

static void op_finish(nop *op, int error, DWORD bytes, DWORD flags) {
  notify(op->so->h, op->ov, op->routine, &op->tid, (DWORD)error, bytes, flags);
  if (op->x) nx_free(op);
  free(op);
}

/* Worker: polls the queued operations' sockets and the selected sockets. */
static void worker(void *arg) {
  (void)arg;
  lwsp_mutex_lock(&N.lock);
  while (!N.stop) {
    nos_pollfd p[256];
    nsock *owner[256];
    int n = 0;
    p[n].fd = N.pipe[0]; p[n].events = NOS_IN; owner[n++] = NULL;
    for (nop *op = N.ops; op && n < 256; op = op->next) {
      p[n].fd = op->so->fd;
      p[n].events = op->kind == OP_SEND ? NOS_OUT : NOS_IN;
      if (op->x) p[n].events = nx_events(op, &p[n].fd);
      owner[n++] = op->so;
    }
    for (uint32_t i = 0; i < N.nsocks && n < 256; i++) {
      nsock *so = at(i);
      short ev;
      if (!so->gen || !(ev = ev_wanted(so))) continue;
      p[n].fd = so->fd; p[n].events = ev; owner[n++] = so;
    }
    UNLOCK();
    nos_poll(p, n, 1000);
    nos_drain(N.pipe[0]);
    lwsp_mutex_lock(&N.lock);
    /* queued operations first, then events.  Per socket and direction they
     * finish in the order they were posted: once one cannot finish this
     * round, the ones after it wait too (no reordered or interleaved bytes). */
    N.round++;
    for (nop **pp = &N.ops; *pp;) {
      nop *op = *pp;
      long r;
      DWORD got = 0, fl = op->flags;
      if (op->so->gen != op->gen) { *pp = op->next; op_finish(op, WSA_OPERATION_ABORTED, 0, 0); continue; }
      if (op->so->blocked[op->kind] == N.round) { pp = &op->next; continue; }
      if (op->x)
        r = nx_step(op, &got, &fl);
      else if (op->kind == OP_SEND)
        r = try_send(op->so, op->bufs, op->nbufs, &op->done, op->flags, op->tolen ? (void *)&op->to : NULL, op->tolen, 1);
      else
        r = try_recv(op->so, op->bufs, op->nbufs, &fl, op->from, op->fromlen, &got);
      if (r == 0) { op->so->blocked[op->kind] = N.round; pp = &op->next; continue; }
      *pp = op->next;
      op->so->queued[op->kind]--;
      if (op->kind == OP_SEND && !op->x) op_finish(op, r < 0 ? (int)-r : 0, (DWORD)op->done, 0);
      else op_finish(op, r < 0 ? (int)-r : 0, got, fl);
    }
    for (int i = 1; i < n; i++)
      if (owner[i] && p[i].revents && owner[i]->gen && ev_wanted(owner[i])) ev_ready(owner[i], p[i].revents);
  }
  UNLOCK();
}

static void poke(void) { nos_poke(N.pipe[1]); }

/* A new operation record for the caller's overlapped call (NULL when out of
 * memory); the overlapped is marked in progress. */
static nop *op_new(nsock *so, int kind, LPWSAOVERLAPPED ov, LPWSAOVERLAPPED_COMPLETION_ROUTINE routine,
                   LPWSATHREADID tid) {
  nop *op = calloc(1, sizeof *op);
  if (!op) return NULL;
  op->so = so; op->gen = so->gen; op->kind = kind;
  op->ov = ov; op->routine = routine;
  if (tid) op->tid = *tid;
  ov->Internal = WSS_OPERATION_IN_PROGRESS;
  ov->InternalHigh = 0;
  return op;
}

/* Queues an overlapped operation that could not finish at once. */
static int queue_op(nsock *so, int kind, LPWSABUF b, DWORD nb, size_t done, DWORD flags, const struct sockaddr *to,
                    int tolen, struct sockaddr *from, LPINT fromlen, LPWSAOVERLAPPED ov,
                    LPWSAOVERLAPPED_COMPLETION_ROUTINE routine, LPWSATHREADID tid, LPINT err) {
  nop *op;
  if (nb > 8 || !(op = op_new(so, kind, ov, routine, tid))) return fail(err, WSAENOBUFS);
  memcpy(op->bufs, b, nb * sizeof *b);
  op->nbufs = nb; op->done = done; op->flags = flags;
  if (to) { memcpy(&op->to, to, (size_t)tolen); op->tolen = tolen; }
  op->from = from; op->fromlen = fromlen;
  {
    nop **pp = &N.ops;
    while (*pp) pp = &(*pp)->next;
    *pp = op;
  }
  so->queued[kind]++;
  poke();
  return fail(err, WSA_IO_PENDING);
}

#ifdef _WIN32
/* ---- Windows: overlapped calls as Winsock overlapped I/O ---------------------------- */
static void unlink_inflight(nop *op) {
  for (nop **pp = &N.inflight; *pp; pp = &(*pp)->next)
    if (*pp == op) { *pp = op->next; return; }
}

/* Under the lock (released here): starts the OS's own overlapped send or
 * receive for the caller's operation. */
static int os_overlapped(nsock *so, int kind, LPWSABUF b, DWORD nb, LPDWORD count, LPDWORD flagsp, DWORD flags,
                         const struct sockaddr *to, int tolen, struct sockaddr *from, LPINT fromlen,
                         LPWSAOVERLAPPED ov, LPWSAOVERLAPPED_COMPLETION_ROUTINE routine, LPWSATHREADID tid, LPINT err) {
  unsigned long n = 0, fl = 0;
  int r;
  nop *op = op_new(so, kind, ov, routine, tid);
  if (!op) { UNLOCK(); return fail(err, WSAENOBUFS); }
  so->ov_os++;
  op->next = N.inflight;
  N.inflight = op;
  so->inflight++;
  r = nos_ov_start(so->fd, kind == OP_SEND, b, nb, flags, to, tolen, from, fromlen, op, &n, &fl);
  if (r < 0) {
    unlink_inflight(op);
    so->inflight--;
    free(op);
    UNLOCK();
    ov->Internal = ov->OffsetHigh = (DWORD)-r;
    ov->InternalHigh = n;
    if (count) *count = (DWORD)n;
    return fail(err, -r);
  }
  UNLOCK();
  if (r == 0) return fail(err, WSA_IO_PENDING);
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
    lwsp_mutex_lock(&N.lock);
    if (r == 1 && ctx) {
      nop *op = ctx;
      unlink_inflight(op);
      op->so->inflight--;
      /* cancelled by closesocket: Windows says ERROR_OPERATION_ABORTED, Wine another status */
      if (error && op->so->closing) error = WSA_OPERATION_ABORTED;
      notify(op->so->h, op->ov, op->routine, &op->tid, (DWORD)error, (DWORD)bytes, (DWORD)fl);
      free(op);
      lwsp_cond_broadcast(&N.cond);
    }
    if (r < 0 || (N.cstop && !N.inflight)) { UNLOCK(); return; }
    UNLOCK();
  }
}

/* Under the lock: cancels the socket's Winsock I/O (by closing it) and waits
 * until every operation has been completed.  Returns 1 when fd was closed. */
static int os_drain(nsock *so) {
  double deadline;
  if (!so->inflight) return 0;
  so->closing = 1;
  nos_close(so->fd);
  deadline = lwsp_now() + 10.0;
  while (so->inflight && lwsp_now() < deadline) lwsp_cond_wait(&N.cond, &N.lock, 100);
  if (so->inflight) lwsp_log(WHO, "closesocket: %d overlapped operation(s) never completed", so->inflight);
  return 1;
}
#endif

/* ---- the entries ------------------------------------------------------------------------ */
static SOCKET new_handle(nsock *so, LPINT err) {
  SOCKET h = N.up.lpWPUCreateSocketHandle(so->catalog, ctx_of(so), err);
  if (h == INVALID_SOCKET) return h;
  so->h = h;
  return h;
}

static SOCKET dup_open(LPWSAPROTOCOL_INFOW pi, LPINT err);
static SOCKET WSPAPI n_socket(int af, int type, int protocol, LPWSAPROTOCOL_INFOW pi, GROUP g, DWORD flags, LPINT err) {
  nsock *so;
  long long fd;
  ERRP;
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
  lwsp_mutex_lock(&N.lock);
  if (!(so = sock_alloc())) { UNLOCK(); nos_close(fd); *err = WSAENOBUFS; return INVALID_SOCKET; }
  so->fd = fd; so->af = af; so->type = type; so->catalog = pi->dwCatalogEntryId;
  if (new_handle(so, err) == INVALID_SOCKET) { sock_free(so); UNLOCK(); nos_close(fd); return INVALID_SOCKET; }
  UNLOCK();
  return so->h;
}

static int WSPAPI n_closesocket(SOCKET s, LPINT err) {
  long long fd;
  int closed = 0;
  ERRP;
  LOCKED_SOCK(s);
  fd = so->fd;
#ifdef _WIN32
  closed = os_drain(so);
#endif
  for (nop **pp = &N.ops; *pp;) {
    nop *op = *pp;
    if (op->so == so) { *pp = op->next; op_finish(op, WSA_OPERATION_ABORTED, 0, 0); }
    else pp = &op->next;
  }
  close_handle(s);
  if (so->busy) {
    __atomic_store_n(&so->dead, closed ? 2 : 1, __ATOMIC_RELEASE);   /* 2: fd is closed already */
    so->h = 0;                          /* no handle finds it now */
    so->ev_mode = 0;                    /* and it reports no more events */
    if (!closed && !so->shared) nos_shutdown(fd, 2);   /* wakes a call blocked on it (else its next poll does) */
    UNLOCK();
    poke();
    return 0;
  }
  sock_free(so);
  UNLOCK();
  if (!closed) nos_close(fd);
  poke();
  return 0;
}

static int WSPAPI n_bind(SOCKET s, const struct sockaddr *name, int len, LPINT err) {
  int r;
  ERRP;
  if (!name) return fail(err, WSAEFAULT);
  LOCKED_SOCK(s);
  r = nos_bind(so->fd, name, len);
  UNLOCK();
  return r < 0 ? fail(err, -r) : 0;
}

static int WSPAPI n_listen(SOCKET s, int backlog, LPINT err) {
  int r;
  ERRP;
  LOCKED_SOCK(s);
  r = nos_listen(so->fd, backlog);
  if (r == 0) so->listening = 1;
  UNLOCK();
  poke();
  return r < 0 ? fail(err, -r) : 0;
}

static int WSPAPI n_connect(SOCKET s, const struct sockaddr *name, int len, LPWSABUF cd, LPWSABUF ce, LPQOS sq,
                            LPQOS gq, LPINT err) {
  int r, nb;
  long long fd;
  ERRP;
  (void)cd; (void)sq; (void)gq;
  if (ce) ce->len = 0;
  if (!name) return fail(err, WSAEFAULT);
  LOCKED_SOCK(s);
  so->ev_enabled |= FD_CONNECT;
  r = nos_connect(so->fd, name, len);
  fd = so->fd;
  nb = so->nonblocking;
  if (r == -WSAEWOULDBLOCK) so->connecting = 1;
  if (r == 0 || r == -WSAEWOULDBLOCK) so->peer = 1;
  UNLOCK();
  poke();
  if (r == -WSAEWOULDBLOCK && !nb) {
    if ((r = wait_fd(so, fd, NOS_OUT)) == 0) r = nos_connect_result(fd);
    lwsp_mutex_lock(&N.lock);
    so->connecting = 0;
    UNLOCK();
  }
  return r < 0 ? fail(err, -r) : 0;
}

static SOCKET WSPAPI n_accept(SOCKET s, struct sockaddr *addr, LPINT addrlen, LPCONDITIONPROC cond, DWORD_PTR cb,
                              LPINT err) {
  nsock *ns;
  long long fd, lfd;
  int nb, len;
  SOCKADDR_STORAGE ss;
  ERRP;
  (void)cond; (void)cb;
  if (addr && (!addrlen || *addrlen < 16)) { *err = WSAEFAULT; return INVALID_SOCKET; }
  {
    LOCKED_SOCK(s);
    so->ev_enabled |= FD_ACCEPT;
    lfd = so->fd;
    nb = so->nonblocking;
    UNLOCK();
    poke();
    for (;;) {
      len = sizeof ss;
      fd = nos_accept(lfd, &ss, &len);
      if (fd != -WSAEWOULDBLOCK || nb) break;
      if ((fd = wait_fd(so, lfd, NOS_IN)) < 0) break;
    }
    if (fd < 0) { *err = (INT)-fd; return INVALID_SOCKET; }
    if (addr) {
      if (*addrlen < len) { nos_close(fd); *addrlen = len; *err = WSAEFAULT; return INVALID_SOCKET; }
      memcpy(addr, &ss, (size_t)len);
      *addrlen = len;
    }
    lwsp_mutex_lock(&N.lock);
    if (!(ns = sock_alloc())) { UNLOCK(); nos_close(fd); *err = WSAENOBUFS; return INVALID_SOCKET; }
    ns->fd = fd; ns->af = so->af; ns->type = so->type; ns->catalog = so->catalog;
    ns->ev_mode = so->ev_mode; ns->ev_mask = so->ev_mask; ns->ev_event = so->ev_event;
    ns->ev_hwnd = so->ev_hwnd; ns->ev_msg = so->ev_msg; ns->ev_enabled = FD_ALL_EVENTS;
    ns->nonblocking = so->nonblocking;
    ns->peer = 1;
    if (new_handle(ns, err) == INVALID_SOCKET) { sock_free(ns); UNLOCK(); nos_close(fd); return INVALID_SOCKET; }
    UNLOCK();
    poke();
    return ns->h;
  }
}

static int send_entry(SOCKET s, LPWSABUF b, DWORD nb, LPDWORD sent, DWORD flags, const struct sockaddr *to, int tolen,
                      LPWSAOVERLAPPED ov, LPWSAOVERLAPPED_COMPLETION_ROUTINE routine, LPWSATHREADID tid, LPINT err) {
  size_t done = 0;
  long r;
  int nonblocking, evs;
  long long fd;
  ERRP;
  if ((!sent && !ov) || !b) return fail(err, WSAEFAULT);
  if (nb == 0) return fail(err, WSAEINVAL);   /* as lwsp's runtime (docs/api.md) */
  LOCKED_SOCK(s);
#ifdef _WIN32
  if (ov) return os_overlapped(so, OP_SEND, b, nb, sent, NULL, flags, to, tolen, NULL, NULL, ov, routine, tid, err);
#endif
  fd = so->fd;
  nonblocking = so->nonblocking;
  if (ov) {
    so->ov_polled++;
    /* an overlapped send behind others waits its turn */
    r = so->queued[OP_SEND] ? 0 : try_send(so, b, nb, &done, flags, to, tolen, 1);
    if (r == 0) { int rc = queue_op(so, OP_SEND, b, nb, done, flags, to, tolen, NULL, NULL, ov, routine, tid, err); UNLOCK(); return rc; }
    UNLOCK();
    if (r < 0) { ov->Internal = ov->OffsetHigh = (DWORD)-r; return fail(err, (int)-r); }
    if (sent) *sent = (DWORD)done;
    notify(s, ov, routine, tid, 0, (DWORD)done, 0);
    return 0;
  }
  /* several buffers are several system calls: their tries keep the lock, so
   * that another thread's send cannot fall between them; so does a small send */
  so->busy++;
  for (;;) {
    IO_TRY(so, OP_SEND, nb > 1 || b[0].len < UNLOCKED_IO, r = try_send(so, b, nb, &done, flags, to, tolen, !nonblocking));
    if (r != 0 || nonblocking || so->dead) break;
    UNLOCK();
    r = wait_fd(so, fd, NOS_OUT);
    lwsp_mutex_lock(&N.lock);
    if (r < 0) break;
  }
  if (so->dead && r <= 0) r = -WSAEINTR;    /* closed by another thread meanwhile */
  if (r == -WSAECONNRESET && !so->peer && so->type == SOCK_STREAM) r = -WSAENOTCONN;   /* as Winsock */
  if (r == 0) so->ev_enabled |= FD_WRITE;   /* (non-blocking) FD_WRITE comes again once it can go on */
  evs = so->ev_mode != 0;
  unbusy(so);
  UNLOCK();
  if (r == 0) { if (evs) poke(); return fail(err, WSAEWOULDBLOCK); }
  if (r < 0) return fail(err, (int)-r);
  if (sent) *sent = (DWORD)done;
  return 0;
}

static int recv_entry(SOCKET s, LPWSABUF b, DWORD nb, LPDWORD got, LPDWORD flags, struct sockaddr *from, LPINT fromlen,
                      LPWSAOVERLAPPED ov, LPWSAOVERLAPPED_COMPLETION_ROUTINE routine, LPWSATHREADID tid, LPINT err) {
  long r;
  DWORD n = 0, fl;
  int nonblocking;
  long long fd;
  ERRP;
  if (!flags || (!got && !ov) || !b || (from && !fromlen)) return fail(err, WSAEFAULT);
  if (nb == 0) return fail(err, WSAEINVAL);   /* 0 bytes would read as the peer's close */
  fl = *flags;
  LOCKED_SOCK(s);
  so->ev_enabled |= (*flags & MSG_OOB) ? FD_OOB : FD_READ;
#ifdef _WIN32
  if (ov) return os_overlapped(so, OP_RECV, b, nb, got, flags, *flags, NULL, 0, from, fromlen, ov, routine, tid, err);
#endif
  fd = so->fd;
  nonblocking = so->nonblocking;
  if (ov) {
    so->ov_polled++;
    r = so->queued[OP_RECV] ? 0 : try_recv(so, b, nb, &fl, from, fromlen, &n);
    if (r == 0) { int rc = queue_op(so, OP_RECV, b, nb, 0, *flags, NULL, 0, from, fromlen, ov, routine, tid, err); UNLOCK(); return rc; }
    UNLOCK();
  } else {
    int small = total_of(b, nb) < UNLOCKED_IO;
    so->busy++;
    for (;;) {
      fl = *flags;
      IO_TRY(so, OP_RECV, small, r = try_recv(so, b, nb, &fl, from, fromlen, &n));
      if (r == 0 && so->ev_mode) poke();   /* the worker polls for FD_READ again (its network events) */
      if (r != 0 || nonblocking || so->dead) break;
      UNLOCK();
      r = wait_fd(so, fd, NOS_IN);
      lwsp_mutex_lock(&N.lock);
      if (r < 0) break;
    }
    if (so->dead && (r <= 0 || n == 0)) r = -WSAEINTR;   /* closed by another thread meanwhile */
    unbusy(so);
    UNLOCK();
    if (r == 0) return fail(err, WSAEWOULDBLOCK);
  }
  if (got) *got = n;
  if (r < 0) {
    if (ov) { ov->Internal = ov->OffsetHigh = (DWORD)-r; ov->InternalHigh = n; }
    return fail(err, (int)-r);
  }
  *flags = fl;
  if (ov) notify(s, ov, routine, tid, 0, n, fl);
  return 0;
}

static int WSPAPI n_send(SOCKET s, LPWSABUF b, DWORD nb, LPDWORD sent, DWORD flags, LPWSAOVERLAPPED ov,
                         LPWSAOVERLAPPED_COMPLETION_ROUTINE r, LPWSATHREADID t, LPINT err) {
  return send_entry(s, b, nb, sent, flags, NULL, 0, ov, r, t, err);
}
static int WSPAPI n_sendto(SOCKET s, LPWSABUF b, DWORD nb, LPDWORD sent, DWORD flags, const struct sockaddr *to, int tolen,
                           LPWSAOVERLAPPED ov, LPWSAOVERLAPPED_COMPLETION_ROUTINE r, LPWSATHREADID t, LPINT err) {
  return send_entry(s, b, nb, sent, flags, to, tolen, ov, r, t, err);
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
  ERRP;
  if (how < 0 || how > 2) return fail(err, WSAEINVAL);
  LOCKED_SOCK(s);
  r = nos_shutdown(so->fd, how);
  UNLOCK();
  return r < 0 ? fail(err, -r) : 0;
}

static int name_entry(SOCKET s, int peer, struct sockaddr *name, LPINT len, LPINT err) {
  int r;
  ERRP;
  if (!name || !len) return fail(err, WSAEFAULT);
  LOCKED_SOCK(s);
  r = nos_name(so->fd, peer, name, len);
  UNLOCK();
  return r < 0 ? fail(err, -r) : 0;
}
static int WSPAPI n_getsockname(SOCKET s, struct sockaddr *n, LPINT l, LPINT e) { return name_entry(s, 0, n, l, e); }
static int WSPAPI n_getpeername(SOCKET s, struct sockaddr *n, LPINT l, LPINT e) { return name_entry(s, 1, n, l, e); }

static int WSPAPI n_getsockopt(SOCKET s, int level, int name, char *val, LPINT len, LPINT err) {
  int r;
  ERRP;
  if (!val || !len) return fail(err, WSAEFAULT);
  LOCKED_SOCK(s);
  if (level == SOL_SOCKET && name == SO_PROTOCOL_INFOW) {
    r = *len < (int)sizeof(WSAPROTOCOL_INFOW) ? -WSAEFAULT : 0;
    if (!r) { memcpy(val, &N.info, sizeof N.info); *len = sizeof N.info; }
  } else {
    r = nos_getsockopt(so->fd, level, name, val, len);
  }
  UNLOCK();
  return r < 0 ? fail(err, -r) : 0;
}

static int WSPAPI n_setsockopt(SOCKET s, int level, int name, const char *val, int len, LPINT err) {
  int r;
  ERRP;
  if (len < 0 || (len && !val)) return fail(err, WSAEFAULT);
  LOCKED_SOCK(s);
  if (!nx_setsockopt(so, level, name, val, len, &r)) r = nos_setsockopt(so->fd, level, name, val, len);
  UNLOCK();
  return r < 0 ? fail(err, -r) : 0;
}

static int nx_ioctl(nsock *so, DWORD code, LPVOID in, DWORD cbin, LPVOID out, DWORD cbout, LPDWORD ret, int *r);
static int WSPAPI n_ioctl(SOCKET s, DWORD code, LPVOID in, DWORD cbin, LPVOID out, DWORD cbout, LPDWORD ret,
                          LPWSAOVERLAPPED ov, LPWSAOVERLAPPED_COMPLETION_ROUTINE routine, LPWSATHREADID tid, LPINT err) {
  int r = 0;
  uint32_t v = 0;
  ERRP;
  if ((!ret && !ov) || (cbin && !in) || (cbout && !out)) return fail(err, WSAEFAULT);
  LOCKED_SOCK(s);
  if (code == FIONBIO) {
    if (cbin < 4) r = -WSAEFAULT;
    else { memcpy(&v, in, 4); if (!v && so->ev_mode) r = -WSAEINVAL; else so->nonblocking = v != 0; }
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
  } else if (!nx_ioctl(so, code, in, cbin, out, cbout, ret, &r)) {
    r = -WSAEINVAL;
  }
  UNLOCK();
  if (r < 0) return fail(err, -r);
  if (ov) notify(s, ov, routine, tid, 0, ret ? *ret : 0, 0);
  return 0;
}

static int select_mode(nsock *so, int mode, WSAEVENT ev, HWND hwnd, UINT msg, LONG mask, LPINT err) {
  if ((mask & ~(LONG)FD_ALL_EVENTS) || (mask && mode == 1 && !ev) || (mask && mode == 2 && !hwnd)) return fail(err, WSAEINVAL);
  so->ev_mode = mask ? mode : 0;
  so->ev_mask = mask;
  so->ev_event = ev;
  so->ev_hwnd = hwnd;
  so->ev_msg = msg;
  so->ev_recorded = 0;
  so->ev_enabled = FD_ALL_EVENTS;
  so->nonblocking = 1;
  poke();
  return 0;
}
static int WSPAPI n_eventselect(SOCKET s, WSAEVENT ev, LONG mask, LPINT err) {
  int r;
  ERRP;
  LOCKED_SOCK(s);
  r = select_mode(so, 1, ev, NULL, 0, mask, err);
  UNLOCK();
  return r;
}
static int WSPAPI n_asyncselect(SOCKET s, HWND hwnd, unsigned int msg, LONG mask, LPINT err) {
  int r;
  ERRP;
  LOCKED_SOCK(s);
  r = select_mode(so, 2, NULL, hwnd, msg, mask, err);
  UNLOCK();
  return r;
}
static int WSPAPI n_enumnetworkevents(SOCKET s, WSAEVENT ev, LPWSANETWORKEVENTS ne, LPINT err) {
  INT e = 0;
  ERRP;
  if (!ne) return fail(err, WSAEFAULT);
  LOCKED_SOCK(s);
  if (ev && !N.up.lpWPUResetEvent(ev, &e)) { UNLOCK(); return fail(err, WSAEINVAL); }
  ne->lNetworkEvents = so->ev_recorded;
  for (int i = 0; i < FD_MAX_EVENTS; i++) ne->iErrorCode[i] = (so->ev_recorded & (1L << i)) ? so->ev_error[i] : 0;
  so->ev_recorded = 0;
  UNLOCK();
  return 0;
}

static int WSPAPI n_select(int nfds, wsp_fd_set *r, wsp_fd_set *w, wsp_fd_set *x, wsp_timeval *tv, LPINT err) {
  nos_pollfd p[3 * WSP_FD_SETSIZE];
  wsp_fd_set *sets[3] = {r, w, x};
  int n = 0, ready, ms;
  ERRP;
  (void)nfds;
  if (!r && !w && !x) return fail(err, WSAEINVAL);
  if (tv && (tv->tv_sec < 0 || tv->tv_usec < 0)) return fail(err, WSAEINVAL);
  ms = tv ? (int)(tv->tv_sec * 1000 + tv->tv_usec / 1000) : -1;
  lwsp_mutex_lock(&N.lock);
  for (int k = 0; k < 3; k++) {
    if (!sets[k]) continue;
    if (sets[k]->fd_count > WSP_FD_SETSIZE) { UNLOCK(); return fail(err, WSAEINVAL); }
    for (unsigned i = 0; i < sets[k]->fd_count; i++) {
      nsock *so = find(sets[k]->fd_array[i]);
      if (!so) { UNLOCK(); return fail(err, WSAENOTSOCK); }
      p[n].fd = so->fd;
      p[n].events = k == 1 ? NOS_OUT : NOS_IN;
      n++;
    }
  }
  UNLOCK();
  ready = nos_poll(p, n, ms);
  if (ready < 0) return fail(err, -ready);
  n = ready = 0;
  for (int k = 0; k < 3; k++) {
    wsp_fd_set out;
    if (!sets[k]) continue;
    out.fd_count = 0;
    for (unsigned i = 0; i < sets[k]->fd_count; i++, n++) {
      short want = k == 1 ? NOS_OUT : k == 0 ? (NOS_IN | NOS_HUP | NOS_ERR) : NOS_ERR;
      if (p[n].revents & want) out.fd_array[out.fd_count++] = sets[k]->fd_array[i];
    }
    ready += (int)out.fd_count;
    *sets[k] = out;
  }
  return ready;
}

static BOOL WSPAPI n_getoverlappedresult(SOCKET s, LPWSAOVERLAPPED ov, LPDWORD bytes, BOOL wait, LPDWORD flags,
                                         LPINT err) {
  ERRP;
  if (!ov || !bytes || !flags) { *err = WSAEFAULT; return FALSE; }
  {
    nsock *so;
    lwsp_mutex_lock(&N.lock);
    so = N.startups ? find(s) : NULL;
    UNLOCK();
    if (!so) { *err = WSAENOTSOCK; return FALSE; }
  }
  while (wait && ov->Internal == WSS_OPERATION_IN_PROGRESS) {
    nos_pollfd none = {N.pipe[0], 0, 0};
    nos_poll(&none, 1, 1);
  }
  if (ov->Internal == WSS_OPERATION_IN_PROGRESS) { *err = WSA_IO_INCOMPLETE; return FALSE; }
  *bytes = (DWORD)ov->InternalHigh;
  *flags = ov->Offset;
  if (ov->OffsetHigh) { *err = (INT)ov->OffsetHigh; return FALSE; }
  return TRUE;
}

static int WSPAPI n_cancelblockingcall(LPINT err) {
  ERRP;
  if (!tls_blocking) return fail(err, WSAEINVAL);
  tls_cancel = 1;
  return 0;
}

static INT WSPAPI n_addresstostring(LPSOCKADDR sa, DWORD salen, LPWSAPROTOCOL_INFOW pi, LPWSTR out, LPDWORD outlen,
                                    LPINT err) {
  char text[100];
  WCHAR w[100];
  size_t k;
  ERRP;
  (void)pi;
  if (!sa || !outlen) return fail(err, WSAEFAULT);
  if (!lwsp_format_address(sa, (int)salen, text, sizeof text)) return fail(err, WSAEINVAL);
  k = lwsp_utf8_to_utf16(text, strlen(text), w, 99);
  if (!out || *outlen < k + 1) { *outlen = (DWORD)k + 1; return fail(err, WSAEFAULT); }
  memcpy(out, w, k * sizeof(WCHAR));
  out[k] = 0;
  *outlen = (DWORD)k + 1;
  return 0;
}

static INT WSPAPI n_stringtoaddress(LPWSTR str, INT af, LPWSAPROTOCOL_INFOW pi, LPSOCKADDR addr, LPINT len, LPINT err) {
  char text[200];
  SOCKADDR_STORAGE ss;
  int n;
  ERRP;
  (void)pi;
  if (!str || !len) return fail(err, WSAEFAULT);
  text[lwsp_utf16_to_utf8(str, lwsp_wcslen(str, 100), text, sizeof text - 1)] = 0;
  if (!lwsp_parse_address(text, af, &ss, &n)) return fail(err, WSAEINVAL);
  if (!addr || *len < n) { *len = n; return fail(err, WSAEFAULT); }
  memcpy(addr, &ss, (size_t)n);
  *len = n;
  return 0;
}

static int WSPAPI n_cleanup(LPINT err);

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
  ERRP;
  if (!pi) return fail(err, WSAEFAULT);
  LOCKED_SOCK(s);
  if (pid != (DWORD)lwsp_process_id()) { UNLOCK(); return fail(err, WSAEINVAL); }
  for (size_t i = 0; i < sizeof dups / sizeof dups[0] && !d; i++) if (!dups[i].ref) d = &dups[i];
  if (!d) { UNLOCK(); return fail(err, WSAEMFILE); }
  if ((fd = nos_dup(so->fd)) < 0) { UNLOCK(); return fail(err, (int)-fd); }
  d->ref = dup_next;
  dup_next = dup_next < 0x7fffffff ? dup_next + 1 : 1;
  d->fd = fd; d->af = so->af; d->type = so->type; d->listening = so->listening; d->peer = so->peer;
  so->shared = 1;
  *pi = N.info;
  pi->dwCatalogEntryId = so->catalog;
  pi->iAddressFamily = so->af;
  pi->iSocketType = so->type;
  pi->iProtocol = so->type == SOCK_STREAM ? IPPROTO_TCP : IPPROTO_UDP;
  pi->dwProviderReserved = d->ref;
  UNLOCK();
  return 0;
}

/* The last WSPCleanup's half: references never used give their OS handles back. */
static void dup_forget_all(void) {
  for (size_t i = 0; i < sizeof dups / sizeof dups[0]; i++)
    if (dups[i].ref) { nos_close(dups[i].fd); dups[i].ref = 0; }
}

/* WSPSocket's half: the descriptor for a reference (WSAEINVAL if unknown or used). */
static SOCKET dup_open(LPWSAPROTOCOL_INFOW pi, LPINT err) {
  ndup *d = NULL;
  nsock *so;
  lwsp_mutex_lock(&N.lock);
  for (size_t i = 0; i < sizeof dups / sizeof dups[0] && !d; i++) if (dups[i].ref && dups[i].ref == pi->dwProviderReserved) d = &dups[i];
  if (!d) { UNLOCK(); *err = WSAEINVAL; return INVALID_SOCKET; }
  if (!(so = sock_alloc())) { UNLOCK(); *err = WSAENOBUFS; return INVALID_SOCKET; }
  so->fd = d->fd; so->af = d->af; so->type = d->type; so->catalog = pi->dwCatalogEntryId;
  so->listening = d->listening; so->peer = d->peer; so->shared = 1;
  if (new_handle(so, err) == INVALID_SOCKET) { sock_free(so); UNLOCK(); return INVALID_SOCKET; }
  d->ref = 0;
  UNLOCK();
  return so->h;
}
static BOOL WSPAPI n_getqosbyname(SOCKET s, LPWSABUF name, LPQOS q, LPINT err) {
  ERRP; (void)s; (void)name; (void)q;
  *err = WSAEOPNOTSUPP;
  return FALSE;
}
static SOCKET WSPAPI n_joinleaf(SOCKET s, const struct sockaddr *a, int l, LPWSABUF cd, LPWSABUF ce, LPQOS sq, LPQOS gq,
                                DWORD f, LPINT err) {
  ERRP; (void)s; (void)a; (void)l; (void)cd; (void)ce; (void)sq; (void)gq; (void)f;
  *err = WSAEOPNOTSUPP;
  return INVALID_SOCKET;
}
static int WSPAPI n_recvdisconnect(SOCKET s, LPWSABUF d, LPINT err) { ERRP; (void)s; (void)d; return fail(err, WSAEOPNOTSUPP); }
static int WSPAPI n_senddisconnect(SOCKET s, LPWSABUF d, LPINT err) { ERRP; (void)s; (void)d; return fail(err, WSAEOPNOTSUPP); }

#include "native_ext.inc"   /* the extension functions: a part of this file kept apart */

static const WSPPROC_TABLE procs = {
  n_accept, n_addresstostring, n_asyncselect, n_bind, n_cancelblockingcall, n_cleanup, n_closesocket,
  n_connect, n_duplicatesocket, n_enumnetworkevents, n_eventselect, n_getoverlappedresult, n_getpeername,
  n_getsockname, n_getsockopt, n_getqosbyname, n_ioctl, n_joinleaf, n_listen, n_recv, n_recvdisconnect,
  n_recvfrom, n_select, n_send, n_senddisconnect, n_sendto, n_setsockopt, n_shutdown, n_socket,
  n_stringtoaddress};

LWSP_EXPORT int WSPAPI WSPStartup(WORD ver, LPWSPDATA data, LPWSAPROTOCOL_INFOW pi, WSPUPCALLTABLE up,
                                  LPWSPPROC_TABLE table) {
  static const char desc[] = "lwsp native base provider (TCP/UDP over the OS's sockets)";
  char why[600];
  size_t k;
  init();
  if (!data || !pi || !table) return WSAEFAULT;
  if ((ver & 0xff) < 2 || ((ver & 0xff) == 2 && (ver >> 8) < 2)) return WSAVERNOTSUPPORTED;
  lwsp_mutex_lock(&N.lock);
  if (N.startups++ == 0) {
    N.up = up;
    N.info = *pi;
    /* ws2_32 exports it by name, and so does every host: the one that counts
     * is in the module that supplied the upcall table */
    if (!(N.complete = lwsp_host_complete_export(&up, why, sizeof why))) {
      N.startups = 0;
      UNLOCK();
      lwsp_log(WHO, "WSPStartup: the host offers no WPUCompleteOverlappedRequest: %s; overlapped calls could not complete", why);
      return WSAEPROVIDERFAILEDINIT;
    }
    N.stop = 0;
#ifdef _WIN32
    N.cstop = 0;
    if (nos_port_open() != 0 || !(N.cworker = lwsp_thread_start(cworker, NULL))) {
      N.startups = 0;
      nos_port_close();
      UNLOCK();
      lwsp_log(WHO, "WSPStartup: cannot open the completion port");
      return WSAEPROVIDERFAILEDINIT;
    }
#endif
    if (nos_pipe(N.pipe) != 0 || !(N.worker = lwsp_thread_start(worker, NULL))) {
      N.startups = 0;
      UNLOCK();
      lwsp_log(WHO, "WSPStartup: cannot start the worker thread");
      return WSAEPROVIDERFAILEDINIT;
    }
  }
  UNLOCK();
  memset(data, 0, sizeof *data);
  data->wVersion = data->wHighVersion = MAKEWORD_(2, 2);
  k = lwsp_utf8_to_utf16(desc, sizeof desc - 1, data->szDescription, WSPDESCRIPTION_LEN);
  data->szDescription[k] = 0;
  *table = procs;
  return 0;
}

static int WSPAPI n_cleanup(LPINT err) {
  lwsp_thread *t;
  ERRP;
  lwsp_mutex_lock(&N.lock);
  if (N.startups == 0) { UNLOCK(); return fail(err, WSANOTINITIALISED); }
  if (--N.startups > 0) { UNLOCK(); return 0; }
  while (N.ops) { nop *op = N.ops; N.ops = op->next; op_finish(op, WSA_OPERATION_ABORTED, 0, 0); }
  for (uint32_t i = 0; i < N.nsocks; i++) {
    nsock *so = at(i);
    int closed = 0;
#ifdef _WIN32
    if (so->gen) closed = os_drain(so);
#endif
    if (so->gen) { INT e; N.up.lpWPUCloseSocketHandle(so->h, &e); if (!closed) nos_close(so->fd); sock_free(so); }
  }
  dup_forget_all();
  N.stop = 1;
  t = N.worker;
  N.worker = NULL;
  poke();
#ifdef _WIN32
  {
    lwsp_thread *ct = N.cworker;
    N.cworker = NULL;
    N.cstop = 1;
    nos_port_wake();
    UNLOCK();
    lwsp_thread_join(ct);
    lwsp_mutex_lock(&N.lock);
    nos_port_close();
  }
#endif
  UNLOCK();
  lwsp_thread_join(t);
  lwsp_mutex_lock(&N.lock);
  nos_close(N.pipe[0]);
  nos_close(N.pipe[1]);
  for (uint32_t i = 0; i < N.nchunks; i++) free(N.chunks[i]);
  free(N.chunks);
  free(N.freelist);
  N.chunks = NULL; N.freelist = NULL;
  N.nsocks = N.nchunks = N.nfree = 0;
  UNLOCK();
  return 0;
}
