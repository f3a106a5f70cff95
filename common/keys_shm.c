/*
 * keys_shm: virtual-key table in shared memory and the worker's admission path (see the
 * header for the layout). Workers: lookup/admit/settle/release, lock-free, no syscalls.
 * Master: put/remove/find/usage, single writer of the index and of every slot's `lim`.
 *
 * Memory ordering:
 *   - lim is guarded by a seqlock (slot->seq odd while the master writes). A reader copies lim
 *     and retries until seq was even and unchanged around the copy.
 *   - Slot reuse vs. admission is a Dekker pair on (incarnation, inflight), both seq_cst: the
 *     master bumps incarnation and then reads inflight; a worker bumps inflight and then reads
 *     incarnation. Either the master sees the worker (and does not reuse the slot) or the worker
 *     sees the new incarnation (and backs out with REVOKED). A reservation holds +1 inflight
 *     until settle/release, so its slot is never reused under it.
 *   - The budget word is one 16-byte value updated only by compare-and-swap (cmpxchg16b on
 *     x86-64, built with -mcx16; LL/SC pairs on aarch64): lock-free and process-shared.
 */
#include "common/keys_shm.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "common/sha256.h"

#if defined(__x86_64__) && !defined(__GCC_HAVE_SYNC_COMPARE_AND_SWAP_16)
#error "keys_shm needs a lock-free 16-byte compare-and-swap: build with -mcx16"
#endif

#define TOMB 0xffffffffu
#define IDX_MASK (BB_KEYS_INDEX_CAP - 1u)
#define SPENT_SHIFT 64
#define TAG_SHIFT 112
#define PERIOD_SHIFT 14 /* tag = period << 14 | (period number & 0x3fff) */

_Static_assert((BB_KEYS_INDEX_CAP & (BB_KEYS_INDEX_CAP - 1)) == 0, "index size: power of two");
_Static_assert(BB_KEYS_CAP < TOMB, "slot numbers fit the index entry");

/* ---- setup --------------------------------------------------------------------------------- */

void bb_keys_table_init(struct bb_keys_table *t)
{
    t->magic = BB_KEYS_MAGIC;
    t->cap = BB_KEYS_CAP;
}

struct bb_keys_table *bb_keys_table_create(void)
{
    void *p = mmap(NULL, sizeof(struct bb_keys_table), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    bb_keys_table_init(p);
    return p;
}

void bb_keys_table_destroy(struct bb_keys_table *t)
{
    if (t)
        munmap(t, sizeof *t);
}

/* ---- hashing ------------------------------------------------------------------------------- */

void bb_keys_hash_secret(const char *secret, size_t len, uint8_t out[32])
{
    bb_sha256(secret, len, out);
}

uint64_t bb_keys_pool_hash(const char *name, size_t len)
{
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)name[i]) * 1099511628211ull;
    return h ? h : 1;
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ---- 16-byte budget word ------------------------------------------------------------------- */

static bb_keys_u128 b_load(bb_keys_u128 *p)
{
    return __sync_val_compare_and_swap(p, (bb_keys_u128)0, (bb_keys_u128)0);
}

/* CAS; on failure *expected gets the current value. */
static bool b_cas(bb_keys_u128 *p, bb_keys_u128 *expected, bb_keys_u128 desired)
{
    bb_keys_u128 old = __sync_val_compare_and_swap(p, *expected, desired);
    if (old == *expected)
        return true;
    *expected = old;
    return false;
}

struct budget {
    uint64_t committed, spent;
    uint32_t tag;
};

static struct budget b_unpack(bb_keys_u128 w)
{
    struct budget b;
    b.committed = (uint64_t)w;
    b.spent = (uint64_t)(w >> SPENT_SHIFT) & BB_KEYS_SPENT_MAX;
    b.tag = (uint32_t)(w >> TAG_SHIFT) & 0xffffu;
    return b;
}

static bb_keys_u128 b_pack(struct budget b)
{
    uint64_t spent = b.spent > BB_KEYS_SPENT_MAX ? BB_KEYS_SPENT_MAX : b.spent;
    return (bb_keys_u128)b.committed | (bb_keys_u128)spent << SPENT_SHIFT |
           (bb_keys_u128)(b.tag & 0xffffu) << TAG_SHIFT;
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* Move b into the period containing now_ms (its period kind is in its tag): reservations still
 * outstanding (committed - spent) carry over, spent starts at 0. */
static void b_roll(struct budget *b, uint64_t now_ms)
{
    uint32_t now_tag = bb_keys_period_tag((int)(b->tag >> PERIOD_SHIFT), now_ms);
    if (b->tag == now_tag)
        return;
    b->committed = b->committed > b->spent ? b->committed - b->spent : 0;
    b->spent = 0;
    b->tag = now_tag;
}

/* ---- seqlock ------------------------------------------------------------------------------- */

static void lim_write(struct bb_keys_slot *s, const struct bb_keys_limits *lim)
{
    uint32_t q = atomic_load_explicit(&s->seq, memory_order_relaxed);
    atomic_store_explicit(&s->seq, q + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    memcpy(&s->lim, lim, sizeof *lim);
    atomic_store_explicit(&s->seq, q + 2, memory_order_release);
}

static int lim_read(struct bb_keys_slot *s, struct bb_keys_ref *out)
{
    for (int tries = 0; tries < 1000; tries++) {
        uint32_t inc = atomic_load_explicit(&s->incarnation, memory_order_acquire);
        uint32_t q1 = atomic_load_explicit(&s->seq, memory_order_acquire);
        if (q1 & 1u)
            continue;
        memcpy(&out->lim, &s->lim, sizeof out->lim);
        atomic_thread_fence(memory_order_acquire);
        uint32_t q2 = atomic_load_explicit(&s->seq, memory_order_relaxed);
        uint32_t inc2 = atomic_load_explicit(&s->incarnation, memory_order_relaxed);
        if (q1 == q2 && inc == inc2) {
            out->slot = s;
            out->incarnation = inc;
            return 0;
        }
    }
    return -1; /* the master keeps rewriting it: treat as absent this time */
}

/* ---- index --------------------------------------------------------------------------------- */

static uint64_t entry(uint32_t tag, uint32_t slot)
{
    return (uint64_t)tag << 32 | (uint64_t)(slot + 1);
}

static void akid_hash(const char *akid, size_t len, uint32_t *pos, uint32_t *tag)
{
    uint64_t h = bb_keys_pool_hash(akid, len);
    *pos = (uint32_t)h;
    *tag = (uint32_t)(h >> 32);
}

/* Index position holding slot (tag/pos of its key), or -1. Master only. */
static long idx_locate(_Atomic uint64_t *idx, uint32_t pos, uint32_t tag, uint32_t slot)
{
    for (uint32_t i = 0; i < BB_KEYS_INDEX_CAP; i++) {
        uint32_t p = (pos + i) & IDX_MASK;
        uint64_t e = atomic_load_explicit(&idx[p], memory_order_relaxed);
        if (e == 0)
            return -1;
        if (e == entry(tag, slot))
            return (long)p;
    }
    return -1;
}

static int idx_insert(_Atomic uint64_t *idx, uint32_t pos, uint32_t tag, uint32_t slot)
{
    for (uint32_t i = 0; i < BB_KEYS_INDEX_CAP; i++) {
        uint32_t p = (pos + i) & IDX_MASK;
        uint64_t e = atomic_load_explicit(&idx[p], memory_order_relaxed);
        if (e == 0 || (uint32_t)e == TOMB) {
            atomic_store_explicit(&idx[p], entry(tag, slot), memory_order_release);
            return 0;
        }
    }
    return -1;
}

/* Tombstone position p; then turn trailing tombstones back into empty entries (a run of
 * tombstones followed by an empty entry cannot hide any key, so readers stop there anyway). */
static void idx_erase(_Atomic uint64_t *idx, uint32_t p)
{
    atomic_store_explicit(&idx[p], (uint64_t)TOMB, memory_order_release);
    if (atomic_load_explicit(&idx[(p + 1) & IDX_MASK], memory_order_relaxed) != 0)
        return;
    for (uint32_t i = 0; i < BB_KEYS_INDEX_CAP; i++) {
        uint32_t q = (p - i) & IDX_MASK;
        if ((uint32_t)atomic_load_explicit(&idx[q], memory_order_relaxed) != TOMB)
            break;
        atomic_store_explicit(&idx[q], 0, memory_order_release);
    }
}

/* ---- worker side --------------------------------------------------------------------------- */

int bb_keys_lookup(struct bb_keys_table *t, const char *secret, size_t len, struct bb_keys_ref *out)
{
    uint8_t sha[32];
    bb_keys_hash_secret(secret, len, sha);
    uint32_t pos = le32(sha), tag = le32(sha + 4);
    for (uint32_t i = 0; i < BB_KEYS_INDEX_CAP; i++) {
        uint64_t e = atomic_load_explicit(&t->index[(pos + i) & IDX_MASK], memory_order_acquire);
        if (e == 0)
            return -1;
        uint32_t lo = (uint32_t)e;
        if (lo == TOMB || (uint32_t)(e >> 32) != tag || lo - 1 >= BB_KEYS_CAP)
            continue;
        struct bb_keys_slot *s = &t->slots[lo - 1];
        if (lim_read(s, out) < 0)
            continue;
        if (CRYPTO_memcmp(out->lim.secret_sha256, sha, sizeof sha) != 0)
            continue;
        if (!atomic_load_explicit(&s->live, memory_order_acquire))
            continue;
        return 0;
    }
    return -1;
}

int bb_keys_lookup_aws(struct bb_keys_table *t, const char *akid, size_t len,
                       struct bb_keys_ref *out)
{
    if (len == 0 || len >= BB_KEYS_AWS_ID_SIZE)
        return -1;
    uint32_t pos, tag;
    akid_hash(akid, len, &pos, &tag);
    for (uint32_t i = 0; i < BB_KEYS_INDEX_CAP; i++) {
        uint64_t e =
            atomic_load_explicit(&t->aws_index[(pos + i) & IDX_MASK], memory_order_acquire);
        if (e == 0)
            return -1;
        uint32_t lo = (uint32_t)e;
        if (lo == TOMB || (uint32_t)(e >> 32) != tag || lo - 1 >= BB_KEYS_CAP)
            continue;
        struct bb_keys_slot *s = &t->slots[lo - 1];
        if (lim_read(s, out) < 0)
            continue;
        if (strncmp(out->lim.aws_access_key_id, akid, len) != 0 ||
            out->lim.aws_access_key_id[len] != '\0')
            continue;
        if (!atomic_load_explicit(&s->live, memory_order_acquire))
            continue;
        return 0;
    }
    return -1;
}

bool bb_keys_pool_allowed(const struct bb_keys_ref *k, const char *name, size_t len)
{
    if (k->lim.n_pools == 0)
        return true;
    uint64_t h = bb_keys_pool_hash(name, len);
    for (unsigned i = 0; i < k->lim.n_pools && i < BB_KEYS_MAX_POOLS; i++)
        if (k->lim.pool_hash[i] == h)
            return true;
    return false;
}

/* Add n to the window of `minute` if that keeps it within limit (0 = unlimited: the count
 * saturates and the add never fails, however large n is). Windows are fixed UTC
 * minutes; a word from another minute counts as empty (a word from a later minute, seen by a
 * process whose clock lags, is used as is). */
static bool win_add(_Atomic uint64_t *w, uint32_t minute, uint32_t n, uint32_t limit)
{
    uint64_t old = atomic_load_explicit(w, memory_order_relaxed);
    for (;;) {
        uint32_t m = (uint32_t)(old >> 32), c = (uint32_t)old;
        uint32_t tm = m > minute ? m : minute;
        uint64_t cur = m >= minute ? c : 0;
        if (limit && cur + n > limit)
            return false;
        cur = cur + n > UINT32_MAX ? UINT32_MAX : cur + n; /* unlimited: saturate, never refuse */
        uint64_t nw = (uint64_t)tm << 32 | cur;
        if (atomic_compare_exchange_weak(w, &old, nw))
            return true;
    }
}

/* Take n back from the window of `minute` (nothing when that window has passed). */
static void win_sub(_Atomic uint64_t *w, uint32_t minute, uint32_t n)
{
    uint64_t old = atomic_load_explicit(w, memory_order_relaxed);
    for (;;) {
        uint32_t m = (uint32_t)(old >> 32), c = (uint32_t)old;
        if (m != minute || n == 0)
            return;
        uint64_t nw = (uint64_t)m << 32 | (c > n ? c - n : 0);
        if (atomic_compare_exchange_weak(w, &old, nw))
            return;
    }
}

/* Add n to whatever window is current (usage beyond the estimate counts where it lands). */
static void win_more(_Atomic uint64_t *w, uint32_t minute, uint32_t n)
{
    uint64_t old = atomic_load_explicit(w, memory_order_relaxed);
    for (;;) {
        uint32_t m = (uint32_t)(old >> 32), c = (uint32_t)old;
        uint32_t tm = m > minute ? m : minute;
        uint64_t cur = m >= minute ? c : 0;
        cur = cur + n > UINT32_MAX ? UINT32_MAX : cur + n;
        uint64_t nw = (uint64_t)tm << 32 | cur;
        if (atomic_compare_exchange_weak(w, &old, nw))
            return;
    }
}

static uint32_t secs_to_next_minute(uint64_t now_ms)
{
    uint64_t left = 60000 - now_ms % 60000;
    return (uint32_t)((left + 999) / 1000);
}

/* Reserve cost against the budget with one CAS loop; false when it would not fit. */
static bool budget_reserve(struct bb_keys_slot *s, const struct bb_keys_limits *lim, uint64_t cost,
                           uint64_t now_ms)
{
    bb_keys_u128 old = b_load(&s->budget);
    for (;;) {
        struct budget b = b_unpack(old);
        b_roll(&b, now_ms);
        if (lim->has_budget &&
            (b.committed >= lim->budget_micros || cost > lim->budget_micros - b.committed))
            return false;
        b.committed = sat_add(b.committed, cost);
        if (b_cas(&s->budget, &old, b_pack(b)))
            return true;
    }
}

static enum bb_keys_verdict reject(struct bb_keys_slot *s, enum bb_keys_verdict v)
{
    atomic_fetch_add_explicit(&s->rejected, 1, memory_order_relaxed);
    atomic_fetch_sub(&s->inflight, 1);
    return v;
}

enum bb_keys_verdict bb_keys_admit(const struct bb_keys_ref *k, const char *pool, size_t pool_len,
                                   uint64_t est_tokens, uint64_t est_cost_micros, uint64_t now_ms,
                                   struct bb_keys_resv *res, uint32_t *retry_after_secs)
{
    memset(res, 0, sizeof *res);
    struct bb_keys_slot *s = k->slot;
    const struct bb_keys_limits *lim = &k->lim;
    /* Dekker with slot reuse: inflight first, then the incarnation check (both seq_cst). */
    int32_t inflight = atomic_fetch_add(&s->inflight, 1) + 1;
    if (atomic_load(&s->incarnation) != k->incarnation || !atomic_load(&s->live)) {
        atomic_fetch_sub(&s->inflight, 1);
        return BB_KEYS_REVOKED;
    }
    if (!lim->enabled)
        return reject(s, BB_KEYS_DISABLED);
    if (lim->expires_at_ms && now_ms >= lim->expires_at_ms)
        return reject(s, BB_KEYS_EXPIRED);
    if (pool && !bb_keys_pool_allowed(k, pool, pool_len))
        return reject(s, BB_KEYS_FORBIDDEN_POOL);
    if (lim->max_parallel && (uint32_t)inflight > lim->max_parallel) {
        *retry_after_secs = 1;
        return reject(s, BB_KEYS_RATE_LIMITED);
    }
    uint32_t minute = (uint32_t)(now_ms / 60000);
    /* Unlimited keys are counted too (for the admin view), without a cap. */
    if (!win_add(&s->rpm_win, minute, 1, lim->rpm)) {
        *retry_after_secs = secs_to_next_minute(now_ms);
        return reject(s, BB_KEYS_RATE_LIMITED);
    }
    /* A request larger than the whole TPM allowance is charged the allowance: it runs alone
     * in an otherwise empty minute instead of never. */
    uint32_t cap = lim->tpm ? lim->tpm : UINT32_MAX;
    uint32_t charge = est_tokens > cap ? cap : (uint32_t)est_tokens;
    if (!win_add(&s->tpm_win, minute, charge, lim->tpm)) {
        win_sub(&s->rpm_win, minute, 1);
        *retry_after_secs = secs_to_next_minute(now_ms);
        return reject(s, BB_KEYS_RATE_LIMITED);
    }
    if (!budget_reserve(s, lim, est_cost_micros, now_ms)) {
        win_sub(&s->rpm_win, minute, 1);
        win_sub(&s->tpm_win, minute, charge);
        return reject(s, BB_KEYS_BUDGET_EXCEEDED);
    }
    atomic_fetch_add_explicit(&s->admitted, 1, memory_order_relaxed);
    res->slot = s;
    res->cost_micros = est_cost_micros;
    res->tokens = charge;
    res->minute = minute;
    return BB_KEYS_OK;
}

enum bb_keys_verdict bb_keys_check(const struct bb_keys_ref *k, const char *pool, size_t pool_len,
                                   uint64_t now_ms)
{
    struct bb_keys_slot *s = k->slot;
    if (atomic_load(&s->incarnation) != k->incarnation || !atomic_load(&s->live))
        return BB_KEYS_REVOKED;
    if (!k->lim.enabled)
        return BB_KEYS_DISABLED;
    if (k->lim.expires_at_ms && now_ms >= k->lim.expires_at_ms)
        return BB_KEYS_EXPIRED;
    if (pool && !bb_keys_pool_allowed(k, pool, pool_len))
        return BB_KEYS_FORBIDDEN_POOL;
    return BB_KEYS_OK;
}

/* committed += actual - reserved, spent += actual, in the period current at now_ms. */
static void budget_finish(struct bb_keys_slot *s, uint64_t reserved, uint64_t actual, bool billed,
                          uint64_t now_ms)
{
    bb_keys_u128 old = b_load(&s->budget);
    for (;;) {
        struct budget b = b_unpack(old);
        b_roll(&b, now_ms);
        b.committed = b.committed > reserved ? b.committed - reserved : 0;
        if (billed) {
            b.committed = sat_add(b.committed, actual);
            b.spent = sat_add(b.spent, actual);
        }
        if (b_cas(&s->budget, &old, b_pack(b)))
            return;
    }
}

void bb_keys_settle(struct bb_keys_resv *res, uint64_t actual_cost_micros, uint64_t actual_tokens,
                    uint64_t now_ms)
{
    struct bb_keys_slot *s = res->slot;
    if (!s)
        return;
    budget_finish(s, res->cost_micros, actual_cost_micros, true, now_ms);
    if (actual_tokens > res->tokens) {
        uint64_t more = actual_tokens - res->tokens;
        win_more(&s->tpm_win, res->minute, more > UINT32_MAX ? UINT32_MAX : (uint32_t)more);
    } else {
        win_sub(&s->tpm_win, res->minute, res->tokens - (uint32_t)actual_tokens);
    }
    atomic_fetch_sub(&s->inflight, 1); /* last: the slot may be reused once this reaches 0 */
    memset(res, 0, sizeof *res);
}

void bb_keys_release(struct bb_keys_resv *res, uint64_t now_ms)
{
    struct bb_keys_slot *s = res->slot;
    if (!s)
        return;
    budget_finish(s, res->cost_micros, 0, false, now_ms);
    win_sub(&s->tpm_win, res->minute, res->tokens);
    atomic_fetch_sub(&s->inflight, 1);
    memset(res, 0, sizeof *res);
}

int bb_keys_journal_note(struct bb_keys_journal *j, struct bb_keys_table *t,
                         const struct bb_keys_resv *res)
{
    if (!res->slot)
        return -1;
    for (uint32_t i = 0; i < BB_KEYS_JOURNAL_CAP; i++) {
        uint32_t k = (j->cursor + i) % BB_KEYS_JOURNAL_CAP;
        struct bb_keys_jent *e = &j->e[k];
        if (atomic_load_explicit(&e->used, memory_order_relaxed))
            continue;
        e->slot = (uint32_t)(res->slot - t->slots);
        e->tokens = res->tokens;
        e->minute = res->minute;
        e->cost_micros = res->cost_micros;
        atomic_store_explicit(&e->used, 1, memory_order_release);
        j->cursor = (k + 1) % BB_KEYS_JOURNAL_CAP;
        return (int)k;
    }
    return -1;
}

void bb_keys_journal_clear(struct bb_keys_journal *j, int entry)
{
    if (entry >= 0 && (uint32_t)entry < BB_KEYS_JOURNAL_CAP)
        atomic_store_explicit(&j->e[entry].used, 0, memory_order_release);
}

size_t bb_keys_journal_reclaim(struct bb_keys_table *t, struct bb_keys_journal *j, uint64_t now_ms)
{
    size_t n = 0;
    for (uint32_t k = 0; k < BB_KEYS_JOURNAL_CAP; k++) {
        struct bb_keys_jent *e = &j->e[k];
        if (!atomic_load_explicit(&e->used, memory_order_acquire))
            continue;
        if (e->slot < BB_KEYS_CAP) {
            struct bb_keys_resv r = {&t->slots[e->slot], e->cost_micros, e->tokens, e->minute};
            bb_keys_release(&r, now_ms);
            n++;
        }
        atomic_store_explicit(&e->used, 0, memory_order_relaxed);
    }
    j->cursor = 0;
    return n;
}

const char *bb_keys_verdict_name(enum bb_keys_verdict v)
{
    static const char *const names[] = {
        "ok",           "revoked",        "disabled", "expired", "forbidden_pool",
        "rate_limited", "budget_exceeded"};
    return (unsigned)v < sizeof names / sizeof names[0] ? names[v] : "?";
}

/* ---- master side --------------------------------------------------------------------------- */

static long find_pos(struct bb_keys_table *t, const uint8_t sha[32], int *slot_out)
{
    uint32_t pos = le32(sha), tag = le32(sha + 4);
    for (uint32_t i = 0; i < BB_KEYS_INDEX_CAP; i++) {
        uint32_t p = (pos + i) & IDX_MASK;
        uint64_t e = atomic_load_explicit(&t->index[p], memory_order_relaxed);
        if (e == 0)
            return -1;
        uint32_t lo = (uint32_t)e;
        if (lo == TOMB || (uint32_t)(e >> 32) != tag || lo - 1 >= BB_KEYS_CAP)
            continue;
        struct bb_keys_slot *s = &t->slots[lo - 1];
        if (memcmp(s->lim.secret_sha256, sha, 32) == 0 && atomic_load(&s->live)) {
            *slot_out = (int)(lo - 1);
            return (long)p;
        }
    }
    return -1;
}

int bb_keys_find(struct bb_keys_table *t, const uint8_t sha[32])
{
    int slot = -1;
    return find_pos(t, sha, &slot) < 0 ? -1 : slot;
}

static int aws_find(struct bb_keys_table *t, const char *akid)
{
    struct bb_keys_ref r;
    if (!*akid || bb_keys_lookup_aws(t, akid, strlen(akid), &r) < 0)
        return -1;
    return (int)(r.slot - t->slots);
}

static void aws_unindex(struct bb_keys_table *t, const char *akid, uint32_t slot)
{
    if (!*akid)
        return;
    uint32_t pos, tag;
    akid_hash(akid, strlen(akid), &pos, &tag);
    long p = idx_locate(t->aws_index, pos, tag, slot);
    if (p >= 0)
        idx_erase(t->aws_index, (uint32_t)p);
}

static int aws_reindex(struct bb_keys_table *t, const char *akid, uint32_t slot)
{
    if (!*akid)
        return 0;
    uint32_t pos, tag;
    akid_hash(akid, strlen(akid), &pos, &tag);
    return idx_insert(t->aws_index, pos, tag, slot);
}

bool bb_keys_needs_spent(struct bb_keys_table *t, const struct bb_keys_limits *lim)
{
    int slot = bb_keys_find(t, lim->secret_sha256);
    return slot < 0 || t->slots[slot].lim.period != lim->period;
}

/* A free slot: an unpublished one nobody holds (Dekker with admit), else a fresh one. */
static int alloc_slot(struct bb_keys_table *t)
{
    uint32_t n = atomic_load(&t->n_slots);
    if (atomic_load(&t->n_dead) > 0) {
        for (uint32_t i = 0; i < n; i++) {
            struct bb_keys_slot *s = &t->slots[i];
            if (atomic_load(&s->live))
                continue;
            atomic_fetch_add(&s->incarnation, 1);
            if (atomic_load(&s->inflight) != 0)
                continue; /* a reservation still points here: not yet */
            atomic_fetch_sub(&t->n_dead, 1);
            return (int)i;
        }
    }
    if (n >= BB_KEYS_CAP)
        return -1;
    atomic_store(&t->n_slots, n + 1);
    return (int)n;
}

/* Start the budget word over in lim's period with `spent` already spent; reservations still
 * outstanding in the old word are kept. */
static void budget_rebase(struct bb_keys_slot *s, int period, uint64_t spent, uint64_t now_ms,
                          bool fresh)
{
    bb_keys_u128 old = b_load(&s->budget);
    for (;;) {
        struct budget b = b_unpack(old);
        uint64_t outstanding = fresh ? 0 : (b.committed > b.spent ? b.committed - b.spent : 0);
        struct budget nb = {.committed = sat_add(outstanding, spent),
                            .spent = spent,
                            .tag = bb_keys_period_tag(period, now_ms)};
        if (b_cas(&s->budget, &old, b_pack(nb)))
            return;
    }
}

int bb_keys_put(struct bb_keys_table *t, const struct bb_keys_limits *lim,
                uint64_t period_spent_micros, uint64_t now_ms)
{
    int slot = bb_keys_find(t, lim->secret_sha256);
    if (lim->aws_access_key_id[0]) {
        int other = aws_find(t, lim->aws_access_key_id);
        if (other >= 0 && other != slot)
            return -1;
    }
    if (slot >= 0) {
        struct bb_keys_slot *s = &t->slots[slot];
        if (memcmp(&s->lim, lim, sizeof *lim) == 0)
            return 0;
        bool period_changed = s->lim.period != lim->period;
        if (strcmp(s->lim.aws_access_key_id, lim->aws_access_key_id) != 0) {
            aws_unindex(t, s->lim.aws_access_key_id, (uint32_t)slot);
            lim_write(s, lim);
            aws_reindex(t, lim->aws_access_key_id, (uint32_t)slot);
        } else {
            lim_write(s, lim);
        }
        if (period_changed)
            budget_rebase(s, lim->period, period_spent_micros, now_ms, false);
        atomic_fetch_add(&t->generation, 1);
        atomic_store(&t->published_ms, now_ms);
        return 1;
    }
    slot = alloc_slot(t);
    if (slot < 0)
        return -1;
    struct bb_keys_slot *s = &t->slots[slot];
    lim_write(s, lim);
    atomic_store(&s->rpm_win, 0);
    atomic_store(&s->tpm_win, 0);
    atomic_store(&s->admitted, 0);
    atomic_store(&s->rejected, 0);
    budget_rebase(s, lim->period, period_spent_micros, now_ms, true);
    atomic_store(&s->live, 1);
    if (idx_insert(t->index, le32(lim->secret_sha256), le32(lim->secret_sha256 + 4),
                   (uint32_t)slot) < 0) {
        atomic_store(&s->live, 0);
        atomic_fetch_add(&t->n_dead, 1);
        return -1;
    }
    aws_reindex(t, lim->aws_access_key_id, (uint32_t)slot);
    atomic_fetch_add(&t->n_live, 1);
    atomic_fetch_add(&t->generation, 1);
    atomic_store(&t->published_ms, now_ms);
    return 1;
}

int bb_keys_remove(struct bb_keys_table *t, const uint8_t sha[32])
{
    int slot = -1;
    long p = find_pos(t, sha, &slot);
    if (p < 0)
        return -1;
    struct bb_keys_slot *s = &t->slots[slot];
    atomic_store(&s->live, 0); /* lookups already past the index see this */
    idx_erase(t->index, (uint32_t)p);
    aws_unindex(t, s->lim.aws_access_key_id, (uint32_t)slot);
    atomic_fetch_sub(&t->n_live, 1);
    atomic_fetch_add(&t->n_dead, 1);
    atomic_fetch_add(&t->generation, 1);
    return 0;
}

void bb_keys_usage(struct bb_keys_table *t, int slot, uint64_t now_ms, struct bb_keys_usage *u)
{
    memset(u, 0, sizeof *u);
    if (slot < 0 || (uint32_t)slot >= BB_KEYS_CAP)
        return;
    struct bb_keys_slot *s = &t->slots[slot];
    struct budget b = b_unpack(b_load(&s->budget));
    b_roll(&b, now_ms);
    u->spent_micros = b.spent;
    u->committed_micros = b.committed;
    u->inflight = atomic_load(&s->inflight);
    uint32_t minute = (uint32_t)(now_ms / 60000);
    uint64_t w = atomic_load(&s->rpm_win);
    u->rpm_used = (uint32_t)(w >> 32) == minute ? (uint32_t)w : 0;
    w = atomic_load(&s->tpm_win);
    u->tpm_used = (uint32_t)(w >> 32) == minute ? (uint32_t)w : 0;
    u->admitted = atomic_load(&s->admitted);
    u->rejected = atomic_load(&s->rejected);
}

int bb_keys_read(struct bb_keys_table *t, int slot, struct bb_keys_ref *out)
{
    if (slot < 0 || (uint32_t)slot >= BB_KEYS_CAP ||
        !atomic_load_explicit(&t->slots[slot].live, memory_order_acquire))
        return -1;
    return lim_read(&t->slots[slot], out);
}

/* ---- UTC dates (Howard Hinnant's civil-from-days algorithms) ------------------------------- */

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

uint32_t bb_keys_period_tag(int period, uint64_t now_ms)
{
    uint64_t day = now_ms / 86400000u;
    uint32_t n;
    switch (period) {
    case BB_KEYS_PERIOD_DAILY:
        n = (uint32_t)day;
        break;
    case BB_KEYS_PERIOD_MONTHLY: {
        int64_t y;
        unsigned m, d;
        civil_from_days((int64_t)day, &y, &m, &d);
        n = (uint32_t)(y * 12 + (int64_t)m - 1);
        break;
    }
    default:
        return 0;
    }
    return (uint32_t)period << PERIOD_SHIFT | (n & ((1u << PERIOD_SHIFT) - 1));
}

int64_t bb_keys_period_start(int period, uint64_t now_ms)
{
    int64_t day = (int64_t)(now_ms / 86400000u);
    if (period == BB_KEYS_PERIOD_DAILY)
        return day * 86400;
    if (period == BB_KEYS_PERIOD_MONTHLY) {
        int64_t y;
        unsigned m, d;
        civil_from_days(day, &y, &m, &d);
        return days_from_civil(y, m, 1) * 86400;
    }
    return 0;
}

void bb_keys_day_string(int64_t unix_secs, char *out)
{
    int64_t days = unix_secs >= 0 ? unix_secs / 86400 : -((-unix_secs + 86399) / 86400);
    int64_t y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    if (y < 0 || y > 9999)
        y = y < 0 ? 0 : 9999;
    out[0] = (char)('0' + y / 1000);
    out[1] = (char)('0' + y / 100 % 10);
    out[2] = (char)('0' + y / 10 % 10);
    out[3] = (char)('0' + y % 10);
    out[4] = '-';
    out[5] = (char)('0' + m / 10);
    out[6] = (char)('0' + m % 10);
    out[7] = '-';
    out[8] = (char)('0' + d / 10);
    out[9] = (char)('0' + d % 10);
    out[10] = '\0';
}

static int digits(const char *s, int n, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    *out = v;
    return 0;
}

/* "YYYY-MM-DD" at s (exactly 10 chars read); unix seconds of 00:00 UTC. */
static int parse_date10(const char *s, int64_t *out)
{
    unsigned y, m, d;
    if (strlen(s) < 10 || digits(s, 4, &y) < 0 || s[4] != '-' || digits(s + 5, 2, &m) < 0 ||
        s[7] != '-' || digits(s + 8, 2, &d) < 0)
        return -1;
    if (y < 1970 || m < 1 || m > 12 || d < 1)
        return -1;
    static const unsigned mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d > mdays[m - 1] + (m == 2 && leap))
        return -1;
    *out = days_from_civil(y, m, d) * 86400;
    return 0;
}

int bb_keys_parse_day(const char *s, int64_t *unix_secs)
{
    if (!s || strlen(s) != 10)
        return -1;
    return parse_date10(s, unix_secs);
}

int bb_keys_parse_expiry(const char *s, int64_t now_secs, int64_t *unix_secs)
{
    if (!s || !*s)
        return -1;
    size_t n = strlen(s);
    if (n >= 2 && (s[n - 1] == 'd' || s[n - 1] == 'h') && s[0] >= '0' && s[0] <= '9') {
        char *end;
        unsigned long long v = strtoull(s, &end, 10);
        if (end != s + n - 1 || v == 0 || v > 36500ull * 24)
            return -1;
        *unix_secs = now_secs + (int64_t)v * (s[n - 1] == 'd' ? 86400 : 3600);
        return 0;
    }
    int64_t day;
    if (n == 10)
        return parse_date10(s, unix_secs);
    unsigned hh, mm, ss;
    if (n == 20 && parse_date10(s, &day) == 0 && s[10] == 'T' && digits(s + 11, 2, &hh) == 0 &&
        s[13] == ':' && digits(s + 14, 2, &mm) == 0 && s[16] == ':' &&
        digits(s + 17, 2, &ss) == 0 && s[19] == 'Z' && hh < 24 && mm < 60 && ss < 60) {
        *unix_secs = day + hh * 3600 + mm * 60 + ss;
        return 0;
    }
    return -1;
}

int bb_keys_period_from_name(const char *s)
{
    if (!s)
        return -1;
    if (!strcmp(s, "total"))
        return BB_KEYS_PERIOD_TOTAL;
    if (!strcmp(s, "daily"))
        return BB_KEYS_PERIOD_DAILY;
    if (!strcmp(s, "monthly"))
        return BB_KEYS_PERIOD_MONTHLY;
    return -1;
}

const char *bb_keys_period_name(int period)
{
    return period == BB_KEYS_PERIOD_DAILY     ? "daily"
           : period == BB_KEYS_PERIOD_MONTHLY ? "monthly"
                                              : "total";
}
