/*
 * proto: the registry of protocol modules, the per-hop dropped-field list (kept in the egress
 * context the writer is given) and the answer checks' shared scan. Worker process.
 */
#include "worker/proto.h"

#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>

#include "common/jscan.h"

static const struct bb_proto_ops *const registry[BB_PROTO__COUNT] = {
#define X(id, name, module) [BB_PROTO_##id] = &bb_proto_##module,
    BB_PROTO_LIST(X)
#undef X
};

const struct bb_proto_ops *bb_proto_get(enum bb_proto p)
{
    return (unsigned)p < BB_PROTO__COUNT ? registry[p] : NULL;
}

int bb_proto_error_message_body(char *out, size_t cap, int status, const char *type,
                                const char *busbar_type, const char *code, const char *msg)
{
    (void)status;
    (void)type;
    (void)busbar_type;
    (void)code;
    return snprintf(out, cap, "{\"message\":%s}", msg);
}

bool bb_path_starts(const char *path, const char *prefix)
{
    return strncmp(path, prefix, strlen(prefix)) == 0;
}

bool bb_path_ends(const char *path, size_t len, const char *suffix)
{
    size_t k = strlen(suffix);
    return len >= k && memcmp(path + len - k, suffix, k) == 0;
}

const char *bb_proto_accept(const struct bb_proto_ops *ops, bool stream)
{
    if (!stream)
        return "application/json";
    return ops->framing == BB_FRAMING_EVENTSTREAM ? "application/vnd.amazon.eventstream"
                                                  : "text/event-stream";
}

enum bb_framing bb_proto_client_framing(const struct bb_proto_ops *ops,
                                        const struct bb_ingress_ctx *ctx)
{
    return ops->client_framing ? ops->client_framing(ctx) : ops->framing;
}

int bb_proto_put(struct evbuffer *out, const char *a, const char *b, const char *c)
{
    const char *part[3] = {a, b, c};
    for (size_t i = 0; i < 3; i++)
        if (part[i] && evbuffer_add(out, part[i], strlen(part[i])) < 0)
            return -1;
    return 0;
}

int bb_proto_bearer(struct evbuffer *out, const char *key)
{
    if (!key || !*key)
        return 0;
    return bb_proto_put(out, "Authorization: Bearer ", key, "\r\n");
}

void bb_proto_drop(struct bb_arena *a, const struct bb_egress_ctx *ctx, const char *field)
{
    struct bb_dropped *d = ctx ? ctx->dropped : NULL;
    if (!d)
        return;
    field = bb_ir_field_name(a, field); /* names can come from the client's JSON */
    for (size_t i = 0; i < d->n; i++)
        if (strcmp(d->names[i], field) == 0)
            return;
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8;
        const char **v = bb_arena_alloc(a, cap * sizeof *v);
        if (!v)
            return; /* out of memory: the header loses a name, the request goes on */
        if (d->n)
            memcpy(v, d->names, d->n * sizeof *v);
        d->names = v;
        d->cap = cap;
    }
    d->names[d->n++] = field;
}

size_t bb_proto_dropped_text(const struct bb_dropped *d, char *buf, size_t cap)
{
    size_t len = 0;
    if (cap)
        buf[0] = '\0';
    for (size_t i = 0; d && i < d->n; i++) {
        size_t fl = strlen(d->names[i]);
        if (len + fl + 2 > cap)
            break;
        if (len)
            buf[len++] = ',';
        memcpy(buf + len, d->names[i], fl + 1);
        len += fl;
    }
    return len;
}

int bb_proto_scan_answer(const char *body, size_t len, struct bb_jscan_field *f, size_t n,
                         struct bb_proto_error *out)
{
    struct bb_err err;
    memset(out, 0, sizeof *out);
    if (bb_jscan_object(body, len, f, n, 128, &err) < 0) {
        snprintf(out->message, sizeof out->message, "not a JSON object: %.300s", err.msg);
        return -1;
    }
    return 0;
}

bool bb_proto_member_is(const char *body, const struct bb_jscan_field *f, const char *s)
{
    size_t n = strlen(s);
    return f->type == BB_JSTRING && f->len == n + 2 && memcmp(body + f->off + 1, s, n) == 0;
}

void bb_proto_frame_type(const struct bb_frame *f, const struct bb_jscan_field *t, char *out,
                         size_t cap)
{
    out[0] = '\0';
    if (t && t->type == BB_JSTRING && bb_jscan_unquote(f->data + t->off, t->len, out, cap) >= 0)
        return;
    size_t n = f->event && f->event_len < cap ? f->event_len : 0;
    memcpy(out, f->event ? f->event : "", n);
    out[n] = '\0';
}

int bb_proto_frame_error(const struct bb_proto_ops *ops, const char *data, size_t len,
                         const char *fallback, struct bb_frame_info *out)
{
    struct bb_proto_error pe;
    memset(&pe, 0, sizeof pe);
    out->error = true;
    if (data && len && ops->read_error(data, len, &pe) == 0 && pe.message[0])
        snprintf(out->error_msg, sizeof out->error_msg, "%.190s", pe.message);
    else
        snprintf(out->error_msg, sizeof out->error_msg, "%s", fallback);
    return 0;
}

bool bb_proto_nonempty_str(const struct bb_jscan_field *f)
{
    return f->type == BB_JSTRING && f->len > 2;
}

void bb_proto_usage_scan_oai(const char *u, size_t n, const char *const keys[4],
                             struct bb_ir_usage *out)
{
    struct bb_jscan_field f[4] = {
        {.key = keys[0]}, {.key = keys[1]}, {.key = keys[2]}, {.key = keys[3]}};
    struct bb_err err;
    uint64_t in;
    memset(out, 0, sizeof *out);
    bb_jscan_object(u, n, f, 4, 64, &err);
    bb_jscan_field_u64(u, &f[0], &in);
    bb_jscan_field_u64(u, &f[1], &out->output);
    if (f[2].type == BB_JOBJECT) {
        struct bb_jscan_field d[2] = {{.key = "cached_tokens"}, {.key = "cache_write_tokens"}};
        bb_jscan_object(u + f[2].off, f[2].len, d, 2, 64, &err);
        bb_jscan_field_u64(u + f[2].off, &d[0], &out->cache_read);
        bb_jscan_field_u64(u + f[2].off, &d[1], &out->cache_write);
    }
    if (f[3].type == BB_JOBJECT)
        bb_jscan_member_u64(u + f[3].off, f[3].len, "reasoning_tokens", &out->reasoning);
    uint64_t cached = out->cache_read + out->cache_write;
    out->input = in > cached ? in - cached : 0;
    out->set = true;
}

int bb_proto_inband(const struct bb_proto_ops *ops, const char *body, size_t len,
                    struct bb_proto_error *out)
{
    if (ops->read_error(body, len, out) != 0 && !out->message[0])
        snprintf(out->message, sizeof out->message, "an error object without a message");
    return 1;
}

void bb_proto_drop_hosted(struct bb_arena *a, const struct bb_egress_ctx *ctx,
                          const struct bb_ir_request *ir, const char *carries)
{
    for (size_t i = 0; i < ir->n_hosted; i++) {
        const struct bb_ir_str *k = &ir->hosted[i].kind;
        if (!k->p || (carries && strcmp(k->p, carries) == 0))
            continue;
        char *name = bb_arena_alloc(a, k->len + 7);
        if (!name)
            continue;
        memcpy(name, "tools.", 6);
        memcpy(name + 6, k->p, k->len + 1);
        bb_proto_drop(a, ctx, bb_ir_field_name(a, name));
    }
}

int bb_proto_write_request(const struct bb_proto_ops *ops, struct bb_arena *a,
                           const struct bb_ir_request *ir, const struct bb_egress_ctx *ctx,
                           struct bb_egress_req *out, struct bb_err *err)
{
    if (!ops->system_in_place && !(ir = bb_ir_fold_system(a, ir)))
        return bb_err_set(err, "out of memory");
    /* members only a writer of the reader's own body format can carry */
    bool same =
        ops->body_family && ir->extras_family && !strcmp(ops->body_family, ir->extras_family);
    for (size_t i = 0; i < ir->n_extras && !same; i++)
        bb_proto_drop(a, ctx, ir->extras[i].dotted); /* (bb_proto_drop sanitises the name) */
    for (size_t i = 0; i < ir->n_tools && !same; i++)
        if (ir->tools[i].defer_loading) /* offered from the start */
            bb_proto_drop(a, ctx, "tools.defer_loading");
    return ops->write_request(a, ir, ctx, out, err);
}
