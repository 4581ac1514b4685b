/* store.c -- a member's data directory: log, checkpoint, incarnation.
 *
 * DESIGN
 * ======
 * Everything a member keeps on disk is written in the protocol's own frame
 * format (smr/core/wire.h): every record is a self-delimiting, versioned,
 * CRC32C-checked frame whose header names the group and the process
 * (incarnation) that wrote it.  So the one fuzzed decoder that guards the
 * network also guards the disk, and a data directory of another group is
 * recognised at once.
 *
 *   <dir>/lock            flock()ed while a process uses the directory
 *   <dir>/incarnation     the last process's incarnation, in decimal
 *   <dir>/log.smr         append-only log of frames:
 *       VIEWINFO               the view installed (PERSIST_VIEW)
 *       PROMISE                acceptor state of an epoch: ballot = promised,
 *                              accepted ballot and value (PERSIST_ACCEPTOR)
 *       ORDER (one entry)      a received multicast of an epoch, first_seq =
 *                              its sequence number (PERSIST_ENTRY)
 *       XFER kind LOG          a delivered message, offset = its position,
 *                              boundary = the chain hash after it (0 in
 *                              logs of earlier versions: the donor then
 *                              checks a delta by hashing the whole run)
 *       XFER kind END          the service state was replaced by a state
 *                              transfer at position offset (data: hash)
 *   <dir>/checkpoint.smr  the service image at a position: XFER SNAP
 *                         frames (boundary = position, offset = byte
 *                         offset), then XFER END (offset = total bytes,
 *                         data = the chain hash at the position).  Written
 *                         to checkpoint.tmp, synced, renamed.
 *
 * Recovery (smr_store_open): the checkpoint is loaded into the service, the
 * delivered messages after it are replayed (chain hashes checked), and the
 * latest view, acceptor state and that view's entries are handed to the
 * core.  A frame cut short at the end of the log is a write the crash
 * interrupted: it was never synced, so never relied on, and is cut off.
 * Anything else that does not decode is corruption: the file is refused
 * with a log line that says where and why, set aside as *.corrupt, and the
 * member carries on with what is still good (a checkpoint without a log
 * rejoins the group with a delta; nothing at all rejoins as a new member)
 * -- the group, not the damaged disk, is the source of truth.
 *
 * Durability: records are buffered and written by smr_store_sync(), which
 * the runtime calls once per batch of core outputs before any frame of that
 * batch is sent; with durable on it then fdatasync()s once for the whole
 * batch (group commit).  The log is compacted at each checkpoint: the new
 * log keeps the current view, acceptor state and entries, and the last
 * `retain` delivered messages (the deltas we can still serve).  The
 * rewrite, like the checkpoint, goes to a temporary file that is synced and
 * renamed over the old one.
 *
 * Costs and limits, for now: recovery reads the whole log into memory;
 * syncs block the event loop (as Redis's appendfsync always does); the
 * retained deltas are indexed in memory (16 bytes each). */
#include "store.h"

#include "smr/smr.h" /* log levels */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "assert.h"

#define STORE_ID "store"   /* the `from` of every record */
#define CKPT_CHUNK 65536

struct delivered_ix {
  uint64_t pos;
  uint64_t off;  /* of its frame in the log file */
  uint64_t hash; /* the chain hash after it (0: not recorded) */
};

struct obuf {
  uint8_t *p;
  size_t len, cap;
};

struct smr_store {
  struct smr_store_config cfg;
  char dir[4096];
  int lock_fd, log_fd;
  uint64_t group_hash;
  uint64_t incarnation;
  /* Write buffer and sync state. */
  struct obuf w;
  int dirty;           /* written since the last sync */
  uint64_t log_size;   /* bytes in the log file */
  /* Recovered data handed to the core (freed at the first checkpoint). */
  struct smr_persisted_entry *ents;
  uint8_t **ent_data;
  uint32_t n_ents, cap_ents;
  /* Current view and acceptor state, for compaction. */
  int has_view;
  struct smr_wire_view view;
  int has_acc;
  uint64_t acc_epoch, promised, acc_ballot;
  int acc_has_value;
  struct smr_wire_proposal acc;
  /* Entries of the current epoch: offsets in the log, for compaction. */
  struct ent_ix {
    uint64_t seq, off;
  } *ent_off;
  uint32_t n_ent_off, cap_ent_off;
  /* Retained delivered messages. */
  struct delivered_ix *dix;
  size_t n_dix, cap_dix, dix_head;
  uint8_t *rbuf; /* log_read's frame buffer */
  size_t rcap;
  uint64_t checkpoint_pos;
  uint64_t fsyncs, records;
};

/* ------------------------------------------------------------------------
 * Small helpers
 * --------------------------------------------------------------------- */

__attribute__((format(printf, 3, 4)))
static void slog(struct smr_store *s, int level, const char *fmt, ...) {
  if (s->cfg.log == NULL) return;
  char line[600];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  s->cfg.log(s->cfg.ctx, level, line);
}

__attribute__((format(printf, 3, 4)))
static int fail(char *err, size_t errlen, const char *fmt, ...) {
  if (err != NULL && errlen > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return -1;
}

static void path(const struct smr_store *s, char *out, size_t n,
                 const char *name) {
  snprintf(out, n, "%s/%s", s->dir, name);
}

static int fsync_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -errno;
  int rc = fsync(fd) < 0 ? -errno : 0;
  close(fd);
  return rc;
}

static int write_all(int fd, const uint8_t *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static int read_file(const char *file, uint8_t **out, size_t *len) {
  *out = NULL;
  *len = 0;
  int fd = open(file, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  struct stat st;
  if (fstat(fd, &st) < 0) {
    int e = -errno;
    close(fd);
    return e;
  }
  size_t n = (size_t)st.st_size;
  uint8_t *b = malloc(n ? n : 1);
  if (b == NULL) {
    close(fd);
    return -ENOMEM;
  }
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, b + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      int e = r < 0 ? -errno : -EIO;
      free(b);
      close(fd);
      return e;
    }
    got += (size_t)r;
  }
  close(fd);
  *out = b;
  *len = n;
  return 0;
}

/* A growing output buffer: the log's write buffer, the checkpoint and the
 * compacted log are built in one. */
static int obuf_put(struct obuf *o, const uint8_t *d, size_t n) {
  if (o->len + n > o->cap) {
    size_t c = o->cap ? o->cap : 65536;
    while (c < o->len + n) c *= 2;
    uint8_t *np = realloc(o->p, c);
    if (np == NULL) return -ENOMEM;
    o->p = np;
    o->cap = c;
  }
  memcpy(o->p + o->len, d, n);
  o->len += n;
  return 0;
}

static int obuf_frame(struct smr_store *s, struct obuf *o, uint8_t type,
                      uint64_t epoch, const struct smr_wire_msg *m) {
  struct smr_wire_hdr h;
  memset(&h, 0, sizeof(h));
  h.type = type;
  h.group = s->group_hash;
  h.epoch = epoch;
  h.incarnation = s->incarnation;
  strcpy(h.from, STORE_ID);
  size_t need = smr_wire_size(&h, m);
  if (need == 0) return -EINVAL;
  if (o->len + need > o->cap) {
    size_t c = o->cap ? o->cap : 65536;
    while (c < o->len + need) c *= 2;
    uint8_t *np = realloc(o->p, c);
    if (np == NULL) return -ENOMEM;
    o->p = np;
    o->cap = c;
  }
  size_t n = smr_wire_encode(o->p + o->len, need, &h, m);
  if (!ALWAYS(n == need)) return -EINVAL;
  o->len += n;
  return 0;
}

/* Encodes a record frame and appends it to the write buffer. */
static int append(struct smr_store *s, uint8_t type, uint64_t epoch,
                  const struct smr_wire_msg *m, uint64_t *off) {
  size_t at = s->w.len;
  int rc = obuf_frame(s, &s->w, type, epoch, m);
  if (rc < 0) return rc;
  if (off != NULL) *off = s->log_size + at;
  s->records++;
  return 0;
}

/* ------------------------------------------------------------------------
 * Recovery
 * --------------------------------------------------------------------- */

/* Remembers where the entry `seq` of the current epoch is in the log. */
static int index_entry(struct smr_store *s, uint64_t seq, uint64_t off) {
  if (s->n_ent_off == s->cap_ent_off) {
    uint32_t c = s->cap_ent_off ? s->cap_ent_off * 2 : 64;
    struct ent_ix *no = realloc(s->ent_off, c * sizeof(*no));
    if (no == NULL) return -ENOMEM;
    s->ent_off = no;
    s->cap_ent_off = c;
  }
  s->ent_off[s->n_ent_off].seq = seq;
  s->ent_off[s->n_ent_off++].off = off;
  return 0;
}

static int keep_entry(struct smr_store *s, uint64_t seq, uint8_t sender,
                      uint64_t sseq, const uint8_t *data, uint32_t len,
                      uint64_t off) {
  if (s->n_ents == s->cap_ents) {
    uint32_t c = s->cap_ents ? s->cap_ents * 2 : 64;
    struct smr_persisted_entry *ne = realloc(s->ents, c * sizeof(*ne));
    if (ne == NULL) return -ENOMEM;
    s->ents = ne;
    uint8_t **nd = realloc(s->ent_data, c * sizeof(*nd));
    if (nd == NULL) return -ENOMEM;
    s->ent_data = nd;
    s->cap_ents = c;
  }
  uint8_t *copy = malloc(len ? len : 1);
  if (copy == NULL) return -ENOMEM;
  if (len) memcpy(copy, data, len);
  struct smr_persisted_entry *e = &s->ents[s->n_ents];
  e->seq = seq;
  e->sender = sender;
  e->sender_seq = sseq;
  e->len = len;
  e->data = copy;
  s->ent_data[s->n_ents++] = copy;
  return index_entry(s, seq, off);
}

static void drop_entries(struct smr_store *s) {
  for (uint32_t i = 0; i < s->n_ents; i++) free(s->ent_data[i]);
  s->n_ents = 0;
  s->n_ent_off = 0;
}

/* Keeps the last `retain` deliveries, and no more than retain_bytes of log
 * from the oldest of them on -- but never drops one after `covered` (the
 * checkpoint position): the next compaction, which may run long after its
 * checkpoint's position when a background checkpoint is collected, must
 * copy every delivery the checkpoint does not cover, or recovery would
 * stop at the gap. */
static void trim_index(struct smr_store *s, uint64_t covered) {
  if (s->n_dix == s->dix_head) return;
  uint64_t end = s->dix[s->n_dix - 1].off;
  while ((s->n_dix - s->dix_head > s->cfg.retain ||
          (s->n_dix - s->dix_head > 1 && s->cfg.retain_bytes &&
           end - s->dix[s->dix_head].off > s->cfg.retain_bytes)) &&
         s->dix[s->dix_head].pos <= covered)
    s->dix_head++;
}

static int index_delivered(struct smr_store *s, uint64_t pos, uint64_t off,
                           uint64_t hash) {
  if (s->n_dix > 0 && pos != s->dix[s->n_dix - 1].pos + 1) {
    s->n_dix = 0; /* a gap (state transfer): older ones serve no delta */
    s->dix_head = 0;
  }
  if (s->n_dix == s->cap_dix) {
    if (s->dix_head > 0) {
      memmove(s->dix, s->dix + s->dix_head,
              (s->n_dix - s->dix_head) * sizeof(*s->dix));
      s->n_dix -= s->dix_head;
      s->dix_head = 0;
    }
    if (s->n_dix == s->cap_dix) {
      size_t c = s->cap_dix ? s->cap_dix * 2 : 1024;
      struct delivered_ix *nd = realloc(s->dix, c * sizeof(*nd));
      if (nd == NULL) return -ENOMEM;
      s->dix = nd;
      s->cap_dix = c;
    }
  }
  s->dix[s->n_dix].pos = pos;
  s->dix[s->n_dix].off = off;
  s->dix[s->n_dix].hash = hash;
  s->n_dix++;
  /* Keep only the last `retain`, and no more than retain_bytes of log
   * from the oldest of them on (compaction copies them; with large
   * requests a count alone let the log after a checkpoint reach GBs). */
  trim_index(s, s->checkpoint_pos);
  return 0;
}

/* Loads checkpoint.smr into the service.  0: loaded (pos, hash set);
 * -ENOENT: none; other: refused (reason in why). */
static int load_checkpoint(struct smr_store *s, uint64_t *pos, uint64_t *hash,
                           char *why, size_t whylen) {
  char file[4200];
  path(s, file, sizeof(file), "checkpoint.smr");
  uint8_t *b;
  size_t n;
  int rc = read_file(file, &b, &n);
  if (rc == -ENOENT) return -ENOENT;
  if (rc < 0) {
    snprintf(why, whylen, "cannot read it: %s", strerror(-rc));
    return rc;
  }
  const struct smr_service_ops *svc = s->cfg.svc;
  size_t off = 0;
  uint64_t boundary = 0, expect = 0;
  int began = 0, ended = 0;
  rc = -EBADMSG;
  while (off < n) {
    long fl = smr_wire_frame_len(b + off, n - off);
    if (fl <= 0 || (size_t)fl > n - off) {
      snprintf(why, whylen, "record at byte %zu is %s", off,
               fl == 0 || fl > 0 ? "cut short" : "not a frame");
      goto out;
    }
    struct smr_wire_hdr h;
    struct smr_wire_msg m;
    int d = smr_wire_decode(b + off, (size_t)fl, &h, &m);
    if (d < 0) {
      snprintf(why, whylen, "record at byte %zu does not decode (%s)", off,
               strerror(-d));
      goto out;
    }
    if (h.group != s->group_hash) {
      snprintf(why, whylen, "it belongs to another group");
      goto out;
    }
    if (h.type != SMR_MSG_XFER || ended) {
      snprintf(why, whylen, "unexpected record at byte %zu", off);
      goto out;
    }
    if (!began) {
      boundary = m.u.xfer.boundary;
      if (svc != NULL && svc->restore_begin(s->cfg.svc_ctx) < 0) {
        snprintf(why, whylen, "the service refused to restore");
        goto out;
      }
      began = 1;
    }
    if (m.u.xfer.boundary != boundary) {
      snprintf(why, whylen, "mixed positions at byte %zu", off);
      goto out;
    }
    if (m.u.xfer.kind == SMR_XFER_SNAP) {
      if (m.u.xfer.offset != expect) {
        snprintf(why, whylen, "chunk at byte %zu is out of order", off);
        goto out;
      }
      if (svc != NULL && svc->restore_chunk(s->cfg.svc_ctx, m.u.xfer.offset,
                                            m.u.xfer.data, m.u.xfer.len) < 0) {
        snprintf(why, whylen, "the service refused the image at %" PRIu64,
                 m.u.xfer.offset);
        goto out;
      }
      expect += m.u.xfer.len;
    } else if (m.u.xfer.kind == SMR_XFER_END && m.u.xfer.len == 8 &&
               m.u.xfer.offset == expect) {
      uint64_t hh = 0;
      for (int i = 0; i < 8; i++) hh |= (uint64_t)m.u.xfer.data[i] << (8 * i);
      if (svc != NULL && svc->restore_end(s->cfg.svc_ctx) < 0) {
        snprintf(why, whylen, "the service refused the image as a whole");
        goto out;
      }
      *pos = boundary;
      *hash = hh;
      ended = 1;
    } else {
      snprintf(why, whylen, "bad record at byte %zu", off);
      goto out;
    }
    off += (size_t)fl;
  }
  if (!ended) {
    snprintf(why, whylen, "it ends without its final record");
    goto out;
  }
  rc = 0;
out:
  if (rc < 0 && began && svc != NULL) {
    /* Leave the service empty: an empty image it accepts is not ours to
     * make, so restart and end with nothing. */
    svc->restore_begin(s->cfg.svc_ctx);
  }
  free(b);
  return rc;
}

/* Sets a refused file aside, keeping it for a human to look at. */
static void set_aside(struct smr_store *s, const char *name) {
  char from[4200], to[4300];
  path(s, from, sizeof(from), name);
  /* Numbered past every incarnation seen so far, so that the files set
   * aside by successive processes never collide. */
  snprintf(to, sizeof(to), "%s.corrupt-%" PRIu64, from, s->incarnation + 1);
  if (rename(from, to) == 0)
    slog(s, SMR_LOG_WARN, "kept the refused file as %s", to);
}

/* Replays log.smr.  Fills rec; returns 0, or -EINVAL for a log of another
 * group (a configuration error, not corruption). */
static int load_log(struct smr_store *s, struct smr_store_recovered *rec,
                    uint64_t *pos, uint64_t *hash, int *state_ok,
                    char *err, size_t errlen) {
  char file[4200];
  path(s, file, sizeof(file), "log.smr");
  uint8_t *b;
  size_t n;
  int rc = read_file(file, &b, &n);
  if (rc == -ENOENT) return 0;
  if (rc < 0) return fail(err, errlen, "%s: %s", file, strerror(-rc)), rc;
  size_t off = 0, good = 0;
  int corrupt = 0;
  char why[200] = "";
  while (off < n) {
    long fl = smr_wire_frame_len(b + off, n - off);
    if (fl == 0 || (fl > 0 && (size_t)fl > n - off)) break; /* torn tail */
    if (fl < 0) {
      snprintf(why, sizeof(why), "record at byte %zu is not a frame", off);
      corrupt = 1;
      break;
    }
    struct smr_wire_hdr h;
    struct smr_wire_msg m;
    int d = smr_wire_decode(b + off, (size_t)fl, &h, &m);
    if (d < 0) {
      snprintf(why, sizeof(why), "record at byte %zu does not decode (%s)",
               off, strerror(-d));
      corrupt = 1;
      break;
    }
    if (h.group != s->group_hash) {
      free(b);
      return fail(err, errlen,
                  "%s belongs to another group (wrong data_dir?)", file),
             -EINVAL;
    }
    if (h.incarnation > s->incarnation) s->incarnation = h.incarnation;
    switch (h.type) {
    case SMR_MSG_VIEWINFO:
      if (s->has_view && m.u.viewinfo.view.epoch < s->view.epoch) break;
      if (!s->has_view || m.u.viewinfo.view.epoch > s->view.epoch)
        drop_entries(s);
      s->has_view = 1;
      s->view = m.u.viewinfo.view;
      break;
    case SMR_MSG_PROMISE:
      s->has_acc = 1;
      s->acc_epoch = h.epoch;
      s->promised = m.u.promise.ballot;
      s->acc_ballot = m.u.promise.accepted_ballot;
      s->acc_has_value = m.u.promise.has_value;
      if (m.u.promise.has_value) s->acc = m.u.promise.value;
      break;
    case SMR_MSG_ORDER: {
      struct smr_wire_entries it = m.u.order.it;
      struct smr_wire_entry e;
      if (!s->has_view || h.epoch != s->view.epoch) break;
      if (smr_wire_entries_next(&it, &e) &&
          (s->n_ents == 0 ||
           m.u.order.first_seq == s->ents[s->n_ents - 1].seq + 1) &&
          keep_entry(s, m.u.order.first_seq, e.sender, e.sender_seq, e.data,
                     e.len, off) < 0) {
        free(b);
        return fail(err, errlen, "out of memory"), -ENOMEM;
      }
      break;
    }
    case SMR_MSG_XFER:
      if (m.u.xfer.kind == SMR_XFER_LOG) {
        uint64_t p = m.u.xfer.offset;
        index_delivered(s, p, off, m.u.xfer.boundary);
        if (*state_ok && p == *pos + 1) {
          if (s->cfg.replay != NULL)
            s->cfg.replay(s->cfg.ctx, p, m.u.xfer.data, m.u.xfer.len);
          *hash = smr_chain_hash(*hash, p, m.u.xfer.data, m.u.xfer.len);
          *pos = p;
        }
      } else if (m.u.xfer.kind == SMR_XFER_END && m.u.xfer.len == 8) {
        /* State replaced by a transfer at offset: only a checkpoint at or
         * after it can give it back. */
        if (m.u.xfer.offset > *pos) *state_ok = 0;
      }
      break;
    default:
      break;
    }
    off += (size_t)fl;
    good = off;
  }
  free(b);
  if (corrupt) {
    slog(s, SMR_LOG_ERROR,
         "%s: %s: refused; local log dropped, rejoining the group with what "
         "the checkpoint holds",
         file, why);
    set_aside(s, "log.smr");
    s->has_view = s->has_acc = 0;
    drop_entries(s);
    s->n_dix = s->dix_head = 0;
    rec->corrupt = 1;
    return 0;
  }
  if (good < n) {
    slog(s, SMR_LOG_INFO,
         "%s: cut off %zu bytes of a record the last crash interrupted",
         file, n - good);
    if (truncate(file, (off_t)good) < 0)
      return fail(err, errlen, "%s: truncate: %s", file, strerror(errno)),
             -errno;
  }
  s->log_size = good;
  return 0;
}

static int read_incarnation(struct smr_store *s, uint64_t *inc) {
  char file[4200];
  path(s, file, sizeof(file), "incarnation");
  uint8_t *b;
  size_t n;
  *inc = 0;
  int rc = read_file(file, &b, &n);
  if (rc == -ENOENT) return 0;
  if (rc < 0) return rc;
  char txt[32];
  size_t k = n < sizeof(txt) - 1 ? n : sizeof(txt) - 1;
  memcpy(txt, b, k);
  txt[k] = 0;
  free(b);
  char *end;
  errno = 0;
  unsigned long long v = strtoull(txt, &end, 10);
  if (errno != 0 || end == txt || (*end != '\n' && *end != 0)) {
    slog(s, SMR_LOG_WARN,
         "%s: not a number; taking the incarnation from the log instead",
         file);
    return 0;
  }
  *inc = v;
  return 0;
}

/* ------------------------------------------------------------------------
 * Freeing large files off the loop
 * --------------------------------------------------------------------- */

/* The last close of a file already replaced by a rename frees its blocks,
 * and for a GB-sized log or checkpoint on ext4 that took seconds: on the
 * loop, long enough for the member to be suspected (measured: 2.7-3.0 s
 * for the 1 GB log at the first compaction after filling 1 GiB).  So such
 * a file is held open across its replacement and a short-lived detached
 * thread closes it, as Redis does for its old AOF.  The thread shares
 * nothing but the descriptor, which nobody uses after handing it over. */
static void *closer(void *arg) {
  close((int)(intptr_t)arg);
  return NULL;
}

static void close_later(int fd) {
  if (fd < 0) return;
  pthread_attr_t a;
  pthread_t t;
  if (pthread_attr_init(&a) == 0) {
    int rc = pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    if (rc == 0) rc = pthread_create(&t, &a, closer, (void *)(intptr_t)fd);
    pthread_attr_destroy(&a);
    if (rc == 0) return;
  }
  close(fd); /* no thread: here, then */
}

/* A descriptor that keeps the file `name` alive across its replacement,
 * for close_later(); -1 if there is none. */
static int hold(const struct smr_store *s, const char *name) {
  char file[4200];
  path(s, file, sizeof(file), name);
  return open(file, O_RDONLY | O_CLOEXEC);
}

static int write_file_atomic(struct smr_store *s, const char *name,
                             const uint8_t *data, size_t len, int sync) {
  char tmp[4300], file[4200];
  path(s, file, sizeof(file), name);
  snprintf(tmp, sizeof(tmp), "%s.tmp", file);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return -errno;
  int rc = write_all(fd, data, len);
  if (rc == 0 && sync && fsync(fd) < 0) rc = -errno;
  close(fd);
  if (rc == 0 && rename(tmp, file) < 0) rc = -errno;
  if (rc == 0 && sync) rc = fsync_dir(s->dir);
  if (rc < 0) unlink(tmp);
  return rc;
}

int smr_store_open(const struct smr_store_config *cfg, struct smr_store **out,
                   struct smr_store_recovered *rec, char *err, size_t errlen) {
  *out = NULL;
  memset(rec, 0, sizeof(*rec));
  if (cfg->dir == NULL || cfg->dir[0] == 0 || strlen(cfg->dir) > 4000)
    return fail(err, errlen, "data_dir: missing or too long"), -EINVAL;
  struct smr_store *s = calloc(1, sizeof(*s));
  if (s == NULL) return -ENOMEM;
  s->cfg = *cfg;
  if (s->cfg.retain == 0) s->cfg.retain = 100000;
  snprintf(s->dir, sizeof(s->dir), "%s", cfg->dir);
  s->lock_fd = s->log_fd = -1;
  s->group_hash = smr_wire_group_hash(cfg->group);
  int rc;
  char file[4200];

  if (mkdir(s->dir, 0700) < 0 && errno != EEXIST) {
    rc = -errno;
    fail(err, errlen, "data_dir %s: %s", s->dir, strerror(errno));
    goto bad;
  }
  path(s, file, sizeof(file), "lock");
  s->lock_fd = open(file, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (s->lock_fd < 0) {
    rc = -errno;
    fail(err, errlen, "data_dir %s: %s", s->dir, strerror(errno));
    goto bad;
  }
  if (flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0) {
    rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
    fail(err, errlen, "data_dir %s is in use by another process", s->dir);
    goto bad;
  }
  /* Background checkpoints an earlier process did not finish. */
  DIR *dd = opendir(s->dir);
  for (struct dirent *de; dd != NULL && (de = readdir(dd)) != NULL;) {
    size_t nl = strlen(de->d_name);
    if (!strncmp(de->d_name, "checkpoint.", 11) && nl > 15 &&
        !strcmp(de->d_name + nl - 4, ".tmp")) {
      path(s, file, sizeof(file), de->d_name);
      unlink(file);
    }
  }
  if (dd != NULL) closedir(dd);
  uint64_t inc;
  if ((rc = read_incarnation(s, &inc)) < 0) {
    fail(err, errlen, "%s/incarnation: %s", s->dir, strerror(-rc));
    goto bad;
  }
  s->incarnation = inc;

  /* The service state: checkpoint, then the log's deliveries. */
  uint64_t pos = 0, hash = 0;
  int state_ok = 1;
  char why[200];
  rc = load_checkpoint(s, &pos, &hash, why, sizeof(why));
  if (rc == 0) {
    s->checkpoint_pos = pos;
  } else if (rc != -ENOENT) {
    slog(s, SMR_LOG_ERROR,
         "%s/checkpoint.smr: %s: refused; rejoining the group for the state",
         s->dir, why);
    set_aside(s, "checkpoint.smr");
    rec->corrupt = 1;
    pos = hash = 0;
  }
  if ((rc = load_log(s, rec, &pos, &hash, &state_ok, err, errlen)) < 0)
    goto bad;

  /* The new process's incarnation, durable before anything uses it.  It
   * must exceed every earlier process's, even one whose disk was lost:
   * so it is at least the wall clock in milliseconds. */
  rec->first_boot = inc == 0 && s->incarnation == 0 && !s->has_view &&
                    s->checkpoint_pos == 0 && s->log_size == 0 &&
                    !rec->corrupt;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  uint64_t wall = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
  s->incarnation = s->incarnation + 1 > wall ? s->incarnation + 1 : wall;
  char num[32];
  int k = snprintf(num, sizeof(num), "%" PRIu64 "\n", s->incarnation);
  if ((rc = write_file_atomic(s, "incarnation", (const uint8_t *)num,
                              (size_t)k, 1)) < 0) {
    fail(err, errlen, "%s/incarnation: %s", s->dir, strerror(-rc));
    goto bad;
  }
  rec->incarnation = s->incarnation;

  path(s, file, sizeof(file), "log.smr");
  s->log_fd = open(file, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (s->log_fd < 0) {
    rc = -errno;
    fail(err, errlen, "%s: %s", file, strerror(errno));
    goto bad;
  }
  if (rec->corrupt) s->log_size = 0;

  if (!state_ok) pos = hash = 0;
  rec->pos = pos;
  rec->hash = hash;
  if (s->has_view && !rec->corrupt) {
    rec->has_view = 1;
    struct smr_core_persisted *p = &rec->p;
    p->view = s->view;
    p->pos = pos;
    p->hash = hash;
    if (s->has_acc && s->acc_epoch == s->view.epoch) {
      p->promised = s->promised;
      p->accepted_ballot = s->acc_ballot;
      p->has_accepted = s->acc_has_value;
      if (s->acc_has_value) p->accepted = s->acc;
    }
    p->entries = s->ents;
    p->n_entries = s->n_ents;
  }
  *out = s;
  return 0;
bad:
  smr_store_close(s);
  return rc < 0 ? rc : -EINVAL;
}

void smr_store_close(struct smr_store *s) {
  if (s == NULL) return;
  if (s->log_fd >= 0) {
    smr_store_sync(s);
    close(s->log_fd);
  }
  if (s->lock_fd >= 0) close(s->lock_fd); /* releases the flock */
  drop_entries(s);
  free(s->ents);
  free(s->ent_data);
  free(s->ent_off);
  free(s->dix);
  free(s->w.p);
  free(s->rbuf);
  free(s);
}

/* ------------------------------------------------------------------------
 * Records
 * --------------------------------------------------------------------- */

int smr_store_view(struct smr_store *s, const struct smr_wire_view *v) {
  struct smr_wire_msg m;
  memset(&m, 0, sizeof(m));
  m.u.viewinfo.view = *v;
  int rc = append(s, SMR_MSG_VIEWINFO, v->epoch, &m, NULL);
  if (rc < 0) return rc;
  if (!s->has_view || v->epoch > s->view.epoch) {
    drop_entries(s);
    s->has_acc = 0;
  }
  s->has_view = 1;
  s->view = *v;
  return 0;
}

int smr_store_acceptor(struct smr_store *s, uint64_t epoch, uint64_t promised,
                       uint64_t accepted_ballot, int has_accepted,
                       const struct smr_wire_proposal *accepted) {
  struct smr_wire_msg m;
  memset(&m, 0, sizeof(m));
  m.u.promise.ballot = promised;
  m.u.promise.accepted_ballot = accepted_ballot;
  m.u.promise.has_value = has_accepted ? 1 : 0;
  if (has_accepted) m.u.promise.value = *accepted;
  int rc = append(s, SMR_MSG_PROMISE, epoch, &m, NULL);
  if (rc < 0) return rc;
  s->has_acc = 1;
  s->acc_epoch = epoch;
  s->promised = promised;
  s->acc_ballot = accepted_ballot;
  s->acc_has_value = has_accepted;
  if (has_accepted) s->acc = *accepted;
  return 0;
}

int smr_store_entry(struct smr_store *s, uint64_t epoch,
                    const struct smr_persisted_entry *e) {
  struct smr_wire_entry we = {e->sender, e->sender_seq, e->len, e->data};
  struct smr_wire_msg m;
  memset(&m, 0, sizeof(m));
  m.u.order.first_seq = e->seq;
  m.u.order.entries = &we;
  m.u.order.count = 1;
  uint64_t off;
  int rc = append(s, SMR_MSG_ORDER, epoch, &m, &off);
  if (rc < 0) return rc;
  return index_entry(s, e->seq, off);
}

int smr_store_delivered(struct smr_store *s, uint64_t pos, uint64_t hash,
                        const uint8_t *data, size_t len) {
  struct smr_wire_msg m;
  memset(&m, 0, sizeof(m));
  m.u.xfer.boundary = hash; /* in the log: the chain hash after it */
  m.u.xfer.kind = SMR_XFER_LOG;
  m.u.xfer.offset = pos;
  m.u.xfer.len = (uint32_t)len;
  m.u.xfer.data = data;
  uint64_t off;
  int rc = append(s, SMR_MSG_XFER, 0, &m, &off);
  if (rc < 0) return rc;
  return index_delivered(s, pos, off, hash);
}

int smr_store_restored(struct smr_store *s, uint64_t pos, uint64_t hash) {
  uint8_t h[8];
  for (int i = 0; i < 8; i++) h[i] = (uint8_t)(hash >> (8 * i));
  struct smr_wire_msg m;
  memset(&m, 0, sizeof(m));
  m.u.xfer.boundary = pos;
  m.u.xfer.kind = SMR_XFER_END;
  m.u.xfer.offset = pos;
  m.u.xfer.len = 8;
  m.u.xfer.data = h;
  s->n_dix = s->dix_head = 0; /* the history before it is not ours */
  return append(s, SMR_MSG_XFER, 0, &m, NULL);
}

int smr_store_discard(struct smr_store *s) {
  char file[4200];
  s->w.len = 0;
  path(s, file, sizeof(file), "checkpoint.smr");
  if (unlink(file) < 0 && errno != ENOENT) return -errno;
  if (ftruncate(s->log_fd, 0) < 0) return -errno;
  if (fsync(s->log_fd) < 0) return -errno;
  int rc = fsync_dir(s->dir);
  if (rc < 0) return rc;
  s->log_size = 0;
  s->dirty = 0;
  s->n_dix = s->dix_head = 0;
  s->n_ent_off = 0;
  s->has_view = s->has_acc = 0;
  s->checkpoint_pos = 0;
  return 0;
}

int smr_store_sync(struct smr_store *s) {
  if (s->w.len > 0) {
    int rc = write_all(s->log_fd, s->w.p, s->w.len);
    if (rc < 0) return rc;
    s->log_size += s->w.len;
    s->w.len = 0;
    s->dirty = 1;
  }
  if (s->dirty && s->cfg.durable) {
    if (fdatasync(s->log_fd) < 0) return -errno;
    s->fsyncs++;
  }
  s->dirty = 0;
  return 0;
}

/* The frame of the log at off (in the file, or still in the buffer), into
 * s->rbuf; returns its length or a negative errno. */
static long frame_at(struct smr_store *s, uint64_t off) {
  if (off >= s->log_size) {
    size_t b = (size_t)(off - s->log_size);
    if (b >= s->w.len) return -ENOENT;
    long fl = smr_wire_frame_len(s->w.p + b, s->w.len - b);
    if (fl <= 0 || (size_t)fl > s->w.len - b) return -EIO;
    if ((size_t)fl > s->rcap) {
      uint8_t *nb = realloc(s->rbuf, (size_t)fl);
      if (nb == NULL) return -ENOMEM;
      s->rbuf = nb;
      s->rcap = (size_t)fl;
    }
    memcpy(s->rbuf, s->w.p + b, (size_t)fl);
    return fl;
  }
  uint8_t head[SMR_WIRE_HDR_FIXED];
  ssize_t r = pread(s->log_fd, head, sizeof(head), (off_t)off);
  if (r != (ssize_t)sizeof(head)) return -EIO;
  long fl = smr_wire_frame_len(head, sizeof(head));
  if (fl <= 0) return -EIO;
  if ((size_t)fl > s->rcap) {
    uint8_t *nb = realloc(s->rbuf, (size_t)fl);
    if (nb == NULL) return -ENOMEM;
    s->rbuf = nb;
    s->rcap = (size_t)fl;
  }
  r = pread(s->log_fd, s->rbuf, (size_t)fl, (off_t)off);
  return r == fl ? fl : -EIO;
}

int smr_store_log_read(struct smr_store *s, uint64_t pos,
                       struct smr_log_entry *e) {
  if (s->n_dix == s->dix_head) return -ENOENT;
  uint64_t first = s->dix[s->dix_head].pos;
  if (pos < first || pos > s->dix[s->n_dix - 1].pos) return -ENOENT;
  const struct delivered_ix *ix = &s->dix[s->dix_head + (pos - first)];
  if (!ALWAYS(ix->pos == pos)) return -EIO;
  long fl = frame_at(s, ix->off);
  if (fl < 0) return (int)fl;
  struct smr_wire_hdr h;
  struct smr_wire_msg m;
  int rc = smr_wire_decode(s->rbuf, (size_t)fl, &h, &m);
  if (rc < 0) return rc;
  if (h.type != SMR_MSG_XFER || m.u.xfer.kind != SMR_XFER_LOG ||
      m.u.xfer.offset != pos)
    return -EIO;
  e->pos = pos;
  e->data = m.u.xfer.data;
  e->len = m.u.xfer.len;
  e->hash = ix->hash;
  return 0;
}

/* ------------------------------------------------------------------------
 * Checkpoints and compaction
 * --------------------------------------------------------------------- */

static void writeback(int fd, uint64_t *synced, uint64_t written);

/* The service image at (pos, hash), as checkpoint frames, into o; with
 * fd >= 0, o is written out to fd whenever it holds a few MB (a child
 * writing a large image does not hold a second copy of it). */
static int image(struct smr_store *s, uint64_t pos, uint64_t hash,
                 struct obuf *o, int fd) {
  const struct smr_service_ops *svc = s->cfg.svc;
  void *snap = NULL;
  int rc = svc->snapshot_open(s->cfg.svc_ctx, &snap);
  if (rc < 0) return rc;
  uint8_t *chunk = malloc(CKPT_CHUNK);
  if (chunk == NULL) {
    svc->snapshot_close(s->cfg.svc_ctx, snap);
    return -ENOMEM;
  }
  uint64_t off = 0, wrote = 0, synced = 0;
  struct smr_wire_msg m;
  for (;;) {
    long n = svc->snapshot_read(s->cfg.svc_ctx, snap, off, chunk, CKPT_CHUNK);
    if (n < 0) {
      rc = (int)n;
      break;
    }
    if (n == 0) {
      uint8_t h[8];
      for (int i = 0; i < 8; i++) h[i] = (uint8_t)(hash >> (8 * i));
      memset(&m, 0, sizeof(m));
      m.u.xfer.boundary = pos;
      m.u.xfer.kind = SMR_XFER_END;
      m.u.xfer.offset = off;
      m.u.xfer.len = 8;
      m.u.xfer.data = h;
      rc = obuf_frame(s, o, SMR_MSG_XFER, 0, &m);
      break;
    }
    memset(&m, 0, sizeof(m));
    m.u.xfer.boundary = pos;
    m.u.xfer.kind = SMR_XFER_SNAP;
    m.u.xfer.offset = off;
    m.u.xfer.len = (uint32_t)n;
    m.u.xfer.data = chunk;
    if ((rc = obuf_frame(s, o, SMR_MSG_XFER, 0, &m)) < 0) break;
    off += (uint64_t)n;
    if (fd >= 0 && o->len >= (4u << 20)) {
      if ((rc = write_all(fd, o->p, o->len)) < 0) break;
      wrote += o->len;
      o->len = 0;
      writeback(fd, &synced, wrote);
    }
  }
  if (rc == 0 && fd >= 0 && o->len > 0 &&
      (rc = write_all(fd, o->p, o->len)) == 0)
    o->len = 0;
  free(chunk);
  svc->snapshot_close(s->cfg.svc_ctx, snap);
  return rc;
}

static int compact(struct smr_store *s, uint64_t pos);

/* Writing a checkpoint, its pages are sent to the disk as they are
 * written, WRITEBACK_BYTES at a time, and waited for (it is synced at
 * its end anyway).  Left to the kernel, a GB of them would still be
 * dirty when the member next syncs its log -- and on ext4 (data=ordered)
 * that commit flushes them first: the member's loop stalled for seconds,
 * long enough for the others to suspect it.  (Redis syncs its RDB and AOF
 * rewrites incrementally for the same reason.) */
#define WRITEBACK_BYTES (8u << 20)

static void writeback(int fd, uint64_t *synced, uint64_t written) {
  if (written - *synced < WRITEBACK_BYTES) return;
  (void)sync_file_range(fd, (off_t)*synced, (off_t)(written - *synced),
                        SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                            SYNC_FILE_RANGE_WAIT_AFTER);
  *synced = written;
}

int smr_store_checkpoint(struct smr_store *s, uint64_t pos, uint64_t hash) {
  if (s->cfg.svc == NULL) return -EINVAL;
  int rc = smr_store_sync(s);
  if (rc < 0) return rc;
  /* Streamed to the file (a large state is not held twice). */
  char tmp[4300], file[4200];
  path(s, file, sizeof(file), "checkpoint.smr");
  snprintf(tmp, sizeof(tmp), "%s.tmp", file);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return -errno;
  struct obuf ck = {0};
  rc = image(s, pos, hash, &ck, fd);
  free(ck.p);
  if (rc == 0 && fsync(fd) < 0) rc = -errno;
  close(fd);
  int old = rc == 0 ? hold(s, "checkpoint.smr") : -1;
  if (rc == 0 && rename(tmp, file) < 0) rc = -errno;
  close_later(old);
  if (rc < 0) {
    unlink(tmp);
    return rc;
  }
  if ((rc = fsync_dir(s->dir)) < 0) return rc;
  return compact(s, pos);
}

/* In the background.  The child is a copy-on-write image of this process
 * at the checkpoint's position: it writes checkpoint.<pos>.tmp and syncs
 * it, digests the service state if asked, reports on the pipe and exits
 * without running anything of the parent's (no atexit handlers, no
 * buffered stdio, no loop).  The parent renames the file and compacts the
 * log (smr_store_checkpoint_finish): only it ever changes the directory's
 * durable state, and in order of position. */
/* First thing in a child that writes a checkpoint or a snapshot: it dies
 * with its parent, takes the default action on SIGTERM/SIGINT (the
 * parent's libev handlers would swallow them), and keeps only the
 * descriptors it writes to.  Inherited ones would keep the parent's
 * listening ports, its data directory lock and the TCP-R keeper's end of
 * their socket pair (whose closing tells the keeper to fence) alive after
 * a crash of the parent. */
/* Closes descriptors lo..hi: close_range(2), or one by one where it is
 * missing (a kernel before 5.9, a seccomp filter). */
static void close_fds(unsigned lo, unsigned hi) {
  if (close_range(lo, hi, 0) == 0) return;
  long max = sysconf(_SC_OPEN_MAX);
  if (max < 0 || max > 1 << 20) max = 1 << 20;
  for (unsigned fd = lo; fd <= hi && fd < (unsigned)max; fd++) close((int)fd);
}

void smr_store_child_init(pid_t parent, int keep1, int keep2) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(1); /* the parent is already gone */
  signal(SIGTERM, SIG_DFL);
  signal(SIGINT, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  int hi = keep1 > keep2 ? keep1 : keep2, lo = keep1 < keep2 ? keep1 : keep2;
  if (lo > 3) close_fds(3, (unsigned)lo - 1);
  if (hi > lo + 1) close_fds((unsigned)lo + 1, (unsigned)hi - 1);
  close_fds((unsigned)hi + 1, ~0u);
}

static void ck_tmp_path(const struct smr_store *s, uint64_t pos, char *out,
                        size_t n) {
  snprintf(out, n, "%s/checkpoint.%" PRIu64 ".tmp", s->dir, pos);
}

int smr_store_checkpoint_fork(struct smr_store *s, uint64_t pos,
                              uint64_t hash, int digest,
                              struct smr_store_ckjob *job) {
  if (s->cfg.svc == NULL) return -EINVAL;
  int rc = smr_store_sync(s);
  if (rc < 0) return rc;
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0) return -errno;
  fflush(NULL); /* nothing buffered is written twice */
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    rc = -errno;
    close(p[0]);
    close(p[1]);
    return rc;
  }
  if (pid == 0) {
    smr_store_child_init(parent, p[1], p[1]);
    uint8_t msg[4 + SMR_DIGEST_LEN];
    memset(msg, 0, sizeof(msg));
    char tmp[4300];
    ck_tmp_path(s, pos, tmp, sizeof(tmp));
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    rc = fd < 0 ? -errno : 0;
    if (rc == 0) {
      struct obuf o = {0};
      rc = image(s, pos, hash, &o, fd);
      if (rc == 0 && fsync(fd) < 0) rc = -errno;
      close(fd);
      free(o.p);
    }
    if (rc == 0 && digest) s->cfg.svc->digest(s->cfg.svc_ctx, msg + 4);
    uint32_t e = (uint32_t)-rc;
    for (int i = 0; i < 4; i++) msg[i] = (uint8_t)(e >> (8 * i));
    (void)!write(p[1], msg, sizeof(msg));
    _exit(0);
  }
  close(p[1]);
  job->pid = pid;
  job->fd = p[0];
  job->pos = pos;
  return 0;
}

int smr_store_checkpoint_finish(struct smr_store *s,
                                struct smr_store_ckjob *job,
                                uint8_t digest[SMR_DIGEST_LEN]) {
  uint8_t msg[4 + SMR_DIGEST_LEN];
  size_t got = 0;
  while (got < sizeof(msg)) {
    ssize_t n = read(job->fd, msg + got, sizeof(msg) - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += (size_t)n;
  }
  close(job->fd);
  job->fd = -1;
  int status = 0;
  while (waitpid(job->pid, &status, 0) < 0 && errno == EINTR) {
  }
  char tmp[4300], file[4200];
  ck_tmp_path(s, job->pos, tmp, sizeof(tmp));
  int rc;
  if (got < sizeof(msg)) {
    rc = -ECHILD; /* it died before it could say */
  } else {
    uint32_t e = 0;
    for (int i = 0; i < 4; i++) e |= (uint32_t)msg[i] << (8 * i);
    rc = -(int)e;
    if (rc == 0) memcpy(digest, msg + 4, SMR_DIGEST_LEN);
  }
  if (rc == 0 && job->pos <= s->checkpoint_pos) rc = -ESTALE;
  if (rc < 0) {
    unlink(tmp);
    return rc;
  }
  path(s, file, sizeof(file), "checkpoint.smr");
  int old = hold(s, "checkpoint.smr"); /* the one it replaces */
  if (rename(tmp, file) < 0) {
    rc = -errno;
    if (old >= 0) close(old);
    unlink(tmp);
    return rc;
  }
  close_later(old);
  if ((rc = fsync_dir(s->dir)) < 0) return rc;
  return compact(s, job->pos);
}

void smr_store_checkpoint_abort(struct smr_store *s,
                                struct smr_store_ckjob *job) {
  kill(job->pid, SIGKILL);
  close(job->fd);
  job->fd = -1;
  while (waitpid(job->pid, NULL, 0) < 0 && errno == EINTR) {
  }
  char tmp[4300];
  ck_tmp_path(s, job->pos, tmp, sizeof(tmp));
  unlink(tmp);
}

/* The log after a checkpoint at pos: view, acceptor state and entries of
 * the current epoch, and the retained deliveries -- frames copied as they
 * are -- replace it. */
static uint64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int compact(struct smr_store *s, uint64_t pos) {
  int rc = smr_store_sync(s);
  if (rc < 0) return rc;
  trim_index(s, pos); /* what the new checkpoint covers may go now */
  struct obuf lg = {0};
  struct smr_wire_msg m;
  if (s->has_view) {
    memset(&m, 0, sizeof(m));
    m.u.viewinfo.view = s->view;
    if ((rc = obuf_frame(s, &lg, SMR_MSG_VIEWINFO, s->view.epoch, &m)) < 0)
      goto out;
  }
  if (s->has_acc && s->has_view && s->acc_epoch == s->view.epoch) {
    memset(&m, 0, sizeof(m));
    m.u.promise.ballot = s->promised;
    m.u.promise.accepted_ballot = s->acc_ballot;
    m.u.promise.has_value = s->acc_has_value ? 1 : 0;
    if (s->acc_has_value) m.u.promise.value = s->acc;
    if ((rc = obuf_frame(s, &lg, SMR_MSG_PROMISE, s->acc_epoch, &m)) < 0)
      goto out;
  }
  /* Entries of the epoch that the checkpoint covers are not needed any
   * more (a restart restores the checkpoint and delivers past it). */
  uint64_t covered = s->has_view && pos >= s->view.start_pos
                         ? pos - s->view.start_pos
                         : 0;
  uint32_t kept = 0;
  for (uint32_t i = 0; i < s->n_ent_off; i++) {
    if (s->ent_off[i].seq <= covered) continue;
    long fl = frame_at(s, s->ent_off[i].off);
    if (fl < 0) {
      rc = (int)fl;
      goto out;
    }
    s->ent_off[kept].seq = s->ent_off[i].seq;
    s->ent_off[kept++].off = lg.len;
    if ((rc = obuf_put(&lg, s->rbuf, (size_t)fl)) < 0) goto out;
  }
  s->n_ent_off = kept;
  for (size_t i = s->dix_head; i < s->n_dix; i++) {
    long fl = frame_at(s, s->dix[i].off);
    if (fl < 0) {
      rc = (int)fl;
      goto out;
    }
    s->dix[i].off = lg.len;
    if ((rc = obuf_put(&lg, s->rbuf, (size_t)fl)) < 0) goto out;
  }
  uint64_t t0 = mono_ms();
  if ((rc = write_file_atomic(s, "log.smr", lg.p, lg.len, 1)) < 0) goto out;
  slog(s, SMR_LOG_INFO, "log compacted to %zu bytes at checkpoint %" PRIu64
       " (written and synced in %" PRIu64 " ms)", lg.len, pos, mono_ms() - t0);
  char file[4200];
  path(s, file, sizeof(file), "log.smr");
  close_later(s->log_fd); /* the old log: freeing it may take seconds */
  s->log_fd = open(file, O_RDWR | O_APPEND | O_CLOEXEC);
  if (s->log_fd < 0) {
    rc = -errno;
    goto out;
  }
  s->log_size = lg.len;
  s->checkpoint_pos = pos;
  rc = 0;
out:
  free(lg.p);
  return rc;
}

void smr_store_stats(const struct smr_store *s, struct smr_store_stats *st) {
  st->log_bytes = s->log_size + s->w.len;
  st->fsyncs = s->fsyncs;
  st->checkpoint_pos = s->checkpoint_pos;
  st->records = s->records;
  char file[4200];
  struct stat sb;
  path(s, file, sizeof(file), "checkpoint.smr");
  st->checkpoint_bytes = stat(file, &sb) == 0 ? (uint64_t)sb.st_size : 0;
}
