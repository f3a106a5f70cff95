/*
 * test_proto_bedrock_invoke: worker/proto_bedrock_invoke.c, Bedrock InvokeModel with
 * Anthropic's Messages body: the body's envelope differences (model and stream in the path,
 * anthropic_version/anthropic_beta in the body), the egress path, signature and passthrough,
 * the chunked event stream both ways (base64 Messages events, metrics on message_stop,
 * exceptions), frame_scan, the terminator, answers and errors. Fixtures:
 * ../fixtures/proto/bedrock_invoke/.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#define FIX "../fixtures/proto/bedrock_invoke/"
#include "proto_test_common.h"
#include "worker/eventstream.h"
#include "worker/media.h"

static const struct bb_proto_ops *P = &bb_proto_bedrock_invoke;
static const struct bb_ingress_ctx ictx = {
    .request_id = "bb-t-1", .model = "pool", .created = 1700000000};

static struct bb_provider prov(const char *key)
{
    struct bb_provider pv;
    memset(&pv, 0, sizeof pv);
    pv.name = "aws";
    pv.protocol = BB_PROTO_BEDROCK_INVOKE;
    pv.url.tls = true;
    pv.url.host = "bedrock-runtime.eu-west-1.amazonaws.com";
    pv.url.port = 443;
    pv.url.path = "";
    pv.api_key = (char *)key;
    return pv;
}

static struct bb_lane lane_of(const char *model)
{
    struct bb_lane l;
    memset(&l, 0, sizeof l);
    l.name = "l";
    l.upstream_model = (char *)model;
    return l;
}

static const char *evstr(struct evbuffer *b)
{
    size_t n = evbuffer_get_length(b);
    evbuffer_add(b, "", 1);
    const char *s = (const char *)evbuffer_pullup(b, -1);
    (void)n;
    return s;
}

/* ---- requests ---- */

static void test_read_request(void **state)
{
    (void)state;
    struct bb_arena a;
    bb_arena_init(&a, 0);
    size_t n;
    char *body = slurp("request_claude_code.json", &n);
    struct bb_ir_request ir;
    struct bb_err err = {""};
    assert_int_equal(P->read_request(&a, body, n, "us.anthropic.claude-x-v1:0", &ir, &err), 0);
    assert_str(&ir.model, "us.anthropic.claude-x-v1:0");
    assert_int_equal(ir.n_unsupported, 0); /* anthropic_version and anthropic_beta are known */
    assert_int_equal(ir.max_tokens, 32000);
    assert_true(ir.reasoning);
    assert_int_equal(ir.n_system, 2);
    assert_true(ir.system[1].cache_control);
    assert_true(ir.messages[0].blocks[0].cache_control);
    assert_int_equal(ir.n_tools, 1);
    assert_str(&ir.tools[0].name, "Bash");
    assert_str(&ir.user, "u1");
    free(body);

    /* the path names the model and the stream: body members of the Messages API are not
     * Bedrock's */
    const char *b2 =
        "{\"anthropic_version\":\"bedrock-2023-05-31\",\"model\":\"x\",\"stream\":true,"
        "\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    assert_int_equal(P->read_request(&a, b2, strlen(b2), "m", &ir, &err), 0);
    assert_str(&ir.model, "m");
    assert_false(ir.stream);
    assert_true(has_unsupported(&ir, "model"));
    assert_true(has_unsupported(&ir, "stream"));

    /* a located error, as the Messages reader gives it */
    const char *b3 = "{\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":7}]}";
    assert_int_equal(P->read_request(&a, b3, strlen(b3), "m", &ir, &err), -1);
    assert_non_null(strstr(err.msg, "messages[0].content"));
    bb_arena_free(&a);
}

/* The request written for a lane: path (the model URI-encoded), signature, body. */
static void write(bool stream, const char *model, const char *key, struct bb_egress_req *er,
                  struct bb_arena *a)
{
    const char *body =
        "{\"model\":\"p\",\"max_tokens\":64,\"stream\":true,\"system\":\"Be brief.\","
        "\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}";
    struct bb_ir_request ir;
    struct bb_err err = {""};
    assert_int_equal(bb_proto_anthropic.read_request(a, body, strlen(body), NULL, &ir, &err), 0);
    struct bb_provider pv = prov(key);
    struct bb_lane l = lane_of(model);
    struct bb_egress_ctx ctx = {&pv, &l, stream, 1700000000, NULL};
    memset(er, 0, sizeof *er);
    er->headers = evbuffer_new();
    er->body = evbuffer_new();
    assert_int_equal(P->write_request(a, &ir, &ctx, er, &err), 0);
}

static void test_write_request(void **state)
{
    (void)state;
    struct bb_arena a;
    bb_arena_init(&a, 0);
    struct bb_egress_req er;
    write(true, "us.anthropic.claude-sonnet-4-5-20250929-v1:0", "AKID:SECRET", &er, &a);
    assert_string_equal(er.path, "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/"
                                 "invoke-with-response-stream");
    const char *h = evstr(er.headers);
    assert_non_null(strstr(h, "Authorization: AWS4-HMAC-SHA256 Credential=AKID/20231114/"
                              "eu-west-1/bedrock/aws4_request"));
    assert_non_null(strstr(h, "Accept: application/vnd.amazon.eventstream\r\n"));
    json_object *b = parse_str(evstr(er.body));
    assert_string_equal(json_object_get_string(get(b, "anthropic_version")), "bedrock-2023-05-31");
    assert_null(get(b, "model"));
    assert_null(get(b, "stream"));
    assert_int_equal(json_object_get_int(get(b, "max_tokens")), 64);
    assert_string_equal(json_object_get_string(get(b, "system")), "Be brief.");
    json_object_put(b);
    evbuffer_free(er.headers);
    evbuffer_free(er.body);

    /* a Bedrock API key is a bearer token; an ARN keeps its ':' and '/' encoded */
    write(false, "arn:aws:bedrock:eu-west-1:123:inference-profile/eu.anthropic.c", "ABSKkey", &er,
          &a);
    assert_string_equal(er.path, "/model/arn%3Aaws%3Abedrock%3Aeu-west-1%3A123%3Ainference-"
                                 "profile%2Feu.anthropic.c/invoke");
    assert_non_null(strstr(evstr(er.headers), "Authorization: Bearer ABSKkey\r\n"));
    evbuffer_free(er.headers);
    evbuffer_free(er.body);
    bb_arena_free(&a);
}

/* What only the Messages body carries (context_management, anthropic_beta, thinking.display,
 * tools[].defer_loading) goes along to a lane of the same body (the Messages API takes
 * anthropic_beta as its header) and is named dropped on any other. */
static void test_extras(void **state)
{
    (void)state;
    struct bb_arena a;
    bb_arena_init(&a, 0);
    const char *body =
        "{\"anthropic_version\":\"bedrock-2023-05-31\",\"max_tokens\":4096,"
        "\"anthropic_beta\":[\"context-management-2025-06-27\",\"x\\r\\nEvil: 1\",\"b2\"],"
        "\"context_management\":{\"edits\":[{\"type\":\"clear_tool_uses_20250919\"}]},"
        "\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":2048,\"display\":\"omitted\"},"
        "\"thinking.display\":7,"
        "\"tools\":[{\"name\":\"Late\",\"input_schema\":{\"type\":\"object\"},"
        "\"defer_loading\":true}],"
        "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    struct bb_ir_request ir;
    struct bb_err err = {""};
    assert_int_equal(P->read_request(&a, body, strlen(body), "m", &ir, &err), 0);
    assert_int_equal(ir.n_unsupported, 0);
    assert_true(has_extra(&ir, "anthropic_beta") && has_extra(&ir, "context_management") &&
                has_extra(&ir, "thinking.display"));

    struct bb_provider pv = prov("sk");
    pv.protocol = BB_PROTO_ANTHROPIC;
    struct bb_lane l = lane_of("claude");
    l.reasoning = true;
    const struct bb_proto_ops *to[] = {&bb_proto_anthropic, &bb_proto_bedrock_invoke,
                                       &bb_proto_openai};
    for (size_t t = 0; t < 3; t++) {
        drops_reset();
        struct bb_egress_ctx ctx = {&pv, &l, false, 1700000000, &test_drops};
        struct bb_egress_req er;
        memset(&er, 0, sizeof er);
        er.headers = evbuffer_new();
        er.body = evbuffer_new();
        assert_int_equal(bb_proto_write_request(to[t], &a, &ir, &ctx, &er, &err), 0);
        const char *h = evstr(er.headers);
        json_object *b = parse_str(evstr(er.body));
        json_object *th = get(b, "thinking");
        if (t < 2) { /* the Messages body: carried */
            assert_null(drops_text());
            assert_non_null(get(b, "context_management"));
            assert_string_equal(json_object_get_string(get(th, "display")), "omitted");
            /* a member whose own name has a dot stays a top-level member */
            assert_int_equal(json_object_get_int(get(b, "thinking.display")), 7);
            json_object *tool = json_object_array_get_idx(get(b, "tools"), 0);
            assert_true(json_object_get_boolean(get(tool, "defer_loading")));
            if (t == 0) { /* the Messages API takes the flags as its header; a bad one is
                           * left out */
                assert_null(get(b, "anthropic_beta"));
                assert_non_null(strstr(h, "anthropic-beta: context-management-2025-06-27,b2\r\n"));
                assert_null(strstr(h, "Evil"));
            } else {
                assert_int_equal(json_object_array_length(get(b, "anthropic_beta")), 3);
                assert_null(strstr(h, "anthropic-beta"));
            }
        } else { /* another body: named dropped, never sent */
            assert_true(dropped_has("context_management") && dropped_has("anthropic_beta") &&
                        dropped_has("thinking.display") && dropped_has("tools.defer_loading"));
            assert_null(get(b, "context_management"));
            assert_null(strstr(h, "anthropic-beta"));
        }
        json_object_put(b);
        evbuffer_free(er.headers);
        evbuffer_free(er.body);
    }
    bb_arena_free(&a);
}

static void test_passthrough(void **state)
{
    (void)state;
    struct bb_arena a;
    bb_arena_init(&a, 0);
    const char *body = "{\"anthropic_version\":\"bedrock-2023-05-31\",\"max_tokens\":1,"
                       "\"messages\":[{\"role\":\"user\",\"content\":\".\"}]}";
    struct bb_provider pv = prov("AKID:SECRET:TOKEN");
    struct bb_lane l = lane_of("anthropic.claude-3-haiku-20240307-v1:0");
    struct bb_egress_ctx ctx = {&pv, &l, false, 1700000000, NULL};
    struct bb_egress_req er;
    memset(&er, 0, sizeof er);
    er.headers = evbuffer_new();
    er.body = evbuffer_new();
    struct bb_err err = {""};
    assert_int_equal(P->write_passthrough(&a, body, strlen(body), &ctx, &er, &err), 0);
    assert_string_equal(er.path, "/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke");
    assert_string_equal(evstr(er.body), body); /* byte for byte */
    const char *h = evstr(er.headers);
    assert_non_null(strstr(h, "X-Amz-Security-Token: TOKEN\r\n"));
    assert_non_null(strstr(h, "SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;"
                              "x-amz-security-token"));
    evbuffer_free(er.headers);
    evbuffer_free(er.body);
    /* a malformed key pair is the provider's configuration error, said so */
    pv = prov(":SECRET");
    er.headers = evbuffer_new();
    er.body = evbuffer_new();
    assert_int_equal(P->write_passthrough(&a, body, strlen(body), &ctx, &er, &err), -1);
    assert_non_null(strstr(err.msg, "ACCESS_KEY_ID:SECRET_ACCESS_KEY"));
    evbuffer_free(er.headers);
    evbuffer_free(er.body);
    bb_arena_free(&a);
}

/* ---- answers and errors ---- */

static void test_answers(void **state)
{
    (void)state;
    struct bb_arena a;
    bb_arena_init(&a, 0);
    const char *msg =
        "{\"id\":\"msg_b\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"c\","
        "\"content\":[{\"type\":\"text\",\"text\":\"Hi\"}],\"stop_reason\":\"end_turn\","
        "\"usage\":{\"input_tokens\":3,\"cache_read_input_tokens\":5,"
        "\"output_tokens\":2}}";
    struct bb_ir_usage u = {0};
    struct bb_proto_error pe;
    assert_int_equal(P->answer_check(msg, strlen(msg), &u, &pe), 0);
    assert_int_equal(u.input, 3);
    assert_int_equal(u.cache_read, 5);
    struct bb_ir_response r;
    struct bb_err err = {""};
    assert_int_equal(P->read_response(&a, msg, strlen(msg), &r, &err), 0);
    assert_int_equal(r.stop, BB_IR_STOP_END_TURN);
    struct evbuffer *out = evbuffer_new();
    assert_int_equal(P->write_response(&a, &r, &ictx, out), 0);
    const char *again =
        "{\"id\":\"msg_b\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"c\","
        "\"content\":[{\"type\":\"text\",\"text\":\"Hi\"}],\"stop_reason\":\"end_turn\","
        "\"stop_sequence\":null,\"usage\":{\"input_tokens\":3,\"cache_creation_input_tokens\":0,"
        "\"cache_read_input_tokens\":5,\"output_tokens\":2}}";
    assert_json_eq("message", evstr(out), again);
    evbuffer_free(out);
    /* a Converse answer is not this protocol's */
    const char *conv = "{\"output\":{\"message\":{}},\"stopReason\":\"end_turn\"}";
    assert_int_equal(P->answer_check(conv, strlen(conv), NULL, &pe), -1);

    /* Bedrock's error body: {"message"}, the type in __type */
    const char *e = "{\"message\":\"Too many tokens\",\"__type\":"
                    "\"com.amazon.coral.availability#ThrottlingException\"}";
    assert_int_equal(P->read_error(e, strlen(e), &pe), 0);
    assert_string_equal(pe.type, "ThrottlingException");
    assert_string_equal(pe.message, "Too many tokens");
    bb_arena_free(&a);
}

/* ---- streams ---- */

struct pipe {
    void *dec, *enc;
    struct evbuffer *ir, *out;
    struct bb_arena *scratch;
    struct bb_frame_state st;
    struct evbuffer *scan;
};

static int on_ir(void *arg, const struct bb_ir_event *ev)
{
    struct pipe *p = arg;
    json_object *d = dump_event(ev);
    evbuffer_add_printf(p->ir, "%s\n", json_object_to_json_string_ext(d, JSON_C_TO_STRING_PLAIN));
    json_object_put(d);
    return P->enc_event(p->enc, p->scratch, ev, p->out) < 0 ? -1 : 0;
}

static int on_msg(void *arg, const struct bb_eventstream_msg *m)
{
    struct pipe *p = arg;
    struct bb_frame f;
    bb_eventstream_to_frame(m, &f);
    struct bb_frame_info fi;
    assert_int_equal(P->frame_scan(&f, &p->st, &fi), 0);
    evbuffer_add_printf(p->scan, "%c%c%c%c ", fi.content ? 'c' : '-', fi.stop ? 's' : '-',
                        fi.end ? 'e' : '-', fi.error ? 'E' : '-');
    struct bb_arena scratch;
    bb_arena_init(&scratch, 0);
    p->scratch = &scratch;
    int rc = P->dec_frame(p->dec, &scratch, &f, on_ir, p);
    bb_arena_free(&scratch);
    assert_int_equal(rc, 0);
    return 0;
}

/* Feed an event stream chunk bytes at a time through frame_scan, the decoder and the
 * encoder. */
static void run(const char *raw, size_t n, size_t chunk, struct pipe *p)
{
    memset(p, 0, sizeof *p);
    p->dec = calloc(1, P->dec_size);
    p->enc = calloc(1, P->enc_size);
    P->dec_init(p->dec);
    P->enc_init(p->enc, &ictx);
    p->ir = evbuffer_new();
    p->out = evbuffer_new();
    p->scan = evbuffer_new();
    struct bb_eventstream es;
    bb_eventstream_init(&es, 0);
    for (size_t i = 0; i < n; i += chunk)
        assert_int_equal(
            bb_eventstream_feed(&es, raw + i, i + chunk < n ? chunk : n - i, on_msg, p), 0);
    assert_int_equal(bb_eventstream_pending(&es), 0);
    bb_eventstream_free(&es);
}

static void done(struct pipe *p)
{
    free(p->dec);
    free(p->enc);
    evbuffer_free(p->ir);
    evbuffer_free(p->out);
    evbuffer_free(p->scan);
}

/* The decoded JSON of each chunk the encoder wrote, one a line. */
static int chunk_json(void *arg, const struct bb_eventstream_msg *m)
{
    struct evbuffer *out = arg;
    struct bb_frame f;
    bb_eventstream_to_frame(m, &f);
    if (f.exception) {
        evbuffer_add_printf(out, "exception %.*s %.*s\n", (int)f.event_len, f.event,
                            (int)f.data_len, f.data);
        return 0;
    }
    assert_int_equal(f.event_len, 5);
    json_object *o = parse(f.data, f.data_len);
    struct bb_arena a;
    bb_arena_init(&a, 0);
    struct bb_ir_str in = {(char *)json_object_get_string(get(o, "bytes")), 0}, dec;
    in.len = strlen(in.p);
    assert_int_equal(bb_media_b64_decode(&a, &in, &dec), 0);
    evbuffer_add_printf(out, "%s\n", dec.p);
    bb_arena_free(&a);
    json_object_put(o);
    return 0;
}

static char *decode_chunks(struct evbuffer *es_bytes)
{
    struct evbuffer *t = evbuffer_new();
    struct bb_eventstream es;
    bb_eventstream_init(&es, 0);
    size_t n = evbuffer_get_length(es_bytes);
    assert_int_equal(bb_eventstream_feed(&es, evbuffer_pullup(es_bytes, -1), n, chunk_json, t), 0);
    bb_eventstream_free(&es);
    char *s = strdup(evstr(t));
    evbuffer_free(t);
    return s;
}

static void test_stream_roundtrip(void **state)
{
    (void)state;
    size_t n;
    char *raw = slurp("stream_tools.es", &n);
    size_t chunks[] = {n, 1, 7};
    for (size_t c = 0; c < 3; c++) {
        struct pipe p;
        run(raw, n, chunks[c], &p);
        /* 16 chunks: the message start, 3 blocks (start, deltas, stop), the delta, the stop:
         * as the Messages API's frames mean */
        assert_string_equal(evstr(p.scan), "---- c--- c--- c--- ---- c--- c--- c--- ---- c--- "
                                           "c--- c--- c--- ---- cs-- cse- ");
        const char *ir = evstr(p.ir);
        assert_non_null(strstr(ir, "\"text\":\"Checking \""));
        assert_non_null(strstr(ir, "\"id\":\"toolu_bdrk_01T1x1\""));
        assert_non_null(strstr(ir, "\"text\":\"{\\\"city\\\": \\\"Pa\""));
        assert_non_null(strstr(ir, "\"text\":\"EqQBCgIYAhIM\"")); /* the signature */
        assert_non_null(strstr(ir, "\"cache_read\":1024"));
        assert_non_null(strstr(ir, "\"ev\":\"message_stop\""));
        /* the encoder gives the same events back, base64 in chunks, metrics on the stop */
        char *got = decode_chunks(p.out);
        assert_non_null(strstr(got, "{\"type\":\"content_block_delta\",\"index\":1,\"delta\":{"
                                    "\"type\":\"text_delta\",\"text\":\"Paris.\"}}"));
        assert_non_null(strstr(got, "\"stop_reason\":\"tool_use\""));
        const char *stop =
            strstr(got, "{\"type\":\"message_stop\",\"amazon-bedrock-invocation"
                        "Metrics\":{\"inputTokenCount\":472,\"outputTokenCount\":89,");
        assert_non_null(stop);
        assert_non_null(strstr(stop, "\"cacheReadInputTokenCount\":1024}}"));
        assert_null(strstr(got, "ping"));
        free(got);
        done(&p);
    }
    free(raw);
}

/* Errors: an exception message decodes to an in-band error and encodes back to one. */
static void test_stream_exception(void **state)
{
    (void)state;
    struct evbuffer *raw = evbuffer_new();
    const char *start = "{\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":{}}}";
    struct bb_arena a;
    bb_arena_init(&a, 0);
    struct bb_ir_str b64 = bb_media_b64_encode(&a, start, strlen(start));
    char payload[512];
    snprintf(payload, sizeof payload, "{\"bytes\":\"%s\"}", b64.p);
    assert_int_equal(bb_eventstream_write_event(raw, "chunk", payload, strlen(payload)), 0);
    const char *ex = "{\"message\":\"Too many requests, please wait\"}";
    assert_int_equal(bb_eventstream_write_exception(raw, "throttlingException", ex, strlen(ex)), 0);
    size_t n = evbuffer_get_length(raw);
    struct pipe p;
    run((const char *)evbuffer_pullup(raw, -1), n, n, &p);
    assert_string_equal(evstr(p.scan), "---- ---E ");
    const char *ir = evstr(p.ir);
    assert_non_null(strstr(ir, "\"ev\":\"error\""));
    assert_non_null(strstr(ir, "throttlingException"));
    char *got = decode_chunks(p.out);
    assert_non_null(strstr(got, "exception throttlingException {\"message\":\"Too many requests, "
                                "please wait\"}"));
    free(got);
    done(&p);

    /* a chunk whose bytes are not base64 of JSON is a malformed frame */
    struct bb_frame f = {"chunk", 5, "{\"bytes\":\"!!!\"}", 15, false};
    void *d = calloc(1, P->dec_size);
    P->dec_init(d);
    struct bb_frame_state st = {0};
    struct bb_frame_info fi;
    assert_int_equal(P->frame_scan(&f, &st, &fi), -1);
    assert_int_equal(P->dec_frame(d, &a, &f, on_ir, &p), -1);
    struct bb_frame g = {"chunk", 5, "[1]", 3, false};
    assert_int_equal(P->frame_scan(&g, &st, &fi), -1);
    free(d);
    evbuffer_free(raw);
    bb_arena_free(&a);
}

/* The terminator is a valid message_stop chunk, as the encoder would write it. */
static void test_terminator(void **state)
{
    (void)state;
    assert_non_null(P->terminator);
    assert_true(P->terminator_len > 16);
    struct bb_eventstream_msg m;
    size_t used;
    const char *why;
    assert_int_equal(
        bb_eventstream_parse((const uint8_t *)P->terminator, P->terminator_len, 0, &m, &used, &why),
        1);
    assert_int_equal(used, P->terminator_len);
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, P->terminator, P->terminator_len);
    char *got = decode_chunks(b);
    assert_string_equal(got, "{\"type\":\"message_stop\"}\n");
    free(got);
    evbuffer_free(b);
    struct bb_frame f;
    bb_eventstream_to_frame(&m, &f);
    struct bb_frame_state st = {0};
    struct bb_frame_info fi;
    assert_int_equal(P->frame_scan(&f, &st, &fi), 0);
    assert_true(fi.end);
}

static void test_ops(void **state)
{
    (void)state;
    assert_int_equal(P->framing, BB_FRAMING_EVENTSTREAM);
    assert_string_equal(P->stream_content_type(&ictx), "application/vnd.amazon.eventstream");
    assert_string_equal(P->client_sigv4_service, "bedrock");
    assert_null(P->route);
    assert_null(P->stream_member);
    assert_string_equal(P->tool_id_prefix, "toolu_");
    assert_string_equal(bb_proto_name(BB_PROTO_BEDROCK_INVOKE), "bedrock-invoke");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_request),
        cmocka_unit_test(test_write_request),
        cmocka_unit_test(test_extras),
        cmocka_unit_test(test_passthrough),
        cmocka_unit_test(test_answers),
        cmocka_unit_test(test_stream_roundtrip),
        cmocka_unit_test(test_stream_exception),
        cmocka_unit_test(test_terminator),
        cmocka_unit_test(test_ops),
    };
    return cmocka_run_group_tests_name("proto_bedrock_invoke", tests, NULL, NULL);
}
