/*
 * endpoints: /v1/models (cached at worker start: the config cannot change under a worker),
 * /healthz and /stats (read live from shared memory). Worker process, single-threaded.
 */
#include "worker/endpoints.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "common/shm.h"
#include "worker/breaker.h"
#include "worker/http_server.h"
#include "worker/proto.h"
#include "worker/policy.h"
#include "worker/request.h"
#include "worker/worker.h"

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The names a key may see: all without a key (or a key without a pool list). */
static size_t visible(const char **names, const char *name, size_t n, const struct bb_keys_ref *key)
{
    if (!key || !key->lim.n_pools || bb_keys_pool_allowed(key, name, strlen(name)))
        names[n++] = name;
    return n;
}

/* A model list in protocol p's shape (its module's models_list): pools then lanes, each
 * sorted (SPEC §3.1), only those key may use. Returns a malloc'd string (*len set), NULL on
 * OOM. */
static char *build_list(const struct bb_conf *conf, enum bb_proto p, const char **names,
                        const struct bb_keys_ref *key, size_t *len)
{
    size_t np = 0;
    for (size_t i = 0; i < conf->n_pools; i++)
        np = visible(names, conf->pools[i].name, np, key);
    qsort(names, np, sizeof *names, cmp_str);
    size_t n = np;
    for (size_t i = 0; i < conf->n_lanes; i++)
        n = visible(names, conf->lanes[i].name, n, key);
    qsort(names + np, n - np, sizeof *names, cmp_str);
    json_object *root = bb_proto_get(p)->models_list(names, n);
    if (!root)
        return NULL;
    const char *s = json_object_to_json_string_length(
        root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, len);
    char *out = s ? malloc(*len + 1) : NULL;
    if (out)
        memcpy(out, s, *len + 1);
    json_object_put(root);
    return out;
}

/* Room for every pool and lane name. */
static const char **names_buf(const struct bb_conf *conf)
{
    size_t n = conf->n_pools + conf->n_lanes;
    return calloc(n ? n : 1, sizeof(const char *));
}

int bb_endpoints_init(struct bb_worker *w)
{
    const char **names = names_buf(w->conf);
    if (!names)
        return -1;
    int rc = 0;
    for (int p = 0; p < BB_PROTO__COUNT; p++) {
        if (!bb_proto_get((enum bb_proto)p)->models_list)
            continue;
        w->models_json[p] =
            build_list(w->conf, (enum bb_proto)p, names, NULL, &w->models_json_len[p]);
        rc |= w->models_json[p] ? 0 : -1;
    }
    free(names);
    return rc;
}

void bb_endpoints_free(struct bb_worker *w)
{
    for (int i = 0; i < BB_PROTO__COUNT; i++) {
        free(w->models_json[i]);
        w->models_json[i] = NULL;
    }
}

/* The protocol whose list answers: among those listing at this path, the one whose
 * models_header the request carries, else the route's own (request.c). */
static enum bb_proto list_dialect(struct bb_request *req)
{
    for (int p = 0; p < BB_PROTO__COUNT; p++) {
        const struct bb_proto_ops *o = bb_proto_get((enum bb_proto)p);
        if (o->models_list && o->models_path && o->models_header &&
            strcmp(o->models_path, req->path) == 0 && bb_http_find(&req->head, o->models_header))
            return (enum bb_proto)p;
    }
    return req->ingress;
}

void bb_endpoint_models(struct bb_request *req)
{
    struct bb_worker *w = req->w;
    enum bb_proto shape = list_dialect(req);
    const struct bb_keys_ref *key = req->auth.has_key ? &req->auth.key : NULL;
    if (!key || !key->lim.n_pools) { /* everything: the cached body */
        bb_http_respond_full(req, 200, "application/json", NULL, w->models_json[shape],
                             w->models_json_len[shape]);
        bb_request_finish(req);
        return;
    }
    size_t len = 0;
    const char **names = names_buf(w->conf);
    char *body = names ? build_list(w->conf, shape, names, key, &len) : NULL;
    free(names);
    if (!body) {
        bb_request_fail(req, BB_ERR_INTERNAL, "out of memory");
        return;
    }
    bb_http_respond_full(req, 200, "application/json", NULL, body, len);
    free(body);
    bb_request_finish(req);
}

static bool lane_usable(const struct bb_shm_cell *c)
{
    return !c || bb_breaker_usable(c, bb_now_ms());
}

void bb_endpoint_healthz(struct bb_request *req)
{
    struct bb_worker *w = req->w;
    /* usable = the lane's own breaker admits it and, if it serves pools, at least one of its
     * pool memberships does too */
    const struct bb_conf *conf = w->conf;
    bool ok = false;
    for (size_t i = 0; i < conf->n_lanes && !ok; i++) {
        if (!lane_usable(w->lane_cells[i]))
            continue;
        bool member_of_any = false, member_ok = false;
        for (size_t p = 0; p < conf->n_pools; p++)
            for (size_t m = 0; m < conf->pools[p].n_members; m++)
                if (conf->pools[p].members[m].lane == (int)i) {
                    member_of_any = true;
                    member_ok = member_ok || lane_usable(w->pools[p].member_cells[m]);
                }
        ok = !member_of_any || member_ok;
    }
    static const char up[] = "{\"status\":\"ok\"}", down[] = "{\"status\":\"unavailable\"}";
    if (ok)
        bb_http_respond_full(req, 200, "application/json", NULL, up, sizeof up - 1);
    else
        bb_http_respond_full(req, 503, "application/json", NULL, down, sizeof down - 1);
    bb_request_finish(req);
}

static const char *const breaker_names[] = {"closed", "half-open", "open"};

static json_object *cell_json(const struct bb_shm_cell *c)
{
    json_object *o = json_object_new_object();
    uint32_t st = c ? atomic_load(&c->breaker_state) : 0;
    uint64_t wait = c ? bb_breaker_wait_ms(c, bb_now_ms()) : 0;
    if (st == BB_BREAKER_OPEN && wait == 0)
        st = BB_BREAKER_HALF_OPEN; /* cooldown over: the next request probes */
    json_object_object_add(o, "state", json_object_new_string(breaker_names[st < 3 ? st : 0]));
    json_object_object_add(o, "cooldown_ms", json_object_new_int64((int64_t)wait));
    json_object_object_add(o, "trips",
                           json_object_new_int64(c ? (int64_t)atomic_load(&c->trips) : 0));
    json_object_object_add(o, "inflight", json_object_new_int(c ? atomic_load(&c->inflight) : 0));
    json_object_object_add(o, "ok", json_object_new_int64(c ? (int64_t)atomic_load(&c->ok) : 0));
    json_object_object_add(o, "err", json_object_new_int64(c ? (int64_t)atomic_load(&c->err) : 0));
    json_object_object_add(o, "attempts",
                           json_object_new_int64(c ? (int64_t)atomic_load(&c->attempts) : 0));
    json_object_object_add(o, "failovers",
                           json_object_new_int64(c ? (int64_t)atomic_load(&c->failovers) : 0));
    json_object_object_add(o, "continuations",
                           json_object_new_int64(c ? (int64_t)atomic_load(&c->continuations) : 0));
    return o;
}

/* What a virtual key may see in /stats: the pools (and lanes) it may use. Without a key
 * (auth.mode token, passthrough, none) the operator's clients see everything. */
static bool key_sees(const struct bb_request *req, const char *name)
{
    return !req->auth.has_key || bb_keys_pool_allowed(&req->auth.key, name, strlen(name));
}

void bb_endpoint_stats(struct bb_request *req)
{
    struct bb_worker *w = req->w;
    const struct bb_conf *conf = w->conf;
    json_object *root = json_object_new_object();
    json_object_object_add(root, "generation", json_object_new_int64(w->rt->generation));
    json_object *pools = json_object_new_object();
    bool *lane_seen = calloc(conf->n_lanes ? conf->n_lanes : 1, sizeof *lane_seen);
    if (!lane_seen) {
        json_object_put(root);
        bb_request_fail(req, BB_ERR_INTERNAL, "out of memory");
        return;
    }
    for (size_t i = 0; i < conf->n_lanes; i++)
        lane_seen[i] = key_sees(req, conf->lanes[i].name);
    for (size_t p = 0; p < conf->n_pools; p++) {
        const struct bb_pool *pool = &conf->pools[p];
        if (!key_sees(req, pool->name))
            continue;
        for (size_t m = 0; m < pool->n_members; m++)
            lane_seen[pool->members[m].lane] = true;
        json_object *po = json_object_new_object();
        json_object *members = json_object_new_array();
        for (size_t m = 0; m < pool->n_members; m++) {
            json_object *mo = cell_json(w->pools[p].member_cells[m]);
            json_object_object_add(mo, "lane",
                                   json_object_new_string(conf->lanes[pool->members[m].lane].name));
            json_object_object_add(mo, "weight", json_object_new_int64(pool->members[m].weight));
            json_object_array_add(members, mo);
        }
        json_object_object_add(po, "members", members);
        bb_policy_stats(w, (int)p, po);
        json_object_object_add(pools, pool->name, po);
    }
    json_object_object_add(root, "pools", pools);
    json_object *lanes = json_object_new_object();
    for (size_t i = 0; i < conf->n_lanes; i++) {
        if (!lane_seen[i])
            continue;
        json_object *lo = cell_json(w->lane_cells[i]);
        json_object_object_add(
            lo, "provider", json_object_new_string(conf->providers[conf->lanes[i].provider].name));
        json_object_object_add(lo, "max_concurrent",
                               json_object_new_int64(conf->lanes[i].max_concurrent));
        json_object_object_add(lanes, conf->lanes[i].name, lo);
    }
    json_object_object_add(root, "lanes", lanes);
    free(lane_seen);
    size_t len;
    const char *s = json_object_to_json_string_length(root, JSON_C_TO_STRING_PLAIN, &len);
    bb_http_respond_full(req, 200, "application/json", NULL, s, len);
    json_object_put(root);
    bb_request_finish(req);
}
