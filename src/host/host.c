/*
 * host.c - lwsp's own ws2_32: state, provider loading and the upcall table.
 * See host.h for the locking rules.
 */
#include "host.h"
#ifndef _WIN32
#  include <dlfcn.h>
#endif
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

lwsp_mutex host_lock;
lwsp_cond host_cond;

static hentry *entries;
static size_t nentries;
static DWORD next_catalog = HOST_FIRST_CATALOG_ID;
static hprov *providers;
static lwsp_map socks;
static SOCKET next_handle = 0x100;

DWORD host_next_catalog_id(void) { return next_catalog++; }

#ifdef _WIN32
static INIT_ONCE once = INIT_ONCE_STATIC_INIT;
static DWORD tls_key = TLS_OUT_OF_INDEXES;
static BOOL CALLBACK init_cb(PINIT_ONCE o, PVOID p, PVOID *c) {
  (void)o; (void)p; (void)c;
  lwsp_mutex_init(&host_lock);
  lwsp_cond_init(&host_cond);
  tls_key = TlsAlloc();
  return TRUE;
}
void host_init(void) { InitOnceExecuteOnce(&once, init_cb, NULL, NULL); }
static hthread *tls_get(void) { return (hthread *)TlsGetValue(tls_key); }
static void tls_set(hthread *t) { TlsSetValue(tls_key, t); }
#else
static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_key_t tls_key;
static void tls_dtor(void *p) {
  lwsp_mutex_lock(&host_lock);
  hk_thread_release((hthread *)p);
  lwsp_mutex_unlock(&host_lock);
}
static void init_cb(void) {
  lwsp_mutex_init(&host_lock);
  lwsp_cond_init(&host_cond);
  pthread_key_create(&tls_key, tls_dtor);
}
void host_init(void) { pthread_once(&once, init_cb); }
static hthread *tls_get(void) { return (hthread *)pthread_getspecific(tls_key); }
static void tls_set(hthread *t) { pthread_setspecific(tls_key, t); }
#endif

/* ---- lookups (under host_lock) --------------------------------------------------- */
hentry *host_entry(DWORD catalog) {
  for (size_t i = 0; i < nentries; i++)
    if (entries[i].info.dwCatalogEntryId == catalog) return &entries[i];
  return NULL;
}
hentry *host_entry_by_guid(const GUID *g) {
  for (size_t i = 0; i < nentries; i++)
    if (lwsp_guid_eq(&entries[i].info.ProviderId, g)) return &entries[i];
  return NULL;
}
hsock *host_sock(SOCKET s) { return (hsock *)lwsp_map_get(&socks, s); }
void host_each_sock(int (*fn)(hsock *, void *), void *ud) {
  for (size_t i = 0; i < socks.cap; i++) {
    hsock *hs = socks.slots[i].val;
    if (hs && lwsp_map_get(&socks, socks.slots[i].key) == hs && fn(hs, ud)) return;
  }
}
static int unport(hsock *hs, void *p) { if (hs->port == p) hs->port = NULL; return 0; }
void host_forget_port(hport *p) { host_each_sock(unport, p); }
static int unprov(hsock *hs, void *p) { if (hs->prov == p) hs->prov = NULL; return 0; }
typedef struct { hprov *p; SOCKET found; } find_ud;
static int of_prov(hsock *hs, void *ud) {
  find_ud *f = ud;
  if (hs->prov != f->p || hs->closed) return 0;
  f->found = hs->h;
  return 1;
}
/* A provider's record outlives its last WSPCleanup (retired: lib NULL) and is
 * taken again by its next load, so a thread that looked it up just before
 * (an application call on its way in) never reads freed memory. */
static hprov *record_by_guid(const GUID *g) {
  for (hprov *p = providers; p; p = p->next)
    if (lwsp_guid_eq(&p->id, g)) return p;
  return NULL;
}
static hprov *prov_by_guid(const GUID *g) {
  hprov *p = record_by_guid(g);
  return p && p->lib ? p : NULL;
}

/* ---- catalog (called from api.c under host_lock) ------------------------------ */
int host_catalog_add(const WSAPROTOCOL_INFOW *info, const char *path) {
  hentry *ne = realloc(entries, (nentries + 1) * sizeof *ne);
  if (!ne) return 0;
  entries = ne;
  memset(&entries[nentries], 0, sizeof entries[nentries]);
  entries[nentries].info = *info;
  snprintf(entries[nentries].path, sizeof entries[nentries].path, "%s", path);
  nentries++;
  return 1;
}
int host_catalog_remove(DWORD catalog) {
  for (size_t i = 0; i < nentries; i++)
    if (entries[i].info.dwCatalogEntryId == catalog) {
      memmove(&entries[i], &entries[i + 1], (nentries - i - 1) * sizeof *entries);
      nentries--;
      return 1;
    }
  return 0;
}
/* WSCWriteProviderOrder: ids must name every entry once.  0 with WSAEINVAL
 * otherwise, leaving the order as it was. */
int host_catalog_order(const DWORD *ids, size_t n) {
  hentry *sorted;
  if (n != nentries) return WSAEINVAL;
  if (!(sorted = malloc((n ? n : 1) * sizeof *sorted))) return WSAENOBUFS;
  for (size_t i = 0; i < n; i++) {
    hentry *e = host_entry(ids[i]);
    for (size_t k = 0; k < i && e; k++) if (ids[k] == ids[i]) e = NULL;
    if (!e) { free(sorted); return WSAEINVAL; }
    sorted[i] = *e;
  }
  memcpy(entries, sorted, n * sizeof *sorted);
  free(sorted);
  return 0;
}
size_t host_catalog_count(void) { return nentries; }
hentry *host_catalog_at(size_t i) { return i < nentries ? &entries[i] : NULL; }

/* ---- threads and APCs --------------------------------------------------------------- */
hthread *host_current_thread(void) {
  hthread *t;
  host_init();
  if ((t = tls_get()) != NULL) return t;
  t = calloc(1, sizeof *t);
  if (!t) return NULL;
  t->refs = 1; /* the thread's own reference, dropped when it exits */
  t->os_id = lwsp_thread_id();
  if (!hk_thread_register(t)) { free(t); return NULL; }
  tls_set(t);
  return t;
}

/* ---- the upcall table ------------------------------------------------------------------- */
#define ERRP INT errp_; if (!err) err = &errp_

/* Who makes an upcall about socket s: the party running, or, on a thread of a
 * provider's own (a worker completing I/O), the provider that owns s. */
static const char *up_party(SOCKET s) {
  const char *p = lwsp_trace_party();
  if (s && !strcmp(p, "provider thread")) {
    hsock *hs;
    lwsp_mutex_lock(&host_lock);
    hs = host_sock(s);
    if (hs && hs->prov) p = hs->prov->name;
    lwsp_mutex_unlock(&host_lock);
  }
  return p;
}

static BOOL WSPAPI up_close_event(WSAEVENT h, LPINT err) {
  ERRP;
  if (lwsp_tracing) lwsp_trace_event("upcall", lwsp_trace_party(), "host", "WPUCloseEvent", 0, 0);
  if ((*err = lwsp_fault("WPUCloseEvent")) != 0) return FALSE;
  if (!hk_event_close(h)) { *err = WSA_INVALID_HANDLE; return FALSE; }
  return TRUE;
}

static int WSPAPI up_close_socket_handle(SOCKET s, LPINT err) {
  hsock *hs;
  ERRP;
  if (lwsp_tracing) lwsp_trace_event("upcall", up_party(s), "host", "WPUCloseSocketHandle", s, 0);
  lwsp_mutex_lock(&host_lock);
  hs = lwsp_map_del(&socks, s);
  lwsp_mutex_unlock(&host_lock);
  if (!hs) { *err = WSAENOTSOCK; return SOCKET_ERROR; }
  free(hs);
  return 0;
}

static WSAEVENT create_event_do(LPINT err) {
  WSAEVENT h;
  ERRP;
  if ((*err = lwsp_fault("WPUCreateEvent")) != 0) return WSA_INVALID_EVENT;
  host_init();
  if ((h = hk_event_create()) == WSA_INVALID_EVENT) *err = WSA_NOT_ENOUGH_MEMORY;
  return h;
}

static SOCKET register_sock(DWORD catalog, SOCKET h, DWORD_PTR ctx, int ifs, LPINT err) {
  hentry *e;
  hsock *hs = calloc(1, sizeof *hs);
  if (!hs) { *err = WSAENOBUFS; return INVALID_SOCKET; }
  lwsp_mutex_lock(&host_lock);
  if (!(e = host_entry(catalog))) {
    lwsp_mutex_unlock(&host_lock);
    free(hs);
    *err = WSAEINVALIDPROVIDER;
    return INVALID_SOCKET;
  }
  if (ifs && (h == 0 || h == INVALID_SOCKET || host_sock(h))) {
    lwsp_mutex_unlock(&host_lock);
    free(hs);
    *err = WSAEINVAL;
    return INVALID_SOCKET;
  }
  if (!ifs) h = (next_handle += 4);
  hs->h = h;
  hs->catalog = catalog;
  hs->ctx = ctx;
  hs->ifs = ifs;
  hs->prov = prov_by_guid(&e->info.ProviderId);
  if (!lwsp_map_put(&socks, h, hs)) { lwsp_mutex_unlock(&host_lock); free(hs); *err = WSAENOBUFS; return INVALID_SOCKET; }
  lwsp_mutex_unlock(&host_lock);
  return h;
}

/* The provider serving s, pinned (host_prov_unpin) when pin is set. */
static hprov *prov_lookup(SOCKET s, int *err, int pin) {
  hsock *hs;
  hprov *p = NULL;
  host_init();
  lwsp_mutex_lock(&host_lock);
  hs = host_sock(s);
  if (!hs) *err = WSAENOTSOCK;
  else if (!(p = hs->prov)) *err = WSANOTINITIALISED;
  else if (pin) p->pins++;
  lwsp_mutex_unlock(&host_lock);
  return p;
}

hprov *host_prov_of(SOCKET s, int *err) { return prov_lookup(s, err, 0); }
hprov *host_prov_pin(SOCKET s, int *err) { return prov_lookup(s, err, 1); }

void host_park(void *p) {
  static void **parked;
  static size_t n, cap;
  if (!p) return;
  lwsp_mutex_lock(&host_lock);
  if (n == cap) {
    void **more = realloc(parked, (cap ? cap * 2 : 16) * sizeof *more);
    if (more) { parked = more; cap = cap ? cap * 2 : 16; }
  }
  if (n < cap) parked[n++] = p;
  lwsp_mutex_unlock(&host_lock);
}

/* Provider records are kept (retired) once made; a pinned one whose last
 * startup was cleaned up keeps its library loaded until the last unpin. */
void host_prov_unpin(hprov *p) {
  void *lib = NULL;
  lwsp_mutex_lock(&host_lock);
  if (--p->pins == 0 && p->gone) {
    lib = p->gone_lib;
    p->gone_lib = NULL;
    p->gone = 0;
  }
  lwsp_mutex_unlock(&host_lock);
  if (lib) lwsp_dlclose(lib);
}

WSATHREADID *host_this_thread(WSATHREADID *tid) {
  hthread *t = host_current_thread();
  tid->ThreadHandle = t ? t->handle : NULL;
  tid->Reserved = t ? (DWORD_PTR)t->os_id : 0;
  return tid;
}

int host_forget_ifs(SOCKET s) {
  hsock *hs;
  int clean = 1;
  lwsp_mutex_lock(&host_lock);
  hs = host_sock(s);
  if (hs && hs->ifs) { lwsp_map_del(&socks, s); free(hs); }
  else if (hs) clean = 0;
  lwsp_mutex_unlock(&host_lock);
  return clean;
}

static SOCKET WSPAPI up_create_socket_handle(DWORD catalog, DWORD_PTR ctx, LPINT err) {
  SOCKET h = INVALID_SOCKET;
  ERRP;
  if ((*err = lwsp_fault("WPUCreateSocketHandle")) == 0) h = register_sock(catalog, 0, ctx, 0, err);
  if (lwsp_tracing) {   /* recorded with the handle it made */
    char text[64];
    snprintf(text, sizeof text, "catalog %lu, context 0x%llx", (unsigned long)catalog, (unsigned long long)ctx);
    lwsp_trace_event_args("upcall", lwsp_trace_party(), "host", "WPUCreateSocketHandle", h == INVALID_SOCKET ? 0 : h,
                          h == INVALID_SOCKET ? *err : 0, text);
  }
  return h;
}

static int WSPAPI up_fd_isset(SOCKET s, wsp_fd_set *set) {
  int r = set ? lwsp_fd_isset(s, set) : 0;
  if (lwsp_tracing) {   /* recorded with the set it searched (its first handles) and its answer */
    char text[LWSP_TRACE_TEXT];
    size_t used = (size_t)snprintf(text, sizeof text, "{");
    unsigned n = set ? set->fd_count : 0, i;
    for (i = 0; i < n && i < WSP_FD_SETSIZE && used + 24 < sizeof text - 16; i++)
      used += (size_t)snprintf(text + used, sizeof text - used, "%s%llu", i ? ", " : "",
                               (unsigned long long)set->fd_array[i]);
    snprintf(text + used, sizeof text - used, "%s}, %d", i < n ? ", ..." : "", r != 0);
    lwsp_trace_event_args("upcall", lwsp_trace_party(), "host", "WPUFDIsSet", s, 0, set ? text : "NULL, 0");
  }
  return r;
}

static int get_provider_path_do(LPGUID id, WCHAR *path, LPINT len, LPINT err) {
  hentry *e;
  char p[1024];
  WCHAR w[1024];
  size_t n;
  ERRP;
  if (!id || !len) { *err = WSAEFAULT; return SOCKET_ERROR; }
  lwsp_mutex_lock(&host_lock);
  e = host_entry_by_guid(id);
  if (e) snprintf(p, sizeof p, "%s", e->path);
  lwsp_mutex_unlock(&host_lock);
  if (!e) { *err = WSAEINVAL; return SOCKET_ERROR; }
  n = lwsp_utf8_to_utf16(p, strlen(p), w, 1023);
  if (!path || *len < (INT)n + 1) { *len = (INT)n + 1; *err = WSAEFAULT; return SOCKET_ERROR; }
  memcpy(path, w, n * sizeof(WCHAR));
  path[n] = 0;
  *len = (INT)n + 1;
  return 0;
}

static SOCKET WSPAPI up_modify_ifs_handle(DWORD catalog, SOCKET proposed, LPINT err) {
  ERRP;
  if (lwsp_tracing) lwsp_trace_event("upcall", lwsp_trace_party(), "host", "WPUModifyIFSHandle", proposed, 0);
  if ((*err = lwsp_fault("WPUModifyIFSHandle")) != 0) return INVALID_SOCKET;
  return register_sock(catalog, proposed, 0, 1, err);
}

static BOOL WSPAPI up_post_message(HWND hwnd, UINT msg, WPARAM wp, LPARAM lp) {
  if (lwsp_tracing) lwsp_trace_event("upcall", up_party((SOCKET)wp), "host", "WPUPostMessage", (SOCKET)wp, 0);
  if (lwsp_fault("WPUPostMessage")) return FALSE;
  if (!hk_post_message((uintptr_t)hwnd, msg, wp, lp)) return FALSE;
  if (lwsp_tracing) {
    char text[64];
    snprintf(text, sizeof text, "msg 0x%x, event 0x%x, error %u", msg, (unsigned)(lp & 0xffff), (unsigned)((lp >> 16) & 0xffff));
    lwsp_trace_event_args("complete", "host", "application", "message posted", (SOCKET)wp, (int)((lp >> 16) & 0xffff), text);
  }
  return TRUE;
}

static int query_blocking_callback_do(DWORD catalog, LPBLOCKINGCALLBACK *fn, PDWORD_PTR ctx, LPINT err) {
  hthread *t;
  int known;
  ERRP;
  if (!fn || !ctx) { *err = WSAEFAULT; return SOCKET_ERROR; }
  lwsp_mutex_lock(&host_lock);
  known = host_entry(catalog) != NULL;
  lwsp_mutex_unlock(&host_lock);
  if (!known) { *err = WSAEINVAL; return SOCKET_ERROR; }
  t = host_current_thread();
  *fn = t ? t->hook : NULL;
  *ctx = t ? t->hook_ctx : 0;
  return 0;
}

static int query_context_do(SOCKET s, PDWORD_PTR ctx, LPINT err) {
  hsock *hs;
  int rc = 0;
  ERRP;
  if ((*err = lwsp_fault("WPUQuerySocketHandleContext")) != 0) return SOCKET_ERROR;
  if (!ctx) { *err = WSAEFAULT; return SOCKET_ERROR; }
  lwsp_mutex_lock(&host_lock);
  hs = host_sock(s);
  if (!hs) { *err = WSAENOTSOCK; rc = SOCKET_ERROR; }
  else if (hs->ifs) { *err = WSAEINVAL; rc = SOCKET_ERROR; }
  else *ctx = hs->ctx;
  lwsp_mutex_unlock(&host_lock);
  return rc;
}

static int WSPAPI up_queue_apc(LPWSATHREADID tid, LPWSAUSERAPC fn, DWORD_PTR ctx, LPINT err) {
  ERRP;
  if (lwsp_tracing) lwsp_trace_event("upcall", lwsp_trace_party(), "host", "WPUQueueApc", 0, 0);
  if ((*err = lwsp_fault("WPUQueueApc")) != 0) return SOCKET_ERROR;
  if (!tid || !fn) { *err = WSAEFAULT; return SOCKET_ERROR; }
  if ((*err = hk_queue_apc(tid, fn, ctx)) != 0) return SOCKET_ERROR;
  return 0;
}

static BOOL event_op(WSAEVENT h, int value, LPINT err) {
  ERRP;
  if (lwsp_tracing) lwsp_trace_event("upcall", lwsp_trace_party(), "host", value ? "WPUSetEvent" : "WPUResetEvent", 0, 0);
  if ((*err = lwsp_fault(value ? "WPUSetEvent" : "WPUResetEvent")) != 0) return FALSE;
  if (!hk_event_set(h, value)) { *err = WSA_INVALID_HANDLE; return FALSE; }
  return TRUE;
}
static BOOL WSPAPI up_reset_event(WSAEVENT h, LPINT err) { return event_op(h, 0, err); }
static BOOL WSPAPI up_set_event(WSAEVENT h, LPINT err) { return event_op(h, 1, err); }

static int open_current_thread_do(LPWSATHREADID tid, LPINT err) {
  hthread *t;
  ERRP;
  if ((*err = lwsp_fault("WPUOpenCurrentThread")) != 0) return SOCKET_ERROR;
  if (!tid) { *err = WSAEFAULT; return SOCKET_ERROR; }
  if (!(t = host_current_thread())) { *err = WSAENOBUFS; return SOCKET_ERROR; }
  if ((*err = hk_thread_open(t, tid)) != 0) return SOCKET_ERROR;
  return 0;
}

static int close_thread_do(LPWSATHREADID tid, LPINT err) {
  ERRP;
  if (!tid) { *err = WSAEFAULT; return SOCKET_ERROR; }
  if ((*err = hk_thread_close(tid)) != 0) return SOCKET_ERROR;
  tid->ThreadHandle = NULL;
  return 0;
}

/* ---- the upcalls lwsp traces by wrapping them: each one record, with its result */
#define UPCALL_TRACE(name, sock, rc, failed, ...) do { \
    if (lwsp_tracing) { \
      char text_[96]; \
      snprintf(text_, sizeof text_, __VA_ARGS__); \
      lwsp_trace_event_args("upcall", up_party(sock), "host", name, (sock), (failed) ? *err : 0, text_); \
    } \
  } while (0)

static WSAEVENT WSPAPI up_create_event(LPINT err) {
  WSAEVENT h;
  ERRP;
  h = create_event_do(err);
  UPCALL_TRACE("WPUCreateEvent", 0, h, h == WSA_INVALID_EVENT, "event 0x%llx", (unsigned long long)(uintptr_t)h);
  return h;
}

static int WSPAPI up_get_provider_path(LPGUID id, WCHAR *path, LPINT len, LPINT err) {
  int rc;
  char g[39] = "?";
  ERRP;
  rc = get_provider_path_do(id, path, len, err);
  if (lwsp_tracing && id) lwsp_guid_format(id, g);
  UPCALL_TRACE("WPUGetProviderPath", 0, rc, rc != 0, "%s", g);
  return rc;
}

static int WSPAPI up_query_blocking_callback(DWORD catalog, LPBLOCKINGCALLBACK *fn, PDWORD_PTR ctx, LPINT err) {
  int rc;
  ERRP;
  rc = query_blocking_callback_do(catalog, fn, ctx, err);
  UPCALL_TRACE("WPUQueryBlockingCallback", 0, rc, rc != 0, "catalog %lu%s", (unsigned long)catalog,
               rc == 0 && fn && *fn ? ", a hook" : rc == 0 ? ", no hook" : "");
  return rc;
}

static int WSPAPI up_query_socket_handle_context(SOCKET s, PDWORD_PTR ctx, LPINT err) {
  int rc;
  ERRP;
  rc = query_context_do(s, ctx, err);
  UPCALL_TRACE("WPUQuerySocketHandleContext", s, rc, rc != 0, "context 0x%llx", rc == 0 ? (unsigned long long)*ctx : 0ULL);
  return rc;
}

static int WSPAPI up_open_current_thread(LPWSATHREADID tid, LPINT err) {
  int rc;
  ERRP;
  rc = open_current_thread_do(tid, err);
  UPCALL_TRACE("WPUOpenCurrentThread", 0, rc, rc != 0, "thread %llu", rc == 0 ? (unsigned long long)tid->Reserved : 0ULL);
  return rc;
}

static int WSPAPI up_close_thread(LPWSATHREADID tid, LPINT err) {
  int rc;
  ERRP;
  rc = close_thread_do(tid, err);
  UPCALL_TRACE("WPUCloseThread", 0, rc, rc != 0, "thread %llu", tid ? (unsigned long long)tid->Reserved : 0ULL);
  return rc;
}

WSPUPCALLTABLE host_upcalls = {
  up_close_event, up_close_socket_handle, up_create_event, up_create_socket_handle, up_fd_isset,
  up_get_provider_path, up_modify_ifs_handle, up_post_message, up_query_blocking_callback,
  up_query_socket_handle_context, up_queue_apc, up_reset_event, up_set_event, up_open_current_thread,
  up_close_thread};

/* WPUCompleteOverlappedRequest: records status and bytes, signals the event
 * (its low bit masked off) and, when the socket is associated with a port and
 * the low bit is clear, posts exactly one packet. */
int WSPAPI host_complete(SOCKET s, LPWSAOVERLAPPED ov, DWORD error, DWORD bytes, LPINT err) {
  hsock *hs;
  uintptr_t ev;
  char text[64];
  ERRP;
  if (lwsp_tracing) {
    snprintf(text, sizeof text, "error %lu, %lu bytes", (unsigned long)error, (unsigned long)bytes);
    lwsp_trace_event_args("upcall", up_party(s), "host", "WPUCompleteOverlappedRequest", s, 0, text);
  }
  if ((*err = lwsp_fault("WPUCompleteOverlappedRequest")) != 0) return SOCKET_ERROR;
  if (!ov) { *err = WSAEFAULT; return SOCKET_ERROR; }
  lwsp_mutex_lock(&host_lock);
  hs = host_sock(s);
  if (!hs || hs->ifs) {
    lwsp_mutex_unlock(&host_lock);
    *err = hs ? WSAEINVAL : WSAENOTSOCK;
    return SOCKET_ERROR;
  }
  ev = (uintptr_t)ov->hEvent;   /* read first: once Internal says done, the overlapped is its owner's again */
  ov->OffsetHigh = error;
  ov->InternalHigh = bytes;
  __atomic_store_n(&ov->Internal, (ULONG_PTR)error, __ATOMIC_RELEASE);
  /* each record is made before what it records happens: the application
   * woken by the event or the packet may stop the trace at once (under Wine
   * it often did, and the record was lost) */
  if (lwsp_tracing) snprintf(text, sizeof text, "%lu bytes", (unsigned long)bytes);
  if (ev & ~(uintptr_t)1) {
    if (lwsp_tracing) lwsp_trace_event_args("complete", "host", "application", "event signalled", s, (int)error, text);
    hk_event_set((WSAEVENT)(ev & ~(uintptr_t)1), 1);
  }
  if (hs->port && !(ev & 1)) {
    if (lwsp_tracing) lwsp_trace_event_args("complete", "host", "application", "completion-port packet", s, (int)error, text);
    host_post(hs->port, bytes, hs->key, ov);
  }
  lwsp_cond_broadcast(&host_cond);
  lwsp_mutex_unlock(&host_lock);
  return 0;
}

/* ---- providers ------------------------------------------------------------------------ */
static int proc_table_complete(const WSPPROC_TABLE *t, int *missing) {
  void *const *p = (void *const *)t;
  for (int i = 0; i < LWSP_NPROCS; i++)
    if (!p[i]) { *missing = i; return 0; }
  return 1;
}

const char *host_trace_call(lua_State *L, hprov *p, const char *name, SOCKET s) {
  char args[LWSP_TRACE_TEXT] = "";
  const char *caller = lwsp_trace_party();
  if (L) lwsp_trace_values(L, 1, lua_gettop(L), args, sizeof args);
  lwsp_trace_enter(caller, p->name, name, s, args);
  return caller;
}

static _Thread_local const DWORD *trace_bytes;
void host_trace_bytes(const DWORD *bytes) { trace_bytes = lwsp_tracing ? bytes : NULL; }

/* A C provider's call returns: its result as the SPI gives it back (the new
 * handle of WSPSocket and WSPAccept, the byte count of a send or receive). */
void host_trace_return(hprov *p, const char *caller, const char *name, SOCKET s, int error, unsigned long long ret) {
  char res[64] = "";
  if (!error && (!strcmp(name, "WSPSocket") || !strcmp(name, "WSPAccept"))) snprintf(res, sizeof res, "s%llu", ret);
  else if (!error && trace_bytes) snprintf(res, sizeof res, "%lu bytes", (unsigned long)*trace_bytes);
  trace_bytes = NULL;
  lwsp_trace_leave(caller, p->name, name, s, error, res);
}

/* Takes back one startup of p; the last one unloads it (its record stays, retired). */
static void provider_release(hprov *p) {
  void *lib = NULL;
  lwsp_mutex_lock(&host_lock);
  if (--p->startups == 0) {
    host_each_sock(unprov, p);
    lib = p->lib;
    p->lib = NULL;
    p->loaded = 0;
    if (p->pins) {          /* a spawned call may still be inside it */
      if (p->gone_lib) lwsp_dlclose(p->gone_lib);   /* (a reference of an earlier life: dlopen counts) */
      p->gone_lib = lib;
      p->gone = 1;
      lib = NULL;
    }
  }
  lwsp_mutex_unlock(&host_lock);
  if (lib) lwsp_dlclose(lib);
}

/* One WSPStartup of a catalog entry's provider, made as ws2_32 makes it:
 * find the entry, load its DLL once per GUID, find WSPStartup, call it with
 * the host's upcall table, and check the proc table and the version.  Over
 * 80 lines: one sequence whose every step has its own failure, log line and
 * unwinding under the host lock, and reads best in the order ws2_32 does it. */
hprov *host_provider_startup(DWORD catalog, LPINT err) {
  hentry *e;
  WSAPROTOCOL_INFOW info;
  char path[1024], expanded[2048], why[512], g[39];
  hprov *p;
  void *lib = NULL, *sym;
  LPWSPSTARTUP startup;
  WSPDATA data;
  WSPPROC_TABLE procs;
  int rc, missing, foreign = 0;
  host_init();
  lwsp_mutex_lock(&host_lock);
  if (!(e = host_entry(catalog))) { lwsp_mutex_unlock(&host_lock); *err = WSAEINVALIDPROVIDER; return NULL; }
  info = e->info;
  snprintf(path, sizeof path, "%s", e->path);
  /* a loaded provider gets its startup reserved now: a last WSPCleanup on
   * another thread meanwhile cannot unload it under this one */
  if ((p = prov_by_guid(&info.ProviderId)) != NULL) p->startups++;
  lwsp_mutex_unlock(&host_lock);
  lwsp_guid_format(&info.ProviderId, g);
  if (!p) {
    if (!lwsp_expand_env(path, expanded, sizeof expanded)) {
      lwsp_log("host", "provider %s: path too long after expanding %s", g, path);
      *err = WSAEPROVIDERFAILEDINIT;
      return NULL;
    }
    if (!(lib = lwsp_dlopen(expanded, why, sizeof why))) {
      lwsp_log("host", "provider %s: cannot load %s: %s", g, expanded, why);
      *err = WSAEPROVIDERFAILEDINIT;
      return NULL;
    }
    if (!(sym = lwsp_dlsym(lib, "WSPStartup"))) {
      lwsp_log("host", "provider %s: %s exports no WSPStartup", g, expanded);
      lwsp_dlclose(lib);
      *err = WSAEPROVIDERFAILEDINIT;
      return NULL;
    }
    {
      LPWSPSTARTUP ours = host_rt->startup;   /* lwsp's runtime: a Lua provider, which traces itself */
      void *mine;
      memcpy(&mine, &ours, sizeof mine);
      foreign = sym != mine;
    }
  } else {
    sym = lwsp_dlsym(p->lib, "WSPStartup");
  }
  memcpy(&startup, &sym, sizeof startup);
  memset(&data, 0, sizeof data);
  memset(&procs, 0, sizeof procs);
  {
    int tr = lwsp_tracing;
    const char *caller = lwsp_trace_party();
    if (tr) lwsp_trace_enter(caller, g, "WSPStartup", 0, "2.2");
    rc = startup(MAKEWORD_(2, 2), &data, &info, host_upcalls, &procs);
    if (tr) lwsp_trace_leave(caller, g, "WSPStartup", 0, rc, "");
  }
  if (rc == 0 && !proc_table_complete(&procs, &missing)) {
    INT e2 = 0;
    lwsp_log("host", "provider %s: proc table entry %s is NULL", g, host_rt->spi_names[missing]);
    if (procs.lpWSPCleanup) procs.lpWSPCleanup(&e2);
    rc = WSAEINVALIDPROCTABLE;
  } else if (rc == 0 && data.wVersion != MAKEWORD_(2, 2)) {
    INT e2 = 0;
    lwsp_log("host", "provider %s: WSPStartup negotiated version %u.%u, not 2.2", g, data.wVersion & 0xff, data.wVersion >> 8);
    procs.lpWSPCleanup(&e2);
    rc = WSAVERNOTSUPPORTED;
  } else if (rc != 0) {
    lwsp_log("host", "provider %s: WSPStartup failed: %s", g, lwsp_error_name(rc) ? lwsp_error_name(rc) : "?");
  }
  if (rc != 0) {
    if (lib) lwsp_dlclose(lib);
    if (p) provider_release(p);
    *err = rc;
    return NULL;
  }
  lwsp_mutex_lock(&host_lock);
  if (p) {
    /* a provider whose last WSPCleanup was still running when this startup
     * came may have begun a new instance with a table of its own */
    if (memcmp(&p->procs, &procs, sizeof procs) != 0) p->procs = procs;
  } else if ((p = prov_by_guid(&info.ProviderId)) != NULL) {
    p->startups++;                  /* another thread loaded it meanwhile: this startup is one more of its */
    lwsp_mutex_unlock(&host_lock);
    lwsp_dlclose(lib);              /* (the library stays: that load holds it) */
    return p;
  } else {
    if (!(p = record_by_guid(&info.ProviderId))) {
      if (!(p = calloc(1, sizeof *p))) {
        INT e2 = 0;
        lwsp_mutex_unlock(&host_lock);
        procs.lpWSPCleanup(&e2);
        lwsp_dlclose(lib);
        *err = WSAENOBUFS;
        return NULL;
      }
      p->id = info.ProviderId;
      p->next = providers;
      providers = p;
    }
    p->lib = lib;
    p->foreign = foreign;
    p->procs = procs;
    p->data = data;
    p->startups = 1;
    p->loaded = 0;
    lwsp_guid_format(&info.ProviderId, p->name);
  }
  lwsp_mutex_unlock(&host_lock);
  return p;
}

/* One WSPCleanup.  A provider that refuses it (WSAEINPROGRESS: called from
 * inside one of its own calls) keeps its startup; anything else gives it up. */
int host_provider_cleanup(hprov *p, LPINT err) {
  int rc, tr = lwsp_tracing;
  char g[39];
  const char *caller = lwsp_trace_party();
  if (tr) {
    lwsp_guid_format(&p->id, g);
    lwsp_trace_enter(caller, g, "WSPCleanup", 0, "");
  }
  rc = p->procs.lpWSPCleanup(err);
  if (tr) lwsp_trace_leave(caller, g, "WSPCleanup", 0, rc ? *err : 0, "");
  if (rc != 0 && *err == WSAEINPROGRESS) return rc;
  provider_release(p);
  return rc;
}

hprov *host_load(DWORD catalog, LPINT err) {
  hentry *e;
  hprov *p;
  host_init();
  lwsp_mutex_lock(&host_lock);
  e = host_entry(catalog);
  p = e ? prov_by_guid(&e->info.ProviderId) : NULL;
  if (p && p->loaded) { lwsp_mutex_unlock(&host_lock); return p; }
  lwsp_mutex_unlock(&host_lock);
  if (!e) { *err = WSAEINVALIDPROVIDER; return NULL; }
  if (!(p = host_provider_startup(catalog, err))) return NULL;
  lwsp_mutex_lock(&host_lock);
  if (p->loaded) {
    /* another thread loaded it meanwhile: give back this startup */
    lwsp_mutex_unlock(&host_lock);
    INT e2;
    host_provider_cleanup(p, &e2);
    return p;
  }
  p->loaded = 1;
  lwsp_mutex_unlock(&host_lock);
  return p;
}

/* WSACleanup: closes every socket of the providers loaded ws2_32-style, then
 * gives back their startup.  Returns how many providers were cleaned up. */
int host_cleanup_all(int close_sockets) {
  int n = 0;
  hprov *refused = NULL;
  host_init();
  for (;;) {
    hprov *p = NULL;
    find_ud f = {NULL, 0};
    lwsp_mutex_lock(&host_lock);
    for (hprov *q = providers; q && !p; q = q->next)
      if (q->loaded && q->lib && q != refused) p = q;
    f.p = p;
    if (p && close_sockets) host_each_sock(of_prov, &f);
    if (p && !f.found) p->loaded = 0;   /* claimed: a WSACleanup on another thread gives back this load only once */
    lwsp_mutex_unlock(&host_lock);
    if (!p) break;
    if (f.found) {
      INT e = 0;
      hsock *hs;
      if (p->procs.lpWSPCloseSocket(f.found, &e) != 0)
        lwsp_log("host", "WSACleanup: closing socket %llu failed (%d); dropping it", (unsigned long long)f.found, e);
      lwsp_mutex_lock(&host_lock);
      /* an IFS record goes now; a non-IFS handle stays valid until the provider
       * closes it (WPUCloseSocketHandle), after its last completion */
      if ((hs = host_sock(f.found)) != NULL && hs->prov == p) {
        if (hs->ifs) { lwsp_map_del(&socks, f.found); free(hs); } else hs->closed = 1;
      }
      lwsp_mutex_unlock(&host_lock);
      continue;
    }
    {
      INT e = 0;
      if (host_provider_cleanup(p, &e) != 0 && e == WSAEINPROGRESS) {
        lwsp_log("host", "WSACleanup: provider %s refused its WSPCleanup (WSAEINPROGRESS): it stays loaded", p->name);
        lwsp_mutex_lock(&host_lock);
        p->loaded = 1;
        lwsp_mutex_unlock(&host_lock);
        refused = p;
        continue;
      }
      n++;
    }
  }
  return n;
}
