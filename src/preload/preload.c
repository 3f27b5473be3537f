/*
 * preload.c - liblwsp_preload.so: a program's AF_INET/AF_INET6 sockets served
 * by lwsp's host and the catalog's chain (docs/preload.md).
 *
 * The program keeps real descriptors: each of its inet sockets is one end of
 * a unix socketpair (the "app" end); lwsp's pump threads hold the other end
 * and move bytes between it and the chain's socket through the host's C
 * calls (lwsp_hc_*, src/preload/hostc.c).  Calls that name the peer or the
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
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#define EXPORT __attribute__((visibility("default")))

/* ---- Winsock values at the host's boundary --------------------------------------- */
#define W_AF_INET6 23
#define W_SOL_SOCKET 0xffff
#define W_SD_SEND 1
#define W_SD_BOTH 2
#define W_MSG_PEEK 0x2

/* ---- the real C library ------------------------------------------------------------ */
static int (*r_socket)(int, int, int);
static int (*r_connect)(int, const struct sockaddr *, socklen_t);
static int (*r_bind)(int, const struct sockaddr *, socklen_t);
static int (*r_listen)(int, int);
static int (*r_accept)(int, struct sockaddr *, socklen_t *);
static int (*r_accept4)(int, struct sockaddr *, socklen_t *, int);
static int (*r_close)(int);
static int (*r_shutdown)(int, int);
static int (*r_getsockname)(int, struct sockaddr *, socklen_t *);
static int (*r_getpeername)(int, struct sockaddr *, socklen_t *);
static int (*r_getsockopt)(int, int, int, void *, socklen_t *);
static int (*r_setsockopt)(int, int, int, const void *, socklen_t);
static ssize_t (*r_sendto)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
static ssize_t (*r_sendmsg)(int, const struct msghdr *, int);
static ssize_t (*r_recvfrom)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
static ssize_t (*r_recvmsg)(int, struct msghdr *, int);
static ssize_t (*r_send)(int, const void *, size_t, int);
static ssize_t (*r_recv)(int, void *, size_t, int);
static ssize_t (*r_read)(int, void *, size_t);
static ssize_t (*r_write)(int, const void *, size_t);
static int (*r_dup)(int);
static int (*r_dup2)(int, int);
static int (*r_dup3)(int, int, int);
static int (*r_fcntl)(int, int, ...);
static long (*r_syscall)(long, ...);

#define REAL(name) do { if (!r_##name) r_##name = (__typeof__(r_##name))dlsym(RTLD_NEXT, #name); } while (0)
static void load_real(void) {
  REAL(socket); REAL(connect); REAL(bind); REAL(listen); REAL(accept); REAL(accept4); REAL(close);
  REAL(shutdown); REAL(getsockname); REAL(getpeername); REAL(getsockopt); REAL(setsockopt);
  REAL(sendto); REAL(sendmsg); REAL(recvfrom); REAL(recvmsg); REAL(send); REAL(recv); REAL(read);
  REAL(write); REAL(dup); REAL(dup2); REAL(dup3); REAL(fcntl); REAL(syscall);
}
__attribute__((constructor)) static void preload_ctor(void) { load_real(); }

/* ---- the host's C calls (the host module, lwsp/host.so) ---------------------------------------------------- */
static int (*hc_socket)(unsigned, int, int, int, uintptr_t *, int *);
static int (*hc_close)(uintptr_t, int *);
static int (*hc_bind)(uintptr_t, const void *, int, int *);
static int (*hc_listen)(uintptr_t, int, int *);
static int (*hc_connect)(uintptr_t, const void *, int, int *);
static uintptr_t (*hc_accept)(uintptr_t, void *, int *, int *);
static long (*hc_send)(uintptr_t, const void *, size_t, int, const void *, int, int *);
static long (*hc_recv)(uintptr_t, void *, size_t, int *, void *, int *, int *);
static int (*hc_shutdown)(uintptr_t, int, int *);
static int (*hc_name)(uintptr_t, int, void *, int *, int *);
static int (*hc_getsockopt)(uintptr_t, int, int, void *, int *, int *);
static int (*hc_setsockopt)(uintptr_t, int, int, const void *, int, int *);

/* ---- state --------------------------------------------------------------------------- */
enum { ST_NEW, ST_CONNECTING, ST_CONNECTED, ST_LISTENING, ST_FAILED };

typedef struct lsock {
  pthread_mutex_t mu;
  int refs;              /* application descriptors + pump threads */
  uintptr_t s;           /* the chain's socket */
  int has_s;
  int af, type, proto;   /* as the application asked (Linux values) */
  int pump;              /* lwsp's end of the pair */
  int state;
  int so_error;          /* errno SO_ERROR reports (and clears) */
  int fill;              /* filler bytes in the pair while connecting */
  int appdup;            /* while connecting: lwsp's own copy of the application's end */
  int sndbuf;            /* its send buffer before the filler */
  int down_started;      /* datagram: the receiving thread runs */
  int closing;           /* the last application descriptor is closed */
  int up_done;           /* the sender has passed on the application's last byte */
  uintptr_t *queue;      /* a listener's accepted chain sockets */
  int qn, qcap;
} lsock;

static lsock **fds;      /* application descriptor -> lsock */
static int nfds;
static pthread_mutex_t map_mu = PTHREAD_MUTEX_INITIALIZER;
static __thread int inside;          /* a thread of lwsp's, or a call into lwsp: pass through */
static int ready;                    /* 1 the chain is up, -1 it failed (everything passes through) */
static unsigned cat_tcp, cat_udp, cat_tcp6, cat_udp6;
static pthread_mutex_t init_mu = PTHREAD_MUTEX_INITIALIZER;
static lua_State *LS;
/* sockets the application closed whose chain sockets are not closed yet:
 * the process's exit waits a little for them, so layers see their close */
static int draining;
static pthread_cond_t drain_cv = PTHREAD_COND_INITIALIZER;
static int debug_on;
static pid_t owner_pid;

static void say(const char *fmt, ...) {
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
#define DBG(...) do { if (debug_on) say(__VA_ARGS__); } while (0)

static lsock *get(int fd) {
  lsock *l = NULL;
  if (fd < 0 || !fds) return NULL;
  pthread_mutex_lock(&map_mu);
  if (fd < nfds) l = fds[fd];
  if (l) { pthread_mutex_lock(&l->mu); l->refs++; pthread_mutex_unlock(&l->mu); }
  pthread_mutex_unlock(&map_mu);
  return l;
}
static int tracked(int fd) {
  int t;
  if (fd < 0 || !fds) return 0;
  pthread_mutex_lock(&map_mu);
  t = fd < nfds && fds[fd];
  pthread_mutex_unlock(&map_mu);
  return t;
}

static void release(lsock *l) {
  int last, err;
  pthread_mutex_lock(&l->mu);
  last = --l->refs == 0;
  pthread_mutex_unlock(&l->mu);
  if (!last) return;
  inside++;
  if (l->has_s) hc_close(l->s, &err);
  for (int i = 0; i < l->qn; i++) hc_close(l->queue[i], &err);
  inside--;
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
static int map_set(int fd, lsock *l) {
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
      inside++;
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
      inside--;
    }
    release(old);
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
static int fail_wsa(int e) { errno = wsa_errno(e); return -1; }

/* Linux sockaddr <-> Windows layout (the same but for AF_INET6's value). */
static int to_win(const struct sockaddr *sa, socklen_t len, struct sockaddr_storage *out) {
  if (!sa || len < sizeof(sa_family_t) || len > sizeof *out) return -1;
  memcpy(out, sa, len);
  if (sa->sa_family == AF_INET6) ((struct sockaddr *)out)->sa_family = W_AF_INET6;
  else if (sa->sa_family != AF_INET) return -1;
  return 0;
}
static void from_win(struct sockaddr_storage *ss, int wlen, struct sockaddr *sa, socklen_t *len) {
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
  while (draining > 0 && getpid() == owner_pid)
    if (pthread_cond_timedwait(&drain_cv, &map_mu, &until)) break;
  pthread_mutex_unlock(&map_mu);
}

static void trace_stop(void) {
  if (LS && getpid() == owner_pid && getenv("LWSP_PRELOAD_TRACE")) {
    inside++;
    pthread_mutex_lock(&init_mu);
    lua_getglobal(LS, "require");
    lua_pushstring(LS, "wsp.trace");
    if (lua_pcall(LS, 1, 1, 0) == LUA_OK) {
      lua_getfield(LS, -1, "stop");
      lua_pcall(LS, 0, 0, 0);
    }
    lua_settop(LS, 0);
    pthread_mutex_unlock(&init_mu);
    inside--;
  }
}

static int start(void) {
  const char *spec, *root, *tr;
  const char *path;
  void *lib;
  char pidtext[32];
  if (ready) return ready > 0;
  inside++;
  pthread_mutex_lock(&init_mu);
  if (ready) goto out;
  load_real();
  debug_on = getenv("LWSP_PRELOAD_DEBUG") != NULL;
  spec = getenv("LWSP_PRELOAD_CHAIN");
  root = getenv("LWSP_PRELOAD_ROOT");
  tr = getenv("LWSP_PRELOAD_TRACE");
  if (!spec || !root) { say("LWSP_PRELOAD_CHAIN or LWSP_PRELOAD_ROOT unset: inet sockets fail with ENETDOWN"); ready = -1; goto out; }
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
  cat_tcp = (unsigned)lua_tointeger(LS, -4);
  cat_udp = (unsigned)lua_tointeger(LS, -3);
  cat_tcp6 = (unsigned)lua_tointeger(LS, -2);
  cat_udp6 = (unsigned)lua_tointeger(LS, -1);
  lib = path ? dlopen(path, RTLD_NOW | RTLD_NOLOAD) : NULL;
  if (!lib) goto bad;
  SYM(socket); SYM(close); SYM(bind); SYM(listen); SYM(connect); SYM(accept); SYM(send); SYM(recv);
  SYM(shutdown); SYM(name); SYM(getsockopt); SYM(setsockopt);
  lua_settop(LS, 0);
  owner_pid = getpid();
  atexit(trace_stop);
  atexit(at_exit);          /* (runs first) */
  DBG("chain up: tcp %u udp %u tcp6 %u udp6 %u", cat_tcp, cat_udp, cat_tcp6, cat_udp6);
  ready = 1;
  goto out;
lua_bad:
  say("the chain could not start (inet sockets fail with ENETDOWN): %s", lua_tostring(LS, -1));
  ready = -1;
  goto out;
bad:
  say("the host's C calls are missing from the host module (lwsp.host)");
  ready = -1;
out:
  pthread_mutex_unlock(&init_mu);
  inside--;
  return ready > 0;
}

/* ---- threads ----------------------------------------------------------------------------- */
static int spawn(void *(*fn)(void *), lsock *l) {
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
  if (rc) { release(l); return -1; }
  return 0;
}

#define PUMP_BUF (64 * 1024)

/* chain -> application */
static void *pump_down(void *arg) {
  lsock *l = arg;
  char *buf = malloc(PUMP_BUF);
  int err;
  inside = 1;
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
  release(l);
  return NULL;
}

/* application -> chain */
static void *pump_up(void *arg) {
  lsock *l = arg;
  char *buf = malloc(PUMP_BUF);
  int err;
  inside = 1;
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
  release(l);
  return NULL;
}

static void start_pumps(lsock *l) {
  if (spawn(pump_down, l) || spawn(pump_up, l)) say("could not start a pump thread");
}

/* Connect ended: drains the filler (success) or closes the pair (failure). */
static void connect_done(lsock *l, int ok, int err) {
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
    start_pumps(l);
  } else {
    pthread_mutex_lock(&l->mu);
    l->so_error = wsa_errno(err);
    l->state = ST_FAILED;
    pthread_mutex_unlock(&l->mu);
    r_shutdown(l->pump, SHUT_RDWR);
  }
  if (l->appdup >= 0) { r_close(l->appdup); l->appdup = -1; }
}

typedef struct { lsock *l; struct sockaddr_storage to; int len; } conn_job;
static void *connector(void *arg) {
  conn_job *j = arg;
  int err = 0, rc;
  inside = 1;
  rc = hc_connect(j->l->s, &j->to, j->len, &err);
  DBG("connect through the chain: %s (%d)", rc == 0 ? "connected" : "failed", err);
  connect_done(j->l, rc == 0, err);
  release(j->l);
  free(j);
  return NULL;
}

/* A listener's acceptor: one byte on the pair for each connection queued. */
static void *acceptor(void *arg) {
  lsock *l = arg;
  inside = 1;
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
  release(l);
  return NULL;
}

/* ---- datagrams: [u16 address length][address][payload] on the pair ----------------------- */
static void *dgram_down(void *arg) {
  lsock *l = arg;
  char *buf = malloc(2 + sizeof(struct sockaddr_storage) + 65536);
  inside = 1;
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
    from_win(&ss, len, NULL, NULL);
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
  release(l);
  return NULL;
}
static void dgram_start(lsock *l) {
  int go;
  pthread_mutex_lock(&l->mu);
  go = !l->down_started;
  l->down_started = 1;
  pthread_mutex_unlock(&l->mu);
  if (go) spawn(dgram_down, l);
}

/* Receives one datagram from the pair into msg (its address converted). */
static ssize_t dgram_recv(int fd, struct msghdr *msg, int flags) {
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

static ssize_t dgram_send(lsock *l, const struct msghdr *msg, int flags) {
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
    if (to_win(msg->msg_name, msg->msg_namelen, &to) < 0) { errno = EAFNOSUPPORT; return -1; }
  }
  inside++;
  rc = hc_send(l->s, stack, n, flags & W_MSG_PEEK ? 0 : 0, msg->msg_name && msg->msg_namelen ? &to : NULL,
               (int)msg->msg_namelen, &err);
  inside--;
  if (rc < 0) return fail_wsa(err);
  dgram_start(l);
  return rc;
}

/* ---- the intercepted calls ---------------------------------------------------------------- */
static int served(int domain, int type) {
  int t = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
  return (domain == AF_INET || domain == AF_INET6) && (t == SOCK_STREAM || t == SOCK_DGRAM);
}

EXPORT int socket(int domain, int type, int protocol) {
  int sv[2], t = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC), err;
  unsigned cat;
  lsock *l;
  uintptr_t s;
  load_real();
  if (inside || !served(domain, type)) return r_socket(domain, type, protocol);
  if (!start()) {
    /* the chain was asked for and is not there: no socket goes round it */
    errno = ENETDOWN;
    return -1;
  }
  if (owner_pid != getpid()) {
    say("socket() in a forked child that did not exec: served by the kernel, not the chain");
    return r_socket(domain, type, protocol);
  }
  cat = domain == AF_INET ? (t == SOCK_STREAM ? cat_tcp : cat_udp) : (t == SOCK_STREAM ? cat_tcp6 : cat_udp6);
  if (!cat) { errno = EAFNOSUPPORT; return -1; }
  if (protocol && protocol != (t == SOCK_STREAM ? IPPROTO_TCP : IPPROTO_UDP)) { errno = EPROTONOSUPPORT; return -1; }
  inside++;
  int rc = hc_socket(cat, domain == AF_INET ? AF_INET : W_AF_INET6, t, t == SOCK_STREAM ? IPPROTO_TCP : IPPROTO_UDP, &s, &err);
  inside--;
  if (rc < 0) return fail_wsa(err);
  if (socketpair(AF_UNIX, (t == SOCK_STREAM ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC, 0, sv) < 0) {
    int e = errno;
    inside++; hc_close(s, &err); inside--;
    errno = e;
    return -1;
  }
  if (type & SOCK_NONBLOCK) r_fcntl(sv[0], F_SETFL, r_fcntl(sv[0], F_GETFL) | O_NONBLOCK);
  if (!(type & SOCK_CLOEXEC)) r_fcntl(sv[0], F_SETFD, 0);
  l = calloc(1, sizeof *l);
  if (!l) { r_close(sv[0]); r_close(sv[1]); inside++; hc_close(s, &err); inside--; errno = ENOMEM; return -1; }
  pthread_mutex_init(&l->mu, NULL);
  l->s = s;
  l->has_s = 1;
  l->af = domain;
  l->type = t;
  l->proto = t == SOCK_STREAM ? IPPROTO_TCP : IPPROTO_UDP;
  l->pump = sv[1];
  l->appdup = -1;
  l->state = ST_NEW;
  if (map_set(sv[0], l) < 0) { free(l); r_close(sv[0]); r_close(sv[1]); errno = ENOMEM; return -1; }
  DBG("socket(%d, %d) -> fd %d, chain socket %lu", domain, t, sv[0], (unsigned long)s);
  return sv[0];
}

static int nonblocking(int fd) { return (r_fcntl(fd, F_GETFL) & O_NONBLOCK) != 0; }

EXPORT int connect(int fd, const struct sockaddr *sa, socklen_t len) {
  lsock *l;
  struct sockaddr_storage to;
  int err, rc;
  load_real();
  if (inside || !(l = get(fd))) return r_connect(fd, sa, len);
  if (to_win(sa, len, &to) < 0) {
    release(l);
    if (sa && len >= sizeof(sa_family_t) && sa->sa_family == AF_UNSPEC) { errno = EAFNOSUPPORT; return -1; }
    errno = EAFNOSUPPORT;
    return -1;
  }
  if (l->type == SOCK_DGRAM) {
    inside++;
    rc = hc_connect(l->s, &to, (int)len, &err);
    inside--;
    if (rc == 0) { l->state = ST_CONNECTED; dgram_start(l); }
    release(l);
    return rc < 0 ? fail_wsa(err) : 0;
  }
  pthread_mutex_lock(&l->mu);
  int st = l->state;
  if (st == ST_NEW) l->state = ST_CONNECTING;
  pthread_mutex_unlock(&l->mu);
  if (st != ST_NEW) {
    release(l);
    errno = st == ST_CONNECTING ? EALREADY : st == ST_CONNECTED ? EISCONN : st == ST_LISTENING ? EINVAL : ECONNABORTED;
    if (st == ST_FAILED) {
      pthread_mutex_lock(&l->mu);
      if (l->so_error) { errno = l->so_error; l->so_error = 0; }
      pthread_mutex_unlock(&l->mu);
    }
    return -1;
  }
  if (!nonblocking(fd)) {
    inside++;
    rc = hc_connect(l->s, &to, (int)len, &err);
    inside--;
    connect_done(l, rc == 0, err);
    if (rc < 0) {
      pthread_mutex_lock(&l->mu);
      l->so_error = 0;
      pthread_mutex_unlock(&l->mu);
    }
    release(l);
    return rc < 0 ? fail_wsa(err) : 0;
  }
  /* non-blocking: the application's end does not poll writable until the
   * chain's connect ends */
  {
    int small = 1;     /* the kernel's minimum */
    char junk[256];
    socklen_t sl = sizeof l->sndbuf;
    if (r_getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &l->sndbuf, &sl) < 0) l->sndbuf = 0;
    l->appdup = r_fcntl(fd, F_DUPFD_CLOEXEC, 0);
    r_setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    memset(junk, 0, sizeof junk);
    for (;;) {
      ssize_t n = r_send(fd, junk, sizeof junk, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n <= 0) break;
      l->fill += (int)n;
    }
  }
  conn_job *j = calloc(1, sizeof *j);
  if (!j) { release(l); errno = ENOMEM; return -1; }
  j->l = l;
  j->to = to;
  j->len = (int)len;
  pthread_mutex_lock(&l->mu);
  l->refs++;
  pthread_mutex_unlock(&l->mu);
  {
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, 256 * 1024);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    rc = pthread_create(&t, &a, connector, j);
    pthread_attr_destroy(&a);
    if (rc) { free(j); release(l); release(l); errno = EAGAIN; return -1; }
  }
  release(l);
  errno = EINPROGRESS;
  return -1;
}

EXPORT int bind(int fd, const struct sockaddr *sa, socklen_t len) {
  lsock *l;
  struct sockaddr_storage to;
  int err, rc;
  load_real();
  if (inside || !(l = get(fd))) return r_bind(fd, sa, len);
  if (to_win(sa, len, &to) < 0) { release(l); errno = EAFNOSUPPORT; return -1; }
  inside++;
  rc = hc_bind(l->s, &to, (int)len, &err);
  inside--;
  if (rc == 0 && l->type == SOCK_DGRAM) dgram_start(l);
  release(l);
  return rc < 0 ? fail_wsa(err) : 0;
}

EXPORT int listen(int fd, int backlog) {
  lsock *l;
  int err, rc;
  load_real();
  if (inside || !(l = get(fd))) return r_listen(fd, backlog);
  if (l->type != SOCK_STREAM) { release(l); errno = EOPNOTSUPP; return -1; }
  if (l->state == ST_LISTENING) { release(l); return 0; }
  inside++;
  rc = hc_listen(l->s, backlog, &err);
  inside--;
  if (rc == 0) {
    l->state = ST_LISTENING;
    spawn(acceptor, l);
  }
  release(l);
  return rc < 0 ? fail_wsa(err) : 0;
}

EXPORT int accept4(int fd, struct sockaddr *sa, socklen_t *len, int flags) {
  lsock *l, *n;
  char tok;
  ssize_t got;
  uintptr_t ns;
  int sv[2], err;
  load_real();
  if (inside || !(l = get(fd))) return r_accept4(fd, sa, len, flags);
  if (l->state != ST_LISTENING) { release(l); errno = EINVAL; return -1; }
  do got = r_read(fd, &tok, 1); while (got < 0 && errno == EINTR);
  if (got != 1) { release(l); if (got == 0) errno = EINVAL; return -1; }
  pthread_mutex_lock(&l->mu);
  ns = l->qn ? l->queue[0] : (uintptr_t)-1;
  if (l->qn) memmove(l->queue, l->queue + 1, (size_t)--l->qn * sizeof *l->queue);
  pthread_mutex_unlock(&l->mu);
  if (ns == (uintptr_t)-1) { release(l); errno = EAGAIN; return -1; }
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
    int e = errno;
    inside++; hc_close(ns, &err); inside--;
    release(l);
    errno = e;
    return -1;
  }
  if (flags & SOCK_NONBLOCK) r_fcntl(sv[0], F_SETFL, r_fcntl(sv[0], F_GETFL) | O_NONBLOCK);
  if (!(flags & SOCK_CLOEXEC)) r_fcntl(sv[0], F_SETFD, 0);
  n = calloc(1, sizeof *n);
  if (!n) { r_close(sv[0]); r_close(sv[1]); inside++; hc_close(ns, &err); inside--; release(l); errno = ENOMEM; return -1; }
  pthread_mutex_init(&n->mu, NULL);
  n->s = ns;
  n->has_s = 1;
  n->af = l->af;
  n->type = SOCK_STREAM;
  n->proto = IPPROTO_TCP;
  n->pump = sv[1];
  n->appdup = -1;
  n->state = ST_CONNECTED;
  release(l);
  map_set(sv[0], n);
  start_pumps(n);
  if (sa && len) {
    struct sockaddr_storage ss;
    int wl = sizeof ss;
    inside++;
    if (hc_name(ns, 1, &ss, &wl, &err) == 0) from_win(&ss, wl, sa, len);
    else *len = 0;
    inside--;
  }
  return sv[0];
}
EXPORT int accept(int fd, struct sockaddr *sa, socklen_t *len) { return accept4(fd, sa, len, 0); }

EXPORT int close(int fd) {
  load_real();
  if (!inside && tracked(fd)) map_set(fd, NULL);
  return r_close(fd);
}

EXPORT int shutdown(int fd, int how) {
  lsock *l;
  load_real();
  if (inside || !(l = get(fd))) return r_shutdown(fd, how);
  int st = l->state;
  if (l->type == SOCK_STREAM && st != ST_CONNECTED) { release(l); errno = ENOTCONN; return -1; }
  if (l->type == SOCK_DGRAM) {
    int err, rc;
    inside++;
    rc = hc_shutdown(l->s, how == SHUT_RD ? 0 : how == SHUT_WR ? 1 : 2, &err);
    inside--;
    release(l);
    return rc < 0 ? fail_wsa(err) : 0;
  }
  /* the pump sees the end of the application's data and shuts the chain's
   * socket down in order, after the bytes before it */
  int rc = r_shutdown(fd, how);
  release(l);
  return rc;
}

static int name_of(int fd, int peer, struct sockaddr *sa, socklen_t *len) {
  lsock *l;
  struct sockaddr_storage ss;
  int wl = sizeof ss, err, rc;
  load_real();
  if (inside || !(l = get(fd))) return peer ? r_getpeername(fd, sa, len) : r_getsockname(fd, sa, len);
  if (peer && l->type == SOCK_STREAM && l->state != ST_CONNECTED) { release(l); errno = ENOTCONN; return -1; }
  inside++;
  rc = hc_name(l->s, peer, &ss, &wl, &err);
  inside--;
  if (rc < 0 && !peer && err == 10022) {
    /* not bound yet: the kernel answers with the wildcard address */
    memset(&ss, 0, sizeof ss);
    ss.ss_family = l->af;
    wl = l->af == AF_INET ? (int)sizeof(struct sockaddr_in) : (int)sizeof(struct sockaddr_in6);
    rc = 0;
  }
  release(l);
  if (rc < 0) return fail_wsa(err);
  from_win(&ss, wl, sa, len);
  return 0;
}
EXPORT int getsockname(int fd, struct sockaddr *sa, socklen_t *len) { return name_of(fd, 0, sa, len); }
EXPORT int getpeername(int fd, struct sockaddr *sa, socklen_t *len) { return name_of(fd, 1, sa, len); }

/* A Linux option -> Winsock's (level, name); 0 when it has none. */
static int map_opt(int level, int name, int *wl, int *wn) {
  if (level == SOL_SOCKET) {
    *wl = W_SOL_SOCKET;
    switch (name) {
    case SO_REUSEADDR: *wn = 0x4; return 1;
    case SO_KEEPALIVE: *wn = 0x8; return 1;
    case SO_BROADCAST: *wn = 0x20; return 1;
    case SO_SNDBUF: *wn = 0x1001; return 1;
    case SO_RCVBUF: *wn = 0x1002; return 1;
    case SO_OOBINLINE: *wn = 0x100; return 1;
    default: return 0;
    }
  }
  if (level == IPPROTO_TCP && name == TCP_NODELAY) { *wl = IPPROTO_TCP; *wn = 1; return 1; }
  if (level == IPPROTO_IPV6 && name == IPV6_V6ONLY) { *wl = IPPROTO_IPV6; *wn = 27; return 1; }
  return 0;
}

EXPORT int getsockopt(int fd, int level, int name, void *val, socklen_t *len) {
  lsock *l;
  int wl, wn, err, rc, v = 0, have = 0;
  load_real();
  if (inside || !(l = get(fd))) return r_getsockopt(fd, level, name, val, len);
  if (level == SOL_SOCKET) {
    switch (name) {
    case SO_ERROR:
      pthread_mutex_lock(&l->mu);
      v = l->so_error;
      l->so_error = 0;
      pthread_mutex_unlock(&l->mu);
      have = 1; break;
    case SO_TYPE: v = l->type; have = 1; break;
    case SO_DOMAIN: v = l->af; have = 1; break;
    case SO_PROTOCOL: v = l->proto; have = 1; break;
    case SO_ACCEPTCONN: v = l->state == ST_LISTENING; have = 1; break;
    case SO_RCVTIMEO: case SO_SNDTIMEO: case SO_LINGER: case SO_RCVLOWAT: case SO_SNDLOWAT:
      release(l);
      return r_getsockopt(fd, level, name, val, len);
    }
  }
  if (have) {
    release(l);
    if (!val || !len) { errno = EFAULT; return -1; }
    if (*len > sizeof v) *len = sizeof v;
    memcpy(val, &v, *len);
    return 0;
  }
  if (!map_opt(level, name, &wl, &wn)) {
    release(l);
    if (level == IPPROTO_TCP || level == IPPROTO_IP || level == IPPROTO_IPV6) {
      /* options the chain has no name for: zero, as a fresh socket has */
      if (!val || !len) { errno = EFAULT; return -1; }
      v = 0;
      if (*len > sizeof v) *len = sizeof v;
      memcpy(val, &v, *len);
      return 0;
    }
    return r_getsockopt(fd, level, name, val, len);
  }
  int wlen = 4;
  int32_t out = 0;
  inside++;
  rc = hc_getsockopt(l->s, wl, wn, &out, &wlen, &err);
  inside--;
  release(l);
  if (rc < 0) return fail_wsa(err);
  v = out;
  if (!val || !len) { errno = EFAULT; return -1; }
  if (*len > sizeof v) *len = sizeof v;
  memcpy(val, &v, *len);
  return 0;
}

EXPORT int setsockopt(int fd, int level, int name, const void *val, socklen_t len) {
  lsock *l;
  int wl, wn, err, rc;
  load_real();
  if (inside || !(l = get(fd))) return r_setsockopt(fd, level, name, val, len);
  if (level == SOL_SOCKET && (name == SO_RCVTIMEO || name == SO_SNDTIMEO || name == SO_LINGER ||
                              name == SO_RCVLOWAT || name == SO_SNDLOWAT)) {
    /* they govern the application's end: its blocking calls are on the pair */
    release(l);
    return r_setsockopt(fd, level, name, val, len);
  }
  if (!map_opt(level, name, &wl, &wn)) {
    /* no Winsock name: accepted and not applied (docs/preload.md) */
    DBG("setsockopt(%d, %d): not sent through the chain", level, name);
    release(l);
    return 0;
  }
  int32_t v = 0;
  if (val && len >= 4) memcpy(&v, val, 4);
  else if (val && len >= 1) v = *(const unsigned char *)val;
  inside++;
  rc = hc_setsockopt(l->s, wl, wn, &v, 4, &err);
  inside--;
  release(l);
  if (rc < 0) {
    DBG("setsockopt(%d, %d) through the chain failed (%d)", level, name, err);
    if (err == 10042 || err == 10045) return 0;
    return fail_wsa(err);
  }
  return 0;
}

/* ---- data calls: streams go to the real descriptor; datagrams are served here ------------ */
static int is_dgram(int fd, lsock **out) {
  lsock *l;
  if (inside || !(l = get(fd))) return 0;
  if (l->type == SOCK_DGRAM) { *out = l; return 1; }
  release(l);
  return 0;
}
/* A failed connect's error, reported by the first data call, as the kernel does. */
static int failed_error(int fd) {
  lsock *l;
  int e = 0;
  if (inside || !(l = get(fd))) return 0;
  pthread_mutex_lock(&l->mu);
  if (l->state == ST_FAILED && l->so_error) { e = l->so_error; l->so_error = 0; }
  pthread_mutex_unlock(&l->mu);
  release(l);
  return e;
}

EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags) {
  lsock *l;
  load_real();
  if (is_dgram(fd, &l)) { ssize_t n = dgram_send(l, msg, flags); release(l); return n; }
  if (!inside && msg && msg->msg_name && tracked(fd)) {
    struct msghdr m = *msg;            /* a connected stream ignores the address */
    m.msg_name = NULL;
    m.msg_namelen = 0;
    return r_sendmsg(fd, &m, flags);
  }
  return r_sendmsg(fd, msg, flags);
}
EXPORT ssize_t sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *to, socklen_t tolen) {
  lsock *l;
  load_real();
  if (is_dgram(fd, &l)) {
    struct iovec v = {(void *)buf, n};
    struct msghdr m = {0};
    m.msg_iov = &v; m.msg_iovlen = 1; m.msg_name = (void *)to; m.msg_namelen = to ? tolen : 0;
    ssize_t r = dgram_send(l, &m, flags);
    release(l);
    return r;
  }
  if (!inside && to && tracked(fd)) return r_sendto(fd, buf, n, flags, NULL, 0);
  return r_sendto(fd, buf, n, flags, to, tolen);
}
EXPORT ssize_t send(int fd, const void *buf, size_t n, int flags) { return sendto(fd, buf, n, flags, NULL, 0); }
EXPORT ssize_t write(int fd, const void *buf, size_t n) {
  lsock *l;
  load_real();
  if (is_dgram(fd, &l)) {
    struct iovec v = {(void *)buf, n};
    struct msghdr m = {0};
    m.msg_iov = &v; m.msg_iovlen = 1;
    ssize_t r = dgram_send(l, &m, 0);
    release(l);
    return r;
  }
  return r_write(fd, buf, n);
}

EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags) {
  lsock *l;
  int e;
  load_real();
  if (is_dgram(fd, &l)) { release(l); return dgram_recv(fd, msg, flags); }
  if ((e = failed_error(fd))) { errno = e; return -1; }
  return r_recvmsg(fd, msg, flags);
}
EXPORT ssize_t recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *from, socklen_t *fromlen) {
  lsock *l;
  int e;
  load_real();
  if (is_dgram(fd, &l)) {
    struct iovec v = {buf, n};
    struct msghdr m = {0};
    release(l);
    m.msg_iov = &v; m.msg_iovlen = 1;
    m.msg_name = from; m.msg_namelen = from && fromlen ? *fromlen : 0;
    ssize_t r = dgram_recv(fd, &m, flags);
    if (r >= 0 && from && fromlen) *fromlen = m.msg_namelen;
    return r;
  }
  if ((e = failed_error(fd))) { errno = e; return -1; }
  if (!inside && from && tracked(fd)) {
    ssize_t r = r_recvfrom(fd, buf, n, flags, NULL, NULL);
    if (r >= 0 && fromlen) *fromlen = 0;
    return r;
  }
  return r_recvfrom(fd, buf, n, flags, from, fromlen);
}
EXPORT ssize_t recv(int fd, void *buf, size_t n, int flags) { return recvfrom(fd, buf, n, flags, NULL, NULL); }
EXPORT ssize_t read(int fd, void *buf, size_t n) {
  lsock *l;
  load_real();
  if (!inside && tracked(fd)) {
    int e;
    if (is_dgram(fd, &l)) {
      struct iovec v = {buf, n};
      struct msghdr m = {0};
      release(l);
      m.msg_iov = &v; m.msg_iovlen = 1;
      return dgram_recv(fd, &m, 0);
    }
    if ((e = failed_error(fd))) { errno = e; return -1; }
  }
  return r_read(fd, buf, n);
}

/* ---- descriptors ---------------------------------------------------------------------------- */
static int dup_track(int from, int to) {
  lsock *l;
  if (to < 0 || inside) return to;
  if ((l = get(from)) != NULL) { map_set(to, l); release(l); }
  else if (tracked(to)) map_set(to, NULL);
  return to;
}
EXPORT int dup(int fd) { load_real(); return dup_track(fd, r_dup(fd)); }
EXPORT int dup2(int fd, int to) {
  load_real();
  if (!inside && fd != to && tracked(to)) map_set(to, NULL);
  return dup_track(fd, r_dup2(fd, to));
}
EXPORT int dup3(int fd, int to, int flags) {
  load_real();
  if (!inside && fd != to && tracked(to)) map_set(to, NULL);
  return dup_track(fd, r_dup3(fd, to, flags));
}
EXPORT int fcntl(int fd, int cmd, ...) {
  va_list ap;
  long arg;
  int rc;
  load_real();
  va_start(ap, cmd);
  arg = va_arg(ap, long);
  va_end(ap);
  rc = r_fcntl(fd, cmd, arg);
  if ((cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) && rc >= 0) dup_track(fd, rc);
  return rc;
}
EXPORT int fcntl64(int fd, int cmd, ...) {
  va_list ap;
  long arg;
  va_start(ap, cmd);
  arg = va_arg(ap, long);
  va_end(ap);
  return fcntl(fd, cmd, arg);
}

/* ---- what lwsp cannot serve: reported ----------------------------------------------------- */
EXPORT long syscall(long nr, ...) {
  va_list ap;
  long a[6];
  load_real();
  va_start(ap, nr);
  for (int i = 0; i < 6; i++) a[i] = va_arg(ap, long);
  va_end(ap);
  if (nr == SYS_io_uring_setup) say("the program sets up io_uring: its I/O through a ring is not served by lwsp");
  else if (!inside && (nr == SYS_socket || nr == SYS_connect || nr == SYS_sendto || nr == SYS_recvfrom ||
                       nr == SYS_accept || nr == SYS_accept4 || nr == SYS_bind))
    say("the program makes socket system calls itself (syscall %ld): not served by lwsp", nr);
  return r_syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}
EXPORT int io_uring_setup(unsigned entries, void *p);
EXPORT int io_uring_setup(unsigned entries, void *p) {
  load_real();
  say("the program sets up io_uring: its I/O through a ring is not served by lwsp");
  return (int)r_syscall(SYS_io_uring_setup, entries, p);
}

