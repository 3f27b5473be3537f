/*
 * cpass.c - a passthrough layered provider written in C, the floor any layer
 * can reach: its own non-IFS handle per socket (context = the lower handle),
 * and every call forwarded to the layer below.  For the benchmark only: the
 * lower DLL and its catalog id come from $LWSP_CPASS_LOWER and
 * $LWSP_CPASS_LOWER_ID, and only the calls the benchmark makes are forwarded
 * with care (the rest answer WSAEOPNOTSUPP).
 */
#include "spi.h"
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

static WSPPROC_TABLE low;
static WSPUPCALLTABLE up;
static WSAPROTOCOL_INFOW low_info;
static DWORD my_catalog;
static void *lib;

static SOCKET lower_of(SOCKET s, LPINT err) {
  DWORD_PTR ctx = 0;
  if (up.lpWPUQuerySocketHandleContext(s, &ctx, err) != 0) return INVALID_SOCKET;
  return (SOCKET)ctx;
}
#define LOWER(s) SOCKET ls = lower_of(s, err); if (ls == INVALID_SOCKET) return SOCKET_ERROR

static SOCKET WSPAPI c_socket(int af, int type, int proto, LPWSAPROTOCOL_INFOW pi, GROUP g, DWORD flags, LPINT err) {
  SOCKET ls = low.lpWSPSocket(af, type, proto, &low_info, g, flags | WSA_FLAG_OVERLAPPED, err), h;
  (void)pi;
  if (ls == INVALID_SOCKET) return ls;
  h = up.lpWPUCreateSocketHandle(my_catalog, (DWORD_PTR)ls, err);
  if (h == INVALID_SOCKET) { INT e; low.lpWSPCloseSocket(ls, &e); }
  return h;
}
static int WSPAPI c_closesocket(SOCKET s, LPINT err) {
  LOWER(s);
  if (low.lpWSPCloseSocket(ls, err) != 0) return SOCKET_ERROR;
  return up.lpWPUCloseSocketHandle(s, err);
}
static int WSPAPI c_bind(SOCKET s, const struct sockaddr *a, int l, LPINT err) { LOWER(s); return low.lpWSPBind(ls, a, l, err); }
static int WSPAPI c_listen(SOCKET s, int b, LPINT err) { LOWER(s); return low.lpWSPListen(ls, b, err); }
static int WSPAPI c_connect(SOCKET s, const struct sockaddr *a, int l, LPWSABUF cd, LPWSABUF ce, LPQOS sq, LPQOS gq, LPINT err) {
  LOWER(s);
  return low.lpWSPConnect(ls, a, l, cd, ce, sq, gq, err);
}
static SOCKET WSPAPI c_accept(SOCKET s, struct sockaddr *a, LPINT l, LPCONDITIONPROC c, DWORD_PTR d, LPINT err) {
  SOCKET ls = lower_of(s, err), n, h;
  if (ls == INVALID_SOCKET) return ls;
  n = low.lpWSPAccept(ls, a, l, c, d, err);
  if (n == INVALID_SOCKET) return n;
  h = up.lpWPUCreateSocketHandle(my_catalog, (DWORD_PTR)n, err);
  return h;
}
static int WSPAPI c_send(SOCKET s, LPWSABUF b, DWORD n, LPDWORD sent, DWORD f, LPWSAOVERLAPPED ov,
                         LPWSAOVERLAPPED_COMPLETION_ROUTINE r, LPWSATHREADID t, LPINT err) {
  LOWER(s);
  return low.lpWSPSend(ls, b, n, sent, f, ov, r, t, err);
}
static int WSPAPI c_recv(SOCKET s, LPWSABUF b, DWORD n, LPDWORD got, LPDWORD f, LPWSAOVERLAPPED ov,
                         LPWSAOVERLAPPED_COMPLETION_ROUTINE r, LPWSATHREADID t, LPINT err) {
  LOWER(s);
  return low.lpWSPRecv(ls, b, n, got, f, ov, r, t, err);
}
static int WSPAPI c_getsockopt(SOCKET s, int lv, int o, char *v, LPINT l, LPINT err) { LOWER(s); return low.lpWSPGetSockOpt(ls, lv, o, v, l, err); }
static int WSPAPI c_setsockopt(SOCKET s, int lv, int o, const char *v, int l, LPINT err) { LOWER(s); return low.lpWSPSetSockOpt(ls, lv, o, v, l, err); }
static int WSPAPI c_getsockname(SOCKET s, struct sockaddr *a, LPINT l, LPINT err) { LOWER(s); return low.lpWSPGetSockName(ls, a, l, err); }
static int WSPAPI c_getpeername(SOCKET s, struct sockaddr *a, LPINT l, LPINT err) { LOWER(s); return low.lpWSPGetPeerName(ls, a, l, err); }
static int WSPAPI c_shutdown(SOCKET s, int h, LPINT err) { LOWER(s); return low.lpWSPShutdown(ls, h, err); }
static int WSPAPI c_ioctl(SOCKET s, DWORD c, LPVOID i, DWORD ci, LPVOID o, DWORD co, LPDWORD r, LPWSAOVERLAPPED ov,
                          LPWSAOVERLAPPED_COMPLETION_ROUTINE cr, LPWSATHREADID t, LPINT err) {
  LOWER(s);
  return low.lpWSPIoctl(ls, c, i, ci, o, co, r, ov, cr, t, err);
}
static int WSPAPI c_cleanup(LPINT err) {
  int rc = low.lpWSPCleanup(err);
  dlclose(lib);
  return rc;
}
static int nope(LPINT err) { *err = WSAEOPNOTSUPP; return SOCKET_ERROR; }
static SOCKET WSPAPI n_joinleaf(SOCKET s, const struct sockaddr *a, int l, LPWSABUF cd, LPWSABUF ce, LPQOS sq, LPQOS gq, DWORD f, LPINT err) { (void)s; (void)a; (void)l; (void)cd; (void)ce; (void)sq; (void)gq; (void)f; nope(err); return INVALID_SOCKET; }
static INT WSPAPI n_a2s(LPSOCKADDR a, DWORD l, LPWSAPROTOCOL_INFOW p, LPWSTR o, LPDWORD ol, LPINT err) { (void)a; (void)l; (void)p; (void)o; (void)ol; return nope(err); }
static int WSPAPI n_async(SOCKET s, HWND h, unsigned m, LONG e, LPINT err) { (void)s; (void)h; (void)m; (void)e; return nope(err); }
static int WSPAPI n_cancel(LPINT err) { return nope(err); }
static int WSPAPI n_dup(SOCKET s, DWORD p, LPWSAPROTOCOL_INFOW i, LPINT err) { (void)s; (void)p; (void)i; return nope(err); }
static int WSPAPI n_enum(SOCKET s, WSAEVENT e, LPWSANETWORKEVENTS n, LPINT err) { (void)s; (void)e; (void)n; return nope(err); }
static int WSPAPI n_evsel(SOCKET s, WSAEVENT e, LONG m, LPINT err) { (void)s; (void)e; (void)m; return nope(err); }
static BOOL WSPAPI n_gor(SOCKET s, LPWSAOVERLAPPED o, LPDWORD b, BOOL w, LPDWORD f, LPINT err) { (void)s; (void)o; (void)b; (void)w; (void)f; nope(err); return FALSE; }
static BOOL WSPAPI n_qos(SOCKET s, LPWSABUF n, LPQOS q, LPINT err) { (void)s; (void)n; (void)q; nope(err); return FALSE; }
static int WSPAPI n_rd(SOCKET s, LPWSABUF d, LPINT err) { (void)s; (void)d; return nope(err); }
static int WSPAPI n_rf(SOCKET s, LPWSABUF b, DWORD n, LPDWORD g, LPDWORD f, struct sockaddr *fr, LPINT fl, LPWSAOVERLAPPED o, LPWSAOVERLAPPED_COMPLETION_ROUTINE r, LPWSATHREADID t, LPINT err) { (void)s; (void)b; (void)n; (void)g; (void)f; (void)fr; (void)fl; (void)o; (void)r; (void)t; return nope(err); }
static int WSPAPI n_sel(int n, wsp_fd_set *r, wsp_fd_set *w, wsp_fd_set *x, wsp_timeval *tv, LPINT err) { (void)n; (void)r; (void)w; (void)x; (void)tv; return nope(err); }
static int WSPAPI n_st(SOCKET s, LPWSABUF b, DWORD n, LPDWORD g, DWORD f, const struct sockaddr *to, int tl, LPWSAOVERLAPPED o, LPWSAOVERLAPPED_COMPLETION_ROUTINE r, LPWSATHREADID t, LPINT err) { (void)s; (void)b; (void)n; (void)g; (void)f; (void)to; (void)tl; (void)o; (void)r; (void)t; return nope(err); }
static INT WSPAPI n_s2a(LPWSTR s, INT af, LPWSAPROTOCOL_INFOW p, LPSOCKADDR a, LPINT l, LPINT err) { (void)s; (void)af; (void)p; (void)a; (void)l; return nope(err); }

__attribute__((visibility("default")))
int WSPAPI WSPStartup(WORD v, LPWSPDATA d, LPWSAPROTOCOL_INFOW pi, WSPUPCALLTABLE u, LPWSPPROC_TABLE t) {
  const char *path = getenv("LWSP_CPASS_LOWER"), *id = getenv("LWSP_CPASS_LOWER_ID");
  LPWSPSTARTUP ls;
  void *sym;
  int rc;
  static const GUID native = {0x6C777370, 0x4E41, 0x5449, {0x56, 0x45, 0, 0, 0, 0, 0, 1}};
  if (!path || !id || !(lib = dlopen(path, RTLD_NOW | RTLD_LOCAL))) return WSAEPROVIDERFAILEDINIT;
  if (!(sym = dlsym(lib, "WSPStartup"))) return WSAEPROVIDERFAILEDINIT;
  memcpy(&ls, &sym, sizeof ls);
  up = u;
  my_catalog = pi->dwCatalogEntryId;
  low_info = *pi;
  low_info.ProviderId = native;
  low_info.dwCatalogEntryId = (DWORD)atol(id);
  low_info.ProtocolChain.ChainLen = 1;
  low_info.ProtocolChain.ChainEntries[0] = low_info.dwCatalogEntryId;
  if ((rc = ls(v, d, &low_info, u, &low)) != 0) return rc;
  *t = (WSPPROC_TABLE){c_accept, n_a2s, n_async, c_bind, n_cancel, c_cleanup, c_closesocket, c_connect, n_dup,
                       n_enum, n_evsel, n_gor, c_getpeername, c_getsockname, c_getsockopt, n_qos, c_ioctl,
                       n_joinleaf, c_listen, c_recv, n_rd, n_rf, n_sel, c_send, n_rd, n_st, c_setsockopt,
                       c_shutdown, c_socket, n_s2a};
  return 0;
}
