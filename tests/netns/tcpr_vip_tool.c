/* tcpr_vip_tool.c -- drives TCP-R's VIP functions (tcpr/vip.c) from a shell
 * script, for tests/netns/test_tcpr_vip.sh.
 *
 *   tcpr_vip_tool add DEV CIDR       tcpr_vip_add
 *   tcpr_vip_tool del DEV CIDR       tcpr_vip_del
 *   tcpr_vip_tool present DEV CIDR   prints present/absent (exit 0/1)
 *   tcpr_vip_tool garp DEV CIDR      tcpr_garp for CIDR's address
 *
 * Exit status: 0 done (or present), 1 failed (or absent; the reason on
 * stderr), 2 usage or, for present, an error. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "tcpr.h"

static int usage(void) {
  fprintf(stderr, "usage: tcpr_vip_tool add|del|present|garp DEV CIDR\n");
  return 2;
}

int main(int argc, char **argv) {
  if (argc != 4) return usage();
  const char *cmd = argv[1], *dev = argv[2], *cidr = argv[3];
  char err[256] = "";
  int rc;
  if (strcmp(cmd, "add") == 0) {
    rc = tcpr_vip_add(dev, cidr, err, sizeof(err));
  } else if (strcmp(cmd, "del") == 0) {
    rc = tcpr_vip_del(dev, cidr, err, sizeof(err));
  } else if (strcmp(cmd, "present") == 0) {
    rc = tcpr_vip_present(dev, cidr);
    if (rc < 0) {
      fprintf(stderr, "tcpr_vip_tool: present %s on %s: %s\n", cidr, dev,
              strerror(-rc));
      return 2;
    }
    printf("%s\n", rc ? "present" : "absent");
    return rc ? 0 : 1;
  } else if (strcmp(cmd, "garp") == 0) {
    uint32_t addr;
    unsigned prefix;
    if (tcpr_parse_cidr(cidr, &addr, &prefix) < 0) {
      fprintf(stderr, "tcpr_vip_tool: not an a.b.c.d/len address: %s\n", cidr);
      return 2;
    }
    rc = tcpr_garp(dev, addr, err, sizeof(err));
  } else {
    return usage();
  }
  if (rc < 0) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  return 0;
}
