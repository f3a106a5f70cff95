/*
 * usage_sink: drain the shared-memory usage ring into the ledger. Master process only,
 * single-threaded. One held batch at most: records are popped into it, committed in one
 * transaction (ledger rows + rollup upserts, keys_db), and only then forgotten, so a store
 * failure loses nothing that was popped; the ledger's UNIQUE request id makes a retry of a
 * batch that did commit (but whose success we did not see) harmless.
 */
#include "master/usage_sink.h"

#include <stdlib.h>

void bb_usage_sink_init(struct bb_usage_sink *s)
{
    *s = (struct bb_usage_sink){0};
    s->batch = bb_xcalloc(BB_USAGE_SINK_BATCH, sizeof *s->batch);
}

void bb_usage_sink_free(struct bb_usage_sink *s)
{
    free(s->batch);
    s->batch = NULL;
    s->n = 0;
}

long bb_usage_sink_drain(struct bb_usage_sink *s, struct bb_ring *r, struct bb_keys_db *db,
                         bool all, uint64_t now_ms, struct bb_err *err)
{
    /* A periodic drain writes a few batches at most, so the master's loop stays responsive;
     * a full drain writes at least everything that was waiting when it started (not more:
     * producers that outpace the store must not keep it looping forever). */
    uint64_t quota = all ? bb_ring_pending(r) + s->n : 4u * BB_USAGE_SINK_BATCH;
    long done = 0;
    for (;;) {
        if (s->n < BB_USAGE_SINK_BATCH)
            s->n += bb_ring_pop(r, s->batch + s->n, BB_USAGE_SINK_BATCH - s->n, now_ms);
        if (s->n == 0)
            return done;
        size_t n = s->n;
        if (!db) {
            s->discarded += n;
        } else {
            size_t fresh = 0;
            if (bb_keys_db_ledger_insert(db, s->batch, n, &fresh, err) < 0) {
                s->failures++;
                return -1;
            }
            s->written += fresh;
            s->duplicates += n - fresh;
        }
        s->n = 0;
        done += (long)n;
        if ((uint64_t)done >= quota)
            return done;
    }
}
