/*
 * keys_publish: SQLite keys → the shared-memory key table. Master process only, called at
 * start, right after every admin change, and from the 1 s tick when the database was changed
 * by another process (PRAGMA data_version). Single writer of the table (common/keys_shm.h).
 */
#include "master/keys_publish.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

void bb_keys_publish_limits(const struct bb_keys_db_key *k, struct bb_keys_limits *out)
{
    memset(out, 0, sizeof *out); /* bb_keys_put compares whole structs */
    memcpy(out->secret_sha256, k->secret_sha256, sizeof out->secret_sha256);
    snprintf(out->id, sizeof out->id, "%s", k->id);
    snprintf(out->name, sizeof out->name, "%s", k->name ? k->name : "");
    snprintf(out->aws_access_key_id, sizeof out->aws_access_key_id, "%s", k->aws_access_key_id);
    snprintf(out->aws_secret, sizeof out->aws_secret, "%s", k->aws_secret);
    out->has_budget = k->has_budget;
    out->budget_micros = k->has_budget ? k->budget_micros : 0;
    out->expires_at_ms = k->expires_at > 0 ? (uint64_t)k->expires_at * 1000u : 0;
    out->rpm = k->rpm;
    out->tpm = k->tpm;
    out->max_parallel = k->max_parallel;
    out->period = (uint8_t)k->period;
    out->enabled = k->enabled;
    for (size_t i = 0; i < k->n_pools && i < BB_KEYS_MAX_POOLS; i++)
        out->pool_hash[out->n_pools++] = bb_keys_pool_hash(k->pools[i], strlen(k->pools[i]));
}

static int put(struct bb_keys_db *db, struct bb_keys_table *t, const struct bb_keys_db_key *k,
               uint64_t now_ms, int *changed, struct bb_err *err)
{
    struct bb_keys_limits lim;
    bb_keys_publish_limits(k, &lim);
    uint64_t spent = 0;
    if (bb_keys_needs_spent(t, &lim)) {
        char day[11];
        int64_t start = bb_keys_period_start(k->period, now_ms);
        bb_keys_day_string(start, day);
        if (bb_keys_db_period_spent(db, k->id, k->period == BB_KEYS_PERIOD_TOTAL ? NULL : day,
                                    &spent, err) < 0)
            return -1;
    }
    int rc = bb_keys_put(t, &lim, spent, now_ms);
    if (rc < 0)
        return bb_err_set(err, "key %s: cannot publish: %s", k->id,
                          atomic_load(&t->n_live) >= BB_KEYS_CAP
                              ? "the shared-memory key table is full"
                              : "its AWS access key id is used by another key");
    *changed += rc;
    return 0;
}

int bb_keys_publish_one(struct bb_keys_db *db, struct bb_keys_table *t,
                        const struct bb_keys_db_key *k, uint64_t now_ms, struct bb_err *err)
{
    if (k->revoked_at) {
        bb_keys_remove(t, k->secret_sha256);
        return 0;
    }
    int changed = 0;
    return put(db, t, k, now_ms, &changed, err);
}

static int cmp_sha(const void *a, const void *b)
{
    return memcmp(a, b, 32);
}

int bb_keys_publish_all(struct bb_keys_db *db, struct bb_keys_table *t, uint64_t now_ms,
                        unsigned *changed, struct bb_err *err)
{
    struct bb_keys_db_key *v;
    size_t n;
    if (changed)
        *changed = 0;
    if (bb_keys_db_list(db, true, &v, &n, err) < 0)
        return -1;
    int nchanged = 0, rc = 0;
    uint8_t(*shas)[32] = bb_xcalloc(n ? n : 1, sizeof *shas);
    for (size_t i = 0; i < n; i++) {
        memcpy(shas[i], v[i].secret_sha256, 32);
        struct bb_err e = {{0}};
        if (put(db, t, &v[i], now_ms, &nchanged, &e) < 0) {
            if (rc == 0)
                *err = e; /* report the first; log them all */
            bb_error("%s", e.msg);
            rc = -1;
        }
    }
    qsort(shas, n, sizeof *shas, cmp_sha);
    /* Unpublish what the store no longer has active (deleted, revoked, edited externally). */
    uint32_t hw = atomic_load(&t->n_slots);
    for (uint32_t i = 0; i < hw; i++) {
        struct bb_keys_slot *s = &t->slots[i];
        if (!atomic_load(&s->live))
            continue;
        if (!bsearch(s->lim.secret_sha256, shas, n, sizeof *shas, cmp_sha)) {
            uint8_t sha[32];
            memcpy(sha, s->lim.secret_sha256, sizeof sha);
            bb_keys_remove(t, sha);
            nchanged++;
        }
    }
    free(shas);
    bb_keys_db_keys_free(v, n);
    atomic_store(&t->published_ms, now_ms);
    if (changed)
        *changed = (unsigned)nchanged;
    return rc;
}
