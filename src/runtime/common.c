/*
 * common.c - the conversions between Winsock values (addresses, protocol
 * info, QOS, errors, GUIDs, UTF-16 text) and Lua values, and the constant
 * table.
 */
#include "common.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- GUIDs and text in Lua ------------------------------------------------- */
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

int lwsp_push_error(lua_State *L, int code) {
  const char *n = lwsp_error_name(code);
  lua_pushnil(L);
  if (n) lua_pushfstring(L, "%s: %s", n, lwsp_error_text(code));
  else lua_pushfstring(L, "error %d", code);
  lua_pushinteger(L, code);
  return 3;
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
    lua_pushinteger(L, lwsp_get16(b + 2)); lua_setfield(L, -2, "port");
  } else if (sa->sa_family == AF_INET6 && len >= 28) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
    lwsp_format_v6(s6->sin6_addr.u.Byte, buf, sizeof buf);
    lua_pushstring(L, buf); lua_setfield(L, -2, "address");
    lua_pushinteger(L, lwsp_get16(b + 2)); lua_setfield(L, -2, "port");
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
  lwsp_put16((char *)ss + 2, (unsigned)port);
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
#include "spi_ext.h"
int lwsp_const_open(lua_State *L) {
  lua_newtable(L);
#define K_(name, value) lua_pushinteger(L, (lua_Integer)(value)); lua_setfield(L, -2, #name);
  SPI_ERRORS(K_)
  SPI_CONSTANTS(K_)
  SPI_IOCTLS(K_)
  LWSP_IOCTLS(K_)
  LWSP_EXT_CONSTANTS(K_)
#undef K_
  return 1;
}
