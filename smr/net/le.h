/* le.h -- little-endian integers in byte buffers, for the RDMA path's
 * own formats (the ring's record headers, the link hello, the SST slot,
 * the switch record).  Byte by byte, so alignment and the host's byte
 * order do not matter. */
#ifndef SMR_NET_LE_H
#define SMR_NET_LE_H

#include <stdint.h>

static inline void smr_le_put32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static inline void smr_le_put64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint32_t smr_le_get32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

static inline uint64_t smr_le_get64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
}

#endif
