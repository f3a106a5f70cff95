/*
 * shm: the one MAP_SHARED region created by the master before fork (SPEC §1, house rule 5).
 * Fixed layout, POD and C11 atomics only, offsets not pointers. State is addressed by name
 * (lane cells keyed by "pool/lane" or "lane") so it survives reloads.
 *
 * Locking: no locks. Worker slots are written by their own worker (heartbeat) and by the
 * master (pid, generation, state) at fork/reap time. Lane cells are created only by the master
 * (bb_shm_lane_intern, at config load, before the workers that use them are forked); workers
 * only look them up and update their atomics. The key table and the usage ring have their own
 * rules (common/keys_shm.h, common/ring.h).
 */
#ifndef BB_SHM_H
#define BB_SHM_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "common/cluster_shm.h"
#include "common/keys_shm.h"
#include "common/metrics_shm.h"
#include "common/ring.h"

#define BB_SHM_MAGIC 0x42425553u /* "BBUS" */
#define BB_SHM_VERSION                                                                             \
    6u /* 2: key table and usage ring appended; 3: journals, store flag;                           \
          4: continuations per cell, cluster state, metrics; 5: named breaker/router/health        \
          fields in place of reserved[16]; 6: key names, route-policy counters per pool */
#define BB_SHM_MAX_WORKERS 256
#define BB_SHM_MAX_CELLS 4096
#define BB_SHM_NAME_MAX 128
#define BB_SHM_WINDOW_BUCKETS 4 /* a breaker window in four buckets of window_secs / 4 */

enum bb_worker_state {
    BB_WORKER_FREE = 0,
    BB_WORKER_STARTING,
    BB_WORKER_RUNNING,
    BB_WORKER_DRAINING
};

struct bb_shm_worker {
    _Atomic int32_t pid;
    _Atomic uint32_t generation;
    _Atomic uint32_t state;        /* enum bb_worker_state */
    _Atomic uint64_t heartbeat_ms; /* monotonic ms, written by the worker each second */
    _Atomic uint64_t started_ms;   /* monotonic ms, written by the master at fork */
    _Atomic uint64_t requests;     /* requests served by this worker */
    _Atomic uint32_t connections;  /* open client connections */
    _Atomic uint32_t inflight;     /* requests in progress */
};

/* Per lane (key "lane") or per pool × lane (key "pool/lane") counters and breaker state. */
struct bb_shm_cell {
    char name[BB_SHM_NAME_MAX]; /* NUL-terminated; "" = free */
    _Atomic uint32_t used;      /* 1 once name is valid */
    _Atomic int32_t inflight;   /* requests currently holding a slot */
    _Atomic uint64_t ok, err;   /* completed attempts */
    _Atomic uint64_t attempts;
    _Atomic uint64_t failovers;     /* attempts that moved on from this lane */
    _Atomic uint64_t continuations; /* cut streams this lane continued to the end */
    /* circuit breaker (worker/breaker.c) */
    _Atomic uint32_t breaker_state;                       /* 0 closed, 1 half-open, 2 open */
    _Atomic uint64_t open_until_ms;                       /* monotonic ms */
    _Atomic uint64_t window[BB_SHM_WINDOW_BUCKETS];       /* (ok << 32) | err per bucket */
    _Atomic uint64_t window_epoch[BB_SHM_WINDOW_BUCKETS]; /* the bucket epoch each counts */
    _Atomic uint64_t consecutive;                         /* consecutive failures */
    _Atomic uint64_t streak;       /* trips since the last close (cooldown = base · 2^streak) */
    _Atomic uint64_t probe_holder; /* 0 none, else monotonic ms the half-open probe was given */
    _Atomic uint64_t trips;        /* times the breaker opened (metrics) */
    /* router (worker/router.c) */
    _Atomic uint64_t ewma_us;   /* pool-member cells: latency EWMA, µs (route: fastest) */
    _Atomic uint64_t ttft_us;   /* pool-member cells: stream time-to-first-token EWMA, µs
                                   (routing policies' ttft_ms) */
    _Atomic uint64_t ratelimit; /* lane cells: provider headroom (route: usage):
                                   (parts per million << 32) | valid-until (monotonic s);
                                   0 = unknown */
    /* health probes (worker/health.c), lane cells */
    _Atomic uint64_t probe_opened; /* 1: a failed health probe took this lane down */
    _Atomic uint64_t probe_due_ms; /* next probe of the provider (its first lane's cell) */
};

struct bb_shm {
    uint32_t magic, version;
    uint64_t size;
    _Atomic uint32_t generation; /* current serving generation */
    _Atomic uint64_t started_realtime_ms;
    _Atomic uint32_t n_cells; /* high-water mark of used cells */
    struct bb_shm_worker workers[BB_SHM_MAX_WORKERS];
    struct bb_shm_cell cells[BB_SHM_MAX_CELLS];
    /* Governance (appended in version 2). Both are zero-initialised memory that only gets
     * touched as it is used: the key table publishes densely from slot 0, the ring fills
     * cell by cell. */
    struct bb_keys_table keys; /* virtual keys and their counters (common/keys_shm.h) */
    struct bb_ring ring;       /* usage records, workers → master (common/ring.h) */
    /* 1 while the master cannot write the usage ledger (governance.on_store_error) */
    _Atomic uint32_t gov_store_failing;
    /* reservations of each worker slot's requests in flight (common/keys_shm.h) */
    struct bb_keys_journal journals[BB_SHM_MAX_WORKERS];
    /* cluster mode: the master's catalogue state and the node's counters (version 4) */
    struct bb_cluster_shm cluster;
    /* metric counters and histograms (appended in version 4; common/metrics_shm.h) */
    struct bb_mx_region metrics;
};

/* Create the anonymous shared region (master, before fork). NULL + errno on failure. */
struct bb_shm *bb_shm_create(void);
void bb_shm_destroy(struct bb_shm *shm);
/* Find or create the cell for name (master only). NULL when the table is full. */
struct bb_shm_cell *bb_shm_cell_intern(struct bb_shm *shm, const char *name);
/* Find an existing cell (any process); NULL when absent. */
struct bb_shm_cell *bb_shm_cell_find(struct bb_shm *shm, const char *name);
/* Monotonic milliseconds (CLOCK_MONOTONIC). */
uint64_t bb_now_ms(void);
/* Monotonic microseconds. */
uint64_t bb_now_us(void);
/* Realtime milliseconds (CLOCK_REALTIME). */
uint64_t bb_wall_ms(void);

#endif
