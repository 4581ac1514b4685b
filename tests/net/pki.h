/* pki.h -- throwaway certificate authorities for the transport's tests.
 *
 * Everything is made with the OpenSSL C API at test time (no openssl CLI,
 * no committed keys): P-256 keys, a self-signed CA per call of tpki_ca(),
 * and member certificates with any subject CN, SAN DNS name and validity
 * window, so that tests can build the bad cases too (another CA, expired,
 * a name that is not the member's).  Files go to a mkdtemp() directory
 * that tpki_rmdir() removes. */
#ifndef SMR_TESTS_NET_PKI_H
#define SMR_TESTS_NET_PKI_H

#include <limits.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

struct tpki_ca {
  EVP_PKEY *key;
  X509 *cert;
  char pem[PATH_MAX]; /* the CA certificate file */
};

/* Creates a fresh temporary directory into dir (PATH_MAX bytes); 0 or -1. */
int tpki_mkdir(char *dir);
/* Removes the directory and the files in it. */
void tpki_rmdir(const char *dir);

/* A new CA "<name>" written to dir/<name>.pem; 0 or -1. */
int tpki_ca(struct tpki_ca *ca, const char *dir, const char *name);
void tpki_ca_free(struct tpki_ca *ca);

/* A certificate signed by ca, written to dir/<file>.pem with its key in
 * dir/<file>.key.  cn: subject CN; san: a SAN DNS name or NULL; valid from
 * now + from_s to now + to_s seconds.  Usable as TLS client and server.
 * 0 or -1. */
int tpki_issue(const struct tpki_ca *ca, const char *dir, const char *file,
               const char *cn, const char *san, long from_s, long to_s);

/* dir/<file>.<ext> into buf (PATH_MAX bytes); returns buf. */
char *tpki_path(char *buf, const char *dir, const char *file,
                const char *ext);

#endif
