/*
 * platform.c - the few operating-system services lwsp needs, on POSIX and
 * Win32: recursive locks, condition variables, monotonic time, library
 * loading, this module's own path (the provider-script registry: registry.c).
 */
#ifndef _WIN32
#  define _GNU_SOURCE
#endif
#include "common.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>

struct lwsp_thread {
  void (*fn)(void *);
  void *arg;
#ifdef _WIN32
  HANDLE h;
#else
  pthread_t t;
#endif
};

#ifdef _WIN32
static DWORD WINAPI thread_main(LPVOID p) {
  struct lwsp_thread *t = p;
  t->fn(t->arg);
  return 0;
}
lwsp_thread *lwsp_thread_start(void (*fn)(void *), void *arg) {
  struct lwsp_thread *t = malloc(sizeof *t);
  if (!t) return NULL;
  t->fn = fn;
  t->arg = arg;
  t->h = CreateThread(NULL, 0, thread_main, t, 0, NULL);
  if (!t->h) { free(t); return NULL; }
  return t;
}
void lwsp_thread_join(lwsp_thread *t) {
  WaitForSingleObject(t->h, INFINITE);
  CloseHandle(t->h);
  free(t);
}
#else
static void *thread_main(void *p) {
  struct lwsp_thread *t = p;
  t->fn(t->arg);
  return NULL;
}
lwsp_thread *lwsp_thread_start(void (*fn)(void *), void *arg) {
  struct lwsp_thread *t = malloc(sizeof *t);
  if (!t) return NULL;
  t->fn = fn;
  t->arg = arg;
  if (pthread_create(&t->t, NULL, thread_main, t) != 0) { free(t); return NULL; }
  return t;
}
void lwsp_thread_join(lwsp_thread *t) {
  pthread_join(t->t, NULL);
  free(t);
}
#endif

#ifdef _WIN32
void lwsp_mutex_init(lwsp_mutex *m) { InitializeCriticalSection(m); }
void lwsp_mutex_destroy(lwsp_mutex *m) { DeleteCriticalSection(m); }
void lwsp_mutex_lock(lwsp_mutex *m) { EnterCriticalSection(m); }
void lwsp_mutex_unlock(lwsp_mutex *m) { LeaveCriticalSection(m); }
void lwsp_cond_init(lwsp_cond *c) { InitializeConditionVariable(c); }
void lwsp_cond_destroy(lwsp_cond *c) { (void)c; }
void lwsp_cond_broadcast(lwsp_cond *c) { WakeAllConditionVariable(c); }
int lwsp_cond_wait(lwsp_cond *c, lwsp_mutex *m, long ms) {
  if (SleepConditionVariableCS(c, m, ms < 0 ? INFINITE : (DWORD)ms)) return 0;
  return GetLastError() == ERROR_TIMEOUT ? 1 : 0;
}
void lwsp_yield(void) { SwitchToThread(); }
double lwsp_now(void) {
  LARGE_INTEGER f, t;
  QueryPerformanceFrequency(&f);
  QueryPerformanceCounter(&t);
  return (double)t.QuadPart / (double)f.QuadPart;
}
int lwsp_utf8_to_wide(const char *s, WCHAR *out, size_t n) {
  size_t k = lwsp_utf8_to_utf16(s, strlen(s), out, n - 1);
  if (k >= n - 1) return 0;
  out[k] = 0;
  return 1;
}
void *lwsp_dlopen(const char *path, char *err, size_t errlen) {
  WCHAR w[MAX_PATH * 2];
  HMODULE h;
  if (!lwsp_utf8_to_wide(path, w, sizeof w / sizeof w[0])) {
    snprintf(err, errlen, "path too long");
    return NULL;
  }
  h = LoadLibraryW(w);
  if (!h) {
    DWORD e = GetLastError();
    /* like dlerror(), name the file: the log line must say what could not be loaded */
    snprintf(err, errlen, "%.400s: LoadLibrary failed (error %lu%s)", path, (unsigned long)e,
             e == ERROR_MOD_NOT_FOUND ? ", the file or a DLL it needs was not found" : "");
  }
  return (void *)h;
}
void *lwsp_dlsym(void *lib, const char *name) { return (void *)(uintptr_t)GetProcAddress((HMODULE)lib, name); }
void lwsp_dlclose(void *lib) { FreeLibrary((HMODULE)lib); }
const char *lwsp_module_path(void) {
  static char path[MAX_PATH * 3];
  HMODULE h = NULL;
  WCHAR w[MAX_PATH * 2];
  DWORD n;
  if (path[0]) return path;
  if (!GetModuleHandleExW(GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
                          (LPCWSTR)(void *)lwsp_module_path, &h))
    return NULL;
  n = GetModuleFileNameW(h, w, sizeof w / sizeof w[0]);
  if (n == 0 || n >= sizeof w / sizeof w[0]) return NULL;
  path[lwsp_utf16_to_utf8((const WCHAR *)w, n, path, sizeof path - 1)] = 0;
  return path;
}
void (*lwsp_host_sym(const WSPUPCALLTABLE *up, const char *name, char *why, size_t whylen))(void) {
  LPWPUCREATESOCKETHANDLE at = up->lpWPUCreateSocketHandle;
  HMODULE mod = NULL;
  FARPROC p;
  void (*f)(void);
  LPCWSTR addr;
  memcpy(&addr, &at, sizeof addr);
  if (!GetModuleHandleExW(GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT, addr, &mod)) {
    snprintf(why, whylen, "the upcall table's functions lie in no loaded module (error %lu)", (unsigned long)GetLastError());
    return NULL;
  }
  if (!(p = GetProcAddress(mod, name))) {
    WCHAR w[MAX_PATH];
    char u[MAX_PATH * 3];
    DWORD n = GetModuleFileNameW(mod, w, MAX_PATH);
    u[lwsp_utf16_to_utf8((const WCHAR *)w, n < MAX_PATH ? n : 0, u, sizeof u - 1)] = 0;
    snprintf(why, whylen, "%s, which supplied the upcall table, exports no %s", u[0] ? u : "the module", name);
    return NULL;
  }
  memcpy(&f, &p, sizeof f);
  return f;
}
unsigned long lwsp_thread_id(void) { return GetCurrentThreadId(); }
unsigned long lwsp_process_id(void) { return GetCurrentProcessId(); }
int lwsp_path_is_absolute(const char *p) {
  return (((p[0] | 32) >= 'a' && (p[0] | 32) <= 'z') && p[1] == ':' && (p[2] == '\\' || p[2] == '/')) ||
         (p[0] == '\\' && p[1] == '\\');
}
void lwsp_random_bytes(void *buf, size_t n) {
  /* Not for secrets: GUIDs for specs and examples. */
  static LONG counter;
  unsigned char *b = buf;
  LARGE_INTEGER t;
  uint64_t x;
  QueryPerformanceCounter(&t);
  x = (uint64_t)t.QuadPart ^ ((uint64_t)GetCurrentProcessId() << 32) ^ (uint64_t)InterlockedIncrement(&counter) * 0x9E3779B97F4A7C15ull;
  for (size_t i = 0; i < n; i++) {
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    b[i] = (unsigned char)x;
  }
}

/* A new GUID from UuidCreate (rpcrt4, looked up at run time so that nothing
 * more is linked); random bytes stamped as version 4 if rpcrt4 is missing.
 * Returns which made it ("UuidCreate" or "random"), for lwsp.guid's second
 * result: both are version 4, so only this tells them apart. */
typedef long (WINAPI *uuid_create_fn)(GUID *);
const char *lwsp_guid_new(GUID *g) {
  HMODULE m = LoadLibraryW(L"rpcrt4.dll");
  uuid_create_fn fn = m ? (uuid_create_fn)(void (*)(void))GetProcAddress(m, "UuidCreate") : NULL;
  if (fn && fn(g) == 0) return "UuidCreate";   /* RPC_S_OK; not RPC_S_UUID_LOCAL_ONLY, which is no GUID */
  lwsp_random_bytes(g, sizeof *g);
  g->Data3 = (WORD)((g->Data3 & 0x0fff) | 0x4000);
  g->Data4[0] = (BYTE)((g->Data4[0] & 0x3f) | 0x80);
  return "random";
}

/* %VARIABLES% expanded by Windows itself (ExpandEnvironmentStringsW), in UTF-16
 * throughout: the path is UTF-8 on both sides. */
int lwsp_expand_env(const char *in, char *out, size_t outlen) {
  WCHAR w[MAX_PATH * 2], e[MAX_PATH * 4];
  DWORD n;
  if (!lwsp_utf8_to_wide(in, w, sizeof w / sizeof w[0])) return 0;
  n = ExpandEnvironmentStringsW(w, e, sizeof e / sizeof e[0]);
  if (n == 0 || n > sizeof e / sizeof e[0]) return 0;
  n = (DWORD)lwsp_wcslen(e, sizeof e / sizeof e[0]);
  {
    size_t k = lwsp_utf16_to_utf8(e, n, out, outlen - 1);
    if (k >= outlen - 1 && n > 0) return 0;
    out[k] = 0;
  }
  return 1;
}

#else
#  include <dlfcn.h>
#  include <sched.h>
#  include <time.h>
#  include <unistd.h>
#  include <dirent.h>
#  include <fcntl.h>
#  include <sys/stat.h>
#  include <sys/syscall.h>

void lwsp_mutex_init(lwsp_mutex *m) {
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
  pthread_mutex_init(m, &a);
  pthread_mutexattr_destroy(&a);
}
void lwsp_mutex_destroy(lwsp_mutex *m) { pthread_mutex_destroy(m); }
void lwsp_mutex_lock(lwsp_mutex *m) { pthread_mutex_lock(m); }
void lwsp_mutex_unlock(lwsp_mutex *m) { pthread_mutex_unlock(m); }
void lwsp_cond_init(lwsp_cond *c) {
  pthread_condattr_t a;
  pthread_condattr_init(&a);
  pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
  pthread_cond_init(c, &a);
  pthread_condattr_destroy(&a);
}
void lwsp_cond_destroy(lwsp_cond *c) { pthread_cond_destroy(c); }
void lwsp_cond_broadcast(lwsp_cond *c) { pthread_cond_broadcast(c); }
int lwsp_cond_wait(lwsp_cond *c, lwsp_mutex *m, long ms) {
  struct timespec ts;
  if (ms < 0) { pthread_cond_wait(c, m); return 0; }
  clock_gettime(CLOCK_MONOTONIC, &ts);
  ts.tv_sec += ms / 1000;
  ts.tv_nsec += (ms % 1000) * 1000000L;
  if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
  return pthread_cond_timedwait(c, m, &ts) == ETIMEDOUT;
}
void lwsp_yield(void) { sched_yield(); }
double lwsp_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}
void *lwsp_dlopen(const char *path, char *err, size_t errlen) {
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h) snprintf(err, errlen, "%s", dlerror());
  return h;
}
void *lwsp_dlsym(void *lib, const char *name) { return dlsym(lib, name); }
void lwsp_dlclose(void *lib) { dlclose(lib); }
const char *lwsp_module_path(void) {
  static char path[4096];
  Dl_info info;
  if (path[0]) return path;
  if (!dladdr((void *)lwsp_module_path, &info) || !info.dli_fname) return NULL;
  if (!realpath(info.dli_fname, path)) snprintf(path, sizeof path, "%s", info.dli_fname);
  return path;
}
void (*lwsp_host_sym(const WSPUPCALLTABLE *up, const char *name, char *why, size_t whylen))(void) {
  LPWPUCREATESOCKETHANDLE at = up->lpWPUCreateSocketHandle;
  Dl_info mod, got;
  void *a, *h, *p = NULL;
  void (*f)(void);
  memcpy(&a, &at, sizeof a);
  if (!dladdr(a, &mod) || !mod.dli_fbase) {
    snprintf(why, whylen, "the upcall table's functions lie in no loaded module");
    return NULL;
  }
  /* a shared library by its name; the main program as dlopen(NULL) */
  if (!(h = mod.dli_fname ? dlopen(mod.dli_fname, RTLD_LAZY | RTLD_NOLOAD) : NULL)) h = dlopen(NULL, RTLD_LAZY);
  if (h) {
    p = dlsym(h, name);
    dlclose(h);
  }
  /* a handle's lookup also searches what that module depends on (and, for
   * the main program, every global library): only the module's own counts */
  if (p && (!dladdr(p, &got) || got.dli_fbase != mod.dli_fbase)) p = NULL;
  if (!p) {
    snprintf(why, whylen, "%s, which supplied the upcall table, exports no %s",
             mod.dli_fname && mod.dli_fname[0] ? mod.dli_fname : "the main program", name);
    return NULL;
  }
  memcpy(&f, &p, sizeof f);
  return f;
}
unsigned long lwsp_thread_id(void) { return (unsigned long)syscall(SYS_gettid); }
unsigned long lwsp_process_id(void) { return (unsigned long)getpid(); }
int lwsp_path_is_absolute(const char *p) { return p[0] == '/'; }
void lwsp_random_bytes(void *buf, size_t n) {
  int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  size_t got = 0;
  if (fd >= 0) {
    while (got < n) {
      ssize_t k = read(fd, (char *)buf + got, n - got);
      if (k <= 0) break;
      got += (size_t)k;
    }
    close(fd);
  }
  for (; got < n; got++) ((unsigned char *)buf)[got] = (unsigned char)(rand() ^ (int)lwsp_now());
}

int lwsp_mkdirs(const char *dir) {
  char tmp[2048];
  snprintf(tmp, sizeof tmp, "%s", dir);
  for (char *p = tmp + 1; *p; p++)
    if (*p == '/') { *p = 0; mkdir(tmp, 0755); *p = '/'; }
  return mkdir(tmp, 0755) == 0 || errno == EEXIST;
}
const char *lwsp_guid_new(GUID *g) {
  lwsp_random_bytes(g, sizeof *g);
  g->Data3 = (WORD)((g->Data3 & 0x0fff) | 0x4000);
  g->Data4[0] = (BYTE)((g->Data4[0] & 0x3f) | 0x80);
  return "random";
}
int lwsp_expand_env(const char *in, char *out, size_t outlen) {
  size_t o = 0;
  while (*in) {
    const char *end;
    if (*in == '%' && (end = strchr(in + 1, '%')) != NULL && end > in + 1) {
      char name[256];
      size_t n = (size_t)(end - in - 1);
      const char *v;
      if (n < sizeof name) {
        memcpy(name, in + 1, n);
        name[n] = 0;
        if ((v = getenv(name)) != NULL) {
          size_t vl = strlen(v);
          if (o + vl >= outlen) return 0;
          memcpy(out + o, v, vl);
          o += vl;
          in = end + 1;
          continue;
        }
      }
    }
    if (o + 1 >= outlen) return 0;
    out[o++] = *in++;
  }
  out[o] = 0;
  return 1;
}
#endif

LPWPUCOMPLETEOVERLAPPEDREQUEST lwsp_host_complete_export(const WSPUPCALLTABLE *up, char *why, size_t whylen) {
  void (*f)(void) = lwsp_host_sym(up, "WPUCompleteOverlappedRequest", why, whylen);
  LPWPUCOMPLETEOVERLAPPEDREQUEST complete;
  memcpy(&complete, &f, sizeof complete);
  return complete;
}

/* WPUCompleteOverlappedRequest returns 0 when it delivered the completion and
 * SOCKET_ERROR with *lpErrno when it did not.  Wine's ws2_32 exports a stub
 * that does neither: it sets WSAEINVAL and returns 0, so a provider that
 * trusted the 0 would leave every event-driven caller waiting forever.  The
 * contradiction is noticed here (the first time, then at 10, 100, ...). */
int lwsp_complete_checked(const char *who, LPWPUCOMPLETEOVERLAPPEDREQUEST complete, const WSPUPCALLTABLE *up,
                          SOCKET s, LPWSAOVERLAPPED ov, DWORD error, DWORD bytes, LPINT err, int *signalled) {
  static long undelivered;
  long n;
  WSAEVENT ev;
  INT e2 = 0;
  int rc;
  *err = 0;
  *signalled = 0;
  rc = complete(s, ov, error, bytes, err);
  if (rc != 0 || *err == 0) return rc;
  n = __atomic_add_fetch(&undelivered, 1, __ATOMIC_RELAXED);
  ev = (WSAEVENT)((uintptr_t)ov->hEvent & ~(uintptr_t)1);
  if (n == 1 || n == 10 || n == 100 || n == 1000 || n % 10000 == 0)
    lwsp_log(who, "WPUCompleteOverlappedRequest for socket %llu returned success yet set error %d: the completion was "
             "not delivered (a stub, such as Wine's ws2_32 has?); %s (%ld so far)", (unsigned long long)s, (int)*err,
             ev ? "lwsp signals the call's event itself" : "the call has no event to signal", n);
  if (ev && !up->lpWPUSetEvent(ev, &e2))
    lwsp_log(who, "socket %llu: WPUSetEvent on the overlapped call's event failed too (error %d)", (unsigned long long)s, e2);
  else if (ev)
    *signalled = 1;
  *err = 0;
  return 0;
}
