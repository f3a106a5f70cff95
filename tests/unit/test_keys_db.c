/*
 * test_keys_db: the SQLite governance store (master/keys_db.c) in a temp dir: migrations,
 * key create/list/update/revoke/delete, secrets never stored, batched ledger inserts that are
 * idempotent, rollups that equal the ledger, spend reports, period spend, and store errors
 * (a locked database, a read-only database, a database from a newer busbar). Also the key
 * publisher (master/keys_publish.c) against a shared-memory table, and the usage sink
 * (master/usage_sink.c) from a ring into the ledger, keeping a batch the store refused.
 */
#include <fcntl.h>
#include <ftw.h>
#include <stdbool.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "common/keys_shm.h"
#include "master/keys_db.h"
#include "master/keys_publish.h"
#include "master/usage_sink.h"

static char tmpdir[64];
static char dbpath[128];
static int seq;

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static int setup(void **state)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/bb-test-keysdb-XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(dbpath, sizeof dbpath, "%s/busbar.db", tmpdir);
    struct bb_err err = {{0}};
    struct bb_keys_db *db = bb_keys_db_open(dbpath, &err);
    if (!db) {
        fprintf(stderr, "# %s\n", err.msg);
        return -1;
    }
    *state = db;
    return 0;
}

static int teardown(void **state)
{
    bb_keys_db_close(*state);
    return nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A second, raw connection to the same file (what an operator's sqlite3 shell would be). */
static sqlite3 *raw(void)
{
    sqlite3 *h;
    assert_int_equal(sqlite3_open(dbpath, &h), SQLITE_OK);
    return h;
}

static int64_t raw_int(sqlite3 *h, const char *sql)
{
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static struct bb_keys_db_key create(struct bb_keys_db *db, const char *name, char *secret)
{
    struct bb_keys_db_patch p = {.name = name};
    struct bb_keys_db_key k;
    char s[BB_KEYS_DB_SECRET_SIZE];
    struct bb_err err = {{0}};
    if (bb_keys_db_create(db, &p, false, 1000, &k, secret ? secret : s, &err) != BB_KEYS_DB_OK)
        fail_msg("%s", err.msg);
    return k;
}

static void test_open_and_migrate(void **state)
{
    (void)state;
    struct stat st;
    assert_int_equal(stat(dbpath, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600); /* holds AWS secrets */
    sqlite3 *h = raw();
    assert_int_equal(raw_int(h, "PRAGMA user_version"), BB_KEYS_DB_SCHEMA_VERSION);
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(h, "PRAGMA journal_mode", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(s, 0), "wal");
    sqlite3_finalize(s);
    assert_int_equal(raw_int(h, "SELECT count(*) FROM sqlite_schema WHERE name IN ('keys', "
                                "'ledger', 'rollup_daily')"),
                     3);
    sqlite3_close(h);
    /* Reopening an up-to-date database changes nothing. */
    struct bb_err err = {{0}};
    struct bb_keys_db *again = bb_keys_db_open(dbpath, &err);
    assert_non_null(again);
    bb_keys_db_close(again);

    /* A version-1 database (UNIQUE request ids, a key/ts index) migrates with its rows. */
    char v1[160];
    snprintf(v1, sizeof v1, "%s/v1.db", tmpdir);
    again = bb_keys_db_open(v1, &err);
    assert_non_null(again);
    bb_keys_db_close(again);
    assert_int_equal(sqlite3_open(v1, &h), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(h,
                     "DROP TABLE ledger; DROP TABLE ledger_batches;"
                     "CREATE TABLE ledger (id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, "
                     "request_id TEXT NOT NULL UNIQUE, key_id TEXT NOT NULL DEFAULT '', "
                     "pool TEXT NOT NULL DEFAULT '', lane TEXT NOT NULL DEFAULT '', provider TEXT "
                     "NOT NULL DEFAULT '', ingress TEXT NOT NULL DEFAULT '', input_tokens INTEGER "
                     "NOT NULL DEFAULT 0, output_tokens INTEGER NOT NULL DEFAULT 0, "
                     "cache_read_tokens INTEGER NOT NULL DEFAULT 0, cache_write_tokens INTEGER "
                     "NOT NULL DEFAULT 0, reasoning_tokens INTEGER NOT NULL DEFAULT 0, "
                     "cost_micros INTEGER NOT NULL DEFAULT 0, status INTEGER NOT NULL, "
                     "latency_ms INTEGER NOT NULL);"
                     "CREATE INDEX ledger_key_ts ON ledger (key_id, ts);"
                     "INSERT INTO ledger (ts, request_id, key_id, cost_micros, status, latency_ms) "
                     "VALUES (1, 'r1', 'vk_a', 5, 200, 3), (2, 'r2', 'vk_b', 7, 200, 4);"
                     "PRAGMA user_version = 1;",
                     NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(h);
    again = bb_keys_db_open(v1, &err);
    assert_non_null(again);
    bb_keys_db_close(again);
    assert_int_equal(sqlite3_open(v1, &h), SQLITE_OK);
    assert_int_equal(raw_int(h, "PRAGMA user_version"), 2);
    assert_int_equal(raw_int(h, "SELECT sum(cost_micros) FROM ledger"), 12);
    assert_int_equal(raw_int(h, "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND "
                                "tbl_name = 'ledger'"),
                     0);
    sqlite3_close(h);

    /* A database from a newer busbar is refused, naming the file. */
    char newer[160];
    snprintf(newer, sizeof newer, "%s/newer.db", tmpdir);
    assert_int_equal(sqlite3_open(newer, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h);
    assert_null(bb_keys_db_open(newer, &err));
    assert_non_null(strstr(err.msg, newer));
    assert_non_null(strstr(err.msg, "schema version 99 is newer"));
    /* Somebody else's database is not migrated. */
    char other[160];
    snprintf(other, sizeof other, "%s/other.db", tmpdir);
    assert_int_equal(sqlite3_open(other, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h, "CREATE TABLE t (x)", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h);
    assert_null(bb_keys_db_open(other, &err));
    assert_non_null(strstr(err.msg, "not a busbar database"));
    /* Not a database at all. */
    char junk[160];
    snprintf(junk, sizeof junk, "%s/junk.db", tmpdir);
    FILE *f = fopen(junk, "w");
    fputs("this is not sqlite, not even close; padding padding padding padding padding\n", f);
    fclose(f);
    assert_null(bb_keys_db_open(junk, &err));
    assert_non_null(strstr(err.msg, junk));
}

static bool all_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return s[n] == '\0';
}

static void test_create_and_secrets(void **state)
{
    struct bb_keys_db *db = *state;
    char secret[BB_KEYS_DB_SECRET_SIZE];
    char *pools[] = {"fast", "cheap"};
    struct bb_keys_db_patch p = {.name = "team a",
                                 .set_pools = true,
                                 .pools = pools,
                                 .n_pools = 2,
                                 .set_budget = true,
                                 .has_budget = true,
                                 .budget_micros = 25000000,
                                 .set_period = true,
                                 .period = BB_KEYS_PERIOD_MONTHLY,
                                 .set_rpm = true,
                                 .rpm = 60,
                                 .set_parallel = true,
                                 .max_parallel = 4,
                                 .set_expires = true,
                                 .expires_at = 2000000000};
    struct bb_keys_db_key k;
    struct bb_err err = {{0}};
    assert_int_equal(bb_keys_db_create(db, &p, true, 1700000000, &k, secret, &err), BB_KEYS_DB_OK);
    assert_int_equal(strlen(secret), 38);
    assert_memory_equal(secret, "sk-bb-", 6);
    assert_true(all_hex(secret + 6, 32));
    assert_int_equal(strlen(k.id), 19);
    assert_memory_equal(k.id, "vk_", 3);
    assert_true(all_hex(k.id + 3, 16));
    uint8_t sha[32];
    bb_keys_hash_secret(secret, strlen(secret), sha);
    assert_memory_equal(k.secret_sha256, sha, 32);
    assert_int_equal(strlen(k.aws_access_key_id), 20);
    assert_memory_equal(k.aws_access_key_id, "AKIA", 4);
    assert_int_equal(strlen(k.aws_secret), 40);

    struct bb_keys_db_key g;
    assert_int_equal(bb_keys_db_get(db, k.id, &g, &err), BB_KEYS_DB_OK);
    assert_string_equal(g.name, "team a");
    assert_int_equal(g.n_pools, 2);
    assert_string_equal(g.pools[1], "cheap");
    assert_true(g.has_budget);
    assert_int_equal(g.budget_micros, 25000000);
    assert_int_equal(g.period, BB_KEYS_PERIOD_MONTHLY);
    assert_int_equal(g.rpm, 60);
    assert_int_equal(g.tpm, 0);
    assert_int_equal(g.max_parallel, 4);
    assert_int_equal(g.expires_at, 2000000000);
    assert_true(g.enabled);
    assert_int_equal(g.created_at, 1700000000);
    assert_int_equal(g.revoked_at, 0);
    assert_string_equal(g.aws_secret, k.aws_secret);
    bb_keys_db_key_free(&g);

    /* The secret itself is nowhere in the database files. */
    sqlite3 *h = raw();
    sqlite3_exec(h, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
    sqlite3_close(h);
    const char *files[] = {"", "-wal"};
    bool seen_id = false;
    for (int i = 0; i < 2; i++) {
        char path[160];
        snprintf(path, sizeof path, "%s%s", dbpath, files[i]);
        FILE *f = fopen(path, "rb");
        if (!f)
            continue;
        static char buf[1 << 20];
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        assert_null(memmem(buf, n, secret + 6, 32));
        seen_id |= memmem(buf, n, k.id, strlen(k.id)) != NULL;
    }
    assert_true(seen_id); /* the row itself was in what we read */
    bb_keys_db_key_free(&k);

    assert_int_equal(bb_keys_db_get(db, "vk_0000000000000000", &g, &err), BB_KEYS_DB_NOT_FOUND);
}

static void test_validation(void **state)
{
    struct bb_keys_db *db = *state;
    struct bb_err err = {{0}};
    struct bb_keys_db_key k;
    char s[BB_KEYS_DB_SECRET_SIZE];
    struct bb_keys_db_patch p = {0};
    assert_int_equal(bb_keys_db_create(db, &p, false, 1, &k, s, &err), BB_KEYS_DB_ERROR);
    assert_string_equal(err.msg, "name is required");
    p.name = "bad\nname";
    assert_int_equal(bb_keys_db_check_patch(&p, true, &err), -1);
    p.name = "ok";
    char *pools[17];
    for (int i = 0; i < 17; i++)
        pools[i] = "p";
    p.set_pools = true;
    p.pools = pools;
    p.n_pools = 17;
    assert_int_equal(bb_keys_db_check_patch(&p, true, &err), -1);
    assert_non_null(strstr(err.msg, "at most 16 pools"));
    p.n_pools = 2;
    assert_int_equal(bb_keys_db_check_patch(&p, true, &err), -1);
    assert_non_null(strstr(err.msg, "listed twice"));
    char *spaced[] = {"a b"};
    p.pools = spaced;
    p.n_pools = 1;
    assert_int_equal(bb_keys_db_check_patch(&p, true, &err), -1);
    p.set_pools = false;
    p.set_period = true;
    p.period = 7;
    assert_int_equal(bb_keys_db_check_patch(&p, true, &err), -1);
}

static void test_update_revoke_delete(void **state)
{
    struct bb_keys_db *db = *state;
    struct bb_err err = {{0}};
    struct bb_keys_db_key a = create(db, "a", NULL), b = create(db, "b", NULL), k;

    struct bb_keys_db_patch p = {
        .set_rpm = true, .rpm = 5, .set_budget = true, .has_budget = true, .budget_micros = 7};
    assert_int_equal(bb_keys_db_update(db, a.id, &p, 2000, &k, &err), BB_KEYS_DB_OK);
    assert_int_equal(k.rpm, 5);
    assert_int_equal(k.budget_micros, 7);
    assert_int_equal(k.updated_at, 2000);
    assert_string_equal(k.name, "a"); /* untouched fields stay */
    bb_keys_db_key_free(&k);
    p = (struct bb_keys_db_patch){.set_rpm = true,
                                  .rpm = 0,
                                  .set_budget = true,
                                  .has_budget = false,
                                  .name = "renamed",
                                  .set_enabled = true,
                                  .enabled = false};
    assert_int_equal(bb_keys_db_update(db, a.id, &p, 2001, &k, &err), BB_KEYS_DB_OK);
    assert_int_equal(k.rpm, 0);
    assert_false(k.has_budget);
    assert_false(k.enabled);
    assert_string_equal(k.name, "renamed");
    bb_keys_db_key_free(&k);
    assert_int_equal(bb_keys_db_update(db, "vk_nope", &p, 1, NULL, &err), BB_KEYS_DB_NOT_FOUND);

    assert_int_equal(bb_keys_db_revoke(db, a.id, 3000, &k, &err), BB_KEYS_DB_OK);
    assert_int_equal(k.revoked_at, 3000);
    bb_keys_db_key_free(&k);
    assert_int_equal(bb_keys_db_revoke(db, a.id, 4000, &k, &err), BB_KEYS_DB_OK);
    assert_int_equal(k.revoked_at, 3000); /* the first revocation stands */
    bb_keys_db_key_free(&k);
    assert_int_equal(bb_keys_db_update(db, a.id, &p, 5000, NULL, &err), BB_KEYS_DB_CONFLICT);
    assert_non_null(strstr(err.msg, "revoked"));

    struct bb_keys_db_key *v;
    size_t n;
    assert_int_equal(bb_keys_db_list(db, false, &v, &n, &err), BB_KEYS_DB_OK);
    assert_int_equal(n, 2);
    bb_keys_db_keys_free(v, n);
    assert_int_equal(bb_keys_db_list(db, true, &v, &n, &err), BB_KEYS_DB_OK);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].id, b.id);
    bb_keys_db_keys_free(v, n);

    assert_int_equal(bb_keys_db_delete(db, a.id, &err), BB_KEYS_DB_OK);
    assert_int_equal(bb_keys_db_delete(db, a.id, &err), BB_KEYS_DB_NOT_FOUND);
    assert_int_equal(bb_keys_db_get(db, a.id, &k, &err), BB_KEYS_DB_NOT_FOUND);
    bb_keys_db_key_free(&a);
    bb_keys_db_key_free(&b);
}

static struct bb_usage_rec rec(const char *key, const char *pool, const char *lane, uint64_t ts,
                               uint64_t in, uint64_t out, uint64_t cost)
{
    struct bb_usage_rec r;
    memset(&r, 0, sizeof r);
    snprintf(r.request_id, sizeof r.request_id, "req-%d", ++seq);
    bb_usage_set_str(r.key_id, sizeof r.key_id, key);
    bb_usage_set_str(r.pool, sizeof r.pool, pool);
    bb_usage_set_str(r.lane, sizeof r.lane, lane);
    bb_usage_set_str(r.provider, sizeof r.provider, "mock");
    r.ts_ms = ts;
    r.input_tokens = in;
    r.output_tokens = out;
    r.cache_read_tokens = in / 10;
    r.cache_write_tokens = in / 20;
    r.reasoning_tokens = out / 4;
    r.cost_micros = cost;
    r.status = 200;
    r.latency_ms = 42;
    r.ingress = 2; /* anthropic */
    return r;
}

#define D1 1772323200000ull /* 2026-03-01 */
#define D2 (D1 + 86400000ull)
#define D3 (D2 + 86400000ull)

/* The rollups must equal the ledger summed by the same groups. */
static void check_rollups_equal_ledger(sqlite3 *h)
{
    static const char *const q[] = {
        "SELECT count(*) FROM ("
        " SELECT key_id, strftime('%Y-%m-%d', ts / 1000, 'unixepoch') AS day, pool, lane,"
        "  count(*) AS n, sum(input_tokens) AS i, sum(output_tokens) AS o,"
        "  sum(cache_read_tokens) AS cr, sum(cache_write_tokens) AS cw,"
        "  sum(reasoning_tokens) AS rs, sum(cost_micros) AS c"
        " FROM ledger GROUP BY 1, 2, 3, 4"
        " EXCEPT SELECT key_id, day, pool, model, requests, input_tokens, output_tokens,"
        "  cache_read_tokens, cache_write_tokens, reasoning_tokens, cost_micros FROM rollup_daily)",
        "SELECT count(*) FROM ("
        " SELECT key_id, day, pool, model, requests, input_tokens, output_tokens,"
        "  cache_read_tokens, cache_write_tokens, reasoning_tokens, cost_micros FROM rollup_daily"
        " EXCEPT SELECT key_id, strftime('%Y-%m-%d', ts / 1000, 'unixepoch'), pool, lane,"
        "  count(*), sum(input_tokens), sum(output_tokens), sum(cache_read_tokens),"
        "  sum(cache_write_tokens), sum(reasoning_tokens), sum(cost_micros)"
        " FROM ledger GROUP BY 1, 2, 3, 4)",
    };
    for (int i = 0; i < 2; i++)
        assert_int_equal(raw_int(h, q[i]), 0);
}

static void test_ledger_and_rollups(void **state)
{
    struct bb_keys_db *db = *state;
    struct bb_err err = {{0}};
    static struct bb_usage_rec v[3000];
    const char *keys[] = {"vk_aaaaaaaaaaaaaaaa", "vk_bbbbbbbbbbbbbbbb", ""};
    const char *pools[] = {"fast", "cheap", ""};
    const char *lanes[] = {"claude", "gpt4o", "gemini", "local"};
    const uint64_t days[] = {D1, D2, D3};
    uint64_t want_cost = 0;
    for (int i = 0; i < 3000; i++) {
        v[i] = rec(keys[i % 3], pools[i % 3], lanes[i % 4], days[i % 3] + (uint64_t)i * 1000,
                   (uint64_t)(i % 97) * 10, (uint64_t)(i % 13) * 7, (uint64_t)i * 11 + 1);
        want_cost += (uint64_t)i * 11 + 1;
    }
    size_t ins;
    /* In batches of different sizes, like the usage sink would. */
    assert_int_equal(bb_keys_db_ledger_insert(db, v, 1000, 11, &ins, &err), BB_KEYS_DB_OK);
    assert_int_equal(ins, 1000);
    assert_int_equal(bb_keys_db_ledger_insert(db, v + 1000, 2000, 12, &ins, &err), BB_KEYS_DB_OK);
    assert_int_equal(ins, 2000);
    /* A retried batch (e.g. after a commit whose success was not seen) never bills twice. */
    assert_int_equal(bb_keys_db_ledger_insert(db, v + 1000, 2000, 12, &ins, &err), BB_KEYS_DB_OK);
    assert_int_equal(ins, 0);
    sqlite3 *h = raw();
    assert_int_equal(raw_int(h, "SELECT count(*) FROM ledger"), 3000);
    assert_int_equal(raw_int(h, "SELECT sum(cost_micros) FROM rollup_daily"), (int64_t)want_cost);
    assert_int_equal(raw_int(h, "SELECT count(*) FROM ledger WHERE ingress = 'anthropic'"), 3000);
    check_rollups_equal_ledger(h);

    /* Spend reports (from the rollups) agree with the ledger. */
    struct bb_keys_db_spend_row *rows;
    size_t n;
    assert_int_equal(bb_keys_db_spend(db, BB_KEYS_DB_BY_KEY, NULL, NULL, NULL, &rows, &n, &err),
                     BB_KEYS_DB_OK);
    assert_int_equal(n, 3);
    uint64_t sum = 0, reqs = 0;
    for (size_t i = 0; i < n; i++) {
        char sql[256];
        snprintf(sql, sizeof sql, "SELECT sum(cost_micros) FROM ledger WHERE key_id = '%s'",
                 rows[i].group);
        assert_int_equal(rows[i].cost_micros, raw_int(h, sql));
        sum += rows[i].cost_micros;
        reqs += rows[i].requests;
        if (i)
            assert_true(rows[i - 1].cost_micros >= rows[i].cost_micros); /* dearest first */
    }
    assert_int_equal(sum, want_cost);
    assert_int_equal(reqs, 3000);
    bb_keys_db_spend_free(rows, n);

    assert_int_equal(bb_keys_db_spend(db, BB_KEYS_DB_BY_DAY, keys[0], "2026-03-02", "2026-03-03",
                                      &rows, &n, &err),
                     BB_KEYS_DB_OK);
    /* key 0 is only ever on day index i%3 == 0 → D1: nothing on D2/D3. */
    assert_int_equal(n, 0);
    bb_keys_db_spend_free(rows, n);
    assert_int_equal(
        bb_keys_db_spend(db, BB_KEYS_DB_BY_DAY, NULL, "2026-03-02", NULL, &rows, &n, &err),
        BB_KEYS_DB_OK);
    assert_int_equal(n, 2);
    assert_string_equal(rows[0].group, "2026-03-02"); /* days oldest first */
    assert_string_equal(rows[1].group, "2026-03-03");
    assert_int_equal(rows[0].cost_micros,
                     raw_int(h, "SELECT sum(cost_micros) FROM ledger WHERE ts >= 1772409600000 "
                                "AND ts < 1772496000000"));
    bb_keys_db_spend_free(rows, n);
    assert_int_equal(bb_keys_db_spend(db, BB_KEYS_DB_BY_MODEL, NULL, NULL, NULL, &rows, &n, &err),
                     BB_KEYS_DB_OK);
    assert_int_equal(n, 4);
    bb_keys_db_spend_free(rows, n);
    assert_int_equal(bb_keys_db_spend(db, BB_KEYS_DB_BY_POOL, NULL, NULL, NULL, &rows, &n, &err),
                     BB_KEYS_DB_OK);
    assert_int_equal(n, 3);
    bb_keys_db_spend_free(rows, n);

    uint64_t spent;
    assert_int_equal(bb_keys_db_period_spent(db, keys[1], NULL, &spent, &err), BB_KEYS_DB_OK);
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT sum(cost_micros) FROM ledger WHERE key_id = '%s'", keys[1]);
    assert_int_equal(spent, raw_int(h, sql));
    assert_int_equal(bb_keys_db_period_spent(db, keys[1], "2026-03-03", &spent, &err),
                     BB_KEYS_DB_OK);
    assert_int_equal(spent, 0); /* key 1 is only on D2 */
    assert_int_equal(bb_keys_db_period_spent(db, "vk_none", NULL, &spent, &err), BB_KEYS_DB_OK);
    assert_int_equal(spent, 0);

    /* A record without a request id is still written (with a made-up unique id). */
    struct bb_usage_rec anon[2] = {rec("", "", "x", D1, 1, 1, 5), rec("", "", "x", D1, 1, 1, 5)};
    anon[0].request_id[0] = anon[1].request_id[0] = '\0';
    assert_int_equal(bb_keys_db_ledger_insert(db, anon, 2, 13, &ins, &err), BB_KEYS_DB_OK);
    assert_int_equal(ins, 2);
    check_rollups_equal_ledger(h);
    sqlite3_close(h);
}

/* Retention: rows before the cutoff go (oldest first, bounded per call), rollups stay. */
static void test_ledger_retention(void **state)
{
    struct bb_keys_db *db = *state;
    struct bb_err err = {{0}};
    static struct bb_usage_rec v[1000];
    for (int i = 0; i < 1000; i++)
        v[i] = rec("vk_ret", "p", "l", D1 + (uint64_t)i * 1000, 1, 1, 7);
    size_t ins, del;
    assert_int_equal(bb_keys_db_ledger_insert(db, v, 1000, 41, &ins, &err), BB_KEYS_DB_OK);
    sqlite3 *h = raw();
    int64_t before = raw_int(h, "SELECT count(*) FROM ledger");
    /* cutoff after row 600: 600 rows are older; at most 250 per call */
    uint64_t cut = D1 + 600u * 1000u;
    assert_int_equal(bb_keys_db_ledger_prune(db, cut, 250, &del, &err), BB_KEYS_DB_OK);
    assert_int_equal(del, 250);
    assert_int_equal(bb_keys_db_ledger_prune(db, cut, 250, &del, &err), BB_KEYS_DB_OK);
    assert_int_equal(del, 250);
    assert_int_equal(bb_keys_db_ledger_prune(db, cut, 250, &del, &err), BB_KEYS_DB_OK);
    assert_int_equal(del, 100);
    assert_int_equal(bb_keys_db_ledger_prune(db, cut, 250, &del, &err), BB_KEYS_DB_OK);
    assert_int_equal(del, 0);
    assert_int_equal(raw_int(h, "SELECT count(*) FROM ledger"), before - 600);
    assert_int_equal(raw_int(h, "SELECT count(*) FROM ledger WHERE key_id = 'vk_ret' AND ts < "
                                "1772323200000 + 600000"),
                     0);
    /* the rollups still hold every request */
    assert_int_equal(raw_int(h, "SELECT sum(requests) FROM rollup_daily WHERE key_id = 'vk_ret'"),
                     1000);
    sqlite3_close(h);
}

static void test_locked_database(void **state)
{
    struct bb_keys_db *db = *state;
    struct bb_err err = {{0}};
    sqlite3 *h = raw();
    /* Another process holds the write lock longer than our busy timeout. */
    assert_int_equal(sqlite3_exec(h, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    struct bb_usage_rec r = rec("vk_lock", "p", "l", D1, 1, 1, 9);
    size_t ins = 99;
    assert_int_equal(bb_keys_db_ledger_insert(db, &r, 1, 21, &ins, &err), BB_KEYS_DB_ERROR);
    assert_non_null(strstr(err.msg, dbpath));
    assert_non_null(strstr(err.msg, "locked"));
    assert_int_equal(bb_keys_db_last_code(db), SQLITE_BUSY);
    assert_int_equal(ins, 0);
    struct bb_keys_db_patch p = {.name = "x"};
    struct bb_keys_db_key k;
    char s[BB_KEYS_DB_SECRET_SIZE];
    assert_int_equal(bb_keys_db_create(db, &p, false, 1, &k, s, &err), BB_KEYS_DB_ERROR);
    assert_non_null(strstr(err.msg, "create key"));
    /* Reads still work under WAL. */
    struct bb_keys_db_key *v;
    size_t n;
    assert_int_equal(bb_keys_db_list(db, false, &v, &n, &err), BB_KEYS_DB_OK);
    bb_keys_db_keys_free(v, n);
    /* Once the lock is gone the same batch goes in, once. */
    assert_int_equal(sqlite3_exec(h, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(bb_keys_db_ledger_insert(db, &r, 1, 21, &ins, &err), BB_KEYS_DB_OK);
    assert_int_equal(ins, 1);
    assert_int_equal(raw_int(h, "SELECT count(*) FROM ledger WHERE key_id = 'vk_lock'"), 1);
    sqlite3_close(h);
}

/* Opening a database the process may not write is an error naming the file. As root file
 * modes do not apply, so the check runs in a child that dropped to nobody. */
static void test_readonly_database(void **state)
{
    (void)state;
    char path[160];
    snprintf(path, sizeof path, "%s/ro.db", tmpdir);
    struct bb_err err = {{0}};
    struct bb_keys_db *db = bb_keys_db_open(path, &err);
    assert_non_null(db);
    bb_keys_db_close(db);
    assert_int_equal(chmod(path, 0444), 0);
    assert_int_equal(chmod(tmpdir, 0755), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (geteuid() == 0 && (setgid(65534) < 0 || setuid(65534) < 0))
            _exit(3);
        struct bb_err e = {{0}};
        struct bb_keys_db *x = bb_keys_db_open(path, &e);
        if (x)
            _exit(1);
        fprintf(stderr, "# %s\n", e.msg);
        _exit(strstr(e.msg, path) && (strstr(e.msg, "read-only") || strstr(e.msg, "readonly")) ? 0
                                                                                               : 2);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    chmod(tmpdir, 0700);
}

/* The publisher: SQLite → shared memory, with period spend loaded from the rollups. */
static void test_publish(void **state)
{
    struct bb_keys_db *db = *state;
    struct bb_keys_table *t = bb_keys_table_create();
    assert_non_null(t);
    struct bb_err err = {{0}};
    char s1[BB_KEYS_DB_SECRET_SIZE], s2[BB_KEYS_DB_SECRET_SIZE];
    struct bb_keys_db_key a = create(db, "a", s1), b = create(db, "b", s2), k;
    struct bb_keys_db_patch p = {.set_budget = true,
                                 .has_budget = true,
                                 .budget_micros = 1000,
                                 .set_period = true,
                                 .period = BB_KEYS_PERIOD_DAILY};
    assert_int_equal(bb_keys_db_update(db, a.id, &p, 1, &k, &err), BB_KEYS_DB_OK);
    bb_keys_db_key_free(&k);
    /* a spent 300 today and 500 yesterday. */
    struct bb_usage_rec u[2] = {rec(a.id, "p", "l", D2 + 5000, 1, 1, 300),
                                rec(a.id, "p", "l", D1 + 5000, 1, 1, 500)};
    assert_int_equal(bb_keys_db_ledger_insert(db, u, 2, 31, NULL, &err), BB_KEYS_DB_OK);

    unsigned changed;
    assert_int_equal(bb_keys_publish_all(db, t, D2 + 10000, &changed, &err), 0);
    assert_int_equal(changed, 2);
    struct bb_keys_ref r;
    assert_int_equal(bb_keys_lookup(t, s1, strlen(s1), &r), 0);
    assert_string_equal(r.lim.id, a.id);
    assert_int_equal(r.lim.budget_micros, 1000);
    struct bb_keys_usage use;
    bb_keys_usage(t, bb_keys_find(t, a.secret_sha256), D2 + 10000, &use);
    assert_int_equal(use.spent_micros, 300); /* today's only */
    struct bb_keys_resv res;
    uint32_t retry;
    assert_int_equal(bb_keys_admit(&r, NULL, 0, 0, 701, D2 + 10000, &res, &retry),
                     BB_KEYS_BUDGET_EXCEEDED);
    assert_int_equal(bb_keys_publish_all(db, t, D2 + 10000, &changed, &err), 0);
    assert_int_equal(changed, 0); /* nothing changed */

    /* Revoked or deleted in the store: unpublished by the next full publish. */
    assert_int_equal(bb_keys_db_revoke(db, a.id, 2, NULL, &err), BB_KEYS_DB_OK);
    assert_int_equal(bb_keys_db_delete(db, b.id, &err), BB_KEYS_DB_OK);
    assert_int_equal(bb_keys_publish_all(db, t, D2 + 20000, &changed, &err), 0);
    assert_int_equal(changed, 2);
    assert_int_equal(bb_keys_lookup(t, s1, strlen(s1), &r), -1);
    assert_int_equal(bb_keys_lookup(t, s2, strlen(s2), &r), -1);
    assert_int_equal(atomic_load(&t->n_live), 0);

    /* An external edit shows in PRAGMA data_version. */
    int64_t v1, v2;
    assert_int_equal(bb_keys_db_data_version(db, &v1, &err), 0);
    sqlite3 *h = raw();
    assert_int_equal(sqlite3_exec(h, "UPDATE keys SET rpm = 7", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h);
    assert_int_equal(bb_keys_db_data_version(db, &v2, &err), 0);
    assert_true(v1 != v2);
    bb_keys_db_key_free(&a);
    bb_keys_db_key_free(&b);
    bb_keys_table_destroy(t);
}

static void test_usage_sink(void **state)
{
    struct bb_keys_db *db = *state;
    struct bb_ring *r = bb_ring_create();
    assert_non_null(r);
    struct bb_usage_sink sink;
    bb_usage_sink_init(&sink);
    struct bb_err err = {{0}};
    for (int i = 0; i < 8000; i++) {
        struct bb_usage_rec u = rec("vk_sink", "p", "l", D1 + (uint64_t)i, 10, 5, 3);
        assert_true(bb_ring_push(r, &u));
    }
    /* A periodic drain writes everything here (two batches) in one call. */
    assert_int_equal(bb_usage_sink_drain(&sink, r, db, 8000, 1, &err), 8000);
    assert_int_equal(sink.written, 8000);
    sqlite3 *h = raw();
    assert_int_equal(raw_int(h, "SELECT count(*) FROM ledger WHERE key_id = 'vk_sink'"), 8000);
    assert_int_equal(raw_int(h, "SELECT sum(cost_micros) FROM rollup_daily WHERE key_id = "
                                "'vk_sink'"),
                     24000);

    /* The store is locked: the batch stays held, nothing is lost, and it goes in later. */
    assert_int_equal(sqlite3_exec(h, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    for (int i = 0; i < 100; i++) {
        struct bb_usage_rec u = rec("vk_sink", "p", "l", D2, 1, 1, 1);
        assert_true(bb_ring_push(r, &u));
    }
    assert_int_equal(bb_usage_sink_drain(&sink, r, db, 8000, 2, &err), -1);
    assert_non_null(strstr(err.msg, "locked"));
    assert_int_equal(sink.n, 100);
    assert_int_equal(sink.failures, 1);
    assert_int_equal(sqlite3_exec(h, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    struct bb_usage_rec u = rec("vk_sink", "p", "l", D2, 1, 1, 1);
    assert_true(bb_ring_push(r, &u));
    assert_int_equal(bb_usage_sink_drain(&sink, r, db, 0, 3, &err), 101);
    assert_int_equal(sink.n, 0);
    assert_int_equal(raw_int(h, "SELECT count(*) FROM ledger WHERE key_id = 'vk_sink'"), 8101);
    check_rollups_equal_ledger(h);
    /* Nothing pending: nothing to do. No store: popped records are discarded and counted. */
    assert_int_equal(bb_usage_sink_drain(&sink, r, db, 0, 4, &err), 0);
    assert_true(bb_ring_push(r, &u));
    assert_int_equal(bb_usage_sink_drain(&sink, r, NULL, 0, 5, &err), 1);
    assert_int_equal(sink.discarded, 1);
    /* A bounded drain writes at most its bound (the master's short transactions). */
    for (int i = 0; i < 300; i++) {
        struct bb_usage_rec b = rec("vk_sink", "p", "l", D2 + 1000 + (uint64_t)i, 1, 1, 1);
        assert_true(bb_ring_push(r, &b));
    }
    assert_int_equal(bb_usage_sink_drain(&sink, r, db, 128, 6, &err), 128);
    assert_int_equal(bb_ring_pending(r), 172);
    assert_int_equal(bb_usage_sink_drain(&sink, r, db, 0, 7, &err), 172);
    sqlite3_close(h);
    bb_usage_sink_free(&sink);
    bb_ring_destroy(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_and_migrate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_and_secrets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_validation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_update_revoke_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ledger_and_rollups, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ledger_retention, setup, teardown),
        cmocka_unit_test_setup_teardown(test_locked_database, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readonly_database, setup, teardown),
        cmocka_unit_test_setup_teardown(test_publish, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_sink, setup, teardown),
    };
    return cmocka_run_group_tests_name("keys_db", tests, NULL, NULL);
}
