/*
 * sockets.c - an instance's socket table: slots with generation numbers, so
 * that a handle context maps back to its Lua socket in O(1) and a stale
 * handle (a closed socket, a cleaned-up instance) is recognised.
 */
#include "runtime.h"
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdarg.h>
#include <limits.h>
#include <stdint.h>

static uint32_t g_gen;

static uint32_t next_gen(void) {
  uint32_t g;
  do g = __atomic_add_fetch(&g_gen, 1, __ATOMIC_RELAXED); while (g == 0);
  return g;
}

/* ---- sockets: slots with generations ------------------------------------------
 * A non-IFS handle's context is (generation << IDX_BITS | index + 1).  The
 * generation is process-wide and never 0, so a context from a closed socket,
 * or from an instance that has since been cleaned up, never matches. */
#define IDX_BITS (sizeof(DWORD_PTR) >= 8 ? 32 : 16)
#define IDX_MASK ((((DWORD_PTR)1) << IDX_BITS) - 1)

static DWORD_PTR rt_sock_context(lwsp_sock *so) {
  return ((DWORD_PTR)so->gen << IDX_BITS) | (DWORD_PTR)(so->idx + 1);
}

lwsp_sock *rt_sock_at(lwsp_inst *I, uint32_t idx) {
  return &I->chunks[idx / LWSP_SOCK_CHUNK][idx % LWSP_SOCK_CHUNK];
}

static lwsp_sock *rt_sock_alloc(lwsp_inst *I) {
  lwsp_sock *so;
  uint32_t idx;
  if (I->free_head) {
    idx = I->free_head - 1;
    so = rt_sock_at(I, idx);
    I->free_head = so->next_free;
  } else {
    idx = I->nsocks;
    if (idx >= IDX_MASK - 1) return NULL;
    if (idx == I->nchunks * LWSP_SOCK_CHUNK) {
      lwsp_sock **nc = realloc(I->chunks, (I->nchunks + 1) * sizeof *nc);
      if (!nc) return NULL;
      I->chunks = nc;
      if (!(nc[I->nchunks] = calloc(LWSP_SOCK_CHUNK, sizeof(lwsp_sock)))) return NULL;
      I->nchunks++;
    }
    I->nsocks++;
    so = rt_sock_at(I, idx);
  }
  memset(so, 0, sizeof *so);
  so->idx = idx;
  so->gen = next_gen() & (uint32_t)(sizeof(DWORD_PTR) >= 8 ? 0xffffffffu : 0xffffu);
  if (!so->gen) so->gen = 1;
  so->ref = LUA_NOREF;
  return so;
}

static void rt_sock_free(lwsp_inst *I, lwsp_sock *so) {
  luaL_unref(I->L, LUA_REGISTRYINDEX, so->ref);
  if (so->ifs && so->handle) lwsp_map_del(&I->ifsmap, so->handle);
  so->gen = 0;
  so->ref = LUA_NOREF;
  so->handle = 0;
  so->next_free = I->free_head;
  I->free_head = so->idx + 1;
}

/* Finds the live socket for a handle of this instance, or NULL. */
lwsp_sock *rt_sock_find(lwsp_inst *I, SOCKET s) {
  DWORD_PTR ctx = 0;
  INT e = 0;
  uint32_t idx;
  lwsp_sock *so;
  if (I->ifsmap.count) {
    void *v = lwsp_map_get(&I->ifsmap, s);
    if (v) return rt_sock_at(I, (uint32_t)((uintptr_t)v - 1))->closing ? NULL : rt_sock_at(I, (uint32_t)((uintptr_t)v - 1));
  }
  if (I->up.lpWPUQuerySocketHandleContext(s, &ctx, &e) != 0) return NULL;
  idx = (uint32_t)(ctx & IDX_MASK);
  if (idx == 0 || idx > I->nsocks) return NULL;
  so = rt_sock_at(I, idx - 1);
  if (so->gen == 0 || so->closing || so->ifs || so->handle != s || (DWORD_PTR)so->gen != (ctx >> IDX_BITS)) return NULL;
  return so;
}

/* Creates the socket's Lua table {handle = h} and, for non-IFS providers, its
 * handle through WPUCreateSocketHandle.  Leaves the table on L's stack. */
lwsp_sock *rt_sock_open(lwsp_inst *I, lua_State *co, int af, DWORD catalog, LPINT err) {
  lwsp_sock *so = rt_sock_alloc(I);
  if (!so) { *err = WSAENOBUFS; return NULL; }
  so->af = af;
  so->catalog = catalog;
  if (!I->ifs) {
    INT e = 0;
    SOCKET h = I->up.lpWPUCreateSocketHandle(so->catalog, rt_sock_context(so), &e);
    if (h == INVALID_SOCKET) {
      lwsp_log(I->name, "WPUCreateSocketHandle failed: %s", lwsp_error_name(e) ? lwsp_error_name(e) : "?");
      rt_sock_free(I, so);
      *err = e ? e : WSAENOBUFS;
      return NULL;
    }
    so->handle = h;
  }
  lua_createtable(co, 0, 4);
  if (so->handle) {
    lua_pushinteger(co, (lua_Integer)so->handle);
    lua_setfield(co, -2, "handle");
  }
  lua_pushvalue(co, -1);
  so->ref = luaL_ref(co, LUA_REGISTRYINDEX);
  return so;
}

static void sock_destroy(lwsp_inst *I, lwsp_sock *so) {
  if (!so->ifs && so->handle) {
    INT e = 0;
    if (I->up.lpWPUCloseSocketHandle(so->handle, &e) != 0)
      lwsp_log(I->name, "WPUCloseSocketHandle(%llu) failed: %d", (unsigned long long)so->handle, e);
  }
  rt_sock_free(I, so);
}

/* Gives up a socket: its Lua table at once, its handle (WPUCloseSocketHandle)
 * and slot once no operation or completion delivery is outstanding. */
void rt_sock_close(lwsp_inst *I, lwsp_sock *so) {
  so->closing = 1;
  luaL_unref(I->L, LUA_REGISTRYINDEX, so->ref);
  so->ref = LUA_NOREF;
  if (so->pending == 0) sock_destroy(I, so);
}

void rt_sock_release(lwsp_inst *I, lwsp_sock *so) {
  if (--so->pending == 0 && so->closing) sock_destroy(I, so);
}

/* Registers an IFS handle proposed by the provider's handler. */
int rt_sock_set_ifs(lwsp_inst *I, lwsp_sock *so, lua_State *co, int idx, LPINT err) {
  INT e = 0;
  SOCKET h;
  if (!lua_isinteger(co, idx) || lua_tointeger(co, idx) <= 0) {
    lwsp_log(I->name, "an IFS provider must return its socket handle (an integer), got %s", luaL_typename(co, idx));
    *err = WSAENETDOWN;
    return 0;
  }
  h = I->up.lpWPUModifyIFSHandle(so->catalog, (SOCKET)lua_tointeger(co, idx), &e);
  if (h == INVALID_SOCKET) { *err = e ? e : WSAEINVAL; return 0; }
  if (!lwsp_map_put(&I->ifsmap, h, (void *)(uintptr_t)(so->idx + 1))) { *err = WSAENOBUFS; return 0; }
  so->ifs = 1;
  so->handle = h;
  lua_rawgeti(co, LUA_REGISTRYINDEX, so->ref);
  lua_pushinteger(co, (lua_Integer)h);
  lua_setfield(co, -2, "handle");
  lua_pop(co, 1);
  return 1;
}
