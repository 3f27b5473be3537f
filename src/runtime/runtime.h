/*
 * runtime.h - the provider runtime's internals shared by lwsp.c (dispatch)
 * and upcalls.c (the upcall table in Lua).
 */
#ifndef LWSP_RUNTIME_H
#define LWSP_RUNTIME_H
#include "common.h"
#include "netev.h"
#include <stdarg.h>

#define LWSP_SOCK_CHUNK 256
#define LWSP_POOL 32

/* The 30 SPI entries: index, Lua handler name (the SPI name without "WSP",
 * lower-cased), and the SPI name. */
#define LWSP_PROCS(X) \
  X(0, accept, Accept) X(1, addresstostring, AddressToString) X(2, asyncselect, AsyncSelect) \
  X(3, bind, Bind) X(4, cancelblockingcall, CancelBlockingCall) X(5, cleanup, Cleanup) \
  X(6, closesocket, CloseSocket) X(7, connect, Connect) X(8, duplicatesocket, DuplicateSocket) \
  X(9, enumnetworkevents, EnumNetworkEvents) X(10, eventselect, EventSelect) \
  X(11, getoverlappedresult, GetOverlappedResult) X(12, getpeername, GetPeerName) \
  X(13, getsockname, GetSockName) X(14, getsockopt, GetSockOpt) X(15, getqosbyname, GetQOSByName) \
  X(16, ioctl, Ioctl) X(17, joinleaf, JoinLeaf) X(18, listen, Listen) X(19, recv, Recv) \
  X(20, recvdisconnect, RecvDisconnect) X(21, recvfrom, RecvFrom) X(22, select, Select) \
  X(23, send, Send) X(24, senddisconnect, SendDisconnect) X(25, sendto, SendTo) \
  X(26, setsockopt, SetSockOpt) X(27, shutdown, Shutdown) X(28, socket, Socket) \
  X(29, stringtoaddress, StringToAddress)

enum {
#define P_(i, lname, sname) P_##lname = i,
  LWSP_PROCS(P_)
#undef P_
};

typedef struct lwsp_sock {
  uint32_t gen;        /* 0 while the slot is free */
  uint32_t idx;        /* position in the instance's socket table */
  uint32_t next_free;  /* free-list link (index + 1) */
  SOCKET handle;
  int ref;             /* registry reference to the socket's Lua table */
  int af;
  int ifs;
  DWORD catalog;       /* the catalog entry the socket was opened for */
  int nonblocking;     /* FIONBIO, or after WSPAsyncSelect/WSPEventSelect */
  int closing;         /* closed by the application; released when pending reaches 0 */
  int close_running;   /* its closesocket handler is running: operations that fail meanwhile were aborted */
  int pending;         /* operations and completion deliveries still outstanding */
  /* network events (events.c; the selection and the record: spi/netev.h) */
  lwsp_netev ev;
  LONG ev_level;       /* conditions the provider reported that no call has consumed */
  int ev_level_error[FD_MAX_EVENTS];
  /* inherited calls (lower.c): s.low and s.lh as last read, valid while no
   * Lua code has run in the state since (down_seen == I->lua_runs + 1) */
  struct lwsp_lower *down_low;
  SOCKET down_lh;
  uint32_t down_seen;
  /* overlapped receives [0] and sends [1] start in the order they were
   * posted: while one is outstanding, later ones queue here unstarted */
  int ov_out[2];                 /* outstanding: started and waiting, or queued */
  struct rt_op *q_head[2], *q_tail[2];
} lwsp_sock;

typedef struct rt_op rt_op;

typedef struct lwsp_inst {
  lwsp_mutex lock;               /* serialises every entry into L; lives as long as the slot */
  lwsp_cond cond;                /* with lock: blocked callers, GetOverlappedResult waits, the service thread */
  int slot;
  uint32_t epoch;                /* counts the slot's lives: APCs of an old life are dropped */
  lwsp_spares apc_spares;        /* with lock: completion-routine records, kept across lives */
#define APC_SPARES 64            /* how many of them (set with the slot) */
  /* the budget's watchdog (budget.c); kept across lives, read by its thread without the lock */
  lua_State *wd_co;              /* the coroutine running Lua code now, or NULL */
  uint32_t wd_seq;               /* counts runs' starts and ends */
  long wd_budget;                /* I->budget while the instance is watched, else 0 */
  uint32_t wd_seen, wd_armed;    /* the watchdog's own: wd_seq at its last look, and when it armed */
  int wd_attached;               /* counted among the watchdog's users */
  uint32_t wd_ids;               /* with the lock: numbers the runs (wd_seq is the current one's, 0: none) */
  uint32_t wd_hooked;            /* the run the watchdog armed: its coroutines get the hook at once */
  long wd_left;                  /* instructions the armed run has left */
  uint32_t wd_parked;            /* a run inside a call down (its wd_seq kept aside), or 0 */
  uint32_t wd_pending;           /* the parked run the watchdog found long: armed when it comes back */
  int wd_condemned;              /* with the lock: the run has spent its budget */
  /* Who is inside (with lock).  Every thread that is in the instance in any
   * form -- a call from WSPStartup's table (its handler running, calling down
   * with the lock released, blocked, waiting in WSPGetOverlappedResult), an
   * APC running Lua -- is counted in `inside` from entry to exit (rt_inst_enter,
   * rt_inst_leave); the service thread (timers, polls, resumed operations) is
   * joined.  The last WSPCleanup sets `closing` (new calls get
   * WSANOTINITIALISED, waits and calls down end at once), aborts everything
   * and waits until `inside` is 0 before it frees anything. */
  int inside;
  int closing;                   /* the last WSPCleanup has begun (set and cleared with the global lock too) */
  int cleaning;                  /* ... and runs the script's cleanup handler: its calls down go through */
  int active;                    /* read without the lock: atomic (rt_live) */
  int opening;                   /* with the global lock: a WSPStartup is running the script (opener's thread) */
  unsigned long opener;
  GUID slot_id;                  /* with the global lock: the GUID the slot serves or is being opened for */
  int startups;                  /* (atomic; changed with the global lock) everything from here on is reset by each first WSPStartup */
  char warn[512];                /* a Lua warning being put together from its pieces */
  size_t nwarn;
  int warn_off;                  /* warn("@off") */
  GUID id;                       /* the GUID whose script runs (start_guid in lwsp.c) */
  DWORD layer_id;                /* its catalog entry in the chain WSPStartup was given, or 0 */
  char name[39];                 /* the GUID as text, for logs */
  char script[1024];
  int fallback;                  /* the script could not run: wsp.layered runs in its place (on-failure passthrough) */
  lua_State *L;
  WSPUPCALLTABLE up;
  WSAPROTOCOL_INFOW info;        /* from the first WSPStartup */
  LPWPUCOMPLETEOVERLAPPEDREQUEST complete;
  int href[LWSP_NPROCS];         /* handler references, LUA_NOREF if absent */
  unsigned char inherited[LWSP_NPROCS]; /* the handler is wsp.layered's passthrough (lower.c) */
  uint32_t lua_runs;             /* counts the times Lua code is entered (handlers, timers, APCs) */
  int may_wait;                  /* the handler running now may wait (wsp.may_wait) */
  lua_State *pool_co[LWSP_POOL]; /* idle coroutines, reused between calls */
  int pool_ref[LWSP_POOL];       /* their references */
  int npool;
  int ifs;                       /* handlers.ifs: IFS handles */
  int views;                     /* handlers.views: send/recv data as zero-copy views */
  lwsp_sock **chunks;            /* sockets live in fixed chunks: pointers stay valid */
  uint32_t nsocks, nchunks, free_head;
  lwsp_map ifsmap;               /* IFS handle -> lwsp_sock index + 1 */
  size_t mem, mem_limit;         /* the state's bytes, and its ceiling (0: none) */
  long budget;                   /* instructions a handler may run per resumption (0: no limit) */
  int limited;                   /* the ceiling applies only while handler code runs: lwsp's own
                                    bookkeeping on the state must never meet an unprotected error */
  int depth;                     /* entries into L on the stack (the lock is recursive) */
  rt_op *ops;                    /* every pending or blocked operation */
  rt_op *runq, *runq_tail;       /* woken pending operations, resumed by rt_pump */
  int pumping;
  int waits_ref;                 /* registry: key -> {op, ...} */
  int timers_ref;                /* registry: array of timers (service thread) */
  lwsp_thread *service;
  int service_stop;
  struct lwsp_lower *lowers;     /* loaded layers below, one per protocol chain */
  struct lwsp_view *views_idle, *views_all;   /* view records (view.c) */
  int view_mt;                   /* registry reference to the views' metatable (0: not made yet) */
  /* what the script made through wsp.upcall (upcalls.c): the only handles
   * and events it may close, and the live overlapped object's serial */
  lwsp_map own_handles;          /* WPUCreateSocketHandle from Lua: handle -> 1 */
  lwsp_map own_events;           /* WPUCreateEvent from Lua: event -> 1 */
  uint32_t ov_serial, ov_live;   /* an lwsp.overlapped is usable while its serial is ov_live */
} lwsp_inst;

/* The instance whose state L is (told by its allocator, which Lua code cannot
 * change), or NULL outside a provider state: the host refuses to open in one. */
lwsp_inst *lwsp_inst_of(lua_State *L);
static inline int rt_live(lwsp_inst *I) { return __atomic_load_n(&I->active, __ATOMIC_ACQUIRE); }
/* Entering the instance (a call, an APC): takes the lock, or fails with
 * WSANOTINITIALISED (not started, or its last WSPCleanup has begun) or
 * WSAENETDOWN (calls into providers nested too deep on this thread: a
 * provider reached itself through what it called).  rt_inst_leave: the
 * entry is over (the lock is still held). */
int rt_inst_enter(lwsp_inst *I, LPINT err);
void rt_inst_leave(lwsp_inst *I);
/* Whether this thread is inside an instance of that provider now (a chain
 * that loops back into it is refused). */
int rt_inside_guid(const GUID *g);
/* This thread works inside I without being a call (the service thread): +1, -1. */
void rt_inst_mark(lwsp_inst *I, int d);
/* Resolves WPUCompleteOverlappedRequest for the host whose upcall table is
 * up, from that host's module; NULL (with why) if it offers none. */
LPWPUCOMPLETEOVERLAPPEDREQUEST lwsp_find_complete(const WSPUPCALLTABLE *up, char *why, size_t whylen);


/* One entry into a provider (calls.c): rt_begin() takes the instance lock,
 * finds the socket and the handler, and puts the handler (and the socket
 * table) on a coroutine; rt_run() resumes it; rt_end() returns the coroutine
 * to the pool and unlocks.  rt_fail() and rt_fault() end the call with an
 * error (rt_fault also logs it as a provider fault, WSAENETDOWN).  Between
 * rt_begin and rt_end, arguments and results live on c->co. */
typedef struct rt_call {
  lwsp_inst *I;
  lua_State *co;
  int proc;
  lwsp_sock *so;
  int co_ref;   /* anchors co while the call runs (LUA_NOREF once a pending operation owns it) */
  int base;     /* index of the first result on co */
  int nres;
  int broken;   /* the coroutine raised: do not reuse it */
  lwsp_sock *ns; /* a socket being created: closed by rt_end unless taken */
  void *view;    /* a buffer view over the caller's WSABUFs: invalidated by rt_end */
  int can_wait;  /* the entry may block or pend when its handler yields */
  LPWSAOVERLAPPED ov; /* an overlapped call: a yield leaves it pending */
  int pending;   /* the coroutine now belongs to a pending operation */
  int traced;    /* the entry was traced: rt_end records its return */
  int err_code;  /* the call's Winsock error, for the trace */
  const char *caller; /* who made the call, for the trace */
  int entered;   /* the trace's call record has its arguments */
  unsigned long tseq; /* that record */
  SOCKET tsock;       /* the socket the trace names */
  struct lwsp_lower *low; /* a call going down in C (an inherited handler): the layer below, */
  SOCKET lh;              /* and the socket there (s.low and s.lh) */
  int behind;             /* ... but an overlapped one behind others of its socket: it queues */
  uint32_t ov_serial;     /* the lwsp.overlapped given to the handler (0: none), dead after rt_end */
} rt_call;

/* Where a data call's results go: the caller's buffers (or, for a pending
 * call, a copy of its WSABUF array), the sender's address, ioctl output. */
typedef struct rt_io {
  LPWSABUF bufs;
  DWORD nbufs;
  size_t cap;           /* recv: capacity; send: bytes given */
  size_t before;        /* send: bytes sent before the handler ran (an inherited call's first part) */
  DWORD flags;          /* recv: the caller's flags */
  struct sockaddr *from;
  LPINT fromlen;
  LPVOID out;
  DWORD cbout;
} rt_io;

/* Converts a finished handler's results into the caller's memory; returns 0
 * or a Winsock error (faults are logged).  bytes/flags are the completion's. */
typedef int (*rt_finish_fn)(rt_call *c, const rt_io *io, DWORD *bytes, DWORD *flags);

enum { OP_WAITING, OP_RUNNABLE, OP_DONE, OP_RUNNING };   /* OP_RUNNING: being resumed (the lock may be released) */
struct rt_op {
  rt_op *next, *prev;            /* I->ops */
  rt_op *rnext;                  /* I->runq */
  lwsp_inst *I;
  lwsp_sock *so;
  SOCKET handle;
  int proc;
  lua_State *co;
  int co_ref;                    /* anchors co (pending operations only) */
  int key_ref;                   /* what it waits for (LUA_NOREF: nothing) */
  double deadline;               /* 0: none */
  int state, blocking, cancelled, aborted, timed_out;
  LPWSAOVERLAPPED ov;
  LPWSAOVERLAPPED_COMPLETION_ROUTINE routine;
  WSATHREADID tid;
  int has_tid;
  int own_tid;                   /* tid was opened for the call (WPUOpenCurrentThread): closed at completion */
  rt_io io;
  WSABUF bufs_copy[4];           /* small WSABUF arrays are copied here */
  void *view;
  rt_finish_fn finish;
  int dir;                       /* 0 a receive, 1 a send (ordered per socket), -1 neither */
  int started;                   /* its handler has run (else it waits in its socket's queue) */
  int co_clean;                  /* completed without running its coroutine: the pool may have it */
  rt_op *qnext;                  /* the socket's queue */
};

enum { RT_FAILED = 0, RT_DONE = 1, RT_PENDING = 2, RT_QUEUED = 3 };

/* A coroutine for a handler (from the pool, or new), anchored by *ref; and back. */
lua_State *rt_co_take(lwsp_inst *I, int *ref);
void rt_co_give(lwsp_inst *I, lua_State *co, int ref);
void rt_co_drop(lwsp_inst *I, lua_State *co, int ref);   /* releases it (ref LUA_NOREF: nothing to release) */
int rt_begin(rt_call *c, lwsp_inst *I, int proc, SOCKET s, int need_sock, LPINT err);
/* rt_begin for the calls a layer can inherit: when may_go_down and the
 * socket's handler is wsp.layered's passthrough (and the call is neither
 * traced nor under an armed fault), c->low and c->lh are set and no coroutine
 * is taken: the entry calls down with rt_down_* and ends the call itself.
 * rt_enter_lua() turns such a call into an ordinary one (after a lower call
 * that would block, so the handler retries and waits).  may_go_down 2: an
 * overlapped call; when an earlier one of its direction is outstanding on the
 * socket, c->behind is set, and only a receive keeps c->low (to queue with no
 * coroutine, rt_defer); anything else behind gets its handler. */
int rt_begin_down(rt_call *c, lwsp_inst *I, int proc, SOCKET s, int may_go_down, LPINT err);
int rt_enter_lua(rt_call *c, LPINT err);
void rt_end(rt_call *c);
int rt_fail(rt_call *c, LPINT err, int code);
int rt_fault(rt_call *c, LPINT err, const char *fmt, ...)
#ifdef __GNUC__
  __attribute__((format(printf, 3, 4)))
#endif
  ;
/* Resumes with everything pushed since rt_begin.  RT_DONE: results on c->co;
 * RT_FAILED: the call has ended with *err; RT_PENDING (overlapped calls with
 * c->ov set only): the handler waits, and the caller must rt_pend it. */
int rt_run(rt_call *c, LPINT err);
/* rt_run, unless c is an overlapped receive or send behind others of its
 * socket: then RT_QUEUED, and the caller must rt_defer it. */
int rt_run_in_turn(rt_call *c, LPINT err);
void rt_trace_entered(rt_call *c);   /* the trace's call record gets the handler's arguments */
/* The handler's failure code (0: none, -1: a fault, logged). */
int rt_result_error(rt_call *c);
/* budget.c: the instruction budget.  Every run of Lua code on a provider's
 * state (handler resumption, timer, APC, the script, cleanup) is bracketed by
 * rt_budget_enter and rt_budget_leave with the lock held (and I->limited
 * set); a run that lasts past a watchdog tick gets a count hook and
 * I->budget instructions, and once they are spent it is condemned: every
 * instruction raises.  rt_budget_leave returns whether the run was
 * condemned.  rt_budget_release / rt_budget_relocked: the lock is released
 * and taken back inside a run (a call down).  rt_budget_forget: co is about
 * to be released (NULL: the whole state is).  rt_budget_close: closes a
 * finished coroutine's variables under the budget (nothing when condemned). */
typedef struct { lwsp_inst *inst; lua_State *co; } rt_run_mark;
typedef struct { int mine, armed, condemned, limited; uint32_t seq; lua_State *co; long left; } rt_budget_saved;
rt_run_mark rt_budget_enter(lwsp_inst *I, lua_State *co);
int rt_budget_leave(lwsp_inst *I, rt_run_mark m);
rt_budget_saved rt_budget_release(lwsp_inst *I);
void rt_budget_relocked(lwsp_inst *I, rt_budget_saved s);
void rt_budget_forget(lwsp_inst *I, lua_State *co);
void rt_budget_close(lwsp_inst *I, lua_State *co, int condemned);
void rt_budget_charge(lwsp_inst *I, lua_State *co);   /* a call out to C: CALL_CHARGE instructions */
int rt_budget_condemned(lwsp_inst *I);          /* the running run is condemned */
const char *rt_budget_message(void);            /* the budget's error */
const char *rt_error_text(lua_State *L, int idx); /* an error value as text; no metamethod runs (lwsp.c) */
int rt_error_code(lua_State *co, int st);         /* a failed run's Winsock error: WSAENOBUFS or WSAENETDOWN */
void rt_budget_bind(lua_State *L, lwsp_inst *I); /* the state's threads know their instance */
/* match.c: string.find, match, gmatch and gsub with a bound on their work */
void rt_match_open(lua_State *L, lwsp_inst *I);
void rt_budget_disarm(lua_State *L);   /* takes the budget's hook off L, if it has it */
/* runs the function on top of L as a timer or an APC runs: under the budget, errors logged as what's */
void rt_run_limited(lwsp_inst *I, lua_State *L, const char *what);
void rt_budget_init(void);
void rt_budget_attach(lwsp_inst *I);   /* the instance is open: watch it (when it has a budget) */
void rt_budget_detach(lwsp_inst *I);   /* before its state closes */
/* the provider state's libraries: coroutine.resume/wrap/close that carry the
 * budget into nested coroutines, xpcall, setmetatable (no __gc),
 * collectgarbage, debug/os/io without what escapes the budget */
void rt_budget_open(lua_State *L, lwsp_inst *I);
int rt_soft_fault(rt_call *c, const char *fmt, ...)
#ifdef __GNUC__
  __attribute__((format(printf, 2, 3)))
#endif
  ;
int rt_failed(rt_call *c, LPINT err);
int rt_finish_ok(rt_call *c, LPINT err);
int rt_addr_ok(const struct sockaddr *sa, int len);
int rt_push_addr_arg(rt_call *c, const struct sockaddr *sa, int len);
int rt_put_addr(rt_call *c, int idx, struct sockaddr *name, LPINT namelen, LPINT err);
int rt_push_bufs(lua_State *co, const WSABUF *b, DWORD n, size_t *total);
/* A caller's WSABUF array: 0 (and the total length), WSAEFAULT for a NULL
 * array or a NULL buffer of nonzero length, WSAEINVAL for no buffers. */
int rt_check_bufs(const WSABUF *b, DWORD n, size_t *total);
size_t rt_scatter(const WSABUF *b, DWORD n, const char *data, size_t len);
void rt_push_wsabuf(lua_State *co, const WSABUF *b);
/* Records a completion in the WSAOVERLAPPED and notifies: the routine by
 * WPUQueueApc (the socket stays allocated until it has run), otherwise
 * WPUCompleteOverlappedRequest. */
void rt_overlapped_done(lwsp_inst *I, lwsp_sock *so, SOCKET s, LPWSAOVERLAPPED ov,
                        LPWSAOVERLAPPED_COMPLETION_ROUTINE routine, LPWSATHREADID tid, DWORD error, DWORD bytes,
                        DWORD flags);
lwsp_sock *rt_sock_find(lwsp_inst *I, SOCKET s);
lwsp_sock *rt_sock_at(lwsp_inst *I, uint32_t idx);
lwsp_sock *rt_sock_open(lwsp_inst *I, lua_State *co, int af, DWORD catalog, LPINT err);
void rt_sock_close(lwsp_inst *I, lwsp_sock *so);
int rt_sock_set_ifs(lwsp_inst *I, lwsp_sock *so, lua_State *co, int idx, LPINT err);
extern const char *const lwsp_proc_names[LWSP_NPROCS];
extern const char *const lwsp_spi_names[LWSP_NPROCS];
/* pending.c: waiting handlers */
/* Makes the yielded call c a pending overlapped operation; the coroutine and
 * its key move to the operation.  Returns it, or NULL (call ended, *err set). */
rt_op *rt_pend(rt_call *c, const rt_io *io, rt_finish_fn finish, LPWSAOVERLAPPED_COMPLETION_ROUTINE routine,
               LPWSATHREADID tid, LPINT err);
/* An overlapped receive or send that must wait its turn: c's handler and
 * arguments stay on its coroutine, unstarted, until the socket's earlier
 * operations of that direction have completed.  An inherited receive queues
 * with no coroutine (c->co NULL): its turn makes the call down, and sets up
 * the handler only if that would block.  NULL: call ended, *err set. */
rt_op *rt_defer(rt_call *c, const rt_io *io, rt_finish_fn finish, LPWSAOVERLAPPED_COMPLETION_ROUTINE routine,
                LPWSATHREADID tid, LPINT err);
/* 0 for receives, 1 for sends, -1 for other calls */
int rt_dir_of(int proc);
/* Waits, with the lock released, until the blocked call is woken (returns 1)
 * or cancelled, aborted or timed out (returns 0, the call ended with *err). */
int rt_block(rt_call *c, LPINT err);
/* An inherited blocking call (c->low, at depth 1) whose call down would
 * block waits on its own thread for the lower socket (dir 0 readable, 1
 * writable): no Lua and no service thread.  The provider lock is released
 * while it selects, in slices that run the blocking hook; WSPCancelBlockingCall,
 * a close of the socket and WSPCleanup end it like any blocked call.
 * 1: try the call down again; 0: the call ended with *err (WSAEINTR). */
int rt_block_down(rt_call *c, int dir, LPINT err);
void rt_wait_on(lwsp_inst *I, rt_op *op, lua_State *co);  /* pops key and timeout from co */
void rt_pump(lwsp_inst *I);                                /* resumes woken pending operations */
int rt_wake(lwsp_inst *I, lua_State *L, int idx);          /* wakes the waiters on the key at idx */
void rt_abort_socket(lwsp_inst *I, lwsp_sock *so);         /* close: aborts its operations */
void rt_abort_all(lwsp_inst *I);                           /* cleanup: aborts everything, wakes every waiter */
int rt_cancel_blocking(lwsp_inst *I);                      /* WSPCancelBlockingCall: 0 or WSAEINVAL */
rt_op *rt_find_op(lwsp_inst *I, LPWSAOVERLAPPED ov);
void rt_op_done_notify(lwsp_inst *I, rt_op *op, int error, DWORD bytes, DWORD flags);
void rt_service_stop(lwsp_inst *I);
void rt_service_start(lwsp_inst *I);
int rt_pending_open(lua_State *L, lwsp_inst *I);           /* wake, after, pending into the lwsp table */
void rt_sock_release(lwsp_inst *I, lwsp_sock *so);         /* drops a pending count; frees a closed socket at 0 */
/* events.c: network events */
void rt_net_event(lwsp_inst *I, lwsp_sock *so, LONG bit, int error);   /* the provider reports one */
void rt_reenable(lwsp_inst *I, lwsp_sock *so, LONG bits);              /* a call re-arms them */
int rt_event_select(lwsp_inst *I, lwsp_sock *so, WSAEVENT ev, LONG mask, LPINT err);
int rt_async_select(lwsp_inst *I, lwsp_sock *so, HWND hwnd, UINT msg, LONG mask, LPINT err);
int rt_enum_events(lwsp_inst *I, lwsp_sock *so, WSAEVENT ev, LPWSANETWORKEVENTS ne, LPINT err);
/* WSPSelect over this provider's sockets from their reported conditions; call locked. */
int rt_select(lwsp_inst *I, wsp_fd_set *r, wsp_fd_set *w, wsp_fd_set *e, const wsp_timeval *tv, LPINT err);
int rt_events_open(lua_State *L, lwsp_inst *I);
/* upcalls.c: a checked lwsp.overlapped for the handler, usable until the call
 * ends (rt_end); the upcall bindings' own records go with the instance */
void rt_push_overlapped(rt_call *c, LPWSAOVERLAPPED ov);
void rt_upcalls_close(lwsp_inst *I);      /* cleanup: closes what the script made and left open */
/* sandbox.c: what a provider state may load, and from where (see the file's head) */
void rt_sandbox_open(lua_State *L);      /* text-only loaders, trusted searchers, a reduced debug table */
void rt_sandbox_paths(lwsp_inst *I, lua_State *L, const char *script_dir, const char *module_dir);
int rt_trusted_file(const char *path, char *why, size_t n);   /* 0 with why: refused (POSIX checks) */
int rt_trusted_dir(const char *dir, char *why, size_t n);
/* view.c: zero-copy views of a caller's WSABUF array, valid for one call */
void *rt_push_view(lwsp_inst *I, lua_State *co, const WSABUF *bufs, DWORD n, size_t len, int writable);
/* A receive handler's arguments after the socket: a writable view of io's
 * buffers (returned) or their capacity, then the flags. */
void *rt_push_recv_args(lwsp_inst *I, lua_State *co, const rt_io *io);
void rt_view_end(lwsp_inst *I, void *view);
void rt_views_free(lwsp_inst *I);             /* after lua_close: the view records */
int rt_view_bufs(lua_State *L, int idx, const WSABUF **bufs, DWORD *n, size_t *len, int writable);
void rt_view_retarget(void *view, const WSABUF *bufs);
/* dispatch.c: the proc table of instance slot n (its 30 entries: dispatch.c, dispatch_io.c) */
extern lwsp_inst lwsp_instances[LWSP_MAX_INSTANCES];
void lwsp_fill_procs(int slot, LPWSPPROC_TABLE procs);
int lwsp_do_cleanup(lwsp_inst *I, LPINT err);

/* The catalog entry a layer registers its sockets' handles under: its own
 * entry for the chain pi names (lower.c) */
DWORD lwsp_own_entry(lwsp_inst *I, const WSAPROTOCOL_INFOW *pi);
/* trace.c: records of every crossing, when lwsp_tracing is set */
#ifdef LWSP_NO_TRACE   /* tracing compiled out: the benchmark's baseline for what tracing costs when off */
#define lwsp_tracing 0
#elif defined LWSP_HOST_MODULE   /* the host module reads the runtime's flag (host/link.c) */
extern int *lwsp_tracing_at;
#define lwsp_tracing __atomic_load_n(lwsp_tracing_at, __ATOMIC_RELAXED)
#else
/* (read by any thread without a lock, written by tracing's start and stop: atomic both ways) */
extern int lwsp_tracing_flag;
#define lwsp_tracing __atomic_load_n(&lwsp_tracing_flag, __ATOMIC_RELAXED)
#endif
void lwsp_trace_init(void);   /* before any record: the trace's lock */
/* lwsp's own WSPStartup (lwsp.c); the host module tells Lua providers by it (lwsp_runtime_link.startup) */
LWSP_EXPORT int WSPAPI WSPStartup(WORD wVersionRequested, LPWSPDATA lpWSPData, LPWSAPROTOCOL_INFOW lpProtocolInfo,
                                  WSPUPCALLTABLE UpcallTable, LPWSPPROC_TABLE lpProcTable);
#define LWSP_TRACE_TEXT 96   /* room for a record's arguments or results, summarised */
/* Records a call; with args NULL the record waits (and so do the records after it,
 * in the file) until lwsp_trace_args gives its arguments. Returns its number. */
unsigned long lwsp_trace_enter(const char *from, const char *to, const char *name, SOCKET s, const char *args);
void lwsp_trace_args(unsigned long seq, const char *args, SOCKET s);   /* s: 0 keeps the record's */
void lwsp_trace_leave(const char *from, const char *to, const char *name, SOCKET s, int error, const char *res);
void lwsp_trace_values(lua_State *L, int first, int last, char *buf, size_t n);
/* A protocol info as the trace shows one: "{entry 1006, type 1, protocol 6, chain 1005 1001}". */
void lwsp_trace_protocol_info(char *buf, size_t n, const WSAPROTOCOL_INFOW *pi);
/* WSPSelect's arguments as passed: each set's handles ("{268, 272}", NULL as
 * "nil") and the timeout in seconds ("0.02", NULL as "nil"). */
void lwsp_trace_fdsets(char *buf, size_t n, const wsp_fd_set *r, const wsp_fd_set *w, const wsp_fd_set *e,
                       const wsp_timeval *tv);
void lwsp_trace_event(const char *kind, const char *from, const char *to, const char *name, SOCKET s, int error);
void lwsp_trace_event_args(const char *kind, const char *from, const char *to, const char *name, SOCKET s, int error,
                           const char *args);
const char *lwsp_trace_party(void);
void lwsp_trace_app_thread(void);   /* this thread is the application's */
void lwsp_trace_app_api(int on);    /* an application call (not an upcall) runs upcall code */
/* The party this thread acts as at its current call depth (a provider's
 * service thread, resumed handlers): set, and restored. */
typedef struct { const char *party; int depth; } lwsp_trace_self_t;
lwsp_trace_self_t lwsp_trace_self(const char *party);
void lwsp_trace_restore(lwsp_trace_self_t prev);
void lwsp_trace_wrap(lua_State *L, const char *const *names);
int lwsp_trace_open(lua_State *L);
int lwsp_wsc_open(lua_State *L);              /* wsc.c: pushes lwsp.wsc */
/* A catalog entry from ws2_32's own catalog (WSCEnumProtocols); 0 if unknown
 * or not on Windows. */
int lwsp_wsc_catalog_info(DWORD id, WSAPROTOCOL_INFOW *info);
/* lower.c: a catalog entry of the host that supplied up, from the
 * WSCEnumProtocols its module exports; 0 if unknown (who: the log line's
 * name, NULL for none). */
int rt_catalog_info(const WSPUPCALLTABLE *up, const char *who, DWORD id, WSAPROTOCOL_INFOW *info);
/* 0, or the error an injected fault makes this call fail with: in the
 * runtime a hook (module.c) that the host module's fault injection sets
 * through the link below, in the host module the injection itself
 * (testkit/fault.c). */
int lwsp_fault(const char *point);
extern volatile int lwsp_faults_armed;

/* module.c: what the host module takes from the runtime of its process (a
 * light userdata, lwsp._runtime, in an application's lwsp module), so that
 * the process has one log, one trace, one fault hook and one instance table. */
#define LWSP_LINK_VERSION 1
typedef struct lwsp_runtime_link {
  int version;
  int *tracing;
  volatile int *faults_armed;
  int (**fault_hook)(const char *point);
  void (*vlog)(const char *who, const char *fmt, va_list ap);
  unsigned long (*trace_enter)(const char *from, const char *to, const char *name, SOCKET s, const char *args);
  void (*trace_leave)(const char *from, const char *to, const char *name, SOCKET s, int error, const char *res);
  void (*trace_event)(const char *kind, const char *from, const char *to, const char *name, SOCKET s, int error);
  void (*trace_event_args)(const char *kind, const char *from, const char *to, const char *name, SOCKET s, int error,
                           const char *args);
  const char *(*trace_party)(void);
  void (*trace_values)(lua_State *L, int first, int last, char *buf, size_t n);
  void (*trace_wrap)(lua_State *L, const char *const *names);
  void (*trace_app_thread)(void);
  void (*trace_app_api)(int on);
  LPWSPSTARTUP startup;              /* the runtime's WSPStartup: a provider DLL that is this runtime */
  const char *const *spi_names;
  lwsp_inst *(*inst_of)(lua_State *L);
  lwsp_inst *instances;              /* LWSP_MAX_INSTANCES of them */
  lwsp_sock *(*sock_at)(lwsp_inst *I, uint32_t idx);
} lwsp_runtime_link;
void lwsp_push_link(lua_State *L);
/* lwsp.c: the runtime's process-wide state (locks, instance slots, the
 * trace's lock, the budget's watchdog), made once. */
void rt_global_init(void);
/* calls.c: whether this thread is inside one of I's calls now */
int rt_inside(lwsp_inst *I);

/* lower.c: the layer below a layered provider */
int rt_lower_open(lua_State *L, lwsp_inst *I);    /* lwsp.lower into the lwsp table */
int rt_lower_poll(lwsp_inst *I, long max_ms);     /* service thread: 1 if it polled */
void rt_lower_close_all(lwsp_inst *I);            /* last WSPCleanup: lower cleanups */
void rt_lower_inherited(lwsp_inst *I);            /* WSPStartup: which handlers are inherited */
/* The socket's s.low and s.lh when they name a live layer below of this
 * instance (raw fields; nothing runs). */
int rt_lower_resolve(lwsp_inst *I, lwsp_sock *so, struct lwsp_lower **low, SOCKET *lh);
/* Inherited calls, made down with the provider lock released: 0 or SOCKET_ERROR with *err. */
int rt_down_getsockopt(rt_call *c, int level, int name, char *val, LPINT len, LPINT err);
int rt_down_setsockopt(rt_call *c, int level, int name, const char *val, int len, LPINT err);
int rt_down_name(rt_call *c, int peer, struct sockaddr *name, LPINT namelen, LPINT err);
int rt_down_send(rt_call *c, LPWSABUF b, DWORD n, LPDWORD sent, DWORD flags, const struct sockaddr *to, int tolen,
                 LPINT err);
int rt_down_recv(rt_call *c, LPWSABUF b, DWORD n, LPDWORD got, LPDWORD flags, struct sockaddr *from, LPINT fromlen,
                 LPINT err);
/* WSPSelect below on c->lh for reading (dir 0) or writing (1), at most ms: >0 ready (or failed), 0 not yet. */
int rt_down_select(rt_call *c, int dir, long ms, LPINT err);
#endif
