/*
 * keys_shm: the virtual-key snapshot in shared memory (SPEC §1, §6) and the admission
 * primitives the workers run on it: lookup by secret (SHA-256, constant-time compare of the
 * digest), admit (key state, pool, parallel, RPM/TPM windows, budget reservation), settle and
 * release. Also the UTC period arithmetic both sides share.
 *
 * Writers: the master alone publishes (bb_keys_put / bb_keys_remove): it owns the index and
 * each slot's `lim` (written under the slot's seqlock). Workers never write `lim` or the index;
 * they only move a slot's atomic counters. No locks anywhere, no syscalls on the worker path.
 *
 * Layout (all offsets inside the table, no pointers; the table is zero-initialised memory):
 *   index[2 * CAP]   open addressing on the secret's SHA-256: entry = tag32 << 32 | (slot + 1),
 *                    0 = empty, low half 0xffffffff = tombstone. Probing reads this compact
 *                    array, so a miss never touches the (large) slot array.
 *   aws_index[2*CAP] the same, keyed by the AWS access key id (for SigV4 clients).
 *   slots[CAP]       handed out densely from 0 (n_slots is the high-water mark), so only the
 *                    pages of keys that exist are ever touched.
 *
 * Counters of a slot:
 *   inflight         requests admitted and not yet settled/released (max_parallel, and the
 *                    guard that keeps a slot from being reused while a reservation points at it)
 *   rpm_win/tpm_win  fixed 60 s windows aligned to the UTC minute: minute << 32 | count
 *   budget           one 16-byte word, CAS'd as a whole (cmpxchg16b / ldxp-stxp):
 *                    bits 0..63 committed micro-USD (spent + outstanding reservations),
 *                    bits 64..111 spent micro-USD in the period, bits 112..127 period tag.
 *                    Admission reserves with one CAS loop against committed, so concurrent
 *                    workers can never admit past the budget; a period rollover keeps the
 *                    outstanding reservations (committed - spent) and zeroes spent.
 */
#ifndef BB_KEYS_SHM_H
#define BB_KEYS_SHM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BB_KEYS_MAGIC 0x4b455953u /* "KEYS" */
#define BB_KEYS_CAP 65536u
#define BB_KEYS_INDEX_CAP (2u * BB_KEYS_CAP)
#define BB_KEYS_ID_SIZE 24                          /* "vk_" + 16 hex + NUL, padded */
#define BB_KEYS_NAME_SIZE 132                       /* name (<= 128 bytes) + NUL, padded */
#define BB_KEYS_MAX_POOLS 16                        /* allowed pools per key */
#define BB_KEYS_AWS_ID_SIZE 32                      /* "AKIA" + 16 chars + NUL, padded */
#define BB_KEYS_AWS_SECRET_SIZE 48                  /* 40 chars + NUL, padded */
#define BB_KEYS_SPENT_MAX ((UINT64_C(1) << 48) - 1) /* spent saturates at ~$281M per period */

__extension__ typedef unsigned __int128 bb_keys_u128;

enum bb_keys_period { BB_KEYS_PERIOD_TOTAL = 0, BB_KEYS_PERIOD_DAILY, BB_KEYS_PERIOD_MONTHLY };

/* Outcome of bb_keys_admit, in admission order (SPEC §6). */
enum bb_keys_verdict {
    BB_KEYS_OK = 0,
    BB_KEYS_REVOKED,         /* revoked/deleted since the lookup: 401 */
    BB_KEYS_DISABLED,        /* 401 */
    BB_KEYS_EXPIRED,         /* 401 */
    BB_KEYS_FORBIDDEN_POOL,  /* 403 */
    BB_KEYS_RATE_LIMITED,    /* 429 with Retry-After (rpm, tpm or max_parallel) */
    BB_KEYS_BUDGET_EXCEEDED, /* 429 insufficient_quota; Bedrock 400 ServiceQuotaExceeded */
};

/* What the master publishes for one key. Copied by workers under the slot's seqlock. */
struct bb_keys_limits {
    uint8_t secret_sha256[32];
    char id[BB_KEYS_ID_SIZE];
    char name[BB_KEYS_NAME_SIZE];                /* for routing policies (SPEC §5.5) */
    char aws_access_key_id[BB_KEYS_AWS_ID_SIZE]; /* "" = no AWS credential */
    char aws_secret[BB_KEYS_AWS_SECRET_SIZE];    /* SigV4 needs the secret itself */
    uint64_t budget_micros;                      /* meaningful when has_budget */
    uint64_t expires_at_ms;                      /* wall-clock ms; 0 = never */
    uint32_t rpm, tpm, max_parallel;             /* 0 = unlimited */
    uint8_t period;                              /* enum bb_keys_period */
    uint8_t enabled;
    uint8_t has_budget;
    uint8_t n_pools;                       /* 0 = every pool */
    uint64_t pool_hash[BB_KEYS_MAX_POOLS]; /* bb_keys_pool_hash() of each allowed pool */
};

struct bb_keys_slot {
    _Atomic uint32_t seq;         /* seqlock over lim: odd while the master writes */
    _Atomic uint32_t incarnation; /* bumped when the slot is handed to another key */
    _Atomic uint32_t live;        /* 1 while published */
    _Atomic int32_t inflight;
    struct bb_keys_limits lim;
    _Atomic uint64_t rpm_win, tpm_win;
    _Atomic uint64_t admitted, rejected; /* counts since the slot was (re)assigned */
    _Alignas(16) bb_keys_u128 budget;    /* 16-byte CAS only (see the file comment) */
};

struct bb_keys_table {
    uint32_t magic, cap;
    _Atomic uint64_t generation;   /* +1 on every publish that changed something */
    _Atomic uint64_t published_ms; /* wall-clock ms of the last publish */
    _Atomic uint32_t n_slots;      /* high-water mark of slots[] in use (master) */
    _Atomic uint32_t n_live;       /* keys published */
    _Atomic uint32_t n_dead;       /* unpublished slots not yet reused (master) */
    _Atomic uint64_t index[BB_KEYS_INDEX_CAP];
    _Atomic uint64_t aws_index[BB_KEYS_INDEX_CAP];
    struct bb_keys_slot slots[BB_KEYS_CAP];
};

/* A worker's handle on a key: the slot plus a consistent copy of what was published. */
struct bb_keys_ref {
    struct bb_keys_slot *slot;
    uint32_t incarnation;
    struct bb_keys_limits lim;
};

/* What one admitted request holds until settle or release. slot NULL = nothing held. */
struct bb_keys_resv {
    struct bb_keys_slot *slot;
    uint64_t cost_micros; /* reserved worst case */
    uint32_t tokens;      /* charged to the TPM window */
    uint32_t minute;      /* the window they were charged to */
};

/* Reservation journal of one worker (one per worker slot, in shared memory): every admitted
 * request's reservation is noted here until it is settled or released, so that when a worker
 * dies with requests in flight the master gives their reservations back (a killed request is
 * never billed, and its reservation does not stay charged against the budget). Written by its
 * worker only; read by the master only once that worker is dead. */
#define BB_KEYS_JOURNAL_CAP 4096u
struct bb_keys_jent {
    _Atomic uint32_t used;
    uint32_t slot; /* index in the key table's slots[] */
    uint32_t tokens, minute;
    uint64_t cost_micros;
};
struct bb_keys_journal {
    uint32_t cursor; /* worker-private: where the next free-entry search starts */
    struct bb_keys_jent e[BB_KEYS_JOURNAL_CAP];
};

/* Live counters of one slot, for the admin view. */
struct bb_keys_usage {
    uint64_t spent_micros;     /* settled cost in the current period */
    uint64_t committed_micros; /* spent + outstanding reservations */
    int32_t inflight;
    uint32_t rpm_used, tpm_used; /* in the current minute */
    uint64_t admitted, rejected;
};

/* ---- setup ---- */

/* Initialise a table in zeroed memory (bb_shm_create's region). */
void bb_keys_table_init(struct bb_keys_table *t);
/* A standalone MAP_SHARED table (tests, benchmarks); NULL + errno on failure. */
struct bb_keys_table *bb_keys_table_create(void);
void bb_keys_table_destroy(struct bb_keys_table *t);

/* ---- hashing ---- */

/* SHA-256 of a secret as presented by a client. */
void bb_keys_hash_secret(const char *secret, size_t len, uint8_t out[32]);
/* 64-bit FNV-1a of a pool name (never 0). */
uint64_t bb_keys_pool_hash(const char *name, size_t len);

/* ---- worker side: no locks, no syscalls ---- */

/* Find the published key whose secret is secret[0..len). 0 and *out filled, -1 when absent. */
int bb_keys_lookup(struct bb_keys_table *t, const char *secret, size_t len,
                   struct bb_keys_ref *out);
/* The same by AWS access key id (SigV4); out->lim.aws_secret verifies the signature. */
int bb_keys_lookup_aws(struct bb_keys_table *t, const char *akid, size_t len,
                       struct bb_keys_ref *out);
/* True when the key may use pool (or lane) name[0..len). */
bool bb_keys_pool_allowed(const struct bb_keys_ref *k, const char *name, size_t len);
/* Admission for one request in SPEC order: key state → pool → parallel/RPM/TPM → budget.
 * est_tokens is charged to the TPM window (input estimate + max output), est_cost_micros is
 * reserved against the budget (the worst case). On OK *res holds the reservation, which must
 * end in exactly one bb_keys_settle or bb_keys_release. On RATE_LIMITED *retry_after_secs is
 * set (>= 1); nothing is held on any verdict but OK. now_ms is wall-clock ms. */
enum bb_keys_verdict bb_keys_admit(const struct bb_keys_ref *k, const char *pool, size_t pool_len,
                                   uint64_t est_tokens, uint64_t est_cost_micros, uint64_t now_ms,
                                   struct bb_keys_resv *res, uint32_t *retry_after_secs);
/* The checks of bb_keys_admit that need no counter (key state, then pool), touching nothing:
 * cluster mode asks Redis for the rest (worker/cluster.c). */
enum bb_keys_verdict bb_keys_check(const struct bb_keys_ref *k, const char *pool, size_t pool_len,
                                   uint64_t now_ms);
/* A completed request: replace the reservation by the actual cost and tokens. res is emptied. */
void bb_keys_settle(struct bb_keys_resv *res, uint64_t actual_cost_micros, uint64_t actual_tokens,
                    uint64_t now_ms);
/* A failed request (not billed): give the reservation and the TPM charge back. res emptied. */
void bb_keys_release(struct bb_keys_resv *res, uint64_t now_ms);
/* "ok", "revoked", "disabled", "expired", "forbidden_pool", "rate_limited", "budget_exceeded". */
const char *bb_keys_verdict_name(enum bb_keys_verdict v);

/* Note res in j (after an OK admission); returns the entry, -1 when the journal is full (the
 * request then runs unjournaled). Clear it before settling or releasing: a worker killed in
 * between leaves a reservation charged (conservative), never one released twice. */
int bb_keys_journal_note(struct bb_keys_journal *j, struct bb_keys_table *t,
                         const struct bb_keys_resv *res);
void bb_keys_journal_clear(struct bb_keys_journal *j, int entry);

/* ---- master side (single writer) ---- */

/* A dead worker's journal: release every reservation still noted in it. Returns how many. */
size_t bb_keys_journal_reclaim(struct bb_keys_table *t, struct bb_keys_journal *j, uint64_t now_ms);

/* Slot index of the live key with this secret digest, -1 when not published. */
int bb_keys_find(struct bb_keys_table *t, const uint8_t sha[32]);
/* True when publishing lim needs the period's spend (a new key, or its period changed). */
bool bb_keys_needs_spent(struct bb_keys_table *t, const struct bb_keys_limits *lim);
/* Publish or update a key. period_spent_micros (spend of the current period, from the
 * rollups) is used when bb_keys_needs_spent() said so; otherwise counters carry on. Returns
 * 1 when something changed, 0 when it was already published as is, -1 when the table is
 * full or the AWS id collides with another key. */
int bb_keys_put(struct bb_keys_table *t, const struct bb_keys_limits *lim,
                uint64_t period_spent_micros, uint64_t now_ms);
/* Unpublish (revoke/delete): takes effect for every worker at once. 0, or -1 when absent. */
int bb_keys_remove(struct bb_keys_table *t, const uint8_t sha[32]);
/* A consistent copy of a published slot's limits (any process). -1 when not live. */
int bb_keys_read(struct bb_keys_table *t, int slot, struct bb_keys_ref *out);
/* Live counters of slot (from bb_keys_find). */
void bb_keys_usage(struct bb_keys_table *t, int slot, uint64_t now_ms, struct bb_keys_usage *u);

/* ---- UTC periods and dates ---- */

/* Period tag of now_ms: 0 for total, the UTC day number for daily, year*12+month for monthly
 * (16 bits kept). */
uint32_t bb_keys_period_tag(int period, uint64_t now_ms);
/* Unix seconds at which the period containing now_ms began (0 for total). */
int64_t bb_keys_period_start(int period, uint64_t now_ms);
/* "YYYY-MM-DD" (UTC) of unix seconds; out has at least 11 bytes. */
void bb_keys_day_string(int64_t unix_secs, char *out);
/* Parse "YYYY-MM-DD" (UTC midnight) into unix seconds; -1 when malformed. */
int bb_keys_parse_day(const char *s, int64_t *unix_secs);
/* Expiry: "30d", "12h" (relative to now_secs), "YYYY-MM-DD" (00:00 UTC of that day) or
 * "YYYY-MM-DDTHH:MM:SSZ". -1 when malformed. */
int bb_keys_parse_expiry(const char *s, int64_t now_secs, int64_t *unix_secs);
/* "period" names: "total", "daily", "monthly"; -1 when unknown. */
int bb_keys_period_from_name(const char *s);
const char *bb_keys_period_name(int period);

#endif
