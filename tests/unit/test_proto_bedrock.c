/*
 * test_proto_bedrock: the Bedrock Converse module (worker/proto_bedrock) against golden fixtures
 * in tests/fixtures/proto/bedrock: ingress request → IR (every mapped field) and malformed
 * inputs; IR → upstream body, path and SigV4/bearer headers; provider response → IR → the
 * client response; native ConverseStream transcripts → decoder → IR events → encoder → event
 * stream, decoded again and compared, fed whole and one byte at a time.
 *
 * Set BB_UPDATE_GOLDEN=1 to rewrite the golden files from the current output (then review them),
 * BB_DUMP_DIR=dir to keep the encoded streams (to check them with the AWS SDK itself).
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

#include "worker/eventstream.h"
#include "worker/proto.h"

#define FIX "../fixtures/proto/bedrock/"

static const struct bb_proto_ops *P;

#include "proto_test_common.h"

/* ---------------------------------------------------------------- helpers */

static const char *evstr(struct evbuffer *b)
{
    evbuffer_add(b, "", 1);
    const char *s = (const char *)evbuffer_pullup(b, -1);
    return s;
}

static int setup(void **state)
{
    (void)state;
    P = bb_proto_get(BB_PROTO_BEDROCK);
    assert_non_null(P);
    drops_reset();
    return 0;
}

/* ---------------------------------------------------------------- ingress */

static void test_read_request_full(void **state)
{
    (void)state;
    size_t n;
    char *body = slurp("request_full.json", &n);
    struct bb_arena a;
    bb_arena_init(&a, 0);
    struct bb_ir_request r;
    struct bb_err err = {{0}};
    assert_int_equal(P->read_request(&a, body, n, "us.anthropic.claude-sonnet-4:0", &r, &err), 0);
    assert_str(&r.model, "us.anthropic.claude-sonnet-4:0");

    /* system, with the cache point on the block before it */
    assert_int_equal(r.n_system, 2);
    assert_str(&r.system[0].text, "You are a terse assistant.");
    assert_true(r.system[0].cache_control);
    assert_str(&r.system[1].text, "Answer in English.");
    assert_false(r.system[1].cache_control);

    assert_int_equal(r.n_messages, 3);
    /* user: text, base64 image, (S3 image skipped), pdf document */
    const struct bb_ir_message *m = &r.messages[0];
    assert_int_equal(m->role, BB_IR_USER);
    assert_int_equal(m->n_blocks, 3);
    assert_int_equal(m->blocks[0].type, BB_IR_TEXT);
    assert_int_equal(m->blocks[1].type, BB_IR_IMAGE);
    assert_str(&m->blocks[1].media_type, "image/png");
    assert_true(m->blocks[1].data.len > 20 && !memcmp(m->blocks[1].data.p, "iVBORw0KGgo", 11));
    assert_int_equal(m->blocks[2].type, BB_IR_DOCUMENT);
    assert_str(&m->blocks[2].media_type, "application/pdf");
    assert_str(&m->blocks[2].data, "JVBERi0xLjQK");
    assert_str(&m->blocks[2].name, "report");
    assert_true(has_unsupported(&r, "image.s3Location"));

    /* assistant: thinking + signature, redacted, text, two parallel tool calls */
    m = &r.messages[1];
    assert_int_equal(m->role, BB_IR_ASSISTANT);
    assert_int_equal(m->n_blocks, 5);
    assert_int_equal(m->blocks[0].type, BB_IR_THINKING);
    assert_str(&m->blocks[0].text, "Two cities: call the tool twice.");
    assert_str(&m->blocks[0].signature, "sig-abc123");
    assert_int_equal(m->blocks[1].type, BB_IR_REDACTED_THINKING);
    assert_str(&m->blocks[1].signature, "cmVkYWN0ZWQ=");
    assert_str(&m->blocks[2].text, "A red pixel. Checking the weather.");
    assert_int_equal(m->blocks[3].type, BB_IR_TOOL_USE);
    assert_str(&m->blocks[3].id, "tooluse_paris");
    assert_str(&m->blocks[3].name, "get_weather");
    assert_str(&m->blocks[3].input_json, "{\"city\":\"Paris\",\"unit\":\"c\"}");
    assert_str(&m->blocks[4].id, "tooluse_rome");
    assert_str(&m->blocks[4].input_json, "{\"city\":\"Rome\"}");

    /* user: tool results (json content → text, error status), text with a cache point */
    m = &r.messages[2];
    assert_int_equal(m->role, BB_IR_USER);
    assert_int_equal(m->n_blocks, 3);
    assert_int_equal(m->blocks[0].type, BB_IR_TOOL_RESULT);
    assert_str(&m->blocks[0].id, "tooluse_paris");
    assert_str(&m->blocks[0].text, "{\"temp\":21,\"sky\":\"clear\"}");
    assert_false(m->blocks[0].is_error);
    assert_str(&m->blocks[1].id, "tooluse_rome");
    assert_str(&m->blocks[1].text, "service down");
    assert_true(m->blocks[1].is_error);
    assert_true(m->blocks[1].cache_control);
    assert_str(&m->blocks[2].text, "Summarise.");

    /* sampling, stop, max tokens */
    assert_true(r.has_max_tokens);
    assert_int_equal(r.max_tokens, 2048);
    assert_true(r.has_temperature);
    assert_true(r.temperature == 0.7);
    assert_true(r.has_top_p);
    assert_true(r.top_p == 0.9);
    assert_true(r.has_top_k);
    assert_int_equal(r.top_k, 40);
    assert_int_equal(r.n_stop, 2);
    assert_str(&r.stop[0], "END");
    assert_str(&r.stop[1], "STOP");

    /* tools and tool choice */
    assert_int_equal(r.n_tools, 1);
    assert_str(&r.tools[0].name, "get_weather");
    assert_str(&r.tools[0].description, "Current weather for a city");
    assert_true(strstr(r.tools[0].parameters_json.p, "\"required\":[\"city\"]") != NULL);
    assert_int_equal(r.tool_choice, BB_IR_TC_TOOL);
    assert_str(&r.tool_choice_name, "get_weather");
    /* a cachePoint after a tool marks it (the tools up to there are cached) */
    assert_true(r.tools[0].cache_control);
    assert_false(has_unsupported(&r, "toolConfig.cachePoint"));

    /* reasoning ask, structured output */
    assert_true(r.reasoning);
    assert_int_equal(r.reasoning_budget, 1600);
    assert_int_equal(r.format, BB_IR_FMT_JSON_SCHEMA);
    assert_str(&r.format_name, "summary");
    assert_true(strstr(r.format_schema_json.p, "\"type\":\"object\"") != NULL);

    /* fields the IR cannot carry */
    assert_true(has_unsupported(&r, "guardrailConfig"));
    assert_true(has_unsupported(&r, "requestMetadata"));
    assert_true(has_unsupported(&r, "additionalModelRequestFields.anthropic_beta"));
    assert_false(r.stream);

    bb_arena_free(&a);
    free(body);
}

/* A body serialised by @aws-sdk/client-bedrock-runtime itself (Uint8Array → base64). */
static void test_read_request_sdk(void **state)
{
    (void)state;
    size_t n;
    char *body = slurp("request_sdk.json", &n);
    struct bb_arena a;
    bb_arena_init(&a, 0);
    struct bb_ir_request r;
    struct bb_err err = {{0}};
    assert_int_equal(
        P->read_request(&a, body, n, "us.anthropic.claude-3-7-sonnet-20250219-v1:0", &r, &err), 0);
    assert_int_equal(r.n_system, 1);
    assert_true(r.system[0].cache_control);
    assert_int_equal(r.n_messages, 3);
    const struct bb_ir_block *b = r.messages[0].blocks;
    assert_int_equal(r.messages[0].n_blocks, 3);
    assert_str(&b[1].data, "iVBORw==");
    assert_str(&b[1].media_type, "image/png");
    assert_int_equal(b[2].type, BB_IR_DOCUMENT);
    assert_str(&b[2].media_type, "text/plain");
    assert_str(&b[2].data, "aGVsbG8=");
    b = r.messages[1].blocks;
    assert_str(&b[0].signature, "sig");
    assert_int_equal(b[1].type, BB_IR_REDACTED_THINKING);
    assert_str(&b[1].signature, "c2VjcmV0");
    assert_str(&b[2].input_json, "{\"a\":[1,2.5,null,true]}");
    b = r.messages[2].blocks;
    assert_int_equal(b[0].type, BB_IR_TOOL_RESULT);
    assert_str(&b[0].text, "{\"ok\":1}\nand text"); /* the joined flat form too */
    assert_int_equal(b[0].n_content, 2);
    assert_str(&b[0].content[0].text, "{\"ok\":1}");
    assert_str(&b[0].content[1].text, "and text");
    assert_int_equal(r.tool_choice, BB_IR_TC_ANY);
    assert_int_equal(r.top_k, 5);
    assert_true(r.top_p == 0.95);
    assert_int_equal(r.n_unsupported, 0);
    bb_arena_free(&a);
    free(body);
}

static void test_read_request_errors(void **state)
{
    (void)state;
    static const struct {
        const char *body, *err;
    } cases[] = {
        {"[]", "request body: expected a JSON object"},
        {"{\"messages\":[", "request body: invalid JSON (unexpected end of input at byte 13)"},
        {"{} x", "request body: invalid JSON (trailing characters after the object at byte 3)"},
        {"{\"messages\":{}}", "messages: expected an array"},
        {"{\"messages\":[1]}", "messages[0]: expected an object"},
        {"{\"messages\":[{\"role\":\"system\",\"content\":[]}]}",
         "messages[0].role: expected \"user\" or \"assistant\""},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
         "messages[0].content: expected an array"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"a\"},{\"text\":5}]}]}",
         "messages[0].content[1].text: expected a string"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":[\"hi\"]}]}",
         "messages[0].content[0]: expected an object"},
        {"{\"messages\":[{\"role\":\"assistant\",\"content\":[{\"toolUse\":{\"name\":\"x\"}}]}]}",
         "messages[0].content[0].toolUse.toolUseId: required"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"toolResult\":{\"toolUseId\":\"t\","
         "\"content\":\"x\"}}]}]}",
         "messages[0].content[0].toolResult.content: expected an array"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"image\":{\"format\":\"png\","
         "\"source\":{\"bytes\":5}}}]}]}",
         "messages[0].content[0].image.source.bytes: expected a base64 string"},
        {"{\"messages\":[{\"role\":\"assistant\",\"content\":[{\"reasoningContent\":"
         "{\"reasoningText\":{\"signature\":\"s\"}}}]}]}",
         "messages[0].content[0].reasoningContent.reasoningText.text: required"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"document\":{\"format\":5,"
         "\"name\":\"d\",\"source\":{\"bytes\":\"aGk=\"}}}]}]}",
         "messages[0].content[0].document.format: expected a string"},
        {"{\"system\":\"be nice\"}", "system: expected an array"},
        {"{\"system\":[{\"text\":1}]}", "system[0].text: expected a string"},
        {"{\"inferenceConfig\":[]}", "inferenceConfig: expected an object"},
        {"{\"inferenceConfig\":{\"maxTokens\":\"10\"}}",
         "inferenceConfig.maxTokens: expected an integer"},
        {"{\"inferenceConfig\":{\"maxTokens\":-1}}", "inferenceConfig.maxTokens: out of range"},
        {"{\"inferenceConfig\":{\"temperature\":\"hot\"}}",
         "inferenceConfig.temperature: expected a number"},
        {"{\"inferenceConfig\":{\"stopSequences\":[\"a\",1]}}",
         "inferenceConfig.stopSequences[1]: expected a string"},
        {"{\"toolConfig\":{\"tools\":[{\"toolSpec\":{\"name\":\"a\",\"inputSchema\":"
         "{\"json\":\"x\"}}}]}}",
         "toolConfig.tools[0].toolSpec.inputSchema.json: expected an object"},
        {"{\"toolConfig\":{\"tools\":[{\"toolSpec\":{\"description\":\"d\"}}]}}",
         "toolConfig.tools[0].toolSpec.name: required"},
        {"{\"toolConfig\":{\"toolChoice\":{\"none\":{}}}}",
         "toolConfig.toolChoice: expected one of auto, any or tool"},
        {"{\"additionalModelRequestFields\":{\"top_k\":1.5}}",
         "additionalModelRequestFields.top_k: expected an integer"},
        {"{\"outputConfig\":{\"textFormat\":{\"type\":\"json_schema\",\"structure\":"
         "{\"jsonSchema\":{\"schema\":\"{nope\"}}}}}",
         "outputConfig.textFormat.structure.jsonSchema.schema: expected a JSON schema text"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct bb_arena a;
        bb_arena_init(&a, 0);
        struct bb_ir_request r;
        struct bb_err err = {{0}};
        int rc = P->read_request(&a, cases[i].body, strlen(cases[i].body), "m", &r, &err);
        if (rc != -1 || strcmp(err.msg, cases[i].err) != 0)
            fail_msg("case %zu (%s): rc %d, err '%s', want '%s'", i, cases[i].body, rc, err.msg,
                     cases[i].err);
        bb_arena_free(&a);
    }

    /* nesting deeper than 128 is refused by the tokenizer, not by the stack */
    char deep[600];
    size_t k = 0;
    k += (size_t)snprintf(deep, sizeof deep, "{\"messages\":");
    for (int i = 0; i < 200; i++)
        deep[k++] = '[';
    for (int i = 0; i < 200; i++)
        deep[k++] = ']';
    deep[k++] = '}';
    struct bb_arena a;
    bb_arena_init(&a, 0);
    struct bb_ir_request r;
    struct bb_err err = {{0}};
    assert_int_equal(P->read_request(&a, deep, k, "m", &r, &err), -1);
    assert_non_null(strstr(err.msg, "request body: invalid JSON"));
    bb_arena_free(&a);
}

/* ---------------------------------------------------------------- egress */

static char *prov_host(const char *h)
{
    return (char *)h;
}

static void test_write_request_roundtrip_sigv4(void **state)
{
    (void)state;
    size_t n;
    char *body = slurp("request_full.json", &n);
    struct bb_arena a;
    bb_arena_init(&a, 0);
    struct bb_ir_request r;
    struct bb_err err = {{0}};
    assert_int_equal(P->read_request(&a, body, n, "x", &r, &err), 0);

    struct bb_provider pv = {.name = "bedrock",
                             .protocol = BB_PROTO_BEDROCK,
                             .url = {.tls = true,
                                     .host = prov_host("bedrock-runtime.us-west-2.amazonaws.com"),
                                     .port = 443,
                                     .path = prov_host("")},
                             .api_key = "AKIDEXAMPLE:wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY:"
                                        "FQoGZXIvYXdzEXAMPLETOKEN"};
    struct bb_lane lane = {.name = "claude",
                           .upstream_model = "us.anthropic.claude-sonnet-4-20250514-v1:0",
                           .default_max_tokens = 4096,
                           .reasoning = true};
    struct bb_egress_ctx ctx = {
        .provider = &pv, .lane = &lane, .stream = false, .now = 1440938160, .dropped = &test_drops};
    struct bb_egress_req out = {.headers = evbuffer_new(), .body = evbuffer_new()};
    /* With tool_choice auto, thinking is requested (the history's tool turn starts with signed
     * thinking, as Claude requires). */
    assert_int_equal(r.tool_choice, BB_IR_TC_TOOL);
    r.tool_choice = BB_IR_TC_AUTO;
    drops_reset();
    assert_int_equal(P->write_request(&a, &r, &ctx, &out, &err), 0);
    assert_string_equal(out.path, "/model/us.anthropic.claude-sonnet-4-20250514-v1%3A0/converse");
    size_t bl = evbuffer_get_length(out.body);
    assert_json_text_golden(evstr(out.body), bl, "egress_roundtrip.json");
    /* Claude thinking forbids a non-default temperature, top_p < 0.95 and top_k; Converse has
     * no structured output field busbar sends. */
    assert_string_equal(drops_text(), "temperature,top_p,top_k,response_format");
    /* The signature covers this exact body; verified once against @smithy/signature-v4. */
    const char *h = evstr(out.headers);
    assert_text_golden(h, strlen(h), "egress_roundtrip.headers");
    evbuffer_free(out.headers);
    evbuffer_free(out.body);

    /* The client's forced tool choice wins over thinking (Claude refuses the two together). */
    r.tool_choice = BB_IR_TC_TOOL;
    for (int allowed = 1; allowed >= 0; allowed--) {
        lane.reasoning = allowed;
        out.headers = evbuffer_new();
        out.body = evbuffer_new();
        drops_reset();
        ctx.stream = true;
        pv.url.port = 8443;
        pv.url.path = prov_host("/proxy");
        assert_int_equal(P->write_request(&a, &r, &ctx, &out, &err), 0);
        assert_string_equal(out.path,
                            "/model/us.anthropic.claude-sonnet-4-20250514-v1%3A0/converse-stream");
        /* sampling kept, but not temperature and top_p together for current Claude models */
        assert_string_equal(drops_text(), "reasoning,top_p,response_format");
        const char *b2 = evstr(out.body);
        assert_non_null(strstr(b2, "\"inferenceConfig\":{\"maxTokens\":2048,\"temperature\":0.7,"
                                   "\"stopSequences\""));
        assert_non_null(strstr(b2, "\"additionalModelRequestFields\":{\"top_k\":40}"));
        assert_non_null(strstr(b2, "\"toolChoice\":{\"tool\":{\"name\":\"get_weather\"}}"));
        assert_null(strstr(b2, "thinking"));
        assert_non_null(strstr(evstr(out.headers), "SignedHeaders=content-type;host;"
                                                   "x-amz-content-sha256;x-amz-date;"
                                                   "x-amz-security-token, Signature="));
        evbuffer_free(out.headers);
        evbuffer_free(out.body);
    }

    /* History from a dialect without signed thinking: the tool turn starts with text, so
     * Claude would refuse thinking; it is dropped. */
    lane.reasoning = true;
    r.tool_choice = BB_IR_TC_AUTO;
    struct bb_ir_message *asst = &r.messages[1];
    asst->blocks += 2; /* skip the thinking and redacted blocks */
    asst->n_blocks -= 2;
    out.headers = evbuffer_new();
    out.body = evbuffer_new();
    drops_reset();
    assert_int_equal(P->write_request(&a, &r, &ctx, &out, &err), 0);
    assert_string_equal(drops_text(), "reasoning,top_p,response_format");
    assert_null(strstr(evstr(out.body), "thinking"));
    evbuffer_free(out.headers);
    evbuffer_free(out.body);
    bb_arena_free(&a);
    free(body);
}

/* An IR as an OpenAI chat client would produce it, sent to a non-Claude model. */
static void test_write_request_openai_like(void **state)
{
    (void)state;
    struct bb_ir_block sys[] = {{.type = BB_IR_TEXT, .text = S("Be brief.")}};
    struct bb_ir_block u1[] = {
        {.type = BB_IR_TEXT, .text = S("Hi")},
        {.type = BB_IR_IMAGE, .url = S("https://example.com/cat.png")},
        {.type = BB_IR_IMAGE, .url = S("data:image/jpeg;base64,/9j/4AAQSkZJRg==")},
    };
    struct bb_ir_block u2[] = {{.type = BB_IR_TEXT, .text = S("Weather in Paris and Rome?")}};
    struct bb_ir_block as[] = {
        {.type = BB_IR_TEXT, .text = S("")},
        {.type = BB_IR_THINKING, .text = S("unsigned reasoning")},
        {.type = BB_IR_TOOL_USE,
         .id = S("call_1"),
         .name = S("get_weather"),
         .input_json = S("{\"city\":\"Paris\"}")},
        /* not an object: sent as {} and reported */
        {.type = BB_IR_TOOL_USE,
         .id = S("call_2"),
         .name = S("get_weather"),
         .input_json = S("[1]")},
    };
    struct bb_ir_block tr[] = {
        {.type = BB_IR_TOOL_RESULT, .id = S("call_1"), .text = S("{\"temp\":21}")},
        {.type = BB_IR_TOOL_RESULT, .id = S("call_2"), .text = S("timeout"), .is_error = true},
    };
    struct bb_ir_message msgs[] = {
        {.role = BB_IR_USER, .blocks = u1, .n_blocks = 3},
        {.role = BB_IR_USER, .blocks = u2, .n_blocks = 1},
        {.role = BB_IR_ASSISTANT, .blocks = as, .n_blocks = 4},
        {.role = BB_IR_USER, .blocks = tr, .n_blocks = 2},
    };
    struct bb_ir_tool tools[] = {{.name = S("get_weather"),
                                  .description = S("Weather"),
                                  .parameters_json = S("{\"type\":\"object\",\"properties\":"
                                                       "{\"city\":{\"type\":\"string\"}}}"),
                                  .strict = true}};
    struct bb_ir_str stop[] = {S("\n\n")};
    struct bb_ir_request ir = {.model = S("llama"),
                               .system = sys,
                               .n_system = 1,
                               .messages = msgs,
                               .n_messages = 4,
                               .tools = tools,
                               .n_tools = 1,
                               .tool_choice = BB_IR_TC_NONE,
                               .has_parallel_tool_calls = true,
                               .parallel_tool_calls = false,
                               .stream = true,
                               .has_max_tokens = true,
                               .max_tokens = 300,
                               .has_temperature = true,
                               .temperature = 0.2,
                               .has_top_p = true,
                               .top_p = 1,
                               .has_top_k = true,
                               .top_k = 50,
                               .has_seed = true,
                               .seed = 7,
                               .has_presence_penalty = true,
                               .has_frequency_penalty = true,
                               .stop = stop,
                               .n_stop = 1,
                               .n_choices = 2,
                               .format = BB_IR_FMT_JSON_OBJECT,
                               .reasoning = true,
                               .reasoning_effort = BB_IR_EFFORT_LOW,
                               .user = S("u-1")};
    struct bb_provider pv = {.name = "bedrock-key",
                             .url = {.tls = true,
                                     .host = prov_host("bedrock-runtime.eu-west-1.amazonaws.com"),
                                     .port = 443,
                                     .path = prov_host("")},
                             .api_key = "ABSKQmVkcm9ja0FQSUtleQ=="};
    struct bb_lane lane = {.upstream_model = "meta.llama3-70b-instruct-v1:0", .reasoning = true};
    struct bb_egress_ctx ctx = {
        .provider = &pv, .lane = &lane, .stream = true, .now = 0, .dropped = &test_drops};
    struct bb_egress_req out = {.headers = evbuffer_new(), .body = evbuffer_new()};
    struct bb_arena a;
    bb_arena_init(&a, 0);
    struct bb_err err = {{0}};
    drops_reset();
    assert_int_equal(P->write_request(&a, &ir, &ctx, &out, &err), 0);
    assert_string_equal(out.path, "/model/meta.llama3-70b-instruct-v1%3A0/converse-stream");
    assert_string_equal(evstr(out.headers), "Content-Type: application/json\r\n"
                                            "Authorization: Bearer ABSKQmVkcm9ja0FQSUtleQ==\r\n");
    size_t bl = evbuffer_get_length(out.body);
    assert_json_text_golden(evstr(out.body), bl, "egress_openai_like.json");
    assert_string_equal(
        drops_text(),
        "reasoning,images,thinking,tool_input,tool_result.is_error,strict,tool_choice,"
        "parallel_tool_calls,top_k,seed,presence_penalty,frequency_penalty,n,"
        "response_format,user");
    evbuffer_free(out.headers);
    evbuffer_free(out.body);

    /* A Claude model without max_tokens but with thinking gets one above the budget. */
    struct bb_ir_request ir2 = {
        .messages = msgs, .n_messages = 1, .reasoning = true, .reasoning_budget = 6000};
    struct bb_lane lane2 = {.upstream_model = "anthropic.claude-3-7-sonnet-20250219-v1:0",
                            .default_max_tokens = 4096,
                            .reasoning = true};
    pv.api_key = NULL;
    ctx.lane = &lane2;
    ctx.stream = false;
    out.headers = evbuffer_new();
    out.body = evbuffer_new();
    drops_reset();
    assert_int_equal(P->write_request(&a, &ir2, &ctx, &out, &err), 0);
    const char *b = evstr(out.body);
    assert_non_null(strstr(b, "\"inferenceConfig\":{\"maxTokens\":10096}"));
    assert_non_null(strstr(b, "\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":6000}"));
    assert_string_equal(evstr(out.headers), "Content-Type: application/json\r\n");
    evbuffer_free(out.headers);
    evbuffer_free(out.body);

    /* Model ids that need encoding: ARNs carry ':' and '/'. */
    lane2.upstream_model = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/"
                           "us.anthropic.claude-3-5-haiku-20241022-v1:0";
    out.headers = evbuffer_new();
    out.body = evbuffer_new();
    assert_int_equal(P->write_request(&a, &ir2, &ctx, &out, &err), 0);
    assert_string_equal(out.path, "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3A"
                                  "inference-profile%2Fus.anthropic.claude-3-5-haiku-20241022-"
                                  "v1%3A0/converse");
    evbuffer_free(out.headers);
    evbuffer_free(out.body);

    /* A malformed credential is an error naming the provider. */
    pv.api_key = ":secret";
    out.headers = evbuffer_new();
    out.body = evbuffer_new();
    assert_int_equal(P->write_request(&a, &ir2, &ctx, &out, &err), -1);
    assert_string_equal(err.msg, "bedrock: provider 'bedrock-key': credential must be "
                                 "ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN]");
    evbuffer_free(out.headers);
    evbuffer_free(out.body);
    bb_arena_free(&a);
}

/* Region: explicit, from the host, else us-east-1. */
static void test_write_request_region(void **state)
{
    (void)state;
    struct bb_ir_block u[] = {{.type = BB_IR_TEXT, .text = S("hi")}};
    struct bb_ir_message m[] = {{.role = BB_IR_USER, .blocks = u, .n_blocks = 1}};
    struct bb_ir_request ir = {.messages = m, .n_messages = 1};
    struct bb_lane lane = {.upstream_model = "amazon.nova-lite-v1:0"};
    static const struct {
        const char *host, *region, *want;
    } cases[] = {
        {"bedrock-runtime.ap-southeast-2.amazonaws.com", NULL, "/ap-southeast-2/bedrock/"},
        {"bedrock-runtime-fips.us-gov-west-1.amazonaws.com", NULL, "/us-gov-west-1/bedrock/"},
        {"bedrock-runtime.us-east-2.amazonaws.com", "eu-central-1", "/eu-central-1/bedrock/"},
        {"127.0.0.1", NULL, "/us-east-1/bedrock/"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct bb_provider pv = {
            .name = "p",
            .url = {.host = prov_host(cases[i].host), .port = 80, .path = prov_host("")},
            .api_key = "AKID:SECRET",
            .region = (char *)cases[i].region};
        struct bb_egress_ctx ctx = {
            .provider = &pv, .lane = &lane, .now = 1700000000, .dropped = &test_drops};
        struct bb_egress_req out = {.headers = evbuffer_new(), .body = evbuffer_new()};
        struct bb_arena a;
        bb_arena_init(&a, 0);
        struct bb_err err = {{0}};
        assert_int_equal(P->write_request(&a, &ir, &ctx, &out, &err), 0);
        const char *h = evstr(out.headers);
        if (!strstr(h, cases[i].want))
            fail_msg("case %zu: %s lacks %s", i, h, cases[i].want);
        assert_null(strstr(h, "X-Amz-Security-Token"));
        evbuffer_free(out.headers);
        evbuffer_free(out.body);
        bb_arena_free(&a);
    }
}

/* ---------------------------------------------------------------- responses */

static void test_response_roundtrip(void **state)
{
    (void)state;
    size_t n;
    char *body = slurp("response.json", &n);
    struct bb_arena a;
    bb_arena_init(&a, 0);
    struct bb_ir_response r;
    struct bb_err err = {{0}};
    assert_int_equal(P->read_response(&a, body, n, &r, &err), 0);
    assert_int_equal(r.n_blocks, 4);
    assert_int_equal(r.blocks[0].type, BB_IR_THINKING);
    assert_str(&r.blocks[0].signature, "EqQBCkYIBxgCKkDsig");
    assert_str(&r.blocks[1].text, "Let me check both cities.");
    assert_int_equal(r.blocks[2].type, BB_IR_TOOL_USE);
    assert_str(&r.blocks[2].id, "tooluse_A1");
    assert_str(&r.blocks[3].input_json, "{\"city\":\"Rome\"}");
    assert_int_equal(r.stop, BB_IR_STOP_TOOL_USE);
    assert_true(r.usage.set);
    assert_int_equal(r.usage.input, 120);
    assert_int_equal(r.usage.output, 64);
    assert_int_equal(r.usage.cache_read, 1000);
    assert_int_equal(r.usage.cache_write, 200);

    struct bb_ingress_ctx ictx = {.request_id = "req-1", .model = "claude", .created = 1};
    struct evbuffer *out = evbuffer_new();
    assert_int_equal(P->write_response(&a, &r, &ictx, out), 0);
    size_t ol = evbuffer_get_length(out);
    assert_json_text_golden(evstr(out), ol, "response_out.json");
    evbuffer_free(out);

    /* A tool call without an id (some dialects have none) gets one: toolUseId is required. */
    r.blocks[2].id.p = NULL;
    r.blocks[2].id.len = 0;
    out = evbuffer_new();
    assert_int_equal(P->write_response(&a, &r, &ictx, out), 0);
    assert_non_null(strstr(evstr(out), "\"toolUseId\":\"tooluse_req-1_2\""));
    evbuffer_free(out);

    /* A stop-sequence answer carries the sequence back; malformed bodies are errors. */
    const char *ss = "{\"output\":{\"message\":{\"role\":\"assistant\",\"content\":"
                     "[{\"text\":\"a\"}]}},"
                     "\"stopReason\":\"stop_sequence\",\"additionalModelResponseFields\":"
                     "{\"stop_sequence\":\"END\"},\"usage\":{\"inputTokens\":1,\"outputTokens\":1,"
                     "\"totalTokens\":2}}";
    assert_int_equal(P->read_response(&a, ss, strlen(ss), &r, &err), 0);
    assert_int_equal(r.stop, BB_IR_STOP_STOP_SEQUENCE);
    assert_str(&r.stop_sequence, "END");
    out = evbuffer_new();
    assert_int_equal(P->write_response(&a, &r, &ictx, out), 0);
    assert_non_null(strstr(evstr(out), "\"additionalModelResponseFields\":{\"stop_sequence\":"
                                       "\"END\"}"));
    evbuffer_free(out);
    assert_int_equal(P->read_response(&a, "[1]", 3, &r, &err), -1);
    assert_string_equal(err.msg, "bedrock response: expected a JSON object");
    const char *bad = "{\"output\":{\"message\":{\"content\":{}}}}";
    assert_int_equal(P->read_response(&a, bad, strlen(bad), &r, &err), -1);
    assert_string_equal(err.msg, "bedrock response: output.message.content: expected an array");

    /* stop reasons in both directions */
    static const struct {
        const char *wire;
        enum bb_ir_stop ir;
        const char *back;
    } stops[] = {
        {"end_turn", BB_IR_STOP_END_TURN, "end_turn"},
        {"max_tokens", BB_IR_STOP_MAX_TOKENS, "max_tokens"},
        {"model_context_window_exceeded", BB_IR_STOP_MAX_TOKENS, "max_tokens"},
        {"guardrail_intervened", BB_IR_STOP_CONTENT_FILTER, "content_filtered"},
        {"content_filtered", BB_IR_STOP_CONTENT_FILTER, "content_filtered"},
        {"malformed_tool_use", BB_IR_STOP_ERROR, "malformed_model_output"},
    };
    for (size_t i = 0; i < sizeof stops / sizeof stops[0]; i++) {
        char b[200];
        int bn = snprintf(b, sizeof b,
                          "{\"output\":{\"message\":{\"role\":\"assistant\","
                          "\"content\":[]}},\"stopReason\":\"%s\"}",
                          stops[i].wire);
        assert_int_equal(P->read_response(&a, b, (size_t)bn, &r, &err), 0);
        assert_int_equal(r.stop, stops[i].ir);
        out = evbuffer_new();
        assert_int_equal(P->write_response(&a, &r, &ictx, out), 0);
        char want[64];
        snprintf(want, sizeof want, "\"stopReason\":\"%s\"", stops[i].back);
        assert_non_null(strstr(evstr(out), want));
        evbuffer_free(out);
    }
    bb_arena_free(&a);
    free(body);
}

static void test_read_error(void **state)
{
    (void)state;
    struct bb_proto_error e;
    const char *b1 = "{\"message\":\"Too many requests, please wait before trying again.\"}";
    assert_int_equal(P->read_error(b1, strlen(b1), &e), 0);
    assert_string_equal(e.message, "Too many requests, please wait before trying again.");
    assert_string_equal(e.type, "");
    const char *b2 = "{\"__type\":\"com.amazon.coral.validate#ValidationException\","
                     "\"Message\":\"Input is too long for requested model.\"}";
    assert_int_equal(P->read_error(b2, strlen(b2), &e), 0);
    assert_string_equal(e.type, "ValidationException");
    assert_string_equal(e.message, "Input is too long for requested model.");
    const char *b3 = "{\"__type\":\"ThrottlingException:http://internal.amazon.com/coral/\"}";
    assert_int_equal(P->read_error(b3, strlen(b3), &e), 0);
    assert_string_equal(e.type, "ThrottlingException");
    assert_int_equal(P->read_error("<html>", 6, &e), -1);
    assert_int_equal(P->read_error("{}", 2, &e), -1);
}

/* ---------------------------------------------------------------- streams */

struct ir_rec {
    struct evbuffer *dump; /* one line per IR event */
    struct evbuffer *out;  /* the encoder's bytes */
    void *enc;
    struct bb_arena *scratch;
};

static const char *const ev_names[] = {"MESSAGE_START", "BLOCK_START",  "BLOCK_DELTA", "BLOCK_STOP",
                                       "MESSAGE_DELTA", "MESSAGE_STOP", "ERROR",       "PING"};
static const char *const bt_names[] = {"TEXT",        "THINKING", "REDACTED_THINKING", "TOOL_USE",
                                       "TOOL_RESULT", "IMAGE",    "DOCUMENT"};
static const char *const d_names[] = {"TEXT",       "THINKING", "SIGNATURE",
                                      "INPUT_JSON", "REDACTED", "CITATION"};

static void ev_str(struct evbuffer *b, const struct bb_ir_str *s)
{
    struct json_object *o = json_object_new_string_len(s->p ? s->p : "", (int)s->len);
    evbuffer_add_printf(
        b, "%s",
        json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(o);
}

static void ev_line(struct evbuffer *b, const struct bb_ir_event *ev)
{
    evbuffer_add_printf(b, "%s", ev_names[ev->type]);
    switch (ev->type) {
    case BB_IR_EV_BLOCK_START:
        evbuffer_add_printf(b, " %u %s", ev->index, bt_names[ev->block_type]);
        if (ev->block_type == BB_IR_TOOL_USE) {
            evbuffer_add_printf(b, " id=");
            ev_str(b, &ev->id);
            evbuffer_add_printf(b, " name=");
            ev_str(b, &ev->name);
        }
        break;
    case BB_IR_EV_BLOCK_DELTA:
        evbuffer_add_printf(b, " %u %s ", ev->index, d_names[ev->delta]);
        ev_str(b, &ev->text);
        break;
    case BB_IR_EV_BLOCK_STOP:
        evbuffer_add_printf(b, " %u", ev->index);
        break;
    case BB_IR_EV_MESSAGE_DELTA:
        evbuffer_add_printf(b, " stop=%s", bb_ir_stop_name(ev->stop));
        if (ev->stop_sequence.p) {
            evbuffer_add_printf(b, " stop_sequence=");
            ev_str(b, &ev->stop_sequence);
        }
        if (ev->usage.set)
            evbuffer_add_printf(b, " usage=in:%llu,out:%llu,cache_read:%llu,cache_write:%llu",
                                (unsigned long long)ev->usage.input,
                                (unsigned long long)ev->usage.output,
                                (unsigned long long)ev->usage.cache_read,
                                (unsigned long long)ev->usage.cache_write);
        break;
    case BB_IR_EV_ERROR:
        evbuffer_add_printf(b, " type=");
        ev_str(b, &ev->error_type);
        evbuffer_add_printf(b, " status=%d ", ev->error_status);
        ev_str(b, &ev->text);
        break;
    default:
        break;
    }
    evbuffer_add_printf(b, "\n");
}

static int on_ir(void *arg, const struct bb_ir_event *ev)
{
    struct ir_rec *r = arg;
    ev_line(r->dump, ev);
    assert_int_equal(P->enc_event(r->enc, r->scratch, ev, r->out), 0);
    return 0;
}

struct frame_ctx {
    void *dec;
    struct bb_arena *scratch;
    struct ir_rec *rec;
    int frames;
};

static int on_msg(void *arg, const struct bb_eventstream_msg *m)
{
    struct frame_ctx *fc = arg;
    struct bb_frame f;
    bb_eventstream_to_frame(m, &f);
    fc->frames++;
    /* a scratch arena per frame, as the relay has: nothing may outlive its frame */
    struct bb_arena frame;
    bb_arena_init(&frame, 0);
    struct bb_arena *keep = fc->rec->scratch;
    fc->rec->scratch = &frame;
    int rc = P->dec_frame(fc->dec, &frame, &f, on_ir, fc->rec);
    fc->rec->scratch = keep;
    bb_arena_free(&frame);
    return rc;
}

/* Native transcript text → event-stream bytes, with the module's own encoder primitives. */
static struct evbuffer *transcript_bytes(const char *text)
{
    struct evbuffer *b = evbuffer_new();
    const char *p = text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t ll = nl ? (size_t)(nl - p) : strlen(p);
        if (ll && p[0] != '#') {
            const char *tab = memchr(p, '\t', ll);
            assert_non_null(tab);
            bool exc = p[0] == '!';
            char name[64];
            size_t nn = (size_t)(tab - p) - exc;
            assert_true(nn < sizeof name);
            memcpy(name, p + exc, nn);
            name[nn] = '\0';
            const char *payload = tab + 1;
            size_t pl = ll - (size_t)(payload - p);
            if (exc)
                assert_int_equal(bb_eventstream_write_exception(b, name, payload, pl), 0);
            else
                assert_int_equal(bb_eventstream_write_event(b, name, payload, pl), 0);
        }
        p += ll + (nl != NULL);
    }
    return b;
}

static int to_text(void *arg, const struct bb_eventstream_msg *m)
{
    struct evbuffer *t = arg;
    /* every message the encoder writes carries JSON and the standard headers */
    assert_int_equal(m->content_type_len, 16);
    assert_memory_equal(m->content_type, "application/json", 16);
    evbuffer_add_printf(t, "%s%.*s\t%.*s\n", m->exception ? "!" : "", (int)m->event_type_len,
                        m->event_type, (int)m->payload_len, (const char *)m->payload);
    return 0;
}

/* Run one transcript through decode → IR → encode, feeding bytes in chunks of `chunk`
 * (0 = all at once). Returns the IR dump and the re-encoded transcript. */
static void run_stream(const char *name, size_t chunk, struct evbuffer *dump, struct evbuffer *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s.es", name);
    char *native = slurp(path, NULL);
    struct evbuffer *bytes = transcript_bytes(native);
    size_t n = evbuffer_get_length(bytes);
    const uint8_t *p = evbuffer_pullup(bytes, -1);

    struct bb_arena scratch;
    bb_arena_init(&scratch, 0);
    void *dec = calloc(1, P->dec_size), *enc = calloc(1, P->enc_size);
    P->dec_init(dec);
    struct bb_ingress_ctx ictx = {.request_id = "req-1", .model = "m"};
    P->enc_init(enc, &ictx);
    struct evbuffer *out = evbuffer_new();
    struct ir_rec rec = {dump, out, enc, &scratch};
    struct frame_ctx fc = {dec, &scratch, &rec, 0};
    struct bb_eventstream es;
    bb_eventstream_init(&es, 0);
    for (size_t at = 0; at < n;) {
        size_t take = chunk && chunk < n - at ? chunk : n - at;
        uint8_t *piece = malloc(take); /* exact-size copy so ASan sees over-reads */
        memcpy(piece, p + at, take);
        int rc = bb_eventstream_feed(&es, piece, take, on_msg, &fc);
        free(piece);
        assert_int_equal(rc, 0);
        at += take;
    }
    assert_int_equal(bb_eventstream_pending(&es), 0);
    bb_eventstream_free(&es);
    if (P->enc_finish)
        P->enc_finish(enc, out);

    /* BB_DUMP_DIR=dir keeps the encoder's bytes, for checking with the AWS SDK itself */
    const char *dd = getenv("BB_DUMP_DIR");
    if (dd && chunk == 0) {
        char dp[512];
        snprintf(dp, sizeof dp, "%s/%s.bin", dd, name);
        write_file(dp, (const char *)evbuffer_pullup(out, -1), evbuffer_get_length(out));
    }

    /* decode what the encoder wrote, strictly (CRCs and lengths checked) */
    struct bb_eventstream es2;
    bb_eventstream_init(&es2, 0);
    size_t on = evbuffer_get_length(out);
    assert_int_equal(bb_eventstream_feed(&es2, evbuffer_pullup(out, -1), on, to_text, text), 0);
    assert_int_equal(bb_eventstream_pending(&es2), 0);
    bb_eventstream_free(&es2);

    evbuffer_free(out);
    evbuffer_free(bytes);
    free(dec);
    free(enc);
    bb_arena_free(&scratch);
    free(native);
}

static void check_stream(const char *name)
{
    struct evbuffer *d1 = evbuffer_new(), *t1 = evbuffer_new();
    struct evbuffer *d2 = evbuffer_new(), *t2 = evbuffer_new();
    run_stream(name, 0, d1, t1);
    run_stream(name, 1, d2, t2); /* frames delivered one byte at a time */
    size_t l1 = evbuffer_get_length(d1), l2 = evbuffer_get_length(d2);
    assert_int_equal(l1, l2);
    assert_memory_equal(evbuffer_pullup(d1, -1), evbuffer_pullup(d2, -1), l1);
    char g[128];
    snprintf(g, sizeof g, "%s.ir", name);
    assert_text_golden((const char *)evbuffer_pullup(d1, -1), l1, g);
    snprintf(g, sizeof g, "%s.out.es", name);
    size_t tl = evbuffer_get_length(t1);
    assert_text_golden((const char *)evbuffer_pullup(t1, -1), tl, g);
    assert_int_equal(tl, evbuffer_get_length(t2));
    evbuffer_free(d1);
    evbuffer_free(t1);
    evbuffer_free(d2);
    evbuffer_free(t2);
}

static void test_stream_text_cached_usage(void **state)
{
    (void)state;
    check_stream("stream_text");
}

static void test_stream_parallel_tools(void **state)
{
    (void)state;
    check_stream("stream_tools");
}

static void test_stream_thinking(void **state)
{
    (void)state;
    check_stream("stream_thinking");
}

static void test_stream_error(void **state)
{
    (void)state;
    check_stream("stream_error");
}

static void test_stream_irregular(void **state)
{
    (void)state;
    check_stream("stream_irregular");
}

/* evs through a fresh encoder (request id "req-1"): the event stream it wrote, as
 * "type\tpayload" lines (to_text), appended to text. */
static void encode_text(const struct bb_ir_event *evs, size_t n, struct evbuffer *text)
{
    struct bb_arena scratch;
    bb_arena_init(&scratch, 0);
    void *enc = calloc(1, P->enc_size);
    struct bb_ingress_ctx ictx = {.request_id = "req-1"};
    P->enc_init(enc, &ictx);
    struct evbuffer *out = evbuffer_new();
    for (size_t i = 0; i < n; i++)
        assert_int_equal(P->enc_event(enc, &scratch, &evs[i], out), 0);
    struct bb_eventstream es;
    bb_eventstream_init(&es, 0);
    size_t on = evbuffer_get_length(out);
    assert_int_equal(bb_eventstream_feed(&es, evbuffer_pullup(out, -1), on, to_text, text), 0);
    bb_eventstream_free(&es);
    evbuffer_free(out);
    free(enc);
    bb_arena_free(&scratch);
}

/* Converse numbers only the blocks it shows, from 0 and in the order the client sees them: a
 * block of another kind, an empty text block and IR indexes past 64 leave no gap and no
 * stray contentBlockStop. */
static void test_encoder_wire_indexes(void **state)
{
    (void)state;
    const struct bb_ir_event evs[] = {
        {.type = BB_IR_EV_MESSAGE_START, .id = S("msg_2"), .model = S("m")},
        {.type = BB_IR_EV_BLOCK_START, .index = 0, .block_type = BB_IR_DOCUMENT},
        {.type = BB_IR_EV_BLOCK_DELTA, .index = 0, .delta = BB_IR_D_TEXT, .text = S("no")},
        {.type = BB_IR_EV_BLOCK_STOP, .index = 0},
        {.type = BB_IR_EV_BLOCK_START, .index = 1, .block_type = BB_IR_TEXT},
        {.type = BB_IR_EV_BLOCK_STOP, .index = 1},
        {.type = BB_IR_EV_BLOCK_START, .index = 2, .block_type = BB_IR_THINKING},
        {.type = BB_IR_EV_BLOCK_DELTA, .index = 2, .delta = BB_IR_D_THINKING, .text = S("t")},
        {.type = BB_IR_EV_BLOCK_STOP, .index = 2},
        {.type = BB_IR_EV_BLOCK_DELTA, .index = 3, .delta = BB_IR_D_TEXT, .text = S("x")},
        {.type = BB_IR_EV_BLOCK_STOP, .index = 3},
        {.type = BB_IR_EV_BLOCK_START,
         .index = 70,
         .block_type = BB_IR_TOOL_USE,
         .id = S("t1"),
         .name = S("f")},
        {.type = BB_IR_EV_BLOCK_STOP, .index = 70},
        {.type = BB_IR_EV_MESSAGE_DELTA, .stop = BB_IR_STOP_TOOL_USE},
        {.type = BB_IR_EV_MESSAGE_STOP},
    };
    struct evbuffer *text = evbuffer_new();
    encode_text(evs, sizeof evs / sizeof evs[0], text);
    const char *want =
        "messageStart\t{\"role\":\"assistant\"}\n"
        "contentBlockDelta\t{\"delta\":{\"reasoningContent\":{\"text\":\"t\"}},"
        "\"contentBlockIndex\":0}\n"
        "contentBlockStop\t{\"contentBlockIndex\":0}\n"
        "contentBlockDelta\t{\"delta\":{\"text\":\"x\"},\"contentBlockIndex\":1}\n"
        "contentBlockStop\t{\"contentBlockIndex\":1}\n"
        "contentBlockStart\t{\"start\":{\"toolUse\":{\"toolUseId\":\"t1\",\"name\":\"f\"}},"
        "\"contentBlockIndex\":2}\n"
        "contentBlockStop\t{\"contentBlockIndex\":2}\n"
        "messageStop\t{\"stopReason\":\"tool_use\"}\n";
    const char *got = evstr(text);
    if (strncmp(got, want, strlen(want)) != 0)
        fail_msg("got:\n%s", got);
    evbuffer_free(text);
}

/* Encoder fed IR as another protocol's decoder produces it: usage split between MESSAGE_START
 * and MESSAGE_DELTA, a tool block with no BLOCK_STOP before MESSAGE_STOP, citations and pings
 * ignored; and errors of other dialects mapped onto the five stream exceptions. */
static void test_encoder_foreign_ir(void **state)
{
    (void)state;
    const struct bb_ir_event evs[] = {
        {.type = BB_IR_EV_MESSAGE_START,
         .id = S("msg_1"),
         .model = S("claude"),
         .usage = {.set = true, .input = 50, .cache_read = 10}},
        {.type = BB_IR_EV_PING},
        {.type = BB_IR_EV_BLOCK_START, .index = 0, .block_type = BB_IR_TEXT},
        {.type = BB_IR_EV_BLOCK_DELTA, .index = 0, .delta = BB_IR_D_TEXT, .text = S("Hi")},
        {.type = BB_IR_EV_BLOCK_DELTA, .index = 0, .delta = BB_IR_D_CITATION, .text = S("{}")},
        {.type = BB_IR_EV_BLOCK_STOP, .index = 0},
        {.type = BB_IR_EV_BLOCK_START,
         .index = 1,
         .block_type = BB_IR_TOOL_USE,
         .id = S("toolu_1"),
         .name = S("f")},
        {.type = BB_IR_EV_BLOCK_DELTA,
         .index = 1,
         .delta = BB_IR_D_INPUT_JSON,
         .text = S("{\"a\":1}")},
        {.type = BB_IR_EV_MESSAGE_DELTA,
         .stop = BB_IR_STOP_TOOL_USE,
         .usage = {.set = true, .output = 9}},
        {.type = BB_IR_EV_MESSAGE_STOP},
        {.type = BB_IR_EV_BLOCK_DELTA, .index = 2, .delta = BB_IR_D_TEXT, .text = S("late")},
    };
    struct evbuffer *text = evbuffer_new();
    encode_text(evs, sizeof evs / sizeof evs[0], text);
    const char *want =
        "messageStart\t{\"role\":\"assistant\"}\n"
        "contentBlockDelta\t{\"delta\":{\"text\":\"Hi\"},\"contentBlockIndex\":0}\n"
        "contentBlockStop\t{\"contentBlockIndex\":0}\n"
        "contentBlockStart\t{\"start\":{\"toolUse\":{\"toolUseId\":\"toolu_1\",\"name\":\"f\"}},"
        "\"contentBlockIndex\":1}\n"
        "contentBlockDelta\t{\"delta\":{\"toolUse\":{\"input\":\"{\\\"a\\\":1}\"}},"
        "\"contentBlockIndex\":1}\n"
        "contentBlockStop\t{\"contentBlockIndex\":1}\n"
        "messageStop\t{\"stopReason\":\"tool_use\"}\n"
        "metadata\t{\"usage\":{\"inputTokens\":50,\"outputTokens\":9,\"totalTokens\":69,"
        "\"cacheReadInputTokens\":10},\"metrics\":{\"latencyMs\":0}}\n";
    assert_string_equal(evstr(text), want);
    evbuffer_free(text);

    /* Interleaved tool calls keep their own indexes; a call without an id gets one; a stream
     * with no MESSAGE_DELTA still ends with messageStop and metadata. */
    const struct bb_ir_event inter[] = {
        {.type = BB_IR_EV_BLOCK_START, .index = 0, .block_type = BB_IR_TOOL_USE, .name = S("f")},
        {.type = BB_IR_EV_BLOCK_START,
         .index = 1,
         .block_type = BB_IR_TOOL_USE,
         .id = S("c2"),
         .name = S("g")},
        {.type = BB_IR_EV_BLOCK_DELTA, .index = 0, .delta = BB_IR_D_INPUT_JSON, .text = S("{")},
        {.type = BB_IR_EV_BLOCK_DELTA, .index = 1, .delta = BB_IR_D_INPUT_JSON, .text = S("{}")},
        {.type = BB_IR_EV_BLOCK_DELTA, .index = 0, .delta = BB_IR_D_INPUT_JSON, .text = S("}")},
        {.type = BB_IR_EV_BLOCK_STOP, .index = 1},
        {.type = BB_IR_EV_MESSAGE_STOP},
    };
    text = evbuffer_new();
    encode_text(inter, sizeof inter / sizeof inter[0], text);
    assert_string_equal(
        evstr(text),
        "messageStart\t{\"role\":\"assistant\"}\n"
        "contentBlockStart\t{\"start\":{\"toolUse\":{\"toolUseId\":\"tooluse_req-1_0\","
        "\"name\":\"f\"}},\"contentBlockIndex\":0}\n"
        "contentBlockStart\t{\"start\":{\"toolUse\":{\"toolUseId\":\"c2\",\"name\":\"g\"}},"
        "\"contentBlockIndex\":1}\n"
        "contentBlockDelta\t{\"delta\":{\"toolUse\":{\"input\":\"{\"}},\"contentBlockIndex\":0}\n"
        "contentBlockDelta\t{\"delta\":{\"toolUse\":{\"input\":\"{}\"}},\"contentBlockIndex\":1}\n"
        "contentBlockDelta\t{\"delta\":{\"toolUse\":{\"input\":\"}\"}},\"contentBlockIndex\":0}\n"
        "contentBlockStop\t{\"contentBlockIndex\":1}\n"
        "contentBlockStop\t{\"contentBlockIndex\":0}\n"
        "messageStop\t{\"stopReason\":\"end_turn\"}\n"
        "metadata\t{\"usage\":{\"inputTokens\":0,\"outputTokens\":0,\"totalTokens\":0},"
        "\"metrics\":{\"latencyMs\":0}}\n");
    evbuffer_free(text);

    struct bb_arena scratch;
    bb_arena_init(&scratch, 0);
    void *enc = calloc(1, P->enc_size);
    struct bb_ingress_ctx ictx = {.request_id = "req-1"};
    struct bb_eventstream es;

    static const struct {
        const char *type;
        int status;
        const char *want;
    } errs[] = {
        {"overloaded_error", 529, "serviceUnavailableException"},
        {"rate_limit_error", 0, "throttlingException"},
        {"RESOURCE_EXHAUSTED", 429, "throttlingException"},
        {"invalid_request_error", 400, "validationException"},
        {"api_error", 500, "internalServerException"},
        {"ModelStreamErrorException", 0, "modelStreamErrorException"},
        {"", 0, "internalServerException"},
    };
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        P->enc_init(enc, &ictx);
        struct evbuffer *out = evbuffer_new();
        struct bb_ir_event ev = {.type = BB_IR_EV_ERROR,
                                 .error_type = S(errs[i].type),
                                 .error_status = errs[i].status,
                                 .text = S("boom \"x\"")};
        assert_int_equal(P->enc_event(enc, &scratch, &ev, out), 0);
        /* nothing after an error */
        struct bb_ir_event stop = {.type = BB_IR_EV_MESSAGE_STOP};
        assert_int_equal(P->enc_event(enc, &scratch, &stop, out), 0);
        text = evbuffer_new();
        bb_eventstream_init(&es, 0);
        size_t on = evbuffer_get_length(out);
        assert_int_equal(bb_eventstream_feed(&es, evbuffer_pullup(out, -1), on, to_text, text), 0);
        bb_eventstream_free(&es);
        char w[160];
        snprintf(w, sizeof w, "!%s\t{\"message\":\"boom \\\"x\\\"\"}\n", errs[i].want);
        assert_string_equal(evstr(text), w);
        evbuffer_free(text);
        evbuffer_free(out);
    }
    free(enc);
    bb_arena_free(&scratch);
}

/* Malformed frames are decoder errors, not crashes. */
static void test_decoder_malformed(void **state)
{
    (void)state;
    struct bb_arena scratch;
    bb_arena_init(&scratch, 0);
    void *dec = calloc(1, P->dec_size);
    struct evbuffer *dump = evbuffer_new();
    struct ir_rec rec = {dump, evbuffer_new(), calloc(1, P->enc_size), &scratch};
    static const char *const bad[][2] = {
        {"contentBlockDelta", "{\"contentBlockIndex\":0,\"delta\":"},
        {"contentBlockDelta", "[1,2]"},
        {"contentBlockDelta", "{\"contentBlockIndex\":0,\"delta\":{\"text\":5}}"},
        {"contentBlockDelta", "{\"contentBlockIndex\":0}"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        P->dec_init(dec);
        struct bb_frame f = {bad[i][0], strlen(bad[i][0]), bad[i][1], strlen(bad[i][1]), false};
        if (P->dec_frame(dec, &scratch, &f, on_ir, &rec) != -1)
            fail_msg("frame %zu accepted", i);
    }
    /* An exception with a non-JSON body keeps the raw text as the message. */
    P->dec_init(dec);
    struct bb_frame f = {"internalServerException", 23, "oops", 4, true};
    evbuffer_drain(dump, evbuffer_get_length(dump));
    assert_int_equal(P->dec_frame(dec, &scratch, &f, on_ir, &rec), 0);
    assert_string_equal(evstr(dump),
                        "ERROR type=\"internalServerException\" status=500 \"oops\"\n");
    evbuffer_free(rec.out);
    free(rec.enc);
    evbuffer_free(dump);
    free(dec);
    bb_arena_free(&scratch);
}

static void test_ops_table(void **state)
{
    (void)state;
    assert_int_equal(P->id, BB_PROTO_BEDROCK);
    assert_int_equal(P->framing, BB_FRAMING_EVENTSTREAM);
    assert_string_equal(P->stream_content_type(NULL), "application/vnd.amazon.eventstream");
    assert_true(P->enc_size > 0 && P->dec_size > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_ops_table, setup),
        cmocka_unit_test_setup(test_read_request_full, setup),
        cmocka_unit_test_setup(test_read_request_sdk, setup),
        cmocka_unit_test_setup(test_read_request_errors, setup),
        cmocka_unit_test_setup(test_write_request_roundtrip_sigv4, setup),
        cmocka_unit_test_setup(test_write_request_openai_like, setup),
        cmocka_unit_test_setup(test_write_request_region, setup),
        cmocka_unit_test_setup(test_response_roundtrip, setup),
        cmocka_unit_test_setup(test_read_error, setup),
        cmocka_unit_test_setup(test_stream_text_cached_usage, setup),
        cmocka_unit_test_setup(test_stream_parallel_tools, setup),
        cmocka_unit_test_setup(test_stream_thinking, setup),
        cmocka_unit_test_setup(test_stream_error, setup),
        cmocka_unit_test_setup(test_stream_irregular, setup),
        cmocka_unit_test_setup(test_encoder_foreign_ir, setup),
        cmocka_unit_test_setup(test_encoder_wire_indexes, setup),
        cmocka_unit_test_setup(test_decoder_malformed, setup),
    };
    return cmocka_run_group_tests_name("proto_bedrock", tests, NULL, NULL);
}
