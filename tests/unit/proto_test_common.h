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


static json_object *dump_event(const struct bb_ir_event *ev)
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

static void load_usage(json_object *o, struct bb_ir_usage *u)
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

static void load_blocks(struct bb_arena *a, json_object *arr, struct bb_ir_block **v, size_t *n);

static void load_block(struct bb_arena *a, json_object *o, struct bb_ir_block *b)
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

static void load_blocks(struct bb_arena *a, json_object *arr, struct bb_ir_block **v, size_t *n)
{
    *n = arr ? json_object_array_length(arr) : 0;
    *v = bb_arena_calloc(a, (*n + 1) * sizeof **v);
    for (size_t i = 0; i < *n; i++)
        load_block(a, json_object_array_get_idx(arr, i), &(*v)[i]);
}

/* The inverse of dump_request, for egress fixtures written as IR. */
static void load_request(struct bb_arena *a, json_object *o, struct bb_ir_request *r)
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

static void load_response(struct bb_arena *a, json_object *o, struct bb_ir_response *r)
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

static void load_event(struct bb_arena *a, json_object *o, struct bb_ir_event *ev)
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

#endif
