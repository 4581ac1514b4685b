// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * main.c -- smr_tcpr: the TCP-R ACK gate as a kernel module.
 *
 * TCP-R (Alvisi, Bressoud, El-Khashab, Marzullo, Zagorodnov: "Wrapping
 * Server-Side TCP to Mask Connection Failures", INFOCOM 2001) lets a backup
 * take over a client's TCP connection when the server dies.  It needs the
 * server's kernel to acknowledge request bytes only once they are
 * replicated, so that a new primary never has to produce bytes the client
 * will not send again.  This module is that gate; user space (tcpr/ in
 * smr) drives it over generic netlink (uapi/smr_tcpr.h) and does the
 * rest (replication, TCP_REPAIR restore, the VIP).
 *
 * What it does, per network namespace configured with a VIP, a port and a
 * device (hook.c has the details):
 *   - acknowledgements sent from VIP:port to a gated client are held at the
 *     connection's release point (ack_seq lowered, window right edge kept,
 *     SACK blocks above the point removed);
 *   - FIN and RST of gated connections are dropped until user space allows
 *     a close; every segment of an orphaned connection is dropped;
 *   - fenced, nothing leaves from the VIP (IPv4 or ARP);
 *   - a release can send the acknowledgement at once (__tcp_send_ack on
 *     the connection's socket), which neither a tc program nor user space
 *     can do: a client waiting for it does not wait for its own timer;
 *   - on ingress, a client acknowledgement of bytes this host never sent
 *     (after a takeover) is lowered to what it sent.
 *
 * Deviations from the paper: TCP-R wraps the server's TCP in a separate
 * bridge that rewrites sequence numbers; here there is nothing to rewrite
 * (the backup restores the socket at the same sequence numbers with
 * TCP_REPAIR), so the module only holds acknowledgements and closes.  The
 * same rules are implemented by the tc-BPF gate (tcpr/gate_bpf.bpf.c),
 * which cannot send the acknowledgement on release.
 *
 * Locking: configuration and table changes from netlink run under the
 * genetlink mutex (the family is not parallel); the hooks read the
 * configuration and the table under RCU (they run in softirq or with BHs
 * off); fields the hooks change are single words written with
 * WRITE_ONCE, cmpxchg (snd_max) or atomic bit operations (flags).
 */
#include <linux/module.h>
#include <linux/slab.h>
#include <net/genetlink.h>
#include <net/netns/generic.h>

#include "smr_tcpr.h"

static unsigned int smr_tcpr_net_id __read_mostly;

atomic_long_t smr_tcpr_live = ATOMIC_LONG_INIT(0);

static int smr_tcpr_live_get(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%ld\n", atomic_long_read(&smr_tcpr_live));
}

static const struct kernel_param_ops smr_tcpr_live_ops = {
	.get = smr_tcpr_live_get,
};
module_param_cb(live_objects, &smr_tcpr_live_ops, NULL, 0444);
MODULE_PARM_DESC(live_objects,
		 "objects allocated and not yet freed (the leak check)");

void *smr_tcpr_alloc(size_t size, gfp_t gfp)
{
	void *p = kzalloc(size, gfp);

	if (p)
		atomic_long_inc(&smr_tcpr_live);
	return p;
}

void smr_tcpr_free(void *p)
{
	if (!p)
		return;
	kfree(p);
	atomic_long_dec(&smr_tcpr_live);
}

void smr_tcpr_conn_free_rcu(struct rcu_head *head)
{
	smr_tcpr_free(container_of(head, struct smr_tcpr_conn, rcu));
}

void smr_tcpr_cfg_free_rcu(struct rcu_head *head)
{
	smr_tcpr_free(container_of(head, struct smr_tcpr_cfg, rcu));
}

struct smr_tcpr_net *smr_tcpr_pernet(struct net *net)
{
	return net_generic(net, smr_tcpr_net_id);
}

void smr_tcpr_stats_sum(struct smr_tcpr_net *tn, struct smr_tcpr_stats *out)
{
	int cpu;

	memset(out, 0, sizeof(*out));
	for_each_possible_cpu(cpu) {
		const struct smr_tcpr_stats *s = per_cpu_ptr(tn->stats, cpu);

		out->clamped += READ_ONCE(s->clamped);
		out->sack_stripped += READ_ONCE(s->sack_stripped);
		out->fin_dropped += READ_ONCE(s->fin_dropped);
		out->rst_dropped += READ_ONCE(s->rst_dropped);
		out->fenced_dropped += READ_ONCE(s->fenced_dropped);
		out->acks_clamped_in += READ_ONCE(s->acks_clamped_in);
		out->acks_sent += READ_ONCE(s->acks_sent);
		out->orphan_dropped += READ_ONCE(s->orphan_dropped);
	}
}

static int __net_init smr_tcpr_net_init(struct net *net)
{
	struct smr_tcpr_net *tn = smr_tcpr_pernet(net);
	int err;

	tn->net = net;
	RCU_INIT_POINTER(tn->cfg, NULL);
	atomic_set(&tn->nconns, 0);
	tn->stats = alloc_percpu(struct smr_tcpr_stats);
	if (!tn->stats)
		return -ENOMEM;
	err = smr_tcpr_table_init(tn);
	if (err)
		goto free_stats;
	err = smr_tcpr_hooks_register(net);
	if (err)
		goto free_table;
	return 0;

free_table:
	smr_tcpr_table_destroy(tn);
free_stats:
	free_percpu(tn->stats);
	return err;
}

static void __net_exit smr_tcpr_net_exit(struct net *net)
{
	struct smr_tcpr_net *tn = smr_tcpr_pernet(net);
	struct smr_tcpr_cfg *cfg;

	/* No hook runs after this returns (it waits for readers). */
	smr_tcpr_hooks_unregister(net);
	cfg = rcu_dereference_protected(tn->cfg, true);
	RCU_INIT_POINTER(tn->cfg, NULL);
	if (cfg)
		call_rcu(&cfg->rcu, smr_tcpr_cfg_free_rcu);
	smr_tcpr_table_destroy(tn);
	free_percpu(tn->stats);
}

static struct pernet_operations smr_tcpr_net_ops = {
	.init = smr_tcpr_net_init,
	.exit = smr_tcpr_net_exit,
	.id = &smr_tcpr_net_id,
	.size = sizeof(struct smr_tcpr_net),
};

static int __init smr_tcpr_init(void)
{
	int err;

	err = register_pernet_subsys(&smr_tcpr_net_ops);
	if (err)
		return err;
	err = smr_tcpr_genl_register();
	if (err) {
		unregister_pernet_subsys(&smr_tcpr_net_ops);
		return err;
	}
	pr_info("smr_tcpr: TCP-R ACK gate loaded\n");
	return 0;
}

static void __exit smr_tcpr_exit(void)
{
	/* Netlink first: no command can reach a namespace being torn down. */
	smr_tcpr_genl_unregister();
	unregister_pernet_subsys(&smr_tcpr_net_ops);
	rcu_barrier(); /* every call_rcu of ours has run */
	WARN(atomic_long_read(&smr_tcpr_live) != 0,
	     "smr_tcpr: %ld objects leaked\n", atomic_long_read(&smr_tcpr_live));
	pr_info("smr_tcpr: unloaded\n");
}

module_init(smr_tcpr_init);
module_exit(smr_tcpr_exit);

MODULE_LICENSE("Dual BSD/GPL");
MODULE_AUTHOR("smr developers");
MODULE_DESCRIPTION("TCP-R ACK gate: hold TCP acknowledgements until requests are replicated");
MODULE_ALIAS_GENL_FAMILY(SMR_TCPR_GENL_NAME);
