// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * hook.c -- the gate's netfilter hooks, registered in every network
 * namespace; they do nothing where the namespace has no configuration.
 *
 *   IPv4 POST_ROUTING (last):   frames leaving the VIP's device
 *     from the VIP, fenced          drop (fenced_dropped)
 *     TCP from VIP:port, SYN-ACK    create the connection's entry, held at
 *                                   its ack_seq (the client's ISN + 1)
 *     ... gated, orphaned           drop (orphan_dropped)
 *     ... gated, FIN/RST            drop unless CLOSE_OK
 *     ... gated, ACK past the point ack_seq lowered to the point, window
 *                                   widened by the difference (>> wscale) so
 *                                   its right edge stays, SACK option NOP-ed
 *                                   (also when one of its blocks ends past
 *                                   the point)
 *   IPv4 LOCAL_IN:
 *     TCP to VIP:port from a gated  ack_seq above what we sent (snd_max)
 *     client                        lowered to it (acks_clamped_in)
 *   ARP OUT:
 *     sender IP = VIP, fenced       drop (fenced_dropped)
 *
 * The rules are those of the tc-BPF gate (tcpr/gate_bpf.bpf.c); see there
 * for why each exists.  Checksums: inet_proto_csum_replace* only (a
 * CHECKSUM_PARTIAL skb's field holds the pseudo-header sum and is left
 * alone for fields outside it; otherwise the update is incremental, which
 * also keeps a CHECKSUM_COMPLETE skb's csum right).  Headers are made
 * writable with skb_ensure_writable before they are touched (TCP
 * transmits clones of its retransmission queue).  If that fails the
 * segment is dropped, never passed with the real acknowledgement.
 */
#include <linux/if_arp.h>
#include <linux/ip.h>
#include <linux/netfilter.h>
#include <linux/netfilter_arp.h>
#include <linux/netfilter_ipv4.h>
#include <linux/skbuff.h>
#include <linux/tcp.h>
#include <net/checksum.h>
#include <net/ip.h>
#include <net/tcp.h>

#include "smr_tcpr.h"

#define SMR_TCPR_MAX_OPTLEN 40

struct smr_tcpr_opts {
	int wscale;	/* -1: absent */
	int sack_off;	/* offset of the SACK option in the options, -1 */
	int sack_len;
};

static void smr_tcpr_parse_opts(const u8 *o, int len, struct smr_tcpr_opts *r)
{
	int i = 0;

	r->wscale = -1;
	r->sack_off = -1;
	r->sack_len = 0;
	while (i < len) {
		u8 kind = o[i], olen;

		if (kind == TCPOPT_EOL)
			break;
		if (kind == TCPOPT_NOP) {
			i++;
			continue;
		}
		if (i + 1 >= len)
			break;
		olen = o[i + 1];
		if (olen < 2 || i + olen > len)
			break; /* malformed: stop, keep what was found */
		if (kind == TCPOPT_WINDOW && olen == TCPOLEN_WINDOW)
			r->wscale = o[i + 2];
		else if (kind == TCPOPT_SACK && r->sack_off < 0) {
			r->sack_off = i;
			r->sack_len = olen;
		}
		i += olen;
	}
}

/* Does a block of the SACK option end after `released`?  D-SACK blocks
 * below it are fine. */
static bool smr_tcpr_sack_above(const u8 *o, const struct smr_tcpr_opts *r,
				u32 released)
{
	int b;

	for (b = r->sack_off + 2; b + 8 <= r->sack_off + r->sack_len; b += 8) {
		u32 end = get_unaligned_be32(o + b + 4);

		if ((s32)(end - released) > 0)
			return true;
	}
	return false;
}

/* Replaces the SACK option with NOPs, 16-bit word by word so that the
 * checksum update stays incremental.  Options start 20 bytes into the
 * header, so word boundaries are even offsets of the option area. */
static void smr_tcpr_strip_sack(struct sk_buff *skb, struct tcphdr *th,
				const struct smr_tcpr_opts *r)
{
	u8 *o = (u8 *)(th + 1);
	int from = r->sack_off & ~1, to = r->sack_off + r->sack_len, w;

	for (w = from; w < to; w += 2) {
		__be16 oldw, neww;
		u8 *p = o + w;

		memcpy(&oldw, p, 2);
		if (w >= r->sack_off)
			p[0] = TCPOPT_NOP;
		if (w + 1 >= r->sack_off && w + 1 < to)
			p[1] = TCPOPT_NOP;
		memcpy(&neww, p, 2);
		if (oldw != neww)
			inet_proto_csum_replace2(&th->check, skb, oldw, neww,
						 false);
	}
}

static const struct smr_tcpr_cfg *smr_tcpr_cfg_get(struct smr_tcpr_net *tn)
{
	return rcu_dereference(tn->cfg);
}

static void smr_tcpr_snd_seen(struct smr_tcpr_conn *c, u32 end)
{
	u32 cur;

	if (!test_bit(SMR_TCPR_CONN_SND_KNOWN, &c->flags)) {
		WRITE_ONCE(c->snd_max, end);
		set_bit(SMR_TCPR_CONN_SND_KNOWN, &c->flags);
		return;
	}
	/* Forward only, whichever CPU sends. */
	cur = READ_ONCE(c->snd_max);
	while ((s32)(end - cur) > 0) {
		u32 seen = cmpxchg(&c->snd_max, cur, end);

		if (seen == cur)
			break;
		cur = seen;
	}
}

static unsigned int smr_tcpr_out(void *priv, struct sk_buff *skb,
				 const struct nf_hook_state *state)
{
	struct smr_tcpr_net *tn = smr_tcpr_pernet(state->net);
	const struct smr_tcpr_cfg *cfg = smr_tcpr_cfg_get(tn);
	u8 optbuf[SMR_TCPR_MAX_OPTLEN];
	struct smr_tcpr_opts opts;
	struct tcphdr _th, *th;
	const struct iphdr *iph;
	struct smr_tcpr_conn *c;
	unsigned int thoff, doff, optlen;
	u32 ack, released, end;
	s32 ahead;
	u8 wscale;
	const u8 *o;

	if (!cfg || !state->out || state->out->ifindex != cfg->ifindex)
		return NF_ACCEPT;
	iph = ip_hdr(skb);
	if (iph->saddr != cfg->vip)
		return NF_ACCEPT;
	if (cfg->fenced) {
		SMR_TCPR_STAT_INC(tn, fenced_dropped);
		return NF_DROP;
	}
	if (iph->protocol != IPPROTO_TCP || ip_is_fragment(iph))
		return NF_ACCEPT;
	thoff = skb_network_offset(skb) + ip_hdrlen(skb);
	th = skb_header_pointer(skb, thoff, sizeof(_th), &_th);
	if (!th || th->source != cfg->port)
		return NF_ACCEPT;
	doff = th->doff * 4;
	if (doff < sizeof(*th))
		return NF_ACCEPT;
	optlen = doff - sizeof(*th);
	o = NULL;
	if (optlen)
		o = skb_header_pointer(skb, thoff + sizeof(*th), optlen, optbuf);

	if (th->syn && th->ack) {
		u8 ws = SMR_TCPR_WSCALE_UNKNOWN;

		if (o) {
			smr_tcpr_parse_opts(o, optlen, &opts);
			/* We send the option only if the client offered it;
			 * without it neither side scales. */
			ws = opts.wscale < 0 ? 0 : (u8)min(opts.wscale, 255);
		} else if (!optlen) {
			ws = 0;
		}
		smr_tcpr_conn_set(tn, iph->daddr, th->dest, ntohl(th->ack_seq),
				  ntohl(th->seq) + 1, true, ws, GFP_ATOMIC);
		return NF_ACCEPT;
	}

	c = smr_tcpr_conn_find(tn, iph->daddr, th->dest);
	if (!c)
		return NF_ACCEPT;
	if (test_bit(SMR_TCPR_CONN_ORPHAN, &c->flags)) {
		SMR_TCPR_STAT_INC(tn, orphan_dropped);
		return NF_DROP;
	}
	/* How far our stream went (for the ingress hook). */
	end = ntohl(th->seq) + (skb->len - (thoff + doff)) + (th->fin ? 1 : 0);
	smr_tcpr_snd_seen(c, end);
	if (test_bit(SMR_TCPR_CONN_CLOSE_OK, &c->flags))
		return NF_ACCEPT;
	if (th->fin || th->rst) {
		if (th->rst)
			SMR_TCPR_STAT_INC(tn, rst_dropped);
		else
			SMR_TCPR_STAT_INC(tn, fin_dropped);
		return NF_DROP;
	}
	if (!th->ack)
		return NF_ACCEPT;

	released = READ_ONCE(c->released);
	wscale = READ_ONCE(c->rcv_wscale);
	ack = ntohl(th->ack_seq);
	ahead = (s32)(ack - released);
	if (o)
		smr_tcpr_parse_opts(o, optlen, &opts);
	else
		opts.sack_off = -1;
	if (optlen && !o)
		return ahead > 0 ? NF_DROP : NF_ACCEPT; /* unreadable options */
	if (ahead <= 0 &&
	    (opts.sack_off < 0 || !smr_tcpr_sack_above(o, &opts, released)))
		return NF_ACCEPT;

	if (skb_ensure_writable(skb, thoff + doff))
		return NF_DROP;
	th = (struct tcphdr *)(skb->data + thoff);
	if (ahead > 0) {
		__be32 nack = htonl(released);

		inet_proto_csum_replace4(&th->check, skb, th->ack_seq, nack,
					 false);
		th->ack_seq = nack;
		if (wscale <= SMR_TCPR_WSCALE_MAX) {
			u32 win = ntohs(th->window) + ((u32)ahead >> wscale);
			__be16 nwin = htons((u16)min_t(u32, win, 0xffff));

			if (nwin != th->window) {
				inet_proto_csum_replace2(&th->check, skb,
							 th->window, nwin,
							 false);
				th->window = nwin;
			}
		}
		SMR_TCPR_STAT_INC(tn, clamped);
	}
	if (opts.sack_off >= 0) {
		smr_tcpr_strip_sack(skb, th, &opts);
		SMR_TCPR_STAT_INC(tn, sack_stripped);
	}
	return NF_ACCEPT;
}

static unsigned int smr_tcpr_in(void *priv, struct sk_buff *skb,
				const struct nf_hook_state *state)
{
	struct smr_tcpr_net *tn = smr_tcpr_pernet(state->net);
	const struct smr_tcpr_cfg *cfg = smr_tcpr_cfg_get(tn);
	struct tcphdr _th, *th;
	const struct iphdr *iph;
	struct smr_tcpr_conn *c;
	unsigned int thoff;
	u32 snd_max;
	__be32 nack;

	if (!cfg || cfg->fenced)
		return NF_ACCEPT;
	iph = ip_hdr(skb);
	if (iph->daddr != cfg->vip || iph->protocol != IPPROTO_TCP ||
	    ip_is_fragment(iph))
		return NF_ACCEPT;
	thoff = skb_network_offset(skb) + ip_hdrlen(skb);
	th = skb_header_pointer(skb, thoff, sizeof(_th), &_th);
	if (!th || th->dest != cfg->port || !th->ack || th->syn)
		return NF_ACCEPT;
	c = smr_tcpr_conn_find(tn, iph->saddr, th->source);
	if (!c || !test_bit(SMR_TCPR_CONN_SND_KNOWN, &c->flags))
		return NF_ACCEPT;
	snd_max = READ_ONCE(c->snd_max);
	if ((s32)(ntohl(th->ack_seq) - snd_max) <= 0)
		return NF_ACCEPT;
	if (skb_ensure_writable(skb, thoff + sizeof(*th)))
		return NF_ACCEPT; /* the kernel drops it, as without us */
	th = (struct tcphdr *)(skb->data + thoff);
	nack = htonl(snd_max);
	inet_proto_csum_replace4(&th->check, skb, th->ack_seq, nack, false);
	th->ack_seq = nack;
	SMR_TCPR_STAT_INC(tn, acks_clamped_in);
	return NF_ACCEPT;
}

static unsigned int smr_tcpr_arp_out(void *priv, struct sk_buff *skb,
				     const struct nf_hook_state *state)
{
	struct smr_tcpr_net *tn = smr_tcpr_pernet(state->net);
	const struct smr_tcpr_cfg *cfg = smr_tcpr_cfg_get(tn);
	struct arphdr _ah;
	const struct arphdr *ah;
	__be32 _sip;
	const __be32 *sip;

	if (!cfg || !cfg->fenced)
		return NF_ACCEPT;
	ah = skb_header_pointer(skb, skb_network_offset(skb), sizeof(_ah),
				&_ah);
	if (!ah || ah->ar_pro != htons(ETH_P_IP) || ah->ar_pln != 4)
		return NF_ACCEPT;
	sip = skb_header_pointer(skb, skb_network_offset(skb) + sizeof(*ah) +
				 ah->ar_hln, sizeof(_sip), &_sip);
	if (!sip || *sip != cfg->vip)
		return NF_ACCEPT;
	SMR_TCPR_STAT_INC(tn, fenced_dropped);
	return NF_DROP;
}

static const struct nf_hook_ops smr_tcpr_nf_ops[] = {
	{
		.hook = smr_tcpr_out,
		.pf = NFPROTO_IPV4,
		.hooknum = NF_INET_POST_ROUTING,
		.priority = NF_IP_PRI_LAST - 1,
	},
	{
		.hook = smr_tcpr_in,
		.pf = NFPROTO_IPV4,
		.hooknum = NF_INET_LOCAL_IN,
		.priority = NF_IP_PRI_FIRST + 1,
	},
	{
		.hook = smr_tcpr_arp_out,
		.pf = NFPROTO_ARP,
		.hooknum = NF_ARP_OUT,
		.priority = 0,
	},
};

int smr_tcpr_hooks_register(struct net *net)
{
	return nf_register_net_hooks(net, smr_tcpr_nf_ops,
				     ARRAY_SIZE(smr_tcpr_nf_ops));
}

void smr_tcpr_hooks_unregister(struct net *net)
{
	nf_unregister_net_hooks(net, smr_tcpr_nf_ops,
				ARRAY_SIZE(smr_tcpr_nf_ops));
}
