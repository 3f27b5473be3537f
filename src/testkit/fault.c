/*
 * fault.c - fault injection for lwsp's host and lower-layer calls.
 *
 * lwsp.host.inject(point, {every = n | probability = p, seed = s, error = code,
 * count = max}) arms a fault point; lwsp.host.inject() disarms all.  Points:
 * upcall names ("WPUCreateSocketHandle", "WPUQueueApc", ...), and
 * "lower.<call>" for a layered provider's calls to the layer below
 * ("lower.send", "lower.recv", "lower.connect", ...).  A hit makes the call fail
 * with the point's error, as if the host or the lower layer had.
 */
#include "host.h"
#include <string.h>
#include <stdlib.h>

#define MAX_POINTS 32
typedef struct {
  char name[48];
  long every, calls, count, hits;
  double probability;
  int error;
} point;

static point points[MAX_POINTS];
static int npoints;
static uint64_t rng = 0x9E3779B97F4A7C15ull;
volatile int lwsp_faults_armed;
#define armed lwsp_faults_armed

static double next_random(void) {
  rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
  return (double)(rng >> 11) / 9007199254740992.0;
}

/* 0, or the Winsock error a call at this point must fail with now. */
int lwsp_fault(const char *name) {
  int e = 0;
  if (!armed) return 0;
  lwsp_mutex_lock(&host_lock);
  for (int i = 0; i < npoints; i++) {
    point *p = &points[i];
    if (strcmp(p->name, name) != 0) continue;
    p->calls++;
    if (p->count && p->hits >= p->count) break;
    if ((p->every && p->calls % p->every == 0) || (p->probability > 0 && next_random() < p->probability)) {
      p->hits++;
      e = p->error;
    }
    break;
  }
  lwsp_mutex_unlock(&host_lock);
  return e;
}

/* The points that exist: a name not among them would never fire. */
static const char *const known_points[] = {
  "WPUCreateSocketHandle", "WPUQuerySocketHandleContext", "WPUModifyIFSHandle", "WPUCreateEvent", "WPUSetEvent",
  "WPUResetEvent", "WPUCloseEvent", "WPUPostMessage", "WPUQueueApc", "WPUOpenCurrentThread",
  "WPUCompleteOverlappedRequest", "lower.socket", "lower.close", "lower.bind", "lower.listen", "lower.connect",
  "lower.accept", "lower.send", "lower.recv", "lower.shutdown", "lower.getsockname", "lower.getsockopt",
  "lower.setsockopt", "lower.ioctl", "lower.select", NULL};

/* An integer option of the table at 2 within lo..hi (an argument error otherwise). */
static lua_Integer opt_int(lua_State *L, const char *k, lua_Integer def, lua_Integer lo, lua_Integer hi) {
  lua_Integer v = def;
  if (lua_getfield(L, 2, k) != LUA_TNIL) {
    int isint;
    v = lua_tointegerx(L, -1, &isint);
    if (!isint || v < lo || v > hi)
      luaL_argerror(L, 2, lua_pushfstring(L, "'%s' must be an integer (%I..%I)", k, lo, hi));
  }
  lua_pop(L, 1);
  return v;
}

/* inject([point, {...}]) -> true; with no arguments, disarms every point */
static int l_inject(lua_State *L) {
  host_init();
  lwsp_mutex_lock(&host_lock);
  if (lua_isnoneornil(L, 1)) {
    npoints = 0;
    armed = 0;
    *host_rt->faults_armed = 0;
    lwsp_mutex_unlock(&host_lock);
    lua_pushboolean(L, 1);
    return 1;
  }
  lwsp_mutex_unlock(&host_lock);
  {
    int which = luaL_checkoption(L, 1, NULL, known_points), at;
    point p;
    uint64_t seed = 0;
    int seeded = 0;
    luaL_checktype(L, 2, LUA_TTABLE);
    memset(&p, 0, sizeof p);
    strcpy(p.name, known_points[which]);
    p.every = (long)opt_int(L, "every", 0, 0, INT32_MAX);
    p.count = (long)opt_int(L, "count", 0, 0, INT32_MAX);
    /* 0 would be a hit that fails nothing */
    p.error = (int)opt_int(L, "error", WSAENOBUFS, 1, INT32_MAX);
    if (lua_getfield(L, 2, "probability") != LUA_TNIL) {
      lua_Number v = luaL_checknumber(L, -1);
      luaL_argcheck(L, v >= 0 && v <= 1, 2, "'probability' must be a number (0..1)");   /* (a NaN fails both) */
      p.probability = v;
    }
    lua_pop(L, 1);
    /* every field read before the lock is taken: a bad one raises */
    if (lua_getfield(L, 2, "seed") != LUA_TNIL) { seed = (uint64_t)luaL_checkinteger(L, -1) * 0x9E3779B97F4A7C15ull | 1; seeded = 1; }
    lua_pop(L, 1);
    lwsp_mutex_lock(&host_lock);
    if (seeded) rng = seed;
    /* arming a point again replaces what it had */
    for (at = 0; at < npoints && strcmp(points[at].name, p.name) != 0; at++) {}
    if (at == MAX_POINTS) { lwsp_mutex_unlock(&host_lock); return luaL_error(L, "too many fault points"); }
    points[at] = p;
    if (at == npoints) npoints++;
    armed = 1;
    *host_rt->faults_armed = 1;
    lwsp_mutex_unlock(&host_lock);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* injected() -> {point = hits, ...} */
static int l_injected(lua_State *L) {
  point copy[MAX_POINTS];
  int n;
  /* copied under the lock, pushed without it (no Lua call under host_lock) */
  lwsp_mutex_lock(&host_lock);
  n = npoints;
  memcpy(copy, points, (size_t)n * sizeof *copy);
  lwsp_mutex_unlock(&host_lock);
  lua_newtable(L);
  for (int i = 0; i < n; i++) {
    lua_pushinteger(L, copy[i].hits);
    lua_setfield(L, -2, copy[i].name);
  }
  return 1;
}

int lwsp_fault_open(lua_State *L);
int lwsp_fault_open(lua_State *L) {
  static const luaL_Reg fns[] = {{"inject", l_inject}, {"injected", l_injected}, {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
  return 0;
}
