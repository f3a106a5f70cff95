/*
 * status: the status JSON (see status.h). Reads shared memory only: breaker and lane cells
 * (common/shm.h), metric cells (common/metrics_shm.h).
 */
#include "master/status.h"

#include <stdio.h>

#include "bb_status_html.h"
#include "common/metrics_shm.h"
#include "common/metrics_text.h"

static const char *const state_names[] = {"closed", "half-open", "open"};

const char *bb_status_html(size_t *len)
{
    *len = sizeof bb_status_html_text - 1;
    return bb_status_html_text;
}

static uint64_t ld(_Atomic uint64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

static void add_int(json_object *o, const char *k, int64_t v)
{
    json_object_object_add(o, k, json_object_new_int64(v));
}

static void add_num(json_object *o, const char *k, double v)
{
    json_object_object_add(o, k, json_object_new_double(v));
}

/* One pool member (or a lane addressed directly): breaker cell bc, metric cell mc. */
static json_object *member(const struct bb_conf *conf, int lane, struct bb_shm_cell *bc,
                           struct bb_shm_cell *lc, struct bb_mx_member *mc, uint64_t now)
{
    json_object *o = json_object_new_object();
    const struct bb_lane *l = &conf->lanes[lane];
    json_object_object_add(o, "lane", json_object_new_string(l->name));
    json_object_object_add(o, "provider",
                           json_object_new_string(conf->providers[l->provider].name));
    int st = bb_mx_breaker_state(bc, now), lst = bb_mx_breaker_state(lc, now);
    st = lst > st ? lst : st; /* a hard-down lane is open in every pool */
    json_object_object_add(o, "state", json_object_new_string(state_names[st]));
    uint64_t until = 0;
    if (bc && st)
        until = atomic_load(&bc->open_until_ms);
    if (lc && lst && atomic_load(&lc->open_until_ms) > until)
        until = atomic_load(&lc->open_until_ms);
    add_int(o, "cooldown_ms", until > now ? (int64_t)(until - now) : 0);
    add_int(o, "inflight", lc ? atomic_load(&lc->inflight) : 0);
    uint64_t ok = bc ? atomic_load(&bc->ok) : 0, err = bc ? atomic_load(&bc->err) : 0;
    add_int(o, "ok", (int64_t)ok);
    add_int(o, "err", (int64_t)err);
    add_num(o, "error_rate", ok + err ? (double)err / (double)(ok + err) : 0);
    add_int(o, "failovers", bc ? (int64_t)atomic_load(&bc->failovers) : 0);
    add_int(o, "trips", bc ? (int64_t)atomic_load(&bc->trips) : 0);
    add_int(o, "attempts", mc ? (int64_t)ld(&mc->attempts) : 0);
    uint64_t n = 0;
    for (int i = 0; mc && i <= BB_MX_BUCKETS; i++)
        n += ld(&mc->ttft.b[i]);
    if (n)
        add_num(o, "ttft_ms", (double)ld(&mc->ttft.sum_us) / (double)n / 1000.0);
    else
        json_object_object_add(o, "ttft_ms", NULL);
    return o;
}

static struct bb_mx_member *mcell(struct bb_shm *shm, const char *pool, const char *lane)
{
    struct bb_mx_cell *c = bb_mx_find(&shm->metrics, 'm', pool, lane);
    return c ? &c->u.member : NULL;
}

struct json_object *bb_status_json(const struct bb_conf *conf, struct bb_shm *shm)
{
    uint64_t now = bb_now_ms();
    json_object *root = json_object_new_object();
    add_int(root, "generation", atomic_load(&shm->generation));
    add_int(root, "started_ms", (int64_t)atomic_load(&shm->started_realtime_ms));
    add_int(root, "now_ms", (int64_t)bb_wall_ms());
    int workers = 0;
    for (int i = 0; i < BB_SHM_MAX_WORKERS; i++)
        workers += atomic_load(&shm->workers[i].state) == BB_WORKER_RUNNING;
    add_int(root, "workers", workers);
    json_object *pools = json_object_new_array();
    for (size_t p = 0; p < conf->n_pools; p++) {
        const struct bb_pool *pl = &conf->pools[p];
        json_object *po = json_object_new_object(), *ms = json_object_new_array();
        json_object_object_add(po, "name", json_object_new_string(pl->name));
        for (size_t m = 0; m < pl->n_members; m++) {
            const char *ln = conf->lanes[pl->members[m].lane].name;
            char name[2 * BB_SHM_NAME_MAX + 2];
            snprintf(name, sizeof name, "%s/%s", pl->name, ln);
            json_object_array_add(ms,
                                  member(conf, pl->members[m].lane, bb_shm_cell_find(shm, name),
                                         bb_shm_cell_find(shm, ln), mcell(shm, pl->name, ln), now));
        }
        json_object_object_add(po, "members", ms);
        json_object_array_add(pools, po);
    }
    json_object_object_add(root, "pools", pools);
    json_object *lanes = json_object_new_array();
    for (size_t i = 0; i < conf->n_lanes; i++) {
        const char *ln = conf->lanes[i].name;
        struct bb_shm_cell *lc = bb_shm_cell_find(shm, ln);
        json_object *lo = member(conf, (int)i, lc, lc, mcell(shm, ln, ln), now);
        add_int(lo, "max_concurrent", conf->lanes[i].max_concurrent);
        json_object_array_add(lanes, lo);
    }
    json_object_object_add(root, "lanes", lanes);
    json_object *keys = json_object_new_array();
    struct bb_mx_region *r = &shm->metrics;
    for (uint32_t i = 0; i < BB_MX_MAX_KEYS; i++) {
        struct bb_mx_key *k = &r->keys[i];
        if (atomic_load(&k->state) != 2)
            continue;
        json_object *ko = json_object_new_object();
        json_object_object_add(ko, "key", json_object_new_string(k->id));
        add_num(ko, "spend_usd", (double)ld(&k->spend_micros) / 1e6);
        add_int(ko, "requests", (int64_t)ld(&k->requests));
        json_object_array_add(keys, ko);
    }
    if (ld(&r->other.requests)) {
        json_object *ko = json_object_new_object();
        json_object_object_add(ko, "key", json_object_new_string("_other"));
        add_num(ko, "spend_usd", (double)ld(&r->other.spend_micros) / 1e6);
        add_int(ko, "requests", (int64_t)ld(&r->other.requests));
        json_object_array_add(keys, ko);
    }
    json_object_object_add(root, "keys", keys);
    return root;
}
