/*
 * budget.c - the instruction budget: a handler (timer, APC, the script's top
 * level, a finalising close) that runs away is stopped with an error instead
 * of holding its provider forever, and a provider's state offers no way
 * around it.
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
 * A run is the outermost entry of a thread into an instance: coroutines the
 * handler resumes (coroutine.resume/wrap below), a handler's own calls back
 * into its provider, are part of it, share its budget and its "long" status,
 * and do not make it look new to the watchdog.
 *
 * Once the budget is spent the run is condemned: the hook fires before every
 * instruction and raises each time, so a handler that catches the error
 * (pcall, xpcall, a coroutine) only unwinds to the next one; every coroutine
 * the run switches to is hooked at once; xpcall's message handler is not
 * called; and the call fails with WSAENETDOWN whatever the handler returned.
 * Lua runs an error's message handler and __gc finalizers with hooks off, and
 * a coroutine that died of the hook's error keeps them off: so a condemned
 * coroutine is never closed (its to-be-closed variables are not run), xpcall
 * skips its handler, and __gc metamethods are refused (rt_budget_open).
 *
 * What the watchdog may touch: I->wd_co is written only by the thread that
 * holds the provider lock, and only with a coroutine that thread is running
 * (so it is alive), or NULL.  A coroutine about to be released goes through
 * rt_budget_forget, which clears I->wd_co and waits until the watchdog is not
 * inside instance I (wd_busy): a store-then-load on each side, sequentially
 * consistent, so either the watchdog sees the clear or the releaser sees the
 * watchdog and waits.  I->wd_hooked works the same way between the watchdog
 * (which arms a run) and the thread (which switches coroutines within it).
 */
#include "runtime.h"
#include <string.h>

#define BUDGET_STEP 1000      /* instructions between two calls of the count hook */
#define CALL_CHARGE 1000      /* instructions a call out to lwsp's C (an upcall, a call down) counts for */
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

static const char budget_msg[] =
  "instruction budget exceeded (the handler ran too long; see 'budget' in docs/api.md)";

/* Every thread of a provider's state carries its instance in its extra space
 * (lua_newthread copies the main thread's). */
void rt_budget_bind(lua_State *L, lwsp_inst *I) { *(lwsp_inst **)lua_getextraspace(L) = I; }
static lwsp_inst *inst_at(lua_State *co) { return *(lwsp_inst **)lua_getextraspace(co); }

static void budget_hook(lua_State *co, lua_Debug *ar);

/* condemned: before every instruction; else every BUDGET_STEP */
static void arm(lua_State *co, int condemned) {
  lua_sethook(co, budget_hook, LUA_MASKCOUNT, condemned ? 1 : BUDGET_STEP);
}

static void budget_hook(lua_State *co, lua_Debug *ar) {
  lwsp_inst *I = inst_at(co);
  (void)ar;
  if (!I || !I->limited) {   /* armed just as its run ended: lwsp's own code runs now */
    lua_sethook(co, NULL, 0, 0);
    return;
  }
  if (!I->wd_condemned) {
    if (__atomic_sub_fetch(&I->wd_left, BUDGET_STEP, __ATOMIC_RELAXED) > 0) return;
    I->wd_condemned = 1;
  }
  arm(co, 1);   /* (again: a late arming by the watchdog may have slowed it) */
  luaL_error(co, "%s", budget_msg);
}

/* The coroutine the run has switched to gets the hook at once if the run is
 * long already (or condemned). */
static void rearm(lwsp_inst *I, lua_State *co) {
  int want;
  if (!co) return;
  want = I->wd_condemned ? 1
       : __atomic_load_n(&I->wd_hooked, __ATOMIC_SEQ_CST) == __atomic_load_n(&I->wd_seq, __ATOMIC_RELAXED) ? BUDGET_STEP
       : 0;
  if (!want) rt_budget_disarm(co);
  /* a hook already right keeps its count: re-arming would restart it, and a
   * run that switches coroutines often would never reach its next hook call */
  else if (lua_gethook(co) != budget_hook || lua_gethookcount(co) != want) arm(co, want == 1);
}

void rt_budget_disarm(lua_State *L) {
  if (lua_gethook(L) == budget_hook) lua_sethook(L, NULL, 0, 0);
}

int rt_budget_condemned(lwsp_inst *I) { return I->wd_condemned; }
const char *rt_budget_message(void) { return budget_msg; }

rt_run_mark rt_budget_enter(lwsp_inst *I, lua_State *co) {
  rt_run_mark m = {tls_inst, tls_co};
  tls_inst = I;
  tls_co = co;
  if (m.inst != I) {      /* a new run */
    rt_budget_disarm(co);   /* armed in an earlier run */
    uint32_t id = ++I->wd_ids;
    if (!id) id = ++I->wd_ids;
    I->wd_condemned = 0;   /* (a new run is not armed: release stores are enough, as on every call) */
    __atomic_store_n(&I->wd_co, co, __ATOMIC_RELEASE);
    __atomic_store_n(&I->wd_seq, id, __ATOMIC_RELEASE);
  } else {                /* within the run: the switch and the watchdog's arming meet (wd_hooked) */
    __atomic_store_n(&I->wd_co, co, __ATOMIC_SEQ_CST);
    rearm(I, co);
  }
  return m;
}

int rt_budget_leave(lwsp_inst *I, rt_run_mark m) {
  int condemned = I->wd_condemned;
  if (m.inst == I) {      /* back to the coroutine that resumed this one */
    __atomic_store_n(&I->wd_co, m.co, __ATOMIC_SEQ_CST);
    rearm(I, m.co);
  } else {
    __atomic_store_n(&I->wd_seq, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&I->wd_co, NULL, __ATOMIC_RELEASE);
  }
  tls_inst = m.inst;
  tls_co = m.co;
  return condemned;
}

/* A call out of a long run into lwsp's C (an upcall; a call down is charged
 * in rt_budget_relocked) counts as CALL_CHARGE instructions: each is a few VM
 * instructions however long it takes, so a loop of them would otherwise run
 * hundreds of times longer than a loop of instructions with the same budget.
 * A run not yet armed pays nothing, like its instructions. */
void rt_budget_charge(lwsp_inst *I, lua_State *co) {
  if (tls_inst != I || !I->limited || I->wd_condemned) return;
  if (__atomic_load_n(&I->wd_hooked, __ATOMIC_SEQ_CST) != __atomic_load_n(&I->wd_seq, __ATOMIC_RELAXED)) return;
  if (__atomic_sub_fetch(&I->wd_left, CALL_CHARGE, __ATOMIC_RELAXED) > 0) return;
  I->wd_condemned = 1;
  arm(co, 1);   /* the next instruction raises */
}

/* The lock is released inside a run (a call down): other threads may run
 * their own runs meanwhile, so this one's state is kept aside. */
rt_budget_saved rt_budget_release(lwsp_inst *I) {
  rt_budget_saved s;
  if (tls_inst != I) { s.mine = 0; return s; }
  s.mine = 1;
  s.seq = __atomic_load_n(&I->wd_seq, __ATOMIC_RELAXED);
  s.co = tls_co;
  s.left = __atomic_load_n(&I->wd_left, __ATOMIC_RELAXED);
  s.armed = __atomic_load_n(&I->wd_hooked, __ATOMIC_ACQUIRE) == s.seq;
  s.condemned = I->wd_condemned;
  s.limited = I->limited;
  __atomic_store_n(&I->wd_parked, s.seq, __ATOMIC_SEQ_CST);
  __atomic_store_n(&I->wd_seq, 0, __ATOMIC_RELEASE);
  __atomic_store_n(&I->wd_co, NULL, __ATOMIC_RELEASE);
  return s;
}

void rt_budget_relocked(lwsp_inst *I, rt_budget_saved s) {
  uint32_t parked;
  if (!s.mine) return;
  parked = s.seq;
  __atomic_compare_exchange_n(&I->wd_parked, &parked, 0, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  if (!s.armed && s.seq && __atomic_load_n(&I->wd_pending, __ATOMIC_SEQ_CST) == s.seq) {
    s.armed = 1;   /* found long while it was below: armed now, as the watchdog would have */
    s.left = __atomic_load_n(&I->wd_budget, __ATOMIC_ACQUIRE);
    if (!s.left) s.armed = 0;
  }
  if (s.armed && !s.condemned && (s.left -= CALL_CHARGE) <= 0) s.condemned = 1;   /* rt_budget_charge's rule */
  I->wd_condemned = s.condemned;
  I->limited = s.limited;
  __atomic_store_n(&I->wd_co, s.co, __ATOMIC_RELEASE);
  __atomic_store_n(&I->wd_seq, s.seq, __ATOMIC_RELEASE);
  if (s.armed) {   /* (a run not armed yet keeps its coroutine as it is: unhooked, or armed by the watchdog just now) */
    __atomic_store_n(&I->wd_left, s.left, __ATOMIC_RELAXED);
    __atomic_store_n(&I->wd_hooked, s.seq, __ATOMIC_SEQ_CST);
  }
  if (s.armed || s.condemned) rearm(I, s.co);
}

void rt_budget_forget(lwsp_inst *I, lua_State *co) {
  lua_State *cur = co;
  if (co) __atomic_compare_exchange_n(&I->wd_co, &cur, NULL, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  else __atomic_store_n(&I->wd_co, NULL, __ATOMIC_SEQ_CST);
  while (__atomic_load_n(&wd_busy, __ATOMIC_SEQ_CST) == I) lwsp_yield();
}

/* Closes co (runs its pending to-be-closed variables) as a run of its own,
 * under the budget.  A coroutine that died while its run was condemned is
 * not closed: the hook's error left its hooks off. */
void rt_budget_close(lwsp_inst *I, lua_State *co, int condemned) {
  rt_run_mark m;
  int outer = I->limited;
  if (!co || condemned) return;
  I->limited = 1;
  m = rt_budget_enter(I, co);
  if (I->wd_condemned) { rt_budget_leave(I, m); I->limited = outer; return; }
#if LUA_VERSION_RELEASE_NUM >= 50406
  lua_closethread(co, I->L);
#else
  lua_resetthread(co);
#endif
  rt_budget_leave(I, m);
  I->limited = outer;
}

/* One look at an instance: a run that has lasted since the last look gets
 * the count hook.  A run inside a call down (its lock released, wd_seq 0) is
 * still the run it was: seen through wd_parked, so a run that spends nearly
 * all its time below it is found long like any other, and armed when it
 * comes back (wd_pending, taken up by rt_budget_relocked). */
static void look(lwsp_inst *I) {
  uint32_t seq, cur;
  lua_State *co;
  long budget = __atomic_load_n(&I->wd_budget, __ATOMIC_ACQUIRE);
  if (!budget) return;
  seq = __atomic_load_n(&I->wd_seq, __ATOMIC_SEQ_CST);
  cur = seq ? seq : __atomic_load_n(&I->wd_parked, __ATOMIC_SEQ_CST);
  if (cur != I->wd_seen) { I->wd_seen = cur; return; }   /* runs began or ended since */
  if (!cur || I->wd_armed == cur) return;                /* no run, or this run has its hook */
  if (__atomic_load_n(&I->wd_hooked, __ATOMIC_SEQ_CST) == cur) return;   /* armed on its way back up */
  if (!seq) {   /* below: armed when it comes back (or at the next look, if it came back already) */
    __atomic_store_n(&I->wd_pending, cur, __ATOMIC_SEQ_CST);
    return;
  }
  __atomic_store_n(&wd_busy, I, __ATOMIC_SEQ_CST);
  __atomic_store_n(&I->wd_left, budget, __ATOMIC_RELAXED);
  __atomic_store_n(&I->wd_hooked, seq, __ATOMIC_SEQ_CST);
  co = __atomic_load_n(&I->wd_co, __ATOMIC_SEQ_CST);
  if (co && __atomic_load_n(&I->wd_seq, __ATOMIC_SEQ_CST) == seq) arm(co, 0);
  I->wd_armed = seq;
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
  if (I->budget && !I->wd_attached) {
    lwsp_mutex_lock(&wd_lock);
    I->wd_attached = 1;
    if (wd_users++ == 0) {
      wd_stop = 0;
      wd_thread = lwsp_thread_start(watchdog, NULL);
      if (!wd_thread) lwsp_log(I->name, "cannot start the budget's watchdog thread: runaway handlers will not be stopped");
    }
    lwsp_mutex_unlock(&wd_lock);
  }
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
 * a coroutine of its own is stopped like any other; coroutine.close does not
 * close one that the budget stopped. */

#define STOPPED_KEY "lwsp.budget_stopped"   /* registry: weak set of coroutines the budget stopped */

static void mark_stopped(lua_State *L, int co_idx) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, STOPPED_KEY) == LUA_TTABLE) {
    lua_pushvalue(L, co_idx);
    lua_pushboolean(L, 1);
    lua_rawset(L, -3);
  }
  lua_pop(L, 1);
}

static int was_stopped(lua_State *L, int co_idx) {
  int r = 0;
  if (lua_getfield(L, LUA_REGISTRYINDEX, STOPPED_KEY) == LUA_TTABLE) {
    lua_pushvalue(L, co_idx);
    r = lua_rawget(L, -2) != LUA_TNIL;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return r;
}

/* Resumes co (at co_idx on L) with the nargs values on top of L; its results,
 * or its error, end up on L (*nres of them).  Returns lua_resume's status. */
static int nested(lua_State *L, lwsp_inst *I, lua_State *co, int co_idx, int nargs, int *nres) {
  rt_run_mark m;
  int st, condemned;
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
  condemned = rt_budget_leave(I, m);
  if (st == LUA_OK || st == LUA_YIELD) {
    if (!lua_checkstack(L, *nres + 1)) {
      lua_pop(co, *nres);
      lua_pushliteral(L, "too many results to resume");
      *nres = 1;
      return LUA_ERRRUN;
    }
    lua_xmove(co, L, *nres);
  } else {
    if (condemned) mark_stopped(L, co_idx);
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
  st = nested(L, I, co, 1, lua_gettop(L) - 1, &nres);
  lua_pushboolean(L, st == LUA_OK || st == LUA_YIELD);
  lua_insert(L, -(nres + 1));
  return nres + 1;
}

static int wrapped(lua_State *L) {
  lua_State *co = lua_tothread(L, lua_upvalueindex(1));
  lwsp_inst *I = lua_touserdata(L, lua_upvalueindex(2));
  int nres, st = nested(L, I, co, lua_upvalueindex(1), lua_gettop(L), &nres);
  if (st == LUA_OK || st == LUA_YIELD) return nres;
  if (lua_status(co) != LUA_OK && lua_status(co) != LUA_YIELD && !was_stopped(L, lua_upvalueindex(1))) {
    /* it died: close its variables, under the budget */
    rt_run_mark m = rt_budget_enter(I, co);
#if LUA_VERSION_RELEASE_NUM >= 50406
    st = lua_closethread(co, L);
#else
    st = lua_resetthread(co);
#endif
    rt_budget_leave(I, m);
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

/* coroutine.close: Lua's, but a coroutine the budget stopped is not closed
 * (its hooks are off) and answers false and the budget's message; closing
 * runs under the budget. */
static int co_close(lua_State *L) {
  lwsp_inst *I = lua_touserdata(L, lua_upvalueindex(1));
  lua_State *co = lua_tothread(L, 1);
  rt_run_mark m;
  int st;
  luaL_argexpected(L, co, 1, "coroutine");
  if (was_stopped(L, 1)) {
    lua_pushboolean(L, 0);
    lua_pushstring(L, budget_msg);
    return 2;
  }
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_pushvalue(L, 1);
  if (lua_status(co) == LUA_OK) {   /* nothing to close: Lua's own answer (or error) */
    lua_call(L, 1, LUA_MULTRET);
    return lua_gettop(L) - 1;
  }
  /* suspended, or dead of an error: its variables run with co as the running coroutine */
  m = rt_budget_enter(I, co);
  st = lua_pcall(L, 1, LUA_MULTRET, 0);
  rt_budget_leave(I, m);
  if (st != LUA_OK) return lua_error(L);
  return lua_gettop(L) - 1;
}

/* ---- what a provider's state offers ---------------------------------------------
 * The standard libraries, less what would end or change the host process, wait
 * without end, or get around the budget. */

/* xpcall(f, msgh, ...): Lua's, but msgh is not called once the run is
 * condemned (Lua calls it with hooks off after the hook's error). */
static int xp_handler(lua_State *L) {
  lwsp_inst *I = inst_at(L);
  if (I && I->wd_condemned) return 1;   /* the error as it is */
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, 1);
  return 1;
}

static int xp_call(lua_State *L) {
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_pushvalue(L, lua_upvalueindex(1));   /* Lua's xpcall */
  lua_insert(L, 1);
  lua_pushvalue(L, 3);
  lua_pushcclosure(L, xp_handler, 1);
  lua_replace(L, 3);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

/* setmetatable: Lua's, but a metatable with a __gc field is refused: Lua runs
 * finalizers with hooks off, at any allocation, so nothing could stop one. */
static int set_mt(lua_State *L) {
  int t = lua_type(L, 2);
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_argexpected(L, t == LUA_TNIL || t == LUA_TTABLE, 2, "nil or table");
  if (t == LUA_TTABLE) {
    lua_pushliteral(L, "__gc");
    if (lua_rawget(L, 2) != LUA_TNIL)
      return luaL_error(L, "__gc metamethods are not available in a provider (finalizers run where no budget can stop them)");
    lua_pop(L, 1);
  }
  if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL) return luaL_error(L, "cannot change a protected metatable");
  lua_settop(L, 2);
  lua_setmetatable(L, 1);
  return 1;
}

/* getmetatable: Lua's for tables and strings; a userdata's metatable (lwsp's
 * and io's, with C finalizers) stays out of reach. */
static int get_mt(lua_State *L) {
  luaL_checkany(L, 1);
  if (lua_type(L, 1) == LUA_TUSERDATA || lua_type(L, 1) == LUA_TLIGHTUSERDATA) {
    if (luaL_getmetafield(L, 1, "__metatable") == LUA_TNIL) lua_pushnil(L);
    return 1;
  }
  if (!lua_getmetatable(L, 1)) { lua_pushnil(L); return 1; }
  luaL_getmetafield(L, 1, "__metatable");
  return 1;
}

/* collectgarbage: every option but "stop", and no tuning arguments (a
 * collector that never runs is one that a memory ceiling must make up for). */
static int gc_call(lua_State *L) {
  const char *opt = luaL_optstring(L, 1, "collect");
  if (!strcmp(opt, "stop")) return luaL_error(L, "collectgarbage('stop') is not available in a provider");
  if ((!strcmp(opt, "incremental") || !strcmp(opt, "generational") || !strcmp(opt, "setpause") ||
       !strcmp(opt, "setstepmul")) && lua_gettop(L) > 1)
    return luaL_error(L, "collectgarbage('%s') takes no tuning arguments in a provider", opt);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

/* io.lines needs a file name: without one it reads the host's standard input */
static int io_lines(lua_State *L) {
  luaL_checkstring(L, 1);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

/* table.move: Lua's, but no more elements than the budget in one call (it
 * moves nils into an empty table as fast as anything: no memory, no hook) */
static int tab_move(lua_State *L) {
  lwsp_inst *I = inst_at(L);
  lua_Integer f = luaL_checkinteger(L, 2), e = luaL_checkinteger(L, 3);
  if (I && I->budget > 0 && e >= f && (lua_Unsigned)e - (lua_Unsigned)f >= (lua_Unsigned)I->budget)
    return luaL_error(L, "table.move of more elements than the instruction budget (see 'budget' in docs/api.md)");
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

static void wrap_field(lua_State *L, const char *lib, const char *name, lua_CFunction f) {
  if (lib && lua_getglobal(L, lib) != LUA_TTABLE) { lua_pop(L, 1); return; }
  if (!lib) lua_pushglobaltable(L);
  lua_getfield(L, -1, name);
  lua_pushcclosure(L, f, 1);
  lua_setfield(L, -2, name);
  lua_pop(L, 1);
}

static void drop_fields(lua_State *L, const char *lib, const char *const *names) {
  if (lua_getglobal(L, lib) == LUA_TTABLE)
    for (; *names; names++) {
      lua_pushnil(L);
      lua_setfield(L, -2, *names);
    }
  lua_pop(L, 1);
}

void rt_budget_open(lua_State *L, lwsp_inst *I) {
  /* os.exit ends the host; os.execute and io.popen wait for another process,
   * io.read and io.input for the host's standard input, debug.debug for a
   * console; os.setlocale changes the host process for every thread */
  static const char *const os_out[] = {"exit", "execute", "setlocale", NULL};
  static const char *const io_out[] = {"popen", "read", "input", "stdin", NULL};
  /* debug: only what reads; the rest reaches the hook, the registry, other
   * functions' locals and upvalues, or metatables lwsp relies on */
  static const char *const debug_out[] = {"debug", "sethook", "setlocal", "setupvalue", "upvaluejoin",
    "setmetatable", "getmetatable", "setuservalue", "getuservalue", "getregistry", "getupvalue",
    "setcstacklimit", NULL};
  rt_budget_bind(L, I);
  lua_newtable(L);                      /* coroutines the budget stopped: a weak set */
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, STOPPED_KEY);
  if (lua_getglobal(L, "coroutine") == LUA_TTABLE) {
    static const luaL_Reg co_fns[] = {{"resume", co_resume}, {"wrap", co_wrap}, {NULL, NULL}};
    lua_pushlightuserdata(L, I);
    luaL_setfuncs(L, co_fns, 1);
    lua_pushlightuserdata(L, I);
    lua_getfield(L, -2, "close");
    lua_pushcclosure(L, co_close, 2);
    lua_setfield(L, -2, "close");
  }
  lua_pop(L, 1);
  wrap_field(L, NULL, "xpcall", xp_call);
  wrap_field(L, NULL, "collectgarbage", gc_call);
  lua_pushcfunction(L, set_mt);
  lua_setglobal(L, "setmetatable");
  lua_pushcfunction(L, get_mt);
  lua_setglobal(L, "getmetatable");
  wrap_field(L, "io", "lines", io_lines);
  wrap_field(L, "table", "move", tab_move);
  /* load, loadfile, dofile and require's searchers: sandbox.c (text only) */
  drop_fields(L, "os", os_out);
  drop_fields(L, "io", io_out);
  drop_fields(L, "debug", debug_out);
  rt_match_open(L, I);
}

/* Runs the function on top of L (no arguments, no results) under the budget,
 * as a timer or an APC runs: an error or a stop is logged as `what`'s, the
 * function and its error are popped, and the hook is disarmed (lwsp's own
 * code runs on L next). */
void rt_run_limited(lwsp_inst *I, lua_State *L, const char *what) {
  rt_run_mark run;
  int st, condemned;
  I->limited = 1;
  I->lua_runs++;
  run = rt_budget_enter(I, L);
  st = lua_pcall(L, 0, 0, 0);
  I->limited = 0;
  condemned = rt_budget_leave(I, run);
  if (st != LUA_OK) {
    lwsp_log(I->name, "%s raised an error: %s", what, rt_error_text(L, -1));
    lua_pop(L, 1);
  } else if (condemned) {
    lwsp_log(I->name, "%s raised an error: %s (caught by the %s, which was stopped all the same)", what,
             rt_budget_message(), what);
  }
  rt_budget_disarm(L);
}
