/*
 * otlp: span JSON per the OTLP/JSON mapping (ids as lowercase hex, 64-bit integers as decimal
 * strings, enums as numbers) and the GenAI semantic conventions (gen_ai.*).
 */
#include "worker/otlp.h"

#include "worker/proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/metrics_shm.h"
#include "common/shm.h"
#include "worker/obs.h"
#include "worker/obs_post.h"
#include "worker/classify.h"
#include "worker/jw.h"
#include "worker/request.h"
#include "worker/worker.h"

#define MAX_SPANS 4096 /* queued per worker */
#define BATCH_SPANS 64
#define SPAN_MAX 8192 /* one span's JSON; a longer one (never with configured names) is dropped */
#define INTERVAL_MS 1000

enum { KIND_SERVER = 2, KIND_CLIENT = 3, STATUS_ERROR = 2 };

/* A piece of span JSON that depends only on the configuration, rendered once per worker. */
struct frag {
    char *p;
    size_t n;
};

/* Per target (pools, then lanes addressed directly): the request span's name and its
 * target attributes. Per lane: the attempt span's name and constant attributes, and what the
 * request span says of the lane that answered. */
struct bb_otlp {
    struct bb_post *q;
    size_t n_pools, n_lanes;
    struct frag *target_name, *target_attrs; /* [n_pools + n_lanes] */
    struct frag *lane_name, *lane_attrs;     /* [n_lanes] */
    struct frag *answer_attrs, *lane_model;  /* [n_lanes] */
};

static void frags_free(struct frag *f, size_t n)
{
    for (size_t i = 0; f && i < n; i++)
        free(f[i].p);
    free(f);
}

void bb_otlp_free(struct bb_otlp *t)
{
    if (!t)
        return;
    bb_post_free(t->q);
    size_t nt = t->n_pools + t->n_lanes;
    frags_free(t->target_name, nt);
    frags_free(t->target_attrs, nt);
    frags_free(t->lane_name, t->n_lanes);
    frags_free(t->lane_attrs, t->n_lanes);
    frags_free(t->answer_attrs, t->n_lanes);
    frags_free(t->lane_model, t->n_lanes);
    free(t);
}

/* gen_ai.provider.name (and the older gen_ai.system) of an egress protocol. */
static const char *genai_provider(enum bb_proto p)
{
    const struct bb_proto_ops *o = bb_proto_get(p);
    return o && o->genai_system ? o->genai_system : "unknown";
}

/* Attributes: gen_ai.operation.name always comes first (span_head), so every other one is
 * written with a leading comma. The key k is a string literal: each attribute's constant text
 * is one copy. */
#define KEY(k, type) ",{\"key\":\"" k "\",\"value\":{\"" type "\":"

static void str_val(struct jw *w, const char *v)
{
    jw_str(w, v);
    jw_lit(w, "}}");
}

/* A value known to need no escaping (request ids, protocol, outcome and result names). */
static void word_val(struct jw *w, const char *v)
{
    jw_lit(w, "\"");
    jw_raw(w, v);
    jw_lit(w, "\"}}");
}

static void int_val(struct jw *w, uint64_t v)
{
    jw_lit(w, "\"");
    jw_u64(w, v);
    jw_lit(w, "\"}}");
}

/* USD from micro-dollars, exactly. */
static void usd_val(struct jw *w, uint64_t micros)
{
    jw_fixed(w, micros, 6);
    jw_lit(w, "}}");
}

#define a_str(w, k, v) (jw_lit((w), KEY(k, "stringValue")), str_val((w), (v)))
#define a_word(w, k, v) (jw_lit((w), KEY(k, "stringValue")), word_val((w), (v)))
#define a_int(w, k, v) (jw_lit((w), KEY(k, "intValue")), int_val((w), (v)))
#define a_usd(w, k, v) (jw_lit((w), KEY(k, "doubleValue")), usd_val((w), (v)))

/* `,"name":"chat <model>` (the closing quote is span_head's), the model escaped. */
static void span_name(struct jw *w, const char *model)
{
    jw_lit(w, ",\"name\":\"chat ");
    size_t at = w->n;
    jw_str(w, model); /* the quoted name, both quotes dropped */
    if (!w->full) {
        memmove(w->p + at, w->p + at + 1, w->n - at - 2);
        w->n -= 2;
    }
}

/* ---- the configuration's fragments, rendered once per worker ------------------------------ */

static bool frag_keep(struct frag *f, struct jw *w)
{
    if (w->full || !(f->p = malloc(w->n ? w->n : 1)))
        return false;
    memcpy(f->p, w->p, w->n);
    f->n = w->n;
    w->n = 0;
    return true;
}

static bool render_target(struct bb_otlp *t, size_t i, const char *name, struct jw *w)
{
    span_name(w, name);
    if (!frag_keep(&t->target_name[i], w))
        return false;
    a_str(w, "gen_ai.request.model", name);
    a_str(w, "busbar.pool", name);
    return frag_keep(&t->target_attrs[i], w);
}

static bool render_lane(struct bb_otlp *t, const struct bb_conf *c, size_t i, struct jw *w)
{
    const struct bb_lane *l = &c->lanes[i];
    const struct bb_provider *p = &c->providers[l->provider];
    const char *sys = genai_provider(p->protocol);
    span_name(w, l->upstream_model);
    if (!frag_keep(&t->lane_name[i], w))
        return false;
    a_str(w, "gen_ai.provider.name", sys);
    a_str(w, "gen_ai.system", sys);
    a_str(w, "gen_ai.request.model", l->upstream_model);
    a_str(w, "server.address", p->url.host);
    a_int(w, "server.port", p->url.port);
    a_str(w, "busbar.lane", l->name);
    a_str(w, "busbar.provider", p->name);
    if (!frag_keep(&t->lane_attrs[i], w))
        return false;
    a_str(w, "gen_ai.response.model", l->upstream_model);
    if (!frag_keep(&t->lane_model[i], w))
        return false;
    a_str(w, "gen_ai.provider.name", sys);
    a_str(w, "gen_ai.system", sys);
    a_str(w, "gen_ai.response.model", l->upstream_model);
    return frag_keep(&t->answer_attrs[i], w);
}

static bool render(struct bb_otlp *t, const struct bb_conf *c)
{
    size_t nt = c->n_pools + c->n_lanes;
    t->n_pools = c->n_pools;
    t->n_lanes = c->n_lanes;
    t->target_name = calloc(nt + 1, sizeof *t->target_name);
    t->target_attrs = calloc(nt + 1, sizeof *t->target_attrs);
    t->lane_name = calloc(c->n_lanes + 1, sizeof *t->lane_name);
    t->lane_attrs = calloc(c->n_lanes + 1, sizeof *t->lane_attrs);
    t->lane_model = calloc(c->n_lanes + 1, sizeof *t->lane_model);
    t->answer_attrs = calloc(c->n_lanes + 1, sizeof *t->answer_attrs);
    if (!t->target_name || !t->target_attrs || !t->lane_name || !t->lane_attrs || !t->lane_model ||
        !t->answer_attrs)
        return false;
    char buf[SPAN_MAX];
    struct jw w = {buf, 0, sizeof buf, false};
    for (size_t i = 0; i < c->n_pools; i++)
        if (!render_target(t, i, c->pools[i].name, &w))
            return false;
    for (size_t i = 0; i < c->n_lanes; i++)
        if (!render_target(t, c->n_pools + i, c->lanes[i].name, &w) || !render_lane(t, c, i, &w))
            return false;
    return true;
}

struct bb_otlp *bb_otlp_new(struct bb_worker *w)
{
    const struct bb_conf *c = w->conf;
    if (!c->otlp_endpoint)
        return NULL;
    struct bb_otlp *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    struct bb_mx_region *r = &w->rt->shm->metrics;
    struct bb_post_conf pc = {
        .what = "traces",
        .url = &c->otlp_url,
        .prefix = "{\"resourceSpans\":[{\"resource\":{\"attributes\":["
                  "{\"key\":\"service.name\",\"value\":{\"stringValue\":\"busbar\"}},"
                  "{\"key\":\"service.version\",\"value\":{\"stringValue\":\"" BB_VERSION "\"}}"
                  "]},\"scopeSpans\":[{\"scope\":{\"name\":\"busbar\",\"version\":\"" BB_VERSION
                  "\"},\"spans\":[",
        .suffix = "]}]}]}",
        .max_items = MAX_SPANS,
        .batch_items = BATCH_SPANS,
        .interval_ms = INTERVAL_MS,
        .timeout_secs = 5,
        .sent = &r->global[BB_MX_G_SPANS_EXPORTED],
        .dropped = &r->global[BB_MX_G_SPANS_DROPPED],
    };
    if (!render(t, c) || !(t->q = bb_post_new(w, &pc))) {
        bb_otlp_free(t);
        return NULL;
    }
    return t;
}

/* Wall-clock nanoseconds of a monotonic µs timestamp. */
static uint64_t wall_ns(uint64_t mono_us, uint64_t now_mono_us, uint64_t now_wall_ns)
{
    uint64_t back = now_mono_us > mono_us ? (now_mono_us - mono_us) * 1000u : 0;
    return now_wall_ns > back ? now_wall_ns - back : 0;
}

static void frag(struct jw *w, const struct frag *f)
{
    jw_mem(w, f->p, f->n);
}

/* The span up to and including its first attribute (gen_ai.operation.name). */
static void span_head(struct jw *w, const struct bb_obs_req *o, const uint8_t *span,
                      const uint8_t *parent, const struct frag *name, int kind, uint64_t start_ns,
                      uint64_t end_ns)
{
    jw_lit(w, "{\"traceId\":\"");
    jw_hex(w, o->trace_id, 16);
    jw_lit(w, "\",\"spanId\":\"");
    jw_hex(w, span, 8);
    jw_lit(w, "\"");
    if (parent) {
        jw_lit(w, ",\"parentSpanId\":\"");
        jw_hex(w, parent, 8);
        jw_lit(w, "\"");
    }
    if (name)
        frag(w, name);
    else
        jw_lit(w, ",\"name\":\"chat busbar");
    jw_raw(w, kind == KIND_SERVER ? "\",\"kind\":2" : "\",\"kind\":3");
    jw_lit(w, ",\"startTimeUnixNano\":\"");
    jw_u64(w, start_ns);
    jw_lit(w, "\",\"endTimeUnixNano\":\"");
    jw_u64(w, end_ns);
    jw_lit(w, "\",\"attributes\":[{\"key\":\"gen_ai.operation.name\","
              "\"value\":{\"stringValue\":\"chat\"}}");
}

static void span_tail(struct jw *w, const char *error)
{
    jw_lit(w, "]");
    if (error) {
        jw_lit(w, ",\"status\":{\"code\":2,\"message\":\"");
        jw_raw(w, error); /* an outcome or fault-class name */
        jw_lit(w, "\"}");
    }
    jw_lit(w, "}");
}

static void push(struct bb_otlp *t, struct jw *w)
{
    if (!w->full)
        bb_post_add(t->q, w->p, w->n);
    w->n = 0;
    w->full = false;
}

static void usage_attrs(struct jw *w, const struct bb_request *req)
{
    if (!req->usage_seen)
        return;
    a_int(w, "gen_ai.usage.input_tokens",
          req->usage.input + req->usage.cache_read + req->usage.cache_write);
    a_int(w, "gen_ai.usage.output_tokens", req->usage.output);
}

void bb_otlp_request(struct bb_otlp *t, struct bb_request *req, const char *outcome)
{
    const struct bb_obs_req *o = &req->obs;
    if (!t || !o->sampled)
        return;
    char buf[SPAN_MAX];
    struct jw jw = {buf, 0, sizeof buf, false}, *b = &jw;
    uint64_t now_us = bb_now_us(), now_ns = bb_wall_ms() * 1000000u;
    const struct frag *tname = NULL, *tattrs = NULL;
    if (req->pool >= 0 || req->lane >= 0) {
        size_t ti = req->pool >= 0 ? (size_t)req->pool : t->n_pools + (size_t)req->lane;
        tname = &t->target_name[ti];
        tattrs = &t->target_attrs[ti];
    }

    /* the request: SERVER span */
    span_head(b, o, o->span_id, o->has_parent ? o->parent_span_id : NULL, tname, KIND_SERVER,
              wall_ns(req->t_start_us, now_us, now_ns), now_ns);
    if (tattrs)
        frag(b, tattrs);
    if (req->bill_lane >= 0)
        frag(b, &t->answer_attrs[req->bill_lane]);
    usage_attrs(b, req);
    a_word(b, "http.request.method", "POST");
    a_int(b, "http.response.status_code", (uint64_t)(req->responded ? req->status : 499));
    a_word(b, "busbar.request_id", req->id);
    a_word(b, "busbar.ingress_protocol", bb_proto_name(req->ingress));
    a_word(b, "busbar.outcome", outcome);
    a_int(b, "busbar.attempts", o->total);
    if (req->auth.has_key)
        a_str(b, "busbar.key_id", req->auth.key.lim.id);
    if (req->cost_micros)
        a_usd(b, "busbar.cost_usd", req->cost_micros);
    span_tail(b, strcmp(outcome, "ok") ? outcome : NULL);
    push(t, b);

    /* each attempt: CLIENT child span */
    for (size_t i = 0; i < o->n; i++) {
        const struct bb_obs_attempt *at = &o->a[i];
        span_head(b, o, at->span_id, o->span_id, &t->lane_name[at->lane], KIND_CLIENT,
                  wall_ns(at->t_start_us, now_us, now_ns), wall_ns(at->t_end_us, now_us, now_ns));
        frag(b, &t->lane_attrs[at->lane]);
        if (at->committed && at->lane == req->bill_lane) {
            frag(b, &t->lane_model[at->lane]);
            usage_attrs(b, req);
        }
        if (at->status)
            a_int(b, "http.response.status_code", (uint64_t)at->status);
        a_word(b, "busbar.attempt.result", bb_obs_result_name(at->result));
        const char *err = NULL;
        if (at->fclass >= 0 && at->result != BB_OBS_OK) {
            err = bb_fclass_name((enum bb_fclass)at->fclass);
            a_word(b, "error.type", err);
        } else if (at->result == BB_OBS_CANCELLED) {
            err = "cancelled";
        }
        span_tail(b, err);
        push(t, b);
    }
}
