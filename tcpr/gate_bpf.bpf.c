/* gate_bpf.bpf.c -- the TCP-R ACK gate as a tc (cls_bpf, direct-action)
 * egress program on the member's VIP device.  Compiled with
 * `clang -O2 -g -target bpf` (tcpr/gate.cmake) and embedded in the loader
 * (gate_bpf.c) as a bpftool skeleton.  Map layouts: gate_bpf.h.
 *
 * What it does to each frame leaving the device:
 *
 *   ARP whose sender IP is the VIP      fenced: drop (fenced_dropped)
 *   IPv4 from the VIP                   fenced: drop (fenced_dropped)
 *   TCP from VIP:port, SYN-ACK          creates the connection's entry with
 *                                       released = its ack_seq (the client's
 *                                       ISN + 1), so that request bytes which
 *                                       arrive before accept() are already
 *                                       held; passes
 *   TCP from VIP:port, gated, FIN/RST   drop unless CLOSE_OK (fin_dropped /
 *                                       rst_dropped)
 *   TCP from VIP:port, gated, ACK       if ack_seq is after `released`:
 *                                       rewrite it to `released`, widen the
 *                                       window field by the difference
 *                                       (>> rcv_wscale) so the right edge of
 *                                       the offered window stays where the
 *                                       kernel put it (clamped), and NOP out
 *                                       a SACK option (sack_stripped)
 *   anything else                       passes unchanged
 *
 * Design.
 *   - Headers are read with bpf_skb_load_bytes into the stack and written
 *     back with bpf_skb_store_bytes, never through packet pointers: the
 *     program holds no packet pointer across a helper call, so nothing has
 *     to be re-loaded after a helper that may move skb data, and a header
 *     in the non-linear part would still be handled.  The store helpers
 *     un-clone the skb first (TCP transmits clones of the skbs in its
 *     retransmission queue, which must stay intact).
 *   - Checksums are only ever fixed with bpf_l4_csum_replace, never
 *     computed here.  On egress, TCP's skbs are CHECKSUM_PARTIAL (the
 *     check field holds the pseudo-header sum, the device or the stack
 *     completes it later); bpf_l4_csum_replace leaves such a field alone
 *     for fields outside the pseudo-header, which is right.  Packets with a
 *     full checksum (ACKs the stack sends without a full socket, as from
 *     TIME_WAIT) get the incremental update.
 *   - GSO skbs need nothing special: the header is rewritten once and
 *     copied into every segment.
 *   - If a rewrite helper fails the segment is dropped rather than let
 *     through with the real acknowledgement: TCP sends it again.
 *   - A SACK option is removed when the ACK was clamped, and also when any
 *     of its blocks ends after `released` (out-of-order data held by this
 *     host but not released: a SACKed byte is one the client may never
 *     send again).  D-SACK blocks below the released point are kept.
 *   - The connection table is an LRU hash: an entry that user space never
 *     closes (a client that went away) does not fill it for good.
 *
 * Limits (what the kernel module is for):
 *   - A tc program cannot send anything: a release reaches the client only
 *     with the server's next segment.  Request/reply traffic is fine (the
 *     reply carries it), but when the last ACK of a flight was clamped and
 *     the server has nothing to send, the client waits for its tail loss
 *     probe or RTO.  Seen with a one-way upload released on every read:
 *     stalls of an RTO each, and since the held ACKs also lengthen the
 *     client's RTT samples, its RTO grew to 6.7 s within 3 MB.
 *   - Bytes the client cannot send before it gets an acknowledgement
 *     (beyond its congestion window, as small as 1-2 segments after a
 *     loss) are never released by a server that releases whole requests
 *     only: that connection deadlocks.  Release bytes as they are
 *     replicated, not at request boundaries.
 *   - The widened window is rounded down to the scale (up to 2^wscale - 1
 *     bytes short of the kernel's right edge).
 *   - Ethernet and IPv4 only (IP options are skipped by the header
 *     length); frames with an in-band VLAN tag or in a tunnel pass
 *     unchanged, ungated and unfenced.
 *   - An LRU table: past 65536 live connections the oldest entry goes and
 *     that connection is no longer gated.
 *
 * Deviations from the feasibility probe (shared notes, tcp-takeover.md),
 * which clamped acknowledgements in a tc program and silenced closes by
 * other means: this program also drops FIN/RST itself until CLOSE_OK (the
 * note's egress-drop mechanism, with the exception for intended closes
 * kept per connection in the map rather than as an skb mark); fences (ARP
 * and IP from the VIP) with the same program, so fencing does not depend
 * on removing the VIP first; creates a connection's entry from its
 * SYN-ACK, so there is no moment between the handshake and user space's
 * tcpr_gate_conn_open in which request bytes are acknowledged; and reads
 * rcv_wscale from the SYN-ACK's window-scale option (absent: scaling is
 * off, 0) so the window is kept from the first byte. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "gate_bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct gate_config);
} config SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct gate_stats);
} stats SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, GATE_MAX_CONNS);
  __type(key, struct gate_conn_key);
  __type(value, struct gate_conn);
} conns SEC(".maps");

/* The release points user space moves: it writes them through a shared
 * mapping (no system call per release); a connection's entry names its
 * slot.  Slot 0 is never handed out. */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, GATE_MAX_CONNS);
  __uint(map_flags, BPF_F_MMAPABLE);
  __type(key, __u32);
  __type(value, __u64); /* array elements are 8-byte aligned in the mapping:
                           the low 32 bits hold the point */
} releases SEC(".maps");

#define READ_ONCE_U32(x) (*(const volatile __u32 *)&(x))
#define READ_ONCE_U16(x) (*(const volatile __u16 *)&(x))
#define READ_ONCE_U8(x) (*(const volatile __u8 *)&(x))

/* TCP header: byte offsets and flag bits */
#define TH_ACK_SEQ 8
#define TH_FLAGS 13
#define TH_WINDOW 14
#define TH_CHECK 16
#define TH_LEN 20
#define TH_FIN 0x01
#define TH_SYN 0x02
#define TH_RST 0x04
#define TH_ACK 0x10

#define OPT_EOL 0
#define OPT_NOP 1
#define OPT_WSCALE 3
#define OPT_SACK 5
#define OPT_MAX 40 /* option bytes after the fixed header */

/* ARP (Ethernet/IPv4): the fixed header, then sha[6], spa[4], ... */
#define ARP_HDR_LEN 8
#define ARP_SPA (ARP_HDR_LEN + 6)

union tcp_raw {
  struct tcphdr th;
  __u8 b[TH_LEN];
};

/* The options, zero-padded: indexes are masked with 63 so the verifier
 * sees every access in bounds. */
union opt_buf {
  __u8 b[64];
  __u32 w[16];
};

struct opt_info {
  int sack_off; /* offset of the SACK option, -1 if none */
  __u32 sack_len;
  int wscale; /* the window-scale option's shift, -1 if none */
};

static __always_inline struct gate_stats *stats_get(void) {
  __u32 zero = 0;
  return bpf_map_lookup_elem(&stats, &zero);
}

static __always_inline int fenced_drop(void) {
  struct gate_stats *st = stats_get();
  if (st)
    st->fenced_dropped++;
  return TC_ACT_SHOT;
}

/* The option walk runs under bpf_loop: its callback is verified once,
 * whereas an open-coded loop over 40 unknown bytes makes the verifier walk
 * every combination of option lengths (it gave up at a million
 * instructions). */
struct parse_ctx {
  union opt_buf o;
  __u32 optlen;
  __u32 i;
  struct opt_info oi;
};

static long parse_step(__u32 n, void *arg) {
  struct parse_ctx *p = arg;
  __u32 i = p->i;
  (void)n;
  if (i >= p->optlen || i >= OPT_MAX)
    return 1;
  __u8 kind = p->o.b[i & 63];
  if (kind == OPT_EOL)
    return 1;
  if (kind == OPT_NOP) {
    p->i = i + 1;
    return 0;
  }
  if (i + 2 > p->optlen)
    return 1;
  __u8 len = p->o.b[(i + 1) & 63];
  if (len < 2 || i + len > p->optlen)
    return 1;
  if (kind == OPT_SACK && p->oi.sack_off < 0) {
    p->oi.sack_off = (int)i;
    p->oi.sack_len = len;
  } else if (kind == OPT_WSCALE && len == 3) {
    p->oi.wscale = p->o.b[(i + 2) & 63];
  }
  p->i = i + len;
  return 0;
}

static __always_inline void parse_opts(struct parse_ctx *p) {
  p->i = 0;
  p->oi.sack_off = -1;
  p->oi.sack_len = 0;
  p->oi.wscale = -1;
  bpf_loop(OPT_MAX, parse_step, p, 0);
}

/* Does a SACK block end after `released`? */
static __always_inline int sack_above(const union opt_buf *o,
                                      const struct opt_info *oi,
                                      __u32 released) {
  for (int k = 0; k < 4; k++) {
    if (2 + 8 * (__u32)k + 8 > oi->sack_len)
      break;
    __u32 e = (__u32)oi->sack_off + 2 + 8 * (__u32)k + 4;
    __u32 end = (__u32)o->b[e & 63] << 24 | (__u32)o->b[(e + 1) & 63] << 16 |
                (__u32)o->b[(e + 2) & 63] << 8 | (__u32)o->b[(e + 3) & 63];
    if ((__s32)(end - released) > 0)
      return 1;
  }
  return 0;
}

/* Replaces the SACK option with NOPs: the new option bytes are made under
 * bpf_loop (its callback is verified once), then written back with one
 * store, the checksum fixed with one precomputed difference over the
 * whole option area (a multiple of 4 bytes, so the checksum's 16-bit words
 * line up).  An open-coded loop over the option words, a helper call or
 * two per word, made 6.1's verifier give up at a million instructions.
 * 0, or -1 if a helper failed. */
struct strip_ctx {
  union opt_buf n;
  __u32 s, e;
};

static long strip_step(__u32 i, void *arg) {
  struct strip_ctx *c = arg;
  __u64 j = i & 63;
  /* Keep j in one register the verifier has bounded. */
  asm volatile("" : "+r"(j));
  if (j >= OPT_MAX)
    return 1;
  if (j >= c->s && j < c->e)
    c->n.b[j] = OPT_NOP;
  return 0;
}

static __always_inline int strip_sack(struct __sk_buff *skb, __u32 toff,
                                      const union opt_buf *o, __u32 optlen,
                                      const struct opt_info *oi) {
  struct strip_ctx c;
  c.n = *o;
  c.s = (__u32)oi->sack_off;
  c.e = c.s + oi->sack_len;
  bpf_loop(OPT_MAX, strip_step, &c, 0);
  __u64 olen = optlen & 0x3c; /* options come in 32-bit words */
  /* One register, bounded where it is used (older verifiers lose bounds
   * learnt on a copy). */
  asm volatile("" : "+r"(olen));
  if (olen < 4 || olen > OPT_MAX)
    return 0;
  __s64 diff = bpf_csum_diff((__be32 *)o->w, olen, (__be32 *)c.n.w, olen, 0);
  if (diff < 0)
    return -1;
  if (bpf_l4_csum_replace(skb, toff + TH_CHECK, 0, (__u64)diff, 0) < 0)
    return -1;
  if (bpf_skb_store_bytes(skb, toff + TH_LEN, c.n.b, olen, 0) < 0)
    return -1;
  return 0;
}

static __always_inline int load_opts(struct __sk_buff *skb, __u32 toff,
                                     const union tcp_raw *t, union opt_buf *o,
                                     __u32 *optlen) {
  __u32 doff = (__u32)(t->b[12] >> 4) * 4;
  __builtin_memset(o, 0, sizeof(*o));
  *optlen = 0;
  if (doff <= TH_LEN)
    return 0;
  __u32 len = doff - TH_LEN;
  if (len > OPT_MAX)
    return -1;
  if (bpf_skb_load_bytes(skb, toff + TH_LEN, o->b, len) < 0)
    return -1;
  *optlen = len;
  return 0;
}

SEC("tc")
int tcpr_gate(struct __sk_buff *skb) {
  __u32 zero = 0;
  const struct gate_config *cfg = bpf_map_lookup_elem(&config, &zero);
  if (!cfg)
    return TC_ACT_OK;
  __u32 vip = READ_ONCE_U32(cfg->vip);
  __u16 port = READ_ONCE_U16(cfg->port);
  __u8 fenced = READ_ONCE_U8(cfg->fenced);

  if (skb->protocol == bpf_htons(ETH_P_ARP)) {
    __u8 hdr[ARP_HDR_LEN];
    __u32 spa;
    if (!fenced)
      return TC_ACT_OK;
    if (bpf_skb_load_bytes(skb, ETH_HLEN, hdr, sizeof(hdr)) < 0 ||
        bpf_skb_load_bytes(skb, ETH_HLEN + ARP_SPA, &spa, sizeof(spa)) < 0)
      return TC_ACT_OK;
    /* ar_pro == ETH_P_IP, ar_hln == 6, ar_pln == 4 */
    if (hdr[2] == 0x08 && hdr[3] == 0x00 && hdr[4] == 6 && hdr[5] == 4 &&
        spa == vip)
      return fenced_drop();
    return TC_ACT_OK;
  }
  if (skb->protocol != bpf_htons(ETH_P_IP))
    return TC_ACT_OK;

  struct iphdr iph;
  if (bpf_skb_load_bytes(skb, ETH_HLEN, &iph, sizeof(iph)) < 0)
    return TC_ACT_OK;
  if (iph.saddr != vip)
    return TC_ACT_OK;
  if (fenced)
    return fenced_drop();
  if (iph.protocol != IPPROTO_TCP || iph.ihl < 5 ||
      (iph.frag_off & bpf_htons(0x1fff)) != 0)
    return TC_ACT_OK;

  __u32 toff = ETH_HLEN + (__u32)iph.ihl * 4;
  union tcp_raw t;
  if (bpf_skb_load_bytes(skb, toff, &t, sizeof(t)) < 0)
    return TC_ACT_OK;
  if (t.th.source != port)
    return TC_ACT_OK;

  __u8 flags = t.b[TH_FLAGS];
  struct gate_conn_key key = {.addr = iph.daddr, .port = t.th.dest};
  struct parse_ctx p;

  if ((flags & (TH_SYN | TH_ACK)) == (TH_SYN | TH_ACK)) {
    struct gate_conn v = {
        .released = bpf_ntohl(t.th.ack_seq),
        .flags = GATE_CONN_ACTIVE | GATE_CONN_SND_KNOWN,
        .rcv_wscale = GATE_WSCALE_UNKNOWN,
        .snd_max = bpf_ntohl(t.th.seq) + 1,
    };
    if (load_opts(skb, toff, &t, &p.o, &p.optlen) == 0) {
      parse_opts(&p);
      /* We send the option only if the client offered it; without it
       * neither side scales. */
      if (p.oi.wscale < 0)
        v.rcv_wscale = 0;
      else if (p.oi.wscale <= GATE_WSCALE_MAX)
        v.rcv_wscale = (__u8)p.oi.wscale;
    }
    bpf_map_update_elem(&conns, &key, &v, BPF_ANY);
    return TC_ACT_OK;
  }

  struct gate_conn *c = bpf_map_lookup_elem(&conns, &key);
  if (!c)
    return TC_ACT_OK;
  __u8 cflags = READ_ONCE_U8(c->flags);
  /* How far our stream went (for the ingress program). */
  __u32 doff = ((__u32)t.b[12] >> 4) * 4;
  if (skb->len >= toff + doff) {
    __u32 end = bpf_ntohl(t.th.seq) + (skb->len - toff - doff) +
                ((flags & TH_FIN) ? 1 : 0);
    if (!(cflags & GATE_CONN_SND_KNOWN)) {
      c->snd_max = end;
      c->flags = cflags | GATE_CONN_SND_KNOWN;
    } else if ((__s32)(end - READ_ONCE_U32(c->snd_max)) > 0) {
      c->snd_max = end;
    }
  }
  if (cflags & GATE_CONN_CLOSE_OK)
    return TC_ACT_OK;
  if (flags & (TH_FIN | TH_RST)) {
    struct gate_stats *st = stats_get();
    if (st) {
      if (flags & TH_RST)
        st->rst_dropped++;
      else
        st->fin_dropped++;
    }
    return TC_ACT_SHOT;
  }
  if (!(flags & TH_ACK))
    return TC_ACT_OK;

  __u32 released = READ_ONCE_U32(c->released);
  __u32 slot = READ_ONCE_U32(c->slot);
  if (slot != 0) {
    const __u64 *rp = bpf_map_lookup_elem(&releases, &slot);
    if (rp)
      released = (__u32)*(const volatile __u64 *)rp;
  }
  __u8 wscale = READ_ONCE_U8(c->rcv_wscale);
  __u32 ack = bpf_ntohl(t.th.ack_seq);
  __s32 ahead = (__s32)(ack - released);
  struct gate_stats *st = stats_get();

  if (ahead > 0) {
    __be32 nack = bpf_htonl(released);
    if (bpf_l4_csum_replace(skb, toff + TH_CHECK, t.th.ack_seq, nack, 4) < 0 ||
        bpf_skb_store_bytes(skb, toff + TH_ACK_SEQ, &nack, 4, 0) < 0)
      return TC_ACT_SHOT;
    if (wscale <= GATE_WSCALE_MAX) {
      __u32 win = bpf_ntohs(t.th.window) + ((__u32)ahead >> wscale);
      if (win > 0xffff)
        win = 0xffff;
      __be16 nwin = bpf_htons((__u16)win);
      if (nwin != t.th.window &&
          (bpf_l4_csum_replace(skb, toff + TH_CHECK, t.th.window, nwin, 2) <
               0 ||
           bpf_skb_store_bytes(skb, toff + TH_WINDOW, &nwin, 2, 0) < 0))
        return TC_ACT_SHOT;
    }
    if (st)
      st->clamped++;
  }

  if (load_opts(skb, toff, &t, &p.o, &p.optlen) < 0) {
    /* Options we cannot read: if the ACK was clamped, a SACK block in them
     * might leak what was held. */
    return ahead > 0 ? TC_ACT_SHOT : TC_ACT_OK;
  }
  if (p.optlen == 0)
    return TC_ACT_OK;
  parse_opts(&p);
  if (p.oi.sack_off < 0)
    return TC_ACT_OK;
  if (ahead > 0 || sack_above(&p.o, &p.oi, released)) {
    if (strip_sack(skb, toff, &p.o, p.optlen, &p.oi) < 0)
      return TC_ACT_SHOT;
    if (st)
      st->sack_stripped++;
  }
  return TC_ACT_OK;
}

/* Ingress: a client acknowledging bytes this host never sent.  After a
 * takeover the group's record of how much of its replies a client has
 * received can lag (the old primary died before telling it); the restored
 * socket starts sending from the recorded point, and the kernel drops
 * every segment that acknowledges bytes it has not sent yet -- requests
 * included -- so the connection would never move.  Lowering such an
 * acknowledgement to what this host sent lets the segment in; the bytes
 * the client already has arrive again as duplicates, which it discards,
 * and within a window's worth of them the two ends agree again. */
SEC("tc")
int tcpr_gate_in(struct __sk_buff *skb) {
  __u32 zero = 0;
  const struct gate_config *cfg = bpf_map_lookup_elem(&config, &zero);
  if (!cfg || skb->protocol != bpf_htons(ETH_P_IP))
    return TC_ACT_OK;
  struct iphdr iph;
  if (bpf_skb_load_bytes(skb, ETH_HLEN, &iph, sizeof(iph)) < 0)
    return TC_ACT_OK;
  if (iph.daddr != READ_ONCE_U32(cfg->vip) || iph.protocol != IPPROTO_TCP ||
      iph.ihl < 5 || (iph.frag_off & bpf_htons(0x1fff)) != 0)
    return TC_ACT_OK;
  __u32 toff = ETH_HLEN + (__u32)iph.ihl * 4;
  union tcp_raw t;
  if (bpf_skb_load_bytes(skb, toff, &t, sizeof(t)) < 0)
    return TC_ACT_OK;
  if (t.th.dest != READ_ONCE_U16(cfg->port) || !(t.b[TH_FLAGS] & TH_ACK))
    return TC_ACT_OK;
  struct gate_conn_key key = {.addr = iph.saddr, .port = t.th.source};
  struct gate_conn *c = bpf_map_lookup_elem(&conns, &key);
  if (!c)
    return TC_ACT_OK;
  __u8 cflags = READ_ONCE_U8(c->flags);
  if (!(cflags & GATE_CONN_SND_KNOWN) || (cflags & GATE_CONN_CLOSE_OK))
    return TC_ACT_OK;
  __u32 snd_max = READ_ONCE_U32(c->snd_max);
  if ((__s32)(bpf_ntohl(t.th.ack_seq) - snd_max) <= 0)
    return TC_ACT_OK;
  __be32 nack = bpf_htonl(snd_max);
  if (bpf_l4_csum_replace(skb, toff + TH_CHECK, t.th.ack_seq, nack, 4) < 0 ||
      bpf_skb_store_bytes(skb, toff + TH_ACK_SEQ, &nack, 4, 0) < 0)
    return TC_ACT_OK;
  struct gate_stats *st = stats_get();
  if (st)
    st->acks_clamped_in++;
  return TC_ACT_OK;
}
