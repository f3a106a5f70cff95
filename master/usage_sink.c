/*
 * usage_sink: drain the shared-memory usage ring into the ledger. Master process only,
 * single-threaded. One held batch at most: records are popped into it, committed in one
 * transaction (ledger rows + rollup upserts, keys_db), and only then forgotten, so a store
 * failure loses nothing that was popped; each batch carries an id (kept across its retries)
 * that keys_db records in the same transaction, so a retry of a batch that did commit (but
 * whose success we did not see) writes nothing.
 */
#include "master/usage_sink.h"

#include <stdlib.h>
#include <time.h>
#include <unistd.h>

void bb_usage_sink_init(struct bb_usage_sink *s)
{
    *s = (struct bb_usage_sink){0};
    s->batch = bb_xcalloc(BB_USAGE_SINK_BATCH, sizeof *s->batch);
    /* batch ids: unique across restarts (the time) and masters sharing a store (the pid) */
    s->batch_id = ((uint64_t)time(NULL) << 24 ^ (uint64_t)getpid() << 8) & 0x7fffffffffffff00ull;
}

void bb_usage_sink_free(struct bb_usage_sink *s)
{
    free(s->batch);
    s->batch = NULL;
    s->n = 0;
}

long bb_usage_sink_drain(struct bb_usage_sink *s, struct bb_ring *r, struct bb_keys_db *db,
                         size_t max, uint64_t now_ms, struct bb_err *err)
{
    /* A bounded drain (max) writes at most max records (a held batch from a failed
     * transaction is retried whole), so the master's loop stays responsive and its
     * transactions short; a full drain (max 0) writes at least everything that was waiting
     * when it started (not more: producers that outpace the store must not keep it looping
     * forever). */
    uint64_t quota = max ? max : bb_ring_pending(r) + s->n;
    long done = 0;
    for (;;) {
        size_t room = BB_USAGE_SINK_BATCH - s->n;
        if (max && quota - (uint64_t)done < room)
            room = (size_t)(quota - (uint64_t)done);
        if (s->n == 0 && room) { /* a new batch; a held one is retried as it is, id and all */
            s->batch_id++;
            s->n = bb_ring_pop(r, s->batch, room, now_ms);
        }
        if (s->n == 0)
            return done;
        size_t n = s->n;
        if (!db) {
            s->discarded += n;
        } else {
            size_t fresh = 0;
            if (bb_keys_db_ledger_insert(db, s->batch, n, s->batch_id, &fresh, err) < 0) {
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
