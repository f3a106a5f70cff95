/*
 * test_ring: the shared-memory usage ring (common/ring.c): order and content, wraparound,
 * a full ring drops and counts (never blocks), many forked producers against one consumer,
 * and a cell abandoned by a dead producer being skipped after BB_RING_STALL_MS.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/ring.h"

static int setup(void **state)
{
    struct bb_ring *r = bb_ring_create();
    assert_non_null(r);
    *state = r;
    return 0;
}

static int teardown(void **state)
{
    bb_ring_destroy(*state);
    return 0;
}

static struct bb_usage_rec rec(unsigned producer, unsigned long long seq)
{
    struct bb_usage_rec u;
    memset(&u, 0, sizeof u);
    snprintf(u.request_id, sizeof u.request_id, "p%u-%llu", producer, seq);
    bb_usage_set_str(u.key_id, sizeof u.key_id, "vk_0123456789abcdef");
    bb_usage_set_str(u.lane, sizeof u.lane, "lane");
    u.ts_ms = seq;
    u.input_tokens = producer;
    u.output_tokens = seq;
    u.cost_micros = seq * 3 + producer;
    return u;
}

static void test_order_and_content(void **state)
{
    struct bb_ring *r = *state;
    struct bb_usage_rec out[16];
    assert_int_equal(bb_ring_pop(r, out, 16, 1), 0);
    for (unsigned i = 0; i < 10; i++) {
        struct bb_usage_rec u = rec(1, i);
        assert_true(bb_ring_push(r, &u));
    }
    assert_int_equal(bb_ring_pending(r), 10);
    assert_int_equal(bb_ring_pop(r, out, 4, 1), 4);
    assert_int_equal(bb_ring_pop(r, out + 4, 16, 1), 6);
    for (unsigned i = 0; i < 10; i++) {
        struct bb_usage_rec u = rec(1, i);
        assert_memory_equal(&out[i], &u, sizeof u);
    }
    assert_int_equal(bb_ring_pending(r), 0);
    assert_int_equal(atomic_load(&r->pushed), 10);
    /* Truncation keeps a NUL. */
    char big[100];
    memset(big, 'x', sizeof big - 1);
    big[99] = '\0';
    struct bb_usage_rec u;
    bb_usage_set_str(u.pool, sizeof u.pool, big);
    assert_int_equal(strlen(u.pool), sizeof u.pool - 1);
}

static void test_wraparound(void **state)
{
    struct bb_ring *r = *state;
    static struct bb_usage_rec out[1000];
    unsigned long long next_in = 0, next_out = 0;
    while (next_out < 5ull * BB_RING_CAP) {
        for (int i = 0; i < 700; i++) {
            struct bb_usage_rec u = rec(2, next_in);
            assert_true(bb_ring_push(r, &u));
            next_in++;
        }
        size_t n;
        while ((n = bb_ring_pop(r, out, 1000, 1)) > 0) {
            for (size_t i = 0; i < n; i++, next_out++)
                assert_int_equal(out[i].output_tokens, next_out);
        }
    }
    assert_int_equal(next_in, next_out);
    assert_int_equal(atomic_load(&r->dropped), 0);
}

static void test_full_ring_drops_and_counts(void **state)
{
    struct bb_ring *r = *state;
    for (unsigned i = 0; i < BB_RING_CAP + 10; i++) {
        struct bb_usage_rec u = rec(3, i);
        assert_int_equal(bb_ring_push(r, &u), i < BB_RING_CAP);
    }
    assert_int_equal(atomic_load(&r->dropped), 10);
    static struct bb_usage_rec out[BB_RING_CAP + 10];
    assert_int_equal(bb_ring_pop(r, out, BB_RING_CAP + 10, 1), BB_RING_CAP);
    assert_int_equal(out[BB_RING_CAP - 1].output_tokens, BB_RING_CAP - 1);
    /* Room again once drained. */
    struct bb_usage_rec u = rec(3, 99999);
    assert_true(bb_ring_push(r, &u));
    assert_int_equal(bb_ring_pop(r, out, 4, 1), 1);
    assert_int_equal(out[0].output_tokens, 99999);
}

/* 8 producers × 30000 records against one consumer popping concurrently: every record comes
 * out once, unchanged, in each producer's order; what did not fit was counted as dropped. */
static void test_multi_process_producers(void **state)
{
    struct bb_ring *r = *state;
    enum { P = 8, N = 30000 };
    pid_t kids[P];
    for (unsigned p = 0; p < P; p++) {
        kids[p] = fork();
        assert_true(kids[p] >= 0);
        if (kids[p] == 0) {
            for (unsigned long long i = 0; i < N; i++) {
                struct bb_usage_rec u = rec(p, i);
                if (!bb_ring_push(r, &u))
                    usleep(50); /* dropped and counted: carry on */
            }
            _exit(0);
        }
    }
    static long long last[P];
    static unsigned long long got[P];
    for (unsigned p = 0; p < P; p++)
        last[p] = -1;
    static struct bb_usage_rec out[512];
    unsigned done = 0;
    unsigned long long total = 0;
    for (;;) {
        size_t n = bb_ring_pop(r, out, 512, 1);
        for (size_t i = 0; i < n; i++) {
            unsigned p = (unsigned)out[i].input_tokens;
            assert_true(p < P);
            long long s = (long long)out[i].output_tokens;
            assert_true(s > last[p]); /* FIFO per producer, no duplicates */
            last[p] = s;
            struct bb_usage_rec want = rec(p, (unsigned long long)s);
            assert_memory_equal(&out[i], &want, sizeof want);
            got[p]++;
            total++;
        }
        if (n == 0) {
            int st;
            pid_t w = waitpid(-1, &st, WNOHANG);
            if (w > 0) {
                assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
                done++;
            }
            if (done == P && bb_ring_pending(r) == 0)
                break;
            if (w <= 0)
                usleep(100);
        }
    }
    unsigned long long dropped = atomic_load(&r->dropped);
    printf("# %llu records popped, %llu dropped\n", total, dropped);
    assert_int_equal(total + dropped, (unsigned long long)P * N);
    assert_int_equal(atomic_load(&r->pushed), total);
    assert_int_equal(atomic_load(&r->skipped), 0);
}

/* A producer that claimed a cell and died: the consumer waits BB_RING_STALL_MS, then skips it;
 * records behind it flow again. */
static void test_dead_producer_skipped(void **state)
{
    struct bb_ring *r = *state;
    struct bb_usage_rec u = rec(4, 1), out[8];
    assert_true(bb_ring_push(r, &u));
    atomic_fetch_add(&r->tail, 1); /* claimed, never published */
    u = rec(4, 3);
    assert_true(bb_ring_push(r, &u));
    assert_int_equal(bb_ring_pop(r, out, 8, 1000), 1);
    assert_int_equal(bb_ring_pop(r, out, 8, 1500), 0);
    assert_int_equal(bb_ring_pop(r, out, 8, 1000 + BB_RING_STALL_MS - 1), 0);
    assert_int_equal(bb_ring_pop(r, out, 8, 1000 + BB_RING_STALL_MS), 1);
    assert_int_equal(out[0].output_tokens, 3);
    assert_int_equal(atomic_load(&r->skipped), 1);
    /* The skipped cell is usable again on the next lap. */
    for (unsigned i = 0; i < BB_RING_CAP; i++) {
        u = rec(5, i);
        assert_true(bb_ring_push(r, &u));
    }
    static struct bb_usage_rec all[BB_RING_CAP];
    assert_int_equal(bb_ring_pop(r, all, BB_RING_CAP, 5000), BB_RING_CAP);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_order_and_content, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wraparound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_ring_drops_and_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_multi_process_producers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dead_producer_skipped, setup, teardown),
    };
    return cmocka_run_group_tests_name("ring", tests, NULL, NULL);
}
