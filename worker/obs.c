/*
 * obs: the request-path hooks and the end-of-request observation (see obs.h), the access-log
 * and audit record, and GET /metrics. Worker process, single-threaded.
 *
 * Metric cells are resolved once per worker (by name, interned by the master before fork):
 * target t is pool t, or lane t - n_pools when a request names a lane directly.
 */
#include "worker/obs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <event2/buffer.h>
#include <openssl/crypto.h>

#include "common/keys_shm.h"
#include "common/log.h"
#include "common/metrics_shm.h"
#include "common/metrics_text.h"
#include "worker/access_log.h"
#include "worker/breaker.h"
#include "worker/classify.h"
#include "worker/http_server.h"
#include "worker/jw.h"
#include "worker/obs_post.h"
#include "worker/otlp.h"
#include "worker/policy.h"
#include "worker/request.h"
#include "worker/worker.h"

#define AUDIT_MAX_ITEMS 1024 /* records queued per worker */
#define AUDIT_BATCH 64
#define AUDIT_INTERVAL_MS 1000
#define RECORD_MAX 4096

struct bb_obs {
    struct bb_mx_region *r;
    size_t n_targets;
    struct bb_mx_pool **target;    /* per target */
    struct bb_mx_member ***member; /* per target, per member (one for a lane) */
    struct bb_mx_lane **lane;      /* per lane */
    uint64_t rng;
    struct bb_access_log *log;
    struct bb_otlp *otlp;
    struct bb_post *audit;
    bool admin_token;
    uint8_t admin_sha[32];
    bool metrics;  /* observability.metrics: false leaves the shared counters alone */
    time_t ts_sec; /* the second ts (a record's "YYYY-MM-DDTHH:MM:SS.") was formatted for */
    char ts[32];
    size_t ts_len;
};

/* ---- helpers -------------------------------------------------------------------------------- */

const char *bb_obs_result_name(uint8_t result)
{
    static const char *const names[] = {"running", "ok", "failed", "cut", "cancelled"};
    return result < sizeof names / sizeof names[0] ? names[result] : "failed";
}

static uint64_t rnd(struct bb_obs *o)
{
    /* splitmix64: ids only need to be unique, not secret */
    uint64_t z = (o->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void rnd_bytes(struct bb_obs *o, uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i += 8) {
        uint64_t v = rnd(o);
        memcpy(p + i, &v, n - i < 8 ? n - i : 8);
    }
}

static int target_of(const struct bb_request *req)
{
    const struct bb_conf *c = req->w->conf;
    if (req->pool >= 0)
        return req->pool;
    return req->lane >= 0 ? (int)c->n_pools + req->lane : -1;
}

static struct bb_mx_member *member_cell(struct bb_request *req, int member)
{
    struct bb_obs *o = req->w->obs;
    int t = target_of(req);
    if (t < 0 || !o->metrics)
        return NULL;
    return o->member[t][member < 0 ? 0 : member];
}

/* ---- worker start and stop ------------------------------------------------------------------ */

int bb_obs_init(struct bb_worker *w)
{
    const struct bb_conf *c = w->conf;
    struct bb_obs *o = calloc(1, sizeof *o);
    if (!o)
        return -1;
    w->obs = o;
    o->r = &w->rt->shm->metrics;
    o->metrics = c->metrics;
    o->n_targets = c->n_pools + c->n_lanes;
    o->target = calloc(o->n_targets ? o->n_targets : 1, sizeof *o->target);
    o->member = calloc(o->n_targets ? o->n_targets : 1, sizeof *o->member);
    o->lane = calloc(c->n_lanes ? c->n_lanes : 1, sizeof *o->lane);
    if (!o->target || !o->member || !o->lane)
        return -1;
    for (size_t t = 0; t < o->n_targets; t++) {
        bool pool = t < c->n_pools;
        const char *name = pool ? c->pools[t].name : c->lanes[t - c->n_pools].name;
        size_t nm = pool ? c->pools[t].n_members : 1;
        struct bb_mx_cell *cell = bb_mx_find(o->r, 'p', name, NULL);
        o->target[t] = cell ? &cell->u.pool : NULL;
        if (!(o->member[t] = calloc(nm, sizeof **o->member)))
            return -1;
        for (size_t m = 0; m < nm; m++) {
            const char *lane = pool ? c->lanes[c->pools[t].members[m].lane].name : name;
            cell = bb_mx_find(o->r, 'm', name, lane);
            o->member[t][m] = cell ? &cell->u.member : NULL;
        }
    }
    for (size_t i = 0; i < c->n_lanes; i++) {
        struct bb_mx_cell *cell = bb_mx_find(o->r, 'l', c->lanes[i].name, NULL);
        o->lane[i] = cell ? &cell->u.lane : NULL;
    }
    if (getrandom(&o->rng, sizeof o->rng, 0) != (ssize_t)sizeof o->rng)
        o->rng = bb_now_us() ^ ((uint64_t)w->slot << 48);
    if (c->admin_token) {
        o->admin_token = true;
        bb_keys_hash_secret(c->admin_token, strlen(c->admin_token), o->admin_sha);
    }
    if (c->access_log &&
        !(o->log = bb_access_log_open(w, c->access_log, &o->r->global[BB_MX_G_ACCESS_LOG_LINES],
                                      &o->r->global[BB_MX_G_ACCESS_LOG_DROPPED])))
        return -1;
    if (c->otlp_endpoint && !(o->otlp = bb_otlp_new(w)))
        return -1;
    if (c->audit_url) {
        struct bb_post_conf pc = {
            .what = "audit webhook",
            .url = &c->audit_url_parsed,
            .prefix = "[",
            .suffix = "]",
            .max_items = AUDIT_MAX_ITEMS,
            .batch_items = AUDIT_BATCH,
            .interval_ms = AUDIT_INTERVAL_MS,
            .timeout_secs = 5,
            .sent = &o->r->global[BB_MX_G_AUDIT_SENT],
            .dropped = &o->r->global[BB_MX_G_AUDIT_DROPPED],
        };
        if (!(o->audit = bb_post_new(w, &pc)))
            return -1;
    }
    return 0;
}

void bb_obs_free(struct bb_worker *w)
{
    struct bb_obs *o = w->obs;
    if (!o)
        return;
    bb_access_log_close(o->log);
    bb_otlp_free(o->otlp);
    bb_post_free(o->audit);
    for (size_t t = 0; o->member && t < o->n_targets; t++)
        free(o->member[t]);
    free(o->member);
    free(o->target);
    free(o->lane);
    free(o);
    w->obs = NULL;
}

void bb_obs_reopen(struct bb_worker *w)
{
    if (w->obs && w->obs->log)
        bb_access_log_reopen(w->obs->log);
}

/* ---- hooks ---------------------------------------------------------------------------------- */

static int hexv(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* "hex" of exactly 2n lowercase digits into out; false when malformed or all zero. */
static bool unhex(const char *s, uint8_t *out, size_t n)
{
    uint8_t any = 0;
    for (size_t i = 0; i < n; i++) {
        int h = hexv(s[2 * i]), l = hexv(s[2 * i + 1]);
        if (h < 0 || l < 0)
            return false;
        out[i] = (uint8_t)(h * 16 + l);
        any |= out[i];
    }
    return any != 0;
}

/* W3C traceparent, version 00: "00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>". */
static bool parse_traceparent(struct bb_obs_req *t, const char *v, size_t n)
{
    uint8_t flags;
    if (n != 55 || memcmp(v, "00-", 3) != 0 || v[35] != '-' || v[52] != '-')
        return false;
    if (!unhex(v + 3, t->trace_id, 16) || !unhex(v + 36, t->parent_span_id, 8))
        return false;
    int h = hexv(v[53]), l = hexv(v[54]);
    if (h < 0 || l < 0)
        return false;
    flags = (uint8_t)(h * 16 + l);
    t->sampled = flags & 1u;
    return true;
}

void bb_obs_request_start(struct bb_request *req)
{
    struct bb_obs_req *t = &req->obs;
    struct bb_obs *o = req->w->obs;
    t->started = true;
    t->pending_class = -1;
    t->cur.result = BB_OBS_OK; /* no attempt running */
    t->sampled = true;
    const struct bb_http_header *h = bb_http_find(&req->head, "traceparent");
    t->has_parent = h && parse_traceparent(t, h->value, h->value_len);
    if (!t->has_parent) {
        t->sampled = true;
        rnd_bytes(o, t->trace_id, 16);
    }
    rnd_bytes(o, t->span_id, 8);
}

void bb_obs_attempt_start(struct bb_request *req, int lane, int member)
{
    struct bb_obs_req *t = &req->obs;
    struct bb_obs *o = req->w->obs;
    const struct bb_conf *c = req->w->conf;
    if (!t->started)
        bb_obs_request_start(req);
    int tg = target_of(req);
    /* the previous attempt failed before anything reached the client: this is its failover */
    if (t->total > 0 && t->cur.result == BB_OBS_FAILED && tg >= 0 && o->metrics && o->target[tg])
        bb_mx_add(&o->target[tg]->failovers[t->cur.fclass >= 0 ? t->cur.fclass : BB_FC_NETWORK], 1);
    memset(&t->cur, 0, sizeof t->cur);
    t->cur.lane = (int16_t)lane;
    t->cur.member = (int16_t)member;
    t->cur.fclass = -1;
    t->cur.result = BB_OBS_RUNNING;
    t->cur.t_start_us = bb_now_us();
    if (t->next_span_set) /* its traceparent went out with the request */
        memcpy(t->cur.span_id, t->next_span_id, 8);
    else
        rnd_bytes(o, t->cur.span_id, 8);
    t->next_span_set = false;
    t->pending_class = -1;
    t->total++;
    struct bb_mx_member *mc = member_cell(req, member);
    if (mc)
        bb_mx_add(&mc->attempts, 1);
    enum bb_proto egress = c->providers[c->lanes[lane].provider].protocol;
    if (egress != req->ingress && o->metrics)
        bb_mx_add(&o->r->translations[req->ingress][egress], 1);
}

void bb_obs_attempt_commit(struct bb_request *req)
{
    struct bb_obs_req *t = &req->obs;
    if (t->cur.result != BB_OBS_RUNNING || t->cur.committed)
        return;
    t->cur.committed = true;
    t->cur.t_commit_us = bb_now_us();
    if (req->stream) {
        t->ttft_us = t->cur.t_commit_us - t->cur.t_start_us;
        struct bb_mx_member *mc = member_cell(req, t->cur.member);
        if (mc)
            bb_mx_observe(&mc->ttft, BB_MX_B_SECONDS, t->ttft_us);
    }
}

void bb_obs_attempt_class(struct bb_request *req, enum bb_fclass fc)
{
    req->obs.pending_class = (int8_t)fc;
}

/* The class of a failure no hook named: by the upstream status, else a network failure. */
static enum bb_fclass class_of_status(int status)
{
    if (status == 429)
        return BB_FC_RATE_LIMIT;
    if (status == 529)
        return BB_FC_OVERLOADED;
    if (status == 408)
        return BB_FC_TIMEOUT;
    if (status == 401 || status == 403)
        return BB_FC_AUTH;
    if (status >= 500)
        return BB_FC_SERVER;
    if (status >= 400)
        return BB_FC_CLIENT;
    return status ? BB_FC_SERVER : BB_FC_NETWORK; /* a 2xx answer that failed: server */
}

static void attempt_close(struct bb_request *req, enum bb_obs_result result, int status)
{
    struct bb_obs_req *t = &req->obs;
    struct bb_obs_attempt *a = &t->cur;
    a->t_end_us = bb_now_us();
    a->status = status;
    a->result = (uint8_t)result;
    uint64_t us = a->t_end_us - a->t_start_us;
    t->up_us += us;
    struct bb_mx_member *mc = member_cell(req, a->member);
    if (result == BB_OBS_FAILED || result == BB_OBS_CUT) {
        a->fclass = t->pending_class >= 0 ? t->pending_class : (int8_t)class_of_status(status);
        if (mc)
            bb_mx_add(&mc->failures[a->fclass], 1);
    }
    if (mc)
        bb_mx_observe(&mc->upstream, BB_MX_B_SECONDS, us);
    if (t->n < BB_OBS_MAX_ATTEMPTS)
        t->a[t->n++] = *a;
}

void bb_obs_attempt_end(struct bb_request *req, bool ok, int status)
{
    struct bb_obs_req *t = &req->obs;
    if (t->cur.result != BB_OBS_RUNNING)
        return;
    attempt_close(req, ok ? BB_OBS_OK : t->cur.committed ? BB_OBS_CUT : BB_OBS_FAILED, status);
}

void bb_obs_continued(struct bb_request *req)
{
    req->obs.continued = true;
}

void bb_obs_traceparent(struct bb_request *req, struct evbuffer *head)
{
    struct bb_obs_req *t = &req->obs;
    if (!req->w->conf->otlp_endpoint) { /* not tracing: pass the client's context on as is */
        const struct bb_http_header *h = bb_http_find(&req->head, "traceparent");
        if (h && t->has_parent)
            evbuffer_add_printf(head, "traceparent: %.*s\r\n", (int)h->value_len, h->value);
        return;
    }
    if (!t->started)
        bb_obs_request_start(req);
    rnd_bytes(req->w->obs, t->next_span_id, 8); /* the attempt about to start */
    t->next_span_set = true;
    char tp[80];
    struct jw w = {tp, 0, sizeof tp, false};
    jw_lit(&w, "traceparent: 00-");
    jw_hex(&w, t->trace_id, 16);
    jw_lit(&w, "-");
    jw_hex(&w, t->next_span_id, 8);
    jw_raw(&w, t->sampled ? "-01\r\n" : "-00\r\n");
    evbuffer_add(head, tp, w.n);
}

/* ---- the end of a request ------------------------------------------------------------------- */

static enum bb_mx_outcome outcome_of(const struct bb_request *req)
{
    const struct bb_obs_req *t = &req->obs;
    const struct bb_obs_attempt *last = t->total ? &t->cur : NULL;
    if (!req->responded || (!req->conn && !req->response_done))
        return BB_MX_OUT_CANCELLED;
    if (last && last->result == BB_OBS_CUT)
        return BB_MX_OUT_CUT;
    int s = req->status;
    if (s < 400)
        return BB_MX_OUT_OK;
    if (last && last->result == BB_OBS_FAILED)
        return last->fclass == BB_FC_TIMEOUT ? BB_MX_OUT_TIMEOUT : BB_MX_OUT_UPSTREAM_ERROR;
    if (s == 401 || s == 403)
        return BB_MX_OUT_DENIED;
    if (s == 429)
        return t->total ? BB_MX_OUT_CLIENT_ERROR : BB_MX_OUT_LIMITED;
    if (s == 503)
        return BB_MX_OUT_NO_CAPACITY;
    if (s == 504)
        return BB_MX_OUT_TIMEOUT;
    return s < 500 ? BB_MX_OUT_CLIENT_ERROR : BB_MX_OUT_ERROR;
}

static void jw_ms(struct jw *w, const char *key_lit, uint64_t us)
{
    jw_raw(w, key_lit);
    jw_fixed(w, us, 3);
}

/* The access-log / audit record of a finished request (SPEC §8): names, ids and numbers only,
 * never a secret, a header or anything of the prompt. Returns its length (no newline). */
static size_t record(struct bb_request *req, enum bb_mx_outcome oc, uint64_t total_us,
                     uint64_t overhead_us, char *buf, size_t cap)
{
    const struct bb_conf *c = req->w->conf;
    const struct bb_obs_req *t = &req->obs;
    struct bb_obs *o = req->w->obs;
    struct jw w = {buf, 0, cap, false};
    uint64_t ms = bb_wall_ms();
    time_t secs = (time_t)(ms / 1000);
    if (secs != o->ts_sec || !o->ts_len) { /* formatted once a second */
        struct tm tm;
        gmtime_r(&secs, &tm);
        o->ts_len = strftime(o->ts, sizeof o->ts, "%Y-%m-%dT%H:%M:%S.", &tm);
        o->ts_sec = secs;
    }
    char msd[3] = {(char)('0' + ms % 1000 / 100), (char)('0' + ms % 100 / 10),
                   (char)('0' + ms % 10)};
    jw_lit(&w, "{\"ts\":\"");
    jw_mem(&w, o->ts, o->ts_len);
    jw_mem(&w, msd, sizeof msd);
    jw_lit(&w, "Z\",\"request_id\":\"");
    jw_raw(&w, req->id); /* "bb-" and hex: nothing to escape */
    jw_lit(&w, "\"");
    jw_lit(&w, ",\"key_id\":");
    if (req->auth.has_key)
        jw_str(&w, req->auth.key.lim.id);
    else
        jw_lit(&w, "null");
    jw_lit(&w, ",\"ingress\":\"");
    jw_raw(&w, bb_proto_name(req->ingress));
    jw_lit(&w, "\",\"pool\":");
    int tg = target_of(req);
    jw_str(&w, tg < 0                 ? "_none"
               : tg < (int)c->n_pools ? c->pools[tg].name
                                      : c->lanes[tg - (int)c->n_pools].name);
    if (req->pool >= 0) { /* what ordered the members (worker/policy.h) */
        jw_lit(&w, ",\"route_policy\":\"");
        jw_raw(&w, bb_route_by_name((enum bb_route_by)t->route_by));
        jw_lit(&w, "\"");
        if (t->policy_outcome) {
            jw_lit(&w, ",\"policy_outcome\":\"");
            jw_raw(&w, bb_mx_policy_name((enum bb_mx_policy)(t->policy_outcome - 1)));
            jw_lit(&w, "\"");
        }
    }
    jw_raw(&w, req->stream ? ",\"stream\":true,\"status\":" : ",\"stream\":false,\"status\":");
    jw_u64(&w, (uint64_t)(req->responded ? req->status : 499));
    jw_lit(&w, ",\"outcome\":\"");
    jw_raw(&w, bb_mx_outcome_name(oc));
    jw_lit(&w, "\",\"attempts\":");
    jw_u64(&w, t->total);
    jw_lit(&w, ",\"lanes\":[");
    for (size_t i = 0; i < t->n; i++) {
        const struct bb_obs_attempt *a = &t->a[i];
        const struct bb_lane *l = &c->lanes[a->lane];
        jw_raw(&w, i ? ",{\"lane\":" : "{\"lane\":");
        jw_str(&w, l->name);
        jw_lit(&w, ",\"provider\":");
        jw_str(&w, c->providers[l->provider].name);
        jw_lit(&w, ",\"result\":\"");
        jw_raw(&w, bb_obs_result_name(a->result));
        jw_lit(&w, "\"");
        if (a->fclass >= 0) {
            jw_lit(&w, ",\"class\":\"");
            jw_raw(&w, bb_fclass_name((enum bb_fclass)a->fclass));
            jw_lit(&w, "\"");
        }
        if (a->status) {
            jw_lit(&w, ",\"status\":");
            jw_u64(&w, (uint64_t)a->status);
        }
        jw_ms(&w, ",\"ms\":", a->t_end_us - a->t_start_us);
        jw_lit(&w, "}");
    }
    jw_raw(&w, t->continued ? "],\"continued\":true,\"lane\":" : "],\"continued\":false,\"lane\":");
    if (req->bill_lane >= 0)
        jw_str(&w, c->lanes[req->bill_lane].name);
    else
        jw_lit(&w, "null");
    if (req->usage_seen) {
        const uint64_t v[] = {req->usage.input, req->usage.output, req->usage.cache_read,
                              req->usage.cache_write, req->usage.reasoning};
        static const char *const k[] = {",\"tokens\":{\"input\":", ",\"output\":",
                                        ",\"cache_read\":", ",\"cache_write\":", ",\"reasoning\":"};
        for (size_t i = 0; i < 5; i++) {
            jw_raw(&w, k[i]);
            jw_u64(&w, v[i]);
        }
        jw_lit(&w, "}");
    } else {
        jw_lit(&w, ",\"tokens\":null");
    }
    jw_lit(&w, ",\"cost_usd\":");
    jw_fixed(&w, req->cost_micros, 6);
    jw_ms(&w, ",\"latency_ms\":", total_us);
    if (t->ttft_us)
        jw_ms(&w, ",\"ttft_ms\":", t->ttft_us);
    else
        jw_lit(&w, ",\"ttft_ms\":null");
    jw_lit(&w, ",\"overhead_us\":");
    jw_u64(&w, overhead_us);
    jw_lit(&w, ",\"trace_id\":\"");
    jw_hex(&w, t->trace_id, 16);
    jw_lit(&w, "\"}");
    if (w.full) { /* cannot happen with BB_OBS_MAX_ATTEMPTS lanes; stay valid JSON */
        w = (struct jw){buf, 0, cap, false};
        jw_lit(&w, "{\"request_id\":");
        jw_str(&w, req->id);
        jw_lit(&w, ",\"truncated\":true}");
    }
    return w.n;
}

static void count_request(struct bb_request *req, enum bb_mx_outcome oc, uint64_t total_us,
                          uint64_t overhead_us)
{
    struct bb_obs *o = req->w->obs;
    int tg = target_of(req);
    struct bb_mx_pool *p = tg >= 0 ? o->target[tg] : &o->r->unrouted;
    if (p) {
        bb_mx_add(&p->requests[req->ingress][oc], 1);
        if (tg >= 0) {
            bb_mx_observe(&p->duration, BB_MX_B_SECONDS, total_us);
            bb_mx_observe(&p->overhead, BB_MX_B_OVERHEAD, overhead_us);
        }
    }
    if (req->auth.has_key) {
        struct bb_mx_key *k = bb_mx_key(o->r, req->auth.key.lim.id, req->w->conf->key_series_max);
        bb_mx_add(&k->requests, 1);
        bb_mx_add(&k->spend_micros, req->cost_micros);
    }
    struct bb_mx_lane *l = req->bill_lane >= 0 ? o->lane[req->bill_lane] : NULL;
    if (l && req->usage_seen) {
        const uint64_t v[BB_MX_TIER__COUNT] = {req->usage.input, req->usage.output,
                                               req->usage.cache_read, req->usage.cache_write,
                                               req->usage.reasoning};
        for (int i = 0; i < BB_MX_TIER__COUNT; i++)
            if (v[i])
                bb_mx_add(&l->tokens[i], v[i]);
    }
}

void bb_obs_policy(struct bb_request *req, int outcome)
{
    struct bb_obs *o = req->w->obs;
    req->obs.policy_outcome = (uint8_t)(outcome + 1);
    struct bb_mx_pool *p = o && req->pool >= 0 ? o->target[req->pool] : NULL;
    if (p && outcome >= 0 && outcome < BB_MX_POL__COUNT)
        bb_mx_add(&p->policy[outcome], 1);
}

void bb_obs_request_end(struct bb_request *req)
{
    struct bb_obs *o = req->w->obs;
    struct bb_obs_req *t = &req->obs;
    /* only LLM requests (POST) are observed; GET endpoints (health checks, scrapes) are not */
    if (!o || req->head.method_len != 4 || memcmp(req->head.method, "POST", 4) != 0)
        return;
    if (!t->started)
        bb_obs_request_start(req);
    if (t->total && t->cur.result == BB_OBS_RUNNING) /* the client left mid-attempt */
        attempt_close(req, BB_OBS_CANCELLED, 0);
    enum bb_mx_outcome oc = outcome_of(req);
    uint64_t total = bb_now_us() - req->t_start_us;
    uint64_t overhead = total > t->up_us ? total - t->up_us : 0;
    if (o->metrics)
        count_request(req, oc, total, overhead);
    if (o->log || o->audit) {
        char buf[RECORD_MAX];
        size_t n = record(req, oc, total, overhead, buf, sizeof buf - 1);
        if (o->audit)
            bb_post_add(o->audit, buf, n);
        buf[n++] = '\n';
        if (o->log)
            bb_access_log_add(o->log, buf, n);
    }
    if (o->otlp)
        bb_otlp_request(o->otlp, req, bb_mx_outcome_name(oc));
}

/* ---- GET /metrics --------------------------------------------------------------------------- */

static bool admin_authorized(struct bb_obs *o, const struct bb_request *req)
{
    if (!o->admin_token)
        return true;
    const struct bb_http_header *a = bb_http_find(&req->head, "authorization");
    if (!a || a->value_len < 7 || !bb_http_ieq(a->value, 6, "bearer") || a->value[6] != ' ')
        return false;
    uint8_t sha[32];
    bb_keys_hash_secret(a->value + 7, a->value_len - 7, sha);
    return CRYPTO_memcmp(sha, o->admin_sha, sizeof sha) == 0;
}

void bb_obs_metrics_endpoint(struct bb_request *req)
{
    struct bb_worker *w = req->w;
    const struct bb_conf *c = w->conf;
    if (!c->metrics || c->metrics_listen) {
        bb_request_fail(req, BB_ERR_NOT_FOUND,
                        c->metrics ? "metrics are served on observability.metrics_listen"
                                   : "metrics are off (observability.metrics: false)");
        return;
    }
    if (!admin_authorized(w->obs, req)) {
        static const char body[] = "{\"error\":{\"message\":\"GET /metrics needs the admin token "
                                   "(Authorization: Bearer)\",\"type\":\"authentication_error\","
                                   "\"code\":\"unauthorized\"}}";
        bb_http_respond_full(req, 401, "application/json",
                             "WWW-Authenticate: Bearer realm=\"busbar-metrics\"\r\n", body,
                             sizeof body - 1);
        bb_request_finish(req);
        return;
    }
    size_t len = 0;
    char *text = bb_mx_render(c, w->rt->shm, &len);
    if (!text) {
        bb_request_fail(req, BB_ERR_INTERNAL, "out of memory");
        return;
    }
    bb_http_respond_full(req, 200, BB_MX_CONTENT_TYPE, NULL, text, len);
    free(text);
    bb_request_finish(req);
}
