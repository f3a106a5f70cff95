/*
 * request: creation, routing to a handler by method and path, dialect errors, and the one
 * finalize. Worker process, single-threaded.
 */
#include "worker/request.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/shm.h"
#include "worker/endpoints.h"
#include "worker/http_server.h"
#include "worker/jw.h"
#include "worker/meter.h"
#include "worker/proto.h"
#include "worker/proxy.h"
#include "worker/worker.h"

struct route {
    const char *method;
    const char *path;
    void (*handler)(struct bb_request *req);
    enum bb_proto dialect;
    bool open; /* no client authentication (SPEC §3.1: /healthz) */
};

/* busbar's own fixed-path endpoints (SPEC §3.1); each protocol's routes (its POST route, its
 * model list, its model-in-path routes) come from its module (worker/proto.h). */
static const struct route own_routes[] = {
    {"GET", "/healthz", bb_endpoint_healthz, BB_PROTO_DEFAULT, true},
    {"GET", "/stats", bb_endpoint_stats, BB_PROTO_DEFAULT, false},
    {"GET", "/metrics", bb_obs_metrics_endpoint, BB_PROTO_DEFAULT, true}, /* admin token: obs.c */
};

/* The protocol whose model list answers GET path when the request carries no protocol's
 * models_header: the first that lists there without one, else the first that lists there;
 * -1 when none does. */
static int models_owner(const char *path)
{
    int any = -1;
    for (int p = 0; p < BB_PROTO__COUNT; p++) {
        const struct bb_proto_ops *o = bb_proto_get((enum bb_proto)p);
        if (!o->models_list || !o->models_path || strcmp(o->models_path, path) != 0)
            continue;
        if (!o->models_header)
            return p;
        any = any < 0 ? p : any;
    }
    return any;
}

/* The fixed-path routes of path (every method): busbar's own, then each protocol's POST
 * route and model list. Returns how many were written into out. */
static size_t fixed_routes(const char *path, struct route *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < sizeof own_routes / sizeof own_routes[0] && n < cap; i++)
        if (strcmp(path, own_routes[i].path) == 0)
            out[n++] = own_routes[i];
    for (int p = 0; p < BB_PROTO__COUNT && n < cap; p++) {
        const struct bb_proto_ops *o = bb_proto_get((enum bb_proto)p);
        if (o->route && strcmp(path, o->route) == 0)
            out[n++] = (struct route){"POST", o->route, bb_proxy_handle, (enum bb_proto)p, false};
    }
    int m = models_owner(path);
    if (m >= 0 && n < cap)
        out[n++] = (struct route){"GET", path, bb_endpoint_models, (enum bb_proto)m, false};
    return n;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* URL-decode s[0..n) into the arena; NULL on a bad escape, an empty result or a control byte
 * (NUL included: a name is the same for every reader of it).
 * n is a length inside a NUL-terminated path: anything beyond the path is a caller's bug. */
static char *url_decode(struct bb_arena *a, const char *s, size_t n)
{
    if (n == 0 || memchr(s, '\0', n))
        return NULL;
    char *out = bb_arena_alloc(a, n + 1);
    size_t o = 0;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            if (i + 2 >= n)
                return NULL;
            int h = hexval(s[i + 1]);
            int l = hexval(s[i + 2]);
            if (h < 0 || l < 0 || h < 2 || (h == 7 && l == 15))
                return NULL;
            out[o++] = (char)(h * 16 + l);
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return o ? out : NULL;
}

/* The dialect a path suggests, for errors on unknown or malformed routes. */
static enum bb_proto dialect_of_path(const char *path)
{
    for (int p = 0; p < BB_PROTO__COUNT; p++) {
        const struct bb_proto_ops *o = bb_proto_get((enum bb_proto)p);
        if (o->claims_path && o->claims_path(path))
            return (enum bb_proto)p;
    }
    return BB_PROTO_DEFAULT;
}

enum bb_proto bb_request_dialect_of(const char *target, size_t len)
{
    char path[256];
    /* absolute-form (RFC 9112 §3.2.2): keep only the path */
    if (len > 8 && (strncmp(target, "http://", 7) == 0 || strncmp(target, "https://", 8) == 0)) {
        const char *s = memchr(target + 8, '/', len - 8);
        len = s ? len - (size_t)(s - target) : 0;
        target = s ? s : "";
    }
    const char *q = memchr(target, '?', len);
    size_t n = q ? (size_t)(q - target) : len;
    n = n < sizeof path - 1 ? n : sizeof path - 1;
    memcpy(path, target, n);
    path[n] = '\0';
    return dialect_of_path(path);
}

/* The request's method matches a route's: exactly, or HEAD for GET (RFC 9110 §9.3.2: the same
 * answer without its body). */
static bool method_is(const struct bb_request *req, const char *m)
{
    size_t n = strlen(m);
    if (req->head.method_len == n && memcmp(req->head.method, m, n) == 0)
        return true;
    return req->head_only && strcmp(m, "GET") == 0;
}

/* A route that names the model in its path (each module's match_route: Gemini
 * /v1beta/models/{m}:generateContent, Bedrock /model/{id}/converse, Anthropic
 * /{pool}/v1/messages, ...). 1 = matched (req filled), 0 = not an LLM route, -1 = matched
 * but malformed (answered). */
static int match_llm_route(struct bb_request *req)
{
    struct bb_proto_route r;
    int p;
    for (p = 0; p < BB_PROTO__COUNT; p++) {
        const struct bb_proto_ops *o = bb_proto_get((enum bb_proto)p);
        memset(&r, 0, sizeof r);
        r.stream = -1;
        if (o->match_route && o->match_route(req->path, req->path_len, req->query, &r) == 1)
            break;
    }
    if (p == BB_PROTO__COUNT)
        return 0;
    req->ingress = (enum bb_proto)p;
    req->path_stream = r.stream;
    req->route_flags = r.flags;
    const char *m = r.model;
    size_t ml = r.model_len;
    if (!method_is(req, "POST")) {
        char body[512];
        size_t bl = bb_errors_render(req->ingress, BB_ERR_METHOD_NOT_ALLOWED,
                                     "only POST is allowed on this path", body, sizeof body);
        bb_http_respond_full(req, 405, "application/json", "Allow: POST\r\n", body, bl);
        bb_request_finish(req);
        return -1;
    }
    req->model_from_path = ml ? url_decode(&req->arena, m, ml) : NULL;
    if (!req->model_from_path) {
        bb_request_fail(req, BB_ERR_MISSING_MODEL, "the model in the path is empty or invalid");
        return -1;
    }
    return 1;
}

struct bb_request *bb_request_new(struct bb_worker *w, struct bb_conn *conn, const char *buf,
                                  size_t len, const struct bb_http_head *parsed, size_t arena_cap)
{
    struct bb_arena arena;
    bb_arena_init(&arena, arena_cap);
    struct bb_request *req = bb_arena_calloc(&arena, sizeof *req);
    /* the head's header slots: as many as the parsed head has, or room for a parse */
    size_t slots = parsed ? (parsed->n_headers ? parsed->n_headers : 1) : BB_HTTP_MAX_HEADERS;
    struct bb_http_header *hs =
        req ? bb_arena_alloc(&arena, slots * sizeof(struct bb_http_header)) : NULL;
    char *copy = hs ? bb_arena_strndup(&arena, buf, len) : NULL;
    if (!copy) {
        bb_arena_free(&arena);
        return NULL;
    }
    req->arena = arena;
    req->magic = BB_MAGIC_REQ;
    req->w = w;
    req->conn = conn;
    req->head_buf = copy;
    req->head_len = len;
    req->head.headers = hs;
    req->pool = -1;
    req->lane = -1;
    req->ingress = BB_PROTO_DEFAULT;
    req->path_stream = -1;
    req->journal = -1;
    req->bill_lane = -1;
    req->t_start_us = bb_now_us();
    struct jw idw = {req->id, 0, sizeof req->id - 1, false}; /* "bb-<prefix>-<n in hex>" */
    jw_lit(&idw, "bb-");
    jw_raw(&idw, w->id_prefix);
    jw_lit(&idw, "-");
    jw_x64(&idw, ++w->next_request_id);
    req->id[idw.n] = '\0';
    int st;
    /* The head's pointers must outlive the connection buffer: into the private copy. */
    if (parsed)
        bb_http_head_rebase(&req->head, parsed, buf, copy);
    else if (bb_http_parse_request(copy, len, &req->head, &st) <= 0) {
        arena = req->arena;
        bb_arena_free(&arena);
        return NULL;
    }
    const char *t = req->head.target;
    size_t tl = req->head.target_len;
    /* absolute-form (RFC 9112 §3.2.2): keep only the path */
    if (tl > 7 && (strncmp(t, "http://", 7) == 0 || strncmp(t, "https://", 8) == 0)) {
        const char *s = memchr(t + 8, '/', tl - 8);
        tl = s ? tl - (size_t)(s - t) : 1;
        t = s ? s : "/";
    }
    const char *q = memchr(t, '?', tl);
    req->path_len = q ? (size_t)(q - t) : tl;
    req->path = bb_arena_strndup(&req->arena, t, req->path_len);
    if (q)
        req->query = bb_arena_strndup(&req->arena, q + 1, tl - req->path_len - 1);
    if (!req->path) {
        arena = req->arena;
        bb_arena_free(&arena);
        return NULL;
    }
    req->ingress = dialect_of_path(req->path); /* errors before routing (413, 503) */
    req->head_only = req->head.method_len == 4 && memcmp(req->head.method, "HEAD", 4) == 0;
    return req;
}

/* Client authentication (SPEC §3.2) on the head: false when refused (answered with the one
 * 401). A SigV4 signature also covers the body: bb_request_dispatch finishes that check. */
static bool authenticated(struct bb_request *req)
{
    if (bb_auth_check(req, &req->auth) == 0)
        return true;
    bb_request_fail(req, BB_ERR_UNAUTHORIZED, BB_AUTH_DENIED_MSG);
    return false;
}

/* 405 for a known path with another method; Allow lists the path's methods. */
static void method_not_allowed(struct bb_request *req)
{
    struct route routes[8];
    size_t n_routes = fixed_routes(req->path, routes, sizeof routes / sizeof routes[0]);
    char allow[128] = "Allow: ";
    for (size_t i = 0; i < n_routes; i++) {
        if (allow[7])
            strcat(allow, ", ");
        strcat(allow, routes[i].method);
        if (strcmp(routes[i].method, "GET") == 0)
            strcat(allow, ", HEAD");
    }
    strcat(allow, "\r\n");
    char body[512];
    char msg[160];
    snprintf(msg, sizeof msg, "method %.*s not allowed on %.80s", (int)req->head.method_len,
             req->head.method, req->path);
    size_t n = bb_errors_render(req->ingress, BB_ERR_METHOD_NOT_ALLOWED, msg, body, sizeof body);
    char hdrs[256];
    size_t hl = bb_errors_headers(req->ingress, 405, hdrs, sizeof hdrs);
    memcpy(hdrs + hl, allow, strlen(allow) + 1);
    bb_http_respond_full(req, 405, "application/json", hdrs, body, n);
    bb_request_finish(req);
}

bool bb_request_route(struct bb_request *req)
{
    struct route routes[8];
    size_t n_routes = fixed_routes(req->path, routes, sizeof routes / sizeof routes[0]);
    bool path_known = n_routes > 0;
    req->ingress = dialect_of_path(req->path);
    for (size_t i = 0; i < n_routes; i++) {
        req->ingress = routes[i].dialect;
        if (method_is(req, routes[i].method)) {
            if (!routes[i].open && !authenticated(req))
                return false;
            req->handler = routes[i].handler;
            return true;
        }
    }
    if (path_known) {
        method_not_allowed(req);
        return false;
    }
    int r = match_llm_route(req);
    if (r < 0)
        return false;
    if (r > 0) {
        if (!authenticated(req))
            return false;
        req->handler = bb_proxy_handle;
        return true;
    }
    char msg[160];
    snprintf(msg, sizeof msg, "unknown path '%.100s'", req->path);
    bb_request_fail(req, BB_ERR_NOT_FOUND, msg);
    return false;
}

void bb_request_dispatch(struct bb_request *req)
{
    if (req->auth.sigv4 && bb_auth_check_body(req, &req->auth) < 0) {
        bb_request_fail(req, BB_ERR_UNAUTHORIZED, BB_AUTH_DENIED_MSG);
        return;
    }
    req->handler(req);
}

void bb_request_fail_with(struct bb_request *req, enum bb_errkind kind, const char *msg,
                          const char *extra_headers)
{
    if (!req->responded) {
        char body[1024], hdrs[512];
        int status = bb_errkind_status_in(req->ingress, kind);
        size_t n = bb_errors_render(req->ingress, kind, msg, body, sizeof body);
        size_t hl = bb_errors_kind_headers(req->ingress, kind, hdrs, sizeof hdrs);
        snprintf(hdrs + hl, sizeof hdrs - hl, "%s", extra_headers ? extra_headers : "");
        bb_http_respond_full(req, status, "application/json", hdrs, body, n);
    }
    bb_request_finish(req);
}

void bb_request_fail(struct bb_request *req, enum bb_errkind kind, const char *msg)
{
    bb_request_fail_with(req, kind, msg, NULL);
}

void bb_request_client_gone(struct bb_request *req)
{
    req->conn = NULL;
    bb_request_finish(req);
}

void bb_request_finish(struct bb_request *req)
{
    if (req->magic != BB_MAGIC_REQ) {
        bb_crit("request: finish of a request with bad magic %#x", req->magic);
        abort();
    }
    req->magic = 0; /* finishing twice is a bug: the second call aborts above */
    bb_meter_finish(req);
    bb_obs_request_end(req);
    bb_proxy_release(req);
    if (req->conn)
        bb_http_conn_request_done(req->conn, req);
    struct bb_arena arena = req->arena; /* req itself lives in the arena */
    bb_arena_free(&arena);
}
