/*
 * cluster: a worker's side of cluster mode (SPEC §7, docs/cluster.md). Admission of a
 * virtual key through one atomic Redis script (parallel, RPM/TPM windows, worst-case budget
 * reservation shared by every node), settlement or release through another, reservation
 * leases renewed while requests live, and on_redis_error (local: this node's shared memory
 * decides, its spend is reconciled into Redis when it returns; deny: 503). One pipelined
 * Redis connection per worker (common/redis.h) on the worker's loop; never blocks.
 * Worker process only.
 */
#ifndef BB_WORKER_CLUSTER_H
#define BB_WORKER_CLUSTER_H

#include <stdint.h>

#include "worker/meter.h"

struct bb_worker;
struct bb_request;

/* Connect (asynchronously) when conf->cluster.enabled; w->cluster stays NULL otherwise.
 * 0, or -1 when out of memory. */
int bb_wcluster_init(struct bb_worker *w);
/* On the way out: send what is still owed to Redis (settlements, reconciliations), wait for
 * it at most a second, close. */
void bb_wcluster_free(struct bb_worker *w);

/* Admit req's key (e from bb_meter_prepare) through Redis; done(req, rc) follows once, at the
 * latest after cluster.timeout_ms (then on_redis_error decides). */
void bb_wcluster_admit(struct bb_request *req, const struct bb_meter_est *e, bb_meter_done_fn done);
/* The request ends (bb_meter_finish): settle (cost billed when an answer reached the client)
 * or release its Redis reservation, or note a locally admitted request's spend for the
 * reconciliation; a request still waiting for its admission lets it go. */
void bb_wcluster_finish(struct bb_request *req, uint64_t cost);

#endif
