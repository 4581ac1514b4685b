/* tcp_proto.h -- the bytes of the TCP transport that are not frames.
 *
 * Everything here parses input that comes from outside (a peer's first
 * bytes, an address from a config file) and is pure: no I/O, no
 * allocation, no state, so the fuzz target (tests/fuzz/fuzz_net_hello.c)
 * and the unit tests call it directly.
 *
 * The connection hello.  After TCP connects (and, unless insecure, after
 * the TLS handshake, inside TLS), the initiator sends a HELLO and the
 * acceptor answers with one verdict, also in this format, before any frame
 * flows either way:
 *
 *   offset size  field
 *   0      4     magic "smrn" (0x73 0x6d 0x72 0x6e)
 *   4      1     version (SMR_NET_HELLO_VERSION)
 *   5      1     kind (enum smr_net_hello_kind)
 *   6      1     length F of the sender's member id (1..SMR_ID_MAX-1)
 *   7      F     sender's member id
 *   7+F    1     length T of the receiver's member id (1..SMR_ID_MAX-1)
 *   8+F    T     receiver's member id (the member the sender means to reach)
 *
 * Both ids must be valid member ids (smr_net_id_valid()).  In insecure
 * mode the HELLO's sender id is the peer's identity; with TLS it must also
 * be named by the peer's certificate.  The encoding is canonical: a hello
 * that parses re-encodes to the same bytes.
 *
 * With [transport] kind = rdma the initiator says HELLO_RDMA, and an
 * acceptor that runs RDMA too answers ACCEPT_RDMA, which appends
 *
 *   8+F+T  2     the acceptor's RDMA connection manager port (big endian,
 *                not 0)
 *   10+F+T 16    a token: random bytes that the initiator's RDMA
 *                connection request must carry, so an RDMA link belongs
 *                to the connection this TLS channel authenticated
 *
 * Verdicts: ACCEPT (the connection carries frames from now on), DUPLICATE
 * (the pair already has, or is about to have, its one connection: close
 * this one quietly), REFUSE (the acceptor refused the hello; it logs why).
 *
 * Addresses are "host:port" with a numeric host: an IPv4 dotted quad, or
 * an IPv6 address in brackets ("[::1]:7000").  Host names are refused,
 * since resolving them would block the event loop. */
#ifndef SMR_NET_TCP_PROTO_H
#define SMR_NET_TCP_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "wire.h"

#define SMR_NET_HELLO_VERSION 1
#define SMR_NET_HELLO_FIXED 8 /* magic, version, kind, two id lengths */
#define SMR_NET_TOKEN_LEN 16
#define SMR_NET_RDMA_OFFER_LEN (2 + SMR_NET_TOKEN_LEN)
#define SMR_NET_HELLO_MAX \
  (SMR_NET_HELLO_FIXED + 2 * (SMR_ID_MAX - 1) + SMR_NET_RDMA_OFFER_LEN)
/* "[" ipv6 "]:" port, NUL: the longest text smr_net_addr_format() makes. */
#define SMR_NET_ADDRSTR_MAX 56

enum smr_net_hello_kind {
  SMR_NET_HELLO = 1,     /* initiator: who I am, whom I want */
  SMR_NET_ACCEPT = 2,    /* acceptor: this is the pair's connection */
  SMR_NET_DUPLICATE = 3, /* acceptor: the pair keeps another connection */
  SMR_NET_REFUSE = 4,    /* acceptor: hello refused (reason in its log) */
  SMR_NET_HELLO_RDMA = 5, /* initiator: HELLO, and I run RDMA */
  SMR_NET_ACCEPT_RDMA = 6 /* acceptor: ACCEPT; connect RDMA with this token */
};

struct smr_net_hello {
  uint8_t kind;
  char from[SMR_ID_MAX];
  char to[SMR_ID_MAX];
  uint16_t rdma_port;                 /* ACCEPT_RDMA only */
  uint8_t token[SMR_NET_TOKEN_LEN];   /* ACCEPT_RDMA only */
};

/* Encodes h into buf; returns its length, or 0 if cap is too small, the
 * kind is unknown or an id is not a valid member id. */
size_t smr_net_hello_encode(uint8_t *buf, size_t cap,
                            const struct smr_net_hello *h);

/* Parses a hello at the start of a byte stream.  Returns the number of
 * bytes it takes (the rest of the stream follows it), 0 if more bytes are
 * needed to tell, -EBADMSG (bad magic, kind, id length or id) or -EPROTO
 * (another version).  Each field is checked as soon as its bytes are
 * present, so a stream that is no hello fails at its first wrong byte. */
long smr_net_hello_parse(const uint8_t *buf, size_t len,
                         struct smr_net_hello *h);

/* Parses "host:port" (see above) into *ss and *sslen.  Port 0 is refused
 * unless allow_port0 (a listener's "any port").  Returns 0 or -EINVAL. */
int smr_net_addr_parse(const char *s, int allow_port0,
                       struct sockaddr_storage *ss, socklen_t *sslen);

/* Formats an IPv4 or IPv6 socket address as "1.2.3.4:5" or "[::1]:5"
 * (parseable by smr_net_addr_parse()).  Anything else gives "?". */
void smr_net_addr_format(const struct sockaddr *sa, socklen_t len, char *buf,
                         size_t cap);

#endif
