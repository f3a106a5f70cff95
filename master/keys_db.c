/*
 * keys_db: SQLite store of virtual keys, the spend ledger and the daily rollups (SPEC §6).
 * All of busbar's SQL is in this file. Master process only, single-threaded, one connection;
 * prepared statements for the hot ones (ledger batch, rollup upsert, period spend).
 *
 * Migrations: `migrations[]` below, applied in order inside one IMMEDIATE transaction each,
 * PRAGMA user_version = the last one applied. Version 1 is schema.sql (embedded by meson as
 * bb_schema_sql). To change the schema, append {2, "ALTER TABLE …"}: never edit a released one.
 */
#include "master/keys_db.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <json-c/json.h>
#include <openssl/rand.h>
#include <sqlite3.h>

#include "bb_schema_sql.h"
#include "common/config.h"

static const struct migration {
    int version;
    const char *sql;
} migrations[] = {
    {1, bb_schema_sql},
    /* 2: ledger rows without per-row indexes (the reports read the rollups; a retried batch is
     * recognised by its id in ledger_batches instead of a UNIQUE request id), so a row costs
     * one append. */
    {2, "CREATE TABLE ledger2 ("
        " id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, request_id TEXT NOT NULL,"
        " key_id TEXT NOT NULL DEFAULT '', pool TEXT NOT NULL DEFAULT '',"
        " lane TEXT NOT NULL DEFAULT '', provider TEXT NOT NULL DEFAULT '',"
        " ingress TEXT NOT NULL DEFAULT '', input_tokens INTEGER NOT NULL DEFAULT 0,"
        " output_tokens INTEGER NOT NULL DEFAULT 0, cache_read_tokens INTEGER NOT NULL DEFAULT 0,"
        " cache_write_tokens INTEGER NOT NULL DEFAULT 0,"
        " reasoning_tokens INTEGER NOT NULL DEFAULT 0, cost_micros INTEGER NOT NULL DEFAULT 0,"
        " status INTEGER NOT NULL, latency_ms INTEGER NOT NULL);"
        "INSERT INTO ledger2 SELECT * FROM ledger;"
        "DROP TABLE ledger;"
        "ALTER TABLE ledger2 RENAME TO ledger;"
        "CREATE TABLE ledger_batches (id INTEGER PRIMARY KEY, ts INTEGER NOT NULL);"},
};
_Static_assert(sizeof migrations / sizeof migrations[0] == BB_KEYS_DB_SCHEMA_VERSION,
               "BB_KEYS_DB_SCHEMA_VERSION must equal the last migration");

#define KEY_COLS                                                                                   \
    "id, name, secret_sha256, allowed_pools, budget_micros, period, rpm, tpm, max_parallel, "      \
    "expires_at, enabled, created_at, updated_at, revoked_at, aws_access_key_id, aws_secret"

#define LEDGER_COLS 15  /* bound per row */
#define LEDGER_MULTI 16 /* rows per multi-row INSERT */
static const char SQL_LEDGER_HEAD[] =
    "INSERT INTO ledger (ts, request_id, key_id, pool, lane, provider, ingress, input_tokens, "
    "output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, cost_micros, status, "
    "latency_ms) VALUES ";
static const char SQL_LEDGER_ROW[] = "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)";
static const char SQL_BATCH[] = "INSERT OR IGNORE INTO ledger_batches (id, ts) VALUES (?1, ?2)";
static const char SQL_ROLLUP[] =
    "INSERT INTO rollup_daily (key_id, day, pool, model, requests, input_tokens, output_tokens, "
    "cache_read_tokens, cache_write_tokens, reasoning_tokens, cost_micros) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) "
    "ON CONFLICT (key_id, day, pool, model) DO UPDATE SET "
    "requests = requests + excluded.requests, "
    "input_tokens = input_tokens + excluded.input_tokens, "
    "output_tokens = output_tokens + excluded.output_tokens, "
    "cache_read_tokens = cache_read_tokens + excluded.cache_read_tokens, "
    "cache_write_tokens = cache_write_tokens + excluded.cache_write_tokens, "
    "reasoning_tokens = reasoning_tokens + excluded.reasoning_tokens, "
    "cost_micros = cost_micros + excluded.cost_micros";
static const char SQL_SPENT[] = "SELECT COALESCE(SUM(cost_micros), 0) FROM rollup_daily "
                                "WHERE key_id = ?1 AND (?2 IS NULL OR day >= ?2)";
static const char SQL_GET[] = "SELECT " KEY_COLS " FROM keys WHERE id = ?1";

struct bb_keys_db {
    sqlite3 *h;
    char *path;
    int last_code;
    sqlite3_stmt *st_ledger, *st_ledger_multi, *st_batch, *st_begin, *st_commit;
    sqlite3_stmt *st_rollup, *st_spent, *st_get;
};

/* ---- errors and small helpers ------------------------------------------------------------- */

static int fail(struct bb_keys_db *db, struct bb_err *err, const char *what)
{
    db->last_code = sqlite3_errcode(db->h) & 0xff;
    bb_err_set(err, "%s: %s: %s", db->path, what, sqlite3_errmsg(db->h));
    return BB_KEYS_DB_ERROR;
}

static int exec(struct bb_keys_db *db, const char *sql, const char *what, struct bb_err *err)
{
    char *msg = NULL;
    if (sqlite3_exec(db->h, sql, NULL, NULL, &msg) != SQLITE_OK) {
        db->last_code = sqlite3_errcode(db->h) & 0xff;
        bb_err_set(err, "%s: %s: %s", db->path, what, msg ? msg : sqlite3_errmsg(db->h));
        sqlite3_free(msg);
        return BB_KEYS_DB_ERROR;
    }
    return BB_KEYS_DB_OK;
}

static void rollback(struct bb_keys_db *db)
{
    if (!sqlite3_get_autocommit(db->h))
        sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
}

static int prepare(struct bb_keys_db *db, const char *sql, sqlite3_stmt **st, struct bb_err *err)
{
    if (sqlite3_prepare_v2(db->h, sql, -1, st, NULL) != SQLITE_OK)
        return fail(db, err, "prepare");
    return BB_KEYS_DB_OK;
}

static int64_t clamp64(uint64_t v)
{
    return v > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v;
}

static uint64_t col_u64(sqlite3_stmt *st, int i)
{
    int64_t v = sqlite3_column_int64(st, i);
    return v < 0 ? 0 : (uint64_t)v;
}

static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
    sqlite3_bind_text(st, i, s ? s : "", -1, SQLITE_TRANSIENT);
}

static void copy_str(char *dst, size_t size, const unsigned char *src)
{
    snprintf(dst, size, "%s", src ? (const char *)src : "");
}

static void hex(const uint8_t *b, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

static void random_bytes(uint8_t *b, size_t n)
{
    if (RAND_bytes(b, (int)n) != 1)
        abort(); /* no CSPRNG: never hand out guessable secrets */
}

/* ---- open / migrate ----------------------------------------------------------------------- */

static int user_version(struct bb_keys_db *db, int *v, struct bb_err *err)
{
    sqlite3_stmt *st;
    if (prepare(db, "PRAGMA user_version", &st, err) < 0)
        return BB_KEYS_DB_ERROR;
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(st);
        return fail(db, err, "read schema version");
    }
    *v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return BB_KEYS_DB_OK;
}

static int migrate(struct bb_keys_db *db, struct bb_err *err)
{
    int v;
    if (user_version(db, &v, err) < 0)
        return BB_KEYS_DB_ERROR;
    if (v > BB_KEYS_DB_SCHEMA_VERSION)
        return bb_err_set(err, "%s: schema version %d is newer than this busbar supports (%d)",
                          db->path, v, BB_KEYS_DB_SCHEMA_VERSION);
    if (v == 0) {
        /* A fresh file must be empty: never migrate somebody else's database. */
        sqlite3_stmt *st;
        if (prepare(db, "SELECT count(*) FROM sqlite_schema", &st, err) < 0)
            return BB_KEYS_DB_ERROR;
        int n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
        sqlite3_finalize(st);
        if (n != 0)
            return bb_err_set(err, "%s: not a busbar database (user_version 0 but %d objects)",
                              db->path, n);
    }
    for (size_t i = 0; i < sizeof migrations / sizeof migrations[0]; i++) {
        const struct migration *m = &migrations[i];
        if (m->version <= v)
            continue;
        char what[64], pragma[64];
        snprintf(what, sizeof what, "migration to schema version %d", m->version);
        snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d", m->version);
        if (exec(db, "BEGIN IMMEDIATE", what, err) < 0)
            return BB_KEYS_DB_ERROR;
        if (exec(db, m->sql, what, err) < 0 || exec(db, pragma, what, err) < 0 ||
            exec(db, "COMMIT", what, err) < 0) {
            rollback(db);
            return BB_KEYS_DB_ERROR;
        }
    }
    return BB_KEYS_DB_OK;
}

struct bb_keys_db *bb_keys_db_open(const char *path, struct bb_err *err)
{
    struct bb_keys_db *db = bb_xcalloc(1, sizeof *db);
    db->path = bb_xstrdup(path);
    /* No up-front page-cache block per connection (SQLITE_DEFAULT_PCACHE_INITSZ: 20 pages,
     * 87 KiB, written through at creation): pages are allocated as they are read. Only
     * possible before SQLite initialises; later calls answer SQLITE_MISUSE and change nothing. */
    static bool pcache_configured;
    if (!pcache_configured) {
        pcache_configured = true;
        sqlite3_config(SQLITE_CONFIG_PAGECACHE, NULL, 0, 0);
    }
    mode_t old = umask(077); /* the file holds AWS secrets: born 0600 (WAL files copy it) */
    int rc = sqlite3_open_v2(
        path, &db->h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    umask(old);
    if (rc != SQLITE_OK) {
        bb_err_set(err, "%s: cannot open database: %s", path,
                   db->h ? sqlite3_errmsg(db->h) : sqlite3_errstr(rc));
        goto fail;
    }
    sqlite3_extended_result_codes(db->h, 1);
    sqlite3_busy_timeout(db->h, BB_KEYS_DB_BUSY_MS);

    if (sqlite3_db_readonly(db->h, "main") == 1) {
        bb_err_set(err, "%s: database is read-only (check the file's permissions and owner)", path);
        goto fail;
    }
    /* journal_mode answers with the mode in effect: anything but wal is an error here. */
    sqlite3_stmt *st;
    if (prepare(db, "PRAGMA journal_mode = WAL", &st, err) < 0)
        goto fail;
    rc = sqlite3_step(st);
    const unsigned char *mode = rc == SQLITE_ROW ? sqlite3_column_text(st, 0) : NULL;
    bool wal = mode && !strcmp((const char *)mode, "wal");
    if (!wal) {
        if (rc == SQLITE_ROW)
            bb_err_set(err, "%s: cannot switch to WAL mode (journal mode is %s)", path,
                       mode ? (const char *)mode : "?");
        else
            fail(db, err, "cannot switch to WAL mode");
        sqlite3_finalize(st);
        goto fail;
    }
    sqlite3_finalize(st);
    if (exec(db, "PRAGMA synchronous = NORMAL", "set synchronous", err) < 0 || migrate(db, err) < 0)
        goto fail;
    char one[sizeof SQL_LEDGER_HEAD + sizeof SQL_LEDGER_ROW];
    char multi[sizeof SQL_LEDGER_HEAD + LEDGER_MULTI * sizeof SQL_LEDGER_ROW];
    size_t ml = (size_t)snprintf(multi, sizeof multi, "%s%s", SQL_LEDGER_HEAD, SQL_LEDGER_ROW);
    memcpy(one, multi, ml + 1);
    for (int i = 1; i < LEDGER_MULTI; i++)
        ml += (size_t)snprintf(multi + ml, sizeof multi - ml, ",%s", SQL_LEDGER_ROW);
    if (prepare(db, one, &db->st_ledger, err) < 0 ||
        prepare(db, multi, &db->st_ledger_multi, err) < 0 ||
        prepare(db, SQL_BATCH, &db->st_batch, err) < 0 ||
        prepare(db, "BEGIN IMMEDIATE", &db->st_begin, err) < 0 ||
        prepare(db, "COMMIT", &db->st_commit, err) < 0 ||
        prepare(db, SQL_ROLLUP, &db->st_rollup, err) < 0 ||
        prepare(db, SQL_SPENT, &db->st_spent, err) < 0 ||
        prepare(db, SQL_GET, &db->st_get, err) < 0)
        goto fail;
    return db;
fail:
    bb_keys_db_close(db);
    return NULL;
}

void bb_keys_db_close(struct bb_keys_db *db)
{
    if (!db)
        return;
    sqlite3_finalize(db->st_ledger);
    sqlite3_finalize(db->st_ledger_multi);
    sqlite3_finalize(db->st_batch);
    sqlite3_finalize(db->st_begin);
    sqlite3_finalize(db->st_commit);
    sqlite3_finalize(db->st_rollup);
    sqlite3_finalize(db->st_spent);
    sqlite3_finalize(db->st_get);
    sqlite3_close(db->h);
    free(db->path);
    free(db);
}

const char *bb_keys_db_path(const struct bb_keys_db *db)
{
    return db->path;
}

int bb_keys_db_last_code(const struct bb_keys_db *db)
{
    return db->last_code;
}

/* ---- keys --------------------------------------------------------------------------------- */

static bool printable(const char *s, size_t max, bool spaces)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f || (!spaces && (*p == ' ' || *p == ',')))
            return false;
    return true;
}

int bb_keys_db_check_patch(const struct bb_keys_db_patch *p, bool create, struct bb_err *err)
{
    if (create && !p->name)
        return bb_err_set(err, "name is required");
    if (p->name && !printable(p->name, BB_KEYS_DB_NAME_MAX, true))
        return bb_err_set(err, "name must be 1 to %d characters without control characters",
                          BB_KEYS_DB_NAME_MAX);
    if (p->set_pools) {
        if (p->n_pools > BB_KEYS_MAX_POOLS)
            return bb_err_set(err, "at most %d pools per key (got %zu)", BB_KEYS_MAX_POOLS,
                              p->n_pools);
        for (size_t i = 0; i < p->n_pools; i++) {
            if (!p->pools[i] || !printable(p->pools[i], BB_USAGE_NAME_SIZE - 1, false))
                return bb_err_set(err,
                                  "pool name '%s' is invalid (1 to %d characters, no "
                                  "spaces or commas)",
                                  p->pools[i] ? p->pools[i] : "", BB_USAGE_NAME_SIZE - 1);
            for (size_t j = 0; j < i; j++)
                if (!strcmp(p->pools[i], p->pools[j]))
                    return bb_err_set(err, "pool '%s' is listed twice", p->pools[i]);
        }
    }
    if (p->set_budget && p->has_budget && p->budget_micros > (uint64_t)INT64_MAX)
        return bb_err_set(err, "budget is out of range");
    if (p->set_period && (p->period < BB_KEYS_PERIOD_TOTAL || p->period > BB_KEYS_PERIOD_MONTHLY))
        return bb_err_set(err, "period must be total, daily or monthly");
    if (p->set_expires && p->expires_at < 0)
        return bb_err_set(err, "expiry is out of range");
    return 0;
}

static char *pools_json(char *const *pools, size_t n)
{
    struct json_object *a = json_object_new_array();
    for (size_t i = 0; i < n; i++)
        json_object_array_add(a, json_object_new_string(pools[i]));
    char *s = bb_xstrdup(json_object_to_json_string_ext(a, JSON_C_TO_STRING_PLAIN));
    json_object_put(a);
    return s;
}

static void pools_parse(const char *text, struct bb_keys_db_key *k)
{
    struct json_object *a = text ? json_tokener_parse(text) : NULL;
    if (a && json_object_is_type(a, json_type_array)) {
        size_t n = json_object_array_length(a);
        k->pools = bb_xcalloc(n ? n : 1, sizeof *k->pools);
        for (size_t i = 0; i < n; i++) {
            struct json_object *e = json_object_array_get_idx(a, i);
            if (json_object_is_type(e, json_type_string))
                k->pools[k->n_pools++] = bb_xstrdup(json_object_get_string(e));
        }
    }
    json_object_put(a);
}

static void read_key(sqlite3_stmt *st, struct bb_keys_db_key *k)
{
    memset(k, 0, sizeof *k);
    copy_str(k->id, sizeof k->id, sqlite3_column_text(st, 0));
    const unsigned char *name = sqlite3_column_text(st, 1);
    k->name = bb_xstrdup(name ? (const char *)name : "");
    if (sqlite3_column_bytes(st, 2) == 32)
        memcpy(k->secret_sha256, sqlite3_column_blob(st, 2), 32);
    pools_parse((const char *)sqlite3_column_text(st, 3), k);
    k->has_budget = sqlite3_column_type(st, 4) != SQLITE_NULL;
    k->budget_micros = col_u64(st, 4);
    const unsigned char *period = sqlite3_column_text(st, 5);
    int per = bb_keys_period_from_name((const char *)period);
    k->period = per < 0 ? BB_KEYS_PERIOD_TOTAL : per;
    uint64_t v;
    v = col_u64(st, 6);
    k->rpm = v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
    v = col_u64(st, 7);
    k->tpm = v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
    v = col_u64(st, 8);
    k->max_parallel = v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
    k->expires_at = sqlite3_column_int64(st, 9);
    k->enabled = sqlite3_column_int(st, 10) != 0;
    k->created_at = sqlite3_column_int64(st, 11);
    k->updated_at = sqlite3_column_int64(st, 12);
    k->revoked_at = sqlite3_column_int64(st, 13);
    copy_str(k->aws_access_key_id, sizeof k->aws_access_key_id, sqlite3_column_text(st, 14));
    copy_str(k->aws_secret, sizeof k->aws_secret, sqlite3_column_text(st, 15));
}

void bb_keys_db_key_free(struct bb_keys_db_key *k)
{
    if (!k)
        return;
    free(k->name);
    for (size_t i = 0; i < k->n_pools; i++)
        free(k->pools[i]);
    free(k->pools);
    /* The AWS secret must not linger in freed memory. */
    memset(k, 0, sizeof *k);
}

void bb_keys_db_keys_free(struct bb_keys_db_key *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        bb_keys_db_key_free(&v[i]);
    free(v);
}

static void apply_patch(struct bb_keys_db_key *k, const struct bb_keys_db_patch *p)
{
    if (p->name) {
        free(k->name);
        k->name = bb_xstrdup(p->name);
    }
    if (p->set_pools) {
        for (size_t i = 0; i < k->n_pools; i++)
            free(k->pools[i]);
        free(k->pools);
        k->pools = bb_xcalloc(p->n_pools ? p->n_pools : 1, sizeof *k->pools);
        for (size_t i = 0; i < p->n_pools; i++)
            k->pools[i] = bb_xstrdup(p->pools[i]);
        k->n_pools = p->n_pools;
    }
    if (p->set_budget) {
        k->has_budget = p->has_budget;
        k->budget_micros = p->has_budget ? p->budget_micros : 0;
    }
    if (p->set_period)
        k->period = p->period;
    if (p->set_rpm)
        k->rpm = p->rpm;
    if (p->set_tpm)
        k->tpm = p->tpm;
    if (p->set_parallel)
        k->max_parallel = p->max_parallel;
    if (p->set_expires)
        k->expires_at = p->expires_at;
    if (p->set_enabled)
        k->enabled = p->enabled;
}

/* Bind the mutable columns of k to ?2..?11 (shared by INSERT and UPDATE). */
static void bind_fields(sqlite3_stmt *st, const struct bb_keys_db_key *k)
{
    bind_text(st, 2, k->name);
    char *pools = pools_json(k->pools, k->n_pools);
    sqlite3_bind_text(st, 3, pools, -1, SQLITE_TRANSIENT);
    free(pools);
    if (k->has_budget)
        sqlite3_bind_int64(st, 4, clamp64(k->budget_micros));
    else
        sqlite3_bind_null(st, 4);
    bind_text(st, 5, bb_keys_period_name(k->period));
    const uint32_t lim[] = {k->rpm, k->tpm, k->max_parallel};
    for (int i = 0; i < 3; i++) {
        if (lim[i])
            sqlite3_bind_int64(st, 6 + i, lim[i]);
        else
            sqlite3_bind_null(st, 6 + i);
    }
    if (k->expires_at)
        sqlite3_bind_int64(st, 9, k->expires_at);
    else
        sqlite3_bind_null(st, 9);
    sqlite3_bind_int(st, 10, k->enabled ? 1 : 0);
    sqlite3_bind_int64(st, 11, k->updated_at);
}

static void make_aws(char *akid, char *secret)
{
    static const char b32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint8_t r[56];
    random_bytes(r, sizeof r);
    memcpy(akid, "AKIA", 4);
    for (int i = 0; i < 16; i++)
        akid[4 + i] = b32[r[i] & 31];
    akid[20] = '\0';
    for (int i = 0; i < 40; i++)
        secret[i] = b64[r[16 + i] & 63];
    secret[40] = '\0';
    memset(r, 0, sizeof r);
}

int bb_keys_db_create(struct bb_keys_db *db, const struct bb_keys_db_patch *p, bool with_aws,
                      int64_t now, struct bb_keys_db_key *out, char secret[BB_KEYS_DB_SECRET_SIZE],
                      struct bb_err *err)
{
    if (bb_keys_db_check_patch(p, true, err) < 0)
        return BB_KEYS_DB_ERROR;
    struct bb_keys_db_key k;
    memset(&k, 0, sizeof k);
    k.enabled = true;
    k.period = BB_KEYS_PERIOD_TOTAL;
    apply_patch(&k, p);
    k.created_at = k.updated_at = now;
    sqlite3_stmt *st;
    if (prepare(db,
                "INSERT INTO keys (id, name, allowed_pools, budget_micros, period, rpm, tpm, "
                "max_parallel, expires_at, enabled, updated_at, created_at, secret_sha256, "
                "aws_access_key_id, aws_secret) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, "
                "?11, ?11, ?12, ?13, ?14)",
                &st, err) < 0) {
        bb_keys_db_key_free(&k);
        return BB_KEYS_DB_ERROR;
    }
    int rc = SQLITE_CONSTRAINT;
    /* Random ids and secrets collide with negligible odds; a UNIQUE violation just retries. */
    for (int attempt = 0; attempt < 4 && (rc & 0xff) == SQLITE_CONSTRAINT; attempt++) {
        uint8_t r[24];
        random_bytes(r, sizeof r);
        memcpy(k.id, "vk_", 3);
        hex(r, 8, k.id + 3);
        memcpy(secret, "sk-bb-", 6);
        hex(r + 8, 16, secret + 6);
        memset(r, 0, sizeof r);
        bb_keys_hash_secret(secret, strlen(secret), k.secret_sha256);
        if (with_aws)
            make_aws(k.aws_access_key_id, k.aws_secret);
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        bind_text(st, 1, k.id);
        bind_fields(st, &k);
        sqlite3_bind_blob(st, 12, k.secret_sha256, 32, SQLITE_TRANSIENT);
        if (with_aws) {
            bind_text(st, 13, k.aws_access_key_id);
            bind_text(st, 14, k.aws_secret);
        }
        rc = sqlite3_step(st);
    }
    if (rc != SQLITE_DONE) {
        fail(db, err, "create key");
        sqlite3_finalize(st);
        bb_keys_db_key_free(&k);
        memset(secret, 0, BB_KEYS_DB_SECRET_SIZE);
        return BB_KEYS_DB_ERROR;
    }
    sqlite3_finalize(st);
    if (out)
        *out = k;
    else
        bb_keys_db_key_free(&k);
    return BB_KEYS_DB_OK;
}

int bb_keys_db_get(struct bb_keys_db *db, const char *id, struct bb_keys_db_key *out,
                   struct bb_err *err)
{
    sqlite3_stmt *st = db->st_get;
    sqlite3_reset(st);
    bind_text(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        read_key(st, out);
    else if (rc != SQLITE_DONE)
        fail(db, err, "read key");
    sqlite3_reset(st);
    return rc == SQLITE_ROW    ? BB_KEYS_DB_OK
           : rc == SQLITE_DONE ? BB_KEYS_DB_NOT_FOUND
                               : BB_KEYS_DB_ERROR;
}

int bb_keys_db_list(struct bb_keys_db *db, bool active_only, struct bb_keys_db_key **v, size_t *n,
                    struct bb_err *err)
{
    *v = NULL;
    *n = 0;
    sqlite3_stmt *st;
    if (prepare(db,
                active_only ? "SELECT " KEY_COLS " FROM keys WHERE revoked_at IS NULL "
                              "ORDER BY created_at, id"
                            : "SELECT " KEY_COLS " FROM keys ORDER BY created_at, id",
                &st, err) < 0)
        return BB_KEYS_DB_ERROR;
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            *v = bb_xrealloc(*v, cap * sizeof **v);
        }
        read_key(st, &(*v)[(*n)++]);
    }
    if (rc != SQLITE_DONE) {
        fail(db, err, "list keys");
        sqlite3_finalize(st);
        bb_keys_db_keys_free(*v, *n);
        *v = NULL;
        *n = 0;
        return BB_KEYS_DB_ERROR;
    }
    sqlite3_finalize(st);
    return BB_KEYS_DB_OK;
}

/* Run fn inside BEGIN IMMEDIATE … COMMIT (rolled back on any failure). */
static int in_tx(struct bb_keys_db *db, const char *what, struct bb_err *err,
                 int (*fn)(struct bb_keys_db *db, void *arg, struct bb_err *err), void *arg)
{
    if (exec(db, "BEGIN IMMEDIATE", what, err) < 0)
        return BB_KEYS_DB_ERROR;
    int rc = fn(db, arg, err);
    if (rc != BB_KEYS_DB_OK) {
        rollback(db);
        return rc;
    }
    if (exec(db, "COMMIT", what, err) < 0) {
        rollback(db);
        return BB_KEYS_DB_ERROR;
    }
    return BB_KEYS_DB_OK;
}

struct update_arg {
    const char *id;
    const struct bb_keys_db_patch *p;
    int64_t now;
    bool revoke;
    struct bb_keys_db_key k;
};

static int update_tx(struct bb_keys_db *db, void *arg, struct bb_err *err)
{
    struct update_arg *a = arg;
    int rc = bb_keys_db_get(db, a->id, &a->k, err);
    if (rc != BB_KEYS_DB_OK)
        return rc;
    if (a->revoke) {
        if (a->k.revoked_at)
            return BB_KEYS_DB_OK; /* already revoked: keep the first time */
        a->k.revoked_at = a->now;
        a->k.updated_at = a->now;
        sqlite3_stmt *st;
        if (prepare(db, "UPDATE keys SET revoked_at = ?2, updated_at = ?2 WHERE id = ?1", &st,
                    err) < 0)
            return BB_KEYS_DB_ERROR;
        bind_text(st, 1, a->id);
        sqlite3_bind_int64(st, 2, a->now);
        rc = sqlite3_step(st);
        sqlite3_finalize(st);
        return rc == SQLITE_DONE ? BB_KEYS_DB_OK : fail(db, err, "revoke key");
    }
    if (a->k.revoked_at) {
        bb_err_set(err, "key %s is revoked", a->id);
        return BB_KEYS_DB_CONFLICT;
    }
    apply_patch(&a->k, a->p);
    a->k.updated_at = a->now;
    sqlite3_stmt *st;
    if (prepare(db,
                "UPDATE keys SET name = ?2, allowed_pools = ?3, budget_micros = ?4, period = ?5, "
                "rpm = ?6, tpm = ?7, max_parallel = ?8, expires_at = ?9, enabled = ?10, "
                "updated_at = ?11 WHERE id = ?1",
                &st, err) < 0)
        return BB_KEYS_DB_ERROR;
    bind_text(st, 1, a->id);
    bind_fields(st, &a->k);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? BB_KEYS_DB_OK : fail(db, err, "update key");
}

static int update_common(struct bb_keys_db *db, const char *id, const struct bb_keys_db_patch *p,
                         bool revoke, int64_t now, struct bb_keys_db_key *out, struct bb_err *err)
{
    struct update_arg a = {.id = id, .p = p, .now = now, .revoke = revoke};
    int rc = in_tx(db, revoke ? "revoke key" : "update key", err, update_tx, &a);
    if (rc == BB_KEYS_DB_OK && out)
        *out = a.k;
    else
        bb_keys_db_key_free(&a.k);
    return rc;
}

int bb_keys_db_update(struct bb_keys_db *db, const char *id, const struct bb_keys_db_patch *p,
                      int64_t now, struct bb_keys_db_key *out, struct bb_err *err)
{
    if (bb_keys_db_check_patch(p, false, err) < 0)
        return BB_KEYS_DB_ERROR;
    return update_common(db, id, p, false, now, out, err);
}

int bb_keys_db_revoke(struct bb_keys_db *db, const char *id, int64_t now,
                      struct bb_keys_db_key *out, struct bb_err *err)
{
    return update_common(db, id, NULL, true, now, out, err);
}

int bb_keys_db_delete(struct bb_keys_db *db, const char *id, struct bb_err *err)
{
    sqlite3_stmt *st;
    if (prepare(db, "DELETE FROM keys WHERE id = ?1", &st, err) < 0)
        return BB_KEYS_DB_ERROR;
    bind_text(st, 1, id);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return fail(db, err, "delete key");
    return sqlite3_changes(db->h) ? BB_KEYS_DB_OK : BB_KEYS_DB_NOT_FOUND;
}

/* ---- spend -------------------------------------------------------------------------------- */

int bb_keys_db_spend(struct bb_keys_db *db, enum bb_keys_db_by by, const char *key_id,
                     const char *since, const char *until, struct bb_keys_db_spend_row **rows,
                     size_t *n, struct bb_err *err)
{
    static const char *const group[] = {"r.key_id", "r.model", "r.pool", "r.day"};
    /* Days read oldest first; other groupings dearest first. */
    static const char *const order[] = {"cost DESC, 1", "cost DESC, 1", "cost DESC, 1", "1"};
    if ((unsigned)by > BB_KEYS_DB_BY_DAY)
        return bb_err_set(err, "unknown grouping");
    char sql[1024];
    snprintf(sql, sizeof sql,
             "SELECT %s, %s, SUM(r.requests), SUM(r.input_tokens), SUM(r.output_tokens), "
             "SUM(r.cache_read_tokens), SUM(r.cache_write_tokens), SUM(r.reasoning_tokens), "
             "SUM(r.cost_micros) AS cost FROM rollup_daily r %s "
             "WHERE (?1 IS NULL OR r.key_id = ?1) AND (?2 IS NULL OR r.day >= ?2) "
             "AND (?3 IS NULL OR r.day <= ?3) GROUP BY 1 ORDER BY %s",
             group[by], by == BB_KEYS_DB_BY_KEY ? "k.name" : "NULL",
             by == BB_KEYS_DB_BY_KEY ? "LEFT JOIN keys k ON k.id = r.key_id" : "", order[by]);
    sqlite3_stmt *st;
    if (prepare(db, sql, &st, err) < 0)
        return BB_KEYS_DB_ERROR;
    if (key_id)
        bind_text(st, 1, key_id);
    if (since)
        bind_text(st, 2, since);
    if (until)
        bind_text(st, 3, until);
    *rows = NULL;
    *n = 0;
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            *rows = bb_xrealloc(*rows, cap * sizeof **rows);
        }
        struct bb_keys_db_spend_row *r = &(*rows)[(*n)++];
        memset(r, 0, sizeof *r);
        const unsigned char *g = sqlite3_column_text(st, 0);
        r->group = bb_xstrdup(g ? (const char *)g : "");
        const unsigned char *nm = sqlite3_column_text(st, 1);
        r->name = nm ? bb_xstrdup((const char *)nm) : NULL;
        uint64_t *dst[] = {&r->requests,          &r->input_tokens,       &r->output_tokens,
                           &r->cache_read_tokens, &r->cache_write_tokens, &r->reasoning_tokens,
                           &r->cost_micros};
        for (int i = 0; i < 7; i++)
            *dst[i] = col_u64(st, 2 + i);
    }
    if (rc != SQLITE_DONE) {
        fail(db, err, "spend report");
        sqlite3_finalize(st);
        bb_keys_db_spend_free(*rows, *n);
        *rows = NULL;
        *n = 0;
        return BB_KEYS_DB_ERROR;
    }
    sqlite3_finalize(st);
    return BB_KEYS_DB_OK;
}

void bb_keys_db_spend_free(struct bb_keys_db_spend_row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(rows[i].group);
        free(rows[i].name);
    }
    free(rows);
}

int bb_keys_db_period_spent(struct bb_keys_db *db, const char *key_id, const char *since_day,
                            uint64_t *micros, struct bb_err *err)
{
    sqlite3_stmt *st = db->st_spent;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    bind_text(st, 1, key_id);
    if (since_day)
        bind_text(st, 2, since_day);
    if (sqlite3_step(st) != SQLITE_ROW) {
        fail(db, err, "read period spend");
        sqlite3_reset(st);
        return BB_KEYS_DB_ERROR;
    }
    *micros = col_u64(st, 0);
    sqlite3_reset(st);
    return BB_KEYS_DB_OK;
}

/* ---- ledger ------------------------------------------------------------------------------- */

/* One rollup group of a batch. */
struct agg {
    const struct bb_usage_rec *first; /* names come from here */
    char day[11];
    uint64_t requests, in, out, cr, cw, rs, cost;
    bool used;
};

static uint64_t agg_hash(const struct bb_usage_rec *r, const char *day)
{
    uint64_t h = bb_keys_pool_hash(r->key_id, strnlen(r->key_id, sizeof r->key_id));
    h ^= bb_keys_pool_hash(day, 10) * 31;
    h ^= bb_keys_pool_hash(r->pool, strnlen(r->pool, sizeof r->pool)) * 131;
    h ^= bb_keys_pool_hash(r->lane, strnlen(r->lane, sizeof r->lane)) * 1313;
    return h;
}

static bool agg_same(const struct agg *a, const struct bb_usage_rec *r, const char *day)
{
    return !strcmp(a->day, day) && !strncmp(a->first->key_id, r->key_id, sizeof r->key_id) &&
           !strncmp(a->first->pool, r->pool, sizeof r->pool) &&
           !strncmp(a->first->lane, r->lane, sizeof r->lane);
}

struct ledger_arg {
    const struct bb_usage_rec *v;
    size_t n, inserted;
    uint64_t batch_id, now_ms;
    struct agg *tab;
    size_t cap;
};

/* Bind a fixed-size record field as text (it may fill the field without a NUL). */
static void bind_field(sqlite3_stmt *st, int i, const char *s, size_t size)
{
    sqlite3_bind_text(st, i, s, (int)strnlen(s, size), SQLITE_STATIC);
}

/* Bind record r as the row starting at parameter base + 1. rid: its request id text. */
static void bind_row(sqlite3_stmt *st, int base, const struct bb_usage_rec *r, const char *rid)
{
    sqlite3_bind_int64(st, base + 1, clamp64(r->ts_ms));
    sqlite3_bind_text(st, base + 2, rid, -1, SQLITE_TRANSIENT);
    bind_field(st, base + 3, r->key_id, sizeof r->key_id);
    bind_field(st, base + 4, r->pool, sizeof r->pool);
    bind_field(st, base + 5, r->lane, sizeof r->lane);
    bind_field(st, base + 6, r->provider, sizeof r->provider);
    sqlite3_bind_text(st, base + 7, r->ingress < BB_PROTO__COUNT ? bb_proto_name(r->ingress) : "",
                      -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, base + 8, clamp64(r->input_tokens));
    sqlite3_bind_int64(st, base + 9, clamp64(r->output_tokens));
    sqlite3_bind_int64(st, base + 10, clamp64(r->cache_read_tokens));
    sqlite3_bind_int64(st, base + 11, clamp64(r->cache_write_tokens));
    sqlite3_bind_int64(st, base + 12, clamp64(r->reasoning_tokens));
    sqlite3_bind_int64(st, base + 13, clamp64(r->cost_micros));
    sqlite3_bind_int(st, base + 14, r->status);
    sqlite3_bind_int64(st, base + 15, r->latency_ms);
}

/* The request id text of r (a record without one gets a unique one). */
static void request_id_of(const struct bb_usage_rec *r, char *rid, size_t cap)
{
    if (r->request_id[0]) {
        snprintf(rid, cap, "%.*s", (int)sizeof r->request_id, r->request_id);
    } else {
        uint8_t b[12];
        random_bytes(b, sizeof b);
        memcpy(rid, "anon-", 5);
        hex(b, sizeof b, rid + 5);
    }
}

static int step_done(struct bb_keys_db *db, sqlite3_stmt *st, const char *what, struct bb_err *err)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        fail(db, err, what);
        return BB_KEYS_DB_ERROR;
    }
    return BB_KEYS_DB_OK;
}

static void aggregate(struct ledger_arg *a, const struct bb_usage_rec *r)
{
    char day[11];
    bb_keys_day_string((int64_t)(r->ts_ms / 1000), day);
    size_t h = (size_t)agg_hash(r, day) & (a->cap - 1);
    while (a->tab[h].used && !agg_same(&a->tab[h], r, day))
        h = (h + 1) & (a->cap - 1);
    struct agg *g = &a->tab[h];
    if (!g->used) {
        g->used = true;
        g->first = r;
        memcpy(g->day, day, sizeof day);
    }
    g->requests++;
    g->in += r->input_tokens;
    g->out += r->output_tokens;
    g->cr += r->cache_read_tokens;
    g->cw += r->cache_write_tokens;
    g->rs += r->reasoning_tokens;
    g->cost += r->cost_micros;
}

static int ledger_tx(struct bb_keys_db *db, void *arg, struct bb_err *err)
{
    struct ledger_arg *a = arg;
    /* A batch whose commit was not seen and is retried is already in: nothing to do. */
    sqlite3_bind_int64(db->st_batch, 1, (sqlite3_int64)(a->batch_id & INT64_MAX));
    sqlite3_bind_int64(db->st_batch, 2, clamp64(a->now_ms));
    if (step_done(db, db->st_batch, "write ledger batch", err) < 0)
        return BB_KEYS_DB_ERROR;
    if (sqlite3_changes(db->h) == 0)
        return BB_KEYS_DB_OK;
    char rid[BB_USAGE_REQID_SIZE + 8];
    size_t i = 0;
    for (; i + LEDGER_MULTI <= a->n; i += LEDGER_MULTI) {
        for (int k = 0; k < LEDGER_MULTI; k++) {
            request_id_of(&a->v[i + (size_t)k], rid, sizeof rid);
            bind_row(db->st_ledger_multi, k * LEDGER_COLS, &a->v[i + (size_t)k], rid);
        }
        if (step_done(db, db->st_ledger_multi, "write ledger", err) < 0)
            return BB_KEYS_DB_ERROR;
        /* The master shares CPUs with the workers (and, on a small box, with the upstream), and
         * the scheduler lets a running task finish its slice before a task it woke gets the CPU:
         * give way between chunks, so a request that wakes up mid-transaction waits for 16 rows
         * (tens of µs), not for the whole batch (a millisecond at 512 rows). Returns at once
         * when nothing else wants this CPU. */
        sched_yield();
    }
    for (; i < a->n; i++) {
        request_id_of(&a->v[i], rid, sizeof rid);
        bind_row(db->st_ledger, 0, &a->v[i], rid);
        if (step_done(db, db->st_ledger, "write ledger", err) < 0)
            return BB_KEYS_DB_ERROR;
    }
    for (i = 0; i < a->n; i++)
        aggregate(a, &a->v[i]);
    a->inserted = a->n;
    sqlite3_stmt *st = db->st_rollup;
    for (i = 0; i < a->cap; i++) {
        const struct agg *g = &a->tab[i];
        if (!g->used)
            continue;
        bind_field(st, 1, g->first->key_id, sizeof g->first->key_id);
        sqlite3_bind_text(st, 2, g->day, 10, SQLITE_STATIC);
        bind_field(st, 3, g->first->pool, sizeof g->first->pool);
        bind_field(st, 4, g->first->lane, sizeof g->first->lane);
        const uint64_t vals[] = {g->requests, g->in, g->out, g->cr, g->cw, g->rs, g->cost};
        for (int k = 0; k < 7; k++)
            sqlite3_bind_int64(st, 5 + k, clamp64(vals[k]));
        if (step_done(db, st, "update daily rollup", err) < 0)
            return BB_KEYS_DB_ERROR;
    }
    return BB_KEYS_DB_OK;
}

int bb_keys_db_ledger_insert(struct bb_keys_db *db, const struct bb_usage_rec *v, size_t n,
                             uint64_t batch_id, size_t *inserted, struct bb_err *err)
{
    if (inserted)
        *inserted = 0;
    if (n == 0)
        return BB_KEYS_DB_OK;
    struct ledger_arg a = {.v = v, .n = n, .batch_id = batch_id};
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    a.now_ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    a.cap = 16;
    while (a.cap < 2 * n)
        a.cap *= 2;
    a.tab = bb_xcalloc(a.cap, sizeof *a.tab);
    /* the hot transaction: prepared BEGIN / COMMIT */
    int rc = step_done(db, db->st_begin, "write ledger", err);
    if (rc == BB_KEYS_DB_OK) {
        rc = ledger_tx(db, &a, err);
        if (rc == BB_KEYS_DB_OK)
            rc = step_done(db, db->st_commit, "write ledger", err);
        if (rc != BB_KEYS_DB_OK)
            rollback(db);
    }
    free(a.tab);
    if (rc == BB_KEYS_DB_OK && inserted)
        *inserted = a.inserted;
    return rc;
}

int bb_keys_db_ledger_prune(struct bb_keys_db *db, uint64_t before_ms, size_t max_rows,
                            size_t *deleted, struct bb_err *err)
{
    *deleted = 0;
    /* Rows are appended in completion order, so ts grows with the rowid: binary-search the
     * first row at or after the cutoff by rowid (no index on ts), then delete below it. */
    sqlite3_stmt *st = NULL;
    if (prepare(db, "SELECT min(id), max(id) FROM ledger", &st, err) < 0)
        return BB_KEYS_DB_ERROR;
    int64_t lo = 0, hi = -1;
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) {
        lo = sqlite3_column_int64(st, 0);
        hi = sqlite3_column_int64(st, 1) + 1;
    }
    sqlite3_finalize(st);
    if (hi < 0)
        return BB_KEYS_DB_OK;
    if (prepare(db, "SELECT ts FROM ledger WHERE id >= ?1 ORDER BY id LIMIT 1", &st, err) < 0)
        return BB_KEYS_DB_ERROR;
    while (lo < hi) { /* first id whose ts >= before_ms */
        int64_t mid = lo + (hi - lo) / 2;
        sqlite3_bind_int64(st, 1, mid);
        bool old =
            sqlite3_step(st) == SQLITE_ROW && (uint64_t)sqlite3_column_int64(st, 0) < before_ms;
        sqlite3_reset(st);
        if (old)
            lo = mid + 1;
        else
            hi = mid;
    }
    sqlite3_finalize(st);
    if (prepare(db, "DELETE FROM ledger WHERE id < ?1 AND id >= ?1 - ?2", &st, err) < 0)
        return BB_KEYS_DB_ERROR;
    sqlite3_bind_int64(st, 1, lo);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)max_rows);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return fail(db, err, "prune the ledger");
    *deleted = (size_t)sqlite3_changes(db->h);
    /* and the batch ids older than a day (a retry comes seconds after its first try) */
    if (prepare(db, "DELETE FROM ledger_batches WHERE ts < ?1", &st, err) < 0)
        return BB_KEYS_DB_ERROR;
    sqlite3_bind_int64(st, 1, clamp64(before_ms > 86400000u ? before_ms - 86400000u : 0));
    sqlite3_step(st);
    sqlite3_finalize(st);
    return BB_KEYS_DB_OK;
}

int bb_keys_db_data_version(struct bb_keys_db *db, int64_t *v, struct bb_err *err)
{
    sqlite3_stmt *st;
    if (prepare(db, "PRAGMA data_version", &st, err) < 0)
        return BB_KEYS_DB_ERROR;
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(st);
        return fail(db, err, "read data_version");
    }
    *v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return BB_KEYS_DB_OK;
}

/* ---- cluster mode: a key as another node has it (master/cluster.c) ------------------------ */

int bb_keys_db_put(struct bb_keys_db *db, const struct bb_keys_db_key *k, struct bb_err *err)
{
    sqlite3_stmt *st;
    if (prepare(db,
                "INSERT INTO keys (id, name, allowed_pools, budget_micros, period, rpm, tpm, "
                "max_parallel, expires_at, enabled, updated_at, created_at, secret_sha256, "
                "aws_access_key_id, aws_secret, revoked_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, "
                "?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16) ON CONFLICT (id) DO UPDATE SET "
                "name = excluded.name, allowed_pools = excluded.allowed_pools, "
                "budget_micros = excluded.budget_micros, period = excluded.period, "
                "rpm = excluded.rpm, tpm = excluded.tpm, max_parallel = excluded.max_parallel, "
                "expires_at = excluded.expires_at, enabled = excluded.enabled, "
                "updated_at = excluded.updated_at, created_at = excluded.created_at, "
                "secret_sha256 = excluded.secret_sha256, "
                "aws_access_key_id = excluded.aws_access_key_id, "
                "aws_secret = excluded.aws_secret, revoked_at = excluded.revoked_at",
                &st, err) < 0)
        return BB_KEYS_DB_ERROR;
    bind_text(st, 1, k->id);
    bind_fields(st, k);
    sqlite3_bind_int64(st, 12, k->created_at);
    sqlite3_bind_blob(st, 13, k->secret_sha256, 32, SQLITE_TRANSIENT);
    if (k->aws_access_key_id[0]) {
        bind_text(st, 14, k->aws_access_key_id);
        bind_text(st, 15, k->aws_secret);
    }
    if (k->revoked_at)
        sqlite3_bind_int64(st, 16, k->revoked_at);
    int rc = sqlite3_step(st) == SQLITE_DONE ? BB_KEYS_DB_OK : fail(db, err, "store key");
    sqlite3_finalize(st);
    return rc;
}
