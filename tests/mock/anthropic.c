/*
 * bb-mock Anthropic Messages: reads a /v1/messages body and renders message objects, the
 * named-event SSE stream (message_start, ping, content_block_start/delta/stop, message_delta,
 * message_stop), in-band `event: error` frames and Anthropic error bodies, shaped as
 * api.anthropic.com sends them so @anthropic-ai/sdk parses them. Single-threaded.
 */
#include "mock.h"

#include <string.h>

#include <event2/buffer.h>
#include <json-c/json.h>

static int an_parse(struct bb_mock_req *r, struct json_object *body, const char **msg)
{
    const char *model = bb_mock_get_str(body, "model", &r->model_len);
    if (!model) {
        *msg = "model: Field required";
        return -1;
    }
    r->model = strndup(model, r->model_len);
    struct json_object *msgs = bb_mock_get(body, "messages", json_type_array), *v;
    if (!msgs) {
        *msg = "messages: Field required";
        return -1;
    }
    if (!bb_mock_get(body, "max_tokens", json_type_int)) {
        *msg = "max_tokens: Field required";
        return -1;
    }
    if (json_object_object_get_ex(body, "system", &v))
        r->prompt_tokens += bb_mock_content_words(v);
    size_t len = json_object_array_length(msgs);
    for (size_t i = 0; i < len; i++) {
        struct json_object *m = json_object_array_get_idx(msgs, i), *content = NULL;
        json_object_object_get_ex(m, "content", &content);
        bool result = false;
        if (json_object_is_type(content, json_type_array)) {
            size_t n = json_object_array_length(content);
            for (size_t k = 0; k < n; k++) {
                struct json_object *blk = json_object_array_get_idx(content, k), *rc = NULL;
                const char *type = bb_mock_get_str(blk, "type", NULL);
                if (type && !strcmp(type, "tool_result")) {
                    result = true;
                    json_object_object_get_ex(blk, "content", &rc);
                    bb_mock_add_result(r, bb_mock_get_str(blk, "tool_use_id", NULL), false,
                                       rc ? bb_mock_content_text(rc) : NULL);
                } else if (type && !strcmp(type, "text")) {
                    size_t tl;
                    const char *t = bb_mock_get_str(blk, "text", &tl);
                    if (t)
                        r->prompt_tokens += bb_mock_count_words(t, tl);
                }
            }
        } else if (content) {
            r->prompt_tokens += bb_mock_content_words(content);
        }
        if (i == len - 1) {
            const char *role = bb_mock_get_str(m, "role", NULL);
            r->last_is_result = result;
            if (role && !strcmp(role, "assistant"))
                r->prefill = bb_mock_text_only(content);
        }
    }
    struct json_object *tools = bb_mock_get(body, "tools", json_type_array);
    for (size_t i = 0; tools && i < json_object_array_length(tools); i++) {
        size_t n;
        const char *name = bb_mock_get_str(json_object_array_get_idx(tools, i), "name", &n);
        if (name)
            bb_mock_add_tool(r, name, n);
    }
    const char *tt = bb_mock_get_str(bb_mock_get(body, "thinking", json_type_object), "type", NULL);
    r->want_think = tt && (!strcmp(tt, "enabled") || !strcmp(tt, "adaptive"));
    if ((v = bb_mock_get(body, "stream", json_type_boolean)))
        r->stream = json_object_get_boolean(v);
    return 0;
}

static void an_error(const struct bb_mock_req *r, int status, const char *code, const char *message,
                     struct evbuffer *b, struct evbuffer *hdrs)
{
    const char *type;
    switch (status) {
    case 401:
        type = "authentication_error";
        break;
    case 402:
        type = "billing_error";
        break;
    case 403:
        type = "permission_error";
        break;
    case 404:
        type = "not_found_error";
        break;
    case 413:
        type = "request_too_large";
        break;
    case 429:
        type = "rate_limit_error";
        break;
    case 504:
        type = "timeout_error";
        break;
    case 529:
        type = "overloaded_error";
        break;
    default:
        type = status >= 500 ? "api_error" : "invalid_request_error";
    }
    BB_MOCK_ADD(b, "{\"type\":\"error\",\"error\":{\"type\":");
    bb_mock_json_str(b, code ? code : type, strlen(code ? code : type));
    BB_MOCK_ADD(b, ",\"message\":");
    bb_mock_json_str(b, message, strlen(message));
    BB_MOCK_ADD(b, "}");
    if (r)
        evbuffer_add_printf(b, ",\"request_id\":\"req_mock%llu\"", (unsigned long long)r->seq);
    BB_MOCK_ADD(b, "}");
}

/* The usage object; out < 0: the final output count. */
static void usage(const struct bb_mock_req *r, struct evbuffer *b, long out)
{
    unsigned long o =
        out < 0 ? bb_mock_answer_tokens(r) + bb_mock_think_tokens(r) : (unsigned long)out;
    evbuffer_add_printf(b,
                        "{\"input_tokens\":%lu,\"cache_creation_input_tokens\":%lu,"
                        "\"cache_read_input_tokens\":%lu,\"cache_creation\":"
                        "{\"ephemeral_5m_input_tokens\":%lu,\"ephemeral_1h_input_tokens\":0},"
                        "\"output_tokens\":%lu,",
                        r->prompt_tokens, r->cache_write, r->cached, r->cache_write, o);
    if (r->think && out < 0)
        evbuffer_add_printf(b, "\"output_tokens_details\":{\"thinking_tokens\":%lu},",
                            bb_mock_think_tokens(r));
    evbuffer_add_printf(b, "\"service_tier\":\"standard\"}");
}

static const char *stop_reason(const struct bb_mock_req *r)
{
    return r->ncalls ? "tool_use" : "end_turn";
}

static void tool_use_head(const struct bb_mock_req *r, unsigned i, struct evbuffer *b)
{
    const char *name = bb_mock_call_name(r, i);
    evbuffer_add_printf(b, "{\"type\":\"tool_use\",\"id\":\"toolu_mock%llu_%u\",\"name\":",
                        (unsigned long long)r->seq, i);
    bb_mock_json_str(b, name, strlen(name));
    BB_MOCK_ADD(b, ",\"input\":");
}

/* The message object up to and including `"content":[` */
static void message_head(const struct bb_mock_req *r, struct evbuffer *b)
{
    evbuffer_add_printf(b,
                        "{\"id\":\"msg_mock%llu\",\"type\":\"message\",\"role\":\"assistant\","
                        "\"model\":",
                        (unsigned long long)r->seq);
    bb_mock_json_str(b, r->model, r->model_len);
    BB_MOCK_ADD(b, ",\"content\":[");
}

static void an_response(struct bb_mock_req *r, struct evbuffer *b)
{
    message_head(r, b);
    bool any = false;
    if (r->think) {
        evbuffer_add_printf(b,
                            "{\"type\":\"thinking\",\"thinking\":\"" BB_MOCK_THINK_TEXT
                            "\",\"signature\":\"mocksig%llu\"}",
                            (unsigned long long)r->seq);
        any = true;
    }
    for (unsigned i = 1; i <= r->ncalls; i++) {
        if (any)
            BB_MOCK_ADD(b, ",");
        tool_use_head(r, i, b);
        bb_mock_args_raw(r, b, i, 0);
        BB_MOCK_ADD(b, "}");
        any = true;
    }
    if (!r->ncalls && r->words) {
        evbuffer_add_printf(b, "%s{\"type\":\"text\",\"text\":\"", any ? "," : "");
        bb_mock_text(r, b);
        BB_MOCK_ADD(b, "\"}");
    }
    evbuffer_add_printf(
        b, "],\"stop_reason\":\"%s\",\"stop_sequence\":null,\"usage\":", stop_reason(r));
    usage(r, b, -1);
    BB_MOCK_ADD(b, "}");
}

static const char *an_stream_type(const struct bb_mock_req *r)
{
    return "text/event-stream";
}

static void ev(struct evbuffer *b, const char *name)
{
    evbuffer_add_printf(b, "event: %s\ndata: ", name);
}

static void ev_end(struct evbuffer *b)
{
    BB_MOCK_ADD(b, "\n\n");
}

static unsigned an_stream_nopen(const struct bb_mock_req *r)
{
    return 2;
}

static void an_stream_open(struct bb_mock_req *r, unsigned k, struct evbuffer *b)
{
    if (k == 0) {
        ev(b, "message_start");
        BB_MOCK_ADD(b, "{\"type\":\"message_start\",\"message\":");
        message_head(r, b);
        BB_MOCK_ADD(b, "],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":");
        usage(r, b, 1);
        BB_MOCK_ADD(b, "}}");
        ev_end(b);
    } else {
        evbuffer_add_printf(b, "event: ping\ndata: {\"type\": \"ping\"}\n\n");
    }
}

static void block_start(struct evbuffer *b, unsigned index)
{
    ev(b, "content_block_start");
    evbuffer_add_printf(b,
                        "{\"type\":\"content_block_start\",\"index\":%u,\"content_block\":", index);
}

static void delta(struct evbuffer *b, unsigned index, const char *type)
{
    ev(b, "content_block_delta");
    evbuffer_add_printf(b,
                        "{\"type\":\"content_block_delta\",\"index\":%u,\"delta\":"
                        "{\"type\":\"%s\",",
                        index, type);
}

static void block_stop(struct evbuffer *b, unsigned index)
{
    ev(b, "content_block_stop");
    evbuffer_add_printf(b, "{\"type\":\"content_block_stop\",\"index\":%u}", index);
    ev_end(b);
}

static void an_stream_unit(struct bb_mock_req *r, const struct bb_mock_unit *u, struct evbuffer *b)
{
    switch (u->kind) {
    case BB_MOCK_THINK:
        block_start(b, u->block);
        evbuffer_add_printf(b, "{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}}");
        ev_end(b);
        delta(b, u->block, "thinking_delta");
        evbuffer_add_printf(b, "\"thinking\":\"" BB_MOCK_THINK_TEXT "\"}}");
        ev_end(b);
        delta(b, u->block, "signature_delta");
        evbuffer_add_printf(b, "\"signature\":\"mocksig%llu\"}}", (unsigned long long)r->seq);
        ev_end(b);
        break;
    case BB_MOCK_TEXT:
        if (u->first) {
            block_start(b, u->block);
            evbuffer_add_printf(b, "{\"type\":\"text\",\"text\":\"\"}}");
            ev_end(b);
        }
        delta(b, u->block, "text_delta");
        BB_MOCK_ADD(b, "\"text\":\"");
        bb_mock_unit_text(r, u->i, b);
        BB_MOCK_ADD(b, "\"}}");
        ev_end(b);
        break;
    case BB_MOCK_CALL:
        if (u->part == 0) {
            block_start(b, u->block);
            tool_use_head(r, u->i, b);
            BB_MOCK_ADD(b, "{}}}");
            ev_end(b);
            delta(b, u->block, "input_json_delta");
            evbuffer_add_printf(b, "\"partial_json\":\"\"}}");
        } else {
            delta(b, u->block, "input_json_delta");
            evbuffer_add_printf(b, "\"partial_json\":");
            bb_mock_args_str(r, b, u->i, u->part);
            BB_MOCK_ADD(b, "}}");
        }
        ev_end(b);
        break;
    }
    if (u->last)
        block_stop(b, u->block);
}

static unsigned an_stream_nclose(const struct bb_mock_req *r)
{
    return 1;
}

static void an_stream_close(struct bb_mock_req *r, unsigned k, struct evbuffer *b)
{
    unsigned long out = bb_mock_answer_tokens(r) + bb_mock_think_tokens(r);
    ev(b, "message_delta");
    evbuffer_add_printf(b,
                        "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"%s\","
                        "\"stop_sequence\":null},\"usage\":{\"input_tokens\":%lu,"
                        "\"cache_creation_input_tokens\":%lu,\"cache_read_input_tokens\":%lu,"
                        "\"output_tokens\":%lu",
                        stop_reason(r), r->prompt_tokens, r->cache_write, r->cached, out);
    if (r->think)
        evbuffer_add_printf(b, ",\"output_tokens_details\":{\"thinking_tokens\":%lu}",
                            bb_mock_think_tokens(r));
    BB_MOCK_ADD(b, "}}");
    ev_end(b);
}

static unsigned an_stream_ndone(const struct bb_mock_req *r)
{
    return 1;
}

static void an_stream_done(struct bb_mock_req *r, unsigned k, struct evbuffer *b)
{
    evbuffer_add_printf(b, "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
}

static void an_stream_malformed(struct bb_mock_req *r, struct evbuffer *b)
{
    evbuffer_add_printf(b, "event: content_block_delta\ndata: {not json\n\n");
}

static void an_inband(const struct bb_mock_req *r, struct evbuffer *b)
{
    an_error(r, 529, r->errcode, bb_mock_errmsg(r, "Overloaded"), b, NULL);
}

static void an_stream_error(struct bb_mock_req *r, struct evbuffer *b)
{
    ev(b, "error");
    an_inband(r, b);
    ev_end(b);
}

const struct bb_mock_proto bb_mock_proto_anthropic = {
    .name = "anthropic",
    .bad_json = "There was an issue with your request body: it is not a JSON object.",
    .parse = an_parse,
    .error = an_error,
    .response = an_response,
    .stream_type = an_stream_type,
    .call_parts = 3,
    .stream_nopen = an_stream_nopen,
    .stream_open = an_stream_open,
    .stream_unit = an_stream_unit,
    .stream_nclose = an_stream_nclose,
    .stream_close = an_stream_close,
    .stream_ndone = an_stream_ndone,
    .stream_done = an_stream_done,
    .stream_malformed = an_stream_malformed,
    .stream_error = an_stream_error,
    .inband = an_inband,
};
