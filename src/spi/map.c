/*
 * map.c - the handle map: open addressing, SOCKET -> pointer.  No Lua.
 */
#include "common.h"
#include <stdlib.h>
#include <string.h>

static size_t map_hash(SOCKET k, size_t cap) {
  uint64_t x = (uint64_t)k * 0x9E3779B97F4A7C15ull;
  return (size_t)(x >> 17) & (cap - 1);
}
#define MAP_TOMB ((void *)&map_hash)

void *lwsp_map_get(const lwsp_map *m, SOCKET key) {
  if (!m->cap) return NULL;
  for (size_t i = map_hash(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
    const lwsp_map_slot *s = &m->slots[i];
    if (s->val == NULL) return NULL;
    if (s->key == key && s->val != MAP_TOMB) return s->val;
  }
}
static int map_grow(lwsp_map *m) {
  size_t ncap = m->cap ? m->cap * 2 : 64;
  lwsp_map_slot *old = m->slots, *ns;
  size_t ocap = m->cap;
  if (m->count * 4 < m->cap) ncap = m->cap; /* mostly tombstones: rehash in place size */
  ns = calloc(ncap, sizeof *ns);
  if (!ns) return 0;
  m->slots = ns; m->cap = ncap; m->count = 0; m->used = 0;
  for (size_t i = 0; i < ocap; i++)
    if (old[i].val && old[i].val != MAP_TOMB) lwsp_map_put(m, old[i].key, old[i].val);
  free(old);
  return 1;
}
int lwsp_map_put(lwsp_map *m, SOCKET key, void *val) {
  size_t i, tomb = (size_t)-1;
  if ((m->used + 1) * 4 >= m->cap * 3 && !map_grow(m)) return 0;
  for (i = map_hash(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
    lwsp_map_slot *s = &m->slots[i];
    if (s->val == NULL) break;
    if (s->val == MAP_TOMB) { if (tomb == (size_t)-1) tomb = i; continue; }
    if (s->key == key) { s->val = val; return 1; }
  }
  if (tomb != (size_t)-1) i = tomb; else m->used++;
  m->slots[i].key = key;
  m->slots[i].val = val;
  m->count++;
  return 1;
}
void *lwsp_map_del(lwsp_map *m, SOCKET key) {
  if (!m->cap) return NULL;
  for (size_t i = map_hash(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
    lwsp_map_slot *s = &m->slots[i];
    if (s->val == NULL) return NULL;
    if (s->key == key && s->val != MAP_TOMB) {
      void *v = s->val;
      s->val = MAP_TOMB;
      m->count--;
      return v;
    }
  }
}
void lwsp_map_free(lwsp_map *m) { free(m->slots); memset(m, 0, sizeof *m); }
void lwsp_map_each(const lwsp_map *m, void (*fn)(SOCKET key, void *val, void *ud), void *ud) {
  for (size_t i = 0; i < m->cap; i++)
    if (m->slots[i].val && m->slots[i].val != MAP_TOMB) fn(m->slots[i].key, m->slots[i].val, ud);
}
