/*
 * native_os.c - POSIX sockets for the native base provider, converted to and
 * from Windows values (see native_os.h).  Windows socket addresses differ
 * from Linux ones only in the family value; options and flags are mapped one
 * by one, and anything unmapped is WSAENOPROTOOPT / WSAEOPNOTSUPP.
 */
#ifndef _WIN32
#define _GNU_SOURCE
#include "native_os.h"
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/ioctl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

/* Winsock values this file needs (the rest of lwsp has them from spi.h). */
#define W_AF_INET 2
#define W_AF_INET6 23
#define W_SOL_SOCKET 0xffff
#define W_IPPROTO_TCP 6
#define W_IPPROTO_IPV6 41
#define W_MSG_OOB 1
#define W_MSG_PEEK 2
#define W_MSG_DONTROUTE 4
#define W_MSG_WAITALL 8

int nos_wsa_error(int e) {
  switch (e) {
  case EWOULDBLOCK: return 10035;
#if EAGAIN != EWOULDBLOCK
  case EAGAIN: return 10035;
#endif
  case EINPROGRESS: return 10035;
  case EALREADY: return 10037;
  case EINTR: return 10004;
  case EBADF: return 10038;
  case EACCES: return 10013;
  case EFAULT: return 10014;
  case EINVAL: return 10022;
  case EMFILE: case ENFILE: return 10024;
  case ENOTSOCK: return 10038;
  case EDESTADDRREQ: return 10039;
  case EMSGSIZE: return 10040;
  case EPROTOTYPE: return 10041;
  case ENOPROTOOPT: return 10042;
  case EPROTONOSUPPORT: return 10043;
  case ESOCKTNOSUPPORT: return 10044;
  case EOPNOTSUPP: return 10045;
  case EPFNOSUPPORT: return 10046;
  case EAFNOSUPPORT: return 10047;
  case EADDRINUSE: return 10048;
  case EADDRNOTAVAIL: return 10049;
  case ENETDOWN: return 10050;
  case ENETUNREACH: return 10051;
  case ENETRESET: return 10052;
  case ECONNABORTED: return 10053;
  case ECONNRESET: case EPIPE: return 10054;
  case ENOBUFS: case ENOMEM: return 10055;
  case EISCONN: return 10056;
  case ENOTCONN: return 10057;
  case ESHUTDOWN: return 10058;
  case ETIMEDOUT: return 10060;
  case ECONNREFUSED: return 10061;
  case EHOSTDOWN: return 10064;
  case EHOSTUNREACH: return 10065;
  default: return 10107;   /* WSASYSCALLFAILURE */
  }
}
#define FAIL_ERRNO (-nos_wsa_error(errno))

static int os_family(int af) { return af == W_AF_INET ? AF_INET : af == W_AF_INET6 ? AF_INET6 : -1; }

/* Windows address (bytes) -> OS address. */
static int to_os(const void *addr, int len, struct sockaddr_storage *ss, socklen_t *oslen) {
  unsigned short fam;
  if (len < 2 || (size_t)len > sizeof *ss) return -10014;
  memcpy(&fam, addr, 2);
  memcpy(ss, addr, (size_t)len);
  if (fam == W_AF_INET && len >= 16) { ss->ss_family = AF_INET; *oslen = sizeof(struct sockaddr_in); return 0; }
  if (fam == W_AF_INET6 && len >= 28) { ss->ss_family = AF_INET6; *oslen = sizeof(struct sockaddr_in6); return 0; }
  return fam == W_AF_INET || fam == W_AF_INET6 ? -10014 : -10047;
}

/* OS address -> Windows address; WSAEFAULT when it does not fit. */
static int from_os(const struct sockaddr_storage *ss, socklen_t oslen, void *addr, int *len) {
  unsigned short fam;
  int need;
  if (ss->ss_family == AF_INET) { fam = W_AF_INET; need = 16; }
  else if (ss->ss_family == AF_INET6) { fam = W_AF_INET6; need = 28; }
  else return -10047;
  (void)oslen;
  if (*len < need) { *len = need; return -10014; }
  memcpy(addr, ss, (size_t)need);
  memcpy(addr, &fam, 2);
  if (need == 16) memset((char *)addr + 8, 0, 8);
  *len = need;
  return 0;
}

long long nos_socket(int af, int type, int protocol) {
  int fam = os_family(af), fd;
  if (fam < 0) return -10047;
  if (type != 1 && type != 2) return -10044;
  fd = socket(fam, (type == 1 ? SOCK_STREAM : SOCK_DGRAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
  if (fd < 0) return FAIL_ERRNO;
  if (fam == AF_INET6) { int off = 0; setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off); }
  return fd;
}

int nos_close(long long fd) { return close((int)fd) == 0 ? 0 : FAIL_ERRNO; }

long long nos_dup(long long fd) {
  int d = fcntl((int)fd, F_DUPFD_CLOEXEC, 0);
  return d < 0 ? FAIL_ERRNO : d;
}

int nos_bind(long long fd, const void *addr, int len) {
  struct sockaddr_storage ss;
  socklen_t sl;
  int rc = to_os(addr, len, &ss, &sl);
  if (rc) return rc;
  return bind((int)fd, (struct sockaddr *)&ss, sl) == 0 ? 0 : FAIL_ERRNO;
}

int nos_connect(long long fd, const void *addr, int len) {
  struct sockaddr_storage ss;
  socklen_t sl;
  int rc = to_os(addr, len, &ss, &sl);
  if (rc) return rc;
  return connect((int)fd, (struct sockaddr *)&ss, sl) == 0 ? 0 : FAIL_ERRNO;
}

int nos_connect_result(long long fd) {
  int e = 0;
  socklen_t l = sizeof e;
  if (getsockopt((int)fd, SOL_SOCKET, SO_ERROR, &e, &l) != 0) return FAIL_ERRNO;
  return e ? -nos_wsa_error(e) : 0;
}

int nos_listen(long long fd, int backlog) { return listen((int)fd, backlog) == 0 ? 0 : FAIL_ERRNO; }

long long nos_accept(long long fd, void *addr, int *len) {
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  int nfd = accept4((int)fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (nfd < 0) return FAIL_ERRNO;
  if (addr) {
    int rc = from_os(&ss, sl, addr, len);
    if (rc) { close(nfd); return rc; }
  }
  return nfd;
}

static int os_msg(int flags) {
  int f = 0;
  if (flags & W_MSG_OOB) f |= MSG_OOB;
  if (flags & W_MSG_PEEK) f |= MSG_PEEK;
  if (flags & W_MSG_DONTROUTE) f |= MSG_DONTROUTE;
  if (flags & W_MSG_WAITALL) f |= MSG_WAITALL;
  return f;
}

long nos_send(long long fd, const void *buf, size_t len, int flags, const void *to, int tolen) {
  struct sockaddr_storage ss;
  socklen_t sl = 0;
  ssize_t n;
  if (to) { int rc = to_os(to, tolen, &ss, &sl); if (rc) return rc; }
  n = sendto((int)fd, buf, len, os_msg(flags) | MSG_NOSIGNAL, to ? (struct sockaddr *)&ss : NULL, sl);
  return n < 0 ? FAIL_ERRNO : (long)n;
}

long nos_recv(long long fd, void *buf, size_t len, int flags, void *from, int *fromlen, int dgram) {
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  /* MSG_TRUNC tells a datagram's real length; on a stream it would discard data */
  ssize_t n = recvfrom((int)fd, buf, len, os_msg(flags) | (dgram ? MSG_TRUNC : 0), (struct sockaddr *)&ss, &sl);
  if (n < 0) return FAIL_ERRNO;
  if (from && sl > 0) { int rc = from_os(&ss, sl, from, fromlen); if (rc) return rc; }
  else if (fromlen) *fromlen = 0;
  return (long)n;   /* a datagram longer than len: its full length, len bytes delivered */
}

int nos_shutdown(long long fd, int how) {
  int h = how == 0 ? SHUT_RD : how == 1 ? SHUT_WR : SHUT_RDWR;
  return shutdown((int)fd, h) == 0 ? 0 : FAIL_ERRNO;
}

int nos_name(long long fd, int peer, void *addr, int *len) {
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  int rc = peer ? getpeername((int)fd, (struct sockaddr *)&ss, &sl) : getsockname((int)fd, (struct sockaddr *)&ss, &sl);
  if (rc != 0) return FAIL_ERRNO;
  return from_os(&ss, sl, addr, len);
}

/* Windows (level, name) -> OS; kind 0: int, 1: linger, 2: BOOL as int. */
static int map_opt(int level, int name, int *olevel, int *oname) {
  if (level == W_SOL_SOCKET) {
    *olevel = SOL_SOCKET;
    switch (name) {
    case 0x4: *oname = SO_REUSEADDR; return 2;
    case 0x8: *oname = SO_KEEPALIVE; return 2;
    case 0x20: *oname = SO_BROADCAST; return 2;
    case 0x80: *oname = SO_LINGER; return 1;
    case 0x100: *oname = SO_OOBINLINE; return 2;
    case 0x2: *oname = SO_ACCEPTCONN; return 2;
    case 0x1001: *oname = SO_SNDBUF; return 0;
    case 0x1002: *oname = SO_RCVBUF; return 0;
    case 0x1007: *oname = SO_ERROR; return 3;
    case 0x1008: *oname = SO_TYPE; return 0;
    default: return -1;
    }
  }
  if (level == W_IPPROTO_TCP && name == 1) { *olevel = IPPROTO_TCP; *oname = TCP_NODELAY; return 2; }
  /* IP_PKTINFO / IPV6_PKTINFO (19): WSARecvMsg's destination address */
  if (level == 0 && name == 19) { *olevel = IPPROTO_IP; *oname = IP_PKTINFO; return 2; }
  if (level == W_IPPROTO_IPV6 && name == 19) { *olevel = IPPROTO_IPV6; *oname = IPV6_RECVPKTINFO; return 2; }
  if (level == W_IPPROTO_IPV6 && name == 27) { *olevel = IPPROTO_IPV6; *oname = IPV6_V6ONLY; return 2; }
  return -1;
}

int nos_getsockopt(long long fd, int level, int name, void *val, int *len) {
  int ol, on, kind = map_opt(level, name, &ol, &on);
  if (kind < 0) return -10042;
  if (kind == 1) {
    struct linger lg;
    socklen_t l = sizeof lg;
    unsigned short w[2];
    if (*len < 4) return -10014;
    if (getsockopt((int)fd, ol, on, &lg, &l) != 0) return FAIL_ERRNO;
    w[0] = (unsigned short)lg.l_onoff;
    w[1] = (unsigned short)lg.l_linger;
    memcpy(val, w, 4);
    *len = 4;
    return 0;
  } else {
    int v = 0;
    socklen_t l = sizeof v;
    if (*len < 4) return -10014;
    if (getsockopt((int)fd, ol, on, &v, &l) != 0) return FAIL_ERRNO;
    if (kind == 3 && v) v = nos_wsa_error(v);
    memcpy(val, &v, 4);
    *len = 4;
    return 0;
  }
}

int nos_setsockopt(long long fd, int level, int name, const void *val, int len) {
  int ol, on, kind = map_opt(level, name, &ol, &on);
  if (kind < 0 || kind == 3) return -10042;
  if (kind == 1) {
    unsigned short w[2];
    struct linger lg;
    if (len < 4) return -10014;
    memcpy(w, val, 4);
    lg.l_onoff = w[0];
    lg.l_linger = w[1];
    return setsockopt((int)fd, ol, on, &lg, sizeof lg) == 0 ? 0 : FAIL_ERRNO;
  } else {
    int v = 0;
    if (len < 1) return -10014;
    if (len >= 4) memcpy(&v, val, 4); else v = *(const unsigned char *)val;
    if (kind == 2) v = v != 0;
    return setsockopt((int)fd, ol, on, &v, sizeof v) == 0 ? 0 : FAIL_ERRNO;
  }
}

int nos_readable_bytes(long long fd, unsigned long *n) {
  int v = 0;
  if (ioctl((int)fd, FIONREAD, &v) != 0) return FAIL_ERRNO;
  *n = (unsigned long)v;
  return 0;
}

int nos_atmark(long long fd) { return sockatmark((int)fd); }

int nos_pipe(long long fds[2]) {
  int p[2];
  if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0) return FAIL_ERRNO;
  fds[0] = p[0];
  fds[1] = p[1];
  return 0;
}
void nos_poke(long long fd) { char c = 1; ssize_t r = write((int)fd, &c, 1); (void)r; }
void nos_drain(long long fd) { char b[64]; while (read((int)fd, b, sizeof b) > 0) {} }

int nos_poll(nos_pollfd *fds, int n, int ms) {
  struct pollfd p[256];
  int rc;
  if (n > 256) n = 256;
  for (int i = 0; i < n; i++) {
    p[i].fd = (int)fds[i].fd;
    p[i].events = (short)(((fds[i].events & NOS_IN) ? POLLIN | POLLPRI : 0) | ((fds[i].events & NOS_OUT) ? POLLOUT : 0));
    p[i].revents = 0;
  }
  rc = poll(p, (nfds_t)n, ms);
  if (rc < 0) return errno == EINTR ? 0 : FAIL_ERRNO;
  for (int i = 0; i < n; i++)
    fds[i].revents = (short)(((p[i].revents & (POLLIN | POLLPRI)) ? NOS_IN : 0) | ((p[i].revents & POLLOUT) ? NOS_OUT : 0) |
                             ((p[i].revents & (POLLERR | POLLNVAL)) ? NOS_ERR : 0) | ((p[i].revents & POLLHUP) ? NOS_HUP : 0));
  return rc;
}
#endif
