/*
 * preload_calls.c - the C library calls liblwsp_preload.so takes over:
 * socket, connect, bind, listen, accept, close, shutdown, names and options
 * through the chain; the data calls of datagram sockets; dup and fcntl kept
 * in step with the descriptor table; and what lwsp cannot serve (raw
 * syscalls, io_uring), reported.
 */
#define _GNU_SOURCE
#include "preload.h"

/* ---- the intercepted calls ---------------------------------------------------------------- */
int pl_served(int domain, int type) {
  int t = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
  return (domain == AF_INET || domain == AF_INET6) && (t == SOCK_STREAM || t == SOCK_DGRAM);
}

EXPORT int socket(int domain, int type, int protocol) {
  int sv[2], t = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC), err;
  unsigned cat;
  lsock *l;
  uintptr_t s;
  pl_load_real();
  if (pl_inside || !pl_served(domain, type)) return r_socket(domain, type, protocol);
  if (!pl_start()) {
    /* the chain was asked for and is not there: no socket goes round it */
    errno = ENETDOWN;
    return -1;
  }
  if (pl_owner_pid != getpid()) {
    pl_say("socket() in a forked child that did not exec: served by the kernel, not the chain");
    return r_socket(domain, type, protocol);
  }
  cat = domain == AF_INET ? (t == SOCK_STREAM ? pl_cat_tcp : pl_cat_udp) : (t == SOCK_STREAM ? pl_cat_tcp6 : pl_cat_udp6);
  if (!cat) { errno = EAFNOSUPPORT; return -1; }
  if (protocol && protocol != (t == SOCK_STREAM ? IPPROTO_TCP : IPPROTO_UDP)) { errno = EPROTONOSUPPORT; return -1; }
  pl_inside++;
  int rc = hc_socket(cat, domain == AF_INET ? AF_INET : W_AF_INET6, t, t == SOCK_STREAM ? IPPROTO_TCP : IPPROTO_UDP, &s, &err);
  pl_inside--;
  if (rc < 0) return pl_fail_wsa(err);
  if (socketpair(AF_UNIX, (t == SOCK_STREAM ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC, 0, sv) < 0) {
    int e = errno;
    pl_inside++; hc_close(s, &err); pl_inside--;
    errno = e;
    return -1;
  }
  if (type & SOCK_NONBLOCK) r_fcntl(sv[0], F_SETFL, r_fcntl(sv[0], F_GETFL) | O_NONBLOCK);
  if (!(type & SOCK_CLOEXEC)) r_fcntl(sv[0], F_SETFD, 0);
  l = calloc(1, sizeof *l);
  if (!l) { r_close(sv[0]); r_close(sv[1]); pl_inside++; hc_close(s, &err); pl_inside--; errno = ENOMEM; return -1; }
  pthread_mutex_init(&l->mu, NULL);
  l->s = s;
  l->has_s = 1;
  l->af = domain;
  l->type = t;
  l->proto = t == SOCK_STREAM ? IPPROTO_TCP : IPPROTO_UDP;
  l->pump = sv[1];
  l->appdup = -1;
  l->state = ST_NEW;
  if (pl_map_set(sv[0], l) < 0) { free(l); r_close(sv[0]); r_close(sv[1]); errno = ENOMEM; return -1; }
  DBG("socket(%d, %d) -> fd %d, chain socket %lu", domain, t, sv[0], (unsigned long)s);
  return sv[0];
}

static int nonblocking(int fd) { return (r_fcntl(fd, F_GETFL) & O_NONBLOCK) != 0; }

/* A non-blocking connect: the chain's connect runs on a thread of its own
 * (pl_connector), and the application's end does not poll writable until it
 * ends (its send buffer filled meanwhile).  EINPROGRESS, as the kernel's. */
static int connect_nonblocking(int fd, lsock *l, const struct sockaddr_storage *to, socklen_t len) {
  int rc;
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
  if (!j) { pl_release(l); errno = ENOMEM; return -1; }
  j->l = l;
  j->to = *to;
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
    rc = pthread_create(&t, &a, pl_connector, j);
    pthread_attr_destroy(&a);
    if (rc) { free(j); pl_release(l); pl_release(l); errno = EAGAIN; return -1; }
  }
  pl_release(l);
  errno = EINPROGRESS;
  return -1;
}

EXPORT int connect(int fd, const struct sockaddr *sa, socklen_t len) {
  lsock *l;
  struct sockaddr_storage to;
  int err, rc;
  pl_load_real();
  if (pl_inside || pl_foreign_fd(fd) || !(l = pl_get(fd))) return r_connect(fd, sa, len);
  if (pl_to_win(sa, len, &to) < 0) {
    pl_release(l);
    errno = EAFNOSUPPORT;
    return -1;
  }
  if (l->type == SOCK_DGRAM) {
    pl_inside++;
    rc = hc_connect(l->s, &to, (int)len, &err);
    pl_inside--;
    if (rc == 0) { l->state = ST_CONNECTED; pl_dgram_start(l); }
    pl_release(l);
    return rc < 0 ? pl_fail_wsa(err) : 0;
  }
  pthread_mutex_lock(&l->mu);
  int st = l->state;
  if (st == ST_NEW) l->state = ST_CONNECTING;
  pthread_mutex_unlock(&l->mu);
  if (st != ST_NEW) {
    pl_release(l);
    errno = st == ST_CONNECTING ? EALREADY : st == ST_CONNECTED ? EISCONN : st == ST_LISTENING ? EINVAL : ECONNABORTED;
    if (st == ST_FAILED) {
      pthread_mutex_lock(&l->mu);
      if (l->so_error) { errno = l->so_error; l->so_error = 0; }
      pthread_mutex_unlock(&l->mu);
    }
    return -1;
  }
  if (!nonblocking(fd)) {
    pl_inside++;
    rc = hc_connect(l->s, &to, (int)len, &err);
    pl_inside--;
    pl_connect_done(l, rc == 0, err);
    if (rc < 0) {
      pthread_mutex_lock(&l->mu);
      l->so_error = 0;
      pthread_mutex_unlock(&l->mu);
    }
    pl_release(l);
    return rc < 0 ? pl_fail_wsa(err) : 0;
  }
  return connect_nonblocking(fd, l, &to, len);
}

EXPORT int bind(int fd, const struct sockaddr *sa, socklen_t len) {
  lsock *l;
  struct sockaddr_storage to;
  int err, rc;
  pl_load_real();
  if (pl_inside || pl_foreign_fd(fd) || !(l = pl_get(fd))) return r_bind(fd, sa, len);
  if (pl_to_win(sa, len, &to) < 0) { pl_release(l); errno = EAFNOSUPPORT; return -1; }
  pl_inside++;
  rc = hc_bind(l->s, &to, (int)len, &err);
  pl_inside--;
  if (rc == 0 && l->type == SOCK_DGRAM) pl_dgram_start(l);
  pl_release(l);
  return rc < 0 ? pl_fail_wsa(err) : 0;
}

EXPORT int listen(int fd, int backlog) {
  lsock *l;
  int err, rc;
  pl_load_real();
  if (pl_inside || pl_foreign_fd(fd) || !(l = pl_get(fd))) return r_listen(fd, backlog);
  if (l->type != SOCK_STREAM) { pl_release(l); errno = EOPNOTSUPP; return -1; }
  if (l->state == ST_LISTENING) { pl_release(l); return 0; }
  pl_inside++;
  rc = hc_listen(l->s, backlog, &err);
  pl_inside--;
  if (rc == 0) {
    l->state = ST_LISTENING;
    pl_spawn(pl_acceptor, l);
  }
  pl_release(l);
  return rc < 0 ? pl_fail_wsa(err) : 0;
}

EXPORT int accept4(int fd, struct sockaddr *sa, socklen_t *len, int flags) {
  lsock *l, *n;
  char tok;
  ssize_t got;
  uintptr_t ns;
  int sv[2], err;
  pl_load_real();
  if (pl_inside || pl_foreign_fd(fd) || !(l = pl_get(fd))) return r_accept4(fd, sa, len, flags);
  if (l->state != ST_LISTENING) { pl_release(l); errno = EINVAL; return -1; }
  do got = r_read(fd, &tok, 1); while (got < 0 && errno == EINTR);
  if (got != 1) { pl_release(l); if (got == 0) errno = EINVAL; return -1; }
  pthread_mutex_lock(&l->mu);
  ns = l->qn ? l->queue[0] : (uintptr_t)-1;
  if (l->qn) memmove(l->queue, l->queue + 1, (size_t)--l->qn * sizeof *l->queue);
  pthread_mutex_unlock(&l->mu);
  if (ns == (uintptr_t)-1) { pl_release(l); errno = EAGAIN; return -1; }
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
    int e = errno;
    pl_inside++; hc_close(ns, &err); pl_inside--;
    pl_release(l);
    errno = e;
    return -1;
  }
  if (flags & SOCK_NONBLOCK) r_fcntl(sv[0], F_SETFL, r_fcntl(sv[0], F_GETFL) | O_NONBLOCK);
  if (!(flags & SOCK_CLOEXEC)) r_fcntl(sv[0], F_SETFD, 0);
  n = calloc(1, sizeof *n);
  if (!n) { r_close(sv[0]); r_close(sv[1]); pl_inside++; hc_close(ns, &err); pl_inside--; pl_release(l); errno = ENOMEM; return -1; }
  pthread_mutex_init(&n->mu, NULL);
  n->s = ns;
  n->has_s = 1;
  n->af = l->af;
  n->type = SOCK_STREAM;
  n->proto = IPPROTO_TCP;
  n->pump = sv[1];
  n->appdup = -1;
  n->state = ST_CONNECTED;
  pl_release(l);
  pl_map_set(sv[0], n);
  pl_start_pumps(n);
  if (sa && len) {
    struct sockaddr_storage ss;
    int wl = sizeof ss;
    pl_inside++;
    if (hc_name(ns, 1, &ss, &wl, &err) == 0) pl_from_win(&ss, wl, sa, len);
    else *len = 0;
    pl_inside--;
  }
  return sv[0];
}
EXPORT int accept(int fd, struct sockaddr *sa, socklen_t *len) { return accept4(fd, sa, len, 0); }

EXPORT int close(int fd) {
  pl_load_real();
  if (!pl_inside && pl_tracked(fd) && !pl_foreign()) pl_map_set(fd, NULL);
  return r_close(fd);
}

EXPORT int shutdown(int fd, int how) {
  lsock *l;
  pl_load_real();
  if (pl_inside || pl_foreign_fd(fd) || !(l = pl_get(fd))) return r_shutdown(fd, how);
  int st = l->state;
  if (l->type == SOCK_STREAM && st != ST_CONNECTED) { pl_release(l); errno = ENOTCONN; return -1; }
  if (l->type == SOCK_DGRAM) {
    int err, rc;
    pl_inside++;
    rc = hc_shutdown(l->s, how == SHUT_RD ? 0 : how == SHUT_WR ? 1 : 2, &err);
    pl_inside--;
    pl_release(l);
    return rc < 0 ? pl_fail_wsa(err) : 0;
  }
  /* the pump sees the end of the application's data and shuts the chain's
   * socket down in order, after the bytes before it */
  int rc = r_shutdown(fd, how);
  pl_release(l);
  return rc;
}

static int name_of(int fd, int peer, struct sockaddr *sa, socklen_t *len) {
  lsock *l;
  struct sockaddr_storage ss;
  int wl = sizeof ss, err, rc;
  pl_load_real();
  if (pl_inside || !(l = pl_get(fd))) return peer ? r_getpeername(fd, sa, len) : r_getsockname(fd, sa, len);
  if (peer && l->type == SOCK_STREAM && l->state != ST_CONNECTED) { pl_release(l); errno = ENOTCONN; return -1; }
  pl_inside++;
  rc = hc_name(l->s, peer, &ss, &wl, &err);
  pl_inside--;
  if (rc < 0 && !peer && err == 10022) {
    /* not bound yet: the kernel answers with the wildcard address */
    memset(&ss, 0, sizeof ss);
    ss.ss_family = l->af;
    wl = l->af == AF_INET ? (int)sizeof(struct sockaddr_in) : (int)sizeof(struct sockaddr_in6);
    rc = 0;
  }
  pl_release(l);
  if (rc < 0) return pl_fail_wsa(err);
  pl_from_win(&ss, wl, sa, len);
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
  pl_load_real();
  if (pl_inside || !(l = pl_get(fd))) return r_getsockopt(fd, level, name, val, len);
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
      pl_release(l);
      return r_getsockopt(fd, level, name, val, len);
    }
  }
  if (have) {
    pl_release(l);
    if (!val || !len) { errno = EFAULT; return -1; }
    if (*len > sizeof v) *len = sizeof v;
    memcpy(val, &v, *len);
    return 0;
  }
  if (!map_opt(level, name, &wl, &wn)) {
    pl_release(l);
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
  pl_inside++;
  rc = hc_getsockopt(l->s, wl, wn, &out, &wlen, &err);
  pl_inside--;
  pl_release(l);
  if (rc < 0) return pl_fail_wsa(err);
  v = out;
  if (!val || !len) { errno = EFAULT; return -1; }
  if (*len > sizeof v) *len = sizeof v;
  memcpy(val, &v, *len);
  return 0;
}

EXPORT int setsockopt(int fd, int level, int name, const void *val, socklen_t len) {
  lsock *l;
  int wl, wn, err, rc;
  pl_load_real();
  if (pl_inside || pl_foreign_fd(fd) || !(l = pl_get(fd))) return r_setsockopt(fd, level, name, val, len);
  if (level == SOL_SOCKET && (name == SO_RCVTIMEO || name == SO_SNDTIMEO || name == SO_LINGER ||
                              name == SO_RCVLOWAT || name == SO_SNDLOWAT)) {
    /* they govern the application's end: its blocking calls are on the pair */
    pl_release(l);
    return r_setsockopt(fd, level, name, val, len);
  }
  if (!map_opt(level, name, &wl, &wn)) {
    /* no Winsock name: accepted and not applied (docs/preload.md) */
    DBG("setsockopt(%d, %d): not sent through the chain", level, name);
    pl_release(l);
    return 0;
  }
  int32_t v = 0;
  if (val && len >= 4) memcpy(&v, val, 4);
  else if (val && len >= 1) v = *(const unsigned char *)val;
  pl_inside++;
  rc = hc_setsockopt(l->s, wl, wn, &v, 4, &err);
  pl_inside--;
  pl_release(l);
  if (rc < 0) {
    DBG("setsockopt(%d, %d) through the chain failed (%d)", level, name, err);
    if (err == 10042 || err == 10045) return 0;
    return pl_fail_wsa(err);
  }
  return 0;
}

/* ---- data calls: streams go to the real descriptor; datagrams are served here ------------ */
static int is_dgram(int fd, lsock **out) {
  lsock *l;
  if (pl_inside || !(l = pl_get(fd))) return 0;
  if (l->type == SOCK_DGRAM) { *out = l; return 1; }
  pl_release(l);
  return 0;
}
/* A failed connect's error, reported by the first data call, as the kernel does. */
static int failed_error(int fd) {
  lsock *l;
  int e = 0;
  if (pl_inside || !(l = pl_get(fd))) return 0;
  pthread_mutex_lock(&l->mu);
  if (l->state == ST_FAILED && l->so_error) { e = l->so_error; l->so_error = 0; }
  pthread_mutex_unlock(&l->mu);
  pl_release(l);
  return e;
}

EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags) {
  lsock *l;
  pl_load_real();
  if (is_dgram(fd, &l)) { ssize_t n = pl_dgram_send(l, msg, flags); pl_release(l); return n; }
  if (!pl_inside && msg && msg->msg_name && pl_tracked(fd)) {
    struct msghdr m = *msg;            /* a connected stream ignores the address */
    m.msg_name = NULL;
    m.msg_namelen = 0;
    return r_sendmsg(fd, &m, flags);
  }
  return r_sendmsg(fd, msg, flags);
}
EXPORT ssize_t sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *to, socklen_t tolen) {
  lsock *l;
  pl_load_real();
  if (is_dgram(fd, &l)) {
    struct iovec v = {(void *)buf, n};
    struct msghdr m = {0};
    m.msg_iov = &v; m.msg_iovlen = 1; m.msg_name = (void *)to; m.msg_namelen = to ? tolen : 0;
    ssize_t r = pl_dgram_send(l, &m, flags);
    pl_release(l);
    return r;
  }
  if (!pl_inside && to && pl_tracked(fd)) return r_sendto(fd, buf, n, flags, NULL, 0);
  return r_sendto(fd, buf, n, flags, to, tolen);
}
EXPORT ssize_t send(int fd, const void *buf, size_t n, int flags) { return sendto(fd, buf, n, flags, NULL, 0); }
EXPORT ssize_t write(int fd, const void *buf, size_t n) {
  lsock *l;
  pl_load_real();
  if (is_dgram(fd, &l)) {
    struct iovec v = {(void *)buf, n};
    struct msghdr m = {0};
    m.msg_iov = &v; m.msg_iovlen = 1;
    ssize_t r = pl_dgram_send(l, &m, 0);
    pl_release(l);
    return r;
  }
  return r_write(fd, buf, n);
}

EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags) {
  lsock *l;
  int e;
  pl_load_real();
  if (is_dgram(fd, &l)) { pl_release(l); return pl_dgram_recv(fd, msg, flags); }
  if ((e = failed_error(fd))) { errno = e; return -1; }
  return r_recvmsg(fd, msg, flags);
}
EXPORT ssize_t recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *from, socklen_t *fromlen) {
  lsock *l;
  int e;
  pl_load_real();
  if (is_dgram(fd, &l)) {
    struct iovec v = {buf, n};
    struct msghdr m = {0};
    pl_release(l);
    m.msg_iov = &v; m.msg_iovlen = 1;
    m.msg_name = from; m.msg_namelen = from && fromlen ? *fromlen : 0;
    ssize_t r = pl_dgram_recv(fd, &m, flags);
    if (r >= 0 && from && fromlen) *fromlen = m.msg_namelen;
    return r;
  }
  if ((e = failed_error(fd))) { errno = e; return -1; }
  if (!pl_inside && from && pl_tracked(fd)) {
    ssize_t r = r_recvfrom(fd, buf, n, flags, NULL, NULL);
    if (r >= 0 && fromlen) *fromlen = 0;
    return r;
  }
  return r_recvfrom(fd, buf, n, flags, from, fromlen);
}
EXPORT ssize_t recv(int fd, void *buf, size_t n, int flags) { return recvfrom(fd, buf, n, flags, NULL, NULL); }
EXPORT ssize_t read(int fd, void *buf, size_t n) {
  lsock *l;
  pl_load_real();
  if (!pl_inside && pl_tracked(fd)) {
    int e;
    if (is_dgram(fd, &l)) {
      struct iovec v = {buf, n};
      struct msghdr m = {0};
      pl_release(l);
      m.msg_iov = &v; m.msg_iovlen = 1;
      return pl_dgram_recv(fd, &m, 0);
    }
    if ((e = failed_error(fd))) { errno = e; return -1; }
  }
  return r_read(fd, buf, n);
}

/* ---- descriptors ---------------------------------------------------------------------------- */
static int dup_track(int from, int to) {
  lsock *l;
  if (to < 0 || pl_inside) return to;
  if ((pl_tracked(from) || pl_tracked(to)) && pl_foreign()) return to;
  if ((l = pl_get(from)) != NULL) { pl_map_set(to, l); pl_release(l); }
  else if (pl_tracked(to)) pl_map_set(to, NULL);
  return to;
}
EXPORT int dup(int fd) { pl_load_real(); return dup_track(fd, r_dup(fd)); }
EXPORT int dup2(int fd, int to) {
  pl_load_real();
  if (!pl_inside && fd != to && pl_tracked(to) && !pl_foreign()) pl_map_set(to, NULL);
  return dup_track(fd, r_dup2(fd, to));
}
EXPORT int dup3(int fd, int to, int flags) {
  pl_load_real();
  if (!pl_inside && fd != to && pl_tracked(to) && !pl_foreign()) pl_map_set(to, NULL);
  return dup_track(fd, r_dup3(fd, to, flags));
}
EXPORT int fcntl(int fd, int cmd, ...) {
  va_list ap;
  long arg;
  int rc;
  pl_load_real();
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
  pl_load_real();
  va_start(ap, nr);
  for (int i = 0; i < 6; i++) a[i] = va_arg(ap, long);
  va_end(ap);
  if (nr == SYS_io_uring_setup) pl_say("the program sets up io_uring: its I/O through a ring is not served by lwsp");
  else if (!pl_inside && (nr == SYS_socket || nr == SYS_connect || nr == SYS_sendto || nr == SYS_recvfrom ||
                       nr == SYS_accept || nr == SYS_accept4 || nr == SYS_bind))
    pl_say("the program makes socket system calls itself (syscall %ld): not served by lwsp", nr);
  return r_syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}
EXPORT int io_uring_setup(unsigned entries, void *p);
EXPORT int io_uring_setup(unsigned entries, void *p) {
  pl_load_real();
  pl_say("the program sets up io_uring: its I/O through a ring is not served by lwsp");
  return (int)r_syscall(SYS_io_uring_setup, entries, p);
}
