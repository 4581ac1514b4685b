/* gate_bpf.h -- the layout of the tc-BPF gate's maps, shared by the
 * program (gate_bpf.bpf.c, compiled with clang -target bpf) and its loader
 * (gate_bpf.c).  Only <linux/types.h> types, so that both sides agree
 * byte for byte.
 *
 *   config  ARRAY[1]           struct gate_config
 *   stats   PERCPU_ARRAY[1]    struct gate_stats (summed over CPUs by the
 *                              loader)
 *   conns   LRU_HASH[65536]    struct gate_conn_key -> struct gate_conn
 *   releases ARRAY[65536], mmap-able: __u64 (low 32 bits: a release point,
 *                              host order; elements of a mapped array are
 *                              8 bytes apart whatever their size), indexed by a
 *                              connection's `slot` (0: none, the entry's own
 *                              `released` counts)
 *
 * Two programs share them: tcpr_gate on egress, tcpr_gate_in on ingress.
 *
 * Addresses and ports are in network byte order, sequence numbers in host
 * order. */
#ifndef SMR_TCPR_GATE_BPF_H
#define SMR_TCPR_GATE_BPF_H

#include <linux/types.h>

#define GATE_MAX_CONNS 65536

/* gate_conn.flags */
#define GATE_CONN_ACTIVE 0x01   /* acknowledgements held at `released` */
#define GATE_CONN_CLOSE_OK 0x02 /* FIN/RST pass, nothing is rewritten */
#define GATE_CONN_SND_KNOWN 0x04 /* snd_max is valid */

#define GATE_WSCALE_UNKNOWN 0xff /* window field left alone */
#define GATE_WSCALE_MAX 14       /* RFC 7323 */

struct gate_config {
  __u32 vip;   /* be */
  __u16 port;  /* be */
  __u8 fenced; /* drop everything from the VIP, and its ARP */
  __u8 pad;
};

struct gate_stats {
  __u64 clamped;
  __u64 sack_stripped;
  __u64 fin_dropped;
  __u64 rst_dropped;
  __u64 fenced_dropped;
  __u64 acks_clamped_in; /* client ACKs lowered to what we sent (ingress) */
};

struct gate_conn_key {
  __u32 addr; /* the client's, be */
  __u16 port; /* the client's, be */
  __u16 pad;  /* zero */
};

struct gate_conn {
  __u32 released;  /* acknowledgements are held here (host order) */
  __u8 flags;      /* GATE_CONN_* */
  __u8 rcv_wscale; /* our receive window scale, or GATE_WSCALE_UNKNOWN */
  __u16 pad;
  __u32 snd_max;   /* past the highest sequence we sent (host order) */
  __u32 slot;      /* index in `releases`, or 0: `released` holds it */
};

#endif
