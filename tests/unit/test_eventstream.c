/*
 * test_eventstream: the AWS event-stream codec (worker/eventstream).
 *
 * Known vectors, computed from the specification independently of this code (Python's
 * zlib.crc32, which is the same IEEE CRC-32):
 * - the empty message (no headers, no payload) is 00000010 00000000 05c248eb 7d98c8ff — the
 *   prelude CRC of {00 00 00 10 00 00 00 00} is 0x05c248eb, the message CRC 0x7d98c8ff (also
 *   the "empty_message" vector of AWS's event-stream test suite);
 * - a messageStart event with the three standard headers and {"role":"assistant"} is the
 *   118-byte message in event_vector below (prelude CRC 0x96d5fade, message CRC 0x6fa8c599).
 * Then: a stream of messages with every header type, fed split at every byte boundary and at
 * every pair of boundaries; each CRC and each length corrupted; the size bound; the
 * callback's stop value.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "common/crc32.h"
#include "worker/eventstream.h"
#include "worker/proto.h"

static const uint8_t empty_vector[16] = {0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00,
                                         0x05, 0xc2, 0x48, 0xeb, 0x7d, 0x98, 0xc8, 0xff};

static const char event_vector_hex[] =
    "000000760000005296d5fade0b3a6576656e742d7479706507000c6d65737361676553746172740d3a636f"
    "6e74656e742d747970650700106170706c69636174696f6e2f6a736f6e0d3a6d6573736167652d74797065"
    "0700056576656e747b22726f6c65223a22617373697374616e74227d6fa8c599";

static size_t unhex(const char *h, uint8_t *out)
{
    size_t n = strlen(h) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(h + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
    return n;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Assemble a message by hand from raw header bytes and a payload, with correct CRCs. */
static size_t build(uint8_t *out, const uint8_t *hdrs, size_t hl, const void *payload, size_t pl)
{
    size_t total = 16 + hl + pl;
    put32(out, (uint32_t)total);
    put32(out + 4, (uint32_t)hl);
    put32(out + 8, bb_crc32(0, out, 8));
    memcpy(out + 12, hdrs, hl);
    memcpy(out + 12 + hl, payload, pl);
    put32(out + total - 4, bb_crc32(0, out, total - 4));
    return total;
}

/* ---------------------------------------------------------------- recording callback */

#define MAXM 8

struct rec {
    int n;
    char type[MAXM][32], event[MAXM][64], ctype[MAXM][32], payload[MAXM][128];
    bool exception[MAXM];
    size_t raw_total;
    int stop_after;
};

static void cp(char *dst, size_t cap, const void *s, size_t n)
{
    assert_true(n < cap);
    memcpy(dst, s, n);
    dst[n] = '\0';
}

static int on_msg(void *arg, const struct bb_eventstream_msg *m)
{
    struct rec *r = arg;
    assert_true(r->n < MAXM);
    cp(r->type[r->n], sizeof r->type[0], m->message_type, m->message_type_len);
    cp(r->event[r->n], sizeof r->event[0], m->event_type, m->event_type_len);
    cp(r->ctype[r->n], sizeof r->ctype[0], m->content_type, m->content_type_len);
    cp(r->payload[r->n], sizeof r->payload[0], m->payload, m->payload_len);
    r->exception[r->n] = m->exception;
    /* raw covers the message exactly and checks out */
    assert_int_equal(m->raw_len, 16 + m->headers_len + m->payload_len);
    assert_true(m->headers == m->raw + 12);
    r->raw_total += m->raw_len;
    r->n++;
    return r->stop_after && r->n == r->stop_after ? 9 : 0;
}

/* ---------------------------------------------------------------- vectors */

static void test_empty_message_vector(void **state)
{
    (void)state;
    /* the prelude CRC of the spec's 8-byte prelude, by hand */
    assert_int_equal(bb_crc32(0, empty_vector, 8), 0x05c248ebu);
    assert_int_equal(bb_crc32(0, "123456789", 9), 0xCBF43926u);

    struct evbuffer *b = evbuffer_new();
    assert_int_equal(bb_eventstream_write(b, NULL, NULL, 0, NULL, 0), 0);
    assert_int_equal(evbuffer_get_length(b), 16);
    assert_memory_equal(evbuffer_pullup(b, -1), empty_vector, 16);
    evbuffer_free(b);

    struct rec r = {0};
    struct bb_eventstream d;
    bb_eventstream_init(&d, 0);
    assert_int_equal(bb_eventstream_feed(&d, empty_vector, 16, on_msg, &r), 0);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.type[0], "");
    assert_string_equal(r.payload[0], "");
    assert_false(r.exception[0]);
    bb_eventstream_free(&d);
}

static void test_event_vector(void **state)
{
    (void)state;
    uint8_t want[256];
    size_t wl = unhex(event_vector_hex, want);
    assert_int_equal(wl, 118);
    struct evbuffer *b = evbuffer_new();
    const char *payload = "{\"role\":\"assistant\"}";
    assert_int_equal(bb_eventstream_write_event(b, "messageStart", payload, strlen(payload)), 0);
    assert_int_equal(evbuffer_get_length(b), wl);
    assert_memory_equal(evbuffer_pullup(b, -1), want, wl);
    evbuffer_free(b);

    struct bb_eventstream_msg m;
    size_t used;
    const char *why = NULL;
    assert_int_equal(bb_eventstream_parse(want, wl, 0, &m, &used, &why), 1);
    assert_int_equal(used, 118);
    assert_int_equal(m.event_type_len, 12);
    assert_memory_equal(m.event_type, "messageStart", 12);
    struct bb_frame f;
    bb_eventstream_to_frame(&m, &f);
    assert_int_equal(f.event_len, 12);
    assert_memory_equal(f.data, payload, strlen(payload));
    assert_false(f.exception);
    /* fewer bytes: "need more", never an error */
    for (size_t n = 0; n < wl; n++)
        assert_int_equal(bb_eventstream_parse(want, n, 0, &m, &used, &why), 0);
}

/* ---------------------------------------------------------------- every header type */

static size_t all_types_headers(uint8_t *h)
{
    size_t k = 0;
#define NAME(s)                                                                                    \
    do {                                                                                           \
        h[k++] = (uint8_t)strlen(s);                                                               \
        memcpy(h + k, s, strlen(s));                                                               \
        k += strlen(s);                                                                            \
    } while (0)
    NAME("t");
    h[k++] = 0;
    NAME("f");
    h[k++] = 1;
    NAME("byte");
    h[k++] = 2;
    h[k++] = 0xfe; /* -2 */
    NAME("short");
    h[k++] = 3;
    h[k++] = 0xff;
    h[k++] = 0x9c; /* -100 */
    NAME("int");
    h[k++] = 4;
    put32(h + k, 123456789);
    k += 4;
    NAME("long");
    h[k++] = 5;
    put32(h + k, 0x00000001);
    put32(h + k + 4, 0x00000002); /* 4294967298 */
    k += 8;
    NAME("bytes");
    h[k++] = 6;
    h[k++] = 0;
    h[k++] = 3;
    h[k++] = 0;
    h[k++] = 1;
    h[k++] = 2;
    NAME(":message-type");
    h[k++] = 7;
    h[k++] = 0;
    h[k++] = 5;
    memcpy(h + k, "event", 5);
    k += 5;
    NAME(":event-type");
    h[k++] = 7;
    h[k++] = 0;
    h[k++] = 8;
    memcpy(h + k, "metadata", 8);
    k += 8;
    NAME("ts");
    h[k++] = 8;
    put32(h + k, 0x00000190);
    put32(h + k + 4, 0x00c79c00); /* 0x19000c79c00 = 1718000000000 ms */
    k += 8;
    NAME("uuid");
    h[k++] = 9;
    for (int i = 0; i < 16; i++)
        h[k++] = (uint8_t)i;
#undef NAME
    return k;
}

static void test_header_types(void **state)
{
    (void)state;
    uint8_t h[256];
    size_t hl = all_types_headers(h);
    size_t off = 0;
    struct bb_eventstream_header x;
    static const int64_t nums[] = {1, 0, -2, -100, 123456789, 4294967298LL};
    for (int i = 0; i < 6; i++) {
        assert_int_equal(bb_eventstream_header_next(h, hl, &off, &x), 1);
        assert_int_equal(x.type, i);
        assert_true(x.num == nums[i]);
    }
    assert_int_equal(bb_eventstream_header_next(h, hl, &off, &x), 1);
    assert_int_equal(x.type, BB_ES_BYTES);
    assert_int_equal(x.val_len, 3);
    assert_int_equal(x.val[2], 2);
    assert_int_equal(bb_eventstream_header_next(h, hl, &off, &x), 1);
    assert_int_equal(x.type, BB_ES_STRING);
    assert_int_equal(bb_eventstream_header_next(h, hl, &off, &x), 1);
    assert_int_equal(bb_eventstream_header_next(h, hl, &off, &x), 1);
    assert_int_equal(x.type, BB_ES_TIMESTAMP);
    assert_true(x.num == 1718000000000LL);
    assert_int_equal(bb_eventstream_header_next(h, hl, &off, &x), 1);
    assert_int_equal(x.type, BB_ES_UUID);
    assert_int_equal(x.val_len, 16);
    assert_int_equal(x.val[15], 15);
    assert_int_equal(bb_eventstream_header_next(h, hl, &off, &x), 0);

    /* every truncation of the block is malformed, never an over-read */
    for (size_t cut = 1; cut < hl; cut++) {
        uint8_t *piece = malloc(cut);
        memcpy(piece, h, cut);
        size_t o = 0;
        int rc;
        while ((rc = bb_eventstream_header_next(piece, cut, &o, &x)) == 1)
            ;
        /* a cut exactly between two headers is a shorter valid block */
        assert_true(rc == -1 || rc == 0);
        free(piece);
    }
    uint8_t unknown[] = {1, 'x', 10};
    off = 0;
    assert_int_equal(bb_eventstream_header_next(unknown, 3, &off, &x), -1);
    uint8_t zero_name[] = {0, 0};
    off = 0;
    assert_int_equal(bb_eventstream_header_next(zero_name, 2, &off, &x), -1);
}

/* ---------------------------------------------------------------- split feeding */

/* Three messages: an event with every header type, an exception, an error. */
static size_t make_stream(uint8_t *buf)
{
    uint8_t h[256];
    size_t hl = all_types_headers(h), n = 0;
    n += build(buf + n, h, hl, "{\"usage\":{}}", 12);
    struct evbuffer *b = evbuffer_new();
    const char *exc = "{\"message\":\"slow down\"}";
    assert_int_equal(bb_eventstream_write_exception(b, "throttlingException", exc, strlen(exc)), 0);
    size_t el = evbuffer_get_length(b);
    memcpy(buf + n, evbuffer_pullup(b, -1), el);
    n += el;
    evbuffer_free(b);
    uint8_t eh[128];
    size_t k = 0;
    const char *names[] = {":message-type", ":error-code", ":error-message"};
    const char *vals[] = {"error", "InternalFailure", "it broke"};
    for (int i = 0; i < 3; i++) {
        eh[k++] = (uint8_t)strlen(names[i]);
        memcpy(eh + k, names[i], strlen(names[i]));
        k += strlen(names[i]);
        eh[k++] = 7;
        eh[k++] = 0;
        eh[k++] = (uint8_t)strlen(vals[i]);
        memcpy(eh + k, vals[i], strlen(vals[i]));
        k += strlen(vals[i]);
    }
    n += build(buf + n, eh, k, "", 0);
    return n;
}

static void check_stream_rec(const struct rec *r, size_t total)
{
    assert_int_equal(r->n, 3);
    assert_string_equal(r->type[0], "event");
    assert_string_equal(r->event[0], "metadata");
    assert_string_equal(r->payload[0], "{\"usage\":{}}");
    assert_false(r->exception[0]);
    assert_string_equal(r->type[1], "exception");
    assert_string_equal(r->event[1], "throttlingException");
    assert_string_equal(r->ctype[1], "application/json");
    assert_string_equal(r->payload[1], "{\"message\":\"slow down\"}");
    assert_true(r->exception[1]);
    assert_string_equal(r->type[2], "error");
    assert_string_equal(r->event[2], "InternalFailure");
    assert_true(r->exception[2]);
    assert_int_equal(r->raw_total, total);
}

static void feed_pieces(struct bb_eventstream *d, const uint8_t *p, size_t n, const size_t *cuts,
                        int ncuts, struct rec *r)
{
    size_t at = 0;
    for (int k = 0; k <= ncuts; k++) {
        size_t end = k < ncuts ? cuts[k] : n;
        size_t len = end - at;
        uint8_t *piece = malloc(len ? len : 1); /* exact size: ASan sees any over-read */
        memcpy(piece, p + at, len);
        assert_int_equal(bb_eventstream_feed(d, piece, len, on_msg, r), 0);
        free(piece);
        at = end;
    }
}

static void test_split_everywhere(void **state)
{
    (void)state;
    uint8_t buf[1024];
    size_t n = make_stream(buf);

    for (size_t c = 0; c <= n; c++) {
        struct rec r = {0};
        struct bb_eventstream d;
        bb_eventstream_init(&d, 0);
        size_t cuts[1] = {c};
        feed_pieces(&d, buf, n, cuts, 1, &r);
        check_stream_rec(&r, n);
        assert_int_equal(bb_eventstream_pending(&d), 0);
        bb_eventstream_free(&d);
    }
    for (size_t c1 = 0; c1 <= n; c1 += 1) {
        for (size_t c2 = c1; c2 <= n; c2 += 3) {
            struct rec r = {0};
            struct bb_eventstream d;
            bb_eventstream_init(&d, 0);
            size_t cuts[2] = {c1, c2};
            feed_pieces(&d, buf, n, cuts, 2, &r);
            check_stream_rec(&r, n);
            bb_eventstream_free(&d);
        }
    }
    /* one byte at a time, with pending reflecting the partial message */
    struct rec r = {0};
    struct bb_eventstream d;
    bb_eventstream_init(&d, 0);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(bb_eventstream_feed(&d, buf + i, 1, on_msg, &r), 0);
        if (i == 4)
            assert_int_equal(bb_eventstream_pending(&d), 5);
    }
    check_stream_rec(&r, n);
    assert_int_equal(bb_eventstream_pending(&d), 0);
    bb_eventstream_free(&d);
}

/* ---------------------------------------------------------------- corruption */

static const char *feed_err(const uint8_t *p, size_t n, size_t max, size_t chunk)
{
    struct rec r = {0};
    struct bb_eventstream d;
    bb_eventstream_init(&d, max);
    int rc = 0;
    for (size_t at = 0; at < n && rc == 0; at += chunk)
        rc = bb_eventstream_feed(&d, p + at, chunk < n - at ? chunk : n - at, on_msg, &r);
    const char *why = rc == -1 ? d.error : NULL;
    /* a failed decoder stays failed */
    if (rc == -1)
        assert_int_equal(bb_eventstream_feed(&d, empty_vector, 16, on_msg, &r), -1);
    bb_eventstream_free(&d);
    return why;
}

static void test_corruption(void **state)
{
    (void)state;
    uint8_t good[256];
    size_t n = unhex(event_vector_hex, good);
    uint8_t b[256];
    for (size_t chunk = 1; chunk <= n; chunk = chunk == 1 ? 7 : chunk * 4) {
        /* each byte of the prelude CRC */
        for (int i = 8; i < 12; i++) {
            memcpy(b, good, n);
            b[i] ^= 0x01;
            assert_string_equal(feed_err(b, n, 0, chunk), "event stream prelude CRC mismatch");
        }
        /* each byte of the message CRC */
        for (size_t i = n - 4; i < n; i++) {
            memcpy(b, good, n);
            b[i] ^= 0x80;
            assert_string_equal(feed_err(b, n, 0, chunk), "event stream message CRC mismatch");
        }
        /* lengths and body: the prelude CRC or the message CRC catches them */
        memcpy(b, good, n);
        b[3] ^= 0x01;
        assert_string_equal(feed_err(b, n, 0, chunk), "event stream prelude CRC mismatch");
        memcpy(b, good, n);
        b[7] ^= 0x01;
        assert_string_equal(feed_err(b, n, 0, chunk), "event stream prelude CRC mismatch");
        memcpy(b, good, n);
        b[n - 10] ^= 0x20;
        assert_string_equal(feed_err(b, n, 0, chunk), "event stream message CRC mismatch");
    }

    /* lengths that pass the prelude CRC but cannot be */
    uint8_t m[64];
    put32(m, 15); /* below the minimum */
    put32(m + 4, 0);
    put32(m + 8, bb_crc32(0, m, 8));
    assert_string_equal(feed_err(m, 12, 0, 12), "event stream message has inconsistent lengths");
    put32(m, 20);
    put32(m + 4, 5); /* headers longer than total - 16 */
    put32(m + 8, bb_crc32(0, m, 8));
    assert_string_equal(feed_err(m, 12, 0, 12), "event stream message has inconsistent lengths");
    /* the size bound, checked from the prelude alone (nothing buffered for it) */
    put32(m, 0x7fffffff);
    put32(m + 4, 0);
    put32(m + 8, bb_crc32(0, m, 8));
    assert_string_equal(feed_err(m, 12, 0, 5), "event stream message exceeds the size limit");
    assert_string_equal(feed_err(good, n, 100, 1), "event stream message exceeds the size limit");
    assert_null(feed_err(good, n, 118, 1));

    /* headers that overrun their block, with valid CRCs */
    uint8_t bad_h[] = {3, 'a', 'b', 'c', 7, 0, 50, 'x'};
    size_t bl = build(m, bad_h, sizeof bad_h, "{}", 2);
    assert_string_equal(feed_err(m, bl, 0, bl), "event stream message has malformed headers");
}

static void test_callback_stop(void **state)
{
    (void)state;
    uint8_t buf[1024];
    size_t n = make_stream(buf);
    struct rec r = {.stop_after = 2};
    struct bb_eventstream d;
    bb_eventstream_init(&d, 0);
    assert_int_equal(bb_eventstream_feed(&d, buf, n, on_msg, &r), 9);
    assert_int_equal(r.n, 2);
    bb_eventstream_free(&d);
    /* the same when the stopping message was assembled from pieces */
    struct rec r2 = {.stop_after = 1};
    bb_eventstream_init(&d, 0);
    assert_int_equal(bb_eventstream_feed(&d, buf, 10, on_msg, &r2), 0);
    assert_int_equal(bb_eventstream_feed(&d, buf + 10, n - 10, on_msg, &r2), 9);
    assert_int_equal(r2.n, 1);
    bb_eventstream_free(&d);
}

static void test_encoder_limits(void **state)
{
    (void)state;
    struct evbuffer *b = evbuffer_new();
    char big[40000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    const char *names[] = {"x"};
    const char *vals[] = {big};
    assert_int_equal(bb_eventstream_write(b, names, vals, 1, NULL, 0), -1);
    char longname[300];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    const char *names2[] = {longname};
    const char *vals2[] = {"v"};
    assert_int_equal(bb_eventstream_write(b, names2, vals2, 1, NULL, 0), -1);
    assert_int_equal(evbuffer_get_length(b), 0);
    /* a large payload round-trips */
    char *payload = malloc(1 << 20);
    memset(payload, 'p', 1 << 20);
    assert_int_equal(bb_eventstream_write_event(b, "contentBlockDelta", payload, 1 << 20), 0);
    struct bb_eventstream_msg m;
    size_t used;
    const char *why;
    size_t n = evbuffer_get_length(b);
    assert_int_equal(bb_eventstream_parse(evbuffer_pullup(b, -1), n, 0, &m, &used, &why), 1);
    assert_int_equal(m.payload_len, 1 << 20);
    assert_int_equal(used, n);
    free(payload);
    evbuffer_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_message_vector), cmocka_unit_test(test_event_vector),
        cmocka_unit_test(test_header_types),         cmocka_unit_test(test_split_everywhere),
        cmocka_unit_test(test_corruption),           cmocka_unit_test(test_callback_stop),
        cmocka_unit_test(test_encoder_limits),
    };
    return cmocka_run_group_tests_name("eventstream", tests, NULL, NULL);
}
