/* test_kv_resp.c -- the RESP2 parser and encoder (services/kv/resp.c).
 *
 * Parsing is checked by cutting streams at every position and at every
 * chunk size: the requests (arguments, offsets) must not depend on where
 * the cuts fall.  Every limit and protocol error has a case, with the exact
 * Redis error text, and errors are sticky.  The encoder's bytes are checked
 * literally; resp_reply_len is checked on complete, partial and malformed
 * replies. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "resp.h"

/* ------------------------------------------------------------------------
 * Helpers: parse a whole stream, recording requests */

struct parsed {
  struct smr_buf args; /* each request: "argc|len:arg|len:arg|...\n" */
  size_t n;
  uint64_t ends[64];
  int err;             /* 0 or the error return */
  char errmsg[RESP_ERR_MAX];
};

static void record(struct parsed *o, const struct resp_request *r) {
  char tmp[32];
  snprintf(tmp, sizeof tmp, "%zu", r->argc);
  smr_buf_append(&o->args, tmp, strlen(tmp));
  for (size_t i = 0; i < r->argc; i++) {
    assert_int_equal(r->argv[i][r->argl[i]], 0); /* NUL terminated */
    snprintf(tmp, sizeof tmp, "|%zu:", r->argl[i]);
    smr_buf_append(&o->args, tmp, strlen(tmp));
    smr_buf_append(&o->args, r->argv[i], r->argl[i]);
  }
  smr_buf_append(&o->args, "\n", 1);
  assert_true(r->end > r->start);
  if (o->n < 64) o->ends[o->n] = r->end;
  o->n++;
}

/* Parses data in chunks of size chunk (0: whole). */
static void parse_chunked(const struct resp_limits *lim, const void *data,
                          size_t len, size_t chunk, struct parsed *o) {
  struct resp_parser p;
  const uint8_t *b = data;
  uint64_t consumed = 0;
  memset(o, 0, sizeof *o);
  resp_parser_init(&p, lim);
  while (len && !o->err) {
    size_t n = chunk && chunk < len ? chunk : len;
    len -= n;
    while (n) {
      struct resp_request req;
      size_t used;
      int r = resp_parse(&p, b, n, &used, &req);
      assert_true(used <= n);
      b += used;
      n -= used;
      consumed += used;
      assert_int_equal(resp_parser_offset(&p), consumed);
      if (r == 1) {
        assert_int_equal(req.end, consumed);
        record(o, &req);
      } else if (r < 0) {
        size_t el;
        const char *e = resp_parser_error(&p, &el);
        assert_non_null(e);
        assert_true(el < sizeof o->errmsg);
        memcpy(o->errmsg, e, el);
        o->errmsg[el] = 0;
        o->err = r;
        /* Sticky: nothing more is consumed. */
        assert_int_equal(resp_parse(&p, (const uint8_t *)"PING\r\n", 6, &used,
                                    &req),
                         r);
        assert_int_equal(used, 0);
        break;
      } else {
        assert_int_equal(n, 0);
      }
    }
  }
  resp_parser_free(&p);
}

static void parsed_free(struct parsed *o) { smr_buf_free(&o->args); }

static void assert_same(const struct parsed *a, const struct parsed *b) {
  assert_int_equal(a->n, b->n);
  assert_int_equal(a->err, b->err);
  assert_string_equal(a->errmsg, b->errmsg);
  assert_int_equal(a->args.len, b->args.len);
  if (a->args.len) assert_memory_equal(a->args.data, b->args.data, a->args.len);
  for (size_t i = 0; i < a->n && i < 64; i++)
    assert_int_equal(a->ends[i], b->ends[i]);
}

/* The requests of data as a string, checked to be independent of how the
 * stream is cut: whole, every chunk size up to 9, and every single cut. */
static void expect_bin(const void *data, size_t len, const char *args,
                       size_t alen, const char *err) {
  struct parsed whole, other;
  parse_chunked(NULL, data, len, 0, &whole);
  if (whole.args.len != alen ||
      (alen && memcmp(whole.args.data, args, alen) != 0))
    fail_msg("requests: got \"%.*s\", want \"%s\"", (int)whole.args.len,
             (const char *)whole.args.data, args);
  if (err) {
    assert_int_equal(whole.err, -EPROTO);
    assert_string_equal(whole.errmsg, err);
  } else {
    assert_int_equal(whole.err, 0);
  }
  for (size_t chunk = 1; chunk <= 9; chunk++) {
    parse_chunked(NULL, data, len, chunk, &other);
    assert_same(&whole, &other);
    parsed_free(&other);
  }
  /* Two pieces, cut at every position. */
  for (size_t cut = 1; cut < len; cut++) {
    struct resp_parser p;
    struct parsed two;
    const uint8_t *b = data;
    size_t parts[2] = {cut, len - cut};
    memset(&two, 0, sizeof two);
    resp_parser_init(&p, NULL);
    for (int k = 0; k < 2 && !two.err; k++) {
      size_t n = parts[k];
      while (n) {
        struct resp_request req;
        size_t used;
        int r = resp_parse(&p, b, n, &used, &req);
        b += used;
        n -= used;
        if (r == 1) record(&two, &req);
        if (r < 0) {
          size_t el;
          const char *e = resp_parser_error(&p, &el);
          memcpy(two.errmsg, e, el);
          two.err = r;
          break;
        }
      }
    }
    resp_parser_free(&p);
    assert_same(&whole, &two);
    parsed_free(&two);
  }
  parsed_free(&whole);
}

static void expect(const void *data, size_t len, const char *args,
                   const char *err) {
  expect_bin(data, len, args, strlen(args), err);
}

#define S(lit) lit, sizeof lit - 1

/* ------------------------------------------------------------------------
 * Multibulk */

static void test_multibulk(void **state) {
  (void)state;
  expect(S("*1\r\n$4\r\nPING\r\n"), "1|4:PING\n", NULL);
  expect(S("*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$0\r\n\r\n"),
         "3|3:SET|3:key|0:\n", NULL);
  /* Binary arguments, CR LF inside. */
  expect_bin(S("*2\r\n$4\r\nECHO\r\n$6\r\na\r\nb\0c\r\n"),
             S("2|4:ECHO|6:a\r\nb\0c\n"), NULL);
  /* Pipelined. */
  expect(S("*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n"),
         "1|4:PING\n2|3:GET|1:k\n1|4:PING\n", NULL);
  /* Empty requests are skipped. */
  expect(S("*0\r\n*-1\r\n*1\r\n$1\r\nx\r\n"), "1|1:x\n", NULL);
  /* Redis skips the byte after a header's \r and the two after a bulk. */
  expect(S("*1\rx$4\rxPINGab"), "1|4:PING\n", NULL);
  /* A complete header without its data is no request yet. */
  expect(S("*2\r\n$3\r\nGET\r\n$1\r\n"), "", NULL);
}

static void test_multibulk_offsets(void **state) {
  static const char two[] = "*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPONG\r\n";
  struct parsed o;
  (void)state;
  parse_chunked(NULL, two, sizeof two - 1, 3, &o);
  assert_int_equal(o.n, 2);
  assert_int_equal(o.ends[0], 14);
  assert_int_equal(o.ends[1], 28);
  parsed_free(&o);
}

static void test_multibulk_errors(void **state) {
  (void)state;
  expect(S("*x\r\n"), "", "-ERR Protocol error: invalid multibulk length\r\n");
  expect(S("*01\r\n"), "", "-ERR Protocol error: invalid multibulk length\r\n");
  expect(S("*1 \r\n"), "", "-ERR Protocol error: invalid multibulk length\r\n");
  expect(S("*2147483648\r\n"), "",
         "-ERR Protocol error: invalid multibulk length\r\n");
  expect(S("*99999999999999999999\r\n"), "",
         "-ERR Protocol error: invalid multibulk length\r\n");
  expect(S("*1\r\n$x\r\n"), "", "-ERR Protocol error: invalid bulk length\r\n");
  expect(S("*1\r\n$-1\r\n"), "", "-ERR Protocol error: invalid bulk length\r\n");
  expect(S("*1\r\n$536870913\r\n"), "",
         "-ERR Protocol error: invalid bulk length\r\n");
  expect(S("*1\r\nx3\r\n"), "", "-ERR Protocol error: expected '$', got 'x'\r\n");
  expect(S("*1\r\n\r3\r\n"), "", "-ERR Protocol error: expected '$', got ' '\r\n");
  expect(S("*1\r\n\n3\r\n"), "", "-ERR Protocol error: expected '$', got ' '\r\n");
  /* The requests before an error are delivered. */
  expect(S("*1\r\n$4\r\nPING\r\n*1\r\n$y\r\n"), "1|4:PING\n",
         "-ERR Protocol error: invalid bulk length\r\n");
}

/* ------------------------------------------------------------------------
 * Inline */

static void test_inline(void **state) {
  (void)state;
  expect(S("PING\r\n"), "1|4:PING\n", NULL);
  expect(S("PING\n"), "1|4:PING\n", NULL);
  expect(S("SET  k   v \r\n"), "3|3:SET|1:k|1:v\n", NULL);
  expect(S("\r\n\n   \r\nPING\r\n"), "1|4:PING\n", NULL);
  expect(S("PING\nPING\rX\r\n"), "1|4:PING\n2|4:PING|1:X\n", NULL);
  expect(S("ECHO \"a b\" 'c d'\r\n"), "3|4:ECHO|3:a b|3:c d\n", NULL);
  expect(S("ECHO \"\\x41\\n\\r\\t\\b\\a\\\\\\\"\\q\"\r\n"),
         "2|4:ECHO|9:A\n\r\t\b\a\\\"q\n", NULL);
  expect(S("ECHO \"\\x4g\"\r\n"), "2|4:ECHO|3:x4g\n", NULL);
  expect(S("ECHO 'it\\'s' '\\n'\r\n"), "3|4:ECHO|4:it's|2:\\n\n", NULL);
  expect(S("ECHO \"\" ''\r\n"), "3|4:ECHO|0:|0:\n", NULL);
  expect(S("a\"b c\"d e\r\n"), "", "-ERR Protocol error: unbalanced quotes in request\r\n");
  expect(S("x\"b c\" e\r\n"), "2|4:xb c|1:e\n", NULL);
  expect(S("\"unbalanced\r\n"), "",
         "-ERR Protocol error: unbalanced quotes in request\r\n");
  expect(S("'a'b\r\n"), "", "-ERR Protocol error: unbalanced quotes in request\r\n");
  expect(S("'abc\r\n"), "", "-ERR Protocol error: unbalanced quotes in request\r\n");
  /* Mixed with multibulk. */
  expect(S("PING\r\n*1\r\n$4\r\nPING\r\nPING\r\n"), "1|4:PING\n1|4:PING\n1|4:PING\n",
         NULL);
}

static void test_inline_limits(void **state) {
  size_t n = RESP_INLINE_MAX + 10;
  char *big = malloc(n + 2);
  struct parsed o;
  (void)state;
  assert_non_null(big);
  /* A line of exactly the limit passes; one byte more fails. */
  memset(big, 'a', n);
  big[RESP_INLINE_MAX] = '\n';
  parse_chunked(NULL, big, RESP_INLINE_MAX + 1, 0, &o);
  assert_int_equal(o.err, 0);
  assert_int_equal(o.n, 1);
  parsed_free(&o);
  memset(big, 'a', n);
  big[RESP_INLINE_MAX + 1] = '\n';
  for (size_t chunk = 0; chunk <= 4096; chunk += 4096) {
    parse_chunked(NULL, big, RESP_INLINE_MAX + 2, chunk, &o);
    assert_int_equal(o.err, -EPROTO);
    assert_string_equal(o.errmsg,
                        "-ERR Protocol error: too big inline request\r\n");
    parsed_free(&o);
  }
  /* A NUL in a line: the line never ends (as in Redis), until the limit. */
  memset(big, 'b', n);
  big[3] = 0;
  big[10] = '\n';
  parse_chunked(NULL, big, 100, 0, &o);
  assert_int_equal(o.err, 0);
  assert_int_equal(o.n, 0);
  parsed_free(&o);
  parse_chunked(NULL, big, n, 1000, &o);
  assert_int_equal(o.err, -EPROTO);
  assert_string_equal(o.errmsg, "-ERR Protocol error: too big inline request\r\n");
  parsed_free(&o);
  /* A NUL after more than the limit, in one chunk: the error at once. */
  memset(big, 'c', n);
  big[RESP_INLINE_MAX + 5] = 0;
  parse_chunked(NULL, big, RESP_INLINE_MAX + 6, 0, &o);
  assert_string_equal(o.errmsg, "-ERR Protocol error: too big inline request\r\n");
  parsed_free(&o);
  memcpy(big, "*1\r\n$", 6);
  parse_chunked(NULL, big, RESP_INLINE_MAX + 6, 0, &o);
  assert_string_equal(o.errmsg,
                      "-ERR Protocol error: too big bulk count string\r\n");
  parsed_free(&o);
  /* A header line without \r. */
  memset(big, '1', n);
  big[0] = '*';
  parse_chunked(NULL, big, n, 0, &o);
  assert_string_equal(o.errmsg,
                      "-ERR Protocol error: too big mbulk count string\r\n");
  parsed_free(&o);
  memcpy(big, "*1\r\n", 4);
  parse_chunked(NULL, big, n, 777, &o);
  assert_string_equal(o.errmsg,
                      "-ERR Protocol error: too big bulk count string\r\n");
  parsed_free(&o);
  /* A NUL in a header: stuck until the limit. */
  memcpy(big, "*1\r\n$\0", 6);
  parse_chunked(NULL, big, 20, 0, &o);
  assert_int_equal(o.err, 0);
  parsed_free(&o);
  parse_chunked(NULL, big, n, 0, &o);
  assert_string_equal(o.errmsg,
                      "-ERR Protocol error: too big bulk count string\r\n");
  parsed_free(&o);
  free(big);
}

/* ------------------------------------------------------------------------
 * Configured limits, large arguments, memory */

static void test_limits(void **state) {
  struct resp_limits lim = {3, 10, 25};
  struct parsed o;
  (void)state;
  parse_chunked(&lim, S("*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n"), 0, &o);
  assert_int_equal(o.n, 1);
  parsed_free(&o);
  parse_chunked(&lim, S("*4\r\n"), 0, &o);
  assert_string_equal(o.errmsg, "-ERR Protocol error: invalid multibulk length\r\n");
  parsed_free(&o);
  parse_chunked(&lim, S("*1\r\n$10\r\n0123456789\r\n"), 0, &o);
  assert_int_equal(o.n, 1);
  parsed_free(&o);
  parse_chunked(&lim, S("*1\r\n$11\r\n"), 0, &o);
  assert_string_equal(o.errmsg, "-ERR Protocol error: invalid bulk length\r\n");
  parsed_free(&o);
  /* 3 arguments of 10 bytes pass the bulk limit, not the request limit. */
  parse_chunked(&lim, S("*3\r\n$10\r\n0123456789\r\n$10\r\n0123456789\r\n$10\r\n"),
                0, &o);
  assert_string_equal(o.errmsg, "-ERR Protocol error: request too big\r\n");
  parsed_free(&o);
}

static void test_big_argument(void **state) {
  size_t big = 3u << 20;
  struct resp_parser p;
  char hdr[64];
  uint8_t *chunk = malloc(4096);
  size_t used, sent = 0;
  struct resp_request req;
  int r;
  (void)state;
  assert_non_null(chunk);
  resp_parser_init(&p, NULL);
  snprintf(hdr, sizeof hdr, "*2\r\n$3\r\nSET\r\n$%zu\r\n", big);
  assert_int_equal(resp_parse(&p, (uint8_t *)hdr, strlen(hdr), &used, &req), 0);
  /* Memory follows the bytes that arrived, not the announced length. */
  assert_true(p.buf_cap < 4096);
  while (sent < big) {
    size_t n = big - sent < 4096 ? big - sent : 4096;
    memset(chunk, 'a' + (int)(sent / 4096 % 26), n);
    assert_int_equal(resp_parse(&p, chunk, n, &used, &req), 0);
    assert_int_equal(used, n);
    sent += n;
    assert_true(p.buf_cap <= 2 * (sent + 64) + 256);
  }
  r = resp_parse(&p, (uint8_t *)"\r\n", 2, &used, &req);
  assert_int_equal(r, 1);
  assert_int_equal(req.argc, 2);
  assert_int_equal(req.argl[1], big);
  assert_int_equal(req.argv[1][0], 'a');
  assert_int_equal(req.argv[1][big - 1], 'a' + (int)((big - 1) / 4096 % 26));
  /* The next request releases the big arena. */
  r = resp_parse(&p, (uint8_t *)"PING\r\n", 6, &used, &req);
  assert_int_equal(r, 1);
  assert_true(p.buf_cap <= 256 * 1024);
  resp_parser_free(&p);
  free(chunk);
}

static void test_many_args(void **state) {
  size_t n = 100000;
  struct smr_buf b = {0};
  struct parsed o;
  char tmp[32];
  (void)state;
  snprintf(tmp, sizeof tmp, "*%zu\r\n", n);
  smr_buf_append(&b, tmp, strlen(tmp));
  for (size_t i = 0; i < n; i++) smr_buf_append(&b, "$1\r\nx\r\n", 7);
  parse_chunked(NULL, b.data, b.len, 1000, &o);
  assert_int_equal(o.n, 1);
  assert_int_equal(o.err, 0);
  assert_int_equal(o.args.len, strlen("100000") + n * strlen("|1:x") + 1);
  parsed_free(&o);
  smr_buf_free(&b);
}

/* ------------------------------------------------------------------------
 * Encoder */

static void check_buf(struct smr_buf *b, const char *want, size_t n) {
  assert_int_equal(b->len, n);
  assert_memory_equal(b->data, want, n);
  assert_int_equal(resp_reply_len(b->data, b->len), (long)n);
  smr_buf_reset(b);
}

static void test_encoder(void **state) {
  struct smr_buf b = {0};
  char d[32];
  (void)state;
  assert_int_equal(resp_add_simple(&b, "OK"), 0);
  check_buf(&b, S("+OK\r\n"));
  assert_int_equal(resp_add_error(&b, "ERR bad\r\nthing"), 0);
  check_buf(&b, S("-ERR bad  thing\r\n"));
  assert_int_equal(resp_add_int(&b, 0), 0);
  check_buf(&b, S(":0\r\n"));
  assert_int_equal(resp_add_int(&b, INT64_MIN), 0);
  check_buf(&b, S(":-9223372036854775808\r\n"));
  assert_int_equal(resp_add_int(&b, INT64_MAX), 0);
  check_buf(&b, S(":9223372036854775807\r\n"));
  assert_int_equal(resp_add_bulk(&b, "a\r\nb", 4), 0);
  check_buf(&b, S("$4\r\na\r\nb\r\n"));
  assert_int_equal(resp_add_bulk(&b, "", 0), 0);
  check_buf(&b, S("$0\r\n\r\n"));
  assert_int_equal(resp_add_null(&b), 0);
  check_buf(&b, S("$-1\r\n"));
  assert_int_equal(resp_add_null_array(&b), 0);
  check_buf(&b, S("*-1\r\n"));
  assert_int_equal(resp_add_array(&b, 2), 0);
  assert_int_equal(resp_add_int(&b, 1), 0);
  assert_int_equal(resp_reply_len(b.data, b.len), 0); /* incomplete */
  assert_int_equal(resp_add_bulk_str(&b, "x"), 0);
  check_buf(&b, S("*2\r\n:1\r\n$1\r\nx\r\n"));
  assert_int_equal(resp_add_double(&b, 0.1), 0);
  check_buf(&b, S("$19\r\n0.10000000000000001\r\n"));
  assert_int_equal(resp_add_double(&b, -INFINITY), 0);
  check_buf(&b, S("$4\r\n-inf\r\n"));
  struct {
    double v;
    const char *s;
  } dbl[] = {{INFINITY, "inf"},  {3, "3"},          {1e15, "1000000000000000"},
             {1e17, "1e+17"},     {12345678.9, "12345678.9"},
             {-1e-7, "-9.9999999999999995e-08"}, {1.5e300, "1.5000000000000001e+300"}};
  for (size_t i = 0; i < sizeof dbl / sizeof dbl[0]; i++) {
    size_t n = resp_format_double(d, dbl[i].v);
    assert_int_equal(n, strlen(dbl[i].s));
    assert_memory_equal(d, dbl[i].s, n);
  }
  smr_buf_free(&b);
}

static void test_reply_len(void **state) {
  static const struct {
    const char *s;
    long want;
  } cases[] = {
      {"+OK\r\n", 5},          {"+OK\r", 0},           {"+OK", 0},
      {"", 0},                 {"+O\nK\r\n", -1},      {"+OK\rx", -1},
      {":12\r\n", 5},          {":1x\r\n", -1},        {":-0\r\n", -1},
      {"$3\r\nabc\r\n", 9},    {"$3\r\nab", 0},        {"$3\r\nabcd\r\n", -1},
      {"$-1\r\n", 5},          {"$-2\r\n", -1},        {"*-1\r\n", 5},
      {"*0\r\n", 4},           {"*2\r\n:1\r\n", 0},    {"*2\r\n:1\r\n:2\r\n", 12},
      {"*1\r\n*1\r\n$0\r\n\r\n", 14},                  {"?x\r\n", -1},
      {"-ERR x\r\n+OK\r\n", 8}, {"*1\r\n%\r\n", -1},
  };
  char deep[1000];
  size_t n = 0;
  (void)state;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    assert_int_equal(resp_reply_len((const uint8_t *)cases[i].s,
                                     strlen(cases[i].s)),
                     cases[i].want);
  /* Nesting beyond 64 is refused. */
  for (int i = 0; i < 70; i++) n += (size_t)snprintf(deep + n, sizeof deep - n, "*1\r\n");
  n += (size_t)snprintf(deep + n, sizeof deep - n, ":1\r\n");
  assert_int_equal(resp_reply_len((const uint8_t *)deep, n), -1);
}

static void test_str2ll(void **state) {
  static const struct {
    const char *s;
    int ok;
    int64_t v;
  } cases[] = {
      {"0", 1, 0},
      {"-1", 1, -1},
      {"123", 1, 123},
      {"9223372036854775807", 1, INT64_MAX},
      {"-9223372036854775808", 1, INT64_MIN},
      {"9223372036854775808", 0, 0},
      {"-9223372036854775809", 0, 0},
      {"18446744073709551616", 0, 0},
      {"", 0, 0},
      {"-", 0, 0},
      {"-0", 0, 0},
      {"01", 0, 0},
      {"+1", 0, 0},
      {" 1", 0, 0},
      {"1 ", 0, 0},
      {"1a", 0, 0},
      {"000000000000000000001", 0, 0},
  };
  (void)state;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int64_t v = 7;
    int ok = resp_str2ll((const uint8_t *)cases[i].s, strlen(cases[i].s), &v);
    assert_int_equal(ok, cases[i].ok);
    if (ok) assert_int_equal(v, cases[i].v);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_multibulk),
      cmocka_unit_test(test_multibulk_offsets),
      cmocka_unit_test(test_multibulk_errors),
      cmocka_unit_test(test_inline),
      cmocka_unit_test(test_inline_limits),
      cmocka_unit_test(test_limits),
      cmocka_unit_test(test_big_argument),
      cmocka_unit_test(test_many_args),
      cmocka_unit_test(test_encoder),
      cmocka_unit_test(test_reply_len),
      cmocka_unit_test(test_str2ll),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
