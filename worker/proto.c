/*
 * proto: the registry of protocol modules and the per-hop dropped-field list.
 * Worker process, single-threaded: the dropped list is filled by a writer and read by the
 * proxy right after, within one call chain.
 */
#include "worker/proto.h"

#include <stdio.h>
#include <string.h>

#include "common/jscan.h"

static const struct bb_proto_ops *const registry[BB_PROTO__COUNT] = {
    [BB_PROTO_OPENAI] = &bb_proto_openai,       [BB_PROTO_RESPONSES] = &bb_proto_responses,
    [BB_PROTO_ANTHROPIC] = &bb_proto_anthropic, [BB_PROTO_GEMINI] = &bb_proto_gemini,
    [BB_PROTO_BEDROCK] = &bb_proto_bedrock,     [BB_PROTO_COHERE] = &bb_proto_cohere,
};

const struct bb_proto_ops *bb_proto_get(enum bb_proto p)
{
    return (unsigned)p < BB_PROTO__COUNT ? registry[p] : NULL;
}

#define DROPPED_MAX 32
static const char *dropped[DROPPED_MAX];
static size_t n_dropped;
static char dropped_text[1024];

void bb_proto_drop(struct bb_arena *a, const char *field)
{
    field = bb_ir_field_name(a, field); /* names can come from the client's JSON */
    for (size_t i = 0; i < n_dropped; i++)
        if (strcmp(dropped[i], field) == 0)
            return;
    if (n_dropped < DROPPED_MAX)
        dropped[n_dropped++] = field;
}

const char *bb_proto_dropped(void)
{
    if (!n_dropped)
        return NULL;
    size_t len = 0;
    dropped_text[0] = '\0';
    for (size_t i = 0; i < n_dropped; i++) {
        size_t fl = strlen(dropped[i]);
        if (len + fl + 2 >= sizeof dropped_text)
            break;
        if (len) {
            dropped_text[len++] = ',';
        }
        memcpy(dropped_text + len, dropped[i], fl + 1);
        len += fl;
    }
    return dropped_text;
}

void bb_proto_dropped_reset(void)
{
    n_dropped = 0;
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

int bb_proto_inband(const struct bb_proto_ops *ops, const char *body, size_t len,
                    struct bb_proto_error *out)
{
    if (ops->read_error(body, len, out) != 0 && !out->message[0])
        snprintf(out->message, sizeof out->message, "an error object without a message");
    return 1;
}
