/*
 * governance: the master's side of SPEC §6. Owns the SQLite store (keys_db), keeps the
 * shared-memory key table in step with it (keys_publish), drains the usage ring into the
 * ledger (usage_sink), and implements the admin operations that both the admin socket
 * (ctl_server) and the HTTP admin API (admin_http) expose, as JSON in and JSON out.
 * Master process only, single-threaded, driven by the supervisor loop.
 */
#ifndef BB_MASTER_GOVERNANCE_H
#define BB_MASTER_GOVERNANCE_H

#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

#include "common/config.h"
#include "common/err.h"
#include "common/shm.h"

#define BB_GOV_DRAIN_MS 150 /* usage ring → ledger, while no traffic comes */
#define BB_GOV_BUSY_MS 20   /* ... while it does */
/* The master writes the ledger in short transactions with BB_GOV_CHUNK_GAP_MS between them,
 * so a worker sharing its CPU never waits behind a long one: 32 records (~0.15 ms) while
 * it keeps up, 128 when 512 are waiting, 512 when 4096 are (the ring holds 8192): ~80k rows/s
 * sustained at the middle step, ~150k at the largest (~4.7 µs a row). */
#define BB_GOV_CHUNK_GAP_MS 1
#define BB_GOV_CHECK_MS 1000   /* external database edits → key table */
#define BB_GOV_PRUNE_MS 60000  /* ledger retention: one bounded pass a minute */
#define BB_GOV_PRUNE_ROWS 5000 /* rows deleted per pass (a pass that hits it repeats in 1 s) */

/* Admin operations: id, admin-socket command name (common/ctl_proto.h uses the same names). */
#define BB_GOV_OP_LIST(X)                                                                          \
    X(KEYS_CREATE, "keys.create")                                                                  \
    X(KEYS_LIST, "keys.list")                                                                      \
    X(KEYS_SHOW, "keys.show")                                                                      \
    X(KEYS_UPDATE, "keys.update")                                                                  \
    X(KEYS_REVOKE, "keys.revoke")                                                                  \
    X(KEYS_DELETE, "keys.delete")                                                                  \
    X(SPEND, "spend")

enum bb_gov_op {
#define X(id, name) BB_GOV_##id,
    BB_GOV_OP_LIST(X)
#undef X
        BB_GOV_OP__COUNT
};

struct bb_gov;

/* Open the store at conf->gov_db_path (migrating it) and publish every key into shm->keys.
 * With governance disabled, returns a handle without a store (admin operations then answer
 * 503, the ring is drained and discarded). NULL with err when the store cannot be used. */
struct bb_gov *bb_gov_open(const struct bb_conf *conf, struct bb_shm *shm, struct bb_err *err);
/* Drain the ring completely, then close the store. NULL is a no-op. */
void bb_gov_close(struct bb_gov *g);
/* A reload: the store stays (a changed db_path or enabled needs a restart; logged). */
void bb_gov_reconfigure(struct bb_gov *g, const struct bb_conf *conf);
/* Periodic work (monotonic now_ms): drain the ring every BB_GOV_DRAIN_MS, republish keys
 * when another process changed the database (checked every BB_GOV_CHECK_MS). */
void bb_gov_tick(struct bb_gov *g, uint64_t now_ms);
/* Monotonic ms at which bb_gov_tick has work next (the master's poll timeout); 0 = none. */
uint64_t bb_gov_due_ms(const struct bb_gov *g);
/* Drain the ring until empty (graceful stop). */
void bb_gov_flush(struct bb_gov *g);
/* Run one admin operation. args: the request object (fields per operation, see
 * docs/governance.md; "cmd" is ignored). *reply gets the response body (owned by the
 * caller): the result on success, {"error":{"code","message"}} otherwise. Returns the HTTP
 * status: 200/201 success, 400 bad arguments, 404 no such key, 409 revoked, 500/503 store. */
int bb_gov_admin(struct bb_gov *g, enum bb_gov_op op, struct json_object *args,
                 struct json_object **reply);
/* Operation of an admin-socket command name; -1 when not one. */
int bb_gov_op_from_name(const char *name);
/* Add a "governance" object (store, keys, ring counters) to a status reply. */
void bb_gov_status(struct bb_gov *g, struct json_object *status);

/* Cluster mode (master/cluster.c) hooks into the admin operations. */
struct bb_keys_db;
struct bb_keys_db_key;
struct bb_keys_db_spend_row;
struct bb_gov_cluster {
    void *arg;
    /* an admin operation changed k (deleted: k as it was before its row went) */
    void (*key_changed)(void *arg, const struct bb_keys_db_key *k, bool deleted);
    /* spend --cluster: rows grouped by "key" or "day" from Redis (0, or -1 with err) */
    int (*spend)(void *arg, const char *key, const char *by, const char *since, const char *until,
                 struct bb_keys_db_spend_row **rows, size_t *n, struct bb_err *err);
    /* add the "cluster" object to a status reply */
    void (*status)(void *arg, struct json_object *status);
};
/* Install (c copied) or remove (NULL) the cluster hooks. */
void bb_gov_set_cluster(struct bb_gov *g, const struct bb_gov_cluster *c);
/* The key store (NULL when governance is disabled), for master/cluster.c. */
struct bb_keys_db *bb_gov_db(struct bb_gov *g);

#endif
