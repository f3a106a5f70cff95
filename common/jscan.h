/*
 * jscan: validating single-pass JSON scanner that finds top-level members of an object
 * without building a DOM (the same-protocol fast path, ARCHITECTURE "Pitfalls").
 * Any process; pure functions.
 */
#ifndef BB_JSCAN_H
#define BB_JSCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

/* Member `key` of the JSON object text obj[0..len) (validated again: cheap on the small
 * objects it is meant for): *out describes it relative to obj, type BB_JNONE when obj is not
 * an object or has no such member. */
void bb_jscan_member(const char *obj, size_t len, const char *key, struct bb_jscan_field *out);

/* Element idx of the array text arr[0..len), which a scan has already validated: its span
 * relative to arr and its type. false when arr is not an array or is shorter. */
bool bb_jscan_element(const char *arr, size_t len, size_t idx, struct bb_jscan_field *out);

/* The non-negative number tok[0..len) as an integer (a fraction is dropped, huge values
 * saturate); false when it is not a number or is negative. */
bool bb_jscan_u64(const char *tok, size_t len, uint64_t *out);

/* A located field f of obj (from bb_jscan_object) as bb_jscan_u64 reads it; 0 (and false) when
 * absent or not a number. */
bool bb_jscan_field_u64(const char *obj, const struct bb_jscan_field *f, uint64_t *out);

/* Member `key` of obj as bb_jscan_u64 reads it; 0 (and false) when absent or not a number. */
bool bb_jscan_member_u64(const char *obj, size_t len, const char *key, uint64_t *out);

/* Most top-level members bb_jscan_request accepts (duplicates are looked for among them). */
#define BB_JSCAN_MEMBERS_MAX 1024
/* Longest top-level member name bb_jscan_request accepts (after unescaping). */
#define BB_JSCAN_NAME_MAX 1024

/* bb_jscan_object for a body a client sent: also refuses a top-level member name that occurs
 * twice (compared after unescaping: "model" and "\u006dodel" are the same name), more than
 * BB_JSCAN_MEMBERS_MAX top-level members and names longer than BB_JSCAN_NAME_MAX. Two
 * parsers that disagree on which duplicate wins (one keeps the first, another the last) must
 * never both see the body. fields may be NULL when n is 0 (validation only). */
int bb_jscan_request(const char *buf, size_t len, struct bb_jscan_field *fields, size_t n,
                     int max_depth, struct bb_err *err);

/* Validate that buf[0..len) is exactly one JSON value of any type, by the same rules. */
int bb_jscan_value(const char *buf, size_t len, int max_depth, struct bb_err *err);

/* Decode a JSON string token (with quotes) into out (NUL-terminated, at most cap-1 bytes).
 * Returns the decoded length, or -1 when malformed or too long. */
long bb_jscan_unquote(const char *tok, size_t len, char *out, size_t cap);

/* The pieces of string validation and decoding the tree builder (worker/jdom.c) shares:
 * four hex digits at p (either case) or -1; the length of the well-formed UTF-8 sequence at p
 * (Unicode Table 3-7: no overlongs, no surrogates, nothing above U+10FFFF), 0 when ill-formed;
 * code point cp written as UTF-8 at o, its length. */
/* The value of a validated string's raw body s[0..n) (no quotes) into out, at most cap bytes
 * (never more than n: decoding never grows); its length, -1 when it does not fit. */
long bb_jscan_decode(const char *s, size_t n, char *out, size_t cap);
int bb_jscan_hex4(const char *p);
/* c names a one-letter escape of RFC 8259 (\" \\ \/ \b \f \n \r \t; \u is not one). */
static inline bool bb_jscan_short_escape(unsigned char c)
{
    return c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' || c == 'r' ||
           c == 't';
}
size_t bb_jscan_utf8_len(const unsigned char *p, size_t avail);
size_t bb_jscan_put_utf8(char *o, unsigned cp);

#endif
