/*
 * bb-mock OpenAI chat completions: reads a /v1/chat/completions body and renders
 * chat.completion objects, chat.completion.chunk SSE frames and OpenAI error bodies, shaped
 * exactly as api.openai.com sends them so the official SDK parses them. Single-threaded.
 */
#include "mock.h"

#include <string.h>

#include <event2/buffer.h>
#include <json-c/json.h>

#define CREATED "1700000000"
#define FINGERPRINT "fp_mock"

static unsigned long content_words(struct json_object *content)
{
    if (json_object_is_type(content, json_type_string))
        return bb_mock_count_words(json_object_get_string(content),
                                   (size_t)json_object_get_string_len(content));
    if (!json_object_is_type(content, json_type_array))
        return 0;
    unsigned long n = 0;
    size_t len = json_object_array_length(content);
    for (size_t i = 0; i < len; i++) {
        struct json_object *part = json_object_array_get_idx(content, i), *text;
        if (json_object_is_type(part, json_type_object) &&
            json_object_object_get_ex(part, "text", &text) &&
            json_object_is_type(text, json_type_string))
            n += bb_mock_count_words(json_object_get_string(text),
                                     (size_t)json_object_get_string_len(text));
    }
    return n;
}

static int oa_parse(struct bb_mock_req *r, struct json_object *body, const char **msg)
{
    struct json_object *v;
    if (!json_object_object_get_ex(body, "model", &v) ||
        !json_object_is_type(v, json_type_string)) {
        *msg = "you must provide a model parameter";
        return -1;
    }
    r->model_len = (size_t)json_object_get_string_len(v);
    r->model = strndup(json_object_get_string(v), r->model_len);
    if (!json_object_object_get_ex(body, "messages", &v) ||
        !json_object_is_type(v, json_type_array)) {
        *msg = "'messages' is a required property";
        return -1;
    }
    size_t len = json_object_array_length(v);
    for (size_t i = 0; i < len; i++) {
        struct json_object *m = json_object_array_get_idx(v, i), *content;
        if (json_object_is_type(m, json_type_object) &&
            json_object_object_get_ex(m, "content", &content))
            r->prompt_tokens += content_words(content);
    }
    if (json_object_object_get_ex(body, "stream", &v) && json_object_is_type(v, json_type_boolean))
        r->stream = json_object_get_boolean(v);
    struct json_object *iu;
    if (json_object_object_get_ex(body, "stream_options", &v) &&
        json_object_is_type(v, json_type_object) &&
        json_object_object_get_ex(v, "include_usage", &iu) &&
        json_object_is_type(iu, json_type_boolean))
        r->include_usage = json_object_get_boolean(iu);
    return 0;
}

static void oa_error_body(struct evbuffer *b, int status, const char *message)
{
    const char *type = "invalid_request_error", *code = "null";
    switch (status) {
    case 401: type = "authentication_error"; code = "\"invalid_api_key\""; break;
    case 403: type = "permission_error"; break;
    case 404: type = "not_found_error"; code = "\"model_not_found\""; break;
    case 429: type = "rate_limit_exceeded"; code = "\"rate_limit_exceeded\""; break;
    default:
        if (status >= 500)
            type = "server_error";
    }
    evbuffer_add_printf(b, "{\"error\":{\"message\":");
    bb_mock_json_str(b, message, strlen(message));
    evbuffer_add_printf(b, ",\"type\":\"%s\",\"param\":null,\"code\":%s}}", type, code);
}

static void usage(const struct bb_mock_req *r, struct evbuffer *b)
{
    evbuffer_add_printf(b,
        "\"usage\":{\"prompt_tokens\":%lu,\"completion_tokens\":%u,\"total_tokens\":%lu}",
        r->prompt_tokens, r->words, r->prompt_tokens + r->words);
}

static void oa_response(const struct bb_mock_req *r, struct evbuffer *b)
{
    evbuffer_add_printf(b, "{\"id\":\"chatcmpl-mock-%llu\",\"object\":\"chat.completion\","
                           "\"created\":" CREATED ",\"model\":", (unsigned long long)r->seq);
    bb_mock_json_str(b, r->model, r->model_len);
    evbuffer_add_printf(b, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
                           "\"content\":\"");
    for (unsigned i = 1; i <= r->words; i++) {
        if (i > 1)
            evbuffer_add(b, " ", 1);
        bb_mock_word(b, i);
    }
    evbuffer_add_printf(b, "\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":\"stop\"}],");
    usage(r, b);
    evbuffer_add_printf(b, ",\"system_fingerprint\":\"" FINGERPRINT "\"}");
}

/* "data: {chunk head" up to and including `"choices":` */
static void chunk_head(const struct bb_mock_req *r, struct evbuffer *b)
{
    evbuffer_add_printf(b, "data: {\"id\":\"chatcmpl-mock-%llu\","
                           "\"object\":\"chat.completion.chunk\",\"created\":" CREATED
                           ",\"model\":", (unsigned long long)r->seq);
    bb_mock_json_str(b, r->model, r->model_len);
    evbuffer_add_printf(b, ",\"system_fingerprint\":\"" FINGERPRINT "\",\"choices\":");
}

static void chunk_tail(const struct bb_mock_req *r, struct evbuffer *b)
{
    if (r->include_usage)
        evbuffer_add_printf(b, ",\"usage\":null}\n\n");
    else
        evbuffer_add_printf(b, "}\n\n");
}

static void oa_stream_open(const struct bb_mock_req *r, struct evbuffer *b)
{
    chunk_head(r, b);
    evbuffer_add_printf(b, "[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\","
                           "\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}]");
    chunk_tail(r, b);
}

static void oa_stream_word(const struct bb_mock_req *r, unsigned i, struct evbuffer *b)
{
    chunk_head(r, b);
    evbuffer_add_printf(b, "[{\"index\":0,\"delta\":{\"content\":\"%s", i > 1 ? " " : "");
    bb_mock_word(b, i);
    evbuffer_add_printf(b, "\"},\"logprobs\":null,\"finish_reason\":null}]");
    chunk_tail(r, b);
}

static unsigned oa_stream_nclose(const struct bb_mock_req *r)
{
    return r->include_usage ? 2 : 1;
}

static void oa_stream_close(const struct bb_mock_req *r, unsigned k, struct evbuffer *b)
{
    chunk_head(r, b);
    if (k == 0) {
        evbuffer_add_printf(b, "[{\"index\":0,\"delta\":{},\"logprobs\":null,"
                               "\"finish_reason\":\"stop\"}]");
        chunk_tail(r, b);
    } else {
        evbuffer_add_printf(b, "[],");
        usage(r, b);
        evbuffer_add_printf(b, "}\n\n");
    }
}

static void oa_stream_done(const struct bb_mock_req *r, struct evbuffer *b)
{
    evbuffer_add_printf(b, "data: [DONE]\n\n");
}

static void oa_stream_malformed(const struct bb_mock_req *r, struct evbuffer *b)
{
    evbuffer_add_printf(b, "data: {not json\n\n");
}

const struct bb_mock_proto bb_mock_proto_openai = {
    .name = "openai",
    .parse = oa_parse,
    .error_body = oa_error_body,
    .response = oa_response,
    .stream_type = "text/event-stream",
    .stream_open = oa_stream_open,
    .stream_word = oa_stream_word,
    .stream_nclose = oa_stream_nclose,
    .stream_close = oa_stream_close,
    .stream_done = oa_stream_done,
    .stream_malformed = oa_stream_malformed,
};
