/*
 * upstream: the client side toward providers (and policy webhooks). Per-worker keep-alive
 * connection pools (one per provider), the SSRF guard on every address connected to, plain or TLS
 * (SNI + certificate verification), TCP_NODELAY, connect / response-head / idle deadlines, response
 * head parsing and body decoding (Content-Length, chunked, or until close). Worker process,
 * single-threaded.
 *
 * One exchange = one request written, one response read. The caller gets callbacks; once
 * on_end or on_error runs the exchange is gone (the connection was pooled or closed), and the
 * caller may bb_upstream_cancel at any time before that, including inside on_head/on_body.
 */
#ifndef BB_UPSTREAM_H
#define BB_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/http_parse.h"

struct bb_worker;
struct bb_upconn;
struct evbuffer;

/* Failure classes of the network layer (SPEC §5.1 "network" / "timeout"). */
enum bb_upfail {
    BB_UPFAIL_CONNECT, /* DNS, refused, unreachable, TLS handshake */
    BB_UPFAIL_CONNECT_TIMEOUT,
    BB_UPFAIL_RESET,        /* reset or EOF before a complete response */
    BB_UPFAIL_HEAD_TIMEOUT, /* no response head in time */
    BB_UPFAIL_IDLE_TIMEOUT, /* body stalled */
    BB_UPFAIL_PROTOCOL,     /* malformed response */
    BB_UPFAIL_DENIED,       /* the host resolved to an address the SSRF guard refuses */
};

struct bb_upstream_cbs {
    /* Response head parsed (any status). Return -1 to cancel (then no more callbacks). */
    int (*on_head)(void *arg, const struct bb_http_head *head);
    /* Decoded body bytes. Return -1 to cancel. */
    int (*on_body)(void *arg, const char *data, size_t len);
    /* Body complete; the connection is already back in its pool (or closed). */
    void (*on_end)(void *arg);
    /* The exchange failed; bytes_seen says whether any response byte had arrived. */
    void (*on_error)(void *arg, enum bb_upfail why, bool bytes_seen);
};

struct bb_upstream_deadlines {
    uint32_t connect_ms;
    uint32_t head_ms; /* from request written to response head */
    uint32_t idle_ms; /* max gap between body reads */
};

/* Initialise the per-provider pools of a worker (after fork). */
int bb_upstream_init(struct bb_worker *w);
void bb_upstream_shutdown(struct bb_worker *w);

/* Start an exchange with host (a provider index, or bb_upstream_policy_host): reuse an idle
 * connection or resolve, check (SSRF guard) and connect. request holds the complete HTTP
 * request bytes (moved out of it). NULL on immediate failure. */
struct bb_upconn *bb_upstream_start(struct bb_worker *w, int host, struct evbuffer *request,
                                    const struct bb_upstream_deadlines *dl,
                                    const struct bb_upstream_cbs *cbs, void *arg);

/* The host of pool's policy webhook (pools.*.policy.url) for bb_upstream_start. */
int bb_upstream_policy_host(const struct bb_worker *w, int pool);

/* Abort the exchange: the connection is closed (never reused); no more callbacks. */
void bb_upstream_cancel(struct bb_upconn *u);

/* Stop/resume reading the response (client backpressure). */
void bb_upstream_pause(struct bb_upconn *u, bool paused);

const char *bb_upfail_name(enum bb_upfail why);

#endif
