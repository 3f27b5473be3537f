/*
 * preload.h - what the two halves of liblwsp_preload.so share: preload.c
 * (the real C library, the host's C calls, the descriptor table, start-up,
 * the pump and accept threads, datagrams) and preload_calls.c (the calls it
 * intercepts).  Define _GNU_SOURCE before including it.
 */
#ifndef LWSP_PRELOAD_H
#define LWSP_PRELOAD_H
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

/* a connect through the chain, run on its own thread (pl_connector) */
typedef struct { lsock *l; struct sockaddr_storage to; int len; } conn_job;

/* the real C library (RTLD_NEXT) and the host's C calls (lwsp_hc_*) */
extern int (*r_socket)(int, int, int);
extern int (*r_connect)(int, const struct sockaddr *, socklen_t);
extern int (*r_bind)(int, const struct sockaddr *, socklen_t);
extern int (*r_listen)(int, int);
extern int (*r_accept4)(int, struct sockaddr *, socklen_t *, int);
extern int (*r_close)(int);
extern int (*r_shutdown)(int, int);
extern int (*r_getsockname)(int, struct sockaddr *, socklen_t *);
extern int (*r_getpeername)(int, struct sockaddr *, socklen_t *);
extern int (*r_getsockopt)(int, int, int, void *, socklen_t *);
extern int (*r_setsockopt)(int, int, int, const void *, socklen_t);
extern ssize_t (*r_sendto)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
extern ssize_t (*r_sendmsg)(int, const struct msghdr *, int);
extern ssize_t (*r_recvfrom)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
extern ssize_t (*r_recvmsg)(int, struct msghdr *, int);
extern ssize_t (*r_send)(int, const void *, size_t, int);
extern ssize_t (*r_read)(int, void *, size_t);
extern ssize_t (*r_write)(int, const void *, size_t);
extern int (*r_dup)(int);
extern int (*r_dup2)(int, int);
extern int (*r_dup3)(int, int, int);
extern int (*r_fcntl)(int, int, ...);
extern long (*r_syscall)(long, ...);
extern int (*hc_socket)(unsigned, int, int, int, uintptr_t *, int *);
extern int (*hc_close)(uintptr_t, int *);
extern int (*hc_bind)(uintptr_t, const void *, int, int *);
extern int (*hc_listen)(uintptr_t, int, int *);
extern int (*hc_connect)(uintptr_t, const void *, int, int *);
extern int (*hc_shutdown)(uintptr_t, int, int *);
extern int (*hc_name)(uintptr_t, int, void *, int *, int *);
extern int (*hc_getsockopt)(uintptr_t, int, int, void *, int *, int *);
extern int (*hc_setsockopt)(uintptr_t, int, int, const void *, int, int *);

/* the descriptor table and the chain (preload.c) */
extern unsigned pl_cat_tcp, pl_cat_udp, pl_cat_tcp6, pl_cat_udp6;
void *pl_acceptor(void *arg);
void pl_connect_done(lsock *l, int ok, int err);
void *pl_connector(void *arg);
ssize_t pl_dgram_recv(int fd, struct msghdr *msg, int flags);
ssize_t pl_dgram_send(lsock *l, const struct msghdr *msg, int flags);
void pl_dgram_start(lsock *l);
int pl_fail_wsa(int e);
void pl_from_win(struct sockaddr_storage *ss, int wlen, struct sockaddr *sa, socklen_t *len);
lsock *pl_get(int fd);
extern __thread int pl_inside;
void pl_load_real(void);
int pl_map_set(int fd, lsock *l);
extern pid_t pl_owner_pid;
void pl_release(lsock *l);
void pl_say(const char *fmt, ...);
int pl_spawn(void *(*fn)(void *), lsock *l);
int pl_start(void);
void pl_start_pumps(lsock *l);
int pl_to_win(const struct sockaddr *sa, socklen_t len, struct sockaddr_storage *out);
int pl_tracked(int fd);
int pl_foreign(void);                 /* a fork or vfork child of the chain's process */
int pl_foreign_fd(int fd);            /* fd is lwsp's and this is such a child */
int pl_served(int domain, int type);
extern int pl_debug_on;

#define DBG(...) do { if (pl_debug_on) pl_say(__VA_ARGS__); } while (0)
#endif
