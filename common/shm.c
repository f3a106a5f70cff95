/*
 * shm: create the region and intern cells by name. Open addressing over a fixed table with
 * FNV-1a; the master interns (single writer), every process may look up.
 */
#include "common/shm.h"

#include <string.h>
#include <sys/mman.h>
#include <time.h>

struct bb_shm *bb_shm_create(void)
{
    size_t sz = sizeof(struct bb_shm);
    void *p = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    struct bb_shm *shm = p; /* mmap returns zeroed memory */
    shm->magic = BB_SHM_MAGIC;
    shm->version = BB_SHM_VERSION;
    shm->size = sz;
    atomic_store(&shm->started_realtime_ms, bb_wall_ms());
    bb_keys_table_init(&shm->keys);
    bb_ring_init(&shm->ring);
    return shm;
}

void bb_shm_destroy(struct bb_shm *shm)
{
    if (shm)
        munmap(shm, shm->size);
}

static uint32_t fnv1a(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static struct bb_shm_cell *probe(struct bb_shm *shm, const char *name, int create)
{
    if (strlen(name) >= BB_SHM_NAME_MAX)
        return NULL;
    uint32_t h = fnv1a(name);
    for (uint32_t i = 0; i < BB_SHM_MAX_CELLS; i++) {
        struct bb_shm_cell *c = &shm->cells[(h + i) % BB_SHM_MAX_CELLS];
        if (!atomic_load_explicit(&c->used, memory_order_acquire)) {
            if (!create)
                return NULL;
            strcpy(c->name, name);
            atomic_store_explicit(&c->used, 1, memory_order_release);
            atomic_fetch_add(&shm->n_cells, 1);
            return c;
        }
        if (strcmp(c->name, name) == 0)
            return c;
    }
    return NULL;
}

struct bb_shm_cell *bb_shm_cell_intern(struct bb_shm *shm, const char *name)
{
    return probe(shm, name, 1);
}

struct bb_shm_cell *bb_shm_cell_find(struct bb_shm *shm, const char *name)
{
    return probe(shm, name, 0);
}

static uint64_t clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t bb_now_ms(void)
{
    return clock_ms(CLOCK_MONOTONIC);
}

uint64_t bb_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t bb_wall_ms(void)
{
    return clock_ms(CLOCK_REALTIME);
}
