/* resp.c -- RESP2 request parser and reply encoder (see resp.h).
 *
 * The parser is a byte-stream state machine.  It never looks back at bytes
 * of earlier chunks: header lines keep only their first bytes (enough to
 * parse any valid number) and their length; inline lines and bulk data are
 * copied into the request arena as they arrive.  Scanning uses memchr, so
 * the cost is a few passes over each byte and one copy of argument data.
 *
 * States of one request:
 *
 *   START --'*'--> MB_COUNT --\r--> MB_LF --> BULK_HDR --\r--> BULK_LF
 *     |                                          ^                |
 *     |                                          |                v
 *     |                                      BULK_CRLF <------ BULK_DATA
 *     +--other--> INLINE --\n--> (split into words)
 *
 *   NUL in a header or inline line: STUCK (see resp.h) until the limit.
 *   Any error: ERROR, for good. */
#include "resp.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assert.h"

enum {
  ST_START,
  ST_INLINE,
  ST_MB_COUNT,
  ST_MB_LF,
  ST_BULK_HDR,
  ST_BULK_LF,
  ST_BULK_DATA,
  ST_BULK_CRLF,
  ST_STUCK,
  ST_ERROR
};

/* What a stuck request fails with. */
enum { STUCK_INLINE, STUCK_MBULK, STUCK_BULK };

/* Arena capacity kept between requests; a larger one is released. */
#define ARENA_KEEP (256u * 1024)
#define ARGS_KEEP 4096u

/* ------------------------------------------------------------------------
 * Numbers */

int resp_str2ll(const uint8_t *s, size_t n, int64_t *v) {
  size_t i = 0;
  int neg = 0;
  uint64_t acc;
  if (n == 0 || n > 20) return 0;
  if (n == 1 && s[0] == '0') {
    *v = 0;
    return 1;
  }
  if (s[0] == '-') {
    neg = 1;
    i = 1;
    if (i == n) return 0;
  }
  if (s[i] < '1' || s[i] > '9') return 0;
  acc = (uint64_t)(s[i++] - '0');
  for (; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return 0;
    if (acc > UINT64_MAX / 10) return 0;
    acc *= 10;
    if (acc > UINT64_MAX - (uint64_t)(s[i] - '0')) return 0;
    acc += (uint64_t)(s[i] - '0');
  }
  if (neg) {
    if (acc > (uint64_t)INT64_MAX + 1) return 0;
    *v = acc == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)acc;
  } else {
    if (acc > (uint64_t)INT64_MAX) return 0;
    *v = (int64_t)acc;
  }
  return 1;
}

/* ------------------------------------------------------------------------
 * Parser: setup and errors */

void resp_parser_init(struct resp_parser *p, const struct resp_limits *lim) {
  memset(p, 0, sizeof *p);
  if (lim) {
    p->lim = *lim;
  } else {
    p->lim.max_args = RESP_MAX_ARGS_DEFAULT;
    p->lim.max_bulk = RESP_MAX_BULK_DEFAULT;
    p->lim.max_request = RESP_MAX_REQUEST_DEFAULT;
  }
  smr_assert(p->lim.max_args >= 1);
  smr_assert(p->lim.max_bulk < UINT32_MAX);
  p->state = ST_START;
}

void resp_parser_free(struct resp_parser *p) {
  free(p->buf);
  free(p->arg_off);
  free(p->arg_len);
  free(p->argv);
  memset(p, 0, sizeof *p);
  p->state = ST_ERROR;
}

/* Enters the error state with the reply "-ERR Protocol error: <what>". */
static int proto_error(struct resp_parser *p, const char *what) {
  int n = snprintf(p->err, sizeof p->err, "-ERR Protocol error: %s\r\n", what);
  smr_assert(n > 0 && (size_t)n < sizeof p->err);
  p->err_len = (size_t)n;
  p->err_code = -EPROTO;
  p->state = ST_ERROR;
  return -EPROTO;
}

static int oom_error(struct resp_parser *p) {
  static const char m[] = "-ERR out of memory reading the request\r\n";
  memcpy(p->err, m, sizeof m);
  p->err_len = sizeof m - 1;
  p->err_code = -ENOMEM;
  p->state = ST_ERROR;
  return -ENOMEM;
}

const char *resp_parser_error(const struct resp_parser *p, size_t *len) {
  if (p->state != ST_ERROR || p->err_len == 0) return NULL;
  if (len) *len = p->err_len;
  return p->err;
}

uint64_t resp_parser_offset(const struct resp_parser *p) { return p->offset; }

/* ------------------------------------------------------------------------
 * Parser: the arena and the argument table */

/* Room for need bytes in the arena in all. */
static int arena_reserve(struct resp_parser *p, size_t need) {
  size_t cap;
  uint8_t *nb;
  if (need <= p->buf_cap) return 0;
  cap = p->buf_cap ? p->buf_cap : 256;
  while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  nb = realloc(p->buf, cap);
  if (!nb) return -ENOMEM;
  p->buf = nb;
  p->buf_cap = cap;
  return 0;
}

/* Room for one more argument. */
static int args_reserve(struct resp_parser *p, size_t n) {
  size_t cap;
  if (n <= p->args_cap) return 0;
  cap = p->args_cap ? p->args_cap * 2 : 16;
  while (cap < n) cap *= 2;
  size_t *off = realloc(p->arg_off, cap * sizeof *off);
  if (!off) return -ENOMEM;
  p->arg_off = off;
  size_t *len = realloc(p->arg_len, cap * sizeof *len);
  if (!len) return -ENOMEM;
  p->arg_len = len;
  const uint8_t **argv = realloc((void *)p->argv, cap * sizeof *argv);
  if (!argv) return -ENOMEM;
  p->argv = argv;
  p->args_cap = cap;
  return 0;
}

/* Forgets the previous request; releases a large arena. */
static void request_reset(struct resp_parser *p) {
  p->buf_len = 0;
  p->mb_seen = 0;
  p->mb_count = 0;
  if (p->buf_cap > ARENA_KEEP) {
    free(p->buf);
    p->buf = NULL;
    p->buf_cap = 0;
  }
  if (p->args_cap > ARGS_KEEP) {
    free(p->arg_off);
    free(p->arg_len);
    free((void *)p->argv);
    p->arg_off = p->arg_len = NULL;
    p->argv = NULL;
    p->args_cap = 0;
  }
}

/* Fills *req from the argument table (n arguments). */
static void request_emit(struct resp_parser *p, size_t n, int is_inline,
                         uint64_t end, struct resp_request *req) {
  for (size_t i = 0; i < n; i++) p->argv[i] = p->buf + p->arg_off[i];
  req->argc = n;
  req->argv = p->argv;
  req->argl = p->arg_len;
  req->is_inline = is_inline;
  req->start = p->req_start;
  req->end = end;
}

/* ------------------------------------------------------------------------
 * Parser: inline commands */

static int is_space(uint8_t c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' ||
         c == '\r';
}

static int hex_val(uint8_t c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Splits the line buf[0..n) into words written after it in the arena (the
 * caller reserved 2n + 2 bytes), the way redis-cli and Redis do: spaces
 * separate words; "..." takes C escapes and \xHH; '...' takes \'; a
 * closing quote must be followed by a space or the end.  Returns the
 * number of words, or -1 for unbalanced quotes (-ENOMEM on no memory). */
static long split_inline(struct resp_parser *p, size_t n) {
  const uint8_t *s = p->buf;
  size_t i = 0, out = n + 1, argc = 0;
  for (;;) {
    while (i < n && is_space(s[i])) i++;
    if (i == n) return (long)argc;
    if (args_reserve(p, argc + 1)) return -ENOMEM;
    size_t start = out;
    int inq = 0, insq = 0, done = 0;
    while (!done) {
      if (inq) {
        if (i == n) return -1;
        if (s[i] == '\\' && i + 3 < n && s[i + 1] == 'x' &&
            hex_val(s[i + 2]) >= 0 && hex_val(s[i + 3]) >= 0) {
          p->buf[out++] = (uint8_t)(hex_val(s[i + 2]) * 16 + hex_val(s[i + 3]));
          i += 4;
          continue;
        } else if (s[i] == '\\' && i + 1 < n) {
          uint8_t c;
          switch (s[i + 1]) {
            case 'n': c = '\n'; break;
            case 'r': c = '\r'; break;
            case 't': c = '\t'; break;
            case 'b': c = '\b'; break;
            case 'a': c = '\a'; break;
            default: c = s[i + 1]; break;
          }
          p->buf[out++] = c;
          i += 2;
          continue;
        } else if (s[i] == '"') {
          if (i + 1 < n && !is_space(s[i + 1])) return -1;
          done = 1;
        } else {
          p->buf[out++] = s[i];
        }
      } else if (insq) {
        if (i == n) return -1;
        if (s[i] == '\\' && i + 1 < n && s[i + 1] == '\'') {
          p->buf[out++] = '\'';
          i += 2;
          continue;
        } else if (s[i] == '\'') {
          if (i + 1 < n && !is_space(s[i + 1])) return -1;
          done = 1;
        } else {
          p->buf[out++] = s[i];
        }
      } else {
        if (i == n) break;
        switch (s[i]) {
          case ' ':
          case '\n':
          case '\r':
          case '\t':
            done = 1;
            break;
          case '"': inq = 1; break;
          case '\'': insq = 1; break;
          default: p->buf[out++] = s[i]; break;
        }
      }
      if (i < n) i++;
    }
    p->buf[out++] = 0;
    p->arg_off[argc] = start;
    p->arg_len[argc] = out - 1 - start;
    argc++;
  }
}

/* ------------------------------------------------------------------------
 * Parser: the state machine */

/* Validates the multibulk count in the header; moves on. */
static int mb_count_done(struct resp_parser *p) {
  int64_t ll;
  if (p->hdr_len > sizeof p->hdr || !resp_str2ll(p->hdr, p->hdr_len, &ll) ||
      ll > INT_MAX || (ll > 0 && (uint64_t)ll > p->lim.max_args))
    return proto_error(p, "invalid multibulk length");
  p->mb_count = ll;
  p->state = ST_MB_LF;
  return 0;
}

/* Validates a bulk header ("$<len>"); moves on. */
static int bulk_hdr_done(struct resp_parser *p) {
  int64_t ll;
  if (p->hdr_len == 0 || p->hdr[0] != '$') {
    char what[32];
    uint8_t c = p->hdr_len ? p->hdr[0] : '\r';
    if (c == '\r' || c == '\n') c = ' ';
    snprintf(what, sizeof what, "expected '$', got '%c'", c);
    return proto_error(p, what);
  }
  if (p->hdr_len > sizeof p->hdr ||
      !resp_str2ll(p->hdr + 1, p->hdr_len - 1, &ll) || ll < 0 ||
      (uint64_t)ll > p->lim.max_bulk)
    return proto_error(p, "invalid bulk length");
  if (p->buf_len + (size_t)ll + 1 > p->lim.max_request)
    return proto_error(p, "request too big");
  if (args_reserve(p, p->mb_seen + 1)) return oom_error(p);
  p->bulk_len = (size_t)ll;
  p->bulk_got = 0;
  p->arg_off[p->mb_seen] = p->buf_len;
  p->state = ST_BULK_LF;
  return 0;
}

static int stuck_error(struct resp_parser *p) {
  return proto_error(p, p->stuck_what == STUCK_INLINE ? "too big inline request"
                        : p->stuck_what == STUCK_MBULK
                            ? "too big mbulk count string"
                            : "too big bulk count string");
}

/* Reads header bytes of data[*i..len) up to the \r.  Returns 1 when the
 * line is complete (\r consumed), 0 when it needs more, <0 on error. */
static int read_header(struct resp_parser *p, const uint8_t *data, size_t len,
                       size_t *i, int stuck_what) {
  const uint8_t *from = data + *i;
  size_t avail = len - *i;
  const uint8_t *cr = memchr(from, '\r', avail);
  size_t n = cr ? (size_t)(cr - from) : avail;
  const uint8_t *nul = memchr(from, 0, n);
  if (nul) {
    /* Redis's strchr stops at the NUL: this header never ends. */
    p->stuck_len = p->hdr_len + (size_t)(nul - from);
    p->stuck_what = stuck_what;
    p->state = ST_STUCK;
    *i += (size_t)(nul - from);
    return p->stuck_len > RESP_INLINE_MAX ? stuck_error(p) : 0;
  }
  if (p->hdr_len < sizeof p->hdr) {
    size_t k = sizeof p->hdr - p->hdr_len;
    memcpy(p->hdr + p->hdr_len, from, k < n ? k : n);
  }
  p->hdr_len += n;
  *i += n;
  if (p->hdr_len > RESP_INLINE_MAX)
    return proto_error(p, stuck_what == STUCK_MBULK
                              ? "too big mbulk count string"
                              : "too big bulk count string");
  if (!cr) return 0;
  *i += 1;
  return 1;
}

int resp_parse(struct resp_parser *p, const uint8_t *data, size_t len,
               size_t *used, struct resp_request *req) {
  size_t i = 0;
  int r = 0;
  *used = 0;
  if (p->state == ST_ERROR) return p->err_code ? p->err_code : -EPROTO;
  while (i < len) {
    switch (p->state) {
      case ST_START:
        request_reset(p);
        p->req_start = p->offset + i;
        p->hdr_len = 0;
        if (data[i] == '*') {
          p->state = ST_MB_COUNT;
          i++;
        } else {
          p->state = ST_INLINE;
        }
        break;

      case ST_INLINE: {
        const uint8_t *from = data + i;
        const uint8_t *nl = memchr(from, '\n', len - i);
        size_t n = nl ? (size_t)(nl - from) : len - i;
        const uint8_t *nul = memchr(from, 0, n);
        if (nul) {
          p->stuck_len = p->buf_len + (size_t)(nul - from);
          p->stuck_what = STUCK_INLINE;
          p->state = ST_STUCK;
          i += (size_t)(nul - from);
          if (p->stuck_len > RESP_INLINE_MAX) {
            r = stuck_error(p);
            goto out;
          }
          break;
        }
        if (p->buf_len + n > RESP_INLINE_MAX) {
          r = proto_error(p, "too big inline request");
          goto out;
        }
        /* Room for the line, its words after it, and their NULs. */
        if (arena_reserve(p, 2 * (p->buf_len + n) + 2)) {
          r = oom_error(p);
          goto out;
        }
        memcpy(p->buf + p->buf_len, from, n);
        p->buf_len += n;
        i += n;
        if (!nl) break;
        i++; /* the \n */
        size_t line = p->buf_len;
        if (line && p->buf[line - 1] == '\r') line--;
        long argc = split_inline(p, line);
        if (argc == -ENOMEM) {
          r = oom_error(p);
          goto out;
        }
        if (argc < 0) {
          r = proto_error(p, "unbalanced quotes in request");
          goto out;
        }
        p->state = ST_START;
        if (argc == 0) break; /* an empty line: no request, no reply */
        request_emit(p, (size_t)argc, 1, p->offset + i, req);
        r = 1;
        goto out;
      }

      case ST_MB_COUNT:
        r = read_header(p, data, len, &i, STUCK_MBULK);
        if (r < 0) goto out;
        if (r == 1 && (r = mb_count_done(p)) < 0) goto out;
        r = 0;
        break;

      case ST_MB_LF:
        i++;
        if (p->mb_count <= 0) {
          p->state = ST_START; /* *0 or *-1: nothing to do */
        } else {
          p->state = ST_BULK_HDR;
          p->hdr_len = 0;
        }
        break;

      case ST_BULK_HDR:
        r = read_header(p, data, len, &i, STUCK_BULK);
        if (r < 0) goto out;
        if (r == 1 && (r = bulk_hdr_done(p)) < 0) goto out;
        r = 0;
        break;

      case ST_BULK_LF:
        i++;
        p->state = ST_BULK_DATA;
        break;

      case ST_BULK_DATA: {
        size_t want = p->bulk_len - p->bulk_got;
        size_t n = len - i < want ? len - i : want;
        if (arena_reserve(p, p->buf_len + n + 1)) {
          r = oom_error(p);
          goto out;
        }
        memcpy(p->buf + p->buf_len, data + i, n);
        p->buf_len += n;
        p->bulk_got += n;
        i += n;
        if (p->bulk_got == p->bulk_len) {
          p->buf[p->buf_len++] = 0;
          p->arg_len[p->mb_seen] = p->bulk_len;
          p->state = ST_BULK_CRLF;
          p->skip = 2;
        }
        break;
      }

      case ST_BULK_CRLF: {
        size_t n = len - i < p->skip ? len - i : p->skip;
        i += n;
        p->skip -= n;
        if (p->skip) break;
        p->mb_seen++;
        p->hdr_len = 0;
        if (p->mb_seen < (uint64_t)p->mb_count) {
          p->state = ST_BULK_HDR;
          break;
        }
        p->state = ST_START;
        request_emit(p, p->mb_seen, 0, p->offset + i, req);
        r = 1;
        goto out;
      }

      case ST_STUCK:
        /* Everything until the limit is swallowed (stuck_len <= limit). */
        smr_assert(p->stuck_len <= RESP_INLINE_MAX);
        if (p->stuck_len + (len - i) > RESP_INLINE_MAX) {
          i += RESP_INLINE_MAX + 1 - p->stuck_len;
          r = stuck_error(p);
          goto out;
        }
        p->stuck_len += len - i;
        i = len;
        break;

      default:
        smr_assert(0 && "unreachable");
        r = proto_error(p, "parser state");
        goto out;
    }
  }
out:
  p->offset += i;
  *used = i;
  return r;
}

/* ------------------------------------------------------------------------
 * Reply encoder */

/* Writes v in decimal at the end of buf[0..32); returns the start. */
static char *fmt_i64(char end[static 1], int64_t v) {
  char *s = end;
  uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
  do {
    *--s = (char)('0' + u % 10);
    u /= 10;
  } while (u);
  if (v < 0) *--s = '-';
  return s;
}

/* Appends <c><n>\r\n. */
static int add_prefixed(struct smr_buf *b, char c, int64_t n) {
  char tmp[32];
  char *end = tmp + sizeof tmp - 2;
  char *s = fmt_i64(end, n);
  *--s = c;
  end[0] = '\r';
  end[1] = '\n';
  return smr_buf_append(b, s, (size_t)(end + 2 - s));
}

int resp_add_simple(struct smr_buf *b, const char *s) {
  size_t n = strlen(s);
  if (smr_buf_append(b, "+", 1) || smr_buf_append(b, s, n) ||
      smr_buf_append(b, "\r\n", 2))
    return -ENOMEM;
  return 0;
}

int resp_add_error_len(struct smr_buf *b, const char *s, size_t n) {
  size_t at;
  if (smr_buf_append(b, "-", 1)) return -ENOMEM;
  at = b->len;
  if (smr_buf_append(b, s, n) || smr_buf_append(b, "\r\n", 2)) return -ENOMEM;
  for (size_t k = at; k < at + n; k++)
    if (b->data[k] == '\r' || b->data[k] == '\n') b->data[k] = ' ';
  return 0;
}

int resp_add_error(struct smr_buf *b, const char *s) {
  return resp_add_error_len(b, s, strlen(s));
}

int resp_add_int(struct smr_buf *b, int64_t v) { return add_prefixed(b, ':', v); }

int resp_add_bulk(struct smr_buf *b, const void *s, size_t n) {
  smr_assert(n <= INT64_MAX);
  if (add_prefixed(b, '$', (int64_t)n) || smr_buf_append(b, s, n) ||
      smr_buf_append(b, "\r\n", 2))
    return -ENOMEM;
  return 0;
}

int resp_add_bulk_str(struct smr_buf *b, const char *s) {
  return resp_add_bulk(b, s, strlen(s));
}

int resp_add_null(struct smr_buf *b) { return smr_buf_append(b, "$-1\r\n", 5); }

int resp_add_array(struct smr_buf *b, uint64_t n) {
  smr_assert(n <= INT64_MAX);
  return add_prefixed(b, '*', (int64_t)n);
}

int resp_add_null_array(struct smr_buf *b) {
  return smr_buf_append(b, "*-1\r\n", 5);
}

size_t resp_format_double(char *buf, double d) {
  int n;
  if (isinf(d)) {
    strcpy(buf, d > 0 ? "inf" : "-inf");
    return strlen(buf);
  }
  n = snprintf(buf, 32, "%.17g", d);
  smr_assert(n > 0 && n < 32);
  /* A locale with a decimal comma must not leak into replies. */
  for (int k = 0; k < n; k++)
    if (buf[k] == ',') buf[k] = '.';
  return (size_t)n;
}

int resp_add_double(struct smr_buf *b, double d) {
  char tmp[32];
  size_t n = resp_format_double(tmp, d);
  return resp_add_bulk(b, tmp, n);
}

/* ------------------------------------------------------------------------
 * Reply validation */

/* Length of the line at p[0..n) ending in \r\n (without them), or -1 if
 * there is none yet. */
static long line_end(const uint8_t *p, size_t n) {
  const uint8_t *cr = memchr(p, '\r', n);
  if (!cr) return -1;
  if ((size_t)(cr - p) + 1 >= n) return -1;
  return (long)(cr - p);
}

static long reply_len(const uint8_t *p, size_t n, int depth) {
  long l;
  int64_t v;
  if (n == 0) return 0;
  if (depth > 64) return -1;
  l = line_end(p + 1, n - 1);
  if (l < 0) {
    /* No \r yet: malformed if a byte so far could not be in the line. */
    for (size_t k = 1; k < n; k++)
      if (p[k] == '\n') return -1;
    return 0;
  }
  if (p[1 + l + 1] != '\n') return -1;
  size_t hdr = 1 + (size_t)l + 2;
  switch (p[0]) {
    case '+':
    case '-':
      for (long k = 0; k < l; k++)
        if (p[1 + k] == '\n') return -1;
      return (long)hdr;
    case ':':
      return resp_str2ll(p + 1, (size_t)l, &v) ? (long)hdr : -1;
    case '$':
      if (!resp_str2ll(p + 1, (size_t)l, &v) || v < -1) return -1;
      if (v == -1) return (long)hdr;
      if ((uint64_t)v > (uint64_t)LONG_MAX - hdr - 2) return -1;
      if (n < hdr + (size_t)v + 2) return 0;
      if (p[hdr + (size_t)v] != '\r' || p[hdr + (size_t)v + 1] != '\n')
        return -1;
      return (long)(hdr + (size_t)v + 2);
    case '*': {
      size_t at = hdr;
      if (!resp_str2ll(p + 1, (size_t)l, &v) || v < -1) return -1;
      for (int64_t k = 0; k < v; k++) {
        long e = reply_len(p + at, n - at, depth + 1);
        if (e <= 0) return e;
        at += (size_t)e;
      }
      return (long)at;
    }
    default:
      return -1;
  }
}

long resp_reply_len(const uint8_t *p, size_t n) { return reply_len(p, n, 0); }
