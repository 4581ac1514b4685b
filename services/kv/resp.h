/* resp.h -- RESP2, the Redis protocol: an incremental request parser and a
 * reply encoder.
 *
 * The parser takes a client's byte stream in chunks of any size (a request
 * may be split anywhere, many pipelined requests may share one chunk) and
 * hands out one complete request at a time, as an argument vector.  It
 * accepts both forms Redis accepts:
 *
 *   multibulk  *<argc>\r\n then argc times $<len>\r\n<len bytes>\r\n
 *              (what every client library sends)
 *   inline     one line of space separated words ending in \n, with
 *              "double" (C escapes, \xHH) and 'single' quotes (what
 *              telnet and redis-cli in pipe mode send)
 *
 * It follows Redis 7.0's reading of the stream, quirks included, so that a
 * client sees the same replies: a multibulk count of zero or less is an
 * empty request that gets no reply, as is an empty inline line; the two
 * bytes after a bulk's data and the byte after a header's \r are skipped
 * unread; an inline line holding a NUL byte never ends (Redis looks for its
 * newline with strchr) and fails once it passes the inline limit.
 *
 * Limits keep memory bounded; exceeding one is a protocol error:
 *   max_args     arguments of one multibulk request (default 1M; Redis
 *                allows INT_MAX)
 *   max_bulk     bytes of one argument (default 512 MB, Redis's
 *                proto-max-bulk-len)
 *   max_request  argument bytes of one request (default 1 GB, Redis's
 *                client-query-buffer-limit, which Redis enforces by closing
 *                the connection silently; we say why)
 *   inline lines and header lines are limited to RESP_INLINE_MAX bytes.
 * Redis applies the 64 KB limit to what is buffered when a read ends
 * without a newline, so whether a 70 KB inline line passes depends on how
 * the kernel cut the stream; we apply it to the line itself, so the
 * outcome depends only on the bytes.
 *
 * A protocol error gives the exact Redis error reply (for example
 * "-ERR Protocol error: invalid multibulk length\r\n"); like Redis, the
 * caller writes it after the replies of the requests before it and then
 * closes the connection.  The parser stays in the error state.
 *
 * Memory: the arguments of the current request live in one arena owned by
 * the parser (each argument NUL terminated, which the commands' number
 * parsing relies on), grown by doubling as bytes actually arrive, so a
 * client announcing a 512 MB bulk costs nothing until it sends it.  A
 * request's argv stays valid until the next resp_parse() call.
 *
 * The encoder appends replies to a struct smr_buf; each function returns 0
 * or -ENOMEM.  resp_reply_len() checks that bytes are one well-formed reply
 * (tests, fuzzing and clients use it). */
#ifndef SMR_KV_RESP_H
#define SMR_KV_RESP_H

#include <stddef.h>
#include <stdint.h>

#include "smr/service.h"

#define RESP_INLINE_MAX (64u * 1024) /* Redis's PROTO_INLINE_MAX_SIZE */
#define RESP_MAX_ARGS_DEFAULT (1024u * 1024)
#define RESP_MAX_BULK_DEFAULT ((size_t)512 * 1024 * 1024)
#define RESP_MAX_REQUEST_DEFAULT ((size_t)1024 * 1024 * 1024)
#define RESP_ERR_MAX 128 /* room for the longest protocol error reply */

struct resp_limits {
  size_t max_args;    /* >= 1 */
  size_t max_bulk;    /* <= UINT32_MAX - 1 (the group request format) */
  size_t max_request; /* >= max_bulk is sensible */
};

/* A complete request.  argv[i] points to argl[i] bytes followed by a NUL;
 * both arrays and the bytes belong to the parser and stay valid until the
 * next resp_parse() or resp_parser_free() call. */
struct resp_request {
  size_t argc;                /* >= 1 */
  const uint8_t *const *argv;
  const size_t *argl;
  int is_inline;              /* arrived as an inline command */
  uint64_t start, end;        /* stream offsets of its first and past its
                                 last byte (end is where the next begins) */
};

struct resp_parser {
  struct resp_limits lim;
  int state;
  /* The header line being read ("*N" or "$N" without the marker for the
   * count, with it for a bulk header): its first bytes and its length. */
  uint8_t hdr[32];
  size_t hdr_len;
  size_t stuck_len;  /* bytes of a request that can never end (NUL) */
  int stuck_what;    /* which limit error it will end in */
  int64_t mb_count;  /* arguments announced */
  size_t mb_seen;    /* arguments complete */
  size_t bulk_len, bulk_got, skip;
  /* Arena: argument bytes, each followed by a NUL. */
  uint8_t *buf;
  size_t buf_len, buf_cap;
  /* Argument table. */
  size_t *arg_off, *arg_len;
  const uint8_t **argv;
  size_t args_cap;
  uint64_t offset;    /* stream bytes consumed */
  uint64_t req_start; /* offset of the current request's first byte */
  char err[RESP_ERR_MAX]; /* the error reply, once in the error state */
  size_t err_len;
  int err_code;           /* -EPROTO or -ENOMEM */
};

/* lim NULL: the defaults above. */
void resp_parser_init(struct resp_parser *p, const struct resp_limits *lim);
void resp_parser_free(struct resp_parser *p);

/* Consumes bytes of data[0..len) and returns:
 *   1        a request is complete: *req describes it, *used is the number
 *            of bytes consumed (up to the request's end; call again with
 *            the rest)
 *   0        every byte was consumed (*used == len) and the request so far
 *            is incomplete
 *   -EPROTO  a protocol error: resp_parser_error() gives the reply to send
 *            before closing; *used counts the bytes read up to the error.
 *            Every later call returns -EPROTO again and consumes nothing.
 *   -ENOMEM  out of memory (the parser is left in the error state with an
 *            error reply saying so).
 * Empty requests (see above) are consumed silently. */
int resp_parse(struct resp_parser *p, const uint8_t *data, size_t len,
               size_t *used, struct resp_request *req);

/* The error reply ("-ERR Protocol error: ...\r\n") once resp_parse() has
 * failed, else NULL.  *len gets its length. */
const char *resp_parser_error(const struct resp_parser *p, size_t *len);

/* Stream bytes consumed so far (complete requests, skipped empty ones, and
 * the part of the current request already read). */
uint64_t resp_parser_offset(const struct resp_parser *p);

/* ------------------------------------------------------------------------
 * Reply encoder.  Each returns 0 or -ENOMEM. */

int resp_add_simple(struct smr_buf *b, const char *s);      /* +s\r\n */
/* -s\r\n; CR and LF in s become spaces, as Redis does. */
int resp_add_error(struct smr_buf *b, const char *s);
int resp_add_error_len(struct smr_buf *b, const char *s, size_t n);
int resp_add_int(struct smr_buf *b, int64_t v);             /* :v\r\n */
int resp_add_bulk(struct smr_buf *b, const void *s, size_t n);
int resp_add_bulk_str(struct smr_buf *b, const char *s);
int resp_add_null(struct smr_buf *b);                       /* $-1\r\n */
int resp_add_array(struct smr_buf *b, uint64_t n);          /* *n\r\n */
int resp_add_null_array(struct smr_buf *b);                 /* *-1\r\n */
/* A double as a bulk string the way Redis 7.0 prints scores: "%.17g",
 * "inf" and "-inf". */
int resp_add_double(struct smr_buf *b, double d);

/* Formats a double as resp_add_double() does, into buf (>= 32 bytes);
 * returns the length. */
size_t resp_format_double(char *buf, double d);

/* If p[0..n) starts with one complete, well-formed RESP2 reply, returns
 * its length; 0 if it is a valid but incomplete prefix; -1 if it is
 * malformed.  Nesting deeper than 64 arrays counts as malformed. */
long resp_reply_len(const uint8_t *p, size_t n);

/* Strict decimal parsing of a signed 64-bit integer, as Redis's string2ll:
 * no sign other than a leading '-', no spaces, no leading zeros, no "-0",
 * at most 20 characters.  Returns 1 and sets *v, or 0. */
int resp_str2ll(const uint8_t *s, size_t n, int64_t *v);

#endif
