/*
 * breaker: the circuit breaker of one pool × lane (SPEC §5.2), kept in that member's shared
 * memory cell so every worker sees one state. Lock-free: counters are atomics, transitions
 * are compare-and-swap, and exactly one request across all workers wins the half-open probe.
 * Any process that maps the region; the clock is passed in (monotonic ms) so tests can drive
 * it.
 *
 * Cell fields used: the breaker group of struct bb_shm_cell (common/shm.h).
 */
#ifndef BB_BREAKER_H
#define BB_BREAKER_H

#include <stdbool.h>
#include <stdint.h>

#include "common/config.h"
#include "common/shm.h"

enum bb_breaker_state { BB_BREAKER_CLOSED = 0, BB_BREAKER_HALF_OPEN = 1, BB_BREAKER_OPEN = 2 };

enum bb_breaker_admit {
    BB_ADMIT_NO = 0, /* open (or another worker holds the probe) */
    BB_ADMIT_YES,    /* closed */
    BB_ADMIT_PROBE,  /* this request is the single half-open probe */
};

/* May a request use this member now? PROBE hands out the half-open probe (once). */
enum bb_breaker_admit bb_breaker_admit(struct bb_shm_cell *c, uint64_t now_ms);

/* Peek without taking the probe: would bb_breaker_admit say yes or probe? */
bool bb_breaker_usable(const struct bb_shm_cell *c, uint64_t now_ms);

/* Record an attempt's outcome. probe says the attempt held the probe. A failure may trip the
 * breaker (per conf's trip rule) or, for a probe, re-open it with a longer cooldown;
 * retry_after_ms (0 = none) floors the cooldown. jitter in [-1, 1] scales the ±10 %. */
void bb_breaker_success(struct bb_shm_cell *c, const struct bb_breaker_conf *conf, uint64_t now_ms,
                        bool probe);
void bb_breaker_failure(struct bb_shm_cell *c, const struct bb_breaker_conf *conf, uint64_t now_ms,
                        bool probe, uint64_t retry_after_ms, double jitter);

/* Give the probe back without an outcome (the client left): the next request probes. */
void bb_breaker_release_probe(struct bb_shm_cell *c);

/* Open for a fixed time regardless of the trip rule (auth / billing: hard down). */
void bb_breaker_hard_down(struct bb_shm_cell *c, uint64_t now_ms, uint64_t for_ms);

/* Close the breaker now (a health probe saw the provider back). */
void bb_breaker_reset(struct bb_shm_cell *c);

/* Milliseconds until the cell may be tried again (0 = usable now). */
uint64_t bb_breaker_wait_ms(const struct bb_shm_cell *c, uint64_t now_ms);

#endif
