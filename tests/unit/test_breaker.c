/*
 * test_breaker: the shared-memory breaker's state machine on an injected clock
 * (worker/breaker.c), and fault classification (worker/classify.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/shm.h"
#include "worker/breaker.h"
#include "worker/classify.h"

static struct bb_breaker_conf rate = {false, 30, 0.5, 5, 3, 15, 120, 1800};
static struct bb_breaker_conf consec = {true, 30, 0.5, 5, 3, 10, 40, 1800};

static int setup(void **state)
{
    struct bb_shm *shm = bb_shm_create();
    assert_non_null(shm);
    *state = shm;
    return 0;
}

static int teardown(void **state)
{
    bb_shm_destroy(*state);
    return 0;
}

static struct bb_shm_cell *cell(void **state)
{
    return bb_shm_cell_intern(*state, "p/a");
}

static void test_error_rate_trips_after_min_requests(void **state)
{
    struct bb_shm_cell *c = cell(state);
    uint64_t t = 1000000;
    for (int i = 0; i < 4; i++) {
        assert_int_equal(bb_breaker_admit(c, t), BB_ADMIT_YES);
        bb_breaker_failure(c, &rate, t, false, 0, 0);
    }
    /* 4 failures < min_requests 5: still closed */
    assert_int_equal(atomic_load(&c->breaker_state), BB_BREAKER_CLOSED);
    bb_breaker_failure(c, &rate, t, false, 0, 0);
    assert_int_equal(atomic_load(&c->breaker_state), BB_BREAKER_OPEN);
    assert_int_equal(bb_breaker_wait_ms(c, t), 15000); /* base cooldown, no jitter */
    assert_int_equal(bb_breaker_admit(c, t + 14999), BB_ADMIT_NO);
}

static void test_error_rate_below_threshold_stays_closed(void **state)
{
    struct bb_shm_cell *c = cell(state);
    uint64_t t = 2000000;
    for (int i = 0; i < 6; i++)
        bb_breaker_success(c, &rate, t, false);
    for (int i = 0; i < 5; i++)
        bb_breaker_failure(c, &rate, t, false, 0, 0);
    /* 5 of 11 = 0.45 < 0.5 */
    assert_int_equal(atomic_load(&c->breaker_state), BB_BREAKER_CLOSED);
    bb_breaker_failure(c, &rate, t, false, 0, 0); /* 6 of 12 = 0.5 */
    assert_int_equal(atomic_load(&c->breaker_state), BB_BREAKER_OPEN);
}

static void test_window_forgets_old_failures(void **state)
{
    struct bb_shm_cell *c = cell(state);
    uint64_t t = 3000000;
    for (int i = 0; i < 4; i++)
        bb_breaker_failure(c, &rate, t, false, 0, 0);
    t += 31000; /* past the 30 s window */
    bb_breaker_failure(c, &rate, t, false, 0, 0);
    assert_int_equal(atomic_load(&c->breaker_state), BB_BREAKER_CLOSED);
}

static void test_single_probe_then_close(void **state)
{
    struct bb_shm_cell *c = cell(state);
    uint64_t t = 4000000;
    for (int i = 0; i < 3; i++)
        bb_breaker_failure(c, &consec, t, false, 0, 0);
    assert_int_equal(atomic_load(&c->breaker_state), BB_BREAKER_OPEN);
    t += 10000;
    assert_int_equal(bb_breaker_admit(c, t), BB_ADMIT_PROBE);
    /* exactly one probe: everyone else waits */
    assert_int_equal(bb_breaker_admit(c, t), BB_ADMIT_NO);
    assert_false(bb_breaker_usable(c, t));
    bb_breaker_success(c, &consec, t, true);
    assert_int_equal(atomic_load(&c->breaker_state), BB_BREAKER_CLOSED);
    assert_int_equal(bb_breaker_admit(c, t), BB_ADMIT_YES);
}

static void test_failed_probe_doubles_cooldown_up_to_max(void **state)
{
    struct bb_shm_cell *c = cell(state);
    uint64_t t = 5000000;
    for (int i = 0; i < 3; i++)
        bb_breaker_failure(c, &consec, t, false, 0, 0);
    uint64_t want[] = {20000, 40000, 40000}; /* base 10 s · 2^streak, capped at 40 s */
    for (int k = 0; k < 3; k++) {
        t += bb_breaker_wait_ms(c, t);
        assert_int_equal(bb_breaker_admit(c, t), BB_ADMIT_PROBE);
        bb_breaker_failure(c, &consec, t, true, 0, 0);
        assert_int_equal(bb_breaker_wait_ms(c, t), want[k]);
    }
}

static void test_jitter_and_retry_after_floor(void **state)
{
    struct bb_shm_cell *c = cell(state);
    uint64_t t = 6000000;
    bb_breaker_failure(c, &consec, t, false, 0, 1.0);
    bb_breaker_failure(c, &consec, t, false, 0, 1.0);
    bb_breaker_failure(c, &consec, t, false, 0, 1.0);
    assert_int_equal(bb_breaker_wait_ms(c, t), 11000); /* +10 % */
    t += 11000;
    assert_int_equal(bb_breaker_admit(c, t), BB_ADMIT_PROBE);
    bb_breaker_failure(c, &consec, t, true, 90000, -1.0);
    assert_int_equal(bb_breaker_wait_ms(c, t), 90000); /* Retry-After floors 18 s */
}

static void test_retry_after_alone_opens(void **state)
{
    struct bb_shm_cell *c = cell(state);
    uint64_t t = 7000000;
    bb_breaker_failure(c, &rate, t, false, 2000, 0); /* one 429 with Retry-After: 2 */
    assert_false(bb_breaker_usable(c, t + 1999));
    assert_true(bb_breaker_usable(c, t + 2000));
}

static void test_hard_down_and_released_probe(void **state)
{
    struct bb_shm_cell *c = cell(state);
    uint64_t t = 8000000;
    bb_breaker_hard_down(c, t, 1800000);
    assert_int_equal(bb_breaker_admit(c, t + 1799999), BB_ADMIT_NO);
    assert_int_equal(bb_breaker_admit(c, t + 1800000), BB_ADMIT_PROBE);
    bb_breaker_release_probe(c); /* the client left: no verdict */
    assert_int_equal(bb_breaker_admit(c, t + 1800001), BB_ADMIT_PROBE);
}

/* Two processes race for the probe on the same shared cell: exactly one wins. */
static void test_one_probe_across_processes(void **state)
{
    struct bb_shm_cell *c = cell(state);
    struct bb_shm *shm = *state;
    uint64_t t = 9000000;
    for (int i = 0; i < 3; i++)
        bb_breaker_failure(c, &consec, t, false, 0, 0);
    t += 10000;
    struct bb_shm_cell *wins = bb_shm_cell_intern(shm, "wins");
    pid_t kids[4];
    for (int k = 0; k < 4; k++) {
        kids[k] = fork();
        if (kids[k] == 0) {
            if (bb_breaker_admit(c, t) == BB_ADMIT_PROBE)
                atomic_fetch_add(&wins->ok, 1);
            _exit(0);
        }
    }
    for (int k = 0; k < 4; k++)
        waitpid(kids[k], NULL, 0);
    assert_int_equal(atomic_load(&wins->ok), 1);
}

static void test_classify(void **state)
{
    (void)state;
    struct bb_provider openai_p = {.protocol = BB_PROTO_OPENAI};
    struct bb_provider anthropic_p = {.protocol = BB_PROTO_ANTHROPIC};
    struct bb_error_map em[] = {{"my_quota_code", BB_FC_BILLING}, {"api_error", BB_FC_OVERLOADED}};
    struct bb_provider mapped = {.protocol = BB_PROTO_ANTHROPIC, .error_map = em, .n_error_map = 2};
    const char *custom = "{\"type\":\"error\",\"error\":{\"type\":\"api_error\","
                         "\"message\":\"x\"}}";
    /* error_map: the provider's type wins over the status fallback (500 → server_error) */
    assert_int_equal(bb_classify_http(&mapped, 500, custom, strlen(custom)), BB_FC_OVERLOADED);
    assert_int_equal(bb_classify_http(&anthropic_p, 500, custom, strlen(custom)), BB_FC_SERVER);
    const char *ctx = "{\"error\":{\"message\":\"This model's maximum context length is 8192 "
                      "tokens\",\"type\":\"invalid_request_error\",\"code\":"
                      "\"context_length_exceeded\"}}";
    assert_int_equal(bb_classify_http(&openai_p, 400, ctx, strlen(ctx)), BB_FC_CONTEXT);
    const char *too_long = "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\","
                           "\"message\":\"prompt is too long: 210000 tokens > 200000 maximum\"}}";
    assert_int_equal(bb_classify_http(&anthropic_p, 400, too_long, strlen(too_long)),
                     BB_FC_CONTEXT);
    const char *quota = "{\"error\":{\"message\":\"You exceeded your current quota\",\"type\":"
                        "\"insufficient_quota\",\"code\":\"insufficient_quota\"}}";
    assert_int_equal(bb_classify_http(&openai_p, 429, quota, strlen(quota)), BB_FC_BILLING);
    const char *plain = "{\"error\":{\"message\":\"bad\",\"type\":\"invalid_request_error\"}}";
    assert_int_equal(bb_classify_http(&openai_p, 400, plain, strlen(plain)), BB_FC_CLIENT);
    assert_int_equal(bb_classify_http(&openai_p, 401, "", 0), BB_FC_AUTH);
    assert_int_equal(bb_classify_http(&openai_p, 403, "", 0), BB_FC_AUTH);
    assert_int_equal(bb_classify_http(&openai_p, 429, "", 0), BB_FC_RATE_LIMIT);
    assert_int_equal(bb_classify_http(&openai_p, 408, "", 0), BB_FC_TIMEOUT);
    assert_int_equal(bb_classify_http(&anthropic_p, 529, "", 0), BB_FC_OVERLOADED);
    assert_int_equal(bb_classify_http(&openai_p, 502, "", 0), BB_FC_SERVER);
    const char *ovl = "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","
                      "\"message\":\"Overloaded\"}}";
    assert_int_equal(bb_classify_http(&anthropic_p, 500, ovl, strlen(ovl)), BB_FC_OVERLOADED);
}

static void test_retry_after(void **state)
{
    (void)state;
    assert_int_equal(bb_retry_after_ms("2", 0), 2000);
    assert_int_equal(bb_retry_after_ms(" 1.5 ", 0), 1500);
    assert_int_equal(bb_retry_after_ms("", 0), 0);
    assert_int_equal(bb_retry_after_ms("soon", 0), 0);
    /* Wed, 21 Oct 2015 07:28:00 GMT = 1445412480 */
    assert_int_equal(bb_retry_after_ms("Wed, 21 Oct 2015 07:28:00 GMT", 1445412470), 10000);
    assert_int_equal(bb_retry_after_ms("Wed, 21 Oct 2015 07:28:00 GMT", 1445412490), 0);
    assert_int_equal(bb_retry_after_ms("999999999", 0), 86400000);
    /* beyond uint64_t as milliseconds: saturated before the conversion (UBSan checks) */
    assert_int_equal(bb_retry_after_ms("99999999999999999999", 0), 86400000);
    assert_int_equal(bb_retry_after_ms("1e999", 0), 86400000);
    assert_int_equal(bb_retry_after_ms("18446744073709551616", 0), 86400000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_error_rate_trips_after_min_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_rate_below_threshold_stays_closed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_window_forgets_old_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_single_probe_then_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_probe_doubles_cooldown_up_to_max, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_jitter_and_retry_after_floor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_after_alone_opens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hard_down_and_released_probe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_probe_across_processes, setup, teardown),
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_retry_after),
    };
    return cmocka_run_group_tests_name("breaker", tests, NULL, NULL);
}
