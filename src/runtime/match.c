/*
 * match.c - string.find, string.match, string.gmatch and string.gsub in a
 * provider's state: Lua 5.4's patterns, with a bound on what one call may do.
 *
 * Lua's own matcher backtracks: a pattern such as ".-.-.-.-x" on a few
 * kilobytes takes hours inside one C call, where no hook can reach it.  This
 * one counts its steps (a pattern item tried at a subject position, a
 * character of a repetition, a byte span of a comparison) and raises "pattern
 * matching budget exceeded" once a call has made as many as the provider's
 * instruction budget (none when the budget is 0).  Everything else is Lua's
 * meaning: the same results, the same errors, the same limits (32 captures,
 * 200 levels of pattern recursion).
 */
#include "runtime.h"
#include <ctype.h>
#include <limits.h>
#include <string.h>

#define M_MAXCAPTURES 32
#define M_MAXDEPTH 200
#define CAP_UNFINISHED (-1)
#define CAP_POSITION (-2)
#define SPECIALS "^$*+?.([%-"

typedef struct {
  lua_State *L;
  const char *src, *src_end, *pat_end;
  long long steps;   /* left in this call */
  int depth;         /* pattern recursion left */
  int level;         /* captures open or closed */
  struct { const char *init; ptrdiff_t len; } cap[M_MAXCAPTURES];
} mstate;

static void step(mstate *ms, long long n) {
  if ((ms->steps -= n) < 0)
    luaL_error(ms->L, "pattern matching budget exceeded (the pattern backtracks too much on this subject; see "
                      "'budget' in docs/api.md)");
}

static long long call_budget(lua_State *L) {
  lwsp_inst *I = lua_touserdata(L, lua_upvalueindex(1));
  return I && I->budget > 0 ? (long long)I->budget : LLONG_MAX;
}

static const char *do_match(mstate *ms, const char *s, const char *p);

/* the end of the single-character class at p */
static const char *class_end(mstate *ms, const char *p) {
  char c = *p++;
  if (c == '%') {
    if (p >= ms->pat_end) luaL_error(ms->L, "malformed pattern (ends with '%%')");
    return p + 1;
  }
  if (c == '[') {
    if (*p == '^') p++;
    do {   /* the first character is a member even when it is ']' */
      if (p >= ms->pat_end) luaL_error(ms->L, "malformed pattern (missing ']')");
      c = *p++;
      if (c == '%' && p < ms->pat_end) p++;
    } while (*p != ']');
    return p + 1;
  }
  return p;
}

static int in_class(int c, int cl) {
  int r;
  switch (tolower(cl)) {
  case 'a': r = isalpha(c); break;
  case 'c': r = iscntrl(c); break;
  case 'd': r = isdigit(c); break;
  case 'g': r = isgraph(c); break;
  case 'l': r = islower(c); break;
  case 'p': r = ispunct(c); break;
  case 's': r = isspace(c); break;
  case 'u': r = isupper(c); break;
  case 'w': r = isalnum(c); break;
  case 'x': r = isxdigit(c); break;
  default: return cl == c;
  }
  r = r != 0;
  return isupper(cl) ? !r : r;
}

/* c in the set from p ('[') to ec (its ']') */
static int in_set(int c, const char *p, const char *ec) {
  int neg = 0;
  p++;
  if (*p == '^') { neg = 1; p++; }
  while (p < ec) {
    if (*p == '%' && p + 1 < ec) {
      if (in_class(c, (unsigned char)p[1])) return !neg;
      p += 2;
    } else if (p + 2 < ec && p[1] == '-') {
      if ((unsigned char)p[0] <= c && c <= (unsigned char)p[2]) return !neg;
      p += 3;
    } else {
      if ((unsigned char)*p == c) return !neg;
      p++;
    }
  }
  return neg;
}

static int one_matches(mstate *ms, const char *s, const char *p, const char *ep) {
  int c;
  if (s >= ms->src_end) return 0;
  c = (unsigned char)*s;
  switch (*p) {
  case '.': return 1;
  case '%': return in_class(c, (unsigned char)p[1]);
  case '[': return in_set(c, p, ep - 1);
  default: return (unsigned char)*p == c;
  }
}

static const char *greedy(mstate *ms, const char *s, const char *p, const char *ep) {
  ptrdiff_t n = 0;
  while (one_matches(ms, s + n, p, ep)) { n++; step(ms, 1); }
  for (; n >= 0; n--) {   /* the longest first, then shorter */
    const char *r;
    step(ms, 1);
    if ((r = do_match(ms, s + n, ep + 1)) != NULL) return r;
  }
  return NULL;
}

static const char *lazy(mstate *ms, const char *s, const char *p, const char *ep) {
  for (;;) {
    const char *r;
    step(ms, 1);
    if ((r = do_match(ms, s, ep + 1)) != NULL) return r;
    if (!one_matches(ms, s, p, ep)) return NULL;
    s++;
  }
}

static const char *open_capture(mstate *ms, const char *s, const char *p, ptrdiff_t what) {
  const char *r;
  if (ms->level >= M_MAXCAPTURES) luaL_error(ms->L, "too many captures");
  ms->cap[ms->level].init = s;
  ms->cap[ms->level].len = what;
  ms->level++;
  if ((r = do_match(ms, s, p)) == NULL) ms->level--;
  return r;
}

static const char *close_capture(mstate *ms, const char *s, const char *p) {
  int l = ms->level - 1;
  const char *r;
  while (l >= 0 && ms->cap[l].len != CAP_UNFINISHED) l--;
  if (l < 0) luaL_error(ms->L, "invalid pattern capture");
  ms->cap[l].len = s - ms->cap[l].init;
  if ((r = do_match(ms, s, p)) == NULL) ms->cap[l].len = CAP_UNFINISHED;
  return r;
}

static int capture_index(mstate *ms, int c) {
  int l = c - '1';
  if (l < 0 || l >= ms->level || ms->cap[l].len == CAP_UNFINISHED)
    luaL_error(ms->L, "invalid capture index %%%d", l + 1);
  return l;
}

static const char *back_reference(mstate *ms, const char *s, int c) {
  int l = capture_index(ms, c);
  ptrdiff_t len = ms->cap[l].len;
  if (len < 0) return NULL;   /* a position */
  step(ms, 1 + len / 32);
  if (ms->src_end - s >= len && memcmp(ms->cap[l].init, s, (size_t)len) == 0) return s + len;
  return NULL;
}

static const char *balance(mstate *ms, const char *s, const char *p) {
  int open, close, depth = 1;
  if (p >= ms->pat_end - 1) luaL_error(ms->L, "malformed pattern (missing arguments to '%%b')");
  open = (unsigned char)p[0];
  close = (unsigned char)p[1];
  if (s >= ms->src_end || (unsigned char)*s != open) return NULL;
  while (++s < ms->src_end) {
    int c = (unsigned char)*s;
    step(ms, 1);
    if (c == close) { if (--depth == 0) return s + 1; }
    else if (c == open) depth++;
  }
  return NULL;
}

/* The end of the match of pattern p at subject position s, or NULL. */
static const char *do_match(mstate *ms, const char *s, const char *p) {
  if (ms->depth-- == 0) luaL_error(ms->L, "pattern too complex");
  for (;;) {
    const char *ep;
    step(ms, 1);
    if (p == ms->pat_end) break;
    if (*p == '(') {
      s = p[1] == ')' ? open_capture(ms, s, p + 2, CAP_POSITION) : open_capture(ms, s, p + 1, CAP_UNFINISHED);
      break;
    }
    if (*p == ')') { s = close_capture(ms, s, p + 1); break; }
    if (*p == '$' && p + 1 == ms->pat_end) { if (s != ms->src_end) s = NULL; break; }
    if (*p == '%' && p[1] == 'b') {
      if ((s = balance(ms, s, p + 2)) == NULL) break;
      p += 4;
      continue;
    }
    if (*p == '%' && p[1] == 'f') {
      int before, at;
      p += 2;
      if (*p != '[') luaL_error(ms->L, "missing '[' after '%%f' in pattern");
      ep = class_end(ms, p);
      before = s == ms->src ? 0 : (unsigned char)s[-1];
      at = s < ms->src_end ? (unsigned char)*s : 0;
      if (!in_set(before, p, ep - 1) && in_set(at, p, ep - 1)) { p = ep; continue; }
      s = NULL;
      break;
    }
    if (*p == '%' && isdigit((unsigned char)p[1])) {
      if ((s = back_reference(ms, s, (unsigned char)p[1])) == NULL) break;
      p += 2;
      continue;
    }
    ep = class_end(ms, p);
    if (!one_matches(ms, s, p, ep)) {
      if (*ep == '*' || *ep == '?' || *ep == '-') { p = ep + 1; continue; }   /* none is enough */
      s = NULL;
      break;
    }
    if (*ep == '?') {
      const char *r = do_match(ms, s + 1, ep + 1);
      if (r) { s = r; break; }
      p = ep + 1;
      continue;
    }
    if (*ep == '+') { s = greedy(ms, s + 1, p, ep); break; }
    if (*ep == '*') { s = greedy(ms, s, p, ep); break; }
    if (*ep == '-') { s = lazy(ms, s, p, ep); break; }
    s++;
    p = ep;
  }
  ms->depth++;
  return s;
}

static void prepare(mstate *ms, lua_State *L, const char *s, size_t ls, const char *p, size_t lp) {
  ms->L = L;
  ms->src = s;
  ms->src_end = s + ls;
  ms->pat_end = p + lp;
  ms->steps = call_budget(L);
}

static void restart(mstate *ms) {
  ms->level = 0;
  ms->depth = M_MAXDEPTH;
}

/* capture i of the match s..e (the whole match when there are none) */
static void push_capture(mstate *ms, int i, const char *s, const char *e) {
  if (i >= ms->level) {
    if (i != 0) luaL_error(ms->L, "invalid capture index %%%d", i + 1);
    lua_pushlstring(ms->L, s, (size_t)(e - s));
    return;
  }
  if (ms->cap[i].len == CAP_UNFINISHED) luaL_error(ms->L, "unfinished capture");
  if (ms->cap[i].len == CAP_POSITION) lua_pushinteger(ms->L, (ms->cap[i].init - ms->src) + 1);
  else lua_pushlstring(ms->L, ms->cap[i].init, (size_t)ms->cap[i].len);
}

static int push_captures(mstate *ms, const char *s, const char *e) {
  int n = (ms->level == 0 && s) ? 1 : ms->level;
  luaL_checkstack(ms->L, n, "too many captures");
  for (int i = 0; i < n; i++) push_capture(ms, i, s, e);
  return n;
}

/* a 1-based start position, Lua's way, as an offset */
static size_t start_at(lua_Integer pos, size_t len) {
  if (pos > 0) return (size_t)pos - 1;
  if (pos == 0 || pos < -(lua_Integer)len) return 0;
  return (size_t)((lua_Integer)len + pos);
}

static int no_specials(const char *p, size_t lp) {
  for (size_t i = 0; i < lp; i++)
    if (p[i] && strchr(SPECIALS, p[i])) return 0;
  return 1;
}

static const char *plain_find(mstate *ms, const char *s, size_t ls, const char *p, size_t lp) {
  if (lp == 0) return s;
  if (lp > ls) return NULL;
  for (const char *end = s + (ls - lp); s <= end; s++) {
    const char *hit = memchr(s, p[0], (size_t)(end - s) + 1);
    if (!hit) return NULL;
    step(ms, 1 + (long long)lp / 32);
    if (memcmp(hit + 1, p + 1, lp - 1) == 0) return hit;
    s = hit;
  }
  return NULL;
}

static int find_or_match(lua_State *L, int find) {
  size_t ls, lp;
  const char *s = luaL_checklstring(L, 1, &ls), *p = luaL_checklstring(L, 2, &lp);
  size_t init = start_at(luaL_optinteger(L, 3, 1), ls);
  mstate ms;
  if (init > ls) { lua_pushnil(L); return 1; }
  prepare(&ms, L, s, ls, p, lp);
  if (find && (lua_toboolean(L, 4) || no_specials(p, lp))) {
    const char *hit = plain_find(&ms, s + init, ls - init, p, lp);
    if (hit) {
      lua_pushinteger(L, (hit - s) + 1);
      lua_pushinteger(L, (lua_Integer)((hit - s) + lp));
      return 2;
    }
  } else {
    const char *at = s + init;
    int anchor = *p == '^';
    if (anchor) { p++; ms.pat_end = p + lp - 1; }
    do {
      const char *e;
      restart(&ms);
      if ((e = do_match(&ms, at, p)) != NULL) {
        if (!find) return push_captures(&ms, at, e);
        lua_pushinteger(L, (at - s) + 1);
        lua_pushinteger(L, e - s);
        return push_captures(&ms, NULL, NULL) + 2;
      }
    } while (at++ < ms.src_end && !anchor);
  }
  lua_pushnil(L);
  return 1;
}

static int m_find(lua_State *L) { return find_or_match(L, 1); }
static int m_match(lua_State *L) { return find_or_match(L, 0); }

/* gmatch's iterator: upvalues subject, pattern, state, instance */
typedef struct { size_t pos; const char *last; } gm_state;

static int gm_next(lua_State *L) {
  size_t ls, lp;
  const char *s = lua_tolstring(L, lua_upvalueindex(2), &ls), *p = lua_tolstring(L, lua_upvalueindex(3), &lp);
  gm_state *g = lua_touserdata(L, lua_upvalueindex(4));
  mstate ms;
  prepare(&ms, L, s, ls, p, lp);
  for (const char *at = s + g->pos; at <= ms.src_end; at++) {
    const char *e;
    restart(&ms);
    if ((e = do_match(&ms, at, p)) != NULL && e != g->last) {
      g->pos = (size_t)(e - s);
      g->last = e;
      return push_captures(&ms, at, e);
    }
  }
  g->pos = ls + 1;
  return 0;
}

static int m_gmatch(lua_State *L) {
  size_t ls;
  gm_state *g;
  luaL_checklstring(L, 1, &ls);
  luaL_checkstring(L, 2);
  {
    size_t init = start_at(luaL_optinteger(L, 3, 1), ls);
    lua_settop(L, 2);
    g = lua_newuserdatauv(L, sizeof *g, 0);
    g->pos = init > ls ? ls + 1 : init;
    g->last = NULL;
  }
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);   /* instance, subject, pattern, state */
  lua_pushcclosure(L, gm_next, 4);
  return 1;
}

/* a string replacement: %0-%9 and %% */
static void add_string(mstate *ms, luaL_Buffer *b, const char *s, const char *e) {
  lua_State *L = ms->L;
  size_t l;
  const char *r = lua_tolstring(L, 3, &l), *pc;
  step(ms, 1 + (long long)l / 32);
  while ((pc = memchr(r, '%', l)) != NULL) {
    luaL_addlstring(b, r, (size_t)(pc - r));
    pc++;
    if (*pc == '%') luaL_addchar(b, '%');
    else if (*pc == '0') luaL_addlstring(b, s, (size_t)(e - s));
    else if (isdigit((unsigned char)*pc)) {
      push_capture(ms, *pc - '1', s, e);
      luaL_tolstring(L, -1, NULL);
      lua_remove(L, -2);
      luaL_addvalue(b);
    } else {
      luaL_error(L, "invalid use of '%c' in replacement string", '%');
    }
    l -= (size_t)(pc + 1 - r);
    r = pc + 1;
  }
  luaL_addlstring(b, r, l);
}

/* adds the replacement for the match s..e; 1 if it replaced anything */
static int add_replacement(mstate *ms, luaL_Buffer *b, const char *s, const char *e, int tr) {
  lua_State *L = ms->L;
  if (tr == LUA_TFUNCTION) {
    int n;
    lua_pushvalue(L, 3);
    n = push_captures(ms, s, e);
    lua_call(L, n, 1);
  } else if (tr == LUA_TTABLE) {
    push_capture(ms, 0, s, e);
    lua_gettable(L, 3);
  } else {
    add_string(ms, b, s, e);
    return 1;
  }
  if (!lua_toboolean(L, -1)) {   /* nil or false: the match stays as it was */
    lua_pop(L, 1);
    luaL_addlstring(b, s, (size_t)(e - s));
    return 0;
  }
  if (!lua_isstring(L, -1)) return luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
  luaL_addvalue(b);
  return 1;
}

static int m_gsub(lua_State *L) {
  size_t ls, lp;
  const char *s = luaL_checklstring(L, 1, &ls), *p = luaL_checklstring(L, 2, &lp);
  const char *last = NULL;
  int tr = lua_type(L, 3);
  lua_Integer max = luaL_optinteger(L, 4, (lua_Integer)ls + 1), n = 0;
  int anchor = *p == '^', changed = 0;
  mstate ms;
  luaL_Buffer b;
  luaL_argexpected(L, tr == LUA_TNUMBER || tr == LUA_TSTRING || tr == LUA_TFUNCTION || tr == LUA_TTABLE, 3,
                   "string/function/table");
  luaL_buffinit(L, &b);
  if (anchor) { p++; lp--; }
  prepare(&ms, L, s, ls, p, lp);
  while (n < max) {
    const char *e;
    restart(&ms);
    if ((e = do_match(&ms, s, p)) != NULL && e != last) {
      n++;
      changed = add_replacement(&ms, &b, s, e, tr) | changed;
      s = last = e;
    } else if (s < ms.src_end) {
      luaL_addchar(&b, *s++);
    } else {
      break;
    }
    if (anchor) break;
  }
  if (!changed) {
    lua_pushvalue(L, 1);
  } else {
    luaL_addlstring(&b, s, (size_t)(ms.src_end - s));
    luaL_pushresult(&b);
  }
  lua_pushinteger(L, n);
  return 2;
}

void rt_match_open(lua_State *L, lwsp_inst *I) {
  static const luaL_Reg fns[] = {{"find", m_find}, {"match", m_match}, {"gmatch", m_gmatch}, {"gsub", m_gsub},
                                 {NULL, NULL}};
  if (lua_getglobal(L, "string") == LUA_TTABLE) {
    lua_pushlightuserdata(L, I);
    luaL_setfuncs(L, fns, 1);
  }
  lua_pop(L, 1);
}
