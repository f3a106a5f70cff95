/*
 * micro: microbenchmarks of hot-path decisions (SPEC §10 / issue targets): the breaker check
 * (bb_breaker_usable + bb_breaker_admit on a closed lane, target ≤ 200 ns) and a failover
 * decision (classify an upstream 503, record the failure, pick the next member with SWRR,
 * target ≤ 100 µs). Run: build-release/bench/bb-micro. Prints ns per operation.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/shm.h"
#include "worker/breaker.h"
#include "worker/classify.h"
#include "worker/router.h"
#include "worker/worker.h"

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(void)
{
    struct bb_shm *shm = bb_shm_create();
    if (!shm)
        return 1;
    static char *names[] = {"a", "b", "c"};
    struct bb_lane lanes[3];
    struct bb_member members[3];
    memset(lanes, 0, sizeof lanes);
    for (int i = 0; i < 3; i++) {
        lanes[i].name = names[i];
        lanes[i].upstream_model = names[i];
        members[i] = (struct bb_member){.lane = i, .weight = (uint32_t)(i ? 1 : 5)};
        char cell[16];
        bb_shm_cell_intern(shm, names[i]);
        snprintf(cell, sizeof cell, "p/%s", names[i]);
        bb_shm_cell_intern(shm, cell);
    }
    struct bb_provider prov = {.name = "p", .protocol = BB_PROTO_OPENAI};
    struct bb_pool pool = {.name = "p", .members = members, .n_members = 3,
                           .breaker = {false, 30, 0.5, 1000000, 3, 15, 120, 1800}};
    struct bb_conf conf = {.lanes = lanes, .n_lanes = 3, .pools = &pool, .n_pools = 1,
                           .providers = &prov, .n_providers = 1};
    struct bb_runtime rt = {.conf = &conf, .shm = shm};
    struct bb_worker w = {.magic = BB_MAGIC_WORKER, .rt = &rt, .conf = &conf};
    if (bb_router_init(&w) < 0)
        return 1;
    struct bb_shm_cell *c = bb_shm_cell_find(shm, "p/a");

    const int n = 10000000;
    uint64_t t = bb_now_ms();
    volatile int sink = 0;
    double t0 = now_ns();
    for (int i = 0; i < n; i++)
        sink += bb_breaker_usable(c, t) + (int)bb_breaker_admit(c, t);
    double breaker_ns = (now_ns() - t0) / n;

    const char *body = "{\"error\":{\"message\":\"upstream overloaded\",\"type\":\"server_error\","
                       "\"code\":null}}";
    const int m = 200000;
    bool tried[3];
    t0 = now_ns();
    for (int i = 0; i < m; i++) {
        memset(tried, 0, sizeof tried);
        bool probe;
        int first = bb_router_pick(&w, 0, tried, &probe, 0);
        tried[first] = true;
        enum bb_fclass fc = bb_classify_http(&prov, 503, body, strlen(body));
        bb_breaker_failure(w.pools[0].member_cells[first], &pool.breaker, t, probe, 0, 0);
        bb_router_give(&w, members[first].lane, 0, first);
        int next = bb_router_pick(&w, 0, tried, &probe, 0);
        bb_router_give(&w, members[next].lane, 0, next);
        sink += (int)fc;
    }
    double failover_ns = (now_ns() - t0) / m;
    printf("breaker check (usable + admit, closed lane): %.1f ns  (target <= 200 ns)\n",
           breaker_ns);
    printf("failover decision (pick + classify 503 + record + re-pick): %.2f us  (target <= "
           "100 us)\n",
           failover_ns / 1000.0);
    bb_router_free(&w);
    bb_shm_destroy(shm);
    return sink == -1;
}
