/*
 * metrics_text: render the exposition (see metrics_text.h). Series are walked from the
 * configuration (never from what happens to be in the table), so only configured names become
 * labels; counters that are still zero are left out where their label set depends on traffic
 * (outcomes, failure classes, token tiers), and always written where a dashboard needs the
 * series to exist (attempts, histograms, breaker state).
 */
#include "common/metrics_text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/metrics_shm.h"

struct out {
    FILE *f;
    const struct bb_conf *conf;
    struct bb_shm *shm;
    struct bb_mx_region *r;
    uint64_t now_ms;
};

static const char *const fclass_names[] = {
#define X(id, name) name,
    BB_FCLASS_LIST(X)
#undef X
};

/* A label value: configured names are plain, but escape as the format requires anyway. */
static void lv(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            fputc('\\', f);
        if (*s == '\n')
            fputs("\\n", f);
        else
            fputc(*s, f);
    }
}

static void family(struct out *o, const char *name, const char *type, const char *help)
{
    fprintf(o->f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{k1="v1",k2="v2"} value — labels as NULL-terminated (key, value) pairs. */
static void sample(struct out *o, const char *name, const char *const *labels, const char *le,
                   double v)
{
    fputs(name, o->f);
    if ((labels && labels[0]) || le) {
        fputc('{', o->f);
        int n = 0;
        for (size_t i = 0; labels && labels[i]; i += 2, n++) {
            fprintf(o->f, "%s%s=\"", n ? "," : "", labels[i]);
            lv(o->f, labels[i + 1]);
            fputc('"', o->f);
        }
        if (le)
            fprintf(o->f, "%sle=\"%s\"", n ? "," : "", le);
        fputc('}', o->f);
    }
    if (v == (double)(uint64_t)v && v < 1e15)
        fprintf(o->f, " %llu\n", (unsigned long long)v);
    else
        fprintf(o->f, " %.9g\n", v);
}

static uint64_t ld(_Atomic uint64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

static void hist(struct out *o, const char *name, const char *const *labels, struct bb_mx_hist *h,
                 enum bb_mx_buckets set)
{
    const uint64_t *b = bb_mx_bounds(set);
    char bn[128], le[32];
    uint64_t cum = 0;
    snprintf(bn, sizeof bn, "%s_bucket", name);
    for (size_t i = 0; i <= BB_MX_BUCKETS; i++) {
        cum += ld(&h->b[i]);
        if (i < BB_MX_BUCKETS)
            snprintf(le, sizeof le, "%g", (double)b[i] / 1e6);
        else
            snprintf(le, sizeof le, "+Inf");
        sample(o, bn, labels, le, (double)cum);
    }
    snprintf(bn, sizeof bn, "%s_sum", name);
    sample(o, bn, labels, NULL, (double)ld(&h->sum_us) / 1e6);
    snprintf(bn, sizeof bn, "%s_count", name);
    sample(o, bn, labels, NULL, (double)cum);
}

/* ---- iteration over the configured names ---------------------------------------------------- */

/* The "pools" as the pool label knows them: configured pools, then lanes addressed directly. */
static size_t n_targets(const struct bb_conf *c)
{
    return c->n_pools + c->n_lanes;
}

static const char *target_name(const struct bb_conf *c, size_t i)
{
    return i < c->n_pools ? c->pools[i].name : c->lanes[i - c->n_pools].name;
}

/* Members of target i: pool members, or the lane itself. */
static size_t n_members(const struct bb_conf *c, size_t i)
{
    return i < c->n_pools ? c->pools[i].n_members : 1;
}

static const char *member_lane(const struct bb_conf *c, size_t i, size_t m)
{
    return i < c->n_pools ? c->lanes[c->pools[i].members[m].lane].name
                          : c->lanes[i - c->n_pools].name;
}

static struct bb_mx_pool *pool_cell(struct out *o, size_t i);
static struct bb_mx_member *member_cell(struct out *o, size_t i, size_t m);

/* Lanes addressed directly get series once they saw traffic (a pool's always exist). */
static bool shown(struct out *o, size_t i)
{
    if (i < o->conf->n_pools)
        return true;
    struct bb_mx_member *m = member_cell(o, i, 0);
    struct bb_mx_pool *p = pool_cell(o, i);
    if (m && ld(&m->attempts))
        return true;
    for (int pr = 0; p && pr < BB_PROTO__COUNT; pr++)
        for (int oc = 0; oc < BB_MX_OUT__COUNT; oc++)
            if (ld(&p->requests[pr][oc]))
                return true;
    return false;
}

static struct bb_mx_pool *pool_cell(struct out *o, size_t i)
{
    struct bb_mx_cell *c = bb_mx_find(o->r, 'p', target_name(o->conf, i), NULL);
    return c ? &c->u.pool : NULL;
}

static struct bb_mx_member *member_cell(struct out *o, size_t i, size_t m)
{
    struct bb_mx_cell *c =
        bb_mx_find(o->r, 'm', target_name(o->conf, i), member_lane(o->conf, i, m));
    return c ? &c->u.member : NULL;
}

/* The breaker cell of a member: "pool/lane", or the lane's own cell for a direct target. */
static struct bb_shm_cell *breaker_cell(struct out *o, size_t i, size_t m)
{
    char name[2 * BB_SHM_NAME_MAX + 2];
    if (i < o->conf->n_pools)
        snprintf(name, sizeof name, "%s/%s", target_name(o->conf, i), member_lane(o->conf, i, m));
    else
        snprintf(name, sizeof name, "%s", target_name(o->conf, i));
    return bb_shm_cell_find(o->shm, name);
}

int bb_mx_breaker_state(const struct bb_shm_cell *c, uint64_t now_ms)
{
    if (!c)
        return 0;
    uint32_t st = atomic_load(&c->breaker_state);
    if (st == 2 && atomic_load(&c->open_until_ms) <= now_ms)
        return 1;
    return st <= 2 ? (int)st : 0;
}

/* ---- families ------------------------------------------------------------------------------- */

static void requests(struct out *o)
{
    family(o, "busbar_requests_total", "counter",
           "Requests by ingress protocol, pool (or model) and outcome.");
    for (size_t i = 0; i <= n_targets(o->conf); i++) {
        bool none = i == n_targets(o->conf);
        struct bb_mx_pool *p = none ? &o->r->unrouted : pool_cell(o, i);
        for (int pr = 0; p && pr < BB_PROTO__COUNT; pr++)
            for (int oc = 0; oc < BB_MX_OUT__COUNT; oc++) {
                uint64_t v = ld(&p->requests[pr][oc]);
                if (!v)
                    continue;
                const char *l[] = {"ingress_protocol",
                                   bb_proto_name((enum bb_proto)pr),
                                   "pool",
                                   none ? "_none" : target_name(o->conf, i),
                                   "outcome",
                                   bb_mx_outcome_name((enum bb_mx_outcome)oc),
                                   NULL};
                sample(o, "busbar_requests_total", l, NULL, (double)v);
            }
    }
    family(o, "busbar_request_duration_seconds", "histogram",
           "Whole request time, from its head to its last byte.");
    for (size_t i = 0; i < n_targets(o->conf); i++) {
        struct bb_mx_pool *p = pool_cell(o, i);
        const char *l[] = {"pool", target_name(o->conf, i), NULL};
        if (p && shown(o, i))
            hist(o, "busbar_request_duration_seconds", l, &p->duration, BB_MX_B_SECONDS);
    }
    family(o, "busbar_overhead_seconds", "histogram",
           "busbar's own time per request: the request time less the upstream attempts' time.");
    for (size_t i = 0; i < n_targets(o->conf); i++) {
        struct bb_mx_pool *p = pool_cell(o, i);
        const char *l[] = {"pool", target_name(o->conf, i), NULL};
        if (p && shown(o, i))
            hist(o, "busbar_overhead_seconds", l, &p->overhead, BB_MX_B_OVERHEAD);
    }
    family(o, "busbar_route_policy_total", "counter",
           "Routing-policy calls (pools with route: webhook or script) by pool and outcome.");
    for (size_t i = 0; i < o->conf->n_pools; i++) {
        struct bb_mx_pool *p = pool_cell(o, i);
        for (int k = 0; p && o->conf->pools[i].policy.kind && k < BB_MX_POL__COUNT; k++) {
            const char *l[] = {"pool", target_name(o->conf, i), "outcome",
                               bb_mx_policy_name((enum bb_mx_policy)k), NULL};
            sample(o, "busbar_route_policy_total", l, NULL, (double)ld(&p->policy[k]));
        }
    }
    family(o, "busbar_failovers_total", "counter",
           "Attempts that failed and moved the request on, by pool and the failure's class.");
    for (size_t i = 0; i < n_targets(o->conf); i++) {
        struct bb_mx_pool *p = pool_cell(o, i);
        for (int fc = 0; p && fc < BB_FC__COUNT; fc++) {
            uint64_t v = ld(&p->failovers[fc]);
            const char *l[] = {"pool", target_name(o->conf, i), "reason", fclass_names[fc], NULL};
            if (v)
                sample(o, "busbar_failovers_total", l, NULL, (double)v);
        }
    }
}

static void members(struct out *o)
{
    static const struct {
        const char *name, *help;
    } fam[] = {
        {"busbar_upstream_attempts_total", "Upstream attempts by pool and lane."},
        {"busbar_upstream_failures_total", "Failed upstream attempts by pool, lane and class."},
        {"busbar_breaker_trips_total", "Times the lane's breaker opened, by pool and lane."},
        {"busbar_lane_state", "Breaker state: 0 closed, 1 half-open, 2 open."},
        {"busbar_upstream_duration_seconds", "Upstream attempt time, from sending to the end."},
        {"busbar_time_to_first_token_seconds",
         "Streamed attempts: from sending to the first meaningful event."},
    };
    static const char *const type[] = {"counter", "counter",   "counter",
                                       "gauge",   "histogram", "histogram"};
    for (size_t f = 0; f < sizeof fam / sizeof fam[0]; f++) {
        family(o, fam[f].name, type[f], fam[f].help);
        for (size_t i = 0; i < n_targets(o->conf); i++)
            for (size_t m = 0; shown(o, i) && m < n_members(o->conf, i); m++) {
                struct bb_mx_member *mc = member_cell(o, i, m);
                const char *l[] = {
                    "pool", target_name(o->conf, i), "lane", member_lane(o->conf, i, m), NULL, NULL,
                    NULL};
                struct bb_shm_cell *bc = breaker_cell(o, i, m);
                switch (f) {
                case 0:
                    sample(o, fam[f].name, l, NULL, mc ? (double)ld(&mc->attempts) : 0);
                    break;
                case 1:
                    for (int fc = 0; mc && fc < BB_FC__COUNT; fc++) {
                        uint64_t v = ld(&mc->failures[fc]);
                        l[4] = "class";
                        l[5] = fclass_names[fc];
                        if (v)
                            sample(o, fam[f].name, l, NULL, (double)v);
                    }
                    break;
                case 2:
                    sample(o, fam[f].name, l, NULL, bc ? (double)atomic_load(&bc->trips) : 0);
                    break;
                case 3:
                    sample(o, fam[f].name, l, NULL, bb_mx_breaker_state(bc, o->now_ms));
                    break;
                case 4:
                    if (mc)
                        hist(o, fam[f].name, l, &mc->upstream, BB_MX_B_SECONDS);
                    break;
                default:
                    if (mc)
                        hist(o, fam[f].name, l, &mc->ttft, BB_MX_B_SECONDS);
                    break;
                }
            }
    }
}

static void lanes(struct out *o)
{
    const struct bb_conf *c = o->conf;
    family(o, "busbar_lane_inflight", "gauge", "Requests holding a slot of the lane now.");
    for (size_t i = 0; i < c->n_lanes; i++) {
        struct bb_shm_cell *lc = bb_shm_cell_find(o->shm, c->lanes[i].name);
        const char *l[] = {"lane", c->lanes[i].name, "provider",
                           c->providers[c->lanes[i].provider].name, NULL};
        sample(o, "busbar_lane_inflight", l, NULL, lc ? atomic_load(&lc->inflight) : 0);
    }
    family(o, "busbar_tokens_total", "counter", "Tokens billed by lane and tier.");
    for (size_t i = 0; i < c->n_lanes; i++) {
        struct bb_mx_cell *cell = bb_mx_find(o->r, 'l', c->lanes[i].name, NULL);
        for (int t = 0; cell && t < BB_MX_TIER__COUNT; t++) {
            uint64_t v = ld(&cell->u.lane.tokens[t]);
            const char *l[] = {"lane", c->lanes[i].name, "tier",
                               bb_mx_tier_name((enum bb_mx_tier)t), NULL};
            if (v)
                sample(o, "busbar_tokens_total", l, NULL, (double)v);
        }
    }
    family(o, "busbar_translations_total", "counter",
           "Upstream attempts translated from the ingress protocol to another egress protocol.");
    for (int f = 0; f < BB_PROTO__COUNT; f++)
        for (int t = 0; t < BB_PROTO__COUNT; t++) {
            uint64_t v = ld(&o->r->translations[f][t]);
            const char *l[] = {"from", bb_proto_name((enum bb_proto)f), "to",
                               bb_proto_name((enum bb_proto)t), NULL};
            if (v)
                sample(o, "busbar_translations_total", l, NULL, (double)v);
        }
}

static int cmp_key(const void *a, const void *b)
{
    return strcmp((*(struct bb_mx_key *const *)a)->id, (*(struct bb_mx_key *const *)b)->id);
}

/* Per-key series: the spend counted here since start (capped at key_series_max, the rest in
 * key="_other"), and each budgeted key's budget and spend in its current period. */
static void keys(struct out *o)
{
    struct bb_mx_region *r = o->r;
    family(o, "busbar_key_spend_usd", "gauge",
           "Spend through busbar since it started, by virtual key (capped; the rest: _other).");
    struct bb_mx_key **v = malloc(BB_MX_MAX_KEYS * sizeof *v);
    size_t n = 0;
    for (uint32_t i = 0; v && i < BB_MX_MAX_KEYS; i++)
        if (atomic_load(&r->keys[i].state) == 2)
            v[n++] = &r->keys[i];
    qsort(v, n, sizeof *v, cmp_key);
    /* one series per id: two workers may have claimed a cell for one id at the same moment */
    for (size_t i = 0; i < n;) {
        uint64_t spend = 0;
        size_t j = i;
        for (; j < n && strcmp(v[j]->id, v[i]->id) == 0; j++)
            spend += ld(&v[j]->spend_micros);
        const char *l[] = {"key", v[i]->id, NULL};
        sample(o, "busbar_key_spend_usd", l, NULL, (double)spend / 1e6);
        i = j;
    }
    free(v);
    const char *l[] = {"key", "_other", NULL};
    sample(o, "busbar_key_spend_usd", l, NULL, (double)ld(&r->other.spend_micros) / 1e6);

    struct bb_keys_table *t = &o->shm->keys;
    uint32_t slots = atomic_load(&t->n_slots);
    for (int pass = 0; pass < 2; pass++) {
        const char *name = pass ? "busbar_key_budget_spent_usd" : "busbar_key_budget_usd";
        family(o, name, "gauge",
               pass ? "Spend of each budgeted virtual key in its current period."
                    : "Budget of each virtual key that has one.");
        uint32_t shown = 0;
        for (uint32_t i = 0; i < slots && i < BB_KEYS_CAP && shown < o->conf->key_series_max; i++) {
            struct bb_keys_ref ref;
            if (bb_keys_read(t, (int)i, &ref) < 0 || !ref.lim.has_budget)
                continue;
            struct bb_keys_usage u;
            bb_keys_usage(t, (int)i, bb_wall_ms(), &u);
            char id[BB_KEYS_ID_SIZE];
            snprintf(id, sizeof id, "%s", ref.lim.id);
            const char *kl[] = {"key", id, NULL};
            sample(o, name, kl, NULL,
                   (double)(pass ? u.spent_micros : ref.lim.budget_micros) / 1e6);
            shown++;
        }
    }
}

static void process(struct out *o)
{
    static const char *const help[] = {
#define X(id, name, h) h,
        BB_MX_GLOBAL_LIST(X)
#undef X
    };
    static const char *const names[] = {
#define X(id, name, h) name,
        BB_MX_GLOBAL_LIST(X)
#undef X
    };
    for (int g = 0; g < BB_MX_G__COUNT; g++) {
        family(o, names[g], "counter", help[g]);
        sample(o, names[g], NULL, NULL, (double)ld(&o->r->global[g]));
    }
    family(o, "busbar_usage_records_dropped_total", "counter",
           "Usage records the ledger ring could not take (ledger behind).");
    sample(o, "busbar_usage_records_dropped_total", NULL, NULL,
           (double)atomic_load(&o->shm->ring.dropped));
    unsigned running = 0;
    for (int i = 0; i < BB_SHM_MAX_WORKERS; i++)
        running += atomic_load(&o->shm->workers[i].state) == BB_WORKER_RUNNING;
    family(o, "busbar_workers", "gauge", "Worker processes accepting traffic.");
    sample(o, "busbar_workers", NULL, NULL, running);
    family(o, "busbar_start_time_seconds", "gauge", "When the master started (Unix time).");
    sample(o, "busbar_start_time_seconds", NULL, NULL,
           (double)atomic_load(&o->shm->started_realtime_ms) / 1e3);
    family(o, "busbar_build_info", "gauge", "Always 1; the version is a label.");
    const char *l[] = {"version", BB_VERSION, NULL};
    sample(o, "busbar_build_info", l, NULL, 1);
}

char *bb_mx_render(const struct bb_conf *conf, struct bb_shm *shm, size_t *len)
{
    char *buf = NULL;
    size_t n = 0;
    struct out o = {open_memstream(&buf, &n), conf, shm, &shm->metrics, bb_now_ms()};
    if (!o.f)
        return NULL;
    requests(&o);
    members(&o);
    lanes(&o);
    keys(&o);
    process(&o);
    if (fclose(o.f) != 0) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}
