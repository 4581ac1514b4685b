/* gate_bpf.c -- the tc-BPF backend of the TCP-R gate: loads the program in
 * gate_bpf.bpf.c (embedded as a bpftool skeleton generated at build time,
 * gate_bpf.skel.h) with libbpf, attaches it to the egress of the member's
 * VIP device, and drives it through its maps (layouts in gate_bpf.h).
 *
 * Design.
 *   - Attachment: a clsact qdisc on the device (created if missing) and a
 *     cls_bpf direct-action filter on its egress hook with a fixed handle
 *     and priority (GATE_TC_HANDLE, GATE_TC_PRIO), attached with
 *     BPF_TC_F_REPLACE: a new gate on the device replaces the previous
 *     smr gate, whichever process attached it.  The program is written
 *     fenced into its config map before it is attached, so a new gate
 *     starts fenced.
 *   - Nothing is pinned in bpffs (`ip netns exec` remounts /sys, so pins
 *     would not be visible where they are needed): the program and maps
 *     live in this process's fds and in the tc filter, which holds the
 *     program (and through it the maps) after the process exits.  Closing
 *     the handle fences first, then closes the fds: the filter stays, fenced,
 *     until the next gate replaces it.
 *   - No threads and no state outside the fds: a child forked with the
 *     handle (the keeper) can call every function, e.g. fence the host
 *     when the server dies.
 *   - The connection table is written by the program only when it sees a
 *     SYN-ACK (creating the entry); user space changes entries by
 *     replacing them whole (a hash map update swaps the element, so the
 *     program never sees half an update).  release is a read-modify-write
 *     that only moves forward in sequence space.
 *   - Release points do not go through the hash map: every gated
 *     connection gets a slot in the `releases` array, which this process
 *     maps (BPF_F_MMAPABLE), so a release is one store into shared memory
 *     instead of a lookup and an update (two system calls per connection
 *     and loop iteration under pipelined load).  The slot is written
 *     before the entry naming it is published, and a freed slot goes to
 *     the tail of a FIFO, so a slot is reused only after every other free
 *     one: a packet of a closed connection that the program looked up just
 *     before the close does not meet a fresh connection's point
 *     (gate_slots.c keeps who has which slot).
 *   - libbpf prints nothing unless SMR_BPF_DEBUG is set in the
 *     environment; its first warning of a failed load is kept for the
 *     one-line error.
 *
 * Deviations from the feasibility probe (tcp-takeover.md): as the note
 * advises, nothing is pinned and the attachment is relied on to outlive
 * the process; beyond what the note records, the loader owns the whole
 * life of the attachment:
 * a fixed handle replaced on every open (so a restarted member does not
 * stack filters), fencing through the program's config map instead of
 * removing the VIP, and closing leaves the program fenced rather than
 * detaching it (a detached gate would let the kernel answer for the
 * VIP). */
#include <errno.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "gate_bpf.h"
#include "gate_bpf.skel.h"
#include "gate_int.h"

/* The smr gate's tc filter on the egress hook. */
#define GATE_TC_HANDLE 0x534d /* "SM" */
#define GATE_TC_PRIO 1

struct gate_bpf_state {
  struct gate_bpf *skel;
  int ifindex;
  int config_fd, stats_fd, conns_fd;
  struct gate_config cfg;
  uint64_t *rel;          /* the mapped `releases` array */
  size_t rel_len;         /* its mapping's length */
  struct gate_slots slots; /* who has which element of it */
};

/* ---- libbpf's printing ---- */

static char libbpf_first_warn[256];
static int libbpf_warned;

__attribute__((format(printf, 2, 0))) static int
libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap) {
  if (level == LIBBPF_WARN && !libbpf_warned) {
    char msg[sizeof(libbpf_first_warn)];
    va_list ap2;
    va_copy(ap2, ap);
    vsnprintf(msg, sizeof(msg), fmt, ap2);
    va_end(ap2);
    const char *m = msg;
    if (strncmp(m, "libbpf: ", 8) == 0)
      m += 8;
    /* Harmless where BPF memory is charged to the cgroup (5.11+): the
     * reason, if any, follows. */
    if (strncmp(m, "Failed to bump RLIMIT_MEMLOCK", 29) != 0) {
      snprintf(libbpf_first_warn, sizeof(libbpf_first_warn), "%s", m);
      size_t n = strlen(libbpf_first_warn);
      while (n > 0 && (libbpf_first_warn[n - 1] == '\n' ||
                       libbpf_first_warn[n - 1] == ' '))
        libbpf_first_warn[--n] = '\0';
      libbpf_warned = 1;
    }
  }
  if (getenv("SMR_BPF_DEBUG") != NULL)
    return vfprintf(stderr, fmt, ap);
  return 0;
}

static void libbpf_quiet(void) {
  libbpf_first_warn[0] = '\0';
  libbpf_warned = 0;
  libbpf_set_print(libbpf_print);
}

/* ---- the maps ---- */

static int write_config(struct gate_bpf_state *s) {
  uint32_t zero = 0;
  if (bpf_map_update_elem(s->config_fd, &zero, &s->cfg, BPF_ANY) < 0)
    return -errno;
  return 0;
}

static struct gate_conn_key conn_key(uint32_t caddr, uint16_t cport) {
  struct gate_conn_key k;
  memset(&k, 0, sizeof(k));
  k.addr = caddr;
  k.port = htons(cport);
  return k;
}

/* ---- release slots ---- */

static int slots_init(struct gate_bpf_state *s) {
  long page = sysconf(_SC_PAGESIZE);
  size_t len = (size_t)GATE_MAX_CONNS * sizeof(uint64_t);
  if (page > 0) len = (len + (size_t)page - 1) / (size_t)page * (size_t)page;
  void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED,
                 bpf_map__fd(s->skel->maps.releases), 0);
  if (m == MAP_FAILED) return -errno;
  s->rel = m;
  s->rel_len = len;
  return gate_slots_init(&s->slots, GATE_MAX_CONNS);
}

static void slots_free(struct gate_bpf_state *s) {
  if (s->rel != NULL) munmap(s->rel, s->rel_len);
  s->rel = NULL;
  gate_slots_free(&s->slots);
}

static void rel_store(struct gate_bpf_state *s, uint32_t slot, uint32_t v) {
  __atomic_store_n(&s->rel[slot], (uint64_t)v, __ATOMIC_RELEASE);
}

static uint32_t rel_load(struct gate_bpf_state *s, uint32_t slot) {
  return (uint32_t)__atomic_load_n(&s->rel[slot], __ATOMIC_ACQUIRE);
}

static int bpf_fence(void *st, int fenced) {
  struct gate_bpf_state *s = st;
  s->cfg.fenced = fenced ? 1 : 0;
  return write_config(s);
}

static int bpf_conn_open(void *st, uint32_t caddr, uint16_t cport,
                         uint32_t released, uint8_t rcv_wscale,
                         uint32_t snd_nxt) {
  struct gate_bpf_state *s = st;
  struct gate_conn_key k = conn_key(caddr, cport);
  struct gate_conn v;
  memset(&v, 0, sizeof(v));
  v.released = released;
  v.flags = GATE_CONN_ACTIVE | GATE_CONN_SND_KNOWN;
  v.snd_max = snd_nxt;
  v.rcv_wscale = rcv_wscale <= GATE_WSCALE_MAX ? rcv_wscale
                                               : GATE_WSCALE_UNKNOWN;
  /* A slot when one is free; without one the entry's own point is used
   * (and moved by map updates). */
  v.slot = gate_slots_get(&s->slots, caddr, cport);
  if (v.slot != 0)
    rel_store(s, v.slot, released); /* before the entry names it */
  if (bpf_map_update_elem(s->conns_fd, &k, &v, BPF_ANY) < 0) {
    int e = -errno;
    gate_slots_put(&s->slots, caddr, cport);
    return e;
  }
  return 0;
}

static int bpf_release(void *st, uint32_t caddr, uint16_t cport,
                       uint32_t released) {
  struct gate_bpf_state *s = st;
  uint32_t slot = gate_slots_find(&s->slots, caddr, cport);
  if (slot != 0) {
    if ((int32_t)(released - rel_load(s, slot)) > 0) /* never backwards */
      rel_store(s, slot, released);
    return 0;
  }
  struct gate_conn_key k = conn_key(caddr, cport);
  struct gate_conn v;
  if (bpf_map_lookup_elem(s->conns_fd, &k, &v) < 0)
    return -errno;
  if ((int32_t)(released - v.released) <= 0)
    return 0; /* never backwards */
  v.released = released;
  if (bpf_map_update_elem(s->conns_fd, &k, &v, BPF_EXIST) < 0)
    return -errno;
  return 0;
}

static int bpf_allow_close(void *st, uint32_t caddr, uint16_t cport) {
  struct gate_bpf_state *s = st;
  struct gate_conn_key k = conn_key(caddr, cport);
  struct gate_conn v;
  if (bpf_map_lookup_elem(s->conns_fd, &k, &v) < 0)
    return -errno;
  v.flags |= GATE_CONN_CLOSE_OK;
  if (bpf_map_update_elem(s->conns_fd, &k, &v, BPF_EXIST) < 0)
    return -errno;
  return 0;
}

static int bpf_conn_close(void *st, uint32_t caddr, uint16_t cport) {
  struct gate_bpf_state *s = st;
  struct gate_conn_key k = conn_key(caddr, cport);
  int e = bpf_map_delete_elem(s->conns_fd, &k) < 0 ? -errno : 0;
  gate_slots_put(&s->slots, caddr, cport); /* after the entry stops naming it */
  return e;
}

static int bpf_stats(void *st, struct tcpr_gate_stats *out) {
  struct gate_bpf_state *s = st;
  int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0)
    return ncpu < 0 ? ncpu : -EINVAL;
  struct gate_stats *per = calloc((size_t)ncpu, sizeof(*per));
  if (per == NULL)
    return -ENOMEM;
  uint32_t zero = 0;
  if (bpf_map_lookup_elem(s->stats_fd, &zero, per) < 0) {
    int e = -errno;
    free(per);
    return e;
  }
  memset(out, 0, sizeof(*out));
  for (int i = 0; i < ncpu; i++) {
    out->clamped += per[i].clamped;
    out->sack_stripped += per[i].sack_stripped;
    out->fin_dropped += per[i].fin_dropped;
    out->rst_dropped += per[i].rst_dropped;
    out->fenced_dropped += per[i].fenced_dropped;
    out->acks_clamped_in += per[i].acks_clamped_in;
  }
  free(per);

  /* Entries: walk the keys (at most GATE_MAX_CONNS).  An entry deleted
   * under the walk makes get_next_key restart from the first key; the
   * bound keeps that from looping. */
  struct gate_conn_key k, next;
  const void *prev = NULL;
  uint64_t n = 0;
  while (n < 2 * (uint64_t)GATE_MAX_CONNS &&
         bpf_map_get_next_key(s->conns_fd, prev, &next) == 0) {
    n++;
    k = next;
    prev = &k;
  }
  out->conns = n;
  return 0;
}

static void bpf_close(void *st) {
  struct gate_bpf_state *s = st;
  if (s == NULL)
    return;
  /* Fenced before the fds go: the filter keeps the program, and the
   * program keeps its maps. */
  (void)bpf_fence(s, 1);
  slots_free(s);
  gate_bpf__destroy(s->skel);
  free(s);
}

static const struct tcpr_gate_ops gate_bpf_ops = {
    .name = "bpf",
    .fence = bpf_fence,
    .conn_open = bpf_conn_open,
    .release = bpf_release,
    .allow_close = bpf_allow_close,
    .conn_close = bpf_conn_close,
    .stats = bpf_stats,
    .close = bpf_close,
};

/* ---- open ---- */

static const char *perm_hint(int e) {
  if (e != -EPERM && e != -EACCES)
    return "";
  return geteuid() != 0 ? " (not root: needs CAP_BPF and CAP_NET_ADMIN)"
                        : " (needs CAP_BPF and CAP_NET_ADMIN)";
}

int tcpr_gate_bpf_open(const char *dev, unsigned ifindex, uint32_t vip,
                       uint16_t port, const struct tcpr_gate_ops **ops,
                       void **out, char *err, size_t errlen) {
  int e;
  struct gate_bpf_state *s = calloc(1, sizeof(*s));
  if (s == NULL) {
    snprintf(err, errlen, "gate: out of memory");
    return -ENOMEM;
  }
  s->ifindex = (int)ifindex;
  s->cfg.vip = vip;
  s->cfg.port = htons(port);
  s->cfg.fenced = 1;

  libbpf_quiet();
  s->skel = gate_bpf__open();
  if (s->skel == NULL) {
    e = -errno;
    snprintf(err, errlen, "gate: BPF open failed: %s%s", strerror(-e),
             perm_hint(e));
    free(s);
    return e;
  }
  e = gate_bpf__load(s->skel);
  if (e < 0) {
    if (libbpf_first_warn[0] != '\0')
      snprintf(err, errlen,
               "gate: BPF load failed: %s%s (libbpf: %s; SMR_BPF_DEBUG=1 "
               "prints the verifier log)",
               strerror(-e), perm_hint(e), libbpf_first_warn);
    else
      snprintf(err, errlen, "gate: BPF load failed: %s%s", strerror(-e),
               perm_hint(e));
    goto fail;
  }
  s->config_fd = bpf_map__fd(s->skel->maps.config);
  s->stats_fd = bpf_map__fd(s->skel->maps.stats);
  s->conns_fd = bpf_map__fd(s->skel->maps.conns);
  e = write_config(s);
  if (e < 0) {
    snprintf(err, errlen, "gate: cannot write the config map: %s",
             strerror(-e));
    goto fail;
  }
  e = slots_init(s);
  if (e < 0) {
    snprintf(err, errlen, "gate: cannot map the release array: %s",
             strerror(-e));
    goto fail;
  }

  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = s->ifindex,
              .attach_point = BPF_TC_EGRESS);
  e = bpf_tc_hook_create(&hook);
  if (e < 0 && e != -EEXIST) {
    snprintf(err, errlen, "gate: cannot add a clsact qdisc to %s: %s%s", dev,
             strerror(-e), perm_hint(e));
    goto fail;
  }
  LIBBPF_OPTS(bpf_tc_opts, tco, .handle = GATE_TC_HANDLE,
              .priority = GATE_TC_PRIO, .flags = BPF_TC_F_REPLACE,
              .prog_fd = bpf_program__fd(s->skel->progs.tcpr_gate));
  e = bpf_tc_attach(&hook, &tco);
  if (e < 0) {
    snprintf(err, errlen, "gate: cannot attach to the egress of %s: %s%s",
             dev, strerror(-e), perm_hint(e));
    goto fail;
  }
  /* The ingress half (clients acknowledging bytes we never sent, after a
   * takeover), on the same clsact qdisc. */
  LIBBPF_OPTS(bpf_tc_hook, ihook, .ifindex = s->ifindex,
              .attach_point = BPF_TC_INGRESS);
  LIBBPF_OPTS(bpf_tc_opts, tci, .handle = GATE_TC_HANDLE,
              .priority = GATE_TC_PRIO, .flags = BPF_TC_F_REPLACE,
              .prog_fd = bpf_program__fd(s->skel->progs.tcpr_gate_in));
  e = bpf_tc_attach(&ihook, &tci);
  if (e < 0) {
    snprintf(err, errlen, "gate: cannot attach to the ingress of %s: %s%s",
             dev, strerror(-e), perm_hint(e));
    goto fail;
  }
  *ops = &gate_bpf_ops;
  *out = s;
  return 0;

fail:
  slots_free(s);
  gate_bpf__destroy(s->skel);
  free(s);
  return e;
}

void tcpr_gate_bpf_detach(const char *dev) {
  unsigned ifindex = dev != NULL ? if_nametoindex(dev) : 0;
  if (ifindex == 0) return;
  libbpf_quiet(); /* "no such filter" is the usual answer */
  enum bpf_tc_attach_point where[2] = {BPF_TC_EGRESS, BPF_TC_INGRESS};
  for (int i = 0; i < 2; i++) {
    LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = (int)ifindex,
                .attach_point = where[i]);
    LIBBPF_OPTS(bpf_tc_opts, opts, .handle = GATE_TC_HANDLE,
                .priority = GATE_TC_PRIO);
    bpf_tc_detach(&hook, &opts);
  }
}
