/*
 * budget.c - the instruction budget: a handler (timer, APC) that runs away is
 * stopped with an error instead of holding its provider forever.
 *
 * A count hook makes Lua's VM call into the hook machinery before every
 * instruction, whatever the count: on a short handler that is a fifth of its
 * instructions.  So no hook is set while runs are short.  One watchdog thread
 * per process looks at every instance each tick; a run that was already going
 * at its last look gets the count hook then, with I->budget instructions left.
 * A run is therefore stopped after at least one tick and `budget` counted
 * instructions, and a run shorter than a tick pays nothing.  Lua allows
 * lua_sethook from outside the running thread (ldebug.c: it "can be called
 * during a signal"), which is what the watchdog relies on.
 *
 * What the watchdog may touch: I->wd_co is written only by the thread that
 * holds the provider lock, and only with a coroutine that thread is running
 * (so it is alive), or NULL.  A coroutine about to be released goes through
 * rt_budget_forget, which clears I->wd_co and waits until the watchdog is not
 * inside instance I (wd_busy): a store-then-load on each side, sequentially
 * consistent, so either the watchdog sees the clear or the releaser sees the
 * watchdog and waits.
 */
#include "runtime.h"

#define BUDGET_STEP 1000      /* instructions between two calls of the count hook */
#define WATCH_TICK_MS 50

/* this thread's innermost run, of any instance (initial-exec where the
 * toolchain has it: two loads instead of a call on every run) */
#if defined(__GNUC__) && !defined(_WIN32)
#  define RUN_TLS static _Thread_local __attribute__((tls_model("initial-exec")))
#else
#  define RUN_TLS static _Thread_local
#endif
RUN_TLS lwsp_inst *tls_inst;
RUN_TLS lua_State *tls_co;

static lwsp_mutex wd_lock;    /* wd_users, wd_thread, wd_stop */
static lwsp_cond wd_cond;
static int wd_users, wd_stop;
static lwsp_thread *wd_thread;
static lwsp_inst *wd_busy;    /* the instance the watchdog is arming a hook in */

static long *left_of(lua_State *co) { return (long *)lua_getextraspace(co); }

static void budget_hook(lua_State *co, lua_Debug *ar) {
  lwsp_inst *I = lwsp_inst_of(co);
  long left;
  (void)ar;
  if (!I || !I->limited) {   /* armed just as its run ended: lwsp's own code runs now */
    lua_sethook(co, NULL, 0, 0);
    return;
  }
  left = __atomic_sub_fetch(left_of(co), BUDGET_STEP, __ATOMIC_RELAXED);
  if (left <= 0) {
    __atomic_store_n(left_of(co), BUDGET_STEP * 10, __ATOMIC_RELAXED);   /* room for the error to unwind */
    luaL_error(co, "instruction budget exceeded (the handler ran too long; see 'budget' in docs/api.md)");
  }
}

void rt_budget_disarm(lua_State *L) {
  if (lua_gethook(L) == budget_hook) lua_sethook(L, NULL, 0, 0);   /* (a script's own debug hook stays) */
}

rt_run_mark rt_budget_enter(lwsp_inst *I, lua_State *co) {
  rt_run_mark m = {tls_inst, tls_co};
  rt_budget_disarm(co);   /* armed in an earlier run */
  tls_inst = I;
  tls_co = co;
  __atomic_store_n(&I->wd_co, co, __ATOMIC_RELEASE);
  __atomic_add_fetch(&I->wd_seq, 1, __ATOMIC_RELEASE);
  return m;
}

void rt_budget_leave(lwsp_inst *I, rt_run_mark m) {
  /* the run that was going on this thread before, if it was this instance's */
  __atomic_store_n(&I->wd_co, m.inst == I ? m.co : NULL, __ATOMIC_RELEASE);
  __atomic_add_fetch(&I->wd_seq, 1, __ATOMIC_RELEASE);
  tls_inst = m.inst;
  tls_co = m.co;
}

void rt_budget_relocked(lwsp_inst *I) {
  if (tls_inst == I) __atomic_store_n(&I->wd_co, tls_co, __ATOMIC_RELEASE);
}

void rt_budget_forget(lwsp_inst *I, lua_State *co) {
  lua_State *cur = co;
  if (co) __atomic_compare_exchange_n(&I->wd_co, &cur, NULL, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  else __atomic_store_n(&I->wd_co, NULL, __ATOMIC_SEQ_CST);
  while (__atomic_load_n(&wd_busy, __ATOMIC_SEQ_CST) == I) lwsp_yield();
}

/* One look at an instance: a run that has lasted since the last look gets the count hook. */
static void look(lwsp_inst *I) {
  uint32_t seq;
  lua_State *co;
  long budget = __atomic_load_n(&I->wd_budget, __ATOMIC_ACQUIRE);
  if (!budget) return;
  seq = __atomic_load_n(&I->wd_seq, __ATOMIC_ACQUIRE);
  if (seq != I->wd_seen) { I->wd_seen = seq; return; }   /* runs began or ended since */
  if (I->wd_armed == seq) return;                          /* this run has its hook */
  __atomic_store_n(&wd_busy, I, __ATOMIC_SEQ_CST);
  co = __atomic_load_n(&I->wd_co, __ATOMIC_SEQ_CST);
  if (co && __atomic_load_n(&I->wd_seq, __ATOMIC_ACQUIRE) == seq) {
    __atomic_store_n(left_of(co), budget, __ATOMIC_RELAXED);
    lua_sethook(co, budget_hook, LUA_MASKCOUNT, BUDGET_STEP);
    I->wd_armed = seq;
  }
  __atomic_store_n(&wd_busy, NULL, __ATOMIC_SEQ_CST);
}

static void watchdog(void *arg) {
  (void)arg;
  lwsp_mutex_lock(&wd_lock);
  while (!wd_stop) {
    lwsp_cond_wait(&wd_cond, &wd_lock, WATCH_TICK_MS);
    if (wd_stop) break;
    for (int i = 0; i < LWSP_MAX_INSTANCES; i++) look(&lwsp_instances[i]);
  }
  lwsp_mutex_unlock(&wd_lock);
}

/* Called once, from lwsp.c's global init. */
void rt_budget_init(void) {
  lwsp_mutex_init(&wd_lock);
  lwsp_cond_init(&wd_cond);
}

void rt_budget_attach(lwsp_inst *I) {
  if (!I->budget) return;
  lwsp_mutex_lock(&wd_lock);
  I->wd_attached = 1;
  if (wd_users++ == 0) {
    wd_stop = 0;
    wd_thread = lwsp_thread_start(watchdog, NULL);
    if (!wd_thread) lwsp_log(I->name, "cannot start the budget's watchdog thread: runaway handlers will not be stopped");
  }
  lwsp_mutex_unlock(&wd_lock);
  __atomic_store_n(&I->wd_budget, I->budget, __ATOMIC_RELEASE);
}

void rt_budget_detach(lwsp_inst *I) {
  lwsp_thread *t = NULL;
  __atomic_store_n(&I->wd_budget, 0, __ATOMIC_SEQ_CST);
  rt_budget_forget(I, NULL);
  if (!I->wd_attached) return;
  I->wd_attached = 0;
  lwsp_mutex_lock(&wd_lock);
  if (--wd_users == 0) {
    wd_stop = 1;
    t = wd_thread;
    wd_thread = NULL;
    lwsp_cond_broadcast(&wd_cond);
  }
  lwsp_mutex_unlock(&wd_lock);
  if (t) lwsp_thread_join(t);
}

/* ---- coroutines a handler makes itself ------------------------------------------
 * coroutine.resume and coroutine.wrap in a provider's state make the resumed
 * coroutine the running one while it runs, so a handler that runs away inside
 * a coroutine of its own is stopped like any other. */

/* Resumes co with the nargs values on top of L; its results, or its error,
 * end up on L (*nres of them).  Returns lua_resume's status. */
static int nested(lua_State *L, lwsp_inst *I, lua_State *co, int nargs, int *nres) {
  rt_run_mark m;
  int st;
  if (!lua_checkstack(co, nargs)) {
    lua_pop(L, nargs);
    lua_pushliteral(L, "too many arguments to resume");
    *nres = 1;
    return LUA_ERRRUN;
  }
  /* A coroutine that cannot be resumed is refused here, on L, as Lua's own
   * coroutine.resume does: lua_resume would push its message on co, outside
   * any protected call, and a memory error there (at the memory ceiling)
   * would take the process down. */
  {
    lua_Debug ar;
    const char *why = NULL;
    if (co == L) why = "cannot resume non-suspended coroutine";
    else if (lua_status(co) == LUA_OK) {
      if (lua_getstack(co, 0, &ar)) why = "cannot resume non-suspended coroutine";
      else if (lua_gettop(co) == 0) why = "cannot resume dead coroutine";
    } else if (lua_status(co) != LUA_YIELD) why = "cannot resume dead coroutine";
    if (why) {
      lua_pop(L, nargs);
      lua_pushstring(L, why);
      *nres = 1;
      return LUA_ERRRUN;
    }
  }
  lua_xmove(L, co, nargs);
  m = rt_budget_enter(I, co);
  st = lua_resume(co, L, nargs, nres);
  rt_budget_leave(I, m);
  if (st == LUA_OK || st == LUA_YIELD) {
    if (!lua_checkstack(L, *nres + 1)) {
      lua_pop(co, *nres);
      lua_pushliteral(L, "too many results to resume");
      *nres = 1;
      return LUA_ERRRUN;
    }
    lua_xmove(co, L, *nres);
  } else {
    lua_xmove(co, L, 1);
    *nres = 1;
  }
  return st;
}

static int co_resume(lua_State *L) {
  lwsp_inst *I = lua_touserdata(L, lua_upvalueindex(1));
  lua_State *co = lua_tothread(L, 1);
  int nres, st;
  luaL_argexpected(L, co, 1, "coroutine");
  st = nested(L, I, co, lua_gettop(L) - 1, &nres);
  lua_pushboolean(L, st == LUA_OK || st == LUA_YIELD);
  lua_insert(L, -(nres + 1));
  return nres + 1;
}

static int wrapped(lua_State *L) {
  lua_State *co = lua_tothread(L, lua_upvalueindex(1));
  lwsp_inst *I = lua_touserdata(L, lua_upvalueindex(2));
  int nres, st = nested(L, I, co, lua_gettop(L), &nres);
  if (st == LUA_OK || st == LUA_YIELD) return nres;
  if (lua_status(co) != LUA_OK && lua_status(co) != LUA_YIELD) {   /* it died: close its variables */
#if LUA_VERSION_RELEASE_NUM >= 50406
    st = lua_closethread(co, L);
#else
    st = lua_resetthread(co);
#endif
    if (st != LUA_OK) { lua_pop(L, 1); lua_xmove(co, L, 1); }
  }
  if (st != LUA_ERRMEM && lua_type(L, -1) == LUA_TSTRING) {   /* where the call was, as coroutine.wrap says */
    luaL_where(L, 1);
    lua_insert(L, -2);
    lua_concat(L, 2);
  }
  return lua_error(L);
}

static int co_wrap(lua_State *L) {
  lua_State *co;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  co = lua_newthread(L);
  lua_pushvalue(L, 1);
  lua_xmove(L, co, 1);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushcclosure(L, wrapped, 2);
  return 1;
}

void rt_budget_open(lua_State *L, lwsp_inst *I) {
  if (lua_getglobal(L, "coroutine") == LUA_TTABLE) {
    lua_pushlightuserdata(L, I);
    lua_pushcclosure(L, co_resume, 1);
    lua_setfield(L, -2, "resume");
    lua_pushlightuserdata(L, I);
    lua_pushcclosure(L, co_wrap, 1);
    lua_setfield(L, -2, "wrap");
  }
  lua_pop(L, 1);
}
