/*
 * metrics_shm: cells by name, key cells, histogram observations (see metrics_shm.h).
 * Named cells are interned by the master only (single writer, like common/shm.c); key cells
 * are claimed by workers with a compare-and-swap on their state word.
 */
#include "common/metrics_shm.h"

#include <stdio.h>
#include <string.h>

/* request, upstream and first-token times: 5 ms .. 120 s */
static const uint64_t seconds_bounds[BB_MX_BUCKETS] = {
    5000,    10000,   25000,   50000,    100000,   250000,   500000,
    1000000, 2500000, 5000000, 10000000, 30000000, 60000000, 120000000};
/* busbar's own time per request: 10 µs .. 250 ms */
static const uint64_t overhead_bounds[BB_MX_BUCKETS] = {
    10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000};

const uint64_t *bb_mx_bounds(enum bb_mx_buckets set)
{
    return set == BB_MX_B_OVERHEAD ? overhead_bounds : seconds_bounds;
}

const char *bb_mx_outcome_name(enum bb_mx_outcome o)
{
    static const char *const names[] = {
#define X(id, name) name,
        BB_MX_OUTCOME_LIST(X)
#undef X
    };
    return (unsigned)o < BB_MX_OUT__COUNT ? names[o] : "error";
}

const char *bb_mx_tier_name(enum bb_mx_tier t)
{
    static const char *const names[] = {
#define X(id, name) name,
        BB_MX_TIER_LIST(X)
#undef X
    };
    return (unsigned)t < BB_MX_TIER__COUNT ? names[t] : "input";
}

const char *bb_mx_policy_name(enum bb_mx_policy p)
{
    static const char *const names[] = {
#define X(id, name) name,
        BB_MX_POLICY_LIST(X)
#undef X
    };
    return (unsigned)p < BB_MX_POL__COUNT ? names[p] : "error";
}

void bb_mx_observe(struct bb_mx_hist *h, enum bb_mx_buckets set, uint64_t us)
{
    const uint64_t *b = bb_mx_bounds(set);
    size_t i = 0;
    while (i < BB_MX_BUCKETS && us > b[i])
        i++;
    bb_mx_add(&h->b[i], 1);
    bb_mx_add(&h->sum_us, us);
}

static uint32_t fnv1a(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static struct bb_mx_cell *probe(struct bb_mx_region *r, const char *name, bool create)
{
    uint32_t h = fnv1a(name);
    for (uint32_t i = 0; i < BB_MX_MAX_CELLS; i++) {
        struct bb_mx_cell *c = &r->cells[(h + i) % BB_MX_MAX_CELLS];
        if (!atomic_load_explicit(&c->used, memory_order_acquire)) {
            if (!create)
                return NULL;
            snprintf(c->name, sizeof c->name, "%s", name);
            atomic_store_explicit(&c->used, 1, memory_order_release);
            atomic_fetch_add(&r->n_cells, 1);
            return c;
        }
        if (strcmp(c->name, name) == 0)
            return c;
    }
    return NULL;
}

static int cell_name(char *out, size_t cap, char prefix, const char *a, const char *b)
{
    int n =
        b ? snprintf(out, cap, "%c:%s/%s", prefix, a, b) : snprintf(out, cap, "%c:%s", prefix, a);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

struct bb_mx_cell *bb_mx_find(struct bb_mx_region *r, char prefix, const char *a, const char *b)
{
    char name[BB_MX_NAME_MAX];
    return cell_name(name, sizeof name, prefix, a, b) < 0 ? NULL : probe(r, name, false);
}

static int intern(struct bb_mx_region *r, char prefix, const char *a, const char *b,
                  struct bb_err *err)
{
    char name[BB_MX_NAME_MAX];
    if (cell_name(name, sizeof name, prefix, a, b) < 0)
        return bb_err_set(err, "metrics: name '%s%s%s' is too long", a, b ? "/" : "", b ? b : "");
    if (!probe(r, name, true))
        return bb_err_set(err, "metrics: the shared cell table is full (%d cells): cannot add '%s'",
                          BB_MX_MAX_CELLS, name);
    return 0;
}

int bb_mx_intern_conf(struct bb_mx_region *r, const struct bb_conf *conf, struct bb_err *err)
{
    for (size_t i = 0; i < conf->n_lanes; i++) {
        const char *l = conf->lanes[i].name;
        if (intern(r, 'l', l, NULL, err) < 0 || intern(r, 'p', l, NULL, err) < 0 ||
            intern(r, 'm', l, l, err) < 0)
            return -1;
    }
    for (size_t p = 0; p < conf->n_pools; p++) {
        const struct bb_pool *pl = &conf->pools[p];
        if (intern(r, 'p', pl->name, NULL, err) < 0)
            return -1;
        for (size_t m = 0; m < pl->n_members; m++)
            if (intern(r, 'm', pl->name, conf->lanes[pl->members[m].lane].name, err) < 0)
                return -1;
    }
    return 0;
}

struct bb_mx_key *bb_mx_key(struct bb_mx_region *r, const char *id, uint32_t max)
{
    size_t len = strlen(id);
    if (!len || len >= BB_MX_KEY_ID_MAX || max == 0)
        return &r->other;
    uint32_t h = fnv1a(id);
    for (uint32_t i = 0; i < BB_MX_MAX_KEYS; i++) {
        struct bb_mx_key *k = &r->keys[(h + i) % BB_MX_MAX_KEYS];
        uint32_t st = atomic_load_explicit(&k->state, memory_order_acquire);
        if (st == 2) {
            if (strcmp(k->id, id) == 0)
                return k;
            continue;
        }
        if (st == 1) /* being claimed (or its claimer died): never wait, look further */
            continue;
        /* free: claim it if the cap allows */
        if (atomic_fetch_add(&r->n_keys, 1) >= max) {
            atomic_fetch_sub(&r->n_keys, 1);
            return &r->other;
        }
        uint32_t zero = 0;
        if (!atomic_compare_exchange_strong(&k->state, &zero, 1)) {
            atomic_fetch_sub(&r->n_keys, 1);
            if (zero == 2 && strcmp(k->id, id) == 0)
                return k;
            continue;
        }
        memcpy(k->id, id, len + 1);
        atomic_store_explicit(&k->state, 2, memory_order_release);
        return k;
    }
    return &r->other;
}
