/*
 * test_proto_gemini: worker/proto_gemini against golden fixtures in
 * ../fixtures/proto/gemini (runs with workdir tests/unit).
 * - ingress: client requests (camelCase and snake_case) → IR, every mapped field asserted;
 *   malformed requests → the error text;
 * - egress: an IR request → the upstream body (canonical JSON compare), path, headers, drops;
 * - responses: provider body → IR → write_response → golden;
 * - streams: a recorded SSE transcript → decoder → IR events (golden JSON lines) → encoder as
 *   SSE and as a JSON array (goldens); bytes fed one at a time give the same events; the
 *   encoder's output decodes back to the same events.
 * Set BB_UPDATE_GOLDEN=1 to rewrite the golden outputs (then review the diff).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <json-c/json.h>

#include "common/sse.h"
#include "worker/proto.h"

#define FIX "../fixtures/proto/gemini/"

static const struct bb_proto_ops *G;

#include "proto_test_common.h"

/* ---- IR events as JSON lines (goldens and encoder inputs) ---- */

#define NAMES(a) a, sizeof a / sizeof a[0]

static void add_str(json_object *o, const char *k, const struct bb_ir_str *s)
{
    if (s->p)
        json_object_object_add(o, k, json_object_new_string_len(s->p, (int)s->len));
}

static json_object *ev_to_json(const struct bb_ir_event *ev)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "type", json_object_new_string(event_names[ev->type]));
    switch (ev->type) {
    case BB_IR_EV_BLOCK_START:
        json_object_object_add(o, "index", json_object_new_int((int)ev->index));
        json_object_object_add(o, "block", json_object_new_string(block_names[ev->block_type]));
        add_str(o, "id", &ev->id);
        add_str(o, "name", &ev->name);
        break;
    case BB_IR_EV_BLOCK_DELTA:
        json_object_object_add(o, "index", json_object_new_int((int)ev->index));
        json_object_object_add(o, "delta", json_object_new_string(delta_names[ev->delta]));
        add_str(o, "text", &ev->text);
        break;
    case BB_IR_EV_BLOCK_STOP:
        json_object_object_add(o, "index", json_object_new_int((int)ev->index));
        break;
    case BB_IR_EV_MESSAGE_START:
        add_str(o, "id", &ev->id);
        add_str(o, "model", &ev->model);
        break;
    case BB_IR_EV_MESSAGE_DELTA:
        json_object_object_add(o, "stop", json_object_new_string(bb_ir_stop_name(ev->stop)));
        add_str(o, "stop_sequence", &ev->stop_sequence);
        break;
    case BB_IR_EV_ERROR:
        add_str(o, "text", &ev->text);
        add_str(o, "error_type", &ev->error_type);
        json_object_object_add(o, "error_status", json_object_new_int(ev->error_status));
        break;
    default:
        break;
    }
    if (ev->usage.set) {
        json_object *u = json_object_new_object();
        json_object_object_add(u, "input", json_object_new_int64((int64_t)ev->usage.input));
        json_object_object_add(u, "output", json_object_new_int64((int64_t)ev->usage.output));
        json_object_object_add(u, "cache_read",
                               json_object_new_int64((int64_t)ev->usage.cache_read));
        json_object_object_add(u, "cache_write",
                               json_object_new_int64((int64_t)ev->usage.cache_write));
        json_object_object_add(u, "reasoning", json_object_new_int64((int64_t)ev->usage.reasoning));
        json_object_object_add(o, "usage", u);
    }
    return o;
}

static struct bb_ir_str jget_str(struct bb_arena *a, json_object *o, const char *k)
{
    json_object *v;
    if (!json_object_object_get_ex(o, k, &v))
        return (struct bb_ir_str){NULL, 0};
    return bb_ir_strdup(a, json_object_get_string(v), (size_t)json_object_get_string_len(v));
}

static uint64_t ju(json_object *o, const char *k)
{
    json_object *v;
    return json_object_object_get_ex(o, k, &v) ? (uint64_t)json_object_get_int64(v) : 0;
}

static struct bb_ir_event ev_from_json(struct bb_arena *a, json_object *o)
{
    struct bb_ir_event ev = {0};
    json_object *v;
    json_object_object_get_ex(o, "type", &v);
    ev.type = (enum bb_ir_event_type)name_index(NAMES(event_names), json_object_get_string(v));
    if (json_object_object_get_ex(o, "index", &v))
        ev.index = (uint32_t)json_object_get_int(v);
    if (json_object_object_get_ex(o, "block", &v))
        ev.block_type =
            (enum bb_ir_block_type)name_index(NAMES(block_names), json_object_get_string(v));
    if (json_object_object_get_ex(o, "delta", &v))
        ev.delta = (enum bb_ir_delta)name_index(NAMES(delta_names), json_object_get_string(v));
    if (json_object_object_get_ex(o, "stop", &v)) {
        for (int s = 0; s <= BB_IR_STOP_ERROR; s++)
            if (strcmp(bb_ir_stop_name((enum bb_ir_stop)s), json_object_get_string(v)) == 0)
                ev.stop = (enum bb_ir_stop)s;
    }
    if (json_object_object_get_ex(o, "error_status", &v))
        ev.error_status = json_object_get_int(v);
    ev.text = jget_str(a, o, "text");
    ev.id = jget_str(a, o, "id");
    ev.name = jget_str(a, o, "name");
    ev.model = jget_str(a, o, "model");
    ev.error_type = jget_str(a, o, "error_type");
    if (json_object_object_get_ex(o, "usage", &v)) {
        ev.usage.set = true;
        ev.usage.input = ju(v, "input");
        ev.usage.output = ju(v, "output");
        ev.usage.cache_read = ju(v, "cache_read");
        ev.usage.cache_write = ju(v, "cache_write");
        ev.usage.reasoning = ju(v, "reasoning");
    }
    return ev;
}

/* Decoder callback: append one JSON line per event. */
static int collect(void *arg, const struct bb_ir_event *ev)
{
    struct evbuffer *lines = arg;
    json_object *o = ev_to_json(ev);
    evbuffer_add_printf(
        lines, "%s\n",
        json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(o);
    return 0;
}

/* Compare two JSON-lines texts line by line, canonically. */
static void assert_lines_eq(const char *what, const char *got, const char *want)
{
    char *g = strdup(got), *w = strdup(want);
    char *gs = NULL, *ws = NULL;
    char *gl = strtok_r(g, "\n", &gs), *wl = strtok_r(w, "\n", &ws);
    int line = 1;
    for (; gl && wl; gl = strtok_r(NULL, "\n", &gs), wl = strtok_r(NULL, "\n", &ws), line++) {
        char label[128];
        snprintf(label, sizeof label, "%s line %d", what, line);
        assert_json_eq(label, gl, wl);
    }
    if (gl || wl)
        fail_msg("%s: %s has more lines (from line %d: %s)", what, gl ? "output" : "golden", line,
                 gl ? gl : wl);
    free(g);
    free(w);
}

static void golden_lines(const char *name, const char *got)
{
    if (updating()) {
        write_golden_n(name, got, strlen(got));
        return;
    }
    char *want = slurp(name, NULL);
    assert_lines_eq(name, got, want);
    free(want);
}

/* ---- SSE transcript → frames → decoder ---- */

struct feed {
    void *dec;
    struct bb_arena *scratch;
    struct evbuffer *lines;
    int rc;
};

static int feed_frame(void *arg, const struct bb_sse_event *sev)
{
    struct feed *f = arg;
    struct bb_frame fr = {sev->event, sev->event_len, sev->data, sev->data_len, false};
    int rc = G->dec_frame(f->dec, f->scratch, &fr, collect, f->lines);
    if (rc && !f->rc)
        f->rc = rc;
    return 0;
}

/* Decode an SSE text, `step` bytes per feed (0 = all at once); returns the event lines. */
static char *decode_sse(const char *sse, size_t len, size_t step, int *rc)
{
    struct bb_arena a;
    bb_arena_init(&a, 0);
    void *dec = calloc(1, G->dec_size);
    G->dec_init(dec);
    struct evbuffer *lines = evbuffer_new();
    struct feed f = {dec, &a, lines, 0};
    struct bb_sse s;
    bb_sse_init(&s, 1 << 20);
    if (!step)
        step = len;
    for (size_t off = 0; off < len; off += step)
        assert_int_equal(
            bb_sse_feed(&s, sse + off, off + step > len ? len - off : step, feed_frame, &f), 0);
    bb_sse_free(&s);
    char *out = buf_str(lines, NULL);
    evbuffer_free(lines);
    free(dec);
    bb_arena_free(&a);
    if (rc)
        *rc = f.rc;
    return out;
}

/* The route flags of a client streaming with ?alt=sse, as the module's route gives them. */
static unsigned sse_flags(void)
{
    static const char path[] = "/v1beta/models/m:streamGenerateContent";
    struct bb_proto_route r = {0};
    assert_int_equal(G->match_route(path, sizeof path - 1, "alt=sse", &r), 1);
    assert_int_not_equal(r.flags, 0);
    return r.flags;
}

/* Events (JSON lines) → encoder output, SSE or JSON array; finish = call enc_finish. */
static char *encode_lines(const char *lines, bool sse, bool finish, size_t *len)
{
    struct bb_arena a;
    bb_arena_init(&a, 0);
    struct bb_ingress_ctx ctx = {.request_id = "req-1",
                                 .model = "pool-gemini",
                                 .created = 1700000000,
                                 .route_flags = sse ? sse_flags() : 0};
    void *enc = calloc(1, G->enc_size);
    G->enc_init(enc, &ctx);
    struct evbuffer *out = evbuffer_new();
    char *copy = strdup(lines), *save = NULL;
    for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        json_object *o = parse_str(l);
        struct bb_ir_event ev = ev_from_json(&a, o);
        assert_int_equal(G->enc_event(enc, &a, &ev, out), 0);
        json_object_put(o);
    }
    if (finish && G->enc_finish)
        G->enc_finish(enc, out);
    free(copy);
    char *s = buf_str(out, len);
    evbuffer_free(out);
    free(enc);
    bb_arena_free(&a);
    return s;
}

/* Decode the frames of an SSE text into a JSON array of their data (for canonical compare). */
static int sse_to_array(void *arg, const struct bb_sse_event *sev)
{
    json_object *arr = arg;
    char *data = strndup(sev->data, sev->data_len); /* SSE data is not NUL-terminated */
    json_object *o = json_tokener_parse(data);
    free(data);
    if (!o)
        fail_msg("SSE frame data is not JSON: %.*s", (int)sev->data_len, sev->data);
    json_object_array_add(arr, o);
    return 0;
}

static char *sse_frames_json(const char *sse, size_t len)
{
    json_object *arr = json_object_new_array();
    struct bb_sse s;
    bb_sse_init(&s, 1 << 20);
    assert_int_equal(bb_sse_feed(&s, sse, len, sse_to_array, arr), 0);
    assert_int_equal(bb_sse_pending(&s), 0);
    bb_sse_free(&s);
    char *r = strdup(json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PLAIN));
    json_object_put(arr);
    return r;
}

/* SSE encoder output vs golden: every frame is `data: <json>\r\n\r\n`, frames canonically
 * equal to the golden's. */
static void golden_sse(const char *name, const char *got, size_t len)
{
    for (const char *p = got; p < got + len;) {
        assert_true(strncmp(p, "data: ", 6) == 0);
        const char *end = strstr(p, "\r\n\r\n");
        assert_non_null(end);
        assert_null(memchr(p, '\n', (size_t)(end - p)));
        p = end + 4;
    }
    if (updating()) {
        write_golden_n(name, got, len);
        return;
    }
    size_t wlen;
    char *want = slurp(name, &wlen);
    char *g = sse_frames_json(got, len), *w = sse_frames_json(want, wlen);
    assert_json_eq(name, g, w);
    free(g);
    free(w);
    free(want);
}

/* The array form byte for byte: "[" el (",\r\n" el)* "]", each element compact JSON. */
static void assert_array_framing(const char *out)
{
    json_object *arr = parse_str(out);
    assert_true(json_object_is_type(arr, json_type_array));
    struct evbuffer *want = evbuffer_new();
    evbuffer_add(want, "[", 1);
    for (size_t i = 0; i < json_object_array_length(arr); i++)
        evbuffer_add_printf(want, "%s%s", i ? ",\r\n" : "",
                            json_object_to_json_string_ext(json_object_array_get_idx(arr, i),
                                                           JSON_C_TO_STRING_PLAIN |
                                                               JSON_C_TO_STRING_NOSLASHESCAPE));
    evbuffer_add(want, "]", 1);
    char *w = buf_str(want, NULL);
    assert_string_equal(out, w);
    free(w);
    evbuffer_free(want);
    json_object_put(arr);
}

/* Decode a JSON array stream (one frame per element) → event lines. */
static char *decode_array(const char *text)
{
    json_object *arr = parse_str(text);
    assert_true(json_object_is_type(arr, json_type_array));
    struct bb_arena a;
    bb_arena_init(&a, 0);
    void *dec = calloc(1, G->dec_size);
    G->dec_init(dec);
    struct evbuffer *lines = evbuffer_new();
    for (size_t i = 0; i < json_object_array_length(arr); i++) {
        const char *el = json_object_to_json_string_ext(json_object_array_get_idx(arr, i),
                                                        JSON_C_TO_STRING_PLAIN);
        struct bb_frame fr = {"", 0, el, strlen(el), false};
        assert_int_equal(G->dec_frame(dec, &a, &fr, collect, lines), 0);
    }
    char *out = buf_str(lines, NULL);
    evbuffer_free(lines);
    free(dec);
    bb_arena_free(&a);
    json_object_put(arr);
    return out;
}

/* ======================================================================================== */
/* ingress: read_request                                                                    */
/* ======================================================================================== */

static void test_read_request_full(void **state)
{
    (void)state;
    size_t len;
    char *body = slurp("req_full.json", &len);
    struct bb_arena a;
    bb_arena_init(&a, 0);
    struct bb_ir_request r;
    struct bb_err err = {{0}};
    assert_int_equal(G->read_request(&a, body, len, "gemini-2.5-flash", &r, &err), 0);
    assert_str(&r.model, "gemini-2.5-flash");

    assert_int_equal(r.n_system, 2);
    assert_str(&r.system[0].text, "You are a terse weather assistant.");
    assert_str(&r.system[1].text, "Answer in metric units.");

    /* 8 contents → 7 messages: the two trailing user contents merge. */
    assert_int_equal(r.n_messages, 7);
    const struct bb_ir_message *m = &r.messages[0];
    assert_int_equal(m->role, BB_IR_USER);
    assert_int_equal(m->n_blocks, 4);
    assert_int_equal(m->blocks[0].type, BB_IR_TEXT);
    assert_int_equal(m->blocks[1].type, BB_IR_IMAGE);
    assert_str(&m->blocks[1].media_type, "image/png");
    assert_true(m->blocks[1].data.len > 20);
    assert_int_equal(m->blocks[2].type, BB_IR_IMAGE);
    assert_str(&m->blocks[2].url, "https://example.com/cat.jpg");
    assert_str(&m->blocks[2].media_type, "image/jpeg");
    assert_int_equal(m->blocks[3].type, BB_IR_DOCUMENT);
    assert_str(&m->blocks[3].url, "gs://bucket/report.pdf");

    /* thought, signature-only thinking (it belongs to the call), two parallel calls */
    m = &r.messages[1];
    assert_int_equal(m->role, BB_IR_ASSISTANT);
    assert_int_equal(m->n_blocks, 4);
    assert_int_equal(m->blocks[0].type, BB_IR_THINKING);
    assert_str(&m->blocks[0].text, "The user wants two cities; call both tools.");
    assert_null(m->blocks[0].signature.p);
    assert_int_equal(m->blocks[1].type, BB_IR_THINKING);
    assert_str(&m->blocks[1].text, "");
    assert_str(&m->blocks[1].signature, "c2lnLWNhbGwtMQ==");
    assert_int_equal(m->blocks[2].type, BB_IR_TOOL_USE);
    assert_str(&m->blocks[2].name, "get_weather");
    assert_str(&m->blocks[2].id, "call_1");
    assert_json_eq("args", m->blocks[2].input_json.p, "{\"city\":\"Paris\",\"unit\":\"celsius\"}");
    assert_int_equal(m->blocks[3].type, BB_IR_TOOL_USE);
    assert_str(&m->blocks[3].id, "call_2");
    assert_json_eq("args", m->blocks[3].input_json.p, "{\"city\":\"Tokyo\"}");

    /* results without ids pair with the calls in order */
    m = &r.messages[2];
    assert_int_equal(m->role, BB_IR_USER);
    assert_int_equal(m->n_blocks, 2);
    assert_int_equal(m->blocks[0].type, BB_IR_TOOL_RESULT);
    assert_str(&m->blocks[0].id, "call_1");
    assert_str(&m->blocks[0].name, "get_weather");
    assert_str(&m->blocks[0].text, "18C, cloudy");
    assert_false(m->blocks[0].is_error);
    assert_str(&m->blocks[1].id, "call_2");
    assert_json_eq("result", m->blocks[1].text.p, "{\"temp\":24,\"sky\":\"clear\"}");

    /* a signature on a text part goes to the thinking block before it */
    m = &r.messages[3];
    assert_int_equal(m->n_blocks, 2);
    assert_int_equal(m->blocks[0].type, BB_IR_THINKING);
    assert_str(&m->blocks[0].text, "Comparing the two.");
    assert_str(&m->blocks[0].signature, "c2lnLXRleHQ=");
    assert_int_equal(m->blocks[1].type, BB_IR_TEXT);
    assert_str(&m->blocks[1].text, "Paris 18C cloudy; Tokyo 24C clear.");

    assert_str(&r.messages[5].blocks[0].id, "fc_77");
    m = &r.messages[6];
    assert_int_equal(m->n_blocks, 2);
    assert_int_equal(m->blocks[0].type, BB_IR_TOOL_RESULT);
    assert_str(&m->blocks[0].id, "fc_77");
    assert_true(m->blocks[0].is_error);
    assert_str(&m->blocks[0].text, "not found");
    assert_int_equal(m->blocks[1].type, BB_IR_TEXT);

    /* tools: Gemini Schema → JSON Schema; parametersJsonSchema verbatim */
    assert_int_equal(r.n_tools, 2);
    assert_str(&r.tools[0].name, "get_weather");
    assert_str(&r.tools[0].description, "Current weather for a city");
    assert_json_eq("tool0", r.tools[0].parameters_json.p,
                   "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\","
                   "\"description\":\"City name\"},\"unit\":{\"type\":[\"string\",\"null\"],"
                   "\"enum\":[\"celsius\",\"fahrenheit\"]}},\"required\":[\"city\"]}");
    assert_json_eq("tool1", r.tools[1].parameters_json.p,
                   "{\"type\":\"object\",\"properties\":{\"q\":{\"type\":\"string\"}},"
                   "\"additionalProperties\":false}");
    assert_int_equal(r.tool_choice, BB_IR_TC_TOOL);
    assert_str(&r.tool_choice_name, "get_weather");

    assert_true(r.has_max_tokens);
    assert_int_equal(r.max_tokens, 1024);
    assert_true(r.has_temperature);
    assert_float_equal(r.temperature, 0.7, 1e-12);
    assert_true(r.has_top_p);
    assert_float_equal(r.top_p, 0.95, 1e-12);
    assert_true(r.has_top_k);
    assert_int_equal(r.top_k, 40);
    assert_true(r.has_seed);
    assert_int_equal(r.seed, 42);
    assert_int_equal(r.n_stop, 2);
    assert_str(&r.stop[0], "END");
    assert_str(&r.stop[1], "###");
    assert_true(r.has_presence_penalty);
    assert_float_equal(r.presence_penalty, 0.5, 1e-12);
    assert_true(r.has_frequency_penalty);
    assert_float_equal(r.frequency_penalty, -0.25, 1e-12);
    assert_int_equal(r.n_choices, 1);
    assert_int_equal(r.format, BB_IR_FMT_JSON_SCHEMA);
    assert_json_eq("schema", r.format_schema_json.p,
                   "{\"type\":\"object\",\"properties\":{\"summary\":{\"type\":\"string\"},"
                   "\"cities\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}}},"
                   "\"required\":[\"summary\"]}");
    assert_true(r.reasoning);
    assert_int_equal(r.reasoning_budget, 2048);

    assert_true(has_unsupported(&r, "safetySettings"));
    assert_true(has_unsupported(&r, "generationConfig.responseLogprobs"));
    assert_true(has_unsupported(&r, "tools.googleSearch"));
    assert_false(r.stream);
    bb_arena_free(&a);
    free(body);
}

static void test_read_request_snake_case(void **state)
{
    (void)state;
    size_t len;
    char *body = slurp("req_snake.json", &len);
    struct bb_arena a;
    bb_arena_init(&a, 0);
    struct bb_ir_request r;
    struct bb_err err = {{0}};
    assert_int_equal(G->read_request(&a, body, len, "m", &r, &err), 0);
    assert_int_equal(r.n_system, 1);
    assert_str(&r.system[0].text, "Be brief.");
    assert_int_equal(r.n_messages, 3);
    assert_int_equal(r.messages[0].n_blocks, 3);
    assert_int_equal(r.messages[0].blocks[1].type, BB_IR_IMAGE);
    assert_str(&r.messages[0].blocks[1].media_type, "image/webp");
    assert_str(&r.messages[0].blocks[1].data, "UklGRg==");
    assert_int_equal(r.messages[0].blocks[2].type, BB_IR_DOCUMENT); /* .pdf, no mime */
    assert_str(&r.messages[0].blocks[2].url, "https://example.com/doc.pdf");
    assert_int_equal(r.messages[1].n_blocks, 2);
    assert_str(&r.messages[1].blocks[0].signature, "c2ln");
    assert_str(&r.messages[1].blocks[1].id, "call_1");
    assert_int_equal(r.messages[2].role, BB_IR_USER); /* role "function" */
    assert_str(&r.messages[2].blocks[0].id, "call_1");
    assert_str(&r.messages[2].blocks[0].text, "done");
    assert_int_equal(r.n_tools, 1);
    assert_json_eq("params", r.tools[0].parameters_json.p,
                   "{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"integer\"}}}");
    assert_int_equal(r.tool_choice, BB_IR_TC_NONE);
    assert_int_equal(r.max_tokens, 256);
    assert_float_equal(r.top_p, 0.5, 1e-12);
    assert_int_equal(r.top_k, 3);
    assert_int_equal(r.n_stop, 1);
    assert_float_equal(r.presence_penalty, 0.1, 1e-12);
    assert_float_equal(r.frequency_penalty, 0.2, 1e-12);
    assert_int_equal(r.n_choices, 2);
    assert_int_equal(r.format, BB_IR_FMT_JSON_SCHEMA);
    assert_json_eq("schema", r.format_schema_json.p,
                   "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\"}},"
                   "\"additionalProperties\":false}");
    assert_true(r.reasoning);
    assert_int_equal(r.reasoning_budget, 0);
    assert_int_equal(r.reasoning_effort, BB_IR_EFFORT_HIGH);
    assert_int_equal(r.n_unsupported, 0);
    bb_arena_free(&a);
    free(body);
}

static void test_read_request_misc(void **state)
{
    (void)state;
    struct bb_arena a;
    bb_arena_init(&a, 0);
    struct bb_ir_request r;
    struct bb_err err = {{0}};
    /* model from the body when the URL has none; json mime → json_object; budget 0 = off */
    const char *b = "{\"model\":\"models/gemini-x\",\"contents\":[{\"parts\":[{\"text\":\"hi\"}]}],"
                    "\"generationConfig\":{\"responseMimeType\":\"application/json\","
                    "\"thinkingConfig\":{\"thinkingBudget\":0,\"includeThoughts\":true}}}";
    assert_int_equal(G->read_request(&a, b, strlen(b), NULL, &r, &err), 0);
    assert_str(&r.model, "gemini-x");
    assert_int_equal(r.messages[0].role, BB_IR_USER);
    assert_int_equal(r.format, BB_IR_FMT_JSON_OBJECT);
    assert_false(r.reasoning);
    /* systemInstruction as a plain string; ANY with several names */
    b = "{\"systemInstruction\":\"sys\",\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":"
        "\"x\"}]}],"
        "\"toolConfig\":{\"functionCallingConfig\":{\"mode\":\"ANY\",\"allowedFunctionNames\":"
        "[\"a\",\"b\"]}},\"generationConfig\":{\"thinkingConfig\":{\"thinkingBudget\":-1}}}";
    assert_int_equal(G->read_request(&a, b, strlen(b), "m", &r, &err), 0);
    assert_str(&r.system[0].text, "sys");
    assert_int_equal(r.tool_choice, BB_IR_TC_ANY);
    assert_true(has_unsupported(&r, "toolConfig.functionCallingConfig.allowedFunctionNames"));
    assert_true(r.reasoning);
    assert_int_equal(r.reasoning_budget, 0);
    bb_arena_free(&a);
}

static void test_read_request_errors(void **state)
{
    (void)state;
    static const struct {
        const char *body, *err;
    } cases[] = {
        {"", "body: invalid JSON (unexpected end of input at byte 0)"},
        {"[1]", "body: expected a JSON object"},
        {"{\"contents\":[", "body: invalid JSON (unexpected end of input at byte 13)"},
        {"{\"contents\":[}", "body: invalid JSON (unexpected character at byte 13)"},
        {"{}", "contents: required"},
        {"{\"contents\":{}}", "contents: expected an array"},
        {"{\"contents\":[]}", "contents: must not be empty"},
        {"{\"contents\":[\"hi\"]}", "contents[0]: expected an object"},
        {"{\"contents\":[{\"role\":\"system\",\"parts\":[]}]}",
         "contents[0].role: expected \"user\" or \"model\""},
        {"{\"contents\":[{\"role\":\"user\"}]}", "contents[0].parts: required"},
        {"{\"contents\":[{\"parts\":{\"text\":\"x\"}}]}", "contents[0].parts: expected an array"},
        {"{\"contents\":[{\"parts\":[{\"text\":1}]}]}",
         "contents[0].parts[0].text: expected a string"},
        {"{\"contents\":[{\"parts\":[{\"text\":\"a\"}]},{\"parts\":[{\"thought\":\"yes\"}]}]}",
         "contents[1].parts[0].thought: expected a boolean"},
        {"{\"contents\":[{\"parts\":[{\"inlineData\":{\"mimeType\":\"image/png\"}}]}]}",
         "contents[0].parts[0].inlineData.data: required"},
        {"{\"contents\":[{\"parts\":[{\"functionCall\":{\"name\":\"f\",\"args\":[1]}}]}]}",
         "contents[0].parts[0].functionCall.args: expected an object"},
        {"{\"contents\":[{\"parts\":[{\"functionResponse\":{\"name\":\"f\",\"response\":\"x\"}}]}]"
         "}",
         "contents[0].parts[0].functionResponse.response: expected an object"},
        {"{\"contents\":[{\"parts\":[{\"text\":\"a\"}]}],\"tools\":{}}",
         "tools: expected an array"},
        {"{\"contents\":[{\"parts\":[{\"text\":\"a\"}]}],\"tools\":[{\"functionDeclarations\":"
         "[{\"description\":\"d\"}]}]}",
         "tools[0].functionDeclarations[0].name: required"},
        {"{\"contents\":[{\"parts\":[{\"text\":\"a\"}]}],\"toolConfig\":{\"functionCallingConfig\":"
         "{\"mode\":\"SOMETIMES\"}}}",
         "toolConfig.functionCallingConfig.mode: expected AUTO, ANY, NONE or VALIDATED"},
        {"{\"contents\":[{\"parts\":[{\"text\":\"a\"}]}],\"generationConfig\":{\"temperature\":"
         "\"hot\"}}",
         "generationConfig.temperature: expected a number"},
        {"{\"contents\":[{\"parts\":[{\"text\":\"a\"}]}],\"generationConfig\":{\"maxOutputTokens\":"
         "-5}}",
         "generationConfig.maxOutputTokens: out of range"},
        {"{\"contents\":[{\"parts\":[{\"text\":\"a\"}]}],\"generationConfig\":{\"stopSequences\":"
         "\"x\"}}",
         "generationConfig.stopSequences: expected an array"},
        {"{\"contents\":[{\"parts\":[{\"text\":\"a\"}]}],\"generationConfig\":{\"stopSequences\":["
         "1]}}",
         "generationConfig.stopSequences[0]: expected a string"},
        {"{\"contents\":[{\"parts\":[{\"text\":\"a\"}]}],\"generationConfig\":{\"seed\":1.5}}",
         "generationConfig.seed: expected an integer"},
        {"{\"contents\":[{\"parts\":[{\"text\":\"a\"}]}],\"generationConfig\":{\"thinkingConfig\":"
         "{\"thinkingBudget\":\"lots\"}}}",
         "generationConfig.thinkingConfig.thinkingBudget: expected an integer"},
        {"{\"contents\":[{\"parts\":[{\"text\":\"a\"}]}],\"systemInstruction\":[1]}",
         "systemInstruction: expected an object"},
        {"{\"contents\":[{\"parts\":[{\"text\":\"a\"}]}],\"systemInstruction\":{\"parts\":"
         "[{\"inlineData\":{\"data\":\"AA==\"}}]}}",
         "systemInstruction.parts[0]: only text parts are supported"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct bb_arena a;
        bb_arena_init(&a, 0);
        struct bb_ir_request r;
        struct bb_err err = {{0}};
        int rc = G->read_request(&a, cases[i].body, strlen(cases[i].body), "m", &r, &err);
        if (rc != -1 || strcmp(err.msg, cases[i].err) != 0)
            fail_msg("case %zu (%s): rc %d, err \"%s\", want \"%s\"", i, cases[i].body, rc, err.msg,
                     cases[i].err);
        bb_arena_free(&a);
    }
    /* no model anywhere */
    struct bb_arena a;
    bb_arena_init(&a, 0);
    struct bb_ir_request r;
    struct bb_err err = {{0}};
    const char *b = "{\"contents\":[{\"parts\":[{\"text\":\"a\"}]}]}";
    assert_int_equal(G->read_request(&a, b, strlen(b), NULL, &r, &err), -1);
    assert_non_null(strstr(err.msg, "model: required"));
    bb_arena_free(&a);
}

/* ======================================================================================== */
/* egress: write_request                                                                    */
/* ======================================================================================== */

#define S(lit) ((struct bb_ir_str){(char *)(lit), sizeof(lit) - 1})

static void run_write_request(const struct bb_ir_request *ir, bool stream, bool reasoning,
                              const char *upstream_model, struct bb_egress_req *out, char **body,
                              int want_rc)
{
    struct bb_provider prov = {
        .name = (char *)"g", .protocol = BB_PROTO_GEMINI, .api_key = (char *)"AIza-test-key"};
    struct bb_lane lane = {.name = (char *)"lane",
                           .upstream_model = (char *)upstream_model,
                           .default_max_tokens = 4096,
                           .reasoning = reasoning};
    struct bb_egress_ctx ctx = {.provider = &prov,
                                .lane = &lane,
                                .stream = stream,
                                .now = 1700000000,
                                .dropped = &test_drops};
    struct bb_arena a;
    bb_arena_init(&a, 0);
    struct bb_err err = {{0}};
    memset(out, 0, sizeof *out);
    out->headers = evbuffer_new();
    out->body = evbuffer_new();
    drops_reset();
    int rc = G->write_request(&a, ir, &ctx, out, &err);
    if (rc != want_rc)
        fail_msg("write_request rc %d (%s)", rc, err.msg);
    *body = buf_str(out->body, NULL);
    bb_arena_free(&a);
}

static void free_egress(struct bb_egress_req *out, char *body)
{
    evbuffer_free(out->headers);
    evbuffer_free(out->body);
    free(body);
}

static void test_write_request_golden(void **state)
{
    (void)state;
    struct bb_ir_block sys[] = {
        {.type = BB_IR_TEXT, .text = S("Be helpful.")},
        {.type = BB_IR_TEXT, .text = S("Use tools."), .cache_control = true}};
    struct bb_ir_block u1[] = {
        {.type = BB_IR_TEXT, .text = S("Weather in Paris and the time? See images.")},
        {.type = BB_IR_IMAGE, .media_type = S("image/png"), .data = S("iVBORw0KGgo=")},
        {.type = BB_IR_IMAGE, .url = S("https://example.com/a.webp")},
        {.type = BB_IR_IMAGE, .url = S("data:image/gif;base64,R0lGODlh")},
        {.type = BB_IR_DOCUMENT,
         .media_type = S("application/pdf"),
         .url = S("https://example.com/spec")},
    };
    struct bb_ir_block a1[] = {
        {.type = BB_IR_THINKING, .text = S("Two tools needed."), .signature = S("sig-A")},
        {.type = BB_IR_TEXT, .text = S("Let me check."), .citations_json = S("[]")},
        {.type = BB_IR_TOOL_USE,
         .id = S("call_a"),
         .name = S("get_weather"),
         .input_json = S("{\"city\":\"Paris\"}")},
        {.type = BB_IR_TOOL_USE, .id = S("call_b"), .name = S("get_time"), .input_json = S("")},
    };
    struct bb_ir_block nested[] = {
        {.type = BB_IR_TEXT, .text = S("line 1")},
        {.type = BB_IR_TEXT, .text = S("line 2")},
        {.type = BB_IR_IMAGE, .media_type = S("image/png"), .data = S("AAAA")},
    };
    struct bb_ir_block u2[] = {
        {.type = BB_IR_TOOL_RESULT, .id = S("call_a"), .text = S("{\"temp\": 21}")},
        {.type = BB_IR_TOOL_RESULT,
         .id = S("call_b"),
         .name = S("get_time"),
         .content = nested,
         .n_content = 3},
    };
    struct bb_ir_block a2[] = {
        {.type = BB_IR_THINKING, .text = S(""), .signature = S("sig-call")},
        {.type = BB_IR_TOOL_USE,
         .id = S("call_c"),
         .name = S("lookup"),
         .input_json = S("{\"q\":\"x\"}")},
        {.type = BB_IR_REDACTED_THINKING, .signature = S("opaque")},
    };
    struct bb_ir_block u3[] = {
        {.type = BB_IR_TOOL_RESULT, .id = S("call_c"), .text = S("boom"), .is_error = true},
        {.type = BB_IR_TEXT, .text = S("And summarise.")},
    };
    struct bb_ir_message msgs[] = {
        {.role = BB_IR_USER, .blocks = u1, .n_blocks = 5, .name = S("alice")},
        {.role = BB_IR_ASSISTANT, .blocks = a1, .n_blocks = 4},
        {.role = BB_IR_USER, .blocks = u2, .n_blocks = 2},
        {.role = BB_IR_ASSISTANT, .blocks = a2, .n_blocks = 3},
        {.role = BB_IR_USER, .blocks = u3, .n_blocks = 2},
    };
    struct bb_ir_tool tools[] = {
        {.name = S("get_weather"),
         .description = S("Weather now"),
         .parameters_json = S("{\"$schema\":\"http://json-schema.org/draft-07/schema#\","
                              "\"type\":\"object\",\"additionalProperties\":false,"
                              "\"properties\":{\"city\":{\"type\":\"string\",\"format\":\"uri\","
                              "\"minLength\":1},\"unit\":{\"type\":[\"string\",\"null\"],"
                              "\"enum\":[\"c\",\"f\"]},\"days\":{\"type\":\"integer\","
                              "\"enum\":[1,2,3],\"format\":\"int32\"},\"tags\":{\"type\":"
                              "\"array\",\"items\":{\"type\":\"string\",\"const\":\"x\"}},"
                              "\"when\":{\"oneOf\":[{\"type\":\"string\",\"format\":"
                              "\"date-time\"},{\"type\":\"number\"}]},\"empty\":{\"type\":"
                              "\"object\",\"properties\":{}}},\"required\":[\"city\"]}"),
         .strict = true},
        {.name = S("get_time"), .parameters_json = S("{\"type\":\"object\",\"properties\":{}}")},
        {.name = S("lookup"), .description = S("Find")},
    };
    struct bb_ir_str stops[] = {S("a"), S("b"), S("c"), S("d"), S("e"), S("f")};
    struct bb_ir_request ir = {
        .model = S("client-model"),
        .system = sys,
        .n_system = 2,
        .messages = msgs,
        .n_messages = 5,
        .tools = tools,
        .n_tools = 3,
        .tool_choice = BB_IR_TC_TOOL,
        .tool_choice_name = S("get_weather"),
        .has_parallel_tool_calls = true,
        .parallel_tool_calls = false,
        .has_max_tokens = true,
        .max_tokens = 2000,
        .has_temperature = true,
        .temperature = 0.7,
        .has_top_p = true,
        .top_p = 0.9,
        .has_top_k = true,
        .top_k = 20,
        .has_seed = true,
        .seed = 7,
        .stop = stops,
        .n_stop = 6,
        .has_presence_penalty = true,
        .presence_penalty = 0.3,
        .has_frequency_penalty = true,
        .frequency_penalty = 0.1,
        .n_choices = 2,
        .format = BB_IR_FMT_JSON_SCHEMA,
        .format_name = S("out"),
        .format_schema_json = S("{\"type\":\"object\",\"properties\":{\"answer\":{\"type\":"
                                "\"string\"}},\"required\":[\"answer\"],"
                                "\"additionalProperties\":false}"),
        .format_strict = true,
        .reasoning = true,
        .reasoning_budget = 4096,
        .user = S("user-42"),
    };
    struct bb_egress_req out;
    char *body;
    run_write_request(&ir, false, true, "gemini-2.5-pro", &out, &body, 0);
    assert_string_equal(out.path, "/v1beta/models/gemini-2.5-pro:generateContent");
    char *hdr = buf_str(out.headers, NULL);
    assert_string_equal(hdr, "Content-Type: application/json\r\nx-goog-api-key: AIza-test-key\r\n");
    free(hdr);
    assert_json_text_golden(body, strlen(body), "egress_full.json");
    static const char *const want_drops[] = {"name",          "citations", "redacted_thinking",
                                             "cache_control", "strict",    "parallel_tool_calls",
                                             "user",          "stop",      "n"};
    for (size_t i = 0; i < sizeof want_drops / sizeof want_drops[0]; i++)
        if (!dropped_has(want_drops[i]))
            fail_msg("dropped fields \"%s\" lack %s", drops_text(), want_drops[i]);
    assert_false(dropped_has("reasoning"));
    free_egress(&out, body);

    /* a lane without reasoning drops the ask; streaming asks for SSE; effort → budget */
    ir.reasoning_budget = 0;
    ir.reasoning_effort = BB_IR_EFFORT_LOW;
    run_write_request(&ir, true, false, "models/gemini-2.5-flash", &out, &body, 0);
    assert_string_equal(out.path, "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse");
    assert_true(dropped_has("reasoning"));
    assert_null(strstr(body, "thinkingConfig"));
    free_egress(&out, body);
    run_write_request(&ir, true, true, "tunedModels/my model", &out, &body, 0);
    assert_string_equal(out.path, "/v1beta/tunedModels/my%20model:streamGenerateContent?alt=sse");
    assert_non_null(strstr(body, "\"thinkingConfig\":{\"thinkingBudget\":2048,"
                                 "\"includeThoughts\":true}"));
    free_egress(&out, body);

    /* nothing to send → an error, not an empty contents */
    struct bb_ir_request empty = {.model = S("m"), .system = sys, .n_system = 1};
    run_write_request(&empty, false, false, "gemini-2.5-pro", &out, &body, -1);
    free_egress(&out, body);
}

/* Client request → IR → upstream body: what a Gemini-to-Gemini hop through the IR keeps. */
static void test_write_request_roundtrip(void **state)
{
    (void)state;
    size_t len;
    char *in = slurp("req_full.json", &len);
    struct bb_arena a;
    bb_arena_init(&a, 0);
    struct bb_ir_request r;
    struct bb_err err = {{0}};
    assert_int_equal(G->read_request(&a, in, len, "gemini-2.5-flash", &r, &err), 0);
    struct bb_egress_req out;
    char *body;
    run_write_request(&r, false, true, "gemini-2.5-flash", &out, &body, 0);
    assert_json_text_golden(body, strlen(body), "req_full.egress.json");
    assert_null(drops_text());
    free_egress(&out, body);
    bb_arena_free(&a);
    free(in);
}

/* ======================================================================================== */
/* responses                                                                                */
/* ======================================================================================== */

static char *roundtrip_response(const char *fixture, struct bb_arena *a, struct bb_ir_response *r)
{
    size_t len;
    char *body = slurp(fixture, &len);
    struct bb_err err = {{0}};
    if (G->read_response(a, body, len, r, &err) != 0)
        fail_msg("read_response %s: %s", fixture, err.msg);
    free(body);
    struct bb_ingress_ctx ctx = {.request_id = "req-1", .model = "pool-gemini"};
    struct evbuffer *out = evbuffer_new();
    assert_int_equal(G->write_response(a, r, &ctx, out), 0);
    char *s = buf_str(out, NULL);
    evbuffer_free(out);
    return s;
}

static void test_response_text(void **state)
{
    (void)state;
    struct bb_arena a;
    bb_arena_init(&a, 0);
    struct bb_ir_response r;
    char *out = roundtrip_response("resp_text.json", &a, &r);
    assert_str(&r.id, "mHxtaL6vB9CXz7IPtsLUmQ4");
    assert_str(&r.model, "gemini-2.5-flash");
    assert_int_equal(r.n_blocks, 2);
    assert_int_equal(r.blocks[0].type, BB_IR_THINKING);
    assert_str(&r.blocks[0].signature, "CiIBVKhc7oc2bXQtc2lnbmF0dXJl");
    assert_int_equal(r.blocks[1].type, BB_IR_TEXT);
    assert_str(&r.blocks[1].text, "Autumn moonlight—\na worm digs silently\ninto the chestnut.");
    assert_int_equal(r.stop, BB_IR_STOP_END_TURN);
    assert_true(r.usage.set);
    assert_int_equal(r.usage.input, 176);
    assert_int_equal(r.usage.cache_read, 1024);
    assert_int_equal(r.usage.output, 62);
    assert_int_equal(r.usage.reasoning, 45);
    assert_json_text_golden(out, strlen(out), "resp_text.out.json");
    free(out);
    bb_arena_free(&a);
}

static void test_response_tools(void **state)
{
    (void)state;
    struct bb_arena a;
    bb_arena_init(&a, 0);
    struct bb_ir_response r;
    char *out = roundtrip_response("resp_tools.json", &a, &r);
    assert_int_equal(r.n_blocks, 3);
    assert_int_equal(r.blocks[0].type, BB_IR_THINKING);
    assert_str(&r.blocks[0].signature, "Q2lzQmM2bGx1");
    assert_int_equal(r.blocks[1].type, BB_IR_TOOL_USE);
    assert_str(&r.blocks[1].id, "call_abc-123_XYZ_1");
    assert_str(&r.blocks[1].name, "get_weather");
    assert_json_eq("args", r.blocks[1].input_json.p, "{\"city\":\"Paris\"}");
    assert_str(&r.blocks[2].id, "call_abc-123_XYZ_2");
    assert_int_equal(r.stop, BB_IR_STOP_TOOL_USE);
    assert_int_equal(r.usage.input, 80);
    assert_int_equal(r.usage.output, 20);
    assert_json_text_golden(out, strlen(out), "resp_tools.out.json");
    free(out);
    bb_arena_free(&a);
}

static void test_response_blocked_and_misc(void **state)
{
    (void)state;
    struct bb_arena a;
    bb_arena_init(&a, 0);
    struct bb_ir_response r;
    char *out = roundtrip_response("resp_blocked.json", &a, &r);
    assert_int_equal(r.n_blocks, 0);
    assert_int_equal(r.stop, BB_IR_STOP_CONTENT_FILTER);
    assert_json_text_golden(out, strlen(out), "resp_blocked.out.json");
    free(out);

    static const struct {
        const char *reason;
        enum bb_ir_stop stop;
    } reasons[] = {{"MAX_TOKENS", BB_IR_STOP_MAX_TOKENS},
                   {"SAFETY", BB_IR_STOP_CONTENT_FILTER},
                   {"RECITATION", BB_IR_STOP_CONTENT_FILTER},
                   {"PROHIBITED_CONTENT", BB_IR_STOP_CONTENT_FILTER},
                   {"MALFORMED_FUNCTION_CALL", BB_IR_STOP_ERROR},
                   {"OTHER", BB_IR_STOP_END_TURN},
                   {"STOP", BB_IR_STOP_END_TURN}};
    for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++) {
        char body[256];
        snprintf(body, sizeof body,
                 "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"x\"}]},"
                 "\"finishReason\":\"%s\"}]}",
                 reasons[i].reason);
        struct bb_err err = {{0}};
        assert_int_equal(G->read_response(&a, body, strlen(body), &r, &err), 0);
        assert_int_equal(r.stop, reasons[i].stop);
        assert_false(r.usage.set);
    }
    /* IR → Gemini finish reasons, and a synthesised id/model from the ingress context */
    struct bb_ir_block t = {.type = BB_IR_TEXT, .text = S("hi")};
    struct bb_ir_response ir = {.blocks = &t, .n_blocks = 1, .stop = BB_IR_STOP_MAX_TOKENS};
    struct bb_ingress_ctx ctx = {.request_id = "req-9", .model = "pool"};
    struct evbuffer *ob = evbuffer_new();
    assert_int_equal(G->write_response(&a, &ir, &ctx, ob), 0);
    char *s = buf_str(ob, NULL);
    assert_json_eq("max_tokens", s,
                   "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"hi\"}],\"role\":"
                   "\"model\"},\"finishReason\":\"MAX_TOKENS\",\"index\":0}],"
                   "\"modelVersion\":\"pool\",\"responseId\":\"req-9\"}");
    free(s);
    evbuffer_free(ob);

    struct bb_err err = {{0}};
    const char *bad = "{\"candidates\":[{\"content\":{\"parts\":{}}}]}";
    assert_int_equal(G->read_response(&a, bad, strlen(bad), &r, &err), -1);
    assert_string_equal(err.msg, "gemini response: candidates[0].content.parts: expected an array");
    assert_int_equal(G->read_response(&a, "nope", 4, &r, &err), -1);
    bb_arena_free(&a);
}

/* ======================================================================================== */
/* streams                                                                                  */
/* ======================================================================================== */

/* transcript → events (golden), byte-at-a-time identical, → SSE and array encodings (golden),
 * and the encodings decode back to the same events. */
static void run_stream(const char *name, bool roundtrip)
{
    char fix[128], gold[128];
    size_t len;
    snprintf(fix, sizeof fix, "%s.sse", name);
    char *sse = slurp(fix, &len);
    int rc;
    char *events = decode_sse(sse, len, 0, &rc);
    assert_int_equal(rc, 0);
    snprintf(gold, sizeof gold, "%s.events.jsonl", name);
    golden_lines(gold, events);
    char *bytewise = decode_sse(sse, len, 1, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(bytewise, events);
    free(bytewise);

    size_t olen;
    char *out = encode_lines(events, true, true, &olen);
    snprintf(gold, sizeof gold, "%s.out.sse", name);
    golden_sse(gold, out, olen);
    if (roundtrip) {
        char *again = decode_sse(out, olen, 0, &rc);
        assert_int_equal(rc, 0);
        assert_lines_eq("SSE re-decode", again, events);
        free(again);
    }
    free(out);

    out = encode_lines(events, false, true, &olen);
    assert_array_framing(out);
    snprintf(gold, sizeof gold, "%s.out.json", name);
    assert_json_text_golden(out, olen, gold);
    if (roundtrip) {
        char *again = decode_array(out);
        assert_lines_eq("array re-decode", again, events);
        free(again);
    }
    free(out);
    free(events);
    free(sse);
}

static void test_stream_text(void **state)
{
    (void)state;
    run_stream("stream_text", true);
}

static void test_stream_tools(void **state)
{
    (void)state;
    run_stream("stream_tools", true);
}

static void test_stream_error(void **state)
{
    (void)state;
    run_stream("stream_error", true);
}

/* Events from other protocols' decoders (interleaved tool blocks, a trailing signature,
 * usage only at MESSAGE_DELTA, a stream ended without MESSAGE_STOP). */
static void run_encoder(const char *name)
{
    char fix[128], gold[128];
    snprintf(fix, sizeof fix, "%s.events.jsonl", name);
    char *events = slurp(fix, NULL);
    size_t olen;
    char *out = encode_lines(events, true, true, &olen);
    snprintf(gold, sizeof gold, "%s.out.sse", name);
    golden_sse(gold, out, olen);
    free(out);
    out = encode_lines(events, false, true, &olen);
    assert_array_framing(out);
    snprintf(gold, sizeof gold, "%s.out.json", name);
    assert_json_text_golden(out, olen, gold);
    free(out);
    free(events);
}

static void test_encoder_foreign(void **state)
{
    (void)state;
    run_encoder("enc_foreign");
    run_encoder("enc_sigonly");
    /* the array form is closed exactly once, and an empty stream is still an array */
    size_t olen;
    char *out = encode_lines("{\"type\":\"message_start\"}\n{\"type\":\"message_stop\"}\n", false,
                             true, &olen);
    assert_string_equal(out, "[]");
    free(out);
    out = encode_lines("{\"type\":\"message_start\"}\n", false, true, &olen);
    assert_string_equal(out, "[]");
    free(out);
    out = encode_lines("{\"type\":\"message_start\"}\n", true, true, &olen);
    assert_string_equal(out, "");
    free(out);
    /* two reasoning blocks open at once (IR from a dialect that interleaves them): each
     * signature follows its own block's text, in its own part, in order */
    out = encode_lines(
        "{\"type\":\"message_start\"}\n"
        "{\"type\":\"block_start\",\"index\":0,\"block\":\"thinking\"}\n"
        "{\"type\":\"block_start\",\"index\":1,\"block\":\"thinking\"}\n"
        "{\"type\":\"block_delta\",\"index\":0,\"delta\":\"thinking\",\"text\":\"a\"}\n"
        "{\"type\":\"block_delta\",\"index\":1,\"delta\":\"thinking\",\"text\":\"b\"}\n"
        "{\"type\":\"block_delta\",\"index\":0,\"delta\":\"signature\",\"text\":\"S0\"}\n"
        "{\"type\":\"block_delta\",\"index\":1,\"delta\":\"signature\",\"text\":\"S1\"}\n"
        "{\"type\":\"block_stop\",\"index\":0}\n"
        "{\"type\":\"block_stop\",\"index\":1}\n"
        "{\"type\":\"message_stop\"}\n",
        true, true, &olen);
    const char *s0 = strstr(out, "{\"text\":\"\",\"thoughtSignature\":\"S0\"}");
    const char *s1 = strstr(out, "{\"text\":\"\",\"thoughtSignature\":\"S1\"}");
    assert_true(s0 && s1 && s0 < s1);
    free(out);
    /* an error with a foreign type gets a Gemini status */
    out = encode_lines("{\"type\":\"error\",\"text\":\"busy\",\"error_type\":\"overloaded_error\","
                       "\"error_status\":0}\n",
                       true, true, &olen);
    assert_string_equal(out, "data: {\"error\":{\"code\":503,\"message\":\"busy\",\"status\":"
                             "\"UNAVAILABLE\"}}\r\n\r\n");
    free(out);
}

static void test_stream_malformed(void **state)
{
    (void)state;
    struct bb_arena a;
    bb_arena_init(&a, 0);
    void *dec = calloc(1, G->dec_size);
    G->dec_init(dec);
    struct evbuffer *lines = evbuffer_new();
    struct bb_frame f = {"", 0, "{\"candidates\":[", 15, false};
    assert_int_equal(G->dec_frame(dec, &a, &f, collect, lines), -1);
    f.data = "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":5}]}}]}";
    f.data_len = strlen(f.data);
    assert_int_equal(G->dec_frame(dec, &a, &f, collect, lines), -1);
    f.data = "  \r\n";
    f.data_len = 4;
    assert_int_equal(G->dec_frame(dec, &a, &f, collect, lines), 0);
    evbuffer_free(lines);
    free(dec);
    bb_arena_free(&a);
}

/* Decode frames given inline and compare with expected event lines. */
static void decode_inline(const char *const *frames, size_t n, const char *want)
{
    struct bb_arena a;
    bb_arena_init(&a, 0);
    void *dec = calloc(1, G->dec_size);
    G->dec_init(dec);
    struct evbuffer *lines = evbuffer_new();
    for (size_t i = 0; i < n; i++) {
        struct bb_frame f = {"", 0, frames[i], strlen(frames[i]), false};
        assert_int_equal(G->dec_frame(dec, &a, &f, collect, lines), 0);
    }
    char *got = buf_str(lines, NULL);
    assert_lines_eq("inline stream", got, want);
    free(got);
    evbuffer_free(lines);
    free(dec);
    bb_arena_free(&a);
}

static void test_stream_edges(void **state)
{
    (void)state;
    /* Streamed thinking: the signature comes last on an empty text part; a usage-only chunk
     * before the end; candidate 1 is ignored. */
    static const char *const f1[] = {
        "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"hmm\",\"thought\":true}]}}],"
        "\"responseId\":\"x\"}",
        "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"A\"}]},\"index\":0},"
        "{\"content\":{\"parts\":[{\"text\":\"B\"}]},\"index\":1}]}",
        "{\"usageMetadata\":{\"promptTokenCount\":9,\"candidatesTokenCount\":3,"
        "\"thoughtsTokenCount\":2,\"totalTokenCount\":14}}",
        "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"\",\"thoughtSignature\":\"S\"}]},"
        "\"finishReason\":\"MAX_TOKENS\"}]}",
    };
    decode_inline(f1, 4,
                  "{\"type\":\"message_start\",\"id\":\"x\"}\n"
                  "{\"type\":\"block_start\",\"index\":0,\"block\":\"thinking\"}\n"
                  "{\"type\":\"block_delta\",\"index\":0,\"delta\":\"thinking\",\"text\":\"hmm\"}\n"
                  "{\"type\":\"block_stop\",\"index\":0}\n"
                  "{\"type\":\"block_start\",\"index\":1,\"block\":\"text\"}\n"
                  "{\"type\":\"block_delta\",\"index\":1,\"delta\":\"text\",\"text\":\"A\"}\n"
                  "{\"type\":\"block_stop\",\"index\":1}\n"
                  "{\"type\":\"block_start\",\"index\":2,\"block\":\"thinking\"}\n"
                  "{\"type\":\"block_delta\",\"index\":2,\"delta\":\"signature\",\"text\":\"S\"}\n"
                  "{\"type\":\"block_stop\",\"index\":2}\n"
                  "{\"type\":\"message_delta\",\"stop\":\"max_tokens\",\"usage\":{\"input\":9,"
                  "\"output\":5,\"cache_read\":0,\"cache_write\":0,\"reasoning\":2}}\n"
                  "{\"type\":\"message_stop\"}\n");
    /* A blocked prompt: no candidates, promptFeedback only. */
    static const char *const f2[] = {
        "{\"promptFeedback\":{\"blockReason\":\"PROHIBITED_CONTENT\"},\"usageMetadata\":"
        "{\"promptTokenCount\":4,\"totalTokenCount\":4},\"modelVersion\":\"g\"}",
    };
    decode_inline(f2, 1,
                  "{\"type\":\"message_start\",\"model\":\"g\",\"usage\":{\"input\":4,\"output\":0,"
                  "\"cache_read\":0,\"cache_write\":0,\"reasoning\":0}}\n"
                  "{\"type\":\"message_delta\",\"stop\":\"content_filter\",\"usage\":{\"input\":4,"
                  "\"output\":0,\"cache_read\":0,\"cache_write\":0,\"reasoning\":0}}\n"
                  "{\"type\":\"message_stop\"}\n");
}

static int stop_after_first(void *arg, const struct bb_ir_event *ev)
{
    (void)ev;
    int *n = arg;
    return ++*n >= 1 ? 7 : 0;
}

static void test_stream_callback_stops(void **state)
{
    (void)state;
    struct bb_arena a;
    bb_arena_init(&a, 0);
    void *dec = calloc(1, G->dec_size);
    G->dec_init(dec);
    int n = 0;
    const char *d = "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"x\"}]},"
                    "\"finishReason\":\"STOP\"}]}";
    struct bb_frame f = {"", 0, d, strlen(d), false};
    assert_int_equal(G->dec_frame(dec, &a, &f, stop_after_first, &n), 7);
    assert_int_equal(n, 1);
    free(dec);
    bb_arena_free(&a);
}

/* ======================================================================================== */
/* errors and small things                                                                  */
/* ======================================================================================== */

static void test_read_error(void **state)
{
    (void)state;
    struct bb_proto_error e;
    const char *b =
        "{\"error\":{\"code\":429,\"message\":\"Resource has been exhausted (e.g. check quota).\","
        "\"status\":\"RESOURCE_EXHAUSTED\",\"details\":[{\"@type\":\"type.googleapis.com/"
        "google.rpc.QuotaFailure\",\"violations\":[]},{\"@type\":\"type.googleapis.com/"
        "google.rpc.ErrorInfo\",\"reason\":\"RATE_LIMIT_EXCEEDED\",\"domain\":"
        "\"googleapis.com\"}]}}";
    assert_int_equal(G->read_error(b, strlen(b), &e), 0);
    assert_string_equal(e.type, "RESOURCE_EXHAUSTED");
    assert_string_equal(e.code, "RATE_LIMIT_EXCEEDED");
    assert_string_equal(e.message, "Resource has been exhausted (e.g. check quota).");
    b = "[{\"error\":{\"code\":400,\"message\":\"The input token count (2000000) exceeds the "
        "maximum number of tokens allowed (1048576).\",\"status\":\"INVALID_ARGUMENT\"}}]";
    assert_int_equal(G->read_error(b, strlen(b), &e), 0);
    assert_string_equal(e.type, "INVALID_ARGUMENT");
    assert_string_equal(e.code, "");
    assert_non_null(strstr(e.message, "exceeds the maximum number of tokens"));
    assert_int_equal(G->read_error("<html>502</html>", 16, &e), -1);
    assert_int_equal(G->read_error("{\"message\":\"x\"}", 15, &e), -1);
    assert_int_equal(G->read_error("", 0, &e), -1);
}

static void test_ops_table(void **state)
{
    (void)state;
    assert_ptr_equal(bb_proto_get(BB_PROTO_GEMINI), G);
    assert_int_equal(G->id, BB_PROTO_GEMINI);
    assert_int_equal(G->framing, BB_FRAMING_SSE);
    struct bb_ingress_ctx sse = {.route_flags = sse_flags()}, arr = {.route_flags = 0};
    assert_string_equal(G->stream_content_type(&sse), "text/event-stream");
    assert_string_equal(G->stream_content_type(&arr), "application/json");
    assert_non_null(G->enc_finish);
}

int main(void)
{
    G = &bb_proto_gemini;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_request_full),
        cmocka_unit_test(test_read_request_snake_case),
        cmocka_unit_test(test_read_request_misc),
        cmocka_unit_test(test_read_request_errors),
        cmocka_unit_test(test_write_request_golden),
        cmocka_unit_test(test_write_request_roundtrip),
        cmocka_unit_test(test_response_text),
        cmocka_unit_test(test_response_tools),
        cmocka_unit_test(test_response_blocked_and_misc),
        cmocka_unit_test(test_stream_text),
        cmocka_unit_test(test_stream_tools),
        cmocka_unit_test(test_stream_error),
        cmocka_unit_test(test_encoder_foreign),
        cmocka_unit_test(test_stream_edges),
        cmocka_unit_test(test_stream_malformed),
        cmocka_unit_test(test_stream_callback_stops),
        cmocka_unit_test(test_read_error),
        cmocka_unit_test(test_ops_table),
    };
    return cmocka_run_group_tests_name("proto_gemini", tests, NULL, NULL);
}
