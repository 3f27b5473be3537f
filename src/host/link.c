/*
 * link.c - the host module's tie to the runtime of its process.  The host
 * is its own module (require "lwsp.host"), but a process has one log, one
 * trace, one fault hook and one table of Lua provider instances: the
 * runtime's.  luaopen_lwsp_host takes them from lwsp._runtime (see
 * runtime/module.c) and the functions below hand the host's calls over.
 */
#include "host.h"
#include <stdarg.h>

const lwsp_runtime_link *host_rt;
static int not_tracing;
int *lwsp_tracing_at = &not_tracing;

void host_link(const lwsp_runtime_link *rt) {
  host_rt = rt;
  lwsp_tracing_at = rt->tracing;
  *rt->fault_hook = lwsp_fault;    /* the runtime's fault points ask the injection here (testkit/fault.c) */
}

void lwsp_log(const char *who, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  host_rt->vlog(who, fmt, ap);
  va_end(ap);
}

unsigned long lwsp_trace_enter(const char *from, const char *to, const char *name, SOCKET s, const char *args) {
  return host_rt->trace_enter(from, to, name, s, args);
}
void lwsp_trace_leave(const char *from, const char *to, const char *name, SOCKET s, int error, const char *res) {
  host_rt->trace_leave(from, to, name, s, error, res);
}
void lwsp_trace_event(const char *kind, const char *from, const char *to, const char *name, SOCKET s, int error) {
  host_rt->trace_event(kind, from, to, name, s, error);
}
void lwsp_trace_event_args(const char *kind, const char *from, const char *to, const char *name, SOCKET s, int error,
                           const char *args) {
  host_rt->trace_event_args(kind, from, to, name, s, error, args);
}
const char *lwsp_trace_party(void) { return host_rt->trace_party(); }
void lwsp_trace_values(lua_State *L, int first, int last, char *buf, size_t n) {
  host_rt->trace_values(L, first, last, buf, n);
}
void lwsp_trace_wrap(lua_State *L, const char *const *names) { host_rt->trace_wrap(L, names); }
void lwsp_trace_app_thread(void) { host_rt->trace_app_thread(); }
void lwsp_trace_app_api(int on) { host_rt->trace_app_api(on); }
