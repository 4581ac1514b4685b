// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * table.c -- the gate's connection table, one per network namespace.
 *
 * An rhashtable keyed by the client's address and port (the VIP and the
 * service port are the namespace's, so they need not be in the key).
 * Readers are the hooks, under RCU; writers are netlink commands (under
 * the genetlink mutex) and the egress hook, which creates an entry when it
 * sees a SYN-ACK (so bytes that arrive before accept() are held too).
 * Entries are never changed in a way a reader could see half done: the
 * fields are words written once each, and an existing entry is updated in
 * place rather than replaced (no window in which a lookup finds nothing).
 * Removal frees after a grace period.  At most SMR_TCPR_MAX_CONNS
 * entries: past that a new connection is not gated (and counted nowhere;
 * user space sees -ENOSPC from OPEN).
 */
#include <linux/slab.h>

#include "smr_tcpr.h"

static const struct rhashtable_params smr_tcpr_rht_params = {
	.key_len = sizeof(struct smr_tcpr_key),
	.key_offset = offsetof(struct smr_tcpr_conn, key),
	.head_offset = offsetof(struct smr_tcpr_conn, node),
	.automatic_shrinking = true,
};

int smr_tcpr_table_init(struct smr_tcpr_net *tn)
{
	return rhashtable_init(&tn->conns, &smr_tcpr_rht_params);
}

static void smr_tcpr_conn_free(void *ptr, void *arg)
{
	smr_tcpr_free(ptr);
}

/* Only with no reader left (namespace exit, after the hooks went). */
void smr_tcpr_table_destroy(struct smr_tcpr_net *tn)
{
	rhashtable_free_and_destroy(&tn->conns, smr_tcpr_conn_free, NULL);
	atomic_set(&tn->nconns, 0);
}

static struct smr_tcpr_key smr_tcpr_make_key(__be32 addr, __be16 port)
{
	struct smr_tcpr_key k;

	memset(&k, 0, sizeof(k));
	k.addr = addr;
	k.port = port;
	return k;
}

/* Under rcu_read_lock (or the genetlink mutex). */
struct smr_tcpr_conn *smr_tcpr_conn_find(struct smr_tcpr_net *tn,
					 __be32 addr, __be16 port)
{
	struct smr_tcpr_key k = smr_tcpr_make_key(addr, port);

	return rhashtable_lookup(&tn->conns, &k, smr_tcpr_rht_params);
}

void smr_tcpr_conn_release(struct smr_tcpr_conn *c, u32 released)
{
	u32 old = READ_ONCE(c->released);

	/* Writers are serialized (genetlink mutex); forward only. */
	if ((s32)(released - old) > 0)
		WRITE_ONCE(c->released, released);
}

static void smr_tcpr_conn_fill(struct smr_tcpr_conn *c, u32 released,
			       u32 snd_max, bool snd_known, u8 rcv_wscale)
{
	WRITE_ONCE(c->released, released);
	WRITE_ONCE(c->snd_max, snd_max);
	WRITE_ONCE(c->rcv_wscale, rcv_wscale <= SMR_TCPR_WSCALE_MAX ?
		   rcv_wscale : SMR_TCPR_WSCALE_UNKNOWN);
	clear_bit(SMR_TCPR_CONN_CLOSE_OK, &c->flags);
	clear_bit(SMR_TCPR_CONN_ORPHAN, &c->flags);
	if (snd_known)
		set_bit(SMR_TCPR_CONN_SND_KNOWN, &c->flags);
	else
		clear_bit(SMR_TCPR_CONN_SND_KNOWN, &c->flags);
}

/*
 * Creates the connection's entry, or resets an existing one to the given
 * point.  From the egress hook (GFP_ATOMIC, under RCU) or netlink.
 */
int smr_tcpr_conn_set(struct smr_tcpr_net *tn, __be32 addr, __be16 port,
		      u32 released, u32 snd_max, bool snd_known, u8 rcv_wscale,
		      gfp_t gfp)
{
	struct smr_tcpr_conn *c, *old;

	rcu_read_lock();
	c = smr_tcpr_conn_find(tn, addr, port);
	if (c) {
		smr_tcpr_conn_fill(c, released, snd_max, snd_known,
				   rcv_wscale);
		rcu_read_unlock();
		return 0;
	}
	rcu_read_unlock();

	if (atomic_inc_return(&tn->nconns) > SMR_TCPR_MAX_CONNS) {
		atomic_dec(&tn->nconns);
		return -ENOSPC;
	}
	c = smr_tcpr_alloc(sizeof(*c), gfp);
	if (!c) {
		atomic_dec(&tn->nconns);
		return -ENOMEM;
	}
	c->key = smr_tcpr_make_key(addr, port);
	smr_tcpr_conn_fill(c, released, snd_max, snd_known, rcv_wscale);
	old = rhashtable_lookup_get_insert_fast(&tn->conns, &c->node,
						smr_tcpr_rht_params);
	if (old) {
		/* Lost a race with another creator: update theirs. */
		smr_tcpr_free(c);
		atomic_dec(&tn->nconns);
		if (IS_ERR(old))
			return PTR_ERR(old);
		smr_tcpr_conn_fill(old, released, snd_max, snd_known,
				   rcv_wscale);
	}
	return 0;
}

int smr_tcpr_conn_forget(struct smr_tcpr_net *tn, __be32 addr, __be16 port)
{
	struct smr_tcpr_conn *c;
	int err;

	rcu_read_lock();
	c = smr_tcpr_conn_find(tn, addr, port);
	if (!c) {
		rcu_read_unlock();
		return -ENOENT;
	}
	err = rhashtable_remove_fast(&tn->conns, &c->node,
				     smr_tcpr_rht_params);
	rcu_read_unlock();
	if (err)
		return err; /* someone else removed it */
	atomic_dec(&tn->nconns);
	call_rcu(&c->rcu, smr_tcpr_conn_free_rcu);
	return 0;
}

/* Forgets every connection (netlink: CONFIG and RESET). */
void smr_tcpr_table_clear(struct smr_tcpr_net *tn)
{
	struct rhashtable_iter it;
	struct smr_tcpr_conn *c;

	rhashtable_walk_enter(&tn->conns, &it);
	rhashtable_walk_start(&it);
	while ((c = rhashtable_walk_next(&it)) != NULL) {
		if (IS_ERR(c))
			continue; /* -EAGAIN: a resize; the walk goes on */
		if (rhashtable_remove_fast(&tn->conns, &c->node,
					   smr_tcpr_rht_params) == 0) {
			atomic_dec(&tn->nconns);
			call_rcu(&c->rcu, smr_tcpr_conn_free_rcu);
		}
	}
	rhashtable_walk_stop(&it);
	rhashtable_walk_exit(&it);
}
