/*
 * common.c - the log, the handle map, text and GUIDs, and the conversions
 * between Winsock values (addresses, protocol info, QOS, errors) and Lua.
 */
#include "common.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- log ------------------------------------------------------------------
 * Each line goes to $LWSP_LOG (a file path; "-" or unset means stderr, "off"
 * means nowhere) and into a ring of the last LWSP_LOG_RING lines, which
 * lwsp.log_lines() reads.  One process-wide lock orders the lines. */
static lwsp_mutex log_lock;
static int log_ready;
static char *log_ring[LWSP_LOG_RING];
static unsigned long log_seq;
static char log_target[1024];
static int log_target_set;

static void log_init(void) {
  /* First call happens under the runtime's global lock or at module load. */
  if (!log_ready) { lwsp_mutex_init(&log_lock); log_ready = 1; }
}

/* Provider names for the log: a line from a provider tagged by its GUID shows
 * "lwsp[name {GUID}]", name being its script's file name without ".lua". */
#define LOG_NAMES 64
static struct { char guid[40]; char name[64]; } log_names[LOG_NAMES];
static unsigned log_names_next;

void lwsp_log_name(const char *guid, const char *script) {
  const char *base = script, *p;
  size_t n;
  unsigned i;
  if (!guid || !script || strlen(guid) >= sizeof log_names[0].guid) return;
  for (p = script; *p; p++) if (*p == '/' || *p == '\\') base = p + 1;
  n = strlen(base);
  if (n > 4 && strcmp(base + n - 4, ".lua") == 0) n -= 4;
  if (n >= sizeof log_names[0].name) n = sizeof log_names[0].name - 1;
  log_init();
  lwsp_mutex_lock(&log_lock);
  for (i = 0; i < LOG_NAMES && strcmp(log_names[i].guid, guid) != 0; i++) {}
  if (i == LOG_NAMES) i = log_names_next++ % LOG_NAMES;
  snprintf(log_names[i].guid, sizeof log_names[i].guid, "%s", guid);
  memcpy(log_names[i].name, base, n);
  log_names[i].name[n] = 0;
  lwsp_mutex_unlock(&log_lock);
}

void (*lwsp_log_hook)(const char *line);

void lwsp_log(const char *who, const char *fmt, ...) {
  char line[8192];
  int n = -1;
  va_list ap;
  const char *target;
  log_init();
  if (who && who[0] == '{') {
    lwsp_mutex_lock(&log_lock);
    for (unsigned i = 0; i < LOG_NAMES; i++)
      if (log_names[i].name[0] && strcmp(log_names[i].guid, who) == 0) {
        n = snprintf(line, sizeof line, "lwsp[%s %s] ", log_names[i].name, who);
        break;
      }
    lwsp_mutex_unlock(&log_lock);
  }
  if (n < 0) n = snprintf(line, sizeof line, "lwsp[%s] ", who ? who : "-");
  va_start(ap, fmt);
  if (n > 0 && (size_t)n < sizeof line) vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
  va_end(ap);
  lwsp_mutex_lock(&log_lock);
  free(log_ring[log_seq % LWSP_LOG_RING]);
  log_ring[log_seq % LWSP_LOG_RING] = strdup(line);
  log_seq++;
  target = log_target_set ? log_target : getenv("LWSP_LOG");
  if (!target || !*target || strcmp(target, "-") == 0) {
    fprintf(stderr, "%s\n", line);
  } else if (strcmp(target, "off") != 0) {
    FILE *f = fopen(target, "a");
    if (f) { fprintf(f, "%s\n", line); fclose(f); }
  }
  lwsp_mutex_unlock(&log_lock);
  if (lwsp_log_hook) lwsp_log_hook(line);
}

/* lwsp.log_lines([since]) -> array of lines, next sequence number */
static int l_log_lines(lua_State *L) {
  lua_Integer since = luaL_optinteger(L, 1, 0);
  unsigned long first, i;
  int k = 0;
  log_init();
  lua_newtable(L);
  lwsp_mutex_lock(&log_lock);
  first = log_seq > LWSP_LOG_RING ? log_seq - LWSP_LOG_RING : 0;
  if (since > (lua_Integer)first) first = (unsigned long)since;
  for (i = first; i < log_seq; i++) {
    const char *s = log_ring[i % LWSP_LOG_RING];
    lua_pushstring(L, s ? s : "");
    lua_rawseti(L, -2, ++k);
  }
  lua_pushinteger(L, (lua_Integer)log_seq);
  lwsp_mutex_unlock(&log_lock);
  return 2;
}

/* lwsp.log(msg) writes one line tagged "lua". */
static int l_log(lua_State *L) {
  const char *who = luaL_optstring(L, 2, NULL);
  char tag[64];
  if (!who) {      /* inside a provider: its GUID (named as above); else "lua" */
    lua_getfield(L, LUA_REGISTRYINDEX, "lwsp.log_who");
    snprintf(tag, sizeof tag, "%s", lua_isstring(L, -1) ? lua_tostring(L, -1) : "lua");
    lua_pop(L, 1);
    who = tag;
  }
  lwsp_log(who, "%s", luaL_checkstring(L, 1));
  return 0;
}

/* lwsp.set_log(target): a file path, "-" for stderr, "off", or nil for $LWSP_LOG. */
static int l_set_log(lua_State *L) {
  const char *t = luaL_optstring(L, 1, NULL);
  log_init();
  lwsp_mutex_lock(&log_lock);
  log_target_set = t != NULL;
  snprintf(log_target, sizeof log_target, "%s", t ? t : "");
  lwsp_mutex_unlock(&log_lock);
  return 0;
}

int lwsp_log_open(lua_State *L) {
  lua_pushcfunction(L, l_log); lua_setfield(L, -2, "log");
  lua_pushcfunction(L, l_log_lines); lua_setfield(L, -2, "log_lines");
  lua_pushcfunction(L, l_set_log); lua_setfield(L, -2, "set_log");
  return 0;
}

/* ---- handle map ------------------------------------------------------------ */
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

/* ---- text and GUIDs -------------------------------------------------------- */
size_t lwsp_wcslen(const WCHAR *s, size_t max) {
  size_t n = 0;
  while (n < max && s[n]) n++;
  return n;
}

/* Converts; unpaired surrogates become U+FFFD.  Output is cut at outlen bytes
 * on a character boundary; returns the bytes written (no terminator). */
size_t lwsp_utf16_to_utf8(const WCHAR *in, size_t inlen, char *out, size_t outlen) {
  size_t o = 0;
  for (size_t i = 0; i < inlen; i++) {
    uint32_t c = in[i];
    char b[4];
    size_t n;
    if (c >= 0xD800 && c <= 0xDBFF && i + 1 < inlen && in[i + 1] >= 0xDC00 && in[i + 1] <= 0xDFFF) {
      c = 0x10000 + ((c - 0xD800) << 10) + (in[i + 1] - 0xDC00u);
      i++;
    } else if (c >= 0xD800 && c <= 0xDFFF) {
      c = 0xFFFD;
    }
    if (c < 0x80) { b[0] = (char)c; n = 1; }
    else if (c < 0x800) { b[0] = (char)(0xC0 | c >> 6); b[1] = (char)(0x80 | (c & 63)); n = 2; }
    else if (c < 0x10000) { b[0] = (char)(0xE0 | c >> 12); b[1] = (char)(0x80 | ((c >> 6) & 63)); b[2] = (char)(0x80 | (c & 63)); n = 3; }
    else { b[0] = (char)(0xF0 | c >> 18); b[1] = (char)(0x80 | ((c >> 12) & 63)); b[2] = (char)(0x80 | ((c >> 6) & 63)); b[3] = (char)(0x80 | (c & 63)); n = 4; }
    if (o + n > outlen) break;
    memcpy(out + o, b, n);
    o += n;
  }
  return o;
}

/* Converts; malformed bytes become U+FFFD.  Returns the units written, or
 * outlen + 1 when the result does not fit (so callers can detect it). */
size_t lwsp_utf8_to_utf16(const char *in, size_t inlen, WCHAR *out, size_t outlen) {
  size_t o = 0;
  const unsigned char *s = (const unsigned char *)in;
  for (size_t i = 0; i < inlen;) {
    uint32_t c = s[i];
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > inlen) { c = 0xFFFD; n = 1; }
    else if (n > 1) {
      c &= 0x7F >> n;
      for (size_t k = 1; k < n; k++) {
        if ((s[i + k] & 0xC0) != 0x80) { c = 0xFFFD; n = k; break; }
        c = (c << 6) | (s[i + k] & 63);
      }
    }
    i += n;
    if (c >= 0x10000) {
      if (o + 2 > outlen) return outlen + 1;
      c -= 0x10000;
      out[o++] = (WCHAR)(0xD800 + (c >> 10));
      out[o++] = (WCHAR)(0xDC00 + (c & 0x3FF));
    } else {
      if (o + 1 > outlen) return outlen + 1;
      out[o++] = (WCHAR)c;
    }
  }
  return o;
}

void lwsp_guid_format(const GUID *g, char out[39]) {
  snprintf(out, 39, "{%08lX-%04X-%04X-%02X%02X-%02X%02X%02X%02X%02X%02X}", (unsigned long)g->Data1,
           (unsigned)g->Data2, (unsigned)g->Data3, g->Data4[0], g->Data4[1], g->Data4[2], g->Data4[3],
           g->Data4[4], g->Data4[5], g->Data4[6], g->Data4[7]);
}

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  c |= 32;
  return (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}
/* Accepts a GUID as 8-4-4-4-12 hex digits, with or without braces. */
int lwsp_guid_parse(const char *s, GUID *g) {
  static const int groups[] = {8, 4, 4, 4, 12};
  unsigned char b[16];
  int nb = 0, brace = (*s == '{');
  if (brace) s++;
  for (int gi = 0; gi < 5; gi++) {
    for (int k = 0; k < groups[gi]; k += 2) {
      int hi = hexval((unsigned char)s[0]), lo = hi < 0 ? -1 : hexval((unsigned char)s[1]);
      if (hi < 0 || lo < 0) return 0;
      b[nb++] = (unsigned char)(hi << 4 | lo);
      s += 2;
    }
    if (gi < 4 && *s++ != '-') return 0;
  }
  if (brace && *s++ != '}') return 0;
  if (*s) return 0;
  g->Data1 = (DWORD)b[0] << 24 | (DWORD)b[1] << 16 | (DWORD)b[2] << 8 | b[3];
  g->Data2 = (WORD)(b[4] << 8 | b[5]);
  g->Data3 = (WORD)(b[6] << 8 | b[7]);
  memcpy(g->Data4, b + 8, 8);
  return 1;
}
int lwsp_guid_eq(const GUID *a, const GUID *b) { return memcmp(a, b, sizeof *a) == 0; }
void lwsp_push_guid(lua_State *L, const GUID *g) {
  char s[39];
  lwsp_guid_format(g, s);
  lua_pushstring(L, s);
}
void lwsp_push_wstr(lua_State *L, const WCHAR *s, size_t maxlen) {
  char buf[1024];
  size_t n = lwsp_utf16_to_utf8(s, lwsp_wcslen(s, maxlen), buf, sizeof buf);
  lua_pushlstring(L, buf, n);
}

/* ---- errors ------------------------------------------------------------------ */
static const struct { const char *name; int code; } error_table[] = {
#define ROW_(name, value) {#name, value},
  SPI_ERRORS(ROW_)
#undef ROW_
};
#define NERRORS (sizeof error_table / sizeof error_table[0])

const char *lwsp_error_name(int code) {
  for (size_t i = 0; i < NERRORS; i++)
    if (error_table[i].code == code && code != WSABASEERR) return error_table[i].name;
  return NULL;
}
int lwsp_error_code(const char *name) {
  for (size_t i = 0; i < NERRORS; i++)
    if (strcmp(error_table[i].name, name) == 0) return error_table[i].code;
  return 0;
}
const char *lwsp_error_text(int code) {
  switch (code) {
  case WSAEINTR: return "blocking call interrupted";
  case WSAEFAULT: return "bad address or length";
  case WSAEINVAL: return "invalid argument";
  case WSAEWOULDBLOCK: return "operation would block";
  case WSAEINPROGRESS: return "operation in progress";
  case WSAEALREADY: return "operation already in progress";
  case WSAENOTSOCK: return "not a socket";
  case WSAEMSGSIZE: return "message too long";
  case WSAENOPROTOOPT: return "bad protocol option";
  case WSAEOPNOTSUPP: return "operation not supported";
  case WSAEAFNOSUPPORT: return "address family not supported";
  case WSAEADDRINUSE: return "address in use";
  case WSAEADDRNOTAVAIL: return "address not available";
  case WSAENETDOWN: return "network is down";
  case WSAECONNABORTED: return "connection aborted";
  case WSAECONNRESET: return "connection reset by peer";
  case WSAENOBUFS: return "no buffer space";
  case WSAEISCONN: return "socket is connected";
  case WSAENOTCONN: return "socket is not connected";
  case WSAESHUTDOWN: return "socket was shut down";
  case WSAETIMEDOUT: return "timed out";
  case WSAECONNREFUSED: return "connection refused";
  case WSAVERNOTSUPPORTED: return "version not supported";
  case WSANOTINITIALISED: return "not initialised";
  case WSAEINVALIDPROCTABLE: return "invalid procedure table";
  case WSAEINVALIDPROVIDER: return "invalid provider";
  case WSAEPROVIDERFAILEDINIT: return "provider failed to initialise";
  case WSASYSCALLFAILURE: return "system call failure";
  case WSA_IO_PENDING: return "overlapped operation pending";
  case WSA_IO_INCOMPLETE: return "overlapped operation incomplete";
  case WSA_INVALID_HANDLE: return "invalid handle";
  case WSA_OPERATION_ABORTED: return "operation aborted";
  default: return "Winsock error";
  }
}
int lwsp_push_error(lua_State *L, int code) {
  const char *n = lwsp_error_name(code);
  lua_pushnil(L);
  if (n) lua_pushfstring(L, "%s: %s", n, lwsp_error_text(code));
  else lua_pushfstring(L, "error %d", code);
  lua_pushinteger(L, code);
  return 3;
}

/* ---- addresses -------------------------------------------------------------- */
static void put16(void *p, unsigned v) { ((unsigned char *)p)[0] = (unsigned char)(v >> 8); ((unsigned char *)p)[1] = (unsigned char)v; }
static unsigned get16(const void *p) { return (unsigned)((const unsigned char *)p)[0] << 8 | ((const unsigned char *)p)[1]; }

static int parse_v4(const char *s, size_t n, unsigned char out[4]) {
  int part = 0;
  unsigned v = 0, digits = 0;
  for (size_t i = 0; i <= n; i++) {
    if (i == n || s[i] == '.') {
      if (!digits || v > 255 || part > 3) return 0;
      out[part++] = (unsigned char)v;
      v = 0; digits = 0;
    } else if (s[i] >= '0' && s[i] <= '9' && digits < 3) {
      v = v * 10 + (unsigned)(s[i] - '0');
      digits++;
    } else {
      return 0;
    }
  }
  return part == 4;
}
static int parse_v6(const char *s, size_t n, unsigned char out[16]) {
  unsigned short w[8];
  int nw = 0, gap = -1;
  size_t i = 0;
  if (n >= 2 && s[0] == ':' && s[1] == ':') { gap = 0; i = 2; if (n == 2) goto done; }
  else if (n && s[0] == ':') return 0;
  while (i < n) {
    size_t start = i;
    unsigned v = 0;
    int digits = 0;
    while (i < n && hexval((unsigned char)s[i]) >= 0 && digits < 5) { v = v << 4 | (unsigned)hexval((unsigned char)s[i]); i++; digits++; }
    if (i < n && s[i] == '.') { /* embedded IPv4 tail */
      unsigned char v4[4];
      if (nw > 6 || !parse_v4(s + start, n - start, v4)) return 0;
      w[nw++] = (unsigned short)(v4[0] << 8 | v4[1]);
      w[nw++] = (unsigned short)(v4[2] << 8 | v4[3]);
      i = n;
      break;
    }
    if (!digits || digits > 4 || nw >= 8) return 0;
    w[nw++] = (unsigned short)v;
    if (i == n) break;
    if (s[i] != ':') return 0;
    i++;
    if (i < n && s[i] == ':') {
      if (gap >= 0) return 0;
      gap = nw;
      i++;
    } else if (i == n) {
      return 0;
    }
  }
done:
  if (gap < 0 && nw != 8) return 0;
  if (gap >= 0 && nw > 7) return 0;
  memset(out, 0, 16);
  if (gap < 0) gap = nw;
  for (int k = 0; k < gap; k++) { out[2 * k] = (unsigned char)(w[k] >> 8); out[2 * k + 1] = (unsigned char)w[k]; }
  for (int k = gap, d = 8 - (nw - gap); k < nw; k++, d++) { out[2 * d] = (unsigned char)(w[k] >> 8); out[2 * d + 1] = (unsigned char)w[k]; }
  return 1;
}
static size_t format_v6(const unsigned char a[16], char *out, size_t len) {
  int best = -1, bestlen = 0;
  size_t o = 0;
  for (int i = 0; i < 8;) {
    int j = i;
    while (j < 8 && a[2 * j] == 0 && a[2 * j + 1] == 0) j++;
    if (j - i > bestlen && j - i > 1) { best = i; bestlen = j - i; }
    i = j > i ? j : i + 1;
  }
  if (best == 0 && (bestlen == 6 || (bestlen == 5 && a[10] == 0xff && a[11] == 0xff)))
    return (size_t)snprintf(out, len, "::%s%u.%u.%u.%u", bestlen == 5 ? "ffff:" : "", a[12], a[13], a[14], a[15]);
  for (int i = 0; i < 8; i++) {
    if (i == best) { o += (size_t)snprintf(out + o, len - o, "::"); i += bestlen - 1; continue; }
    if (o && out[o - 1] != ':') o += (size_t)snprintf(out + o, len - o, ":");
    o += (size_t)snprintf(out + o, len - o, "%x", get16(a + 2 * i));
    if (o >= len) break;
  }
  return o;
}

int lwsp_format_address(const struct sockaddr *sa, int len, char *out, size_t outlen) {
  const unsigned char *b = (const unsigned char *)sa;
  if (len >= 16 && sa->sa_family == AF_INET) {
    unsigned port = get16(b + 2);
    if (port) snprintf(out, outlen, "%u.%u.%u.%u:%u", b[4], b[5], b[6], b[7], port);
    else snprintf(out, outlen, "%u.%u.%u.%u", b[4], b[5], b[6], b[7]);
    return 1;
  }
  if (len >= 28 && sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
    char a[64];
    unsigned port = get16(b + 2);
    format_v6(s6->sin6_addr.u.Byte, a, sizeof a);
    if (s6->sin6_scope_id) snprintf(a + strlen(a), sizeof a - strlen(a), "%%%lu", (unsigned long)s6->sin6_scope_id);
    if (port) snprintf(out, outlen, "[%s]:%u", a, port);
    else snprintf(out, outlen, "%s", a);
    return 1;
  }
  return 0;
}

/* Parses "a.b.c.d[:port]", "ipv6", "[ipv6[%scope]]:port" for the given family
 * (AF_UNSPEC: either). */
int lwsp_parse_address(const char *s, int af, SOCKADDR_STORAGE *ss, int *len) {
  size_t n = strlen(s);
  const char *colon = strrchr(s, ':');
  unsigned long port = 0;
  memset(ss, 0, sizeof *ss);
  if ((af == AF_INET || af == AF_UNSPEC) && (!colon || !strchr(s, ':') || colon == strchr(s, ':'))) {
    unsigned char a[4];
    size_t alen = colon ? (size_t)(colon - s) : n;
    if (colon) {
      char *end;
      if (!colon[1]) return 0;
      port = strtoul(colon + 1, &end, 10);
      if (*end || port > 65535) return 0;
    }
    if (parse_v4(s, alen, a)) {
      unsigned char *b = (unsigned char *)ss;
      ss->ss_family = AF_INET;
      put16(b + 2, (unsigned)port);
      memcpy(b + 4, a, 4);
      *len = 16;
      return 1;
    }
  }
  if (af == AF_INET6 || af == AF_UNSPEC) {
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    const char *a = s, *pct;
    size_t alen = n;
    unsigned long scope = 0;
    if (s[0] == '[') {
      const char *close = strchr(s, ']');
      if (!close) return 0;
      a = s + 1;
      alen = (size_t)(close - a);
      if (close[1] == ':') {
        char *end;
        if (!close[2]) return 0;
        port = strtoul(close + 2, &end, 10);
        if (*end || port > 65535) return 0;
      } else if (close[1]) {
        return 0;
      }
    }
    pct = memchr(a, '%', alen);
    if (pct) {
      char *end;
      scope = strtoul(pct + 1, &end, 10);
      if (end != a + alen || end == pct + 1) return 0;
      alen = (size_t)(pct - a);
    }
    if (parse_v6(a, alen, s6->sin6_addr.u.Byte)) {
      s6->sin6_family = AF_INET6;
      put16(&s6->sin6_port, (unsigned)port);
      s6->sin6_scope_id = (ULONG)scope;
      *len = 28;
      return 1;
    }
  }
  return 0;
}

int lwsp_push_sockaddr(lua_State *L, const struct sockaddr *sa, int len) {
  char buf[80];
  const unsigned char *b = (const unsigned char *)sa;
  if (!sa || len < 2) { lua_pushnil(L); return 0; }
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, sa->sa_family);
  lua_setfield(L, -2, "family");
  if (sa->sa_family == AF_INET && len >= 16) {
    snprintf(buf, sizeof buf, "%u.%u.%u.%u", b[4], b[5], b[6], b[7]);
    lua_pushstring(L, buf); lua_setfield(L, -2, "address");
    lua_pushinteger(L, get16(b + 2)); lua_setfield(L, -2, "port");
  } else if (sa->sa_family == AF_INET6 && len >= 28) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
    format_v6(s6->sin6_addr.u.Byte, buf, sizeof buf);
    lua_pushstring(L, buf); lua_setfield(L, -2, "address");
    lua_pushinteger(L, get16(b + 2)); lua_setfield(L, -2, "port");
    lua_pushinteger(L, s6->sin6_flowinfo); lua_setfield(L, -2, "flowinfo");
    lua_pushinteger(L, s6->sin6_scope_id); lua_setfield(L, -2, "scope_id");
  } else {
    lua_pushlstring(L, (const char *)b + 2, (size_t)len - 2);
    lua_setfield(L, -2, "data");
  }
  return 1;
}

int lwsp_rawfield(lua_State *L, int idx, const char *k) {
  idx = lua_absindex(L, idx);
  if (!lua_istable(L, idx)) { lua_pushnil(L); return LUA_TNIL; }
  lua_pushstring(L, k);
  return lua_rawget(L, idx);
}

static lua_Integer field_int(lua_State *L, int idx, const char *k, lua_Integer def, int *ok) {
  lua_Integer v = def;
  int t = lwsp_rawfield(L, idx, k);
  if (t == LUA_TNUMBER && lua_isinteger(L, -1)) v = lua_tointeger(L, -1);
  else if (t != LUA_TNIL) *ok = 0;
  lua_pop(L, 1);
  return v;
}

/* Reads an address table or string without raising; 0 when malformed. */
int lwsp_to_sockaddr(lua_State *L, int idx, SOCKADDR_STORAGE *ss, int *len) {
  int ok = 1;
  idx = lua_absindex(L, idx);
  memset(ss, 0, sizeof *ss);
  if (lua_type(L, idx) == LUA_TSTRING) return lwsp_parse_address(lua_tostring(L, idx), AF_UNSPEC, ss, len);
  if (lua_type(L, idx) != LUA_TTABLE) return 0;
  lua_Integer fam = field_int(L, idx, "family", -1, &ok);
  lua_Integer port = field_int(L, idx, "port", 0, &ok);
  if (!ok || port < 0 || port > 65535) return 0;
  if (lwsp_rawfield(L, idx, "data") == LUA_TSTRING) {
    size_t n;
    const char *d = lua_tolstring(L, -1, &n);
    lua_pop(L, 1);
    if (fam < 0 || fam > 0xffff || n > sizeof *ss - 2) return 0;
    ss->ss_family = (short)fam;
    memcpy((char *)ss + 2, d, n);
    *len = (int)n + 2;
    return 1;
  }
  lua_pop(L, 1);
  if (lwsp_rawfield(L, idx, "address") != LUA_TSTRING) { lua_pop(L, 1); return 0; }
  {
    const char *a = lua_tostring(L, -1);
    int r = lwsp_parse_address(a, fam < 0 ? AF_UNSPEC : (int)fam, ss, len);
    lua_pop(L, 1);
    if (!r || strchr(a, ']')) return 0;
  }
  put16((char *)ss + 2, (unsigned)port);
  if (ss->ss_family == AF_INET6) {
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    lua_Integer fl = field_int(L, idx, "flowinfo", 0, &ok), sc = field_int(L, idx, "scope_id", s6->sin6_scope_id, &ok);
    if (!ok || fl < 0 || fl > (lua_Integer)0xffffffffLL || sc < 0 || sc > (lua_Integer)0xffffffffLL) return 0;
    s6->sin6_flowinfo = (ULONG)fl;
    s6->sin6_scope_id = (ULONG)sc;
  }
  return 1;
}

/* ---- protocol info and QOS --------------------------------------------------- */
#define PI_INT_FIELDS(X) \
  X(dwServiceFlags1) X(dwServiceFlags2) X(dwServiceFlags3) X(dwServiceFlags4) X(dwProviderFlags) \
  X(dwCatalogEntryId) X(iVersion) X(iAddressFamily) X(iMaxSockAddr) X(iMinSockAddr) X(iSocketType) \
  X(iProtocol) X(iProtocolMaxOffset) X(iNetworkByteOrder) X(iSecurityScheme) X(dwMessageSize) \
  X(dwProviderReserved)

void lwsp_push_protocol_info(lua_State *L, const WSAPROTOCOL_INFOW *pi) {
  int n = pi->ProtocolChain.ChainLen;
  lua_createtable(L, 0, 20);
#define PUSH_(f) lua_pushinteger(L, (lua_Integer)pi->f); lua_setfield(L, -2, #f);
  PI_INT_FIELDS(PUSH_)
#undef PUSH_
  lwsp_push_guid(L, &pi->ProviderId);
  lua_setfield(L, -2, "ProviderId");
  if (n < 0 || n > MAX_PROTOCOL_CHAIN) n = 0;
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) { lua_pushinteger(L, pi->ProtocolChain.ChainEntries[i]); lua_rawseti(L, -2, i + 1); }
  lua_setfield(L, -2, "ProtocolChain");
  lwsp_push_wstr(L, pi->szProtocol, WSAPROTOCOL_LEN + 1);
  lua_setfield(L, -2, "szProtocol");
}

/* Fills pi from a table; fields left out stay as they are in pi. */
int lwsp_to_protocol_info(lua_State *L, int idx, WSAPROTOCOL_INFOW *pi, char *err, size_t errlen) {
  int ok = 1;
  idx = lua_absindex(L, idx);
  if (!lua_istable(L, idx)) { snprintf(err, errlen, "protocol info must be a table"); return 0; }
  lua_Integer v_;
#define PULL_(f) v_ = field_int(L, idx, #f, (lua_Integer)pi->f, &ok); \
  if (!ok) { snprintf(err, errlen, "field %s must be an integer", #f); return 0; } \
  if (v_ < -(lua_Integer)0x80000000LL || v_ > (lua_Integer)0xffffffffLL) { \
    snprintf(err, errlen, "field %s = %lld does not fit 32 bits", #f, (long long)v_); return 0; } \
  pi->f = (__typeof__(pi->f))v_;
  PI_INT_FIELDS(PULL_)
#undef PULL_
  if (lwsp_rawfield(L, idx, "ProviderId") != LUA_TNIL) {
    if (!lua_isstring(L, -1) || !lwsp_guid_parse(lua_tostring(L, -1), &pi->ProviderId)) {
      lua_pop(L, 1);
      snprintf(err, errlen, "ProviderId must be a GUID string");
      return 0;
    }
  }
  lua_pop(L, 1);
  if (lwsp_rawfield(L, idx, "ProtocolChain") != LUA_TNIL) {
    lua_Integer n;
    if (!lua_istable(L, -1) || (n = (lua_Integer)lua_rawlen(L, -1)) > MAX_PROTOCOL_CHAIN) {
      lua_pop(L, 1);
      snprintf(err, errlen, "ProtocolChain must be an array of at most 7 catalog ids");
      return 0;
    }
    memset(&pi->ProtocolChain, 0, sizeof pi->ProtocolChain);
    pi->ProtocolChain.ChainLen = (int)n;
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, -1, i);
      if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0 || lua_tointeger(L, -1) > (lua_Integer)0xffffffffLL) {
        lua_pop(L, 2);
        snprintf(err, errlen, "ProtocolChain entries must be integers from 0 to 2^32-1 (catalog ids)");
        return 0;
      }
      pi->ProtocolChain.ChainEntries[i - 1] = (DWORD)lua_tointeger(L, -1);
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  if (lwsp_rawfield(L, idx, "szProtocol") != LUA_TNIL) {
    size_t len, k;
    const char *s = lua_tolstring(L, -1, &len);
    if (!s) { lua_pop(L, 1); snprintf(err, errlen, "szProtocol must be a string"); return 0; }
    k = lwsp_utf8_to_utf16(s, len, pi->szProtocol, WSAPROTOCOL_LEN);
    if (k > WSAPROTOCOL_LEN) k = WSAPROTOCOL_LEN;
    pi->szProtocol[k] = 0;
  }
  lua_pop(L, 1);
  return 1;
}

static void push_flowspec(lua_State *L, const FLOWSPEC *f) {
  lua_createtable(L, 0, 8);
#define F_(n) lua_pushinteger(L, f->n); lua_setfield(L, -2, #n);
  F_(TokenRate) F_(TokenBucketSize) F_(PeakBandwidth) F_(Latency) F_(DelayVariation) F_(ServiceType)
  F_(MaxSduSize) F_(MinimumPolicedSize)
#undef F_
}
void lwsp_push_qos(lua_State *L, const QOS *q) {
  if (!q) { lua_pushnil(L); return; }
  lua_createtable(L, 0, 3);
  push_flowspec(L, &q->SendingFlowspec); lua_setfield(L, -2, "SendingFlowspec");
  push_flowspec(L, &q->ReceivingFlowspec); lua_setfield(L, -2, "ReceivingFlowspec");
  if (q->ProviderSpecific.buf && q->ProviderSpecific.len) {
    lua_pushlstring(L, q->ProviderSpecific.buf, q->ProviderSpecific.len);
    lua_setfield(L, -2, "ProviderSpecific");
  }
}

/* ---- constants -------------------------------------------------------------- */
int lwsp_const_open(lua_State *L) {
  lua_newtable(L);
#define K_(name, value) lua_pushinteger(L, (lua_Integer)(value)); lua_setfield(L, -2, #name);
  SPI_ERRORS(K_)
  SPI_CONSTANTS(K_)
  SPI_IOCTLS(K_)
  LWSP_IOCTLS(K_)
#undef K_
  return 1;
}
