/*
 * params: table-driven reading, writing and documenting of the scalar request parameters
 * (see params.h). Worker process; pure functions.
 */
#include "worker/params.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    enum bb_param_kind kind;
} ir_params[BB_IRP__COUNT] = {
#define X(id, name, kind) [BB_IRP_##id] = {name, kind},
    BB_IR_PARAM_LIST(X)
#undef X
};

const char *bb_ir_param_name(enum bb_ir_param f)
{
    return (unsigned)f < BB_IRP__COUNT ? ir_params[f].name : "?";
}

enum bb_param_kind bb_ir_param_kind(enum bb_ir_param f)
{
    return ir_params[f].kind;
}

/* ---- the IR fields ---- */

static bool ir_has(const struct bb_ir_request *q, enum bb_ir_param f)
{
    switch (f) {
    case BB_IRP_MAX_TOKENS:
        return q->has_max_tokens;
    case BB_IRP_TEMPERATURE:
        return q->has_temperature;
    case BB_IRP_TOP_P:
        return q->has_top_p;
    case BB_IRP_TOP_K:
        return q->has_top_k;
    case BB_IRP_SEED:
        return q->has_seed;
    case BB_IRP_PRESENCE_PENALTY:
        return q->has_presence_penalty;
    case BB_IRP_FREQUENCY_PENALTY:
        return q->has_frequency_penalty;
    case BB_IRP_STOP:
        return q->n_stop > 0;
    case BB_IRP_N:
        return q->n_choices > 0;
    default:
        return false;
    }
}

/* Is the field worth reporting when a protocol cannot carry it? (n = 1 is the default.) */
static bool ir_lost_if_dropped(const struct bb_ir_request *q, enum bb_ir_param f)
{
    return f == BB_IRP_N ? q->n_choices > 1 : ir_has(q, f);
}

static double *ir_num(struct bb_ir_request *q, enum bb_ir_param f, bool **has)
{
    switch (f) {
    case BB_IRP_TEMPERATURE:
        *has = &q->has_temperature;
        return &q->temperature;
    case BB_IRP_TOP_P:
        *has = &q->has_top_p;
        return &q->top_p;
    case BB_IRP_PRESENCE_PENALTY:
        *has = &q->has_presence_penalty;
        return &q->presence_penalty;
    case BB_IRP_FREQUENCY_PENALTY:
        *has = &q->has_frequency_penalty;
        return &q->frequency_penalty;
    default:
        return NULL;
    }
}

static void ir_set_int(struct bb_ir_request *q, enum bb_ir_param f, int64_t v)
{
    switch (f) {
    case BB_IRP_MAX_TOKENS:
        q->has_max_tokens = true;
        q->max_tokens = (uint32_t)v;
        break;
    case BB_IRP_TOP_K:
        q->has_top_k = true;
        q->top_k = (uint32_t)v;
        break;
    case BB_IRP_SEED:
        q->has_seed = true;
        q->seed = v;
        break;
    case BB_IRP_N:
        q->n_choices = (uint32_t)v;
        break;
    default:
        break;
    }
}

static int64_t ir_int(const struct bb_ir_request *q, enum bb_ir_param f)
{
    switch (f) {
    case BB_IRP_MAX_TOKENS:
        return q->max_tokens;
    case BB_IRP_TOP_K:
        return q->top_k;
    case BB_IRP_SEED:
        return q->seed;
    case BB_IRP_N:
        return q->n_choices;
    default:
        return 0;
    }
}

/* ---- reading ---- */

/* The integer range of a row: its own, within what the IR field holds. */
static void int_range(const struct bb_param *p, int64_t *lo, int64_t *hi)
{
    bool u32 = ir_params[p->field].kind == BB_PK_UINT;
    *lo = u32 ? 0 : INT64_MIN;
    *hi = u32 ? UINT32_MAX : INT64_MAX;
    if (!(p->flags & BB_PF_CLAMP) && (p->min != 0 || p->max != 0)) {
        if (p->min > (double)*lo)
            *lo = (int64_t)p->min;
        if (p->max < (double)*hi)
            *hi = (int64_t)p->max;
    }
}

/* "a.b": the object a (which must be one, when present) and the member name b. */
static int locate(struct bb_rd *r, json_object *root, const char *wire, json_object **parent,
                  const char **key)
{
    const char *dot = strchr(wire, '.');
    *parent = root;
    *key = wire;
    if (!dot)
        return 0;
    char outer[64];
    snprintf(outer, sizeof outer, "%.*s", (int)(dot - wire), wire);
    *key = dot + 1;
    return bb_rd_want(r, root, outer, json_type_object, false, parent);
}

static int read_strings(struct bb_rd *r, json_object *v, const struct bb_param *p, const char *key)
{
    struct bb_ir_request *q = r->req;
    if ((p->flags & BB_PF_ONE) && bb_json_is(v, json_type_string)) {
        q->stop = bb_arena_alloc(r->a, sizeof *q->stop);
        if (!q->stop)
            return bb_rd_oom(r);
        q->n_stop = 1;
        return bb_rd_dup(r, v, &q->stop[0]);
    }
    if (!bb_json_is(v, json_type_array))
        return bb_rd_expect(
            r, key, (p->flags & BB_PF_ONE) ? "a string or an array of strings" : "an array");
    size_t n = json_object_array_length(v);
    q->stop = bb_arena_calloc(r->a, (n ? n : 1) * sizeof *q->stop);
    if (!q->stop)
        return bb_rd_oom(r);
    size_t mark = bb_rd_in(r, key);
    for (size_t i = 0; i < n; i++) {
        json_object *s = json_object_array_get_idx(v, i);
        size_t m = bb_rd_at(r, i);
        int rc = bb_rd_type(r, s, NULL, json_type_string) < 0 ? -1 : bb_rd_dup(r, s, &q->stop[i]);
        bb_rd_out(r, m);
        if (rc < 0)
            return -1;
    }
    bb_rd_out(r, mark);
    q->n_stop = n;
    return 0;
}

static int read_row(struct bb_rd *r, json_object *root, const struct bb_param *p)
{
    struct bb_ir_request *q = r->req;
    json_object *parent;
    const char *key;
    if (locate(r, root, p->wire, &parent, &key) < 0)
        return -1;
    json_object *v = bb_json_get(parent, key);
    if (!v)
        return 0;
    size_t mark = r->len;
    if (parent != root) { /* the path of the outer object, for errors inside it */
        char outer[64];
        snprintf(outer, sizeof outer, "%.*s", (int)(key - 1 - p->wire), p->wire);
        mark = bb_rd_in(r, outer);
    }
    int rc = 0;
    switch (ir_params[p->field].kind) {
    case BB_PK_NUMBER: {
        bool *has = NULL;
        double *out = ir_num(q, p->field, &has);
        rc = bb_rd_num(r, parent, key, has, out);
        break;
    }
    case BB_PK_UINT:
    case BB_PK_INT: {
        int64_t lo, hi, i = 0;
        int_range(p, &lo, &hi);
        rc = bb_rd_int_value(r, v, key, lo, hi, &i);
        if (rc == 0)
            ir_set_int(q, p->field, i);
        break;
    }
    case BB_PK_STRINGS:
        rc = read_strings(r, v, p, key);
        break;
    }
    bb_rd_out(r, mark);
    return rc;
}

int bb_params_read(struct bb_rd *r, json_object *root, const struct bb_param *t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!(t[i].flags & BB_PF_IN) || ir_has(r->req, t[i].field))
            continue; /* not read, or an alias of a name already given */
        if (read_row(r, root, &t[i]) < 0)
            return -1;
    }
    return 0;
}

bool bb_params_known(const struct bb_param *t, size_t n, const char *key)
{
    size_t kl = strlen(key);
    for (size_t i = 0; i < n; i++) {
        if (!(t[i].flags & BB_PF_IN) || !t[i].wire)
            continue;
        const char *dot = strchr(t[i].wire, '.');
        size_t wl = dot ? (size_t)(dot - t[i].wire) : strlen(t[i].wire);
        if (wl == kl && memcmp(t[i].wire, key, kl) == 0)
            return true;
    }
    return false;
}

bool bb_params_known_in(const struct bb_param *t, size_t n, const char *outer, const char *key)
{
    size_t ol = strlen(outer);
    for (size_t i = 0; i < n; i++)
        if ((t[i].flags & BB_PF_IN) && t[i].wire && strncmp(t[i].wire, outer, ol) == 0 &&
            t[i].wire[ol] == '.' && strcmp(t[i].wire + ol + 1, key) == 0)
            return true;
    return false;
}

/* ---- writing ---- */

static bool carried(const struct bb_param *t, size_t n, enum bb_ir_param f)
{
    for (size_t i = 0; i < n; i++)
        if (t[i].field == f && (t[i].flags & BB_PF_OUT))
            return true;
    return false;
}

static bool named(const struct bb_param *t, size_t n, enum bb_ir_param f)
{
    for (size_t i = 0; i < n; i++)
        if (t[i].field == f)
            return true;
    return false;
}

/* The object that holds the member ("a.b": a, created when absent) and the member name. */
static json_object *target(json_object *root, const char *wire, const char **key)
{
    const char *dot = strchr(wire, '.');
    *key = dot ? dot + 1 : wire;
    if (!dot)
        return root;
    char outer[64];
    snprintf(outer, sizeof outer, "%.*s", (int)(dot - wire), wire);
    json_object *o = bb_json_get(root, outer);
    if (!bb_json_is(o, json_type_object)) {
        o = json_object_new_object();
        json_object_object_add(root, outer, o);
    }
    return o;
}

static void write_row(json_object *root, const struct bb_param *p, const struct bb_ir_request *ir,
                      struct bb_arena *a, const struct bb_egress_ctx *ctx, bb_param_hook hook,
                      void *arg)
{
    struct bb_param_value v = {0, 0, NULL, 0};
    bool *has = NULL;
    enum bb_param_kind kind = ir_params[p->field].kind;
    switch (kind) {
    case BB_PK_NUMBER:
        v.num = *ir_num((struct bb_ir_request *)ir, p->field, &has);
        break;
    case BB_PK_UINT:
    case BB_PK_INT:
        v.i = ir_int(ir, p->field);
        break;
    case BB_PK_STRINGS:
        v.strs = ir->stop;
        v.n_strs = ir->n_stop;
        break;
    }
    if (hook && !hook(arg, p, &v))
        return;
    bool clamp = p->flags & BB_PF_CLAMP;
    const char *key;
    json_object *o = target(root, p->wire, &key);
    switch (kind) {
    case BB_PK_NUMBER:
        if (clamp)
            v.num = v.num < p->min ? p->min : v.num > p->max ? p->max : v.num;
        json_object_object_add(o, key, bb_json_new_double(v.num));
        break;
    case BB_PK_UINT:
    case BB_PK_INT:
        if (clamp)
            v.i = (double)v.i < p->min   ? (int64_t)p->min
                  : (double)v.i > p->max ? (int64_t)p->max
                                         : v.i;
        json_object_object_add(o, key, json_object_new_int64(v.i));
        break;
    case BB_PK_STRINGS: {
        size_t keep = clamp && v.n_strs > (size_t)p->max ? (size_t)p->max : v.n_strs;
        if (keep < v.n_strs)
            bb_proto_drop(a, ctx, bb_ir_param_name(p->field));
        if (!keep)
            break;
        json_object *arr = json_object_new_array();
        for (size_t i = 0; i < keep; i++)
            json_object_array_add(arr, bb_json_new_str(&v.strs[i]));
        json_object_object_add(o, key, arr);
        break;
    }
    }
}

void bb_params_write(json_object *root, const struct bb_param *t, size_t n,
                     const struct bb_ir_request *ir, struct bb_arena *a,
                     const struct bb_egress_ctx *ctx, bb_param_hook hook, void *arg)
{
    bool done[BB_IRP__COUNT] = {false};
    for (size_t i = 0; i < n; i++) {
        const struct bb_param *p = &t[i];
        if (p->flags & BB_PF_OUT) {
            if (ir_has(ir, p->field))
                write_row(root, p, ir, a, ctx, hook, arg);
        } else if (!done[p->field] && !carried(t, n, p->field) &&
                   ir_lost_if_dropped(ir, p->field)) {
            bb_proto_drop(a, ctx, bb_ir_param_name(p->field));
        }
        done[p->field] = true;
    }
    for (int f = 0; f < BB_IRP__COUNT; f++)
        if (!named(t, n, (enum bb_ir_param)f) && ir_lost_if_dropped(ir, (enum bb_ir_param)f))
            bb_proto_drop(a, ctx, bb_ir_param_name((enum bb_ir_param)f));
}

/* ---- documentation ---- */

static void range_text(const struct bb_param *p, char *buf, size_t cap)
{
    enum bb_param_kind kind = ir_params[p->field].kind;
    buf[0] = '\0';
    if (p->min == 0 && p->max == 0)
        return;
    if (kind == BB_PK_STRINGS)
        snprintf(buf, cap, "at most %.15g", p->max);
    else if (isinf(p->max))
        snprintf(buf, cap, "≥ %.15g", p->min);
    else
        snprintf(buf, cap, "%.15g … %.15g", p->min, p->max);
}

size_t bb_params_doc(const struct bb_param *t, size_t n, char *buf, size_t cap)
{
    static const char *const kinds[] = {"integer", "integer", "number", "array of strings"};
    static const char head[] = "| Member | IR field | Type | Range | Direction | Note |\n"
                               "|---|---|---|---|---|---|\n";
    size_t len = 0;
    if (cap)
        buf[0] = '\0';
    int h = snprintf(buf, cap, "%s", head);
    if (h > 0)
        len = (size_t)h;
    for (size_t i = 0; i < n; i++) {
        const struct bb_param *p = &t[i];
        char range[64], wire[96];
        range_text(p, range, sizeof range);
        if (p->wire)
            snprintf(wire, sizeof wire, "`%s`", p->wire);
        else
            snprintf(wire, sizeof wire, "—");
        const char *dir = (p->flags & BB_PF_IN) && (p->flags & BB_PF_OUT) ? "read, written"
                          : p->flags & BB_PF_IN                           ? "read"
                          : p->flags & BB_PF_OUT                          ? "written"
                                                                          : "dropped";
        const char *how = !range[0]                ? ""
                          : p->flags & BB_PF_CLAMP ? " (clamped when written)"
                                                   : " (else a 400)";
        int k = snprintf(
            buf + len, cap > len ? cap - len : 0, "| %s | `%s` | %s%s | %s%s | %s | %s |\n", wire,
            bb_ir_param_name(p->field), kinds[ir_params[p->field].kind],
            (p->flags & BB_PF_ONE) ? " or a string" : "", range, how, dir, p->note ? p->note : "");
        if (k > 0)
            len += (size_t)k;
    }
    return len < cap ? len : cap ? cap - 1 : 0;
}
