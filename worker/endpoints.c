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
#include "worker/policy.h"
#include "worker/request.h"
#include "worker/worker.h"

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

enum { LIST_OPENAI, LIST_ANTHROPIC, LIST_GEMINI };

static void add_models(json_object *data, const char **names, size_t n, int shape)
{
    qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        json_object *m = json_object_new_object();
        if (shape == LIST_OPENAI) {
            json_object_object_add(m, "id", json_object_new_string(names[i]));
            json_object_object_add(m, "object", json_object_new_string("model"));
            json_object_object_add(m, "created", json_object_new_int64(0));
            json_object_object_add(m, "owned_by", json_object_new_string("busbar"));
        } else if (shape == LIST_ANTHROPIC) {
            json_object_object_add(m, "type", json_object_new_string("model"));
            json_object_object_add(m, "id", json_object_new_string(names[i]));
            json_object_object_add(m, "display_name", json_object_new_string(names[i]));
            json_object_object_add(m, "created_at",
                                   json_object_new_string("1970-01-01T00:00:00Z"));
        } else {
            char full[256];
            snprintf(full, sizeof full, "models/%s", names[i]);
            json_object *methods = json_object_new_array();
            json_object_array_add(methods, json_object_new_string("generateContent"));
            json_object_array_add(methods, json_object_new_string("streamGenerateContent"));
            json_object_object_add(m, "name", json_object_new_string(full));
            json_object_object_add(m, "displayName", json_object_new_string(names[i]));
            json_object_object_add(m, "supportedGenerationMethods", methods);
        }
        json_object_array_add(data, m);
    }
}

/* The names a key may see: all without a key (or a key without a pool list). */
static size_t visible(const char **names, const char *name, size_t n,
                      const struct bb_keys_ref *key)
{
    if (!key || !key->lim.n_pools || bb_keys_pool_allowed(key, name, strlen(name)))
        names[n++] = name;
    return n;
}

/* A list body for a dialect: pools then lanes, each sorted (SPEC §3.1), only those key may
 * use. Returns a malloc'd string (*len set), NULL on OOM. */
static char *build_list(const struct bb_conf *conf, int shape, const char **names,
                        const struct bb_keys_ref *key, size_t *len)
{
    json_object *root = json_object_new_object();
    json_object *data = json_object_new_array();
    if (shape == LIST_OPENAI)
        json_object_object_add(root, "object", json_object_new_string("list"));
    size_t n = 0;
    for (size_t i = 0; i < conf->n_pools; i++)
        n = visible(names, conf->pools[i].name, n, key);
    add_models(data, names, n, shape);
    n = 0;
    for (size_t i = 0; i < conf->n_lanes; i++)
        n = visible(names, conf->lanes[i].name, n, key);
    add_models(data, names, n, shape);
    size_t count = json_object_array_length(data);
    const char *first = NULL, *last = NULL;
    if (shape == LIST_ANTHROPIC && count) {
        first = json_object_get_string(
            json_object_object_get(json_object_array_get_idx(data, 0), "id"));
        last = json_object_get_string(
            json_object_object_get(json_object_array_get_idx(data, count - 1), "id"));
    }
    json_object_object_add(root, shape == LIST_GEMINI ? "models" : "data", data);
    if (shape == LIST_ANTHROPIC) {
        json_object_object_add(root, "has_more", json_object_new_boolean(0));
        json_object_object_add(root, "first_id", first ? json_object_new_string(first) : NULL);
        json_object_object_add(root, "last_id", last ? json_object_new_string(last) : NULL);
    }
    const char *s = json_object_to_json_string_length(
        root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, len);
    char *out = malloc(*len + 1);
    if (out)
        memcpy(out, s, *len + 1);
    json_object_put(root);
    return out;
}

static const char **names_buf(const struct bb_conf *conf)
{
    size_t n = conf->n_pools > conf->n_lanes ? conf->n_pools : conf->n_lanes;
    return calloc(n ? n : 1, sizeof(const char *));
}

int bb_endpoints_init(struct bb_worker *w)
{
    const char **names = names_buf(w->conf);
    if (!names)
        return -1;
    int rc = 0;
    for (int shape = LIST_OPENAI; shape <= LIST_GEMINI; shape++) {
        w->models_json[shape] = build_list(w->conf, shape, names, NULL, &w->models_json_len[shape]);
        rc |= w->models_json[shape] ? 0 : -1;
    }
    free(names);
    return rc;
}

void bb_endpoints_free(struct bb_worker *w)
{
    for (int i = 0; i < 3; i++) {
        free(w->models_json[i]);
        w->models_json[i] = NULL;
    }
}

void bb_endpoint_models(struct bb_request *req)
{
    struct bb_worker *w = req->w;
    int shape = LIST_OPENAI;
    if (req->ingress == BB_PROTO_GEMINI)
        shape = LIST_GEMINI;
    else if (bb_http_find(&req->head, "anthropic-version"))
        shape = LIST_ANTHROPIC;
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
                           json_object_new_int64(
                               c ? (int64_t)atomic_load(&c->reserved[BB_BREAKER_TRIPS]) : 0));
    json_object_object_add(o, "inflight", json_object_new_int(c ? atomic_load(&c->inflight) : 0));
    json_object_object_add(o, "ok", json_object_new_int64(c ? (int64_t)atomic_load(&c->ok) : 0));
    json_object_object_add(o, "err", json_object_new_int64(c ? (int64_t)atomic_load(&c->err) : 0));
    json_object_object_add(o, "attempts",
                           json_object_new_int64(c ? (int64_t)atomic_load(&c->attempts) : 0));
    json_object_object_add(o, "failovers",
                           json_object_new_int64(c ? (int64_t)atomic_load(&c->failovers) : 0));
    json_object_object_add(
        o, "continuations",
        json_object_new_int64(c ? (int64_t)atomic_load(&c->continuations) : 0));
    return o;
}

void bb_endpoint_stats(struct bb_request *req)
{
    struct bb_worker *w = req->w;
    const struct bb_conf *conf = w->conf;
    json_object *root = json_object_new_object();
    json_object_object_add(root, "generation", json_object_new_int64(w->rt->generation));
    json_object *pools = json_object_new_object();
    for (size_t p = 0; p < conf->n_pools; p++) {
        const struct bb_pool *pool = &conf->pools[p];
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
        json_object *lo = cell_json(w->lane_cells[i]);
        json_object_object_add(lo, "provider",
                               json_object_new_string(conf->providers[conf->lanes[i].provider].name));
        json_object_object_add(lo, "max_concurrent",
                               json_object_new_int64(conf->lanes[i].max_concurrent));
        json_object_object_add(lanes, conf->lanes[i].name, lo);
    }
    json_object_object_add(root, "lanes", lanes);
    size_t len;
    const char *s = json_object_to_json_string_length(root, JSON_C_TO_STRING_PLAIN, &len);
    bb_http_respond_full(req, 200, "application/json", NULL, s, len);
    json_object_put(root);
    bb_request_finish(req);
}
