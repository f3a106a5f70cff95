/*
 * arena: per-request bump allocator with a byte cap and a cleanup list (house style rule 6).
 * Worker process; an arena belongs to exactly one request, no locking.
 */
#ifndef BB_ARENA_H
#define BB_ARENA_H

#include <stddef.h>

struct bb_arena_chunk;
struct bb_arena_cleanup;

struct bb_arena {
    struct bb_arena_chunk *head;
    struct bb_arena_cleanup *cleanups;
    size_t used; /* bytes handed out, for the cap */
    size_t cap;  /* 0 = unbounded */
};

/* Initialise an empty arena with a cap in bytes (0 = none). */
void bb_arena_init(struct bb_arena *a, size_t cap);
/* Allocate n bytes aligned to 16; NULL when the cap would be exceeded or malloc fails. */
void *bb_arena_alloc(struct bb_arena *a, size_t n);
/* Zeroed allocation; NULL as above. */
void *bb_arena_calloc(struct bb_arena *a, size_t n);
/* Copy n bytes plus a NUL terminator into the arena; NULL on failure. */
char *bb_arena_strndup(struct bb_arena *a, const char *s, size_t n);
/* Register fn(arg) to run (LIFO) at bb_arena_free; -1 when out of memory. */
int bb_arena_cleanup(struct bb_arena *a, void (*fn)(void *), void *arg);
/* Run cleanups, free every chunk; the arena may be re-initialised afterwards. */
void bb_arena_free(struct bb_arena *a);

#endif
