/*
 * proto_test_common.h: fixture I/O, golden comparison, IR assertions, the dropped-field list
 * and IR-to-JSON dumpers shared by the six protocol modules' unit tests. Included (not
 * linked) after the including test defines FIX (its fixture directory); everything here is
 * static (and may go unused in one test).
 */
#ifndef BB_PROTO_TEST_COMMON_H
#define BB_PROTO_TEST_COMMON_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <json-c/json.h>

#include "common/sse.h"
#include "worker/ir.h"
#include "worker/proto.h"

#define TC_UNUSED __attribute__((unused))

/* ---------------------------------------------------------------------------------------- */
/* files and JSON                                                                           */
/* ---------------------------------------------------------------------------------------- */

TC_UNUSED static char *slurp(const char *name, size_t *len)
{
    char path[512];
    snprintf(path, sizeof path, FIX "%s", name);
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open fixture %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
    p[n] = '\0';
    fclose(f);
    if (len)
        *len = (size_t)n;
    return p;
}

TC_UNUSED static bool updating(void)
{
    const char *u = getenv("BB_UPDATE_GOLDEN");
    return u && *u == '1';
}

TC_UNUSED static void write_golden(const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, FIX "%s", name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

TC_UNUSED static json_object *parse(const char *p, size_t n)
{
    json_tokener *tok = json_tokener_new_ex(128);
    json_object *o = json_tokener_parse_ex(tok, p, (int)n);
    enum json_tokener_error e = json_tokener_get_error(tok);
    json_tokener_free(tok);
    if (e != json_tokener_success)
        fail_msg("bad JSON in test data (%s): %.*s", json_tokener_error_desc(e), (int)n, p);
    return o;
}

/* A NUL-terminated JSON text parsed (the test fails when it is not JSON). */
TC_UNUSED static json_object *parse_str(const char *s)
{
    return parse(s, strlen(s));
}

/* Two JSON texts are equal values, whatever the key order or spacing. */
TC_UNUSED static void assert_json_eq(const char *what, const char *got, const char *want)
{
    json_object *g = parse_str(got), *w = parse_str(want);
    if (!json_object_equal(g, w))
        fail_msg("%s differs\n got: %s\nwant: %s", what,
                 json_object_to_json_string_ext(g, JSON_C_TO_STRING_PLAIN),
                 json_object_to_json_string_ext(w, JSON_C_TO_STRING_PLAIN));
    json_object_put(g);
    json_object_put(w);
}

/* Compare a JSON value with a golden file (canonically); consumes actual. */
TC_UNUSED static void assert_json_golden(json_object *actual, const char *golden)
{
    if (updating()) {
        const char *s = json_object_to_json_string_ext(actual, JSON_C_TO_STRING_PRETTY |
                                                                   JSON_C_TO_STRING_SPACED |
                                                                   JSON_C_TO_STRING_NOSLASHESCAPE);
        char *t = malloc(strlen(s) + 2);
        sprintf(t, "%s\n", s);
        write_golden(golden, t);
        free(t);
    }
    size_t n;
    char *g = slurp(golden, &n);
    json_object *want = parse(g, n);
    if (!json_object_equal(actual, want)) {
        print_error("golden %s differs.\nactual: %s\n", golden,
                    json_object_to_json_string_ext(actual, JSON_C_TO_STRING_PRETTY));
        free(g);
        json_object_put(want);
        json_object_put(actual);
        fail();
    }
    free(g);
    json_object_put(want);
    json_object_put(actual);
}

TC_UNUSED static void add(json_object *o, const char *k, json_object *v)
{
    json_object_object_add(o, k, v);
}

TC_UNUSED static json_object *jstr(const struct bb_ir_str *s)
{
    return json_object_new_string_len(s->p, (int)s->len);
}

/* 0.99 rendered "0.99" in goldens, not 0.98999999999999999; 1 as "1.0" so that it parses
 * back as a double */
TC_UNUSED static json_object *jdouble(double d)
{
    char b[40];
    snprintf(b, sizeof b, "%.15g", d);
    if (!strpbrk(b, ".eEn"))
        strcat(b, ".0");
    return json_object_new_double_s(d, b);
}

TC_UNUSED static json_object *get(json_object *o, const char *k)
{
    json_object *v = NULL;
    json_object_object_get_ex(o, k, &v);
    return v;
}

TC_UNUSED static struct bb_ir_str dupj(struct bb_arena *a, json_object *v)
{
    if (!v)
        return (struct bb_ir_str){NULL, 0};
    if (json_object_is_type(v, json_type_string))
        return bb_ir_strdup(a, json_object_get_string(v), (size_t)json_object_get_string_len(v));
    const char *s = json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN);
    return bb_ir_strdup(a, s, strlen(s));
}

/* ---------------------------------------------------------------------------------------- */
/* IR <-> JSON (the test's rendering of the IR; not a wire format)                          */
/* ---------------------------------------------------------------------------------------- */

static const char *const block_names[] = {
    "text", "thinking", "redacted_thinking", "tool_use", "tool_result", "image", "document"};
static const char *const delta_names[] = {"text",       "thinking", "signature",
                                          "input_json", "redacted", "citation"};
static const char *const event_names[] = {"message_start", "block_start",   "block_delta",
                                          "block_stop",    "message_delta", "message_stop",
                                          "error",         "ping"};
static const char *const effort_names[] = {"unset", "minimal", "low", "medium", "high"};
static const char *const format_names[] = {"unset", "text", "json_object", "json_schema"};
static const char *const choice_names[] = {"unset", "auto", "none", "any", "tool"};

TC_UNUSED static int name_index(const char *const *names, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], s) == 0)
            return (int)i;
    fail_msg("unknown name %s", s);
    return -1;
}
#define NAME_INDEX(names, s) name_index(names, sizeof names / sizeof names[0], s)

TC_UNUSED static enum bb_ir_stop stop_index(const char *s)
{
    for (int i = 0; i <= BB_IR_STOP_ERROR; i++)
        if (strcmp(bb_ir_stop_name((enum bb_ir_stop)i), s) == 0)
            return (enum bb_ir_stop)i;
    fail_msg("unknown stop %s", s);
    return BB_IR_STOP_UNSET;
}

/* A raw-JSON field rendered as its parsed value, or as text when it does not parse. */
TC_UNUSED static void add_raw(json_object *o, const char *k, const char *k_text,
                              const struct bb_ir_str *s)
{
    if (!s->p)
        return;
    json_tokener *tok = json_tokener_new_ex(128);
    json_object *v = json_tokener_parse_ex(tok, s->p, (int)s->len);
    bool ok = json_tokener_get_error(tok) == json_tokener_success && v;
    json_tokener_free(tok);
    if (ok)
        add(o, k, v);
    else
        add(o, k_text, jstr(s));
}

TC_UNUSED static json_object *dump_usage(const struct bb_ir_usage *u)
{
    if (!u->set)
        return NULL;
    json_object *o = json_object_new_object();
    add(o, "input", json_object_new_int64((int64_t)u->input));
    add(o, "output", json_object_new_int64((int64_t)u->output));
    add(o, "cache_read", json_object_new_int64((int64_t)u->cache_read));
    add(o, "cache_write", json_object_new_int64((int64_t)u->cache_write));
    add(o, "reasoning", json_object_new_int64((int64_t)u->reasoning));
    return o;
}

TC_UNUSED static json_object *dump_blocks(const struct bb_ir_block *v, size_t n);

TC_UNUSED static json_object *dump_block(const struct bb_ir_block *b)
{
    json_object *o = json_object_new_object();
    add(o, "type", json_object_new_string(block_names[b->type]));
    if (b->text.p)
        add(o, "text", jstr(&b->text));
    if (b->signature.p)
        add(o, "signature", jstr(&b->signature));
    if (b->id.p)
        add(o, "id", jstr(&b->id));
    if (b->name.p)
        add(o, "name", jstr(&b->name));
    add_raw(o, "input", "input_text", &b->input_json);
    if (b->is_error)
        add(o, "is_error", json_object_new_boolean(1));
    if (b->n_content)
        add(o, "content", dump_blocks(b->content, b->n_content));
    if (b->media_type.p)
        add(o, "media_type", jstr(&b->media_type));
    if (b->data.p)
        add(o, "data", jstr(&b->data));
    if (b->url.p)
        add(o, "url", jstr(&b->url));
    add_raw(o, "citations", "citations_text", &b->citations_json);
    if (b->cache_control)
        add(o, "cache_control", json_object_new_boolean(1));
    return o;
}

TC_UNUSED static json_object *dump_blocks(const struct bb_ir_block *v, size_t n)
{
    json_object *a = json_object_new_array();
    for (size_t i = 0; i < n; i++)
        json_object_array_add(a, dump_block(&v[i]));
    return a;
}

TC_UNUSED static json_object *dump_request(const struct bb_ir_request *r)
{
    json_object *o = json_object_new_object();
    if (r->model.p)
        add(o, "model", jstr(&r->model));
    add(o, "system", dump_blocks(r->system, r->n_system));
    json_object *msgs = json_object_new_array();
    for (size_t i = 0; i < r->n_messages; i++) {
        json_object *m = json_object_new_object();
        add(m, "role",
            json_object_new_string(r->messages[i].role == BB_IR_USER ? "user" : "assistant"));
        if (r->messages[i].name.p)
            add(m, "name", jstr(&r->messages[i].name));
        add(m, "blocks", dump_blocks(r->messages[i].blocks, r->messages[i].n_blocks));
        json_object_array_add(msgs, m);
    }
    add(o, "messages", msgs);
    json_object *tools = json_object_new_array();
    for (size_t i = 0; i < r->n_tools; i++) {
        json_object *t = json_object_new_object();
        add(t, "name", jstr(&r->tools[i].name));
        if (r->tools[i].description.p)
            add(t, "description", jstr(&r->tools[i].description));
        add_raw(t, "parameters", "parameters_text", &r->tools[i].parameters_json);
        if (r->tools[i].strict)
            add(t, "strict", json_object_new_boolean(1));
        json_object_array_add(tools, t);
    }
    add(o, "tools", tools);
    add(o, "tool_choice", json_object_new_string(choice_names[r->tool_choice]));
    if (r->tool_choice_name.p)
        add(o, "tool_choice_name", jstr(&r->tool_choice_name));
    if (r->has_parallel_tool_calls)
        add(o, "parallel_tool_calls", json_object_new_boolean(r->parallel_tool_calls));
    add(o, "stream", json_object_new_boolean(r->stream));
    if (r->include_usage)
        add(o, "include_usage", json_object_new_boolean(1));
    if (r->has_max_tokens)
        add(o, "max_tokens", json_object_new_int64(r->max_tokens));
    if (r->has_temperature)
        add(o, "temperature", jdouble(r->temperature));
    if (r->has_top_p)
        add(o, "top_p", jdouble(r->top_p));
    if (r->has_top_k)
        add(o, "top_k", json_object_new_int64(r->top_k));
    if (r->has_seed)
        add(o, "seed", json_object_new_int64(r->seed));
    if (r->has_presence_penalty)
        add(o, "presence_penalty", jdouble(r->presence_penalty));
    if (r->has_frequency_penalty)
        add(o, "frequency_penalty", jdouble(r->frequency_penalty));
    if (r->n_stop) {
        json_object *s = json_object_new_array();
        for (size_t i = 0; i < r->n_stop; i++)
            json_object_array_add(s, jstr(&r->stop[i]));
        add(o, "stop", s);
    }
    if (r->n_choices)
        add(o, "n", json_object_new_int64(r->n_choices));
    add(o, "format", json_object_new_string(format_names[r->format]));
    if (r->format_name.p)
        add(o, "format_name", jstr(&r->format_name));
    add_raw(o, "format_schema", "format_schema_text", &r->format_schema_json);
    if (r->format_strict)
        add(o, "format_strict", json_object_new_boolean(1));
    add(o, "reasoning", json_object_new_boolean(r->reasoning));
    if (r->reasoning_budget)
        add(o, "reasoning_budget", json_object_new_int64(r->reasoning_budget));
    add(o, "reasoning_effort", json_object_new_string(effort_names[r->reasoning_effort]));
    if (r->user.p)
        add(o, "user", jstr(&r->user));
    json_object *u = json_object_new_array();
    for (size_t i = 0; i < r->n_unsupported; i++)
        json_object_array_add(u, json_object_new_string(r->unsupported[i]));
    add(o, "unsupported", u);
    if (r->n_extras) {
        json_object *x = json_object_new_object();
        for (size_t i = 0; i < r->n_extras; i++)
            add(x, r->extras[i].dotted, json_tokener_parse(r->extras[i].json.p));
        add(o, "extras", x);
    }
    return o;
}

TC_UNUSED static json_object *dump_response(const struct bb_ir_response *r)
{
    json_object *o = json_object_new_object();
    if (r->id.p)
        add(o, "id", jstr(&r->id));
    if (r->model.p)
        add(o, "model", jstr(&r->model));
    add(o, "blocks", dump_blocks(r->blocks, r->n_blocks));
    add(o, "stop", json_object_new_string(bb_ir_stop_name(r->stop)));
    if (r->stop_sequence.p)
        add(o, "stop_sequence", jstr(&r->stop_sequence));
    json_object *u = dump_usage(&r->usage);
    if (u)
        add(o, "usage", u);
    return o;
}

TC_UNUSED static json_object *dump_event(const struct bb_ir_event *ev)
{
    json_object *o = json_object_new_object();
    add(o, "ev", json_object_new_string(event_names[ev->type]));
    switch (ev->type) {
    case BB_IR_EV_BLOCK_START:
    case BB_IR_EV_BLOCK_STOP:
        add(o, "index", json_object_new_int64(ev->index));
        add(o, "block", json_object_new_string(block_names[ev->block_type]));
        break;
    case BB_IR_EV_BLOCK_DELTA:
        add(o, "index", json_object_new_int64(ev->index));
        add(o, "delta", json_object_new_string(delta_names[ev->delta]));
        break;
    case BB_IR_EV_MESSAGE_DELTA:
        add(o, "stop", json_object_new_string(bb_ir_stop_name(ev->stop)));
        break;
    case BB_IR_EV_ERROR:
        if (ev->error_type.p)
            add(o, "error_type", jstr(&ev->error_type));
        add(o, "error_status", json_object_new_int64(ev->error_status));
        break;
    default:
        break;
    }
    if (ev->text.p)
        add(o, "text", jstr(&ev->text));
    if (ev->id.p)
        add(o, "id", jstr(&ev->id));
    if (ev->name.p)
        add(o, "name", jstr(&ev->name));
    if (ev->model.p)
        add(o, "model", jstr(&ev->model));
    if (ev->stop_sequence.p)
        add(o, "stop_sequence", jstr(&ev->stop_sequence));
    json_object *u = dump_usage(&ev->usage);
    if (u)
        add(o, "usage", u);
    return o;
}

TC_UNUSED static void load_usage(json_object *o, struct bb_ir_usage *u)
{
    if (!o)
        return;
    u->set = true;
    u->input = (uint64_t)json_object_get_int64(get(o, "input"));
    u->output = (uint64_t)json_object_get_int64(get(o, "output"));
    u->cache_read = (uint64_t)json_object_get_int64(get(o, "cache_read"));
    u->cache_write = (uint64_t)json_object_get_int64(get(o, "cache_write"));
    u->reasoning = (uint64_t)json_object_get_int64(get(o, "reasoning"));
}

TC_UNUSED static void load_blocks(struct bb_arena *a, json_object *arr, struct bb_ir_block **v,
                                  size_t *n);

TC_UNUSED static void load_block(struct bb_arena *a, json_object *o, struct bb_ir_block *b)
{
    memset(b, 0, sizeof *b);
    b->type =
        (enum bb_ir_block_type)NAME_INDEX(block_names, json_object_get_string(get(o, "type")));
    b->text = dupj(a, get(o, "text"));
    b->signature = dupj(a, get(o, "signature"));
    b->id = dupj(a, get(o, "id"));
    b->name = dupj(a, get(o, "name"));
    b->input_json = dupj(a, get(o, "input") ? get(o, "input") : get(o, "input_text"));
    b->is_error = json_object_get_boolean(get(o, "is_error"));
    if (get(o, "content"))
        load_blocks(a, get(o, "content"), &b->content, &b->n_content);
    b->media_type = dupj(a, get(o, "media_type"));
    b->data = dupj(a, get(o, "data"));
    b->url = dupj(a, get(o, "url"));
    b->citations_json = dupj(a, get(o, "citations"));
    b->cache_control = json_object_get_boolean(get(o, "cache_control"));
}

TC_UNUSED static void load_blocks(struct bb_arena *a, json_object *arr, struct bb_ir_block **v,
                                  size_t *n)
{
    *n = arr ? json_object_array_length(arr) : 0;
    *v = bb_arena_calloc(a, (*n + 1) * sizeof **v);
    for (size_t i = 0; i < *n; i++)
        load_block(a, json_object_array_get_idx(arr, i), &(*v)[i]);
}

/* The inverse of dump_request, for egress fixtures written as IR. */
TC_UNUSED static void load_request(struct bb_arena *a, json_object *o, struct bb_ir_request *r)
{
    json_object *v;
    memset(r, 0, sizeof *r);
    r->model = dupj(a, get(o, "model"));
    load_blocks(a, get(o, "system"), &r->system, &r->n_system);
    json_object *msgs = get(o, "messages");
    r->n_messages = msgs ? json_object_array_length(msgs) : 0;
    r->messages = bb_arena_calloc(a, (r->n_messages + 1) * sizeof *r->messages);
    for (size_t i = 0; i < r->n_messages; i++) {
        json_object *m = json_object_array_get_idx(msgs, i);
        r->messages[i].role = strcmp(json_object_get_string(get(m, "role")), "user") == 0
                                  ? BB_IR_USER
                                  : BB_IR_ASSISTANT;
        r->messages[i].name = dupj(a, get(m, "name"));
        load_blocks(a, get(m, "blocks"), &r->messages[i].blocks, &r->messages[i].n_blocks);
    }
    json_object *tools = get(o, "tools");
    r->n_tools = tools ? json_object_array_length(tools) : 0;
    r->tools = bb_arena_calloc(a, (r->n_tools + 1) * sizeof *r->tools);
    for (size_t i = 0; i < r->n_tools; i++) {
        json_object *t = json_object_array_get_idx(tools, i);
        r->tools[i].name = dupj(a, get(t, "name"));
        r->tools[i].description = dupj(a, get(t, "description"));
        r->tools[i].parameters_json = dupj(a, get(t, "parameters"));
        r->tools[i].strict = json_object_get_boolean(get(t, "strict"));
    }
    if ((v = get(o, "tool_choice")))
        r->tool_choice =
            (enum bb_ir_tool_choice)NAME_INDEX(choice_names, json_object_get_string(v));
    r->tool_choice_name = dupj(a, get(o, "tool_choice_name"));
    if ((v = get(o, "parallel_tool_calls"))) {
        r->has_parallel_tool_calls = true;
        r->parallel_tool_calls = json_object_get_boolean(v);
    }
    r->stream = json_object_get_boolean(get(o, "stream"));
    if ((v = get(o, "max_tokens"))) {
        r->has_max_tokens = true;
        r->max_tokens = (uint32_t)json_object_get_int64(v);
    }
#define LOAD_NUM(key, field)                                                                       \
    if ((v = get(o, key))) {                                                                       \
        r->has_##field = true;                                                                     \
        r->field = json_object_get_double(v);                                                      \
    }
    LOAD_NUM("temperature", temperature)
    LOAD_NUM("top_p", top_p)
    LOAD_NUM("presence_penalty", presence_penalty)
    LOAD_NUM("frequency_penalty", frequency_penalty)
#undef LOAD_NUM
    if ((v = get(o, "top_k"))) {
        r->has_top_k = true;
        r->top_k = (uint32_t)json_object_get_int64(v);
    }
    if ((v = get(o, "seed"))) {
        r->has_seed = true;
        r->seed = json_object_get_int64(v);
    }
    json_object *stop = get(o, "stop");
    r->n_stop = stop ? json_object_array_length(stop) : 0;
    r->stop = bb_arena_calloc(a, (r->n_stop + 1) * sizeof *r->stop);
    for (size_t i = 0; i < r->n_stop; i++)
        r->stop[i] = dupj(a, json_object_array_get_idx(stop, i));
    r->n_choices = (uint32_t)json_object_get_int64(get(o, "n"));
    if ((v = get(o, "format")))
        r->format = (enum bb_ir_format)NAME_INDEX(format_names, json_object_get_string(v));
    r->format_name = dupj(a, get(o, "format_name"));
    r->format_schema_json = dupj(a, get(o, "format_schema"));
    r->format_strict = json_object_get_boolean(get(o, "format_strict"));
    r->reasoning = json_object_get_boolean(get(o, "reasoning"));
    r->reasoning_budget = (uint32_t)json_object_get_int64(get(o, "reasoning_budget"));
    if ((v = get(o, "reasoning_effort")))
        r->reasoning_effort =
            (enum bb_ir_effort)NAME_INDEX(effort_names, json_object_get_string(v));
    r->user = dupj(a, get(o, "user"));
}

TC_UNUSED static void load_response(struct bb_arena *a, json_object *o, struct bb_ir_response *r)
{
    memset(r, 0, sizeof *r);
    r->id = dupj(a, get(o, "id"));
    r->model = dupj(a, get(o, "model"));
    load_blocks(a, get(o, "blocks"), &r->blocks, &r->n_blocks);
    if (get(o, "stop"))
        r->stop = stop_index(json_object_get_string(get(o, "stop")));
    r->stop_sequence = dupj(a, get(o, "stop_sequence"));
    load_usage(get(o, "usage"), &r->usage);
}

TC_UNUSED static void load_event(struct bb_arena *a, json_object *o, struct bb_ir_event *ev)
{
    json_object *v;
    memset(ev, 0, sizeof *ev);
    ev->type = (enum bb_ir_event_type)NAME_INDEX(event_names, json_object_get_string(get(o, "ev")));
    ev->index = (uint32_t)json_object_get_int64(get(o, "index"));
    if ((v = get(o, "block")))
        ev->block_type = (enum bb_ir_block_type)NAME_INDEX(block_names, json_object_get_string(v));
    if ((v = get(o, "delta")))
        ev->delta = (enum bb_ir_delta)NAME_INDEX(delta_names, json_object_get_string(v));
    if ((v = get(o, "stop")))
        ev->stop = stop_index(json_object_get_string(v));
    ev->text = dupj(a, get(o, "text"));
    ev->id = dupj(a, get(o, "id"));
    ev->name = dupj(a, get(o, "name"));
    ev->model = dupj(a, get(o, "model"));
    ev->stop_sequence = dupj(a, get(o, "stop_sequence"));
    ev->error_type = dupj(a, get(o, "error_type"));
    ev->error_status = (int)json_object_get_int64(get(o, "error_status"));
    load_usage(get(o, "usage"), &ev->usage);
}

/* ---------------------------------------------------------------------------------------- */
/* more goldens: exact text, JSON text, SSE transcripts                                     */
/* ---------------------------------------------------------------------------------------- */

/* data[0..n) into the file at path (any path). */
TC_UNUSED static void write_file(const char *path, const char *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

TC_UNUSED static void write_golden_n(const char *name, const char *data, size_t n)
{
    char path[512];
    snprintf(path, sizeof path, FIX "%s", name);
    write_file(path, data, n);
}

/* A malloc'd NUL-terminated copy of an evbuffer (length in *len when not NULL). */
TC_UNUSED static char *buf_str(struct evbuffer *b, size_t *len)
{
    size_t n = evbuffer_get_length(b);
    char *s = malloc(n + 1);
    assert_non_null(s);
    evbuffer_copyout(b, s, n);
    s[n] = '\0';
    if (len)
        *len = n;
    return s;
}

/* actual[0..n) byte for byte equal to the golden file. */
TC_UNUSED static void assert_text_golden(const char *actual, size_t n, const char *golden)
{
    if (updating())
        write_golden_n(golden, actual, n);
    size_t gl;
    char *g = slurp(golden, &gl);
    if (gl != n || memcmp(g, actual, n) != 0)
        fail_msg("golden %s differs:\nactual:\n%.*s\ngolden:\n%s", golden, (int)n, actual, g);
    free(g);
}

/* A JSON text equal to the golden file's, compared as parsed values. */
TC_UNUSED static void assert_json_text_golden(const char *actual, size_t n, const char *golden)
{
    assert_json_golden(parse(actual, n), golden);
}

#define TC_MAXFRAMES 512

struct tc_frames {
    bool strict; /* each frame exactly "[event: X\n]data: ...\n\n" (an encoder's output) */
    int n;
    char *data[TC_MAXFRAMES];
    size_t len[TC_MAXFRAMES];
    char event[TC_MAXFRAMES][64];
};

TC_UNUSED static int tc_collect_frame(void *arg, const struct bb_sse_event *ev)
{
    struct tc_frames *f = arg;
    assert_true(f->n < TC_MAXFRAMES);
    if (f->strict) {
        char want[96];
        int n = ev->event_len ? snprintf(want, sizeof want,
                                         "event: %.*s\ndata: ", (int)ev->event_len, ev->event)
                              : snprintf(want, sizeof want, "data: ");
        assert_true(ev->raw_len > (size_t)n + 2);
        assert_memory_equal(ev->raw, want, (size_t)n);
        assert_memory_equal(ev->raw + ev->raw_len - 2, "\n\n", 2);
    }
    assert_true(ev->event_len < sizeof f->event[0]);
    memcpy(f->event[f->n], ev->event, ev->event_len);
    f->event[f->n][ev->event_len] = '\0';
    f->data[f->n] = malloc(ev->data_len + 1);
    memcpy(f->data[f->n], ev->data, ev->data_len);
    f->data[f->n][ev->data_len] = '\0';
    f->len[f->n++] = ev->data_len;
    return 0;
}

/* Split an SSE transcript into its frames (the whole text must be complete frames; strict:
 * each in the exact shape an encoder writes). */
TC_UNUSED static void frames_parse_ex(struct tc_frames *f, const char *s, size_t n, bool strict)
{
    struct bb_sse sse;
    memset(f, 0, sizeof *f);
    f->strict = strict;
    bb_sse_init(&sse, 64u << 20);
    assert_int_equal(bb_sse_feed(&sse, s, n, tc_collect_frame, f), 0);
    assert_int_equal(bb_sse_pending(&sse), 0);
    bb_sse_free(&sse);
}

TC_UNUSED static void frames_parse(struct tc_frames *f, const char *s, size_t n)
{
    frames_parse_ex(f, s, n, false);
}

TC_UNUSED static void frames_free(struct tc_frames *f)
{
    for (int i = 0; i < f->n; i++)
        free(f->data[i]);
}

/* Two SSE transcripts carry the same frames: the same event names, equal JSON data (non-JSON
 * data such as "[DONE]" byte for byte). */
TC_UNUSED static void assert_sse_golden(const char *actual, size_t n, const char *golden)
{
    if (updating())
        write_golden_n(golden, actual, n);
    size_t gl;
    char *g = slurp(golden, &gl);
    struct tc_frames a, b;
    frames_parse_ex(&a, actual, n, true);
    frames_parse(&b, g, gl);
    if (a.n != b.n)
        fail_msg("%s: %d frames, golden has %d:\n%.*s", golden, a.n, b.n, (int)n, actual);
    for (int i = 0; i < a.n; i++) {
        assert_string_equal(a.event[i], b.event[i]);
        json_object *probe = json_tokener_parse(b.data[i]);
        if (!probe) { /* not JSON ("[DONE]"): byte for byte */
            assert_string_equal(a.data[i], b.data[i]);
            continue;
        }
        json_object_put(probe);
        json_object *x = parse(a.data[i], a.len[i]), *y = parse(b.data[i], b.len[i]);
        json_object *type = NULL; /* typed SSE: the data's own type is the event's name */
        if (a.event[i][0] && json_object_object_get_ex(x, "type", &type) &&
            json_object_is_type(type, json_type_string))
            assert_string_equal(json_object_get_string(type), a.event[i]);
        if (!json_object_equal(x, y))
            fail_msg("%s frame %d:\nactual: %s\ngolden: %s", golden, i, a.data[i], b.data[i]);
        json_object_put(x);
        json_object_put(y);
    }
    frames_free(&a);
    frames_free(&b);
    free(g);
}

/* ---------------------------------------------------------------------------------------- */
/* IR assertions                                                                            */
/* ---------------------------------------------------------------------------------------- */

TC_UNUSED static struct bb_ir_str S(const char *s) {
    return (struct bb_ir_str){(char *)s, s ? strlen(s) : 0};
}

TC_UNUSED static bool
str_is(const struct bb_ir_str *s, const char *want)
{
    if (!want)
        return !s->p;
    return s->p && s->len == strlen(want) && memcmp(s->p, want, s->len) == 0;
}

#define assert_str(s, want)                                                                        \
    do {                                                                                           \
        if (!str_is((s), (want)))                                                                  \
            fail_msg("%s is \"%.*s\", want \"%s\"", #s, (s)->p ? (int)(s)->len : 6,                \
                     (s)->p ? (s)->p : "(null)", (want) ? (want) : "(null)");                      \
    } while (0)

TC_UNUSED static bool has_extra(const struct bb_ir_request *r, const char *dotted)
{
    for (size_t i = 0; i < r->n_extras; i++)
        if (strcmp(r->extras[i].dotted, dotted) == 0)
            return true;
    return false;
}

TC_UNUSED static bool has_unsupported(const struct bb_ir_request *r, const char *f)
{
    for (size_t i = 0; i < r->n_unsupported; i++)
        if (strcmp(r->unsupported[i], f) == 0)
            return true;
    return false;
}

/* ---------------------------------------------------------------------------------------- */
/* the dropped-field list of the egress context (.dropped = &test_drops)                    */
/* ---------------------------------------------------------------------------------------- */

/* Its array is the test's own (capacity enough for any writer), so the list outlives the
 * arena a test frees right after write_request. */
static const char *test_drop_names[256];
static struct bb_dropped test_drops = {test_drop_names, 0, 256};

TC_UNUSED static void drops_reset(void)
{
    test_drops.n = 0;
}

/* The list comma-separated, NULL when nothing was dropped. */
TC_UNUSED static const char *drops_text(void)
{
    static char text[2048];
    return bb_proto_dropped_text(&test_drops, text, sizeof text) ? text : NULL;
}

TC_UNUSED static bool dropped_has(const char *f)
{
    for (size_t i = 0; i < test_drops.n; i++)
        if (strcmp(test_drops.names[i], f) == 0)
            return true;
    return false;
}

/* The dropped list holds exactly the names in want, in any order (the order of drops is not
 * part of the contract). */
TC_UNUSED static void assert_dropped(const char *const *want, size_t n)
{
    bool same = test_drops.n == n;
    for (size_t i = 0; same && i < n; i++)
        same = dropped_has(want[i]);
    if (!same) {
        const char *d = drops_text();
        fail_msg("dropped: got \"%s\"", d ? d : "");
    }
}

#endif
