/*
 * router: choose the lane for the next attempt of a request. Smooth weighted round-robin
 * (nginx's algorithm) over the members that are usable: not already tried, under the lane's
 * max_concurrent (a slot counted in shared memory, so the cap holds across workers and pools).
 * Worker process; SWRR state is per worker, slots are shm atomics.
 */
#ifndef BB_ROUTER_H
#define BB_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Shared state: a pool-member cell's ewma_us and a lane cell's ratelimit (common/shm.h). */
#define BB_ROUTER_PPM 1000000u /* full headroom */

struct bb_worker;
struct bb_http_head;

/* Set up per-pool SWRR state and the shm cell pointers (after fork). -1 on OOM. */
int bb_router_init(struct bb_worker *w);
void bb_router_free(struct bb_worker *w);

/* Pick a member of pool not marked in tried[] (one flag per member) whose breakers (member
 * and lane) admit it, and take a slot on its lane: the affinity member first when affinity
 * (a session hash, 0 = none) names a usable one, then by the pool's route (SWRR, cheapest,
 * fastest, least_busy, usage: most provider headroom first, SWRR among equals). Returns the
 * member index, or -1 when no member is usable; *probe says the pick holds its breaker's
 * single half-open probe. */
int bb_router_pick(struct bb_worker *w, int pool, const bool *tried, bool *probe,
                   uint64_t affinity);

/* A routing policy's order (worker/policy.c): the first of order[0..n) (member indices) that
 * is usable and not tried, its slot taken as bb_router_pick does. -1 when none is: the
 * members it left out (demoted) and the rest then come from bb_router_pick. */
int bb_router_pick_order(struct bb_worker *w, int pool, const bool *tried, bool *probe,
                         const int *order, size_t n);

/* on_exhausted least_bad: the untried member whose breaker reopens soonest, breakers
 * ignored (a slot is taken). -1 when none has room. */
int bb_router_pick_least_bad(struct bb_worker *w, int pool, const bool *tried);

/* Feed a member's time to first byte (µs) into its latency EWMA (route: fastest). */
void bb_router_observe_latency(struct bb_worker *w, int pool, int member, uint64_t us);
/* The same for a stream's time to its first meaningful event (the policies' ttft_ms). */
void bb_router_observe_ttft(struct bb_worker *w, int pool, int member, uint64_t us);

/* Learn lane's provider rate-limit headroom from an upstream response head h (any status),
 * through the header conventions the protocol modules declare (ops->ratelimit: OpenAI's
 * x-ratelimit-{remaining,limit,reset}-{requests,tokens}, reset a duration like "6m0s";
 * Anthropic's anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{remaining,
 * limit,reset}, reset an RFC 3339 time). Headroom = the smallest remaining/limit, valid until
 * that limit's reset (60 s when absent or unreadable, at most an hour). A head without a
 * readable remaining/limit pair leaves the lane's reading as it was. now_ms: bb_now_ms(). */
void bb_router_observe_ratelimit(struct bb_worker *w, int lane, const struct bb_http_head *h,
                                 uint64_t now_ms);

/* lane's current headroom in parts per million: BB_ROUTER_PPM when unknown or expired. */
uint32_t bb_router_headroom_ppm(struct bb_worker *w, int lane, uint64_t now_ms);

/* Milliseconds until the first member of pool may be usable again (0 = now). */
uint64_t bb_router_soonest_ms(struct bb_worker *w, int pool);

/* Take / give back one in-flight slot on a lane (and the pool member cell when member >= 0).
 * take returns false when the lane is at max_concurrent. */
bool bb_router_take(struct bb_worker *w, int lane, int pool, int member);
void bb_router_give(struct bb_worker *w, int lane, int pool, int member);

#endif
