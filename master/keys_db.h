/*
 * keys_db: the governance store in SQLite (SPEC §6); all SQL of busbar lives here.
 * Schema: schema.sql (embedded at build time) is migration 1, applied through
 * PRAGMA user_version; WAL mode, synchronous=NORMAL, file mode 0600.
 * Master process only, single-threaded; a child must never use the handle.
 *
 * Every failing call returns BB_KEYS_DB_ERROR with "<db path>: <what>: <sqlite message>" in
 * err; SQLITE_BUSY (another process holds the write lock beyond the busy timeout), READONLY
 * and IOERR are reported, never retried here: the caller decides (the usage sink keeps its
 * batch and retries; an admin command fails; on_store_error picks allow/deny for requests).
 */
#ifndef BB_MASTER_KEYS_DB_H
#define BB_MASTER_KEYS_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/keys_shm.h"
#include "common/ring.h"

#define BB_KEYS_DB_SCHEMA_VERSION 2
#define BB_KEYS_DB_BUSY_MS 100    /* busy timeout: the master must not stall for long */
#define BB_KEYS_DB_SECRET_SIZE 40 /* "sk-bb-" + 32 hex + NUL, padded */
#define BB_KEYS_DB_NAME_MAX 128

enum bb_keys_db_status {
    BB_KEYS_DB_ERROR = -1,
    BB_KEYS_DB_OK = 0,
    BB_KEYS_DB_NOT_FOUND = 1,
    BB_KEYS_DB_CONFLICT = 2, /* e.g. updating a revoked key */
};

struct bb_keys_db;

/* A key as stored (the secret itself is never stored: only its SHA-256). Owns name/pools. */
struct bb_keys_db_key {
    char id[BB_KEYS_ID_SIZE];
    char *name;
    uint8_t secret_sha256[32];
    char **pools; /* allowed pools; n_pools 0 = every pool */
    size_t n_pools;
    bool has_budget;
    uint64_t budget_micros;
    int period;                      /* enum bb_keys_period */
    uint32_t rpm, tpm, max_parallel; /* 0 = unlimited */
    int64_t expires_at;              /* unix s; 0 = never */
    bool enabled;
    int64_t created_at, updated_at;
    int64_t revoked_at;                          /* 0 = active */
    char aws_access_key_id[BB_KEYS_AWS_ID_SIZE]; /* "" = none */
    char aws_secret[BB_KEYS_AWS_SECRET_SIZE];
};

/* Fields to set on create (every field; unset ones take defaults) or update (only set_*). */
struct bb_keys_db_patch {
    const char *name; /* NULL = unchanged (required on create) */
    bool set_pools;
    char **pools;
    size_t n_pools;
    bool set_budget;
    bool has_budget; /* false = remove the budget */
    uint64_t budget_micros;
    bool set_period;
    int period;
    bool set_rpm, set_tpm, set_parallel;
    uint32_t rpm, tpm, max_parallel; /* 0 = unlimited */
    bool set_expires;
    int64_t expires_at; /* 0 = never */
    bool set_enabled;
    bool enabled;
};

enum bb_keys_db_by {
    BB_KEYS_DB_BY_KEY,
    BB_KEYS_DB_BY_MODEL,
    BB_KEYS_DB_BY_POOL,
    BB_KEYS_DB_BY_DAY
};

struct bb_keys_db_spend_row {
    char *group; /* key id, model, pool or day */
    char *name;  /* key name (by key, when the key still exists), else NULL */
    uint64_t requests, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
        reasoning_tokens, cost_micros;
};

/* Open (creating it mode 0600 when absent) and migrate to BB_KEYS_DB_SCHEMA_VERSION.
 * NULL with err when the file cannot be opened, is read-only, is not a busbar database, or has
 * a schema newer than this build. */
struct bb_keys_db *bb_keys_db_open(const char *path, struct bb_err *err);
void bb_keys_db_close(struct bb_keys_db *db);
const char *bb_keys_db_path(const struct bb_keys_db *db);
/* The primary SQLite result code of the last failure (SQLITE_BUSY, …), 0 when none. */
int bb_keys_db_last_code(const struct bb_keys_db *db);

/* Validation of names and limits shared with the admin layer; -1 with err when invalid. */
int bb_keys_db_check_patch(const struct bb_keys_db_patch *p, bool create, struct bb_err *err);

/* Create a key. The secret ("sk-bb-" + 32 hex from RAND_bytes) is written to secret (shown
 * once, never stored); with_aws also makes an AWS pair ("AKIA…" + 40-char secret) found in
 * out. now is unix seconds. */
int bb_keys_db_create(struct bb_keys_db *db, const struct bb_keys_db_patch *p, bool with_aws,
                      int64_t now, struct bb_keys_db_key *out, char secret[BB_KEYS_DB_SECRET_SIZE],
                      struct bb_err *err);
/* One key by id: OK, NOT_FOUND or ERROR. */
int bb_keys_db_get(struct bb_keys_db *db, const char *id, struct bb_keys_db_key *out,
                   struct bb_err *err);
/* Every key (revoked ones too unless active_only), oldest first; *v owned by the caller
 * (bb_keys_db_keys_free). */
int bb_keys_db_list(struct bb_keys_db *db, bool active_only, struct bb_keys_db_key **v, size_t *n,
                    struct bb_err *err);
/* Apply p; CONFLICT when the key is revoked. out (may be NULL) gets the result. */
int bb_keys_db_update(struct bb_keys_db *db, const char *id, const struct bb_keys_db_patch *p,
                      int64_t now, struct bb_keys_db_key *out, struct bb_err *err);
/* Set revoked_at (idempotent: an already revoked key keeps its first revocation time). */
int bb_keys_db_revoke(struct bb_keys_db *db, const char *id, int64_t now,
                      struct bb_keys_db_key *out, struct bb_err *err);
/* Insert or replace k as is, every column (cluster mode: the key as the cluster catalogue has
 * it, made on another node). */
int bb_keys_db_put(struct bb_keys_db *db, const struct bb_keys_db_key *k, struct bb_err *err);
/* Remove the row (ledger rows keep the id). */
int bb_keys_db_delete(struct bb_keys_db *db, const char *id, struct bb_err *err);
void bb_keys_db_key_free(struct bb_keys_db_key *k);
void bb_keys_db_keys_free(struct bb_keys_db_key *v, size_t n);

/* Spend from the daily rollups (never the ledger): grouped by `by`, optionally one key, days
 * since..until inclusive ("YYYY-MM-DD" or NULL). Rows owned by the caller. */
int bb_keys_db_spend(struct bb_keys_db *db, enum bb_keys_db_by by, const char *key_id,
                     const char *since, const char *until, struct bb_keys_db_spend_row **rows,
                     size_t *n, struct bb_err *err);
void bb_keys_db_spend_free(struct bb_keys_db_spend_row *rows, size_t n);
/* Cost of key_id from day since_day (NULL = ever) on, from the rollups. */
int bb_keys_db_period_spent(struct bb_keys_db *db, const char *key_id, const char *since_day,
                            uint64_t *micros, struct bb_err *err);

/* Append usage records as ledger rows and add them to the daily rollups, in one transaction.
 * batch_id names the batch: a batch retried with the same id after a commit whose success was
 * not seen is recognised and not written twice (*inserted = 0). *inserted (may be NULL) = new
 * rows. On error nothing was written. */
int bb_keys_db_ledger_insert(struct bb_keys_db *db, const struct bb_usage_rec *v, size_t n,
                             uint64_t batch_id, size_t *inserted, struct bb_err *err);

/* Retention: delete at most max_rows ledger rows completed before before_ms (unix ms), oldest
 * first; the rollups are kept. *deleted = rows removed (less than max_rows: caught up). */
int bb_keys_db_ledger_prune(struct bb_keys_db *db, uint64_t before_ms, size_t max_rows,
                            size_t *deleted, struct bb_err *err);

/* PRAGMA data_version: changes when another connection committed (external edits). */
int bb_keys_db_data_version(struct bb_keys_db *db, int64_t *v, struct bb_err *err);

#endif
