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
#include "worker/proxy.h"
#include "worker/worker.h"

struct route {
    const char *method;
    const char *path;
    void (*handler)(struct bb_request *req);
};

/* The data-plane routing table: one line per endpoint (SPEC §3.1). */
static const struct route routes[] = {
    {"POST", "/v1/chat/completions", bb_proxy_handle},
    {"GET", "/v1/models", bb_endpoint_models},
    {"GET", "/healthz", bb_endpoint_healthz},
    {"GET", "/stats", bb_endpoint_stats},
};

struct bb_request *bb_request_new(struct bb_worker *w, struct bb_conn *conn, const char *buf,
                                  size_t len, size_t arena_cap)
{
    struct bb_arena arena;
    bb_arena_init(&arena, arena_cap);
    struct bb_request *req = bb_arena_calloc(&arena, sizeof *req);
    char *copy = req ? bb_arena_strndup(&arena, buf, len) : NULL;
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
    req->pool = -1;
    req->lane = -1;
    req->ingress = BB_PROTO_OPENAI;
    req->t_start_us = bb_now_us();
    snprintf(req->id, sizeof req->id, "bb-%x-%llx", (unsigned)getpid(),
             (unsigned long long)++w->next_request_id);
    int st;
    /* Re-parse the private copy so the head's pointers outlive the connection buffer. */
    if (bb_http_parse_request(copy, len, &req->head, &st) <= 0) {
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
    return req;
}

void bb_request_dispatch(struct bb_request *req)
{
    bool path_known = false;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (strcmp(req->path, routes[i].path) != 0)
            continue;
        path_known = true;
        if (bb_http_ieq(req->head.method, req->head.method_len, routes[i].method) &&
            req->head.method_len == strlen(routes[i].method)) {
            routes[i].handler(req);
            return;
        }
    }
    if (!path_known) {
        char msg[160];
        snprintf(msg, sizeof msg, "unknown path '%.100s'", req->path);
        bb_request_fail(req, BB_ERR_NOT_FOUND, msg);
        return;
    }
    char allow[128] = "Allow: ";
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (strcmp(req->path, routes[i].path) == 0) {
            if (allow[7])
                strcat(allow, ", ");
            strcat(allow, routes[i].method);
        }
    strcat(allow, "\r\n");
    char body[512];
    char msg[160];
    snprintf(msg, sizeof msg, "method %.*s not allowed on %.80s", (int)req->head.method_len,
             req->head.method, req->path);
    size_t n = bb_errors_render(req->ingress, BB_ERR_METHOD_NOT_ALLOWED, msg, body, sizeof body);
    bb_http_respond_full(req, 405, "application/json", allow, body, n);
    bb_request_finish(req);
}

void bb_request_fail_with(struct bb_request *req, enum bb_errkind kind, const char *msg,
                          const char *extra_headers)
{
    if (!req->responded) {
        char body[1024];
        size_t n = bb_errors_render(req->ingress, kind, msg, body, sizeof body);
        bb_http_respond_full(req, bb_errkind_status(kind), "application/json", extra_headers,
                             body, n);
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
    bb_proxy_release(req);
    if (req->conn)
        bb_http_conn_request_done(req->conn, req);
    struct bb_arena arena = req->arena; /* req itself lives in the arena */
    bb_arena_free(&arena);
}
