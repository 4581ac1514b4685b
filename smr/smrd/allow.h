/* allow.h -- an allow list of networks: who may talk to a listener that
 * is reachable over the network (the metrics endpoint, http.h).
 *
 * Text form, as in smrd's configuration ([metrics] allow):
 *
 *   127.0.0.0/8, ::1/128, 10.77.0.0/24, 192.0.2.7
 *
 * Comma-separated networks, IPv4 or IPv6, numeric only; a bare address is
 * a network of that one address (/32, /128).  A network whose address has
 * bits set past its prefix ("10.0.0.1/8") is refused: it is more likely a
 * mistake than a way to say 10.0.0.0/8.  libc only (it is linked by the
 * configuration parser and its fuzz target as well as by the listener). */
#ifndef SMR_SMRD_ALLOW_H
#define SMR_SMRD_ALLOW_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define SMRD_ALLOW_MAX 32
/* The default of [metrics] allow: this host only. */
#define SMRD_ALLOW_LOOPBACK "127.0.0.0/8, ::1/128"

struct smrd_allow_net {
  int family;       /* AF_INET or AF_INET6 */
  unsigned prefix;  /* 0..32 or 0..128 */
  uint8_t addr[16]; /* the network, host bits zero (IPv4: the first 4) */
};

struct smrd_allow {
  struct smrd_allow_net net[SMRD_ALLOW_MAX];
  size_t n;
};

/* Parses list into *a.  Returns 0, or -1 with a one-line reason in err
 * that quotes the entry at fault.  An empty list is an error (it would
 * refuse everyone). */
int smrd_allow_parse(const char *list, struct smrd_allow *a, char *err,
                     size_t errlen);

/* 1 if the address in sa (AF_INET or AF_INET6) lies in one of a's
 * networks, else 0.  An IPv4-mapped IPv6 address (::ffff:a.b.c.d) also
 * matches the IPv4 networks, as a.b.c.d. */
int smrd_allow_match(const struct smrd_allow *a, const struct sockaddr *sa,
                     socklen_t salen);

/* Writes a in canonical text form ("127.0.0.0/8, ::1/128"), which
 * smrd_allow_parse() reads back to the same list; truncated to cap. */
void smrd_allow_format(const struct smrd_allow *a, char *buf, size_t cap);

#endif
