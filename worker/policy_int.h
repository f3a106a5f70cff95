/*
 * policy_int: what the routing-policy modules share (worker/policy*.c only).
 *
 *   policy.c       the input snapshot, its JSON, the answer, the decision, fail-safe,
 *                  circuit breaker, counters
 *   policy_http.c  the webhook transport (HTTP/1.1 POST over worker/upstream.c)
 *   policy_unix.c  the Unix-socket transport (newline-delimited JSON, one connection)
 *   policy_lua.c   the script: the input as Lua tables, the answer read back
 */
#ifndef BB_POLICY_INT_H
#define BB_POLICY_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event_struct.h>

#include "common/metrics_shm.h"
#include "worker/policy.h"

struct bb_upconn;
struct evbuffer;
struct pol_sock;
struct pol_qnode;

#define BB_POLICY_ANSWER_MAX (64u << 10) /* bytes of a webhook/socket answer */

/* One pool member as the policy sees it. Numbers < 0: unknown. */
struct bb_policy_cand {
    const char *name;  /* the lane: what an order names */
    const char *model; /* upstream model */
    const char *provider;
    const char *protocol;
    uint32_t weight;
    bool priced;
    double price_in, price_out;  /* USD per 1M tokens */
    int64_t latency_us, ttft_us; /* EWMAs, -1 unknown */
    int64_t inflight;
    int64_t free_slots;  /* -1: no max_concurrent */
    const char *breaker; /* closed | half-open | open */
    int64_t context_max; /* -1 unknown */
    double headroom;     /* provider rate-limit headroom 0..1 (1 when unknown) */
};

/* {request, candidates, context} of one call. Points into the request and the config. */
struct bb_policy_input {
    const char *id, *protocol, *pool, *model;
    bool stream;
    uint64_t input_tokens;         /* estimate: body bytes / 4 */
    uint64_t max_output_tokens;    /* 0 = not set */
    const char *key_id, *key_name; /* NULL without a virtual key */
    const char *body;              /* the client's body (include_messages), else NULL */
    size_t body_len;
    struct bb_policy_cand *cand;
    size_t n_cand;
    double now; /* wall clock, seconds */
    bool has_budget;
    double budget_remaining_usd;
    int64_t rpm_remaining, tpm_remaining; /* -1: no such limit */
};

/* A policy's answer, or why there is none. */
struct bb_policy_answer {
    enum bb_mx_policy outcome;
    int *order; /* member indices (arena), outcome ORDER */
    size_t n_order;
    int status; /* outcome REJECT: 400..499 */
    char message[300];
    char why[300]; /* outcomes TIMEOUT..SKIPPED: for the log */
};

/* Per worker, per pool. */
struct pol_pool {
    int idx;
    uint32_t consec;        /* failures in a row */
    uint32_t cooldown_ms;   /* the last circuit-open period */
    uint64_t open_until_ms; /* circuit open until then; 0 = closed */
    bool probing;           /* the one call after a cooldown is out */
    struct pol_sock *sock;  /* policy.socket: the connection (policy_unix.c) */
};

struct bb_policy_rt {
    struct pol_pool *pools; /* one per conf pool */
};

#define BB_MAGIC_POLICY 0x504f4c31u

/* A webhook or socket call in flight (in the request's arena). */
struct bb_policy_call {
    uint32_t magic;
    struct bb_request *req;
    struct pol_pool *pp;
    enum bb_route_by by;
    struct event timer;    /* policy.timeout_ms */
    struct bb_upconn *up;  /* webhook exchange */
    struct evbuffer *body; /* webhook answer */
    int status;            /* webhook answer status */
    bool too_big;
    bool probe;             /* the circuit's one call after a cooldown */
    struct pol_qnode *node; /* socket queue entry */
};

/* ---- policy.c, for the transports ---- */

/* The answer text arrived: parse it and decide. */
void bb_policy_answered(struct bb_policy_call *c, const char *text, size_t len);
/* No answer (outcome TIMEOUT or ERROR): fall back. */
void bb_policy_failed(struct bb_policy_call *c, enum bb_mx_policy outcome, const char *why);
/* Member index of lane name[0..len) in pool, -1 when none. */
int bb_policy_member(const struct bb_request *req, const char *name, size_t len);
/* Add member m to ans's order (ignoring duplicates); seen[] per member. */
void bb_policy_order_add(struct bb_policy_answer *ans, bool *seen, int m);

/* ---- transports: start 0 = in flight, -1 = failed now (why set) ---- */

int bb_policy_http_start(struct bb_policy_call *c, const char *json, size_t len, char *why,
                         size_t cap);
int bb_policy_unix_start(struct bb_policy_call *c, const char *json, size_t len, char *why,
                         size_t cap);
/* The call goes away (client gone): its answer, if it comes, is dropped. */
void bb_policy_unix_forget(struct bb_policy_call *c);
/* The call timed out: forget it and close the connection (answers would be out of step). */
void bb_policy_unix_timeout(struct bb_policy_call *c);
void bb_policy_unix_free(struct pol_pool *pp);

/* Run pool's script on in; fills ans (ORDER, ABSTAIN, REJECT, or TIMEOUT/ERROR/INVALID). */
void bb_policy_lua_run(struct bb_request *req, const struct bb_policy_input *in,
                       struct bb_policy_answer *ans);

#endif
