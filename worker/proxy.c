/*
 * proxy: the LLM request path for all six ingress protocols. Reads the request's model,
 * resolves pool or lane, and walks the attempt loop: pick a lane (router), write the upstream
 * request in the lane's protocol, read the answer, and either relay it or move on to the next
 * lane while nothing has reached the client. Worker process, single-threaded.
 *
 * Same protocol in and out (OpenAI, Responses, Anthropic, Cohere with the model in the body):
 * the body goes upstream byte for byte except the `model` value, and answers come back
 * verbatim; stream frames are still decoded, to find the commit point and in-band errors.
 * Gemini and Bedrock carry the model in the path, so their same-protocol requests are
 * re-written through the IR (Bedrock's must be re-signed anyway); answers stay verbatim.
 * Cross protocol: reader(ingress) → IR → writer(egress); answers reader(egress) → IR →
 * writer(ingress); streams framer → decoder(egress) → IR events → encoder(ingress).
 *
 * Commit point (SPEC §5.4): a non-stream answer commits when it is complete (translated) or
 * when its 2xx head arrives (verbatim); a stream commits with its first meaningful event
 * (block start/delta, message delta/stop), so a stream that fails or errors in-band before
 * one still fails over invisibly. After commit a failure ends the client's stream with the
 * dialect's error event, never with its clean terminator.
 */
#include "worker/proxy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "common/jscan.h"
#include "common/log.h"
#include "common/sse.h"
#include "worker/breaker.h"
#include "worker/classify.h"
#include "worker/eventstream.h"
#include "worker/http_server.h"
#include "worker/meter.h"
#include "worker/proto.h"
#include "worker/router.h"
#include "worker/upstream.h"
#include "worker/worker.h"

#define ERRBODY_MAX (64u << 10)   /* upstream error bodies kept for relay */
#define BODY_MAX (64u << 20)      /* a non-stream answer being translated */
#define FRAME_MAX (4u << 20)      /* one stream frame */
#define OUT_PAUSE_AT (1u << 20)   /* client output backlog that pauses the upstream */
#define JSON_DEPTH_MAX 128

/* One upstream attempt of a request. Lives in the request's arena; its heap parts (decoders,
 * buffers, connection) are released by attempt_release. */
struct bb_attempt {
    struct bb_request *req;
    struct bb_upconn *up;
    int lane, member;
    bool slot_held;
    bool probe;                 /* holds its breaker's half-open probe */
    bool breaker_done;          /* the outcome reached the breaker */
    bool no_breaker;            /* a failure that says nothing about the lane (context length) */
    int status;
    enum bb_proto egress;
    const struct bb_proto_ops *eops, *iops;
    bool verbatim;              /* answers relayed as they are (same protocol) */
    bool strip_usage_chunk;     /* busbar asked an OpenAI stream for usage the client did not */
    bool committed, done_seen, stop_seen, meaningful, inband_error;
    char inband_msg[256];
    const char *frame_fail;     /* set inside the framer's callback, acted on once it returns */
    struct bb_sse sse;
    bool sse_init;
    struct bb_eventstream es;
    bool es_init;
    void *dec, *enc;            /* egress decoder / ingress encoder state (arena) */
    bool enc_finished;
    struct evbuffer *pending;   /* client stream bytes not yet flushed (held before commit) */
    struct evbuffer *body;      /* error body (>= 400) or a non-stream body to translate */
    char content_type[128];
    char retry_after[64];
    uint64_t t_sent_us;
    struct event *ttft;         /* commit-point deadline: head + first meaningful event */
    struct event *hold;         /* stream.prerelease_ms: commit when it fires */
};

/* What the request keeps across attempts. */
struct bb_route_state {
    const char *model;          /* as the client sent it (decoded) */
    bool body_model;            /* the body has a string `model` at model_off/model_len */
    int stream_options;         /* OpenAI body: 0 absent, 1 with include_usage true, -1 other */
    size_t model_off, model_len;
    bool *tried;                /* per pool member */
    bool probe_pending;         /* the member just picked holds the half-open probe */
    struct event *deadline;     /* limits.upstream_request_timeout_secs for the whole request */
    struct event *queue;        /* on_exhausted queue: retry timer */
    uint64_t queue_until_ms;
    uint64_t affinity;          /* session hash (0 = none) */
    int pool_hops;              /* fallback_pool switches, bounded by the pool count */
    struct bb_ir_request *ir;   /* the client's request in IR, read on first need */
    struct bb_ingress_ctx ictx;
    char dropped[512];          /* x-busbar-dropped-fields of the current attempt */
    /* the last failure, for the final answer when every attempt failed */
    int last_status;            /* > 0: an HTTP error answer (in the client's dialect) below */
    struct evbuffer *last_body;
    char last_ctype[128], last_retry_after[64];
    bool last_timeout;
    char why[512];              /* "lane a: reset; lane b: HTTP 503" */
};

static void next_attempt(struct bb_request *req);
static int commit_stream(struct bb_attempt *a);

static struct bb_route_state *route_of(struct bb_request *req)
{
    return (struct bb_route_state *)req->route;
}

static void why_add(struct bb_route_state *rs, const char *lane, const char *what)
{
    size_t n = strlen(rs->why);
    if (n < sizeof rs->why - 1)
        snprintf(rs->why + n, sizeof rs->why - n, "%slane %s: %s", n ? "; " : "", lane, what);
}

static void attempt_release(struct bb_attempt *a)
{
    struct bb_request *req = a->req;
    if (a->up) {
        bb_upstream_cancel(a->up);
        a->up = NULL;
    }
    if (a->ttft) {
        event_free(a->ttft);
        a->ttft = NULL;
    }
    if (a->hold) {
        event_free(a->hold);
        a->hold = NULL;
    }
    if (a->slot_held) {
        bb_router_give(req->w, a->lane, req->pool, a->member);
        a->slot_held = false;
    }
    if (a->probe && !a->breaker_done) { /* no outcome (the client left): next one probes */
        struct bb_shm_cell *c = req->pool >= 0 ? req->w->pools[req->pool].member_cells[a->member]
                                               : req->w->lane_cells[a->lane];
        if (c)
            bb_breaker_release_probe(c);
        a->breaker_done = true;
    }
    if (a->enc && !a->enc_finished && a->iops->enc_finish) {
        /* encoders may hold buffers until their stream ends (Gemini tool arguments) */
        struct evbuffer *sink = evbuffer_new();
        if (sink) {
            a->iops->enc_finish(a->enc, sink);
            evbuffer_free(sink);
        }
        a->enc_finished = true;
    }
    if (a->sse_init) {
        bb_sse_free(&a->sse);
        a->sse_init = false;
    }
    if (a->es_init) {
        bb_eventstream_free(&a->es);
        a->es_init = false;
    }
    if (a->pending) {
        evbuffer_free(a->pending);
        a->pending = NULL;
    }
    if (a->body) {
        evbuffer_free(a->body);
        a->body = NULL;
    }
    if (req->attempt == a)
        req->attempt = NULL;
}

static void count(struct bb_request *req, struct bb_attempt *a, bool ok)
{
    struct bb_worker *w = req->w;
    struct bb_shm_cell *lc = w->lane_cells[a->lane];
    struct bb_shm_cell *mc = req->pool >= 0 ? w->pools[req->pool].member_cells[a->member] : NULL;
    if (lc)
        atomic_fetch_add_explicit(ok ? &lc->ok : &lc->err, 1, memory_order_relaxed);
    if (mc)
        atomic_fetch_add_explicit(ok ? &mc->ok : &mc->err, 1, memory_order_relaxed);
    bb_obs_attempt_end(req, ok, a->status);
}

static const struct bb_breaker_conf default_breaker = {false, 30, 0.5, 5, 3, 15, 120, 1800};

static const struct bb_breaker_conf *breaker_conf(const struct bb_request *req)
{
    return req->pool >= 0 ? &req->w->conf->pools[req->pool].breaker : &default_breaker;
}

/* The breaker cell of the attempt's member: pool × lane, or the lane for a direct request. */
static struct bb_shm_cell *breaker_cell(struct bb_attempt *a)
{
    struct bb_worker *w = a->req->w;
    return a->req->pool >= 0 ? w->pools[a->req->pool].member_cells[a->member]
                             : w->lane_cells[a->lane];
}

static void breaker_ok(struct bb_attempt *a)
{
    struct bb_shm_cell *c = breaker_cell(a);
    if (c && !a->breaker_done)
        bb_breaker_success(c, breaker_conf(a->req), bb_now_ms(), a->probe);
    a->breaker_done = true;
}

static void breaker_fail(struct bb_attempt *a)
{
    struct bb_shm_cell *c = breaker_cell(a);
    if (c && !a->breaker_done && !a->no_breaker) {
        uint64_t ra = bb_retry_after_ms(a->retry_after, time(NULL));
        double jitter = (double)(random() % 2001) / 1000.0 - 1.0;
        bb_breaker_failure(c, breaker_conf(a->req), bb_now_ms(), a->probe, ra, jitter);
        if (atomic_load(&c->breaker_state) == BB_BREAKER_OPEN)
            bb_info("breaker: lane %s open for %llu ms",
                    a->req->w->conf->lanes[a->lane].name,
                    (unsigned long long)bb_breaker_wait_ms(c, bb_now_ms()));
    }
    if (c && a->probe && !a->breaker_done && a->no_breaker)
        bb_breaker_release_probe(c);
    a->breaker_done = true;
}

/* Auth and billing failures take the whole lane down for hard_down_cooldown_secs. */
static void hard_down(struct bb_attempt *a, const char *why)
{
    struct bb_shm_cell *lc = a->req->w->lane_cells[a->lane];
    uint64_t secs = breaker_conf(a->req)->hard_down_cooldown_secs;
    if (lc)
        bb_breaker_hard_down(lc, bb_now_ms(), secs * 1000u);
    bb_warn("lane %s is hard down for %llu s: %s", a->req->w->conf->lanes[a->lane].name,
            (unsigned long long)secs, why);
    struct bb_shm_cell *c = breaker_cell(a);
    if (c && a->probe)
        bb_breaker_release_probe(c);
    a->breaker_done = true;
}

void bb_proxy_release(struct bb_request *req)
{
    if (req->attempt)
        attempt_release(req->attempt);
    struct bb_route_state *rs = route_of(req);
    if (rs && rs->last_body) {
        evbuffer_free(rs->last_body);
        rs->last_body = NULL;
    }
    if (rs && rs->deadline) {
        event_free(rs->deadline);
        rs->deadline = NULL;
    }
    if (rs && rs->queue) {
        event_free(rs->queue);
        rs->queue = NULL;
    }
}

/* ---- client response ---- */

static size_t extra_headers(struct bb_request *req, struct bb_attempt *a, char *buf, size_t cap)
{
    const struct bb_conf *conf = req->w->conf;
    struct bb_route_state *rs = route_of(req);
    int n = snprintf(buf, cap, "x-busbar-lane: %s\r\nx-busbar-attempts: %u\r\n",
                     conf->lanes[a->lane].name, req->attempts);
    if (a->retry_after[0])
        n += snprintf(buf + n, cap - (size_t)n, "Retry-After: %s\r\n", a->retry_after);
    if (rs->dropped[0])
        n += snprintf(buf + n, cap - (size_t)n, "x-busbar-dropped-fields: %s\r\n", rs->dropped);
    if (conf->overhead_header) {
        uint64_t total = bb_now_us() - req->t_start_us;
        uint64_t up = req->t_upstream_us + (bb_now_us() - a->t_sent_us);
        n += snprintf(buf + n, cap - (size_t)n, "x-busbar-overhead-us: %llu\r\n",
                      (unsigned long long)(total > up ? total - up : 0));
    }
    return (size_t)n < cap ? (size_t)n : cap - 1;
}

/* Send the client's response head for attempt a (the commit point). */
static int commit(struct bb_attempt *a, const char *ctype, enum bb_body_mode mode, int64_t len)
{
    struct bb_request *req = a->req;
    char hdrs[1024];
    size_t hl = extra_headers(req, a, hdrs, sizeof hdrs);
    a->committed = true;
    req->bill_lane = a->lane; /* this answer reaches the client: it is billed */
    bb_obs_attempt_commit(req);
    if (a->ttft)
        evtimer_del(a->ttft);
    if (a->hold)
        evtimer_del(a->hold);
    bb_router_observe_latency(req->w, req->pool, a->member, bb_now_us() - a->t_sent_us);
    req->t_upstream_us += bb_now_us() - a->t_sent_us;
    a->t_sent_us = bb_now_us();
    return bb_http_respond_head(req, a->status, ctype, hdrs, hl, mode, len);
}

/* Write held stream bytes to the client once committed. */
static void flush_pending(struct bb_attempt *a)
{
    size_t n = a->pending ? evbuffer_get_length(a->pending) : 0;
    if (!a->committed || n == 0)
        return;
    bb_http_respond_body(a->req, evbuffer_pullup(a->pending, (ev_ssize_t)n), n);
    evbuffer_drain(a->pending, n);
}

static void finish_ok(struct bb_attempt *a)
{
    struct bb_request *req = a->req;
    count(req, a, true);
    breaker_ok(a);
    bb_http_respond_end(req);
    bb_request_finish(req);
}

/* An upstream error answer as a body in the client's dialect (verbatim when same protocol). */
static struct evbuffer *dialect_error(struct bb_attempt *a, char *ctype, size_t ctype_cap)
{
    struct bb_request *req = a->req;
    bool auth = a->status == 401 || a->status == 403;
    if ((a->egress == req->ingress && !auth) || !a->body) {
        struct evbuffer *b = a->body;
        a->body = NULL;
        return b;
    }
    struct bb_proto_error pe;
    memset(&pe, 0, sizeof pe);
    size_t len = evbuffer_get_length(a->body);
    const char *raw = (const char *)evbuffer_pullup(a->body, (ev_ssize_t)len);
    if (!a->eops->read_error || a->eops->read_error(raw, len, &pe) != 0 || !pe.message[0])
        snprintf(pe.message, sizeof pe.message, "upstream answered HTTP %d", a->status);
    if (auth) { /* never leak a provider's auth details (SPEC §9) */
        snprintf(pe.message, sizeof pe.message,
                 "the upstream provider rejected busbar's credentials for lane %s",
                 req->w->conf->lanes[a->lane].name);
        pe.code[0] = '\0';
    }
    char out[1024];
    size_t n = bb_errors_render_status(req->ingress, a->status, pe.code, pe.message, out,
                                       sizeof out);
    struct evbuffer *b = evbuffer_new();
    if (b)
        evbuffer_add(b, out, n);
    snprintf(ctype, ctype_cap, "application/json");
    return b;
}

/* Relay an upstream error answer (client error, or the last failure) in the client's dialect. */
static void respond_error_body(struct bb_request *req, int status, const char *ctype,
                               const char *retry_after, struct evbuffer *body,
                               const char *lane_hdrs)
{
    char hdrs[1024];
    size_t hl = bb_errors_headers(req->ingress, status, hdrs, sizeof hdrs);
    int n = snprintf(hdrs + hl, sizeof hdrs - hl, "%s", lane_hdrs ? lane_hdrs : "");
    if (retry_after && retry_after[0])
        snprintf(hdrs + hl + (size_t)n, sizeof hdrs - hl - (size_t)n, "Retry-After: %s\r\n",
                 retry_after);
    size_t len = body ? evbuffer_get_length(body) : 0;
    bb_http_respond_full(req, status, ctype && ctype[0] ? ctype : "application/json", hdrs,
                         len ? (const char *)evbuffer_pullup(body, (ev_ssize_t)len) : "", len);
}

/* Every attempt failed (or none was possible): answer with the last upstream error, or a
 * gateway error naming what happened on each lane. */
static void exhausted(struct bb_request *req, const char *fallback_msg)
{
    struct bb_route_state *rs = route_of(req);
    char hdrs[256];
    snprintf(hdrs, sizeof hdrs, "x-busbar-attempts: %u\r\n", req->attempts);
    if (rs->last_status > 0 && rs->last_body) {
        respond_error_body(req, rs->last_status, rs->last_ctype, rs->last_retry_after,
                           rs->last_body, hdrs);
        bb_request_finish(req);
        return;
    }
    char msg[700];
    if (rs->why[0])
        snprintf(msg, sizeof msg, "all upstream attempts failed: %s", rs->why);
    else
        snprintf(msg, sizeof msg, "%s", fallback_msg);
    bb_request_fail_with(req, rs->last_timeout ? BB_ERR_UPSTREAM_TIMEOUT : BB_ERR_UPSTREAM, msg,
                         hdrs);
}

/* The attempt failed before anything reached the client: remember why, try the next lane. */
static void fail_over(struct bb_attempt *a, const char *what, bool timeout)
{
    struct bb_request *req = a->req;
    struct bb_route_state *rs = route_of(req);
    const char *lane = req->w->conf->lanes[a->lane].name;
    count(req, a, false);
    breaker_fail(a);
    why_add(rs, lane, what);
    rs->last_timeout = timeout;
    if (a->status >= 400 && a->body) { /* keep the answer in case it is the last one */
        char ctype[128];
        memcpy(ctype, a->content_type, sizeof ctype);
        struct evbuffer *b = dialect_error(a, ctype, sizeof ctype);
        if (rs->last_body)
            evbuffer_free(rs->last_body);
        rs->last_body = b;
        rs->last_status = b ? a->status : 0;
        memcpy(rs->last_ctype, ctype, sizeof rs->last_ctype);
        memcpy(rs->last_retry_after, a->retry_after, sizeof rs->last_retry_after);
    } else {
        rs->last_status = 0;
    }
    if (req->pool >= 0) {
        struct bb_shm_cell *mc = req->w->pools[req->pool].member_cells[a->member];
        if (mc)
            atomic_fetch_add_explicit(&mc->failovers, 1, memory_order_relaxed);
    }
    bb_info("request %s: attempt %u on lane %s failed: %s", req->id, req->attempts, lane, what);
    req->t_upstream_us += bb_now_us() - a->t_sent_us;
    attempt_release(a);
    next_attempt(req);
}

/* After commit: end the client's answer visibly broken (SPEC §5.4), never as complete. */
static void fail_committed(struct bb_attempt *a, const char *what)
{
    struct bb_request *req = a->req;
    count(req, a, false);
    breaker_fail(a);
    bb_warn("request %s: lane %s failed after the response started: %s", req->id,
            req->w->conf->lanes[a->lane].name, what);
    req->close_after = true;
    if (a->enc && a->pending) {
        char msg[300];
        snprintf(msg, sizeof msg, "upstream stream failed: %s", what);
        struct bb_ir_event ev;
        memset(&ev, 0, sizeof ev);
        ev.type = BB_IR_EV_ERROR;
        ev.text.p = msg;
        ev.text.len = strlen(msg);
        ev.error_type.p = (char *)bb_errors_type(req->ingress, 502);
        ev.error_type.len = strlen(ev.error_type.p);
        ev.error_status = 502;
        struct bb_arena scratch;
        bb_arena_init(&scratch, 1u << 20);
        a->iops->enc_event(a->enc, &scratch, &ev, a->pending);
        bb_arena_free(&scratch);
        flush_pending(a);
        bb_http_respond_end(req); /* the error event is the end: no terminator */
    }
    /* A non-stream body cut short stays short: the connection closes before its length. */
    bb_request_finish(req);
}

/* ---- upstream callbacks ---- */

static struct bb_attempt *att_check(void *arg)
{
    struct bb_attempt *a = arg;
    if (!a->req || a->req->magic != BB_MAGIC_REQ) {
        bb_crit("proxy: callback for a dead request");
        abort();
    }
    return a;
}

static void copy_header(const struct bb_http_head *h, const char *name, char *out, size_t cap)
{
    const struct bb_http_header *hd = bb_http_find(h, name);
    out[0] = '\0';
    if (hd && hd->value_len < cap) {
        memcpy(out, hd->value, hd->value_len);
        out[hd->value_len] = '\0';
    }
}

static int up_head(void *arg, const struct bb_http_head *h)
{
    struct bb_attempt *a = att_check(arg);
    struct bb_request *req = a->req;
    a->status = h->status;
    bb_router_observe_ratelimit(req->w, a->lane, h, bb_now_ms()); /* route: usage */
    copy_header(h, "content-type", a->content_type, sizeof a->content_type);
    copy_header(h, "retry-after", a->retry_after, sizeof a->retry_after);
    if (h->status >= 400) {
        a->body = evbuffer_new();
        return a->body ? 0 : -1;
    }
    if (req->stream) {
        a->pending = evbuffer_new();
        if (!a->pending)
            return -1;
        if (a->eops->framing == BB_FRAMING_EVENTSTREAM) {
            bb_eventstream_init(&a->es, FRAME_MAX);
            a->es_init = true;
        } else {
            bb_sse_init(&a->sse, FRAME_MAX);
            a->sse_init = true;
        }
        if (a->eops->dec_frame) {
            a->dec = bb_arena_calloc(&req->arena, a->eops->dec_size ? a->eops->dec_size : 1);
            if (!a->dec)
                return -1;
            a->eops->dec_init(a->dec);
        }
        if (a->iops->enc_event) {
            a->enc = bb_arena_calloc(&req->arena, a->iops->enc_size ? a->iops->enc_size : 1);
            if (!a->enc)
                return -1;
            a->iops->enc_init(a->enc, &route_of(req)->ictx);
        }
        if (req->pool >= 0 && !req->w->conf->pools[req->pool].hold_first_event)
            return commit_stream(a); /* opted out of the commit-point hold */
        return 0; /* commit with the first meaningful event */
    }
    if (a->verbatim) {
        if (req->metered && !(a->body = evbuffer_new())) /* a copy, read for its usage */
            return -1;
        return commit(a, a->content_type[0] ? a->content_type : NULL,
                      h->content_length >= 0 ? BB_BODY_LENGTH : BB_BODY_CHUNKED,
                      h->content_length);
    }
    a->body = evbuffer_new(); /* translated: the whole answer first */
    return a->body ? 0 : -1;
}

static void on_client_drained(struct bb_request *req)
{
    if (req->attempt && req->attempt->up)
        bb_upstream_pause(req->attempt->up, false);
}

static void backpressure(struct bb_attempt *a)
{
    if (a->up && bb_http_output_pending(a->req) > OUT_PAUSE_AT) {
        bb_upstream_pause(a->up, true);
        bb_http_on_drained(a->req, on_client_drained);
    }
}

static int commit_stream(struct bb_attempt *a)
{
    const char *ctype = a->verbatim ? a->content_type
                                    : a->iops->stream_content_type(&route_of(a->req)->ictx);
    return commit(a, ctype, BB_BODY_CHUNKED, -1);
}

/* stream.prerelease_ms ran out with the upstream healthy: release what was held. */
static void hold_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct bb_attempt *a = att_check(arg);
    if (!a->committed && commit_stream(a) == 0)
        flush_pending(a);
}

struct frame_ctx {
    struct bb_attempt *a;
    struct bb_arena *scratch;
};

/* One decoded IR event of the upstream stream. */
static int on_ir_event(void *arg, const struct bb_ir_event *ev)
{
    struct frame_ctx *fc = arg;
    struct bb_attempt *a = fc->a;
    struct bb_request *req = a->req;
    switch (ev->type) {
    case BB_IR_EV_ERROR:
        if (!a->committed) { /* before the commit point: fail over invisibly */
            a->inband_error = true;
            snprintf(a->inband_msg, sizeof a->inband_msg, "in-band stream error: %.*s",
                     (int)(ev->text.len < 200 ? ev->text.len : 200),
                     ev->text.p ? ev->text.p : "");
            return 0;
        }
        break;
    case BB_IR_EV_MESSAGE_START:
        bb_meter_usage(req, &ev->usage);
        break;
    case BB_IR_EV_MESSAGE_DELTA:
        a->stop_seen = a->stop_seen || ev->stop != BB_IR_STOP_UNSET;
        a->meaningful = true;
        bb_meter_usage(req, &ev->usage);
        break;
    case BB_IR_EV_MESSAGE_STOP:
        a->done_seen = true;
        a->meaningful = true;
        break;
    case BB_IR_EV_BLOCK_START:
    case BB_IR_EV_BLOCK_DELTA:
        a->meaningful = true;
        break;
    default:
        break;
    }
    if (a->verbatim || !a->enc)
        return 0;
    if (ev->type == BB_IR_EV_BLOCK_START && ev->block_type == BB_IR_TOOL_USE &&
        a->egress != req->ingress) {
        struct bb_ir_event copy = *ev;
        copy.id = bb_ir_id_wrap(fc->scratch, req->ingress, ev->id);
        return a->iops->enc_event(a->enc, fc->scratch, &copy, a->pending) < 0 ? -1 : 0;
    }
    return a->iops->enc_event(a->enc, fc->scratch, ev, a->pending) < 0 ? -1 : 0;
}

/* "[ ]": a JSON array value with nothing in it. */
static bool empty_array(const char *p, size_t n)
{
    for (size_t i = 1; i + 1 < n; i++)
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\n' && p[i] != '\r')
            return false;
    return true;
}

/* OpenAI's final usage chunk ({"choices":[], "usage":{…}}), which busbar asked for itself. */
static bool usage_only_chunk(const struct bb_frame *f)
{
    if (!f->data || !memmem(f->data, f->data_len, "\"usage\"", 7))
        return false;
    struct bb_jscan_field fl[2] = {{.key = "choices"}, {.key = "usage"}};
    struct bb_err err;
    if (bb_jscan_object(f->data, f->data_len, fl, 2, JSON_DEPTH_MAX, &err) < 0)
        return false;
    return fl[0].type == BB_JARRAY && fl[1].type == BB_JOBJECT &&
           empty_array(f->data + fl[0].off, fl[0].len);
}

/* One upstream frame: decode, relay or translate, commit when meaningful. 0 = go on, -1 = stop
 * feeding: a->frame_fail says why, and up_body acts on it once the framer has returned (the
 * failover path may free the framer and the attempt, so it never runs inside the callback). */
static int handle_frame(struct bb_attempt *a, const struct bb_frame *f, const void *raw,
                        size_t raw_len)
{
    if (a->dec) {
        struct bb_arena scratch;
        bb_arena_init(&scratch, FRAME_MAX * 2);
        struct frame_ctx fc = {a, &scratch};
        int rc = a->eops->dec_frame(a->dec, &scratch, f, on_ir_event, &fc);
        bb_arena_free(&scratch);
        if (rc < 0) {
            a->frame_fail = "malformed stream frame";
            return -1;
        }
    } else {
        a->meaningful = true; /* no decoder: every frame counts */
    }
    if (a->inband_error && !a->committed) {
        a->frame_fail = a->inband_msg;
        return -1;
    }
    if (a->verbatim && !(a->strip_usage_chunk && usage_only_chunk(f)))
        evbuffer_add(a->pending, raw, raw_len);
    if (a->meaningful && !a->committed) {
        uint32_t hold = a->req->pool >= 0 ? a->req->w->conf->pools[a->req->pool].prerelease_ms : 0;
        if (hold && !a->hold) { /* widen the failover window (SPEC §5.4) */
            a->hold = evtimer_new(a->req->w->base, hold_cb, a);
            struct timeval tv = {hold / 1000, (hold % 1000) * 1000};
            if (a->hold)
                evtimer_add(a->hold, &tv);
        }
        if (!a->hold && commit_stream(a) < 0)
            return -1;
    }
    flush_pending(a);
    backpressure(a);
    return 0;
}

static int on_sse(void *arg, const struct bb_sse_event *ev)
{
    struct bb_frame f = {ev->event, ev->event_len, ev->data, ev->data_len, false};
    return handle_frame(arg, &f, ev->raw, ev->raw_len) < 0 ? 1 : 0;
}

static int on_es(void *arg, const struct bb_eventstream_msg *m)
{
    struct bb_frame f;
    bb_eventstream_to_frame(m, &f);
    return handle_frame(arg, &f, m->raw, m->raw_len) < 0 ? 1 : 0;
}

static int up_body(void *arg, const char *data, size_t len)
{
    struct bb_attempt *a = att_check(arg);
    if (a->status >= 400) {
        size_t have = evbuffer_get_length(a->body);
        if (have < ERRBODY_MAX)
            evbuffer_add(a->body, data, len < ERRBODY_MAX - have ? len : ERRBODY_MAX - have);
        return 0;
    }
    if (a->req->stream) {
        int rc = a->es_init ? bb_eventstream_feed(&a->es, data, len, on_es, a)
                            : bb_sse_feed(&a->sse, data, len, on_sse, a);
        if (rc > 0 && a->frame_fail) {
            if (a->committed)
                fail_committed(a, a->frame_fail);
            else
                fail_over(a, a->frame_fail, false);
            return -1;
        }
        if (rc > 0)
            return -1;
        if (rc < 0) {  /* oversize or corrupt framing: this upstream is broken */
            if (a->committed)
                fail_committed(a, "malformed stream framing");
            else
                fail_over(a, "malformed stream framing", false);
            return -1;
        }
        return 0;
    }
    if (a->verbatim) {
        bb_http_respond_body(a->req, data, len);
        if (a->body && evbuffer_get_length(a->body) + len <= BODY_MAX)
            evbuffer_add(a->body, data, len);
        backpressure(a);
        return 0;
    }
    if (evbuffer_get_length(a->body) + len > BODY_MAX) {
        fail_over(a, "response too large to translate", false);
        return -1;
    }
    evbuffer_add(a->body, data, len);
    return 0;
}

/* The usage of a same-protocol answer relayed as is (read from the copy up_body kept). */
static void verbatim_usage(struct bb_attempt *a)
{
    size_t len = a->body ? evbuffer_get_length(a->body) : 0;
    if (!len || !a->eops->read_response)
        return;
    struct bb_arena scratch;
    bb_arena_init(&scratch, 2 * len + (64u << 10));
    struct bb_ir_response resp;
    memset(&resp, 0, sizeof resp);
    struct bb_err err;
    if (a->eops->read_response(&scratch, (const char *)evbuffer_pullup(a->body, (ev_ssize_t)len),
                               len, &resp, &err) == 0)
        bb_meter_usage(a->req, &resp.usage);
    else
        bb_debug("request %s: usage unreadable in the answer: %s", a->req->id, err.msg);
    bb_arena_free(&scratch);
}

/* A complete non-stream answer from another protocol: translate it for the client. */
static void translate_response(struct bb_attempt *a)
{
    struct bb_request *req = a->req;
    struct bb_route_state *rs = route_of(req);
    size_t len = evbuffer_get_length(a->body);
    const char *raw = (const char *)evbuffer_pullup(a->body, (ev_ssize_t)len);
    struct bb_ir_response resp;
    memset(&resp, 0, sizeof resp);
    struct bb_err err;
    if (!a->eops->read_response ||
        a->eops->read_response(&req->arena, raw, len, &resp, &err) < 0) {
        fail_over(a, "malformed response body", false);
        return;
    }
    bb_meter_usage(req, &resp.usage);
    if (a->egress != req->ingress)
        bb_ir_response_wrap_ids(&req->arena, &resp, req->ingress);
    struct evbuffer *out = evbuffer_new();
    if (!out || a->iops->write_response(&req->arena, &resp, &rs->ictx, out) < 0) {
        if (out)
            evbuffer_free(out);
        count(req, a, false);
        bb_request_fail(req, BB_ERR_INTERNAL, "could not write the translated response");
        return;
    }
    size_t ol = evbuffer_get_length(out);
    commit(a, "application/json", BB_BODY_LENGTH, (int64_t)ol);
    bb_http_respond_body(req, evbuffer_pullup(out, (ev_ssize_t)ol), ol);
    evbuffer_free(out);
    finish_ok(a);
}

/* Context length exceeded: only members with a larger or unknown context_max may help. */
static void exclude_smaller_context(struct bb_attempt *a)
{
    struct bb_request *req = a->req;
    const struct bb_conf *conf = req->w->conf;
    uint64_t mine = conf->lanes[a->lane].context_max;
    if (req->pool < 0 || mine == 0)
        return;
    const struct bb_pool *pool = &conf->pools[req->pool];
    for (size_t m = 0; m < pool->n_members; m++) {
        uint64_t cm = conf->lanes[pool->members[m].lane].context_max;
        if (cm && cm <= mine)
            route_of(req)->tried[m] = true;
    }
}

/* The exchange with the upstream is over (the connection went back to its pool). */
static void up_end(void *arg)
{
    struct bb_attempt *a = att_check(arg);
    struct bb_request *req = a->req;
    a->up = NULL;
    if (a->status >= 400) {
        size_t bl = a->body ? evbuffer_get_length(a->body) : 0;
        const struct bb_conf *conf = req->w->conf;
        enum bb_fclass fc = bb_classify_http(
            &conf->providers[conf->lanes[a->lane].provider], a->status, bl ? (const char *)evbuffer_pullup(a->body, (ev_ssize_t)bl) : "",
            bl);
        bb_obs_attempt_class(req, fc);
        char what[96];
        snprintf(what, sizeof what, "HTTP %d (%s)", a->status, bb_fclass_name(fc));
        switch (fc) {
        case BB_FC_BILLING:
            hard_down(a, what);
            fail_over(a, what, false);
            return;
        case BB_FC_CONTEXT:
            exclude_smaller_context(a);
            a->no_breaker = true;
            fail_over(a, what, false);
            return;
        case BB_FC_AUTH:
            hard_down(a, what);
            break; /* no failover: the normalised error goes to the client below */
        case BB_FC_CLIENT:
            breaker_ok(a); /* the lane answered properly; the request was wrong */
            break;
        default:
            fail_over(a, what, fc == BB_FC_TIMEOUT);
            return;
        }
        /* client or auth error: relayed in the client's dialect, never retried (SPEC §5.1) */
        count(req, a, fc == BB_FC_CLIENT);
        char lane_hdrs[1024], ctype[128];
        memcpy(ctype, a->content_type, sizeof ctype);
        size_t hl = extra_headers(req, a, lane_hdrs, sizeof lane_hdrs);
        lane_hdrs[hl] = '\0';
        struct evbuffer *b = dialect_error(a, ctype, sizeof ctype);
        a->committed = true;
        respond_error_body(req, a->status, ctype, NULL, b, lane_hdrs);
        if (b)
            evbuffer_free(b);
        bb_request_finish(req);
        return;
    }
    if (!req->stream) {
        if (a->verbatim) {
            verbatim_usage(a);
            finish_ok(a);
        } else {
            translate_response(a);
        }
        return;
    }
    size_t held = a->es_init ? bb_eventstream_pending(&a->es) : bb_sse_pending(&a->sse);
    if (!a->committed && a->meaningful && !held) { /* finished inside the prerelease hold */
        if (commit_stream(a) < 0) {
            bb_request_finish(req);
            return;
        }
    }
    if (!a->committed) {
        fail_over(a, held ? "stream ended inside a frame" : "stream ended before its first event",
                  false);
        return;
    }
    if (held) {
        fail_committed(a, "stream ended inside a frame");
        return;
    }
    if (!a->done_seen && !a->verbatim && a->enc) {
        /* no terminator: finish promptly with what was seen (SPEC §5.4) — cleanly when the
         * answer had its stop reason, else visibly broken */
        if (!a->stop_seen) {
            fail_committed(a, "stream ended without its terminator");
            return;
        }
        struct bb_ir_event ev;
        memset(&ev, 0, sizeof ev);
        ev.type = BB_IR_EV_MESSAGE_STOP;
        struct bb_arena scratch;
        bb_arena_init(&scratch, 1u << 20);
        a->iops->enc_event(a->enc, &scratch, &ev, a->pending);
        bb_arena_free(&scratch);
    }
    if (a->enc && !a->verbatim && a->iops->enc_finish) {
        a->iops->enc_finish(a->enc, a->pending);
        a->enc_finished = true;
    }
    flush_pending(a);
    finish_ok(a);
}

static void up_error(void *arg, enum bb_upfail why, bool bytes_seen)
{
    struct bb_attempt *a = att_check(arg);
    (void)bytes_seen;
    a->up = NULL; /* already freed by the upstream module */
    bool timeout = why == BB_UPFAIL_CONNECT_TIMEOUT || why == BB_UPFAIL_HEAD_TIMEOUT ||
                   why == BB_UPFAIL_IDLE_TIMEOUT;
    bb_obs_attempt_class(a->req, timeout ? BB_FC_TIMEOUT : BB_FC_NETWORK);
    if (a->committed)
        fail_committed(a, bb_upfail_name(why));
    else
        fail_over(a, bb_upfail_name(why), timeout);
}

static const struct bb_upstream_cbs up_cbs = {up_head, up_body, up_end, up_error};

/* ---- request building ---- */

/* Native path and auth of the same-protocol fast path (model in the body). */
static const struct {
    const char *path;
    bool anthropic_auth;
} fast_path[BB_PROTO__COUNT] = {
    [BB_PROTO_OPENAI] = {"/v1/chat/completions", false},
    [BB_PROTO_RESPONSES] = {"/v1/responses", false},
    [BB_PROTO_ANTHROPIC] = {"/v1/messages", true},
    [BB_PROTO_COHERE] = {"/v2/chat", false},
};

static void host_header(const struct bb_provider *p, char *host, size_t cap)
{
    bool v6 = strchr(p->url.host, ':') != NULL;
    int hn = snprintf(host, cap, v6 ? "[%s]" : "%s", p->url.host);
    if (p->url.port != (p->url.tls ? 443 : 80))
        snprintf(host + hn, cap - (size_t)hn, ":%u", p->url.port);
}

static void request_line(struct bb_request *req, struct evbuffer *b, const struct bb_provider *p,
                         const char *path, size_t body_len)
{
    char host[300];
    host_header(p, host, sizeof host);
    evbuffer_add_printf(b,
                        "POST %s%s HTTP/1.1\r\n"
                        "Host: %s\r\n"
                        "Content-Length: %zu\r\n"
                        "Accept: %s\r\n"
                        "User-Agent: busbar/" BB_VERSION "\r\n",
                        p->url.path, path, host, body_len,
                        req->stream ? (p->protocol == BB_PROTO_BEDROCK
                                           ? "application/vnd.amazon.eventstream"
                                           : "text/event-stream")
                                    : "application/json");
    /* allow-listed client headers (SPEC §3.3) */
    const struct bb_http_header *beta = bb_http_find(&req->head, "anthropic-beta");
    if (beta && p->protocol == BB_PROTO_ANTHROPIC)
        evbuffer_add_printf(b, "anthropic-beta: %.*s\r\n", (int)beta->value_len, beta->value);
    bb_obs_traceparent(req, b);
}

/* The provider of a lane as this request calls it: with auth.mode passthrough, the caller's
 * own credential is the provider key. NULL on OOM. */
static const struct bb_provider *provider_for(struct bb_request *req, const struct bb_lane *lane)
{
    const struct bb_provider *p = &req->w->conf->providers[lane->provider];
    if (!req->auth.passthrough)
        return p;
    struct bb_provider *copy = bb_arena_alloc(&req->arena, sizeof *copy);
    if (copy) {
        *copy = *p;
        copy->api_key = (char *)req->auth.passthrough;
    }
    return copy;
}

/* Same protocol, model in the body: the body with only `model` replaced. */
static struct evbuffer *build_fast(struct bb_request *req, int lane_idx)
{
    const struct bb_conf *conf = req->w->conf;
    const struct bb_lane *lane = &conf->lanes[lane_idx];
    const struct bb_provider *p = provider_for(req, lane);
    struct bb_route_state *rs = route_of(req);
    struct evbuffer *b = p ? evbuffer_new() : NULL;
    if (!b)
        return NULL;
    /* the replacement model as a JSON string (upstream names are config text: escape anyway) */
    char model[512];
    size_t ml = 0;
    model[ml++] = '"';
    for (const char *s = lane->upstream_model; *s && ml < sizeof model - 8; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            model[ml++] = '\\';
            model[ml++] = (char)ch;
        } else if (ch < 0x20) {
            ml += (size_t)snprintf(model + ml, sizeof model - ml, "\\u%04x", ch);
        } else {
            model[ml++] = (char)ch;
        }
    }
    model[ml++] = '"';
    /* metered OpenAI streams must end with their usage chunk: ask for it (it is not relayed) */
    static const char want_usage[] = "\"stream_options\":{\"include_usage\":true},";
    size_t brace = 0, inject = 0;
    if (req->metered && req->stream && p->protocol == BB_PROTO_OPENAI && rs->stream_options == 0) {
        while (brace < rs->model_off && req->body[brace] != '{')
            brace++;
        if (brace < rs->model_off)
            inject = sizeof want_usage - 1;
    }
    size_t body_len = req->body_len - rs->model_len + ml + inject;
    request_line(req, b, p, fast_path[p->protocol].path, body_len);
    evbuffer_add(b, "Content-Type: application/json\r\n", 32);
    if (p->api_key && fast_path[p->protocol].anthropic_auth)
        evbuffer_add_printf(b, "x-api-key: %s\r\nanthropic-version: 2023-06-01\r\n", p->api_key);
    else if (fast_path[p->protocol].anthropic_auth)
        evbuffer_add_printf(b, "anthropic-version: 2023-06-01\r\n");
    else if (p->api_key)
        evbuffer_add_printf(b, "Authorization: Bearer %s\r\n", p->api_key);
    evbuffer_add(b, "\r\n", 2);
    if (inject) {
        evbuffer_add(b, req->body, brace + 1);
        evbuffer_add(b, want_usage, inject);
        evbuffer_add(b, req->body + brace + 1, rs->model_off - brace - 1);
    } else {
        evbuffer_add(b, req->body, rs->model_off);
    }
    evbuffer_add(b, model, ml);
    evbuffer_add(b, req->body + rs->model_off + rs->model_len,
                 req->body_len - rs->model_off - rs->model_len);
    return b;
}

/* Collect the reader's unsupported fields and the writer's drops into rs->dropped. */
static void note_dropped(struct bb_route_state *rs)
{
    size_t n = 0;
    rs->dropped[0] = '\0';
    for (size_t i = 0; rs->ir && i < rs->ir->n_unsupported; i++)
        n += (size_t)snprintf(rs->dropped + n, n < sizeof rs->dropped ? sizeof rs->dropped - n : 0,
                              "%s%s", n ? "," : "", rs->ir->unsupported[i]);
    const char *w = bb_proto_dropped();
    if (w && n < sizeof rs->dropped)
        snprintf(rs->dropped + n, sizeof rs->dropped - n, "%s%s", n ? "," : "", w);
}

/* Read the client's body into IR once (cross-protocol attempts). -1 = answered (400). */
static int ensure_ir(struct bb_request *req)
{
    struct bb_route_state *rs = route_of(req);
    if (rs->ir)
        return 0;
    const struct bb_proto_ops *iops = bb_proto_get(req->ingress);
    struct bb_ir_request *ir = bb_arena_calloc(&req->arena, sizeof *ir);
    struct bb_err err;
    if (!ir) {
        bb_request_fail(req, BB_ERR_INTERNAL, "out of memory");
        return -1;
    }
    if (!iops->read_request) {
        bb_request_fail(req, BB_ERR_NOT_IMPLEMENTED, "this ingress protocol is not built yet");
        return -1;
    }
    if (iops->read_request(&req->arena, req->body ? req->body : "", req->body_len,
                           req->model_from_path, ir, &err) < 0) {
        bb_request_fail(req, BB_ERR_BAD_REQUEST, err.msg);
        return -1;
    }
    ir->stream = req->stream;
    bb_ir_ids_unwrap(ir, req->ingress);
    rs->ir = ir;
    rs->ictx.include_usage = ir->include_usage;
    return 0;
}

/* Through the IR (the egress module writes path, headers and body), or, for a same-protocol
 * hop with the model in the URL, the client's body as is with the module's path and auth. */
static struct evbuffer *build_translated(struct bb_request *req, int lane_idx, char *why,
                                         size_t why_cap, bool passthrough)
{
    const struct bb_conf *conf = req->w->conf;
    const struct bb_lane *lane = &conf->lanes[lane_idx];
    const struct bb_provider *p = provider_for(req, lane);
    if (!p) {
        snprintf(why, why_cap, "out of memory");
        return NULL;
    }
    const struct bb_proto_ops *eops = bb_proto_get(p->protocol);
    struct bb_route_state *rs = route_of(req);
    if (!eops->write_request) {
        snprintf(why, why_cap, "egress protocol %s is not built yet", bb_proto_name(p->protocol));
        return NULL;
    }
    struct bb_egress_req er;
    memset(&er, 0, sizeof er);
    er.headers = evbuffer_new();
    er.body = evbuffer_new();
    struct evbuffer *b = evbuffer_new();
    struct bb_egress_ctx ctx = {p, lane, req->stream, (int64_t)time(NULL)};
    struct bb_err err;
    bb_proto_dropped_reset();
    int rc = !er.headers || !er.body || !b ? -1
             : passthrough ? eops->write_passthrough(&req->arena, req->body ? req->body : "",
                                                     req->body_len, &ctx, &er, &err)
                           : eops->write_request(&req->arena, rs->ir, &ctx, &er, &err);
    if (rc < 0) {
        snprintf(why, why_cap, "cannot write the request for this lane: %s",
                 er.headers && er.body && b ? err.msg : "out of memory");
        if (b)
            evbuffer_free(b);
        b = NULL;
    } else {
        note_dropped(rs);
        request_line(req, b, p, er.path, evbuffer_get_length(er.body));
        evbuffer_add_buffer(b, er.headers);
        evbuffer_add(b, "\r\n", 2);
        evbuffer_add_buffer(b, er.body);
    }
    if (er.headers)
        evbuffer_free(er.headers);
    if (er.body)
        evbuffer_free(er.body);
    return b;
}

/* No response head and first meaningful event within the attempt deadline: a slow first
 * token is abandoned and the request moves on while the client has seen nothing. */
static void ttft_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct bb_attempt *a = att_check(arg);
    bb_obs_attempt_class(a->req, BB_FC_TIMEOUT);
    if (!a->committed)
        fail_over(a, "no first token within the attempt deadline", true);
}

/* The whole request ran past limits.upstream_request_timeout_secs. */
static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct bb_request *req = arg;
    struct bb_attempt *a = req->attempt;
    if (!a)
        return;
    bb_obs_attempt_class(req, BB_FC_TIMEOUT);
    if (a->committed) {
        fail_committed(a, "request time limit reached");
        return;
    }
    struct bb_route_state *rs = route_of(req);
    count(req, a, false);
    breaker_fail(a);
    why_add(rs, req->w->conf->lanes[a->lane].name, "request time limit reached");
    rs->last_timeout = true;
    rs->last_status = 0;
    attempt_release(a);
    exhausted(req, "request time limit reached");
}

static bool has_untried(const bool *tried, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!tried[i])
            return true;
    return false;
}

/* on_exhausted queue: look for a usable member again. */
static void queue_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    next_attempt(arg);
}

static void next_attempt(struct bb_request *req)
{
    struct bb_worker *w = req->w;
    const struct bb_conf *conf = w->conf;
    struct bb_route_state *rs = route_of(req);
    uint32_t max_attempts = req->pool >= 0 ? conf->pools[req->pool].max_hops + 1 : 1;
    if (!req->conn) { /* client left while we were failing over */
        bb_request_finish(req);
        return;
    }
    if (req->attempts >= max_attempts) {
        exhausted(req, "no upstream attempt left");
        return;
    }
    if (req->attempts > 0 && bb_now_ms() >= req->t_deadline_ms) {
        why_add(rs, "-", "failover time limit reached");
        exhausted(req, "failover time limit reached");
        return;
    }
    int member = 0, lane;
    if (req->pool >= 0) {
        bool probe = false;
        if (req->attempts > 0) /* failover.exclusions: first choices only */
            for (size_t m = 0; m < conf->pools[req->pool].n_members; m++)
                if (conf->pools[req->pool].members[m].no_failover)
                    rs->tried[m] = true;
        member = bb_router_pick(w, req->pool, rs->tried, &probe, rs->affinity);
        if (member < 0) {
            const struct bb_pool *pl = &conf->pools[req->pool];
            switch (pl->on_exhausted) {
            case BB_EXHAUSTED_FALLBACK_POOL:
                if (pl->fallback_pool >= 0 && rs->pool_hops++ < (int)conf->n_pools) {
                    /* the fallback pool's members, from scratch (cycles refused at load) */
                    req->pool = pl->fallback_pool;
                    rs->tried = bb_arena_calloc(&req->arena,
                                                conf->pools[req->pool].n_members * sizeof(bool));
                    if (!rs->tried) {
                        bb_request_fail(req, BB_ERR_INTERNAL, "out of memory");
                        return;
                    }
                    bb_info("request %s: pool %s exhausted, falling back to pool %s", req->id,
                            pl->name, conf->pools[req->pool].name);
                    next_attempt(req);
                    return;
                }
                break;
            case BB_EXHAUSTED_LEAST_BAD:
                member = bb_router_pick_least_bad(w, req->pool, rs->tried);
                break;
            case BB_EXHAUSTED_QUEUE:
                if (!has_untried(rs->tried, pl->n_members))
                    break; /* nothing left to wait for */
                if (!rs->queue_until_ms)
                    rs->queue_until_ms = bb_now_ms() + pl->queue_max_ms;
                if (bb_now_ms() < rs->queue_until_ms) {
                    if (!rs->queue)
                        rs->queue = evtimer_new(w->base, queue_cb, req);
                    struct timeval tv = {0, 50000}; /* re-check for a usable member */
                    if (rs->queue) {
                        evtimer_add(rs->queue, &tv);
                        return;
                    }
                }
                break;
            default:
                break;
            }
        }
        if (member < 0) {
            if (req->attempts == 0) { /* on_exhausted: reject (SPEC §5.3) */
                uint64_t wait = bb_router_soonest_ms(w, req->pool);
                char hdrs[128], msg[200];
                snprintf(hdrs, sizeof hdrs, "Retry-After: %llu\r\nx-busbar-attempts: 0\r\n",
                         (unsigned long long)((wait + 999) / 1000 ? (wait + 999) / 1000 : 1));
                snprintf(msg, sizeof msg, "no lane of pool '%s' is available now",
                         conf->pools[req->pool].name);
                bb_request_fail_with(req, BB_ERR_NO_CAPACITY, msg, hdrs);
                return;
            }
            exhausted(req, "no usable lane in the pool (all at max_concurrent or tried)");
            return;
        }
        rs->probe_pending = probe;
        rs->tried[member] = true;
        lane = conf->pools[req->pool].members[member].lane;
    } else {
        lane = req->lane;
        struct bb_shm_cell *lc = w->lane_cells[lane];
        if (!rs->tried[0] && lc && !bb_breaker_usable(lc, bb_now_ms())) {
            char hdrs[128];
            snprintf(hdrs, sizeof hdrs, "Retry-After: %llu\r\n",
                     (unsigned long long)((bb_breaker_wait_ms(lc, bb_now_ms()) + 999) / 1000));
            bb_request_fail_with(req, BB_ERR_NO_CAPACITY, "the lane is not available now", hdrs);
            return;
        }
        if (rs->tried[0] || !bb_router_take(w, lane, -1, -1)) {
            exhausted(req, "the lane is at max_concurrent");
            return;
        }
        rs->tried[0] = true;
    }
    struct bb_attempt *a = bb_arena_calloc(&req->arena, sizeof *a);
    if (!a) {
        bb_router_give(w, lane, req->pool, member);
        bb_request_fail(req, BB_ERR_INTERNAL, "out of memory");
        return;
    }
    const struct bb_lane *l = &conf->lanes[lane];
    a->req = req;
    a->lane = lane;
    a->member = req->pool >= 0 ? member : -1;
    a->slot_held = true;
    a->probe = rs->probe_pending;
    rs->probe_pending = false;
    a->egress = conf->providers[l->provider].protocol;
    a->eops = bb_proto_get(a->egress);
    a->iops = bb_proto_get(req->ingress);
    /* A Gemini client streaming without alt=sse wants a JSON array; upstream is always SSE. */
    a->verbatim = a->egress == req->ingress &&
                  !(req->ingress == BB_PROTO_GEMINI && req->stream && !req->gemini_sse);
    /* busbar's own usage request (build_fast, or the OpenAI writer) stays busbar's */
    a->strip_usage_chunk = a->verbatim && a->egress == BB_PROTO_OPENAI && req->stream &&
                           rs->stream_options != 1;
    req->attempt = a;
    req->attempts++;
    bb_meter_attempt(req);

    struct evbuffer *out = NULL;
    char why[600] = "could not open an upstream connection";
    /* a metered OpenAI stream whose stream_options say no usage goes through the writer,
     * which asks for it */
    bool usage_via_ir = req->metered && req->stream && a->egress == BB_PROTO_OPENAI &&
                        rs->stream_options < 0;
    if (a->egress == req->ingress && rs->body_model && fast_path[a->egress].path &&
        !usage_via_ir) {
        rs->dropped[0] = '\0';
        out = build_fast(req, lane);
    } else if (a->egress == req->ingress && a->eops->write_passthrough) {
        out = build_translated(req, lane, why, sizeof why, true);
    } else {
        if (ensure_ir(req) < 0)
            return; /* answered: the client's request is invalid */
        out = build_translated(req, lane, why, sizeof why, false);
    }
    struct bb_upstream_deadlines dl = {
        .connect_ms = conf->limits.upstream_connect_timeout_ms,
        .head_ms = l->attempt_timeout_ms ? l->attempt_timeout_ms
                                         : conf->limits.upstream_header_timeout_ms,
        .idle_ms = conf->limits.stream_idle_timeout_ms,
    };
    if (l->attempt_timeout_ms && l->attempt_timeout_ms < dl.connect_ms)
        dl.connect_ms = l->attempt_timeout_ms;
    a->t_sent_us = bb_now_us();
    bb_obs_attempt_start(req, lane, a->member);
    a->up = out ? bb_upstream_start(w, l->provider, out, &dl, &up_cbs, a) : NULL;
    if (out)
        evbuffer_free(out);
    if (!a->up) {
        fail_over(a, why, false);
        return;
    }
    uint32_t ttft_ms = dl.head_ms;
    a->ttft = evtimer_new(w->base, ttft_cb, a);
    if (a->ttft && req->stream) { /* non-stream answers commit with their head */
        struct timeval tv = {ttft_ms / 1000, (ttft_ms % 1000) * 1000};
        evtimer_add(a->ttft, &tv);
    }
    if (!rs->deadline) {
        rs->deadline = evtimer_new(w->base, deadline_cb, req);
        uint32_t secs = conf->limits.upstream_request_timeout_secs;
        struct timeval tv = {secs, 0};
        if (rs->deadline)
            evtimer_add(rs->deadline, &tv);
    }
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
        req->t_deadline_ms = bb_now_ms() + (uint64_t)conf->limits.upstream_request_timeout_secs *
                                               1000u;
    }
    rs->tried = bb_arena_calloc(&req->arena, n_tried * sizeof(bool));
    if (!rs->tried) {
        bb_request_fail(req, BB_ERR_INTERNAL, "out of memory");
        return;
    }
    if (bb_meter_admit(req, max_output(req->body ? req->body : "", f)) < 0)
        return; /* refused, answered */
    next_attempt(req);
}
