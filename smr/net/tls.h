/* tls.h -- OpenSSL 3 glue of the TCP transport (tls.c).
 *
 * The transport's TLS policy in one place: the context both directions
 * share (TLS 1.3 only, mutual authentication under the group CA, no
 * session resumption), the check of this member's own certificate at
 * startup, the identity a certificate vouches for, a socket BIO that never
 * raises SIGPIPE, and one-line descriptions of TLS failures for the log. */
#ifndef SMR_NET_TLS_H
#define SMR_NET_TLS_H

#include <stddef.h>

#include <openssl/ssl.h>

/* The socket under one SSL: its fd, and the errno of its last failed
 * send or recv (OpenSSL may clobber errno before we read it). */
struct smr_tls_sock {
  int fd;
  int err;
  int eof;
};

struct smr_tls {
  SSL_CTX *ctx;
  BIO_METHOD *bio; /* the socket BIO (smr_tls_attach) */
};

/* Builds the context from the three PEM files and checks the own
 * certificate (see net.h, smr_net_open).  Returns 0 or -EINVAL/-ENOMEM with
 * a reason in err. */
int smr_tls_init(struct smr_tls *t, const char *ca, const char *cert,
                 const char *key, const char *self_id, char *err,
                 size_t errlen);
void smr_tls_free(struct smr_tls *t);

/* A new SSL on socket s (s must outlive the SSL), in the client role if
 * connect, else the server role.  NULL if out of memory. */
SSL *smr_tls_new(struct smr_tls *t, struct smr_tls_sock *s, int connect);

/* 1 if the certificate names id as its subject CN or a SAN DNS name. */
int smr_tls_cert_names(X509 *cert, const char *id);

/* The certificate's subject CN (or its first SAN DNS name) for messages;
 * "(none)" if it has neither. */
void smr_tls_cert_name(X509 *cert, char *buf, size_t len);

/* Describes why an SSL call failed (ssl_err from SSL_get_error), from
 * OpenSSL's error queue, the verify result and the socket's errno; clears
 * the error queue. */
void smr_tls_describe(SSL *ssl, const struct smr_tls_sock *s, int ssl_err,
                      char *buf, size_t len);

#endif
