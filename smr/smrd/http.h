/* http.h -- smrd's metrics endpoint: GET /metrics over HTTP, for
 * Prometheus ([metrics] listen; off unless configured).
 *
 * It serves the same text as `smrctl metrics`, produced by a callback of
 * the daemon's on the daemon's event loop.  Answers:
 *
 *   GET or HEAD /metrics  200, Content-Type: text/plain; version=0.0.4
 *   another path          404
 *   /metrics, another method  405 (Allow: GET, HEAD)
 *   the callback fails    500
 *
 * Who may ask: only clients whose address is in the allow list (allow.h;
 * default this host only); others are closed at accept, before a byte is
 * read, and counted (smrd_http_refused).  The listener binds only the
 * address it is given (smrd's default is 127.0.0.1). */
#ifndef SMR_SMRD_HTTP_H
#define SMR_SMRD_HTTP_H

#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct smrd_http;

/* Produces the body of GET /metrics: a buffer from malloc() of *len bytes,
 * which the listener frees, or NULL (the client gets 500).  Called on the
 * loop's thread, from the loop. */
typedef char *(*smrd_http_fn)(void *ctx, size_t *len);

/* Listens on listen ("127.0.0.1:9464", "[::1]:9464"; numeric; port 0 picks
 * one) and serves on loop.  allow is an allow list in text form (NULL: this
 * host only).  Returns 0, or a negative errno with a one-line reason in err
 * that names the address (a bad address or list, or one that cannot be
 * bound: in use, not on this host). */
int smrd_http_open(struct ev_loop *loop, const char *listen,
                   const char *allow, smrd_http_fn fn, void *ctx,
                   struct smrd_http **out, char *err, size_t errlen);

/* Closes every connection and the listening socket; NULL is a no-op. */
void smrd_http_close(struct smrd_http *h);

/* The port listened on (the one picked, after port 0). */
uint16_t smrd_http_port(const struct smrd_http *h);

/* Connections refused because their address is not in the allow list. */
uint64_t smrd_http_refused(const struct smrd_http *h);

#endif
