/*
 * request: the request object (one per client request) and its single finalize.
 * Worker process, single-threaded. A request owns an arena; everything it allocates lives
 * there and dies in bb_request_finish, which is the only way a request ends.
 */
#ifndef BB_REQUEST_H
#define BB_REQUEST_H

#include <stdbool.h>
#include <stdint.h>

#include "common/arena.h"
#include "common/config.h"
#include "common/http_parse.h"
#include "common/price.h"
#include "worker/auth.h"
#include "worker/errors_http.h"
#include "worker/obs.h"

struct bb_conn;
struct bb_worker;
struct bb_upconn;
struct bb_attempt;
struct bb_route_state;
struct bb_creq;
struct bb_h2_stream;

enum bb_body_mode { BB_BODY_NONE, BB_BODY_LENGTH, BB_BODY_CHUNKED, BB_BODY_CLOSE };

struct bb_request {
    uint32_t magic;
    struct bb_arena arena;
    struct bb_worker *w;
    struct bb_conn *conn;    /* NULL once the client went away */
    struct bb_h2_stream *h2; /* the HTTP/2 stream it came on (worker/h2.h), or NULL */
    char id[40];             /* x-request-id; unique across workers and restarts */

    /* the client's request */
    struct bb_http_head head; /* points into head_buf */
    char *head_buf;
    size_t head_len;
    char *path; /* target without the query, NUL-terminated */
    size_t path_len;
    const char *query; /* after '?', or NULL */
    char *body;        /* NUL-terminated copy, body_len bytes */
    size_t body_len;
    enum bb_proto ingress; /* dialect errors are rendered in */
    char *model_from_path; /* Gemini/Bedrock/Anthropic /{pool}/v1/messages; or NULL */
    int path_stream;       /* -1 body decides; 0/1 from the path (Gemini, Bedrock) */
    unsigned route_flags;  /* the module's match_route flags (Gemini: ?alt=sse) */
    bool head_only;        /* HEAD request: no body in the response */
    void (*handler)(struct bb_request *req); /* chosen by bb_request_route */

    /* response state (owned by http_server) */
    bool responded; /* head sent */
    bool response_done;
    int status;
    enum bb_body_mode out_mode;
    bool close_after; /* Connection: close on this response */

    /* routing (owned by proxy) */
    int pool; /* -1 when the model named a lane */
    int lane; /* lane of the current attempt */
    bool stream;
    uint32_t attempts;
    struct bb_attempt *attempt;   /* current upstream attempt, NULL when none */
    struct bb_route_state *route; /* what the attempt loop keeps across attempts */
    uint64_t t_start_us, t_deadline_ms;

    /* timing for x-busbar-overhead-us */
    uint64_t t_upstream_us; /* time spent waiting on upstreams */

    /* governance (owned by auth and meter) */
    struct bb_auth auth;
    struct bb_keys_resv resv; /* the key's reservation while in flight */
    int journal;              /* its entry in the worker's journal, -1 none */
    bool metered;             /* a usage record is written when the request ends */
    bool usage_seen;          /* the answering attempt reported usage */
    struct bb_usage_tokens usage;
    uint64_t est_in, est_out; /* admission's token bounds (billed when no usage came) */
    int bill_lane;            /* lane whose answer reached the client, -1 none */
    uint32_t parts;           /* parts billed before a continuation took over */
    uint64_t banked_cost;     /* their cost (micro-dollars) */
    bool bill_ok;             /* that answer completed */
    struct bb_creq *cluster;  /* cluster mode admission/reservation (worker/cluster.c) */
    uint64_t cost_micros;     /* what it was billed (set by bb_meter_finish) */

    /* observability (worker/obs.h): recorded by the obs hooks */
    struct bb_obs_req obs;
};

/* The dialect errors about a request to target[0..len) are rendered in (origin or absolute
 * form, query ignored), decided from the path alone: usable as soon as the request line is
 * parsed. */
enum bb_proto bb_request_dialect_of(const char *target, size_t len);

/* Create a request for conn with the head in buf[0..len) copied: `parsed` is that head as
 * bb_http_parse_request left it (pointers into buf), or NULL to parse the copy. NULL on OOM or
 * (parsed NULL) a head that does not parse. */
struct bb_request *bb_request_new(struct bb_worker *w, struct bb_conn *conn, const char *buf,
                                  size_t len, const struct bb_http_head *parsed, size_t arena_cap);

/* On the head, before any body byte is read or 100 Continue sent: find the handler by method
 * and path and authenticate the client (every credential carrier is in the head). false =
 * answered and finished (unknown path, wrong method, malformed route, 401); true = read the
 * body, then call bb_request_dispatch. */
bool bb_request_route(struct bb_request *req);

/* With the whole body read: finish what authentication needs the body for (the payload hash
 * of a SigV4 signature), then run the handler bb_request_route chose. */
void bb_request_dispatch(struct bb_request *req);

/* Answer with a JSON error in the request's ingress dialect and finish the request. */
void bb_request_fail(struct bb_request *req, enum bb_errkind kind, const char *msg);

/* The same with extra "name: value\r\n" header lines (may be NULL). */
void bb_request_fail_with(struct bb_request *req, enum bb_errkind kind, const char *msg,
                          const char *extra_headers);

/* Called when the client connection dies before the response is complete. */
void bb_request_client_gone(struct bb_request *req);

/* The one finalize: releases the upstream attempt, counters, the arena. Safe once. */
void bb_request_finish(struct bb_request *req);

#endif
