/*
 * http_server: client connections of one worker. Worker process, single-threaded loop.
 *
 * States: HEAD (waiting for a request head; idle keep-alive or slow-loris deadline), BODY
 * (Content-Length or chunked body; gap deadline), BUSY (request dispatched; input is only
 * watched for EOF so a client that leaves cancels its upstream), LINGER (response flushed,
 * write side shut, unread input discarded briefly so the peer sees our answer, not a RST).
 */
#include "worker/http_server.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/bufferevent_struct.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "common/log.h"
#include "worker/errors_http.h"
#include "worker/h2.h"
#include "worker/jw.h"
#include "worker/sockread.h"
#include "worker/worker.h"

enum conn_state { CONN_HEAD, CONN_BODY, CONN_BUSY, CONN_LINGER };

#define OUT_HIGH_WATER (1u << 20) /* stop reading upstream above this (see proxy) */
#define OUT_LOW_WATER (256u << 10)
#define BUSY_INPUT_MAX (64u << 10) /* pipelined bytes buffered while a request runs */
#define LINGER_MS 2000
#define BODY_ARENA_FACTOR 3 /* arena bytes a request may use per body byte, beyond the body */

struct bb_conn {
    uint32_t magic;
    struct bb_worker *w;
    struct bb_conn *prev, *next;
    struct bufferevent *bev;
    struct event *timer;
    enum conn_state state;
    bool tls;
    bool fresh;               /* no request yet: HTTP/2 (ALPN h2 or the preface) still possible */
    struct bb_h2 *h2;         /* an HTTP/2 connection: its callbacks own the bufferevent */
    bool got_bytes;           /* some bytes of the current request head arrived */
    bool read_paused;         /* between requests: not reading while the output is backlogged */
    struct bb_http_scan scan; /* where the search for the end of the current head stands */
    size_t parsed_at;         /* input length at the last early parse of an incomplete head */
    struct bb_request *req;
    /* body being read */
    uint64_t body_need; /* Content-Length mode: bytes still expected */
    bool body_chunked;
    struct bb_chunked chunked;
    struct evbuffer *body_buf;
    void (*drained_cb)(struct bb_request *);
    struct bb_conn *flush_next; /* on w->flush_list (bb_http_write_soon) */
    bool flush_queued;
};

static void conn_read_cb(struct bufferevent *bev, void *arg);
static void conn_write_cb(struct bufferevent *bev, void *arg);
static void conn_event_cb(struct bufferevent *bev, short what, void *arg);
static void conn_timer_cb(evutil_socket_t fd, short what, void *arg);
static void conn_process(struct bb_conn *c);

static struct bb_conn *conn_check(void *arg)
{
    struct bb_conn *c = arg;
    if (c->magic != BB_MAGIC_CONN) {
        bb_crit("http_server: bad connection magic %#x", c->magic);
        abort();
    }
    return c;
}

static void timer_ms(struct bb_conn *c, uint32_t ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
}

static void conn_free(struct bb_conn *c)
{
    struct bb_worker *w = c->w;
    if (c->req) {
        struct bb_request *req = c->req;
        c->req = NULL;
        req->conn = NULL;
        if (c->state == CONN_BUSY || c->state == CONN_BODY) {
            /* counted in conn_read_head; bb_http_conn_request_done will not run for it */
            w->n_active--;
            atomic_store_explicit(&w->self->inflight, w->n_active, memory_order_relaxed);
        }
        bb_request_client_gone(req);
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    w->n_conns--;
    atomic_store_explicit(&w->self->connections, w->n_conns, memory_order_relaxed);
    if (c->flush_queued) {
        struct bb_conn **pp = &w->flush_list;
        while (*pp != c)
            pp = &(*pp)->flush_next;
        *pp = c->flush_next;
    }
    if (c->h2)
        bb_h2_free(c->h2);
    event_free(c->timer);
    if (c->body_buf)
        evbuffer_free(c->body_buf);
    if (c->tls) {
        SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
        if (ssl)
            SSL_set_shutdown(ssl, SSL_RECEIVED_SHUTDOWN); /* no close_notify round trip */
    }
    bufferevent_free(c->bev);
    c->magic = 0;
    free(c);
    bb_worker_conn_closed(w);
}

void bb_http_accept(struct bb_worker *w, evutil_socket_t fd, const struct sockaddr *sa, int salen)
{
    (void)sa;
    (void)salen;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    evutil_make_socket_nonblocking(fd);

    struct bb_conn *c = calloc(1, sizeof *c);
    if (!c) {
        evutil_closesocket(fd);
        return;
    }
    c->magic = BB_MAGIC_CONN;
    c->w = w;
    if (w->rt->server_ctx) {
        SSL *ssl = SSL_new(w->rt->server_ctx);
        if (!ssl) {
            free(c);
            evutil_closesocket(fd);
            return;
        }
        c->bev = bufferevent_openssl_socket_new(w->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                BEV_OPT_CLOSE_ON_FREE);
        if (c->bev)
            bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
        c->tls = true;
    } else {
        c->bev = bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);
        if (c->bev)
            bb_sockread_take(c->bev); /* no FIONREAD per read (worker/sockread.h) */
    }
    c->timer = evtimer_new(w->base, conn_timer_cb, c);
    if (!c->bev || !c->timer) {
        if (c->bev)
            bufferevent_free(c->bev);
        else
            evutil_closesocket(fd);
        if (c->timer)
            event_free(c->timer);
        free(c);
        return;
    }
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    w->n_conns++;
    atomic_store_explicit(&w->self->connections, w->n_conns, memory_order_relaxed);
    bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
    /* A client that reads none of its pending output for send_timeout_ms is dropped (the
     * write timeout only runs while output is waiting). */
    uint32_t st = w->conf->limits.send_timeout_ms;
    struct timeval send_tv = {st / 1000, (st % 1000) * 1000};
    bufferevent_set_timeouts(c->bev, NULL, &send_tv);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    c->state = CONN_HEAD;
    c->fresh = true;
    /* The whole first head must arrive within header_timeout (slow-loris, TLS included). */
    timer_ms(c, w->conf->limits.header_timeout_ms);
    c->got_bytes = true;
}

/* ---- errors before a request object exists or while reading it ---- */

static void conn_linger(struct bb_conn *c)
{
    c->state = CONN_LINGER;
    bufferevent_disable(c->bev, EV_READ);
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        conn_write_cb(c->bev, c);
    /* else conn_write_cb runs when the output drains */
}

/* A raw error response on a connection whose request could not be parsed; then close. The
 * dialect comes from the request target when the request line got that far (SPEC §9). */
static void conn_fail_raw(struct bb_conn *c, int status, const char *msg,
                          const struct bb_http_head *h)
{
    char body[1024], head[512], extra[128];
    enum bb_proto d =
        h && h->target ? bb_request_dialect_of(h->target, h->target_len) : BB_PROTO_DEFAULT;
    enum bb_errkind k = bb_errkind_from_status(status);
    size_t blen = bb_errors_render(d, k, msg, body, sizeof body);
    bb_errors_headers(d, status, extra, sizeof extra);
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\n%sConnection: close\r\n\r\n",
                      status, bb_http_reason(status), blen, extra);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    evbuffer_add(out, head, (size_t)hl);
    evbuffer_add(out, body, blen);
    evtimer_del(c->timer);
    conn_linger(c);
}

/* The head parsed as far as it goes (for the dialect of an error about it). */
static void conn_peek_head(struct bb_conn *c, struct bb_http_head *h)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t n = evbuffer_get_length(in);
    if (n > c->w->conf->limits.header_max_bytes)
        n = c->w->conf->limits.header_max_bytes;
    bb_http_parse_request((const char *)evbuffer_pullup(in, (ev_ssize_t)n), n, h, NULL);
}

/* ---- request intake ---- */

static void conn_dispatch(struct bb_conn *c)
{
    struct bb_request *req = c->req;
    evtimer_del(c->timer);
    c->state = CONN_BUSY;
    c->got_bytes = false;
    bb_request_dispatch(req);
}

int bb_http_request_body(struct bb_request *req, struct evbuffer *src, size_t len)
{
    req->body = bb_arena_alloc(&req->arena, len + 1);
    if (!req->body)
        return -1;
    evbuffer_remove(src, req->body, len);
    req->body[len] = '\0';
    req->body_len = len;
    /* Room for what the request builds from its body: the IR of a translated request (its
     * strings decoded into the arena) and each attempt's writer scratch, on top of the body
     * itself. The cap stays a bound on the request's memory, in proportion to its body. */
    req->arena.cap = req->arena.used + BODY_ARENA_FACTOR * len + (1u << 20);
    return 0;
}

static void conn_body_done(struct bb_conn *c, struct evbuffer *src, size_t len)
{
    if (bb_http_request_body(c->req, src, len) < 0) {
        bb_request_fail(c->req, BB_ERR_TOO_LARGE, "request body too large");
        return;
    }
    conn_dispatch(c);
}

/* Read the body of the current request; returns when more bytes are needed or it is done. */
static void conn_read_body(struct bb_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    const struct bb_limits *lim = &c->w->conf->limits;
    if (!c->body_chunked) {
        if (evbuffer_get_length(in) >= c->body_need)
            conn_body_done(c, in, c->body_need);
        return;
    }
    /* chunked: decode segment by segment into body_buf */
    while (!c->chunked.done && evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        size_t off = 0, dlen = 0;
        ssize_t used = bb_chunked_feed(&c->chunked, v.iov_base, v.iov_len, &off, &dlen);
        if (used < 0) {
            bb_request_fail(c->req, BB_ERR_BAD_REQUEST, "malformed chunked request body");
            return;
        }
        if (dlen) {
            if (evbuffer_get_length(c->body_buf) + dlen > lim->request_body_max_bytes) {
                c->req->close_after = true;
                bb_request_fail(c->req, BB_ERR_TOO_LARGE, "request body exceeds the limit");
                return;
            }
            evbuffer_add(c->body_buf, (char *)v.iov_base + off, dlen);
        }
        evbuffer_drain(in, (size_t)used);
        if (used == 0)
            break;
    }
    if (c->chunked.done)
        conn_body_done(c, c->body_buf, evbuffer_get_length(c->body_buf));
}

/* What a well-formed head may still not be (as nginx refuses them): methods are
 * case-sensitive upper-case tokens, and HTTP/1.1 requires Host (RFC 9112 §3.2). */
static const char *head_refusal(const struct bb_http_head *h)
{
    for (size_t i = 0; i < h->method_len; i++) {
        char ch = h->method[i];
        if (!((ch >= 'A' && ch <= 'Z') || ch == '_' || ch == '-'))
            return "the method must be upper case (methods are case-sensitive)";
    }
    if (h->minor_version == 1 && !bb_http_find(h, "host"))
        return "an HTTP/1.1 request needs a Host header";
    return NULL;
}

size_t bb_http_scan_input(struct bb_http_scan *sc, struct evbuffer *in, size_t limit)
{
    while (sc->scanned < limit) {
        struct evbuffer_ptr pos;
        struct evbuffer_iovec v[8];
        if (evbuffer_ptr_set(in, &pos, sc->scanned, EVBUFFER_PTR_SET) < 0)
            return 0;
        int nv = evbuffer_peek(in, (ev_ssize_t)(limit - sc->scanned), &pos, v, 8);
        if (nv <= 0)
            return 0;
        for (int i = 0; i < nv && i < 8; i++) {
            size_t want = limit - sc->scanned;
            size_t len = v[i].iov_len < want ? v[i].iov_len : want;
            size_t end = bb_http_scan_feed(sc, v[i].iov_base, len);
            if (end)
                return end;
            if (sc->scanned >= limit)
                return 0;
        }
    }
    return 0;
}

/* The first bytes of a connection: HTTP/2 when TLS negotiated "h2" or a plain connection
 * starts with the connection preface; the connection is then handed to worker/h2.c. true =
 * handed over (or waiting for the rest of a preface). */
static bool conn_try_h2(struct bb_conn *c)
{
    if (c->tls) {
        const unsigned char *p = NULL;
        unsigned int n = 0;
        SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
        if (ssl)
            SSL_get0_alpn_selected(ssl, &p, &n);
        c->fresh = false;
        if (!(n == 2 && memcmp(p, "h2", 2) == 0))
            return false;
    } else {
        int r = bb_h2_preface(bufferevent_get_input(c->bev));
        if (r == 0)
            return true;
        c->fresh = false;
        if (r < 0)
            return false;
    }
    evtimer_del(c->timer);
    c->h2 = bb_h2_start(c->w, c, c->bev);
    if (!c->h2)
        conn_free(c);
    return true;
}

static void conn_read_head(struct bb_conn *c)
{
    struct bb_worker *w = c->w;
    const struct bb_limits *lim = &w->conf->limits;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t avail = evbuffer_get_length(in);
    if (avail == 0)
        return;
    if (c->fresh && conn_try_h2(c))
        return;
    if (!c->got_bytes) { /* first byte of a new request on a kept-alive connection */
        c->got_bytes = true;
        timer_ms(c, lim->header_timeout_ms);
    }
    size_t limit = avail < lim->header_max_bytes ? avail : lim->header_max_bytes;
    size_t end = bb_http_scan_input(&c->scan, in, limit);
    const char *p;
    BB_HTTP_HEAD(head);
    int st = 400, r = 0;
    head.target = NULL;
    if (end) {
        p = (const char *)evbuffer_pullup(in, (ev_ssize_t)end);
        r = bb_http_parse_request(p, end, &head, &st);
        if (r == 0)
            r = -1; /* the parser wants more than the head the scan found: malformed */
    } else if (c->parsed_at == 0 || limit >= 2 * c->parsed_at || avail >= lim->header_max_bytes) {
        /* Not complete yet. Garbage is still refused early, by parsing what arrived, but only
         * when it doubled since the last try: a head sent in tiny pieces costs linear time. */
        c->parsed_at = limit;
        p = (const char *)evbuffer_pullup(in, (ev_ssize_t)limit);
        r = bb_http_parse_request(p, limit, &head, &st);
    }
    if (r == 0) {
        if (avail >= lim->header_max_bytes)
            conn_fail_raw(c, 431, "request head exceeds the header size limit", &head);
        return;
    }
    if (r < 0) {
        conn_fail_raw(c, st, "malformed HTTP request", &head);
        return;
    }
    bb_http_scan_reset(&c->scan); /* the next head starts after this one */
    c->parsed_at = 0;
    const char *refused = head_refusal(&head);
    if (refused) {
        conn_fail_raw(c, 400, refused, &head);
        return;
    }
    size_t cap = lim->request_body_max_bytes + (1u << 20);
    struct bb_request *req = bb_request_new(w, c, p, (size_t)r, &head, cap);
    if (!req) {
        conn_fail_raw(c, 500, "out of memory", &head);
        return;
    }
    evbuffer_drain(in, (size_t)r);
    c->req = req;
    if (w->draining)
        req->close_after = true;

    if (w->n_active >= w->max_active) {
        req->close_after = true;
        bb_request_fail(req, BB_ERR_OVERLOADED, "too many concurrent requests");
        return;
    }
    w->n_active++;
    atomic_store_explicit(&w->self->inflight, w->n_active, memory_order_relaxed);
    c->state = CONN_BUSY; /* counted from here: bb_http_conn_request_done uncounts it */

    bool has_body = req->head.chunked || req->head.content_length > 0;
    if (req->head.content_length > 0 &&
        (uint64_t)req->head.content_length > lim->request_body_max_bytes) {
        req->close_after = true; /* the body is not read: the connection cannot be reused */
        bb_request_fail(req, BB_ERR_TOO_LARGE, "request body exceeds the limit");
        return;
    }
    if (has_body) {
        /* From here an answer closes the connection: the body may be left unread. */
        c->state = CONN_BODY;
        c->body_chunked = req->head.chunked;
        if (c->body_chunked) {
            bb_chunked_init(&c->chunked);
            if (!c->body_buf)
                c->body_buf = evbuffer_new();
            else
                evbuffer_drain(c->body_buf, evbuffer_get_length(c->body_buf));
        } else {
            c->body_need = (uint64_t)req->head.content_length;
        }
    }
    /* Route and authenticate on the head: no body byte is read and no 100 Continue is sent
     * for a request that is refused anyway. */
    if (!bb_request_route(req))
        return; /* answered and finished */
    if (!has_body) {
        conn_dispatch(c);
        return;
    }
    if (req->head.expect_continue)
        bufferevent_write(c->bev, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    /* limits.body_timeout_ms is for the whole body, not per read: a trickle cannot hold the
     * connection (and its slot of max_inbound_concurrent) for longer. */
    timer_ms(c, lim->body_timeout_ms);
    conn_read_body(c);
}

static void conn_process(struct bb_conn *c)
{
    switch (c->state) {
    case CONN_HEAD:
        conn_read_head(c);
        break;
    case CONN_BODY:
        conn_read_body(c);
        break;
    case CONN_BUSY:
        /* keep pipelined bytes, but bounded: stop reading beyond that */
        if (evbuffer_get_length(bufferevent_get_input(c->bev)) > BUSY_INPUT_MAX)
            bufferevent_disable(c->bev, EV_READ);
        break;
    case CONN_LINGER: {
        struct evbuffer *in = bufferevent_get_input(c->bev);
        evbuffer_drain(in, evbuffer_get_length(in));
        break;
    }
    }
}

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    conn_process(conn_check(arg));
}

static size_t out_len(const struct bb_conn *c)
{
    return evbuffer_get_length(bufferevent_get_output(c->bev));
}

/* Between requests: go on with pipelined input only while the client reads its answers.
 * Above OUT_HIGH_WATER the connection stops reading; conn_write_cb resumes it. */
static void conn_next_request(struct bb_conn *c)
{
    if (out_len(c) > OUT_HIGH_WATER) {
        c->read_paused = true;
        evtimer_del(c->timer); /* not idle: the send timeout watches a client that never reads */
        bufferevent_disable(c->bev, EV_READ);
        bufferevent_setwatermark(c->bev, EV_WRITE, OUT_LOW_WATER, 0);
        return;
    }
    c->read_paused = false;
    bufferevent_enable(c->bev, EV_READ);
    if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
        conn_process(c);
}

static void conn_write_cb(struct bufferevent *bev, void *arg)
{
    struct bb_conn *c = conn_check(arg);
    if (c->read_paused) {
        if (out_len(c) > OUT_LOW_WATER)
            return;
        bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
        timer_ms(c, c->w->draining ? 500 : c->w->conf->limits.keepalive_timeout_ms);
        conn_next_request(c);
        return;
    }
    if (c->state == CONN_LINGER) {
        if (evbuffer_get_length(bufferevent_get_output(bev)) != 0)
            return;
        if (c->tls) {
            conn_free(c);
            return;
        }
        /* Half-close, then discard what the client still sends for a moment: closing with
         * unread input would RST the connection and could destroy the answer in flight. */
        shutdown(bufferevent_getfd(bev), SHUT_WR);
        bufferevent_enable(bev, EV_READ);
        timer_ms(c, LINGER_MS);
        return;
    }
    if (c->drained_cb && c->req &&
        evbuffer_get_length(bufferevent_get_output(bev)) <= OUT_LOW_WATER) {
        void (*cb)(struct bb_request *) = c->drained_cb;
        c->drained_cb = NULL;
        bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
        cb(c->req);
    }
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct bb_conn *c = conn_check(arg);
    (void)bev;
    if (what & BEV_EVENT_ERROR) {
        unsigned long e;
        while ((e = bufferevent_get_openssl_error(c->bev)) != 0) {
            char buf[256];
            if (ERR_GET_LIB(e) == 0)
                continue; /* libevent's errno placeholder, not an OpenSSL error */
            ERR_error_string_n(e, buf, sizeof buf);
            bb_info("tls: client handshake/IO failed: %s", buf);
        }
    }
    if (what & BEV_EVENT_TIMEOUT)
        bb_info("http: client read none of its response for limits.send_timeout_ms: closed");
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
        conn_free(c);
}

static void conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct bb_conn *c = conn_check(arg);
    switch (c->state) {
    case CONN_HEAD:
        if (evbuffer_get_length(bufferevent_get_input(c->bev)) == 0 && !c->req) {
            conn_free(c); /* idle keep-alive, or a connection that never sent a byte */
            return;
        }
        BB_HTTP_HEAD(h);
        conn_peek_head(c, &h);
        conn_fail_raw(c, 408, "request head not received in time", &h);
        return;
    case CONN_BODY:
        if (c->req) {
            c->req->close_after = true;
            bb_request_fail(c->req, BB_ERR_REQUEST_TIMEOUT, "request body not received in time");
        }
        return;
    case CONN_BUSY:
        return;
    case CONN_LINGER:
        conn_free(c);
        return;
    }
}

/* ---- responses ---- */

int bb_http_header_add(char *buf, size_t cap, size_t *len, const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strlen(value);
    if (*len >= cap || !bb_http_token_ok(name, nl) || !bb_http_field_value_ok(value, vl) ||
        nl + vl + 5 > cap - *len) { /* ": " CRLF NUL */
        bb_warn("http: response header %.40s dropped (%s)", name,
                *len < cap && nl + vl + 5 > cap - *len ? "too long" : "invalid value");
        return -1;
    }
    char *p = buf + *len;
    memcpy(p, name, nl);
    memcpy(p + nl, ": ", 2);
    memcpy(p + nl + 2, value, vl);
    memcpy(p + nl + 2 + vl, "\r\n", 3);
    *len += nl + vl + 4;
    return 0;
}

/* Header names bb_http_respond_head writes itself: framing is decided here, never by a line
 * that came from elsewhere. */
static bool reserved_name(const char *s, size_t n)
{
    return bb_http_ieq(s, n, "content-length") || bb_http_ieq(s, n, "transfer-encoding") ||
           bb_http_ieq(s, n, "connection") || bb_http_ieq(s, n, "content-type") ||
           bb_http_ieq(s, n, "x-request-id");
}

/* The first CRLF in p[0..n), or NULL (memmem with a two-byte needle costs ten times this). */
static const char *find_crlf(const char *p, size_t n)
{
    const char *end = p + n;
    for (const char *r; (r = memchr(p, '\r', (size_t)(end - p))); p = r + 1)
        if (r + 1 < end && r[1] == '\n')
            return r;
    return NULL;
}

void bb_http_header_lines(const char *h, size_t n, const char *id,
                          void (*fn)(void *arg, const struct bb_http_header *f, size_t line_len),
                          void *arg)
{
    for (const char *line = h, *end_all = h + n; line && line < end_all;) {
        size_t left = (size_t)(end_all - line);
        const char *crlf = find_crlf(line, left);
        size_t ll = crlf ? (size_t)(crlf - line) : left;
        const char *colon = memchr(line, ':', ll);
        bool ok = crlf && colon && bb_http_token_ok(line, (size_t)(colon - line)) &&
                  !reserved_name(line, (size_t)(colon - line));
        struct bb_http_header f = {line, colon ? (size_t)(colon - line) : 0, NULL, 0};
        if (ok) {
            const char *v = colon + 1, *end = line + ll;
            while (v < end && (*v == ' ' || *v == '\t'))
                v++;
            f.value = v;
            f.value_len = (size_t)(end - v);
            ok = bb_http_field_value_ok(v, f.value_len);
        }
        if (ok)
            fn(arg, &f, ll + 2);
        else
            bb_warn("request %s: a malformed or reserved response header line (%zu bytes) was "
                    "dropped",
                    id, ll);
        line += ll + (crlf ? 2 : 0);
    }
}

static void add_line(void *out, const struct bb_http_header *f, size_t line_len)
{
    evbuffer_add(out, f->name, line_len);
}

int bb_http_respond_head(struct bb_request *req, int status, const char *content_type,
                         const char *extra_headers, size_t extra_len, enum bb_body_mode mode,
                         int64_t content_length)
{
    struct bb_conn *c = req->conn;
    if (req->h2)
        return bb_h2_respond_head(req, status, content_type, extra_headers, extra_len, mode,
                                  content_length);
    req->responded = true;
    req->status = status;
    if (!c)
        return -1;
    if (mode == BB_BODY_CHUNKED && req->head.minor_version == 0)
        mode = BB_BODY_CLOSE;
    /* An answer before the whole body was read closes: the rest of the body is not read. */
    if (mode == BB_BODY_CLOSE || !req->head.keep_alive || c->w->draining || c->state == CONN_BODY)
        req->close_after = true;
    req->out_mode = mode;
    /* written without printf (once per answer, on every path) */
    char buf[512];
    struct jw w = {buf, 0, sizeof buf, false};
    jw_lit(&w, "HTTP/1.1 ");
    jw_u64(&w, status >= 100 && status <= 999 ? (uint64_t)status : 500u);
    jw_lit(&w, " ");
    jw_raw(&w, bb_http_reason(status));
    jw_lit(&w, "\r\nx-request-id: ");
    jw_raw(&w, req->id);
    jw_lit(&w, "\r\n");
    size_t ctl = content_type ? strlen(content_type) : 0;
    if (content_type && (ctl > 200 || !bb_http_field_value_ok(content_type, ctl))) {
        bb_warn("request %s: a malformed response Content-Type was dropped", req->id);
        content_type = NULL;
    }
    if (content_type) {
        jw_lit(&w, "Content-Type: ");
        jw_mem(&w, content_type, ctl);
        jw_lit(&w, "\r\n");
    }
    if (mode == BB_BODY_LENGTH || mode == BB_BODY_NONE) {
        jw_lit(&w, "Content-Length: ");
        jw_u64(&w, mode == BB_BODY_NONE || content_length < 0 ? 0u : (uint64_t)content_length);
        jw_lit(&w, "\r\n");
    } else if (mode == BB_BODY_CHUNKED) {
        jw_lit(&w, "Transfer-Encoding: chunked\r\n");
    }
    if (req->close_after)
        jw_lit(&w, "Connection: close\r\n");
    else if (req->head.minor_version == 0)
        jw_lit(&w, "Connection: keep-alive\r\n");
    struct evbuffer *out = bufferevent_get_output(c->bev);
    evbuffer_add(out, buf, w.n); /* (never full: every part above is bounded) */
    if (extra_headers && extra_len)
        bb_http_header_lines(extra_headers, extra_len, req->id, add_line, out);
    evbuffer_add(out, "\r\n", 2);
    return 0;
}

/* "<len in hex>\r\n" into b (24 bytes): a chunk's size line, without printf (once per
 * relayed stream frame). Its length. */
static size_t chunk_size_line(char *b, size_t len)
{
    struct jw w = {b, 0, 24, false};
    jw_x64(&w, len);
    jw_lit(&w, "\r\n");
    return w.n;
}

int bb_http_respond_body(struct bb_request *req, const void *data, size_t len)
{
    struct bb_conn *c = req->conn;
    if (req->h2)
        return bb_h2_respond_body(req, data, len);
    if (!c)
        return -1;
    if (len == 0 || req->head_only)
        return 0;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (req->out_mode == BB_BODY_CHUNKED) {
        char sz[24];
        evbuffer_add(out, sz, chunk_size_line(sz, len));
        evbuffer_add(out, data, len);
        evbuffer_add(out, "\r\n", 2);
    } else {
        evbuffer_add(out, data, len);
    }
    return 0;
}

int bb_http_respond_buffer(struct bb_request *req, struct evbuffer *buf)
{
    struct bb_conn *c = req->conn;
    if (req->h2)
        return bb_h2_respond_buffer(req, buf);
    size_t len = evbuffer_get_length(buf);
    if (!c)
        return -1;
    if (len == 0 || req->head_only) {
        evbuffer_drain(buf, len);
        return 0;
    }
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (req->out_mode == BB_BODY_CHUNKED) {
        char sz[24];
        evbuffer_add(out, sz, chunk_size_line(sz, len));
        evbuffer_add_buffer(out, buf);
        evbuffer_add(out, "\r\n", 2);
    } else {
        evbuffer_add_buffer(out, buf);
    }
    return 0;
}

void bb_http_respond_end(struct bb_request *req)
{
    struct bb_conn *c = req->conn;
    if (req->response_done)
        return;
    if (req->h2) {
        bb_h2_respond_end(req);
        return;
    }
    req->response_done = true;
    if (c && req->out_mode == BB_BODY_CHUNKED && !req->head_only)
        bufferevent_write(c->bev, "0\r\n\r\n", 5);
}

void bb_http_respond_full(struct bb_request *req, int status, const char *content_type,
                          const char *extra_headers, const void *body, size_t len)
{
    bb_http_respond_head(req, status, content_type, extra_headers,
                         extra_headers ? strlen(extra_headers) : 0, BB_BODY_LENGTH, (int64_t)len);
    bb_http_respond_body(req, body, len);
    bb_http_respond_end(req);
}

/* A plain connection takes a finished answer at once. Queuing it armed the bufferevent's write
 * event, which the loop hands to epoll only at its next turn: written here and the event
 * dropped in the same turn, an answer costs no epoll_ctl pair and no extra wakeup. This is what
 * libevent's own write callback does (the output's front is frozen outside it; a drained
 * output drops the write event). What the socket does not take (or an error) is left to the
 * bufferevent as usual, and so is all of it while conn_write_cb has work to do once the output
 * drains (a lingering close, paused reading, a drained callback). */
static void conn_write_now(struct bb_conn *c)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (c->tls || c->state == CONN_LINGER || c->read_paused || c->drained_cb ||
        !evbuffer_get_length(out))
        return;
    evbuffer_unfreeze(out, 1);
    int n = evbuffer_write(out, bufferevent_getfd(c->bev));
    evbuffer_freeze(out, 1);
    if (n > 0 && !evbuffer_get_length(out))
        event_del(&c->bev->ev_write);
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct bb_worker *w = arg;
    while (w->flush_list) {
        struct bb_conn *c = w->flush_list;
        w->flush_list = c->flush_next;
        c->flush_queued = false;
        conn_write_now(c);
    }
}

void bb_http_write_soon(struct bb_request *req)
{
    struct bb_conn *c = req->conn;
    if (req->h2 || !c || c->tls || c->flush_queued)
        return;
    struct bb_worker *w = c->w;
    if (!w->http_flush && !(w->http_flush = event_new(w->base, -1, 0, flush_cb, w)))
        return; /* the bufferevent writes it at the loop's next turn */
    c->flush_queued = true;
    c->flush_next = w->flush_list;
    w->flush_list = c;
    event_active(w->http_flush, EV_WRITE, 0);
}

size_t bb_http_output_pending(const struct bb_request *req)
{
    if (req->h2)
        return bb_h2_output_pending(req);
    return req->conn ? evbuffer_get_length(bufferevent_get_output(req->conn->bev)) : 0;
}

void bb_http_on_drained(struct bb_request *req, void (*cb)(struct bb_request *))
{
    struct bb_conn *c = req->conn;
    if (req->h2) {
        bb_h2_on_drained(req, cb);
        return;
    }
    if (!c)
        return;
    c->drained_cb = cb;
    bufferevent_setwatermark(c->bev, EV_WRITE, OUT_LOW_WATER, 0);
}

void bb_http_conn_request_done(struct bb_conn *c, struct bb_request *req)
{
    struct bb_worker *w = c->w;
    if (req->h2) {
        bb_h2_request_done(req);
        return;
    }
    c->req = NULL;
    c->drained_cb = NULL;
    if (c->state == CONN_BUSY || c->state == CONN_BODY) {
        w->n_active--;
        atomic_store_explicit(&w->self->inflight, w->n_active, memory_order_relaxed);
        atomic_fetch_add_explicit(&w->self->requests, 1, memory_order_relaxed);
    }
    if (req->close_after || !req->response_done || c->state == CONN_BODY) {
        evtimer_del(c->timer);
        conn_linger(c);
        return;
    }
    /* keep-alive: wait for the next request, process pipelined bytes at once */
    conn_write_now(c);
    c->state = CONN_HEAD;
    c->got_bytes = false;
    timer_ms(c, w->draining ? 500 : w->conf->limits.keepalive_timeout_ms);
    conn_next_request(c);
}

void bb_http_drain(struct bb_worker *w)
{
    /* Idle connections get a short grace instead of an immediate close, so a request already
     * on the wire is answered (with Connection: close) rather than reset. HTTP/2 connections
     * get GOAWAY: their open streams finish. */
    for (struct bb_conn *c = w->conns; c; c = c->next)
        if (c->h2)
            bb_h2_drain(c->h2);
        else if (c->state == CONN_HEAD && !c->req &&
                 evbuffer_get_length(bufferevent_get_input(c->bev)) == 0)
            timer_ms(c, 500);
}

void bb_http_conn_close(struct bb_conn *c)
{
    conn_free(conn_check(c));
}

void bb_http_conn_linger(struct bb_conn *c)
{
    bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
    bufferevent_enable(c->bev, EV_WRITE);
    evtimer_del(c->timer);
    conn_linger(c);
}

void bb_http_close_all(struct bb_worker *w)
{
    while (w->conns)
        conn_free(w->conns);
    if (w->http_flush)
        event_free(w->http_flush);
    w->http_flush = NULL;
}
