/*
 * proto_gemini: the Gemini generateContent wire protocol (REST JSON, camelCase; the snake_case
 * spellings the REST API also accepts are read too) in both roles:
 *   ingress: POST /v1beta/models/{m}:generateContent and :streamGenerateContent, answered as
 *            one GenerateContentResponse, as SSE (?alt=sse) or as a streamed JSON array;
 *   egress:  busbar always asks Gemini for :streamGenerateContent?alt=sse when streaming.
 * Gemini streams are flat and terminator-free: each chunk carries the NEW parts of candidate 0
 * and the last one carries finishReason + usageMetadata, so the decoder synthesises block
 * boundaries and ends the IR stream at the finishReason chunk.
 *
 * Conventions that are easy to get wrong (see docs/protocols/gemini.md):
 * - promptTokenCount includes cachedContentTokenCount; candidatesTokenCount excludes
 *   thoughtsTokenCount. IR input excludes cache, IR output includes reasoning.
 * - Gemini puts thoughtSignature on the part that FOLLOWS the thoughts (a text or functionCall
 *   part). A signature on a text part is attached to the thinking block before it; one on a
 *   functionCall part becomes an empty THINKING block right before the TOOL_USE block, so that
 *   a writer can put it back on the functionCall part, where Gemini validates it.
 * - Gemini function calls often carry no id; readers synthesise one and pair a
 *   functionResponse without id with the earlier call of the same name.
 *
 * Worker process, single-threaded; stateless apart from the per-stream encoder/decoder state
 * the caller allocates. json-c objects never outlive a call; every string handed out lives in
 * the arena given.
 */
#include "worker/media.h"
#include "worker/params.h"
#include "worker/proto.h"
#include "worker/rd.h"
#include "worker/seq.h"
#include "common/jscan.h"

#include <ctype.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <json-c/json.h>

/* The scalar parameters (worker/params.h; docs/protocols/gemini.md "Parameters"). The API
 * also takes snake_case names: those rows are read-only aliases. */
/* bb_ingress_ctx.route_flags: the client asked for SSE (?alt=sse). */
#define ROUTE_SSE 1u

static const struct bb_param param_rows[] = {
    {"generationConfig.maxOutputTokens", BB_IRP_MAX_TOKENS, BB_PF_IN | BB_PF_OUT, 0, 0, ""},
    {"generationConfig.max_output_tokens", BB_IRP_MAX_TOKENS, BB_PF_IN, 0, 0,
     "the snake_case spelling"},
    {"generationConfig.temperature", BB_IRP_TEMPERATURE, BB_PF_IN | BB_PF_OUT, 0, 0, ""},
    {"generationConfig.topP", BB_IRP_TOP_P, BB_PF_IN | BB_PF_OUT, 0, 0, ""},
    {"generationConfig.top_p", BB_IRP_TOP_P, BB_PF_IN, 0, 0, "the snake_case spelling"},
    {"generationConfig.topK", BB_IRP_TOP_K, BB_PF_IN | BB_PF_OUT, 0, 0, ""},
    {"generationConfig.top_k", BB_IRP_TOP_K, BB_PF_IN, 0, 0, "the snake_case spelling"},
    {"generationConfig.seed", BB_IRP_SEED, BB_PF_IN | BB_PF_OUT, 0, 0,
     "dropped when it does not fit Gemini's 32-bit seed"},
    {"generationConfig.stopSequences", BB_IRP_STOP, BB_PF_IN | BB_PF_OUT | BB_PF_CLAMP, 0, 5, ""},
    {"generationConfig.stop_sequences", BB_IRP_STOP, BB_PF_IN, 0, 0, "the snake_case spelling"},
    {"generationConfig.presencePenalty", BB_IRP_PRESENCE_PENALTY, BB_PF_IN | BB_PF_OUT, 0, 0, ""},
    {"generationConfig.presence_penalty", BB_IRP_PRESENCE_PENALTY, BB_PF_IN, 0, 0,
     "the snake_case spelling"},
    {"generationConfig.frequencyPenalty", BB_IRP_FREQUENCY_PENALTY, BB_PF_IN | BB_PF_OUT, 0, 0, ""},
    {"generationConfig.frequency_penalty", BB_IRP_FREQUENCY_PENALTY, BB_PF_IN, 0, 0,
     "the snake_case spelling"},
    {"generationConfig.candidateCount", BB_IRP_N, BB_PF_IN | BB_PF_OUT, 0, 0,
     "only 1 is asked for (the IR carries candidate 0): above 1 it is dropped"},
    {"generationConfig.candidate_count", BB_IRP_N, BB_PF_IN, 0, 0, "the snake_case spelling"},
};
#define N_PARAMS (sizeof param_rows / sizeof param_rows[0])

/* ======================================================================================== */
/* JSON helpers                                                                             */
/* ======================================================================================== */

/* Member by its camelCase name or its snake_case alias; JSON null counts as absent. */
static json_object *jget(json_object *o, const char *camel, const char *snake)
{
    json_object *v = NULL;
    if (!o || !json_object_is_type(o, json_type_object))
        return NULL;
    if (json_object_object_get_ex(o, camel, &v) && v)
        return v;
    if (snake && json_object_object_get_ex(o, snake, &v) && v)
        return v;
    return NULL;
}

static bool str_eq(const struct bb_ir_str *s, const char *lit)
{
    return s->p && strcmp(s->p, lit) == 0;
}

static bool has_prefix(const char *s, const char *pre)
{
    return s && strncmp(s, pre, strlen(pre)) == 0;
}

static bool is_image_mime(const char *m)
{
    return has_prefix(m, "image/");
}

/* Media type from a URL's extension, for fileData parts that must name one. */
static const char *mime_from_url(const char *url)
{
    static const struct {
        const char *ext, *mime;
    } map[] = {
        {".png", "image/png"},   {".jpg", "image/jpeg"},      {".jpeg", "image/jpeg"},
        {".gif", "image/gif"},   {".webp", "image/webp"},     {".heic", "image/heic"},
        {".heif", "image/heif"}, {".pdf", "application/pdf"}, {".txt", "text/plain"},
        {".mp3", "audio/mp3"},   {".wav", "audio/wav"},       {".mp4", "video/mp4"},
    };
    if (!url)
        return NULL;
    size_t n = strcspn(url, "?#");
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        size_t el = strlen(map[i].ext);
        if (n >= el && strncasecmp(url + n - el, map[i].ext, el) == 0)
            return map[i].mime;
    }
    return NULL;
}

/* ======================================================================================== */
/* JSON Schema <-> Gemini Schema                                                           */
/* ======================================================================================== */

/* Gemini Schema (OpenAPI 3.0 subset, upper-case types, nullable) → JSON Schema, so that a
 * tool or response schema crosses to other protocols as they expect it. */
static json_object *schema_to_json(json_object *s)
{
    if (!bb_json_is(s, json_type_object))
        return json_object_get(s);
    json_object *o = json_object_new_object();
    json_object *nullable = jget(s, "nullable", NULL);
    bool is_null = bb_json_is(nullable, json_type_boolean) && json_object_get_boolean(nullable);
    json_object_object_foreach(s, k, v)
    {
        if (strcmp(k, "nullable") == 0 || strcmp(k, "propertyOrdering") == 0 ||
            strcmp(k, "property_ordering") == 0)
            continue;
        if (strcmp(k, "type") == 0 && bb_json_is(v, json_type_string)) {
            char t[32];
            size_t n = (size_t)json_object_get_string_len(v);
            if (n >= sizeof t)
                n = sizeof t - 1;
            for (size_t i = 0; i < n; i++)
                t[i] = (char)tolower((unsigned char)json_object_get_string(v)[i]);
            t[n] = '\0';
            if (strcmp(t, "type_unspecified") == 0)
                continue;
            if (is_null && strcmp(t, "null") != 0) {
                json_object *arr = json_object_new_array();
                json_object_array_add(arr, json_object_new_string(t));
                json_object_array_add(arr, json_object_new_string("null"));
                bb_json_add(o, "type", arr);
            } else {
                bb_json_add(o, "type", json_object_new_string(t));
            }
        } else if (strcmp(k, "properties") == 0 && bb_json_is(v, json_type_object)) {
            json_object *props = json_object_new_object();
            json_object_object_foreach(v, pk, pv)
            {
                bb_json_add(props, pk, schema_to_json(pv));
            }
            bb_json_add(o, "properties", props);
        } else if (strcmp(k, "items") == 0) {
            bb_json_add(o, "items", schema_to_json(v));
        } else if ((strcmp(k, "anyOf") == 0 || strcmp(k, "any_of") == 0) &&
                   bb_json_is(v, json_type_array)) {
            json_object *arr = json_object_new_array();
            for (size_t i = 0; i < json_object_array_length(v); i++)
                json_object_array_add(arr, schema_to_json(json_object_array_get_idx(v, i)));
            bb_json_add(o, "anyOf", arr);
        } else {
            bb_json_add(o, k, json_object_get(v));
        }
    }
    return o;
}

static bool str_in(const char *s, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(s, *list) == 0)
            return true;
    return false;
}

/* JSON Schema → the Schema subset generateContent accepts for function parameters and
 * responseSchema. Keys it rejects ($schema, additionalProperties, $ref, allOf, ...) are left
 * out; a type list with "null" becomes nullable; oneOf becomes anyOf; const becomes enum.
 * Returns NULL when s is not an object. */
static json_object *schema_to_gemini(json_object *s)
{
    static const char *const copy_keys[] = {
        "description", "title",         "required",         "minItems", "maxItems", "minLength",
        "maxLength",   "minProperties", "maxProperties",    "minimum",  "maximum",  "pattern",
        "example",     "default",       "propertyOrdering", NULL};
    if (!bb_json_is(s, json_type_object))
        return NULL;
    json_object *o = json_object_new_object();
    char type[16] = "";
    bool nullable = false;
    json_object *t = jget(s, "type", NULL);
    if (bb_json_is(t, json_type_string)) {
        snprintf(type, sizeof type, "%s", json_object_get_string(t));
    } else if (bb_json_is(t, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(t); i++) {
            json_object *e = json_object_array_get_idx(t, i);
            if (!bb_json_is(e, json_type_string))
                continue;
            if (strcasecmp(json_object_get_string(e), "null") == 0)
                nullable = true;
            else if (!type[0])
                snprintf(type, sizeof type, "%s", json_object_get_string(e));
        }
    }
    for (char *c = type; *c; c++)
        *c = (char)toupper((unsigned char)*c);
    json_object *nl = jget(s, "nullable", NULL);
    if (bb_json_is(nl, json_type_boolean) && json_object_get_boolean(nl))
        nullable = true;

    json_object *any = NULL;
    json_object_object_foreach(s, k, v)
    {
        if (strcmp(k, "properties") == 0 && bb_json_is(v, json_type_object)) {
            json_object *props = json_object_new_object();
            json_object_object_foreach(v, pk, pv)
            {
                json_object *sub = schema_to_gemini(pv);
                if (sub)
                    bb_json_add(props, pk, sub);
            }
            /* "properties: should be non-empty for OBJECT type" */
            if (json_object_object_length(props))
                bb_json_add(o, "properties", props);
            else
                json_object_put(props);
        } else if (strcmp(k, "items") == 0) {
            json_object *sub = schema_to_gemini(
                bb_json_is(v, json_type_array) ? json_object_array_get_idx(v, 0) : v);
            if (sub)
                bb_json_add(o, "items", sub);
        } else if ((strcmp(k, "anyOf") == 0 || strcmp(k, "oneOf") == 0) &&
                   bb_json_is(v, json_type_array)) {
            if (!any)
                any = json_object_new_array();
            for (size_t i = 0; i < json_object_array_length(v); i++) {
                json_object *sub = schema_to_gemini(json_object_array_get_idx(v, i));
                if (sub)
                    json_object_array_add(any, sub);
            }
        } else if (strcmp(k, "enum") == 0 && bb_json_is(v, json_type_array)) {
            /* Gemini enums are strings only. */
            bool all_str = json_object_array_length(v) > 0;
            for (size_t i = 0; i < json_object_array_length(v); i++)
                all_str = all_str && bb_json_is(json_object_array_get_idx(v, i), json_type_string);
            if (all_str)
                bb_json_add(o, "enum", json_object_get(v));
        } else if (strcmp(k, "const") == 0 && bb_json_is(v, json_type_string)) {
            json_object *e = json_object_new_array();
            json_object_array_add(e, json_object_get(v));
            bb_json_add(o, "enum", e);
        } else if (strcmp(k, "format") == 0 && bb_json_is(v, json_type_string)) {
            /* Only these formats are accepted per type; others are a 400. */
            const char *f = json_object_get_string(v);
            if ((strcmp(type, "STRING") == 0 &&
                 (strcmp(f, "enum") == 0 || strcmp(f, "date-time") == 0)) ||
                (strcmp(type, "NUMBER") == 0 &&
                 (strcmp(f, "float") == 0 || strcmp(f, "double") == 0)) ||
                (strcmp(type, "INTEGER") == 0 &&
                 (strcmp(f, "int32") == 0 || strcmp(f, "int64") == 0)))
                bb_json_add(o, "format", json_object_get(v));
        } else if (str_in(k, copy_keys)) {
            bb_json_add(o, k, json_object_get(v));
        }
    }
    if (any) {
        if (json_object_array_length(any))
            bb_json_add(o, "anyOf", any);
        else
            json_object_put(any);
    }
    if (!type[0] && jget(o, "properties", NULL))
        snprintf(type, sizeof type, "OBJECT");
    if (type[0])
        bb_json_add(o, "type", json_object_new_string(type));
    if (nullable)
        bb_json_add(o, "nullable", json_object_new_boolean(1));
    return o;
}

/* ======================================================================================== */
/* Shared vocabulary: finish reasons, usage, error statuses                                 */
/* ======================================================================================== */

static enum bb_ir_stop stop_from_gemini(const char *r, bool saw_tool)
{
    static const char *const filtered[] = {"SAFETY",
                                           "RECITATION",
                                           "BLOCKLIST",
                                           "PROHIBITED_CONTENT",
                                           "SPII",
                                           "IMAGE_SAFETY",
                                           "IMAGE_PROHIBITED_CONTENT",
                                           "IMAGE_RECITATION",
                                           NULL};
    static const char *const errors[] = {"MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL",
                                         "TOO_MANY_TOOL_CALLS", NULL};
    if (!r)
        return BB_IR_STOP_UNSET;
    if (strcmp(r, "MAX_TOKENS") == 0 || strcmp(r, "CONTINUATION") == 0)
        return BB_IR_STOP_MAX_TOKENS;
    if (str_in(r, filtered))
        return BB_IR_STOP_CONTENT_FILTER;
    if (str_in(r, errors))
        return BB_IR_STOP_ERROR;
    /* STOP, OTHER, LANGUAGE, unknown: Gemini says STOP for a turn that ends in calls. */
    return saw_tool ? BB_IR_STOP_TOOL_USE : BB_IR_STOP_END_TURN;
}

static const char *stop_to_gemini(enum bb_ir_stop s)
{
    switch (s) {
    case BB_IR_STOP_MAX_TOKENS:
        return "MAX_TOKENS";
    case BB_IR_STOP_CONTENT_FILTER:
    case BB_IR_STOP_REFUSAL:
        return "SAFETY";
    case BB_IR_STOP_ERROR:
        return "OTHER";
    default:
        return "STOP";
    }
}

/* A count by its camelCase name or snake_case alias (json.h's policy: 0 unless an integer). */
static uint64_t jget_u64(json_object *o, const char *camel, const char *snake)
{
    uint64_t u = 0;
    return bb_json_uint(jget(o, camel, snake), UINT64_MAX, &u) ? u : 0;
}

/* usageMetadata → IR usage (input excludes cached; output includes thoughts). */
static struct bb_ir_usage usage_from_gemini(json_object *um)
{
    struct bb_ir_usage u = {0};
    if (!bb_json_is(um, json_type_object))
        return u;
    uint64_t prompt = jget_u64(um, "promptTokenCount", "prompt_token_count");
    uint64_t cached = jget_u64(um, "cachedContentTokenCount", "cached_content_token_count");
    uint64_t tool = jget_u64(um, "toolUsePromptTokenCount", "tool_use_prompt_token_count");
    uint64_t cand = jget_u64(um, "candidatesTokenCount", "candidates_token_count");
    uint64_t thoughts = jget_u64(um, "thoughtsTokenCount", "thoughts_token_count");
    u.set = true;
    u.cache_read = cached;
    u.input = (prompt > cached ? prompt - cached : 0) + tool;
    u.output = cand + thoughts;
    u.reasoning = thoughts;
    return u;
}

static json_object *usage_to_gemini(const struct bb_ir_usage *u)
{
    json_object *o = json_object_new_object();
    uint64_t prompt = u->input + u->cache_read + u->cache_write;
    uint64_t cand = u->output >= u->reasoning ? u->output - u->reasoning : u->output;
    bb_json_add(o, "promptTokenCount", json_object_new_int64((int64_t)prompt));
    bb_json_add(o, "candidatesTokenCount", json_object_new_int64((int64_t)cand));
    bb_json_add(o, "totalTokenCount",
                json_object_new_int64((int64_t)(prompt + cand + u->reasoning)));
    if (u->cache_read)
        bb_json_add(o, "cachedContentTokenCount", json_object_new_int64((int64_t)u->cache_read));
    if (u->reasoning)
        bb_json_add(o, "thoughtsTokenCount", json_object_new_int64((int64_t)u->reasoning));
    return o;
}

/* google.rpc status names by HTTP status, for errors that arrive without one. */
static const char *status_from_http(int code)
{
    switch (code) {
    case 400:
        return "INVALID_ARGUMENT";
    case 401:
        return "UNAUTHENTICATED";
    case 403:
        return "PERMISSION_DENIED";
    case 404:
        return "NOT_FOUND";
    case 408:
    case 504:
        return "DEADLINE_EXCEEDED";
    case 409:
        return "ABORTED";
    case 429:
        return "RESOURCE_EXHAUSTED";
    case 501:
        return "UNIMPLEMENTED";
    case 503:
    case 529:
        return "UNAVAILABLE";
    default:
        return "INTERNAL";
    }
}

/* Another dialect's error type → an HTTP status, so the Gemini error carries a true status. */
static int http_from_type(const char *t)
{
    static const struct {
        const char *type;
        int code;
    } map[] = {
        {"INVALID_ARGUMENT", 400},
        {"FAILED_PRECONDITION", 400},
        {"UNAUTHENTICATED", 401},
        {"PERMISSION_DENIED", 403},
        {"NOT_FOUND", 404},
        {"RESOURCE_EXHAUSTED", 429},
        {"UNAVAILABLE", 503},
        {"DEADLINE_EXCEEDED", 504},
        {"INTERNAL", 500},
        {"invalid_request_error", 400},
        {"authentication_error", 401},
        {"permission_error", 403},
        {"not_found_error", 404},
        {"rate_limit_error", 429},
        {"overloaded_error", 503},
        {"api_error", 500},
        {"server_error", 500},
        {"ThrottlingException", 429},
        {"ValidationException", 400},
        {"ServiceUnavailableException", 503},
    };
    if (!t)
        return 0;
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(map[i].type, t) == 0)
            return map[i].code;
    return 0;
}

static bool is_rpc_status(const char *t)
{
    if (!t || !*t)
        return false;
    for (; *t; t++)
        if (!(isupper((unsigned char)*t) || *t == '_'))
            return false;
    return true;
}

/* {"error":{"code","message","status"}} for an IR error event. */
static json_object *error_to_gemini(const struct bb_ir_event *ev)
{
    const char *type = ev->error_type.p;
    int code = ev->error_status ? ev->error_status : http_from_type(type);
    if (!code)
        code = 500;
    json_object *e = json_object_new_object();
    bb_json_add(e, "code", json_object_new_int(code));
    bb_json_add(e, "message",
                ev->text.p ? bb_json_new_str(&ev->text) : json_object_new_string("error"));
    bb_json_add(e, "status",
                json_object_new_string(is_rpc_status(type) ? type : status_from_http(code)));
    json_object *o = json_object_new_object();
    bb_json_add(o, "error", e);
    return o;
}

/* ======================================================================================== */
/* Reading contents / parts (requests, responses and stream chunks)                         */
/* ======================================================================================== */

/* Tool calls seen so far in a request, to give a functionResponse without id its call's id. */
struct callref {
    struct bb_ir_str name, id;
    bool answered;
};

/* The reader: the shared context plus call bookkeeping (req NULL when reading an answer). */
struct rd {
    struct bb_rd r;
    const char *id_seed; /* synthesised call ids: call_<seed>_<n> or call_<n> */
    uint32_t n_calls;
    struct bb_vec calls; /* struct callref */
};

/* A string member by its camelCase name or its snake_case alias: absent → {NULL,0}; another
 * type → an error naming the camelCase member. */
static int rd_str(struct bb_rd *r, json_object *o, const char *camel, const char *snake,
                  struct bb_ir_str *out)
{
    json_object *v = jget(o, camel, snake);
    *out = (struct bb_ir_str){NULL, 0};
    if (!v)
        return 0;
    if (!bb_json_is(v, json_type_string))
        return bb_rd_expect(r, camel, "a string");
    return bb_rd_dup(r, v, out);
}

static struct bb_ir_str synth_call_id(struct rd *x)
{
    char buf[96];
    x->n_calls++;
    if (x->id_seed && *x->id_seed)
        snprintf(buf, sizeof buf, "call_%s_%" PRIu32, x->id_seed, x->n_calls);
    else
        snprintf(buf, sizeof buf, "call_%" PRIu32, x->n_calls);
    return bb_ir_strdup(x->r.a, buf, strlen(buf));
}

static int callref_add(struct rd *x, const struct bb_ir_block *b)
{
    struct callref *c = BB_VEC_PUSH(x->r.a, &x->calls, struct callref);
    if (!c)
        return -1;
    *c = (struct callref){b->name, b->id, false};
    return 0;
}

/* The id of the earliest unanswered call named `name` (else the latest of that name). */
static struct bb_ir_str callref_match(struct rd *x, const struct bb_ir_str *name)
{
    struct callref *c = x->calls.v;
    for (size_t i = 0; i < x->calls.n; i++)
        if (!c[i].answered && name->p && c[i].name.p && strcmp(c[i].name.p, name->p) == 0) {
            c[i].answered = true;
            return c[i].id;
        }
    for (size_t i = x->calls.n; i-- > 0;)
        if (name->p && c[i].name.p && strcmp(c[i].name.p, name->p) == 0)
            return c[i].id;
    return synth_call_id(x);
}

static void callref_answer(struct rd *x, const struct bb_ir_str *id)
{
    struct callref *c = x->calls.v;
    for (size_t i = 0; i < x->calls.n; i++)
        if (!c[i].answered && c[i].id.p && id->p && strcmp(c[i].id.p, id->p) == 0) {
            c[i].answered = true;
            return;
        }
}

/* inlineData / fileData → IMAGE or DOCUMENT (the path at the part). */
static int rd_media(struct rd *x, json_object *m, bool inline_data, struct bb_vec *bv)
{
    struct bb_rd *r = &x->r;
    const char *key = inline_data ? "inlineData" : "fileData";
    if (bb_rd_type(r, m, key, json_type_object) < 0)
        return -1;
    size_t mark = bb_rd_in(r, key);
    struct bb_ir_str mime, payload;
    int rc = rd_str(r, m, "mimeType", "mime_type", &mime) < 0 ||
                     rd_str(r, m, inline_data ? "data" : "fileUri", inline_data ? NULL : "file_uri",
                            &payload) < 0
                 ? -1
                 : 0;
    if (rc == 0 && !payload.p)
        rc = bb_rd_required(r, inline_data ? "data" : "fileUri");
    bb_rd_out(r, mark);
    if (rc < 0)
        return -1;
    struct bb_ir_block *b = BB_VEC_PUSH(r->a, bv, struct bb_ir_block);
    if (!b)
        return bb_rd_oom(r);
    const char *guess = mime.p ? mime.p : (inline_data ? NULL : mime_from_url(payload.p));
    b->type = (is_image_mime(guess) || (!guess && inline_data)) ? BB_IR_IMAGE : BB_IR_DOCUMENT;
    b->media_type = mime;
    if (inline_data)
        b->data = payload;
    else
        b->url = payload;
    return 0;
}

static int rd_function_call(struct rd *x, json_object *fc, struct bb_vec *bv)
{
    struct bb_rd *r = &x->r;
    if (bb_rd_type(r, fc, "functionCall", json_type_object) < 0)
        return -1;
    struct bb_ir_block *b = BB_VEC_PUSH(r->a, bv, struct bb_ir_block);
    if (!b)
        return bb_rd_oom(r);
    b->type = BB_IR_TOOL_USE;
    size_t mark = bb_rd_in(r, "functionCall");
    json_object *args = jget(fc, "args", NULL);
    int rc =
        rd_str(r, fc, "name", NULL, &b->name) < 0 || rd_str(r, fc, "id", NULL, &b->id) < 0 ? -1 : 0;
    if (rc == 0 && args)
        rc = bb_rd_type(r, args, "args", json_type_object);
    bb_rd_out(r, mark);
    if (rc < 0)
        return -1;
    if (!b->name.p)
        b->name = bb_ir_strdup(r->a, "", 0);
    b->input_json = args ? bb_json_text(r->a, args) : bb_ir_strdup(r->a, "{}", 2);
    if (!b->id.p)
        b->id = synth_call_id(x);
    if (!b->input_json.p || !b->id.p || !b->name.p)
        return bb_rd_oom(r);
    if (r->req && callref_add(x, b) < 0)
        return bb_rd_oom(r);
    return 0;
}

/* functionResponse.response → flat text: {"result"|"output": "s"} → s; {"error": x} → x with
 * is_error; any other object → its JSON text (so structured results survive). */
static int rd_function_response(struct rd *x, json_object *fr, struct bb_vec *bv)
{
    struct bb_rd *r = &x->r;
    if (bb_rd_type(r, fr, "functionResponse", json_type_object) < 0)
        return -1;
    struct bb_ir_block *b = BB_VEC_PUSH(r->a, bv, struct bb_ir_block);
    if (!b)
        return bb_rd_oom(r);
    b->type = BB_IR_TOOL_RESULT;
    size_t mark = bb_rd_in(r, "functionResponse");
    json_object *resp = jget(fr, "response", NULL);
    int rc =
        rd_str(r, fr, "name", NULL, &b->name) < 0 || rd_str(r, fr, "id", NULL, &b->id) < 0 ? -1 : 0;
    if (rc == 0 && resp)
        rc = bb_rd_type(r, resp, "response", json_type_object);
    bb_rd_out(r, mark);
    if (rc < 0)
        return -1;
    if (jget(fr, "parts", NULL) && bb_rd_unsupported(r, "", "functionResponse.parts") < 0)
        return -1;
    json_object *only = NULL;
    const char *only_key = NULL;
    if (resp && json_object_object_length(resp) == 1) {
        json_object_object_foreach(resp, k, v)
        {
            only_key = k;
            only = v;
        }
    }
    if (only_key && strcmp(only_key, "error") == 0) {
        b->is_error = true;
        b->text =
            bb_json_is(only, json_type_string) ? bb_json_dup(r->a, only) : bb_json_text(r->a, only);
    } else if (only_key && (strcmp(only_key, "result") == 0 || strcmp(only_key, "output") == 0) &&
               bb_json_is(only, json_type_string)) {
        b->text = bb_json_dup(r->a, only);
    } else {
        b->text = resp ? bb_json_text(r->a, resp) : bb_ir_strdup(r->a, "", 0);
    }
    if (!b->text.p)
        return bb_rd_oom(r);
    if (r->req) {
        if (b->id.p)
            callref_answer(x, &b->id);
        else
            b->id = callref_match(x, &b->name);
    } else if (!b->id.p) {
        b->id = synth_call_id(x);
    }
    return b->id.p ? 0 : bb_rd_oom(r);
}

static struct bb_ir_block *last_unsigned_thinking(const struct bb_vec *bv)
{
    struct bb_ir_block *v = bv->v;
    return bv->n && v[bv->n - 1].type == BB_IR_THINKING && !v[bv->n - 1].signature.p ? &v[bv->n - 1]
                                                                                     : NULL;
}

/* One part (the path at it) → zero or more blocks (see the header comment for where
 * signatures go). */
static int rd_part(struct rd *x, json_object *part, struct bb_vec *bv)
{
    static const char *const known[] = {"text",
                                        "thought",
                                        "thoughtSignature",
                                        "thought_signature",
                                        "inlineData",
                                        "inline_data",
                                        "fileData",
                                        "file_data",
                                        "functionCall",
                                        "function_call",
                                        "functionResponse",
                                        "function_response",
                                        NULL};
    struct bb_rd *r = &x->r;
    if (bb_rd_type(r, part, NULL, json_type_object) < 0)
        return -1;
    json_object_object_foreach(part, key, val)
    {
        (void)val;
        if (!str_in(key, known) && bb_rd_unsupported(r, "", key) < 0)
            return -1;
    }
    struct bb_ir_str text, sig;
    bool thought = false;
    if (rd_str(r, part, "text", NULL, &text) < 0 ||
        rd_str(r, part, "thoughtSignature", "thought_signature", &sig) < 0 ||
        bb_rd_bool(r, part, "thought", NULL, &thought) < 0)
        return -1;
    json_object *fc = jget(part, "functionCall", "function_call");
    struct bb_ir_block *prev = last_unsigned_thinking(bv);

    if (thought) {
        if (!text.len && sig.p && prev) {
            prev->signature = sig;
            return 0;
        }
        struct bb_ir_block *b = BB_VEC_PUSH(r->a, bv, struct bb_ir_block);
        if (!b)
            return bb_rd_oom(r);
        b->type = BB_IR_THINKING;
        b->text = text.p ? text : bb_ir_strdup(r->a, "", 0);
        b->signature = sig;
        return 0;
    }
    if (sig.p) {
        if (!fc && prev) {
            prev->signature = sig;
        } else {
            struct bb_ir_block *b = BB_VEC_PUSH(r->a, bv, struct bb_ir_block);
            if (!b)
                return bb_rd_oom(r);
            b->type = BB_IR_THINKING;
            b->text = bb_ir_strdup(r->a, "", 0);
            b->signature = sig;
        }
    }
    if (text.len) {
        struct bb_ir_block *b = BB_VEC_PUSH(r->a, bv, struct bb_ir_block);
        if (!b)
            return bb_rd_oom(r);
        b->type = BB_IR_TEXT;
        b->text = text;
    }
    json_object *m;
    if ((m = jget(part, "inlineData", "inline_data")) && rd_media(x, m, true, bv) < 0)
        return -1;
    if ((m = jget(part, "fileData", "file_data")) && rd_media(x, m, false, bv) < 0)
        return -1;
    if (fc && rd_function_call(x, fc, bv) < 0)
        return -1;
    if ((m = jget(part, "functionResponse", "function_response")) &&
        rd_function_response(x, m, bv) < 0)
        return -1;
    return 0;
}

/* parts[] of the object o (the path at o). */
static int rd_parts(struct rd *x, json_object *o, struct bb_vec *bv)
{
    struct bb_rd *r = &x->r;
    json_object *parts = jget(o, "parts", NULL);
    if (!parts)
        return bb_rd_required(r, "parts");
    if (bb_rd_type(r, parts, "parts", json_type_array) < 0)
        return -1;
    struct bb_rd_iter it = bb_rd_iter(r, parts, "parts");
    json_object *el;
    while (bb_rd_next(&it, &el))
        if (rd_part(x, el, bv) < 0)
            return -1;
    return 0;
}

/* ======================================================================================== */
/* Ingress: read_request                                                                    */
/* ======================================================================================== */

/* One content (the path at it); its role in *role. */
static int rd_content(struct rd *x, json_object *c, enum bb_ir_role *role, struct bb_vec *bv)
{
    struct bb_rd *r = &x->r;
    if (bb_rd_type(r, c, NULL, json_type_object) < 0)
        return -1;
    json_object *rv = jget(c, "role", NULL);
    const char *s = bb_json_str(rv);
    *role = BB_IR_USER;
    if (s && strcmp(s, "model") == 0)
        *role = BB_IR_ASSISTANT;
    else if (rv && (!s || (strcmp(s, "user") != 0 && strcmp(s, "function") != 0 &&
                           strcmp(s, "tool") != 0)))
        return bb_rd_expect(r, "role", "\"user\" or \"model\"");
    return jget(c, "parts", NULL) ? 0 : bb_rd_required(r, "parts");
}

static int rd_contents(struct rd *x, json_object *contents, struct bb_ir_request *out)
{
    struct bb_rd *r = &x->r;
    if (!contents)
        return bb_rd_required(r, "contents");
    if (bb_rd_type(r, contents, "contents", json_type_array) < 0)
        return -1;
    size_t n = json_object_array_length(contents);
    if (!n)
        return bb_rd_fail(r, "contents", "must not be empty");
    struct bb_vec msgs = {0}, bv = {0};
    enum bb_ir_role cur = BB_IR_USER;
    size_t mark = bb_rd_in(r, "contents");
    for (size_t i = 0; i < n; i++) {
        json_object *c = json_object_array_get_idx(contents, i);
        enum bb_ir_role rl;
        size_t m = bb_rd_at(r, i);
        int rc = rd_content(x, c, &rl, &bv);
        /* Consecutive contents of one role merge into one message (Gemini allows the split,
         * the alternating protocols do not). */
        if (rc == 0 && bv.n && rl != cur) {
            struct bb_ir_message *im = BB_VEC_PUSH(r->a, &msgs, struct bb_ir_message);
            if (!im) {
                rc = bb_rd_oom(r);
            } else {
                im->role = cur;
                im->blocks = bv.v;
                im->n_blocks = bv.n;
                memset(&bv, 0, sizeof bv);
            }
        }
        cur = rl;
        if (rc == 0)
            rc = rd_parts(x, c, &bv);
        bb_rd_out(r, m);
        if (rc < 0)
            return -1;
    }
    bb_rd_out(r, mark);
    if (bv.n) {
        struct bb_ir_message *im = BB_VEC_PUSH(r->a, &msgs, struct bb_ir_message);
        if (!im)
            return bb_rd_oom(r);
        im->role = cur;
        im->blocks = bv.v;
        im->n_blocks = bv.n;
    }
    out->messages = msgs.v;
    out->n_messages = msgs.n;
    return 0;
}

static int rd_system(struct rd *x, json_object *si, struct bb_ir_request *out)
{
    struct bb_rd *r = &x->r;
    struct bb_vec bv = {0};
    if (bb_json_is(si, json_type_string)) {
        struct bb_ir_block *b = BB_VEC_PUSH(r->a, &bv, struct bb_ir_block);
        if (!b)
            return bb_rd_oom(r);
        b->type = BB_IR_TEXT;
        if (bb_rd_dup(r, si, &b->text) < 0)
            return -1;
    } else if (bb_json_is(si, json_type_object)) {
        size_t mark = bb_rd_in(r, "systemInstruction");
        int rc = rd_parts(x, si, &bv);
        for (size_t i = 0; rc == 0 && i < bv.n; i++)
            if (((struct bb_ir_block *)bv.v)[i].type != BB_IR_TEXT) {
                bb_rd_in(r, "parts");
                bb_rd_at(r, i);
                rc = bb_rd_fail(r, NULL, "only text parts are supported");
            }
        bb_rd_out(r, mark);
        if (rc < 0)
            return -1;
    } else {
        return bb_rd_expect(r, "systemInstruction", "an object");
    }
    out->system = bv.v;
    out->n_system = bv.n;
    return 0;
}

/* One function declaration (the path at it). */
static int rd_declaration(struct bb_rd *r, json_object *d, struct bb_vec *tools)
{
    if (bb_rd_type(r, d, NULL, json_type_object) < 0)
        return -1;
    struct bb_ir_tool *tool = BB_VEC_PUSH(r->a, tools, struct bb_ir_tool);
    if (!tool)
        return bb_rd_oom(r);
    if (rd_str(r, d, "name", NULL, &tool->name) < 0 ||
        rd_str(r, d, "description", NULL, &tool->description) < 0)
        return -1;
    if (!tool->name.len)
        return bb_rd_required(r, "name");
    json_object *params = jget(d, "parameters", NULL);
    json_object *pjs = jget(d, "parametersJsonSchema", "parameters_json_schema");
    if (pjs) {
        if (bb_rd_type(r, pjs, "parametersJsonSchema", json_type_object) < 0 ||
            bb_rd_text(r, pjs, &tool->parameters_json) < 0)
            return -1;
    } else if (params) {
        if (bb_rd_type(r, params, "parameters", json_type_object) < 0)
            return -1;
        json_object *js = schema_to_json(params);
        tool->parameters_json = bb_json_text(r->a, js);
        json_object_put(js);
        if (!tool->parameters_json.p)
            return bb_rd_oom(r);
    }
    if ((jget(d, "response", NULL) || jget(d, "responseJsonSchema", "response_json_schema")) &&
        bb_rd_unsupported(r, "", "functionDeclarations.response") < 0)
        return -1;
    if (jget(d, "behavior", NULL) && bb_rd_unsupported(r, "", "functionDeclarations.behavior") < 0)
        return -1;
    return 0;
}

/* One tools[] entry (the path at it): its functionDeclarations; other tools are unsupported. */
static int rd_tool(struct bb_rd *r, json_object *t, struct bb_vec *tools)
{
    if (bb_rd_type(r, t, NULL, json_type_object) < 0)
        return -1;
    json_object_object_foreach(t, key, val)
    {
        (void)val;
        if (strcmp(key, "functionDeclarations") && strcmp(key, "function_declarations") &&
            bb_rd_unsupported(r, "tools.", key) < 0)
            return -1;
    }
    json_object *fd = jget(t, "functionDeclarations", "function_declarations");
    if (!fd)
        return 0;
    if (bb_rd_type(r, fd, "functionDeclarations", json_type_array) < 0)
        return -1;
    struct bb_rd_iter it = bb_rd_iter(r, fd, "functionDeclarations");
    json_object *el;
    while (bb_rd_next(&it, &el))
        if (rd_declaration(r, el, tools) < 0)
            return -1;
    return 0;
}

/* functionCallingConfig (the path at it). */
static int rd_calling_config(struct bb_rd *r, json_object *fcc, struct bb_ir_request *out)
{
    struct bb_ir_str mode;
    if (rd_str(r, fcc, "mode", NULL, &mode) < 0)
        return -1;
    json_object *names = jget(fcc, "allowedFunctionNames", "allowed_function_names");
    if (names && bb_rd_type(r, names, "allowedFunctionNames", json_type_array) < 0)
        return -1;
    size_t n_names = names ? json_object_array_length(names) : 0;
    for (size_t i = 0; i < n_names; i++) {
        if (bb_json_is(json_object_array_get_idx(names, i), json_type_string))
            continue;
        bb_rd_in(r, "allowedFunctionNames");
        bb_rd_at(r, i);
        return bb_rd_expect(r, NULL, "a string");
    }
    const char *no_subset = "toolConfig.functionCallingConfig.allowedFunctionNames";
    if (!mode.p || str_eq(&mode, "MODE_UNSPECIFIED") || str_eq(&mode, "AUTO") ||
        str_eq(&mode, "VALIDATED")) {
        out->tool_choice = mode.p ? BB_IR_TC_AUTO : BB_IR_TC_UNSET;
        if (str_eq(&mode, "VALIDATED") &&
            bb_rd_unsupported(r, "", "toolConfig.functionCallingConfig.mode=VALIDATED") < 0)
            return -1;
        if (n_names && bb_rd_unsupported(r, "", no_subset) < 0)
            return -1;
    } else if (str_eq(&mode, "NONE")) {
        out->tool_choice = BB_IR_TC_NONE;
    } else if (str_eq(&mode, "ANY")) {
        if (n_names == 1) {
            out->tool_choice = BB_IR_TC_TOOL;
            return bb_rd_dup(r, json_object_array_get_idx(names, 0), &out->tool_choice_name);
        }
        out->tool_choice = BB_IR_TC_ANY;
        if (n_names && bb_rd_unsupported(r, "", no_subset) < 0)
            return -1;
    } else {
        return bb_rd_expect(r, "mode", "AUTO, ANY, NONE or VALIDATED");
    }
    return 0;
}

static int rd_tool_config(struct bb_rd *r, json_object *tc, struct bb_ir_request *out)
{
    if (bb_rd_type(r, tc, "toolConfig", json_type_object) < 0)
        return -1;
    json_object_object_foreach(tc, key, val)
    {
        (void)val;
        if (strcmp(key, "functionCallingConfig") && strcmp(key, "function_calling_config") &&
            bb_rd_unsupported(r, "toolConfig.", key) < 0)
            return -1;
    }
    json_object *fcc = jget(tc, "functionCallingConfig", "function_calling_config");
    if (!fcc)
        return 0;
    size_t mark = bb_rd_in(r, "toolConfig");
    int rc = bb_rd_type(r, fcc, "functionCallingConfig", json_type_object);
    if (rc == 0) {
        bb_rd_in(r, "functionCallingConfig");
        rc = rd_calling_config(r, fcc, out);
    }
    bb_rd_out(r, mark);
    return rc;
}

/* thinkingConfig (the path at generationConfig). */
static int rd_thinking(struct bb_rd *r, json_object *tc, struct bb_ir_request *out)
{
    if (bb_rd_type(r, tc, "thinkingConfig", json_type_object) < 0)
        return -1;
    size_t mark = bb_rd_in(r, "thinkingConfig");
    json_object *inc = jget(tc, "includeThoughts", "include_thoughts");
    json_object *budget = jget(tc, "thinkingBudget", "thinking_budget");
    struct bb_ir_str level;
    int64_t b = -1;
    int rc = 0;
    if (inc)
        rc = bb_rd_type(r, inc, "includeThoughts", json_type_boolean);
    if (rc == 0 && budget)
        rc = bb_rd_int_value(r, budget, "thinkingBudget", INT64_MIN, INT64_MAX, &b);
    if (rc == 0)
        rc = rd_str(r, tc, "thinkingLevel", "thinking_level", &level);
    bb_rd_out(r, mark);
    if (rc < 0)
        return -1;
    if (budget && b == 0) {
        out->reasoning = false; /* 0 turns thinking off */
        return 0;
    }
    out->reasoning = (inc && json_object_get_boolean(inc)) || (budget && b != 0) || level.p;
    if (b > 0)
        out->reasoning_budget = b > UINT32_MAX ? UINT32_MAX : (uint32_t)b;
    if (str_eq(&level, "MINIMAL"))
        out->reasoning_effort = BB_IR_EFFORT_MINIMAL;
    else if (str_eq(&level, "LOW"))
        out->reasoning_effort = BB_IR_EFFORT_LOW;
    else if (str_eq(&level, "MEDIUM"))
        out->reasoning_effort = BB_IR_EFFORT_MEDIUM;
    else if (str_eq(&level, "HIGH"))
        out->reasoning_effort = BB_IR_EFFORT_HIGH;
    return 0;
}

/* generationConfig: the scalars from the table (camelCase names and their snake_case
 * aliases), then the output format and thinking. */
static int rd_generation_config(struct bb_rd *r, json_object *gc, struct bb_ir_request *out)
{
    static const char *const known[] = {
        "responseMimeType", "response_mime_type", "responseSchema",
        "response_schema",  "responseJsonSchema", "response_json_schema",
        "thinkingConfig",   "thinking_config",    NULL};
    if (bb_rd_type(r, gc, "generationConfig", json_type_object) < 0)
        return -1;
    json_object_object_foreach(gc, key, val)
    {
        (void)val;
        if (!str_in(key, known) &&
            !bb_params_known_in(param_rows, N_PARAMS, "generationConfig", key) &&
            bb_rd_unsupported(r, "generationConfig.", key) < 0)
            return -1;
    }
    /* the table names generationConfig.*: a snake_case generation_config is read as it */
    json_object *wrap = json_object_new_object();
    if (!wrap)
        return bb_rd_oom(r);
    json_object_object_add(wrap, "generationConfig", json_object_get(gc));
    int rc = bb_params_read(r, wrap, param_rows, N_PARAMS);
    json_object_put(wrap);
    if (rc < 0)
        return -1;
    size_t mark = bb_rd_in(r, "generationConfig");
    struct bb_ir_str mime;
    json_object *schema = jget(gc, "responseSchema", "response_schema");
    json_object *jschema = jget(gc, "responseJsonSchema", "response_json_schema");
    rc = rd_str(r, gc, "responseMimeType", "response_mime_type", &mime);
    if (rc == 0 && schema)
        rc = bb_rd_type(r, schema, "responseSchema", json_type_object);
    if (rc == 0 && jschema)
        rc = bb_rd_type(r, jschema, "responseJsonSchema", json_type_object);
    json_object *tc = jget(gc, "thinkingConfig", "thinking_config");
    if (rc == 0 && tc)
        rc = rd_thinking(r, tc, out);
    bb_rd_out(r, mark);
    if (rc < 0)
        return -1;
    if (jschema) {
        out->format = BB_IR_FMT_JSON_SCHEMA;
        return bb_rd_text(r, jschema, &out->format_schema_json);
    }
    if (schema) {
        out->format = BB_IR_FMT_JSON_SCHEMA;
        json_object *js = schema_to_json(schema);
        out->format_schema_json = bb_json_text(r->a, js);
        json_object_put(js);
        return out->format_schema_json.p ? 0 : bb_rd_oom(r);
    }
    if (str_eq(&mime, "application/json"))
        out->format = BB_IR_FMT_JSON_OBJECT;
    else if (str_eq(&mime, "text/plain"))
        out->format = BB_IR_FMT_TEXT;
    else if (mime.p)
        return bb_rd_unsupported(r, "", "generationConfig.responseMimeType");
    return 0;
}

static int gemini_read_request(struct bb_arena *a, const char *body, size_t len,
                               const char *model_from_path, struct bb_ir_request *out,
                               struct bb_err *err)
{
    static const char *const known[] = {
        "contents",    "systemInstruction", "system_instruction", "tools", "toolConfig",
        "tool_config", "generationConfig",  "generation_config",  "model", NULL};
    memset(out, 0, sizeof *out);
    json_object *root = bb_json_parse(body, len, "body", err);
    if (!root)
        return -1;
    struct rd x;
    memset(&x, 0, sizeof x);
    bb_rd_init(&x.r, a, out, err);
    struct bb_rd *r = &x.r;
    int rc = -1;
    if (!bb_json_is(root, json_type_object)) {
        bb_err_set(err, "body: expected a JSON object");
        goto done;
    }
    json_object_object_foreach(root, key, val)
    {
        (void)val;
        if (!str_in(key, known) && bb_rd_unsupported(r, "", key) < 0)
            goto done;
    }
    json_object *v = jget(root, "model", NULL);
    if (model_from_path) {
        if (has_prefix(model_from_path, "models/"))
            model_from_path += strlen("models/");
        out->model = bb_ir_strdup(a, model_from_path, strlen(model_from_path));
    } else if (bb_json_is(v, json_type_string)) {
        const char *m = json_object_get_string(v);
        if (has_prefix(m, "models/"))
            m += strlen("models/");
        out->model = bb_ir_strdup(a, m, strlen(m));
    } else {
        bb_rd_fail(r, "model", "required (in the URL: /v1beta/models/{model}:generateContent)");
        goto done;
    }
    if (!out->model.p) {
        bb_rd_oom(r);
        goto done;
    }
    if ((v = jget(root, "systemInstruction", "system_instruction")) && rd_system(&x, v, out) < 0)
        goto done;
    if (rd_contents(&x, jget(root, "contents", NULL), out) < 0)
        goto done;
    if ((v = jget(root, "tools", NULL)) && bb_rd_tools(r, v, rd_tool) < 0)
        goto done;
    if ((v = jget(root, "toolConfig", "tool_config")) && rd_tool_config(r, v, out) < 0)
        goto done;
    if ((v = jget(root, "generationConfig", "generation_config")) &&
        rd_generation_config(r, v, out) < 0)
        goto done;
    rc = 0;
done:
    json_object_put(root);
    return rc;
}

/* ======================================================================================== */
/* Writing parts (egress requests, ingress responses)                                       */
/* ======================================================================================== */

struct wr {
    struct bb_arena *a;
    const struct bb_ir_request *ir;  /* for tool-result name look-ups; NULL for responses */
    const struct bb_egress_ctx *ctx; /* the request hop (drops recorded); NULL for answers */
};

static void wr_drop(struct wr *w, const char *field)
{
    bb_proto_drop(w->a, w->ctx, field);
}

/* Name of the call that a TOOL_RESULT answers: the nearest earlier TOOL_USE with its id. */
static struct bb_ir_str tool_name_for(struct wr *w, const struct bb_ir_block *res, size_t mi)
{
    if (res->name.p && res->name.len)
        return res->name;
    if (w->ir && res->id.p) {
        for (size_t i = mi + 1; i-- > 0;) {
            const struct bb_ir_message *m = &w->ir->messages[i];
            for (size_t j = m->n_blocks; j-- > 0;) {
                const struct bb_ir_block *b = &m->blocks[j];
                if (b->type == BB_IR_TOOL_USE && b->id.p && strcmp(b->id.p, res->id.p) == 0)
                    return b->name;
            }
        }
    }
    /* Gemini requires a name; the id is the best label left. */
    return res->id.p ? res->id : (struct bb_ir_str){"unknown", 7};
}

static json_object *media_part(struct wr *w, const struct bb_ir_block *b)
{
    const char *mime = b->media_type.p;
    if (b->data.p) {
        json_object *in = json_object_new_object();
        bb_json_add(in, "mimeType",
                    json_object_new_string(
                        mime ? mime : (b->type == BB_IR_IMAGE ? "image/png" : "application/pdf")));
        bb_json_add(in, "data", bb_json_new_str(&b->data));
        json_object *p = json_object_new_object();
        bb_json_add(p, "inlineData", in);
        return p;
    }
    if (!b->url.p)
        return NULL;
    if (strncasecmp(b->url.p, "data:", 5) == 0) {
        /* data:<mime>;base64,<data> → inlineData */
        struct bb_ir_str mt, data;
        if (bb_media_split_data_url(b->url.p, b->url.len, &mt, &data)) {
            json_object *in = json_object_new_object();
            bb_json_add(in, "mimeType", bb_json_new_str(&mt));
            bb_json_add(in, "data", bb_json_new_str(&data));
            json_object *p = json_object_new_object();
            bb_json_add(p, "inlineData", in);
            return p;
        }
        wr_drop(w, b->type == BB_IR_IMAGE ? "images" : "documents");
        return NULL;
    }
    /* fileData wants a File API / gs:// URI; other URLs are still passed (see the doc). */
    if (!mime)
        mime = mime_from_url(b->url.p);
    if (!mime)
        mime = b->type == BB_IR_IMAGE ? "image/jpeg" : "application/pdf";
    json_object *fd = json_object_new_object();
    bb_json_add(fd, "mimeType", json_object_new_string(mime));
    bb_json_add(fd, "fileUri", bb_json_new_str(&b->url));
    json_object *p = json_object_new_object();
    bb_json_add(p, "fileData", fd);
    return p;
}

/* functionCall.args: the IR's JSON text back as an object. */
static json_object *args_object(struct wr *w, const struct bb_ir_str *s)
{
    json_object *o = bb_json_raw_as(s, json_type_object);
    if (!o && bb_ir_has(s))
        wr_drop(w, "tool_input");
    return o ? o : json_object_new_object();
}

static json_object *function_response_part(struct wr *w, const struct bb_ir_block *b, size_t mi,
                                           json_object *parts)
{
    /* Flat text, or the text blocks of nested content; images follow as sibling parts. */
    struct bb_ir_str text = b->text;
    char *joined = NULL;
    if (!text.p && b->n_content) {
        size_t n = 0;
        for (size_t i = 0; i < b->n_content; i++)
            if (b->content[i].type == BB_IR_TEXT && b->content[i].text.p)
                n += b->content[i].text.len + 1;
        joined = bb_arena_alloc(w->a, n + 1);
        if (joined) {
            size_t off = 0;
            for (size_t i = 0; i < b->n_content; i++) {
                const struct bb_ir_block *c = &b->content[i];
                if (c->type != BB_IR_TEXT || !c->text.p)
                    continue;
                if (off)
                    joined[off++] = '\n';
                memcpy(joined + off, c->text.p, c->text.len);
                off += c->text.len;
            }
            joined[off] = '\0';
            text = (struct bb_ir_str){joined, off};
        }
    }
    json_object *val = NULL;
    if (text.p && text.len && text.p[strspn(text.p, " \t\r\n")] == '{')
        val = bb_json_raw_as(&text, json_type_object);
    json_object *resp;
    if (b->is_error) {
        resp = json_object_new_object();
        bb_json_add(resp, "error", val ? val : bb_json_new_str(&text));
    } else if (val) {
        resp = val;
    } else {
        resp = json_object_new_object();
        bb_json_add(resp, "result", bb_json_new_str(&text));
    }
    json_object *fr = json_object_new_object();
    struct bb_ir_str name = tool_name_for(w, b, mi);
    if (b->id.p)
        bb_json_add(fr, "id", bb_json_new_str(&b->id));
    bb_json_add(fr, "name", bb_json_new_str(&name));
    bb_json_add(fr, "response", resp);
    json_object *p = json_object_new_object();
    bb_json_add(p, "functionResponse", fr);
    json_object_array_add(parts, p);
    for (size_t i = 0; i < b->n_content; i++) {
        const struct bb_ir_block *c = &b->content[i];
        if (c->type == BB_IR_IMAGE || c->type == BB_IR_DOCUMENT) {
            json_object *mp = media_part(w, c);
            if (mp)
                json_object_array_add(parts, mp);
        }
    }
    return p;
}

/* IR blocks → Gemini parts appended to `parts`. mi = message index (look-ups), or SIZE_MAX. */
static void write_parts(struct wr *w, const struct bb_ir_block *blocks, size_t n, size_t mi,
                        json_object *parts)
{
    const struct bb_ir_str *carry = NULL; /* signature for the next part */
    for (size_t i = 0; i < n; i++) {
        const struct bb_ir_block *b = &blocks[i];
        json_object *p = NULL;
        switch (b->type) {
        case BB_IR_THINKING: {
            const struct bb_ir_block *next = i + 1 < n ? &blocks[i + 1] : NULL;
            if (!b->text.len && b->signature.p && next && next->type != BB_IR_THINKING &&
                next->type != BB_IR_REDACTED_THINKING) {
                carry = &b->signature; /* it belongs on the part that follows */
                continue;
            }
            if (!b->text.len && !b->signature.p)
                continue;
            p = json_object_new_object();
            bb_json_add(p, "text", bb_json_new_str(&b->text));
            if (b->text.len) /* a bare signature is an empty text part, as Gemini sends it */
                bb_json_add(p, "thought", json_object_new_boolean(1));
            if (b->signature.p)
                bb_json_add(p, "thoughtSignature", bb_json_new_str(&b->signature));
            json_object_array_add(parts, p);
            continue;
        }
        case BB_IR_REDACTED_THINKING:
            wr_drop(w, "redacted_thinking");
            continue;
        case BB_IR_TEXT:
            if (b->citations_json.p)
                wr_drop(w, "citations");
            if (!b->text.len && !carry)
                continue;
            p = json_object_new_object();
            bb_json_add(p, "text", bb_json_new_str(&b->text));
            break;
        case BB_IR_IMAGE:
        case BB_IR_DOCUMENT:
            p = media_part(w, b);
            break;
        case BB_IR_TOOL_USE: {
            json_object *fc = json_object_new_object();
            if (b->id.p)
                bb_json_add(fc, "id", bb_json_new_str(&b->id));
            bb_json_add(fc, "name", bb_json_new_str(&b->name));
            bb_json_add(fc, "args", args_object(w, &b->input_json));
            p = json_object_new_object();
            bb_json_add(p, "functionCall", fc);
            break;
        }
        case BB_IR_TOOL_RESULT:
            p = function_response_part(w, b, mi, parts);
            if (carry)
                bb_json_add(p, "thoughtSignature", bb_json_new_str(carry));
            carry = NULL;
            continue;
        }
        if (b->cache_control)
            wr_drop(w, "cache_control");
        if (!p)
            continue;
        if (carry)
            bb_json_add(p, "thoughtSignature", bb_json_new_str(carry));
        carry = NULL;
        json_object_array_add(parts, p);
    }
}

/* ======================================================================================== */
/* Egress: write_request                                                                    */
/* ======================================================================================== */

static uint32_t effort_budget(enum bb_ir_effort e)
{
    switch (e) {
    case BB_IR_EFFORT_MINIMAL:
        return 512;
    case BB_IR_EFFORT_LOW:
        return 2048;
    case BB_IR_EFFORT_MEDIUM:
        return 8192;
    case BB_IR_EFFORT_HIGH:
        return 24576;
    default:
        return 0;
    }
}

/* "/v1beta/models/<m>:<method>"; a model naming its own collection (tunedModels/x) keeps it. */
static int write_path(char *dst, size_t cap, const char *model, bool stream, struct bb_err *err)
{
    char enc[600];
    size_t o = 0;
    if (has_prefix(model, "models/"))
        model += strlen("models/");
    bool has_collection = strchr(model, '/') != NULL;
    for (const char *c = model; *c; c++) {
        unsigned char ch = (unsigned char)*c;
        if (o + 4 >= sizeof enc)
            return bb_err_set(err, "lane upstream_model: too long");
        if (isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~' ||
            (ch == '/' && has_collection))
            enc[o++] = (char)ch;
        else
            o += (size_t)snprintf(enc + o, 4, "%%%02X", ch);
    }
    enc[o] = '\0';
    int n = snprintf(dst, cap, "/v1beta/%s%s:%s", has_collection ? "" : "models/", enc,
                     stream ? "streamGenerateContent?alt=sse" : "generateContent");
    if (n < 0 || (size_t)n >= cap)
        return bb_err_set(err, "lane upstream_model: too long for a request path");
    return 0;
}

static json_object *build_tools(struct wr *w, const struct bb_ir_request *ir)
{
    json_object *decls = json_object_new_array();
    for (size_t i = 0; i < ir->n_tools; i++) {
        const struct bb_ir_tool *t = &ir->tools[i];
        json_object *d = json_object_new_object();
        bb_json_add(d, "name", bb_json_new_str(&t->name));
        if (t->description.p)
            bb_json_add(d, "description", bb_json_new_str(&t->description));
        if (t->parameters_json.p) {
            json_object *s = bb_json_raw(&t->parameters_json);
            json_object *g = schema_to_gemini(s);
            json_object_put(s);
            /* No properties = no parameters (Gemini rejects an empty OBJECT). */
            if (g && jget(g, "properties", NULL))
                bb_json_add(d, "parameters", g);
            else
                json_object_put(g);
        }
        if (t->strict)
            wr_drop(w, "strict");
        json_object_array_add(decls, d);
    }
    json_object *tools = json_object_new_array();
    if (json_object_array_length(decls)) {
        json_object *tool = json_object_new_object();
        bb_json_add(tool, "functionDeclarations", decls);
        json_object_array_add(tools, tool);
    } else {
        json_object_put(decls);
    }
    /* a web search: Gemini's Google Search grounding */
    for (size_t i = 0; i < ir->n_hosted; i++) {
        if (!ir->hosted[i].kind.p || strcmp(ir->hosted[i].kind.p, "web_search") != 0)
            continue;
        json_object *g = json_object_new_object();
        bb_json_add(g, "googleSearch", json_object_new_object());
        json_object_array_add(tools, g);
        break;
    }
    bb_proto_drop_hosted(w->a, w->ctx, ir, "web_search");
    return tools;
}

/* Gemini's seed is an int32; only candidate 0 travels back through the IR, so more than one
 * candidate is not asked for. */
static bool gemini_scalar(void *arg, const struct bb_param *p, struct bb_param_value *v)
{
    struct wr *w = arg;
    if (p->field == BB_IRP_SEED && (v->i < INT32_MIN || v->i > INT32_MAX)) {
        wr_drop(w, "seed");
        return false;
    }
    if (p->field == BB_IRP_N && v->i > 1) {
        wr_drop(w, "n");
        return false;
    }
    return true;
}

static json_object *build_generation_config(struct wr *w, const struct bb_ir_request *ir,
                                            const struct bb_egress_ctx *ctx)
{
    json_object *gc = json_object_new_object(), *wrap = json_object_new_object();
    json_object_object_add(wrap, "generationConfig", json_object_get(gc));
    bb_params_write(wrap, param_rows, N_PARAMS, ir, w->a, ctx, gemini_scalar, w);
    json_object_put(wrap);
    switch (ir->format) {
    case BB_IR_FMT_TEXT:
        bb_json_add(gc, "responseMimeType", json_object_new_string("text/plain"));
        break;
    case BB_IR_FMT_JSON_OBJECT:
        bb_json_add(gc, "responseMimeType", json_object_new_string("application/json"));
        break;
    case BB_IR_FMT_JSON_SCHEMA: {
        bb_json_add(gc, "responseMimeType", json_object_new_string("application/json"));
        json_object *s = bb_json_raw(&ir->format_schema_json);
        json_object *g = schema_to_gemini(s);
        json_object_put(s);
        if (g)
            bb_json_add(gc, "responseSchema", g);
        else
            wr_drop(w, "response_format");
        break;
    }
    default:
        break;
    }
    if (ir->reasoning) {
        if (ctx->lane && ctx->lane->reasoning) {
            json_object *tc = json_object_new_object();
            uint32_t budget =
                ir->reasoning_budget ? ir->reasoning_budget : effort_budget(ir->reasoning_effort);
            if (budget)
                bb_json_add(tc, "thinkingBudget", json_object_new_int64(budget));
            bb_json_add(tc, "includeThoughts", json_object_new_boolean(1));
            bb_json_add(gc, "thinkingConfig", tc);
        } else {
            wr_drop(w, "reasoning");
        }
    }
    if (!json_object_object_length(gc)) {
        json_object_put(gc);
        return NULL;
    }
    return gc;
}

static int gemini_auth_headers(struct evbuffer *out, const char *key)
{
    return key && *key && bb_proto_put(out, "x-goog-api-key: ", key, "\r\n") < 0 ? -1 : 0;
}

static int gemini_write_request(struct bb_arena *a, const struct bb_ir_request *ir,
                                const struct bb_egress_ctx *ctx, struct bb_egress_req *out,
                                struct bb_err *err)
{
    const char *model =
        ctx->lane && ctx->lane->upstream_model ? ctx->lane->upstream_model : ir->model.p;
    if (!model || !*model)
        return bb_err_set(err, "gemini egress: no upstream model");
    if (write_path(out->path, sizeof out->path, model, ctx->stream, err) < 0)
        return -1;

    struct wr w = {.a = a, .ir = ir, .ctx = ctx};
    json_object *root = json_object_new_object();
    json_object *contents = json_object_new_array();
    for (size_t i = 0; i < ir->n_messages; i++) {
        const struct bb_ir_message *m = &ir->messages[i];
        json_object *parts = json_object_new_array();
        write_parts(&w, m->blocks, m->n_blocks, i, parts);
        if (m->name.p)
            wr_drop(&w, "name");
        if (!json_object_array_length(parts)) {
            json_object_put(parts); /* Gemini rejects a content without parts */
            continue;
        }
        json_object *c = json_object_new_object();
        bb_json_add(c, "role",
                    json_object_new_string(m->role == BB_IR_ASSISTANT ? "model" : "user"));
        bb_json_add(c, "parts", parts);
        json_object_array_add(contents, c);
    }
    if (!json_object_array_length(contents)) {
        json_object_put(contents);
        json_object_put(root);
        return bb_err_set(err, "messages: at least one message with content is required");
    }
    bb_json_add(root, "contents", contents);

    if (ir->n_system) {
        json_object *parts = json_object_new_array();
        for (size_t i = 0; i < ir->n_system; i++) {
            const struct bb_ir_block *b = &ir->system[i];
            if (b->type != BB_IR_TEXT || !b->text.p)
                continue;
            json_object *p = json_object_new_object();
            bb_json_add(p, "text", bb_json_new_str(&b->text));
            json_object_array_add(parts, p);
            if (b->cache_control)
                wr_drop(&w, "cache_control");
        }
        json_object *si = json_object_new_object();
        bb_json_add(si, "parts", parts);
        bb_json_add(root, "systemInstruction", si);
    }
    if (ir->n_tools || ir->n_hosted)
        bb_json_add(root, "tools", build_tools(&w, ir));
    if (ir->tool_choice != BB_IR_TC_UNSET) {
        json_object *fcc = json_object_new_object();
        const char *mode = ir->tool_choice == BB_IR_TC_NONE   ? "NONE"
                           : ir->tool_choice == BB_IR_TC_AUTO ? "AUTO"
                                                              : "ANY";
        bb_json_add(fcc, "mode", json_object_new_string(mode));
        if (ir->tool_choice == BB_IR_TC_TOOL && ir->tool_choice_name.p) {
            json_object *names = json_object_new_array();
            json_object_array_add(names, bb_json_new_str(&ir->tool_choice_name));
            bb_json_add(fcc, "allowedFunctionNames", names);
        }
        json_object *tc = json_object_new_object();
        bb_json_add(tc, "functionCallingConfig", fcc);
        bb_json_add(root, "toolConfig", tc);
    }
    if (ir->has_parallel_tool_calls && !ir->parallel_tool_calls)
        wr_drop(&w, "parallel_tool_calls");
    if (ir->user.p)
        wr_drop(&w, "user");
    json_object *gc = build_generation_config(&w, ir, ctx);
    if (gc)
        bb_json_add(root, "generationConfig", gc);

    int rc = bb_json_append(out->body, root);
    json_object_put(root);
    if (rc < 0)
        return bb_err_set(err, "gemini egress: out of memory writing the body");
    rc =
        bb_proto_put(out->headers, "Content-Type: application/json\r\n", NULL, NULL) < 0 ||
                gemini_auth_headers(out->headers, ctx->provider ? ctx->provider->api_key : NULL) < 0
            ? -1
            : 0;
    if (rc < 0)
        return bb_err_set(err, "gemini egress: out of memory writing headers");
    return 0;
}

/* ======================================================================================== */
/* Egress: read_response                                                                    */
/* ======================================================================================== */

/* Candidate 0 (by its index field, else the first). */
static json_object *first_candidate(json_object *root)
{
    json_object *cands = jget(root, "candidates", NULL);
    if (!bb_json_is(cands, json_type_array))
        return NULL;
    for (size_t i = 0; i < json_object_array_length(cands); i++) {
        json_object *c = json_object_array_get_idx(cands, i);
        json_object *idx = jget(c, "index", NULL);
        if (!idx || json_object_get_int(idx) == 0)
            return c;
    }
    return NULL;
}

/* Letters, digits, '_' and '-' of a responseId, so synthesised ids fit every id shape. */
static void id_seed(char *dst, size_t cap, json_object *rid)
{
    size_t o = 0;
    const char *s = bb_json_is(rid, json_type_string) ? json_object_get_string(rid) : "";
    for (; *s && o + 1 < cap && o < 24; s++)
        if (isalnum((unsigned char)*s) || *s == '_' || *s == '-')
            dst[o++] = *s;
    dst[o] = '\0';
}

static int gemini_read_response(struct bb_arena *a, const char *body, size_t len,
                                struct bb_ir_response *out, struct bb_err *err)
{
    memset(out, 0, sizeof *out);
    json_object *root = bb_json_parse(body, len, "gemini response", err);
    if (!root)
        return -1;
    int rc = -1;
    char seed[32];
    struct rd x;
    memset(&x, 0, sizeof x);
    bb_rd_init(&x.r, a, NULL, err);
    x.r.prefix = "gemini response";
    x.id_seed = seed;
    if (!bb_json_is(root, json_type_object)) {
        bb_rd_expect(&x.r, NULL, "a JSON object");
        goto done;
    }
    if (jget(root, "error", NULL)) {
        json_object *m = jget(jget(root, "error", NULL), "message", NULL);
        bb_rd_fail(&x.r, NULL, "error body: %s",
                   bb_json_is(m, json_type_string) ? json_object_get_string(m) : "(no message)");
        goto done;
    }
    id_seed(seed, sizeof seed, jget(root, "responseId", "response_id"));
    if (rd_str(&x.r, root, "responseId", "response_id", &out->id) < 0 ||
        rd_str(&x.r, root, "modelVersion", "model_version", &out->model) < 0)
        goto done;
    json_object *cand = first_candidate(root);
    struct bb_vec bv = {0};
    bool saw_tool = false;
    json_object *content = jget(cand, "content", NULL);
    size_t mark = bb_rd_in(&x.r, "candidates[0].content");
    int e = jget(content, "parts", NULL) ? rd_parts(&x, content, &bv) : 0;
    bb_rd_out(&x.r, mark);
    if (e < 0)
        goto done;
    struct bb_ir_block *blocks = bv.v;
    for (size_t i = 0; i < bv.n; i++)
        saw_tool = saw_tool || blocks[i].type == BB_IR_TOOL_USE;
    out->blocks = blocks;
    out->n_blocks = bv.n;
    json_object *fr = jget(cand, "finishReason", "finish_reason");
    if (cand)
        out->stop = stop_from_gemini(
            bb_json_is(fr, json_type_string) ? json_object_get_string(fr) : "STOP", saw_tool);
    else if (jget(jget(root, "promptFeedback", "prompt_feedback"), "blockReason", "block_reason"))
        out->stop = BB_IR_STOP_CONTENT_FILTER; /* the prompt was blocked: no candidates */
    else
        out->stop = BB_IR_STOP_END_TURN;
    out->usage = usage_from_gemini(jget(root, "usageMetadata", "usage_metadata"));
    rc = 0;
done:
    json_object_put(root);
    return rc;
}

/* ======================================================================================== */
/* Ingress: write_response                                                                  */
/* ======================================================================================== */

static int gemini_write_response(struct bb_arena *a, const struct bb_ir_response *r,
                                 const struct bb_ingress_ctx *ctx, struct evbuffer *out)
{
    struct wr w = {.a = a};
    json_object *parts = json_object_new_array();
    write_parts(&w, r->blocks, r->n_blocks, SIZE_MAX, parts);
    if (!json_object_array_length(parts)) {
        /* An empty candidate still carries a part: SDK chat sessions drop contentless turns. */
        json_object *p = json_object_new_object();
        bb_json_add(p, "text", json_object_new_string(""));
        json_object_array_add(parts, p);
    }
    json_object *content = json_object_new_object();
    bb_json_add(content, "parts", parts);
    bb_json_add(content, "role", json_object_new_string("model"));
    json_object *cand = json_object_new_object();
    bb_json_add(cand, "content", content);
    bb_json_add(cand, "finishReason", json_object_new_string(stop_to_gemini(r->stop)));
    bb_json_add(cand, "index", json_object_new_int(0));
    json_object *cands = json_object_new_array();
    json_object_array_add(cands, cand);
    json_object *root = json_object_new_object();
    bb_json_add(root, "candidates", cands);
    if (r->usage.set)
        bb_json_add(root, "usageMetadata", usage_to_gemini(&r->usage));
    const char *model = r->model.p ? r->model.p : ctx->model;
    if (model)
        bb_json_add(root, "modelVersion", json_object_new_string(model));
    const char *id = r->id.p ? r->id.p : ctx->request_id;
    if (id)
        bb_json_add(root, "responseId", json_object_new_string(id));
    int rc = bb_json_append(out, root);
    json_object_put(root);
    return rc < 0 ? -1 : 0;
}

/* ======================================================================================== */
/* Ingress: stream encoder                                                                  */
/* ======================================================================================== */

static const char *gemini_stream_content_type(const struct bb_ingress_ctx *ctx)
{
    return ctx && (ctx->route_flags & ROUTE_SSE) ? "text/event-stream" : "application/json";
}

/* A tool-use block whose INPUT_JSON is buffered until BLOCK_STOP (Gemini calls are whole). */
struct enc_tool {
    uint32_t index;
    char *id, *name, *args;
    size_t len, cap;
};

struct gem_enc {
    bool sse, array_open, array_closed, stopped;
    char id[128], model[128];
    struct bb_ir_usage start_usage; /* from MESSAGE_START, completes MESSAGE_DELTA's */
    struct enc_tool *tools;         /* open tool-use blocks (malloc'd) */
    size_t n_tools, cap_tools;
    /* open reasoning blocks (bb_eseq; Gemini numbers no parts: none is shown), flags
     * THOUGHT_TEXT once one had text (its signature then gets a part of its own) */
    struct bb_eseq seq;
    char *pending_sig; /* a text-less thinking block's signature (malloc'd) */
    size_t pending_len;
};

#define THOUGHT_TEXT 1u

static void enc_tool_free(struct enc_tool *t)
{
    free(t->id);
    free(t->name);
    free(t->args);
}

static void enc_release(struct gem_enc *e)
{
    for (size_t i = 0; i < e->n_tools; i++)
        enc_tool_free(&e->tools[i]);
    free(e->tools);
    e->tools = NULL;
    e->n_tools = e->cap_tools = 0;
    free(e->pending_sig);
    e->pending_sig = NULL;
}

static void gemini_enc_init(void *enc, const struct bb_ingress_ctx *ctx)
{
    struct gem_enc *e = enc;
    memset(e, 0, sizeof *e);
    e->sse = ctx && (ctx->route_flags & ROUTE_SSE);
    if (ctx && ctx->request_id)
        snprintf(e->id, sizeof e->id, "%s", ctx->request_id);
    if (ctx && ctx->model)
        snprintf(e->model, sizeof e->model, "%s", ctx->model);
}

/* Frame one element: SSE `data: {...}\r\n\r\n`, or a JSON array element. */
static int enc_write(struct gem_enc *e, json_object *o, struct evbuffer *out)
{
    size_t n = 0;
    const char *s = bb_json_out(o, &n);
    int rc;
    if (!s)
        rc = -1;
    else if (e->sse)
        rc = bb_proto_put(out, "data: ", s, "\r\n\r\n");
    else if (e->array_closed)
        rc = 0;
    else {
        rc = evbuffer_add(out, e->array_open ? ",\r\n" : "[", e->array_open ? 3 : 1);
        e->array_open = true;
        if (rc == 0)
            rc = evbuffer_add(out, s, n);
    }
    json_object_put(o);
    return rc;
}

/* A chunk for candidate 0 with the given parts (may be NULL), finishReason and usage. */
static json_object *enc_chunk(struct gem_enc *e, json_object *parts, const char *finish,
                              const struct bb_ir_usage *u)
{
    json_object *cand = json_object_new_object();
    if (parts) {
        json_object *content = json_object_new_object();
        bb_json_add(content, "parts", parts);
        bb_json_add(content, "role", json_object_new_string("model"));
        bb_json_add(cand, "content", content);
    }
    if (finish)
        bb_json_add(cand, "finishReason", json_object_new_string(finish));
    bb_json_add(cand, "index", json_object_new_int(0));
    json_object *cands = json_object_new_array();
    json_object_array_add(cands, cand);
    json_object *root = json_object_new_object();
    bb_json_add(root, "candidates", cands);
    if (u) {
        bb_json_add(root, "usageMetadata", usage_to_gemini(u));
    } else if (e->start_usage.set) {
        /* Like Gemini, every chunk reports the prompt side once it is known. */
        const struct bb_ir_usage *s = &e->start_usage;
        uint64_t prompt = s->input + s->cache_read + s->cache_write;
        json_object *um = json_object_new_object();
        bb_json_add(um, "promptTokenCount", json_object_new_int64((int64_t)prompt));
        bb_json_add(um, "totalTokenCount", json_object_new_int64((int64_t)prompt));
        if (s->cache_read)
            bb_json_add(um, "cachedContentTokenCount",
                        json_object_new_int64((int64_t)s->cache_read));
        bb_json_add(root, "usageMetadata", um);
    }
    if (e->model[0])
        bb_json_add(root, "modelVersion", json_object_new_string(e->model));
    if (e->id[0])
        bb_json_add(root, "responseId", json_object_new_string(e->id));
    return root;
}

static json_object *one_part(json_object *p)
{
    json_object *parts = json_object_new_array();
    json_object_array_add(parts, p);
    return parts;
}

/* A part carrying the pending signature of a text-less thinking block, taking ownership. */
static void enc_take_sig(struct gem_enc *e, json_object *part)
{
    if (!e->pending_sig)
        return;
    bb_json_add(part, "thoughtSignature",
                json_object_new_string_len(e->pending_sig, (int)e->pending_len));
    free(e->pending_sig);
    e->pending_sig = NULL;
}

/* A signature with no part of its own, in Gemini's form: an empty text part carrying it. */
static json_object *sig_part(const char *s, size_t n)
{
    json_object *p = json_object_new_object();
    bb_json_add(p, "text", json_object_new_string(""));
    bb_json_add(p, "thoughtSignature", json_object_new_string_len(s, (int)n));
    return p;
}

/* A pending signature that no part followed: its own thought part. */
static int enc_flush_sig(struct gem_enc *e, struct evbuffer *out)
{
    if (!e->pending_sig)
        return 0;
    json_object *p = sig_part(e->pending_sig, e->pending_len);
    free(e->pending_sig);
    e->pending_sig = NULL;
    return enc_write(e, enc_chunk(e, one_part(p), NULL, NULL), out);
}

static struct enc_tool *enc_find_tool(struct gem_enc *e, uint32_t index)
{
    for (size_t i = 0; i < e->n_tools; i++)
        if (e->tools[i].index == index)
            return &e->tools[i];
    return NULL;
}

static char *xdup(const struct bb_ir_str *s)
{
    char *p = malloc(s->len + 1);
    if (p) {
        if (s->len)
            memcpy(p, s->p, s->len);
        p[s->len] = '\0';
    }
    return p;
}

static int enc_tool_start(struct gem_enc *e, const struct bb_ir_event *ev)
{
    if (e->n_tools == e->cap_tools) {
        size_t cap = e->cap_tools ? e->cap_tools * 2 : 4;
        struct enc_tool *nv = realloc(e->tools, cap * sizeof *nv);
        if (!nv)
            return -1;
        e->tools = nv;
        e->cap_tools = cap;
    }
    struct enc_tool *t = &e->tools[e->n_tools];
    memset(t, 0, sizeof *t);
    t->index = ev->index;
    t->id = ev->id.p ? xdup(&ev->id) : NULL;
    t->name = xdup(ev->name.p ? &ev->name : &(struct bb_ir_str){"", 0});
    if ((ev->id.p && !t->id) || !t->name) {
        enc_tool_free(t);
        return -1;
    }
    e->n_tools++;
    return 0;
}

static int enc_tool_append(struct enc_tool *t, const struct bb_ir_str *s)
{
    if (!s->len)
        return 0;
    if (t->len + s->len + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (cap < t->len + s->len + 1)
            cap *= 2;
        char *nv = realloc(t->args, cap);
        if (!nv)
            return -1;
        t->args = nv;
        t->cap = cap;
    }
    memcpy(t->args + t->len, s->p, s->len);
    t->len += s->len;
    t->args[t->len] = '\0';
    return 0;
}

static int enc_tool_stop(struct gem_enc *e, struct enc_tool *t, struct evbuffer *out)
{
    struct wr w = {0};
    json_object *fc = json_object_new_object();
    if (t->id)
        bb_json_add(fc, "id", json_object_new_string(t->id));
    bb_json_add(fc, "name", json_object_new_string(t->name));
    bb_json_add(fc, "args", args_object(&w, &(struct bb_ir_str){t->args, t->len}));
    json_object *p = json_object_new_object();
    bb_json_add(p, "functionCall", fc);
    enc_take_sig(e, p);
    int rc = enc_write(e, enc_chunk(e, one_part(p), NULL, NULL), out);
    enc_tool_free(t);
    *t = e->tools[--e->n_tools];
    return rc;
}

static int gemini_enc_event(void *enc, struct bb_arena *scratch, const struct bb_ir_event *ev,
                            struct evbuffer *out)
{
    struct gem_enc *e = enc;
    (void)scratch;
    if (e->stopped)
        return 0;
    switch (ev->type) {
    case BB_IR_EV_MESSAGE_START:
        if (ev->id.p && ev->id.len)
            snprintf(e->id, sizeof e->id, "%s", ev->id.p);
        if (ev->model.p && ev->model.len)
            snprintf(e->model, sizeof e->model, "%s", ev->model.p);
        e->start_usage = ev->usage;
        return 0;
    case BB_IR_EV_BLOCK_START:
        if (ev->block_type == BB_IR_TOOL_USE)
            return enc_tool_start(e, ev);
        if ((ev->block_type == BB_IR_THINKING || ev->block_type == BB_IR_REDACTED_THINKING) &&
            !bb_eseq_find(&e->seq, ev->index))
            bb_eseq_open(&e->seq, ev->index, ev->block_type, false); /* (full: untracked) */
        return 0;
    case BB_IR_EV_BLOCK_DELTA: {
        json_object *p;
        switch (ev->delta) {
        case BB_IR_D_TEXT:
            if (!ev->text.len)
                return 0;
            p = json_object_new_object();
            bb_json_add(p, "text", bb_json_new_str(&ev->text));
            enc_take_sig(e, p);
            break;
        case BB_IR_D_THINKING:
            if (!ev->text.len)
                return 0;
            if (enc_flush_sig(e, out) < 0)
                return -1;
            struct bb_eseq_block *b = bb_eseq_find(&e->seq, ev->index);
            if (b)
                b->flags |= THOUGHT_TEXT;
            p = json_object_new_object();
            bb_json_add(p, "text", bb_json_new_str(&ev->text));
            bb_json_add(p, "thought", json_object_new_boolean(1));
            break;
        case BB_IR_D_SIGNATURE:
            if (!ev->text.p)
                return 0;
            const struct bb_eseq_block *tb = bb_eseq_find(&e->seq, ev->index);
            if (tb && (tb->flags & THOUGHT_TEXT)) {
                p = sig_part(ev->text.p, ev->text.len);
                break;
            }
            /* Text-less: the signature goes on the part that follows (Gemini's placement). */
            if (enc_flush_sig(e, out) < 0)
                return -1;
            if (!(e->pending_sig = xdup(&ev->text)))
                return -1;
            e->pending_len = ev->text.len;
            return 0;
        case BB_IR_D_INPUT_JSON: {
            struct enc_tool *t = enc_find_tool(e, ev->index);
            return t ? enc_tool_append(t, &ev->text) : 0;
        }
        default: /* citations, redacted thinking: no Gemini equivalent */
            return 0;
        }
        return enc_write(e, enc_chunk(e, one_part(p), NULL, NULL), out);
    }
    case BB_IR_EV_BLOCK_STOP: {
        struct enc_tool *t = enc_find_tool(e, ev->index);
        if (t)
            return enc_tool_stop(e, t, out);
        struct bb_eseq_block *b = bb_eseq_find(&e->seq, ev->index);
        if (b)
            bb_eseq_remove(&e->seq, b);
        return 0;
    }
    case BB_IR_EV_MESSAGE_DELTA: {
        /* Calls still open are flushed (a stream cut between deltas still yields them). */
        while (e->n_tools)
            if (enc_tool_stop(e, &e->tools[0], out) < 0)
                return -1;
        struct bb_ir_usage u = ev->usage;
        if (!u.input && !u.cache_read && !u.cache_write) {
            u.input = e->start_usage.input;
            u.cache_read = e->start_usage.cache_read;
            u.cache_write = e->start_usage.cache_write;
        }
        u.set = u.set || e->start_usage.set;
        /* The final chunk carries a part: SDK chat sessions drop turns with empty chunks. */
        json_object *p = json_object_new_object();
        bb_json_add(p, "text", json_object_new_string(""));
        if (e->pending_sig) {
            json_object_put(p);
            p = sig_part(e->pending_sig, e->pending_len);
            free(e->pending_sig);
            e->pending_sig = NULL;
        }
        return enc_write(e, enc_chunk(e, one_part(p), stop_to_gemini(ev->stop), u.set ? &u : NULL),
                         out);
    }
    case BB_IR_EV_MESSAGE_STOP:
        e->stopped = true;
        enc_release(e);
        if (!e->sse && !e->array_closed) {
            e->array_closed = true;
            return evbuffer_add(out, e->array_open ? "]" : "[]", e->array_open ? 1 : 2);
        }
        return 0;
    case BB_IR_EV_ERROR:
        return enc_write(e, error_to_gemini(ev), out);
    case BB_IR_EV_PING:
        return 0;
    }
    return 0;
}

static void gemini_enc_finish(void *enc, struct evbuffer *out)
{
    struct gem_enc *e = enc;
    enc_release(e);
    if (!e->sse && !e->array_closed) {
        e->array_closed = true;
        evbuffer_add(out, e->array_open ? "]" : "[]", e->array_open ? 1 : 2);
    }
    e->stopped = true;
}

/* ======================================================================================== */
/* Egress: stream decoder                                                                   */
/* ======================================================================================== */

struct gem_dec {
    bool started, finished;
    struct bb_dseq seq; /* TEXT and THINKING blocks stay open across chunks */
    bool open_signed;   /* the open THINKING block has its signature */
    uint32_t n_calls;
    bool saw_tool;
    struct bb_ir_usage usage; /* the latest usageMetadata */
    char seed[32];            /* responseId-derived, for synthesised call ids */
};

static void gemini_dec_init(void *dec)
{
    memset(dec, 0, sizeof(struct gem_dec));
}

/* The events of one dec_frame call; the first failure sticks. */
struct emitter {
    struct bb_dout o;
    int rc;
};

static int emit(struct emitter *em, struct bb_ir_event *ev)
{
    if (em->rc == 0)
        em->rc = bb_dout_emit(&em->o, ev);
    return em->rc;
}

static int dec_close(struct gem_dec *d, struct emitter *em)
{
    if (em->rc == 0)
        em->rc = bb_dseq_close(&d->seq, &em->o);
    return em->rc;
}

static int dec_open(struct gem_dec *d, struct emitter *em, enum bb_ir_block_type t,
                    const struct bb_ir_str *id, const struct bb_ir_str *name)
{
    if (em->rc == 0)
        em->rc = bb_dseq_open(&d->seq, &em->o, -1, t, id, name);
    d->open_signed = false;
    return em->rc;
}

static int dec_delta(struct gem_dec *d, struct emitter *em, enum bb_ir_delta k, struct bb_ir_str s)
{
    if (em->rc == 0)
        em->rc = bb_dseq_delta(&d->seq, &em->o, k, s.p, s.len);
    return em->rc;
}

/* The blocks of one chunk → events, continuing the open TEXT/THINKING block across chunks. */
static int dec_blocks(struct gem_dec *d, struct emitter *em, const struct bb_vec *bv)
{
    for (size_t i = 0; i < bv->n && !em->rc; i++) {
        const struct bb_ir_block *b = &((const struct bb_ir_block *)bv->v)[i];
        switch (b->type) {
        case BB_IR_THINKING: {
            /* A signature-only block right before a call stays its own block (its
             * signature belongs to that functionCall part). */
            bool before_call = i + 1 < bv->n && b[1].type == BB_IR_TOOL_USE;
            bool cont = d->seq.open && d->seq.type == BB_IR_THINKING && !d->open_signed &&
                        !(before_call && !b->text.len);
            if (!cont && dec_open(d, em, BB_IR_THINKING, NULL, NULL))
                break;
            if (b->text.len)
                dec_delta(d, em, BB_IR_D_THINKING, b->text);
            if (b->signature.p) {
                dec_delta(d, em, BB_IR_D_SIGNATURE, b->signature);
                d->open_signed = true;
            }
            break;
        }
        case BB_IR_TEXT:
            if (!(d->seq.open && d->seq.type == BB_IR_TEXT) &&
                dec_open(d, em, BB_IR_TEXT, NULL, NULL))
                break;
            dec_delta(d, em, BB_IR_D_TEXT, b->text);
            break;
        case BB_IR_TOOL_USE: /* a whole call in one part: start, its arguments, stop */
            d->saw_tool = true;
            if (dec_open(d, em, BB_IR_TOOL_USE, &b->id, &b->name) == 0 &&
                dec_delta(d, em, BB_IR_D_INPUT_JSON, b->input_json) == 0)
                dec_close(d, em);
            break;
        default: /* images, documents: no IR stream event carries media */
            break;
        }
    }
    return em->rc;
}

static int gemini_dec_frame(void *dec, struct bb_arena *scratch, const struct bb_frame *f,
                            bb_ir_event_cb cb, void *arg)
{
    struct gem_dec *d = dec;
    struct emitter em = {{cb, arg, scratch}, 0};
    size_t n = f->data_len;
    const char *p = f->data;
    while (n && isspace((unsigned char)*p))
        p++, n--;
    if (!n || d->finished)
        return 0; /* keep-alive, or a usage-only chunk after the finishReason */

    struct bb_err err;
    json_object *root = bb_json_parse(p, n, "gemini stream chunk", &err);
    if (!root || !bb_json_is(root, json_type_object)) {
        json_object_put(root);
        return -1;
    }
    int rc = -1;
    json_object *e = jget(root, "error", NULL);
    if (e) {
        json_object *code = jget(e, "code", NULL), *msg = jget(e, "message", NULL);
        json_object *status = jget(e, "status", NULL);
        struct bb_ir_event ev = {.type = BB_IR_EV_ERROR};
        ev.error_status = bb_json_is(code, json_type_int) ? json_object_get_int(code) : 0;
        ev.text = bb_json_is(msg, json_type_string) ? bb_json_dup(scratch, msg)
                                                    : bb_ir_strdup(scratch, "error", 5);
        if (bb_json_is(status, json_type_string))
            ev.error_type = bb_json_dup(scratch, status);
        d->finished = true;
        rc = emit(&em, &ev);
        goto done;
    }
    if (!d->started) {
        id_seed(d->seed, sizeof d->seed, jget(root, "responseId", "response_id"));
        json_object *rid = jget(root, "responseId", "response_id");
        json_object *mv = jget(root, "modelVersion", "model_version");
        struct bb_ir_event ev = {.type = BB_IR_EV_MESSAGE_START};
        if (bb_json_is(rid, json_type_string))
            ev.id = bb_json_dup(scratch, rid);
        if (bb_json_is(mv, json_type_string))
            ev.model = bb_json_dup(scratch, mv);
        struct bb_ir_usage u = usage_from_gemini(jget(root, "usageMetadata", "usage_metadata"));
        if (u.set) {
            ev.usage.set = true;
            ev.usage.input = u.input;
            ev.usage.cache_read = u.cache_read;
        }
        d->started = true;
        if (emit(&em, &ev)) {
            rc = em.rc;
            goto done;
        }
    }
    json_object *um = jget(root, "usageMetadata", "usage_metadata");
    if (um)
        d->usage = usage_from_gemini(um);

    struct rd x;
    memset(&x, 0, sizeof x);
    bb_rd_init(&x.r, scratch, NULL, &err);
    x.id_seed = d->seed;
    x.n_calls = d->n_calls;
    json_object *cand = first_candidate(root);
    json_object *content = jget(cand, "content", NULL);
    struct bb_vec bv = {0};
    if (jget(content, "parts", NULL) && rd_parts(&x, content, &bv) < 0)
        goto done;
    d->n_calls = x.n_calls;
    if (dec_blocks(d, &em, &bv)) {
        rc = em.rc;
        goto done;
    }
    json_object *fr = jget(cand, "finishReason", "finish_reason");
    bool blocked = !cand && jget(jget(root, "promptFeedback", "prompt_feedback"), "blockReason",
                                 "block_reason");
    if (bb_json_is(fr, json_type_string) || blocked) {
        if (dec_close(d, &em)) {
            rc = em.rc;
            goto done;
        }
        struct bb_ir_event ev = {.type = BB_IR_EV_MESSAGE_DELTA, .usage = d->usage};
        ev.stop = blocked ? BB_IR_STOP_CONTENT_FILTER
                          : stop_from_gemini(json_object_get_string(fr), d->saw_tool);
        d->finished = true;
        if (emit(&em, &ev) == 0) {
            ev = (struct bb_ir_event){.type = BB_IR_EV_MESSAGE_STOP};
            emit(&em, &ev);
        }
    }
    rc = em.rc;
done:
    json_object_put(root);
    return rc;
}

/* ======================================================================================== */
/* Errors                                                                                   */
/* ======================================================================================== */

/* {"error":{"code","message","status","details":[{"reason"}...]}} (also wrapped in an array,
 * as :streamGenerateContent without alt=sse reports errors). */
static int gemini_read_error(const char *body, size_t len, struct bb_proto_error *out)
{
    memset(out, 0, sizeof *out);
    struct bb_err err;
    json_object *root = body && len ? bb_json_parse(body, len, "error body", &err) : NULL;
    if (!root)
        return -1;
    json_object *top = root;
    if (bb_json_is(root, json_type_array))
        top = json_object_array_length(root) ? json_object_array_get_idx(root, 0) : NULL;
    json_object *e = jget(top, "error", NULL);
    int rc = -1;
    if (bb_json_is(e, json_type_object)) {
        bb_json_copy(out->message, sizeof out->message, jget(e, "message", NULL));
        bb_json_copy(out->type, sizeof out->type, jget(e, "status", NULL));
        json_object *details = jget(e, "details", NULL);
        for (size_t i = 0;
             bb_json_is(details, json_type_array) && i < json_object_array_length(details); i++) {
            json_object *reason = jget(json_object_array_get_idx(details, i), "reason", NULL);
            if (bb_json_is(reason, json_type_string)) {
                bb_json_copy(out->code, sizeof out->code, reason);
                break;
            }
        }
        rc = out->message[0] || out->type[0] || out->code[0] ? 0 : -1;
    }
    json_object_put(root);
    return rc;
}

/* Same-protocol hop: the client's body as is; only the model in the path changes. */
static int gemini_write_passthrough(struct bb_arena *a, const char *body, size_t len,
                                    const struct bb_egress_ctx *ctx, struct bb_egress_req *out,
                                    struct bb_err *err)
{
    (void)a;
    const char *model = ctx->lane && ctx->lane->upstream_model ? ctx->lane->upstream_model : "";
    if (!*model)
        return bb_err_set(err, "gemini egress: no upstream model");
    if (write_path(out->path, sizeof out->path, model, ctx->stream, err) < 0)
        return -1;
    if (evbuffer_add(out->headers, "Content-Type: application/json\r\n", 32) < 0 ||
        gemini_auth_headers(out->headers, ctx->provider->api_key) < 0 ||
        evbuffer_add(out->body, body, len) < 0)
        return bb_err_set(err, "out of memory");
    return 0;
}

/* An answer has `candidates` (or only promptFeedback when the prompt was blocked); an error is
 * {"error":{code,message,status}}. */
/* usage_from_gemini over the bytes of a usageMetadata object (no DOM; camelCase, then
 * snake_case). */
static void gemini_usage_scan(const char *o, size_t n, struct bb_ir_usage *u)
{
    /* each count in camelCase, then snake_case */
    struct bb_jscan_field f[10] = {
        {.key = "promptTokenCount"},        {.key = "prompt_token_count"},
        {.key = "cachedContentTokenCount"}, {.key = "cached_content_token_count"},
        {.key = "toolUsePromptTokenCount"}, {.key = "tool_use_prompt_token_count"},
        {.key = "candidatesTokenCount"},    {.key = "candidates_token_count"},
        {.key = "thoughtsTokenCount"},      {.key = "thoughts_token_count"}};
    struct bb_err err;
    uint64_t c[5];
    bb_jscan_object(o, n, f, 10, 64, &err);
    for (int i = 0; i < 5; i++)
        if (!bb_jscan_field_u64(o, &f[2 * i], &c[i]))
            bb_jscan_field_u64(o, &f[2 * i + 1], &c[i]);
    uint64_t prompt = c[0], cached = c[1], tool = c[2], cand = c[3], thoughts = c[4];
    memset(u, 0, sizeof *u);
    u->set = true;
    u->cache_read = cached;
    u->input = (prompt > cached ? prompt - cached : 0) + tool;
    u->output = cand + thoughts;
    u->reasoning = thoughts;
}

static int gemini_answer_check(const char *body, size_t len, struct bb_ir_usage *usage,
                               struct bb_proto_error *out)
{
    struct bb_jscan_field f[5] = {{.key = "error"},
                                  {.key = "candidates"},
                                  {.key = "promptFeedback"},
                                  {.key = "usageMetadata"},
                                  {.key = "usage_metadata"}};
    if (bb_proto_scan_answer(body, len, f, 5, out) < 0)
        return -1;
    if (f[0].type == BB_JOBJECT)
        return bb_proto_inband(&bb_proto_gemini, body, len, out);
    if (f[1].type != BB_JARRAY && f[2].type != BB_JOBJECT) {
        snprintf(out->message, sizeof out->message, "no 'candidates' array");
        return -1;
    }
    const struct bb_jscan_field *um = f[3].type != BB_JNONE ? &f[3] : &f[4];
    if (usage && um->type == BB_JOBJECT)
        gemini_usage_scan(body + um->off, um->len, usage);
    return 0;
}

/* frame_scan: a chunk with parts in its first candidate is meaningful; a finishReason (or a
 * blocked prompt) is the stop and the end; usageMetadata is the running usage. */
static int gemini_frame_scan_1(const struct bb_frame *f, struct bb_frame_state *st, bool stopped,
                               struct bb_frame_info *out)
{
    memset(out, 0, sizeof *out);
    size_t n = f->data_len;
    const char *p = f->data;
    while (n && isspace((unsigned char)*p))
        p++, n--;
    if (!n || stopped)
        return 0; /* keep-alive, or a usage-only chunk after the finishReason */
    struct bb_jscan_field t[6] = {{.key = "error"},          {.key = "candidates"},
                                  {.key = "promptFeedback"}, {.key = "prompt_feedback"},
                                  {.key = "usageMetadata"},  {.key = "usage_metadata"}};
    struct bb_err err;
    if (bb_jscan_object(p, n, t, 6, 128, &err) < 0)
        return -1;
    if (t[0].type != BB_JNONE && t[0].type != BB_JNULL)
        return bb_proto_frame_error(&bb_proto_gemini, p, n, "error", out);
    struct bb_jscan_field c = {.type = BB_JNONE};
    if (t[1].type == BB_JARRAY)
        bb_jscan_element(p + t[1].off, t[1].len, 0, &c);
    if (c.type == BB_JOBJECT) {
        const char *cp = p + t[1].off + c.off;
        struct bb_jscan_field cf[3] = {
            {.key = "content"}, {.key = "finishReason"}, {.key = "finish_reason"}};
        bb_jscan_object(cp, c.len, cf, 3, 128, &err);
        struct bb_jscan_field parts, e0;
        bb_jscan_member(cp + cf[0].off, cf[0].len, "parts", &parts);
        out->content = parts.type == BB_JARRAY &&
                       bb_jscan_element(cp + cf[0].off + parts.off, parts.len, 0, &e0);
        if (cf[1].type == BB_JSTRING || cf[2].type == BB_JSTRING)
            out->content = out->stop = out->end = true;
    } else {
        const struct bb_jscan_field *pf = t[2].type == BB_JOBJECT ? &t[2] : &t[3];
        struct bb_jscan_field br, br2;
        bb_jscan_member(p + pf->off, pf->len, "blockReason", &br);
        bb_jscan_member(p + pf->off, pf->len, "block_reason", &br2);
        if (pf->type == BB_JOBJECT && ((br.type != BB_JNONE && br.type != BB_JNULL) ||
                                       (br2.type != BB_JNONE && br2.type != BB_JNULL)))
            out->content = out->stop = out->end = true;
    }
    const struct bb_jscan_field *um = t[4].type != BB_JNONE ? &t[4] : &t[5];
    if (um->type == BB_JOBJECT)
        gemini_usage_scan(p + um->off, um->len, &out->usage);
    return 0;
}

static int gemini_frame_scan(const struct bb_frame *f, struct bb_frame_state *st,
                             struct bb_frame_info *out)
{
    bool stopped = st->stopped;
    int rc = gemini_frame_scan_1(f, st, stopped, out);
    st->stopped = st->stopped || out->stop;
    return rc;
}

/* ---- the ingress envelope ---- */

/* /v1beta/models/{m}:generateContent | :streamGenerateContent (also /v1/models/...); the
 * stream is SSE with ?alt=sse, else one JSON array. */
static int gemini_match_route(const char *p, size_t n, const char *query,
                              struct bb_proto_route *out)
{
    const char *start = bb_path_starts(p, "/v1beta/models/") ? p + 15
                        : bb_path_starts(p, "/v1/models/")   ? p + 11
                                                             : NULL;
    const char *colon = start ? memchr(start, ':', n - (size_t)(start - p)) : NULL;
    if (!colon)
        return 0;
    if (strcmp(colon, ":generateContent") == 0)
        out->stream = 0;
    else if (strcmp(colon, ":streamGenerateContent") == 0)
        out->stream = 1;
    else
        return 0;
    out->model = start;
    out->model_len = (size_t)(colon - start);
    out->flags =
        query && (strstr(query, "alt=sse") == query || strstr(query, "&alt=sse")) ? ROUTE_SSE : 0;
    return 1;
}

static bool gemini_claims_path(const char *path)
{
    return bb_path_starts(path, "/v1beta/") || strstr(path, ":generateContent") ||
           strstr(path, ":streamGenerateContent");
}

/* GET /v1beta/models: {"models":[{name:"models/<n>", displayName, supportedGenerationMethods}]} */
static json_object *gemini_models_list(const char *const *names, size_t n)
{
    json_object *root = json_object_new_object(), *models = json_object_new_array();
    for (size_t i = 0; i < n; i++) {
        char full[256];
        snprintf(full, sizeof full, "models/%s", names[i]);
        json_object *m = json_object_new_object(), *methods = json_object_new_array();
        json_object_array_add(methods, json_object_new_string("generateContent"));
        json_object_array_add(methods, json_object_new_string("streamGenerateContent"));
        json_object_object_add(m, "name", json_object_new_string(full));
        json_object_object_add(m, "displayName", json_object_new_string(names[i]));
        json_object_object_add(m, "supportedGenerationMethods", methods);
        json_object_array_add(models, m);
    }
    json_object_object_add(root, "models", models);
    return root;
}

/* Without ?alt=sse a client's stream is one JSON array. */
static enum bb_framing gemini_client_framing(const struct bb_ingress_ctx *ctx)
{
    return ctx && (ctx->route_flags & ROUTE_SSE) ? BB_FRAMING_SSE : BB_FRAMING_JSON_ARRAY;
}

/* busbar's own errors in Gemini's shape: {"error":{code,message,status}}. */
static const struct bb_proto_errtype error_types[] = {
    {400, "INVALID_ARGUMENT"},  {401, "UNAUTHENTICATED"},  {402, "RESOURCE_EXHAUSTED"},
    {403, "PERMISSION_DENIED"}, {404, "NOT_FOUND"},        {405, "INVALID_ARGUMENT"},
    {408, "DEADLINE_EXCEEDED"}, {413, "INVALID_ARGUMENT"}, {429, "RESOURCE_EXHAUSTED"},
    {500, "INTERNAL"},          {502, "UNAVAILABLE"},      {503, "UNAVAILABLE"},
    {504, "DEADLINE_EXCEEDED"}, {529, "UNAVAILABLE"},
};

static int gemini_error_body(char *out, size_t cap, int status, const char *type,
                             const char *busbar_type, const char *code, const char *msg)
{
    (void)busbar_type;
    (void)code;
    return snprintf(out, cap, "{\"error\":{\"code\":%d,\"message\":%s,\"status\":\"%s\"}}", status,
                    msg, type);
}

static const char *const affinity_members[] = {"systemInstruction", "contents", NULL};

const struct bb_proto_ops bb_proto_gemini = {
    .id = BB_PROTO_GEMINI,
    .name = "gemini",
    .genai_system = "gcp.gemini",
    .framing = BB_FRAMING_SSE,
    .params = param_rows,
    .n_params = N_PARAMS,
    .client_key_header = "x-goog-api-key",
    .client_key_query = "key",
    .errors = {.types = error_types,
               .n_types = sizeof error_types / sizeof error_types[0],
               .body = gemini_error_body},
    .match_route = gemini_match_route,
    .claims_path = gemini_claims_path,
    .models_path = "/v1beta/models",
    .models_list = gemini_models_list,
    .auth_headers = gemini_auth_headers,
    .probe_path = "/v1beta/models",
    .tool_id_prefix = "",
    .affinity_members = affinity_members,
    .client_framing = gemini_client_framing,
    .read_request = gemini_read_request,
    .write_response = gemini_write_response,
    .stream_content_type = gemini_stream_content_type,
    .enc_size = sizeof(struct gem_enc),
    .enc_init = gemini_enc_init,
    .enc_event = gemini_enc_event,
    .enc_finish = gemini_enc_finish,
    .write_request = gemini_write_request,
    .write_passthrough = gemini_write_passthrough,
    .read_response = gemini_read_response,
    .dec_size = sizeof(struct gem_dec),
    .dec_init = gemini_dec_init,
    .dec_frame = gemini_dec_frame,
    .read_error = gemini_read_error,
    .answer_check = gemini_answer_check,
    .frame_scan = gemini_frame_scan,
};
