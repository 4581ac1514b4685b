/* wire.h -- the group protocol's wire format.
 *
 * Every message between members travels as one self-delimiting frame:
 *
 *   offset size  field
 *   0      2     magic 0x53 0x4d ("SM")
 *   2      1     version (SMR_WIRE_VERSION)
 *   3      1     type (enum smr_msg_type)
 *   4      4     body length in bytes (little endian), <= SMR_FRAME_MAX
 *   8      4     CRC32C over the whole frame with this field taken as zero
 *   12     8     group (hash of the group name; frames of other groups are refused)
 *   20     8     epoch of the sender's current view (0: none yet)
 *   28     8     incarnation of the sender process
 *   36     1     length L of the sender's member id (1..SMR_ID_MAX-1)
 *   37     L     sender's member id (bytes, no NUL)
 *   37+L   ...   body (type specific, below)
 *
 * All integers are little endian.  Strings are a u8 length and that many
 * bytes (no NUL on the wire; decoded strings are NUL terminated).  Every
 * length is checked against the bytes present before it is used: decoding
 * hostile input returns a negative errno and never reads out of bounds.
 *
 * Bodies:
 *   HEARTBEAT  u64 received, u64 delivered, u32 suspects, u8 flags
 *   SUBMIT     u32 count, count x { u64 sender_seq, u32 len, len bytes }
 *   ORDER      u64 first_seq, u32 count,
 *              count x { u8 sender_rank, u64 sender_seq, u32 len, len bytes }
 *   PREPARE    u64 ballot
 *   PROMISE    u64 ballot, u64 received, u32 suspects, u8 flags, u64 pos,
 *              u64 hash, u64 accepted_ballot, u8 has_value, [proposal]
 *   NACK       u64 ballot, u64 promised
 *   ACCEPT     u64 ballot, proposal
 *   ACCEPTED   u64 ballot
 *   DECIDE     proposal
 *   JOIN       string addr, u8 flags, u64 pos, u64 hash
 *   VIEWINFO   view
 *   HELLO      u8 flags
 *   XFER       u64 boundary, u8 kind, u64 offset, u32 len, len bytes
 *   XFER_ACK   u64 boundary, u64 offset
 *   LEAVE      (empty)
 *
 *   view       u64 epoch, u64 start_pos, u64 start_hash, u8 n,
 *              n x { string id, string addr, u64 incarnation, u8 flags }
 *   proposal   view, u64 trim
 *
 * A decoder that meets an unknown type, a bad magic, version or checksum,
 * a length that runs past the buffer, a string that is empty or too long,
 * or trailing bytes after the body refuses the whole frame. */
#ifndef SMR_CORE_WIRE_H
#define SMR_CORE_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define SMR_WIRE_MAGIC0 0x53
#define SMR_WIRE_MAGIC1 0x4d
#define SMR_WIRE_VERSION 1
#define SMR_WIRE_HDR_FIXED 37 /* header bytes before the sender id */
#define SMR_ID_MAX 32         /* member id incl. NUL */
#define SMR_ADDR_MAX 64       /* member address incl. NUL */
#define SMR_MAX_MEMBERS 16    /* members of one view, joiners included */
#define SMR_FRAME_MAX (16u << 20)

enum smr_msg_type {
  SMR_MSG_HEARTBEAT = 1,
  SMR_MSG_SUBMIT,
  SMR_MSG_ORDER,
  SMR_MSG_PREPARE,
  SMR_MSG_PROMISE,
  SMR_MSG_NACK,
  SMR_MSG_ACCEPT,
  SMR_MSG_ACCEPTED,
  SMR_MSG_DECIDE,
  SMR_MSG_JOIN,
  SMR_MSG_VIEWINFO,
  SMR_MSG_HELLO,
  SMR_MSG_XFER,
  SMR_MSG_XFER_ACK,
  SMR_MSG_LEAVE,
  SMR_MSG_TYPE_MAX_ = SMR_MSG_LEAVE
};

/* Heartbeat and promise flags. */
#define SMR_HB_WEDGED 0x01u
#define SMR_HB_LEAVING 0x02u
#define SMR_PROMISE_HAS_STATE 0x01u
#define SMR_PROMISE_LEAVING 0x02u
/* Join flags. */
#define SMR_JOIN_HAS_STATE 0x01u
/* View member flags. */
#define SMR_MEMBER_NEEDS_STATE 0x01u
/* Hello flags. */
#define SMR_HELLO_RECOVERING 0x01u

/* Transfer chunk kinds. */
enum smr_xfer_kind {
  SMR_XFER_SNAP = 1, /* offset = byte offset in the snapshot */
  SMR_XFER_LOG = 2,  /* offset = position of the delivered message */
  SMR_XFER_END = 3   /* offset = total snapshot bytes (0 for a delta);
                        data = u64 hash at the boundary */
};

struct smr_wire_hdr {
  uint8_t type;
  uint64_t group;
  uint64_t epoch;
  uint64_t incarnation;
  char from[SMR_ID_MAX];
};

struct smr_wire_member {
  char id[SMR_ID_MAX];
  char addr[SMR_ADDR_MAX];
  uint64_t incarnation;
  uint8_t flags;
};

struct smr_wire_view {
  uint64_t epoch;
  uint64_t start_pos;  /* position delivered before the first message */
  uint64_t start_hash; /* chain hash at start_pos */
  uint32_t n;
  struct smr_wire_member m[SMR_MAX_MEMBERS];
};

/* The value a view change agrees on: the next view, and how far each
 * continuing member delivers in the old one. */
struct smr_wire_proposal {
  struct smr_wire_view next;
  uint64_t trim; /* sequence number in epoch next.epoch - 1 */
};

/* One multicast payload inside SUBMIT or ORDER.  On decode, data points
 * into the frame buffer. */
struct smr_wire_entry {
  uint8_t sender; /* rank in the view (ORDER only) */
  uint64_t sender_seq;
  uint32_t len;
  const uint8_t *data;
};

/* Iterator over the entries of a decoded SUBMIT or ORDER.  The decoder has
 * validated the whole entry region, so iteration cannot fail. */
struct smr_wire_entries {
  uint32_t count;
  uint8_t with_sender; /* ORDER entries carry a sender rank */
  const uint8_t *p;    /* next entry */
  const uint8_t *end;
};

struct smr_wire_msg {
  union {
    struct {
      uint64_t received, delivered;
      uint32_t suspects;
      uint8_t flags;
    } hb;
    struct {
      /* encode: entries[0..count); decode: it */
      const struct smr_wire_entry *entries;
      uint32_t count;
      struct smr_wire_entries it;
    } submit;
    struct {
      uint64_t first_seq;
      const struct smr_wire_entry *entries;
      uint32_t count;
      struct smr_wire_entries it;
    } order;
    struct {
      uint64_t ballot;
    } prepare;
    struct {
      uint64_t ballot, received;
      uint32_t suspects;
      uint8_t flags;
      uint64_t pos, hash;
      uint64_t accepted_ballot;
      uint8_t has_value;
      struct smr_wire_proposal value;
    } promise;
    struct {
      uint64_t ballot, promised;
    } nack;
    struct {
      uint64_t ballot;
      struct smr_wire_proposal value;
    } accept;
    struct {
      uint64_t ballot;
    } accepted;
    struct {
      struct smr_wire_proposal value;
    } decide;
    struct {
      char addr[SMR_ADDR_MAX];
      uint8_t flags;
      uint64_t pos, hash;
    } join;
    struct {
      struct smr_wire_view view;
    } viewinfo;
    struct {
      uint8_t flags;
    } hello;
    struct {
      uint64_t boundary;
      uint8_t kind;
      uint64_t offset;
      uint32_t len;
      const uint8_t *data;
    } xfer;
    struct {
      uint64_t boundary, offset;
    } xfer_ack;
  } u;
};

/* CRC32C (Castagnoli), as used by iSCSI and ext4. */
uint32_t smr_crc32c(uint32_t crc, const void *buf, size_t len);

/* 64-bit hash of a group name, carried in every frame header. */
uint64_t smr_wire_group_hash(const char *name);

/* Bytes a frame of this header and message needs. */
size_t smr_wire_size(const struct smr_wire_hdr *h,
                     const struct smr_wire_msg *m);

/* Encodes one frame into buf.  Returns the frame length, or 0 if cap is too
 * small or the message is not encodable (bad type, string too long, more
 * than SMR_MAX_MEMBERS members, body over SMR_FRAME_MAX). */
size_t smr_wire_encode(uint8_t *buf, size_t cap, const struct smr_wire_hdr *h,
                       const struct smr_wire_msg *m);

/* Stream framing: given the first len bytes received, returns the length of
 * the whole frame once its fixed header is present, 0 if more bytes are
 * needed to tell, or a negative errno (-EBADMSG bad magic, -EPROTO bad
 * version, -EMSGSIZE too long) if the stream is not a frame stream. */
long smr_wire_frame_len(const uint8_t *buf, size_t len);

/* Decodes exactly one frame of len bytes.  Returns 0, or -EBADMSG (bad
 * magic, checksum, layout, lengths, trailing bytes), -EPROTO (version or
 * unknown type), -EMSGSIZE (too long).  On success, pointers in m refer
 * into buf. */
int smr_wire_decode(const uint8_t *buf, size_t len, struct smr_wire_hdr *h,
                    struct smr_wire_msg *m);

/* Next entry of a decoded SUBMIT or ORDER; returns 0 when none is left. */
int smr_wire_entries_next(struct smr_wire_entries *it,
                          struct smr_wire_entry *e);

const char *smr_msg_type_name(int type);

#endif
