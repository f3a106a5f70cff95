/*
 * arena: chunked bump allocator. Worker process, one arena per request, no locking.
 * Chunks grow geometrically from 4 KiB; large requests get a chunk of their own.
 */
#include "common/arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct bb_arena_chunk {
    struct bb_arena_chunk *next;
    size_t size, off;
    _Alignas(16) unsigned char data[];
};

struct bb_arena_cleanup {
    struct bb_arena_cleanup *next;
    void (*fn)(void *);
    void *arg;
};

void bb_arena_init(struct bb_arena *a, size_t cap)
{
    a->head = NULL;
    a->cleanups = NULL;
    a->used = 0;
    a->cap = cap;
}

void *bb_arena_alloc(struct bb_arena *a, size_t n)
{
    n = (n + 15u) & ~(size_t)15u;
    if (n == 0)
        n = 16;
    if (a->cap && a->used + n > a->cap)
        return NULL;
    struct bb_arena_chunk *c = a->head;
    if (!c || c->size - c->off < n) {
        size_t sz = c ? c->size * 2 : 8192;
        if (sz > 1u << 20)
            sz = 1u << 20;
        if (sz < n)
            sz = n;
        struct bb_arena_chunk *nc = malloc(sizeof *nc + sz);
        if (!nc)
            return NULL;
        nc->size = sz;
        nc->off = 0;
        nc->next = c;
        a->head = c = nc;
    }
    void *p = c->data + c->off;
    c->off += n;
    a->used += n;
    return p;
}

void *bb_arena_calloc(struct bb_arena *a, size_t n)
{
    void *p = bb_arena_alloc(a, n);
    if (p)
        memset(p, 0, n);
    return p;
}

char *bb_arena_strndup(struct bb_arena *a, const char *s, size_t n)
{
    char *p = bb_arena_alloc(a, n + 1);
    if (!p)
        return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

int bb_arena_cleanup(struct bb_arena *a, void (*fn)(void *), void *arg)
{
    struct bb_arena_cleanup *c = bb_arena_alloc(a, sizeof *c);
    if (!c)
        return -1;
    c->fn = fn;
    c->arg = arg;
    c->next = a->cleanups;
    a->cleanups = c;
    return 0;
}

void bb_arena_free(struct bb_arena *a)
{
    for (struct bb_arena_cleanup *c = a->cleanups; c; c = c->next)
        c->fn(c->arg);
    a->cleanups = NULL;
    struct bb_arena_chunk *c = a->head;
    while (c) {
        struct bb_arena_chunk *n = c->next;
        free(c);
        c = n;
    }
    a->head = NULL;
    a->used = 0;
}
