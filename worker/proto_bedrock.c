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
#include "worker/media.h"
#include "worker/params.h"
#include "worker/proto.h"
#include "worker/rd.h"
#include "worker/seq.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <json-c/json.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "worker/aws.h"
#include "worker/eventstream.h"
#include "common/jscan.h"

#define CLAUDE_MIN_BUDGET 1024u

/* The scalar parameters (worker/params.h; docs/protocols/bedrock.md "Parameters"). */
static const struct bb_param param_rows[] = {
    {"inferenceConfig.maxTokens", BB_IRP_MAX_TOKENS, BB_PF_IN | BB_PF_OUT, 0, 0,
     "raised above a Claude thinking budget (the lane's `default_max_tokens`, else the "
     "model's `max_output` in etc/prices.yaml, else 4096, when the request has none)"},
    {"inferenceConfig.temperature", BB_IRP_TEMPERATURE, BB_PF_IN | BB_PF_OUT | BB_PF_CLAMP, 0, 1,
     "dropped with Claude thinking unless 1"},
    {"inferenceConfig.topP", BB_IRP_TOP_P, BB_PF_IN | BB_PF_OUT | BB_PF_CLAMP, 0, 1,
     "dropped beside temperature for Claude, and with thinking below 0.95"},
    {"inferenceConfig.stopSequences", BB_IRP_STOP, BB_PF_IN | BB_PF_OUT, 0, 0,
     "blank sequences dropped for Claude"},
    {"additionalModelRequestFields.top_k", BB_IRP_TOP_K, BB_PF_IN | BB_PF_OUT, 0, 0,
     "Claude models only; dropped with thinking"},
    {"additionalModelRequestFields.topK", BB_IRP_TOP_K, BB_PF_IN, 0, 0, "the camelCase spelling"},
    {NULL, BB_IRP_SEED, 0, 0, 0, ""},
    {NULL, BB_IRP_PRESENCE_PENALTY, 0, 0, 0, ""},
    {NULL, BB_IRP_FREQUENCY_PENALTY, 0, 0, 0, ""},
    {NULL, BB_IRP_N, 0, 0, 0, "dropped when above 1"},
};
#define N_PARAMS (sizeof param_rows / sizeof param_rows[0])

/* Empty or whitespace only (Converse rejects such text). */
static bool blank(const struct bb_ir_str *s)
{
    for (size_t i = 0; s->p && i < s->len; i++)
        if (!isspace((unsigned char)s->p[i]))
            return false;
    return true;
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

/* Record an unsupported field as "prefix.key" (bb_rd_unsupported guards what reaches the
 * dropped-fields header). */
static int unsup(struct bb_rd *r, const char *prefix, const char *key)
{
    char p[96];
    snprintf(p, sizeof p, "%s%s", prefix ? prefix : "", prefix ? "." : "");
    return bb_rd_unsupported(r, p, key);
}

/* A base64 string member (the path at its object). */
static int rd_base64(struct bb_rd *r, json_object *o, const char *key, struct bb_ir_str *out)
{
    json_object *v = bb_json_get(o, key);
    if (!bb_json_is(v, json_type_string))
        return bb_rd_expect(r, key, "a base64 string");
    return bb_rd_dup(r, v, out);
}

/* image: {format, source:{bytes}|{s3Location}} (the path at the block). 1 = filled, 0 =
 * skipped. */
static int read_image(struct bb_rd *r, json_object *o, struct bb_ir_block *b)
{
    if (bb_rd_type(r, o, "image", json_type_object) < 0)
        return -1;
    size_t mark = bb_rd_in(r, "image");
    json_object *fmt, *src;
    int rc = bb_rd_want(r, o, "format", json_type_string, false, &fmt);
    if (rc == 0 && !fmt)
        rc = bb_rd_expect(r, "format", "a string");
    if (rc == 0 && bb_rd_want(r, o, "source", json_type_object, false, &src) == 0 && !src)
        rc = bb_rd_expect(r, "source", "an object");
    else if (rc == 0 && !src)
        rc = -1;
    if (rc == 0) {
        json_object *bytes = bb_json_get(src, "bytes");
        if (!bytes) {
            bb_rd_out(r, mark);
            return unsup(r, "image", bb_json_get(src, "s3Location") ? "s3Location" : "source") < 0
                       ? -1
                       : 0;
        }
        char mt[64];
        int n = snprintf(mt, sizeof mt, "image/%s", json_object_get_string(fmt));
        b->type = BB_IR_IMAGE;
        b->media_type = bb_ir_strdup(r->a, mt, (size_t)n < sizeof mt ? (size_t)n : sizeof mt - 1);
        bb_rd_in(r, "source");
        rc = !b->media_type.p ? bb_rd_oom(r) : rd_base64(r, src, "bytes", &b->data);
    }
    bb_rd_out(r, mark);
    return rc < 0 ? -1 : 1;
}

/* document: {format, name, source:{bytes}|{text}|{content:[{text}]}|{s3Location}}. */
static int read_document(struct bb_rd *r, json_object *o, struct bb_ir_block *b)
{
    if (bb_rd_type(r, o, "document", json_type_object) < 0)
        return -1;
    size_t mark = bb_rd_in(r, "document");
    json_object *fmt = NULL, *src = NULL; /* both read below even when "format" is refused */
    int rc = bb_rd_want(r, o, "format", json_type_string, false, &fmt);
    if (rc == 0 && bb_rd_want(r, o, "source", json_type_object, false, &src) == 0 && !src)
        rc = bb_rd_expect(r, "source", "an object");
    else if (rc == 0 && !src)
        rc = -1;
    b->type = BB_IR_DOCUMENT;
    if (rc == 0)
        rc = bb_rd_str(r, o, "name", false, &b->name);
    const char *media = fmt ? doc_media(json_object_get_string(fmt)) : NULL;
    json_object *bytes = bb_json_get(src, "bytes"), *text = bb_json_get(src, "text"),
                *content = bb_json_get(src, "content");
    if (rc == 0)
        bb_rd_in(r, "source");
    if (rc == 0 && bytes) {
        rc = rd_base64(r, src, "bytes", &b->data);
    } else if (rc == 0 && (text || content)) {
        /* Inline text documents travel as base64 text/plain (or the stated format). */
        json_object *t = text;
        if (!text) {
            if (!bb_json_is(content, json_type_array) || json_object_array_length(content) != 1 ||
                !bb_json_is(bb_json_get(json_object_array_get_idx(content, 0), "text"),
                            json_type_string)) {
                bb_rd_out(r, mark);
                return unsup(r, "document", "content") < 0 ? -1 : 0;
            }
            t = bb_json_get(json_object_array_get_idx(content, 0), "text");
        }
        if (!bb_json_is(t, json_type_string)) {
            rc = bb_rd_expect(r, "text", "a string");
        } else {
            b->data = bb_media_b64_encode(r->a, json_object_get_string(t),
                                          (size_t)json_object_get_string_len(t));
            rc = b->data.p ? 0 : bb_rd_oom(r);
        }
        if (!media)
            media = "text/plain";
    } else if (rc == 0) {
        bb_rd_out(r, mark);
        return unsup(r, "document", bb_json_get(src, "s3Location") ? "s3Location" : "source") < 0
                   ? -1
                   : 0;
    }
    bb_rd_out(r, mark);
    if (rc < 0)
        return -1;
    if (!media)
        media = "application/octet-stream";
    b->media_type = bb_ir_strdup(r->a, media, strlen(media));
    return b->media_type.p ? 1 : bb_rd_oom(r);
}

static int read_blocks(struct bb_rd *r, json_object *arr, bool in_tool_result, struct bb_vec *v);

/* toolResult: {toolUseId, content:[{text}|{json}|{image}|{document}], status}. */
static int read_tool_result(struct bb_rd *r, json_object *o, struct bb_ir_block *b)
{
    if (bb_rd_type(r, o, "toolResult", json_type_object) < 0)
        return -1;
    size_t mark = bb_rd_in(r, "toolResult");
    b->type = BB_IR_TOOL_RESULT;
    json_object *st = bb_json_get(o, "status"), *content = bb_json_get(o, "content");
    int rc = bb_rd_str(r, o, "toolUseId", true, &b->id);
    if (rc == 0 && st) {
        if (!bb_json_is(st, json_type_string))
            rc = bb_rd_expect(r, "status", "\"success\" or \"error\"");
        else
            b->is_error = !strcmp(json_object_get_string(st), "error");
    }
    if (rc == 0 && content)
        rc = bb_rd_type(r, content, "content", json_type_array);
    struct bb_vec v = {0};
    if (rc == 0 && content) {
        bb_rd_in(r, "content");
        rc = read_blocks(r, content, true, &v);
    }
    bb_rd_out(r, mark);
    if (rc < 0)
        return -1;
    struct bb_ir_block *blocks = v.v;
    size_t k = v.n;
    /* One text (or JSON) item is the flat form every protocol has; several texts also get the
     * joined flat form (as proto_anthropic does) for writers that only take a string. */
    bool all_text = k > 0;
    size_t total = 0;
    for (size_t i = 0; i < k; i++) {
        all_text &= blocks[i].type == BB_IR_TEXT;
        total += blocks[i].text.len + 1;
    }
    if (k == 1 && all_text) {
        b->text = blocks[0].text;
        return 1;
    }
    b->content = blocks;
    b->n_content = k;
    if (all_text) {
        char *t = bb_arena_alloc(r->a, total);
        if (!t)
            return bb_rd_oom(r);
        size_t at = 0;
        for (size_t i = 0; i < k; i++) {
            if (i)
                t[at++] = '\n';
            memcpy(t + at, blocks[i].text.p, blocks[i].text.len);
            at += blocks[i].text.len;
        }
        t[at] = '\0';
        b->text.p = t;
        b->text.len = at;
    }
    return 1;
}

/* reasoningContent: {reasoningText:{text, signature}} | {redactedContent}. */
static int read_reasoning(struct bb_rd *r, json_object *o, struct bb_ir_block *b)
{
    if (bb_rd_type(r, o, "reasoningContent", json_type_object) < 0)
        return -1;
    json_object *rt = bb_json_get(o, "reasoningText"), *red = bb_json_get(o, "redactedContent");
    if (!rt && !red)
        return unsup(r, NULL, "reasoningContent") < 0 ? -1 : 0;
    size_t mark = bb_rd_in(r, "reasoningContent");
    int rc;
    if (rt) {
        b->type = BB_IR_THINKING;
        rc = bb_rd_type(r, rt, "reasoningText", json_type_object);
        if (rc == 0) {
            bb_rd_in(r, "reasoningText");
            rc = bb_rd_str(r, rt, "text", true, &b->text) < 0 ||
                         bb_rd_str(r, rt, "signature", false, &b->signature) < 0
                     ? -1
                     : 0;
        }
    } else {
        b->type = BB_IR_REDACTED_THINKING;
        rc = rd_base64(r, o, "redactedContent", &b->signature);
    }
    bb_rd_out(r, mark);
    return rc < 0 ? -1 : 1;
}

/* citationsContent (model output echoed back): the generated text, the citations raw. */
static int read_citations_content(struct bb_rd *r, json_object *val, struct bb_ir_block *b)
{
    json_object *content = bb_json_get(val, "content"), *cit = bb_json_get(val, "citations");
    size_t n = bb_json_is(content, json_type_array) ? json_object_array_length(content) : 0;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        json_object *x = bb_json_get(json_object_array_get_idx(content, i), "text");
        if (bb_json_is(x, json_type_string))
            total += (size_t)json_object_get_string_len(x);
    }
    char *t = bb_arena_alloc(r->a, total + 1);
    if (!t)
        return bb_rd_oom(r);
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        json_object *x = bb_json_get(json_object_array_get_idx(content, i), "text");
        if (bb_json_is(x, json_type_string)) {
            size_t l = (size_t)json_object_get_string_len(x);
            memcpy(t + at, json_object_get_string(x), l);
            at += l;
        }
    }
    t[at] = '\0';
    b->type = BB_IR_TEXT;
    b->text = (struct bb_ir_str){t, at};
    if (cit && bb_rd_text(r, cit, &b->citations_json) < 0)
        return -1;
    return 1;
}

/* One content block (a union object; the path at it). 1 = b filled, 0 = nothing to add,
 * -1 = error. */
static int read_block(struct bb_rd *r, json_object *o, struct bb_ir_block *b,
                      struct bb_ir_block *prev, bool in_tool_result)
{
    if (bb_rd_type(r, o, NULL, json_type_object) < 0)
        return -1;
    memset(b, 0, sizeof *b);
    json_object_object_foreach(o, key, val)
    {
        if (!strcmp(key, "text")) {
            if (bb_rd_type(r, val, "text", json_type_string) < 0)
                return -1;
            b->type = BB_IR_TEXT;
            return bb_rd_dup(r, val, &b->text) < 0 ? -1 : 1;
        }
        if (!strcmp(key, "image"))
            return read_image(r, val, b);
        if (!strcmp(key, "document"))
            return read_document(r, val, b);
        if (in_tool_result && !strcmp(key, "json")) {
            b->type = BB_IR_TEXT;
            return bb_rd_text(r, val, &b->text) < 0 ? -1 : 1;
        }
        if (in_tool_result)
            return unsup(r, "toolResult.content", key) < 0 ? -1 : 0;
        if (!strcmp(key, "toolUse")) {
            if (bb_rd_type(r, val, "toolUse", json_type_object) < 0)
                return -1;
            size_t mark = bb_rd_in(r, "toolUse");
            b->type = BB_IR_TOOL_USE;
            int rc = bb_rd_str(r, val, "toolUseId", true, &b->id) < 0 ||
                             bb_rd_str(r, val, "name", true, &b->name) < 0
                         ? -1
                         : 0;
            bb_rd_out(r, mark);
            json_object *in = bb_json_get(val, "input");
            if (rc == 0)
                rc = in ? bb_rd_text(r, in, &b->input_json)
                        : ((b->input_json = bb_ir_strdup(r->a, "{}", 2)).p ? 0 : bb_rd_oom(r));
            return rc < 0 ? -1 : 1;
        }
        if (!strcmp(key, "toolResult"))
            return read_tool_result(r, val, b);
        if (!strcmp(key, "reasoningContent"))
            return read_reasoning(r, val, b);
        if (!strcmp(key, "cachePoint")) {
            /* Bedrock marks a cache boundary after a block; the IR flags that block. */
            if (prev)
                prev->cache_control = true;
            else if (unsup(r, NULL, "cachePoint") < 0)
                return -1;
            return 0;
        }
        if (!strcmp(key, "citationsContent"))
            return read_citations_content(r, val, b);
        return unsup(r, "content", key) < 0 ? -1 : 0;
    }
    return 0; /* an empty object: nothing */
}

/* A content array (the path at it) into blocks. */
static int read_blocks(struct bb_rd *r, json_object *arr, bool in_tool_result, struct bb_vec *v)
{
    struct bb_rd_iter it = bb_rd_iter(r, arr, NULL);
    json_object *el;
    while (bb_rd_next(&it, &el)) {
        struct bb_ir_block b, *prev = v->n ? &((struct bb_ir_block *)v->v)[v->n - 1] : NULL;
        int rc = read_block(r, el, &b, prev, in_tool_result);
        if (rc < 0)
            return -1;
        struct bb_ir_block *dst = rc ? BB_VEC_PUSH(r->a, v, struct bb_ir_block) : NULL;
        if (rc && !dst)
            return bb_rd_oom(r);
        if (dst)
            *dst = b;
    }
    return 0;
}

/* inferenceConfig: the table's members; anything else is unsupported. */
static int read_inference(struct bb_rd *r, json_object *o)
{
    if (bb_rd_type(r, o, "inferenceConfig", json_type_object) < 0)
        return -1;
    json_object_object_foreach(o, key, val)
    {
        (void)val;
        if (!bb_params_known_in(param_rows, N_PARAMS, "inferenceConfig", key) &&
            unsup(r, "inferenceConfig", key) < 0)
            return -1;
    }
    return 0;
}

/* One tool (the path at it). */
static int read_tool(struct bb_rd *r, json_object *t, struct bb_vec *tools)
{
    if (bb_rd_type(r, t, NULL, json_type_object) < 0)
        return -1;
    json_object *spec = bb_json_get(t, "toolSpec");
    if (!spec && bb_json_get(t, "cachePoint") && tools->n) {
        /* the tools before it are cached: a mark on the last of them */
        ((struct bb_ir_tool *)tools->v)[tools->n - 1].cache_control = true;
        return 0;
    }
    if (!spec)
        return unsup(r, "toolConfig",
                     bb_json_get(t, "cachePoint")   ? "cachePoint"
                     : bb_json_get(t, "systemTool") ? "systemTool"
                                                    : "tools");
    if (bb_rd_type(r, spec, "toolSpec", json_type_object) < 0)
        return -1;
    struct bb_ir_tool *tool = BB_VEC_PUSH(r->a, tools, struct bb_ir_tool);
    if (!tool)
        return bb_rd_oom(r);
    size_t mark = bb_rd_in(r, "toolSpec");
    json_object *is = bb_json_get(spec, "inputSchema"), *js = bb_json_get(is, "json");
    int rc = bb_rd_str(r, spec, "name", true, &tool->name) < 0 ||
                     bb_rd_str(r, spec, "description", false, &tool->description) < 0 ||
                     bb_rd_bool(r, spec, "strict", NULL, &tool->strict) < 0
                 ? -1
                 : 0;
    if (rc == 0 && is && !bb_json_is(js, json_type_object))
        rc = bb_rd_expect(r, "inputSchema.json", "an object");
    else if (rc == 0 && is)
        rc = bb_rd_text(r, js, &tool->parameters_json);
    bb_rd_out(r, mark);
    return rc;
}

static int read_tool_choice(struct bb_rd *r, json_object *tc, struct bb_ir_request *q)
{
    if (bb_rd_type(r, tc, "toolChoice", json_type_object) < 0)
        return -1;
    if (bb_json_get(tc, "auto")) {
        q->tool_choice = BB_IR_TC_AUTO;
    } else if (bb_json_get(tc, "any")) {
        q->tool_choice = BB_IR_TC_ANY;
    } else if (bb_json_get(tc, "tool")) {
        q->tool_choice = BB_IR_TC_TOOL;
        json_object *t = bb_json_get(tc, "tool");
        size_t mark = bb_rd_in(r, "toolChoice");
        int rc = bb_rd_type(r, t, "tool", json_type_object);
        if (rc == 0) {
            bb_rd_in(r, "tool");
            rc = bb_rd_str(r, t, "name", true, &q->tool_choice_name);
        }
        bb_rd_out(r, mark);
        return rc;
    } else {
        return bb_rd_expect(r, "toolChoice", "one of auto, any or tool");
    }
    return 0;
}

static int read_tools(struct bb_rd *r, json_object *o, struct bb_ir_request *q)
{
    if (bb_rd_type(r, o, "toolConfig", json_type_object) < 0)
        return -1;
    json_object *tools, *tc = bb_json_get(o, "toolChoice");
    size_t mark = bb_rd_in(r, "toolConfig");
    int rc = bb_rd_want(r, o, "tools", json_type_array, false, &tools);
    struct bb_vec v = {0};
    if (rc < 0)
        return -1;
    struct bb_rd_iter it = bb_rd_iter(r, tools, "tools");
    json_object *el;
    while (bb_rd_next(&it, &el))
        if (read_tool(r, el, &v) < 0)
            return -1;
    bb_rd_out(r, mark);
    q->tools = v.v;
    q->n_tools = v.n;
    if (!tc)
        return 0;
    mark = bb_rd_in(r, "toolConfig");
    rc = read_tool_choice(r, tc, q);
    bb_rd_out(r, mark);
    return rc;
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

/* Anthropic's thinking: {type: enabled|adaptive|disabled, budget_tokens} (the path at
 * additionalModelRequestFields). */
static int read_thinking(struct bb_rd *r, json_object *val, struct bb_ir_request *q)
{
    if (bb_rd_type(r, val, "thinking", json_type_object) < 0)
        return -1;
    size_t mark = bb_rd_in(r, "thinking");
    json_object *t;
    int rc = bb_rd_want(r, val, "type", json_type_string, false, &t);
    if (rc == 0) {
        q->reasoning = !t || strcmp(json_object_get_string(t), "disabled") != 0;
        rc = bb_rd_u32(r, val, "budget_tokens", NULL, &q->reasoning_budget);
    }
    bb_rd_out(r, mark);
    return rc;
}

/* additionalModelRequestFields: the model-specific fields busbar understands (top_k is the
 * table's). */
static int read_additional(struct bb_rd *r, json_object *o, struct bb_ir_request *q)
{
    const char *amrf = "additionalModelRequestFields";
    if (bb_rd_type(r, o, amrf, json_type_object) < 0)
        return -1;
    json_object_object_foreach(o, key, val)
    {
        int rc = 0;
        if (bb_params_known_in(param_rows, N_PARAMS, amrf, key)) {
            continue;
        } else if (!strcmp(key, "thinking")) {
            size_t mark = bb_rd_in(r, amrf);
            rc = read_thinking(r, val, q);
            bb_rd_out(r, mark);
        } else if ((!strcmp(key, "reasoningConfig") || !strcmp(key, "reasoning_config")) &&
                   bb_json_is(val, json_type_object)) {
            /* Amazon Nova's {type: enabled, maxReasoningEffort: low|medium|high}. */
            const char *t = bb_json_get_str(val, "type");
            const char *e = bb_json_get_str(val, "maxReasoningEffort");
            q->reasoning = !t || strcmp(t, "disabled") != 0;
            if (e)
                q->reasoning_effort = effort_from(e);
        } else {
            rc = unsup(r, amrf, key);
        }
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* outputConfig.textFormat: {type: json_schema, structure:{jsonSchema:{schema, name}}}. */
static int read_output_config(struct bb_rd *r, json_object *o, struct bb_ir_request *q)
{
    if (bb_rd_type(r, o, "outputConfig", json_type_object) < 0)
        return -1;
    json_object_object_foreach(o, key, val)
    {
        if (strcmp(key, "textFormat") != 0) {
            if (unsup(r, "outputConfig", key) < 0)
                return -1;
            continue;
        }
        json_object *js = bb_json_get(bb_json_get(val, "structure"), "jsonSchema");
        size_t mark = bb_rd_in(r, "outputConfig.textFormat.structure");
        int rc = bb_rd_type(r, js, "jsonSchema", json_type_object);
        json_object *schema = bb_json_get(js, "schema");
        if (rc == 0) {
            bb_rd_in(r, "jsonSchema");
            rc = bb_rd_type(r, schema, "schema", json_type_string);
        }
        if (rc == 0) {
            json_object *parsed =
                bb_json_parse(json_object_get_string(schema),
                              (size_t)json_object_get_string_len(schema), "schema", NULL);
            rc = parsed ? 0 : bb_rd_expect(r, "schema", "a JSON schema text");
            json_object_put(parsed);
        }
        if (rc == 0) {
            q->format = BB_IR_FMT_JSON_SCHEMA;
            rc = bb_rd_dup(r, schema, &q->format_schema_json) < 0 ||
                         bb_rd_str(r, js, "name", false, &q->format_name) < 0
                     ? -1
                     : 0;
        }
        bb_rd_out(r, mark);
        if (rc < 0)
            return -1;
    }
    return 0;
}

static int read_system(struct bb_rd *r, json_object *sys, struct bb_ir_request *q)
{
    if (bb_rd_type(r, sys, "system", json_type_array) < 0)
        return -1;
    struct bb_vec v = {0};
    size_t n = json_object_array_length(sys);
    size_t mark = bb_rd_in(r, "system");
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        json_object *o = json_object_array_get_idx(sys, i), *t = bb_json_get(o, "text");
        struct bb_ir_block *last = v.n ? &((struct bb_ir_block *)v.v)[v.n - 1] : NULL;
        size_t m = bb_rd_at(r, i);
        if (bb_rd_type(r, o, NULL, json_type_object) < 0) {
            rc = -1;
        } else if (t) {
            struct bb_ir_block *b = NULL;
            rc = bb_rd_type(r, t, "text", json_type_string);
            if (rc == 0 && !(b = BB_VEC_PUSH(r->a, &v, struct bb_ir_block)))
                rc = bb_rd_oom(r);
            if (rc == 0) {
                b->type = BB_IR_TEXT;
                rc = bb_rd_dup(r, t, &b->text);
            }
        } else if (bb_json_get(o, "cachePoint")) {
            if (last)
                last->cache_control = true;
            else
                rc = unsup(r, "system", "cachePoint");
        } else {
            json_object_object_foreach(o, key, val)
            {
                (void)val;
                rc = unsup(r, "system", key);
                break;
            }
        }
        bb_rd_out(r, m);
    }
    bb_rd_out(r, mark);
    q->system = v.v;
    q->n_system = v.n;
    return rc;
}

/* One message (the path at it). */
static int read_message(struct bb_rd *r, json_object *m, struct bb_ir_message *im)
{
    if (bb_rd_type(r, m, NULL, json_type_object) < 0)
        return -1;
    const char *rs = bb_json_get_str(m, "role");
    json_object *content = bb_json_get(m, "content");
    if (rs && !strcmp(rs, "user"))
        im->role = BB_IR_USER;
    else if (rs && !strcmp(rs, "assistant"))
        im->role = BB_IR_ASSISTANT;
    else
        return bb_rd_expect(r, "role", "\"user\" or \"assistant\"");
    if (bb_rd_type(r, content, "content", json_type_array) < 0)
        return -1;
    struct bb_vec v = {0};
    size_t mark = bb_rd_in(r, "content");
    int rc = read_blocks(r, content, false, &v);
    bb_rd_out(r, mark);
    im->blocks = v.v;
    im->n_blocks = v.n;
    return rc;
}

static int read_messages(struct bb_rd *r, json_object *msgs, struct bb_ir_request *q)
{
    if (bb_rd_type(r, msgs, "messages", json_type_array) < 0)
        return -1;
    size_t n = json_object_array_length(msgs);
    q->messages = n ? bb_arena_calloc(r->a, n * sizeof *q->messages) : NULL;
    if (n && !q->messages)
        return bb_rd_oom(r);
    struct bb_rd_iter it = bb_rd_iter(r, msgs, "messages");
    json_object *el;
    while (bb_rd_next(&it, &el))
        if (read_message(r, el, &q->messages[it.at]) < 0)
            return -1;
    q->n_messages = n;
    return 0;
}

static int bedrock_read_request(struct bb_arena *a, const char *body, size_t len,
                                const char *model_from_path, struct bb_ir_request *out,
                                struct bb_err *err)
{
    memset(out, 0, sizeof *out);
    json_object *root = bb_json_parse(body, len, "request body", err);
    if (!root)
        return -1;
    struct bb_rd r;
    bb_rd_init(&r, a, out, err);
    int rc = -1;
    if (!bb_json_is(root, json_type_object)) {
        bb_err_set(err, "request body: expected a JSON object");
        goto out;
    }
    if (model_from_path) {
        out->model = bb_ir_strdup(a, model_from_path, strlen(model_from_path));
        if (!out->model.p) {
            bb_rd_oom(&r);
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
            k = read_inference(&r, val);
        else if (!strcmp(key, "toolConfig"))
            k = read_tools(&r, val, out);
        else if (!strcmp(key, "additionalModelRequestFields"))
            k = read_additional(&r, val, out);
        else if (!strcmp(key, "outputConfig"))
            k = read_output_config(&r, val, out);
        else if (!strcmp(key, "modelId"))
            continue; /* the SDK never sends it in the body; the URL names the model */
        else
            k = unsup(&r, NULL, key);
        if (k < 0)
            goto out;
    }
    if (bb_params_read(&r, root, param_rows, N_PARAMS) < 0)
        goto out;
    rc = 0;
out:
    json_object_put(root);
    return rc;
}

/* ---------------------------------------------------------------- responses (egress read) */

static void read_usage(json_object *u, struct bb_ir_usage *out)
{
    if (!bb_json_is(u, json_type_object))
        return;
    struct {
        const char *k;
        uint64_t *v;
    } f[] = {{"inputTokens", &out->input},
             {"outputTokens", &out->output},
             {"cacheReadInputTokens", &out->cache_read},
             {"cacheWriteInputTokens", &out->cache_write}};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (bb_json_uint(bb_json_get(u, f[i].k), UINT64_MAX, f[i].v))
            out->set = true;
}

static int bedrock_read_response(struct bb_arena *a, const char *body, size_t len,
                                 struct bb_ir_response *out, struct bb_err *err)
{
    memset(out, 0, sizeof *out);
    json_object *root = bb_json_parse(body, len, "bedrock response", err);
    if (!root)
        return -1;
    struct bb_rd r;
    bb_rd_init(&r, a, NULL, err);
    r.prefix = "bedrock response";
    int rc = -1;
    if (!bb_json_is(root, json_type_object)) {
        bb_rd_expect(&r, NULL, "a JSON object");
        goto out;
    }
    json_object *msg = bb_json_get(bb_json_get(root, "output"), "message");
    if (msg) {
        json_object *content = bb_json_get(msg, "content");
        size_t mark = bb_rd_in(&r, "output.message");
        struct bb_vec v = {0};
        int e = bb_rd_type(&r, content, "content", json_type_array);
        if (e == 0) {
            bb_rd_in(&r, "content");
            e = read_blocks(&r, content, false, &v);
        }
        bb_rd_out(&r, mark);
        if (e < 0)
            goto out;
        out->blocks = v.v;
        out->n_blocks = v.n;
    }
    out->stop = stop_from_wire(bb_json_get_str(root, "stopReason"));
    read_usage(bb_json_get(root, "usage"), &out->usage);
    json_object *amrf = bb_json_get(root, "additionalModelResponseFields");
    if (bb_rd_take(&r, amrf, "stop_sequence", &out->stop_sequence) < 0)
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
    bb_json_add(o, "inputTokens", bb_json_new_u64(u->input));
    bb_json_add(o, "outputTokens", bb_json_new_u64(u->output));
    /* totalTokens counts every tier, as Bedrock reports it. */
    bb_json_add(o, "totalTokens",
                bb_json_new_u64(u->input + u->output + u->cache_read + u->cache_write));
    if (u->cache_read)
        bb_json_add(o, "cacheReadInputTokens", bb_json_new_u64(u->cache_read));
    if (u->cache_write)
        bb_json_add(o, "cacheWriteInputTokens", bb_json_new_u64(u->cache_write));
    return o;
}

static struct json_object *reasoning_text(const struct bb_ir_block *b)
{
    struct json_object *rt = json_object_new_object(), *rc = json_object_new_object(),
                       *o = json_object_new_object();
    bb_json_add(rt, "text", bb_json_new_str(&b->text));
    if ((b->signature.p != NULL))
        bb_json_add(rt, "signature", bb_json_new_str(&b->signature));
    bb_json_add(rc, "reasoningText", rt);
    bb_json_add(o, "reasoningContent", rc);
    return o;
}

static struct json_object *redacted(const struct bb_ir_block *b)
{
    struct json_object *rc = json_object_new_object(), *o = json_object_new_object();
    bb_json_add(rc, "redactedContent", bb_json_new_str(&b->signature));
    bb_json_add(o, "reasoningContent", rc);
    return o;
}

/* Tool input text → a JSON object ({} when empty; also when invalid or not an object, which
 * is reported as tool_input). */
static struct json_object *tool_input(struct bb_arena *a, const struct bb_egress_ctx *ctx,
                                      const struct bb_ir_str *s)
{
    struct json_object *in = bb_json_raw(s);
    if (!bb_json_is(in, json_type_object)) {
        if (s->p && !blank(s))
            bb_proto_drop(a, ctx, "tool_input");
        json_object_put(in);
        in = json_object_new_object();
    }
    return in;
}

/* toolUse; id_seed names a call that has no id (toolUseId is required): <seed>_<n>. */
static struct json_object *tool_use(struct bb_arena *a, const struct bb_egress_ctx *ctx,
                                    const struct bb_ir_block *b, const char *id_seed, size_t n)
{
    struct json_object *tu = json_object_new_object(), *o = json_object_new_object();
    if (b->id.p && b->id.len) {
        bb_json_add(tu, "toolUseId", bb_json_new_str(&b->id));
    } else {
        char id[128];
        snprintf(id, sizeof id, "tooluse_%s_%zu", id_seed ? id_seed : "bb", n);
        bb_json_add(tu, "toolUseId", json_object_new_string(id));
    }
    bb_json_add(tu, "name", bb_json_new_str(&b->name));
    bb_json_add(tu, "input", tool_input(a, ctx, &b->input_json));
    bb_json_add(o, "toolUse", tu);
    return o;
}

/* {image:{format, source:{bytes}}}; NULL (dropped) for URLs and unknown formats. */
static struct json_object *image_json(struct bb_arena *a, const struct bb_egress_ctx *ctx,
                                      const struct bb_ir_block *b)
{
    struct bb_ir_str media = b->media_type, data = b->data;
    if (!data.p && !bb_media_split_data_url(b->url.p, b->url.len, &media, &data)) {
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
    bb_json_add(src, "bytes", json_object_new_string_len(data.p, (int)data.len));
    bb_json_add(img, "format", json_object_new_string(fmt));
    bb_json_add(img, "source", src);
    bb_json_add(o, "image", img);
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
                                         const struct bb_ir_block *b, unsigned *seq)
{
    struct bb_ir_str media = b->media_type, data = b->data;
    if (!data.p && !bb_media_split_data_url(b->url.p, b->url.len, &media, &data)) {
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
    bb_json_add(src, "bytes", json_object_new_string_len(data.p, (int)data.len));
    bb_json_add(doc, "format", json_object_new_string(fmt));
    bb_json_add(doc, "name", doc_name(b, seq));
    bb_json_add(doc, "source", src);
    bb_json_add(o, "document", doc);
    return o;
}

static struct json_object *text_json(const struct bb_ir_str *s)
{
    struct json_object *o = json_object_new_object();
    bb_json_add(o, "text", bb_json_new_str(s));
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
    bb_json_add(cp, "type", json_object_new_string("default"));
    bb_json_add(o, "cachePoint", cp);
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
    } else if ((b->text.p != NULL) && b->text.len) {
        struct json_object *js = bb_json_raw(&b->text);
        if (bb_json_is(js, json_type_object)) {
            struct json_object *o = json_object_new_object();
            bb_json_add(o, "json", js);
            json_object_array_add(content, o);
        } else {
            json_object_put(js);
            json_object_array_add(content, text_json(&b->text));
        }
    }
    struct json_object *tr = json_object_new_object(), *o = json_object_new_object();
    bb_json_add(tr, "toolUseId", bb_json_new_str(&b->id));
    bb_json_add(tr, "content", content);
    /* status is a Claude-only field on Converse. */
    if (w->anthropic)
        bb_json_add(tr, "status", json_object_new_string(b->is_error ? "error" : "success"));
    else if (b->is_error)
        bb_proto_drop(w->a, w->ctx, "tool_result.is_error");
    bb_json_add(o, "toolResult", tr);
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
            if ((b->citations_json.p != NULL))
                bb_proto_drop(w->a, w->ctx, "citations");
            break;
        case BB_IR_THINKING:
            /* Without a signature the model cannot accept its own reasoning back. */
            if ((b->signature.p != NULL) && b->signature.len)
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
        if ((m->name.p != NULL))
            bb_proto_drop(w->a, w->ctx, "name");
        if (!cur || cur_role != m->role) {
            struct json_object *content = json_object_new_array();
            write_blocks(w, m->blocks, m->n_blocks, content);
            if (json_object_array_length(content) == 0) {
                json_object_put(content);
                continue;
            }
            struct json_object *jm = json_object_new_object();
            bb_json_add(jm, "role",
                        json_object_new_string(m->role == BB_IR_USER ? "user" : "assistant"));
            bb_json_add(jm, "content", content);
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
        bb_json_add(spec, "name", bb_json_new_str(&t->name));
        if ((t->description.p != NULL) && t->description.len)
            bb_json_add(spec, "description", bb_json_new_str(&t->description));
        struct json_object *schema = bb_json_raw(&t->parameters_json);
        if (!bb_json_is(schema, json_type_object)) {
            json_object_put(schema);
            schema = json_object_new_object();
            bb_json_add(schema, "type", json_object_new_string("object"));
            bb_json_add(schema, "properties", json_object_new_object());
        }
        bb_json_add(is, "json", schema);
        bb_json_add(spec, "inputSchema", is);
        if (t->strict)
            bb_proto_drop(w->a, w->ctx, "strict");
        bb_json_add(o, "toolSpec", spec);
        json_object_array_add(tools, o);
        push_cache_point(w, tools, t->cache_control); /* the tools up to here are cached */
    }
    struct json_object *tc = json_object_new_object();
    bb_json_add(tc, "tools", tools);
    enum bb_ir_tool_choice choice = ir->tool_choice;
    struct json_object *ch = NULL, *inner = json_object_new_object();
    switch (choice) {
    case BB_IR_TC_AUTO:
        ch = json_object_new_object();
        bb_json_add(ch, "auto", inner);
        break;
    case BB_IR_TC_ANY:
        ch = json_object_new_object();
        bb_json_add(ch, "any", inner);
        break;
    case BB_IR_TC_TOOL:
        ch = json_object_new_object();
        bb_json_add(inner, "name", bb_json_new_str(&ir->tool_choice_name));
        bb_json_add(ch, "tool", inner);
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
        bb_json_add(tc, "toolChoice", ch);
    if (ir->has_parallel_tool_calls && !ir->parallel_tool_calls)
        bb_proto_drop(w->a, w->ctx, "parallel_tool_calls");
    return tc;
}

struct sampling {
    struct wr *w;
    bool thinking;
    bool temp_sent;
};

/* Claude's rules on Converse: thinking needs the default temperature, top_p >= 0.95 and no
 * top_k; current Claude models refuse temperature and top_p together; stop sequences must not
 * be blank; top_k is a Claude field (additionalModelRequestFields). */
static bool sampling_hook(void *arg, const struct bb_param *p, struct bb_param_value *v)
{
    struct sampling *sm = arg;
    struct wr *w = sm->w;
    switch (p->field) {
    case BB_IRP_TEMPERATURE:
        if (sm->thinking && v->num != 1.0) {
            bb_proto_drop(w->a, w->ctx, "temperature");
            return false;
        }
        sm->temp_sent = true;
        return true;
    case BB_IRP_TOP_P:
        if ((sm->thinking && v->num < 0.95) || (w->anthropic && sm->temp_sent)) {
            bb_proto_drop(w->a, w->ctx, "top_p");
            return false;
        }
        return true;
    case BB_IRP_TOP_K:
        if (!w->anthropic || sm->thinking) {
            bb_proto_drop(w->a, w->ctx, "top_k");
            return false;
        }
        return true;
    case BB_IRP_STOP: {
        if (!w->anthropic)
            return true;
        struct bb_ir_str *ok = bb_arena_alloc(w->a, v->n_strs * sizeof *ok);
        size_t n = 0;
        for (size_t i = 0; ok && i < v->n_strs; i++) {
            if (blank(&v->strs[i]))
                bb_proto_drop(w->a, w->ctx, "stop");
            else
                ok[n++] = v->strs[i];
        }
        v->strs = ok;
        v->n_strs = n;
        return n > 0;
    }
    default:
        return true;
    }
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
    if (bb_aws_model_path(out->path, sizeof out->path, model,
                          ctx->stream ? "converse-stream" : "converse") < 0)
        return bb_err_set(err, "bedrock: model id too long");

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
    bb_proto_drop_hosted(a, ctx, ir, NULL); /* Converse has no provider-run tools */

    struct json_object *root = json_object_new_object();
    bb_json_add(root, "messages", write_messages(&w));
    if (ir->n_system) {
        struct json_object *sys = json_object_new_array();
        write_blocks(&w, ir->system, ir->n_system, sys);
        if (json_object_array_length(sys))
            bb_json_add(root, "system", sys);
        else
            json_object_put(sys);
    }

    /* inferenceConfig and top_k from the table, with Claude's rules applied by the hook */
    uint32_t budget = thinking ? budget_for(ir) : 0;
    struct bb_ir_request scalars = *ir;
    if (thinking) {
        /* max_tokens must exceed the budget: keep the answer's room on top of it (Bedrock's
         * own default may not exceed it either) */
        uint64_t mt = ir->has_max_tokens                           ? ir->max_tokens
                      : ctx->lane && ctx->lane->default_max_tokens ? ctx->lane->default_max_tokens
                                                                   : 4096;
        if (mt <= budget)
            mt += budget;
        scalars.has_max_tokens = true;
        scalars.max_tokens = mt > UINT32_MAX ? UINT32_MAX : (uint32_t)mt;
    }
    struct sampling sm = {&w, thinking, false};
    struct json_object *tc = write_tools(&w);
    bb_params_write(root, param_rows, N_PARAMS, &scalars, a, ctx, sampling_hook, &sm);
    if (tc)
        bb_json_add(root, "toolConfig", tc);
    if (thinking) {
        struct json_object *amrf = bb_json_get(root, "additionalModelRequestFields");
        if (!amrf) {
            amrf = json_object_new_object();
            bb_json_add(root, "additionalModelRequestFields", amrf);
        }
        struct json_object *th = json_object_new_object();
        bb_json_add(th, "type", json_object_new_string("enabled"));
        bb_json_add(th, "budget_tokens", json_object_new_int64(budget));
        bb_json_add(amrf, "thinking", th);
    }

    if (ir->format == BB_IR_FMT_JSON_OBJECT || ir->format == BB_IR_FMT_JSON_SCHEMA)
        bb_proto_drop(a, ctx, "response_format");
    if ((ir->user.p != NULL))
        bb_proto_drop(a, ctx, "user");

    size_t blen = 0;
    const char *body = bb_json_out(root, &blen);
    int rc = -1;
    if (evbuffer_add(out->body, body, blen) < 0 ||
        bb_proto_put(out->headers, "Content-Type: application/json\r\n", NULL, NULL) < 0) {
        bb_err_set(err, "out of memory");
        goto out;
    }
    if (bb_aws_sign(a, ctx, out, body, blen, "bedrock", err) < 0)
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
        return (b->data.p != NULL) ? image_json(a, NULL, b) : NULL;
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
    bb_json_add(msg, "role", json_object_new_string("assistant"));
    bb_json_add(msg, "content", content);
    bb_json_add(output, "message", msg);
    bb_json_add(root, "output", output);
    bb_json_add(root, "stopReason", json_object_new_string(stop_to_wire(r->stop)));
    bb_json_add(root, "usage", usage_json(&r->usage));
    bb_json_add(metrics, "latencyMs", json_object_new_int(0));
    bb_json_add(root, "metrics", metrics);
    if (r->stop == BB_IR_STOP_STOP_SEQUENCE && (r->stop_sequence.p != NULL)) {
        struct json_object *f = json_object_new_object();
        bb_json_add(f, "stop_sequence", bb_json_new_str(&r->stop_sequence));
        bb_json_add(root, "additionalModelResponseFields", f);
    }
    size_t n = 0;
    const char *s = bb_json_out(root, &n);
    int rc = evbuffer_add(out, s, n);
    json_object_put(root);
    return rc < 0 ? -1 : 0;
}

static const char *bedrock_stream_content_type(const struct bb_ingress_ctx *ctx)
{
    (void)ctx;
    return BB_AWS_STREAM_TYPE;
}

/* ---------------------------------------------------------------- stream exceptions */

/* ---------------------------------------------------------------- stream decoder (egress) */

struct dec {
    bool started, done;
    bool stop_seen;     /* messageStop (the stop reason) arrived */
    struct bb_dseq seq; /* key: Bedrock's contentBlockIndex */
    enum bb_ir_stop stop;
    /* messageStop's stop sequence, reported with the metadata frame after it: kept here, as
     * each frame's scratch arena is gone by then */
    char stop_seq[256];
    size_t stop_seq_len;
};

static void bedrock_dec_init(void *d)
{
    memset(d, 0, sizeof(struct dec));
}

static int dec_start(struct dec *d, const struct bb_dout *o)
{
    if (d->started)
        return 0;
    d->started = true;
    struct bb_ir_event ev = {.type = BB_IR_EV_MESSAGE_START};
    return bb_dout_emit(o, &ev);
}

static int dec_close(struct dec *d, const struct bb_dout *o)
{
    return bb_dseq_close(&d->seq, o);
}

/* Make native block idx the open one, starting it as type when it is new. */
static int dec_open(struct dec *d, const struct bb_dout *o, int64_t idx, enum bb_ir_block_type type,
                    const struct bb_ir_str *id, const struct bb_ir_str *name)
{
    if (d->seq.open && d->seq.key == idx)
        return 0;
    return bb_dseq_open(&d->seq, o, idx, type, id, name);
}

/* contentBlockIndex of a frame (0 when absent). */
static int64_t block_index(json_object *p)
{
    int64_t idx = 0;
    return bb_json_int(bb_json_get(p, "contentBlockIndex"), 0, INT32_MAX, &idx) ? idx : 0;
}

static int dec_delta(struct dec *d, const struct bb_dout *o, struct json_object *p)
{
    struct json_object *delta = bb_json_get(p, "delta");
    int64_t idx = block_index(p);
    if (!bb_json_is(delta, json_type_object))
        return -1;
    struct bb_ir_event ev = {.type = BB_IR_EV_BLOCK_DELTA};
    enum bb_ir_block_type bt;
    struct json_object *v;
    if ((v = bb_json_get(delta, "text"))) {
        bt = BB_IR_TEXT;
        ev.delta = BB_IR_D_TEXT;
    } else if ((v = bb_json_get(bb_json_get(delta, "toolUse"), "input"))) {
        bt = BB_IR_TOOL_USE;
        ev.delta = BB_IR_D_INPUT_JSON;
    } else if (bb_json_get(delta, "reasoningContent")) {
        struct json_object *rc = bb_json_get(delta, "reasoningContent");
        bt = BB_IR_THINKING;
        if ((v = bb_json_get(rc, "text"))) {
            ev.delta = BB_IR_D_THINKING;
        } else if ((v = bb_json_get(rc, "signature"))) {
            ev.delta = BB_IR_D_SIGNATURE;
        } else if ((v = bb_json_get(rc, "redactedContent"))) {
            bt = BB_IR_REDACTED_THINKING;
            ev.delta = BB_IR_D_REDACTED;
        } else {
            return 0;
        }
    } else if ((v = bb_json_get(delta, "citation"))) {
        bt = BB_IR_TEXT;
        ev.delta = BB_IR_D_CITATION;
        ev.text = bb_json_text(o->scratch, v);
        if (!ev.text.p)
            return -1;
        v = NULL;
    } else {
        return 0; /* image / toolResult deltas: nothing the IR streams */
    }
    if (v) {
        if (!bb_json_is(v, json_type_string))
            return -1;
        if (!(ev.text = bb_json_dup(o->scratch, v)).p)
            return -1;
    }
    int rc = dec_open(d, o, idx, bt, NULL, NULL);
    if (rc)
        return rc;
    ev.index = d->seq.index;
    ev.block_type = bt;
    return bb_dout_emit(o, &ev);
}

static int dec_exception(struct dec *d, const struct bb_dout *o, const struct bb_frame *f)
{
    struct bb_ir_event ev;
    if (bb_aws_exception_event(o->scratch, f, &ev) < 0)
        return -1;
    d->done = true;
    return bb_dout_emit(o, &ev);
}

static bool ev_is(const struct bb_frame *f, const char *name)
{
    size_t n = strlen(name);
    return f->event_len == n && !memcmp(f->event, name, n);
}

/* The stop of the message (messageStop's reason and sequence) as a MESSAGE_DELTA, with the
 * metadata frame's usage when it has come, then MESSAGE_STOP. */
static int dec_end(struct dec *d, const struct bb_dout *o, json_object *usage)
{
    int rc = dec_start(d, o);
    if (!rc)
        rc = dec_close(d, o);
    if (rc)
        return rc;
    struct bb_ir_event ev = {.type = BB_IR_EV_MESSAGE_DELTA,
                             .stop = d->stop ? d->stop : BB_IR_STOP_END_TURN};
    if (d->stop_seq_len &&
        !(ev.stop_sequence = bb_ir_strdup(o->scratch, d->stop_seq, d->stop_seq_len)).p)
        return -1;
    read_usage(usage, &ev.usage);
    if ((rc = bb_dout_emit(o, &ev)))
        return rc;
    struct bb_ir_event stop = {.type = BB_IR_EV_MESSAGE_STOP};
    d->done = true;
    return bb_dout_emit(o, &stop);
}

static int bedrock_dec_frame(void *dp, struct bb_arena *scratch, const struct bb_frame *f,
                             bb_ir_event_cb cb, void *arg)
{
    struct dec *d = dp;
    struct bb_dout o = {cb, arg, scratch};
    if (d->done)
        return 0;
    if (f->exception)
        return dec_exception(d, &o, f);
    json_object *p = bb_json_parse(f->data, f->data_len, "event", NULL);
    if (!bb_json_is(p, json_type_object)) {
        json_object_put(p);
        return -1;
    }
    int rc = 0;
    if (ev_is(f, "messageStart")) {
        rc = dec_start(d, &o);
    } else if (ev_is(f, "contentBlockStart")) {
        json_object *tu = bb_json_get(bb_json_get(p, "start"), "toolUse");
        rc = dec_start(d, &o);
        if (!rc && bb_json_is(tu, json_type_object)) {
            json_object *id = bb_json_get(tu, "toolUseId"), *nm = bb_json_get(tu, "name");
            struct bb_ir_str sid = {0}, snm = {0};
            if ((bb_json_is(id, json_type_string) && !(sid = bb_json_dup(scratch, id)).p) ||
                (bb_json_is(nm, json_type_string) && !(snm = bb_json_dup(scratch, nm)).p))
                rc = -1;
            else
                rc = dec_open(d, &o, block_index(p), BB_IR_TOOL_USE, &sid, &snm);
        }
    } else if (ev_is(f, "contentBlockDelta")) {
        rc = dec_start(d, &o);
        if (!rc)
            rc = dec_delta(d, &o, p);
    } else if (ev_is(f, "contentBlockStop")) {
        if (d->seq.open && d->seq.key == block_index(p))
            rc = dec_close(d, &o);
    } else if (ev_is(f, "messageStop")) {
        const char *ss =
            bb_json_get_str(bb_json_get(p, "additionalModelResponseFields"), "stop_sequence");
        d->stop = stop_from_wire(bb_json_get_str(p, "stopReason"));
        d->stop_seen = true;
        d->stop_seq_len = ss ? strlen(ss) : 0;
        if (d->stop_seq_len >= sizeof d->stop_seq)
            d->stop_seq_len = sizeof d->stop_seq - 1;
        memcpy(d->stop_seq, ss ? ss : "", d->stop_seq_len);
        rc = dec_start(d, &o);
        if (!rc)
            rc = dec_close(d, &o);
    } else if (ev_is(f, "metadata")) {
        /* Bedrock's terminator: usage arrives after messageStop. */
        rc = dec_end(d, &o, bb_json_get(p, "usage"));
    }
    /* other event types (future members) are ignored, as the SDK does */
    json_object_put(p);
    return rc;
}

/* ---------------------------------------------------------------- stream encoder (ingress) */

/* Open blocks are a set, not a single slot: IR from another dialect may interleave blocks, and
 * each keeps its own contentBlockIndex (clients accumulate by index). Indexes past 63 are not
 * tracked: their BLOCK_STOP is always written and MESSAGE_STOP cannot close them. */
/* Open blocks (bb_eseq): Converse numbers the blocks it shows (text, reasoning, tool use)
 * consecutively from 0; a text or reasoning block gets its index with its first delta (a
 * tool use with its contentBlockStart), other kinds none (their events are skipped). */
struct enc {
    bool started, stopped;
    struct bb_eseq seq;
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
    const char *s = bb_json_out(o, &n);
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
    bb_json_add(o, "role", json_object_new_string("assistant"));
    return put_event(out, "messageStart", o);
}

static bool shown(enum bb_ir_block_type t)
{
    return t == BB_IR_TEXT || t == BB_IR_THINKING || t == BB_IR_REDACTED_THINKING ||
           t == BB_IR_TOOL_USE;
}

/* Forget b; contentBlockStop when the client saw it. */
static int enc_stop_block(struct enc *e, struct bb_eseq_block *b, struct evbuffer *out)
{
    uint32_t wire = b->wire;
    bb_eseq_remove(&e->seq, b);
    if (wire == BB_ESEQ_NONE)
        return 0;
    struct json_object *o = json_object_new_object();
    bb_json_add(o, "contentBlockIndex", json_object_new_int64(wire));
    return put_event(out, "contentBlockStop", o);
}

static int enc_close_all(struct enc *e, struct evbuffer *out)
{
    while (e->seq.n_open)
        if (enc_stop_block(e, &e->seq.open[0], out) < 0)
            return -1;
    return 0;
}

static int enc_delta(struct enc *e, const struct bb_ir_event *ev, struct evbuffer *out)
{
    struct json_object *delta = json_object_new_object(), *inner;
    switch (ev->delta) {
    case BB_IR_D_TEXT:
        bb_json_add(delta, "text", bb_json_new_str(&ev->text));
        break;
    case BB_IR_D_INPUT_JSON:
        inner = json_object_new_object();
        bb_json_add(inner, "input", bb_json_new_str(&ev->text));
        bb_json_add(delta, "toolUse", inner);
        break;
    case BB_IR_D_THINKING:
    case BB_IR_D_SIGNATURE:
    case BB_IR_D_REDACTED:
        inner = json_object_new_object();
        bb_json_add(inner,
                    ev->delta == BB_IR_D_THINKING    ? "text"
                    : ev->delta == BB_IR_D_SIGNATURE ? "signature"
                                                     : "redactedContent",
                    bb_json_new_str(&ev->text));
        bb_json_add(delta, "reasoningContent", inner);
        break;
    default:
        json_object_put(delta); /* citations: Bedrock's citation delta has another shape */
        return 0;
    }
    /* A delta may open its block (Bedrock opens text blocks that way anyway). */
    struct bb_eseq_block *b = bb_eseq_find(&e->seq, ev->index);
    if (!b)
        b = bb_eseq_open(&e->seq, ev->index, bb_ir_delta_block(ev->delta), false);
    if (!b || !shown(b->type)) { /* more open at once than any dialect has, or not shown */
        json_object_put(delta);
        return 0;
    }
    struct json_object *o = json_object_new_object();
    bb_json_add(o, "delta", delta);
    bb_json_add(o, "contentBlockIndex", json_object_new_int64(bb_eseq_show(&e->seq, b)));
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
        e->stopped = true;
        return bb_aws_write_exception(out, ev);
    }
    if (enc_start(e, out) < 0)
        return -1;
    switch (ev->type) {
    case BB_IR_EV_MESSAGE_START:
        bb_ir_usage_max(&e->usage, &ev->usage);
        return 0;
    case BB_IR_EV_BLOCK_START: {
        if (bb_eseq_find(&e->seq, ev->index))
            return 0; /* started twice: the first one stands */
        struct bb_eseq_block *b =
            bb_eseq_open(&e->seq, ev->index, ev->block_type, ev->block_type == BB_IR_TOOL_USE);
        if (!b || ev->block_type != BB_IR_TOOL_USE)
            return 0; /* text and reasoning blocks open with their first delta */
        struct json_object *tu = json_object_new_object(), *st = json_object_new_object(),
                           *o = json_object_new_object();
        if (ev->id.p && ev->id.len) {
            bb_json_add(tu, "toolUseId", bb_json_new_str(&ev->id));
        } else {
            char id[128]; /* toolUseId is required */
            snprintf(id, sizeof id, "tooluse_%s_%u", e->id_seed, ev->index);
            bb_json_add(tu, "toolUseId", json_object_new_string(id));
        }
        bb_json_add(tu, "name", bb_json_new_str(&ev->name));
        bb_json_add(st, "toolUse", tu);
        bb_json_add(o, "start", st);
        bb_json_add(o, "contentBlockIndex", json_object_new_int64(b->wire));
        return put_event(out, "contentBlockStart", o);
    }
    case BB_IR_EV_BLOCK_DELTA:
        return enc_delta(e, ev, out);
    case BB_IR_EV_BLOCK_STOP: {
        struct bb_eseq_block *b = bb_eseq_find(&e->seq, ev->index);
        return b ? enc_stop_block(e, b, out) : 0;
    }
    case BB_IR_EV_MESSAGE_DELTA:
        if (ev->stop != BB_IR_STOP_UNSET)
            e->stop = ev->stop;
        if (ev->stop_sequence.p && ev->stop_sequence.len < sizeof e->stop_seq) {
            memcpy(e->stop_seq, ev->stop_sequence.p, ev->stop_sequence.len);
            e->stop_seq_len = ev->stop_sequence.len;
        }
        bb_ir_usage_max(&e->usage, &ev->usage);
        return 0;
    case BB_IR_EV_MESSAGE_STOP: {
        if (enc_close_all(e, out) < 0)
            return -1;
        struct json_object *ms = json_object_new_object();
        bb_json_add(ms, "stopReason", json_object_new_string(stop_to_wire(e->stop)));
        if (e->stop == BB_IR_STOP_STOP_SEQUENCE && e->stop_seq_len) {
            /* where Claude on Bedrock reports it (additionalModelResponseFieldPaths) */
            struct json_object *f = json_object_new_object();
            bb_json_add(f, "stop_sequence",
                        json_object_new_string_len(e->stop_seq, (int)e->stop_seq_len));
            bb_json_add(ms, "additionalModelResponseFields", f);
        }
        if (put_event(out, "messageStop", ms) < 0)
            return -1;
        struct json_object *md = json_object_new_object(), *metrics = json_object_new_object();
        bb_json_add(md, "usage", usage_json(&e->usage));
        bb_json_add(metrics, "latencyMs", json_object_new_int(0));
        bb_json_add(md, "metrics", metrics);
        e->stopped = true;
        return put_event(out, "metadata", md);
    }
    default:
        return 0;
    }
}

/* ---------------------------------------------------------------- errors */

/* Same-protocol hop: the client's Converse body as is, signed for this lane. */
static int bedrock_write_passthrough(struct bb_arena *a, const char *body, size_t len,
                                     const struct bb_egress_ctx *ctx, struct bb_egress_req *out,
                                     struct bb_err *err)
{
    const char *model = ctx->lane && ctx->lane->upstream_model ? ctx->lane->upstream_model : "";
    if (bb_aws_model_path(out->path, sizeof out->path, model,
                          ctx->stream ? "converse-stream" : "converse") < 0)
        return bb_err_set(err, "bedrock: no or too long upstream model");
    if (evbuffer_add(out->headers, "Content-Type: application/json\r\n", 32) < 0 ||
        evbuffer_add(out->body, body, len) < 0)
        return bb_err_set(err, "out of memory");
    return bb_aws_sign(a, ctx, out, body, len, "bedrock", err);
}

/* A Converse answer has `output`; an error is {"message"} (or "Message", "__type") without
 * it. */
/* read_usage over the bytes of a usage object (no DOM): integral counts only. */
static void bedrock_usage_scan(const char *o, size_t n, struct bb_ir_usage *out)
{
    struct bb_jscan_field f[4] = {{.key = "inputTokens"},
                                  {.key = "outputTokens"},
                                  {.key = "cacheReadInputTokens"},
                                  {.key = "cacheWriteInputTokens"}};
    uint64_t *dst[] = {&out->input, &out->output, &out->cache_read, &out->cache_write};
    struct bb_err err;
    bb_jscan_object(o, n, f, 4, 64, &err);
    for (size_t i = 0; i < 4; i++)
        if (f[i].type == BB_JNUMBER && !memchr(o + f[i].off, '.', f[i].len) &&
            bb_jscan_u64(o + f[i].off, f[i].len, dst[i]))
            out->set = true;
}

static int bedrock_answer_check(const char *body, size_t len, struct bb_ir_usage *usage,
                                struct bb_proto_error *out)
{
    struct bb_jscan_field f[5] = {{.key = "output"},
                                  {.key = "message"},
                                  {.key = "Message"},
                                  {.key = "__type"},
                                  {.key = "usage"}};
    if (bb_proto_scan_answer(body, len, f, 5, out) < 0)
        return -1;
    if (f[0].type == BB_JOBJECT) {
        if (usage && f[4].type == BB_JOBJECT)
            bedrock_usage_scan(body + f[4].off, f[4].len, usage);
        return 0;
    }
    if (f[1].type == BB_JSTRING || f[2].type == BB_JSTRING || f[3].type == BB_JSTRING)
        return bb_proto_inband(&bb_proto_bedrock, body, len, out);
    snprintf(out->message, sizeof out->message, "no 'output' object");
    return -1;
}

/* The stream ended without its metadata event: finished when messageStop brought the stop
 * reason. */
static int bedrock_dec_finish(void *decp, struct bb_arena *scratch, bb_ir_event_cb cb, void *arg)
{
    struct dec *d = decp;
    struct bb_dout o = {cb, arg, scratch};
    if (d->done || !d->stop_seen)
        return 0;
    return dec_end(d, &o, NULL);
}

/* frame_scan: content blocks are meaningful, messageStop carries the stop, metadata is the end
 * (with the usage); exception messages are in-band errors. */
static int bedrock_frame_scan_1(const struct bb_frame *f, struct bb_frame_state *st, bool stopped,
                                struct bb_frame_info *out)
{
    (void)stopped;
    (void)st;
    memset(out, 0, sizeof *out);
    if (f->exception)
        return bb_aws_exception_scan(&bb_proto_bedrock, f, out);
    struct bb_jscan_field t[1] = {{.key = "usage"}};
    struct bb_err err;
    if (bb_jscan_object(f->data, f->data_len, t, 1, 128, &err) < 0)
        return -1;
    if (ev_is(f, "contentBlockStart") || ev_is(f, "contentBlockDelta")) {
        out->content = true;
    } else if (ev_is(f, "messageStop")) {
        out->stop = true;
    } else if (ev_is(f, "metadata")) {
        out->content = out->stop = out->end = true;
        if (t[0].type == BB_JOBJECT)
            bedrock_usage_scan(f->data + t[0].off, t[0].len, &out->usage);
    }
    return 0;
}

static int bedrock_frame_scan(const struct bb_frame *f, struct bb_frame_state *st,
                              struct bb_frame_info *out)
{
    bool stopped = st->stopped;
    int rc = bedrock_frame_scan_1(f, st, stopped, out);
    st->stopped = st->stopped || out->stop;
    return rc;
}

/* ---- the ingress envelope ---- */

/* /model/{id}/converse and /model/{id}/converse-stream. */
static int bedrock_match_route(const char *p, size_t n, const char *query,
                               struct bb_proto_route *out)
{
    (void)query;
    static const char *const actions[] = {"converse", "converse-stream", NULL};
    int action;
    if (!bb_aws_match_model_route(p, n, actions, &action, out))
        return 0;
    out->stream = action;
    return 1;
}

static bool bedrock_claims_path(const char *path)
{
    return bb_path_starts(path, "/model/");
}

static const char *const affinity_members[] = {"system", "messages", NULL};

const struct bb_proto_ops bb_proto_bedrock = {
    .id = BB_PROTO_BEDROCK,
    .name = "bedrock",
    .genai_system = "aws.bedrock",
    .framing = BB_FRAMING_EVENTSTREAM,
    .params = param_rows,
    .n_params = N_PARAMS,
    .client_sigv4_service = "bedrock",
    .errors = BB_AWS_ERRORS,
    .match_route = bedrock_match_route,
    .claims_path = bedrock_claims_path,
    .models_path = "/foundation-models",
    .models_list = bb_aws_foundation_models,
    .auth_headers = bb_aws_auth_headers,
    .probe_path = "/",
    .probe_any_status = true, /* the runtime host lists nothing: any answer is reachable */
    .tool_id_prefix = "tooluse_",
    .affinity_members = affinity_members,
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
    .read_error = bb_aws_read_error,
    .dec_finish = bedrock_dec_finish,
    .answer_check = bedrock_answer_check,
    .frame_scan = bedrock_frame_scan,
};
