/*
 * supervisor: the master's loop. Forks workers into shm slots, reaps them, respawns crashed
 * workers of the current generation with back-off, kills workers whose heartbeat went stale,
 * retires old generations after a reload, and runs graceful/immediate stops.
 * Master process only; single-threaded.
 */
#ifndef BB_MASTER_SUPERVISOR_H
#define BB_MASTER_SUPERVISOR_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "master/master.h"

/* A worker that dies within this long of its start counts towards crash-loop throttling. */
#define BB_CRASH_WINDOW_MS 10000u
#define BB_RESPAWN_MAX_DELAY_MS 5000u
#define BB_HEARTBEAT_TIMEOUT_MS 10000u
/* Old generations drain once every worker of the new one is up, or after this long. */
#define BB_RETIRE_WAIT_MS 5000u

/* Number of free worker slots. */
unsigned bb_supervisor_free_slots(const struct bb_master *m);
/* Fork g->rt.conf->workers workers into free slots. -1 with err when there are not enough
 * slots (nothing forked then); a fork() failure schedules that slot for a respawn instead. */
int bb_supervisor_spawn_gen(struct bb_master *m, struct bb_gen *g, uint64_t now,
                            struct bb_err *err);
/* True once reload `generation` has taken over: its workers are up and every worker of an
 * older generation has stopped accepting (shm state DRAINING, set by the worker) or exited;
 * also true when a later reload superseded it. */
bool bb_supervisor_settled(const struct bb_master *m, uint32_t generation);
/* Run until stopped; returns the master's exit status. */
int bb_supervisor_run(struct bb_master *m);

#endif
