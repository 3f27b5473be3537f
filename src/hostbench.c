/*
 * hostbench.c - measuring loops for bench/ (lwsp.host.bench_*): each calls a
 * provider's proc table from C, so what is timed is the provider, not Lua on
 * the host side.
 */
#ifndef _WIN32
#  define _GNU_SOURCE   /* pthread_setaffinity_np */
#endif
#include "host.h"
#include <stdlib.h>
#include <string.h>
#ifdef __GLIBC__
#  include <malloc.h>
#endif

static hprov *prov_of(SOCKET s) {
  int err = 0;
  return host_prov_of(s, &err);
}

/* bench_calls(s, "getsockopt"|"send64", n) -> seconds for n calls */
static int b_calls(lua_State *L) {
  SOCKET s = (SOCKET)luaL_checkinteger(L, 1);
  const char *op = luaL_checkstring(L, 2);
  lua_Integer n = luaL_checkinteger(L, 3);
  hprov *p = prov_of(s);
  char buf[64] = {0};
  WSABUF b = {64, buf};
  WSATHREADID tid = {(HANDLE)host_current_thread(), 0};
  double t0;
  int send = strcmp(op, "send64") == 0;
  if (!p) return luaL_error(L, "not a socket");
  t0 = lwsp_now();
  for (lua_Integer i = 0; i < n; i++) {
    INT err = 0;
    int rc;
    if (send) {
      DWORD sent;
      rc = p->procs.lpWSPSend(s, &b, 1, &sent, 0, NULL, NULL, &tid, &err);
    } else {
      int v, len = 4;
      rc = p->procs.lpWSPGetSockOpt(s, SOL_SOCKET, SO_TYPE, (char *)&v, &len, &err);
    }
    if (rc != 0) return luaL_error(L, "call %d failed: %d", (int)i, err);
  }
  lua_pushnumber(L, lwsp_now() - t0);
  return 1;
}

/* The calling thread's CPUs: saved, pinned to one, and given back (where the
 * system lets a thread choose; 0 where it does not). */
#ifdef _WIN32
typedef DWORD_PTR cpu_mask;
static int cpu_pin(int cpu, cpu_mask *old) {
  DWORD_PTR prev = SetThreadAffinityMask(GetCurrentThread(), (DWORD_PTR)1 << cpu);
  if (old) *old = prev;
  return prev != 0;
}
static void cpu_restore(const cpu_mask *old) { SetThreadAffinityMask(GetCurrentThread(), *old); }
#elif defined(__linux__)
#  include <sched.h>
typedef cpu_set_t cpu_mask;
static int cpu_pin(int cpu, cpu_mask *old) {
  cpu_set_t set;
  if (old && pthread_getaffinity_np(pthread_self(), sizeof *old, old) != 0) return 0;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0;
}
static void cpu_restore(const cpu_mask *old) { pthread_setaffinity_np(pthread_self(), sizeof *old, old); }
#else
typedef int cpu_mask;
static int cpu_pin(int cpu, cpu_mask *old) { (void)cpu; (void)old; return 0; }
static void cpu_restore(const cpu_mask *old) { (void)old; }
#endif

typedef struct { hprov *p; SOCKET s; size_t total, chunk; int err, cpu; } sender;
static void send_main(void *arg) {
  sender *x = arg;
  char *buf = malloc(x->chunk);
  if (x->cpu >= 0) cpu_pin(x->cpu, NULL);
  WSATHREADID tid = {(HANDLE)host_current_thread(), 0};
  size_t left = x->total;
  memset(buf, 'x', x->chunk);
  while (left) {
    WSABUF b = {(ULONG)(left < x->chunk ? left : x->chunk), buf};
    DWORD n = 0;
    INT err = 0;
    if (x->p->procs.lpWSPSend(x->s, &b, 1, &n, 0, NULL, NULL, &tid, &err) != 0) { x->err = err; break; }
    left -= n;
  }
  free(buf);
}

/* bench_stream(c, a, total, chunk [, cpu]) -> seconds to move total bytes c -> a
 * (cpu: both threads pinned to that CPU, so the time is what the bytes cost
 * in CPU alone, with no other thread's timing in it; raises where threads
 * cannot be pinned) */
static int b_stream(lua_State *L) {
  sender x;
  SOCKET a = (SOCKET)luaL_checkinteger(L, 2);
  hprov *pa = prov_of(a);
  size_t got = 0;
  char *buf;
  lwsp_thread *t;
  double t0;
  cpu_mask mask;
  WSATHREADID tid = {(HANDLE)host_current_thread(), 0};
  x.s = (SOCKET)luaL_checkinteger(L, 1);
  x.p = prov_of(x.s);
  x.total = (size_t)luaL_checkinteger(L, 3);
  x.chunk = (size_t)luaL_checkinteger(L, 4);
  x.cpu = (int)luaL_optinteger(L, 5, -1);
  memset(&mask, 0, sizeof mask);
  x.err = 0;
  if (!x.p || !pa) return luaL_error(L, "not a socket");
  if (x.cpu >= 0 && !cpu_pin(x.cpu, &mask)) return luaL_error(L, "cannot pin threads to CPU %d here", x.cpu);
  buf = malloc(x.chunk);
  t0 = lwsp_now();
  t = lwsp_thread_start(send_main, &x);
  while (got < x.total) {
    WSABUF b = {(ULONG)x.chunk, buf};
    DWORD n = 0, flags = 0;
    INT err = 0;
    if (pa->procs.lpWSPRecv(a, &b, 1, &n, &flags, NULL, NULL, &tid, &err) != 0 || n == 0) break;
    got += n;
  }
  lwsp_thread_join(t);
  free(buf);
  if (x.cpu >= 0) cpu_restore(&mask);
  if (got != x.total) return luaL_error(L, "moved %d of %d bytes (sender error %d)", (int)got, (int)x.total, x.err);
  lua_pushnumber(L, lwsp_now() - t0);
  return 1;
}

static void CALLBACK count_routine(DWORD e, DWORD b, LPWSAOVERLAPPED ov, DWORD f) {
  (void)e; (void)b; (void)f;
  ov->Pointer = (PVOID)1;
}

/* A new completion port that socket a's completions post to (key 1). */
static uintptr_t port_for(SOCKET a) {
  uintptr_t port = host_new_port();
  hsock *hs;
  lwsp_mutex_lock(&host_lock);
  if ((hs = host_sock(a)) != NULL) { hs->port = host_port(port); hs->key = 1; }
  lwsp_mutex_unlock(&host_lock);
  return port;
}

/* bench_overlapped(a, c, "event"|"routine"|"port", n) -> seconds for n
 * overlapped receives on a, each completed by a 1-byte send on c */
static int b_overlapped(lua_State *L) {
  SOCKET a = (SOCKET)luaL_checkinteger(L, 1), c = (SOCKET)luaL_checkinteger(L, 2);
  const char *mode = luaL_checkstring(L, 3);
  lua_Integer n = luaL_checkinteger(L, 4);
  hprov *pa = prov_of(a), *pc = prov_of(c);
  WSATHREADID tid = {(HANDLE)host_current_thread(), 0};
  INT err = 0;
  WSAEVENT ev = host_upcalls.lpWPUCreateEvent(&err);
  uintptr_t port = 0;
  char rb[16], sb[1] = {'!'};
  double t0;
  int m = mode[0] == 'e' ? 0 : mode[0] == 'r' ? 1 : 2;
  if (!pa || !pc) return luaL_error(L, "not a socket");
  if (m == 2) port = port_for(a);
  t0 = lwsp_now();
  for (lua_Integer i = 0; i < n; i++) {
    WSAOVERLAPPED ov;
    WSABUF rbuf = {sizeof rb, rb}, sbuf = {1, sb};
    DWORD got = 0, flags = 0, sent = 0;
    memset(&ov, 0, sizeof ov);
    if (m == 0) { ov.hEvent = ev; host_upcalls.lpWPUResetEvent(ev, &err); }
    if (pa->procs.lpWSPRecv(a, &rbuf, 1, &got, &flags, &ov, m == 1 ? count_routine : NULL, &tid, &err) != 0 &&
        err != WSA_IO_PENDING)
      return luaL_error(L, "recv failed: %d", err);
    if (pc->procs.lpWSPSend(c, &sbuf, 1, &sent, 0, NULL, NULL, &tid, &err) != 0) return luaL_error(L, "send failed: %d", err);
    if (m == 0) { uintptr_t h = (uintptr_t)ev; host_wait(&h, 1, 0, 5000, 0); }
    else if (m == 1) { while (ov.Pointer != (PVOID)1) host_wait(NULL, 0, 0, 5000, 1); }
    else { hpacket k; if (host_dequeue(port, 5000, &k) != 1) return luaL_error(L, "no packet"); }
  }
  lua_pushnumber(L, lwsp_now() - t0);
  host_upcalls.lpWPUCloseEvent(ev, &err);
  if (port) host_close_object(port);
  return 1;
}

/* bench_overlapped_stream(a, c, "event"|"routine"|"port", total, depth [, size])
 * -> seconds, completions: a sender thread streams total bytes on c while this
 * thread keeps depth overlapped receives of size bytes (default 64) posted on a,
 * harvesting each completion by the mechanism and posting again, until total
 * bytes have arrived.  Completion throughput with a queue, not a round trip. */
#define STREAM_MAXDEPTH 256
/* the slots whose routines have run, in the order they ran (each slot is
 * posted again only after it is taken, so the ring never holds more than depth) */
typedef struct { int idx[STREAM_MAXDEPTH]; unsigned head, tail; } rring;
typedef struct { WSAOVERLAPPED ov; WSABUF wb; int done; DWORD bytes; rring *ring; int self; char buf[4096]; } rslot;
/* (not ov->Pointer as a flag: it shares its bytes with Offset and OffsetHigh,
 * which every completion writes) */
static void CALLBACK stream_routine(DWORD e, DWORD b, LPWSAOVERLAPPED ov, DWORD f) {
  rslot *r = (rslot *)(void *)ov;   /* ov is the slot's first member */
  (void)e; (void)f;
  r->bytes = b;
  r->done = 1;
  r->ring->idx[r->ring->tail++ % STREAM_MAXDEPTH] = r->self;
}
static int b_overlapped_stream(lua_State *L) {
  SOCKET a = (SOCKET)luaL_checkinteger(L, 1);
  const char *mode = luaL_checkstring(L, 3);
  size_t total = (size_t)luaL_checkinteger(L, 4), got = 0;
  int depth = (int)luaL_checkinteger(L, 5), m = mode[0] == 'e' ? 0 : mode[0] == 'r' ? 1 : 2;
  lua_Integer size = luaL_optinteger(L, 6, 64), completions = 0;
  hprov *pa = prov_of(a);
  WSATHREADID tid = {(HANDLE)host_current_thread(), 0};
  uintptr_t port = 0, evs[STREAM_MAXDEPTH];
  rring ring = {{0}, 0, 0};
  rslot *slots;
  sender x;
  lwsp_thread *t;
  double t0;
  INT err = 0;
  luaL_argcheck(L, depth >= 1 && depth <= (m == 0 ? 64 : STREAM_MAXDEPTH), 5, "depth out of range");
  luaL_argcheck(L, size >= 1 && size <= 4096, 6, "size out of range");
  x.s = (SOCKET)luaL_checkinteger(L, 2);
  x.p = prov_of(x.s);
  x.total = total;
  x.chunk = 65536;
  x.err = 0;
  if (!pa || !x.p) return luaL_error(L, "not a socket");
  if (!(slots = calloc((size_t)depth, sizeof *slots))) return luaL_error(L, "out of memory");
  if (m == 2) port = port_for(a);
  for (int i = 0; i < depth; i++) {
    slots[i].wb.buf = slots[i].buf;
    slots[i].wb.len = (ULONG)size;
    slots[i].ring = &ring;
    slots[i].self = i;
    if (m == 0) evs[i] = (uintptr_t)host_upcalls.lpWPUCreateEvent(&err);
  }
#define POST(i) do { \
    DWORD g_ = 0, f_ = 0; \
    memset(&slots[i].ov, 0, sizeof slots[i].ov); \
    slots[i].done = 0; \
    if (m == 0) { slots[i].ov.hEvent = (WSAEVENT)evs[i]; host_upcalls.lpWPUResetEvent((WSAEVENT)evs[i], &err); } \
    if (pa->procs.lpWSPRecv(a, &slots[i].wb, 1, &g_, &f_, &slots[i].ov, m == 1 ? stream_routine : NULL, &tid, &err) != 0 && \
        err != WSA_IO_PENDING) { free(slots); return luaL_error(L, "recv failed: %d", err); } \
  } while (0)
  t0 = lwsp_now();
  t = lwsp_thread_start(send_main, &x);
  for (int i = 0; i < depth; i++) POST(i);
  while (got < total) {
    int i = -1;
    DWORD bytes = 0;
    if (m == 2) {
      hpacket k;
      if (host_dequeue(port, 10000, &k) != 1) break;
      i = (int)((rslot *)(void *)k.ov - slots);
      bytes = k.bytes;
    } else if (m == 0) {
      int r = host_wait(evs, depth, 0, 10000, 0);
      if (r < 0) break;
      i = r;
      bytes = (DWORD)slots[i].ov.InternalHigh;
    } else {
      if (ring.head != ring.tail) { i = ring.idx[ring.head++ % STREAM_MAXDEPTH]; bytes = slots[i].bytes; }
      if (i < 0) { if (host_wait(NULL, 0, 0, 10000, 1) == -1) break; continue; }
    }
    if (i < 0 || i >= depth) break;
    if (slots[i].ov.OffsetHigh) break;   /* a failed receive */
    got += bytes;
    completions++;
    if (bytes == 0) break;               /* the peer closed */
    POST(i);
  }
#undef POST
  {
    double secs = lwsp_now() - t0;
    SOCKET c = x.s;
    INT e2 = 0;
    lwsp_thread_join(t);
    /* the receives still posted end with the socket; their WSAOVERLAPPEDs stay
     * ours until each has completed (and, for routines, its routine has run) */
    x.p->procs.lpWSPShutdown(c, SD_BOTH, &e2);
    pa->procs.lpWSPCloseSocket(a, &e2);
    for (double until = lwsp_now() + 10; lwsp_now() < until;) {
      int open = 0;
      for (int i = 0; i < depth; i++)
        open += m == 1 ? !slots[i].done : slots[i].ov.Internal == WSS_OPERATION_IN_PROGRESS;
      if (!open) break;
      host_wait(NULL, 0, 0, 10, 1);
    }
    if (m == 0) for (int i = 0; i < depth; i++) host_upcalls.lpWPUCloseEvent((WSAEVENT)evs[i], &e2);
    if (port) host_close_object(port);
    free(slots);
    if (got < total) return luaL_error(L, "received %d of %d bytes (sender error %d)", (int)got, (int)total, x.err);
    lua_pushnumber(L, secs);
    lua_pushinteger(L, completions);
    return 2;
  }
}

/* bench_heap() -> bytes the C heap holds (0 where unknown) */
static int b_heap(lua_State *L) {
#ifdef __GLIBC__
  struct mallinfo2 mi = mallinfo2();
  lua_pushinteger(L, (lua_Integer)mi.uordblks);
#else
  lua_pushinteger(L, 0);
#endif
  return 1;
}

/* The active Lua provider instance for the GUID at stack index 1, or NULL. */
static lwsp_inst *instance_arg(lua_State *L) {
  GUID g;
  if (!lwsp_guid_parse(luaL_checkstring(L, 1), &g)) luaL_argerror(L, 1, "not a GUID");
  for (int i = 0; i < LWSP_MAX_INSTANCES; i++)
    if (rt_live(&lwsp_instances[i]) && lwsp_guid_eq(&lwsp_instances[i].id, &g)) return &lwsp_instances[i];
  return NULL;
}

/* bench_instance(guid) -> {memory =, sockets =, pending =, lua_runs =} of a Lua provider in this
 * process (lua_runs: how many times Lua code has been entered: handlers, timers, APCs) */
static int b_instance(lua_State *L) {
  lwsp_inst *I = instance_arg(L);
  uint32_t live = 0, ops = 0;
  if (!I) { lua_pushnil(L); return 1; }
  lwsp_mutex_lock(&I->lock);
  for (uint32_t k = 0; k < I->nsocks; k++) live += rt_sock_at(I, k)->gen != 0;
  for (rt_op *op = I->ops; op; op = op->next) ops++;
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, ops); lua_setfield(L, -2, "pending");
  lua_pushinteger(L, (lua_Integer)I->lua_runs); lua_setfield(L, -2, "lua_runs");
  lua_pushinteger(L, (lua_Integer)I->mem); lua_setfield(L, -2, "memory");
  lua_pushinteger(L, live); lua_setfield(L, -2, "sockets");
  lwsp_mutex_unlock(&I->lock);
  return 1;
}

/* bench_collect(guid) -> bytes after a full garbage collection in that provider's state */
static int b_collect(lua_State *L) {
  lwsp_inst *I = instance_arg(L);
  size_t mem;
  if (!I) { lua_pushnil(L); return 1; }
  lwsp_mutex_lock(&I->lock);
  if (!I->active || I->closing || !I->L) { lwsp_mutex_unlock(&I->lock); lua_pushnil(L); return 1; }   /* cleaned up meanwhile */
  lua_gc(I->L, LUA_GCCOLLECT);
  mem = I->mem;
  lwsp_mutex_unlock(&I->lock);
  lua_pushinteger(L, (lua_Integer)mem);
  return 1;
}

int lwsp_hostbench_open(lua_State *L);
int lwsp_hostbench_open(lua_State *L) {
  static const luaL_Reg fns[] = {{"bench_calls", b_calls}, {"bench_stream", b_stream},
                                 {"bench_overlapped", b_overlapped}, {"bench_overlapped_stream", b_overlapped_stream}, {"bench_heap", b_heap},
                                 {"bench_instance", b_instance}, {"bench_collect", b_collect}, {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
  return 0;
}
