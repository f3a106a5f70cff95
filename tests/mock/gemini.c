/*
 * bb-mock Gemini: reads a generateContent / streamGenerateContent body (the model comes from
 * the path) and renders GenerateContentResponse objects, streamed either as SSE
 * (`?alt=sse`: `data: {...}\r\n\r\n`) or as one JSON array written element by element, and
 * google.rpc error bodies, as generativelanguage.googleapis.com sends them so @google/genai
 * parses them. Single-threaded.
 */
#include "mock.h"

#include <string.h>

#include <event2/buffer.h>
#include <json-c/json.h>

/* A member under its camelCase or snake_case name (the API accepts both). */
static struct json_object *get2(struct json_object *o, const char *camel, const char *snake,
                                int type)
{
    struct json_object *v = bb_mock_get(o, camel, type);
    return v ? v : bb_mock_get(o, snake, type);
}

static unsigned long parts_words(struct json_object *content)
{
    struct json_object *parts = bb_mock_get(content, "parts", json_type_array);
    unsigned long n = 0;
    for (size_t i = 0; parts && i < json_object_array_length(parts); i++) {
        struct json_object *p = json_object_array_get_idx(parts, i), *th;
        size_t tl;
        const char *t = bb_mock_get_str(p, "text", &tl);
        if (t &&
            !((th = bb_mock_get(p, "thought", json_type_boolean)) && json_object_get_boolean(th)))
            n += bb_mock_count_words(t, tl);
    }
    return n;
}

/* The text of a content's parts (thought parts excluded), NULL when it has none. */
static char *parts_text(struct json_object *content)
{
    struct json_object *parts = bb_mock_get(content, "parts", json_type_array);
    struct json_object *texts = json_object_new_array();
    for (size_t i = 0; parts && i < json_object_array_length(parts); i++) {
        struct json_object *p = json_object_array_get_idx(parts, i), *th;
        if (bb_mock_get(p, "text", json_type_string) &&
            !((th = bb_mock_get(p, "thought", json_type_boolean)) && json_object_get_boolean(th)))
            json_object_array_add(texts, json_object_get(p));
    }
    char *s = json_object_array_length(texts) ? bb_mock_text_only(texts) : NULL;
    json_object_put(texts);
    return s;
}

/* A functionResponse's `response` as text: the one string member if that is all it holds,
 * else the compact JSON. */
static char *response_text(struct json_object *resp)
{
    if (json_object_is_type(resp, json_type_object) && json_object_object_length(resp) == 1) {
        json_object_object_foreach(resp, k, v)
        {
            (void)k;
            if (json_object_is_type(v, json_type_string))
                return bb_mock_content_text(v);
        }
    }
    return resp ? bb_mock_content_text(resp) : NULL;
}

static int gm_parse(struct bb_mock_req *r, struct json_object *body, const char **msg)
{
    r->model_len = strlen(r->path_model);
    r->model = strndup(r->path_model, r->model_len);
    r->stream = r->path_stream;
    for (const char *q = r->query; q && *q;) {
        if (!strncmp(q, "alt=sse", 7) && (q[7] == 0 || q[7] == '&'))
            r->sse = true;
        q = strchr(q, '&');
        q = q ? q + 1 : NULL;
    }
    struct json_object *contents = bb_mock_get(body, "contents", json_type_array);
    if (!contents) {
        *msg = "* GenerateContentRequest.contents: contents is not specified\n";
        return -1;
    }
    r->prompt_tokens +=
        parts_words(get2(body, "systemInstruction", "system_instruction", json_type_object));
    size_t len = json_object_array_length(contents);
    for (size_t i = 0; i < len; i++) {
        struct json_object *c = json_object_array_get_idx(contents, i);
        r->prompt_tokens += parts_words(c);
        struct json_object *parts = bb_mock_get(c, "parts", json_type_array);
        bool result = false;
        for (size_t k = 0; parts && k < json_object_array_length(parts); k++) {
            struct json_object *fr = get2(json_object_array_get_idx(parts, k), "functionResponse",
                                          "function_response", json_type_object),
                               *resp = NULL;
            if (!fr)
                continue;
            result = true;
            const char *id = bb_mock_get_str(fr, "id", NULL);
            json_object_object_get_ex(fr, "response", &resp);
            bb_mock_add_result(r, id ? id : bb_mock_get_str(fr, "name", NULL), !id,
                               response_text(resp));
        }
        if (i == len - 1) {
            const char *role = bb_mock_get_str(c, "role", NULL);
            r->last_is_result = result;
            if (role && !strcmp(role, "model"))
                r->prefill = parts_text(c);
        }
    }
    struct json_object *tools = bb_mock_get(body, "tools", json_type_array);
    for (size_t i = 0; tools && i < json_object_array_length(tools); i++) {
        struct json_object *decls =
            get2(json_object_array_get_idx(tools, i), "functionDeclarations",
                 "function_declarations", json_type_array);
        for (size_t k = 0; decls && k < json_object_array_length(decls); k++) {
            size_t n;
            const char *name = bb_mock_get_str(json_object_array_get_idx(decls, k), "name", &n);
            if (name)
                bb_mock_add_tool(r, name, n);
        }
    }
    struct json_object *tc =
        get2(get2(body, "generationConfig", "generation_config", json_type_object),
             "thinkingConfig", "thinking_config", json_type_object);
    struct json_object *budget = get2(tc, "thinkingBudget", "thinking_budget", json_type_int);
    r->want_think = tc && !(budget && json_object_get_int64(budget) == 0);
    return 0;
}

static const char *rpc_status(int status)
{
    switch (status) {
    case 400:
        return "INVALID_ARGUMENT";
    case 401:
        return "UNAUTHENTICATED";
    case 403:
        return "PERMISSION_DENIED";
    case 404:
        return "NOT_FOUND";
    case 409:
        return "ABORTED";
    case 429:
        return "RESOURCE_EXHAUSTED";
    case 499:
        return "CANCELLED";
    case 500:
        return "INTERNAL";
    case 501:
        return "UNIMPLEMENTED";
    case 503:
        return "UNAVAILABLE";
    case 504:
        return "DEADLINE_EXCEEDED";
    default:
        return status >= 500 ? "INTERNAL" : "FAILED_PRECONDITION";
    }
}

static void error_obj(struct evbuffer *b, int status, const char *code, const char *message)
{
    evbuffer_add_printf(b, "{\"error\":{\"code\":%d,\"message\":", status);
    bb_mock_json_str(b, message, strlen(message));
    evbuffer_add_printf(b, ",\"status\":\"%s\"", rpc_status(status));
    if (code) {
        BB_MOCK_ADD(b, ",\"details\":[{\"@type\":\"type.googleapis.com/google.rpc.ErrorInfo\","
                       "\"reason\":");
        bb_mock_json_str(b, code, strlen(code));
        BB_MOCK_ADD(b, ",\"domain\":\"googleapis.com\"}]");
    }
    BB_MOCK_ADD(b, "}}");
}

static void gm_error(const struct bb_mock_req *r, int status, const char *code, const char *message,
                     struct evbuffer *b, struct evbuffer *hdrs)
{
    error_obj(b, status, code, message);
}

static unsigned long prompt_total(const struct bb_mock_req *r)
{
    return r->prompt_tokens + r->cached + r->cache_write;
}

/* usageMetadata with `cand` candidate tokens and `thoughts` thinking tokens so far. */
static void usage(const struct bb_mock_req *r, struct evbuffer *b, unsigned long cand,
                  unsigned long thoughts)
{
    unsigned long p = prompt_total(r);
    evbuffer_add_printf(b, ",\"usageMetadata\":{\"promptTokenCount\":%lu,", p);
    if (cand)
        evbuffer_add_printf(b, "\"candidatesTokenCount\":%lu,", cand);
    evbuffer_add_printf(b, "\"totalTokenCount\":%lu,", p + cand + thoughts);
    if (r->cached)
        evbuffer_add_printf(b, "\"cachedContentTokenCount\":%lu,", r->cached);
    evbuffer_add_printf(b, "\"promptTokensDetails\":[{\"modality\":\"TEXT\",\"tokenCount\":%lu}]",
                        p);
    if (r->cached)
        evbuffer_add_printf(b,
                            ",\"cacheTokensDetails\":[{\"modality\":\"TEXT\","
                            "\"tokenCount\":%lu}]",
                            r->cached);
    if (thoughts)
        evbuffer_add_printf(b, ",\"thoughtsTokenCount\":%lu", thoughts);
    BB_MOCK_ADD(b, "}");
}

static void tail(const struct bb_mock_req *r, struct evbuffer *b)
{
    BB_MOCK_ADD(b, ",\"modelVersion\":");
    bb_mock_json_str(b, r->model, r->model_len);
    evbuffer_add_printf(b, ",\"responseId\":\"mock%llu\"}", (unsigned long long)r->seq);
}

static void thought_part(const struct bb_mock_req *r, struct evbuffer *b)
{
    evbuffer_add_printf(b,
                        "{\"text\":\"" BB_MOCK_THINK_TEXT "\",\"thought\":true,"
                        "\"thoughtSignature\":\"mocksig%llu\"}",
                        (unsigned long long)r->seq);
}

static void call_part(const struct bb_mock_req *r, unsigned i, struct evbuffer *b)
{
    const char *name = bb_mock_call_name(r, i);
    evbuffer_add_printf(b, "{\"functionCall\":{\"id\":\"call_mock%llu_%u\",\"name\":",
                        (unsigned long long)r->seq, i);
    bb_mock_json_str(b, name, strlen(name));
    BB_MOCK_ADD(b, ",\"args\":");
    bb_mock_args_raw(r, b, i, 0);
    BB_MOCK_ADD(b, "}}");
}

static void gm_response(struct bb_mock_req *r, struct evbuffer *b)
{
    BB_MOCK_ADD(b, "{\"candidates\":[{\"content\":{\"parts\":[");
    bool any = false;
    if (r->think) {
        thought_part(r, b);
        any = true;
    }
    for (unsigned i = 1; i <= r->ncalls; i++) {
        if (any)
            BB_MOCK_ADD(b, ",");
        call_part(r, i, b);
        any = true;
    }
    if (!r->ncalls && (r->words || !any)) {
        evbuffer_add_printf(b, "%s{\"text\":\"", any ? "," : "");
        bb_mock_text(r, b);
        BB_MOCK_ADD(b, "\"}");
    }
    BB_MOCK_ADD(b, "],\"role\":\"model\"},\"finishReason\":\"STOP\",\"index\":0}]");
    usage(r, b, bb_mock_answer_tokens(r), bb_mock_think_tokens(r));
    tail(r, b);
}

static const char *gm_stream_type(const struct bb_mock_req *r)
{
    return r->sse ? "text/event-stream" : "application/json";
}

/* Start of a stream element: `data: ` (SSE), or `[` / `,\r\n` (array). */
static void el_open(struct bb_mock_req *r, struct evbuffer *b)
{
    if (r->sse)
        BB_MOCK_ADD(b, "data: ");
    else if (r->evseq == 0)
        BB_MOCK_ADD(b, "[");
    else
        BB_MOCK_ADD(b, ",\r\n");
    r->evseq++;
}

static void el_close(struct bb_mock_req *r, struct evbuffer *b)
{
    if (r->sse)
        BB_MOCK_ADD(b, "\r\n\r\n");
}

static unsigned gm_stream_nopen(const struct bb_mock_req *r)
{
    return 0;
}

static void gm_stream_open(struct bb_mock_req *r, unsigned k, struct evbuffer *b)
{
}

static void gm_stream_unit(struct bb_mock_req *r, const struct bb_mock_unit *u, struct evbuffer *b)
{
    el_open(r, b);
    BB_MOCK_ADD(b, "{\"candidates\":[{\"content\":{\"parts\":[");
    unsigned long cand = 0;
    switch (u->kind) {
    case BB_MOCK_THINK:
        thought_part(r, b);
        break;
    case BB_MOCK_TEXT:
        BB_MOCK_ADD(b, "{\"text\":\"");
        bb_mock_unit_text(r, u->i, b);
        BB_MOCK_ADD(b, "\"}");
        cand = u->i;
        break;
    case BB_MOCK_CALL:
        call_part(r, u->i, b);
        cand = (unsigned long)u->i * BB_MOCK_CALL_TOKENS;
        break;
    }
    BB_MOCK_ADD(b, "],\"role\":\"model\"},\"index\":0}]");
    usage(r, b, cand, bb_mock_think_tokens(r));
    tail(r, b);
    el_close(r, b);
}

static unsigned gm_stream_nclose(const struct bb_mock_req *r)
{
    return 0;
}

static void gm_stream_close(struct bb_mock_req *r, unsigned k, struct evbuffer *b)
{
}

static unsigned gm_stream_ndone(const struct bb_mock_req *r)
{
    return r->sse ? 1 : 2;
}

static void gm_stream_done(struct bb_mock_req *r, unsigned k, struct evbuffer *b)
{
    if (k == 1) {
        BB_MOCK_ADD(b, "]");
        return;
    }
    el_open(r, b);
    BB_MOCK_ADD(b, "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"\"}],\"role\":\"model\"},"
                   "\"finishReason\":\"STOP\",\"index\":0}]");
    usage(r, b, bb_mock_answer_tokens(r), bb_mock_think_tokens(r));
    tail(r, b);
    el_close(r, b);
}

static void gm_stream_malformed(struct bb_mock_req *r, struct evbuffer *b)
{
    el_open(r, b);
    BB_MOCK_ADD(b, "{not json");
    el_close(r, b);
}

static void gm_inband(const struct bb_mock_req *r, struct evbuffer *b)
{
    error_obj(b, 503, r->errcode,
              bb_mock_errmsg(r, "The model is overloaded. Please try again later."));
}

static void gm_stream_error(struct bb_mock_req *r, struct evbuffer *b)
{
    el_open(r, b);
    gm_inband(r, b);
    el_close(r, b);
    if (!r->sse)
        BB_MOCK_ADD(b, "]");
}

const struct bb_mock_proto bb_mock_proto_gemini = {
    .name = "gemini",
    .bad_json = "Invalid JSON payload received. Expected an object.",
    .parse = gm_parse,
    .error = gm_error,
    .response = gm_response,
    .stream_type = gm_stream_type,
    .call_parts = 1,
    .stream_nopen = gm_stream_nopen,
    .stream_open = gm_stream_open,
    .stream_unit = gm_stream_unit,
    .stream_nclose = gm_stream_nclose,
    .stream_close = gm_stream_close,
    .stream_ndone = gm_stream_ndone,
    .stream_done = gm_stream_done,
    .stream_malformed = gm_stream_malformed,
    .stream_error = gm_stream_error,
    .inband = gm_inband,
};
