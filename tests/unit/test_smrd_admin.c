/* test_smrd_admin.c -- the admin socket: a request gets its reply, bad
 * requests get an error object, a second server on a live socket is
 * refused (smr/smrd/admin.c).  The client runs in a child process so that
 * the server's event loop can run in this one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "admin.h"

static char dir[64], sock[128];
static int calls;

static json_t *handler(void *ctx, const char *cmd, json_t *req, char *err,
                       size_t errlen) {
  (void)ctx;
  (void)req;
  calls++;
  if (!strcmp(cmd, "status")) return json_pack("{s:s,s:i}", "node", "n1",
                                               "epoch", 7);
  snprintf(err, errlen, "unknown command: %s", cmd);
  return NULL;
}

static void child_done(struct ev_loop *loop, ev_child *w, int revents) {
  (void)revents;
  ev_child_stop(loop, w);
  ev_break(loop, EVBREAK_ALL);
}

static void give_up(struct ev_loop *loop, ev_timer *w, int revents) {
  (void)w;
  (void)revents;
  ev_break(loop, EVBREAK_ALL);
}

/* Runs the client `request` in a child; returns its output line. */
static void roundtrip(const char *request, char *out, size_t outlen) {
  int p[2];
  assert_int_equal(pipe(p), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(p[0]);
    char err[256];
    json_error_t je;
    json_t *req = json_loads(request, 0, &je);
    json_t *rep = req ? smrd_admin_call(sock, req, 2000, err, sizeof(err))
                      : NULL;
    char *text = rep ? json_dumps(rep, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    dprintf(p[1], "%s", text ? text : err);
    _exit(0);
  }
  close(p[1]);
  struct ev_loop *loop = EV_DEFAULT;
  ev_child cw;
  ev_child_init(&cw, child_done, pid, 0);
  ev_child_start(loop, &cw);
  ev_timer tw;
  ev_timer_init(&tw, give_up, 5., 0.);
  ev_timer_start(loop, &tw);
  ev_run(loop, 0);
  ev_timer_stop(loop, &tw);
  ssize_t n = read(p[0], out, outlen - 1);
  out[n > 0 ? n : 0] = 0;
  close(p[0]);
  waitpid(pid, NULL, WNOHANG);
}

static void test_admin_socket(void **state) {
  (void)state;
  snprintf(dir, sizeof(dir), "/tmp/smrd-admin-XXXXXX");
  assert_non_null(mkdtemp(dir));
  snprintf(sock, sizeof(sock), "%s/admin.sock", dir);
  struct ev_loop *loop = EV_DEFAULT;
  struct smrd_admin *a;
  char err[256];
  assert_int_equal(smrd_admin_open(loop, sock, handler, NULL, &a, err,
                                   sizeof(err)),
                   0);
  char out[512];
  roundtrip("{\"cmd\": \"status\"}", out, sizeof(out));
  assert_string_equal(out, "{\"epoch\":7,\"node\":\"n1\"}");
  roundtrip("{\"cmd\": \"frobnicate\"}", out, sizeof(out));
  assert_string_equal(out, "{\"error\":\"unknown command: frobnicate\"}");
  roundtrip("{\"nocmd\": 1}", out, sizeof(out));
  assert_non_null(strstr(out, "no \\\"cmd\\\""));
  assert_int_equal(calls, 2);
  /* A second server on a live socket is refused. */
  struct smrd_admin *b;
  assert_int_equal(smrd_admin_open(loop, sock, handler, NULL, &b, err,
                                   sizeof(err)),
                   -EADDRINUSE);
  assert_non_null(strstr(err, "another smrd"));
  smrd_admin_close(a);
  /* Without a server the client says so. */
  json_t *req = json_pack("{s:s}", "cmd", "status");
  assert_null(smrd_admin_call(sock, req, 500, err, sizeof(err)));
  assert_non_null(strstr(err, "cannot reach smrd"));
  json_decref(req);
  rmdir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_admin_socket)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
