/*
 * preload_dns.c - name resolution through the chain.
 *
 * The C library's getaddrinfo sends its DNS queries with internal calls
 * that no preloaded library can interpose, so its traffic would go round
 * the chain.  lwsp's getaddrinfo does what "hosts: files dns" asks of it
 * with the program's own sockets: a name in /etc/hosts, a numeric address
 * or a request lwsp does not serve goes to the C library as before (no DNS
 * traffic is made there); any other name is asked of the nameservers of
 * resolv.conf over UDP (TCP when the answer is truncated) with socket,
 * connect, send, poll and recv, which this library serves: a layer sees
 * the queries as any datagram and may redirect, answer or refuse them.
 * The addrinfo list is then built by the C library from the numeric
 * addresses found (AI_NUMERICHOST), so freeaddrinfo, service names and
 * socket types stay the C library's own.
 *
 * LWSP_RESOLVER=libc leaves every name to the C library;
 * LWSP_RESOLV_CONF=FILE reads FILE instead of /etc/resolv.conf,
 * LWSP_HOSTS=FILE reads FILE instead of /etc/hosts (the C library's
 * lookup of a name found there still reads /etc/hosts).  docs/preload.md
 * gives the limits.
 */
#define _GNU_SOURCE
#include "preload.h"
#include <arpa/inet.h>
#include <ctype.h>
#include <netdb.h>
#include <strings.h>

#define MAX_NS 3
#define MAX_SEARCH 6
#define MAX_ADDRS 32
#define NAME_MAX_LEN 254

typedef struct {
  struct sockaddr_storage ns[MAX_NS];
  socklen_t nslen[MAX_NS];
  int nns;
  char search[MAX_SEARCH][NAME_MAX_LEN + 1];
  int nsearch;
  int ndots, timeout_ms, attempts;
} rconf;

typedef struct {
  char addr[MAX_ADDRS][INET6_ADDRSTRLEN];
  int fam[MAX_ADDRS];
  int n;
  char canon[NAME_MAX_LEN + 1];
} found;

enum { Q_ANSWER, Q_NXDOMAIN, Q_NODATA, Q_FAIL };   /* what one name's query came to */

static int (*real_getaddrinfo)(const char *, const char *, const struct addrinfo *, struct addrinfo **);

static void read_conf(rconf *c) {
  const char *path = getenv("LWSP_RESOLV_CONF");
  FILE *f = fopen(path && *path ? path : "/etc/resolv.conf", "re");
  char line[512];
  memset(c, 0, sizeof *c);
  c->ndots = 1;
  c->timeout_ms = 5000;
  c->attempts = 2;
  while (f && fgets(line, sizeof line, f)) {
    char *save = NULL, *key = strtok_r(line, " \t\r\n", &save), *v;
    if (!key || *key == '#' || *key == ';') continue;
    if (!strcmp(key, "nameserver") && (v = strtok_r(NULL, " \t\r\n", &save)) && c->nns < MAX_NS) {
      struct sockaddr_in *a4 = (struct sockaddr_in *)&c->ns[c->nns];
      struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&c->ns[c->nns];
      if (inet_pton(AF_INET, v, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons(53);
        c->nslen[c->nns++] = sizeof *a4;
      } else if (inet_pton(AF_INET6, v, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(53);
        c->nslen[c->nns++] = sizeof *a6;
      }
    } else if (!strcmp(key, "search") || !strcmp(key, "domain")) {
      c->nsearch = 0;
      while ((v = strtok_r(NULL, " \t\r\n", &save)) && c->nsearch < MAX_SEARCH)
        if (strlen(v) <= NAME_MAX_LEN) strcpy(c->search[c->nsearch++], v);
    } else if (!strcmp(key, "options")) {
      while ((v = strtok_r(NULL, " \t\r\n", &save))) {
        if (!strncmp(v, "ndots:", 6)) c->ndots = atoi(v + 6) > 15 ? 15 : atoi(v + 6);
        else if (!strncmp(v, "timeout:", 8)) c->timeout_ms = (atoi(v + 8) < 1 ? 1 : atoi(v + 8) > 30 ? 30 : atoi(v + 8)) * 1000;
        else if (!strncmp(v, "attempts:", 9)) c->attempts = atoi(v + 9) < 1 ? 1 : atoi(v + 9) > 5 ? 5 : atoi(v + 9);
      }
    }
  }
  if (f) fclose(f);
  if (!c->nns) {   /* the resolver's default: a nameserver on this machine */
    struct sockaddr_in *a4 = (struct sockaddr_in *)&c->ns[0];
    a4->sin_family = AF_INET;
    a4->sin_port = htons(53);
    a4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c->nslen[c->nns++] = sizeof *a4;
  }
}

/* The name is one /etc/hosts gives (as a name or an alias). */
static int in_hosts(const char *name) {
  const char *path = getenv("LWSP_HOSTS");
  FILE *f = fopen(path && *path ? path : "/etc/hosts", "re");
  char line[1024];
  size_t n = strlen(name);
  int hit = 0;
  if (n && name[n - 1] == '.') n--;
  while (f && !hit && fgets(line, sizeof line, f)) {
    char *save = NULL, *w;
    char *hash = strchr(line, '#');
    if (hash) *hash = 0;
    if (!strtok_r(line, " \t\r\n", &save)) continue;   /* the address */
    while (!hit && (w = strtok_r(NULL, " \t\r\n", &save)))
      hit = strlen(w) == n && !strncasecmp(w, name, n);
  }
  if (f) fclose(f);
  return hit;
}

/* ---- the DNS message --------------------------------------------------------------- */

/* Writes a query for name (no final dot) into q; its length, or -1. */
static int make_query(unsigned char *q, size_t cap, const char *name, int type, unsigned id) {
  size_t k = 12;
  const char *p = name;
  memset(q, 0, 12);
  q[0] = (unsigned char)(id >> 8);
  q[1] = (unsigned char)id;
  q[2] = 0x01;   /* recursion desired */
  q[5] = 1;      /* one question */
  while (*p) {
    const char *dot = strchr(p, '.');
    size_t len = dot ? (size_t)(dot - p) : strlen(p);
    if (len == 0 || len > 63 || k + len + 1 >= cap) return -1;
    q[k++] = (unsigned char)len;
    memcpy(q + k, p, len);
    k += len;
    p += len;
    if (*p == '.') p++;
  }
  if (k + 5 > cap) return -1;
  q[k++] = 0;
  q[k++] = 0;
  q[k++] = (unsigned char)type;
  q[k++] = 0;
  q[k++] = 1;    /* class IN */
  return (int)k;
}

/* Reads the (possibly compressed) name at *off into out; moves *off past it. */
static int read_name(const unsigned char *m, size_t n, size_t *off, char *out, size_t cap) {
  size_t at = *off, w = 0;
  int jumps = 0, jumped = 0;
  for (;;) {
    if (at >= n) return 0;
    unsigned len = m[at];
    if ((len & 0xc0) == 0xc0) {
      if (at + 1 >= n || ++jumps > 16) return 0;
      if (!jumped) *off = at + 2;
      jumped = 1;
      at = ((len & 0x3f) << 8) | m[at + 1];
      continue;
    }
    if (len & 0xc0) return 0;
    at++;
    if (!len) break;
    if (at + len > n || w + len + 2 > cap) return 0;
    if (w) out[w++] = '.';
    memcpy(out + w, m + at, len);
    w += len;
    at += len;
  }
  out[w] = 0;
  if (!jumped) *off = at;
  return 1;
}

/* Reads an answer to the query q; adds the addresses of type to got. */
static int parse_answer(const unsigned char *m, size_t n, const unsigned char *q, int qlen, int type, found *got) {
  size_t off = 12;
  char owner[NAME_MAX_LEN + 2], target[NAME_MAX_LEN + 2];
  unsigned an, rcode;
  if (n < 12 || m[0] != q[0] || m[1] != q[1] || !(m[2] & 0x80)) return -1;   /* not the answer to q */
  if ((size_t)qlen > n || memcmp(m + 12, q + 12, (size_t)qlen - 12) != 0) return -1;
  rcode = m[3] & 0x0f;
  if (rcode == 3) return Q_NXDOMAIN;
  if (rcode != 0) return Q_FAIL;
  an = (unsigned)(m[6] << 8 | m[7]);
  off = (size_t)qlen;
  int before = got->n;
  for (unsigned i = 0; i < an; i++) {
    unsigned t, rdlen;
    if (!read_name(m, n, &off, owner, sizeof owner) || off + 10 > n) return Q_FAIL;
    t = (unsigned)(m[off] << 8 | m[off + 1]);
    rdlen = (unsigned)(m[off + 8] << 8 | m[off + 9]);
    off += 10;
    if (off + rdlen > n) return Q_FAIL;
    if (strcasecmp(owner, got->canon) == 0) {
      if (t == 5) {   /* CNAME: the name the rest of the answer speaks of */
        size_t at = off;
        if (read_name(m, n, &at, target, sizeof target) && strlen(target) <= NAME_MAX_LEN) strcpy(got->canon, target);
      } else if ((int)t == type && got->n < MAX_ADDRS && ((t == 1 && rdlen == 4) || (t == 28 && rdlen == 16))) {
        int fam = t == 1 ? AF_INET : AF_INET6;
        if (inet_ntop(fam, m + off, got->addr[got->n], INET6_ADDRSTRLEN)) got->fam[got->n++] = fam;
      }
    }
    off += rdlen;
  }
  return got->n > before ? Q_ANSWER : Q_NODATA;
}

/* ---- asking a nameserver, with the program's own (served) sockets ----------------------- */

static int wait_readable(int fd, int ms) {
  struct pollfd p = {fd, POLLIN, 0};
  int rc;
  do rc = poll(&p, 1, ms); while (rc < 0 && errno == EINTR);
  return rc > 0;
}

static int read_full(int fd, unsigned char *b, size_t n, int ms) {
  size_t got = 0;
  while (got < n) {
    if (!wait_readable(fd, ms)) return 0;
    ssize_t r = recv(fd, b + got, n - got, 0);
    if (r <= 0) return 0;
    got += (size_t)r;
  }
  return 1;
}

/* Over TCP, for an answer that did not fit a datagram; its length, or -1. */
static int ask_tcp(const rconf *c, int k, const unsigned char *q, int qlen, unsigned char *a, size_t cap) {
  unsigned char len[2] = {(unsigned char)(qlen >> 8), (unsigned char)qlen};
  int fd = socket(c->ns[k].ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), n = -1;
  if (fd < 0) return -1;
  if (connect(fd, (const struct sockaddr *)&c->ns[k], c->nslen[k]) == 0 && send(fd, len, 2, MSG_NOSIGNAL) == 2 &&
      send(fd, q, (size_t)qlen, MSG_NOSIGNAL) == qlen && read_full(fd, len, 2, c->timeout_ms)) {
    size_t want = (size_t)(len[0] << 8 | len[1]);
    if (want <= cap && read_full(fd, a, want, c->timeout_ms)) n = (int)want;
  }
  close(fd);
  return n;
}

/* One name, one type, each nameserver in turn (attempts rounds). */
static int ask(const rconf *c, const char *name, int type, found *got) {
  unsigned char q[300], a[65536];
  int qlen, timed_out = 1;
  unsigned id;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  id = (unsigned)(ts.tv_nsec ^ (ts.tv_sec << 7) ^ (unsigned)getpid()) & 0xffff;
  if ((qlen = make_query(q, sizeof q, name, type, id)) < 0) return Q_NXDOMAIN;
  for (int round = 0; round < c->attempts; round++)
    for (int k = 0; k < c->nns; k++) {
      int fd = socket(c->ns[k].ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0), r = -1;
      ssize_t n = -1;
      if (fd < 0) return Q_FAIL;
      if (connect(fd, (const struct sockaddr *)&c->ns[k], c->nslen[k]) == 0 && send(fd, q, (size_t)qlen, 0) == qlen) {
        while (wait_readable(fd, c->timeout_ms)) {
          n = recv(fd, a, 512, 0);
          if (n < 0) break;
          timed_out = 0;
          if (n >= 12 && (a[2] & 0x02)) {   /* truncated: again over TCP */
            n = ask_tcp(c, k, q, qlen, a, sizeof a);
            if (n < 0) break;
          }
          if ((r = parse_answer(a, (size_t)n, q, qlen, type, got)) >= 0) break;   /* (else a stray datagram) */
        }
      }
      close(fd);
      if (r == Q_ANSWER || r == Q_NXDOMAIN || r == Q_NODATA) return r;
    }
  return timed_out ? -1 : Q_FAIL;
}

/* ---- getaddrinfo ------------------------------------------------------------------ */

/* The names to try, as the resolver does: the name as given first when it
 * has ndots dots or more (or ends with one), else after the search list. */
static int candidates(const rconf *c, const char *name, char out[][NAME_MAX_LEN + 1]) {
  int n = 0, dots = 0;
  size_t len = strlen(name);
  for (const char *p = name; *p; p++) dots += *p == '.';
  if (len && name[len - 1] == '.') {
    snprintf(out[n++], NAME_MAX_LEN + 1, "%.*s", (int)len - 1, name);
    return n;
  }
  if (dots >= c->ndots) snprintf(out[n++], NAME_MAX_LEN + 1, "%s", name);
  for (int i = 0; i < c->nsearch; i++)
    if (len + strlen(c->search[i]) + 1 <= NAME_MAX_LEN) snprintf(out[n++], NAME_MAX_LEN + 1, "%s.%s", name, c->search[i]);
  if (dots < c->ndots) snprintf(out[n++], NAME_MAX_LEN + 1, "%s", name);
  return n;
}

/* Looks name up over DNS for family; EAI_* or 0 with got filled. */
static int lookup(const char *name, int family, int flags, found *got) {
  rconf c;
  char names[MAX_SEARCH + 2][NAME_MAX_LEN + 1];
  int nn, timed_out = 0, failed = 0;
  read_conf(&c);
  nn = candidates(&c, name, names);
  for (int i = 0; i < nn; i++) {
    int r4 = Q_NODATA, r6 = Q_NODATA;
    got->n = 0;
    snprintf(got->canon, sizeof got->canon, "%s", names[i]);
    if (family == AF_INET || family == AF_UNSPEC || (family == AF_INET6 && (flags & AI_V4MAPPED))) {
      r4 = family == AF_INET6 ? Q_NODATA : ask(&c, names[i], 1, got);
    }
    if (family == AF_INET6 || family == AF_UNSPEC) {
      char canon[NAME_MAX_LEN + 1];
      snprintf(canon, sizeof canon, "%s", got->canon);
      snprintf(got->canon, sizeof got->canon, "%s", names[i]);
      r6 = ask(&c, names[i], 28, got);
      if (r4 == Q_ANSWER) snprintf(got->canon, sizeof got->canon, "%s", canon);
    }
    if (family == AF_INET6 && (flags & AI_V4MAPPED) && got->n == 0) {   /* IPv4 addresses as IPv6 ones */
      r4 = ask(&c, names[i], 1, got);
      for (int k = 0; k < got->n; k++) {
        char v4[INET_ADDRSTRLEN];
        snprintf(v4, sizeof v4, "%.15s", got->addr[k]);
        snprintf(got->addr[k], INET6_ADDRSTRLEN, "::ffff:%s", v4);
        got->fam[k] = AF_INET6;
      }
    }
    if (got->n) return 0;
    if (r4 == -1 || r6 == -1) timed_out = 1;
    if (r4 == Q_FAIL || r6 == Q_FAIL) failed = 1;
  }
  return timed_out || failed ? EAI_AGAIN : EAI_NONAME;
}

/* The C library's list for the numeric addresses found. */
static int build(const found *got, const char *service, const struct addrinfo *hints, struct addrinfo **res) {
  struct addrinfo h, *head = NULL, **tail = &head;
  int rc = EAI_NONAME;
  memset(&h, 0, sizeof h);
  if (hints) h = *hints;
  h.ai_flags = (h.ai_flags & ~(AI_CANONNAME | AI_ADDRCONFIG | AI_V4MAPPED | AI_ALL)) | AI_NUMERICHOST;
  h.ai_canonname = NULL;
  h.ai_addr = NULL;
  h.ai_next = NULL;
  for (int k = 0; k < got->n; k++) {
    struct addrinfo *part = NULL;
    h.ai_family = got->fam[k];
    rc = real_getaddrinfo(got->addr[k], service, &h, &part);
    if (rc != 0) {
      if (head) freeaddrinfo(head);
      return rc;
    }
    *tail = part;
    while (*tail) tail = &(*tail)->ai_next;
  }
  if (!head) return rc;
  if (hints && (hints->ai_flags & AI_CANONNAME)) {
    free(head->ai_canonname);
    head->ai_canonname = strdup(got->canon);
  }
  *res = head;
  return 0;
}

EXPORT int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res) {
  struct addrinfo numeric;
  const char *mode = getenv("LWSP_RESOLVER");
  int family = hints ? hints->ai_family : AF_UNSPEC, flags = hints ? hints->ai_flags : 0, rc;
  found got;
  if (!real_getaddrinfo) {
    real_getaddrinfo = (int (*)(const char *, const char *, const struct addrinfo *, struct addrinfo **))dlsym(RTLD_NEXT, "getaddrinfo");
    if (!real_getaddrinfo) return EAI_SYSTEM;
  }
  if (!node || pl_inside || (mode && !strcmp(mode, "libc")) || (flags & AI_NUMERICHOST) ||
      (family != AF_UNSPEC && family != AF_INET && family != AF_INET6) || !pl_served(AF_INET, SOCK_DGRAM))
    return real_getaddrinfo(node, service, hints, res);
  /* a numeric address: nothing to ask */
  memset(&numeric, 0, sizeof numeric);
  if (hints) numeric = *hints;
  numeric.ai_flags |= AI_NUMERICHOST;
  numeric.ai_canonname = NULL;
  numeric.ai_addr = NULL;
  numeric.ai_next = NULL;
  rc = real_getaddrinfo(node, service, &numeric, res);
  if (rc != EAI_NONAME) return rc;
  if (strlen(node) > NAME_MAX_LEN || in_hosts(node)) return real_getaddrinfo(node, service, hints, res);
  if ((rc = lookup(node, family, flags, &got)) != 0) {
    DBG("getaddrinfo(%s): %s", node, gai_strerror(rc));
    return rc;
  }
  DBG("getaddrinfo(%s): %d addresses over DNS through the chain", node, got.n);
  return build(&got, service, hints, res);
}
