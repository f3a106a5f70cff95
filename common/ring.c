/*
 * ring: bounded MPSC queue of usage records in shared memory (Vyukov). Producers: workers;
 * consumer: the master. Lock-free; a full ring drops and counts. See ring.h for the stored
 * sequence convention (relative to the cell index, so zeroed memory is an empty ring).
 *
 * Cell states for position pos (cell i = pos & mask), in stored form s = seq - i:
 *   s == pos - i           free for the producer of pos
 *   s == pos + 1 - i       published, readable by the consumer at pos
 *   s == pos + cap - i     consumed: free for the producer of pos + cap
 */
#include "common/ring.h"

#include <string.h>
#include <sys/mman.h>

#define MASK (BB_RING_CAP - 1u)

_Static_assert((BB_RING_CAP & (BB_RING_CAP - 1)) == 0, "ring size: power of two");

void bb_ring_init(struct bb_ring *r)
{
    r->magic = BB_RING_MAGIC;
    r->cap = BB_RING_CAP;
}

struct bb_ring *bb_ring_create(void)
{
    void *p = mmap(NULL, sizeof(struct bb_ring), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                   -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    bb_ring_init(p);
    return p;
}

void bb_ring_destroy(struct bb_ring *r)
{
    if (r)
        munmap(r, sizeof *r);
}

bool bb_ring_push(struct bb_ring *r, const struct bb_usage_rec *rec)
{
    uint64_t pos = atomic_load_explicit(&r->tail, memory_order_relaxed);
    struct bb_ring_cell *c;
    for (;;) {
        c = &r->cells[pos & MASK];
        uint64_t idx = pos & MASK;
        uint64_t seq = atomic_load_explicit(&c->seq, memory_order_acquire) + idx;
        int64_t dif = (int64_t)(seq - pos);
        if (dif == 0) {
            if (atomic_compare_exchange_weak_explicit(&r->tail, &pos, pos + 1, memory_order_relaxed,
                                                      memory_order_relaxed))
                break;
        } else if (dif < 0) {
            atomic_fetch_add_explicit(&r->dropped, 1, memory_order_relaxed);
            return false; /* full: the consumer has not freed this cell yet */
        } else {
            pos = atomic_load_explicit(&r->tail, memory_order_relaxed);
        }
    }
    memcpy(&c->rec, rec, sizeof *rec);
    /* Publish with a CAS, not a store: if the consumer gave up on this cell (we stalled for
     * BB_RING_STALL_MS), it has already moved on and the record is lost, not corrupted. */
    uint64_t idx = pos & MASK;
    uint64_t want = pos - idx;
    if (!atomic_compare_exchange_strong_explicit(&c->seq, &want, pos + 1 - idx,
                                                 memory_order_release, memory_order_relaxed)) {
        atomic_fetch_add_explicit(&r->dropped, 1, memory_order_relaxed);
        return false;
    }
    atomic_fetch_add_explicit(&r->pushed, 1, memory_order_relaxed);
    return true;
}

size_t bb_ring_pop(struct bb_ring *r, struct bb_usage_rec *out, size_t max, uint64_t now_ms)
{
    size_t n = 0;
    uint64_t pos = atomic_load_explicit(&r->head, memory_order_relaxed);
    while (n < max) {
        struct bb_ring_cell *c = &r->cells[pos & MASK];
        uint64_t idx = pos & MASK;
        uint64_t seq = atomic_load_explicit(&c->seq, memory_order_acquire) + idx;
        if (seq == pos + 1) {
            memcpy(&out[n++], &c->rec, sizeof *out);
            atomic_store_explicit(&c->seq, pos + BB_RING_CAP - idx, memory_order_release);
            pos++;
            continue;
        }
        /* Not published. Claimed (tail is past it) by a producer that never finished? */
        if (atomic_load_explicit(&r->tail, memory_order_relaxed) <= pos)
            break; /* simply empty */
        if (r->stall_pos != pos || r->stall_since_ms == 0) {
            r->stall_pos = pos;
            r->stall_since_ms = now_ms ? now_ms : 1;
            break;
        }
        if (now_ms - r->stall_since_ms < BB_RING_STALL_MS)
            break;
        uint64_t want = pos - idx;
        if (atomic_compare_exchange_strong_explicit(&c->seq, &want, pos + BB_RING_CAP - idx,
                                                    memory_order_acq_rel, memory_order_acquire)) {
            atomic_fetch_add_explicit(&r->skipped, 1, memory_order_relaxed);
            pos++;
            r->stall_since_ms = 0;
        }
        /* else: it was published meanwhile; the next iteration reads it */
    }
    atomic_store_explicit(&r->head, pos, memory_order_relaxed);
    if (r->stall_pos != pos)
        r->stall_since_ms = 0;
    return n;
}

uint64_t bb_ring_pending(struct bb_ring *r)
{
    uint64_t t = atomic_load(&r->tail), h = atomic_load(&r->head);
    return t > h ? t - h : 0;
}

void bb_usage_set_str(char *dst, size_t size, const char *src)
{
    size_t n = src ? strnlen(src, size - 1) : 0;
    if (n)
        memcpy(dst, src, n);
    memset(dst + n, 0, size - n);
}
