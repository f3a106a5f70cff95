/*
 * policy_http: the webhook transport of routing policies (pools.*.policy.url). One HTTP/1.1
 * POST per call over worker/upstream.c, so the webhook gets what a provider gets: a
 * keep-alive connection pool per worker, TLS with verification, and the SSRF guard on every
 * address it resolves to. A call that times out cancels its exchange (the connection is
 * closed, never reused). Worker process, single-threaded.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "common/log.h"
#include "worker/policy_int.h"
#include "worker/request.h"
#include "worker/upstream.h"
#include "worker/worker.h"

static struct bb_policy_call *call_of(void *arg)
{
    struct bb_policy_call *c = arg;
    if (c->magic != BB_MAGIC_POLICY) {
        bb_crit("policy_http: callback for a finished call");
        abort();
    }
    return c;
}

static int on_head(void *arg, const struct bb_http_head *h)
{
    call_of(arg)->status = h->status;
    return 0;
}

static int on_body(void *arg, const char *data, size_t len)
{
    struct bb_policy_call *c = call_of(arg);
    if (c->too_big || evbuffer_get_length(c->body) + len > BB_POLICY_ANSWER_MAX)
        c->too_big = true; /* read on to the end (or the timeout), keep nothing */
    else
        evbuffer_add(c->body, data, len);
    return 0;
}

/* The exchange is over (the connection already back in its pool): decide now. */
static void on_end(void *arg)
{
    struct bb_policy_call *c = call_of(arg);
    c->up = NULL;
    char why[128];
    if (c->status != 200) {
        snprintf(why, sizeof why, "the webhook answered HTTP %d", c->status);
        bb_policy_failed(c, BB_MX_POL_ERROR, why);
    } else if (c->too_big) {
        snprintf(why, sizeof why, "the answer is larger than %u bytes", BB_POLICY_ANSWER_MAX);
        bb_policy_failed(c, BB_MX_POL_INVALID, why);
    } else {
        size_t n = evbuffer_get_length(c->body);
        const char *text = (const char *)evbuffer_pullup(c->body, (ev_ssize_t)n);
        bb_policy_answered(c, text ? text : "", n);
    }
}

static void on_error(void *arg, enum bb_upfail why, bool bytes_seen)
{
    (void)bytes_seen;
    struct bb_policy_call *c = call_of(arg);
    c->up = NULL;
    char msg[128];
    snprintf(msg, sizeof msg, "webhook: %s", bb_upfail_name(why));
    bb_policy_failed(c, BB_MX_POL_ERROR, msg);
}

static const struct bb_upstream_cbs cbs = {on_head, on_body, on_end, on_error};

int bb_policy_http_start(struct bb_policy_call *c, const char *json, size_t len, char *why,
                         size_t cap)
{
    struct bb_request *req = c->req;
    struct bb_worker *w = req->w;
    const struct bb_policy_conf *pc = &w->conf->pools[req->pool].policy;
    const struct bb_url *u = &pc->url_parsed;
    struct evbuffer *out = evbuffer_new();
    c->body = evbuffer_new();
    if (!out || !c->body) {
        if (out)
            evbuffer_free(out);
        snprintf(why, cap, "out of memory");
        return -1;
    }
    bool v6 = strchr(u->host, ':') != NULL, dflt = u->port == (u->tls ? 443 : 80);
    evbuffer_add_printf(out, "POST %s HTTP/1.1\r\nHost: %s%s%s", u->path[0] ? u->path : "/",
                        v6 ? "[" : "", u->host, v6 ? "]" : "");
    if (!dflt)
        evbuffer_add_printf(out, ":%u", u->port);
    evbuffer_add_printf(out,
                        "\r\nContent-Type: application/json\r\nAccept: application/json\r\n"
                        "User-Agent: busbar/%s\r\nx-request-id: %s\r\nContent-Length: %zu\r\n\r\n",
                        BB_VERSION, req->id, len);
    evbuffer_add(out, json, len);
    /* the call's own timer (policy.c) ends it first; these only bound a connection that
     * outlives it */
    uint32_t ms = pc->timeout_ms + 1000;
    struct bb_upstream_deadlines dl = {ms, ms, ms};
    c->up = bb_upstream_start(w, bb_upstream_policy_host(w, req->pool), out, &dl, &cbs, c);
    evbuffer_free(out);
    if (!c->up) {
        snprintf(why, cap, "webhook: could not open a connection");
        return -1;
    }
    return 0;
}
