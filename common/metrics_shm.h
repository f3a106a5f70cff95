/*
 * metrics_shm: the metric counters and fixed-bucket histograms of SPEC §8, in the shared
 * region (struct bb_shm.metrics), so every worker adds into the same cells and a scrape of any
 * process sees the whole process tree. Counters survive worker respawns and reloads (cells are
 * addressed by name, like the breaker cells) and reset only when the master restarts.
 *
 * Cells (one table, open addressing by name):
 *   "p:NAME"       a pool, or a lane addressed directly by its model name (pool label = NAME)
 *   "m:POOL/LANE"  a pool member (direct requests: "m:LANE/LANE")
 *   "l:LANE"       a lane
 * The master interns every cell a configuration needs before forking its workers
 * (bb_mx_intern_conf); workers only look cells up. Per-key cells ("vk_…") are created by the
 * workers as keys are first seen, up to observability.key_series_max; later keys count under
 * the "_other" cell.
 *
 * Locking: none. Every counter is a relaxed atomic add; a histogram observation is two adds
 * (its bucket and its sum), so a scrape may see them one observation apart.
 */
#ifndef BB_METRICS_SHM_H
#define BB_METRICS_SHM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/config.h"
#include "common/err.h"

#define BB_MX_MAX_CELLS 4096
#define BB_MX_NAME_MAX 136   /* "m:" + pool + "/" + lane + NUL (names are <= 63) */
#define BB_MX_MAX_KEYS 10000 /* observability.key_series_max ceiling */
#define BB_MX_KEY_ID_MAX 24  /* "vk_" + 16 hex + NUL, padded */
#define BB_MX_BUCKETS 14     /* finite buckets per histogram; slot 14 is +Inf */

/* Request outcomes (label outcome=): id, label. */
#define BB_MX_OUTCOME_LIST(X)                                                                      \
    X(OK, "ok")                     /* answered 2xx */                                             \
    X(CLIENT_ERROR, "client_error") /* the request was wrong (busbar's or the upstream's 4xx) */   \
    X(UPSTREAM_ERROR, "upstream_error") /* every attempt failed */                                 \
    X(TIMEOUT, "timeout")               /* every attempt failed, the last one by a deadline */     \
    X(CUT, "cut")                       /* failed after the answer had started */                  \
    X(NO_CAPACITY, "no_capacity")       /* no lane usable (503) */                                 \
    X(DENIED, "denied")                 /* 401/403 */                                              \
    X(LIMITED, "limited")               /* a key's rate limit or budget (429) */                   \
    X(CANCELLED, "cancelled")           /* the client left first */                                \
    X(ERROR, "error")                   /* busbar's own failure (5xx) */

enum bb_mx_outcome {
#define X(id, name) BB_MX_OUT_##id,
    BB_MX_OUTCOME_LIST(X)
#undef X
        BB_MX_OUT__COUNT
};

/* Routing-policy outcomes per call (label outcome= of busbar_route_policy_total; /stats). */
#define BB_MX_POLICY_LIST(X)                                                                       \
    X(ORDER, "order")     /* answered an order */                                                  \
    X(ABSTAIN, "abstain") /* left it to the native route */                                        \
    X(REJECT, "reject")   /* refused the request (4xx to the client) */                            \
    X(TIMEOUT, "timeout") /* no answer within timeout_ms: on_error */                              \
    X(ERROR, "error")     /* transport or script error, connection closed: on_error */             \
    X(INVALID, "invalid") /* garbage, unknown members, a bad reject status: on_error */            \
    X(SKIPPED, "skipped") /* not called: the policy is circuit-broken (on_error) */

enum bb_mx_policy {
#define X(id, name) BB_MX_POL_##id,
    BB_MX_POLICY_LIST(X)
#undef X
        BB_MX_POL__COUNT
};

/* Token tiers (label tier=). */
#define BB_MX_TIER_LIST(X)                                                                         \
    X(INPUT, "input")                                                                              \
    X(OUTPUT, "output")                                                                            \
    X(CACHE_READ, "cache_read")                                                                    \
    X(CACHE_WRITE, "cache_write")                                                                  \
    X(REASONING, "reasoning")

enum bb_mx_tier {
#define X(id, name) BB_MX_TIER_##id,
    BB_MX_TIER_LIST(X)
#undef X
        BB_MX_TIER__COUNT
};

/* Bucket sets. */
enum bb_mx_buckets { BB_MX_B_SECONDS, BB_MX_B_OVERHEAD };

struct bb_mx_hist {
    _Atomic uint64_t b[BB_MX_BUCKETS + 1]; /* per bucket (not cumulative); [BB_MX_BUCKETS] = +Inf */
    _Atomic uint64_t sum_us;
};

struct bb_mx_pool {
    _Atomic uint64_t requests[BB_PROTO__COUNT][BB_MX_OUT__COUNT];
    _Atomic uint64_t failovers[BB_FC__COUNT];  /* by the failure class that caused them */
    _Atomic uint64_t policy[BB_MX_POL__COUNT]; /* routing-policy calls by outcome */
    struct bb_mx_hist duration;                /* whole request, seconds buckets */
    struct bb_mx_hist overhead;                /* busbar's own time, overhead buckets */
};

struct bb_mx_member {
    _Atomic uint64_t attempts;
    _Atomic uint64_t failures[BB_FC__COUNT];
    struct bb_mx_hist upstream; /* attempt start to its end */
    struct bb_mx_hist ttft;     /* stream attempts: start to the first meaningful event */
};

struct bb_mx_lane {
    _Atomic uint64_t tokens[BB_MX_TIER__COUNT];
};

struct bb_mx_cell {
    char name[BB_MX_NAME_MAX];
    _Atomic uint32_t used;
    union {
        struct bb_mx_pool pool;
        struct bb_mx_member member;
        struct bb_mx_lane lane;
    } u;
};

struct bb_mx_key {
    char id[BB_MX_KEY_ID_MAX];
    _Atomic uint32_t state; /* 0 free, 1 being claimed, 2 ready */
    _Atomic uint64_t requests;
    _Atomic uint64_t spend_micros;
};

/* Process-wide counters without configured labels. */
#define BB_MX_GLOBAL_LIST(X)                                                                       \
    X(ACCESS_LOG_LINES, "busbar_access_log_lines_total", "access log lines written")               \
    X(ACCESS_LOG_DROPPED, "busbar_access_log_dropped_total",                                       \
      "access log lines dropped (buffer full or write error)")                                     \
    X(SPANS_EXPORTED, "busbar_trace_spans_exported_total", "spans accepted by the collector")      \
    X(SPANS_DROPPED, "busbar_trace_spans_dropped_total",                                           \
      "spans dropped (queue full, collector down or refusing)")                                    \
    X(AUDIT_SENT, "busbar_audit_records_sent_total", "request records the audit webhook took")     \
    X(AUDIT_DROPPED, "busbar_audit_records_dropped_total",                                         \
      "request records dropped (queue full, webhook down or refusing)")                            \
    X(H2_RAPID_RESET, "busbar_http2_rapid_reset_total",                                            \
      "HTTP/2 connections closed for cancelling streams too fast (CVE-2023-44487)")                \
    X(H2_CONTINUATION_FLOOD, "busbar_http2_continuation_flood_total",                              \
      "HTTP/2 connections closed for a CONTINUATION flood")                                        \
    X(H2_CONTROL_FLOOD, "busbar_http2_control_flood_total",                                        \
      "HTTP/2 connections closed for a SETTINGS/PING/PRIORITY flood")

enum bb_mx_global {
#define X(id, name, help) BB_MX_G_##id,
    BB_MX_GLOBAL_LIST(X)
#undef X
        BB_MX_G__COUNT
};

struct bb_mx_region {
    _Atomic uint64_t global[BB_MX_G__COUNT];
    _Atomic uint64_t translations[BB_PROTO__COUNT][BB_PROTO__COUNT]; /* [from][to] attempts */
    struct bb_mx_pool unrouted; /* requests that never reached a pool or lane (pool="_none") */
    _Atomic uint32_t n_cells;
    struct bb_mx_cell cells[BB_MX_MAX_CELLS];
    _Atomic uint32_t n_keys; /* key cells claimed (never more than key_series_max) */
    struct bb_mx_key other;  /* key="_other" */
    struct bb_mx_key keys[BB_MX_MAX_KEYS];
};

/* Upper bounds of a bucket set in microseconds (BB_MX_BUCKETS entries). */
const uint64_t *bb_mx_bounds(enum bb_mx_buckets set);
/* Label values. */
const char *bb_mx_outcome_name(enum bb_mx_outcome o);
const char *bb_mx_tier_name(enum bb_mx_tier t);
const char *bb_mx_policy_name(enum bb_mx_policy p);

/* Master: intern every cell conf needs. -1 with err when the table is full. */
int bb_mx_intern_conf(struct bb_mx_region *r, const struct bb_conf *conf, struct bb_err *err);
/* Any process: the cell "<prefix>:<a>[/<b>]"; NULL when absent. */
struct bb_mx_cell *bb_mx_find(struct bb_mx_region *r, char prefix, const char *a, const char *b);
/* Worker: the cell of key id (created on first use while fewer than max exist), else _other. */
struct bb_mx_key *bb_mx_key(struct bb_mx_region *r, const char *id, uint32_t max);

/* Record one observation of us microseconds. */
void bb_mx_observe(struct bb_mx_hist *h, enum bb_mx_buckets set, uint64_t us);

static inline void bb_mx_add(_Atomic uint64_t *c, uint64_t v)
{
    atomic_fetch_add_explicit(c, v, memory_order_relaxed);
}

#endif
