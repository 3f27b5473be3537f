/*
 * log.c - the log: one line per event, to $LWSP_LOG or the target set, and
 * into a ring of the last LWSP_LOG_RING lines.  No Lua: the native base
 * provider logs with it too.
 */
#include "common.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- log ------------------------------------------------------------------
 * Each line goes to $LWSP_LOG (a file path; "-" or unset means stderr, "off"
 * means nowhere) and into a ring of the last LWSP_LOG_RING lines, which
 * lwsp.log_lines() reads.  One process-wide lock orders the lines. */
static lwsp_mutex log_lock;
static int log_ready;
static char *log_ring[LWSP_LOG_RING];
static unsigned long log_seq;
static char log_target[1024];
static int log_target_set;

static void log_init(void) {
  /* First call happens under the runtime's global lock or at module load. */
  if (!log_ready) { lwsp_mutex_init(&log_lock); log_ready = 1; }
}

/* Provider names for the log: a line from a provider tagged by its GUID shows
 * "lwsp[name {GUID}]", name being its script's file name without ".lua". */
#define LOG_NAMES 64
static struct { char guid[40]; char name[64]; } log_names[LOG_NAMES];
static unsigned log_names_next;

void lwsp_log_name(const char *guid, const char *script) {
  const char *base = script, *p;
  size_t n;
  unsigned i;
  if (!guid || !script || strlen(guid) >= sizeof log_names[0].guid) return;
  for (p = script; *p; p++) if (*p == '/' || *p == '\\') base = p + 1;
  n = strlen(base);
  if (n > 4 && strcmp(base + n - 4, ".lua") == 0) n -= 4;
  if (n >= sizeof log_names[0].name) n = sizeof log_names[0].name - 1;
  log_init();
  lwsp_mutex_lock(&log_lock);
  for (i = 0; i < LOG_NAMES && strcmp(log_names[i].guid, guid) != 0; i++) {}
  if (i == LOG_NAMES) i = log_names_next++ % LOG_NAMES;
  snprintf(log_names[i].guid, sizeof log_names[i].guid, "%s", guid);
  memcpy(log_names[i].name, base, n);
  log_names[i].name[n] = 0;
  lwsp_mutex_unlock(&log_lock);
}

void (*lwsp_log_hook)(const char *line);

void lwsp_log(const char *who, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  lwsp_vlog(who, fmt, ap);
  va_end(ap);
}

void lwsp_vlog(const char *who, const char *fmt, va_list ap) {
  char line[8192];
  int n = -1;
  const char *target;
  log_init();
  if (who && who[0] == '{') {
    lwsp_mutex_lock(&log_lock);
    for (unsigned i = 0; i < LOG_NAMES; i++)
      if (log_names[i].name[0] && strcmp(log_names[i].guid, who) == 0) {
        n = snprintf(line, sizeof line, "lwsp[%s %s] ", log_names[i].name, who);
        break;
      }
    lwsp_mutex_unlock(&log_lock);
  }
  if (n < 0) n = snprintf(line, sizeof line, "lwsp[%s] ", who ? who : "-");
  if (n > 0 && (size_t)n < sizeof line) vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
  lwsp_mutex_lock(&log_lock);
  free(log_ring[log_seq % LWSP_LOG_RING]);
  log_ring[log_seq % LWSP_LOG_RING] = strdup(line);
  log_seq++;
  target = log_target_set ? log_target : getenv("LWSP_LOG");
  if (!target || !*target || strcmp(target, "-") == 0) {
    fprintf(stderr, "%s\n", line);
  } else if (strcmp(target, "off") != 0) {
    FILE *f = fopen(target, "a");
    if (f) { fprintf(f, "%s\n", line); fclose(f); }
  }
  lwsp_mutex_unlock(&log_lock);
  if (lwsp_log_hook) lwsp_log_hook(line);
}

/* Calls fn with each line still in the ring from number since on; returns the
 * number the next line will get. */
unsigned long lwsp_log_lines(unsigned long since, void (*fn)(const char *line, void *ud), void *ud) {
  unsigned long first, i, next;
  log_init();
  lwsp_mutex_lock(&log_lock);
  first = log_seq > LWSP_LOG_RING ? log_seq - LWSP_LOG_RING : 0;
  if (since > first) first = since;
  for (i = first; i < log_seq; i++) fn(log_ring[i % LWSP_LOG_RING] ? log_ring[i % LWSP_LOG_RING] : "", ud);
  next = log_seq;
  lwsp_mutex_unlock(&log_lock);
  return next;
}

/* Where lines go from now on: a file path, "-" for stderr, "off", or NULL for $LWSP_LOG. */
void lwsp_log_target(const char *t) {
  log_init();
  lwsp_mutex_lock(&log_lock);
  log_target_set = t != NULL;
  snprintf(log_target, sizeof log_target, "%s", t ? t : "");
  lwsp_mutex_unlock(&log_lock);
}
