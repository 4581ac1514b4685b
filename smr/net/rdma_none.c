/* rdma_none.c -- the RDMA data path when this build has none (libibverbs
 * or librdmacm were missing at build time): opening an endpoint says so,
 * and nothing else can be reached (see rdma.h). */
#include <errno.h>
#include <stdio.h>

#include "assert.h"
#include "rdma.h"

int smr_rdma_ep_open(struct ev_loop *loop, const struct sockaddr *addr,
                     uint32_t ring_bytes, int timeout_ms,
                     uint32_t busy_poll_us,
                     void (*log)(void *ctx, const char *line), void *log_ctx,
                     struct smr_rdma_ep **out, char *err, size_t errlen) {
  (void)loop, (void)addr, (void)ring_bytes, (void)timeout_ms, (void)log;
  (void)busy_poll_us;
  (void)log_ctx;
  *out = NULL;
  snprintf(err, errlen, "this build has no RDMA (libibverbs-dev and "
           "librdmacm-dev were not installed when it was built)");
  return -ENODEV;
}

void smr_rdma_ep_close(struct smr_rdma_ep *ep) { (void)NEVER(ep != NULL); }
int smr_rdma_ep_port(const struct smr_rdma_ep *ep) { (void)ep; return 0; }
uint64_t smr_rdma_ep_refused(const struct smr_rdma_ep *ep) {
  (void)ep;
  return 0;
}

int smr_rdma_path_expect(struct smr_rdma_ep *ep,
                         const struct smr_rdma_path_cb *cb,
                         uint8_t token[SMR_NET_TOKEN_LEN],
                         struct smr_rdma_path **out) {
  (void)ep, (void)cb, (void)token, (void)out;
  (void)NEVER(1);
  return -ENODEV;
}

int smr_rdma_path_connect(struct smr_rdma_ep *ep, const struct sockaddr *dst,
                          const struct sockaddr *src,
                          const uint8_t token[SMR_NET_TOKEN_LEN],
                          const struct smr_rdma_path_cb *cb,
                          struct smr_rdma_path **out, char *err,
                          size_t errlen) {
  (void)ep, (void)dst, (void)src, (void)token, (void)cb, (void)out;
  snprintf(err, errlen, "this build has no RDMA");
  (void)NEVER(1);
  return -ENODEV;
}

int smr_rdma_path_is_up(const struct smr_rdma_path *p) { (void)p; return 0; }
uint32_t smr_rdma_path_max_record(const struct smr_rdma_path *p) {
  (void)p;
  return 0;
}
int smr_rdma_path_send(struct smr_rdma_path *p, const void *buf,
                       uint32_t len) {
  (void)p, (void)buf, (void)len;
  return -ENOTCONN;
}
int smr_rdma_path_send_whole(struct smr_rdma_path *p, const void *buf,
                             size_t len) {
  (void)p, (void)buf, (void)len;
  return -ENOTCONN;
}
int smr_rdma_path_more(const struct smr_rdma_path *p) {
  (void)p;
  return 0;
}
int smr_rdma_path_poll(struct smr_rdma_path *p,
                       void (*cb)(void *ctx, const uint8_t *rec, uint32_t len),
                       void *ctx) {
  (void)p, (void)cb, (void)ctx;
  return -ENOTCONN;
}
int smr_rdma_path_sst_put(struct smr_rdma_path *p, const void *data,
                          uint32_t len) {
  (void)p, (void)data, (void)len;
  return -ENOTCONN;
}
int smr_rdma_path_sst_get(struct smr_rdma_path *p, uint8_t *data,
                          uint32_t *len) {
  (void)p, (void)data, (void)len;
  return -ENOTCONN;
}
const char *smr_rdma_path_device(const struct smr_rdma_path *p) {
  (void)p;
  return "none";
}
int smr_rdma_path_drain(struct smr_rdma_path *p, int timeout_ms) {
  (void)timeout_ms;
  (void)NEVER(p != NULL);
  return 0;
}
void smr_rdma_path_close(struct smr_rdma_path *p) { (void)NEVER(p != NULL); }
