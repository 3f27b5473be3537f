/*
 * registry.c - the provider-script registry: a provider's GUID -> the
 * absolute path of its script, with the install's on-failure choice and the
 * provider's configuration beside it (docs/api.md, "Where a provider's script
 * comes from").  On Windows two registry hives, the system's and the user's;
 * elsewhere one folder of files.
 */
#ifndef _WIN32
#  define _GNU_SOURCE
#endif
#include "common.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>

#ifdef _WIN32
/* Registry: <hive>\Software\lwsp\Providers, value "{GUID}" = script path,
 * in one of two hives:
 * - the user's, HKEY_CURRENT_USER: what a user registers for their own
 *   processes (lwsp's host, lwsp-run, specs), writable without administrator
 *   rights;
 * - the system's, HKEY_LOCAL_MACHINE: what a system install (lwsp-catalog,
 *   a catalog entry every process loads) registers, writable by
 *   administrators only.
 * Writes go to $LWSP_REGISTRY's hive ("HKCU" or "HKLM"; anything else is an
 * error, as a relative folder is on POSIX) or, when it is unset, to the
 * user's -- to the system's in an elevated process, which never reads the
 * user's (below).  WSPStartup reads HKLM first, then, outside an elevated
 * process, HKCU: a user cannot change what a system install runs, and a
 * script that a non-elevated process of the same user could have written
 * never runs in an elevated one. */
#define LWSP_REG_KEY L"SOFTWARE\\lwsp\\Providers"
#define HKLM_NAME "HKEY_LOCAL_MACHINE\\SOFTWARE\\lwsp\\Providers"
#define HKCU_NAME "HKEY_CURRENT_USER\\Software\\lwsp\\Providers"

/* 1 in a process whose token is elevated (an administrator's full token) */
int lwsp_elevated(void) {
  static volatile LONG known = -1;
  LONG v = known;
  if (v < 0) {
    HANDLE t;
    TOKEN_ELEVATION e;
    DWORD n = 0;
    v = 0;
    if (OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &t)) {
      if (GetTokenInformation(t, TokenElevation, &e, sizeof e, &n)) v = e.TokenIsElevated != 0;
      CloseHandle(t);
    }
    known = v;
  }
  return (int)v;
}

/* The hive writes go to, or NULL with the reason in err. */
static HKEY write_hive(char *err, size_t errlen) {
  const char *r = getenv("LWSP_REGISTRY");
  if (r && *r) {
    if (!_stricmp(r, "HKLM")) return HKEY_LOCAL_MACHINE;
    if (!_stricmp(r, "HKCU")) return HKEY_CURRENT_USER;
    snprintf(err, errlen, "LWSP_REGISTRY on Windows is HKCU or HKLM, not '%s'", r);
    return NULL;
  }
  return lwsp_elevated() ? HKEY_LOCAL_MACHINE : HKEY_CURRENT_USER;
}
static const char *hive_name(HKEY h) { return h == HKEY_LOCAL_MACHINE ? HKLM_NAME : HKCU_NAME; }

const char *lwsp_registry_where(char *buf, size_t len) {
  HKEY h = write_hive(buf, len);
  if (!h) return NULL;
  snprintf(buf, len, "%s", hive_name(h));
  return buf;
}

/* registry.set_root("HKCU" | "HKLM"): this process's writes go there */
int lwsp_registry_set_root(const char *hive, char *err, size_t errlen) {
  if (_stricmp(hive, "HKCU") && _stricmp(hive, "HKLM")) {
    snprintf(err, errlen, "on Windows the registry's root is HKCU or HKLM, not '%s'", hive);
    return 0;
  }
  if (_putenv_s("LWSP_REGISTRY", hive) != 0) { snprintf(err, errlen, "cannot set LWSP_REGISTRY"); return 0; }
  return 1;
}

/* The hive WSPStartup takes id's script from: HKLM's entry, else (outside an
 * elevated process) HKCU's; NULL when neither has one. */
static HKEY read_hive(const WCHAR *name) {
  if (RegGetValueW(HKEY_LOCAL_MACHINE, LWSP_REG_KEY, name, RRF_RT_REG_SZ | RRF_RT_REG_EXPAND_SZ | RRF_NOEXPAND, NULL, NULL,
                   NULL) != ERROR_FILE_NOT_FOUND)
    return HKEY_LOCAL_MACHINE;
  if (!lwsp_elevated() && RegGetValueW(HKEY_CURRENT_USER, LWSP_REG_KEY, name,
                                       RRF_RT_REG_SZ | RRF_RT_REG_EXPAND_SZ | RRF_NOEXPAND, NULL, NULL, NULL) != ERROR_FILE_NOT_FOUND)
    return HKEY_CURRENT_USER;
  return NULL;
}

int lwsp_registry_get(const GUID *id, char *out, size_t outlen, char *err, size_t errlen) {
  char g[39];
  WCHAR name[40], val[MAX_PATH * 2], exp[MAX_PATH * 2];
  DWORD type, size = sizeof val;
  LSTATUS rc;
  HKEY hive;
  lwsp_guid_format(id, g);
  lwsp_utf8_to_wide(g, name, 40);
  if (!(hive = read_hive(name))) {
    if (lwsp_elevated() && RegGetValueW(HKEY_CURRENT_USER, LWSP_REG_KEY, name, RRF_RT_REG_SZ | RRF_RT_REG_EXPAND_SZ | RRF_NOEXPAND,
                                        NULL, NULL, NULL) != ERROR_FILE_NOT_FOUND)
      snprintf(err, errlen, "the script for %s is registered under " HKCU_NAME " only, which an elevated process never "
               "reads: register it under " HKLM_NAME " (LWSP_REGISTRY=HKLM, or a system install)", g);
    else if (lwsp_elevated())
      snprintf(err, errlen, "no script registered for %s under " HKLM_NAME, g);
    else
      snprintf(err, errlen, "no script registered for %s under " HKLM_NAME " or " HKCU_NAME, g);
    return 0;
  }
  rc = RegGetValueW(hive, LWSP_REG_KEY, name, RRF_RT_REG_SZ | RRF_RT_REG_EXPAND_SZ | RRF_NOEXPAND, &type, val, &size);
  if (rc == ERROR_MORE_DATA) {
    snprintf(err, errlen, "the script path for %s under %s is longer than %u characters: refused", g, hive_name(hive),
             (unsigned)(sizeof val / sizeof val[0] - 1));
    return 0;
  }
  if (rc != ERROR_SUCCESS) {
    snprintf(err, errlen, "cannot read the script path for %s under %s (error %ld)", g, hive_name(hive), (long)rc);
    return 0;
  }
  /* RegGetValue ends the string; a NUL before that end is part of the value */
  if (size >= sizeof(WCHAR) && lwsp_wcslen(val, size / sizeof(WCHAR)) + 1 < size / sizeof(WCHAR)) {
    snprintf(err, errlen, "the script path for %s contains a NUL character: refused", g);
    return 0;
  }
  if (type == REG_EXPAND_SZ) {
    DWORD n = ExpandEnvironmentStringsW(val, exp, sizeof exp / sizeof exp[0]);
    if (n == 0 || n > sizeof exp / sizeof exp[0]) { snprintf(err, errlen, "script path for %s too long: refused", g); return 0; }
    memcpy(val, exp, n * sizeof(WCHAR));
  }
  {
    char wide[MAX_PATH * 2 * 3 + 1];   /* every UTF-16 unit fits 3 bytes */
    size_t k = lwsp_utf16_to_utf8((const WCHAR *)val, lwsp_wcslen((const WCHAR *)val, MAX_PATH * 2), wide, sizeof wide - 1);
    if (k > outlen - 1) { snprintf(err, errlen, "the script path for %s is longer than %u bytes: refused", g, (unsigned)(outlen - 1)); return 0; }
    memcpy(out, wide, k);
    out[k] = 0;
  }
  return 1;
}
static void on_failure_name(const GUID *id, WCHAR *name);
static void config_name(const GUID *id, WCHAR *name);
static REGSAM view_flag(int view) { return view == 64 ? KEY_WOW64_64KEY : view == 32 ? KEY_WOW64_32KEY : 0; }
/* Writes the value name under lwsp's key of the hive writes go to (view: the
 * registry view), or deletes it when val is NULL (a missing one is not an error). */
static int set_value(int view, const WCHAR *name, const WCHAR *val, char *err, size_t errlen) {
  HKEY key, hive = write_hive(err, errlen);
  LSTATUS rc;
  if (!hive) return 0;
  rc = RegCreateKeyExW(hive, LWSP_REG_KEY, 0, NULL, 0, KEY_SET_VALUE | view_flag(view), NULL, &key, NULL);
  if (rc == ERROR_SUCCESS) {
    if (val) rc = RegSetValueExW(key, name, 0, REG_SZ, (const BYTE *)val, (DWORD)((wcslen(val) + 1) * sizeof(WCHAR)));
    else if ((rc = RegDeleteValueW(key, name)) == ERROR_FILE_NOT_FOUND) rc = ERROR_SUCCESS;
    RegCloseKey(key);
  }
  if (rc != ERROR_SUCCESS) { snprintf(err, errlen, "cannot write %s (error %ld)", hive_name(hive), (long)rc); return 0; }
  return 1;
}
int lwsp_registry_set(const GUID *id, const char *path, int view, char *err, size_t errlen) {
  char g[39];
  WCHAR name[40], val[MAX_PATH * 2];
  lwsp_guid_format(id, g);
  lwsp_utf8_to_wide(g, name, 40);
  if (!lwsp_utf8_to_wide(path, val, sizeof val / sizeof val[0])) { snprintf(err, errlen, "path too long"); return 0; }
  return set_value(view, name, val, err, errlen);
}
int lwsp_registry_remove(const GUID *id, int view, char *err, size_t errlen) {
  char g[39];
  WCHAR name[40];
  HKEY key;
  LSTATUS rc;
  HKEY hive = write_hive(err, errlen);
  if (!hive) return 0;
  lwsp_guid_format(id, g);
  lwsp_utf8_to_wide(g, name, 40);
  rc = RegOpenKeyExW(hive, LWSP_REG_KEY, 0, KEY_SET_VALUE | view_flag(view), &key);
  if (rc == ERROR_SUCCESS) {
    rc = RegDeleteValueW(key, name);
    {
      WCHAR on[64];                                    /* the install's choice and configuration go with it */
      on_failure_name(id, on);
      RegDeleteValueW(key, on);
      config_name(id, on);
      RegDeleteValueW(key, on);
    }
    RegCloseKey(key);
  }
  if (rc != ERROR_SUCCESS) { snprintf(err, errlen, "no value for %s under %s (error %ld)", g, hive_name(hive), (long)rc); return 0; }
  return 1;
}
int lwsp_registry_each(int view, void (*fn)(const char *guid, const char *path, void *ud), void *ud,
                       char *err, size_t errlen) {
  HKEY key, hive = write_hive(err, errlen);
  LSTATUS rc;
  if (!hive) return 0;
  rc = RegOpenKeyExW(hive, LWSP_REG_KEY, 0, KEY_QUERY_VALUE | view_flag(view), &key);
  if (rc == ERROR_FILE_NOT_FOUND) return 1;            /* nothing installed yet */
  if (rc != ERROR_SUCCESS) { snprintf(err, errlen, "cannot read %s (error %ld)", hive_name(hive), (long)rc); return 0; }
  for (DWORD i = 0;; i++) {
    WCHAR name[64], val[MAX_PATH * 2];
    DWORD nlen = 64, vlen = sizeof val - sizeof(WCHAR), type;
    char g[200], path[MAX_PATH * 6];
    rc = RegEnumValueW(key, i, name, &nlen, NULL, &type, (BYTE *)val, &vlen);
    if (rc == ERROR_NO_MORE_ITEMS) break;
    if (rc != ERROR_SUCCESS) continue;
    if (type != REG_SZ && type != REG_EXPAND_SZ) continue;
    if (nlen != 38) continue;                          /* "{GUID}.on-failure" and the like */
    val[vlen / sizeof(WCHAR)] = 0;
    g[lwsp_utf16_to_utf8(name, nlen, g, sizeof g - 1)] = 0;
    path[lwsp_utf16_to_utf8(val, lwsp_wcslen(val, MAX_PATH * 2), path, sizeof path - 1)] = 0;
    fn(g, path, ud);
  }
  RegCloseKey(key);
  return 1;
}
/* The name of a value beside id's script: "{GUID}<suffix>" ("" for the script's own). */
static void value_name(const GUID *id, const char *suffix, WCHAR *name) {
  char g[39], n[64];
  lwsp_guid_format(id, g);
  snprintf(n, sizeof n, "%s%s", g, suffix);
  lwsp_utf8_to_wide(n, name, 64);
}
static void on_failure_name(const GUID *id, WCHAR *name) { value_name(id, ".on-failure", name); }
int lwsp_registry_on_failure(const GUID *id) {
  WCHAR name[64], val[32];
  DWORD size = sizeof val;
  WCHAR script[40];
  char g[39];
  HKEY hive;
  lwsp_guid_format(id, g);
  lwsp_utf8_to_wide(g, script, 40);
  if (!(hive = read_hive(script))) return 0;           /* beside the script WSPStartup takes */
  on_failure_name(id, name);
  if (RegGetValueW(hive, LWSP_REG_KEY, name, RRF_RT_REG_SZ, NULL, val, &size) != ERROR_SUCCESS) return 0;
  return wcscmp(val, L"passthrough") == 0;
}
int lwsp_registry_set_on_failure(const GUID *id, int passthrough, int view, char *err, size_t errlen) {
  WCHAR name[64];
  on_failure_name(id, name);
  return set_value(view, name, passthrough ? L"passthrough" : NULL, err, errlen);
}
/* A provider's configuration: the value "{GUID}.config" beside its script's
 * (the hive WSPStartup takes the script from), a Lua table literal. */
static void config_name(const GUID *id, WCHAR *name) { value_name(id, ".config", name); }
int lwsp_registry_config(const GUID *id, char **out, char *err, size_t errlen) {
  WCHAR script[40], name[64], *w;
  char g[39];
  HKEY hive;
  DWORD size = 0;
  LSTATUS rc;
  size_t n;
  *out = NULL;
  lwsp_guid_format(id, g);
  lwsp_utf8_to_wide(g, script, 40);
  if (!(hive = read_hive(script))) return 1;
  config_name(id, name);
  rc = RegGetValueW(hive, LWSP_REG_KEY, name, RRF_RT_REG_SZ, NULL, NULL, &size);
  if (rc == ERROR_FILE_NOT_FOUND) return 1;
  if (rc != ERROR_SUCCESS) { snprintf(err, errlen, "cannot read the configuration of %s under %s (error %ld)", g, hive_name(hive), (long)rc); return 0; }
  if (size > (LWSP_CONFIG_MAX + 1) * sizeof(WCHAR)) {
    snprintf(err, errlen, "the configuration of %s is longer than %u characters: refused", g, (unsigned)LWSP_CONFIG_MAX);
    return 0;
  }
  if (!(w = malloc(size + sizeof(WCHAR))) || !(*out = malloc(size / sizeof(WCHAR) * 3 + 1))) {
    free(w);
    snprintf(err, errlen, "out of memory");
    return 0;
  }
  rc = RegGetValueW(hive, LWSP_REG_KEY, name, RRF_RT_REG_SZ, NULL, w, &size);
  if (rc != ERROR_SUCCESS) {
    free(w); free(*out); *out = NULL;
    snprintf(err, errlen, "cannot read the configuration of %s under %s (error %ld)", g, hive_name(hive), (long)rc);
    return 0;
  }
  n = lwsp_utf16_to_utf8(w, lwsp_wcslen(w, size / sizeof(WCHAR)), *out, size / sizeof(WCHAR) * 3);
  (*out)[n] = 0;
  free(w);
  return 1;
}
int lwsp_registry_set_config(const GUID *id, const char *text, int view, char *err, size_t errlen) {
  WCHAR name[64], *w = NULL;
  int ok;
  if (text && strlen(text) > LWSP_CONFIG_MAX) { snprintf(err, errlen, "a configuration is at most %u bytes", (unsigned)LWSP_CONFIG_MAX); return 0; }
  config_name(id, name);
  if (text) {
    size_t n = strlen(text) + 2;                  /* (utf8_to_wide keeps a unit spare) */
    if (!(w = malloc(n * sizeof(WCHAR)))) { snprintf(err, errlen, "out of memory"); return 0; }
    if (!lwsp_utf8_to_wide(text, w, n)) { free(w); snprintf(err, errlen, "the configuration is not UTF-8"); return 0; }
  }
  ok = set_value(view, name, w, err, errlen);
  free(w);
  return ok;
}
#else
#  include <dirent.h>

/* Registry: one file per provider, <root>/{GUID}, holding the script's absolute
 * path.  <root> is $LWSP_REGISTRY when that is set (it must be an absolute
 * path: a relative one is an error, never a fallback), otherwise the user's
 * own $XDG_CONFIG_HOME/lwsp/providers (~/.config/lwsp/providers), and only
 * with neither HOME nor XDG_CONFIG_HOME the system's /etc/lwsp/providers.
 * A system install names /etc/lwsp/providers in $LWSP_REGISTRY.  Returns NULL
 * (buf holding the reason) when $LWSP_REGISTRY is unusable. */
const char *lwsp_registry_where(char *buf, size_t len) {
  const char *r = getenv("LWSP_REGISTRY"), *x = getenv("XDG_CONFIG_HOME"), *h = getenv("HOME");
  if (r && *r) {
    if (r[0] != '/') {
      snprintf(buf, len, "LWSP_REGISTRY must be an absolute path, not '%s'", r);
      return NULL;
    }
    snprintf(buf, len, "%s", r);
  } else if (x && x[0] == '/') {
    snprintf(buf, len, "%s/lwsp/providers", x);
  } else if (h && h[0] == '/') {
    snprintf(buf, len, "%s/.config/lwsp/providers", h);
  } else {
    snprintf(buf, len, "/etc/lwsp/providers");
  }
  return buf;
}
int lwsp_registry_set_root(const char *root, char *err, size_t errlen) {
  if (!lwsp_mkdirs(root)) { snprintf(err, errlen, "cannot create %s", root); return 0; }
  if (setenv("LWSP_REGISTRY", root, 1) != 0) { snprintf(err, errlen, "setenv failed"); return 0; }
  return 1;
}

/* The registry file of id, or 0 with the reason in out. */
static int registry_file(const GUID *id, char *out, size_t len) {
  char root[2048], g[39];
  lwsp_guid_format(id, g);
  if (!lwsp_registry_where(root, sizeof root)) { snprintf(out, len, "%s", root); return 0; }
  if (snprintf(out, len, "%s/%s", root, g) >= (int)len) { snprintf(out, len, "registry path too long"); return 0; }
  return 1;
}
int lwsp_registry_get(const GUID *id, char *out, size_t outlen, char *err, size_t errlen) {
  char file[2200];
  FILE *f;
  size_t n;
  int more;
  if (!registry_file(id, file, sizeof file)) { snprintf(err, errlen, "%s", file); return 0; }
  f = fopen(file, "rb");
  if (!f) { snprintf(err, errlen, "no script registered: %s: %s", file, strerror(errno)); return 0; }
  n = fread(out, 1, outlen - 1, f);
  {
    char tail[3];                       /* past the buffer only a line end may follow */
    size_t t = fread(tail, 1, sizeof tail, f);
    more = t == sizeof tail || (t >= 1 && tail[t - 1] != '\n') || (t == 2 && tail[0] != '\r');
  }
  fclose(f);
  out[n] = 0;
  while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r')) out[--n] = 0;
  /* never a cut or partial path: a longer entry, a NUL or a second line is refused */
  if (more) { snprintf(err, errlen, "registry entry %s is longer than %zu bytes: refused", file, outlen - 1); return 0; }
  if (memchr(out, 0, n)) { snprintf(err, errlen, "registry entry %s contains a NUL byte: refused", file); return 0; }
  if (strpbrk(out, "\r\n")) { snprintf(err, errlen, "registry entry %s holds more than one line: refused", file); return 0; }
  if (n == 0) { snprintf(err, errlen, "registry entry %s is empty", file); return 0; }
  return 1;
}
int lwsp_registry_set(const GUID *id, const char *path, int view, char *err, size_t errlen) {
  char file[2200], tmp[2300], root[2048];
  (void)view;
  FILE *f;
  if (!lwsp_registry_where(root, sizeof root)) { snprintf(err, errlen, "%s", root); return 0; }
  if (!lwsp_mkdirs(root)) {
    snprintf(err, errlen, "cannot create %s: %s (set LWSP_REGISTRY to a folder of your own, or call "
             "lwsp.registry.set_root)", root, strerror(errno));
    return 0;
  }
  if (!registry_file(id, file, sizeof file)) { snprintf(err, errlen, "%s", file); return 0; }
  snprintf(tmp, sizeof tmp, "%s.%lu.tmp", file, lwsp_process_id());
  f = fopen(tmp, "wb");
  if (!f) { snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno)); return 0; }
  fprintf(f, "%s\n", path);
  if (fclose(f) != 0 || rename(tmp, file) != 0) {
    snprintf(err, errlen, "cannot write %s: %s", file, strerror(errno));
    remove(tmp);
    return 0;
  }
  return 1;
}
int lwsp_registry_remove(const GUID *id, int view, char *err, size_t errlen) {
  char file[2200];
  (void)view;
  if (!registry_file(id, file, sizeof file)) { snprintf(err, errlen, "%s", file); return 0; }
  if (remove(file) != 0) {
    snprintf(err, errlen, "cannot remove registry entry %s: %s", file, strerror(errno));
    return 0;
  }
  lwsp_registry_set_on_failure(id, 0, view, file, sizeof file);   /* the install's choice goes with it, */
  lwsp_registry_set_config(id, NULL, view, file, sizeof file);     /* and its configuration */
  return 1;
}
int lwsp_registry_on_failure(const GUID *id) {
  char file[2200], line[32] = "";
  FILE *f;
  if (!registry_file(id, file, sizeof file) || strlen(file) + 12 > sizeof file) return 0;
  strcat(file, ".on-failure");
  if (!(f = fopen(file, "rb"))) return 0;
  if (!fgets(line, sizeof line, f)) line[0] = 0;
  fclose(f);
  line[strcspn(line, "\r\n")] = 0;
  return strcmp(line, "passthrough") == 0;
}
int lwsp_registry_set_on_failure(const GUID *id, int passthrough, int view, char *err, size_t errlen) {
  char file[2200], root[2048];
  FILE *f;
  (void)view;
  if (!lwsp_registry_where(root, sizeof root)) { snprintf(err, errlen, "%s", root); return 0; }
  if (!registry_file(id, file, sizeof file) || strlen(file) + 12 > sizeof file) { snprintf(err, errlen, "registry path too long"); return 0; }
  strcat(file, ".on-failure");
  if (!passthrough) {
    if (remove(file) != 0 && errno != ENOENT) { snprintf(err, errlen, "cannot remove %s: %s", file, strerror(errno)); return 0; }
    return 1;
  }
  if (!lwsp_mkdirs(root) || !(f = fopen(file, "wb"))) { snprintf(err, errlen, "cannot write %s: %s", file, strerror(errno)); return 0; }
  fputs("passthrough\n", f);
  if (fclose(f) != 0) { snprintf(err, errlen, "cannot write %s: %s", file, strerror(errno)); return 0; }
  return 1;
}
/* A provider's configuration: the file <root>/{GUID}.config beside its
 * entry, a Lua table literal. */
int lwsp_registry_config(const GUID *id, char **out, char *err, size_t errlen) {
  char file[2200];
  FILE *f;
  size_t n;
  *out = NULL;
  if (!registry_file(id, file, sizeof file)) { snprintf(err, errlen, "%s", file); return 0; }
  if (strlen(file) + 8 > sizeof file) { snprintf(err, errlen, "registry path too long"); return 0; }
  strcat(file, ".config");
  if (!(f = fopen(file, "rb"))) {
    if (errno == ENOENT) return 1;
    snprintf(err, errlen, "cannot read %s: %s", file, strerror(errno));
    return 0;
  }
  if (!(*out = malloc(LWSP_CONFIG_MAX + 2))) { fclose(f); snprintf(err, errlen, "out of memory"); return 0; }
  n = fread(*out, 1, LWSP_CONFIG_MAX + 1, f);
  fclose(f);
  if (n > LWSP_CONFIG_MAX) {
    free(*out); *out = NULL;
    snprintf(err, errlen, "%s is longer than %u bytes: refused", file, (unsigned)LWSP_CONFIG_MAX);
    return 0;
  }
  (*out)[n] = 0;
  return 1;
}
int lwsp_registry_set_config(const GUID *id, const char *text, int view, char *err, size_t errlen) {
  char file[2200], tmp[2300], root[2048];
  FILE *f;
  (void)view;
  if (!lwsp_registry_where(root, sizeof root)) { snprintf(err, errlen, "%s", root); return 0; }
  if (text && strlen(text) > LWSP_CONFIG_MAX) { snprintf(err, errlen, "a configuration is at most %u bytes", (unsigned)LWSP_CONFIG_MAX); return 0; }
  if (!registry_file(id, file, sizeof file) || strlen(file) + 8 > sizeof file) { snprintf(err, errlen, "registry path too long"); return 0; }
  strcat(file, ".config");
  if (!text) {
    if (remove(file) != 0 && errno != ENOENT) { snprintf(err, errlen, "cannot remove %s: %s", file, strerror(errno)); return 0; }
    return 1;
  }
  if (!lwsp_mkdirs(root)) { snprintf(err, errlen, "cannot create %s: %s", root, strerror(errno)); return 0; }
  snprintf(tmp, sizeof tmp, "%s.%lu.tmp", file, lwsp_process_id());
  if (!(f = fopen(tmp, "wb"))) { snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno)); return 0; }
  fputs(text, f);
  if (fclose(f) != 0 || rename(tmp, file) != 0) {
    snprintf(err, errlen, "cannot write %s: %s", file, strerror(errno));
    remove(tmp);
    return 0;
  }
  return 1;
}
int lwsp_registry_each(int view, void (*fn)(const char *guid, const char *path, void *ud), void *ud,
                       char *err, size_t errlen) {
  char root[2048];
  DIR *d;
  struct dirent *e;
  (void)view;
  if (!lwsp_registry_where(root, sizeof root)) { snprintf(err, errlen, "%s", root); return 0; }
  if (!(d = opendir(root))) {
    if (errno == ENOENT) return 1;                      /* nothing installed yet */
    snprintf(err, errlen, "cannot read %s: %s", root, strerror(errno));
    return 0;
  }
  while ((e = readdir(d)) != NULL) {
    GUID g;
    char path[2048], why[256];
    if (strlen(e->d_name) != 38 || !lwsp_guid_parse(e->d_name, &g)) continue;
    if (lwsp_registry_get(&g, path, sizeof path, why, sizeof why)) fn(e->d_name, path, ud);
  }
  closedir(d);
  return 1;
}
#endif
