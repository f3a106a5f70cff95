/*
 * obs_post: the batched POST queue (see obs_post.h). Items live in one evbuffer, joined by the
 * separator; a POST takes the whole queue in one body, one POST in flight at a time.
 * Under load a batch fills long before the interval, so batches are kept small (a body that
 * streams half a megabyte through the worker's caches cost a tenth of its throughput) and the
 * connection is kept alive between POSTs (evhttp reconnects when the receiver closed it while
 * idle). A POST that fails drops its batch and its connection; the next POST opens a new one.
 * A connection cannot be freed inside its own request's callback: it is parked in `dead` and
 * freed before the next POST (which the callback schedules on the timer, never runs itself)
 * or when the queue goes.
 */
#include "worker/obs_post.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <openssl/ssl.h>

#include "common/log.h"
#include "worker/worker.h"

#define MAGIC_POST 0x504f5354u
#define BODY_ANSWER_MAX 65536

struct bb_post {
    uint32_t magic;
    struct bb_worker *w;
    struct bb_post_conf c;
    char host_header[300];
    char *path;
    struct evbuffer *q;             /* queued items, the separator between them */
    size_t n;                       /* items in q */
    size_t n_flight;                /* items in the POST in flight (0: none) */
    struct evhttp_connection *conn; /* kept alive between POSTs; NULL before the first */
    struct evhttp_connection *dead; /* a finished POST's connection, freed later */
    struct event *timer;
    uint64_t last_warn_ms;
    size_t sep_len;
};

static void arm(struct bb_post *p)
{
    if (!evtimer_pending(p->timer, NULL)) {
        struct timeval tv = {p->c.interval_ms / 1000, (p->c.interval_ms % 1000) * 1000};
        evtimer_add(p->timer, &tv);
    }
}

static void warn_once(struct bb_post *p, const char *fmt, const char *detail)
{
    uint64_t now = bb_now_ms();
    if (now - p->last_warn_ms < 10000 && p->last_warn_ms)
        return; /* a collector that is down is one line per 10 s, not one per batch */
    p->last_warn_ms = now;
    bb_warn(fmt, p->c.what, detail);
}

static void send_batch(struct bb_post *p);

static void done_cb(struct evhttp_request *req, void *arg)
{
    struct bb_post *p = arg;
    if (p->magic != MAGIC_POST) {
        bb_crit("obs_post: callback with bad magic");
        abort();
    }
    int code = req ? evhttp_request_get_response_code(req) : 0;
    if (code >= 200 && code < 300) {
        bb_mx_add(p->c.sent, p->n_flight);
    } else {
        bb_mx_add(p->c.dropped, p->n_flight);
        char detail[64];
        snprintf(detail, sizeof detail, code ? "HTTP %d" : "no answer (connection failed)", code);
        warn_once(p, "%s: a batch was dropped: %s", detail);
        p->dead = p->conn; /* start over on a new connection */
        p->conn = NULL;
    }
    p->n_flight = 0;
    if (p->n >= p->c.batch_items) { /* the next batch is ready: send it from the loop */
        struct timeval now = {0, 0};
        evtimer_add(p->timer, &now);
    } else if (p->n) {
        arm(p);
    }
}

static struct bufferevent *tls_bev(struct bb_post *p)
{
    SSL_CTX *ctx = p->w->rt->client_ctx;
    SSL *ssl = ctx ? SSL_new(ctx) : NULL;
    if (!ssl)
        return NULL;
    SSL_set_tlsext_host_name(ssl, p->c.url->host);
    SSL_set1_host(ssl, p->c.url->host);
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        p->w->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
    if (!bev)
        SSL_free(ssl);
    return bev;
}

/* The connection POSTs go on: the live one, or a new one. NULL on failure (warned). */
static struct evhttp_connection *connection(struct bb_post *p)
{
    if (p->conn)
        return p->conn;
    struct bufferevent *bev = NULL;
    if (p->c.url->tls && !(bev = tls_bev(p))) {
        warn_once(p, "%s: %s", "cannot set up TLS; batch dropped");
        return NULL;
    }
    p->conn = evhttp_connection_base_bufferevent_new(p->w->base, p->w->dns, bev, p->c.url->host,
                                                     p->c.url->port);
    if (!p->conn) {
        if (bev)
            bufferevent_free(bev);
        return NULL;
    }
    evhttp_connection_set_timeout(p->conn, (int)p->c.timeout_secs);
    evhttp_connection_set_retries(p->conn, 0);
    evhttp_connection_set_max_body_size(p->conn, BODY_ANSWER_MAX);
    return p->conn;
}

/* Drop (and count) everything queued. */
static void drop_queue(struct bb_post *p)
{
    bb_mx_add(p->c.dropped, p->n);
    evbuffer_drain(p->q, evbuffer_get_length(p->q));
    p->n = 0;
}

static void send_batch(struct bb_post *p)
{
    if (p->n_flight || p->n == 0)
        return;
    if (p->dead) {
        evhttp_connection_free(p->dead);
        p->dead = NULL;
    }
    struct evhttp_connection *conn = connection(p);
    struct evhttp_request *req = conn ? evhttp_request_new(done_cb, p) : NULL;
    if (!req) {
        drop_queue(p);
        return;
    }
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Host", p->host_header);
    evhttp_add_header(h, "Content-Type",
                      p->c.content_type ? p->c.content_type : "application/json");
    evhttp_add_header(h, "User-Agent", "busbar/" BB_VERSION);
    struct evbuffer *body = evhttp_request_get_output_buffer(req);
    char env[512];
    size_t env_len = p->c.envelope ? p->c.envelope(env, sizeof env, evbuffer_get_length(p->q)) : 0;
    if (p->c.envelope && !env_len) { /* cannot happen: the envelope is a few dozen bytes */
        evhttp_request_free(req);
        drop_queue(p);
        return;
    }
    if (p->c.envelope)
        evbuffer_add(body, env, env_len);
    else if (p->c.prefix)
        evbuffer_add(body, p->c.prefix, strlen(p->c.prefix));
    evbuffer_add_buffer(body, p->q); /* what came while the last POST was out: a batch or so */
    if (p->c.suffix)
        evbuffer_add(body, p->c.suffix, strlen(p->c.suffix));
    p->n_flight = p->n;
    p->n = 0;
    if (evhttp_make_request(conn, req, EVHTTP_REQ_POST, p->path) < 0) {
        /* the request was freed by evhttp_make_request */
        evhttp_connection_free(p->conn);
        p->conn = NULL;
        bb_mx_add(p->c.dropped, p->n_flight);
        p->n_flight = 0;
    }
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    send_batch(arg);
}

struct bb_post *bb_post_new(struct bb_worker *w, const struct bb_post_conf *c)
{
    struct bb_post *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->magic = MAGIC_POST;
    p->w = w;
    p->c = *c;
    if (!p->c.sep)
        p->c.sep = ",";
    p->sep_len = strlen(p->c.sep);
    const struct bb_url *u = c->url;
    bool v6 = strchr(u->host, ':') != NULL;
    int n = snprintf(p->host_header, sizeof p->host_header, v6 ? "[%s]" : "%s", u->host);
    if (u->port != (u->tls ? 443 : 80))
        snprintf(p->host_header + n, sizeof p->host_header - (size_t)n, ":%u", u->port);
    p->path = strdup(u->path[0] ? u->path : "/");
    p->q = evbuffer_new();
    p->timer = evtimer_new(w->base, timer_cb, p);
    if (!p->path || !p->q || !p->timer) {
        bb_post_free(p);
        return NULL;
    }
    return p;
}

bool bb_post_add(struct bb_post *p, const char *json, size_t len)
{
    if (p->n >= p->c.max_items) {
        bb_mx_add(p->c.dropped, 1);
        return false;
    }
    if (p->n && p->sep_len)
        evbuffer_add(p->q, p->c.sep, p->sep_len);
    evbuffer_add(p->q, json, len);
    p->n++;
    if (p->n >= p->c.batch_items)
        send_batch(p);
    else
        arm(p);
    return true;
}

void bb_post_free(struct bb_post *p)
{
    if (!p)
        return;
    if (p->conn) /* frees the request in flight without calling back */
        evhttp_connection_free(p->conn);
    if (p->dead)
        evhttp_connection_free(p->dead);
    bb_mx_add(p->c.dropped, p->n + p->n_flight);
    if (p->timer)
        event_free(p->timer);
    if (p->q)
        evbuffer_free(p->q);
    free(p->path);
    p->magic = 0;
    free(p);
}
