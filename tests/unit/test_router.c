/*
 * test_router: smooth weighted round-robin order, exclusion of tried members, max_concurrent
 * slots shared through shared memory, and route: usage — rate-limit headers read into the lane
 * cell, expiry, ranking with SWRR among equals (worker/router.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "common/config.h"
#include "common/http_parse.h"
#include "common/shm.h"
#include "worker/router.h"
#include "worker/worker.h"

struct fixture {
    struct bb_conf conf;
    struct bb_lane lanes[3];
    struct bb_member members[3];
    struct bb_pool pool;
    struct bb_runtime rt;
    struct bb_worker w;
};

static int setup(void **state)
{
    static struct fixture f;
    memset(&f, 0, sizeof f);
    static char *names[] = {"a", "b", "c"};
    uint32_t weights[] = {5, 1, 1};
    for (int i = 0; i < 3; i++) {
        f.lanes[i].name = names[i];
        f.lanes[i].upstream_model = names[i];
        f.members[i].lane = i;
        f.members[i].weight = weights[i];
    }
    f.pool.name = "p";
    f.pool.members = f.members;
    f.pool.n_members = 3;
    f.conf.lanes = f.lanes;
    f.conf.n_lanes = 3;
    f.conf.pools = &f.pool;
    f.conf.n_pools = 1;
    f.rt.conf = &f.conf;
    f.rt.shm = bb_shm_create();
    assert_non_null(f.rt.shm);
    for (int i = 0; i < 3; i++) {
        char cell[16];
        assert_non_null(bb_shm_cell_intern(f.rt.shm, names[i]));
        snprintf(cell, sizeof cell, "p/%s", names[i]);
        assert_non_null(bb_shm_cell_intern(f.rt.shm, cell));
    }
    f.w.magic = BB_MAGIC_WORKER;
    f.w.rt = &f.rt;
    f.w.conf = &f.conf;
    assert_int_equal(bb_router_init(&f.w), 0);
    f.w.usage_route = true; /* the tests switch pools to route: usage after init */
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    bb_router_free(&f->w);
    bb_shm_destroy(f->rt.shm);
    return 0;
}

/* Pick, record the lane name, give the slot back: the order a stream of requests sees. */
static void pick_sequence(struct fixture *f, char *out, size_t n)
{
    bool tried[3] = {false, false, false}, probe;
    for (size_t i = 0; i < n; i++) {
        int m = bb_router_pick(&f->w, 0, tried, &probe, 0);
        assert_true(m >= 0);
        out[i] = f->lanes[f->members[m].lane].name[0];
        bb_router_give(&f->w, f->members[m].lane, 0, m);
    }
    out[n] = '\0';
}

static void test_swrr_5_1_1(void **state)
{
    char seq[15];
    pick_sequence(*state, seq, 14);
    /* nginx's smooth weighted round-robin: a a b a c a a, then the cycle repeats */
    assert_string_equal(seq, "aabacaaaabacaa");
}

static void test_swrr_skips_tried(void **state)
{
    struct fixture *f = *state;
    bool tried[3] = {true, false, false}, probe;
    int first = bb_router_pick(&f->w, 0, tried, &probe, 0);
    assert_true(first == 1 || first == 2);
    bb_router_give(&f->w, f->members[first].lane, 0, first);
    tried[1] = tried[2] = true;
    assert_int_equal(bb_router_pick(&f->w, 0, tried, &probe, 0), -1);
}

static void test_max_concurrent_shared(void **state)
{
    struct fixture *f = *state;
    f->lanes[0].max_concurrent = 2;
    /* another worker holds both of lane a's slots: only b and c remain usable */
    struct bb_shm_cell *a = bb_shm_cell_find(f->rt.shm, "a");
    atomic_store(&a->inflight, 2);
    bool tried[3] = {false, false, false}, probe;
    for (int i = 0; i < 10; i++) {
        int m = bb_router_pick(&f->w, 0, tried, &probe, 0);
        assert_true(m == 1 || m == 2);
        bb_router_give(&f->w, f->members[m].lane, 0, m);
    }
    assert_false(bb_router_take(&f->w, 0, -1, -1));
    atomic_store(&a->inflight, 1);
    assert_true(bb_router_take(&f->w, 0, -1, -1));
    assert_int_equal(atomic_load(&a->inflight), 2);
    assert_false(bb_router_take(&f->w, 0, -1, -1));
    bb_router_give(&f->w, 0, -1, -1);
    bb_router_give(&f->w, 0, -1, -1);
    assert_int_equal(atomic_load(&a->inflight), 0);
    f->lanes[0].max_concurrent = 0;
}

static void test_pool_member_counters(void **state)
{
    struct fixture *f = *state;
    struct bb_shm_cell *pa = bb_shm_cell_find(f->rt.shm, "p/a");
    uint64_t before = atomic_load(&pa->attempts);
    assert_true(bb_router_take(&f->w, 0, 0, 0));
    assert_int_equal(atomic_load(&pa->inflight), 1);
    assert_int_equal(atomic_load(&pa->attempts), before + 1);
    bb_router_give(&f->w, 0, 0, 0);
    assert_int_equal(atomic_load(&pa->inflight), 0);
}

/* ---- route: usage */

#define PPM BB_ROUTER_PPM
#define T0 5000000u /* a monotonic "now" on a whole second: 5000 s */

/* Feed a response head carrying `headers` ("Name: value\r\n"...) to lane's reading. */
static void observe(struct fixture *f, int lane, const char *headers, uint64_t now)
{
    char buf[4096];
    BB_HTTP_HEAD(h);
    snprintf(buf, sizeof buf, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n%s\r\n", headers);
    assert_true(bb_http_parse_response(buf, strlen(buf), &h) > 0);
    bb_router_observe_ratelimit(&f->w, lane, &h, now);
}

static uint64_t cell(struct fixture *f, int lane)
{
    return atomic_load(&f->w.lane_cells[lane]->ratelimit);
}

/* The packed word a reading of ppm, resetting reset_ms after now, is stored as. */
static uint64_t packed(uint64_t ppm, uint64_t now, uint64_t reset_ms)
{
    return ppm << 32 | (now + reset_ms + 999) / 1000;
}

static void test_usage_openai_headers(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(bb_router_headroom_ppm(&f->w, 0, T0), PPM); /* never reported: full */
    observe(f, 0,
            "x-ratelimit-limit-requests: 100\r\nx-ratelimit-remaining-requests: 30\r\n"
            "x-ratelimit-limit-tokens: 10000\r\nx-ratelimit-remaining-tokens: 9000\r\n"
            "x-ratelimit-reset-requests: 6m0s\r\nx-ratelimit-reset-tokens: 20ms\r\n",
            T0);
    /* requests are the tighter limit (0.3 < 0.9): its reset (6 min) decides the validity */
    assert_int_equal(cell(f, 0), packed(300000, T0, 360000));
    assert_int_equal(bb_router_headroom_ppm(&f->w, 0, T0), 300000);
    assert_int_equal(bb_router_headroom_ppm(&f->w, 0, T0 + 359999), 300000);
    assert_int_equal(bb_router_headroom_ppm(&f->w, 0, T0 + 360000), PPM); /* expired */
    /* tokens tighter now; names are case-insensitive */
    observe(f, 0,
            "X-RateLimit-Limit-Requests: 100\r\nX-RateLimit-Remaining-Requests: 99\r\n"
            "X-RateLimit-Limit-Tokens: 10000\r\nX-RateLimit-Remaining-Tokens: 250\r\n"
            "X-RateLimit-Reset-Requests: 1s\r\nX-RateLimit-Reset-Tokens: 59m3s\r\n",
            T0);
    assert_int_equal(cell(f, 0), packed(25000, T0, 3543000));
    /* one pair alone is enough; remaining above the limit is full headroom */
    observe(f, 1, "x-ratelimit-limit-tokens: 10\r\nx-ratelimit-remaining-tokens: 11\r\n", T0);
    assert_int_equal(cell(f, 1), packed(PPM, T0, 60000)); /* no reset header: 60 s */
}

static void test_usage_durations(void **state)
{
    struct fixture *f = *state;
    static const struct {
        const char *reset;
        uint64_t ms;
    } cases[] = {
        {"1s", 1000},
        {"6m0s", 360000},
        {"20ms", 20},
        {"0h2m3s", 123000},
        {"7.66s", 7660},
        {"1m30.5s", 90500},
        {"45", 45000},
        {"500us", 1},
        {"0s", 0},
        {"2h", 3600000},
        {"1h2m3s", 3600000}, /* capped at an hour */
        /* malformed: the 60 s default */
        {"abc", 60000},
        {"1x", 60000},
        {"-1s", 60000},
        {"1s2", 60000},
        {"s", 60000},
        {"1.2.3s", 60000},
        {"1.5", 60000},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char h[256];
        /* now 400 ms past a second, so sub-second differences move the rounded-up second */
        uint64_t now = T0 + 400;
        snprintf(h, sizeof h,
                 "x-ratelimit-limit-requests: 10\r\nx-ratelimit-remaining-requests: 5\r\n"
                 "x-ratelimit-reset-requests: %s\r\n",
                 cases[i].reset);
        observe(f, 0, h, now);
        if (cell(f, 0) != packed(500000, now, cases[i].ms))
            fail_msg("reset '%s': got valid-until %llu, want %llu", cases[i].reset,
                     (unsigned long long)(cell(f, 0) & 0xffffffffu),
                     (unsigned long long)(packed(500000, now, cases[i].ms) & 0xffffffffu));
    }
}

/* An RFC 3339 UTC time secs seconds from now (wall clock), with a suffix like "Z". */
static void rfc3339(char *out, size_t n, int64_t secs, const char *frac, const char *zone)
{
    time_t t = (time_t)(bb_wall_ms() / 1000) + secs;
    struct tm tm;
    gmtime_r(&t, &tm);
    char b[24];
    strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, n, "%s%s%s", b, frac, zone);
}

/* valid-until seconds of lane 0's reading, which was taken at T0 */
static uint64_t until_secs(struct fixture *f)
{
    return (cell(f, 0) & 0xffffffffu) - T0 / 1000;
}

static void test_usage_anthropic_headers(void **state)
{
    struct fixture *f = *state;
    char t[64], h[1024];
    rfc3339(t, sizeof t, 120, "", "Z");
    snprintf(h, sizeof h,
             "anthropic-ratelimit-requests-limit: 50\r\n"
             "anthropic-ratelimit-requests-remaining: 5\r\n"
             "anthropic-ratelimit-requests-reset: %s\r\n"
             "anthropic-ratelimit-tokens-limit: 10000\r\n"
             "anthropic-ratelimit-tokens-remaining: 8000\r\n"
             "anthropic-ratelimit-tokens-reset: not-a-time\r\n",
             t);
    observe(f, 0, h, T0);
    assert_int_equal(cell(f, 0) >> 32, 100000); /* 5/50 */
    /* reset 120 s ahead, seen up to a second later by the wall clock */
    assert_true(until_secs(f) >= 119 && until_secs(f) <= 120);

    /* input/output token variants; an offset and a fraction; equal headroom: later reset */
    char t2[64];
    time_t plus1h = 3600; /* the same instant written in +01:00 */
    rfc3339(t, sizeof t, 300 + plus1h, ".250", "+01:00");
    rfc3339(t2, sizeof t2, 30, "", "z");
    snprintf(h, sizeof h,
             "anthropic-ratelimit-input-tokens-limit: 1000\r\n"
             "anthropic-ratelimit-input-tokens-remaining: 100\r\n"
             "anthropic-ratelimit-input-tokens-reset: %s\r\n"
             "anthropic-ratelimit-output-tokens-limit: 400\r\n"
             "anthropic-ratelimit-output-tokens-remaining: 40\r\n"
             "anthropic-ratelimit-output-tokens-reset: %s\r\n",
             t, t2);
    observe(f, 0, h, T0);
    assert_int_equal(cell(f, 0) >> 32, 100000);
    assert_true(until_secs(f) >= 300 && until_secs(f) <= 301);

    /* unreadable reset: 60 s */
    observe(f, 0,
            "anthropic-ratelimit-requests-limit: 4\r\nanthropic-ratelimit-requests-remaining: 3\r\n"
            "anthropic-ratelimit-requests-reset: 2024-13-01T00:00:00Z\r\n",
            T0);
    assert_int_equal(cell(f, 0), packed(750000, T0, 60000));

    /* a reset already past: the window has refilled, the reading is expired at once */
    rfc3339(t, sizeof t, -5, "", "Z");
    snprintf(
        h, sizeof h,
        "anthropic-ratelimit-requests-limit: 4\r\nanthropic-ratelimit-requests-remaining: 1\r\n"
        "anthropic-ratelimit-requests-reset: %s\r\n",
        t);
    observe(f, 0, h, T0);
    assert_int_equal(cell(f, 0) >> 32, 250000);
    assert_int_equal(bb_router_headroom_ppm(&f->w, 0, T0), PPM);
}

static void test_usage_malformed_ignored(void **state)
{
    struct fixture *f = *state;
    observe(f, 0, "x-ratelimit-limit-requests: 10\r\nx-ratelimit-remaining-requests: 2\r\n", T0);
    uint64_t before = cell(f, 0);
    assert_int_equal(before, packed(200000, T0, 60000));
    static const char *const bad[] = {
        "",                                   /* no rate-limit headers at all */
        "x-ratelimit-limit-requests: 10\r\n", /* half a pair */
        "x-ratelimit-limit-requests: 10\r\nx-ratelimit-remaining-requests: 2abc\r\n",
        "x-ratelimit-limit-requests: 0\r\nx-ratelimit-remaining-requests: 0\r\n",
        "x-ratelimit-limit-requests: -10\r\nx-ratelimit-remaining-requests: 1\r\n",
        "x-ratelimit-limit-requests: 1.5\r\nx-ratelimit-remaining-requests: 1\r\n",
        "x-ratelimit-limit-requests: 18446744073709551616\r\nx-ratelimit-remaining-requests: 1\r\n",
        "anthropic-ratelimit-requests-limit: 10\r\nx-ratelimit-remaining-requests: 1\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        observe(f, 0, bad[i], T0 + 1000);
        if (cell(f, 0) != before)
            fail_msg("headers %zu changed the reading", i);
    }
    /* a malformed pair next to a good one: the good one counts */
    observe(f, 0,
            "x-ratelimit-limit-requests: 10\r\nx-ratelimit-remaining-requests: x\r\n"
            "x-ratelimit-limit-tokens: 1000\r\nx-ratelimit-remaining-tokens: 600\r\n",
            T0);
    assert_int_equal(cell(f, 0), packed(600000, T0, 60000));
    /* huge counters do not overflow the ratio */
    observe(f, 0,
            "x-ratelimit-limit-tokens: 18000000000000000000\r\n"
            "x-ratelimit-remaining-tokens: 9000000000000000000\r\n",
            T0);
    assert_int_equal(cell(f, 0) >> 32, 500000);
}

/* Usage route over a, b, c (weights 5, 1, 1) with the given headroom per lane (% of limit,
 * -1 = never reported), readings taken now. */
static void usage_pool(struct fixture *f, const int pct[3])
{
    f->pool.route = BB_ROUTE_USAGE;
    for (int i = 0; i < 3; i++) {
        char h[256];
        if (pct[i] < 0)
            continue;
        snprintf(h, sizeof h,
                 "x-ratelimit-limit-requests: 100\r\nx-ratelimit-remaining-requests: %d\r\n"
                 "x-ratelimit-reset-requests: 10m\r\n",
                 pct[i]);
        observe(f, i, h, bb_now_ms());
    }
}

static void test_usage_ranks_by_headroom(void **state)
{
    struct fixture *f = *state;
    usage_pool(f, (const int[]){20, 90, 90});
    char seq[9];
    pick_sequence(f, seq, 8);
    /* b and c share the top headroom: SWRR between them (weights 1, 1); a (weight 5, but
     * only 20 % left) is never first */
    assert_string_equal(seq, "bcbcbcbc");
    /* a is demoted, not dropped: with b and c tried it is picked */
    bool tried[3] = {false, true, true}, probe;
    assert_int_equal(bb_router_pick(&f->w, 0, tried, &probe, 0), 0);
    bb_router_give(&f->w, 0, 0, 0);
    /* b full (another worker holds its only slot): c alone at the top */
    f->lanes[1].max_concurrent = 1;
    atomic_store(&f->w.lane_cells[1]->inflight, 1);
    pick_sequence(f, seq, 3);
    assert_string_equal(seq, "ccc");
    atomic_store(&f->w.lane_cells[1]->inflight, 0);
    f->lanes[1].max_concurrent = 0;
}

static void test_usage_ties_follow_weights(void **state)
{
    struct fixture *f = *state;
    usage_pool(f, (const int[]){50, 50, 10});
    char seq[13];
    pick_sequence(f, seq, 12);
    /* a and b tie: SWRR with weights 5 and 1 — a a a b a a, repeating; c never */
    assert_string_equal(seq, "aaabaaaaabaa");
}

static void test_usage_unknown_is_full(void **state)
{
    struct fixture *f = *state;
    /* nothing reported: every lane at full headroom, the plain weighted order */
    usage_pool(f, (const int[]){-1, -1, -1});
    char seq[15];
    pick_sequence(f, seq, 14);
    assert_string_equal(seq, "aabacaaaabacaa");
}

static void test_usage_expiry_and_flip(void **state)
{
    struct fixture *f = *state;
    usage_pool(f, (const int[]){10, 60, 30});
    char seq[4];
    pick_sequence(f, seq, 3);
    assert_string_equal(seq, "bbb");
    /* b's provider now reports less than c's: traffic moves to c */
    observe(f, 1, "x-ratelimit-limit-requests: 100\r\nx-ratelimit-remaining-requests: 5\r\n",
            bb_now_ms());
    pick_sequence(f, seq, 3);
    assert_string_equal(seq, "ccc");
    /* a's reading, taken two minutes ago with a 60 s reset, has expired: a is full again */
    observe(f, 0, "x-ratelimit-limit-requests: 100\r\nx-ratelimit-remaining-requests: 1\r\n",
            bb_now_ms() - 120000);
    assert_int_equal(bb_router_headroom_ppm(&f->w, 0, bb_now_ms()), PPM);
    pick_sequence(f, seq, 3);
    assert_string_equal(seq, "aaa");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_swrr_5_1_1, setup, teardown),
        cmocka_unit_test_setup_teardown(test_swrr_skips_tried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_concurrent_shared, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_member_counters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_openai_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_durations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_anthropic_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_malformed_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_ranks_by_headroom, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_ties_follow_weights, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_unknown_is_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_expiry_and_flip, setup, teardown),
    };
    return cmocka_run_group_tests_name("router", tests, NULL, NULL);
}
