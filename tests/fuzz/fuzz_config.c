/* fuzz_config.c -- fuzz target for smrd's configuration parser: any bytes
 * as the INI file must load or be refused with a message, never crash or
 * leave a half-checked configuration (smr/smrd/config.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "allow.h"
#include "config.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char path[] = "/tmp/smr-fuzz-config-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return 0;
  if (write(fd, data, size) != (ssize_t)size) {
    close(fd);
    unlink(path);
    return 0;
  }
  close(fd);
  struct smrd_config cfg;
  char err[512];
  int rc = smrd_config_load(path, &cfg, err, sizeof(err));
  unlink(path);
  if (rc == 0) {
    /* Whatever loads satisfies every rule the loader promises. */
    FUZZ_CHECK(cfg.n_members >= 1 && cfg.n_members <= SMRD_MAX_MEMBERS);
    FUZZ_CHECK(cfg.suspect_ms > cfg.heartbeat_ms);
    FUZZ_CHECK(cfg.id[0] && cfg.data_dir[0] && cfg.addr[0]);
    FUZZ_CHECK(cfg.insecure || (cfg.tls_ca[0] && cfg.tls_cert[0] &&
                                cfg.tls_key[0]));
    FUZZ_CHECK(smrd_addr_valid(cfg.addr));
    struct smrd_allow allow;
    FUZZ_CHECK(smrd_allow_parse(cfg.metrics_allow, &allow, err,
                                sizeof(err)) == 0);
  } else {
    FUZZ_CHECK(rc == -1 && err[0] != 0 && memchr(err, 0, sizeof(err)));
  }
  return 0;
}
