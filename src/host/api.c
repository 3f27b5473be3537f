/*
 * api.c - lwsp.host, the Lua face of lwsp's own ws2_32: the catalog,
 * provider loading, the application-facing socket calls, and the host's
 * objects (events, windows, ports, threads).  docs/api.md documents each.
 *
 * Handles are integers.  Every call returns its results, or
 * nil, "WSAENAME: text", code.  A provider that returns SOCKET_ERROR with
 * *lpErrno == 0 is reported as WSASYSCALLFAILURE; an unknown handle gives
 * WSAENOTSOCK (SPI.md's host rules).
 */
#include "host.h"
#include <stdlib.h>
#include <string.h>
#include <stdio.h>


int host_fail(lua_State *L, int code) { return lwsp_push_error(L, code ? code : WSASYSCALLFAILURE); }

static SOCKET check_sock(lua_State *L, int idx) {
  lua_Integer v = luaL_checkinteger(L, idx);
  return (SOCKET)v;
}


#define PROV(s) hprov *p; INT err = 0; int perr = 0; \
  if (!(p = host_prov_of((s), &perr))) return host_fail(L, perr)
#define CHECK(rc) do { if ((rc) == SOCKET_ERROR) return host_fail(L, err); } while (0)

int host_ok(lua_State *L) { lua_pushboolean(L, 1); return 1; }

lua_Integer host_arg_range(lua_State *L, int idx, lua_Integer lo, lua_Integer hi, const char *what) {
  lua_Integer v = luaL_checkinteger(L, idx);
  if (v < lo || v > hi) luaL_argerror(L, idx, lua_pushfstring(L, "%s out of range (%I..%I)", what, lo, hi));
  return v;
}
lua_Integer host_opt_range(lua_State *L, int idx, lua_Integer def, lua_Integer lo, lua_Integer hi, const char *what) {
  return lua_isnoneornil(L, idx) ? def : host_arg_range(L, idx, lo, hi, what);
}
long host_arg_ms(lua_State *L, int idx, long def) {
  return lua_isnoneornil(L, idx) ? def : (long)host_arg_range(L, idx, 0, HOST_MAX_MS, "timeout");
}


static void check_addr(lua_State *L, int idx, SOCKADDR_STORAGE *ss, int *len) {
  if (!lwsp_to_sockaddr(L, idx, ss, len)) luaL_argerror(L, idx, LWSP_ADDRESS_FORMS);
}

/* ---- sockets ---------------------------------------------------------------------------- */
/* Chooses the catalog entry for (af, type, protocol) as ws2_32 does: hidden
 * layer entries (ChainLen 0) never; protocol 0 takes the first entry with
 * PFL_MATCHES_PROTOCOL_ZERO, else the first match. */
static DWORD pick_entry(int af, int type, int proto, int *err) {
  DWORD found = 0, zero = 0;
  int af_ok = 0, type_ok = 0;
  for (size_t i = 0; i < host_catalog_count(); i++) {
    const WSAPROTOCOL_INFOW *pi = &host_catalog_at(i)->info;
    if (pi->ProtocolChain.ChainLen == 0) continue;
    if (af && pi->iAddressFamily != af) continue;
    af_ok = 1;
    if (type && pi->iSocketType != type) continue;
    type_ok = 1;
    if (proto == 0) {
      if (!found) found = pi->dwCatalogEntryId;
      if (!zero && (pi->dwProviderFlags & PFL_MATCHES_PROTOCOL_ZERO)) zero = pi->dwCatalogEntryId;
    } else if (proto >= pi->iProtocol && proto <= pi->iProtocol + pi->iProtocolMaxOffset) {
      return pi->dwCatalogEntryId;
    }
  }
  if (zero) return zero;
  if (found) return found;
  *err = !af_ok ? WSAEAFNOSUPPORT : !type_ok ? WSAESOCKTNOSUPPORT : WSAEPROTONOSUPPORT;
  return 0;
}

/* socket(af, type, protocol [, flags [, catalog id | protocol info]]) -> handle.
 * With a protocol info table (WSASocket's lpProtocolInfo, as duplicate_socket
 * returns it) the socket goes to the provider of its dwCatalogEntryId, which
 * gets the table's fields (dwProviderReserved among them) over that entry's;
 * af, type and protocol may then be FROM_PROTOCOL_INFO. */
static int h_socket(lua_State *L) {
  int af = HOST_INT(L, 1, "address family"), type = HOST_INT(L, 2, "type"), proto = HOST_OPT_INT(L, 3, 0, "protocol");
  DWORD flags = HOST_OPT_DWORD(L, 4, WSA_FLAG_OVERLAPPED, "flags");
  int given = lua_istable(L, 5);
  DWORD catalog = 0;
  WSAPROTOCOL_INFOW info;
  hentry *e;
  hprov *p;
  INT err = 0;
  SOCKET s;
  char msg[200];
  if (given) {
    lua_getfield(L, 5, "dwCatalogEntryId");
    if (!lua_isinteger(L, -1)) luaL_argerror(L, 5, "protocol info without dwCatalogEntryId");
    catalog = (DWORD)lua_tointeger(L, -1);
    lua_pop(L, 1);
  } else {
    catalog = HOST_OPT_DWORD(L, 5, 0, "catalog id");
  }
  host_init();
  lwsp_mutex_lock(&host_lock);
  if (!catalog && !given) catalog = pick_entry(af, type, proto, &err);
  e = catalog ? host_entry(catalog) : NULL;
  if (e) info = e->info;
  lwsp_mutex_unlock(&host_lock);
  if (given && !e) return host_fail(L, WSAEINVAL);
  if (!e) return host_fail(L, err ? err : WSAEINVALIDPROVIDER);
  if (given && !lwsp_to_protocol_info(L, 5, &info, msg, sizeof msg)) luaL_argerror(L, 5, msg);
  if (!(p = host_load(catalog, &err))) return host_fail(L, err);
  s = HCALL(L, p, WSPSocket, 0, &err, af, type, proto, &info, 0, flags, &err);
  if (s == INVALID_SOCKET) return host_fail(L, err);
  if (!host_claim_socket(L, p, s)) return host_fail(L, WSASYSCALLFAILURE);
  lua_pushinteger(L, (lua_Integer)s);
  return 1;
}

/* close(s) -> true.  After a successful WSPCloseSocket the host forgets an IFS
 * handle itself; a non-IFS handle the provider did not close is reported. */
static int h_close(lua_State *L) {
  SOCKET s = check_sock(L, 1);
  PROV(s);
  CHECK(HCALL(L, p, WSPCloseSocket, s, &err, s, &err));
  if (!host_forget_ifs(s)) lwsp_log("host", "provider closed socket %llu without WPUCloseSocketHandle", (unsigned long long)s);
  return host_ok(L);
}

static int h_bind(lua_State *L) {
  SOCKET s = check_sock(L, 1);
  SOCKADDR_STORAGE ss;
  int len;
  check_addr(L, 2, &ss, &len);
  len = (int)host_opt_range(L, 3, len, 0, sizeof ss, "length");
  PROV(s);
  CHECK(HCALL(L, p, WSPBind, s, &err, s, (struct sockaddr *)&ss, len, &err));
  return host_ok(L);
}

static int h_listen(lua_State *L) {
  SOCKET s = check_sock(L, 1);
  int backlog = HOST_OPT_INT(L, 2, 5, "backlog");
  PROV(s);
  CHECK(HCALL(L, p, WSPListen, s, &err, s, backlog, &err));
  return host_ok(L);
}

/* connect(s, addr [, caller data]) -> true [, callee data] */
static int h_connect(lua_State *L) {
  SOCKET s = check_sock(L, 1);
  SOCKADDR_STORAGE ss;
  int len;
  WSABUF cd = {0, NULL}, ce;
  char callee[256];
  size_t n;
  check_addr(L, 2, &ss, &len);
  if (lua_isstring(L, 3)) { cd.buf = (CHAR *)lua_tolstring(L, 3, &n); cd.len = (ULONG)n; }
  ce.buf = callee;
  ce.len = sizeof callee;
  PROV(s);
  CHECK(HCALL(L, p, WSPConnect, s, &err, s, (struct sockaddr *)&ss, len, cd.buf ? &cd : NULL, &ce, NULL, NULL, &err));
  lua_pushboolean(L, 1);
  if (ce.len) { lua_pushlstring(L, callee, ce.len); return 2; }
  return 1;
}

/* The application condition function behind accept(s, len, verdict): answers
 * the verdict passed as callback data and remembers what it was shown. */
static SOCKADDR_STORAGE cond_seen;
static int cond_seen_len;
static char cond_data[256];
static size_t cond_data_len;
static int CALLBACK condition(LPWSABUF caller_id, LPWSABUF caller_data, LPQOS sq, LPQOS gq, LPWSABUF callee_id,
                              LPWSABUF callee_data, GROUP *g, DWORD_PTR verdict) {
  (void)sq; (void)gq; (void)callee_id; (void)callee_data; (void)g;
  lwsp_mutex_lock(&host_lock);
  cond_seen_len = 0;
  if (caller_id && caller_id->buf && caller_id->len <= sizeof cond_seen) {
    memcpy(&cond_seen, caller_id->buf, caller_id->len);
    cond_seen_len = (int)caller_id->len;
  }
  cond_data_len = caller_data && caller_data->buf && caller_data->len <= sizeof cond_data ? caller_data->len : 0;
  if (cond_data_len) memcpy(cond_data, caller_data->buf, cond_data_len);
  lwsp_mutex_unlock(&host_lock);
  return (int)verdict;
}

/* last_condition() -> caller address, caller data: what the condition
 * function of the last accept(s, len, verdict) was shown */
static int h_last_condition(lua_State *L) {
  SOCKADDR_STORAGE seen;
  char data[sizeof cond_data];
  int seen_len;
  size_t data_len;
  /* copied under the lock, pushed without it (no Lua call under host_lock) */
  lwsp_mutex_lock(&host_lock);
  seen = cond_seen;
  seen_len = cond_seen_len;
  data_len = cond_data_len;
  memcpy(data, cond_data, data_len);
  lwsp_mutex_unlock(&host_lock);
  if (seen_len) lwsp_push_sockaddr(L, (struct sockaddr *)&seen, seen_len); else lua_pushnil(L);
  lua_pushlstring(L, data, data_len);
  return 2;
}

/* accept(s [, addrlen [, verdict]]) -> handle, address.  With a verdict
 * (CF_ACCEPT, CF_REJECT or CF_DEFER) the provider gets a condition function
 * that answers it. */
static int h_accept(lua_State *L) {
  SOCKET s = check_sock(L, 1), ns;
  SOCKADDR_STORAGE ss;
  int len = (int)host_opt_range(L, 2, sizeof ss, 0, sizeof ss, "length");
  int with_cond = !lua_isnoneornil(L, 3);
  DWORD_PTR verdict = (DWORD_PTR)host_opt_range(L, 3, CF_ACCEPT, CF_ACCEPT, CF_DEFER, "verdict");
  hsock *hs;
  PROV(s);
  ns = HCALL(L, p, WSPAccept, s, &err, s, (struct sockaddr *)&ss, &len, with_cond ? condition : NULL, verdict, &err);
  if (ns == INVALID_SOCKET) return host_fail(L, err);
  lwsp_mutex_lock(&host_lock);
  if ((hs = host_sock(ns)) != NULL && !hs->prov) hs->prov = p;
  lwsp_mutex_unlock(&host_lock);
  lua_pushinteger(L, (lua_Integer)ns);
  lwsp_push_sockaddr(L, (struct sockaddr *)&ss, len);
  return 2;
}

/* send(s, data [, flags]) and sendto(s, data, addr [, flags]) -> bytes sent
 * (with_addr: sendto, whose nil address is WSPSendTo's NULL) */
static int send_data(lua_State *L, int with_addr) {
  SOCKET s = check_sock(L, 1);
  size_t n;
  WSABUF b;
  DWORD sent = 0;
  SOCKADDR_STORAGE ss;
  int len = 0;
  b.buf = (CHAR *)luaL_checklstring(L, 2, &n);
  b.len = (ULONG)n;
  if (with_addr && !lua_isnil(L, 3)) check_addr(L, 3, &ss, &len);
  DWORD flags = HOST_OPT_DWORD(L, 3 + with_addr, 0, "flags");
  PROV(s);
  WSATHREADID tid;
  host_trace_bytes(&sent);
  if (with_addr)
    CHECK(HCALL(L, p, WSPSendTo, s, &err, s, &b, 1, &sent, flags, len ? (struct sockaddr *)&ss : NULL, len, NULL, NULL,
                host_this_thread(&tid), &err));
  else
    CHECK(HCALL(L, p, WSPSend, s, &err, s, &b, 1, &sent, flags, NULL, NULL, host_this_thread(&tid), &err));
  lua_pushinteger(L, sent);
  return 1;
}
static int h_send(lua_State *L) { return send_data(L, 0); }
static int h_sendto(lua_State *L) { return send_data(L, 1); }

/* recv(s, len [, flags]) -> data, flags.  Data arrives through two WSABUFs
 * (half each) so scatter is exercised on every call. */
static int recv_into(lua_State *L, int from) {
  SOCKET s = check_sock(L, 1);
  lua_Integer cap = luaL_checkinteger(L, 2);
  DWORD flags = HOST_OPT_DWORD(L, 3, 0, "flags"), got = 0;
  WSABUF b[2];
  SOCKADDR_STORAGE ss;
  int len = sizeof ss;
  char *buf;
  int rc;
  luaL_argcheck(L, cap >= 0 && cap <= 64 * 1024 * 1024, 2, "length out of range");
  buf = malloc((size_t)cap + 1);
  if (!buf) return host_fail(L, WSAENOBUFS);
  b[0].buf = buf; b[0].len = (ULONG)(cap / 2);
  b[1].buf = buf + cap / 2; b[1].len = (ULONG)(cap - cap / 2);
  WSATHREADID tid;
  PROV(s);
  host_this_thread(&tid);
  host_trace_bytes(&got);
  if (from) rc = HCALL(L, p, WSPRecvFrom, s, &err, s, b, 2, &got, &flags, (struct sockaddr *)&ss, &len, NULL, NULL, &tid, &err);
  else rc = HCALL(L, p, WSPRecv, s, &err, s, b, 2, &got, &flags, NULL, NULL, &tid, &err);
  if (rc == SOCKET_ERROR) {
    int n = host_fail(L, err);
    if (err == WSAEMSGSIZE) { lua_pushlstring(L, buf, got); n++; }
    free(buf);
    return n;
  }
  lua_pushlstring(L, buf, got);
  free(buf);
  if (from) { lwsp_push_sockaddr(L, (struct sockaddr *)&ss, len); }
  lua_pushinteger(L, flags);
  return from ? 3 : 2;
}
static int h_recv(lua_State *L) { return recv_into(L, 0); }
/* recvfrom(s, len [, flags]) -> data, address, flags */
static int h_recvfrom(lua_State *L) { return recv_into(L, 1); }

static int h_shutdown(lua_State *L) {
  SOCKET s = check_sock(L, 1);
  int how = HOST_INT(L, 2, "how");
  PROV(s);
  CHECK(HCALL(L, p, WSPShutdown, s, &err, s, how, &err));
  return host_ok(L);
}

static int name_call(lua_State *L, int peer) {
  SOCKET s = check_sock(L, 1);
  SOCKADDR_STORAGE ss;
  int len = (int)host_opt_range(L, 2, sizeof ss, 0, sizeof ss, "length");
  PROV(s);
  if (peer) CHECK(HCALL(L, p, WSPGetPeerName, s, &err, s, (struct sockaddr *)&ss, &len, &err));
  else CHECK(HCALL(L, p, WSPGetSockName, s, &err, s, (struct sockaddr *)&ss, &len, &err));
  lwsp_push_sockaddr(L, (struct sockaddr *)&ss, len);
  return 1;
}
/* getsockname(s [, namelen]) / getpeername(s [, namelen]) -> address */
static int h_getsockname(lua_State *L) { return name_call(L, 0); }
static int h_getpeername(lua_State *L) { return name_call(L, 1); }

/* getsockopt(s, level, name [, optlen = 4]) -> raw bytes (wsp.opt decodes) */
static int h_getsockopt(lua_State *L) {
  SOCKET s = check_sock(L, 1);
  int level = HOST_INT(L, 2, "level"), name = HOST_INT(L, 3, "option");
  char buf[sizeof(WSAPROTOCOL_INFOW)];
  int len = (int)host_opt_range(L, 4, 4, 0, sizeof buf, "length");
  PROV(s);
  CHECK(HCALL(L, p, WSPGetSockOpt, s, &err, s, level, name, buf, &len, &err));
  lua_pushlstring(L, buf, (size_t)len);
  return 1;
}

/* setsockopt(s, level, name, value): integers and booleans travel as 4 bytes,
 * strings as they are. */
static int h_setsockopt(lua_State *L) {
  SOCKET s = check_sock(L, 1);
  int level = HOST_INT(L, 2, "level"), name = HOST_INT(L, 3, "option");
  int32_t v;
  const char *val;
  size_t n = 4;
  if (lua_isinteger(L, 4)) { v = (int32_t)host_arg_range(L, 4, INT32_MIN, 0xffffffffLL, "value"); val = (const char *)&v; }
  else if (lua_isboolean(L, 4)) { v = lua_toboolean(L, 4); val = (const char *)&v; }
  else val = luaL_checklstring(L, 4, &n);
  PROV(s);
  CHECK(HCALL(L, p, WSPSetSockOpt, s, &err, s, level, name, val, (int)n, &err));
  return host_ok(L);
}

/* ioctl(s, code [, input [, outlen = 4]]) -> output bytes.  An integer input
 * travels as a 4-byte u_long. */
static int h_ioctl(lua_State *L) {
  SOCKET s = check_sock(L, 1);
  char out[1024];
  DWORD code = HOST_DWORD(L, 2, "code"), outlen = (DWORD)host_opt_range(L, 4, 4, 0, sizeof out, "length"), got = 0;
  uint32_t u;
  const void *in = NULL;
  size_t inlen = 0;
  if (lua_isinteger(L, 3)) { u = (uint32_t)host_arg_range(L, 3, INT32_MIN, 0xffffffffLL, "input"); in = &u; inlen = 4; }
  else if (!lua_isnoneornil(L, 3)) in = luaL_checklstring(L, 3, &inlen);
  PROV(s);
  WSATHREADID tid;
  CHECK(HCALL(L, p, WSPIoctl, s, &err, s, code, (LPVOID)in, (DWORD)inlen, outlen ? out : NULL, outlen, &got, NULL, NULL, host_this_thread(&tid), &err));
  lua_pushlstring(L, out, got);
  return 1;
}

/* The provider for calls that carry no socket: an explicit catalog id, or the
 * entry for the address family. */
static hprov *prov_for_family(lua_State *L, int af, int catarg, WSAPROTOCOL_INFOW *info, int *err) {
  DWORD catalog = HOST_OPT_DWORD(L, catarg, 0, "catalog id");
  hentry *e;
  host_init();
  lwsp_mutex_lock(&host_lock);
  if (!catalog) catalog = pick_entry(af, 0, 0, err);
  e = catalog ? host_entry(catalog) : NULL;
  if (e) *info = e->info;
  lwsp_mutex_unlock(&host_lock);
  if (!e) { if (!*err) *err = WSAEINVALIDPROVIDER; return NULL; }
  return host_load(catalog, err);
}

/* address_to_string(addr [, catalog id]) -> text */
static int h_address_to_string(lua_State *L) {
  SOCKADDR_STORAGE ss;
  int len, perr = 0;
  WSAPROTOCOL_INFOW info;
  WCHAR out[256];
  DWORD outlen = 256;
  INT err = 0;
  hprov *p;
  check_addr(L, 1, &ss, &len);
  if (!(p = prov_for_family(L, ss.ss_family, 2, &info, &perr))) return host_fail(L, perr);
  CHECK(HCALL(L, p, WSPAddressToString, 0, &err, (LPSOCKADDR)&ss, (DWORD)len, &info, out, &outlen, &err));
  lwsp_push_wstr(L, out, outlen);
  return 1;
}

/* string_to_address(text, af [, catalog id]) -> address */
static int h_string_to_address(lua_State *L) {
  size_t n;
  const char *str = luaL_checklstring(L, 1, &n);
  int af = HOST_INT(L, 2, "address family"), len = sizeof(SOCKADDR_STORAGE), perr = 0;
  WSAPROTOCOL_INFOW info;
  WCHAR w[512];
  SOCKADDR_STORAGE ss;
  INT err = 0;
  hprov *p;
  size_t k = lwsp_utf8_to_utf16(str, n, w, 511);
  luaL_argcheck(L, k <= 511, 1, "too long");
  w[k] = 0;
  if (!(p = prov_for_family(L, af, 3, &info, &perr))) return host_fail(L, perr);
  CHECK(HCALL(L, p, WSPStringToAddress, 0, &err, w, af, &info, (LPSOCKADDR)&ss, &len, &err));
  lwsp_push_sockaddr(L, (struct sockaddr *)&ss, len);
  return 1;
}

/* duplicate_socket(s, pid) -> protocol info */
static int h_duplicate_socket(lua_State *L) {
  SOCKET s = check_sock(L, 1);
  WSAPROTOCOL_INFOW info;
  DWORD pid = HOST_DWORD(L, 2, "process id");
  PROV(s);
  CHECK(HCALL(L, p, WSPDuplicateSocket, s, &err, s, pid, &info, &err));
  lwsp_push_protocol_info(L, &info);
  return 1;
}

static int h_event_select(lua_State *L) {
  SOCKET s = check_sock(L, 1);
  WSAEVENT ev = (WSAEVENT)(uintptr_t)luaL_optinteger(L, 2, 0);
  LONG mask = (LONG)HOST_OPT_INT(L, 3, 0, "event mask");
  PROV(s);
  CHECK(HCALL(L, p, WSPEventSelect, s, &err, s, ev, mask, &err));
  return host_ok(L);
}

/* enum_network_events(s [, event]) -> mask, {[FD_x] = error} */
static int h_enum_network_events(lua_State *L) {
  SOCKET s = check_sock(L, 1);
  WSAEVENT ev = (WSAEVENT)(uintptr_t)luaL_optinteger(L, 2, 0);
  WSANETWORKEVENTS ne;
  PROV(s);
  CHECK(HCALL(L, p, WSPEnumNetworkEvents, s, &err, s, ev, &ne, &err));
  lua_pushinteger(L, ne.lNetworkEvents);
  lua_createtable(L, 0, 2);
  for (int i = 0; i < FD_MAX_EVENTS; i++)
    if (ne.lNetworkEvents & (1 << i)) {
      lua_pushinteger(L, ne.iErrorCode[i]);
      lua_rawseti(L, -2, (lua_Integer)1 << i);
    }
  return 2;
}

static int h_async_select(lua_State *L) {
  SOCKET s = check_sock(L, 1);
  HWND w = (HWND)(uintptr_t)luaL_checkinteger(L, 2);
  unsigned msg = HOST_DWORD(L, 3, "message");
  LONG mask = (LONG)HOST_INT(L, 4, "event mask");
  PROV(s);
  CHECK(HCALL(L, p, WSPAsyncSelect, s, &err, s, w, msg, mask, &err));
  return host_ok(L);
}

static int to_set(lua_State *L, int idx, wsp_fd_set *set, SOCKET *first) {
  lua_Integer n;
  if (lua_isnoneornil(L, idx)) return 0;
  luaL_checktype(L, idx, LUA_TTABLE);
  n = (lua_Integer)lua_rawlen(L, idx);
  luaL_argcheck(L, n <= WSP_FD_SETSIZE, idx, "at most 64 sockets");
  set->fd_count = (unsigned)n;
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, idx, i);
    set->fd_array[i - 1] = (SOCKET)luaL_checkinteger(L, -1);
    if (!*first) *first = set->fd_array[i - 1];
    lua_pop(L, 1);
  }
  return 1;
}
static void push_set(lua_State *L, const wsp_fd_set *set, int present) {
  if (!present) { lua_pushnil(L); return; }
  lua_createtable(L, (int)set->fd_count, 0);
  for (unsigned i = 0; i < set->fd_count; i++) {
    lua_pushinteger(L, (lua_Integer)set->fd_array[i]);
    lua_rawseti(L, -2, i + 1);
  }
}

/* One provider's share of a select across providers. */
typedef struct { hprov *p; wsp_fd_set set[3]; } sel_part;

/* select(read, write, except [, timeout seconds]) -> count, read, write, except.
 * Sockets of one provider go to its WSPSelect with the timeout; sockets of
 * several providers are polled, each provider's WSPSelect with a zero timeout,
 * until one is ready or the time is up. */
static int h_select(lua_State *L) {
  wsp_fd_set sets[3];
  int have[3], nparts = 0, n = 0;
  SOCKET first = 0;
  sel_part parts[8];
  double deadline = 0;
  int infinite = lua_isnoneornil(L, 4);
  wsp_timeval tv = {0, 0};
  INT err = 0;
  for (int k = 0; k < 3; k++) have[k] = to_set(L, k + 1, &sets[k], &first);
  if (!infinite) {
    lua_Number t = luaL_checknumber(L, 4);
    /* (a NaN fails both comparisons) */
    luaL_argcheck(L, t >= 0 && t <= 2147483647.0, 4, "timeout out of range (0..2147483647 seconds)");
    tv.tv_sec = (LONG)t;
    tv.tv_usec = (LONG)((t - (lua_Number)tv.tv_sec) * 1e6);
    deadline = lwsp_now() + t;
  }
  if (!first) return host_fail(L, WSAEINVAL);
  memset(parts, 0, sizeof parts);
  for (int k = 0; k < 3; k++) {
    if (!have[k]) continue;
    for (unsigned i = 0; i < sets[k].fd_count; i++) {
      int perr = 0, j;
      hprov *p = host_prov_of(sets[k].fd_array[i], &perr);
      if (!p) return host_fail(L, perr);
      for (j = 0; j < nparts && parts[j].p != p; j++) {}
      if (j == nparts) {
        if (nparts == 8) return host_fail(L, WSAEINVAL);
        parts[nparts++].p = p;
      }
      parts[j].set[k].fd_array[parts[j].set[k].fd_count++] = sets[k].fd_array[i];
    }
  }
  if (nparts == 1) {
    hprov *p = parts[0].p;
    n = HCALL(L, p, WSPSelect, 0, &err, 0, have[0] ? &sets[0] : NULL, have[1] ? &sets[1] : NULL, have[2] ? &sets[2] : NULL,
                             infinite ? NULL : &tv, &err);
    CHECK(n);
  } else {
    for (;;) {
      wsp_fd_set out[3];
      wsp_timeval zero = {0, 0};
      n = 0;
      for (int k = 0; k < 3; k++) out[k].fd_count = 0;
      for (int j = 0; j < nparts; j++) {
        wsp_fd_set t[3];
        int m;
        memcpy(t, parts[j].set, sizeof t);
        m = parts[j].p->procs.lpWSPSelect(0, have[0] ? &t[0] : NULL, have[1] ? &t[1] : NULL, have[2] ? &t[2] : NULL,
                                          &zero, &err);
        CHECK(m);
        for (int k = 0; k < 3; k++)
          if (have[k])
            for (unsigned i = 0; i < t[k].fd_count; i++) out[k].fd_array[out[k].fd_count++] = t[k].fd_array[i];
        n += m;
      }
      if (n || (!infinite && lwsp_now() >= deadline)) {
        for (int k = 0; k < 3; k++) sets[k] = out[k];
        break;
      }
      lwsp_mutex_lock(&host_lock);
      lwsp_cond_wait(&host_cond, &host_lock, 2);
      lwsp_mutex_unlock(&host_lock);
    }
  }
  lua_pushinteger(L, n);
  for (int k = 0; k < 3; k++) push_set(L, &sets[k], have[k]);
  return 4;
}

static int h_get_qos_by_name(lua_State *L) {
  SOCKET s = check_sock(L, 1);
  size_t n;
  WSABUF name = {0, NULL};
  QOS q;
  memset(&q, 0, sizeof q);
  if (lua_isstring(L, 2)) { name.buf = (CHAR *)lua_tolstring(L, 2, &n); name.len = (ULONG)n; }
  PROV(s);
  if (!HCALL_BOOL(L, p, WSPGetQOSByName, s, &err, s, name.buf ? &name : NULL, &q, &err)) return host_fail(L, err);
  lwsp_push_qos(L, &q);
  return 1;
}

static int h_join_leaf(lua_State *L) {
  SOCKET s = check_sock(L, 1), r;
  SOCKADDR_STORAGE ss;
  int len;
  check_addr(L, 2, &ss, &len);
  DWORD flags = HOST_OPT_DWORD(L, 3, 0, "flags");
  PROV(s);
  r = HCALL(L, p, WSPJoinLeaf, s, &err, s, (struct sockaddr *)&ss, len, NULL, NULL, NULL, NULL, flags, &err);
  if (r == INVALID_SOCKET) return host_fail(L, err);
  lua_pushinteger(L, (lua_Integer)r);
  return 1;
}

static int h_send_disconnect(lua_State *L) {
  SOCKET s = check_sock(L, 1);
  size_t n;
  WSABUF b = {0, NULL};
  if (lua_isstring(L, 2)) { b.buf = (CHAR *)lua_tolstring(L, 2, &n); b.len = (ULONG)n; }
  PROV(s);
  CHECK(HCALL(L, p, WSPSendDisconnect, s, &err, s, b.buf ? &b : NULL, &err));
  return host_ok(L);
}

static int h_recv_disconnect(lua_State *L) {
  SOCKET s = check_sock(L, 1);
  char buf[256];
  WSABUF b;
  b.buf = buf;
  b.len = (ULONG)host_opt_range(L, 2, sizeof buf, 0, sizeof buf, "length");
  PROV(s);
  CHECK(HCALL(L, p, WSPRecvDisconnect, s, &err, s, &b, &err));
  lua_pushlstring(L, buf, b.len);
  return 1;
}

static int h_cancel_blocking_call(lua_State *L) {
  int perr = 0;
  INT err = 0;
  WSAPROTOCOL_INFOW info;
  hprov *p = prov_for_family(L, 0, 1, &info, &perr);
  if (!p) return host_fail(L, perr);
  CHECK(HCALL(L, p, WSPCancelBlockingCall, 0, &err, &err));
  return host_ok(L);
}

/* socket_info(s) -> {catalog =, context =, ifs =, port =} | nil: the host's record */
static int h_socket_info(lua_State *L) {
  hsock *hs;
  SOCKET s = check_sock(L, 1);   /* read before the lock: a bad one raises */
  host_init();
  lwsp_mutex_lock(&host_lock);
  hs = host_sock(s);
  if (!hs) { lwsp_mutex_unlock(&host_lock); return host_fail(L, WSAENOTSOCK); }
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, hs->catalog); lua_setfield(L, -2, "catalog");
  lua_pushinteger(L, (lua_Integer)hs->ctx); lua_setfield(L, -2, "context");
  lua_pushboolean(L, hs->ifs); lua_setfield(L, -2, "ifs");
  lua_pushboolean(L, hs->prov != NULL); lua_setfield(L, -2, "loaded");
  lwsp_mutex_unlock(&host_lock);
  return 1;
}

int lwsp_hostobj_open(lua_State *L);
int lwsp_probe_open(lua_State *L);
int lwsp_hostio_open(lua_State *L);
int lwsp_hostext_open(lua_State *L);
int lwsp_hostbench_open(lua_State *L);
int lwsp_fault_open(lua_State *L);

/* require "lwsp.host": the host's table.  It needs the runtime of the
 * application's state (require "lwsp" there gives lwsp._runtime; a
 * provider's state has none), whose log, trace and fault hook it shares. */
LWSP_EXPORT int luaopen_lwsp_host(lua_State *L);
LWSP_EXPORT int luaopen_lwsp_host(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"socket", h_socket}, {"close", h_close},
    {"bind", h_bind}, {"listen", h_listen}, {"connect", h_connect}, {"accept", h_accept},
    {"send", h_send}, {"sendto", h_sendto}, {"recv", h_recv}, {"recvfrom", h_recvfrom},
    {"shutdown", h_shutdown}, {"getsockname", h_getsockname}, {"getpeername", h_getpeername},
    {"getsockopt", h_getsockopt}, {"setsockopt", h_setsockopt}, {"ioctl", h_ioctl},
    {"address_to_string", h_address_to_string}, {"string_to_address", h_string_to_address},
    {"duplicate_socket", h_duplicate_socket}, {"event_select", h_event_select},
    {"enum_network_events", h_enum_network_events}, {"async_select", h_async_select},
    {"select", h_select}, {"get_qos_by_name", h_get_qos_by_name}, {"join_leaf", h_join_leaf},
    {"send_disconnect", h_send_disconnect}, {"recv_disconnect", h_recv_disconnect},
    {"cancel_blocking_call", h_cancel_blocking_call}, {"socket_info", h_socket_info},
    {"last_condition", h_last_condition},
    {NULL, NULL}};
  const lwsp_runtime_link *rt;
  lua_getglobal(L, "require");
  lua_pushstring(L, "lwsp");
  lua_call(L, 1, 1);
  rt = lua_type(L, -1) == LUA_TTABLE && lua_getfield(L, -1, "_runtime") == LUA_TLIGHTUSERDATA ? lua_touserdata(L, -1) : NULL;
  if (!rt || rt->version != LWSP_LINK_VERSION || (host_rt && host_rt != rt))
    return luaL_error(L, "lwsp.host is the application's side: it needs lwsp's runtime in this state "
                      "(a provider cannot drive its host)");
  lua_settop(L, 0);
  if (rt->inst_of(L)) return luaL_error(L, "lwsp.host is the application's side: a provider cannot drive its host");
  if (!host_rt) host_link(rt);
  host_init();
  luaL_newlib(L, fns);
  host_catalog_open(L);
  lwsp_hostobj_open(L);
  lwsp_probe_open(L);
  lwsp_hostio_open(L);
  lwsp_hostext_open(L);
  lwsp_hostbench_open(L);
  lwsp_fault_open(L);
  {
    static const char *const traced[] = {
      "socket", "close", "bind", "listen", "connect", "accept", "send", "sendto", "recv", "recvfrom", "shutdown",
      "getsockname", "getpeername", "getsockopt", "setsockopt", "ioctl", "address_to_string", "string_to_address",
      "duplicate_socket", "event_select", "enum_network_events", "async_select", "select", "get_qos_by_name",
      "join_leaf", "send_disconnect", "recv_disconnect", "cancel_blocking_call", "wsasend", "wsarecv", "wsaioctl",
      "get_overlapped_result", "sleep", "wait", "dequeue", "messages", NULL};
    lwsp_trace_wrap(L, traced);
  }
  return 1;
}

/* A socket WSPSocket of p just returned: the host's, once p registered it
 * (WPUCreateSocketHandle or WPUModifyIFSHandle); a handle p never registered
 * is logged and closed, and 0 returned. */
int host_claim_socket(lua_State *L, hprov *p, SOCKET s) {
  hsock *hs;
  INT e2 = 0;
  lwsp_mutex_lock(&host_lock);
  hs = host_sock(s);
  if (hs && !hs->prov) hs->prov = p;
  lwsp_mutex_unlock(&host_lock);
  if (hs && hs->prov == p) return 1;
  lwsp_log("host", "WSPSocket returned handle %llu, which its provider never registered with the host",
           (unsigned long long)s);
  HCALL(L, p, WSPCloseSocket, s, &e2, s, &e2);
  return 0;
}
