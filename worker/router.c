/*
 * router: SWRR selection and lane slots. Worker process, single-threaded; lane in-flight
 * counters are shm atomics shared by every worker (compare-and-swap so max_concurrent holds).
 */
#include "worker/router.h"

#include <stdio.h>
#include <stdlib.h>

#include "common/log.h"
#include "worker/breaker.h"
#include "worker/worker.h"

int bb_router_init(struct bb_worker *w)
{
    const struct bb_conf *conf = w->conf;
    struct bb_shm *shm = w->rt->shm;
    w->lane_cells = calloc(conf->n_lanes ? conf->n_lanes : 1, sizeof *w->lane_cells);
    w->pools = calloc(conf->n_pools ? conf->n_pools : 1, sizeof *w->pools);
    if (!w->lane_cells || !w->pools)
        return -1;
    for (size_t i = 0; i < conf->n_lanes; i++) {
        w->lane_cells[i] = bb_shm_cell_find(shm, conf->lanes[i].name);
        if (!w->lane_cells[i])
            bb_warn("router: no shared-memory cell for lane '%s'", conf->lanes[i].name);
    }
    for (size_t p = 0; p < conf->n_pools; p++) {
        const struct bb_pool *pool = &conf->pools[p];
        size_t n = pool->n_members ? pool->n_members : 1;
        w->pools[p].current = calloc(n, sizeof(int64_t));
        w->pools[p].member_cells = calloc(n, sizeof(struct bb_shm_cell *));
        if (!w->pools[p].current || !w->pools[p].member_cells)
            return -1;
        for (size_t m = 0; m < pool->n_members; m++) {
            char name[BB_SHM_NAME_MAX];
            snprintf(name, sizeof name, "%s/%s", pool->name,
                     conf->lanes[pool->members[m].lane].name);
            w->pools[p].member_cells[m] = bb_shm_cell_find(shm, name);
        }
    }
    return 0;
}

void bb_router_free(struct bb_worker *w)
{
    if (w->pools)
        for (size_t p = 0; p < w->conf->n_pools; p++) {
            free(w->pools[p].current);
            free(w->pools[p].member_cells);
        }
    free(w->pools);
    free(w->lane_cells);
    w->pools = NULL;
    w->lane_cells = NULL;
}

static bool lane_has_room(struct bb_worker *w, int lane)
{
    uint32_t max = w->conf->lanes[lane].max_concurrent;
    struct bb_shm_cell *c = w->lane_cells[lane];
    return !max || !c || atomic_load_explicit(&c->inflight, memory_order_relaxed) < (int32_t)max;
}

bool bb_router_take(struct bb_worker *w, int lane, int pool, int member)
{
    uint32_t max = w->conf->lanes[lane].max_concurrent;
    struct bb_shm_cell *c = w->lane_cells[lane];
    if (c) {
        int32_t cur = atomic_load_explicit(&c->inflight, memory_order_relaxed);
        do {
            if (max && cur >= (int32_t)max)
                return false;
        } while (!atomic_compare_exchange_weak_explicit(&c->inflight, &cur, cur + 1,
                                                        memory_order_acq_rel,
                                                        memory_order_relaxed));
        atomic_fetch_add_explicit(&c->attempts, 1, memory_order_relaxed);
    }
    if (pool >= 0 && member >= 0) {
        struct bb_shm_cell *mc = w->pools[pool].member_cells[member];
        if (mc) {
            atomic_fetch_add_explicit(&mc->inflight, 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&mc->attempts, 1, memory_order_relaxed);
        }
    }
    return true;
}

void bb_router_give(struct bb_worker *w, int lane, int pool, int member)
{
    struct bb_shm_cell *c = w->lane_cells[lane];
    if (c)
        atomic_fetch_sub_explicit(&c->inflight, 1, memory_order_acq_rel);
    if (pool >= 0 && member >= 0) {
        struct bb_shm_cell *mc = w->pools[pool].member_cells[member];
        if (mc)
            atomic_fetch_sub_explicit(&mc->inflight, 1, memory_order_relaxed);
    }
}

/* Is member m a candidate right now (not tried, room on its lane, breakers admit)? */
static bool candidate(struct bb_worker *w, int pool_idx, size_t m, const bool *tried,
                      uint64_t now)
{
    const struct bb_pool *pool = &w->conf->pools[pool_idx];
    struct bb_shm_cell *mc = w->pools[pool_idx].member_cells[m];
    int lane = pool->members[m].lane;
    return !tried[m] && lane_has_room(w, lane) && (!mc || bb_breaker_usable(mc, now)) &&
           (!w->lane_cells[lane] || bb_breaker_usable(w->lane_cells[lane], now));
}

/* Try to claim member m: its breaker (maybe the probe) and a lane slot. */
static bool claim(struct bb_worker *w, int pool_idx, size_t m, uint64_t now, bool *probe)
{
    struct bb_shm_cell *mc = w->pools[pool_idx].member_cells[m];
    enum bb_breaker_admit ad = mc ? bb_breaker_admit(mc, now) : BB_ADMIT_YES;
    if (ad != BB_ADMIT_NO &&
        bb_router_take(w, w->conf->pools[pool_idx].members[m].lane, pool_idx, (int)m)) {
        *probe = ad == BB_ADMIT_PROBE;
        return true;
    }
    if (ad == BB_ADMIT_PROBE)
        bb_breaker_release_probe(mc);
    return false;
}

/* The policy's score of a member: lower is better (SPEC §5.5). */
static double score(struct bb_worker *w, int pool_idx, size_t m)
{
    const struct bb_pool *pool = &w->conf->pools[pool_idx];
    const struct bb_lane *l = &w->conf->lanes[pool->members[m].lane];
    struct bb_shm_cell *mc = w->pools[pool_idx].member_cells[m];
    struct bb_shm_cell *lc = w->lane_cells[pool->members[m].lane];
    switch (pool->route) {
    case BB_ROUTE_CHEAPEST:
        return l->price.input + l->price.output;
    case BB_ROUTE_FASTEST: /* unknown latency first: it has to be learned */
        return mc ? (double)atomic_load_explicit(&mc->reserved[BB_CELL_EWMA_US],
                                                 memory_order_relaxed)
                  : 0;
    case BB_ROUTE_LEAST_BUSY: {
        double inflight = lc ? atomic_load_explicit(&lc->inflight, memory_order_relaxed) : 0;
        double cap = l->max_concurrent ? l->max_concurrent : 1e9;
        return -(cap - inflight); /* most free slots first */
    }
    default:
        return 0;
    }
}

int bb_router_pick(struct bb_worker *w, int pool_idx, const bool *tried, bool *probe,
                   uint64_t affinity)
{
    const struct bb_pool *pool = &w->conf->pools[pool_idx];
    int64_t *cur = w->pools[pool_idx].current;
    struct bb_shm_cell **mcells = w->pools[pool_idx].member_cells;
    bool skip[64] = {0}; /* members lost to another worker (last slot, the probe) */
    uint64_t now = bb_now_ms();
    *probe = false;
    if (affinity && pool->n_members) { /* the session's member, when usable */
        size_t m = (size_t)(affinity % pool->n_members);
        if (candidate(w, pool_idx, m, tried, now) && claim(w, pool_idx, m, now, probe))
            return (int)m;
    }
    if (pool->route != BB_ROUTE_WEIGHTED) {
        /* best score first; members the policy cannot rank still follow (demoted, not
         * dropped); ties keep the configured order */
        for (int round = 0; round < 64; round++) {
            int best = -1;
            double bs = 0;
            for (size_t m = 0; m < pool->n_members; m++) {
                if ((m < 64 && skip[m]) || !candidate(w, pool_idx, m, tried, now))
                    continue;
                double sc = score(w, pool_idx, m);
                if (best < 0 || sc < bs) {
                    best = (int)m;
                    bs = sc;
                }
            }
            if (best < 0)
                return -1;
            if (claim(w, pool_idx, (size_t)best, now, probe))
                return best;
            if (best < 64)
                skip[best] = true;
        }
        return -1;
    }
    for (int round = 0; round < 64; round++) {
        int64_t total = 0;
        int best = -1;
        for (size_t m = 0; m < pool->n_members; m++) {
            int lane = pool->members[m].lane;
            if (tried[m] || (m < 64 && skip[m]) || !lane_has_room(w, lane) ||
                (mcells[m] && !bb_breaker_usable(mcells[m], now)) ||
                (w->lane_cells[lane] && !bb_breaker_usable(w->lane_cells[lane], now)))
                continue;
            cur[m] += pool->members[m].weight;
            total += pool->members[m].weight;
            if (best < 0 || cur[m] > cur[best])
                best = (int)m;
        }
        if (best < 0)
            return -1;
        cur[best] -= total;
        enum bb_breaker_admit ad = mcells[best] ? bb_breaker_admit(mcells[best], now)
                                                : BB_ADMIT_YES;
        if (ad != BB_ADMIT_NO && bb_router_take(w, pool->members[best].lane, pool_idx, best)) {
            *probe = ad == BB_ADMIT_PROBE;
            return best;
        }
        if (ad == BB_ADMIT_PROBE)
            bb_breaker_release_probe(mcells[best]);
        if (best < 64)
            skip[best] = true;
    }
    return -1;
}

int bb_router_pick_least_bad(struct bb_worker *w, int pool_idx, const bool *tried)
{
    const struct bb_pool *pool = &w->conf->pools[pool_idx];
    uint64_t now = bb_now_ms(), best_wait = UINT64_MAX;
    int best = -1;
    for (size_t m = 0; m < pool->n_members; m++) {
        int lane = pool->members[m].lane;
        if (tried[m] || !lane_has_room(w, lane))
            continue;
        struct bb_shm_cell *mc = w->pools[pool_idx].member_cells[m];
        uint64_t wait = mc ? bb_breaker_wait_ms(mc, now) : 0;
        if (wait < best_wait) {
            best_wait = wait;
            best = (int)m;
        }
    }
    if (best >= 0 && !bb_router_take(w, pool->members[best].lane, pool_idx, best))
        return -1;
    return best;
}

void bb_router_observe_latency(struct bb_worker *w, int pool_idx, int member, uint64_t us)
{
    if (pool_idx < 0 || member < 0)
        return;
    struct bb_shm_cell *mc = w->pools[pool_idx].member_cells[member];
    if (!mc)
        return;
    uint64_t old = atomic_load_explicit(&mc->reserved[BB_CELL_EWMA_US], memory_order_relaxed);
    /* EWMA with alpha 0.2 (SPEC §5.5); a lost race between workers only drops one sample */
    uint64_t v = old ? (old * 4 + us) / 5 : us;
    atomic_store_explicit(&mc->reserved[BB_CELL_EWMA_US], v ? v : 1, memory_order_relaxed);
}

uint64_t bb_router_soonest_ms(struct bb_worker *w, int pool_idx)
{
    const struct bb_pool *pool = &w->conf->pools[pool_idx];
    uint64_t now = bb_now_ms(), best = UINT64_MAX;
    for (size_t m = 0; m < pool->n_members; m++) {
        struct bb_shm_cell *mc = w->pools[pool_idx].member_cells[m];
        struct bb_shm_cell *lc = w->lane_cells[pool->members[m].lane];
        uint64_t a = mc ? bb_breaker_wait_ms(mc, now) : 0;
        uint64_t b = lc ? bb_breaker_wait_ms(lc, now) : 0;
        uint64_t wait = a > b ? a : b;
        if (wait < best)
            best = wait;
    }
    return best == UINT64_MAX ? 0 : best;
}
