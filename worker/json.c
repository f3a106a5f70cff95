/*
 * json: strict json-c helpers shared by the protocol modules (parse exactly one value with a
 * depth limit and UTF-8 validation, typed getters, arena copies). Worker process; pure
 * functions.
 */
#include "worker/json.h"

#include <ctype.h>
#include <limits.h>
#include <string.h>

#define JSON_DEPTH 128
#define JSON_OUT (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

/* Parse exactly one JSON value (trailing whitespace allowed). NULL with err naming `what`,
 * also for a literal null (json-c represents it as NULL). */
json_object *bb_json_parse(const char *p, size_t len, const char *what, struct bb_err *err)
{
    if (len > INT_MAX) {
        bb_err_set(err, "%s: too large", what);
        return NULL;
    }
    json_tokener *tok = json_tokener_new_ex(JSON_DEPTH);
    if (!tok) {
        bb_err_set(err, "%s: out of memory", what);
        return NULL;
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    json_object *o = json_tokener_parse_ex(tok, p ? p : "", (int)len);
    enum json_tokener_error e = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    if (e == json_tokener_continue && len) {
        /* A top-level literal or number ("null", "5") is only known to have ended at a
         * delimiter; the whole body is here, so supply one. */
        o = json_tokener_parse_ex(tok, " ", 1);
        e = json_tokener_get_error(tok);
        end = len;
    }
    json_tokener_free(tok);
    if (e == json_tokener_continue) {
        json_object_put(o);
        bb_err_set(err, "%s: invalid JSON (unexpected end of input)", what);
        return NULL;
    }
    if (e != json_tokener_success) {
        json_object_put(o);
        bb_err_set(err, "%s: invalid JSON (%s at offset %zu)", what, json_tokener_error_desc(e),
                   end);
        return NULL;
    }
    for (; end < len; end++) {
        if (!isspace((unsigned char)p[end])) {
            json_object_put(o);
            bb_err_set(err, "%s: invalid JSON (trailing data at offset %zu)", what, end);
            return NULL;
        }
    }
    if (!o)
        bb_err_set(err, "%s: expected a JSON object, got null", what);
    return o;
}

/* Member of an object; NULL when absent, null, or o is not an object. */
json_object *bb_json_get(json_object *o, const char *key)
{
    json_object *v = NULL;
    if (o && json_object_is_type(o, json_type_object) && json_object_object_get_ex(o, key, &v))
        return v;
    return NULL;
}

bool bb_json_is(json_object *o, enum json_type t)
{
    return o && json_object_is_type(o, t);
}

bool bb_json_is_number(json_object *o)
{
    return bb_json_is(o, json_type_int) || bb_json_is(o, json_type_double);
}

const char *bb_json_str(json_object *o)
{
    return bb_json_is(o, json_type_string) ? json_object_get_string(o) : NULL;
}

bool bb_json_str_eq(json_object *o, const char *lit)
{
    const char *s = bb_json_str(o);
    return s && strcmp(s, lit) == 0;
}

/* A string value copied into the arena ({NULL,0} on OOM). */
struct bb_ir_str bb_json_dup(struct bb_arena *a, json_object *s)
{
    return bb_ir_strdup(a, json_object_get_string(s), (size_t)json_object_get_string_len(s));
}

/* Any value serialised as JSON text into the arena. */
struct bb_ir_str bb_json_text(struct bb_arena *a, json_object *v)
{
    size_t n = 0;
    const char *s = json_object_to_json_string_length(v, JSON_OUT, &n);
    return bb_ir_strdup(a, s, n);
}
