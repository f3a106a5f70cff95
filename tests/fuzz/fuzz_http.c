/*
 * fuzz_http: libFuzzer target for the HTTP head parsers and the chunked decoder.
 * Besides memory safety it checks parser invariants: a complete head parses identically from
 * any longer buffer, every shorter prefix asks for more, spans stay inside the input, and the
 * chunked decoder gives the same bytes whether fed at once or split.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/http_parse.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

static void check_spans(const char *buf, size_t n, const struct bb_http_head *h)
{
    for (size_t i = 0; i < h->n_headers; i++) {
        const struct bb_http_header *hd = &h->headers[i];
        CHECK(hd->name >= buf && hd->name + hd->name_len <= buf + n && hd->name_len > 0);
        CHECK(hd->value >= buf && hd->value + hd->value_len <= buf + n);
        CHECK(bb_http_find(h, "x") == NULL || bb_http_find(h, "x")->name_len == 1);
    }
    CHECK(h->n_headers <= BB_HTTP_MAX_HEADERS);
    CHECK(!(h->chunked && h->content_length >= 0));
}

static void head(int (*parse)(const char *, size_t, struct bb_http_head *, int *), const char *buf,
                 size_t n)
{
    BB_HTTP_HEAD(h);
    BB_HTTP_HEAD(h2);
    int st = 0;
    int r = parse(buf, n, &h, &st);
    CHECK(r >= -1 && r <= (int)n);
    if (r < 0) {
        CHECK(st == 400 || st == 431 || st == 501 || st == 505);
        return;
    }
    if (r == 0)
        return;
    check_spans(buf, (size_t)r, &h);
    /* exactly the head: same result; one byte short: incomplete */
    CHECK(parse(buf, (size_t)r, &h2, &st) == r);
    CHECK(h2.n_headers == h.n_headers && h2.content_length == h.content_length &&
          h2.chunked == h.chunked && h2.keep_alive == h.keep_alive);
    CHECK(parse(buf, (size_t)r - 1, &h2, &st) == 0);
}

static int parse_resp(const char *buf, size_t n, struct bb_http_head *h, int *st)
{
    *st = 400;
    return bb_http_parse_response(buf, n, h);
}

struct out {
    char *buf;
    size_t len;
};

/* Decode in[0..n) as chunked, split at cut. Returns consumed or -1. */
static long dechunk(const char *in, size_t n, size_t cut, struct out *o, bool *done)
{
    struct bb_chunked c;
    bb_chunked_init(&c);
    size_t bounds[2] = {cut, n}, pos = 0;
    o->len = 0;
    for (int k = 0; k < 2 && !c.done; k++) {
        while (pos < bounds[k] && !c.done) {
            size_t off, dl;
            ssize_t u = bb_chunked_feed(&c, in + pos, bounds[k] - pos, &off, &dl);
            if (u < 0)
                return -1;
            CHECK(u > 0 && (size_t)u <= bounds[k] - pos && off + dl <= (size_t)u);
            memcpy(o->buf + o->len, in + pos + off, dl);
            o->len += dl;
            pos += (size_t)u;
        }
    }
    *done = c.done;
    return (long)pos;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* an exact-size copy so ASan sees any read past the end */
    char *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    head(bb_http_parse_request, buf, size);
    head(parse_resp, buf, size);

    size_t cut = size ? (size_t)data[0] * size / 256 : 0;
    struct out a = {malloc(size + 1), 0}, b = {malloc(size + 1), 0};
    bool da = false, db = false;
    long ra = dechunk(buf, size, size, &a, &da);
    long rb = dechunk(buf, size, cut, &b, &db);
    CHECK(ra == rb && da == db);
    if (ra >= 0)
        CHECK(a.len == b.len && memcmp(a.buf, b.buf, a.len) == 0);
    free(a.buf);
    free(b.buf);
    free(buf);
    return 0;
}
