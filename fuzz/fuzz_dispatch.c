/*
 * fuzz_dispatch.c - libFuzzer target for the 30 WSP entries of a Lua
 * provider (memnet): each input is a sequence of calls whose arguments --
 * handles, lengths, flags, WSABUF arrays, socket addresses, fd_sets, option
 * and ioctl buffers, address strings -- come from the input.  Pointers
 * always point into real buffers and lengths never exceed them (the caller's
 * side of the contract); everything else is fair game.  The provider runs in
 * this process against lwsp's own host, started once.  The extension
 * functions (spi_ext.h) are got with SIO_GET_EXTENSION_FUNCTION_POINTER
 * (known and fuzzed GUIDs, short buffers) and called with fuzzed arguments;
 * a memnet socket has no layer below, so none of them may go pending.
 */
#include "host.h"
#include "spi_ext.h"
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

LWSP_EXPORT int WSPAPI WSPStartup(WORD, LPWSPDATA, LPWSAPROTOCOL_INFOW, WSPUPCALLTABLE, LPWSPPROC_TABLE);

/* The runtime and the host in one program: host/host.c and host/kernel.c
 * over the runtime's own log and trace, with the tie host/link.c would set. */
const lwsp_runtime_link *host_rt;

static WSPPROC_TABLE P;
static WSAPROTOCOL_INFOW INFO;
static SOCKET pool[16];

typedef struct { const uint8_t *d; size_t n; } in_t;
static uint32_t u32(in_t *in) { uint32_t v = 0; size_t k = in->n < 4 ? in->n : 4; memcpy(&v, in->d, k); in->d += k; in->n -= k; return v; }
static uint8_t u8(in_t *in) { uint8_t v = in->n ? in->d[0] : 0; if (in->n) { in->d++; in->n--; } return v; }
static size_t bytes(in_t *in, void *out, size_t max) {
  size_t k = u8(in) % (max + 1);
  if (k > in->n) k = in->n;
  memcpy(out, in->d, k);
  in->d += k;
  in->n -= k;
  return k;
}
static SOCKET handle(in_t *in) {
  uint8_t b = u8(in);
  return b < 200 ? pool[b % 16] : (SOCKET)u32(in);
}

static void setup(void) {
  char dir[] = "/tmp/lwsp-fuzz-XXXXXX", path[256], err[256];
  WSPDATA data;
  GUID g = {0x6C777370, 0x4655, 0x5A5A, {1, 2, 3, 4, 5, 6, 7, 8}};
  char cwd[1024];
  if (!mkdtemp(dir) || !getcwd(cwd, sizeof cwd)) abort();
  setenv("LWSP_REGISTRY", dir, 1);
  setenv("LWSP_LOG", "off", 1);
  snprintf(path, sizeof path, "%s/examples/memnet.lua", cwd);
  if (!lwsp_registry_set(&g, path, 0, err, sizeof err)) abort();
  {
    /* the host's tie to the runtime, set as luaopen_lwsp_host sets it in the host module */
    lua_State *T = luaL_newstate();
    lwsp_push_link(T);
    host_rt = lua_touserdata(T, -1);
    lua_close(T);
  }
  host_init();
  memset(&INFO, 0, sizeof INFO);
  INFO.ProviderId = g;
  INFO.iVersion = 2;
  INFO.iAddressFamily = AF_INET;
  INFO.iSocketType = SOCK_STREAM;
  INFO.iProtocol = IPPROTO_TCP;
  INFO.iMaxSockAddr = INFO.iMinSockAddr = 16;
  lwsp_mutex_lock(&host_lock);
  INFO.dwCatalogEntryId = host_next_catalog_id();
  INFO.ProtocolChain.ChainLen = 1;
  INFO.ProtocolChain.ChainEntries[0] = INFO.dwCatalogEntryId;
  host_catalog_add(&INFO, path);
  lwsp_mutex_unlock(&host_lock);
  setenv("LUA_PATH", "", 1);
  {
    char lp[2048];
    snprintf(lp, sizeof lp, "%s/lua/?.lua;%s/lua/?/init.lua;;", cwd, cwd);
    setenv("LUA_PATH", lp, 1);
  }
  if (WSPStartup(0x0202, &data, &INFO, host_upcalls, &P) != 0) abort();
}

static void fresh_pool(void) {
  for (int i = 0; i < 16; i++) {
    INT e = 0;
    uint32_t one = 1;
    DWORD got = 0;
    if (pool[i]) P.lpWSPCloseSocket(pool[i], &e);
    pool[i] = P.lpWSPSocket(i % 3 == 2 ? AF_INET6 : AF_INET, i % 2 ? SOCK_DGRAM : SOCK_STREAM, 0, &INFO, 0, 0, &e);
    if (pool[i] != INVALID_SOCKET) P.lpWSPIoctl(pool[i], FIONBIO, &one, 4, NULL, 0, &got, NULL, NULL, NULL, &e);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
  static int ready;
  in_t in = {d, n};
  if (!ready) { setup(); ready = 1; }
  fresh_pool();
  while (in.n > 0) {
    INT err = 0;
    char buf[512], out[512];
    SOCKADDR_STORAGE ss;
    int len;
    DWORD got = 0, flags = 0;
    WSABUF wb[4];
    uint8_t op = u8(&in) % 31;
    SOCKET s = handle(&in);
    memset(&ss, 0, sizeof ss);
    switch (op) {
    case 0: len = (int)bytes(&in, &ss, sizeof ss); P.lpWSPBind(s, (struct sockaddr *)&ss, len, &err); break;
    case 1: len = (int)bytes(&in, &ss, sizeof ss); P.lpWSPConnect(s, (struct sockaddr *)&ss, len, NULL, NULL, NULL, NULL, &err); break;
    case 2: P.lpWSPListen(s, (int)u32(&in), &err); break;
    case 3: { SOCKET a; len = (int)(u8(&in) % (sizeof ss + 1)); a = P.lpWSPAccept(s, (struct sockaddr *)&ss, &len, NULL, 0, &err);
              if (a != INVALID_SOCKET) pool[u8(&in) % 16] = a; break; }
    case 4: case 5: {
      DWORD nb = u8(&in) % 5;
      size_t used = 0;
      for (DWORD i = 0; i < nb; i++) { size_t k = bytes(&in, buf + used, 100); wb[i].buf = buf + used; wb[i].len = (ULONG)k; used += k; }
      if (op == 4) P.lpWSPSend(s, wb, nb, &got, u8(&in), NULL, NULL, NULL, &err);
      else { len = (int)bytes(&in, &ss, sizeof ss); P.lpWSPSendTo(s, wb, nb, &got, u8(&in), (struct sockaddr *)&ss, len, NULL, NULL, NULL, &err); }
      break;
    }
    case 6: case 7: {
      DWORD nb = u8(&in) % 5;
      for (DWORD i = 0; i < nb; i++) { wb[i].buf = out + i * 128; wb[i].len = u8(&in) % 129; }
      flags = u8(&in) & 3;
      if (op == 6) P.lpWSPRecv(s, wb, nb, &got, &flags, NULL, NULL, NULL, &err);
      else { len = (int)(u8(&in) % (sizeof ss + 1)); P.lpWSPRecvFrom(s, wb, nb, &got, &flags, (struct sockaddr *)&ss, &len, NULL, NULL, NULL, &err); }
      break;
    }
    case 8: len = (int)(u8(&in) % (sizeof ss + 1)); P.lpWSPGetSockName(s, (struct sockaddr *)&ss, &len, &err); break;
    case 9: len = (int)(u8(&in) % (sizeof ss + 1)); P.lpWSPGetPeerName(s, (struct sockaddr *)&ss, &len, &err); break;
    case 10: { int lvl = u8(&in) & 1 ? SOL_SOCKET : (int)u32(&in), name = (int)u32(&in) & 0x7fff; len = (int)(u8(&in) % 200);
               P.lpWSPGetSockOpt(s, lvl, name, out, &len, &err); break; }
    case 11: { int lvl = u8(&in) & 1 ? SOL_SOCKET : (int)u32(&in), name = (int)u32(&in) & 0x7fff; len = (int)bytes(&in, buf, 64);
               P.lpWSPSetSockOpt(s, lvl, name, buf, len, &err); break; }
    case 12: { DWORD code = u32(&in); size_t inl = bytes(&in, buf, 64); DWORD cbout = u8(&in) % 200;
               if (code == FIONBIO && inl >= 4) memset(buf, 1, 4);   /* stay non-blocking */
               P.lpWSPIoctl(s, code, buf, (DWORD)inl, out, cbout, &got, NULL, NULL, NULL, &err); break; }
    case 13: P.lpWSPShutdown(s, (int)(u8(&in) % 4), &err); break;
    case 14: { wsp_fd_set r, w; wsp_timeval tv = {0, 0};
               r.fd_count = u8(&in) % 70; w.fd_count = u8(&in) % 8;
               for (unsigned i = 0; i < r.fd_count && i < WSP_FD_SETSIZE; i++) r.fd_array[i] = handle(&in);
               for (unsigned i = 0; i < w.fd_count; i++) w.fd_array[i] = handle(&in);
               P.lpWSPSelect(0, &r, &w, NULL, &tv, &err); break; }
    case 15: { WSAEVENT ev = host_upcalls.lpWPUCreateEvent(&err); P.lpWSPEventSelect(s, u8(&in) & 1 ? ev : (WSAEVENT)(uintptr_t)u32(&in), (LONG)u32(&in), &err);
               WSANETWORKEVENTS ne; P.lpWSPEnumNetworkEvents(s, ev, &ne, &err); P.lpWSPEventSelect(s, NULL, 0, &err);
               host_upcalls.lpWPUCloseEvent(ev, &err); break; }
    case 16: { WSANETWORKEVENTS ne; P.lpWSPEnumNetworkEvents(s, (WSAEVENT)(uintptr_t)(u8(&in) ? u32(&in) : 0), &ne, &err); break; }
    case 17: { WCHAR w[40]; DWORD wl = u8(&in) % 41; len = (int)bytes(&in, &ss, sizeof ss);
               P.lpWSPAddressToString((LPSOCKADDR)&ss, (DWORD)len, &INFO, w, &wl, &err); break; }
    case 18: { WCHAR w[40]; size_t k = bytes(&in, w, sizeof w - 2); w[k / 2] = 0; len = (int)(u8(&in) % (sizeof ss + 1));
               P.lpWSPStringToAddress(w, (INT)(u8(&in) % 30), &INFO, (LPSOCKADDR)&ss, &len, &err); break; }
    case 19: { WSAPROTOCOL_INFOW pi; P.lpWSPDuplicateSocket(s, u32(&in), &pi, &err); break; }
    case 20: { WSAOVERLAPPED ov; memset(&ov, 0, sizeof ov); ov.Internal = u8(&in) & 1 ? WSS_OPERATION_IN_PROGRESS : 0;
               ov.OffsetHigh = u8(&in); P.lpWSPGetOverlappedResult(s, &ov, &got, FALSE, &flags, &err); break; }
    case 21: { SOCKET ns = P.lpWSPSocket((int)(u8(&in) % 30), (int)(u8(&in) % 6), (int)u8(&in), &INFO, 0, 0, &err);
               if (ns != INVALID_SOCKET) { uint32_t one = 1; P.lpWSPIoctl(ns, FIONBIO, &one, 4, NULL, 0, &got, NULL, NULL, NULL, &err);
                                           pool[u8(&in) % 16] = ns; } break; }
    case 22: P.lpWSPCloseSocket(s, &err); break;
    case 23: { QOS q; WSABUF name = {(ULONG)bytes(&in, buf, 32), buf}; P.lpWSPGetQOSByName(s, &name, &q, &err); break; }
    case 24: { uintptr_t w = host_new_window();
               P.lpWSPAsyncSelect(s, u8(&in) & 1 ? (HWND)w : (HWND)(uintptr_t)u32(&in), u32(&in), (LONG)u32(&in), &err);
               P.lpWSPAsyncSelect(s, NULL, 0, 0, &err); host_close_object(w); break; }
    case 25: P.lpWSPCancelBlockingCall(&err); break;
    case 26: { len = (int)bytes(&in, &ss, sizeof ss); WSABUF cd = {(ULONG)bytes(&in, buf, 32), buf};
               P.lpWSPJoinLeaf(s, (struct sockaddr *)&ss, len, &cd, NULL, NULL, NULL, u32(&in), &err); break; }
    case 27: { WSABUF dd = {u8(&in) % 129, out}; P.lpWSPRecvDisconnect(s, u8(&in) & 1 ? &dd : NULL, &err); break; }
    case 28: { WSABUF dd = {(ULONG)bytes(&in, buf, 64), buf}; P.lpWSPSendDisconnect(s, u8(&in) & 1 ? &dd : NULL, &err); break; }
    case 29: { GUID g = lwsp_ext_guids[u8(&in) % LWSP_EXT_COUNT]; DWORD cbin = u8(&in) % 20, cbout = u8(&in) % 12;
               memcpy(buf, &g, sizeof g);
               if (u8(&in) & 1) bytes(&in, buf, 16);
               P.lpWSPIoctl(s, u8(&in) & 1 ? SIO_GET_EXTENSION_FUNCTION_POINTER : SIO_BSP_HANDLE_SELECT + (u8(&in) % 8),
                            buf, cbin, out, cbout, &got, NULL, NULL, NULL, &err); break; }
    case 30: {
      int ext = u8(&in) % LWSP_EXT_COUNT;
      GUID g = lwsp_ext_guids[ext];
      void (*fn)(void) = NULL;
      WSAOVERLAPPED ov;
      WSAMSG m;
      TRANSMIT_FILE_BUFFERS tb = {buf, u8(&in) % 64, buf + 64, u8(&in) % 64};
      TRANSMIT_PACKETS_ELEMENT el[2];
      struct sockaddr *la, *ra;
      INT ll, rl;
      SOCKET h2 = handle(&in);
      memset(&ov, 0, sizeof ov);
      memset(el, 0, sizeof el);
      if (P.lpWSPIoctl(s, SIO_GET_EXTENSION_FUNCTION_POINTER, &g, sizeof g, (LPVOID)&fn, sizeof fn, &got, NULL, NULL, NULL, &err) != 0 || !fn) break;
      len = (int)bytes(&in, &ss, sizeof ss);
      el[0].dwElFlags = u8(&in) % 8; el[0].cLength = u8(&in) % 64; el[0].pBuffer = buf;
      wb[0].buf = out; wb[0].len = u8(&in) % 128;
      memset(&m, 0, sizeof m);
      m.name = (LPSOCKADDR)&ss; m.namelen = len; m.lpBuffers = wb; m.dwBufferCount = u8(&in) % 2;
      m.Control.buf = out + 128; m.Control.len = u8(&in) % 64;
      switch (ext) {
      case 0: ((LPFN_ACCEPTEX)fn)(s, h2, out, u8(&in) % 64, u8(&in) % 64, u8(&in) % 64, &got, u8(&in) & 1 ? &ov : NULL); break;
      case 1: ((LPFN_GETACCEPTEXSOCKADDRS)fn)(out, u8(&in) % 64, u8(&in) % 64, u8(&in) % 64, &la, &ll, &ra, &rl); break;
      case 2: ((LPFN_CONNECTEX)fn)(s, (struct sockaddr *)&ss, len, buf, u8(&in) % 64, &got, u8(&in) & 1 ? &ov : NULL); break;
      case 3: ((LPFN_DISCONNECTEX)fn)(s, u8(&in) & 1 ? &ov : NULL, u8(&in) % 4, u8(&in) % 2); break;
      case 4: ((LPFN_TRANSMITFILE)fn)(s, NULL, u8(&in), u8(&in), u8(&in) & 1 ? &ov : NULL, u8(&in) & 1 ? &tb : NULL, u8(&in) % 64); break;
      case 5: ((LPFN_TRANSMITPACKETS)fn)(s, el, u8(&in) % 2, u8(&in), u8(&in) & 1 ? &ov : NULL, u8(&in) % 8); break;
      case 6: ((LPFN_WSARECVMSG)fn)(s, &m, &got, u8(&in) & 1 ? &ov : NULL, NULL); break;
      case 7: ((LPFN_WSASENDMSG)fn)(s, &m, u8(&in) & 3, &got, u8(&in) & 1 ? &ov : NULL, NULL); break;
      }
      break;
    }
    }
  }
  return 0;
}
