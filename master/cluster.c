/*
 * cluster: the master's cluster mode (see cluster.h). Master process only, single-threaded:
 * the supervisor's poll() loop drives a private libevent loop that holds the Redis client.
 *
 * Catch-up on every (re)connection, pipelined, in this order: the last ids of the two change
 * streams (keys:log, brk:log), the whole key catalogue (merged with SQLite: the newer side
 * wins, revoked/deleted win always; keys only this node has are pushed), the open breaker
 * cells. Only then is shm->cluster.synced set. Changes are then read from the streams every
 * POLL_MS (a gap, i.e. entries trimmed before this node read them, triggers a new catch-up).
 *
 * Breaker cells (every shm cell in use, scanned every CELLS_MS): a cell this node opened
 * (its trip counter moved) is published with its cooldown's end (wall clock) and streak, and
 * held: its probe slot is kept taken (probe_holder refreshed) so that no local request
 * probes on its own. Once the cooldown is over, the node that takes the lease
 * P probe:<cell> (common/cluster.lua "lease") frees its probe slot: one of its workers
 * probes; the others stay held until the cell closes (published) or opens again (published,
 * new cooldown). A cell that closes here is published as closed.
 */
#include "master/cluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <json-c/json.h>

#include "bb_cluster_lua.h"
#include "common/log.h"
#include "common/redis.h"
#include "master/governance.h"
#include "master/keys_db.h"
#include "master/keys_publish.h"

#define CELLS_MS 50   /* breaker cells scanned */
#define POLL_MS 200   /* change streams read */
#define LEASE_MS 5000 /* a probe lease; renewed every second while the probe runs */
#define LEASE_RETRY_MS 250
#define SPEND_WAIT_MS 3000
#define KEY_WAIT_MS 1000
#define BREAKER_OPEN 2
#define BREAKER_CLOSED 0

struct cell_sync {
    uint64_t trips;      /* the cell's trips last seen */
    uint32_t state;      /* breaker_state last seen */
    bool held;           /* open here, probe slot kept taken until this node holds the lease */
    bool probing;        /* this node holds the lease: its workers may probe */
    bool lease_pending;  /* a lease call is out */
    uint64_t until_wall; /* end of the cooldown, wall-clock ms */
    uint64_t next_lease_ms;
    uint64_t probe_since_ms; /* when this node took the lease */
};

struct bb_mcluster {
    struct bb_shm *shm;
    struct bb_gov *gov;
    struct bb_cluster_conf conf; /* strings owned (copied) */
    struct event_base *base;
    struct evdns_base *dns;
    SSL_CTX *ssl;
    struct bb_redis *r;
    int script;
    uint64_t conn_gen; /* +1 per connection: answers of an older one are ignored */
    bool syncing;
    char keys_last[48], brk_last[48]; /* stream ids read up to */
    char keys_first[48];              /* first id of keys:log at the last poll */
    bool poll_out;
    uint64_t next_cells_ms, next_poll_ms;
    struct cell_sync cells[BB_SHM_MAX_CELLS];
    uint16_t used[BB_SHM_MAX_CELLS]; /* indexes of the cells in use (they are hashed) */
    uint32_t n_used, n_cells_seen;
    struct json_object *deleted; /* key id -> catalogue entry, deleted while disconnected */
    uint64_t keys_pushed, keys_merged;
};

struct cb_arg {
    struct bb_mcluster *mc;
    uint64_t gen;
    int which;
};

static struct cb_arg *arg_new(struct bb_mcluster *mc, int which)
{
    struct cb_arg *a = bb_xcalloc(1, sizeof *a);
    a->mc = mc;
    a->gen = mc->conn_gen;
    a->which = which;
    return a;
}

/* The answer belongs to the current connection (else it is dropped). */
static bool current(struct cb_arg *a)
{
    return a->gen == a->mc->conn_gen;
}

static int eval(struct bb_mcluster *mc, bb_redis_cb cb, void *arg, int argc, const char **argv)
{
    return bb_redis_eval(mc->r, mc->script, cb, arg, argc, argv, NULL);
}

static int cmd(struct bb_mcluster *mc, bb_redis_cb cb, void *arg, int argc, const char **argv)
{
    return bb_redis_command(mc->r, cb, arg, argc, argv, NULL);
}

static char *pk(struct bb_mcluster *mc, char *buf, size_t n, const char *suffix)
{
    snprintf(buf, n, "%s%s", mc->conf.key_prefix, suffix);
    return buf;
}

/* "ms-seq" stream ids: <0, 0, >0 */
static int id_cmp(const char *a, const char *b)
{
    unsigned long long am = 0, as = 0, bm = 0, bs = 0;
    sscanf(a, "%llu-%llu", &am, &as);
    sscanf(b, "%llu-%llu", &bm, &bs);
    return am != bm ? (am < bm ? -1 : 1) : as != bs ? (as < bs ? -1 : 1) : 0;
}

/* ---- keys: catalogue entries ------------------------------------------------------------ */

static void hexs(const uint8_t *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
}

static struct json_object *num_or_null(bool set, int64_t v)
{
    return set ? json_object_new_int64(v) : NULL;
}

/* The catalogue entry of k; origin NULL leaves it out (for comparisons). */
static char *key_to_json(const struct bb_keys_db_key *k, bool deleted, const char *origin)
{
    struct json_object *o = json_object_new_object();
    char sha[65];
    hexs(k->secret_sha256, 32, sha);
    json_object_object_add(o, "id", json_object_new_string(k->id));
    json_object_object_add(o, "name", json_object_new_string(k->name ? k->name : ""));
    json_object_object_add(o, "secret_sha256", json_object_new_string(sha));
    struct json_object *pools = json_object_new_array();
    for (size_t i = 0; i < k->n_pools; i++)
        json_object_array_add(pools, json_object_new_string(k->pools[i]));
    json_object_object_add(o, "pools", pools);
    json_object_object_add(o, "budget_micros",
                           num_or_null(k->has_budget, (int64_t)k->budget_micros));
    json_object_object_add(o, "period", json_object_new_string(bb_keys_period_name(k->period)));
    json_object_object_add(o, "rpm", json_object_new_int64(k->rpm));
    json_object_object_add(o, "tpm", json_object_new_int64(k->tpm));
    json_object_object_add(o, "max_parallel", json_object_new_int64(k->max_parallel));
    json_object_object_add(o, "expires_at", json_object_new_int64(k->expires_at));
    json_object_object_add(o, "enabled", json_object_new_boolean(k->enabled));
    json_object_object_add(o, "created_at", json_object_new_int64(k->created_at));
    json_object_object_add(o, "updated_at", json_object_new_int64(k->updated_at));
    json_object_object_add(o, "revoked_at", num_or_null(k->revoked_at != 0, k->revoked_at));
    json_object_object_add(o, "aws_access_key_id", json_object_new_string(k->aws_access_key_id));
    json_object_object_add(o, "aws_secret", json_object_new_string(k->aws_secret));
    if (deleted)
        json_object_object_add(o, "deleted", json_object_new_boolean(1));
    if (origin)
        json_object_object_add(o, "origin", json_object_new_string(origin));
    char *s = bb_xstrdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
    json_object_put(o);
    return s;
}

static int64_t jint(struct json_object *o, const char *k)
{
    struct json_object *v;
    return json_object_object_get_ex(o, k, &v) && v ? json_object_get_int64(v) : 0;
}

static const char *jstr(struct json_object *o, const char *k)
{
    struct json_object *v;
    return json_object_object_get_ex(o, k, &v) && json_object_is_type(v, json_type_string)
               ? json_object_get_string(v)
               : NULL;
}

static bool jbool(struct json_object *o, const char *k)
{
    struct json_object *v;
    return json_object_object_get_ex(o, k, &v) && json_object_get_boolean(v);
}

/* Parse a catalogue entry; -1 when it is not one (logged). origin may be NULL. */
static int key_from_json(const char *s, size_t len, struct bb_keys_db_key *k, bool *deleted,
                         char *origin, size_t origin_size)
{
    memset(k, 0, sizeof *k);
    struct json_tokener *tok = json_tokener_new();
    struct json_object *o = json_tokener_parse_ex(tok, s, (int)len);
    json_tokener_free(tok);
    const char *id = o ? jstr(o, "id") : NULL, *sha = o ? jstr(o, "secret_sha256") : NULL;
    if (!id || strlen(id) >= sizeof k->id || !sha || strlen(sha) != 64) {
        bb_warn("cluster: a key catalogue entry is not one (ignored): %.80s", s);
        json_object_put(o);
        return -1;
    }
    snprintf(k->id, sizeof k->id, "%s", id);
    for (int i = 0; i < 32; i++) {
        unsigned b = 0;
        sscanf(sha + 2 * i, "%2x", &b);
        k->secret_sha256[i] = (uint8_t)b;
    }
    k->name = bb_xstrdup(jstr(o, "name") ? jstr(o, "name") : "");
    struct json_object *pools;
    if (json_object_object_get_ex(o, "pools", &pools) &&
        json_object_is_type(pools, json_type_array)) {
        size_t n = json_object_array_length(pools);
        k->pools = bb_xcalloc(n ? n : 1, sizeof *k->pools);
        for (size_t i = 0; i < n; i++) {
            const char *p = json_object_get_string(json_object_array_get_idx(pools, i));
            k->pools[k->n_pools++] = bb_xstrdup(p ? p : "");
        }
    }
    struct json_object *v;
    k->has_budget = json_object_object_get_ex(o, "budget_micros", &v) && v;
    k->budget_micros = k->has_budget ? (uint64_t)json_object_get_int64(v) : 0;
    int per = bb_keys_period_from_name(jstr(o, "period") ? jstr(o, "period") : "total");
    k->period = per < 0 ? BB_KEYS_PERIOD_TOTAL : per;
    k->rpm = (uint32_t)jint(o, "rpm");
    k->tpm = (uint32_t)jint(o, "tpm");
    k->max_parallel = (uint32_t)jint(o, "max_parallel");
    k->expires_at = jint(o, "expires_at");
    k->enabled = jbool(o, "enabled");
    k->created_at = jint(o, "created_at");
    k->updated_at = jint(o, "updated_at");
    k->revoked_at = jint(o, "revoked_at");
    snprintf(k->aws_access_key_id, sizeof k->aws_access_key_id, "%s",
             jstr(o, "aws_access_key_id") ? jstr(o, "aws_access_key_id") : "");
    snprintf(k->aws_secret, sizeof k->aws_secret, "%s",
             jstr(o, "aws_secret") ? jstr(o, "aws_secret") : "");
    *deleted = jbool(o, "deleted");
    if (origin)
        snprintf(origin, origin_size, "%s", jstr(o, "origin") ? jstr(o, "origin") : "");
    json_object_put(o);
    return 0;
}

static void keyput_cb(struct bb_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    struct cb_arg *a = arg;
    if (rep && rep->type == REDIS_REPLY_ERROR)
        bb_error("cluster: key catalogue update failed: %s", rep->str ? rep->str : "?");
    else if (rep)
        a->mc->keys_pushed += bb_redis_int(rep, 0) > 0;
    free(a);
}

/* Put k into the catalogue (this node's change). 0, or -1 when Redis is not connected. */
static int push_key(struct bb_mcluster *mc, const struct bb_keys_db_key *k, bool deleted)
{
    char *json = key_to_json(k, deleted, mc->conf.node_id);
    char upd[24];
    snprintf(upd, sizeof upd, "%lld", (long long)k->updated_at);
    const char *argv[] = {"keyput", mc->conf.key_prefix,       k->id,
                          json,     k->revoked_at ? "1" : "0", deleted ? "1" : "0",
                          upd};
    struct cb_arg *a = arg_new(mc, 0);
    int rc = eval(mc, keyput_cb, a, 7, argv);
    if (rc < 0)
        free(a);
    else if (deleted)
        json_object_object_del(mc->deleted, k->id);
    free(json);
    return rc;
}

/* Apply another node's version of a key to SQLite and shared memory. */
static void apply_key(struct bb_mcluster *mc, const struct bb_keys_db_key *k, bool deleted)
{
    struct bb_keys_db *db = bb_gov_db(mc->gov);
    struct bb_err err = {{0}};
    if (!db)
        return;
    if (deleted) {
        struct bb_keys_db_key old;
        if (bb_keys_db_get(db, k->id, &old, &err) == BB_KEYS_DB_OK) {
            bb_keys_remove(&mc->shm->keys, old.secret_sha256);
            if (bb_keys_db_delete(db, k->id, &err) != BB_KEYS_DB_OK)
                bb_error("cluster: key %s: %s", k->id, err.msg);
            bb_keys_db_key_free(&old);
            bb_notice("cluster: key %s deleted on another node", k->id);
        }
        bb_keys_remove(&mc->shm->keys, k->secret_sha256);
    } else if (bb_keys_db_put(db, k, &err) != BB_KEYS_DB_OK ||
               bb_keys_publish_one(db, &mc->shm->keys, k, bb_wall_ms(), &err) < 0) {
        bb_error("cluster: key %s: %s", k->id, err.msg);
        return;
    } else {
        bb_info("cluster: key %s (%s) %s from the cluster", k->id, k->name,
                k->revoked_at ? "revoked" : "updated");
    }
    atomic_fetch_add_explicit(&mc->shm->cluster.keys_applied, 1, memory_order_relaxed);
}

/* Which side of a key is newer: >0 local, <0 remote, 0 the same. Revoked and deleted win. */
static int newer(const struct bb_keys_db_key *local, const struct bb_keys_db_key *remote,
                 bool remote_deleted)
{
    if (remote_deleted)
        return -1;
    if (!!local->revoked_at != !!remote->revoked_at)
        return local->revoked_at ? 1 : -1;
    if (local->updated_at != remote->updated_at)
        return local->updated_at > remote->updated_at ? 1 : -1;
    char *a = key_to_json(local, false, NULL), *b = key_to_json(remote, false, NULL);
    int same = !strcmp(a, b);
    free(a);
    free(b);
    return same ? 0 : -1; /* same second, different content: the catalogue's version */
}

/* A change from the stream (or the catalogue at catch-up) meets this node's store. */
static void merge_key(struct bb_mcluster *mc, const struct bb_keys_db_key *remote, bool deleted,
                      bool push_if_newer)
{
    struct bb_keys_db *db = bb_gov_db(mc->gov);
    struct bb_keys_db_key local;
    struct bb_err err = {{0}};
    if (!db)
        return;
    int rc = bb_keys_db_get(db, remote->id, &local, &err);
    if (rc == BB_KEYS_DB_ERROR) {
        bb_error("cluster: %s", err.msg);
        return;
    }
    if (rc == BB_KEYS_DB_NOT_FOUND) {
        struct json_object *gone;
        if (json_object_object_get_ex(mc->deleted, remote->id, &gone) && push_if_newer &&
            !deleted) {
            push_key(mc, remote, true); /* deleted here while Redis was away */
            return;
        }
        if (!deleted)
            apply_key(mc, remote, false);
        return;
    }
    int w = newer(&local, remote, deleted);
    if (w < 0)
        apply_key(mc, remote, deleted);
    else if (w > 0 && push_if_newer)
        push_key(mc, &local, false);
    bb_keys_db_key_free(&local);
}

/* ---- catch-up ---------------------------------------------------------------------------- */

static void sync_failed(struct bb_mcluster *mc, const char *what, const redisReply *rep)
{
    bb_error("cluster: catching up failed (%s): %s", what,
             rep && rep->str ? rep->str : "connection lost");
    mc->syncing = false;
}

/* A catch-up answer (arg freed): its master, or NULL when it is stale or failed (logged). */
static struct bb_mcluster *sync_answer(void *arg, const redisReply *rep, const char *what)
{
    struct cb_arg *a = arg;
    struct bb_mcluster *mc = a->mc;
    bool cur = current(a) && mc->syncing;
    free(a);
    if (!cur)
        return NULL;
    if (!rep || rep->type != REDIS_REPLY_ARRAY) {
        sync_failed(mc, what, rep);
        return NULL;
    }
    return mc;
}

/* The id of the first entry of an XRANGE / XREVRANGE answer; "0-0" when there is none. */
static const char *range_first_id(const redisReply *rep)
{
    return rep && rep->type == REDIS_REPLY_ARRAY && rep->elements &&
                   rep->element[0]->type == REDIS_REPLY_ARRAY && rep->element[0]->elements &&
                   rep->element[0]->element[0]->str
               ? rep->element[0]->element[0]->str
               : "0-0";
}

static void last_id_cb(struct bb_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    int which = ((struct cb_arg *)arg)->which;
    struct bb_mcluster *mc = sync_answer(arg, rep, "stream position");
    if (mc)
        snprintf(which == 0 ? mc->keys_last : mc->brk_last, 48, "%s", range_first_id(rep));
}

static void catalogue_cb(struct bb_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    struct bb_mcluster *mc = sync_answer(arg, rep, "key catalogue");
    struct bb_keys_db *db = mc ? bb_gov_db(mc->gov) : NULL;
    if (!db)
        return;
    struct json_object *seen = json_object_new_object();
    for (size_t i = 0; i + 1 < rep->elements; i += 2) {
        redisReply *v = rep->element[i + 1];
        struct bb_keys_db_key k;
        bool deleted;
        if (v->type != REDIS_REPLY_STRING ||
            key_from_json(v->str, v->len, &k, &deleted, NULL, 0) < 0)
            continue;
        json_object_object_add(seen, k.id, NULL);
        merge_key(mc, &k, deleted, true);
        bb_keys_db_key_free(&k);
        mc->keys_merged++;
    }
    /* keys only this node has (made while Redis was away, or before cluster mode) */
    struct bb_keys_db_key *v;
    size_t n;
    struct bb_err err = {{0}};
    if (bb_keys_db_list(db, false, &v, &n, &err) == BB_KEYS_DB_OK) {
        for (size_t i = 0; i < n; i++)
            if (!json_object_object_get_ex(seen, v[i].id, NULL))
                push_key(mc, &v[i], false);
        bb_keys_db_keys_free(v, n);
    } else {
        bb_error("cluster: %s", err.msg);
    }
    /* deletions made while Redis was away that the catalogue never had */
    struct json_object *todo = json_object_new_array();
    json_object_object_foreach(mc->deleted, id, entry)
    {
        if (!json_object_object_get_ex(seen, id, NULL))
            json_object_array_add(todo, json_object_get(entry));
    }
    for (size_t i = 0; i < json_object_array_length(todo); i++) {
        const char *s = json_object_get_string(json_object_array_get_idx(todo, i));
        struct bb_keys_db_key k;
        bool d;
        if (key_from_json(s, strlen(s), &k, &d, NULL, 0) == 0) {
            push_key(mc, &k, true);
            bb_keys_db_key_free(&k);
        }
    }
    json_object_put(todo);
    json_object_put(seen);
}

static void open_here(struct bb_mcluster *mc, int i, uint64_t until_wall, uint64_t streak);

static void breakers_cb(struct bb_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    struct bb_mcluster *mc = sync_answer(arg, rep, "breakers");
    if (!mc)
        return;
    for (size_t i = 0; i + 1 < rep->elements; i += 2) {
        unsigned long long until = 0, streak = 0;
        char node[128] = "";
        if (!rep->element[i]->str || !rep->element[i + 1]->str ||
            sscanf(rep->element[i + 1]->str, "%llu %llu %127s", &until, &streak, node) < 2 ||
            !strcmp(node, mc->conf.node_id))
            continue;
        struct bb_shm_cell *c = bb_shm_cell_find(mc->shm, rep->element[i]->str);
        if (c)
            open_here(mc, (int)(c - mc->shm->cells), until, streak);
    }
    /* cells open here are announced again by the next scan */
    for (uint32_t i = 0; i < BB_SHM_MAX_CELLS; i++)
        if (!mc->cells[i].held || mc->cells[i].probing)
            mc->cells[i].trips = UINT64_MAX; /* "changed": re-published if open */
    mc->syncing = false;
    atomic_store(&mc->shm->cluster.synced, 1);
    bb_notice("cluster: in step with %s (node %s, %llu catalogue entries merged, %llu pushed)",
              mc->conf.redis_url, mc->conf.node_id, (unsigned long long)mc->keys_merged,
              (unsigned long long)mc->keys_pushed);
}

static void catch_up(struct bb_mcluster *mc)
{
    char k1[160], k2[160], k3[160], k4[160];
    mc->syncing = true;
    mc->poll_out = false;
    mc->keys_merged = mc->keys_pushed = 0;
    atomic_store(&mc->shm->cluster.synced, 0);
    const char *a1[] = {"XREVRANGE", pk(mc, k1, sizeof k1, "keys:log"), "+", "-", "COUNT", "1"};
    const char *a2[] = {"XREVRANGE", pk(mc, k2, sizeof k2, "brk:log"), "+", "-", "COUNT", "1"};
    const char *a3[] = {"HGETALL", pk(mc, k3, sizeof k3, "keys")};
    const char *a4[] = {"HGETALL", pk(mc, k4, sizeof k4, "brk")};
    struct {
        bb_redis_cb cb;
        int which, argc;
        const char **argv;
    } steps[] = {{last_id_cb, 0, 6, a1},
                 {last_id_cb, 1, 6, a2},
                 {catalogue_cb, 0, 2, a3},
                 {breakers_cb, 0, 2, a4}};
    for (size_t i = 0; i < 4; i++) {
        if (steps[i].cb == catalogue_cb && !bb_gov_db(mc->gov))
            continue; /* governance disabled: no keys to share */
        struct cb_arg *a = arg_new(mc, steps[i].which);
        if (cmd(mc, steps[i].cb, a, steps[i].argc, steps[i].argv) < 0) {
            free(a);
            mc->syncing = false; /* lost meanwhile: caught up at the next connection */
            return;
        }
    }
}

static void on_state(struct bb_redis *r, bool up, const char *why, void *arg)
{
    (void)r;
    struct bb_mcluster *mc = arg;
    mc->conn_gen++;
    if (up) {
        catch_up(mc);
        return;
    }
    mc->syncing = false;
    mc->poll_out = false;
    atomic_store(&mc->shm->cluster.synced, 0);
    for (int i = 0; i < BB_SHM_MAX_CELLS; i++)
        mc->cells[i].lease_pending = false;
    bb_warn("cluster: lost Redis (%s): workers apply on_redis_error (%s) until it is back", why,
            mc->conf.deny_on_error ? "deny" : "local");
}

/* ---- change streams ---------------------------------------------------------------------- */

static void apply_breaker_event(struct bb_mcluster *mc, redisReply *fields);

static void first_id_cb(struct bb_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    struct cb_arg *a = arg;
    if (current(a))
        snprintf(a->mc->keys_first, sizeof a->mc->keys_first, "%s", range_first_id(rep));
    free(a);
}

static void apply_key_event(struct bb_mcluster *mc, redisReply *fields)
{
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        redisReply *f = fields->element[i], *v = fields->element[i + 1];
        if (!f->str || strcmp(f->str, "v") || v->type != REDIS_REPLY_STRING)
            continue;
        struct bb_keys_db_key k;
        bool deleted;
        char origin[128];
        if (key_from_json(v->str, v->len, &k, &deleted, origin, sizeof origin) < 0)
            continue;
        if (strcmp(origin, mc->conf.node_id)) /* this node's own changes are applied */
            merge_key(mc, &k, deleted, false);
        bb_keys_db_key_free(&k);
    }
}

static void xread_cb(struct bb_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    struct cb_arg *a = arg;
    struct bb_mcluster *mc = a->mc;
    if (!current(a) || mc->syncing) {
        free(a);
        return;
    }
    free(a);
    mc->poll_out = false;
    if (!rep || rep->type == REDIS_REPLY_ERROR) {
        bb_warn("cluster: reading the change streams: %s", rep && rep->str ? rep->str : "lost");
        return;
    }
    if (strcmp(mc->keys_last, "0-0") && strcmp(mc->keys_first, "0-0") &&
        id_cmp(mc->keys_first, mc->keys_last) > 0) {
        bb_warn("cluster: key changes were trimmed from the stream before this node read "
                "them: catching up from the whole catalogue");
        catch_up(mc);
        return;
    }
    if (rep->type != REDIS_REPLY_ARRAY)
        return; /* nil: nothing new */
    char kl[160], bl[160];
    pk(mc, kl, sizeof kl, "keys:log");
    pk(mc, bl, sizeof bl, "brk:log");
    for (size_t s = 0; s < rep->elements; s++) {
        redisReply *st = rep->element[s];
        if (st->type != REDIS_REPLY_ARRAY || st->elements != 2 || !st->element[0]->str ||
            st->element[1]->type != REDIS_REPLY_ARRAY)
            continue;
        bool keys = !strcmp(st->element[0]->str, kl);
        if (!keys && strcmp(st->element[0]->str, bl))
            continue;
        redisReply *entries = st->element[1];
        for (size_t e = 0; e < entries->elements; e++) {
            redisReply *en = entries->element[e];
            if (en->type != REDIS_REPLY_ARRAY || en->elements != 2 || !en->element[0]->str ||
                en->element[1]->type != REDIS_REPLY_ARRAY)
                continue;
            if (keys)
                apply_key_event(mc, en->element[1]);
            else
                apply_breaker_event(mc, en->element[1]);
            snprintf(keys ? mc->keys_last : mc->brk_last, 48, "%s", en->element[0]->str);
        }
    }
}

static void poll_streams(struct bb_mcluster *mc)
{
    char kl[160], bl[160];
    pk(mc, kl, sizeof kl, "keys:log");
    pk(mc, bl, sizeof bl, "brk:log");
    const char *a1[] = {"XRANGE", kl, "-", "+", "COUNT", "1"};
    const char *a2[] = {"XREAD", "COUNT", "256", "STREAMS", kl, bl, mc->keys_last, mc->brk_last};
    struct cb_arg *x = arg_new(mc, 0), *y = arg_new(mc, 0);
    if (cmd(mc, first_id_cb, x, 6, a1) < 0) {
        free(x);
        free(y);
        return;
    }
    if (cmd(mc, xread_cb, y, 8, a2) < 0)
        free(y);
    else
        mc->poll_out = true;
}

/* ---- breakers ---------------------------------------------------------------------------- */

static void hold_probe(struct bb_shm_cell *c)
{
    uint64_t now = bb_now_ms();
    atomic_store_explicit(&c->probe_holder, now ? now : 1, memory_order_release);
}

/* Another node opened cell i until until_wall: open it here for the same time, held. */
static void open_here(struct bb_mcluster *mc, int i, uint64_t until_wall, uint64_t streak)
{
    struct bb_shm_cell *c = &mc->shm->cells[i];
    struct cell_sync *cs = &mc->cells[i];
    uint64_t wall = bb_wall_ms(), mono = bb_now_ms();
    hold_probe(c);
    atomic_store(&c->open_until_ms, mono + (until_wall > wall ? until_wall - wall : 0));
    atomic_store(&c->streak, streak);
    atomic_store(&c->breaker_state, BREAKER_OPEN);
    cs->trips = atomic_load(&c->trips);
    cs->state = BREAKER_OPEN;
    cs->held = true;
    cs->probing = false;
    cs->until_wall = until_wall;
    cs->next_lease_ms = 0;
    atomic_fetch_add_explicit(&mc->shm->cluster.breaker_applied, 1, memory_order_relaxed);
    bb_info("cluster: lane %s opened by another node for %llu ms", c->name,
            (unsigned long long)(until_wall > wall ? until_wall - wall : 0));
}

static void close_here(struct bb_mcluster *mc, int i)
{
    struct bb_shm_cell *c = &mc->shm->cells[i];
    struct cell_sync *cs = &mc->cells[i];
    atomic_store(&c->consecutive, 0);
    atomic_store(&c->streak, 0);
    atomic_store(&c->open_until_ms, 0);
    atomic_store(&c->probe_holder, 0);
    atomic_store(&c->breaker_state, BREAKER_CLOSED);
    bool was = cs->state != BREAKER_CLOSED;
    cs->state = BREAKER_CLOSED;
    cs->held = cs->probing = false;
    if (was) {
        atomic_fetch_add_explicit(&mc->shm->cluster.breaker_applied, 1, memory_order_relaxed);
        bb_info("cluster: lane %s closed by another node", c->name);
    }
}

static void apply_breaker_event(struct bb_mcluster *mc, redisReply *f)
{
    const char *cell = NULL, *state = NULL, *node = NULL;
    unsigned long long until = 0, streak = 0;
    for (size_t i = 0; i + 1 < f->elements; i += 2) {
        const char *k = f->element[i]->str, *v = f->element[i + 1]->str;
        if (!k || !v)
            continue;
        if (!strcmp(k, "cell"))
            cell = v;
        else if (!strcmp(k, "state"))
            state = v;
        else if (!strcmp(k, "node"))
            node = v;
        else if (!strcmp(k, "until"))
            until = strtoull(v, NULL, 10);
        else if (!strcmp(k, "streak"))
            streak = strtoull(v, NULL, 10);
    }
    if (!cell || !state || !node || !strcmp(node, mc->conf.node_id))
        return;
    struct bb_shm_cell *c = bb_shm_cell_find(mc->shm, cell);
    if (!c)
        return; /* not a lane of this node's configuration */
    int i = (int)(c - mc->shm->cells);
    if (!strcmp(state, "open"))
        open_here(mc, i, until, streak);
    else
        close_here(mc, i);
}

static void free_arg_cb(struct bb_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    if (rep && rep->type == REDIS_REPLY_ERROR)
        bb_warn("cluster: %s", rep->str ? rep->str : "error");
    free(arg);
}

static void publish(struct bb_mcluster *mc, struct bb_shm_cell *c, bool open, uint64_t until,
                    uint64_t streak)
{
    char bl[160], bh[160], u[24], s[24], val[200];
    pk(mc, bl, sizeof bl, "brk:log");
    pk(mc, bh, sizeof bh, "brk");
    snprintf(u, sizeof u, "%llu", (unsigned long long)until);
    snprintf(s, sizeof s, "%llu", (unsigned long long)streak);
    snprintf(val, sizeof val, "%s %s %s", u, s, mc->conf.node_id);
    const char *x[] = {"XADD",   bl,
                       "MAXLEN", "~",
                       "1000",   "*",
                       "cell",   c->name,
                       "state",  open ? "open" : "closed",
                       "until",  u,
                       "streak", s,
                       "node",   mc->conf.node_id};
    const char *hset[] = {"HSET", bh, c->name, val};
    const char *hdel[] = {"HDEL", bh, c->name};
    struct cb_arg *a = arg_new(mc, 0), *b = arg_new(mc, 0);
    if (cmd(mc, free_arg_cb, a, 16, x) < 0)
        free(a);
    else
        atomic_fetch_add_explicit(&mc->shm->cluster.breaker_sent, 1, memory_order_relaxed);
    if ((open ? cmd(mc, free_arg_cb, b, 4, hset) : cmd(mc, free_arg_cb, b, 3, hdel)) < 0)
        free(b);
}

static void lease_cb(struct bb_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    struct cb_arg *a = arg;
    struct bb_mcluster *mc = a->mc;
    int i = a->which;
    bool cur = current(a);
    free(a);
    if (!cur)
        return;
    struct cell_sync *cs = &mc->cells[i];
    struct bb_shm_cell *c = &mc->shm->cells[i];
    cs->lease_pending = false;
    if (!rep || rep->type == REDIS_REPLY_ERROR)
        return;
    bool mine = bb_redis_int(rep, 0) == 1;
    if (cs->probing) {
        if (!mine) { /* lost it (this node stalled past the lease): stop probing here */
            cs->probing = false;
            cs->held = true;
            hold_probe(c);
        }
        return;
    }
    if (!cs->held || !mine)
        return;
    /* this node probes: free the probe slot, the cooldown is over */
    cs->held = false;
    cs->probing = true;
    uint64_t mono = bb_now_ms();
    cs->probe_since_ms = mono;
    if (atomic_load(&c->open_until_ms) > mono)
        atomic_store(&c->open_until_ms, mono);
    atomic_store_explicit(&c->probe_holder, 0, memory_order_release);
    bb_info("cluster: lane %s: this node runs the half-open probe", c->name);
}

static void lease(struct bb_mcluster *mc, int i, const char *op)
{
    char ms[16];
    snprintf(ms, sizeof ms, "%u", LEASE_MS);
    const char *argv[] = {op, mc->conf.key_prefix, mc->shm->cells[i].name, mc->conf.node_id, ms};
    bool take = !strcmp(op, "lease");
    struct cb_arg *a = arg_new(mc, i);
    if (eval(mc, take ? lease_cb : free_arg_cb, a, take ? 5 : 4, argv) < 0)
        free(a);
    else if (take)
        mc->cells[i].lease_pending = true;
}

/* The cells in use (cells are only ever added, by this process, at a configuration load). */
static void used_cells(struct bb_mcluster *mc)
{
    uint32_t n = atomic_load(&mc->shm->n_cells);
    if (n == mc->n_cells_seen)
        return;
    mc->n_cells_seen = n;
    mc->n_used = 0;
    for (uint32_t i = 0; i < BB_SHM_MAX_CELLS; i++)
        if (atomic_load(&mc->shm->cells[i].used))
            mc->used[mc->n_used++] = (uint16_t)i;
}

static void scan_cells(struct bb_mcluster *mc)
{
    uint64_t mono = bb_now_ms(), wall = bb_wall_ms();
    used_cells(mc);
    for (uint32_t u = 0; u < mc->n_used; u++) {
        uint32_t i = mc->used[u];
        struct bb_shm_cell *c = &mc->shm->cells[i];
        struct cell_sync *cs = &mc->cells[i];
        uint64_t trips = atomic_load(&c->trips);
        uint32_t st = atomic_load(&c->breaker_state);
        if (trips != cs->trips) { /* opened here (a trip, a failed probe, hard down) */
            cs->trips = trips;
            if (st == BREAKER_OPEN) {
                uint64_t until = atomic_load(&c->open_until_ms);
                cs->until_wall = wall + (until > mono ? until - mono : 0);
                if (cs->probing)
                    lease(mc, (int)i, "unlease");
                cs->held = true;
                cs->probing = false;
                cs->next_lease_ms = 0;
                hold_probe(c);
                publish(mc, c, true, cs->until_wall, atomic_load(&c->streak));
                bb_info("cluster: lane %s opened here: announced for %llu ms", c->name,
                        (unsigned long long)(cs->until_wall - wall));
            }
        } else if (st == BREAKER_CLOSED && cs->state != BREAKER_CLOSED) {
            /* closed here: the probe succeeded, or a health probe saw the provider back */
            publish(mc, c, false, 0, 0);
            lease(mc, (int)i, "unlease");
            cs->held = cs->probing = false;
            bb_info("cluster: lane %s closed here: announced", c->name);
        }
        cs->state = st;
        if (cs->held && st != BREAKER_CLOSED) {
            hold_probe(c);
            if (wall >= cs->until_wall && !cs->lease_pending && mono >= cs->next_lease_ms) {
                cs->next_lease_ms = mono + LEASE_RETRY_MS;
                /* still closed to this node until it holds the lease: Retry-After says so */
                if (atomic_load(&c->open_until_ms) < mono + LEASE_RETRY_MS)
                    atomic_store(&c->open_until_ms, mono + LEASE_RETRY_MS);
                lease(mc, (int)i, "lease");
            }
        } else if (cs->probing && st == BREAKER_OPEN && mono - cs->probe_since_ms > LEASE_MS) {
            /* no request came here to probe: let a node with traffic have the lease */
            lease(mc, (int)i, "unlease");
            cs->probing = false;
            cs->held = true;
            cs->next_lease_ms = mono + LEASE_MS / 5;
            hold_probe(c);
        } else if (cs->probing && !cs->lease_pending && mono >= cs->next_lease_ms) {
            cs->next_lease_ms = mono + LEASE_MS / 5; /* keep the lease while probing */
            lease(mc, (int)i, "lease");
        }
    }
}

/* ---- admin hooks ------------------------------------------------------------------------- */

static void key_changed(void *arg, const struct bb_keys_db_key *k, bool deleted)
{
    struct bb_mcluster *mc = arg;
    if (push_key(mc, k, deleted) == 0) {
        /* the admin reply waits for Redis (bounded): once a revoke returns, every node's
         * admissions refuse the key */
        if (bb_redis_wait(mc->r, KEY_WAIT_MS) < 0)
            bb_warn("cluster: Redis did not confirm the change of key %s within %u ms", k->id,
                    KEY_WAIT_MS);
        return;
    }
    if (deleted) { /* remembered until Redis is back (not across a restart) */
        char *json = key_to_json(k, true, mc->conf.node_id);
        json_object_object_add(mc->deleted, k->id, json_object_new_string(json));
        free(json);
    }
    bb_warn("cluster: Redis unavailable: key %s changed on this node only; the cluster learns "
            "it when Redis is back",
            k->id);
}

struct spend_ctx {
    bool done, ok, abandoned; /* abandoned: the caller gave up, the callback frees it */
    struct bb_keys_db_spend_row *rows;
    size_t n;
    char err[300];
};

static void spend_cb(struct bb_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    struct spend_ctx *s = arg;
    s->done = true;
    if (s->abandoned) {
        free(s);
        return;
    }
    if (!rep || rep->type != REDIS_REPLY_ARRAY) {
        snprintf(s->err, sizeof s->err, "Redis: %s",
                 rep && rep->str ? rep->str : "connection lost");
        return;
    }
    s->ok = true;
    s->n = rep->elements / 8;
    s->rows = bb_xcalloc(s->n ? s->n : 1, sizeof *s->rows);
    for (size_t i = 0; i < s->n; i++) {
        redisReply **e = rep->element + 8 * i;
        struct bb_keys_db_spend_row *row = &s->rows[i];
        row->group = bb_xstrdup(e[0]->str ? e[0]->str : "");
        uint64_t *f[] = {&row->requests,          &row->input_tokens,       &row->output_tokens,
                         &row->cache_read_tokens, &row->cache_write_tokens, &row->reasoning_tokens,
                         &row->cost_micros};
        for (int j = 0; j < 7; j++) {
            long long v = bb_redis_int(e[1 + j], 0);
            *f[j] = v < 0 ? 0 : (uint64_t)v;
        }
    }
}

static int spend(void *arg, const char *key, const char *by, const char *since, const char *until,
                 struct bb_keys_db_spend_row **rows, size_t *n, struct bb_err *err)
{
    struct bb_mcluster *mc = arg;
    struct spend_ctx *s = bb_xcalloc(1, sizeof *s);
    const char *argv[] = {
        "spend", mc->conf.key_prefix, since ? since : "", until ? until : "", key ? key : "", by};
    if (eval(mc, spend_cb, s, 6, argv) < 0) {
        free(s);
        return bb_err_set(err, "Redis (%s) is not connected", mc->conf.redis_url);
    }
    bb_redis_wait(mc->r, SPEND_WAIT_MS);
    if (!s->done) { /* still pending: its callback frees it */
        s->abandoned = true;
        return bb_err_set(err, "Redis (%s) did not answer within %u ms", mc->conf.redis_url,
                          SPEND_WAIT_MS);
    }
    int rc = s->ok ? 0 : bb_err_set(err, "%s", s->err);
    *rows = s->rows;
    *n = s->n;
    free(s);
    return rc;
}

static void status(void *arg, struct json_object *st)
{
    struct bb_mcluster *mc = arg;
    struct bb_cluster_shm *cs = &mc->shm->cluster;
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "node_id", json_object_new_string(mc->conf.node_id));
    json_object_object_add(o, "redis", json_object_new_string(mc->conf.redis_url));
    json_object_object_add(o, "connected", json_object_new_boolean(bb_redis_ready(mc->r)));
    json_object_object_add(o, "synced", json_object_new_boolean(atomic_load(&cs->synced)));
    json_object_object_add(o, "on_redis_error",
                           json_object_new_string(mc->conf.deny_on_error ? "deny" : "local"));
    struct {
        const char *name;
        _Atomic uint64_t *v;
    } c[] = {{"admitted_redis", &cs->admitted_redis},
             {"refused_redis", &cs->refused_redis},
             {"admitted_local", &cs->admitted_local},
             {"denied", &cs->denied},
             {"timeouts", &cs->timeouts},
             {"fallbacks", &cs->fallbacks},
             {"reconciled", &cs->reconciled},
             {"settle_retries", &cs->settle_retries},
             {"leases_lost", &cs->leases_lost},
             {"breaker_sent", &cs->breaker_sent},
             {"breaker_applied", &cs->breaker_applied},
             {"keys_applied", &cs->keys_applied}};
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++)
        json_object_object_add(o, c[i].name, json_object_new_uint64(atomic_load(c[i].v)));
    json_object_object_add(st, "cluster", o);
}

/* ---- lifecycle --------------------------------------------------------------------------- */

static void conf_copy(struct bb_cluster_conf *d, const struct bb_cluster_conf *s)
{
    *d = *s;
    char **strs[] = {&d->redis_url,     &d->host,         &d->user,     &d->key_prefix,
                     &d->node_id,       &d->password_env, &d->password, &d->tls_ca_file,
                     &d->tls_cert_file, &d->tls_key_file};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        *strs[i] = *strs[i] ? bb_xstrdup(*strs[i]) : NULL;
}

static void conf_free(struct bb_cluster_conf *d)
{
    if (d->password)
        explicit_bzero(d->password, strlen(d->password));
    char *strs[] = {d->redis_url,     d->host,         d->user,     d->key_prefix,
                    d->node_id,       d->password_env, d->password, d->tls_ca_file,
                    d->tls_cert_file, d->tls_key_file};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        free(strs[i]);
}

static bool str_eq(const char *a, const char *b)
{
    return a == b || (a && b && !strcmp(a, b));
}

static bool conf_same(const struct bb_cluster_conf *a, const struct bb_cluster_conf *b)
{
    return a->enabled == b->enabled && str_eq(a->redis_url, b->redis_url) &&
           str_eq(a->key_prefix, b->key_prefix) && str_eq(a->node_id, b->node_id) &&
           str_eq(a->password, b->password) && str_eq(a->tls_ca_file, b->tls_ca_file) &&
           str_eq(a->tls_cert_file, b->tls_cert_file) && str_eq(a->tls_key_file, b->tls_key_file) &&
           a->deny_on_error == b->deny_on_error && a->timeout_ms == b->timeout_ms &&
           a->lease_secs == b->lease_secs;
}

int bb_mcluster_check(const struct bb_conf *conf, struct bb_err *err)
{
    const struct bb_cluster_conf *c = &conf->cluster;
    if (!c->enabled)
        return 0;
    if (c->password_env && !c->password)
        return bb_err_set(err, "cluster.password_env: the environment variable %s is not set",
                          c->password_env);
    if (c->tls) {
        SSL_CTX *ctx = bb_redis_tls_ctx(c, err);
        if (!ctx)
            return -1;
        SSL_CTX_free(ctx);
    }
    return 0;
}

struct bb_mcluster *bb_mcluster_open(const struct bb_conf *conf, struct bb_shm *shm,
                                     struct bb_gov *gov, uint32_t wait_ms, struct bb_err *err)
{
    if (!conf->cluster.enabled)
        return NULL;
    if (bb_mcluster_check(conf, err) < 0)
        return NULL;
    struct bb_mcluster *mc = bb_xcalloc(1, sizeof *mc);
    mc->shm = shm;
    mc->gov = gov;
    conf_copy(&mc->conf, &conf->cluster);
    mc->deleted = json_object_new_object();
    snprintf(mc->keys_last, sizeof mc->keys_last, "0-0");
    snprintf(mc->brk_last, sizeof mc->brk_last, "0-0");
    snprintf(mc->keys_first, sizeof mc->keys_first, "0-0");
    struct event_config *cfg = event_config_new();
    if (cfg)
        event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
    mc->base = cfg ? event_base_new_with_config(cfg) : NULL;
    event_config_free(cfg);
    mc->dns = mc->base ? evdns_base_new(mc->base, EVDNS_BASE_INITIALIZE_NAMESERVERS) : NULL;
    if (mc->base && !mc->dns && (mc->dns = evdns_base_new(mc->base, 0)))
        evdns_base_load_hosts(mc->dns, NULL);
    if (!mc->base || !mc->dns) {
        bb_err_set(err, "cluster: cannot create the event loop");
        bb_mcluster_close(mc);
        return NULL;
    }
    if (mc->conf.tls && !(mc->ssl = bb_redis_tls_ctx(&mc->conf, err))) {
        bb_mcluster_close(mc);
        return NULL;
    }
    atomic_store(&shm->cluster.synced, 0);
    struct bb_redis_opts o = {
        .host = mc->conf.host,
        .port = mc->conf.port,
        .db = mc->conf.db,
        .user = mc->conf.user,
        .password = mc->conf.password,
        .ssl_ctx = mc->ssl,
        .connect_timeout_ms = mc->conf.timeout_ms > 1000 ? mc->conf.timeout_ms : 1000,
        .stall_ms = 5000,
        .name = "master",
        .on_state = on_state,
        .state_arg = mc,
    };
    mc->r = bb_redis_new(mc->base, mc->dns, &o);
    if (!mc->r) {
        bb_err_set(err, "cluster: cannot create the Redis client");
        bb_mcluster_close(mc);
        return NULL;
    }
    mc->script = bb_redis_script(mc->r, bb_cluster_lua);
    struct bb_gov_cluster hooks = {
        .arg = mc, .key_changed = key_changed, .spend = spend, .status = status};
    bb_gov_set_cluster(gov, &hooks);
    /* catch up before the first workers fork (bounded: a dead Redis must not stop a start) */
    uint64_t until = bb_now_ms() + wait_ms;
    while (!atomic_load(&shm->cluster.synced) && bb_now_ms() < until) {
        struct timeval tv = {0, 10000};
        event_base_loopexit(mc->base, &tv);
        event_base_loop(mc->base, EVLOOP_ONCE);
    }
    if (wait_ms && !atomic_load(&shm->cluster.synced))
        bb_warn("cluster: Redis %s not reachable at start: governed requests use "
                "on_redis_error (%s) until it is",
                mc->conf.redis_url, mc->conf.deny_on_error ? "deny" : "local");
    mc->next_cells_ms = mc->next_poll_ms = bb_now_ms();
    return mc;
}

void bb_mcluster_close(struct bb_mcluster *mc)
{
    if (!mc)
        return;
    bb_gov_set_cluster(mc->gov, NULL);
    if (mc->r && bb_redis_pending(mc->r))
        bb_redis_wait(mc->r, 500); /* last announcements */
    bb_redis_free(mc->r);
    atomic_store(&mc->shm->cluster.synced, 0);
    SSL_CTX_free(mc->ssl);
    if (mc->dns)
        evdns_base_free(mc->dns, 0);
    if (mc->base)
        event_base_free(mc->base);
    json_object_put(mc->deleted);
    conf_free(&mc->conf);
    free(mc);
}

void bb_mcluster_reconfigure(struct bb_mcluster **mcp, const struct bb_conf *conf,
                             struct bb_shm *shm, struct bb_gov *gov)
{
    struct bb_mcluster *mc = *mcp;
    if (mc ? conf_same(&mc->conf, &conf->cluster) : !conf->cluster.enabled)
        return;
    bb_notice("cluster: configuration changed: %s",
              conf->cluster.enabled ? "reconnecting" : "leaving cluster mode");
    bb_mcluster_close(mc);
    struct bb_err err = {{0}};
    *mcp = bb_mcluster_open(conf, shm, gov, 0, &err); /* catches up in the background */
    if (!*mcp && conf->cluster.enabled)
        bb_error("%s", err.msg);
}

size_t bb_mcluster_pollfds(struct bb_mcluster *mc, struct pollfd *pfd, size_t max)
{
    int fd = mc ? bb_redis_fd(mc->r) : -1;
    if (fd < 0 || max == 0)
        return 0;
    pfd->fd = fd;
    pfd->events = POLLIN;
    pfd->revents = 0;
    return 1;
}

void bb_mcluster_process(struct bb_mcluster *mc, uint64_t now)
{
    if (!mc)
        return;
    event_base_loop(mc->base, EVLOOP_NONBLOCK);
    if (bb_redis_ready(mc->r) && atomic_load(&mc->shm->cluster.synced)) {
        if (now >= mc->next_cells_ms) {
            mc->next_cells_ms = now + CELLS_MS;
            scan_cells(mc);
        }
        if (now >= mc->next_poll_ms && !mc->poll_out) {
            mc->next_poll_ms = now + POLL_MS;
            poll_streams(mc);
        }
    }
    event_base_loop(mc->base, EVLOOP_NONBLOCK); /* send what was queued */
}

uint64_t bb_mcluster_due_ms(const struct bb_mcluster *mc)
{
    if (!mc)
        return 0;
    /* the client's own timers (reconnect, timeouts) are at least this coarse */
    uint64_t due = mc->next_cells_ms < mc->next_poll_ms ? mc->next_cells_ms : mc->next_poll_ms;
    uint64_t soon = bb_now_ms() + CELLS_MS;
    return due < soon ? due : soon;
}

void bb_mcluster_child_close(struct bb_mcluster *mc)
{
    int fd = mc ? bb_redis_fd(mc->r) : -1;
    if (fd >= 0)
        close(fd);
}
