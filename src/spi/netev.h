/*
 * netev.h - a socket's network events (WSPEventSelect, WSPAsyncSelect,
 * WSPEnumNetworkEvents): what the application selected, what may be
 * recorded now (the re-enabling rules), what was recorded and with which
 * errors, and how the application is told.  No Lua, no OS headers: the
 * runtime (events.c) and the native base provider (native.c) each keep one
 * per socket, under their own lock, and decide themselves when a condition
 * occurs and what re-enables an event.
 */
#ifndef LWSP_NETEV_H
#define LWSP_NETEV_H
#include "spi.h"

typedef struct lwsp_netev {
  int mode;                    /* 0 none, 1 WSPEventSelect, 2 WSPAsyncSelect */
  LONG mask;                   /* the selected FD_* events */
  LONG enabled;                /* events that may be recorded now */
  LONG recorded;               /* recorded, not yet enumerated */
  int error[FD_MAX_EVENTS];    /* each recorded event's error */
  WSAEVENT event;              /* mode 1 */
  HWND hwnd;                   /* mode 2 */
  UINT msg;
} lwsp_netev;

/* FD_x's bit number, or -1 for anything but one FD_* bit. */
int lwsp_netev_index(LONG bit);
/* Records bit with its error when it is selected and enabled, and disables it
 * until it is re-enabled: 1 when the application is to be told
 * (lwsp_netev_deliver), 0 when nothing was recorded. */
int lwsp_netev_record(lwsp_netev *ne, LONG bit, int error);
/* Tells the application of bit: WPUSetEvent (mode 1) or WPUPostMessage with
 * h, the handle it knows (mode 2).  1, or 0 when the upcall failed (*e:
 * WPUSetEvent's error). */
int lwsp_netev_deliver(const lwsp_netev *ne, const WSPUPCALLTABLE *up, SOCKET h, LONG bit, int error, INT *e);
/* WSPEventSelect (mode 1, ev) or WSPAsyncSelect (mode 2, hwnd and msg) of
 * mask (0: none): clears the record and enables every event.  0, or
 * WSAEINVAL (an unknown event, no event object or no window). */
int lwsp_netev_select(lwsp_netev *ne, int mode, WSAEVENT ev, HWND hwnd, UINT msg, LONG mask);
/* WSPEnumNetworkEvents: resets ev (unless WSA_INVALID_EVENT), hands over the
 * record in *out and clears it.  0, or WSAEINVAL when ev cannot be reset. */
int lwsp_netev_enum(lwsp_netev *ne, const WSPUPCALLTABLE *up, WSAEVENT ev, LPWSANETWORKEVENTS out);
#endif
