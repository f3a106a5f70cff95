/*
 * keys_publish: the key snapshot, SQLite → shared memory (SPEC §6: key changes reach every
 * worker within 1 s without a reload). Master process only; the master is the table's single
 * writer. Publishing a key that is new to the table (or whose budget period changed) loads
 * what it spent in the current period from the daily rollups.
 */
#ifndef BB_MASTER_KEYS_PUBLISH_H
#define BB_MASTER_KEYS_PUBLISH_H

#include <stdint.h>

#include "common/err.h"
#include "common/keys_shm.h"
#include "master/keys_db.h"

/* The shared-memory limits of a stored key (expiry in wall-clock ms). */
void bb_keys_publish_limits(const struct bb_keys_db_key *k, struct bb_keys_limits *out);
/* Publish one key (revoked: unpublish it). now_ms is wall-clock. 0, or -1 with err (a store
 * error, or a full table). */
int bb_keys_publish_one(struct bb_keys_db *db, struct bb_keys_table *t,
                        const struct bb_keys_db_key *k, uint64_t now_ms, struct bb_err *err);
/* Make the table equal the store: publish every active key, unpublish every key the store no
 * longer has active. *changed (may be NULL) = keys put or removed. 0, or -1 with err; keys
 * that could not be published are skipped and reported in err (the rest are published). */
int bb_keys_publish_all(struct bb_keys_db *db, struct bb_keys_table *t, uint64_t now_ms,
                        unsigned *changed, struct bb_err *err);

#endif
