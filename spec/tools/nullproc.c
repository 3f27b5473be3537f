/* A provider DLL whose WSPStartup fills a proc table with a NULL entry, for
 * the spec that checks lwsp refuses such a lower layer. */
#include "spi.h"
#include <string.h>
#ifdef _WIN32
#  define EXPORT __declspec(dllexport)
#else
#  define EXPORT __attribute__((visibility("default")))
#endif
static int WSPAPI cleanup(LPINT err) { (void)err; return 0; }
EXPORT int WSPAPI WSPStartup(WORD v, LPWSPDATA d, LPWSAPROTOCOL_INFOW pi, WSPUPCALLTABLE up, LPWSPPROC_TABLE t) {
  (void)v; (void)pi; (void)up;
  memset(d, 0, sizeof *d);
  d->wVersion = d->wHighVersion = 0x0202;
  memset(t, 0, sizeof *t);
  t->lpWSPCleanup = cleanup;   /* and every other entry NULL */
  return 0;
}
