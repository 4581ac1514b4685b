/* vip.c -- taking and giving up the group's virtual IP (interface in tcpr.h).
 *
 * DESIGN
 * ======
 * Clients talk to the VIP, never to a member's own address.  Whichever
 * member serves them holds the VIP as an extra IPv4 address on its device;
 * moving the service moves the address:
 *
 *   old primary   tcpr_gate_fence(), then tcpr_vip_del()
 *   new primary   tcpr_vip_add(), restore the connections (repair.c),
 *                 then tcpr_garp()
 *
 * Netlink, not `ip`.  Addresses are added and deleted with RTM_NEWADDR and
 * RTM_DELADDR on an rtnetlink socket (libmnl builds and parses the
 * messages).  Spawning ip(8) cost 2-12 ms per call on the takeover path,
 * depends on what is in PATH, and reports failure as text on stderr; over
 * netlink a request costs one round trip to the kernel and every request
 * carries NLM_F_ACK, so its own acknowledgement (or errno, with the kernel's
 * extended-ack message when there is one) is read back before the call
 * returns.  Reads wait at most NL_TIMEOUT_S for the kernel (it answers
 * at once unless the RTNL lock is held for that long).  Adding an address
 * that is there (EEXIST) and deleting one that is not (EADDRNOTAVAIL,
 * ENOENT) succeed, so a caller can simply repeat a step after a crash.  An
 * address is identified by address *and* prefix length, as the kernel does:
 * 10.77.0.100/16 is not 10.77.0.100/24 for add, del or present.
 *
 * Primaries and secondaries.  The kernel decides, not us: an address whose
 * subnet (same prefix length, same network) is already covered by an
 * address on the device is added as a *secondary* (IFA_F_SECONDARY): it is
 * local (a /32 route in the local table) but adds no prefix route and is
 * not chosen as the source address for that subnet.  Otherwise it becomes a
 * *primary* and brings the subnet's prefix route (we keep that route --
 * no IFA_F_NOPREFIXROUTE -- so the VIP's subnet stays reachable when the
 * member's own address is elsewhere).  The usual layout, member address
 * 10.77.0.1/24 and VIP 10.77.0.100/24 on the same device, makes the VIP a
 * secondary.  Deleting names exactly one address (IFA_LOCAL, IFA_ADDRESS
 * and the prefix length), so it never removes another -- with one kernel
 * exception: deleting a *primary* also deletes every secondary of its
 * subnet, unless net.ipv4.conf.{all,DEV}.promote_secondaries is 1, in which
 * case the first secondary is promoted to primary instead.  That happens
 * when the VIP was added before the member's own address of the same subnet
 * (the member address is then the secondary).  We do not change sysctls;
 * instead tcpr_vip_del() looks first and refuses with -EBUSY (and a reason
 * naming the address that would go) when the VIP is a primary with
 * secondaries and promotion is off (or its setting cannot be read from
 * /proc/sys), so giving up the VIP never takes the member's own address
 * with it.  The look and the delete are two requests;
 * an address added in between is not seen (the host's addresses are not
 * expected to change during a takeover).
 *
 * Gratuitous ARP.  The client (or its router) keeps the VIP's MAC address
 * in its neighbour cache: after the move it would go on sending to the old
 * primary's MAC until the entry ages (STALE, then a few seconds of unicast
 * probes before a new broadcast query).  tcpr_garp() broadcasts the new
 * mapping at once, in both forms neighbours are known to accept: an ARP
 * request with sender IP = target IP = VIP (the RFC 5227 "announcement",
 * target MAC zero) and an ARP reply with sender IP = target IP = VIP and
 * sender MAC = target MAC = ours (RFC 5944 section 4.6; Linux takes a reply
 * as gratuitous only if the two MACs are equal).  Linux updates an
 * *existing* neighbour entry from a gratuitous ARP even with the default
 * arp_accept=0, and the "locktime" that protects a fresh entry does not
 * apply to it (seen on 6.18: either form alone moves an entry confirmed
 * milliseconds earlier, REACHABLE, to the new MAC, state STALE); it
 * creates no entry unless arp_accept is set, which is fine: a host without
 * an entry asks by broadcast and gets the new primary's answer.  The
 * frames also refresh the forwarding tables of switches on the way.  One
 * call sends one frame of each form; a frame can be lost, so a caller that
 * wants certainty repeats the call a little later (keepalived repeats by
 * default too).  Send it only after the restored
 * connections exist: a client segment that reaches the new primary earlier
 * is answered with RST.  The socket is AF_PACKET/SOCK_DGRAM bound to the
 * device (the kernel writes the Ethernet header, source = the device's
 * MAC), which needs CAP_NET_RAW; the MAC in the ARP payload comes from
 * SIOCGIFHWADDR.
 *
 * Fencing comes first.  After the VIP is deleted the old primary no longer
 * answers ARP for it, but its established sockets keep their cached routes
 * and can still send from the VIP (retransmissions, and FIN or RST when the
 * process dies), and a segment from the client that still reaches it is
 * answered with RST.  So the caller must fence (tcpr_gate_fence drops every
 * packet from the VIP and every ARP for it) before tcpr_vip_del(), and keep
 * the fence up.
 *
 * keepalived.  This is what a VRRP router does when it becomes master --
 * add the virtual addresses over netlink, then announce them with
 * gratuitous ARPs so that neighbours and switches move to its MAC -- and
 * what it does when it steps down -- delete them.  The difference is who
 * decides: here the SMR group's view (its primary) plays the part of the
 * VRRP election, there are no VRRP advertisements, and the TCP connections
 * move with the address instead of being reset.
 *
 * IPv4 only, as the rest of TCP-R.  Every function returns 0 or a negative
 * errno; `err` gets one line, "tcpr: vip add 10.77.0.100/24 on eth0:
 * Operation not permitted". */
#include <errno.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <linux/if_addr.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netinet/if_ether.h>
#include <netinet/in.h>
#include <netpacket/packet.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "tcpr.h"

#define NL_TIMEOUT_S 5    /* longest wait for the kernel's answer */
#define NL_BUF_SIZE 16384 /* receive buffer (a dump comes in pieces) */
#define DUMP_TRIES 5      /* a dump interrupted by a change is retried */
#define KMSG_MAX 128      /* extended-ack message kept for err */

/* ------------------------------------------------------------ errors */

/* "tcpr: <what>: <strerror>[ (<why>)]" into err; returns rc. */
static int report(char *err, size_t errlen, const char *what, int rc,
                  const char *why) {
  if (err != NULL && errlen > 0) {
    bool has_why = why != NULL && why[0] != '\0';
    snprintf(err, errlen, "tcpr: %s: %s%s%s%s", what, strerror(-rc),
             has_why ? " (" : "", has_why ? why : "", has_why ? ")" : "");
  }
  return rc;
}

/* ------------------------------------------------------------ parsing */

/* A decimal number without sign, spaces or leading zeros, at most max;
 * advances *p past it. */
static bool parse_dec(const char **p, unsigned max, unsigned *out) {
  const char *s = *p;
  if (*s < '0' || *s > '9') return false;
  if (s[0] == '0' && s[1] >= '0' && s[1] <= '9') return false;
  unsigned v = 0;
  while (*s >= '0' && *s <= '9') {
    v = v * 10 + (unsigned)(*s - '0');
    if (v > max) return false;
    s++;
  }
  *p = s;
  *out = v;
  return true;
}

int tcpr_parse_cidr(const char *cidr, uint32_t *addr, unsigned *prefix) {
  if (cidr == NULL) return -EINVAL;
  const char *p = cidr;
  uint32_t host = 0; /* host byte order while parsing */
  for (int i = 0; i < 4; i++) {
    unsigned octet;
    if (!parse_dec(&p, 255, &octet)) return -EINVAL;
    host = (host << 8) | octet;
    if (*p++ != (i < 3 ? '.' : '/')) return -EINVAL;
  }
  unsigned len;
  if (!parse_dec(&p, 32, &len) || *p != '\0') return -EINVAL;
  if (addr != NULL) *addr = htonl(host);
  if (prefix != NULL) *prefix = len;
  return 0;
}

static uint32_t prefix_mask(unsigned prefix) { /* network byte order */
  return prefix == 0 ? 0 : htonl(UINT32_MAX << (32 - prefix));
}

/* Parses cidr and looks dev up; what = "vip <op> <cidr> on <dev>". */
static int vip_args(const char *op, const char *dev, const char *cidr,
                    uint32_t *addr, unsigned *prefix, unsigned *ifindex,
                    char *what, size_t whatlen, char *err, size_t errlen) {
  snprintf(what, whatlen, "vip %s %.40s on %.40s", op,
           cidr != NULL ? cidr : "(null)", dev != NULL ? dev : "(null)");
  if (tcpr_parse_cidr(cidr, addr, prefix) < 0)
    return report(err, errlen, what, -EINVAL, "not an a.b.c.d/len address");
  if (dev == NULL || dev[0] == '\0' || strlen(dev) >= IFNAMSIZ)
    return report(err, errlen, what, -ENODEV, "bad device name");
  errno = 0;
  *ifindex = if_nametoindex(dev);
  if (*ifindex == 0) {
    int rc = errno != 0 ? -errno : -ENODEV;
    return report(err, errlen, what, rc, NULL);
  }
  return 0;
}

/* ------------------------------------------------------------ netlink */

struct nl {
  struct mnl_socket *sock;
  unsigned portid;
  unsigned seq;
};

static void nl_close(struct nl *nl) {
  if (nl->sock != NULL) mnl_socket_close(nl->sock);
  nl->sock = NULL;
}

static int nl_open(struct nl *nl) {
  nl->sock = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
  if (nl->sock == NULL) return -errno;
  int one = 1;
  /* Extended acks: the kernel says why ("ipv4: Address not found").  Capped:
   * the ack does not echo our request.  Both optional (old kernels). */
  (void)mnl_socket_setsockopt(nl->sock, NETLINK_EXT_ACK, &one, sizeof(one));
  (void)mnl_socket_setsockopt(nl->sock, NETLINK_CAP_ACK, &one, sizeof(one));
  struct timeval tv = {.tv_sec = NL_TIMEOUT_S, .tv_usec = 0};
  if (setsockopt(mnl_socket_get_fd(nl->sock), SOL_SOCKET, SO_RCVTIMEO, &tv,
                 sizeof(tv)) < 0 ||
      mnl_socket_bind(nl->sock, 0, MNL_SOCKET_AUTOPID) < 0) {
    int rc = -errno;
    nl_close(nl);
    return rc;
  }
  nl->portid = mnl_socket_get_portid(nl->sock);
  nl->seq = (unsigned)time(NULL);
  return 0;
}

static ssize_t nl_recv(struct nl *nl, void *buf, size_t len) {
  ssize_t n = mnl_socket_recvfrom(nl->sock, buf, len);
  if (n < 0)
    return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
  if (n == 0) return -EPROTO;
  return n;
}

static int nl_send(struct nl *nl, struct nlmsghdr *nlh) {
  nlh->nlmsg_seq = ++nl->seq;
  if (mnl_socket_sendto(nl->sock, nlh, nlh->nlmsg_len) < 0) return -errno;
  return 0;
}

static int extack_attr(const struct nlattr *a, void *data) {
  char *kmsg = data;
  if (mnl_attr_get_type(a) == NLMSGERR_ATTR_MSG &&
      mnl_attr_validate(a, MNL_TYPE_NUL_STRING) == 0)
    snprintf(kmsg, KMSG_MAX, "%s", mnl_attr_get_str(a));
  return MNL_CB_OK;
}

/* Sends a request (NLM_F_ACK is added) and reads its acknowledgement: 0, or
 * the kernel's negative errno with its extended-ack message in kmsg. */
static int nl_request(struct nl *nl, struct nlmsghdr *nlh, char *kmsg) {
  nlh->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
  kmsg[0] = '\0';
  int rc = nl_send(nl, nlh);
  if (rc < 0) return rc;
  union {
    struct nlmsghdr h;
    char b[NL_BUF_SIZE];
  } u;
  for (;;) {
    ssize_t n = nl_recv(nl, u.b, sizeof(u.b));
    if (n < 0) return (int)n;
    int len = (int)n;
    for (const struct nlmsghdr *h = &u.h; mnl_nlmsg_ok(h, len);
         h = mnl_nlmsg_next(h, &len)) {
      if (!mnl_nlmsg_seq_ok(h, nl->seq) || !mnl_nlmsg_portid_ok(h, nl->portid))
        continue; /* not the answer to this request */
      if (h->nlmsg_type != NLMSG_ERROR) continue;
      if (h->nlmsg_len < mnl_nlmsg_size(sizeof(struct nlmsgerr)))
        return -EBADMSG;
      const struct nlmsgerr *e = mnl_nlmsg_get_payload(h);
      if (e->error == 0) return 0;
      if (h->nlmsg_flags & NLM_F_ACK_TLVS) {
        size_t off = sizeof(*e);
        if (!(h->nlmsg_flags & NLM_F_CAPPED) &&
            e->msg.nlmsg_len >= sizeof(struct nlmsghdr))
          off += e->msg.nlmsg_len - sizeof(struct nlmsghdr);
        off = MNL_ALIGN(off);
        size_t plen = mnl_nlmsg_get_payload_len(h);
        if (off < plen)
          (void)mnl_attr_parse_payload((const char *)e + off, plen - off,
                                       extack_attr, kmsg);
      }
      return e->error < 0 ? e->error : -e->error;
    }
  }
}

/* ------------------------------------------------------------ addresses */

/* What a dump of the device's IPv4 addresses says about one address. */
struct addr_scan {
  unsigned ifindex;
  uint32_t addr; /* network order */
  unsigned prefix;
  bool found;          /* addr/prefix is on the device */
  bool secondary;      /* ... as a secondary */
  unsigned dependents; /* secondaries of addr's subnet (other than addr) */
  uint32_t dependent;  /* one of them, for the message */
};

struct addr_attrs {
  uint32_t local;
  bool has_local;
  uint32_t address;
  bool has_address;
  uint32_t flags;
  bool has_flags;
};

static int addr_attr(const struct nlattr *a, void *data) {
  struct addr_attrs *at = data;
  switch (mnl_attr_get_type(a)) {
    case IFA_LOCAL:
      if (mnl_attr_validate(a, MNL_TYPE_U32) == 0) {
        at->local = mnl_attr_get_u32(a);
        at->has_local = true;
      }
      break;
    case IFA_ADDRESS:
      if (mnl_attr_validate(a, MNL_TYPE_U32) == 0) {
        at->address = mnl_attr_get_u32(a);
        at->has_address = true;
      }
      break;
    case IFA_FLAGS:
      if (mnl_attr_validate(a, MNL_TYPE_U32) == 0) {
        at->flags = mnl_attr_get_u32(a);
        at->has_flags = true;
      }
      break;
    default:
      break;
  }
  return MNL_CB_OK;
}

static int addr_msg(const struct nlmsghdr *nlh, void *data) {
  struct addr_scan *sc = data;
  if (nlh->nlmsg_type != RTM_NEWADDR ||
      nlh->nlmsg_len < mnl_nlmsg_size(sizeof(struct ifaddrmsg)))
    return MNL_CB_OK;
  const struct ifaddrmsg *ifa = mnl_nlmsg_get_payload(nlh);
  if (ifa->ifa_family != AF_INET || ifa->ifa_index != sc->ifindex)
    return MNL_CB_OK;
  struct addr_attrs at = {0};
  if (mnl_attr_parse(nlh, sizeof(*ifa), addr_attr, &at) < 0) return MNL_CB_OK;
  if (!at.has_local && !at.has_address) return MNL_CB_OK;
  uint32_t local = at.has_local ? at.local : at.address;
  uint32_t flags = at.has_flags ? at.flags : ifa->ifa_flags;
  if (local == sc->addr && ifa->ifa_prefixlen == sc->prefix) {
    sc->found = true;
    sc->secondary = (flags & IFA_F_SECONDARY) != 0;
  } else if ((flags & IFA_F_SECONDARY) && ifa->ifa_prefixlen == sc->prefix) {
    uint32_t mask = prefix_mask(sc->prefix);
    if ((local & mask) == (sc->addr & mask)) {
      sc->dependents++;
      sc->dependent = local;
    }
  }
  return MNL_CB_OK;
}

/* Dumps the IPv4 addresses and fills sc (ifindex, addr, prefix set). */
static int addr_scan(struct addr_scan *sc) {
  int rc = -EINTR;
  for (int attempt = 0; attempt < DUMP_TRIES && rc == -EINTR; attempt++) {
    struct nl nl;
    rc = nl_open(&nl);
    if (rc < 0) return rc;
    sc->found = sc->secondary = false;
    sc->dependents = 0;
    union {
      struct nlmsghdr h;
      char b[NL_BUF_SIZE];
    } u;
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(u.b);
    nlh->nlmsg_type = RTM_GETADDR;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
    ifa->ifa_family = AF_INET;
    ifa->ifa_index = sc->ifindex; /* only a hint: we filter ourselves */
    rc = nl_send(&nl, nlh);
    while (rc == 0) {
      ssize_t n = nl_recv(&nl, u.b, sizeof(u.b));
      if (n < 0) {
        rc = (int)n;
        break;
      }
      int r = mnl_cb_run(u.b, (size_t)n, nl.seq, nl.portid, addr_msg, sc);
      if (r == MNL_CB_STOP) break;
      if (r < 0) rc = errno != 0 ? -errno : -EPROTO; /* EINTR: interrupted */
    }
    nl_close(&nl);
  }
  return rc;
}

/* net.ipv4.conf.<name>.promote_secondaries of this network namespace: 1, 0,
 * or a negative errno. */
static int promote_flag(const char *name) {
  char path[96];
  snprintf(path, sizeof(path), "/proc/sys/net/ipv4/conf/%s/promote_secondaries",
           name);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  char buf[16];
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  int rc = n < 0 ? -errno : 0;
  close(fd);
  if (rc < 0) return rc;
  if (n == 0) return -EPROTO;
  return buf[0] != '0';
}

static void put_ifaddr(struct nlmsghdr *nlh, unsigned ifindex, uint32_t addr,
                       unsigned prefix) {
  struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
  ifa->ifa_family = AF_INET;
  ifa->ifa_prefixlen = (unsigned char)prefix;
  ifa->ifa_flags = 0;
  ifa->ifa_scope = RT_SCOPE_UNIVERSE;
  ifa->ifa_index = ifindex;
  mnl_attr_put_u32(nlh, IFA_LOCAL, addr);
  mnl_attr_put_u32(nlh, IFA_ADDRESS, addr);
}

/* RTM_NEWADDR or RTM_DELADDR of addr/prefix on ifindex. */
static int addr_change(uint16_t type, unsigned ifindex, uint32_t addr,
                       unsigned prefix, char *kmsg) {
  struct nl nl;
  int rc = nl_open(&nl);
  if (rc < 0) return rc;
  union {
    struct nlmsghdr h;
    char b[512];
  } u;
  struct nlmsghdr *nlh = mnl_nlmsg_put_header(u.b);
  nlh->nlmsg_type = type;
  if (type == RTM_NEWADDR) nlh->nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL;
  put_ifaddr(nlh, ifindex, addr, prefix);
  /* The subnet's broadcast address, as `ip addr add ... brd +` sets it;
   * /31 and /32 have none (RFC 3021). */
  if (type == RTM_NEWADDR && prefix <= 30)
    mnl_attr_put_u32(nlh, IFA_BROADCAST, addr | ~prefix_mask(prefix));
  rc = nl_request(&nl, nlh, kmsg);
  nl_close(&nl);
  return rc;
}

int tcpr_vip_add(const char *dev, const char *cidr, char *err, size_t errlen) {
  char what[128];
  uint32_t addr;
  unsigned prefix, ifindex;
  int rc = vip_args("add", dev, cidr, &addr, &prefix, &ifindex, what,
                    sizeof(what), err, errlen);
  if (rc < 0) return rc;
  char kmsg[KMSG_MAX];
  rc = addr_change(RTM_NEWADDR, ifindex, addr, prefix, kmsg);
  if (rc == -EEXIST) return 0;
  if (rc < 0) return report(err, errlen, what, rc, kmsg);
  return 0;
}

int tcpr_vip_del(const char *dev, const char *cidr, char *err, size_t errlen) {
  char what[128];
  struct addr_scan sc = {0};
  int rc = vip_args("del", dev, cidr, &sc.addr, &sc.prefix, &sc.ifindex, what,
                    sizeof(what), err, errlen);
  if (rc < 0) return rc;
  rc = addr_scan(&sc);
  if (rc < 0) return report(err, errlen, what, rc, "listing addresses");
  if (!sc.found) return 0;
  if (!sc.secondary && sc.dependents > 0) {
    /* Deleting a primary takes its subnet's secondaries with it unless
     * promotion is on (for the device or for all). */
    int dev_flag = promote_flag(dev);
    int all_flag = promote_flag("all");
    if (dev_flag != 1 && all_flag != 1) {
      char why[160];
      char dep[INET_ADDRSTRLEN];
      uint32_t d = ntohl(sc.dependent);
      snprintf(dep, sizeof(dep), "%u.%u.%u.%u", d >> 24, (d >> 16) & 255,
               (d >> 8) & 255, d & 255);
      snprintf(why, sizeof(why),
               "it is the primary address of its subnet and deleting it "
               "would delete %u secondary address%s such as %s/%u; "
               "promote_secondaries is off",
               sc.dependents, sc.dependents == 1 ? "" : "es", dep, sc.prefix);
      return report(err, errlen, what, -EBUSY, why);
    }
  }
  char kmsg[KMSG_MAX];
  rc = addr_change(RTM_DELADDR, sc.ifindex, sc.addr, sc.prefix, kmsg);
  if (rc == -EADDRNOTAVAIL || rc == -ENOENT) return 0;
  if (rc < 0) return report(err, errlen, what, rc, kmsg);
  return 0;
}

int tcpr_vip_present(const char *dev, const char *cidr) {
  struct addr_scan sc = {0};
  if (tcpr_parse_cidr(cidr, &sc.addr, &sc.prefix) < 0) return -EINVAL;
  if (dev == NULL || dev[0] == '\0' || strlen(dev) >= IFNAMSIZ) return -ENODEV;
  errno = 0;
  sc.ifindex = if_nametoindex(dev);
  if (sc.ifindex == 0) return errno != 0 ? -errno : -ENODEV;
  int rc = addr_scan(&sc);
  if (rc < 0) return rc;
  return sc.found ? 1 : 0;
}

/* ------------------------------------------------------------ ARP */

#define ARP_LEN 28 /* Ethernet/IPv4 ARP payload */

/* An Ethernet/IPv4 ARP packet: sender and target IP both vip. */
static void arp_build(uint8_t pkt[ARP_LEN], uint16_t op,
                      const uint8_t mac[ETH_ALEN], const uint8_t tha[ETH_ALEN],
                      uint32_t vip) {
  uint16_t htype = htons(ARPHRD_ETHER), ptype = htons(ETH_P_IP);
  uint16_t nop = htons(op);
  memcpy(pkt + 0, &htype, 2);
  memcpy(pkt + 2, &ptype, 2);
  pkt[4] = ETH_ALEN;
  pkt[5] = 4;
  memcpy(pkt + 6, &nop, 2);
  memcpy(pkt + 8, mac, ETH_ALEN);  /* sender MAC */
  memcpy(pkt + 14, &vip, 4);       /* sender IP */
  memcpy(pkt + 18, tha, ETH_ALEN); /* target MAC */
  memcpy(pkt + 24, &vip, 4);       /* target IP */
}

/* Sends the two frames on fd, an AF_PACKET socket. */
static int garp_send(int fd, const char *dev, uint32_t vip, char *err,
                     size_t errlen);

int tcpr_garp_socket(void) {
  /* Protocol 0: a socket that only sends registers no receive hook, and
   * creating or closing it does not wait for the network stack (a socket
   * bound to ETH_P_ARP costs an RCU grace period, 10-30 ms, each way). */
  int fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  return fd < 0 ? -errno : fd;
}

int tcpr_garp_on(int fd, const char *dev, uint32_t vip, char *err,
                 size_t errlen) {
  return garp_send(fd, dev, vip, err, errlen);
}

int tcpr_garp(const char *dev, uint32_t vip, char *err, size_t errlen) {
  int fd = tcpr_garp_socket();
  if (fd < 0) {
    snprintf(err, errlen, "tcpr: garp: socket: %s", strerror(-fd));
    return fd;
  }
  int rc = garp_send(fd, dev, vip, err, errlen);
  close(fd);
  return rc;
}

static int garp_send(int fd, const char *dev, uint32_t vip, char *err,
                     size_t errlen) {
  char what[96];
  uint32_t h = ntohl(vip);
  snprintf(what, sizeof(what), "garp %u.%u.%u.%u on %.40s", h >> 24,
           (h >> 16) & 255, (h >> 8) & 255, h & 255,
           dev != NULL ? dev : "(null)");
  if (dev == NULL || dev[0] == '\0' || strlen(dev) >= IFNAMSIZ)
    return report(err, errlen, what, -ENODEV, "bad device name");
  errno = 0;
  unsigned ifindex = if_nametoindex(dev);
  if (ifindex == 0)
    return report(err, errlen, what, errno != 0 ? -errno : -ENODEV, NULL);

  int rc = 0;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof(ifr));
  memcpy(ifr.ifr_name, dev, strlen(dev) + 1);
  if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0) {
    rc = report(err, errlen, what, -errno, "reading the device's MAC");
    goto out;
  }
  if (ifr.ifr_hwaddr.sa_family != ARPHRD_ETHER) {
    rc = report(err, errlen, what, -EOPNOTSUPP, "not an Ethernet device");
    goto out;
  }
  uint8_t mac[ETH_ALEN];
  memcpy(mac, ifr.ifr_hwaddr.sa_data, ETH_ALEN);

  struct sockaddr_ll sll;
  memset(&sll, 0, sizeof(sll));
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = htons(ETH_P_ARP);
  sll.sll_ifindex = (int)ifindex;
  sll.sll_halen = ETH_ALEN;
  memset(sll.sll_addr, 0xff, ETH_ALEN); /* Ethernet broadcast */

  static const uint8_t zero[ETH_ALEN];
  uint8_t pkt[ARP_LEN];
  /* Request form (RFC 5227 announcement), then reply form (RFC 5944). */
  for (int i = 0; i < 2; i++) {
    if (i == 0)
      arp_build(pkt, ARPOP_REQUEST, mac, zero, vip);
    else
      arp_build(pkt, ARPOP_REPLY, mac, mac, vip);
    ssize_t n =
        sendto(fd, pkt, sizeof(pkt), 0, (struct sockaddr *)&sll, sizeof(sll));
    if (n != (ssize_t)sizeof(pkt)) {
      rc = report(err, errlen, what, n < 0 ? -errno : -EIO,
                  i == 0 ? "sending the ARP request" : "sending the ARP reply");
      goto out;
    }
  }
out:
  return rc;
}
