/*
 * native_os_win.c - Winsock behind native_os.h, for the native base provider's
 * Windows build.  native.h's files already speak Windows values, so addresses,
 * options, flags and errors pass through; what differs from POSIX is the
 * wake-up channel (a UDP socket connected to itself), the readiness wait
 * (WSAPoll), datagram truncation (WSAEMSGSIZE, reported as len + 1), and
 * overlapped calls, which run as Winsock's own overlapped I/O completing on
 * the provider's completion port (nos_ov_start, nos_port_wait).
 *
 * Under lwsp's host the provider's sockets are Winsock's own; on a Windows
 * catalog the provider would sit below ws2_32 and must not be reached through
 * the chain it serves (see docs/api.md).
 */
#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>
#include <mswsock.h>
#include "native_os.h"
#include "native_os_ext.h"
#include <string.h>
#include <stdlib.h>
#include <stdint.h>

static INIT_ONCE wsa_once = INIT_ONCE_STATIC_INIT;
static BOOL CALLBACK wsa_init(PINIT_ONCE o, PVOID p, PVOID *c) {
  WSADATA d;
  (void)o; (void)p; (void)c;
  return WSAStartup(MAKEWORD(2, 2), &d) == 0;
}
static int ready(void) { return InitOnceExecuteOnce(&wsa_once, wsa_init, NULL, NULL) ? 0 : -WSASYSNOTREADY; }

int nos_wsa_error(int e) { return e ? e : WSASYSCALLFAILURE; }
#define FAIL_WSA (-nos_wsa_error(WSAGetLastError()))

/* An address Winsock gave into the caller's (addr, *len): WSAEFAULT, with the
 * length needed, when it does not fit. */
static int copy_addr(const SOCKADDR_STORAGE *ss, void *addr, int *len) {
  int need = ss->ss_family == AF_INET6 ? (int)sizeof(struct sockaddr_in6) : (int)sizeof(struct sockaddr_in);
  if (*len < need) { *len = need; return -WSAEFAULT; }
  memcpy(addr, ss, (size_t)need);
  *len = need;
  return 0;
}

static HANDLE port;   /* the provider's completion port, while it is started */

/* Every socket of the provider completes its overlapped I/O on the port. */
static int adopt(SOCKET s) {
  if (port && !CreateIoCompletionPort((HANDLE)s, port, 0, 0)) return -nos_wsa_error((int)GetLastError());
  return 0;
}

static int nonblocking(SOCKET s) {
  u_long one = 1;
  return ioctlsocket(s, FIONBIO, &one) == 0 ? 0 : FAIL_WSA;
}

long long nos_socket(int af, int type, int protocol) {
  SOCKET s;
  int rc;
  if ((rc = ready()) != 0) return rc;
  if (af != AF_INET && af != AF_INET6) return -WSAEAFNOSUPPORT;
  if (type != SOCK_STREAM && type != SOCK_DGRAM) return -WSAESOCKTNOSUPPORT;
  s = WSASocketW(af, type, protocol, NULL, 0, WSA_FLAG_OVERLAPPED);
  if (s == INVALID_SOCKET) return FAIL_WSA;
  SetHandleInformation((HANDLE)s, HANDLE_FLAG_INHERIT, 0);
  if ((rc = nonblocking(s)) != 0 || (rc = adopt(s)) != 0) { closesocket(s); return rc; }
  if (af == AF_INET6) { DWORD off = 0; setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, (const char *)&off, sizeof off); }
  return (long long)s;
}

int nos_close(long long fd) { return closesocket((SOCKET)fd) == 0 ? 0 : FAIL_WSA; }

/* Another descriptor of the same socket, as Winsock shares one within a
 * process (WSADuplicateSocketW, then WSASocketW from its info).  The new
 * handle names the same file object, which is on the provider's completion
 * port already (with key 0, as every socket of it): a second association
 * fails and is not needed. */
long long nos_dup(long long fd) {
  WSAPROTOCOL_INFOW pi;
  SOCKET s;
  int rc;
  if (WSADuplicateSocketW((SOCKET)fd, GetCurrentProcessId(), &pi) != 0) return FAIL_WSA;
  s = WSASocketW(FROM_PROTOCOL_INFO, FROM_PROTOCOL_INFO, FROM_PROTOCOL_INFO, &pi, 0, WSA_FLAG_OVERLAPPED);
  if (s == INVALID_SOCKET) return FAIL_WSA;
  SetHandleInformation((HANDLE)s, HANDLE_FLAG_INHERIT, 0);
  if ((rc = nonblocking(s)) != 0) { closesocket(s); return rc; }
  (void)adopt(s);
  return (long long)s;
}

int nos_bind(long long fd, const void *addr, int len) {
  return bind((SOCKET)fd, (const struct sockaddr *)addr, len) == 0 ? 0 : FAIL_WSA;
}

int nos_connect(long long fd, const void *addr, int len) {
  return connect((SOCKET)fd, (const struct sockaddr *)addr, len) == 0 ? 0 : FAIL_WSA;
}

int nos_connect_result(long long fd) {
  int e = 0, l = sizeof e;
  if (getsockopt((SOCKET)fd, SOL_SOCKET, SO_ERROR, (char *)&e, &l) != 0) return FAIL_WSA;
  return e ? -e : 0;
}

int nos_listen(long long fd, int backlog) { return listen((SOCKET)fd, backlog) == 0 ? 0 : FAIL_WSA; }

long long nos_accept(long long fd, void *addr, int *len) {
  SOCKADDR_STORAGE ss;
  int sl = sizeof ss, rc;
  SOCKET s = accept((SOCKET)fd, (struct sockaddr *)&ss, &sl);
  if (s == INVALID_SOCKET) return FAIL_WSA;
  SetHandleInformation((HANDLE)s, HANDLE_FLAG_INHERIT, 0);
  if ((rc = nonblocking(s)) != 0 || (rc = adopt(s)) != 0) { closesocket(s); return rc; }
  if (addr && (rc = copy_addr(&ss, addr, len)) != 0) { closesocket(s); return rc; }
  return (long long)s;
}

long nos_send(long long fd, const void *buf, size_t len, int flags, const void *to, int tolen) {
  int n = to ? sendto((SOCKET)fd, buf, (int)len, flags, (const struct sockaddr *)to, tolen)
             : send((SOCKET)fd, buf, (int)len, flags);
  return n == SOCKET_ERROR ? FAIL_WSA : (long)n;
}

long nos_recv(long long fd, void *buf, size_t len, int flags, void *from, int *fromlen, int dgram) {
  SOCKADDR_STORAGE ss;
  int sl = sizeof ss;
  int n = recvfrom((SOCKET)fd, buf, (int)len, flags, (struct sockaddr *)&ss, &sl);
  if (n == SOCKET_ERROR) {
    int e = WSAGetLastError();
    /* a datagram longer than len: len bytes delivered; its full length is
     * not known here, so one more than len says "truncated" */
    if (!(dgram && e == WSAEMSGSIZE)) return -nos_wsa_error(e);
    n = (int)len + 1;
  }
  if (from && fromlen && dgram && sl > 0) { int rc = copy_addr(&ss, from, fromlen); if (rc) return rc; }
  else if (fromlen) *fromlen = 0;
  return (long)n;
}

/* WSARecvMsg on the OS socket (non-blocking: WSAEWOULDBLOCK), the
 * destination from its IP_PKTINFO / IPV6_PKTINFO control data when the
 * option is on; a datagram longer than len is reported as len + 1, as by
 * nos_recv. */
long nos_recvmsg(long long fd, void *buf, size_t len, void *from, int *fromlen, nos_pktinfo *pi) {
  static LPFN_WSARECVMSG recvmsg_fn;
  GUID id = WSAID_WSARECVMSG;
  SOCKADDR_STORAGE ss;
  union { WSACMSGHDR h; char b[WSA_CMSG_SPACE(sizeof(IN6_PKTINFO)) * 2]; } ctl;
  WSABUF b;
  WSAMSG m;
  DWORD got = 0, n = 0;
  long r;
  pi->af = 0;
  if (!recvmsg_fn) {
    LPFN_WSARECVMSG f = NULL;
    if (WSAIoctl((SOCKET)fd, SIO_GET_EXTENSION_FUNCTION_POINTER, &id, sizeof id, &f, sizeof f, &n, NULL, NULL) != 0)
      return FAIL_WSA;
    __atomic_store_n(&recvmsg_fn, f, __ATOMIC_RELEASE);
  }
  b.buf = buf;
  b.len = (ULONG)len;
  memset(&m, 0, sizeof m);
  m.name = (LPSOCKADDR)&ss;
  m.namelen = sizeof ss;
  m.lpBuffers = &b;
  m.dwBufferCount = 1;
  m.Control.buf = ctl.b;
  m.Control.len = sizeof ctl.b;
  if (__atomic_load_n(&recvmsg_fn, __ATOMIC_ACQUIRE)((SOCKET)fd, &m, &got, NULL, NULL) != 0) {
    int e = WSAGetLastError();
    if (e != WSAEMSGSIZE) return -nos_wsa_error(e);
    r = (long)len + 1;
  } else {
    r = (long)got;
  }
  for (WSACMSGHDR *c = WSA_CMSG_FIRSTHDR(&m); c; c = WSA_CMSG_NXTHDR(&m, c)) {
    if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
      IN_PKTINFO p;
      memcpy(&p, WSA_CMSG_DATA(c), sizeof p);
      pi->af = AF_INET;
      memcpy(pi->addr, &p.ipi_addr, 4);
      pi->ifindex = p.ipi_ifindex;
    } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
      IN6_PKTINFO p;
      memcpy(&p, WSA_CMSG_DATA(c), sizeof p);
      pi->af = AF_INET6;
      memcpy(pi->addr, &p.ipi6_addr, 16);
      pi->ifindex = p.ipi6_ifindex;
    }
  }
  if (from && fromlen && m.namelen > 0) { int rc = copy_addr(&ss, from, fromlen); if (rc) return rc; }
  else if (fromlen) *fromlen = 0;
  return r;
}

int nos_shutdown(long long fd, int how) { return shutdown((SOCKET)fd, how) == 0 ? 0 : FAIL_WSA; }

int nos_name(long long fd, int peer, void *addr, int *len) {
  SOCKADDR_STORAGE ss;
  int sl = sizeof ss;
  int rc = peer ? getpeername((SOCKET)fd, (struct sockaddr *)&ss, &sl) : getsockname((SOCKET)fd, (struct sockaddr *)&ss, &sl);
  if (rc != 0) return FAIL_WSA;
  return copy_addr(&ss, addr, len);
}

/* The options the POSIX build maps, passed to Winsock as they are. */
static int known_opt(int level, int name) {
  if (level == SOL_SOCKET)
    return name == SO_REUSEADDR || name == SO_KEEPALIVE || name == SO_BROADCAST || name == SO_LINGER ||
           name == SO_OOBINLINE || name == SO_ACCEPTCONN || name == SO_SNDBUF || name == SO_RCVBUF ||
           name == SO_ERROR || name == SO_TYPE;
  /* IP_PKTINFO / IPV6_PKTINFO: WSARecvMsg's destination address (nos_recvmsg) */
  return (level == IPPROTO_TCP && name == TCP_NODELAY) || (level == IPPROTO_IPV6 && name == IPV6_V6ONLY) ||
         (level == IPPROTO_IP && name == IP_PKTINFO) || (level == IPPROTO_IPV6 && name == IPV6_PKTINFO);
}

int nos_getsockopt(long long fd, int level, int name, void *val, int *len) {
  int l = *len;
  if (!known_opt(level, name)) return -WSAENOPROTOOPT;
  if (l < 4) return -WSAEFAULT;
  memset(val, 0, 4);
  if (getsockopt((SOCKET)fd, level, name, (char *)val, &l) != 0) return FAIL_WSA;
  *len = 4;
  return 0;
}

int nos_setsockopt(long long fd, int level, int name, const void *val, int len) {
  DWORD v = 0;
  if (!known_opt(level, name) || (level == SOL_SOCKET && name == SO_ERROR)) return -WSAENOPROTOOPT;
  if (len < 1) return -WSAEFAULT;
  if (level == SOL_SOCKET && name == SO_LINGER) {
    if (len < 4) return -WSAEFAULT;
    return setsockopt((SOCKET)fd, level, name, (const char *)val, 4) == 0 ? 0 : FAIL_WSA;
  }
  if (len >= 4) memcpy(&v, val, 4); else v = *(const unsigned char *)val;
  return setsockopt((SOCKET)fd, level, name, (const char *)&v, sizeof v) == 0 ? 0 : FAIL_WSA;
}

int nos_readable_bytes(long long fd, unsigned long *n) {
  u_long v = 0;
  if (ioctlsocket((SOCKET)fd, FIONREAD, &v) != 0) return FAIL_WSA;
  *n = v;
  return 0;
}

int nos_atmark(long long fd) {
  u_long v = 0;
  if (ioctlsocket((SOCKET)fd, SIOCATMARK, &v) != 0) return FAIL_WSA;
  return v != 0;
}

/* The wake-up channel: one UDP socket on 127.0.0.1 connected to itself. */
int nos_pipe(long long fds[2]) {
  struct sockaddr_in a;
  int al = sizeof a, rc;
  SOCKET s;
  if ((rc = ready()) != 0) return rc;
  s = WSASocketW(AF_INET, SOCK_DGRAM, IPPROTO_UDP, NULL, 0, 0);
  if (s == INVALID_SOCKET) return FAIL_WSA;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(s, (struct sockaddr *)&a, sizeof a) != 0 || getsockname(s, (struct sockaddr *)&a, &al) != 0 ||
      connect(s, (struct sockaddr *)&a, sizeof a) != 0 || nonblocking(s) != 0) {
    rc = FAIL_WSA;
    closesocket(s);
    return rc;
  }
  fds[0] = fds[1] = (long long)s;
  return 0;
}
void nos_poke(long long fd) { char c = 1; send((SOCKET)fd, &c, 1, 0); }
void nos_drain(long long fd) { char b[64]; while (recv((SOCKET)fd, b, sizeof b, 0) > 0) {} }

/* ---- overlapped I/O on the provider's port ---------------------------------------- */
typedef struct nos_ov { WSAOVERLAPPED o; void *ctx; SOCKET s; } nos_ov;

int nos_port_open(void) {
  int rc;
  if ((rc = ready()) != 0) return rc;
  if (!port && !(port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0))) return -nos_wsa_error((int)GetLastError());
  return 0;
}
void nos_port_close(void) { if (port) { CloseHandle(port); port = NULL; } }
void nos_port_wake(void) { if (port) PostQueuedCompletionStatus(port, 0, 0, NULL); }

int nos_ov_start(long long fd, int send, const void *bufs, unsigned long nbufs, unsigned long flags, const void *to,
                 int tolen, void *from, int *fromlen, void *ctx, unsigned long *bytes, unsigned long *outflags) {
  nos_ov *v = calloc(1, sizeof *v);
  SOCKET s = (SOCKET)fd;
  WSABUF *b = (WSABUF *)(uintptr_t)bufs;
  DWORD n = 0, fl = flags;
  int rc, e;
  if (!v) return -WSAENOBUFS;
  v->ctx = ctx;
  v->s = s;
  if (send) rc = to ? WSASendTo(s, b, nbufs, &n, flags, (const struct sockaddr *)to, tolen, &v->o, NULL)
                    : WSASend(s, b, nbufs, &n, flags, &v->o, NULL);
  else rc = from ? WSARecvFrom(s, b, nbufs, &n, &fl, (struct sockaddr *)from, fromlen, &v->o, NULL)
                 : WSARecv(s, b, nbufs, &n, &fl, &v->o, NULL);
  if (rc == 0) { *bytes = n; *outflags = fl; return 1; }      /* done at once; its packet still comes */
  if ((e = WSAGetLastError()) == WSA_IO_PENDING) return 0;
  /* not started: no packet will come */
  free(v);
  *bytes = n;
  *outflags = fl;
  return -nos_wsa_error(e);
}

/* A failed completion's Win32 status as the Winsock error an application sees. */
static int wsa_of(DWORD w) {
  switch (w) {
  case ERROR_NETNAME_DELETED: case ERROR_PORT_UNREACHABLE: return WSAECONNRESET;
  case ERROR_CONNECTION_ABORTED: return WSAECONNABORTED;
  case ERROR_CONNECTION_REFUSED: return WSAECONNREFUSED;
  case ERROR_MORE_DATA: return WSAEMSGSIZE;
  case ERROR_NETWORK_UNREACHABLE: return WSAENETUNREACH;
  case ERROR_HOST_UNREACHABLE: return WSAEHOSTUNREACH;
  case ERROR_SEM_TIMEOUT: return WSAETIMEDOUT;
  case ERROR_OPERATION_ABORTED: return WSA_OPERATION_ABORTED;
  default: return w ? (int)w : WSASYSCALLFAILURE;
  }
}

int nos_port_wait(void **ctx, unsigned long *bytes, unsigned long *flags, int *error, int ms) {
  DWORD n = 0, b2 = 0, fl = 0;
  ULONG_PTR key = 0;
  LPOVERLAPPED o = NULL;
  BOOL ok;
  nos_ov *v;
  if (!port) return -1;
  ok = GetQueuedCompletionStatus(port, &n, &key, &o, ms < 0 ? INFINITE : (DWORD)ms);
  if (!o) {
    if (ok) { *ctx = NULL; return 1; }                          /* a wake-up */
    return GetLastError() == WAIT_TIMEOUT ? 0 : -1;
  }
  v = (nos_ov *)o;
  *ctx = v->ctx;
  *bytes = n;
  *flags = 0;
  *error = ok ? 0 : wsa_of(GetLastError());
  /* the flags (MSG_PARTIAL, ...) and Winsock's own error code */
  if (WSAGetOverlappedResult(v->s, &v->o, &b2, FALSE, &fl)) *flags = fl;
  else if (!ok && WSAGetLastError() != WSAENOTSOCK && WSAGetLastError() != WSA_IO_INCOMPLETE) *error = WSAGetLastError();
  free(v);
  return 1;
}

int nos_poll(nos_pollfd *fds, int n, int ms) {
  WSAPOLLFD p[256];
  int rc;
  if (n > 256) n = 256;
  for (int i = 0; i < n; i++) {
    p[i].fd = (SOCKET)fds[i].fd;
    p[i].events = (SHORT)(((fds[i].events & NOS_IN) ? POLLRDNORM | POLLRDBAND : 0) | ((fds[i].events & NOS_OUT) ? POLLWRNORM : 0));
    p[i].revents = 0;
  }
  rc = WSAPoll(p, (ULONG)n, ms);
  if (rc == SOCKET_ERROR) return FAIL_WSA;
  for (int i = 0; i < n; i++)
    fds[i].revents = (short)(((p[i].revents & (POLLRDNORM | POLLRDBAND)) ? NOS_IN : 0) | ((p[i].revents & POLLWRNORM) ? NOS_OUT : 0) |
                             ((p[i].revents & (POLLERR | POLLNVAL)) ? NOS_ERR : 0) | ((p[i].revents & POLLHUP) ? NOS_HUP : 0));
  return rc;
}
#endif
