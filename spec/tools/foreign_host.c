/*
 * foreign_host.c - a ws2_32 stand-in of its own, written from SPI.md alone,
 * that loads lwsp's runtime (build/lwsp.so) as any host loads a provider DLL
 * and checks what lwsp does against a strict reading of the SPI.
 *
 * It shares nothing with lwsp's host: its own socket handle table, events on
 * a pthread condition variable, per-thread APC queues drained only in its
 * alertable wait, and its own exported WPUCompleteOverlappedRequest, which
 * refuses (WSAEINVAL) any handle it did not create with WPUCreateSocketHandle,
 * IFS handles included.  Built with -DFH_NO_COMPLETE it exports none; built
 * with -DFH_STUB_COMPLETE it exports one that acts as Wine's ws2_32 does
 * (sets WSAEINVAL, returns 0, delivers nothing).
 *
 * It stands in for ws2_32's export inside its own process: lwsp looks
 * WPUCompleteOverlappedRequest up in the module that holds the upcall table's
 * functions (src/platform.c, lwsp_host_sym: GetModuleHandleExW of
 * lpWPUCreateSocketHandle's address, then GetProcAddress), which is this
 * program, so its export (EXPORT below; an .exe can export names) is the one
 * lwsp calls, whatever ws2_32.dll the process may also hold.
 *
 *   foreign_host LIB SCRIPT SCENARIO
 *
 * LIB is the provider DLL, SCRIPT the provider's Lua script (registered for
 * the host's provider GUID under a private $LWSP_REGISTRY).  Each scenario
 * prints one line, "PASS name: ..." or "FAIL name: ...", and exits 0 on pass.
 * Every wait is bounded (a lost completion fails the scenario, never hangs).
 * The same source builds for Windows with mingw-w64 (winpthreads for the
 * threads, LoadLibrary, lwsp's registry under HKLM) and runs under Wine.
 */
#include "spi.h"
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- the platform: how a DLL, the registry and the environment are reached ---- */
#ifdef _WIN32
#  include <process.h>
#  define EXPORT __declspec(dllexport)
#  define SEP "\\"
#  define DLL_EXT ".dll"
/* by its full path, as ws2_32 loads a provider (UTF-8 in, LoadLibraryW) */
static void *load_dll(const char *path, char *why, size_t n) {
  WCHAR w[MAX_PATH * 2];
  HMODULE m = NULL;
  if (!MultiByteToWideChar(CP_UTF8, 0, path, -1, w, MAX_PATH * 2)) snprintf(why, n, "path too long");
  else if (!(m = LoadLibraryW(w))) snprintf(why, n, "LoadLibraryW: error %lu", (unsigned long)GetLastError());
  return m;
}
static void *dll_sym(void *lib, const char *name) {
  FARPROC f = GetProcAddress((HMODULE)lib, name);
  void *p;
  memcpy(&p, &f, sizeof p);
  return p;
}
static void set_env(const char *name, const char *value) { _putenv_s(name, value); }
static int make_tmpdir(char *dir, size_t n) {
  char base[MAX_PATH];
  DWORD k = GetTempPathA(sizeof base, base);
  if (k == 0 || k >= sizeof base) return 0;
  snprintf(dir, n, "%slwsp-foreign-%lu", base, (unsigned long)GetCurrentProcessId());
  return CreateDirectoryA(dir, NULL) || GetLastError() == ERROR_ALREADY_EXISTS;
}
/* lwsp's registry on Windows: HKLM\SOFTWARE\lwsp\Providers, value {GUID} */
static int registry_set(const char *guid, const char *script) {
  HKEY k;
  LONG rc = RegCreateKeyExA(HKEY_LOCAL_MACHINE, "SOFTWARE\\lwsp\\Providers", 0, NULL, 0, KEY_SET_VALUE, NULL, &k, NULL);
  if (rc != ERROR_SUCCESS) return 0;
  rc = RegSetValueExA(k, guid, 0, REG_SZ, (const BYTE *)script, (DWORD)strlen(script) + 1);
  RegCloseKey(k);
  return rc == ERROR_SUCCESS;
}
static void registry_remove(const char *guid) {
  HKEY k;
  if (RegOpenKeyExA(HKEY_LOCAL_MACHINE, "SOFTWARE\\lwsp\\Providers", 0, KEY_SET_VALUE, &k) != ERROR_SUCCESS) return;
  RegDeleteValueA(k, guid);
  RegCloseKey(k);
}
#else
#  include <dlfcn.h>
#  include <unistd.h>
#  define EXPORT __attribute__((visibility("default")))
#  define SEP "/"
#  define DLL_EXT ".so"
static void *load_dll(const char *path, char *why, size_t n) {
  void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!lib) snprintf(why, n, "%s", dlerror());
  return lib;
}
static void *dll_sym(void *lib, const char *name) { return dlsym(lib, name); }
static void set_env(const char *name, const char *value) { setenv(name, value, 1); }
static int make_tmpdir(char *dir, size_t n) {
  snprintf(dir, n, "/tmp/lwsp-foreign-XXXXXX");
  return mkdtemp(dir) != NULL;
}
/* lwsp's registry elsewhere: the file $LWSP_REGISTRY/{GUID} */
static char tmpdir[256];
static int registry_set(const char *guid, const char *script) {
  char path[512];
  FILE *f;
  snprintf(path, sizeof path, "%s/%s", tmpdir, guid);
  if (!(f = fopen(path, "w"))) return 0;
  fprintf(f, "%s\n", script);
  fclose(f);
  set_env("LWSP_REGISTRY", tmpdir);
  return 1;
}
static void registry_remove(const char *guid) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", tmpdir, guid);
  unlink(path);
}
#endif
#define CATALOG_TCP 7001      /* the provider as a base: memnet and the like */
#define CATALOG_UDP 7002
#define CATALOG_NATIVE 7101   /* lwsp's native base provider */
#define CATALOG_LAYER 7102    /* the provider as a layer over it ... */
#define CATALOG_CHAIN 7103    /* ... and the chain an application opens */
#define MAX_HANDLES 256
#define MAX_EVENTS 64
#define MAX_MSGS 64
#define LIMIT_MS 3000   /* how long anything may take before it counts as lost */

static const GUID PROVIDER = {0x6f0d1c2e, 0x4b3a, 0x4c5d, {0x9e, 0x8f, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60}};
static const GUID NATIVE = {0x6f0d1c2e, 0x4b3a, 0x4c5d, {0x9e, 0x8f, 0x10, 0x20, 0x30, 0x40, 0x50, 0x61}};
static const char *scenario = "?";
static const char GUID_TEXT[] = "{6F0D1C2E-4B3A-4C5D-9E8F-102030405060}";
static char native_path[600];
#ifdef _WIN32
static char tmpdir[256];
#endif

/* ---- results ----------------------------------------------------------------- */
static void cleanup_files(void) {
  char p[512];
  registry_remove(GUID_TEXT);
  snprintf(p, sizeof p, "%s" SEP "log", tmpdir);
  remove(p);
#ifdef _WIN32
  RemoveDirectoryA(tmpdir);
#else
  rmdir(tmpdir);
#endif
}

static void fail(const char *fmt, ...) {
  va_list ap;
  printf("FAIL %s: ", scenario);
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  printf("\n");
  fflush(stdout);
  cleanup_files();
  _exit(1);   /* the provider's threads may still hold locks: no atexit work */
}

static void pass(const char *fmt, ...) {
  va_list ap;
  printf("PASS %s: ", scenario);
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  printf("\n");
  fflush(stdout);
}

#define CHECK(cond, ...) do { if (!(cond)) fail(__VA_ARGS__); } while (0)

/* ---- the host's state: one lock, one condition ------------------------------- */
static pthread_mutex_t H = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t HC = PTHREAD_COND_INITIALIZER;

typedef struct { SOCKET h; DWORD_PTR ctx; DWORD catalog; int live, ifs; } fh_handle;
static fh_handle handles[MAX_HANDLES];
static int n_created, n_closed, n_ifs;

typedef struct { int used, set; } fh_event;
static fh_event events[MAX_EVENTS];

typedef struct { SOCKET s; LPWSAOVERLAPPED ov; DWORD error, bytes; int valid_at_completion; } fh_completion;
static fh_completion completions[64];
static int n_completions, n_refused, n_stub_calls;
static SOCKET last_refused;

typedef struct { HWND hwnd; UINT msg; WPARAM w; LPARAM l; } fh_msg;
static fh_msg msgs[MAX_MSGS];
static int n_msgs;

/* APCs: a queue per thread, run only by that thread's alertable wait */
typedef struct fh_apc { LPWSAUSERAPC fn; DWORD_PTR ctx; struct fh_apc *next; } fh_apc;
typedef struct fh_thread { fh_apc *head, *tail; unsigned long id; } fh_thread;
static __thread fh_thread *self_thread;
static unsigned long next_thread_id = 1;
static int n_apcs_queued;

static fh_thread *this_thread(void) {
  if (!self_thread) {
    self_thread = calloc(1, sizeof *self_thread);
    pthread_mutex_lock(&H);
    self_thread->id = next_thread_id++;
    pthread_mutex_unlock(&H);
  }
  return self_thread;
}

static fh_handle *find_handle(SOCKET s) {
  for (int i = 0; i < MAX_HANDLES; i++)
    if (handles[i].live && handles[i].h == s) return &handles[i];
  return NULL;
}
static int handle_live(SOCKET s) {
  int live;
  pthread_mutex_lock(&H);
  live = find_handle(s) != NULL;
  pthread_mutex_unlock(&H);
  return live;
}
static int live_handles(void) {
  int n = 0;
  pthread_mutex_lock(&H);
  for (int i = 0; i < MAX_HANDLES; i++) n += handles[i].live;
  pthread_mutex_unlock(&H);
  return n;
}

static fh_event *event_of(WSAEVENT e) {
  fh_event *ev = (fh_event *)((uintptr_t)e & ~(uintptr_t)1);
  if (ev < events || ev >= events + MAX_EVENTS || !ev->used) return NULL;
  return ev;
}

/* ---- the upcall table -------------------------------------------------------- */
static BOOL WSPAPI up_close_event(WSAEVENT e, LPINT err) {
  fh_event *ev;
  pthread_mutex_lock(&H);
  if (!(ev = event_of(e))) { pthread_mutex_unlock(&H); *err = WSA_INVALID_HANDLE; return FALSE; }
  ev->used = 0;
  pthread_mutex_unlock(&H);
  return TRUE;
}
static WSAEVENT WSPAPI up_create_event(LPINT err) {
  pthread_mutex_lock(&H);
  for (int i = 0; i < MAX_EVENTS; i++)
    if (!events[i].used) {
      events[i].used = 1;
      events[i].set = 0;
      pthread_mutex_unlock(&H);
      return &events[i];
    }
  pthread_mutex_unlock(&H);
  *err = WSA_NOT_ENOUGH_MEMORY;
  return WSA_INVALID_EVENT;
}
static BOOL set_event(WSAEVENT e, int on, LPINT err) {
  fh_event *ev;
  pthread_mutex_lock(&H);
  if (!(ev = event_of(e))) { pthread_mutex_unlock(&H); *err = WSA_INVALID_HANDLE; return FALSE; }
  ev->set = on;
  pthread_cond_broadcast(&HC);
  pthread_mutex_unlock(&H);
  return TRUE;
}
static BOOL WSPAPI up_set_event(WSAEVENT e, LPINT err) { return set_event(e, 1, err); }
static BOOL WSPAPI up_reset_event(WSAEVENT e, LPINT err) { return set_event(e, 0, err); }

static int known_catalog(DWORD c) {
  return c == CATALOG_TCP || c == CATALOG_UDP || c == CATALOG_NATIVE || c == CATALOG_CHAIN;
}
static SOCKET WSPAPI up_create_socket_handle(DWORD catalog, DWORD_PTR ctx, LPINT err) {
  static SOCKET next = 0x7000;
  pthread_mutex_lock(&H);
  if (!known_catalog(catalog)) {
    pthread_mutex_unlock(&H);
    *err = WSAEINVALIDPROVIDER;
    return INVALID_SOCKET;
  }
  for (int i = 0; i < MAX_HANDLES; i++)
    if (!handles[i].live) {
      handles[i] = (fh_handle){next, ctx, catalog, 1, 0};
      next += 4;
      n_created++;
      pthread_mutex_unlock(&H);
      return handles[i].h;
    }
  pthread_mutex_unlock(&H);
  *err = WSAENOBUFS;
  return INVALID_SOCKET;
}
static int WSPAPI up_close_socket_handle(SOCKET s, LPINT err) {
  fh_handle *h;
  pthread_mutex_lock(&H);
  if (!(h = find_handle(s)) || h->ifs) { pthread_mutex_unlock(&H); *err = WSAENOTSOCK; return SOCKET_ERROR; }
  h->live = 0;
  n_closed++;
  pthread_mutex_unlock(&H);
  return 0;
}
static int WSPAPI up_query_socket_handle_context(SOCKET s, PDWORD_PTR ctx, LPINT err) {
  fh_handle *h;
  pthread_mutex_lock(&H);
  if (!(h = find_handle(s)) || h->ifs) { pthread_mutex_unlock(&H); *err = WSAENOTSOCK; return SOCKET_ERROR; }
  *ctx = h->ctx;
  pthread_mutex_unlock(&H);
  return 0;
}
static SOCKET WSPAPI up_modify_ifs_handle(DWORD catalog, SOCKET proposed, LPINT err) {
  pthread_mutex_lock(&H);
  if (!known_catalog(catalog)) { pthread_mutex_unlock(&H); *err = WSAEINVALIDPROVIDER; return INVALID_SOCKET; }
  if (proposed == 0 || proposed == INVALID_SOCKET || find_handle(proposed)) { pthread_mutex_unlock(&H); *err = WSAEINVAL; return INVALID_SOCKET; }
  for (int i = 0; i < MAX_HANDLES; i++)
    if (!handles[i].live) {
      handles[i] = (fh_handle){proposed, 0, catalog, 1, 1};
      n_ifs++;
      pthread_mutex_unlock(&H);
      return proposed;
    }
  pthread_mutex_unlock(&H);
  *err = WSAENOBUFS;
  return INVALID_SOCKET;
}
static int WSPAPI up_fd_isset(SOCKET s, wsp_fd_set *set) { return lwsp_fd_isset(s, set); }
static int WSPAPI up_get_provider_path(LPGUID id, WCHAR *path, LPINT len, LPINT err) {
  int n = (int)strlen(native_path);
  if (!id || !len || memcmp(id, &NATIVE, sizeof NATIVE) != 0) { *err = WSAEINVAL; return SOCKET_ERROR; }
  if (!path || *len <= n) { *len = n + 1; *err = WSAEFAULT; return SOCKET_ERROR; }
  for (int i = 0; i <= n; i++) path[i] = (WCHAR)(unsigned char)native_path[i];
  return 0;
}
static BOOL WSPAPI up_post_message(HWND hwnd, UINT msg, WPARAM w, LPARAM l) {
  pthread_mutex_lock(&H);
  if (n_msgs < MAX_MSGS) msgs[n_msgs++] = (fh_msg){hwnd, msg, w, l};
  pthread_cond_broadcast(&HC);
  pthread_mutex_unlock(&H);
  return TRUE;
}

/* a blocking hook, for the thread that asks for one: it cancels the call */
static LPWSPPROC_TABLE hook_procs;
static __thread int want_hook, hook_calls, hook_cancel_rc;
static BOOL CALLBACK blocking_hook(DWORD_PTR ctx) {
  INT e = 0;
  (void)ctx;
  if (++hook_calls == 2) hook_cancel_rc = hook_procs->lpWSPCancelBlockingCall(&e);
  return FALSE;
}
static int WSPAPI up_query_blocking_callback(DWORD catalog, LPBLOCKINGCALLBACK *cb, PDWORD_PTR ctx, LPINT err) {
  (void)catalog; (void)err;
  *cb = want_hook ? blocking_hook : NULL;
  *ctx = 0;
  return 0;
}
static int WSPAPI up_queue_apc(LPWSATHREADID tid, LPWSAUSERAPC fn, DWORD_PTR ctx, LPINT err) {
  fh_thread *t;
  fh_apc *a;
  if (!tid || !(t = tid->ThreadHandle) || tid->Reserved != t->id) { *err = WSAEINVAL; return SOCKET_ERROR; }
  if (!(a = calloc(1, sizeof *a))) { *err = WSAENOBUFS; return SOCKET_ERROR; }
  a->fn = fn;
  a->ctx = ctx;
  pthread_mutex_lock(&H);
  if (t->tail) t->tail->next = a; else t->head = a;
  t->tail = a;
  n_apcs_queued++;
  pthread_cond_broadcast(&HC);
  pthread_mutex_unlock(&H);
  return 0;
}
static int WSPAPI up_open_current_thread(LPWSATHREADID tid, LPINT err) {
  fh_thread *t = this_thread();
  (void)err;
  tid->ThreadHandle = t;
  tid->Reserved = t->id;
  return 0;
}
static int WSPAPI up_close_thread(LPWSATHREADID tid, LPINT err) {
  if (!tid || !tid->ThreadHandle) { *err = WSAEINVAL; return SOCKET_ERROR; }
  return 0;
}

static WSPUPCALLTABLE upcalls = {
  up_close_event, up_close_socket_handle, up_create_event, up_create_socket_handle, up_fd_isset,
  up_get_provider_path, up_modify_ifs_handle, up_post_message, up_query_blocking_callback,
  up_query_socket_handle_context, up_queue_apc, up_reset_event, up_set_event, up_open_current_thread,
  up_close_thread};

#if defined(FH_STUB_COMPLETE)
/* Wine's ws2_32 export, as Wine 8 has it: a FIXME stub that sets *lpErrno to
 * WSAEINVAL and returns 0 -- success by the SPI's rule -- without recording or
 * signalling anything. */
EXPORT int WSPAPI WPUCompleteOverlappedRequest(SOCKET s, LPWSAOVERLAPPED ov, DWORD error, DWORD bytes, LPINT err);
EXPORT int WSPAPI WPUCompleteOverlappedRequest(SOCKET s, LPWSAOVERLAPPED ov, DWORD error, DWORD bytes, LPINT err) {
  (void)s; (void)ov; (void)error; (void)bytes;
  pthread_mutex_lock(&H);
  n_stub_calls++;
  pthread_mutex_unlock(&H);
  if (err) *err = WSAEINVAL;
  return 0;
}
#elif !defined(FH_NO_COMPLETE)
/* ws2_32's export.  Records Internal and InternalHigh as ws2_32 does (the
 * provider writes Offset and OffsetHigh itself), signals the event. */
EXPORT int WSPAPI WPUCompleteOverlappedRequest(SOCKET s, LPWSAOVERLAPPED ov, DWORD error, DWORD bytes, LPINT err);
EXPORT int WSPAPI WPUCompleteOverlappedRequest(SOCKET s, LPWSAOVERLAPPED ov, DWORD error, DWORD bytes, LPINT err) {
  fh_handle *h;
  fh_event *ev;
  pthread_mutex_lock(&H);
  h = find_handle(s);
  if (!h || h->ifs) {
    n_refused++;
    last_refused = s;
    pthread_mutex_unlock(&H);
    *err = WSAEINVAL;
    return SOCKET_ERROR;
  }
  if (!ov) { pthread_mutex_unlock(&H); *err = WSAEFAULT; return SOCKET_ERROR; }
  if (n_completions < 64) completions[n_completions++] = (fh_completion){s, ov, error, bytes, 1};
  ov->Internal = error;
  ov->InternalHigh = bytes;
  if ((ev = event_of(ov->hEvent)) != NULL) ev->set = 1;
  pthread_cond_broadcast(&HC);
  pthread_mutex_unlock(&H);
  return 0;
}
#endif

/* ---- the application side: waits -------------------------------------------- */
static void deadline_in(struct timespec *ts, long ms) {
  clock_gettime(CLOCK_REALTIME, ts);
  ts->tv_sec += ms / 1000;
  ts->tv_nsec += (ms % 1000) * 1000000L;
  if (ts->tv_nsec >= 1000000000L) { ts->tv_sec++; ts->tv_nsec -= 1000000000L; }
}

/* Runs this thread's queued APCs (at most one round); returns how many ran. */
static int run_apcs(void) {
  fh_thread *t = this_thread();
  fh_apc *a;
  int n = 0;
  pthread_mutex_lock(&H);
  while ((a = t->head) != NULL) {
    t->head = a->next;
    if (!t->head) t->tail = NULL;
    pthread_mutex_unlock(&H);
    a->fn(a->ctx);
    free(a);
    n++;
    pthread_mutex_lock(&H);
  }
  pthread_mutex_unlock(&H);
  return n;
}

/* WSAWaitForMultipleEvents for one event (NULL: none), at most ms.  Alertable:
 * returns 2 as soon as it has run APCs.  1 when the event is set, 0 on timeout. */
static int wait_event(WSAEVENT e, long ms, int alertable) {
  struct timespec ts;
  fh_event *ev;
  fh_thread *t = this_thread();
  deadline_in(&ts, ms);
  pthread_mutex_lock(&H);
  ev = e ? event_of(e) : NULL;
  for (;;) {
    if (alertable && t->head) { pthread_mutex_unlock(&H); run_apcs(); return 2; }
    if (ev && ev->set) { pthread_mutex_unlock(&H); return 1; }
    if (pthread_cond_timedwait(&HC, &H, &ts) != 0) { pthread_mutex_unlock(&H); return 0; }
  }
}

/* An alertable wait that runs APCs until *flag becomes nonzero, at most ms. */
static int wait_flag(volatile int *flag, long ms) {
  struct timespec start, now;
  clock_gettime(CLOCK_MONOTONIC, &start);
  while (!*flag) {
    long left;
    clock_gettime(CLOCK_MONOTONIC, &now);
    left = ms - (long)((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000);
    if (left <= 0) return 0;
    wait_event(NULL, left, 1);
  }
  return 1;
}

/* ---- the provider --------------------------------------------------------- */
static WSPPROC_TABLE P;
static int (WSPAPI *startup_fn)(WORD, LPWSPDATA, LPWSAPROTOCOL_INFOW, WSPUPCALLTABLE, LPWSPPROC_TABLE);
static WSAPROTOCOL_INFOW info_tcp, info_udp, info_native, info_layer, info_chain;
static WSAPROTOCOL_INFOW *top_tcp = &info_tcp;   /* what the application opens streams on */

static void fill_info(WSAPROTOCOL_INFOW *pi, DWORD catalog, int type) {
  const char *name = type == SOCK_STREAM ? "foreign TCP" : "foreign UDP";
  memset(pi, 0, sizeof *pi);
  pi->dwServiceFlags1 = type == SOCK_STREAM ? XP1_GUARANTEED_DELIVERY | XP1_GUARANTEED_ORDER | XP1_GRACEFUL_CLOSE
                                            : XP1_CONNECTIONLESS | XP1_MESSAGE_ORIENTED;
  pi->ProviderId = PROVIDER;
  pi->dwCatalogEntryId = catalog;
  pi->ProtocolChain.ChainLen = 1;
  pi->iVersion = 2;
  pi->iAddressFamily = AF_INET;
  pi->iMaxSockAddr = pi->iMinSockAddr = 16;
  pi->iSocketType = type;
  pi->iProtocol = type == SOCK_STREAM ? IPPROTO_TCP : IPPROTO_UDP;
  pi->dwMessageSize = type == SOCK_STREAM ? 0 : 65467;
  for (int i = 0; name[i]; i++) pi->szProtocol[i] = (WCHAR)name[i];
}

/* ws2_32's catalog, as a layer loaded by it reads it */
EXPORT int WSPAPI WSCEnumProtocols(LPINT protocols, LPWSAPROTOCOL_INFOW buf, LPDWORD len, LPINT err);
EXPORT int WSPAPI WSCEnumProtocols(LPINT protocols, LPWSAPROTOCOL_INFOW buf, LPDWORD len, LPINT err) {
  const WSAPROTOCOL_INFOW *all[] = {&info_tcp, &info_udp, &info_native, &info_layer, &info_chain};
  DWORD need = sizeof all / sizeof *all * sizeof(WSAPROTOCOL_INFOW);
  (void)protocols;
  if (!len) { *err = WSAEFAULT; return SOCKET_ERROR; }
  if (!buf || *len < need) { *len = need; *err = WSAENOBUFS; return SOCKET_ERROR; }
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) buf[i] = *all[i];
  return (int)(sizeof all / sizeof *all);
}

static int startup(void) {
  WSPDATA data;
  WSPPROC_TABLE t;
  WSAPROTOCOL_INFOW pi = *top_tcp;
  int rc;
  memset(&data, 0, sizeof data);
  memset(&t, 0, sizeof t);
  rc = startup_fn(MAKEWORD_(2, 2), &data, &pi, upcalls, &t);
  if (rc != 0) return rc;
  for (int i = 0; i < (int)(sizeof t / sizeof(void *)); i++)
    CHECK(((void **)&t)[i] != NULL, "proc table entry %d is NULL", i);
  CHECK(data.wVersion == MAKEWORD_(2, 2), "WSPStartup negotiated %#x, not 2.2", data.wVersion);
  CHECK(data.szDescription[0] != 0, "WSPDATA.szDescription is empty");
  P = t;
  return 0;
}

/* WSPStartup, which must succeed: the failure names the error and the log's last line. */
static void started(void) {
  char p[512], line[1024] = "", last[1024] = "";
  FILE *f;
  int rc = startup();
  if (rc == 0) return;
  snprintf(p, sizeof p, "%s" SEP "log", tmpdir);
  if ((f = fopen(p, "r")) != NULL) {
    while (fgets(line, sizeof line, f)) snprintf(last, sizeof last, "%s", line);
    fclose(f);
  }
  last[strcspn(last, "\r\n")] = 0;
  fail("WSPStartup failed (%d): %s", rc, last);
}

/* Every call goes through these: a provider returning SOCKET_ERROR with
 * *lpErrno == 0 is itself a failure of the scenario (SPI.md's host rule). */
#define ERRNO_SET(rc, e, what) CHECK((rc) != SOCKET_ERROR || (e) != 0, "%s returned SOCKET_ERROR with errno 0", what)

static SOCKET fh_socket(int type) {
  INT e = 0;
  WSAPROTOCOL_INFOW pi = type == SOCK_STREAM ? *top_tcp : info_udp;
  SOCKET s = P.lpWSPSocket(AF_INET, type, 0, &pi, 0, WSA_FLAG_OVERLAPPED, &e);
  CHECK(s != INVALID_SOCKET, "WSPSocket failed (%d)", e);
  return s;
}

static struct sockaddr_in addr_of(unsigned short port) {
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = (unsigned short)((port >> 8) | (port << 8));
  a.sin_addr.S_un.S_addr = 0x0100007f;   /* 127.0.0.1 in network order */
  return a;
}

/* a connected stream pair over the provider: *a accepted, *b the client */
static void stream_pair(SOCKET *a, SOCKET *b) {
  INT e = 0;
  struct sockaddr_in sa = addr_of(0), peer;
  INT plen = sizeof peer, slen = sizeof sa;
  SOCKET l = fh_socket(SOCK_STREAM);
  int rc = P.lpWSPBind(l, (struct sockaddr *)&sa, sizeof sa, &e);
  ERRNO_SET(rc, e, "WSPBind");
  CHECK(rc == 0, "WSPBind failed (%d)", e);
  rc = P.lpWSPGetSockName(l, (struct sockaddr *)&sa, &slen, &e);
  CHECK(rc == 0 && sa.sin_port != 0, "WSPGetSockName failed (%d)", e);
  rc = P.lpWSPListen(l, 5, &e);
  CHECK(rc == 0, "WSPListen failed (%d)", e);
  *b = fh_socket(SOCK_STREAM);
  rc = P.lpWSPConnect(*b, (struct sockaddr *)&sa, sizeof sa, NULL, NULL, NULL, NULL, &e);
  ERRNO_SET(rc, e, "WSPConnect");
  CHECK(rc == 0, "WSPConnect failed (%d)", e);
  *a = P.lpWSPAccept(l, (struct sockaddr *)&peer, &plen, NULL, 0, &e);
  CHECK(*a != INVALID_SOCKET, "WSPAccept failed (%d)", e);
  rc = P.lpWSPCloseSocket(l, &e);
  CHECK(rc == 0, "WSPCloseSocket of the listener failed (%d)", e);
}

static void send_text(SOCKET s, const char *text) {
  WSABUF b = {(ULONG)strlen(text), (CHAR *)text};
  DWORD sent = 0;
  INT e = 0;
  WSATHREADID tid;
  int rc;
  up_open_current_thread(&tid, &e);
  rc = P.lpWSPSend(s, &b, 1, &sent, 0, NULL, NULL, &tid, &e);
  ERRNO_SET(rc, e, "WSPSend");
  CHECK(rc == 0 && sent == b.len, "WSPSend failed (rc %d, error %d, %lu sent)", rc, e, (unsigned long)sent);
}

/* An overlapped WSPRecv.  The thread id lives only for the call (SPI.md): it
 * is scribbled over when the call returns, so a provider that kept the
 * pointer would queue its APC nowhere.  Returns rc; *e the error. */
static int ov_recv(SOCKET s, WSABUF *b, DWORD n, LPWSAOVERLAPPED ov, LPWSAOVERLAPPED_COMPLETION_ROUTINE routine, INT *e) {
  WSATHREADID tid;
  DWORD got = 0xdeadbeef, flags = 0;
  int rc;
  *e = 0;
  up_open_current_thread(&tid, e);
  rc = P.lpWSPRecv(s, b, n, &got, &flags, ov, routine, &tid, e);
  memset(&tid, 0xdd, sizeof tid);
  ERRNO_SET(rc, *e, "WSPRecv");
  return rc;
}

static void expect_pending(int rc, INT e, LPWSAOVERLAPPED ov, SOCKET s) {
  DWORD bytes = 0, flags = 0;
  INT e2 = 0;
  BOOL ok;
  CHECK(rc == SOCKET_ERROR && e == WSA_IO_PENDING, "overlapped WSPRecv: rc %d error %d, not WSA_IO_PENDING", rc, e);
  CHECK(ov->Internal == WSS_OPERATION_IN_PROGRESS, "pending: Internal is %#lx, not 0x103", (unsigned long)ov->Internal);
  CHECK(ov->InternalHigh == 0, "pending: InternalHigh is %lu, not 0", (unsigned long)ov->InternalHigh);
  ok = P.lpWSPGetOverlappedResult(s, ov, &bytes, FALSE, &flags, &e2);
  CHECK(!ok && e2 == WSA_IO_INCOMPLETE, "pending: WSPGetOverlappedResult(fWait=FALSE) gave %d, error %d, not WSA_IO_INCOMPLETE", ok, e2);
}

/* the fields SPI.md says the provider writes, and ws2_32's own */
static void expect_fields(LPWSAOVERLAPPED ov, DWORD error, DWORD bytes) {
  CHECK(ov->OffsetHigh == error, "completed: OffsetHigh (the error) is %lu, not %lu", (unsigned long)ov->OffsetHigh, (unsigned long)error);
  CHECK(ov->InternalHigh == bytes, "completed: InternalHigh is %lu, not %lu bytes", (unsigned long)ov->InternalHigh, (unsigned long)bytes);
  CHECK(ov->Internal != WSS_OPERATION_IN_PROGRESS, "completed: Internal still 0x103");
  CHECK(ov->Offset == 0, "completed: Offset (the flags) is %#lx, not 0", (unsigned long)ov->Offset);
}

/* completion routines: what each call saw */
static volatile int routine_runs;
static DWORD routine_error, routine_bytes, routine_flags;
static LPWSAOVERLAPPED routine_ov;
static SOCKET routine_sock;
static int routine_handle_live;
static void CALLBACK routine(DWORD error, DWORD bytes, LPWSAOVERLAPPED ov, DWORD flags) {
  routine_error = error;
  routine_bytes = bytes;
  routine_ov = ov;
  routine_flags = flags;
  routine_handle_live = routine_sock ? handle_live(routine_sock) : 1;
  routine_runs++;
}

static int completions_for(LPWSAOVERLAPPED ov) {
  int n = 0;
  pthread_mutex_lock(&H);
  for (int i = 0; i < n_completions; i++) n += completions[i].ov == ov;
  pthread_mutex_unlock(&H);
  return n;
}

static void cleanup_all(int expect_handles_left) {
  INT e = 0;
  int rc = P.lpWSPCleanup(&e);
  CHECK(rc == 0, "WSPCleanup failed (%d)", e);
  /* IFS handles are the provider's own: ws2_32 forgets them with it */
  pthread_mutex_lock(&H);
  for (int i = 0; i < MAX_HANDLES; i++)
    if (handles[i].ifs) handles[i].live = 0;
  pthread_mutex_unlock(&H);
  CHECK(live_handles() == expect_handles_left, "after the last WSPCleanup %d handles are still registered", live_handles());
}

/* ---- scenarios ------------------------------------------------------------------ */
static void s_startup(void) {
  INT e = 0;
  int rc = startup();
  CHECK(rc == 0, "WSPStartup failed (%d)", rc);
  rc = P.lpWSPCleanup(&e);
  CHECK(rc == 0, "WSPCleanup failed (%d)", e);
  rc = P.lpWSPCleanup(&e);
  CHECK(rc == SOCKET_ERROR && e == WSANOTINITIALISED, "a WSPCleanup too many gave rc %d error %d", rc, e);
  pass("WSPStartup 2.2, 30 entries, a description; one WSPCleanup each");
}

static void s_startup_count(void) {
  INT e = 0;
  SOCKET s;
  for (int i = 0; i < 3; i++) CHECK(startup() == 0, "WSPStartup %d failed", i + 1);
  for (int i = 0; i < 2; i++) {
    CHECK(P.lpWSPCleanup(&e) == 0, "WSPCleanup %d failed (%d)", i + 1, e);
    s = fh_socket(SOCK_STREAM);   /* still started */
    CHECK(P.lpWSPCloseSocket(s, &e) == 0, "WSPCloseSocket failed (%d)", e);
  }
  CHECK(P.lpWSPCleanup(&e) == 0, "the third WSPCleanup failed (%d)", e);
  CHECK(P.lpWSPCleanup(&e) == SOCKET_ERROR && e == WSANOTINITIALISED, "a fourth WSPCleanup gave error %d", e);
  CHECK(live_handles() == 0, "%d handles left after the last cleanup", live_handles());
  pass("3 startups, 3 cleanups, the fourth refused");
}

static void s_handles(void) {
  INT e = 0;
  DWORD_PTR ctx = 0;
  SOCKET s, t;
  struct sockaddr_in sa = addr_of(7100);
  started();
  s = fh_socket(SOCK_STREAM);
  t = fh_socket(SOCK_DGRAM);
  CHECK(handle_live(s) && handle_live(t), "the provider's handles are not from WPUCreateSocketHandle");
  CHECK(up_query_socket_handle_context(s, &ctx, &e) == 0 && ctx != 0, "no context for the handle");
  CHECK(P.lpWSPCloseSocket(s, &e) == 0, "WSPCloseSocket failed (%d)", e);
  CHECK(!handle_live(s), "WSPCloseSocket did not call WPUCloseSocketHandle");
  CHECK(P.lpWSPBind(s, (struct sockaddr *)&sa, sizeof sa, &e) == SOCKET_ERROR && e == WSAENOTSOCK,
        "a call on the closed handle gave error %d, not WSAENOTSOCK", e);
  CHECK(P.lpWSPBind(0x12345, (struct sockaddr *)&sa, sizeof sa, &e) == SOCKET_ERROR && e == WSAENOTSOCK,
        "a call on a handle nobody made gave error %d", e);
  CHECK(P.lpWSPBind(t, (struct sockaddr *)&sa, sizeof sa, &e) == 0, "WSPBind on the live socket failed (%d)", e);
  cleanup_all(0);
  pass("handles from WPUCreateSocketHandle, closed with WPUCloseSocketHandle, stale ones WSAENOTSOCK");
}

/* The context is whatever the provider gave: the host hands back exactly that
 * value, and a provider that finds its socket by it must not need more. */
static void s_context(void) {
  INT e = 0;
  SOCKET a, b;
  DWORD_PTR ctx_a = 0, ctx_b = 0;
  WSABUF wb;
  char buf[16];
  DWORD got = 0, flags = 0;
  WSATHREADID tid;
  started();
  stream_pair(&a, &b);
  up_query_socket_handle_context(a, &ctx_a, &e);
  up_query_socket_handle_context(b, &ctx_b, &e);
  CHECK(ctx_a != ctx_b, "two sockets share context %#lx", (unsigned long)ctx_a);
  /* swap the contexts in the host's table: the provider must follow them */
  pthread_mutex_lock(&H);
  find_handle(a)->ctx = ctx_b;
  find_handle(b)->ctx = ctx_a;
  pthread_mutex_unlock(&H);
  wb.len = sizeof buf;
  wb.buf = buf;
  up_open_current_thread(&tid, &e);
  /* each handle now carries the other's context: lwsp must refuse both */
  int rc = P.lpWSPRecv(b, &wb, 1, &got, &flags, NULL, NULL, &tid, &e);
  ERRNO_SET(rc, e, "WSPRecv");
  CHECK(rc == SOCKET_ERROR && e == WSAENOTSOCK, "a handle whose context names another socket was accepted (rc %d, error %d)", rc, e);
  rc = P.lpWSPSend(a, &wb, 1, &got, 0, NULL, NULL, &tid, &e);
  CHECK(rc == SOCKET_ERROR && e == WSAENOTSOCK, "a handle whose context names another socket was accepted (rc %d, error %d)", rc, e);
  pthread_mutex_lock(&H);
  find_handle(a)->ctx = ctx_a;
  find_handle(b)->ctx = ctx_b;
  pthread_mutex_unlock(&H);
  send_text(a, "x");
  rc = P.lpWSPRecv(b, &wb, 1, &got, &flags, NULL, NULL, &tid, &e);
  CHECK(rc == 0 && got == 1 && buf[0] == 'x', "with its own context back the socket did not receive (rc %d, error %d)", rc, e);
  cleanup_all(0);
  pass("the socket is found by exactly its context, and a mismatched one is refused");
}

static void s_ov_event(void) {
  SOCKET a, b;
  WSAOVERLAPPED ov;
  WSABUF wb;
  char buf[32];
  INT e = 0;
  DWORD bytes = 0, flags = 0;
  int rc;
  started();
  stream_pair(&a, &b);
  memset(&ov, 0, sizeof ov);
  ov.hEvent = up_create_event(&e);
  wb.len = sizeof buf;
  wb.buf = buf;
  rc = ov_recv(a, &wb, 1, &ov, NULL, &e);
  expect_pending(rc, e, &ov, a);
  send_text(b, "hello");
  CHECK(wait_event(ov.hEvent, LIMIT_MS, 0) == 1, "the event was never signalled: the completion was lost");
  expect_fields(&ov, 0, 5);
  CHECK(memcmp(buf, "hello", 5) == 0, "wrong data");
  CHECK(completions_for(&ov) == 1, "WPUCompleteOverlappedRequest was called %d times for it", completions_for(&ov));
  CHECK(P.lpWSPGetOverlappedResult(a, &ov, &bytes, FALSE, &flags, &e) && bytes == 5,
        "WSPGetOverlappedResult after completion failed (error %d, %lu bytes)", e, (unsigned long)bytes);
  cleanup_all(0);
  pass("pending with Internal 0x103, completed by WPUCompleteOverlappedRequest, fields written");
}

/* Under a host whose WPUCompleteOverlappedRequest is a stub (built with
 * -DFH_STUB_COMPLETE), lwsp notices that the completion was not delivered,
 * logs it, and signals the call's event itself through WPUSetEvent. */
static void s_stub_complete(void) {
  SOCKET a, b;
  WSAOVERLAPPED ov;
  WSABUF wb;
  char buf[32], p[512], line[1024];
  INT e = 0;
  DWORD bytes = 0, flags = 0;
  FILE *f;
  int rc, said = 0;
  started();
  stream_pair(&a, &b);
  memset(&ov, 0, sizeof ov);
  ov.hEvent = up_create_event(&e);
  wb.len = sizeof buf;
  wb.buf = buf;
  rc = ov_recv(a, &wb, 1, &ov, NULL, &e);
  expect_pending(rc, e, &ov, a);
  send_text(b, "hello");
  CHECK(wait_event(ov.hEvent, LIMIT_MS, 0) == 1, "the event was never signalled: lwsp trusted the stub's 0");
  expect_fields(&ov, 0, 5);
  CHECK(memcmp(buf, "hello", 5) == 0, "wrong data");
  CHECK(n_stub_calls >= 1, "the stub WPUCompleteOverlappedRequest was never called");
  CHECK(P.lpWSPGetOverlappedResult(a, &ov, &bytes, FALSE, &flags, &e) && bytes == 5,
        "WSPGetOverlappedResult after completion failed (error %d, %lu bytes)", e, (unsigned long)bytes);
  snprintf(p, sizeof p, "%s" SEP "log", tmpdir);
  if ((f = fopen(p, "r")) != NULL) {
    while (fgets(line, sizeof line, f))
      if (strstr(line, "the completion was not delivered")) said = 1;
    fclose(f);
  }
  CHECK(said, "no log line says the completion was not delivered");
  cleanup_all(0);
  pass("the stub's undelivered completion was noticed, logged, and its event signalled by lwsp");
}

static void s_ov_routine(void) {
  SOCKET a, b;
  WSAOVERLAPPED ov;
  WSABUF wb;
  char buf[32];
  INT e = 0;
  int rc;
  started();
  stream_pair(&a, &b);
  memset(&ov, 0, sizeof ov);
  ov.hEvent = up_create_event(&e);
  wb.len = sizeof buf;
  wb.buf = buf;
  rc = ov_recv(a, &wb, 1, &ov, routine, &e);
  expect_pending(rc, e, &ov, a);
  send_text(b, "routine");
  CHECK(routine_runs == 0, "the routine ran outside an alertable wait");
  CHECK(wait_flag(&routine_runs, LIMIT_MS), "the completion routine never ran");
  CHECK(routine_runs == 1 && routine_ov == &ov && routine_error == 0 && routine_bytes == 7 && routine_flags == 0,
        "routine(%lu, %lu, %p, %lu) ran %d times", (unsigned long)routine_error, (unsigned long)routine_bytes,
        (void *)routine_ov, (unsigned long)routine_flags, routine_runs);
  expect_fields(&ov, 0, 7);
  CHECK(completions_for(&ov) == 0, "WPUCompleteOverlappedRequest was called for a call with a routine");
  CHECK(wait_event(ov.hEvent, 0, 0) == 0, "the event was signalled for a call with a routine");
  cleanup_all(0);
  pass("the routine ran once, by WPUQueueApc, in this thread's alertable wait; no event");
}

/* data already there: the call may finish at once, but still notifies */
static void s_ov_at_once(void) {
  SOCKET a, b;
  WSAOVERLAPPED ov;
  WSABUF wb;
  char buf[32];
  INT e = 0;
  int rc;
  started();
  stream_pair(&a, &b);
  send_text(b, "ready");
  memset(&ov, 0, sizeof ov);
  ov.hEvent = up_create_event(&e);
  wb.len = sizeof buf;
  wb.buf = buf;
  rc = ov_recv(a, &wb, 1, &ov, NULL, &e);
  CHECK(rc == 0 || e == WSA_IO_PENDING, "overlapped WSPRecv with data queued failed (%d)", e);
  CHECK(wait_event(ov.hEvent, LIMIT_MS, 0) == 1, "finished at once but the event was never signalled");
  expect_fields(&ov, 0, 5);
  CHECK(completions_for(&ov) == 1, "WPUCompleteOverlappedRequest called %d times", completions_for(&ov));
  cleanup_all(0);
  pass("finished at once (rc %d), notified through the event all the same", rc);
}

static void s_ov_fail_at_once(void) {
  SOCKET s;
  WSAOVERLAPPED ov;
  WSABUF wb;
  char buf[8];
  INT e = 0;
  int rc;
  started();
  s = fh_socket(SOCK_STREAM);
  memset(&ov, 0, sizeof ov);
  ov.hEvent = up_create_event(&e);
  wb.len = sizeof buf;
  wb.buf = buf;
  rc = ov_recv(s, &wb, 1, &ov, routine, &e);
  CHECK(rc == SOCKET_ERROR && e == WSAENOTCONN, "a receive on an unconnected socket gave rc %d error %d", rc, e);
  CHECK(ov.OffsetHigh == WSAENOTCONN, "failed at once: OffsetHigh is %lu", (unsigned long)ov.OffsetHigh);
  wait_event(NULL, 100, 1);   /* any APC would run here */
  CHECK(routine_runs == 0, "a call that failed at once ran its routine");
  CHECK(completions_for(&ov) == 0 && wait_event(ov.hEvent, 0, 0) == 0, "a call that failed at once notified");
  cleanup_all(0);
  pass("failed at once with WSAENOTCONN, fields written, nobody notified");
}

static void s_dgram_event(void) {
  SOCKET a, b;
  WSAOVERLAPPED ov;
  WSABUF wb;
  char buf[32];
  INT e = 0, fromlen;
  struct sockaddr_in sa = addr_of(0), from;
  DWORD got = 0, flags = 0, sent = 0;
  WSATHREADID tid;
  int rc;
  started();
  a = fh_socket(SOCK_DGRAM);
  b = fh_socket(SOCK_DGRAM);
  CHECK(P.lpWSPBind(a, (struct sockaddr *)&sa, sizeof sa, &e) == 0, "WSPBind failed (%d)", e);
  fromlen = sizeof sa;
  CHECK(P.lpWSPGetSockName(a, (struct sockaddr *)&sa, &fromlen, &e) == 0, "WSPGetSockName failed (%d)", e);
  memset(&ov, 0, sizeof ov);
  ov.hEvent = up_create_event(&e);
  wb.len = sizeof buf;
  wb.buf = buf;
  fromlen = sizeof from;
  memset(&from, 0, sizeof from);
  up_open_current_thread(&tid, &e);
  rc = P.lpWSPRecvFrom(a, &wb, 1, &got, &flags, (struct sockaddr *)&from, &fromlen, &ov, NULL, &tid, &e);
  expect_pending(rc, e, &ov, a);
  wb.len = 4;
  wb.buf = "ping";
  rc = P.lpWSPSendTo(b, &wb, 1, &sent, 0, (struct sockaddr *)&sa, sizeof sa, NULL, NULL, &tid, &e);
  CHECK(rc == 0 && sent == 4, "WSPSendTo failed (%d)", e);
  CHECK(wait_event(ov.hEvent, LIMIT_MS, 0) == 1, "the datagram's completion was lost");
  expect_fields(&ov, 0, 4);
  CHECK(from.sin_family == AF_INET && from.sin_addr.S_un.S_addr == 0x0100007f && from.sin_port != 0,
        "the sender's address was not written (family %d)", from.sin_family);
  cleanup_all(0);
  pass("an overlapped WSPRecvFrom completed by event, sender's address written");
}

/* wsp.wait(key, 0.05) in a handler: every such wait ends, however many came before */
static void waits(int with_routine) {
  SOCKET s;
  INT e = 0;
  int rc;
  started();
  s = fh_socket(SOCK_STREAM);
  for (int round = 1; round <= 3; round++) {
    WSAOVERLAPPED ov;
    WSABUF wb;
    char buf[32];
    memset(&ov, 0, sizeof ov);
    memset(buf, 0, sizeof buf);
    ov.hEvent = up_create_event(&e);
    wb.len = sizeof buf;
    wb.buf = buf;
    routine_runs = 0;
    rc = ov_recv(s, &wb, 1, &ov, with_routine ? routine : NULL, &e);
    expect_pending(rc, e, &ov, s);
    if (with_routine) CHECK(wait_flag(&routine_runs, LIMIT_MS), "round %d: the handler's 50 ms wait never timed out", round);
    else CHECK(wait_event(ov.hEvent, LIMIT_MS, 0) == 1, "round %d: the handler's 50 ms wait never timed out", round);
    CHECK(strcmp(buf, "timeout") == 0, "round %d: the handler's wait returned '%s'", round, buf);
    up_close_event(ov.hEvent, &e);
    /* a timer that has fired leaves the service thread with nothing due */
    if (round == 1) wait_event(NULL, 100, 1);
  }
  cleanup_all(0);
  pass("three handlers' wsp.wait(key, 0.05) each timed out");
}
static void s_wait_timeout(void) { waits(0); }
static void s_wait_timeout_routine(void) { waits(1); }

/* An IFS provider's handles are its own, not the host's: no
 * WPUCompleteOverlappedRequest for them (this host refuses it, as ws2_32
 * does); what lwsp does instead is in docs/api.md. */
static void ifs(int pend, int with_routine) {
  SOCKET s;
  WSAOVERLAPPED ov;
  WSABUF wb;
  char buf[32];
  INT e = 0;
  int rc;
  set_env("FH_WAIT", pend ? "1" : "0");   /* read by spec/providers/ifs_own.lua */
  started();
  s = fh_socket(SOCK_STREAM);
  pthread_mutex_lock(&H);
  CHECK(find_handle(s) && find_handle(s)->ifs, "the IFS socket's handle was not registered with WPUModifyIFSHandle");
  pthread_mutex_unlock(&H);
  memset(&ov, 0, sizeof ov);
  memset(buf, 0, sizeof buf);
  ov.hEvent = up_create_event(&e);
  wb.len = sizeof buf;
  wb.buf = buf;
  rc = ov_recv(s, &wb, 1, &ov, with_routine ? routine : NULL, &e);
  if (pend) expect_pending(rc, e, &ov, s);
  else CHECK(rc == 0 || e == WSA_IO_PENDING, "overlapped WSPRecv on the IFS socket failed (%d)", e);
  if (with_routine) CHECK(wait_flag(&routine_runs, LIMIT_MS), "the IFS socket's completion routine never ran");
  else CHECK(wait_event(ov.hEvent, LIMIT_MS, 0) == 1, "the IFS socket's completion was lost (%d refused by the host)", n_refused);
  CHECK(n_refused == 0, "lwsp called WPUCompleteOverlappedRequest for IFS handle %#lx", (unsigned long)last_refused);
  expect_fields(&ov, 0, 3);
  CHECK(memcmp(buf, "ifs", 3) == 0, "wrong data");
  cleanup_all(0);
  pass("an IFS socket's overlapped receive completed (%s) with no WPUCompleteOverlappedRequest",
       with_routine ? "routine" : "event");
}
static void s_ifs_event(void) { ifs(0, 0); }
static void s_ifs_pending(void) { ifs(1, 0); }
static void s_ifs_routine(void) { ifs(1, 1); }

/* The provider needs WPUCompleteOverlappedRequest; a host without it must
 * hear so from WSPStartup, not find every completion lost later. */
static void s_no_complete(void) {
  char p[512], line[1024];
  FILE *f;
  int rc = startup(), said = 0;
  CHECK(rc == WSAEPROVIDERFAILEDINIT, "WSPStartup under a host with no WPUCompleteOverlappedRequest gave %d", rc);
  snprintf(p, sizeof p, "%s" SEP "log", tmpdir);
  if ((f = fopen(p, "r")) != NULL) {
    while (fgets(line, sizeof line, f))
      if (strstr(line, "WPUCompleteOverlappedRequest")) said = 1;
    fclose(f);
  }
  CHECK(said, "WSPStartup failed without a log line naming WPUCompleteOverlappedRequest");
  CHECK(live_handles() == 0, "a failed WSPStartup left handles");
  pass("WSAEPROVIDERFAILEDINIT, and the log says why");
}

static void s_recv_null(void) {
  SOCKET a, b;
  INT e = 0;
  WSAOVERLAPPED ov;
  WSABUF empty[1] = {{0, NULL}};
  DWORD got = 0, flags = 0;
  WSATHREADID tid;
  INT fromlen;
  struct sockaddr_in from;
  int rc;
  started();
  stream_pair(&a, &b);
  send_text(b, "data");
  up_open_current_thread(&tid, &e);
  rc = P.lpWSPRecv(a, NULL, 0, &got, &flags, NULL, NULL, &tid, &e);
  ERRNO_SET(rc, e, "WSPRecv");
  CHECK(rc == SOCKET_ERROR && e == WSAEFAULT, "WSPRecv(NULL, 0) gave rc %d (%lu bytes), error %d, not WSAEFAULT",
        rc, (unsigned long)got, e);
  rc = P.lpWSPRecv(a, empty, 0, &got, &flags, NULL, NULL, &tid, &e);
  CHECK(rc == SOCKET_ERROR && e == WSAEINVAL, "WSPRecv(buffers, 0) gave rc %d, error %d, not WSAEINVAL", rc, e);
  fromlen = sizeof from;
  rc = P.lpWSPRecvFrom(a, NULL, 0, &got, &flags, (struct sockaddr *)&from, &fromlen, NULL, NULL, &tid, &e);
  CHECK(rc == SOCKET_ERROR && e == WSAEFAULT, "WSPRecvFrom(NULL, 0) gave rc %d, error %d", rc, e);
  rc = P.lpWSPSend(b, NULL, 0, &got, 0, NULL, NULL, &tid, &e);
  CHECK(rc == SOCKET_ERROR && e == WSAEFAULT, "WSPSend(NULL, 0) gave rc %d, error %d", rc, e);
  memset(&ov, 0, sizeof ov);
  ov.hEvent = up_create_event(&e);
  rc = ov_recv(a, NULL, 0, &ov, NULL, &e);
  CHECK(rc == SOCKET_ERROR && e == WSAEFAULT, "overlapped WSPRecv(NULL, 0) gave rc %d, error %d", rc, e);
  CHECK(completions_for(&ov) == 0, "the refused overlapped call notified");
  /* the data is still there for a real receive */
  {
    char buf[8];
    WSABUF wb = {sizeof buf, buf};
    rc = P.lpWSPRecv(a, &wb, 1, &got, &flags, NULL, NULL, &tid, &e);
    CHECK(rc == 0 && got == 4, "the data did not survive the refused calls (rc %d, %lu bytes)", rc, (unsigned long)got);
  }
  cleanup_all(0);
  pass("NULL buffers: WSAEFAULT; no buffers: WSAEINVAL; never 0 bytes");
}

/* A stream receive of 0 bytes means the peer closed, and only then. */
static void s_recv_eof(void) {
  SOCKET a, b;
  INT e = 0;
  char buf[8];
  WSABUF wb = {sizeof buf, buf};
  DWORD got = 1, flags = 0;
  WSATHREADID tid;
  int rc;
  started();
  stream_pair(&a, &b);
  CHECK(P.lpWSPCloseSocket(b, &e) == 0, "WSPCloseSocket failed (%d)", e);
  up_open_current_thread(&tid, &e);
  rc = P.lpWSPRecv(a, &wb, 1, &got, &flags, NULL, NULL, &tid, &e);
  CHECK(rc == 0 && got == 0, "a receive after the peer closed gave rc %d error %d, %lu bytes", rc, e, (unsigned long)got);
  cleanup_all(0);
  pass("0 bytes after the peer closed");
}

/* Closing with an overlapped receive outstanding: WSA_OPERATION_ABORTED,
 * delivered while the handle is still the host's, closed after. */
static void s_close_pending(void) {
  SOCKET a, b, c, d;
  WSAOVERLAPPED ov, ov2;
  WSABUF wb;
  char buf[8];
  INT e = 0;
  int rc;
  started();
  stream_pair(&a, &b);
  stream_pair(&c, &d);
  memset(&ov, 0, sizeof ov);
  memset(&ov2, 0, sizeof ov2);
  ov.hEvent = up_create_event(&e);
  wb.len = sizeof buf;
  wb.buf = buf;
  rc = ov_recv(a, &wb, 1, &ov, NULL, &e);
  expect_pending(rc, e, &ov, a);
  routine_sock = c;
  rc = ov_recv(c, &wb, 1, &ov2, routine, &e);
  expect_pending(rc, e, &ov2, c);
  CHECK(P.lpWSPCloseSocket(a, &e) == 0, "WSPCloseSocket failed (%d)", e);
  CHECK(wait_event(ov.hEvent, LIMIT_MS, 0) == 1, "the aborted receive was never completed");
  expect_fields(&ov, WSA_OPERATION_ABORTED, 0);
  CHECK(completions_for(&ov) == 1, "WPUCompleteOverlappedRequest was called %d times", completions_for(&ov));
  CHECK(!handle_live(a), "the closed socket's handle was never given back");
  CHECK(P.lpWSPCloseSocket(c, &e) == 0, "WSPCloseSocket failed (%d)", e);
  CHECK(handle_live(c), "the handle was closed before its completion routine was delivered");
  CHECK(wait_flag(&routine_runs, LIMIT_MS), "the aborted receive's routine never ran");
  CHECK(routine_error == WSA_OPERATION_ABORTED && routine_handle_live, "routine saw error %lu, handle live %d",
        (unsigned long)routine_error, routine_handle_live);
  CHECK(!handle_live(c), "the handle was not closed after its last completion");
  cleanup_all(0);
  pass("aborted with WSA_OPERATION_ABORTED, handles closed after the last completion");
}

/* The last WSPCleanup aborts what is pending and gives every handle back. */
static void s_cleanup_pending(void) {
  SOCKET a, b;
  WSAOVERLAPPED ov;
  WSABUF wb;
  char buf[8];
  INT e = 0;
  int rc;
  started();
  stream_pair(&a, &b);
  memset(&ov, 0, sizeof ov);
  ov.hEvent = up_create_event(&e);
  wb.len = sizeof buf;
  wb.buf = buf;
  rc = ov_recv(a, &wb, 1, &ov, NULL, &e);
  expect_pending(rc, e, &ov, a);
  rc = P.lpWSPCleanup(&e);
  CHECK(rc == 0, "WSPCleanup failed (%d)", e);
  CHECK(wait_event(ov.hEvent, 0, 0) == 1, "WSPCleanup returned with a receive still pending");
  expect_fields(&ov, WSA_OPERATION_ABORTED, 0);
  CHECK(live_handles() == 0, "%d handles left after WSPCleanup", live_handles());
  pass("the pending receive aborted, every handle given back");
}

static void s_event_select(void) {
  SOCKET a, b;
  INT e = 0;
  WSAEVENT ev;
  WSANETWORKEVENTS ne;
  started();
  stream_pair(&a, &b);
  ev = up_create_event(&e);
  CHECK(P.lpWSPEventSelect(a, ev, FD_READ | FD_CLOSE, &e) == 0, "WSPEventSelect failed (%d)", e);
  send_text(b, "ev");
  CHECK(wait_event(ev, LIMIT_MS, 0) == 1, "FD_READ never signalled the event");
  memset(&ne, 0, sizeof ne);
  CHECK(P.lpWSPEnumNetworkEvents(a, ev, &ne, &e) == 0, "WSPEnumNetworkEvents failed (%d)", e);
  CHECK(ne.lNetworkEvents & FD_READ, "FD_READ not reported (%#lx)", (unsigned long)ne.lNetworkEvents);
  CHECK(ne.iErrorCode[0] == 0, "FD_READ error %d", ne.iErrorCode[0]);
  CHECK(wait_event(ev, 0, 0) == 0, "WSPEnumNetworkEvents did not reset the event (WPUResetEvent)");
  cleanup_all(0);
  pass("FD_READ set the host's event, enumerated and reset");
}

static void s_async_select(void) {
  SOCKET a, b;
  INT e = 0;
  HWND hwnd = (HWND)(uintptr_t)0x4242;
  int found = 0;
  struct timespec ts;
  started();
  stream_pair(&a, &b);
  CHECK(P.lpWSPAsyncSelect(a, hwnd, 0x401, FD_READ, &e) == 0, "WSPAsyncSelect failed (%d)", e);
  send_text(b, "msg");
  deadline_in(&ts, LIMIT_MS);
  pthread_mutex_lock(&H);
  for (;;) {
    for (int i = 0; i < n_msgs; i++)
      if (msgs[i].hwnd == hwnd && msgs[i].msg == 0x401 && msgs[i].w == a && msgs[i].l == LWSP_SELECTREPLY(FD_READ, 0)) found = 1;
    if (found || pthread_cond_timedwait(&HC, &H, &ts) != 0) break;
  }
  pthread_mutex_unlock(&H);
  CHECK(found, "no WPUPostMessage(hwnd, 0x401, s, WSAMAKESELECTREPLY(FD_READ, 0)) (%d messages)", n_msgs);
  cleanup_all(0);
  pass("FD_READ posted with WPUPostMessage, wParam the host's handle");
}

static void s_select(void) {
  SOCKET a, b;
  INT e = 0;
  wsp_fd_set rs;
  wsp_timeval tv = {3, 0};
  int rc;
  started();
  stream_pair(&a, &b);
  send_text(b, "sel");
  rs.fd_count = 2;
  rs.fd_array[0] = a;
  rs.fd_array[1] = b;
  rc = P.lpWSPSelect(0, &rs, NULL, NULL, &tv, &e);
  ERRNO_SET(rc, e, "WSPSelect");
  CHECK(rc == 1 && rs.fd_count == 1 && rs.fd_array[0] == a, "WSPSelect gave %d (%u sockets)", rc, rs.fd_count);
  cleanup_all(0);
  pass("WSPSelect reported exactly the readable handle");
}

/* a blocking receive polls the thread's blocking hook; the hook cancels it */
static void s_blocking_hook(void) {
  SOCKET a, b;
  INT e = 0;
  char buf[8];
  WSABUF wb = {sizeof buf, buf};
  DWORD got = 0, flags = 0;
  WSATHREADID tid;
  int rc;
  started();
  stream_pair(&a, &b);
  hook_procs = &P;
  want_hook = 1;
  up_open_current_thread(&tid, &e);
  rc = P.lpWSPRecv(a, &wb, 1, &got, &flags, NULL, NULL, &tid, &e);
  want_hook = 0;
  ERRNO_SET(rc, e, "WSPRecv");
  CHECK(hook_calls >= 2, "the blocking hook was polled %d times", hook_calls);
  CHECK(hook_cancel_rc == 0, "WSPCancelBlockingCall from the hook failed");
  CHECK(rc == SOCKET_ERROR && e == WSAEINTR, "the cancelled receive gave rc %d error %d, not WSAEINTR", rc, e);
  cleanup_all(0);
  pass("the hook was polled %d times, and its WSPCancelBlockingCall ended the call with WSAEINTR", hook_calls);
}

/* A handler that fails with no error code still fails with one. */
static void s_errno_zero(void) {
  SOCKET s;
  INT e = 0;
  struct sockaddr_in sa = addr_of(7240);
  int rc;
  started();
  s = fh_socket(SOCK_STREAM);
  rc = P.lpWSPBind(s, (struct sockaddr *)&sa, sizeof sa, &e);
  CHECK(rc == SOCKET_ERROR, "a handler returning (nil, 0) succeeded");
  CHECK(e != 0, "SOCKET_ERROR with errno 0");
  rc = P.lpWSPListen(s, 1, &e);
  CHECK(rc == SOCKET_ERROR && e != 0, "a handler returning (nil, -5) gave rc %d errno %d", rc, e);
  rc = P.lpWSPShutdown(s, 1, &e);
  CHECK(rc == SOCKET_ERROR && e != 0, "a handler returning (false, 'nonsense') gave rc %d errno %d", rc, e);
  cleanup_all(0);
  pass("every failure carries an error code");
}

/* Stream receives complete in the order they were posted. */
static void s_ov_order(void) {
  SOCKET a, b;
  WSAOVERLAPPED ov[3];
  WSABUF wb[3];
  char buf[3][4];
  INT e = 0;
  int rc;
  started();
  stream_pair(&a, &b);
  for (int i = 0; i < 3; i++) {
    memset(&ov[i], 0, sizeof ov[i]);
    ov[i].hEvent = up_create_event(&e);
    wb[i].len = 4;
    wb[i].buf = buf[i];
    rc = ov_recv(a, &wb[i], 1, &ov[i], NULL, &e);
    expect_pending(rc, e, &ov[i], a);
  }
  send_text(b, "aaaa");
  send_text(b, "bbbb");
  send_text(b, "cccc");
  for (int i = 0; i < 3; i++) {
    CHECK(wait_event(ov[i].hEvent, LIMIT_MS, 0) == 1, "receive %d never completed", i + 1);
    expect_fields(&ov[i], 0, 4);
    CHECK(memcmp(buf[i], "aaaabbbbcccc" + 4 * i, 4) == 0, "receive %d got '%.4s': out of order", i + 1, buf[i]);
  }
  cleanup_all(0);
  pass("three receives posted together completed in the order posted");
}

static void s_ov_send(void) {
  SOCKET a, b;
  WSAOVERLAPPED ov;
  WSABUF wb[2] = {{3, "abc"}, {4, "defg"}};
  DWORD sent = 0;
  INT e = 0;
  WSATHREADID tid;
  char buf[16];
  WSABUF rb = {sizeof buf, buf};
  DWORD got = 0, flags = 0;
  int rc;
  started();
  stream_pair(&a, &b);
  memset(&ov, 0, sizeof ov);
  ov.hEvent = up_create_event(&e);
  up_open_current_thread(&tid, &e);
  rc = P.lpWSPSend(b, wb, 2, &sent, 0, &ov, NULL, &tid, &e);
  ERRNO_SET(rc, e, "WSPSend");
  CHECK(rc == 0 || e == WSA_IO_PENDING, "overlapped WSPSend failed (%d)", e);
  CHECK(wait_event(ov.hEvent, LIMIT_MS, 0) == 1, "the overlapped send never completed");
  expect_fields(&ov, 0, 7);
  rc = P.lpWSPRecv(a, &rb, 1, &got, &flags, NULL, NULL, &tid, &e);
  CHECK(rc == 0 && got == 7 && memcmp(buf, "abcdefg", 7) == 0, "the gathered send arrived as %lu bytes", (unsigned long)got);
  cleanup_all(0);
  pass("an overlapped send of two buffers completed by event with 7 bytes");
}

/* The routine runs on the thread that issued the call, in its alertable wait,
 * and on no other thread's. */
static volatile int issuer_ready, issuer_done;
static pthread_t routine_thread;
static SOCKET issuer_sock;
static WSAOVERLAPPED issuer_ov;
static char issuer_buf[8];
static void CALLBACK issuer_routine(DWORD error, DWORD bytes, LPWSAOVERLAPPED ov, DWORD flags) {
  (void)error; (void)bytes; (void)ov; (void)flags;
  routine_thread = pthread_self();
  routine_runs++;
}
static void *issuer(void *arg) {
  WSABUF wb = {sizeof issuer_buf, issuer_buf};
  INT e = 0;
  int rc;
  (void)arg;
  rc = ov_recv(issuer_sock, &wb, 1, &issuer_ov, issuer_routine, &e);
  issuer_ready = rc == SOCKET_ERROR && e == WSA_IO_PENDING ? 1 : -1;
  wait_flag(&routine_runs, LIMIT_MS);
  issuer_done = 1;
  return NULL;
}
static void s_apc_thread(void) {
  SOCKET a, b;
  pthread_t t;
  started();
  stream_pair(&a, &b);
  issuer_sock = a;
  memset(&issuer_ov, 0, sizeof issuer_ov);
  pthread_create(&t, NULL, issuer, NULL);
  while (!issuer_ready) wait_event(NULL, 5, 1);
  CHECK(issuer_ready == 1, "the other thread's overlapped receive did not pend");
  send_text(b, "apc");
  /* this thread waits alertably too: the routine must not run here */
  for (int i = 0; i < 100 && !issuer_done; i++) wait_event(NULL, 10, 1);
  pthread_join(t, NULL);
  CHECK(routine_runs == 1, "the routine ran %d times", routine_runs);
  CHECK(pthread_equal(routine_thread, t), "the routine ran on another thread than the one that issued the call");
  cleanup_all(0);
  pass("the routine ran on the issuing thread only");
}

/* WSPGetOverlappedResult with fWait waits for the provider's operation. */
static SOCKET later_sock;
static void *send_later(void *arg) {
  (void)arg;
  wait_event(NULL, 50, 0);
  send_text(later_sock, "late");
  return NULL;
}
static void s_ov_wait(void) {
  SOCKET a, b;
  WSAOVERLAPPED ov;
  WSABUF wb;
  char buf[8];
  INT e = 0;
  DWORD bytes = 0, flags = 0;
  pthread_t t;
  int rc;
  started();
  stream_pair(&a, &b);
  memset(&ov, 0, sizeof ov);
  ov.hEvent = up_create_event(&e);
  wb.len = sizeof buf;
  wb.buf = buf;
  rc = ov_recv(a, &wb, 1, &ov, NULL, &e);
  expect_pending(rc, e, &ov, a);
  later_sock = b;
  pthread_create(&t, NULL, send_later, NULL);
  CHECK(P.lpWSPGetOverlappedResult(a, &ov, &bytes, TRUE, &flags, &e), "WSPGetOverlappedResult(fWait) failed (%d)", e);
  pthread_join(t, NULL);
  CHECK(bytes == 4 && flags == 0, "WSPGetOverlappedResult(fWait) gave %lu bytes, flags %lu", (unsigned long)bytes,
        (unsigned long)flags);
  CHECK(wait_event(ov.hEvent, LIMIT_MS, 0) == 1, "the event was not signalled");
  cleanup_all(0);
  pass("WSPGetOverlappedResult(fWait=TRUE) waited for the 4 bytes");
}

/* A blocking receive on one thread ends when another thread closes the socket. */
static volatile int blocked_rc = 1, blocked_err, blocked_done;
static SOCKET blocked_sock;
static void *blocked_recv(void *arg) {
  char buf[8];
  WSABUF wb = {sizeof buf, buf};
  DWORD got = 0, flags = 0;
  INT e = 0;
  WSATHREADID tid;
  (void)arg;
  up_open_current_thread(&tid, &e);
  blocked_rc = P.lpWSPRecv(blocked_sock, &wb, 1, &got, &flags, NULL, NULL, &tid, &e);
  blocked_err = e;
  pthread_mutex_lock(&H);
  blocked_done = 1;
  pthread_cond_broadcast(&HC);
  pthread_mutex_unlock(&H);
  return NULL;
}
static void s_close_blocked(void) {
  SOCKET a, b;
  pthread_t t;
  INT e = 0;
  started();
  for (int round = 1; round <= 6; round++) {   /* the close races the layer below's wake-up */
    stream_pair(&a, &b);
    blocked_sock = a;
    blocked_rc = 1;
    blocked_done = 0;
    pthread_create(&t, NULL, blocked_recv, NULL);
    wait_event(NULL, 50, 0);   /* let it block (if it has not, the close still must end it) */
    CHECK(P.lpWSPCloseSocket(a, &e) == 0, "WSPCloseSocket failed (%d)", e);
    for (int i = 0; i < LIMIT_MS / 10 && !blocked_done; i++) wait_event(NULL, 10, 0);
    CHECK(blocked_done, "the blocked receive never ended after its socket was closed");
    pthread_join(t, NULL);
    CHECK(blocked_rc == SOCKET_ERROR && blocked_err == WSAEINTR, "round %d: the blocked receive gave rc %d error %d, not WSAEINTR",
          round, blocked_rc, blocked_err);
    CHECK(P.lpWSPCloseSocket(b, &e) == 0, "WSPCloseSocket failed (%d)", e);
  }
  cleanup_all(0);
  pass("six blocked receives ended with WSAEINTR when another thread closed their sockets");
}

static void s_nonblocking(void) {
  SOCKET a, b;
  INT e = 0;
  DWORD on = 1, ret = 0, got = 0, flags = 0;
  char buf[8];
  WSABUF wb = {sizeof buf, buf};
  WSATHREADID tid;
  int rc;
  started();
  stream_pair(&a, &b);
  up_open_current_thread(&tid, &e);
  rc = P.lpWSPIoctl(a, FIONBIO, &on, sizeof on, NULL, 0, &ret, NULL, NULL, &tid, &e);
  CHECK(rc == 0, "FIONBIO failed (%d)", e);
  rc = P.lpWSPRecv(a, &wb, 1, &got, &flags, NULL, NULL, &tid, &e);
  ERRNO_SET(rc, e, "WSPRecv");
  CHECK(rc == SOCKET_ERROR && e == WSAEWOULDBLOCK, "a non-blocking receive with nothing queued gave rc %d error %d", rc, e);
  send_text(b, "nb");
  for (int i = 0; i < 300; i++) {
    rc = P.lpWSPRecv(a, &wb, 1, &got, &flags, NULL, NULL, &tid, &e);
    if (rc == 0 || e != WSAEWOULDBLOCK) break;
    wait_event(NULL, 10, 0);
  }
  CHECK(rc == 0 && got == 2, "the non-blocking receive never got the data (rc %d error %d)", rc, e);
  cleanup_all(0);
  pass("WSAEWOULDBLOCK with nothing queued, the data once it came");
}

/* A datagram longer than the buffer: WSAEMSGSIZE, with what fitted. */
static void s_dgram_truncated(void) {
  SOCKET a, b;
  WSAOVERLAPPED ov;
  WSABUF wb;
  char buf[2];
  INT e = 0, fromlen;
  struct sockaddr_in sa = addr_of(0), from;
  DWORD got = 0, flags = 0, sent = 0;
  WSATHREADID tid;
  int rc;
  started();
  a = fh_socket(SOCK_DGRAM);
  b = fh_socket(SOCK_DGRAM);
  CHECK(P.lpWSPBind(a, (struct sockaddr *)&sa, sizeof sa, &e) == 0, "WSPBind failed (%d)", e);
  fromlen = sizeof sa;
  CHECK(P.lpWSPGetSockName(a, (struct sockaddr *)&sa, &fromlen, &e) == 0, "WSPGetSockName failed (%d)", e);
  memset(&ov, 0, sizeof ov);
  ov.hEvent = up_create_event(&e);
  wb.len = sizeof buf;
  wb.buf = buf;
  fromlen = sizeof from;
  up_open_current_thread(&tid, &e);
  rc = P.lpWSPRecvFrom(a, &wb, 1, &got, &flags, (struct sockaddr *)&from, &fromlen, &ov, NULL, &tid, &e);
  expect_pending(rc, e, &ov, a);
  wb.len = 4;
  wb.buf = "ping";
  rc = P.lpWSPSendTo(b, &wb, 1, &sent, 0, (struct sockaddr *)&sa, sizeof sa, NULL, NULL, &tid, &e);
  CHECK(rc == 0 && sent == 4, "WSPSendTo failed (%d)", e);
  CHECK(wait_event(ov.hEvent, LIMIT_MS, 0) == 1, "the truncated datagram's completion was lost");
  /* the flags: 0, or MSG_PARTIAL where the provider says the rest was cut off */
  CHECK(ov.Offset == 0 || ov.Offset == MSG_PARTIAL, "completed: Offset (the flags) is %#lx", (unsigned long)ov.Offset);
  ov.Offset = 0;
  expect_fields(&ov, WSAEMSGSIZE, 2);
  CHECK(memcmp(buf, "pi", 2) == 0, "the part that fitted was not delivered");
  cleanup_all(0);
  pass("WSAEMSGSIZE in OffsetHigh, the 2 bytes that fitted in InternalHigh");
}

/* WSPAddressToString / WSPStringToAddress: lengths in characters, the NUL counted. */
static void s_address_string(void) {
  struct sockaddr_in sa = addr_of(8080), back;
  WCHAR w[64], text[] = {'1', '2', '7', '.', '0', '.', '0', '.', '1', ':', '8', '0', '8', '0', 0};
  DWORD len = 3;
  INT e = 0, blen = sizeof back;
  WSAPROTOCOL_INFOW pi = *top_tcp;
  int rc;
  started();
  rc = P.lpWSPAddressToString((LPSOCKADDR)&sa, sizeof sa, &pi, w, &len, &e);
  CHECK(rc == SOCKET_ERROR && e == WSAEFAULT && len == 15, "a short buffer gave rc %d error %d, length %lu (15 needed)", rc,
        e, (unsigned long)len);
  len = 64;
  rc = P.lpWSPAddressToString((LPSOCKADDR)&sa, sizeof sa, &pi, w, &len, &e);
  CHECK(rc == 0 && len == 15 && memcmp(w, text, sizeof text) == 0, "WSPAddressToString gave rc %d length %lu", rc,
        (unsigned long)len);
  rc = P.lpWSPStringToAddress(text, AF_INET, &pi, (LPSOCKADDR)&back, &blen, &e);
  CHECK(rc == 0 && blen == sizeof back && back.sin_port == sa.sin_port && back.sin_addr.S_un.S_addr == sa.sin_addr.S_un.S_addr,
        "WSPStringToAddress gave rc %d error %d", rc, e);
  cleanup_all(0);
  pass("127.0.0.1:8080 both ways, 15 characters with the NUL");
}

/* ---- main -------------------------------------------------------------------------- */
static const struct { const char *name; void (*fn)(void); } scenarios[] = {
  {"startup", s_startup}, {"startup-count", s_startup_count}, {"handles", s_handles}, {"context", s_context},
  {"ov-event", s_ov_event}, {"ov-routine", s_ov_routine}, {"ov-at-once", s_ov_at_once},
  {"ov-fail-at-once", s_ov_fail_at_once}, {"dgram-event", s_dgram_event}, {"wait-timeout", s_wait_timeout},
  {"wait-timeout-routine", s_wait_timeout_routine}, {"ifs-event", s_ifs_event}, {"ifs-pending", s_ifs_pending},
  {"ifs-routine", s_ifs_routine}, {"no-complete", s_no_complete}, {"recv-null", s_recv_null},
  {"recv-eof", s_recv_eof}, {"close-pending", s_close_pending}, {"cleanup-pending", s_cleanup_pending},
  {"event-select", s_event_select}, {"async-select", s_async_select}, {"select", s_select},
  {"blocking-hook", s_blocking_hook}, {"errno-zero", s_errno_zero}, {"ov-order", s_ov_order}, {"ov-send", s_ov_send},
  {"apc-thread", s_apc_thread}, {"ov-wait", s_ov_wait}, {"close-blocked", s_close_blocked},
  {"nonblocking", s_nonblocking}, {"dgram-truncated", s_dgram_truncated}, {"address-string", s_address_string},
  {"stub-complete", s_stub_complete},
};

int main(int argc, char **argv) {
  char path[512], why[512];
  void *lib, *sym;
  void (*fn)(void) = NULL;
  const char *base;
  if (argc != 4) {
    fprintf(stderr, "usage: %s LIB SCRIPT SCENARIO\n", argv[0]);
    return 2;
  }
  scenario = argv[3];
  /* "layer-X": scenario X, with the provider as a layer over lwsp's native
   * base (real loopback TCP), opened through the chain's catalog entry */
  base = strncmp(scenario, "layer-", 6) == 0 ? scenario + 6 : scenario;
  if (base != scenario) top_tcp = &info_chain;
  for (size_t i = 0; i < sizeof scenarios / sizeof *scenarios; i++)
    if (strcmp(scenarios[i].name, base) == 0) fn = scenarios[i].fn;
  if (!fn) { fprintf(stderr, "unknown scenario %s\n", scenario); return 2; }
  /* the provider's script, registered for this host's GUID; the log in a folder of its own */
  if (!make_tmpdir(tmpdir, sizeof tmpdir)) { fprintf(stderr, "cannot make a temporary folder\n"); return 2; }
  if (!registry_set(GUID_TEXT, argv[2])) { fprintf(stderr, "cannot register the script\n"); return 2; }
  snprintf(path, sizeof path, "%s" SEP "log", tmpdir);
  set_env("LWSP_LOG", path);
  fill_info(&info_tcp, CATALOG_TCP, SOCK_STREAM);
  fill_info(&info_udp, CATALOG_UDP, SOCK_DGRAM);
  /* a Lua layer over the native base: the layer's entry, the chain */
  fill_info(&info_native, CATALOG_NATIVE, SOCK_STREAM);
  info_native.ProviderId = NATIVE;
  fill_info(&info_layer, CATALOG_LAYER, SOCK_STREAM);
  info_layer.ProtocolChain.ChainLen = 0;
  fill_info(&info_chain, CATALOG_CHAIN, SOCK_STREAM);
  info_chain.ProtocolChain.ChainLen = 2;
  info_chain.ProtocolChain.ChainEntries[0] = CATALOG_LAYER;
  info_chain.ProtocolChain.ChainEntries[1] = CATALOG_NATIVE;
  {
    const char *slash = strrchr(argv[1], SEP[0]);
    snprintf(native_path, sizeof native_path, "%.*s" SEP "lwsp_native" DLL_EXT, slash ? (int)(slash - argv[1]) : 1,
             slash ? argv[1] : ".");
  }
  if (!(lib = load_dll(argv[1], why, sizeof why))) fail("cannot load %s: %s", argv[1], why);
  if (!(sym = dll_sym(lib, "WSPStartup"))) fail("%s exports no WSPStartup", argv[1]);
  memcpy(&startup_fn, &sym, sizeof startup_fn);
  this_thread();
  fn();
  fflush(stdout);
  cleanup_files();
  _exit(0);   /* leave the DLL loaded: a provider may keep threads until unload */
}
