/*
 * extfn.h - the runtime's extension functions (extfn.c): what an instance
 * answers to SIO_GET_EXTENSION_FUNCTION_POINTER and the base-handle
 * ioctls, and the hooks the 30 entries, the service thread and WSPCleanup
 * call.
 */
#ifndef LWSP_EXTFN_H
#define LWSP_EXTFN_H
#include "runtime.h"

/* WSPIoctl's share (call without the lock): 1 when code (and, for
 * SIO_GET_EXTENSION_FUNCTION_POINTER, the GUID) is answered here, the
 * entry's result in *rc; 0: the ioctl goes on to the handler. */
int rt_ext_ioctl(lwsp_inst *I, SOCKET s, DWORD code, LPVOID in, DWORD cbin, LPVOID out, DWORD cbout, LPDWORD returned,
                 LPWSAOVERLAPPED ov, LPWSAOVERLAPPED_COMPLETION_ROUTINE routine, LPWSATHREADID tid, LPINT err,
                 int *rc);
/* WSPSetSockOpt going down (under the lock): SO_UPDATE_ACCEPT_CONTEXT's
 * listening socket as the layer below knows it (in tmp), else val. */
const char *rt_ext_map_option(lwsp_inst *I, int level, int name, const char *val, int len, char *tmp);
/* Service thread (under the lock): completes the extension calls the layer
 * below has completed; *ms shortened while some are outstanding. */
void rt_ext_poll(lwsp_inst *I, long *ms);
/* Last WSPCleanup (under the lock): every outstanding call completes with
 * WSA_OPERATION_ABORTED; rt_ext_free, after the layers below are closed,
 * frees what they could still write to. */
void rt_ext_abort(lwsp_inst *I);
void rt_ext_free(lwsp_inst *I);
/* The handler names a script may give the extension functions (NULL: none
 * for that one), in spi_ext.h's order. */
extern const char *const rt_ext_handler_names[];
/* For extlua.c: the layer below's function ext for lh (lock released while
 * asked), NULL with *err; the error the host's WSAGetLastError holds; a
 * finished lower overlapped's results (the layer below's WSPGetOverlappedResult). */
void (*rt_ext_lower_fn(lwsp_inst *I, struct lwsp_lower *low, SOCKET lh, int ext, INT *err))(void);
int rt_ext_last_error(lwsp_inst *I);
void rt_ext_lower_results(lwsp_inst *I, struct lwsp_lower *low, SOCKET lh, LPWSAOVERLAPPED lov, DWORD *error,
                          DWORD *bytes, DWORD *flags);
/* lower.c: the proc table of a layer below */
const WSPPROC_TABLE *rt_lower_procs(struct lwsp_lower *low);
#endif
