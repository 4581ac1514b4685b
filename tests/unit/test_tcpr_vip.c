/* test_tcpr_vip.c -- unit tests of tcpr_parse_cidr (tcpr/vip.c), and of
 * the VIP calls' refusals that need no privileges (bad address, bad
 * device).  Adding, deleting and announcing a VIP for real is tested in
 * network namespaces: tests/netns/test_tcpr_vip.sh. */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "tcpr.h"

static void check_good(const char *cidr, const char *addr, unsigned prefix) {
  uint32_t a = 0xdeadbeef, want;
  unsigned p = 99;
  assert_int_equal(inet_pton(AF_INET, addr, &want), 1);
  if (tcpr_parse_cidr(cidr, &a, &p) != 0) fail_msg("refused \"%s\"", cidr);
  assert_int_equal(a, want);
  assert_int_equal(p, prefix);
}

static void test_parse_good(void **state) {
  (void)state;
  check_good("10.77.0.100/24", "10.77.0.100", 24);
  check_good("0.0.0.0/0", "0.0.0.0", 0);
  check_good("255.255.255.255/32", "255.255.255.255", 32);
  check_good("192.168.1.1/31", "192.168.1.1", 31);
  check_good("1.2.3.4/8", "1.2.3.4", 8);
  check_good("10.0.0.0/9", "10.0.0.0", 9);
  /* The address is kept as given (host bits are not cleared). */
  check_good("172.16.5.6/12", "172.16.5.6", 12);
  /* Network byte order, as struct in_addr. */
  uint32_t a;
  unsigned p;
  assert_int_equal(tcpr_parse_cidr("1.2.3.4/16", &a, &p), 0);
  const uint8_t *b = (const uint8_t *)&a;
  assert_int_equal(b[0], 1);
  assert_int_equal(b[3], 4);
  /* Outputs are optional. */
  assert_int_equal(tcpr_parse_cidr("1.2.3.4/16", NULL, NULL), 0);
}

static void test_parse_bad(void **state) {
  (void)state;
  static const char *const bad[] = {
      "10.0.0.1/33",
      "10.0.0.1",
      "1.2.3.4/24x",
      "",
      "256.1.1.1/8",
      "1.2.3/24",
      "1.2.3.4.5/24",
      "1.2.3.4/",
      "/24",
      "1.2.3.4/-1",
      "1.2.3.4/+8",
      " 1.2.3.4/8",
      "1.2.3.4/8 ",
      "1.2.3.4 /8",
      "1.2.3.4/ 8",
      "1..3.4/8",
      "1.2.3.4//8",
      "01.2.3.4/8",
      "1.2.3.4/08",
      "0x1.2.3.4/8",
      "1.2.3.4/100",
      "1.2.3.4/4294967304",
      "99999999999.1.1.1/8",
      "1.2.3.-4/8",
      "a.b.c.d/8",
      "1.2.3.4\n/8",
      "1.2.3.4/8\n",
      "1.2.3.4/24/24",
      "1,2,3,4/8",
      ".1.2.3/8",
      "1.2.3.4./8",
      "localhost/8",
      "1.2.3.256/8",
      "1.2.3.4/33",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    uint32_t a = 0x01020304;
    unsigned p = 7;
    int rc = tcpr_parse_cidr(bad[i], &a, &p);
    if (rc != -EINVAL) fail_msg("\"%s\": %d, want -EINVAL", bad[i], rc);
    /* Outputs untouched on refusal. */
    assert_int_equal(a, 0x01020304);
    assert_int_equal(p, 7);
  }
  assert_int_equal(tcpr_parse_cidr(NULL, NULL, NULL), -EINVAL);
}

/* Every bad argument is refused before any privileged call, with a
 * one-line reason. */
static void test_refusals(void **state) {
  (void)state;
  char err[256];

  err[0] = '\0';
  assert_int_equal(tcpr_vip_add("lo", "10.77.0.100/33", err, sizeof(err)),
                   -EINVAL);
  assert_non_null(strstr(err, "tcpr: vip add 10.77.0.100/33 on lo: "));
  assert_null(strchr(err, '\n'));

  err[0] = '\0';
  assert_int_equal(
      tcpr_vip_del("no-such-dev0", "10.77.0.100/24", err, sizeof(err)),
      -ENODEV);
  assert_string_equal(err,
                      "tcpr: vip del 10.77.0.100/24 on no-such-dev0: "
                      "No such device");

  err[0] = '\0';
  assert_int_equal(tcpr_vip_add("a-name-longer-than-ifnamsiz", "1.2.3.4/8", err,
                                sizeof(err)),
                   -ENODEV);
  assert_non_null(strstr(err, "No such device"));

  assert_int_equal(tcpr_vip_add(NULL, "1.2.3.4/8", err, sizeof(err)), -ENODEV);
  assert_int_equal(tcpr_vip_add("lo", NULL, err, sizeof(err)), -EINVAL);

  /* A tiny or absent err buffer is fine. */
  char small[8];
  assert_int_equal(tcpr_vip_add("lo", "bad", small, sizeof(small)), -EINVAL);
  assert_int_equal(strlen(small), sizeof(small) - 1);
  assert_int_equal(tcpr_vip_add("lo", "bad", NULL, 0), -EINVAL);

  assert_int_equal(tcpr_vip_present("lo", "1.2.3.4"), -EINVAL);
  assert_int_equal(tcpr_vip_present("no-such-dev0", "1.2.3.4/8"), -ENODEV);

  err[0] = '\0';
  assert_int_equal(
      tcpr_garp("no-such-dev0", htonl(0x0a4d0064), err, sizeof(err)), -ENODEV);
  assert_string_equal(err,
                      "tcpr: garp 10.77.0.100 on no-such-dev0: "
                      "No such device");
}

/* Reading is unprivileged: the loopback's 127.0.0.1/8 is there (in any
 * network namespace where lo is up), an unlikely address is not. */
static void test_present_lo(void **state) {
  (void)state;
  int rc = tcpr_vip_present("lo", "127.0.0.1/8");
  if (rc == 0) skip(); /* lo down or without its address: nothing to see */
  assert_int_equal(rc, 1);
  assert_int_equal(tcpr_vip_present("lo", "127.0.0.1/16"), 0);
  assert_int_equal(tcpr_vip_present("lo", "127.77.0.123/8"), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_good),
      cmocka_unit_test(test_parse_bad),
      cmocka_unit_test(test_refusals),
      cmocka_unit_test(test_present_lo),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
