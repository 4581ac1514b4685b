/* allow.c -- allow lists of networks (see allow.h for the text form).
 *
 * The list comes from a configuration file, so it is parsed like outside
 * input (tests/fuzz/fuzz_allow.c): every entry is copied into a bounded
 * buffer before anything looks at it, addresses go through inet_pton()
 * (which takes only canonical numeric forms: no names, no "10.1", no
 * zone ids), the prefix is plain decimal without sign or leading zeros,
 * and a mistake is reported with the entry it was found in. */
#include "allow.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

/* An entry longer than this is no address/prefix. */
#define ENTRY_MAX (INET6_ADDRSTRLEN + 4)

static int fail(char *err, size_t errlen, const char *entry, size_t n,
                const char *why) {
  if (errlen > 0)
    snprintf(err, errlen, "'%.*s': %s", (int)(n < 60 ? n : 60), entry, why);
  return -1;
}

static int is_space(char c) { return c == ' ' || c == '\t'; }

/* Bit i (from the top) of a 16-byte address. */
static int bit(const uint8_t *addr, unsigned i) {
  return (addr[i / 8] >> (7 - i % 8)) & 1;
}

/* "0".."128" without sign or leading zeros; -1 if not. */
static int parse_prefix(const char *s) {
  if (s[0] < '0' || s[0] > '9' || (s[0] == '0' && s[1] != 0)) return -1;
  int v = 0;
  for (; *s; s++) {
    if (*s < '0' || *s > '9' || v > 128) return -1;
    v = v * 10 + (*s - '0');
  }
  return v <= 128 ? v : -1;
}

/* One entry, s[0..n): "addr", "addr/len". */
static int parse_net(const char *s, size_t n, struct smrd_allow_net *net,
                     char *err, size_t errlen) {
  char buf[ENTRY_MAX + 1];
  if (n > ENTRY_MAX) return fail(err, errlen, s, n, "not an address/prefix");
  memcpy(buf, s, n);
  buf[n] = 0;
  char *slash = strchr(buf, '/');
  if (slash != NULL) *slash = 0;
  memset(net, 0, sizeof(*net));
  net->family = strchr(buf, ':') != NULL ? AF_INET6 : AF_INET;
  unsigned bits = net->family == AF_INET ? 32 : 128;
  if (inet_pton(net->family, buf, net->addr) != 1)
    return fail(err, errlen, s, n,
                net->family == AF_INET
                    ? "not a numeric IPv4 address (a.b.c.d[/len])"
                    : "not a numeric IPv6 address (x:y::z[/len])");
  int prefix = (int)bits;
  if (slash != NULL && ((prefix = parse_prefix(slash + 1)) < 0 ||
                        (unsigned)prefix > bits))
    return fail(err, errlen, s, n,
                net->family == AF_INET ? "the prefix must be 0 to 32"
                                       : "the prefix must be 0 to 128");
  net->prefix = (unsigned)prefix;
  for (unsigned i = net->prefix; i < bits; i++)
    if (bit(net->addr, i))
      return fail(err, errlen, s, n,
                  "the address has bits set past the prefix (give the "
                  "network's first address)");
  return 0;
}

int smrd_allow_parse(const char *list, struct smrd_allow *a, char *err,
                     size_t errlen) {
  a->n = 0;
  if (errlen > 0) err[0] = 0;
  const char *p = list;
  while (is_space(*p)) p++;
  if (*p == 0) {
    if (errlen > 0)
      snprintf(err, errlen, "empty: nobody could connect (this host only is "
               "%s)", SMRD_ALLOW_LOOPBACK);
    return -1;
  }
  for (;;) {
    const char *end = strchr(p, ',');
    if (end == NULL) end = p + strlen(p);
    const char *s = p, *e = end;
    while (s < e && is_space(*s)) s++;
    while (e > s && is_space(e[-1])) e--;
    if (s == e) return fail(err, errlen, p, (size_t)(end - p), "empty entry");
    if (a->n == SMRD_ALLOW_MAX) {
      if (errlen > 0)
        snprintf(err, errlen, "more than %d networks", SMRD_ALLOW_MAX);
      return -1;
    }
    if (parse_net(s, (size_t)(e - s), &a->net[a->n], err, errlen) < 0)
      return -1;
    a->n++;
    if (*end == 0) return 0;
    p = end + 1;
  }
}

static int in_net(const struct smrd_allow_net *net, int family,
                  const uint8_t *addr) {
  if (net->family != family) return 0;
  unsigned whole = net->prefix / 8, rest = net->prefix % 8;
  if (memcmp(net->addr, addr, whole) != 0) return 0;
  if (rest == 0) return 1;
  uint8_t mask = (uint8_t)(0xff << (8 - rest));
  return (addr[whole] & mask) == net->addr[whole];
}

int smrd_allow_match(const struct smrd_allow *a, const struct sockaddr *sa,
                     socklen_t salen) {
  uint8_t v4[4], v6[16];
  int has4 = 0, has6 = 0;
  if (sa == NULL) return 0;
  /* Copied out, not cast: sa need not be aligned for sockaddr_in. */
  if (sa->sa_family == AF_INET && salen >= sizeof(struct sockaddr_in)) {
    struct sockaddr_in s4;
    memcpy(&s4, sa, sizeof(s4));
    memcpy(v4, &s4.sin_addr, 4);
    has4 = 1;
  } else if (sa->sa_family == AF_INET6 &&
             salen >= sizeof(struct sockaddr_in6)) {
    struct sockaddr_in6 s6;
    memcpy(&s6, sa, sizeof(s6));
    memcpy(v6, &s6.sin6_addr, 16);
    has6 = 1;
    if (IN6_IS_ADDR_V4MAPPED(&s6.sin6_addr)) {
      memcpy(v4, v6 + 12, 4);
      has4 = 1;
    }
  }
  for (size_t i = 0; i < a->n; i++)
    if ((has4 && in_net(&a->net[i], AF_INET, v4)) ||
        (has6 && in_net(&a->net[i], AF_INET6, v6)))
      return 1;
  return 0;
}

void smrd_allow_format(const struct smrd_allow *a, char *buf, size_t cap) {
  size_t off = 0;
  if (cap == 0) return;
  buf[0] = 0;
  for (size_t i = 0; i < a->n && off < cap; i++) {
    char host[INET6_ADDRSTRLEN];
    if (inet_ntop(a->net[i].family, a->net[i].addr, host, sizeof(host)) ==
        NULL)
      snprintf(host, sizeof(host), "?");
    int w = snprintf(buf + off, cap - off, "%s%s/%u", i ? ", " : "", host,
                     a->net[i].prefix);
    if (w < 0) break;
    off += (size_t)w;
  }
}
