/* smrctl.c -- the operator's CLI: asks a member's smrd over its admin
 * socket and prints the answer for a person, or as one JSON object.
 *
 *   smrctl [-s ADMIN_SOCKET | -c CONFIG] COMMAND [ARG] [--json]
 *
 * Exit status 0 on success; otherwise one line on stderr saying why. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "config.h"

static const char *usage =
    "usage: smrctl [-s ADMIN_SOCKET | -c CONFIG] COMMAND [ARG] [--json]\n"
    "commands:\n"
    "  status           this member's view of the group\n"
    "  checkpoint       every member checkpoints now\n"
    "  digest           every member's state digest at the last common\n"
    "                   checkpoint, and whether they agree\n"
    "  leave NODE       that member leaves the group gracefully\n"
    "  connections      client connections known to the group, with their\n"
    "                   replicated byte offsets (received, replied, acked)\n"
    "  metrics          Prometheus text exposition of this member's counters\n";

static void print_status(json_t *r) {
  printf("group %s, node %s (incarnation %" JSON_INTEGER_FORMAT
         ", pid %" JSON_INTEGER_FORMAT ", started %s)\n",
         json_string_value(json_object_get(r, "group")),
         json_string_value(json_object_get(r, "node")),
         json_integer_value(json_object_get(r, "incarnation")),
         json_integer_value(json_object_get(r, "pid")),
         json_string_value(json_object_get(r, "started_at")));
  json_t *vip = json_object_get(r, "vip_owner");
  printf("epoch %" JSON_INTEGER_FORMAT ", state %s, leader %s, vip owner %s\n",
         json_integer_value(json_object_get(r, "epoch")),
         json_string_value(json_object_get(r, "role")),
         json_string_value(json_object_get(r, "leader")),
         json_is_string(vip) ? json_string_value(vip) : "-");
  printf("applied %" JSON_INTEGER_FORMAT ", stable %" JSON_INTEGER_FORMAT
         ", digest %s\n",
         json_integer_value(json_object_get(r, "applied")),
         json_integer_value(json_object_get(r, "stable")),
         json_string_value(json_object_get(r, "state_digest")));
  json_t *m = json_object_get(r, "members");
  size_t i;
  json_t *x;
  printf("members:\n");
  json_array_foreach(m, i, x) {
    printf("  %-12s rank %-2" JSON_INTEGER_FORMAT " %-24s %s\n",
           json_string_value(json_object_get(x, "id")),
           json_integer_value(json_object_get(x, "rank")),
           json_string_value(json_object_get(x, "addr")),
           json_string_value(json_object_get(x, "state")));
  }
  printf("client connections %" JSON_INTEGER_FORMAT "\n",
         json_integer_value(json_object_get(r, "connections")));
}

static void print_digest(json_t *r) {
  printf("position %" JSON_INTEGER_FORMAT ": %s\n",
         json_integer_value(json_object_get(r, "position")),
         json_is_true(json_object_get(r, "agree")) ? "all agree"
                                                   : "DIGESTS DIFFER");
  size_t i;
  json_t *x;
  json_array_foreach(json_object_get(r, "members"), i, x) {
    printf("  %-12s %s\n", json_string_value(json_object_get(x, "id")),
           json_string_value(json_object_get(x, "digest")));
  }
}

static void print_connections(json_t *r) {
  printf("this member's clients %" JSON_INTEGER_FORMAT
         "; connections on the VIP known to the group %" JSON_INTEGER_FORMAT
         "\n",
         json_integer_value(json_object_get(r, "connections")),
         json_integer_value(json_object_get(r, "replicated")));
  size_t i;
  json_t *x;
  json_t *t = json_object_get(r, "table");
  if (json_array_size(t) > 0)
    printf("  %-16s %-21s %12s %12s %12s %s\n", "id", "client", "received",
           "replied", "acked", "state");
  json_array_foreach(t, i, x) {
    const char *st = json_is_true(json_object_get(x, "client_closed"))
                         ? "client closed"
                         : json_is_true(json_object_get(x, "closing"))
                               ? "closing"
                               : "open";
    printf("  %-16s %-21s %12" JSON_INTEGER_FORMAT " %12" JSON_INTEGER_FORMAT
           " %12" JSON_INTEGER_FORMAT " %s\n",
           json_string_value(json_object_get(x, "id")),
           json_string_value(json_object_get(x, "client")),
           json_integer_value(json_object_get(x, "received")),
           json_integer_value(json_object_get(x, "replied")),
           json_integer_value(json_object_get(x, "acked")), st);
  }
}

/* Anything else: key: value lines, in the reply's order. */
static void print_generic(json_t *r) {
  const char *k;
  json_t *v;
  json_object_foreach(r, k, v) {
    if (json_is_string(v)) {
      printf("%s: %s\n", k, json_string_value(v));
    } else {
      char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
      printf("%s: %s\n", k, t ? t : "?");
      free(t);
    }
  }
}

int main(int argc, char **argv) {
  const char *sock = NULL, *config = NULL, *cmd = NULL, *arg = NULL;
  int as_json = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-s") && i + 1 < argc) {
      sock = argv[++i];
    } else if (!strcmp(argv[i], "-c") && i + 1 < argc) {
      config = argv[++i];
    } else if (!strcmp(argv[i], "--json")) {
      as_json = 1;
    } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
      fputs(usage, stdout);
      return 0;
    } else if (argv[i][0] == '-') {
      fprintf(stderr, "smrctl: unknown option %s\n%s", argv[i], usage);
      return 2;
    } else if (cmd == NULL) {
      cmd = argv[i];
    } else if (arg == NULL) {
      arg = argv[i];
    } else {
      fprintf(stderr, "smrctl: too many arguments\n%s", usage);
      return 2;
    }
  }
  if (cmd == NULL) {
    fputs(usage, stderr);
    return 2;
  }
  static const char *known[] = {"status", "checkpoint", "digest", "leave",
                                "connections", "metrics", NULL};
  int ok = 0;
  for (int i = 0; known[i]; i++)
    if (!strcmp(cmd, known[i])) ok = 1;
  if (!ok) {
    fprintf(stderr, "smrctl: unknown command '%s'\n%s", cmd, usage);
    return 2;
  }
  if (!strcmp(cmd, "leave") && arg == NULL) {
    fprintf(stderr, "smrctl: leave needs the member id\n");
    return 2;
  }
  struct smrd_config cfg;
  char err[600];
  if (sock == NULL && config != NULL) {
    if (smrd_config_load(config, &cfg, err, sizeof(err)) < 0) {
      fprintf(stderr, "smrctl: %s\n", err);
      return 1;
    }
    sock = cfg.admin_socket;
  }
  if (sock == NULL) {
    fprintf(stderr, "smrctl: give the admin socket (-s) or the config (-c)\n");
    return 2;
  }
  json_t *req = json_pack("{s:s}", "cmd", cmd);
  if (arg != NULL) json_object_set_new(req, "node", json_string(arg));
  json_t *rep = smrd_admin_call(sock, req, 30000, err, sizeof(err));
  json_decref(req);
  if (rep == NULL) {
    fprintf(stderr, "smrctl: %s\n", err);
    return 1;
  }
  json_t *e = json_object_get(rep, "error");
  if (json_is_string(e)) {
    fprintf(stderr, "smrctl: %s: %s\n", cmd, json_string_value(e));
    json_decref(rep);
    return 1;
  }
  if (as_json) {
    char *t = json_dumps(rep, JSON_COMPACT);
    puts(t ? t : "{}");
    free(t);
  } else if (!strcmp(cmd, "metrics")) {
    fputs(json_string_value(json_object_get(rep, "text")), stdout);
  } else if (!strcmp(cmd, "status")) {
    print_status(rep);
  } else if (!strcmp(cmd, "digest")) {
    print_digest(rep);
  } else if (!strcmp(cmd, "connections")) {
    print_connections(rep);
  } else {
    print_generic(rep);
  }
  json_decref(rep);
  return 0;
}
