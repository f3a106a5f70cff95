/*
 * jdom: the json-c DOM written and read without json-c's serializer and tokener, for the
 * translated request path (worker/json.c is the only caller). Worker process; pure functions.
 *
 * Both are held to json-c's own results: bb_jdom_write writes exactly the bytes
 * json_object_to_json_string_length(o, PLAIN | NOSLASHESCAPE) would, and bb_jdom_parse builds
 * exactly the tree the strict tokener builds, or declines (tests/unit/test_jdom.c compares them
 * on generated documents).
 */
#ifndef BB_JDOM_H
#define BB_JDOM_H

#include <stddef.h>

#include <json-c/json.h>

struct evbuffer;

/* Append pre (may be NULL), o as compact JSON text (json-c's bytes for JSON_C_TO_STRING_PLAIN |
 * JSON_C_TO_STRING_NOSLASHESCAPE; NULL is "null") and post (may be NULL) to out. -1 on OOM,
 * after which out may hold part of the text. */
int bb_jdom_write(struct evbuffer *out, const char *pre, json_object *o, const char *post);

/* Parse exactly one JSON value of p[0..len): RFC 8259 strict, valid UTF-8, nesting depth <=
 * max_depth, surrounding whitespace (space, tab, CR, LF) allowed. 0 with *out the tree (NULL for
 * a literal null; the caller puts it), or -1 when the text is not accepted or memory ran out:
 * the caller then asks the validating scanner and json-c, whose verdict and message stand. */
int bb_jdom_parse(const char *p, size_t len, int max_depth, json_object **out);

#endif
