/*
 * lwsp.c - the runtime's entry: WSPStartup and the instances.
 *
 * WSPStartup creates (or shares) one instance per provider GUID: a Lua state
 * running the provider's script, a recursive lock that serialises every entry
 * into that state, and a socket table (sockets.c).  Each of LWSP_MAX_INSTANCES
 * slots has its own proc table of 30 trampolines (dispatch.c), so every entry
 * knows its instance without a lookup, including WSPCleanup, WSPSelect and
 * WSPCancelBlockingCall, which carry no socket.  Every handler runs in a
 * coroutine (calls.c); a Lua error, a bad return value or a bad argument from
 * the caller becomes a Winsock error and a log line.  The lwsp module's Lua
 * face is module.c's.
 */
#include "runtime.h"
#include "extfn.h"
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdarg.h>
#include <limits.h>
#include <stdint.h>
#ifndef _WIN32
#  include <dlfcn.h>
#endif

const char *const lwsp_proc_names[LWSP_NPROCS] = {
#define N_(i, lname, sname) #lname,
  LWSP_PROCS(N_)
#undef N_
};
const char *const lwsp_spi_names[LWSP_NPROCS] = {
#define N_(i, lname, sname) "WSP" #sname,
  LWSP_PROCS(N_)
#undef N_
};

lwsp_inst lwsp_instances[LWSP_MAX_INSTANCES];
static lwsp_mutex g_lock;


static void init_all(void) {
  lwsp_mutex_init(&g_lock);
  lwsp_trace_init();
  rt_budget_init();
  for (int i = 0; i < LWSP_MAX_INSTANCES; i++) {
    lwsp_instances[i].slot = i;
    lwsp_mutex_init(&lwsp_instances[i].lock);
    lwsp_cond_init(&lwsp_instances[i].cond);
    lwsp_instances[i].apc_spares.max = APC_SPARES;
  }
}
#ifdef _WIN32
static INIT_ONCE g_once = INIT_ONCE_STATIC_INIT;
static BOOL CALLBACK init_once(PINIT_ONCE o, PVOID p, PVOID *c) {
  (void)o; (void)p; (void)c;
  init_all();
  return TRUE;
}
void rt_global_init(void) { InitOnceExecuteOnce(&g_once, init_once, NULL, NULL); }
#else
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static void init_once(void) { init_all(); }
void rt_global_init(void) { pthread_once(&g_once, init_once); }
#endif


/* The host's function comes from the module that supplied the upcall table
 * (ws2_32.dll on Windows, lwsp's host module elsewhere), never from lwsp's
 * own module, which would not know the host's handles. */
LPWPUCOMPLETEOVERLAPPEDREQUEST lwsp_find_complete(const WSPUPCALLTABLE *up, char *why, size_t whylen) {
  return lwsp_host_complete_export(up, why, whylen);
}

/* ---- instances ------------------------------------------------------------------ */
static void *inst_alloc(void *ud, void *ptr, size_t osize, size_t nsize);

/* A provider's state is told by its allocator, which no Lua code can change
 * (a registry entry could be). */
lwsp_inst *lwsp_inst_of(lua_State *L) {
  void *ud = NULL;
  return lua_getallocf(L, &ud) == inst_alloc ? (lwsp_inst *)ud : NULL;
}

/* The provider state's allocator counts its bytes, so a ceiling can be set. */
static void *inst_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  lwsp_inst *I = ud;
  size_t old = ptr ? osize : 0;
  void *p;
  if (nsize == 0) {
    free(ptr);
    I->mem -= old;
    return NULL;
  }
  if (I->limited && I->mem_limit && nsize > old && I->mem + (nsize - old) > I->mem_limit) return NULL;
  p = realloc(ptr, nsize);
  if (p) I->mem = I->mem - old + nsize;
  return p;
}

/* Lua's warnings come in pieces (tocont: more follow); one log line per
 * warning, control messages "@off" and "@on" as Lua defines them. */
static void inst_warn(void *ud, const char *msg, int tocont) {
  lwsp_inst *I = ud;
  size_t n = strlen(msg);
  if (I->nwarn == 0 && !tocont && msg[0] == '@') {
    if (!strcmp(msg, "@off")) I->warn_off = 1;
    else if (!strcmp(msg, "@on")) I->warn_off = 0;
    return;
  }
  if (I->nwarn < sizeof I->warn - 1) {
    size_t k = n < sizeof I->warn - 1 - I->nwarn ? n : sizeof I->warn - 1 - I->nwarn;
    memcpy(I->warn + I->nwarn, msg, k);
    I->nwarn += k;
    if (k < n) memcpy(I->warn + sizeof I->warn - 4, "...", 3), I->nwarn = sizeof I->warn - 1;
  }
  if (tocont) return;
  I->warn[I->nwarn] = 0;
  if (!I->warn_off) lwsp_log(I->name, "warning: %s", I->warn);
  I->nwarn = 0;
}

static int msgh(lua_State *L) {
  luaL_traceback(L, L, rt_error_text(L, 1), 1);
  return 1;
}

static void dirname_of(const char *path, char *out, size_t len) {
  const char *slash = strrchr(path, '/');
#ifdef _WIN32
  const char *bs = strrchr(path, '\\');
  if (!slash || (bs && bs > slash)) slash = bs;
#endif
  if (!slash) { snprintf(out, len, "."); return; }
  snprintf(out, len, "%.*s", (int)(slash - path), path);
}

/* Reads $name as a whole decimal number in [0, max]: 1 with *out, 0 when it
 * is unset or not such a number (then logged; the caller keeps its default).
 * "abc", "1e5", "12 ", "-3" and values past max are refused, never cut. */
static int env_count(lwsp_inst *I, const char *name, long long max, long long *out) {
  const char *v = getenv(name);
  long long n = 0;
  const char *p;
  if (!v) return 0;
  for (p = v; *p >= '0' && *p <= '9'; p++) {
    if (n > (max - (*p - '0')) / 10) break;
    n = n * 10 + (*p - '0');
  }
  if (p == v || *p) {
    lwsp_log(I->name, "WSPStartup: ignoring $%s='%.40s': not a whole number from 0 to %lld; the default applies", name, v, max);
    return 0;
  }
  *out = n;
  return 1;
}

/* Runs the provider script and reads its table of handlers (in a protected
 * call, under the budget: its metamethods, if any, run too).  Raises the
 * message to log. */
/* What a layer whose install says on-failure passthrough runs when its own
 * script cannot: wsp.layered from lwsp's own modules, every call to the layer
 * below. */
static const char fallback_script[] = "return require('wsp.layered').new()";

static int run_script(lua_State *L) {
  lwsp_inst *I = lua_touserdata(L, 1);
  lua_pushcfunction(L, msgh);
  if ((I->fallback ? luaL_loadbufferx(L, fallback_script, sizeof fallback_script - 1, "=(lwsp on-failure passthrough)", "t")
                   : luaL_loadfilex(L, I->script, "t")) != LUA_OK)
    return luaL_error(L, "cannot load provider script %s: %s", I->script, rt_error_text(L, -1));
  lwsp_push_guid(L, &I->id);
  lwsp_push_protocol_info(L, &I->info);
  if (lua_pcall(L, 2, 1, 2) != LUA_OK) return luaL_error(L, "provider script %s failed: %s", I->script, rt_error_text(L, -1));
  if (!lua_istable(L, -1))
    return luaL_error(L, "provider script %s returned %s, not a table of handlers", I->script, luaL_typename(L, -1));
  for (int i = 0; i < LWSP_NPROCS; i++) {
    int t = lwsp_rawfield(L, -1, lwsp_proc_names[i]);
    if (t == LUA_TFUNCTION) {
      I->href[i] = luaL_ref(L, LUA_REGISTRYINDEX);
    } else if (t == LUA_TNIL) {
      lua_pop(L, 1);
    } else {
      return luaL_error(L, "provider script %s: handler '%s' is a %s, not a function", I->script, lwsp_proc_names[i],
                        luaL_typename(L, -1));
    }
  }
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    if (lua_type(L, -2) == LUA_TSTRING && lua_isfunction(L, -1)) {
      const char *k = lua_tostring(L, -2);
      int known = 0;
      for (int i = 0; i < LWSP_NPROCS && !known; i++) known = strcmp(k, lwsp_proc_names[i]) == 0;
      for (int i = 0; i < 8 && !known; i++) known = rt_ext_handler_names[i] && strcmp(k, rt_ext_handler_names[i]) == 0;
      if (!known) lwsp_log(I->name, "provider script %s: '%s' is not an SPI handler name; it is never called", I->script, k);
    }
    lua_pop(L, 1);
  }
  lwsp_rawfield(L, -1, "ifs");
  I->ifs = lua_toboolean(L, -1);
  lwsp_rawfield(L, -2, "views");
  I->views = lua_toboolean(L, -1);
  lwsp_rawfield(L, -3, "budget");
  if (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 0 && (unsigned long long)lua_tointeger(L, -1) <= (unsigned long long)LONG_MAX)
    I->budget = (long)lua_tointeger(L, -1);
  else if (!lua_isnil(L, -1))
    lwsp_log(I->name, "provider script %s: ignoring budget (%s%s): not an integer from 0 to %ld", I->script,
             luaL_typename(L, -1), lua_isinteger(L, -1) ? " out of range" : "", LONG_MAX);
  lwsp_rawfield(L, -4, "memory_limit");
  if (lua_isinteger(L, -1) && lua_tointeger(L, -1) > 0 && (unsigned long long)lua_tointeger(L, -1) <= (unsigned long long)SIZE_MAX)
    I->mem_limit = (size_t)lua_tointeger(L, -1);
  else if (!lua_isnil(L, -1))
    lwsp_log(I->name, "provider script %s: ignoring memory_limit (%s): not a positive integer", I->script,
             luaL_typename(L, -1));
  if (lwsp_rawfield(L, -5, "description") == LUA_TSTRING) {
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, "lwsp.description");
  }
  lua_pop(L, 5);
  lua_setfield(L, LUA_REGISTRYINDEX, "lwsp.handlers");
  return 0;
}

static int inst_open(lwsp_inst *I, const WSAPROTOCOL_INFOW *info, const WSPUPCALLTABLE *up, const GUID *id,
                     DWORD layer_id, int fallback);

/* The script could not run (inst_open said why).  A layer whose install
 * chose on-failure passthrough starts again with wsp.layered in place of the
 * script, and says so in the log and the trace; otherwise 0 (the caller's
 * WSAEPROVIDERFAILEDINIT). */
static int rt_fallback_open(lwsp_inst *I, const WSAPROTOCOL_INFOW *info, const WSPUPCALLTABLE *up, const GUID *id,
                            DWORD layer_id) {
  char g[39];
  if (!lwsp_registry_on_failure(id)) return 0;
  lwsp_guid_format(id, g);
  if (!layer_id || info->ProtocolChain.ChainLen < 2) {
    lwsp_log(g, "WSPStartup: on-failure passthrough applies to a layer; this entry is no layer's chain: the call fails");
    return 0;
  }
  lwsp_log(g, "WSPStartup: the provider script could not run; its install says on-failure passthrough: every call "
           "goes to the layer below");
  if (!inst_open(I, info, up, id, layer_id, 1)) return 0;
  if (lwsp_tracing)
    lwsp_trace_event_args("fallback", I->name, "lower", "on-failure passthrough", 0, 0,
                          "the provider script could not run: every call goes to the layer below");
  return 1;
}

/* Builds the instance's Lua state and runs the provider script.  On failure,
 * logs why (naming the file) and returns 0 with the state closed.  Over 80
 * lines: the state's setup (allocator, libraries, sandbox, budget, lwsp's
 * tables, the script) is one ordered sequence that every failure unwinds. */
static int inst_open(lwsp_inst *I, const WSAPROTOCOL_INFOW *info, const WSPUPCALLTABLE *up, const GUID *id,
                     DWORD layer_id, int fallback) {
  char err[1200], sdir[1024], mdir[1024];
  lua_State *L;
  const char *mod = lwsp_module_path();
  memset((char *)I + offsetof(lwsp_inst, startups), 0, sizeof *I - offsetof(lwsp_inst, startups));
  I->epoch++;
  I->fallback = fallback;
  I->id = *id;
  I->layer_id = layer_id;
  lwsp_guid_format(&I->id, I->name);
  I->up = *up;
  I->info = *info;
  if (!(I->complete = lwsp_find_complete(up, err, sizeof err))) {
    lwsp_log(I->name, "WSPStartup: the host offers no WPUCompleteOverlappedRequest: %s; "
             "overlapped calls could not complete", err);
    return 0;
  }
  for (int i = 0; i < LWSP_NPROCS; i++) I->href[i] = LUA_NOREF;
  if (!lwsp_registry_get(&I->id, I->script, sizeof I->script, err, sizeof err)) {
    if (!fallback) {
      lwsp_log(I->name, "WSPStartup: %s", err);
      return 0;
    }
    snprintf(I->script, sizeof I->script, "(none)");
  }
  if (!fallback && !lwsp_path_is_absolute(I->script)) {
    lwsp_log(I->name, "WSPStartup: refusing script path '%s': it must be absolute", I->script);
    return 0;
  }
  {
    /* defaults: $LWSP_BUDGET instructions per handler run (100 million if
     * unset, 0 = none) and $LWSP_MEMORY_LIMIT bytes for the state (none) */
    long long v;
    I->budget = env_count(I, "LWSP_BUDGET", LONG_MAX, &v) ? (long)v : 100000000L;
    I->mem_limit = env_count(I, "LWSP_MEMORY_LIMIT", (long long)(SIZE_MAX > LLONG_MAX ? LLONG_MAX : SIZE_MAX), &v) ? (size_t)v : 0;
  }
  L = lua_newstate(inst_alloc, I);
  if (!L) { lwsp_log(I->name, "WSPStartup: cannot create a Lua state"); return 0; }
  I->L = L;
  rt_budget_bind(L, I);
  lua_setwarnf(L, inst_warn, I);
  lua_pushstring(L, I->name);             /* wsp.log's tag in this provider */
  lua_setfield(L, LUA_REGISTRYINDEX, "lwsp.log_who");
  lwsp_log_name(I->name, I->script);
  lua_pushboolean(L, 1);                  /* $LUA_PATH, $LUA_CPATH: not in a provider (sandbox.c) */
  lua_setfield(L, LUA_REGISTRYINDEX, "LUA_NOENV");
  luaL_openlibs(L);
  rt_budget_open(L, I);
  luaL_requiref(L, "lwsp", luaopen_lwsp, 0);
  lua_pop(L, 1);
  rt_sandbox_open(L);
  dirname_of(mod ? mod : ".", mdir, sizeof mdir);
  if (fallback) snprintf(sdir, sizeof sdir, "%s", mdir);   /* not the failed script's folder */
  else dirname_of(I->script, sdir, sizeof sdir);
  rt_sandbox_paths(I, L, sdir, mdir);
  lua_settop(L, 0);
  lua_newtable(L);
  I->waits_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_newtable(L);
  I->timers_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (!fallback && !rt_trusted_file(I->script, err, sizeof err)) {
    lwsp_log(I->name, "WSPStartup: refusing provider script %s: %s", I->script, err);
    goto fail;
  }
  /* the script's top level, and what lwsp reads from its table, run under
   * the budget (the default one: the script's own is not known yet) */
  rt_budget_attach(I);
  {
    rt_run_mark run;
    int st, condemned;
    lua_pushcfunction(L, run_script);
    lua_pushlightuserdata(L, I);
    I->limited = 1;
    run = rt_budget_enter(I, L);
    st = lua_pcall(L, 1, 0, 0);
    condemned = rt_budget_leave(I, run);
    I->limited = 0;
    rt_budget_disarm(L);
    if (st != LUA_OK) {
      lwsp_log(I->name, "WSPStartup: %s", rt_error_text(L, -1));
      goto fail;
    }
    if (condemned) {
      lwsp_log(I->name, "WSPStartup: provider script %s: %s (caught by the script, which was stopped all the same)",
               I->script, rt_budget_message());
      goto fail;
    }
  }
  rt_budget_attach(I);   /* with the script's own budget */
  rt_lower_inherited(I);
  lua_settop(L, 0);
  return 1;
fail:
  rt_budget_detach(I);
  lua_close(L);
  I->L = NULL;
  rt_upcalls_close(I);
  return 0;
}

static void fill_data(lwsp_inst *I, LPWSPDATA data) {
  char d[300];
  const char *desc = NULL;
  size_t n;
  memset(data, 0, sizeof *data);
  data->wVersion = MAKEWORD_(2, 2);
  data->wHighVersion = MAKEWORD_(2, 2);
  if (lua_getfield(I->L, LUA_REGISTRYINDEX, "lwsp.description") == LUA_TSTRING) desc = lua_tostring(I->L, -1);
  snprintf(d, sizeof d, "%s", desc ? desc : "lwsp Lua provider");
  lua_pop(I->L, 1);
  n = lwsp_utf8_to_utf16(d, strlen(d), data->szDescription, WSPDESCRIPTION_LEN);
  if (n > WSPDESCRIPTION_LEN) n = WSPDESCRIPTION_LEN;
  data->szDescription[n] = 0;
}

static int upcalls_complete(const WSPUPCALLTABLE *up) {
  void *const *p = (void *const *)up;
  for (size_t i = 0; i < sizeof *up / sizeof(void *); i++)
    if (!p[i]) return 0;
  return 1;
}

/* The GUID whose script a start runs, found by walking the ProtocolChain it
 * is given: the entry's own GUID when it has a mapping, else the first entry
 * of its chain whose GUID has one.  lwsp under another LSP is started with
 * that LSP's chain entry (as the LSP sample passes it down), and the chains
 * WSCInstallProviderAndChains makes carry GUIDs of their own: only the layered
 * entry's GUID is mapped.  A chain naming one id twice would make a layer
 * load itself: refused.  *layer_id is the matched entry's catalog id (0 when
 * the entry's own GUID matched outside a chain). */
static int start_guid(const WSAPROTOCOL_INFOW *info, const WSPUPCALLTABLE *up, GUID *id, DWORD *layer_id,
                      char *why, size_t whylen) {
  char path[1024], err[1200];
  int n = info->ProtocolChain.ChainLen;
  *id = info->ProviderId;
  *layer_id = 0;
  if (n >= 2 && n <= MAX_PROTOCOL_CHAIN) {
    for (int i = 0; i < n; i++)
      for (int j = i + 1; j < n; j++)
        if (info->ProtocolChain.ChainEntries[i] == info->ProtocolChain.ChainEntries[j]) {
          snprintf(why, whylen, "the protocol chain names catalog entry %lu twice; refusing to load a layer into itself",
                   (unsigned long)info->ProtocolChain.ChainEntries[i]);
          return 0;
        }
  }
  if (lwsp_registry_get(id, path, sizeof path, err, sizeof err)) {
    for (int i = 0; n >= 2 && n <= MAX_PROTOCOL_CHAIN && i < n && !*layer_id; i++) {
      WSAPROTOCOL_INFOW e;
      DWORD cid = info->ProtocolChain.ChainEntries[i];
      int found = rt_catalog_info(up, NULL, cid, &e);
      if (found && lwsp_guid_eq(&e.ProviderId, id)) *layer_id = cid;
    }
    return 1;
  }
  for (int i = 0; n >= 2 && n <= MAX_PROTOCOL_CHAIN && i < n; i++) {
    WSAPROTOCOL_INFOW e;
    DWORD cid = info->ProtocolChain.ChainEntries[i];
    int found = rt_catalog_info(up, NULL, cid, &e);
    if (found && lwsp_registry_get(&e.ProviderId, path, sizeof path, err, sizeof err)) {
      *id = e.ProviderId;
      *layer_id = cid;
      return 1;
    }
  }
  snprintf(why, whylen, "%s", err);
  return 1;    /* inst_open logs the missing mapping under the entry's own GUID */
}

/* A first WSPStartup of the slot I (marked opening): the script runs with
 * the instance's lock only; the slot is then active, or free again. */
static int open_slot(lwsp_inst *I, LPWSPDATA data, const WSAPROTOCOL_INFOW *info, const WSPUPCALLTABLE *up,
                     const GUID *id, DWORD layer_id) {
  int ok;
  lwsp_mutex_lock(&I->lock);
  ok = inst_open(I, info, up, id, layer_id, 0) || rt_fallback_open(I, info, up, id, layer_id);
  if (ok) fill_data(I, data);
  lwsp_mutex_lock(&g_lock);
  I->opening = 0;
  if (ok) {
    __atomic_store_n(&I->startups, 1, __ATOMIC_RELAXED);
    __atomic_store_n(&I->active, 1, __ATOMIC_RELEASE);
  }
  lwsp_mutex_unlock(&g_lock);
  lwsp_mutex_unlock(&I->lock);
  return ok;
}

LWSP_EXPORT int WSPAPI WSPStartup(WORD wVersionRequested, LPWSPDATA lpWSPData, LPWSAPROTOCOL_INFOW lpProtocolInfo,
                                  WSPUPCALLTABLE UpcallTable, LPWSPPROC_TABLE lpProcTable) {
  BYTE major = (BYTE)(wVersionRequested & 0xff), minor = (BYTE)(wVersionRequested >> 8);
  lwsp_inst *I = NULL;
  char g[39], why[1200];
  GUID id;
  DWORD layer_id;
  rt_global_init();
  if (!lpWSPData || !lpProtocolInfo || !lpProcTable) {
    lwsp_log("WSPStartup", "NULL WSPDATA, protocol info or proc table");
    return WSAEFAULT;
  }
  lwsp_guid_format(&lpProtocolInfo->ProviderId, g);
  if (major < 2 || (major == 2 && minor < 2)) {
    lwsp_log(g, "WSPStartup: version %u.%u requested; lwsp speaks 2.2", major, minor);
    return WSAVERNOTSUPPORTED;
  }
  if (!upcalls_complete(&UpcallTable)) {
    lwsp_log(g, "WSPStartup: the host's upcall table has NULL entries");
    return WSAEPROVIDERFAILEDINIT;
  }
  if (!start_guid(lpProtocolInfo, &UpcallTable, &id, &layer_id, why, sizeof why)) {
    lwsp_log(g, "WSPStartup: %s", why);
    return WSAEPROVIDERFAILEDINIT;
  }
  /* Lock order: an instance's lock, then the global lock -- never the
   * reverse: a handler's first call down starts the layer below (another
   * WSPStartup) with its own instance's lock released but held by whoever
   * called it, so WSPStartup takes no instance lock while it holds the
   * global one.  The global lock guards the slots (which GUID, opening,
   * active, closing, startups); the script runs with the instance's lock only. */
  for (;;) {
    I = NULL;
    lwsp_mutex_lock(&g_lock);
    for (int i = 0; i < LWSP_MAX_INSTANCES && !I; i++) {
      lwsp_inst *J = &lwsp_instances[i];
      /* (one whose last WSPCleanup has begun is not shared: a new one begins) */
      if (((J->active && !J->closing) || J->opening) && lwsp_guid_eq(&J->slot_id, &id)) I = J;
    }
    if (I && !I->opening) {
      __atomic_add_fetch(&I->startups, 1, __ATOMIC_RELAXED);
      lwsp_mutex_unlock(&g_lock);
      lwsp_mutex_lock(&I->lock);
      fill_data(I, lpWSPData);
      lwsp_mutex_unlock(&I->lock);
      break;
    }
    if (I) {   /* another thread is starting it: once its script has run, look again */
      int mine = I->opener == lwsp_thread_id();
      lwsp_mutex_unlock(&g_lock);
      if (mine) {
        lwsp_log(g, "WSPStartup: the provider was asked to start from its own start-up: refused");
        return WSAEPROVIDERFAILEDINIT;
      }
      lwsp_mutex_lock(&I->lock);
      lwsp_mutex_unlock(&I->lock);
      lwsp_yield();
      continue;
    }
    for (int i = 0; i < LWSP_MAX_INSTANCES && !I; i++)
      if (!lwsp_instances[i].active && !lwsp_instances[i].opening) I = &lwsp_instances[i];
    if (!I) {
      lwsp_mutex_unlock(&g_lock);
      lwsp_log(g, "WSPStartup: more than %d Lua providers in one process", LWSP_MAX_INSTANCES);
      return WSAEPROVIDERFAILEDINIT;
    }
    I->opening = 1;
    I->opener = lwsp_thread_id();
    I->slot_id = id;
    lwsp_mutex_unlock(&g_lock);
    if (!open_slot(I, lpWSPData, lpProtocolInfo, &UpcallTable, &id, layer_id)) return WSAEPROVIDERFAILEDINIT;
    break;
  }
  lwsp_fill_procs(I->slot, lpProcTable);
  return 0;
}

/* One WSPCleanup per successful WSPStartup.  The last one stops the instance
 * in this order: no new call gets in (closing), every pending or blocked call
 * is aborted and every waiter woken, the service thread is joined, and it
 * waits until no thread is inside any more (aborting again what was begun
 * meanwhile); only then does it run the script's cleanup handler, close the
 * sockets still open, the Lua state and the layers below.  From inside one of
 * the instance's own calls (a handler, a timer, a blocking hook) it is
 * refused with WSAEINPROGRESS and nothing changes.  Over 80 lines: the
 * teardown's order is its contract, and it reads in one place. */
int lwsp_do_cleanup(lwsp_inst *I, LPINT err) {
  INT dummy;
  if (!err) err = &dummy;
  rt_global_init();
  if (rt_inside(I)) {
    lwsp_log(I->name, "WSPCleanup called from inside one of the provider's own calls: refused (WSAEINPROGRESS)");
    *err = WSAEINPROGRESS;
    return SOCKET_ERROR;
  }
  lwsp_mutex_lock(&I->lock);   /* (lock order: the instance's, then the global one) */
  lwsp_mutex_lock(&g_lock);
  if (!I->active || I->closing || __atomic_load_n(&I->startups, __ATOMIC_RELAXED) <= 0) {
    lwsp_mutex_unlock(&g_lock);
    lwsp_mutex_unlock(&I->lock);
    *err = WSANOTINITIALISED;
    return SOCKET_ERROR;
  }
  if (__atomic_sub_fetch(&I->startups, 1, __ATOMIC_RELAXED) > 0) {
    lwsp_mutex_unlock(&g_lock);
    lwsp_mutex_unlock(&I->lock);
    return 0;
  }
  I->closing = 1;
  /* handlers still running may start other providers (their lower layers):
   * the global lock is not held while they finish */
  lwsp_mutex_unlock(&g_lock);
  for (;;) {
    rt_abort_all(I);
    rt_ext_abort(I);
    rt_service_stop(I);
    if (I->inside == 0) break;
    lwsp_cond_wait(&I->cond, &I->lock, 50);
  }
  I->cleaning = 1;
  if (I->href[P_cleanup] != LUA_NOREF) {
    lua_State *L = I->L;
    rt_run_mark run;
    int st, condemned;
    lua_pushcfunction(L, msgh);
    lua_rawgeti(L, LUA_REGISTRYINDEX, I->href[P_cleanup]);
    rt_inst_mark(I, 1);   /* (a WSPCleanup from the handler is refused) */
    I->limited = 1;
    I->lua_runs++;
    run = rt_budget_enter(I, L);
    st = lua_pcall(L, 0, 0, -2);
    condemned = rt_budget_leave(I, run);
    I->limited = 0;
    rt_budget_disarm(L);
    rt_inst_mark(I, -1);
    if (st != LUA_OK)
      lwsp_log(I->name, "handler 'cleanup' (WSPCleanup) raised an error: %s", rt_error_text(L, -1));
    else if (condemned)
      lwsp_log(I->name, "handler 'cleanup' (WSPCleanup) raised an error: %s (caught by the handler, which was stopped all the same)",
               rt_budget_message());
    lua_settop(L, 0);
    rt_abort_all(I);       /* what it began */
    rt_service_stop(I);
  }
  for (uint32_t i = 0; i < I->nsocks; i++)
    if (rt_sock_at(I, i)->gen) { rt_sock_at(I, i)->pending = 0; rt_sock_close(I, rt_sock_at(I, i)); }
  rt_budget_detach(I);
  lua_close(I->L);
  I->L = NULL;
  rt_views_free(I);
  for (uint32_t i = 0; i < I->nchunks; i++) free(I->chunks[i]);
  free(I->chunks);
  I->chunks = NULL;
  I->nsocks = I->nchunks = I->free_head = 0;
  lwsp_map_free(&I->ifsmap);
  rt_upcalls_close(I);
  I->epoch++;              /* completion routines still queued find nothing of this life */
  lwsp_mutex_unlock(&I->lock);
  /* after the state (its sockets' lower handles go with the lower layer), and
   * without the instance lock: a Lua layer below takes the global lock in its
   * own WSPCleanup.  Nothing else touches the instance while it is closing. */
  rt_lower_close_all(I);
  rt_ext_free(I);
  /* the slot is free again (in lock order: the instance's, then the global one) */
  lwsp_mutex_lock(&I->lock);
  lwsp_mutex_lock(&g_lock);
  __atomic_store_n(&I->active, 0, __ATOMIC_RELEASE);
  I->closing = I->cleaning = 0;
  lwsp_mutex_unlock(&g_lock);
  lwsp_mutex_unlock(&I->lock);
  return 0;
}
