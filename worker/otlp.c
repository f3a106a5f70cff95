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
#define BATCH_SPANS 512
#define SPAN_MAX 8192 /* one span's JSON; a longer one (never with configured names) is dropped */
#define INTERVAL_MS 1000

enum { KIND_SERVER = 2, KIND_CLIENT = 3, STATUS_ERROR = 2 };

struct bb_otlp {
    struct bb_post *q;
};

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
    if (!(t->q = bb_post_new(w, &pc))) {
        free(t);
        return NULL;
    }
    return t;
}

void bb_otlp_free(struct bb_otlp *t)
{
    if (!t)
        return;
    bb_post_free(t->q);
    free(t);
}

/* gen_ai.provider.name (and the older gen_ai.system) of an egress protocol. */
static const char *genai_provider(enum bb_proto p)
{
    const struct bb_proto_ops *o = bb_proto_get(p);
    return o && o->genai_system ? o->genai_system : "unknown";
}

struct attrs {
    struct jw *w;
    int n;
};

static void key(struct attrs *a, const char *k)
{
    jw_raw(a->w, a->n++ ? ",{\"key\":\"" : "{\"key\":\"");
    jw_raw(a->w, k);
    jw_lit(a->w, "\",\"value\":");
}

static void a_str(struct attrs *a, const char *k, const char *v)
{
    key(a, k);
    jw_lit(a->w, "{\"stringValue\":");
    jw_str(a->w, v);
    jw_lit(a->w, "}}");
}

static void a_int(struct attrs *a, const char *k, uint64_t v)
{
    key(a, k);
    jw_lit(a->w, "{\"intValue\":\"");
    jw_u64(a->w, v);
    jw_lit(a->w, "\"}}");
}

/* USD from micro-dollars, exactly. */
static void a_usd(struct attrs *a, const char *k, uint64_t micros)
{
    key(a, k);
    jw_lit(a->w, "{\"doubleValue\":");
    jw_fixed(a->w, micros, 6);
    jw_lit(a->w, "}}");
}

/* Wall-clock nanoseconds of a monotonic µs timestamp. */
static uint64_t wall_ns(uint64_t mono_us, uint64_t now_mono_us, uint64_t now_wall_ns)
{
    uint64_t back = now_mono_us > mono_us ? (now_mono_us - mono_us) * 1000u : 0;
    return now_wall_ns > back ? now_wall_ns - back : 0;
}

static void span_head(struct jw *w, const struct bb_obs_req *o, const uint8_t *span,
                      const uint8_t *parent, const char *name_model, int kind, uint64_t start_ns,
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
    jw_lit(w, ",\"name\":\"chat ");
    size_t at = w->n;
    jw_str(w, name_model); /* "chat " + the quoted name, its opening quote dropped */
    if (!w->full) {
        memmove(w->p + at, w->p + at + 1, w->n - at - 1);
        w->n--;
    }
    jw_raw(w, kind == KIND_SERVER ? ",\"kind\":2" : ",\"kind\":3");
    jw_lit(w, ",\"startTimeUnixNano\":\"");
    jw_u64(w, start_ns);
    jw_lit(w, "\",\"endTimeUnixNano\":\"");
    jw_u64(w, end_ns);
    jw_lit(w, "\",\"attributes\":[");
}

static void span_tail(struct jw *w, const char *error)
{
    jw_lit(w, "]");
    if (error) {
        jw_lit(w, ",\"status\":{\"code\":2,\"message\":");
        jw_str(w, error);
        jw_lit(w, "}");
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

static void usage_attrs(struct attrs *a, const struct bb_request *req)
{
    if (!req->usage_seen)
        return;
    a_int(a, "gen_ai.usage.input_tokens",
          req->usage.input + req->usage.cache_read + req->usage.cache_write);
    a_int(a, "gen_ai.usage.output_tokens", req->usage.output);
}

void bb_otlp_request(struct bb_otlp *t, struct bb_request *req, const char *outcome)
{
    const struct bb_obs_req *o = &req->obs;
    if (!t || !o->sampled)
        return;
    const struct bb_conf *c = req->w->conf;
    char buf[SPAN_MAX];
    struct jw jw = {buf, 0, sizeof buf, false}, *b = &jw;
    uint64_t now_us = bb_now_us(), now_ns = bb_wall_ms() * 1000000u;
    const char *target = req->pool >= 0   ? c->pools[req->pool].name
                         : req->lane >= 0 ? c->lanes[req->lane].name
                                          : NULL;
    const struct bb_lane *answer = req->bill_lane >= 0 ? &c->lanes[req->bill_lane] : NULL;

    /* the request: SERVER span */
    span_head(b, o, o->span_id, o->has_parent ? o->parent_span_id : NULL,
              target ? target : "busbar", KIND_SERVER, wall_ns(req->t_start_us, now_us, now_ns),
              now_ns);
    struct attrs a = {b, 0};
    a_str(&a, "gen_ai.operation.name", "chat");
    if (target)
        a_str(&a, "gen_ai.request.model", target);
    if (answer) {
        enum bb_proto p = c->providers[answer->provider].protocol;
        a_str(&a, "gen_ai.provider.name", genai_provider(p));
        a_str(&a, "gen_ai.system", genai_provider(p));
        a_str(&a, "gen_ai.response.model", answer->upstream_model);
    }
    usage_attrs(&a, req);
    a_str(&a, "http.request.method", "POST");
    a_int(&a, "http.response.status_code", (uint64_t)(req->responded ? req->status : 499));
    a_str(&a, "busbar.request_id", req->id);
    a_str(&a, "busbar.ingress_protocol", bb_proto_name(req->ingress));
    a_str(&a, "busbar.outcome", outcome);
    a_int(&a, "busbar.attempts", o->total);
    if (target)
        a_str(&a, "busbar.pool", target);
    if (req->auth.has_key)
        a_str(&a, "busbar.key_id", req->auth.key.lim.id);
    if (req->cost_micros)
        a_usd(&a, "busbar.cost_usd", req->cost_micros);
    span_tail(b, strcmp(outcome, "ok") ? outcome : NULL);
    push(t, b);

    /* each attempt: CLIENT child span */
    for (size_t i = 0; i < o->n; i++) {
        const struct bb_obs_attempt *at = &o->a[i];
        const struct bb_lane *l = &c->lanes[at->lane];
        const struct bb_provider *p = &c->providers[l->provider];
        span_head(b, o, at->span_id, o->span_id, l->upstream_model, KIND_CLIENT,
                  wall_ns(at->t_start_us, now_us, now_ns), wall_ns(at->t_end_us, now_us, now_ns));
        struct attrs aa = {b, 0};
        a_str(&aa, "gen_ai.operation.name", "chat");
        a_str(&aa, "gen_ai.provider.name", genai_provider(p->protocol));
        a_str(&aa, "gen_ai.system", genai_provider(p->protocol));
        a_str(&aa, "gen_ai.request.model", l->upstream_model);
        if (at->committed && at->lane == req->bill_lane) {
            a_str(&aa, "gen_ai.response.model", l->upstream_model);
            usage_attrs(&aa, req);
        }
        a_str(&aa, "server.address", p->url.host);
        a_int(&aa, "server.port", p->url.port);
        if (at->status)
            a_int(&aa, "http.response.status_code", (uint64_t)at->status);
        a_str(&aa, "busbar.lane", l->name);
        a_str(&aa, "busbar.provider", p->name);
        a_str(&aa, "busbar.attempt.result", bb_obs_result_name(at->result));
        const char *err = NULL;
        if (at->fclass >= 0 && at->result != BB_OBS_OK) {
            err = bb_fclass_name((enum bb_fclass)at->fclass);
            a_str(&aa, "error.type", err);
        } else if (at->result == BB_OBS_CANCELLED) {
            err = "cancelled";
        }
        span_tail(b, err);
        push(t, b);
    }
}
