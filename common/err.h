/*
 * err: explicit error text carried out of a failing call (house style rule 7).
 * Any process. No locking: a struct bb_err belongs to its caller.
 */
#ifndef BB_ERR_H
#define BB_ERR_H

#include <stdarg.h>
#include <stddef.h>

struct bb_err {
    char msg[512];
};

/* Format msg into err (err may be NULL); always returns -1 so callers can `return bb_err_set(...)`.
 */
int bb_err_set(struct bb_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Allocation helpers for code outside a request: abort on failure (house style rule 6). */
void *bb_xmalloc(size_t n);
void *bb_xcalloc(size_t n, size_t sz);
void *bb_xrealloc(void *p, size_t n);
char *bb_xstrdup(const char *s);
char *bb_xstrndup(const char *s, size_t n);

#endif
