/*
 * rd: the protocol modules' reader context (see rd.h). Worker process; pure functions over
 * the context.
 */
#include "worker/rd.h"

#include "worker/seq.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void bb_rd_init(struct bb_rd *r, struct bb_arena *a, struct bb_ir_request *req, struct bb_err *err)
{
    memset(r, 0, sizeof *r);
    r->a = a;
    r->req = req;
    r->err = err;
    r->prefix = "";
}

/* Append text to the path (truncated, never overflowing). */
static void path_add(struct bb_rd *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void path_add(struct bb_rd *r, const char *fmt, ...)
{
    if (r->len >= sizeof r->path - 1)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(r->path + r->len, sizeof r->path - r->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        r->len += (size_t)n < sizeof r->path - r->len ? (size_t)n : sizeof r->path - r->len - 1;
}

size_t bb_rd_in(struct bb_rd *r, const char *key)
{
    size_t mark = r->len;
    path_add(r, r->len ? ".%s" : "%s", key);
    return mark;
}

size_t bb_rd_at(struct bb_rd *r, size_t i)
{
    size_t mark = r->len;
    path_add(r, "[%zu]", i);
    return mark;
}

void bb_rd_out(struct bb_rd *r, size_t mark)
{
    if (mark <= r->len) {
        r->len = mark;
        r->path[mark] = '\0';
    }
}

struct bb_rd_iter bb_rd_iter(struct bb_rd *r, json_object *arr, const char *key)
{
    struct bb_rd_iter it = {r, arr, 0, 0, r->len, 0, false};
    it.n = bb_json_is(arr, json_type_array) ? json_object_array_length(arr) : 0;
    if (key)
        it.mark = bb_rd_in(r, key);
    return it;
}

bool bb_rd_next(struct bb_rd_iter *it, json_object **elem)
{
    if (it->in) {
        bb_rd_out(it->r, it->m);
        it->at++;
    }
    if (it->at >= it->n) {
        bb_rd_out(it->r, it->mark);
        it->in = false;
        return false;
    }
    it->m = bb_rd_at(it->r, it->at);
    it->in = true;
    *elem = json_object_array_get_idx(it->arr, it->at);
    return true;
}

int bb_rd_push_text(struct bb_rd *r, struct bb_vec *v, enum bb_ir_block_type t, json_object *s)
{
    struct bb_ir_block *b = BB_VEC_PUSH(r->a, v, struct bb_ir_block);
    if (!b)
        return bb_rd_oom(r);
    b->type = t;
    return bb_rd_dup(r, s, &b->text);
}

int bb_rd_tools(struct bb_rd *r, json_object *tools, bb_rd_tool_fn one)
{
    if (bb_rd_type(r, tools, "tools", json_type_array) < 0)
        return -1;
    struct bb_vec v = {0};
    struct bb_rd_iter it = bb_rd_iter(r, tools, "tools");
    json_object *el;
    while (bb_rd_next(&it, &el))
        if (one(r, el, &v) < 0)
            return -1;
    r->req->tools = v.v;
    r->req->n_tools = v.n;
    return 0;
}

int bb_rd_fail(struct bb_rd *r, const char *key, const char *fmt, ...)
{
    char msg[200], loc[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(loc, sizeof loc, "%.*s%s%s", (int)r->len, r->path, r->len && key ? "." : "",
             key ? key : "");
    return bb_err_set(r->err, "%s%s%s%s%s", r->prefix, *r->prefix ? ": " : "", loc,
                      *loc ? ": " : "", msg);
}

int bb_rd_expect(struct bb_rd *r, const char *key, const char *what)
{
    return bb_rd_fail(r, key, "expected %s", what);
}

int bb_rd_required(struct bb_rd *r, const char *key)
{
    return bb_rd_fail(r, key, "required");
}

int bb_rd_oom(struct bb_rd *r)
{
    return bb_err_set(r->err, "%s%sout of memory", r->prefix, *r->prefix ? ": " : "");
}

int bb_rd_unsupported(struct bb_rd *r, const char *prefix, const char *name)
{
    if (!r->req)
        return 0;
    /* names end up in x-busbar-dropped-fields: bb_ir_unsupported %XX-encodes what could
     * break out of a header (bb_ir_field_name) */
    size_t pl = strlen(prefix), nl = strlen(name);
    char *s = bb_arena_alloc(r->a, pl + nl + 1);
    if (!s)
        return bb_rd_oom(r);
    memcpy(s, prefix, pl);
    memcpy(s + pl, name, nl + 1);
    return bb_ir_unsupported(r->a, r->req, s) < 0 ? bb_rd_oom(r) : 0;
}

static const char *type_name(enum json_type t)
{
    switch (t) {
    case json_type_object:
        return "an object";
    case json_type_array:
        return "an array";
    case json_type_string:
        return "a string";
    case json_type_boolean:
        return "a boolean";
    case json_type_int:
        return "an integer";
    case json_type_double:
        return "a number";
    default:
        return "a value";
    }
}

int bb_rd_type(struct bb_rd *r, json_object *v, const char *key, enum json_type t)
{
    return bb_json_is(v, t) ? 0 : bb_rd_expect(r, key, type_name(t));
}

int bb_rd_want(struct bb_rd *r, json_object *o, const char *key, enum json_type t, bool required,
               json_object **out)
{
    json_object *v = bb_json_get(o, key);
    *out = NULL;
    if (!v)
        return required ? bb_rd_required(r, key) : 0;
    if (!bb_json_is(v, t))
        return bb_rd_expect(r, key, type_name(t));
    *out = v;
    return 0;
}

int bb_rd_str(struct bb_rd *r, json_object *o, const char *key, bool required,
              struct bb_ir_str *out)
{
    json_object *v;
    if (bb_rd_want(r, o, key, json_type_string, required, &v) < 0)
        return -1;
    return v ? bb_rd_dup(r, v, out) : 0;
}

int bb_rd_bool(struct bb_rd *r, json_object *o, const char *key, bool *has, bool *out)
{
    json_object *v;
    if (bb_rd_want(r, o, key, json_type_boolean, false, &v) < 0)
        return -1;
    if (v) {
        *out = json_object_get_boolean(v);
        if (has)
            *has = true;
    }
    return 0;
}

int bb_rd_num(struct bb_rd *r, json_object *o, const char *key, bool *has, double *out)
{
    json_object *v = bb_json_get(o, key);
    if (!v)
        return 0;
    if (!bb_json_number(v, out))
        return bb_rd_expect(r, key, "a number");
    if (has)
        *has = true;
    return 0;
}

int bb_rd_int_value(struct bb_rd *r, json_object *v, const char *key, int64_t min, int64_t max,
                    int64_t *out)
{
    if (!bb_json_is_int(v))
        return bb_rd_expect(r, key, "an integer");
    if (!bb_json_int(v, min, max, out))
        return bb_rd_fail(r, key, "out of range");
    return 0;
}

int bb_rd_int(struct bb_rd *r, json_object *o, const char *key, int64_t min, int64_t max, bool *has,
              int64_t *out)
{
    json_object *v = bb_json_get(o, key);
    if (!v)
        return 0;
    if (bb_rd_int_value(r, v, key, min, max, out) < 0)
        return -1;
    if (has)
        *has = true;
    return 0;
}

int bb_rd_u32(struct bb_rd *r, json_object *o, const char *key, bool *has, uint32_t *out)
{
    int64_t v = 0;
    bool got = false;
    if (bb_rd_int(r, o, key, 0, UINT32_MAX, &got, &v) < 0)
        return -1;
    if (got) {
        *out = (uint32_t)v;
        if (has)
            *has = true;
    }
    return 0;
}

int bb_rd_dup(struct bb_rd *r, json_object *s, struct bb_ir_str *out)
{
    *out = bb_ir_strdup(r->a, json_object_get_string(s), (size_t)json_object_get_string_len(s));
    return out->p ? 0 : bb_rd_oom(r);
}

int bb_rd_text(struct bb_rd *r, json_object *v, struct bb_ir_str *out)
{
    *out = bb_json_text(r->a, v);
    return out->p ? 0 : bb_rd_oom(r);
}

int bb_rd_take(struct bb_rd *r, json_object *o, const char *key, struct bb_ir_str *out)
{
    json_object *v = bb_json_get(o, key);
    return bb_json_is(v, json_type_string) ? bb_rd_dup(r, v, out) : 0;
}

int bb_rd_hosted(struct bb_rd *r, const char *kind, json_object *def)
{
    struct bb_ir_request *q = r->req;
    struct bb_ir_hosted *v = bb_arena_alloc(r->a, (q->n_hosted + 1) * sizeof *v);
    if (!v)
        return bb_rd_oom(r);
    if (q->n_hosted)
        memcpy(v, q->hosted, q->n_hosted * sizeof *v);
    v[q->n_hosted].kind = (struct bb_ir_str){(char *)kind, strlen(kind)};
    v[q->n_hosted].raw_json = bb_json_text(r->a, def);
    if (!v[q->n_hosted].raw_json.p)
        return bb_rd_oom(r);
    q->hosted = v;
    q->n_hosted++;
    return 0;
}
