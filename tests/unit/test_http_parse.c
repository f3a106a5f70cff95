/*
 * test_http_parse: request/response head parsing and the chunked decoder (common/http_parse).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/http_parse.h"

static int parse_req(const char *s, struct bb_http_head *h, int *st)
{
    *st = 0;
    return bb_http_parse_request(s, strlen(s), h, st);
}

static void assert_span(const char *p, size_t n, const char *want)
{
    assert_int_equal(n, strlen(want));
    assert_memory_equal(p, want, n);
}

static void test_request_basic(void **state)
{
    (void)state;
    BB_HTTP_HEAD(h);
    int st;
    const char *s = "POST /v1/chat/completions?x=1 HTTP/1.1\r\n"
                    "Host: api.example\r\n"
                    "Content-Type:application/json  \r\n"
                    "Content-Length: 42\r\n"
                    "X-Empty:\r\n"
                    "\r\nBODY";
    int r = parse_req(s, &h, &st);
    assert_int_equal(r, (int)strlen(s) - 4);
    assert_span(h.method, h.method_len, "POST");
    assert_span(h.target, h.target_len, "/v1/chat/completions?x=1");
    assert_int_equal(h.minor_version, 1);
    assert_int_equal(h.n_headers, 4);
    assert_span(h.headers[1].name, h.headers[1].name_len, "Content-Type");
    assert_span(h.headers[1].value, h.headers[1].value_len, "application/json");
    assert_span(h.headers[3].value, h.headers[3].value_len, "");
    assert_int_equal(h.content_length, 42);
    assert_false(h.chunked);
    assert_true(h.keep_alive);
    assert_false(h.expect_continue);

    const struct bb_http_header *ct = bb_http_find(&h, "content-TYPE");
    assert_non_null(ct);
    assert_ptr_equal(ct, &h.headers[1]);
    assert_null(bb_http_find(&h, "Authorization"));
}

static void test_request_bare_lf_and_leading_crlf(void **state)
{
    (void)state;
    BB_HTTP_HEAD(h);
    int st;
    const char *s = "\r\n\nGET / HTTP/1.0\nHost: a\n\n";
    assert_int_equal(parse_req(s, &h, &st), (int)strlen(s));
    assert_span(h.method, h.method_len, "GET");
    assert_int_equal(h.minor_version, 0);
    assert_false(h.keep_alive);
    assert_int_equal(h.content_length, -1);
}

static void test_request_every_prefix_incomplete(void **state)
{
    (void)state;
    const char *s = "PUT /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                    "Expect: 100-continue\r\n\r\n";
    size_t n = strlen(s);
    BB_HTTP_HEAD(h);
    for (size_t k = 0; k < n; k++) {
        int st = 0;
        char *copy = malloc(k ? k : 1); /* exact-size copy so ASan sees any overread */
        memcpy(copy, s, k);
        assert_int_equal(bb_http_parse_request(copy, k, &h, &st), 0);
        free(copy);
    }
    int st;
    assert_int_equal(bb_http_parse_request(s, n, &h, &st), (int)n);
    assert_true(h.chunked);
    assert_true(h.expect_continue);
    assert_int_equal(h.content_length, -1);
}

static void test_keep_alive(void **state)
{
    (void)state;
    static const struct {
        const char *req;
        bool keep;
    } t[] = {
        {"GET / HTTP/1.1\r\n\r\n", true},
        {"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nConnection: Upgrade, CLOSE\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n", true},
        {"GET / HTTP/1.1\r\nConnection: closed\r\n\r\n", true},
        {"GET / HTTP/1.0\r\n\r\n", false},
        {"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true},
        {"GET / HTTP/1.0\r\nConnection: te ,keep-alive \r\n\r\n", true},
        {"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n", false},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        BB_HTTP_HEAD(h);
        int st;
        assert_true(parse_req(t[i].req, &h, &st) > 0);
        if (h.keep_alive != t[i].keep)
            fail_msg("case %zu: keep_alive %d", i, h.keep_alive);
    }
}

static void test_expect(void **state)
{
    (void)state;
    BB_HTTP_HEAD(h);
    int st;
    assert_true(parse_req("POST / HTTP/1.1\r\nexpect: 100-CONTINUE\r\n\r\n", &h, &st) > 0);
    assert_true(h.expect_continue);
    /* RFC 9110 §10.1.1: a 1.0 request's expectation is ignored */
    assert_true(parse_req("POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n", &h, &st) > 0);
    assert_false(h.expect_continue);
}

static void test_request_errors(void **state)
{
    (void)state;
    static const struct {
        const char *req;
        int status;
    } t[] = {
        {"GET  / HTTP/1.1\r\n\r\n", 400},
        {"G(T / HTTP/1.1\r\n\r\n", 400},
        {" GET / HTTP/1.1\r\n\r\n", 400},
        {"GET / HTTP/1.1 \r\n\r\n", 400},
        {"GET /a b HTTP/1.1\r\n\r\n", 400},
        {"GET /\x80 HTTP/1.1\r\n\r\n", 400},
        {"GET / http/1.1\r\n\r\n", 400},
        {"GET / HTTP/1.x\r\n\r\n", 400},
        {"GET / HTTP/2.0\r\n\r\n", 505},
        {"GET / HTTP/1.2\r\n\r\n", 505},
        {"GET / HTTP/0.9\r\n\r\n", 505},
        {"GET / HTTP/1.1\rX\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\n: a\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHo{st: a\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\n\tX: a\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nX: a\r\n\r\r\n", 400},
        {"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nContent-Length:\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nContent-Length: 9223372036854775808\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n", 501},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 501},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
         400},
        {"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
        {"\rGET / HTTP/1.1\r\n\r\n", 400},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        BB_HTTP_HEAD(h);
        int st = 0;
        int r = parse_req(t[i].req, &h, &st);
        if (r != -1 || st != t[i].status)
            fail_msg("case %zu (%s): r=%d status=%d, want -1/%d", i, t[i].req, r, st, t[i].status);
    }
}

static void test_request_ok_edge(void **state)
{
    (void)state;
    BB_HTTP_HEAD(h);
    int st;
    /* identical duplicate Content-Length is one value; max int64 fits */
    assert_true(parse_req("POST / HTTP/1.1\r\nContent-Length: 7\r\ncontent-length: 7\r\n\r\n", &h,
                          &st) > 0);
    assert_int_equal(h.content_length, 7);
    assert_true(
        parse_req("POST / HTTP/1.1\r\nContent-Length: 9223372036854775807\r\n\r\n", &h, &st) > 0);
    assert_int_equal(h.content_length, INT64_MAX);
    assert_true(parse_req("POST / HTTP/1.1\r\nTransfer-Encoding: CHUNKED\r\n\r\n", &h, &st) > 0);
    assert_true(h.chunked);
    /* obs-text in values and tabs around them are fine */
    assert_true(parse_req("GET * HTTP/1.1\r\nX:\t\xc3\xa9t\xc3\xa9 \t\r\n\r\n", &h, &st) > 0);
    assert_span(h.headers[0].value, h.headers[0].value_len, "\xc3\xa9t\xc3\xa9");
}

static void test_too_many_headers(void **state)
{
    (void)state;
    char buf[8192];
    size_t n = (size_t)snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\n");
    for (int i = 0; i < BB_HTTP_MAX_HEADERS; i++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "X-%d: v\r\n", i);
    BB_HTTP_HEAD(h);
    int st = 0;
    snprintf(buf + n, sizeof buf - n, "\r\n");
    assert_int_equal(bb_http_parse_request(buf, n + 2, &h, &st), (int)n + 2);
    assert_int_equal(h.n_headers, BB_HTTP_MAX_HEADERS);
    snprintf(buf + n, sizeof buf - n, "X-last: v\r\n\r\n");
    assert_int_equal(bb_http_parse_request(buf, strlen(buf), &h, &st), -1);
    assert_int_equal(st, 431);
}

static void test_early_reject(void **state)
{
    (void)state;
    BB_HTTP_HEAD(h);
    int st = 0;
    /* garbage is refused before the head is complete */
    assert_int_equal(bb_http_parse_request("\x16\x03\x01", 3, &h, &st), -1);
    assert_int_equal(st, 400);
    assert_int_equal(bb_http_parse_request("GET / HTTP/3", 12, &h, &st), 0);
    assert_int_equal(bb_http_parse_request("GET / HTTX", 10, &h, &st), -1);
}

static void test_response(void **state)
{
    (void)state;
    BB_HTTP_HEAD(h);
    const char *s = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                    "Transfer-Encoding: chunked\r\n\r\ndata";
    assert_int_equal(bb_http_parse_response(s, strlen(s), &h), (int)strlen(s) - 4);
    assert_int_equal(h.status, 200);
    assert_span(h.reason, h.reason_len, "OK");
    assert_true(h.chunked);
    assert_true(h.keep_alive);

    s = "HTTP/1.0 429 Too Many Requests\r\nRetry-After: 3\r\nContent-Length: 10\r\n\r\n";
    assert_int_equal(bb_http_parse_response(s, strlen(s), &h), (int)strlen(s));
    assert_int_equal(h.status, 429);
    assert_int_equal(h.content_length, 10);
    assert_false(h.keep_alive);
    assert_span(h.reason, h.reason_len, "Too Many Requests");

    s = "HTTP/1.1 204\r\n\r\n";
    assert_int_equal(bb_http_parse_response(s, strlen(s), &h), (int)strlen(s));
    assert_int_equal(h.status, 204);
    assert_int_equal(h.reason_len, 0);
    s = "HTTP/1.1 500 \r\nConnection: close\r\n\r\n";
    assert_int_equal(bb_http_parse_response(s, strlen(s), &h), (int)strlen(s));
    assert_false(h.keep_alive);

    for (size_t k = 0; k < strlen(s); k++)
        assert_int_equal(bb_http_parse_response(s, k, &h), 0);

    static const char *const bad[] = {
        "HTTP/2 200 OK\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 099 x\r\n\r\n",
        "HTTP/1.1  200 OK\r\n\r\n",
        "HTTP/1.1 200 O\x01K\r\n\r\n",
        "ICY 200 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX: y\r\n z\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (bb_http_parse_response(bad[i], strlen(bad[i]), &h) != -1)
            fail_msg("bad response %zu accepted", i);
    }
}

static void test_ieq(void **state)
{
    (void)state;
    assert_true(bb_http_ieq("CoNtEnT", 7, "content"));
    assert_false(bb_http_ieq("content", 6, "content"));
    assert_false(bb_http_ieq("contents", 8, "content"));
    assert_true(bb_http_ieq("", 0, ""));
}

/* Decode all of in with the given piece size, collecting payload. Returns -1 on error,
 * else consumed bytes; *done tells whether the terminator was seen. */
static long dechunk(const char *in, size_t n, size_t piece, char *out, size_t *out_len, bool *done)
{
    struct bb_chunked c;
    bb_chunked_init(&c);
    size_t pos = 0;
    *out_len = 0;
    while (pos < n && !c.done) {
        size_t k = n - pos < piece ? n - pos : piece;
        char *copy = malloc(k); /* exact size: ASan catches any overread */
        memcpy(copy, in + pos, k);
        size_t used_total = 0;
        while (used_total < k && !c.done) {
            size_t off, dl;
            ssize_t u = bb_chunked_feed(&c, copy + used_total, k - used_total, &off, &dl);
            if (u < 0) {
                free(copy);
                return -1;
            }
            assert_true(u > 0);
            assert_true(off + dl <= (size_t)u);
            memcpy(out + *out_len, copy + used_total + off, dl);
            *out_len += dl;
            used_total += (size_t)u;
        }
        free(copy);
        pos += used_total;
    }
    *done = c.done;
    return (long)pos;
}

static void test_chunked_ok(void **state)
{
    (void)state;
    const char *in = "5\r\nhello\r\n1;name=\"v a\"\r\n,\r\nA \r\n world!!!!\r\n"
                     "0\r\nX-Trailer: 1\r\nY: 2\r\n\r\nNEXT";
    size_t n = strlen(in);
    for (size_t piece = 1; piece <= n; piece++) {
        char out[64];
        size_t ol;
        bool done;
        long used = dechunk(in, n, piece, out, &ol, &done);
        assert_int_equal(used, (long)n - 4);
        assert_true(done);
        assert_int_equal(ol, 16);
        assert_memory_equal(out, "hello, world!!!!", 16);
    }
    /* done: consumes nothing more */
    struct bb_chunked c;
    bb_chunked_init(&c);
    size_t off, dl;
    assert_int_equal(bb_chunked_feed(&c, "0\r\n\r\nX", 6, &off, &dl), 5);
    assert_true(c.done);
    assert_int_equal(bb_chunked_feed(&c, "X", 1, &off, &dl), 0);
}

static void test_chunked_errors(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "\r\n",                    /* no size */
        "x\r\n",                   /* not hex */
        "5\r\nhelloX\r\n",         /* no CRLF after data */
        "5\r\nhello\n0\r\n\r\n",   /* bare LF after data */
        "5\nhello\r\n",            /* bare LF after size */
        "5\rhello",                /* CR without LF */
        "-5\r\n",                  /* sign */
        "5 x\r\n",                 /* junk after size */
        "4000000000000001\r\n",    /* > 2^62 */
        "ffffffffffffffffff\r\n",  /* overflow */
        "1;a\x01\r\n",             /* CTL in extension */
        "0\r\n Folded: x\r\n\r\n", /* obs-fold in trailers */
        "0\r\nX: a\x01\r\n\r\n",   /* CTL in trailer */
        "0\r\n\r\r",               /* bad final CRLF */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char out[64];
        size_t ol;
        bool done;
        if (dechunk(bad[i], strlen(bad[i]), 1, out, &ol, &done) != -1)
            fail_msg("bad chunked %zu accepted", i);
    }
    /* 2^62 exactly is allowed as a size */
    struct bb_chunked c;
    bb_chunked_init(&c);
    size_t off, dl;
    assert_int_equal(bb_chunked_feed(&c, "4000000000000000\r\n", 18, &off, &dl), 18);
    assert_int_equal(c.remaining, (uint64_t)1 << 62);

    /* extension line length bound */
    size_t n = 5000;
    char *big = malloc(n);
    memset(big, 'a', n);
    big[0] = '1';
    big[1] = ';';
    bb_chunked_init(&c);
    assert_int_equal(bb_chunked_feed(&c, big, n, &off, &dl), -1);
    bb_chunked_init(&c);
    assert_int_equal(bb_chunked_feed(&c, big, 4000, &off, &dl), 4000);
    /* trailers bound */
    bb_chunked_init(&c);
    assert_int_equal(bb_chunked_feed(&c, "0\r\n", 3, &off, &dl), 3);
    int r = 0;
    for (int i = 0; i < 100 && r >= 0; i++) {
        memset(big, 'a', 4000);
        big[1] = ':';
        big[4000] = '\r';
        big[4001] = '\n';
        r = (int)bb_chunked_feed(&c, big, 4002, &off, &dl);
    }
    assert_int_equal(r, -1);
    free(big);
}

/* The one check on header names and values that reach a response head (issue 9 #2). */
#define TOKEN_OK(lit) bb_http_token_ok(lit, sizeof lit - 1)
#define VALUE_OK(lit) bb_http_field_value_ok(lit, sizeof lit - 1)

static void test_field_checks(void **state)
{
    (void)state;
    assert_true(TOKEN_OK("x-busbar-dropped-fields"));
    assert_false(TOKEN_OK(""));
    assert_false(TOKEN_OK("a b"));
    assert_false(TOKEN_OK("a:b"));
    assert_true(VALUE_OK(""));
    assert_true(VALUE_OK("a, b\tc \x80\xff"));
    assert_false(VALUE_OK("x\r\nSet-Cookie: a=b"));
    assert_false(VALUE_OK("x\ny"));
    assert_false(VALUE_OK("x\ry"));
    assert_false(VALUE_OK("x\0y"));
    assert_false(VALUE_OK("x\x7f"));
    assert_false(VALUE_OK(" x"));
    assert_false(VALUE_OK("x\t"));
}

/* The incremental end-of-head scan agrees with the parser however the bytes are split. */
static void test_head_scan(void **state)
{
    (void)state;
    static const char *heads[] = {
        "GET / HTTP/1.1\r\nHost: a\r\n\r\nBODY",
        "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\nHost: a\n\nX",
        "GET / HTTP/1.0\r\n\r\n",
        "GET / HTTP/1.1\r\nX: ab\r\nY: c\r\n\r\n",
        "\n\r\nGET /x HTTP/1.1\r\nLong: 0123456789012345678901234567890123456789\n\n",
    };
    for (size_t k = 0; k < sizeof heads / sizeof heads[0]; k++) {
        const char *h = heads[k];
        size_t n = strlen(h);
        BB_HTTP_HEAD(head);
        int want = bb_http_parse_request(h, n, &head, NULL);
        assert_true(want > 0);
        for (size_t step = 1; step <= n; step++) {
            struct bb_http_scan sc;
            bb_http_scan_reset(&sc);
            size_t got = 0;
            for (size_t i = 0; i < n && !got; i += step)
                got = bb_http_scan_feed(&sc, h + i, i + step <= n ? step : n - i);
            assert_int_equal(got, (size_t)want);
        }
    }
    struct bb_http_scan sc = {0}; /* zero-initialised works like reset */
    assert_int_equal(bb_http_scan_feed(&sc, "GET / HTTP/1.1\r\nHost: a\r\n", 25), 0);
    assert_int_equal(bb_http_scan_feed(&sc, "\r", 1), 0);
    assert_int_equal(bb_http_scan_feed(&sc, "\nrest", 5), 27);
}

/* A head parsed in one buffer, rebased onto a copy, is the head parsed from the copy. */
static void test_head_rebase(void **state)
{
    (void)state;
    static const char req[] = "POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: a\r\n"
                              "Content-Length: 12\r\nX-Empty:\r\nConnection: close\r\n\r\n";
    char copy[sizeof req];
    memcpy(copy, req, sizeof req);
    BB_HTTP_HEAD(a);
    BB_HTTP_HEAD(b);
    struct bb_http_header c_slots[8];
    struct bb_http_head c;
    int st;
    int n = bb_http_parse_request(req, sizeof req - 1, &a, &st);
    assert_int_equal(n, (int)sizeof req - 1);
    assert_int_equal(bb_http_parse_request(copy, sizeof req - 1, &b, &st), n);
    memset(&c, 0x5a, sizeof c);
    c.headers = c_slots; /* exactly what it needs would do; 8 is room */
    bb_http_head_rebase(&c, &a, req, copy);
    assert_ptr_equal(c.method, b.method);
    assert_ptr_equal(c.target, b.target);
    assert_int_equal(c.target_len, b.target_len);
    assert_int_equal(c.n_headers, b.n_headers);
    for (size_t i = 0; i < b.n_headers; i++) {
        assert_ptr_equal(c.headers[i].name, b.headers[i].name);
        assert_int_equal(c.headers[i].name_len, b.headers[i].name_len);
        assert_ptr_equal(c.headers[i].value, b.headers[i].value);
        assert_int_equal(c.headers[i].value_len, b.headers[i].value_len);
    }
    assert_int_equal(c.content_length, 12);
    assert_false(c.keep_alive);
    assert_false(c.chunked);
    assert_null(c.reason);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_basic),
        cmocka_unit_test(test_head_rebase),
        cmocka_unit_test(test_request_bare_lf_and_leading_crlf),
        cmocka_unit_test(test_request_every_prefix_incomplete),
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_expect),
        cmocka_unit_test(test_request_errors),
        cmocka_unit_test(test_request_ok_edge),
        cmocka_unit_test(test_too_many_headers),
        cmocka_unit_test(test_early_reject),
        cmocka_unit_test(test_response),
        cmocka_unit_test(test_ieq),
        cmocka_unit_test(test_field_checks),
        cmocka_unit_test(test_head_scan),
        cmocka_unit_test(test_chunked_ok),
        cmocka_unit_test(test_chunked_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
