-- busbar governance store (SPEC §6): virtual keys, the spend ledger, daily rollups.
--
-- This file is schema version 1. It is compiled into busbar (master/meson.build embeds it) and
-- applied by the master as migration 1 (master/keys_db.c) when PRAGMA user_version is 0.
-- Later versions are appended there as migrations 2, 3, …; never edit a released migration.
-- The master opens the database in WAL mode with synchronous=NORMAL; the file is created
-- mode 0600 because it holds the AWS secrets of keys that use SigV4 (see keys.aws_secret).
--
-- Money is integer micro-dollars (1 USD = 1000000). Times are unix seconds (keys) or unix
-- milliseconds (ledger.ts), UTC. Days are 'YYYY-MM-DD' in UTC.

-- One row per virtual key. Revoked keys stay (revoked_at set) so the ledger keeps naming
-- them; `busbarctl keys delete` removes the row.
CREATE TABLE keys (
    id                TEXT PRIMARY KEY
                      CHECK (length(id) = 19 AND id GLOB 'vk_[0-9a-f]*'),  -- 'vk_' + 16 hex
    name              TEXT NOT NULL,
    secret_sha256     BLOB NOT NULL UNIQUE CHECK (length(secret_sha256) = 32),
    allowed_pools     TEXT NOT NULL DEFAULT '[]',   -- JSON array of pool names; [] = every pool
    budget_micros     INTEGER CHECK (budget_micros >= 0),          -- NULL = no budget
    period            TEXT NOT NULL DEFAULT 'total'
                      CHECK (period IN ('total', 'daily', 'monthly')),
    rpm               INTEGER CHECK (rpm > 0),                     -- NULL = unlimited
    tpm               INTEGER CHECK (tpm > 0),                     -- NULL = unlimited
    max_parallel      INTEGER CHECK (max_parallel > 0),            -- NULL = unlimited
    expires_at        INTEGER,                                     -- unix s; NULL = never
    enabled           INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    created_at        INTEGER NOT NULL,                            -- unix s
    updated_at        INTEGER NOT NULL,                            -- unix s
    -- Optional AWS credential for Bedrock clients that sign with SigV4. The secret is stored
    -- as is, not hashed: verifying a SigV4 signature means recomputing an HMAC keyed by the
    -- secret, so the verifier must hold it (as AWS itself does). The master publishes it to
    -- the workers' shared memory only; it is never logged or returned after creation.
    aws_access_key_id TEXT UNIQUE,
    aws_secret        TEXT,
    revoked_at        INTEGER,                                     -- unix s; NULL = active
    CHECK ((aws_access_key_id IS NULL) = (aws_secret IS NULL))
);

-- One row per completed request, written by the master from the usage ring in batched
-- transactions. request_id is UNIQUE: a record delivered twice is ignored, never billed twice.
CREATE TABLE ledger (
    id                 INTEGER PRIMARY KEY,
    ts                 INTEGER NOT NULL,          -- unix ms at completion
    request_id         TEXT NOT NULL UNIQUE,
    key_id             TEXT NOT NULL DEFAULT '',  -- '' = no virtual key (auth other than keys)
    pool               TEXT NOT NULL DEFAULT '',  -- '' = the request named a lane
    lane               TEXT NOT NULL DEFAULT '',  -- the model entry that answered
    provider           TEXT NOT NULL DEFAULT '',
    ingress            TEXT NOT NULL DEFAULT '',  -- openai, anthropic, gemini, …
    input_tokens       INTEGER NOT NULL DEFAULT 0,   -- excludes cache tiers
    output_tokens      INTEGER NOT NULL DEFAULT 0,   -- includes reasoning
    cache_read_tokens  INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens   INTEGER NOT NULL DEFAULT 0,
    cost_micros        INTEGER NOT NULL DEFAULT 0,
    status             INTEGER NOT NULL,          -- HTTP status sent to the client
    latency_ms         INTEGER NOT NULL
);
CREATE INDEX ledger_key_ts ON ledger (key_id, ts);

-- Daily totals per key × pool × model (lane), maintained in the same transaction as the ledger
-- rows they sum (UPSERT), so reports never scan the ledger and always equal it.
CREATE TABLE rollup_daily (
    key_id             TEXT NOT NULL,
    day                TEXT NOT NULL,             -- 'YYYY-MM-DD' UTC of ledger.ts
    pool               TEXT NOT NULL,
    model              TEXT NOT NULL,             -- ledger.lane
    requests           INTEGER NOT NULL DEFAULT 0,
    input_tokens       INTEGER NOT NULL DEFAULT 0,
    output_tokens      INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens  INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens   INTEGER NOT NULL DEFAULT 0,
    cost_micros        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, day, pool, model)
) WITHOUT ROWID;
CREATE INDEX rollup_daily_day ON rollup_daily (day);
