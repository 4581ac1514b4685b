/* tcp_proto.c -- member ids, "host:port" addresses and the connection
 * hello of the TCP transport (formats in tcp_proto.h and net.h).
 *
 * These are the only parsers of outside bytes in the transport besides
 * the frame codec, so they are written like wire.c: every length is
 * checked against the bytes present before it is used, a stream that is
 * wrong is refused at its first wrong byte, and the encoding is canonical
 * (the fuzz target re-encodes what parses and compares).
 *
 * Addresses are parsed by hand rather than with getaddrinfo(): only
 * numeric hosts are allowed (a name lookup would block the event loop),
 * the port must be plain decimal digits (no sign, no spaces, no leading
 * junk that strtol would skip), and an IPv6 address must be bracketed so
 * its colons cannot be confused with the port's. */
#include "tcp_proto.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "assert.h"
#include "net.h"

static const uint8_t hello_magic[4] = {0x73, 0x6d, 0x72, 0x6e}; /* "smrn" */

/* ------------------------------------------------------------- member ids */

static int id_char(unsigned char c, int first) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
      (c >= '0' && c <= '9'))
    return 1;
  return !first && (c == '.' || c == '_' || c == '-');
}

/* Valid id of exactly len bytes (the bytes need not be NUL terminated). */
static int id_valid_n(const char *id, size_t len) {
  if (len == 0 || len > SMR_ID_MAX - 1) return 0;
  for (size_t i = 0; i < len; i++)
    if (!id_char((unsigned char)id[i], i == 0)) return 0;
  return 1;
}

int smr_net_id_valid(const char *id) {
  if (id == NULL) return 0;
  return id_valid_n(id, strnlen(id, SMR_ID_MAX));
}

/* ------------------------------------------------------------------ hello */

size_t smr_net_hello_encode(uint8_t *buf, size_t cap,
                            const struct smr_net_hello *h) {
  size_t f, t, len;

  smr_assert(buf != NULL && h != NULL);
  if (h->kind < SMR_NET_HELLO || h->kind > SMR_NET_ACCEPT_RDMA) return 0;
  if (!smr_net_id_valid(h->from) || !smr_net_id_valid(h->to)) return 0;
  if (h->kind == SMR_NET_ACCEPT_RDMA && h->rdma_port == 0) return 0;
  f = strlen(h->from);
  t = strlen(h->to);
  len = SMR_NET_HELLO_FIXED + f + t;
  if (h->kind == SMR_NET_ACCEPT_RDMA) len += SMR_NET_RDMA_OFFER_LEN;
  if (len > cap) return 0;
  memcpy(buf, hello_magic, 4);
  buf[4] = SMR_NET_HELLO_VERSION;
  buf[5] = h->kind;
  buf[6] = (uint8_t)f;
  memcpy(buf + 7, h->from, f);
  buf[7 + f] = (uint8_t)t;
  memcpy(buf + 8 + f, h->to, t);
  if (h->kind == SMR_NET_ACCEPT_RDMA) {
    uint8_t *o = buf + 8 + f + t;
    o[0] = (uint8_t)(h->rdma_port >> 8);
    o[1] = (uint8_t)h->rdma_port;
    memcpy(o + 2, h->token, SMR_NET_TOKEN_LEN);
  }
  return len;
}

/* Checks the id at buf[off] whose length byte is buf[off - 1]; returns its
 * length, 0 if more bytes are needed, or -EBADMSG. */
static long hello_id(const uint8_t *buf, size_t len, size_t off, char *out) {
  size_t n = buf[off - 1];

  if (n == 0 || n > SMR_ID_MAX - 1) return -EBADMSG;
  /* Check the bytes present, so garbage fails before the whole id is in. */
  for (size_t i = 0; i < n && off + i < len; i++)
    if (!id_char(buf[off + i], i == 0)) return -EBADMSG;
  if (len < off + n) return 0;
  memcpy(out, buf + off, n);
  out[n] = '\0';
  return (long)n;
}

long smr_net_hello_parse(const uint8_t *buf, size_t len,
                         struct smr_net_hello *h) {
  size_t f, t;
  long r;

  smr_assert(buf != NULL || len == 0);
  smr_assert(h != NULL);
  for (size_t i = 0; i < 4 && i < len; i++)
    if (buf[i] != hello_magic[i]) return -EBADMSG;
  if (len < 5) return 0;
  if (buf[4] != SMR_NET_HELLO_VERSION) return -EPROTO;
  if (len < 6) return 0;
  if (buf[5] < SMR_NET_HELLO || buf[5] > SMR_NET_ACCEPT_RDMA) return -EBADMSG;
  if (len < 7) return 0;
  r = hello_id(buf, len, 7, h->from);
  if (r <= 0) return r;
  f = (size_t)r;
  if (len < 8 + f) return 0;
  r = hello_id(buf, len, 8 + f, h->to);
  if (r <= 0) return r;
  t = (size_t)r;
  h->kind = buf[5];
  h->rdma_port = 0;
  memset(h->token, 0, sizeof h->token);
  if (h->kind != SMR_NET_ACCEPT_RDMA) return (long)(SMR_NET_HELLO_FIXED + f + t);
  const uint8_t *o = buf + SMR_NET_HELLO_FIXED + f + t;
  if (len < SMR_NET_HELLO_FIXED + f + t + 2) return 0;
  h->rdma_port = (uint16_t)(o[0] << 8 | o[1]);
  if (h->rdma_port == 0) return -EBADMSG;
  if (len < SMR_NET_HELLO_FIXED + f + t + SMR_NET_RDMA_OFFER_LEN) return 0;
  memcpy(h->token, o + 2, SMR_NET_TOKEN_LEN);
  return (long)(SMR_NET_HELLO_FIXED + f + t + SMR_NET_RDMA_OFFER_LEN);
}

/* -------------------------------------------------------------- addresses */

/* Decimal port of 1..5 digits and nothing else; -1 if not one. */
static long parse_port(const char *s) {
  long v = 0;
  size_t n = 0;

  for (; s[n] != '\0'; n++) {
    if (s[n] < '0' || s[n] > '9' || n == 5) return -1;
    v = v * 10 + (s[n] - '0');
  }
  if (n == 0 || v > 65535) return -1;
  return v;
}

int smr_net_addr_parse(const char *s, int allow_port0,
                       struct sockaddr_storage *ss, socklen_t *sslen) {
  char host[INET6_ADDRSTRLEN];
  const char *port_s;
  size_t hlen;
  long port;

  smr_assert(ss != NULL && sslen != NULL);
  if (s == NULL) return -EINVAL;
  memset(ss, 0, sizeof *ss);
  if (s[0] == '[') {
    const char *close = strchr(s, ']');
    if (close == NULL || close[1] != ':') return -EINVAL;
    hlen = (size_t)(close - (s + 1));
    if (hlen == 0 || hlen >= sizeof host) return -EINVAL;
    memcpy(host, s + 1, hlen);
    host[hlen] = '\0';
    port_s = close + 2;
    port = parse_port(port_s);
    if (port < 0 || (port == 0 && !allow_port0)) return -EINVAL;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) != 1) return -EINVAL;
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons((uint16_t)port);
    *sslen = sizeof *a6;
    return 0;
  }
  port_s = strrchr(s, ':');
  if (port_s == NULL) return -EINVAL;
  hlen = (size_t)(port_s - s);
  if (hlen == 0 || hlen >= sizeof host) return -EINVAL;
  memcpy(host, s, hlen);
  host[hlen] = '\0';
  port = parse_port(port_s + 1);
  if (port < 0 || (port == 0 && !allow_port0)) return -EINVAL;
  struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
  /* inet_pton(AF_INET) takes exactly dotted quads: no "1", no "0x1". */
  if (inet_pton(AF_INET, host, &a4->sin_addr) != 1) return -EINVAL;
  a4->sin_family = AF_INET;
  a4->sin_port = htons((uint16_t)port);
  *sslen = sizeof *a4;
  return 0;
}

int smr_net_addr_valid(const char *addr) {
  struct sockaddr_storage ss;
  socklen_t len;

  return smr_net_addr_parse(addr, 0, &ss, &len) == 0;
}

void smr_net_addr_format(const struct sockaddr *sa, socklen_t len, char *buf,
                         size_t cap) {
  char host[INET6_ADDRSTRLEN];

  smr_assert(buf != NULL && cap > 0);
  /* Copied out: a struct sockaddr is less aligned than its variants. */
  if (sa != NULL && sa->sa_family == AF_INET &&
      len >= (socklen_t)sizeof(struct sockaddr_in)) {
    struct sockaddr_in a4;
    memcpy(&a4, sa, sizeof a4);
    if (inet_ntop(AF_INET, &a4.sin_addr, host, sizeof host) != NULL) {
      snprintf(buf, cap, "%s:%u", host, (unsigned)ntohs(a4.sin_port));
      return;
    }
  } else if (sa != NULL && sa->sa_family == AF_INET6 &&
             len >= (socklen_t)sizeof(struct sockaddr_in6)) {
    struct sockaddr_in6 a6;
    memcpy(&a6, sa, sizeof a6);
    if (inet_ntop(AF_INET6, &a6.sin6_addr, host, sizeof host) != NULL) {
      snprintf(buf, cap, "[%s]:%u", host, (unsigned)ntohs(a6.sin6_port));
      return;
    }
  }
  snprintf(buf, cap, "?");
}
