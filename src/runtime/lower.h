/*
 * lower.h - the layer below a layered provider, as lower.c (loading, the
 * lwsp.lower methods, inherited calls) and poller.c (the service thread's
 * watch of the lower sockets) share it.
 */
#ifndef LWSP_LOWER_H
#define LWSP_LOWER_H
#include "runtime.h"

#define LOWER_MT "lwsp.lower"

typedef struct lreg { SOCKET h; int dir; } lreg;                 /* dir: 0 read, 1 write */
typedef struct lwatch { SOCKET h; lwsp_sock *so; uint32_t gen; int listening, connecting; } lwatch;

typedef struct lwsp_lower {
  struct lwsp_lower *next;
  lwsp_inst *I;
  DWORD chain;                 /* the chain entry this lower serves */
  WSAPROTOCOL_INFOW given;     /* that entry as WSPSocket was given it (when given.ProtocolChain.ChainLen) */
  void *lib;
  WSPPROC_TABLE procs;
  WSPDATA data;
  WSAPROTOCOL_INFOW pass;      /* the protocol info given to the lower WSPStartup and WSPSocket */
  int started;
  int foreign;                 /* not an lwsp Lua provider: lwsp traces the calls down itself */
  char lname[39];              /* the next layer's GUID, for the trace */
  lreg *regs;
  size_t nregs, capregs;
  lwatch *watches;
  size_t nwatches, capwatches;
} lwsp_lower;

/* The Lua face of a lower layer; the tag lets the hot path recognise it
 * without luaL_checkudata's registry lookup (scripts cannot forge userdata
 * contents, and a mismatch falls back to the full check). */
#define LOWER_TAG 0x6c777370206c6f77ULL
typedef struct { unsigned long long tag; lwsp_lower *low; } lower_ud;

/* Calls down with every hold of the provider lock released. */
#define DOWN(I, stmt) do { \
    int d_ = (I)->depth; \
    rt_budget_saved b_ = rt_budget_release(I); \
    (I)->depth = 0; \
    for (int k_ = 0; k_ < d_; k_++) { lwsp_mutex_unlock(&(I)->lock); } \
    stmt; \
    for (int k_ = 0; k_ < d_; k_++) { lwsp_mutex_lock(&(I)->lock); } \
    (I)->depth = d_; \
    rt_budget_relocked(I, b_); \
  } while (0)

/* A call down, traced when the layer below is a C provider (a Lua one traces itself). */
#define TRACED_DOWN(spi_, sock, args, failed, expr) do { \
    int trd_ = lwsp_tracing && low->foreign; \
    if (trd_) lwsp_trace_enter(I->name, low->lname, (spi_), (SOCKET)(sock), (args)); \
    DOWN(I, expr); \
    if (trd_) lwsp_trace_leave(I->name, low->lname, (spi_), (SOCKET)(sock), (failed) ? err : 0, NULL); \
  } while (0)

/* The same for a call down that returns a new socket h: its result is that handle. */
#define TRACED_DOWN_H(spi_, sock, args, expr) do { \
    int trd_ = lwsp_tracing && low->foreign; \
    char res_[32] = ""; \
    if (trd_) lwsp_trace_enter(I->name, low->lname, (spi_), (SOCKET)(sock), (args)); \
    DOWN(I, expr); \
    if (trd_ && h != INVALID_SOCKET) snprintf(res_, sizeof res_, "s%llu", (unsigned long long)h); \
    if (trd_) lwsp_trace_leave(I->name, low->lname, (spi_), (SOCKET)(sock), h == INVALID_SOCKET ? err : 0, res_); \
  } while (0)

#endif
