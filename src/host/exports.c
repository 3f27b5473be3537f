/*
 * exports.c - the names ws2_32 exports that the providers the host loads
 * look up in the module that gave them their upcall table:
 * WPUCompleteOverlappedRequest (host.c's host_complete) and WSCEnumProtocols.
 * The host module exports them under ws2_32's names; the provider DLL never.
 */
#include "host.h"

/* WSCEnumProtocols, as ws2_32 answers it: every catalog entry whose protocol
 * is in the zero-ended list protocols (NULL: all), copied into buf; when buf
 * is too small, SOCKET_ERROR with WSAENOBUFS and the size needed in *len.  A
 * layered provider reads the catalog with it to find the layer below. */
static int WSPAPI host_enum_protocols(LPINT protocols, LPWSAPROTOCOL_INFOW buf, LPDWORD len, LPINT err) {
  DWORD need = 0;
  int n = 0;
  INT errp_;
  if (!err) err = &errp_;
  if (!len) { *err = WSAEFAULT; return SOCKET_ERROR; }
  host_init();
  lwsp_mutex_lock(&host_lock);
  for (int pass = 0; pass < 2; pass++) {
    for (size_t i = 0; i < host_catalog_count(); i++) {
      const hentry *e = host_catalog_at(i);
      int wanted = !protocols;
      for (const INT *p = protocols; p && *p && !wanted; p++) wanted = *p == e->info.iProtocol;
      if (!wanted) continue;
      if (pass == 0) need += sizeof(WSAPROTOCOL_INFOW);
      else buf[n++] = e->info;
    }
    if (pass == 0 && (!buf || *len < need)) {
      lwsp_mutex_unlock(&host_lock);
      *len = need;
      *err = WSAENOBUFS;
      return SOCKET_ERROR;
    }
  }
  lwsp_mutex_unlock(&host_lock);
  return n;
}

/* ws2_32's names, exported as ws2_32 exports them, for the providers this host
 * loads: they look them up in the module that gave them their upcall table. */
#ifndef _WIN32
LWSP_EXPORT int WSPAPI WPUCompleteOverlappedRequest(SOCKET s, LPWSAOVERLAPPED ov, DWORD error, DWORD bytes, LPINT err);
LWSP_EXPORT int WSPAPI WPUCompleteOverlappedRequest(SOCKET s, LPWSAOVERLAPPED ov, DWORD error, DWORD bytes, LPINT err) {
  return host_complete(s, ov, error, bytes, err);
}
LWSP_EXPORT int WSPAPI WSCEnumProtocols(LPINT protocols, LPWSAPROTOCOL_INFOW buf, LPDWORD len, LPINT err);
LWSP_EXPORT int WSPAPI WSCEnumProtocols(LPINT protocols, LPWSAPROTOCOL_INFOW buf, LPDWORD len, LPINT err) {
  return host_enum_protocols(protocols, buf, len, err);
}
#else
/* On Windows the headers declare ws2_32's own; the host module's are these,
 * exported under ws2_32's names by src/host/lwsp_host.def. */
int WSPAPI lwsp_export_complete(SOCKET s, LPWSAOVERLAPPED ov, DWORD error, DWORD bytes, LPINT err);
int WSPAPI lwsp_export_complete(SOCKET s, LPWSAOVERLAPPED ov, DWORD error, DWORD bytes, LPINT err) {
  return host_complete(s, ov, error, bytes, err);
}
int WSPAPI lwsp_export_enum_protocols(LPINT protocols, LPWSAPROTOCOL_INFOW buf, LPDWORD len, LPINT err);
int WSPAPI lwsp_export_enum_protocols(LPINT protocols, LPWSAPROTOCOL_INFOW buf, LPDWORD len, LPINT err) {
  return host_enum_protocols(protocols, buf, len, err);
}
#endif
