/*
 * cluster: the master's side of cluster mode (SPEC §7, docs/cluster.md). One Redis
 * connection (common/redis.h) on a small libevent loop of its own, polled from the
 * supervisor's poll() loop. It keeps the node in step with the cluster:
 *   - keys: admin changes made here go to the catalogue in Redis (last writer wins by
 *     updated_at; revoked and deleted are final, and join the revocation set admissions
 *     check); changes made elsewhere come back through the catalogue's change stream and are
 *     written to this node's SQLite and shared memory; on every (re)connection the whole
 *     catalogue is merged before workers may use Redis (shm->cluster.synced);
 *   - breakers: a cell this node opens is published with its cooldown, cells other nodes
 *     open are opened here for the same time, and the half-open probe after a cooldown is
 *     leased in Redis so that exactly one node (and one worker there) probes;
 *   - spend: `busbarctl spend --cluster` reads the per key × day counters.
 * Master process only, single-threaded; never blocks except in the bounded waits of start-up
 * (catch up before the first workers fork) and of a spend report.
 */
#ifndef BB_MASTER_CLUSTER_H
#define BB_MASTER_CLUSTER_H

#include <poll.h>
#include <stddef.h>
#include <stdint.h>

#include "common/config.h"
#include "common/err.h"
#include "common/shm.h"

struct bb_gov;
struct bb_mcluster;

/* NULL without conf->cluster.enabled (err untouched) or on error (err set). Connects and
 * waits up to wait_ms (at start: BB_MCLUSTER_START_MS) for the key catalogue to be merged;
 * when Redis is not reachable by then, goes on (workers apply on_redis_error until it is). */
#define BB_MCLUSTER_START_MS 3000
struct bb_mcluster *bb_mcluster_open(const struct bb_conf *conf, struct bb_shm *shm,
                                     struct bb_gov *gov, uint32_t wait_ms, struct bb_err *err);
void bb_mcluster_close(struct bb_mcluster *mc);
/* A reload: a changed cluster section reconnects (or starts / stops cluster mode). */
void bb_mcluster_reconfigure(struct bb_mcluster **mc, const struct bb_conf *conf,
                             struct bb_shm *shm, struct bb_gov *gov);
/* The poll() entries of the Redis connection (0 or 1). */
size_t bb_mcluster_pollfds(struct bb_mcluster *mc, struct pollfd *pfd, size_t max);
/* After poll(): answers, timers, and the periodic work (breaker cells, change streams). */
void bb_mcluster_process(struct bb_mcluster *mc, uint64_t now_ms);
/* Monotonic ms of the next periodic work (the poll timeout); 0 = none. */
uint64_t bb_mcluster_due_ms(const struct bb_mcluster *mc);
/* In a freshly forked child: close the master's Redis socket (never touch its loop). */
void bb_mcluster_child_close(struct bb_mcluster *mc);
/* busbar -t: what loading cannot check (the password variable, the TLS files). */
int bb_mcluster_check(const struct bb_conf *conf, struct bb_err *err);

#endif
