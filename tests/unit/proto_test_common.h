/*
 * proto_test_common.h: fixture I/O, golden comparison and IR-to-JSON dumpers shared by the
 * protocol modules' unit tests. Included (not linked) after the including test defines FIX
 * (its fixture directory) and P (the module under test); everything here is static.
 */
#ifndef BB_PROTO_TEST_COMMON_H
#define BB_PROTO_TEST_COMMON_H

/* ---------------------------------------------------------------------------------------- */
/* files and JSON                                                                           */
/* ---------------------------------------------------------------------------------------- */

static char *slurp(const char *name, size_t *len)
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

static bool updating(void)
{
    const char *u = getenv("BB_UPDATE_GOLDEN");
    return u && *u == '1';
}

static void write_golden(const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, FIX "%s", name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static json_object *parse(const char *p, size_t n)
{
    json_tokener *tok = json_tokener_new_ex(128);
    json_object *o = json_tokener_parse_ex(tok, p, (int)n);
    enum json_tokener_error e = json_tokener_get_error(tok);
    json_tokener_free(tok);
    if (e != json_tokener_success)
        fail_msg("bad JSON in test data (%s): %.*s", json_tokener_error_desc(e), (int)n, p);
    return o;
}

/* Compare a JSON value with a golden file (canonically); consumes actual. */
static void assert_json_golden(json_object *actual, const char *golden)
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

static void add(json_object *o, const char *k, json_object *v)
{
    json_object_object_add(o, k, v);
}

static json_object *jstr(const struct bb_ir_str *s)
{
    return json_object_new_string_len(s->p, (int)s->len);
}

/* 0.99 rendered "0.99" in goldens, not 0.98999999999999999; 1 as "1.0" so that it parses
 * back as a double */
static json_object *jdouble(double d)
{
    char b[40];
    snprintf(b, sizeof b, "%.15g", d);
    if (!strpbrk(b, ".eEn"))
        strcat(b, ".0");
    return json_object_new_double_s(d, b);
}

static json_object *get(json_object *o, const char *k)
{
    json_object *v = NULL;
    json_object_object_get_ex(o, k, &v);
    return v;
}

static struct bb_ir_str dupj(struct bb_arena *a, json_object *v)
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

static int name_index(const char *const *names, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], s) == 0)
            return (int)i;
    fail_msg("unknown name %s", s);
    return -1;
}
#define NAME_INDEX(names, s) name_index(names, sizeof names / sizeof names[0], s)

static enum bb_ir_stop stop_index(const char *s)
{
    for (int i = 0; i <= BB_IR_STOP_ERROR; i++)
        if (strcmp(bb_ir_stop_name((enum bb_ir_stop)i), s) == 0)
            return (enum bb_ir_stop)i;
    fail_msg("unknown stop %s", s);
    return BB_IR_STOP_UNSET;
}

/* A raw-JSON field rendered as its parsed value, or as text when it does not parse. */
static void add_raw(json_object *o, const char *k, const char *k_text, const struct bb_ir_str *s)
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

static json_object *dump_usage(const struct bb_ir_usage *u)
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

static json_object *dump_blocks(const struct bb_ir_block *v, size_t n);

static json_object *dump_block(const struct bb_ir_block *b)
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

static json_object *dump_blocks(const struct bb_ir_block *v, size_t n)
{
    json_object *a = json_object_new_array();
    for (size_t i = 0; i < n; i++)
        json_object_array_add(a, dump_block(&v[i]));
    return a;
}

static json_object *dump_request(const struct bb_ir_request *r)
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
    return o;
}

static json_object *dump_response(const struct bb_ir_response *r)
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

#endif
