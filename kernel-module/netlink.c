// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * netlink.c -- the smr_tcpr generic netlink family (uapi/smr_tcpr.h).
 *
 * Every command acts on the sender's network namespace and needs
 * CAP_NET_ADMIN over it (GENL_UNS_ADMIN_PERM): the gate decides what a
 * host's TCP acknowledges, so only the namespace's administrator may
 * drive it.  Attributes are validated by policy; a command with a missing
 * or malformed attribute fails with -EINVAL and an extack message, and
 * changes nothing.  The family is not parallel: commands are serialized
 * by the genetlink mutex, which is what makes the table's writers
 * exclusive (table.c).
 *
 * RELEASE carries any number of CONN attributes, so that user space pays
 * one system call per batch of releases.  With ACK_NOW the module sends
 * the acknowledgement at once through the connection's socket
 * (__tcp_send_ack; the egress hook then holds it at the new point like
 * any other).
 */
#include <linux/genetlink.h>
#include <linux/netdevice.h>
#include <linux/slab.h>
#include <net/genetlink.h>
#include <net/inet_hashtables.h>
#include <net/sock.h>
#include <net/tcp.h>

#include "smr_tcpr.h"

static struct genl_family smr_tcpr_genl_family;

/* Commands run under the genetlink mutex (the family is not parallel). */
#ifdef CONFIG_LOCKDEP
#define smr_tcpr_genl_held() lockdep_genl_is_held()
#else
#define smr_tcpr_genl_held() true
#endif

static const struct nla_policy smr_tcpr_conn_policy[SMR_TCPR_C_MAX + 1] = {
	[SMR_TCPR_C_ADDR] = { .type = NLA_U32 },
	[SMR_TCPR_C_PORT] = { .type = NLA_U16 },
	[SMR_TCPR_C_RELEASED] = { .type = NLA_U32 },
	[SMR_TCPR_C_SND_NXT] = { .type = NLA_U32 },
	[SMR_TCPR_C_RCV_WSCALE] = { .type = NLA_U8 },
	[SMR_TCPR_C_FLAGS] = NLA_POLICY_MASK(NLA_U32, SMR_TCPR_F_ACK_NOW),
};

static const struct nla_policy smr_tcpr_policy[SMR_TCPR_A_MAX + 1] = {
	[SMR_TCPR_A_VIP] = { .type = NLA_U32 },
	[SMR_TCPR_A_PORT] = { .type = NLA_U16 },
	[SMR_TCPR_A_IFINDEX] = { .type = NLA_U32 },
	[SMR_TCPR_A_FENCED] = NLA_POLICY_MAX(NLA_U8, 1),
	[SMR_TCPR_A_CONN] = NLA_POLICY_NESTED(smr_tcpr_conn_policy),
	[SMR_TCPR_A_STATS] = { .type = NLA_REJECT },
};

static struct smr_tcpr_net *smr_tcpr_info_net(struct genl_info *info)
{
	return smr_tcpr_pernet(genl_info_net(info));
}

/* Replaces the namespace's configuration (NULL: none). */
static void smr_tcpr_cfg_replace(struct smr_tcpr_net *tn,
				 struct smr_tcpr_cfg *ncfg)
{
	struct smr_tcpr_cfg *old;

	old = rcu_replace_pointer(tn->cfg, ncfg, smr_tcpr_genl_held());
	if (old)
		call_rcu(&old->rcu, smr_tcpr_cfg_free_rcu);
}

static int smr_tcpr_cmd_config(struct sk_buff *skb, struct genl_info *info)
{
	struct smr_tcpr_net *tn = smr_tcpr_info_net(info);
	struct smr_tcpr_cfg *cfg;
	struct net_device *dev;
	u32 ifindex;

	if (GENL_REQ_ATTR_CHECK(info, SMR_TCPR_A_VIP) ||
	    GENL_REQ_ATTR_CHECK(info, SMR_TCPR_A_PORT) ||
	    GENL_REQ_ATTR_CHECK(info, SMR_TCPR_A_IFINDEX))
		return -EINVAL;
	ifindex = nla_get_u32(info->attrs[SMR_TCPR_A_IFINDEX]);
	dev = dev_get_by_index(genl_info_net(info), ifindex);
	if (!dev) {
		NL_SET_ERR_MSG_ATTR(info->extack,
				    info->attrs[SMR_TCPR_A_IFINDEX],
				    "no such device in this namespace");
		return -ENODEV;
	}
	dev_put(dev);
	if (!nla_get_u32(info->attrs[SMR_TCPR_A_VIP]) ||
	    !nla_get_u16(info->attrs[SMR_TCPR_A_PORT])) {
		NL_SET_ERR_MSG(info->extack, "VIP and port must not be zero");
		return -EINVAL;
	}
	cfg = smr_tcpr_alloc(sizeof(*cfg), GFP_KERNEL);
	if (!cfg)
		return -ENOMEM;
	cfg->vip = nla_get_in_addr(info->attrs[SMR_TCPR_A_VIP]);
	cfg->port = nla_get_be16(info->attrs[SMR_TCPR_A_PORT]);
	cfg->ifindex = ifindex;
	/* A new gate starts fenced unless told otherwise. */
	cfg->fenced = info->attrs[SMR_TCPR_A_FENCED] ?
		      nla_get_u8(info->attrs[SMR_TCPR_A_FENCED]) : true;
	smr_tcpr_cfg_replace(tn, cfg);
	smr_tcpr_table_clear(tn);
	return 0;
}

static int smr_tcpr_cmd_reset(struct sk_buff *skb, struct genl_info *info)
{
	struct smr_tcpr_net *tn = smr_tcpr_info_net(info);

	smr_tcpr_cfg_replace(tn, NULL);
	smr_tcpr_table_clear(tn);
	return 0;
}

static int smr_tcpr_cmd_fence(struct sk_buff *skb, struct genl_info *info)
{
	struct smr_tcpr_net *tn = smr_tcpr_info_net(info);
	struct smr_tcpr_cfg *cur, *ncfg;

	if (GENL_REQ_ATTR_CHECK(info, SMR_TCPR_A_FENCED))
		return -EINVAL;
	cur = rcu_dereference_protected(tn->cfg, smr_tcpr_genl_held());
	if (!cur) {
		NL_SET_ERR_MSG(info->extack, "the gate is not configured");
		return -ENOENT;
	}
	ncfg = smr_tcpr_alloc(sizeof(*ncfg), GFP_KERNEL);
	if (!ncfg)
		return -ENOMEM;
	ncfg->vip = cur->vip;
	ncfg->port = cur->port;
	ncfg->ifindex = cur->ifindex;
	ncfg->fenced = nla_get_u8(info->attrs[SMR_TCPR_A_FENCED]);
	smr_tcpr_cfg_replace(tn, ncfg);
	return 0;
}

/* Parses one CONN; ADDR and PORT are required, the rest as `need`. */
static int smr_tcpr_parse_conn(const struct nlattr *nla, struct nlattr **tb,
			       struct netlink_ext_ack *extack, bool need_rel)
{
	int err;

	err = nla_parse_nested(tb, SMR_TCPR_C_MAX, nla, smr_tcpr_conn_policy,
			       extack);
	if (err)
		return err;
	if (!tb[SMR_TCPR_C_ADDR] || !tb[SMR_TCPR_C_PORT] ||
	    (need_rel && !tb[SMR_TCPR_C_RELEASED])) {
		if (need_rel)
			NL_SET_ERR_MSG_ATTR(extack, nla,
					    "CONN needs ADDR, PORT, RELEASED");
		else
			NL_SET_ERR_MSG_ATTR(extack, nla,
					    "CONN needs ADDR and PORT");
		return -EINVAL;
	}
	return 0;
}

static int smr_tcpr_cmd_open(struct sk_buff *skb, struct genl_info *info)
{
	struct smr_tcpr_net *tn = smr_tcpr_info_net(info);
	struct nlattr *tb[SMR_TCPR_C_MAX + 1];
	u8 ws = SMR_TCPR_WSCALE_UNKNOWN;
	u32 snd = 0;
	int err;

	if (GENL_REQ_ATTR_CHECK(info, SMR_TCPR_A_CONN))
		return -EINVAL;
	err = smr_tcpr_parse_conn(info->attrs[SMR_TCPR_A_CONN], tb,
				  info->extack, true);
	if (err)
		return err;
	if (tb[SMR_TCPR_C_RCV_WSCALE])
		ws = nla_get_u8(tb[SMR_TCPR_C_RCV_WSCALE]);
	if (tb[SMR_TCPR_C_SND_NXT])
		snd = nla_get_u32(tb[SMR_TCPR_C_SND_NXT]);
	return smr_tcpr_conn_set(tn, nla_get_in_addr(tb[SMR_TCPR_C_ADDR]),
				 nla_get_be16(tb[SMR_TCPR_C_PORT]),
				 nla_get_u32(tb[SMR_TCPR_C_RELEASED]), snd,
				 tb[SMR_TCPR_C_SND_NXT] != NULL, ws,
				 GFP_KERNEL);
}

/* Sends the connection's acknowledgement now, if its socket is an
 * established (or half-closed) full socket of this namespace. */
static bool smr_tcpr_ack_now(struct net *net, const struct smr_tcpr_cfg *cfg,
			     __be32 caddr, __be16 cport)
{
	struct sock *sk;
	bool sent = false;

	rcu_read_lock();
	sk = __inet_lookup_established(net, net->ipv4.tcp_death_row.hashinfo,
				       caddr, cport, cfg->vip,
				       ntohs(cfg->port), cfg->ifindex, 0);
	rcu_read_unlock();
	if (!sk)
		return false;
	if (sk_fullsock(sk)) {
		lock_sock(sk);
		if (sk->sk_state == TCP_ESTABLISHED ||
		    sk->sk_state == TCP_CLOSE_WAIT) {
			__tcp_send_ack(sk, tcp_sk(sk)->rcv_nxt);
			sent = true;
		}
		release_sock(sk);
	}
	sock_gen_put(sk);
	return sent;
}

static int smr_tcpr_cmd_release(struct sk_buff *skb, struct genl_info *info)
{
	struct smr_tcpr_net *tn = smr_tcpr_info_net(info);
	struct net *net = genl_info_net(info);
	struct nlattr *tb[SMR_TCPR_C_MAX + 1];
	const struct smr_tcpr_cfg *cfg;
	struct smr_tcpr_conn *c;
	struct nlattr *nla;
	int rem, err, missing = 0;

	cfg = rcu_dereference_protected(tn->cfg, smr_tcpr_genl_held());
	if (!cfg) {
		NL_SET_ERR_MSG(info->extack, "the gate is not configured");
		return -ENOENT;
	}
	/* Validate the whole batch first: all or nothing. */
	nlmsg_for_each_attr(nla, info->nlhdr, GENL_HDRLEN, rem) {
		if (nla_type(nla) != SMR_TCPR_A_CONN)
			continue;
		err = smr_tcpr_parse_conn(nla, tb, info->extack, true);
		if (err)
			return err;
	}
	nlmsg_for_each_attr(nla, info->nlhdr, GENL_HDRLEN, rem) {
		__be32 addr;
		__be16 port;
		u32 flags;

		if (nla_type(nla) != SMR_TCPR_A_CONN)
			continue;
		if (smr_tcpr_parse_conn(nla, tb, NULL, true))
			continue; /* validated above */
		addr = nla_get_in_addr(tb[SMR_TCPR_C_ADDR]);
		port = nla_get_be16(tb[SMR_TCPR_C_PORT]);
		flags = tb[SMR_TCPR_C_FLAGS] ?
			nla_get_u32(tb[SMR_TCPR_C_FLAGS]) : 0;
		rcu_read_lock();
		c = smr_tcpr_conn_find(tn, addr, port);
		if (c)
			smr_tcpr_conn_release(
				c, nla_get_u32(tb[SMR_TCPR_C_RELEASED]));
		rcu_read_unlock();
		if (!c) {
			missing++;
			continue;
		}
		if ((flags & SMR_TCPR_F_ACK_NOW) &&
		    smr_tcpr_ack_now(net, cfg, addr, port))
			SMR_TCPR_STAT_INC(tn, acks_sent);
	}
	if (missing) {
		NL_SET_ERR_MSG(info->extack,
			       "some connections are not in the table");
		return -ENOENT;
	}
	return 0;
}

static int smr_tcpr_cmd_conn_op(struct sk_buff *skb, struct genl_info *info)
{
	struct smr_tcpr_net *tn = smr_tcpr_info_net(info);
	u8 cmd = info->genlhdr->cmd;
	struct nlattr *tb[SMR_TCPR_C_MAX + 1];
	struct smr_tcpr_conn *c;
	int err;

	if (!info->attrs[SMR_TCPR_A_CONN]) {
		struct rhashtable_iter it;

		if (cmd != SMR_TCPR_CMD_ORPHAN) {
			GENL_REQ_ATTR_CHECK(info, SMR_TCPR_A_CONN);
			return -EINVAL;
		}
		/* ORPHAN without CONN: every connection. */
		rhashtable_walk_enter(&tn->conns, &it);
		rhashtable_walk_start(&it);
		while ((c = rhashtable_walk_next(&it)) != NULL)
			if (!IS_ERR(c))
				set_bit(SMR_TCPR_CONN_ORPHAN, &c->flags);
		rhashtable_walk_stop(&it);
		rhashtable_walk_exit(&it);
		return 0;
	}
	err = smr_tcpr_parse_conn(info->attrs[SMR_TCPR_A_CONN], tb,
				  info->extack, false);
	if (err)
		return err;
	if (cmd == SMR_TCPR_CMD_FORGET)
		return smr_tcpr_conn_forget(
			tn, nla_get_in_addr(tb[SMR_TCPR_C_ADDR]),
			nla_get_be16(tb[SMR_TCPR_C_PORT]));
	rcu_read_lock();
	c = smr_tcpr_conn_find(tn, nla_get_in_addr(tb[SMR_TCPR_C_ADDR]),
			       nla_get_be16(tb[SMR_TCPR_C_PORT]));
	if (c)
		set_bit(cmd == SMR_TCPR_CMD_ORPHAN ? SMR_TCPR_CONN_ORPHAN :
						      SMR_TCPR_CONN_CLOSE_OK,
			&c->flags);
	rcu_read_unlock();
	return c ? 0 : -ENOENT;
}

static int smr_tcpr_put_stats(struct sk_buff *msg, struct smr_tcpr_net *tn)
{
	struct smr_tcpr_stats s;
	struct nlattr *nest;

	smr_tcpr_stats_sum(tn, &s);
	nest = nla_nest_start(msg, SMR_TCPR_A_STATS);
	if (!nest)
		return -EMSGSIZE;
	if (nla_put_u64_64bit(msg, SMR_TCPR_S_CLAMPED, s.clamped,
			      SMR_TCPR_S_PAD) ||
	    nla_put_u64_64bit(msg, SMR_TCPR_S_SACK_STRIPPED, s.sack_stripped,
			      SMR_TCPR_S_PAD) ||
	    nla_put_u64_64bit(msg, SMR_TCPR_S_FIN_DROPPED, s.fin_dropped,
			      SMR_TCPR_S_PAD) ||
	    nla_put_u64_64bit(msg, SMR_TCPR_S_RST_DROPPED, s.rst_dropped,
			      SMR_TCPR_S_PAD) ||
	    nla_put_u64_64bit(msg, SMR_TCPR_S_FENCED_DROPPED, s.fenced_dropped,
			      SMR_TCPR_S_PAD) ||
	    nla_put_u64_64bit(msg, SMR_TCPR_S_ACKS_CLAMPED_IN,
			      s.acks_clamped_in, SMR_TCPR_S_PAD) ||
	    nla_put_u64_64bit(msg, SMR_TCPR_S_ACKS_SENT, s.acks_sent,
			      SMR_TCPR_S_PAD) ||
	    nla_put_u64_64bit(msg, SMR_TCPR_S_ORPHAN_DROPPED,
			      s.orphan_dropped, SMR_TCPR_S_PAD) ||
	    nla_put_u64_64bit(msg, SMR_TCPR_S_CONNS,
			      (u64)atomic_read(&tn->nconns), SMR_TCPR_S_PAD)) {
		nla_nest_cancel(msg, nest);
		return -EMSGSIZE;
	}
	nla_nest_end(msg, nest);
	return 0;
}

static int smr_tcpr_cmd_stats(struct sk_buff *skb, struct genl_info *info)
{
	struct smr_tcpr_net *tn = smr_tcpr_info_net(info);
	struct sk_buff *msg;
	void *hdr;
	int err;

	msg = genlmsg_new(NLMSG_GOODSIZE, GFP_KERNEL);
	if (!msg)
		return -ENOMEM;
	hdr = genlmsg_put_reply(msg, info, &smr_tcpr_genl_family, 0,
				SMR_TCPR_CMD_GET_STATS);
	if (!hdr) {
		nlmsg_free(msg);
		return -EMSGSIZE;
	}
	err = smr_tcpr_put_stats(msg, tn);
	if (err) {
		nlmsg_free(msg);
		return err;
	}
	genlmsg_end(msg, hdr);
	return genlmsg_reply(msg, info);
}

static int smr_tcpr_put_conn(struct sk_buff *msg, u32 portid, u32 seq,
			     const struct smr_tcpr_conn *c)
{
	struct nlattr *nest;
	u32 flags = 0;
	void *hdr;

	hdr = genlmsg_put(msg, portid, seq, &smr_tcpr_genl_family,
			  NLM_F_MULTI, SMR_TCPR_CMD_LIST);
	if (!hdr)
		return -EMSGSIZE;
	if (test_bit(SMR_TCPR_CONN_CLOSE_OK, &c->flags))
		flags |= SMR_TCPR_F_CLOSE_OK;
	if (test_bit(SMR_TCPR_CONN_ORPHAN, &c->flags))
		flags |= SMR_TCPR_F_ORPHAN;
	if (test_bit(SMR_TCPR_CONN_SND_KNOWN, &c->flags))
		flags |= SMR_TCPR_F_SND_KNOWN;
	nest = nla_nest_start(msg, SMR_TCPR_A_CONN);
	if (!nest ||
	    nla_put_in_addr(msg, SMR_TCPR_C_ADDR, c->key.addr) ||
	    nla_put_be16(msg, SMR_TCPR_C_PORT, c->key.port) ||
	    nla_put_u32(msg, SMR_TCPR_C_RELEASED, READ_ONCE(c->released)) ||
	    nla_put_u32(msg, SMR_TCPR_C_SND_NXT, READ_ONCE(c->snd_max)) ||
	    nla_put_u8(msg, SMR_TCPR_C_RCV_WSCALE, READ_ONCE(c->rcv_wscale)) ||
	    nla_put_u32(msg, SMR_TCPR_C_FLAGS, flags)) {
		genlmsg_cancel(msg, hdr);
		return -EMSGSIZE;
	}
	nla_nest_end(msg, nest);
	genlmsg_end(msg, hdr);
	return 0;
}

/* cb->args[0]: entries already sent.  Each call walks from the start and
 * skips them (the table is bounded; dumps are for operators and tests). */
static int smr_tcpr_dump_list(struct sk_buff *msg, struct netlink_callback *cb)
{
	struct smr_tcpr_net *tn = smr_tcpr_pernet(sock_net(msg->sk));
	struct rhashtable_iter it;
	struct smr_tcpr_conn *c;
	long skip = cb->args[0], n = 0;

	rhashtable_walk_enter(&tn->conns, &it);
	rhashtable_walk_start(&it);
	while ((c = rhashtable_walk_next(&it)) != NULL) {
		if (IS_ERR(c))
			continue;
		if (n++ < skip)
			continue;
		if (smr_tcpr_put_conn(msg, NETLINK_CB(cb->skb).portid,
				      cb->nlh->nlmsg_seq, c)) {
			n--;
			break;
		}
	}
	rhashtable_walk_stop(&it);
	rhashtable_walk_exit(&it);
	cb->args[0] = n;
	return msg->len;
}

static const struct genl_small_ops smr_tcpr_ops[] = {
	{ .cmd = SMR_TCPR_CMD_CONFIG, .doit = smr_tcpr_cmd_config,
	  .flags = GENL_UNS_ADMIN_PERM },
	{ .cmd = SMR_TCPR_CMD_FENCE, .doit = smr_tcpr_cmd_fence,
	  .flags = GENL_UNS_ADMIN_PERM },
	{ .cmd = SMR_TCPR_CMD_OPEN, .doit = smr_tcpr_cmd_open,
	  .flags = GENL_UNS_ADMIN_PERM },
	{ .cmd = SMR_TCPR_CMD_RELEASE, .doit = smr_tcpr_cmd_release,
	  .flags = GENL_UNS_ADMIN_PERM },
	{ .cmd = SMR_TCPR_CMD_ALLOW_CLOSE, .doit = smr_tcpr_cmd_conn_op,
	  .flags = GENL_UNS_ADMIN_PERM },
	{ .cmd = SMR_TCPR_CMD_FORGET, .doit = smr_tcpr_cmd_conn_op,
	  .flags = GENL_UNS_ADMIN_PERM },
	{ .cmd = SMR_TCPR_CMD_ORPHAN, .doit = smr_tcpr_cmd_conn_op,
	  .flags = GENL_UNS_ADMIN_PERM },
	{ .cmd = SMR_TCPR_CMD_GET_STATS, .doit = smr_tcpr_cmd_stats,
	  .flags = GENL_UNS_ADMIN_PERM },
	{ .cmd = SMR_TCPR_CMD_LIST, .dumpit = smr_tcpr_dump_list,
	  .flags = GENL_UNS_ADMIN_PERM },
	{ .cmd = SMR_TCPR_CMD_RESET, .doit = smr_tcpr_cmd_reset,
	  .flags = GENL_UNS_ADMIN_PERM },
};

static struct genl_family smr_tcpr_genl_family __ro_after_init = {
	.name = SMR_TCPR_GENL_NAME,
	.version = SMR_TCPR_GENL_VERSION,
	.maxattr = SMR_TCPR_A_MAX,
	.policy = smr_tcpr_policy,
	.netnsok = true,
	.module = THIS_MODULE,
	.small_ops = smr_tcpr_ops,
	.n_small_ops = ARRAY_SIZE(smr_tcpr_ops),
	.resv_start_op = SMR_TCPR_CMD_MAX + 1,
};

int smr_tcpr_genl_register(void)
{
	return genl_register_family(&smr_tcpr_genl_family);
}

void smr_tcpr_genl_unregister(void)
{
	genl_unregister_family(&smr_tcpr_genl_family);
}
