/*
 * metrics_text: the Prometheus text exposition (format 0.0.4) of the shared counters
 * (common/metrics_shm.h), the breaker and lane cells (common/shm.h) and the key table
 * (common/keys_shm.h), for one configuration's names. Used by a worker's GET /metrics and by
 * the master's observability.metrics_listen; any process that maps the region.
 * Labels are only configured names (pool, lane, provider, protocol, fault class, key id).
 */
#ifndef BB_METRICS_TEXT_H
#define BB_METRICS_TEXT_H

#include <stddef.h>

#include "common/config.h"
#include "common/shm.h"

#define BB_MX_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Breaker state of a cell as busbar_lane_state shows it: 0 closed, 1 half-open (or open with
 * its cooldown over: the next request probes), 2 open. 0 for NULL. */
int bb_mx_breaker_state(const struct bb_shm_cell *c, uint64_t now_ms);

/* The exposition of conf's series; malloc'd, *len bytes (NUL-terminated). NULL on OOM. */
char *bb_mx_render(const struct bb_conf *conf, struct bb_shm *shm, size_t *len);

#endif
