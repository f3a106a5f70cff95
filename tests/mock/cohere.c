/*
 * bb-mock Cohere v2 chat: reads a /v2/chat body and renders chat responses, the named-event
 * SSE stream (message-start, content-start/delta/end, tool-plan-delta, tool-call-start/delta/
 * end, message-end) and Cohere error bodies ({"message"}), as api.cohere.com sends them so
 * cohere-ai's CohereClientV2 parses them. Single-threaded.
 */
#include "mock.h"

#include <string.h>

#include <event2/buffer.h>
#include <json-c/json.h>

/* Cohere ids are UUIDs; this one is deterministic in the attempt's seq. */
#define UUID_FMT "\"00000000-0000-4000-8000-%012llx\""

static char *tool_content_text(struct json_object *content)
{
    if (!json_object_is_type(content, json_type_array))
        return content ? bb_mock_content_text(content) : NULL;
    struct evbuffer *b = evbuffer_new();
    for (size_t i = 0; i < json_object_array_length(content); i++) {
        struct json_object *it = json_object_array_get_idx(content, i), *d;
        size_t tl;
        const char *t = bb_mock_get_str(it, "text", &tl);
        if (t) {
            evbuffer_add(b, t, tl);
        } else if ((d = bb_mock_get(bb_mock_get(it, "document", json_type_object), "data",
                                    json_type_object)) ||
                   (d = bb_mock_get(it, "document", json_type_object))) {
            const char *js = json_object_to_json_string_ext(d, JSON_C_TO_STRING_PLAIN |
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

static int co_parse(struct bb_mock_req *r, struct json_object *body, const char **msg)
{
    const char *model = bb_mock_get_str(body, "model", &r->model_len);
    if (!model) {
        *msg = "invalid request: model must be specified";
        return -1;
    }
    r->model = strndup(model, r->model_len);
    struct json_object *msgs = bb_mock_get(body, "messages", json_type_array), *v;
    if (!msgs) {
        *msg = "invalid request: messages must be specified";
        return -1;
    }
    size_t len = json_object_array_length(msgs);
    for (size_t i = 0; i < len; i++) {
        struct json_object *m = json_object_array_get_idx(msgs, i), *content = NULL;
        const char *role = bb_mock_get_str(m, "role", NULL);
        json_object_object_get_ex(m, "content", &content);
        bool result = role && !strcmp(role, "tool");
        if (result)
            bb_mock_add_result(r, bb_mock_get_str(m, "tool_call_id", NULL), false,
                               tool_content_text(content));
        else if (content)
            r->prompt_tokens += bb_mock_content_words(content);
        if (i == len - 1) {
            r->last_is_result = result;
            if (role && !strcmp(role, "assistant"))
                r->prefill = bb_mock_text_only(content);
        }
    }
    struct json_object *tools = bb_mock_get(body, "tools", json_type_array);
    for (size_t i = 0; tools && i < json_object_array_length(tools); i++) {
        struct json_object *fn =
            bb_mock_get(json_object_array_get_idx(tools, i), "function", json_type_object);
        size_t n;
        const char *name = bb_mock_get_str(fn, "name", &n);
        if (name)
            bb_mock_add_tool(r, name, n);
    }
    struct json_object *th = bb_mock_get(body, "thinking", json_type_object);
    const char *tt = bb_mock_get_str(th, "type", NULL);
    r->want_think = th && !(tt && !strcmp(tt, "disabled"));
    if ((v = bb_mock_get(body, "stream", json_type_boolean)))
        r->stream = json_object_get_boolean(v);
    return 0;
}

static void co_error(const struct bb_mock_req *r, int status, const char *code, const char *message,
                     struct evbuffer *b, struct evbuffer *hdrs)
{
    BB_MOCK_ADD(b, "{\"message\":");
    bb_mock_json_str(b, message, strlen(message));
    BB_MOCK_ADD(b, "}");
}

static void usage(const struct bb_mock_req *r, struct evbuffer *b)
{
    unsigned long out = bb_mock_answer_tokens(r) + bb_mock_think_tokens(r);
    evbuffer_add_printf(b,
                        "{\"billed_units\":{\"input_tokens\":%lu,\"output_tokens\":%lu},"
                        "\"tokens\":{\"input_tokens\":%lu,\"output_tokens\":%lu},"
                        "\"cached_tokens\":%lu}",
                        r->prompt_tokens, out, r->prompt_tokens + r->cached + r->cache_write, out,
                        r->cached);
}

static const char *finish(const struct bb_mock_req *r)
{
    return r->ncalls ? "TOOL_CALL" : "COMPLETE";
}

/* {"id":..., "type":"function", "function":{"name":..., "arguments": */
static void call_head(const struct bb_mock_req *r, unsigned i, struct evbuffer *b)
{
    const char *name = bb_mock_call_name(r, i);
    evbuffer_add_printf(b,
                        "{\"id\":\"call_mock%llu_%u\",\"type\":\"function\",\"function\":"
                        "{\"name\":",
                        (unsigned long long)r->seq, i);
    bb_mock_json_str(b, name, strlen(name));
    BB_MOCK_ADD(b, ",\"arguments\":");
}

static void co_response(struct bb_mock_req *r, struct evbuffer *b)
{
    evbuffer_add_printf(b, "{\"id\":" UUID_FMT ",\"message\":{\"role\":\"assistant\"",
                        (unsigned long long)r->seq);
    if (r->ncalls) {
        BB_MOCK_ADD(b, ",\"tool_plan\":\"" BB_MOCK_TOOL_PLAN "\",\"tool_calls\":[");
        for (unsigned i = 1; i <= r->ncalls; i++) {
            if (i > 1)
                BB_MOCK_ADD(b, ",");
            call_head(r, i, b);
            bb_mock_args_str(r, b, i, 0);
            BB_MOCK_ADD(b, "}}");
        }
        BB_MOCK_ADD(b, "]");
    }
    if (r->think || (!r->ncalls && r->words)) {
        BB_MOCK_ADD(b, ",\"content\":[");
        if (r->think)
            BB_MOCK_ADD(b, "{\"type\":\"thinking\",\"thinking\":\"" BB_MOCK_THINK_TEXT "\"}");
        if (!r->ncalls && r->words) {
            if (r->think)
                BB_MOCK_ADD(b, ",");
            BB_MOCK_ADD(b, "{\"type\":\"text\",\"text\":\"");
            bb_mock_text(r, b);
            BB_MOCK_ADD(b, "\"}");
        }
        BB_MOCK_ADD(b, "]");
    }
    evbuffer_add_printf(b, "},\"finish_reason\":\"%s\",\"usage\":", finish(r));
    usage(r, b);
    BB_MOCK_ADD(b, "}");
}

static const char *co_stream_type(const struct bb_mock_req *r)
{
    return "text/event-stream";
}

/* `event: T` and `data: {"type":"T"` ... the caller's fields, each after a comma ... */
static void ev(struct evbuffer *b, const char *type)
{
    evbuffer_add_printf(b, "event: %s\ndata: {\"type\":\"%s\"", type, type);
}

static void ev_end(struct evbuffer *b)
{
    BB_MOCK_ADD(b, "}\n\n");
}

static unsigned co_stream_nopen(const struct bb_mock_req *r)
{
    return 1;
}

static void co_stream_open(struct bb_mock_req *r, unsigned k, struct evbuffer *b)
{
    ev(b, "message-start");
    evbuffer_add_printf(b,
                        ",\"id\":" UUID_FMT ",\"delta\":{\"message\":{\"role\":\"assistant\","
                        "\"content\":[],\"tool_plan\":\"\",\"tool_calls\":[],"
                        "\"citations\":[]}}",
                        (unsigned long long)r->seq);
    ev_end(b);
}

static void content_start(struct evbuffer *b, unsigned index, const char *type)
{
    ev(b, "content-start");
    evbuffer_add_printf(b,
                        ",\"index\":%u,\"delta\":{\"message\":{\"content\":{\"type\":\"%s\","
                        "\"%s\":\"\"}}}",
                        index, type, type);
    ev_end(b);
}

static void content_end(struct evbuffer *b, unsigned index)
{
    ev(b, "content-end");
    evbuffer_add_printf(b, ",\"index\":%u", index);
    ev_end(b);
}

static void co_stream_unit(struct bb_mock_req *r, const struct bb_mock_unit *u, struct evbuffer *b)
{
    switch (u->kind) {
    case BB_MOCK_THINK:
        content_start(b, u->block, "thinking");
        ev(b, "content-delta");
        evbuffer_add_printf(
            b,
            ",\"index\":%u,\"delta\":{\"message\":{\"content\":{\"thinking\":\"" BB_MOCK_THINK_TEXT
            "\"}}}",
            u->block);
        ev_end(b);
        content_end(b, u->block);
        break;
    case BB_MOCK_TEXT:
        if (u->first)
            content_start(b, u->block, "text");
        ev(b, "content-delta");
        evbuffer_add_printf(b, ",\"index\":%u,\"delta\":{\"message\":{\"content\":{\"text\":\"",
                            u->block);
        bb_mock_unit_text(r, u->i, b);
        BB_MOCK_ADD(b, "\"}}}");
        ev_end(b);
        if (u->last)
            content_end(b, u->block);
        break;
    case BB_MOCK_CALL:
        if (u->part == 0) {
            if (u->i == 1) {
                ev(b, "tool-plan-delta");
                BB_MOCK_ADD(b,
                            ",\"delta\":{\"message\":{\"tool_plan\":\"" BB_MOCK_TOOL_PLAN "\"}}");
                ev_end(b);
            }
            ev(b, "tool-call-start");
            evbuffer_add_printf(b,
                                ",\"index\":%u,\"delta\":{\"message\":{\"tool_calls\":", u->i - 1);
            call_head(r, u->i, b);
            BB_MOCK_ADD(b, "\"\"}}}}");
            ev_end(b);
            break;
        }
        ev(b, "tool-call-delta");
        evbuffer_add_printf(b,
                            ",\"index\":%u,\"delta\":{\"message\":{\"tool_calls\":"
                            "{\"function\":{\"arguments\":",
                            u->i - 1);
        bb_mock_args_str(r, b, u->i, u->part);
        BB_MOCK_ADD(b, "}}}}");
        ev_end(b);
        if (u->last) {
            ev(b, "tool-call-end");
            evbuffer_add_printf(b, ",\"index\":%u", u->i - 1);
            ev_end(b);
        }
        break;
    }
}

static unsigned co_stream_nclose(const struct bb_mock_req *r)
{
    return 0;
}

static void co_stream_close(struct bb_mock_req *r, unsigned k, struct evbuffer *b)
{
}

static unsigned co_stream_ndone(const struct bb_mock_req *r)
{
    return 1;
}

static void co_stream_done(struct bb_mock_req *r, unsigned k, struct evbuffer *b)
{
    ev(b, "message-end");
    evbuffer_add_printf(b, ",\"delta\":{\"finish_reason\":\"%s\",\"usage\":", finish(r));
    usage(r, b);
    BB_MOCK_ADD(b, "}");
    ev_end(b);
}

static void co_stream_malformed(struct bb_mock_req *r, struct evbuffer *b)
{
    BB_MOCK_ADD(b, "event: content-delta\ndata: {not json\n\n");
}

/* A 200 whose body is Cohere's error object {"message"} (no finish_reason). */
static void co_inband(const struct bb_mock_req *r, struct evbuffer *b)
{
    co_error(r, 500, NULL, bb_mock_errmsg(r, "bb-mock: scripted in-band error"), b, NULL);
}

/* Cohere reports a failure during generation as a message-end with finish_reason ERROR and
 * the error text in delta.error. */
static void co_stream_error(struct bb_mock_req *r, struct evbuffer *b)
{
    const char *msg = bb_mock_errmsg(r, "bb-mock: scripted in-band error");
    ev(b, "message-end");
    BB_MOCK_ADD(b, ",\"delta\":{\"error\":");
    bb_mock_json_str(b, msg, strlen(msg));
    BB_MOCK_ADD(b, ",\"finish_reason\":\"ERROR\"}");
    ev_end(b);
}

const struct bb_mock_proto bb_mock_proto_cohere = {
    .name = "cohere",
    .bad_json = "invalid request: the body is not a JSON object",
    .parse = co_parse,
    .error = co_error,
    .response = co_response,
    .stream_type = co_stream_type,
    .call_parts = 3,
    .stream_nopen = co_stream_nopen,
    .stream_open = co_stream_open,
    .stream_unit = co_stream_unit,
    .stream_nclose = co_stream_nclose,
    .stream_close = co_stream_close,
    .stream_ndone = co_stream_ndone,
    .stream_done = co_stream_done,
    .stream_malformed = co_stream_malformed,
    .stream_error = co_stream_error,
    .inband = co_inband,
};
