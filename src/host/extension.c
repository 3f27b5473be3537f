/*
 * hostext.c - the host's application side of Winsock's extension functions:
 * each one got as an application gets it (WSAIoctl with
 * SIO_GET_EXTENSION_FUNCTION_POINTER on the socket, then the call through
 * the pointer), with the host's overlapped structures; and, off Windows,
 * the WSASetLastError/WSAGetLastError pair through which the functions
 * report (they take no lpErrno).
 */
#include "host.h"
#include "spi_ext.h"
#include <stdlib.h>
#include <string.h>
#ifndef _WIN32
#include <fcntl.h>
#include <unistd.h>
#endif

/* hostio.c: the recording completion routine (host.completions) */
LPWSAOVERLAPPED_COMPLETION_ROUTINE host_record_routine(void);

static int fail(lua_State *L, int code) { return lwsp_push_error(L, code ? code : WSASYSCALLFAILURE); }

#ifdef _WIN32
static int last_error(void) { return WSAGetLastError(); }
static void clear_error(void) { WSASetLastError(0); }
static void set_last(int e) { WSASetLastError(e); }
#else
static _Thread_local int host_last_error;
LWSP_EXPORT void WSAAPI WSASetLastError(int e);
LWSP_EXPORT int WSAAPI WSAGetLastError(void);
LWSP_EXPORT void WSAAPI WSASetLastError(int e) { host_last_error = e; }
LWSP_EXPORT int WSAAPI WSAGetLastError(void) { return host_last_error; }
static int last_error(void) { return host_last_error; }
static void clear_error(void) { host_last_error = 0; }
static void set_last(int e) { host_last_error = e; }
#endif

static int ext_index(lua_State *L, int idx) {
  const char *name = luaL_checkstring(L, idx);
  for (int i = 0; i < LWSP_EXT_COUNT; i++)
    if (strcmp(name, lwsp_ext_names[i]) == 0) return i;
  return luaL_argerror(L, idx, lua_pushfstring(L, "no extension function '%s'", name));
}

/* The provider's function for ext on s (WSAIoctl), or NULL with *err. */
static void (*ext_get(lua_State *L, SOCKET s, int ext, INT *err))(void) {
  void (*fn)(void) = NULL;
  DWORD got = 0;
  WSATHREADID tid;
  int perr = 0;
  hprov *p = host_prov_of(s, &perr);
  GUID g = lwsp_ext_guids[ext];
  if (!p) { *err = perr; return NULL; }
  if (HCALL(L, p, WSPIoctl, s, err, s, SIO_GET_EXTENSION_FUNCTION_POINTER, &g, sizeof g, (LPVOID)&fn, sizeof fn, &got,
            NULL, NULL, host_this_thread(&tid), err) != 0)
    return NULL;
  if (got != sizeof fn || !fn) { *err = WSAEINVAL; return NULL; }
  return fn;
}
#define EXT(L, s, i, type, var) type var; do { INT e_ = 0; void (*f_)(void) = ext_get((L), (s), (i), &e_); \
    if (!f_) return fail((L), e_); \
    memcpy(&var, &f_, sizeof var); } while (0)

/* The overlapped at idx (nil: none), refused while in use. */
static host_ov *opt_ov(lua_State *L, int idx) {
  host_ov *h;
  if (lua_isnoneornil(L, idx)) return NULL;
  h = host_check_ov(L, idx);
  if (host_ov_busy(h)) luaL_argerror(L, idx, "overlapped is in use by a pending operation");
  return h;
}
static char *ov_buffer(host_ov *h, size_t n, size_t cap) {
  free(h->buf);
  h->buf = calloc(1, n ? n : 1);
  h->cap = h->buf ? cap : 0;
  return h->buf;
}
static int bool_result(lua_State *L, host_ov *h, BOOL ok, DWORD bytes) {
  int e = ok ? 0 : last_error();
  if (h) host_ov_posted(h, ok ? 0 : SOCKET_ERROR, e);
  if (ok) { lua_pushboolean(L, 1); lua_pushinteger(L, bytes); return 2; }
  return fail(L, e);
}
static lua_Integer opt_field(lua_State *L, int idx, const char *k, lua_Integer def, lua_Integer lo, lua_Integer hi) {
  return lua_istable(L, idx) ? host_opt_int(L, idx, k, def, lo, hi) : def;
}

/* extension(s, name) -> the function's address (an integer) | nil, error:
 * WSAIoctl(SIO_GET_EXTENSION_FUNCTION_POINTER) with its GUID */
static int h_extension(lua_State *L) {
  SOCKET s = (SOCKET)luaL_checkinteger(L, 1);
  INT err = 0;
  void (*fn)(void) = ext_get(L, s, ext_index(L, 2), &err);
  if (!fn) return fail(L, err);
  lua_pushinteger(L, (lua_Integer)(uintptr_t)fn);
  return 1;
}

/* acceptex(listener, s, rcvlen, overlapped [, {local = n, remote = n}]) ->
 * true, bytes | nil, error (WSA_IO_PENDING); the data is overlapped.data,
 * the addresses acceptex_sockaddrs(listener, overlapped) */
static int h_acceptex(lua_State *L) {
  SOCKET ls = (SOCKET)luaL_checkinteger(L, 1), s = (SOCKET)luaL_checkinteger(L, 2);
  DWORD rcvlen = (DWORD)host_arg_range(L, 3, 0, 1 << 20, "receive length");
  host_ov *h = opt_ov(L, 4);
  DWORD loc = (DWORD)opt_field(L, 5, "local", sizeof(SOCKADDR_STORAGE) / 4 + 16 + 16, 0, 1024);
  DWORD rem = (DWORD)opt_field(L, 5, "remote", sizeof(SOCKADDR_STORAGE) / 4 + 16 + 16, 0, 1024);
  DWORD got = 0;
  BOOL ok;
  EXT(L, ls, 0, LPFN_ACCEPTEX, acceptex);
  if (h && !ov_buffer(h, (size_t)rcvlen + loc + rem, rcvlen)) return fail(L, WSAENOBUFS);
  if (h) { h->flags = rcvlen; h->fromlen = (INT)(loc << 16 | rem); }
  clear_error();
  ok = acceptex(ls, s, h ? h->buf : NULL, rcvlen, loc, rem, &got, h ? &h->ov : NULL);
  return bool_result(L, h, ok, got);
}

/* acceptex_sockaddrs(listener, overlapped) -> local, remote addresses of the
 * connection an acceptex with it accepted (GetAcceptExSockaddrs) */
static int h_acceptex_sockaddrs(lua_State *L) {
  SOCKET ls = (SOCKET)luaL_checkinteger(L, 1);
  host_ov *h = opt_ov(L, 2);
  struct sockaddr *la = NULL, *ra = NULL;
  INT ll = 0, rl = 0;
  DWORD loc, rem;
  if (!h || !h->buf) return luaL_argerror(L, 2, "an overlapped an acceptex used");
  loc = (DWORD)h->fromlen >> 16;
  rem = (DWORD)h->fromlen & 0xffff;
  {
    EXT(L, ls, 1, LPFN_GETACCEPTEXSOCKADDRS, get);
    get(h->buf, h->flags, loc, rem, &la, &ll, &ra, &rl);
  }
  if (!la || ll <= 0) lua_pushnil(L); else lwsp_push_sockaddr(L, la, ll);
  if (!ra || rl <= 0) lua_pushnil(L); else lwsp_push_sockaddr(L, ra, rl);
  return 2;
}

/* connectex(s, addr, data, overlapped) -> true, bytes | nil, error */
static int h_connectex(lua_State *L) {
  SOCKET s = (SOCKET)luaL_checkinteger(L, 1);
  SOCKADDR_STORAGE to;
  int tolen = 0;
  size_t n = 0;
  const char *data = luaL_optlstring(L, 3, "", &n);
  host_ov *h = opt_ov(L, 4);
  DWORD sent = 0;
  BOOL ok;
  if (!lwsp_to_sockaddr(L, 2, &to, &tolen)) return luaL_argerror(L, 2, "bad address");
  {
    EXT(L, s, 2, LPFN_CONNECTEX, connectex);
    if (h && !ov_buffer(h, n, 0)) return fail(L, WSAENOBUFS);
    if (h) memcpy(h->buf, data, n);
    clear_error();
    ok = connectex(s, (struct sockaddr *)&to, tolen, h ? h->buf : (PVOID)data, (DWORD)n, &sent, h ? &h->ov : NULL);
  }
  return bool_result(L, h, ok, sent);
}

/* disconnectex(s, overlapped|nil [, flags]) -> true, 0 | nil, error */
static int h_disconnectex(lua_State *L) {
  SOCKET s = (SOCKET)luaL_checkinteger(L, 1);
  host_ov *h = opt_ov(L, 2);
  DWORD flags = HOST_OPT_DWORD(L, 3, 0, "flags"), reserved = HOST_OPT_DWORD(L, 4, 0, "reserved");
  BOOL ok;
  EXT(L, s, 3, LPFN_DISCONNECTEX, disconnectex);
  clear_error();
  ok = disconnectex(s, h ? &h->ov : NULL, flags, reserved);
  return bool_result(L, h, ok, 0);
}

/* open_file(path) -> a file handle for transmitfile | nil, error;
 * close_file(handle) */
static int h_open_file(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
#ifdef _WIN32
  HANDLE f = CreateFileA(path, GENERIC_READ, FILE_SHARE_READ, NULL, OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, NULL);
  if (f == INVALID_HANDLE_VALUE) return fail(L, WSA_INVALID_HANDLE);
  lua_pushinteger(L, (lua_Integer)(intptr_t)f);
#else
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(L, WSA_INVALID_HANDLE);
  lua_pushinteger(L, fd);
#endif
  return 1;
}
static int h_close_file(lua_State *L) {
  lua_Integer f = luaL_checkinteger(L, 1);
#ifdef _WIN32
  CloseHandle((HANDLE)(intptr_t)f);
#else
  close((int)f);
#endif
  return 0;
}

/* transmitfile(s, file|nil, overlapped|nil [, {bytes =, per_send =, flags =,
 * head =, tail =}]) -> true, bytes | nil, error; with an overlapped its
 * Offset is the file's offset */
static int h_transmitfile(lua_State *L) {
  SOCKET s = (SOCKET)luaL_checkinteger(L, 1);
  HANDLE file = (HANDLE)(intptr_t)luaL_optinteger(L, 2, 0);
  host_ov *h = opt_ov(L, 3);
  DWORD bytes = (DWORD)opt_field(L, 4, "bytes", 0, 0, 0x7fffffff);
  DWORD per = (DWORD)opt_field(L, 4, "per_send", 0, 0, 0x7fffffff);
  DWORD flags = (DWORD)opt_field(L, 4, "flags", 0, 0, 0xffffffffLL);
  size_t hl = 0, tl = 0;
  const char *head = NULL, *tail = NULL;
  TRANSMIT_FILE_BUFFERS tb;
  BOOL ok;
  if (lua_istable(L, 4)) {
    lua_getfield(L, 4, "head"); head = lua_tolstring(L, -1, &hl);
    lua_getfield(L, 4, "tail"); tail = lua_tolstring(L, -1, &tl);
  }
  {
    EXT(L, s, 4, LPFN_TRANSMITFILE, transmitfile);
    /* head and tail must outlive a pending call: they live in the overlapped's buffer */
    if (h) {
      if (!ov_buffer(h, hl + tl, 0)) return fail(L, WSAENOBUFS);
      if (hl) memcpy(h->buf, head, hl);
      if (tl) memcpy(h->buf + hl, tail, tl);
      if (head) head = h->buf;
      if (tail) tail = h->buf + hl;
    }
    tb.Head = (LPVOID)head; tb.HeadLength = (DWORD)hl;
    tb.Tail = (LPVOID)tail; tb.TailLength = (DWORD)tl;
    clear_error();
    ok = transmitfile(s, file, bytes, per, h ? &h->ov : NULL, (head || tail) ? &tb : NULL, flags);
  }
  return bool_result(L, h, ok, 0);
}

/* transmitpackets(s, elements, overlapped|nil [, {flags =, per_send =}]) ->
 * true, bytes | nil, error; an element is a string (memory) or {file =
 * handle, offset = n (-1, the default: the file's position), length = n (0,
 * the default: to its end)}.  The elements live in the overlapped's buffer
 * (or, without one, for the call). */
static int h_transmitpackets(lua_State *L) {
  SOCKET s = (SOCKET)luaL_checkinteger(L, 1);
  host_ov *h;
  DWORD flags = (DWORD)opt_field(L, 4, "flags", 0, 0, 0xffffffffLL);
  DWORD per = (DWORD)opt_field(L, 4, "per_send", 0, 0, 0x7fffffff);
  lua_Integer n, i;
  size_t total = 0, used;
  char *mem;
  LPTRANSMIT_PACKETS_ELEMENT el;
  BOOL ok;
  luaL_checktype(L, 2, LUA_TTABLE);
  h = opt_ov(L, 3);
  n = luaL_len(L, 2);
  luaL_argcheck(L, n >= 0 && n <= 64, 2, "0 to 64 elements");
  for (i = 1; i <= n; i++) {
    int t = lua_geti(L, 2, i);
    if (t == LUA_TSTRING) total += lua_rawlen(L, -1);
    else if (t != LUA_TTABLE) return luaL_argerror(L, 2, "an element is a string or {file =, offset =, length =}");
    lua_pop(L, 1);
  }
  {
    EXT(L, s, 5, LPFN_TRANSMITPACKETS, transmitpackets);
    size_t size = (size_t)n * sizeof *el + total;
    if (h) { if (!(mem = ov_buffer(h, size, 0))) return fail(L, WSAENOBUFS); }
    else if (!(mem = calloc(1, size ? size : 1))) return fail(L, WSAENOBUFS);
    el = (LPTRANSMIT_PACKETS_ELEMENT)mem;
    used = (size_t)n * sizeof *el;
    for (i = 1; i <= n; i++) {
      LPTRANSMIT_PACKETS_ELEMENT e = &el[i - 1];
      if (lua_geti(L, 2, i) == LUA_TSTRING) {
        size_t k;
        const char *d = lua_tolstring(L, -1, &k);
        memcpy(mem + used, d, k);
        e->dwElFlags = TP_ELEMENT_MEMORY;
        e->cLength = (ULONG)k;
        e->pBuffer = mem + used;
        used += k;
      } else {
        e->dwElFlags = TP_ELEMENT_FILE;
        e->hFile = (HANDLE)(intptr_t)opt_field(L, -1, "file", 0, 0, INTPTR_MAX);
        e->nFileOffset.QuadPart = opt_field(L, -1, "offset", -1, -1, INT64_MAX);
        e->cLength = (ULONG)opt_field(L, -1, "length", 0, 0, 0x7fffffff);
      }
      lua_pop(L, 1);
    }
    clear_error();
    ok = transmitpackets(s, el, (DWORD)n, per, h ? &h->ov : NULL, flags);
    if (!h) {
      int e = ok ? 0 : last_error();
      free(mem);
      if (!ok) return fail(L, e);
      lua_pushboolean(L, 1);
      lua_pushinteger(L, 0);
      return 2;
    }
  }
  return bool_result(L, h, ok, 0);
}

/* The parts of a WSARecvMsg's state in an overlapped's buffer: the data
 * first (overlapped.data), then the message, its buffer and the control. */
typedef struct rmsg { WSAMSG m; WSABUF b; DWORD got; char control[128]; } rmsg;
static rmsg *rmsg_of(host_ov *h) { return (rmsg *)(h->buf + ((h->cap + 15) & ~(size_t)15)); }

static void push_msg(lua_State *L, rmsg *r, const char *data, DWORD got, const struct sockaddr *from, int fromlen) {
  lua_createtable(L, 0, 6);
  lua_pushlstring(L, data, got); lua_setfield(L, -2, "data");
  if (fromlen > 0) { lwsp_push_sockaddr(L, from, fromlen); lua_setfield(L, -2, "from"); }
  lua_pushinteger(L, r->m.dwFlags); lua_setfield(L, -2, "flags");
  lua_pushinteger(L, r->m.Control.len); lua_setfield(L, -2, "control_len");
  /* the destination, from the first IP_PKTINFO / IPV6_PKTINFO header */
  if (r->m.Control.len >= WSA_CMSG_SPACE(sizeof(IN_PKTINFO))) {
    WSACMSGHDR c;
    SOCKADDR_STORAGE ss;
    memcpy(&c, r->control, sizeof c);
    memset(&ss, 0, sizeof ss);
    if (c.cmsg_level == IPPROTO_IP && c.cmsg_type == IP_PKTINFO) {
      IN_PKTINFO p;
      struct sockaddr_in *a = (struct sockaddr_in *)&ss;
      memcpy(&p, WSA_CMSG_DATA(r->control), sizeof p);
      a->sin_family = AF_INET;
      a->sin_addr = p.ipi_addr;
      lwsp_push_sockaddr(L, (struct sockaddr *)a, sizeof *a); lua_setfield(L, -2, "destination");
      lua_pushinteger(L, p.ipi_ifindex); lua_setfield(L, -2, "ifindex");
    } else if (c.cmsg_level == IPPROTO_IPV6 && c.cmsg_type == IPV6_PKTINFO) {
      IN6_PKTINFO p;
      struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
      memcpy(&p, WSA_CMSG_DATA(r->control), sizeof p);
      a->sin6_family = AF_INET6;
      a->sin6_addr = p.ipi6_addr;
      lwsp_push_sockaddr(L, (struct sockaddr *)a, sizeof *a); lua_setfield(L, -2, "destination");
      lua_pushinteger(L, p.ipi6_ifindex); lua_setfield(L, -2, "ifindex");
    }
  }
}

/* wsarecvmsg(s, len, overlapped|nil [, {control = n, routine = true}]) ->
 * without an overlapped: {data =, from =, flags =, destination =, ifindex =,
 * control_len =} | nil, error; with one: true, bytes | nil, error, and
 * recvmsg_result(overlapped) the table once it completed */
static LPWSAOVERLAPPED_COMPLETION_ROUTINE routine_of(lua_State *L, int idx);
static int h_wsarecvmsg(lua_State *L) {
  SOCKET s = (SOCKET)luaL_checkinteger(L, 1);
  DWORD len = (DWORD)host_arg_range(L, 2, 0, 1 << 20, "length");
  host_ov *h = opt_ov(L, 3);
  DWORD control = (DWORD)opt_field(L, 4, "control", 128, 0, 128);
  rmsg local, *r;
  char *data;
  INT rc;
  DWORD got = 0;
  EXT(L, s, 6, LPFN_WSARECVMSG, recvmsg);
  if (h) {
    if (!ov_buffer(h, ((len + 15) & ~(size_t)15) + sizeof(rmsg), len)) return fail(L, WSAENOBUFS);
    r = rmsg_of(h);
    data = h->buf;
  } else {
    memset(&local, 0, sizeof local);
    r = &local;
    if (!(data = malloc(len ? len : 1))) return fail(L, WSAENOBUFS);
  }
  r->b.buf = data; r->b.len = len;
  r->m.lpBuffers = &r->b; r->m.dwBufferCount = 1;
  r->m.Control.buf = control ? r->control : NULL; r->m.Control.len = control;
  if (h) { h->fromlen = sizeof h->from; r->m.name = (LPSOCKADDR)&h->from; r->m.namelen = h->fromlen; }
  else { r->m.name = NULL; r->m.namelen = 0; }
  clear_error();
  {
    SOCKADDR_STORAGE from;
    if (!h) { r->m.name = (LPSOCKADDR)&from; r->m.namelen = sizeof from; }
    rc = recvmsg(s, &r->m, &got, h ? &h->ov : NULL, h ? routine_of(L, 4) : NULL);
    if (!h) {
      int e = rc ? last_error() : 0;
      if (rc) { free(data); return fail(L, e); }
      push_msg(L, r, data, got, (struct sockaddr *)&from, r->m.namelen);
      free(data);
      return 1;
    }
  }
  h->fromlen = 0;   /* ov.from: through recvmsg_result */
  return bool_result(L, h, rc == 0, got);
}

/* recvmsg_result(overlapped) -> the table wsarecvmsg gives, for a completed
 * overlapped WSARecvMsg */
static int h_recvmsg_result(lua_State *L) {
  host_ov *h = opt_ov(L, 1);
  rmsg *r;
  DWORD got;
  if (!h || !h->buf) return luaL_argerror(L, 1, "an overlapped a wsarecvmsg used");
  r = rmsg_of(h);
  got = (DWORD)(h->ov.InternalHigh < h->cap ? h->ov.InternalHigh : h->cap);
  push_msg(L, r, h->buf, got, (struct sockaddr *)r->m.name, r->m.namelen);
  return 1;
}

/* ws2_32's way to a provider that answered SIO_BSP_HANDLE with its own
 * handle: WSPIoctl(SIO_EXT_SENDMSG) with a WSASENDMSG. */
static INT sendmsg_ioctl(lua_State *L, SOCKET s, LPWSAMSG m, DWORD flags, LPDWORD sent, LPWSAOVERLAPPED ov,
                         LPWSAOVERLAPPED_COMPLETION_ROUTINE routine) {
  lwsp_sendmsg_args a = {m, flags, sent, ov, routine};
  DWORD got = 0;
  WSATHREADID tid;
  INT err = 0;
  int perr = 0;
  hprov *p = host_prov_of(s, &perr);
  if (!p) { set_last(perr); return SOCKET_ERROR; }
  if (HCALL(L, p, WSPIoctl, s, &err, s, SIO_EXT_SENDMSG, &a, sizeof a, NULL, 0, &got, NULL, NULL,
            host_this_thread(&tid), &err) == 0)
    return 0;
  set_last(err);
  return SOCKET_ERROR;
}

/* wsasendmsg(s, data, to|nil, overlapped|nil [, {routine = true, ioctl = true}]) -> true, bytes | nil, error
 * (ioctl: through WSPIoctl(SIO_EXT_SENDMSG), as ws2_32 reaches a layer that serves WSASendMsg) */
static int h_wsasendmsg(lua_State *L) {
  SOCKET s = (SOCKET)luaL_checkinteger(L, 1);
  size_t n;
  const char *data = luaL_checklstring(L, 2, &n);
  SOCKADDR_STORAGE to;
  int tolen = 0;
  host_ov *h = opt_ov(L, 4);
  WSAMSG m;
  WSABUF b;
  DWORD sent = 0;
  INT rc;
  if (!lua_isnoneornil(L, 3) && !lwsp_to_sockaddr(L, 3, &to, &tolen)) return luaL_argerror(L, 3, "bad address");
  {
    EXT(L, s, 7, LPFN_WSASENDMSG, sendmsg);
    if (h) {
      if (!ov_buffer(h, n, 0)) return fail(L, WSAENOBUFS);
      memcpy(h->buf, n ? data : "", n);
      data = h->buf;
    }
    memset(&m, 0, sizeof m);
    b.buf = (char *)data; b.len = (ULONG)n;
    m.name = tolen ? (LPSOCKADDR)&to : NULL; m.namelen = tolen;
    m.lpBuffers = &b; m.dwBufferCount = 1;
    clear_error();
    if (lua_istable(L, 5) && (lua_getfield(L, 5, "ioctl"), lua_toboolean(L, -1)))
      rc = sendmsg_ioctl(L, s, &m, 0, &sent, h ? &h->ov : NULL, h ? routine_of(L, 5) : NULL);
    else
      rc = sendmsg(s, &m, 0, &sent, h ? &h->ov : NULL, h ? routine_of(L, 5) : NULL);
  }
  return bool_result(L, h, rc == 0, sent);
}

static LPWSAOVERLAPPED_COMPLETION_ROUTINE routine_of(lua_State *L, int idx) {
  int on = 0;
  if (lua_istable(L, idx)) { lua_getfield(L, idx, "routine"); on = lua_toboolean(L, -1); lua_pop(L, 1); }
  return on ? host_record_routine() : NULL;
}

/* ext_probe(name, s [, other]) -> the Winsock error an extension function of
 * s's provider gives a careless application's call (0: it succeeded), as
 * probe() does for the 30 entries.  other: a second socket (AcceptEx's). */
static int h_ext_probe(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  SOCKET s = (SOCKET)luaL_checkinteger(L, 2), other = (SOCKET)luaL_optinteger(L, 3, 0);
  SOCKADDR_STORAGE ss;
  WSAOVERLAPPED ov;
  char buf[256];
  DWORD n = 0;
  BOOL ok = TRUE;
  memset(&ss, 0, sizeof ss);
  memset(&ov, 0, sizeof ov);
  ss.ss_family = AF_INET;
  clear_error();
#define IS(x) (strcmp(name, x) == 0)
  if (IS("connectex:null-name")) { EXT(L, s, 2, LPFN_CONNECTEX, f); ok = f(s, NULL, 16, NULL, 0, &n, &ov); }
  else if (IS("connectex:short-name")) { EXT(L, s, 2, LPFN_CONNECTEX, f); ok = f(s, (struct sockaddr *)&ss, 1, NULL, 0, &n, &ov); }
  else if (IS("connectex:null-data")) { EXT(L, s, 2, LPFN_CONNECTEX, f); ok = f(s, (struct sockaddr *)&ss, 16, NULL, 10, &n, &ov); }
  else if (IS("connectex:no-overlapped")) { EXT(L, s, 2, LPFN_CONNECTEX, f); ok = f(s, (struct sockaddr *)&ss, 16, NULL, 0, &n, NULL); }
  else if (IS("connectex:stale-handle")) { EXT(L, s, 2, LPFN_CONNECTEX, f); ok = f((SOCKET)0xdead0, (struct sockaddr *)&ss, 16, NULL, 0, &n, &ov); }
  else if (IS("acceptex:null-buffer")) { EXT(L, s, 0, LPFN_ACCEPTEX, f); ok = f(s, other, NULL, 0, 64, 64, &n, &ov); }
  else if (IS("acceptex:short-address")) { EXT(L, s, 0, LPFN_ACCEPTEX, f); ok = f(s, other, buf, 0, 8, 64, &n, &ov); }
  else if (IS("acceptex:stale-accept-socket")) { EXT(L, s, 0, LPFN_ACCEPTEX, f); ok = f(s, (SOCKET)0xdead0, buf, 0, 64, 64, &n, &ov); }
  else if (IS("acceptex:no-overlapped")) { EXT(L, s, 0, LPFN_ACCEPTEX, f); ok = f(s, other, buf, 0, 64, 64, &n, NULL); }
  else if (IS("disconnectex:bad-flags")) { EXT(L, s, 3, LPFN_DISCONNECTEX, f); ok = f(s, NULL, 0x80, 0); }
  else if (IS("disconnectex:stale-handle")) { EXT(L, s, 3, LPFN_DISCONNECTEX, f); ok = f((SOCKET)0xdead0, NULL, 0, 0); }
  else if (strncmp(name, "wsarecvmsg:", 11) == 0) {
    WSAMSG m;
    WSABUF b = {sizeof buf, buf};
    INT rc;
    memset(&m, 0, sizeof m);
    m.lpBuffers = &b; m.dwBufferCount = 1;
    m.name = (LPSOCKADDR)&ss; m.namelen = sizeof ss;
    EXT(L, s, 6, LPFN_WSARECVMSG, f);
    if (IS("wsarecvmsg:null-msg")) rc = f(s, NULL, &n, &ov, NULL);
    else if (IS("wsarecvmsg:null-buffers")) { m.lpBuffers = NULL; rc = f(s, &m, &n, &ov, NULL); }
    else if (IS("wsarecvmsg:no-buffers")) { m.dwBufferCount = 0; rc = f(s, &m, &n, &ov, NULL); }
    else if (IS("wsarecvmsg:short-name")) { m.namelen = 8; rc = f(s, &m, &n, &ov, NULL); }
    else if (IS("wsarecvmsg:no-count")) rc = f(s, &m, NULL, NULL, NULL);
    else if (IS("wsarecvmsg:stale-handle")) rc = f((SOCKET)0xdead0, &m, &n, &ov, NULL);
    else return luaL_argerror(L, 1, "unknown extension probe");
    ok = rc == 0;
  }
  else if (IS("getacceptexsockaddrs:null")) {
    struct sockaddr *la = (struct sockaddr *)&ss, *ra = (struct sockaddr *)&ss;
    INT lal = -1, ral = -1;
    EXT(L, s, 1, LPFN_GETACCEPTEXSOCKADDRS, f);
    f(NULL, 0, 64, 64, &la, &lal, &ra, &ral);   /* nothing to read: nothing read, no crash */
    lua_pushinteger(L, 0);
    return 1;
  }
  else return luaL_argerror(L, 1, "unknown extension probe");
#undef IS
  lua_pushinteger(L, ok ? 0 : last_error());
  return 1;
}

int lwsp_hostext_open(lua_State *L);
int lwsp_hostext_open(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"extension", h_extension}, {"acceptex", h_acceptex}, {"acceptex_sockaddrs", h_acceptex_sockaddrs},
    {"connectex", h_connectex}, {"disconnectex", h_disconnectex}, {"transmitfile", h_transmitfile},
    {"transmitpackets", h_transmitpackets}, {"open_file", h_open_file}, {"close_file", h_close_file}, {"wsarecvmsg", h_wsarecvmsg},
    {"recvmsg_result", h_recvmsg_result}, {"wsasendmsg", h_wsasendmsg}, {"ext_probe", h_ext_probe}, {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
  return 0;
}
