/*
 * jscan: validating single-pass JSON scanner that finds top-level members of an object
 * without building a DOM (the same-protocol fast path, ARCHITECTURE "Pitfalls").
 * Any process; pure functions.
 */
#ifndef BB_JSCAN_H
#define BB_JSCAN_H

#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"

enum bb_jtype { BB_JNONE = 0, BB_JNULL, BB_JBOOL, BB_JNUMBER, BB_JSTRING, BB_JARRAY, BB_JOBJECT };

struct bb_jscan_field {
    const char *key;    /* in: member name to find (compared after unescaping) */
    enum bb_jtype type; /* out: BB_JNONE when absent */
    size_t off, len;    /* out: the value's bytes in buf (strings include their quotes) */
    bool truthy;        /* out: for BB_JBOOL, the value */
};

/* Validate that buf[0..len) is exactly one JSON object (RFC 8259: strings, escapes, UTF-8
 * validity, numbers, nesting depth <= max_depth, surrounding whitespace allowed) and record
 * where each requested top-level member's value is. A duplicate requested key keeps the last.
 * Returns 0, or -1 with err = "what at byte N". */
int bb_jscan_object(const char *buf, size_t len, struct bb_jscan_field *fields, size_t n,
                    int max_depth, struct bb_err *err);

/* Validate that buf[0..len) is exactly one JSON value of any type, by the same rules. */
int bb_jscan_value(const char *buf, size_t len, int max_depth, struct bb_err *err);

/* Decode a JSON string token (with quotes) into out (NUL-terminated, at most cap-1 bytes).
 * Returns the decoded length, or -1 when malformed or too long. */
long bb_jscan_unquote(const char *tok, size_t len, char *out, size_t cap);

#endif
