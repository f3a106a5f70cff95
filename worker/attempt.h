/*
 * attempt: what the proxy's three parts share (worker/ only; see docs/architecture.md).
 *
 *   admit.c    the body scan of an LLM request: model → pool or lane, stream flag, output
 *              cap, session affinity, governance admission; then the first attempt.
 *   attempt.c  the attempt loop: pick a lane, build its upstream request, start it, and on
 *              failure classify, tell the breaker and move on (or give up in the client's
 *              dialect); continuation attempts after a cut.
 *   relay.c    the upstream answer: framer → decoder → encoder, validation of non-stream
 *              bodies, the commit point, backpressure, and the end of a stream.
 *
 * One attempt is one upstream exchange. Its life is an explicit state machine (enum
 * bb_att_state), changed only by bb_attempt_to(), which refuses an illegal transition:
 *
 *   SENT ──≥400──▶ ERROR_BODY ──▶ FAILED (fail over) | REFUSED (client/auth error relayed)
 *    │ ──2xx non-stream──▶ BUFFER ──complete + valid──▶ DONE      (commit = whole answer)
 *    │                        └──cut/stall/invalid/in-band error──▶ FAILED
 *    │ ──2xx stream──▶ HOLD ──first meaningful event (+ prerelease)──▶ LIVE ──▶ DONE
 *    │                  └──failure / in-band error──▶ FAILED          └──▶ BROKEN
 *    └──connect/head failure, 3xx, bad status, wrong content type──▶ FAILED
 *
 * FAILED means nothing reached the client from this attempt: the request moves on to the
 * next lane. BROKEN means the client already has part of the answer: the stream ends with the
 * dialect's error event, or (stream.on_cut: continue) a continuation attempt takes over the
 * same client stream. A continuation attempt runs the same machine; its HOLD → LIVE sends no
 * new response head.
 */
#ifndef BB_ATTEMPT_H
#define BB_ATTEMPT_H

#include <stdbool.h>
#include <stdint.h>

#include "common/sse.h"
#include "worker/eventstream.h"
#include "worker/ir.h"
#include "worker/proto.h"
#include "worker/request.h"
#include "worker/upstream.h"

struct event;
struct evbuffer;
struct bb_upconn;
struct bb_policy_call;

#define BB_ATT_STATE_LIST(X)                                                                       \
    X(SENT, "sent")                                                                                \
    X(ERROR_BODY, "error_body")                                                                    \
    X(BUFFER, "buffer")                                                                            \
    X(HOLD, "hold")                                                                                \
    X(LIVE, "live")                                                                                \
    X(DONE, "done")                                                                                \
    X(FAILED, "failed")                                                                            \
    X(BROKEN, "broken")                                                                            \
    X(REFUSED, "refused")

enum bb_att_state {
#define X(id, name) BB_ATT_##id,
    BB_ATT_STATE_LIST(X)
#undef X
        BB_ATT__COUNT
};

/* How far an upstream stream got; only ever grows. */
enum bb_att_seen {
    BB_SEEN_NOTHING,
    BB_SEEN_CONTENT, /* a meaningful event: a block, a delta, a message delta */
    BB_SEEN_STOP,    /* the stop reason: the answer's final state is known */
    BB_SEEN_END,     /* the protocol's terminator */
};

enum bb_framer { BB_FRAMER_NONE, BB_FRAMER_SSE, BB_FRAMER_ES };

/* One upstream attempt of a request. Lives in the request's arena; its heap parts (framer,
 * buffers, connection, timers) are released by bb_attempt_release. */
struct bb_attempt {
    struct bb_request *req;
    enum bb_att_state state;
    enum bb_att_seen seen;
    struct bb_upconn *up;
    int lane, member;
    int status;
    enum bb_proto egress;
    const struct bb_proto_ops *eops, *iops;
    /* what the attempt holds */
    bool slot_held;    /* a max_concurrent slot of its lane */
    bool probe;        /* its breaker's half-open probe */
    bool breaker_done; /* the outcome reached the breaker */
    bool no_breaker;   /* a failure that says nothing about the lane (context length) */
    /* how it relays */
    bool verbatim;          /* answers relayed as they are (same protocol) */
    bool strip_usage_chunk; /* busbar asked the stream for usage the client did not */
    bool continuation;      /* continues a client stream another attempt started */
    bool error_sent;        /* the client has the in-band error event that ends it */
    const char *frame_fail; /* set inside the framer's callback, acted on once it returns */
    char fail_msg[256];
    enum bb_framer framer;
    struct bb_frame_state fstate; /* frame_scan's memory (same-protocol streams) */
    struct bb_sse sse;
    struct bb_eventstream es;
    void *dec, *enc;          /* egress decoder / ingress encoder state (arena) */
    struct evbuffer *pending; /* client stream bytes not yet flushed (held before commit) */
    struct evbuffer *body;    /* error body (>= 400) or the whole non-stream body */
    char content_type[128];
    char retry_after[64];
    uint64_t t_sent_us;
    struct event *ttft; /* commit-point deadline: head + first meaningful event */
    struct event *hold; /* stream.prerelease_ms: commit when it fires */
};

/* stream.on_cut: continue — the client stream as it stands, carried across attempts. */
struct bb_cont {
    bool enabled;              /* the pool continues cut streams and this is a stream */
    bool active;               /* a continuation attempt is running or being picked */
    bool non_text;             /* a non-text block reached the client: nothing to continue */
    int open_text;             /* client-side index of the text block still open, -1 none */
    uint32_t next_index;       /* the next client-side block index */
    bool mapped;               /* the running continuation's first block is placed */
    uint32_t base;             /* its block index 0 maps to this client-side index */
    bool merge;                /* its first (text) block joins open_text */
    struct evbuffer *text;     /* the answer's text the client has received */
    void *enc;                 /* the client's encoder, handed from attempt to attempt */
    struct bb_ir_usage banked; /* usage of the parts before the running one */
    size_t part_start;         /* bytes of text before the running part */
    char orig_fail[256];       /* the first failure after commit: its error event ends the
                                  stream when no continuation succeeds */
};

/* What the request keeps across attempts. */
struct bb_route_state {
    const char *model;  /* as the client sent it (decoded) */
    bool body_model;    /* the body has a string `model` at model_off/model_len */
    int stream_options; /* the ingress stream_usage member: 0 absent, 1 asking, -1 other */
    size_t model_off, model_len;
    bool *tried;            /* per pool member */
    bool probe_pending;     /* the member just picked holds the half-open probe */
    struct event *deadline; /* limits.upstream_request_timeout_secs for the whole request */
    struct event *queue;    /* on_exhausted queue: retry timer */
    uint64_t queue_until_ms;
    uint64_t affinity;        /* session hash (0 = none) */
    int pool_hops;            /* fallback_pool switches, bounded by the pool count */
    struct bb_ir_request *ir; /* the client's request in IR, read on first need */
    struct bb_ingress_ctx ictx;
    char dropped[512]; /* x-busbar-dropped-fields of the current attempt */
    struct bb_cont cont;
    /* the last failure, for the final answer when every attempt failed */
    int last_status; /* > 0: an HTTP error answer (in the client's dialect) below */
    struct evbuffer *last_body;
    char last_ctype[128], last_retry_after[64];
    bool last_timeout;
    bool last_fatal; /* the last failure ends the request (no failover) */
    char why[512];   /* "lane a: reset; lane b: HTTP 503" */
    /* routing policy (worker/policy.h) */
    uint64_t max_out; /* the client's output cap, 0 = not set */
    int *order;       /* members to try first, in order (then the native route) */
    size_t n_order;
    int route_target;              /* member + 1 the route put first, 0 = not yet known */
    struct bb_policy_call *policy; /* the call in flight */
};

/* ---- attempt.c ---- */

/* Move a to state s; aborts on a transition the machine does not have (a bug). */
void bb_attempt_to(struct bb_attempt *a, enum bb_att_state s);
const char *bb_att_state_name(enum bb_att_state s);

/* Pick the next lane and start an attempt on it, or end the request when none is left. */
void bb_attempt_next(struct bb_request *req);

/* The attempt failed before anything reached the client: record it (breaker, counters,
 * last error), release it and move on — or end the request when fc is BB_FC_FATAL. */
void bb_attempt_fail(struct bb_attempt *a, const char *what, enum bb_fclass fc);

/* After the commit point: continue on another lane (stream.on_cut: continue) when possible,
 * else end the client's answer visibly broken (the dialect's error event, no terminator). fc:
 * the failure's class for the metrics (BB_FC__COUNT: none to report). */
void bb_attempt_broken(struct bb_attempt *a, const char *what, enum bb_fclass fc);

/* The answer reached the client complete. */
void bb_attempt_done(struct bb_attempt *a);

/* A complete >= 400 answer: classify it, then fail over, or relay it to the client when it
 * is a client or auth error (SPEC §5.1). */
void bb_attempt_http_error(struct bb_attempt *a);

/* Release the attempt's connection, slot, probe, timers and buffers. */
void bb_attempt_release(struct bb_attempt *a);

/* x-busbar-* response headers of the answer from attempt a. */
size_t bb_attempt_headers(struct bb_request *req, struct bb_attempt *a, char *buf, size_t cap);

/* ---- relay.c ---- */

extern const struct bb_upstream_cbs bb_relay_cbs;

/* Continuation bookkeeping of one IR event the client is about to receive. */
void bb_relay_cont_track(struct bb_cont *c, const struct bb_ir_event *ev);

/* The client's encoder of a's stream, made (in the request's arena) when it has none: a
 * verbatim stream relays bytes and needs one only to write an error of busbar's. NULL on OOM. */
void *bb_relay_encoder(struct bb_attempt *a);
/* The dialect's error event for what, written to the client; the response ends there. */
void bb_relay_error_event(struct bb_request *req, void *enc, const struct bb_proto_ops *iops,
                          const char *what);

#endif
