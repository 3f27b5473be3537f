/*
 * view.c - zero-copy buffer views (userdata "lwsp.view").  A view covers the
 * caller's WSABUF array for the length of one call: reading copies only what
 * is asked for, writing goes straight into the caller's memory.  When the call
 * ends the view is invalidated, and any later use raises an error in Lua
 * instead of touching memory that is no longer the provider's.
 */
#include "runtime.h"
#include <string.h>

#define VIEW_MT "lwsp.view"

/* The tag lets the hot paths recognise a view without luaL_testudata's
 * registry lookup (scripts cannot forge userdata contents; anything else
 * falls back to the full check). */
#define VIEW_TAG 0x6c777370766965ULL

/* What a view covers lives in a C record, not in the userdata: the call that
 * made the view ends it by bumping the record's generation, whether or not
 * the handler still holds the userdata, so nothing need anchor the userdata
 * for the call's length.  Records are reused, never freed while the state is
 * open (a stale userdata still points at its record); rt_views_free frees them
 * after lua_close. */
typedef struct lwsp_view {
  uint32_t gen;
  DWORD n;
  const WSABUF *bufs;
  size_t len;
  int writable;
  struct lwsp_view *next;   /* the instance's list of idle records */
  struct lwsp_view *all;    /* every record of the instance */
} lwsp_view;

typedef struct {
  unsigned long long tag;
  lwsp_view *rec;
  uint32_t gen;             /* valid while it equals rec->gen */
} view_ud;

/* The view at idx (its record, or NULL if it expired), and whether idx is a view at all. */
static lwsp_view *to_view(lua_State *L, int idx, int *is_view) {
  view_ud *u = lwsp_tagged(L, idx, sizeof *u, VIEW_TAG);
  if (!u) u = luaL_testudata(L, idx, VIEW_MT);
  *is_view = u != NULL;
  return u && u->gen == u->rec->gen ? u->rec : NULL;
}

static lwsp_view *check_view(lua_State *L, int idx) {
  int is_view;
  lwsp_view *v = to_view(L, idx, &is_view);
  if (!is_view) luaL_typeerror(L, idx, VIEW_MT);
  if (!v) luaL_error(L, "buffer view used after its call returned");
  return v;
}

/* Copies bytes [off, off + len) of the view into out. */
static void view_read(const lwsp_view *v, size_t off, char *out, size_t len) {
  for (DWORD i = 0; i < v->n && len; i++) {
    size_t blen = v->bufs[i].len;
    if (off >= blen) { off -= blen; continue; }
    size_t k = blen - off < len ? blen - off : len;
    memcpy(out, v->bufs[i].buf + off, k);
    out += k;
    len -= k;
    off = 0;
  }
}

static size_t view_write(const lwsp_view *v, size_t off, const char *data, size_t len) {
  size_t done = 0;
  for (DWORD i = 0; i < v->n && len; i++) {
    size_t blen = v->bufs[i].len;
    if (off >= blen) { off -= blen; continue; }
    size_t k = blen - off < len ? blen - off : len;
    memcpy(v->bufs[i].buf + off, data, k);
    data += k;
    len -= k;
    done += k;
    off = 0;
  }
  return done;
}

/* Lua-style [i, j] (1-based, negative from the end) into [off, off + n). */
static void range(lua_State *L, const lwsp_view *v, int ai, size_t *off, size_t *n) {
  lua_Integer len = (lua_Integer)v->len;
  lua_Integer i = luaL_optinteger(L, ai, 1), j = luaL_optinteger(L, ai + 1, -1);
  if (i < 0) i = len + i + 1 > 0 ? len + i + 1 : 1;
  else if (i == 0) i = 1;
  if (j < 0) j = len + j + 1;
  else if (j > len) j = len;
  *off = (size_t)(i - 1);
  *n = i > j ? 0 : (size_t)(j - i + 1);
}

/* view:tostring([i [, j]]) -> the bytes as a string */
static int v_tostring(lua_State *L) {
  lwsp_view *v = check_view(L, 1);
  size_t off, n;
  luaL_Buffer b;
  range(L, v, 2, &off, &n);
  view_read(v, off, luaL_buffinitsize(L, &b, n), n);
  luaL_pushresultsize(&b, n);
  return 1;
}

/* view:byte([i [, j]]) -> byte values, like string.byte */
static int v_byte(lua_State *L) {
  lwsp_view *v = check_view(L, 1);
  lua_Integer i = luaL_optinteger(L, 2, 1), j = luaL_optinteger(L, 3, i);
  size_t off, n;
  unsigned char tmp[64];
  lua_settop(L, 1);
  lua_pushinteger(L, i);
  lua_pushinteger(L, j);
  range(L, v, 2, &off, &n);
  luaL_argcheck(L, n <= sizeof tmp, 3, "at most 64 bytes at a time");
  view_read(v, off, (char *)tmp, n);
  for (size_t k = 0; k < n; k++) lua_pushinteger(L, tmp[k]);
  return (int)n;
}

/* view:write(data [, offset = 0]) -> bytes written (a writable view only) */
static int v_write(lua_State *L) {
  lwsp_view *v = check_view(L, 1);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  lua_Integer off = luaL_optinteger(L, 3, 0);
  luaL_argcheck(L, v->writable, 1, "this view is read-only");
  luaL_argcheck(L, off >= 0 && (size_t)off <= v->len, 3, "offset out of range");
  lua_pushinteger(L, (lua_Integer)view_write(v, (size_t)off, data, len));
  return 1;
}

static int v_len(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)check_view(L, 1)->len);
  return 1;
}

static int v_name(lua_State *L) {
  view_ud *u = luaL_checkudata(L, 1, VIEW_MT);
  int live = u->gen == u->rec->gen;
  lua_pushfstring(L, "lwsp.view (%d bytes%s)", live ? (int)u->rec->len : 0, live ? "" : ", expired");
  return 1;
}

static void push_view_mt(lwsp_inst *I, lua_State *co) {
  static const luaL_Reg methods[] = {{"tostring", v_tostring}, {"byte", v_byte}, {"write", v_write}, {NULL, NULL}};
  if (I->view_mt) { lua_rawgeti(co, LUA_REGISTRYINDEX, I->view_mt); return; }
  luaL_newmetatable(co, VIEW_MT);
  lua_pushcfunction(co, v_len); lua_setfield(co, -2, "__len");
  lua_pushcfunction(co, v_name); lua_setfield(co, -2, "__tostring");
  luaL_newlib(co, methods);
  lua_setfield(co, -2, "__index");
  lua_pushvalue(co, -1);
  I->view_mt = luaL_ref(co, LUA_REGISTRYINDEX);
}

/* Pushes a view of (bufs, n); the caller must call rt_view_end before the
 * buffers stop being valid.  NULL (and nothing pushed) when out of memory. */
void *rt_push_view(lwsp_inst *I, lua_State *co, const WSABUF *bufs, DWORD n, size_t len, int writable) {
  lwsp_view *v = I->views_idle;
  view_ud *u;
  if (v) {
    I->views_idle = v->next;
  } else {
    if (!(v = calloc(1, sizeof *v))) return NULL;
    v->all = I->views_all;
    I->views_all = v;
  }
  v->bufs = bufs;
  v->n = n;
  v->len = len;
  v->writable = writable;
  u = lua_newuserdatauv(co, sizeof *u, 0);
  u->tag = VIEW_TAG;
  u->rec = v;
  u->gen = v->gen;
  push_view_mt(I, co);
  lua_setmetatable(co, -2);
  return v;
}

/* If idx is a view: its buffers (raising if it expired, or is read-only where
 * writable is asked), and 1; otherwise 0. */
int rt_view_bufs(lua_State *L, int idx, const WSABUF **bufs, DWORD *n, size_t *len, int writable) {
  int is_view;
  lwsp_view *v = to_view(L, idx, &is_view);
  if (!is_view) return 0;
  if (!v) luaL_error(L, "buffer view used after its call returned");
  if (writable && !v->writable) luaL_argerror(L, idx, "this view is read-only");
  *bufs = v->bufs;
  *n = v->n;
  *len = v->len;
  return 1;
}

void rt_view_end(lwsp_inst *I, void *view) {
  lwsp_view *v = view;
  v->gen++;   /* every userdata of this call's view expires */
  v->bufs = NULL;
  v->n = 0;
  v->len = 0;
  v->next = I->views_idle;
  I->views_idle = v;
}

void rt_view_retarget(void *view, const WSABUF *bufs) {
  ((lwsp_view *)view)->bufs = bufs;
}

void rt_views_free(lwsp_inst *I) {
  for (lwsp_view *v = I->views_all, *next; v; v = next) {
    next = v->all;
    free(v);
  }
  I->views_all = I->views_idle = NULL;
  I->view_mt = 0;
}
