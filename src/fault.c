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

static lua_Number opt_num(lua_State *L, const char *k, lua_Number def) {
  lua_Number v = def;
  if (lua_getfield(L, 2, k) != LUA_TNIL) v = luaL_checknumber(L, -1);
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
    lwsp_mutex_unlock(&host_lock);
    lua_pushboolean(L, 1);
    return 1;
  }
  lwsp_mutex_unlock(&host_lock);
  {
    const char *name = luaL_checkstring(L, 1);
    point p;
    uint64_t seed = 0;
    int seeded = 0;
    luaL_checktype(L, 2, LUA_TTABLE);
    memset(&p, 0, sizeof p);
    luaL_argcheck(L, strlen(name) < sizeof p.name, 1, "point name too long");
    strcpy(p.name, name);
    p.every = (long)opt_num(L, "every", 0);
    p.probability = opt_num(L, "probability", 0);
    p.count = (long)opt_num(L, "count", 0);
    p.error = (int)opt_num(L, "error", WSAENOBUFS);
    /* every field read before the lock is taken: a bad one raises */
    if (lua_getfield(L, 2, "seed") != LUA_TNIL) { seed = (uint64_t)luaL_checkinteger(L, -1) * 0x9E3779B97F4A7C15ull | 1; seeded = 1; }
    lua_pop(L, 1);
    lwsp_mutex_lock(&host_lock);
    if (seeded) rng = seed;
    if (npoints == MAX_POINTS) { lwsp_mutex_unlock(&host_lock); return luaL_error(L, "too many fault points"); }
    points[npoints++] = p;
    armed = 1;
    lwsp_mutex_unlock(&host_lock);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* injected() -> {point = hits, ...} */
static int l_injected(lua_State *L) {
  lua_newtable(L);
  lwsp_mutex_lock(&host_lock);
  for (int i = 0; i < npoints; i++) {
    lua_pushinteger(L, points[i].hits);
    lua_setfield(L, -2, points[i].name);
  }
  lwsp_mutex_unlock(&host_lock);
  return 1;
}

int lwsp_fault_open(lua_State *L);
int lwsp_fault_open(lua_State *L) {
  lua_pushcfunction(L, l_inject);
  lua_setfield(L, -2, "inject");
  lua_pushcfunction(L, l_injected);
  lua_setfield(L, -2, "injected");
  return 0;
}
