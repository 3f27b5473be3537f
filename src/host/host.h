/*
 * host.h - lwsp's own ws2_32: the catalog, loaded providers, socket handles,
 * events, threads and APCs, windows and messages, completion ports.  host.c
 * keeps the state and implements the upcall table; api.c is the Lua face
 * (lwsp.host), the application-facing calls.
 *
 * One host lock guards all of it; the host never calls into a provider while
 * holding it, so a provider may call any upcall from any handler.  One
 * condition variable wakes every waiter (events, APCs, ports, messages).
 */
#ifndef LWSP_HOST_H
#define LWSP_HOST_H
#include "runtime.h"

#define HOST_FIRST_CATALOG_ID 1001

/* A call from the host into a provider's proc table.  A Lua provider records
 * its own calls; for any other provider the host records the call and its
 * return here (arguments from the application's Lua call, when L is given).
 * HCALL is for entries that fail with SOCKET_ERROR or INVALID_SOCKET,
 * HCALL_BOOL for those that fail with FALSE. */
#define HCALL_(L, p, fn, s, errp, failed, ...) __extension__({ \
    hprov *hp_ = (p); \
    int tr_ = lwsp_tracing && hp_->foreign; \
    const char *hc_ = tr_ ? host_trace_call((L), hp_, #fn, (SOCKET)(s)) : NULL; \
    __typeof__(hp_->procs.lp##fn(__VA_ARGS__)) hr_ = hp_->procs.lp##fn(__VA_ARGS__); \
    if (tr_) host_trace_return(hp_, hc_, #fn, (SOCKET)(s), (failed) ? *(errp) : 0, (unsigned long long)hr_); \
    else host_trace_bytes(NULL);   /* (a byte count set for this call must not outlive it) */ \
    hr_; })
#define HCALL(L, p, fn, s, errp, ...) HCALL_(L, p, fn, s, errp, hr_ == (__typeof__(hr_))-1, __VA_ARGS__)
#define HCALL_BOOL(L, p, fn, s, errp, ...) HCALL_(L, p, fn, s, errp, !hr_, __VA_ARGS__)

typedef struct hentry {
  WSAPROTOCOL_INFOW info;
  char path[1024];
} hentry;

typedef struct hprov {
  GUID id;
  void *lib;
  WSPPROC_TABLE procs;
  WSPDATA data;
  int startups;        /* WSPStartups this host made that are not cleaned up */
  int loaded;          /* the ws2_32-style load (once per GUID) */
  int foreign;         /* not served by lwsp: the host traces the calls into it */
  char name[39];       /* its GUID, for the trace */
  int pins;            /* application threads (host.spawn) that may still call it */
  int gone;            /* its last startup was cleaned up while pinned (gone_lib waits for the last unpin) */
  void *gone_lib;      /* the library to unload when the last pin goes */
  struct hprov *next;
} hprov;

typedef struct hport hport;

typedef struct hsock {
  SOCKET h;
  DWORD catalog;
  DWORD_PTR ctx;
  int ifs;
  int closed;          /* WSACleanup closed it: the provider gives the handle back when its last completion is out */
  hprov *prov;
  hport *port;
  ULONG_PTR key;
} hsock;

typedef struct hapc {
  LPWSAUSERAPC fn;
  DWORD_PTR ctx;
  struct hapc *next;
} hapc;

typedef struct hthread {
  int refs;
  unsigned long os_id;
  HANDLE handle;       /* what the host passes as lpThreadId: on Windows a real handle of the thread */
  hapc *head, *tail;
  LPBLOCKINGCALLBACK hook;
  DWORD_PTR hook_ctx;
  long hook_calls;
} hthread;

typedef struct hpacket {
  DWORD bytes;
  ULONG_PTR key;
  LPWSAOVERLAPPED ov;
  struct hpacket *next;
} hpacket;
#ifdef _WIN32
struct hport { HANDLE iocp; };
#else
struct hport { hpacket *head, *tail; long count; };
#endif

/* An application's WSAOVERLAPPED (lwsp.host.overlapped), with room for what
 * an overlapped receive delivers. */
typedef struct host_ov {
  WSAOVERLAPPED ov;               /* first: its address is the overlapped pointer */
  char *buf;
  size_t cap;
  SOCKADDR_STORAGE from;
  INT fromlen;
  DWORD flags;
  int posted;                     /* an operation the host posted with it reported WSA_IO_PENDING */
} host_ov;
/* The structure behind an overlapped userdata; raises if it was freed (its
 * __gc called by hand). */
host_ov *host_check_ov(lua_State *L, int idx);
/* Whether a pending operation that the host posted may still use h (its
 * buffer or the structure): such a structure is never freed or re-posted. */
int host_ov_busy(host_ov *h);
/* Records the outcome of an overlapped call made with h: pending or not. */
void host_ov_posted(host_ov *h, int rc, int err);

/* api.c: a host call's failure (nil, "WSAENAME: text", code; 0 counts as
 * WSASYSCALLFAILURE) and its success (true). */
int host_fail(lua_State *L, int code);
int host_ok(lua_State *L);
/* catalog.c: install, remove, order, catalog, load, startup, cleanup and the
 * provider objects, into the host table on top. */
void host_catalog_open(lua_State *L);

/* Argument checks of the host's Lua calls (api.c).  Each raises a Lua
 * argument error naming the range: a value is never truncated into a C type. */
lua_Integer host_arg_range(lua_State *L, int idx, lua_Integer lo, lua_Integer hi, const char *what);
lua_Integer host_opt_range(lua_State *L, int idx, lua_Integer def, lua_Integer lo, lua_Integer hi, const char *what);
#define HOST_DWORD(L, i, what) ((DWORD)host_arg_range((L), (i), 0, 0xffffffffLL, (what)))
#define HOST_OPT_DWORD(L, i, d, what) ((DWORD)host_opt_range((L), (i), (d), 0, 0xffffffffLL, (what)))
#define HOST_INT(L, i, what) ((int)host_arg_range((L), (i), INT32_MIN, INT32_MAX, (what)))
#define HOST_OPT_INT(L, i, d, what) ((int)host_opt_range((L), (i), (d), INT32_MIN, INT32_MAX, (what)))
/* The longest timeout a host call takes, in milliseconds (about 24 days). */
#define HOST_MAX_MS 0x7fffffffL
/* A timeout in milliseconds at idx, 0..HOST_MAX_MS; nil or none gives def
 * (-1: for ever, for the calls that allow it). */
long host_arg_ms(lua_State *L, int idx, long def);

typedef struct hmsg { UINT msg; WPARAM wparam; LPARAM lparam; struct hmsg *next; } hmsg;

/* link.c: the runtime of this process (its log, trace, fault hook and
 * instances), set once by luaopen_lwsp_host before anything else runs. */
extern const lwsp_runtime_link *host_rt;
void host_link(const lwsp_runtime_link *rt);

extern lwsp_mutex host_lock;
extern lwsp_cond host_cond;
extern WSPUPCALLTABLE host_upcalls;

void host_init(void);
hentry *host_entry(DWORD catalog);                 /* under host_lock */
hentry *host_entry_by_guid(const GUID *g);         /* under host_lock */
hsock *host_sock(SOCKET s);                        /* under host_lock */
int host_claim_socket(lua_State *L, hprov *p, SOCKET s);
void host_class(lua_State *L, const char *mt, lua_CFunction gc, const luaL_Reg *methods);
/* option k of the options table at idx (none or nil: def), an integer in lo..hi, or an argument error */
lua_Integer host_opt_int(lua_State *L, int idx, const char *k, lua_Integer def, lua_Integer lo, lua_Integer hi);   /* WSPSocket's result registered by p, or closed */
hthread *host_current_thread(void);                /* creates on first use */
/* Loads the provider of a catalog entry the way ws2_32 does (once per GUID). */
hprov *host_load(DWORD catalog, LPINT err);
/* One more WSPStartup of the provider of a catalog entry (what an LSP does for
 * the layer below); each must be matched by host_provider_cleanup. */
hprov *host_provider_startup(DWORD catalog, LPINT err);
int host_provider_cleanup(hprov *p, LPINT err);
/* ---- kernel objects (hostk.c): lwsp's own on POSIX, the real ones on Windows */
WSAEVENT hk_event_create(void);                   /* manual reset; WSA_INVALID_EVENT on failure */
int hk_event_set(WSAEVENT h, int value);          /* sets (1) or resets (0); 0: not an event */
int hk_event_close(WSAEVENT h);                   /* 0: not an event */
int hk_event_state(WSAEVENT h);                   /* 1 signalled, 0 not, -1 not an event */
int hk_thread_register(hthread *t);               /* a new thread record; 0 when out of memory */
void hk_thread_release(hthread *t);               /* under host_lock: drops one reference */
int hk_thread_open(hthread *t, LPWSATHREADID tid); /* WPUOpenCurrentThread: 0 or an error */
int hk_thread_close(LPWSATHREADID tid);           /* 0 or WSAEINVAL */
int hk_queue_apc(LPWSATHREADID tid, LPWSAUSERAPC fn, DWORD_PTR ctx); /* 0 or an error */
/* "event", "port", "thread", "window" (or "other" on Windows), NULL when h is
 * no object: on Windows what the kernel says, elsewhere lwsp's own tables. */
const char *hk_object_type(uintptr_t h);
int hk_post_message(uintptr_t hwnd, UINT msg, WPARAM wp, LPARAM lp); /* 0: no such window */
#define HK_BAD_HANDLE (-1)
#define HK_WRONG_THREAD (-2)
/* Takes a window's messages, waiting up to ms for the first: 0, HK_BAD_HANDLE,
 * or HK_WRONG_THREAD (Windows: not the thread that created the window). */
int hk_take_messages(uintptr_t hwnd, long ms, hmsg **list);
/* Runs the APCs queued to this thread; returns how many ran.  Call unlocked. */
int host_run_apcs(void);
/* Waits on events (wait_all or any) for ms (-1: forever).  Returns the index of
 * the signalled event (0-based; 0 for wait_all), -1 on timeout, -2 when
 * alertable and APCs ran, -3 on a bad handle.  Call unlocked. */
int host_wait(const uintptr_t *events, int n, int wait_all, long ms, int alertable);
hport *host_port(uintptr_t h);                    /* under host_lock; NULL if unknown */
uintptr_t host_new_port(void);
uintptr_t host_new_window(void);
int host_close_object(uintptr_t h);
int host_dequeue(uintptr_t port, long ms, hpacket *out);  /* call unlocked; 1 got, 0 timeout, -1 bad port */
void host_post(hport *p, DWORD bytes, ULONG_PTR key, LPWSAOVERLAPPED ov); /* under host_lock */
void host_forget_port(hport *p);                  /* under host_lock: sockets associated with p lose it */
/* WSACleanup: close_sockets 0 leaves them for the providers' own WSPCleanup. */
int host_cleanup_all(int close_sockets);
/* After WSPCloseSocket: drops an IFS handle's record.  Returns 0 when a
 * non-IFS handle is still registered (the provider leaked it), else 1. */
int host_forget_ifs(SOCKET s);
/* The loaded provider behind an application's handle, or NULL with *err set
 * (WSAENOTSOCK, or WSANOTINITIALISED once its provider is cleaned up). */
hprov *host_prov_of(SOCKET s, int *err);
/* The same, pinned: it stays in memory (its library loaded) through a
 * cleanup until host_prov_unpin, so a thread of the application may still be
 * in a call into it. */
hprov *host_prov_pin(SOCKET s, int *err);
/* Keeps memory a provider may still write to (a structure abandoned while its
 * operation is pending) for the life of the process, reachable, never freed. */
void host_park(void *p);
void host_prov_unpin(hprov *p);
/* The calling thread's WSATHREADID, as ws2_32 passes it to data calls. */
WSATHREADID *host_this_thread(WSATHREADID *tid);
/* WPUCompleteOverlappedRequest: records status and bytes, signals the event
 * and posts a packet to the socket's port (exports.c exports it). */
int WSPAPI host_complete(SOCKET s, LPWSAOVERLAPPED ov, DWORD error, DWORD bytes, LPINT err);
/* Catalog (under host_lock) */
DWORD host_next_catalog_id(void);
int host_catalog_add(const WSAPROTOCOL_INFOW *info, const char *path);
int host_catalog_remove(DWORD catalog);
int host_catalog_order(const DWORD *ids, size_t n);     /* under host_lock: 0 or WSAEINVAL */
size_t host_catalog_count(void);
hentry *host_catalog_at(size_t i);
/* Iterates live sockets: fn returns nonzero to stop.  Under host_lock. */
void host_each_sock(int (*fn)(hsock *, void *), void *ud);
struct hprov;
const char *host_trace_call(lua_State *L, struct hprov *p, const char *name, SOCKET s);
void host_trace_return(struct hprov *p, const char *caller, const char *name, SOCKET s, int error, unsigned long long ret);
/* The byte count a traced call into a C provider reports (read after it returns) */
void host_trace_bytes(const DWORD *bytes);

#endif
