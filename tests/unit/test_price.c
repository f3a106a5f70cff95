/*
 * test_price: micro-dollar spend arithmetic (common/price.c) to the micro-dollar, exact USD
 * parsing, and the built-in catalogue (etc/prices.yaml) with its model-name matching.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "common/price.h"

static void test_cost(void **state)
{
    (void)state;
    /* $2.50 in, $10 out, $1.25 cache read, $3.125 cache write, per 1M tokens. */
    struct bb_price_micros p = {2500000, 10000000, 1250000, 3125000};
    struct bb_usage_tokens u = {0};
    assert_int_equal(bb_price_cost(&p, &u), 0);
    u.input = 1000000;
    assert_int_equal(bb_price_cost(&p, &u), 2500000);
    u = (struct bb_usage_tokens){.input = 1};
    assert_int_equal(bb_price_cost(&p, &u), 3); /* 2.5 µ$ rounds up */
    u = (struct bb_usage_tokens){.input = 2};
    assert_int_equal(bb_price_cost(&p, &u), 5);
    /* 1234 in, 567 out, 89 cache read, 10 cache write:
     * 1234*2.5 + 567*10 + 89*1.25 + 10*3.125 = 3085 + 5670 + 111.25 + 31.25 = 8897.5 → 8898 */
    u = (struct bb_usage_tokens){1234, 567, 89, 10, 400};
    assert_int_equal(bb_price_cost(&p, &u), 8898);
    /* Rounded once over the sum, not per tier: 1 cache-read token + 1 cache-write token
     * = 1.25 + 3.125 = 4.375 → 5 (per-tier rounding would give 2 + 4 = 6). */
    u = (struct bb_usage_tokens){.cache_read = 1, .cache_write = 1};
    assert_int_equal(bb_price_cost(&p, &u), 5);
    /* Reasoning tokens are part of output: never billed twice. */
    u = (struct bb_usage_tokens){.output = 100, .reasoning = 100};
    assert_int_equal(bb_price_cost(&p, &u), 1000);
    /* Large numbers do not overflow: 10^12 tokens at $1000/M = $10^9 = 10^15 µ$. */
    struct bb_price_micros big = {1000000000, 0, 0, 0};
    u = (struct bb_usage_tokens){.input = 1000000000000ull};
    assert_int_equal(bb_price_cost(&big, &u), 1000000000000000ull);
    u = (struct bb_usage_tokens){.input = UINT64_MAX, .output = UINT64_MAX};
    struct bb_price_micros huge = {UINT64_MAX, UINT64_MAX, 0, 0};
    assert_int_equal(bb_price_cost(&huge, &u), UINT64_MAX); /* saturates */
    /* Worst case: the dearest input-side tier (cache write here) plus output. */
    assert_int_equal(bb_price_worst_case(&p, 1000, 100), 3125 + 1000);
    struct bb_price_micros cheap_cache = {2500000, 10000000, 250000, 0};
    assert_int_equal(bb_price_worst_case(&cheap_cache, 1000, 0), 2500);
    assert_int_equal(bb_price_from_usd(2.5), 2500000);
    assert_int_equal(bb_price_from_usd(0.075), 75000);
    assert_int_equal(bb_price_from_usd(0.0000007), 1); /* nearest micro-dollar */
    assert_int_equal(bb_price_from_usd(0.0000004), 0);
    assert_int_equal(bb_price_from_usd(0), 0);
}

static void test_usd(void **state)
{
    (void)state;
    uint64_t m;
    assert_int_equal(bb_price_usd_parse("12", &m), 0);
    assert_int_equal(m, 12000000);
    assert_int_equal(bb_price_usd_parse("12.5", &m), 0);
    assert_int_equal(m, 12500000);
    assert_int_equal(bb_price_usd_parse("0.000001", &m), 0);
    assert_int_equal(m, 1);
    assert_int_equal(bb_price_usd_parse("$3.10", &m), 0);
    assert_int_equal(m, 3100000);
    assert_int_equal(bb_price_usd_parse(".5", &m), 0);
    assert_int_equal(m, 500000);
    assert_int_equal(bb_price_usd_parse("0", &m), 0);
    assert_int_equal(m, 0);
    const char *bad[] = {"",      "-1", "1.0000001", "abc", "1e3",
                         "1.2.3", ".",  "$",         " 1",  "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(bb_price_usd_parse(bad[i], &m), -1);
    char buf[32];
    bb_price_usd_format(12500000, buf, sizeof buf);
    assert_string_equal(buf, "12.500000");
    bb_price_usd_format(1, buf, sizeof buf);
    assert_string_equal(buf, "0.000001");
}

static void expect_price(const struct bb_price_table *t, const char *model, uint64_t in,
                         uint64_t out)
{
    const struct bb_price_micros *p = bb_price_lookup(t, model);
    if (!p)
        fail_msg("no price for %s", model);
    if (p->input != in || p->output != out)
        fail_msg("%s: got %llu/%llu, want %llu/%llu", model, (unsigned long long)p->input,
                 (unsigned long long)p->output, (unsigned long long)in, (unsigned long long)out);
}

static void test_catalogue(void **state)
{
    (void)state;
    struct bb_price_table t;
    struct bb_err err = {{0}};
    if (bb_price_table_builtin(&t, &err) < 0)
        fail_msg("%s", err.msg);
    assert_true(t.n > 50);
    expect_price(&t, "gpt-4o", 2500000, 10000000);
    expect_price(&t, "gpt-4o-2024-08-06", 2500000, 10000000);
    expect_price(&t, "gpt-4o-mini-2024-07-18", 150000, 600000);
    expect_price(&t, "claude-sonnet-4-5-20250929", 3000000, 15000000);
    expect_price(&t, "claude-3-5-haiku-latest", 800000, 4000000);
    expect_price(&t, "us.anthropic.claude-3-5-sonnet-20240620-v1:0", 3000000, 15000000);
    expect_price(&t, "anthropic.claude-haiku-4-5-20251001-v1:0", 1000000, 5000000);
    expect_price(&t, "meta.llama3-1-70b-instruct-v1:0", 720000, 720000);
    expect_price(&t, "models/gemini-2.5-flash", 300000, 2500000);
    expect_price(&t, "gemini-2.5-flash-preview-05-20", 300000, 2500000);
    expect_price(&t, "gemini-2.5-flash-lite", 100000, 400000);
    expect_price(&t, "openai/gpt-oss-120b", 150000, 750000); /* the Groq entry, exact */
    expect_price(&t, "mistral-large-latest", 2000000, 6000000);
    expect_price(&t, "command-a-03-2025", 2500000, 10000000);
    expect_price(&t, "cohere.command-r-plus-v1:0", 3000000, 15000000);
    expect_price(&t, "deepseek-chat", 280000, 420000);
    /* Cache tiers: explicit, and defaulting to input. */
    const struct bb_price_micros *p = bb_price_lookup(&t, "claude-sonnet-4-5");
    assert_int_equal(p->cache_read, 300000);
    assert_int_equal(p->cache_write, 3750000);
    p = bb_price_lookup(&t, "gpt-4o");
    assert_int_equal(p->cache_write, 2500000);
    /* A different model is never priced as its prefix. */
    assert_null(bb_price_lookup(&t, "gpt-4o-mini-realtime-preview"));
    assert_null(bb_price_lookup(&t, "gpt-4o-audio"));
    assert_null(bb_price_lookup(&t, "no-such-model"));
    assert_null(bb_price_lookup(&t, ""));

    /* A lane's own price wins; otherwise its upstream model's. */
    struct bb_lane lane = {.name = "x", .upstream_model = "gpt-4o-2024-11-20"};
    struct bb_lane_price lp;
    bb_price_for_lane(&t, &lane, &lp);
    assert_true(lp.known && lp.from_catalogue);
    assert_int_equal(lp.p.output, 10000000);
    lane.price = (struct bb_price){true, 3.0, 15.0, 0.3, 3.75};
    bb_price_for_lane(&t, &lane, &lp);
    assert_true(lp.known && !lp.from_catalogue);
    assert_int_equal(lp.p.cache_write, 3750000);
    lane.price.set = false;
    lane.upstream_model = "my-local-model";
    bb_price_for_lane(&t, &lane, &lp);
    assert_false(lp.known);
    bb_price_table_free(&t);
}

static void expect_parse_error(const char *text, const char *frag)
{
    struct bb_price_table t;
    struct bb_err err = {{0}};
    assert_int_equal(bb_price_table_parse(&t, text, strlen(text), "p.yaml", &err), -1);
    if (!strstr(err.msg, frag))
        fail_msg("error '%s' lacks '%s'", err.msg, frag);
    assert_null(t.v);
}

/* max_output: the model's largest output, found as prices are (prefixes, version suffixes) */
static void test_max_output(void **state)
{
    (void)state;
    struct bb_price_table t;
    struct bb_err err = {""};
    const char *y = "models:\n  m-big: { input: 1, output: 2, max_output: 64000 }\n"
                    "  m-small: { input: 1, output: 2 }\n";
    assert_int_equal(bb_price_table_parse(&t, y, strlen(y), "t.yaml", &err), 0);
    assert_int_equal(bb_price_max_output(&t, "m-big"), 64000);
    assert_int_equal(bb_price_max_output(&t, "m-big-20250101"), 64000);
    assert_int_equal(bb_price_max_output(&t, "m-small"), 0);
    assert_int_equal(bb_price_max_output(&t, "nope"), 0);
    bb_price_table_free(&t);
    const char *bad = "models:\n  m: { input: 1, output: 2, max_output: -5 }\n";
    assert_int_equal(bb_price_table_parse(&t, bad, strlen(bad), "t.yaml", &err), -1);
    assert_non_null(strstr(err.msg, "t.yaml:2: m.max_output: expected a positive integer"));
    /* the built-in catalogue: Claude models on Anthropic and Bedrock */
    assert_int_equal(bb_price_table_builtin(&t, &err), 0);
    assert_int_equal(bb_price_max_output(&t, "claude-sonnet-4-5-20250929"), 64000);
    assert_int_equal(bb_price_max_output(&t, "us.anthropic.claude-sonnet-4-5-20250929-v1:0"),
                     64000);
    assert_int_equal(bb_price_max_output(&t, "claude-3-haiku-20240307"), 4096);
    bb_price_table_free(&t);
}

static void test_catalogue_errors(void **state)
{
    (void)state;
    expect_parse_error("models:\n  a: { input: 1 }\n", "p.yaml:2: a: input and output");
    expect_parse_error("models:\n  a: { input: 1, output: x }\n", "a.output: expected a price");
    expect_parse_error("models:\n  a: { input: 1, output: 2, cached: 1 }\n", "unknown key");
    expect_parse_error("models:\n  a: { input: 1, output: 2 }\n  a: { input: 1, output: 2 }\n",
                       "listed twice");
    expect_parse_error("prices: {}\n", "top-level 'models:'");
    expect_parse_error("models: [\n", "p.yaml:");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cost),       cmocka_unit_test(test_usd),
        cmocka_unit_test(test_catalogue),  cmocka_unit_test(test_catalogue_errors),
        cmocka_unit_test(test_max_output),
    };
    return cmocka_run_group_tests_name("price", tests, NULL, NULL);
}
