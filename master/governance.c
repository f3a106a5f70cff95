/*
 * governance: keys store + key table + usage sink + admin operations (SPEC §6), in the master.
 * Master process only; single-threaded (the supervisor loop calls tick/flush/admin).
 *
 * Consistency: every admin change is committed to SQLite first and published to the shared
 * key table right after, in the same call, so a worker sees it before the admin reply leaves
 * (revocations included). Changes made by another process (an operator's sqlite3 shell) are
 * picked up within BB_GOV_CHECK_MS through PRAGMA data_version. Spend reports drain the usage
 * ring first, so they include every request completed before the report was asked for.
 */
#include "master/governance.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "common/keys_shm.h"
#include "common/log.h"
#include "common/price.h"
#include "master/keys_db.h"
#include "master/keys_publish.h"
#include "master/usage_sink.h"

struct bb_gov {
    struct bb_shm *shm;
    struct bb_keys_db *db; /* NULL: governance disabled */
    char *db_path;
    bool enabled;
    struct bb_usage_sink sink;
    int64_t data_version;
    uint64_t next_drain_ms, next_check_ms, next_prune_ms; /* monotonic */
    uint32_t retention_days;                              /* 0 = keep every ledger row */
    uint64_t pruned;                                      /* ledger rows deleted */
    uint64_t store_errors;
    bool sink_failing, check_failing;
    struct bb_gov_cluster cluster; /* cluster mode hooks; key_changed NULL without */
};

void bb_gov_set_cluster(struct bb_gov *g, const struct bb_gov_cluster *c)
{
    if (!g)
        return;
    if (c)
        g->cluster = *c;
    else
        memset(&g->cluster, 0, sizeof g->cluster);
}

struct bb_keys_db *bb_gov_db(struct bb_gov *g)
{
    return g ? g->db : NULL;
}

/* Tell the cluster about an admin change (no-op without cluster mode). */
static void cluster_changed(struct bb_gov *g, const struct bb_keys_db_key *k, bool deleted)
{
    if (g->cluster.key_changed)
        g->cluster.key_changed(g->cluster.arg, k, deleted);
}

static const char *const op_names[] = {
#define X(id, name) name,
    BB_GOV_OP_LIST(X)
#undef X
};

int bb_gov_op_from_name(const char *name)
{
    for (int i = 0; i < BB_GOV_OP__COUNT; i++)
        if (!strcmp(op_names[i], name))
            return i;
    return -1;
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

struct bb_gov *bb_gov_open(const struct bb_conf *conf, struct bb_shm *shm, struct bb_err *err)
{
    struct bb_gov *g = bb_xcalloc(1, sizeof *g);
    g->shm = shm;
    g->enabled = conf->gov_enabled;
    g->retention_days = conf->gov_ledger_retention_days;
    g->db_path = bb_xstrdup(conf->gov_db_path ? conf->gov_db_path : "");
    bb_usage_sink_init(&g->sink);
    if (!g->enabled) {
        bb_notice("governance disabled: no key store, usage is not recorded");
        return g;
    }
    if (!(g->db = bb_keys_db_open(g->db_path, err)))
        goto fail;
    if (bb_keys_db_data_version(g->db, &g->data_version, err) < 0)
        goto fail;
    unsigned changed = 0;
    if (bb_keys_publish_all(g->db, &shm->keys, bb_wall_ms(), &changed, err) < 0)
        goto fail;
    bb_notice("governance: %s, %u keys published", g->db_path,
              (unsigned)atomic_load(&shm->keys.n_live));
    return g;
fail:
    bb_usage_sink_free(&g->sink);
    bb_keys_db_close(g->db);
    free(g->db_path);
    free(g);
    return NULL;
}

void bb_gov_close(struct bb_gov *g)
{
    if (!g)
        return;
    bb_gov_flush(g);
    if (g->sink.n)
        bb_error("usage ledger: %zu usage records could not be written to %s and are lost",
                 g->sink.n, g->db_path);
    uint64_t left = bb_ring_pending(&g->shm->ring);
    if (left)
        bb_error("usage ledger: %llu usage records left in the ring (behind a record a dying "
                 "worker never finished) are lost",
                 (unsigned long long)left);
    bb_usage_sink_free(&g->sink);
    bb_keys_db_close(g->db);
    free(g->db_path);
    free(g);
}

void bb_gov_reconfigure(struct bb_gov *g, const struct bb_conf *conf)
{
    if (!g)
        return;
    g->retention_days = conf->gov_ledger_retention_days;
    g->next_prune_ms = 0;
    if (conf->gov_enabled != g->enabled ||
        (g->enabled && strcmp(conf->gov_db_path ? conf->gov_db_path : "", g->db_path) != 0))
        bb_warn("governance.enabled / governance.db_path changed: takes effect after a restart "
                "(still using %s)",
                g->enabled ? g->db_path : "no store");
}

/* Write up to max records (0: all pending). -1 when the store failed. */
static long drain(struct bb_gov *g, size_t max, uint64_t now)
{
    struct bb_err err = {{0}};
    long n = bb_usage_sink_drain(&g->sink, &g->shm->ring, g->db, max, now, &err);
    if (n < 0) {
        g->store_errors++;
        if (!g->sink_failing)
            bb_error("usage ledger: %s; keeping %zu records and retrying", err.msg, g->sink.n);
        g->sink_failing = true;
        atomic_store(&g->shm->gov_store_failing, 1);
    } else if (g->sink_failing) {
        g->sink_failing = false;
        atomic_store(&g->shm->gov_store_failing, 0);
        bb_notice("usage ledger: %s writable again", g->db_path);
    }
    return n;
}

void bb_gov_flush(struct bb_gov *g)
{
    if (!g)
        return;
    /* A record a dying worker left half-written is skipped after BB_RING_STALL_MS; do not
     * wait for it on the way out. */
    drain(g, 0, bb_now_ms());
}

uint64_t bb_gov_due_ms(const struct bb_gov *g)
{
    if (!g)
        return 0;
    uint64_t due = g->next_drain_ms;
    return g->db && g->next_check_ms < due ? g->next_check_ms : due;
}

void bb_gov_tick(struct bb_gov *g, uint64_t now)
{
    if (!g)
        return;
    if (now >= g->next_drain_ms) {
        uint64_t waiting = bb_ring_pending(&g->shm->ring);
        /* a transaction's commit costs about as much as a hundred rows: at 25k requests a
         * second (500 waiting per busy tick) 512-row chunks halve the master's CPU per request
         * against 128-row ones; 512 rows take about a millisecond of the master's loop */
        size_t chunk = waiting >= 256 ? 512 : waiting >= 64 ? 128 : 32;
        long n = drain(g, chunk, now);
        bool behind = n >= 0 && (g->sink.n || bb_ring_pending(&g->shm->ring));
        g->next_drain_ms = now + (behind  ? BB_GOV_CHUNK_GAP_MS
                                  : n > 0 ? BB_GOV_BUSY_MS
                                          : BB_GOV_DRAIN_MS);
    }
    if (g->db && g->retention_days && now >= g->next_prune_ms) {
        /* Retention: per-request rows older than retention_days go, rollups stay. */
        struct bb_err err = {{0}};
        size_t del = 0;
        uint64_t cut = bb_wall_ms() - (uint64_t)g->retention_days * 86400000u;
        if (bb_keys_db_ledger_prune(g->db, cut, BB_GOV_PRUNE_ROWS, &del, &err) < 0)
            bb_warn("ledger retention: %s", err.msg);
        g->pruned += del;
        g->next_prune_ms = now + (del == BB_GOV_PRUNE_ROWS ? 1000 : BB_GOV_PRUNE_MS);
    }
    if (!g->db || now < g->next_check_ms)
        return;
    g->next_check_ms = now + BB_GOV_CHECK_MS;
    struct bb_err err = {{0}};
    int64_t v;
    if (bb_keys_db_data_version(g->db, &v, &err) < 0)
        goto failed;
    if (v == g->data_version)
        return;
    unsigned changed = 0;
    if (bb_keys_publish_all(g->db, &g->shm->keys, bb_wall_ms(), &changed, &err) < 0)
        goto failed;
    g->data_version = v;
    if (changed)
        bb_notice("governance: %u key changes picked up from %s", changed, g->db_path);
    if (g->check_failing)
        bb_notice("governance: %s readable again", g->db_path);
    g->check_failing = false;
    return;
failed:
    g->store_errors++;
    if (!g->check_failing)
        bb_error("governance: %s", err.msg);
    g->check_failing = true;
}

void bb_gov_status(struct bb_gov *g, struct json_object *status)
{
    if (!g)
        return;
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "enabled", json_object_new_boolean(g->enabled));
    json_object_object_add(o, "db", g->enabled ? json_object_new_string(g->db_path) : NULL);
    json_object_object_add(o, "keys", json_object_new_int64(atomic_load(&g->shm->keys.n_live)));
    json_object_object_add(o, "ledger_rows_written", json_object_new_uint64(g->sink.written));
    json_object_object_add(o, "ledger_rows_pruned", json_object_new_uint64(g->pruned));
    json_object_object_add(o, "usage_pending",
                           json_object_new_uint64(bb_ring_pending(&g->shm->ring) + g->sink.n));
    json_object_object_add(o, "usage_dropped",
                           json_object_new_uint64(atomic_load(&g->shm->ring.dropped)));
    json_object_object_add(o, "store_errors", json_object_new_uint64(g->store_errors));
    json_object_object_add(status, "governance", o);
    if (g->cluster.status)
        g->cluster.status(g->cluster.arg, status);
}

/* ---- replies ------------------------------------------------------------------------------ */

struct opctx {
    struct bb_gov *g;
    struct json_object *args;
    struct json_object *reply;
    int status;
    uint64_t now_ms;
};

static int fail(struct opctx *c, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(struct opctx *c, int status, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_object_put(c->reply);
    c->reply = json_object_new_object();
    struct json_object *e = json_object_new_object();
    json_object_object_add(e, "code", json_object_new_string(code));
    json_object_object_add(e, "message", json_object_new_string(msg));
    json_object_object_add(c->reply, "error", e);
    c->status = status;
    return -1;
}

/* A keys_db failure: store errors are 503 when the database is busy, 500 otherwise. */
static int fail_db(struct opctx *c, int rc, const struct bb_err *err)
{
    if (rc == BB_KEYS_DB_NOT_FOUND)
        return fail(c, 404, "not_found", "%s", err->msg[0] ? err->msg : "no such key");
    if (rc == BB_KEYS_DB_CONFLICT)
        return fail(c, 409, "conflict", "%s", err->msg);
    c->g->store_errors++;
    bb_error("governance: %s", err->msg);
    int code = bb_keys_db_last_code(c->g->db);
    bool busy = code == SQLITE_BUSY || code == SQLITE_LOCKED;
    return fail(c, busy ? 503 : 500, "store_error", "%s", err->msg);
}

static void add_u64_or_null(struct json_object *o, const char *k, bool set, uint64_t v)
{
    json_object_object_add(o, k, set ? json_object_new_uint64(v) : NULL);
}

static void add_time(struct json_object *o, const char *k, int64_t unix_secs)
{
    char iso[32];
    if (!unix_secs) {
        json_object_object_add(o, k, NULL);
        return;
    }
    bb_keys_day_string(unix_secs, iso);
    int64_t s = unix_secs % 86400;
    if (s < 0)
        s += 86400;
    snprintf(iso + 10, sizeof iso - 10, "T%02d:%02d:%02dZ", (int)(s / 3600), (int)(s / 60 % 60),
             (int)(s % 60));
    json_object_object_add(o, k, json_object_new_string(iso));
}

static const char *key_state(const struct bb_keys_db_key *k, uint64_t now_ms)
{
    if (k->revoked_at)
        return "revoked";
    if (!k->enabled)
        return "disabled";
    if (k->expires_at && now_ms / 1000 >= (uint64_t)k->expires_at)
        return "expired";
    return "active";
}

static struct json_object *key_json(struct bb_gov *g, const struct bb_keys_db_key *k,
                                    uint64_t now_ms)
{
    struct json_object *o = json_object_new_object();
    char usd[32];
    json_object_object_add(o, "id", json_object_new_string(k->id));
    json_object_object_add(o, "name", json_object_new_string(k->name));
    json_object_object_add(o, "status", json_object_new_string(key_state(k, now_ms)));
    struct json_object *pools = json_object_new_array();
    for (size_t i = 0; i < k->n_pools; i++)
        json_object_array_add(pools, json_object_new_string(k->pools[i]));
    json_object_object_add(o, "pools", pools);
    add_u64_or_null(o, "budget_micros", k->has_budget, k->budget_micros);
    bb_price_usd_format(k->budget_micros, usd, sizeof usd);
    json_object_object_add(o, "budget_usd", k->has_budget ? json_object_new_string(usd) : NULL);
    json_object_object_add(o, "period", json_object_new_string(bb_keys_period_name(k->period)));
    add_u64_or_null(o, "rpm", k->rpm != 0, k->rpm);
    add_u64_or_null(o, "tpm", k->tpm != 0, k->tpm);
    add_u64_or_null(o, "max_parallel", k->max_parallel != 0, k->max_parallel);
    json_object_object_add(o, "expires_at",
                           k->expires_at ? json_object_new_int64(k->expires_at) : NULL);
    add_time(o, "expires", k->expires_at);
    json_object_object_add(o, "enabled", json_object_new_boolean(k->enabled));
    json_object_object_add(o, "created_at", json_object_new_int64(k->created_at));
    json_object_object_add(o, "updated_at", json_object_new_int64(k->updated_at));
    json_object_object_add(o, "revoked_at",
                           k->revoked_at ? json_object_new_int64(k->revoked_at) : NULL);
    json_object_object_add(o, "aws_access_key_id",
                           k->aws_access_key_id[0] ? json_object_new_string(k->aws_access_key_id)
                                                   : NULL);
    /* What the workers see right now (shared memory), including requests not yet in the
     * ledger: published or not, and the counters of the current period/minute. */
    struct json_object *live = json_object_new_object();
    int slot = bb_keys_find(&g->shm->keys, k->secret_sha256);
    json_object_object_add(live, "published", json_object_new_boolean(slot >= 0));
    if (slot >= 0) {
        struct bb_keys_usage u;
        bb_keys_usage(&g->shm->keys, slot, now_ms, &u);
        json_object_object_add(live, "spent_micros", json_object_new_uint64(u.spent_micros));
        bb_price_usd_format(u.spent_micros, usd, sizeof usd);
        json_object_object_add(live, "spent_usd", json_object_new_string(usd));
        json_object_object_add(live, "reserved_micros",
                               json_object_new_uint64(u.committed_micros - u.spent_micros));
        if (k->has_budget) {
            uint64_t left =
                k->budget_micros > u.committed_micros ? k->budget_micros - u.committed_micros : 0;
            json_object_object_add(live, "remaining_micros", json_object_new_uint64(left));
        }
        json_object_object_add(live, "inflight", json_object_new_int(u.inflight));
        json_object_object_add(live, "rpm_used", json_object_new_int64(u.rpm_used));
        json_object_object_add(live, "tpm_used", json_object_new_int64(u.tpm_used));
        json_object_object_add(live, "admitted", json_object_new_uint64(u.admitted));
        json_object_object_add(live, "rejected", json_object_new_uint64(u.rejected));
    }
    json_object_object_add(o, "live", live);
    return o;
}

/* ---- arguments ---------------------------------------------------------------------------- */

static struct json_object *arg(struct opctx *c, const char *name)
{
    struct json_object *v;
    return json_object_object_get_ex(c->args, name, &v) ? v : NULL;
}

static bool has_arg(struct opctx *c, const char *name)
{
    struct json_object *v;
    return json_object_object_get_ex(c->args, name, &v);
}

/* Unknown members are errors (typos must not be silently ignored). */
static int check_members(struct opctx *c, const char *const *allowed)
{
    json_object_object_foreach(c->args, k, v)
    {
        (void)v;
        bool ok = !strcmp(k, "cmd");
        for (size_t i = 0; !ok && allowed[i]; i++)
            ok = !strcmp(k, allowed[i]);
        if (!ok)
            return fail(c, 400, "invalid_request", "unknown field '%.64s'", k);
    }
    return 0;
}

static int get_id(struct opctx *c, const char **id)
{
    struct json_object *v = arg(c, "id");
    if (!v || !json_object_is_type(v, json_type_string))
        return fail(c, 400, "invalid_request", "id: expected a key id (vk_…)");
    *id = json_object_get_string(v);
    return 0;
}

static int get_uint_limit(struct opctx *c, const char *name, bool *set, uint32_t *out)
{
    if (!has_arg(c, name))
        return 0;
    struct json_object *v = arg(c, name);
    *set = true;
    if (!v) {
        *out = 0; /* null: unlimited */
        return 0;
    }
    errno = 0;
    int64_t x = json_object_get_int64(v);
    if (!json_object_is_type(v, json_type_int) || errno || x < 0 || x > UINT32_MAX)
        return fail(c, 400, "invalid_request", "%s: expected an integer from 0 (unlimited) to %u",
                    name, UINT32_MAX);
    *out = (uint32_t)x;
    return 0;
}

static int parse_pools(struct opctx *c, struct bb_keys_db_patch *p, char ***owned)
{
    if (!has_arg(c, "pools"))
        return 0;
    struct json_object *v = arg(c, "pools");
    p->set_pools = true;
    size_t n = 0;
    char **list = NULL;
    if (!v) {
        /* null: every pool */
    } else if (json_object_is_type(v, json_type_array)) {
        size_t len = json_object_array_length(v);
        list = bb_xcalloc(len ? len : 1, sizeof *list);
        for (size_t i = 0; i < len; i++) {
            struct json_object *e = json_object_array_get_idx(v, i);
            if (!json_object_is_type(e, json_type_string)) {
                for (size_t j = 0; j < n; j++)
                    free(list[j]);
                free(list);
                return fail(c, 400, "invalid_request", "pools: expected strings");
            }
            list[n++] = bb_xstrdup(json_object_get_string(e));
        }
    } else if (json_object_is_type(v, json_type_string)) {
        /* "a,b": the CLI form; "" and "*" mean every pool. */
        const char *s = json_object_get_string(v);
        if (*s && strcmp(s, "*")) {
            size_t cap = 1;
            for (const char *q = s; *q; q++)
                cap += *q == ',';
            list = bb_xcalloc(cap, sizeof *list);
            const char *start = s;
            for (const char *q = s;; q++) {
                if (*q == ',' || !*q) {
                    list[n++] = bb_xstrndup(start, (size_t)(q - start));
                    if (!*q)
                        break;
                    start = q + 1;
                }
            }
        }
    } else {
        return fail(c, 400, "invalid_request", "pools: expected a list of pool names");
    }
    p->pools = list;
    p->n_pools = n;
    *owned = list;
    return 0;
}

static void free_pools(char **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

/* budget (USD: number or exact decimal string; null/"none" removes it) or budget_micros. */
static int parse_budget(struct opctx *c, struct bb_keys_db_patch *p)
{
    if (has_arg(c, "budget_micros")) {
        struct json_object *v = arg(c, "budget_micros");
        p->set_budget = true;
        if (!v)
            return 0;
        errno = 0;
        int64_t x = json_object_get_int64(v);
        if (!json_object_is_type(v, json_type_int) || errno || x < 0)
            return fail(c, 400, "invalid_request",
                        "budget_micros: expected a non-negative integer");
        p->has_budget = true;
        p->budget_micros = (uint64_t)x;
        return 0;
    }
    if (!has_arg(c, "budget"))
        return 0;
    struct json_object *v = arg(c, "budget");
    p->set_budget = true;
    if (!v)
        return 0;
    char text[64];
    if (json_object_is_type(v, json_type_string)) {
        snprintf(text, sizeof text, "%s", json_object_get_string(v));
        if (!strcmp(text, "none"))
            return 0;
    } else if (json_object_is_type(v, json_type_int)) {
        snprintf(text, sizeof text, "%lld", (long long)json_object_get_int64(v));
    } else if (json_object_is_type(v, json_type_double)) {
        double d = json_object_get_double(v);
        if (!isfinite(d) || d < 0 || d > 1e12)
            return fail(c, 400, "invalid_request", "budget: out of range");
        snprintf(text, sizeof text, "%.6f", d);
    } else {
        return fail(c, 400, "invalid_request", "budget: expected an amount in USD");
    }
    if (bb_price_usd_parse(text, &p->budget_micros) < 0)
        return fail(c, 400, "invalid_request",
                    "budget: '%.40s' is not an amount in USD (at most 6 decimals)", text);
    p->has_budget = true;
    return 0;
}

/* expires ("30d", "12h", "YYYY-MM-DD", ISO-8601 Z, unix seconds; null/"never") or
 * expires_at (unix seconds). */
static int parse_expiry(struct opctx *c, struct bb_keys_db_patch *p)
{
    const char *name = has_arg(c, "expires_at") ? "expires_at" : "expires";
    if (!has_arg(c, name))
        return 0;
    struct json_object *v = arg(c, name);
    p->set_expires = true;
    p->expires_at = 0;
    if (!v)
        return 0;
    if (json_object_is_type(v, json_type_int)) {
        int64_t x = json_object_get_int64(v);
        if (x < 0)
            return fail(c, 400, "invalid_request", "%s: expected unix seconds", name);
        p->expires_at = x;
        return 0;
    }
    const char *s = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
    if (s && !strcmp(s, "never"))
        return 0;
    if (!s || bb_keys_parse_expiry(s, (int64_t)(c->now_ms / 1000), &p->expires_at) < 0)
        return fail(c, 400, "invalid_request",
                    "%s: expected 30d, 12h, YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ or never", name);
    return 0;
}

static const char *const patch_fields[] = {
    "id",  "name",         "pools",   "budget",     "budget_micros", "period", "rpm",
    "tpm", "max_parallel", "expires", "expires_at", "enabled",       "aws",    NULL};

static int parse_patch(struct opctx *c, struct bb_keys_db_patch *p, char ***pools, bool create)
{
    memset(p, 0, sizeof *p);
    if (check_members(c, patch_fields) < 0)
        return -1;
    struct json_object *v;
    if (has_arg(c, "name")) {
        v = arg(c, "name");
        if (!v || !json_object_is_type(v, json_type_string))
            return fail(c, 400, "invalid_request", "name: expected a string");
        p->name = json_object_get_string(v);
    }
    if (has_arg(c, "period")) {
        v = arg(c, "period");
        int per = v && json_object_is_type(v, json_type_string)
                      ? bb_keys_period_from_name(json_object_get_string(v))
                      : -1;
        if (per < 0)
            return fail(c, 400, "invalid_request", "period: expected total, daily or monthly");
        p->set_period = true;
        p->period = per;
    }
    if (has_arg(c, "enabled")) {
        v = arg(c, "enabled");
        if (!v || !json_object_is_type(v, json_type_boolean))
            return fail(c, 400, "invalid_request", "enabled: expected true or false");
        p->set_enabled = true;
        p->enabled = json_object_get_boolean(v);
    }
    if (!create && has_arg(c, "aws"))
        return fail(c, 400, "invalid_request", "aws: an AWS credential can only be made at create");
    if (get_uint_limit(c, "rpm", &p->set_rpm, &p->rpm) < 0 ||
        get_uint_limit(c, "tpm", &p->set_tpm, &p->tpm) < 0 ||
        get_uint_limit(c, "max_parallel", &p->set_parallel, &p->max_parallel) < 0 ||
        parse_budget(c, p) < 0 || parse_expiry(c, p) < 0 || parse_pools(c, p, pools) < 0)
        return -1;
    struct bb_err err = {{0}};
    if (bb_keys_db_check_patch(p, create, &err) < 0)
        return fail(c, 400, "invalid_request", "%s", err.msg);
    return 0;
}

/* Publish k now. A failure is logged and returned as a warning for the reply (the store has
 * the change; the next successful publish carries it). */
static void publish(struct opctx *c, const struct bb_keys_db_key *k, struct bb_err *warn)
{
    if (bb_keys_publish_one(c->g->db, &c->g->shm->keys, k, c->now_ms, warn) < 0)
        bb_error("governance: %s", warn->msg);
}

static void add_warning(struct opctx *c, const struct bb_err *warn)
{
    if (warn->msg[0])
        json_object_object_add(c->reply, "warning", json_object_new_string(warn->msg));
}

/* ---- operations --------------------------------------------------------------------------- */

static int op_create(struct opctx *c)
{
    struct bb_keys_db_patch p;
    char **pools = NULL;
    bool aws = false;
    int rc = parse_patch(c, &p, &pools, true);
    struct json_object *v = arg(c, "aws");
    if (rc == 0 && v) {
        if (!json_object_is_type(v, json_type_boolean))
            rc = fail(c, 400, "invalid_request", "aws: expected true or false");
        aws = json_object_get_boolean(v);
    }
    if (rc < 0) {
        free_pools(pools, p.n_pools);
        return -1;
    }
    struct bb_keys_db_key k;
    char secret[BB_KEYS_DB_SECRET_SIZE];
    struct bb_err err = {{0}};
    rc = bb_keys_db_create(c->g->db, &p, aws, (int64_t)(c->now_ms / 1000), &k, secret, &err);
    free_pools(pools, p.n_pools);
    if (rc != BB_KEYS_DB_OK)
        return fail_db(c, rc, &err);
    struct bb_err warn = {{0}};
    publish(c, &k, &warn);
    c->reply = key_json(c->g, &k, c->now_ms);
    c->status = 201;
    add_warning(c, &warn);
    json_object_object_add(c->reply, "secret", json_object_new_string(secret));
    if (aws)
        json_object_object_add(c->reply, "aws_secret_access_key",
                               json_object_new_string(k.aws_secret));
    explicit_bzero(secret, sizeof secret);
    cluster_changed(c->g, &k, false);
    bb_notice("admin: key %s (%s) created", k.id, k.name);
    bb_keys_db_key_free(&k);
    return 0;
}

static int op_list(struct opctx *c)
{
    static const char *const fields[] = {NULL};
    if (check_members(c, fields) < 0)
        return -1;
    struct bb_keys_db_key *v;
    size_t n;
    struct bb_err err = {{0}};
    int rc = bb_keys_db_list(c->g->db, false, &v, &n, &err);
    if (rc != BB_KEYS_DB_OK)
        return fail_db(c, rc, &err);
    c->reply = json_object_new_object();
    struct json_object *a = json_object_new_array();
    for (size_t i = 0; i < n; i++)
        json_object_array_add(a, key_json(c->g, &v[i], c->now_ms));
    json_object_object_add(c->reply, "keys", a);
    bb_keys_db_keys_free(v, n);
    return 0;
}

static int op_show(struct opctx *c)
{
    static const char *const fields[] = {"id", NULL};
    const char *id = NULL;
    if (check_members(c, fields) < 0 || get_id(c, &id) < 0)
        return -1;
    struct bb_keys_db_key k;
    struct bb_err err = {{0}};
    int rc = bb_keys_db_get(c->g->db, id, &k, &err);
    if (rc == BB_KEYS_DB_NOT_FOUND)
        return fail(c, 404, "not_found", "no key %.64s", id);
    if (rc != BB_KEYS_DB_OK)
        return fail_db(c, rc, &err);
    c->reply = key_json(c->g, &k, c->now_ms);
    bb_keys_db_key_free(&k);
    return 0;
}

static int op_update(struct opctx *c)
{
    const char *id = NULL;
    struct bb_keys_db_patch p;
    char **pools = NULL;
    if (get_id(c, &id) < 0)
        return -1;
    if (parse_patch(c, &p, &pools, false) < 0) {
        free_pools(pools, p.n_pools);
        return -1;
    }
    struct bb_keys_db_key k;
    struct bb_err err = {{0}};
    int rc = bb_keys_db_update(c->g->db, id, &p, (int64_t)(c->now_ms / 1000), &k, &err);
    free_pools(pools, p.n_pools);
    if (rc == BB_KEYS_DB_NOT_FOUND)
        return fail(c, 404, "not_found", "no key %.64s", id);
    if (rc != BB_KEYS_DB_OK)
        return fail_db(c, rc, &err);
    struct bb_err warn = {{0}};
    publish(c, &k, &warn);
    c->reply = key_json(c->g, &k, c->now_ms);
    add_warning(c, &warn);
    cluster_changed(c->g, &k, false);
    bb_notice("admin: key %s updated", k.id);
    bb_keys_db_key_free(&k);
    return 0;
}

static int op_revoke(struct opctx *c)
{
    static const char *const fields[] = {"id", NULL};
    const char *id = NULL;
    if (check_members(c, fields) < 0 || get_id(c, &id) < 0)
        return -1;
    struct bb_keys_db_key k;
    struct bb_err err = {{0}};
    int rc = bb_keys_db_revoke(c->g->db, id, (int64_t)(c->now_ms / 1000), &k, &err);
    if (rc == BB_KEYS_DB_NOT_FOUND)
        return fail(c, 404, "not_found", "no key %.64s", id);
    if (rc != BB_KEYS_DB_OK)
        return fail_db(c, rc, &err);
    bb_keys_remove(&c->g->shm->keys, k.secret_sha256); /* immediate, before the reply */
    c->reply = key_json(c->g, &k, c->now_ms);
    cluster_changed(c->g, &k, false);
    bb_notice("admin: key %s revoked", k.id);
    bb_keys_db_key_free(&k);
    return 0;
}

static int op_delete(struct opctx *c)
{
    static const char *const fields[] = {"id", NULL};
    const char *id = NULL;
    if (check_members(c, fields) < 0 || get_id(c, &id) < 0)
        return -1;
    struct bb_keys_db_key k;
    struct bb_err err = {{0}};
    int rc = bb_keys_db_get(c->g->db, id, &k, &err);
    if (rc == BB_KEYS_DB_OK) {
        rc = bb_keys_db_delete(c->g->db, id, &err);
        if (rc == BB_KEYS_DB_OK) {
            bb_keys_remove(&c->g->shm->keys, k.secret_sha256);
            k.updated_at = (int64_t)(c->now_ms / 1000);
            cluster_changed(c->g, &k, true);
        }
        bb_keys_db_key_free(&k);
    }
    if (rc == BB_KEYS_DB_NOT_FOUND)
        return fail(c, 404, "not_found", "no key %.64s", id);
    if (rc != BB_KEYS_DB_OK)
        return fail_db(c, rc, &err);
    c->reply = json_object_new_object();
    json_object_object_add(c->reply, "id", json_object_new_string(id));
    json_object_object_add(c->reply, "deleted", json_object_new_boolean(1));
    bb_notice("admin: key %s deleted", id);
    return 0;
}

static void add_counts(struct json_object *o, const struct bb_keys_db_spend_row *r)
{
    char usd[32];
    json_object_object_add(o, "requests", json_object_new_uint64(r->requests));
    json_object_object_add(o, "input_tokens", json_object_new_uint64(r->input_tokens));
    json_object_object_add(o, "output_tokens", json_object_new_uint64(r->output_tokens));
    json_object_object_add(o, "cache_read_tokens", json_object_new_uint64(r->cache_read_tokens));
    json_object_object_add(o, "cache_write_tokens", json_object_new_uint64(r->cache_write_tokens));
    json_object_object_add(o, "reasoning_tokens", json_object_new_uint64(r->reasoning_tokens));
    json_object_object_add(o, "cost_micros", json_object_new_uint64(r->cost_micros));
    bb_price_usd_format(r->cost_micros, usd, sizeof usd);
    json_object_object_add(o, "cost_usd", json_object_new_string(usd));
}

static int get_day(struct opctx *c, const char *name, const char **out)
{
    struct json_object *v = arg(c, name);
    *out = NULL;
    if (!v)
        return 0;
    int64_t t;
    const char *s = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
    if (!s || bb_keys_parse_day(s, &t) < 0)
        return fail(c, 400, "invalid_request", "%s: expected a UTC date YYYY-MM-DD", name);
    *out = s;
    return 0;
}

static int op_spend(struct opctx *c)
{
    static const char *const fields[] = {"key", "by", "since", "until", "cluster", NULL};
    static const char *const bys[] = {"key", "model", "pool", "day"};
    if (check_members(c, fields) < 0)
        return -1;
    const char *key = NULL, *since, *until;
    struct json_object *v = arg(c, "key");
    if (v) {
        if (!json_object_is_type(v, json_type_string))
            return fail(c, 400, "invalid_request", "key: expected a key id");
        key = json_object_get_string(v);
    }
    int by = BB_KEYS_DB_BY_KEY;
    if ((v = arg(c, "by"))) {
        const char *s = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
        for (by = 0; by < 4 && strcmp(bys[by], s); by++)
            ;
        if (by == 4)
            return fail(c, 400, "invalid_request", "by: expected key, model, pool or day");
    }
    if (get_day(c, "since", &since) < 0 || get_day(c, "until", &until) < 0)
        return -1;
    if (since && until && strcmp(since, until) > 0)
        return fail(c, 400, "invalid_request", "since %s is after until %s", since, until);
    bool cluster = false;
    if ((v = arg(c, "cluster"))) { /* a boolean, or "true"/"false" from a query string */
        const char *s = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
        if (!json_object_is_type(v, json_type_boolean) && strcmp(s, "true") && strcmp(s, "false"))
            return fail(c, 400, "invalid_request", "cluster: expected true or false");
        cluster = json_object_is_type(v, json_type_boolean) ? json_object_get_boolean(v)
                                                            : !strcmp(s, "true");
    }
    struct bb_keys_db_spend_row *rows;
    size_t n;
    struct bb_err err = {{0}};
    int rc;
    if (cluster) {
        /* the whole cluster: Redis's per key x day counters (master/cluster.c) */
        if (!c->g->cluster.spend)
            return fail(c, 400, "invalid_request", "cluster: this node is not in cluster mode");
        if (by != BB_KEYS_DB_BY_KEY && by != BB_KEYS_DB_BY_DAY)
            return fail(c, 400, "invalid_request",
                        "by: the cluster's counters are per key and day: by key or by day");
        if (c->g->cluster.spend(c->g->cluster.arg, key, bys[by], since, until, &rows, &n, &err) < 0)
            return fail(c, 503, "cluster_unavailable", "%s", err.msg);
        for (size_t i = 0; by == BB_KEYS_DB_BY_KEY && i < n; i++) {
            struct bb_keys_db_key k;
            struct bb_err e2 = {{0}};
            if (bb_keys_db_get(c->g->db, rows[i].group, &k, &e2) == BB_KEYS_DB_OK) {
                rows[i].name = bb_xstrdup(k.name);
                bb_keys_db_key_free(&k);
            }
        }
    } else {
        /* Include everything completed so far: write what the ring holds first. */
        drain(c->g, 0, bb_now_ms());
        rc = bb_keys_db_spend(c->g->db, (enum bb_keys_db_by)by, key, since, until, &rows, &n, &err);
        if (rc != BB_KEYS_DB_OK)
            return fail_db(c, rc, &err);
    }
    c->reply = json_object_new_object();
    json_object_object_add(c->reply, "by", json_object_new_string(bys[by]));
    json_object_object_add(c->reply, "key", key ? json_object_new_string(key) : NULL);
    json_object_object_add(c->reply, "since", since ? json_object_new_string(since) : NULL);
    json_object_object_add(c->reply, "until", until ? json_object_new_string(until) : NULL);
    if (cluster)
        json_object_object_add(c->reply, "cluster", json_object_new_boolean(1));
    struct json_object *a = json_object_new_array();
    struct bb_keys_db_spend_row total = {0};
    for (size_t i = 0; i < n; i++) {
        struct json_object *o = json_object_new_object();
        json_object_object_add(o, "group", json_object_new_string(rows[i].group));
        if (by == BB_KEYS_DB_BY_KEY)
            json_object_object_add(o, "name",
                                   rows[i].name ? json_object_new_string(rows[i].name) : NULL);
        add_counts(o, &rows[i]);
        json_object_array_add(a, o);
        total.requests += rows[i].requests;
        total.input_tokens += rows[i].input_tokens;
        total.output_tokens += rows[i].output_tokens;
        total.cache_read_tokens += rows[i].cache_read_tokens;
        total.cache_write_tokens += rows[i].cache_write_tokens;
        total.reasoning_tokens += rows[i].reasoning_tokens;
        total.cost_micros += rows[i].cost_micros;
    }
    json_object_object_add(c->reply, "rows", a);
    struct json_object *t = json_object_new_object();
    add_counts(t, &total);
    json_object_object_add(c->reply, "total", t);
    bb_keys_db_spend_free(rows, n);
    return 0;
}

int bb_gov_admin(struct bb_gov *g, enum bb_gov_op op, struct json_object *args,
                 struct json_object **reply)
{
    struct opctx c = {.g = g, .args = args, .status = 200, .now_ms = bb_wall_ms()};
    struct json_object *empty = NULL;
    if (!c.args || !json_object_is_type(c.args, json_type_object))
        c.args = empty = json_object_new_object();
    if (!g || !g->db) {
        fail(&c, 503, "governance_disabled",
             "governance is disabled (governance.enabled: false): no key store");
    } else {
        switch (op) {
        case BB_GOV_KEYS_CREATE:
            op_create(&c);
            break;
        case BB_GOV_KEYS_LIST:
            op_list(&c);
            break;
        case BB_GOV_KEYS_SHOW:
            op_show(&c);
            break;
        case BB_GOV_KEYS_UPDATE:
            op_update(&c);
            break;
        case BB_GOV_KEYS_REVOKE:
            op_revoke(&c);
            break;
        case BB_GOV_KEYS_DELETE:
            op_delete(&c);
            break;
        case BB_GOV_SPEND:
            op_spend(&c);
            break;
        default:
            fail(&c, 400, "invalid_request", "unknown operation");
        }
    }
    json_object_put(empty);
    if (!c.reply)
        c.reply = json_object_new_object();
    *reply = c.reply;
    return c.status;
}
