/*
 * admit: the entry of the LLM endpoints. One validating scan of the client's body finds the
 * model, the stream flag, the output cap and what session affinity hashes; the model resolves
 * to a pool or a lane; governance admits the request (worker/meter.c); then the attempt loop
 * starts (worker/attempt.c). Worker process, single-threaded.
 */
#include "worker/proxy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/jscan.h"
#include "common/log.h"
#include "worker/attempt.h"
#include "worker/meter.h"
#include "worker/policy.h"
#include "worker/worker.h"

#define JSON_DEPTH_MAX 128

/* bb_meter_admit_async's answer: -1 = refused, answered and finished already. Then the
 * pool's routing policy, once, which starts the attempt loop (worker/policy.h). */
static void admitted(struct bb_request *req, int rc)
{
    if (rc == 0)
        bb_policy_route(req);
}

/* Body members bb_proxy_handle reads with one scan. F_SYSTEM..F_CONTENTS are in the order
 * affinity_hash tries them. */
enum {
    F_MODEL,
    F_STREAM,
    F_SYSTEM,
    F_INSTRUCTIONS,
    F_SYSTEM_INSTRUCTION,
    F_MESSAGES,
    F_CONTENTS,
    F_MAX_TOKENS,            /* OpenAI (legacy), Anthropic, Cohere */
    F_MAX_COMPLETION_TOKENS, /* OpenAI */
    F_MAX_OUTPUT_TOKENS,     /* Responses */
    F_GENERATION_CONFIG,     /* Gemini: .maxOutputTokens, .candidateCount */
    F_INFERENCE_CONFIG,      /* Bedrock: .maxTokens */
    F_N,                     /* OpenAI: choices */
    F_STREAM_OPTIONS,        /* OpenAI: .include_usage */
    F_COUNT
};

/* A non-negative JSON number, rounded up and saturating (a huge cap must reserve a huge worst
 * case, never fall back to the default); 0 when it is negative or not a number. */
static uint64_t jnum(const char *p, size_t n)
{
    char buf[64];
    if (n == 0 || n >= sizeof buf)
        return n ? UINT64_MAX / 4 : 0; /* 64+ characters: only a huge number is that long */
    memcpy(buf, p, n);
    buf[n] = '\0';
    double v = strtod(buf, NULL);
    if (!(v > 0))
        return 0;
    if (v >= 1e15)
        return UINT64_MAX / 4;
    uint64_t u = (uint64_t)v;
    return (double)u < v ? u + 1 : u;
}

/* Member `key` of the object value f (a number), 0 when absent. */
static uint64_t sub_num(const char *body, const struct bb_jscan_field *f, const char *key)
{
    if (f->type != BB_JOBJECT)
        return 0;
    struct bb_jscan_field s = {.key = key};
    struct bb_err err;
    if (bb_jscan_object(body + f->off, f->len, &s, 1, JSON_DEPTH_MAX, &err) < 0 ||
        s.type != BB_JNUMBER)
        return 0;
    return jnum(body + f->off + s.off, s.len);
}

/* The most output tokens the client allows (all choices together); 0 = not set. */
static uint64_t max_output(const char *body, const struct bb_jscan_field *f)
{
    static const int direct[] = {F_MAX_TOKENS, F_MAX_COMPLETION_TOKENS, F_MAX_OUTPUT_TOKENS};
    uint64_t m = 0;
    for (size_t i = 0; i < sizeof direct / sizeof direct[0]; i++)
        if (f[direct[i]].type == BB_JNUMBER) {
            uint64_t v = jnum(body + f[direct[i]].off, f[direct[i]].len);
            m = v > m ? v : m;
        }
    uint64_t g = sub_num(body, &f[F_GENERATION_CONFIG], "maxOutputTokens");
    uint64_t b = sub_num(body, &f[F_INFERENCE_CONFIG], "maxTokens");
    m = g > m ? g : m;
    m = b > m ? b : m;
    uint64_t n = f[F_N].type == BB_JNUMBER ? jnum(body + f[F_N].off, f[F_N].len) : 0;
    uint64_t c = sub_num(body, &f[F_GENERATION_CONFIG], "candidateCount");
    n = c > n ? c : n;
    if (m && n > 1)
        m = n > UINT32_MAX || m > UINT64_MAX / n ? UINT64_MAX / 2 : m * n;
    return m;
}

static uint64_t fnv1a64(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return h ? h : 1;
}

/* Session affinity (SPEC §5.3): the affinity header, else the system prompt (the system /
 * instructions value, else the start of the conversation, which holds it for OpenAI-style
 * bodies). 0 = no session. */
static uint64_t affinity_hash(struct bb_request *req, const struct bb_jscan_field *f)
{
    const struct bb_pool *pl = &req->w->conf->pools[req->pool];
    const struct bb_http_header *h = bb_http_find(&req->head, pl->affinity_header);
    if (h && h->value_len)
        return fnv1a64(h->value, h->value_len);
    for (int i = F_SYSTEM; i <= F_CONTENTS; i++)
        if (f[i].type != BB_JNONE)
            return fnv1a64(req->body + f[i].off, f[i].len < 256 ? f[i].len : 256);
    return 0;
}

void bb_proxy_handle(struct bb_request *req)
{
    struct bb_worker *w = req->w;
    const struct bb_conf *conf = w->conf;
    struct bb_jscan_field f[F_COUNT] = {
        [F_MODEL] = {.key = "model"},
        [F_STREAM] = {.key = "stream"},
        [F_SYSTEM] = {.key = "system"},
        [F_INSTRUCTIONS] = {.key = "instructions"},
        [F_SYSTEM_INSTRUCTION] = {.key = "systemInstruction"},
        [F_MESSAGES] = {.key = "messages"},
        [F_CONTENTS] = {.key = "contents"},
        [F_MAX_TOKENS] = {.key = "max_tokens"},
        [F_MAX_COMPLETION_TOKENS] = {.key = "max_completion_tokens"},
        [F_MAX_OUTPUT_TOKENS] = {.key = "max_output_tokens"},
        [F_GENERATION_CONFIG] = {.key = "generationConfig"},
        [F_INFERENCE_CONFIG] = {.key = "inferenceConfig"},
        [F_N] = {.key = "n"},
        [F_STREAM_OPTIONS] = {.key = "stream_options"},
    };
    struct bb_err err;
    if (bb_jscan_object(req->body ? req->body : "", req->body_len, f, F_COUNT, JSON_DEPTH_MAX,
                        &err) < 0) {
        char msg[600];
        snprintf(msg, sizeof msg, "request body is not a valid JSON object: %s", err.msg);
        bb_request_fail(req, BB_ERR_INVALID_JSON, msg);
        return;
    }
    struct bb_route_state *rs = bb_arena_calloc(&req->arena, sizeof *rs);
    if (!rs) {
        bb_request_fail(req, BB_ERR_INTERNAL, "out of memory");
        return;
    }
    req->route = rs;
    if (f[F_MODEL].type == BB_JSTRING) {
        const struct bb_jscan_field *fm = &f[F_MODEL];
        char *bm = bb_arena_alloc(&req->arena, fm->len + 1);
        long bl = bm ? bb_jscan_unquote(req->body + fm->off, fm->len, bm, fm->len + 1) : -1;
        if (bl > 0) {
            rs->body_model = true;
            rs->model_off = fm->off;
            rs->model_len = fm->len;
            rs->model = bm;
        }
    } else if (f[F_MODEL].type != BB_JNONE && !req->model_from_path) {
        bb_request_fail(req, BB_ERR_MISSING_MODEL, "'model' must be a string");
        return;
    }
    if (req->model_from_path) /* the URL wins (SPEC §3.1) */
        rs->model = req->model_from_path;
    if (!rs->model) {
        bb_request_fail(req, BB_ERR_MISSING_MODEL,
                        f[F_MODEL].type == BB_JNONE ? "the request has no 'model'"
                                                    : "'model' is empty or invalid");
        return;
    }
    req->stream = req->path_stream >= 0 ? req->path_stream == 1
                                        : f[F_STREAM].type == BB_JBOOL && f[F_STREAM].truthy;
    if (f[F_STREAM_OPTIONS].type != BB_JNONE) {
        struct bb_jscan_field iu = {.key = "include_usage"};
        const struct bb_jscan_field *so = &f[F_STREAM_OPTIONS];
        rs->stream_options = so->type == BB_JOBJECT &&
                                     bb_jscan_object(req->body + so->off, so->len, &iu, 1,
                                                     JSON_DEPTH_MAX, &err) == 0 &&
                                     iu.type == BB_JBOOL && iu.truthy
                                 ? 1
                                 : -1;
    }
    rs->ictx.request_id = req->id;
    rs->ictx.model = rs->model;
    rs->ictx.created = (int64_t)time(NULL);
    rs->ictx.gemini_sse = req->gemini_sse;
    rs->cont.open_text = -1;

    size_t ml = strlen(rs->model);
    req->pool = bb_conf_find_pool(conf, rs->model, ml);
    if (req->pool >= 0 && conf->pools[req->pool].affinity)
        rs->affinity = affinity_hash(req, f);
    size_t n_tried = 1;
    if (req->pool >= 0) {
        n_tried = conf->pools[req->pool].n_members;
        req->t_deadline_ms =
            bb_now_ms() + (uint64_t)conf->pools[req->pool].failover_timeout_secs * 1000u;
    } else {
        req->lane = bb_conf_find_lane(conf, rs->model, ml);
        if (req->lane < 0) {
            char msg[300];
            snprintf(msg, sizeof msg, "The model '%.200s' does not exist", rs->model);
            bb_request_fail(req, BB_ERR_MODEL_NOT_FOUND, msg);
            return;
        }
        req->t_deadline_ms =
            bb_now_ms() + (uint64_t)conf->limits.upstream_request_timeout_secs * 1000u;
    }
    rs->tried = bb_arena_calloc(&req->arena, n_tried * sizeof(bool));
    if (!rs->tried) {
        bb_request_fail(req, BB_ERR_INTERNAL, "out of memory");
        return;
    }
    rs->cont.enabled = req->stream && req->pool >= 0 && conf->pools[req->pool].on_cut_continue;
    rs->max_out = max_output(req->body ? req->body : "", f);
    /* in cluster mode Redis decides: admitted() may run later (worker/cluster.c) */
    bb_meter_admit_async(req, rs->max_out, admitted);
}
