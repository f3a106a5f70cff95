/*
 * ring: the usage ring in shared memory (SPEC §1, §6). A bounded multi-producer single-consumer
 * queue of fixed-size usage records: workers push one record per completed request (lock-free,
 * never blocking: a full ring drops the record and counts it), the master pops them every
 * 1-150 ms (more often the more is waiting, see master/governance.h) into short batched
 * SQLite transactions (master/usage_sink.c).
 *
 * Algorithm: Dmitry Vyukov's bounded queue. Each cell has a sequence word; a producer claims a
 * position with a CAS on `tail`, writes the record and publishes it by moving the cell's
 * sequence; the consumer reads cells in order. The sequence is stored relative to the cell's
 * index (stored = seq - index) so zeroed memory is a valid empty ring: nothing has to be written
 * at start, and pages are only touched once used.
 *
 * Writers: any worker (push). Reader: the master only (pop). A producer that dies between its
 * claim and its publish would stall the consumer; after BB_RING_STALL_MS the consumer skips
 * that cell (counted in `skipped`), and the late producer, if any, sees its publish fail.
 */
#ifndef BB_RING_H
#define BB_RING_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BB_RING_MAGIC 0x52494e47u /* "RING" */
#define BB_RING_CAP 8192u         /* records; a power of two */
#define BB_RING_STALL_MS 1000u
#define BB_USAGE_NAME_SIZE 64 /* config names are at most 63 bytes */
#define BB_USAGE_REQID_SIZE 40

/* One completed request. Strings are NUL-terminated (truncated to fit). */
struct bb_usage_rec {
    char request_id[BB_USAGE_REQID_SIZE]; /* idempotency: the ledger keeps one row per id */
    char key_id[24];                      /* "" when the request had no virtual key */
    char pool[BB_USAGE_NAME_SIZE];        /* "" when the model named a lane directly */
    char lane[BB_USAGE_NAME_SIZE];        /* the lane that answered (the "model" of reports) */
    char provider[BB_USAGE_NAME_SIZE];
    uint64_t ts_ms; /* wall-clock ms at completion */
    uint64_t input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
        reasoning_tokens; /* IR usage: input excludes cache; output includes reasoning */
    uint64_t cost_micros;
    uint32_t latency_ms;
    uint16_t status; /* HTTP status sent to the client */
    uint8_t ingress; /* enum bb_proto */
    uint8_t flags;   /* reserved, 0 */
};

struct bb_ring_cell {
    _Atomic uint64_t seq; /* relative sequence (see the file comment) */
    struct bb_usage_rec rec;
};

struct bb_ring {
    uint32_t magic, cap;
    _Alignas(64) _Atomic uint64_t tail; /* next position producers claim */
    _Alignas(64) _Atomic uint64_t head; /* next position the consumer reads */
    _Atomic uint64_t pushed;            /* records published */
    _Atomic uint64_t dropped;           /* records refused: ring full (or a skipped publish) */
    _Atomic uint64_t skipped;           /* cells the consumer gave up on (producer died) */
    uint64_t stall_pos, stall_since_ms; /* consumer-private */
    _Alignas(64) struct bb_ring_cell cells[BB_RING_CAP];
};

/* Initialise a ring in zeroed memory (bb_shm_create's region). */
void bb_ring_init(struct bb_ring *r);
/* A standalone MAP_SHARED ring (tests, benchmarks); NULL + errno on failure. */
struct bb_ring *bb_ring_create(void);
void bb_ring_destroy(struct bb_ring *r);
/* Producer (any process): copy rec into the ring. false when the ring is full: the record is
 * dropped and counted, the caller carries on (never blocks). */
bool bb_ring_push(struct bb_ring *r, const struct bb_usage_rec *rec);
/* Consumer (one process): move up to max records into out, oldest first; returns how many.
 * now_ms (monotonic) times out cells whose producer died mid-write. */
size_t bb_ring_pop(struct bb_ring *r, struct bb_usage_rec *out, size_t max, uint64_t now_ms);
/* Records pushed and not yet popped (approximate while producers run). */
uint64_t bb_ring_pending(struct bb_ring *r);
/* Copy src into a fixed-size record field, truncating, always NUL-terminated. */
void bb_usage_set_str(char *dst, size_t size, const char *src);

#endif
