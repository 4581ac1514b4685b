/* test_smrd_http.c -- smrd's metrics endpoint (smr/smrd/http.c) and its
 * allow lists (smr/smrd/allow.c).
 *
 * The listener runs on an ephemeral loopback port in this process's event
 * loop; the client is a plain socket written by hand.  Each exchange sends
 * the request (the kernel completes the TCP handshake without the server),
 * then runs the loop until the server has closed the connection: the
 * requests ask for "Connection: close", and a refused client is closed at
 * accept.  A 5 s timer only turns a hang into a failure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "allow.h"
#include "http.h"

/* ------------------------------------------------------------- client */

struct client {
  ev_io w;
  char buf[65536];
  size_t len;
  int closed;
  int timed_out;
  const char *until; /* stop once buf holds this (NULL: at EOF) */
};

static void on_client_read(struct ev_loop *loop, ev_io *w, int revents) {
  (void)revents;
  struct client *c = w->data;
  ssize_t r = read(w->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len);
  if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (r > 0) {
    c->len += (size_t)r;
    c->buf[c->len] = 0;
    if (c->until != NULL && strstr(c->buf, c->until) != NULL) {
      ev_break(loop, EVBREAK_ALL);
      return;
    }
    if (c->len < sizeof(c->buf) - 1) return;
  }
  /* EOF, reset (a refused client) or a full buffer: done. */
  c->closed = 1;
  ev_io_stop(loop, w);
  ev_break(loop, EVBREAK_ALL);
}

static void on_guard(struct ev_loop *loop, ev_timer *w, int revents) {
  (void)revents;
  struct client *c = w->data;
  c->timed_out = 1;
  ev_break(loop, EVBREAK_ALL);
}

/* Connects to 127.0.0.1:port from the address from (NULL: any). */
static struct client *dial(struct ev_loop *loop, uint16_t port,
                           const char *from) {
  struct client *c = calloc(1, sizeof(*c));
  assert_non_null(c);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  struct sockaddr_in sa = {.sin_family = AF_INET};
  if (from != NULL) {
    assert_int_equal(inet_pton(AF_INET, from, &sa.sin_addr), 1);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  }
  sa.sin_port = htons(port);
  assert_int_equal(inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr), 1);
  assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  ev_io_init(&c->w, on_client_read, fd, EV_READ);
  c->w.data = c;
  ev_io_start(loop, &c->w);
  return c;
}

/* Sends request, then runs the loop until the server has sent until (NULL:
 * until it closed the connection). */
static void roundtrip(struct ev_loop *loop, struct client *c,
                      const char *request, const char *until) {
  size_t n = strlen(request);
  assert_int_equal(send(c->w.fd, request, n, MSG_NOSIGNAL), (ssize_t)n);
  c->until = until;
  ev_timer guard;
  ev_timer_init(&guard, on_guard, 5., 0.);
  guard.data = c;
  ev_timer_start(loop, &guard);
  if (!c->closed) ev_run(loop, 0);
  ev_timer_stop(loop, &guard);
  assert_false(c->timed_out);
}

static void hang_up(struct ev_loop *loop, struct client *c) {
  ev_io_stop(loop, &c->w);
  close(c->w.fd);
  free(c);
}

/* One request on a connection of its own; the reply is in the result's
 * buf (free() it). */
static struct client *exchange(struct ev_loop *loop, uint16_t port,
                               const char *from, const char *request) {
  struct client *c = dial(loop, port, from);
  roundtrip(loop, c, request, NULL);
  ev_io_stop(loop, &c->w);
  close(c->w.fd);
  return c;
}

static int count(const char *hay, const char *needle) {
  int n = 0;
  for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++) n++;
  return n;
}

/* ----------------------------------------------------------- listener */

struct fixture {
  struct ev_loop *loop;
  struct smrd_http *h;
  int calls;
  int fail;
  pthread_t thread;
};

static const char *body = "# HELP smr_up Up.\n# TYPE smr_up gauge\nsmr_up 1\n";

static char *produce(void *ctx, size_t *len) {
  struct fixture *f = ctx;
  f->calls++;
  /* Called on the loop's thread: smrd's state is not thread-safe. */
  assert_true(pthread_equal(pthread_self(), f->thread));
  if (f->fail) return NULL;
  *len = strlen(body);
  return strdup(body);
}

static int setup(void **state) {
  struct fixture *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  f->loop = ev_loop_new(EVFLAG_AUTO);
  f->thread = pthread_self();
  char err[256];
  assert_int_equal(smrd_http_open(f->loop, "127.0.0.1:0", NULL, produce, f,
                                  &f->h, err, sizeof(err)),
                   0);
  assert_true(smrd_http_port(f->h) != 0);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  struct fixture *f = *state;
  smrd_http_close(f->h);
  ev_loop_destroy(f->loop);
  free(f);
  return 0;
}

static struct client *ask(struct fixture *f, const char *request) {
  return exchange(f->loop, smrd_http_port(f->h), NULL, request);
}

static void test_get_metrics(void **state) {
  struct fixture *f = *state;
  struct client *c = ask(f, "GET /metrics HTTP/1.1\r\nHost: x\r\n"
                            "Connection: close\r\n\r\n");
  assert_non_null(strstr(c->buf, "HTTP/1.1 200"));
  assert_non_null(strstr(c->buf, "Content-Type: text/plain; version=0.0.4"));
  const char *b = strstr(c->buf, "\r\n\r\n");
  assert_non_null(b);
  assert_string_equal(b + 4, body);
  assert_int_equal(f->calls, 1);
  free(c);
  /* A query string does not change the path; HTTP/1.0 works too. */
  c = ask(f, "GET /metrics?x=1 HTTP/1.0\r\n\r\n");
  assert_non_null(strstr(c->buf, " 200 "));
  assert_non_null(strstr(c->buf, "smr_up 1\n"));
  free(c);
  /* HEAD: the headers alone. */
  c = ask(f, "HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  assert_non_null(strstr(c->buf, "HTTP/1.1 200"));
  assert_null(strstr(c->buf, "smr_up 1"));
  free(c);
  assert_int_equal(smrd_http_refused(f->h), 0);
}

static void test_keepalive(void **state) {
  struct fixture *f = *state;
  /* Two requests on one connection (pipelined), the second closes it. */
  struct client *c = ask(f, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
                            "GET /metrics HTTP/1.1\r\nHost: x\r\n"
                            "Connection: close\r\n\r\n");
  assert_int_equal(count(c->buf, "HTTP/1.1 200"), 2);
  assert_int_equal(count(c->buf, "smr_up 1\n"), 2);
  assert_int_equal(f->calls, 2);
  free(c);
}

/* Keep-alive as a scraper uses it: the second request after the first
 * reply, on the same connection. */
static void test_keepalive_sequential(void **state) {
  struct fixture *f = *state;
  struct client *c = dial(f->loop, smrd_http_port(f->h), NULL);
  roundtrip(f->loop, c, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
            "smr_up 1\n");
  assert_false(c->closed);
  c->len = 0;
  roundtrip(f->loop, c, "GET /metrics HTTP/1.1\r\nHost: x\r\n"
                        "Connection: close\r\n\r\n", NULL);
  assert_true(c->closed);
  assert_non_null(strstr(c->buf, "HTTP/1.1 200"));
  assert_non_null(strstr(c->buf, "smr_up 1\n"));
  assert_int_equal(f->calls, 2);
  hang_up(f->loop, c);
}

static void test_not_found_and_not_allowed(void **state) {
  struct fixture *f = *state;
  struct client *c = ask(f, "GET / HTTP/1.1\r\nHost: x\r\n"
                            "Connection: close\r\n\r\n");
  assert_non_null(strstr(c->buf, "HTTP/1.1 404"));
  free(c);
  c = ask(f, "GET /metricsx HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  assert_non_null(strstr(c->buf, "HTTP/1.1 404"));
  free(c);
  c = ask(f, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
             "Connection: close\r\n\r\nhello");
  assert_non_null(strstr(c->buf, "HTTP/1.1 405"));
  assert_non_null(strstr(c->buf, "Allow: GET, HEAD"));
  free(c);
  c = ask(f, "DELETE /metrics HTTP/1.1\r\nHost: x\r\n"
             "Connection: close\r\n\r\n");
  assert_non_null(strstr(c->buf, "HTTP/1.1 405"));
  free(c);
  assert_int_equal(f->calls, 0);
}

static void test_callback_fails(void **state) {
  struct fixture *f = *state;
  f->fail = 1;
  struct client *c = ask(f, "GET /metrics HTTP/1.1\r\nHost: x\r\n"
                            "Connection: close\r\n\r\n");
  assert_non_null(strstr(c->buf, "HTTP/1.1 500"));
  free(c);
}

/* Only 127.0.0.2 may ask: a client from 127.0.0.1 is closed unanswered
 * (and counted), one from 127.0.0.2 is served. */
static void test_allow_list_refuses(void **state) {
  (void)state;
  struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
  struct fixture f = {.loop = loop, .thread = pthread_self()};
  char err[256];
  assert_int_equal(smrd_http_open(loop, "127.0.0.1:0", "127.0.0.2/32",
                                  produce, &f, &f.h, err, sizeof(err)),
                   0);
  const char *req = "GET /metrics HTTP/1.1\r\nHost: x\r\n"
                    "Connection: close\r\n\r\n";
  struct client *c = exchange(loop, smrd_http_port(f.h), "127.0.0.1", req);
  assert_int_equal(c->len, 0);
  assert_int_equal(smrd_http_refused(f.h), 1);
  assert_int_equal(f.calls, 0);
  free(c);
  c = exchange(loop, smrd_http_port(f.h), "127.0.0.2", req);
  assert_non_null(strstr(c->buf, "HTTP/1.1 200"));
  assert_int_equal(smrd_http_refused(f.h), 1);
  assert_int_equal(f.calls, 1);
  free(c);
  smrd_http_close(f.h);
  ev_loop_destroy(loop);
}

static void expect_open_error(struct ev_loop *loop, const char *listen,
                              const char *allow, const char *needle) {
  static char dummy;
  char err[256] = "";
  struct smrd_http *h = (struct smrd_http *)&dummy; /* must become NULL */
  int rc = smrd_http_open(loop, listen, allow, produce, NULL, &h, err,
                          sizeof(err));
  assert_true(rc < 0);
  assert_null(h);
  if (strstr(err, needle) == NULL)
    fail_msg("error '%s' does not mention '%s'", err, needle);
  assert_null(strchr(err, '\n')); /* one line */
}

static void test_open_errors(void **state) {
  struct fixture *f = *state;
  char addr[64];
  snprintf(addr, sizeof(addr), "127.0.0.1:%u", smrd_http_port(f->h));
  /* The port is taken (by the fixture's listener). */
  expect_open_error(f->loop, addr, NULL, addr);
  expect_open_error(f->loop, addr, NULL, "in use");
  /* Not an address of this host (TEST-NET-1), unless the host lets any
   * address be bound (net.ipv4.ip_nonlocal_bind). */
  FILE *nl = fopen("/proc/sys/net/ipv4/ip_nonlocal_bind", "r");
  int nonlocal = nl != NULL && fgetc(nl) == '1';
  if (nl != NULL) fclose(nl);
  if (!nonlocal) {
    expect_open_error(f->loop, "192.0.2.1:9464", NULL, "192.0.2.1:9464");
    expect_open_error(f->loop, "192.0.2.1:9464", NULL, "assign");
  }
  expect_open_error(f->loop, "localhost:9464", NULL, "numeric");
  expect_open_error(f->loop, "127.0.0.1", NULL, "numeric");
  expect_open_error(f->loop, "127.0.0.1:0", "10.0.0.1/8", "allow list");
  expect_open_error(f->loop, "127.0.0.1:0", "", "empty");
  /* The fixture's listener still serves. */
  struct client *c = ask(f, "GET /metrics HTTP/1.0\r\n\r\n");
  assert_non_null(strstr(c->buf, " 200 "));
  free(c);
}

static void test_ipv6_loopback(void **state) {
  (void)state;
  struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
  struct smrd_http *h;
  char err[256];
  int rc = smrd_http_open(loop, "[::1]:0", NULL, produce, NULL, &h, err,
                          sizeof(err));
  if (rc < 0) { /* a host without IPv6 */
    ev_loop_destroy(loop);
    skip();
  }
  assert_true(smrd_http_port(h) != 0);
  smrd_http_close(h);
  ev_loop_destroy(loop);
}

/* -------------------------------------------------------- allow lists */

static int matches(const struct smrd_allow *a, const char *addr) {
  struct sockaddr_in s4 = {.sin_family = AF_INET};
  struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
  if (inet_pton(AF_INET, addr, &s4.sin_addr) == 1)
    return smrd_allow_match(a, (struct sockaddr *)&s4, sizeof(s4));
  assert_int_equal(inet_pton(AF_INET6, addr, &s6.sin6_addr), 1);
  return smrd_allow_match(a, (struct sockaddr *)&s6, sizeof(s6));
}

static void expect_list(const char *list, const char *canonical) {
  struct smrd_allow a;
  char err[200], text[1024];
  if (smrd_allow_parse(list, &a, err, sizeof(err)) != 0)
    fail_msg("'%s' refused: %s", list, err);
  smrd_allow_format(&a, text, sizeof(text));
  assert_string_equal(text, canonical);
}

static void expect_bad_list(const char *list, const char *needle) {
  struct smrd_allow a;
  char err[200];
  assert_int_equal(smrd_allow_parse(list, &a, err, sizeof(err)), -1);
  if (strstr(err, needle) == NULL)
    fail_msg("error '%s' for '%s' does not mention '%s'", err, list, needle);
}

static void test_allow_parse(void **state) {
  (void)state;
  expect_list(SMRD_ALLOW_LOOPBACK, "127.0.0.0/8, ::1/128");
  expect_list("10.1.2.3", "10.1.2.3/32");
  expect_list(" 10.0.0.0/8 ,\t192.168.0.0/16 ", "10.0.0.0/8, 192.168.0.0/16");
  expect_list("0.0.0.0/0, ::/0", "0.0.0.0/0, ::/0");
  expect_list("2001:DB8::/32, fe80::1", "2001:db8::/32, fe80::1/128");
  expect_bad_list("", "empty");
  expect_bad_list("   ", "empty");
  expect_bad_list("10.0.0.0/8,", "empty entry");
  expect_bad_list(",10.0.0.0/8", "empty entry");
  expect_bad_list("10.0.0.0/8,,::1", "empty entry");
  expect_bad_list("10.0.0.0/33", "'10.0.0.0/33'");
  expect_bad_list("::/129", "0 to 128");
  expect_bad_list("10.0.0.1/8", "bits set past the prefix");
  expect_bad_list("127.0.0.1/8", "bits set");
  expect_bad_list("localhost", "numeric IPv4");
  expect_bad_list("10.1", "numeric IPv4");
  expect_bad_list("010.0.0.1", "numeric IPv4");
  expect_bad_list("10.0.0.0/08", "prefix");
  expect_bad_list("10.0.0.0/+8", "prefix");
  expect_bad_list("10.0.0.0/", "prefix");
  expect_bad_list("10.0.0.0/8/8", "prefix");
  expect_bad_list("10.0.0.0 /8", "numeric");
  expect_bad_list("fe80::1%eth0", "numeric IPv6");
  expect_bad_list("[::1]", "numeric IPv6");
  char many[2048] = "";
  for (int i = 0; i <= SMRD_ALLOW_MAX; i++)
    snprintf(many + strlen(many), sizeof(many) - strlen(many), "%s10.0.%d.0/24",
             i ? "," : "", i);
  expect_bad_list(many, "more than");
}

static void test_allow_match(void **state) {
  (void)state;
  struct smrd_allow a;
  char err[200];
  assert_int_equal(smrd_allow_parse(SMRD_ALLOW_LOOPBACK, &a, err,
                                    sizeof(err)),
                   0);
  assert_true(matches(&a, "127.0.0.1"));
  assert_true(matches(&a, "127.255.255.254"));
  assert_true(matches(&a, "::1"));
  assert_true(matches(&a, "::ffff:127.0.0.1")); /* IPv4-mapped */
  assert_false(matches(&a, "128.0.0.1"));
  assert_false(matches(&a, "10.0.0.1"));
  assert_false(matches(&a, "::2"));
  assert_false(matches(&a, "::ffff:10.0.0.1"));
  assert_false(smrd_allow_match(&a, NULL, 0));
  struct sockaddr_in s4 = {.sin_family = AF_INET};
  assert_false(smrd_allow_match(&a, (struct sockaddr *)&s4, 4)); /* short */
  assert_int_equal(smrd_allow_parse("192.168.1.128/25, 2001:db8:8000::/33",
                                    &a, err, sizeof(err)),
                   0);
  assert_true(matches(&a, "192.168.1.128"));
  assert_true(matches(&a, "192.168.1.200"));
  assert_true(matches(&a, "192.168.1.255"));
  assert_false(matches(&a, "192.168.1.127"));
  assert_false(matches(&a, "192.168.0.200"));
  assert_true(matches(&a, "2001:db8:8000::1"));
  assert_true(matches(&a, "2001:db8:ffff::1"));
  assert_false(matches(&a, "2001:db8:7fff::1"));
  assert_int_equal(smrd_allow_parse("0.0.0.0/0", &a, err, sizeof(err)), 0);
  assert_true(matches(&a, "203.0.113.9"));
  assert_false(matches(&a, "2001:db8::1"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_get_metrics, setup, teardown),
      cmocka_unit_test_setup_teardown(test_keepalive, setup, teardown),
      cmocka_unit_test_setup_teardown(test_keepalive_sequential, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_not_found_and_not_allowed, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_callback_fails, setup, teardown),
      cmocka_unit_test(test_allow_list_refuses),
      cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
      cmocka_unit_test(test_ipv6_loopback),
      cmocka_unit_test(test_allow_parse),
      cmocka_unit_test(test_allow_match),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
