/*
 * spi_ext.h - Winsock's extension functions (mswsock.h) and the base-handle
 * ioctls, on every platform: the GUIDs, the function types, the structures
 * they take and the flags, with Windows layouts off Windows (as spi.h).
 *
 * The extension functions are reached with WSAIoctl(SIO_GET_EXTENSION_FUNCTION_POINTER)
 * on a socket; they take no lpErrno and report failure through
 * WSASetLastError, which lwsp_ext_set_error/lwsp_ext_last_error (platform
 * side, src/common.h's lwsp_host_sym) reach off Windows.
 */
#ifndef LWSP_SPI_EXT_H
#define LWSP_SPI_EXT_H
#include "spi.h"
#include <string.h>
#include <stddef.h>
#include <stdint.h>

#ifdef _WIN32
#  include <mswsock.h>
#  include <mstcpip.h>
#  ifndef SIO_BSP_HANDLE
#    define SIO_BSP_HANDLE _WSAIOR(IOC_WS2, 27)
#  endif
#  ifndef SIO_BSP_HANDLE_SELECT
#    define SIO_BSP_HANDLE_SELECT _WSAIOR(IOC_WS2, 28)
#  endif
#  ifndef SIO_BSP_HANDLE_POLL
#    define SIO_BSP_HANDLE_POLL _WSAIOR(IOC_WS2, 29)
#  endif
#  ifndef SIO_BASE_HANDLE
#    define SIO_BASE_HANDLE _WSAIOR(IOC_WS2, 34)
#  endif
#  ifndef SIO_EXT_SELECT
#    define SIO_EXT_SELECT _WSAIORW(IOC_WS2, 30)
#  endif
#  ifndef SIO_EXT_POLL
#    define SIO_EXT_POLL _WSAIORW(IOC_WS2, 31)
#  endif
#  ifndef SIO_EXT_SENDMSG
#    define SIO_EXT_SENDMSG _WSAIORW(IOC_WS2, 32)
#  endif
#  ifndef IP_PKTINFO
#    define IP_PKTINFO 19
#  endif
#  ifndef IPV6_PKTINFO
#    define IPV6_PKTINFO 19
#  endif
#else
#define SIO_BSP_HANDLE 0x4800001BUL
#define SIO_BSP_HANDLE_SELECT 0x4800001CUL
#define SIO_BSP_HANDLE_POLL 0x4800001DUL
#define SIO_EXT_SELECT 0xC800001EUL
#define SIO_EXT_POLL 0xC800001FUL
#define SIO_EXT_SENDMSG 0xC8000020UL
#define SIO_BASE_HANDLE 0x48000022UL

#define SO_UPDATE_ACCEPT_CONTEXT 0x700B
#define SO_UPDATE_CONNECT_CONTEXT 0x7010
#define IP_PKTINFO 19
#define IPV6_PKTINFO 19
#define MSG_TRUNC 0x0100
#define MSG_CTRUNC 0x0200
#define MSG_BCAST 0x0400
#define MSG_MCAST 0x0800

#define TF_DISCONNECT 0x01
#define TF_REUSE_SOCKET 0x02
#define TF_WRITE_BEHIND 0x04
#define TF_USE_DEFAULT_WORKER 0x00
#define TF_USE_SYSTEM_THREAD 0x10
#define TF_USE_KERNEL_APC 0x20
#define TP_ELEMENT_MEMORY 1
#define TP_ELEMENT_FILE 2
#define TP_ELEMENT_EOP 4
#define TP_DISCONNECT TF_DISCONNECT
#define TP_REUSE_SOCKET TF_REUSE_SOCKET

typedef int64_t LONGLONG;
typedef union _LARGE_INTEGER { struct { DWORD LowPart; LONG HighPart; } u; LONGLONG QuadPart; } LARGE_INTEGER;
typedef void VOID;
typedef OVERLAPPED *LPOVERLAPPED;

typedef struct _TRANSMIT_FILE_BUFFERS {
  LPVOID Head;
  DWORD HeadLength;
  LPVOID Tail;
  DWORD TailLength;
} TRANSMIT_FILE_BUFFERS, *LPTRANSMIT_FILE_BUFFERS;

typedef struct _TRANSMIT_PACKETS_ELEMENT {
  ULONG dwElFlags;
  ULONG cLength;
  union {
    struct { LARGE_INTEGER nFileOffset; HANDLE hFile; };
    PVOID pBuffer;
  };
} TRANSMIT_PACKETS_ELEMENT, *LPTRANSMIT_PACKETS_ELEMENT;

typedef struct _WSAMSG {
  LPSOCKADDR name;
  INT namelen;
  LPWSABUF lpBuffers;
  ULONG dwBufferCount;
  WSABUF Control;
  ULONG dwFlags;
} WSAMSG, *LPWSAMSG;

typedef struct _WSACMSGHDR {
  size_t cmsg_len;
  INT cmsg_level;
  INT cmsg_type;
} WSACMSGHDR, *LPWSACMSGHDR;
#define WSA_CMSGHDR_ALIGN(n) (((n) + sizeof(size_t) - 1) & ~(sizeof(size_t) - 1))
#define WSA_CMSGDATA_ALIGN(n) (((n) + sizeof(size_t) - 1) & ~(sizeof(size_t) - 1))
#define WSA_CMSG_DATA(c) ((unsigned char *)(c) + WSA_CMSGDATA_ALIGN(sizeof(WSACMSGHDR)))
#define WSA_CMSG_SPACE(n) (WSA_CMSGDATA_ALIGN(sizeof(WSACMSGHDR) + WSA_CMSGHDR_ALIGN(n)))
#define WSA_CMSG_LEN(n) (WSA_CMSGDATA_ALIGN(sizeof(WSACMSGHDR)) + (n))

typedef struct in_pktinfo { struct in_addr ipi_addr; ULONG ipi_ifindex; } IN_PKTINFO;
typedef struct in6_pktinfo { struct in6_addr ipi6_addr; ULONG ipi6_ifindex; } IN6_PKTINFO;

typedef BOOL (*LPFN_ACCEPTEX)(SOCKET, SOCKET, PVOID, DWORD, DWORD, DWORD, LPDWORD, LPOVERLAPPED);
typedef VOID (*LPFN_GETACCEPTEXSOCKADDRS)(PVOID, DWORD, DWORD, DWORD, struct sockaddr **, LPINT, struct sockaddr **,
                                          LPINT);
typedef BOOL (*LPFN_CONNECTEX)(SOCKET, const struct sockaddr *, int, PVOID, DWORD, LPDWORD, LPOVERLAPPED);
typedef BOOL (*LPFN_DISCONNECTEX)(SOCKET, LPOVERLAPPED, DWORD, DWORD);
typedef BOOL (*LPFN_TRANSMITFILE)(SOCKET, HANDLE, DWORD, DWORD, LPOVERLAPPED, LPTRANSMIT_FILE_BUFFERS, DWORD);
typedef BOOL (*LPFN_TRANSMITPACKETS)(SOCKET, LPTRANSMIT_PACKETS_ELEMENT, DWORD, DWORD, LPOVERLAPPED, DWORD);
typedef INT (*LPFN_WSARECVMSG)(SOCKET, LPWSAMSG, LPDWORD, LPWSAOVERLAPPED, LPWSAOVERLAPPED_COMPLETION_ROUTINE);
typedef INT (*LPFN_WSASENDMSG)(SOCKET, LPWSAMSG, DWORD, LPDWORD, LPWSAOVERLAPPED, LPWSAOVERLAPPED_COMPLETION_ROUTINE);
#endif

/* What ws2_32 hands a provider that answered SIO_BSP_HANDLE_POLL and
 * SIO_BSP_HANDLE with its own handle (mswsock.h's WSAPOLLDATA, in and out
 * of SIO_EXT_POLL, and WSASENDMSG, the input of SIO_EXT_SENDMSG), under
 * lwsp's names on every platform, with Windows' layout and POLL* values. */
typedef struct { SOCKET fd; int16_t events; int16_t revents; } lwsp_pollfd;
typedef struct { int result; ULONG fds; INT timeout; lwsp_pollfd fdArray[1]; } lwsp_polldata;
#define LWSP_POLLDATA_SIZE(n) (offsetof(lwsp_polldata, fdArray) + (size_t)(n) * sizeof(lwsp_pollfd))
typedef struct {
  LPWSAMSG lpMsg;
  DWORD dwFlags;
  LPDWORD lpNumberOfBytesSent;
  LPWSAOVERLAPPED lpOverlapped;
  LPWSAOVERLAPPED_COMPLETION_ROUTINE lpCompletionRoutine;
} lwsp_sendmsg_args;
enum {
  LWSP_POLLERR = 0x0001, LWSP_POLLHUP = 0x0002, LWSP_POLLNVAL = 0x0004, LWSP_POLLWRNORM = 0x0010,
  LWSP_POLLWRBAND = 0x0020, LWSP_POLLRDNORM = 0x0100, LWSP_POLLRDBAND = 0x0200, LWSP_POLLPRI = 0x0400
};

/* The Lua constant table's share (lwsp.const). */
#define LWSP_EXT_CONSTANTS(X) \
  X(SIO_BSP_HANDLE, SIO_BSP_HANDLE) X(SIO_BSP_HANDLE_SELECT, SIO_BSP_HANDLE_SELECT) \
  X(SIO_BSP_HANDLE_POLL, SIO_BSP_HANDLE_POLL) X(SIO_BASE_HANDLE, SIO_BASE_HANDLE) \
  X(SIO_EXT_SELECT, SIO_EXT_SELECT) X(SIO_EXT_POLL, SIO_EXT_POLL) X(SIO_EXT_SENDMSG, SIO_EXT_SENDMSG) \
  X(SO_UPDATE_ACCEPT_CONTEXT, SO_UPDATE_ACCEPT_CONTEXT) X(SO_UPDATE_CONNECT_CONTEXT, SO_UPDATE_CONNECT_CONTEXT) \
  X(IP_PKTINFO, IP_PKTINFO) X(IPV6_PKTINFO, IPV6_PKTINFO) X(MSG_TRUNC, MSG_TRUNC) X(MSG_CTRUNC, MSG_CTRUNC) \
  X(TF_DISCONNECT, TF_DISCONNECT) X(TF_REUSE_SOCKET, TF_REUSE_SOCKET) X(TF_WRITE_BEHIND, TF_WRITE_BEHIND) \
  X(TP_ELEMENT_MEMORY, TP_ELEMENT_MEMORY) X(TP_ELEMENT_FILE, TP_ELEMENT_FILE) X(TP_ELEMENT_EOP, TP_ELEMENT_EOP)

/* The extension functions lwsp knows, in one list: X(index, name, GUID). */
#define LWSP_EXT_FUNCS(X) \
  X(0, AcceptEx, 0xb5367df1, 0xcbac, 0x11cf, 0x95, 0xca, 0x00, 0x80, 0x5f, 0x48, 0xa1, 0x92) \
  X(1, GetAcceptExSockaddrs, 0xb5367df2, 0xcbac, 0x11cf, 0x95, 0xca, 0x00, 0x80, 0x5f, 0x48, 0xa1, 0x92) \
  X(2, ConnectEx, 0x25a207b9, 0xddf3, 0x4660, 0x8e, 0xe9, 0x76, 0xe5, 0x8c, 0x74, 0x06, 0x3e) \
  X(3, DisconnectEx, 0x7fda2e11, 0x8630, 0x436f, 0xa0, 0x31, 0xf5, 0x36, 0xa6, 0xee, 0xc1, 0x57) \
  X(4, TransmitFile, 0xb5367df0, 0xcbac, 0x11cf, 0x95, 0xca, 0x00, 0x80, 0x5f, 0x48, 0xa1, 0x92) \
  X(5, TransmitPackets, 0xd9689da0, 0x1f90, 0x11d3, 0x99, 0x71, 0x00, 0xc0, 0x4f, 0x68, 0xc8, 0x76) \
  X(6, WSARecvMsg, 0xf689d7c8, 0x6f1f, 0x436b, 0x8a, 0x53, 0xe5, 0x4f, 0xe3, 0x51, 0xc3, 0x22) \
  X(7, WSASendMsg, 0xa441e712, 0x754f, 0x43ca, 0x84, 0xa7, 0x0d, 0xee, 0x44, 0xcf, 0x60, 0x6d)
enum { LWSP_EXT_COUNT = 8 };
#define LWSP_EXT_GUID_(i, name, a, b, c, d0, d1, d2, d3, d4, d5, d6, d7) {a, b, c, {d0, d1, d2, d3, d4, d5, d6, d7}},
#define LWSP_EXT_NAME_(i, name, ...) #name,
static const GUID lwsp_ext_guids[LWSP_EXT_COUNT] = {LWSP_EXT_FUNCS(LWSP_EXT_GUID_)};
static const char *const lwsp_ext_names[LWSP_EXT_COUNT] = {LWSP_EXT_FUNCS(LWSP_EXT_NAME_)};
/* The index of the extension function named by guid (16 bytes, any
 * alignment), or -1. */
static inline int lwsp_ext_index(const void *guid) {
  for (int i = 0; i < LWSP_EXT_COUNT; i++)
    if (memcmp(guid, &lwsp_ext_guids[i], sizeof(GUID)) == 0) return i;
  return -1;
}
#endif
