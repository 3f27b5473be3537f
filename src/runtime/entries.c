/*
 * entries.c - the catalog as a provider sees it: every entry of the host that
 * supplied the upcall table, read with the WSCEnumProtocols its module exports
 * (ws2_32's on Windows, lwsp's host module's elsewhere), one entry by id, and
 * the entry a layer registers its sockets' handles under.
 */
#include "runtime.h"
#include <stdlib.h>
#include <string.h>

/* Every entry of the catalog of the host that supplied the upcall table
 * (malloc'd, *n of them), read with the WSCEnumProtocols its module exports
 * (ws2_32's on Windows, lwsp's host module's elsewhere).  NULL if unknown; who
 * names the log line saying why (NULL: no line). */
typedef int (WSPAPI *enum_protocols_fn)(LPINT, LPWSAPROTOCOL_INFOW, LPDWORD, LPINT);
static WSAPROTOCOL_INFOW *catalog_all(const WSPUPCALLTABLE *up, const char *who, int *n) {
  void (*f)(void);
  enum_protocols_fn fn;
  WSAPROTOCOL_INFOW *all = NULL;
  DWORD len = 0;
  char why[600];
  *n = 0;
  if (!(f = lwsp_host_sym(up, "WSCEnumProtocols", why, sizeof why))) {
    if (who) lwsp_log(who, "cannot read the host's catalog: %s", why);
    return NULL;
  }
  memcpy(&fn, &f, sizeof fn);
  for (int tries = 0; tries < 4; tries++) {
    INT err = 0;
    int got = fn(NULL, all, &len, &err);
    if (got != SOCKET_ERROR) { *n = got; return all; }
    free(all);
    all = NULL;
    if (err != WSAENOBUFS || !len || !(all = malloc(len))) break;
  }
  free(all);
  return NULL;
}

/* A catalog entry of that host; 0 if unknown. */
int rt_catalog_info(const WSPUPCALLTABLE *up, const char *who, DWORD id, WSAPROTOCOL_INFOW *info) {
  int n, found = 0;
  WSAPROTOCOL_INFOW *all = catalog_all(up, who, &n);
  for (int i = 0; all && i < n && !found; i++)
    if (all[i].dwCatalogEntryId == id) { *info = all[i]; found = 1; }
  free(all);
  return found;
}

/* The entry a layer registers its sockets' handles under, as Microsoft's
 * layered sample does (WPUCreateSocketHandle with its own layered entry's id):
 * the chain pi names when this provider is its top layer; below the top, the
 * catalog entry of this provider whose chain is the rest of pi's from this
 * layer down.  pi's own id when there is no such entry (a chain installed
 * without one for each layer). */
DWORD lwsp_own_entry(lwsp_inst *I, const WSAPROTOCOL_INFOW *pi) {
  const WSAPROTOCOLCHAIN *c = &pi->ProtocolChain;
  WSAPROTOCOL_INFOW *all;
  DWORD id = pi->dwCatalogEntryId;
  int pos = -1, n = 0;
  if (!I->layer_id || c->ChainLen < 3 || c->ChainLen > MAX_PROTOCOL_CHAIN) return id;
  for (int i = 1; i < c->ChainLen && pos < 0; i++)
    if (c->ChainEntries[i] == I->layer_id) pos = i;
  if (pos < 0 || !(all = catalog_all(&I->up, NULL, &n))) return id;
  for (int i = 0; i < n; i++) {
    const WSAPROTOCOLCHAIN *e = &all[i].ProtocolChain;
    if (e->ChainLen != c->ChainLen - pos || all[i].iAddressFamily != pi->iAddressFamily ||
        all[i].iSocketType != pi->iSocketType || all[i].iProtocol != pi->iProtocol)
      continue;
    if (!memcmp(e->ChainEntries, c->ChainEntries + pos, (size_t)e->ChainLen * sizeof e->ChainEntries[0])) {
      id = all[i].dwCatalogEntryId;
      break;
    }
  }
  free(all);
  return id;
}
