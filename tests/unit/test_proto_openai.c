/*
 * test_proto_openai: the OpenAI chat completions module (worker/proto_openai.c) against
 * golden fixtures in ../fixtures/proto/openai: client requests → IR (every mapped field,
 * malformed input errors), IR → upstream body/path/headers and dropped fields, provider
 * responses → IR → client responses, recorded streams → decoder → IR events → encoder
 * (delivered whole, one byte at a time and in 7-byte pieces), and error bodies.
 *
 * BB_UPDATE_GOLDEN=1 rewrites the golden files from the current output (review the diff).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <json-c/json.h>

#include "common/sse.h"
#include "worker/proto.h"

#define FIX "../fixtures/proto/openai/"
#define LIT(s)                                                                                     \
    {                                                                                              \
        (char *)(s), sizeof(s) - 1                                                                 \
    }

static const struct bb_proto_ops *ops(void)
{
    return bb_proto_get(BB_PROTO_OPENAI);
}

#include "proto_test_common.h"

static int read_fixture(struct bb_arena *a, const char *name, struct bb_ir_request *req,
                        struct bb_err *err)
{
    size_t n;
    char *body = slurp(name, &n);
    int rc = ops()->read_request(a, body, n, NULL, req, err);
    free(body);
    return rc;
}

/* ---- (1) ingress: read_request ---- */

static void test_read_request_full(void **state)
{
    (void)state;
    struct bb_arena a;
    struct bb_err err = {{0}};
    struct bb_ir_request r;
    bb_arena_init(&a, 0);
    if (read_fixture(&a, "request_full.json", &r, &err))
        fail_msg("read_request: %s", err.msg);

    assert_str(&r.model, "gpt-4o");
    /* developer + system (two parts) → three system text blocks */
    assert_int_equal(r.n_system, 3);
    assert_str(&r.system[0].text, "You are a terse assistant.");
    assert_str(&r.system[1].text, "Answer in English.");
    assert_str(&r.system[2].text, "Use tools when useful.");
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(r.system[i].type, BB_IR_TEXT);

    /* user, assistant, tool+tool merged, user, assistant (refusal), user */
    assert_int_equal(r.n_messages, 6);
    const struct bb_ir_message *m = &r.messages[0];
    assert_int_equal(m->role, BB_IR_USER);
    assert_str(&m->name, "alice");
    assert_int_equal(m->n_blocks, 4); /* input_audio is not carried */
    assert_int_equal(m->blocks[0].type, BB_IR_TEXT);
    assert_int_equal(m->blocks[1].type, BB_IR_IMAGE);
    assert_str(&m->blocks[1].media_type, "image/png");
    assert_str(&m->blocks[1].data, "iVBORw0KGgo=");
    assert_null(m->blocks[1].url.p);
    assert_int_equal(m->blocks[2].type, BB_IR_IMAGE);
    assert_str(&m->blocks[2].url, "https://example.com/cat.jpg");
    assert_null(m->blocks[2].data.p);
    assert_int_equal(m->blocks[3].type, BB_IR_DOCUMENT);
    assert_str(&m->blocks[3].media_type, "application/pdf");
    assert_str(&m->blocks[3].data, "JVBERi0x");

    m = &r.messages[1];
    assert_int_equal(m->role, BB_IR_ASSISTANT);
    assert_int_equal(m->n_blocks, 5);
    assert_int_equal(m->blocks[0].type, BB_IR_THINKING);
    assert_str(&m->blocks[0].text, "Two cities, two calls.");
    assert_str(&m->blocks[0].signature, "sig-abc==");
    assert_int_equal(m->blocks[1].type, BB_IR_REDACTED_THINKING);
    assert_str(&m->blocks[1].signature, "ZW5jcnlwdGVk");
    assert_int_equal(m->blocks[2].type, BB_IR_TEXT);
    assert_str(&m->blocks[2].text, "Let me check both.");
    assert_int_equal(m->blocks[3].type, BB_IR_TOOL_USE);
    assert_str(&m->blocks[3].id, "call_paris");
    assert_str(&m->blocks[3].name, "get_weather");
    assert_str(&m->blocks[3].input_json, "{\"city\":\"Paris\"}");
    assert_int_equal(m->blocks[4].type, BB_IR_TOOL_USE);
    assert_str(&m->blocks[4].id, "call_rome");
    assert_str(&m->blocks[4].input_json, "{}"); /* empty arguments */

    m = &r.messages[2]; /* two tool messages → one user message */
    assert_int_equal(m->role, BB_IR_USER);
    assert_int_equal(m->n_blocks, 2);
    assert_int_equal(m->blocks[0].type, BB_IR_TOOL_RESULT);
    assert_str(&m->blocks[0].id, "call_paris");
    assert_str(&m->blocks[0].name, "get_weather"); /* looked up from the call */
    assert_str(&m->blocks[0].text, "18C, cloudy");
    assert_int_equal(m->blocks[1].type, BB_IR_TOOL_RESULT);
    assert_str(&m->blocks[1].id, "call_rome");
    assert_null(m->blocks[1].text.p);
    assert_int_equal(m->blocks[1].n_content, 2);
    assert_str(&m->blocks[1].content[0].text, "24C");
    assert_str(&m->blocks[1].content[1].text, "sunny");

    m = &r.messages[3];
    assert_int_equal(m->role, BB_IR_USER);
    assert_int_equal(m->n_blocks, 1);
    assert_str(&m->blocks[0].text, "Thanks. Summarise as JSON.");
    m = &r.messages[4];
    assert_int_equal(m->role, BB_IR_ASSISTANT);
    assert_int_equal(m->n_blocks, 1);
    assert_str(&m->blocks[0].text, "I can't share that.");
    assert_int_equal(r.messages[5].role, BB_IR_USER);

    assert_int_equal(r.n_tools, 2);
    assert_str(&r.tools[0].name, "get_weather");
    assert_str(&r.tools[0].description, "Current weather for a city");
    assert_true(r.tools[0].strict);
    assert_str(&r.tools[0].parameters_json,
               "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"},\"days\":{"
               "\"type\":\"number\",\"minimum\":0.5}},\"required\":[\"city\"],"
               "\"additionalProperties\":false}");
    assert_str(&r.tools[1].name, "noop");
    assert_null(r.tools[1].parameters_json.p);
    assert_false(r.tools[1].strict);
    assert_int_equal(r.tool_choice, BB_IR_TC_TOOL);
    assert_str(&r.tool_choice_name, "get_weather");
    assert_true(r.has_parallel_tool_calls);
    assert_false(r.parallel_tool_calls);

    assert_true(r.stream);
    assert_true(r.include_usage);
    assert_true(r.has_max_tokens);
    assert_int_equal(r.max_tokens, 512); /* max_completion_tokens wins */
    assert_true(r.has_temperature);
    assert_true(r.temperature == 0.7);
    assert_true(r.has_top_p && r.top_p == 0.9);
    assert_true(r.has_seed && r.seed == 42);
    assert_true(r.has_presence_penalty && r.presence_penalty == 0.5);
    assert_true(r.has_frequency_penalty && r.frequency_penalty == -0.25);
    assert_false(r.has_top_k);
    assert_int_equal(r.n_stop, 2);
    assert_str(&r.stop[0], "END");
    assert_str(&r.stop[1], "\n\n");
    assert_int_equal(r.n_choices, 1);
    assert_int_equal(r.format, BB_IR_FMT_JSON_SCHEMA);
    assert_str(&r.format_name, "summary");
    assert_str(&r.format_schema_json, "{\"type\":\"object\",\"properties\":{\"text\":{\"type\":"
                                      "\"string\"}},\"required\":[\"text\"]}");
    assert_true(r.format_strict);
    assert_true(r.reasoning);
    assert_int_equal(r.reasoning_effort, BB_IR_EFFORT_MEDIUM);
    assert_int_equal(r.reasoning_budget, 0);
    assert_str(&r.user, "user-1234");

    /* what the IR cannot carry is named; store:false and logprobs:null are defaults */
    assert_true(has_unsupported(&r, "logit_bias"));
    assert_true(has_unsupported(&r, "metadata"));
    assert_true(has_unsupported(&r, "image_url.detail"));
    assert_true(has_unsupported(&r, "content.input_audio"));
    assert_false(has_unsupported(&r, "store"));
    assert_false(has_unsupported(&r, "logprobs"));
    assert_int_equal(r.n_unsupported, 4);
    bb_arena_free(&a);
}

static void test_read_request_legacy(void **state)
{
    (void)state;
    struct bb_arena a;
    struct bb_err err = {{0}};
    struct bb_ir_request r;
    bb_arena_init(&a, 0);
    if (read_fixture(&a, "request_legacy.json", &r, &err))
        fail_msg("read_request: %s", err.msg);
    assert_int_equal(r.n_tools, 1);
    assert_str(&r.tools[0].name, "get_weather");
    assert_str(&r.tools[0].description, "Weather");
    assert_int_equal(r.tool_choice, BB_IR_TC_TOOL);
    assert_str(&r.tool_choice_name, "get_weather");
    assert_int_equal(r.n_messages, 3);
    const struct bb_ir_block *call = &r.messages[1].blocks[0];
    assert_int_equal(r.messages[1].n_blocks, 1);
    assert_int_equal(call->type, BB_IR_TOOL_USE);
    assert_str(&call->id, "call_legacy_0");
    assert_str(&call->input_json, "{\"city\":\"Oslo\"}");
    const struct bb_ir_block *res = &r.messages[2].blocks[0];
    assert_int_equal(r.messages[2].role, BB_IR_USER);
    assert_int_equal(res->type, BB_IR_TOOL_RESULT);
    assert_str(&res->id, "call_legacy_0");
    assert_str(&res->name, "get_weather");
    assert_str(&res->text, "-3C, snow");
    assert_int_equal(r.n_stop, 1);
    assert_str(&r.stop[0], "STOP");
    assert_true(r.has_max_tokens && r.max_tokens == 64);
    assert_true(r.has_top_k && r.top_k == 40);
    assert_true(r.reasoning);
    assert_int_equal(r.reasoning_effort, BB_IR_EFFORT_HIGH);
    assert_true(has_unsupported(&r, "reasoning_effort")); /* xhigh narrowed to high */
    assert_str(&r.user, "sid-9");
    assert_false(r.stream);
    bb_arena_free(&a);
}

static void test_read_request_errors(void **state)
{
    (void)state;
    static const struct {
        const char *body, *error;
    } cases[] = {
        {"not json", "request body: invalid JSON ("},
        {"{\"model\":\"m\",\"messages\":[]} x", "request body: invalid JSON (trailing characters"},
        {"{\"model\":\"m\"", "request body: invalid JSON (unexpected end of input"},
        {"null\n", "request body: expected a JSON object, got null"},
        {"[]", "the request body must be a JSON object"},
        {"{\"model\":\"m\"}", "messages: expected an array"},
        {"{\"model\":\"m\",\"messages\":[]}", "messages: must not be empty"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "model: required"},
        {"{\"model\":5,\"messages\":[]}", "model: expected a string"},
        {"{\"model\":\"m\",\"messages\":[5]}", "messages[0]: expected an object"},
        {"{\"model\":\"m\",\"messages\":[{\"content\":\"x\"}]}",
         "messages[0].role: expected a string"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"robot\","
         "\"content\":\"x\"}]}",
         "messages[1].role: unknown role 'robot'"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":5}]}",
         "messages[0].content: expected a string or an array"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}]}", "messages[0].content: required"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"x\"}]}]}",
         "messages[0].content[0]: expected an object with a 'type'"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]}",
         "messages[0].content[0].text: expected a string"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\","
         "\"text\":"
         "\"a\"},{\"type\":\"image_url\",\"image_url\":{}}]}]}",
         "messages[0].content[1].image_url.url: expected a string"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}",
         "messages[0].tool_call_id: expected a string"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c\","
         "\"function\":{\"arguments\":\"{}\"}}]}]}",
         "messages[0].tool_calls[0].function.name: expected a string"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c\","
         "\"function\":{\"name\":\"f\",\"arguments\":5}}]}]}",
         "messages[0].tool_calls[0].function.arguments: expected a string"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"name\":1}]}",
         "messages[0].name: expected a string"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":"
         "\"hot\"}",
         "temperature: expected a number"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":-1}",
         "max_tokens: out of range"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
         "\"max_completion_tokens\":1.5}",
         "max_completion_tokens: expected an integer"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":[1]}",
         "stop[0]: expected a string"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":0}",
         "n: out of range"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"seed\":1.5}",
         "seed: expected an integer"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{"
         "\"type\":"
         "\"function\",\"function\":{\"parameters\":{}}}]}",
         "tools[0].function.name: expected a string"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":{}}",
         "tools: expected an array"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{"
         "\"type\":"
         "\"function\",\"function\":{\"name\":\"f\",\"parameters\":[]}}]}",
         "tools[0].function.parameters: expected an object"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tool_choice\":"
         "\"sometimes\"}",
         "tool_choice: unknown value 'sometimes'"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tool_choice\":{"
         "\"type\":\"function\",\"function\":{}}}",
         "tool_choice.function.name: expected a string"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_"
         "format\":"
         "{\"type\":\"json_schema\"}}",
         "response_format.json_schema: expected an object"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_"
         "format\":"
         "\"json\"}",
         "response_format: expected an object with a 'type'"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"reasoning_"
         "effort\":"
         "\"extreme\"}",
         "reasoning_effort: unknown value 'extreme'"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream\":"
         "\"yes\"}",
         "stream: expected a boolean"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream_options\":"
         "{\"include_usage\":1}}",
         "stream_options.include_usage: expected a boolean"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
         "\"parallel_tool_calls\":\"no\"}",
         "parallel_tool_calls: expected a boolean"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct bb_arena a;
        struct bb_err err = {{0}};
        struct bb_ir_request r;
        bb_arena_init(&a, 0);
        int rc = ops()->read_request(&a, cases[i].body, strlen(cases[i].body), NULL, &r, &err);
        if (rc != -1 || strncmp(err.msg, cases[i].error, strlen(cases[i].error)) != 0)
            fail_msg("case %zu: rc %d, error '%s', want '%s'", i, rc, err.msg, cases[i].error);
        bb_arena_free(&a);
    }

    /* nesting deeper than 128 is refused by the tokenizer, not the stack */
    size_t depth = 200, n = 0;
    char *deep = malloc(64 + 2 * depth);
    assert_non_null(deep);
    n += (size_t)snprintf(deep, 64, "{\"model\":\"m\",\"messages\":");
    for (size_t i = 0; i < depth; i++)
        deep[n++] = '[';
    for (size_t i = 0; i < depth; i++)
        deep[n++] = ']';
    deep[n++] = '}';
    struct bb_arena a;
    struct bb_err err = {{0}};
    struct bb_ir_request r;
    bb_arena_init(&a, 0);
    assert_int_equal(ops()->read_request(&a, deep, n, NULL, &r, &err), -1);
    assert_non_null(strstr(err.msg, "nesting deeper than 128"));
    bb_arena_free(&a);
    free(deep);

    /* the model from the URL wins (not used by OpenAI routes, but part of the contract) */
    const char *ok = "{\"model\":\"body\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}";
    bb_arena_init(&a, 0);
    assert_int_equal(ops()->read_request(&a, ok, strlen(ok), "path-model", &r, &err), 0);
    assert_str(&r.model, "path-model");
    bb_arena_free(&a);
}

/* A system (or developer) message among the turns stays there as a BB_IR_SYSTEM message;
 * the ones before the first turn are the system prompt. */
static void test_read_request_system_in_place(void **state)
{
    (void)state;
    const char *body =
        "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"first\"},"
        "{\"role\":\"user\",\"content\":\"hi\"},"
        "{\"role\":\"developer\",\"content\":[{\"type\":\"text\",\"text\":\"mid\"}]},"
        "{\"role\":\"assistant\",\"content\":\"ok\"},"
        "{\"role\":\"user\",\"content\":\"go\"}]}";
    struct bb_arena a;
    struct bb_err err = {{0}};
    struct bb_ir_request r;
    bb_arena_init(&a, 0);
    if (ops()->read_request(&a, body, strlen(body), NULL, &r, &err))
        fail_msg("read_request: %s", err.msg);
    assert_int_equal(r.n_system, 1);
    assert_str(&r.system[0].text, "first");
    assert_int_equal(r.n_messages, 4);
    assert_int_equal(r.messages[0].role, BB_IR_USER);
    assert_int_equal(r.messages[1].role, BB_IR_SYSTEM);
    assert_int_equal(r.messages[1].n_blocks, 1);
    assert_str(&r.messages[1].blocks[0].text, "mid");
    assert_int_equal(r.messages[2].role, BB_IR_ASSISTANT);
    assert_int_equal(r.messages[3].role, BB_IR_USER);
    /* folded for a writer that cannot keep it in place: after the system prompt, in order */
    const struct bb_ir_request *f = bb_ir_fold_system(&a, &r);
    assert_int_equal(f->n_system, 2);
    assert_str(&f->system[1].text, "mid");
    assert_int_equal(f->n_messages, 3);
    bb_arena_free(&a);
}

/* ---- (2) egress: write_request ---- */

struct egress {
    struct bb_provider provider;
    struct bb_lane lane;
    struct bb_egress_ctx ctx;
    struct bb_egress_req req;
};

static void egress_init(struct egress *e, bool reasoning, const char *key)
{
    memset(e, 0, sizeof *e);
    e->provider.name = "openai";
    e->provider.protocol = BB_PROTO_OPENAI;
    e->provider.api_key = (char *)key;
    e->lane.name = "fast";
    e->lane.upstream_model = "gpt-4.1-mini";
    e->lane.reasoning = reasoning;
    e->ctx.provider = &e->provider;
    e->ctx.lane = &e->lane;
    e->ctx.dropped = &test_drops;
    e->req.headers = evbuffer_new();
    e->req.body = evbuffer_new();
}

static void egress_free(struct egress *e)
{
    evbuffer_free(e->req.headers);
    evbuffer_free(e->req.body);
}

static void assert_body_golden(struct egress *e, const char *golden)
{
    size_t n;
    char *body = buf_str(e->req.body, &n);
    assert_json_text_golden(body, n, golden);
    free(body);
}

static void assert_headers(struct egress *e, const char *expect)
{
    size_t n;
    char *h = buf_str(e->req.headers, &n);
    assert_string_equal(h, expect);
    free(h);
}

static void test_write_request_ir(void **state)
{
    (void)state;
    static struct bb_ir_block system[] = {
        {.type = BB_IR_TEXT, .text = LIT("Be brief."), .cache_control = true},
        {.type = BB_IR_TEXT, .text = LIT("Cite sources.")},
    };
    static struct bb_ir_block nested[] = {
        {.type = BB_IR_TEXT, .text = LIT("line 1")},
        {.type = BB_IR_IMAGE, .media_type = LIT("image/png"), .data = LIT("AAA=")},
        {.type = BB_IR_TEXT, .text = LIT("line 2")},
    };
    static struct bb_ir_block u1[] = {
        {.type = BB_IR_TEXT, .text = LIT("Look:")},
        {.type = BB_IR_IMAGE, .media_type = LIT("image/jpeg"), .data = LIT("/9j/4AAQ")},
        {.type = BB_IR_IMAGE, .url = LIT("https://example.com/a.png")},
        {.type = BB_IR_DOCUMENT, .media_type = LIT("application/pdf"), .data = LIT("JVBERi0x")},
        {.type = BB_IR_DOCUMENT, .url = LIT("https://example.com/a.docx")},
    };
    static struct bb_ir_block a1[] = {
        {.type = BB_IR_THINKING, .text = LIT("hmm"), .signature = LIT("sig")},
        {.type = BB_IR_TEXT, .text = LIT("Calling tools.")},
        {.type = BB_IR_TOOL_USE,
         .id = LIT("toolu_01"),
         .name = LIT("lookup"),
         .input_json = LIT("{\"q\":\"a\"}")},
        {.type = BB_IR_TOOL_USE,
         .id = LIT("toolu_02"),
         .name = LIT("lookup"),
         .input_json = {NULL, 0}},
    };
    static struct bb_ir_block u2[] = {
        {.type = BB_IR_TOOL_RESULT, .id = LIT("toolu_01"), .text = LIT("found a")},
        {.type = BB_IR_TOOL_RESULT,
         .id = LIT("toolu_02"),
         .content = nested,
         .n_content = 3,
         .is_error = true},
        {.type = BB_IR_TEXT, .text = LIT("And now?")},
    };
    static struct bb_ir_block a2[] = {
        {.type = BB_IR_TEXT, .text = LIT("Part one. ")},
        {.type = BB_IR_TEXT, .text = LIT("Part two."), .citations_json = LIT("[]")},
    };
    static struct bb_ir_block u3[] = {{.type = BB_IR_TEXT, .text = LIT("Go on.")}};
    static struct bb_ir_message msgs[] = {
        {.role = BB_IR_USER, .blocks = u1, .n_blocks = 5, .name = LIT("bob")},
        {.role = BB_IR_ASSISTANT, .blocks = a1, .n_blocks = 4},
        {.role = BB_IR_USER, .blocks = u2, .n_blocks = 3},
        {.role = BB_IR_ASSISTANT, .blocks = a2, .n_blocks = 2},
        {.role = BB_IR_USER, .blocks = u3, .n_blocks = 1},
    };
    static struct bb_ir_tool tools[] = {
        {.name = LIT("lookup"),
         .description = LIT("Look things up"),
         .parameters_json =
             LIT("{\"type\":\"object\",\"properties\":{\"q\":{\"type\":\"string\"}}}"),
         .strict = true},
        {.name = LIT("ping")},
    };
    static struct bb_ir_str stops[] = {LIT("a"), LIT("b"), LIT("c"), LIT("d"), LIT("e")};
    struct bb_ir_request ir = {
        .model = S("claude-sonnet"),
        .system = system,
        .n_system = 2,
        .messages = msgs,
        .n_messages = 5,
        .tools = tools,
        .n_tools = 2,
        .tool_choice = BB_IR_TC_TOOL,
        .tool_choice_name = S("lookup"),
        .has_parallel_tool_calls = true,
        .parallel_tool_calls = false,
        .stream = true,
        .has_max_tokens = true,
        .max_tokens = 1024,
        .has_temperature = true,
        .temperature = 0.7,
        .has_top_p = true,
        .top_p = 1,
        .has_top_k = true,
        .top_k = 5,
        .has_seed = true,
        .seed = -7,
        .has_presence_penalty = true,
        .presence_penalty = 0.1,
        .has_frequency_penalty = true,
        .frequency_penalty = 0.2,
        .stop = stops,
        .n_stop = 5,
        .n_choices = 2,
        .format = BB_IR_FMT_JSON_SCHEMA,
        .format_schema_json = S("{\"type\":\"object\"}"),
        .reasoning = true,
        .reasoning_budget = 8000,
        .user = S("u-1"),
    };
    struct egress e;
    struct bb_arena a;
    struct bb_err err = {{0}};
    egress_init(&e, true, "sk-test");
    e.ctx.stream = true;
    bb_arena_init(&a, 0);
    drops_reset();
    if (ops()->write_request(&a, &ir, &e.ctx, &e.req, &err))
        fail_msg("write_request: %s", err.msg);
    assert_string_equal(e.req.path, "/v1/chat/completions");
    assert_headers(&e, "Content-Type: application/json\r\nAuthorization: Bearer sk-test\r\n");
    assert_body_golden(&e, "egress_ir.json");
    assert_non_null(drops_text());
    assert_string_equal(drops_text(),
                        "cache_control,documents,thinking,is_error,images,citations,top_k,stop");
    egress_free(&e);
    bb_arena_free(&a);

    /* a lane without reasoning drops the ask; no key, no Authorization; effort wins over a
     * budget; no tools: no tool_choice/parallel_tool_calls */
    struct bb_ir_request small = {
        .model = S("x"),
        .messages = &msgs[4],
        .n_messages = 1,
        .reasoning = true,
        .reasoning_effort = BB_IR_EFFORT_MINIMAL,
        .reasoning_budget = 30000,
        .tool_choice = BB_IR_TC_ANY,
        .has_parallel_tool_calls = true,
        .format = BB_IR_FMT_JSON_OBJECT,
    };
    egress_init(&e, false, NULL);
    bb_arena_init(&a, 0);
    drops_reset();
    assert_int_equal(ops()->write_request(&a, &small, &e.ctx, &e.req, &err), 0);
    assert_headers(&e, "Content-Type: application/json\r\n");
    size_t n;
    char *body = buf_str(e.req.body, &n);
    assert_string_equal(body, "{\"model\":\"gpt-4.1-mini\",\"messages\":[{\"role\":\"user\","
                              "\"content\":\"Go on.\"}],\"response_format\":{\"type\":"
                              "\"json_object\"}}");
    free(body);
    assert_string_equal(drops_text(), "reasoning");
    egress_free(&e);
    bb_arena_free(&a);

    egress_init(&e, true, "");
    bb_arena_init(&a, 0);
    drops_reset();
    assert_int_equal(ops()->write_request(&a, &small, &e.ctx, &e.req, &err), 0);
    body = buf_str(e.req.body, &n);
    assert_non_null(strstr(body, "\"reasoning_effort\":\"minimal\""));
    assert_null(drops_text());
    free(body);
    egress_free(&e);
    bb_arena_free(&a);
}

static void test_write_request_from_client(void **state)
{
    (void)state;
    struct bb_arena a;
    struct bb_err err = {{0}};
    struct bb_ir_request r;
    struct egress e;
    bb_arena_init(&a, 0);
    if (read_fixture(&a, "request_full.json", &r, &err))
        fail_msg("read_request: %s", err.msg);
    egress_init(&e, true, "sk-x");
    e.ctx.stream = r.stream;
    drops_reset();
    if (ops()->write_request(&a, &r, &e.ctx, &e.req, &err))
        fail_msg("write_request: %s", err.msg);
    assert_body_golden(&e, "egress_from_client.json");
    assert_string_equal(drops_text(), "thinking");
    egress_free(&e);

    /* the legacy request: functions become tools, the function message a tool message */
    bb_arena_free(&a);
    bb_arena_init(&a, 0);
    if (read_fixture(&a, "request_legacy.json", &r, &err))
        fail_msg("read_request: %s", err.msg);
    egress_init(&e, false, "sk-x");
    drops_reset();
    assert_int_equal(ops()->write_request(&a, &r, &e.ctx, &e.req, &err), 0);
    assert_body_golden(&e, "egress_from_legacy.json");
    assert_string_equal(drops_text(), "top_k,reasoning");
    egress_free(&e);
    bb_arena_free(&a);
}

static void test_write_request_errors(void **state)
{
    (void)state;
    static struct bb_ir_block u[] = {{.type = BB_IR_TEXT, .text = LIT("hi")}};
    static struct bb_ir_message m[] = {{.role = BB_IR_USER, .blocks = u, .n_blocks = 1}};
    static struct bb_ir_tool bad[] = {{.name = LIT("f"), .parameters_json = LIT("{\"type\":")}};
    struct bb_ir_request ir = {.messages = m, .n_messages = 1, .tools = bad, .n_tools = 1};
    struct egress e;
    struct bb_arena a;
    struct bb_err err = {{0}};
    egress_init(&e, false, "k");
    bb_arena_init(&a, 0);
    assert_int_equal(ops()->write_request(&a, &ir, &e.ctx, &e.req, &err), -1);
    assert_string_equal(err.msg, "tools[0].parameters: not a JSON object");
    egress_free(&e);

    struct bb_ir_request ir2 = {.messages = m,
                                .n_messages = 1,
                                .format = BB_IR_FMT_JSON_SCHEMA,
                                .format_schema_json = LIT("[1]")};
    egress_init(&e, false, "k");
    assert_int_equal(ops()->write_request(&a, &ir2, &e.ctx, &e.req, &err), -1);
    assert_string_equal(err.msg, "response_format.json_schema.schema: not a JSON object");
    egress_free(&e);
    bb_arena_free(&a);
}

/* ---- (3) responses ---- */

static struct bb_ingress_ctx ictx(bool include_usage)
{
    struct bb_ingress_ctx c = {.request_id = "req123",
                               .model = "my-pool",
                               .created = 1750000000,
                               .include_usage = include_usage};
    return c;
}

/* provider body → read_response → write_response → golden */
static void roundtrip_response(const char *in, const char *golden, struct bb_ir_response *r,
                               struct bb_arena *a)
{
    size_t n;
    struct bb_err err = {{0}};
    char *body = slurp(in, &n);
    if (ops()->read_response(a, body, n, r, &err))
        fail_msg("read_response %s: %s", in, err.msg);
    free(body);
    struct evbuffer *out = evbuffer_new();
    struct bb_ingress_ctx c = ictx(false);
    assert_int_equal(ops()->write_response(a, r, &c, out), 0);
    char *s = buf_str(out, &n);
    assert_json_text_golden(s, n, golden);
    free(s);
    evbuffer_free(out);
}

static void test_responses(void **state)
{
    (void)state;
    struct bb_arena a;
    struct bb_ir_response r;
    bb_arena_init(&a, 0);

    roundtrip_response("response_tools.json", "response_tools.golden.json", &r, &a);
    assert_str(&r.id, "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT");
    assert_str(&r.model, "gpt-4o-2024-08-06");
    assert_true(r.created == 1741569952);
    assert_int_equal(r.stop, BB_IR_STOP_TOOL_USE);
    assert_int_equal(r.n_blocks, 2);
    assert_int_equal(r.blocks[0].type, BB_IR_TOOL_USE);
    assert_str(&r.blocks[0].id, "call_paris");
    assert_str(&r.blocks[0].input_json, "{\"city\":\"Paris\"}");
    assert_str(&r.blocks[1].id, "call_rome");
    assert_true(r.usage.set);
    assert_int_equal(r.usage.input, 176); /* 1200 prompt - 1024 cached */
    assert_int_equal(r.usage.cache_read, 1024);
    assert_int_equal(r.usage.cache_write, 0);
    assert_int_equal(r.usage.output, 40);

    roundtrip_response("response_reasoning.json", "response_reasoning.golden.json", &r, &a);
    assert_int_equal(r.stop, BB_IR_STOP_MAX_TOKENS);
    assert_int_equal(r.n_blocks, 2);
    assert_int_equal(r.blocks[0].type, BB_IR_THINKING);
    assert_str(&r.blocks[0].text, "The user wants a capital. Paris.");
    assert_null(r.blocks[0].signature.p);
    assert_str(&r.blocks[1].text, "Paris is the capital of France.");
    assert_non_null(r.blocks[1].citations_json.p);
    assert_int_equal(r.usage.reasoning, 100);
    assert_int_equal(r.usage.input, 30);

    roundtrip_response("response_refusal.json", "response_refusal.golden.json", &r, &a);
    assert_int_equal(r.stop, BB_IR_STOP_REFUSAL);
    assert_str(&r.blocks[0].text, "I can't help with that.");

    /* an IR answer from another protocol: signed thinking, tool use, cache writes, no id */
    static struct bb_ir_block blocks[] = {
        {.type = BB_IR_THINKING, .text = LIT("Let me look."), .signature = LIT("EqQBsig")},
        {.type = BB_IR_REDACTED_THINKING, .signature = LIT("cmVkYWN0ZWQ=")},
        {.type = BB_IR_TEXT, .text = LIT("Looking")},
        {.type = BB_IR_TEXT, .text = LIT(" it up.")},
        {.type = BB_IR_TOOL_USE,
         .id = LIT("toolu_01A"),
         .name = LIT("search"),
         .input_json = LIT("{\"q\":\"x\"}")},
    };
    struct bb_ir_response ir = {
        .blocks = blocks,
        .n_blocks = 5,
        .stop = BB_IR_STOP_END_TURN,
        .usage = {.set = true,
                  .input = 10,
                  .output = 20,
                  .cache_read = 30,
                  .cache_write = 40,
                  .reasoning = 5},
    };
    struct evbuffer *out = evbuffer_new();
    struct bb_ingress_ctx c = ictx(false);
    drops_reset();
    assert_int_equal(ops()->write_response(&a, &ir, &c, out), 0);
    size_t n;
    char *s = buf_str(out, &n);
    assert_json_text_golden(s, n, "response_from_ir.golden.json");
    free(s);
    evbuffer_free(out);

    /* and what the client sends back next turn restores the signatures */
    struct bb_err err = {{0}};
    struct bb_ir_request req;
    const char *next =
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"q\"},"
        "{\"role\":\"assistant\",\"content\":\"Looking it up.\",\"reasoning_content\":\"Let me "
        "look.\",\"thinking_blocks\":[{\"type\":\"thinking\",\"thinking\":\"Let me look.\","
        "\"signature\":\"EqQBsig\"},{\"type\":\"redacted_thinking\",\"data\":\"cmVkYWN0ZWQ=\"}],"
        "\"tool_calls\":[{\"id\":\"toolu_01A\",\"type\":\"function\",\"function\":{\"name\":"
        "\"search\",\"arguments\":\"{\\\"q\\\":\\\"x\\\"}\"}}]}]}";
    assert_int_equal(ops()->read_request(&a, next, strlen(next), NULL, &req, &err), 0);
    const struct bb_ir_message *m = &req.messages[1];
    assert_int_equal(m->n_blocks, 4);
    assert_str(&m->blocks[0].signature, "EqQBsig");
    assert_int_equal(m->blocks[1].type, BB_IR_REDACTED_THINKING);
    assert_str(&m->blocks[1].signature, "cmVkYWN0ZWQ=");
    assert_str(&m->blocks[3].input_json, "{\"q\":\"x\"}");
    bb_arena_free(&a);
}

static void test_read_response_errors(void **state)
{
    (void)state;
    static const struct {
        const char *body, *error;
    } cases[] = {
        {"{\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}", "upstream error: boom"},
        {"{\"object\":\"chat.completion\"}", "upstream response: choices: expected an array"},
        {"[1]", "upstream response: expected a JSON object"},
        {"<html>", "upstream response: invalid JSON (unexpected character at byte 0)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct bb_arena a;
        struct bb_err err = {{0}};
        struct bb_ir_response r;
        bb_arena_init(&a, 0);
        assert_int_equal(ops()->read_response(&a, cases[i].body, strlen(cases[i].body), &r, &err),
                         -1);
        if (strncmp(err.msg, cases[i].error, strlen(cases[i].error)) != 0)
            fail_msg("case %zu: '%s', want '%s'", i, err.msg, cases[i].error);
        bb_arena_free(&a);
    }
}

/* ---- (4) streams ---- */

/* Decoder → IR events (dumped one per line and checked for order) → encoder. */
struct run {
    void *dec, *enc;
    struct bb_arena scratch;
    struct evbuffer *out;
    struct evbuffer *events;
    int rc;
    /* event order checks: one text or reasoning block open at a time; tool calls may be open
     * together (their arguments interleave), never beside text */
    bool started, stopped, errored;
    uint32_t next_index, n_open;
    bool open[64], open_tool[64];
};

static void ev_str(struct evbuffer *b, const char *label, const struct bb_ir_str *s)
{
    if (!s->p)
        return;
    json_object *o = json_object_new_string_len(s->p, (int)s->len);
    evbuffer_add_printf(b, " %s=%s", label,
                        json_object_to_json_string_ext(o, JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(o);
}

static const char *block_name(enum bb_ir_block_type t)
{
    static const char *n[] = {"text",        "thinking", "redacted_thinking", "tool_use",
                              "tool_result", "image",    "document"};
    return n[t];
}

static void ev_line(struct evbuffer *b, const struct bb_ir_event *ev)
{
    static const char *deltas[] = {"text",       "thinking", "signature",
                                   "input_json", "redacted", "citation"};
    switch (ev->type) {
    case BB_IR_EV_MESSAGE_START:
        evbuffer_add_printf(b, "message_start");
        ev_str(b, "id", &ev->id);
        ev_str(b, "model", &ev->model);
        break;
    case BB_IR_EV_BLOCK_START:
        evbuffer_add_printf(b, "block_start %u %s", ev->index, block_name(ev->block_type));
        ev_str(b, "id", &ev->id);
        ev_str(b, "name", &ev->name);
        break;
    case BB_IR_EV_BLOCK_DELTA:
        evbuffer_add_printf(b, "delta %u %s", ev->index, deltas[ev->delta]);
        ev_str(b, "text", &ev->text);
        break;
    case BB_IR_EV_BLOCK_STOP:
        evbuffer_add_printf(b, "block_stop %u", ev->index);
        break;
    case BB_IR_EV_MESSAGE_DELTA:
        evbuffer_add_printf(b, "message_delta stop=%s", bb_ir_stop_name(ev->stop));
        if (ev->usage.set)
            evbuffer_add_printf(b,
                                " usage=in:%" PRIu64 ",out:%" PRIu64 ",cr:%" PRIu64 ",cw:%" PRIu64
                                ",rs:%" PRIu64,
                                ev->usage.input, ev->usage.output, ev->usage.cache_read,
                                ev->usage.cache_write, ev->usage.reasoning);
        break;
    case BB_IR_EV_MESSAGE_STOP:
        evbuffer_add_printf(b, "message_stop");
        break;
    case BB_IR_EV_ERROR:
        evbuffer_add_printf(b, "error status=%d", ev->error_status);
        ev_str(b, "type", &ev->error_type);
        ev_str(b, "text", &ev->text);
        break;
    case BB_IR_EV_PING:
        evbuffer_add_printf(b, "ping");
        break;
    }
    evbuffer_add(b, "\n", 1);
}

static void check_order(struct run *r, const struct bb_ir_event *ev)
{
    assert_false(r->stopped);
    assert_false(r->errored);
    if (ev->type != BB_IR_EV_MESSAGE_START && ev->type != BB_IR_EV_ERROR)
        assert_true(r->started);
    switch (ev->type) {
    case BB_IR_EV_MESSAGE_START:
        assert_false(r->started);
        r->started = true;
        break;
    case BB_IR_EV_BLOCK_START: {
        bool tool = ev->block_type == BB_IR_TOOL_USE;
        assert_int_equal(ev->index, r->next_index);
        assert_true(ev->index < 64);
        for (uint32_t i = 0; i < r->next_index; i++)
            assert_true(!r->open[i] || (tool && r->open_tool[i]));
        r->open[ev->index] = true;
        r->open_tool[ev->index] = tool;
        r->next_index++;
        r->n_open++;
        break;
    }
    case BB_IR_EV_BLOCK_DELTA:
        assert_true(ev->index < 64 && r->open[ev->index]); /* never after its BLOCK_STOP */
        break;
    case BB_IR_EV_BLOCK_STOP:
        assert_true(ev->index < 64 && r->open[ev->index]);
        r->open[ev->index] = false;
        r->n_open--;
        break;
    case BB_IR_EV_MESSAGE_DELTA:
        assert_int_equal(r->n_open, 0);
        break;
    case BB_IR_EV_MESSAGE_STOP:
        assert_int_equal(r->n_open, 0);
        r->stopped = true;
        break;
    case BB_IR_EV_ERROR:
        r->errored = true;
        break;
    case BB_IR_EV_PING:
        break;
    }
}

static int on_ir(void *arg, const struct bb_ir_event *ev)
{
    struct run *r = arg;
    ev_line(r->events, ev);
    check_order(r, ev);
    return ops()->enc_event(r->enc, &r->scratch, ev, r->out);
}

static int on_sse(void *arg, const struct bb_sse_event *ev)
{
    struct run *r = arg;
    struct bb_frame f = {
        .event = ev->event, .event_len = ev->event_len, .data = ev->data, .data_len = ev->data_len};
    int rc = ops()->dec_frame(r->dec, &r->scratch, &f, on_ir, r);
    if (rc)
        r->rc = rc;
    return rc;
}

static void run_init(struct run *r, bool include_usage)
{
    memset(r, 0, sizeof *r);
    r->dec = calloc(1, ops()->dec_size);
    r->enc = calloc(1, ops()->enc_size);
    ops()->dec_init(r->dec);
    struct bb_ingress_ctx c = ictx(include_usage);
    ops()->enc_init(r->enc, &c);
    bb_arena_init(&r->scratch, 0);
    r->out = evbuffer_new();
    r->events = evbuffer_new();
}

static void run_free(struct run *r)
{
    free(r->dec);
    free(r->enc);
    bb_arena_free(&r->scratch);
    evbuffer_free(r->out);
    evbuffer_free(r->events);
}

/* Feed a transcript through the SSE framer in pieces of `step` bytes (0 = whole); each piece
 * is an exact-size heap copy so ASan sees any overread. */
static void run_feed(struct run *r, const char *s, size_t n, size_t step)
{
    struct bb_sse sse;
    bb_sse_init(&sse, 1u << 20);
    for (size_t at = 0; at < n;) {
        size_t len = step ? (n - at < step ? n - at : step) : n;
        char *piece = malloc(len);
        memcpy(piece, s + at, len);
        int rc = bb_sse_feed(&sse, piece, len, on_sse, r);
        free(piece);
        assert_int_equal(rc, 0);
        at += len;
    }
    bb_sse_free(&sse);
}

static void stream_case(const char *name, bool include_usage)
{
    char in[256], out_golden[256], ev_golden[256];
    snprintf(in, sizeof in, "%s.sse", name);
    snprintf(out_golden, sizeof out_golden, "%s.out.sse", name);
    snprintf(ev_golden, sizeof ev_golden, "%s.events", name);
    size_t n;
    char *s = slurp(in, &n);
    char *first_out = NULL, *first_ev = NULL;
    size_t first_out_n = 0, first_ev_n = 0;
    size_t steps[] = {0, 1, 7};
    for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++) {
        struct run r;
        run_init(&r, include_usage);
        run_feed(&r, s, n, steps[k]);
        assert_int_equal(r.rc, 0);
        size_t on, en;
        char *o = buf_str(r.out, &on), *e = buf_str(r.events, &en);
        if (k == 0) {
            assert_sse_golden(o, on, out_golden);
            assert_text_golden(e, en, ev_golden);
            first_out = o;
            first_out_n = on;
            first_ev = e;
            first_ev_n = en;
        } else { /* byte-at-a-time delivery gives exactly the same result */
            assert_int_equal(on, first_out_n);
            assert_memory_equal(o, first_out, on);
            assert_int_equal(en, first_ev_n);
            assert_memory_equal(e, first_ev, en);
            free(o);
            free(e);
        }
        run_free(&r);
    }
    free(first_out);
    free(first_ev);
    free(s);
}

static void test_stream_text(void **state)
{
    (void)state;
    stream_case("stream_text", true);
}

static void test_stream_tools(void **state)
{
    (void)state;
    stream_case("stream_tools", true);
}

static void test_stream_tools_interleaved(void **state)
{
    (void)state;
    stream_case("stream_tools_interleaved", true);
}

static void test_stream_thinking(void **state)
{
    (void)state;
    stream_case("stream_thinking", false);
}

static void test_stream_error(void **state)
{
    (void)state;
    stream_case("stream_error", true);
}

static void test_stream_no_usage(void **state)
{
    (void)state;
    stream_case("stream_no_usage", true);
}

static void test_stream_azure_legacy(void **state)
{
    (void)state;
    stream_case("stream_azure_legacy", false);
}

/* The encoder fed an Anthropic-shaped event sequence: signed thinking, text, tool use
 * interleaved with text, usage only at MESSAGE_DELTA; then its output decoded back. */
static void test_encoder_from_ir(void **state)
{
    (void)state;
    struct bb_ir_usage u0 = {.set = true, .input = 100, .cache_read = 50, .cache_write = 25};
    struct bb_ir_usage u1 = {
        .set = true, .input = 100, .output = 42, .cache_read = 50, .cache_write = 25};
    const struct bb_ir_event evs[] = {
        {.type = BB_IR_EV_MESSAGE_START,
         .id = S("msg_01XFDUDYJgAACzvnptvVoYEL"),
         .model = S("claude-sonnet-4-5"),
         .usage = u0},
        {.type = BB_IR_EV_PING},
        {.type = BB_IR_EV_BLOCK_START, .index = 0, .block_type = BB_IR_THINKING},
        {.type = BB_IR_EV_BLOCK_DELTA, .index = 0, .delta = BB_IR_D_THINKING, .text = S("Plan.")},
        {.type = BB_IR_EV_BLOCK_DELTA, .index = 0, .delta = BB_IR_D_SIGNATURE, .text = S("c2ln")},
        {.type = BB_IR_EV_BLOCK_STOP, .index = 0},
        {.type = BB_IR_EV_BLOCK_START, .index = 1, .block_type = BB_IR_REDACTED_THINKING},
        {.type = BB_IR_EV_BLOCK_DELTA, .index = 1, .delta = BB_IR_D_REDACTED, .text = S("cmVk")},
        {.type = BB_IR_EV_BLOCK_STOP, .index = 1},
        {.type = BB_IR_EV_BLOCK_START, .index = 2, .block_type = BB_IR_TEXT},
        {.type = BB_IR_EV_BLOCK_DELTA, .index = 2, .delta = BB_IR_D_TEXT, .text = S("First ")},
        {.type = BB_IR_EV_BLOCK_DELTA, .index = 2, .delta = BB_IR_D_TEXT, .text = S("")},
        {.type = BB_IR_EV_BLOCK_STOP, .index = 2},
        {.type = BB_IR_EV_BLOCK_START,
         .index = 3,
         .block_type = BB_IR_TOOL_USE,
         .id = S("toolu_A"),
         .name = S("search")},
        {.type = BB_IR_EV_BLOCK_DELTA,
         .index = 3,
         .delta = BB_IR_D_INPUT_JSON,
         .text = S("{\"q\":")},
        {.type = BB_IR_EV_BLOCK_DELTA, .index = 3, .delta = BB_IR_D_INPUT_JSON, .text = S("1}")},
        {.type = BB_IR_EV_BLOCK_STOP, .index = 3},
        {.type = BB_IR_EV_BLOCK_START, .index = 4, .block_type = BB_IR_TEXT},
        {.type = BB_IR_EV_BLOCK_DELTA, .index = 4, .delta = BB_IR_D_TEXT, .text = S("then")},
        {.type = BB_IR_EV_BLOCK_DELTA, .index = 4, .delta = BB_IR_D_CITATION, .text = S("{}")},
        {.type = BB_IR_EV_BLOCK_STOP, .index = 4},
        {.type = BB_IR_EV_BLOCK_START,
         .index = 5,
         .block_type = BB_IR_TOOL_USE,
         .id = S("toolu_B"),
         .name = S("fetch")},
        {.type = BB_IR_EV_BLOCK_DELTA, .index = 5, .delta = BB_IR_D_INPUT_JSON, .text = S("{}")},
        {.type = BB_IR_EV_BLOCK_STOP, .index = 5},
        {.type = BB_IR_EV_MESSAGE_DELTA, .stop = BB_IR_STOP_TOOL_USE, .usage = u1},
        {.type = BB_IR_EV_MESSAGE_STOP},
        {.type = BB_IR_EV_MESSAGE_STOP}, /* anything after the terminator is ignored */
    };
    struct run r;
    run_init(&r, true);
    for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++)
        assert_int_equal(ops()->enc_event(r.enc, &r.scratch, &evs[i], r.out), 0);
    size_t n;
    char *s = buf_str(r.out, &n);
    assert_sse_golden(s, n, "enc_from_ir.out.sse");
    run_free(&r);

    /* decoding our own output gives the same blocks back (ids, signature, redacted data) */
    run_init(&r, true);
    run_feed(&r, s, n, 0);
    assert_int_equal(r.rc, 0);
    size_t en;
    char *e = buf_str(r.events, &en);
    assert_text_golden(e, en, "enc_from_ir.events");
    free(e);
    free(s);
    run_free(&r);

    /* usage only at MESSAGE_DELTA without a stop, no MESSAGE_START, a call without
     * arguments; then (below) an error ends a stream without [DONE] */
    run_init(&r, true);
    const struct bb_ir_event evs2[] = {
        {.type = BB_IR_EV_BLOCK_START, .index = 0, .block_type = BB_IR_TEXT},
        {.type = BB_IR_EV_BLOCK_DELTA, .index = 0, .delta = BB_IR_D_TEXT, .text = S("x")},
        {.type = BB_IR_EV_BLOCK_STOP, .index = 0},
        {.type = BB_IR_EV_BLOCK_START,
         .index = 1,
         .block_type = BB_IR_TOOL_USE,
         .id = S("toolu_C"),
         .name = S("now")},
        {.type = BB_IR_EV_BLOCK_STOP, .index = 1}, /* no arguments streamed: "{}" */
        {.type = BB_IR_EV_MESSAGE_DELTA, .usage = u1},
        {.type = BB_IR_EV_MESSAGE_STOP},
    };
    for (size_t i = 0; i < sizeof evs2 / sizeof evs2[0]; i++)
        assert_int_equal(ops()->enc_event(r.enc, &r.scratch, &evs2[i], r.out), 0);
    s = buf_str(r.out, &n);
    assert_sse_golden(s, n, "enc_usage_only.out.sse");
    free(s);
    run_free(&r);

    /* two calls open at once (IR from a dialect that interleaves them), neither with
     * arguments: each gets its own "{}" under its own index */
    run_init(&r, true);
    const struct bb_ir_event evs4[] = {
        {.type = BB_IR_EV_BLOCK_START,
         .index = 0,
         .block_type = BB_IR_TOOL_USE,
         .id = S("call_1"),
         .name = S("a")},
        {.type = BB_IR_EV_BLOCK_START,
         .index = 1,
         .block_type = BB_IR_TOOL_USE,
         .id = S("call_2"),
         .name = S("b")},
        {.type = BB_IR_EV_BLOCK_STOP, .index = 0},
        {.type = BB_IR_EV_BLOCK_STOP, .index = 1},
        {.type = BB_IR_EV_MESSAGE_STOP},
    };
    for (size_t i = 0; i < sizeof evs4 / sizeof evs4[0]; i++)
        assert_int_equal(ops()->enc_event(r.enc, &r.scratch, &evs4[i], r.out), 0);
    s = buf_str(r.out, &n);
    assert_non_null(strstr(s, "{\"index\":0,\"function\":{\"arguments\":\"{}\"}}"));
    assert_non_null(strstr(s, "{\"index\":1,\"function\":{\"arguments\":\"{}\"}}"));
    free(s);
    run_free(&r);

    run_init(&r, true);
    const struct bb_ir_event evs3[] = {
        {.type = BB_IR_EV_MESSAGE_START, .model = S("m")},
        {.type = BB_IR_EV_ERROR,
         .text = S("Overloaded"),
         .error_type = S("overloaded_error"),
         .error_status = 529},
        {.type = BB_IR_EV_MESSAGE_STOP},
    };
    for (size_t i = 0; i < sizeof evs3 / sizeof evs3[0]; i++)
        assert_int_equal(ops()->enc_event(r.enc, &r.scratch, &evs3[i], r.out), 0);
    s = buf_str(r.out, &n);
    assert_sse_golden(s, n, "enc_error.out.sse");
    assert_null(strstr(s, "[DONE]"));
    free(s);
    run_free(&r);
}

static int stop_cb(void *arg, const struct bb_ir_event *ev)
{
    (void)arg;
    (void)ev;
    return 9;
}

static void test_decoder_edges(void **state)
{
    (void)state;
    struct run r;
    run_init(&r, false);
    struct bb_frame bad = {.event = "", .data = "{\"id\":", .data_len = 6};
    assert_int_equal(ops()->dec_frame(r.dec, &r.scratch, &bad, on_ir, &r), -1);
    struct bb_frame arr = {.event = "", .data = "[1]", .data_len = 3};
    assert_int_equal(ops()->dec_frame(r.dec, &r.scratch, &arr, on_ir, &r), -1);
    run_free(&r);

    /* an `event: error` frame with a flat body; [DONE] alone still makes a whole message */
    run_init(&r, false);
    const char *t = "event: error\ndata: {\"message\":\"bad\",\"code\":503}\n\n";
    run_feed(&r, t, strlen(t), 0);
    size_t n;
    char *e = buf_str(r.events, &n);
    assert_string_equal(e, "error status=503 text=\"bad\"\n");
    free(e);
    run_free(&r);

    run_init(&r, false);
    t = "data: [DONE]\n\n";
    run_feed(&r, t, strlen(t), 0);
    e = buf_str(r.events, &n);
    assert_string_equal(e, "message_start\nmessage_delta stop=end_turn\nmessage_stop\n");
    free(e);
    run_free(&r);

    /* the callback's non-zero return stops decoding and is returned */
    run_init(&r, false);
    struct bb_frame fr = {.event = "", .data = "[DONE]", .data_len = 6};
    assert_int_equal(ops()->dec_frame(r.dec, &r.scratch, &fr, stop_cb, NULL), 9);
    run_free(&r);
}

/* ---- errors ---- */

static void test_read_error(void **state)
{
    (void)state;
    static const struct {
        const char *body, *code, *type, *message;
        int rc;
    } cases[] = {
        {"{\"error\":{\"message\":\"This model's maximum context length is 128000 tokens.\","
         "\"type\":\"invalid_request_error\",\"param\":\"messages\",\"code\":"
         "\"context_length_exceeded\"}}",
         "context_length_exceeded", "invalid_request_error",
         "This model's maximum context length is 128000 tokens.", 0},
        {"{\"error\":{\"message\":\"Rate limit reached\",\"type\":\"requests\",\"param\":null,"
         "\"code\":null}}",
         "", "requests", "Rate limit reached", 0},
        {"{\"error\":{\"message\":\"quota\",\"type\":\"insufficient_quota\",\"code\":429}}", "429",
         "insufficient_quota", "quota", 0},
        {"{\"object\":\"error\",\"message\":\"vllm says no\",\"type\":\"BadRequestError\","
         "\"code\":400}",
         "400", "BadRequestError", "vllm says no", 0},
        {"[{\"error\":{\"code\":429,\"message\":\"Resource exhausted\",\"status\":"
         "\"RESOURCE_EXHAUSTED\"}}]",
         "429", "", "Resource exhausted", 0},
        {"{\"error\":\"plain text error\"}", "", "", "plain text error", 0},
        {"<html>502 Bad Gateway</html>", "", "", "", -1},
        {"{\"ok\":true}", "", "", "", -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct bb_proto_error pe;
        int rc = ops()->read_error(cases[i].body, strlen(cases[i].body), &pe);
        assert_int_equal(rc, cases[i].rc);
        assert_string_equal(pe.code, cases[i].code);
        assert_string_equal(pe.type, cases[i].type);
        assert_string_equal(pe.message, cases[i].message);
    }
}

static void test_ops_table(void **state)
{
    (void)state;
    const struct bb_proto_ops *o = ops();
    assert_ptr_equal(o, &bb_proto_openai);
    assert_int_equal(o->id, BB_PROTO_OPENAI);
    assert_int_equal(o->framing, BB_FRAMING_SSE);
    struct bb_ingress_ctx c = ictx(false);
    assert_string_equal(o->stream_content_type(&c), "text/event-stream");
    assert_non_null(o->read_request);
    assert_non_null(o->write_request);
    assert_non_null(o->read_response);
    assert_non_null(o->write_response);
    assert_non_null(o->enc_event);
    assert_non_null(o->dec_frame);
    assert_non_null(o->read_error);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ops_table),
        cmocka_unit_test(test_read_request_full),
        cmocka_unit_test(test_read_request_legacy),
        cmocka_unit_test(test_read_request_system_in_place),
        cmocka_unit_test(test_read_request_errors),
        cmocka_unit_test(test_write_request_ir),
        cmocka_unit_test(test_write_request_from_client),
        cmocka_unit_test(test_write_request_errors),
        cmocka_unit_test(test_responses),
        cmocka_unit_test(test_read_response_errors),
        cmocka_unit_test(test_stream_text),
        cmocka_unit_test(test_stream_tools),
        cmocka_unit_test(test_stream_tools_interleaved),
        cmocka_unit_test(test_stream_thinking),
        cmocka_unit_test(test_stream_error),
        cmocka_unit_test(test_stream_no_usage),
        cmocka_unit_test(test_stream_azure_legacy),
        cmocka_unit_test(test_encoder_from_ir),
        cmocka_unit_test(test_decoder_edges),
        cmocka_unit_test(test_read_error),
    };
    return cmocka_run_group_tests_name("proto_openai", tests, NULL, NULL);
}
