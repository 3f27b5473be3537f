/*
 * abi32_check.c - the 32-bit Windows ABI of lwsp's provider DLL, checked by a
 * program built for i686 (i686-w64-mingw32-gcc).
 *
 * At build time (make mingw-check): every layout the SPI passes between
 * ws2_32 and a provider, against the values of Windows' 32-bit ABI (ILP32,
 * 4-byte pointers, stdcall): the 30 WSPPROC_TABLE and 15 WSPUPCALLTABLE
 * members each at 4 * its place in the SPI's order, WSAPROTOCOL_INFOW,
 * WSAOVERLAPPED, WSABUF, WSPDATA, WSATHREADID, and WSPStartup's argument bytes
 * (76: the upcall table goes by value), which are the "@76" of its stdcall
 * decoration.  mingw-w64's headers are the ones compiled against, so a
 * difference between them and the ABI fails the build.
 *
 * At run time (make abi32, where a 32-bit Wine runs it):
 *   abi32_check.exe PROVIDER.dll
 * loads the i686 provider DLL by its full path, finds WSPStartup exported
 * undecorated (the name ws2_32 asks GetProcAddress for; the .def, src/lwsp.def,
 * names it so) and the decorated WSPStartup@76 at the same address, and calls
 * it as a stdcall caller does with a version it refuses (WSAVERNOTSUPPORTED):
 * the stack pointer after the call must be where it was before the 76
 * argument bytes were pushed, which holds only if the callee pops them
 * (stdcall).  A cdecl function called the same way first must leave them:
 * the control that shows the measurement can fail.
 * Prints "abi32: ok ..." and exits 0, or says what differs and exits 1.
 */
#if !defined(_WIN32) || defined(_WIN64)
#  error "abi32_check.c is built for 32-bit Windows (i686-w64-mingw32-gcc)"
#endif
#include <winsock2.h>
#include <ws2spi.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <wchar.h>

#define AT(type, member, off) _Static_assert(offsetof(type, member) == (off), #type "." #member " at " #off);

/* WSPPROC_TABLE in the SPI's order: 30 pointers, 4 bytes each */
_Static_assert(sizeof(WSPPROC_TABLE) == 120, "WSPPROC_TABLE is 120 bytes");
AT(WSPPROC_TABLE, lpWSPAccept, 0) AT(WSPPROC_TABLE, lpWSPAddressToString, 4) AT(WSPPROC_TABLE, lpWSPAsyncSelect, 8)
AT(WSPPROC_TABLE, lpWSPBind, 12) AT(WSPPROC_TABLE, lpWSPCancelBlockingCall, 16) AT(WSPPROC_TABLE, lpWSPCleanup, 20)
AT(WSPPROC_TABLE, lpWSPCloseSocket, 24) AT(WSPPROC_TABLE, lpWSPConnect, 28) AT(WSPPROC_TABLE, lpWSPDuplicateSocket, 32)
AT(WSPPROC_TABLE, lpWSPEnumNetworkEvents, 36) AT(WSPPROC_TABLE, lpWSPEventSelect, 40)
AT(WSPPROC_TABLE, lpWSPGetOverlappedResult, 44) AT(WSPPROC_TABLE, lpWSPGetPeerName, 48)
AT(WSPPROC_TABLE, lpWSPGetSockName, 52) AT(WSPPROC_TABLE, lpWSPGetSockOpt, 56) AT(WSPPROC_TABLE, lpWSPGetQOSByName, 60)
AT(WSPPROC_TABLE, lpWSPIoctl, 64) AT(WSPPROC_TABLE, lpWSPJoinLeaf, 68) AT(WSPPROC_TABLE, lpWSPListen, 72)
AT(WSPPROC_TABLE, lpWSPRecv, 76) AT(WSPPROC_TABLE, lpWSPRecvDisconnect, 80) AT(WSPPROC_TABLE, lpWSPRecvFrom, 84)
AT(WSPPROC_TABLE, lpWSPSelect, 88) AT(WSPPROC_TABLE, lpWSPSend, 92) AT(WSPPROC_TABLE, lpWSPSendDisconnect, 96)
AT(WSPPROC_TABLE, lpWSPSendTo, 100) AT(WSPPROC_TABLE, lpWSPSetSockOpt, 104) AT(WSPPROC_TABLE, lpWSPShutdown, 108)
AT(WSPPROC_TABLE, lpWSPSocket, 112) AT(WSPPROC_TABLE, lpWSPStringToAddress, 116)

/* WSPUPCALLTABLE: 15 pointers */
_Static_assert(sizeof(WSPUPCALLTABLE) == 60, "WSPUPCALLTABLE is 60 bytes");
AT(WSPUPCALLTABLE, lpWPUCloseEvent, 0) AT(WSPUPCALLTABLE, lpWPUCloseSocketHandle, 4)
AT(WSPUPCALLTABLE, lpWPUCreateEvent, 8) AT(WSPUPCALLTABLE, lpWPUCreateSocketHandle, 12)
AT(WSPUPCALLTABLE, lpWPUFDIsSet, 16) AT(WSPUPCALLTABLE, lpWPUGetProviderPath, 20)
AT(WSPUPCALLTABLE, lpWPUModifyIFSHandle, 24) AT(WSPUPCALLTABLE, lpWPUPostMessage, 28)
AT(WSPUPCALLTABLE, lpWPUQueryBlockingCallback, 32) AT(WSPUPCALLTABLE, lpWPUQuerySocketHandleContext, 36)
AT(WSPUPCALLTABLE, lpWPUQueueApc, 40) AT(WSPUPCALLTABLE, lpWPUResetEvent, 44) AT(WSPUPCALLTABLE, lpWPUSetEvent, 48)
AT(WSPUPCALLTABLE, lpWPUOpenCurrentThread, 52) AT(WSPUPCALLTABLE, lpWPUCloseThread, 56)

/* WSAPROTOCOL_INFOW holds no pointer: the same 628 bytes on 32 and 64 bits */
_Static_assert(sizeof(WSAPROTOCOL_INFOW) == 628, "WSAPROTOCOL_INFOW is 628 bytes");
AT(WSAPROTOCOL_INFOW, dwServiceFlags1, 0) AT(WSAPROTOCOL_INFOW, dwProviderFlags, 16)
AT(WSAPROTOCOL_INFOW, ProviderId, 20) AT(WSAPROTOCOL_INFOW, dwCatalogEntryId, 36)
AT(WSAPROTOCOL_INFOW, ProtocolChain, 40) AT(WSAPROTOCOL_INFOW, iVersion, 72)
AT(WSAPROTOCOL_INFOW, iAddressFamily, 76) AT(WSAPROTOCOL_INFOW, iSocketType, 88)
AT(WSAPROTOCOL_INFOW, iProtocol, 92) AT(WSAPROTOCOL_INFOW, iSecurityScheme, 104)
AT(WSAPROTOCOL_INFOW, dwMessageSize, 108) AT(WSAPROTOCOL_INFOW, dwProviderReserved, 112)
AT(WSAPROTOCOL_INFOW, szProtocol, 116)
_Static_assert(sizeof(WSAPROTOCOLCHAIN) == 32, "WSAPROTOCOLCHAIN is 32 bytes");

/* WSAOVERLAPPED: Internal and InternalHigh are ULONG_PTR, 4 bytes here */
_Static_assert(sizeof(WSAOVERLAPPED) == 20, "WSAOVERLAPPED is 20 bytes");
AT(WSAOVERLAPPED, Internal, 0) AT(WSAOVERLAPPED, InternalHigh, 4) AT(WSAOVERLAPPED, Offset, 8)
AT(WSAOVERLAPPED, OffsetHigh, 12) AT(WSAOVERLAPPED, hEvent, 16)

/* WSABUF: ULONG len, then the pointer */
_Static_assert(sizeof(WSABUF) == 8, "WSABUF is 8 bytes");
AT(WSABUF, len, 0) AT(WSABUF, buf, 4)

_Static_assert(sizeof(WSPDATA) == 516, "WSPDATA is 516 bytes");
AT(WSPDATA, wHighVersion, 2) AT(WSPDATA, szDescription, 4)
_Static_assert(sizeof(WSATHREADID) == 8, "WSATHREADID is 8 bytes");
_Static_assert(sizeof(SOCKET) == 4 && sizeof(DWORD_PTR) == 4 && sizeof(void *) == 4, "ILP32");
_Static_assert(sizeof(fd_set) == 260, "fd_set is 260 bytes");

/* WSPStartup's arguments on the stack, each rounded up to 4 bytes: the
 * decoration's number */
#define ARG(t) ((sizeof(t) + 3) / 4 * 4)
#define STARTUP_ARG_BYTES (ARG(WORD) + ARG(LPWSPDATA) + ARG(LPWSAPROTOCOL_INFOW) + ARG(WSPUPCALLTABLE) + ARG(LPWSPPROC_TABLE))
_Static_assert(STARTUP_ARG_BYTES == 76, "WSPStartup takes 76 bytes of arguments: WSPStartup@76");

/* the prototype the provider must match: stdcall */
typedef int (__stdcall *startup_fn)(WORD, LPWSPDATA, LPWSAPROTOCOL_INFOW, WSPUPCALLTABLE, LPWSPPROC_TABLE);
_Static_assert(__builtin_types_compatible_p(startup_fn, LPWSPSTARTUP), "LPWSPSTARTUP is stdcall");

/* How far the stack pointer is left below where it was after one call of f
 * made as a stdcall caller makes it: the 76 argument bytes pushed (version
 * 1.1, which lwsp refuses with WSAVERNOTSUPPORTED, valid pointers, a zeroed
 * upcall table), the call, nothing popped by the caller.  0 when f pops its
 * arguments (stdcall), 76 when it leaves them (cdecl).  The call is written
 * in assembly so that the compiler's own stack bookkeeping cannot hide or
 * cause a difference; esp is put back either way. */
static long stack_fall(void *f, int *result) {
  static WSPDATA data;
  static WSAPROTOCOL_INFOW info;
  static WSPPROC_TABLE procs;
  DWORD args[19] = {0};
  long fall;
  int rc;
  _Static_assert(sizeof args == STARTUP_ARG_BYTES, "the argument block");
  args[0] = MAKEWORD(1, 1);
  args[1] = (DWORD)(DWORD_PTR)&data;
  args[2] = (DWORD)(DWORD_PTR)&info;
  args[18] = (DWORD)(DWORD_PTR)&procs;          /* after the 60-byte upcall table */
  __asm__ volatile(
    "movl %%esp, %%esi\n\t"
    "subl $76, %%esp\n\t"
    "movl $19, %%ecx\n"
    "1:\n\t"
    "movl -4(%%edi,%%ecx,4), %%eax\n\t"
    "movl %%eax, -4(%%esp,%%ecx,4)\n\t"
    "loop 1b\n\t"
    "call *%%ebx\n\t"
    "movl %%eax, %%edx\n\t"
    "movl %%esi, %%eax\n\t"
    "subl %%esp, %%eax\n\t"
    "movl %%esi, %%esp\n\t"
    : "=&a"(fall), "=&d"(rc)
    : "b"(f), "D"(args)
    : "ecx", "esi", "memory", "cc");
  *result = rc;
  return fall;
}

/* The control: a cdecl function called as stdcall must show the fall, or
 * the measurement proves nothing. */
static int __cdecl cdecl_startup(WORD v, LPWSPDATA d, LPWSAPROTOCOL_INFOW i, WSPUPCALLTABLE u, LPWSPPROC_TABLE p) {
  (void)v; (void)d; (void)i; (void)u; (void)p;
  return WSAVERNOTSUPPORTED;
}

int main(int argc, char **argv) {
  WCHAR w[MAX_PATH * 2];
  HMODULE m;
  FARPROC plain, decorated;
  long fall, control;
  int rc = 0;
  if (argc != 2) { fprintf(stderr, "usage: abi32_check PROVIDER.dll\n"); return 2; }
  if (!MultiByteToWideChar(CP_UTF8, 0, argv[1], -1, w, MAX_PATH * 2)) { printf("abi32: path too long\n"); return 1; }
  if (!(m = LoadLibraryW(w))) { printf("abi32: LoadLibraryW(%s): error %lu\n", argv[1], GetLastError()); return 1; }
  plain = GetProcAddress(m, "WSPStartup");
  decorated = GetProcAddress(m, "WSPStartup@76");
  if (!plain) { printf("abi32: %s exports no undecorated WSPStartup (ws2_32 asks for that name)\n", argv[1]); return 1; }
  if (decorated && decorated != plain) { printf("abi32: WSPStartup and WSPStartup@76 are different functions\n"); return 1; }
  control = stack_fall((void *)(DWORD_PTR)cdecl_startup, &rc);
  if (control != 76) { printf("abi32: the control (a cdecl function) left the stack %ld bytes lower, not 76: "
                              "the measurement does not work\n", control); return 1; }
  fall = stack_fall((void *)plain, &rc);
  if (fall != 0) { printf("abi32: WSPStartup left its %ld argument bytes on the stack: it is not stdcall\n", fall); return 1; }
  if (rc != WSAVERNOTSUPPORTED) { printf("abi32: WSPStartup(1.1) gave %d, not WSAVERNOTSUPPORTED\n", rc); return 1; }
  printf("abi32: ok: %s exports WSPStartup undecorated%s, stdcall (76 argument bytes popped by the callee), "
         "layouts as Windows' 32-bit ABI\n", argv[1], decorated ? " (and WSPStartup@76 at the same address)" : "");
  return 0;
}
