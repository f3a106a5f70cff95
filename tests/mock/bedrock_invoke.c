/*
 * bb-mock Bedrock InvokeModel with Anthropic's Messages body: /model/{id}/invoke answers a
 * Message (anthropic.c's), /model/{id}/invoke-with-response-stream the Anthropic stream with
 * each event wrapped in an AWS event-stream `chunk` event whose payload is {"bytes": base64 of
 * the event's JSON}, the message_stop event carrying "amazon-bedrock-invocationMetrics", as
 * bedrock-runtime sends them; errors are Bedrock's (bedrock.c: {"message"} +
 * x-amzn-ErrorType, exception messages in streams). Single-threaded.
 */
#include "mock.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <json-c/json.h>

#define A (&bb_mock_proto_anthropic)
#define B (&bb_mock_proto_bedrock)

/* The body as anthropic.c reads it, the model from the path, the stream from the route;
 * anthropic_version is required, as Bedrock requires it. */
static int bi_parse(struct bb_mock_req *r, struct json_object *body, const char **msg)
{
    if (!bb_mock_get(body, "anthropic_version", json_type_string)) {
        *msg = "Malformed input request: #: required key [anthropic_version] not found, please "
               "reformat your input and try again.";
        return -1;
    }
    struct json_object *model = NULL;
    if (json_object_object_get_ex(body, "model", &model)) {
        *msg = "Malformed input request: #: extraneous key [model] is not permitted, please "
               "reformat your input and try again.";
        return -1;
    }
    json_object_object_add(body, "model",
                           json_object_new_string(r->path_model ? r->path_model : ""));
    int rc = A->parse(r, body, msg);
    r->stream = r->path_stream;
    return rc;
}

static const char *bi_stream_type(const struct bb_mock_req *r)
{
    return "application/vnd.amazon.eventstream";
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void base64(struct evbuffer *out, const unsigned char *p, size_t n)
{
    char q[4];
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        q[0] = b64[v >> 18 & 63];
        q[1] = b64[v >> 12 & 63];
        q[2] = i + 1 < n ? b64[v >> 6 & 63] : '=';
        q[3] = i + 2 < n ? b64[v & 63] : '=';
        evbuffer_add(out, q, 4);
    }
}

/* One Messages event's JSON as a chunk. */
static void chunk(struct evbuffer *b, const char *json, size_t n)
{
    struct evbuffer *p = evbuffer_new();
    BB_MOCK_ADD(p, "{\"bytes\":\"");
    base64(p, (const unsigned char *)json, n);
    BB_MOCK_ADD(p, "\"}");
    bb_mock_es_message(b, "event", "chunk", p, false);
    evbuffer_free(p);
}

/* Every SSE event anthropic.c wrote into sse, as a chunk into b (its data line). */
static void rewrap(struct evbuffer *sse, struct evbuffer *b)
{
    size_t n = evbuffer_get_length(sse);
    char *s = malloc(n + 1);
    if (!s)
        abort();
    evbuffer_copyout(sse, s, n);
    s[n] = 0; /* SSE text: no NUL inside */
    for (char *ev = s; *ev;) {
        char *end = strstr(ev, "\n\n");
        if (end)
            *end = 0;
        char *data = strstr(ev, "data: ");
        if (data) {
            char *nl = strchr(data + 6, '\n');
            chunk(b, data + 6, nl ? (size_t)(nl - data - 6) : strlen(data + 6));
        }
        if (!end)
            break;
        ev = end + 2;
    }
    free(s);
    evbuffer_free(sse);
}

/* Anthropic's opening frames less the ping: Bedrock's streams have none. */
static unsigned bi_stream_nopen(const struct bb_mock_req *r)
{
    return 1;
}

static void bi_stream_open(struct bb_mock_req *r, unsigned k, struct evbuffer *b)
{
    struct evbuffer *sse = evbuffer_new();
    A->stream_open(r, 0, sse);
    rewrap(sse, b);
}

static void bi_stream_unit(struct bb_mock_req *r, const struct bb_mock_unit *u, struct evbuffer *b)
{
    struct evbuffer *sse = evbuffer_new();
    A->stream_unit(r, u, sse);
    rewrap(sse, b);
}

static void bi_stream_close(struct bb_mock_req *r, unsigned k, struct evbuffer *b)
{
    struct evbuffer *sse = evbuffer_new();
    A->stream_close(r, k, sse);
    rewrap(sse, b);
}

/* message_stop with Bedrock's metrics (latencies fixed: the mock's answers are instant). */
static void bi_stream_done(struct bb_mock_req *r, unsigned k, struct evbuffer *b)
{
    struct evbuffer *j = evbuffer_new();
    evbuffer_add_printf(j,
                        "{\"type\":\"message_stop\",\"amazon-bedrock-invocationMetrics\":{"
                        "\"inputTokenCount\":%lu,\"outputTokenCount\":%lu,"
                        "\"invocationLatency\":42,\"firstByteLatency\":7",
                        r->prompt_tokens, bb_mock_answer_tokens(r) + bb_mock_think_tokens(r));
    if (r->cached)
        evbuffer_add_printf(j, ",\"cacheReadInputTokenCount\":%lu", r->cached);
    if (r->cache_write)
        evbuffer_add_printf(j, ",\"cacheWriteInputTokenCount\":%lu", r->cache_write);
    BB_MOCK_ADD(j, "}}");
    chunk(b, (const char *)evbuffer_pullup(j, -1), evbuffer_get_length(j));
    evbuffer_free(j);
}

/* The rest is anthropic.c's (the body, the answer) and bedrock.c's (the errors). */
static void bi_error(const struct bb_mock_req *r, int status, const char *code, const char *message,
                     struct evbuffer *body, struct evbuffer *hdrs)
{
    B->error(r, status, code, message, body, hdrs);
}

static void bi_response(struct bb_mock_req *r, struct evbuffer *b)
{
    A->response(r, b);
}

static unsigned bi_stream_nclose(const struct bb_mock_req *r)
{
    return A->stream_nclose(r);
}

static unsigned bi_stream_ndone(const struct bb_mock_req *r)
{
    return A->stream_ndone(r);
}

static void bi_stream_malformed(struct bb_mock_req *r, struct evbuffer *b)
{
    B->stream_malformed(r, b);
}

static void bi_stream_error(struct bb_mock_req *r, struct evbuffer *b)
{
    B->stream_error(r, b);
}

static void bi_inband(const struct bb_mock_req *r, struct evbuffer *b)
{
    A->inband(r, b);
}

const struct bb_mock_proto bb_mock_proto_bedrock_invoke = {
    .name = "bedrock_invoke",
    .bad_json = "Malformed input request, please reformat your input and try again.",
    .parse = bi_parse,
    .error = bi_error,
    .response = bi_response,
    .stream_type = bi_stream_type,
    .call_parts = 3,
    .stream_nopen = bi_stream_nopen,
    .stream_open = bi_stream_open,
    .stream_unit = bi_stream_unit,
    .stream_nclose = bi_stream_nclose,
    .stream_close = bi_stream_close,
    .stream_ndone = bi_stream_ndone,
    .stream_done = bi_stream_done,
    .stream_malformed = bi_stream_malformed,
    .stream_error = bi_stream_error,
    .inband = bi_inband,
};
