/*
 * policy: one routing-policy call per request (see policy.h): the input snapshot from the
 * config and shared memory, its JSON for the webhook and socket transports, the answer, the
 * decision (an order for the attempt loop, the native route, a rejection, or on_error), the
 * per-worker circuit breaker and the counters. Worker process, single-threaded.
 *
 * A call in flight lives in the request's arena (struct bb_policy_call) with its timer; it
 * ends exactly once: answered, failed, timed out (bb_policy_failed from the timer) or
 * forgotten when the request ends first (bb_policy_release).
 */
#include "worker/policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <json-c/json.h>

#include "common/keys_shm.h"
#include "common/log.h"
#include "common/metrics_shm.h"
#include "common/sandbox.h"
#include "worker/attempt.h"
#include "worker/breaker.h"
#include "worker/http_server.h"
#include "worker/jw.h"
#include "worker/policy_int.h"
#include "worker/router.h"
#include "worker/upstream.h"
#include "worker/worker.h"

#define CIRCUIT_FAILS 5       /* failures in a row that open a policy's circuit */
#define CIRCUIT_BASE_MS 5000u /* first cooldown; doubles per re-open */
#define CIRCUIT_MAX_MS 60000u
#define BYTES_PER_TOKEN 4 /* the input estimate, as governance's TPM charge */
#define ANSWER_DEPTH_MAX 16

static const char *const by_names[] = {
#define X(id, name) name,
    BB_ROUTE_BY_LIST(X)
#undef X
};

const char *bb_route_by_name(enum bb_route_by by)
{
    return (unsigned)by < BB_ROUTE_BY__COUNT ? by_names[by] : "native";
}

static enum bb_route_by by_of(enum bb_policy_kind k)
{
    return k == BB_POLICY_WEBHOOK  ? BB_ROUTE_BY_WEBHOOK
           : k == BB_POLICY_SOCKET ? BB_ROUTE_BY_SOCKET
           : k == BB_POLICY_SCRIPT ? BB_ROUTE_BY_SCRIPT
                                   : BB_ROUTE_BY_NATIVE;
}

/* ---- per worker ------------------------------------------------------------------------------ */

int bb_policy_init(struct bb_worker *w)
{
    const struct bb_conf *c = w->conf;
    w->policy = calloc(1, sizeof *w->policy);
    if (!w->policy)
        return -1;
    w->policy->pools = calloc(c->n_pools ? c->n_pools : 1, sizeof *w->policy->pools);
    if (!w->policy->pools)
        return -1;
    for (size_t i = 0; i < c->n_pools; i++)
        w->policy->pools[i].idx = (int)i;
    return 0;
}

void bb_policy_free(struct bb_worker *w)
{
    if (!w->policy)
        return;
    for (size_t i = 0; w->policy->pools && i < w->conf->n_pools; i++)
        bb_policy_unix_free(&w->policy->pools[i]);
    free(w->policy->pools);
    free(w->policy);
    w->policy = NULL;
}

/* ---- circuit breaker (per worker and pool) --------------------------------------------------- */

/* May the policy be called now? *probe: this call is the one probe after a cooldown. */
static bool circuit_admit(struct pol_pool *pp, uint64_t now, bool *probe)
{
    *probe = false;
    if (!pp->open_until_ms)
        return true;
    if (now < pp->open_until_ms || pp->probing)
        return false;
    pp->probing = *probe = true; /* the cooldown is over: one call probes */
    return true;
}

static void circuit_result(struct bb_request *req, struct pol_pool *pp, bool ok, const char *why)
{
    if (ok) {
        if (pp->open_until_ms)
            bb_notice("pool %s: routing policy answers again: circuit closed",
                      req->w->conf->pools[pp->idx].name);
        pp->consec = 0;
        pp->open_until_ms = 0;
        pp->cooldown_ms = 0;
        pp->probing = false;
        return;
    }
    pp->consec++;
    if (!pp->probing && pp->consec < CIRCUIT_FAILS)
        return;
    pp->probing = false;
    pp->cooldown_ms = pp->cooldown_ms ? pp->cooldown_ms * 2 : CIRCUIT_BASE_MS;
    if (pp->cooldown_ms > CIRCUIT_MAX_MS)
        pp->cooldown_ms = CIRCUIT_MAX_MS;
    pp->open_until_ms = bb_now_ms() + pp->cooldown_ms;
    bb_warn("pool %s: routing policy failed %u times in a row (last: %s): skipped for %u ms",
            req->w->conf->pools[pp->idx].name, pp->consec, why, pp->cooldown_ms);
}

/* ---- the input ------------------------------------------------------------------------------- */

static const char *breaker_name(const struct bb_shm_cell *mc, const struct bb_shm_cell *lc,
                                uint64_t now)
{
    static const char *const names[] = {"closed", "half-open", "open"};
    int worst = 0;
    const struct bb_shm_cell *cells[] = {mc, lc};
    for (size_t i = 0; i < 2; i++) {
        if (!cells[i])
            continue;
        uint32_t st = atomic_load_explicit(&cells[i]->breaker_state, memory_order_relaxed);
        if (st == BB_BREAKER_OPEN && bb_breaker_wait_ms(cells[i], now) == 0)
            st = BB_BREAKER_HALF_OPEN; /* the cooldown is over: the next request probes */
        if (st <= BB_BREAKER_OPEN && (int)st > worst)
            worst = (int)st;
    }
    return names[worst];
}

/* An EWMA field of a member cell (ewma_us or ttft_us): -1 while it has no sample. */
static int64_t ewma(const struct bb_shm_cell *c, size_t at)
{
    uint64_t v =
        c ? atomic_load_explicit((_Atomic uint64_t *)((char *)c + at), memory_order_relaxed) : 0;
    return v ? (int64_t)v : -1;
}

static void build_input(struct bb_request *req, struct bb_policy_input *in)
{
    struct bb_worker *w = req->w;
    const struct bb_conf *conf = w->conf;
    const struct bb_pool *pl = &conf->pools[req->pool];
    struct bb_route_state *rs = req->route;
    uint64_t now = bb_now_ms();
    memset(in, 0, sizeof *in);
    in->id = req->id;
    in->protocol = bb_proto_name(req->ingress);
    in->pool = pl->name;
    in->model = rs->model;
    in->stream = req->stream;
    in->input_tokens = req->body_len / BYTES_PER_TOKEN;
    in->max_output_tokens = rs->max_out;
    if (pl->policy.include_messages && req->body) {
        in->body = req->body;
        in->body_len = req->body_len;
    }
    in->now = (double)bb_wall_ms() / 1000.0;
    in->rpm_remaining = in->tpm_remaining = -1;
    if (req->auth.has_key) {
        const struct bb_keys_limits *lim = &req->auth.key.lim;
        struct bb_keys_table *t = &w->rt->shm->keys;
        in->key_id = lim->id;
        in->key_name = lim->name;
        struct bb_keys_usage u;
        bb_keys_usage(t, (int)(req->auth.key.slot - t->slots), bb_wall_ms(), &u);
        if (lim->has_budget) {
            in->has_budget = true;
            in->budget_remaining_usd = lim->budget_micros > u.committed_micros
                                           ? (double)(lim->budget_micros - u.committed_micros) / 1e6
                                           : 0;
        }
        if (lim->rpm)
            in->rpm_remaining = lim->rpm > u.rpm_used ? (int64_t)(lim->rpm - u.rpm_used) : 0;
        if (lim->tpm)
            in->tpm_remaining = lim->tpm > u.tpm_used ? (int64_t)(lim->tpm - u.tpm_used) : 0;
    }
    in->n_cand = pl->n_members;
    in->cand = bb_arena_calloc(&req->arena, (pl->n_members ? pl->n_members : 1) * sizeof *in->cand);
    if (!in->cand) {
        in->n_cand = 0;
        return;
    }
    for (size_t m = 0; m < pl->n_members; m++) {
        struct bb_policy_cand *c = &in->cand[m];
        int li = pl->members[m].lane;
        const struct bb_lane *l = &conf->lanes[li];
        const struct bb_provider *p = &conf->providers[l->provider];
        struct bb_shm_cell *mc = w->pools[req->pool].member_cells[m], *lc = w->lane_cells[li];
        const struct bb_lane_price *lp = w->rt->lane_prices ? &w->rt->lane_prices[li] : NULL;
        c->name = l->name;
        c->model = l->upstream_model;
        c->provider = p->name;
        c->protocol = bb_proto_name(p->protocol);
        c->weight = pl->members[m].weight;
        if (lp && lp->known) {
            c->priced = true;
            c->price_in = (double)lp->p.input / 1e6;
            c->price_out = (double)lp->p.output / 1e6;
        } else if (l->price.set) {
            c->priced = true;
            c->price_in = l->price.input;
            c->price_out = l->price.output;
        }
        c->latency_us = ewma(mc, offsetof(struct bb_shm_cell, ewma_us));
        c->ttft_us = ewma(mc, offsetof(struct bb_shm_cell, ttft_us));
        c->inflight = lc ? atomic_load_explicit(&lc->inflight, memory_order_relaxed) : 0;
        c->free_slots = l->max_concurrent ? (c->inflight < (int64_t)l->max_concurrent
                                                 ? (int64_t)l->max_concurrent - c->inflight
                                                 : 0)
                                          : -1;
        c->breaker = breaker_name(mc, lc, now);
        c->context_max = l->context_max ? (int64_t)l->context_max : -1;
        c->headroom = (double)bb_router_headroom_ppm(w, li, now) / BB_ROUTER_PPM;
    }
}

/* ---- the input as JSON (webhook, socket) ----------------------------------------------------- */

static void jw_num(struct jw *w, double v)
{
    char b[40];
    int n = snprintf(b, sizeof b, "%.10g", v);
    jw_mem(w, b, (size_t)n);
}

static void jw_i64_or_null(struct jw *w, int64_t v)
{
    if (v < 0)
        jw_lit(w, "null");
    else
        jw_u64(w, (uint64_t)v);
}

static void jw_ms_or_null(struct jw *w, int64_t us)
{
    if (us < 0)
        jw_lit(w, "null");
    else
        jw_num(w, (double)us / 1000.0);
}

/* "x-busbar-*" headers of the client's request, names lowercased. */
static void jw_headers(struct jw *w, const struct bb_http_head *h)
{
    bool first = true;
    jw_lit(w, "{");
    for (size_t i = 0; i < h->n_headers; i++) {
        const struct bb_http_header *x = &h->headers[i];
        if (x->name_len <= 9 || !bb_http_ieq(x->name, 9, "x-busbar-") || x->name_len > 128)
            continue;
        char name[130];
        for (size_t k = 0; k < x->name_len; k++)
            name[k] = (char)(x->name[k] >= 'A' && x->name[k] <= 'Z' ? x->name[k] + 32 : x->name[k]);
        if (!first)
            jw_lit(w, ",");
        first = false;
        jw_strn(w, name, x->name_len);
        jw_lit(w, ":");
        jw_strn(w, x->value, x->value_len);
    }
    jw_lit(w, "}");
}

/* The call's JSON (one line: no raw newline in it), in the arena; NULL when out of memory. */
static char *encode(struct bb_request *req, const struct bb_policy_input *in, size_t *len)
{
    size_t hbytes = 0;
    for (size_t i = 0; i < req->head.n_headers; i++)
        hbytes += req->head.headers[i].name_len + req->head.headers[i].value_len;
    size_t cap = 2048 + hbytes * 6 + (in->body ? in->body_len + 16 : 0);
    for (size_t m = 0; m < in->n_cand; m++) /* names are escaped: 6 bytes per byte at worst */
        cap += 512 + 6 * (2 * strlen(in->cand[m].name) + strlen(in->cand[m].model) +
                          strlen(in->cand[m].provider));
    cap += 6 * (strlen(in->model) + (in->key_name ? strlen(in->key_name) : 0));
    char *buf = bb_arena_alloc(&req->arena, cap);
    if (!buf)
        return NULL;
    struct jw w = {buf, 0, cap, false};
    jw_lit(&w, "{\"request\":{\"id\":");
    jw_str(&w, in->id);
    jw_lit(&w, ",\"protocol\":");
    jw_str(&w, in->protocol);
    jw_lit(&w, ",\"pool\":");
    jw_str(&w, in->pool);
    jw_lit(&w, ",\"model\":");
    jw_str(&w, in->model);
    jw_raw(&w, in->stream ? ",\"stream\":true" : ",\"stream\":false");
    jw_lit(&w, ",\"input_tokens\":");
    jw_u64(&w, in->input_tokens);
    jw_lit(&w, ",\"max_output_tokens\":");
    jw_i64_or_null(&w, in->max_output_tokens ? (int64_t)in->max_output_tokens : -1);
    jw_lit(&w, ",\"key\":");
    if (in->key_id) {
        jw_lit(&w, "{\"id\":");
        jw_str(&w, in->key_id);
        jw_lit(&w, ",\"name\":");
        jw_str(&w, in->key_name);
        jw_lit(&w, "}");
    } else {
        jw_lit(&w, "null");
    }
    jw_lit(&w, ",\"headers\":");
    jw_headers(&w, &req->head);
    if (in->body) {
        /* the client's body as it came: valid JSON (admission scanned it); JSON may hold raw
         * newlines only as whitespace, which a newline-delimited stream cannot carry */
        jw_lit(&w, ",\"body\":");
        size_t at = w.n;
        jw_mem(&w, in->body, in->body_len);
        for (size_t i = at; !w.full && i < w.n; i++)
            if (buf[i] == '\n' || buf[i] == '\r')
                buf[i] = ' ';
    }
    jw_lit(&w, "},\"candidates\":[");
    for (size_t m = 0; m < in->n_cand; m++) {
        const struct bb_policy_cand *c = &in->cand[m];
        jw_raw(&w, m ? ",{\"name\":" : "{\"name\":");
        jw_str(&w, c->name);
        jw_lit(&w, ",\"lane\":");
        jw_str(&w, c->name);
        jw_lit(&w, ",\"model\":");
        jw_str(&w, c->model);
        jw_lit(&w, ",\"provider\":");
        jw_str(&w, c->provider);
        jw_lit(&w, ",\"protocol\":");
        jw_str(&w, c->protocol);
        jw_lit(&w, ",\"weight\":");
        jw_u64(&w, c->weight);
        jw_lit(&w, ",\"price\":");
        if (c->priced) {
            jw_lit(&w, "{\"input\":");
            jw_num(&w, c->price_in);
            jw_lit(&w, ",\"output\":");
            jw_num(&w, c->price_out);
            jw_lit(&w, "}");
        } else {
            jw_lit(&w, "null");
        }
        jw_lit(&w, ",\"latency_ms\":");
        jw_ms_or_null(&w, c->latency_us);
        jw_lit(&w, ",\"ttft_ms\":");
        jw_ms_or_null(&w, c->ttft_us);
        jw_lit(&w, ",\"inflight\":");
        jw_u64(&w, c->inflight > 0 ? (uint64_t)c->inflight : 0);
        jw_lit(&w, ",\"free_slots\":");
        jw_i64_or_null(&w, c->free_slots);
        jw_lit(&w, ",\"breaker\":");
        jw_str(&w, c->breaker);
        jw_lit(&w, ",\"context_max\":");
        jw_i64_or_null(&w, c->context_max);
        jw_lit(&w, ",\"headroom\":");
        jw_num(&w, c->headroom);
        jw_lit(&w, "}");
    }
    jw_lit(&w, "],\"context\":{\"time\":");
    jw_num(&w, in->now);
    jw_lit(&w, ",\"budget_remaining_usd\":");
    if (in->has_budget)
        jw_num(&w, in->budget_remaining_usd);
    else
        jw_lit(&w, "null");
    jw_lit(&w, ",\"rpm_remaining\":");
    jw_i64_or_null(&w, in->rpm_remaining);
    jw_lit(&w, ",\"tpm_remaining\":");
    jw_i64_or_null(&w, in->tpm_remaining);
    jw_lit(&w, "}}");
    if (w.full)
        return NULL;
    *len = w.n;
    return buf;
}

/* ---- the answer ------------------------------------------------------------------------------ */

int bb_policy_member(const struct bb_request *req, const char *name, size_t len)
{
    const struct bb_conf *conf = req->w->conf;
    const struct bb_pool *pl = &conf->pools[req->pool];
    for (size_t m = 0; m < pl->n_members; m++) {
        const char *ln = conf->lanes[pl->members[m].lane].name;
        if (strlen(ln) == len && !memcmp(ln, name, len))
            return (int)m;
    }
    return -1;
}

void bb_policy_order_add(struct bb_policy_answer *ans, bool *seen, int m)
{
    if (seen[m])
        return; /* named twice: its first place counts */
    seen[m] = true;
    ans->order[ans->n_order++] = m;
}

static void invalid(struct bb_policy_answer *ans, const char *why)
{
    ans->outcome = BB_MX_POL_INVALID;
    snprintf(ans->why, sizeof ans->why, "%s", why);
}

/* {"order":[names]} | {"abstain":true} | {"reject":{"status":4xx,"message":"..."}}. */
static void parse_answer(struct bb_request *req, const char *text, size_t len,
                         struct bb_policy_answer *ans)
{
    struct json_tokener *tok = json_tokener_new_ex(ANSWER_DEPTH_MAX);
    json_object *o = tok ? json_tokener_parse_ex(tok, text, (int)len) : NULL;
    bool whole = tok && json_tokener_get_error(tok) == json_tokener_success &&
                 json_tokener_get_parse_end(tok) <= len;
    if (whole) /* nothing but whitespace may follow the object */
        for (size_t i = json_tokener_get_parse_end(tok); i < len; i++)
            if (text[i] != ' ' && text[i] != '\t' && text[i] != '\r' && text[i] != '\n')
                whole = false;
    if (tok)
        json_tokener_free(tok);
    json_object *v;
    if (!o || !whole || !json_object_is_type(o, json_type_object)) {
        invalid(ans, "the answer is not a JSON object");
    } else if (json_object_object_get_ex(o, "order", &v)) {
        const struct bb_pool *pl = &req->w->conf->pools[req->pool];
        size_t n = json_object_is_type(v, json_type_array) ? json_object_array_length(v) : 0;
        bool *seen = bb_arena_calloc(&req->arena, pl->n_members + 1);
        ans->order = bb_arena_calloc(&req->arena, (pl->n_members + 1) * sizeof *ans->order);
        ans->outcome = BB_MX_POL_ORDER;
        if (!seen || !ans->order)
            invalid(ans, "out of memory");
        else if (!json_object_is_type(v, json_type_array))
            invalid(ans, "\"order\" is not a list of member names");
        for (size_t i = 0; ans->outcome == BB_MX_POL_ORDER && i < n; i++) {
            json_object *e = json_object_array_get_idx(v, i);
            int m = json_object_is_type(e, json_type_string)
                        ? bb_policy_member(req, json_object_get_string(e),
                                           (size_t)json_object_get_string_len(e))
                        : -1;
            if (m < 0) {
                char why[200];
                snprintf(why, sizeof why, "\"order\" names %s%.64s%s, not a member of the pool",
                         e && json_object_is_type(e, json_type_string) ? "'" : "",
                         e ? json_object_to_json_string(e) : "null",
                         e && json_object_is_type(e, json_type_string) ? "'" : "");
                invalid(ans, why);
            } else {
                bb_policy_order_add(ans, seen, m);
            }
        }
    } else if (json_object_object_get_ex(o, "abstain", &v)) {
        if (json_object_is_type(v, json_type_boolean) && json_object_get_boolean(v))
            ans->outcome = BB_MX_POL_ABSTAIN;
        else
            invalid(ans, "\"abstain\" is not true");
    } else if (json_object_object_get_ex(o, "reject", &v)) {
        json_object *st, *msg;
        int status = json_object_is_type(v, json_type_object) &&
                             json_object_object_get_ex(v, "status", &st) &&
                             json_object_is_type(st, json_type_int)
                         ? json_object_get_int(st)
                         : 0;
        if (status < 400 || status > 499) {
            invalid(ans, "\"reject\" needs a \"status\" between 400 and 499");
        } else {
            ans->outcome = BB_MX_POL_REJECT;
            ans->status = status;
            if (json_object_object_get_ex(v, "message", &msg) &&
                json_object_is_type(msg, json_type_string))
                snprintf(ans->message, sizeof ans->message, "%s", json_object_get_string(msg));
        }
    } else {
        invalid(ans, "the answer has none of order, abstain and reject");
    }
    if (o)
        json_object_put(o);
}

/* ---- the decision ---------------------------------------------------------------------------- */

/* The policy's rejection, in the client's dialect. */
static void reject(struct bb_request *req, enum bb_route_by by, const struct bb_policy_answer *a)
{
    char body[1024], hdrs[512];
    const char *msg = a->message[0] ? a->message : "the request was rejected by the routing policy";
    size_t n = bb_errors_render_status(req->ingress, a->status, "rejected_by_policy", msg, body,
                                       sizeof body);
    size_t hl = bb_errors_headers(req->ingress, a->status, hdrs, sizeof hdrs);
    snprintf(hdrs + hl, sizeof hdrs - hl, "x-busbar-route-policy: %s\r\nx-busbar-attempts: 0\r\n",
             bb_route_by_name(by));
    bb_http_respond_full(req, a->status, "application/json", hdrs, body, n);
    bb_request_finish(req);
}

/* policy.on_error after a failed or skipped call. */
static void fall_back(struct bb_request *req, const struct bb_policy_answer *a)
{
    const struct bb_pool *pl = &req->w->conf->pools[req->pool];
    struct bb_route_state *rs = req->route;
    req->obs.route_by = BB_ROUTE_BY_FALLBACK;
    switch (pl->policy.on_error) {
    case BB_POLICY_ON_ERROR_REJECT: {
        char msg[500];
        snprintf(msg, sizeof msg,
                 "the routing policy of pool '%s' failed (%s: %s) and its on_error is reject",
                 pl->name, bb_mx_policy_name(a->outcome), a->why);
        bb_request_fail_with(req, BB_ERR_POLICY_FAILED, msg,
                             "Retry-After: 1\r\nx-busbar-route-policy: fallback\r\n");
        return;
    }
    case BB_POLICY_ON_ERROR_FIRST:
        rs->order = bb_arena_calloc(&req->arena, (pl->n_members + 1) * sizeof *rs->order);
        for (size_t m = 0; rs->order && m < pl->n_members; m++)
            rs->order[rs->n_order++] = (int)m;
        break;
    case BB_POLICY_ON_ERROR_WEIGHTED:
        break;
    }
    bb_attempt_next(req);
}

/* One call's result: counters, circuit, log, then the route. */
static void decide(struct bb_request *req, struct pol_pool *pp, enum bb_route_by by,
                   struct bb_policy_answer *a)
{
    struct bb_route_state *rs = req->route;
    bb_obs_policy(req, (int)a->outcome);
    bool answered = a->outcome <= BB_MX_POL_REJECT;
    if (a->outcome != BB_MX_POL_SKIPPED)
        circuit_result(req, pp, answered, a->why);
    switch (a->outcome) {
    case BB_MX_POL_ORDER:
        req->obs.route_by = (uint8_t)by;
        rs->order = a->order;
        rs->n_order = a->n_order;
        if (a->n_order)
            rs->route_target = a->order[0] + 1;
        bb_attempt_next(req);
        return;
    case BB_MX_POL_ABSTAIN:
        req->obs.route_by = BB_ROUTE_BY_NATIVE;
        bb_attempt_next(req);
        return;
    case BB_MX_POL_REJECT:
        bb_info("request %s: rejected by the routing policy of pool %s with %d", req->id,
                req->w->conf->pools[req->pool].name, a->status);
        reject(req, by, a);
        return;
    default:
        bb_info("request %s: routing policy of pool %s: %s: %s; on_error applies", req->id,
                req->w->conf->pools[req->pool].name, bb_mx_policy_name(a->outcome), a->why);
        fall_back(req, a);
        return;
    }
}

/* ---- calls in flight ------------------------------------------------------------------------- */

static struct bb_policy_call *call_check(void *arg)
{
    struct bb_policy_call *c = arg;
    if (c->magic != BB_MAGIC_POLICY || !c->req || c->req->magic != BB_MAGIC_REQ) {
        bb_crit("policy: a call of a dead request");
        abort();
    }
    return c;
}

/* The call is over: detach it from its request. */
static struct bb_request *call_end(struct bb_policy_call *c)
{
    struct bb_request *req = c->req;
    event_del(&c->timer);
    if (c->body) {
        evbuffer_free(c->body);
        c->body = NULL;
    }
    c->magic = 0;
    req->route->policy = NULL;
    return req;
}

void bb_policy_answered(struct bb_policy_call *c, const char *text, size_t len)
{
    call_check(c);
    struct bb_policy_answer a;
    memset(&a, 0, sizeof a);
    parse_answer(c->req, text, len, &a); /* text may be the call's own buffer: parse first */
    struct pol_pool *pp = c->pp;
    enum bb_route_by by = c->by;
    struct bb_request *req = call_end(c);
    decide(req, pp, by, &a);
}

void bb_policy_failed(struct bb_policy_call *c, enum bb_mx_policy outcome, const char *why)
{
    call_check(c);
    struct pol_pool *pp = c->pp;
    enum bb_route_by by = c->by;
    struct bb_request *req = call_end(c);
    struct bb_policy_answer a;
    memset(&a, 0, sizeof a);
    a.outcome = outcome;
    snprintf(a.why, sizeof a.why, "%s", why);
    decide(req, pp, by, &a);
}

static void timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct bb_policy_call *c = call_check(arg);
    const struct bb_pool *pl = &c->req->w->conf->pools[c->req->pool];
    char why[64];
    snprintf(why, sizeof why, "no answer within %u ms", pl->policy.timeout_ms);
    if (c->up) {
        bb_upstream_cancel(c->up); /* the connection is closed, never reused */
        c->up = NULL;
    }
    if (c->node)
        bb_policy_unix_timeout(c);
    bb_policy_failed(c, BB_MX_POL_TIMEOUT, why);
}

void bb_policy_release(struct bb_request *req)
{
    struct bb_route_state *rs = req->route;
    struct bb_policy_call *c = rs ? rs->policy : NULL;
    if (!c)
        return;
    if (c->up)
        bb_upstream_cancel(c->up);
    c->up = NULL;
    if (c->node)
        bb_policy_unix_forget(c);
    if (c->probe) /* the probe went away without an outcome: the next call probes */
        c->pp->probing = false;
    call_end(c);
}

/* ---- the entry ------------------------------------------------------------------------------- */

void bb_policy_route(struct bb_request *req)
{
    struct bb_worker *w = req->w;
    const struct bb_pool *pl = req->pool >= 0 ? &w->conf->pools[req->pool] : NULL;
    if (!pl || pl->policy.kind == BB_POLICY_NONE) {
        bb_attempt_next(req);
        return;
    }
    struct pol_pool *pp = &w->policy->pools[req->pool];
    enum bb_route_by by = by_of(pl->policy.kind);
    struct bb_policy_answer a;
    memset(&a, 0, sizeof a);
    bool probe;
    if (!circuit_admit(pp, bb_now_ms(), &probe)) {
        a.outcome = BB_MX_POL_SKIPPED;
        snprintf(a.why, sizeof a.why, "the policy is circuit-broken after repeated failures");
        decide(req, pp, by, &a);
        return;
    }
    struct bb_policy_input in;
    build_input(req, &in);
    if (pl->policy.kind == BB_POLICY_SCRIPT) {
        bb_policy_lua_run(req, &in, &a);
        decide(req, pp, by, &a);
        return;
    }
    size_t len = 0;
    char *json = encode(req, &in, &len);
    struct bb_policy_call *c = json ? bb_arena_calloc(&req->arena, sizeof *c) : NULL;
    if (!c) {
        a.outcome = BB_MX_POL_ERROR;
        snprintf(a.why, sizeof a.why, "out of memory");
        decide(req, pp, by, &a);
        return;
    }
    c->magic = BB_MAGIC_POLICY;
    c->req = req;
    c->pp = pp;
    c->by = by;
    c->probe = probe;
    evtimer_assign(&c->timer, w->base, timeout_cb, c);
    struct timeval tv = {pl->policy.timeout_ms / 1000, (pl->policy.timeout_ms % 1000) * 1000};
    evtimer_add(&c->timer, &tv);
    req->route->policy = c;
    int rc = pl->policy.kind == BB_POLICY_WEBHOOK
                 ? bb_policy_http_start(c, json, len, a.why, sizeof a.why)
                 : bb_policy_unix_start(c, json, len, a.why, sizeof a.why);
    if (rc < 0)
        bb_policy_failed(c, BB_MX_POL_ERROR, a.why);
}

/* ---- /stats ---------------------------------------------------------------------------------- */

void bb_policy_stats(struct bb_worker *w, int pool, json_object *po)
{
    const struct bb_pool *pl = &w->conf->pools[pool];
    if (pl->policy.kind == BB_POLICY_NONE)
        return;
    static const char *const kinds[] = {"none", "webhook", "socket", "script"};
    json_object *o = json_object_new_object();
    json_object_object_add(o, "kind", json_object_new_string(kinds[pl->policy.kind]));
    struct bb_mx_cell *cell = bb_mx_find(&w->rt->shm->metrics, 'p', pl->name, NULL);
    json_object *oc = json_object_new_object();
    for (int k = 0; k < BB_MX_POL__COUNT; k++)
        json_object_object_add(
            oc, bb_mx_policy_name((enum bb_mx_policy)k),
            json_object_new_int64(cell ? (int64_t)atomic_load(&cell->u.pool.policy[k]) : 0));
    json_object_object_add(o, "outcomes", oc);
    const struct pol_pool *pp = &w->policy->pools[pool];
    bool open = pp->open_until_ms && bb_now_ms() < pp->open_until_ms;
    json_object_object_add(o, "circuit", json_object_new_string(open ? "open" : "closed"));
    json_object_object_add(po, "policy", o);
}
