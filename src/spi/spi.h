/*
 * spi.h - the Winsock 2 SPI as lwsp sees it, on every platform.
 *
 * On Windows this is mingw-w64's <winsock2.h>/<ws2spi.h>.  Elsewhere lwsp
 * declares the same names with the Windows x64 (LLP64) member order, sizes and
 * values, so that the SPI boundary carries Windows layouts everywhere.  Files
 * that include this header must not include the operating system's socket
 * headers: names such as AF_INET6 or struct sockaddr mean the Windows ones
 * here.  Where the C library clashes anyway (fd_set and struct timeval come in
 * through <stdlib.h> on glibc), the SPI uses wsp_fd_set and wsp_timeval, which
 * are fd_set and struct timeval on Windows.
 */
#ifndef LWSP_SPI_H
#define LWSP_SPI_H

#include <stddef.h>
#include <stdint.h>
#include "spi_values.h"

#ifdef _WIN32
#  ifndef WIN32_LEAN_AND_MEAN
#    define WIN32_LEAN_AND_MEAN
#  endif
#  include <winsock2.h>
#  include <ws2tcpip.h>
#  include <ws2spi.h>
#  include <windows.h>
typedef fd_set wsp_fd_set;
typedef struct timeval wsp_timeval;
#  define WSP_FD_SETSIZE FD_SETSIZE
#else
#  if defined(_SYS_SOCKET_H) || defined(_NETINET_IN_H)
#    error "spi.h declares the Windows socket types: do not mix it with <sys/socket.h>"
#  endif

#define WSPAPI
#define CALLBACK
#define WSAAPI

typedef uint8_t BYTE;
typedef uint16_t WORD;
typedef uint32_t DWORD;
typedef int32_t INT, LONG, BOOL;
typedef uint32_t UINT, ULONG;
typedef uint16_t USHORT, WCHAR;
typedef char CHAR;
typedef uintptr_t ULONG_PTR, DWORD_PTR, UINT_PTR, SOCKET, WPARAM;
typedef intptr_t LONG_PTR, INT_PTR, LPARAM;
typedef void *HANDLE, *HWND, *PVOID, *LPVOID;
typedef HANDLE WSAEVENT;
typedef unsigned int GROUP;
typedef INT *LPINT;
typedef DWORD *LPDWORD;
typedef DWORD_PTR *PDWORD_PTR;
typedef WCHAR *LPWSTR;

#define TRUE 1
#define FALSE 0
#define INVALID_SOCKET ((SOCKET)~(SOCKET)0)
#define WSA_INVALID_EVENT ((WSAEVENT)NULL)

enum {
#define SPI_ENUM_(name, value) name = value,
  SPI_ERRORS(SPI_ENUM_)
  SPI_CONSTANTS(SPI_ENUM_)
#undef SPI_ENUM_
  SPI_ENUM_END_
};
#define FIONBIO 0x8004667EUL
#define FIONREAD 0x4004667FUL
#define SIOCATMARK 0x40047307UL
#define IOC_VOID 0x20000000UL
#define IOC_OUT 0x40000000UL
#define IOC_IN 0x80000000UL
#define IOC_WS2 0x08000000UL
#define SIO_GET_EXTENSION_FUNCTION_POINTER 0xC8000006UL
#define SIO_ADDRESS_LIST_QUERY 0x48000016UL
#define SIO_GET_QOS 0xC8000007UL
#define SIO_GET_GROUP_QOS 0xC8000008UL
#define SIO_ROUTING_INTERFACE_CHANGE 0x88000015UL
#define SIO_ADDRESS_LIST_CHANGE 0x28000017UL
#define WSP_FD_SETSIZE 64
#define PF_INET AF_INET
#define PF_INET6 AF_INET6
#define PF_UNSPEC AF_UNSPEC

typedef struct _GUID {
  DWORD Data1;
  WORD Data2;
  WORD Data3;
  BYTE Data4[8];
} GUID, *LPGUID;

struct sockaddr {
  USHORT sa_family;
  CHAR sa_data[14];
};
typedef struct sockaddr SOCKADDR, *LPSOCKADDR;

struct in_addr { union { struct { BYTE s_b1, s_b2, s_b3, s_b4; } S_un_b; ULONG S_addr; } S_un; };
struct sockaddr_in {
  short sin_family;
  USHORT sin_port;
  struct in_addr sin_addr;
  CHAR sin_zero[8];
};
struct in6_addr { union { BYTE Byte[16]; WORD Word[8]; } u; };
struct sockaddr_in6 {
  short sin6_family;
  USHORT sin6_port;
  ULONG sin6_flowinfo;
  struct in6_addr sin6_addr;
  ULONG sin6_scope_id;
};
struct sockaddr_storage {
  short ss_family;
  CHAR ss_pad1[6];
  int64_t ss_align;
  CHAR ss_pad2[112];
};
typedef struct sockaddr_storage SOCKADDR_STORAGE;

typedef struct _WSABUF {
  ULONG len;
  CHAR *buf;
} WSABUF, *LPWSABUF;

typedef struct _OVERLAPPED {
  ULONG_PTR Internal;
  ULONG_PTR InternalHigh;
  union {
    struct { DWORD Offset; DWORD OffsetHigh; };
    PVOID Pointer;
  };
  HANDLE hEvent;
} OVERLAPPED, WSAOVERLAPPED, *LPWSAOVERLAPPED;

typedef struct {
  UINT fd_count;
  SOCKET fd_array[WSP_FD_SETSIZE];
} wsp_fd_set;

typedef struct {
  LONG tv_sec;
  LONG tv_usec;
} wsp_timeval;

typedef struct linger {
  USHORT l_onoff;
  USHORT l_linger;
} LINGER;

typedef ULONG SERVICETYPE;
typedef struct _flowspec {
  ULONG TokenRate, TokenBucketSize, PeakBandwidth, Latency, DelayVariation;
  SERVICETYPE ServiceType;
  ULONG MaxSduSize, MinimumPolicedSize;
} FLOWSPEC;
typedef struct _QualityOfService {
  FLOWSPEC SendingFlowspec;
  FLOWSPEC ReceivingFlowspec;
  WSABUF ProviderSpecific;
} QOS, *LPQOS;

typedef struct _WSANETWORKEVENTS {
  LONG lNetworkEvents;
  int iErrorCode[FD_MAX_EVENTS];
} WSANETWORKEVENTS, *LPWSANETWORKEVENTS;

typedef struct _WSAPROTOCOLCHAIN {
  int ChainLen;
  DWORD ChainEntries[MAX_PROTOCOL_CHAIN];
} WSAPROTOCOLCHAIN;

typedef struct _WSAPROTOCOL_INFOW {
  DWORD dwServiceFlags1, dwServiceFlags2, dwServiceFlags3, dwServiceFlags4;
  DWORD dwProviderFlags;
  GUID ProviderId;
  DWORD dwCatalogEntryId;
  WSAPROTOCOLCHAIN ProtocolChain;
  int iVersion, iAddressFamily, iMaxSockAddr, iMinSockAddr, iSocketType, iProtocol;
  int iProtocolMaxOffset, iNetworkByteOrder, iSecurityScheme;
  DWORD dwMessageSize;
  DWORD dwProviderReserved;
  WCHAR szProtocol[WSAPROTOCOL_LEN + 1];
} WSAPROTOCOL_INFOW, *LPWSAPROTOCOL_INFOW;

typedef struct WSPData {
  WORD wVersion;
  WORD wHighVersion;
  WCHAR szDescription[WSPDESCRIPTION_LEN + 1];
} WSPDATA, *LPWSPDATA;

typedef struct _WSATHREADID {
  HANDLE ThreadHandle;
  DWORD_PTR Reserved;
} WSATHREADID, *LPWSATHREADID;

typedef void (CALLBACK *LPWSAOVERLAPPED_COMPLETION_ROUTINE)(DWORD dwError, DWORD cbTransferred,
                                                            LPWSAOVERLAPPED lpOverlapped, DWORD dwFlags);
typedef int (CALLBACK *LPCONDITIONPROC)(LPWSABUF lpCallerId, LPWSABUF lpCallerData, LPQOS lpSQOS,
                                        LPQOS lpGQOS, LPWSABUF lpCalleeId, LPWSABUF lpCalleeData,
                                        GROUP *g, DWORD_PTR dwCallbackData);
typedef BOOL (CALLBACK *LPBLOCKINGCALLBACK)(DWORD_PTR dwContext);
typedef void (CALLBACK *LPWSAUSERAPC)(DWORD_PTR dwContext);

typedef SOCKET (WSPAPI *LPWSPACCEPT)(SOCKET s, struct sockaddr *addr, LPINT addrlen, LPCONDITIONPROC lpfnCondition, DWORD_PTR dwCallbackData, LPINT lpErrno);
typedef INT (WSPAPI *LPWSPADDRESSTOSTRING)(LPSOCKADDR lpsaAddress, DWORD dwAddressLength, LPWSAPROTOCOL_INFOW lpProtocolInfo, LPWSTR lpszAddressString, LPDWORD lpdwAddressStringLength, LPINT lpErrno);
typedef int (WSPAPI *LPWSPASYNCSELECT)(SOCKET s, HWND hWnd, unsigned int wMsg, LONG lEvent, LPINT lpErrno);
typedef int (WSPAPI *LPWSPBIND)(SOCKET s, const struct sockaddr *name, int namelen, LPINT lpErrno);
typedef int (WSPAPI *LPWSPCANCELBLOCKINGCALL)(LPINT lpErrno);
typedef int (WSPAPI *LPWSPCLEANUP)(LPINT lpErrno);
typedef int (WSPAPI *LPWSPCLOSESOCKET)(SOCKET s, LPINT lpErrno);
typedef int (WSPAPI *LPWSPCONNECT)(SOCKET s, const struct sockaddr *name, int namelen, LPWSABUF lpCallerData, LPWSABUF lpCalleeData, LPQOS lpSQOS, LPQOS lpGQOS, LPINT lpErrno);
typedef int (WSPAPI *LPWSPDUPLICATESOCKET)(SOCKET s, DWORD dwProcessId, LPWSAPROTOCOL_INFOW lpProtocolInfo, LPINT lpErrno);
typedef int (WSPAPI *LPWSPENUMNETWORKEVENTS)(SOCKET s, WSAEVENT hEventObject, LPWSANETWORKEVENTS lpNetworkEvents, LPINT lpErrno);
typedef int (WSPAPI *LPWSPEVENTSELECT)(SOCKET s, WSAEVENT hEventObject, LONG lNetworkEvents, LPINT lpErrno);
typedef BOOL (WSPAPI *LPWSPGETOVERLAPPEDRESULT)(SOCKET s, LPWSAOVERLAPPED lpOverlapped, LPDWORD lpcbTransfer, BOOL fWait, LPDWORD lpdwFlags, LPINT lpErrno);
typedef int (WSPAPI *LPWSPGETPEERNAME)(SOCKET s, struct sockaddr *name, LPINT namelen, LPINT lpErrno);
typedef int (WSPAPI *LPWSPGETSOCKNAME)(SOCKET s, struct sockaddr *name, LPINT namelen, LPINT lpErrno);
typedef int (WSPAPI *LPWSPGETSOCKOPT)(SOCKET s, int level, int optname, char *optval, LPINT optlen, LPINT lpErrno);
typedef BOOL (WSPAPI *LPWSPGETQOSBYNAME)(SOCKET s, LPWSABUF lpQOSName, LPQOS lpQOS, LPINT lpErrno);
typedef int (WSPAPI *LPWSPIOCTL)(SOCKET s, DWORD dwIoControlCode, LPVOID lpvInBuffer, DWORD cbInBuffer, LPVOID lpvOutBuffer, DWORD cbOutBuffer, LPDWORD lpcbBytesReturned, LPWSAOVERLAPPED lpOverlapped, LPWSAOVERLAPPED_COMPLETION_ROUTINE lpCompletionRoutine, LPWSATHREADID lpThreadId, LPINT lpErrno);
typedef SOCKET (WSPAPI *LPWSPJOINLEAF)(SOCKET s, const struct sockaddr *name, int namelen, LPWSABUF lpCallerData, LPWSABUF lpCalleeData, LPQOS lpSQOS, LPQOS lpGQOS, DWORD dwFlags, LPINT lpErrno);
typedef int (WSPAPI *LPWSPLISTEN)(SOCKET s, int backlog, LPINT lpErrno);
typedef int (WSPAPI *LPWSPRECV)(SOCKET s, LPWSABUF lpBuffers, DWORD dwBufferCount, LPDWORD lpNumberOfBytesRecvd, LPDWORD lpFlags, LPWSAOVERLAPPED lpOverlapped, LPWSAOVERLAPPED_COMPLETION_ROUTINE lpCompletionRoutine, LPWSATHREADID lpThreadId, LPINT lpErrno);
typedef int (WSPAPI *LPWSPRECVDISCONNECT)(SOCKET s, LPWSABUF lpInboundDisconnectData, LPINT lpErrno);
typedef int (WSPAPI *LPWSPRECVFROM)(SOCKET s, LPWSABUF lpBuffers, DWORD dwBufferCount, LPDWORD lpNumberOfBytesRecvd, LPDWORD lpFlags, struct sockaddr *lpFrom, LPINT lpFromlen, LPWSAOVERLAPPED lpOverlapped, LPWSAOVERLAPPED_COMPLETION_ROUTINE lpCompletionRoutine, LPWSATHREADID lpThreadId, LPINT lpErrno);
typedef int (WSPAPI *LPWSPSELECT)(int nfds, wsp_fd_set *readfds, wsp_fd_set *writefds, wsp_fd_set *exceptfds, wsp_timeval *const timeout, LPINT lpErrno);
typedef int (WSPAPI *LPWSPSEND)(SOCKET s, LPWSABUF lpBuffers, DWORD dwBufferCount, LPDWORD lpNumberOfBytesSent, DWORD dwFlags, LPWSAOVERLAPPED lpOverlapped, LPWSAOVERLAPPED_COMPLETION_ROUTINE lpCompletionRoutine, LPWSATHREADID lpThreadId, LPINT lpErrno);
typedef int (WSPAPI *LPWSPSENDDISCONNECT)(SOCKET s, LPWSABUF lpOutboundDisconnectData, LPINT lpErrno);
typedef int (WSPAPI *LPWSPSENDTO)(SOCKET s, LPWSABUF lpBuffers, DWORD dwBufferCount, LPDWORD lpNumberOfBytesSent, DWORD dwFlags, const struct sockaddr *lpTo, int iTolen, LPWSAOVERLAPPED lpOverlapped, LPWSAOVERLAPPED_COMPLETION_ROUTINE lpCompletionRoutine, LPWSATHREADID lpThreadId, LPINT lpErrno);
typedef int (WSPAPI *LPWSPSETSOCKOPT)(SOCKET s, int level, int optname, const char *optval, int optlen, LPINT lpErrno);
typedef int (WSPAPI *LPWSPSHUTDOWN)(SOCKET s, int how, LPINT lpErrno);
typedef SOCKET (WSPAPI *LPWSPSOCKET)(int af, int type, int protocol, LPWSAPROTOCOL_INFOW lpProtocolInfo, GROUP g, DWORD dwFlags, LPINT lpErrno);
typedef INT (WSPAPI *LPWSPSTRINGTOADDRESS)(LPWSTR AddressString, INT AddressFamily, LPWSAPROTOCOL_INFOW lpProtocolInfo, LPSOCKADDR lpAddress, LPINT lpAddressLength, LPINT lpErrno);

typedef struct _WSPPROC_TABLE {
  LPWSPACCEPT lpWSPAccept;
  LPWSPADDRESSTOSTRING lpWSPAddressToString;
  LPWSPASYNCSELECT lpWSPAsyncSelect;
  LPWSPBIND lpWSPBind;
  LPWSPCANCELBLOCKINGCALL lpWSPCancelBlockingCall;
  LPWSPCLEANUP lpWSPCleanup;
  LPWSPCLOSESOCKET lpWSPCloseSocket;
  LPWSPCONNECT lpWSPConnect;
  LPWSPDUPLICATESOCKET lpWSPDuplicateSocket;
  LPWSPENUMNETWORKEVENTS lpWSPEnumNetworkEvents;
  LPWSPEVENTSELECT lpWSPEventSelect;
  LPWSPGETOVERLAPPEDRESULT lpWSPGetOverlappedResult;
  LPWSPGETPEERNAME lpWSPGetPeerName;
  LPWSPGETSOCKNAME lpWSPGetSockName;
  LPWSPGETSOCKOPT lpWSPGetSockOpt;
  LPWSPGETQOSBYNAME lpWSPGetQOSByName;
  LPWSPIOCTL lpWSPIoctl;
  LPWSPJOINLEAF lpWSPJoinLeaf;
  LPWSPLISTEN lpWSPListen;
  LPWSPRECV lpWSPRecv;
  LPWSPRECVDISCONNECT lpWSPRecvDisconnect;
  LPWSPRECVFROM lpWSPRecvFrom;
  LPWSPSELECT lpWSPSelect;
  LPWSPSEND lpWSPSend;
  LPWSPSENDDISCONNECT lpWSPSendDisconnect;
  LPWSPSENDTO lpWSPSendTo;
  LPWSPSETSOCKOPT lpWSPSetSockOpt;
  LPWSPSHUTDOWN lpWSPShutdown;
  LPWSPSOCKET lpWSPSocket;
  LPWSPSTRINGTOADDRESS lpWSPStringToAddress;
} WSPPROC_TABLE, *LPWSPPROC_TABLE;

typedef BOOL (WSPAPI *LPWPUCLOSEEVENT)(WSAEVENT hEvent, LPINT lpErrno);
typedef int (WSPAPI *LPWPUCLOSESOCKETHANDLE)(SOCKET s, LPINT lpErrno);
typedef WSAEVENT (WSPAPI *LPWPUCREATEEVENT)(LPINT lpErrno);
typedef SOCKET (WSPAPI *LPWPUCREATESOCKETHANDLE)(DWORD dwCatalogEntryId, DWORD_PTR dwContext, LPINT lpErrno);
typedef int (WSPAPI *LPWPUFDISSET)(SOCKET s, wsp_fd_set *fdset);
typedef int (WSPAPI *LPWPUGETPROVIDERPATH)(LPGUID lpProviderId, WCHAR *lpszProviderDllPath, LPINT lpProviderDllPathLen, LPINT lpErrno);
typedef SOCKET (WSPAPI *LPWPUMODIFYIFSHANDLE)(DWORD dwCatalogEntryId, SOCKET ProposedHandle, LPINT lpErrno);
typedef BOOL (WSPAPI *LPWPUPOSTMESSAGE)(HWND hWnd, UINT Msg, WPARAM wParam, LPARAM lParam);
typedef int (WSPAPI *LPWPUQUERYBLOCKINGCALLBACK)(DWORD dwCatalogEntryId, LPBLOCKINGCALLBACK *lplpfnCallback, PDWORD_PTR lpdwContext, LPINT lpErrno);
typedef int (WSPAPI *LPWPUQUERYSOCKETHANDLECONTEXT)(SOCKET s, PDWORD_PTR lpContext, LPINT lpErrno);
typedef int (WSPAPI *LPWPUQUEUEAPC)(LPWSATHREADID lpThreadId, LPWSAUSERAPC lpfnUserApc, DWORD_PTR dwContext, LPINT lpErrno);
typedef BOOL (WSPAPI *LPWPURESETEVENT)(WSAEVENT hEvent, LPINT lpErrno);
typedef BOOL (WSPAPI *LPWPUSETEVENT)(WSAEVENT hEvent, LPINT lpErrno);
typedef int (WSPAPI *LPWPUOPENCURRENTTHREAD)(LPWSATHREADID lpThreadId, LPINT lpErrno);
typedef int (WSPAPI *LPWPUCLOSETHREAD)(LPWSATHREADID lpThreadId, LPINT lpErrno);
typedef int (WSPAPI *LPWPUCOMPLETEOVERLAPPEDREQUEST)(SOCKET s, LPWSAOVERLAPPED lpOverlapped, DWORD dwError, DWORD cbTransferred, LPINT lpErrno);

typedef struct _WSPUPCALLTABLE {
  LPWPUCLOSEEVENT lpWPUCloseEvent;
  LPWPUCLOSESOCKETHANDLE lpWPUCloseSocketHandle;
  LPWPUCREATEEVENT lpWPUCreateEvent;
  LPWPUCREATESOCKETHANDLE lpWPUCreateSocketHandle;
  LPWPUFDISSET lpWPUFDIsSet;
  LPWPUGETPROVIDERPATH lpWPUGetProviderPath;
  LPWPUMODIFYIFSHANDLE lpWPUModifyIFSHandle;
  LPWPUPOSTMESSAGE lpWPUPostMessage;
  LPWPUQUERYBLOCKINGCALLBACK lpWPUQueryBlockingCallback;
  LPWPUQUERYSOCKETHANDLECONTEXT lpWPUQuerySocketHandleContext;
  LPWPUQUEUEAPC lpWPUQueueApc;
  LPWPURESETEVENT lpWPUResetEvent;
  LPWPUSETEVENT lpWPUSetEvent;
  LPWPUOPENCURRENTTHREAD lpWPUOpenCurrentThread;
  LPWPUCLOSETHREAD lpWPUCloseThread;
} WSPUPCALLTABLE, *LPWSPUPCALLTABLE;

typedef int (WSPAPI *LPWSPSTARTUP)(WORD wVersionRequested, LPWSPDATA lpWSPData, LPWSAPROTOCOL_INFOW lpProtocolInfo, WSPUPCALLTABLE UpcallTable, LPWSPPROC_TABLE lpProcTable);

#endif /* !_WIN32 */

#define WSP_FD_ISSET(s, set) lwsp_fd_isset((s), (set))
static inline int lwsp_fd_isset(SOCKET s, const wsp_fd_set *set) {
  for (unsigned i = 0; i < set->fd_count; i++)
    if (set->fd_array[i] == s) return 1;
  return 0;
}

#define MAKEWORD_(lo, hi) ((WORD)(((BYTE)(lo)) | ((WORD)((BYTE)(hi))) << 8))
#define LWSP_SELECTREPLY(event, error) ((LPARAM)(((DWORD)(error) << 16) | ((WORD)(event))))

/* The layouts lwsp depends on, pinned.  Checked on Linux x64 and mingw x64. */
#if UINTPTR_MAX == 0xffffffffffffffffu
_Static_assert(sizeof(WSAPROTOCOL_INFOW) == 628, "WSAPROTOCOL_INFOW");
_Static_assert(offsetof(WSAPROTOCOL_INFOW, ProviderId) == 20, "ProviderId");
_Static_assert(offsetof(WSAPROTOCOL_INFOW, dwCatalogEntryId) == 36, "dwCatalogEntryId");
_Static_assert(offsetof(WSAPROTOCOL_INFOW, ProtocolChain) == 40, "ProtocolChain");
_Static_assert(offsetof(WSAPROTOCOL_INFOW, iAddressFamily) == 76, "iAddressFamily");
_Static_assert(offsetof(WSAPROTOCOL_INFOW, szProtocol) == 116, "szProtocol");
_Static_assert(sizeof(WSAOVERLAPPED) == 32, "WSAOVERLAPPED");
_Static_assert(offsetof(WSAOVERLAPPED, InternalHigh) == 8, "InternalHigh");
_Static_assert(offsetof(WSAOVERLAPPED, Offset) == 16, "Offset");
_Static_assert(offsetof(WSAOVERLAPPED, OffsetHigh) == 20, "OffsetHigh");
_Static_assert(offsetof(WSAOVERLAPPED, hEvent) == 24, "hEvent");
_Static_assert(sizeof(WSPDATA) == 516, "WSPDATA");
_Static_assert(sizeof(WSPPROC_TABLE) == 240, "WSPPROC_TABLE");
_Static_assert(offsetof(WSPPROC_TABLE, lpWSPStringToAddress) == 232, "proc table order");
_Static_assert(sizeof(WSPUPCALLTABLE) == 120, "WSPUPCALLTABLE");
_Static_assert(offsetof(WSPUPCALLTABLE, lpWPUCloseThread) == 112, "upcall table order");
_Static_assert(sizeof(WSABUF) == 16, "WSABUF");
_Static_assert(offsetof(WSABUF, buf) == 8, "WSABUF.buf");
_Static_assert(sizeof(WSATHREADID) == 16, "WSATHREADID");
_Static_assert(sizeof(wsp_fd_set) == 520, "fd_set");
_Static_assert(sizeof(wsp_timeval) == 8, "timeval");
_Static_assert(sizeof(QOS) == 80, "QOS");
_Static_assert(sizeof(WSANETWORKEVENTS) == 44, "WSANETWORKEVENTS");
_Static_assert(sizeof(struct sockaddr_in) == 16, "sockaddr_in");
_Static_assert(sizeof(struct sockaddr_in6) == 28, "sockaddr_in6");
_Static_assert(sizeof(SOCKADDR_STORAGE) == 128, "sockaddr_storage");
_Static_assert(sizeof(GUID) == 16, "GUID");
_Static_assert(sizeof(SOCKET) == 8 && sizeof(DWORD) == 4 && sizeof(LONG) == 4, "LLP64");
#else
_Static_assert(sizeof(WSAPROTOCOL_INFOW) == 628, "WSAPROTOCOL_INFOW");
_Static_assert(sizeof(WSAOVERLAPPED) == 20, "WSAOVERLAPPED (32-bit)");
_Static_assert(sizeof(WSPPROC_TABLE) == 120, "WSPPROC_TABLE (32-bit)");
_Static_assert(sizeof(WSPUPCALLTABLE) == 60, "WSPUPCALLTABLE (32-bit)");
#endif

#endif
