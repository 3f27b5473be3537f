/*
 * text.c - UTF-16 and UTF-8, GUIDs, Winsock error names and texts, and
 * addresses as text.  No Lua.
 */
#include "common.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- text and GUIDs -------------------------------------------------------- */
size_t lwsp_wcslen(const WCHAR *s, size_t max) {
  size_t n = 0;
  while (n < max && s[n]) n++;
  return n;
}

/* Converts; unpaired surrogates become U+FFFD.  Output is cut at outlen bytes
 * on a character boundary; returns the bytes written (no terminator). */
size_t lwsp_utf16_to_utf8(const WCHAR *in, size_t inlen, char *out, size_t outlen) {
  size_t o = 0;
  for (size_t i = 0; i < inlen; i++) {
    uint32_t c = in[i];
    char b[4];
    size_t n;
    if (c >= 0xD800 && c <= 0xDBFF && i + 1 < inlen && in[i + 1] >= 0xDC00 && in[i + 1] <= 0xDFFF) {
      c = 0x10000 + ((c - 0xD800) << 10) + (in[i + 1] - 0xDC00u);
      i++;
    } else if (c >= 0xD800 && c <= 0xDFFF) {
      c = 0xFFFD;
    }
    if (c < 0x80) { b[0] = (char)c; n = 1; }
    else if (c < 0x800) { b[0] = (char)(0xC0 | c >> 6); b[1] = (char)(0x80 | (c & 63)); n = 2; }
    else if (c < 0x10000) { b[0] = (char)(0xE0 | c >> 12); b[1] = (char)(0x80 | ((c >> 6) & 63)); b[2] = (char)(0x80 | (c & 63)); n = 3; }
    else { b[0] = (char)(0xF0 | c >> 18); b[1] = (char)(0x80 | ((c >> 12) & 63)); b[2] = (char)(0x80 | ((c >> 6) & 63)); b[3] = (char)(0x80 | (c & 63)); n = 4; }
    if (o + n > outlen) break;
    memcpy(out + o, b, n);
    o += n;
  }
  return o;
}

/* Converts; malformed bytes become U+FFFD.  Returns the units written, or
 * outlen + 1 when the result does not fit (so callers can detect it). */
size_t lwsp_utf8_to_utf16(const char *in, size_t inlen, WCHAR *out, size_t outlen) {
  size_t o = 0;
  const unsigned char *s = (const unsigned char *)in;
  for (size_t i = 0; i < inlen;) {
    uint32_t c = s[i];
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > inlen) { c = 0xFFFD; n = 1; }
    else if (n > 1) {
      c &= 0x7F >> n;
      for (size_t k = 1; k < n; k++) {
        if ((s[i + k] & 0xC0) != 0x80) { c = 0xFFFD; n = k; break; }
        c = (c << 6) | (s[i + k] & 63);
      }
    }
    i += n;
    if (c >= 0x10000) {
      if (o + 2 > outlen) return outlen + 1;
      c -= 0x10000;
      out[o++] = (WCHAR)(0xD800 + (c >> 10));
      out[o++] = (WCHAR)(0xDC00 + (c & 0x3FF));
    } else {
      if (o + 1 > outlen) return outlen + 1;
      out[o++] = (WCHAR)c;
    }
  }
  return o;
}

void lwsp_guid_format(const GUID *g, char out[39]) {
  snprintf(out, 39, "{%08lX-%04X-%04X-%02X%02X-%02X%02X%02X%02X%02X%02X}", (unsigned long)g->Data1,
           (unsigned)g->Data2, (unsigned)g->Data3, g->Data4[0], g->Data4[1], g->Data4[2], g->Data4[3],
           g->Data4[4], g->Data4[5], g->Data4[6], g->Data4[7]);
}

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  c |= 32;
  return (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}
/* Accepts a GUID as 8-4-4-4-12 hex digits, with or without braces. */
int lwsp_guid_parse(const char *s, GUID *g) {
  static const int groups[] = {8, 4, 4, 4, 12};
  unsigned char b[16];
  int nb = 0, brace = (*s == '{');
  if (brace) s++;
  for (int gi = 0; gi < 5; gi++) {
    for (int k = 0; k < groups[gi]; k += 2) {
      int hi = hexval((unsigned char)s[0]), lo = hi < 0 ? -1 : hexval((unsigned char)s[1]);
      if (hi < 0 || lo < 0) return 0;
      b[nb++] = (unsigned char)(hi << 4 | lo);
      s += 2;
    }
    if (gi < 4 && *s++ != '-') return 0;
  }
  if (brace && *s++ != '}') return 0;
  if (*s) return 0;
  g->Data1 = (DWORD)b[0] << 24 | (DWORD)b[1] << 16 | (DWORD)b[2] << 8 | b[3];
  g->Data2 = (WORD)(b[4] << 8 | b[5]);
  g->Data3 = (WORD)(b[6] << 8 | b[7]);
  memcpy(g->Data4, b + 8, 8);
  return 1;
}
int lwsp_guid_eq(const GUID *a, const GUID *b) { return memcmp(a, b, sizeof *a) == 0; }
/* ---- errors ------------------------------------------------------------------ */
static const struct { const char *name; int code; } error_table[] = {
#define ROW_(name, value) {#name, value},
  SPI_ERRORS(ROW_)
#undef ROW_
};
#define NERRORS (sizeof error_table / sizeof error_table[0])

const char *lwsp_error_name(int code) {
  for (size_t i = 0; i < NERRORS; i++)
    if (error_table[i].code == code && code != WSABASEERR) return error_table[i].name;
  return NULL;
}
int lwsp_error_code(const char *name) {
  for (size_t i = 0; i < NERRORS; i++)
    if (strcmp(error_table[i].name, name) == 0) return error_table[i].code;
  return 0;
}
const char *lwsp_error_text(int code) {
  switch (code) {
  case WSAEINTR: return "blocking call interrupted";
  case WSAEFAULT: return "bad address or length";
  case WSAEINVAL: return "invalid argument";
  case WSAEWOULDBLOCK: return "operation would block";
  case WSAEINPROGRESS: return "operation in progress";
  case WSAEALREADY: return "operation already in progress";
  case WSAENOTSOCK: return "not a socket";
  case WSAEMSGSIZE: return "message too long";
  case WSAENOPROTOOPT: return "bad protocol option";
  case WSAEOPNOTSUPP: return "operation not supported";
  case WSAEAFNOSUPPORT: return "address family not supported";
  case WSAEADDRINUSE: return "address in use";
  case WSAEADDRNOTAVAIL: return "address not available";
  case WSAENETDOWN: return "network is down";
  case WSAECONNABORTED: return "connection aborted";
  case WSAECONNRESET: return "connection reset by peer";
  case WSAENOBUFS: return "no buffer space";
  case WSAEISCONN: return "socket is connected";
  case WSAENOTCONN: return "socket is not connected";
  case WSAESHUTDOWN: return "socket was shut down";
  case WSAETIMEDOUT: return "timed out";
  case WSAECONNREFUSED: return "connection refused";
  case WSAVERNOTSUPPORTED: return "version not supported";
  case WSANOTINITIALISED: return "not initialised";
  case WSAEINVALIDPROCTABLE: return "invalid procedure table";
  case WSAEINVALIDPROVIDER: return "invalid provider";
  case WSAEPROVIDERFAILEDINIT: return "provider failed to initialise";
  case WSASYSCALLFAILURE: return "system call failure";
  case WSA_IO_PENDING: return "overlapped operation pending";
  case WSA_IO_INCOMPLETE: return "overlapped operation incomplete";
  case WSA_INVALID_HANDLE: return "invalid handle";
  case WSA_OPERATION_ABORTED: return "operation aborted";
  default: return "Winsock error";
  }
}
/* ---- addresses -------------------------------------------------------------- */

static int parse_v4(const char *s, size_t n, unsigned char out[4]) {
  int part = 0;
  unsigned v = 0, digits = 0;
  for (size_t i = 0; i <= n; i++) {
    if (i == n || s[i] == '.') {
      if (!digits || v > 255 || part > 3) return 0;
      out[part++] = (unsigned char)v;
      v = 0; digits = 0;
    } else if (s[i] >= '0' && s[i] <= '9' && digits < 3) {
      v = v * 10 + (unsigned)(s[i] - '0');
      digits++;
    } else {
      return 0;
    }
  }
  return part == 4;
}
static int parse_v6(const char *s, size_t n, unsigned char out[16]) {
  unsigned short w[8];
  int nw = 0, gap = -1;
  size_t i = 0;
  if (n >= 2 && s[0] == ':' && s[1] == ':') { gap = 0; i = 2; if (n == 2) goto done; }
  else if (n && s[0] == ':') return 0;
  while (i < n) {
    size_t start = i;
    unsigned v = 0;
    int digits = 0;
    while (i < n && hexval((unsigned char)s[i]) >= 0 && digits < 5) { v = v << 4 | (unsigned)hexval((unsigned char)s[i]); i++; digits++; }
    if (i < n && s[i] == '.') { /* embedded IPv4 tail */
      unsigned char v4[4];
      if (nw > 6 || !parse_v4(s + start, n - start, v4)) return 0;
      w[nw++] = (unsigned short)(v4[0] << 8 | v4[1]);
      w[nw++] = (unsigned short)(v4[2] << 8 | v4[3]);
      i = n;
      break;
    }
    if (!digits || digits > 4 || nw >= 8) return 0;
    w[nw++] = (unsigned short)v;
    if (i == n) break;
    if (s[i] != ':') return 0;
    i++;
    if (i < n && s[i] == ':') {
      if (gap >= 0) return 0;
      gap = nw;
      i++;
    } else if (i == n) {
      return 0;
    }
  }
done:
  if (gap < 0 && nw != 8) return 0;
  if (gap >= 0 && nw > 7) return 0;
  memset(out, 0, 16);
  if (gap < 0) gap = nw;
  for (int k = 0; k < gap; k++) { out[2 * k] = (unsigned char)(w[k] >> 8); out[2 * k + 1] = (unsigned char)w[k]; }
  for (int k = gap, d = 8 - (nw - gap); k < nw; k++, d++) { out[2 * d] = (unsigned char)(w[k] >> 8); out[2 * d + 1] = (unsigned char)w[k]; }
  return 1;
}
size_t lwsp_format_v6(const unsigned char a[16], char *out, size_t len) {
  int best = -1, bestlen = 0;
  size_t o = 0;
  for (int i = 0; i < 8;) {
    int j = i;
    while (j < 8 && a[2 * j] == 0 && a[2 * j + 1] == 0) j++;
    if (j - i > bestlen && j - i > 1) { best = i; bestlen = j - i; }
    i = j > i ? j : i + 1;
  }
  if (best == 0 && (bestlen == 6 || (bestlen == 5 && a[10] == 0xff && a[11] == 0xff)))
    return (size_t)snprintf(out, len, "::%s%u.%u.%u.%u", bestlen == 5 ? "ffff:" : "", a[12], a[13], a[14], a[15]);
  for (int i = 0; i < 8; i++) {
    if (i == best) { o += (size_t)snprintf(out + o, len - o, "::"); i += bestlen - 1; continue; }
    if (o && out[o - 1] != ':') o += (size_t)snprintf(out + o, len - o, ":");
    o += (size_t)snprintf(out + o, len - o, "%x", lwsp_get16(a + 2 * i));
    if (o >= len) break;
  }
  return o;
}

int lwsp_format_address(const struct sockaddr *sa, int len, char *out, size_t outlen) {
  const unsigned char *b = (const unsigned char *)sa;
  if (len >= 16 && sa->sa_family == AF_INET) {
    unsigned port = lwsp_get16(b + 2);
    if (port) snprintf(out, outlen, "%u.%u.%u.%u:%u", b[4], b[5], b[6], b[7], port);
    else snprintf(out, outlen, "%u.%u.%u.%u", b[4], b[5], b[6], b[7]);
    return 1;
  }
  if (len >= 28 && sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
    char a[64];
    unsigned port = lwsp_get16(b + 2);
    lwsp_format_v6(s6->sin6_addr.u.Byte, a, sizeof a);
    if (s6->sin6_scope_id) snprintf(a + strlen(a), sizeof a - strlen(a), "%%%lu", (unsigned long)s6->sin6_scope_id);
    if (port) snprintf(out, outlen, "[%s]:%u", a, port);
    else snprintf(out, outlen, "%s", a);
    return 1;
  }
  return 0;
}

/* Parses "a.b.c.d[:port]", "ipv6", "[ipv6[%scope]]:port" for the given family
 * (AF_UNSPEC: either). */
int lwsp_parse_address(const char *s, int af, SOCKADDR_STORAGE *ss, int *len) {
  size_t n = strlen(s);
  const char *colon = strrchr(s, ':');
  unsigned long port = 0;
  memset(ss, 0, sizeof *ss);
  if ((af == AF_INET || af == AF_UNSPEC) && (!colon || !strchr(s, ':') || colon == strchr(s, ':'))) {
    unsigned char a[4];
    size_t alen = colon ? (size_t)(colon - s) : n;
    if (colon) {
      char *end;
      if (!colon[1]) return 0;
      port = strtoul(colon + 1, &end, 10);
      if (*end || port > 65535) return 0;
    }
    if (parse_v4(s, alen, a)) {
      unsigned char *b = (unsigned char *)ss;
      ss->ss_family = AF_INET;
      lwsp_put16(b + 2, (unsigned)port);
      memcpy(b + 4, a, 4);
      *len = 16;
      return 1;
    }
  }
  if (af == AF_INET6 || af == AF_UNSPEC) {
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    const char *a = s, *pct;
    size_t alen = n;
    unsigned long scope = 0;
    if (s[0] == '[') {
      const char *close = strchr(s, ']');
      if (!close) return 0;
      a = s + 1;
      alen = (size_t)(close - a);
      if (close[1] == ':') {
        char *end;
        if (!close[2]) return 0;
        port = strtoul(close + 2, &end, 10);
        if (*end || port > 65535) return 0;
      } else if (close[1]) {
        return 0;
      }
    }
    pct = memchr(a, '%', alen);
    if (pct) {
      char *end;
      scope = strtoul(pct + 1, &end, 10);
      if (end != a + alen || end == pct + 1) return 0;
      alen = (size_t)(pct - a);
    }
    if (parse_v6(a, alen, s6->sin6_addr.u.Byte)) {
      s6->sin6_family = AF_INET6;
      lwsp_put16(&s6->sin6_port, (unsigned)port);
      s6->sin6_scope_id = (ULONG)scope;
      *len = 28;
      return 1;
    }
  }
  return 0;
}
