/* pki.c -- throwaway certificate authorities for tests (see pki.h). */
#include "pki.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509v3.h>

static long serial = 1;

char *tpki_path(char *buf, const char *dir, const char *file,
                const char *ext) {
  snprintf(buf, PATH_MAX, "%s/%s.%s", dir, file, ext);
  return buf;
}

int tpki_mkdir(char *dir) {
  const char *tmp = getenv("TMPDIR");

  snprintf(dir, PATH_MAX, "%s/smr-net-test-XXXXXX",
           tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
  return mkdtemp(dir) != NULL ? 0 : -1;
}

void tpki_rmdir(const char *dir) {
  DIR *d = opendir(dir);
  struct dirent *e;
  char path[PATH_MAX];

  if (d == NULL) return;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    unlink(path);
  }
  closedir(d);
  rmdir(dir);
}

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value) {
  X509V3_CTX ctx;
  X509_EXTENSION *ex;

  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
  ex = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
  if (ex == NULL) return -1;
  int ok = X509_add_ext(cert, ex, -1);
  X509_EXTENSION_free(ex);
  return ok ? 0 : -1;
}

/* issuer == NULL: self-signed CA. */
static X509 *make_cert(EVP_PKEY *key, const char *cn, const char *san,
                       X509 *issuer, EVP_PKEY *issuer_key, long from_s,
                       long to_s) {
  X509 *x = X509_new();
  X509_NAME *name;
  char alt[128];
  int ok;

  if (x == NULL) return NULL;
  name = X509_get_subject_name(x);
  ok = X509_set_version(x, 2) &&
       ASN1_INTEGER_set(X509_get_serialNumber(x), serial++) &&
       X509_gmtime_adj(X509_getm_notBefore(x), from_s) != NULL &&
       X509_gmtime_adj(X509_getm_notAfter(x), to_s) != NULL &&
       X509_set_pubkey(x, key) &&
       X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                  (const unsigned char *)cn, -1, -1, 0) &&
       X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
  if (ok && issuer == NULL) {
    ok = add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE") == 0 &&
         add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign") == 0 &&
         add_ext(x, x, NID_subject_key_identifier, "hash") == 0;
  } else if (ok) {
    ok = add_ext(x, issuer, NID_basic_constraints, "critical,CA:FALSE") == 0 &&
         add_ext(x, issuer, NID_key_usage, "critical,digitalSignature") == 0 &&
         add_ext(x, issuer, NID_ext_key_usage, "serverAuth,clientAuth") == 0 &&
         add_ext(x, issuer, NID_subject_key_identifier, "hash") == 0 &&
         add_ext(x, issuer, NID_authority_key_identifier, "keyid:always") ==
             0;
    if (ok && san != NULL) {
      snprintf(alt, sizeof alt, "DNS:%s", san);
      ok = add_ext(x, issuer, NID_subject_alt_name, alt) == 0;
    }
  }
  if (ok) ok = X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0;
  if (!ok) {
    X509_free(x);
    return NULL;
  }
  return x;
}

static int write_cert(const char *path, X509 *x) {
  FILE *f = fopen(path, "w");
  if (f == NULL) return -1;
  int ok = PEM_write_X509(f, x);
  return fclose(f) == 0 && ok ? 0 : -1;
}

static int write_key(const char *path, EVP_PKEY *key) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return -1;
  FILE *f = fdopen(fd, "w");
  if (f == NULL) {
    close(fd);
    return -1;
  }
  int ok = PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
  return fclose(f) == 0 && ok ? 0 : -1;
}

int tpki_ca(struct tpki_ca *ca, const char *dir, const char *name) {
  memset(ca, 0, sizeof *ca);
  ca->key = EVP_EC_gen("P-256");
  if (ca->key == NULL) return -1;
  ca->cert = make_cert(ca->key, name, NULL, NULL, NULL, -3600, 86400);
  tpki_path(ca->pem, dir, name, "pem");
  if (ca->cert == NULL || write_cert(ca->pem, ca->cert) < 0) {
    tpki_ca_free(ca);
    return -1;
  }
  return 0;
}

void tpki_ca_free(struct tpki_ca *ca) {
  X509_free(ca->cert);
  EVP_PKEY_free(ca->key);
  ca->cert = NULL;
  ca->key = NULL;
}

int tpki_issue(const struct tpki_ca *ca, const char *dir, const char *file,
               const char *cn, const char *san, long from_s, long to_s) {
  char path[PATH_MAX];
  EVP_PKEY *key = EVP_EC_gen("P-256");
  X509 *x;
  int r = -1;

  if (key == NULL) return -1;
  x = make_cert(key, cn, san, ca->cert, ca->key, from_s, to_s);
  if (x != NULL && write_cert(tpki_path(path, dir, file, "pem"), x) == 0 &&
      write_key(tpki_path(path, dir, file, "key"), key) == 0)
    r = 0;
  X509_free(x);
  EVP_PKEY_free(key);
  return r;
}
