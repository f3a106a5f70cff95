/*
 * err: error text and the aborting allocators. Any process; no shared state.
 */
#include "common/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int bb_err_set(struct bb_err *err, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static void *oom(size_t n)
{
    fprintf(stderr, "busbar: [crit] out of memory allocating %zu bytes\n", n);
    abort();
}

void *bb_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    return p ? p : oom(n);
}

void *bb_xcalloc(size_t n, size_t sz)
{
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    return p ? p : oom(n * sz);
}

void *bb_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    return q ? q : oom(n);
}

char *bb_xstrdup(const char *s)
{
    return bb_xstrndup(s, strlen(s));
}

char *bb_xstrndup(const char *s, size_t n)
{
    char *p = bb_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}
