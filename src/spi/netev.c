/*
 * netev.c - a socket's network events (netev.h).  No Lua.
 */
#include "netev.h"
#include <string.h>

int lwsp_netev_index(LONG bit) {
  for (int i = 0; i < FD_MAX_EVENTS; i++)
    if (bit == (1L << i)) return i;
  return -1;
}

int lwsp_netev_record(lwsp_netev *ne, LONG bit, int error) {
  int i = lwsp_netev_index(bit);
  if (i < 0 || !ne->mode || !(ne->mask & bit) || !(ne->enabled & bit)) return 0;
  ne->enabled &= ~bit;
  ne->recorded |= bit;
  ne->error[i] = error;
  return 1;
}

int lwsp_netev_deliver(const lwsp_netev *ne, const WSPUPCALLTABLE *up, SOCKET h, LONG bit, int error, INT *e) {
  if (ne->mode == 1) return up->lpWPUSetEvent(ne->event, e) != FALSE;
  if (ne->mode == 2) return up->lpWPUPostMessage(ne->hwnd, ne->msg, (WPARAM)h, LWSP_SELECTREPLY(bit, error)) != FALSE;
  return 1;
}

int lwsp_netev_select(lwsp_netev *ne, int mode, WSAEVENT ev, HWND hwnd, UINT msg, LONG mask) {
  if ((mask & ~(LONG)FD_ALL_EVENTS) || (mask && mode == 1 && ev == WSA_INVALID_EVENT) || (mask && mode == 2 && !hwnd))
    return WSAEINVAL;
  ne->mode = mask ? mode : 0;
  ne->mask = mask;
  ne->event = ev;
  ne->hwnd = hwnd;
  ne->msg = msg;
  ne->recorded = 0;
  memset(ne->error, 0, sizeof ne->error);
  ne->enabled = FD_ALL_EVENTS;
  return 0;
}

int lwsp_netev_enum(lwsp_netev *ne, const WSPUPCALLTABLE *up, WSAEVENT ev, LPWSANETWORKEVENTS out) {
  INT e = 0;
  if (ev != WSA_INVALID_EVENT && !up->lpWPUResetEvent(ev, &e)) return WSAEINVAL;
  out->lNetworkEvents = ne->recorded;
  for (int i = 0; i < FD_MAX_EVENTS; i++) out->iErrorCode[i] = (ne->recorded & (1L << i)) ? ne->error[i] : 0;
  ne->recorded = 0;
  return 0;
}
