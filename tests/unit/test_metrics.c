/*
 * test_metrics: the shared metric cells (common/metrics_shm) and their exposition
 * (common/metrics_text): cells by name, the per-key cap with _other, bucket placement, and the
 * rendered text of a small configuration.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/metrics_shm.h"
#include "common/metrics_text.h"
#include "common/shm.h"

static struct bb_conf *small_conf(void)
{
    static struct bb_provider prov = {.name = "prov", .protocol = BB_PROTO_OPENAI};
    static struct bb_lane lanes[2] = {{.name = "a", .provider = 0, .upstream_model = "ma"},
                                      {.name = "b", .provider = 0, .upstream_model = "mb"}};
    static struct bb_member members[2] = {{.lane = 0, .weight = 1}, {.lane = 1, .weight = 1}};
    static struct bb_pool pools[1] = {{.name = "p", .members = members, .n_members = 2}};
    static struct bb_conf c;
    c.providers = &prov;
    c.n_providers = 1;
    c.lanes = lanes;
    c.n_lanes = 2;
    c.pools = pools;
    c.n_pools = 1;
    c.key_series_max = 2;
    c.metrics = true;
    return &c;
}

static void test_cells_by_name(void **state)
{
    (void)state;
    struct bb_shm *shm = bb_shm_create();
    assert_non_null(shm);
    struct bb_err err;
    assert_int_equal(bb_mx_intern_conf(&shm->metrics, small_conf(), &err), 0);
    struct bb_mx_cell *m = bb_mx_find(&shm->metrics, 'm', "p", "a");
    assert_non_null(m);
    assert_string_equal(m->name, "m:p/a");
    assert_non_null(bb_mx_find(&shm->metrics, 'p', "p", NULL));
    assert_non_null(bb_mx_find(&shm->metrics, 'p', "a", NULL)); /* a lane addressed directly */
    assert_non_null(bb_mx_find(&shm->metrics, 'l', "b", NULL));
    assert_null(bb_mx_find(&shm->metrics, 'm', "p", "zz"));
    uint32_t n = atomic_load(&shm->metrics.n_cells);
    /* a reload with the same names interns nothing new: counters carry over */
    bb_mx_add(&m->u.member.attempts, 3);
    assert_int_equal(bb_mx_intern_conf(&shm->metrics, small_conf(), &err), 0);
    assert_int_equal(atomic_load(&shm->metrics.n_cells), n);
    assert_int_equal(atomic_load(&bb_mx_find(&shm->metrics, 'm', "p", "a")->u.member.attempts), 3);
    bb_shm_destroy(shm);
}

static void test_key_cap(void **state)
{
    (void)state;
    struct bb_shm *shm = bb_shm_create();
    struct bb_mx_region *r = &shm->metrics;
    struct bb_mx_key *k1 = bb_mx_key(r, "vk_0000000000000001", 2);
    struct bb_mx_key *k2 = bb_mx_key(r, "vk_0000000000000002", 2);
    struct bb_mx_key *k3 = bb_mx_key(r, "vk_0000000000000003", 2);
    assert_ptr_not_equal(k1, &r->other);
    assert_ptr_not_equal(k2, &r->other);
    assert_ptr_not_equal(k1, k2);
    assert_ptr_equal(k3, &r->other);
    assert_ptr_equal(bb_mx_key(r, "vk_0000000000000001", 2), k1); /* found again */
    assert_ptr_equal(bb_mx_key(r, "", 2), &r->other);
    assert_ptr_equal(bb_mx_key(r, "vk_toolong_0123456789abcdef", 2), &r->other);
    assert_int_equal(atomic_load(&r->n_keys), 2);
    bb_shm_destroy(shm);
}

static void test_buckets(void **state)
{
    (void)state;
    struct bb_mx_hist h;
    memset(&h, 0, sizeof h);
    bb_mx_observe(&h, BB_MX_B_SECONDS, 5000);      /* exactly 5 ms: le="0.005" */
    bb_mx_observe(&h, BB_MX_B_SECONDS, 5001);      /* just above: le="0.01" */
    bb_mx_observe(&h, BB_MX_B_SECONDS, 999999999); /* +Inf */
    bb_mx_observe(&h, BB_MX_B_OVERHEAD, 7);        /* 7 µs: le="1e-05" */
    assert_int_equal(atomic_load(&h.b[0]), 2);
    assert_int_equal(atomic_load(&h.b[1]), 1);
    assert_int_equal(atomic_load(&h.b[BB_MX_BUCKETS]), 1);
    assert_int_equal(atomic_load(&h.sum_us), 5000 + 5001 + 999999999 + 7);
}

static void test_render(void **state)
{
    (void)state;
    struct bb_shm *shm = bb_shm_create();
    struct bb_conf *c = small_conf();
    struct bb_err err;
    assert_int_equal(bb_mx_intern_conf(&shm->metrics, c, &err), 0);
    struct bb_mx_cell *p = bb_mx_find(&shm->metrics, 'p', "p", NULL);
    bb_mx_add(&p->u.pool.requests[BB_PROTO_ANTHROPIC][BB_MX_OUT_OK], 4);
    bb_mx_add(&p->u.pool.failovers[BB_FC_RATE_LIMIT], 1);
    bb_mx_observe(&p->u.pool.duration, BB_MX_B_SECONDS, 20000);
    bb_mx_add(&bb_mx_key(&shm->metrics, "vk_00000000000000aa", 2)->spend_micros, 1500000);
    size_t len = 0;
    char *t = bb_mx_render(c, shm, &len);
    assert_non_null(t);
    assert_int_equal(strlen(t), len);
    assert_non_null(strstr(t, "busbar_requests_total{ingress_protocol=\"anthropic\",pool=\"p\","
                              "outcome=\"ok\"} 4\n"));
    assert_non_null(strstr(t, "busbar_failovers_total{pool=\"p\",reason=\"rate_limit\"} 1\n"));
    assert_non_null(
        strstr(t, "busbar_request_duration_seconds_bucket{pool=\"p\",le=\"0.01\"} 0\n"));
    assert_non_null(
        strstr(t, "busbar_request_duration_seconds_bucket{pool=\"p\",le=\"0.025\"} 1\n"));
    assert_non_null(
        strstr(t, "busbar_request_duration_seconds_bucket{pool=\"p\",le=\"+Inf\"} 1\n"));
    assert_non_null(strstr(t, "busbar_request_duration_seconds_sum{pool=\"p\"} 0.02\n"));
    assert_non_null(strstr(t, "busbar_upstream_attempts_total{pool=\"p\",lane=\"b\"} 0\n"));
    assert_non_null(strstr(t, "busbar_key_spend_usd{key=\"vk_00000000000000aa\"} 1.5\n"));
    assert_non_null(strstr(t, "busbar_key_spend_usd{key=\"_other\"} 0\n"));
    /* lanes addressed directly get series only once they saw traffic */
    assert_null(strstr(t, "busbar_upstream_attempts_total{pool=\"a\""));
    /* every sample belongs to the family announced just before it */
    const char *fam = NULL;
    size_t fl = 0;
    for (char *line = t; *line;) {
        char *nl = strchr(line, '\n');
        assert_non_null(nl);
        if (!strncmp(line, "# TYPE ", 7)) {
            fam = line + 7;
            fl = strcspn(fam, " ");
        } else if (line[0] != '#') {
            assert_non_null(fam);
            assert_memory_equal(line, fam, fl);
        }
        line = nl + 1;
    }
    free(t);
    bb_shm_destroy(shm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cells_by_name),
        cmocka_unit_test(test_key_cap),
        cmocka_unit_test(test_buckets),
        cmocka_unit_test(test_render),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
