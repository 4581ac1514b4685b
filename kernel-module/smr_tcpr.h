/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * smr_tcpr.h -- internal declarations of the smr_tcpr module (the TCP-R
 * ACK gate); the user-space interface is uapi/smr_tcpr.h.
 *
 * Map of the module:
 *   main.c     module init/exit, the per-namespace state (pernet)
 *   table.c    the connection table (rhashtable, RCU readers)
 *   hook.c     the netfilter hooks: IPv4 out (clamp, FIN/RST, fence),
 *              IPv4 in (client ACKs above what we sent), ARP out (fence)
 *   netlink.c  the generic netlink family (control from user space)
 */
#ifndef SMR_TCPR_H
#define SMR_TCPR_H

#include <linux/percpu.h>
#include <linux/rhashtable.h>
#include <linux/types.h>
#include <net/net_namespace.h>

#include "uapi/smr_tcpr.h"

#define SMR_TCPR_MAX_CONNS 65536
#define SMR_TCPR_WSCALE_UNKNOWN 0xff
#define SMR_TCPR_WSCALE_MAX 14

/* A namespace's configuration; replaced whole under RCU. */
struct smr_tcpr_cfg {
	__be32 vip;
	__be16 port;
	int ifindex;
	bool fenced;
	struct rcu_head rcu;
};

struct smr_tcpr_key {
	__be32 addr; /* the client's */
	__be16 port; /* the client's */
	u16 pad;     /* zero */
};

/* smr_tcpr_conn.flags bits */
enum {
	SMR_TCPR_CONN_CLOSE_OK,
	SMR_TCPR_CONN_ORPHAN,
	SMR_TCPR_CONN_SND_KNOWN,
};

struct smr_tcpr_conn {
	struct rhash_head node;
	struct smr_tcpr_key key;
	u32 released;		/* READ_ONCE/WRITE_ONCE; only moves forward */
	u32 snd_max;		/* past the highest sequence we sent */
	unsigned long flags;	/* SMR_TCPR_CONN_* bits */
	u8 rcv_wscale;
	struct rcu_head rcu;
};

struct smr_tcpr_stats {
	u64 clamped, sack_stripped, fin_dropped, rst_dropped;
	u64 fenced_dropped, acks_clamped_in, acks_sent, orphan_dropped;
};

/* Per network namespace. */
struct smr_tcpr_net {
	struct smr_tcpr_cfg __rcu *cfg; /* NULL: not configured */
	struct rhashtable conns;
	atomic_t nconns;
	struct smr_tcpr_stats __percpu *stats;
	struct net *net;
};

struct smr_tcpr_net *smr_tcpr_pernet(struct net *net);

/* Every object the module allocates (connections, configurations) goes
 * through these, so that live_objects (a read-only module parameter) can
 * tell a leak: after every namespace that used the gate is gone it must
 * read 0, and unloading warns if it does not. */
extern atomic_long_t smr_tcpr_live;
void *smr_tcpr_alloc(size_t size, gfp_t gfp);
void smr_tcpr_free(void *p);
void smr_tcpr_conn_free_rcu(struct rcu_head *head);
void smr_tcpr_cfg_free_rcu(struct rcu_head *head);

#define SMR_TCPR_STAT_INC(tn, field) this_cpu_inc((tn)->stats->field)
void smr_tcpr_stats_sum(struct smr_tcpr_net *tn, struct smr_tcpr_stats *out);

/* table.c */
int smr_tcpr_table_init(struct smr_tcpr_net *tn);
void smr_tcpr_table_destroy(struct smr_tcpr_net *tn);
struct smr_tcpr_conn *smr_tcpr_conn_find(struct smr_tcpr_net *tn,
					 __be32 addr, __be16 port);
int smr_tcpr_conn_set(struct smr_tcpr_net *tn, __be32 addr, __be16 port,
		      u32 released, u32 snd_max, bool snd_known, u8 rcv_wscale,
		      gfp_t gfp);
int smr_tcpr_conn_forget(struct smr_tcpr_net *tn, __be32 addr, __be16 port);
void smr_tcpr_table_clear(struct smr_tcpr_net *tn);
void smr_tcpr_conn_release(struct smr_tcpr_conn *c, u32 released);

/* hook.c */
int smr_tcpr_hooks_register(struct net *net);
void smr_tcpr_hooks_unregister(struct net *net);

/* netlink.c */
int smr_tcpr_genl_register(void);
void smr_tcpr_genl_unregister(void);

#endif /* SMR_TCPR_H */
