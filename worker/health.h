/*
 * health: active health probes per provider (`providers.*.health: { mode: active,
 * interval_secs }`, SPEC §5.2). Worker process. Every worker ticks once a second; one worker
 * per interval wins the probe through a compare-and-swap on the provider's first lane cell, so
 * a provider is probed once per interval however many workers run.
 */
#ifndef BB_HEALTH_H
#define BB_HEALTH_H

struct bb_worker;

/* Start the probes that are due (called from the worker's one-second heartbeat). */
void bb_health_tick(struct bb_worker *w);

#endif
