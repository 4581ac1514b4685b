/* test_smrd_config.c -- smrd's configuration file: defaults, every check,
 * and messages that name the key at fault (smr/smrd/config.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"

static char file[64];
static char err[512];
static struct smrd_config cfg;

static const char *good =
    "[group]\n"
    "name = kv\n"
    "members = n1=10.77.0.1:7000, n2=10.77.0.2:7000, n3=[::1]:7000\n"
    "[node]\n"
    "id = n2\n"
    "data_dir = /var/lib/smr/n2\n"
    "[transport]\n"
    "tls_ca = ca.pem\n"
    "tls_cert = n2.pem\n"
    "tls_key = n2.key\n";

static int load(const char *text) {
  snprintf(file, sizeof(file), "/tmp/smrd-cfg-XXXXXX");
  int fd = mkstemp(file);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  close(fd);
  int rc = smrd_config_load(file, &cfg, err, sizeof(err));
  unlink(file);
  return rc;
}

/* The good file with one line appended (a later key overrides). */
static int load_with(const char *extra) {
  char text[4096];
  snprintf(text, sizeof(text), "%s%s", good, extra);
  return load(text);
}

static void test_defaults(void **state) {
  (void)state;
  assert_int_equal(load(good), 0);
  assert_string_equal(cfg.group, "kv");
  assert_int_equal(cfg.n_members, 3);
  assert_string_equal(cfg.members[2].addr, "[::1]:7000");
  assert_string_equal(cfg.addr, "10.77.0.2:7000");
  assert_string_equal(cfg.admin_socket, "/var/lib/smr/n2/admin.sock");
  assert_int_equal(cfg.heartbeat_ms, 20);
  assert_int_equal(cfg.suspect_ms, 200);
  assert_int_equal(cfg.durable, 1); /* safe default: fsync */
  assert_int_equal(cfg.port, 6379);
  assert_string_equal(cfg.service, "kv");
  assert_int_equal(cfg.relay, 0); /* ORDERs to every member */
  assert_int_equal(load_with("[transport]\nrelay = chain\n"), 0);
  assert_int_equal(cfg.relay, 1);
  assert_int_equal(load_with("[transport]\nrelay = off\n"), 0);
  assert_int_equal(cfg.relay, 0);
  assert_int_equal(cfg.rdma_busy_poll_us, 0); /* sleeps on the channel */
  assert_int_equal(load_with("[transport]\nrdma_busy_poll_us = 50\n"), 0);
  assert_int_equal(cfg.rdma_busy_poll_us, 50);
}

static void expect_error(const char *text, const char *needle) {
  assert_int_equal(load(text), -1);
  if (strstr(err, needle) == NULL)
    fail_msg("error '%s' does not mention '%s'", err, needle);
  assert_non_null(strstr(err, "/tmp/smrd-cfg-")); /* names the file */
}

static void expect_error_with(const char *extra, const char *needle) {
  char text[4096];
  snprintf(text, sizeof(text), "%s%s", good, extra);
  expect_error(text, needle);
}

static void test_errors_name_the_key(void **state) {
  (void)state;
  expect_error_with("[failure]\nsuspect_ms = 10\n", "suspect_ms");
  expect_error_with("[failure]\nheartbeat_ms = abc\n", "heartbeat_ms");
  expect_error_with("[failure]\nsuspect_ms = -5\n", "suspect_ms");
  expect_error_with("[failure]\nsuspec_ms = 300\n", "unknown key");
  expect_error_with("[durability]\nmode = sometimes\n", "mode");
  expect_error_with("[durability]\ncheckpoint_every = 0\n", "checkpoint_every");
  expect_error_with("[service]\nport = 70000\n", "port");
  expect_error_with("[service]\nkind = sql\n", "kind");
  expect_error_with("[vip]\ngate = maybe\n", "gate");
  expect_error_with("[vip]\naddress = 10.77.0.100/24\n", "device");
  expect_error_with("[vip]\naddress = 10.77.0.100\n", "address/prefix");
  expect_error_with("[transport]\nkind = carrier-pigeon\n", "kind");
  expect_error_with("[transport]\nrelay = binomial\n", "relay");
  expect_error_with("[transport]\nrdma_busy_poll_us = 2000000\n",
                    "rdma_busy_poll_us");
  expect_error_with("[transport]\ninsecure = yes\n", "choose one");
  expect_error_with("[node]\naddr = 10.77.0.9:7000\n", "differs");
  expect_error_with("[weird]\nx = 1\n", "unknown key");
  expect_error("[group]\nname = kv\n", "members");
  expect_error("[group]\nname = kv\nmembers = n1=a:1\n", "[node] id");
  expect_error("[group]\nname = kv\nmembers = n1=a:1\n[node]\nid = n1\n",
               "data_dir");
  expect_error("[group]\nname = kv\nmembers = n1=a:1, n1=b:2\n", "twice");
  expect_error("[group]\nname = kv\nmembers = n1=a\n", "host:port");
  expect_error("[group]\nname = kv\nmembers = n1\n", "id=host:port");
  expect_error("[group]\nname = bad name\n", "name");
  expect_error("this is not ini\n", "line 1");
}

static void test_tls_rules(void **state) {
  (void)state;
  const char *base =
      "[group]\nname = kv\nmembers = n1=127.0.0.1:7000\n"
      "[node]\nid = n1\ndata_dir = /tmp/x\n";
  char text[1024];
  snprintf(text, sizeof(text), "%s", base);
  expect_error(text, "insecure = yes"); /* no TLS and not insecure */
  snprintf(text, sizeof(text), "%s[transport]\ntls_ca = ca.pem\n", base);
  expect_error(text, "all three");
  snprintf(text, sizeof(text), "%s[transport]\ninsecure = yes\n", base);
  assert_int_equal(load(text), 0);
  assert_int_equal(cfg.insecure, 1);
}

static void test_joiner_needs_addr(void **state) {
  (void)state;
  const char *base =
      "[group]\nname = kv\nmembers = n1=127.0.0.1:7000\n"
      "[node]\nid = n4\ndata_dir = /tmp/x\n[transport]\ninsecure = yes\n";
  expect_error(base, "[node] addr");
  char text[1024];
  snprintf(text, sizeof(text), "%s[node]\naddr = 127.0.0.1:7004\n", base);
  assert_int_equal(load(text), 0);
  assert_string_equal(cfg.addr, "127.0.0.1:7004");
}

static void test_metrics(void **state) {
  (void)state;
  assert_int_equal(load(good), 0);
  assert_string_equal(cfg.metrics_listen, ""); /* default: no listener */
  assert_string_equal(cfg.metrics_allow, "127.0.0.0/8, ::1/128");
  assert_int_equal(load_with("[metrics]\nlisten = 127.0.0.1:9464\n"
                             "allow = 10.0.0.0/8, 2001:db8::/32, 192.0.2.7\n"),
                   0);
  assert_string_equal(cfg.metrics_listen, "127.0.0.1:9464");
  assert_string_equal(cfg.metrics_allow,
                      "10.0.0.0/8, 2001:db8::/32, 192.0.2.7");
  assert_int_equal(load_with("[metrics]\nlisten = [::1]:9464\n"), 0);
  assert_string_equal(cfg.metrics_listen, "[::1]:9464");
  assert_int_equal(load_with("[metrics]\nlisten =\n"), 0);
  assert_string_equal(cfg.metrics_listen, "");
  expect_error_with("[metrics]\nlisten = localhost:9464\n", "numeric");
  expect_error_with("[metrics]\nlisten = 9464\n", "[metrics] listen");
  expect_error_with("[metrics]\nlisten = 127.0.0.1:0\n", "[metrics] listen");
  expect_error_with("[metrics]\nallow =\n", "[metrics] allow: empty");
  expect_error_with("[metrics]\nallow = 10.0.0.1/8\n", "bits set");
  expect_error_with("[metrics]\nallow = 10.0.0.0/8, 300.0.0.0/8\n",
                    "'300.0.0.0/8'");
  expect_error_with("[metrics]\nport = 9464\n", "unknown key");
}

static void test_restart_schedule(void **state) {
  (void)state;
  uint64_t ms = 0;
  assert_int_equal(smrd_duration_ms("6h", &ms), 0);
  assert_int_equal(ms, 6u * 3600 * 1000);
  assert_int_equal(smrd_duration_ms("30m", &ms), 0);
  assert_int_equal(ms, 30u * 60 * 1000);
  assert_int_equal(smrd_duration_ms("90s", &ms), 0);
  assert_int_equal(ms, 90000);
  assert_int_equal(smrd_duration_ms("500ms", &ms), 0);
  assert_int_equal(ms, 500);
  assert_int_equal(smrd_duration_ms("2d", &ms), 0);
  assert_int_equal(ms, 2u * 86400 * 1000);
  assert_int_equal(smrd_duration_ms("15", &ms), 0); /* bare: seconds */
  assert_int_equal(ms, 15000);
  assert_int_equal(smrd_duration_ms("", &ms), -1);
  assert_int_equal(smrd_duration_ms("h", &ms), -1);
  assert_int_equal(smrd_duration_ms("-5s", &ms), -1);
  assert_int_equal(smrd_duration_ms("5 s", &ms), -1);
  assert_int_equal(smrd_duration_ms("5w", &ms), -1);
  assert_int_equal(smrd_duration_ms("99999999999999999999s", &ms), -1);

  assert_int_equal(load(good), 0);
  assert_int_equal(cfg.restart_every_ms, 0); /* default: never */
  assert_int_equal(cfg.corrupt_command, 0);  /* default: refused */
  assert_int_equal(load_with("[restart]\nevery = 6h\njitter = 30m\n"), 0);
  assert_int_equal(cfg.restart_every_ms, 6u * 3600 * 1000);
  assert_int_equal(cfg.restart_jitter_ms, 30u * 60 * 1000);
  assert_int_equal(load_with("[restart]\nevery = soon\n"), -1);
  assert_non_null(strstr(err, "[restart] every = soon"));
  /* Shorter than 10 x suspect_ms (200 ms by default): refused. */
  assert_int_equal(load_with("[restart]\nevery = 1s\n"), -1);
  assert_non_null(strstr(err, "[restart] every"));
  assert_int_equal(load_with("[restart]\nevery = 2s\n"), 0);
  assert_int_equal(load_with("[test]\ncorrupt_command = yes\n"), 0);
  assert_int_equal(cfg.corrupt_command, 1);
}

static void test_missing_file(void **state) {
  (void)state;
  assert_int_equal(smrd_config_load("/nonexistent/smrd.ini", &cfg, err,
                                    sizeof(err)),
                   -1);
  assert_non_null(strstr(err, "cannot open"));
  assert_int_equal(load_with("[durability]\nmode = memory\n"), 0);
  assert_int_equal(cfg.durable, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults),
      cmocka_unit_test(test_errors_name_the_key),
      cmocka_unit_test(test_tls_rules),
      cmocka_unit_test(test_joiner_needs_addr),
      cmocka_unit_test(test_metrics),
      cmocka_unit_test(test_restart_schedule),
      cmocka_unit_test(test_missing_file),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
