/* config.c -- smrd's configuration: an INI file, every key checked.
 *
 * The file is parsed with libinih; every (section, key) pair is looked up
 * in one table that says how to parse and check its value.  An unknown
 * section or key is an error, not a silent default (a typo in
 * "suspect_ms" must not leave the default in force).  Defaults are the safe
 * ones for production (fsync durability, TLS required).  Every error names
 * the file, the line, the key and what is wrong, in one line. */
#include "config.h"
#include "allow.h"
#include "net.h" /* smr_net_addr_valid */
#include "tcpr.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct parse {
  struct smrd_config *cfg;
  const char *file;
  char *err;
  size_t errlen;
  int failed;
  unsigned seen; /* bitmap of required keys seen */
};

enum {
  REQ_GROUP_NAME = 1u << 0,
  REQ_MEMBERS = 1u << 1,
  REQ_NODE_ID = 1u << 2,
  REQ_DATA_DIR = 1u << 3,
};

__attribute__((format(printf, 2, 3)))
static int bad(struct parse *p, const char *fmt, ...) {
  if (p->failed) return 0;
  p->failed = 1;
  char msg[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  snprintf(p->err, p->errlen, "%s: %s", p->file, msg);
  return 0;
}

static int copy(struct parse *p, const char *sec, const char *key,
                const char *val, char *dst, size_t n) {
  if (strlen(val) >= n)
    return bad(p, "[%s] %s: longer than %zu characters", sec, key, n - 1);
  snprintf(dst, n, "%s", val);
  return 1;
}

static int id_valid(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 31) return 0;
  for (size_t i = 0; i < n; i++)
    if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_' &&
        s[i] != '.')
      return 0;
  return 1;
}

int smrd_duration_ms(const char *s, uint64_t *ms) {
  static const struct {
    const char *unit;
    uint64_t ms;
  } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000},
               {"d", 86400000}, {"", 1000}};
  if (!isdigit((unsigned char)s[0])) return -1;
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0) return -1;
  for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
    if (!strcmp(end, units[i].unit)) {
      if (v > UINT64_C(1) << 40) return -1; /* beyond any sane period */
      *ms = v * units[i].ms;
      return 0;
    }
  return -1;
}

int smrd_addr_valid(const char *addr) {
  const char *colon = strrchr(addr, ':');
  if (colon == NULL || colon == addr || strlen(addr) >= 64) return 0;
  if (addr[0] == '[' && colon[-1] != ']') return 0;
  char *end;
  errno = 0;
  long port = strtol(colon + 1, &end, 10);
  if (errno != 0 || *end != 0 || end == colon + 1 || port < 1 ||
      port > 65535)
    return 0;
  for (const char *c = addr; c < colon; c++)
    if (isspace((unsigned char)*c)) return 0;
  return 1;
}

static int uint_value(struct parse *p, const char *sec, const char *key,
                      const char *val, uint64_t lo, uint64_t hi,
                      uint64_t *out) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(val, &end, 10);
  if (errno != 0 || end == val || *end != 0 || val[0] == '-')
    return bad(p, "[%s] %s = %s: not a whole number", sec, key, val);
  if (v < lo || v > hi)
    return bad(p, "[%s] %s = %s: must be between %llu and %llu", sec, key,
               val, (unsigned long long)lo, (unsigned long long)hi);
  *out = v;
  return 1;
}

static int bool_value(struct parse *p, const char *sec, const char *key,
                      const char *val, int *out) {
  if (!strcmp(val, "yes") || !strcmp(val, "true") || !strcmp(val, "1")) {
    *out = 1;
    return 1;
  }
  if (!strcmp(val, "no") || !strcmp(val, "false") || !strcmp(val, "0")) {
    *out = 0;
    return 1;
  }
  return bad(p, "[%s] %s = %s: must be yes or no", sec, key, val);
}

/* members = n1=10.77.0.1:7000, n2=10.77.0.2:7000 */
static int members_value(struct parse *p, const char *val) {
  struct smrd_config *c = p->cfg;
  char buf[4096];
  if (strlen(val) >= sizeof(buf))
    return bad(p, "[group] members: too long");
  snprintf(buf, sizeof(buf), "%s", val);
  c->n_members = 0;
  for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok != NULL;
       tok = strtok_r(NULL, ",", &save)) {
    while (isspace((unsigned char)*tok)) tok++;
    char *e = tok + strlen(tok);
    while (e > tok && isspace((unsigned char)e[-1])) *--e = 0;
    char *eq = strchr(tok, '=');
    if (eq == NULL)
      return bad(p, "[group] members: '%s' is not id=host:port", tok);
    *eq = 0;
    const char *id = tok, *addr = eq + 1;
    if (!id_valid(id))
      return bad(p, "[group] members: '%s' is not a valid member id "
                 "(1-31 letters, digits, '-', '_', '.')", id);
    if (!smrd_addr_valid(addr))
      return bad(p, "[group] members: %s: '%s' is not host:port", id, addr);
    for (size_t i = 0; i < c->n_members; i++)
      if (!strcmp(c->members[i].id, id))
        return bad(p, "[group] members: '%s' is listed twice", id);
    if (c->n_members == SMRD_MAX_MEMBERS)
      return bad(p, "[group] members: more than %d members",
                 SMRD_MAX_MEMBERS);
    snprintf(c->members[c->n_members].id, sizeof(c->members[0].id), "%s", id);
    snprintf(c->members[c->n_members].addr, sizeof(c->members[0].addr), "%s",
             addr);
    c->n_members++;
  }
  if (c->n_members == 0) return bad(p, "[group] members: empty");
  p->seen |= REQ_MEMBERS;
  return 1;
}

static int handler(void *user, const char *sec, const char *key,
                   const char *val) {
  struct parse *p = user;
  struct smrd_config *c = p->cfg;
  uint64_t u;
  if (p->failed) return 0;
#define IS(s, k) (!strcmp(sec, s) && !strcmp(key, k))
  if (IS("group", "name")) {
    if (!id_valid(val))
      return bad(p, "[group] name = %s: 1-31 letters, digits, '-', '_', '.'",
                 val);
    p->seen |= REQ_GROUP_NAME;
    return copy(p, sec, key, val, c->group, sizeof(c->group));
  }
  if (IS("group", "members")) return members_value(p, val);
  if (IS("node", "id")) {
    if (!id_valid(val))
      return bad(p, "[node] id = %s: 1-31 letters, digits, '-', '_', '.'",
                 val);
    p->seen |= REQ_NODE_ID;
    return copy(p, sec, key, val, c->id, sizeof(c->id));
  }
  if (IS("node", "addr")) {
    if (!smrd_addr_valid(val))
      return bad(p, "[node] addr = %s: not host:port", val);
    return copy(p, sec, key, val, c->addr, sizeof(c->addr));
  }
  if (IS("node", "data_dir")) {
    if (val[0] == 0) return bad(p, "[node] data_dir: empty");
    p->seen |= REQ_DATA_DIR;
    return copy(p, sec, key, val, c->data_dir, sizeof(c->data_dir));
  }
  if (IS("node", "admin_socket"))
    return copy(p, sec, key, val, c->admin_socket, sizeof(c->admin_socket));
  if (IS("transport", "kind")) {
    if (strcmp(val, "tcp") && strcmp(val, "rdma"))
      return bad(p, "[transport] kind = %s: must be tcp or rdma", val);
    return copy(p, sec, key, val, c->kind, sizeof(c->kind));
  }
  if (IS("transport", "relay")) {
    if (strcmp(val, "chain") && strcmp(val, "off"))
      return bad(p, "[transport] relay = %s: must be chain or off", val);
    c->relay = !strcmp(val, "chain");
    return 1;
  }
  if (IS("transport", "rdma_fallback"))
    return bool_value(p, sec, key, val, &c->rdma_fallback);
  if (IS("transport", "rdma_port")) {
    if (!uint_value(p, sec, key, val, 1, 65535, &u)) return 0;
    c->rdma_port = (uint16_t)u;
    return 1;
  }
  if (IS("transport", "rdma_busy_poll_us")) {
    if (!uint_value(p, sec, key, val, 0, 1000000, &u)) return 0;
    c->rdma_busy_poll_us = (uint32_t)u;
    return 1;
  }
  if (IS("transport", "tls_ca"))
    return copy(p, sec, key, val, c->tls_ca, sizeof(c->tls_ca));
  if (IS("transport", "tls_cert"))
    return copy(p, sec, key, val, c->tls_cert, sizeof(c->tls_cert));
  if (IS("transport", "tls_key"))
    return copy(p, sec, key, val, c->tls_key, sizeof(c->tls_key));
  if (IS("transport", "insecure"))
    return bool_value(p, sec, key, val, &c->insecure);
  if (IS("failure", "heartbeat_ms")) {
    if (!uint_value(p, sec, key, val, 1, 60000, &u)) return 0;
    c->heartbeat_ms = (uint32_t)u;
    return 1;
  }
  if (IS("failure", "suspect_ms")) {
    if (!uint_value(p, sec, key, val, 2, 600000, &u)) return 0;
    c->suspect_ms = (uint32_t)u;
    return 1;
  }
  if (IS("durability", "mode")) {
    if (!strcmp(val, "fsync")) c->durable = 1;
    else if (!strcmp(val, "memory")) c->durable = 0;
    else return bad(p, "[durability] mode = %s: must be fsync or memory", val);
    return 1;
  }
  if (IS("durability", "checkpoint_every")) {
    if (!uint_value(p, sec, key, val, 1, UINT64_C(1) << 40, &u)) return 0;
    c->checkpoint_every = u;
    return 1;
  }
  if (IS("metrics", "listen")) {
    /* Empty: no listener.  Numeric, as the listener takes it (http.c). */
    if (val[0] && !smr_net_addr_valid(val))
      return bad(p, "[metrics] listen = %s: not a numeric host:port (e.g. "
                 "127.0.0.1:9464 or [::1]:9464)", val);
    return copy(p, sec, key, val, c->metrics_listen,
                sizeof(c->metrics_listen));
  }
  if (IS("metrics", "allow")) {
    struct smrd_allow a;
    char why[200];
    if (smrd_allow_parse(val, &a, why, sizeof(why)) < 0)
      return bad(p, "[metrics] allow: %s", why);
    return copy(p, sec, key, val, c->metrics_allow, sizeof(c->metrics_allow));
  }
  if (IS("vip", "address")) {
    uint32_t a;
    unsigned plen;
    if (tcpr_parse_cidr(val, &a, &plen) < 0 || a == 0)
      return bad(p, "[vip] address = %s: must be an IPv4 address/prefix, "
                 "e.g. 10.77.0.100/24", val);
    return copy(p, sec, key, val, c->vip_address, sizeof(c->vip_address));
  }
  if (IS("vip", "device"))
    return copy(p, sec, key, val, c->vip_device, sizeof(c->vip_device));
  if (IS("vip", "gate")) {
    if (!strcmp(val, "auto")) c->gate = SMRD_GATE_AUTO;
    else if (!strcmp(val, "kmod")) c->gate = SMRD_GATE_KMOD;
    else if (!strcmp(val, "bpf")) c->gate = SMRD_GATE_BPF;
    else if (!strcmp(val, "off")) c->gate = SMRD_GATE_OFF;
    else return bad(p, "[vip] gate = %s: must be auto, kmod, bpf or off", val);
    return 1;
  }
  if (IS("service", "kind")) {
    if (strcmp(val, "kv") && strcmp(val, "mapreduce") && strcmp(val, "attest"))
      return bad(p, "[service] kind = %s: must be kv, mapreduce or attest",
                 val);
    return copy(p, sec, key, val, c->service, sizeof(c->service));
  }
  if (IS("service", "bind"))
    return copy(p, sec, key, val, c->service_bind, sizeof(c->service_bind));
  if (IS("service", "port")) {
    if (!uint_value(p, sec, key, val, 1, 65535, &u)) return 0;
    c->port = (uint16_t)u;
    return 1;
  }
  if (IS("restart", "every") || IS("restart", "jitter")) {
    if (smrd_duration_ms(val, &u) < 0)
      return bad(p, "[restart] %s = %s: not a duration (e.g. 6h, 30m, 90s, "
                 "500ms)", key, val);
    *(key[0] == 'e' ? &c->restart_every_ms : &c->restart_jitter_ms) = u;
    return 1;
  }
  if (IS("test", "corrupt_command"))
    /* Test only: allows smrctl debug-corrupt (divergence detection's
     * demonstration).  Never in production. */
    return bool_value(p, sec, key, val, &c->corrupt_command);
  if (IS("test", "replication_delay_ms")) {
    /* Test only: the primary holds every client request this long before
     * submitting it (a slow replication, for the TCP-R tests). */
    if (!uint_value(p, sec, key, val, 0, 10000, &u)) return 0;
    c->replication_delay_ms = (uint32_t)u;
    return 1;
  }
  if (IS("test", "takeover_acks")) {
    /* Test only: how many acknowledgements a new primary sends at once on
     * each restored connection that has nothing else to send (default 1;
     * the kernel-module gate only).  More than one are duplicate ACKs: the
     * experiment of whether they make a client resend sooner. */
    if (!uint_value(p, sec, key, val, 0, 16, &u)) return 0;
    c->takeover_acks = (uint32_t)u;
    return 1;
  }
  if (IS("test", "reply_delay_ms")) {
    /* Test only: the primary holds every reply of a VIP connection this
     * long after the group applied its request (so that a kill lands
     * between replication and the reply, for the stall benchmark). */
    if (!uint_value(p, sec, key, val, 0, 10000, &u)) return 0;
    c->reply_delay_ms = (uint32_t)u;
    return 1;
  }
#undef IS
  return bad(p, "[%s] %s: unknown key", sec, key);
}

int smrd_config_load(const char *file, struct smrd_config *cfg, char *err,
                     size_t errlen) {
  memset(cfg, 0, sizeof(*cfg));
  snprintf(cfg->kind, sizeof(cfg->kind), "tcp");
  cfg->heartbeat_ms = 20;
  cfg->suspect_ms = 200;
  cfg->durable = 1;
  cfg->checkpoint_every = 100000;
  snprintf(cfg->metrics_allow, sizeof(cfg->metrics_allow), "%s",
           SMRD_ALLOW_LOOPBACK);
  cfg->gate = SMRD_GATE_AUTO;
  snprintf(cfg->service, sizeof(cfg->service), "kv");
  cfg->port = 6379;
  cfg->takeover_acks = 1;
  struct parse p = {cfg, file, err, errlen, 0, 0};
  err[0] = 0;
  int rc = ini_parse(file, handler, &p);
  if (rc == -1) {
    snprintf(err, errlen, "%s: cannot open: %s", file, strerror(errno));
    return -1;
  }
  if (p.failed) return -1;
  if (rc != 0) {
    snprintf(err, errlen, "%s: line %d: not key = value", file, rc);
    return -1;
  }
  if (!(p.seen & REQ_GROUP_NAME))
    return snprintf(err, errlen, "%s: [group] name is required", file), -1;
  if (!(p.seen & REQ_MEMBERS))
    return snprintf(err, errlen, "%s: [group] members is required", file), -1;
  if (!(p.seen & REQ_NODE_ID))
    return snprintf(err, errlen, "%s: [node] id is required", file), -1;
  if (!(p.seen & REQ_DATA_DIR))
    return snprintf(err, errlen, "%s: [node] data_dir is required", file), -1;
  /* Our address: from the member list, or [node] addr for a joiner. */
  const char *mine = NULL;
  for (size_t i = 0; i < cfg->n_members; i++)
    if (!strcmp(cfg->members[i].id, cfg->id)) mine = cfg->members[i].addr;
  if (mine != NULL && cfg->addr[0] && strcmp(mine, cfg->addr))
    return snprintf(err, errlen,
                    "%s: [node] addr = %s differs from %s's entry in [group] "
                    "members (%s)",
                    file, cfg->addr, cfg->id, mine),
           -1;
  if (mine == NULL && !cfg->addr[0])
    return snprintf(err, errlen,
                    "%s: [node] id = %s is not in [group] members: a joiner "
                    "needs [node] addr",
                    file, cfg->id),
           -1;
  if (mine != NULL) snprintf(cfg->addr, sizeof(cfg->addr), "%s", mine);
  if (cfg->suspect_ms <= cfg->heartbeat_ms)
    return snprintf(err, errlen,
                    "%s: [failure] suspect_ms = %u must be greater than "
                    "heartbeat_ms = %u",
                    file, cfg->suspect_ms, cfg->heartbeat_ms),
           -1;
  int ntls = !!cfg->tls_ca[0] + !!cfg->tls_cert[0] + !!cfg->tls_key[0];
  if (ntls != 0 && ntls != 3)
    return snprintf(err, errlen,
                    "%s: [transport] tls_ca, tls_cert and tls_key go "
                    "together: give all three or none",
                    file),
           -1;
  if (ntls == 0 && !cfg->insecure)
    return snprintf(err, errlen,
                    "%s: [transport] no TLS (tls_ca, tls_cert, tls_key): "
                    "refusing to run without it unless insecure = yes",
                    file),
           -1;
  if (ntls == 3 && cfg->insecure)
    return snprintf(err, errlen,
                    "%s: [transport] insecure = yes together with TLS files: "
                    "choose one",
                    file),
           -1;
  if (strcmp(cfg->service, "kv") != 0)
    return snprintf(err, errlen,
                    "%s: [service] kind = %s is not available in this build "
                    "(kv is)",
                    file, cfg->service),
           -1;
  if (cfg->vip_address[0] && !cfg->vip_device[0])
    return snprintf(err, errlen, "%s: [vip] address needs [vip] device",
                    file),
           -1;
  if (!cfg->admin_socket[0]) {
    int n = snprintf(cfg->admin_socket, sizeof(cfg->admin_socket),
                     "%s/admin.sock", cfg->data_dir);
    if (n < 0 || (size_t)n >= sizeof(cfg->admin_socket))
      return snprintf(err, errlen, "%s: [node] data_dir is too long", file),
             -1;
  }
  if (cfg->restart_every_ms != 0 &&
      cfg->restart_every_ms < 10 * (uint64_t)cfg->suspect_ms)
    return snprintf(err, errlen,
                    "%s: [restart] every = %llu ms is shorter than 10 x "
                    "suspect_ms: the group would never be settled",
                    file, (unsigned long long)cfg->restart_every_ms),
           -1;
  if (strlen(cfg->admin_socket) >= 108)
    return snprintf(err, errlen,
                    "%s: [node] admin_socket %s: longer than a Unix socket "
                    "path may be (107)",
                    file, cfg->admin_socket),
           -1;
  return 0;
}
