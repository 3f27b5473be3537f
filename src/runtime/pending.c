/*
 * pending.c - handlers that wait.
 *
 * A handler waits by yielding a key (wsp.wait(key [, timeout])); anything in
 * the provider wakes it with lwsp.wake(key).  A blocking call waits in its own
 * thread with the provider lock released, polling the blocking hook, until it
 * is woken, cancelled (WSPCancelBlockingCall: WSAEINTR), aborted by a close or
 * a cleanup (WSAEINTR), or its timeout passes (the handler sees "timeout").
 * An overlapped call becomes a pending operation: its coroutine is resumed by
 * rt_pump when woken, and on completion its results go to the caller's
 * buffers and the caller is notified as SPI.md says.  Every operation ends
 * exactly once: completed, failed or aborted.
 */
#include "runtime.h"
#include "extfn.h"
#include <stdlib.h>
#include <string.h>
#include <stdarg.h>

static _Thread_local rt_op *tls_blocking;

static void link_op(lwsp_inst *I, rt_op *op) {
  op->prev = NULL;
  op->next = I->ops;
  if (I->ops) I->ops->prev = op;
  I->ops = op;
}
static void unlink_op(lwsp_inst *I, rt_op *op) {
  if (op->prev) op->prev->next = op->next; else if (I->ops == op) I->ops = op->next;
  if (op->next) op->next->prev = op->prev;
  op->next = op->prev = NULL;
}

/* closes a suspended coroutine's variables, under the budget */
static void kill_co(lwsp_inst *I, lua_State *co) {
  rt_budget_close(I, co, 0);
}

static void runnable(lwsp_inst *I, rt_op *op) {
  if (op->state != OP_WAITING) return;
  op->state = OP_RUNNABLE;
  if (op->blocking) return;           /* its own thread resumes it */
  op->rnext = NULL;
  if (I->runq_tail) I->runq_tail->rnext = op; else I->runq = op;
  I->runq_tail = op;
}

/* Removes op from the list of its key. */
static void unwait(lwsp_inst *I, rt_op *op) {
  lua_State *L = I->L;
  lua_Integer n, i;
  if (op->key_ref == LUA_NOREF) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, I->waits_ref);
  lua_rawgeti(L, LUA_REGISTRYINDEX, op->key_ref);
  lua_pushvalue(L, -1);
  if (lua_rawget(L, -3) == LUA_TTABLE) {
    n = (lua_Integer)lua_rawlen(L, -1);
    for (i = 1; i <= n; i++) {
      lua_rawgeti(L, -1, i);
      if (lua_touserdata(L, -1) == op) { lua_pop(L, 1); break; }
      lua_pop(L, 1);
    }
    if (i <= n) {
      for (; i < n; i++) { lua_rawgeti(L, -1, i + 1); lua_rawseti(L, -2, i); }
      lua_pushnil(L);
      lua_rawseti(L, -2, n);
    }
    if (n <= 1) { lua_pushvalue(L, -2); lua_pushnil(L); lua_rawset(L, -5); }
  }
  lua_pop(L, 3);
  luaL_unref(L, LUA_REGISTRYINDEX, op->key_ref);
  op->key_ref = LUA_NOREF;
}

void rt_wait_on(lwsp_inst *I, rt_op *op, lua_State *co) {
  op->deadline = lua_type(co, -1) == LUA_TNUMBER ? lwsp_now() + lua_tonumber(co, -1) : 0;
  op->timed_out = 0;
  op->state = OP_WAITING;
  if (lua_isnil(co, -2)) {
    lua_pop(co, 2);
    runnable(I, op);
    return;
  }
  lua_pop(co, 1);                                   /* key */
  lua_rawgeti(co, LUA_REGISTRYINDEX, I->waits_ref); /* key W */
  lua_pushvalue(co, -2);
  if (lua_rawget(co, -2) != LUA_TTABLE) {           /* key W list */
    lua_pop(co, 1);
    lua_newtable(co);
    lua_pushvalue(co, -3);
    lua_pushvalue(co, -2);
    lua_rawset(co, -4);
  }
  lua_pushlightuserdata(co, op);
  lua_rawseti(co, -2, (lua_Integer)lua_rawlen(co, -2) + 1);
  lua_pop(co, 2);
  op->key_ref = luaL_ref(co, LUA_REGISTRYINDEX);    /* pops key */
  /* the service thread may be asleep with nothing due: it must see this deadline */
  if (op->deadline && !op->blocking) {
    rt_service_start(I);
    lwsp_cond_broadcast(&I->cond);
  }
}

/* Wakes every handler waiting on the key at idx of L (under the lock). */
int rt_wake(lwsp_inst *I, lua_State *L, int idx) {
  lua_Integer n, i;
  int blocking = 0, top = lua_gettop(L);
  idx = lua_absindex(L, idx);
  lua_rawgeti(L, LUA_REGISTRYINDEX, I->waits_ref);
  lua_pushvalue(L, idx);
  if (lua_rawget(L, -2) != LUA_TTABLE) { lua_settop(L, top); return 0; }
  lua_pushvalue(L, idx);
  lua_pushnil(L);
  lua_rawset(L, -4);
  n = (lua_Integer)lua_rawlen(L, -1);
  for (i = 1; i <= n; i++) {
    rt_op *op;
    lua_rawgeti(L, -1, i);
    op = lua_touserdata(L, -1);
    lua_pop(L, 1);
    luaL_unref(L, LUA_REGISTRYINDEX, op->key_ref);
    op->key_ref = LUA_NOREF;
    blocking |= op->blocking;
    runnable(I, op);
  }
  if (blocking) lwsp_cond_broadcast(&I->cond);
  lua_settop(L, top);
  return (int)n;
}

/* lwsp.wake(key) -> how many waiting handlers were woken */
static int l_wake(lua_State *L) {
  lwsp_inst *I = lua_touserdata(L, lua_upvalueindex(1));
  luaL_checkany(L, 1);
  if (lua_isnil(L, 1)) return luaL_argerror(L, 1, "a key cannot be nil");
  lua_pushinteger(L, rt_wake(I, L, 1));
  return 1;
}

/* lwsp.may_wait() -> whether the running handler may wait: its call is
 * blocking or overlapped (a yield in a non-blocking call fails it with
 * WSAEWOULDBLOCK, and one where waiting is impossible is a fault) */
static int l_may_wait(lua_State *L) {
  lwsp_inst *I = lua_touserdata(L, lua_upvalueindex(1));
  lua_pushboolean(L, I->may_wait && lua_isyieldable(L));
  return 1;
}

/* lwsp.pending() -> operations waiting (pending overlapped and blocked calls) */
static int l_pending(lua_State *L) {
  lwsp_inst *I = lua_touserdata(L, lua_upvalueindex(1));
  int n = 0, blocked = 0;
  for (rt_op *op = I->ops; op; op = op->next) { n++; blocked += op->blocking; }
  lua_pushinteger(L, n);
  lua_pushinteger(L, blocked);
  return 2;
}

/* A blocked call's record, on its thread's stack: in I->ops (so that a close
 * or WSPCleanup aborts it), the thread's blocking call
 * (WSPCancelBlockingCall), and its blocking hook looked up.  Returns the
 * thread's outer blocking call, for block_end. */
static rt_op *block_begin(rt_call *c, rt_op *op, LPBLOCKINGCALLBACK *hook, DWORD_PTR *hook_ctx) {
  lwsp_inst *I = c->I;
  rt_op *outer = tls_blocking;
  INT e = 0;
  memset(op, 0, sizeof *op);
  op->I = I;
  op->so = c->so;
  op->co = c->co;
  op->proc = c->proc;
  op->blocking = 1;
  op->key_ref = op->co_ref = LUA_NOREF;
  link_op(I, op);
  tls_blocking = op;
  *hook = NULL;
  *hook_ctx = 0;
  I->up.lpWPUQueryBlockingCallback(c->so ? c->so->catalog : I->info.dwCatalogEntryId, hook, hook_ctx, &e);
  return outer;
}

static void block_end(lwsp_inst *I, rt_op *op, rt_op *outer) {
  tls_blocking = outer;
  unwait(I, op);
  unlink_op(I, op);
}

int rt_block(rt_call *c, LPINT err) {
  lwsp_inst *I = c->I;
  rt_op op;
  LPBLOCKINGCALLBACK hook;
  DWORD_PTR hook_ctx;
  int depth = I->depth;
  rt_op *outer = block_begin(c, &op, &hook, &hook_ctx);
  rt_wait_on(I, &op, c->co);
  I->depth = 0;
  if (I->closing) op.aborted = 1;      /* the last WSPCleanup has begun: no new wait */
  for (;;) {
    long ms = -1;
    if (op.state != OP_WAITING || op.cancelled || op.aborted) break;
    if (op.deadline) {
      double left = op.deadline - lwsp_now();
      if (left <= 0) { op.timed_out = 1; break; }
      ms = (long)(left * 1000) + 1;
    }
    if (hook) {
      lwsp_mutex_unlock(&I->lock);
      hook(hook_ctx);
      lwsp_mutex_lock(&I->lock);
      if (op.state != OP_WAITING || op.cancelled || op.aborted) break;
      if (ms < 0 || ms > 10) ms = 10;
    }
    lwsp_cond_wait(&I->cond, &I->lock, ms);
  }
  if (op.state == OP_RUNNABLE && !op.cancelled && !op.aborted) {
    /* woken at once (or a bare yield): let other threads in before going on */
    lwsp_mutex_unlock(&I->lock);
    lwsp_mutex_lock(&I->lock);
  }
  I->depth = depth;
  block_end(I, &op, outer);
  /* woken while another thread closes the socket (its closesocket handler
   * has not returned, so the abort has not come yet): the close ends it */
  if (c->so && c->proc != P_closesocket && (c->so->closing || c->so->close_running)) op.aborted = 1;
  if (op.cancelled || op.aborted) {
    kill_co(I, c->co);
    c->broken = 1;
    lwsp_cond_broadcast(&I->cond);
    rt_fail(c, err, WSAEINTR);
    return 0;
  }
  if (op.timed_out) lua_pushliteral(c->co, "timeout"); else lua_pushboolean(c->co, 1);
  return 1;
}

int rt_block_down(rt_call *c, int dir, LPINT err) {
  lwsp_inst *I = c->I;
  lwsp_sock *so = c->so;
  rt_op op;
  LPBLOCKINGCALLBACK hook;
  DWORD_PTR hook_ctx;
  INT e = 0;
  rt_op *outer = block_begin(c, &op, &hook, &hook_ctx);
  so->pending++;                    /* the socket stays while this thread looks at it */
  if (I->closing) op.aborted = 1;   /* the last WSPCleanup has begun: no new wait */
  for (;;) {
    int rc;
    if (op.aborted) break;
    rc = rt_down_select(c, dir, hook ? 10 : 50, &e);
    if (op.cancelled || op.aborted || so->closing || so->close_running || rc != 0) break;
    if (hook) {
      I->depth = 0;
      lwsp_mutex_unlock(&I->lock);
      hook(hook_ctx);
      lwsp_mutex_lock(&I->lock);
      I->depth = 1;
      if (op.cancelled || op.aborted) break;
    }
  }
  block_end(I, &op, outer);
  if (op.cancelled || op.aborted || so->closing || so->close_running) {
    lwsp_cond_broadcast(&I->cond);
    rt_sock_release(I, so);
    c->so = so->gen ? so : NULL;
    rt_fail(c, err, WSAEINTR);
    return 0;
  }
  rt_sock_release(I, so);
  return 1;
}

int rt_dir_of(int proc) {
  return proc == P_recv || proc == P_recvfrom ? 0 : proc == P_send || proc == P_sendto ? 1 : -1;
}

/* A pending operation for call c (its coroutine, buffers and view move to it). */
static rt_op *new_op(rt_call *c, const rt_io *io, rt_finish_fn finish, LPWSAOVERLAPPED_COMPLETION_ROUTINE routine,
                     LPWSATHREADID tid, LPINT err) {
  lwsp_inst *I = c->I;
  rt_op *op = calloc(1, sizeof *op);
  if (!op) { kill_co(I, c->co); c->broken = 1; rt_fail(c, err, WSAENOBUFS); return NULL; }
  op->I = I;
  op->so = c->so;
  op->handle = c->so->handle;
  op->proc = c->proc;
  op->dir = rt_dir_of(c->proc);
  op->co = c->co;
  op->key_ref = LUA_NOREF;
  op->ov = c->ov;
  op->routine = routine;
  if (tid) { op->tid = *tid; op->has_tid = 1; }
  op->io = *io;
  op->finish = finish;
  if (io->nbufs) {
    WSABUF *b = io->nbufs <= 4 ? op->bufs_copy : malloc(io->nbufs * sizeof(WSABUF));
    if (!b) { free(op); kill_co(I, c->co); c->broken = 1; rt_fail(c, err, WSAENOBUFS); return NULL; }
    memcpy(b, io->bufs, io->nbufs * sizeof(WSABUF));
    op->io.bufs = b;
  }
  op->view = c->view;
  c->view = NULL;
  if (op->view) rt_view_retarget(op->view, op->io.bufs);
  op->co_ref = c->co_ref;                           /* the operation now anchors the coroutine */
  c->co_ref = LUA_NOREF;
  c->pending = 1;
  op->ov->Internal = WSS_OPERATION_IN_PROGRESS;
  op->ov->InternalHigh = 0;
  op->so->pending++;
  if (op->dir >= 0) op->so->ov_out[op->dir]++;
  link_op(I, op);
  return op;
}

rt_op *rt_pend(rt_call *c, const rt_io *io, rt_finish_fn finish, LPWSAOVERLAPPED_COMPLETION_ROUTINE routine,
               LPWSATHREADID tid, LPINT err) {
  rt_op *op = new_op(c, io, finish, routine, tid, err);
  if (!op) return NULL;
  op->started = 1;
  rt_wait_on(c->I, op, c->co);
  return op;
}

rt_op *rt_defer(rt_call *c, const rt_io *io, rt_finish_fn finish, LPWSAOVERLAPPED_COMPLETION_ROUTINE routine,
                LPWSATHREADID tid, LPINT err) {
  lwsp_sock *so = c->so;
  rt_op *op = new_op(c, io, finish, routine, tid, err);
  if (!op) return NULL;
  op->state = OP_WAITING;                           /* on no key: its turn starts it */
  if (so->q_tail[op->dir]) so->q_tail[op->dir]->qnext = op; else so->q_head[op->dir] = op;
  so->q_tail[op->dir] = op;
  return op;
}

static void op_complete(lwsp_inst *I, rt_op *op, int error, DWORD bytes, DWORD flags);

/* Sets up the handler of a receive queued with no coroutine, as recv_entry
 * would have: the handler, the socket table, a view or the capacity, the
 * flags.  0 if it cannot (the operation is then completed with the error). */
static int op_enter_lua(lwsp_inst *I, rt_op *op) {
  lua_State *L = I->L, *co;
  if (I->href[op->proc] == LUA_NOREF || op->so->ref == LUA_NOREF || !lua_checkstack(L, 2)) {
    op_complete(I, op, op->so->ref == LUA_NOREF ? WSA_OPERATION_ABORTED : WSAEOPNOTSUPP, 0, 0);
    return 0;
  }
  co = op->co = rt_co_take(I, &op->co_ref);
  if (!lua_checkstack(co, 16)) { op_complete(I, op, WSAENOBUFS, 0, 0); return 0; }
  lua_rawgeti(co, LUA_REGISTRYINDEX, I->href[op->proc]);
  lua_rawgeti(co, LUA_REGISTRYINDEX, op->so->ref);
  if (!(op->view = rt_push_recv_args(I, co, &op->io)) && I->views) { op_complete(I, op, WSAENOBUFS, 0, 0); return 0; }
  return 1;
}

/* Takes op out of its socket's queue, if it is there. */
static void unqueue(rt_op *op) {
  lwsp_sock *so = op->so;
  rt_op **pp, *prev = NULL;
  if (op->dir < 0 || op->started) return;
  for (pp = &so->q_head[op->dir]; *pp && *pp != op; pp = &(*pp)->qnext) prev = *pp;
  if (!*pp) return;
  *pp = op->qnext;
  if (so->q_tail[op->dir] == op) so->q_tail[op->dir] = prev;
  op->qnext = NULL;
}

/* Ends a pending operation: notifies the caller and frees everything it held. */
static void op_complete(lwsp_inst *I, rt_op *op, int error, DWORD bytes, DWORD flags) {
  unwait(I, op);
  unlink_op(I, op);
  unqueue(op);
  op->state = OP_DONE;
  if (op->dir >= 0) {
    op->so->ov_out[op->dir]--;
    if (op->started && op->so->q_head[op->dir]) {   /* the next in the socket's queue: its turn */
      rt_op *next = op->so->q_head[op->dir];
      unqueue(next);
      runnable(I, next);
    }
  }
  /* a failure while its socket is being closed (what lies below went first) is an abort */
  if (error && (op->so->close_running || op->so->closing)) error = WSA_OPERATION_ABORTED;
  if (op->view) rt_view_end(I, op->view);
  rt_overlapped_done(I, op->so, op->handle, op->ov, op->routine, op->has_tid ? &op->tid : NULL, (DWORD)error,
                     bytes, flags);
  if (op->own_tid) { INT e; I->up.lpWPUCloseThread(&op->tid, &e); }
  rt_sock_release(I, op->so);
  if (!op->co) {
    /* queued and completed without a coroutine */
  } else if (op->co_clean) {                          /* its coroutine never ran: reused */
    rt_co_give(I, op->co, op->co_ref);
  } else {
    rt_co_drop(I, op->co, op->co_ref);
  }
  if (op->io.bufs && op->io.bufs != op->bufs_copy) free(op->io.bufs);
  free(op);
  lwsp_cond_broadcast(&I->cond);
}

/* A queued receive whose turn has come, when its handler is inherited: the
 * call down made here first.  1 if that ended the operation. */
static int op_start_down(lwsp_inst *I, rt_op *op) {
  rt_call c;
  DWORD n = 0, fl = op->io.flags;
  INT e = 0;
  int rc;
  if (op->proc != P_recv || !I->inherited[P_recv] || lwsp_tracing || lwsp_faults_armed || op->so->closing) return 0;
  memset(&c, 0, sizeof c);
  c.I = I;
  if (!rt_lower_resolve(I, op->so, &c.low, &c.lh)) return 0;
  op->state = OP_RUNNING;                          /* (the lock is released for the call down) */
  rc = rt_down_recv(&c, op->io.bufs, op->io.nbufs, &n, &fl, NULL, NULL, &e);
  op->state = OP_WAITING;
  if (!op->aborted && rc != 0 && e == WSAEWOULDBLOCK) return 0;   /* the handler waits */
  op->co_clean = 1;
  if (op->aborted) op_complete(I, op, WSA_OPERATION_ABORTED, 0, 0);
  else if (rc != 0) op_complete(I, op, e ? e : WSASYSCALLFAILURE, n, 0);
  else op_complete(I, op, 0, n, fl);
  return 1;
}

static void op_resume(lwsp_inst *I, rt_op *op) {
  lua_State *co = op->co;
  int nres = 0, st;
  rt_run_mark run;
  rt_call c;
  DWORD bytes = 0, flags = 0;
  int e;
  int nargs = 1, outer, condemned;
  if (!op->started) {                   /* its turn has come: the handler starts with its arguments */
    op->started = 1;                    /* (however it ends, the next one's turn comes after) */
    if (op_start_down(I, op)) return;
    if (!op->co && !op_enter_lua(I, op)) return;
    co = op->co;
    nargs = lua_gettop(co) - 1;
  } else if (op->timed_out) {
    lua_pushliteral(co, "timeout");
  } else {
    lua_pushboolean(co, 1);
  }
  /* running: a close or cleanup meanwhile (the handler may release the lock
   * to call down) marks it aborted instead of freeing it under our feet */
  op->state = OP_RUNNING;
  outer = I->may_wait;
  I->may_wait = 1;                      /* an overlapped operation */
  I->limited = 1;
  I->lua_runs++;
  run = rt_budget_enter(I, co);
  st = lua_resume(co, I->L, nargs, &nres);
  condemned = rt_budget_leave(I, run);
  I->limited = 0;
  I->may_wait = outer;
  op->state = OP_WAITING;
  if (condemned && (st == LUA_OK || st == LUA_YIELD)) {   /* it caught the budget's error: stopped all the same */
    lua_settop(co, 0);
    lua_pushstring(co, rt_budget_message());
    st = LUA_ERRRUN;
  }
  if (op->aborted) {
    if (st == LUA_YIELD) kill_co(I, co);
    lua_settop(co, 0);
    op_complete(I, op, WSA_OPERATION_ABORTED, 0, 0);
    return;
  }
  if (st == LUA_YIELD) {
    if (nres > 2) lua_pop(co, nres - 2);
    for (; nres < 2; nres++) lua_pushnil(co);
    rt_wait_on(I, op, co);
    return;
  }
  memset(&c, 0, sizeof c);
  c.I = I;
  c.co = co;
  c.proc = op->proc;
  c.so = op->so;
  if (st == LUA_OK) {
    c.nres = nres;
    c.base = lua_gettop(co) - nres + 1;
    e = rt_result_error(&c);
    if (e < 0) e = WSAENETDOWN;
    else if (e == 0) e = op->finish(&c, &op->io, &bytes, &flags);
  } else {
    luaL_traceback(I->L, co, rt_error_text(co, -1), 0);
    lwsp_log(I->name, "handler '%s' (%s) raised an error: %s", lwsp_proc_names[op->proc], lwsp_spi_names[op->proc],
             lua_tostring(I->L, -1));
    lua_pop(I->L, 1);
    e = rt_error_code(co, st);
  }
  lua_settop(co, 0);
  op_complete(I, op, e, bytes, flags);
}

void rt_pump(lwsp_inst *I) {
  lwsp_trace_self_t prev;
  if (I->pumping || !I->runq) return;
  I->pumping = 1;
  prev = lwsp_trace_self(I->name);   /* what resumed handlers call, this provider calls */
  while (I->runq) {
    rt_op *op = I->runq;
    I->runq = op->rnext;
    if (!I->runq) I->runq_tail = NULL;
    if (op->state == OP_RUNNABLE) op_resume(I, op);
  }
  lwsp_trace_restore(prev);
  I->pumping = 0;
}

static void abort_op(lwsp_inst *I, rt_op *op) {
  if (op->blocking || op->state == OP_RUNNING) {   /* its own thread (or the resumer) ends it */
    op->aborted = 1;
    return;
  }
  if (op->state == OP_RUNNABLE) {               /* take it off the run queue */
    rt_op **pp = &I->runq;
    I->runq_tail = NULL;
    while (*pp) {
      if (*pp == op) *pp = op->rnext;
      else { I->runq_tail = *pp; pp = &(*pp)->rnext; }
    }
  }
  kill_co(I, op->co);
  op_complete(I, op, WSA_OPERATION_ABORTED, 0, 0);
}

void rt_abort_socket(lwsp_inst *I, lwsp_sock *so) {
  rt_op *op = I->ops, *next;
  for (; op; op = next) {
    next = op->next;
    if (op->so == so) abort_op(I, op);
  }
  lwsp_cond_broadcast(&I->cond);
}

void rt_abort_all(lwsp_inst *I) {
  rt_op *op = I->ops, *next;
  for (; op; op = next) {
    next = op->next;
    abort_op(I, op);
  }
  lwsp_cond_broadcast(&I->cond);
}

int rt_cancel_blocking(lwsp_inst *I) {
  rt_op *op = tls_blocking;
  if (!op || op->I != I) return WSAEINVAL;
  lwsp_mutex_lock(&I->lock);
  op->cancelled = 1;
  lwsp_cond_broadcast(&I->cond);
  lwsp_mutex_unlock(&I->lock);
  return 0;
}

rt_op *rt_find_op(lwsp_inst *I, LPWSAOVERLAPPED ov) {
  for (rt_op *op = I->ops; op; op = op->next)
    if (op->ov == ov) return op;
  return NULL;
}

/* ---- the service thread: timers and timeouts of pending operations ------------ */
static void run_due(lwsp_inst *I, double now, double *next_due) {
  lua_State *L = I->L;
  *next_due = 0;
  for (rt_op *op = I->ops; op; op = op->next)
    if (!op->blocking && op->state == OP_WAITING && op->deadline) {
      if (op->deadline <= now) { op->timed_out = 1; unwait(I, op); runnable(I, op); }
      else if (!*next_due || op->deadline < *next_due) *next_due = op->deadline;
    }
  lua_rawgeti(L, LUA_REGISTRYINDEX, I->timers_ref);
  lua_pushnil(L);
  while (lua_next(L, -2)) {                 /* T id timer */
    double due;
    lua_getfield(L, -1, "due");
    due = lua_tonumber(L, -1);
    lua_pop(L, 1);
    if (due <= now) {
      lua_getfield(L, -1, "fn");
      lua_pushvalue(L, -3);
      lua_pushnil(L);
      lua_rawset(L, -6);                     /* T[id] = nil before running */
      rt_run_limited(I, L, "timer");
      lua_pop(L, 2);
      lua_pushnil(L);                        /* restart: the table changed */
      continue;
    }
    if (!*next_due || due < *next_due) *next_due = due;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

static void service_main(void *arg) {
  lwsp_inst *I = arg;
  lwsp_trace_self(I->name);   /* this thread works for the provider */
  rt_inst_mark(I, 1);         /* (a WSPCleanup from a timer is refused: it would join this thread) */
  lwsp_mutex_lock(&I->lock);
  while (!I->service_stop) {
    double next_due, now = lwsp_now();
    long ms = -1;
    I->depth = 1;
    run_due(I, now, &next_due);
    rt_pump(I);
    if (next_due) {
      /* a timer already late (the timers before it ran long) waits 1 ms,
       * not for ever, and the lock is released in between */
      ms = (long)((next_due - lwsp_now()) * 1000) + 1;
      if (ms < 1) ms = 1;
    }
    rt_ext_poll(I, &ms);   /* extension calls completed below */
    /* lower sockets handlers wait for: the poll is the wait */
    if (I->lowers && rt_lower_poll(I, ms)) {
      rt_pump(I);
      I->depth = 0;
      continue;
    }
    I->depth = 0;
    if (ms == 0 || I->service_stop) continue;   /* (told to stop while a timer or poll had the lock released) */
    lwsp_cond_wait(&I->cond, &I->lock, ms < 0 ? -1 : ms);
  }
  lwsp_mutex_unlock(&I->lock);
  rt_inst_mark(I, -1);
}

void rt_service_start(lwsp_inst *I) {
  if (I->service || I->closing) return;   /* (a timer set meanwhile goes with the state) */
  I->service_stop = 0;
  I->service = lwsp_thread_start(service_main, I);
  if (!I->service) lwsp_log(I->name, "cannot start the service thread: timers will not fire");
}

/* Called with the lock held once; releases it while joining. */
void rt_service_stop(lwsp_inst *I) {
  lwsp_thread *t = I->service;
  if (!t) return;
  I->service_stop = 1;
  I->service = NULL;
  lwsp_cond_broadcast(&I->cond);
  lwsp_mutex_unlock(&I->lock);
  lwsp_thread_join(t);
  lwsp_mutex_lock(&I->lock);
}

/* lwsp.after(seconds, fn) -> timer id: fn runs on lwsp's service thread */
static int l_after(lua_State *L) {
  lwsp_inst *I = lua_touserdata(L, lua_upvalueindex(1));
  static lua_Integer next_id;
  lua_Number sec = luaL_checknumber(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_rawgeti(L, LUA_REGISTRYINDEX, I->timers_ref);
  lua_createtable(L, 0, 2);
  lua_pushnumber(L, lwsp_now() + (sec > 0 ? sec : 0));
  lua_setfield(L, -2, "due");
  lua_pushvalue(L, 2);
  lua_setfield(L, -2, "fn");
  lua_rawseti(L, -2, ++next_id);
  rt_service_start(I);
  lwsp_cond_broadcast(&I->cond);
  lua_pushinteger(L, next_id);
  return 1;
}

/* lwsp.cancel_timer(id) -> true if it had not run */
static int l_cancel_timer(lua_State *L) {
  lwsp_inst *I = lua_touserdata(L, lua_upvalueindex(1));
  lua_Integer id = luaL_checkinteger(L, 1);
  int found;
  lua_rawgeti(L, LUA_REGISTRYINDEX, I->timers_ref);
  found = lua_rawgeti(L, -1, id) != LUA_TNIL;
  lua_pop(L, 1);
  lua_pushnil(L);
  lua_rawseti(L, -2, id);
  lua_pushboolean(L, found);
  return 1;
}

int rt_pending_open(lua_State *L, lwsp_inst *I) {
  static const luaL_Reg fns[] = {{"wake", l_wake}, {"pending", l_pending}, {"after", l_after}, {"may_wait", l_may_wait},
                                 {"cancel_timer", l_cancel_timer}, {NULL, NULL}};
  lua_pushlightuserdata(L, I);
  luaL_setfuncs(L, fns, 1);
  return 0;
}

/* ---- overlapped completion at once ---------------------------------------------
 * A call given an overlapped structure that finishes inside the handler still
 * completes through the caller's mechanism, as on Windows. */
typedef struct apc_ctx {
  LPWSAOVERLAPPED_COMPLETION_ROUTINE routine;
  LPWSAOVERLAPPED ov;
  DWORD error, bytes, flags;
  lwsp_inst *I;
  uint32_t epoch;
  lwsp_sock *so;
} apc_ctx;

/* Runs on the issuing thread in an alertable wait: the routine first (the
 * socket's handle is still valid), then the socket's pending count drops. */
static void CALLBACK apc_complete(DWORD_PTR ctx) {
  apc_ctx *a = (apc_ctx *)ctx;
  lwsp_inst *I = a->I;
  a->routine(a->error, a->bytes, a->ov, a->flags);
  lwsp_mutex_lock(&I->lock);
  if (I->active && I->epoch == a->epoch) rt_sock_release(I, a->so);
  lwsp_spare_give(&I->apc_spares, a);
  lwsp_mutex_unlock(&I->lock);
}

void rt_overlapped_done(lwsp_inst *I, lwsp_sock *so, SOCKET s, LPWSAOVERLAPPED ov,
                        LPWSAOVERLAPPED_COMPLETION_ROUTINE routine, LPWSATHREADID tid, DWORD error, DWORD bytes,
                        DWORD flags) {
  INT e = 0;
  lwsp_ov_done(ov, error, bytes, flags);
  if (routine) {
    apc_ctx *a = lwsp_spare_take(&I->apc_spares, sizeof *a);   /* every caller holds the provider lock */
    if (!a || !tid) {
      lwsp_log(I->name, "cannot queue the completion routine: %s", a ? "no thread id" : "out of memory");
      lwsp_spare_give(&I->apc_spares, a);
      return;
    }
    a->routine = routine; a->ov = ov; a->error = error; a->bytes = bytes; a->flags = flags;
    a->I = I; a->epoch = I->epoch; a->so = so;
    so->pending++;
    if (I->up.lpWPUQueueApc(tid, apc_complete, (DWORD_PTR)a, &e) != 0) {
      lwsp_log(I->name, "WPUQueueApc failed (error %d): the completion routine will not run", e);
      so->pending--;
      lwsp_spare_give(&I->apc_spares, a);
    }
  } else if (so->ifs) {
    /* An IFS handle is not the host's: WPUCompleteOverlappedRequest refuses
     * it.  Its completion signals the event itself, as the kernel does for
     * an IFS handle's I/O (docs/api.md, "IFS providers"). */
    WSAEVENT ev = (WSAEVENT)((uintptr_t)ov->hEvent & ~(uintptr_t)1);
    if (ev && !I->up.lpWPUSetEvent(ev, &e))
      lwsp_log(I->name, "IFS socket %llu: WPUSetEvent on the overlapped call's event failed (error %d)",
               (unsigned long long)s, e);
  } else {
    int signalled = 0;
    if (!I->complete || lwsp_complete_checked(I->name, I->complete, &I->up, s, ov, error, bytes, &e, &signalled) != 0)
      lwsp_log(I->name, "WPUCompleteOverlappedRequest failed (error %d)", e);
    else if (signalled && lwsp_tracing) {
      /* the host's WPUCompleteOverlappedRequest did not deliver (Wine's ws2_32
       * stub; the log says so): the record names the provider, which
       * signalled the event instead (after the fact: the application may
       * already have stopped the trace) */
      char text[32];
      snprintf(text, sizeof text, "%lu bytes", (unsigned long)bytes);
      lwsp_trace_event_args("complete", I->name, "application", "event signalled", s, (int)error, text);
    }
  }
}
