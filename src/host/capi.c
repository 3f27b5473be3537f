/*
 * hostc.c - the host's application calls as plain C, for the preload library
 * (liblwsp_preload.so, src/preload/preload.c).  Each call is what ws2_32 does
 * for the application: find the provider behind the handle and call its
 * WSP entry.  Types at this boundary are plain C (no spi.h, no system socket
 * headers): addresses are Windows-layout sockaddrs (AF_INET 2, AF_INET6 23),
 * option levels and names are Winsock's.  Every call returns 0 (or a count, or
 * a handle) and on failure -1 (or LWSP_HC_INVALID) with the Winsock error in
 * *err.  The host's lock is never held across a call into a provider.
 */
#include "host.h"
#include <string.h>

#define HC_API LWSP_EXPORT
#define HC_PROV(s) hprov *p; if (!(p = host_prov_of((SOCKET)(s), err))) return -1

static void adopt(SOCKET s, hprov *p) {
  hsock *hs;
  lwsp_mutex_lock(&host_lock);
  if ((hs = host_sock(s)) != NULL && !hs->prov) hs->prov = p;
  lwsp_mutex_unlock(&host_lock);
}

/* A socket of catalog entry `catalog` (which the host loads on first use). */
HC_API int lwsp_hc_socket(unsigned catalog, int af, int type, int proto, uintptr_t *out, int *err);
HC_API int lwsp_hc_socket(unsigned catalog, int af, int type, int proto, uintptr_t *out, int *err) {
  WSAPROTOCOL_INFOW info;
  hentry *e;
  hprov *p;
  SOCKET s;
  *err = 0;
  host_init();
  lwsp_mutex_lock(&host_lock);
  e = host_entry(catalog);
  if (e) info = e->info;
  lwsp_mutex_unlock(&host_lock);
  if (!e) { *err = WSAEINVALIDPROVIDER; return -1; }
  if (!(p = host_load(catalog, err))) return -1;
  s = HCALL(NULL, p, WSPSocket, 0, err, af, type, proto, &info, 0, WSA_FLAG_OVERLAPPED, err);
  if (s == INVALID_SOCKET) return -1;
  if (!host_claim_socket(NULL, p, s)) {
    *err = WSASYSCALLFAILURE;
    return -1;
  }
  *out = (uintptr_t)s;
  return 0;
}

HC_API int lwsp_hc_close(uintptr_t s, int *err);
HC_API int lwsp_hc_close(uintptr_t s, int *err) {
  HC_PROV(s);
  if (HCALL(NULL, p, WSPCloseSocket, s, err, (SOCKET)s, err) == SOCKET_ERROR) return -1;
  if (!host_forget_ifs((SOCKET)s)) lwsp_log("host", "provider closed socket %llu without WPUCloseSocketHandle", (unsigned long long)s);
  return 0;
}

HC_API int lwsp_hc_bind(uintptr_t s, const void *sa, int len, int *err);
HC_API int lwsp_hc_bind(uintptr_t s, const void *sa, int len, int *err) {
  HC_PROV(s);
  return HCALL(NULL, p, WSPBind, s, err, (SOCKET)s, (const struct sockaddr *)sa, len, err) == SOCKET_ERROR ? -1 : 0;
}

HC_API int lwsp_hc_listen(uintptr_t s, int backlog, int *err);
HC_API int lwsp_hc_listen(uintptr_t s, int backlog, int *err) {
  HC_PROV(s);
  return HCALL(NULL, p, WSPListen, s, err, (SOCKET)s, backlog, err) == SOCKET_ERROR ? -1 : 0;
}

HC_API int lwsp_hc_connect(uintptr_t s, const void *sa, int len, int *err);
HC_API int lwsp_hc_connect(uintptr_t s, const void *sa, int len, int *err) {
  HC_PROV(s);
  return HCALL(NULL, p, WSPConnect, s, err, (SOCKET)s, (const struct sockaddr *)sa, len, NULL, NULL, NULL, NULL, err)
    == SOCKET_ERROR ? -1 : 0;
}

/* The accepted handle, or (uintptr_t)-1. */
HC_API uintptr_t lwsp_hc_accept(uintptr_t s, void *sa, int *len, int *err);
HC_API uintptr_t lwsp_hc_accept(uintptr_t s, void *sa, int *len, int *err) {
  SOCKET ns;
  hprov *p;
  if (!(p = host_prov_of((SOCKET)s, err))) return (uintptr_t)-1;
  ns = HCALL(NULL, p, WSPAccept, s, err, (SOCKET)s, (struct sockaddr *)sa, len, NULL, 0, err);
  if (ns == INVALID_SOCKET) return (uintptr_t)-1;
  adopt(ns, p);
  return (uintptr_t)ns;
}

/* WSPSend / WSPSendTo (to != NULL) of one buffer: the bytes sent or -1. */
/* One buffer of at most 2 GiB - 1 for a call made on this thread. */
static void one_buf(WSABUF *b, const void *buf, size_t n, WSATHREADID *tid) {
  b->buf = (CHAR *)buf;
  b->len = (ULONG)(n > 0x7fffffff ? 0x7fffffff : n);
  host_this_thread(tid);
}

HC_API long lwsp_hc_send(uintptr_t s, const void *buf, size_t n, int flags, const void *to, int tolen, int *err);
HC_API long lwsp_hc_send(uintptr_t s, const void *buf, size_t n, int flags, const void *to, int tolen, int *err) {
  WSABUF b;
  DWORD sent = 0;
  WSATHREADID tid;
  int rc;
  HC_PROV(s);
  one_buf(&b, buf, n, &tid);
  if (to) rc = HCALL(NULL, p, WSPSendTo, s, err, (SOCKET)s, &b, 1, &sent, (DWORD)flags, (const struct sockaddr *)to, tolen, NULL, NULL, &tid, err);
  else rc = HCALL(NULL, p, WSPSend, s, err, (SOCKET)s, &b, 1, &sent, (DWORD)flags, NULL, NULL, &tid, err);
  return rc == SOCKET_ERROR ? -1 : (long)sent;
}

/* WSPRecv / WSPRecvFrom (from != NULL) into one buffer: the bytes received
 * (0 at the end of the stream) or -1; *flags in and out. */
HC_API long lwsp_hc_recv(uintptr_t s, void *buf, size_t n, int *flags, void *from, int *fromlen, int *err);
HC_API long lwsp_hc_recv(uintptr_t s, void *buf, size_t n, int *flags, void *from, int *fromlen, int *err) {
  WSABUF b;
  DWORD got = 0, fl = (DWORD)*flags;
  WSATHREADID tid;
  int rc;
  HC_PROV(s);
  one_buf(&b, buf, n, &tid);
  if (from) rc = HCALL(NULL, p, WSPRecvFrom, s, err, (SOCKET)s, &b, 1, &got, &fl, (struct sockaddr *)from, fromlen, NULL, NULL, &tid, err);
  else rc = HCALL(NULL, p, WSPRecv, s, err, (SOCKET)s, &b, 1, &got, &fl, NULL, NULL, &tid, err);
  *flags = (int)fl;
  if (rc == SOCKET_ERROR) return *err == WSAEMSGSIZE ? -2 - (long)got : -1;
  return (long)got;
}

HC_API int lwsp_hc_shutdown(uintptr_t s, int how, int *err);
HC_API int lwsp_hc_shutdown(uintptr_t s, int how, int *err) {
  HC_PROV(s);
  return HCALL(NULL, p, WSPShutdown, s, err, (SOCKET)s, how, err) == SOCKET_ERROR ? -1 : 0;
}

HC_API int lwsp_hc_name(uintptr_t s, int peer, void *sa, int *len, int *err);
HC_API int lwsp_hc_name(uintptr_t s, int peer, void *sa, int *len, int *err) {
  int rc;
  HC_PROV(s);
  if (peer) rc = HCALL(NULL, p, WSPGetPeerName, s, err, (SOCKET)s, (struct sockaddr *)sa, len, err);
  else rc = HCALL(NULL, p, WSPGetSockName, s, err, (SOCKET)s, (struct sockaddr *)sa, len, err);
  return rc == SOCKET_ERROR ? -1 : 0;
}

HC_API int lwsp_hc_getsockopt(uintptr_t s, int level, int name, void *val, int *len, int *err);
HC_API int lwsp_hc_getsockopt(uintptr_t s, int level, int name, void *val, int *len, int *err) {
  HC_PROV(s);
  return HCALL(NULL, p, WSPGetSockOpt, s, err, (SOCKET)s, level, name, (char *)val, len, err) == SOCKET_ERROR ? -1 : 0;
}

HC_API int lwsp_hc_setsockopt(uintptr_t s, int level, int name, const void *val, int len, int *err);
HC_API int lwsp_hc_setsockopt(uintptr_t s, int level, int name, const void *val, int len, int *err) {
  HC_PROV(s);
  return HCALL(NULL, p, WSPSetSockOpt, s, err, (SOCKET)s, level, name, (const char *)val, len, err) == SOCKET_ERROR ? -1 : 0;
}

HC_API int lwsp_hc_ioctl(uintptr_t s, unsigned long code, void *in, unsigned inlen, void *out, unsigned outlen,
                         unsigned *ret, int *err);
HC_API int lwsp_hc_ioctl(uintptr_t s, unsigned long code, void *in, unsigned inlen, void *out, unsigned outlen,
                         unsigned *ret, int *err) {
  DWORD r = 0;
  WSATHREADID tid;
  int rc;
  HC_PROV(s);
  host_this_thread(&tid);
  rc = HCALL(NULL, p, WSPIoctl, s, err, (SOCKET)s, (DWORD)code, in, inlen, out, outlen, &r, NULL, NULL, &tid, err);
  if (ret) *ret = (unsigned)r;
  return rc == SOCKET_ERROR ? -1 : 0;
}
