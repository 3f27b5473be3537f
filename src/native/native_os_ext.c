/*
 * native_os_ext.c - the OS calls behind the native base's extension
 * functions (see native_os_ext.h).  Off Windows a file handed to
 * TransmitFile or TransmitPackets is a file descriptor.
 */
#ifndef _WIN32
#define _GNU_SOURCE
#include "native_os_ext.h"
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

int nos_wsa_error(int err);
#define W_AF_INET 2
#define W_AF_INET6 23

long nos_recvmsg(long long fd, void *buf, size_t len, void *from, int *fromlen, nos_pktinfo *pi) {
  struct sockaddr_storage ss;
  struct iovec iov = {buf, len};
  union { char b[256]; struct cmsghdr align; } ctl;
  struct msghdr m;
  ssize_t n;
  memset(&m, 0, sizeof m);
  m.msg_name = &ss; m.msg_namelen = sizeof ss;
  m.msg_iov = &iov; m.msg_iovlen = 1;
  m.msg_control = ctl.b; m.msg_controllen = sizeof ctl.b;
  pi->af = 0;
  n = recvmsg((int)fd, &m, MSG_TRUNC);
  if (n < 0) return -nos_wsa_error(errno);
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
    if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
      struct in_pktinfo p;
      memcpy(&p, CMSG_DATA(c), sizeof p);
      pi->af = W_AF_INET;
      memcpy(pi->addr, &p.ipi_addr, 4);
      pi->ifindex = (unsigned)p.ipi_ifindex;
    } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
      struct in6_pktinfo p;
      memcpy(&p, CMSG_DATA(c), sizeof p);
      pi->af = W_AF_INET6;
      memcpy(pi->addr, &p.ipi6_addr, 16);
      pi->ifindex = p.ipi6_ifindex;
    }
  }
  if (from && fromlen) {
    unsigned short fam = ss.ss_family == AF_INET ? W_AF_INET : W_AF_INET6;
    int need = ss.ss_family == AF_INET ? 16 : 28;
    if (*fromlen < need) return -10014;
    memcpy(from, &ss, (size_t)need);
    memcpy(from, &fam, 2);
    if (need == 16) memset((char *)from + 8, 0, 8);
    *fromlen = need;
  }
  return (long)n;
}

long nos_pread(long long file, void *buf, size_t len, unsigned long long off) {
  ssize_t n = pread((int)file, buf, len, (off_t)off);
  return n < 0 ? -(errno == EBADF ? 6 /* WSA_INVALID_HANDLE */ : nos_wsa_error(errno)) : (long)n;
}

long long nos_file_pos(long long file) {
  off_t o = lseek((int)file, 0, SEEK_CUR);
  return o < 0 ? -(errno == EBADF ? 6 : nos_wsa_error(errno)) : (long long)o;
}
#else
#include "spi.h"
#include "native_os_ext.h"

/* Windows: files with the kernel's own calls (nos_recvmsg is Winsock's
 * WSARecvMsg, in native_os_win.c). */
long nos_pread(long long file, void *buf, size_t len, unsigned long long off) {
  OVERLAPPED o;
  DWORD n = 0;
  memset(&o, 0, sizeof o);
  o.Offset = (DWORD)off;
  o.OffsetHigh = (DWORD)(off >> 32);
  if (!ReadFile((HANDLE)(intptr_t)file, buf, (DWORD)len, &n, &o))
    return GetLastError() == ERROR_HANDLE_EOF ? 0 : -WSA_INVALID_HANDLE;
  return (long)n;
}
long long nos_file_pos(long long file) {
  LARGE_INTEGER z, pos;
  z.QuadPart = 0;
  if (!SetFilePointerEx((HANDLE)(intptr_t)file, z, &pos, FILE_CURRENT)) return -WSA_INVALID_HANDLE;
  return (long long)pos.QuadPart;
}
#endif
