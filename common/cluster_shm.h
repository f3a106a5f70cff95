/*
 * cluster_shm: what the processes of one node share about cluster mode (SPEC §7,
 * docs/cluster.md), inside struct bb_shm. The master writes `synced`; every worker adds to
 * the counters (relaxed atomics); the master reads them for `busbarctl status`.
 */
#ifndef BB_CLUSTER_SHM_H
#define BB_CLUSTER_SHM_H

#include <stdatomic.h>
#include <stdint.h>

struct bb_cluster_shm {
    /* 1 while the master is connected to Redis and its key catalogue has caught up: only
     * then do workers let Redis decide admissions (else on_redis_error applies) */
    _Atomic uint32_t synced;
    _Atomic uint64_t admitted_redis;  /* admissions decided by Redis */
    _Atomic uint64_t refused_redis;   /* refusals decided by Redis */
    _Atomic uint64_t admitted_local;  /* decided on this node: Redis unavailable, local */
    _Atomic uint64_t denied;          /* 503: Redis unavailable, on_redis_error deny */
    _Atomic uint64_t timeouts;        /* no answer within cluster.timeout_ms */
    _Atomic uint64_t fallbacks;       /* a worker's Redis went from usable to unusable */
    _Atomic uint64_t reconciled;      /* locally admitted requests' spend pushed to Redis */
    _Atomic uint64_t settle_retries;  /* settlements resent after a lost answer */
    _Atomic uint64_t leases_lost;     /* reservations Redis had released when renewed */
    _Atomic uint64_t breaker_sent;    /* breaker trips/closes published by this node */
    _Atomic uint64_t breaker_applied; /* breaker events from other nodes applied here */
    _Atomic uint64_t keys_applied;    /* key changes from other nodes applied here */
};

#endif
