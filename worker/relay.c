/*
 * relay: the upstream answer of one attempt (see attempt.h). Worker process, single-threaded.
 *
 * Non-stream answers are read whole (bounded by limits.response_body_max_bytes), checked
 * complete at the transport level (the upstream module ends the exchange only at its
 * Content-Length or final chunk), checked to be the protocol's success shape (one validating
 * scan, plus the module's in-band error test), and only then committed: head and body go to
 * the client together. Same protocol, the body is relayed as it came (moved, not copied);
 * across protocols it is read into the IR and written in the client's dialect.
 *
 * Streams: framer (SSE / AWS event stream) → the egress decoder (IR events) → the ingress
 * encoder (translated), or the frames relayed as they came (same protocol). The commit point
 * is the first meaningful event (SPEC §5.4); frames before it are held. After it, a failure
 * ends the client's stream with the dialect's error event, or continues it on another lane
 * (stream.on_cut: continue). A stream that ends without its terminator ends cleanly only when
 * its final state (the stop reason) is known.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "common/log.h"
#include "common/sse.h"
#include "worker/attempt.h"
#include "worker/classify.h"
#include "worker/eventstream.h"
#include "worker/http_server.h"
#include "worker/meter.h"
#include "worker/obs.h"
#include "worker/router.h"
#include "worker/upstream.h"
#include "worker/worker.h"

#define ERRBODY_MAX (64u << 10) /* upstream error bodies kept for classification and relay */
#define FRAME_MAX (4u << 20)    /* one stream frame */
#define OUT_PAUSE_AT (1u << 20) /* client output backlog that pauses the upstream */

static struct bb_attempt *att_check(void *arg)
{
    struct bb_attempt *a = arg;
    if (!a->req || a->req->magic != BB_MAGIC_REQ) {
        bb_crit("relay: callback for a dead request");
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

/* ---- the commit point ---- */

/* Send the client's response head for attempt a: from here on its answer is the client's. */
static int send_head(struct bb_attempt *a, const char *ctype, enum bb_body_mode mode, int64_t len)
{
    struct bb_request *req = a->req;
    char hdrs[1024];
    size_t hl = bb_attempt_headers(req, a, hdrs, sizeof hdrs);
    req->bill_lane = a->lane; /* this answer reaches the client: it is billed */
    bb_obs_attempt_commit(req);
    bb_router_observe_latency(req->w, req->pool, a->member, bb_now_us() - a->t_sent_us);
    if (req->stream)
        bb_router_observe_ttft(req->w, req->pool, a->member, bb_now_us() - a->t_sent_us);
    req->t_upstream_us += bb_now_us() - a->t_sent_us;
    a->t_sent_us = bb_now_us();
    return bb_http_respond_head(req, a->status, ctype, hdrs, hl, mode, len);
}

static void stop_timers(struct bb_attempt *a)
{
    if (a->ttft)
        evtimer_del(a->ttft);
    if (a->hold)
        evtimer_del(a->hold);
}

/* Write held stream bytes to the client once live (moved, one chunk per upstream read). */
static void flush_pending(struct bb_attempt *a)
{
    if (a->state != BB_ATT_LIVE || !a->pending || evbuffer_get_length(a->pending) == 0)
        return;
    bb_http_respond_buffer(a->req, a->pending);
}

/* HOLD → LIVE: the stream's head goes to the client (a continuation has sent it already). */
static int go_live(struct bb_attempt *a)
{
    struct bb_request *req = a->req;
    struct bb_route_state *rs = req->route;
    bb_attempt_to(a, BB_ATT_LIVE);
    stop_timers(a);
    if (rs->cont.enabled)
        rs->cont.enc = a->enc; /* the client's encoder from now on, whichever lane feeds it */
    if (a->continuation) {
        req->bill_lane = a->lane;
        bb_obs_attempt_commit(req);
        bb_info("request %s: lane %s continues the stream", req->id,
                req->w->conf->lanes[a->lane].name);
        return 0;
    }
    const char *ctype = a->verbatim ? a->content_type : a->iops->stream_content_type(&rs->ictx);
    return send_head(a, ctype, BB_BODY_CHUNKED, -1);
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

/* stream.prerelease_ms ran out with the upstream healthy: release what was held. */
static void hold_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct bb_attempt *a = att_check(arg);
    if (a->state == BB_ATT_HOLD && go_live(a) == 0)
        flush_pending(a);
}

void *bb_relay_encoder(struct bb_attempt *a)
{
    if (!a->enc) {
        a->enc = bb_arena_calloc(&a->req->arena, a->iops->enc_size ? a->iops->enc_size : 1);
        if (a->enc)
            a->iops->enc_init(a->enc, &a->req->route->ictx);
    }
    return a->enc;
}

void bb_relay_error_event(struct bb_request *req, void *enc, const struct bb_proto_ops *iops,
                          const char *what)
{
    if (!enc || !req->responded)
        return;
    struct bb_ir_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = BB_IR_EV_ERROR;
    ev.text.p = (char *)what;
    ev.text.len = strlen(what);
    ev.error_type.p = (char *)bb_errors_type(req->ingress, 502);
    ev.error_type.len = strlen(ev.error_type.p);
    ev.error_status = 502;
    struct evbuffer *out = evbuffer_new();
    struct bb_arena scratch;
    bb_arena_init(&scratch, 1u << 20);
    if (out && iops->enc_event(enc, &scratch, &ev, out) == 0) {
        size_t n = evbuffer_get_length(out);
        bb_http_respond_body(req, evbuffer_pullup(out, (ev_ssize_t)n), n);
    }
    bb_arena_free(&scratch);
    if (out)
        evbuffer_free(out);
    bb_http_respond_end(req); /* the error event is the end: no terminator */
}

/* ---- continuation bookkeeping (stream.on_cut: continue) ---- */

void bb_relay_cont_track(struct bb_cont *c, const struct bb_ir_event *ev)
{
    switch (ev->type) {
    case BB_IR_EV_BLOCK_START:
        if (ev->block_type == BB_IR_TEXT)
            c->open_text = (int)ev->index;
        else
            c->non_text = true;
        if (ev->index + 1 > c->next_index)
            c->next_index = ev->index + 1;
        break;
    case BB_IR_EV_BLOCK_DELTA:
        if (ev->delta == BB_IR_D_TEXT && (int)ev->index == c->open_text && ev->text.len) {
            if (!c->text)
                c->text = evbuffer_new();
            if (c->text)
                evbuffer_add(c->text, ev->text.p, ev->text.len);
        } else if (ev->delta != BB_IR_D_TEXT) {
            c->non_text = true;
        }
        break;
    case BB_IR_EV_BLOCK_STOP:
        if ((int)ev->index == c->open_text)
            c->open_text = -1;
        break;
    default:
        break;
    }
}

static void usage_add(struct bb_ir_usage *u, const struct bb_ir_usage *b)
{
    if (!b->set)
        return;
    u->set = true;
    u->input += b->input;
    u->output += b->output;
    u->cache_read += b->cache_read;
    u->cache_write += b->cache_write;
    u->reasoning += b->reasoning;
}

/* A continuation's event as the client's stream needs it: its message start is the client's
 * already, its first text block joins the one left open, its block indexes follow the
 * client's, and its usage adds to the parts before it. 0 = encode *ev, 1 = drop it. */
static int cont_map(struct bb_cont *c, struct bb_ir_event *ev, struct bb_arena *scratch, void *enc,
                    const struct bb_proto_ops *iops, struct evbuffer *out)
{
    switch (ev->type) {
    case BB_IR_EV_MESSAGE_START:
    case BB_IR_EV_PING:
        return 1;
    case BB_IR_EV_BLOCK_START:
        if (!c->mapped) {
            c->mapped = true;
            c->merge = ev->block_type == BB_IR_TEXT && c->open_text >= 0;
            if (!c->merge && c->open_text >= 0) { /* close the client's text block first */
                struct bb_ir_event stop = {.type = BB_IR_EV_BLOCK_STOP,
                                           .index = (uint32_t)c->open_text,
                                           .block_type = BB_IR_TEXT};
                bb_relay_cont_track(c, &stop);
                if (iops->enc_event(enc, scratch, &stop, out) < 0)
                    return -1;
            }
            c->base = c->merge ? (uint32_t)c->open_text - ev->index : c->next_index - ev->index;
            if (c->merge)
                return 1;
        }
        ev->index += c->base;
        return 0;
    case BB_IR_EV_BLOCK_DELTA:
    case BB_IR_EV_BLOCK_STOP:
        if (!c->mapped) { /* a delta before any block start: the open text block goes on */
            c->mapped = true;
            c->merge = c->open_text >= 0;
            c->base = c->merge ? (uint32_t)c->open_text - ev->index : c->next_index - ev->index;
        }
        ev->index += c->base;
        return 0;
    case BB_IR_EV_MESSAGE_DELTA: {
        struct bb_ir_usage u = c->banked;
        usage_add(&u, &ev->usage);
        if (u.set)
            ev->usage = u;
        return 0;
    }
    default:
        return 0;
    }
}

/* ---- streams ---- */

struct frame_ctx {
    struct bb_attempt *a;
    struct bb_arena *scratch;
};

/* One decoded IR event of the upstream stream. */
static int on_ir_event(void *arg, const struct bb_ir_event *ev_in)
{
    struct frame_ctx *fc = arg;
    struct bb_attempt *a = fc->a;
    struct bb_request *req = a->req;
    struct bb_route_state *rs = req->route;
    switch (ev_in->type) {
    case BB_IR_EV_ERROR:
        snprintf(a->fail_msg, sizeof a->fail_msg, "in-band stream error: %.*s",
                 (int)(ev_in->text.len < 200 ? ev_in->text.len : 200),
                 ev_in->text.p ? ev_in->text.p : "");
        a->frame_fail = a->fail_msg;
        /* before the commit point: fail over invisibly; after it, a stream the pool continues
         * treats it as a cut; otherwise the client gets the error event, which ends it */
        if (a->state != BB_ATT_LIVE || rs->cont.enabled || a->verbatim || !a->enc)
            return 1;
        a->error_sent = true;
        return a->iops->enc_event(a->enc, fc->scratch, ev_in, a->pending) < 0 ? -1 : 1;
    case BB_IR_EV_MESSAGE_START:
        bb_meter_usage(req, &ev_in->usage);
        break;
    case BB_IR_EV_MESSAGE_DELTA:
        if (ev_in->stop != BB_IR_STOP_UNSET && a->seen < BB_SEEN_STOP)
            a->seen = BB_SEEN_STOP;
        if (a->seen < BB_SEEN_CONTENT)
            a->seen = BB_SEEN_CONTENT;
        bb_meter_usage(req, &ev_in->usage);
        break;
    case BB_IR_EV_MESSAGE_STOP:
        a->seen = BB_SEEN_END;
        break;
    case BB_IR_EV_BLOCK_START:
    case BB_IR_EV_BLOCK_DELTA:
        if (a->seen < BB_SEEN_CONTENT)
            a->seen = BB_SEEN_CONTENT;
        break;
    default:
        break;
    }
    if (a->verbatim || !a->enc)
        return 0;
    struct bb_ir_event ev = *ev_in;
    if (ev.type == BB_IR_EV_BLOCK_START && ev.block_type == BB_IR_TOOL_USE &&
        a->egress != req->ingress)
        ev.id = bb_ir_id_wrap(fc->scratch, a->iops->tool_id_prefix, ev_in->id);
    if (a->continuation) {
        int r = cont_map(&rs->cont, &ev, fc->scratch, a->enc, a->iops, a->pending);
        if (r)
            return r < 0 ? -1 : 0;
    }
    if (rs->cont.enabled)
        bb_relay_cont_track(&rs->cont, &ev);
    return a->iops->enc_event(a->enc, fc->scratch, &ev, a->pending) < 0 ? -1 : 0;
}

/* Run the decoder on one frame, or (f NULL) let it finish a stream that ended without its
 * terminator. -1 with a->frame_fail set when the stream is broken. */
static int decode(struct bb_attempt *a, const struct bb_frame *f)
{
    struct bb_arena scratch;
    bb_arena_init(&scratch, FRAME_MAX * 2);
    struct frame_ctx fc = {a, &scratch};
    int rc = f ? a->eops->dec_frame(a->dec, &scratch, f, on_ir_event, &fc)
               : a->eops->dec_finish(a->dec, &scratch, on_ir_event, &fc);
    bb_arena_free(&scratch);
    if (a->frame_fail)
        return -1;
    if (rc < 0) {
        a->frame_fail = "malformed stream frame";
        return -1;
    }
    return 0;
}

static void seen_at_least(struct bb_attempt *a, enum bb_att_seen s)
{
    if (a->seen < s)
        a->seen = s;
}

/* A same-protocol frame, relayed as it came: the module's scan says what it means (no DOM).
 * 1 = relay it, 0 = leave it out, -1 = stop (a->frame_fail). */
static int scan_frame(struct bb_attempt *a, const struct bb_frame *f, const void *raw,
                      size_t raw_len)
{
    struct bb_frame_info fi;
    if (a->eops->frame_scan(f, &a->fstate, &fi) < 0) {
        a->frame_fail = "malformed stream frame";
        return -1;
    }
    if (fi.error) {
        snprintf(a->fail_msg, sizeof a->fail_msg, "in-band stream error: %s", fi.error_msg);
        a->frame_fail = a->fail_msg;
        if (a->state == BB_ATT_LIVE) { /* the provider's own error event ends the stream */
            evbuffer_add(a->pending, raw, raw_len);
            a->error_sent = true;
        }
        return -1;
    }
    if (fi.usage.set)
        bb_meter_usage(a->req, &fi.usage);
    if (fi.content)
        seen_at_least(a, BB_SEEN_CONTENT);
    if (fi.stop)
        seen_at_least(a, BB_SEEN_STOP);
    if (fi.end)
        seen_at_least(a, BB_SEEN_END);
    return !(a->strip_usage_chunk && fi.usage_only);
}

/* One upstream frame: scan and relay (same protocol) or decode and translate, go live when
 * meaningful. 0 = go on, -1 = stop feeding: a->frame_fail says why, and up_body acts on it
 * once the framer has returned (the failover path may free the framer and the attempt, so it
 * never runs inside the callback). Held bytes go out once per upstream read (up_body). */
static int handle_frame(struct bb_attempt *a, const struct bb_frame *f, const void *raw,
                        size_t raw_len)
{
    if (a->verbatim) {
        int r = scan_frame(a, f, raw, raw_len);
        if (r < 0)
            return -1;
        if (r)
            evbuffer_add(a->pending, raw, raw_len);
    } else if (decode(a, f) < 0) {
        return -1;
    }
    if (a->state == BB_ATT_HOLD && a->seen >= BB_SEEN_CONTENT) {
        uint32_t hold = a->req->pool >= 0 && !a->continuation
                            ? a->req->w->conf->pools[a->req->pool].prerelease_ms
                            : 0;
        if (hold && !a->hold) { /* widen the failover window (SPEC §5.4) */
            a->hold = evtimer_new(a->req->w->base, hold_cb, a);
            struct timeval tv = {hold / 1000, (hold % 1000) * 1000};
            if (a->hold)
                evtimer_add(a->hold, &tv);
        }
        if (!a->hold && go_live(a) < 0) {
            a->frame_fail = "the client went away";
            return -1;
        }
    }
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

/* A stream attempt failed: fail over before the commit point, else break the client's
 * stream (or continue it). */
static void stream_failed(struct bb_attempt *a, const char *what, enum bb_fclass fc)
{
    if (a->state == BB_ATT_LIVE)
        bb_attempt_broken(a, what, fc);
    else
        bb_attempt_fail(a, what, fc);
}

/* The upstream stream ended (its body is complete at the transport level). */
static void stream_end(struct bb_attempt *a)
{
    struct bb_request *req = a->req;
    size_t held =
        a->framer == BB_FRAMER_ES ? bb_eventstream_pending(&a->es) : bb_sse_pending(&a->sse);
    if (held) {
        stream_failed(a, "stream ended inside a frame", BB_FC_SERVER);
        return;
    }
    /* No terminator: the answer is finished when its final state is known (the decoder's
     * dec_finish; the same protocol's terminator after a relayed stream; docs/reliability.md
     * lists the rule per protocol); otherwise it is a cut. */
    if (a->seen < BB_SEEN_END && a->verbatim && a->seen == BB_SEEN_STOP) {
        if (a->eops->terminator)
            evbuffer_add(a->pending, a->eops->terminator,
                         a->eops->terminator_len ? a->eops->terminator_len
                                                 : strlen(a->eops->terminator));
        a->seen = BB_SEEN_END;
    } else if (a->seen < BB_SEEN_END && a->dec && a->eops->dec_finish) {
        if (decode(a, NULL) < 0) {
            stream_failed(a, a->frame_fail, BB_FC_SERVER);
            return;
        }
    }
    if (a->seen < BB_SEEN_END) {
        stream_failed(a,
                      a->seen >= BB_SEEN_CONTENT ? "stream ended without its final state"
                                                 : "stream ended before its first event",
                      BB_FC_SERVER);
        return;
    }
    if (a->state == BB_ATT_HOLD && go_live(a) < 0) { /* finished inside the prerelease hold */
        bb_request_finish(req);
        return;
    }
    if (a->state != BB_ATT_LIVE) {
        bb_attempt_fail(a, "stream ended before its first event", BB_FC_SERVER);
        return;
    }
    if (a->enc && !a->verbatim && a->iops->enc_finish) {
        a->iops->enc_finish(a->enc, a->pending);
        if (req->route->cont.enc == a->enc)
            req->route->cont.enc = NULL;
        a->enc = NULL;
    }
    flush_pending(a);
    bb_attempt_done(a);
}

/* ---- non-stream answers ---- */

static bool json_type(const char *ctype)
{
    size_t n = strcspn(ctype, ";");
    while (n && (ctype[n - 1] == ' ' || ctype[n - 1] == '\t'))
        n--;
    return (n == 16 && strncasecmp(ctype, "application/json", 16) == 0) ||
           (n > 5 && strncasecmp(ctype + n - 5, "+json", 5) == 0);
}

/* The whole body of a 2xx non-stream answer arrived: validate, then commit it. */
static void answer_end(struct bb_attempt *a)
{
    struct bb_request *req = a->req;
    struct bb_route_state *rs = req->route;
    const struct bb_conf *conf = req->w->conf;
    size_t len = evbuffer_get_length(a->body);
    const char *raw = len ? (const char *)evbuffer_pullup(a->body, (ev_ssize_t)len) : "";
    struct bb_proto_error pe;
    memset(&pe, 0, sizeof pe);
    struct bb_ir_usage usage;
    memset(&usage, 0, sizeof usage);
    int shape = a->eops->answer_check(raw, len, a->verbatim ? &usage : NULL, &pe);
    if (shape < 0) {
        snprintf(a->fail_msg, sizeof a->fail_msg, "malformed answer body (%.200s)", pe.message);
        bb_attempt_fail(a, a->fail_msg, BB_FC_SERVER);
        return;
    }
    if (shape > 0) { /* a 200 that carries the provider's error object */
        enum bb_fclass fc =
            bb_classify_error(&conf->providers[conf->lanes[a->lane].provider], 0, &pe);
        snprintf(a->fail_msg, sizeof a->fail_msg, "in-band error in a 200 answer (%s): %.160s",
                 bb_fclass_name(fc), pe.message[0] ? pe.message : pe.type);
        bb_attempt_fail(a, a->fail_msg, fc);
        return;
    }
    if (a->verbatim) {
        bb_meter_usage(req, &usage); /* read by the same scan, not a DOM */
        send_head(a, a->content_type[0] ? a->content_type : "application/json", BB_BODY_LENGTH,
                  (int64_t)len);
        bb_http_respond_buffer(req, a->body); /* moved, not copied */
        bb_attempt_done(a);
        return;
    }
    struct bb_ir_response resp;
    memset(&resp, 0, sizeof resp);
    struct bb_err err;
    if (a->eops->read_response(&req->arena, raw, len, &resp, &err) < 0) {
        snprintf(a->fail_msg, sizeof a->fail_msg, "malformed answer body: %.200s", err.msg);
        bb_attempt_fail(a, a->fail_msg, BB_FC_SERVER);
        return;
    }
    bb_meter_usage(req, &resp.usage);
    if (a->egress != req->ingress)
        bb_ir_response_wrap_ids(&req->arena, &resp, a->iops->tool_id_prefix);
    struct evbuffer *out = evbuffer_new();
    if (!out || a->iops->write_response(&req->arena, &resp, &rs->ictx, out) < 0) {
        if (out)
            evbuffer_free(out);
        bb_attempt_fail(a, "could not write the translated answer", BB_FC_FATAL);
        return;
    }
    send_head(a, "application/json", BB_BODY_LENGTH, (int64_t)evbuffer_get_length(out));
    bb_http_respond_buffer(req, out);
    evbuffer_free(out);
    bb_attempt_done(a);
}

/* ---- upstream callbacks ---- */

static int up_head(void *arg, const struct bb_http_head *h)
{
    struct bb_attempt *a = att_check(arg);
    struct bb_request *req = a->req;
    a->status = h->status;
    bb_router_observe_ratelimit(req->w, a->lane, h, bb_now_ms()); /* route: usage */
    copy_header(h, "content-type", a->content_type, sizeof a->content_type);
    copy_header(h, "retry-after", a->retry_after, sizeof a->retry_after);
    if (h->status < 200 || h->status > 599) {
        snprintf(a->fail_msg, sizeof a->fail_msg, "invalid HTTP status %d", h->status);
        bb_attempt_fail(a, a->fail_msg, BB_FC_SERVER);
        return -1;
    }
    if (h->status >= 300 && h->status < 400) {
        snprintf(a->fail_msg, sizeof a->fail_msg,
                 "upstream answered a redirect (HTTP %d), which busbar never follows", h->status);
        bb_attempt_fail(a, a->fail_msg, BB_FC_SERVER);
        return -1;
    }
    if (h->status >= 400) {
        bb_attempt_to(a, BB_ATT_ERROR_BODY);
        a->body = evbuffer_new();
        return a->body ? 0 : -1;
    }
    bool stream = req->stream;
    const char *want = !stream ? NULL
                       : a->eops->framing == BB_FRAMING_EVENTSTREAM
                           ? "application/vnd.amazon.eventstream"
                           : "text/event-stream";
    if (a->content_type[0] && (stream ? strncasecmp(a->content_type, want, strlen(want)) != 0
                                      : !json_type(a->content_type))) {
        snprintf(a->fail_msg, sizeof a->fail_msg, "upstream answered %d with Content-Type %.80s",
                 h->status, a->content_type);
        bb_attempt_fail(a, a->fail_msg, BB_FC_SERVER);
        return -1;
    }
    if (!stream) {
        bb_attempt_to(a, BB_ATT_BUFFER); /* the whole answer first */
        a->body = evbuffer_new();
        return a->body ? 0 : -1;
    }
    bb_attempt_to(a, BB_ATT_HOLD);
    a->pending = evbuffer_new();
    if (!a->pending)
        return -1;
    if (a->eops->framing == BB_FRAMING_EVENTSTREAM) {
        bb_eventstream_init(&a->es, FRAME_MAX);
        a->framer = BB_FRAMER_ES;
    } else {
        bb_sse_init(&a->sse, FRAME_MAX);
        a->framer = BB_FRAMER_SSE;
    }
    if (!a->verbatim) { /* a same-protocol stream is scanned, not decoded */
        a->dec = bb_arena_calloc(&req->arena, a->eops->dec_size ? a->eops->dec_size : 1);
        if (!a->dec)
            return -1;
        a->eops->dec_init(a->dec);
    }
    /* a continuation keeps the client's encoder; a verbatim stream makes one only to render an
     * error of its own (bb_relay_encoder) */
    if (!a->verbatim && !bb_relay_encoder(a))
        return -1;
    if (req->pool >= 0 && !req->w->conf->pools[req->pool].hold_first_event && !a->continuation)
        return go_live(a); /* opted out of the commit-point hold */
    return 0;
}

static int up_body(void *arg, const char *data, size_t len)
{
    struct bb_attempt *a = att_check(arg);
    switch (a->state) {
    case BB_ATT_ERROR_BODY: {
        size_t have = evbuffer_get_length(a->body);
        if (have < ERRBODY_MAX)
            evbuffer_add(a->body, data, len < ERRBODY_MAX - have ? len : ERRBODY_MAX - have);
        return 0;
    }
    case BB_ATT_BUFFER: {
        uint64_t max = a->req->w->conf->limits.response_body_max_bytes;
        if (a->ttft)
            evtimer_del(a->ttft); /* the first byte arrived in time */
        if (evbuffer_get_length(a->body) + len > max) {
            snprintf(a->fail_msg, sizeof a->fail_msg,
                     "the answer exceeds limits.response_body_max_bytes (%llu bytes)",
                     (unsigned long long)max);
            bb_attempt_fail(a, a->fail_msg, BB_FC_FATAL);
            return -1;
        }
        evbuffer_add(a->body, data, len);
        return 0;
    }
    case BB_ATT_HOLD:
    case BB_ATT_LIVE: {
        /* A client that has taken everything so far gets this read's bytes (and the head, when
         * the stream goes live in it) in one write straight away; one still reading earlier
         * bytes gets them when its socket has room. */
        bool idle = bb_http_output_pending(a->req) == 0;
        int rc = a->framer == BB_FRAMER_ES ? bb_eventstream_feed(&a->es, data, len, on_es, a)
                                           : bb_sse_feed(&a->sse, data, len, on_sse, a);
        flush_pending(a);
        if (idle)
            bb_http_write_soon(a->req);
        if (rc > 0 && a->frame_fail) {
            stream_failed(a, a->frame_fail, BB_FC_SERVER);
            return -1;
        }
        if (rc > 0)
            return -1;
        if (rc < 0) { /* oversize or corrupt framing: this upstream is broken */
            stream_failed(a, "malformed stream framing", BB_FC_SERVER);
            return -1;
        }
        backpressure(a);
        return 0;
    }
    default:
        return -1;
    }
}

/* The exchange with the upstream is over (the connection went back to its pool). */
static void up_end(void *arg)
{
    struct bb_attempt *a = att_check(arg);
    a->up = NULL;
    switch (a->state) {
    case BB_ATT_ERROR_BODY:
        bb_attempt_http_error(a);
        return;
    case BB_ATT_BUFFER:
        answer_end(a);
        return;
    case BB_ATT_HOLD:
    case BB_ATT_LIVE:
        stream_end(a);
        return;
    default:
        bb_crit("relay: upstream end in state %s", bb_att_state_name(a->state));
        abort();
    }
}

static void up_error(void *arg, enum bb_upfail why, bool bytes_seen)
{
    struct bb_attempt *a = att_check(arg);
    (void)bytes_seen;
    a->up = NULL; /* already freed by the upstream module */
    if ((a->state == BB_ATT_HOLD || a->state == BB_ATT_LIVE) && a->seen == BB_SEEN_END) {
        stream_end(a); /* the answer was whole: a connection lost after it changes nothing */
        return;
    }
    bool timeout = why == BB_UPFAIL_CONNECT_TIMEOUT || why == BB_UPFAIL_HEAD_TIMEOUT ||
                   why == BB_UPFAIL_IDLE_TIMEOUT;
    enum bb_fclass fc = timeout                     ? BB_FC_TIMEOUT
                        : why == BB_UPFAIL_PROTOCOL ? BB_FC_SERVER
                        : why == BB_UPFAIL_DENIED   ? BB_FC_FATAL /* SSRF: no failover */
                                                    : BB_FC_NETWORK;
    stream_failed(a, bb_upfail_name(why), fc);
}

const struct bb_upstream_cbs bb_relay_cbs = {up_head, up_body, up_end, up_error};
