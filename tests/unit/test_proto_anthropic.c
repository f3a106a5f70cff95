/*
 * test_proto_anthropic: the Anthropic Messages module (worker/proto_anthropic) against golden
 * fixtures in ../fixtures/proto/anthropic (the test runs with workdir tests/unit):
 *   ingress  client request JSON → IR (dumped as JSON, compared to a golden) + targeted
 *            asserts, and malformed inputs → the client-facing error text;
 *   egress   IR (a JSON rendering of struct bb_ir_request) → upstream body (golden), path,
 *            headers and the dropped-field list;
 *   response provider Message → IR → write_response → golden;
 *   streams  native SSE transcript, fed to the SSE framer one byte at a time → decoder → IR
 *            events (golden) → encoder → SSE (golden), frames compared event by event.
 * JSON is compared after canonicalising (json_object_equal), so key order does not matter.
 * BB_UPDATE_GOLDEN=1 rewrites the goldens from the actual output (review the diff!).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <json-c/json.h>

#include "common/arena.h"
#include "common/config.h"
#include "common/sse.h"
#include "worker/ir.h"
#include "worker/proto.h"

#define FIX "../fixtures/proto/anthropic/"

static const struct bb_proto_ops *P = &bb_proto_anthropic;

#include "proto_test_common.h"

/* ---------------------------------------------------------------------------------------- */
/* shared fixtures                                                                          */
/* ---------------------------------------------------------------------------------------- */

static struct bb_provider provider = {
    .name = "anthropic", .protocol = BB_PROTO_ANTHROPIC, .api_key = "sk-ant-test"};
static struct bb_lane lane = {.name = "claude",
                              .upstream_model = "claude-sonnet-4-5-20250929",
                              .default_max_tokens = 2048,
                              .reasoning = true};
static struct bb_ingress_ctx ictx = {
    .request_id = "req42", .model = "smart-pool", .created = 1750000000};

/* ---------------------------------------------------------------------------------------- */
/* ingress: requests                                                                        */
/* ---------------------------------------------------------------------------------------- */

static void test_read_request_full(void **state)
{
    (void)state;
    struct bb_arena a;
    bb_arena_init(&a, 0);
    size_t n;
    char *body = slurp("req_full.json", &n);
    struct bb_ir_request r;
    struct bb_err err = {{0}};
    assert_int_equal(P->read_request(&a, body, n, NULL, &r, &err), 0);

    /* targeted checks of the trickiest mappings, then the whole IR against the golden */
    assert_string_equal(r.model.p, "claude-sonnet-4-5");
    assert_int_equal(r.n_system, 3); /* two system blocks + one role:"system" turn */
    assert_true(r.system[0].cache_control);
    assert_int_equal(r.n_messages, 3);
    const struct bb_ir_message *asst = &r.messages[1];
    assert_int_equal(asst->role, BB_IR_ASSISTANT);
    assert_int_equal(asst->blocks[0].type, BB_IR_THINKING);
    assert_string_equal(asst->blocks[0].signature.p, "EqQBCkYIBxgCKkDsig==");
    assert_int_equal(asst->blocks[1].type, BB_IR_REDACTED_THINKING);
    assert_int_equal(asst->blocks[3].type, BB_IR_TOOL_USE);
    assert_int_equal(asst->blocks[4].type, BB_IR_TOOL_USE); /* parallel calls */
    assert_string_equal(asst->blocks[4].id.p, "toolu_01B");
    const struct bb_ir_message *res = &r.messages[2];
    assert_int_equal(res->blocks[0].type, BB_IR_TOOL_RESULT);
    assert_string_equal(res->blocks[0].id.p, "toolu_01A");
    assert_int_equal(res->blocks[1].n_content, 2);
    assert_string_equal(res->blocks[1].text.p, "Open\nQueue: 20 min");
    assert_true(res->blocks[1].is_error);
    assert_true(r.has_max_tokens && r.max_tokens == 2048);
    assert_true(r.has_temperature && r.temperature == 1.0);
    assert_true(r.has_top_p && r.top_p == 0.99);
    assert_true(r.has_top_k && r.top_k == 40);
    assert_true(r.reasoning && r.reasoning_budget == 4096);
    assert_int_equal(r.tool_choice, BB_IR_TC_AUTO);
    assert_true(r.has_parallel_tool_calls && r.parallel_tool_calls);
    assert_int_equal(r.format, BB_IR_FMT_JSON_SCHEMA);
    assert_true(r.stream);

    assert_json_golden(dump_request(&r), "req_full.ir.json");
    free(body);
    bb_arena_free(&a);
}

static int read_str(struct bb_arena *a, const char *body, const char *model,
                    struct bb_ir_request *r, struct bb_err *err)
{
    return P->read_request(a, body, strlen(body), model, r, err);
}

static void test_read_request_variants(void **state)
{
    (void)state;
    struct bb_arena a;
    bb_arena_init(&a, 0);
    struct bb_ir_request r;
    struct bb_err err = {{0}};

    /* /{pool}/v1/messages: the URL's model wins; string system and content; no max_tokens */
    assert_int_equal(read_str(&a,
                              "{\"model\":\"body-model\",\"system\":\"Be brief.\","
                              "\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}",
                              "fast-pool", &r, &err),
                     0);
    assert_string_equal(r.model.p, "fast-pool");
    assert_int_equal(r.n_system, 1);
    assert_string_equal(r.system[0].text.p, "Be brief.");
    assert_int_equal(r.messages[0].n_blocks, 1);
    assert_string_equal(r.messages[0].blocks[0].text.p, "Hi");
    assert_false(r.has_max_tokens);
    assert_false(r.stream);

    /* model only in the path */
    assert_int_equal(read_str(&a, "{\"messages\":[]}", "pool-x", &r, &err), 0);
    assert_string_equal(r.model.p, "pool-x");

    /* forced tool, no parallel calls, adaptive thinking with effort, unsupported blocks */
    assert_int_equal(
        read_str(&a,
                 "{\"model\":\"m\",\"max_tokens\":64,"
                 "\"tool_choice\":{\"type\":\"tool\",\"name\":\"lookup\","
                 "\"disable_parallel_tool_use\":true},"
                 "\"thinking\":{\"type\":\"adaptive\"},\"output_config\":{\"effort\":\"max\"},"
                 "\"messages\":[{\"role\":\"user\",\"content\":["
                 "{\"type\":\"search_result\",\"source\":\"s\",\"title\":\"t\",\"content\":[]},"
                 "{\"type\":\"image\",\"source\":{\"type\":\"file\",\"file_id\":\"file_1\"}},"
                 "{\"type\":\"document\",\"source\":{\"type\":\"content\",\"content\":\"abc\"}},"
                 "{\"type\":\"text\",\"text\":\"q\"}]}],"
                 "\"container\":\"c1\",\"cache_control\":{\"type\":\"ephemeral\"}}",
                 NULL, &r, &err),
        0);
    assert_int_equal(r.tool_choice, BB_IR_TC_TOOL);
    assert_string_equal(r.tool_choice_name.p, "lookup");
    assert_true(r.has_parallel_tool_calls && !r.parallel_tool_calls);
    assert_true(r.reasoning);
    assert_int_equal(r.reasoning_budget, 0);
    assert_int_equal(r.reasoning_effort, BB_IR_EFFORT_HIGH);
    assert_int_equal(r.messages[0].n_blocks, 2); /* content document + text */
    assert_int_equal(r.messages[0].blocks[0].type, BB_IR_DOCUMENT);
    assert_string_equal(r.messages[0].blocks[0].media_type.p, "text/plain");
    assert_string_equal(r.messages[0].blocks[0].data.p, "YWJj"); /* base64("abc") */
    /* members with no IR form: kept for a lane of the Messages body, not dropped here */
    assert_true(has_extra(&r, "container") && has_extra(&r, "cache_control"));
    const char *want[] = {"search_result", "image.source.file"};
    assert_int_equal(r.n_unsupported, 2);
    for (size_t i = 0; i < 2; i++) {
        bool found = false;
        for (size_t j = 0; j < r.n_unsupported; j++)
            found = found || strcmp(r.unsupported[j], want[i]) == 0;
        assert_true(found);
    }

    /* thinking disabled, tool_choice none, a system turn inside messages */
    assert_int_equal(read_str(&a,
                              "{\"model\":\"m\",\"thinking\":{\"type\":\"disabled\"},"
                              "\"tool_choice\":{\"type\":\"none\"},"
                              "\"messages\":[{\"role\":\"system\",\"content\":\"sys\"},"
                              "{\"role\":\"user\",\"content\":[]}]}",
                              NULL, &r, &err),
                     0);
    assert_false(r.reasoning);
    assert_int_equal(r.tool_choice, BB_IR_TC_NONE);
    assert_false(r.has_parallel_tool_calls);
    assert_int_equal(r.n_system, 1);
    assert_int_equal(r.n_messages, 1);
    assert_int_equal(r.messages[0].n_blocks, 0);
    bb_arena_free(&a);
}

static void test_read_request_errors(void **state)
{
    (void)state;
    static const struct {
        const char *body, *model, *err;
    } cases[] = {
        {"not json", NULL, "request body: invalid JSON"},
        {"", NULL, "request body: invalid JSON (unexpected end of input"},
        {"[]", NULL, "request body: expected a JSON object"},
        {"null", NULL, "request body: expected a JSON object, got null"},
        {"{\"model\":\"m\",\"messages\":[]} x", NULL, "request body: invalid JSON ("},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]", NULL,
         "request body: invalid JSON (unexpected end of input"},
        {"{\"model\":\"m\",\"max_tokens\":10}", NULL, "messages: required"},
        {"{\"max_tokens\":10,\"messages\":[]}", NULL, "model: required"},
        {"{\"model\":5,\"messages\":[]}", "pool", "model: expected a string"},
        {"{\"model\":\"m\",\"messages\":{}}", NULL, "messages: expected an array"},
        {"{\"model\":\"m\",\"messages\":[1]}", NULL, "messages[0]: expected an object"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}]}", NULL,
         "messages[0].content: required"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"},"
         "{\"role\":\"user\",\"content\":5}]}",
         NULL, "messages[1].content: expected a string or an array"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"robot\",\"content\":\"x\"}]}", NULL,
         "messages[0].role: expected \"user\", \"assistant\" or \"system\""},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]}",
         NULL, "messages[0].content[0].text: required"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"x\"}]}]}",
         NULL, "messages[0].content[0].type: expected a string"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image\","
         "\"source\":{\"type\":\"base64\",\"data\":\"x\"}}]}]}",
         NULL, "messages[0].content[0].source.media_type: required"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":"
         "\"tool_use\",\"id\":\"t\",\"name\":\"n\",\"input\":[1]}]}]}",
         NULL, "messages[0].content[0].input: expected an object"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
         "\"tool_result\",\"tool_use_id\":\"t\",\"content\":[{\"type\":\"text\",\"text\":1}]}]}]}",
         NULL, "messages[0].content[0].content[0].text: expected a string"},
        {"{\"model\":\"m\",\"max_tokens\":\"10\",\"messages\":[]}", NULL,
         "max_tokens: expected an integer"},
        {"{\"model\":\"m\",\"max_tokens\":-1,\"messages\":[]}", NULL, "max_tokens: out of range"},
        {"{\"model\":\"m\",\"messages\":[],\"system\":5}", NULL,
         "system: expected a string or an array"},
        {"{\"model\":\"m\",\"messages\":[],\"system\":[{\"type\":\"image\"}]}", NULL,
         "system[0].type: expected \"text\""},
        {"{\"model\":\"m\",\"messages\":[],\"tools\":[{\"name\":\"x\"}]}", NULL,
         "tools[0].input_schema: expected an object"},
        {"{\"model\":\"m\",\"messages\":[],\"tools\":[{\"input_schema\":{}}]}", NULL,
         "tools[0].name: required"},
        {"{\"model\":\"m\",\"messages\":[],\"tool_choice\":{\"type\":\"sometimes\"}}", NULL,
         "tool_choice.type: expected \"auto\", \"any\", \"tool\" or \"none\""},
        {"{\"model\":\"m\",\"messages\":[],\"tool_choice\":{\"type\":\"tool\"}}", NULL,
         "tool_choice.name: required"},
        {"{\"model\":\"m\",\"messages\":[],\"temperature\":\"hot\"}", NULL,
         "temperature: expected a number"},
        {"{\"model\":\"m\",\"messages\":[],\"stop_sequences\":[\"a\",2]}", NULL,
         "stop_sequences[1]: expected a string"},
        {"{\"model\":\"m\",\"messages\":[],\"thinking\":{\"type\":\"enabled\"}}", NULL,
         "thinking.budget_tokens: required"},
        {"{\"model\":\"m\",\"messages\":[],\"stream\":\"yes\"}", NULL,
         "stream: expected a boolean"},
        {"{\"model\":\"m\",\"messages\":[],\"metadata\":{\"user_id\":7}}", NULL,
         "metadata.user_id: expected a string"},
        {"{\"model\":\"m\",\"messages\":[],\"output_config\":{\"format\":{\"type\":\"json_schema\""
         "}}}",
         NULL, "output_config.format.schema: expected an object"},
    };
    struct bb_arena a;
    bb_arena_init(&a, 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct bb_ir_request r;
        struct bb_err err = {{0}};
        int rc = read_str(&a, cases[i].body, cases[i].model, &r, &err);
        if (rc != -1 || strncmp(err.msg, cases[i].err, strlen(cases[i].err)) != 0)
            fail_msg("case %zu: rc %d, err \"%s\", want \"%s\"", i, rc, err.msg, cases[i].err);
    }

    /* nesting deeper than 128 levels is refused by the tokenizer, not the stack */
    char deep[600] = "{\"model\":\"m\",\"messages\":[],\"metadata\":";
    size_t at = strlen(deep);
    for (int i = 0; i < 200; i++)
        deep[at++] = '[';
    deep[at] = '\0';
    struct bb_ir_request r;
    struct bb_err err = {{0}};
    assert_int_equal(read_str(&a, deep, NULL, &r, &err), -1);
    assert_non_null(strstr(err.msg, "invalid JSON"));
    bb_arena_free(&a);
}

/* ---------------------------------------------------------------------------------------- */
/* egress: requests                                                                         */
/* ---------------------------------------------------------------------------------------- */

struct egress_out {
    struct bb_egress_req req;
    char *headers;
};

static int write_ir(struct bb_arena *a, const struct bb_ir_request *ir, const struct bb_lane *ln,
                    bool stream, struct egress_out *o, struct bb_err *err)
{
    struct bb_egress_ctx ctx = {.provider = &provider,
                                .lane = ln,
                                .stream = stream,
                                .now = 1750000000,
                                .dropped = &test_drops};
    memset(o, 0, sizeof *o);
    o->req.headers = evbuffer_new();
    o->req.body = evbuffer_new();
    drops_reset();
    int rc = P->write_request(a, ir, &ctx, &o->req, err);
    o->headers = buf_str(o->req.headers, NULL);
    return rc;
}

static void egress_free(struct egress_out *o)
{
    evbuffer_free(o->req.headers);
    evbuffer_free(o->req.body);
    free(o->headers);
}

static json_object *body_json(struct egress_out *o)
{
    char *s = buf_str(o->req.body, NULL);
    json_object *j = parse(s, strlen(s));
    free(s);
    return j;
}

static void egress_case(const char *ir_fixture, const struct bb_lane *ln, bool stream,
                        const char *golden, const char *const *dropped, size_t n_dropped)
{
    struct bb_arena a;
    bb_arena_init(&a, 0);
    size_t n;
    char *text = slurp(ir_fixture, &n);
    json_object *j = parse(text, n);
    struct bb_ir_request ir;
    load_request(&a, j, &ir);
    struct egress_out o;
    struct bb_err err = {{0}};
    assert_int_equal(write_ir(&a, &ir, ln, stream, &o, &err), 0);
    assert_string_equal(o.req.path, "/v1/messages");
    assert_dropped(dropped, n_dropped);
    assert_json_golden(body_json(&o), golden);
    egress_free(&o);
    json_object_put(j);
    free(text);
    bb_arena_free(&a);
}

/* An IR as an OpenAI chat reader produces it: split same-role turns, tool results in their
 * own messages, signature-less reasoning, data: URLs, OpenAI-only knobs. */
static void test_write_request_from_openai_shape(void **state)
{
    (void)state;
    struct bb_lane plain = lane;
    plain.reasoning = false;
    static const char *const dropped[] = {"name",
                                          "thinking",
                                          "documents",
                                          "strict",
                                          "top_p",
                                          "stop",
                                          "seed",
                                          "n",
                                          "presence_penalty",
                                          "frequency_penalty",
                                          "response_format",
                                          "reasoning",
                                          "tool_input",
                                          "citations"};
    egress_case("egress_openai_shape.ir.json", &plain, false, "egress_openai_shape.body.json",
                dropped, sizeof dropped / sizeof dropped[0]);

    /* headers: JSON, the key, the API version; nothing else */
    struct bb_arena a;
    bb_arena_init(&a, 0);
    struct bb_ir_request ir;
    memset(&ir, 0, sizeof ir);
    struct egress_out o;
    struct bb_err err = {{0}};
    assert_int_equal(write_ir(&a, &ir, &lane, true, &o, &err), 0);
    assert_string_equal(o.headers, "Content-Type: application/json\r\n"
                                   "x-api-key: sk-ant-test\r\n"
                                   "anthropic-version: 2023-06-01\r\n");
    json_object *b = body_json(&o);
    assert_int_equal(json_object_get_int(get(b, "max_tokens")), 2048); /* injected */
    assert_true(json_object_get_boolean(get(b, "stream")));
    assert_string_equal(json_object_get_string(get(b, "model")), "claude-sonnet-4-5-20250929");
    assert_null(get(b, "thinking"));
    assert_null(drops_text());
    json_object_put(b);
    egress_free(&o);

    /* no key configured: no x-api-key header */
    struct bb_provider keyless = provider;
    keyless.api_key = NULL;
    struct bb_egress_ctx ctx = {.provider = &keyless, .lane = &lane, .dropped = &test_drops};
    struct bb_egress_req req = {.headers = evbuffer_new(), .body = evbuffer_new()};
    assert_int_equal(P->write_request(&a, &ir, &ctx, &req, &err), 0);
    char *h = buf_str(req.headers, NULL);
    assert_null(strstr(h, "x-api-key"));
    free(h);
    evbuffer_free(req.headers);
    evbuffer_free(req.body);
    bb_arena_free(&a);
}

/* Thinking on a reasoning lane: effort → budget, max_tokens raised above it, sampling that
 * thinking forbids dropped, signed thinking kept in the tool loop, cache_control kept. */
static void test_write_request_thinking(void **state)
{
    (void)state;
    static const char *const dropped[] = {"temperature", "top_k"};
    egress_case("egress_thinking.ir.json", &lane, true, "egress_thinking.body.json", dropped,
                sizeof dropped / sizeof dropped[0]);
}

static json_object *write_inline(const char *ir_json, const struct bb_lane *ln)
{
    struct bb_arena a;
    bb_arena_init(&a, 0);
    json_object *j = parse(ir_json, strlen(ir_json));
    struct bb_ir_request ir;
    load_request(&a, j, &ir);
    struct egress_out o;
    struct bb_err err = {{0}};
    assert_int_equal(write_ir(&a, &ir, ln, false, &o, &err), 0);
    json_object *b = body_json(&o);
    egress_free(&o);
    json_object_put(j);
    bb_arena_free(&a);
    return b;
}

static void test_write_request_thinking_rules(void **state)
{
    (void)state;
    /* forced tool use and thinking cannot go together: the tool choice wins */
    json_object *b = write_inline(
        "{\"reasoning\":true,\"tool_choice\":\"tool\",\"tool_choice_name\":\"f\","
        "\"tools\":[{\"name\":\"f\",\"parameters\":{\"type\":\"object\"}}],"
        "\"messages\":[{\"role\":\"user\",\"blocks\":[{\"type\":\"text\",\"text\":\"go\"}]}]}",
        &lane);
    assert_null(get(b, "thinking"));
    assert_string_equal(json_object_get_string(get(get(b, "tool_choice"), "type")), "tool");
    const char *d1[] = {"reasoning"};
    assert_dropped(d1, 1);
    json_object_put(b);

    /* a tool loop whose assistant turn has no thinking block (history from another dialect):
     * thinking is not requested */
    b = write_inline("{\"reasoning\":true,\"reasoning_budget\":2000,\"messages\":["
                     "{\"role\":\"user\",\"blocks\":[{\"type\":\"text\",\"text\":\"go\"}]},"
                     "{\"role\":\"assistant\",\"blocks\":[{\"type\":\"tool_use\",\"id\":\"c1\","
                     "\"name\":\"f\",\"input\":{}}]},"
                     "{\"role\":\"user\",\"blocks\":[{\"type\":\"tool_result\",\"id\":\"c1\","
                     "\"text\":\"ok\"}]}]}",
                     &lane);
    assert_null(get(b, "thinking"));
    assert_dropped(d1, 1);
    json_object_put(b);

    /* a prefill (final assistant turn) without thinking: same */
    b = write_inline("{\"reasoning\":true,\"messages\":["
                     "{\"role\":\"user\",\"blocks\":[{\"type\":\"text\",\"text\":\"go\"}]},"
                     "{\"role\":\"assistant\",\"blocks\":[{\"type\":\"text\",\"text\":\"Sure\"}]}"
                     "]}",
                     &lane);
    assert_null(get(b, "thinking"));
    json_object_put(b);

    /* explicit small budget: raised to the 1024 minimum; max_tokens stays when above it;
     * temperature 1 is allowed with thinking, and then wins over top_p */
    b = write_inline("{\"reasoning\":true,\"reasoning_budget\":100,\"max_tokens\":5000,"
                     "\"temperature\":1,\"top_p\":0.95,\"messages\":[]}",
                     &lane);
    assert_int_equal(json_object_get_int(get(get(b, "thinking"), "budget_tokens")), 1024);
    assert_int_equal(json_object_get_int(get(b, "max_tokens")), 5000);
    assert_true(json_object_get_double(get(b, "temperature")) == 1.0);
    assert_null(get(b, "top_p"));
    const char *d2[] = {"top_p"};
    assert_dropped(d2, 1);
    json_object_put(b);

    /* with thinking, top_p >= 0.95 is kept and a lower one dropped */
    b = write_inline("{\"reasoning\":true,\"top_p\":0.95,\"messages\":[]}", &lane);
    assert_true(json_object_get_double(get(b, "top_p")) == 0.95);
    assert_null(drops_text());
    json_object_put(b);
    b = write_inline("{\"reasoning\":true,\"top_p\":0.5,\"messages\":[]}", &lane);
    assert_null(get(b, "top_p"));
    assert_dropped(d2, 1);
    json_object_put(b);

    /* no thinking: temperature clamped into 0..1, top_k kept, tool_choice without tools
     * omitted, parallel_tool_calls false becomes disable_parallel_tool_use */
    b = write_inline("{\"temperature\":1.7,\"top_k\":5,\"tool_choice\":\"auto\","
                     "\"messages\":[]}",
                     &lane);
    assert_true(json_object_get_double(get(b, "temperature")) == 1.0);
    assert_int_equal(json_object_get_int(get(b, "top_k")), 5);
    assert_null(get(b, "tool_choice"));
    assert_null(drops_text());
    json_object_put(b);
    b = write_inline("{\"parallel_tool_calls\":false,"
                     "\"tools\":[{\"name\":\"f\"}],\"messages\":[]}",
                     &lane);
    json_object *tc = get(b, "tool_choice");
    assert_string_equal(json_object_get_string(get(tc, "type")), "auto");
    assert_true(json_object_get_boolean(get(tc, "disable_parallel_tool_use")));
    assert_string_equal(
        json_object_get_string(
            get(get(json_object_array_get_idx(get(b, "tools"), 0), "input_schema"), "type")),
        "object");
    json_object_put(b);
}

/* Anthropic in, Anthropic out through the IR: every field survives except what the API itself
 * would refuse in combination (top_k and top_p next to thinking/temperature), citations in
 * history and output_config.format, which busbar does not send upstream. */
static void test_roundtrip_request(void **state)
{
    (void)state;
    struct bb_arena a;
    bb_arena_init(&a, 0);
    size_t n;
    char *body = slurp("req_full.json", &n);
    struct bb_ir_request r;
    struct bb_err err = {{0}};
    assert_int_equal(P->read_request(&a, body, n, NULL, &r, &err), 0);
    struct egress_out o;
    assert_int_equal(write_ir(&a, &r, &lane, true, &o, &err), 0);
    static const char *const dropped[] = {"top_k", "top_p", "response_format", "citations"};
    assert_dropped(dropped, 4);
    assert_json_golden(body_json(&o), "req_full.egress.json");
    egress_free(&o);
    free(body);
    bb_arena_free(&a);
}

/* ---------------------------------------------------------------------------------------- */
/* responses                                                                                */
/* ---------------------------------------------------------------------------------------- */

static void test_response_roundtrip(void **state)
{
    (void)state;
    struct bb_arena a;
    bb_arena_init(&a, 0);
    size_t n;
    char *body = slurp("resp_tools.json", &n);
    struct bb_ir_response r;
    struct bb_err err = {{0}};
    assert_int_equal(P->read_response(&a, body, n, &r, &err), 0);
    assert_int_equal(r.stop, BB_IR_STOP_TOOL_USE);
    assert_int_equal(r.usage.input, 812);
    assert_int_equal(r.usage.cache_read, 10240);
    assert_int_equal(r.usage.cache_write, 512);
    assert_int_equal(r.usage.reasoning, 95);
    assert_json_golden(dump_response(&r), "resp_tools.ir.json");

    struct evbuffer *out = evbuffer_new();
    assert_int_equal(P->write_response(&a, &r, &ictx, out), 0);
    char *s = buf_str(out, NULL);
    assert_json_golden(parse(s, strlen(s)), "resp_tools.out.json");
    free(s);
    evbuffer_free(out);
    free(body);
    bb_arena_free(&a);
}

/* An IR response from another dialect: no id (synthesised msg_<request id>), no model (the
 * client's), content_filter → refusal, blocks a Message cannot hold are left out. */
static void test_response_from_other(void **state)
{
    (void)state;
    struct bb_arena a;
    bb_arena_init(&a, 0);
    size_t n;
    char *text = slurp("resp_other.ir.json", &n);
    json_object *j = parse(text, n);
    struct bb_ir_response r;
    load_response(&a, j, &r);
    struct evbuffer *out = evbuffer_new();
    assert_int_equal(P->write_response(&a, &r, &ictx, out), 0);
    char *s = buf_str(out, NULL);
    assert_json_golden(parse(s, strlen(s)), "resp_other.out.json");
    free(s);
    evbuffer_free(out);
    json_object_put(j);
    free(text);
    bb_arena_free(&a);
}

static void test_response_errors(void **state)
{
    (void)state;
    struct bb_arena a;
    bb_arena_init(&a, 0);
    struct bb_ir_response r;
    struct bb_err err = {{0}};
    const char *e = "{\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"boom\"}}";
    assert_int_equal(P->read_response(&a, e, strlen(e), &r, &err), -1);
    assert_string_equal(err.msg, "anthropic response: error: boom");
    assert_int_equal(P->read_response(&a, "{", 1, &r, &err), -1);
    const char *bad = "{\"content\":{}}";
    assert_int_equal(P->read_response(&a, bad, strlen(bad), &r, &err), -1);
    assert_string_equal(err.msg, "anthropic response: content: expected an array");
    bb_arena_free(&a);
}

static void test_read_error(void **state)
{
    (void)state;
    struct bb_proto_error pe;
    const char *b = "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","
                    "\"message\":\"Overloaded\"},\"request_id\":\"req_011\"}";
    assert_int_equal(P->read_error(b, strlen(b), &pe), 0);
    assert_string_equal(pe.type, "overloaded_error");
    assert_string_equal(pe.message, "Overloaded");
    assert_string_equal(pe.code, "");
    const char *ctx = "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\","
                      "\"message\":\"prompt is too long: 210000 tokens > 200000 maximum\"}}";
    assert_int_equal(P->read_error(ctx, strlen(ctx), &pe), 0);
    assert_string_equal(pe.type, "invalid_request_error");
    assert_int_equal(P->read_error("<html>bad gateway</html>", 24, &pe), -1);
    assert_int_equal(P->read_error("{}", 2, &pe), -1);
    assert_int_equal(P->framing, BB_FRAMING_SSE);
    assert_string_equal(P->stream_content_type(&ictx), "text/event-stream");
}

/* ---------------------------------------------------------------------------------------- */
/* streams                                                                                  */
/* ---------------------------------------------------------------------------------------- */

struct pipe {
    struct bb_arena *scratch;
    void *dec, *enc;
    struct evbuffer *out;
    json_object *events; /* IR events seen, dumped */
    int frames;
    int dec_rc;
};

static int on_ir(void *arg, const struct bb_ir_event *ev)
{
    struct pipe *p = arg;
    json_object_array_add(p->events, dump_event(ev));
    assert_int_equal(P->enc_event(p->enc, p->scratch, ev, p->out), 0);
    return 0;
}

static int on_frame(void *arg, const struct bb_sse_event *sev)
{
    struct pipe *p = arg;
    /* a heap copy of exactly the frame's bytes, so ASan sees any overread */
    char *data = malloc(sev->data_len + 1);
    memcpy(data, sev->data, sev->data_len);
    struct bb_frame f = {
        .event = sev->event, .event_len = sev->event_len, .data = data, .data_len = sev->data_len};
    p->frames++;
    int rc = P->dec_frame(p->dec, p->scratch, &f, on_ir, p);
    free(data);
    if (rc)
        p->dec_rc = rc;
    return 0;
}

/* transcript → SSE framer (one byte at a time) → decoder → IR → encoder. */
static void stream_case(const char *name)
{
    char file[128], ir_golden[128], out_golden[128];
    snprintf(file, sizeof file, "%s.sse", name);
    snprintf(ir_golden, sizeof ir_golden, "%s.ir.json", name);
    snprintf(out_golden, sizeof out_golden, "%s.out.sse", name);
    struct bb_arena scratch;
    bb_arena_init(&scratch, 0);
    size_t n;
    char *text = slurp(file, &n);
    struct pipe p = {.scratch = &scratch, .out = evbuffer_new(), .events = json_object_new_array()};
    p.dec = calloc(1, P->dec_size);
    p.enc = calloc(1, P->enc_size);
    P->dec_init(p.dec);
    P->enc_init(p.enc, &ictx);
    struct bb_sse s;
    bb_sse_init(&s, 1 << 20);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(bb_sse_feed(&s, text + i, 1, on_frame, &p), 0);
    bb_sse_free(&s);
    assert_int_equal(p.dec_rc, 0);
    assert_true(p.frames > 0);
    if (P->enc_finish)
        P->enc_finish(p.enc, p.out);
    assert_json_golden(p.events, ir_golden);
    char *out = buf_str(p.out, NULL);
    assert_sse_golden(out, strlen(out), out_golden);
    free(out);
    free(text);
    free(p.dec);
    free(p.enc);
    evbuffer_free(p.out);
    bb_arena_free(&scratch);
}

static void test_stream_text_cached(void **state)
{
    (void)state;
    stream_case("stream_text_cached");
}

static void test_stream_parallel_tools(void **state)
{
    (void)state;
    stream_case("stream_parallel_tools");
}

static void test_stream_thinking(void **state)
{
    (void)state;
    stream_case("stream_thinking");
}

static void test_stream_error(void **state)
{
    (void)state;
    stream_case("stream_error");
}

static void test_stream_server_tools(void **state)
{
    (void)state;
    stream_case("stream_server_tools");
}

/* IR events written as a fixture (as another dialect's decoder would emit them) → encoder. */
static void encode_case(const char *name)
{
    char file[128], golden[128];
    snprintf(file, sizeof file, "%s.ir.json", name);
    snprintf(golden, sizeof golden, "%s.sse", name);
    struct bb_arena a;
    bb_arena_init(&a, 0);
    size_t n;
    char *text = slurp(file, &n);
    json_object *evs = parse(text, n);
    void *enc = calloc(1, P->enc_size);
    P->enc_init(enc, &ictx);
    struct evbuffer *out = evbuffer_new();
    for (size_t i = 0; i < json_object_array_length(evs); i++) {
        struct bb_ir_event ev;
        load_event(&a, json_object_array_get_idx(evs, i), &ev);
        assert_int_equal(P->enc_event(enc, &a, &ev, out), 0);
    }
    char *s = buf_str(out, NULL);
    assert_sse_golden(s, strlen(s), golden);
    free(s);
    evbuffer_free(out);
    free(enc);
    json_object_put(evs);
    free(text);
    bb_arena_free(&a);
}

/* OpenAI-shaped IR: no usage at start, usage only in MESSAGE_DELTA, a text block interleaved
 * with two tool calls, a delta without BLOCK_START, blocks left open at MESSAGE_DELTA, an
 * image block that a Message cannot hold, redacted thinking, a second usage-only delta. */
static void test_encode_foreign_order(void **state)
{
    (void)state;
    encode_case("enc_foreign_order");
}

/* An error after content: the error event, and nothing after it (no stops, no message_stop);
 * an error before anything: no message_start either. */
static void test_encode_error(void **state)
{
    (void)state;
    encode_case("enc_error_midstream");
    encode_case("enc_error_first");
}

static int count_events(void *arg, const struct bb_ir_event *ev)
{
    (void)ev;
    (*(int *)arg)++;
    return 0;
}

static int stop_cb(void *arg, const struct bb_ir_event *ev)
{
    (void)arg;
    (void)ev;
    return 9;
}

static void test_decoder_malformed(void **state)
{
    (void)state;
    struct bb_arena a;
    bb_arena_init(&a, 0);
    void *dec = calloc(1, P->dec_size);
    int n = 0;
    struct bb_frame f = {
        .event = "message_start", .event_len = 13, .data = "{not json", .data_len = 9};
    P->dec_init(dec);
    assert_int_equal(P->dec_frame(dec, &a, &f, count_events, &n), -1);

    /* a delta for a block that was never started */
    P->dec_init(dec);
    const char *d = "{\"type\":\"content_block_delta\",\"index\":3,"
                    "\"delta\":{\"type\":\"text_delta\",\"text\":\"x\"}}";
    f = (struct bb_frame){
        .event = "content_block_delta", .event_len = 19, .data = d, .data_len = strlen(d)};
    assert_int_equal(P->dec_frame(dec, &a, &f, count_events, &n), -1);

    /* an empty frame and an unknown event are ignored; the event name is the fallback */
    f = (struct bb_frame){.event = "", .event_len = 0, .data = "", .data_len = 0};
    assert_int_equal(P->dec_frame(dec, &a, &f, count_events, &n), 0);
    const char *fut = "{\"type\":\"message_annotation\",\"x\":1}";
    f = (struct bb_frame){
        .event = "message_annotation", .event_len = 18, .data = fut, .data_len = strlen(fut)};
    assert_int_equal(P->dec_frame(dec, &a, &f, count_events, &n), 0);
    f = (struct bb_frame){.event = "ping", .event_len = 4, .data = "{}", .data_len = 2};
    assert_int_equal(P->dec_frame(dec, &a, &f, count_events, &n), 0);
    assert_int_equal(n, 1);

    /* the callback's non-zero return is passed back */
    const char *ms = "{\"type\":\"message_stop\"}";
    f = (struct bb_frame){
        .event = "message_stop", .event_len = 12, .data = ms, .data_len = strlen(ms)};
    assert_int_equal(P->dec_frame(dec, &a, &f, stop_cb, NULL), 9);
    free(dec);
    bb_arena_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_request_full),
        cmocka_unit_test(test_read_request_variants),
        cmocka_unit_test(test_read_request_errors),
        cmocka_unit_test(test_write_request_from_openai_shape),
        cmocka_unit_test(test_write_request_thinking),
        cmocka_unit_test(test_write_request_thinking_rules),
        cmocka_unit_test(test_roundtrip_request),
        cmocka_unit_test(test_response_roundtrip),
        cmocka_unit_test(test_response_from_other),
        cmocka_unit_test(test_response_errors),
        cmocka_unit_test(test_read_error),
        cmocka_unit_test(test_stream_text_cached),
        cmocka_unit_test(test_stream_parallel_tools),
        cmocka_unit_test(test_stream_thinking),
        cmocka_unit_test(test_stream_error),
        cmocka_unit_test(test_stream_server_tools),
        cmocka_unit_test(test_encode_foreign_order),
        cmocka_unit_test(test_encode_error),
        cmocka_unit_test(test_decoder_malformed),
    };
    return cmocka_run_group_tests_name("proto_anthropic", tests, NULL, NULL);
}
