/*
 * governance: microbenchmarks of the governance path (SPEC §6, §10).
 *   1. ledger: usage records → SQLite (master/keys_db) in batched transactions, the way the
 *      usage sink writes them: one transaction per BATCH records, ledger rows + rollup
 *      upserts. Target ≥ 50,000 rows/s. Records spread over 200 keys × 4 pools × 8 models.
 *   2. check: the worker's governance check on shared memory — lookup by secret (SHA-256 +
 *      constant-time compare) + admit (pool, RPM/TPM windows, budget CAS) + settle. Target
 *      ≤ 2 µs.
 * Run: build-release/bench/bb-gov-bench [rows] [batch]. Uses a temp directory.
 */
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/keys_shm.h"
#include "common/ring.h"
#include "master/keys_db.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int bench_ledger(size_t rows, size_t batch)
{
    char dir[] = "/tmp/bb-gov-bench-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    char path[64];
    snprintf(path, sizeof path, "%s/busbar.db", dir);
    struct bb_err err = {{0}};
    struct bb_keys_db *db = bb_keys_db_open(path, &err);
    if (!db) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    struct bb_usage_rec *v = calloc(batch, sizeof *v);
    static const char *pools[] = {"fast", "cheap", "smart", "batch"};
    static const char *models[] = {"claude",  "gpt4o",  "gemini",   "llama",
                                   "mistral", "cohere", "deepseek", "grok"};
    uint64_t ts = 1772323200000ull;
    size_t done = 0, n_id = 0;
    double t0 = now_s();
    while (done < rows) {
        size_t n = rows - done < batch ? rows - done : batch;
        for (size_t i = 0; i < n; i++, n_id++) {
            struct bb_usage_rec *r = &v[i];
            memset(r, 0, sizeof *r);
            snprintf(r->request_id, sizeof r->request_id, "bb-%x-%zx", 4242u, n_id);
            snprintf(r->key_id, sizeof r->key_id, "vk_%016zx", n_id % 200);
            bb_usage_set_str(r->pool, sizeof r->pool, pools[n_id % 4]);
            bb_usage_set_str(r->lane, sizeof r->lane, models[n_id % 8]);
            bb_usage_set_str(r->provider, sizeof r->provider, "anthropic");
            r->ts_ms = ts + n_id * 3; /* spans several UTC days over a large run */
            r->input_tokens = 500 + n_id % 1000;
            r->output_tokens = 200 + n_id % 300;
            r->cache_read_tokens = n_id % 50;
            r->cost_micros = 1234 + n_id % 777;
            r->status = 200;
            r->latency_ms = 300;
        }
        size_t ins;
        if (bb_keys_db_ledger_insert(db, v, n, done + 1, &ins, &err) < 0) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        done += n;
    }
    double dt = now_s() - t0;
    printf("ledger: %zu rows in batches of %zu: %.3f s = %.0f rows/s (target >= 50000)\n", rows,
           batch, dt, (double)rows / dt);
    free(v);
    bb_keys_db_close(db); /* checkpoints the WAL into the file */
    struct stat st;
    if (stat(path, &st) == 0)
        printf("ledger: database %.1f MiB after %zu rows = %.0f bytes a row, %.0f MiB per "
               "million requests (rollups included)\n",
               (double)st.st_size / 1048576.0, rows, (double)st.st_size / (double)rows,
               (double)st.st_size / (double)rows);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : 1;
}

static int bench_check(void)
{
    struct bb_keys_table *t = bb_keys_table_create();
    if (!t)
        return 1;
    char secret[64];
    for (int i = 0; i < 10000; i++) {
        struct bb_keys_limits l;
        memset(&l, 0, sizeof l);
        snprintf(secret, sizeof secret, "sk-bb-%032x", i);
        bb_keys_hash_secret(secret, strlen(secret), l.secret_sha256);
        snprintf(l.id, sizeof l.id, "vk_%016x", i);
        l.enabled = 1;
        l.rpm = 4000000000u;
        l.tpm = 4000000000u;
        l.has_budget = 1;
        l.budget_micros = UINT64_MAX / 2;
        l.n_pools = 2;
        l.pool_hash[0] = bb_keys_pool_hash("cheap", 5);
        l.pool_hash[1] = bb_keys_pool_hash("fast", 4);
        bb_keys_put(t, &l, 0, 1772323200000ull);
    }
    const int N = 2000000;
    uint64_t now = 1772323200000ull;
    double t0 = now_s();
    unsigned ok = 0;
    for (int i = 0; i < N; i++) {
        snprintf(secret, sizeof secret, "sk-bb-%032x", i % 10000);
        struct bb_keys_ref r;
        if (bb_keys_lookup(t, secret, 38, &r) < 0)
            return 1;
        struct bb_keys_resv res;
        uint32_t retry;
        if (bb_keys_admit(&r, "fast", 4, 1500, 2500, now, &res, &retry) == BB_KEYS_OK)
            ok++;
        bb_keys_settle(&res, 2000, 1400, now);
    }
    double dt = now_s() - t0;
    printf("check: lookup + admit + settle over 10000 keys: %.0f ns per request (target <= "
           "2000 ns; %u admitted)\n",
           dt * 1e9 / N, ok);
    bb_keys_table_destroy(t);
    return 0;
}

int main(int argc, char **argv)
{
    size_t rows = argc > 1 ? strtoul(argv[1], NULL, 10) : 500000;
    size_t batch = argc > 2 ? strtoul(argv[2], NULL, 10) : 4096;
    if (!rows || !batch)
        return 2;
    return bench_ledger(rows, batch) || bench_check();
}
