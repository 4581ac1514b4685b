/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR BSD-2-Clause */
/*
 * smr_tcpr.h -- the user-space interface of the smr_tcpr kernel module:
 * its generic netlink family, commands and attributes.  Shared by the
 * module (kernel-module/) and its user-space backend (tcpr/gate_kmod.c).
 *
 * Everything is per network namespace: a command acts on the gate of the
 * namespace of the netlink socket that sent it, and needs CAP_NET_ADMIN
 * over that namespace.
 *
 * Addresses and ports are in network byte order (as on the wire), sequence
 * numbers in host order.
 */
#ifndef _UAPI_SMR_TCPR_H
#define _UAPI_SMR_TCPR_H

#define SMR_TCPR_GENL_NAME "smr_tcpr"
#define SMR_TCPR_GENL_VERSION 1

enum smr_tcpr_cmd {
	SMR_TCPR_CMD_UNSPEC,
	/* VIP, PORT, IFINDEX, FENCED: (re)configure the namespace's gate;
	 * the connection table is emptied. */
	SMR_TCPR_CMD_CONFIG,
	/* FENCED: drop (1) or pass (0) everything sent from the VIP. */
	SMR_TCPR_CMD_FENCE,
	/* CONN (ADDR, PORT, RELEASED, SND_NXT, RCV_WSCALE): gate a
	 * connection, acknowledgements held at RELEASED. */
	SMR_TCPR_CMD_OPEN,
	/* One or more CONN (ADDR, PORT, RELEASED[, FLAGS]): move release
	 * points forward (never back); FLAGS ACK_NOW also sends the
	 * acknowledgement at once. */
	SMR_TCPR_CMD_RELEASE,
	/* CONN (ADDR, PORT): the connection may close: FIN and RST pass. */
	SMR_TCPR_CMD_ALLOW_CLOSE,
	/* CONN (ADDR, PORT): forget the connection. */
	SMR_TCPR_CMD_FORGET,
	/* [CONN (ADDR, PORT)]: the connection's owner is gone (all of the
	 * namespace's without CONN): every segment it would send is dropped,
	 * FIN and RST included, until it is opened again or forgotten. */
	SMR_TCPR_CMD_ORPHAN,
	/* Reply: STATS. */
	SMR_TCPR_CMD_GET_STATS,
	/* Dump: one CONN per connection (all attributes). */
	SMR_TCPR_CMD_LIST,
	/* Unconfigure the namespace's gate: nothing is gated or fenced. */
	SMR_TCPR_CMD_RESET,
	__SMR_TCPR_CMD_MAX,
};
#define SMR_TCPR_CMD_MAX (__SMR_TCPR_CMD_MAX - 1)

enum smr_tcpr_attr {
	SMR_TCPR_A_UNSPEC,
	SMR_TCPR_A_VIP,		/* __be32 */
	SMR_TCPR_A_PORT,	/* __be16: the service's port */
	SMR_TCPR_A_IFINDEX,	/* u32: the VIP's device */
	SMR_TCPR_A_FENCED,	/* u8 */
	SMR_TCPR_A_CONN,	/* nested, SMR_TCPR_C_* */
	SMR_TCPR_A_STATS,	/* nested, SMR_TCPR_S_* */
	SMR_TCPR_A_PAD,
	__SMR_TCPR_A_MAX,
};
#define SMR_TCPR_A_MAX (__SMR_TCPR_A_MAX - 1)

enum smr_tcpr_conn_attr {
	SMR_TCPR_C_UNSPEC,
	SMR_TCPR_C_ADDR,	/* __be32: the client's address */
	SMR_TCPR_C_PORT,	/* __be16: the client's port */
	SMR_TCPR_C_RELEASED,	/* u32: acknowledgements held here */
	SMR_TCPR_C_SND_NXT,	/* u32: past the last byte we sent */
	SMR_TCPR_C_RCV_WSCALE,	/* u8: our receive window scale, 255 unknown */
	SMR_TCPR_C_FLAGS,	/* u32: SMR_TCPR_F_* */
	__SMR_TCPR_C_MAX,
};
#define SMR_TCPR_C_MAX (__SMR_TCPR_C_MAX - 1)

/* SMR_TCPR_C_FLAGS */
#define SMR_TCPR_F_ACK_NOW	0x01	/* RELEASE: acknowledge at once */
#define SMR_TCPR_F_CLOSE_OK	0x02	/* LIST: FIN/RST pass */
#define SMR_TCPR_F_ORPHAN	0x04	/* LIST: owner gone, all dropped */
#define SMR_TCPR_F_SND_KNOWN	0x08	/* LIST: SND_NXT is valid */

enum smr_tcpr_stats_attr {
	SMR_TCPR_S_UNSPEC,
	SMR_TCPR_S_CLAMPED,		/* u64 */
	SMR_TCPR_S_SACK_STRIPPED,	/* u64 */
	SMR_TCPR_S_FIN_DROPPED,		/* u64 */
	SMR_TCPR_S_RST_DROPPED,		/* u64 */
	SMR_TCPR_S_FENCED_DROPPED,	/* u64 */
	SMR_TCPR_S_ACKS_CLAMPED_IN,	/* u64 */
	SMR_TCPR_S_ACKS_SENT,		/* u64: ACK_NOW acknowledgements */
	SMR_TCPR_S_ORPHAN_DROPPED,	/* u64 */
	SMR_TCPR_S_CONNS,		/* u64: connections in the table */
	SMR_TCPR_S_PAD,
	__SMR_TCPR_S_MAX,
};
#define SMR_TCPR_S_MAX (__SMR_TCPR_S_MAX - 1)

#endif /* _UAPI_SMR_TCPR_H */
