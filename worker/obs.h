/*
 * obs: observability on the request path (SPEC §8). Small hook calls from the request path
 * record what happened into the request (struct bb_obs_req); at the request's end one call
 * adds it to the shared metrics (common/metrics_shm.h) and hands one record to the access log
 * (worker/access_log.c), the trace exporter (worker/otlp.c) and the audit webhook
 * (worker/audit.c). Nothing here does I/O on the request path: exporters queue, bounded, and
 * write or send from timers.
 * Worker process, single-threaded; shared counters are relaxed atomics.
 */
#ifndef BB_OBS_H
#define BB_OBS_H

#include <stdbool.h>
#include <stdint.h>

#include "common/config.h"

struct bb_request;
struct bb_worker;
struct evbuffer;

#define BB_OBS_MAX_ATTEMPTS 8 /* attempts kept for the log and spans (metrics count them all) */

enum bb_obs_result { BB_OBS_RUNNING, BB_OBS_OK, BB_OBS_FAILED, BB_OBS_CUT, BB_OBS_CANCELLED };

/* One upstream attempt as the request recorded it. */
struct bb_obs_attempt {
    int16_t lane, member; /* member: index in the pool, -1 for a lane addressed directly */
    int8_t fclass;        /* enum bb_fclass of a failure, -1 none */
    uint8_t result;       /* enum bb_obs_result */
    bool committed;       /* its answer reached the client */
    int status;           /* upstream HTTP status, 0 = none */
    uint64_t t_start_us, t_commit_us, t_end_us;
    uint8_t span_id[8];
};

/* What the hooks record into a request (lives in struct bb_request). */
struct bb_obs_req {
    bool started;         /* bb_obs_request_start ran */
    bool continued;       /* a cut stream was continued on another lane (stream.on_cut) */
    bool sampled;         /* spans are exported (W3C traceparent flag, else 1) */
    bool has_parent;      /* the client sent a valid traceparent */
    int8_t pending_class; /* failure class of the attempt in progress, -1 unknown */
    uint8_t n;            /* attempts kept in a[] */
    uint32_t total;       /* attempts started */
    uint64_t up_us;       /* time spent in upstream attempts */
    uint64_t ttft_us;     /* answering stream attempt: first meaningful event, 0 = none */
    uint8_t trace_id[16], span_id[8], parent_span_id[8];
    uint8_t next_span_id[8]; /* the next attempt's span, already sent in its traceparent */
    bool next_span_set;
    uint8_t route_by;          /* enum bb_route_by (worker/policy.h): what ordered the members */
    uint8_t policy_outcome;    /* enum bb_mx_policy + 1 of the routing-policy call, 0 = none */
    struct bb_obs_attempt cur; /* the attempt in progress (or the last one) */
    struct bb_obs_attempt a[BB_OBS_MAX_ATTEMPTS];
};

/* Worker start/stop: resolve metric cells, open the access log, start exporters. -1 on OOM
 * (an access log that cannot be opened is logged and counted, never fatal). */
int bb_obs_init(struct bb_worker *w);
void bb_obs_free(struct bb_worker *w);
/* SIGUSR1: reopen the access log (after rotation). */
void bb_obs_reopen(struct bb_worker *w);

/* ---- hooks (one call each on the request path) ---- */

/* A request was parsed: trace context from its traceparent. */
void bb_obs_request_start(struct bb_request *req);
/* An upstream attempt on lane (pool member, -1 for a direct lane) is being sent now. */
void bb_obs_attempt_start(struct bb_request *req, int lane, int member);
/* The attempt's answer reached its commit point (head sent to the client). */
void bb_obs_attempt_commit(struct bb_request *req);
/* The attempt failed with this class (called before bb_obs_attempt_end). */
void bb_obs_attempt_class(struct bb_request *req, enum bb_fclass fc);
/* The attempt is over: ok, and its upstream HTTP status (0 = none). */
void bb_obs_attempt_end(struct bb_request *req, bool ok, int status);
/* The pool's routing policy was called (or skipped): outcome is an enum bb_mx_policy. Counted
 * per pool in shared memory whether or not metrics are on (/stats shows them). */
void bb_obs_policy(struct bb_request *req, int outcome);
/* A cut stream goes on on another lane (stream.on_cut: continue). */
void bb_obs_continued(struct bb_request *req);
/* Add the traceparent line of the attempt in progress to an upstream request head. */
void bb_obs_traceparent(struct bb_request *req, struct evbuffer *head);
/* The request ends (from its one finalize, after metering): metrics, log, spans, audit. */
void bb_obs_request_end(struct bb_request *req);

/* The label of an attempt's result ("ok", "failed", ...). */
const char *bb_obs_result_name(uint8_t result);

/* GET /metrics on the data plane. */
void bb_obs_metrics_endpoint(struct bb_request *req);

#endif
