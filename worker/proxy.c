/*
 * proxy: the LLM request path. Reads the request's model, resolves pool or lane, and walks the
 * attempt loop: pick a lane (router), write the upstream request, read the answer, and either
 * relay it or move on to the next lane while nothing has reached the client.
 * Worker process, single-threaded.
 *
 * Same protocol (the only case so far: OpenAI in, OpenAI out): the body goes upstream
 * byte-for-byte except the `model` value; the answer comes back verbatim. Streams are decoded
 * as SSE only to find frame boundaries: each complete frame is written to the client at once.
 *
 * Commit point: a non-stream answer commits when its 2xx head arrives; a stream commits with
 * its first complete frame, so a stream that dies before producing one still fails over.
 * After commit a failure ends the client's stream with an error event, never a clean end.
 */
#include "worker/proxy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "common/jscan.h"
#include "common/log.h"
#include "common/sse.h"
#include "worker/http_server.h"
#include "worker/router.h"
#include "worker/upstream.h"
#include "worker/worker.h"

#define ERRBODY_MAX (64u << 10)   /* upstream error bodies kept for relay */
#define SSE_FRAME_MAX (4u << 20)  /* one stream frame */
#define OUT_PAUSE_AT (1u << 20)   /* client output backlog that pauses the upstream */
#define JSON_DEPTH_MAX 128

/* One upstream attempt of a request. Lives in the request's arena; its heap parts (decoder,
 * buffers, connection) are released by attempt_release. */
struct bb_attempt {
    struct bb_request *req;
    struct bb_upconn *up;
    int lane, member;
    bool slot_held;
    int status;
    bool sse, committed, done_seen;
    struct bb_sse dec;
    bool dec_init;
    struct evbuffer *errbody;   /* body of a >= 400 answer */
    char content_type[128];
    char retry_after[64];
    uint64_t t_sent_us;
};

/* What the request keeps across attempts. */
struct bb_route_state {
    const char *model;          /* as the client sent it (decoded) */
    size_t model_off, model_len; /* the model token (with quotes) in the body */
    bool *tried;                /* per pool member */
    /* the last failure, for the final answer when every attempt failed */
    int last_status;            /* > 0: an HTTP error answer is kept below */
    struct evbuffer *last_body;
    char last_ctype[128], last_retry_after[64];
    bool last_timeout;
    char why[512];              /* "lane a: reset; lane b: 503" */
};

static void next_attempt(struct bb_request *req);

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
    if (a->slot_held) {
        bb_router_give(req->w, a->lane, req->pool, a->member);
        a->slot_held = false;
    }
    if (a->dec_init) {
        bb_sse_free(&a->dec);
        a->dec_init = false;
    }
    if (a->errbody) {
        evbuffer_free(a->errbody);
        a->errbody = NULL;
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
}

/* ---- client response ---- */

static size_t extra_headers(struct bb_request *req, struct bb_attempt *a, char *buf, size_t cap)
{
    const struct bb_conf *conf = req->w->conf;
    int n = snprintf(buf, cap, "x-busbar-lane: %s\r\nx-busbar-attempts: %u\r\n",
                     conf->lanes[a->lane].name, req->attempts);
    if (a->retry_after[0])
        n += snprintf(buf + n, cap - (size_t)n, "Retry-After: %s\r\n", a->retry_after);
    if (conf->overhead_header) {
        uint64_t total = bb_now_us() - req->t_start_us;
        uint64_t up = req->t_upstream_us + (bb_now_us() - a->t_sent_us);
        n += snprintf(buf + n, cap - (size_t)n, "x-busbar-overhead-us: %llu\r\n",
                      (unsigned long long)(total > up ? total - up : 0));
    }
    return (size_t)n < cap ? (size_t)n : cap - 1;
}

/* Send the client's response head for attempt a (the commit point). */
static int commit(struct bb_attempt *a, enum bb_body_mode mode, int64_t len)
{
    struct bb_request *req = a->req;
    char hdrs[512];
    size_t hl = extra_headers(req, a, hdrs, sizeof hdrs);
    a->committed = true;
    return bb_http_respond_head(req, a->status, a->content_type[0] ? a->content_type : NULL,
                                hdrs, hl, mode, len);
}

static void finish_ok(struct bb_attempt *a)
{
    struct bb_request *req = a->req;
    count(req, a, true);
    bb_http_respond_end(req);
    bb_request_finish(req);
}

/* Every attempt failed (or none was possible): answer with the last upstream error, or a
 * gateway error naming what happened on each lane. */
static void exhausted(struct bb_request *req, const char *fallback_msg)
{
    struct bb_route_state *rs = route_of(req);
    char hdrs[256];
    int n = snprintf(hdrs, sizeof hdrs, "x-busbar-attempts: %u\r\n", req->attempts);
    if (rs->last_status > 0 && rs->last_body) {
        if (rs->last_retry_after[0])
            n += snprintf(hdrs + n, sizeof hdrs - (size_t)n, "Retry-After: %s\r\n",
                          rs->last_retry_after);
        size_t len = evbuffer_get_length(rs->last_body);
        bb_http_respond_full(req, rs->last_status,
                             rs->last_ctype[0] ? rs->last_ctype : "application/json", hdrs,
                             evbuffer_pullup(rs->last_body, -1), len);
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
    why_add(rs, lane, what);
    rs->last_timeout = timeout;
    if (a->status >= 400 && a->errbody) { /* keep the answer in case it is the last one */
        if (rs->last_body)
            evbuffer_free(rs->last_body);
        rs->last_body = a->errbody;
        a->errbody = NULL;
        rs->last_status = a->status;
        memcpy(rs->last_ctype, a->content_type, sizeof rs->last_ctype);
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
    bb_warn("request %s: lane %s failed after the response started: %s", req->id,
            req->w->conf->lanes[a->lane].name, what);
    req->close_after = true;
    if (a->sse) {
        char body[600], frame[700];
        char msg[300];
        snprintf(msg, sizeof msg, "upstream stream failed: %s", what);
        size_t n = bb_errors_render(req->ingress, BB_ERR_UPSTREAM, msg, body, sizeof body);
        int fl = snprintf(frame, sizeof frame, "data: %.*s\n\n", (int)n, body);
        bb_http_respond_body(req, frame, (size_t)fl);
        bb_http_respond_end(req); /* the error event is the end: no [DONE] */
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
    copy_header(h, "content-type", a->content_type, sizeof a->content_type);
    copy_header(h, "retry-after", a->retry_after, sizeof a->retry_after);
    if (h->status >= 400) {
        a->errbody = evbuffer_new();
        return a->errbody ? 0 : -1;
    }
    a->sse = strncmp(a->content_type, "text/event-stream", 17) == 0;
    if (a->sse) {
        bb_sse_init(&a->dec, SSE_FRAME_MAX);
        a->dec_init = true;
        return 0; /* commit with the first frame */
    }
    req->t_upstream_us += bb_now_us() - a->t_sent_us;
    a->t_sent_us = bb_now_us();
    return commit(a, h->content_length >= 0 ? BB_BODY_LENGTH : BB_BODY_CHUNKED,
                  h->content_length);
}

static void on_client_drained(struct bb_request *req)
{
    if (req->attempt && req->attempt->up)
        bb_upstream_pause(req->attempt->up, false);
}

static void backpressure(struct bb_attempt *a)
{
    if (bb_http_output_pending(a->req) > OUT_PAUSE_AT) {
        bb_upstream_pause(a->up, true);
        bb_http_on_drained(a->req, on_client_drained);
    }
}

static int on_frame(void *arg, const struct bb_sse_event *ev)
{
    struct bb_attempt *a = arg;
    if (!a->committed) {
        a->req->t_upstream_us += bb_now_us() - a->t_sent_us;
        a->t_sent_us = bb_now_us();
        if (commit(a, BB_BODY_CHUNKED, -1) < 0)
            return -1;
    }
    if (ev->data_len == 6 && memcmp(ev->data, "[DONE]", 6) == 0)
        a->done_seen = true;
    return bb_http_respond_body(a->req, ev->raw, ev->raw_len);
}

static int up_body(void *arg, const char *data, size_t len)
{
    struct bb_attempt *a = att_check(arg);
    if (a->errbody) {
        size_t have = evbuffer_get_length(a->errbody);
        if (have < ERRBODY_MAX)
            evbuffer_add(a->errbody, data, len < ERRBODY_MAX - have ? len : ERRBODY_MAX - have);
        return 0;
    }
    if (a->sse) {
        if (bb_sse_feed(&a->dec, data, len, on_frame, a) != 0) {
            /* an oversize frame: this upstream is broken */
            if (a->committed)
                fail_committed(a, "stream frame too large");
            else
                fail_over(a, "stream frame too large", false);
            return -1;
        }
    } else {
        bb_http_respond_body(a->req, data, len);
    }
    backpressure(a);
    return 0;
}

/* The exchange with the upstream is over (u is still attached until released). */
static void up_end(void *arg)
{
    struct bb_attempt *a = att_check(arg);
    struct bb_request *req = a->req;
    a->up = NULL; /* the exchange is over: the connection went back to its pool */
    if (a->status >= 400) {
        bool retryable = a->status == 429 || a->status >= 500;
        if (retryable) {
            char what[64];
            snprintf(what, sizeof what, "HTTP %d", a->status);
            fail_over(a, what, false);
            return;
        }
        /* client error: relayed as is, never retried (SPEC §5.1) */
        count(req, a, true);
        size_t len = evbuffer_get_length(a->errbody);
        char hdrs[512];
        size_t hl = extra_headers(req, a, hdrs, sizeof hdrs);
        a->committed = true;
        bb_http_respond_head(req, a->status, a->content_type[0] ? a->content_type : NULL, hdrs,
                             hl, BB_BODY_LENGTH, (int64_t)len);
        bb_http_respond_body(req, evbuffer_pullup(a->errbody, -1), len);
        bb_http_respond_end(req);
        bb_request_finish(req);
        return;
    }
    if (a->sse) {
        if (bb_sse_pending(&a->dec) > 0 && a->committed) {
            fail_committed(a, "stream ended inside a frame");
            return;
        }
        if (!a->committed) { /* a 2xx stream with no frame at all */
            fail_over(a, "stream ended before its first event", false);
            return;
        }
    }
    finish_ok(a);
}

static void up_error(void *arg, enum bb_upfail why, bool bytes_seen)
{
    struct bb_attempt *a = att_check(arg);
    (void)bytes_seen;
    a->up = NULL; /* already freed by the upstream module */
    bool timeout = why == BB_UPFAIL_CONNECT_TIMEOUT || why == BB_UPFAIL_HEAD_TIMEOUT ||
                   why == BB_UPFAIL_IDLE_TIMEOUT;
    if (a->committed)
        fail_committed(a, bb_upfail_name(why));
    else
        fail_over(a, bb_upfail_name(why), timeout);
}

static const struct bb_upstream_cbs up_cbs = {up_head, up_body, up_end, up_error};

/* ---- request building ---- */

/* The upstream request for lane: same protocol, the body with only `model` replaced. */
static struct evbuffer *build_upstream(struct bb_request *req, int lane_idx)
{
    const struct bb_conf *conf = req->w->conf;
    const struct bb_lane *lane = &conf->lanes[lane_idx];
    const struct bb_provider *p = &conf->providers[lane->provider];
    struct bb_route_state *rs = route_of(req);
    struct evbuffer *b = evbuffer_new();
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
    size_t body_len = req->body_len - rs->model_len + ml;
    char host[300];
    bool v6 = strchr(p->url.host, ':') != NULL;
    int hn = snprintf(host, sizeof host, v6 ? "[%s]" : "%s", p->url.host);
    if (p->url.port != (p->url.tls ? 443 : 80))
        snprintf(host + hn, sizeof host - (size_t)hn, ":%u", p->url.port);
    evbuffer_add_printf(b,
                        "POST %s/v1/chat/completions HTTP/1.1\r\n"
                        "Host: %s\r\n"
                        "Content-Type: application/json\r\n"
                        "Content-Length: %zu\r\n"
                        "Accept: %s\r\n"
                        "User-Agent: busbar/" BB_VERSION "\r\n",
                        p->url.path, host, body_len,
                        req->stream ? "text/event-stream" : "application/json");
    if (p->api_key)
        evbuffer_add_printf(b, "Authorization: Bearer %s\r\n", p->api_key);
    evbuffer_add(b, "\r\n", 2);
    evbuffer_add(b, req->body, rs->model_off);
    evbuffer_add(b, model, ml);
    evbuffer_add(b, req->body + rs->model_off + rs->model_len,
                 req->body_len - rs->model_off - rs->model_len);
    return b;
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
        member = bb_router_pick(w, req->pool, rs->tried);
        if (member < 0) {
            exhausted(req, "no usable lane in the pool (all at max_concurrent or tried)");
            return;
        }
        rs->tried[member] = true;
        lane = conf->pools[req->pool].members[member].lane;
    } else {
        lane = req->lane;
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
    a->req = req;
    a->lane = lane;
    a->member = req->pool >= 0 ? member : -1;
    a->slot_held = true;
    req->attempt = a;
    req->attempts++;
    const struct bb_lane *l = &conf->lanes[lane];
    struct evbuffer *out = build_upstream(req, lane);
    struct bb_upstream_deadlines dl = {
        .connect_ms = conf->limits.upstream_connect_timeout_ms,
        .head_ms = l->attempt_timeout_ms ? l->attempt_timeout_ms
                                         : conf->limits.upstream_header_timeout_ms,
        .idle_ms = conf->limits.stream_idle_timeout_ms,
    };
    if (l->attempt_timeout_ms && l->attempt_timeout_ms < dl.connect_ms)
        dl.connect_ms = l->attempt_timeout_ms;
    a->t_sent_us = bb_now_us();
    a->up = out ? bb_upstream_start(w, l->provider, out, &dl, &up_cbs, a) : NULL;
    if (out)
        evbuffer_free(out);
    if (!a->up)
        fail_over(a, "could not open an upstream connection", false);
}

void bb_proxy_handle(struct bb_request *req)
{
    struct bb_worker *w = req->w;
    const struct bb_conf *conf = w->conf;
    struct bb_jscan_field f[2] = {{.key = "model"}, {.key = "stream"}};
    struct bb_err err;
    if (bb_jscan_object(req->body ? req->body : "", req->body_len, f, 2, JSON_DEPTH_MAX, &err) <
        0) {
        char msg[600];
        snprintf(msg, sizeof msg, "request body is not a valid JSON object: %s", err.msg);
        bb_request_fail(req, BB_ERR_INVALID_JSON, msg);
        return;
    }
    if (f[0].type != BB_JSTRING) {
        bb_request_fail(req, BB_ERR_MISSING_MODEL,
                        f[0].type == BB_JNONE ? "the request has no 'model'"
                                              : "'model' must be a string");
        return;
    }
    struct bb_route_state *rs = bb_arena_calloc(&req->arena, sizeof *rs);
    char *model = rs ? bb_arena_alloc(&req->arena, f[0].len + 1) : NULL;
    if (!model) {
        bb_request_fail(req, BB_ERR_INTERNAL, "out of memory");
        return;
    }
    long ml = bb_jscan_unquote(req->body + f[0].off, f[0].len, model, f[0].len + 1);
    if (ml <= 0) {
        bb_request_fail(req, BB_ERR_MISSING_MODEL, "'model' is empty or invalid");
        return;
    }
    req->route = rs;
    rs->model = model;
    rs->model_off = f[0].off;
    rs->model_len = f[0].len;
    req->stream = f[1].type == BB_JBOOL && f[1].truthy;

    req->pool = bb_conf_find_pool(conf, model, (size_t)ml);
    size_t n_tried = 1;
    if (req->pool >= 0) {
        n_tried = conf->pools[req->pool].n_members;
        req->t_deadline_ms =
            bb_now_ms() + (uint64_t)conf->pools[req->pool].failover_timeout_secs * 1000u;
    } else {
        req->lane = bb_conf_find_lane(conf, model, (size_t)ml);
        if (req->lane < 0) {
            char msg[300];
            snprintf(msg, sizeof msg, "The model '%.200s' does not exist", model);
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
    next_attempt(req);
}
