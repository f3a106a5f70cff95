/*
 * test_agents: every request the real coding agents sent (tests/fixtures/agents/, recorded by
 * tests/agents/tap.py: Claude Code in Anthropic and Bedrock mode, Codex on its default model
 * and gpt-5.5, Gemini CLI; a hello, a tool round trip, a failing tool round trip) read by its
 * ingress module and written for every egress protocol. Asserted on each hop:
 * - every tool the agent declared reaches the provider (by name), the provider-run web search
 *   too where the target has one; no tool list is named dropped;
 * - cache markers survive where the target has them (Anthropic cache_control, Bedrock
 *   cachePoint) and are named dropped elsewhere;
 * - a tool result that is an error keeps saying so (Anthropic is_error, Bedrock status
 *   "error", Gemini's error response, "Error: " text elsewhere).
 * A summary line per hop (tools, cache markers, error form, dropped fields) is compared with
 * ../fixtures/agents/translate.txt (BB_UPDATE_GOLDEN=1 rewrites it).
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#define FIX "../fixtures/agents/"
#include "proto_test_common.h"
#include "worker/json.h"

/* The module whose route path is, and the model it names (decoded enough for a pool name). */
static const struct bb_proto_ops *route_of(const char *path, char *model, size_t cap)
{
    char p[512];
    const char *q = strchr(path, '?');
    size_t n = q ? (size_t)(q - path) : strlen(path);
    snprintf(p, sizeof p, "%.*s", (int)n, path);
    model[0] = '\0';
    for (int i = 0; i < BB_PROTO__COUNT; i++) {
        const struct bb_proto_ops *o = bb_proto_get((enum bb_proto)i);
        struct bb_proto_route r = {.stream = -1};
        if (o->route && strcmp(o->route, p) == 0)
            return o;
        if (o->match_route && o->match_route(p, strlen(p), q ? q + 1 : NULL, &r) == 1) {
            snprintf(model, cap, "%.*s", (int)r.model_len, r.model);
            return o;
        }
    }
    return NULL;
}

/* The tool names an egress body declares, in its protocol's place. */
static void tool_names(enum bb_proto p, json_object *body, json_object *out)
{
    json_object *tools = get(body, "tools");
    if (p == BB_PROTO_BEDROCK)
        tools = get(get(body, "toolConfig"), "tools");
    size_t n = bb_json_is(tools, json_type_array) ? json_object_array_length(tools) : 0;
    for (size_t i = 0; i < n; i++) {
        json_object *t = json_object_array_get_idx(tools, i), *name = NULL;
        if (p == BB_PROTO_OPENAI || p == BB_PROTO_COHERE)
            name = get(get(t, "function"), "name");
        else if (p == BB_PROTO_BEDROCK)
            name = get(get(t, "toolSpec"), "name");
        else if (p == BB_PROTO_GEMINI) {
            json_object *d = get(t, "functionDeclarations");
            for (size_t k = 0; d && k < json_object_array_length(d); k++)
                json_object_array_add(
                    out, json_object_get(get(json_object_array_get_idx(d, k), "name")));
            if (get(t, "googleSearch"))
                json_object_array_add(out, json_object_new_string("(web_search)"));
            continue;
        } else
            name = get(t, "name");
        const char *ty = bb_json_get_str(t, "type");
        if (ty && strncmp(ty, "web_search", 10) == 0) /* Responses', Anthropic's */
            name = json_object_new_string("(web_search)");
        else if (name)
            json_object_get(name);
        if (name)
            json_object_array_add(out, name);
    }
}

/* Occurrences of needle in s. */
static int count(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

/* What the IR of a request holds that must survive. */
struct want {
    size_t cache;      /* blocks and tools marked cache_control */
    bool error_result; /* a tool result that is an error */
    const char *error_text;
};

static void scan_ir(const struct bb_ir_request *ir, struct want *w)
{
    memset(w, 0, sizeof *w);
    for (size_t i = 0; i < ir->n_system; i++)
        w->cache += ir->system[i].cache_control;
    for (size_t i = 0; i < ir->n_tools; i++)
        w->cache += ir->tools[i].cache_control;
    for (size_t m = 0; m < ir->n_messages; m++)
        for (size_t b = 0; b < ir->messages[m].n_blocks; b++) {
            const struct bb_ir_block *x = &ir->messages[m].blocks[b];
            w->cache += x->cache_control;
            if (x->type == BB_IR_TOOL_RESULT && x->is_error) {
                w->error_result = true;
                w->error_text = x->text.p;
            }
        }
}

/* How an egress body says the tool result failed; NULL when it does not. */
static const char *error_form(enum bb_proto p, const char *body)
{
    switch (p) {
    case BB_PROTO_ANTHROPIC:
    case BB_PROTO_BEDROCK_INVOKE:
        return strstr(body, "\"is_error\":true") ? "is_error" : NULL;
    case BB_PROTO_BEDROCK:
        return strstr(body, "\"status\":\"error\"") ? "status:error" : NULL;
    case BB_PROTO_GEMINI:
        return strstr(body, "\"response\":{\"error\"") ? "response.error" : NULL;
    default:
        return strstr(body, "\"Error: ") || strstr(body, "\"Error") ? "text" : NULL;
    }
}

static int cache_written(enum bb_proto p, const char *body)
{
    if (p == BB_PROTO_BEDROCK)
        return count(body, "\"cachePoint\"");
    return count(body, "\"cache_control\"");
}

static void one_hop(const char *name, size_t ex, const struct bb_proto_ops *in,
                    const struct bb_ir_request *ir, enum bb_proto y, struct evbuffer *summary)
{
    const struct bb_proto_ops *yo = bb_proto_get(y);
    struct bb_arena a;
    bb_arena_init(&a, 0);
    struct bb_provider pv = {.name = "p", .protocol = y};
    pv.url.host = "127.0.0.1";
    pv.url.path = "";
    /* a Claude model on Bedrock: Converse's caching and tool-result status are Claude's */
    struct bb_lane l = {.name = "l", .upstream_model = "anthropic.claude-agent-v1:0"};
    const char *drops[256];
    struct bb_dropped d = {drops, 0, 256};
    struct bb_egress_ctx ctx = {&pv, &l, ir->stream, 1700000000, &d};
    struct bb_egress_req er = {.headers = evbuffer_new(), .body = evbuffer_new()};
    struct bb_err err = {""};
    if (bb_proto_write_request(yo, &a, ir, &ctx, &er, &err) < 0)
        fail_msg("%s #%zu → %s: %s", name, ex, yo->name, err.msg);
    evbuffer_add(er.body, "", 1);
    const char *body = (const char *)evbuffer_pullup(er.body, -1);
    json_object *b = parse_str(body);
    char dropped[2048] = "";
    bb_proto_dropped_text(&d, dropped, sizeof dropped);

    /* tools: every declared one, by name */
    json_object *names = json_object_new_array();
    tool_names(y, b, names);
    size_t n_names = json_object_array_length(names);
    for (size_t i = 0; i < ir->n_tools; i++) {
        bool found = false;
        for (size_t k = 0; k < n_names && !found; k++)
            found = str_is(&ir->tools[i].name,
                           json_object_get_string(json_object_array_get_idx(names, k)));
        if (!found)
            fail_msg("%s #%zu → %s: tool %s missing", name, ex, yo->name, ir->tools[i].name.p);
    }
    bool web = false;
    for (size_t k = 0; k < n_names; k++)
        web = web || strcmp(json_object_get_string(json_object_array_get_idx(names, k)),
                            "(web_search)") == 0;
    bool web_target = y == BB_PROTO_ANTHROPIC || y == BB_PROTO_BEDROCK_INVOKE ||
                      y == BB_PROTO_GEMINI || y == BB_PROTO_RESPONSES;
    if (ir->n_hosted && web != web_target)
        fail_msg("%s #%zu → %s: web search %s", name, ex, yo->name, web ? "written" : "lost");
    if (ir->n_hosted && !web && !strstr(dropped, "tools.web_search"))
        fail_msg("%s #%zu → %s: web search not named dropped", name, ex, yo->name);
    if (strstr(dropped, "additional_tools") || strstr(dropped, "tools.namespace") ||
        strstr(dropped, "tools.custom") || strstr(dropped, "tools.function"))
        fail_msg("%s #%zu → %s: tools named dropped: %s", name, ex, yo->name, dropped);

    /* cache markers: written where the target has them, named dropped elsewhere */
    struct want w;
    scan_ir(ir, &w);
    int cw = cache_written(y, body);
    bool cache_target =
        y == BB_PROTO_ANTHROPIC || y == BB_PROTO_BEDROCK_INVOKE || y == BB_PROTO_BEDROCK;
    if (w.cache && cache_target && cw == 0)
        fail_msg("%s #%zu → %s: %zu cache markers lost", name, ex, yo->name, w.cache);
    if (w.cache && !cache_target && !strstr(dropped, "cache_control"))
        fail_msg("%s #%zu → %s: cache markers neither carried nor named", name, ex, yo->name);

    /* a system message among the turns stays there where the target allows it */
    size_t in_place = 0;
    for (size_t m = 0; m < ir->n_messages; m++)
        in_place += ir->messages[m].role == BB_IR_SYSTEM;
    int sys_msgs = y == BB_PROTO_OPENAI      ? count(body, "\"role\":\"system\"")
                   : y == BB_PROTO_RESPONSES ? count(body, "\"role\":\"developer\"")
                                             : -1;
    size_t need = in_place + (y == BB_PROTO_OPENAI && ir->n_system ? 1 : 0);
    if (in_place && sys_msgs >= 0 && (size_t)sys_msgs < need)
        fail_msg("%s #%zu → %s: %zu system messages not kept in place", name, ex, yo->name,
                 in_place);

    /* a failed tool result keeps saying so */
    const char *form = w.error_result ? error_form(y, body) : "-";
    if (!form)
        fail_msg("%s #%zu → %s: the tool result's error is lost", name, ex, yo->name);

    evbuffer_add_printf(summary,
                        "%s #%zu %s→%s: tools %zu/%zu%s, cache %zu→%d, error %s, system in "
                        "place %zu%s, dropped [%s]\n",
                        name, ex, in->name, yo->name, n_names, ir->n_tools,
                        ir->n_hosted ? (web ? " +web_search" : " -web_search") : "", w.cache, cw,
                        form, in_place, in_place && sys_msgs < 0 ? " (folded)" : "", dropped);
    json_object_put(names);
    json_object_put(b);
    evbuffer_free(er.headers);
    evbuffer_free(er.body);
    bb_arena_free(&a);
}

static int cmp(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

static void test_agents(void **state)
{
    (void)state;
    DIR *dir = opendir(FIX);
    assert_non_null(dir);
    char *files[64];
    size_t nf = 0;
    struct dirent *de;
    while ((de = readdir(dir)) && nf < 64)
        if (strstr(de->d_name, ".json") &&
            strcmp(de->d_name + strlen(de->d_name) - 5, ".json") == 0)
            files[nf++] = strdup(de->d_name);
    closedir(dir);
    qsort(files, nf, sizeof *files, cmp);
    assert_true(nf >= 15); /* 5 agents x hello, tool, toolerr */
    struct evbuffer *summary = evbuffer_new();
    size_t hops = 0, with_tools = 0;
    for (size_t f = 0; f < nf; f++) {
        char *text = slurp(files[f], NULL);
        json_object *doc = parse_str(text);
        json_object *exs = get(doc, "exchanges");
        for (size_t e = 0; e < json_object_array_length(exs); e++) {
            json_object *x = json_object_array_get_idx(exs, e);
            json_object *req = get(x, "req_body");
            if (!bb_json_str_eq(get(x, "method"), "POST") || !bb_json_is(req, json_type_object))
                continue;
            char model[256];
            const struct bb_proto_ops *in =
                route_of(json_object_get_string(get(x, "path")), model, sizeof model);
            if (!in)
                fail_msg("%s #%zu: no module serves %s", files[f], e,
                         json_object_get_string(get(x, "path")));
            const char *js = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
            struct bb_arena a;
            bb_arena_init(&a, 0);
            struct bb_ir_request ir;
            struct bb_err err = {""};
            if (in->read_request(&a, js, strlen(js), model[0] ? model : NULL, &ir, &err) < 0)
                fail_msg("%s #%zu: %s cannot read it: %s", files[f], e, in->name, err.msg);
            bb_ir_ids_unwrap(&ir, in->tool_id_prefix);
            /* the agents' tool requests all declare tools (Codex's default model in an
             * additional_tools item, in namespaces) */
            if (strstr(files[f], "-tool") && !ir.n_tools)
                fail_msg("%s #%zu: no tools read", files[f], e);
            with_tools += ir.n_tools > 0;
            for (int y = 0; y < BB_PROTO__COUNT; y++) {
                one_hop(files[f], e, in, &ir, (enum bb_proto)y, summary);
                hops++;
            }
            evbuffer_add_printf(summary, "%s #%zu unsupported:", files[f], e);
            for (size_t k = 0; k < ir.n_unsupported; k++)
                evbuffer_add_printf(summary, " %s", ir.unsupported[k]);
            evbuffer_add(summary, "\n", 1);
            bb_arena_free(&a);
        }
        json_object_put(doc);
        free(text);
        free(files[f]);
    }
    assert_true(hops >= 20 * BB_PROTO__COUNT);
    assert_true(with_tools >= 20);
    size_t n = evbuffer_get_length(summary);
    evbuffer_add(summary, "", 1);
    assert_text_golden((const char *)evbuffer_pullup(summary, -1), n, "translate.txt");
    evbuffer_free(summary);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_agents)};
    return cmocka_run_group_tests_name("agents", tests, NULL, NULL);
}
