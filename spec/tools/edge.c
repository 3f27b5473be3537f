/*
 * edge.c - socket edge cases a program relies on, run directly and through
 * lwsp's preload library (spec/30-preload_spec.lua).  Each case prints one
 * line, "NAME ok" or "NAME FAIL: why"; the exit status is the number of
 * failures.  usage: edge [CONNECTIONS for the epoll case, default 1000]
 *
 * The process cases: a child made with vfork (which shares the parent's
 * memory until it execs) and with posix_spawn puts a socket on its stdout
 * and execs echo, and the parent's view of its own descriptors must not
 * change; a daemon (fork, setsid, no exec) opens a socket of its own.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int failures;
#define FAIL(...) do { printf("%s FAIL: ", name); printf(__VA_ARGS__); printf(" (errno %d %s)\n", errno, strerror(errno)); failures++; return; } while (0)
#define OK() do { printf("%s ok\n", name); return; } while (0)

static int listener(int af, struct sockaddr_storage *ss, socklen_t *len) {
  int l = socket(af, SOCK_STREAM, 0), one = 1;
  memset(ss, 0, sizeof *ss);
  if (af == AF_INET) {
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    a->sin_family = AF_INET;
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    *len = sizeof *a;
  } else {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
    a->sin6_family = AF_INET6;
    a->sin6_addr = in6addr_loopback;
    *len = sizeof *a;
  }
  if (l < 0) return -1;
  setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(l, (struct sockaddr *)ss, *len) < 0 || listen(l, 1024) < 0) { close(l); return -1; }
  if (getsockname(l, (struct sockaddr *)ss, len) < 0) { close(l); return -1; }
  return l;
}

/* A connected pair: c (client) and *a (accepted), both blocking. */
static int pair(int af, int *a) {
  struct sockaddr_storage ss;
  socklen_t len;
  int l = listener(af, &ss, &len), c;
  if (l < 0) return -1;
  c = socket(af, SOCK_STREAM, 0);
  if (c < 0 || connect(c, (struct sockaddr *)&ss, len) < 0) { close(l); return -1; }
  *a = accept(l, NULL, NULL);
  close(l);
  return *a < 0 ? -1 : c;
}

static int read_all(int fd, char *buf, int n) {
  int got = 0;
  while (got < n) {
    ssize_t r = read(fd, buf + got, (size_t)(n - got));
    if (r <= 0) return r < 0 ? -1 : got;
    got += (int)r;
  }
  return got;
}

static void nb_connect(void) {
  const char *name = "nonblocking-connect";
  struct sockaddr_storage ss, peer;
  socklen_t len, plen = sizeof peer;
  int l = listener(AF_INET, &ss, &len), err = -1;
  socklen_t el = sizeof err;
  struct pollfd p;
  int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (l < 0 || c < 0) FAIL("sockets");
  int rc = connect(c, (struct sockaddr *)&ss, len);
  if (rc < 0 && errno != EINPROGRESS) FAIL("connect: %d", rc);
  p.fd = c; p.events = POLLOUT; p.revents = 0;
  if (poll(&p, 1, 5000) != 1 || !(p.revents & POLLOUT)) FAIL("not writable after 5 s");
  if (getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err != 0) FAIL("SO_ERROR %d", err);
  if (getpeername(c, (struct sockaddr *)&peer, &plen) < 0 || plen != len ||
      ((struct sockaddr_in *)&peer)->sin_port != ((struct sockaddr_in *)&ss)->sin_port) FAIL("getpeername");
  int a = accept(l, NULL, NULL);
  if (a < 0) FAIL("accept");
  if (write(c, "x", 1) != 1) FAIL("write");
  char b;
  if (read(a, &b, 1) != 1 || b != 'x') FAIL("read");
  close(a); close(c); close(l);
  OK();
}

static void refused(void) {
  const char *name = "refused-so-error";
  struct sockaddr_in a = {0};
  struct pollfd p;
  int err = -1;
  socklen_t el = sizeof err;
  int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  a.sin_family = AF_INET;
  a.sin_port = htons(9);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int rc = connect(c, (struct sockaddr *)&a, sizeof a);
  if (rc == 0) FAIL("connected to port 9");
  if (errno == ECONNREFUSED) { close(c); OK(); }
  if (errno != EINPROGRESS) FAIL("connect");
  p.fd = c; p.events = POLLOUT; p.revents = 0;
  if (poll(&p, 1, 5000) != 1) FAIL("no event after 5 s");
  if (!(p.revents & (POLLOUT | POLLERR | POLLHUP))) FAIL("revents 0x%x", p.revents);
  if (getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &el) < 0) FAIL("getsockopt");
  if (err != ECONNREFUSED) FAIL("SO_ERROR %d, not ECONNREFUSED", err);
  err = -1;
  getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &el);
  if (err != 0) FAIL("SO_ERROR not cleared: %d", err);
  close(c);
  OK();
}

static void blocking_refused(void) {
  const char *name = "blocking-refused";
  struct sockaddr_in a = {0};
  int c = socket(AF_INET, SOCK_STREAM, 0);
  a.sin_family = AF_INET;
  a.sin_port = htons(9);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(c, (struct sockaddr *)&a, sizeof a) == 0) FAIL("connected to port 9");
  if (errno != ECONNREFUSED) FAIL("errno not ECONNREFUSED");
  close(c);
  OK();
}

static void half_close(void) {
  const char *name = "half-close";
  int a, c = pair(AF_INET, &a);
  char buf[16];
  if (c < 0) FAIL("pair");
  if (write(c, "abc", 3) != 3 || shutdown(c, SHUT_WR) < 0) FAIL("write+shutdown");
  if (read_all(a, buf, 3) != 3 || memcmp(buf, "abc", 3)) FAIL("server read");
  if (read(a, buf, sizeof buf) != 0) FAIL("server sees no EOF");
  if (write(a, "xyz", 3) != 3) FAIL("server write after the client's half-close");
  close(a);
  if (read_all(c, buf, 3) != 3 || memcmp(buf, "xyz", 3)) FAIL("client read");
  if (read(c, buf, sizeof buf) != 0) FAIL("client sees no EOF");
  close(c);
  OK();
}

static void peek(void) {
  const char *name = "msg-peek";
  int a, c = pair(AF_INET, &a);
  char buf[16];
  struct pollfd p = {0};
  if (c < 0) FAIL("pair");
  if (write(a, "hello", 5) != 5) FAIL("write");
  p.fd = c; p.events = POLLIN;
  if (poll(&p, 1, 5000) != 1) FAIL("not readable");
  int avail = 0;
  for (int i = 0; i < 100 && avail < 5; i++) { ioctl(c, FIONREAD, &avail); if (avail < 5) usleep(10000); }
  if (avail != 5) FAIL("FIONREAD %d", avail);
  if (recv(c, buf, sizeof buf, MSG_PEEK) != 5 || memcmp(buf, "hello", 5)) FAIL("peek");
  memset(buf, 0, sizeof buf);
  if (recv(c, buf, sizeof buf, 0) != 5 || memcmp(buf, "hello", 5)) FAIL("recv after peek");
  close(a); close(c);
  OK();
}

static void waitall(void) {
  const char *name = "msg-waitall";
  int a, c = pair(AF_INET, &a);
  static char big[300000], got[300000];
  if (c < 0) FAIL("pair");
  for (size_t i = 0; i < sizeof big; i++) big[i] = (char)(i * 7);
  pid_t pid = fork();
  if (pid == 0) {
    for (int k = 0; k < 3; k++) { if (write(a, big + k * 100000, 100000) != 100000) _exit(1); usleep(50000); }
    _exit(0);
  }
  ssize_t n = recv(c, got, sizeof got, MSG_WAITALL);
  int st;
  waitpid(pid, &st, 0);
  if (n != (ssize_t)sizeof got || memcmp(big, got, sizeof got)) FAIL("got %zd", n);
  close(a); close(c);
  OK();
}

static void dup2_over(void) {
  const char *name = "dup2-over-socket";
  int a, c = pair(AF_INET, &a), a2, c2 = pair(AF_INET, &a2);
  char buf[8];
  if (c < 0 || c2 < 0) FAIL("pairs");
  /* c2's descriptor now names c's socket; c2's own socket is closed */
  if (dup2(c, c2) != c2) FAIL("dup2");
  if (read(a2, buf, sizeof buf) != 0) FAIL("the replaced socket's peer sees no EOF");
  close(c);
  if (write(c2, "dup", 3) != 3) FAIL("write on the duplicate");
  if (read_all(a, buf, 3) != 3 || memcmp(buf, "dup", 3)) FAIL("read");
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getpeername(c2, (struct sockaddr *)&ss, &len) < 0) FAIL("getpeername on the duplicate");
  close(c2);
  if (read(a, buf, sizeof buf) != 0) FAIL("no EOF after the last close");
  close(a); close(a2);
  OK();
}

static void fork_shared(void) {
  const char *name = "fork-shared-socket";
  int a, c = pair(AF_INET, &a);
  char buf[32];
  if (c < 0) FAIL("pair");
  pid_t pid = fork();
  if (pid == 0) {
    /* the child writes on the inherited socket and reads what the server sends it */
    if (write(c, "child;", 6) != 6) _exit(1);
    if (read_all(c, buf, 4) != 4 || memcmp(buf, "kid!", 4)) _exit(2);
    _exit(0);
  }
  if (read_all(a, buf, 6) != 6 || memcmp(buf, "child;", 6)) FAIL("the child's bytes");
  if (write(a, "kid!", 4) != 4) FAIL("write to the child");
  int st;
  waitpid(pid, &st, 0);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) FAIL("child status %d", st);
  if (write(c, "parent", 6) != 6) FAIL("parent write");
  if (read_all(a, buf, 6) != 6 || memcmp(buf, "parent", 6)) FAIL("the parent's bytes");
  close(c); close(a);
  OK();
}

/* stdout, a pipe or a file here, is not a socket: a child's dup2 onto fd 1
 * must not have made the parent's library think it is */
static int stdout_still_mine(void) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  return getsockname(1, (struct sockaddr *)&ss, &len) < 0 && errno == ENOTSOCK;
}

static void vfork_exec(void) {
  const char *name = "vfork-exec";
  int a, c = pair(AF_INET, &a);
  char buf[16];
  int st;
  if (c < 0) FAIL("pair");
  if (!stdout_still_mine()) FAIL("stdout reported as a socket before the child");
  pid_t pid = vfork();
  if (pid == 0) {
    /* between vfork and exec: descriptor calls on the parent's memory */
    if (dup2(c, 1) < 0) _exit(3);
    close(a);
    execl("/bin/echo", "echo", "vforked", (char *)NULL);
    _exit(4);
  }
  if (pid < 0) FAIL("vfork");
  if (read_all(a, buf, 8) != 8 || memcmp(buf, "vforked\n", 8)) FAIL("what echo wrote on the socket");
  waitpid(pid, &st, 0);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) FAIL("child status %d", st);
  if (!stdout_still_mine()) FAIL("the child's dup2 onto fd 1 changed the parent's descriptors");
  if (write(c, "after", 5) != 5 || read_all(a, buf, 5) != 5 || memcmp(buf, "after", 5)) FAIL("the socket after the child");
  close(c); close(a);
  OK();
}

static void spawn_exec(void) {
  const char *name = "posix-spawn";
  int a, c = pair(AF_INET, &a);
  char buf[16];
  int st;
  pid_t pid;
  posix_spawn_file_actions_t fa;
  char *args[] = {"echo", "spawned", NULL};
  extern char **environ;
  if (c < 0) FAIL("pair");
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, c, 1);
  posix_spawn_file_actions_addclose(&fa, a);
  errno = posix_spawn(&pid, "/bin/echo", &fa, NULL, args, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (errno) FAIL("posix_spawn");
  if (read_all(a, buf, 8) != 8 || memcmp(buf, "spawned\n", 8)) FAIL("what echo wrote on the socket");
  waitpid(pid, &st, 0);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) FAIL("child status %d", st);
  if (!stdout_still_mine()) FAIL("the spawn's dup2 onto fd 1 changed the parent's descriptors");
  if (write(c, "after", 5) != 5 || read_all(a, buf, 5) != 5 || memcmp(buf, "after", 5)) FAIL("the socket after the child");
  close(c); close(a);
  OK();
}

/* A daemon: fork, setsid, no exec; its own new socket connects to the
 * parent's listener (through the chain the parent's, the kernel's in the
 * daemon, which has no threads of lwsp). */
static void daemon_socket(void) {
  const char *name = "daemon";
  struct sockaddr_storage ss;
  socklen_t len;
  int l = listener(AF_INET, &ss, &len), st;
  char buf[16];
  if (l < 0) FAIL("listener");
  pid_t pid = fork();
  if (pid == 0) {
    if (setsid() < 0) _exit(1);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0 || connect(s, (struct sockaddr *)&ss, len) < 0) _exit(2);
    if (write(s, "daemon", 6) != 6) _exit(3);
    close(s);
    _exit(0);
  }
  if (pid < 0) FAIL("fork");
  int a = accept(l, NULL, NULL);
  if (a < 0) FAIL("accept");
  if (read_all(a, buf, 6) != 6 || memcmp(buf, "daemon", 6)) FAIL("the daemon's bytes");
  waitpid(pid, &st, 0);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) FAIL("daemon status %d", st);
  close(a); close(l);
  OK();
}

static void ipv6(void) {
  const char *name = "ipv6-loopback";
  int a, c = pair(AF_INET6, &a);
  char buf[8];
  struct sockaddr_in6 sn;
  socklen_t len = sizeof sn;
  if (c < 0) FAIL("pair on ::1");
  if (getsockname(c, (struct sockaddr *)&sn, &len) < 0 || sn.sin6_family != AF_INET6 ||
      memcmp(&sn.sin6_addr, &in6addr_loopback, 16)) FAIL("getsockname");
  if (write(c, "six", 3) != 3 || read_all(a, buf, 3) != 3 || memcmp(buf, "six", 3)) FAIL("data");
  close(a); close(c);
  OK();
}

static void udp(void) {
  const char *name = "udp-sendto-recvfrom";
  int s = socket(AF_INET, SOCK_DGRAM, 0), c = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in a = {0}, from, me;
  socklen_t len = sizeof a, fl = sizeof from, ml = sizeof me;
  char buf[64];
  struct pollfd p = {0};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(s, (struct sockaddr *)&a, sizeof a) < 0 || getsockname(s, (struct sockaddr *)&a, &len) < 0) FAIL("bind");
  if (sendto(c, "dgram-1", 7, 0, (struct sockaddr *)&a, sizeof a) != 7) FAIL("sendto");
  if (sendto(c, "dgram-two", 9, 0, (struct sockaddr *)&a, sizeof a) != 9) FAIL("sendto 2");
  p.fd = s; p.events = POLLIN;
  if (poll(&p, 1, 5000) != 1) FAIL("not readable");
  ssize_t n = recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
  if (n != 7 || memcmp(buf, "dgram-1", 7)) FAIL("first datagram %zd", n);
  if (getsockname(c, (struct sockaddr *)&me, &ml) < 0 || me.sin_port != from.sin_port) FAIL("source address");
  n = recv(s, buf, sizeof buf, 0);
  if (n != 9 || memcmp(buf, "dgram-two", 9)) FAIL("second datagram %zd", n);
  if (sendto(s, "back", 4, 0, (struct sockaddr *)&from, fl) != 4) FAIL("reply");
  p.fd = c;
  if (poll(&p, 1, 5000) != 1 || recv(c, buf, sizeof buf, 0) != 4 || memcmp(buf, "back", 4)) FAIL("reply received");
  close(s); close(c);
  OK();
}

static void many(int n) {
  char name[64];
  snprintf(name, sizeof name, "epoll-%d-connections", n);
  struct sockaddr_storage ss;
  socklen_t len;
  int l = listener(AF_INET, &ss, &len);
  int ep = epoll_create1(0);
  int *cl = calloc((size_t)n, sizeof *cl), *sv = calloc((size_t)n, sizeof *sv);
  int *done = calloc((size_t)n, sizeof *done);
  int accepted = 0, echoed = 0, finished = 0;
  struct epoll_event ev = {0}, evs[256];
  if (l < 0 || ep < 0) FAIL("listener");
  fcntl(l, F_SETFL, O_NONBLOCK);
  ev.events = EPOLLIN;
  ev.data.u64 = 0xffffffffu;       /* the listener */
  epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev);
  for (int i = 0; i < n; i++) {
    cl[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (cl[i] < 0) FAIL("socket %d", i);
    if (connect(cl[i], (struct sockaddr *)&ss, len) < 0 && errno != EINPROGRESS) FAIL("connect %d", i);
    ev.events = EPOLLOUT;
    ev.data.u64 = (uint64_t)i;       /* a client, waiting to be connected */
    epoll_ctl(ep, EPOLL_CTL_ADD, cl[i], &ev);
  }
  time_t until = time(NULL) + 60;
  while (finished < n && time(NULL) < until) {
    int k = epoll_wait(ep, evs, 256, 1000);
    for (int e = 0; e < k; e++) {
      uint64_t d = evs[e].data.u64;
      if (d == 0xffffffffu) {
        int a;
        while ((a = accept4(l, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
          sv[accepted++] = a;
          ev.events = EPOLLIN;
          ev.data.u64 = (uint64_t)a << 32 | 0x80000000u;   /* a server side */
          epoll_ctl(ep, EPOLL_CTL_ADD, a, &ev);
        }
      } else if (d & 0x80000000u) {
        int a = (int)(d >> 32);
        char buf[16];
        ssize_t r = read(a, buf, sizeof buf);
        if (r > 0) { if (write(a, buf, (size_t)r) == r) echoed++; }
        else if (r == 0) { epoll_ctl(ep, EPOLL_CTL_DEL, a, NULL); }
      } else {
        int i = (int)d;
        if (evs[e].events & EPOLLOUT && done[i] == 0) {
          int err = 0;
          socklen_t el = sizeof err;
          getsockopt(cl[i], SOL_SOCKET, SO_ERROR, &err, &el);
          if (err) FAIL("client %d: SO_ERROR %d", i, err);
          char msg[16];
          int m = snprintf(msg, sizeof msg, "c%07d", i);
          if (write(cl[i], msg, (size_t)m) != m) FAIL("client %d write", i);
          done[i] = 1;
          ev.events = EPOLLIN;
          ev.data.u64 = (uint64_t)i;
          epoll_ctl(ep, EPOLL_CTL_MOD, cl[i], &ev);
        } else if (evs[e].events & EPOLLIN && done[i] == 1) {
          char buf[16], msg[16];
          int m = snprintf(msg, sizeof msg, "c%07d", i);
          ssize_t r = read(cl[i], buf, sizeof buf);
          if (r != m || memcmp(buf, msg, (size_t)m)) FAIL("client %d echo (%zd)", i, r);
          done[i] = 2;
          finished++;
          epoll_ctl(ep, EPOLL_CTL_DEL, cl[i], NULL);
        }
      }
    }
  }
  if (finished < n) FAIL("%d of %d finished (%d accepted, %d echoed)", finished, n, accepted, echoed);
  for (int i = 0; i < n; i++) close(cl[i]);
  for (int i = 0; i < accepted; i++) close(sv[i]);
  close(l); close(ep);
  free(cl); free(sv); free(done);
  OK();
}

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 1000;
  signal(SIGPIPE, SIG_IGN);
  setvbuf(stdout, NULL, _IOLBF, 0);
  nb_connect();
  refused();
  blocking_refused();
  half_close();
  peek();
  waitall();
  dup2_over();
  fork_shared();
  vfork_exec();
  spawn_exec();
  daemon_socket();
  ipv6();
  udp();
  if (n > 0) many(n);
  return failures;
}
