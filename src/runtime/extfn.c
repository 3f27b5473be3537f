/*
 * extfn.c - the runtime's extension functions.  An instance answers
 * SIO_GET_EXTENSION_FUNCTION_POINTER for every GUID of spi_ext.h with C
 * functions of its own slot (each takes its instance from the function the
 * application called, as the 30 entries do); an unknown GUID goes on to the
 * ioctl handler, and so to the layer below.
 *
 * A socket whose table names a layer below (s.low, s.lh: every socket of
 * wsp.layered) inherits each function in C: the layer below's own function,
 * got from its WSPIoctl, is called on the lower handle with the provider lock
 * released, with an overlapped of the runtime's own.  The application's
 * overlapped is completed -- by event, port or routine, through
 * rt_overlapped_done as every pending call -- once the service thread sees
 * the lower one completed (its Internal leaves WSS_OPERATION_IN_PROGRESS;
 * Offset, OffsetHigh and InternalHigh carry flags, error and bytes); a call
 * without an overlapped waits for it on the caller's thread.  Closing the
 * socket closes the lower one, which aborts the call below, which completes
 * the application's (WSA_OPERATION_ABORTED).  A socket with no layer below
 * (a Lua base provider) gets WSAEOPNOTSUPP.
 *
 * The functions take no lpErrno: they report with the host's WSASetLastError
 * and read the layer below's with its WSAGetLastError.
 */
#include "extfn.h"
#include "extlua.h"
#include "dispatch.h"
#include "spi_ext.h"
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

typedef struct xop {
  struct xop *next;
  WSAOVERLAPPED low_ov;          /* the lower call's: first, so that the lower writes only here */
  lwsp_sock *so;
  uint32_t gen;
  SOCKET handle;
  LPWSAOVERLAPPED ov;            /* the application's */
  LPWSAOVERLAPPED_COMPLETION_ROUTINE routine;
  WSATHREADID tid;
  int has_tid;
  int below;                     /* low_ov went down with a call that had none: it waits here */
  struct lwsp_lower *low;        /* the layer below and its socket: WSPGetOverlappedResult there */
  SOCKET lh;
} xop;

static struct {
  xop *ops;                      /* outstanding (with the instance lock) */
  xop *orphans;                  /* completed by cleanup while the layer below may still write to them */
  LPFN_GETACCEPTEXSOCKADDRS getaddrs;   /* the layer below's, once an application asked for it */
} X[LWSP_MAX_INSTANCES];

/* ---- errors ---------------------------------------------------------------------- */
#ifdef _WIN32
static void set_error(lwsp_inst *I, int e) { (void)I; WSASetLastError(e); }
static int last_error(lwsp_inst *I) { (void)I; return WSAGetLastError(); }
#else
static void (*host_set)(int);
static int (*host_get)(void);
static void find_host(lwsp_inst *I) {
  static int looked;
  if (!looked) {
    char why[200];
    void (*f)(void) = lwsp_host_sym(&I->up, "WSASetLastError", why, sizeof why);
    memcpy(&host_set, &f, sizeof f);
    f = lwsp_host_sym(&I->up, "WSAGetLastError", why, sizeof why);
    memcpy(&host_get, &f, sizeof f);
    if (!host_set || !host_get) lwsp_log(I->name, "the host offers no WSASetLastError/WSAGetLastError: %s", why);
    looked = 1;
  }
}
static void set_error(lwsp_inst *I, int e) { find_host(I); if (host_set) host_set(e); }
static int last_error(lwsp_inst *I) { find_host(I); return host_get ? host_get() : WSASYSCALLFAILURE; }
#endif

int rt_ext_last_error(lwsp_inst *I) { return last_error(I); }

/* ---- an entry: the instance, the socket, the layer below ----------------------------- */
typedef struct xctx {
  lwsp_inst *I; lwsp_sock *so; struct lwsp_lower *low; SOCKET lh; void (*fn)(void);
  int traced; const char *caller; const char *name; SOCKET s;   /* the trace's record of the call */
  int carried;                   /* the script's own handler carries the call (extlua.c) */
} xctx;

/* Calls down with every hold of the provider lock released (as lower.c's DOWN). */
#define X_DOWN(I, stmt) do { \
    int d_ = (I)->depth; \
    rt_budget_saved b_ = rt_budget_release(I); \
    (I)->depth = 0; \
    for (int k_ = 0; k_ < d_; k_++) lwsp_mutex_unlock(&(I)->lock); \
    stmt; \
    for (int k_ = 0; k_ < d_; k_++) lwsp_mutex_lock(&(I)->lock); \
    (I)->depth = d_; \
    rt_budget_relocked(I, b_); \
  } while (0)

static void x_leave(lwsp_inst *I) {
  if (--I->depth == 0) rt_pump(I);
  rt_inst_leave(I);
  lwsp_mutex_unlock(&I->lock);
}
/* The call is over with error (0: done): its trace record, then out. */
static void x_done(xctx *x, int error) {
  if (x->traced) lwsp_trace_leave(x->caller, x->I->name, x->name, x->s, error, "");
  x_leave(x->I);
}

/* The layer below's function ext for lh (its WSPIoctl), with the lock released. */
void (*rt_ext_lower_fn(lwsp_inst *I, struct lwsp_lower *low, SOCKET lh, int ext, INT *err))(void) {
  void (*fn)(void) = NULL;
  GUID g = lwsp_ext_guids[ext];
  DWORD got = 0;
  int rc;
  const WSPPROC_TABLE *p = rt_lower_procs(low);
  X_DOWN(I, rc = p->lpWSPIoctl(lh, SIO_GET_EXTENSION_FUNCTION_POINTER, &g, sizeof g, (LPVOID)&fn, sizeof fn, &got,
                               NULL, NULL, NULL, err));
  if (rc != 0) return NULL;
  if (got != sizeof fn || !fn) { *err = WSAEOPNOTSUPP; return NULL; }
  return fn;
}

/* Enters I for socket s and finds what ext is below it: 1 (locked), or 0
 * with the error set and nothing held. */
static int x_begin(lwsp_inst *I, SOCKET s, int ext, xctx *x) {
  INT e = 0;
  x->I = I;
  x->traced = 0;
  x->carried = 0;
  if (!rt_inst_enter(I, &e)) { set_error(I, e); return 0; }
  I->depth++;
  if ((x->traced = lwsp_tracing) != 0) {
    x->caller = lwsp_trace_party();
    x->name = lwsp_ext_names[ext];
    x->s = s;
    lwsp_trace_enter(x->caller, I->name, x->name, s, "");
  }
  if (!(x->so = rt_sock_find(I, s))) e = WSAENOTSOCK;
  else if (x->so->closing) e = WSAENOTSOCK;
  else if ((x->carried = rt_extlua_carried(I, ext)) != 0) return 1;
  else if (!rt_lower_resolve(I, x->so, &x->low, &x->lh)) e = WSAEOPNOTSUPP;
  else if (!(x->fn = rt_ext_lower_fn(I, x->low, x->lh, ext, &e))) { if (!e) e = WSAEOPNOTSUPP; }
  if (e) { x_done(x, e); set_error(I, e); return 0; }
  return 1;
}
static BOOL x_fail(xctx *x, int e) { x_done(x, e); set_error(x->I, e); return FALSE; }
/* A call the script carries (extlua.c) runs as a call of its own, at the
 * instance's first depth (so that it may block): x is left first, and the
 * trace's record of the call closed after it.  e: what extlua.c returned. */
#define CARRY(x, call) do { \
    x_leave((x).I); \
    int e_ = (call); \
    if ((x).traced) lwsp_trace_leave((x).caller, (x).I->name, (x).name, (x).s, e_, ""); \
    if (e_) { set_error((x).I, e_); return FALSE; } \
    return TRUE; \
  } while (0)

/* ---- Lua handlers: a layer's say before the call goes down ------------------------- */
const char *const rt_ext_handler_names[LWSP_EXT_COUNT] = {
  "acceptex", NULL, "connectex", "disconnectex", "transmitfile", "transmitpackets", "wsarecvmsg", "wsasendmsg"};

typedef struct xargs { const struct sockaddr *addr; int addrlen; const char *data; size_t len; DWORD flags; int has_flags; } xargs;

/* Runs the script's handler for ext, if it has one, as handler(s [, addr]
 * [, data] [, flags]) on the ioctl entry's machinery (it cannot wait):
 * nothing or true lets the call go down, nil and an error refuses it.
 * 1: go on; 0: the call is over (x left, error set). */
static int x_filter(xctx *x, int ext, const xargs *a) {
  lwsp_inst *I = x->I;
  lua_State *L = I->L;
  const char *name = rt_ext_handler_names[ext];
  rt_call c;
  INT e = 0;
  int has;
  if (!name || ext == 0 || ext == 2 || ext == 3 || ext == 6 || !lua_checkstack(L, 3)) return 1;   /* those are carried (extlua.c) */
  {
    int top = lua_gettop(L);
    lua_getfield(L, LUA_REGISTRYINDEX, "lwsp.handlers");
    has = lua_istable(L, -1) && (lua_pushstring(L, name), lua_rawget(L, -2)) == LUA_TFUNCTION;
    lua_settop(L, top);
  }
  if (!has) return 1;
  if (!rt_begin(&c, I, P_ioctl, x->so->handle, 1, &e)) { x_fail(x, e); return 0; }
  /* the handler in place of the ioctl handler, then the socket table and the arguments */
  lua_getfield(c.co, LUA_REGISTRYINDEX, "lwsp.handlers");
  lua_pushstring(c.co, name);
  lua_rawget(c.co, -2);
  lua_replace(c.co, -4);
  lua_pop(c.co, 1);
  if (a->addr && !rt_push_addr_arg(&c, a->addr, a->addrlen)) lua_pushnil(c.co);
  if (a->data) lua_pushlstring(c.co, a->data, a->len);
  if (a->has_flags) lua_pushinteger(c.co, a->flags);
  if (rt_run(&c, &e) != RT_DONE) { x_fail(x, e ? e : WSAENETDOWN); return 0; }
  e = rt_result_error(&c);
  rt_end(&c);
  if (e) { x_fail(x, e < 0 ? WSAENETDOWN : e); return 0; }
  return 1;
}

/* A record for the call's lower overlapped (with the application's offset: TransmitFile reads it). */
static xop *x_op(xctx *x, LPWSAOVERLAPPED ov, LPWSAOVERLAPPED_COMPLETION_ROUTINE routine) {
  xop *op = calloc(1, sizeof *op);
  if (!op) return NULL;
  op->so = x->so; op->gen = x->so->gen; op->handle = x->so->handle; op->ov = ov; op->routine = ov ? routine : NULL;
  op->low = x->low; op->lh = x->lh;
  if (ov) { op->low_ov.Offset = ov->Offset; op->low_ov.OffsetHigh = ov->OffsetHigh; }
  return op;
}

/* The overlapped for the call down: the application's call's own, or for a
 * call without one that may block (sync), one the caller waits on here
 * (the socket below is non-blocking). */
static LPWSAOVERLAPPED x_low(xop *op, int sync) {
  if (op->ov) return &op->low_ov;
  if (!sync) return NULL;
  op->below = 1;
  return &op->low_ov;
}

static int x_finished(xop *op) {
  return __atomic_load_n(&op->low_ov.Internal, __ATOMIC_ACQUIRE) != WSS_OPERATION_IN_PROGRESS;
}

/* A finished lower call's results, from the layer below's WSPGetOverlappedResult
 * (lock released): besides being the SPI's way, it orders this thread after
 * the layer below's last touch of low_ov (its completion runs under the lock
 * that call takes), so low_ov may be freed afterwards. */
void rt_ext_lower_results(lwsp_inst *I, struct lwsp_lower *low, SOCKET lh, LPWSAOVERLAPPED lov, DWORD *error,
                          DWORD *bytes, DWORD *flags) {
  DWORD n = 0, fl = 0;
  INT e = 0;
  BOOL ok;
  const WSPPROC_TABLE *p = rt_lower_procs(low);
  X_DOWN(I, ok = p->lpWSPGetOverlappedResult(lh, lov, &n, FALSE, &fl, &e));
  if (ok) { *error = 0; *bytes = n; *flags = fl; return; }
  if (e == WSAENOTSOCK || e == WSANOTINITIALISED || e == WSA_IO_INCOMPLETE) {   /* its socket is gone: the fields say */
    *error = lov->OffsetHigh; *bytes = (DWORD)lov->InternalHigh; *flags = lov->Offset;
    return;
  }
  *error = (DWORD)e; *bytes = n; *flags = fl;
}
static void x_results(lwsp_inst *I, xop *op, DWORD *error, DWORD *bytes, DWORD *flags) {
  rt_ext_lower_results(I, op->low, op->lh, &op->low_ov, error, bytes, flags);
}

/* After the call down: the application's outcome.  ok/e: what the layer below said. */
static BOOL x_end(xctx *x, xop *op, BOOL ok, int e, LPDWORD bytes) {
  lwsp_inst *I = x->I;
  if (!ok && e != WSA_IO_PENDING) {
    if (op->has_tid) { INT e2; I->up.lpWPUCloseThread(&op->tid, &e2); }
    if (op->ov) { op->ov->Internal = op->ov->OffsetHigh = (DWORD)e; }
    free(op);
    return x_fail(x, e ? e : WSASYSCALLFAILURE);
  }
  if (op->ov) {
    /* pending for the application, whatever the layer below said: its completion comes either way */
    op->ov->Internal = WSS_OPERATION_IN_PROGRESS;
    op->ov->InternalHigh = 0;
    op->next = X[I->slot].ops;
    X[I->slot].ops = op;
    x->so->pending++;
    rt_service_start(I);
    lwsp_cond_broadcast(&I->cond);
    return x_fail(x, WSA_IO_PENDING);
  }
  if (!op->below) {   /* done at once below, results given */
    free(op);
    x_done(x, 0);
    return TRUE;
  }
  /* no overlapped: wait for the lower one here, the lock released */
  while (!x_finished(op) && !I->closing) lwsp_cond_wait(&I->cond, &I->lock, 2);
  if (!x_finished(op)) {   /* the last WSPCleanup began: it frees it */
    op->next = X[I->slot].orphans;
    X[I->slot].orphans = op;
    return x_fail(x, WSA_OPERATION_ABORTED);
  }
  {
    DWORD er = 0, n = 0, fl = 0;
    x_results(I, op, &er, &n, &fl);
    e = (int)er;
    if (bytes) *bytes = n;
  }
  free(op);
  if (e) return x_fail(x, e);
  x_done(x, 0);
  return TRUE;
}

/* ---- the functions, per instance --------------------------------------------------- */
#define CALL_DOWN(x, type, call) __extension__({ type f_; BOOL r_; memcpy(&f_, &(x)->fn, sizeof f_); \
    X_DOWN((x)->I, r_ = (BOOL)(call)); r_; })

static BOOL x_acceptex(lwsp_inst *I, SOCKET ls, SOCKET as, PVOID out, DWORD rcvlen, DWORD loclen, DWORD remlen,
                       LPDWORD got, LPOVERLAPPED ov) {
  xctx x;
  lwsp_sock *aso;
  struct lwsp_lower *alow;
  SOCKET alh;
  xop *op;
  BOOL ok;
  if (!x_begin(I, ls, 0, &x)) return FALSE;
  if (x.carried) CARRY(x, rt_extlua_acceptex(I, ls, as, out, rcvlen, loclen, remlen, got, ov));
  { xargs a = {0}; if (!x_filter(&x, 0, &a)) return FALSE; }
  if (!(aso = rt_sock_find(I, as)) || !rt_lower_resolve(I, aso, &alow, &alh)) return x_fail(&x, WSAENOTSOCK);
  if (alow != x.low) return x_fail(&x, WSAEINVAL);
  if (!(op = x_op(&x, ov, NULL))) return x_fail(&x, WSAENOBUFS);
  ok = CALL_DOWN(&x, LPFN_ACCEPTEX, f_(x.lh, alh, out, rcvlen, loclen, remlen, got, x_low(op, 0)));
  return x_end(&x, op, ok, ok ? 0 : last_error(I), got);
}

static VOID x_getacceptexsockaddrs(lwsp_inst *I, PVOID out, DWORD rcvlen, DWORD loclen, DWORD remlen,
                                   struct sockaddr **loc, LPINT locl, struct sockaddr **rem, LPINT reml) {
  LPFN_GETACCEPTEXSOCKADDRS f = X[I->slot].getaddrs;
  if (rt_extlua_getaddrs(I, out, rcvlen, loclen, remlen, loc, locl, rem, reml)) return;
  if (f) { f(out, rcvlen, loclen, remlen, loc, locl, rem, reml); return; }
  if (loc) *loc = NULL;
  if (rem) *rem = NULL;
  if (locl) *locl = 0;
  if (reml) *reml = 0;
}

static BOOL x_connectex(lwsp_inst *I, SOCKET s, const struct sockaddr *name, int namelen, PVOID data, DWORD len,
                        LPDWORD sent, LPOVERLAPPED ov) {
  xctx x;
  xop *op;
  BOOL ok;
  if (!x_begin(I, s, 2, &x)) return FALSE;
  if (x.carried) CARRY(x, rt_extlua_connectex(I, s, name, namelen, data, len, sent, ov));
  { xargs a = {name, namelen, data ? data : "", data ? len : 0, 0, 0}; if (!x_filter(&x, 2, &a)) return FALSE; }
  if (!(op = x_op(&x, ov, NULL))) return x_fail(&x, WSAENOBUFS);
  ok = CALL_DOWN(&x, LPFN_CONNECTEX, f_(x.lh, name, namelen, data, len, sent, x_low(op, 0)));
  return x_end(&x, op, ok, ok ? 0 : last_error(I), sent);
}

static BOOL x_disconnectex(lwsp_inst *I, SOCKET s, LPOVERLAPPED ov, DWORD flags, DWORD reserved) {
  xctx x;
  xop *op;
  BOOL ok;
  if (!x_begin(I, s, 3, &x)) return FALSE;
  if (x.carried) CARRY(x, rt_extlua_disconnectex(I, s, ov, flags, reserved));
  { xargs a = {NULL, 0, NULL, 0, flags, 1}; if (!x_filter(&x, 3, &a)) return FALSE; }
  if (!(op = x_op(&x, ov, NULL))) return x_fail(&x, WSAENOBUFS);
  ok = CALL_DOWN(&x, LPFN_DISCONNECTEX, f_(x.lh, x_low(op, 1), flags, reserved));
  return x_end(&x, op, ok, ok ? 0 : last_error(I), NULL);
}

static BOOL x_transmitfile(lwsp_inst *I, SOCKET s, HANDLE file, DWORD len, DWORD per, LPOVERLAPPED ov,
                           LPTRANSMIT_FILE_BUFFERS tb, DWORD flags) {
  xctx x;
  xop *op;
  BOOL ok;
  if (!x_begin(I, s, 4, &x)) return FALSE;
  { xargs a = {NULL, 0, NULL, 0, flags, 1}; if (!x_filter(&x, 4, &a)) return FALSE; }
  if (!(op = x_op(&x, ov, NULL))) return x_fail(&x, WSAENOBUFS);
  ok = CALL_DOWN(&x, LPFN_TRANSMITFILE, f_(x.lh, file, len, per, x_low(op, 1), tb, flags));
  return x_end(&x, op, ok, ok ? 0 : last_error(I), NULL);
}

static BOOL x_transmitpackets(lwsp_inst *I, SOCKET s, LPTRANSMIT_PACKETS_ELEMENT els, DWORD n, DWORD per,
                              LPOVERLAPPED ov, DWORD flags) {
  xctx x;
  xop *op;
  BOOL ok;
  if (!x_begin(I, s, 5, &x)) return FALSE;
  { xargs a = {NULL, 0, NULL, 0, flags, 1}; if (!x_filter(&x, 5, &a)) return FALSE; }
  if (!(op = x_op(&x, ov, NULL))) return x_fail(&x, WSAENOBUFS);
  ok = CALL_DOWN(&x, LPFN_TRANSMITPACKETS, f_(x.lh, els, n, per, x_low(op, 1), flags));
  return x_end(&x, op, ok, ok ? 0 : last_error(I), NULL);
}

/* WSARecvMsg and WSASendMsg: a completion routine runs on the caller's thread (WPUOpenCurrentThread). */
static INT x_msg(lwsp_inst *I, SOCKET s, int recv, LPWSAMSG m, DWORD flags, LPDWORD bytes, LPWSAOVERLAPPED ov,
                 LPWSAOVERLAPPED_COMPLETION_ROUTINE routine) {
  xctx x;
  xop *op;
  BOOL ok;
  INT rc, e = 0;
  if (recv && (!m || (!bytes && !ov))) { set_error(I, WSAEFAULT); return SOCKET_ERROR; }   /* (what goes down has an overlapped) */
  if (!x_begin(I, s, recv ? 6 : 7, &x)) return SOCKET_ERROR;
  if (x.carried && recv) {   /* as CARRY, for a function that returns 0 or SOCKET_ERROR */
    x_leave(I);
    e = rt_extlua_wsarecvmsg(I, s, m, bytes, ov, routine);
    if (x.traced) lwsp_trace_leave(x.caller, I->name, x.name, x.s, e, "");
    if (e) { set_error(I, e); return SOCKET_ERROR; }
    return 0;
  }
  {
    xargs a = {recv || !m ? NULL : m->name, recv || !m ? 0 : m->namelen, NULL, 0, flags, !recv};
    if (!x_filter(&x, recv ? 6 : 7, &a)) return SOCKET_ERROR;
  }
  if (!(op = x_op(&x, ov, routine))) return x_fail(&x, WSAENOBUFS), SOCKET_ERROR;
  if (op->routine) {
    if (I->up.lpWPUOpenCurrentThread(&op->tid, &e) != 0) { free(op); return x_fail(&x, e ? e : WSAENOBUFS), SOCKET_ERROR; }
    op->has_tid = 1;
  }
  if (recv) {
    LPFN_WSARECVMSG f;
    memcpy(&f, &x.fn, sizeof f);
    X_DOWN(I, rc = f(x.lh, m, bytes, x_low(op, 1), NULL));
  } else {
    LPFN_WSASENDMSG f;
    memcpy(&f, &x.fn, sizeof f);
    X_DOWN(I, rc = f(x.lh, m, flags, bytes, x_low(op, 1), NULL));
  }
  ok = rc == 0;
  return x_end(&x, op, ok, ok ? 0 : last_error(I), bytes) ? 0 : SOCKET_ERROR;
}

#define SLOT_EXT(n) \
  static BOOL WSAAPI acceptex_##n(SOCKET l, SOCKET a, PVOID o, DWORD r, DWORD ll, DWORD rl, LPDWORD g, LPOVERLAPPED ov) \
    { return x_acceptex(&lwsp_instances[n], l, a, o, r, ll, rl, g, ov); } \
  static VOID WSAAPI getaddrs_##n(PVOID o, DWORD r, DWORD ll, DWORD rl, struct sockaddr **la, LPINT lal, struct sockaddr **ra, LPINT ral) \
    { x_getacceptexsockaddrs(&lwsp_instances[n], o, r, ll, rl, la, lal, ra, ral); } \
  static BOOL WSAAPI connectex_##n(SOCKET s, const struct sockaddr *a, int al, PVOID d, DWORD l, LPDWORD sent, LPOVERLAPPED ov) \
    { return x_connectex(&lwsp_instances[n], s, a, al, d, l, sent, ov); } \
  static BOOL WSAAPI disconnectex_##n(SOCKET s, LPOVERLAPPED ov, DWORD f, DWORD r) \
    { return x_disconnectex(&lwsp_instances[n], s, ov, f, r); } \
  static BOOL WSAAPI transmitfile_##n(SOCKET s, HANDLE f, DWORD l, DWORD p, LPOVERLAPPED ov, LPTRANSMIT_FILE_BUFFERS t, DWORD fl) \
    { return x_transmitfile(&lwsp_instances[n], s, f, l, p, ov, t, fl); } \
  static BOOL WSAAPI transmitpackets_##n(SOCKET s, LPTRANSMIT_PACKETS_ELEMENT e, DWORD c, DWORD p, LPOVERLAPPED ov, DWORD f) \
    { return x_transmitpackets(&lwsp_instances[n], s, e, c, p, ov, f); } \
  static INT WSAAPI recvmsg_##n(SOCKET s, LPWSAMSG m, LPDWORD b, LPWSAOVERLAPPED ov, LPWSAOVERLAPPED_COMPLETION_ROUTINE r) \
    { return x_msg(&lwsp_instances[n], s, 1, m, 0, b, ov, r); } \
  static INT WSAAPI sendmsg_##n(SOCKET s, LPWSAMSG m, DWORD f, LPDWORD b, LPWSAOVERLAPPED ov, LPWSAOVERLAPPED_COMPLETION_ROUTINE r) \
    { return x_msg(&lwsp_instances[n], s, 0, m, f, b, ov, r); }
#define FN_(f) (void (*)(void))(f)
#define SLOT_ROW(n) {FN_(acceptex_##n), FN_(getaddrs_##n), FN_(connectex_##n), FN_(disconnectex_##n), \
                     FN_(transmitfile_##n), FN_(transmitpackets_##n), FN_(recvmsg_##n), FN_(sendmsg_##n)},
#define X_SLOTS(X_) X_(0) X_(1) X_(2) X_(3) X_(4) X_(5) X_(6) X_(7) X_(8) X_(9) X_(10) X_(11) X_(12) X_(13) X_(14) X_(15)
_Static_assert(LWSP_MAX_INSTANCES == 16, "X_SLOTS lists one entry per instance slot");
X_SLOTS(SLOT_EXT)
static void (*const slot_fns[LWSP_MAX_INSTANCES][LWSP_EXT_COUNT])(void) = { X_SLOTS(SLOT_ROW) };

/* ---- SIO_EXT_POLL, SIO_EXT_SENDMSG: WSAPoll and WSASendMsg as ws2_32 hands them over ---- */
/* SIO_EXT_POLL (no lock held): the WSAPOLLDATA in `in`, answered into `out`
 * from this instance's own WSPSelect (its handler, or lwsp's).  0 or the error. */
static int x_poll(lwsp_inst *I, LPVOID in, DWORD cbin, LPVOID out, DWORD cbout, LPDWORD returned) {
  lwsp_polldata head;
  lwsp_pollfd fds[WSP_FD_SETSIZE];
  wsp_fd_set r, w, e;
  wsp_timeval tv, *tvp = NULL;
  INT err = 0;
  int nvalid = 0, result = 0;
  size_t size;
  if (!in || cbin < LWSP_POLLDATA_SIZE(0)) return WSAEFAULT;
  memcpy(&head, in, LWSP_POLLDATA_SIZE(0));
  if (head.fds == 0 || head.fds > WSP_FD_SETSIZE) return WSAEINVAL;
  size = LWSP_POLLDATA_SIZE(head.fds);
  if (cbin < size || !out || cbout < size) return WSAEFAULT;
  memcpy(fds, (char *)in + LWSP_POLLDATA_SIZE(0), head.fds * sizeof(lwsp_pollfd));
  r.fd_count = w.fd_count = e.fd_count = 0;
  lwsp_mutex_lock(&I->lock);
  for (ULONG i = 0; i < head.fds; i++) {
    lwsp_sock *so = rt_live(I) ? rt_sock_find(I, fds[i].fd) : NULL;
    fds[i].revents = 0;
    if (!so || so->closing) { fds[i].revents = LWSP_POLLNVAL; continue; }
    nvalid++;
    if (fds[i].events & (LWSP_POLLRDNORM | LWSP_POLLRDBAND | LWSP_POLLPRI)) r.fd_array[r.fd_count++] = fds[i].fd;
    if (fds[i].events & (LWSP_POLLWRNORM | LWSP_POLLWRBAND)) w.fd_array[w.fd_count++] = fds[i].fd;
    e.fd_array[e.fd_count++] = fds[i].fd;
  }
  lwsp_mutex_unlock(&I->lock);
  if (nvalid && !(head.fds > (ULONG)nvalid)) {   /* WSAPoll waits only when every socket is valid */
    if (head.timeout >= 0) { tv.tv_sec = head.timeout / 1000; tv.tv_usec = head.timeout % 1000 * 1000; tvp = &tv; }
  } else {
    tv.tv_sec = tv.tv_usec = 0;
    tvp = &tv;
  }
  if (nvalid && rt_wsp_select(I, 0, r.fd_count ? &r : NULL, w.fd_count ? &w : NULL, &e, tvp, &err) == SOCKET_ERROR)
    return err ? err : WSAENETDOWN;
  for (ULONG i = 0; i < head.fds; i++) {
    if (fds[i].revents == LWSP_POLLNVAL) { result++; continue; }
    /* readable: the normal data asked for (else what else was); writable likewise; except: an error */
    int16_t rd = fds[i].events & LWSP_POLLRDNORM ? LWSP_POLLRDNORM : fds[i].events & (LWSP_POLLRDBAND | LWSP_POLLPRI);
    for (u_int k = 0; k < r.fd_count; k++)
      if (r.fd_array[k] == fds[i].fd) fds[i].revents |= rd;
    for (u_int k = 0; k < w.fd_count; k++)
      if (w.fd_array[k] == fds[i].fd) fds[i].revents |= fds[i].events & (LWSP_POLLWRNORM | LWSP_POLLWRBAND);
    for (u_int k = 0; k < e.fd_count; k++)
      if (e.fd_array[k] == fds[i].fd) fds[i].revents |= LWSP_POLLERR;
    if (fds[i].revents) result++;
  }
  head.result = result;
  if (out != in) memmove(out, in, size);
  memcpy(out, &head, LWSP_POLLDATA_SIZE(0));
  memcpy((char *)out + LWSP_POLLDATA_SIZE(0), fds, head.fds * sizeof(lwsp_pollfd));
  if (returned) *returned = (DWORD)size;
  return 0;
}

/* SIO_EXT_SENDMSG (no lock held): the WSASENDMSG in `in` is this instance's
 * own WSASendMsg on s.  0 or the error (WSA_IO_PENDING: its overlapped completes). */
static int x_sendmsg_ioctl(lwsp_inst *I, SOCKET s, LPVOID in, DWORD cbin, LPDWORD returned) {
  lwsp_sendmsg_args a;
  if (!in || cbin < sizeof a) return WSAEFAULT;
  memcpy(&a, in, sizeof a);
  if (!a.lpMsg || (!a.lpNumberOfBytesSent && !a.lpOverlapped)) return WSAEFAULT;
  if (returned) *returned = 0;
  if (x_msg(I, s, 0, a.lpMsg, a.dwFlags, a.lpNumberOfBytesSent, a.lpOverlapped, a.lpCompletionRoutine) == 0) return 0;
  { int e = last_error(I); return e ? e : WSASYSCALLFAILURE; }
}

/* ---- the hooks ----------------------------------------------------------------------- */
int rt_ext_ioctl(lwsp_inst *I, SOCKET s, DWORD code, LPVOID in, DWORD cbin, LPVOID out, DWORD cbout, LPDWORD returned,
                 LPWSAOVERLAPPED ov, LPWSAOVERLAPPED_COMPLETION_ROUTINE routine, LPWSATHREADID tid, LPINT err,
                 int *rc) {
  int ext = -1, e = 0, traced;
  const char *caller = NULL;
  DWORD n = 0;
  lwsp_sock *so;
  if (code == SIO_EXT_POLL || code == SIO_EXT_SENDMSG || code == SIO_EXT_SELECT) {
    /* never the handler's: their buffers hold this layer's handles and pointers (docs/api.md) */
    e = code == SIO_EXT_POLL ? x_poll(I, in, cbin, out, cbout, returned)
      : code == SIO_EXT_SENDMSG ? x_sendmsg_ioctl(I, s, in, cbin, returned) : WSAEOPNOTSUPP;
    if (e) { *err = e; *rc = SOCKET_ERROR; } else { *rc = 0; }
    return 1;
  }
  if (code == SIO_BSP_HANDLE_POLL && ov) {   /* "the lpOverlapped parameter must be a NULL pointer" */
    *err = WSAEFAULT;
    ov->Internal = ov->OffsetHigh = WSAEFAULT;
    *rc = SOCKET_ERROR;
    return 1;
  }
  if (code == SIO_GET_EXTENSION_FUNCTION_POINTER) {
    if (cbin >= sizeof(GUID)) ext = lwsp_ext_index(in);
    if (cbin < sizeof(GUID)) { *err = WSAEFAULT; *rc = SOCKET_ERROR; return 1; }
    if (ext < 0) return 0;           /* not one of ours: the handler's (the layer below's) */
  } else if (code != SIO_BSP_HANDLE && code != SIO_BSP_HANDLE_SELECT && code != SIO_BSP_HANDLE_POLL) {
    return 0;
  }
  if (!rt_inst_enter(I, err)) { *rc = SOCKET_ERROR; return 1; }
  I->depth++;
  if ((traced = lwsp_tracing) != 0) {
    char args[LWSP_TRACE_TEXT];
    snprintf(args, sizeof args, "%s%s%s", code == SIO_GET_EXTENSION_FUNCTION_POINTER ? "SIO_GET_EXTENSION_FUNCTION_POINTER, "
             : code == SIO_BSP_HANDLE ? "SIO_BSP_HANDLE" : code == SIO_BSP_HANDLE_SELECT ? "SIO_BSP_HANDLE_SELECT"
             : "SIO_BSP_HANDLE_POLL", ext >= 0 ? "WSAID_" : "", ext >= 0 ? lwsp_ext_names[ext] : "");
    caller = lwsp_trace_party();
    lwsp_trace_enter(caller, I->name, "WSPIoctl", s, args);
  }
  if (!(so = rt_sock_find(I, s))) e = WSAENOTSOCK;
  else if (ext >= 0) {
    if (cbout < sizeof(void *)) e = WSAEFAULT;
    else {
      memcpy(out, &slot_fns[I->slot][ext], sizeof(void *));
      n = sizeof(void *);
      if (ext == 1) rt_extlua_own_addrs(I, rt_extlua_carried(I, 0));
      if (ext == 1 && !X[I->slot].getaddrs) {
        /* GetAcceptExSockaddrs has no socket: the layer below's, from this one */
        struct lwsp_lower *low;
        SOCKET lh;
        INT e2 = 0;
        void (*f)(void);
        if (rt_lower_resolve(I, so, &low, &lh) && (f = rt_ext_lower_fn(I, low, lh, 1, &e2)) != NULL)
          memcpy(&X[I->slot].getaddrs, &f, sizeof f);
      }
    }
  } else {
    /* SIO_BSP_HANDLE*: this layer serves WSASendMsg, select and WSAPoll itself: its own handle */
    if (cbout < sizeof(SOCKET)) e = WSAEFAULT;
    else { memcpy(out, &s, sizeof s); n = sizeof s; }
  }
  if (traced) lwsp_trace_leave(caller, I->name, "WSPIoctl", s, e, "");
  if (e) {
    x_leave(I);
    *err = e;
    if (ov) ov->Internal = ov->OffsetHigh = (DWORD)e;
    *rc = SOCKET_ERROR;
    return 1;
  }
  if (returned) *returned = n;
  if (ov) rt_overlapped_done(I, so, s, ov, routine, tid, 0, n, 0);
  x_leave(I);
  *rc = 0;
  return 1;
}

const char *rt_ext_map_option(lwsp_inst *I, int level, int name, const char *val, int len, char *tmp) {
  SOCKET ls, lh;
  lwsp_sock *so;
  struct lwsp_lower *low;
  if (level != SOL_SOCKET || name != SO_UPDATE_ACCEPT_CONTEXT || len < (int)sizeof(SOCKET)) return val;
  memcpy(&ls, val, sizeof ls);
  if (!(so = rt_sock_find(I, ls)) || !rt_lower_resolve(I, so, &low, &lh)) return val;
  memcpy(tmp, val, (size_t)len);
  memcpy(tmp, &lh, sizeof lh);
  return tmp;
}

static void x_complete(lwsp_inst *I, xop *op, DWORD error, DWORD bytes, DWORD flags) {
  lwsp_sock *so = op->so;
  rt_overlapped_done(I, so, op->handle, op->ov, op->routine, op->has_tid ? &op->tid : NULL, error, bytes, flags);
  if (op->has_tid) { INT e; I->up.lpWPUCloseThread(&op->tid, &e); op->has_tid = 0; }
  rt_sock_release(I, so);
}

void rt_ext_poll(lwsp_inst *I, long *ms) {
  xop **pp = &X[I->slot].ops, *done = NULL;
  while (*pp) {
    xop *op = *pp;
    if (!x_finished(op)) { pp = &op->next; continue; }
    *pp = op->next;
    op->next = done;
    done = op;
  }
  while (done) {
    xop *op = done;
    DWORD error = 0, bytes = 0, flags = 0;
    done = op->next;
    x_results(I, op, &error, &bytes, &flags);
    /* aborted below because this layer closed the socket, or is cleaning up */
    if (error && (op->so->closing || I->closing)) error = WSA_OPERATION_ABORTED;
    x_complete(I, op, error, bytes, flags);
    free(op);
  }
  if (X[I->slot].ops && (*ms < 0 || *ms > 2)) *ms = 2;
  rt_extlua_poll(I, ms);
}

void rt_ext_abort(lwsp_inst *I) {
  while (X[I->slot].ops) {
    xop *op = X[I->slot].ops;
    X[I->slot].ops = op->next;
    /* the layer below may still be writing it: freed once it is closed */
    if (!x_finished(op)) x_complete(I, op, WSA_OPERATION_ABORTED, 0, 0);
    else x_complete(I, op, op->low_ov.OffsetHigh ? WSA_OPERATION_ABORTED : 0, (DWORD)op->low_ov.InternalHigh,
                    op->low_ov.Offset);
    op->next = X[I->slot].orphans;
    X[I->slot].orphans = op;
  }
  X[I->slot].getaddrs = NULL;
  rt_extlua_abort(I);
}

void rt_ext_free(lwsp_inst *I) {
  rt_extlua_free(I);
  while (X[I->slot].orphans) {
    xop *op = X[I->slot].orphans;
    X[I->slot].orphans = op->next;
    free(op);
  }
}
