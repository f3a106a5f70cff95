/*
 * bb-mock OpenAI chat completions: reads a /v1/chat/completions body and renders
 * chat.completion objects, chat.completion.chunk SSE frames and OpenAI error bodies, shaped
 * exactly as api.openai.com sends them so the official SDK parses them. Tool calls stream as
 * tool_calls deltas; thinking is the `reasoning_content` field (as OpenAI-compatible reasoning
 * servers send it). Single-threaded.
 */
#include "mock.h"

#include <string.h>

#include <event2/buffer.h>
#include <json-c/json.h>

#define CREATED "1700000000"
#define FINGERPRINT "fp_mock"

static void add_tools(struct bb_mock_req *r, struct json_object *arr, bool nested)
{
    size_t n = json_object_array_length(arr);
    for (size_t i = 0; i < n; i++) {
        struct json_object *t = json_object_array_get_idx(arr, i);
        size_t len;
        const char *name = bb_mock_get_str(
            nested ? bb_mock_get(t, "function", json_type_object) : t, "name", &len);
        if (name)
            bb_mock_add_tool(r, name, len);
    }
}

/* One pass over the body's members (the benchmark's hot path: no lookup per known key). */
static int oa_parse(struct bb_mock_req *r, struct json_object *body, const char **msg)
{
    struct json_object *msgs = NULL, *model = NULL;
    json_object_object_foreach(body, key, v)
    {
        enum json_type t = json_object_get_type(v);
        if (!strcmp(key, "model") && t == json_type_string) {
            model = v;
        } else if (!strcmp(key, "messages") && t == json_type_array) {
            msgs = v;
        } else if (!strcmp(key, "stream") && t == json_type_boolean) {
            r->stream = json_object_get_boolean(v);
        } else if (!strcmp(key, "stream_options")) {
            struct json_object *iu = bb_mock_get(v, "include_usage", json_type_boolean);
            if (iu)
                r->include_usage = json_object_get_boolean(iu);
        } else if (!strcmp(key, "tools") && t == json_type_array) {
            add_tools(r, v, true);
        } else if (!strcmp(key, "functions") && t == json_type_array) {
            add_tools(r, v, false);
        } else if (!strcmp(key, "reasoning_effort") && t == json_type_string) {
            r->want_think = strcmp(json_object_get_string(v), "none") != 0;
        }
    }
    if (!model) {
        *msg = "you must provide a model parameter";
        return -1;
    }
    r->model_len = (size_t)json_object_get_string_len(model);
    r->model = strndup(json_object_get_string(model), r->model_len);
    if (!msgs) {
        *msg = "'messages' is a required property";
        return -1;
    }
    size_t len = json_object_array_length(msgs);
    for (size_t i = 0; i < len; i++) {
        struct json_object *m = json_object_array_get_idx(msgs, i), *content = NULL;
        const char *role = bb_mock_get_str(m, "role", NULL);
        json_object_object_get_ex(m, "content", &content);
        bool result = role && (!strcmp(role, "tool") || !strcmp(role, "function"));
        if (result) {
            const char *id = bb_mock_get_str(m, "tool_call_id", NULL);
            bool by_name = !id;
            if (by_name)
                id = bb_mock_get_str(m, "name", NULL);
            bb_mock_add_result(r, id, by_name, bb_mock_content_text(content));
        } else if (content) {
            r->prompt_tokens += bb_mock_content_words(content);
        }
        if (i == len - 1) {
            r->last_is_result = result;
            if (role && !strcmp(role, "assistant"))
                r->prefill = bb_mock_text_only(content);
        }
    }
    return 0;
}

void bb_mock_openai_error(const struct bb_mock_req *r, int status, const char *code,
                          const char *message, struct evbuffer *b, struct evbuffer *hdrs)
{
    const char *type = "invalid_request_error", *dcode = NULL;
    switch (status) {
    case 401:
        type = "authentication_error";
        dcode = "invalid_api_key";
        break;
    case 403:
        type = "permission_error";
        break;
    case 404:
        type = "not_found_error";
        dcode = "model_not_found";
        break;
    case 429:
        type = "rate_limit_exceeded";
        dcode = "rate_limit_exceeded";
        break;
    default:
        if (status >= 500)
            type = "server_error";
    }
    if (!code)
        code = dcode;
    evbuffer_add_printf(b, "{\"error\":{\"message\":");
    bb_mock_json_str(b, message, strlen(message));
    evbuffer_add_printf(b, ",\"type\":\"%s\",\"param\":null,\"code\":", type);
    if (code)
        bb_mock_json_str(b, code, strlen(code));
    else
        BB_MOCK_ADD(b, "null");
    BB_MOCK_ADD(b, "}}");
}

/* The usage object. The details objects appear when they have something to say (cached or
 * cache-write tokens, reasoning tokens), so the plain answer stays as small as it was: the
 * benchmark's hot path. */
static void usage(const struct bb_mock_req *r, struct evbuffer *b)
{
    unsigned long in = r->prompt_tokens + r->cached + r->cache_write;
    unsigned long out = bb_mock_answer_tokens(r) + bb_mock_think_tokens(r);
    BB_MOCK_ADD(b, "\"usage\":{\"prompt_tokens\":");
    bb_mock_num(b, in);
    BB_MOCK_ADD(b, ",\"completion_tokens\":");
    bb_mock_num(b, out);
    BB_MOCK_ADD(b, ",\"total_tokens\":");
    bb_mock_num(b, in + out);
    if (r->cached || r->cache_write)
        evbuffer_add_printf(b,
                            ",\"prompt_tokens_details\":{\"cached_tokens\":%lu,"
                            "\"audio_tokens\":0}",
                            r->cached);
    if (r->think)
        evbuffer_add_printf(b,
                            ",\"completion_tokens_details\":{\"reasoning_tokens\":%lu,"
                            "\"audio_tokens\":0,\"accepted_prediction_tokens\":0,"
                            "\"rejected_prediction_tokens\":0}",
                            bb_mock_think_tokens(r));
    BB_MOCK_ADD(b, "}");
}

static void call_id(const struct bb_mock_req *r, unsigned i, struct evbuffer *b)
{
    BB_MOCK_ADD(b, "\"id\":\"call_mock");
    bb_mock_num(b, r->seq);
    BB_MOCK_ADD(b, "_");
    bb_mock_num(b, i);
    BB_MOCK_ADD(b, "\",\"type\":\"function\",\"function\":{\"name\":");
    const char *name = bb_mock_call_name(r, i);
    bb_mock_json_str(b, name, strlen(name));
}

static void oa_response(struct bb_mock_req *r, struct evbuffer *b)
{
    BB_MOCK_ADD(b, "{\"id\":\"chatcmpl-mock-");
    bb_mock_num(b, r->seq);
    BB_MOCK_ADD(b, "\",\"object\":\"chat.completion\",\"created\":" CREATED ",\"model\":");
    bb_mock_json_str(b, r->model, r->model_len);
    BB_MOCK_ADD(b, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
    if (r->ncalls) {
        BB_MOCK_ADD(b, "null");
    } else {
        BB_MOCK_ADD(b, "\"");
        bb_mock_text(r, b);
        BB_MOCK_ADD(b, "\"");
    }
    if (r->think)
        BB_MOCK_ADD(b, ",\"reasoning_content\":\"" BB_MOCK_THINK_TEXT "\"");
    if (r->ncalls) {
        BB_MOCK_ADD(b, ",\"tool_calls\":[");
        for (unsigned i = 1; i <= r->ncalls; i++) {
            if (i > 1)
                BB_MOCK_ADD(b, ",");
            BB_MOCK_ADD(b, "{");
            call_id(r, i, b);
            BB_MOCK_ADD(b, ",\"arguments\":");
            bb_mock_args_str(r, b, i, 0);
            BB_MOCK_ADD(b, "}}");
        }
        BB_MOCK_ADD(b, "]");
    }
    if (r->ncalls)
        BB_MOCK_ADD(b, ",\"refusal\":null},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}],");
    else
        BB_MOCK_ADD(b, ",\"refusal\":null},\"logprobs\":null,\"finish_reason\":\"stop\"}],");
    usage(r, b);
    BB_MOCK_ADD(b, ",\"system_fingerprint\":\"" FINGERPRINT "\"}");
}

static const char *oa_stream_type(const struct bb_mock_req *r)
{
    return "text/event-stream";
}

/* "data: {chunk head" up to and including `"choices":` */
static void chunk_head(const struct bb_mock_req *r, struct evbuffer *b)
{
    BB_MOCK_ADD(b, "data: {\"id\":\"chatcmpl-mock-");
    bb_mock_num(b, r->seq);
    BB_MOCK_ADD(b, "\",\"object\":\"chat.completion.chunk\",\"created\":" CREATED ",\"model\":");
    bb_mock_json_str(b, r->model, r->model_len);
    BB_MOCK_ADD(b, ",\"system_fingerprint\":\"" FINGERPRINT "\",\"choices\":");
}

static void chunk_tail(const struct bb_mock_req *r, struct evbuffer *b)
{
    if (r->include_usage)
        BB_MOCK_ADD(b, ",\"usage\":null}\n\n");
    else
        BB_MOCK_ADD(b, "}\n\n");
}

static unsigned oa_stream_nopen(const struct bb_mock_req *r)
{
    return 1;
}

static void oa_stream_open(struct bb_mock_req *r, unsigned k, struct evbuffer *b)
{
    chunk_head(r, b);
    if (r->ncalls)
        BB_MOCK_ADD(b, "[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,"
                       "\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}]");
    else
        BB_MOCK_ADD(b, "[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\","
                       "\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}]");
    chunk_tail(r, b);
}

static void oa_stream_unit(struct bb_mock_req *r, const struct bb_mock_unit *u, struct evbuffer *b)
{
    chunk_head(r, b);
    BB_MOCK_ADD(b, "[{\"index\":0,\"delta\":{");
    switch (u->kind) {
    case BB_MOCK_THINK:
        BB_MOCK_ADD(b, "\"reasoning_content\":\"" BB_MOCK_THINK_TEXT "\"");
        break;
    case BB_MOCK_TEXT:
        BB_MOCK_ADD(b, "\"content\":\"");
        bb_mock_unit_text(r, u->i, b);
        BB_MOCK_ADD(b, "\"");
        break;
    case BB_MOCK_CALL:
        BB_MOCK_ADD(b, "\"tool_calls\":[{\"index\":");
        bb_mock_num(b, u->i - 1);
        BB_MOCK_ADD(b, ",");
        if (u->part == 0) {
            call_id(r, u->i, b);
            BB_MOCK_ADD(b, ",\"arguments\":\"\"}}]");
        } else {
            BB_MOCK_ADD(b, "\"function\":{\"arguments\":");
            bb_mock_args_str(r, b, u->i, u->part);
            BB_MOCK_ADD(b, "}}]");
        }
        break;
    }
    BB_MOCK_ADD(b, "},\"logprobs\":null,\"finish_reason\":null}]");
    chunk_tail(r, b);
}

static unsigned oa_stream_nclose(const struct bb_mock_req *r)
{
    return r->include_usage ? 2 : 1;
}

static void oa_stream_close(struct bb_mock_req *r, unsigned k, struct evbuffer *b)
{
    chunk_head(r, b);
    if (k == 0) {
        if (r->ncalls)
            BB_MOCK_ADD(b, "[{\"index\":0,\"delta\":{},\"logprobs\":null,"
                           "\"finish_reason\":\"tool_calls\"}]");
        else
            BB_MOCK_ADD(b, "[{\"index\":0,\"delta\":{},\"logprobs\":null,"
                           "\"finish_reason\":\"stop\"}]");
        chunk_tail(r, b);
    } else {
        BB_MOCK_ADD(b, "[],");
        usage(r, b);
        BB_MOCK_ADD(b, "}\n\n");
    }
}

static unsigned oa_stream_ndone(const struct bb_mock_req *r)
{
    return 1;
}

static void oa_stream_done(struct bb_mock_req *r, unsigned k, struct evbuffer *b)
{
    BB_MOCK_ADD(b, "data: [DONE]\n\n");
}

static void oa_stream_malformed(struct bb_mock_req *r, struct evbuffer *b)
{
    evbuffer_add_printf(b, "data: {not json\n\n");
}

void bb_mock_openai_inband(const struct bb_mock_req *r, struct evbuffer *b)
{
    const char *msg = bb_mock_errmsg(r, "bb-mock: scripted in-band error");
    BB_MOCK_ADD(b, "{\"error\":{\"message\":");
    bb_mock_json_str(b, msg, strlen(msg));
    BB_MOCK_ADD(b, ",\"type\":\"server_error\",\"param\":null,\"code\":");
    if (r->errcode)
        bb_mock_json_str(b, r->errcode, strlen(r->errcode));
    else
        BB_MOCK_ADD(b, "null");
    BB_MOCK_ADD(b, "}}");
}

static void oa_stream_error(struct bb_mock_req *r, struct evbuffer *b)
{
    BB_MOCK_ADD(b, "data: ");
    bb_mock_openai_inband(r, b);
    BB_MOCK_ADD(b, "\n\n");
}

const struct bb_mock_proto bb_mock_proto_openai = {
    .name = "openai",
    .bad_json = "We could not parse the JSON body of your request. (HINT: This likely means you "
                "aren't using your HTTP library correctly. The OpenAI API expects a JSON "
                "payload, but what was sent was not valid JSON.)",
    .parse = oa_parse,
    .error = bb_mock_openai_error,
    .response = oa_response,
    .stream_type = oa_stream_type,
    .call_parts = 3,
    .stream_nopen = oa_stream_nopen,
    .stream_open = oa_stream_open,
    .stream_unit = oa_stream_unit,
    .stream_nclose = oa_stream_nclose,
    .stream_close = oa_stream_close,
    .stream_ndone = oa_stream_ndone,
    .stream_done = oa_stream_done,
    .stream_malformed = oa_stream_malformed,
    .stream_error = oa_stream_error,
    .inband = bb_mock_openai_inband,
};
