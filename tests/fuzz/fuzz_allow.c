/* fuzz_allow.c -- fuzz target for allow lists of networks, [metrics]
 * allow (smr/smrd/allow.c): any bytes as the list must parse or be refused
 * with a message, never crash.  A list that parses is canonical: its
 * networks have no host bits, its text form parses back to the same list,
 * each network's own address matches it, and (for one network) the
 * address just outside it does not. */
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "allow.h"
#include "fuzz.h"

static int matches(const struct smrd_allow *a, int family,
                   const uint8_t *addr) {
  struct sockaddr_in s4 = {.sin_family = AF_INET};
  struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
  if (family == AF_INET) {
    memcpy(&s4.sin_addr, addr, 4);
    return smrd_allow_match(a, (struct sockaddr *)&s4, sizeof(s4));
  }
  memcpy(&s6.sin6_addr, addr, 16);
  return smrd_allow_match(a, (struct sockaddr *)&s6, sizeof(s6));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char list[4096];
  if (size >= sizeof(list)) size = sizeof(list) - 1;
  memcpy(list, data, size);
  list[size] = 0;
  struct smrd_allow a, b;
  char err[200];
  memset(err, 'x', sizeof(err));
  if (smrd_allow_parse(list, &a, err, sizeof(err)) < 0) {
    FUZZ_CHECK(err[0] != 0 && memchr(err, 0, sizeof(err)) != NULL);
    return 0;
  }
  FUZZ_CHECK(a.n >= 1 && a.n <= SMRD_ALLOW_MAX);
  for (size_t i = 0; i < a.n; i++) {
    const struct smrd_allow_net *n = &a.net[i];
    unsigned bits = n->family == AF_INET ? 32 : 128;
    FUZZ_CHECK(n->family == AF_INET || n->family == AF_INET6);
    FUZZ_CHECK(n->prefix <= bits);
    for (unsigned k = n->prefix; k < bits; k++)
      FUZZ_CHECK(((n->addr[k / 8] >> (7 - k % 8)) & 1) == 0);
    FUZZ_CHECK(matches(&a, n->family, n->addr));
  }
  if (a.n == 1 && a.net[0].prefix > 0) {
    uint8_t out[16];
    unsigned k = a.net[0].prefix - 1;
    memcpy(out, a.net[0].addr, sizeof(out));
    out[k / 8] ^= (uint8_t)(1u << (7 - k % 8));
    FUZZ_CHECK(!matches(&a, a.net[0].family, out));
  }
  char text[SMRD_ALLOW_MAX * (INET6_ADDRSTRLEN + 8)];
  smrd_allow_format(&a, text, sizeof(text));
  FUZZ_CHECK(smrd_allow_parse(text, &b, err, sizeof(err)) == 0);
  FUZZ_CHECK(b.n == a.n);
  for (size_t i = 0; i < a.n; i++)
    FUZZ_CHECK(b.net[i].family == a.net[i].family &&
               b.net[i].prefix == a.net[i].prefix &&
               memcmp(b.net[i].addr, a.net[i].addr, 16) == 0);
  return 0;
}
