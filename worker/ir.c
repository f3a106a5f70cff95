/*
 * ir: small helpers shared by the protocol modules. Worker process; pure functions over a
 * request arena.
 */
#include "worker/ir.h"

#include <stdbool.h>
#include <string.h>
#include <strings.h>

struct bb_ir_str bb_ir_strdup(struct bb_arena *a, const char *s, size_t n)
{
    struct bb_ir_str r = {bb_arena_strndup(a, s ? s : "", s ? n : 0), s ? n : 0};
    if (!r.p)
        r.len = 0;
    return r;
}

#define FIELD_NAME_MAX 64

static bool name_byte_ok(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("._-:/[]@$+*", c));
}

const char *bb_ir_field_name(struct bb_arena *a, const char *raw)
{
    size_t n = strlen(raw);
    bool clean = n <= FIELD_NAME_MAX;
    for (size_t i = 0; clean && i < n; i++)
        clean = name_byte_ok((unsigned char)raw[i]);
    if (clean)
        return raw;
    static const char hex[] = "0123456789ABCDEF";
    char *out = a ? bb_arena_alloc(a, FIELD_NAME_MAX + 4) : NULL;
    if (!out)
        return "?";
    size_t o = 0;
    for (size_t i = 0; i < n && o + 3 <= FIELD_NAME_MAX; i++) {
        unsigned char c = (unsigned char)raw[i];
        if (name_byte_ok(c)) {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = '\0';
    return out;
}

int bb_ir_unsupported(struct bb_arena *a, struct bb_ir_request *req, const char *field)
{
    field = bb_ir_field_name(a, field);
    for (size_t i = 0; i < req->n_unsupported; i++)
        if (strcmp(req->unsupported[i], field) == 0)
            return 0;
    const char **v = bb_arena_alloc(a, (req->n_unsupported + 1) * sizeof *v);
    if (!v)
        return -1;
    if (req->n_unsupported)
        memcpy(v, req->unsupported, req->n_unsupported * sizeof *v);
    v[req->n_unsupported++] = field;
    req->unsupported = v;
    return 0;
}

int bb_ir_extra(struct bb_arena *a, struct bb_ir_request *req, const char *family,
                const char *parent, const char *name, const char *json, size_t len)
{
    struct bb_ir_extra *v = bb_arena_alloc(a, (req->n_extras + 1) * sizeof *v);
    const char *dotted = name;
    if (parent) {
        size_t pl = strlen(parent), nl = strlen(name);
        char *d = bb_arena_alloc(a, pl + nl + 2);
        if (d) {
            memcpy(d, parent, pl);
            d[pl] = '.';
            memcpy(d + pl + 1, name, nl + 1);
        }
        dotted = d;
    }
    struct bb_ir_str j = bb_ir_strdup(a, json, len);
    if (!v || !dotted || !j.p)
        return -1;
    if (req->n_extras)
        memcpy(v, req->extras, req->n_extras * sizeof *v);
    v[req->n_extras++] = (struct bb_ir_extra){parent, name, dotted, j};
    req->extras = v;
    req->extras_family = family;
    return 0;
}

const char *bb_ir_stop_name(enum bb_ir_stop s)
{
    static const char *const names[] = {"unset",         "end_turn", "max_tokens",
                                        "stop_sequence", "tool_use", "content_filter",
                                        "pause",         "refusal",  "error"};
    return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "unset";
}

void bb_ir_usage_max(struct bb_ir_usage *u, const struct bb_ir_usage *v)
{
    if (!v->set)
        return;
    u->set = true;
    u->input = v->input > u->input ? v->input : u->input;
    u->output = v->output > u->output ? v->output : u->output;
    u->cache_read = v->cache_read > u->cache_read ? v->cache_read : u->cache_read;
    u->cache_write = v->cache_write > u->cache_write ? v->cache_write : u->cache_write;
    u->reasoning = v->reasoning > u->reasoning ? v->reasoning : u->reasoning;
}

/* Tool-call id shapes (SPEC §4): a foreign id is shown to a client as <prefix>bb_<original>
 * (prefix: its protocol's tool_id_prefix), and a client echoing such an id gets the original
 * back. Stateless, so it survives failover and reloads. Ids outside [A-Za-z0-9_-] are kept as
 * they are. */
static bool id_chars_ok(const struct bb_ir_str *s)
{
    for (size_t i = 0; i < s->len; i++) {
        char c = s->p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return s->len > 0;
}

struct bb_ir_str bb_ir_id_wrap(struct bb_arena *a, const char *pre, struct bb_ir_str id)
{
    if (!id.p || !id_chars_ok(&id))
        return id;
    size_t pl = strlen(pre);
    char *out = bb_arena_alloc(a, pl + 3 + id.len + 1);
    if (!out)
        return id;
    memcpy(out, pre, pl);
    memcpy(out + pl, "bb_", 3);
    memcpy(out + pl + 3, id.p, id.len + 1);
    struct bb_ir_str r = {out, pl + 3 + id.len};
    return r;
}

static void unwrap(const char *pre, struct bb_ir_str *id)
{
    if (!id->p)
        return;
    size_t pl = strlen(pre);
    if (id->len > pl + 3 && memcmp(id->p, pre, pl) == 0 && memcmp(id->p + pl, "bb_", 3) == 0) {
        id->p += pl + 3;
        id->len -= pl + 3;
    }
}

void bb_ir_ids_unwrap(struct bb_ir_request *req, const char *prefix)
{
    for (size_t m = 0; m < req->n_messages; m++)
        for (size_t b = 0; b < req->messages[m].n_blocks; b++) {
            struct bb_ir_block *blk = &req->messages[m].blocks[b];
            if (blk->type == BB_IR_TOOL_USE || blk->type == BB_IR_TOOL_RESULT)
                unwrap(prefix, &blk->id);
        }
}

void bb_ir_response_wrap_ids(struct bb_arena *a, struct bb_ir_response *r, const char *prefix)
{
    for (size_t b = 0; b < r->n_blocks; b++)
        if (r->blocks[b].type == BB_IR_TOOL_USE)
            r->blocks[b].id = bb_ir_id_wrap(a, prefix, r->blocks[b].id);
}

const struct bb_ir_tool *bb_ir_tool_find(const struct bb_ir_tool *tools, size_t n, const char *name,
                                         size_t len)
{
    for (size_t i = 0; name && i < n; i++)
        if (tools[i].name.p && tools[i].name.len == len && memcmp(tools[i].name.p, name, len) == 0)
            return &tools[i];
    return NULL;
}

const struct bb_ir_block *bb_ir_error_result(struct bb_arena *a, const struct bb_ir_block *b,
                                             struct bb_ir_block *tmp)
{
    if (!b->is_error || !b->text.p)
        return b;
    *tmp = *b;
    tmp->is_error = false; /* carried in the text */
    if (b->text.len >= 5 && strncasecmp(b->text.p, "error", 5) == 0)
        return tmp;
    char *s = bb_arena_alloc(a, b->text.len + 8);
    if (!s)
        return b;
    memcpy(s, "Error: ", 7);
    memcpy(s + 7, b->text.p, b->text.len);
    s[b->text.len + 7] = '\0';
    tmp->text = (struct bb_ir_str){s, b->text.len + 7};
    return tmp;
}

const struct bb_ir_request *bb_ir_fold_system(struct bb_arena *a, const struct bb_ir_request *ir)
{
    size_t extra = 0, n_sys_msgs = 0;
    for (size_t i = 0; i < ir->n_messages; i++)
        if (ir->messages[i].role == BB_IR_SYSTEM) {
            extra += ir->messages[i].n_blocks;
            n_sys_msgs++;
        }
    if (!n_sys_msgs)
        return ir;
    struct bb_ir_request *out = bb_arena_alloc(a, sizeof *out);
    struct bb_ir_block *sys = bb_arena_alloc(a, (ir->n_system + extra + 1) * sizeof *sys);
    struct bb_ir_message *msgs =
        bb_arena_alloc(a, (ir->n_messages - n_sys_msgs + 1) * sizeof *msgs);
    if (!out || !sys || !msgs)
        return NULL;
    *out = *ir;
    memcpy(sys, ir->system, ir->n_system * sizeof *sys);
    size_t ns = ir->n_system, nm = 0;
    for (size_t i = 0; i < ir->n_messages; i++) {
        const struct bb_ir_message *m = &ir->messages[i];
        if (m->role != BB_IR_SYSTEM) {
            msgs[nm++] = *m;
            continue;
        }
        memcpy(sys + ns, m->blocks, m->n_blocks * sizeof *sys);
        ns += m->n_blocks;
    }
    out->system = sys;
    out->n_system = ns;
    out->messages = msgs;
    out->n_messages = nm;
    return out;
}
