/* rawpeer.h -- a hand-driven client for the transport's refusal tests.
 *
 * A raw peer connects to a listener and speaks whatever the test makes it
 * say: plain bytes, or TLS with any certificate or none, and it verifies
 * nothing of the server (it is the attacker, or the misconfigured peer).
 * It runs on the test's libev loop like the transport under test: queued
 * bytes go out once the connection (and TLS handshake) is up, everything
 * received is kept, and `closed` is set when the other side closes or the
 * connection fails. */
#ifndef SMR_TESTS_NET_RAWPEER_H
#define SMR_TESTS_NET_RAWPEER_H

#include <stddef.h>
#include <stdint.h>

#include <ev.h>
#include <openssl/ssl.h>

#define RAWPEER_BUF 65536

struct rawpeer {
  struct ev_loop *loop;
  int fd;
  int tls;
  SSL_CTX *ctx;
  SSL *ssl;
  ev_io io;
  int events;
  int up;     /* connected (and handshake done) */
  int closed; /* EOF or error */
  char error[256];
  uint8_t out[RAWPEER_BUF];
  size_t outlen, outoff;
  uint8_t in[RAWPEER_BUF];
  size_t inlen;
};

/* Connects to host:port ("127.0.0.1", "::1").  tls: speak TLS, with
 * cert/key (PEM files) if not NULL.  0 or -1. */
int rawpeer_open(struct rawpeer *r, struct ev_loop *loop, const char *host,
                 int port, int tls, const char *cert, const char *key);
/* Queues bytes to send. */
void rawpeer_send(struct rawpeer *r, const void *buf, size_t len);
void rawpeer_close(struct rawpeer *r);

#endif
