/*
 * obs_post: a bounded, batched JSON POST queue for exporters that leave the process (OTLP
 * traces, the audit webhook). Items are JSON values queued in memory (at most max_items); a
 * timer or a full batch sends them as one POST of prefix + items joined by sep + suffix (or of
 * an envelope made for the items' length, for protobuf). One
 * POST is in flight per queue (per worker) at a time; while it is, new items queue, and items
 * that find the queue full are dropped and counted. A POST that fails (connect error, timeout,
 * non-2xx answer) drops its batch (counted); nothing is retried, nothing blocks a request.
 * The connection is kept alive between POSTs and replaced after a failure.
 * Worker process, single-threaded (libevent's evhttp client).
 */
#ifndef BB_OBS_POST_H
#define BB_OBS_POST_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/config.h"

struct bb_worker;
struct bb_post;

struct bb_post_conf {
    const char *what;            /* for logs: "traces", "audit webhook" */
    const struct bb_url *url;    /* http:// or https:// (verified against the system store) */
    const char *prefix, *suffix; /* around the items (NULL: nothing) */
    const char *sep;             /* between items; NULL: "," */
    const char *content_type;    /* NULL: application/json */
    /* instead of prefix: write the bytes that go before items_len bytes of items into buf[0..cap),
     * return their length (0: cannot) */
    size_t (*envelope)(char *buf, size_t cap, size_t items_len);
    size_t max_items;                 /* queue bound */
    size_t batch_items;               /* send at once when this many are queued */
    uint32_t interval_ms;             /* send what is queued at least this often */
    uint32_t timeout_secs;            /* connect + answer */
    _Atomic uint64_t *sent, *dropped; /* item counters (shared metrics) */
};

/* A queue posting to c->url. NULL on OOM. */
struct bb_post *bb_post_new(struct bb_worker *w, const struct bb_post_conf *c);
/* Queue one JSON value (copied). false when the queue is full (counted as dropped). */
bool bb_post_add(struct bb_post *p, const char *json, size_t len);
/* Stop: a POST in flight is abandoned; queued items count as dropped. NULL is a no-op. */
void bb_post_free(struct bb_post *p);

#endif
