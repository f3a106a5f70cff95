/*
 * test_keys_shm: the shared-memory key table (common/keys_shm.c) on an injected clock:
 * lookup (secret and AWS id), admission order, RPM/TPM windows, budget reservation, settle
 * and release, UTC period rollover, slot reuse, and a budget that is never overshot while 8
 * forked processes hammer it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/keys_shm.h"

/* 2026-03-15T12:00:10Z in ms: mid-minute, mid-day, mid-month. */
#define T0 (1773576010000ull)
#define MIN 60000ull
#define DAY 86400000ull

static int setup(void **state)
{
    struct bb_keys_table *t = bb_keys_table_create();
    assert_non_null(t);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    bb_keys_table_destroy(*state);
    return 0;
}

/* A key with the given secret (lim zeroed otherwise: unlimited, enabled, every pool). */
static struct bb_keys_limits key(const char *secret, const char *id)
{
    struct bb_keys_limits l;
    memset(&l, 0, sizeof l);
    bb_keys_hash_secret(secret, strlen(secret), l.secret_sha256);
    snprintf(l.id, sizeof l.id, "%s", id);
    l.enabled = 1;
    return l;
}

static void put(struct bb_keys_table *t, const struct bb_keys_limits *l, uint64_t spent,
                uint64_t now)
{
    assert_true(bb_keys_put(t, l, spent, now) >= 0);
}

static struct bb_keys_ref ref(struct bb_keys_table *t, const char *secret)
{
    struct bb_keys_ref r;
    assert_int_equal(bb_keys_lookup(t, secret, strlen(secret), &r), 0);
    return r;
}

static enum bb_keys_verdict admit(const struct bb_keys_ref *r, const char *pool, uint64_t tokens,
                                  uint64_t cost, uint64_t now, struct bb_keys_resv *res,
                                  uint32_t *retry)
{
    *retry = 0;
    return bb_keys_admit(r, pool, pool ? strlen(pool) : 0, tokens, cost, now, res, retry);
}

static void test_lookup(void **state)
{
    struct bb_keys_table *t = *state;
    struct bb_keys_limits a = key("sk-bb-aaaa", "vk_000000000000000a");
    struct bb_keys_limits b = key("sk-bb-bbbb", "vk_000000000000000b");
    snprintf(b.aws_access_key_id, sizeof b.aws_access_key_id, "AKIAEXAMPLE000000001");
    snprintf(b.aws_secret, sizeof b.aws_secret, "secret-of-b");
    assert_int_equal(bb_keys_put(t, &a, 0, T0), 1);
    assert_int_equal(bb_keys_put(t, &b, 0, T0), 1);
    assert_int_equal(bb_keys_put(t, &a, 0, T0), 0); /* unchanged: nothing to do */
    assert_int_equal(atomic_load(&t->n_live), 2);

    struct bb_keys_ref r;
    assert_int_equal(bb_keys_lookup(t, "sk-bb-aaaa", 10, &r), 0);
    assert_string_equal(r.lim.id, "vk_000000000000000a");
    assert_int_equal(bb_keys_lookup(t, "sk-bb-aaab", 10, &r), -1);
    assert_int_equal(bb_keys_lookup(t, "sk-bb-aaa", 9, &r), -1);
    assert_int_equal(bb_keys_lookup(t, "", 0, &r), -1);
    assert_int_equal(bb_keys_lookup_aws(t, "AKIAEXAMPLE000000001", 20, &r), 0);
    assert_string_equal(r.lim.id, "vk_000000000000000b");
    assert_string_equal(r.lim.aws_secret, "secret-of-b");
    assert_int_equal(bb_keys_lookup_aws(t, "AKIAEXAMPLE000000002", 20, &r), -1);

    /* An AWS id already used by another key is refused. */
    struct bb_keys_limits c = key("sk-bb-cccc", "vk_000000000000000c");
    snprintf(c.aws_access_key_id, sizeof c.aws_access_key_id, "AKIAEXAMPLE000000001");
    assert_int_equal(bb_keys_put(t, &c, 0, T0), -1);

    /* Revocation: gone for lookups at once, and a ref taken before is refused at admit. */
    struct bb_keys_ref before = ref(t, "sk-bb-bbbb");
    assert_int_equal(bb_keys_remove(t, b.secret_sha256), 0);
    assert_int_equal(bb_keys_remove(t, b.secret_sha256), -1);
    assert_int_equal(bb_keys_lookup(t, "sk-bb-bbbb", 10, &r), -1);
    assert_int_equal(bb_keys_lookup_aws(t, "AKIAEXAMPLE000000001", 20, &r), -1);
    struct bb_keys_resv res;
    uint32_t retry;
    assert_int_equal(admit(&before, NULL, 1, 1, T0, &res, &retry), BB_KEYS_REVOKED);
    assert_null(res.slot);
    assert_int_equal(atomic_load(&t->n_live), 1);
    /* The other key still works. */
    assert_int_equal(bb_keys_lookup(t, "sk-bb-aaaa", 10, &r), 0);
}

static void test_many_keys(void **state)
{
    struct bb_keys_table *t = *state;
    char s[32], id[24];
    for (int i = 0; i < 5000; i++) {
        snprintf(s, sizeof s, "sk-bb-%d", i);
        snprintf(id, sizeof id, "vk_%016d", i);
        struct bb_keys_limits l = key(s, id);
        put(t, &l, 0, T0);
    }
    for (int i = 0; i < 5000; i += 2) { /* remove every other one */
        snprintf(s, sizeof s, "sk-bb-%d", i);
        uint8_t sha[32];
        bb_keys_hash_secret(s, strlen(s), sha);
        assert_int_equal(bb_keys_remove(t, sha), 0);
    }
    struct bb_keys_ref r;
    for (int i = 0; i < 5000; i++) {
        snprintf(s, sizeof s, "sk-bb-%d", i);
        int rc = bb_keys_lookup(t, s, strlen(s), &r);
        assert_int_equal(rc, i % 2 ? 0 : -1);
        if (rc == 0) {
            snprintf(id, sizeof id, "vk_%016d", i);
            assert_string_equal(r.lim.id, id);
        }
    }
    /* Freed slots are reused: the high-water mark does not grow. */
    uint32_t hw = atomic_load(&t->n_slots);
    for (int i = 0; i < 5000; i += 2) {
        snprintf(s, sizeof s, "sk-bb-new-%d", i);
        struct bb_keys_limits l = key(s, "vk_new");
        put(t, &l, 0, T0);
    }
    assert_int_equal(atomic_load(&t->n_slots), hw);
    assert_int_equal(atomic_load(&t->n_live), 5000);
}

static void test_admission_order(void **state)
{
    struct bb_keys_table *t = *state;
    struct bb_keys_limits l = key("sk-order", "vk_order");
    l.n_pools = 1;
    l.pool_hash[0] = bb_keys_pool_hash("fast", 4);
    l.rpm = 1;
    l.has_budget = 1;
    l.budget_micros = 100;
    put(t, &l, 0, T0);
    struct bb_keys_ref r = ref(t, "sk-order");
    struct bb_keys_resv res;
    uint32_t retry;

    assert_true(bb_keys_pool_allowed(&r, "fast", 4));
    assert_false(bb_keys_pool_allowed(&r, "slow", 4));
    /* Use the one request of this minute. */
    assert_int_equal(admit(&r, "fast", 10, 10, T0, &res, &retry), BB_KEYS_OK);
    bb_keys_settle(&res, 10, 10, T0);
    /* Pool before RPM: a forbidden pool is 403 even when rate-limited too. */
    assert_int_equal(admit(&r, "slow", 10, 10, T0, &res, &retry), BB_KEYS_FORBIDDEN_POOL);
    /* RPM before budget. */
    assert_int_equal(admit(&r, "fast", 10, 1000, T0, &res, &retry), BB_KEYS_RATE_LIMITED);
    assert_int_equal(retry, 50); /* T0 is 10 s into its minute */
    /* Budget after RPM: next minute, the cost does not fit. */
    assert_int_equal(admit(&r, "fast", 10, 1000, T0 + MIN, &res, &retry), BB_KEYS_BUDGET_EXCEEDED);
    /* A budget refusal does not use up the request: a cheaper one still goes. */
    assert_int_equal(admit(&r, "fast", 10, 90, T0 + MIN, &res, &retry), BB_KEYS_OK);
    bb_keys_release(&res, T0 + MIN);

    /* Disabled and expired come before everything else. */
    l.enabled = 0;
    put(t, &l, 0, T0);
    r = ref(t, "sk-order");
    assert_int_equal(admit(&r, "slow", 10, 1000, T0 + MIN, &res, &retry), BB_KEYS_DISABLED);
    l.enabled = 1;
    l.expires_at_ms = T0 + MIN;
    put(t, &l, 0, T0);
    r = ref(t, "sk-order");
    assert_int_equal(admit(&r, "slow", 10, 1000, T0 + MIN - 1, &res, &retry),
                     BB_KEYS_FORBIDDEN_POOL);
    assert_int_equal(admit(&r, "slow", 10, 1000, T0 + MIN, &res, &retry), BB_KEYS_EXPIRED);
    assert_string_equal(bb_keys_verdict_name(BB_KEYS_EXPIRED), "expired");

    struct bb_keys_usage u;
    bb_keys_usage(t, bb_keys_find(t, l.secret_sha256), T0 + MIN, &u);
    assert_int_equal(u.inflight, 0);
    assert_int_equal(u.admitted, 2);
    assert_int_equal(u.rejected, 6);
}

static void test_parallel(void **state)
{
    struct bb_keys_table *t = *state;
    struct bb_keys_limits l = key("sk-par", "vk_par");
    l.max_parallel = 2;
    put(t, &l, 0, T0);
    struct bb_keys_ref r = ref(t, "sk-par");
    struct bb_keys_resv a, b, c;
    uint32_t retry;
    assert_int_equal(admit(&r, NULL, 1, 0, T0, &a, &retry), BB_KEYS_OK);
    assert_int_equal(admit(&r, NULL, 1, 0, T0, &b, &retry), BB_KEYS_OK);
    assert_int_equal(admit(&r, NULL, 1, 0, T0, &c, &retry), BB_KEYS_RATE_LIMITED);
    assert_int_equal(retry, 1);
    bb_keys_settle(&a, 0, 1, T0);
    assert_null(a.slot);
    bb_keys_settle(&a, 0, 1, T0); /* a second settle is a no-op */
    assert_int_equal(admit(&r, NULL, 1, 0, T0, &c, &retry), BB_KEYS_OK);
    bb_keys_release(&b, T0);
    bb_keys_release(&c, T0);
    struct bb_keys_usage u;
    bb_keys_usage(t, bb_keys_find(t, l.secret_sha256), T0, &u);
    assert_int_equal(u.inflight, 0);
}

static void test_rpm_window(void **state)
{
    struct bb_keys_table *t = *state;
    struct bb_keys_limits l = key("sk-rpm", "vk_rpm");
    l.rpm = 3;
    put(t, &l, 0, T0);
    struct bb_keys_ref r = ref(t, "sk-rpm");
    struct bb_keys_resv res;
    uint32_t retry;
    uint64_t m0 = T0 - T0 % MIN; /* start of T0's minute */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(admit(&r, NULL, 0, 0, m0 + 1000 * (uint64_t)i, &res, &retry), BB_KEYS_OK);
        bb_keys_release(&res, m0); /* a failed request still counts against RPM */
    }
    assert_int_equal(admit(&r, NULL, 0, 0, m0 + 59001, &res, &retry), BB_KEYS_RATE_LIMITED);
    assert_int_equal(retry, 1); /* 999 ms to the next minute: rounded up to 1 s */
    assert_int_equal(admit(&r, NULL, 0, 0, m0 + 30000, &res, &retry), BB_KEYS_RATE_LIMITED);
    assert_int_equal(retry, 30);
    /* Fixed windows: the next UTC minute starts empty. */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(admit(&r, NULL, 0, 0, m0 + MIN + (uint64_t)i, &res, &retry), BB_KEYS_OK);
        bb_keys_settle(&res, 0, 0, m0 + MIN);
    }
    assert_int_equal(admit(&r, NULL, 0, 0, m0 + 2 * MIN - 1, &res, &retry), BB_KEYS_RATE_LIMITED);
    struct bb_keys_usage u;
    bb_keys_usage(t, bb_keys_find(t, l.secret_sha256), m0 + MIN, &u);
    assert_int_equal(u.rpm_used, 3);
    bb_keys_usage(t, bb_keys_find(t, l.secret_sha256), m0 + 2 * MIN, &u);
    assert_int_equal(u.rpm_used, 0);
}

/* A key without limits admits any estimate, however large (max_tokens: 1e999 saturates to
 * a huge number): unlimited windows saturate instead of refusing (issue 9 #10). */
static void test_unlimited_saturates(void **state)
{
    struct bb_keys_table *t = *state;
    struct bb_keys_limits l = key("sk-free", "vk_free");
    put(t, &l, 0, T0);
    struct bb_keys_ref r = ref(t, "sk-free");
    struct bb_keys_resv a, b, c;
    uint32_t retry;
    assert_int_equal(admit(&r, NULL, 1000, 0, T0, &a, &retry), BB_KEYS_OK);
    assert_int_equal(admit(&r, NULL, UINT64_MAX / 4, UINT64_MAX, T0, &b, &retry), BB_KEYS_OK);
    assert_int_equal(admit(&r, NULL, UINT64_MAX / 4, UINT64_MAX, T0, &c, &retry), BB_KEYS_OK);
    bb_keys_release(&a, T0);
    bb_keys_release(&b, T0);
    bb_keys_release(&c, T0);
}

static void test_tpm_window(void **state)
{
    struct bb_keys_table *t = *state;
    struct bb_keys_limits l = key("sk-tpm", "vk_tpm");
    l.tpm = 1000;
    put(t, &l, 0, T0);
    struct bb_keys_ref r = ref(t, "sk-tpm");
    struct bb_keys_resv a, b, c;
    uint32_t retry;
    uint64_t m0 = T0 - T0 % MIN;
    assert_int_equal(admit(&r, NULL, 400, 0, m0, &a, &retry), BB_KEYS_OK);
    assert_int_equal(admit(&r, NULL, 400, 0, m0, &b, &retry), BB_KEYS_OK);
    assert_int_equal(admit(&r, NULL, 400, 0, m0 + 15000, &c, &retry), BB_KEYS_RATE_LIMITED);
    assert_int_equal(retry, 45);
    /* Settling below the estimate gives the difference back to this minute. */
    bb_keys_settle(&a, 0, 100, m0 + 1);
    assert_int_equal(admit(&r, NULL, 400, 0, m0 + 2, &c, &retry), BB_KEYS_OK); /* 100+400+400 */
    /* A release gives the whole estimate back. */
    bb_keys_release(&c, m0 + 3);
    struct bb_keys_usage u;
    bb_keys_usage(t, bb_keys_find(t, l.secret_sha256), m0 + 4, &u);
    assert_int_equal(u.tpm_used, 500);
    /* Usage above the estimate counts too (it blocks the rest of the minute). */
    bb_keys_settle(&b, 0, 950, m0 + 5);
    bb_keys_usage(t, bb_keys_find(t, l.secret_sha256), m0 + 6, &u);
    assert_int_equal(u.tpm_used, 1050);
    assert_int_equal(admit(&r, NULL, 1, 0, m0 + 7, &c, &retry), BB_KEYS_RATE_LIMITED);
    /* A request larger than the allowance runs alone in an empty minute. */
    assert_int_equal(admit(&r, NULL, 5000, 0, m0 + MIN, &c, &retry), BB_KEYS_OK);
    assert_int_equal(admit(&r, NULL, 1, 0, m0 + MIN, &a, &retry), BB_KEYS_RATE_LIMITED);
    bb_keys_settle(&c, 0, 4000, m0 + MIN + 1);
    bb_keys_usage(t, bb_keys_find(t, l.secret_sha256), m0 + MIN + 2, &u);
    assert_int_equal(u.tpm_used, 4000);
}

static void test_budget_reserve_settle_release(void **state)
{
    struct bb_keys_table *t = *state;
    struct bb_keys_limits l = key("sk-bud", "vk_bud");
    l.has_budget = 1;
    l.budget_micros = 1000;
    put(t, &l, 0, T0);
    struct bb_keys_ref r = ref(t, "sk-bud");
    struct bb_keys_resv a, b, c;
    uint32_t retry;
    int slot = bb_keys_find(t, l.secret_sha256);
    struct bb_keys_usage u;

    assert_int_equal(admit(&r, NULL, 0, 600, T0, &a, &retry), BB_KEYS_OK);
    assert_int_equal(admit(&r, NULL, 0, 500, T0, &b, &retry), BB_KEYS_BUDGET_EXCEEDED);
    assert_int_equal(admit(&r, NULL, 0, 400, T0, &b, &retry), BB_KEYS_OK); /* exactly full */
    assert_int_equal(admit(&r, NULL, 0, 0, T0, &c, &retry), BB_KEYS_BUDGET_EXCEEDED);
    bb_keys_settle(&a, 200, 0, T0); /* reserved 600, cost 200 */
    bb_keys_usage(t, slot, T0, &u);
    assert_int_equal(u.spent_micros, 200);
    assert_int_equal(u.committed_micros, 600); /* 200 spent + 400 reserved */
    bb_keys_release(&b, T0);                   /* failed: not billed */
    bb_keys_usage(t, slot, T0, &u);
    assert_int_equal(u.spent_micros, 200);
    assert_int_equal(u.committed_micros, 200);
    assert_int_equal(admit(&r, NULL, 0, 800, T0, &c, &retry), BB_KEYS_OK);
    bb_keys_settle(&c, 800, 0, T0);
    bb_keys_usage(t, slot, T0, &u);
    assert_int_equal(u.spent_micros, 1000);
    assert_int_equal(admit(&r, NULL, 0, 0, T0, &c, &retry), BB_KEYS_BUDGET_EXCEEDED);

    /* Raising the budget takes effect at once and keeps what was spent. */
    l.budget_micros = 1500;
    put(t, &l, 0, T0);
    r = ref(t, "sk-bud");
    assert_int_equal(admit(&r, NULL, 0, 500, T0, &c, &retry), BB_KEYS_OK);
    bb_keys_release(&c, T0);
    /* Spend loaded at publish counts (a key published at start with rollups). */
    struct bb_keys_limits m = key("sk-bud2", "vk_bud2");
    m.has_budget = 1;
    m.budget_micros = 1000;
    assert_true(bb_keys_needs_spent(t, &m));
    put(t, &m, 900, T0);
    assert_false(bb_keys_needs_spent(t, &m));
    struct bb_keys_ref r2 = ref(t, "sk-bud2");
    assert_int_equal(admit(&r2, NULL, 0, 101, T0, &c, &retry), BB_KEYS_BUDGET_EXCEEDED);
    assert_int_equal(admit(&r2, NULL, 0, 100, T0, &c, &retry), BB_KEYS_OK);
    bb_keys_release(&c, T0);
    /* Without a budget everything is admitted and spend is still tracked. */
    struct bb_keys_limits n = key("sk-free", "vk_free");
    put(t, &n, 0, T0);
    struct bb_keys_ref r3 = ref(t, "sk-free");
    assert_int_equal(admit(&r3, NULL, 0, UINT64_MAX / 4, T0, &c, &retry), BB_KEYS_OK);
    bb_keys_settle(&c, 12345, 0, T0);
    bb_keys_usage(t, bb_keys_find(t, n.secret_sha256), T0, &u);
    assert_int_equal(u.spent_micros, 12345);
    assert_int_equal(u.committed_micros, 12345);
}

/* A dead worker's journal gives its reservations back (budget, TPM, inflight); settled or
 * released requests were cleared from it and are not given back twice. */
static void test_journal_reclaim(void **state)
{
    struct bb_keys_table *t = *state;
    struct bb_keys_limits l = key("sk-jr", "vk_jr");
    l.has_budget = 1;
    l.budget_micros = 1000;
    l.tpm = 100;
    l.max_parallel = 3;
    put(t, &l, 0, T0);
    struct bb_keys_ref r = ref(t, "sk-jr");
    int slot = bb_keys_find(t, l.secret_sha256);
    struct bb_keys_journal *j = calloc(1, sizeof *j);
    assert_non_null(j);
    struct bb_keys_resv a, b, c;
    uint32_t retry;
    struct bb_keys_usage u;
    assert_int_equal(admit(&r, NULL, 30, 400, T0, &a, &retry), BB_KEYS_OK);
    assert_int_equal(admit(&r, NULL, 30, 400, T0, &b, &retry), BB_KEYS_OK);
    assert_int_equal(admit(&r, NULL, 30, 200, T0, &c, &retry), BB_KEYS_OK);
    int ja = bb_keys_journal_note(j, t, &a);
    int jb = bb_keys_journal_note(j, t, &b);
    int jc = bb_keys_journal_note(j, t, &c);
    assert_true(ja >= 0 && jb >= 0 && jc >= 0 && ja != jb && jb != jc && ja != jc);
    /* a completes normally: cleared first, then settled */
    bb_keys_journal_clear(j, ja);
    bb_keys_settle(&a, 150, 20, T0);
    /* the worker dies with b and c in flight */
    assert_int_equal(bb_keys_journal_reclaim(t, j, T0), 2);
    bb_keys_usage(t, slot, T0, &u);
    assert_int_equal(u.spent_micros, 150);
    assert_int_equal(u.committed_micros, 150);
    assert_int_equal(u.inflight, 0);
    assert_int_equal(u.tpm_used, 20);
    assert_int_equal(bb_keys_journal_reclaim(t, j, T0), 0); /* nothing twice */
    /* a full journal says so; the request then runs unjournaled */
    struct bb_keys_resv x = {&t->slots[slot], 1, 0, 0};
    for (uint32_t i = 0; i < BB_KEYS_JOURNAL_CAP; i++)
        assert_true(bb_keys_journal_note(j, t, &x) >= 0);
    assert_int_equal(bb_keys_journal_note(j, t, &x), -1);
    free(j);
}

static void test_period_rollover(void **state)
{
    struct bb_keys_table *t = *state;
    uint64_t day0 = T0 - T0 % DAY;
    struct bb_keys_limits l = key("sk-daily", "vk_daily");
    l.has_budget = 1;
    l.budget_micros = 1000;
    l.period = BB_KEYS_PERIOD_DAILY;
    put(t, &l, 0, day0 + 1000);
    struct bb_keys_ref r = ref(t, "sk-daily");
    int slot = bb_keys_find(t, l.secret_sha256);
    struct bb_keys_resv a, b, c;
    uint32_t retry;
    struct bb_keys_usage u;

    assert_int_equal(admit(&r, NULL, 0, 700, day0 + 1000, &a, &retry), BB_KEYS_OK);
    bb_keys_settle(&a, 700, 0, day0 + 2000);
    /* 23:59:59.999: 300 left; reserve 300 in flight across midnight. */
    assert_int_equal(admit(&r, NULL, 0, 301, day0 + DAY - 1, &a, &retry), BB_KEYS_BUDGET_EXCEEDED);
    assert_int_equal(admit(&r, NULL, 0, 300, day0 + DAY - 1, &a, &retry), BB_KEYS_OK);
    /* 00:00 UTC: the new day starts with the outstanding 300 reserved, 0 spent. */
    bb_keys_usage(t, slot, day0 + DAY, &u);
    assert_int_equal(u.spent_micros, 0);
    assert_int_equal(u.committed_micros, 300);
    assert_int_equal(admit(&r, NULL, 0, 701, day0 + DAY, &b, &retry), BB_KEYS_BUDGET_EXCEEDED);
    assert_int_equal(admit(&r, NULL, 0, 700, day0 + DAY, &b, &retry), BB_KEYS_OK);
    /* The request from yesterday completes today and is billed today. */
    bb_keys_settle(&a, 100, 0, day0 + DAY + 5);
    bb_keys_usage(t, slot, day0 + DAY + 5, &u);
    assert_int_equal(u.spent_micros, 100);
    assert_int_equal(u.committed_micros, 800);
    assert_int_equal(admit(&r, NULL, 0, 200, day0 + DAY + 6, &c, &retry), BB_KEYS_OK);
    assert_int_equal(admit(&r, NULL, 0, 1, day0 + DAY + 7, &a, &retry), BB_KEYS_BUDGET_EXCEEDED);
    bb_keys_release(&b, day0 + DAY + 8);
    bb_keys_release(&c, day0 + DAY + 8);

    /* Monthly: 2026-02-28T23:59:59Z → 2026-03-01T00:00:00Z. */
    uint64_t feb28 = 1772236800000ull + 86399000ull; /* 2026-02-28T23:59:59Z */
    assert_int_equal(bb_keys_period_start(BB_KEYS_PERIOD_MONTHLY, feb28), 1769904000); /* Feb 1 */
    assert_int_equal(bb_keys_period_start(BB_KEYS_PERIOD_MONTHLY, feb28 + 1000), 1772323200);
    assert_int_not_equal(bb_keys_period_tag(BB_KEYS_PERIOD_MONTHLY, feb28),
                         bb_keys_period_tag(BB_KEYS_PERIOD_MONTHLY, feb28 + 1000));
    assert_int_equal(bb_keys_period_tag(BB_KEYS_PERIOD_MONTHLY, feb28 + 1000),
                     bb_keys_period_tag(BB_KEYS_PERIOD_MONTHLY, feb28 + 1000 + 27 * DAY));
    struct bb_keys_limits m = key("sk-monthly", "vk_monthly");
    m.has_budget = 1;
    m.budget_micros = 500;
    m.period = BB_KEYS_PERIOD_MONTHLY;
    put(t, &m, 450, feb28);
    struct bb_keys_ref rm = ref(t, "sk-monthly");
    assert_int_equal(admit(&rm, NULL, 0, 51, feb28, &a, &retry), BB_KEYS_BUDGET_EXCEEDED);
    assert_int_equal(admit(&rm, NULL, 0, 500, feb28 + 1000, &a, &retry), BB_KEYS_OK);
    bb_keys_settle(&a, 500, 0, feb28 + 2000);
    assert_int_equal(admit(&rm, NULL, 0, 1, feb28 + 20 * DAY, &a, &retry), BB_KEYS_BUDGET_EXCEEDED);
    /* A total budget never resets. */
    assert_int_equal(bb_keys_period_tag(BB_KEYS_PERIOD_TOTAL, feb28), 0);
    assert_int_equal(bb_keys_period_start(BB_KEYS_PERIOD_TOTAL, feb28), 0);

    /* Changing the period restarts the counters from the store's figure for the new period,
     * keeping reservations in flight. */
    assert_int_equal(admit(&r, NULL, 0, 100, day0 + DAY + 10, &a, &retry), BB_KEYS_OK);
    l.period = BB_KEYS_PERIOD_MONTHLY;
    assert_true(bb_keys_needs_spent(t, &l));
    put(t, &l, 250, day0 + DAY + 11);
    bb_keys_usage(t, slot, day0 + DAY + 12, &u);
    assert_int_equal(u.spent_micros, 250);
    assert_int_equal(u.committed_micros, 350);
    bb_keys_settle(&a, 50, 0, day0 + DAY + 13);
    bb_keys_usage(t, slot, day0 + DAY + 14, &u);
    assert_int_equal(u.spent_micros, 300);
    assert_int_equal(u.committed_micros, 300);
}

static void test_slot_reuse(void **state)
{
    struct bb_keys_table *t = *state;
    struct bb_keys_limits a = key("sk-reuse-a", "vk_a");
    put(t, &a, 0, T0);
    struct bb_keys_ref ra = ref(t, "sk-reuse-a");
    struct bb_keys_resv held;
    uint32_t retry;
    assert_int_equal(admit(&ra, NULL, 0, 5, T0, &held, &retry), BB_KEYS_OK);
    int slot_a = bb_keys_find(t, a.secret_sha256);
    bb_keys_remove(t, a.secret_sha256);
    /* A reservation still points at a's slot: b must get another one. */
    struct bb_keys_limits b = key("sk-reuse-b", "vk_b");
    put(t, &b, 0, T0);
    int slot_b = bb_keys_find(t, b.secret_sha256);
    assert_int_not_equal(slot_a, slot_b);
    bb_keys_settle(&held, 5, 0, T0);
    /* Now it is free: c reuses it, and a's old ref cannot admit on c's slot. */
    struct bb_keys_limits c = key("sk-reuse-c", "vk_c");
    put(t, &c, 0, T0);
    assert_int_equal(bb_keys_find(t, c.secret_sha256), slot_a);
    assert_int_equal(admit(&ra, NULL, 0, 1, T0, &held, &retry), BB_KEYS_REVOKED);
    struct bb_keys_ref rc = ref(t, "sk-reuse-c");
    assert_string_equal(rc.lim.id, "vk_c");
    struct bb_keys_usage u;
    bb_keys_usage(t, slot_a, T0, &u);
    assert_int_equal(u.spent_micros, 0); /* counters start over for c */
    assert_int_equal(u.inflight, 0);
}

/* 8 processes race for one budget: reserve a random worst case, settle at or below it
 * (or release). The total billed may never exceed the budget, and it must get close. */
static void test_budget_never_overshot(void **state)
{
    struct bb_keys_table *t = *state;
    const uint64_t budget = 2000000;
    struct bb_keys_limits l = key("sk-race", "vk_race");
    l.has_budget = 1;
    l.budget_micros = budget;
    put(t, &l, 0, T0);
    /* Per-process totals of what they settled, in shared memory. */
    _Atomic uint64_t *billed =
        mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(billed != MAP_FAILED);
    pid_t kids[8];
    for (int k = 0; k < 8; k++) {
        kids[k] = fork();
        assert_true(kids[k] >= 0);
        if (kids[k] == 0) {
            struct bb_keys_ref r;
            if (bb_keys_lookup(t, "sk-race", 7, &r) < 0)
                _exit(2);
            unsigned seed = (unsigned)k * 7919u + 1;
            uint64_t mine = 0;
            for (int i = 0; i < 40000; i++) {
                uint64_t cost = 1 + rand_r(&seed) % 997;
                struct bb_keys_resv res;
                uint32_t retry;
                enum bb_keys_verdict v =
                    bb_keys_admit(&r, NULL, 0, 0, cost, T0 + (uint64_t)i, &res, &retry);
                if (v == BB_KEYS_BUDGET_EXCEEDED)
                    continue;
                if (v != BB_KEYS_OK)
                    _exit(3);
                if (rand_r(&seed) % 8 == 0) {
                    bb_keys_release(&res, T0);
                } else {
                    uint64_t actual = cost - rand_r(&seed) % (cost / 2 + 1);
                    bb_keys_settle(&res, actual, 0, T0);
                    mine += actual;
                }
            }
            atomic_fetch_add(billed, mine);
            _exit(0);
        }
    }
    for (int k = 0; k < 8; k++) {
        int st;
        assert_int_equal(waitpid(kids[k], &st, 0), kids[k]);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    struct bb_keys_usage u;
    bb_keys_usage(t, bb_keys_find(t, l.secret_sha256), T0, &u);
    uint64_t total = atomic_load(billed);
    printf("# budget %llu, billed %llu, spent %llu, admitted %llu, rejected %llu\n",
           (unsigned long long)budget, (unsigned long long)total,
           (unsigned long long)u.spent_micros, (unsigned long long)u.admitted,
           (unsigned long long)u.rejected);
    assert_int_equal(u.spent_micros, total);
    assert_int_equal(u.committed_micros, total); /* nothing left reserved */
    assert_int_equal(u.inflight, 0);
    assert_true(total <= budget);
    assert_true(total > budget - 1000); /* ran the budget down to less than one request */
    munmap((void *)billed, 4096);
}

static void test_dates(void **state)
{
    (void)state;
    char d[11];
    bb_keys_day_string(0, d);
    assert_string_equal(d, "1970-01-01");
    bb_keys_day_string(1772323200, d);
    assert_string_equal(d, "2026-03-01");
    bb_keys_day_string(951782400, d); /* leap day */
    assert_string_equal(d, "2000-02-29");
    int64_t s;
    assert_int_equal(bb_keys_parse_day("2026-03-01", &s), 0);
    assert_int_equal(s, 1772323200);
    assert_int_equal(bb_keys_parse_day("2026-02-29", &s), -1);
    assert_int_equal(bb_keys_parse_day("2024-02-29", &s), 0);
    assert_int_equal(bb_keys_parse_day("2026-13-01", &s), -1);
    assert_int_equal(bb_keys_parse_day("2026-3-01", &s), -1);
    assert_int_equal(bb_keys_parse_day("2026-03-01x", &s), -1);
    assert_int_equal(bb_keys_parse_expiry("30d", 1000, &s), 0);
    assert_int_equal(s, 1000 + 30 * 86400);
    assert_int_equal(bb_keys_parse_expiry("12h", 1000, &s), 0);
    assert_int_equal(s, 1000 + 12 * 3600);
    assert_int_equal(bb_keys_parse_expiry("2026-03-01", 0, &s), 0);
    assert_int_equal(s, 1772323200);
    assert_int_equal(bb_keys_parse_expiry("2026-03-01T01:02:03Z", 0, &s), 0);
    assert_int_equal(s, 1772323200 + 3723);
    assert_int_equal(bb_keys_parse_expiry("0d", 0, &s), -1);
    assert_int_equal(bb_keys_parse_expiry("30x", 0, &s), -1);
    assert_int_equal(bb_keys_parse_expiry("d", 0, &s), -1);
    assert_int_equal(bb_keys_parse_expiry("2026-03-01T25:00:00Z", 0, &s), -1);
    assert_int_equal(bb_keys_period_from_name("monthly"), BB_KEYS_PERIOD_MONTHLY);
    assert_int_equal(bb_keys_period_from_name("weekly"), -1);
    assert_string_equal(bb_keys_period_name(BB_KEYS_PERIOD_DAILY), "daily");
    assert_int_equal(bb_keys_period_start(BB_KEYS_PERIOD_DAILY, 1772323200000ull + 5000),
                     1772323200);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lookup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_admission_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parallel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rpm_window, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tpm_window, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unlimited_saturates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_budget_reserve_settle_release, setup, teardown),
        cmocka_unit_test_setup_teardown(test_journal_reclaim, setup, teardown),
        cmocka_unit_test_setup_teardown(test_period_rollover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slot_reuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_budget_never_overshot, setup, teardown),
        cmocka_unit_test(test_dates),
    };
    return cmocka_run_group_tests_name("keys_shm", tests, NULL, NULL);
}
