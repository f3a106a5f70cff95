/*
 * h2: HTTP/2 client connections on libnghttp2. Worker process, single-threaded loop.
 *
 * One struct bb_h2 per connection (owned by http_server's struct bb_conn, freed with it) and
 * one struct bb_h2_stream per stream. A stream's request head is rebuilt as an HTTP/1.1 head
 * ("METHOD path HTTP/1.1", host from :authority, the fields as they came) and handed to
 * bb_request_new, so the request is the same object the HTTP/1.1 path builds; its body comes
 * from DATA frames. Responses go out through the stream's out buffer: DATA frames are cut
 * from it (no copy) as flow control allows, so a slow reader stalls only its own stream, and
 * its backlog pauses only its own upstream (bb_h2_output_pending / bb_h2_on_drained).
 *
 * nghttp2 is never re-entered: its callbacks only change state and submit frames, and the
 * frames are serialised (nghttp2_session_send) from a deferred event once per loop pass, so
 * the head, body and end of a response written in one callback leave in one write.
 *
 * Lifetimes: nghttp2 closes a stream (on_stream_close) and the request ends (bb_request_finish
 * → bb_h2_request_done) in either order; the stream object is freed when both happened. A
 * stream closed while its request runs (RST_STREAM, a connection error) ends the request as a
 * client disconnect (bb_request_client_gone: upstream cancelled, slot and reservation given
 * back).
 *
 * Limits: SETTINGS_MAX_CONCURRENT_STREAMS = limits.h2_max_streams (nghttp2 refuses more),
 * SETTINGS_MAX_HEADER_LIST_SIZE = limits.header_max_bytes (a larger head is answered 431 in
 * the route's dialect), request bodies as on HTTP/1.1 (413, body deadline 408), a header
 * block that does not complete within limits.header_timeout_ms or an idle connection ends
 * with GOAWAY, and token buckets against rapid reset (CVE-2023-44487: RST_STREAM and streams
 * reset for client errors), CONTINUATION floods (a bounded count per header block) and
 * SETTINGS/PING/PRIORITY floods: the connection gets GOAWAY ENHANCE_YOUR_CALM and the event
 * is counted (busbar_http2_*_total).
 */
#include "worker/h2.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <nghttp2/nghttp2.h>

#include "common/log.h"
#include "common/metrics_shm.h"
#include "common/shm.h"
#include "worker/errors_http.h"
#include "worker/http_server.h"
#include "worker/worker.h"

#define BB_MAGIC_H2 0x48324331u
#define BB_MAGIC_H2S 0x48325331u

#define OUT_HIGH_WATER (1u << 20) /* connection output: stop serialising frames above this */
#define OUT_LOW_WATER (256u << 10)
#define STREAM_LOW_WATER (256u << 10) /* a stream's backlog that resumes its upstream */
#define STREAM_WINDOW (1u << 20)      /* SETTINGS_INITIAL_WINDOW_SIZE */
#define CONN_WINDOW (8u << 20)        /* connection receive window */
#define DRAIN_ACK_MS 1000             /* longest wait for the PING ack before the final GOAWAY */
#define DRAIN_IDLE_MS 500
#define CTRL_BURST 100.0 /* SETTINGS/PING/PRIORITY frames: burst, then per second */
#define CTRL_RATE 20.0

enum stream_state { S_HEADERS, S_BODY, S_BUSY };
enum conn_timer { T_NONE, T_IDLE, T_HEADER, T_DRAIN };

struct bucket {
    double tokens;
    uint64_t t_ms;
};

struct bb_h2_stream {
    uint32_t magic;
    struct bb_h2 *h;
    struct bb_h2_stream *prev, *next;
    int32_t id;
    enum stream_state st;
    struct bb_request *req; /* while the request runs */
    /* the request head being rebuilt */
    char *method, *path, *authority;
    struct evbuffer *fields; /* "name: value\r\n" lines */
    size_t head_bytes;       /* as HTTP/2 counts a header list (RFC 9113 §6.5.2) */
    bool head_too_large;
    bool saw_host;
    struct evbuffer *body;
    /* the response */
    struct evbuffer *out; /* body bytes not yet in a DATA frame */
    bool eof;             /* bb_h2_respond_end: END_STREAM after out */
    bool rst_after;       /* the request ended with its answer incomplete: reset after out */
    bool rst_no_error;    /* answered before the client finished sending: RST NO_ERROR after */
    bool closed;          /* nghttp2 closed the stream */
    bool counted;         /* in w->n_active */
    bool timer_on;
    void (*drained_cb)(struct bb_request *);
    struct event *timer; /* body deadline, then the send stall deadline */
};

struct bb_h2 {
    uint32_t magic;
    struct bb_worker *w;
    struct bb_conn *conn;
    struct bufferevent *bev;
    nghttp2_session *ss;
    struct event *flush_ev; /* deferred nghttp2_session_send */
    struct event *timer;    /* idle, header block, drain */
    enum conn_timer timer_mode;
    struct bb_h2_stream *streams;
    uint32_t n_streams;
    struct bb_h2_stream *hdr_stream; /* the stream whose header block is being received */
    bool flush_scheduled;
    bool in_lib; /* inside nghttp2_session_mem_recv / _send */
    bool check_drained;
    bool read_paused;
    bool draining, ack_seen, goaway_final;
    bool start_read;  /* the bytes read before the handover wait for the first flush */
    bool terminating; /* GOAWAY with an error queued: input is no longer read */
    bool closing;     /* the streams are gone; the next flush hands the connection back */
    struct bucket resets, ctrl;
};

static void h2_schedule(struct bb_h2 *h);
static void h2_update_timer(struct bb_h2 *h);
static void h2_read_cb(struct bufferevent *bev, void *arg);

static struct bb_h2 *h2_check(void *arg)
{
    struct bb_h2 *h = arg;
    if (h->magic != BB_MAGIC_H2) {
        bb_crit("h2: bad connection magic %#x", h->magic);
        abort();
    }
    return h;
}

static struct bb_h2_stream *stream_check(void *arg)
{
    struct bb_h2_stream *s = arg;
    if (s->magic != BB_MAGIC_H2S) {
        bb_crit("h2: bad stream magic %#x", s->magic);
        abort();
    }
    return s;
}

static _Atomic uint64_t *counter(struct bb_h2 *h, enum bb_mx_global g)
{
    return &h->w->rt->shm->metrics.global[g];
}

static void timer_ms(struct event *ev, uint32_t ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(ev, &tv);
}

/* A token bucket: false when empty (the flood bound is crossed). */
static bool bucket_take(struct bucket *b, double burst, double rate)
{
    uint64_t now = bb_now_ms();
    if (b->t_ms == 0)
        b->tokens = burst;
    else
        b->tokens += (double)(now - b->t_ms) * rate / 1000.0;
    if (b->tokens > burst)
        b->tokens = burst;
    b->t_ms = now;
    if (b->tokens < 1.0)
        return false;
    b->tokens -= 1.0;
    return true;
}

/* A client crossed a flood bound: GOAWAY ENHANCE_YOUR_CALM, counted, and the connection ends
 * once the GOAWAY is written. */
static void h2_abuse(struct bb_h2 *h, enum bb_mx_global g, const char *what)
{
    if (h->closing)
        return;
    if (!h->terminating)
        atomic_fetch_add_explicit(counter(h, g), 1, memory_order_relaxed);
    bb_warn("h2: %s: the connection is closed with GOAWAY ENHANCE_YOUR_CALM", what);
    h->terminating = true;
    nghttp2_session_terminate_session(h->ss, NGHTTP2_ENHANCE_YOUR_CALM);
    h2_schedule(h);
}

/* ---- streams ---- */

static void stream_timer_cb(evutil_socket_t fd, short what, void *arg);

static struct bb_h2_stream *stream_new(struct bb_h2 *h, int32_t id)
{
    struct bb_h2_stream *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->magic = BB_MAGIC_H2S;
    s->h = h;
    s->id = id;
    if (h->timer_mode == T_IDLE) { /* not idle any more: the deadline restarts when it is */
        evtimer_del(h->timer);
        h->timer_mode = T_NONE;
    }
    s->next = h->streams;
    if (h->streams)
        h->streams->prev = s;
    h->streams = s;
    h->n_streams++;
    return s;
}

static void stream_uncount(struct bb_h2_stream *s, bool served)
{
    struct bb_worker *w = s->h->w;
    if (!s->counted)
        return;
    s->counted = false;
    w->n_active--;
    atomic_store_explicit(&w->self->inflight, w->n_active, memory_order_relaxed);
    if (served)
        atomic_fetch_add_explicit(&w->self->requests, 1, memory_order_relaxed);
}

static void stream_free(struct bb_h2_stream *s)
{
    struct bb_h2 *h = s->h;
    if (h->hdr_stream == s)
        h->hdr_stream = NULL;
    if (s->prev)
        s->prev->next = s->next;
    else
        h->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    h->n_streams--;
    if (s->timer)
        event_free(s->timer);
    if (s->fields)
        evbuffer_free(s->fields);
    if (s->body)
        evbuffer_free(s->body);
    if (s->out)
        evbuffer_free(s->out);
    free(s->method);
    free(s->path);
    free(s->authority);
    s->magic = 0;
    free(s);
}

static void stream_timer(struct bb_h2_stream *s, uint32_t ms)
{
    if (!s->timer && !(s->timer = evtimer_new(s->h->w->base, stream_timer_cb, s)))
        return; /* OOM: the stream goes without this deadline */
    timer_ms(s->timer, ms);
    s->timer_on = true;
}

static void stream_timer_stop(struct bb_h2_stream *s)
{
    if (s->timer_on) {
        evtimer_del(s->timer);
        s->timer_on = false;
    }
}

/* The client is gone from this stream (reset, connection error or close): its request ends
 * as a client disconnect does on HTTP/1.1. */
static void stream_client_gone(struct bb_h2_stream *s)
{
    struct bb_request *req = s->req;
    if (!req)
        return;
    s->req = NULL;
    req->h2 = NULL;
    req->conn = NULL;
    stream_uncount(s, false);
    bb_request_client_gone(req);
}

/* A request-level error on a stream before (or instead of) its own request: answered through
 * a request built from the request line alone, so it has an id, the route's dialect and an
 * access log line like any other. */
static void stream_fail(struct bb_h2_stream *s, enum bb_errkind kind, const char *msg)
{
    struct bb_h2 *h = s->h;
    char line[512];
    int n = snprintf(line, sizeof line, "%s %s HTTP/1.1\r\n\r\n", s->method ? s->method : "GET",
                     s->path ? s->path : "/");
    struct bb_request *req = n > 0 && (size_t)n < sizeof line
                                 ? bb_request_new(h->w, h->conn, line, (size_t)n, NULL, 1u << 20)
                                 : NULL;
    if (!req) {
        nghttp2_submit_rst_stream(h->ss, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_PROTOCOL_ERROR);
        h2_schedule(h);
        return;
    }
    req->h2 = s;
    s->req = req;
    bb_request_fail(req, kind, msg);
}

static int stream_body_done(struct bb_h2_stream *s)
{
    struct bb_request *req = s->req;
    stream_timer_stop(s);
    s->st = S_BUSY;
    if (!req)
        return 0;
    size_t len = s->body ? evbuffer_get_length(s->body) : 0;
    if (len) {
        if (bb_http_request_body(req, s->body, len) < 0) {
            bb_request_fail(req, BB_ERR_TOO_LARGE, "request body too large");
            return 0;
        }
    }
    bb_request_dispatch(req);
    return 0;
}

/* The whole header block of a request arrived: build the request, route and authenticate
 * it on its head (as HTTP/1.1 does), then wait for the body or dispatch. */
static void stream_head_done(struct bb_h2_stream *s, bool end_stream)
{
    struct bb_h2 *h = s->h;
    struct bb_worker *w = h->w;
    const struct bb_limits *lim = &w->conf->limits;
    if (h->hdr_stream == s)
        h->hdr_stream = NULL;
    s->st = end_stream ? S_BUSY : S_BODY; /* an answer before the body resets the rest */
    if (!s->method || !s->path) {
        nghttp2_submit_rst_stream(h->ss, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_PROTOCOL_ERROR);
        return;
    }
    if (s->head_too_large) {
        stream_fail(s, BB_ERR_HEADERS_TOO_LARGE, "request head exceeds the header size limit");
        return;
    }
    struct evbuffer *head = evbuffer_new();
    if (!head) {
        stream_fail(s, BB_ERR_INTERNAL, "out of memory");
        return;
    }
    evbuffer_add_printf(head, "%s %s HTTP/1.1\r\n", s->method, s->path);
    if (s->authority && !s->saw_host)
        evbuffer_add_printf(head, "host: %s\r\n", s->authority);
    if (s->fields)
        evbuffer_add_buffer(head, s->fields);
    evbuffer_add(head, "\r\n", 2);
    size_t len = evbuffer_get_length(head);
    const char *p = (const char *)evbuffer_pullup(head, (ev_ssize_t)len);
    BB_HTTP_HEAD(parsed);
    int st = 400;
    int r = p ? bb_http_parse_request(p, len, &parsed, &st) : -1;
    struct bb_request *req = NULL;
    if (r == (int)len)
        req = bb_request_new(w, h->conn, p, len, &parsed, lim->request_body_max_bytes + (1u << 20));
    evbuffer_free(head);
    if (r != (int)len) {
        stream_fail(s, bb_errkind_from_status(r == 0 ? 400 : st), "malformed HTTP request");
        return;
    }
    if (!req) {
        stream_fail(s, BB_ERR_INTERNAL, "out of memory");
        return;
    }
    req->h2 = s;
    s->req = req;
    if (w->n_active >= w->max_active) {
        bb_request_fail(req, BB_ERR_OVERLOADED, "too many concurrent requests");
        return;
    }
    w->n_active++;
    s->counted = true;
    atomic_store_explicit(&w->self->inflight, w->n_active, memory_order_relaxed);
    if (req->head.content_length > 0 &&
        (uint64_t)req->head.content_length > lim->request_body_max_bytes) {
        bb_request_fail(req, BB_ERR_TOO_LARGE, "request body exceeds the limit");
        return;
    }
    if (!bb_request_route(req))
        return; /* answered and finished */
    if (end_stream) {
        stream_body_done(s);
        return;
    }
    if (req->head.expect_continue) {
        const nghttp2_nv nv[] = {
            {(uint8_t *)":status", (uint8_t *)"100", 7, 3, NGHTTP2_NV_FLAG_NONE}};
        nghttp2_submit_headers(h->ss, NGHTTP2_FLAG_NONE, s->id, NULL, nv, 1, NULL);
    }
    stream_timer(s, lim->body_timeout_ms);
}

static void stream_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct bb_h2_stream *s = stream_check(arg);
    struct bb_h2 *h = s->h;
    s->timer_on = false;
    if (s->st == S_BODY && s->req) {
        bb_request_fail(s->req, BB_ERR_REQUEST_TIMEOUT, "request body not received in time");
    } else if (s->st == S_BODY && !s->req && !s->closed) { /* answered; the rest never came */
        nghttp2_submit_rst_stream(h->ss, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_NO_ERROR);
    } else if (s->drained_cb && !s->closed) {
        bb_info("h2: stream %d: the client read none of its response for "
                "limits.send_timeout_ms: reset",
                s->id);
        nghttp2_submit_rst_stream(h->ss, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL);
    }
    h2_schedule(h);
}

/* ---- nghttp2 callbacks ---- */

static ssize_t send_cb(nghttp2_session *ss, const uint8_t *data, size_t len, int flags, void *arg)
{
    (void)ss;
    (void)flags;
    struct bb_h2 *h = arg;
    struct evbuffer *out = bufferevent_get_output(h->bev);
    if (evbuffer_get_length(out) > OUT_HIGH_WATER)
        return NGHTTP2_ERR_WOULDBLOCK;
    evbuffer_add(out, data, len);
    return (ssize_t)len;
}

/* DATA frames: the frame header, then the payload moved out of the stream's buffer. */
static int send_data_cb(nghttp2_session *ss, nghttp2_frame *frame, const uint8_t *framehd,
                        size_t length, nghttp2_data_source *source, void *arg)
{
    (void)ss;
    struct bb_h2 *h = arg;
    struct bb_h2_stream *s = source->ptr;
    struct evbuffer *out = bufferevent_get_output(h->bev);
    if (evbuffer_get_length(out) > OUT_HIGH_WATER)
        return NGHTTP2_ERR_WOULDBLOCK;
    evbuffer_add(out, framehd, 9);
    size_t pad = frame->data.padlen;
    if (pad > 0) {
        uint8_t b = (uint8_t)(pad - 1);
        evbuffer_add(out, &b, 1);
    }
    evbuffer_remove_buffer(s->out, out, length);
    if (pad > 1) {
        static const uint8_t zeros[256];
        evbuffer_add(out, zeros, pad - 1);
    }
    if (s->drained_cb)
        h->check_drained = true;
    return 0;
}

static ssize_t data_read_cb(nghttp2_session *ss, int32_t id, uint8_t *buf, size_t length,
                            uint32_t *flags, nghttp2_data_source *source, void *arg)
{
    (void)ss;
    (void)id;
    (void)buf;
    (void)arg;
    struct bb_h2_stream *s = source->ptr;
    size_t n = evbuffer_get_length(s->out);
    if (n == 0) {
        if (s->eof) {
            *flags |= NGHTTP2_DATA_FLAG_EOF;
            return 0;
        }
        if (s->rst_after)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* RST_STREAM INTERNAL_ERROR */
        return NGHTTP2_ERR_DEFERRED;
    }
    if (n > length)
        n = length;
    *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    if (s->eof && n == evbuffer_get_length(s->out))
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static int on_begin_headers(nghttp2_session *ss, const nghttp2_frame *frame, void *arg)
{
    struct bb_h2 *h = arg;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    struct bb_h2_stream *s = stream_new(h, frame->hd.stream_id);
    if (!s || nghttp2_session_set_stream_user_data(ss, frame->hd.stream_id, s) != 0) {
        if (s)
            stream_free(s);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    h->hdr_stream = s;
    return 0;
}

static char *dup_n(const uint8_t *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

static int on_header(nghttp2_session *ss, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *arg)
{
    (void)flags;
    struct bb_h2 *h = arg;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0; /* trailers: not part of the request busbar reads */
    struct bb_h2_stream *s = nghttp2_session_get_stream_user_data(ss, frame->hd.stream_id);
    if (!s || s->head_too_large)
        return 0;
    s->head_bytes += namelen + valuelen + 32;
    if (s->head_bytes > h->w->conf->limits.header_max_bytes) {
        s->head_too_large = true; /* answered 431 once the block is complete */
        return 0;
    }
    char **pseudo = NULL;
    if (namelen > 0 && name[0] == ':') {
        if (namelen == 7 && memcmp(name, ":method", 7) == 0)
            pseudo = &s->method;
        else if (namelen == 5 && memcmp(name, ":path", 5) == 0)
            pseudo = &s->path;
        else if (namelen == 10 && memcmp(name, ":authority", 10) == 0)
            pseudo = &s->authority;
        if (pseudo && !*pseudo && !(*pseudo = dup_n(value, valuelen)))
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        return 0;
    }
    if (namelen == 4 && memcmp(name, "host", 4) == 0)
        s->saw_host = true;
    if (!s->fields && !(s->fields = evbuffer_new()))
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    evbuffer_add(s->fields, name, namelen);
    evbuffer_add(s->fields, ": ", 2);
    evbuffer_add(s->fields, value, valuelen);
    evbuffer_add(s->fields, "\r\n", 2);
    return 0;
}

static int on_data_chunk(nghttp2_session *ss, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *arg)
{
    (void)flags;
    struct bb_h2 *h = arg;
    struct bb_h2_stream *s = nghttp2_session_get_stream_user_data(ss, id);
    if (!s || s->st != S_BODY || !s->req)
        return 0; /* answered already: the rest of the body is not read */
    if (!s->body && !(s->body = evbuffer_new())) {
        bb_request_fail(s->req, BB_ERR_INTERNAL, "out of memory");
        return 0;
    }
    if (evbuffer_get_length(s->body) + len > h->w->conf->limits.request_body_max_bytes) {
        bb_request_fail(s->req, BB_ERR_TOO_LARGE, "request body exceeds the limit");
        return 0;
    }
    evbuffer_add(s->body, data, len);
    return 0;
}

static void h2_final_goaway(struct bb_h2 *h)
{
    if (h->goaway_final)
        return;
    h->goaway_final = true;
    nghttp2_submit_goaway(h->ss, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(h->ss),
                          NGHTTP2_NO_ERROR, NULL, 0);
    h2_schedule(h);
}

static int on_frame_recv(nghttp2_session *ss, const nghttp2_frame *frame, void *arg)
{
    struct bb_h2 *h = arg;
    struct bb_h2_stream *s =
        frame->hd.stream_id ? nghttp2_session_get_stream_user_data(ss, frame->hd.stream_id) : NULL;
    bool end = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;
    switch (frame->hd.type) {
    case NGHTTP2_HEADERS:
        if (!s)
            break;
        if (frame->headers.cat == NGHTTP2_HCAT_REQUEST)
            stream_head_done(s, end);
        else if (end && s->st == S_BODY) /* trailers end the body */
            stream_body_done(s);
        break;
    case NGHTTP2_DATA:
        if (s && end && s->st == S_BODY)
            stream_body_done(s);
        break;
    case NGHTTP2_RST_STREAM:
        if (!bucket_take(&h->resets, 2.0 * h->w->conf->limits.h2_max_streams,
                         (double)h->w->conf->limits.h2_max_streams))
            h2_abuse(h, BB_MX_G_H2_RAPID_RESET, "rapid reset (streams cancelled too fast)");
        break;
    case NGHTTP2_PING:
        if (frame->hd.flags & NGHTTP2_FLAG_ACK) {
            /* the client has seen the notice: the final GOAWAY goes once the streams it
             * had sent before it (the ACK may overtake their HEADERS) are done */
            if (h->draining)
                h->ack_seen = true;
            break;
        }
        /* fall through */
    case NGHTTP2_SETTINGS:
    case NGHTTP2_PRIORITY:
        if (!(frame->hd.flags & NGHTTP2_FLAG_ACK) && !bucket_take(&h->ctrl, CTRL_BURST, CTRL_RATE))
            h2_abuse(h, BB_MX_G_H2_CONTROL_FLOOD, "SETTINGS/PING/PRIORITY flood");
        break;
    default:
        break;
    }
    return 0;
}

/* A frame the client got wrong reset its stream: it counts against the reset bound too
 * (resets the server is made to send cost the same as the client's own). */
static int on_invalid_frame(nghttp2_session *ss, const nghttp2_frame *frame, int err, void *arg)
{
    (void)ss;
    (void)frame;
    (void)err;
    struct bb_h2 *h = arg;
    if (!bucket_take(&h->resets, 2.0 * h->w->conf->limits.h2_max_streams,
                     (double)h->w->conf->limits.h2_max_streams))
        h2_abuse(h, BB_MX_G_H2_RAPID_RESET, "rapid reset (streams reset for errors too fast)");
    return 0;
}

static int on_frame_send(nghttp2_session *ss, const nghttp2_frame *frame, void *arg)
{
    (void)arg;
    if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM) ||
        (frame->hd.type != NGHTTP2_DATA && frame->hd.type != NGHTTP2_HEADERS))
        return 0;
    struct bb_h2_stream *s = nghttp2_session_get_stream_user_data(ss, frame->hd.stream_id);
    /* answered before the client finished its request: tell it to stop (RFC 9113 §8.1) */
    if (s && s->rst_no_error)
        nghttp2_submit_rst_stream(ss, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_NO_ERROR);
    return 0;
}

static int on_stream_close(nghttp2_session *ss, int32_t id, uint32_t error_code, void *arg)
{
    (void)error_code;
    struct bb_h2 *h = arg;
    struct bb_h2_stream *s = nghttp2_session_get_stream_user_data(ss, id);
    if (!s)
        return 0;
    nghttp2_session_set_stream_user_data(ss, id, NULL);
    s->closed = true;
    stream_timer_stop(s);
    if (s->req && !(s->req->response_done && s->eof && evbuffer_get_length(s->out) == 0))
        stream_client_gone(s);
    if (!s->req)
        stream_free(s);
    h2_update_timer(h);
    return 0;
}

/* ---- responses ---- */

struct nv_build {
    nghttp2_nv *nv;
    size_t n, cap;
    char *names; /* lower-cased copies of the extra names */
    size_t names_used;
};

static void nv_push(struct nv_build *b, const char *name, size_t nl, const char *value, size_t vl)
{
    if (b->n == b->cap)
        return;
    b->nv[b->n++] = (nghttp2_nv){(uint8_t *)name, (uint8_t *)value, nl, vl,
                                 NGHTTP2_NV_FLAG_NONE}; /* copied by nghttp2_submit_* */
}

static bool connection_specific(const char *n, size_t l)
{
    return bb_http_ieq(n, l, "keep-alive") || bb_http_ieq(n, l, "proxy-connection") ||
           bb_http_ieq(n, l, "upgrade") || bb_http_ieq(n, l, "te");
}

/* bb_http_header_lines' callback: HTTP/2 field names are lower case. */
static void nv_line(void *arg, const struct bb_http_header *f, size_t line_len)
{
    (void)line_len;
    struct nv_build *b = arg;
    if (connection_specific(f->name, f->name_len))
        return;
    char *lc = b->names + b->names_used;
    for (size_t i = 0; i < f->name_len; i++)
        lc[i] = (char)((f->name[i] >= 'A' && f->name[i] <= 'Z') ? f->name[i] + 32 : f->name[i]);
    b->names_used += f->name_len;
    nv_push(b, lc, f->name_len, f->value, f->value_len);
}

int bb_h2_respond_head(struct bb_request *req, int status, const char *content_type,
                       const char *extra_headers, size_t extra_len, enum bb_body_mode mode,
                       int64_t content_length)
{
    struct bb_h2_stream *s = req->h2;
    struct bb_h2 *h = s->h;
    req->responded = true;
    req->status = status;
    req->out_mode = mode;
    if (s->closed)
        return -1;
    if (status < 100 || status > 999)
        status = 500;
    char st[4], cl[24];
    snprintf(st, sizeof st, "%d", status);
    nghttp2_nv nv[48];
    char names[1024];
    struct nv_build b = {nv, 0, sizeof nv / sizeof nv[0], names, 0};
    char *lc = extra_len > sizeof names ? bb_arena_alloc(&req->arena, extra_len) : names;
    b.names = lc ? lc : names;
    nv_push(&b, ":status", 7, st, strlen(st));
    nv_push(&b, "x-request-id", 12, req->id, strlen(req->id));
    if (content_type && !bb_http_field_value_ok(content_type, strlen(content_type))) {
        bb_warn("request %s: a malformed response Content-Type was dropped", req->id);
        content_type = NULL;
    }
    if (content_type)
        nv_push(&b, "content-type", 12, content_type, strlen(content_type));
    if (mode == BB_BODY_LENGTH || mode == BB_BODY_NONE) {
        snprintf(cl, sizeof cl, "%lld", mode == BB_BODY_NONE ? 0LL : (long long)content_length);
        nv_push(&b, "content-length", 14, cl, strlen(cl));
    }
    if (extra_headers && extra_len && lc)
        bb_http_header_lines(extra_headers, extra_len, req->id, nv_line, &b);
    bool body = !(mode == BB_BODY_NONE || req->head_only ||
                  (mode == BB_BODY_LENGTH && content_length == 0));
    if (body && !s->out && !(s->out = evbuffer_new()))
        return -1;
    nghttp2_data_provider prd = {.source.ptr = s, .read_callback = data_read_cb};
    if (!body)
        s->eof = true;
    /* Answered before the body was read: a body the stream window already lets the client send
     * (announced by content-length) is read and dropped; a larger or open-ended one is stopped
     * with RST_STREAM NO_ERROR after the answer. (curl 7.88 and other clients report a reset
     * that arrives while they still upload as an error, though the answer was complete.) */
    if (s->st == S_BODY &&
        !(req->head.content_length >= 0 && (uint64_t)req->head.content_length <= STREAM_WINDOW))
        s->rst_no_error = true;
    if (nghttp2_submit_response(h->ss, s->id, nv, b.n, body ? &prd : NULL) != 0)
        return -1;
    h2_schedule(h);
    return 0;
}

static int stream_live(const struct bb_request *req)
{
    return req->h2->closed || !req->h2->out ? -1 : 0;
}

int bb_h2_respond_body(struct bb_request *req, const void *data, size_t len)
{
    if (stream_live(req) < 0)
        return -1;
    if (len == 0 || req->head_only)
        return 0;
    struct bb_h2_stream *s = req->h2;
    evbuffer_add(s->out, data, len);
    nghttp2_session_resume_data(s->h->ss, s->id);
    h2_schedule(s->h);
    return 0;
}

int bb_h2_respond_buffer(struct bb_request *req, struct evbuffer *buf)
{
    size_t len = evbuffer_get_length(buf);
    if (stream_live(req) < 0 || len == 0 || req->head_only) {
        evbuffer_drain(buf, len);
        return req->h2->closed ? -1 : 0;
    }
    struct bb_h2_stream *s = req->h2;
    evbuffer_add_buffer(s->out, buf);
    nghttp2_session_resume_data(s->h->ss, s->id);
    h2_schedule(s->h);
    return 0;
}

void bb_h2_respond_end(struct bb_request *req)
{
    struct bb_h2_stream *s = req->h2;
    req->response_done = true;
    if (s->closed || s->eof)
        return;
    s->eof = true;
    nghttp2_session_resume_data(s->h->ss, s->id);
    h2_schedule(s->h);
}

size_t bb_h2_output_pending(const struct bb_request *req)
{
    const struct bb_h2_stream *s = req->h2;
    return s->out && !s->closed ? evbuffer_get_length(s->out) : 0;
}

void bb_h2_on_drained(struct bb_request *req, void (*cb)(struct bb_request *))
{
    struct bb_h2_stream *s = req->h2;
    if (s->closed)
        return;
    s->drained_cb = cb;
    /* a client that opens no window for this stream is reset after limits.send_timeout_ms */
    stream_timer(s, s->h->w->conf->limits.send_timeout_ms);
}

void bb_h2_request_done(struct bb_request *req)
{
    struct bb_h2_stream *s = req->h2;
    struct bb_h2 *h = s->h;
    req->h2 = NULL;
    s->req = NULL;
    s->drained_cb = NULL;
    stream_uncount(s, true);
    if (s->closed) {
        stream_free(s);
        return;
    }
    stream_timer_stop(s);
    if (s->st == S_BODY && req->response_done && !s->rst_no_error) /* the rest is being dropped */
        stream_timer(s, h->w->conf->limits.body_timeout_ms);
    if (!req->responded) {
        nghttp2_submit_rst_stream(h->ss, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
    } else if (!req->response_done) {
        s->rst_after = true; /* the answer is cut: reset once the bytes it had are sent */
        if (s->out)
            nghttp2_session_resume_data(h->ss, s->id);
        else
            nghttp2_submit_rst_stream(h->ss, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
    }
    h2_schedule(h);
}

/* ---- the connection ---- */

/* Every stream's request ends as a client disconnect; the streams are freed. */
static void h2_streams_gone(struct bb_h2 *h)
{
    while (h->streams) {
        struct bb_h2_stream *s = h->streams;
        if (!s->closed)
            nghttp2_session_set_stream_user_data(h->ss, s->id, NULL);
        stream_client_gone(s);
        stream_free(s);
    }
}

/* End the connection: the streams go now; the next flush (a top-level event, so nothing
 * up the stack touches h again) hands the connection back to http_server, which writes what
 * is queued and closes. */
static void h2_close(struct bb_h2 *h)
{
    if (h->closing)
        return;
    h->closing = true;
    h2_streams_gone(h);
    evtimer_del(h->timer);
    bufferevent_disable(h->bev, EV_READ);
    if (!h->flush_scheduled) {
        h->flush_scheduled = true;
        event_active(h->flush_ev, EV_TIMEOUT, 1);
    }
}

/* Serialise what nghttp2 has queued, run the drained callbacks of streams whose backlog went
 * down, and close once the session is over. Never called from inside nghttp2. */
static void h2_send(struct bb_h2 *h)
{
    if (h->closing || h->in_lib)
        return;
    if (h->ack_seen && !h->goaway_final && h->n_streams == 0)
        h2_final_goaway(h);
    h->in_lib = true;
    int rv = nghttp2_session_send(h->ss);
    h->in_lib = false;
    if (rv != 0) {
        bb_info("h2: send failed: %s", nghttp2_strerror(rv));
        h2_close(h);
        return;
    }
    if (h->check_drained) {
        h->check_drained = false;
        for (struct bb_h2_stream *s = h->streams, *next; s; s = next) {
            next = s->next;
            if (s->drained_cb && s->req && s->out &&
                evbuffer_get_length(s->out) <= STREAM_LOW_WATER) {
                void (*cb)(struct bb_request *) = s->drained_cb;
                s->drained_cb = NULL;
                stream_timer_stop(s);
                cb(s->req); /* may append to any stream: a later flush sends it */
            }
        }
    }
    if (!nghttp2_session_want_read(h->ss) && !nghttp2_session_want_write(h->ss)) {
        h2_close(h);
        return;
    }
    h2_update_timer(h);
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct bb_h2 *h = h2_check(arg);
    h->flush_scheduled = false;
    if (h->closing) {
        bb_http_conn_linger(h->conn); /* may free h */
        return;
    }
    if (h->start_read) {
        h->start_read = false;
        h2_read_cb(h->bev, h);
        return;
    }
    h2_send(h);
}

static void h2_schedule(struct bb_h2 *h)
{
    if (h->flush_scheduled || h->closing)
        return;
    h->flush_scheduled = true;
    event_active(h->flush_ev, EV_TIMEOUT, 1);
}

/* The connection's deadline: a header block must complete within header_timeout_ms; a
 * connection without streams closes after keepalive_timeout_ms (shortly when draining). */
static void h2_update_timer(struct bb_h2 *h)
{
    const struct bb_limits *lim = &h->w->conf->limits;
    enum conn_timer want = h->hdr_stream                     ? T_HEADER
                           : h->draining && !h->goaway_final ? T_DRAIN
                           : h->n_streams == 0               ? T_IDLE
                                                             : T_NONE;
    if (want == h->timer_mode || h->closing)
        return;
    h->timer_mode = want;
    switch (want) {
    case T_NONE:
        evtimer_del(h->timer);
        break;
    case T_HEADER:
        timer_ms(h->timer, lim->header_timeout_ms);
        break;
    case T_DRAIN:
        timer_ms(h->timer, DRAIN_ACK_MS);
        break;
    case T_IDLE:
        timer_ms(h->timer, h->draining ? DRAIN_IDLE_MS : lim->keepalive_timeout_ms);
        break;
    }
}

static void conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct bb_h2 *h = h2_check(arg);
    enum conn_timer mode = h->timer_mode;
    h->timer_mode = T_NONE;
    switch (mode) {
    case T_HEADER:
        bb_info("h2: a request header block was not completed within "
                "limits.header_timeout_ms: GOAWAY");
        h->terminating = true;
        nghttp2_session_terminate_session(h->ss, NGHTTP2_NO_ERROR);
        break;
    case T_DRAIN:
        h2_final_goaway(h);
        break;
    case T_IDLE:
        if (h->n_streams == 0)
            nghttp2_session_terminate_session(h->ss, NGHTTP2_NO_ERROR);
        break;
    case T_NONE:
        break;
    }
    h2_send(h);
}

static void h2_read_cb(struct bufferevent *bev, void *arg)
{
    struct bb_h2 *h = h2_check(arg);
    struct evbuffer *in = bufferevent_get_input(bev);
    while (!h->closing && evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        if (h->terminating) { /* what follows a flood is not looked at */
            evbuffer_drain(in, evbuffer_get_length(in));
            break;
        }
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        h->in_lib = true;
        ssize_t rv = nghttp2_session_mem_recv(h->ss, v.iov_base, v.iov_len);
        h->in_lib = false;
        if (rv < 0) {
            if (rv == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS)
                atomic_fetch_add_explicit(counter(h, BB_MX_G_H2_CONTINUATION_FLOOD), 1,
                                          memory_order_relaxed);
            else if (rv == NGHTTP2_ERR_FLOODED)
                atomic_fetch_add_explicit(counter(h, BB_MX_G_H2_CONTROL_FLOOD), 1,
                                          memory_order_relaxed);
            bb_info("h2: connection error: %s", nghttp2_strerror((int)rv));
            evbuffer_drain(in, evbuffer_get_length(in));
            /* nghttp2 queued the GOAWAY a protocol error calls for: send it, then close */
            h2_send(h);
            h2_close(h);
            return;
        }
        evbuffer_drain(in, (size_t)rv);
    }
    h2_send(h);
    if (!h->closing && evbuffer_get_length(bufferevent_get_output(bev)) > OUT_HIGH_WATER) {
        /* the client does not read what it asks for: stop reading it (floods included) */
        h->read_paused = true;
        bufferevent_disable(bev, EV_READ);
    }
}

static void h2_write_cb(struct bufferevent *bev, void *arg)
{
    struct bb_h2 *h = h2_check(arg);
    if (h->read_paused && evbuffer_get_length(bufferevent_get_output(bev)) <= OUT_LOW_WATER) {
        h->read_paused = false;
        bufferevent_enable(bev, EV_READ);
    }
    h2_send(h); /* frames that waited for room */
}

static void h2_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    struct bb_h2 *h = h2_check(arg);
    if (what & BEV_EVENT_TIMEOUT)
        bb_info("h2: client read none of its output for limits.send_timeout_ms: closed");
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
        bb_http_conn_close(h->conn); /* frees h (bb_h2_free) */
}

int bb_h2_preface(struct evbuffer *in)
{
    static const char preface[] = NGHTTP2_CLIENT_MAGIC;
    size_t want = sizeof preface - 1, n = evbuffer_get_length(in);
    size_t k = n < want ? n : want;
    const unsigned char *p = evbuffer_pullup(in, (ev_ssize_t)k);
    if (!p || memcmp(p, preface, k) != 0)
        return -1;
    return k == want ? 1 : 0;
}

struct bb_h2 *bb_h2_start(struct bb_worker *w, struct bb_conn *conn, struct bufferevent *bev)
{
    const struct bb_limits *lim = &w->conf->limits;
    struct bb_h2 *h = calloc(1, sizeof *h);
    nghttp2_session_callbacks *cbs = NULL;
    nghttp2_option *opt = NULL;
    if (!h)
        return NULL;
    h->magic = BB_MAGIC_H2;
    h->w = w;
    h->conn = conn;
    h->bev = bev;
    h->flush_ev = event_new(w->base, -1, 0, flush_cb, h);
    h->timer = evtimer_new(w->base, conn_timer_cb, h);
    if (!h->flush_ev || !h->timer || nghttp2_session_callbacks_new(&cbs) != 0 ||
        nghttp2_option_new(&opt) != 0)
        goto fail;
    nghttp2_session_callbacks_set_send_callback(cbs, send_cb);
    nghttp2_session_callbacks_set_send_data_callback(cbs, send_data_cb);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cbs, on_invalid_frame);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    /* a header block of header_max_bytes in maximal frames, and then some: beyond that a
     * CONTINUATION sequence is a flood */
    nghttp2_option_set_max_continuations(opt, lim->header_max_bytes / 16384 + 8);
    nghttp2_option_set_max_outbound_ack(opt, 1000);
    nghttp2_option_set_max_settings(opt, 32);
    int rv = nghttp2_session_server_new2(&h->ss, cbs, h, opt);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_option_del(opt);
    cbs = NULL;
    opt = NULL;
    if (rv != 0)
        goto fail;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, lim->h2_max_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, lim->header_max_bytes},
    };
    if (nghttp2_submit_settings(h->ss, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]) != 0 ||
        nghttp2_session_set_local_window_size(h->ss, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW) != 0)
        goto fail;
    bufferevent_setcb(bev, h2_read_cb, h2_write_cb, h2_event_cb, h);
    bufferevent_setwatermark(bev, EV_WRITE, OUT_LOW_WATER, 0);
    /* the first request must come as soon as an HTTP/1.1 head would have to */
    h->timer_mode = T_IDLE;
    timer_ms(h->timer, lim->header_timeout_ms);
    if (w->draining)
        bb_h2_drain(h);
    /* the preface and whatever came with it: from the loop, not from inside http_server */
    h->start_read = true;
    h2_schedule(h);
    return h;
fail:
    if (cbs)
        nghttp2_session_callbacks_del(cbs);
    if (opt)
        nghttp2_option_del(opt);
    if (h->ss)
        nghttp2_session_del(h->ss);
    if (h->flush_ev)
        event_free(h->flush_ev);
    if (h->timer)
        event_free(h->timer);
    free(h);
    return NULL;
}

void bb_h2_drain(struct bb_h2 *h)
{
    if (h->draining || h->closing)
        return;
    h->draining = true;
    nghttp2_submit_shutdown_notice(h->ss);
    nghttp2_submit_ping(h->ss, NGHTTP2_FLAG_NONE, NULL);
    h2_update_timer(h);
    h2_schedule(h);
}

void bb_h2_free(struct bb_h2 *h)
{
    h2_check(h);
    h2_streams_gone(h);
    nghttp2_session_del(h->ss);
    event_free(h->flush_ev);
    event_free(h->timer);
    h->magic = 0;
    free(h);
}
