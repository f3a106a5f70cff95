/*
 * bb-mock Bedrock Converse: reads a /model/{modelId}/converse(-stream) body (the model comes
 * from the path) and renders ConverseResponse objects, the application/vnd.amazon.eventstream
 * binary stream (messageStart, contentBlockStart/Delta/Stop, messageStop, metadata, and
 * exception messages) and Bedrock errors (status, x-amzn-ErrorType, {"message"}), as
 * bedrock-runtime sends them so @aws-sdk/client-bedrock-runtime parses them.
 * Single-threaded.
 *
 * Event-stream message: total length u32 BE, headers length u32 BE, CRC32 of those 8 bytes,
 * headers (name length u8, name, type 7 = string, value length u16 BE, value), payload, CRC32
 * of everything before it.
 */
#include "mock.h"

#include <stdarg.h>
#include <string.h>

#include <event2/buffer.h>
#include <json-c/json.h>

#include "common/crc32.h"

/* Bedrock pads each event's JSON with a "p" member so that lengths do not leak content. */
#define PAD "\"p\":\"abcdefghijklmnopqrstuvwxyzABCDEFGHIJ\""

static char *tool_result_text(struct json_object *content)
{
    if (!json_object_is_type(content, json_type_array))
        return content ? bb_mock_content_text(content) : NULL;
    struct evbuffer *b = evbuffer_new();
    for (size_t i = 0; i < json_object_array_length(content); i++) {
        struct json_object *it = json_object_array_get_idx(content, i), *j;
        size_t tl;
        const char *t = bb_mock_get_str(it, "text", &tl);
        if (t) {
            evbuffer_add(b, t, tl);
        } else if (json_object_object_get_ex(it, "json", &j)) {
            const char *js = json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN |
                                                                   JSON_C_TO_STRING_NOSLASHESCAPE);
            evbuffer_add(b, js, strlen(js));
        }
    }
    size_t n = evbuffer_get_length(b);
    char *s = malloc(n + 1);
    if (!s)
        abort();
    evbuffer_remove(b, s, n);
    s[n] = 0;
    evbuffer_free(b);
    return s;
}

static unsigned long blocks_words(struct json_object *blocks)
{
    unsigned long n = 0;
    for (size_t i = 0; blocks && i < json_object_array_length(blocks); i++) {
        size_t tl;
        const char *t = bb_mock_get_str(json_object_array_get_idx(blocks, i), "text", &tl);
        if (t)
            n += bb_mock_count_words(t, tl);
    }
    return n;
}

static int br_parse(struct bb_mock_req *r, struct json_object *body, const char **msg)
{
    r->model_len = strlen(r->path_model);
    r->model = strndup(r->path_model, r->model_len);
    r->stream = r->path_stream;
    struct json_object *msgs = bb_mock_get(body, "messages", json_type_array);
    if (!msgs) {
        *msg = "1 validation error detected: Value null at 'messages' failed to satisfy "
               "constraint: Member must not be null";
        return -1;
    }
    r->prompt_tokens += blocks_words(bb_mock_get(body, "system", json_type_array));
    size_t len = json_object_array_length(msgs);
    for (size_t i = 0; i < len; i++) {
        struct json_object *m = json_object_array_get_idx(msgs, i);
        struct json_object *content = bb_mock_get(m, "content", json_type_array);
        r->prompt_tokens += blocks_words(content);
        bool result = false;
        for (size_t k = 0; content && k < json_object_array_length(content); k++) {
            struct json_object *tr = bb_mock_get(json_object_array_get_idx(content, k),
                                                 "toolResult", json_type_object),
                               *c = NULL;
            if (!tr)
                continue;
            result = true;
            json_object_object_get_ex(tr, "content", &c);
            bb_mock_add_result(r, bb_mock_get_str(tr, "toolUseId", NULL), false,
                               tool_result_text(c));
        }
        if (i == len - 1) {
            const char *role = bb_mock_get_str(m, "role", NULL);
            r->last_is_result = result;
            if (role && !strcmp(role, "assistant"))
                r->prefill = bb_mock_text_only(content);
        }
    }
    struct json_object *tools =
        bb_mock_get(bb_mock_get(body, "toolConfig", json_type_object), "tools", json_type_array);
    for (size_t i = 0; tools && i < json_object_array_length(tools); i++) {
        size_t n;
        const char *name = bb_mock_get_str(
            bb_mock_get(json_object_array_get_idx(tools, i), "toolSpec", json_type_object), "name",
            &n);
        if (name)
            bb_mock_add_tool(r, name, n);
    }
    struct json_object *th =
        bb_mock_get(bb_mock_get(body, "additionalModelRequestFields", json_type_object), "thinking",
                    json_type_object);
    const char *tt = bb_mock_get_str(th, "type", NULL);
    r->want_think = th && !(tt && !strcmp(tt, "disabled"));
    return 0;
}

static void br_error(const struct bb_mock_req *r, int status, const char *code, const char *message,
                     struct evbuffer *b, struct evbuffer *hdrs)
{
    const char *type;
    switch (status) {
    case 400:
        type = "ValidationException";
        break;
    case 401:
        type = "UnrecognizedClientException";
        break;
    case 403:
        type = "AccessDeniedException";
        break;
    case 404:
        type = "ResourceNotFoundException";
        break;
    case 408:
        type = "ModelTimeoutException";
        break;
    case 409:
        type = "ConflictException";
        break;
    case 424:
        type = "ModelErrorException";
        break;
    case 429:
        type = "ThrottlingException";
        break;
    case 503:
        type = "ServiceUnavailableException";
        break;
    default:
        type = status >= 500 ? "InternalServerException" : "ValidationException";
    }
    evbuffer_add_printf(hdrs,
                        "x-amzn-ErrorType: %s:http://internal.amazon.com/coral/"
                        "com.amazon.bedrock/\r\n",
                        code ? code : type);
    BB_MOCK_ADD(b, "{\"message\":");
    bb_mock_json_str(b, message, strlen(message));
    BB_MOCK_ADD(b, "}");
}

static void usage(const struct bb_mock_req *r, struct evbuffer *b)
{
    unsigned long out = bb_mock_answer_tokens(r) + bb_mock_think_tokens(r);
    evbuffer_add_printf(b, "{\"inputTokens\":%lu,\"outputTokens\":%lu,\"totalTokens\":%lu",
                        r->prompt_tokens, out, r->prompt_tokens + out + r->cached + r->cache_write);
    if (r->cached || r->cache_write)
        evbuffer_add_printf(b, ",\"cacheReadInputTokens\":%lu,\"cacheWriteInputTokens\":%lu",
                            r->cached, r->cache_write);
    BB_MOCK_ADD(b, "}");
}

static const char *stop_reason(const struct bb_mock_req *r)
{
    return r->ncalls ? "tool_use" : "end_turn";
}

static void tool_use_id(const struct bb_mock_req *r, unsigned i, struct evbuffer *b)
{
    const char *name = bb_mock_call_name(r, i);
    evbuffer_add_printf(
        b, "\"toolUseId\":\"tooluse_mock%llu_%u\",\"name\":", (unsigned long long)r->seq, i);
    bb_mock_json_str(b, name, strlen(name));
}

static void br_response(struct bb_mock_req *r, struct evbuffer *b)
{
    BB_MOCK_ADD(b, "{\"metrics\":{\"latencyMs\":42},\"output\":{\"message\":{\"content\":[");
    bool any = false;
    if (r->think) {
        evbuffer_add_printf(
            b,
            "{\"reasoningContent\":{\"reasoningText\":{\"text\":\"" BB_MOCK_THINK_TEXT
            "\",\"signature\":\"mocksig%llu\"}}}",
            (unsigned long long)r->seq);
        any = true;
    }
    for (unsigned i = 1; i <= r->ncalls; i++) {
        if (any)
            BB_MOCK_ADD(b, ",");
        BB_MOCK_ADD(b, "{\"toolUse\":{");
        tool_use_id(r, i, b);
        BB_MOCK_ADD(b, ",\"input\":");
        bb_mock_args_raw(r, b, i, 0);
        BB_MOCK_ADD(b, "}}");
        any = true;
    }
    if (!r->ncalls && r->words) {
        if (any)
            BB_MOCK_ADD(b, ",");
        BB_MOCK_ADD(b, "{\"text\":\"");
        bb_mock_text(r, b);
        BB_MOCK_ADD(b, "\"}");
    }
    evbuffer_add_printf(
        b, "],\"role\":\"assistant\"}},\"stopReason\":\"%s\",\"usage\":", stop_reason(r));
    usage(r, b);
    BB_MOCK_ADD(b, "}");
}

static const char *br_stream_type(const struct bb_mock_req *r)
{
    return "application/vnd.amazon.eventstream";
}

static void put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static void header(struct evbuffer *h, const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strlen(value);
    unsigned char pre[1] = {(unsigned char)nl},
                  mid[3] = {7, (unsigned char)(vl >> 8), (unsigned char)vl};
    evbuffer_add(h, pre, 1);
    evbuffer_add(h, name, nl);
    evbuffer_add(h, mid, 3);
    evbuffer_add(h, value, vl);
}

/* One event-stream message into b: `kind` is the :message-type (event or exception), `type`
 * the :event-type or :exception-type; the payload is drained. bad_crc: corrupt the message
 * CRC (the `malformed` fault). */
void bb_mock_es_message(struct evbuffer *b, const char *kind, const char *type,
                        struct evbuffer *payload, bool bad_crc)
{
    struct evbuffer *m = evbuffer_new(), *h = evbuffer_new();
    bool exc = !strcmp(kind, "exception");
    header(h, exc ? ":exception-type" : ":event-type", type);
    header(h, ":content-type", "application/json");
    header(h, ":message-type", kind);
    size_t hl = evbuffer_get_length(h), pl = evbuffer_get_length(payload);
    unsigned char pre[12];
    put_u32(pre, (uint32_t)(12 + hl + pl + 4));
    put_u32(pre + 4, (uint32_t)hl);
    put_u32(pre + 8, bb_crc32(0, pre, 8));
    evbuffer_add(m, pre, 12);
    evbuffer_add_buffer(m, h);
    evbuffer_add_buffer(m, payload);
    unsigned char crc[4];
    size_t ml = evbuffer_get_length(m);
    put_u32(crc, bb_crc32(0, evbuffer_pullup(m, -1), ml) ^ (bad_crc ? 0xffffffffu : 0));
    evbuffer_add(m, crc, 4);
    evbuffer_add_buffer(b, m);
    evbuffer_free(m);
    evbuffer_free(h);
}

/* An event whose JSON payload is `{` json `,"p":...}` (json printf-formatted). */
static void event(struct evbuffer *b, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void event(struct evbuffer *b, const char *type, const char *fmt, ...)
{
    struct evbuffer *p = evbuffer_new();
    va_list ap;
    va_start(ap, fmt);
    BB_MOCK_ADD(p, "{");
    evbuffer_add_vprintf(p, fmt, ap);
    BB_MOCK_ADD(p, "," PAD "}");
    va_end(ap);
    bb_mock_es_message(b, "event", type, p, false);
    evbuffer_free(p);
}

static unsigned br_stream_nopen(const struct bb_mock_req *r)
{
    return 1;
}

static void br_stream_open(struct bb_mock_req *r, unsigned k, struct evbuffer *b)
{
    event(b, "messageStart", "\"role\":\"assistant\"");
}

static void br_stream_unit(struct bb_mock_req *r, const struct bb_mock_unit *u, struct evbuffer *b)
{
    struct evbuffer *t = evbuffer_new();
    switch (u->kind) {
    case BB_MOCK_THINK:
        event(b, "contentBlockDelta",
              "\"contentBlockIndex\":%u,\"delta\":{\"reasoningContent\":"
              "{\"text\":\"" BB_MOCK_THINK_TEXT "\"}}",
              u->block);
        event(b, "contentBlockDelta",
              "\"contentBlockIndex\":%u,\"delta\":{\"reasoningContent\":"
              "{\"signature\":\"mocksig%llu\"}}",
              u->block, (unsigned long long)r->seq);
        break;
    case BB_MOCK_TEXT:
        bb_mock_unit_text(r, u->i, t);
        evbuffer_add(t, "", 1);
        event(b, "contentBlockDelta", "\"contentBlockIndex\":%u,\"delta\":{\"text\":\"%s\"}",
              u->block, (const char *)evbuffer_pullup(t, -1));
        break;
    case BB_MOCK_CALL:
        if (u->part == 0) {
            tool_use_id(r, u->i, t);
        } else {
            BB_MOCK_ADD(t, "\"input\":");
            bb_mock_args_str(r, t, u->i, u->part);
        }
        evbuffer_add(t, "", 1);
        if (u->part == 0)
            event(b, "contentBlockStart", "\"contentBlockIndex\":%u,\"start\":{\"toolUse\":{%s}}",
                  u->block, (const char *)evbuffer_pullup(t, -1));
        else
            event(b, "contentBlockDelta", "\"contentBlockIndex\":%u,\"delta\":{\"toolUse\":{%s}}",
                  u->block, (const char *)evbuffer_pullup(t, -1));
        break;
    }
    evbuffer_free(t);
    if (u->last)
        event(b, "contentBlockStop", "\"contentBlockIndex\":%u", u->block);
}

static unsigned br_stream_nclose(const struct bb_mock_req *r)
{
    return 0;
}

static void br_stream_close(struct bb_mock_req *r, unsigned k, struct evbuffer *b)
{
}

static unsigned br_stream_ndone(const struct bb_mock_req *r)
{
    return 2;
}

static void br_stream_done(struct bb_mock_req *r, unsigned k, struct evbuffer *b)
{
    if (k == 0) {
        event(b, "messageStop", "\"stopReason\":\"%s\"", stop_reason(r));
        return;
    }
    struct evbuffer *u = evbuffer_new();
    usage(r, u);
    evbuffer_add(u, "", 1);
    event(b, "metadata", "\"metrics\":{\"latencyMs\":42},\"usage\":%s",
          (const char *)evbuffer_pullup(u, -1));
    evbuffer_free(u);
}

static void br_stream_malformed(struct bb_mock_req *r, struct evbuffer *b)
{
    struct evbuffer *p = evbuffer_new();
    BB_MOCK_ADD(p, "{not json");
    bb_mock_es_message(b, "event", "contentBlockDelta", p, true);
    evbuffer_free(p);
}

#define THROTTLED "Too many tokens, please wait before trying again."

/* A 200 whose body is an error: {"message", "__type"} and no `output`. */
static void br_inband(const struct bb_mock_req *r, struct evbuffer *b)
{
    const char *msg = bb_mock_errmsg(r, THROTTLED),
               *type = r->errcode ? r->errcode : "ThrottlingException";
    BB_MOCK_ADD(b, "{\"message\":");
    bb_mock_json_str(b, msg, strlen(msg));
    BB_MOCK_ADD(b, ",\"__type\":");
    bb_mock_json_str(b, type, strlen(type));
    BB_MOCK_ADD(b, "}");
}

static void br_stream_error(struct bb_mock_req *r, struct evbuffer *b)
{
    const char *msg = bb_mock_errmsg(r, THROTTLED);
    struct evbuffer *p = evbuffer_new();
    BB_MOCK_ADD(p, "{\"message\":");
    bb_mock_json_str(p, msg, strlen(msg));
    BB_MOCK_ADD(p, "}");
    bb_mock_es_message(b, "exception", r->errcode ? r->errcode : "throttlingException", p, false);
    evbuffer_free(p);
}

const struct bb_mock_proto bb_mock_proto_bedrock = {
    .name = "bedrock",
    .bad_json = "The request body is not valid JSON.",
    .parse = br_parse,
    .error = br_error,
    .response = br_response,
    .stream_type = br_stream_type,
    .call_parts = 3,
    .stream_nopen = br_stream_nopen,
    .stream_open = br_stream_open,
    .stream_unit = br_stream_unit,
    .stream_nclose = br_stream_nclose,
    .stream_close = br_stream_close,
    .stream_ndone = br_stream_ndone,
    .stream_done = br_stream_done,
    .stream_malformed = br_stream_malformed,
    .stream_error = br_stream_error,
    .inband = br_inband,
};
