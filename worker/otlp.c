/*
 * otlp: spans in either OTLP/HTTP encoding — protobuf (the default, as in the OpenTelemetry
 * SDKs) or JSON per the OTLP/JSON mapping (ids as lowercase hex, 64-bit integers as decimal
 * strings, enums as numbers) — with the GenAI semantic conventions (gen_ai.*). One span
 * writer, two encodings (struct enc); every attribute that depends only on the configuration
 * is rendered once per worker in the chosen encoding.
 */
#include "worker/otlp.h"

#include "worker/proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/metrics_shm.h"
#include "common/shm.h"
#include "worker/classify.h"
#include "worker/jw.h"
#include "worker/obs.h"
#include "worker/obs_post.h"
#include "worker/pb.h"
#include "worker/request.h"
#include "worker/worker.h"

#define MAX_SPANS 4096 /* queued per worker */
#define BATCH_SPANS 64
#define SPAN_MAX 8192 /* one span; a longer one (never with configured names) is dropped */
#define INTERVAL_MS 1000

enum { KIND_SERVER = 2, KIND_CLIENT = 3, STATUS_ERROR = 2 };

/* OTLP protobuf field numbers (opentelemetry/proto/{collector/trace,trace,common,resource}/v1) */
enum {
    F_REQ_RESOURCE_SPANS = 1,
    F_RS_RESOURCE = 1,
    F_RS_SCOPE_SPANS = 2,
    F_RESOURCE_ATTRS = 1,
    F_SS_SCOPE = 1,
    F_SS_SPANS = 2,
    F_SCOPE_NAME = 1,
    F_SCOPE_VERSION = 2,
    F_SPAN_TRACE_ID = 1,
    F_SPAN_ID = 2,
    F_SPAN_PARENT = 4,
    F_SPAN_NAME = 5,
    F_SPAN_KIND = 6,
    F_SPAN_START = 7,
    F_SPAN_END = 8,
    F_SPAN_ATTRS = 9,
    F_SPAN_STATUS = 15,
    F_STATUS_MESSAGE = 2,
    F_STATUS_CODE = 3,
    F_KV_KEY = 1,
    F_KV_VALUE = 2,
    F_ANY_STRING = 1,
    F_ANY_INT = 3,
    F_ANY_DOUBLE = 4,
};

/* A piece of a span that depends only on the configuration, rendered once per worker. */
struct frag {
    char *p;
    size_t n;
};

/* One encoding: the span's name field, attributes (key k of length kl), the span's head (up to
 * and including its first attribute, gen_ai.operation.name; returns a mark for tail) and
 * tail (status when error, and the end). */
struct enc {
    void (*name)(struct jw *w, const char *model);
    void (*str)(struct jw *w, const char *k, size_t kl, const char *v);
    void (*word)(struct jw *w, const char *k, size_t kl, const char *v); /* nothing to escape */
    void (*num)(struct jw *w, const char *k, size_t kl, uint64_t v);
    void (*usd)(struct jw *w, const char *k, size_t kl, uint64_t micros);
    size_t (*head)(struct jw *w, const uint8_t *trace, const uint8_t *span, const uint8_t *parent,
                   const struct frag *name, int kind, uint64_t start_ns, uint64_t end_ns);
    void (*tail)(struct jw *w, size_t mark, const char *error);
};

#define A_STR(e, w, k, v) (e)->str((w), k, sizeof k - 1, (v))
#define A_WORD(e, w, k, v) (e)->word((w), k, sizeof k - 1, (v))
#define A_INT(e, w, k, v) (e)->num((w), k, sizeof k - 1, (v))
#define A_USD(e, w, k, v) (e)->usd((w), k, sizeof k - 1, (v))

/* Per target (pools, then lanes addressed directly): the request span's name and its
 * target attributes. Per lane: the attempt span's name and constant attributes, and what the
 * request span says of the lane that answered. */
struct bb_otlp {
    struct bb_post *q;
    const struct enc *e;
    size_t n_pools, n_lanes;
    struct frag *target_name, *target_attrs; /* [n_pools + n_lanes] */
    struct frag *lane_name, *lane_attrs;     /* [n_lanes] */
    struct frag *answer_attrs, *lane_model;  /* [n_lanes] */
};

/* ---- JSON ---------------------------------------------------------------------------------- */

/* Attributes: gen_ai.operation.name always comes first (the head), so every other one is
 * written with a leading comma. */
static void j_key(struct jw *w, const char *k, size_t kl, const char *type_lit, size_t tl)
{
    jw_lit(w, ",{\"key\":\"");
    jw_mem(w, k, kl);
    jw_lit(w, "\",\"value\":{\"");
    jw_mem(w, type_lit, tl);
    jw_lit(w, "\":");
}

static void j_str(struct jw *w, const char *k, size_t kl, const char *v)
{
    j_key(w, k, kl, "stringValue", 11);
    jw_str(w, v);
    jw_lit(w, "}}");
}

static void j_word(struct jw *w, const char *k, size_t kl, const char *v)
{
    j_key(w, k, kl, "stringValue", 11);
    jw_lit(w, "\"");
    jw_raw(w, v);
    jw_lit(w, "\"}}");
}

static void j_num(struct jw *w, const char *k, size_t kl, uint64_t v)
{
    j_key(w, k, kl, "intValue", 8);
    jw_lit(w, "\"");
    jw_u64(w, v);
    jw_lit(w, "\"}}");
}

/* USD from micro-dollars, exactly. */
static void j_usd(struct jw *w, const char *k, size_t kl, uint64_t micros)
{
    j_key(w, k, kl, "doubleValue", 11);
    jw_fixed(w, micros, 6);
    jw_lit(w, "}}");
}

/* `,"name":"chat <model>` (the closing quote is the head's), the model escaped. */
static void j_name(struct jw *w, const char *model)
{
    jw_lit(w, ",\"name\":\"chat ");
    size_t at = w->n;
    jw_str(w, model); /* the quoted name, both quotes dropped */
    if (!w->full) {
        memmove(w->p + at, w->p + at + 1, w->n - at - 2);
        w->n -= 2;
    }
}

static size_t j_head(struct jw *w, const uint8_t *trace, const uint8_t *span, const uint8_t *parent,
                     const struct frag *name, int kind, uint64_t start_ns, uint64_t end_ns)
{
    jw_lit(w, "{\"traceId\":\"");
    jw_hex(w, trace, 16);
    jw_lit(w, "\",\"spanId\":\"");
    jw_hex(w, span, 8);
    jw_lit(w, "\"");
    if (parent) {
        jw_lit(w, ",\"parentSpanId\":\"");
        jw_hex(w, parent, 8);
        jw_lit(w, "\"");
    }
    if (name)
        jw_mem(w, name->p, name->n);
    else
        jw_lit(w, ",\"name\":\"chat busbar");
    jw_raw(w, kind == KIND_SERVER ? "\",\"kind\":2" : "\",\"kind\":3");
    jw_lit(w, ",\"startTimeUnixNano\":\"");
    jw_u64(w, start_ns);
    jw_lit(w, "\",\"endTimeUnixNano\":\"");
    jw_u64(w, end_ns);
    jw_lit(w, "\",\"attributes\":[{\"key\":\"gen_ai.operation.name\","
              "\"value\":{\"stringValue\":\"chat\"}}");
    return 0;
}

static void j_tail(struct jw *w, size_t mark, const char *error)
{
    (void)mark;
    jw_lit(w, "]");
    if (error) {
        jw_lit(w, ",\"status\":{\"code\":2,\"message\":\"");
        jw_raw(w, error); /* an outcome or fault-class name */
        jw_lit(w, "\"}");
    }
    jw_lit(w, "}");
}

static const struct enc json_enc = {j_name, j_str, j_word, j_num, j_usd, j_head, j_tail};

/* ---- protobuf -------------------------------------------------------------------------------- */

/* A KeyValue as repeated field `field` whose AnyValue holds one scalar of `val` bytes (its tag
 * included): the two lengths are known before a byte is written, so nothing moves, and the
 * whole attribute is bounds-checked once. Returns where the scalar goes (NULL: no room). */
static uint8_t *p_kv(struct jw *w, unsigned field, const char *k, size_t kl, size_t val)
{
    size_t kv = 1 + pb_varint_len(kl) + kl + 1 + pb_varint_len(val) + val;
    uint8_t *o = pb_reserve(w, 1 + pb_varint_len(kv) + kv);
    if (!o)
        return NULL;
    o = pb_put_varint(pb_put_tag(o, field, PB_LEN), kv);
    o = pb_put_bytes(o, F_KV_KEY, k, kl);
    return pb_put_varint(pb_put_tag(o, F_KV_VALUE, PB_LEN), val);
}

static void p_kv_str(struct jw *w, unsigned field, const char *k, size_t kl, const char *v)
{
    size_t vl = strlen(v);
    uint8_t *o = p_kv(w, field, k, kl, 1 + pb_varint_len(vl) + vl);
    if (o)
        pb_commit(w, pb_put_bytes(o, F_ANY_STRING, v, vl));
}

static void p_str(struct jw *w, const char *k, size_t kl, const char *v)
{
    p_kv_str(w, F_SPAN_ATTRS, k, kl, v);
}

static void p_num(struct jw *w, const char *k, size_t kl, uint64_t v)
{
    uint8_t *o = p_kv(w, F_SPAN_ATTRS, k, kl, 1 + pb_varint_len(v));
    if (o)
        pb_commit(w, pb_put_varint(pb_put_tag(o, F_ANY_INT, PB_VARINT), v));
}

static void p_usd(struct jw *w, const char *k, size_t kl, uint64_t micros)
{
    uint8_t *o = p_kv(w, F_SPAN_ATTRS, k, kl, 1 + 8);
    double d = (double)micros / 1e6;
    uint64_t v;
    memcpy(&v, &d, sizeof v);
    if (o)
        pb_commit(w, pb_put_fixed64(o, F_ANY_DOUBLE, v));
}

static void p_name(struct jw *w, const char *model)
{
    size_t n = strlen(model);
    pb_tag(w, F_SPAN_NAME, PB_LEN);
    pb_varint(w, 5 + n);
    jw_lit(w, "chat ");
    jw_mem(w, model, n);
}

/* A span is one ScopeSpans.spans item: the POST's envelope (pb_envelope) goes around them. */
static size_t p_head(struct jw *w, const uint8_t *trace, const uint8_t *span, const uint8_t *parent,
                     const struct frag *name, int kind, uint64_t start_ns, uint64_t end_ns)
{
    size_t mark = pb_open(w, F_SS_SPANS);
    uint8_t *o = pb_reserve(w, 18 + 10 + 10);
    if (!o)
        return mark;
    o = pb_put_bytes(o, F_SPAN_TRACE_ID, trace, 16);
    o = pb_put_bytes(o, F_SPAN_ID, span, 8);
    if (parent)
        o = pb_put_bytes(o, F_SPAN_PARENT, parent, 8);
    pb_commit(w, o);
    if (name)
        jw_mem(w, name->p, name->n);
    else
        p_name(w, "busbar");
    if (!(o = pb_reserve(w, 2 + 9 + 9)))
        return mark;
    o = pb_put_varint(pb_put_tag(o, F_SPAN_KIND, PB_VARINT), (uint64_t)kind);
    o = pb_put_fixed64(o, F_SPAN_START, start_ns);
    pb_commit(w, pb_put_fixed64(o, F_SPAN_END, end_ns));
    p_str(w, "gen_ai.operation.name", 21, "chat");
    return mark;
}

static void p_tail(struct jw *w, size_t mark, const char *error)
{
    if (error) {
        size_t st = pb_open(w, F_SPAN_STATUS);
        pb_str(w, F_STATUS_MESSAGE, error);
        pb_u64(w, F_STATUS_CODE, STATUS_ERROR);
        pb_close(w, st);
    }
    pb_close(w, mark);
}

static const struct enc pb_enc = {p_name, p_str, p_str, p_num, p_usd, p_head, p_tail};

/* The ExportTraceServiceRequest around `spans` bytes of ScopeSpans.spans items. */
static size_t pb_envelope(char *buf, size_t cap, size_t spans)
{
    char res[256], scope[64];
    struct jw r = {res, 0, sizeof res, false}, s = {scope, 0, sizeof scope, false};
    size_t m = pb_open(&r, F_RS_RESOURCE);
    p_kv_str(&r, F_RESOURCE_ATTRS, "service.name", 12, "busbar");
    p_kv_str(&r, F_RESOURCE_ATTRS, "service.version", 15, BB_VERSION);
    pb_close(&r, m);
    m = pb_open(&s, F_SS_SCOPE);
    pb_str(&s, F_SCOPE_NAME, "busbar");
    pb_str(&s, F_SCOPE_VERSION, BB_VERSION);
    pb_close(&s, m);
    /* lengths of the varints that precede the two nested messages */
    uint8_t tmp[10];
    struct jw t = {(char *)tmp, 0, sizeof tmp, false};
    size_t ss_len = s.n + spans;
    pb_varint(&t, ss_len);
    size_t rs_len = r.n + 1 + t.n + ss_len;
    struct jw w = {buf, 0, cap, false};
    pb_tag(&w, F_REQ_RESOURCE_SPANS, PB_LEN);
    pb_varint(&w, rs_len);
    jw_mem(&w, res, r.n);
    pb_tag(&w, F_RS_SCOPE_SPANS, PB_LEN);
    pb_varint(&w, ss_len);
    jw_mem(&w, scope, s.n);
    return w.full ? 0 : w.n;
}

/* ---- the configuration's fragments, rendered once per worker ------------------------------ */

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
    const struct enc *e = t->e;
    e->name(w, name);
    if (!frag_keep(&t->target_name[i], w))
        return false;
    A_STR(e, w, "gen_ai.request.model", name);
    A_STR(e, w, "busbar.pool", name);
    return frag_keep(&t->target_attrs[i], w);
}

static bool render_lane(struct bb_otlp *t, const struct bb_conf *c, size_t i, struct jw *w)
{
    const struct enc *e = t->e;
    const struct bb_lane *l = &c->lanes[i];
    const struct bb_provider *p = &c->providers[l->provider];
    const char *sys = genai_provider(p->protocol);
    e->name(w, l->upstream_model);
    if (!frag_keep(&t->lane_name[i], w))
        return false;
    A_STR(e, w, "gen_ai.provider.name", sys);
    A_STR(e, w, "gen_ai.system", sys);
    A_STR(e, w, "gen_ai.request.model", l->upstream_model);
    A_STR(e, w, "server.address", p->url.host);
    A_INT(e, w, "server.port", p->url.port);
    A_STR(e, w, "busbar.lane", l->name);
    A_STR(e, w, "busbar.provider", p->name);
    if (!frag_keep(&t->lane_attrs[i], w))
        return false;
    A_STR(e, w, "gen_ai.response.model", l->upstream_model);
    if (!frag_keep(&t->lane_model[i], w))
        return false;
    A_STR(e, w, "gen_ai.provider.name", sys);
    A_STR(e, w, "gen_ai.system", sys);
    A_STR(e, w, "gen_ai.response.model", l->upstream_model);
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
    t->e = c->otlp_json ? &json_enc : &pb_enc;
    struct bb_mx_region *r = &w->rt->shm->metrics;
    struct bb_post_conf pc = {
        .what = "traces",
        .url = &c->otlp_url,
        .max_items = MAX_SPANS,
        .batch_items = BATCH_SPANS,
        .interval_ms = INTERVAL_MS,
        .timeout_secs = 5,
        .sent = &r->global[BB_MX_G_SPANS_EXPORTED],
        .dropped = &r->global[BB_MX_G_SPANS_DROPPED],
    };
    if (c->otlp_json) {
        pc.prefix = "{\"resourceSpans\":[{\"resource\":{\"attributes\":["
                    "{\"key\":\"service.name\",\"value\":{\"stringValue\":\"busbar\"}},"
                    "{\"key\":\"service.version\",\"value\":{\"stringValue\":\"" BB_VERSION "\"}}"
                    "]},\"scopeSpans\":[{\"scope\":{\"name\":\"busbar\",\"version\":\"" BB_VERSION
                    "\"},\"spans\":[";
        pc.suffix = "]}]}]}";
    } else {
        pc.content_type = "application/x-protobuf";
        pc.sep = ""; /* repeated fields simply follow each other */
        pc.envelope = pb_envelope;
    }
    if (!render(t, c) || !(t->q = bb_post_new(w, &pc))) {
        bb_otlp_free(t);
        return NULL;
    }
    return t;
}

/* ---- a finished request's spans ------------------------------------------------------------ */

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

static void push(struct bb_otlp *t, struct jw *w)
{
    if (!w->full)
        bb_post_add(t->q, w->p, w->n);
    w->n = 0;
    w->full = false;
}

static void usage_attrs(const struct enc *e, struct jw *w, const struct bb_request *req)
{
    if (!req->usage_seen)
        return;
    A_INT(e, w, "gen_ai.usage.input_tokens",
          req->usage.input + req->usage.cache_read + req->usage.cache_write);
    A_INT(e, w, "gen_ai.usage.output_tokens", req->usage.output);
}

void bb_otlp_request(struct bb_otlp *t, struct bb_request *req, const char *outcome)
{
    const struct bb_obs_req *o = &req->obs;
    if (!t || !o->sampled)
        return;
    const struct enc *e = t->e;
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
    size_t mark = e->head(b, o->trace_id, o->span_id, o->has_parent ? o->parent_span_id : NULL,
                          tname, KIND_SERVER, wall_ns(req->t_start_us, now_us, now_ns), now_ns);
    if (tattrs)
        frag(b, tattrs);
    if (req->bill_lane >= 0)
        frag(b, &t->answer_attrs[req->bill_lane]);
    usage_attrs(e, b, req);
    A_WORD(e, b, "http.request.method", "POST");
    A_INT(e, b, "http.response.status_code", (uint64_t)(req->responded ? req->status : 499));
    A_WORD(e, b, "busbar.request_id", req->id);
    A_WORD(e, b, "busbar.ingress_protocol", bb_proto_name(req->ingress));
    A_WORD(e, b, "busbar.outcome", outcome);
    A_INT(e, b, "busbar.attempts", o->total);
    if (req->auth.has_key)
        A_STR(e, b, "busbar.key_id", req->auth.key.lim.id);
    if (req->cost_micros)
        A_USD(e, b, "busbar.cost_usd", req->cost_micros);
    e->tail(b, mark, strcmp(outcome, "ok") ? outcome : NULL);
    push(t, b);

    /* each attempt: CLIENT child span */
    for (size_t i = 0; i < o->n; i++) {
        const struct bb_obs_attempt *at = &o->a[i];
        mark =
            e->head(b, o->trace_id, at->span_id, o->span_id, &t->lane_name[at->lane], KIND_CLIENT,
                    wall_ns(at->t_start_us, now_us, now_ns), wall_ns(at->t_end_us, now_us, now_ns));
        frag(b, &t->lane_attrs[at->lane]);
        if (at->committed && at->lane == req->bill_lane) {
            frag(b, &t->lane_model[at->lane]);
            usage_attrs(e, b, req);
        }
        if (at->status)
            A_INT(e, b, "http.response.status_code", (uint64_t)at->status);
        A_WORD(e, b, "busbar.attempt.result", bb_obs_result_name(at->result));
        const char *err = NULL;
        if (at->fclass >= 0 && at->result != BB_OBS_OK) {
            err = bb_fclass_name((enum bb_fclass)at->fclass);
            A_WORD(e, b, "error.type", err);
        } else if (at->result == BB_OBS_CANCELLED) {
            err = "cancelled";
        }
        e->tail(b, mark, err);
        push(t, b);
    }
}
