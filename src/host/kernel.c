/*
 * kernel.c - the host's kernel objects: events, waits, threads and their APCs,
 * completion ports, windows and their messages.
 *
 * On Windows these are the real ones: CreateEvent/SetEvent/ResetEvent and
 * WaitForMultipleObjectsEx, QueueUserAPC on a duplicated thread handle with
 * alertable waits, CreateIoCompletionPort/PostQueuedCompletionStatus/
 * GetQueuedCompletionStatus, and a message-only window with PostMessage and
 * PeekMessage.  Elsewhere lwsp keeps its own objects with the same
 * semantics, under host_lock, and one condition variable (host_cond) wakes
 * every waiter.  host.c wraps these in the upcalls (arguments, faults,
 * tracing); objects.c gives them to Lua.
 */
#include "host.h"
#ifdef _WIN32
#  include <winternl.h>
#endif
#include <stdlib.h>
#include <string.h>

static lwsp_map ports, windows, threads;

static void trace_apc(void) {
  if (lwsp_tracing) lwsp_trace_event("complete", "host", "application", "APC delivered", 0, 0);
}

#ifdef _WIN32
/* ======================================================================== Windows */

WSAEVENT hk_event_create(void) {
  HANDLE h = CreateEventW(NULL, TRUE, FALSE, NULL);   /* manual reset, not signalled */
  return h ? (WSAEVENT)h : WSA_INVALID_EVENT;
}
int hk_event_set(WSAEVENT h, int value) { return value ? SetEvent(h) != 0 : ResetEvent(h) != 0; }
int hk_event_close(WSAEVENT h) { return h && h != INVALID_HANDLE_VALUE && CloseHandle(h); }
int hk_event_state(WSAEVENT h) {
  DWORD r = WaitForSingleObject(h, 0);
  return r == WAIT_OBJECT_0 ? 1 : r == WAIT_TIMEOUT ? 0 : -1;
}

int host_wait(const uintptr_t *handles, int n, int wait_all, long ms, int alertable) {
  HANDLE hs[MAXIMUM_WAIT_OBJECTS];
  DWORD r, t = ms < 0 ? INFINITE : (DWORD)ms;
  if (n > MAXIMUM_WAIT_OBJECTS) return -3;
  if (n == 0) return SleepEx(t, alertable) == WAIT_IO_COMPLETION ? -2 : -1;
  for (int i = 0; i < n; i++) hs[i] = (HANDLE)handles[i];
  r = WaitForMultipleObjectsEx((DWORD)n, hs, wait_all, t, alertable);
  if (r < WAIT_OBJECT_0 + (DWORD)n) return wait_all ? 0 : (int)(r - WAIT_OBJECT_0);
  if (r == WAIT_TIMEOUT) return -1;
  if (r == WAIT_IO_COMPLETION) return -2;
  return -3;
}

int host_run_apcs(void) { return SleepEx(0, TRUE) == WAIT_IO_COMPLETION; }

/* A thread's handle for WSATHREADID is a duplicate of its pseudo handle; the
 * map records which handles lwsp opened (and for which thread record). */
/* A real handle of the calling thread (GetCurrentThread's is a pseudo handle). */
static int own_handle(HANDLE *h) {
  return DuplicateHandle(GetCurrentProcess(), GetCurrentThread(), GetCurrentProcess(), h, 0, FALSE, DUPLICATE_SAME_ACCESS) != 0;
}

int hk_thread_register(hthread *t) {
  int ok;
  if (!own_handle(&t->handle)) return 0;
  lwsp_mutex_lock(&host_lock);
  ok = lwsp_map_put(&threads, (SOCKET)(uintptr_t)t->handle, t);
  lwsp_mutex_unlock(&host_lock);
  if (!ok) CloseHandle(t->handle);
  return ok;
}
/* A thread record lives as long as the process: Win32 TLS has no destructor. */
void hk_thread_release(hthread *t) { t->refs--; }

int hk_thread_open(hthread *t, LPWSATHREADID tid) {
  HANDLE h;
  if (!own_handle(&h)) return WSAENOBUFS;
  lwsp_mutex_lock(&host_lock);
  if (!lwsp_map_put(&threads, (SOCKET)(uintptr_t)h, t)) { lwsp_mutex_unlock(&host_lock); CloseHandle(h); return WSAENOBUFS; }
  t->refs++;
  lwsp_mutex_unlock(&host_lock);
  tid->ThreadHandle = h;
  tid->Reserved = (DWORD_PTR)t->os_id;
  return 0;
}

int hk_thread_close(LPWSATHREADID tid) {
  hthread *t;
  lwsp_mutex_lock(&host_lock);
  if ((t = lwsp_map_del(&threads, (SOCKET)(uintptr_t)tid->ThreadHandle)) != NULL) hk_thread_release(t);
  lwsp_mutex_unlock(&host_lock);
  if (!t) return WSAEINVAL;
  CloseHandle(tid->ThreadHandle);
  return 0;
}

static void CALLBACK apc_entry(ULONG_PTR p) {
  hapc *a = (hapc *)p;
  trace_apc();
  a->fn(a->ctx);
  free(a);
}

int hk_queue_apc(LPWSATHREADID tid, LPWSAUSERAPC fn, DWORD_PTR ctx) {
  hapc *a = malloc(sizeof *a);
  int known, ok;
  if (!a) return WSAENOBUFS;
  a->fn = fn; a->ctx = ctx; a->next = NULL;
  lwsp_mutex_lock(&host_lock);
  known = lwsp_map_get(&threads, (SOCKET)(uintptr_t)tid->ThreadHandle) != NULL;
  /* under the lock, so the handle cannot be closed in between */
  ok = known && QueueUserAPC(apc_entry, tid->ThreadHandle, (ULONG_PTR)a);
  lwsp_mutex_unlock(&host_lock);
  if (!ok) { free(a); return WSAEINVAL; }
  return 0;
}

/* ---- completion ports */
uintptr_t host_new_port(void) {
  hport *p = malloc(sizeof *p);
  host_init();
  if (!p) return 0;
  if (!(p->iocp = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0))) { free(p); return 0; }
  lwsp_mutex_lock(&host_lock);
  if (!lwsp_map_put(&ports, (SOCKET)(uintptr_t)p->iocp, p)) {
    lwsp_mutex_unlock(&host_lock);
    CloseHandle(p->iocp);
    free(p);
    return 0;
  }
  lwsp_mutex_unlock(&host_lock);
  return (uintptr_t)p->iocp;
}

void host_post(hport *p, DWORD bytes, ULONG_PTR key, LPWSAOVERLAPPED ov) {
  PostQueuedCompletionStatus(p->iocp, bytes, key, (LPOVERLAPPED)ov);
}

int host_dequeue(uintptr_t h, long ms, hpacket *out) {
  DWORD bytes = 0;
  ULONG_PTR key = 0;
  LPOVERLAPPED ov = NULL;
  BOOL ok;
  int known;
  lwsp_mutex_lock(&host_lock);
  known = host_port(h) != NULL;
  lwsp_mutex_unlock(&host_lock);
  if (!known) return -1;
  ok = GetQueuedCompletionStatus((HANDLE)h, &bytes, &key, &ov, ms < 0 ? INFINITE : (DWORD)ms);
  if (!ok && !ov) return GetLastError() == WAIT_TIMEOUT ? 0 : -1;   /* closed while waiting: -1 */
  out->bytes = bytes; out->key = key; out->ov = (LPWSAOVERLAPPED)ov; out->next = NULL;
  return 1;
}

/* ---- message-only windows */
static LRESULT CALLBACK window_proc(HWND w, UINT m, WPARAM wp, LPARAM lp) { return DefWindowProcW(w, m, wp, lp); }
static const WCHAR window_class[] = L"lwsp.host.window";
static INIT_ONCE class_once = INIT_ONCE_STATIC_INIT;
static HINSTANCE self_module(void) {
  HMODULE m = NULL;
  GetModuleHandleExW(GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
                     (LPCWSTR)(void *)window_proc, &m);
  return m;
}
static BOOL CALLBACK register_class(PINIT_ONCE o, PVOID p, PVOID *c) {
  WNDCLASSW wc;
  (void)o; (void)p; (void)c;
  memset(&wc, 0, sizeof wc);
  wc.lpfnWndProc = window_proc;
  wc.hInstance = self_module();
  wc.lpszClassName = window_class;
  return RegisterClassW(&wc) || GetLastError() == ERROR_CLASS_ALREADY_EXISTS;
}

uintptr_t host_new_window(void) {
  HWND w;
  host_init();
  if (!InitOnceExecuteOnce(&class_once, register_class, NULL, NULL)) return 0;
  w = CreateWindowExW(0, window_class, NULL, 0, 0, 0, 0, 0, HWND_MESSAGE, NULL, self_module(), NULL);
  if (!w) return 0;
  lwsp_mutex_lock(&host_lock);
  if (!lwsp_map_put(&windows, (SOCKET)(uintptr_t)w, (void *)w)) { lwsp_mutex_unlock(&host_lock); DestroyWindow(w); return 0; }
  lwsp_mutex_unlock(&host_lock);
  return (uintptr_t)w;
}

int hk_post_message(uintptr_t hwnd, UINT msg, WPARAM wp, LPARAM lp) {
  return PostMessageW((HWND)hwnd, msg, wp, lp) != 0;
}

static hmsg *append_msg(hmsg **head, hmsg *tail, const MSG *m) {
  hmsg *k = malloc(sizeof *k);
  if (!k) return tail;
  k->msg = m->message; k->wparam = m->wParam; k->lparam = m->lParam; k->next = NULL;
  if (tail) tail->next = k; else *head = k;
  return k;
}

/* A window's queue belongs to the thread that created it: messages are read
 * there, as on Windows (HK_WRONG_THREAD elsewhere). */
int hk_take_messages(uintptr_t h, long ms, hmsg **list) {
  HWND w = (HWND)h;
  double deadline = lwsp_now() + ms / 1000.0;
  hmsg *tail = NULL;
  MSG m;
  *list = NULL;
  if (!IsWindow(w)) return HK_BAD_HANDLE;
  if (GetWindowThreadProcessId(w, NULL) != GetCurrentThreadId()) return HK_WRONG_THREAD;
  for (;;) {
    double left;
    while (PeekMessageW(&m, w, 0, 0, PM_REMOVE)) tail = append_msg(list, tail, &m);
    left = deadline - lwsp_now();
    if (*list || left <= 0) return 0;
    MsgWaitForMultipleObjectsEx(0, NULL, (DWORD)(left * 1000) + 1, QS_POSTMESSAGE | QS_ALLPOSTMESSAGE, MWMO_INPUTAVAILABLE);
  }
}

int host_close_object(uintptr_t h) {
  hport *p;
  void *w;
  lwsp_mutex_lock(&host_lock);
  if ((p = lwsp_map_del(&ports, (SOCKET)h)) != NULL) {
    host_forget_port(p);
    lwsp_mutex_unlock(&host_lock);
    CloseHandle(p->iocp);
    free(p);
    return 1;
  }
  w = lwsp_map_get(&windows, (SOCKET)h);
  lwsp_mutex_unlock(&host_lock);
  if (!w || !DestroyWindow((HWND)h)) return 0;   /* on its own thread only, as on Windows */
  lwsp_mutex_lock(&host_lock);
  lwsp_map_del(&windows, (SOCKET)h);
  lwsp_mutex_unlock(&host_lock);
  return 1;
}

/* What kind of object h is, as the kernel says (NtQueryObject's type name). */
const char *hk_object_type(uintptr_t h) {
  typedef LONG (NTAPI *query_fn)(HANDLE, int, PVOID, ULONG, PULONG);
  static const struct { const WCHAR *kernel; const char *name; } kinds[] = {
    {L"Event", "event"}, {L"IoCompletion", "port"}, {L"Thread", "thread"}};
  union { PUBLIC_OBJECT_TYPE_INFORMATION info; char room[512]; } u;
  query_fn query = (query_fn)(void (*)(void))GetProcAddress(GetModuleHandleW(L"ntdll.dll"), "NtQueryObject");
  ULONG got = 0;
  if (IsWindow((HWND)h)) return "window";
  if (!query || query((HANDLE)h, 2 /* ObjectTypeInformation */, &u, sizeof u, &got) < 0) return NULL;
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
    size_t n = wcslen(kinds[i].kernel);
    if (u.info.TypeName.Length == n * sizeof(WCHAR) && !memcmp(u.info.TypeName.Buffer, kinds[i].kernel, n * sizeof(WCHAR)))
      return kinds[i].name;
  }
  return "other";
}

#else
/* ======================================================================== POSIX */

/* Events live in a table that only grows: a handle carries the entry's index
 * and the generation it was opened in, so looking one up (a wait on 64 of
 * them looks up 64) is an index and a compare, and a closed handle, whose
 * entry may since serve a new event, is never taken for the new one. */
typedef struct hevent { uintptr_t handle; int signalled; uint32_t gen, next_free; } hevent;   /* handle: 0 when closed */
typedef struct hwindow { hmsg *head, *tail; long count; } hwindow;
static hevent **ev_tab;                  /* with host_lock */
static uint32_t ev_n, ev_cap, ev_free;   /* ev_free: index + 1 of the first closed entry, 0 when none */
static uintptr_t next_object = 0x10000;
#define EV_IDX_BITS 20
#define EV_IDX(v) ((uint32_t)(((v) >> 2) & ((1u << EV_IDX_BITS) - 1)))
/* a bit never set in other objects' handles, and a handle stays a positive Lua integer */
#define EV_FLAG ((uintptr_t)1 << (sizeof(uintptr_t) * 8 - 2))
#define EV_GEN_MASK ((EV_FLAG >> (EV_IDX_BITS + 2)) - 1)

static hevent *host_event(WSAEVENT h) {
  uintptr_t v = (uintptr_t)h;
  hevent *e;
  if (EV_IDX(v) >= ev_n) return NULL;
  e = ev_tab[EV_IDX(v)];
  return e->handle == v && v ? e : NULL;   /* the entry's handle names its index, generation and flag */
}

WSAEVENT hk_event_create(void) {
  hevent *e;
  uint32_t idx;
  uintptr_t h;
  host_init();
  lwsp_mutex_lock(&host_lock);
  if (ev_free) {
    idx = ev_free - 1;
    e = ev_tab[idx];
    ev_free = e->next_free;
  } else {
    if (ev_n == 1u << EV_IDX_BITS) { lwsp_mutex_unlock(&host_lock); return WSA_INVALID_EVENT; }
    if (ev_n == ev_cap) {
      uint32_t ncap = ev_cap ? ev_cap * 2 : 64;
      hevent **t = realloc(ev_tab, ncap * sizeof *t);
      if (!t) { lwsp_mutex_unlock(&host_lock); return WSA_INVALID_EVENT; }
      ev_tab = t;
      ev_cap = ncap;
    }
    if (!(e = calloc(1, sizeof *e))) { lwsp_mutex_unlock(&host_lock); return WSA_INVALID_EVENT; }
    idx = ev_n;
    ev_tab[ev_n++] = e;
  }
  e->gen = (uint32_t)(((uintptr_t)e->gen + 1) & EV_GEN_MASK);
  if (!e->gen) e->gen = 1;
  e->signalled = 0;
  e->handle = h = EV_FLAG | ((uintptr_t)e->gen << (EV_IDX_BITS + 2)) | ((uintptr_t)idx << 2);
  lwsp_mutex_unlock(&host_lock);
  return (WSAEVENT)h;
}

int hk_event_set(WSAEVENT h, int value) {
  hevent *e;
  lwsp_mutex_lock(&host_lock);
  if ((e = host_event(h)) != NULL) {
    e->signalled = value;
    if (value) lwsp_cond_broadcast(&host_cond);
  }
  lwsp_mutex_unlock(&host_lock);
  return e != NULL;
}

int hk_event_close(WSAEVENT h) {
  hevent *e;
  lwsp_mutex_lock(&host_lock);
  if ((e = host_event(h)) != NULL) {
    e->handle = 0;
    e->next_free = ev_free;
    ev_free = EV_IDX((uintptr_t)h) + 1;
    lwsp_cond_broadcast(&host_cond);
  }
  lwsp_mutex_unlock(&host_lock);
  return e != NULL;
}

int hk_event_state(WSAEVENT h) {
  hevent *e;
  int v;
  lwsp_mutex_lock(&host_lock);
  e = host_event(h);
  v = e ? e->signalled : -1;
  lwsp_mutex_unlock(&host_lock);
  return v;
}

/* ---- threads and APCs: each thread's record carries its APC queue */
int hk_thread_register(hthread *t) {
  int ok;
  t->handle = (HANDLE)t;
  lwsp_mutex_lock(&host_lock);
  ok = lwsp_map_put(&threads, (SOCKET)(uintptr_t)t, t);
  lwsp_mutex_unlock(&host_lock);
  return ok;
}

void hk_thread_release(hthread *t) {
  if (--t->refs > 0) return;
  lwsp_map_del(&threads, (SOCKET)(uintptr_t)t);
  while (t->head) { hapc *a = t->head; t->head = a->next; free(a); }
  free(t);
}

int hk_thread_open(hthread *t, LPWSATHREADID tid) {
  lwsp_mutex_lock(&host_lock);
  t->refs++;
  lwsp_mutex_unlock(&host_lock);
  tid->ThreadHandle = (HANDLE)t;
  tid->Reserved = (DWORD_PTR)t->os_id;
  return 0;
}

int hk_thread_close(LPWSATHREADID tid) {
  hthread *t;
  lwsp_mutex_lock(&host_lock);
  if ((t = lwsp_map_get(&threads, (SOCKET)(uintptr_t)tid->ThreadHandle)) != NULL) hk_thread_release(t);
  lwsp_mutex_unlock(&host_lock);
  return t ? 0 : WSAEINVAL;
}

/* with host_lock: records of APCs that have run, for the next ones queued */
static lwsp_spares apc_spares = {NULL, 0, 256};

int hk_queue_apc(LPWSATHREADID tid, LPWSAUSERAPC fn, DWORD_PTR ctx) {
  hthread *t;
  hapc *a;
  lwsp_mutex_lock(&host_lock);
  if (!(a = lwsp_spare_take(&apc_spares, sizeof *a))) { lwsp_mutex_unlock(&host_lock); return WSAENOBUFS; }
  a->fn = fn; a->ctx = ctx; a->next = NULL;
  t = lwsp_map_get(&threads, (SOCKET)(uintptr_t)tid->ThreadHandle);
  if (!t) { lwsp_spare_give(&apc_spares, a); lwsp_mutex_unlock(&host_lock); return WSAEINVAL; }
  if (t->tail) t->tail->next = a; else t->head = a;
  t->tail = a;
  lwsp_cond_broadcast(&host_cond);
  lwsp_mutex_unlock(&host_lock);
  return 0;
}

int host_run_apcs(void) {
  hthread *t = host_current_thread();
  hapc *list;
  int n = 0;
  if (!t) return 0;
  lwsp_mutex_lock(&host_lock);
  list = t->head;
  t->head = t->tail = NULL;
  lwsp_mutex_unlock(&host_lock);
  for (hapc *a = list; a; a = a->next) {
    trace_apc();
    a->fn(a->ctx);
    n++;
  }
  /* the records go back to the spares in one hold of the lock */
  lwsp_mutex_lock(&host_lock);
  while (list) {
    hapc *a = list;
    list = a->next;
    lwsp_spare_give(&apc_spares, a);
  }
  lwsp_mutex_unlock(&host_lock);
  return n;
}

int host_wait(const uintptr_t *handles, int n, int wait_all, long ms, int alertable) {
  double deadline = ms >= 0 ? lwsp_now() + ms / 1000.0 : 0;
  hthread *t = alertable ? host_current_thread() : NULL;
  lwsp_mutex_lock(&host_lock);
  for (;;) {
    int ready = 0, first = -1;
    if (t && t->head) {
      lwsp_mutex_unlock(&host_lock);
      host_run_apcs();
      return -2;
    }
    for (int i = 0; i < n; i++) {
      hevent *e = host_event((WSAEVENT)handles[i]);
      if (!e) { lwsp_mutex_unlock(&host_lock); return -3; }
      if (e->signalled) { ready++; if (first < 0) first = i; }
    }
    if (n > 0 && (wait_all ? ready == n : ready > 0)) { lwsp_mutex_unlock(&host_lock); return wait_all ? 0 : first; }
    if (ms >= 0) {
      double left = deadline - lwsp_now();
      if (left <= 0) { lwsp_mutex_unlock(&host_lock); return -1; }
      lwsp_cond_wait(&host_cond, &host_lock, (long)(left * 1000) + 1);
    } else {
      lwsp_cond_wait(&host_cond, &host_lock, -1);
    }
  }
}

/* ---- ports and windows */
static uintptr_t new_object(lwsp_map *m, size_t size) {
  void *o = calloc(1, size);
  uintptr_t h;
  if (!o) return 0;
  lwsp_mutex_lock(&host_lock);
  h = (next_object += 4);
  if (!lwsp_map_put(m, (SOCKET)h, o)) { lwsp_mutex_unlock(&host_lock); free(o); return 0; }
  lwsp_mutex_unlock(&host_lock);
  return h;
}
uintptr_t host_new_port(void) { host_init(); return new_object(&ports, sizeof(hport)); }
uintptr_t host_new_window(void) { host_init(); return new_object(&windows, sizeof(hwindow)); }

int host_close_object(uintptr_t h) {
  hport *p;
  hwindow *w;
  lwsp_mutex_lock(&host_lock);
  if ((p = lwsp_map_del(&ports, (SOCKET)h)) != NULL) {
    host_forget_port(p);
    while (p->head) { hpacket *k = p->head; p->head = k->next; free(k); }
    free(p);
  } else if ((w = lwsp_map_del(&windows, (SOCKET)h)) != NULL) {
    while (w->head) { hmsg *k = w->head; w->head = k->next; free(k); }
    free(w);
  } else {
    lwsp_mutex_unlock(&host_lock);
    return 0;
  }
  lwsp_cond_broadcast(&host_cond);
  lwsp_mutex_unlock(&host_lock);
  return 1;
}

/* with host_lock: packets dequeued, for the next ones posted */
static lwsp_spares packet_spares = {NULL, 0, 256};

void host_post(hport *p, DWORD bytes, ULONG_PTR key, LPWSAOVERLAPPED ov) {
  hpacket *k = lwsp_spare_take(&packet_spares, sizeof *k);
  if (!k) return;
  k->bytes = bytes; k->key = key; k->ov = ov; k->next = NULL;
  if (p->tail) p->tail->next = k; else p->head = k;
  p->tail = k;
  p->count++;
  lwsp_cond_broadcast(&host_cond);
}

int host_dequeue(uintptr_t h, long ms, hpacket *out) {
  double deadline = ms >= 0 ? lwsp_now() + ms / 1000.0 : 0;
  lwsp_mutex_lock(&host_lock);
  for (;;) {
    hport *p = host_port(h);
    if (!p) { lwsp_mutex_unlock(&host_lock); return -1; }
    if (p->head) {
      hpacket *k = p->head;
      p->head = k->next;
      if (!p->head) p->tail = NULL;
      p->count--;
      *out = *k;
      lwsp_spare_give(&packet_spares, k);
      lwsp_mutex_unlock(&host_lock);
      return 1;
    }
    if (ms >= 0) {
      double left = deadline - lwsp_now();
      if (left <= 0) { lwsp_mutex_unlock(&host_lock); return 0; }
      lwsp_cond_wait(&host_cond, &host_lock, (long)(left * 1000) + 1);
    } else {
      lwsp_cond_wait(&host_cond, &host_lock, -1);
    }
  }
}

int hk_post_message(uintptr_t hwnd, UINT msg, WPARAM wp, LPARAM lp) {
  hwindow *w;
  hmsg *m = malloc(sizeof *m);
  if (!m) return 0;
  m->msg = msg; m->wparam = wp; m->lparam = lp; m->next = NULL;
  lwsp_mutex_lock(&host_lock);
  if (!(w = lwsp_map_get(&windows, (SOCKET)hwnd))) { lwsp_mutex_unlock(&host_lock); free(m); return 0; }
  if (w->tail) w->tail->next = m; else w->head = m;
  w->tail = m;
  w->count++;
  lwsp_cond_broadcast(&host_cond);
  lwsp_mutex_unlock(&host_lock);
  return 1;
}

int hk_take_messages(uintptr_t h, long ms, hmsg **list) {
  double deadline = lwsp_now() + ms / 1000.0;
  hwindow *w;
  lwsp_mutex_lock(&host_lock);
  while ((w = lwsp_map_get(&windows, (SOCKET)h)) != NULL && !w->head && lwsp_now() < deadline)
    lwsp_cond_wait(&host_cond, &host_lock, (long)((deadline - lwsp_now()) * 1000) + 1);
  if (!w) { lwsp_mutex_unlock(&host_lock); *list = NULL; return HK_BAD_HANDLE; }
  *list = w->head;
  w->head = w->tail = NULL;
  w->count = 0;
  lwsp_mutex_unlock(&host_lock);
  return 0;
}
const char *hk_object_type(uintptr_t h) {
  const char *k = NULL;
  lwsp_mutex_lock(&host_lock);
  if (host_event((WSAEVENT)h)) k = "event";
  else if (lwsp_map_get(&ports, (SOCKET)h)) k = "port";
  else if (lwsp_map_get(&windows, (SOCKET)h)) k = "window";
  else if (lwsp_map_get(&threads, (SOCKET)h)) k = "thread";
  lwsp_mutex_unlock(&host_lock);
  return k;
}
#endif

hport *host_port(uintptr_t h) { return (hport *)lwsp_map_get(&ports, (SOCKET)h); }
