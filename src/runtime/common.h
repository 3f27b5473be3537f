/*
 * common.h - what every lwsp C file shares: the platform layer (locks,
 * thread-locals, library loading), the log, the handle map, and the
 * conversions between Winsock values and Lua values.
 *
 * Contracts, in one place:
 * - lwsp_log() never fails and never blocks on Lua; it formats one line.
 * - lwsp_push_*() push exactly one value; lwsp_to_*() read without raising
 *   and return 0 on a value of the wrong shape (the caller maps that to a
 *   Winsock error), so no Lua error ever crosses a frame Winsock owns.
 * - lwsp_map_*() map a nonzero SOCKET to a non-NULL pointer; not thread-safe.
 */
#ifndef LWSP_COMMON_H
#define LWSP_COMMON_H

#include "spi.h"
#include <lua.h>
#include <lauxlib.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
typedef CRITICAL_SECTION lwsp_mutex;
typedef CONDITION_VARIABLE lwsp_cond;
#  define LWSP_EXPORT __declspec(dllexport)
#else
#  include <pthread.h>
typedef pthread_mutex_t lwsp_mutex;
typedef pthread_cond_t lwsp_cond;
#  define LWSP_EXPORT __attribute__((visibility("default")))
#endif

#define LWSP_VERSION "0.1.0"
#define LWSP_NPROCS 30
#define LWSP_MAX_INSTANCES 16
#define LWSP_LOG_RING 256

/* lwsp's own ioctl (IOC_OUT | IOC_VENDOR | 'LW'), answered by the native base
 * provider: three DWORDs, the engine serving the socket's overlapped sends and
 * receives, then how many of them the OS's own overlapped I/O took, and how
 * many the provider's worker served by polling readiness. */
#define SIO_LWSP_NATIVE_ENGINE 0x58004C57UL
#define LWSP_ENGINE_OS_OVERLAPPED 1   /* Windows: WSASend/WSARecv on an I/O completion port */
#define LWSP_ENGINE_POLLED 2          /* elsewhere: non-blocking calls when poll() says ready */
#define LWSP_IOCTLS(X) \
  X(SIO_LWSP_NATIVE_ENGINE, SIO_LWSP_NATIVE_ENGINE) X(LWSP_ENGINE_OS_OVERLAPPED, LWSP_ENGINE_OS_OVERLAPPED) \
  X(LWSP_ENGINE_POLLED, LWSP_ENGINE_POLLED)

/* platform.c */
void lwsp_mutex_init(lwsp_mutex *m);          /* recursive */
void lwsp_mutex_destroy(lwsp_mutex *m);
void lwsp_mutex_lock(lwsp_mutex *m);
void lwsp_mutex_unlock(lwsp_mutex *m);
void lwsp_cond_init(lwsp_cond *c);
void lwsp_cond_destroy(lwsp_cond *c);
void lwsp_cond_broadcast(lwsp_cond *c);
/* Waits at most ms milliseconds (ms < 0: forever); returns 0 when woken, 1 on timeout. */
int lwsp_cond_wait(lwsp_cond *c, lwsp_mutex *m, long ms);
double lwsp_now(void);                        /* monotonic seconds */
void lwsp_yield(void);                        /* lets another thread run */
typedef struct lwsp_thread lwsp_thread;
/* Starts fn(arg) on a new thread; NULL on failure.  Join exactly once. */
lwsp_thread *lwsp_thread_start(void (*fn)(void *), void *arg);
void lwsp_thread_join(lwsp_thread *t);
void *lwsp_dlopen(const char *utf8path, char *err, size_t errlen);
void *lwsp_dlsym(void *lib, const char *name);
void lwsp_dlclose(void *lib);
const char *lwsp_module_path(void);           /* this module's file, UTF-8 */
/* The function `name` exported by the module that supplied the upcall table
 * up (where its functions lie): a provider finds ws2_32's exports there, never
 * in itself nor by a search of the whole process.  NULL, with why, if that
 * module exports no such name. */
void (*lwsp_host_sym(const WSPUPCALLTABLE *up, const char *name, char *why, size_t whylen))(void);
/* lwsp_host_sym for WPUCompleteOverlappedRequest. */
LPWPUCOMPLETEOVERLAPPEDREQUEST lwsp_host_complete_export(const WSPUPCALLTABLE *up, char *why, size_t whylen);
/* Calls complete(s, ov, error, bytes) and returns its result, with *err.  A
 * host that answers 0 yet sets *err (Wine's ws2_32 stub: WSAEINVAL, nothing
 * signalled) has not delivered the completion: that is logged under who, and
 * the call's event is signalled through up's WPUSetEvent so a waiting
 * application still wakes; the result is then 0 with *err 0. */
/* What an install chose for its layer when the script cannot run
 * (lwsp_registry_on_failure: 1 passthrough, 0 fail -- also when unset), kept
 * beside the script's entry as "{GUID}.on-failure" (a file on POSIX, a value
 * in HKLM\SOFTWARE\lwsp\Providers on Windows).  set with passthrough 0
 * removes it. */
int lwsp_registry_on_failure(const GUID *id);
int lwsp_registry_set_on_failure(const GUID *id, int passthrough, int view, char *err, size_t errlen);
/* WPUCompleteOverlappedRequest, checked: 0 delivered (*signalled 0) or, when
 * the host's returned success without delivering (Wine's stub), the event
 * signalled by lwsp instead (*signalled 1); SOCKET_ERROR when it failed. */
int lwsp_complete_checked(const char *who, LPWPUCOMPLETEOVERLAPPEDREQUEST complete, const WSPUPCALLTABLE *up,
                          SOCKET s, LPWSAOVERLAPPED ov, DWORD error, DWORD bytes, LPINT err, int *signalled);
unsigned long lwsp_thread_id(void);
unsigned long lwsp_process_id(void);
int lwsp_path_is_absolute(const char *p);
/* Expands %NAME% from the environment into out; returns 0 if it does not fit. */
int lwsp_expand_env(const char *in, char *out, size_t outlen);
/* The provider-script registry: GUID -> absolute script path (see docs/api.md). */
int lwsp_registry_get(const GUID *id, char *out, size_t outlen, char *err, size_t errlen);
/* view: 0 this process's own; on Windows 64 or 32 picks that registry view
 * (a 32-bit provider DLL reads the 32-bit one); elsewhere ignored. */
int lwsp_registry_set(const GUID *id, const char *path, int view, char *err, size_t errlen);
int lwsp_registry_remove(const GUID *id, int view, char *err, size_t errlen);
/* Calls fn for each mapping ({GUID} text, script path); 0 with err on failure. */
int lwsp_registry_each(int view, void (*fn)(const char *guid, const char *path, void *ud), void *ud,
                       char *err, size_t errlen);
const char *lwsp_registry_where(char *buf, size_t len);
/* Where this process's writes go: on POSIX an absolute folder (created),
 * on Windows "HKCU" or "HKLM"; sets $LWSP_REGISTRY for this process. */
int lwsp_registry_set_root(const char *root, char *err, size_t errlen);
/* A provider's configuration (a Lua table literal) beside its entry: *out
 * malloc'd, or NULL when there is none; 0 with err when it cannot be read.
 * set_config with NULL removes it. */
#define LWSP_CONFIG_MAX 65536
int lwsp_registry_config(const GUID *id, char **out, char *err, size_t errlen);
int lwsp_registry_set_config(const GUID *id, const char *text, int view, char *err, size_t errlen);
#ifdef _WIN32
int lwsp_utf8_to_wide(const char *s, WCHAR *out, size_t n);   /* 0 if it does not fit in n units */
int lwsp_elevated(void);                       /* the process's token is elevated */
#else
int lwsp_mkdirs(const char *dir);              /* mkdir -p; 1 on success */
#endif
void lwsp_random_bytes(void *buf, size_t n);
const char *lwsp_guid_new(GUID *g);          /* UuidCreate on Windows, random version 4 elsewhere: which */

/* the log (spi/log.c; its Lua face lwsp_log_open in common.c) */
void lwsp_log(const char *who, const char *fmt, ...)
#ifdef __GNUC__
  __attribute__((format(printf, 2, 3)))
#endif
  ;
void lwsp_vlog(const char *who, const char *fmt, va_list ap);
int lwsp_log_open(lua_State *L);    /* runtime/module.c: log, log_lines, set_log into the table on top */
/* Called with every log line (the trace attaches them to calls); NULL: none. */
extern void (*lwsp_log_hook)(const char *line);
/* Names a provider's log lines: guid ("{...}") -> its script's file name. */
void lwsp_log_name(const char *guid, const char *script);
/* Calls fn with each line still in the ring from number since on; returns the
 * number the next line will get. */
unsigned long lwsp_log_lines(unsigned long since, void (*fn)(const char *line, void *ud), void *ud);
/* Where lines go from now on: a file path, "-" for stderr, "off", or NULL for $LWSP_LOG. */
void lwsp_log_target(const char *target);

/* handle map (spi/map.c): open addressing, SOCKET -> pointer */
typedef struct { SOCKET key; void *val; } lwsp_map_slot;
typedef struct { lwsp_map_slot *slots; size_t cap, count, used; } lwsp_map;
void *lwsp_map_get(const lwsp_map *m, SOCKET key);
int lwsp_map_put(lwsp_map *m, SOCKET key, void *val);     /* 0 on allocation failure */
void *lwsp_map_del(lwsp_map *m, SOCKET key);
void lwsp_map_free(lwsp_map *m);
void lwsp_map_each(const lwsp_map *m, void (*fn)(SOCKET key, void *val, void *ud), void *ud);

/* A full userdata at idx whose size is size and whose first 8 bytes hold tag
 * (how lwsp's hot paths recognise their own userdata without a metatable
 * lookup: scripts cannot write a userdata's bytes), or NULL. */
static inline void *lwsp_tagged(lua_State *L, int idx, size_t size, unsigned long long tag) {
  void *p = lua_type(L, idx) == LUA_TUSERDATA ? lua_touserdata(L, idx) : NULL;
  return p && lua_rawlen(L, idx) == size && *(const unsigned long long *)p == tag ? p : NULL;
}

/* spare blocks: freed records of one size kept for the next
 * allocation, up to max; the caller serialises its use.  A spare's first
 * pointer-sized bytes link it to the next. */
typedef struct { void *head; int n, max; } lwsp_spares;
static inline void *lwsp_spare_take(lwsp_spares *s, size_t size) {   /* a spare, or malloc(size) */
  void *p = s->head;
  if (!p) return malloc(size < sizeof(void *) ? sizeof(void *) : size);
  memcpy(&s->head, p, sizeof(void *));
  s->n--;
  return p;
}
static inline void lwsp_spare_give(lwsp_spares *s, void *p) {        /* kept, or freed when max are kept */
  if (!p) return;
  if (s->n >= s->max) { free(p); return; }
  memcpy(p, &s->head, sizeof(void *));
  s->head = p;
  s->n++;
}

/* text and GUIDs */
size_t lwsp_utf16_to_utf8(const WCHAR *in, size_t inlen, char *out, size_t outlen);
size_t lwsp_utf8_to_utf16(const char *in, size_t inlen, WCHAR *out, size_t outlen);
size_t lwsp_wcslen(const WCHAR *s, size_t max);
void lwsp_guid_format(const GUID *g, char out[39]);
int lwsp_guid_parse(const char *s, GUID *g);
int lwsp_guid_eq(const GUID *a, const GUID *b);

/* Winsock values <-> Lua values */
const char *lwsp_error_name(int code);          /* "WSAEFAULT", or NULL */
int lwsp_error_code(const char *name);          /* 0 if unknown */
/* t[k] of the table at idx pushed without metamethods (a handler's result
 * may carry a metatable whose __index raises, and results are read where no
 * error may be raised); returns its type. */
int lwsp_rawfield(lua_State *L, int idx, const char *k);
int lwsp_push_error(lua_State *L, int code);    /* nil, "WSAENAME: text", code -> 3 */
const char *lwsp_error_text(int code);
/* Addresses: {family=, address=, port=[, flowinfo=, scope_id=]} or {family=, data=} */
int lwsp_push_sockaddr(lua_State *L, const struct sockaddr *sa, int len);
/* What lwsp_to_sockaddr accepts, for argument errors. */
#define LWSP_ADDRESS_FORMS "not an address: give \"a.b.c.d:port\", \"[v6]:port\" or " \
  "{family = wsp.AF_INET or AF_INET6, address = \"text\", port = n}"
int lwsp_to_sockaddr(lua_State *L, int idx, SOCKADDR_STORAGE *ss, int *len);
/* Pushes t[k] read raw (no metamethod runs; nil when idx is not a table) and
 * returns its type.  What lwsp reads from a handler's results is read this
 * way: it runs outside any protected call and any budget. */
int lwsp_rawfield(lua_State *L, int idx, const char *k);
/* What a completed overlapped operation leaves in its WSAOVERLAPPED (SPI.md):
 * status, bytes and flags, before anyone is notified. */
static inline void lwsp_ov_done(LPWSAOVERLAPPED ov, DWORD error, DWORD bytes, DWORD flags) {
  ov->Offset = flags;
  ov->OffsetHigh = error;
  ov->InternalHigh = bytes;
  /* last, and released: a reader that sees Internal done sees the rest */
  __atomic_store_n(&ov->Internal, (ULONG_PTR)error, __ATOMIC_RELEASE);
}
int lwsp_format_address(const struct sockaddr *sa, int len, char *out, size_t outlen);
size_t lwsp_format_v6(const unsigned char a[16], char *out, size_t len);   /* RFC 5952 text */
/* 16 bits in network order at p */
static inline unsigned lwsp_get16(const void *p) {
  return (unsigned)((const unsigned char *)p)[0] << 8 | ((const unsigned char *)p)[1];
}
static inline void lwsp_put16(void *p, unsigned v) {
  ((unsigned char *)p)[0] = (unsigned char)(v >> 8);
  ((unsigned char *)p)[1] = (unsigned char)v;
}
int lwsp_parse_address(const char *s, int af, SOCKADDR_STORAGE *ss, int *len);
void lwsp_push_protocol_info(lua_State *L, const WSAPROTOCOL_INFOW *pi);
int lwsp_to_protocol_info(lua_State *L, int idx, WSAPROTOCOL_INFOW *pi, char *err, size_t errlen);
void lwsp_push_qos(lua_State *L, const QOS *q);
void lwsp_push_guid(lua_State *L, const GUID *g);
void lwsp_push_wstr(lua_State *L, const WCHAR *s, size_t maxlen);
int lwsp_const_open(lua_State *L);               /* pushes the constant table */

/* Sub-modules, each binding Lua in its own file */
int lwsp_upcalls_open(lua_State *L, void *inst); /* upcalls.c: pushes the upcall table */
LWSP_EXPORT int luaopen_lwsp(lua_State *L);

#endif
