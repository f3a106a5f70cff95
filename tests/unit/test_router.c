/*
 * test_router: smooth weighted round-robin order, exclusion of tried members, and
 * max_concurrent slots shared through shared memory (worker/router.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "common/config.h"
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_swrr_5_1_1, setup, teardown),
        cmocka_unit_test_setup_teardown(test_swrr_skips_tried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_concurrent_shared, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_member_counters, setup, teardown),
    };
    return cmocka_run_group_tests_name("router", tests, NULL, NULL);
}
