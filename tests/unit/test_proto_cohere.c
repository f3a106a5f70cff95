/*
 * test_proto_cohere: the Cohere v2 chat module (worker/proto_cohere) against golden fixtures
 * in ../fixtures/proto/cohere (the test runs with workdir tests/unit):
 *   ingress  client V2ChatRequest JSON → IR (dumped as JSON, compared to a golden) + targeted
 *            asserts, and malformed inputs → the client-facing error text;
 *   egress   IR (a JSON rendering of struct bb_ir_request) → upstream body (golden), path,
 *            headers and the dropped-field list;
 *   response provider V2ChatResponse → IR → write_response → golden;
 *   streams  native SSE transcripts, fed to the SSE framer one byte at a time → decoder → IR
 *            events (golden) → encoder → SSE (golden), frames compared event by event; and IR
 *            event fixtures in another dialect's order → encoder → SSE (golden).
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

#define FIX "../fixtures/proto/cohere/"

static const struct bb_proto_ops *P = &bb_proto_cohere;

#include "proto_test_common.h"

/* ---------------------------------------------------------------------------------------- */
/* shared fixtures                                                                          */
/* ---------------------------------------------------------------------------------------- */

static struct bb_provider provider = {
    .name = "cohere", .protocol = BB_PROTO_COHERE, .api_key = "co-test-key"};
static struct bb_lane lane = {.name = "command",
                              .upstream_model = "command-a-reasoning-08-2025",
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
    assert_string_equal(r.model.p, "command-a-03-2025");
    assert_int_equal(r.n_system, 3); /* a string system turn + a two-part one */
    assert_string_equal(r.system[2].text.p, "Be brief.");
    assert_int_equal(r.n_messages, 6);

    const struct bb_ir_message *u = &r.messages[0];
    assert_int_equal(u->n_blocks, 3);
    assert_int_equal(u->blocks[1].type, BB_IR_IMAGE);
    assert_string_equal(u->blocks[1].media_type.p, "image/png");
    assert_string_equal(u->blocks[1].data.p, "iVBORw0KGgoAAAANSUhEUg==");
    assert_null(u->blocks[1].url.p);
    assert_string_equal(u->blocks[2].url.p, "https://example.com/paris.jpg");

    /* tool_plan → unsigned thinking, then the parallel calls with arguments kept verbatim */
    const struct bb_ir_message *asst = &r.messages[1];
    assert_int_equal(asst->role, BB_IR_ASSISTANT);
    assert_int_equal(asst->n_blocks, 3);
    assert_int_equal(asst->blocks[0].type, BB_IR_THINKING);
    assert_null(asst->blocks[0].signature.p);
    assert_int_equal(asst->blocks[1].type, BB_IR_TOOL_USE);
    assert_int_equal(asst->blocks[2].type, BB_IR_TOOL_USE);
    assert_string_equal(asst->blocks[2].id.p, "get_time_def456");
    assert_string_equal(asst->blocks[2].input_json.p, "{\"tz\": \"Europe/Paris\"}");

    /* two tool messages → one user message of two results */
    const struct bb_ir_message *res = &r.messages[2];
    assert_int_equal(res->role, BB_IR_USER);
    assert_int_equal(res->n_blocks, 2);
    assert_int_equal(res->blocks[0].type, BB_IR_TOOL_RESULT);
    assert_string_equal(res->blocks[0].id.p, "get_weather_abc123");
    assert_string_equal(res->blocks[0].text.p, "{\"temp_c\":18,\"sky\":\"cloudy\"}");
    assert_int_equal(res->blocks[1].n_content, 2);
    assert_string_equal(res->blocks[1].text.p, "14:05\n{\"tz\":\"CET\"}");

    /* citations attach to the text part they name (content_index 1); PLAN ones have no place */
    const struct bb_ir_message *a2 = &r.messages[3];
    assert_int_equal(a2->blocks[0].type, BB_IR_THINKING);
    assert_int_equal(a2->blocks[1].type, BB_IR_TEXT);
    assert_non_null(a2->blocks[1].citations_json.p);
    assert_null(a2->blocks[0].citations_json.p);

    /* a tool message after an assistant turn starts a new user message */
    assert_int_equal(r.messages[4].role, BB_IR_USER);
    assert_int_equal(r.messages[4].blocks[0].type, BB_IR_TOOL_RESULT);
    assert_int_equal(r.messages[5].role, BB_IR_USER);

    assert_int_equal(r.n_tools, 2);
    assert_true(r.tools[0].strict && r.tools[1].strict);
    assert_int_equal(r.tool_choice, BB_IR_TC_ANY);
    assert_true(r.has_max_tokens && r.max_tokens == 1024);
    assert_true(r.has_temperature && r.temperature == 0.4);
    assert_true(r.has_top_p && r.top_p == 0.9);
    assert_true(r.has_top_k && r.top_k == 40);
    assert_true(r.has_seed && r.seed == 42);
    assert_true(r.has_frequency_penalty && r.frequency_penalty == 0.2);
    assert_true(r.has_presence_penalty && r.presence_penalty == 0.1);
    assert_int_equal(r.n_stop, 2);
    assert_string_equal(r.stop[1].p, "\n\nUser:");
    assert_int_equal(r.format, BB_IR_FMT_JSON_SCHEMA);
    assert_true(r.reasoning && r.reasoning_budget == 2048);
    assert_true(r.stream);
    assert_true(has_unsupported(&r, "documents"));
    assert_true(has_unsupported(&r, "safety_mode"));
    assert_true(has_unsupported(&r, "citation_options"));
    assert_true(has_unsupported(&r, "image_url.detail"));
    assert_true(has_unsupported(&r, "document.id"));
    assert_true(has_unsupported(&r, "citations.PLAN"));
    assert_false(has_unsupported(&r, "logprobs")); /* null = absent */

    assert_json_golden(dump_request(&r), "req_full.ir.json");
    free(body);
    bb_arena_free(&a);
}

static int read_str(struct bb_arena *a, const char *body, const char *model,
                    struct bb_ir_request *r, struct bb_err *err)
{
    return P->read_request(a, body, strlen(body), model, r, err);
}

/* A system message among the turns stays in its place; before the first turn it is the
 * system prompt. */
static void test_read_request_system_in_place(void **state)
{
    (void)state;
    struct bb_arena a;
    bb_arena_init(&a, 0);
    struct bb_ir_request r;
    struct bb_err err = {{0}};
    assert_int_equal(read_str(&a,
                              "{\"model\":\"c\",\"messages\":[{\"role\":\"system\",\"content\":"
                              "\"first\"},{\"role\":\"user\",\"content\":\"hi\"},{\"role\":"
                              "\"system\",\"content\":[{\"type\":\"text\",\"text\":\"mid\"}]},"
                              "{\"role\":\"user\",\"content\":\"go\"}]}",
                              NULL, &r, &err),
                     0);
    assert_int_equal(r.n_system, 1);
    assert_string_equal(r.system[0].text.p, "first");
    assert_int_equal(r.n_messages, 3);
    assert_int_equal(r.messages[1].role, BB_IR_SYSTEM);
    assert_string_equal(r.messages[1].blocks[0].text.p, "mid");
    assert_int_equal(r.messages[2].role, BB_IR_USER);
    bb_arena_free(&a);
}

static void test_read_request_variants(void **state)
{
    (void)state;
    struct bb_arena a;
    bb_arena_init(&a, 0);
    struct bb_ir_request r;
    struct bb_err err = {{0}};

    /* the minimal request: no stream, nothing optional */
    assert_int_equal(read_str(&a,
                              "{\"model\":\"command-r\","
                              "\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}",
                              NULL, &r, &err),
                     0);
    assert_string_equal(r.model.p, "command-r");
    assert_int_equal(r.n_system, 0);
    assert_int_equal(r.n_messages, 1);
    assert_string_equal(r.messages[0].blocks[0].text.p, "Hi");
    assert_false(r.stream || r.has_max_tokens || r.reasoning);
    assert_int_equal(r.tool_choice, BB_IR_TC_UNSET);
    assert_int_equal(r.format, BB_IR_FMT_UNSET);
    assert_int_equal(r.n_unsupported, 0);

    /* tool_choice NONE (any case), json_object without schema, thinking disabled, an
     * assistant turn with string content, a tool call without arguments, unknown parts */
    assert_int_equal(
        read_str(&a,
                 "{\"model\":\"m\",\"tool_choice\":\"none\","
                 "\"response_format\":{\"type\":\"json_object\"},"
                 "\"thinking\":{\"type\":\"disabled\"},\"priority\":1,"
                 "\"tools\":[{\"type\":\"retrieval\"},{\"function\":{\"name\":\"f\"}}],"
                 "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"video\"},"
                 "{\"type\":\"text\",\"text\":\"q\"}]},"
                 "{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"id\":\"c1\","
                 "\"type\":\"function\",\"function\":{\"name\":\"f\"}}]},"
                 "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":[]},"
                 "{\"role\":\"assistant\",\"content\":\"done\"}]}",
                 NULL, &r, &err),
        0);
    assert_int_equal(r.tool_choice, BB_IR_TC_NONE);
    assert_int_equal(r.format, BB_IR_FMT_JSON_OBJECT);
    assert_false(r.reasoning);
    assert_int_equal(r.n_tools, 1); /* the non-function tool is recorded, not carried */
    assert_null(r.tools[0].parameters_json.p);
    assert_true(has_unsupported(&r, "tools.retrieval"));
    assert_true(has_unsupported(&r, "content.video"));
    assert_true(has_unsupported(&r, "priority"));
    assert_int_equal(r.messages[0].n_blocks, 1);
    assert_int_equal(r.messages[1].n_blocks, 1); /* "" content is not a text block */
    assert_string_equal(r.messages[1].blocks[0].input_json.p, "{}");
    assert_string_equal(r.messages[2].blocks[0].text.p, "");
    assert_string_equal(r.messages[3].blocks[0].text.p, "done");

    /* response_format text; arguments given as an object (lenient); model from a path */
    assert_int_equal(read_str(&a,
                              "{\"response_format\":{\"type\":\"text\"},\"messages\":["
                              "{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c\","
                              "\"function\":{\"name\":\"g\",\"arguments\":{\"a\":1}}}]}]}",
                              "pool-x", &r, &err),
                     0);
    assert_string_equal(r.model.p, "pool-x");
    assert_int_equal(r.format, BB_IR_FMT_TEXT);
    assert_string_equal(r.messages[0].blocks[0].input_json.p, "{\"a\":1}");
    bb_arena_free(&a);
}

static void test_read_request_errors(void **state)
{
    (void)state;
    static const struct {
        const char *body, *err;
    } cases[] = {
        {"not json", "request body: invalid JSON"},
        {"", "request body: invalid JSON (unexpected end of input"},
        {"[]", "request body: expected a JSON object"},
        {"null", "request body: expected a JSON object, got null"},
        {"{\"model\":\"m\",\"messages\":[]} x", "request body: invalid JSON ("},
        {"{\"model\":\"m\"}", "messages: required"},
        {"{\"messages\":[]}", "model: required"},
        {"{\"model\":5,\"messages\":[]}", "model: expected a string"},
        {"{\"model\":\"m\",\"messages\":{}}", "messages: expected an array"},
        {"{\"model\":\"m\",\"messages\":[1]}", "messages[0]: expected an object"},
        {"{\"model\":\"m\",\"messages\":[{\"content\":\"x\"}]}",
         "messages[0].role: expected a string"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"chatbot\",\"content\":\"x\"}]}",
         "messages[0].role: expected \"system\", \"user\", \"assistant\" or \"tool\""},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}]}", "messages[0].content: required"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"},"
         "{\"role\":\"user\",\"content\":5}]}",
         "messages[1].content: expected a string or an array"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]}",
         "messages[0].content[0].text: expected a string"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[\"x\"]}]}",
         "messages[0].content[0]: expected an object"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"x\"}]}]}",
         "messages[0].content[0].type: expected a string"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\","
         "\"image_url\":\"https://x\"}]}]}",
         "messages[0].content[0].image_url: expected an object"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\","
         "\"image_url\":{}}]}]}",
         "messages[0].content[0].image_url.url: required"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"system\","
         "\"content\":[{\"type\":\"image\"}]}]}",
         "messages[0].content[0].type: expected \"text\""},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"content\":7}]}",
         "messages[0].content: expected a string or an array"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"tool_plan\":[]}]}",
         "messages[0].tool_plan: expected a string"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":{}}]}",
         "messages[0].tool_calls: expected an array"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"function\":"
         "{\"name\":\"f\"}}]}]}",
         "messages[0].tool_calls[0].id: required"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c\","
         "\"function\":{\"name\":\"f\",\"arguments\":[1]}}]}]}",
         "messages[0].tool_calls[0].function.arguments: expected a string"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\","
         "\"content\":[{\"type\":\"thinking\"}]}]}",
         "messages[0].content[0].thinking: expected a string"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"content\":\"x\","
         "\"citations\":{}}]}",
         "messages[0].citations: expected an array"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}",
         "messages[0].tool_call_id: required"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"tool\",\"tool_call_id\":\"c\"}]}",
         "messages[0].content: required"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"tool\",\"tool_call_id\":\"c\","
         "\"content\":[{\"type\":\"document\",\"document\":{\"data\":5}}]}]}",
         "messages[0].content[0].document.data: expected an object or a string"},
        {"{\"model\":\"m\",\"messages\":[],\"tools\":{}}", "tools: expected an array"},
        {"{\"model\":\"m\",\"messages\":[],\"tools\":[{\"type\":\"function\"}]}",
         "tools[0].function: expected an object"},
        {"{\"model\":\"m\",\"messages\":[],\"tools\":[{\"type\":\"function\",\"function\":{}}]}",
         "tools[0].function.name: required"},
        {"{\"model\":\"m\",\"messages\":[],\"tools\":[{\"function\":{\"name\":\"f\","
         "\"parameters\":\"{}\"}}]}",
         "tools[0].function.parameters: expected an object"},
        {"{\"model\":\"m\",\"messages\":[],\"strict_tools\":1}",
         "strict_tools: expected a boolean"},
        {"{\"model\":\"m\",\"messages\":[],\"tool_choice\":\"AUTO\"}",
         "tool_choice: expected \"REQUIRED\" or \"NONE\""},
        {"{\"model\":\"m\",\"messages\":[],\"response_format\":{\"type\":\"json_schema\"}}",
         "response_format.type: expected \"text\" or \"json_object\""},
        {"{\"model\":\"m\",\"messages\":[],\"response_format\":{\"type\":\"json_object\","
         "\"json_schema\":\"{}\"}}",
         "response_format.json_schema: expected an object"},
        {"{\"model\":\"m\",\"messages\":[],\"max_tokens\":\"10\"}",
         "max_tokens: expected an integer"},
        {"{\"model\":\"m\",\"messages\":[],\"max_tokens\":-1}", "max_tokens: out of range"},
        {"{\"model\":\"m\",\"messages\":[],\"k\":1.5}", "k: expected an integer"},
        {"{\"model\":\"m\",\"messages\":[],\"p\":\"x\"}", "p: expected a number"},
        {"{\"model\":\"m\",\"messages\":[],\"seed\":1.5}", "seed: expected an integer"},
        {"{\"model\":\"m\",\"messages\":[],\"stop_sequences\":\"END\"}",
         "stop_sequences: expected an array"},
        {"{\"model\":\"m\",\"messages\":[],\"stop_sequences\":[\"a\",2]}",
         "stop_sequences[1]: expected a string"},
        {"{\"model\":\"m\",\"messages\":[],\"stream\":\"yes\"}", "stream: expected a boolean"},
        {"{\"model\":\"m\",\"messages\":[],\"thinking\":{\"type\":\"on\"}}",
         "thinking.type: expected \"enabled\" or \"disabled\""},
        {"{\"model\":\"m\",\"messages\":[],\"thinking\":{\"type\":\"enabled\","
         "\"token_budget\":\"big\"}}",
         "thinking.token_budget: expected an integer"},
    };
    struct bb_arena a;
    bb_arena_init(&a, 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct bb_ir_request r;
        struct bb_err err = {{0}};
        int rc = read_str(&a, cases[i].body, NULL, &r, &err);
        if (rc != -1 || strncmp(err.msg, cases[i].err, strlen(cases[i].err)) != 0)
            fail_msg("case %zu: rc %d, err \"%s\", want \"%s\"", i, rc, err.msg, cases[i].err);
    }

    /* nesting deeper than 128 levels is refused by the tokenizer, not the stack */
    char deep[600] = "{\"model\":\"m\",\"messages\":[],\"documents\":";
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

/* Every IR feature at once, from an Anthropic-shaped history: what Cohere can carry is
 * mapped, clamped into its ranges, or reported dropped. */
static void test_write_request_full(void **state)
{
    (void)state;
    struct bb_arena a;
    bb_arena_init(&a, 0);
    size_t n;
    char *text = slurp("egress_full.ir.json", &n);
    json_object *j = parse(text, n);
    struct bb_ir_request ir;
    load_request(&a, j, &ir);
    struct egress_out o;
    struct bb_err err = {{0}};
    assert_int_equal(write_ir(&a, &ir, &lane, true, &o, &err), 0);
    assert_string_equal(o.req.path, "/v2/chat");
    assert_string_equal(o.headers, "Content-Type: application/json\r\n"
                                   "Authorization: Bearer co-test-key\r\n");
    static const char *const dropped[] = {
        "cache_control", "name",      "documents", "signature", "thinking", "is_error",
        "images",        "citations", "stop",      "n",         "user",     "parallel_tool_calls"};
    assert_dropped(dropped, sizeof dropped / sizeof dropped[0]);
    assert_json_golden(body_json(&o), "egress_full.body.json");
    egress_free(&o);
    json_object_put(j);
    free(text);
    bb_arena_free(&a);
}

/* A Cohere client's request crosses to a Cohere provider through the IR unchanged in meaning. */
static void test_write_request_roundtrip(void **state)
{
    (void)state;
    struct bb_arena a;
    bb_arena_init(&a, 0);
    size_t n;
    char *body = slurp("req_full.json", &n);
    struct bb_ir_request ir;
    struct bb_err err = {{0}};
    assert_int_equal(P->read_request(&a, body, n, NULL, &ir, &err), 0);
    struct egress_out o;
    assert_int_equal(write_ir(&a, &ir, &lane, true, &o, &err), 0);
    assert_null(drops_text());
    assert_json_golden(body_json(&o), "req_full.egress.json");
    egress_free(&o);
    free(body);
    bb_arena_free(&a);
}

static json_object *write_inline(const char *ir_json, const struct bb_lane *ln, bool stream)
{
    struct bb_arena a;
    bb_arena_init(&a, 0);
    json_object *j = parse(ir_json, strlen(ir_json));
    struct bb_ir_request ir;
    load_request(&a, j, &ir);
    struct egress_out o;
    struct bb_err err = {{0}};
    assert_int_equal(write_ir(&a, &ir, ln, stream, &o, &err), 0);
    json_object *b = body_json(&o);
    egress_free(&o);
    json_object_put(j);
    bb_arena_free(&a);
    return b;
}

static void test_write_request_rules(void **state)
{
    (void)state;
    struct bb_lane plain = lane;
    plain.reasoning = false;

    /* a lane without reasoning: no thinking request, thinking history only as tool_plan */
    json_object *b =
        write_inline("{\"reasoning\":true,\"reasoning_budget\":500,\"messages\":["
                     "{\"role\":\"user\",\"blocks\":[{\"type\":\"text\",\"text\":\"go\"}]},"
                     "{\"role\":\"assistant\",\"blocks\":[{\"type\":\"thinking\",\"text\":\"hmm\"},"
                     "{\"type\":\"text\",\"text\":\"ok\"}]},"
                     "{\"role\":\"assistant\",\"blocks\":[{\"type\":\"thinking\",\"text\":\"a\"},"
                     "{\"type\":\"thinking\",\"text\":\"b\"},{\"type\":\"tool_use\",\"id\":\"c\","
                     "\"name\":\"f\"}]}]}",
                     &plain, false);
    assert_null(get(b, "thinking"));
    assert_false(json_object_get_boolean(get(b, "stream")));
    assert_string_equal(json_object_get_string(get(b, "model")), "command-a-reasoning-08-2025");
    json_object *m1 = json_object_array_get_idx(get(b, "messages"), 1);
    assert_int_equal(json_object_array_length(get(m1, "content")), 1);
    json_object *m2 = json_object_array_get_idx(get(b, "messages"), 2);
    assert_string_equal(json_object_get_string(get(m2, "tool_plan")), "a\nb");
    json_object *tc = json_object_array_get_idx(get(m2, "tool_calls"), 0);
    assert_string_equal(json_object_get_string(get(get(tc, "function"), "arguments")), "{}");
    const char *d1[] = {"reasoning", "thinking"};
    assert_dropped(d1, 2);
    json_object_put(b);

    /* tool_choice: any → REQUIRED, none → NONE, auto → omitted; a forced tool that is not
     * offered keeps every tool; no parameters → an empty object schema; mixed strictness */
    b = write_inline("{\"tool_choice\":\"any\",\"tools\":[{\"name\":\"f\",\"strict\":true},"
                     "{\"name\":\"g\"}],\"messages\":[]}",
                     &lane, false);
    assert_string_equal(json_object_get_string(get(b, "tool_choice")), "REQUIRED");
    assert_null(get(b, "strict_tools"));
    json_object *t0 = json_object_array_get_idx(get(b, "tools"), 0);
    assert_string_equal(json_object_get_string(get(get(get(t0, "function"), "parameters"), "type")),
                        "object");
    const char *d2[] = {"strict"};
    assert_dropped(d2, 1);
    json_object_put(b);
    b = write_inline("{\"tool_choice\":\"none\",\"tools\":[{\"name\":\"f\"}],\"messages\":[]}",
                     &lane, false);
    assert_string_equal(json_object_get_string(get(b, "tool_choice")), "NONE");
    json_object_put(b);
    b = write_inline("{\"tool_choice\":\"auto\",\"tools\":[{\"name\":\"f\"}],\"messages\":[]}",
                     &lane, false);
    assert_null(get(b, "tool_choice"));
    json_object_put(b);
    b = write_inline("{\"tool_choice\":\"tool\",\"tool_choice_name\":\"zzz\","
                     "\"tools\":[{\"name\":\"f\"},{\"name\":\"g\"}],\"messages\":[]}",
                     &lane, false);
    assert_string_equal(json_object_get_string(get(b, "tool_choice")), "REQUIRED");
    assert_int_equal(json_object_array_length(get(b, "tools")), 2);
    const char *d3[] = {"tool_choice"};
    assert_dropped(d3, 1);
    json_object_put(b);
    /* REQUIRED without tools would be rejected */
    b = write_inline("{\"tool_choice\":\"any\",\"messages\":[]}", &lane, false);
    assert_null(get(b, "tool_choice"));
    assert_null(get(b, "tools"));
    assert_dropped(d3, 1);
    json_object_put(b);

    /* response_format text and json_object; sampling already in range stays as given;
     * parallel_tool_calls true and n=1 are Cohere's behaviour, nothing is dropped */
    b = write_inline("{\"format\":\"text\",\"top_p\":0.5,\"top_k\":0,\"temperature\":1.5,"
                     "\"parallel_tool_calls\":true,\"n\":1,\"messages\":[]}",
                     &lane, false);
    assert_string_equal(json_object_get_string(get(get(b, "response_format"), "type")), "text");
    assert_true(json_object_get_double(get(b, "p")) == 0.5);
    assert_int_equal(json_object_get_int(get(b, "k")), 0);
    assert_true(json_object_get_double(get(b, "temperature")) == 1.5);
    assert_null(drops_text());
    json_object_put(b);
    b = write_inline("{\"format\":\"json_object\",\"top_p\":0.001,\"messages\":[]}", &lane, false);
    assert_string_equal(json_object_get_string(get(get(b, "response_format"), "type")),
                        "json_object");
    assert_null(get(get(b, "response_format"), "json_schema"));
    assert_true(json_object_get_double(get(b, "p")) == 0.01);
    json_object_put(b);

    /* a user message of only tool results is tool messages only; a lone system text is a
     * string; a user turn of one image is an array */
    b = write_inline("{\"system\":[{\"type\":\"text\",\"text\":\"S\"}],\"messages\":["
                     "{\"role\":\"user\",\"blocks\":[{\"type\":\"tool_result\",\"id\":\"c\","
                     "\"content\":[{\"type\":\"text\",\"text\":\"x\"},"
                     "{\"type\":\"text\",\"text\":\"y\"}]}]},"
                     "{\"role\":\"user\",\"blocks\":[{\"type\":\"image\",\"data\":\"AAA\"}]}]}",
                     &lane, false);
    json_object *msgs = get(b, "messages");
    assert_int_equal(json_object_array_length(msgs), 3);
    assert_string_equal(json_object_get_string(get(json_object_array_get_idx(msgs, 0), "content")),
                        "S");
    json_object *tm = json_object_array_get_idx(msgs, 1);
    assert_string_equal(json_object_get_string(get(tm, "role")), "tool");
    assert_int_equal(json_object_array_length(get(tm, "content")), 2);
    json_object *um = json_object_array_get_idx(msgs, 2);
    json_object *im = json_object_array_get_idx(get(um, "content"), 0);
    assert_string_equal(json_object_get_string(get(get(im, "image_url"), "url")),
                        "data:image/png;base64,AAA");
    json_object_put(b);

    /* tool parameters that are not a JSON object: the request cannot be written */
    struct bb_arena a;
    bb_arena_init(&a, 0);
    struct bb_ir_request ir;
    memset(&ir, 0, sizeof ir);
    struct bb_ir_tool bad = {.name = {"f", 1}, .parameters_json = {"[1]", 3}};
    ir.tools = &bad;
    ir.n_tools = 1;
    struct egress_out o;
    struct bb_err err = {{0}};
    assert_int_equal(write_ir(&a, &ir, &lane, false, &o, &err), -1);
    assert_string_equal(err.msg, "tools[0].parameters: expected a JSON object");
    egress_free(&o);

    /* no key configured: no Authorization header; never an Accept header */
    struct bb_provider keyless = provider;
    keyless.api_key = NULL;
    struct bb_egress_ctx ctx = {
        .provider = &keyless, .lane = &lane, .stream = true, .dropped = &test_drops};
    struct bb_egress_req req = {.headers = evbuffer_new(), .body = evbuffer_new()};
    memset(&ir, 0, sizeof ir);
    assert_int_equal(P->write_request(&a, &ir, &ctx, &req, &err), 0);
    char *h = buf_str(req.headers, NULL);
    assert_string_equal(h, "Content-Type: application/json\r\n");
    free(h);
    evbuffer_free(req.headers);
    evbuffer_free(req.body);
    bb_arena_free(&a);
}

/* ---------------------------------------------------------------------------------------- */
/* responses                                                                                */
/* ---------------------------------------------------------------------------------------- */

/* provider body → IR (golden) → this module's write_response (golden) */
static void response_case(const char *name)
{
    char file[128], ir_golden[128], out_golden[128];
    snprintf(file, sizeof file, "%s.json", name);
    snprintf(ir_golden, sizeof ir_golden, "%s.ir.json", name);
    snprintf(out_golden, sizeof out_golden, "%s.out.json", name);
    struct bb_arena a;
    bb_arena_init(&a, 0);
    size_t n;
    char *body = slurp(file, &n);
    struct bb_ir_response r;
    struct bb_err err = {{0}};
    assert_int_equal(P->read_response(&a, body, n, &r, &err), 0);
    assert_json_golden(dump_response(&r), ir_golden);
    struct evbuffer *out = evbuffer_new();
    assert_int_equal(P->write_response(&a, &r, &ictx, out), 0);
    char *s = buf_str(out, NULL);
    assert_json_golden(parse(s, strlen(s)), out_golden);
    free(s);
    evbuffer_free(out);
    free(body);
    bb_arena_free(&a);
}

static void test_response_tools(void **state)
{
    (void)state;
    response_case("resp_tools");
    /* the IR in numbers: cached tokens come out of input */
    struct bb_arena a;
    bb_arena_init(&a, 0);
    size_t n;
    char *body = slurp("resp_tools.json", &n);
    struct bb_ir_response r;
    struct bb_err err = {{0}};
    assert_int_equal(P->read_response(&a, body, n, &r, &err), 0);
    assert_int_equal(r.stop, BB_IR_STOP_TOOL_USE);
    assert_true(r.usage.set);
    assert_int_equal(r.usage.input, 237);
    assert_int_equal(r.usage.cache_read, 1024);
    assert_int_equal(r.usage.output, 72);
    assert_int_equal(r.n_blocks, 3);
    assert_int_equal(r.blocks[0].type, BB_IR_THINKING);
    free(body);
    bb_arena_free(&a);
}

static void test_response_text(void **state)
{
    (void)state;
    response_case("resp_text");
}

static void write_response_case(const char *ir_fixture, const char *golden)
{
    struct bb_arena a;
    bb_arena_init(&a, 0);
    size_t n;
    char *text = slurp(ir_fixture, &n);
    json_object *j = parse(text, n);
    struct bb_ir_response r;
    load_response(&a, j, &r);
    struct evbuffer *out = evbuffer_new();
    assert_int_equal(P->write_response(&a, &r, &ictx, out), 0);
    char *s = buf_str(out, NULL);
    assert_json_golden(parse(s, strlen(s)), golden);
    free(s);
    evbuffer_free(out);
    json_object_put(j);
    free(text);
    bb_arena_free(&a);
}

/* Another provider's answer: request id as response id, content filter → ERROR, signed and
 * redacted thinking, a foreign citation shape, an image, usage with both cache counts. */
static void test_response_from_other(void **state)
{
    (void)state;
    write_response_case("resp_other.ir.json", "resp_other.out.json");
    /* tool calls without ids get ids; thinking after the call is still the plan */
    write_response_case("resp_tool_ids.ir.json", "resp_tool_ids.out.json");
}

static void test_response_errors(void **state)
{
    (void)state;
    struct bb_arena a;
    bb_arena_init(&a, 0);
    struct bb_ir_response r;
    struct bb_err err = {{0}};
    const char *e = "{\"id\":\"x\",\"message\":\"invalid api token\"}";
    assert_int_equal(P->read_response(&a, e, strlen(e), &r, &err), -1);
    assert_string_equal(err.msg, "cohere response: error: invalid api token");
    assert_int_equal(P->read_response(&a, "{", 1, &r, &err), -1);
    assert_string_equal(err.msg,
                        "cohere response: invalid JSON (unexpected end of input at byte 1)");
    const char *none = "{\"id\":\"x\"}";
    assert_int_equal(P->read_response(&a, none, strlen(none), &r, &err), -1);
    assert_string_equal(err.msg, "cohere response: message: expected an object");
    const char *bad = "{\"message\":{\"content\":5}}";
    assert_int_equal(P->read_response(&a, bad, strlen(bad), &r, &err), -1);
    assert_string_equal(err.msg, "cohere response: message.content: expected a string or an array");
    /* no usage, no finish_reason: unset stop, usage not set */
    const char *bare = "{\"message\":{\"role\":\"assistant\",\"content\":\"hi\"}}";
    assert_int_equal(P->read_response(&a, bare, strlen(bare), &r, &err), 0);
    assert_int_equal(r.stop, BB_IR_STOP_UNSET);
    assert_false(r.usage.set);
    assert_int_equal(r.n_blocks, 1);
    bb_arena_free(&a);
}

static void test_read_error(void **state)
{
    (void)state;
    struct bb_proto_error pe;
    const char *b = "{\"id\":\"7c1f\",\"message\":\"too many tokens: the total number of tokens "
                    "in the prompt exceeds the model's context length\"}";
    assert_int_equal(P->read_error(b, strlen(b), &pe), 0);
    assert_string_equal(pe.type, "");
    assert_string_equal(pe.code, "");
    assert_non_null(strstr(pe.message, "context length"));
    const char *wrapped = "{\"error\":{\"type\":\"rate_limit\",\"message\":\"slow down\"}}";
    assert_int_equal(P->read_error(wrapped, strlen(wrapped), &pe), 0);
    assert_string_equal(pe.type, "rate_limit");
    assert_string_equal(pe.message, "slow down");
    const char *flat = "{\"error\":\"bad gateway\"}";
    assert_int_equal(P->read_error(flat, strlen(flat), &pe), 0);
    assert_string_equal(pe.message, "bad gateway");
    assert_int_equal(P->read_error("<html>bad gateway</html>", 24, &pe), -1);
    assert_int_equal(P->read_error("{}", 2, &pe), -1);
    assert_int_equal(P->read_error("[1]", 3, &pe), -1);
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
    char *event = malloc(sev->event_len + 1);
    memcpy(event, sev->event, sev->event_len);
    struct bb_frame f = {
        .event = event, .event_len = sev->event_len, .data = data, .data_len = sev->data_len};
    p->frames++;
    int rc = P->dec_frame(p->dec, p->scratch, &f, on_ir, p);
    free(data);
    free(event);
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

/* text + a citation + usage with cached tokens */
static void test_stream_text(void **state)
{
    (void)state;
    stream_case("stream_text");
}

/* tool plan + two parallel tool calls: Cohere's tool index 0/1 become IR blocks 1/2 */
static void test_stream_tools(void **state)
{
    (void)state;
    stream_case("stream_tools");
}

/* a thinking part then a text part, a debug event in between */
static void test_stream_thinking(void **state)
{
    (void)state;
    stream_case("stream_thinking");
}

/* finish_reason ERROR with delta.error mid-stream; what follows is ignored */
static void test_stream_error(void **state)
{
    (void)state;
    stream_case("stream_error");
    /* a data-only {"message"} frame of no known type; a delta with no content-start */
    stream_case("stream_error_frame");
}

/* data-only frames (type only in the JSON), an unknown event type, [DONE] as terminator */
static void test_stream_data_only(void **state)
{
    (void)state;
    stream_case("stream_dataonly");
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
    if (strcmp(name, "enc_foreign") == 0) {
        /* "[DONE]" in a text delta must not reach the client verbatim (the SDK's reader would
         * stop there); it is the same JSON string */
        assert_null(strstr(s, "[DONE]"));
        assert_non_null(strstr(s, "both \\u005bDONE] cities."));
    }
    free(s);
    evbuffer_free(out);
    free(enc);
    json_object_put(evs);
    free(text);
    bb_arena_free(&a);
}

/* Anthropic/OpenAI-shaped IR: usage at start and in two deltas, a text block interleaved
 * with two tool calls, signature and redacted deltas, an image block, a delta without
 * BLOCK_START, blocks left open at MESSAGE_STOP, foreign and Cohere citations, events after
 * the stop. */
static void test_encode_foreign_order(void **state)
{
    (void)state;
    encode_case("enc_foreign");
    /* a stream that never had usage or a start */
    encode_case("enc_no_usage");
}

/* An error before anything: message-start, then message-end with finish_reason ERROR; nothing
 * after it. */
static void test_encode_error(void **state)
{
    (void)state;
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

static int feed(void *dec, struct bb_arena *a, const char *event, const char *data,
                bb_ir_event_cb cb, void *arg)
{
    struct bb_frame f = {
        .event = event, .event_len = strlen(event), .data = data, .data_len = strlen(data)};
    return P->dec_frame(dec, a, &f, cb, arg);
}

static void test_decoder_edges(void **state)
{
    (void)state;
    struct bb_arena a;
    bb_arena_init(&a, 0);
    void *dec = calloc(1, P->dec_size);
    int n = 0;

    /* malformed frames */
    P->dec_init(dec);
    assert_int_equal(feed(dec, &a, "message-start", "{not json", count_events, &n), -1);
    assert_int_equal(feed(dec, &a, "", "[1,2]", count_events, &n), -1);
    assert_int_equal(n, 0);

    /* empty frames and unknown events carry nothing; the event name is the type's fallback */
    assert_int_equal(feed(dec, &a, "", "", count_events, &n), 0);
    assert_int_equal(feed(dec, &a, "future-thing", "{\"x\":1}", count_events, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(feed(dec, &a, "message-start", "{\"id\":\"i\"}", count_events, &n), 0);
    assert_int_equal(n, 1);
    /* a second message-start is not a second MESSAGE_START */
    assert_int_equal(
        feed(dec, &a, "message-start", "{\"type\":\"message-start\"}", count_events, &n), 0);
    assert_int_equal(n, 1);
    /* an event: error frame without a message is still an error; then nothing more */
    assert_int_equal(feed(dec, &a, "error", "{}", count_events, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(feed(dec, &a, "",
                          "{\"type\":\"content-delta\",\"index\":0,\"delta\":"
                          "{\"message\":{\"content\":{\"text\":\"x\"}}}}",
                          count_events, &n),
                     0);
    assert_int_equal(n, 2);

    /* the callback's non-zero return is passed back */
    P->dec_init(dec);
    assert_int_equal(feed(dec, &a, "", "{\"type\":\"message-start\"}", stop_cb, NULL), 9);

    /* a tool-call-delta with no tool-call-start opens a nameless TOOL_USE block */
    P->dec_init(dec);
    n = 0;
    assert_int_equal(feed(dec, &a, "",
                          "{\"type\":\"tool-call-delta\",\"index\":3,\"delta\":"
                          "{\"message\":{\"tool_calls\":{\"function\":"
                          "{\"arguments\":\"{}\"}}}}}",
                          count_events, &n),
                     0);
    assert_int_equal(n, 3); /* MESSAGE_START, BLOCK_START, BLOCK_DELTA */
    /* message-end without a finish_reason: END_TURN, then the stream is over */
    assert_int_equal(feed(dec, &a, "", "{\"type\":\"message-end\",\"delta\":{}}", count_events, &n),
                     0);
    assert_int_equal(n, 6); /* + BLOCK_STOP, MESSAGE_DELTA, MESSAGE_STOP */
    assert_int_equal(feed(dec, &a, "", "{\"type\":\"message-end\"}", count_events, &n), 0);
    assert_int_equal(n, 6);
    free(dec);
    bb_arena_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_request_full),
        cmocka_unit_test(test_read_request_variants),
        cmocka_unit_test(test_read_request_system_in_place),
        cmocka_unit_test(test_read_request_errors),
        cmocka_unit_test(test_write_request_full),
        cmocka_unit_test(test_write_request_roundtrip),
        cmocka_unit_test(test_write_request_rules),
        cmocka_unit_test(test_response_tools),
        cmocka_unit_test(test_response_text),
        cmocka_unit_test(test_response_from_other),
        cmocka_unit_test(test_response_errors),
        cmocka_unit_test(test_read_error),
        cmocka_unit_test(test_stream_text),
        cmocka_unit_test(test_stream_tools),
        cmocka_unit_test(test_stream_thinking),
        cmocka_unit_test(test_stream_error),
        cmocka_unit_test(test_stream_data_only),
        cmocka_unit_test(test_encode_foreign_order),
        cmocka_unit_test(test_encode_error),
        cmocka_unit_test(test_decoder_edges),
    };
    return cmocka_run_group_tests_name("proto_cohere", tests, NULL, NULL);
}
