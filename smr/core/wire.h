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
 * or trailing bytes after the body refuses the whole frame.
 *
 * Details the table leaves open, as implemented (wire.c):
 *  - "Body length" counts the bytes after the sender id, so a whole frame
 *    is SMR_WIRE_HDR_FIXED + L + body length bytes, and the body length
 *    alone is bounded by SMR_FRAME_MAX (see SMR_WIRE_FRAME_LEN_MAX).
 *  - The checksum is the standard CRC32C (init and final xor ~0), i.e.
 *    smr_crc32c(0, "123456789", 9) == 0xE3069283; the field is stored LE.
 *  - Strings must not contain a NUL byte (such a frame is refused), so a
 *    decoded string re-encodes to the same bytes.  Booleans (has_value) are
 *    exactly 0 or 1; a PROMISE with has_value 0 carries no proposal bytes.
 *    The encoding is therefore canonical: every frame that decodes
 *    re-encodes byte for byte.  Flags are not checked: unknown bits pass.
 *  - An ORDER entry's sender_rank must be < SMR_MAX_MEMBERS (whether it is
 *    a rank of the current view is for the core to check).
 *  - XFER kind must be an enum smr_xfer_kind; an END chunk's data is
 *    exactly 8 bytes, the boundary hash as a little-endian u64.
 *  - The decoder does not check the group hash, epoch or incarnation: that
 *    is the core's business.  The order of checks is framing (magic,
 *    version, length, sender id length), then the checksum, then the type:
 *    an unknown type under a good checksum is -EPROTO (a newer peer), a
 *    corrupted type byte is -EBADMSG.  Everything after is -EBADMSG. */
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
#define SMR_FRAME_MAX (16u << 20) /* bytes of body, not of the frame */
/* The longest whole frame: a receive buffer of this size holds any frame
 * smr_wire_frame_len() accepts. */
#define SMR_WIRE_FRAME_LEN_MAX \
  ((size_t)SMR_WIRE_HDR_FIXED + SMR_ID_MAX - 1 + SMR_FRAME_MAX)
/* Body bytes an entry takes besides its payload (batch sizing). */
#define SMR_WIRE_SUBMIT_ENTRY_OVERHEAD 12 /* u64 sender_seq, u32 len */
#define SMR_WIRE_ORDER_ENTRY_OVERHEAD 13  /* plus u8 sender_rank */

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
#define SMR_MEMBER_LEAVING 0x02u /* kept though leaving (it holds state) */
/* Hello flags. */
#define SMR_HELLO_RECOVERING 0x01u /* sender may act as acceptor */
#define SMR_HELLO_NO_STATE 0x02u   /* sender has no service state */

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

/* CRC32C (Castagnoli), as used by iSCSI and ext4.  Pass 0 to start; pass a
 * previous result to continue over more bytes (crc(0, ab) ==
 * crc(crc(0, a), b)). */
uint32_t smr_crc32c(uint32_t crc, const void *buf, size_t len);
/* The table-driven version smr_crc32c() uses where the CPU has no CRC32C
 * instruction, or emulates it slowly (exported for the tests, which check
 * both). */
uint32_t smr_crc32c_sw(uint32_t crc, const void *buf, size_t len);

/* 64-bit hash of a group name, carried in every frame header. */
uint64_t smr_wire_group_hash(const char *name);

/* Bytes a frame of this header and message needs; 0 if it cannot be
 * encoded (the cases smr_wire_encode() lists). */
size_t smr_wire_size(const struct smr_wire_hdr *h,
                     const struct smr_wire_msg *m);

/* Encodes one frame into buf.  Returns the frame length, or 0 if cap is too
 * small or the message is not encodable (bad type, string empty or too
 * long, more than SMR_MAX_MEMBERS members, body over SMR_FRAME_MAX,
 * has_value not 0/1, unknown xfer kind or END data not 8 bytes, an ORDER
 * sender >= SMR_MAX_MEMBERS, NULL entries/data with a non-zero count/len).
 * Strings are read up to their NUL (at most the field's size).  The type
 * is h->type; SUBMIT and ORDER read entries/count and ignore it. */
size_t smr_wire_encode(uint8_t *buf, size_t cap, const struct smr_wire_hdr *h,
                       const struct smr_wire_msg *m);

/* Stream framing: given the first len bytes received, returns the length of
 * the whole frame once its fixed header (SMR_WIRE_HDR_FIXED bytes, which
 * end with the sender id's length) is present, 0 if more bytes are needed
 * to tell, or a negative errno (-EBADMSG bad magic or sender id length,
 * -EPROTO bad version, -EMSGSIZE too long) if the stream is not a frame
 * stream.  Each field is checked as soon as its bytes are present, so a
 * bad stream fails as early as possible.  The checksum and type are left
 * to smr_wire_decode(). */
long smr_wire_frame_len(const uint8_t *buf, size_t len);

/* Decodes exactly one frame of len bytes.  Returns 0, or -EBADMSG (bad
 * magic, checksum, layout, lengths, trailing bytes), -EPROTO (version or
 * unknown type), -EMSGSIZE (too long).  On success, pointers in m refer
 * into buf; SUBMIT and ORDER get it and count set and entries NULL; a
 * decoded view's unused member slots are zeroed.  On failure the contents
 * of h and m are unspecified. */
int smr_wire_decode(const uint8_t *buf, size_t len, struct smr_wire_hdr *h,
                    struct smr_wire_msg *m);

/* Next entry of a decoded SUBMIT or ORDER into e; returns 1, or 0 when none
 * is left.  The iterator is a plain value: copy it to iterate twice. */
int smr_wire_entries_next(struct smr_wire_entries *it,
                          struct smr_wire_entry *e);

/* "HEARTBEAT", "SUBMIT", ...; "UNKNOWN" for any other value. */
const char *smr_msg_type_name(int type);

#endif
