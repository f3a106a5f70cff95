/*
 * bb-mock OpenAI Responses: reads a /v1/responses body and renders response objects and the
 * typed SSE stream (response.created, response.in_progress, output_item/content_part/
 * output_text/function_call_arguments/reasoning_summary events, response.completed or
 * response.failed), each event with its sequence_number, as api.openai.com sends them so the
 * official SDK's ResponseStream accumulates them. Errors are OpenAI error bodies.
 * Single-threaded.
 */
#include "mock.h"

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <json-c/json.h>

#define CREATED "1700000000"

/* Function and freeform (custom) tools, also inside namespaces. */
static void add_tools(struct bb_mock_req *r, struct json_object *tools, const char *ns)
{
    for (size_t i = 0; tools && i < json_object_array_length(tools); i++) {
        struct json_object *t = json_object_array_get_idx(tools, i);
        const char *type = bb_mock_get_str(t, "type", NULL);
        size_t n;
        const char *name = bb_mock_get_str(t, "name", &n);
        if (!type || !name)
            continue;
        if (!strcmp(type, "namespace") && !ns)
            add_tools(r, bb_mock_get(t, "tools", json_type_array), name);
        else if (!strcmp(type, "function") || !strcmp(type, "custom"))
            bb_mock_add_tool_ns(r, name, n, ns, !strcmp(type, "custom"));
    }
}

static int rs_parse(struct bb_mock_req *r, struct json_object *body, const char **msg)
{
    const char *model = bb_mock_get_str(body, "model", &r->model_len);
    if (!model) {
        *msg = "Missing required parameter: 'model'.";
        return -1;
    }
    r->model = strndup(model, r->model_len);
    struct json_object *v;
    if ((v = bb_mock_get(body, "instructions", json_type_string)))
        r->prompt_tokens += bb_mock_content_words(v);
    if ((v = bb_mock_get(body, "input", json_type_string))) {
        r->prompt_tokens += bb_mock_content_words(v);
    } else if ((v = bb_mock_get(body, "input", json_type_array))) {
        size_t len = json_object_array_length(v);
        for (size_t i = 0; i < len; i++) {
            struct json_object *it = json_object_array_get_idx(v, i), *c = NULL;
            const char *type = bb_mock_get_str(it, "type", NULL);
            bool result = type && (!strcmp(type, "function_call_output") ||
                                   !strcmp(type, "custom_tool_call_output"));
            if (result) {
                json_object_object_get_ex(it, "output", &c);
                bb_mock_add_result(r, bb_mock_get_str(it, "call_id", NULL), false,
                                   c ? bb_mock_content_text(c) : NULL);
            } else if ((!type || !strcmp(type, "message")) &&
                       json_object_object_get_ex(it, "content", &c)) {
                r->prompt_tokens += bb_mock_content_words(c);
            }
            if (i == len - 1) {
                const char *role = bb_mock_get_str(it, "role", NULL);
                r->last_is_result = result;
                if ((!type || !strcmp(type, "message")) && role && !strcmp(role, "assistant"))
                    r->prefill = bb_mock_text_only(c);
            }
        }
    }
    add_tools(r, bb_mock_get(body, "tools", json_type_array), NULL);
    /* tools offered in the input (additional_tools items), as Codex sends them */
    struct json_object *in = bb_mock_get(body, "input", json_type_array);
    for (size_t i = 0; in && i < json_object_array_length(in); i++) {
        struct json_object *it = json_object_array_get_idx(in, i);
        const char *type = bb_mock_get_str(it, "type", NULL);
        if (type && !strcmp(type, "additional_tools"))
            add_tools(r, bb_mock_get(it, "tools", json_type_array), NULL);
    }
    r->want_think = bb_mock_get(body, "reasoning", json_type_object) != NULL;
    if ((v = bb_mock_get(body, "stream", json_type_boolean)))
        r->stream = json_object_get_boolean(v);
    return 0;
}

static void usage(const struct bb_mock_req *r, struct evbuffer *b)
{
    unsigned long in = r->prompt_tokens + r->cached + r->cache_write;
    unsigned long out = bb_mock_answer_tokens(r) + bb_mock_think_tokens(r);
    evbuffer_add_printf(b,
                        "{\"input_tokens\":%lu,\"input_tokens_details\":{\"cached_tokens\":%lu,"
                        "\"cache_write_tokens\":%lu},\"output_tokens\":%lu,"
                        "\"output_tokens_details\":{\"reasoning_tokens\":%lu},"
                        "\"total_tokens\":%lu}",
                        in, r->cached, r->cache_write, out, bb_mock_think_tokens(r), in + out);
}

static void reasoning_item(const struct bb_mock_req *r, struct evbuffer *b, bool done)
{
    evbuffer_add_printf(b, "{\"id\":\"rs_mock%llu\",\"type\":\"reasoning\",\"summary\":",
                        (unsigned long long)r->seq);
    if (done)
        evbuffer_add_printf(b,
                            "[{\"type\":\"summary_text\",\"text\":\"" BB_MOCK_THINK_TEXT
                            "\"}],\"encrypted_content\":\"mocksig%llu\"}",
                            (unsigned long long)r->seq);
    else
        BB_MOCK_ADD(b, "[]}");
}

static void text_part(const struct bb_mock_req *r, struct evbuffer *b, bool done)
{
    BB_MOCK_ADD(b, "{\"type\":\"output_text\",\"annotations\":[],\"logprobs\":[],\"text\":\"");
    if (done)
        bb_mock_text(r, b);
    BB_MOCK_ADD(b, "\"}");
}

static void message_item(const struct bb_mock_req *r, struct evbuffer *b, bool done)
{
    evbuffer_add_printf(b,
                        "{\"id\":\"msg_mock%llu\",\"type\":\"message\",\"status\":\"%s\","
                        "\"content\":[",
                        (unsigned long long)r->seq, done ? "completed" : "in_progress");
    if (done)
        text_part(r, b, true);
    BB_MOCK_ADD(b, "],\"role\":\"assistant\"}");
}

/* Call i's tool: its namespace (NULL: none) and name within it, freeform or not. */
static const char *call_tool(const struct bb_mock_req *r, unsigned i, const char **ns, bool *custom)
{
    const char *name = bb_mock_call_name(r, i);
    int k = bb_mock_tool_index(r, name);
    *ns = k >= 0 && r->tool_ns ? r->tool_ns[k] : NULL;
    *custom = k >= 0 && r->tool_custom && r->tool_custom[k];
    if (*ns && strcmp(*ns, "functions") != 0)
        name += strlen(*ns) + 2;
    return name;
}

/* A freeform call's input: the args= text's "input" string (else the text itself). */
static char *custom_input(const struct bb_mock_req *r, unsigned i)
{
    struct evbuffer *a = evbuffer_new();
    bb_mock_args_raw(r, a, i, 0);
    evbuffer_add(a, "", 1);
    struct json_object *o = json_tokener_parse((const char *)evbuffer_pullup(a, -1));
    const char *s = bb_mock_get_str(o, "input", NULL);
    char *out = strdup(s ? s : (const char *)evbuffer_pullup(a, -1));
    json_object_put(o);
    evbuffer_free(a);
    return out;
}

static void custom_item(const struct bb_mock_req *r, unsigned i, struct evbuffer *b, bool done)
{
    const char *ns;
    bool custom;
    const char *name = call_tool(r, i, &ns, &custom);
    evbuffer_add_printf(b,
                        "{\"id\":\"ctc_mock%llu_%u\",\"type\":\"custom_tool_call\","
                        "\"status\":\"%s\",\"call_id\":\"call_mock%llu_%u\",\"name\":",
                        (unsigned long long)r->seq, i, done ? "completed" : "in_progress",
                        (unsigned long long)r->seq, i);
    bb_mock_json_str(b, name, strlen(name));
    if (ns) {
        BB_MOCK_ADD(b, ",\"namespace\":");
        bb_mock_json_str(b, ns, strlen(ns));
    }
    BB_MOCK_ADD(b, ",\"input\":");
    char *in = done ? custom_input(r, i) : strdup("");
    bb_mock_json_str(b, in, strlen(in));
    free(in);
    BB_MOCK_ADD(b, "}");
}

static void call_item(const struct bb_mock_req *r, unsigned i, struct evbuffer *b, bool done)
{
    const char *ns;
    bool custom;
    const char *name = call_tool(r, i, &ns, &custom);
    if (custom) {
        custom_item(r, i, b, done);
        return;
    }
    evbuffer_add_printf(b,
                        "{\"id\":\"fc_mock%llu_%u\",\"type\":\"function_call\","
                        "\"status\":\"%s\",\"arguments\":",
                        (unsigned long long)r->seq, i, done ? "completed" : "in_progress");
    if (done)
        bb_mock_args_str(r, b, i, 0);
    else
        BB_MOCK_ADD(b, "\"\"");
    evbuffer_add_printf(
        b, ",\"call_id\":\"call_mock%llu_%u\",\"name\":", (unsigned long long)r->seq, i);
    bb_mock_json_str(b, name, strlen(name));
    if (ns) {
        BB_MOCK_ADD(b, ",\"namespace\":");
        bb_mock_json_str(b, ns, strlen(ns));
    }
    BB_MOCK_ADD(b, "}");
}

/* The response object; status "in_progress" (no output, no usage), "completed" or "failed". */
static void resp_obj(const struct bb_mock_req *r, struct evbuffer *b, const char *status)
{
    bool completed = !strcmp(status, "completed"), failed = !strcmp(status, "failed");
    evbuffer_add_printf(b,
                        "{\"id\":\"resp_mock%llu\",\"object\":\"response\",\"created_at\":" CREATED
                        ",\"status\":\"%s\",\"background\":false,\"error\":",
                        (unsigned long long)r->seq, status);
    if (failed) {
        const char *code = r->errcode ? r->errcode : "server_error";
        const char *msg = bb_mock_errmsg(r, "bb-mock: scripted in-band error");
        BB_MOCK_ADD(b, "{\"code\":");
        bb_mock_json_str(b, code, strlen(code));
        BB_MOCK_ADD(b, ",\"message\":");
        bb_mock_json_str(b, msg, strlen(msg));
        BB_MOCK_ADD(b, "}");
    } else {
        BB_MOCK_ADD(b, "null");
    }
    BB_MOCK_ADD(b, ",\"incomplete_details\":null,\"instructions\":null,\"max_output_tokens\":null,"
                   "\"model\":");
    bb_mock_json_str(b, r->model, r->model_len);
    BB_MOCK_ADD(b, ",\"output\":[");
    if (completed) {
        bool any = false;
        if (r->think) {
            reasoning_item(r, b, true);
            any = true;
        }
        for (unsigned i = 1; i <= r->ncalls; i++) {
            if (any)
                BB_MOCK_ADD(b, ",");
            call_item(r, i, b, true);
            any = true;
        }
        if (!r->ncalls && r->words) {
            if (any)
                BB_MOCK_ADD(b, ",");
            message_item(r, b, true);
        }
    }
    BB_MOCK_ADD(b, "],\"parallel_tool_calls\":true,\"previous_response_id\":null,\"reasoning\":"
                   "{\"effort\":null,\"summary\":null},\"service_tier\":\"default\","
                   "\"store\":true,\"temperature\":1.0,\"text\":{\"format\":{\"type\":\"text\"}},"
                   "\"tool_choice\":\"auto\",\"tools\":[],\"top_p\":1.0,\"truncation\":"
                   "\"disabled\",\"usage\":");
    if (completed)
        usage(r, b);
    else
        BB_MOCK_ADD(b, "null");
    BB_MOCK_ADD(b, ",\"user\":null,\"metadata\":{}}");
}

static void rs_response(struct bb_mock_req *r, struct evbuffer *b)
{
    resp_obj(r, b, "completed");
}

static const char *rs_stream_type(const struct bb_mock_req *r)
{
    return "text/event-stream";
}

/* `event: T` and `data: {"type":"T",` ... the caller's fields, each followed by a comma ... */
static void ev(struct evbuffer *b, const char *type)
{
    evbuffer_add_printf(b, "event: %s\ndata: {\"type\":\"%s\",", type, type);
}

/* ... `"sequence_number":N}` */
static void ev_end(struct bb_mock_req *r, struct evbuffer *b)
{
    evbuffer_add_printf(b, "\"sequence_number\":%lu}\n\n", r->evseq++);
}

static unsigned rs_stream_nopen(const struct bb_mock_req *r)
{
    return 2;
}

static void rs_stream_open(struct bb_mock_req *r, unsigned k, struct evbuffer *b)
{
    ev(b, k == 0 ? "response.created" : "response.in_progress");
    BB_MOCK_ADD(b, "\"response\":");
    resp_obj(r, b, "in_progress");
    BB_MOCK_ADD(b, ",");
    ev_end(r, b);
}

/* `"item_id":"ID","output_index":N,` for the item of unit u */
static void item_ref(const struct bb_mock_req *r, const struct bb_mock_unit *u, struct evbuffer *b)
{
    unsigned long long seq = (unsigned long long)r->seq;
    if (u->kind == BB_MOCK_THINK)
        evbuffer_add_printf(b, "\"item_id\":\"rs_mock%llu\",", seq);
    else if (u->kind == BB_MOCK_TEXT)
        evbuffer_add_printf(b, "\"item_id\":\"msg_mock%llu\",", seq);
    else
        evbuffer_add_printf(b, "\"item_id\":\"fc_mock%llu_%u\",", seq, u->i);
    evbuffer_add_printf(b, "\"output_index\":%u,", u->block);
}

static void item_event(struct bb_mock_req *r, const struct bb_mock_unit *u, struct evbuffer *b,
                       bool done)
{
    ev(b, done ? "response.output_item.done" : "response.output_item.added");
    evbuffer_add_printf(b, "\"output_index\":%u,\"item\":", u->block);
    if (u->kind == BB_MOCK_THINK)
        reasoning_item(r, b, done);
    else if (u->kind == BB_MOCK_TEXT)
        message_item(r, b, done);
    else
        call_item(r, u->i, b, done);
    BB_MOCK_ADD(b, ",");
    ev_end(r, b);
}

static void summary_event(struct bb_mock_req *r, const struct bb_mock_unit *u, struct evbuffer *b,
                          const char *type, const char *tail)
{
    ev(b, type);
    item_ref(r, u, b);
    evbuffer_add_printf(b, "\"summary_index\":0,%s", tail);
    ev_end(r, b);
}

static void rs_stream_unit(struct bb_mock_req *r, const struct bb_mock_unit *u, struct evbuffer *b)
{
    switch (u->kind) {
    case BB_MOCK_THINK:
        item_event(r, u, b, false);
        summary_event(r, u, b, "response.reasoning_summary_part.added",
                      "\"part\":{\"type\":\"summary_text\",\"text\":\"\"},");
        summary_event(r, u, b, "response.reasoning_summary_text.delta",
                      "\"delta\":\"" BB_MOCK_THINK_TEXT "\",");
        summary_event(r, u, b, "response.reasoning_summary_text.done",
                      "\"text\":\"" BB_MOCK_THINK_TEXT "\",");
        summary_event(r, u, b, "response.reasoning_summary_part.done",
                      "\"part\":{\"type\":\"summary_text\",\"text\":\"" BB_MOCK_THINK_TEXT "\"},");
        item_event(r, u, b, true);
        break;
    case BB_MOCK_TEXT:
        if (u->first) {
            item_event(r, u, b, false);
            ev(b, "response.content_part.added");
            item_ref(r, u, b);
            BB_MOCK_ADD(b, "\"content_index\":0,\"part\":");
            text_part(r, b, false);
            BB_MOCK_ADD(b, ",");
            ev_end(r, b);
        }
        ev(b, "response.output_text.delta");
        item_ref(r, u, b);
        BB_MOCK_ADD(b, "\"content_index\":0,\"delta\":\"");
        bb_mock_unit_text(r, u->i, b);
        BB_MOCK_ADD(b, "\",\"logprobs\":[],");
        ev_end(r, b);
        if (u->last) {
            ev(b, "response.output_text.done");
            item_ref(r, u, b);
            BB_MOCK_ADD(b, "\"content_index\":0,\"text\":\"");
            bb_mock_text(r, b);
            BB_MOCK_ADD(b, "\",\"logprobs\":[],");
            ev_end(r, b);
            ev(b, "response.content_part.done");
            item_ref(r, u, b);
            BB_MOCK_ADD(b, "\"content_index\":0,\"part\":");
            text_part(r, b, true);
            BB_MOCK_ADD(b, ",");
            ev_end(r, b);
            item_event(r, u, b, true);
        }
        break;
    case BB_MOCK_CALL: {
        const char *ns;
        bool custom;
        call_tool(r, u->i, &ns, &custom);
        if (u->part == 0) {
            item_event(r, u, b, false);
            break;
        }
        if (custom) { /* the freeform input in two pieces */
            char *in = custom_input(r, u->i);
            size_t h = strlen(in) / 2;
            ev(b, "response.custom_tool_call_input.delta");
            item_ref(r, u, b);
            BB_MOCK_ADD(b, "\"delta\":");
            bb_mock_json_str(b, u->part == 1 ? in : in + h, u->part == 1 ? h : strlen(in) - h);
            BB_MOCK_ADD(b, ",");
            ev_end(r, b);
            if (u->last) {
                ev(b, "response.custom_tool_call_input.done");
                item_ref(r, u, b);
                BB_MOCK_ADD(b, "\"input\":");
                bb_mock_json_str(b, in, strlen(in));
                BB_MOCK_ADD(b, ",");
                ev_end(r, b);
                item_event(r, u, b, true);
            }
            free(in);
            break;
        }
        ev(b, "response.function_call_arguments.delta");
        item_ref(r, u, b);
        BB_MOCK_ADD(b, "\"delta\":");
        bb_mock_args_str(r, b, u->i, u->part);
        BB_MOCK_ADD(b, ",");
        ev_end(r, b);
        if (u->last) {
            const char *name = bb_mock_call_name(r, u->i);
            ev(b, "response.function_call_arguments.done");
            item_ref(r, u, b);
            BB_MOCK_ADD(b, "\"name\":");
            bb_mock_json_str(b, name, strlen(name));
            BB_MOCK_ADD(b, ",\"arguments\":");
            bb_mock_args_str(r, b, u->i, 0);
            BB_MOCK_ADD(b, ",");
            ev_end(r, b);
            item_event(r, u, b, true);
        }
        break;
    }
    }
}

static unsigned rs_stream_nclose(const struct bb_mock_req *r)
{
    return 0;
}

static void rs_stream_close(struct bb_mock_req *r, unsigned k, struct evbuffer *b)
{
}

static unsigned rs_stream_ndone(const struct bb_mock_req *r)
{
    return 1;
}

static void rs_stream_done(struct bb_mock_req *r, unsigned k, struct evbuffer *b)
{
    ev(b, "response.completed");
    BB_MOCK_ADD(b, "\"response\":");
    resp_obj(r, b, "completed");
    BB_MOCK_ADD(b, ",");
    ev_end(r, b);
}

static void rs_stream_malformed(struct bb_mock_req *r, struct evbuffer *b)
{
    BB_MOCK_ADD(b, "event: response.output_text.delta\ndata: {not json\n\n");
}

static void rs_stream_error(struct bb_mock_req *r, struct evbuffer *b)
{
    ev(b, "response.failed");
    BB_MOCK_ADD(b, "\"response\":");
    resp_obj(r, b, "failed");
    BB_MOCK_ADD(b, ",");
    ev_end(r, b);
}

const struct bb_mock_proto bb_mock_proto_responses = {
    .name = "responses",
    .bad_json = "We could not parse the JSON body of your request. (HINT: This likely means you "
                "aren't using your HTTP library correctly. The OpenAI API expects a JSON "
                "payload, but what was sent was not valid JSON.)",
    .parse = rs_parse,
    .error = bb_mock_openai_error,
    .response = rs_response,
    .stream_type = rs_stream_type,
    .call_parts = 3,
    .stream_nopen = rs_stream_nopen,
    .stream_open = rs_stream_open,
    .stream_unit = rs_stream_unit,
    .stream_nclose = rs_stream_nclose,
    .stream_close = rs_stream_close,
    .stream_ndone = rs_stream_ndone,
    .stream_done = rs_stream_done,
    .stream_malformed = rs_stream_malformed,
    .stream_error = rs_stream_error,
    .inband = bb_mock_openai_inband,
};
