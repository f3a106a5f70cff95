/*
 * usage_sink: the usage ring (common/ring.h) → the SQLite ledger and rollups, in batched
 * transactions (SPEC §6). Master process only, called from the supervisor loop every 100-250
 * ms and once more, until the ring is empty, on the way out.
 * A batch the store refused (busy, read-only, I/O error) is kept and retried first next time;
 * meanwhile the ring keeps filling and, when full, workers drop and count (never block).
 */
#ifndef BB_MASTER_USAGE_SINK_H
#define BB_MASTER_USAGE_SINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/ring.h"
#include "master/keys_db.h"

#define BB_USAGE_SINK_BATCH 4096u /* records per transaction */

struct bb_usage_sink {
    struct bb_usage_rec *batch; /* BB_USAGE_SINK_BATCH records */
    size_t n;                   /* held, not yet committed */
    uint64_t written;           /* new ledger rows */
    uint64_t duplicates;        /* records of a retried batch that had committed after all */
    uint64_t failures;          /* failed transactions */
    uint64_t discarded;         /* records thrown away (no store) */
    uint64_t batch_id;          /* of the held batch: a retry reuses it (keys_db) */
};

void bb_usage_sink_init(struct bb_usage_sink *s);
void bb_usage_sink_free(struct bb_usage_sink *s);
/* Pop from r and write to db: at most max records (0: at least everything pending when
 * called; the ring is then empty unless producers are still running). db NULL (no store)
 * discards what it pops. now_ms is monotonic. Returns the number of records committed, or -1
 * with err when a transaction failed (its records stay held for the next call). */
long bb_usage_sink_drain(struct bb_usage_sink *s, struct bb_ring *r, struct bb_keys_db *db,
                         size_t max, uint64_t now_ms, struct bb_err *err);

#endif
