/*
 * proto_bedrock: Amazon Bedrock Converse / ConverseStream (REST JSON, camelCase) ↔ IR, in both
 * roles: ingress (a client speaks Converse to busbar at /model/{id}/converse[-stream]) and
 * egress (busbar calls bedrock-runtime, signing with SigV4 or a Bedrock API key).
 *
 * Worker process, single-threaded; stateless apart from the per-stream encoder/decoder state
 * the caller allocates. Reference: @aws-sdk/client-bedrock-runtime models_0.d.ts.
 *
 * Shape notes that drive the code:
 * - The model id lives in the URL, never in the body.
 * - Blocks are unions: an object with exactly one member naming the kind ({text}, {toolUse},
 *   {reasoningContent}, ...). Binary members (image bytes, redactedContent) are base64 on the
 *   wire, which is what the IR carries too.
 * - Usage follows Anthropic's convention already (inputTokens excludes cache reads/writes).
 * - Streams are AWS event-stream messages whose :event-type names the union member; text
 *   blocks open implicitly with their first contentBlockDelta, and metadata (usage) comes
 *   after messageStop, so the IR's MESSAGE_DELTA + MESSAGE_STOP are emitted at metadata.
 * - Converse rejects blank text blocks and consecutive messages of one role; the writer skips
 *   the former and merges the latter.
 */
#include "worker/proto.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <json-c/json.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "worker/eventstream.h"
#include "worker/sigv4.h"
#include "common/jscan.h"

#define JSON_DEPTH 128
#define JFLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)
#define CLAUDE_MIN_BUDGET 1024u

/* ---------------------------------------------------------------- JSON helpers */

/* Parse a whole body (trailing whitespace only). NULL with err naming what on failure. */
static struct json_object *parse_json(const char *p, size_t n, const char *what, struct bb_err *err)
{
    if (n > (size_t)INT32_MAX) {
        bb_err_set(err, "%s: body too large", what);
        return NULL;
    }
    struct json_tokener *tok = json_tokener_new_ex(JSON_DEPTH);
    if (!tok) {
        bb_err_set(err, "%s: out of memory", what);
        return NULL;
    }
    struct json_object *o = json_tokener_parse_ex(tok, p, (int)n);
    enum json_tokener_error e = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (!o || e != json_tokener_success) {
        json_object_put(o);
        bb_err_set(err, "%s: invalid JSON (%s)", what,
                   e == json_tokener_continue ? "unexpected end" : json_tokener_error_desc(e));
        return NULL;
    }
    for (; end < n; end++)
        if (!isspace((unsigned char)p[end])) {
            json_object_put(o);
            bb_err_set(err, "%s: trailing data after the JSON value", what);
            return NULL;
        }
    return o;
}

static struct json_object *jget(struct json_object *o, const char *k)
{
    struct json_object *v = NULL;
    if (!o || !json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, k, &v))
        return NULL;
    return v;
}

static bool is_type(struct json_object *o, enum json_type t)
{
    return o && json_object_is_type(o, t);
}

static bool is_number(struct json_object *o)
{
    return is_type(o, json_type_int) || is_type(o, json_type_double);
}

/* The serialised text of o, in the arena. */
static struct bb_ir_str arena_json(struct bb_arena *a, struct json_object *o)
{
    size_t n = 0;
    const char *s = json_object_to_json_string_length(o, JFLAGS, &n);
    return bb_ir_strdup(a, s, n);
}

/* A double that serialises in its shortest round-tripping form (0.7, not 0.69999…). */
static struct json_object *new_double(double d)
{
    char buf[40];
    if (!isfinite(d))
        return json_object_new_double(0);
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, d);
        if (strtod(buf, NULL) == d)
            break;
    }
    return json_object_new_double_s(d, buf);
}

static struct json_object *new_u64(uint64_t v)
{
    return json_object_new_int64(v > INT64_MAX ? INT64_MAX : (int64_t)v);
}

static struct json_object *new_str(const struct bb_ir_str *s)
{
    return json_object_new_string_len(s->p ? s->p : "", (int)(s->p ? s->len : 0));
}

static bool has(const struct bb_ir_str *s)
{
    return s->p != NULL;
}

static void add(struct json_object *o, const char *k, struct json_object *v)
{
    json_object_object_add(o, k, v);
}

/* Empty or whitespace only (Converse rejects such text). */
static bool blank(const struct bb_ir_str *s)
{
    for (size_t i = 0; s->p && i < s->len; i++)
        if (!isspace((unsigned char)s->p[i]))
            return false;
    return true;
}

/* Parse a raw-JSON IR field (tool input, schema); NULL when absent or not valid JSON. */
static struct json_object *parse_raw(const struct bb_ir_str *s)
{
    if (!s->p || !s->len)
        return NULL;
    struct bb_err e;
    return parse_json(s->p, s->len, "raw", &e);
}

/* ---------------------------------------------------------------- enums */

static enum bb_ir_stop stop_from_wire(const char *s)
{
    if (!s)
        return BB_IR_STOP_UNSET;
    if (!strcmp(s, "end_turn"))
        return BB_IR_STOP_END_TURN;
    if (!strcmp(s, "tool_use"))
        return BB_IR_STOP_TOOL_USE;
    if (!strcmp(s, "max_tokens") || !strcmp(s, "model_context_window_exceeded"))
        return BB_IR_STOP_MAX_TOKENS;
    if (!strcmp(s, "stop_sequence"))
        return BB_IR_STOP_STOP_SEQUENCE;
    if (!strcmp(s, "guardrail_intervened") || !strcmp(s, "content_filtered"))
        return BB_IR_STOP_CONTENT_FILTER;
    if (!strcmp(s, "malformed_model_output") || !strcmp(s, "malformed_tool_use"))
        return BB_IR_STOP_ERROR;
    return BB_IR_STOP_END_TURN;
}

static const char *stop_to_wire(enum bb_ir_stop s)
{
    switch (s) {
    case BB_IR_STOP_MAX_TOKENS:
        return "max_tokens";
    case BB_IR_STOP_STOP_SEQUENCE:
        return "stop_sequence";
    case BB_IR_STOP_TOOL_USE:
        return "tool_use";
    case BB_IR_STOP_CONTENT_FILTER:
    case BB_IR_STOP_REFUSAL:
        return "content_filtered";
    case BB_IR_STOP_ERROR:
        return "malformed_model_output";
    default:
        return "end_turn"; /* END_TURN, PAUSE (no equivalent), UNSET */
    }
}

/* Document formats ↔ media types (DocumentFormat in the SDK). */
static const struct {
    const char *format, *media;
} doc_formats[] = {
    {"pdf", "application/pdf"},
    {"csv", "text/csv"},
    {"doc", "application/msword"},
    {"docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"},
    {"xls", "application/vnd.ms-excel"},
    {"xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"},
    {"html", "text/html"},
    {"txt", "text/plain"},
    {"md", "text/markdown"},
};

static const char *doc_media(const char *format)
{
    for (size_t i = 0; i < sizeof doc_formats / sizeof doc_formats[0]; i++)
        if (!strcmp(format, doc_formats[i].format))
            return doc_formats[i].media;
    return NULL;
}

static const char *doc_format(const char *media, size_t n)
{
    for (size_t i = 0; i < sizeof doc_formats / sizeof doc_formats[0]; i++)
        if (strlen(doc_formats[i].media) == n && !strncasecmp(media, doc_formats[i].media, n))
            return doc_formats[i].format;
    return NULL;
}

/* ImageFormat from a media type; NULL when Converse has no such format. */
static const char *image_format(const char *media, size_t n)
{
    static const struct {
        const char *media, *format;
    } t[] = {{"image/png", "png"},
             {"image/jpeg", "jpeg"},
             {"image/jpg", "jpeg"},
             {"image/gif", "gif"},
             {"image/webp", "webp"}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (strlen(t[i].media) == n && !strncasecmp(media, t[i].media, n))
            return t[i].format;
    return NULL;
}

/* ---------------------------------------------------------------- reading (ingress + responses) */

struct rd {
    struct bb_arena *a;
    struct bb_ir_request *req; /* NULL when reading a response */
    struct bb_err *err;
};

static int oom(struct rd *r)
{
    return bb_err_set(r->err, "out of memory");
}

/* Record an unsupported field as "prefix.key"; keys outside [A-Za-z0-9_-] are not echoed (they
 * end up in a response header). */
static void unsup(struct rd *r, const char *prefix, const char *key)
{
    if (!r->req)
        return;
    size_t kl = strlen(key);
    bool safe = kl > 0 && kl <= 64;
    for (size_t i = 0; safe && i < kl; i++)
        safe = isalnum((unsigned char)key[i]) || key[i] == '_' || key[i] == '-';
    char buf[160];
    int n = snprintf(buf, sizeof buf, "%s%s%s", prefix ? prefix : "", prefix ? "." : "",
                     safe ? key : "?");
    char *s = bb_arena_strndup(r->a, buf, (size_t)n);
    if (s)
        bb_ir_unsupported(r->a, r->req, s);
}

static int dup_str(struct rd *r, struct json_object *s, struct bb_ir_str *out)
{
    *out = bb_ir_strdup(r->a, json_object_get_string(s), (size_t)json_object_get_string_len(s));
    return out->p ? 0 : oom(r);
}

/* A required/optional string member. 0 = set (or absent when optional), -1 = error. */
static int member_str(struct rd *r, struct json_object *o, const char *k, const char *where,
                      bool required, struct bb_ir_str *out)
{
    struct json_object *v = jget(o, k);
    if (!v) {
        if (required)
            return bb_err_set(r->err, "%s.%s: required", where, k);
        return 0;
    }
    if (!is_type(v, json_type_string))
        return bb_err_set(r->err, "%s.%s: expected a string", where, k);
    return dup_str(r, v, out);
}

static int base64_of(struct rd *r, const char *s, size_t n, struct bb_ir_str *out)
{
    if (n > (size_t)INT32_MAX / 2)
        return bb_err_set(r->err, "document too large");
    size_t cap = 4 * ((n + 2) / 3) + 1;
    char *b = bb_arena_alloc(r->a, cap);
    if (!b)
        return oom(r);
    int len = EVP_EncodeBlock((unsigned char *)b, (const unsigned char *)s, (int)n);
    out->p = b;
    out->len = (size_t)len;
    return 0;
}

/* image: {format, source:{bytes}|{s3Location}}. 1 = filled, 0 = skipped. */
static int read_image(struct rd *r, struct json_object *o, const char *where, struct bb_ir_block *b)
{
    if (!is_type(o, json_type_object))
        return bb_err_set(r->err, "%s.image: expected an object", where);
    struct json_object *fmt = jget(o, "format"), *src = jget(o, "source");
    if (!is_type(fmt, json_type_string))
        return bb_err_set(r->err, "%s.image.format: expected a string", where);
    if (!is_type(src, json_type_object))
        return bb_err_set(r->err, "%s.image.source: expected an object", where);
    struct json_object *bytes = jget(src, "bytes");
    if (!bytes) {
        unsup(r, "image", jget(src, "s3Location") ? "s3Location" : "source");
        return 0;
    }
    if (!is_type(bytes, json_type_string))
        return bb_err_set(r->err, "%s.image.source.bytes: expected a base64 string", where);
    char mt[64];
    int n = snprintf(mt, sizeof mt, "image/%s", json_object_get_string(fmt));
    b->type = BB_IR_IMAGE;
    b->media_type = bb_ir_strdup(r->a, mt, (size_t)n < sizeof mt ? (size_t)n : sizeof mt - 1);
    if (!b->media_type.p || dup_str(r, bytes, &b->data) < 0)
        return oom(r);
    return 1;
}

/* document: {format, name, source:{bytes}|{text}|{content:[{text}]}|{s3Location}}. */
static int read_document(struct rd *r, struct json_object *o, const char *where,
                         struct bb_ir_block *b)
{
    if (!is_type(o, json_type_object))
        return bb_err_set(r->err, "%s.document: expected an object", where);
    struct json_object *fmt = jget(o, "format"), *src = jget(o, "source");
    if (fmt && !is_type(fmt, json_type_string))
        return bb_err_set(r->err, "%s.document.format: expected a string", where);
    if (!is_type(src, json_type_object))
        return bb_err_set(r->err, "%s.document.source: expected an object", where);
    char w[128];
    snprintf(w, sizeof w, "%s.document", where);
    b->type = BB_IR_DOCUMENT;
    if (member_str(r, o, "name", w, false, &b->name) < 0)
        return -1;
    const char *media = fmt ? doc_media(json_object_get_string(fmt)) : NULL;
    struct json_object *bytes = jget(src, "bytes"), *text = jget(src, "text"),
                       *content = jget(src, "content");
    if (bytes) {
        if (!is_type(bytes, json_type_string))
            return bb_err_set(r->err, "%s.document.source.bytes: expected a base64 string", where);
        if (dup_str(r, bytes, &b->data) < 0)
            return -1;
    } else if (text || content) {
        /* Inline text documents travel as base64 text/plain (or the stated format). */
        struct json_object *t = text;
        if (!text) {
            if (!is_type(content, json_type_array) || json_object_array_length(content) != 1 ||
                !is_type(jget(json_object_array_get_idx(content, 0), "text"), json_type_string)) {
                unsup(r, "document", "content");
                return 0;
            }
            t = jget(json_object_array_get_idx(content, 0), "text");
        }
        if (!is_type(t, json_type_string))
            return bb_err_set(r->err, "%s.document.source.text: expected a string", where);
        if (base64_of(r, json_object_get_string(t), (size_t)json_object_get_string_len(t),
                      &b->data) < 0)
            return -1;
        if (!media)
            media = "text/plain";
    } else {
        unsup(r, "document", jget(src, "s3Location") ? "s3Location" : "source");
        return 0;
    }
    if (!media)
        media = "application/octet-stream";
    b->media_type = bb_ir_strdup(r->a, media, strlen(media));
    return b->media_type.p ? 1 : oom(r);
}

static int read_block(struct rd *r, struct json_object *o, const char *where, struct bb_ir_block *b,
                      struct bb_ir_block *prev, bool in_tool_result);

/* toolResult: {toolUseId, content:[{text}|{json}|{image}|{document}], status}. */
static int read_tool_result(struct rd *r, struct json_object *o, const char *where,
                            struct bb_ir_block *b)
{
    char w[128];
    snprintf(w, sizeof w, "%s.toolResult", where);
    if (!is_type(o, json_type_object))
        return bb_err_set(r->err, "%s: expected an object", w);
    b->type = BB_IR_TOOL_RESULT;
    if (member_str(r, o, "toolUseId", w, true, &b->id) < 0)
        return -1;
    struct json_object *st = jget(o, "status"), *content = jget(o, "content");
    if (st) {
        if (!is_type(st, json_type_string))
            return bb_err_set(r->err, "%s.status: expected \"success\" or \"error\"", w);
        b->is_error = !strcmp(json_object_get_string(st), "error");
    }
    if (!content)
        return 1;
    if (!is_type(content, json_type_array))
        return bb_err_set(r->err, "%s.content: expected an array", w);
    size_t n = json_object_array_length(content);
    if (n == 0)
        return 1;
    struct bb_ir_block *v = bb_arena_calloc(r->a, n * sizeof *v);
    if (!v)
        return oom(r);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char wi[160];
        snprintf(wi, sizeof wi, "%s.content[%zu]", w, i);
        int rc = read_block(r, json_object_array_get_idx(content, i), wi, &v[k],
                            k ? &v[k - 1] : NULL, true);
        if (rc < 0)
            return -1;
        k += (size_t)rc;
    }
    /* One text (or JSON) item is the flat form every protocol has; several texts also get the
     * joined flat form (as proto_anthropic does) for writers that only take a string. */
    bool all_text = k > 0;
    size_t total = 0;
    for (size_t i = 0; i < k; i++) {
        all_text &= v[i].type == BB_IR_TEXT;
        total += v[i].text.len + 1;
    }
    if (k == 1 && all_text) {
        b->text = v[0].text;
        return 1;
    }
    b->content = v;
    b->n_content = k;
    if (all_text) {
        char *t = bb_arena_alloc(r->a, total);
        if (!t)
            return oom(r);
        size_t at = 0;
        for (size_t i = 0; i < k; i++) {
            if (i)
                t[at++] = '\n';
            memcpy(t + at, v[i].text.p, v[i].text.len);
            at += v[i].text.len;
        }
        t[at] = '\0';
        b->text.p = t;
        b->text.len = at;
    }
    return 1;
}

/* reasoningContent: {reasoningText:{text, signature}} | {redactedContent}. */
static int read_reasoning(struct rd *r, struct json_object *o, const char *where,
                          struct bb_ir_block *b)
{
    char w[128];
    snprintf(w, sizeof w, "%s.reasoningContent", where);
    if (!is_type(o, json_type_object))
        return bb_err_set(r->err, "%s: expected an object", w);
    struct json_object *rt = jget(o, "reasoningText"), *red = jget(o, "redactedContent");
    if (rt) {
        if (!is_type(rt, json_type_object))
            return bb_err_set(r->err, "%s.reasoningText: expected an object", w);
        char w2[160];
        snprintf(w2, sizeof w2, "%s.reasoningText", w);
        b->type = BB_IR_THINKING;
        if (member_str(r, rt, "text", w2, true, &b->text) < 0 ||
            member_str(r, rt, "signature", w2, false, &b->signature) < 0)
            return -1;
        return 1;
    }
    if (red) {
        if (!is_type(red, json_type_string))
            return bb_err_set(r->err, "%s.redactedContent: expected a base64 string", w);
        b->type = BB_IR_REDACTED_THINKING;
        return dup_str(r, red, &b->signature) < 0 ? -1 : 1;
    }
    unsup(r, NULL, "reasoningContent");
    return 0;
}

/* One content block (a union object). 1 = b filled, 0 = nothing to add, -1 = error. */
static int read_block(struct rd *r, struct json_object *o, const char *where, struct bb_ir_block *b,
                      struct bb_ir_block *prev, bool in_tool_result)
{
    if (!is_type(o, json_type_object))
        return bb_err_set(r->err, "%s: expected an object", where);
    memset(b, 0, sizeof *b);
    json_object_object_foreach(o, key, val)
    {
        if (!strcmp(key, "text")) {
            if (!is_type(val, json_type_string))
                return bb_err_set(r->err, "%s.text: expected a string", where);
            b->type = BB_IR_TEXT;
            return dup_str(r, val, &b->text) < 0 ? -1 : 1;
        }
        if (!strcmp(key, "image"))
            return read_image(r, val, where, b);
        if (!strcmp(key, "document"))
            return read_document(r, val, where, b);
        if (in_tool_result && !strcmp(key, "json")) {
            b->type = BB_IR_TEXT;
            b->text = arena_json(r->a, val);
            return b->text.p ? 1 : oom(r);
        }
        if (in_tool_result)
            break;
        if (!strcmp(key, "toolUse")) {
            char w[128];
            snprintf(w, sizeof w, "%s.toolUse", where);
            if (!is_type(val, json_type_object))
                return bb_err_set(r->err, "%s: expected an object", w);
            b->type = BB_IR_TOOL_USE;
            if (member_str(r, val, "toolUseId", w, true, &b->id) < 0 ||
                member_str(r, val, "name", w, true, &b->name) < 0)
                return -1;
            struct json_object *in = jget(val, "input");
            b->input_json = in ? arena_json(r->a, in) : bb_ir_strdup(r->a, "{}", 2);
            return b->input_json.p ? 1 : oom(r);
        }
        if (!strcmp(key, "toolResult"))
            return read_tool_result(r, val, where, b);
        if (!strcmp(key, "reasoningContent"))
            return read_reasoning(r, val, where, b);
        if (!strcmp(key, "cachePoint")) {
            /* Bedrock marks a cache boundary after a block; the IR flags that block. */
            if (prev)
                prev->cache_control = true;
            else
                unsup(r, NULL, "cachePoint");
            return 0;
        }
        if (!strcmp(key, "citationsContent")) {
            /* Model output echoed back: keep the generated text, the citations as raw JSON. */
            struct json_object *content = jget(val, "content"), *cit = jget(val, "citations");
            struct bb_ir_str text = {0};
            size_t total = 0;
            for (size_t i = 0;
                 is_type(content, json_type_array) && i < json_object_array_length(content); i++)
                if (is_type(jget(json_object_array_get_idx(content, i), "text"), json_type_string))
                    total += (size_t)json_object_get_string_len(
                        jget(json_object_array_get_idx(content, i), "text"));
            char *t = bb_arena_alloc(r->a, total + 1);
            if (!t)
                return oom(r);
            size_t at = 0;
            for (size_t i = 0;
                 is_type(content, json_type_array) && i < json_object_array_length(content); i++) {
                struct json_object *x = jget(json_object_array_get_idx(content, i), "text");
                if (is_type(x, json_type_string)) {
                    size_t l = (size_t)json_object_get_string_len(x);
                    memcpy(t + at, json_object_get_string(x), l);
                    at += l;
                }
            }
            t[at] = '\0';
            text.p = t;
            text.len = at;
            b->type = BB_IR_TEXT;
            b->text = text;
            if (cit) {
                b->citations_json = arena_json(r->a, cit);
                if (!b->citations_json.p)
                    return oom(r);
            }
            return 1;
        }
        unsup(r, "content", key);
        return 0;
    }
    if (in_tool_result) {
        json_object_object_foreach(o, k2, v2)
        {
            (void)v2;
            unsup(r, "toolResult.content", k2);
            break;
        }
        return 0;
    }
    return 0; /* an empty object: nothing */
}

/* A content array into blocks. */
static int read_blocks(struct rd *r, struct json_object *arr, const char *where,
                       struct bb_ir_block **out, size_t *n_out)
{
    size_t n = json_object_array_length(arr);
    *out = NULL;
    *n_out = 0;
    if (n == 0)
        return 0;
    struct bb_ir_block *v = bb_arena_calloc(r->a, n * sizeof *v);
    if (!v)
        return oom(r);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char w[96];
        snprintf(w, sizeof w, "%s[%zu]", where, i);
        int rc =
            read_block(r, json_object_array_get_idx(arr, i), w, &v[k], k ? &v[k - 1] : NULL, false);
        if (rc < 0)
            return -1;
        k += (size_t)rc;
    }
    *out = v;
    *n_out = k;
    return 0;
}

static int read_u32(struct rd *r, struct json_object *v, const char *where, uint32_t *out)
{
    if (!is_type(v, json_type_int))
        return bb_err_set(r->err, "%s: expected an integer", where);
    int64_t x = json_object_get_int64(v);
    if (x < 0 || x > UINT32_MAX)
        return bb_err_set(r->err, "%s: out of range", where);
    *out = (uint32_t)x;
    return 0;
}

static int read_number(struct rd *r, struct json_object *v, const char *where, double *out)
{
    if (!is_number(v))
        return bb_err_set(r->err, "%s: expected a number", where);
    *out = json_object_get_double(v);
    return 0;
}

static int read_inference(struct rd *r, struct json_object *o, struct bb_ir_request *q)
{
    if (!is_type(o, json_type_object))
        return bb_err_set(r->err, "inferenceConfig: expected an object");
    json_object_object_foreach(o, key, val)
    {
        if (!strcmp(key, "maxTokens")) {
            if (read_u32(r, val, "inferenceConfig.maxTokens", &q->max_tokens) < 0)
                return -1;
            q->has_max_tokens = true;
        } else if (!strcmp(key, "temperature")) {
            if (read_number(r, val, "inferenceConfig.temperature", &q->temperature) < 0)
                return -1;
            q->has_temperature = true;
        } else if (!strcmp(key, "topP")) {
            if (read_number(r, val, "inferenceConfig.topP", &q->top_p) < 0)
                return -1;
            q->has_top_p = true;
        } else if (!strcmp(key, "stopSequences")) {
            if (!is_type(val, json_type_array))
                return bb_err_set(r->err, "inferenceConfig.stopSequences: expected an array");
            size_t n = json_object_array_length(val);
            q->stop = n ? bb_arena_calloc(r->a, n * sizeof *q->stop) : NULL;
            if (n && !q->stop)
                return oom(r);
            for (size_t i = 0; i < n; i++) {
                struct json_object *s = json_object_array_get_idx(val, i);
                if (!is_type(s, json_type_string))
                    return bb_err_set(r->err,
                                      "inferenceConfig.stopSequences[%zu]: expected a string", i);
                if (dup_str(r, s, &q->stop[i]) < 0)
                    return -1;
            }
            q->n_stop = n;
        } else {
            unsup(r, "inferenceConfig", key);
        }
    }
    return 0;
}

static int read_tools(struct rd *r, struct json_object *o, struct bb_ir_request *q)
{
    if (!is_type(o, json_type_object))
        return bb_err_set(r->err, "toolConfig: expected an object");
    struct json_object *tools = jget(o, "tools"), *tc = jget(o, "toolChoice");
    if (tools) {
        if (!is_type(tools, json_type_array))
            return bb_err_set(r->err, "toolConfig.tools: expected an array");
        size_t n = json_object_array_length(tools);
        q->tools = n ? bb_arena_calloc(r->a, n * sizeof *q->tools) : NULL;
        if (n && !q->tools)
            return oom(r);
        for (size_t i = 0; i < n; i++) {
            struct json_object *t = json_object_array_get_idx(tools, i);
            char w[64];
            snprintf(w, sizeof w, "toolConfig.tools[%zu]", i);
            if (!is_type(t, json_type_object))
                return bb_err_set(r->err, "%s: expected an object", w);
            struct json_object *spec = jget(t, "toolSpec");
            if (!spec) {
                if (jget(t, "cachePoint"))
                    unsup(r, "toolConfig", "cachePoint");
                else if (jget(t, "systemTool"))
                    unsup(r, "toolConfig", "systemTool");
                else
                    unsup(r, "toolConfig", "tools");
                continue;
            }
            char ws[96];
            snprintf(ws, sizeof ws, "%s.toolSpec", w);
            if (!is_type(spec, json_type_object))
                return bb_err_set(r->err, "%s: expected an object", ws);
            struct bb_ir_tool *tool = &q->tools[q->n_tools];
            if (member_str(r, spec, "name", ws, true, &tool->name) < 0 ||
                member_str(r, spec, "description", ws, false, &tool->description) < 0)
                return -1;
            struct json_object *is = jget(spec, "inputSchema"), *strict = jget(spec, "strict");
            if (is) {
                struct json_object *js = jget(is, "json");
                if (!is_type(js, json_type_object))
                    return bb_err_set(r->err, "%s.inputSchema.json: expected an object", ws);
                tool->parameters_json = arena_json(r->a, js);
                if (!tool->parameters_json.p)
                    return oom(r);
            }
            if (strict) {
                if (!is_type(strict, json_type_boolean))
                    return bb_err_set(r->err, "%s.strict: expected a boolean", ws);
                tool->strict = json_object_get_boolean(strict);
            }
            q->n_tools++;
        }
    }
    if (tc) {
        if (!is_type(tc, json_type_object))
            return bb_err_set(r->err, "toolConfig.toolChoice: expected an object");
        if (jget(tc, "auto")) {
            q->tool_choice = BB_IR_TC_AUTO;
        } else if (jget(tc, "any")) {
            q->tool_choice = BB_IR_TC_ANY;
        } else if (jget(tc, "tool")) {
            q->tool_choice = BB_IR_TC_TOOL;
            if (!is_type(jget(tc, "tool"), json_type_object))
                return bb_err_set(r->err, "toolConfig.toolChoice.tool: expected an object");
            if (member_str(r, jget(tc, "tool"), "name", "toolConfig.toolChoice.tool", true,
                           &q->tool_choice_name) < 0)
                return -1;
        } else {
            return bb_err_set(r->err, "toolConfig.toolChoice: expected one of auto, any or tool");
        }
    }
    return 0;
}

static enum bb_ir_effort effort_from(const char *s)
{
    if (!strcmp(s, "minimal"))
        return BB_IR_EFFORT_MINIMAL;
    if (!strcmp(s, "low"))
        return BB_IR_EFFORT_LOW;
    if (!strcmp(s, "medium"))
        return BB_IR_EFFORT_MEDIUM;
    if (!strcmp(s, "high"))
        return BB_IR_EFFORT_HIGH;
    return BB_IR_EFFORT_UNSET;
}

/* additionalModelRequestFields: the model-specific fields busbar understands. */
static int read_additional(struct rd *r, struct json_object *o, struct bb_ir_request *q)
{
    if (!is_type(o, json_type_object))
        return bb_err_set(r->err, "additionalModelRequestFields: expected an object");
    json_object_object_foreach(o, key, val)
    {
        if (!strcmp(key, "top_k") || !strcmp(key, "topK")) {
            char w[64];
            snprintf(w, sizeof w, "additionalModelRequestFields.%s", key);
            if (read_u32(r, val, w, &q->top_k) < 0)
                return -1;
            q->has_top_k = true;
        } else if (!strcmp(key, "thinking")) {
            /* Anthropic's {type: enabled|adaptive|disabled, budget_tokens}. */
            if (!is_type(val, json_type_object))
                return bb_err_set(r->err,
                                  "additionalModelRequestFields.thinking: expected an object");
            struct json_object *t = jget(val, "type"), *bt = jget(val, "budget_tokens");
            if (t && !is_type(t, json_type_string))
                return bb_err_set(r->err,
                                  "additionalModelRequestFields.thinking.type: expected a string");
            q->reasoning = !t || strcmp(json_object_get_string(t), "disabled") != 0;
            if (bt && read_u32(r, bt, "additionalModelRequestFields.thinking.budget_tokens",
                               &q->reasoning_budget) < 0)
                return -1;
        } else if (!strcmp(key, "reasoningConfig") || !strcmp(key, "reasoning_config")) {
            /* Amazon Nova's {type: enabled, maxReasoningEffort: low|medium|high}. */
            if (!is_type(val, json_type_object)) {
                unsup(r, "additionalModelRequestFields", key);
                continue;
            }
            struct json_object *t = jget(val, "type"), *e = jget(val, "maxReasoningEffort");
            q->reasoning =
                !is_type(t, json_type_string) || strcmp(json_object_get_string(t), "disabled") != 0;
            if (is_type(e, json_type_string))
                q->reasoning_effort = effort_from(json_object_get_string(e));
        } else {
            unsup(r, "additionalModelRequestFields", key);
        }
    }
    return 0;
}

/* outputConfig.textFormat: {type: json_schema, structure:{jsonSchema:{schema, name}}}. */
static int read_output_config(struct rd *r, struct json_object *o, struct bb_ir_request *q)
{
    if (!is_type(o, json_type_object))
        return bb_err_set(r->err, "outputConfig: expected an object");
    json_object_object_foreach(o, key, val)
    {
        if (strcmp(key, "textFormat") != 0) {
            unsup(r, "outputConfig", key);
            continue;
        }
        struct json_object *js = jget(jget(val, "structure"), "jsonSchema");
        if (!is_type(js, json_type_object))
            return bb_err_set(r->err,
                              "outputConfig.textFormat.structure.jsonSchema: expected an object");
        struct json_object *schema = jget(js, "schema");
        if (!is_type(schema, json_type_string))
            return bb_err_set(
                r->err, "outputConfig.textFormat.structure.jsonSchema.schema: expected a string");
        struct bb_err e2;
        struct json_object *parsed =
            parse_json(json_object_get_string(schema), (size_t)json_object_get_string_len(schema),
                       "schema", &e2);
        if (!parsed)
            return bb_err_set(r->err, "outputConfig.textFormat.structure.jsonSchema.schema: "
                                      "expected a JSON schema text");
        json_object_put(parsed);
        q->format = BB_IR_FMT_JSON_SCHEMA;
        if (dup_str(r, schema, &q->format_schema_json) < 0 ||
            member_str(r, js, "name", "outputConfig.textFormat.structure.jsonSchema", false,
                       &q->format_name) < 0)
            return -1;
    }
    return 0;
}

static int read_system(struct rd *r, struct json_object *sys, struct bb_ir_request *q)
{
    if (!is_type(sys, json_type_array))
        return bb_err_set(r->err, "system: expected an array");
    size_t n = json_object_array_length(sys);
    q->system = n ? bb_arena_calloc(r->a, n * sizeof *q->system) : NULL;
    if (n && !q->system)
        return oom(r);
    for (size_t i = 0; i < n; i++) {
        struct json_object *o = json_object_array_get_idx(sys, i);
        if (!is_type(o, json_type_object))
            return bb_err_set(r->err, "system[%zu]: expected an object", i);
        struct json_object *t = jget(o, "text");
        if (t) {
            if (!is_type(t, json_type_string))
                return bb_err_set(r->err, "system[%zu].text: expected a string", i);
            struct bb_ir_block *b = &q->system[q->n_system++];
            b->type = BB_IR_TEXT;
            if (dup_str(r, t, &b->text) < 0)
                return -1;
        } else if (jget(o, "cachePoint")) {
            if (q->n_system)
                q->system[q->n_system - 1].cache_control = true;
            else
                unsup(r, "system", "cachePoint");
        } else {
            json_object_object_foreach(o, key, val)
            {
                (void)val;
                unsup(r, "system", key);
                break;
            }
        }
    }
    return 0;
}

static int read_messages(struct rd *r, struct json_object *msgs, struct bb_ir_request *q)
{
    if (!is_type(msgs, json_type_array))
        return bb_err_set(r->err, "messages: expected an array");
    size_t n = json_object_array_length(msgs);
    q->messages = n ? bb_arena_calloc(r->a, n * sizeof *q->messages) : NULL;
    if (n && !q->messages)
        return oom(r);
    for (size_t i = 0; i < n; i++) {
        struct json_object *m = json_object_array_get_idx(msgs, i);
        if (!is_type(m, json_type_object))
            return bb_err_set(r->err, "messages[%zu]: expected an object", i);
        struct json_object *role = jget(m, "role"), *content = jget(m, "content");
        const char *rs = is_type(role, json_type_string) ? json_object_get_string(role) : NULL;
        struct bb_ir_message *im = &q->messages[i];
        if (rs && !strcmp(rs, "user"))
            im->role = BB_IR_USER;
        else if (rs && !strcmp(rs, "assistant"))
            im->role = BB_IR_ASSISTANT;
        else
            return bb_err_set(r->err, "messages[%zu].role: expected \"user\" or \"assistant\"", i);
        if (!is_type(content, json_type_array))
            return bb_err_set(r->err, "messages[%zu].content: expected an array", i);
        char w[64];
        snprintf(w, sizeof w, "messages[%zu].content", i);
        if (read_blocks(r, content, w, &im->blocks, &im->n_blocks) < 0)
            return -1;
    }
    q->n_messages = n;
    return 0;
}

static int bedrock_read_request(struct bb_arena *a, const char *body, size_t len,
                                const char *model_from_path, struct bb_ir_request *out,
                                struct bb_err *err)
{
    memset(out, 0, sizeof *out);
    struct json_object *root = parse_json(body, len, "request body", err);
    if (!root)
        return -1;
    struct rd r = {a, out, err};
    int rc = -1;
    if (!is_type(root, json_type_object)) {
        bb_err_set(err, "request body: expected a JSON object");
        goto out;
    }
    if (model_from_path) {
        out->model = bb_ir_strdup(a, model_from_path, strlen(model_from_path));
        if (!out->model.p) {
            oom(&r);
            goto out;
        }
    }
    json_object_object_foreach(root, key, val)
    {
        int k = 0;
        if (!strcmp(key, "messages"))
            k = read_messages(&r, val, out);
        else if (!strcmp(key, "system"))
            k = read_system(&r, val, out);
        else if (!strcmp(key, "inferenceConfig"))
            k = read_inference(&r, val, out);
        else if (!strcmp(key, "toolConfig"))
            k = read_tools(&r, val, out);
        else if (!strcmp(key, "additionalModelRequestFields"))
            k = read_additional(&r, val, out);
        else if (!strcmp(key, "outputConfig"))
            k = read_output_config(&r, val, out);
        else if (!strcmp(key, "modelId"))
            continue; /* the SDK never sends it in the body; the URL names the model */
        else
            unsup(&r, NULL, key);
        if (k < 0)
            goto out;
    }
    rc = 0;
out:
    json_object_put(root);
    return rc;
}

/* ---------------------------------------------------------------- responses (egress read) */

static void read_usage(struct json_object *u, struct bb_ir_usage *out)
{
    if (!is_type(u, json_type_object))
        return;
    struct {
        const char *k;
        uint64_t *v;
    } f[] = {{"inputTokens", &out->input},
             {"outputTokens", &out->output},
             {"cacheReadInputTokens", &out->cache_read},
             {"cacheWriteInputTokens", &out->cache_write}};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        struct json_object *v = jget(u, f[i].k);
        if (is_type(v, json_type_int) && json_object_get_int64(v) >= 0) {
            *f[i].v = (uint64_t)json_object_get_int64(v);
            out->set = true;
        }
    }
}

static int bedrock_read_response(struct bb_arena *a, const char *body, size_t len,
                                 struct bb_ir_response *out, struct bb_err *err)
{
    memset(out, 0, sizeof *out);
    struct json_object *root = parse_json(body, len, "bedrock response", err);
    if (!root)
        return -1;
    struct rd r = {a, NULL, err};
    int rc = -1;
    if (!is_type(root, json_type_object)) {
        bb_err_set(err, "bedrock response: expected a JSON object");
        goto out;
    }
    struct json_object *msg = jget(jget(root, "output"), "message");
    if (msg) {
        struct json_object *content = jget(msg, "content");
        if (!is_type(content, json_type_array)) {
            bb_err_set(err, "bedrock response: output.message.content: expected an array");
            goto out;
        }
        if (read_blocks(&r, content, "output.message.content", &out->blocks, &out->n_blocks) < 0)
            goto out;
    }
    struct json_object *sr = jget(root, "stopReason");
    out->stop = stop_from_wire(is_type(sr, json_type_string) ? json_object_get_string(sr) : NULL);
    read_usage(jget(root, "usage"), &out->usage);
    struct json_object *ss = jget(jget(root, "additionalModelResponseFields"), "stop_sequence");
    if (is_type(ss, json_type_string) && dup_str(&r, ss, &out->stop_sequence) < 0)
        goto out;
    rc = 0;
out:
    json_object_put(root);
    return rc;
}

/* ---------------------------------------------------------------- writing blocks */

static struct json_object *usage_json(const struct bb_ir_usage *u)
{
    struct json_object *o = json_object_new_object();
    add(o, "inputTokens", new_u64(u->input));
    add(o, "outputTokens", new_u64(u->output));
    /* totalTokens counts every tier, as Bedrock reports it. */
    add(o, "totalTokens", new_u64(u->input + u->output + u->cache_read + u->cache_write));
    if (u->cache_read)
        add(o, "cacheReadInputTokens", new_u64(u->cache_read));
    if (u->cache_write)
        add(o, "cacheWriteInputTokens", new_u64(u->cache_write));
    return o;
}

static struct json_object *reasoning_text(const struct bb_ir_block *b)
{
    struct json_object *rt = json_object_new_object(), *rc = json_object_new_object(),
                       *o = json_object_new_object();
    add(rt, "text", new_str(&b->text));
    if (has(&b->signature))
        add(rt, "signature", new_str(&b->signature));
    add(rc, "reasoningText", rt);
    add(o, "reasoningContent", rc);
    return o;
}

static struct json_object *redacted(const struct bb_ir_block *b)
{
    struct json_object *rc = json_object_new_object(), *o = json_object_new_object();
    add(rc, "redactedContent", new_str(&b->signature));
    add(o, "reasoningContent", rc);
    return o;
}

/* Tool input text → a JSON object ({} when empty; also when invalid or not an object, which
 * is reported as tool_input). */
static struct json_object *tool_input(struct bb_arena *a, const struct bb_egress_ctx *ctx,
                                      const struct bb_ir_str *s)
{
    struct json_object *in = parse_raw(s);
    if (!is_type(in, json_type_object)) {
        if (s->p && !blank(s))
            bb_proto_drop(a, ctx, "tool_input");
        json_object_put(in);
        in = json_object_new_object();
    }
    return in;
}

/* toolUse; id_seed names a call that has no id (toolUseId is required): <seed>_<n>. */
static struct json_object *tool_use(struct bb_arena *a, const struct bb_egress_ctx *ctx,
                                    const struct bb_ir_block *b,
                                    const char *id_seed, size_t n)
{
    struct json_object *tu = json_object_new_object(), *o = json_object_new_object();
    if (b->id.p && b->id.len) {
        add(tu, "toolUseId", new_str(&b->id));
    } else {
        char id[128];
        snprintf(id, sizeof id, "tooluse_%s_%zu", id_seed ? id_seed : "bb", n);
        add(tu, "toolUseId", json_object_new_string(id));
    }
    add(tu, "name", new_str(&b->name));
    add(tu, "input", tool_input(a, ctx, &b->input_json));
    add(o, "toolUse", tu);
    return o;
}

/* Split "data:<media>;base64,<data>"; false when u is not such a URL. */
static bool data_url(const struct bb_ir_str *u, struct bb_ir_str *media, struct bb_ir_str *data)
{
    if (!u->p || u->len < 5 || strncasecmp(u->p, "data:", 5) != 0)
        return false;
    const char *comma = memchr(u->p, ',', u->len);
    if (!comma)
        return false;
    const char *semi = memchr(u->p + 5, ';', (size_t)(comma - u->p - 5));
    if (!semi || (size_t)(comma - semi) != 7 || strncasecmp(semi, ";base64", 7) != 0)
        return false;
    media->p = (char *)u->p + 5;
    media->len = (size_t)(semi - media->p);
    data->p = (char *)comma + 1;
    data->len = u->len - (size_t)(comma + 1 - u->p);
    return true;
}

/* {image:{format, source:{bytes}}}; NULL (dropped) for URLs and unknown formats. */
static struct json_object *image_json(struct bb_arena *a, const struct bb_egress_ctx *ctx,
                                      const struct bb_ir_block *b)
{
    struct bb_ir_str media = b->media_type, data = b->data;
    if (!has(&data) && !data_url(&b->url, &media, &data)) {
        bb_proto_drop(a, ctx, "images"); /* Converse takes bytes or S3 only, never a URL */
        return NULL;
    }
    const char *fmt = media.p ? image_format(media.p, media.len) : NULL;
    if (!fmt) {
        bb_proto_drop(a, ctx, "images");
        return NULL;
    }
    struct json_object *src = json_object_new_object(), *img = json_object_new_object(),
                       *o = json_object_new_object();
    add(src, "bytes", json_object_new_string_len(data.p, (int)data.len));
    add(img, "format", json_object_new_string(fmt));
    add(img, "source", src);
    add(o, "image", img);
    return o;
}

/* Converse document names: alphanumerics, single spaces, hyphens, parentheses, brackets. */
static struct json_object *doc_name(const struct bb_ir_block *b, unsigned *seq)
{
    char out[80];
    size_t k = 0;
    bool space = false;
    for (size_t i = 0; b->name.p && i < b->name.len && k < sizeof out - 2; i++) {
        unsigned char c = (unsigned char)b->name.p[i];
        if (isalnum(c) || c == '-' || c == '(' || c == ')' || c == '[' || c == ']') {
            if (space && k)
                out[k++] = ' ';
            space = false;
            out[k++] = (char)c;
        } else {
            space = true;
        }
    }
    if (k == 0)
        k = (size_t)snprintf(out, sizeof out, "document-%u", ++*seq);
    return json_object_new_string_len(out, (int)k);
}

static struct json_object *document_json(struct bb_arena *a, const struct bb_egress_ctx *ctx,
                                         const struct bb_ir_block *b,
                                         unsigned *seq)
{
    struct bb_ir_str media = b->media_type, data = b->data;
    if (!has(&data) && !data_url(&b->url, &media, &data)) {
        bb_proto_drop(a, ctx, "documents");
        return NULL;
    }
    const char *fmt = media.p ? doc_format(media.p, media.len) : NULL;
    if (!fmt) {
        bb_proto_drop(a, ctx, "documents");
        return NULL;
    }
    struct json_object *src = json_object_new_object(), *doc = json_object_new_object(),
                       *o = json_object_new_object();
    add(src, "bytes", json_object_new_string_len(data.p, (int)data.len));
    add(doc, "format", json_object_new_string(fmt));
    add(doc, "name", doc_name(b, seq));
    add(doc, "source", src);
    add(o, "document", doc);
    return o;
}

static struct json_object *text_json(const struct bb_ir_str *s)
{
    struct json_object *o = json_object_new_object();
    add(o, "text", new_str(s));
    return o;
}

/* ---------------------------------------------------------------- egress request */

struct wr {
    struct bb_arena *a;
    const struct bb_ir_request *ir;
    const struct bb_egress_ctx *ctx;
    bool anthropic; /* a Claude model: thinking, top_k, tool result status */
    bool caching;   /* a model that takes cachePoint blocks */
    unsigned doc_seq;
};

static void push_cache_point(struct wr *w, struct json_object *arr, bool marked)
{
    if (!marked)
        return;
    if (!w->caching) {
        bb_proto_drop(w->a, w->ctx, "cache_control");
        return;
    }
    struct json_object *cp = json_object_new_object(), *o = json_object_new_object();
    add(cp, "type", json_object_new_string("default"));
    add(o, "cachePoint", cp);
    json_object_array_add(arr, o);
}

/* Tool result content: nested blocks, else the flat text ({json} when it is a JSON object). */
static struct json_object *tool_result(struct wr *w, const struct bb_ir_block *b)
{
    struct json_object *content = json_object_new_array();
    if (b->n_content) {
        for (size_t i = 0; i < b->n_content; i++) {
            const struct bb_ir_block *c = &b->content[i];
            struct json_object *x = NULL;
            if (c->type == BB_IR_TEXT) {
                if (!blank(&c->text))
                    x = text_json(&c->text);
            } else if (c->type == BB_IR_IMAGE) {
                x = image_json(w->a, w->ctx, c);
            } else if (c->type == BB_IR_DOCUMENT) {
                x = document_json(w->a, w->ctx, c, &w->doc_seq);
            } else {
                bb_proto_drop(w->a, w->ctx, "tool_result.content");
            }
            if (x)
                json_object_array_add(content, x);
        }
    } else if (has(&b->text) && b->text.len) {
        struct json_object *js = parse_raw(&b->text);
        if (is_type(js, json_type_object)) {
            struct json_object *o = json_object_new_object();
            add(o, "json", js);
            json_object_array_add(content, o);
        } else {
            json_object_put(js);
            json_object_array_add(content, text_json(&b->text));
        }
    }
    struct json_object *tr = json_object_new_object(), *o = json_object_new_object();
    add(tr, "toolUseId", new_str(&b->id));
    add(tr, "content", content);
    /* status is a Claude-only field on Converse. */
    if (w->anthropic)
        add(tr, "status", json_object_new_string(b->is_error ? "error" : "success"));
    else if (b->is_error)
        bb_proto_drop(w->a, w->ctx, "tool_result.is_error");
    add(o, "toolResult", tr);
    return o;
}

/* Append the blocks of one message (or the system prompt) to arr. */
static void write_blocks(struct wr *w, const struct bb_ir_block *v, size_t n,
                         struct json_object *arr)
{
    for (size_t i = 0; i < n; i++) {
        const struct bb_ir_block *b = &v[i];
        struct json_object *x = NULL;
        switch (b->type) {
        case BB_IR_TEXT:
            if (blank(&b->text))
                break; /* Converse rejects blank text blocks */
            x = text_json(&b->text);
            if (has(&b->citations_json))
                bb_proto_drop(w->a, w->ctx, "citations");
            break;
        case BB_IR_THINKING:
            /* Without a signature the model cannot accept its own reasoning back. */
            if (has(&b->signature) && b->signature.len)
                x = reasoning_text(b);
            else
                bb_proto_drop(w->a, w->ctx, "thinking");
            break;
        case BB_IR_REDACTED_THINKING:
            x = redacted(b);
            break;
        case BB_IR_TOOL_USE:
            x = tool_use(w->a, w->ctx, b, NULL, i);
            break;
        case BB_IR_TOOL_RESULT:
            x = tool_result(w, b);
            break;
        case BB_IR_IMAGE:
            x = image_json(w->a, w->ctx, b);
            break;
        case BB_IR_DOCUMENT:
            x = document_json(w->a, w->ctx, b, &w->doc_seq);
            break;
        }
        if (!x)
            continue;
        json_object_array_add(arr, x);
        push_cache_point(w, arr, b->cache_control);
    }
}

/* Messages with consecutive same-role turns merged (Converse requires alternation). */
static struct json_object *write_messages(struct wr *w)
{
    const struct bb_ir_request *ir = w->ir;
    struct json_object *msgs = json_object_new_array(), *cur = NULL;
    enum bb_ir_role cur_role = BB_IR_USER;
    for (size_t i = 0; i < ir->n_messages; i++) {
        const struct bb_ir_message *m = &ir->messages[i];
        if (has(&m->name))
            bb_proto_drop(w->a, w->ctx, "name");
        if (!cur || cur_role != m->role) {
            struct json_object *content = json_object_new_array();
            write_blocks(w, m->blocks, m->n_blocks, content);
            if (json_object_array_length(content) == 0) {
                json_object_put(content);
                continue;
            }
            struct json_object *jm = json_object_new_object();
            add(jm, "role", json_object_new_string(m->role == BB_IR_USER ? "user" : "assistant"));
            add(jm, "content", content);
            json_object_array_add(msgs, jm);
            cur = content;
            cur_role = m->role;
        } else {
            write_blocks(w, m->blocks, m->n_blocks, cur);
        }
    }
    return msgs;
}

/* The thinking budget: the IR's, else by effort; never below Claude's minimum. The same
 * sizing as proto_anthropic, so a client gets the same thinking on either route to Claude. */
static uint32_t budget_for(const struct bb_ir_request *ir)
{
    uint32_t b = ir->reasoning_budget;
    if (!b) {
        switch (ir->reasoning_effort) {
        case BB_IR_EFFORT_LOW:
            b = 2048;
            break;
        case BB_IR_EFFORT_MEDIUM:
            b = 8192;
            break;
        case BB_IR_EFFORT_HIGH:
            b = 24576;
            break;
        default:
            b = CLAUDE_MIN_BUDGET;
            break;
        }
    }
    return b < CLAUDE_MIN_BUDGET ? CLAUDE_MIN_BUDGET : b;
}

static bool signed_thinking(const struct bb_ir_block *b)
{
    return (b->type == BB_IR_THINKING && b->signature.p && b->signature.len) ||
           b->type == BB_IR_REDACTED_THINKING;
}

/* Claude rejects thinking when the turn it continues (an assistant prefill, or the assistant
 * turn whose tool calls the last user message answers) does not start with signed thinking:
 * history written by a dialect without thinking blocks. */
static bool thinking_fits_history(const struct bb_ir_request *ir)
{
    size_t n = ir->n_messages;
    if (!n)
        return true;
    const struct bb_ir_message *last = &ir->messages[n - 1], *turn = NULL;
    if (last->role == BB_IR_ASSISTANT) {
        turn = last;
    } else {
        bool answers = false;
        for (size_t i = 0; i < last->n_blocks; i++)
            answers |= last->blocks[i].type == BB_IR_TOOL_RESULT;
        for (size_t i = n - 1; answers && i-- > 0;)
            if (ir->messages[i].role == BB_IR_ASSISTANT) {
                turn = &ir->messages[i];
                break;
            }
    }
    if (!turn)
        return true;
    for (size_t i = 0; i < turn->n_blocks; i++) {
        const struct bb_ir_block *b = &turn->blocks[i];
        if (b->type == BB_IR_TEXT && blank(&b->text))
            continue; /* skipped by the writer */
        return signed_thinking(b);
    }
    return false;
}

static struct json_object *write_tools(struct wr *w)
{
    const struct bb_ir_request *ir = w->ir;
    if (!ir->n_tools) {
        if (ir->tool_choice != BB_IR_TC_UNSET && ir->tool_choice != BB_IR_TC_AUTO &&
            ir->tool_choice != BB_IR_TC_NONE)
            bb_proto_drop(w->a, w->ctx, "tool_choice");
        return NULL;
    }
    struct json_object *tools = json_object_new_array();
    for (size_t i = 0; i < ir->n_tools; i++) {
        const struct bb_ir_tool *t = &ir->tools[i];
        struct json_object *spec = json_object_new_object(), *is = json_object_new_object(),
                           *o = json_object_new_object();
        add(spec, "name", new_str(&t->name));
        if (has(&t->description) && t->description.len)
            add(spec, "description", new_str(&t->description));
        struct json_object *schema = parse_raw(&t->parameters_json);
        if (!is_type(schema, json_type_object)) {
            json_object_put(schema);
            schema = json_object_new_object();
            add(schema, "type", json_object_new_string("object"));
            add(schema, "properties", json_object_new_object());
        }
        add(is, "json", schema);
        add(spec, "inputSchema", is);
        if (t->strict)
            bb_proto_drop(w->a, w->ctx, "strict");
        add(o, "toolSpec", spec);
        json_object_array_add(tools, o);
    }
    struct json_object *tc = json_object_new_object();
    add(tc, "tools", tools);
    enum bb_ir_tool_choice choice = ir->tool_choice;
    struct json_object *ch = NULL, *inner = json_object_new_object();
    switch (choice) {
    case BB_IR_TC_AUTO:
        ch = json_object_new_object();
        add(ch, "auto", inner);
        break;
    case BB_IR_TC_ANY:
        ch = json_object_new_object();
        add(ch, "any", inner);
        break;
    case BB_IR_TC_TOOL:
        ch = json_object_new_object();
        add(inner, "name", new_str(&ir->tool_choice_name));
        add(ch, "tool", inner);
        break;
    case BB_IR_TC_NONE:
        /* Converse has no "none"; tools must stay declared when the history uses them. */
        bb_proto_drop(w->a, w->ctx, "tool_choice");
        json_object_put(inner);
        break;
    default:
        json_object_put(inner);
        break;
    }
    if (ch)
        add(tc, "toolChoice", ch);
    if (ir->has_parallel_tool_calls && !ir->parallel_tool_calls)
        bb_proto_drop(w->a, w->ctx, "parallel_tool_calls");
    return tc;
}

/* bedrock-runtime[-fips].<region>.amazonaws.com[.cn] → region. */
static bool region_from_host(const char *host, char *out, size_t cap)
{
    const char *p = host;
    if (strncmp(p, "bedrock-runtime", 15) != 0)
        return false;
    p += 15;
    if (!strncmp(p, "-fips", 5))
        p += 5;
    if (*p != '.')
        return false;
    p++;
    const char *e = strchr(p, '.');
    if (!e || e == p || (size_t)(e - p) >= cap || strncmp(e, ".amazonaws.com", 14) != 0)
        return false;
    for (const char *c = p; c < e; c++)
        if (!islower((unsigned char)*c) && !isdigit((unsigned char)*c) && *c != '-')
            return false;
    memcpy(out, p, (size_t)(e - p));
    out[e - p] = '\0';
    return true;
}

static int auth_headers(struct bb_arena *a, const struct bb_egress_ctx *ctx,
                        struct bb_egress_req *out, const char *body, size_t body_len,
                        struct bb_err *err)
{
    const struct bb_provider *pv = ctx->provider;
    const char *key = pv ? pv->api_key : NULL;
    if (!key || !*key)
        return 0; /* e.g. a local mock without credentials */
    if (!strchr(key, ':')) {
        /* A Bedrock API key. */
        if (strpbrk(key, "\r\n"))
            return bb_err_set(err, "bedrock: provider '%s': API key contains a line break",
                              pv->name ? pv->name : "?");
        return evbuffer_add_printf(out->headers, "Authorization: Bearer %s\r\n", key) < 0
                   ? bb_err_set(err, "out of memory")
                   : 0;
    }
    /* ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN] */
    char *cred = bb_arena_strndup(a, key, strlen(key));
    if (!cred)
        return bb_err_set(err, "out of memory");
    char *secret = strchr(cred, ':');
    *secret++ = '\0';
    char *token = strchr(secret, ':');
    if (token)
        *token++ = '\0';
    if (!*cred || !*secret)
        return bb_err_set(err,
                          "bedrock: provider '%s': credential must be "
                          "ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN]",
                          pv->name ? pv->name : "?");
    char region[64];
    const char *host = pv->url.host ? pv->url.host : "";
    if (pv->region && *pv->region)
        snprintf(region, sizeof region, "%s", pv->region);
    else if (!region_from_host(host, region, sizeof region))
        snprintf(region, sizeof region, "us-east-1");

    /* The Host value the proxy sends: port only when not the scheme's default. */
    char hostbuf[300];
    bool v6 = strchr(host, ':') != NULL;
    uint16_t def = pv->url.tls ? 443 : 80;
    if (pv->url.port && pv->url.port != def)
        snprintf(hostbuf, sizeof hostbuf, "%s%s%s:%u", v6 ? "[" : "", host, v6 ? "]" : "",
                 (unsigned)pv->url.port);
    else
        snprintf(hostbuf, sizeof hostbuf, "%s%s%s", v6 ? "[" : "", host, v6 ? "]" : "");
    char path[1400];
    snprintf(path, sizeof path, "%s%s", pv->url.path ? pv->url.path : "", out->path);

    struct bb_sigv4_header ct = {"content-type", 12, "application/json", 16};
    struct bb_sigv4_req req = {.method = "POST",
                               .host = hostbuf,
                               .path = path,
                               .headers = &ct,
                               .n_headers = 1,
                               .payload = body,
                               .payload_len = body_len};
    struct bb_sigv4_cred c = {cred, secret, token && *token ? token : NULL};
    int rc = bb_sigv4_sign(&req, region, "bedrock", &c, ctx->now, BB_SIGV4_CONTENT_SHA256,
                           out->headers, NULL, err);
    OPENSSL_cleanse(cred, strlen(key));
    return rc;
}

static int bedrock_write_request(struct bb_arena *a, const struct bb_ir_request *ir,
                                 const struct bb_egress_ctx *ctx, struct bb_egress_req *out,
                                 struct bb_err *err)
{
    const char *model = ctx->lane && ctx->lane->upstream_model ? ctx->lane->upstream_model
                        : ir->model.p                          ? ir->model.p
                                                               : "";
    if (!*model)
        return bb_err_set(err, "bedrock: no upstream model");
    char enc[900];
    if (bb_sigv4_uri_encode(model, strlen(model), false, enc, sizeof enc) < 0)
        return bb_err_set(err, "bedrock: model id too long");
    snprintf(out->path, sizeof out->path, "/model/%s/%s", enc,
             ctx->stream ? "converse-stream" : "converse");

    struct wr w = {.a = a, .ir = ir, .ctx = ctx};
    w.anthropic = strstr(model, "anthropic.") != NULL;
    w.caching = w.anthropic || strstr(model, "amazon.nova") != NULL;
    /* Thinking (Claude's additionalModelRequestFields.thinking) only when asked, allowed on the
     * lane, and acceptable to the API: not with a forced tool choice, not after history
     * without signed thinking. */
    bool ask = ir->reasoning || ir->reasoning_budget || ir->reasoning_effort >= BB_IR_EFFORT_LOW;
    bool thinking =
        ask && ctx->lane && ctx->lane->reasoning && w.anthropic &&
        !(ir->n_tools && (ir->tool_choice == BB_IR_TC_ANY || ir->tool_choice == BB_IR_TC_TOOL)) &&
        thinking_fits_history(ir);
    if (ask && !thinking)
        bb_proto_drop(a, ctx, "reasoning");

    struct json_object *root = json_object_new_object();
    add(root, "messages", write_messages(&w));
    if (ir->n_system) {
        struct json_object *sys = json_object_new_array();
        write_blocks(&w, ir->system, ir->n_system, sys);
        if (json_object_array_length(sys))
            add(root, "system", sys);
        else
            json_object_put(sys);
    }

    /* inferenceConfig */
    struct json_object *inf = json_object_new_object(), *amrf = json_object_new_object();
    uint32_t budget = thinking ? budget_for(ir) : 0;
    if (ir->has_max_tokens) {
        /* max_tokens must exceed the budget: keep the answer's room on top of it. */
        uint64_t mt = ir->max_tokens;
        if (thinking && mt <= budget)
            mt += budget;
        add(inf, "maxTokens", json_object_new_int64((int64_t)mt));
    } else if (thinking) {
        /* max_tokens must exceed the budget; Bedrock's own default may not. */
        uint32_t dm =
            ctx->lane && ctx->lane->default_max_tokens ? ctx->lane->default_max_tokens : 4096;
        add(inf, "maxTokens", json_object_new_int64(dm > budget ? dm : (int64_t)budget + dm));
    }
    bool temp_sent = false;
    if (ir->has_temperature) {
        if (thinking && ir->temperature != 1.0) {
            bb_proto_drop(a, ctx, "temperature"); /* Claude thinking requires the default */
        } else {
            /* Converse's range is 0–1 (OpenAI's goes to 2) */
            double t = ir->temperature < 0 ? 0 : ir->temperature > 1 ? 1 : ir->temperature;
            add(inf, "temperature", new_double(t));
            temp_sent = true;
        }
    }
    if (ir->has_top_p) {
        if ((thinking && ir->top_p < 0.95) || (w.anthropic && temp_sent))
            bb_proto_drop(a, ctx, "top_p"); /* current Claude models refuse both samplers at once */
        else
            add(inf, "topP", new_double(ir->top_p < 0 ? 0 : ir->top_p > 1 ? 1 : ir->top_p));
    }
    if (ir->n_stop) {
        struct json_object *ss = json_object_new_array();
        for (size_t i = 0; i < ir->n_stop; i++) {
            if (w.anthropic && blank(&ir->stop[i]))
                bb_proto_drop(a, ctx, "stop"); /* Claude rejects whitespace-only stop sequences */
            else
                json_object_array_add(ss, new_str(&ir->stop[i]));
        }
        if (json_object_array_length(ss))
            add(inf, "stopSequences", ss);
        else
            json_object_put(ss);
    }
    if (json_object_object_length(inf))
        add(root, "inferenceConfig", inf);
    else
        json_object_put(inf);

    struct json_object *tc = write_tools(&w);
    if (tc)
        add(root, "toolConfig", tc);

    if (ir->has_top_k) {
        if (w.anthropic && !thinking)
            add(amrf, "top_k", json_object_new_int64(ir->top_k));
        else
            bb_proto_drop(a, ctx, "top_k");
    }
    if (thinking) {
        struct json_object *th = json_object_new_object();
        add(th, "type", json_object_new_string("enabled"));
        add(th, "budget_tokens", json_object_new_int64(budget));
        add(amrf, "thinking", th);
    }
    if (json_object_object_length(amrf))
        add(root, "additionalModelRequestFields", amrf);
    else
        json_object_put(amrf);

    if (ir->has_seed)
        bb_proto_drop(a, ctx, "seed");
    if (ir->has_presence_penalty)
        bb_proto_drop(a, ctx, "presence_penalty");
    if (ir->has_frequency_penalty)
        bb_proto_drop(a, ctx, "frequency_penalty");
    if (ir->n_choices > 1)
        bb_proto_drop(a, ctx, "n");
    if (ir->format == BB_IR_FMT_JSON_OBJECT || ir->format == BB_IR_FMT_JSON_SCHEMA)
        bb_proto_drop(a, ctx, "response_format");
    if (has(&ir->user))
        bb_proto_drop(a, ctx, "user");

    size_t blen = 0;
    const char *body = json_object_to_json_string_length(root, JFLAGS, &blen);
    int rc = -1;
    if (evbuffer_add(out->body, body, blen) < 0 ||
        evbuffer_add_printf(out->headers, "Content-Type: application/json\r\n") < 0) {
        bb_err_set(err, "out of memory");
        goto out;
    }
    if (auth_headers(a, ctx, out, body, blen, err) < 0)
        goto out;
    rc = 0;
out:
    json_object_put(root);
    return rc;
}

/* ---------------------------------------------------------------- ingress response */

static struct json_object *response_block(struct bb_arena *a, const struct bb_ir_block *b,
                                          const char *id_seed, size_t n)
{
    switch (b->type) {
    case BB_IR_TEXT:
        return text_json(&b->text);
    case BB_IR_THINKING:
        return reasoning_text(b);
    case BB_IR_REDACTED_THINKING:
        return redacted(b);
    case BB_IR_TOOL_USE:
        return tool_use(a, NULL, b, id_seed, n);
    case BB_IR_IMAGE:
        return has(&b->data) ? image_json(a, NULL, b) : NULL;
    default:
        return NULL;
    }
}

static int bedrock_write_response(struct bb_arena *a, const struct bb_ir_response *r,
                                  const struct bb_ingress_ctx *ctx, struct evbuffer *out)
{
    struct json_object *root = json_object_new_object(), *msg = json_object_new_object(),
                       *content = json_object_new_array(), *output = json_object_new_object(),
                       *metrics = json_object_new_object();
    for (size_t i = 0; i < r->n_blocks; i++) {
        struct json_object *x = response_block(a, &r->blocks[i], ctx ? ctx->request_id : NULL, i);
        if (x)
            json_object_array_add(content, x);
    }
    add(msg, "role", json_object_new_string("assistant"));
    add(msg, "content", content);
    add(output, "message", msg);
    add(root, "output", output);
    add(root, "stopReason", json_object_new_string(stop_to_wire(r->stop)));
    add(root, "usage", usage_json(&r->usage));
    add(metrics, "latencyMs", json_object_new_int(0));
    add(root, "metrics", metrics);
    if (r->stop == BB_IR_STOP_STOP_SEQUENCE && has(&r->stop_sequence)) {
        struct json_object *f = json_object_new_object();
        add(f, "stop_sequence", new_str(&r->stop_sequence));
        add(root, "additionalModelResponseFields", f);
    }
    size_t n = 0;
    const char *s = json_object_to_json_string_length(root, JFLAGS, &n);
    int rc = evbuffer_add(out, s, n);
    json_object_put(root);
    return rc < 0 ? -1 : 0;
}

static const char *bedrock_stream_content_type(const struct bb_ingress_ctx *ctx)
{
    (void)ctx;
    return "application/vnd.amazon.eventstream";
}

/* ---------------------------------------------------------------- stream exceptions */

/* The five exceptions ConverseStreamOutput models, with their HTTP statuses. */
static const struct {
    const char *name;
    int status;
} stream_exceptions[] = {
    {"internalServerException", 500},     {"modelStreamErrorException", 424},
    {"validationException", 400},         {"throttlingException", 429},
    {"serviceUnavailableException", 503},
};

static int exception_status(const char *name, size_t n)
{
    for (size_t i = 0; i < sizeof stream_exceptions / sizeof stream_exceptions[0]; i++)
        if (strlen(stream_exceptions[i].name) == n &&
            !strncasecmp(name, stream_exceptions[i].name, n))
            return stream_exceptions[i].status;
    if (n >= 21 && !strncasecmp(name, "modelTimeoutException", 21))
        return 408;
    return 0;
}

static bool contains_ci(const char *h, size_t hl, const char *needle)
{
    size_t nl = strlen(needle);
    for (size_t i = 0; i + nl <= hl; i++)
        if (!strncasecmp(h + i, needle, nl))
            return true;
    return false;
}

/* An IR error (any provider's type, plus status) → one of the five stream exceptions. */
static const char *exception_for(const struct bb_ir_event *ev)
{
    const char *t = ev->error_type.p ? ev->error_type.p : "";
    size_t tl = ev->error_type.p ? ev->error_type.len : 0;
    for (size_t i = 0; i < sizeof stream_exceptions / sizeof stream_exceptions[0]; i++)
        if (strlen(stream_exceptions[i].name) == tl &&
            !strncasecmp(t, stream_exceptions[i].name, tl))
            return stream_exceptions[i].name;
    int st = ev->error_status;
    if (st == 429 || contains_ci(t, tl, "rate_limit") || contains_ci(t, tl, "throttl") ||
        contains_ci(t, tl, "resource_exhausted") || contains_ci(t, tl, "quota"))
        return "throttlingException";
    if (st == 503 || st == 529 || contains_ci(t, tl, "overloaded") ||
        contains_ci(t, tl, "unavailable"))
        return "serviceUnavailableException";
    if (st == 400 || st == 404 || st == 413 || st == 422 || contains_ci(t, tl, "invalid") ||
        contains_ci(t, tl, "validation"))
        return "validationException";
    if (st == 424 || contains_ci(t, tl, "modelstreamerror"))
        return "modelStreamErrorException";
    return "internalServerException";
}

/* ---------------------------------------------------------------- stream decoder (egress) */

struct dec {
    bool started, open, done;
    bool stop_seen; /* messageStop (the stop reason) arrived */
    int64_t native;       /* Bedrock contentBlockIndex of the open block */
    uint32_t index, next; /* IR index of the open block; the next one to hand out */
    enum bb_ir_stop stop;
    struct bb_ir_str stop_sequence;
};

static void bedrock_dec_init(void *d)
{
    memset(d, 0, sizeof(struct dec));
}

static int emit(bb_ir_event_cb cb, void *arg, struct bb_ir_event *ev)
{
    return cb(arg, ev);
}

static int dec_start(struct dec *d, bb_ir_event_cb cb, void *arg)
{
    if (d->started)
        return 0;
    d->started = true;
    struct bb_ir_event ev = {.type = BB_IR_EV_MESSAGE_START};
    return emit(cb, arg, &ev);
}

static int dec_close(struct dec *d, bb_ir_event_cb cb, void *arg)
{
    if (!d->open)
        return 0;
    d->open = false;
    struct bb_ir_event ev = {.type = BB_IR_EV_BLOCK_STOP, .index = d->index};
    return emit(cb, arg, &ev);
}

/* Make native block idx the open one, starting it as type when it is new. */
static int dec_open(struct dec *d, int64_t idx, enum bb_ir_block_type type,
                    const struct bb_ir_str *id, const struct bb_ir_str *name, bb_ir_event_cb cb,
                    void *arg)
{
    if (d->open && d->native == idx)
        return 0;
    int rc = dec_close(d, cb, arg);
    if (rc)
        return rc;
    d->open = true;
    d->native = idx;
    d->index = d->next++;
    struct bb_ir_event ev = {.type = BB_IR_EV_BLOCK_START, .index = d->index, .block_type = type};
    if (id)
        ev.id = *id;
    if (name)
        ev.name = *name;
    return emit(cb, arg, &ev);
}

static int scratch_str(struct bb_arena *a, struct json_object *s, struct bb_ir_str *out)
{
    *out = bb_ir_strdup(a, json_object_get_string(s), (size_t)json_object_get_string_len(s));
    return out->p ? 0 : -1;
}

static int dec_delta(struct dec *d, struct bb_arena *scratch, struct json_object *p,
                     bb_ir_event_cb cb, void *arg)
{
    struct json_object *ix = jget(p, "contentBlockIndex"), *delta = jget(p, "delta");
    int64_t idx = is_type(ix, json_type_int) ? json_object_get_int64(ix) : 0;
    if (!is_type(delta, json_type_object))
        return -1;
    struct bb_ir_event ev = {.type = BB_IR_EV_BLOCK_DELTA};
    enum bb_ir_block_type bt;
    struct json_object *v;
    if ((v = jget(delta, "text"))) {
        bt = BB_IR_TEXT;
        ev.delta = BB_IR_D_TEXT;
    } else if ((v = jget(jget(delta, "toolUse"), "input"))) {
        bt = BB_IR_TOOL_USE;
        ev.delta = BB_IR_D_INPUT_JSON;
    } else if (jget(delta, "reasoningContent")) {
        struct json_object *rc = jget(delta, "reasoningContent");
        bt = BB_IR_THINKING;
        if ((v = jget(rc, "text"))) {
            ev.delta = BB_IR_D_THINKING;
        } else if ((v = jget(rc, "signature"))) {
            ev.delta = BB_IR_D_SIGNATURE;
        } else if ((v = jget(rc, "redactedContent"))) {
            bt = BB_IR_REDACTED_THINKING;
            ev.delta = BB_IR_D_REDACTED;
        } else {
            return 0;
        }
    } else if ((v = jget(delta, "citation"))) {
        bt = BB_IR_TEXT;
        ev.delta = BB_IR_D_CITATION;
        ev.text = arena_json(scratch, v);
        if (!ev.text.p)
            return -1;
        v = NULL;
    } else {
        return 0; /* image / toolResult deltas: nothing the IR streams */
    }
    if (v) {
        if (!is_type(v, json_type_string))
            return -1;
        if (scratch_str(scratch, v, &ev.text) < 0)
            return -1;
    }
    int rc = dec_open(d, idx, bt, NULL, NULL, cb, arg);
    if (rc)
        return rc;
    ev.index = d->index;
    ev.block_type = bt;
    return emit(cb, arg, &ev);
}

static int dec_exception(struct dec *d, struct bb_arena *scratch, const struct bb_frame *f,
                         bb_ir_event_cb cb, void *arg)
{
    struct bb_ir_event ev = {.type = BB_IR_EV_ERROR};
    ev.error_type = bb_ir_strdup(scratch, f->event, f->event_len);
    ev.error_status = exception_status(f->event, f->event_len);
    struct bb_err e;
    struct json_object *p = f->data_len ? parse_json(f->data, f->data_len, "exception", &e) : NULL;
    struct json_object *m = jget(p, "message");
    if (!m)
        m = jget(p, "Message");
    if (is_type(m, json_type_string))
        ev.text =
            bb_ir_strdup(scratch, json_object_get_string(m), (size_t)json_object_get_string_len(m));
    else
        ev.text = bb_ir_strdup(scratch, f->data, p ? 0 : f->data_len);
    json_object_put(p);
    if (!ev.error_type.p || !ev.text.p)
        return -1;
    d->done = true;
    return emit(cb, arg, &ev);
}

static bool ev_is(const struct bb_frame *f, const char *name)
{
    size_t n = strlen(name);
    return f->event_len == n && !memcmp(f->event, name, n);
}

static int bedrock_dec_frame(void *dp, struct bb_arena *scratch, const struct bb_frame *f,
                             bb_ir_event_cb cb, void *arg)
{
    struct dec *d = dp;
    if (d->done)
        return 0;
    if (f->exception)
        return dec_exception(d, scratch, f, cb, arg);
    struct bb_err e;
    struct json_object *p = parse_json(f->data, f->data_len, "event", &e);
    if (!is_type(p, json_type_object)) {
        json_object_put(p);
        return -1;
    }
    int rc = 0;
    if (ev_is(f, "messageStart")) {
        rc = dec_start(d, cb, arg);
    } else if (ev_is(f, "contentBlockStart")) {
        struct json_object *ix = jget(p, "contentBlockIndex");
        struct json_object *tu = jget(jget(p, "start"), "toolUse");
        rc = dec_start(d, cb, arg);
        if (!rc && is_type(tu, json_type_object)) {
            struct json_object *id = jget(tu, "toolUseId"), *nm = jget(tu, "name");
            struct bb_ir_str sid = {0}, snm = {0};
            if ((is_type(id, json_type_string) && scratch_str(scratch, id, &sid) < 0) ||
                (is_type(nm, json_type_string) && scratch_str(scratch, nm, &snm) < 0))
                rc = -1;
            else
                rc = dec_open(d, is_type(ix, json_type_int) ? json_object_get_int64(ix) : 0,
                              BB_IR_TOOL_USE, &sid, &snm, cb, arg);
        }
    } else if (ev_is(f, "contentBlockDelta")) {
        rc = dec_start(d, cb, arg);
        if (!rc)
            rc = dec_delta(d, scratch, p, cb, arg);
    } else if (ev_is(f, "contentBlockStop")) {
        struct json_object *ix = jget(p, "contentBlockIndex");
        int64_t idx = is_type(ix, json_type_int) ? json_object_get_int64(ix) : 0;
        if (d->open && d->native == idx)
            rc = dec_close(d, cb, arg);
    } else if (ev_is(f, "messageStop")) {
        struct json_object *sr = jget(p, "stopReason");
        struct json_object *ss = jget(jget(p, "additionalModelResponseFields"), "stop_sequence");
        d->stop = stop_from_wire(is_type(sr, json_type_string) ? json_object_get_string(sr) : NULL);
        d->stop_seen = true;
        if (is_type(ss, json_type_string) && scratch_str(scratch, ss, &d->stop_sequence) < 0)
            rc = -1;
        if (!rc)
            rc = dec_start(d, cb, arg);
        if (!rc)
            rc = dec_close(d, cb, arg);
    } else if (ev_is(f, "metadata")) {
        /* Bedrock's terminator: usage arrives after messageStop. */
        rc = dec_start(d, cb, arg);
        if (!rc)
            rc = dec_close(d, cb, arg);
        if (!rc) {
            struct bb_ir_event ev = {.type = BB_IR_EV_MESSAGE_DELTA,
                                     .stop = d->stop ? d->stop : BB_IR_STOP_END_TURN,
                                     .stop_sequence = d->stop_sequence};
            read_usage(jget(p, "usage"), &ev.usage);
            rc = emit(cb, arg, &ev);
        }
        if (!rc) {
            struct bb_ir_event ev = {.type = BB_IR_EV_MESSAGE_STOP};
            d->done = true;
            rc = emit(cb, arg, &ev);
        }
    }
    /* other event types (future members) are ignored, as the SDK does */
    json_object_put(p);
    return rc;
}

/* ---------------------------------------------------------------- stream encoder (ingress) */

/* Open blocks are a set, not a single slot: IR from another dialect may interleave blocks, and
 * each keeps its own contentBlockIndex (clients accumulate by index). Indexes past 63 are not
 * tracked: their BLOCK_STOP is always written and MESSAGE_STOP cannot close them. */
struct enc {
    bool started, stopped;
    uint64_t open; /* bit i: block i has been written to and not stopped */
    enum bb_ir_stop stop;
    struct bb_ir_usage usage;
    char stop_seq[128];  /* copied: event strings do not outlive their event */
    size_t stop_seq_len; /* 0 = none, or too long to keep */
    char id_seed[64];    /* request id, for tool calls that arrive without an id */
};

static void bedrock_enc_init(void *ep, const struct bb_ingress_ctx *ctx)
{
    struct enc *e = ep;
    memset(e, 0, sizeof *e);
    snprintf(e->id_seed, sizeof e->id_seed, "%s", ctx && ctx->request_id ? ctx->request_id : "bb");
}

static int put_event(struct evbuffer *out, const char *type, struct json_object *o)
{
    size_t n = 0;
    const char *s = json_object_to_json_string_length(o, JFLAGS, &n);
    int rc = bb_eventstream_write_event(out, type, s, n);
    json_object_put(o);
    return rc;
}

static int enc_start(struct enc *e, struct evbuffer *out)
{
    if (e->started)
        return 0;
    e->started = true;
    struct json_object *o = json_object_new_object();
    add(o, "role", json_object_new_string("assistant"));
    return put_event(out, "messageStart", o);
}

static bool enc_is_open(const struct enc *e, uint32_t i)
{
    return i < 64 && (e->open >> i & 1);
}

static void enc_mark(struct enc *e, uint32_t i)
{
    if (i < 64)
        e->open |= (uint64_t)1 << i;
}

static int enc_stop_block(struct enc *e, uint32_t i, struct evbuffer *out)
{
    if (i < 64)
        e->open &= ~((uint64_t)1 << i);
    struct json_object *o = json_object_new_object();
    add(o, "contentBlockIndex", json_object_new_int64(i));
    return put_event(out, "contentBlockStop", o);
}

static int enc_close_all(struct enc *e, struct evbuffer *out)
{
    for (uint32_t i = 0; i < 64 && e->open; i++)
        if (enc_is_open(e, i) && enc_stop_block(e, i, out) < 0)
            return -1;
    return 0;
}

static void merge_usage(struct bb_ir_usage *u, const struct bb_ir_usage *n)
{
    if (!n->set)
        return;
    u->set = true;
#define MAXF(f) u->f = n->f > u->f ? n->f : u->f
    MAXF(input);
    MAXF(output);
    MAXF(cache_read);
    MAXF(cache_write);
    MAXF(reasoning);
#undef MAXF
}

static int enc_delta(struct enc *e, const struct bb_ir_event *ev, struct evbuffer *out)
{
    struct json_object *delta = json_object_new_object(), *inner;
    switch (ev->delta) {
    case BB_IR_D_TEXT:
        add(delta, "text", new_str(&ev->text));
        break;
    case BB_IR_D_INPUT_JSON:
        inner = json_object_new_object();
        add(inner, "input", new_str(&ev->text));
        add(delta, "toolUse", inner);
        break;
    case BB_IR_D_THINKING:
    case BB_IR_D_SIGNATURE:
    case BB_IR_D_REDACTED:
        inner = json_object_new_object();
        add(inner,
            ev->delta == BB_IR_D_THINKING    ? "text"
            : ev->delta == BB_IR_D_SIGNATURE ? "signature"
                                             : "redactedContent",
            new_str(&ev->text));
        add(delta, "reasoningContent", inner);
        break;
    default:
        json_object_put(delta); /* citations: Bedrock's citation delta has another shape */
        return 0;
    }
    /* A delta may open its block (Bedrock opens text blocks that way anyway). */
    enc_mark(e, ev->index);
    struct json_object *o = json_object_new_object();
    add(o, "delta", delta);
    add(o, "contentBlockIndex", json_object_new_int64(ev->index));
    return put_event(out, "contentBlockDelta", o);
}

static int bedrock_enc_event(void *ep, struct bb_arena *scratch, const struct bb_ir_event *ev,
                             struct evbuffer *out)
{
    (void)scratch;
    struct enc *e = ep;
    if (e->stopped)
        return 0;
    if (ev->type == BB_IR_EV_PING)
        return 0;
    if (ev->type == BB_IR_EV_ERROR) {
        struct json_object *o = json_object_new_object();
        add(o, "message", ev->text.p ? new_str(&ev->text) : json_object_new_string("error"));
        size_t n = 0;
        const char *s = json_object_to_json_string_length(o, JFLAGS, &n);
        int rc = bb_eventstream_write_exception(out, exception_for(ev), s, n);
        json_object_put(o);
        e->stopped = true;
        return rc;
    }
    if (enc_start(e, out) < 0)
        return -1;
    switch (ev->type) {
    case BB_IR_EV_MESSAGE_START:
        merge_usage(&e->usage, &ev->usage);
        return 0;
    case BB_IR_EV_BLOCK_START: {
        enc_mark(e, ev->index);
        if (ev->block_type != BB_IR_TOOL_USE)
            return 0; /* text and reasoning blocks open with their first delta */
        struct json_object *tu = json_object_new_object(), *st = json_object_new_object(),
                           *o = json_object_new_object();
        if (ev->id.p && ev->id.len) {
            add(tu, "toolUseId", new_str(&ev->id));
        } else {
            char id[128]; /* toolUseId is required */
            snprintf(id, sizeof id, "tooluse_%s_%u", e->id_seed, ev->index);
            add(tu, "toolUseId", json_object_new_string(id));
        }
        add(tu, "name", new_str(&ev->name));
        add(st, "toolUse", tu);
        add(o, "start", st);
        add(o, "contentBlockIndex", json_object_new_int64(ev->index));
        return put_event(out, "contentBlockStart", o);
    }
    case BB_IR_EV_BLOCK_DELTA:
        return enc_delta(e, ev, out);
    case BB_IR_EV_BLOCK_STOP:
        if (enc_is_open(e, ev->index) || ev->index >= 64)
            return enc_stop_block(e, ev->index, out);
        return 0;
    case BB_IR_EV_MESSAGE_DELTA:
        if (ev->stop != BB_IR_STOP_UNSET)
            e->stop = ev->stop;
        if (ev->stop_sequence.p && ev->stop_sequence.len < sizeof e->stop_seq) {
            memcpy(e->stop_seq, ev->stop_sequence.p, ev->stop_sequence.len);
            e->stop_seq_len = ev->stop_sequence.len;
        }
        merge_usage(&e->usage, &ev->usage);
        return 0;
    case BB_IR_EV_MESSAGE_STOP: {
        if (enc_close_all(e, out) < 0)
            return -1;
        struct json_object *ms = json_object_new_object();
        add(ms, "stopReason", json_object_new_string(stop_to_wire(e->stop)));
        if (e->stop == BB_IR_STOP_STOP_SEQUENCE && e->stop_seq_len) {
            /* where Claude on Bedrock reports it (additionalModelResponseFieldPaths) */
            struct json_object *f = json_object_new_object();
            add(f, "stop_sequence", json_object_new_string_len(e->stop_seq, (int)e->stop_seq_len));
            add(ms, "additionalModelResponseFields", f);
        }
        if (put_event(out, "messageStop", ms) < 0)
            return -1;
        struct json_object *md = json_object_new_object(), *metrics = json_object_new_object();
        add(md, "usage", usage_json(&e->usage));
        add(metrics, "latencyMs", json_object_new_int(0));
        add(md, "metrics", metrics);
        e->stopped = true;
        return put_event(out, "metadata", md);
    }
    default:
        return 0;
    }
}

/* ---------------------------------------------------------------- errors */

static void copy_out(char *dst, size_t cap, const char *s, size_t n)
{
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, s, n);
    dst[n] = '\0';
}

/* {"message": "..."} (or "Message"), with the type in "__type" when the body carries it, as
 * "com.amazon.coral.service#ValidationException" or "ValidationException:http://…". */
static int bedrock_read_error(const char *body, size_t len, struct bb_proto_error *out)
{
    memset(out, 0, sizeof *out);
    struct bb_err e;
    struct json_object *root = parse_json(body, len, "error", &e);
    if (!is_type(root, json_type_object)) {
        json_object_put(root);
        return -1;
    }
    struct json_object *m = jget(root, "message");
    if (!m)
        m = jget(root, "Message");
    if (is_type(m, json_type_string))
        copy_out(out->message, sizeof out->message, json_object_get_string(m),
                 (size_t)json_object_get_string_len(m));
    struct json_object *t = jget(root, "__type");
    if (is_type(t, json_type_string)) {
        const char *s = json_object_get_string(t), *h = strrchr(s, '#');
        if (h)
            s = h + 1;
        size_t n = strcspn(s, ":");
        copy_out(out->type, sizeof out->type, s, n);
    }
    json_object_put(root);
    return out->message[0] || out->type[0] ? 0 : -1;
}

/* Same-protocol hop: the client's Converse body as is, signed for this lane. */
static int bedrock_write_passthrough(struct bb_arena *a, const char *body, size_t len,
                                     const struct bb_egress_ctx *ctx, struct bb_egress_req *out,
                                     struct bb_err *err)
{
    const char *model = ctx->lane && ctx->lane->upstream_model ? ctx->lane->upstream_model : "";
    char enc[900];
    if (!*model || bb_sigv4_uri_encode(model, strlen(model), false, enc, sizeof enc) < 0)
        return bb_err_set(err, "bedrock: no or too long upstream model");
    snprintf(out->path, sizeof out->path, "/model/%s/%s", enc,
             ctx->stream ? "converse-stream" : "converse");
    if (evbuffer_add(out->headers, "Content-Type: application/json\r\n", 32) < 0 ||
        evbuffer_add(out->body, body, len) < 0)
        return bb_err_set(err, "out of memory");
    return auth_headers(a, ctx, out, body, len, err);
}

/* A Converse answer has `output`; an error is {"message"} (or "Message", "__type") without
 * it. */
static int bedrock_answer_check(const char *body, size_t len, struct bb_proto_error *out)
{
    struct bb_jscan_field f[4] = {
        {.key = "output"}, {.key = "message"}, {.key = "Message"}, {.key = "__type"}};
    if (bb_proto_scan_answer(body, len, f, 4, out) < 0)
        return -1;
    if (f[0].type == BB_JOBJECT)
        return 0;
    if (f[1].type == BB_JSTRING || f[2].type == BB_JSTRING || f[3].type == BB_JSTRING)
        return bb_proto_inband(&bb_proto_bedrock, body, len, out);
    snprintf(out->message, sizeof out->message, "no 'output' object");
    return -1;
}

/* The stream ended without its metadata event: finished when messageStop brought the stop
 * reason. */
static int bedrock_dec_finish(void *decp, struct bb_arena *scratch, bb_ir_event_cb cb,
                              void *arg)
{
    struct dec *d = decp;
    (void)scratch;
    if (d->done || !d->stop_seen)
        return 0;
    int rc = dec_close(d, cb, arg);
    if (!rc) {
        struct bb_ir_event ev = {.type = BB_IR_EV_MESSAGE_DELTA,
                                 .stop = d->stop ? d->stop : BB_IR_STOP_END_TURN,
                                 .stop_sequence = d->stop_sequence};
        rc = emit(cb, arg, &ev);
    }
    if (!rc) {
        struct bb_ir_event ev = {.type = BB_IR_EV_MESSAGE_STOP};
        d->done = true;
        rc = emit(cb, arg, &ev);
    }
    return rc;
}

const struct bb_proto_ops bb_proto_bedrock = {
    .id = BB_PROTO_BEDROCK,
    .name = "bedrock",
    .framing = BB_FRAMING_EVENTSTREAM,
    .read_request = bedrock_read_request,
    .write_response = bedrock_write_response,
    .stream_content_type = bedrock_stream_content_type,
    .enc_size = sizeof(struct enc),
    .enc_init = bedrock_enc_init,
    .enc_event = bedrock_enc_event,
    .enc_finish = NULL,
    .write_request = bedrock_write_request,
    .write_passthrough = bedrock_write_passthrough,
    .read_response = bedrock_read_response,
    .dec_size = sizeof(struct dec),
    .dec_init = bedrock_dec_init,
    .dec_frame = bedrock_dec_frame,
    .read_error = bedrock_read_error,
    .dec_finish = bedrock_dec_finish,
    .answer_check = bedrock_answer_check,
};
