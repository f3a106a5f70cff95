/*
 * test_translate: golden fixtures for every protocol pair (49 each): a client request in
 * protocol X → IR → the upstream request in protocol Y; a provider answer in Y → IR → the
 * client answer in X; a provider stream in Y → decoder → IR events → encoder X.
 * Inputs: ../fixtures/pairs/in/, goldens: ../fixtures/pairs/out/ (BB_UPDATE_GOLDEN=1 rewrites
 * them; review the diff before committing).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <json-c/json.h>

#include "common/sse.h"
#include "worker/eventstream.h"
#include "worker/ir.h"
#include "worker/media.h"
#include "worker/proto.h"

#define IN "../fixtures/pairs/in/"
#define OUT "../fixtures/pairs/out/"

static const enum bb_proto protos[] = {
    BB_PROTO_OPENAI,  BB_PROTO_RESPONSES, BB_PROTO_ANTHROPIC,     BB_PROTO_GEMINI,
    BB_PROTO_BEDROCK, BB_PROTO_COHERE,    BB_PROTO_BEDROCK_INVOKE};
#define NPROTO (sizeof protos / sizeof protos[0])

/* The module name: fixture files are named by it. */
static const char *short_name(enum bb_proto p)
{
    return bb_proto_get(p)->name;
}

static bool aws(enum bb_proto p)
{
    return p == BB_PROTO_BEDROCK || p == BB_PROTO_BEDROCK_INVOKE;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[n] = '\0';
        *len = (size_t)n;
    }
    return buf;
}

/* Compare got with the golden file (or write it); returns 0 when equal. */
static int golden(const char *name, const char *got, size_t len)
{
    char path[512];
    snprintf(path, sizeof path, OUT "%s", name);
    if (getenv("BB_UPDATE_GOLDEN")) {
        FILE *f = fopen(path, "wb");
        if (!f)
            return -1;
        fwrite(got, 1, len, f);
        fclose(f);
        return 0;
    }
    size_t wl;
    char *want = slurp(path, &wl);
    int rc = !want || wl != len || memcmp(want, got, len) != 0;
    if (rc)
        print_message("# golden mismatch: %s%s\n", path, want ? "" : " (missing)");
    free(want);
    return rc;
}

static void pretty(struct evbuffer *out, const char *json, size_t len)
{
    json_tokener *tok = json_tokener_new();
    json_object *o = tok ? json_tokener_parse_ex(tok, json, (int)len) : NULL;
    if (tok)
        json_tokener_free(tok);
    if (!o) {
        evbuffer_add(out, json, len);
        return;
    }
    evbuffer_add_printf(out, "%s\n",
                        json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
                                                              JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(o);
}

static struct bb_provider provider(enum bb_proto p)
{
    struct bb_provider pv;
    memset(&pv, 0, sizeof pv);
    pv.name = "prov";
    pv.protocol = p;
    pv.url.tls = true;
    pv.url.host = aws(p) ? "bedrock-runtime.us-east-1.amazonaws.com" : "api.example.com";
    pv.url.port = 443;
    pv.url.path = "";
    pv.api_key = aws(p) ? "AKIDEXAMPLE:wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY" : "sk-test";
    pv.region = aws(p) ? "us-east-1" : NULL;
    return pv;
}

static struct bb_lane lane(void)
{
    struct bb_lane l;
    memset(&l, 0, sizeof l);
    l.name = "up";
    l.upstream_model = "up-model";
    l.default_max_tokens = 4096;
    l.reasoning = true;
    return l;
}

static const struct bb_ingress_ctx ictx = {.request_id = "bb-test-1",
                                           .model = "p",
                                           .created = 1700000000,
                                           .include_usage = true,
                                           .route_flags = 1};

/* ---- requests: X in → Y out ---- */

static void test_requests(void **state)
{
    (void)state;
    int failures = 0;
    for (size_t i = 0; i < NPROTO; i++) {
        enum bb_proto x = protos[i];
        char path[256];
        snprintf(path, sizeof path, IN "req.%s.json", short_name(x));
        size_t len;
        char *body = slurp(path, &len);
        assert_non_null(body);
        for (size_t j = 0; j < NPROTO; j++) {
            enum bb_proto y = protos[j];
            struct bb_arena a;
            bb_arena_init(&a, 0);
            struct bb_ir_request ir;
            memset(&ir, 0, sizeof ir);
            struct bb_err err = {""};
            struct evbuffer *out = evbuffer_new();
            const struct bb_proto_ops *xo = bb_proto_get(x), *yo = bb_proto_get(y);
            int rc = xo->read_request ? xo->read_request(&a, body, len, "p", &ir, &err) : -1;
            if (rc == 0) {
                bb_ir_ids_unwrap(&ir, xo->tool_id_prefix);
                struct bb_provider pv = provider(y);
                struct bb_lane l = lane();
                struct bb_dropped dropped = {0};
                struct bb_egress_ctx ctx = {&pv, &l, false, 1700000000, &dropped};
                struct bb_egress_req er;
                memset(&er, 0, sizeof er);
                er.headers = evbuffer_new();
                er.body = evbuffer_new();
                rc = yo->write_request ? bb_proto_write_request(yo, &a, &ir, &ctx, &er, &err) : -1;
                if (rc == 0) {
                    evbuffer_add_printf(out, "POST %s\n", er.path);
                    evbuffer_add_buffer(out, er.headers);
                    char d[1024];
                    bb_proto_dropped_text(&dropped, d, sizeof d);
                    evbuffer_add_printf(out, "dropped: %s\nunsupported:", d);
                    for (size_t k = 0; k < ir.n_unsupported; k++)
                        evbuffer_add_printf(out, " %s", ir.unsupported[k]);
                    evbuffer_add(out, "\n\n", 2);
                    size_t bl = evbuffer_get_length(er.body);
                    pretty(out, (const char *)evbuffer_pullup(er.body, (ev_ssize_t)bl), bl);
                }
                evbuffer_free(er.headers);
                evbuffer_free(er.body);
            }
            char name[128];
            snprintf(name, sizeof name, "req.%s-%s.txt", short_name(x), short_name(y));
            if (rc != 0) {
                print_message("# %s: failed: %s\n", name, err.msg);
                failures++;
            } else {
                size_t ol = evbuffer_get_length(out);
                failures += golden(name, (const char *)evbuffer_pullup(out, (ev_ssize_t)ol), ol);
            }
            evbuffer_free(out);
            bb_arena_free(&a);
        }
        free(body);
    }
    assert_int_equal(failures, 0);
}

/* ---- responses: Y provider answer → X client answer ---- */

static void test_responses(void **state)
{
    (void)state;
    int failures = 0;
    for (size_t j = 0; j < NPROTO; j++) {
        enum bb_proto y = protos[j];
        char path[256];
        snprintf(path, sizeof path, IN "resp.%s.json", short_name(y));
        size_t len;
        char *body = slurp(path, &len);
        if (!body) {
            print_message("# missing %s\n", path);
            failures++;
            continue;
        }
        for (size_t i = 0; i < NPROTO; i++) {
            enum bb_proto x = protos[i];
            struct bb_arena a;
            bb_arena_init(&a, 0);
            struct bb_ir_response r;
            memset(&r, 0, sizeof r);
            struct bb_err err = {""};
            struct evbuffer *out = evbuffer_new();
            const struct bb_proto_ops *xo = bb_proto_get(x), *yo = bb_proto_get(y);
            int rc = yo->read_response ? yo->read_response(&a, body, len, &r, &err) : -1;
            if (rc == 0) {
                if (x != y)
                    bb_ir_response_wrap_ids(&a, &r, bb_proto_get(x)->tool_id_prefix);
                struct evbuffer *w = evbuffer_new();
                rc = xo->write_response ? xo->write_response(&a, &r, &ictx, w) : -1;
                size_t wl = evbuffer_get_length(w);
                if (rc == 0)
                    pretty(out, (const char *)evbuffer_pullup(w, (ev_ssize_t)wl), wl);
                evbuffer_free(w);
            }
            char name[128];
            snprintf(name, sizeof name, "resp.%s-%s.json", short_name(y), short_name(x));
            if (rc != 0) {
                print_message("# %s: failed: %s\n", name, err.msg);
                failures++;
            } else {
                size_t ol = evbuffer_get_length(out);
                failures += golden(name, (const char *)evbuffer_pullup(out, (ev_ssize_t)ol), ol);
            }
            evbuffer_free(out);
            bb_arena_free(&a);
        }
        free(body);
    }
    assert_int_equal(failures, 0);
}

/* ---- streams: Y frames → IR events → X frames ---- */

/* An InvokeModel stream as text, one message a line: its type and payload, a chunk's base64
 * decoded, the measured latencies of the metrics as 0 (the rest of the bytes are the module's
 * own, checked by test_proto_bedrock_invoke). */
static int es_line(void *arg, const struct bb_eventstream_msg *m)
{
    struct evbuffer *out = arg;
    struct bb_frame f;
    bb_eventstream_to_frame(m, &f);
    evbuffer_add_printf(out, "%s %.*s ", f.exception ? "exception" : "event", (int)f.event_len,
                        f.event);
    char *text = strndup(f.data ? f.data : "", f.data_len); /* the payload is not a C string */
    json_object *o = text ? json_tokener_parse(text) : NULL;
    free(text);
    json_object *b = o ? json_object_object_get(o, "bytes") : NULL;
    if (b) {
        struct bb_arena a;
        bb_arena_init(&a, 0);
        struct bb_ir_str in = {(char *)json_object_get_string(b),
                               (size_t)json_object_get_string_len(b)},
                         dec;
        json_object *e = bb_media_b64_decode(&a, &in, &dec) == 0 ? json_tokener_parse(dec.p) : NULL;
        json_object *met = e ? json_object_object_get(e, "amazon-bedrock-invocationMetrics") : NULL;
        if (met) {
            json_object_object_add(met, "invocationLatency", json_object_new_int(0));
            json_object_object_add(met, "firstByteLatency", json_object_new_int(0));
        }
        evbuffer_add_printf(out, "%s\n",
                            e ? json_object_to_json_string_ext(
                                    e, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)
                              : "(bad bytes)");
        json_object_put(e);
        bb_arena_free(&a);
    } else {
        evbuffer_add_printf(out, "%.*s\n", (int)f.data_len, f.data ? f.data : "");
    }
    json_object_put(o);
    return 0;
}

static void es_text(struct evbuffer *in)
{
    struct evbuffer *out = evbuffer_new();
    struct bb_eventstream es;
    bb_eventstream_init(&es, 0);
    size_t n = evbuffer_get_length(in);
    if (bb_eventstream_feed(&es, evbuffer_pullup(in, (ev_ssize_t)n), n, es_line, out) < 0)
        evbuffer_add_printf(out, "(bad framing)\n");
    bb_eventstream_free(&es);
    evbuffer_drain(in, n);
    evbuffer_add_buffer(in, out);
    evbuffer_free(out);
}

struct pipe {
    const struct bb_proto_ops *yo, *xo;
    void *dec, *enc;
    enum bb_proto x, y;
    struct evbuffer *out;
    struct bb_arena *scratch;
    int rc;
};

static int on_event(void *arg, const struct bb_ir_event *ev)
{
    struct pipe *p = arg;
    struct bb_ir_event copy = *ev;
    if (ev->type == BB_IR_EV_BLOCK_START && ev->block_type == BB_IR_TOOL_USE && p->x != p->y)
        copy.id = bb_ir_id_wrap(p->scratch, bb_proto_get(p->x)->tool_id_prefix, ev->id);
    return p->xo->enc_event(p->enc, p->scratch, &copy, p->out) < 0 ? -1 : 0;
}

static int feed_frame(struct pipe *p, const struct bb_frame *f)
{
    struct bb_arena scratch;
    bb_arena_init(&scratch, 0);
    p->scratch = &scratch;
    int rc = p->yo->dec_frame(p->dec, &scratch, f, on_event, p);
    bb_arena_free(&scratch);
    if (rc < 0)
        p->rc = -1;
    return rc < 0 ? 1 : 0;
}

static int on_sse(void *arg, const struct bb_sse_event *ev)
{
    struct bb_frame f = {ev->event, ev->event_len, ev->data, ev->data_len, false};
    return feed_frame(arg, &f);
}

static int on_es(void *arg, const struct bb_eventstream_msg *m)
{
    struct bb_frame f;
    bb_eventstream_to_frame(m, &f);
    return feed_frame(arg, &f);
}

/* One stream input (IN "stream.<stem>.<ext>", in protocol y) through every encoder: goldens
 * "stream.<stem>-<x>.<ext>". The number of failures. */
static int stream_input(enum bb_proto y, const char *stem)
{
    int failures = 0;
    const struct bb_proto_ops *yo = bb_proto_get(y);
    char path[256];
    snprintf(path, sizeof path, IN "stream.%s.%s", stem,
             yo->framing == BB_FRAMING_EVENTSTREAM ? "es" : "sse");
    size_t len;
    char *raw = slurp(path, &len);
    if (!raw || !yo->dec_frame) {
        print_message("# stream input %s missing or no decoder\n", stem);
        free(raw);
        return 1;
    }
    for (size_t i = 0; i < NPROTO; i++) {
        enum bb_proto x = protos[i];
        struct bb_arena a;
        bb_arena_init(&a, 0);
        struct pipe p = {yo, bb_proto_get(x), NULL, NULL, x, y, evbuffer_new(), NULL, 0};
        if (!p.xo->enc_event) {
            print_message("# no encoder for %s\n", short_name(x));
            failures++;
            evbuffer_free(p.out);
            bb_arena_free(&a);
            continue;
        }
        p.dec = bb_arena_calloc(&a, yo->dec_size + 1);
        p.enc = bb_arena_calloc(&a, p.xo->enc_size + 1);
        yo->dec_init(p.dec);
        p.xo->enc_init(p.enc, &ictx);
        if (yo->framing == BB_FRAMING_EVENTSTREAM) {
            struct bb_eventstream es;
            bb_eventstream_init(&es, 0);
            if (bb_eventstream_feed(&es, raw, len, on_es, &p) < 0)
                p.rc = -1;
            bb_eventstream_free(&es);
        } else {
            struct bb_sse s;
            bb_sse_init(&s, 0);
            if (bb_sse_feed(&s, raw, len, on_sse, &p) < 0)
                p.rc = -1;
            bb_sse_free(&s);
        }
        if (p.xo->enc_finish)
            p.xo->enc_finish(p.enc, p.out);
        char name[128];
        bool text = x == BB_PROTO_BEDROCK_INVOKE;
        if (text)
            es_text(p.out);
        snprintf(name, sizeof name, "stream.%s-%s.%s", stem, short_name(x),
                 text                                      ? "txt"
                 : p.xo->framing == BB_FRAMING_EVENTSTREAM ? "es"
                                                           : "sse");
        if (p.rc != 0) {
            print_message("# %s: decode/encode failed\n", name);
            failures++;
        } else {
            size_t ol = evbuffer_get_length(p.out);
            failures += golden(name, (const char *)evbuffer_pullup(p.out, (ev_ssize_t)ol), ol);
        }
        evbuffer_free(p.out);
        bb_arena_free(&a);
    }
    free(raw);
    return failures;
}

static void test_streams(void **state)
{
    (void)state;
    int failures = 0;
    for (size_t j = 0; j < NPROTO; j++)
        failures += stream_input(protos[j], short_name(protos[j]));
    /* parallel tool calls whose arguments interleave (vLLM and other OpenAI-compatible
     * servers): every client gets each call whole, under its own name */
    failures += stream_input(BB_PROTO_OPENAI, "openai_interleaved");
    assert_int_equal(failures, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_requests),
        cmocka_unit_test(test_responses),
        cmocka_unit_test(test_streams),
    };
    return cmocka_run_group_tests_name("translate", tests, NULL, NULL);
}
