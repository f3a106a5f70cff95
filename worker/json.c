/*
 * json: strict json-c parsing, typed access under the one numeric policy, and writers' output
 * for the protocol modules (see json.h). Worker process; pure functions.
 */
#include "worker/json.h"

#include <ctype.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "common/jscan.h"
#include "worker/jdom.h"
#include "worker/proto.h"

#define JSON_DEPTH 128
#define JSON_OUT (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

/* ---- parse ---- */

json_object *bb_json_parse(const char *p, size_t len, const char *what, struct bb_err *err)
{
    /* The one-pass parser takes what both of the reference path's stages accept; whatever it
     * declines (invalid text, the nesting limit, OOM, a body over INT_MAX) goes the reference
     * way, which names the error. */
    json_object *o;
    if (len <= INT_MAX && bb_jdom_parse(p, len, JSON_DEPTH, &o) == 0) {
        if (!o && err)
            bb_err_set(err, "%s: expected a JSON object, got null", what);
        return o;
    }
    return bb_json_parse_ref(p, len, what, err);
}

json_object *bb_json_parse_ref(const char *p, size_t len, const char *what, struct bb_err *err)
{
    struct bb_err ignored;
    if (!err)
        err = &ignored;
    if (len > INT_MAX) {
        bb_err_set(err, "%s: too large", what);
        return NULL;
    }
    /* json-c's strict mode still takes single-quoted member names and NaN/Infinity: the
     * validating scanner (RFC 8259, UTF-8, depth) decides first, json-c builds the tree. */
    struct bb_err jerr;
    if (bb_jscan_value(p ? p : "", len, JSON_DEPTH, &jerr) < 0) {
        bb_err_set(err, "%s: invalid JSON (%s)", what, jerr.msg);
        return NULL;
    }
    /* One tokener per thread, reset between documents: a new one is a 5 KiB calloc. The scanner
     * above has validated the UTF-8 already. */
    static _Thread_local json_tokener *tok;
    if (!tok && (tok = json_tokener_new_ex(JSON_DEPTH)))
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    if (!tok) {
        bb_err_set(err, "%s: out of memory", what);
        return NULL;
    }
    json_tokener_reset(tok);
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
    json_tokener_reset(tok); /* drops what a failed parse left on its stack */
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

json_object *bb_json_raw(const struct bb_ir_str *s)
{
    return s && s->p && s->len ? bb_json_parse(s->p, s->len, "raw JSON", NULL) : NULL;
}

json_object *bb_json_raw_as(const struct bb_ir_str *s, enum json_type t)
{
    json_object *v = bb_json_raw(s);
    if (v && !json_object_is_type(v, t)) {
        json_object_put(v);
        v = NULL;
    }
    return v;
}

/* ---- access ---- */

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

const char *bb_json_get_str(json_object *o, const char *key)
{
    return bb_json_str(bb_json_get(o, key));
}

bool bb_json_str_eq(json_object *o, const char *lit)
{
    const char *s = bb_json_str(o);
    return s && strcmp(s, lit) == 0;
}

bool bb_json_has_text(json_object *o)
{
    return bb_json_is(o, json_type_string) && json_object_get_string_len(o) > 0;
}

struct bb_ir_str bb_json_dup(struct bb_arena *a, json_object *s)
{
    if (!bb_json_is(s, json_type_string))
        return (struct bb_ir_str){NULL, 0};
    return bb_ir_strdup(a, json_object_get_string(s), (size_t)json_object_get_string_len(s));
}

struct bb_ir_str bb_json_text(struct bb_arena *a, json_object *v)
{
    size_t n = 0;
    const char *s = json_object_to_json_string_length(v, JSON_OUT, &n);
    if (!s)
        return (struct bb_ir_str){NULL, 0};
    return bb_ir_strdup(a, s, n);
}

/* ---- the numeric policy ---- */

/* v as an integral value: *big when it is a positive integer beyond INT64_MAX. */
static bool integral(json_object *v, int64_t *out, bool *big)
{
    *big = false;
    if (bb_json_is(v, json_type_int)) {
        int64_t i = json_object_get_int64(v);
        /* json-c clamps larger values to INT64_MAX; uint64 tells them apart */
        if (i == INT64_MAX && json_object_get_uint64(v) > (uint64_t)INT64_MAX)
            *big = true;
        *out = i;
        return true;
    }
    if (bb_json_is(v, json_type_double)) {
        double d = json_object_get_double(v);
        if (!isfinite(d) || d != floor(d))
            return false;
        if (d >= 9223372036854775808.0) {
            *big = true;
            *out = INT64_MAX;
        } else if (d < -9223372036854775808.0) {
            *out = INT64_MIN;
        } else {
            *out = (int64_t)d;
        }
        return true;
    }
    return false;
}

bool bb_json_is_int(json_object *v)
{
    int64_t i;
    bool big;
    return integral(v, &i, &big);
}

bool bb_json_int(json_object *v, int64_t min, int64_t max, int64_t *out)
{
    int64_t i;
    bool big;
    if (!integral(v, &i, &big) || big || i < min || i > max)
        return false;
    *out = i;
    return true;
}

bool bb_json_uint(json_object *v, uint64_t max, uint64_t *out)
{
    int64_t i;
    bool big;
    if (!integral(v, &i, &big))
        return false;
    uint64_t u;
    if (big) {
        if (bb_json_is(v, json_type_int))
            u = json_object_get_uint64(v);
        else if (json_object_get_double(v) < 18446744073709551616.0)
            u = (uint64_t)json_object_get_double(v);
        else
            return false;
    } else if (i < 0) {
        return false;
    } else {
        u = (uint64_t)i;
    }
    if (u > max)
        return false;
    *out = u;
    return true;
}

bool bb_json_number(json_object *v, double *out)
{
    if (!bb_json_is_number(v))
        return false;
    double d = json_object_get_double(v);
    if (!isfinite(d))
        return false;
    *out = d;
    return true;
}

uint64_t bb_json_count(json_object *o, const char *key)
{
    uint64_t u = 0;
    return bb_json_uint(bb_json_get(o, key), UINT64_MAX, &u) ? u : 0;
}

/* ---- write ---- */

json_object *bb_json_new_str(const struct bb_ir_str *s)
{
    return json_object_new_string_len(s && s->p ? s->p : "", s && s->p ? (int)s->len : 0);
}

json_object *bb_json_new_strn(const char *s, size_t n)
{
    return json_object_new_string_len(s ? s : "", s ? (int)n : 0);
}

json_object *bb_json_new_cstr(const char *s)
{
    return json_object_new_string(s ? s : "");
}

json_object *bb_json_new_double(double d)
{
    char buf[40];
    if (!isfinite(d))
        d = 0;
    snprintf(buf, sizeof buf, "%.15g", d);
    if (strtod(buf, NULL) != d)
        snprintf(buf, sizeof buf, "%.17g", d);
    if (!strpbrk(buf, ".eE")) /* a number field stays a number with a fraction: 1.0, not 1 */
        strncat(buf, ".0", sizeof buf - strlen(buf) - 1);
    return json_object_new_double_s(d, buf);
}

json_object *bb_json_new_u64(uint64_t v)
{
    return json_object_new_int64(v > INT64_MAX ? INT64_MAX : (int64_t)v);
}

json_object *bb_json_typed(const char *type)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "type", json_object_new_string(type));
    return o;
}

void bb_json_add(json_object *o, const char *key, json_object *v)
{
    json_object_object_add(o, key, v);
}

const char *bb_json_out(json_object *o, size_t *len)
{
    return json_object_to_json_string_length(o, JSON_OUT, len);
}

int bb_json_append(struct evbuffer *out, json_object *o)
{
    return bb_jdom_write(out, NULL, o, NULL);
}

int bb_json_sse_send(struct evbuffer *out, const char *event, json_object *o)
{
    int rc = o && (!event || bb_proto_put(out, "event: ", event, "\n") == 0) &&
                     bb_jdom_write(out, "data: ", o, "\n\n") == 0
                 ? 0
                 : -1;
    json_object_put(o);
    return rc;
}

void bb_json_copy(char *dst, size_t cap, json_object *v)
{
    if (!cap)
        return;
    dst[0] = '\0';
    if (bb_json_is(v, json_type_string))
        snprintf(dst, cap, "%s", json_object_get_string(v));
    else if (bb_json_is(v, json_type_int))
        snprintf(dst, cap, "%" PRId64, json_object_get_int64(v));
}
