/*
 * breaker: shared-memory circuit breaker. Any process; lock-free (see breaker.h).
 *
 * reserved[] layout of a cell:
 *   [0..3]  window buckets: (ok << 32) | err, each covering window_secs / 4
 *   [4..7]  the bucket epoch each of [0..3] currently counts
 *   [8]     consecutive failures
 *   [9]     streak: trips since the last close (cooldown = base · 2^streak)
 *   [10]    probe holder: 0 = none, else monotonic ms when the probe was granted
 *   [11]    latency EWMA in µs (the router's, route: fastest)
 *   [12]    trips: times the breaker opened (metrics)
 *   [13]    lane cells: opened by a health probe (health.c); [14] next probe due;
 *           member cells: stream time-to-first-token EWMA in µs (router.h, routing policies)
 *   [15]    lane cells: provider rate-limit headroom (the router's, route: usage)
 * Races between workers updating a bucket at a bucket boundary can lose a count; the breaker
 * only needs the ratio to be right, not every increment.
 */
#include "worker/breaker.h"

#define NB 4
#define R_EPOCH 4
#define R_CONSEC BB_CELL_CONSEC
#define R_STREAK BB_CELL_STREAK
#define R_PROBE BB_CELL_PROBE
#define PROBE_STALE_MS 120000 /* a probe holder that vanished (worker killed) is replaced */

static uint64_t bucket_ms(const struct bb_breaker_conf *conf)
{
    uint64_t ms = (uint64_t)(conf->window_secs ? conf->window_secs : 30) * 1000u / NB;
    return ms ? ms : 1;
}

static void bucket_add(struct bb_shm_cell *c, const struct bb_breaker_conf *conf, uint64_t now,
                       bool ok)
{
    uint64_t epoch = now / bucket_ms(conf);
    unsigned i = (unsigned)(epoch % NB);
    uint64_t seen = atomic_load_explicit(&c->reserved[R_EPOCH + i], memory_order_acquire);
    if (seen != epoch &&
        atomic_compare_exchange_strong(&c->reserved[R_EPOCH + i], &seen, epoch))
        atomic_store_explicit(&c->reserved[i], 0, memory_order_release);
    atomic_fetch_add_explicit(&c->reserved[i], ok ? (1ull << 32) : 1ull, memory_order_relaxed);
}

static void window_sum(struct bb_shm_cell *c, const struct bb_breaker_conf *conf, uint64_t now,
                       uint64_t *ok, uint64_t *err)
{
    uint64_t epoch = now / bucket_ms(conf);
    *ok = *err = 0;
    for (unsigned i = 0; i < NB; i++) {
        uint64_t e = atomic_load_explicit(&c->reserved[R_EPOCH + i], memory_order_acquire);
        if (e + NB <= epoch || e > epoch)
            continue; /* older than the window */
        uint64_t v = atomic_load_explicit(&c->reserved[i], memory_order_relaxed);
        *ok += v >> 32;
        *err += v & 0xffffffffu;
    }
}

static uint64_t cooldown_ms(const struct bb_breaker_conf *conf, uint64_t streak,
                            uint64_t retry_after_ms, double jitter)
{
    uint64_t base = (uint64_t)conf->base_cooldown_secs * 1000u;
    uint64_t max = (uint64_t)conf->max_cooldown_secs * 1000u;
    uint64_t cd = base;
    for (uint64_t i = 0; i < streak && cd < max; i++)
        cd *= 2;
    if (cd > max)
        cd = max;
    if (jitter < -1)
        jitter = -1;
    if (jitter > 1)
        jitter = 1;
    cd = (uint64_t)((double)cd * (1.0 + 0.1 * jitter));
    return cd > retry_after_ms ? cd : retry_after_ms;
}

static void open_for(struct bb_shm_cell *c, uint64_t now, uint64_t ms)
{
    atomic_fetch_add_explicit(&c->reserved[BB_BREAKER_TRIPS], 1, memory_order_relaxed);
    atomic_store_explicit(&c->open_until_ms, now + ms, memory_order_release);
    atomic_store_explicit(&c->breaker_state, BB_BREAKER_OPEN, memory_order_release);
    atomic_store_explicit(&c->reserved[R_PROBE], 0, memory_order_release);
}

enum bb_breaker_admit bb_breaker_admit(struct bb_shm_cell *c, uint64_t now)
{
    uint32_t st = atomic_load_explicit(&c->breaker_state, memory_order_acquire);
    if (st == BB_BREAKER_CLOSED)
        return BB_ADMIT_YES;
    if (st == BB_BREAKER_OPEN && now < atomic_load(&c->open_until_ms))
        return BB_ADMIT_NO;
    /* cooldown over (or half-open): one request across all workers takes the probe */
    uint64_t holder = atomic_load_explicit(&c->reserved[R_PROBE], memory_order_acquire);
    if (holder && now - holder < PROBE_STALE_MS)
        return BB_ADMIT_NO;
    if (!atomic_compare_exchange_strong(&c->reserved[R_PROBE], &holder, now ? now : 1))
        return BB_ADMIT_NO;
    atomic_store_explicit(&c->breaker_state, BB_BREAKER_HALF_OPEN, memory_order_release);
    return BB_ADMIT_PROBE;
}

bool bb_breaker_usable(const struct bb_shm_cell *c, uint64_t now)
{
    uint32_t st = atomic_load_explicit(&c->breaker_state, memory_order_acquire);
    if (st == BB_BREAKER_CLOSED)
        return true;
    if (st == BB_BREAKER_OPEN && now < atomic_load(&c->open_until_ms))
        return false;
    uint64_t holder = atomic_load_explicit(&c->reserved[R_PROBE], memory_order_acquire);
    return !holder || now - holder >= PROBE_STALE_MS;
}

void bb_breaker_success(struct bb_shm_cell *c, const struct bb_breaker_conf *conf, uint64_t now,
                        bool probe)
{
    bucket_add(c, conf, now, true);
    atomic_store_explicit(&c->reserved[R_CONSEC], 0, memory_order_relaxed);
    if (probe) {
        atomic_store_explicit(&c->reserved[R_STREAK], 0, memory_order_relaxed);
        atomic_store_explicit(&c->breaker_state, BB_BREAKER_CLOSED, memory_order_release);
        atomic_store_explicit(&c->reserved[R_PROBE], 0, memory_order_release);
    }
}

void bb_breaker_failure(struct bb_shm_cell *c, const struct bb_breaker_conf *conf, uint64_t now,
                        bool probe, uint64_t retry_after_ms, double jitter)
{
    bucket_add(c, conf, now, false);
    uint64_t consec = atomic_fetch_add_explicit(&c->reserved[R_CONSEC], 1,
                                                memory_order_relaxed) + 1;
    if (probe) { /* the probe failed: re-open, longer */
        uint64_t streak = atomic_fetch_add(&c->reserved[R_STREAK], 1) + 1;
        open_for(c, now, cooldown_ms(conf, streak, retry_after_ms, jitter));
        return;
    }
    if (atomic_load_explicit(&c->breaker_state, memory_order_acquire) != BB_BREAKER_CLOSED) {
        /* already open: a Retry-After longer than the cooldown still extends it */
        uint64_t until = atomic_load(&c->open_until_ms);
        if (retry_after_ms && now + retry_after_ms > until)
            atomic_store(&c->open_until_ms, now + retry_after_ms);
        return;
    }
    bool trip;
    if (conf->consecutive_mode) {
        trip = consec >= conf->consecutive_n;
    } else {
        uint64_t ok, err;
        window_sum(c, conf, now, &ok, &err);
        trip = ok + err >= conf->min_requests &&
               (double)err >= conf->threshold * (double)(ok + err);
    }
    if (!trip && retry_after_ms == 0)
        return;
    if (!trip) {
        /* not tripped, but the provider said when to come back: honour it (no hammering) */
        open_for(c, now, retry_after_ms);
        return;
    }
    uint32_t closed = BB_BREAKER_CLOSED;
    if (atomic_compare_exchange_strong(&c->breaker_state, &closed, BB_BREAKER_OPEN)) {
        uint64_t streak = atomic_load(&c->reserved[R_STREAK]);
        open_for(c, now, cooldown_ms(conf, streak, retry_after_ms, jitter));
    }
}

void bb_breaker_release_probe(struct bb_shm_cell *c)
{
    atomic_store_explicit(&c->reserved[R_PROBE], 0, memory_order_release);
}

void bb_breaker_hard_down(struct bb_shm_cell *c, uint64_t now, uint64_t for_ms)
{
    open_for(c, now, for_ms);
}

void bb_breaker_reset(struct bb_shm_cell *c)
{
    atomic_store_explicit(&c->reserved[R_CONSEC], 0, memory_order_relaxed);
    atomic_store_explicit(&c->reserved[R_STREAK], 0, memory_order_relaxed);
    atomic_store_explicit(&c->open_until_ms, 0, memory_order_relaxed);
    atomic_store_explicit(&c->reserved[R_PROBE], 0, memory_order_release);
    atomic_store_explicit(&c->breaker_state, BB_BREAKER_CLOSED, memory_order_release);
}

uint64_t bb_breaker_wait_ms(const struct bb_shm_cell *c, uint64_t now)
{
    if (atomic_load(&c->breaker_state) == BB_BREAKER_CLOSED)
        return 0;
    uint64_t until = atomic_load(&c->open_until_ms);
    return until > now ? until - now : 0;
}
