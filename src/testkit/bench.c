/*
 * bench.c - measuring loops for bench/ (lwsp.host.bench_*): each calls a
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

/* The most calls, bytes and CPUs a measuring loop takes: enough for any
 * benchmark, and a bad argument never becomes a loop without end. */
#define BENCH_MAX_CALLS 1000000000LL
#define BENCH_MAX_BYTES (1LL << 40)
#define BENCH_MAX_CHUNK (16LL * 1024 * 1024)
#define BENCH_WAIT_MS 5000

static hprov *prov_of(SOCKET s) {
  int err = 0;
  return host_prov_of(s, &err);
}

/* bench_calls(s, "getsockopt"|"send64", n) -> seconds for n calls */
static int b_calls(lua_State *L) {
  static const char *const ops[] = {"getsockopt", "send64", NULL};
  SOCKET s = (SOCKET)luaL_checkinteger(L, 1);
  int send = luaL_checkoption(L, 2, NULL, ops) == 1;
  lua_Integer n = host_arg_range(L, 3, 0, BENCH_MAX_CALLS, "count");
  hprov *p = prov_of(s);
  char buf[64] = {0};
  WSABUF b = {64, buf};
  WSATHREADID tid = {(HANDLE)host_current_thread(), 0};
  double t0;
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
#define CPU_MAX 63
typedef DWORD_PTR cpu_mask;
static int cpu_pin(int cpu, cpu_mask *old) {
  DWORD_PTR prev = SetThreadAffinityMask(GetCurrentThread(), (DWORD_PTR)1 << cpu);
  if (old) *old = prev;
  return prev != 0;
}
static void cpu_restore(const cpu_mask *old) { SetThreadAffinityMask(GetCurrentThread(), *old); }
#elif defined(__linux__)
#  include <sched.h>
#define CPU_MAX (CPU_SETSIZE - 1)
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
#define CPU_MAX 0
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
  if (!buf) { x->err = WSAENOBUFS; return; }
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
  x.total = (size_t)host_arg_range(L, 3, 0, BENCH_MAX_BYTES, "total");
  x.chunk = (size_t)host_arg_range(L, 4, 1, BENCH_MAX_CHUNK, "chunk");
  x.cpu = (int)host_opt_range(L, 5, -1, -1, CPU_MAX, "cpu");
  memset(&mask, 0, sizeof mask);
  x.err = 0;
  if (!x.p || !pa) return luaL_error(L, "not a socket");
  if (!(buf = malloc(x.chunk))) return luaL_error(L, "out of memory");
  if (x.cpu >= 0 && !cpu_pin(x.cpu, &mask)) { free(buf); return luaL_error(L, "cannot pin threads to CPU %d here", x.cpu); }
  t0 = lwsp_now();
  if (!(t = lwsp_thread_start(send_main, &x))) {
    free(buf);
    if (x.cpu >= 0) cpu_restore(&mask);
    return luaL_error(L, "cannot start a thread");
  }
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

static const char *const bench_modes[] = {"event", "routine", "port", NULL};

/* A structure and buffer a pending receive may still write to: freed only
 * once its completion was seen, else leaked and the leak logged. */
typedef struct { WSAOVERLAPPED ov; char rb[16]; } ping_slot;

/* bench_overlapped(a, c, "event"|"routine"|"port", n) -> seconds for n
 * overlapped receives on a, each completed by a 1-byte send on c; raises if
 * a completion does not come within 5 s */
static int b_overlapped(lua_State *L) {
  SOCKET a = (SOCKET)luaL_checkinteger(L, 1), c = (SOCKET)luaL_checkinteger(L, 2);
  int m = luaL_checkoption(L, 3, NULL, bench_modes);
  lua_Integer n = host_arg_range(L, 4, 0, BENCH_MAX_CALLS, "count");
  hprov *pa = prov_of(a), *pc = prov_of(c);
  WSATHREADID tid = {(HANDLE)host_current_thread(), 0};
  INT err = 0;
  WSAEVENT ev = WSA_INVALID_EVENT;
  uintptr_t port = 0;
  char sb[1] = {'!'}, why[80] = "";
  double t0, secs;
  int in_use = 0;
  ping_slot *slot;
  if (!pa || !pc) return luaL_error(L, "not a socket");
  if (!(slot = calloc(1, sizeof *slot))) return luaL_error(L, "out of memory");
  if (m == 0 && (ev = host_upcalls.lpWPUCreateEvent(&err)) == WSA_INVALID_EVENT) { free(slot); return luaL_error(L, "no event: %d", err); }
  if (m == 2 && !(port = port_for(a))) { free(slot); return luaL_error(L, "no completion port"); }
  t0 = lwsp_now();
  for (lua_Integer i = 0; i < n && !why[0]; i++) {
    WSABUF rbuf = {sizeof slot->rb, slot->rb}, sbuf = {1, sb};
    DWORD got = 0, flags = 0, sent = 0;
    memset(&slot->ov, 0, sizeof slot->ov);
    if (m == 0) { slot->ov.hEvent = ev; host_upcalls.lpWPUResetEvent(ev, &err); }
    if (pa->procs.lpWSPRecv(a, &rbuf, 1, &got, &flags, &slot->ov, m == 1 ? count_routine : NULL, &tid, &err) != 0 &&
        err != WSA_IO_PENDING) {
      snprintf(why, sizeof why, "recv failed: %d", err);   /* failed at once: nothing pending */
      break;
    }
    in_use = 1;
    if (pc->procs.lpWSPSend(c, &sbuf, 1, &sent, 0, NULL, NULL, &tid, &err) != 0) { snprintf(why, sizeof why, "send failed: %d", err); break; }
    if (m == 0) {
      uintptr_t h = (uintptr_t)ev;
      if (host_wait(&h, 1, 0, BENCH_WAIT_MS, 0) != 0) snprintf(why, sizeof why, "no completion");
    } else if (m == 1) {
      double until = lwsp_now() + BENCH_WAIT_MS / 1000.0;
      while (slot->ov.Pointer != (PVOID)1 && lwsp_now() < until) host_wait(NULL, 0, 0, 100, 1);
      if (slot->ov.Pointer != (PVOID)1) snprintf(why, sizeof why, "no completion");
    } else {
      hpacket k;
      if (host_dequeue(port, BENCH_WAIT_MS, &k) != 1) snprintf(why, sizeof why, "no packet");
    }
    if (!why[0]) in_use = 0;
  }
  secs = lwsp_now() - t0;
  if (m == 0) host_upcalls.lpWPUCloseEvent(ev, &err);
  if (port) host_close_object(port);
  if (in_use) {
    lwsp_log("host", "bench_overlapped: a receive is still pending: its structure %p is kept, not freed", (void *)slot);
    host_park(slot);
  } else {
    free(slot);
  }
  if (why[0]) return luaL_error(L, "%s", why);
  lua_pushnumber(L, secs);
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
typedef struct { WSAOVERLAPPED ov; WSABUF wb; int done, posted; DWORD bytes; rring *ring; int self; char buf[4096]; } rslot;
/* (not ov->Pointer as a flag: it shares its bytes with Offset and OffsetHigh,
 * which every completion writes) */
static void CALLBACK stream_routine(DWORD e, DWORD b, LPWSAOVERLAPPED ov, DWORD f) {
  rslot *r = (rslot *)(void *)ov;   /* ov is the slot's first member */
  (void)e; (void)f;
  r->bytes = b;
  r->done = 1;
  r->ring->idx[r->ring->tail++ % STREAM_MAXDEPTH] = r->self;
}
typedef struct { hprov *p; SOCKET a; int m; WSATHREADID tid; uintptr_t *evs; rslot *slots; } rstream;
/* Posts slot i's receive: 0, or the error it failed with at once (then
 * nothing is pending on the slot). */
static int post_slot(rstream *q, int i) {
  rslot *r = &q->slots[i];
  DWORD g = 0, f = 0;
  INT err = 0;
  memset(&r->ov, 0, sizeof r->ov);
  r->done = 0;
  if (q->m == 0) { r->ov.hEvent = (WSAEVENT)q->evs[i]; host_upcalls.lpWPUResetEvent((WSAEVENT)q->evs[i], &err); }
  if (q->p->procs.lpWSPRecv(q->a, &r->wb, 1, &g, &f, &r->ov, q->m == 1 ? stream_routine : NULL, &q->tid, &err) != 0 &&
      err != WSA_IO_PENDING)
    return err ? err : WSASYSCALLFAILURE;
  r->posted = 1;
  return 0;
}
/* Whether slot i may still be written to: posted, and its completion (for a
 * routine, the routine's run) not seen. */
static int slot_open(rstream *q, int i) {
  rslot *r = &q->slots[i];
  if (!r->posted) return 0;
  return q->m == 1 ? !__atomic_load_n(&r->done, __ATOMIC_ACQUIRE)
                   : __atomic_load_n(&r->ov.Internal, __ATOMIC_ACQUIRE) == WSS_OPERATION_IN_PROGRESS;
}
/* bench_overlapped_stream(a, c, mode, total, depth [, size]): a queue of
 * overlapped receives on a while a thread streams from c.  Over 80 lines:
 * the timed loop, its setup and its teardown stay in one frame so that what
 * is measured is the provider, not calls between helpers. */
static int b_overlapped_stream(lua_State *L) {
  SOCKET a = (SOCKET)luaL_checkinteger(L, 1);
  int m = luaL_checkoption(L, 3, NULL, bench_modes);
  size_t total = (size_t)host_arg_range(L, 4, 0, BENCH_MAX_BYTES, "total"), got = 0;
  int depth = (int)host_arg_range(L, 5, 1, m == 0 ? 64 : STREAM_MAXDEPTH, "depth");
  lua_Integer size = host_opt_range(L, 6, 64, 1, 4096, "size"), completions = 0;
  hprov *pa = prov_of(a);
  uintptr_t port = 0, evs[STREAM_MAXDEPTH];
  rring ring = {{0}, 0, 0};
  rstream q;
  sender x;
  lwsp_thread *t;
  double t0;
  int failed = 0, open = 0;
  INT err = 0;
  x.s = (SOCKET)luaL_checkinteger(L, 2);
  x.p = prov_of(x.s);
  x.total = total;
  x.chunk = 65536;
  x.err = 0;
  x.cpu = -1;
  if (!pa || !x.p) return luaL_error(L, "not a socket");
  q.p = pa; q.a = a; q.m = m; q.evs = evs;
  q.tid.ThreadHandle = (HANDLE)host_current_thread(); q.tid.Reserved = 0;
  if (!(q.slots = calloc((size_t)depth, sizeof *q.slots))) return luaL_error(L, "out of memory");
  if (m == 2 && !(port = port_for(a))) { free(q.slots); return luaL_error(L, "no completion port"); }
  for (int i = 0; i < depth; i++) {
    q.slots[i].wb.buf = q.slots[i].buf;
    q.slots[i].wb.len = (ULONG)size;
    q.slots[i].ring = &ring;
    q.slots[i].self = i;
    if (m == 0) evs[i] = (uintptr_t)host_upcalls.lpWPUCreateEvent(&err);
  }
  t0 = lwsp_now();
  if (!(t = lwsp_thread_start(send_main, &x))) failed = WSAENOBUFS;
  for (int i = 0; i < depth && !failed; i++) failed = post_slot(&q, i);
  while (got < total && !failed) {
    int i = -1;
    DWORD bytes = 0;
    if (m == 2) {
      hpacket k;
      if (host_dequeue(port, 2 * BENCH_WAIT_MS, &k) != 1) break;
      i = (int)((rslot *)(void *)k.ov - q.slots);
      bytes = k.bytes;
    } else if (m == 0) {
      int r = host_wait(evs, depth, 0, 2 * BENCH_WAIT_MS, 0);
      if (r < 0) break;
      i = r;
      bytes = (DWORD)q.slots[i].ov.InternalHigh;
    } else {
      if (ring.head != ring.tail) { i = ring.idx[ring.head++ % STREAM_MAXDEPTH]; bytes = q.slots[i].bytes; }
      if (i < 0) { if (host_wait(NULL, 0, 0, 2 * BENCH_WAIT_MS, 1) == -1) break; continue; }
    }
    if (i < 0 || i >= depth) break;
    q.slots[i].posted = 0;                 /* its completion is seen */
    if (q.slots[i].ov.OffsetHigh) break;   /* a failed receive */
    got += bytes;
    completions++;
    if (bytes == 0) break;                 /* the peer closed */
    failed = post_slot(&q, i);
  }
  {
    double secs = lwsp_now() - t0;
    SOCKET c = x.s;
    INT e2 = 0;
    if (t) lwsp_thread_join(t);
    /* the receives still posted end with the socket; their WSAOVERLAPPEDs stay
     * ours until each has completed (and, for routines, its routine has run) */
    x.p->procs.lpWSPShutdown(c, SD_BOTH, &e2);
    pa->procs.lpWSPCloseSocket(a, &e2);
    for (double until = lwsp_now() + 2 * BENCH_WAIT_MS / 1000.0; lwsp_now() < until;) {
      open = 0;
      for (int i = 0; i < depth; i++) open += slot_open(&q, i);
      if (!open) break;
      host_wait(NULL, 0, 0, 10, 1);
    }
    if (m == 0) for (int i = 0; i < depth; i++) host_upcalls.lpWPUCloseEvent((WSAEVENT)evs[i], &e2);
    if (port) host_close_object(port);
    if (open) {
      lwsp_log("host", "bench_overlapped_stream: %d receives still pending: their structures are kept, not freed", open);
      host_park(q.slots);
    } else {
      free(q.slots);
    }
    if (failed) return luaL_error(L, "recv failed: %d", failed);
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
    if (rt_live(&host_rt->instances[i]) && lwsp_guid_eq(&host_rt->instances[i].id, &g)) return &host_rt->instances[i];
  return NULL;
}

/* bench_instance(guid) -> {memory =, sockets =, pending =, lua_runs =} of a Lua provider in this
 * process (lua_runs: how many times Lua code has been entered: handlers, timers, APCs) */
static int b_instance(lua_State *L) {
  lwsp_inst *I = instance_arg(L);
  uint32_t live = 0, ops = 0;
  lua_Integer runs, mem;
  if (!I) { lua_pushnil(L); return 1; }
  /* read under the provider's lock, pushed without it (no Lua call of the
   * application's state under a provider's lock) */
  lwsp_mutex_lock(&I->lock);
  for (uint32_t k = 0; k < I->nsocks; k++) live += host_rt->sock_at(I, k)->gen != 0;
  for (rt_op *op = I->ops; op; op = op->next) ops++;
  runs = (lua_Integer)I->lua_runs;
  mem = (lua_Integer)I->mem;
  lwsp_mutex_unlock(&I->lock);
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, ops); lua_setfield(L, -2, "pending");
  lua_pushinteger(L, runs); lua_setfield(L, -2, "lua_runs");
  lua_pushinteger(L, mem); lua_setfield(L, -2, "memory");
  lua_pushinteger(L, live); lua_setfield(L, -2, "sockets");
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
