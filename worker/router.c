/*
 * router: SWRR selection, routing policies and lane slots. Worker process, single-threaded;
 * lane in-flight counters are shm atomics shared by every worker (compare-and-swap so
 * max_concurrent holds). A lane's provider rate-limit headroom (route: usage) is one atomic
 * word in its lane cell, written by whichever worker saw the latest response head: last
 * writer wins, which is what a reading of the provider's counters wants.
 */
#include "worker/router.h"

#include "worker/proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/http_parse.h"
#include "common/log.h"
#include "worker/breaker.h"
#include "worker/proto.h"
#include "worker/worker.h"

int bb_router_init(struct bb_worker *w)
{
    const struct bb_conf *conf = w->conf;
    struct bb_shm *shm = w->rt->shm;
    w->lane_cells = calloc(conf->n_lanes ? conf->n_lanes : 1, sizeof *w->lane_cells);
    w->pools = calloc(conf->n_pools ? conf->n_pools : 1, sizeof *w->pools);
    if (!w->lane_cells || !w->pools)
        return -1;
    for (size_t i = 0; i < conf->n_pools; i++)
        w->usage_route |= conf->pools[i].route == BB_ROUTE_USAGE;
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
        } while (!atomic_compare_exchange_weak_explicit(
            &c->inflight, &cur, cur + 1, memory_order_acq_rel, memory_order_relaxed));
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
static bool candidate(struct bb_worker *w, int pool_idx, size_t m, const bool *tried, uint64_t now)
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
        return mc ? (double)atomic_load_explicit(&mc->ewma_us, memory_order_relaxed) : 0;
    case BB_ROUTE_LEAST_BUSY: {
        double inflight = lc ? atomic_load_explicit(&lc->inflight, memory_order_relaxed) : 0;
        double cap = l->max_concurrent ? l->max_concurrent : 1e9;
        return -(cap - inflight); /* most free slots first */
    }
    default:
        return 0;
    }
}

uint32_t bb_router_headroom_ppm(struct bb_worker *w, int lane, uint64_t now_ms)
{
    struct bb_shm_cell *c = lane >= 0 && w->lane_cells ? w->lane_cells[lane] : NULL;
    if (!c)
        return BB_ROUTER_PPM;
    uint64_t v = atomic_load_explicit(&c->ratelimit, memory_order_relaxed);
    uint64_t until = v & 0xffffffffu;
    if (!until || now_ms / 1000 >= until)
        return BB_ROUTER_PPM; /* never read, or the provider's window has reset since */
    uint64_t ppm = v >> 32;
    return ppm > BB_ROUTER_PPM ? BB_ROUTER_PPM : (uint32_t)ppm;
}

/* route: usage. The usable members with the most provider headroom, then SWRR among them
 * (only they take part in this round's SWRR, as unusable members sit out a weighted round).
 * Members with less headroom are not dropped: once the top ones are tried or full, they
 * become the top. */
static int pick_usage(struct bb_worker *w, int pool_idx, const bool *tried, bool *probe,
                      uint64_t now, bool *skip)
{
    const struct bb_pool *pool = &w->conf->pools[pool_idx];
    int64_t *cur = w->pools[pool_idx].current;
    for (int round = 0; round < 64; round++) {
        uint32_t top = 0;
        bool any = false;
        for (size_t m = 0; m < pool->n_members; m++) {
            if ((m < 64 && skip[m]) || !candidate(w, pool_idx, m, tried, now))
                continue;
            uint32_t hr = bb_router_headroom_ppm(w, pool->members[m].lane, now);
            if (!any || hr > top)
                top = hr;
            any = true;
        }
        if (!any)
            return -1;
        int64_t total = 0;
        int best = -1;
        for (size_t m = 0; m < pool->n_members; m++) {
            if ((m < 64 && skip[m]) || !candidate(w, pool_idx, m, tried, now) ||
                bb_router_headroom_ppm(w, pool->members[m].lane, now) != top)
                continue;
            cur[m] += pool->members[m].weight;
            total += pool->members[m].weight;
            if (best < 0 || cur[m] > cur[best])
                best = (int)m;
        }
        if (best < 0)
            continue; /* another worker changed a reading between the two passes */
        cur[best] -= total;
        if (claim(w, pool_idx, (size_t)best, now, probe))
            return best;
        if (best < 64)
            skip[best] = true;
    }
    return -1;
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
    if (pool->route == BB_ROUTE_USAGE)
        return pick_usage(w, pool_idx, tried, probe, now, skip);
    /* webhook and script pools route natively by weight (abstain, on_error: weighted) */
    if (pool->route == BB_ROUTE_CHEAPEST || pool->route == BB_ROUTE_FASTEST ||
        pool->route == BB_ROUTE_LEAST_BUSY) {
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
        enum bb_breaker_admit ad =
            mcells[best] ? bb_breaker_admit(mcells[best], now) : BB_ADMIT_YES;
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

int bb_router_pick_order(struct bb_worker *w, int pool_idx, const bool *tried, bool *probe,
                         const int *order, size_t n)
{
    uint64_t now = bb_now_ms();
    *probe = false;
    for (size_t i = 0; i < n; i++) {
        size_t m = (size_t)order[i];
        if (candidate(w, pool_idx, m, tried, now) && claim(w, pool_idx, m, now, probe))
            return (int)m;
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

/* Feed us into the EWMA at offset `at` (ewma_us or ttft_us) of a member's cell. */
static void observe(struct bb_worker *w, int pool_idx, int member, size_t at, uint64_t us)
{
    if (pool_idx < 0 || member < 0)
        return;
    struct bb_shm_cell *mc = w->pools[pool_idx].member_cells[member];
    if (!mc)
        return;
    _Atomic uint64_t *field = (_Atomic uint64_t *)((char *)mc + at);
    uint64_t old = atomic_load_explicit(field, memory_order_relaxed);
    /* EWMA with alpha 0.2 (SPEC §5.5); a lost race between workers only drops one sample */
    uint64_t v = old ? (old * 4 + us) / 5 : us;
    atomic_store_explicit(field, v ? v : 1, memory_order_relaxed);
}

void bb_router_observe_latency(struct bb_worker *w, int pool_idx, int member, uint64_t us)
{
    observe(w, pool_idx, member, offsetof(struct bb_shm_cell, ewma_us), us);
}

void bb_router_observe_ttft(struct bb_worker *w, int pool_idx, int member, uint64_t us)
{
    observe(w, pool_idx, member, offsetof(struct bb_shm_cell, ttft_us), us);
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

/* ---- provider rate-limit headers (route: usage) */

#define RL_DEFAULT_RESET_MS 60000u /* a reading without a readable reset */
#define RL_MAX_RESET_MS 3600000u   /* never trust a reading longer than this */

/* A header's value as a non-negative decimal integer; false when absent or not one. */
static bool header_u64(const struct bb_http_head *h, const char *name, uint64_t *out)
{
    const struct bb_http_header *hd = bb_http_find(h, name);
    if (!hd || !hd->value_len)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < hd->value_len; i++) {
        char ch = hd->value[i];
        if (ch < '0' || ch > '9' || v > (UINT64_MAX - (uint64_t)(ch - '0')) / 10)
            return false;
        v = v * 10 + (uint64_t)(ch - '0');
    }
    *out = v;
    return true;
}

/* A Go-style duration ("1s", "6m0s", "20ms", "1h2m3s", "7.66s"; a bare number is seconds)
 * in milliseconds, rounded up. false when malformed. */
static bool parse_duration_ms(const char *s, size_t n, uint64_t *out)
{
    double total = 0;
    size_t i = 0;
    if (!n)
        return false;
    while (i < n) {
        double v = 0, scale = 1;
        size_t digits = 0;
        bool frac = false;
        for (; i < n && ((s[i] >= '0' && s[i] <= '9') || (s[i] == '.' && !frac)); i++) {
            if (s[i] == '.') {
                frac = true;
                continue;
            }
            if (++digits > 15)
                return false;
            if (frac)
                v += (s[i] - '0') * (scale /= 10);
            else
                v = v * 10 + (s[i] - '0');
        }
        if (!digits)
            return false;
        double unit_ms;
        if (i == n && total == 0 && !frac && digits == i)
            unit_ms = 1000; /* the whole value is a bare number: seconds */
        else if (n - i >= 2 && s[i] == 'm' && s[i + 1] == 's')
            unit_ms = 1, i += 2;
        else if (n - i >= 2 && s[i] == 'u' && s[i + 1] == 's')
            unit_ms = 1e-3, i += 2;
        else if (n - i >= 3 && (!memcmp(s + i, "\xc2\xb5s", 3) || !memcmp(s + i, "\xce\xbcs", 3)))
            unit_ms = 1e-3, i += 3;
        else if (n - i >= 2 && s[i] == 'n' && s[i + 1] == 's')
            unit_ms = 1e-6, i += 2;
        else if (i < n && s[i] == 'h')
            unit_ms = 3600e3, i++;
        else if (i < n && s[i] == 'm')
            unit_ms = 60e3, i++;
        else if (i < n && s[i] == 's')
            unit_ms = 1e3, i++;
        else
            return false;
        total += v * unit_ms;
        if (total > 1e12)
            return false;
    }
    uint64_t ms = (uint64_t)total;
    *out = (double)ms < total ? ms + 1 : ms;
    return true;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

/* n digits at s as an unsigned number; -1 when any is not a digit. */
static int digits_at(const char *s, size_t n)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* An RFC 3339 time ("2024-05-01T12:00:05Z", fractions and ±hh:mm offsets allowed) in Unix
 * milliseconds. false when malformed. */
static bool parse_rfc3339_ms(const char *s, size_t n, int64_t *out)
{
    if (n < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
        s[13] != ':' || s[16] != ':')
        return false;
    int y = digits_at(s, 4), mo = digits_at(s + 5, 2), d = digits_at(s + 8, 2);
    int hh = digits_at(s + 11, 2), mi = digits_at(s + 14, 2), ss = digits_at(s + 17, 2);
    if (y < 0 || mo < 1 || mo > 12 || d < 1 || d > 31 || hh < 0 || hh > 23 || mi < 0 || mi > 59 ||
        ss < 0 || ss > 60)
        return false;
    size_t i = 19;
    int64_t ms = 0;
    if (i < n && s[i] == '.') {
        int scale = 100;
        size_t start = ++i;
        for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
            ms += (s[i] - '0') * scale;
            scale /= 10;
        }
        if (i == start)
            return false;
    }
    int64_t off = 0;
    if (i < n && (s[i] == 'Z' || s[i] == 'z')) {
        i++;
    } else if (i + 6 == n && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':') {
        int oh = digits_at(s + i + 1, 2), om = digits_at(s + i + 4, 2);
        if (oh < 0 || oh > 23 || om < 0 || om > 59)
            return false;
        off = (s[i] == '-' ? -1 : 1) * (int64_t)(oh * 60 + om) * 60000;
        i += 6;
    } else {
        return false;
    }
    if (i != n)
        return false;
    int64_t days = days_from_civil(y, (unsigned)mo, (unsigned)d);
    *out = ((days * 24 + hh) * 60 + mi) * 60000 + (int64_t)ss * 1000 + ms - off;
    return true;
}

/* Milliseconds until pair p's window resets, from its reset header; the default when absent
 * or unreadable, 0 when already past. */
static uint64_t pair_reset_ms(const struct bb_http_head *h, const struct bb_proto_ratelimit *p)
{
    const struct bb_http_header *hd = bb_http_find(h, p->reset);
    uint64_t ms;
    if (!hd)
        return RL_DEFAULT_RESET_MS;
    if (!p->reset_is_time)
        return parse_duration_ms(hd->value, hd->value_len, &ms) ? ms : RL_DEFAULT_RESET_MS;
    int64_t at;
    if (!parse_rfc3339_ms(hd->value, hd->value_len, &at))
        return RL_DEFAULT_RESET_MS;
    int64_t wall = (int64_t)bb_wall_ms();
    return at > wall ? (uint64_t)(at - wall) : 0;
}

void bb_router_observe_ratelimit(struct bb_worker *w, int lane, const struct bb_http_head *h,
                                 uint64_t now_ms)
{
    if (!w || !w->usage_route || !h || lane < 0 || (size_t)lane >= w->conf->n_lanes ||
        !w->lane_cells)
        return; /* nobody routes by headroom: not worth reading the headers */
    struct bb_shm_cell *c = w->lane_cells[lane];
    if (!c)
        return;
    uint64_t low = UINT64_MAX, reset_ms = 0;
    for (int pr = 0; pr < BB_PROTO__COUNT; pr++) {
        const struct bb_proto_ops *o = bb_proto_get((enum bb_proto)pr);
        for (size_t i = 0; i < o->n_ratelimit; i++) {
            const struct bb_proto_ratelimit *p = &o->ratelimit[i];
            uint64_t rem, lim;
            if (!header_u64(h, p->remaining, &rem) || !header_u64(h, p->limit, &lim) || !lim)
                continue;
            uint64_t ppm = rem >= lim ? BB_ROUTER_PPM
                           : rem <= UINT64_MAX / BB_ROUTER_PPM
                               ? rem * BB_ROUTER_PPM / lim
                               : (uint64_t)((double)rem / (double)lim * BB_ROUTER_PPM);
            uint64_t r = pair_reset_ms(h, p);
            /* the tightest limit decides; between equally tight ones, the later reset */
            if (ppm < low || (ppm == low && r > reset_ms)) {
                low = ppm;
                reset_ms = r;
            }
        }
    }
    if (low == UINT64_MAX)
        return; /* no readable pair: keep what the lane knew */
    if (reset_ms > RL_MAX_RESET_MS)
        reset_ms = RL_MAX_RESET_MS;
    uint64_t until = (now_ms + reset_ms + 999) / 1000; /* whole seconds, rounded up */
    if (!until)
        until = 1;
    atomic_store_explicit(&c->ratelimit, (low << 32) | (until & 0xffffffffu), memory_order_relaxed);
}
