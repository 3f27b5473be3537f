/*
 * dispatch.h - what the two halves of the WSP entries share: dispatch.c (the
 * entries that set up, name and control sockets, and the proc tables) and
 * dispatch_io.c (the entries that carry data or wait).
 *
 * Every entry: checks pointers and lengths the caller gave (WSAEFAULT before
 * any Lua runs), then rt_begin / push arguments / RUN / read results / rt_end.
 * FAIL and FAULT end the call; each entry declares `errv`, its failure value.
 */
#ifndef LWSP_DISPATCH_H
#define LWSP_DISPATCH_H
#include "runtime.h"

#define ERRP INT errp_; if (!err) err = &errp_
#define FAIL(code) do { rt_fail(&c, err, (code)); return errv; } while (0)
#define FAULT(...) do { rt_fault(&c, err, __VA_ARGS__); return errv; } while (0)
#define RUN() do { if (rt_run(&c, err) != RT_DONE || rt_failed(&c, err)) return errv; } while (0)
#define BEGIN(proc, s, need) do { if (!rt_begin(&c, I, (proc), (s), (need), err)) return errv; } while (0)
#define R(k) (c.base + (k))          /* index of result k (0-based) on c.co */
#define HAS(k) (c.nres > (k) && !lua_isnil(c.co, R(k)))

/* The trace of an entry the C core answers itself (no handler to record it). */
#define CORE_TRACE(proc, s, ...) \
  const char *core_caller_ = NULL; \
  int core_tr_ = lwsp_tracing; \
  if (core_tr_) { \
    char core_args_[LWSP_TRACE_TEXT]; \
    snprintf(core_args_, sizeof core_args_, __VA_ARGS__); \
    core_caller_ = lwsp_trace_party(); \
    lwsp_trace_enter(core_caller_, I->name, lwsp_spi_names[proc], (s), core_args_); \
  }
#define CORE_END(proc, s, failed) \
  do { if (core_tr_) lwsp_trace_leave(core_caller_, I->name, lwsp_spi_names[proc], (s), (failed) ? *err : 0, ""); } while (0)

#define I32_MIN_ (-(lua_Integer)0x80000000LL)
#define U32_MAX_ ((lua_Integer)0xffffffffLL)

/* For the entries the C core answers itself (no handler): takes the lock and
 * finds the socket, or fails with *err set. */
void rt_unlock_inst(lwsp_inst *I);
int rt_lock_inst(lwsp_inst *I, LPINT err);
lwsp_sock *rt_lock_sock(lwsp_inst *I, SOCKET s, LPINT err);

/* An overlapped request that failed before it started: the code in it. */
void rt_ov_failed(LPWSAOVERLAPPED ov, int code);
int rt_min_addrlen(int af);
/* Reads an integer result within [lo, hi]; 0 on anything else. */
int rt_int_result(rt_call *c, int k, lua_Integer lo, lua_Integer hi, lua_Integer *out);
/* A handler's integer at idx for a C field of [lo, hi]: 1 if it fits, else logged (WSAEINVAL). */
int rt_in_range(rt_call *c, int idx, const char *field, lua_Integer lo, lua_Integer hi);
/* The Lua type name of result k, or "nothing". */
const char *rt_rtype(rt_call *c, int k);

/* The 30 entries, each for the instance the trampoline stands for. */
SOCKET rt_wsp_accept(lwsp_inst *I, SOCKET s, struct sockaddr *addr, LPINT addrlen, LPCONDITIONPROC cond,
                     DWORD_PTR data, LPINT err);
INT rt_wsp_addresstostring(lwsp_inst *I, LPSOCKADDR sa, DWORD salen, LPWSAPROTOCOL_INFOW pi, LPWSTR out,
                           LPDWORD outlen, LPINT err);
int rt_wsp_asyncselect(lwsp_inst *I, SOCKET s, HWND hwnd, unsigned int msg, LONG events, LPINT err);
int rt_wsp_bind(lwsp_inst *I, SOCKET s, const struct sockaddr *name, int namelen, LPINT err);
int rt_wsp_cancelblockingcall(lwsp_inst *I, LPINT err);
int rt_wsp_cleanup(lwsp_inst *I, LPINT err);
int rt_wsp_closesocket(lwsp_inst *I, SOCKET s, LPINT err);
int rt_wsp_connect(lwsp_inst *I, SOCKET s, const struct sockaddr *name, int namelen, LPWSABUF callerdata,
                   LPWSABUF calleedata, LPQOS sqos, LPQOS gqos, LPINT err);
int rt_wsp_duplicatesocket(lwsp_inst *I, SOCKET s, DWORD pid, LPWSAPROTOCOL_INFOW pi, LPINT err);
int rt_wsp_enumnetworkevents(lwsp_inst *I, SOCKET s, WSAEVENT ev, LPWSANETWORKEVENTS ne, LPINT err);
int rt_wsp_eventselect(lwsp_inst *I, SOCKET s, WSAEVENT ev, LONG events, LPINT err);
BOOL rt_wsp_getoverlappedresult(lwsp_inst *I, SOCKET s, LPWSAOVERLAPPED ov, LPDWORD bytes, BOOL wait,
                                LPDWORD flags, LPINT err);
int rt_wsp_getpeername(lwsp_inst *I, SOCKET s, struct sockaddr *n, LPINT l, LPINT e);
int rt_wsp_getsockname(lwsp_inst *I, SOCKET s, struct sockaddr *n, LPINT l, LPINT e);
int rt_wsp_getsockopt(lwsp_inst *I, SOCKET s, int level, int optname, char *optval, LPINT optlen, LPINT err);
BOOL rt_wsp_getqosbyname(lwsp_inst *I, SOCKET s, LPWSABUF name, LPQOS qos, LPINT err);
int rt_wsp_ioctl(lwsp_inst *I, SOCKET s, DWORD code, LPVOID in, DWORD cbin, LPVOID out, DWORD cbout,
                 LPDWORD returned, LPWSAOVERLAPPED ov, LPWSAOVERLAPPED_COMPLETION_ROUTINE routine, LPWSATHREADID tid,
                 LPINT err);
SOCKET rt_wsp_joinleaf(lwsp_inst *I, SOCKET s, const struct sockaddr *name, int namelen, LPWSABUF callerdata,
                       LPWSABUF calleedata, LPQOS sqos, LPQOS gqos, DWORD flags, LPINT err);
int rt_wsp_listen(lwsp_inst *I, SOCKET s, int backlog, LPINT err);
int rt_wsp_recv(lwsp_inst *I, SOCKET s, LPWSABUF bufs, DWORD nbufs, LPDWORD got, LPDWORD flags,
                LPWSAOVERLAPPED ov, LPWSAOVERLAPPED_COMPLETION_ROUTINE routine, LPWSATHREADID tid, LPINT err);
int rt_wsp_recvdisconnect(lwsp_inst *I, SOCKET s, LPWSABUF data, LPINT err);
int rt_wsp_recvfrom(lwsp_inst *I, SOCKET s, LPWSABUF bufs, DWORD nbufs, LPDWORD got, LPDWORD flags,
                    struct sockaddr *from, LPINT fromlen, LPWSAOVERLAPPED ov,
                    LPWSAOVERLAPPED_COMPLETION_ROUTINE routine, LPWSATHREADID tid, LPINT err);
int rt_wsp_select(lwsp_inst *I, int nfds, wsp_fd_set *r, wsp_fd_set *w, wsp_fd_set *e, wsp_timeval *tv,
                  LPINT err);
int rt_wsp_send(lwsp_inst *I, SOCKET s, LPWSABUF b, DWORD n, LPDWORD sent, DWORD flags, LPWSAOVERLAPPED ov,
                LPWSAOVERLAPPED_COMPLETION_ROUTINE r, LPWSATHREADID t, LPINT e);
int rt_wsp_senddisconnect(lwsp_inst *I, SOCKET s, LPWSABUF data, LPINT err);
int rt_wsp_sendto(lwsp_inst *I, SOCKET s, LPWSABUF b, DWORD n, LPDWORD sent, DWORD flags,
                  const struct sockaddr *to, int tolen, LPWSAOVERLAPPED ov, LPWSAOVERLAPPED_COMPLETION_ROUTINE r,
                  LPWSATHREADID t, LPINT e);
int rt_wsp_setsockopt(lwsp_inst *I, SOCKET s, int level, int optname, const char *optval, int optlen, LPINT err);
int rt_wsp_shutdown(lwsp_inst *I, SOCKET s, int how, LPINT err);
SOCKET rt_wsp_socket(lwsp_inst *I, int af, int type, int protocol, LPWSAPROTOCOL_INFOW pi, GROUP g, DWORD flags,
                     LPINT err);
INT rt_wsp_stringtoaddress(lwsp_inst *I, LPWSTR str, INT af, LPWSAPROTOCOL_INFOW pi, LPSOCKADDR addr,
                           LPINT addrlen, LPINT err);
#endif
