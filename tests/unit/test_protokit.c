/*
 * test_protokit: the toolkit every protocol module shares: the strict JSON parse
 * (worker/json.c), the one numeric policy, the reader context's located errors (worker/rd.c)
 * and the block sequencers (worker/seq.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "worker/json.h"
#include "worker/media.h"
#include "worker/proto.h"
#include "worker/rd.h"
#include "worker/seq.h"

static json_object *parse(const char *s)
{
    return bb_json_parse(s, strlen(s), "test", NULL);
}

static void test_strict_parse(void **state)
{
    (void)state;
    struct bb_err err;
    static const char *const bad[] = {
        "{'a':1}", "{\"a\":1,}", "[1,]",        "{\"a\":1} x", "{\"a\":\"\xff\"}",
        "nul",     "",           "{\"a\":NaN}", "{\"a\":01}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_object *o = bb_json_parse(bad[i], strlen(bad[i]), "body", &err);
        if (o)
            fail_msg("accepted %s", bad[i]);
        assert_non_null(strstr(err.msg, "body: "));
    }
    assert_null(bb_json_parse("null", 4, "body", &err));
    assert_string_equal(err.msg, "body: expected a JSON object, got null");
    json_object *o = parse(" {\"a\":[1,2]} \n");
    assert_non_null(o);
    json_object_put(o);
    o = parse("5");
    assert_true(bb_json_is(o, json_type_int));
    json_object_put(o);
}

/* 4096, 4096.0 and 4.096e3 are the same integer everywhere; 4096.5 is no integer. */
static void test_numeric_policy(void **state)
{
    (void)state;
    static const char *const same[] = {"4096", "4096.0", "4.096e3", "4096.000"};
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
        json_object *v = parse(same[i]);
        int64_t s = 0;
        uint64_t u = 0;
        assert_true(bb_json_is_int(v));
        assert_true(bb_json_int(v, 0, 1 << 20, &s));
        assert_true(bb_json_uint(v, UINT32_MAX, &u));
        assert_int_equal(s, 4096);
        assert_int_equal(u, 4096);
        json_object_put(v);
    }
    static const char *const not_int[] = {"4096.5", "\"4096\"", "true", "1e400", "[]"};
    for (size_t i = 0; i < sizeof not_int / sizeof not_int[0]; i++) {
        json_object *v = parse(not_int[i]);
        int64_t s;
        uint64_t u;
        if (bb_json_is_int(v) || bb_json_int(v, INT64_MIN, INT64_MAX, &s) ||
            bb_json_uint(v, UINT64_MAX, &u))
            fail_msg("%s taken for an integer", not_int[i]);
        json_object_put(v);
    }
    json_object *v = parse("-1");
    uint64_t u;
    int64_t s;
    assert_false(bb_json_uint(v, UINT64_MAX, &u));
    assert_true(bb_json_int(v, -5, 5, &s));
    assert_int_equal(s, -1);
    json_object_put(v);
    v = parse("18446744073709551615");
    assert_true(bb_json_uint(v, UINT64_MAX, &u));
    assert_true(u == UINT64_MAX);
    assert_false(bb_json_int(v, INT64_MIN, INT64_MAX, &s));
    json_object_put(v);
    v = parse("{\"n\":12.0,\"neg\":-3,\"frac\":1.5}");
    assert_int_equal(bb_json_count(v, "n"), 12);
    assert_int_equal(bb_json_count(v, "neg"), 0);
    assert_int_equal(bb_json_count(v, "frac"), 0);
    assert_int_equal(bb_json_count(v, "absent"), 0);
    json_object_put(v);
}

static void test_doubles_written(void **state)
{
    (void)state;
    static const struct {
        double d;
        const char *text;
    } cases[] = {{0.7, "0.7"},
                 {1, "1.0"},
                 {0.1 + 0.2, "0.30000000000000004"},
                 {-0.25, "-0.25"},
                 {1e300, "1e+300"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_object *o = bb_json_new_double(cases[i].d);
        assert_string_equal(json_object_to_json_string(o), cases[i].text);
        json_object_put(o);
    }
}

/* Errors name where they are, with the reader's prefix. */
static void test_reader_paths(void **state)
{
    (void)state;
    struct bb_arena a;
    bb_arena_init(&a, 1 << 16);
    struct bb_err err;
    struct bb_ir_request req;
    memset(&req, 0, sizeof req);
    struct bb_rd r;
    bb_rd_init(&r, &a, &req, &err);
    json_object *o = parse("{\"max\":4096.0,\"half\":1.5,\"neg\":-1,\"s\":\"x\",\"b\":1}");

    size_t m0 = bb_rd_in(&r, "messages");
    size_t m1 = bb_rd_at(&r, 2);
    size_t m2 = bb_rd_in(&r, "content");
    uint32_t u = 0;
    bool has = false;
    assert_int_equal(bb_rd_u32(&r, o, "max", &has, &u), 0);
    assert_true(has);
    assert_int_equal(u, 4096);
    assert_int_equal(bb_rd_u32(&r, o, "half", NULL, &u), -1);
    assert_string_equal(err.msg, "messages[2].content.half: expected an integer");
    assert_int_equal(bb_rd_u32(&r, o, "neg", NULL, &u), -1);
    assert_string_equal(err.msg, "messages[2].content.neg: out of range");
    bool b;
    assert_int_equal(bb_rd_bool(&r, o, "b", NULL, &b), -1);
    assert_string_equal(err.msg, "messages[2].content.b: expected a boolean");
    struct bb_ir_str s = {NULL, 0};
    assert_int_equal(bb_rd_str(&r, o, "nope", true, &s), -1);
    assert_string_equal(err.msg, "messages[2].content.nope: required");
    bb_rd_out(&r, m2);
    assert_int_equal(bb_rd_expect(&r, NULL, "an object"), -1);
    assert_string_equal(err.msg, "messages[2]: expected an object");
    bb_rd_out(&r, m1);
    bb_rd_out(&r, m0);
    assert_int_equal(bb_rd_str(&r, o, "s", true, &s), 0);
    assert_string_equal(s.p, "x");
    assert_int_equal(bb_rd_num(&r, o, "s", NULL, NULL), -1);
    assert_string_equal(err.msg, "s: expected a number");
    r.prefix = "openai response";
    assert_int_equal(bb_rd_expect(&r, NULL, "a JSON object"), -1);
    assert_string_equal(err.msg, "openai response: expected a JSON object");
    assert_int_equal(bb_rd_unsupported(&r, "tools.", "web_search"), 0);
    assert_int_equal(req.n_unsupported, 1);
    assert_string_equal(req.unsupported[0], "tools.web_search");
    /* client-chosen names reach a response header: nothing that could break it out */
    assert_int_equal(bb_rd_unsupported(&r, "", "x\r\nSet-Cookie: a=b"), 0);
    assert_int_equal(bb_rd_unsupported(&r, "content.", "a,b"), 0);
    assert_string_equal(req.unsupported[1], "x%0D%0ASet-Cookie:%20a%3Db");
    assert_string_equal(req.unsupported[2], "content.a%2Cb");
    json_object_put(o);

    /* an array walk: each element's path, then the path as it was */
    r.prefix = "";
    json_object *arr = parse("{\"xs\":[1,2.0,\"3\"]}");
    size_t m = bb_rd_in(&r, "m");
    struct bb_rd_iter it = bb_rd_iter(&r, bb_json_get(arr, "xs"), "xs");
    json_object *el;
    int64_t v, sum = 0;
    size_t seen = 0;
    while (bb_rd_next(&it, &el)) {
        assert_int_equal(it.at, seen++);
        if (bb_rd_int_value(&r, el, NULL, 0, 9, &v) < 0)
            break;
        sum += v;
    }
    assert_int_equal(sum, 3);
    assert_string_equal(err.msg, "m.xs[2]: expected an integer");
    it = bb_rd_iter(&r, bb_json_get(arr, "none"), "none"); /* absent: no element */
    assert_false(bb_rd_next(&it, &el));
    assert_string_equal(r.path, "m.xs[2]"); /* left where the failure was */
    bb_rd_out(&r, m);
    it = bb_rd_iter(&r, bb_json_get(arr, "xs"), "xs");
    while (bb_rd_next(&it, &el))
        ;
    assert_string_equal(r.path, ""); /* a finished walk restores it */
    json_object_put(arr);
    bb_arena_free(&a);
}

struct evlog {
    char text[1024];
    size_t len;
};

static int log_event(void *arg, const struct bb_ir_event *ev)
{
    struct evlog *l = arg;
    static const char *const names[] = {"ms", "start", "delta", "stop", "md", "mstop", "err", "p"};
    l->len +=
        (size_t)snprintf(l->text + l->len, sizeof l->text - l->len, "%s%s:%u:%d%s%.*s",
                         l->len ? " " : "", names[ev->type], ev->index, ev->block_type,
                         ev->text.p ? "=" : "", (int)ev->text.len, ev->text.p ? ev->text.p : "");
    return 0;
}

/* A flat stream (text, then a tool call, then text) and a bracketed one both come out as
 * consecutive IR blocks, each closed before the next opens. */
static void test_decoder_sequencer(void **state)
{
    (void)state;
    struct bb_arena a;
    bb_arena_init(&a, 1 << 16);
    struct evlog l = {{0}, 0};
    struct bb_dout o = {log_event, &l, &a};
    struct bb_dseq s;
    memset(&s, 0, sizeof s);
    assert_int_equal(bb_dseq_text(&s, &o, BB_IR_TEXT, BB_IR_D_TEXT, "a", 1), 0);
    assert_int_equal(bb_dseq_text(&s, &o, BB_IR_TEXT, BB_IR_D_TEXT, "", 0), 0);
    assert_int_equal(bb_dseq_text(&s, &o, BB_IR_TEXT, BB_IR_D_TEXT, "b", 1), 0);
    assert_int_equal(bb_dseq_open(&s, &o, 7, BB_IR_TOOL_USE, NULL, NULL), 0);
    assert_int_equal(bb_dseq_ensure(&s, &o, 7, BB_IR_TOOL_USE), 0); /* the same block */
    assert_int_equal(bb_dseq_delta(&s, &o, BB_IR_D_INPUT_JSON, "{}", 2), 0);
    assert_int_equal(bb_dseq_text(&s, &o, BB_IR_TEXT, BB_IR_D_TEXT, "c", 1), 0);
    assert_int_equal(bb_dseq_close(&s, &o), 0);
    assert_int_equal(bb_dseq_close(&s, &o), 0); /* nothing open: nothing sent */
    assert_string_equal(l.text, "start:0:0 delta:0:0=a delta:0:0=b stop:0:0 start:1:3 "
                                "delta:1:3={} stop:1:3 start:2:0 delta:2:0=c stop:2:0");
    bb_arena_free(&a);
}

static void test_encoder_sequencer(void **state)
{
    (void)state;
    struct bb_eseq s;
    memset(&s, 0, sizeof s);
    struct bb_eseq_block *t = bb_eseq_open(&s, 0, BB_IR_TEXT, true);
    struct bb_eseq_block *img = bb_eseq_open(&s, 1, BB_IR_IMAGE, false);
    struct bb_eseq_block *tool = bb_eseq_open(&s, 2, BB_IR_TOOL_USE, true);
    assert_int_equal(t->wire, 0);
    assert_int_equal(img->wire, BB_ESEQ_NONE);
    assert_int_equal(tool->wire, 1);
    assert_ptr_equal(bb_eseq_find(&s, 2), tool);
    bb_eseq_remove(&s, bb_eseq_find(&s, 0));
    assert_null(bb_eseq_find(&s, 0));
    assert_int_equal(bb_eseq_find(&s, 2)->wire, 1);
    assert_int_equal(s.n_open, 2);
    for (uint32_t i = 0; i < BB_ESEQ_MAX - 2; i++)
        assert_non_null(bb_eseq_open(&s, 10 + i, BB_IR_TEXT, true));
    assert_null(bb_eseq_open(&s, 99, BB_IR_TEXT, true)); /* full */
    assert_int_equal(bb_ir_delta_block(BB_IR_D_SIGNATURE), BB_IR_THINKING);
    assert_int_equal(bb_ir_delta_block(BB_IR_D_INPUT_JSON), BB_IR_TOOL_USE);
}

static void test_vector(void **state)
{
    (void)state;
    struct bb_arena a;
    bb_arena_init(&a, 1 << 16);
    struct bb_vec v = {0};
    for (int i = 0; i < 100; i++) {
        struct bb_ir_block *b = BB_VEC_PUSH(&a, &v, struct bb_ir_block);
        assert_non_null(b);
        assert_int_equal(b->type, 0);
        b->type = BB_IR_TOOL_USE;
        b->is_error = i % 2;
    }
    assert_int_equal(v.n, 100);
    struct bb_ir_block *blocks = v.v;
    assert_int_equal(blocks[99].is_error, 1);
    assert_int_equal(blocks[0].type, BB_IR_TOOL_USE);
    bb_arena_free(&a);
}

static void test_sse_send(void **state)
{
    (void)state;
    struct evbuffer *b = evbuffer_new();
    assert_int_equal(bb_json_sse_send(b, "ping", bb_json_typed("ping")), 0);
    assert_int_equal(bb_json_sse_send(b, NULL, parse("{\"a\":\"x/y\"}")), 0);
    size_t n = evbuffer_get_length(b);
    char *s = (char *)evbuffer_pullup(b, (ev_ssize_t)n);
    assert_memory_equal(s, "event: ping\ndata: {\"type\":\"ping\"}\n\ndata: {\"a\":\"x/y\"}\n\n",
                        n);
    evbuffer_free(b);
}

static void test_media(void **state)
{
    (void)state;
    struct bb_arena a;
    bb_arena_init(&a, 1 << 16);
    struct bb_ir_str mt, data;
    const char *u = "DATA:image/png;charset=x;BASE64,iVBORw0KGgo=";
    assert_true(bb_media_split_data_url(u, strlen(u), &mt, &data));
    assert_int_equal(mt.len, 9);
    assert_memory_equal(mt.p, "image/png", 9);
    assert_string_equal(data.p, "iVBORw0KGgo=");
    assert_false(bb_media_split_data_url("data:text/plain,hello", 21, &mt, &data));
    assert_false(bb_media_split_data_url("https://x/y.png", 15, &mt, &data));
    struct bb_ir_str none = {NULL, 0}, d = {"QUJD", 4};
    struct bb_ir_str url = bb_media_data_url(&a, &none, "image/jpeg", &d);
    assert_string_equal(url.p, "data:image/jpeg;base64,QUJD");
    struct bb_ir_str e = bb_media_b64_encode(&a, "abcd", 4), back;
    assert_string_equal(e.p, "YWJjZA==");
    static const char *const same[] = {"YWJjZA==", "YWJjZA", " YWJj\nZA= = "};
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
        struct bb_ir_str s = {(char *)same[i], strlen(same[i])};
        assert_int_equal(bb_media_b64_decode(&a, &s, &back), 0);
        assert_int_equal(back.len, 4);
        assert_memory_equal(back.p, "abcd", 4);
    }
    static const char *const bad[] = {"YWJj*A==", "YQ=a", "Y", "YWJjZA==="};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct bb_ir_str s = {(char *)bad[i], strlen(bad[i])};
        if (bb_media_b64_decode(&a, &s, &back) == 0)
            fail_msg("decoded %s", bad[i]);
    }
    bb_arena_free(&a);
}

/* The envelope each module declares: the header lines its key is sent in (none without a
 * key, apart from an API version header), a probe path, a tool-id shape, and its framing
 * decides the Accept header. */
static void test_envelope(void **state)
{
    (void)state;
    static const struct {
        enum bb_proto p;
        const char *path, *auth, *probe, *prefix;
    } want[] = {
        {BB_PROTO_OPENAI, "/v1/chat/completions", "Authorization: Bearer k\r\n", "/v1/models",
         "call_"},
        {BB_PROTO_RESPONSES, "/v1/responses", "Authorization: Bearer k\r\n", "/v1/models", "call_"},
        {BB_PROTO_ANTHROPIC, "/v1/messages", "x-api-key: k\r\nanthropic-version: 2023-06-01\r\n",
         "/v1/models", "toolu_"},
        {BB_PROTO_GEMINI, NULL, "x-goog-api-key: k\r\n", "/v1beta/models", ""},
        {BB_PROTO_BEDROCK, NULL, "Authorization: Bearer k\r\n", "/", "tooluse_"},
        {BB_PROTO_COHERE, "/v2/chat", "Authorization: Bearer k\r\n", "/v1/models", ""},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const struct bb_proto_ops *o = bb_proto_get(want[i].p);
        assert_non_null(o->name);
        if (want[i].path)
            assert_string_equal(o->path, want[i].path);
        else
            assert_null(o->path);
        assert_string_equal(o->probe_path, want[i].probe);
        assert_string_equal(o->tool_id_prefix, want[i].prefix);
        struct evbuffer *b = evbuffer_new();
        assert_int_equal(o->auth_headers(b, "k"), 0);
        size_t n = evbuffer_get_length(b);
        assert_int_equal(n, strlen(want[i].auth));
        assert_memory_equal(evbuffer_pullup(b, -1), want[i].auth, n);
        evbuffer_drain(b, n);
        assert_int_equal(o->auth_headers(b, NULL), 0); /* no key: no key header */
        const char *nokey = want[i].p == BB_PROTO_ANTHROPIC ? strchr(want[i].auth, '\n') + 1 : "";
        n = evbuffer_get_length(b);
        assert_int_equal(n, strlen(nokey));
        if (n)
            assert_memory_equal(evbuffer_pullup(b, -1), nokey, n);
        evbuffer_free(b);
        assert_string_equal(bb_proto_accept(o, false), "application/json");
        assert_string_equal(bb_proto_accept(o, true), want[i].p == BB_PROTO_BEDROCK
                                                          ? "application/vnd.amazon.eventstream"
                                                          : "text/event-stream");
    }
    /* where clients put busbar credentials besides Authorization: Bearer */
    assert_string_equal(bb_proto_get(BB_PROTO_ANTHROPIC)->client_key_header, "x-api-key");
    assert_string_equal(bb_proto_get(BB_PROTO_GEMINI)->client_key_header, "x-goog-api-key");
    assert_string_equal(bb_proto_get(BB_PROTO_GEMINI)->client_key_query, "key");
    assert_string_equal(bb_proto_get(BB_PROTO_BEDROCK)->client_sigv4_service, "bedrock");
    assert_null(bb_proto_get(BB_PROTO_OPENAI)->client_sigv4_service);
    for (int p = 0; p < BB_PROTO__COUNT; p++) /* each module is found by its registry name */
        assert_int_equal(bb_proto_from_name(bb_proto_get((enum bb_proto)p)->name), p);

    /* an AWS key pair signs the body instead: no header from the envelope */
    struct evbuffer *b = evbuffer_new();
    assert_int_equal(bb_proto_get(BB_PROTO_BEDROCK)->auth_headers(b, "AKID:SECRET"), 0);
    assert_int_equal(evbuffer_get_length(b), 0);
    evbuffer_free(b);
}

/* Which module a path belongs to: its POST route, its model-in-path route (model, stream
 * flag), or, for a path nobody serves, whose 404 it gets. */
static int route_of(const char *path, const char *query, struct bb_proto_route *r)
{
    for (int p = 0; p < BB_PROTO__COUNT; p++) {
        const struct bb_proto_ops *o = bb_proto_get((enum bb_proto)p);
        memset(r, 0, sizeof *r);
        r->stream = -1;
        if (o->route && strcmp(o->route, path) == 0)
            return p;
        if (o->match_route && o->match_route(path, strlen(path), query, r) == 1)
            return p;
    }
    return -1;
}

static void test_routes(void **state)
{
    (void)state;
    static const struct {
        const char *path, *query;
        int proto;
        const char *model;
        int stream;
    } want[] = {
        {"/v1/chat/completions", NULL, BB_PROTO_OPENAI, NULL, -1},
        {"/v1/responses", NULL, BB_PROTO_RESPONSES, NULL, -1},
        {"/v1/messages", NULL, BB_PROTO_ANTHROPIC, NULL, -1},
        {"/my-pool/v1/messages", NULL, BB_PROTO_ANTHROPIC, "my-pool", -1},
        {"/v2/chat", NULL, BB_PROTO_COHERE, NULL, -1},
        {"/v1beta/models/gemini-x:generateContent", NULL, BB_PROTO_GEMINI, "gemini-x", 0},
        {"/v1/models/g%2Fy:streamGenerateContent", "alt=sse", BB_PROTO_GEMINI, "g%2Fy", 1},
        {"/model/us.anthropic.claude/converse", NULL, BB_PROTO_BEDROCK, "us.anthropic.claude", 0},
        {"/model/m/converse-stream", NULL, BB_PROTO_BEDROCK, "m", 1},
        {"/model/m/invoke", NULL, BB_PROTO_BEDROCK_INVOKE, "m", 0},
        {"/model/us.anthropic.claude-x-v1:0/invoke-with-response-stream", NULL,
         BB_PROTO_BEDROCK_INVOKE, "us.anthropic.claude-x-v1:0", 1},
        {"/model/us.anthropic.claude-x-v1%3A0/invoke", NULL, BB_PROTO_BEDROCK_INVOKE,
         "us.anthropic.claude-x-v1%3A0", 0},
        /* an ARN names its resource id, its '/' raw or encoded */
        {"/model/arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.c/invoke",
         NULL, BB_PROTO_BEDROCK_INVOKE, "us.anthropic.c", 0},
        {"/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Aapplication-inference-profile%2Fabc/"
         "converse",
         NULL, BB_PROTO_BEDROCK, "abc", 0},
        {"/model/invoke", NULL, -1, NULL, -1},
        {"/model//invoke", NULL, -1, NULL, -1},
        {"/v1beta/models/x:countTokens", NULL, -1, NULL, -1},
        {"/model/m/count-tokens", NULL, -1, NULL, -1},
        {"/v1/embeddings", NULL, -1, NULL, -1},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        struct bb_proto_route r;
        int p = route_of(want[i].path, want[i].query, &r);
        if (p != want[i].proto)
            fail_msg("%s: protocol %d, want %d", want[i].path, p, want[i].proto);
        if (p < 0)
            continue;
        if (want[i].model) {
            assert_int_equal(r.model_len, strlen(want[i].model));
            assert_memory_equal(r.model, want[i].model, r.model_len);
        } else {
            assert_null(r.model);
        }
        assert_int_equal(r.stream, want[i].stream);
    }
    struct bb_proto_route r;
    route_of("/v1beta/models/g:streamGenerateContent", "key=k", &r);
    unsigned json_array = r.flags;
    route_of("/v1beta/models/g:streamGenerateContent", "key=k&alt=sse", &r);
    assert_int_not_equal(r.flags, json_array); /* the SSE ask reaches the encoder */

    /* unknown paths: whose error dialect (NULL claims: the default's) */
    static const struct {
        const char *path;
        int proto;
    } claims[] = {
        {"/v1beta/cachedContents", BB_PROTO_GEMINI},
        {"/model/x/count-tokens", BB_PROTO_BEDROCK},
        {"/inference-profiles/p1", -1},
        {"/v2/embed", BB_PROTO_COHERE},
        {"/v1/responses/r1", BB_PROTO_RESPONSES},
        {"/x/v1/messages", BB_PROTO_ANTHROPIC},
        {"/v1/embeddings", -1},
    };
    for (size_t i = 0; i < sizeof claims / sizeof claims[0]; i++) {
        int got = -1;
        for (int p = 0; p < BB_PROTO__COUNT && got < 0; p++) {
            const struct bb_proto_ops *o = bb_proto_get((enum bb_proto)p);
            if (o->claims_path && o->claims_path(claims[i].path))
                got = p;
        }
        if (got != claims[i].proto)
            fail_msg("%s: claimed by %d, want %d", claims[i].path, got, claims[i].proto);
    }

    /* model lists: OpenAI's and Anthropic's (by its header) at /v1/models, Gemini's */
    static const char *const names[] = {"a", "b"};
    static const struct {
        int proto;
        const char *path, *header, *body;
    } lists[] = {
        {BB_PROTO_OPENAI, "/v1/models", NULL,
         "{\"object\":\"list\",\"data\":[{\"id\":\"a\",\"object\":\"model\",\"created\":0,"
         "\"owned_by\":\"busbar\"},{\"id\":\"b\",\"object\":\"model\",\"created\":0,"
         "\"owned_by\":\"busbar\"}]}"},
        {BB_PROTO_ANTHROPIC, "/v1/models", "anthropic-version",
         "{\"data\":[{\"type\":\"model\",\"id\":\"a\",\"display_name\":\"a\",\"created_at\":"
         "\"1970-01-01T00:00:00Z\"},{\"type\":\"model\",\"id\":\"b\",\"display_name\":\"b\","
         "\"created_at\":\"1970-01-01T00:00:00Z\"}],\"has_more\":false,\"first_id\":\"a\","
         "\"last_id\":\"b\"}"},
        {BB_PROTO_GEMINI, "/v1beta/models", NULL,
         "{\"models\":[{\"name\":\"models/a\",\"displayName\":\"a\",\"supportedGenerationMethods\":"
         "[\"generateContent\",\"streamGenerateContent\"]},{\"name\":\"models/b\",\"displayName\":"
         "\"b\",\"supportedGenerationMethods\":[\"generateContent\",\"streamGenerateContent\"]}]}"},
        /* Bedrock's control plane: ListInferenceProfiles, ListFoundationModels */
        {BB_PROTO_BEDROCK_INVOKE, "/inference-profiles", NULL,
         "{\"inferenceProfileSummaries\":[{\"inferenceProfileName\":\"a\",\"description\":"
         "\"busbar\",\"createdAt\":\"1970-01-01T00:00:00Z\",\"updatedAt\":\"1970-01-01T00:00:00Z\","
         "\"inferenceProfileArn\":\"arn:aws:bedrock:us-east-1:000000000000:inference-profile/a\","
         "\"models\":[{\"modelArn\":\"arn:aws:bedrock:us-east-1::foundation-model/a\"}],"
         "\"inferenceProfileId\":\"a\",\"status\":\"ACTIVE\",\"type\":\"SYSTEM_DEFINED\"},"
         "{\"inferenceProfileName\":\"b\",\"description\":\"busbar\",\"createdAt\":"
         "\"1970-01-01T00:00:00Z\",\"updatedAt\":\"1970-01-01T00:00:00Z\",\"inferenceProfileArn\":"
         "\"arn:aws:bedrock:us-east-1:000000000000:inference-profile/b\",\"models\":[{\"modelArn\":"
         "\"arn:aws:bedrock:us-east-1::foundation-model/b\"}],\"inferenceProfileId\":\"b\","
         "\"status\":\"ACTIVE\",\"type\":\"SYSTEM_DEFINED\"}]}"},
        {BB_PROTO_BEDROCK, "/foundation-models", NULL,
         "{\"modelSummaries\":[{\"modelArn\":\"arn:aws:bedrock:us-east-1::foundation-model/a\","
         "\"modelId\":\"a\",\"modelName\":\"a\",\"providerName\":\"busbar\",\"inputModalities\":"
         "[\"TEXT\"],\"outputModalities\":[\"TEXT\"],\"responseStreamingSupported\":true,"
         "\"customizationsSupported\":[],\"inferenceTypesSupported\":[\"ON_DEMAND\"],"
         "\"modelLifecycle\":{\"status\":\"ACTIVE\"}},{\"modelArn\":"
         "\"arn:aws:bedrock:us-east-1::foundation-model/b\",\"modelId\":\"b\",\"modelName\":\"b\","
         "\"providerName\":\"busbar\",\"inputModalities\":[\"TEXT\"],\"outputModalities\":"
         "[\"TEXT\"],\"responseStreamingSupported\":true,\"customizationsSupported\":[],"
         "\"inferenceTypesSupported\":[\"ON_DEMAND\"],\"modelLifecycle\":{\"status\":\"ACTIVE\"}}]"
         "}"},
    };
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
        const struct bb_proto_ops *o = bb_proto_get((enum bb_proto)lists[i].proto);
        assert_string_equal(o->models_path, lists[i].path);
        if (lists[i].header)
            assert_string_equal(o->models_header, lists[i].header);
        else
            assert_null(o->models_header);
        json_object *j = o->models_list(names, 2);
        assert_string_equal(json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN |
                                                                  JSON_C_TO_STRING_NOSLASHESCAPE),
                            lists[i].body);
        json_object_put(j);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strict_parse),
        cmocka_unit_test(test_numeric_policy),
        cmocka_unit_test(test_doubles_written),
        cmocka_unit_test(test_reader_paths),
        cmocka_unit_test(test_decoder_sequencer),
        cmocka_unit_test(test_encoder_sequencer),
        cmocka_unit_test(test_vector),
        cmocka_unit_test(test_sse_send),
        cmocka_unit_test(test_media),
        cmocka_unit_test(test_envelope),
        cmocka_unit_test(test_routes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
