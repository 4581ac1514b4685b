/* config.h -- smrd's configuration file (INI; see ../shared INTERFACES). */
#ifndef SMR_SMRD_CONFIG_H
#define SMR_SMRD_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#define SMRD_MAX_MEMBERS 16

struct smrd_member {
  char id[32];
  char addr[64]; /* host:port */
};

enum smrd_gate { SMRD_GATE_AUTO, SMRD_GATE_KMOD, SMRD_GATE_BPF, SMRD_GATE_OFF };

struct smrd_config {
  /* [group] */
  char group[64];
  struct smrd_member members[SMRD_MAX_MEMBERS];
  size_t n_members;
  /* [node] */
  char id[32];
  char addr[64];          /* ours: from members, or [node] addr for a joiner */
  char data_dir[512];
  char admin_socket[512]; /* default <data_dir>/admin.sock */
  /* [transport] */
  char kind[16];          /* tcp | rdma */
  int rdma_fallback;      /* rdma: TCP where no RDMA link can be made */
  uint16_t rdma_port;     /* rdma: connection manager port (0: member's) */
  uint32_t rdma_busy_poll_us; /* rdma: polling after the last work (0) */
  int relay;              /* relay = chain: ORDERs along the ranks */
  char tls_ca[512], tls_cert[512], tls_key[512];
  int insecure;
  /* [failure] */
  uint32_t heartbeat_ms, suspect_ms;
  /* [durability] */
  int durable;            /* mode = fsync (1) | memory (0) */
  uint64_t checkpoint_every;
  /* [metrics] the Prometheus endpoint (http.h) */
  char metrics_listen[64];  /* numeric host:port; "" = none */
  char metrics_allow[512];  /* allow list (allow.h); default loopback */
  /* [vip] */
  char vip_address[64];   /* "" = no VIP */
  char vip_device[32];
  enum smrd_gate gate;
  /* [service] */
  char service[16];       /* kv | mapreduce | attest */
  char service_bind[64];  /* host to listen on for clients */
  uint16_t port;
  /* [restart] rejuvenation: the primary restarts the member whose process
   * is oldest once it is older than every (+ up to jitter), one at a time,
   * only while every configured member is in the view and up.  0: never. */
  uint64_t restart_every_ms, restart_jitter_ms;
  /* [test] (never in production) */
  uint32_t replication_delay_ms;
  uint32_t reply_delay_ms;
  uint32_t takeover_acks; /* [test] takeover_acks, default 1 */
  int corrupt_command;    /* [test] corrupt_command: smrctl debug-corrupt */
};

/* Loads and validates FILE.  Returns 0, or -1 with a one-line reason in err
 * that names the file, the key and what is wrong with it. */
int smrd_config_load(const char *file, struct smrd_config *cfg, char *err,
                     size_t errlen);

/* "6h", "30m", "20s", "500ms", "1d", or a bare number of seconds, into
 * milliseconds.  0 on success, -1 if not a duration. */
int smrd_duration_ms(const char *s, uint64_t *ms);

/* Validates "host:port" (IPv4, [IPv6] or a name; port 1..65535). */
int smrd_addr_valid(const char *addr);

#endif
