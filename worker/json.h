/*
 * json: the JSON layer every protocol module shares (worker/proto_*.c): one strict parse for
 * requests, answers, stream frames and error bodies alike; typed member access under one
 * numeric policy; and the writers' constructors and output. Worker process; pure functions.
 *
 * The numeric policy (docs/protocols.md "Numbers"): an integer is a JSON number whose value is
 * integral, whatever its spelling — 4096, 4096.0 and 4.096e3 are the same integer (JavaScript
 * clients send doubles), 4096.5 is not an integer, and an integer outside the field's range is
 * "out of range". A number is any finite JSON number. Strings are never numbers.
 */
#ifndef BB_JSON_H
#define BB_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "common/arena.h"
#include "common/err.h"
#include "worker/ir.h"

struct evbuffer;

/* ---- parse ---- */

/* Parse exactly one JSON value: strict RFC 8259 (no trailing commas, no single quotes, ...),
 * valid UTF-8, depth <= 128, trailing whitespace allowed. NULL on any error, also for a literal
 * null; with err (may be NULL) naming `what`. Caller puts the result. */
json_object *bb_json_parse(const char *p, size_t len, const char *what, struct bb_err *err);
/* The same by the reference path: the validating scanner (common/jscan.c), then json-c's
 * strict tokener. bb_json_parse builds its tree in one pass (worker/jdom.c) and comes here for
 * whatever it declines; the tests hold the two to the same results. */
json_object *bb_json_parse_ref(const char *p, size_t len, const char *what, struct bb_err *err);

/* A raw-JSON IR field (tool parameters, schema, input) parsed back; NULL when absent or not
 * valid JSON. */
json_object *bb_json_raw(const struct bb_ir_str *s);
/* The same, only when the value is of type t (an object input, an array of citations). */
json_object *bb_json_raw_as(const struct bb_ir_str *s, enum json_type t);

/* ---- access ---- */

/* Member of an object; NULL when absent, null, or o is not an object. */
json_object *bb_json_get(json_object *o, const char *key);
bool bb_json_is(json_object *o, enum json_type t);
bool bb_json_is_number(json_object *o);
/* The string value, or NULL when o is not a string. */
const char *bb_json_str(json_object *o);
/* A string member's value, NULL when absent or not a string. */
const char *bb_json_get_str(json_object *o, const char *key);
bool bb_json_str_eq(json_object *o, const char *lit);
/* A non-empty string. */
bool bb_json_has_text(json_object *o);
/* A string value copied into the arena ({NULL,0} on OOM or when s is not a string). */
struct bb_ir_str bb_json_dup(struct bb_arena *a, json_object *s);
/* Any value serialised as compact JSON text into the arena. */
struct bb_ir_str bb_json_text(struct bb_arena *a, json_object *v);

/* ---- the numeric policy ---- */

/* An integer (see above) in [min, max]; false when v is not an integer or outside. */
bool bb_json_int(json_object *v, int64_t min, int64_t max, int64_t *out);
bool bb_json_uint(json_object *v, uint64_t max, uint64_t *out);
/* Is v an integer at all (whatever its range)? */
bool bb_json_is_int(json_object *v);
/* A finite number. */
bool bb_json_number(json_object *v, double *out);
/* A count in an answer (usage tokens, indexes): the member as a non-negative integer, 0 when
 * absent, negative or not an integer. */
uint64_t bb_json_count(json_object *o, const char *key);

/* ---- write ---- */

/* A string from an IR string (absent → ""). */
json_object *bb_json_new_str(const struct bb_ir_str *s);
json_object *bb_json_new_strn(const char *s, size_t n);
/* A string from a C string (NULL → ""). */
json_object *bb_json_new_cstr(const char *s);
/* A number field written as the shortest text that reads back to the same double ("0.7",
 * not 0.69999999999999996), always with a fraction or an exponent ("1.0", not "1": a number
 * field stays a number on the wire; integer fields are written with json_object_new_int64).
 * Non-finite values are written 0.0. */
json_object *bb_json_new_double(double d);
json_object *bb_json_new_u64(uint64_t v);
/* {"type": type}: the opening of most wire objects. */
json_object *bb_json_typed(const char *type);
void bb_json_add(json_object *o, const char *key, json_object *v);

/* o's compact JSON text (no added spaces, "/" not escaped), owned by o; NULL on OOM. */
const char *bb_json_out(json_object *o, size_t *len);
/* Serialise o compactly and append it to out. -1 on OOM. */
int bb_json_append(struct evbuffer *out, json_object *o);
/* Send one SSE frame and release o: "event: <event>\n" (when event is not NULL), then
 * "data: <o>\n\n". -1 on OOM. */
int bb_json_sse_send(struct evbuffer *out, const char *event, json_object *o);

/* Copy a string or integer value into a fixed buffer (error fields); "" otherwise. */
void bb_json_copy(char *dst, size_t cap, json_object *v);

#endif
