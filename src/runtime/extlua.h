/*
 * extlua.h - extension functions carried by a script's handlers (extlua.c):
 * what extfn.c's entries hand over when the script has its own acceptex,
 * connectex or disconnectex, the lower layer's methods that call the layer
 * below's functions, and the hooks of the service thread and WSPCleanup.
 */
#ifndef LWSP_EXTLUA_H
#define LWSP_EXTLUA_H
#include "runtime.h"
#include "spi_ext.h"

/* 1 when the script carries extension function ext itself (under the lock). */
int rt_extlua_carried(lwsp_inst *I, int ext);
/* The carried calls (made without the lock): 0 done, else the
 * error the function reports (WSA_IO_PENDING: completes later). */
int rt_extlua_connectex(lwsp_inst *I, SOCKET s, const struct sockaddr *name, int namelen, PVOID data, DWORD len,
                        LPDWORD sent, LPOVERLAPPED ov);
int rt_extlua_acceptex(lwsp_inst *I, SOCKET s, SOCKET as, PVOID out, DWORD rcvlen, DWORD loclen, DWORD remlen,
                       LPDWORD got, LPOVERLAPPED ov);
int rt_extlua_disconnectex(lwsp_inst *I, SOCKET s, LPOVERLAPPED ov, DWORD flags, DWORD reserved);
int rt_extlua_wsarecvmsg(lwsp_inst *I, SOCKET s, LPWSAMSG m, LPDWORD got, LPWSAOVERLAPPED ov,
                         LPWSAOVERLAPPED_COMPLETION_ROUTINE routine);
/* GetAcceptExSockaddrs of an instance that carries AcceptEx (1), or 0: not this one's. */
int rt_extlua_getaddrs(lwsp_inst *I, PVOID out, DWORD rcvlen, DWORD loclen, DWORD remlen, struct sockaddr **loc,
                       LPINT locl, struct sockaddr **rem, LPINT reml);
void rt_extlua_own_addrs(lwsp_inst *I, int own);
/* low:connectex, low:acceptex, low:disconnectex into the table on top of L */
void rt_extlua_methods(lua_State *L);
void rt_extlua_poll(lwsp_inst *I, long *ms);
void rt_extlua_abort(lwsp_inst *I);
void rt_extlua_free(lwsp_inst *I);
#endif
