/*
 * policy: programmable routing (SPEC §5.5, docs/routing.md). Once per request, after
 * admission and before the first attempt, a pool with route: webhook or route: script asks its
 * policy — an HTTP webhook, a Unix-socket server (newline-delimited JSON) or a sandboxed Lua
 * function — for the order of its members, given {request, candidates, context}. The answer is
 * an order (members left out follow, demoted, never dropped), an abstention (the native
 * weighted route decides) or a rejection (a 4xx to the client in its dialect).
 *
 * Fail-safe: every call has policy.timeout_ms; a timeout, an error, a closed connection, a
 * garbage answer or unknown member names go on per policy.on_error (weighted, first, reject),
 * counted per pool; a policy that keeps failing is circuit-broken per worker (skipped for a
 * cooldown, then probed by one call). Nothing waits on a policy past its timeout: no lane slot
 * is held while it runs.
 *
 * Worker process, single-threaded.
 */
#ifndef BB_POLICY_H
#define BB_POLICY_H

#include <stdint.h>

struct bb_request;
struct bb_worker;
struct json_object;

/* What decided a request's route: the x-busbar-route-policy value. */
#define BB_ROUTE_BY_LIST(X)                                                                        \
    X(NATIVE, "native")     /* the pool's own route (also: the policy abstained) */                \
    X(WEBHOOK, "webhook")   /* the webhook's order */                                              \
    X(SOCKET, "socket")     /* the Unix-socket policy's order */                                   \
    X(SCRIPT, "script")     /* the Lua script's order */                                           \
    X(FALLBACK, "fallback") /* the policy failed or was skipped: policy.on_error */

enum bb_route_by {
#define X(id, name) BB_ROUTE_BY_##id,
    BB_ROUTE_BY_LIST(X)
#undef X
        BB_ROUTE_BY__COUNT
};

const char *bb_route_by_name(enum bb_route_by by);

/* Per-worker state (circuit breakers, socket connections). -1 on OOM. */
int bb_policy_init(struct bb_worker *w);
void bb_policy_free(struct bb_worker *w);

/* The request was admitted: run its pool's policy (if any), then bb_attempt_next — now
 * (script, no policy, circuit open) or when the webhook/socket answers or times out. A
 * rejection answers the client and finishes the request instead. */
void bb_policy_route(struct bb_request *req);

/* The request ends: cancel its policy call in flight (from bb_proxy_release). */
void bb_policy_release(struct bb_request *req);

/* Add "policy": {...} (kind, outcomes, this worker's circuit) of pool to a /stats pool. */
void bb_policy_stats(struct bb_worker *w, int pool, struct json_object *po);

#endif
