/*
 * test_classify: fault classification of real provider error replies (worker/classify.c),
 * one table per protocol, status and body as the provider sends them; and the protocol
 * modules' answer_check (worker/proto_*.c): a 200 body is a success answer, the provider's
 * in-band error object, or not an answer at all.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/sse.h"
#include "worker/classify.h"
#include "worker/eventstream.h"
#include "worker/proto.h"

struct ccase {
    int status;
    const char *body;
    enum bb_fclass want;
};

static void run_table(enum bb_proto proto, const struct ccase *t, size_t n)
{
    struct bb_provider p = {.protocol = proto};
    for (size_t i = 0; i < n; i++) {
        enum bb_fclass got = bb_classify_http(&p, t[i].status, t[i].body, strlen(t[i].body));
        if (got != t[i].want)
            fail_msg("%s case %zu (HTTP %d %.80s): got %s, want %s", bb_proto_name(proto), i,
                     t[i].status, t[i].body, bb_fclass_name(got), bb_fclass_name(t[i].want));
    }
}

#define RUN(proto, table) run_table(proto, table, sizeof table / sizeof table[0])

static void test_openai(void **state)
{
    (void)state;
    static const struct ccase t[] = {
        {429,
         "{\"error\":{\"message\":\"You exceeded your current quota, please check your plan and "
         "billing details. For more information on this error, read the docs: "
         "https://platform.openai.com/docs/guides/error-codes/api-errors.\",\"type\":"
         "\"insufficient_quota\",\"param\":null,\"code\":\"insufficient_quota\"}}",
         BB_FC_BILLING},
        {429,
         "{\"error\":{\"message\":\"Rate limit reached for gpt-4o in organization org-abc on "
         "tokens per min (TPM): Limit 30000, Used 29000, Requested 2000. Please try again in "
         "2s.\",\"type\":\"tokens\",\"param\":null,\"code\":\"rate_limit_exceeded\"}}",
         BB_FC_RATE_LIMIT},
        {400,
         "{\"error\":{\"message\":\"This model's maximum context length is 128000 tokens. "
         "However, your messages resulted in 130000 tokens.\",\"type\":"
         "\"invalid_request_error\",\"param\":\"messages\",\"code\":"
         "\"context_length_exceeded\"}}",
         BB_FC_CONTEXT},
        {401,
         "{\"error\":{\"message\":\"Incorrect API key provided: sk-abc***.\",\"type\":"
         "\"invalid_request_error\",\"param\":null,\"code\":\"invalid_api_key\"}}",
         BB_FC_AUTH},
        {500,
         "{\"error\":{\"message\":\"The server had an error while processing your request. "
         "Sorry about that!\",\"type\":\"server_error\",\"param\":null,\"code\":null}}",
         BB_FC_SERVER},
        {503,
         "{\"error\":{\"message\":\"The engine is currently overloaded, please try again "
         "later\",\"type\":\"server_error\",\"param\":null,\"code\":null}}",
         BB_FC_SERVER},
        {400,
         "{\"error\":{\"message\":\"Invalid value for 'temperature'.\",\"type\":"
         "\"invalid_request_error\",\"param\":\"temperature\",\"code\":null}}",
         BB_FC_CLIENT},
        {404,
         "{\"error\":{\"message\":\"The model `gpt-9` does not exist\",\"type\":"
         "\"invalid_request_error\",\"param\":null,\"code\":\"model_not_found\"}}",
         BB_FC_CLIENT},
    };
    RUN(BB_PROTO_OPENAI, t);
    RUN(BB_PROTO_RESPONSES, t); /* the Responses API answers errors the same way */
}

static void test_anthropic(void **state)
{
    (void)state;
    static const struct ccase t[] = {
        {400,
         "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":\"Your "
         "credit balance is too low to access the Anthropic API. Please go to Plans & Billing "
         "to upgrade or purchase credits.\"},\"request_id\":\"req_011\"}",
         BB_FC_BILLING},
        {402,
         "{\"type\":\"error\",\"error\":{\"type\":\"billing_error\",\"message\":\"There is an "
         "issue with your account's billing.\"}}",
         BB_FC_BILLING},
        {529,
         "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":"
         "\"Overloaded\"}}",
         BB_FC_OVERLOADED},
        {429,
         "{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"This "
         "request would exceed the rate limit for your organization of 50 requests per "
         "minute.\"}}",
         BB_FC_RATE_LIMIT},
        {400,
         "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":"
         "\"prompt is too long: 210000 tokens > 200000 maximum\"}}",
         BB_FC_CONTEXT},
        {401,
         "{\"type\":\"error\",\"error\":{\"type\":\"authentication_error\",\"message\":"
         "\"invalid x-api-key\"}}",
         BB_FC_AUTH},
        {500,
         "{\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"Internal server "
         "error\"}}",
         BB_FC_SERVER},
        {400,
         "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":"
         "\"max_tokens: Field required\"}}",
         BB_FC_CLIENT},
    };
    RUN(BB_PROTO_ANTHROPIC, t);
}

static void test_gemini(void **state)
{
    (void)state;
    static const struct ccase t[] = {
        /* quota wording without a retry hint: the account is out of quota */
        {429,
         "{\"error\":{\"code\":429,\"message\":\"You exceeded your current quota, please check "
         "your plan and billing details. For more information on this error, head to: "
         "https://ai.google.dev/gemini-api/docs/rate-limits.\",\"status\":"
         "\"RESOURCE_EXHAUSTED\"}}",
         BB_FC_BILLING},
        /* the free tier's per-minute quota says the same, with when to retry */
        {429,
         "{\"error\":{\"code\":429,\"message\":\"You exceeded your current quota, please check "
         "your plan and billing details.\\n* Quota exceeded for metric: "
         "generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 10\\n"
         "Please retry in 36.8s.\",\"status\":\"RESOURCE_EXHAUSTED\"}}",
         BB_FC_RATE_LIMIT},
        /* without quota wording */
        {429,
         "{\"error\":{\"code\":429,\"message\":\"Resource has been exhausted (e.g. check "
         "quota).\",\"status\":\"RESOURCE_EXHAUSTED\"}}",
         BB_FC_RATE_LIMIT},
        {400,
         "{\"error\":{\"code\":400,\"message\":\"The input token count (1200000) exceeds the "
         "maximum number of tokens allowed (1048576).\",\"status\":\"INVALID_ARGUMENT\"}}",
         BB_FC_CONTEXT},
        {403,
         "{\"error\":{\"code\":403,\"message\":\"Method doesn't allow unregistered callers.\","
         "\"status\":\"PERMISSION_DENIED\"}}",
         BB_FC_AUTH},
        {503,
         "{\"error\":{\"code\":503,\"message\":\"The model is overloaded. Please try again "
         "later.\",\"status\":\"UNAVAILABLE\"}}",
         BB_FC_SERVER},
        {500,
         "{\"error\":{\"code\":500,\"message\":\"An internal error has occurred.\",\"status\":"
         "\"INTERNAL\"}}",
         BB_FC_SERVER},
        {400,
         "{\"error\":{\"code\":400,\"message\":\"Invalid JSON payload received.\",\"status\":"
         "\"INVALID_ARGUMENT\"}}",
         BB_FC_CLIENT},
    };
    RUN(BB_PROTO_GEMINI, t);
}

static void test_bedrock(void **state)
{
    (void)state;
    static const struct ccase t[] = {
        {400,
         "{\"message\":\"Your request exceeds the service quota for your account. You can view "
         "your quotas at https://docs.aws.amazon.com/servicequotas/latest/userguide/"
         "gs-request-quota.html.\"}",
         BB_FC_BILLING},
        {400,
         "{\"__type\":\"com.amazon.coral.service#ServiceQuotaExceededException\",\"message\":"
         "\"The request was denied due to exceeding the account quotas.\"}",
         BB_FC_BILLING},
        {429, "{\"message\":\"Too many requests, please wait before trying again.\"}",
         BB_FC_RATE_LIMIT},
        {429, "{\"__type\":\"ThrottlingException\",\"message\":\"Rate exceeded\"}",
         BB_FC_RATE_LIMIT},
        {400, "{\"message\":\"Input is too long for requested model.\"}", BB_FC_CONTEXT},
        {403, "{\"message\":\"You don't have access to the model with the specified model ID.\"}",
         BB_FC_AUTH},
        {424, "{\"message\":\"The model returned an error: internal failure\"}", BB_FC_SERVER},
        {408, "{\"message\":\"Model has timed out in processing the request.\"}", BB_FC_TIMEOUT},
        {503, "{\"message\":\"Bedrock is unable to process your request.\"}", BB_FC_SERVER},
        {400,
         "{\"message\":\"Malformed input request: #/messages/0/content: expected type: "
         "JSONArray\"}",
         BB_FC_CLIENT},
    };
    RUN(BB_PROTO_BEDROCK, t);
}

static void test_cohere(void **state)
{
    (void)state;
    static const struct ccase t[] = {
        {429,
         "{\"id\":\"a1\",\"message\":\"You are using a Trial key, which is limited to 10 API "
         "calls / minute. You can continue to use the Trial key for free or upgrade to a "
         "Production key with higher rate limits at 'https://dashboard.cohere.com/api-keys'.\"}",
         BB_FC_RATE_LIMIT},
        {429,
         "{\"id\":\"a2\",\"message\":\"You are using a Trial key, which is limited to 1000 API "
         "calls / month. You can continue to use the Trial key for free or upgrade to a "
         "Production key at 'https://dashboard.cohere.com/api-keys'.\"}",
         BB_FC_BILLING},
        {400,
         "{\"id\":\"a3\",\"message\":\"too many tokens: total number of tokens in the prompt "
         "cannot exceed 128000 - received 130000.\"}",
         BB_FC_CONTEXT},
        {401, "{\"id\":\"a4\",\"message\":\"invalid api token\"}", BB_FC_AUTH},
        {500, "{\"id\":\"a5\",\"message\":\"internal server error, this has been reported\"}",
         BB_FC_SERVER},
        {422, "{\"id\":\"a6\",\"message\":\"invalid request: messages must not be empty\"}",
         BB_FC_CLIENT},
    };
    RUN(BB_PROTO_COHERE, t);
}

/* ---- answer_check: success, in-band error, not an answer ---- */

struct acase {
    const char *body;
    int want;            /* 0 success, 1 in-band error, -1 not an answer */
    const char *message; /* in-band: the message read_error found */
};

static void run_answers(enum bb_proto proto, const struct acase *t, size_t n)
{
    const struct bb_proto_ops *ops = bb_proto_get(proto);
    for (size_t i = 0; i < n; i++) {
        struct bb_proto_error pe;
        int got = ops->answer_check(t[i].body, strlen(t[i].body), NULL, &pe);
        if (got != t[i].want)
            fail_msg("%s answer %zu (%.80s): got %d, want %d (%s)", bb_proto_name(proto), i,
                     t[i].body, got, t[i].want, pe.message);
        if (t[i].message && strstr(pe.message, t[i].message) == NULL)
            fail_msg("%s answer %zu: message '%s' lacks '%s'", bb_proto_name(proto), i, pe.message,
                     t[i].message);
    }
}

#define ANSWERS(proto, table) run_answers(proto, table, sizeof table / sizeof table[0])

static void test_answer_check(void **state)
{
    (void)state;
    static const struct acase openai[] = {
        {"{\"id\":\"c1\",\"object\":\"chat.completion\",\"choices\":[{\"index\":0,\"message\":"
         "{\"role\":\"assistant\",\"content\":\"hi\"},\"finish_reason\":\"stop\"}]}",
         0, NULL},
        {"{\"error\":{\"message\":\"upstream boom\",\"type\":\"server_error\",\"code\":null}}", 1,
         "upstream boom"},
        {"{\"choices\":[],\"error\":null}", 0, NULL},
        {"{\"choices\": [ oops", -1, NULL},
        {"<html>hi</html>", -1, NULL},
        {"{\"id\":\"c1\"}", -1, NULL},
        {"{'a':1,}", -1, NULL},
    };
    ANSWERS(BB_PROTO_OPENAI, openai);
    static const struct acase responses[] = {
        {"{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"completed\",\"output\":[]}", 0,
         NULL},
        {"{\"id\":\"resp_1\",\"status\":\"incomplete\",\"output\":[]}", 0, NULL},
        {"{\"id\":\"resp_1\",\"status\":\"failed\",\"output\":[],\"error\":{\"code\":"
         "\"server_error\",\"message\":\"the model failed\"}}",
         1, "the model failed"},
        {"{\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}", 1, "boom"},
        {"{\"id\":\"resp_1\"}", -1, NULL},
    };
    ANSWERS(BB_PROTO_RESPONSES, responses);
    static const struct acase anthropic[] = {
        {"{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[{\"type\":"
         "\"text\",\"text\":\"hi\"}],\"stop_reason\":\"end_turn\"}",
         0, NULL},
        {"{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":"
         "\"Overloaded\"}}",
         1, "Overloaded"},
        {"{\"choices\":[]}", -1, NULL},
    };
    ANSWERS(BB_PROTO_ANTHROPIC, anthropic);
    static const struct acase gemini[] = {
        {"{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"hi\"}]},"
         "\"finishReason\":\"STOP\"}]}",
         0, NULL},
        {"{\"promptFeedback\":{\"blockReason\":\"SAFETY\"}}", 0, NULL},
        {"{\"error\":{\"code\":503,\"message\":\"The model is overloaded.\",\"status\":"
         "\"UNAVAILABLE\"}}",
         1, "overloaded"},
        {"{\"usageMetadata\":{}}", -1, NULL},
    };
    ANSWERS(BB_PROTO_GEMINI, gemini);
    static const struct acase bedrock[] = {
        {"{\"output\":{\"message\":{\"role\":\"assistant\",\"content\":[{\"text\":\"hi\"}]}},"
         "\"stopReason\":\"end_turn\",\"usage\":{\"inputTokens\":1,\"outputTokens\":1}}",
         0, NULL},
        {"{\"message\":\"The model returned an error\"}", 1, "returned an error"},
        {"{\"__type\":\"ModelErrorException\",\"Message\":\"bad\"}", 1, "bad"},
        {"{\"stopReason\":\"end_turn\"}", -1, NULL},
    };
    ANSWERS(BB_PROTO_BEDROCK, bedrock);
    static const struct acase cohere[] = {
        {"{\"id\":\"x\",\"message\":{\"role\":\"assistant\",\"content\":[{\"type\":\"text\","
         "\"text\":\"hi\"}]},\"finish_reason\":\"COMPLETE\"}",
         0, NULL},
        {"{\"id\":\"x\",\"message\":\"internal server error\"}", 1, "internal server error"},
        {"{\"id\":\"x\",\"message\":{\"role\":\"assistant\",\"content\":[]},\"finish_reason\":"
         "\"ERROR\"}",
         1, NULL},
        {"{\"id\":\"x\"}", -1, NULL},
    };
    ANSWERS(BB_PROTO_COHERE, cohere);
}

/* An in-band error inside a 200 (status 0) is a provider failure unless its details say more. */
static void test_inband_classes(void **state)
{
    (void)state;
    struct bb_provider p = {.protocol = BB_PROTO_OPENAI};
    struct bb_proto_error pe = {.message = "boom"};
    assert_int_equal(bb_classify_error(&p, 0, &pe), BB_FC_SERVER);
    struct bb_proto_error q = {.code = "insufficient_quota", .message = "You exceeded your quota"};
    assert_int_equal(bb_classify_error(&p, 0, &q), BB_FC_BILLING);
    struct bb_proto_error o = {.type = "overloaded_error", .message = "Overloaded"};
    assert_int_equal(bb_classify_error(&p, 0, &o), BB_FC_OVERLOADED);
    struct bb_proto_error r = {.type = "RESOURCE_EXHAUSTED", .message = "slow down"};
    assert_int_equal(bb_classify_error(&p, 0, &r), BB_FC_RATE_LIMIT);
}

/* answer_check's usage (a scan) equals read_response's (a DOM) on every answer fixture. */
static void test_usage_scan_matches_reader(void **state)
{
    (void)state;
    static const char *const dirs[] = {"openai", "responses", "anthropic",
                                       "gemini", "bedrock",   "cohere"};
    static const enum bb_proto protos[] = {BB_PROTO_OPENAI, BB_PROTO_RESPONSES, BB_PROTO_ANTHROPIC,
                                           BB_PROTO_GEMINI, BB_PROTO_BEDROCK,   BB_PROTO_COHERE};
    size_t compared = 0;
    for (size_t p = 0; p < 6; p++) {
        const struct bb_proto_ops *ops = bb_proto_get(protos[p]);
        char pat[128];
        glob_t g;
        snprintf(pat, sizeof pat, "../fixtures/proto/%s/*.json", dirs[p]);
        if (glob(pat, 0, NULL, &g) != 0)
            fail_msg("no fixtures at %s", pat);
        for (size_t i = 0; i < g.gl_pathc; i++) {
            FILE *f = fopen(g.gl_pathv[i], "rb");
            assert_non_null(f);
            static char buf[1 << 20];
            size_t n = fread(buf, 1, sizeof buf - 1, f);
            fclose(f);
            buf[n] = '\0';
            struct bb_arena a;
            bb_arena_init(&a, 4u << 20);
            struct bb_ir_response resp;
            struct bb_err err;
            memset(&resp, 0, sizeof resp);
            struct bb_ir_usage u;
            memset(&u, 0, sizeof u);
            struct bb_proto_error pe;
            if (ops->read_response(&a, buf, n, &resp, &err) == 0 &&
                ops->answer_check(buf, n, &u, &pe) == 0) {
                if (u.set != resp.usage.set || u.input != resp.usage.input ||
                    u.output != resp.usage.output || u.cache_read != resp.usage.cache_read ||
                    u.cache_write != resp.usage.cache_write || u.reasoning != resp.usage.reasoning)
                    fail_msg("%s: scan usage set=%d %llu/%llu/%llu/%llu/%llu, reader set=%d "
                             "%llu/%llu/%llu/%llu/%llu",
                             g.gl_pathv[i], u.set, (unsigned long long)u.input,
                             (unsigned long long)u.output, (unsigned long long)u.cache_read,
                             (unsigned long long)u.cache_write, (unsigned long long)u.reasoning,
                             resp.usage.set, (unsigned long long)resp.usage.input,
                             (unsigned long long)resp.usage.output,
                             (unsigned long long)resp.usage.cache_read,
                             (unsigned long long)resp.usage.cache_write,
                             (unsigned long long)resp.usage.reasoning);
                compared++;
            }
            bb_arena_free(&a);
        }
        globfree(&g);
    }
    if (compared < 12)
        fail_msg("only %zu answer fixtures compared", compared);
}

/* ---- frame_scan (same-protocol relay) agrees with the decoder on every stream fixture ---- */

struct side {
    int first_content;        /* frame index of the first meaningful event, -1 none */
    int first_error;          /* frame index of the first in-band error, -1 none */
    int end;                  /* frame index of the terminator, -1 none */
    struct bb_ir_usage usage; /* largest of each count */
    struct bb_frame_state st;
};

struct pair {
    const struct bb_proto_ops *ops;
    void *dec;
    int frame;
    bool done; /* the decoder ended (error or terminator) */
    struct side d, s;
    const char *file;
};

static void umax(struct bb_ir_usage *a, const struct bb_ir_usage *b)
{
    if (!b->set)
        return;
    a->set = true;
    a->input = b->input > a->input ? b->input : a->input;
    a->output = b->output > a->output ? b->output : a->output;
    a->cache_read = b->cache_read > a->cache_read ? b->cache_read : a->cache_read;
    a->cache_write = b->cache_write > a->cache_write ? b->cache_write : a->cache_write;
    a->reasoning = b->reasoning > a->reasoning ? b->reasoning : a->reasoning;
}

static int on_dec_event(void *arg, const struct bb_ir_event *ev)
{
    struct pair *p = arg;
    switch (ev->type) {
    case BB_IR_EV_ERROR:
        if (p->d.first_error < 0)
            p->d.first_error = p->frame;
        p->done = true;
        break;
    case BB_IR_EV_MESSAGE_START:
        umax(&p->d.usage, &ev->usage);
        break;
    case BB_IR_EV_MESSAGE_DELTA:
        umax(&p->d.usage, &ev->usage);
        /* fall through */
    case BB_IR_EV_BLOCK_START:
    case BB_IR_EV_BLOCK_DELTA:
        if (p->d.first_content < 0)
            p->d.first_content = p->frame;
        break;
    case BB_IR_EV_MESSAGE_STOP:
        if (p->d.first_content < 0)
            p->d.first_content = p->frame;
        if (p->d.end < 0)
            p->d.end = p->frame;
        p->done = true;
        break;
    default:
        break;
    }
    return 0;
}

static void both(struct pair *p, const struct bb_frame *f)
{
    if (p->done)
        return;
    struct bb_arena a;
    bb_arena_init(&a, 1u << 20);
    int drc = p->ops->dec_frame(p->dec, &a, f, on_dec_event, p);
    bb_arena_free(&a);
    struct bb_frame_info fi;
    int src = p->ops->frame_scan(f, &p->s.st, &fi);
    if (drc < 0 && src == 0) { /* the decoder's own sequencing checks: not a valid upstream
                                  stream (an encoder fixture in a foreign order); a relay
                                  passes such bytes on as they are */
        p->done = true;
        p->d = p->s;
        return;
    }
    if ((drc < 0) != (src < 0))
        fail_msg("%s frame %d: decoder rc %d, scan rc %d", p->file, p->frame, drc, src);
    if (src == 0) {
        if (fi.error && p->s.first_error < 0)
            p->s.first_error = p->frame;
        if (fi.content && p->s.first_content < 0)
            p->s.first_content = p->frame;
        if (fi.end && p->s.end < 0)
            p->s.end = p->frame;
        umax(&p->s.usage, &fi.usage);
    }
    p->frame++;
}

static int on_test_sse(void *arg, const struct bb_sse_event *ev)
{
    struct bb_frame f = {ev->event, ev->event_len, ev->data, ev->data_len, false};
    both(arg, &f);
    return 0;
}

static int on_test_es(void *arg, const struct bb_eventstream_msg *m)
{
    struct bb_frame f;
    bb_eventstream_to_frame(m, &f);
    both(arg, &f);
    return 0;
}

static void test_frame_scan_matches_decoder(void **state)
{
    (void)state;
    static const char *const dirs[] = {"openai", "responses", "anthropic",
                                       "gemini", "bedrock",   "cohere"};
    static const enum bb_proto protos[] = {BB_PROTO_OPENAI, BB_PROTO_RESPONSES, BB_PROTO_ANTHROPIC,
                                           BB_PROTO_GEMINI, BB_PROTO_BEDROCK,   BB_PROTO_COHERE};
    size_t streams = 0;
    for (size_t p = 0; p < 6; p++) {
        const struct bb_proto_ops *ops = bb_proto_get(protos[p]);
        char pat[128];
        glob_t g;
        snprintf(pat, sizeof pat, "../fixtures/proto/%s/*.%s", dirs[p],
                 protos[p] == BB_PROTO_BEDROCK ? "es" : "sse");
        if (glob(pat, 0, NULL, &g) != 0)
            fail_msg("no stream fixtures at %s", pat);
        for (size_t i = 0; i < g.gl_pathc; i++) {
            FILE *fp = fopen(g.gl_pathv[i], "rb");
            assert_non_null(fp);
            static char buf[1 << 20];
            size_t n = fread(buf, 1, sizeof buf, fp);
            fclose(fp);
            struct pair pr;
            memset(&pr, 0, sizeof pr);
            pr.ops = ops;
            pr.file = g.gl_pathv[i];
            pr.d.first_content = pr.d.first_error = pr.d.end = -1;
            pr.s = pr.d;
            pr.dec = calloc(1, ops->dec_size ? ops->dec_size : 1);
            ops->dec_init(pr.dec);
            if (protos[p] == BB_PROTO_BEDROCK) {
                struct bb_eventstream es;
                bb_eventstream_init(&es, 1u << 20);
                bb_eventstream_feed(&es, buf, n, on_test_es, &pr);
                bb_eventstream_free(&es);
            } else {
                struct bb_sse sse;
                bb_sse_init(&sse, 1u << 20);
                bb_sse_feed(&sse, buf, n, on_test_sse, &pr);
                bb_sse_free(&sse);
            }
            free(pr.dec);
            if (pr.d.first_content != pr.s.first_content || pr.d.first_error != pr.s.first_error ||
                pr.d.end != pr.s.end)
                fail_msg("%s: decoder content@%d error@%d end@%d, scan content@%d error@%d "
                         "end@%d",
                         pr.file, pr.d.first_content, pr.d.first_error, pr.d.end,
                         pr.s.first_content, pr.s.first_error, pr.s.end);
            struct bb_ir_usage *du = &pr.d.usage, *su = &pr.s.usage;
            if (du->input != su->input || du->output != su->output ||
                du->cache_read != su->cache_read || du->cache_write != su->cache_write ||
                du->reasoning != su->reasoning)
                fail_msg("%s: decoder usage %llu/%llu/%llu/%llu/%llu, scan %llu/%llu/%llu/%llu/"
                         "%llu",
                         pr.file, (unsigned long long)du->input, (unsigned long long)du->output,
                         (unsigned long long)du->cache_read, (unsigned long long)du->cache_write,
                         (unsigned long long)du->reasoning, (unsigned long long)su->input,
                         (unsigned long long)su->output, (unsigned long long)su->cache_read,
                         (unsigned long long)su->cache_write, (unsigned long long)su->reasoning);
            streams++;
        }
        globfree(&g);
    }
    if (streams < 30)
        fail_msg("only %zu stream fixtures compared", streams);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_openai),
        cmocka_unit_test(test_anthropic),
        cmocka_unit_test(test_gemini),
        cmocka_unit_test(test_bedrock),
        cmocka_unit_test(test_cohere),
        cmocka_unit_test(test_answer_check),
        cmocka_unit_test(test_inband_classes),
        cmocka_unit_test(test_usage_scan_matches_reader),
        cmocka_unit_test(test_frame_scan_matches_decoder),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
