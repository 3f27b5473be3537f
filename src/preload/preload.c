/*
 * preload.c - liblwsp_preload.so: a program's AF_INET/AF_INET6 sockets served
 * by lwsp's host and the catalog's chain (docs/preload.md).
 *
 * The program keeps real descriptors: each of its inet sockets is one end of
 * a unix socketpair (the "app" end); lwsp's pump threads hold the other end
 * and move bytes between it and the chain's socket through the host's C
 * calls (lwsp_hc_*, src/host/capi.c).  Calls that name the peer or the
 * socket's state (connect, bind, listen, accept, names, options, shutdown)
 * are taken here and sent through the chain; data calls on a stream go to
 * the real descriptor untouched, so poll, epoll, select, read, readv,
 * MSG_PEEK, MSG_WAITALL, O_NONBLOCK, FIONREAD and dup behave as the kernel
 * makes them.  Datagram sockets are served call by call (each datagram
 * carries its address in a small header on the pair).
 *
 * Readiness that a socketpair does not give by itself:
 * - a connecting socket: its send buffer is filled before connect returns
 *   EINPROGRESS, so it does not poll writable; the chain's connect ending
 *   drains the filler (success) or closes the pair (failure: POLLHUP, and
 *   SO_ERROR gives the chain's error);
 * - a listening socket: a thread accepts on the chain and writes one byte per
 *   connection to the pair, so poll/epoll see the listener readable; accept()
 *   takes a byte and one queued connection.
 */
#define _GNU_SOURCE
#include "preload.h"

/* ---- the real C library ------------------------------------------------------------ */
int (*r_socket)(int, int, int);
int (*r_connect)(int, const struct sockaddr *, socklen_t);
int (*r_bind)(int, const struct sockaddr *, socklen_t);
int (*r_listen)(int, int);
static int (*r_accept)(int, struct sockaddr *, socklen_t *);
int (*r_accept4)(int, struct sockaddr *, socklen_t *, int);
int (*r_close)(int);
int (*r_shutdown)(int, int);
int (*r_getsockname)(int, struct sockaddr *, socklen_t *);
int (*r_getpeername)(int, struct sockaddr *, socklen_t *);
int (*r_getsockopt)(int, int, int, void *, socklen_t *);
int (*r_setsockopt)(int, int, int, const void *, socklen_t);
ssize_t (*r_sendto)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
ssize_t (*r_sendmsg)(int, const struct msghdr *, int);
ssize_t (*r_recvfrom)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
ssize_t (*r_recvmsg)(int, struct msghdr *, int);
ssize_t (*r_send)(int, const void *, size_t, int);
static ssize_t (*r_recv)(int, void *, size_t, int);
ssize_t (*r_read)(int, void *, size_t);
ssize_t (*r_write)(int, const void *, size_t);
int (*r_dup)(int);
int (*r_dup2)(int, int);
int (*r_dup3)(int, int, int);
int (*r_fcntl)(int, int, ...);
long (*r_syscall)(long, ...);

#define REAL(name) do { if (!r_##name) r_##name = (__typeof__(r_##name))dlsym(RTLD_NEXT, #name); } while (0)
void pl_load_real(void) {
  REAL(socket); REAL(connect); REAL(bind); REAL(listen); REAL(accept); REAL(accept4); REAL(close);
  REAL(shutdown); REAL(getsockname); REAL(getpeername); REAL(getsockopt); REAL(setsockopt);
  REAL(sendto); REAL(sendmsg); REAL(recvfrom); REAL(recvmsg); REAL(send); REAL(recv); REAL(read);
  REAL(write); REAL(dup); REAL(dup2); REAL(dup3); REAL(fcntl); REAL(syscall);
}
__attribute__((constructor)) static void preload_ctor(void) { pl_load_real(); }

/* ---- the host's C calls (the host module, lwsp/host.so) ---------------------------------------------------- */
int (*hc_socket)(unsigned, int, int, int, uintptr_t *, int *);
int (*hc_close)(uintptr_t, int *);
int (*hc_bind)(uintptr_t, const void *, int, int *);
int (*hc_listen)(uintptr_t, int, int *);
int (*hc_connect)(uintptr_t, const void *, int, int *);
static uintptr_t (*hc_accept)(uintptr_t, void *, int *, int *);
static long (*hc_send)(uintptr_t, const void *, size_t, int, const void *, int, int *);
static long (*hc_recv)(uintptr_t, void *, size_t, int *, void *, int *, int *);
int (*hc_shutdown)(uintptr_t, int, int *);
int (*hc_name)(uintptr_t, int, void *, int *, int *);
int (*hc_getsockopt)(uintptr_t, int, int, void *, int *, int *);
int (*hc_setsockopt)(uintptr_t, int, int, const void *, int, int *);

/* ---- state --------------------------------------------------------------------------- */

static lsock **fds;      /* application descriptor -> lsock */
static int nfds;
static pthread_mutex_t map_mu = PTHREAD_MUTEX_INITIALIZER;
__thread int pl_inside;          /* a thread of lwsp's, or a call into lwsp: pass through */
static int ready;                    /* 1 the chain is up, -1 it failed (everything passes through) */
unsigned pl_cat_tcp, pl_cat_udp, pl_cat_tcp6, pl_cat_udp6;
static pthread_mutex_t init_mu = PTHREAD_MUTEX_INITIALIZER;
static lua_State *LS;
/* sockets the application closed whose chain sockets are not closed yet:
 * the process's exit waits a little for them, so layers see their close */
static int draining;
static pthread_cond_t drain_cv = PTHREAD_COND_INITIALIZER;
int pl_debug_on;
pid_t pl_owner_pid;

void pl_say(const char *fmt, ...) {
  char buf[512];
  int n = snprintf(buf, sizeof buf, "lwsp-preload[%d]: ", (int)getpid());
  va_list ap;
  va_start(ap, fmt);
  n += vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
  va_end(ap);
  if (n > (int)sizeof buf - 2) n = (int)sizeof buf - 2;
  buf[n++] = '\n';
  if (r_write(2, buf, (size_t)n) < 0) { /* nothing to do */ }
}

lsock *pl_get(int fd) {
  lsock *l = NULL;
  if (fd < 0 || !fds) return NULL;
  pthread_mutex_lock(&map_mu);
  if (fd < nfds) l = fds[fd];
  if (l) { pthread_mutex_lock(&l->mu); l->refs++; pthread_mutex_unlock(&l->mu); }
  pthread_mutex_unlock(&map_mu);
  return l;
}
/* A process other than the one whose chain this is: a fork child, or a
 * vfork child running on its parent's memory until it execs.  Neither may
 * change the descriptor table (a vfork child's close or dup2 before exec
 * would change its parent's); their calls go to the C library as they are.
 * (getpid is a system call: asked only once a descriptor is known to be
 * lwsp's.) */
int pl_foreign(void) { return pl_owner_pid != 0 && getpid() != pl_owner_pid; }
int pl_foreign_fd(int fd) { return pl_tracked(fd) && pl_foreign(); }

int pl_tracked(int fd) {
  int t;
  if (fd < 0 || !fds) return 0;
  pthread_mutex_lock(&map_mu);
  t = fd < nfds && fds[fd];
  pthread_mutex_unlock(&map_mu);
  return t;
}

void pl_release(lsock *l) {
  int last, err;
  pthread_mutex_lock(&l->mu);
  last = --l->refs == 0;
  pthread_mutex_unlock(&l->mu);
  if (!last) return;
  pl_inside++;
  if (l->has_s) hc_close(l->s, &err);
  for (int i = 0; i < l->qn; i++) hc_close(l->queue[i], &err);
  pl_inside--;
  if (l->pump >= 0) r_close(l->pump);
  if (l->closing) {
    pthread_mutex_lock(&map_mu);
    draining--;
    pthread_cond_broadcast(&drain_cv);
    pthread_mutex_unlock(&map_mu);
  }
  free(l->queue);
  pthread_mutex_destroy(&l->mu);
  free(l);
}

/* Sets fd -> l (taking one reference for it), or clears it (l NULL). */
int pl_map_set(int fd, lsock *l) {
  lsock *old = NULL;
  pthread_mutex_lock(&map_mu);
  if (fd >= nfds) {
    int n = nfds ? nfds : 1024;
    while (n <= fd) n *= 2;
    lsock **f = realloc(fds, (size_t)n * sizeof *f);
    if (!f) { pthread_mutex_unlock(&map_mu); return -1; }
    memset(f + nfds, 0, (size_t)(n - nfds) * sizeof *f);
    fds = f;
    nfds = n;
  }
  old = fds[fd];
  fds[fd] = l;
  if (l) { pthread_mutex_lock(&l->mu); l->refs++; pthread_mutex_unlock(&l->mu); }
  pthread_mutex_unlock(&map_mu);
  if (old) {
    int last_app = 1;
    pthread_mutex_lock(&map_mu);
    for (int i = 0; i < nfds && last_app; i++) if (fds[i] == old) last_app = 0;
    pthread_mutex_unlock(&map_mu);
    if (last_app) {
      int err;
      pl_inside++;
      /* wake the threads blocked in the chain (an accept, a receive); a
       * stream's sender first passes on what the application wrote before
       * its close, then shuts the chain's socket down itself */
      int now;
      pthread_mutex_lock(&map_mu);
      draining++;
      pthread_mutex_unlock(&map_mu);
      pthread_mutex_lock(&old->mu);
      old->closing = 1;
      now = old->type == SOCK_DGRAM || old->state == ST_LISTENING || (old->state == ST_CONNECTED && old->up_done);
      pthread_mutex_unlock(&old->mu);
      if (old->has_s && now) hc_shutdown(old->s, W_SD_BOTH, &err);
      pl_inside--;
    }
    pl_release(old);
  }
  return 0;
}

/* ---- errors ---------------------------------------------------------------------------- */
/* Winsock error -> errno (docs/preload.md has the table). */
static int wsa_errno(int e) {
  switch (e) {
  case 10004: return EINTR;          case 10009: return EBADF;
  case 10013: return EACCES;         case 10014: return EFAULT;
  case 10022: return EINVAL;         case 10024: return EMFILE;
  case 10035: return EAGAIN;         case 10036: return EINPROGRESS;
  case 10037: return EALREADY;       case 10038: return ENOTSOCK;
  case 10039: return EDESTADDRREQ;   case 10040: return EMSGSIZE;
  case 10041: return EPROTOTYPE;     case 10042: return ENOPROTOOPT;
  case 10043: return EPROTONOSUPPORT; case 10044: return ESOCKTNOSUPPORT;
  case 10045: return EOPNOTSUPP;     case 10046: return EPFNOSUPPORT;
  case 10047: return EAFNOSUPPORT;   case 10048: return EADDRINUSE;
  case 10049: return EADDRNOTAVAIL;  case 10050: return ENETDOWN;
  case 10051: return ENETUNREACH;    case 10052: return ENETRESET;
  case 10053: return ECONNABORTED;   case 10054: return ECONNRESET;
  case 10055: return ENOBUFS;        case 10056: return EISCONN;
  case 10057: return ENOTCONN;       case 10058: return EPIPE;
  case 10059: return ETOOMANYREFS;   case 10060: return ETIMEDOUT;
  case 10061: return ECONNREFUSED;   case 10062: return ELOOP;
  case 10063: return ENAMETOOLONG;   case 10064: return EHOSTDOWN;
  case 10065: return EHOSTUNREACH;   case 10093: return ENETDOWN;
  case 10101: return ECONNRESET;     case 10112: return ECONNREFUSED;
  case 995: case 10103: return ECANCELED;
  case 8: return ENOMEM;
  default: return EIO;
  }
}
int pl_fail_wsa(int e) { errno = wsa_errno(e); return -1; }

/* Linux sockaddr <-> Windows layout (the same but for AF_INET6's value). */
int pl_to_win(const struct sockaddr *sa, socklen_t len, struct sockaddr_storage *out) {
  if (!sa || len < sizeof(sa_family_t) || len > sizeof *out) return -1;
  memcpy(out, sa, len);
  if (sa->sa_family == AF_INET6) ((struct sockaddr *)out)->sa_family = W_AF_INET6;
  else if (sa->sa_family != AF_INET) return -1;
  return 0;
}
void pl_from_win(struct sockaddr_storage *ss, int wlen, struct sockaddr *sa, socklen_t *len) {
  if (((struct sockaddr *)ss)->sa_family == W_AF_INET6) ((struct sockaddr *)ss)->sa_family = AF_INET6;
  if (sa && len) {
    socklen_t n = (socklen_t)wlen < *len ? (socklen_t)wlen : *len;
    memcpy(sa, ss, n);
  }
  if (len) *len = (socklen_t)wlen;
}

/* ---- start: the host and the chain (LWSP_PRELOAD_* from bin/lwsp-run) --------------------- */
static const char init_lua[] =
  "local spec, root, trace_prefix, pid = ...\n"
  "package.path = root .. '/lua/?.lua;' .. root .. '/lua/?/init.lua;' .. package.path\n"
  "package.cpath = (os.getenv('LWSP_PRELOAD_CPATH') or (root .. '/build/?.so')) .. ';' .. package.cpath\n"
  "local lwsp = require 'lwsp'\n"
  "local wsp = require 'wsp'\n"
  "local host = require 'wsp.host'\n"
  "local top\n"
  "local items = {}\n"
  "for item in spec:gmatch('[^;]+') do items[#items + 1] = item end\n"
  "for k = #items, 1, -1 do\n"
  "  local kind, guid, script = items[k]:match('^(%w+)=([^=]*)=(.*)$')\n"
  "  if kind == 'native' then top = host.install_native()\n"
  "  elseif kind == 'base' then\n"
  "    top = host.install_lua{script = script, guid = guid, name = script:match('([^/]+)%.lua$'), entries = {\n"
  "      {af = wsp.AF_INET, type = wsp.SOCK_STREAM}, {af = wsp.AF_INET, type = wsp.SOCK_DGRAM},\n"
  "      {af = wsp.AF_INET6, type = wsp.SOCK_STREAM}, {af = wsp.AF_INET6, type = wsp.SOCK_DGRAM}}}\n"
  "    top.tcp6 = top.ids[3]; top.udp6 = top.ids[4]\n"
  "  elseif kind == 'layer' then\n"
  "    top = host.install_layered{script = script, guid = guid, over = top, name = script:match('([^/]+)%.lua$')}\n"
  "  else error('LWSP_PRELOAD_CHAIN: bad item ' .. items[k]) end\n"
  "end\n"
  "if trace_prefix and trace_prefix ~= '' then\n"
  "  local ok, why = pcall(require('wsp.trace').start, trace_prefix .. '.' .. pid .. '.jsonl')\n"
  "  if not ok then io.stderr:write('lwsp-preload: no trace: ', tostring(why), '\\n') end\n"
  "end\n"
  "return package.searchpath('lwsp.host', package.cpath), top.tcp or 0, top.udp or 0, top.tcp6 or 0, top.udp6 or 0\n";

#define SYM(name) do { if (!(hc_##name = (__typeof__(hc_##name))dlsym(lib, "lwsp_hc_" #name))) goto bad; } while (0)

static void at_exit(void) {
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += 2;
  pthread_mutex_lock(&map_mu);
  while (draining > 0 && getpid() == pl_owner_pid)
    if (pthread_cond_timedwait(&drain_cv, &map_mu, &until)) break;
  pthread_mutex_unlock(&map_mu);
}

static void trace_stop(void) {
  if (LS && getpid() == pl_owner_pid && getenv("LWSP_PRELOAD_TRACE")) {
    pl_inside++;
    pthread_mutex_lock(&init_mu);
    lua_getglobal(LS, "require");
    lua_pushstring(LS, "wsp.trace");
    if (lua_pcall(LS, 1, 1, 0) == LUA_OK) {
      lua_getfield(LS, -1, "stop");
      lua_pcall(LS, 0, 0, 0);
    }
    lua_settop(LS, 0);
    pthread_mutex_unlock(&init_mu);
    pl_inside--;
  }
}

int pl_start(void) {
  const char *spec, *root, *tr;
  const char *path;
  void *lib;
  char pidtext[32];
  if (ready) return ready > 0;
  pl_inside++;
  pthread_mutex_lock(&init_mu);
  if (ready) goto out;
  pl_load_real();
  pl_debug_on = getenv("LWSP_PRELOAD_DEBUG") != NULL;
  spec = getenv("LWSP_PRELOAD_CHAIN");
  root = getenv("LWSP_PRELOAD_ROOT");
  tr = getenv("LWSP_PRELOAD_TRACE");
  if (!spec || !root) { pl_say("LWSP_PRELOAD_CHAIN or LWSP_PRELOAD_ROOT unset: inet sockets fail with ENETDOWN"); ready = -1; goto out; }
  LS = luaL_newstate();
  luaL_openlibs(LS);
  if (luaL_loadbuffer(LS, init_lua, sizeof init_lua - 1, "=lwsp-preload") != LUA_OK) goto lua_bad;
  lua_pushstring(LS, spec);
  lua_pushstring(LS, root);
  if (tr) lua_pushstring(LS, tr); else lua_pushnil(LS);
  /* the trace file's name carries the process id (fork and exec make more) */
  snprintf(pidtext, sizeof pidtext, "%d", (int)getpid());
  lua_pushstring(LS, pidtext);
  if (lua_pcall(LS, 4, 5, 0) != LUA_OK) goto lua_bad;
  path = lua_tostring(LS, -5);
  pl_cat_tcp = (unsigned)lua_tointeger(LS, -4);
  pl_cat_udp = (unsigned)lua_tointeger(LS, -3);
  pl_cat_tcp6 = (unsigned)lua_tointeger(LS, -2);
  pl_cat_udp6 = (unsigned)lua_tointeger(LS, -1);
  lib = path ? dlopen(path, RTLD_NOW | RTLD_NOLOAD) : NULL;
  if (!lib) goto bad;
  SYM(socket); SYM(close); SYM(bind); SYM(listen); SYM(connect); SYM(accept); SYM(send); SYM(recv);
  SYM(shutdown); SYM(name); SYM(getsockopt); SYM(setsockopt);
  lua_settop(LS, 0);
  pl_owner_pid = getpid();
  atexit(trace_stop);
  atexit(at_exit);          /* (runs first) */
  DBG("chain up: tcp %u udp %u tcp6 %u udp6 %u", pl_cat_tcp, pl_cat_udp, pl_cat_tcp6, pl_cat_udp6);
  ready = 1;
  goto out;
lua_bad:
  pl_say("the chain could not start (inet sockets fail with ENETDOWN): %s", lua_tostring(LS, -1));
  ready = -1;
  goto out;
bad:
  pl_say("the host's C calls are missing from the host module (lwsp.host)");
  ready = -1;
out:
  pthread_mutex_unlock(&init_mu);
  pl_inside--;
  return ready > 0;
}

/* ---- threads ----------------------------------------------------------------------------- */
int pl_spawn(void *(*fn)(void *), lsock *l) {
  pthread_t t;
  pthread_attr_t a;
  int rc;
  pthread_mutex_lock(&l->mu);
  l->refs++;
  pthread_mutex_unlock(&l->mu);
  pthread_attr_init(&a);
  pthread_attr_setstacksize(&a, 256 * 1024);
  pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
  rc = pthread_create(&t, &a, fn, l);
  pthread_attr_destroy(&a);
  if (rc) { pl_release(l); return -1; }
  return 0;
}

#define PUMP_BUF (64 * 1024)

/* chain -> application */
static void *pump_down(void *arg) {
  lsock *l = arg;
  char *buf = malloc(PUMP_BUF);
  int err;
  pl_inside = 1;
  while (buf) {
    int flags = 0;
    long n = hc_recv(l->s, buf, PUMP_BUF, &flags, NULL, NULL, &err);
    if (n <= 0) {
      if (n < 0 && !l->closing) {
        pthread_mutex_lock(&l->mu);
        l->so_error = wsa_errno(err);
        pthread_mutex_unlock(&l->mu);
        DBG("socket %d: receive from the chain failed (%d)", l->pump, err);
      }
      r_shutdown(l->pump, SHUT_WR);
      break;
    }
    for (long off = 0; off < n;) {
      ssize_t w = r_send(l->pump, buf + off, (size_t)(n - off), MSG_NOSIGNAL);
      if (w < 0) {
        if (errno == EINTR) continue;
        goto gone;            /* the application closed its end */
      }
      off += w;
    }
  }
gone:
  free(buf);
  pl_release(l);
  return NULL;
}

/* application -> chain */
static void *pump_up(void *arg) {
  lsock *l = arg;
  char *buf = malloc(PUMP_BUF);
  int err;
  pl_inside = 1;
  while (buf) {
    ssize_t n = r_read(l->pump, buf, PUMP_BUF);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      /* end of the application's data: a half-close, or its last close
       * (which close() also shuts down both ways) */
      int closed;
      hc_shutdown(l->s, W_SD_SEND, &err);
      pthread_mutex_lock(&l->mu);
      l->up_done = 1;
      closed = l->closing;
      pthread_mutex_unlock(&l->mu);
      if (closed) hc_shutdown(l->s, W_SD_BOTH, &err);
      break;
    }
    for (ssize_t off = 0; off < n;) {
      long w = hc_send(l->s, buf + off, (size_t)(n - off), 0, NULL, 0, &err);
      if (w < 0) {
        DBG("socket %d: send to the chain failed (%d)", l->pump, err);
        pthread_mutex_lock(&l->mu);
        l->so_error = wsa_errno(err);
        pthread_mutex_unlock(&l->mu);
        r_shutdown(l->pump, SHUT_RDWR);
        goto out;
      }
      off += w;
    }
  }
out:
  free(buf);
  pl_release(l);
  return NULL;
}

void pl_start_pumps(lsock *l) {
  if (pl_spawn(pump_down, l) || pl_spawn(pump_up, l)) pl_say("could not start a pump thread");
}

/* Connect ended: drains the filler (success) or closes the pair (failure). */
void pl_connect_done(lsock *l, int ok, int err) {
  if (ok) {
    char tmp[4096];
    int left;
    /* connected before the application can see it writable */
    pthread_mutex_lock(&l->mu);
    l->state = ST_CONNECTED;
    left = l->fill;
    l->fill = 0;
    pthread_mutex_unlock(&l->mu);
    if (l->appdup >= 0 && l->sndbuf > 0) {
      int half = l->sndbuf / 2;
      r_setsockopt(l->appdup, SOL_SOCKET, SO_SNDBUF, &half, sizeof half);
    }
    while (left > 0) {
      ssize_t n = r_read(l->pump, tmp, left < (int)sizeof tmp ? (size_t)left : sizeof tmp);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      left -= (int)n;
    }
    pl_start_pumps(l);
  } else {
    pthread_mutex_lock(&l->mu);
    l->so_error = wsa_errno(err);
    l->state = ST_FAILED;
    pthread_mutex_unlock(&l->mu);
    r_shutdown(l->pump, SHUT_RDWR);
  }
  if (l->appdup >= 0) { r_close(l->appdup); l->appdup = -1; }
}

void *pl_connector(void *arg) {
  conn_job *j = arg;
  int err = 0, rc;
  pl_inside = 1;
  rc = hc_connect(j->l->s, &j->to, j->len, &err);
  DBG("connect through the chain: %s (%d)", rc == 0 ? "connected" : "failed", err);
  pl_connect_done(j->l, rc == 0, err);
  pl_release(j->l);
  free(j);
  return NULL;
}

/* A listener's acceptor: one byte on the pair for each connection queued. */
void *pl_acceptor(void *arg) {
  lsock *l = arg;
  pl_inside = 1;
  for (;;) {
    struct sockaddr_storage ss;
    int len = sizeof ss, err = 0;
    uintptr_t ns = hc_accept(l->s, &ss, &len, &err);
    if (ns == (uintptr_t)-1) {
      if (l->closing || err == 10038 || err == 10022 || err == 10093) break;
      if (err == 10004 || err == 10035 || err == 10053 || err == 10054) continue;
      DBG("accept through the chain failed (%d)", err);
      usleep(10000);
      continue;
    }
    pthread_mutex_lock(&l->mu);
    if (l->qn == l->qcap) {
      int cap = l->qcap ? l->qcap * 2 : 16;
      uintptr_t *q = realloc(l->queue, (size_t)cap * sizeof *q);
      if (!q) { pthread_mutex_unlock(&l->mu); hc_close(ns, &err); continue; }
      l->queue = q;
      l->qcap = cap;
    }
    l->queue[l->qn++] = ns;
    pthread_mutex_unlock(&l->mu);
    if (r_send(l->pump, "a", 1, MSG_NOSIGNAL) != 1) break;
  }
  pl_release(l);
  return NULL;
}

/* ---- datagrams: [u16 address length][address][payload] on the pair ----------------------- */
static void *dgram_down(void *arg) {
  lsock *l = arg;
  char *buf = malloc(2 + sizeof(struct sockaddr_storage) + 65536);
  pl_inside = 1;
  while (buf) {
    struct sockaddr_storage ss;
    int len = sizeof ss, err = 0, flags = 0;
    long n = hc_recv(l->s, buf + 2 + sizeof ss, 65536, &flags, &ss, &len, &err);
    if (n < -1) n = -2 - n;   /* WSAEMSGSIZE: the part that fitted */
    else if (n < 0) {
      if (l->closing || err == 10038 || err == 10093 || err == 10022) break;
      if (err == 10054 || err == 10004) continue;   /* ICMP port unreachable, interrupted */
      DBG("datagram receive through the chain failed (%d)", err);
      break;
    }
    pl_from_win(&ss, len, NULL, NULL);
    uint16_t al = (uint16_t)len;
    memcpy(buf, &al, 2);
    memcpy(buf + 2, &ss, sizeof ss);
    struct iovec v[2] = {{buf, 2 + (size_t)len}, {buf + 2 + sizeof ss, (size_t)n}};
    struct msghdr m = {0};
    m.msg_iov = v;
    m.msg_iovlen = 2;
    if (r_sendmsg(l->pump, &m, MSG_NOSIGNAL) < 0 && errno != ENOBUFS && errno != EAGAIN) break;
  }
  free(buf);
  pl_release(l);
  return NULL;
}
void pl_dgram_start(lsock *l) {
  int go;
  pthread_mutex_lock(&l->mu);
  go = !l->down_started;
  l->down_started = 1;
  pthread_mutex_unlock(&l->mu);
  if (go) pl_spawn(dgram_down, l);
}

/* Receives one datagram from the pair into msg (its address converted). */
ssize_t pl_dgram_recv(int fd, struct msghdr *msg, int flags) {
  char hdr[2 + sizeof(struct sockaddr_storage)];
  uint16_t al;
  size_t total = 0;
  struct iovec v[1 + 64];
  int nv = msg->msg_iovlen < 64 ? (int)msg->msg_iovlen : 64;
  struct msghdr m = {0};
  ssize_t n;
  /* the header's length is not known before: peek it */
  n = r_recv(fd, hdr, 2, (flags & MSG_DONTWAIT) | MSG_PEEK);
  if (n < 2) return n < 0 ? -1 : 0;
  memcpy(&al, hdr, 2);
  if (al > sizeof(struct sockaddr_storage)) al = sizeof(struct sockaddr_storage);
  v[0].iov_base = hdr;
  v[0].iov_len = 2 + (size_t)al;
  for (int i = 0; i < nv; i++) { v[1 + i] = msg->msg_iov[i]; total += msg->msg_iov[i].iov_len; }
  m.msg_iov = v;
  m.msg_iovlen = (size_t)nv + 1;
  n = r_recvmsg(fd, &m, flags & (MSG_DONTWAIT | MSG_PEEK | MSG_TRUNC | MSG_WAITALL));
  if (n < 0) return -1;
  n -= 2 + al;
  if (n < 0) n = 0;
  msg->msg_flags = m.msg_flags;
  if (msg->msg_name) {
    socklen_t want = msg->msg_namelen;
    if (want > al) want = al;
    memcpy(msg->msg_name, hdr + 2, want);
    msg->msg_namelen = al;
  }
  msg->msg_controllen = 0;
  if ((m.msg_flags & MSG_TRUNC) && (flags & MSG_TRUNC)) return n;
  (void)total;
  return n;
}

ssize_t pl_dgram_send(lsock *l, const struct msghdr *msg, int flags) {
  char stack[65536];
  size_t n = 0;
  struct sockaddr_storage to;
  int err;
  long rc;
  for (size_t i = 0; i < msg->msg_iovlen; i++) {
    if (n + msg->msg_iov[i].iov_len > sizeof stack) { errno = EMSGSIZE; return -1; }
    memcpy(stack + n, msg->msg_iov[i].iov_base, msg->msg_iov[i].iov_len);
    n += msg->msg_iov[i].iov_len;
  }
  if (msg->msg_name && msg->msg_namelen) {
    if (pl_to_win(msg->msg_name, msg->msg_namelen, &to) < 0) { errno = EAFNOSUPPORT; return -1; }
  }
  pl_inside++;
  rc = hc_send(l->s, stack, n, flags & W_MSG_PEEK ? 0 : 0, msg->msg_name && msg->msg_namelen ? &to : NULL,
               (int)msg->msg_namelen, &err);
  pl_inside--;
  if (rc < 0) return pl_fail_wsa(err);
  pl_dgram_start(l);
  return rc;
}
