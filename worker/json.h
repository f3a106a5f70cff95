/*
 * json: strict json-c helpers shared by the protocol modules. Worker process; pure functions.
 */
#ifndef BB_JSON_H
#define BB_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include <json-c/json.h>

#include "common/arena.h"
#include "common/err.h"
#include "worker/ir.h"

/* Parse exactly one JSON value (depth <= 128, valid UTF-8, trailing whitespace allowed). NULL
 * with err naming `what` on any error, also for a literal null. Caller puts the result. */
json_object *bb_json_parse(const char *p, size_t len, const char *what, struct bb_err *err);
/* Member of an object; NULL when absent, null, or o is not an object. */
json_object *bb_json_get(json_object *o, const char *key);
bool bb_json_is(json_object *o, enum json_type t);
bool bb_json_is_number(json_object *o);
/* The string value, or NULL when o is not a string. */
const char *bb_json_str(json_object *o);
bool bb_json_str_eq(json_object *o, const char *lit);
/* A string value copied into the arena ({NULL,0} on OOM). */
struct bb_ir_str bb_json_dup(struct bb_arena *a, json_object *s);
/* Any value serialised as compact JSON text into the arena. */
struct bb_ir_str bb_json_text(struct bb_arena *a, json_object *v);

#endif
