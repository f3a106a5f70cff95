/*
 * attempt: the attempt loop of an LLM request (see attempt.h for the state machine). Picks a
 * lane (router), builds the upstream request in the lane's protocol, starts it, and when an
 * attempt fails decides what happens next: the breaker learns, the request fails over while
 * nothing reached the client, a cut stream continues on another lane (stream.on_cut:
 * continue), or the client gets the last error in its dialect. Worker process,
 * single-threaded.
 */
#include "worker/attempt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "common/log.h"
#include "worker/breaker.h"
#include "worker/classify.h"
#include "worker/http_server.h"
#include "worker/jw.h"
#include "worker/meter.h"
#include "worker/obs.h"
#include "worker/policy.h"
#include "worker/proxy.h"
#include "worker/router.h"
#include "worker/strict.h"
#include "worker/upstream.h"
#include "worker/worker.h"

/* ---- the state machine ---- */

static const char *const state_names[] = {
#define X(id, name) name,
    BB_ATT_STATE_LIST(X)
#undef X
};

#define S(x) (1u << BB_ATT_##x)
/* allowed[from] = the states an attempt may move to from `from` (terminal states: none). */
static const unsigned allowed[BB_ATT__COUNT] = {
    [BB_ATT_SENT] = S(ERROR_BODY) | S(BUFFER) | S(HOLD) | S(LIVE) | S(FAILED),
    [BB_ATT_ERROR_BODY] = S(FAILED) | S(REFUSED),
    [BB_ATT_BUFFER] = S(DONE) | S(FAILED),
    [BB_ATT_HOLD] = S(LIVE) | S(FAILED),
    [BB_ATT_LIVE] = S(DONE) | S(BROKEN),
};
#undef S

const char *bb_att_state_name(enum bb_att_state s)
{
    return s < BB_ATT__COUNT ? state_names[s] : "?";
}

void bb_attempt_to(struct bb_attempt *a, enum bb_att_state s)
{
    if (!(allowed[a->state] & (1u << s))) {
        bb_crit("attempt: illegal transition %s -> %s (request %s)", bb_att_state_name(a->state),
                bb_att_state_name(s), a->req->id);
        abort();
    }
    a->state = s;
}

/* ---- bookkeeping: counters, breaker ---- */

static void why_add(struct bb_route_state *rs, const char *lane, const char *what)
{
    size_t n = strlen(rs->why);
    if (n < sizeof rs->why - 1)
        snprintf(rs->why + n, sizeof rs->why - n, "%slane %s: %s", n ? "; " : "", lane, what);
}

static struct bb_shm_cell *member_cell(struct bb_request *req, int member)
{
    return req->pool >= 0 && member >= 0 ? req->w->pools[req->pool].member_cells[member] : NULL;
}

static void count(struct bb_request *req, struct bb_attempt *a, bool ok)
{
    struct bb_shm_cell *lc = req->w->lane_cells[a->lane];
    struct bb_shm_cell *mc = member_cell(req, a->member);
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
    struct bb_shm_cell *mc = member_cell(a->req, a->member);
    return mc ? mc : a->req->w->lane_cells[a->lane];
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
            bb_info("breaker: lane %s open for %llu ms", a->req->w->conf->lanes[a->lane].name,
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

void bb_attempt_release(struct bb_attempt *a)
{
    struct bb_request *req = a->req;
    struct bb_route_state *rs = req->route;
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
        struct bb_shm_cell *c = breaker_cell(a);
        if (c)
            bb_breaker_release_probe(c);
        a->breaker_done = true;
    }
    if (a->enc && a->enc != rs->cont.enc && a->iops->enc_finish) {
        /* encoders may hold buffers until their stream ends (Gemini tool arguments) */
        struct evbuffer *sink = evbuffer_new();
        if (sink) {
            a->iops->enc_finish(a->enc, sink);
            evbuffer_free(sink);
        }
    }
    a->enc = NULL;
    if (a->framer == BB_FRAMER_SSE)
        bb_sse_free(&a->sse);
    else if (a->framer == BB_FRAMER_ES)
        bb_eventstream_free(&a->es);
    a->framer = BB_FRAMER_NONE;
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

void bb_proxy_release(struct bb_request *req)
{
    struct bb_route_state *rs = req->route;
    if (req->attempt)
        bb_attempt_release(req->attempt);
    if (!rs)
        return;
    bb_policy_release(req);
    if (rs->cont.enc) {
        const struct bb_proto_ops *iops = bb_proto_get(req->ingress);
        struct evbuffer *sink = iops->enc_finish ? evbuffer_new() : NULL;
        if (sink) {
            iops->enc_finish(rs->cont.enc, sink);
            evbuffer_free(sink);
        }
        rs->cont.enc = NULL;
    }
    if (rs->cont.text) {
        evbuffer_free(rs->cont.text);
        rs->cont.text = NULL;
    }
    if (rs->last_body) {
        evbuffer_free(rs->last_body);
        rs->last_body = NULL;
    }
    if (rs->deadline) {
        event_free(rs->deadline);
        rs->deadline = NULL;
    }
    if (rs->queue) {
        event_free(rs->queue);
        rs->queue = NULL;
    }
}

/* ---- answers to the client ---- */

size_t bb_attempt_headers(struct bb_request *req, struct bb_attempt *a, char *buf, size_t cap)
{
    const struct bb_conf *conf = req->w->conf;
    struct bb_route_state *rs = req->route;
    size_t n = 0;
    char num[24];
    buf[0] = '\0';
    /* values from the provider (Retry-After) and the client (dropped field names) enter the
     * head only through bb_http_header_add's check */
    bb_http_header_add(buf, cap, &n, "x-busbar-lane", conf->lanes[a->lane].name);
    struct jw nw = {num, 0, sizeof num - 1, false};
    jw_u64(&nw, req->attempts);
    num[nw.n] = '\0';
    bb_http_header_add(buf, cap, &n, "x-busbar-attempts", num);
    if (a->retry_after[0])
        bb_http_header_add(buf, cap, &n, "Retry-After", a->retry_after);
    if (rs->dropped[0])
        bb_http_header_add(buf, cap, &n, "x-busbar-dropped-fields", rs->dropped);
    if (req->pool >= 0 && rs->route_target > 0) { /* config names only */
        bb_http_header_add(buf, cap, &n, "x-busbar-route-policy",
                           bb_route_by_name(req->obs.route_by));
        bb_http_header_add(
            buf, cap, &n, "x-busbar-route-target",
            conf->lanes[conf->pools[req->pool].members[rs->route_target - 1].lane].name);
    }
    if (conf->overhead_header) {
        uint64_t total = bb_now_us() - req->t_start_us;
        uint64_t up = req->t_upstream_us + (bb_now_us() - a->t_sent_us);
        snprintf(num, sizeof num, "%llu", (unsigned long long)(total > up ? total - up : 0));
        bb_http_header_add(buf, cap, &n, "x-busbar-overhead-us", num);
    }
    return n;
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
    size_t n =
        bb_errors_render_status(req->ingress, a->status, pe.code, pe.message, out, sizeof out);
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
    hl += n > 0 && (size_t)n < sizeof hdrs - hl ? (size_t)n : 0;
    if (retry_after && retry_after[0])
        bb_http_header_add(hdrs, sizeof hdrs, &hl, "Retry-After", retry_after);
    size_t len = body ? evbuffer_get_length(body) : 0;
    bb_http_respond_full(req, status, ctype && ctype[0] ? ctype : "application/json", hdrs,
                         len ? (const char *)evbuffer_pullup(body, (ev_ssize_t)len) : "", len);
}

/* The continuation could not go on: the client's stream ends with the error event of the
 * failure that cut it (a rejected prefill never masks it). */
static void cont_give_up(struct bb_request *req)
{
    struct bb_route_state *rs = req->route;
    bb_warn("request %s: no lane could continue the stream: %s", req->id, rs->why);
    req->close_after = true;
    bb_relay_error_event(req, rs->cont.enc, bb_proto_get(req->ingress), rs->cont.orig_fail);
    bb_request_finish(req);
}

/* Every attempt failed (or none was possible): answer with the last upstream error, or a
 * gateway error naming what happened on each lane. */
static void exhausted(struct bb_request *req, const char *fallback_msg)
{
    struct bb_route_state *rs = req->route;
    if (rs->cont.active) {
        cont_give_up(req);
        return;
    }
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
        snprintf(msg, sizeof msg, "%s: %s",
                 rs->last_fatal ? "the upstream answer was refused"
                                : "all upstream attempts failed",
                 rs->why);
    else
        snprintf(msg, sizeof msg, "%s", fallback_msg);
    bb_request_fail_with(req, rs->last_timeout ? BB_ERR_UPSTREAM_TIMEOUT : BB_ERR_UPSTREAM, msg,
                         hdrs);
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
            req->route->tried[m] = true;
    }
}

void bb_attempt_fail(struct bb_attempt *a, const char *what, enum bb_fclass fc)
{
    struct bb_request *req = a->req;
    struct bb_route_state *rs = req->route;
    const char *lane = req->w->conf->lanes[a->lane].name;
    bb_attempt_to(a, BB_ATT_FAILED);
    bb_obs_attempt_class(req, fc);
    switch (fc) {
    case BB_FC_BILLING:
        hard_down(a, what);
        break;
    case BB_FC_CONTEXT:
        exclude_smaller_context(a);
        a->no_breaker = true;
        break;
    default:
        break;
    }
    count(req, a, false);
    breaker_fail(a);
    why_add(rs, lane, what);
    rs->last_timeout = fc == BB_FC_TIMEOUT;
    rs->last_fatal = fc == BB_FC_FATAL;
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
    struct bb_shm_cell *mc = member_cell(req, a->member);
    if (mc && fc != BB_FC_FATAL)
        atomic_fetch_add_explicit(&mc->failovers, 1, memory_order_relaxed);
    bb_info("request %s: attempt %u on lane %s failed (%s): %s", req->id, req->attempts, lane,
            bb_fclass_name(fc), what);
    req->t_upstream_us += bb_now_us() - a->t_sent_us;
    bb_attempt_release(a);
    if (fc == BB_FC_FATAL) { /* busbar refuses this answer: another lane would not help */
        exhausted(req, what);
        return;
    }
    bb_attempt_next(req);
}

/* The part that just broke off: the usage the client will see for it (what its provider
 * reported, its output at least its text at a token per four bytes) and its ledger row. */
static void bank_part(struct bb_request *req)
{
    struct bb_cont *c = &req->route->cont;
    size_t tl = c->text ? evbuffer_get_length(c->text) : 0;
    uint64_t est = (tl - c->part_start + 3) / 4;
    struct bb_ir_usage *b = &c->banked;
    b->set = true;
    if (req->usage_seen) {
        b->input += req->usage.input;
        b->output += req->usage.output > est ? req->usage.output : est;
        b->cache_read += req->usage.cache_read;
        b->cache_write += req->usage.cache_write;
        b->reasoning += req->usage.reasoning;
    } else {
        b->output += est;
    }
    c->part_start = tl;
    bb_meter_bank(req, est);
}

/* May the client's stream continue on another lane after a failure of attempt a? */
static bool cont_possible(struct bb_route_state *rs, struct bb_attempt *a)
{
    return rs->cont.enabled && !rs->cont.non_text && a->enc && a->req->conn && !a->verbatim;
}

void bb_attempt_broken(struct bb_attempt *a, const char *what, enum bb_fclass fc_broken)
{
    struct bb_request *req = a->req;
    struct bb_route_state *rs = req->route;
    const char *lane = req->w->conf->lanes[a->lane].name;
    bb_attempt_to(a, BB_ATT_BROKEN);
    if (fc_broken != BB_FC__COUNT)
        bb_obs_attempt_class(req, fc_broken);
    count(req, a, false);
    breaker_fail(a);
    if (cont_possible(rs, a)) {
        if (!rs->cont.orig_fail[0])
            snprintf(rs->cont.orig_fail, sizeof rs->cont.orig_fail, "upstream stream failed: %s",
                     what);
        bb_warn("request %s: lane %s failed after the response started: %s; continuing on "
                "another lane",
                req->id, lane, what);
        why_add(rs, lane, what);
        bank_part(req);
        bb_obs_continued(req);
        rs->cont.enc = a->enc; /* the client's encoder goes on with the next attempt */
        rs->cont.active = true;
        rs->cont.mapped = false;
        req->t_upstream_us += bb_now_us() - a->t_sent_us;
        bb_attempt_release(a);
        bb_attempt_next(req);
        return;
    }
    bb_warn("request %s: lane %s failed after the response started: %s", req->id, lane, what);
    req->close_after = true;
    if (a->error_sent) {
        bb_http_respond_buffer(req, a->pending);
        bb_http_respond_end(req); /* the provider's error event is the end */
    } else if (a->pending && bb_relay_encoder(a)) {
        char msg[300];
        if (rs->cont.orig_fail[0])
            snprintf(msg, sizeof msg, "%s", rs->cont.orig_fail);
        else
            snprintf(msg, sizeof msg, "upstream stream failed: %s", what);
        bb_relay_error_event(req, a->enc, a->iops, msg);
    }
    /* A non-stream body cut short stays short: the connection closes before its length. */
    bb_request_finish(req);
}

void bb_attempt_done(struct bb_attempt *a)
{
    struct bb_request *req = a->req;
    bb_attempt_to(a, BB_ATT_DONE);
    count(req, a, true);
    breaker_ok(a);
    if (a->continuation) {
        struct bb_shm_cell *lc = req->w->lane_cells[a->lane];
        struct bb_shm_cell *mc = member_cell(req, a->member);
        if (lc)
            atomic_fetch_add_explicit(&lc->continuations, 1, memory_order_relaxed);
        if (mc)
            atomic_fetch_add_explicit(&mc->continuations, 1, memory_order_relaxed);
    }
    bb_http_respond_end(req);
    bb_request_finish(req);
}

/* A complete >= 400 answer: classify it and fail over, or relay it (client and auth errors
 * are the request's own fault or must never be retried: SPEC §5.1). */
void bb_attempt_http_error(struct bb_attempt *a)
{
    struct bb_request *req = a->req;
    const struct bb_conf *conf = req->w->conf;
    size_t bl = a->body ? evbuffer_get_length(a->body) : 0;
    enum bb_fclass fc =
        bb_classify_http(&conf->providers[conf->lanes[a->lane].provider], a->status,
                         bl ? (const char *)evbuffer_pullup(a->body, (ev_ssize_t)bl) : "", bl);
    char what[96];
    snprintf(what, sizeof what, "HTTP %d (%s)", a->status, bb_fclass_name(fc));
    bb_obs_attempt_class(req, fc);
    if (fc != BB_FC_AUTH && fc != BB_FC_CLIENT) {
        bb_attempt_fail(a, what, fc);
        return;
    }
    if (a->continuation) { /* the next lane rejected the prefill: the original failure stands */
        bb_attempt_fail(a, what, fc);
        return;
    }
    bb_attempt_to(a, BB_ATT_REFUSED);
    if (fc == BB_FC_AUTH)
        hard_down(a, what);
    else
        breaker_ok(a); /* the lane answered properly; the request was wrong */
    count(req, a, fc == BB_FC_CLIENT);
    char lane_hdrs[1024], ctype[128];
    memcpy(ctype, a->content_type, sizeof ctype);
    size_t hl = bb_attempt_headers(req, a, lane_hdrs, sizeof lane_hdrs);
    lane_hdrs[hl] = '\0';
    struct evbuffer *b = dialect_error(a, ctype, sizeof ctype);
    respond_error_body(req, a->status, ctype, NULL, b, lane_hdrs);
    if (b)
        evbuffer_free(b);
    bb_request_finish(req);
}

/* ---- request building ---- */

/* The request line and the head's fixed lines, written without printf (once per attempt)
 * straight into b's free space. */
static void request_line(struct bb_request *req, struct evbuffer *b, const struct bb_provider *p,
                         const char *path, size_t body_len)
{
    const struct bb_proto_ops *ops = bb_proto_get(p->protocol);
    const char *accept = bb_proto_accept(ops, req->stream);
    size_t need = strlen(p->url.path) + strlen(path) + strlen(p->url.host) + strlen(accept) + 160;
    struct evbuffer_iovec v;
    if (evbuffer_reserve_space(b, (ev_ssize_t)need, &v, 1) < 1 || v.iov_len < need)
        return; /* out of memory: the head goes out short and the provider refuses it */
    struct jw w = {v.iov_base, 0, need, false};
    bool v6 = strchr(p->url.host, ':') != NULL;
    jw_lit(&w, "POST ");
    jw_raw(&w, p->url.path);
    jw_raw(&w, path);
    jw_lit(&w, " HTTP/1.1\r\nHost: ");
    if (v6)
        jw_lit(&w, "[");
    jw_raw(&w, p->url.host);
    if (v6)
        jw_lit(&w, "]");
    if (p->url.port != (p->url.tls ? 443 : 80)) {
        jw_lit(&w, ":");
        jw_u64(&w, p->url.port);
    }
    jw_lit(&w, "\r\nContent-Length: ");
    jw_u64(&w, body_len);
    jw_lit(&w, "\r\nAccept: ");
    jw_raw(&w, accept);
    jw_lit(&w, "\r\nUser-Agent: busbar/" BB_VERSION "\r\n");
    v.iov_len = w.n; /* (never full: need counts every part) */
    evbuffer_commit_space(b, &v, 1);
    /* allow-listed client headers the provider's protocol takes (SPEC §3.3) */
    for (const char *const *fh = ops->forward_headers; fh && *fh; fh++) {
        const struct bb_http_header *h = bb_http_find(&req->head, *fh);
        if (h) {
            bb_proto_put(b, *fh, ": ", NULL);
            evbuffer_add(b, h->value, h->value_len);
            evbuffer_add(b, "\r\n", 2);
        }
    }
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
    struct bb_route_state *rs = req->route;
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
    /* metered streams of a protocol that reports usage only when asked must end with their
     * usage: ask for it (it is not relayed) */
    const struct bb_proto_ops *ops = bb_proto_get(p->protocol);
    const char *want_usage = ops->stream_usage.inject;
    size_t brace = 0, inject = 0;
    if (req->metered && req->stream && want_usage && rs->stream_options == 0) {
        while (brace < rs->model_off && req->body[brace] != '{')
            brace++;
        if (brace < rs->model_off)
            inject = strlen(want_usage);
    }
    size_t body_len = req->body_len - rs->model_len + ml + inject;
    request_line(req, b, p, ops->path, body_len);
    evbuffer_add(b, "Content-Type: application/json\r\n", 32);
    ops->auth_headers(b, p->api_key);
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
static void note_dropped(struct bb_route_state *rs, const struct bb_dropped *d)
{
    size_t n = 0;
    rs->dropped[0] = '\0';
    for (size_t i = 0; rs->ir && i < rs->ir->n_unsupported; i++)
        n += (size_t)snprintf(rs->dropped + n, n < sizeof rs->dropped ? sizeof rs->dropped - n : 0,
                              "%s%s", n ? "," : "", rs->ir->unsupported[i]);
    if (d->n && n + 2 < sizeof rs->dropped) {
        size_t at = n ? n + 1 : 0;
        if (bb_proto_dropped_text(d, rs->dropped + at, sizeof rs->dropped - at) && n)
            rs->dropped[n] = ',';
    }
}

/* Read the client's body into IR once (cross-protocol attempts). -1 = answered (400). */
static int ensure_ir(struct bb_request *req)
{
    struct bb_route_state *rs = req->route;
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
    bb_ir_ids_unwrap(ir, iops->tool_id_prefix);
    rs->ir = ir;
    rs->ictx.include_usage = ir->include_usage;
    rs->ictx.tools = ir->tools; /* calls are rendered back in the client's tool shapes */
    rs->ictx.n_tools = ir->n_tools;
    return 0;
}

/* The client's request with the answer's text so far as the assistant's prefill: appended to
 * the client's own trailing assistant turn, or as a new one. NULL on OOM. */
static struct bb_ir_request *prefill_ir(struct bb_request *req)
{
    struct bb_route_state *rs = req->route;
    struct bb_arena *ar = &req->arena;
    size_t tl = rs->cont.text ? evbuffer_get_length(rs->cont.text) : 0;
    const char *text = tl ? (const char *)evbuffer_pullup(rs->cont.text, (ev_ssize_t)tl) : "";
    struct bb_ir_request *ir = bb_arena_alloc(ar, sizeof *ir);
    if (!ir)
        return NULL;
    *ir = *rs->ir;
    size_t n = ir->n_messages;
    struct bb_ir_message *msgs = bb_arena_alloc(ar, (n + 1) * sizeof *msgs);
    if (!msgs)
        return NULL;
    memcpy(msgs, rs->ir->messages, n * sizeof *msgs);
    struct bb_ir_message *last = n ? &msgs[n - 1] : NULL;
    if (last && last->role == BB_IR_ASSISTANT && last->n_blocks &&
        last->blocks[last->n_blocks - 1].type == BB_IR_TEXT) {
        /* the client prefilled: the model's text so far follows its prefill */
        struct bb_ir_block *blocks = bb_arena_alloc(ar, last->n_blocks * sizeof *blocks);
        if (!blocks)
            return NULL;
        memcpy(blocks, last->blocks, last->n_blocks * sizeof *blocks);
        struct bb_ir_block *b = &blocks[last->n_blocks - 1];
        char *joined = bb_arena_alloc(ar, b->text.len + tl + 1);
        if (!joined)
            return NULL;
        memcpy(joined, b->text.p ? b->text.p : "", b->text.len);
        memcpy(joined + b->text.len, text, tl);
        joined[b->text.len + tl] = '\0';
        b->text.p = joined;
        b->text.len += tl;
        last->blocks = blocks;
    } else {
        struct bb_ir_block *b = bb_arena_calloc(ar, sizeof *b);
        if (!b)
            return NULL;
        b->type = BB_IR_TEXT;
        b->text = bb_ir_strdup(ar, text, tl);
        if (!b->text.p)
            return NULL;
        memset(&msgs[n], 0, sizeof msgs[n]);
        msgs[n].role = BB_IR_ASSISTANT;
        msgs[n].blocks = b;
        msgs[n].n_blocks = 1;
        n++;
    }
    ir->messages = msgs;
    ir->n_messages = n;
    return ir;
}

/* Through the IR (the egress module writes path, headers and body), or, for a same-protocol
 * hop with the model in the URL, the client's body as is with the module's path and auth. */
static struct evbuffer *build_translated(struct bb_request *req, int lane_idx,
                                         const struct bb_ir_request *ir, char *why, size_t why_cap,
                                         bool passthrough)
{
    const struct bb_conf *conf = req->w->conf;
    const struct bb_lane *lane = &conf->lanes[lane_idx];
    const struct bb_provider *p = provider_for(req, lane);
    if (!p) {
        snprintf(why, why_cap, "out of memory");
        return NULL;
    }
    const struct bb_proto_ops *eops = bb_proto_get(p->protocol);
    struct bb_route_state *rs = req->route;
    if (!eops->write_request) {
        snprintf(why, why_cap, "egress protocol %s is not built yet", bb_proto_name(p->protocol));
        return NULL;
    }
    struct bb_egress_req er;
    memset(&er, 0, sizeof er);
    er.headers = evbuffer_new();
    er.body = evbuffer_new();
    struct evbuffer *b = evbuffer_new();
    struct bb_dropped dropped = {0};
    struct bb_egress_ctx ctx = {p, lane, req->stream, (int64_t)time(NULL), &dropped};
    struct bb_err err;
    int rc = !er.headers || !er.body || !b ? -1
             : passthrough ? eops->write_passthrough(&req->arena, req->body ? req->body : "",
                                                     req->body_len, &ctx, &er, &err)
                           : bb_proto_write_request(eops, &req->arena, ir, &ctx, &er, &err);
    if (rc < 0) {
        snprintf(why, why_cap, "cannot write the request for this lane: %s",
                 er.headers && er.body && b ? err.msg : "out of memory");
        if (b)
            evbuffer_free(b);
        b = NULL;
    } else {
        note_dropped(rs, &dropped);
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

/* ---- deadlines ---- */

static struct bb_attempt *att_check(void *arg)
{
    struct bb_attempt *a = arg;
    if (!a->req || a->req->magic != BB_MAGIC_REQ) {
        bb_crit("attempt: timer for a dead request");
        abort();
    }
    return a;
}

/* No response head and first meaningful event (a stream) or first body byte (a non-stream
 * answer) within the attempt deadline: a slow first token is abandoned and the request moves
 * on while the client has seen nothing. */
static void ttft_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct bb_attempt *a = att_check(arg);
    if (a->state == BB_ATT_SENT || a->state == BB_ATT_BUFFER || a->state == BB_ATT_HOLD)
        bb_attempt_fail(a, "no first token within the attempt deadline", BB_FC_TIMEOUT);
}

/* The whole request ran past limits.upstream_request_timeout_secs. */
static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct bb_request *req = arg;
    struct bb_attempt *a = req->attempt;
    struct bb_route_state *rs = req->route;
    if (!a)
        return;
    if (a->state == BB_ATT_LIVE) {
        rs->cont.enabled = false; /* no time left to continue either */
        bb_attempt_broken(a, "request time limit reached", BB_FC_TIMEOUT);
        return;
    }
    bb_attempt_to(a, BB_ATT_FAILED);
    bb_obs_attempt_class(req, BB_FC_TIMEOUT);
    count(req, a, false);
    breaker_fail(a);
    why_add(rs, req->w->conf->lanes[a->lane].name, "request time limit reached");
    rs->last_timeout = true;
    rs->last_status = 0;
    bb_attempt_release(a);
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
    bb_attempt_next(arg);
}

/* ---- the loop ---- */

/* The pool member to try next (router + on_exhausted), or -1 when the request has ended (it
 * was answered) or waits in the queue. *lane_out is its lane. */
static int pick_member(struct bb_request *req, int *lane_out)
{
    struct bb_worker *w = req->w;
    const struct bb_conf *conf = w->conf;
    struct bb_route_state *rs = req->route;
    bool probe = false;
    if (req->attempts > 0) /* failover.exclusions: first choices only */
        for (size_t m = 0; m < conf->pools[req->pool].n_members; m++)
            if (conf->pools[req->pool].members[m].no_failover)
                rs->tried[m] = true;
    int member = rs->n_order
                     ? bb_router_pick_order(w, req->pool, rs->tried, &probe, rs->order, rs->n_order)
                     : -1;
    if (member < 0)
        member = bb_router_pick(w, req->pool, rs->tried, &probe, rs->affinity);
    if (member < 0) {
        const struct bb_pool *pl = &conf->pools[req->pool];
        switch (pl->on_exhausted) {
        case BB_EXHAUSTED_FALLBACK_POOL:
            if (pl->fallback_pool >= 0 && rs->pool_hops++ < (int)conf->n_pools) {
                /* the fallback pool's members, from scratch (cycles refused at load) */
                req->pool = pl->fallback_pool;
                rs->tried =
                    bb_arena_calloc(&req->arena, conf->pools[req->pool].n_members * sizeof(bool));
                rs->n_order = 0; /* a policy's order names the first pool's members */
                rs->route_target = 0;
                if (!rs->tried) {
                    bb_request_fail(req, BB_ERR_INTERNAL, "out of memory");
                    return -1;
                }
                bb_info("request %s: pool %s exhausted, falling back to pool %s", req->id, pl->name,
                        conf->pools[req->pool].name);
                return pick_member(req, lane_out);
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
                    return -1;
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
            return -1;
        }
        exhausted(req, "no usable lane in the pool (all at max_concurrent or tried)");
        return -1;
    }
    rs->probe_pending = probe;
    rs->tried[member] = true;
    if (!rs->route_target) /* x-busbar-route-target: the native route's first choice */
        rs->route_target = member + 1;
    *lane_out = conf->pools[req->pool].members[member].lane;
    return member;
}

/* A request that named a lane: its one attempt, or -1 when answered. */
static int pick_lane(struct bb_request *req)
{
    struct bb_worker *w = req->w;
    struct bb_route_state *rs = req->route;
    int lane = req->lane;
    struct bb_shm_cell *lc = w->lane_cells[lane];
    if (!rs->tried[0] && lc && !bb_breaker_usable(lc, bb_now_ms())) {
        char hdrs[128];
        snprintf(hdrs, sizeof hdrs, "Retry-After: %llu\r\n",
                 (unsigned long long)((bb_breaker_wait_ms(lc, bb_now_ms()) + 999) / 1000));
        bb_request_fail_with(req, BB_ERR_NO_CAPACITY, "the lane is not available now", hdrs);
        return -1;
    }
    if (rs->tried[0] || !bb_router_take(w, lane, -1, -1)) {
        exhausted(req, "the lane is at max_concurrent");
        return -1;
    }
    rs->tried[0] = true;
    return lane;
}

/* The upstream request of attempt a: the fast path (same protocol, model in the body), the
 * module's pass-through (same protocol, model in the URL), or the IR. NULL with why set when
 * impossible; NULL with the request answered (an invalid client body) when *answered. */
static struct evbuffer *build(struct bb_attempt *a, char *why, size_t why_cap, bool *answered)
{
    struct bb_request *req = a->req;
    struct bb_route_state *rs = req->route;
    *answered = false;
    /* a metered stream whose request says no to usage goes through the writer, which asks
     * for it */
    bool usage_via_ir =
        req->metered && req->stream && a->eops->stream_usage.inject && rs->stream_options < 0;
    if (!a->continuation && a->egress == req->ingress && rs->body_model && a->eops->path &&
        !usage_via_ir) {
        rs->dropped[0] = '\0';
        return build_fast(req, a->lane);
    }
    if (!a->continuation && a->egress == req->ingress && a->eops->write_passthrough)
        return build_translated(req, a->lane, NULL, why, why_cap, true);
    if (ensure_ir(req) < 0) {
        *answered = true; /* the client's request is invalid */
        return NULL;
    }
    const struct bb_ir_request *ir = rs->ir;
    if (a->continuation && !(ir = prefill_ir(req))) {
        snprintf(why, why_cap, "out of memory");
        return NULL;
    }
    struct evbuffer *out = build_translated(req, a->lane, ir, why, why_cap, false);
    if (out && rs->dropped[0] && bb_proto_strict(req, a->eops, rs->dropped)) {
        evbuffer_free(out); /* x-busbar-strict: nothing may be dropped (answered) */
        *answered = true;
        return NULL;
    }
    return out;
}

void bb_attempt_next(struct bb_request *req)
{
    struct bb_worker *w = req->w;
    const struct bb_conf *conf = w->conf;
    struct bb_route_state *rs = req->route;
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
    int member = -1, lane;
    if (req->pool >= 0) {
        member = pick_member(req, &lane);
        if (member < 0)
            return;
    } else if ((lane = pick_lane(req)) < 0) {
        return;
    }
    struct bb_attempt *a = bb_arena_calloc(&req->arena, sizeof *a);
    if (!a) {
        bb_router_give(w, lane, req->pool, member);
        bb_request_fail(req, BB_ERR_INTERNAL, "out of memory");
        return;
    }
    const struct bb_lane *l = &conf->lanes[lane];
    a->req = req;
    a->state = BB_ATT_SENT;
    a->lane = lane;
    a->member = member;
    a->slot_held = true;
    a->probe = rs->probe_pending;
    rs->probe_pending = false;
    a->egress = conf->providers[l->provider].protocol;
    a->eops = bb_proto_get(a->egress);
    a->iops = bb_proto_get(req->ingress);
    a->continuation = rs->cont.active;
    if (a->continuation)
        a->enc = rs->cont.enc;
    /* Relayed as they are: same protocol, except a client whose stream is framed otherwise
     * (Gemini without alt=sse wants a JSON array; upstream is always SSE) and streams that may
     * be continued on another lane (the client's stream then has one encoder across
     * attempts). */
    a->verbatim = a->egress == req->ingress && !rs->cont.enabled &&
                  !(req->stream && bb_proto_client_framing(a->iops, &rs->ictx) != a->eops->framing);
    /* busbar's own usage request (build_fast, or the writer) stays busbar's */
    a->strip_usage_chunk =
        a->verbatim && a->eops->stream_usage.usage_only && req->stream && rs->stream_options != 1;
    req->attempt = a;
    req->attempts++;
    bb_meter_attempt(req);

    char why[600] = "could not open an upstream connection";
    bool answered;
    struct evbuffer *out = build(a, why, sizeof why, &answered);
    if (answered)
        return;
    struct bb_upstream_deadlines dl = {
        .connect_ms = conf->limits.upstream_connect_timeout_ms,
        .head_ms =
            l->attempt_timeout_ms ? l->attempt_timeout_ms : conf->limits.upstream_header_timeout_ms,
        .idle_ms = conf->limits.stream_idle_timeout_ms,
    };
    if (l->attempt_timeout_ms && l->attempt_timeout_ms < dl.connect_ms)
        dl.connect_ms = l->attempt_timeout_ms;
    a->t_sent_us = bb_now_us();
    bb_obs_attempt_start(req, lane, a->member);
    a->up = out ? bb_upstream_start(w, l->provider, out, &dl, &bb_relay_cbs, a) : NULL;
    if (out)
        evbuffer_free(out);
    if (!a->up) {
        bb_attempt_fail(a, why, BB_FC_NETWORK);
        return;
    }
    /* the first token (a stream) or the first body byte (an answer) within the head deadline */
    uint32_t ttft_ms = dl.head_ms;
    a->ttft = evtimer_new(w->base, ttft_cb, a);
    if (a->ttft) {
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
