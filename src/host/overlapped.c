/*
 * overlapped.c - the host's overlapped and multi-threaded application calls:
 * WSASend/WSARecv-style calls with an event, a completion routine or a
 * completion port; a completion routine that records what it is given; and
 * application threads (host.spawn) that make blocking calls while the Lua
 * thread carries on.
 */
#include "host.h"
#include <stdlib.h>
#include <string.h>

static int fail(lua_State *L, int code) { return lwsp_push_error(L, code ? code : WSASYSCALLFAILURE); }



/* ---- the recording completion routine ------------------------------------------ */
typedef struct completion {
  DWORD error, bytes, flags;
  LPWSAOVERLAPPED ov;
  unsigned long thread;
  struct completion *next;
} completion;
static completion *done_head, *done_tail;
static long done_count;

static void CALLBACK record_routine(DWORD error, DWORD bytes, LPWSAOVERLAPPED ov, DWORD flags) {
  completion *c = malloc(sizeof *c);
  if (!c) return;
  c->error = error; c->bytes = bytes; c->ov = ov; c->flags = flags; c->thread = lwsp_thread_id(); c->next = NULL;
  lwsp_mutex_lock(&host_lock);
  if (done_tail) done_tail->next = c; else done_head = c;
  done_tail = c;
  done_count++;
  lwsp_cond_broadcast(&host_cond);
  lwsp_mutex_unlock(&host_lock);
}

LPWSAOVERLAPPED_COMPLETION_ROUTINE host_record_routine(void);
LPWSAOVERLAPPED_COMPLETION_ROUTINE host_record_routine(void) { return record_routine; }

/* completions() -> array of {error, bytes, overlapped, flags, thread} the
 * recording routine was called with, oldest first (and forgets them) */
static int h_completions(lua_State *L) {
  completion *list;
  int k = 0;
  host_init();
  lwsp_mutex_lock(&host_lock);
  list = done_head;
  done_head = done_tail = NULL;
  done_count = 0;
  lwsp_mutex_unlock(&host_lock);
  lua_newtable(L);
  while (list) {
    completion *c = list;
    list = c->next;
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, c->error); lua_setfield(L, -2, "error");
    lua_pushinteger(L, c->bytes); lua_setfield(L, -2, "bytes");
    lua_pushinteger(L, (lua_Integer)(uintptr_t)c->ov); lua_setfield(L, -2, "overlapped");
    lua_pushinteger(L, c->flags); lua_setfield(L, -2, "flags");
    lua_pushinteger(L, (lua_Integer)c->thread); lua_setfield(L, -2, "thread");
    lua_rawseti(L, -2, ++k);
    free(c);
  }
  return 1;
}

/* Options of the overlapped calls: {flags =, routine = true, to = addr, from = true} */
static int opt_bool(lua_State *L, int idx, const char *k) {
  int v;
  if (!lua_istable(L, idx)) return 0;
  lua_getfield(L, idx, k);
  v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}
/* An integer option within lo..hi (a Lua argument error naming it otherwise). */
lua_Integer host_opt_int(lua_State *L, int idx, const char *k, lua_Integer def, lua_Integer lo, lua_Integer hi) {
  lua_Integer v = def;
  if (lua_isnoneornil(L, idx)) return def;
  luaL_checktype(L, idx, LUA_TTABLE);
  if (lua_getfield(L, idx, k) != LUA_TNIL) {
    int isint;
    v = lua_tointegerx(L, -1, &isint);
    if (!isint || v < lo || v > hi)
      luaL_argerror(L, idx, lua_pushfstring(L, "option '%s' must be an integer (%I..%I)", k, lo, hi));
  }
  lua_pop(L, 1);
  return v;
}
#define OPT_FLAGS(L, idx) ((DWORD)host_opt_int((L), (idx), "flags", 0, 0, 0xffffffffLL))

/* The overlapped at idx, refused while an operation the host posted with it
 * is pending: its buffer and the structure belong to that operation. */
static host_ov *free_ov(lua_State *L, int idx) {
  host_ov *h = host_check_ov(L, idx);
  if (host_ov_busy(h)) luaL_argerror(L, idx, "overlapped is in use by a pending operation");
  return h;
}

static int pending_or(lua_State *L, int rc, INT err, DWORD bytes) {
  if (rc == 0) { lua_pushboolean(L, 1); lua_pushinteger(L, bytes); return 2; }
  return fail(L, err);
}

/* wsasend(s, data, overlapped [, {flags =, routine = true, to = addr}])
 * -> true, bytes (done at once) | nil, "WSA_IO_PENDING: ...", 997 | nil, error */
static int h_wsasend(lua_State *L) {
  SOCKET s = (SOCKET)luaL_checkinteger(L, 1);
  size_t n;
  const char *data = luaL_checklstring(L, 2, &n);
  host_ov *h = free_ov(L, 3);
  WSABUF b[2];
  WSATHREADID tid;
  SOCKADDR_STORAGE to;
  int tolen = 0, perr = 0, rc;
  DWORD sent = 0, flags = OPT_FLAGS(L, 4);
  INT err = 0;
  hprov *p;
  if (lua_istable(L, 4) && lua_getfield(L, 4, "to") != LUA_TNIL) {
    if (!lwsp_to_sockaddr(L, -1, &to, &tolen)) return luaL_argerror(L, 4, "bad 'to' address");
  }
  /* the data must outlive the call: it lives in the overlapped's buffer */
  free(h->buf);
  if (!(h->buf = malloc(n ? n : 1))) return fail(L, WSAENOBUFS);
  memcpy(h->buf, data, n);
  h->cap = n;
  b[0].buf = h->buf; b[0].len = (ULONG)(n / 2);
  b[1].buf = h->buf + n / 2; b[1].len = (ULONG)(n - n / 2);
  if (!(p = host_prov_of(s, &perr))) return fail(L, perr);
  host_this_thread(&tid);
  if (tolen)
    rc = HCALL(L, p, WSPSendTo, s, &err, s, b, 2, &sent, flags, (struct sockaddr *)&to, tolen, &h->ov,
                              opt_bool(L, 4, "routine") ? record_routine : NULL, &tid, &err);
  else
    rc = HCALL(L, p, WSPSend, s, &err, s, b, 2, &sent, flags, &h->ov, opt_bool(L, 4, "routine") ? record_routine : NULL, &tid, &err);
  host_ov_posted(h, rc, err);
  return pending_or(L, rc, err, sent);
}

/* wsarecv(s, len, overlapped [, {flags =, routine = true, from = true}])
 * -> true, bytes | nil, "WSA_IO_PENDING: ...", 997 | nil, error; the data is
 * overlapped.data, the sender overlapped.from */
static int h_wsarecv(lua_State *L) {
  SOCKET s = (SOCKET)luaL_checkinteger(L, 1);
  lua_Integer cap = luaL_checkinteger(L, 2);
  host_ov *h = free_ov(L, 3);
  DWORD flags = OPT_FLAGS(L, 4);
  WSABUF b[2];
  WSATHREADID tid;
  int perr = 0, rc;
  DWORD got = 0;
  INT err = 0;
  hprov *p;
  luaL_argcheck(L, cap >= 0 && cap <= 64 * 1024 * 1024, 2, "length out of range");
  free(h->buf);
  if (!(h->buf = malloc((size_t)cap + 1))) return fail(L, WSAENOBUFS);
  h->cap = (size_t)cap;
  h->flags = flags;
  h->fromlen = sizeof h->from;
  b[0].buf = h->buf; b[0].len = (ULONG)(cap / 2);
  b[1].buf = h->buf + cap / 2; b[1].len = (ULONG)(cap - cap / 2);
  if (!(p = host_prov_of(s, &perr))) return fail(L, perr);
  host_this_thread(&tid);
  if (opt_bool(L, 4, "from"))
    rc = HCALL(L, p, WSPRecvFrom, s, &err, s, b, 2, &got, &h->flags, (struct sockaddr *)&h->from, &h->fromlen, &h->ov,
                                opt_bool(L, 4, "routine") ? record_routine : NULL, &tid, &err);
  else {
    h->fromlen = 0;
    rc = HCALL(L, p, WSPRecv, s, &err, s, b, 2, &got, &h->flags, &h->ov, opt_bool(L, 4, "routine") ? record_routine : NULL,
                            &tid, &err);
  }
  host_ov_posted(h, rc, err);
  return pending_or(L, rc, err, got);
}

/* wsaioctl(s, code, input, outlen, overlapped [, {routine = true}]) -> as above;
 * the output is overlapped.data */
static int h_wsaioctl(lua_State *L) {
  SOCKET s = (SOCKET)luaL_checkinteger(L, 1);
  DWORD code = HOST_DWORD(L, 2, "code"), got = 0;
  size_t inlen = 0;
  const char *in = luaL_optlstring(L, 3, NULL, &inlen);
  lua_Integer outlen = luaL_checkinteger(L, 4);
  host_ov *h = free_ov(L, 5);
  WSATHREADID tid;
  int perr = 0, rc;
  INT err = 0;
  hprov *p;
  luaL_argcheck(L, outlen >= 0 && outlen <= 65536, 4, "length out of range");
  free(h->buf);
  if (!(h->buf = malloc((size_t)outlen + 1))) return fail(L, WSAENOBUFS);
  h->cap = (size_t)outlen;
  if (!(p = host_prov_of(s, &perr))) return fail(L, perr);
  host_this_thread(&tid);
  rc = HCALL(L, p, WSPIoctl, s, &err, s, code, (LPVOID)in, (DWORD)inlen, h->buf, (DWORD)outlen, &got, &h->ov,
                           opt_bool(L, 6, "routine") ? record_routine : NULL, &tid, &err);
  host_ov_posted(h, rc, err);
  return pending_or(L, rc, err, got);
}

/* ---- application threads ----------------------------------------------------------- */
enum { J_RECV, J_SEND, J_ACCEPT, J_CONNECT, J_SLEEP, J_RESULT, J_CLEANUP, J_STARTUP, J_RECVFROM };
typedef struct job {
  lwsp_thread *thread;
  int op;
  SOCKET s;
  hprov *p;
  char *data;
  size_t len;
  DWORD flags;
  SOCKADDR_STORAGE addr;
  int addrlen;
  long ms;
  int cancel_after;      /* a blocking hook that cancels the call after this many calls */
  int count_hook;        /* a blocking hook that only counts */
  int cleanup_in_hook;   /* a blocking hook that calls, once, 1 the provider's WSPCleanup, 2 WSACleanup */
  int hook_cleanup;      /* what that gave: 0 or its error; the providers cleaned up */
  LPWSAOVERLAPPED ov;    /* J_RESULT */
  /* results */
  int rc;
  INT err;
  DWORD got;
  SOCKET ns;
  long hook_calls;
  unsigned long os_id;
  int done, joined;
} job;

#define JOB_MT "lwsp.job"

static BOOL CALLBACK job_hook(DWORD_PTR ctx) {
  job *j = (job *)ctx;
  long n = __atomic_add_fetch(&j->hook_calls, 1, __ATOMIC_RELAXED);
  if (j->cancel_after && n == j->cancel_after) {
    INT e = 0;
    HCALL(NULL, j->p, WSPCancelBlockingCall, 0, &e, &e);   /* WSACancelBlockingCall, from the hook */
  }
  if (j->cleanup_in_hook == 1 && n == 1) {   /* the job's provider's WSPCleanup from inside its own call */
    INT e = 0;
    j->hook_cleanup = host_provider_cleanup(j->p, &e) == 0 ? 0 : e;
  } else if (j->cleanup_in_hook == 2 && n == 1) {   /* WSACleanup, sockets left open */
    j->hook_cleanup = host_cleanup_all(0);
  }
  return FALSE;
}

static void job_main(void *arg) {
  job *j = arg;
  hthread *t = host_current_thread();
  WSATHREADID tid;
  WSABUF b;
  __atomic_store_n(&j->os_id, lwsp_thread_id(), __ATOMIC_RELAXED);
  lwsp_trace_app_thread();   /* an application thread, for the trace */
  if (t && (j->cancel_after || j->count_hook || j->cleanup_in_hook)) { t->hook = job_hook; t->hook_ctx = (DWORD_PTR)j; }
  host_this_thread(&tid);
  switch (j->op) {
  case J_RECV:
    b.buf = j->data; b.len = (ULONG)j->len;
    j->rc = HCALL(NULL, j->p, WSPRecv, j->s, &j->err, j->s, &b, 1, &j->got, &j->flags, NULL, NULL, &tid, &j->err);
    break;
  case J_RECVFROM:
    b.buf = j->data; b.len = (ULONG)j->len;
    j->addrlen = sizeof j->addr;
    j->rc = HCALL(NULL, j->p, WSPRecvFrom, j->s, &j->err, j->s, &b, 1, &j->got, &j->flags, (struct sockaddr *)&j->addr,
                  &j->addrlen, NULL, NULL, &tid, &j->err);
    break;
  case J_SEND:   /* all of it, one call after another, as applications do */
    for (size_t off = 0; off < j->len;) {
      DWORD n = 0;
      b.buf = j->data + off; b.len = (ULONG)(j->len - off);
      j->rc = HCALL(NULL, j->p, WSPSend, j->s, &j->err, j->s, &b, 1, &n, j->flags, NULL, NULL, &tid, &j->err);
      if (j->rc != 0) break;
      off += n;
      j->got = (DWORD)off;
    }
    if (j->len == 0) j->rc = HCALL(NULL, j->p, WSPSend, j->s, &j->err, j->s, &b, 0, &j->got, j->flags, NULL, NULL, &tid, &j->err);
    break;
  case J_ACCEPT:
    j->addrlen = sizeof j->addr;
    j->ns = HCALL(NULL, j->p, WSPAccept, j->s, &j->err, j->s, (struct sockaddr *)&j->addr, &j->addrlen, NULL, 0, &j->err);
    j->rc = j->ns == INVALID_SOCKET ? SOCKET_ERROR : 0;
    if (j->rc == 0) {
      hsock *hs;
      lwsp_mutex_lock(&host_lock);
      if ((hs = host_sock(j->ns)) != NULL && !hs->prov && !j->p->gone) hs->prov = j->p;
      lwsp_mutex_unlock(&host_lock);
    }
    break;
  case J_CONNECT:
    j->rc = HCALL(NULL, j->p, WSPConnect, j->s, &j->err, j->s, (struct sockaddr *)&j->addr, j->addrlen, NULL, NULL, NULL, NULL, &j->err);
    break;
  case J_SLEEP:
    j->rc = host_wait(NULL, 0, 0, j->ms, 1) == -2 ? 1 : 0;   /* 1: APCs ran on this thread */
    break;
  case J_RESULT:
    j->rc = HCALL_BOOL(NULL, j->p, WSPGetOverlappedResult, j->s, &j->err, j->s, j->ov, &j->got, TRUE, &j->flags,
                       &j->err) ? 0 : SOCKET_ERROR;
    break;
  case J_CLEANUP:
    j->rc = host_cleanup_all((int)j->len);
    break;
  case J_STARTUP:   /* WSPStartup then WSPCleanup, ms times: the count that succeeded */
    for (long i = 0; i < j->ms; i++) {
      INT e = 0;
      hprov *p = host_provider_startup((DWORD)j->len, &e);
      if (!p) continue;
      if (host_provider_cleanup(p, &e) == 0) j->rc++;
    }
    break;
  }
  if (t) { t->hook = NULL; t->hook_ctx = 0; }
  if (j->p) host_prov_unpin(j->p);
  lwsp_mutex_lock(&host_lock);
  j->done = 1;
  lwsp_cond_broadcast(&host_cond);
  lwsp_mutex_unlock(&host_lock);
}

/* spawn(op, s, ...) -> job: runs one application call on a new thread.
 *   spawn("recv", s, len [, {cancel_after = n, count_hook = true}])   spawn("recvfrom", s, len) -> data, sender
 *   spawn("send", s, data) (sends all of it, call after call)   spawn("accept", s)   spawn("connect", s, addr)
 *   spawn("sleep", ms)       (an alertable sleep: delivers that thread's APCs)
 *   spawn("overlapped_result", s, overlapped)   (WSPGetOverlappedResult with fWait)
 *   spawn("cleanup" [, close_sockets = true])  (WSACleanup on another thread)
 *   spawn("startup", catalog, n)  (n times WSPStartup then WSPCleanup, as an LSP would)
 * Option cleanup_in_hook = "provider" | "all": the blocking hook calls, on its
 * first call, the socket's provider's WSPCleanup (job:info().hook_cleanup is 0
 * or its error) or WSACleanup with the sockets left open (how many providers
 * it cleaned up). */
static int h_spawn(lua_State *L) {
  static const char *const ops[] = {"recv", "send", "accept", "connect", "sleep", "overlapped_result", "cleanup",
                                    "startup", "recvfrom", NULL};
  int op = luaL_checkoption(L, 1, NULL, ops), perr = 0, optidx = 4;
  job *j, **u;
  job a;   /* every argument read and checked before anything is allocated */
  const char *d = NULL;
  memset(&a, 0, sizeof a);
  a.op = op;
  if (op == J_SLEEP) {
    a.ms = (long)host_arg_range(L, 2, 0, HOST_MAX_MS, "timeout");
    optidx = 3;
  } else if (op == J_CLEANUP) {
    a.len = lua_isnoneornil(L, 2) || lua_toboolean(L, 2);
    optidx = 3;
  } else if (op == J_STARTUP) {
    a.len = (size_t)host_arg_range(L, 2, 0, 0xffffffffLL, "catalog id");
    a.ms = (long)host_arg_range(L, 3, 0, 1000000, "count");
  } else {
    a.s = (SOCKET)luaL_checkinteger(L, 2);
  }
  if (op == J_RECV || op == J_RECVFROM) a.len = (size_t)host_arg_range(L, 3, 0, 64 * 1024 * 1024, "length");
  else if (op == J_SEND) d = luaL_checklstring(L, 3, &a.len);
  else if (op == J_CONNECT) { if (!lwsp_to_sockaddr(L, 3, &a.addr, &a.addrlen)) return luaL_argerror(L, 3, LWSP_ADDRESS_FORMS); }
  else if (op == J_RESULT) a.ov = &host_check_ov(L, 3)->ov;   /* (the caller keeps it alive until the job is joined) */
  else if (op == J_ACCEPT) optidx = 3;
  a.cancel_after = (int)host_opt_int(L, optidx, "cancel_after", 0, 0, INT32_MAX);
  a.count_hook = opt_bool(L, optidx, "count_hook");
  if (lua_istable(L, optidx)) {
    static const char *const which[] = {"provider", "all", NULL};
    if (lua_getfield(L, optidx, "cleanup_in_hook") == LUA_TSTRING) a.cleanup_in_hook = luaL_checkoption(L, -1, NULL, which) + 1;
    lua_pop(L, 1);
  }
  u = lua_newuserdatauv(L, sizeof *u, 0);
  *u = NULL;
  luaL_setmetatable(L, JOB_MT);
  if (!(j = malloc(sizeof *j))) return fail(L, WSAENOBUFS);
  *j = a;
  if (op == J_RECV || op == J_RECVFROM || op == J_SEND) {
    if (!(j->data = malloc(j->len + 1))) { free(j); return fail(L, WSAENOBUFS); }
    if (d) memcpy(j->data, d, j->len);
  }
  /* the provider stays loaded until the job's call is out of it, whatever
   * a cleanup meanwhile does */
  if (op != J_SLEEP && op != J_CLEANUP && op != J_STARTUP && !(j->p = host_prov_pin(a.s, &perr))) { free(j->data); free(j); return fail(L, perr); }
  if (!(j->thread = lwsp_thread_start(job_main, j))) {
    if (j->p) host_prov_unpin(j->p);
    free(j->data);
    free(j);
    return fail(L, WSAENOBUFS);
  }
  *u = j;
  return 1;
}

static job *check_job(lua_State *L) {
  job **u = luaL_checkudata(L, 1, JOB_MT);
  if (!*u) luaL_argerror(L, 1, "job is gone");
  return *u;
}

/* job:join([timeout_ms]) -> the call's results (as the matching host call
 * returns them) | nil, "timeout" while it is still running */
static int job_join(lua_State *L) {
  job *j = check_job(L);
  long ms = host_arg_ms(L, 2, -1);
  double deadline = lwsp_now() + ms / 1000.0;
  lwsp_mutex_lock(&host_lock);
  while (!j->done) {
    if (ms >= 0) {
      double left = deadline - lwsp_now();
      if (left <= 0) break;
      lwsp_cond_wait(&host_cond, &host_lock, (long)(left * 1000) + 1);
    } else {
      lwsp_cond_wait(&host_cond, &host_lock, -1);
    }
  }
  lwsp_mutex_unlock(&host_lock);
  if (!j->done) { lua_pushnil(L); lua_pushliteral(L, "timeout"); return 2; }
  if (!j->joined) { lwsp_thread_join(j->thread); j->joined = 1; }
  if (j->op == J_SLEEP) { lua_pushboolean(L, j->rc); return 1; }
  if (j->op == J_CLEANUP || j->op == J_STARTUP) { lua_pushinteger(L, j->rc); return 1; }
  if (j->rc != 0) return fail(L, j->err);
  switch (j->op) {
  case J_RECV: lua_pushlstring(L, j->data, j->got); lua_pushinteger(L, j->flags); return 2;
  case J_RECVFROM: lua_pushlstring(L, j->data, j->got); lwsp_push_sockaddr(L, (struct sockaddr *)&j->addr, j->addrlen); return 2;
  case J_SEND: lua_pushinteger(L, j->got); return 1;
  case J_RESULT: lua_pushinteger(L, j->got); lua_pushinteger(L, j->flags); return 2;
  case J_ACCEPT:
    lua_pushinteger(L, (lua_Integer)j->ns);
    lwsp_push_sockaddr(L, (struct sockaddr *)&j->addr, j->addrlen);
    return 2;
  default: lua_pushboolean(L, 1); return 1;
  }
}

/* job:info() -> {done =, hook_calls =, thread =} */
static int job_info(lua_State *L) {
  job *j = check_job(L);
  int done, cleanup;
  /* read under the lock, pushed without it (no Lua call under host_lock) */
  lwsp_mutex_lock(&host_lock);
  done = j->done;
  cleanup = done ? j->hook_cleanup : 0;   /* written by the job's thread before it is done */
  lwsp_mutex_unlock(&host_lock);
  lua_createtable(L, 0, 4);
  lua_pushboolean(L, done); lua_setfield(L, -2, "done");
  lua_pushinteger(L, __atomic_load_n(&j->hook_calls, __ATOMIC_RELAXED)); lua_setfield(L, -2, "hook_calls");
  if (done) { lua_pushinteger(L, cleanup); lua_setfield(L, -2, "hook_cleanup"); }
  lua_pushinteger(L, (lua_Integer)__atomic_load_n(&j->os_id, __ATOMIC_RELAXED)); lua_setfield(L, -2, "thread");
  return 1;
}

/* A job still running when collected is left to finish (and leak): its thread
 * owns it. */
static int job_gc(lua_State *L) {
  job **u = luaL_checkudata(L, 1, JOB_MT);
  job *j = *u;
  int done;
  if (!j) return 0;
  lwsp_mutex_lock(&host_lock);
  done = j->done;
  lwsp_mutex_unlock(&host_lock);
  if (!done) { lwsp_log("host", "a job was collected while its thread was still in its call"); return 0; }
  if (!j->joined) lwsp_thread_join(j->thread);
  free(j->data);
  free(j);
  *u = NULL;
  return 0;
}

int lwsp_hostio_open(lua_State *L);
int lwsp_hostio_open(lua_State *L) {
  static const luaL_Reg fns[] = {{"wsasend", h_wsasend}, {"wsarecv", h_wsarecv}, {"wsaioctl", h_wsaioctl},
                                 {"completions", h_completions}, {"spawn", h_spawn}, {NULL, NULL}};
  static const luaL_Reg jm[] = {{"join", job_join}, {"info", job_info}, {NULL, NULL}};
  host_class(L, JOB_MT, job_gc, jm);
  luaL_setfuncs(L, fns, 0);
  return 0;
}
