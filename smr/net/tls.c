/* tls.c -- OpenSSL 3 glue of the TCP transport: context, identities,
 * socket BIO, error descriptions (interface in tls.h).
 *
 * Policy.  One SSL_CTX serves both directions, since every member both
 * accepts and connects: TLS 1.3 only with its AEAD suites, peer
 * verification required both ways (SSL_VERIFY_PEER |
 * SSL_VERIFY_FAIL_IF_NO_PEER_CERT: a client without a certificate fails the
 * handshake), the group CA as the only trust anchor, no session tickets or
 * session cache (a resumed session would skip the client certificate's
 * verification in our accounting, and members reconnect rarely), read-ahead
 * on so one recv() can bring several records, and the write modes the
 * transport's queue needs: partial writes (SSL_write returns after each
 * record, so a big queue goes out in 16 KiB records without blocking on
 * the rest) and moving write buffers (the queue may be compacted or
 * reallocated between a write that wanted to be retried and its retry).
 *
 * Identity.  A certificate vouches for a member id if its subject CN or
 * one of its SAN DNS names is exactly that id.  Chain and validity are
 * OpenSSL's job during the handshake; the name check is ours, after it.
 *
 * The startup check.  A member whose own certificate its peers will
 * refuse (another CA, expired, wrong purpose, another member's name, a key
 * that does not match) would only show up as refused connections on the
 * other hosts.  smr_tls_init() runs the same verification locally, so
 * smr_net_open() fails with the reason instead.
 *
 * The socket BIO.  OpenSSL's own socket BIO writes with write(2), which
 * raises SIGPIPE when the peer has gone; a library must not depend on the
 * process ignoring it.  Ours sends with MSG_NOSIGNAL and keeps the errno of
 * a failed call in struct smr_tls_sock, since OpenSSL may run other calls
 * (that clobber errno) before the transport asks what went wrong. */
#include "tls.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "assert.h"

#define TLS_CIPHERSUITES \
  "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256"
#define TLS_READ_BUFFER (64u << 10) /* several records per recv() */
#define TLS_VERIFY_DEPTH 4

/* ---------------------------------------------------------- socket BIO */

static int bio_write(BIO *b, const char *data, size_t len, size_t *written) {
  struct smr_tls_sock *s = BIO_get_data(b);
  ssize_t r;

  BIO_clear_retry_flags(b);
  do {
    r = send(s->fd, data, len, MSG_NOSIGNAL);
  } while (r < 0 && errno == EINTR);
  if (r >= 0) {
    *written = (size_t)r;
    return 1;
  }
  if (errno == EAGAIN || errno == EWOULDBLOCK)
    BIO_set_retry_write(b);
  else
    s->err = errno;
  return 0;
}

static int bio_read(BIO *b, char *buf, size_t len, size_t *readbytes) {
  struct smr_tls_sock *s = BIO_get_data(b);
  ssize_t r;

  BIO_clear_retry_flags(b);
  do {
    r = recv(s->fd, buf, len, 0);
  } while (r < 0 && errno == EINTR);
  if (r > 0) {
    *readbytes = (size_t)r;
    return 1;
  }
  if (r == 0)
    s->eof = 1;
  else if (errno == EAGAIN || errno == EWOULDBLOCK)
    BIO_set_retry_read(b);
  else
    s->err = errno;
  return 0;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr) {
  struct smr_tls_sock *s = BIO_get_data(b);

  (void)num;
  switch (cmd) {
    case BIO_CTRL_FLUSH:
      return 1;
    case BIO_CTRL_EOF:
      return s != NULL && s->eof;
    case BIO_C_GET_FD:
      if (s == NULL) return -1;
      if (ptr != NULL) *(int *)ptr = s->fd;
      return s->fd;
    default:
      return 0;
  }
}

/* ------------------------------------------------------------- identity */

/* The bytes of an X509 name entry as UTF-8, compared with id. */
static int entry_is(X509_NAME_ENTRY *e, const char *id, size_t idlen) {
  unsigned char *u = NULL;
  int n = ASN1_STRING_to_UTF8(&u, X509_NAME_ENTRY_get_data(e));
  int same = n >= 0 && (size_t)n == idlen && memcmp(u, id, idlen) == 0;

  OPENSSL_free(u);
  return same;
}

int smr_tls_cert_names(X509 *cert, const char *id) {
  size_t idlen = strlen(id);
  X509_NAME *subject;
  GENERAL_NAMES *gens;
  int found = 0, i = -1;

  if (cert == NULL || idlen == 0) return 0;
  gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
  for (int k = 0; gens != NULL && k < sk_GENERAL_NAME_num(gens) && !found;
       k++) {
    const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, k);
    if (g->type != GEN_DNS) continue;
    const ASN1_IA5STRING *s = g->d.dNSName;
    found = ASN1_STRING_length(s) >= 0 &&
            (size_t)ASN1_STRING_length(s) == idlen &&
            memcmp(ASN1_STRING_get0_data(s), id, idlen) == 0;
  }
  GENERAL_NAMES_free(gens);
  subject = X509_get_subject_name(cert);
  while (!found && subject != NULL &&
         (i = X509_NAME_get_index_by_NID(subject, NID_commonName, i)) >= 0)
    found = entry_is(X509_NAME_get_entry(subject, i), id, idlen);
  return found;
}

/* Copies printable ASCII of n bytes into buf, '?' for anything else. */
static void printable(char *buf, size_t len, const unsigned char *p,
                      size_t n) {
  size_t k = 0;

  for (; k < n && k + 1 < len; k++)
    buf[k] = (p[k] >= 0x20 && p[k] < 0x7f) ? (char)p[k] : '?';
  buf[k] = '\0';
}

void smr_tls_cert_name(X509 *cert, char *buf, size_t len) {
  X509_NAME *subject = cert ? X509_get_subject_name(cert) : NULL;
  int i = subject ? X509_NAME_get_index_by_NID(subject, NID_commonName, -1)
                  : -1;

  smr_assert(buf != NULL && len > 0);
  snprintf(buf, len, "(none)");
  if (i >= 0) {
    unsigned char *u = NULL;
    int n = ASN1_STRING_to_UTF8(
        &u, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i)));
    if (n >= 0) printable(buf, len, u, (size_t)n);
    OPENSSL_free(u);
    return;
  }
  if (cert == NULL) return;
  GENERAL_NAMES *gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL,
                                         NULL);
  for (int k = 0; gens != NULL && k < sk_GENERAL_NAME_num(gens); k++) {
    const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, k);
    if (g->type == GEN_DNS && ASN1_STRING_length(g->d.dNSName) >= 0) {
      printable(buf, len, ASN1_STRING_get0_data(g->d.dNSName),
                (size_t)ASN1_STRING_length(g->d.dNSName));
      break;
    }
  }
  GENERAL_NAMES_free(gens);
}

/* ------------------------------------------------------------- failures */

void smr_tls_describe(SSL *ssl, const struct smr_tls_sock *s, int ssl_err,
                      char *buf, size_t len) {
  unsigned long e = ERR_peek_error();
  long vr = ssl != NULL ? SSL_get_verify_result(ssl) : X509_V_OK;

  smr_assert(buf != NULL && len > 0);
  if (e != 0) {
    char tmp[256];
    const char *r = ERR_reason_error_string(e);
    if (r == NULL) {
      ERR_error_string_n(e, tmp, sizeof tmp);
      r = tmp;
    }
    if (ERR_GET_LIB(e) == ERR_LIB_SSL &&
        ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
      snprintf(buf, len, "connection closed by peer (no TLS close_notify)");
    else if (ERR_GET_LIB(e) == ERR_LIB_SSL &&
             ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED &&
             vr != X509_V_OK)
      snprintf(buf, len, "%s (%s)", r, X509_verify_cert_error_string(vr));
    else
      snprintf(buf, len, "%s", r);
  } else if (ssl_err == SSL_ERROR_SYSCALL && s != NULL && s->err != 0) {
    snprintf(buf, len, "%s", strerror(s->err));
  } else if (ssl_err == SSL_ERROR_SYSCALL || ssl_err == SSL_ERROR_ZERO_RETURN) {
    snprintf(buf, len, "connection closed by peer");
  } else {
    snprintf(buf, len, "TLS error %d", ssl_err);
  }
  ERR_clear_error();
}

/* The reason of the earliest queued OpenSSL error, for startup messages. */
static const char *ossl_reason(char *tmp, size_t len) {
  unsigned long e = ERR_peek_error();
  const char *r = e ? ERR_reason_error_string(e) : NULL;

  if (e == 0) return "unknown error";
  if (r == NULL) {
    ERR_error_string_n(e, tmp, len);
    r = tmp;
  }
  return r;
}

/* ------------------------------------------------------------- context */

/* Verifies the context's own certificate for one purpose; 0 or -EINVAL. */
static int check_own(SSL_CTX *ctx, int purpose, const char *what,
                     const char *cert_path, char *err, size_t errlen) {
  X509 *own = SSL_CTX_get0_certificate(ctx);
  STACK_OF(X509) *chain = NULL;
  X509_STORE_CTX *sc = X509_STORE_CTX_new();
  int ok;

  if (sc == NULL) {
    snprintf(err, errlen, "out of memory");
    return -ENOMEM;
  }
  SSL_CTX_get0_chain_certs(ctx, &chain);
  ok = X509_STORE_CTX_init(sc, SSL_CTX_get_cert_store(ctx), own, chain) ==
           1 &&
       X509_STORE_CTX_set_purpose(sc, purpose) == 1 &&
       X509_verify_cert(sc) == 1;
  if (!ok) {
    int e = X509_STORE_CTX_get_error(sc);
    snprintf(err, errlen, "tls_cert %s: not valid for TLS %s use under tls_ca: %s",
             cert_path, what,
             e != X509_V_OK ? X509_verify_cert_error_string(e)
                            : "verification failed");
  }
  X509_STORE_CTX_free(sc);
  return ok ? 0 : -EINVAL;
}

static int readable(const char *key, const char *path, char *err,
                    size_t errlen) {
  if (access(path, R_OK) == 0) return 0;
  int e = errno;
  snprintf(err, errlen, "%s %s: %s", key, path, strerror(e));
  return -e;
}

int smr_tls_init(struct smr_tls *t, const char *ca, const char *cert,
                 const char *key, const char *self_id, char *err,
                 size_t errlen) {
  char tmp[256];
  SSL_CTX *ctx;
  int r;

  smr_assert(t != NULL && ca && cert && key && self_id);
  memset(t, 0, sizeof *t);
  if ((r = readable("tls_ca", ca, err, errlen)) < 0 ||
      (r = readable("tls_cert", cert, err, errlen)) < 0 ||
      (r = readable("tls_key", key, err, errlen)) < 0)
    return r;
  ERR_clear_error();
  ctx = SSL_CTX_new(TLS_method());
  if (ctx == NULL) {
    snprintf(err, errlen, "SSL_CTX_new: %s", ossl_reason(tmp, sizeof tmp));
    ERR_clear_error();
    return -ENOMEM;
  }
  r = -EINVAL;
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
      SSL_CTX_set_ciphersuites(ctx, TLS_CIPHERSUITES) != 1) {
    snprintf(err, errlen, "TLS 1.3 setup: %s", ossl_reason(tmp, sizeof tmp));
    goto fail;
  }
  if (SSL_CTX_load_verify_file(ctx, ca) != 1) {
    snprintf(err, errlen, "tls_ca %s: %s", ca, ossl_reason(tmp, sizeof tmp));
    goto fail;
  }
  STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca);
  if (names != NULL) SSL_CTX_set_client_CA_list(ctx, names);
  if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
    snprintf(err, errlen, "tls_cert %s: %s", cert,
             ossl_reason(tmp, sizeof tmp));
    goto fail;
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
    unsigned long e = ERR_peek_error();
    if (ERR_GET_LIB(e) == ERR_LIB_X509 &&
        ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH)
      snprintf(err, errlen, "tls_key %s does not match tls_cert %s", key,
               cert);
    else
      snprintf(err, errlen, "tls_key %s: %s", key,
               ossl_reason(tmp, sizeof tmp));
    goto fail;
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    snprintf(err, errlen, "tls_key %s does not match tls_cert %s", key, cert);
    goto fail;
  }
  if ((r = check_own(ctx, X509_PURPOSE_SSL_CLIENT, "client", cert, err,
                     errlen)) < 0 ||
      (r = check_own(ctx, X509_PURPOSE_SSL_SERVER, "server", cert, err,
                     errlen)) < 0)
    goto fail;
  if (!smr_tls_cert_names(SSL_CTX_get0_certificate(ctx), self_id)) {
    smr_tls_cert_name(SSL_CTX_get0_certificate(ctx), tmp, sizeof tmp);
    snprintf(err, errlen, "tls_cert %s names %s, not this member (%s)", cert,
             tmp, self_id);
    r = -EINVAL;
    goto fail;
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                     NULL);
  SSL_CTX_set_verify_depth(ctx, TLS_VERIFY_DEPTH);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION |
                               SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(ctx, 0);
  SSL_CTX_set_read_ahead(ctx, 1);
  SSL_CTX_set_default_read_buffer_len(ctx, TLS_READ_BUFFER);

  t->bio = BIO_meth_new(BIO_TYPE_SOURCE_SINK | BIO_get_new_index(),
                        "smr socket");
  if (t->bio == NULL || BIO_meth_set_write_ex(t->bio, bio_write) != 1 ||
      BIO_meth_set_read_ex(t->bio, bio_read) != 1 ||
      BIO_meth_set_ctrl(t->bio, bio_ctrl) != 1) {
    snprintf(err, errlen, "out of memory");
    r = -ENOMEM;
    goto fail;
  }
  t->ctx = ctx;
  ERR_clear_error();
  return 0;

fail:
  if (t->bio != NULL) BIO_meth_free(t->bio);
  t->bio = NULL;
  SSL_CTX_free(ctx);
  ERR_clear_error();
  return r;
}

void smr_tls_free(struct smr_tls *t) {
  if (t == NULL) return;
  SSL_CTX_free(t->ctx);
  if (t->bio != NULL) BIO_meth_free(t->bio);
  t->ctx = NULL;
  t->bio = NULL;
}

SSL *smr_tls_new(struct smr_tls *t, struct smr_tls_sock *s, int connect) {
  SSL *ssl;
  BIO *bio;

  smr_assert(t != NULL && t->ctx != NULL && s != NULL);
  ssl = SSL_new(t->ctx);
  if (ssl == NULL) {
    ERR_clear_error();
    return NULL;
  }
  bio = BIO_new(t->bio);
  if (bio == NULL) {
    SSL_free(ssl);
    ERR_clear_error();
    return NULL;
  }
  BIO_set_data(bio, s);
  BIO_set_init(bio, 1);
  SSL_set_bio(ssl, bio, bio);
  if (connect)
    SSL_set_connect_state(ssl);
  else
    SSL_set_accept_state(ssl);
  return ssl;
}
