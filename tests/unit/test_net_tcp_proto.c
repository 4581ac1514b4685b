/* test_net_tcp_proto.c -- the TCP transport's parsers (smr/net/tcp_proto.c):
 * member ids, "host:port" addresses, the connection hello.
 *
 * Tables of accepted and refused inputs, round trips, and for the hello
 * every prefix of a good one (needs more bytes) and every single-byte
 * corruption (refused, or still a valid hello that re-encodes the same). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "net.h"
#include "tcp_proto.h"

static void test_id_valid(void **state) {
  static const char *good[] = {"n1", "a", "Z", "0", "node-1", "db_2.east",
                               "abcdefghijklmnopqrstuvwxyz01234"};
  static const char *bad[] = {"", "-n1", ".n1", "_n1", "n 1", "n1\n",
                              "n/1", "n:1", "n1@x", "\xc3\xa9t\xc3\xa9",
                              "abcdefghijklmnopqrstuvwxyz012345"};

  (void)state;
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
    assert_true(smr_net_id_valid(good[i]));
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_false(smr_net_id_valid(bad[i]));
  assert_false(smr_net_id_valid(NULL));
}

static void test_addr_parse(void **state) {
  static const struct {
    const char *s;
    int family, port;
    const char *host;
  } good[] = {
      {"127.0.0.1:7000", AF_INET, 7000, "127.0.0.1"},
      {"10.77.0.1:1", AF_INET, 1, "10.77.0.1"},
      {"0.0.0.0:65535", AF_INET, 65535, "0.0.0.0"},
      {"[::1]:7000", AF_INET6, 7000, "::1"},
      {"[fe80::1:2]:80", AF_INET6, 80, "fe80::1:2"},
      {"[::ffff:1.2.3.4]:9", AF_INET6, 9, "::ffff:1.2.3.4"},
  };
  static const char *bad[] = {
      "",           ":7000",         "127.0.0.1",     "127.0.0.1:",
      "127.0.0.1:x", "127.0.0.1:-1", "127.0.0.1:+80", "127.0.0.1: 80",
      "127.0.0.1:65536", "127.0.0.1:000001", "127.1:80", "localhost:80",
      "::1:7000",   "[::1]7000",     "[::1]:",        "[::1",
      "[]:80",      "[1.2.3.4]:80",  "1.2.3.4:80 ",   "[::1]:80:80",
      "1.2.3.4.5:80", "0x7f.0.0.1:80", "127.0.0.1:0",
  };
  struct sockaddr_storage ss;
  socklen_t len;
  char buf[SMR_NET_ADDRSTR_MAX], host[64];

  (void)state;
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    assert_int_equal(smr_net_addr_parse(good[i].s, 0, &ss, &len), 0);
    assert_int_equal(ss.ss_family, good[i].family);
    assert_true(smr_net_addr_valid(good[i].s));
    if (good[i].family == AF_INET) {
      struct sockaddr_in *a = (struct sockaddr_in *)&ss;
      assert_int_equal(len, sizeof *a);
      assert_int_equal(ntohs(a->sin_port), good[i].port);
      inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    } else {
      struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
      assert_int_equal(len, sizeof *a);
      assert_int_equal(ntohs(a->sin6_port), good[i].port);
      inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    }
    assert_string_equal(host, good[i].host);
    /* Formatting gives back the same text, which parses the same. */
    smr_net_addr_format((struct sockaddr *)&ss, len, buf, sizeof buf);
    assert_string_equal(buf, good[i].s);
  }
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    if (smr_net_addr_parse(bad[i], 0, &ss, &len) != -EINVAL)
      fail_msg("accepted \"%s\"", bad[i]);
    assert_false(smr_net_addr_valid(bad[i]));
  }
  assert_false(smr_net_addr_valid(NULL));
  /* Port 0 only where asked for (a listener). */
  assert_int_equal(smr_net_addr_parse("127.0.0.1:0", 1, &ss, &len), 0);
  assert_int_equal(smr_net_addr_parse("[::]:0", 1, &ss, &len), 0);
  assert_int_equal(smr_net_addr_parse("[::]:0", 0, &ss, &len), -EINVAL);
  /* Anything else formats as "?". */
  ss.ss_family = AF_UNIX;
  smr_net_addr_format((struct sockaddr *)&ss, sizeof ss, buf, sizeof buf);
  assert_string_equal(buf, "?");
  smr_net_addr_format(NULL, 0, buf, sizeof buf);
  assert_string_equal(buf, "?");
}

static size_t encode(uint8_t *buf, uint8_t kind, const char *from,
                     const char *to) {
  struct smr_net_hello h;
  memset(&h, 0, sizeof h);
  h.kind = kind;
  snprintf(h.from, sizeof h.from, "%s", from);
  snprintf(h.to, sizeof h.to, "%s", to);
  if (kind == SMR_NET_ACCEPT_RDMA) {
    h.rdma_port = 0x1b58; /* 7000 */
    for (int i = 0; i < SMR_NET_TOKEN_LEN; i++) h.token[i] = (uint8_t)(0xa0 + i);
  }
  return smr_net_hello_encode(buf, SMR_NET_HELLO_MAX, &h);
}

static void test_hello_layout(void **state) {
  static const uint8_t want[] = {0x73, 0x6d, 0x72, 0x6e, 1, 1,  2,
                                 'n',  '1',  3,    'n',  'x', '2'};
  uint8_t buf[SMR_NET_HELLO_MAX + 8];
  struct smr_net_hello h;

  (void)state;
  assert_int_equal(encode(buf, SMR_NET_HELLO, "n1", "nx2"), sizeof want);
  assert_memory_equal(buf, want, sizeof want);
  /* Followed by other bytes: only the hello is taken. */
  buf[sizeof want] = 0x53;
  assert_int_equal(smr_net_hello_parse(buf, sizeof want + 1, &h),
                   sizeof want);
  assert_int_equal(h.kind, SMR_NET_HELLO);
  assert_string_equal(h.from, "n1");
  assert_string_equal(h.to, "nx2");
  /* The longest ids with an RDMA offer fill SMR_NET_HELLO_MAX exactly. */
  const char *l = "abcdefghijklmnopqrstuvwxyz01234";
  assert_int_equal(encode(buf, SMR_NET_REFUSE, l, l),
                   SMR_NET_HELLO_MAX - SMR_NET_RDMA_OFFER_LEN);
  assert_int_equal(encode(buf, SMR_NET_ACCEPT_RDMA, l, l), SMR_NET_HELLO_MAX);
  assert_int_equal(smr_net_hello_parse(buf, SMR_NET_HELLO_MAX, &h),
                   SMR_NET_HELLO_MAX);
  assert_string_equal(h.from, l);
  /* What the encoder refuses. */
  assert_int_equal(encode(buf, 0, "n1", "n2"), 0);
  assert_int_equal(encode(buf, SMR_NET_ACCEPT_RDMA + 1, "n1", "n2"), 0);
  struct smr_net_hello z = {.kind = SMR_NET_ACCEPT_RDMA, .from = "n1",
                            .to = "n2"}; /* port 0 */
  assert_int_equal(smr_net_hello_encode(buf, sizeof buf, &z), 0);
  assert_int_equal(encode(buf, SMR_NET_HELLO, "", "n2"), 0);
  assert_int_equal(encode(buf, SMR_NET_HELLO, "n1", "n 2"), 0);
  struct smr_net_hello g = {.kind = SMR_NET_ACCEPT, .from = "n1", .to = "n2"};
  assert_int_equal(smr_net_hello_encode(buf, 10, &g), 0);
  assert_int_equal(smr_net_hello_encode(buf, 12, &g), 12);
}

/* ACCEPT_RDMA: the ids, then the port (big endian) and the token. */
static void test_hello_rdma_offer(void **state) {
  static const uint8_t head[] = {0x73, 0x6d, 0x72, 0x6e, 1, 6, 2, 'n', '1',
                                 2,    'n',  '2',  0x1b, 0x58};
  uint8_t buf[SMR_NET_HELLO_MAX];
  struct smr_net_hello h;

  (void)state;
  size_t n = encode(buf, SMR_NET_ACCEPT_RDMA, "n1", "n2");
  assert_int_equal(n, sizeof head + SMR_NET_TOKEN_LEN);
  assert_memory_equal(buf, head, sizeof head);
  for (int i = 0; i < SMR_NET_TOKEN_LEN; i++)
    assert_int_equal(buf[sizeof head + i], 0xa0 + i);
  assert_int_equal(smr_net_hello_parse(buf, n, &h), (long)n);
  assert_int_equal(h.kind, SMR_NET_ACCEPT_RDMA);
  assert_int_equal(h.rdma_port, 7000);
  assert_memory_equal(h.token, buf + sizeof head, SMR_NET_TOKEN_LEN);
  for (size_t k = 0; k < n; k++) assert_int_equal(smr_net_hello_parse(buf, k, &h), 0);
  /* Port 0 is refused as soon as both its bytes are in. */
  buf[12] = buf[13] = 0;
  assert_int_equal(smr_net_hello_parse(buf, 13, &h), 0);
  assert_int_equal(smr_net_hello_parse(buf, 14, &h), -EBADMSG);
  assert_int_equal(smr_net_hello_parse(buf, n, &h), -EBADMSG);
  /* HELLO_RDMA carries nothing more than HELLO. */
  assert_int_equal(encode(buf, SMR_NET_HELLO_RDMA, "n1", "n2"), 12);
}

static void test_hello_prefixes_and_corruption(void **state) {
  uint8_t good[SMR_NET_HELLO_MAX], buf[SMR_NET_HELLO_MAX], again[SMR_NET_HELLO_MAX];
  struct smr_net_hello h;
  size_t n;

  (void)state;
  for (uint8_t kind = SMR_NET_HELLO; kind <= SMR_NET_ACCEPT_RDMA; kind++) {
    n = encode(good, kind, "member-7", "n2");
    assert_true(n > 0);
    for (size_t k = 0; k < n; k++)
      assert_int_equal(smr_net_hello_parse(good, k, &h), 0);
    assert_int_equal(smr_net_hello_parse(good, n, &h), (long)n);
    assert_int_equal(h.kind, kind);
    for (size_t pos = 0; pos < n; pos++)
      for (int v = 0; v < 256; v++) {
        if (v == good[pos]) continue;
        memcpy(buf, good, n);
        buf[pos] = (uint8_t)v;
        long r = smr_net_hello_parse(buf, n, &h);
        if (r > 0) {
          /* Still a hello (another id byte or kind, or a shorter id):
           * canonical, so it re-encodes to what was parsed. */
          assert_int_equal(smr_net_hello_encode(again, sizeof again, &h),
                           (size_t)r);
          assert_memory_equal(again, buf, (size_t)r);
        } else if (r < 0) {
          assert_true(r == -EBADMSG || r == -EPROTO);
          assert_int_equal(r == -EPROTO, pos == 4);
          /* A fixed field is refused at its own byte; after that, or
           * after a length that points elsewhere, every longer prefix
           * gives the same answer. */
          if (pos < 6) assert_int_equal(smr_net_hello_parse(buf, pos + 1, &h), r);
          long first = 0;
          for (size_t k = 0; k <= n; k++) {
            long rk = smr_net_hello_parse(buf, k, &h);
            assert_true(rk <= 0);
            if (first < 0) assert_int_equal(rk, first);
            if (rk < 0) first = rk;
          }
          assert_int_equal(first, r);
        } else {
          /* A longer id length, or a kind that turned into ACCEPT_RDMA:
           * needs bytes that are not there yet. */
          assert_true(pos == 6 || pos == 9 + 6 ||
                      (pos == 5 && v == SMR_NET_ACCEPT_RDMA));
        }
      }
  }
  assert_int_equal(smr_net_hello_parse(NULL, 0, &h), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_id_valid),
      cmocka_unit_test(test_addr_parse),
      cmocka_unit_test(test_hello_layout),
      cmocka_unit_test(test_hello_prefixes_and_corruption),
      cmocka_unit_test(test_hello_rdma_offer),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
