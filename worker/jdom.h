/*
 * jdom: the json-c DOM written without json-c's serializer, for the translated request path
 * (worker/json.c is the only caller). Worker process; pure functions.
 *
 * Held to json-c's own result: bb_jdom_write writes exactly the bytes
 * json_object_to_json_string_length(o, PLAIN | NOSLASHESCAPE) would (tests/unit/test_jdom.c
 * compares them on generated trees).
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

#endif
