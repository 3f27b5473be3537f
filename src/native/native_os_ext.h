/*
 * native_os_ext.h - the OS calls behind the native base's extension
 * functions (native_ext.c), with Windows values as native_os.h.
 * Every function returns >= 0, or -WSAExxx.
 */
#ifndef LWSP_NATIVE_OS_EXT_H
#define LWSP_NATIVE_OS_EXT_H
#include <stddef.h>

/* A datagram's destination (IP_PKTINFO / IPV6_PKTINFO, once enabled with
 * setsockopt): af 0 when the datagram carried none. */
typedef struct { int af; unsigned char addr[16]; unsigned ifindex; } nos_pktinfo;
/* recvfrom with the destination: the datagram's full length (len bytes delivered). */
long nos_recvmsg(long long fd, void *buf, size_t len, void *from, int *fromlen, nos_pktinfo *pi);
/* Reads a file (a file descriptor off Windows) at off: bytes read, 0 at its end. */
long nos_pread(long long file, void *buf, size_t len, unsigned long long off);
/* A file's current position. */
long long nos_file_pos(long long file);
#endif
