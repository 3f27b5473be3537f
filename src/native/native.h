/*
 * native.h - what the native base provider's files share (nv_), and the
 * contract of each shared function.
 *
 *   native.c      the provider's state and lifetime (WSPStartup, WSPCleanup),
 *                 socket slots and handles, blocking waits, network events,
 *                 the overlapped machinery and the workers that complete it
 *   native_wsp.c  the WSP entries (the procedure table)
 *   native_ext.c  the extension functions (AcceptEx, ConnectEx, ...; its own
 *                 helpers, all static, are nx_)
 *   native_os*.c  the OS's sockets behind Windows values (nos_, native_os.h):
 *                 the only files that see the OS's socket headers
 *
 * One lock (nv.lock) guards the state, every slot and every operation; a
 * function says when it is called without it or releases it.
 */
#ifndef LWSP_NATIVE_H
#define LWSP_NATIVE_H
#include "common.h"
#include "native_os.h"
#include "netev.h"
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

#define NV_WHO "native"   /* the log's name for this provider */

/* A socket's slot. */
typedef struct nv_sock {
  uint32_t gen, idx;
  SOCKET h;
  long long fd;
  int af, type;
  DWORD catalog;
  int nonblocking, listening, connecting;
  int peer;                    /* connected, or a connect under way, once: a stream
                                  send failing with EPIPE before that is WSAENOTCONN */
  lwsp_netev ev;               /* its network events (spi/netev.h) */
  int closed_seen;
  int queued[2];               /* overlapped sends and receives waiting in nv.ops */
  uint32_t blocked[2];         /* the worker round in which the first of them could not finish */
  int inflight;                /* Windows: overlapped I/O of this socket still in Winsock */
  int closing;                 /* Windows: its Winsock socket closed to cancel that I/O */
  uint32_t ov_os, ov_polled;   /* overlapped sends and receives handed to the OS / served by the worker */
  int busy;                    /* threads in a send or receive of it with the lock released */
  int io[2];                   /* a send [NV_OP_SEND] or receive [NV_OP_RECV] of it is in its system call */
  int io_waiting;              /* calls waiting for their turn at it */
  int dead;                    /* closed while busy: the last of them closes fd and frees the slot */
  int ext_reused;              /* a fresh OS socket after DisconnectEx(TF_REUSE_SOCKET) (native_ext.c) */
  int shared;                  /* its OS socket has another descriptor (WSPDuplicateSocket): never shut down on close */
} nv_sock;

/* An overlapped operation. */
enum { NV_OP_SEND, NV_OP_RECV };
typedef struct nv_ext nv_ext;  /* an extension function's state (native_ext.c) */
typedef struct nv_op {
  struct nv_op *next;
  nv_sock *so;
  uint32_t gen;
  int kind;
  WSABUF bufs[8];
  DWORD nbufs;
  size_t done;                 /* bytes sent so far (sends complete whole) */
  DWORD flags;
  SOCKADDR_STORAGE to;
  int tolen;
  struct sockaddr *from;
  LPINT fromlen;
  LPWSAOVERLAPPED ov;
  LPWSAOVERLAPPED_COMPLETION_ROUTINE routine;
  WSATHREADID tid;
  nv_ext *x;                   /* an extension function's operation, or NULL */
} nv_op;

/* The provider's state (native.c). */
typedef struct nv_state {
  lwsp_mutex lock;
  int startups;
  WSPUPCALLTABLE up;
  WSAPROTOCOL_INFOW info;
  LPWPUCOMPLETEOVERLAPPEDREQUEST complete;
  nv_sock **chunks;
  uint32_t nsocks, nchunks, nfree;
  uint32_t *freelist;
  uint32_t gen;
  nv_op *ops;                  /* in the order they were posted */
  uint32_t round;
  lwsp_thread *worker;
  int stop;
  long long pipe[2];
  lwsp_cond cond;              /* inflight counts dropping */
#ifdef _WIN32
  nv_op *inflight;             /* operations running as Winsock overlapped I/O */
  lwsp_thread *cworker;        /* completes them from the port */
  int cstop;
#endif
} nv_state;
extern nv_state nv;

#define NV_ERRP INT errp_; if (!err) err = &errp_   /* an entry's lpErrno, NULL or not */
#define NV_UNLOCK() lwsp_mutex_unlock(&nv.lock)
static inline int nv_fail(LPINT err, int code) { *err = code; return SOCKET_ERROR; }

/* ---- native.c ---------------------------------------------------------------------- */
/* Slots (under the lock): the i-th; a new one (NULL when out of memory) with
 * a new generation and fd -1; a slot back to the free list. */
nv_sock *nv_at(uint32_t i);
nv_sock *nv_sock_alloc(void);
void nv_dup_forget_all(void);   /* the last WSPCleanup's: duplicates' references never used give their OS sockets back */
void nv_sock_free(nv_sock *so);
/* The socket behind a handle, or NULL (under the lock). */
nv_sock *nv_find(SOCKET s);
/* WPUCreateSocketHandle for the slot (its handle in so->h), or INVALID_SOCKET. */
SOCKET nv_new_handle(nv_sock *so, LPINT err);
/* WPUCloseSocketHandle now, or once the handle's last completion routine has
 * run (under the lock). */
void nv_close_handle(SOCKET h);
/* Under the lock: one thread fewer in a call of so with the lock released;
 * the last one out of a socket closed meanwhile closes its fd and frees it. */
void nv_unbusy(nv_sock *so);
/* Without the lock: waits until fd is ready for ev, polling the blocking
 * hook: 0, or -WSAEINTR (WSPCancelBlockingCall, or so closed meanwhile). */
int nv_wait_fd(nv_sock *so, long long fd, short ev);
/* WSPCancelBlockingCall: 1 when this thread was in nv_wait_fd (it now stops), 0 otherwise. */
int nv_cancel_blocking(void);
/* Wakes the worker: it polls again what it waits for. */
void nv_poke(void);

/* Overlapped completions: marks ov done and queues the routine's APC or
 * completes through WPUCompleteOverlappedRequest (without the lock). */
void nv_notify(SOCKET h, LPWSAOVERLAPPED ov, LPWSAOVERLAPPED_COMPLETION_ROUTINE routine, LPWSATHREADID tid,
               DWORD error, DWORD bytes, DWORD flags);
size_t nv_total_of(const WSABUF *b, DWORD n);
/* One attempt at a send of the buffers from *done on: 1 finished (*done
 * bytes), 0 to wait, or -error. */
long nv_try_send(nv_sock *so, const WSABUF *b, DWORD nb, size_t *done, DWORD flags, const void *to, int tolen,
                 int whole);
/* One attempt at a receive into the buffers: 1 done (*got), 0 to wait, or
 * -error (-WSAEMSGSIZE with *got and MSG_PARTIAL set). */
long nv_try_recv(nv_sock *so, const WSABUF *b, DWORD nb, DWORD *flags, struct sockaddr *from, LPINT fromlen,
                 DWORD *got);
/* A new operation record (NULL when out of memory); ov marked in progress. */
nv_op *nv_op_new(nv_sock *so, int kind, LPWSAOVERLAPPED ov, LPWSAOVERLAPPED_COMPLETION_ROUTINE routine,
                 LPWSATHREADID tid);
/* Appends op to the worker's queue (under the lock). */
void nv_op_post(nv_op *op);
/* Completes op (error, bytes, flags) and frees it; op is off the queue. */
void nv_op_finish(nv_op *op, int error, DWORD bytes, DWORD flags);
/* Queues a send or receive that could not finish at once (under the lock):
 * SOCKET_ERROR with WSA_IO_PENDING, or WSAENOBUFS. */
int nv_queue_op(nv_sock *so, int kind, LPWSABUF b, DWORD nb, size_t done, DWORD flags, const struct sockaddr *to,
                int tolen, struct sockaddr *from, LPINT fromlen, LPWSAOVERLAPPED ov,
                LPWSAOVERLAPPED_COMPLETION_ROUTINE routine, LPWSATHREADID tid, LPINT err);
#ifdef _WIN32
/* Under the lock (released here): the OS's own overlapped send or receive for
 * the caller's operation; the entry's return value. */
int nv_os_overlapped(nv_sock *so, int kind, LPWSABUF b, DWORD nb, LPDWORD count, LPDWORD flagsp, DWORD flags,
                     const struct sockaddr *to, int tolen, struct sockaddr *from, LPINT fromlen,
                     LPWSAOVERLAPPED ov, LPWSAOVERLAPPED_COMPLETION_ROUTINE routine, LPWSATHREADID tid, LPINT err);
/* Under the lock: cancels so's Winsock I/O (by closing its fd) and waits until
 * every operation has been completed.  1 when fd was closed. */
int nv_os_drain(nv_sock *so);
#endif
int WSPAPI nv_cleanup(LPINT err);

/* ---- native_wsp.c ------------------------------------------------------------------ */
extern const WSPPROC_TABLE nv_procs;
/* WSPSend and WSPSendTo (and WSASendMsg) with a destination or none. */
int nv_send_entry(SOCKET s, LPWSABUF b, DWORD nb, LPDWORD sent, DWORD flags, const struct sockaddr *to, int tolen,
                  LPWSAOVERLAPPED ov, LPWSAOVERLAPPED_COMPLETION_ROUTINE routine, LPWSATHREADID tid, LPINT err);

/* ---- native_ext.c ------------------------------------------------------------------ */
/* The worker's view of an extension operation (under the lock): what it
 * waits for (events, and the fd in *fd); one step (1 done, *bytes and
 * *flags set; 0 to wait; -error); its state freed. */
short nv_ext_events(nv_op *op, long long *fd);
long nv_ext_step(nv_op *op, DWORD *bytes, DWORD *flags);
void nv_ext_free(nv_op *op);
/* The ioctls and socket options of the extension functions (under the
 * lock): 1 when code or name is one of them (*r: 0 or -error), 0 otherwise. */
int nv_ext_ioctl(nv_sock *so, DWORD code, LPVOID in, DWORD cbin, LPVOID out, DWORD cbout, LPDWORD ret, int *r);
int nv_ext_setsockopt(nv_sock *so, int level, int name, const char *val, int len, int *r);
#endif
