/*
 * test_sse: the incremental event-stream decoder (common/sse), including a transcript fed
 * split at every byte boundary, in every pair of boundaries, and one byte at a time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/sse.h"

#define MAXEV 16

struct rec {
    int n;
    char event[MAXEV][64], data[MAXEV][128], id[MAXEV][32];
    size_t data_len[MAXEV];
    char raw[1024];
    size_t raw_len; /* all raws concatenated */
    int stop_after; /* return 7 from the callback after this many events (0 = never) */
};

static void copy_str(char *dst, size_t cap, const char *s, size_t n)
{
    assert_true(n < cap);
    memcpy(dst, s, n);
    dst[n] = '\0';
}

static int on_event(void *arg, const struct bb_sse_event *ev)
{
    struct rec *r = arg;
    assert_true(r->n < MAXEV);
    copy_str(r->event[r->n], sizeof r->event[0], ev->event, ev->event_len);
    copy_str(r->data[r->n], sizeof r->data[0], ev->data, ev->data_len);
    copy_str(r->id[r->n], sizeof r->id[0], ev->id, ev->id_len);
    r->data_len[r->n] = ev->data_len;
    assert_true(r->raw_len + ev->raw_len <= sizeof r->raw);
    memcpy(r->raw + r->raw_len, ev->raw, ev->raw_len);
    r->raw_len += ev->raw_len;
    r->n++;
    return r->stop_after && r->n == r->stop_after ? 7 : 0;
}

/* Feed p[0..n) in pieces ending at the given cut points (ascending); each piece is copied to
 * an exact-size heap block so ASan flags any read past it. */
static void feed_cuts(struct bb_sse *s, const char *p, size_t n, const size_t *cuts, int ncuts,
                      struct rec *r)
{
    size_t at = 0;
    for (int k = 0; k <= ncuts; k++) {
        size_t end = k < ncuts ? cuts[k] : n;
        size_t len = end - at;
        char *piece = malloc(len ? len : 1);
        memcpy(piece, p + at, len);
        assert_int_equal(bb_sse_feed(s, piece, len, on_event, r), 0);
        free(piece);
        at = end;
    }
}

static const char transcript[] = "\xEF\xBB\xBF"
                                 ": comment\r\n"
                                 "\r\n"
                                 "event: message_start\r\n"
                                 "data: {\"a\":1}\r\n"
                                 "id: 7\r\n"
                                 "\r\n"
                                 "data:first\n"
                                 "data:  second: with colon\n"
                                 "data\n"
                                 "retry: 100\n"
                                 "unknown: x\n"
                                 "\n"
                                 "event: ping\r"
                                 "\r"
                                 "data: cr line\r"
                                 "data: mixed\r\n"
                                 "\r"
                                 "id\n"
                                 ":only comment\n"
                                 "\n"
                                 "id: x\0y\n"
                                 "data: [DONE]\n"
                                 "\n";

#define TRANSCRIPT_LEN (sizeof transcript - 1)

static const struct {
    const char *event, *data, *id;
} want[] = {
    {"message_start", "{\"a\":1}", "7"},
    {"", "first\n second: with colon\n", ""},
    {"ping", "", ""},
    {"", "cr line\nmixed", ""},
    {"", "[DONE]", ""},
};
#define NWANT (int)(sizeof want / sizeof want[0])

static void check_rec(const struct rec *r)
{
    assert_int_equal(r->n, NWANT);
    for (int i = 0; i < NWANT; i++) {
        assert_string_equal(r->event[i], want[i].event);
        assert_string_equal(r->data[i], want[i].data);
        assert_string_equal(r->id[i], want[i].id);
    }
    /* relaying every raw reproduces the stream byte for byte */
    assert_int_equal(r->raw_len, TRANSCRIPT_LEN);
    assert_memory_equal(r->raw, transcript, TRANSCRIPT_LEN);
}

static void run_cuts(const size_t *cuts, int ncuts)
{
    struct bb_sse s;
    struct rec *r = calloc(1, sizeof *r);
    bb_sse_init(&s, 4096);
    feed_cuts(&s, transcript, TRANSCRIPT_LEN, cuts, ncuts, r);
    check_rec(r);
    assert_int_equal(bb_sse_pending(&s), 0);
    bb_sse_free(&s);
    free(r);
}

static void test_one_shot(void **state)
{
    (void)state;
    run_cuts(NULL, 0);
}

static void test_every_boundary(void **state)
{
    (void)state;
    for (size_t c = 0; c <= TRANSCRIPT_LEN; c++)
        run_cuts(&c, 1);
}

static void test_every_pair_of_boundaries(void **state)
{
    (void)state;
    for (size_t a = 0; a <= TRANSCRIPT_LEN; a++) {
        for (size_t b = a; b <= TRANSCRIPT_LEN; b++) {
            size_t cuts[2] = {a, b};
            run_cuts(cuts, 2);
        }
    }
}

static void test_one_byte_pieces(void **state)
{
    (void)state;
    size_t cuts[TRANSCRIPT_LEN];
    for (size_t i = 0; i < TRANSCRIPT_LEN; i++)
        cuts[i] = i + 1;
    run_cuts(cuts, (int)TRANSCRIPT_LEN - 1);
}

static void test_crlf_split(void **state)
{
    (void)state;
    struct bb_sse s;
    struct rec r = {0};
    bb_sse_init(&s, 0);
    /* CR ends a blank line at the end of a read: the event waits for the next byte */
    assert_int_equal(bb_sse_feed(&s, "data: a\r\n\r", 10, on_event, &r), 0);
    assert_int_equal(r.n, 0);
    assert_int_equal(bb_sse_feed(&s, "\ndata: b\r", 9, on_event, &r), 0);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.data[0], "a");
    assert_int_equal(r.raw_len, 11); /* the LF belonged to the first frame */
    assert_int_equal(bb_sse_feed(&s, "\n", 1, on_event, &r), 0);
    assert_int_equal(bb_sse_feed(&s, "\r", 1, on_event, &r), 0);
    assert_int_equal(r.n, 1);
    assert_int_equal(bb_sse_feed(&s, "d", 1, on_event, &r), 0); /* CR alone ended it */
    assert_int_equal(r.n, 2);
    assert_string_equal(r.data[1], "b");
    assert_int_equal(bb_sse_pending(&s), 1);
    bb_sse_free(&s);
}

static void test_bom_only_at_start(void **state)
{
    (void)state;
    struct bb_sse s;
    struct rec r = {0};
    bb_sse_init(&s, 0);
    /* a partial BOM is an ordinary (unknown) field name: the line is ignored */
    assert_int_equal(bb_sse_feed(&s, "\xEF\xBB", 2, on_event, &r), 0);
    assert_int_equal(bb_sse_feed(&s, "data: x\n\ndata: y\n\n", 18, on_event, &r), 0);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.data[0], "y");
    /* later in the stream a BOM is just bytes of the field name */
    assert_int_equal(bb_sse_feed(&s,
                                 "\xEF\xBB\xBF"
                                 "data: w\n\n",
                                 12, on_event, &r),
                     0);
    assert_int_equal(r.n, 1);
    bb_sse_free(&s);

    memset(&r, 0, sizeof r);
    bb_sse_init(&s, 0);
    assert_int_equal(bb_sse_feed(&s, "\xEF", 1, on_event, &r), 0);
    assert_int_equal(bb_sse_feed(&s, "\xBB", 1, on_event, &r), 0);
    assert_int_equal(bb_sse_feed(&s,
                                 "\xBF"
                                 "data:z\n\n",
                                 9, on_event, &r),
                     0);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.data[0], "z");
    assert_int_equal(r.raw_len, 11); /* the BOM is part of the first raw */
    bb_sse_free(&s);
}

static void test_not_dispatched(void **state)
{
    (void)state;
    struct bb_sse s;
    struct rec r = {0};
    bb_sse_init(&s, 0);
    const char *in = ": keepalive\n\nid: 3\n\nretry: 5\n\n\n\n";
    assert_int_equal(bb_sse_feed(&s, in, strlen(in), on_event, &r), 0);
    assert_int_equal(r.n, 0);
    assert_int_equal(bb_sse_pending(&s), 0); /* nothing cut: blocks ended */
    assert_int_equal(bb_sse_feed(&s, "data: 1\n", 8, on_event, &r), 0);
    assert_int_equal(bb_sse_pending(&s), 8);
    assert_int_equal(bb_sse_feed(&s, "\n", 1, on_event, &r), 0);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.raw_len, strlen(in) + 9);
    assert_int_equal(bb_sse_pending(&s), 0);
    bb_sse_free(&s);
}

static void test_empty_data(void **state)
{
    (void)state;
    struct bb_sse s;
    struct rec r = {0};
    bb_sse_init(&s, 0);
    const char *in = "data\n\ndata:\ndata:\n\n";
    assert_int_equal(bb_sse_feed(&s, in, strlen(in), on_event, &r), 0);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.data_len[0], 0);
    assert_int_equal(r.data_len[1], 1);
    assert_string_equal(r.data[1], "\n");
    bb_sse_free(&s);
}

static void test_max_frame(void **state)
{
    (void)state;
    struct bb_sse s;
    struct rec r = {0};
    bb_sse_init(&s, 16);
    assert_int_equal(bb_sse_feed(&s, "data: 12345678\n\n", 16, on_event, &r), 0);
    assert_int_equal(r.n, 1);
    /* exactly max_frame is fine, one more byte is not, split or not */
    assert_int_equal(bb_sse_feed(&s, "data: 123456789", 15, on_event, &r), 0);
    assert_int_equal(bb_sse_feed(&s, "\n\n", 2, on_event, &r), -1);
    assert_int_equal(bb_sse_feed(&s, "data: x\n\n", 9, on_event, &r), -1); /* sticky */
    assert_int_equal(r.n, 1);
    bb_sse_free(&s);

    /* many small frames in one large read are fine */
    bb_sse_init(&s, 16);
    char big[16 * 10];
    for (int i = 0; i < 10; i++)
        memcpy(big + 16 * i, "data: 12345678\n\n", 16);
    memset(&r, 0, sizeof r);
    assert_int_equal(bb_sse_feed(&s, big, sizeof big, on_event, &r), 0);
    assert_int_equal(r.n, 10);
    bb_sse_free(&s);
}

static void test_callback_stop(void **state)
{
    (void)state;
    struct bb_sse s;
    struct rec r = {0};
    r.stop_after = 1;
    bb_sse_init(&s, 0);
    const char *in = "data: a\n\ndata: b\n\n";
    assert_int_equal(bb_sse_feed(&s, in, strlen(in), on_event, &r), 7);
    assert_int_equal(r.n, 1);
    bb_sse_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_shot),
        cmocka_unit_test(test_every_boundary),
        cmocka_unit_test(test_every_pair_of_boundaries),
        cmocka_unit_test(test_one_byte_pieces),
        cmocka_unit_test(test_crlf_split),
        cmocka_unit_test(test_bom_only_at_start),
        cmocka_unit_test(test_not_dispatched),
        cmocka_unit_test(test_empty_data),
        cmocka_unit_test(test_max_frame),
        cmocka_unit_test(test_callback_stop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
