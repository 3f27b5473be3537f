/*
 * lower.c - the layer below a layered provider, as a Lua object.
 *
 * lwsp.lower(catalog_id) loads the next layer of that protocol chain the way
 * an LSP must: the chain's entries are looked up in the catalog, the next
 * layer's DLL is found with WPUGetProviderPath (environment variables
 * expanded), loaded, and started with the base entry's own protocol info when
 * it is the base (ChainLen reached), the chain's otherwise; its proc table is
 * checked for NULLs.  Every call down is made with the provider lock
 * released.  Lower sockets are opened with WSA_FLAG_OVERLAPPED and kept
 * non-blocking: a call that would block returns WSAEWOULDBLOCK, and
 * lower:wait(h, "r"|"w") gives a key the service thread wakes when the lower
 * socket is ready (wsp.layered wraps this into straight-line calls).  Watched
 * sockets get their network events from the lower socket's readiness.
 */
#include "lower.h"
#include "extlua.h"
#include <stdlib.h>
#include <string.h>
#include <stdio.h>


static int fail(lua_State *L, int code) { return lwsp_push_error(L, code ? code : WSASYSCALLFAILURE); }

static lwsp_lower *check_lower(lua_State *L) {
  lower_ud *u = lwsp_tagged(L, 1, sizeof *u, LOWER_TAG);
  if (!u) u = luaL_checkudata(L, 1, LOWER_MT);
  if (!u->low || !u->low->started) luaL_error(L, "the lower layer has been cleaned up");
  return u->low;
}
/* luaL_checkinteger and luaL_optinteger with their common case first: an
 * integer argument costs one API call (anything else gets theirs, errors too). */
static lua_Integer int_arg(lua_State *L, int idx) {
  int ok;
  lua_Integer v = lua_tointegerx(L, idx, &ok);
  return ok ? v : luaL_checkinteger(L, idx);
}
static lua_Integer opt_int_arg(lua_State *L, int idx, lua_Integer def) {
  int ok;
  lua_Integer v = lua_tointegerx(L, idx, &ok);
  return ok ? v : luaL_optinteger(L, idx, def);
}
static SOCKET check_h(lua_State *L, int idx) { return (SOCKET)int_arg(L, idx); }
/* The same for a 32-bit C parameter (int, DWORD): raises outside -2^31 .. 2^32-1, never cuts. */
static lua_Integer fit32(lua_State *L, int idx, lua_Integer v) {
  if (v < -(lua_Integer)0x80000000LL || v > (lua_Integer)0xffffffffLL) luaL_argerror(L, idx, "out of the 32-bit range");
  return v;
}
#define int32_arg(L, idx) fit32((L), (idx), int_arg((L), (idx)))
#define opt_int32_arg(L, idx, def) fit32((L), (idx), opt_int_arg((L), (idx), (def)))

#define catalog_info(I, id, info) rt_catalog_info(&(I)->up, (I)->name, (id), (info))

/* Loads the layer below as a layered provider must: the chain it was given,
 * the next entry in it from the host's catalog, that entry's DLL and its
 * WSPStartup, with this instance's upcall table.  Over 80 lines: one
 * sequence of steps, each with its own reason in why and its own unwinding. */
static int load(lwsp_inst *I, lwsp_lower *low, char *why, size_t whylen) {
  const WSAPROTOCOL_INFOW *ci;
  WSAPROTOCOL_INFOW chain, entry, next;
  char path[1024], expanded[2048];
  WCHAR wpath[1024];
  INT plen = 1024, e = 0;
  int pos = -1, rc, len;
  void *sym;
  LPWSPSTARTUP startup;
  /* the chain as WSPSocket was given it: a catalog changed since (a layer
   * removed) does not stop a running process from opening sockets on it */
  if (low->given.ProtocolChain.ChainLen) {
    chain = low->given;
  } else if (!catalog_info(I, low->chain, &chain)) {
    snprintf(why, whylen, "catalog entry %lu not found", (unsigned long)low->chain);
    return 0;
  }
  ci = &chain;
  len = ci->ProtocolChain.ChainLen;
  if (len < 2 || len > MAX_PROTOCOL_CHAIN) {
    snprintf(why, whylen, "catalog entry %lu is not a protocol chain (ChainLen %d)", (unsigned long)low->chain, len);
    return 0;
  }
  for (int i = 0; i < len && pos < 0; i++)
    if (I->layer_id && ci->ProtocolChain.ChainEntries[i] == I->layer_id) pos = i;
  for (int i = 0; i < len && pos < 0; i++)
    if (catalog_info(I, ci->ProtocolChain.ChainEntries[i], &entry) &&
        lwsp_guid_eq(&entry.ProviderId, &I->id))
      pos = i;
  /* Installed with a GUID for the chains apart from the layered entry's (as
   * WSCInstallProvider needs): loaded through the chain itself, this provider
   * is its top layer. */
  if (pos < 0 && lwsp_guid_eq(&ci->ProviderId, &I->id)) pos = 0;
  if (pos < 0 || pos + 1 >= len) {
    snprintf(why, whylen, "this provider has no layer below it in chain %lu", (unsigned long)low->chain);
    return 0;
  }
  if (!catalog_info(I, ci->ProtocolChain.ChainEntries[pos + 1], &next)) {
    snprintf(why, whylen, "the next layer's catalog entry %lu is missing", (unsigned long)ci->ProtocolChain.ChainEntries[pos + 1]);
    return 0;
  }
  if (lwsp_guid_eq(&next.ProviderId, &I->id) || rt_inside_guid(&next.ProviderId)) {
    /* the next layer is this provider, or one this thread is inside already:
     * its calls down would come back up into themselves without end */
    snprintf(why, whylen, "chain %lu loops: the next layer (entry %lu) is a provider this call came through; "
             "refusing to load it into itself", (unsigned long)low->chain,
             (unsigned long)ci->ProtocolChain.ChainEntries[pos + 1]);
    return 0;
  }
  if (I->up.lpWPUGetProviderPath(&next.ProviderId, wpath, &plen, &e) != 0) {
    snprintf(why, whylen, "WPUGetProviderPath failed for the next layer (%s)", lwsp_error_name(e) ? lwsp_error_name(e) : "?");
    return 0;
  }
  path[lwsp_utf16_to_utf8(wpath, lwsp_wcslen(wpath, 1024), path, sizeof path - 1)] = 0;
  if (!lwsp_expand_env(path, expanded, sizeof expanded)) { snprintf(why, whylen, "path too long: %.400s", path); return 0; }
  if (!(low->lib = lwsp_dlopen(expanded, why, whylen))) return 0;
  if (!(sym = lwsp_dlsym(low->lib, "WSPStartup"))) {
    snprintf(why, whylen, "%.400s exports no WSPStartup", expanded);
    lwsp_dlclose(low->lib);
    return 0;
  }
  memcpy(&startup, &sym, sizeof startup);
  /* the base's own info, or the chain's; a layer below is told it is the one
   * meant (its GUID), since one DLL (lwsp) serves every Lua layer */
  if (pos + 2 == len) {
    low->pass = next;
  } else {
    low->pass = chain;
    low->pass.ProviderId = next.ProviderId;
  }
  memset(&low->procs, 0, sizeof low->procs);
  {
    WSPUPCALLTABLE up = I->up;
    WSAPROTOCOL_INFOW pass = low->pass;
    int tr = lwsp_tracing;
    lwsp_guid_format(&next.ProviderId, low->lname);
    if (tr) lwsp_trace_enter(I->name, low->lname, "WSPStartup", 0, "2.2");
    DOWN(I, rc = startup(MAKEWORD_(2, 2), &low->data, &pass, up, &low->procs));
    if (tr) lwsp_trace_leave(I->name, low->lname, "WSPStartup", 0, rc, "");
  }
  if (rc != 0) {
    snprintf(why, whylen, "the next layer's WSPStartup (%.400s) failed: %s", expanded, lwsp_error_name(rc) ? lwsp_error_name(rc) : "?");
    lwsp_dlclose(low->lib);
    return 0;
  }
  for (int i = 0; i < LWSP_NPROCS; i++)
    if (!((void **)&low->procs)[i]) {
      INT e2 = 0;
      snprintf(why, whylen, "the next layer's proc table (%.400s) has a NULL %s", expanded, lwsp_spi_names[i]);
      if (low->procs.lpWSPCleanup) DOWN(I, low->procs.lpWSPCleanup(&e2));
      lwsp_dlclose(low->lib);
      return 0;
    }
  low->started = 1;
  low->foreign = lwsp_dlsym(low->lib, "luaopen_lwsp") == NULL;
  lwsp_guid_format(&next.ProviderId, low->lname);
  return 1;
}

/* lwsp.lower(catalog_id | protocol info) -> the layer below that chain | nil,
 * error.  Given the protocol info WSPSocket received, its ProtocolChain is
 * walked as given, without looking the chain up in the catalog again. */
static int l_lower(lua_State *L) {
  lwsp_inst *I = lua_touserdata(L, lua_upvalueindex(1));
  WSAPROTOCOL_INFOW given;
  DWORD chain;
  memset(&given, 0, sizeof given);
  if (lua_istable(L, 1)) {
    char msg[200];
    if (!lwsp_to_protocol_info(L, 1, &given, msg, sizeof msg)) return luaL_argerror(L, 1, msg);
    chain = given.dwCatalogEntryId;
  } else {
    chain = (DWORD)int32_arg(L, 1);
  }
  lwsp_lower *low;
  lower_ud *u;
  char why[600];
  if (I->closing) return fail(L, WSAENETDOWN);   /* its last WSPCleanup has begun */
  for (low = I->lowers; low && low->chain != chain; low = low->next) {}
  if (!low) {
    if (!(low = calloc(1, sizeof *low))) return fail(L, WSAENOBUFS);
    low->I = I;
    low->chain = chain;
    low->given = given;
    if (!load(I, low, why, sizeof why)) {
      lwsp_log(I->name, "the layer below chain %lu cannot be loaded: %s", (unsigned long)chain, why);
      free(low);
      lua_pushnil(L);
      lua_pushfstring(L, "WSAEPROVIDERFAILEDINIT: %s", why);
      lua_pushinteger(L, WSAEPROVIDERFAILEDINIT);
      return 3;
    }
    low->next = I->lowers;
    I->lowers = low;
  }
  u = lua_newuserdatauv(L, sizeof *u, 0);
  u->tag = LOWER_TAG;
  u->low = low;
  luaL_setmetatable(L, LOWER_MT);
  return 1;
}

static void drop_regs(lwsp_lower *low, SOCKET h) {
  size_t j = 0;
  for (size_t i = 0; i < low->nregs; i++)
    if (low->regs[i].h != h) low->regs[j++] = low->regs[i];
  low->nregs = j;
  j = 0;
  for (size_t i = 0; i < low->nwatches; i++)
    if (low->watches[i].h != h) low->watches[j++] = low->watches[i];
  low->nwatches = j;
}

/* ---- the calls down ------------------------------------------------------------------ */
/* Once the last WSPCleanup waits for the threads inside (closing), a call
 * down fails at once (WSAENETDOWN) instead of starting something it waits for. */
#define LOW lwsp_lower *low = check_lower(L); lwsp_inst *I = low->I; INT err = 0; int rc; \
  if (I->closing && !I->cleaning) return fail(L, WSAENETDOWN)
/* The method's arguments, for the trace of its call down (only when traced). */
#define TRACE_ARGS(buf) do { \
    (buf)[0] = 0; \
    if (lwsp_tracing && low->foreign) lwsp_trace_values(L, 2, lua_gettop(L), (buf), sizeof (buf)); \
  } while (0)

/* A method's call down, unless an injected fault (lower.<name>) fails it first. */
#define RESULT(point, expr) do { \
    char targs_[LWSP_TRACE_TEXT]; \
    if (lwsp_faults_armed && (err = lwsp_fault(point)) != 0) return fail(L, err); \
    TRACE_ARGS(targs_); \
    TRACED_DOWN(spi_name(point), TRACE_SOCK(L), targs_, rc == SOCKET_ERROR, rc = (expr)); \
    if (rc == SOCKET_ERROR) return fail(L, err); \
  } while (0)

#define TRACE_SOCK(L) ((SOCKET)(lua_isinteger((L), 2) ? lua_tointeger((L), 2) : 0))

/* "lower.getsockopt" -> "WSPGetSockOpt", for the trace of a call into a C provider */
static const char *spi_name(const char *point) {
  static const char *const map[][2] = {
    {"lower.close", "WSPCloseSocket"}, {"lower.bind", "WSPBind"}, {"lower.listen", "WSPListen"},
    {"lower.connect", "WSPConnect"}, {"lower.send", "WSPSend"}, {"lower.recv", "WSPRecv"},
    {"lower.shutdown", "WSPShutdown"}, {"lower.getsockname", "WSPGetSockName"},
    {"lower.getpeername", "WSPGetPeerName"},
    {"lower.getsockopt", "WSPGetSockOpt"}, {"lower.setsockopt", "WSPSetSockOpt"}, {"lower.ioctl", "WSPIoctl"},
    {"lower.select", "WSPSelect"}, {"lower.duplicate", "WSPDuplicateSocket"}};
  for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
    if (strcmp(map[i][0], point) == 0) return map[i][1];
  return point;
}

static int set_nonblocking(lwsp_lower *low, SOCKET h) {
  lwsp_inst *I = low->I;
  uint32_t one = 1;
  DWORD got = 0;
  INT err = 0;
  int rc;
  TRACED_DOWN("WSPIoctl", h, "FIONBIO, 1", rc != 0,
              rc = low->procs.lpWSPIoctl(h, FIONBIO, &one, 4, NULL, 0, &got, NULL, NULL, NULL, &err));
  return rc == 0;
}

/* low:socket(af, type, protocol [, flags [, info]]) -> handle (non-blocking,
 * overlapped).  info: protocol info fields put over the lower entry's (a
 * duplicate's, from low:duplicate, names the shared socket by dwProviderReserved). */
static int m_socket(lua_State *L) {
  LOW;
  SOCKET h;
  int af = (int)int32_arg(L, 2), type = (int)int32_arg(L, 3), proto = (int)opt_int32_arg(L, 4, 0);
  DWORD flags = (DWORD)opt_int32_arg(L, 5, 0) | WSA_FLAG_OVERLAPPED;
  WSAPROTOCOL_INFOW pass = low->pass;
  char why[160];
  (void)rc;
  if (!lua_isnoneornil(L, 6)) {
    luaL_checktype(L, 6, LUA_TTABLE);
    if (!lwsp_to_protocol_info(L, 6, &pass, why, sizeof why)) return luaL_argerror(L, 6, why);
    pass.dwCatalogEntryId = low->pass.dwCatalogEntryId;   /* the lower entry's, whatever the table says */
  }
  if (lwsp_faults_armed && (err = lwsp_fault("lower.socket")) != 0) return fail(L, err);
  {
    /* the arguments as passed down: WSA_FLAG_OVERLAPPED is ORed in above */
    char targs[LWSP_TRACE_TEXT], info[64];
    targs[0] = 0;
    if (lwsp_tracing && low->foreign) {
      lwsp_trace_protocol_info(info, sizeof info, &pass);
      snprintf(targs, sizeof targs, "%d, %d, %d, %s, 0, 0x%lx", af, type, proto, info, (unsigned long)flags);
    }
    TRACED_DOWN_H("WSPSocket", 0, targs, h = low->procs.lpWSPSocket(af, type, proto, &pass, 0, flags, &err));
  }
  if (h == INVALID_SOCKET) return fail(L, err);
  set_nonblocking(low, h);
  lua_pushinteger(L, (lua_Integer)h);
  return 1;
}

/* low:duplicate(h, pid) -> protocol info (the lower provider's WSPDuplicateSocket) */
static int m_duplicate(lua_State *L) {
  LOW;
  WSAPROTOCOL_INFOW info;
  SOCKET h = check_h(L, 2);
  DWORD pid = (DWORD)int32_arg(L, 3);
  RESULT("lower.duplicate", low->procs.lpWSPDuplicateSocket(h, pid, &info, &err));
  lwsp_push_protocol_info(L, &info);
  return 1;
}

static int m_close(lua_State *L) {
  LOW;
  SOCKET h = check_h(L, 2);
  drop_regs(low, h);
  lua_pushfstring(L, "r%I", (lua_Integer)h);
  rt_wake(I, L, -1);
  lua_pushfstring(L, "w%I", (lua_Integer)h);
  rt_wake(I, L, -1);
  lua_pop(L, 2);
  RESULT("lower.close", low->procs.lpWSPCloseSocket(h, &err));
  lua_pushboolean(L, 1);
  return 1;
}

static int addr_arg(lua_State *L, int idx, SOCKADDR_STORAGE *ss, int *len) {
  if (!lwsp_to_sockaddr(L, idx, ss, len)) return luaL_argerror(L, idx, LWSP_ADDRESS_FORMS);
  return 1;
}

static int m_bind(lua_State *L) {
  LOW;
  SOCKADDR_STORAGE ss;
  int len;
  addr_arg(L, 3, &ss, &len);
  SOCKET h = check_h(L, 2);   /* (arguments are read before the lock is released: an argument error raises) */
  RESULT("lower.bind", low->procs.lpWSPBind(h, (struct sockaddr *)&ss, len, &err));
  lua_pushboolean(L, 1);
  return 1;
}

static int m_listen(lua_State *L) {
  LOW;
  SOCKET h = check_h(L, 2);
  int backlog = (int)opt_int32_arg(L, 3, 5);
  RESULT("lower.listen", low->procs.lpWSPListen(h, backlog, &err));
  lua_pushboolean(L, 1);
  return 1;
}

/* low:connect(h, addr) -> true | WSAEWOULDBLOCK while it connects */
static int m_connect(lua_State *L) {
  LOW;
  SOCKADDR_STORAGE ss;
  int len;
  addr_arg(L, 3, &ss, &len);
  SOCKET h = check_h(L, 2);
  RESULT("lower.connect", low->procs.lpWSPConnect(h, (struct sockaddr *)&ss, len, NULL, NULL, NULL, NULL, &err));
  lua_pushboolean(L, 1);
  return 1;
}

static int m_accept(lua_State *L) {
  LOW;
  SOCKET h;
  SOCKADDR_STORAGE ss;
  int len = sizeof ss;
  (void)rc;
  if (lwsp_faults_armed && (err = lwsp_fault("lower.accept")) != 0) return fail(L, err);
  TRACED_DOWN_H("WSPAccept", check_h(L, 2), "",
                h = low->procs.lpWSPAccept(check_h(L, 2), (struct sockaddr *)&ss, &len, NULL, 0, &err));
  if (h == INVALID_SOCKET) return fail(L, err);
  set_nonblocking(low, h);
  lua_pushinteger(L, (lua_Integer)h);
  lwsp_push_sockaddr(L, (struct sockaddr *)&ss, len);
  return 2;
}

/* A view's WSABUF descriptors, copied (the lower layer gets its own array),
 * and their total length (when len is not NULL). */
#define VIEW_MAXBUFS 64
static int view_arg(lua_State *L, int idx, WSABUF *out, DWORD *n, size_t *len, int writable) {
  const WSABUF *b;
  size_t total;
  if (!rt_view_bufs(L, idx, &b, n, &total, writable)) return 0;
  if (len) *len = total;
  luaL_argcheck(L, *n <= VIEW_MAXBUFS, idx, "a view of more than 64 buffers");
  memcpy(out, b, *n * sizeof *b);
  return 1;
}

/* low:send(h, data | view [, flags [, to]]) -> bytes sent, bytes it did not
 * take.  A view (a handler's with views = true) goes down without a copy. */
static int m_send(lua_State *L) {
  LOW;
  SOCKET h = check_h(L, 2);
  size_t n;
  WSABUF one, many[VIEW_MAXBUFS], *b = &one;
  DWORD nb = 1, sent = 0, flags = (DWORD)opt_int32_arg(L, 4, 0);
  SOCKADDR_STORAGE ss;
  int len = 0;
  if (view_arg(L, 3, many, &nb, &n, 0)) {
    b = many;
  } else {
    one.buf = (CHAR *)luaL_checklstring(L, 3, &n);
    luaL_argcheck(L, n <= 0xffffffffu, 3, "longer than a WSABUF holds");
    one.len = (ULONG)n;
  }
  if (!lua_isnoneornil(L, 5)) addr_arg(L, 5, &ss, &len);
  if (len) RESULT("lower.send", low->procs.lpWSPSendTo(h, b, nb, &sent, flags, (struct sockaddr *)&ss, len, NULL, NULL, NULL, &err));
  else RESULT("lower.send", low->procs.lpWSPSend(h, b, nb, &sent, flags, NULL, NULL, NULL, &err));
  lua_pushinteger(L, sent);
  lua_pushinteger(L, (lua_Integer)(n > sent ? n - sent : 0));
  return 2;
}

/* low:recv(h, len | view [, flags [, from]]) -> data (or, into a writable view,
 * the bytes written), flags [, sender] */
static int m_recv(lua_State *L) {
  LOW;
  SOCKET h = check_h(L, 2);
  DWORD flags = (DWORD)opt_int32_arg(L, 4, 0), got = 0, nb = 1;
  int from = lua_toboolean(L, 5), len = sizeof(SOCKADDR_STORAGE);
  SOCKADDR_STORAGE ss;
  luaL_Buffer lb;
  WSABUF one, many[VIEW_MAXBUFS], *b = &one;
  int into_view = view_arg(L, 3, many, &nb, NULL, 1);
  if (into_view) {
    b = many;
  } else {
    lua_Integer cap = int_arg(L, 3);
    luaL_argcheck(L, cap >= 0 && cap <= 16 * 1024 * 1024, 3, "length out of range");
    one.buf = luaL_buffinitsize(L, &lb, (size_t)cap);
    one.len = (ULONG)cap;
  }
  if (from) RESULT("lower.recv", low->procs.lpWSPRecvFrom(h, b, nb, &got, &flags, (struct sockaddr *)&ss, &len, NULL, NULL, NULL, &err));
  else RESULT("lower.recv", low->procs.lpWSPRecv(h, b, nb, &got, &flags, NULL, NULL, NULL, &err));
  if (into_view) lua_pushinteger(L, got);
  else luaL_pushresultsize(&lb, got);
  lua_pushinteger(L, flags);
  if (!from) return 2;
  lwsp_push_sockaddr(L, (struct sockaddr *)&ss, len);
  return 3;
}

static int m_shutdown(lua_State *L) {
  LOW;
  SOCKET h = check_h(L, 2);
  int how = (int)int32_arg(L, 3);
  RESULT("lower.shutdown", low->procs.lpWSPShutdown(h, how, &err));
  lua_pushboolean(L, 1);
  return 1;
}

static int name_call(lua_State *L, int peer) {
  LOW;
  SOCKADDR_STORAGE ss;
  int len = sizeof ss;
  SOCKET h = check_h(L, 2);
  if (peer) RESULT("lower.getpeername", low->procs.lpWSPGetPeerName(h, (struct sockaddr *)&ss, &len, &err));
  else RESULT("lower.getsockname", low->procs.lpWSPGetSockName(h, (struct sockaddr *)&ss, &len, &err));
  lwsp_push_sockaddr(L, (struct sockaddr *)&ss, len);
  return 1;
}
static int m_getsockname(lua_State *L) { return name_call(L, 0); }
static int m_getpeername(lua_State *L) { return name_call(L, 1); }

/* low:getsockopt(h, level, name [, optlen = 4]) -> raw bytes */
static int m_getsockopt(lua_State *L) {
  LOW;
  char buf[sizeof(WSAPROTOCOL_INFOW)];
  int len = (int)opt_int32_arg(L, 5, 4);
  luaL_argcheck(L, len >= 0 && len <= (int)sizeof buf, 5, "length out of range");
  SOCKET h = check_h(L, 2);
  int level = (int)int32_arg(L, 3), name = (int)int32_arg(L, 4);
  RESULT("lower.getsockopt", low->procs.lpWSPGetSockOpt(h, level, name, buf, &len, &err));
  lua_pushlstring(L, buf, (size_t)len);
  return 1;
}

/* low:setsockopt(h, level, name, raw bytes) */
static int m_setsockopt(lua_State *L) {
  LOW;
  size_t n;
  const char *v = luaL_checklstring(L, 5, &n);
  SOCKET h = check_h(L, 2);
  int level = (int)int32_arg(L, 3), name = (int)int32_arg(L, 4);
  luaL_argcheck(L, n <= 0x7fffffff, 5, "longer than an int");
  RESULT("lower.setsockopt", low->procs.lpWSPSetSockOpt(h, level, name, v, (int)n, &err));
  lua_pushboolean(L, 1);
  return 1;
}

/* low:ioctl(h, code [, input [, outlen]]) -> raw output */
static int m_ioctl(lua_State *L) {
  LOW;
  size_t inlen = 0;
  const char *in = luaL_optlstring(L, 4, NULL, &inlen);
  DWORD outlen = (DWORD)opt_int32_arg(L, 5, 0), got = 0;
  char out[1024];
  luaL_argcheck(L, outlen <= sizeof out, 5, "length out of range");
  SOCKET h = check_h(L, 2);
  DWORD code = (DWORD)int32_arg(L, 3);
  luaL_argcheck(L, inlen <= 0xffffffffu, 4, "longer than a DWORD");
  if (code == (DWORD)FIONBIO && (!in || inlen < 4 || memcmp(in, "\0\0\0\0", 4) == 0))
    return fail(L, WSAEINVAL);   /* lower sockets stay non-blocking: no call down may wait in the layer below */
  RESULT("lower.ioctl", low->procs.lpWSPIoctl(h, code, (LPVOID)in, (DWORD)inlen,
                               outlen ? out : NULL, outlen, &got, NULL, NULL, NULL, &err));
  lua_pushlstring(L, out, got);
  return 1;
}

static void to_set(lua_State *L, int idx, wsp_fd_set *s) {
  s->fd_count = 0;
  if (!lua_istable(L, idx)) return;
  for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, idx) && s->fd_count < WSP_FD_SETSIZE; i++) {
    lua_rawgeti(L, idx, i);
    s->fd_array[s->fd_count++] = (SOCKET)lua_tointeger(L, -1);
    lua_pop(L, 1);
  }
}
static void push_set(lua_State *L, const wsp_fd_set *s) {
  lua_createtable(L, (int)s->fd_count, 0);
  for (unsigned i = 0; i < s->fd_count; i++) { lua_pushinteger(L, (lua_Integer)s->fd_array[i]); lua_rawseti(L, -2, i + 1); }
}

/* low:select(read, write, except [, timeout]) -> n, read, write, except (may
 * block, lock released).  A wait longer than SELECT_SLICE goes down in slices
 * of that length, and ends with WSAEINTR when the provider's last WSPCleanup
 * begins meanwhile: no thread sits in the layer below past it. */
#define SELECT_SLICE 0.02
static int m_select(lua_State *L) {
  LOW;
  wsp_fd_set in[3], s[3];
  int have[3];
  double timeout = -1, start = lwsp_now();
  for (int k = 0; k < 3; k++) { have[k] = lua_istable(L, k + 2); to_set(L, k + 2, &in[k]); }
  if (!lua_isnoneornil(L, 5)) {
    timeout = (double)luaL_checknumber(L, 5);
    luaL_argcheck(L, timeout >= 0 && timeout < 2147483647.0, 5, "a timeout in seconds, 0 to 2^31-1");
  }
  for (;;) {
    double t = timeout < 0 ? SELECT_SLICE : timeout - (lwsp_now() - start);
    wsp_timeval tv;
    if (t > SELECT_SLICE) t = SELECT_SLICE;
    if (t < 0) t = 0;
    tv.tv_sec = (LONG)t;
    tv.tv_usec = (LONG)((t - (double)tv.tv_sec) * 1e6);
    memcpy(s, in, sizeof s);
    RESULT("lower.select", low->procs.lpWSPSelect(0, have[0] ? &s[0] : NULL, have[1] ? &s[1] : NULL,
                                                  have[2] ? &s[2] : NULL, &tv, &err));
    if (rc != 0 || (timeout >= 0 && lwsp_now() - start >= timeout)) break;
    if (I->closing && !I->cleaning) return fail(L, WSAEINTR);
  }
  lua_pushinteger(L, rc);
  for (int k = 0; k < 3; k++) push_set(L, &s[k]);
  return 4;
}

/* low:wait(h, "r"|"w") -> key: wsp.wait(key) returns when h is ready (or closed) */
static int m_wait(lua_State *L) {
  lwsp_lower *low = check_lower(L);
  SOCKET h = check_h(L, 2);
  int dir = luaL_checkstring(L, 3)[0] == 'w';
  size_t i;
  for (i = 0; i < low->nregs && !(low->regs[i].h == h && low->regs[i].dir == dir); i++) {}
  if (i == low->nregs) {
    if (low->nregs == low->capregs) {
      size_t nc = low->capregs ? low->capregs * 2 : 16;
      lreg *r = realloc(low->regs, nc * sizeof *r);
      if (!r) return fail(L, WSAENOBUFS);
      low->regs = r;
      low->capregs = nc;
    }
    low->regs[low->nregs].h = h;
    low->regs[low->nregs].dir = dir;
    low->nregs++;
  }
  rt_service_start(low->I);
  lwsp_cond_broadcast(&low->I->cond);
  lua_pushfstring(L, "%c%I", dir ? 'w' : 'r', (lua_Integer)h);
  return 1;
}

/* low:watch(h, s [, listening [, connecting]]): s gets network events from h's readiness */
static int m_watch(lua_State *L) {
  lwsp_lower *low = check_lower(L);
  SOCKET h = check_h(L, 2);
  lwsp_sock *so;
  size_t i;
  luaL_checktype(L, 3, LUA_TTABLE);
  lua_getfield(L, 3, "handle");
  so = lua_isinteger(L, -1) ? rt_sock_find(low->I, (SOCKET)lua_tointeger(L, -1)) : NULL;
  lua_pop(L, 1);
  if (!so) return fail(L, WSAENOTSOCK);
  for (i = 0; i < low->nwatches && low->watches[i].h != h; i++) {}
  if (i == low->nwatches) {
    if (low->nwatches == low->capwatches) {
      size_t nc = low->capwatches ? low->capwatches * 2 : 16;
      lwatch *w = realloc(low->watches, nc * sizeof *w);
      if (!w) return fail(L, WSAENOBUFS);
      low->watches = w;
      low->capwatches = nc;
    }
    low->nwatches++;
  }
  low->watches[i].h = h;
  low->watches[i].so = so;
  low->watches[i].gen = so->gen;
  low->watches[i].listening = lua_toboolean(L, 4);
  low->watches[i].connecting = lua_toboolean(L, 5);
  rt_service_start(low->I);
  lwsp_cond_broadcast(&low->I->cond);
  lua_pushboolean(L, 1);
  return 1;
}

/* low:info() -> the protocol info the lower layer was started with */
static int m_info(lua_State *L) {
  lwsp_lower *low = check_lower(L);
  lwsp_push_protocol_info(L, &low->pass);
  return 1;
}

/* ---- calls a layer inherits, made here ----------------------------------------
 * wsp.layered marks its passthrough handlers with lwsp.inherited(fn, name).  A
 * provider whose handler for one of these calls is still that function has
 * the runtime make the call down itself, with the socket table's own s.low and
 * s.lh, exactly as the handler would, without entering Lua.  Traced calls,
 * calls under an armed fault, and what the handler does beyond its first call
 * down (waiting after a would-block) still run the handler. */
static const char *const inheritable[] = {"getsockopt", "setsockopt", "send", "recv", "getsockname", "getpeername",
                                          "sendto", "recvfrom", "acceptex", "connectex", "disconnectex", "wsarecvmsg",
                                          NULL};
#define INHERITED_KEY "lwsp.inherited"

/* lwsp.inherited(fn, name): fn is wsp.layered's passthrough for name. */
static int l_inherited(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  luaL_checkoption(L, 2, NULL, inheritable);
  if (lua_getfield(L, LUA_REGISTRYINDEX, INHERITED_KEY) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, INHERITED_KEY);
  }
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  lua_rawset(L, -3);
  return 0;
}

void rt_lower_inherited(lwsp_inst *I) {
  lua_State *L = I->L;
  memset(I->inherited, 0, sizeof I->inherited);
  if (lua_getfield(L, LUA_REGISTRYINDEX, INHERITED_KEY) == LUA_TTABLE) {
    for (int i = 0; i < LWSP_NPROCS; i++) {
      if (I->href[i] == LUA_NOREF) continue;
      lua_rawgeti(L, LUA_REGISTRYINDEX, I->href[i]);
      if (lua_rawget(L, -2) == LUA_TSTRING && strcmp(lua_tostring(L, -1), lwsp_proc_names[i]) == 0) I->inherited[i] = 1;
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
}

/* Reads the socket table's s.low and s.lh into so->down_low, so->down_lh. */
static void read_down(lwsp_inst *I, lwsp_sock *so) {
  lua_State *L = I->L;
  lower_ud *u;
  if (lua_rawgeti(L, LUA_REGISTRYINDEX, so->ref) == LUA_TTABLE) {
    lua_pushliteral(L, "low");
    lua_rawget(L, -2);
    lua_pushliteral(L, "lh");
    lua_rawget(L, -3);
    u = lwsp_tagged(L, -2, sizeof *u, LOWER_TAG);
    if (u && u->low && u->low->I == I && lua_isinteger(L, -1)) {
      so->down_low = u->low;
      so->down_lh = (SOCKET)lua_tointeger(L, -1);
    }
    lua_pop(L, 2);
  }
  lua_pop(L, 1);
}

const WSPPROC_TABLE *rt_lower_procs(lwsp_lower *low);   /* extfn.h */
const WSPPROC_TABLE *rt_lower_procs(lwsp_lower *low) { return &low->procs; }

int rt_lower_resolve(lwsp_inst *I, lwsp_sock *so, lwsp_lower **low, SOCKET *lh) {
  /* the table can only have changed if Lua code has run since it was read */
  if (so->down_seen != I->lua_runs + 1) {
    if (so->ref == LUA_NOREF || !lua_checkstack(I->L, 3)) return 0;
    so->down_low = NULL;
    read_down(I, so);
    so->down_seen = I->lua_runs + 1;
  }
  if (!so->down_low || !so->down_low->started) return 0;
  *low = so->down_low;
  *lh = so->down_lh;
  return 1;
}


#define DOWN_CALL(c, expr) do { lwsp_inst *I_ = (c)->I; int rc_; DOWN(I_, rc_ = (expr)); return rc_; } while (0)
int rt_down_getsockopt(rt_call *c, int level, int name, char *val, LPINT len, LPINT err) {
  DOWN_CALL(c, c->low->procs.lpWSPGetSockOpt(c->lh, level, name, val, len, err));
}
int rt_down_setsockopt(rt_call *c, int level, int name, const char *val, int len, LPINT err) {
  DOWN_CALL(c, c->low->procs.lpWSPSetSockOpt(c->lh, level, name, val, len, err));
}
int rt_down_name(rt_call *c, int peer, struct sockaddr *name, LPINT namelen, LPINT err) {
  if (peer) DOWN_CALL(c, c->low->procs.lpWSPGetPeerName(c->lh, name, namelen, err));
  DOWN_CALL(c, c->low->procs.lpWSPGetSockName(c->lh, name, namelen, err));
}
/* (to: WSPSendTo's address, NULL for WSPSend; from: WSPRecvFrom's, NULL for WSPRecv) */
int rt_down_send(rt_call *c, LPWSABUF b, DWORD n, LPDWORD sent, DWORD flags, const struct sockaddr *to, int tolen,
                 LPINT err) {
  if (c->proc == P_sendto && to) DOWN_CALL(c, c->low->procs.lpWSPSendTo(c->lh, b, n, sent, flags, to, tolen, NULL, NULL, NULL, err));
  DOWN_CALL(c, c->low->procs.lpWSPSend(c->lh, b, n, sent, flags, NULL, NULL, NULL, err));
}
int rt_down_recv(rt_call *c, LPWSABUF b, DWORD n, LPDWORD got, LPDWORD flags, struct sockaddr *from, LPINT fromlen,
                 LPINT err) {
  if (c->proc == P_recvfrom) DOWN_CALL(c, c->low->procs.lpWSPRecvFrom(c->lh, b, n, got, flags, from, fromlen, NULL, NULL, NULL, err));
  DOWN_CALL(c, c->low->procs.lpWSPRecv(c->lh, b, n, got, flags, NULL, NULL, NULL, err));
}
int rt_down_select(rt_call *c, int dir, long ms, LPINT err) {
  wsp_fd_set set, bad;
  wsp_timeval tv = {(LONG)(ms / 1000), (LONG)(ms % 1000 * 1000)};
  set.fd_count = bad.fd_count = 1;
  set.fd_array[0] = bad.fd_array[0] = c->lh;
  DOWN_CALL(c, c->low->procs.lpWSPSelect(0, dir ? NULL : &set, dir ? &set : NULL, &bad, &tv, err));
}

static int lower_gc(lua_State *L) {
  ((lower_ud *)luaL_checkudata(L, 1, LOWER_MT))->low = NULL;   /* the instance owns the lower layer */
  return 0;
}

int rt_lower_open(lua_State *L, lwsp_inst *I) {
  static const luaL_Reg methods[] = {
    {"socket", m_socket}, {"close", m_close}, {"bind", m_bind}, {"listen", m_listen}, {"connect", m_connect},
    {"accept", m_accept}, {"send", m_send}, {"recv", m_recv}, {"shutdown", m_shutdown},
    {"getsockname", m_getsockname}, {"getpeername", m_getpeername}, {"getsockopt", m_getsockopt},
    {"setsockopt", m_setsockopt}, {"ioctl", m_ioctl}, {"select", m_select}, {"wait", m_wait},
    {"watch", m_watch}, {"info", m_info}, {"duplicate", m_duplicate}, {NULL, NULL}};
  if (luaL_newmetatable(L, LOWER_MT)) {
    lua_pushcfunction(L, lower_gc);
    lua_setfield(L, -2, "__gc");
    luaL_newlib(L, methods);
    rt_extlua_methods(L);   /* connectex, acceptex, disconnectex (extlua.c) */
    lua_setfield(L, -2, "__index");
  }
  /* lwsp.lower_methods: the methods themselves, for hot paths that call them
   * as functions (m(low, ...)) instead of looking them up on each call */
  lua_getfield(L, -1, "__index");
  lua_setfield(L, -3, "lower_methods");
  lua_pop(L, 1);
  lua_pushlightuserdata(L, I);
  lua_pushcclosure(L, l_lower, 1);
  lua_setfield(L, -2, "lower");
  lua_pushcfunction(L, l_inherited);
  lua_setfield(L, -2, "inherited");
  return 0;
}
