/*
 * test_proto_responses: the OpenAI Responses module (worker/proto_responses) against golden
 * fixtures in ../fixtures/proto/responses (the test runs from tests/unit):
 *   ingress   request_full.json → IR (every mapped field) and malformed bodies → errors;
 *   egress    hand-built IR → upstream body (egress_request.json), path, headers, drops;
 *             request_full.json → IR → upstream body (egress_from_responses.json);
 *   responses provider bodies → IR → write_response (response_client*.json);
 *   streams   recorded native transcripts (*.sse), framed by common/sse whole and one byte at
 *             a time, one frame per dec_frame call, scratch arena per frame → IR dump (*.ir)
 *             → encoder → transcript (*.out.sse), compared event by event as canonical JSON.
 * BB_UPDATE_GOLDEN=1 rewrites the golden files from the current output (review the diff).
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
#include "common/sse.h"
#include "worker/proto.h"

#define FIX "../fixtures/proto/responses/"

static const struct bb_proto_ops *P;

#include "proto_test_common.h"

/* ---- IR event dump ---- */

static const char *block_name(enum bb_ir_block_type t)
{
    static const char *const n[] = {"TEXT",        "THINKING", "REDACTED_THINKING", "TOOL_USE",
                                    "TOOL_RESULT", "IMAGE",    "DOCUMENT"};
    return n[t];
}

static const char *delta_name(enum bb_ir_delta d)
{
    static const char *const n[] = {"TEXT",       "THINKING", "SIGNATURE",
                                    "INPUT_JSON", "REDACTED", "CITATION"};
    return n[d];
}

static void ev_str(struct evbuffer *b, const struct bb_ir_str *s)
{
    json_object *o = json_object_new_string_len(s->p ? s->p : "", (int)s->len);
    evbuffer_add_printf(
        b, " %s",
        json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(o);
}

static void ev_usage(struct evbuffer *b, const struct bb_ir_usage *u)
{
    if (u->set)
        evbuffer_add_printf(b,
                            " usage=in:%llu,out:%llu,cache_read:%llu,cache_write:%llu,"
                            "reasoning:%llu",
                            (unsigned long long)u->input, (unsigned long long)u->output,
                            (unsigned long long)u->cache_read, (unsigned long long)u->cache_write,
                            (unsigned long long)u->reasoning);
}

static void ev_line(struct evbuffer *b, const struct bb_ir_event *ev)
{
    switch (ev->type) {
    case BB_IR_EV_MESSAGE_START:
        evbuffer_add_printf(b, "MESSAGE_START");
        if (ev->id.p)
            evbuffer_add_printf(b, " id=%s", ev->id.p);
        if (ev->model.p)
            evbuffer_add_printf(b, " model=%s", ev->model.p);
        ev_usage(b, &ev->usage);
        break;
    case BB_IR_EV_BLOCK_START:
        evbuffer_add_printf(b, "BLOCK_START %u %s", ev->index, block_name(ev->block_type));
        if (ev->id.p)
            evbuffer_add_printf(b, " id=%s", ev->id.p);
        if (ev->name.p)
            evbuffer_add_printf(b, " name=%s", ev->name.p);
        break;
    case BB_IR_EV_BLOCK_DELTA:
        evbuffer_add_printf(b, "BLOCK_DELTA %u %s", ev->index, delta_name(ev->delta));
        ev_str(b, &ev->text);
        break;
    case BB_IR_EV_BLOCK_STOP:
        evbuffer_add_printf(b, "BLOCK_STOP %u", ev->index);
        break;
    case BB_IR_EV_MESSAGE_DELTA:
        evbuffer_add_printf(b, "MESSAGE_DELTA stop=%s", bb_ir_stop_name(ev->stop));
        ev_usage(b, &ev->usage);
        break;
    case BB_IR_EV_MESSAGE_STOP:
        evbuffer_add_printf(b, "MESSAGE_STOP");
        break;
    case BB_IR_EV_ERROR:
        evbuffer_add_printf(b, "ERROR type=%s status=%d", ev->error_type.p ? ev->error_type.p : "",
                            ev->error_status);
        ev_str(b, &ev->text);
        break;
    case BB_IR_EV_PING:
        evbuffer_add_printf(b, "PING");
        break;
    }
    evbuffer_add(b, "\n", 1);
}

/* ---- the stream pipeline: transcript → decoder → IR → encoder ---- */

struct pipe {
    void *dec, *enc;
    struct bb_arena *scratch; /* the current frame's scratch arena */
    struct evbuffer *ir;      /* IR dump */
    struct evbuffer *out;     /* re-encoded transcript */
    int frames;
    int last_index; /* block indexes must arrive in order */
    bool started;
};

static int on_ir(void *arg, const struct bb_ir_event *ev)
{
    struct pipe *p = arg;
    ev_line(p->ir, ev);
    if (ev->type == BB_IR_EV_MESSAGE_START) {
        assert_false(p->started);
        p->started = true;
    }
    if (ev->type == BB_IR_EV_BLOCK_START) {
        assert_true(p->started);
        assert_int_equal((int)ev->index, p->last_index + 1);
        p->last_index = (int)ev->index;
    }
    assert_int_equal(P->enc_event(p->enc, p->scratch, ev, p->out), 0);
    return 0;
}

static int on_frame(void *arg, const struct bb_sse_event *sev)
{
    struct pipe *p = arg;
    struct bb_arena scratch;
    bb_arena_init(&scratch, 0);
    p->scratch = &scratch;
    /* Exact-size copies so that ASan sees any read past the frame. */
    char *ev = malloc(sev->event_len + 1), *data = malloc(sev->data_len + 1);
    memcpy(ev, sev->event, sev->event_len);
    memcpy(data, sev->data, sev->data_len);
    struct bb_frame f = {
        .event = ev, .event_len = sev->event_len, .data = data, .data_len = sev->data_len};
    int rc = P->dec_frame(p->dec, &scratch, &f, on_ir, p);
    free(ev);
    free(data);
    bb_arena_free(&scratch);
    p->scratch = NULL;
    p->frames++;
    assert_int_equal(rc, 0);
    return 0;
}

static const struct bb_ingress_ctx stream_ctx = {
    .request_id = "req7", .model = "fast", .created = 1741290000};

/* Run one transcript through decoder and encoder, fed in pieces of `chunk` bytes (0 = whole). */
static void run_pipe(const char *name, size_t chunk, char **ir_out, char **enc_out, size_t *enc_len)
{
    char path[256];
    snprintf(path, sizeof path, "%s.sse", name);
    size_t n;
    char *src = slurp(path, &n);
    struct pipe p = {.last_index = -1};
    p.dec = calloc(1, P->dec_size);
    p.enc = calloc(1, P->enc_size);
    p.ir = evbuffer_new();
    p.out = evbuffer_new();
    P->dec_init(p.dec);
    P->enc_init(p.enc, &stream_ctx);
    struct bb_sse sse;
    bb_sse_init(&sse, 1 << 20);
    size_t step = chunk ? chunk : n;
    for (size_t at = 0; at < n; at += step) {
        size_t len = n - at < step ? n - at : step;
        char *piece = malloc(len);
        memcpy(piece, src + at, len);
        assert_int_equal(bb_sse_feed(&sse, piece, len, on_frame, &p), 0);
        free(piece);
    }
    bb_sse_free(&sse);
    if (P->enc_finish)
        P->enc_finish(p.enc, p.out);
    *ir_out = buf_str(p.ir, NULL);
    *enc_out = buf_str(p.out, enc_len);
    evbuffer_free(p.ir);
    evbuffer_free(p.out);
    free(p.dec);
    free(p.enc);
    free(src);
}

static void check_stream(const char *name)
{
    char *ir, *enc, *ir1, *enc1;
    size_t n, n1;
    char golden[256];
    run_pipe(name, 0, &ir, &enc, &n);
    snprintf(golden, sizeof golden, "%s.ir", name);
    assert_text_golden(ir, strlen(ir), golden);
    snprintf(golden, sizeof golden, "%s.out.sse", name);
    assert_sse_golden(enc, n, golden);
    /* The same transcript delivered one byte at a time gives the same events. */
    run_pipe(name, 1, &ir1, &enc1, &n1);
    assert_string_equal(ir, ir1);
    assert_string_equal(enc, enc1);
    free(ir);
    free(enc);
    free(ir1);
    free(enc1);
}

static void test_stream_tools(void **state)
{
    (void)state;
    check_stream("stream_tools");
}

static void test_stream_reasoning(void **state)
{
    (void)state;
    check_stream("stream_reasoning");
}

static void test_stream_error(void **state)
{
    (void)state;
    check_stream("stream_error");
}

static void test_stream_incomplete(void **state)
{
    (void)state;
    check_stream("stream_incomplete");
}

/* Decode frames given inline (no event names: the data's type decides) into an IR dump. */
static char *decode_frames(const char *const *frames, size_t n)
{
    struct pipe p = {.last_index = -1};
    p.dec = calloc(1, P->dec_size);
    p.enc = calloc(1, P->enc_size);
    p.ir = evbuffer_new();
    p.out = evbuffer_new();
    P->dec_init(p.dec);
    P->enc_init(p.enc, &stream_ctx);
    for (size_t i = 0; i < n; i++) {
        struct bb_sse_event sev = {.event = "", .data = frames[i], .data_len = strlen(frames[i])};
        on_frame(&p, &sev);
    }
    P->enc_finish(p.enc, p.out);
    char *ir = buf_str(p.ir, NULL);
    evbuffer_free(p.ir);
    evbuffer_free(p.out);
    free(p.dec);
    free(p.enc);
    return ir;
}

/* Text deltas without output_index (a fuzzer's find: its key was built from -1 by shifting a
 * negative number) still make one text block. */
static void test_decode_no_output_index(void **state)
{
    (void)state;
    static const char *const frames[] = {
        "{\"type\":\"response.created\",\"response\":{\"id\":\"resp_n\",\"model\":\"m\"}}",
        "{\"type\":\"response.output_text.delta\",\"delta\":\"a\"}",
        "{\"type\":\"response.output_text.delta\",\"content_index\":-7,\"delta\":\"b\"}",
        "{\"type\":\"response.completed\",\"response\":{\"id\":\"resp_n\",\"status\":"
        "\"completed\",\"output\":[]}}",
    };
    char *ir = decode_frames(frames, sizeof frames / sizeof frames[0]);
    assert_non_null(strstr(ir, "\"a\""));
    assert_non_null(strstr(ir, "\"b\""));
    free(ir);
}

/* Providers that send whole items (no deltas), or only the final response. */
static void test_decode_whole_items(void **state)
{
    (void)state;
    static const char *const items[] = {
        "{\"type\":\"response.created\",\"response\":{\"id\":\"resp_w\",\"model\":\"m\","
        "\"usage\":null}}",
        "{\"type\":\"keepalive\"}",
        "{\"type\":\"response.output_item.done\",\"output_index\":0,\"item\":{\"type\":"
        "\"reasoning\",\"id\":\"rs_w\",\"summary\":[{\"type\":\"summary_text\",\"text\":\"hm\"}],"
        "\"encrypted_content\":\"ENC\"}}",
        "{\"type\":\"response.output_item.added\",\"output_index\":1,\"item\":{\"type\":"
        "\"message\",\"id\":\"msg_w\",\"content\":[]}}",
        "{\"type\":\"response.output_item.done\",\"output_index\":1,\"item\":{\"type\":"
        "\"message\",\"content\":[{\"type\":\"output_text\",\"text\":\"A\"},{\"type\":"
        "\"refusal\",\"refusal\":\"B\"}]}}",
        "{\"type\":\"response.output_item.added\",\"output_index\":2,\"item\":{\"type\":"
        "\"function_call\",\"call_id\":\"c1\",\"name\":\"f\",\"arguments\":\"\"}}",
        "{\"type\":\"response.function_call_arguments.done\",\"output_index\":2,"
        "\"arguments\":\"{\\\"x\\\":1}\"}",
        "{\"type\":\"response.output_item.done\",\"output_index\":2,\"item\":{\"type\":"
        "\"function_call\",\"call_id\":\"c1\",\"name\":\"f\",\"arguments\":\"{\\\"x\\\":1}\"}}",
        "{\"type\":\"response.web_search_call.searching\",\"output_index\":3}",
        "{\"type\":\"response.completed\",\"response\":{\"id\":\"resp_w\",\"status\":"
        "\"completed\",\"output\":[],\"usage\":{\"input_tokens\":9,\"output_tokens\":3,"
        "\"input_tokens_details\":{\"cached_tokens\":4,\"cache_write_tokens\":2}}}}",
        "[DONE]",
    };
    char *ir = decode_frames(items, sizeof items / sizeof items[0]);
    assert_string_equal(ir, "MESSAGE_START id=resp_w model=m\n"
                            "PING\n"
                            "BLOCK_START 0 THINKING id=rs_w\n"
                            "BLOCK_DELTA 0 THINKING \"hm\"\n"
                            "BLOCK_DELTA 0 SIGNATURE \"ENC\"\n"
                            "BLOCK_STOP 0\n"
                            "BLOCK_START 1 TEXT\n"
                            "BLOCK_DELTA 1 TEXT \"A\"\n"
                            "BLOCK_STOP 1\n"
                            "BLOCK_START 2 TEXT\n"
                            "BLOCK_DELTA 2 TEXT \"B\"\n"
                            "BLOCK_STOP 2\n"
                            "BLOCK_START 3 TOOL_USE id=c1 name=f\n"
                            "BLOCK_DELTA 3 INPUT_JSON \"{\\\"x\\\":1}\"\n"
                            "BLOCK_STOP 3\n"
                            "MESSAGE_DELTA stop=tool_use usage=in:3,out:3,cache_read:4,"
                            "cache_write:2,reasoning:0\n"
                            "MESSAGE_STOP\n");
    free(ir);

    /* Only the final response carries the answer. */
    static const char *const final_only[] = {
        "{\"type\":\"response.completed\",\"response\":{\"id\":\"resp_f\",\"model\":\"m\","
        "\"status\":\"completed\",\"output\":[{\"type\":\"message\",\"content\":[{\"type\":"
        "\"refusal\",\"refusal\":\"No.\"}]}]}}",
        "{\"type\":\"response.completed\",\"response\":{}}",
    };
    ir = decode_frames(final_only, 2);
    assert_string_equal(ir, "MESSAGE_START id=resp_f model=m\n"
                            "BLOCK_START 0 TEXT\n"
                            "BLOCK_DELTA 0 TEXT \"No.\"\n"
                            "BLOCK_STOP 0\n"
                            "MESSAGE_DELTA stop=refusal\n"
                            "MESSAGE_STOP\n");
    free(ir);

    /* A malformed frame is an error for the caller. */
    void *dec = calloc(1, P->dec_size);
    P->dec_init(dec);
    struct bb_arena scratch;
    bb_arena_init(&scratch, 0);
    struct bb_frame bad = {.event = "", .data = "{\"type\":", .data_len = 8};
    assert_int_equal(P->dec_frame(dec, &scratch, &bad, on_ir, NULL), -1);
    bb_arena_free(&scratch);
    free(dec);
}

/* ---- encoder driven by hand-made IR (another provider's shape) ---- */

static char *encode(const struct bb_ir_event *evs, size_t n, bool finish, size_t *len)
{
    void *enc = calloc(1, P->enc_size);
    struct evbuffer *out = evbuffer_new();
    P->enc_init(enc, &stream_ctx);
    for (size_t i = 0; i < n; i++) {
        struct bb_arena scratch;
        bb_arena_init(&scratch, 0);
        assert_int_equal(P->enc_event(enc, &scratch, &evs[i], out), 0);
        bb_arena_free(&scratch);
    }
    if (finish)
        P->enc_finish(enc, out);
    char *s = buf_str(out, len);
    evbuffer_free(out);
    free(enc);
    return s;
}

/* Anthropic-shaped: input usage at MESSAGE_START, output usage only at MESSAGE_DELTA,
 * thinking with a signature, text, a tool call between two texts, a cited text. */
static void test_encode_mixed(void **state)
{
    (void)state;
    const struct bb_ir_usage start_usage = {
        .set = true, .input = 20, .cache_read = 1000, .cache_write = 50, .output = 1};
    const struct bb_ir_usage end_usage = {
        .set = true, .input = 20, .cache_read = 1000, .cache_write = 50, .output = 95};
    const struct bb_ir_event evs[] = {
        {.type = BB_IR_EV_MESSAGE_START,
         .id = S("msg_01XYZ"),
         .model = S("claude-sonnet-4-5"),
         .usage = start_usage},
        {.type = BB_IR_EV_PING},
        {.type = BB_IR_EV_BLOCK_START, .index = 0, .block_type = BB_IR_THINKING},
        {.type = BB_IR_EV_BLOCK_DELTA,
         .index = 0,
         .delta = BB_IR_D_THINKING,
         .text = S("Let me check ")},
        {.type = BB_IR_EV_BLOCK_DELTA,
         .index = 0,
         .delta = BB_IR_D_THINKING,
         .text = S("the weather.")},
        {.type = BB_IR_EV_BLOCK_DELTA,
         .index = 0,
         .delta = BB_IR_D_SIGNATURE,
         .text = S("EqQBCkYIARgCKkD")},
        {.type = BB_IR_EV_BLOCK_STOP, .index = 0},
        {.type = BB_IR_EV_BLOCK_START, .index = 1, .block_type = BB_IR_TEXT},
        {.type = BB_IR_EV_BLOCK_DELTA, .index = 1, .delta = BB_IR_D_TEXT, .text = S("Sure, ")},
        {.type = BB_IR_EV_BLOCK_DELTA,
         .index = 1,
         .delta = BB_IR_D_TEXT,
         .text = S("checking \"Paris\".")},
        {.type = BB_IR_EV_BLOCK_STOP, .index = 1},
        {.type = BB_IR_EV_BLOCK_START,
         .index = 2,
         .block_type = BB_IR_TOOL_USE,
         .id = S("toolu_01A"),
         .name = S("get_weather")},
        {.type = BB_IR_EV_BLOCK_DELTA, .index = 2, .delta = BB_IR_D_INPUT_JSON, .text = S("")},
        {.type = BB_IR_EV_BLOCK_DELTA,
         .index = 2,
         .delta = BB_IR_D_INPUT_JSON,
         .text = S("{\"city\": ")},
        {.type = BB_IR_EV_BLOCK_DELTA,
         .index = 2,
         .delta = BB_IR_D_INPUT_JSON,
         .text = S("\"Paris\"}")},
        {.type = BB_IR_EV_BLOCK_STOP, .index = 2},
        {.type = BB_IR_EV_BLOCK_START, .index = 3, .block_type = BB_IR_TEXT},
        {.type = BB_IR_EV_BLOCK_DELTA, .index = 3, .delta = BB_IR_D_TEXT, .text = S("Per ")},
        {.type = BB_IR_EV_BLOCK_DELTA,
         .index = 3,
         .delta = BB_IR_D_CITATION,
         .text = S("{\"type\":\"url_citation\",\"url\":\"https://meteo.fr/\",\"title\":\"Meteo\","
                   "\"start_index\":0,\"end_index\":3}")},
        {.type = BB_IR_EV_BLOCK_DELTA,
         .index = 3,
         .delta = BB_IR_D_CITATION,
         .text = S("{\"type\":\"web_search_result_location\",\"cited_text\":\"x\"}")},
        {.type = BB_IR_EV_BLOCK_DELTA,
         .index = 3,
         .delta = BB_IR_D_TEXT,
         .text = S("Météo-France.")},
        {.type = BB_IR_EV_BLOCK_STOP, .index = 3},
        {.type = BB_IR_EV_BLOCK_START, .index = 4, .block_type = BB_IR_TEXT},
        {.type = BB_IR_EV_BLOCK_DELTA, .index = 4, .delta = BB_IR_D_TEXT, .text = S(" Done.")},
        {.type = BB_IR_EV_BLOCK_STOP, .index = 4},
        {.type = BB_IR_EV_MESSAGE_DELTA, .stop = BB_IR_STOP_TOOL_USE, .usage = end_usage},
        {.type = BB_IR_EV_MESSAGE_STOP},
        /* Nothing may follow the terminal event. */
        {.type = BB_IR_EV_BLOCK_START, .index = 5, .block_type = BB_IR_TEXT},
    };
    size_t n;
    char *out = encode(evs, sizeof evs / sizeof evs[0], true, &n);
    assert_sse_golden(out, n, "enc_mixed.out.sse");

    /* Our own decoder reads it back into the same blocks. */
    struct pipe p = {.last_index = -1};
    p.dec = calloc(1, P->dec_size);
    p.enc = calloc(1, P->enc_size);
    p.ir = evbuffer_new();
    p.out = evbuffer_new();
    P->dec_init(p.dec);
    P->enc_init(p.enc, &stream_ctx);
    struct bb_sse sse;
    bb_sse_init(&sse, 1 << 20);
    assert_int_equal(bb_sse_feed(&sse, out, n, on_frame, &p), 0);
    bb_sse_free(&sse);
    char *ir = buf_str(p.ir, NULL);
    assert_text_golden(ir, strlen(ir), "enc_mixed.ir");
    P->enc_finish(p.enc, p.out);
    free(ir);
    evbuffer_free(p.ir);
    evbuffer_free(p.out);
    free(p.dec);
    free(p.enc);
    free(out);
}

/* ERROR after the commit point: response.failed with what finished so far, nothing after. */
static void test_encode_error(void **state)
{
    (void)state;
    const struct bb_ir_event evs[] = {
        {.type = BB_IR_EV_MESSAGE_START, .id = S("msg_01ERR"), .model = S("claude-sonnet-4-5")},
        {.type = BB_IR_EV_BLOCK_START,
         .index = 0,
         .block_type = BB_IR_TOOL_USE,
         .id = S("toolu_9"),
         .name = S("lookup")},
        {.type = BB_IR_EV_BLOCK_DELTA,
         .index = 0,
         .delta = BB_IR_D_INPUT_JSON,
         .text = S("{\"q\":1}")},
        {.type = BB_IR_EV_BLOCK_STOP, .index = 0},
        {.type = BB_IR_EV_BLOCK_START, .index = 1, .block_type = BB_IR_TEXT},
        {.type = BB_IR_EV_BLOCK_DELTA, .index = 1, .delta = BB_IR_D_TEXT, .text = S("Partial")},
        {.type = BB_IR_EV_ERROR,
         .error_type = S("overloaded_error"),
         .error_status = 529,
         .text = S("Overloaded")},
        {.type = BB_IR_EV_BLOCK_DELTA, .index = 1, .delta = BB_IR_D_TEXT, .text = S(" more")},
        {.type = BB_IR_EV_MESSAGE_STOP},
    };
    size_t n;
    char *out = encode(evs, sizeof evs / sizeof evs[0], true, &n);
    assert_sse_golden(out, n, "enc_error.out.sse");
    free(out);

    /* A rate-limit error before anything was sent still opens with response.created. */
    const struct bb_ir_event early[] = {
        {.type = BB_IR_EV_ERROR,
         .error_type = S("rate_limit_error"),
         .error_status = 429,
         .text = S("slow down")},
    };
    out = encode(early, 1, true, &n);
    struct tc_frames f;
    frames_parse(&f, out, n);
    assert_int_equal(f.n, 4);
    assert_string_equal(f.event[0], "response.created");
    assert_string_equal(f.event[2], "error");
    assert_non_null(strstr(f.data[2], "\"code\":\"rate_limit_exceeded\""));
    assert_string_equal(f.event[3], "response.failed");
    assert_non_null(strstr(f.data[3], "\"code\":\"rate_limit_exceeded\""));
    assert_non_null(strstr(f.data[3], "\"message\":\"slow down\""));
    frames_free(&f);
    free(out);
}

/* A stream cut without MESSAGE_STOP is closed by enc_finish as failed, never as complete. */
static void test_encode_cut(void **state)
{
    (void)state;
    const struct bb_ir_event evs[] = {
        {.type = BB_IR_EV_BLOCK_START, .index = 0, .block_type = BB_IR_TEXT},
        {.type = BB_IR_EV_BLOCK_DELTA, .index = 0, .delta = BB_IR_D_TEXT, .text = S("Hel")},
    };
    size_t n;
    char *out = encode(evs, 2, true, &n);
    struct tc_frames f;
    frames_parse(&f, out, n);
    assert_int_equal(f.n, 7);
    assert_string_equal(f.event[0], "response.created");
    assert_non_null(strstr(f.data[0], "\"id\":\"resp_req7\""));
    assert_string_equal(f.event[4], "response.output_text.delta");
    assert_string_equal(f.event[5], "error");
    assert_string_equal(f.event[6], "response.failed");
    for (int i = 0; i < f.n; i++) {
        char want[32];
        snprintf(want, sizeof want, "\"sequence_number\":%d", i);
        assert_non_null(strstr(f.data[i], want));
    }
    assert_null(strstr(out, "response.completed"));
    frames_free(&f);
    free(out);

    /* The encoder frees its heap accumulator at MESSAGE_STOP and at ERROR, so a stream that
     * ended either way needs no enc_finish (LeakSanitizer checks); one cut without either
     * needs enc_finish, as above. A second enc_finish is harmless. */
    const struct bb_ir_event failed[] = {
        evs[0],
        evs[1],
        {.type = BB_IR_EV_ERROR, .error_type = S("api_error"), .text = S("cut")},
    };
    out = encode(failed, 3, false, &n);
    free(out);
    void *enc = calloc(1, P->enc_size);
    struct evbuffer *eb = evbuffer_new();
    P->enc_init(enc, &stream_ctx);
    P->enc_finish(enc, eb); /* never started: writes nothing */
    P->enc_finish(enc, eb);
    assert_int_equal(evbuffer_get_length(eb), 0);
    evbuffer_free(eb);
    free(enc);
}

/* Deltas without BLOCK_START and text past the accumulation bound. */
static void test_encode_implicit_and_large(void **state)
{
    (void)state;
    size_t big = (4u << 20) + 1000;
    char *text = malloc(big + 1);
    memset(text, 'a', big);
    text[big] = '\0';
    const struct bb_ir_event evs[] = {
        {.type = BB_IR_EV_MESSAGE_START},
        {.type = BB_IR_EV_BLOCK_DELTA, .index = 0, .delta = BB_IR_D_TEXT, .text = {text, big}},
        {.type = BB_IR_EV_BLOCK_DELTA, .index = 1, .delta = BB_IR_D_INPUT_JSON, .text = S("{}")},
        {.type = BB_IR_EV_MESSAGE_DELTA, .stop = BB_IR_STOP_MAX_TOKENS},
        {.type = BB_IR_EV_MESSAGE_STOP},
    };
    size_t n;
    char *out = encode(evs, sizeof evs / sizeof evs[0], false, &n);
    struct tc_frames f;
    frames_parse(&f, out, n);
    assert_string_equal(f.event[f.n - 1], "response.incomplete");
    assert_non_null(strstr(f.data[f.n - 1], "\"reason\":\"max_output_tokens\""));
    /* The delta carries all of it; the done copy stops at the bound. */
    bool saw_done = false;
    for (int i = 0; i < f.n; i++) {
        if (strcmp(f.event[i], "response.output_text.delta") == 0)
            assert_true(strlen(f.data[i]) > big);
        if (strcmp(f.event[i], "response.output_text.done") == 0) {
            saw_done = true;
            assert_true(strlen(f.data[i]) < big);
            assert_true(strlen(f.data[i]) > (4u << 20));
        }
    }
    assert_true(saw_done);
    assert_non_null(strstr(out, "response.function_call_arguments.done"));
    frames_free(&f);
    free(out);
    free(text);
}

/* ---- ingress: requests ---- */

static void test_read_request_full(void **state)
{
    (void)state;
    size_t n;
    char *body = slurp("request_full.json", &n);
    struct bb_arena a;
    bb_arena_init(&a, 0);
    struct bb_ir_request r;
    struct bb_err err = {{0}};
    assert_int_equal(P->read_request(&a, body, n, NULL, &r, &err), 0);

    assert_string_equal(r.model.p, "fast");
    assert_int_equal(r.n_system, 2);
    assert_string_equal(r.system[0].text.p, "You are a terse travel assistant.");
    assert_string_equal(r.system[1].text.p, "Prefer metric units.");

    assert_int_equal(r.n_messages, 4);
    /* user: text, URL image, base64 image, PDF */
    const struct bb_ir_message *m = &r.messages[0];
    assert_int_equal(m->role, BB_IR_USER);
    assert_int_equal(m->n_blocks, 4);
    assert_int_equal(m->blocks[0].type, BB_IR_TEXT);
    assert_int_equal(m->blocks[1].type, BB_IR_IMAGE);
    assert_string_equal(m->blocks[1].url.p, "https://example.com/eiffel.jpg");
    assert_null(m->blocks[1].data.p);
    assert_int_equal(m->blocks[2].type, BB_IR_IMAGE);
    assert_string_equal(m->blocks[2].media_type.p, "image/png");
    assert_string_equal(m->blocks[2].data.p, "iVBORw0KGgo=");
    assert_int_equal(m->blocks[3].type, BB_IR_DOCUMENT);
    assert_string_equal(m->blocks[3].media_type.p, "application/pdf");
    assert_string_equal(m->blocks[3].data.p, "JVBERi0xLjQ=");
    /* assistant turn: reasoning, text, two parallel calls */
    m = &r.messages[1];
    assert_int_equal(m->role, BB_IR_ASSISTANT);
    assert_int_equal(m->n_blocks, 4);
    assert_int_equal(m->blocks[0].type, BB_IR_THINKING);
    assert_string_equal(m->blocks[0].text.p,
                        "The user wants two forecasts.\n\nCall get_weather twice.");
    assert_string_equal(m->blocks[0].signature.p, "gAAAAABencrypted==");
    assert_string_equal(m->blocks[0].id.p, "rs_abc123");
    assert_int_equal(m->blocks[1].type, BB_IR_TEXT);
    assert_string_equal(m->blocks[1].text.p, "A tower and a logo. Checking the weather.");
    assert_null(m->blocks[1].citations_json.p);
    assert_int_equal(m->blocks[2].type, BB_IR_TOOL_USE);
    assert_string_equal(m->blocks[2].id.p, "call_paris");
    assert_string_equal(m->blocks[2].name.p, "get_weather");
    assert_string_equal(m->blocks[2].input_json.p, "{\"city\":\"Paris\"}");
    assert_string_equal(m->blocks[3].id.p, "call_lyon");
    /* both outputs in one user message */
    m = &r.messages[2];
    assert_int_equal(m->role, BB_IR_USER);
    assert_int_equal(m->n_blocks, 2);
    assert_int_equal(m->blocks[0].type, BB_IR_TOOL_RESULT);
    assert_string_equal(m->blocks[0].id.p, "call_paris");
    assert_string_equal(m->blocks[0].text.p, "18C, sunny");
    assert_int_equal(m->blocks[1].type, BB_IR_TOOL_RESULT);
    assert_string_equal(m->blocks[1].id.p, "call_lyon");
    assert_null(m->blocks[1].text.p);
    assert_int_equal(m->blocks[1].n_content, 2);
    assert_int_equal(m->blocks[1].content[0].type, BB_IR_TEXT);
    assert_string_equal(m->blocks[1].content[0].text.p, "21C");
    assert_int_equal(m->blocks[1].content[1].type, BB_IR_IMAGE);
    assert_string_equal(m->blocks[1].content[1].url.p, "https://example.com/lyon-radar.png");
    m = &r.messages[3];
    assert_int_equal(m->role, BB_IR_USER);
    assert_string_equal(m->blocks[0].text.p, "Thanks. Answer in JSON.");

    assert_int_equal(r.n_tools, 2);
    assert_string_equal(r.tools[0].name.p, "get_weather");
    assert_string_equal(r.tools[0].description.p, "Current weather for a city");
    assert_non_null(strstr(r.tools[0].parameters_json.p, "\"required\":[\"city\"]"));
    assert_true(r.tools[0].strict);
    assert_string_equal(r.tools[1].name.p, "get_time");
    assert_null(r.tools[1].parameters_json.p);
    assert_false(r.tools[1].strict);
    assert_int_equal(r.tool_choice, BB_IR_TC_TOOL);
    assert_string_equal(r.tool_choice_name.p, "get_weather");
    assert_true(r.has_parallel_tool_calls);
    assert_true(r.parallel_tool_calls);
    assert_true(r.has_max_tokens);
    assert_int_equal(r.max_tokens, 1024);
    assert_true(r.has_temperature);
    assert_true(r.temperature == 0.7);
    assert_true(r.has_top_p);
    assert_true(r.top_p == 0.9);
    assert_false(r.has_top_k || r.has_seed || r.n_stop);
    assert_int_equal(r.format, BB_IR_FMT_JSON_SCHEMA);
    assert_string_equal(r.format_name.p, "forecast");
    assert_true(r.format_strict);
    assert_non_null(strstr(r.format_schema_json.p, "\"paris\""));
    assert_true(r.reasoning);
    assert_int_equal(r.reasoning_effort, BB_IR_EFFORT_HIGH);
    assert_true(r.stream);
    assert_string_equal(r.user.p, "user-42");

    const char *unsup[] = {"input_image.detail",
                           "input_file.filename",
                           "store",
                           "previous_response_id",
                           "include",
                           "metadata",
                           "truncation",
                           "service_tier"};
    for (size_t i = 0; i < sizeof unsup / sizeof unsup[0]; i++)
        if (!has_unsupported(&r, unsup[i]))
            fail_msg("unsupported field %s not recorded", unsup[i]);
    assert_int_equal(r.n_unsupported, sizeof unsup / sizeof unsup[0]);
    /* web_search(_preview) is a provider-run tool: carried to targets with an equivalent */
    assert_int_equal(r.n_hosted, 1);
    assert_str(&r.hosted[0].kind, "web_search");
    bb_arena_free(&a);
    free(body);
}

/* A developer or system message among the turns stays in its place (an empty one carries
 * nothing and leaves the assistant turn around it whole); before the first turn it is the
 * system prompt. */
static void test_read_request_system_in_place(void **state)
{
    (void)state;
    const char *body =
        "{\"model\":\"m\",\"input\":[{\"role\":\"developer\",\"content\":\"first\"},"
        "{\"role\":\"user\",\"content\":\"hi\"},"
        "{\"type\":\"message\",\"role\":\"assistant\",\"content\":[{\"type\":"
        "\"output_text\",\"text\":\"a\"}]},"
        "{\"role\":\"system\",\"content\":[]},"
        "{\"type\":\"function_call\",\"call_id\":\"c1\",\"name\":\"f\",\"arguments\":\"{}\"},"
        "{\"type\":\"function_call_output\",\"call_id\":\"c1\",\"output\":\"r\"},"
        "{\"role\":\"developer\",\"content\":[{\"type\":\"input_text\",\"text\":\"mid\"}]},"
        "{\"role\":\"user\",\"content\":\"go\"}]}";
    struct bb_arena a;
    bb_arena_init(&a, 0);
    struct bb_ir_request r;
    struct bb_err err = {{0}};
    if (P->read_request(&a, body, strlen(body), NULL, &r, &err))
        fail_msg("read_request: %s", err.msg);
    assert_int_equal(r.n_system, 1);
    assert_string_equal(r.system[0].text.p, "first");
    assert_int_equal(r.n_messages, 5);
    assert_int_equal(r.messages[0].role, BB_IR_USER);
    assert_int_equal(r.messages[1].role, BB_IR_ASSISTANT);
    assert_int_equal(r.messages[1].n_blocks, 2); /* the text and the call: one turn */
    assert_int_equal(r.messages[1].blocks[1].type, BB_IR_TOOL_USE);
    assert_int_equal(r.messages[2].role, BB_IR_USER); /* the tool result */
    assert_int_equal(r.messages[3].role, BB_IR_SYSTEM);
    assert_int_equal(r.messages[3].n_blocks, 1);
    assert_string_equal(r.messages[3].blocks[0].text.p, "mid");
    assert_int_equal(r.messages[4].role, BB_IR_USER);
    bb_arena_free(&a);
}

static void test_read_request_minimal(void **state)
{
    (void)state;
    const char *body = "{\"model\":\"m\",\"input\":\"Hello\",\"reasoning\":{\"effort\":\"none\"},"
                       "\"text\":{\"format\":{\"type\":\"json_object\"},\"verbosity\":\"low\"},"
                       "\"tool_choice\":\"required\",\"store\":false,\"metadata\":{},"
                       "\"include\":[\"reasoning.encrypted_content\"],\"temperature\":null,"
                       "\"safety_identifier\":\"u1\",\"x_custom\":1}";
    struct bb_arena a;
    bb_arena_init(&a, 0);
    struct bb_ir_request r;
    struct bb_err err = {{0}};
    assert_int_equal(P->read_request(&a, body, strlen(body), NULL, &r, &err), 0);
    assert_int_equal(r.n_messages, 1);
    assert_int_equal(r.messages[0].role, BB_IR_USER);
    assert_string_equal(r.messages[0].blocks[0].text.p, "Hello");
    assert_int_equal(r.n_system, 0);
    assert_false(r.reasoning);
    assert_int_equal(r.format, BB_IR_FMT_JSON_OBJECT);
    assert_int_equal(r.tool_choice, BB_IR_TC_ANY);
    assert_false(r.has_temperature);
    assert_string_equal(r.user.p, "u1");
    assert_int_equal(r.n_unsupported, 2);
    assert_true(has_unsupported(&r, "text.verbosity"));
    assert_true(has_unsupported(&r, "x_custom"));
    bb_arena_free(&a);
}

static void test_read_request_errors(void **state)
{
    (void)state;
    static const struct {
        const char *body, *err;
    } cases[] = {
        {"not json", "request body: invalid JSON ("},
        {"{\"model\":\"m\",\"input\":\"x\"} trailing",
         "request body: invalid JSON (trailing characters"},
        {"[]", "request body: expected a JSON object"},
        {"{\"model\":\"m\"}", "input: required"},
        {"{\"input\":\"hi\"}", "model: required"},
        {"{\"model\":1,\"input\":\"x\"}", "model: expected a string"},
        {"{\"model\":\"m\",\"input\":5}", "input: expected a string or an array"},
        {"{\"model\":\"m\",\"input\":[7]}", "input[0]: expected an object"},
        {"{\"model\":\"m\",\"input\":[{\"role\":\"user\",\"content\":5}]}",
         "input[0].content: expected a string or an array"},
        {"{\"model\":\"m\",\"input\":[{\"role\":\"robot\",\"content\":\"x\"}]}",
         "input[0].role: expected one of user, assistant, system, developer"},
        {"{\"model\":\"m\",\"input\":[\"x\",{\"type\":\"function_call\",\"name\":\"f\","
         "\"arguments\":\"{}\"}]}",
         "input[0]: expected an object"},
        {"{\"model\":\"m\",\"input\":[{\"type\":\"function_call\",\"name\":\"f\","
         "\"arguments\":\"{}\"}]}",
         "input[0].call_id: expected a string"},
        {"{\"model\":\"m\",\"input\":[{\"type\":\"function_call_output\",\"call_id\":\"c\","
         "\"output\":{}}]}",
         "input[0].output: expected a string or an array"},
        {"{\"model\":\"m\",\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_text\","
         "\"text\":3}]}]}",
         "input[0].content[0].text: expected a string"},
        {"{\"model\":\"m\",\"input\":[{\"role\":\"user\",\"content\":[{\"type\":"
         "\"input_image\"}]}]}",
         "input[0].content[0]: input_image needs image_url or file_id"},
        {"{\"model\":\"m\",\"input\":[{\"type\":\"reasoning\",\"summary\":\"x\"}]}",
         "input[0].summary: expected an array"},
        {"{\"model\":\"m\",\"input\":\"x\",\"tools\":{}}", "tools: expected an array"},
        {"{\"model\":\"m\",\"input\":\"x\",\"tools\":[{\"type\":\"function\"}]}",
         "tools[0].name: expected a string"},
        {"{\"model\":\"m\",\"input\":\"x\",\"tool_choice\":\"sometimes\"}",
         "tool_choice: expected auto, none, required or an object"},
        {"{\"model\":\"m\",\"input\":\"x\",\"temperature\":\"hot\"}",
         "temperature: expected a number"},
        {"{\"model\":\"m\",\"input\":\"x\",\"max_output_tokens\":0}",
         "max_output_tokens: out of range"},
        {"{\"model\":\"m\",\"input\":\"x\",\"text\":{\"format\":{\"type\":\"xml\"}}}",
         "text.format.type: expected one of text, json_object, json_schema"},
        {"{\"model\":\"m\",\"input\":\"x\",\"text\":{\"format\":{\"type\":\"json_schema\","
         "\"name\":\"n\"}}}",
         "text.format.schema: expected an object"},
        {"{\"model\":\"m\",\"input\":\"x\",\"reasoning\":{\"effort\":\"extreme\"}}",
         "reasoning.effort: expected one of"},
        {"{\"model\":\"m\",\"input\":\"x\",\"stream\":\"yes\"}", "stream: expected a boolean"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct bb_arena a;
        bb_arena_init(&a, 0);
        struct bb_ir_request r;
        struct bb_err err = {{0}};
        int rc = P->read_request(&a, cases[i].body, strlen(cases[i].body), NULL, &r, &err);
        if (rc != -1 || strncmp(err.msg, cases[i].err, strlen(cases[i].err)) != 0)
            fail_msg("case %zu: rc %d, error \"%s\", want \"%s\"", i, rc, err.msg, cases[i].err);
        bb_arena_free(&a);
    }
    /* Nesting beyond 128 levels is refused, not recursed into. */
    char deep[700];
    size_t k = (size_t)snprintf(deep, sizeof deep, "{\"model\":\"m\",\"input\":\"x\",\"a\":");
    for (int i = 0; i < 200; i++)
        deep[k++] = '[';
    for (int i = 0; i < 200; i++)
        deep[k++] = ']';
    deep[k++] = '}';
    struct bb_arena a;
    bb_arena_init(&a, 0);
    struct bb_ir_request r;
    struct bb_err err = {{0}};
    assert_int_equal(P->read_request(&a, deep, k, NULL, &r, &err), -1);
    assert_non_null(strstr(err.msg, "deeper than 128"));
    bb_arena_free(&a);
}

/* ---- egress ---- */

static struct bb_provider provider = {.name = "openai-responses", .api_key = "sk-test"};
static struct bb_lane lane = {.name = "gpt", .upstream_model = "gpt-4.1", .reasoning = true};

/* An Anthropic-shaped conversation with everything a writer must map or drop. */
static void build_ir(struct bb_ir_request *r, struct bb_arena *a)
{
    memset(r, 0, sizeof *r);
    static struct bb_ir_block sys[2], u0[4], a1[5], u2[3], nested[2];
    static struct bb_ir_message msgs[3];
    static struct bb_ir_tool tools[2];
    static struct bb_ir_str stops[1];
    (void)a;
    memset(sys, 0, sizeof sys);
    memset(u0, 0, sizeof u0);
    memset(a1, 0, sizeof a1);
    memset(u2, 0, sizeof u2);
    memset(nested, 0, sizeof nested);
    sys[0] = (struct bb_ir_block){
        .type = BB_IR_TEXT, .text = S("You are terse."), .cache_control = true};
    sys[1] = (struct bb_ir_block){.type = BB_IR_TEXT, .text = S("Use metric units.")};
    u0[0] = (struct bb_ir_block){.type = BB_IR_TEXT, .text = S("Weather in Paris and Lyon?")};
    u0[1] = (struct bb_ir_block){
        .type = BB_IR_IMAGE, .media_type = S("image/jpeg"), .data = S("/9j/4AAQ")};
    u0[2] = (struct bb_ir_block){.type = BB_IR_IMAGE, .url = S("https://example.com/a.png")};
    u0[3] = (struct bb_ir_block){
        .type = BB_IR_DOCUMENT, .media_type = S("application/pdf"), .data = S("JVBERi0=")};
    a1[0] = (struct bb_ir_block){
        .type = BB_IR_THINKING, .text = S("Two calls needed."), .signature = S("gAAAAABsig==")};
    a1[1] = (struct bb_ir_block){.type = BB_IR_REDACTED_THINKING, .signature = S("EnCrYpTeD")};
    a1[2] = (struct bb_ir_block){.type = BB_IR_TEXT,
                                 .text = S("Checking."),
                                 .citations_json = S("[{\"type\":\"char_location\"}]")};
    a1[3] = (struct bb_ir_block){.type = BB_IR_TOOL_USE,
                                 .id = S("toolu_1"),
                                 .name = S("get_weather"),
                                 .input_json = S("{\"city\":\"Paris\"}")};
    a1[4] = (struct bb_ir_block){
        .type = BB_IR_TOOL_USE, .id = S("toolu_2"), .name = S("get_weather"), .input_json = S("")};
    nested[0] = (struct bb_ir_block){.type = BB_IR_TEXT, .text = S("21C")};
    nested[1] = (struct bb_ir_block){
        .type = BB_IR_IMAGE, .media_type = S("image/png"), .data = S("iVBORw0=")};
    u2[0] = (struct bb_ir_block){
        .type = BB_IR_TOOL_RESULT, .id = S("toolu_1"), .text = S("18C"), .is_error = true};
    u2[1] = (struct bb_ir_block){
        .type = BB_IR_TOOL_RESULT, .id = S("toolu_2"), .content = nested, .n_content = 2};
    u2[2] = (struct bb_ir_block){.type = BB_IR_TEXT, .text = S("Thanks!")};
    msgs[0] =
        (struct bb_ir_message){.role = BB_IR_USER, .blocks = u0, .n_blocks = 4, .name = S("alice")};
    msgs[1] = (struct bb_ir_message){.role = BB_IR_ASSISTANT, .blocks = a1, .n_blocks = 5};
    msgs[2] = (struct bb_ir_message){.role = BB_IR_USER, .blocks = u2, .n_blocks = 3};
    tools[0] = (struct bb_ir_tool){.name = S("get_weather"),
                                   .description = S("Weather"),
                                   .parameters_json = S("{\"type\":\"object\",\"properties\":"
                                                        "{\"city\":{\"type\":\"string\"}}}")};
    tools[1] = (struct bb_ir_tool){.name = S("now"), .strict = true};
    stops[0] = S("END");
    r->model = S("fast");
    r->system = sys;
    r->n_system = 2;
    r->messages = msgs;
    r->n_messages = 3;
    r->tools = tools;
    r->n_tools = 2;
    r->tool_choice = BB_IR_TC_ANY;
    r->has_parallel_tool_calls = true;
    r->parallel_tool_calls = false;
    r->has_max_tokens = true;
    r->max_tokens = 2048;
    r->has_temperature = true;
    r->temperature = 0.2;
    r->has_top_p = true;
    r->top_p = 0.95;
    r->has_top_k = true;
    r->top_k = 40;
    r->has_seed = true;
    r->seed = 7;
    r->has_presence_penalty = true;
    r->has_frequency_penalty = true;
    r->stop = stops;
    r->n_stop = 1;
    r->n_choices = 2;
    r->format = BB_IR_FMT_JSON_SCHEMA;
    r->format_name = S("forecast");
    r->format_schema_json = S("{\"type\":\"object\"}");
    r->format_strict = true;
    r->reasoning = true;
    r->reasoning_budget = 8000;
    r->user = S("user-7");
}

static void write_req(const struct bb_ir_request *ir, bool stream, char **body, char **headers,
                      char *path)
{
    struct bb_arena a;
    bb_arena_init(&a, 0);
    struct bb_egress_ctx ctx = {
        .provider = &provider, .lane = &lane, .stream = stream, .dropped = &test_drops};
    struct bb_egress_req req = {.headers = evbuffer_new(), .body = evbuffer_new()};
    struct bb_err err = {{0}};
    drops_reset();
    if (P->write_request(&a, ir, &ctx, &req, &err) != 0)
        fail_msg("write_request: %s", err.msg);
    *body = buf_str(req.body, NULL);
    *headers = buf_str(req.headers, NULL);
    strcpy(path, req.path);
    evbuffer_free(req.headers);
    evbuffer_free(req.body);
    bb_arena_free(&a);
}

static void test_write_request(void **state)
{
    (void)state;
    struct bb_arena a;
    bb_arena_init(&a, 0);
    struct bb_ir_request ir;
    build_ir(&ir, &a);
    char *body, *headers, path[1024];

    lane.reasoning = true;
    write_req(&ir, false, &body, &headers, path);
    assert_string_equal(path, "/v1/responses");
    assert_string_equal(headers, "Content-Type: application/json\r\n"
                                 "Authorization: Bearer sk-test\r\n");
    assert_json_text_golden(body, strlen(body), "egress_request.json");
    const char *drops[] = {
        "stop", "top_k", "seed",          "presence_penalty", "frequency_penalty",
        "n",    "name",  "cache_control", "citations"};
    for (size_t i = 0; i < sizeof drops / sizeof drops[0]; i++)
        if (!dropped_has(drops[i]))
            fail_msg("%s not reported as dropped (got %s)", drops[i], drops_text());
    assert_false(dropped_has("reasoning"));
    assert_false(dropped_has("thinking"));
    assert_false(dropped_has("is_error")); /* carried in the output: "Error: 18C" */
    free(body);
    free(headers);

    /* A lane without reasoning: no reasoning ask, no include, no reasoning items. */
    lane.reasoning = false;
    write_req(&ir, true, &body, &headers, path);
    assert_string_equal(headers, "Content-Type: application/json\r\n"
                                 "Accept: text/event-stream\r\n"
                                 "Authorization: Bearer sk-test\r\n");
    assert_true(dropped_has("reasoning"));
    assert_true(dropped_has("thinking"));
    assert_null(strstr(body, "\"reasoning\""));
    assert_null(strstr(body, "\"include\""));
    assert_null(strstr(body, "encrypted_content"));
    assert_non_null(strstr(body, "\"stream\":true"));
    lane.reasoning = true;
    free(body);
    free(headers);
    bb_arena_free(&a);
}

/* Responses → IR → Responses: the same request, as an egress body. */
static void test_roundtrip_request(void **state)
{
    (void)state;
    size_t n;
    char *src = slurp("request_full.json", &n);
    struct bb_arena a;
    bb_arena_init(&a, 0);
    struct bb_ir_request ir;
    struct bb_err err = {{0}};
    assert_int_equal(P->read_request(&a, src, n, NULL, &ir, &err), 0);
    char *body, *headers, path[1024];
    write_req(&ir, true, &body, &headers, path);
    assert_json_text_golden(body, strlen(body), "egress_from_responses.json");
    assert_null(drops_text());
    free(body);
    free(headers);
    bb_arena_free(&a);
    free(src);
}

/* ---- responses ---- */

static const struct bb_ingress_ctx resp_ctx = {
    .request_id = "req42", .model = "fast", .created = 1741290000};

static char *write_resp(const struct bb_ir_response *r)
{
    struct bb_arena a;
    bb_arena_init(&a, 0);
    struct evbuffer *out = evbuffer_new();
    assert_int_equal(P->write_response(&a, r, &resp_ctx, out), 0);
    char *s = buf_str(out, NULL);
    evbuffer_free(out);
    bb_arena_free(&a);
    return s;
}

static void test_response_roundtrip(void **state)
{
    (void)state;
    size_t n;
    char *body = slurp("response_provider.json", &n);
    struct bb_arena a;
    bb_arena_init(&a, 0);
    struct bb_ir_response r;
    struct bb_err err = {{0}};
    assert_int_equal(P->read_response(&a, body, n, &r, &err), 0);
    assert_string_equal(r.id.p, "resp_68e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9");
    assert_string_equal(r.model.p, "o4-mini-2025-04-16");
    assert_int_equal(r.created, 1741294021);
    assert_int_equal(r.n_blocks, 4);
    assert_int_equal(r.blocks[0].type, BB_IR_THINKING);
    assert_string_equal(r.blocks[0].text.p, "Need both forecasts.\n\nCite the tourism page.");
    assert_string_equal(r.blocks[0].signature.p, "gAAAAABoENCRYPTED==");
    assert_string_equal(r.blocks[0].id.p, "rs_68e5aa01");
    assert_int_equal(r.blocks[1].type, BB_IR_TEXT);
    assert_string_equal(r.blocks[1].text.p, "Paris is lovely in June.");
    assert_non_null(strstr(r.blocks[1].citations_json.p, "url_citation"));
    assert_int_equal(r.blocks[2].type, BB_IR_TOOL_USE);
    assert_string_equal(r.blocks[2].id.p, "call_Zx9Cv8");
    assert_string_equal(r.blocks[2].name.p, "get_weather");
    assert_string_equal(r.blocks[2].input_json.p, "{\"city\":\"Paris\"}");
    assert_string_equal(r.blocks[3].id.p, "call_Bn7Mk6");
    assert_int_equal(r.stop, BB_IR_STOP_TOOL_USE);
    assert_true(r.usage.set);
    assert_int_equal(r.usage.input, 176);
    assert_int_equal(r.usage.cache_read, 1024);
    assert_int_equal(r.usage.cache_write, 0);
    assert_int_equal(r.usage.output, 300);
    assert_int_equal(r.usage.reasoning, 192);
    char *out = write_resp(&r);
    assert_json_text_golden(out, strlen(out), "response_client.json");
    free(out);
    free(body);

    body = slurp("response_incomplete.json", &n);
    assert_int_equal(P->read_response(&a, body, n, &r, &err), 0);
    assert_int_equal(r.stop, BB_IR_STOP_MAX_TOKENS);
    assert_int_equal(r.n_blocks, 1);
    out = write_resp(&r);
    assert_json_text_golden(out, strlen(out), "response_client_incomplete.json");
    free(out);
    free(body);
    bb_arena_free(&a);
}

/* Another provider's answer (no id, cache writes, redacted thinking, foreign citations). */
static void test_response_from_ir(void **state)
{
    (void)state;
    struct bb_ir_block b[5] = {
        {.type = BB_IR_REDACTED_THINKING, .signature = S("RUVEQUNURUQ=")},
        {.type = BB_IR_TEXT,
         .text = S("Hello "),
         .citations_json = S("[{\"type\":\"char_location\",\"cited_text\":\"x\"}]")},
        {.type = BB_IR_TEXT, .text = S("world.")},
        {.type = BB_IR_TOOL_USE, .id = S("toolu_01"), .name = S("f"), .input_json = S("")},
        {.type = BB_IR_TEXT, .text = S("After the call.")},
    };
    struct bb_ir_response r = {
        .model = S("claude-sonnet-4-5"),
        .blocks = b,
        .n_blocks = 5,
        .stop = BB_IR_STOP_TOOL_USE,
        .usage = {.set = true, .input = 10, .output = 20, .cache_read = 100, .cache_write = 30}};
    char *out = write_resp(&r); /* the citations Responses cannot show are left out */
    assert_json_text_golden(out, strlen(out), "response_from_ir.json");
    free(out);

    /* A failed read: status failed, or not JSON. */
    struct bb_arena a;
    bb_arena_init(&a, 0);
    struct bb_err err = {{0}};
    const char *failed = "{\"id\":\"resp_1\",\"status\":\"failed\",\"error\":{\"code\":"
                         "\"server_error\",\"message\":\"boom\"},\"output\":[]}";
    assert_int_equal(P->read_response(&a, failed, strlen(failed), &r, &err), -1);
    assert_non_null(strstr(err.msg, "server_error: boom"));
    assert_int_equal(P->read_response(&a, "{", 1, &r, &err), -1);
    bb_arena_free(&a);
}

static void test_read_error(void **state)
{
    (void)state;
    struct bb_proto_error e;
    const char *b1 = "{\"error\":{\"message\":\"This model's maximum context length is 128000 "
                     "tokens.\",\"type\":\"invalid_request_error\",\"param\":\"input\","
                     "\"code\":\"context_length_exceeded\"}}";
    assert_int_equal(P->read_error(b1, strlen(b1), &e), 0);
    assert_string_equal(e.code, "context_length_exceeded");
    assert_string_equal(e.type, "invalid_request_error");
    assert_non_null(strstr(e.message, "maximum context length"));
    const char *b2 = "{\"error\":{\"message\":\"Rate limit reached\",\"type\":\"requests\","
                     "\"code\":null}}";
    assert_int_equal(P->read_error(b2, strlen(b2), &e), 0);
    assert_string_equal(e.code, "");
    assert_string_equal(e.type, "requests");
    const char *b3 = "{\"type\":\"error\",\"code\":\"server_error\",\"message\":\"oops\"}";
    assert_int_equal(P->read_error(b3, strlen(b3), &e), 0);
    assert_string_equal(e.code, "server_error");
    assert_string_equal(e.type, "");
    assert_string_equal(e.message, "oops");
    const char *b4 = "{\"error\":\"Invalid API key\"}";
    assert_int_equal(P->read_error(b4, strlen(b4), &e), 0);
    assert_string_equal(e.message, "Invalid API key");
    assert_int_equal(P->read_error("<html>bad gateway</html>", 24, &e), -1);
    assert_int_equal(P->read_error("{}", 2, &e), -1);
}

static void test_ops(void **state)
{
    (void)state;
    assert_ptr_equal(bb_proto_get(BB_PROTO_RESPONSES), &bb_proto_responses);
    assert_int_equal(P->framing, BB_FRAMING_SSE);
    assert_string_equal(P->stream_content_type(&resp_ctx), "text/event-stream");
    /* Encoder state stays small: accumulated text lives in buffers sized to the answer. */
    assert_true(P->enc_size < 2048);
    assert_true(P->dec_size < 256);
}

/* Codex's tools (an additional_tools item: namespaces, a freeform tool, a client-run tool
 * search) read, and calls to them written back in the client's shapes. */
static void test_agent_tools(void **state)
{
    (void)state;
    struct bb_arena a;
    bb_arena_init(&a, 0);
    const char *body =
        "{\"model\":\"m\",\"input\":[{\"type\":\"additional_tools\",\"role\":\"developer\","
        "\"tools\":[{\"type\":\"namespace\",\"name\":\"functions\",\"tools\":[{\"type\":"
        "\"custom\",\"name\":\"exec\",\"description\":\"Run JS\",\"format\":{\"type\":"
        "\"grammar\",\"syntax\":\"lark\",\"definition\":\"start: /.+/\"}}]},{\"type\":"
        "\"namespace\",\"name\":\"clock\",\"tools\":[{\"type\":\"function\",\"name\":"
        "\"sleep\",\"parameters\":{\"type\":\"object\"}}]}]},{\"role\":\"user\",\"content\":"
        "\"hi\"},{\"type\":\"custom_tool_call\",\"call_id\":\"c1\",\"name\":\"exec\","
        "\"namespace\":\"functions\",\"input\":\"1+1\"},{\"type\":\"custom_tool_call_output\","
        "\"call_id\":\"c1\",\"output\":\"2\"}],\"tools\":[{\"type\":\"tool_search\","
        "\"execution\":\"client\",\"parameters\":{\"type\":\"object\"}},{\"type\":"
        "\"web_search\"}]}";
    struct bb_ir_request ir;
    struct bb_err err = {""};
    assert_int_equal(P->read_request(&a, body, strlen(body), NULL, &ir, &err), 0);
    assert_int_equal(ir.n_tools, 3);
    assert_str(&ir.tools[0].name, "tool_search");
    assert_str(&ir.tools[1].name, "exec");
    assert_str(&ir.tools[1].wire_type, "custom");
    assert_non_null(strstr(ir.tools[1].parameters_json.p, "\"input\""));
    assert_non_null(strstr(ir.tools[1].description.p, "lark grammar:\nstart: /.+/"));
    assert_str(&ir.tools[2].name, "clock__sleep");
    assert_str(&ir.tools[2].ns, "clock");
    assert_int_equal(ir.n_hosted, 1);
    assert_int_equal(ir.n_unsupported, 0);
    /* the history's freeform call is the function's call, its output the result */
    const struct bb_ir_block *call = &ir.messages[1].blocks[0];
    assert_int_equal(call->type, BB_IR_TOOL_USE);
    assert_str(&call->name, "exec");
    assert_str(&call->input_json, "{\"input\":\"1+1\"}");
    assert_str(&ir.messages[2].blocks[0].text, "2");

    /* calls written back in the client's shapes */
    struct bb_ir_block blocks[3] = {{.type = BB_IR_TOOL_USE,
                                     .id = S("k1"),
                                     .name = S("exec"),
                                     .input_json = S("{\"input\":\"print(2)\"}")},
                                    {.type = BB_IR_TOOL_USE,
                                     .id = S("k2"),
                                     .name = S("clock__sleep"),
                                     .input_json = S("{\"duration_ms\":5}")},
                                    {.type = BB_IR_TOOL_USE,
                                     .id = S("k3"),
                                     .name = S("tool_search"),
                                     .input_json = S("{\"query\":\"git\"}")}};
    struct bb_ir_response r = {.blocks = blocks, .n_blocks = 3, .stop = BB_IR_STOP_TOOL_USE};
    struct bb_ingress_ctx ctx = {
        .request_id = "bb-1", .model = "m", .tools = ir.tools, .n_tools = ir.n_tools};
    struct evbuffer *out = evbuffer_new();
    assert_int_equal(P->write_response(&a, &r, &ctx, out), 0);
    evbuffer_add(out, "", 1);
    json_object *o = parse_str((const char *)evbuffer_pullup(out, -1));
    json_object *items = get(o, "output");
    json_object *c0 = json_object_array_get_idx(items, 0),
                *c1 = json_object_array_get_idx(items, 1),
                *c2 = json_object_array_get_idx(items, 2);
    assert_string_equal(json_object_get_string(get(c0, "type")), "custom_tool_call");
    assert_string_equal(json_object_get_string(get(c0, "input")), "print(2)");
    assert_string_equal(json_object_get_string(get(c0, "namespace")), "functions");
    assert_string_equal(json_object_get_string(get(c1, "type")), "function_call");
    assert_string_equal(json_object_get_string(get(c1, "name")), "sleep");
    assert_string_equal(json_object_get_string(get(c1, "namespace")), "clock");
    assert_string_equal(json_object_get_string(get(c2, "type")), "tool_search_call");
    assert_string_equal(json_object_get_string(get(get(c2, "arguments"), "query")), "git");
    assert_string_equal(json_object_get_string(get(c2, "execution")), "client");
    json_object_put(o);
    evbuffer_free(out);
    bb_arena_free(&a);
}

int main(void)
{
    P = &bb_proto_responses;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ops),
        cmocka_unit_test(test_read_request_full),
        cmocka_unit_test(test_read_request_minimal),
        cmocka_unit_test(test_read_request_system_in_place),
        cmocka_unit_test(test_read_request_errors),
        cmocka_unit_test(test_write_request),
        cmocka_unit_test(test_roundtrip_request),
        cmocka_unit_test(test_response_roundtrip),
        cmocka_unit_test(test_response_from_ir),
        cmocka_unit_test(test_read_error),
        cmocka_unit_test(test_stream_tools),
        cmocka_unit_test(test_stream_reasoning),
        cmocka_unit_test(test_stream_error),
        cmocka_unit_test(test_stream_incomplete),
        cmocka_unit_test(test_decode_whole_items),
        cmocka_unit_test(test_decode_no_output_index),
        cmocka_unit_test(test_encode_mixed),
        cmocka_unit_test(test_encode_error),
        cmocka_unit_test(test_encode_cut),
        cmocka_unit_test(test_encode_implicit_and_large),
        cmocka_unit_test(test_agent_tools),
    };
    return cmocka_run_group_tests_name("proto_responses", tests, NULL, NULL);
}
