/* fuzz_net_hello.c -- fuzz target for the TCP transport's parsers of
 * outside bytes (smr/net/tcp_proto.c): the connection hello, member ids and
 * "host:port" addresses.
 *
 * Each input is used two ways:
 *
 *  1. As the first bytes of a connection.  smr_net_hello_parse() must
 *     return a length, 0 or a documented error, and agree with itself on
 *     every prefix the way a stream reader needs: once a prefix gives an
 *     answer (a length or an error), every longer prefix gives the same.
 *     A hello that parses must carry valid ids and re-encode to exactly the
 *     bytes it took (the encoding is canonical).
 *
 *  2. As text (up to the first NUL, at most 255 bytes).  A valid member id
 *     must encode into a hello and parse back; an address that parses must
 *     format to text that parses to the same socket address, and be
 *     refused with port 0 unless a listener's port 0 is allowed.
 *
 * Oracle failures abort (FUZZ_CHECK).  The same file runs under libFuzzer
 * and under replay.c. */
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "fuzz.h"
#include "net.h"
#include "tcp_proto.h"

#define PREFIX_MAX (SMR_NET_HELLO_MAX + 8)

static void check_hello(const uint8_t *data, size_t size) {
  struct smr_net_hello h, h2;
  uint8_t again[SMR_NET_HELLO_MAX];
  long first = 0;
  size_t lim = size < PREFIX_MAX ? size : PREFIX_MAX;

  for (size_t k = 0; k <= lim; k++) {
    long r = smr_net_hello_parse(data, k, &h);
    FUZZ_CHECK(r == 0 || r == -EBADMSG || r == -EPROTO ||
               (r >= SMR_NET_HELLO_FIXED + 2 && r <= SMR_NET_HELLO_MAX &&
                (size_t)r <= k));
    if (first != 0) FUZZ_CHECK(r == first);
    if (r != 0 && first == 0) first = r;
  }
  long r = smr_net_hello_parse(data, size, &h);
  FUZZ_CHECK(size <= PREFIX_MAX || first == 0 || r == first);
  if (r <= 0) return;
  FUZZ_CHECK(h.kind >= SMR_NET_HELLO && h.kind <= SMR_NET_ACCEPT_RDMA);
  FUZZ_CHECK((h.kind == SMR_NET_ACCEPT_RDMA) == (h.rdma_port != 0));
  FUZZ_CHECK(smr_net_id_valid(h.from) && smr_net_id_valid(h.to));
  size_t n = smr_net_hello_encode(again, sizeof again, &h);
  FUZZ_CHECK(n == (size_t)r && memcmp(again, data, n) == 0);
  FUZZ_CHECK(smr_net_hello_encode(again, n - 1, &h) == 0);
  FUZZ_CHECK(smr_net_hello_parse(again, n, &h2) == (long)n);
  FUZZ_CHECK(h2.kind == h.kind && strcmp(h2.from, h.from) == 0 &&
             strcmp(h2.to, h.to) == 0 && h2.rdma_port == h.rdma_port &&
             memcmp(h2.token, h.token, sizeof h.token) == 0);
}

static int same_addr(const struct sockaddr_storage *a,
                     const struct sockaddr_storage *b) {
  if (a->ss_family != b->ss_family) return 0;
  if (a->ss_family == AF_INET) {
    const struct sockaddr_in *x = (const struct sockaddr_in *)a,
                             *y = (const struct sockaddr_in *)b;
    return x->sin_port == y->sin_port &&
           x->sin_addr.s_addr == y->sin_addr.s_addr;
  }
  const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)a,
                            *y = (const struct sockaddr_in6 *)b;
  return x->sin6_port == y->sin6_port &&
         memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
}

static void check_text(const uint8_t *data, size_t size) {
  char s[256], text[SMR_NET_ADDRSTR_MAX];
  struct sockaddr_storage ss, ss2;
  socklen_t len, len2;
  size_t n = 0;

  while (n < size && n < sizeof s - 1 && data[n] != 0) {
    s[n] = (char)data[n];
    n++;
  }
  s[n] = '\0';

  if (smr_net_id_valid(s)) {
    struct smr_net_hello h, h2;
    uint8_t buf[SMR_NET_HELLO_MAX];
    memset(&h, 0, sizeof h);
    h.kind = SMR_NET_HELLO;
    memcpy(h.from, s, n + 1);
    memcpy(h.to, s, n + 1);
    size_t m = smr_net_hello_encode(buf, sizeof buf, &h);
    FUZZ_CHECK(m == SMR_NET_HELLO_FIXED + 2 * n);
    FUZZ_CHECK(smr_net_hello_parse(buf, m, &h2) == (long)m);
    FUZZ_CHECK(strcmp(h2.from, s) == 0);
  }

  int r0 = smr_net_addr_parse(s, 0, &ss, &len);
  int r1 = smr_net_addr_parse(s, 1, &ss2, &len2);
  FUZZ_CHECK(r0 == 0 || r0 == -EINVAL);
  FUZZ_CHECK(r1 == 0 || r1 == -EINVAL);
  FUZZ_CHECK(r0 != 0 || r1 == 0);       /* port 0 only widens */
  FUZZ_CHECK((r0 == 0) == smr_net_addr_valid(s));
  if (r1 != 0) return;
  FUZZ_CHECK(ss2.ss_family == AF_INET || ss2.ss_family == AF_INET6);
  smr_net_addr_format((struct sockaddr *)&ss2, len2, text, sizeof text);
  FUZZ_CHECK(smr_net_addr_parse(text, 1, &ss, &len) == 0);
  FUZZ_CHECK(len == len2 && same_addr(&ss, &ss2));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  check_hello(data, size);
  check_text(data, size);
  return 0;
}
