/*
 * probe.c - lwsp.host.probe(name, s [, catalog]): calls a provider's proc
 * table the way a careless application would, with NULL pointers and short
 * lengths, and returns the Winsock error it got (0 if the call succeeded).
 * The specs use it to show that bad arguments give errors, never crashes.
 */
#include "host.h"
#include <string.h>

/* probe(name, s [, catalog]).  Over 80 lines: one case per probed call, a
 * table written as a switch, each case a careless application's call. */
static int probe(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  SOCKET s = (SOCKET)luaL_optinteger(L, 2, 0);
  DWORD catalog = HOST_OPT_DWORD(L, 3, 0, "catalog id");
  hprov *p = NULL;
  hsock *hs;
  hentry *e = NULL;
  WSAPROTOCOL_INFOW info;
  WSPPROC_TABLE *t;
  SOCKADDR_STORAGE ss;
  char buf[64];
  WSABUF wb = {sizeof buf, buf}, nullbuf = {10, NULL};
  DWORD n = 0, flags = 0;
  int len = 0, rc = 0;
  INT err = 0;
  wsp_fd_set set;
  wsp_timeval tv = {-1, 0};
  WCHAR w[8] = {'1', '.', '2', '.', '3', '.', '4', 0};
  WSAOVERLAPPED ov;
  memset(&ss, 0, sizeof ss);
  memset(&ov, 0, sizeof ov);
  ss.ss_family = AF_INET;
  host_init();
  lwsp_mutex_lock(&host_lock);
  /* an explicit catalog id sends the call to that entry's provider even when
   * the socket belongs to another one (a foreign handle) */
  if (s && !catalog && (hs = host_sock(s)) != NULL) { p = hs->prov; catalog = hs->catalog; }
  e = catalog ? host_entry(catalog) : NULL;
  if (e) info = e->info;
  lwsp_mutex_unlock(&host_lock);
  if (!e) return luaL_error(L, "probe needs a socket or a catalog id");
  if (!p) {
    if (!(p = host_load(catalog, &err))) return lwsp_push_error(L, err);
  }
  t = &p->procs;
  set.fd_count = 1;
  set.fd_array[0] = s;
#define IS(x) (strcmp(name, x) == 0)
  if (IS("accept:null-addrlen")) rc = t->lpWSPAccept(s, (struct sockaddr *)&ss, NULL, NULL, 0, &err) == INVALID_SOCKET ? -1 : 0;
  else if (IS("accept:short-addrlen")) { len = 4; rc = t->lpWSPAccept(s, (struct sockaddr *)&ss, &len, NULL, 0, &err) == INVALID_SOCKET ? -1 : 0; }
  else if (IS("bind:null")) rc = t->lpWSPBind(s, NULL, 16, &err);
  else if (IS("bind:short")) rc = t->lpWSPBind(s, (struct sockaddr *)&ss, 8, &err);
  else if (IS("bind:null-errno")) rc = t->lpWSPBind(s, NULL, 16, NULL), err = WSAEFAULT;
  else if (IS("connect:null")) rc = t->lpWSPConnect(s, NULL, 16, NULL, NULL, NULL, NULL, &err);
  else if (IS("getsockname:null")) rc = t->lpWSPGetSockName(s, NULL, &len, &err);
  else if (IS("getsockname:null-len")) rc = t->lpWSPGetSockName(s, (struct sockaddr *)&ss, NULL, &err);
  else if (IS("getsockname:ok")) { len = sizeof ss; rc = t->lpWSPGetSockName(s, (struct sockaddr *)&ss, &len, &err); }
  else if (IS("getsockname:short")) { len = 4; rc = t->lpWSPGetSockName(s, (struct sockaddr *)&ss, &len, &err); }
  else if (IS("getpeername:null")) rc = t->lpWSPGetPeerName(s, NULL, &len, &err);
  else if (IS("getsockopt:null-optval")) { len = 4; rc = t->lpWSPGetSockOpt(s, SOL_SOCKET, SO_TYPE, NULL, &len, &err); }
  else if (IS("getsockopt:null-optlen")) rc = t->lpWSPGetSockOpt(s, SOL_SOCKET, SO_TYPE, buf, NULL, &err);
  else if (IS("getsockopt:short")) { len = 2; rc = t->lpWSPGetSockOpt(s, SOL_SOCKET, SO_TYPE, buf, &len, &err); }
  else if (IS("setsockopt:null-optval")) rc = t->lpWSPSetSockOpt(s, SOL_SOCKET, SO_RCVBUF, NULL, 4, &err);
  else if (IS("setsockopt:negative")) rc = t->lpWSPSetSockOpt(s, SOL_SOCKET, SO_RCVBUF, buf, -1, &err);
  else if (IS("recv:null-flags")) rc = t->lpWSPRecv(s, &wb, 1, &n, NULL, NULL, NULL, NULL, &err);
  else if (IS("recv:null-buf")) rc = t->lpWSPRecv(s, &nullbuf, 1, &n, &flags, NULL, NULL, NULL, &err);
  else if (IS("recv:null-bufs")) rc = t->lpWSPRecv(s, NULL, 1, &n, &flags, NULL, NULL, NULL, &err);
  else if (IS("recv:no-bufs")) rc = t->lpWSPRecv(s, NULL, 0, &n, &flags, NULL, NULL, NULL, &err);
  else if (IS("recv:zero-count")) rc = t->lpWSPRecv(s, &wb, 0, &n, &flags, NULL, NULL, NULL, &err);
  else if (IS("recvfrom:no-bufs")) { len = sizeof ss; rc = t->lpWSPRecvFrom(s, NULL, 0, &n, &flags, (struct sockaddr *)&ss, &len, NULL, NULL, NULL, &err); }
  else if (IS("send:no-bufs")) rc = t->lpWSPSend(s, NULL, 0, &n, 0, NULL, NULL, NULL, &err);
  else if (IS("send:zero-count")) rc = t->lpWSPSend(s, &wb, 0, &n, 0, NULL, NULL, NULL, &err);
  else if (IS("recv:null-count")) rc = t->lpWSPRecv(s, &wb, 1, NULL, &flags, NULL, NULL, NULL, &err);
  else if (IS("recvfrom:null-fromlen")) rc = t->lpWSPRecvFrom(s, &wb, 1, &n, &flags, (struct sockaddr *)&ss, NULL, NULL, NULL, NULL, &err);
  else if (IS("recvfrom:short-fromlen")) { len = 4; rc = t->lpWSPRecvFrom(s, &wb, 1, &n, &flags, (struct sockaddr *)&ss, &len, NULL, NULL, NULL, &err); }
  else if (IS("send:null-buf")) rc = t->lpWSPSend(s, &nullbuf, 1, &n, 0, NULL, NULL, NULL, &err);
  else if (IS("send:null-bufs")) rc = t->lpWSPSend(s, NULL, 2, &n, 0, NULL, NULL, NULL, &err);
  else if (IS("send:null-sent")) rc = t->lpWSPSend(s, &wb, 1, NULL, 0, NULL, NULL, NULL, &err);
  else if (IS("sendto:short-to")) rc = t->lpWSPSendTo(s, &wb, 1, &n, 0, (struct sockaddr *)&ss, 6, NULL, NULL, NULL, &err);
  else if (IS("select:all-null")) rc = t->lpWSPSelect(0, NULL, NULL, NULL, NULL, &err);
  else if (IS("select:negative-timeout")) rc = t->lpWSPSelect(0, &set, NULL, NULL, &tv, &err);
  else if (IS("select:too-many")) { set.fd_count = 65; rc = t->lpWSPSelect(0, &set, NULL, NULL, NULL, &err); }
  else if (IS("ioctl:null-returned")) rc = t->lpWSPIoctl(s, FIONREAD, NULL, 0, buf, 4, NULL, NULL, NULL, NULL, &err);
  else if (IS("ioctl:null-in")) rc = t->lpWSPIoctl(s, FIONBIO, NULL, 4, buf, 4, &n, NULL, NULL, NULL, &err);
  else if (IS("enumnetworkevents:null")) rc = t->lpWSPEnumNetworkEvents(s, NULL, NULL, &err);
  else if (IS("duplicatesocket:null")) rc = t->lpWSPDuplicateSocket(s, 1, NULL, &err);
  else if (IS("getoverlappedresult:null")) rc = t->lpWSPGetOverlappedResult(s, NULL, &n, FALSE, &flags, &err) ? 0 : -1;
  else if (IS("getoverlappedresult:pending")) { ov.Internal = WSS_OPERATION_IN_PROGRESS; rc = t->lpWSPGetOverlappedResult(s, &ov, &n, FALSE, &flags, &err) ? 0 : -1; }
  else if (IS("getqosbyname:null")) rc = t->lpWSPGetQOSByName(s, NULL, NULL, &err) ? 0 : -1;
  else if (IS("addresstostring:null")) { n = 8; rc = t->lpWSPAddressToString(NULL, 16, &info, w, &n, &err); }
  else if (IS("addresstostring:short")) {
    n = 2;
    ((unsigned char *)&ss)[4] = 127; ((unsigned char *)&ss)[7] = 1;
    rc = t->lpWSPAddressToString((LPSOCKADDR)&ss, 16, &info, w, &n, &err);
    if (rc == SOCKET_ERROR) { lua_pushinteger(L, err); lua_pushinteger(L, n); return 2; }
  }
  else if (IS("stringtoaddress:null")) { len = 16; rc = t->lpWSPStringToAddress(NULL, AF_INET, &info, (LPSOCKADDR)&ss, &len, &err); }
  else if (IS("stringtoaddress:short")) {
    len = 4;
    rc = t->lpWSPStringToAddress(w, AF_INET, &info, (LPSOCKADDR)&ss, &len, &err);
    if (rc == SOCKET_ERROR) { lua_pushinteger(L, err); lua_pushinteger(L, len); return 2; }
  }
  else if (IS("socket:null-info")) rc = t->lpWSPSocket(AF_INET, SOCK_STREAM, 0, NULL, 0, 0, &err) == INVALID_SOCKET ? -1 : 0;
  else if (IS("shutdown:bad-how")) rc = t->lpWSPShutdown(s, 7, &err);
  else return luaL_argerror(L, 1, "unknown probe");
#undef IS
  lua_pushinteger(L, rc == 0 ? 0 : err);
  return 1;
}

/* raw_startup(catalog, version [, what]) -> code, data: calls the entry's
 * WSPStartup directly with a chosen version (and, with what = "null-data" or
 * "null-info" or "null-upcall", a NULL argument or a NULL upcall), then gives
 * a successful startup straight back with WSPCleanup. */
static int raw_startup(lua_State *L) {
  static const char *const whats[] = {"", "null-data", "null-info", "null-upcall", NULL};
  DWORD catalog = HOST_DWORD(L, 1, "catalog id");
  WORD version = (WORD)host_arg_range(L, 2, 0, 0xffff, "version");
  const char *what = whats[luaL_checkoption(L, 3, "", whats)];
  hentry *e;
  WSAPROTOCOL_INFOW info;
  char path[2048], why[512];
  void *lib, *sym;
  LPWSPSTARTUP startup;
  WSPDATA data;
  WSPPROC_TABLE procs;
  WSPUPCALLTABLE up = host_upcalls;
  int rc;
  host_init();
  lwsp_mutex_lock(&host_lock);
  e = host_entry(catalog);
  if (e) { info = e->info; lwsp_expand_env(e->path, path, sizeof path); }
  lwsp_mutex_unlock(&host_lock);
  if (!e) return luaL_argerror(L, 1, "unknown catalog id");
  if (!(lib = lwsp_dlopen(path, why, sizeof why))) return luaL_error(L, "%s", why);
  sym = lwsp_dlsym(lib, "WSPStartup");
  if (!sym) { lwsp_dlclose(lib); return luaL_error(L, "no WSPStartup"); }
  memcpy(&startup, &sym, sizeof startup);
  memset(&data, 0, sizeof data);
  if (strcmp(what, "null-upcall") == 0) up.lpWPUQueueApc = NULL;
  rc = startup(version, strcmp(what, "null-data") == 0 ? NULL : &data, strcmp(what, "null-info") == 0 ? NULL : &info,
               up, &procs);
  lua_pushinteger(L, rc);
  if (rc == 0) {
    INT err = 0;
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, data.wVersion); lua_setfield(L, -2, "wVersion");
    lua_pushinteger(L, data.wHighVersion); lua_setfield(L, -2, "wHighVersion");
    procs.lpWSPCleanup(&err);
  } else {
    lua_pushnil(L);
  }
  lwsp_dlclose(lib);
  return 2;
}

int lwsp_probe_open(lua_State *L);
int lwsp_probe_open(lua_State *L) {
  static const luaL_Reg fns[] = {{"probe", probe}, {"raw_startup", raw_startup}, {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
  return 0;
}
