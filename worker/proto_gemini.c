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
#include "worker/proto.h"
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

#define JSON_DEPTH 128
#define JSON_OUT (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)
#define GEMINI_MAX_STOP 5 /* generateContent rejects more stop sequences */

/* ======================================================================================== */
/* JSON helpers                                                                             */
/* ======================================================================================== */

/* Parse exactly one JSON value (trailing whitespace allowed). NULL with err naming `what`;
 * a literal null is reported as the wrong type by the caller's checks, so it fails here. */
static json_object *json_parse(const char *p, size_t len, const char *what, struct bb_err *err)
{
    if (len > INT_MAX) {
        bb_err_set(err, "%s: too large", what);
        return NULL;
    }
    json_tokener *tok = json_tokener_new_ex(JSON_DEPTH);
    if (!tok) {
        bb_err_set(err, "%s: out of memory", what);
        return NULL;
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    json_object *o = json_tokener_parse_ex(tok, p, (int)len);
    enum json_tokener_error je = json_tokener_get_error(tok);
    if (!o) {
        if (je == json_tokener_success || je == json_tokener_continue)
            bb_err_set(err, "%s: expected a JSON object", what);
        else
            bb_err_set(err, "%s: invalid JSON at byte %zu: %s", what,
                       json_tokener_get_parse_end(tok), json_tokener_error_desc(je));
    }
    json_tokener_free(tok);
    return o;
}

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

static bool jis(json_object *o, enum json_type t)
{
    return o && json_object_is_type(o, t);
}

static bool jis_number(json_object *o)
{
    return jis(o, json_type_int) || jis(o, json_type_double);
}

static struct bb_ir_str jdup(struct bb_arena *a, json_object *s)
{
    return bb_ir_strdup(a, json_object_get_string(s), (size_t)json_object_get_string_len(s));
}

/* Serialise v into the arena. */
static struct bb_ir_str jtext(struct bb_arena *a, json_object *v)
{
    size_t n = 0;
    const char *s = json_object_to_json_string_length(v, JSON_OUT, &n);
    return bb_ir_strdup(a, s, n);
}

static json_object *jnew_str(const struct bb_ir_str *s)
{
    return json_object_new_string_len(s->p ? s->p : "", (int)s->len);
}

/* A double that prints as the shortest text that reads back equal (0.7, not 0.699...). */
static json_object *jnew_double(double d)
{
    char buf[40];
    if (!isfinite(d))
        d = 0;
    snprintf(buf, sizeof buf, "%.15g", d);
    if (strtod(buf, NULL) != d)
        snprintf(buf, sizeof buf, "%.17g", d);
    return json_object_new_double_s(d, buf);
}

static void jadd(json_object *o, const char *k, json_object *v)
{
    json_object_object_add(o, k, v);
}

static int jappend(struct evbuffer *out, json_object *o)
{
    size_t n = 0;
    const char *s = json_object_to_json_string_length(o, JSON_OUT, &n);
    return s ? evbuffer_add(out, s, n) : -1;
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
    if (!jis(s, json_type_object))
        return json_object_get(s);
    json_object *o = json_object_new_object();
    json_object *nullable = jget(s, "nullable", NULL);
    bool is_null = jis(nullable, json_type_boolean) && json_object_get_boolean(nullable);
    json_object_object_foreach(s, k, v)
    {
        if (strcmp(k, "nullable") == 0 || strcmp(k, "propertyOrdering") == 0 ||
            strcmp(k, "property_ordering") == 0)
            continue;
        if (strcmp(k, "type") == 0 && jis(v, json_type_string)) {
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
                jadd(o, "type", arr);
            } else {
                jadd(o, "type", json_object_new_string(t));
            }
        } else if (strcmp(k, "properties") == 0 && jis(v, json_type_object)) {
            json_object *props = json_object_new_object();
            json_object_object_foreach(v, pk, pv)
            {
                jadd(props, pk, schema_to_json(pv));
            }
            jadd(o, "properties", props);
        } else if (strcmp(k, "items") == 0) {
            jadd(o, "items", schema_to_json(v));
        } else if ((strcmp(k, "anyOf") == 0 || strcmp(k, "any_of") == 0) &&
                   jis(v, json_type_array)) {
            json_object *arr = json_object_new_array();
            for (size_t i = 0; i < json_object_array_length(v); i++)
                json_object_array_add(arr, schema_to_json(json_object_array_get_idx(v, i)));
            jadd(o, "anyOf", arr);
        } else {
            jadd(o, k, json_object_get(v));
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
    if (!jis(s, json_type_object))
        return NULL;
    json_object *o = json_object_new_object();
    char type[16] = "";
    bool nullable = false;
    json_object *t = jget(s, "type", NULL);
    if (jis(t, json_type_string)) {
        snprintf(type, sizeof type, "%s", json_object_get_string(t));
    } else if (jis(t, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(t); i++) {
            json_object *e = json_object_array_get_idx(t, i);
            if (!jis(e, json_type_string))
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
    if (jis(nl, json_type_boolean) && json_object_get_boolean(nl))
        nullable = true;

    json_object *any = NULL;
    json_object_object_foreach(s, k, v)
    {
        if (strcmp(k, "properties") == 0 && jis(v, json_type_object)) {
            json_object *props = json_object_new_object();
            json_object_object_foreach(v, pk, pv)
            {
                json_object *sub = schema_to_gemini(pv);
                if (sub)
                    jadd(props, pk, sub);
            }
            /* "properties: should be non-empty for OBJECT type" */
            if (json_object_object_length(props))
                jadd(o, "properties", props);
            else
                json_object_put(props);
        } else if (strcmp(k, "items") == 0) {
            json_object *sub =
                schema_to_gemini(jis(v, json_type_array) ? json_object_array_get_idx(v, 0) : v);
            if (sub)
                jadd(o, "items", sub);
        } else if ((strcmp(k, "anyOf") == 0 || strcmp(k, "oneOf") == 0) &&
                   jis(v, json_type_array)) {
            if (!any)
                any = json_object_new_array();
            for (size_t i = 0; i < json_object_array_length(v); i++) {
                json_object *sub = schema_to_gemini(json_object_array_get_idx(v, i));
                if (sub)
                    json_object_array_add(any, sub);
            }
        } else if (strcmp(k, "enum") == 0 && jis(v, json_type_array)) {
            /* Gemini enums are strings only. */
            bool all_str = json_object_array_length(v) > 0;
            for (size_t i = 0; i < json_object_array_length(v); i++)
                all_str = all_str && jis(json_object_array_get_idx(v, i), json_type_string);
            if (all_str)
                jadd(o, "enum", json_object_get(v));
        } else if (strcmp(k, "const") == 0 && jis(v, json_type_string)) {
            json_object *e = json_object_new_array();
            json_object_array_add(e, json_object_get(v));
            jadd(o, "enum", e);
        } else if (strcmp(k, "format") == 0 && jis(v, json_type_string)) {
            /* Only these formats are accepted per type; others are a 400. */
            const char *f = json_object_get_string(v);
            if ((strcmp(type, "STRING") == 0 &&
                 (strcmp(f, "enum") == 0 || strcmp(f, "date-time") == 0)) ||
                (strcmp(type, "NUMBER") == 0 &&
                 (strcmp(f, "float") == 0 || strcmp(f, "double") == 0)) ||
                (strcmp(type, "INTEGER") == 0 &&
                 (strcmp(f, "int32") == 0 || strcmp(f, "int64") == 0)))
                jadd(o, "format", json_object_get(v));
        } else if (str_in(k, copy_keys)) {
            jadd(o, k, json_object_get(v));
        }
    }
    if (any) {
        if (json_object_array_length(any))
            jadd(o, "anyOf", any);
        else
            json_object_put(any);
    }
    if (!type[0] && jget(o, "properties", NULL))
        snprintf(type, sizeof type, "OBJECT");
    if (type[0])
        jadd(o, "type", json_object_new_string(type));
    if (nullable)
        jadd(o, "nullable", json_object_new_boolean(1));
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

static uint64_t jget_u64(json_object *o, const char *camel, const char *snake)
{
    json_object *v = jget(o, camel, snake);
    if (!jis_number(v))
        return 0;
    int64_t n = json_object_get_int64(v);
    return n > 0 ? (uint64_t)n : 0;
}

/* usageMetadata → IR usage (input excludes cached; output includes thoughts). */
static struct bb_ir_usage usage_from_gemini(json_object *um)
{
    struct bb_ir_usage u = {0};
    if (!jis(um, json_type_object))
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
    jadd(o, "promptTokenCount", json_object_new_int64((int64_t)prompt));
    jadd(o, "candidatesTokenCount", json_object_new_int64((int64_t)cand));
    jadd(o, "totalTokenCount", json_object_new_int64((int64_t)(prompt + cand + u->reasoning)));
    if (u->cache_read)
        jadd(o, "cachedContentTokenCount", json_object_new_int64((int64_t)u->cache_read));
    if (u->reasoning)
        jadd(o, "thoughtsTokenCount", json_object_new_int64((int64_t)u->reasoning));
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
    jadd(e, "code", json_object_new_int(code));
    jadd(e, "message", ev->text.p ? jnew_str(&ev->text) : json_object_new_string("error"));
    jadd(e, "status", json_object_new_string(is_rpc_status(type) ? type : status_from_http(code)));
    json_object *o = json_object_new_object();
    jadd(o, "error", e);
    return o;
}

/* ======================================================================================== */
/* Reading contents / parts (requests, responses and stream chunks)                         */
/* ======================================================================================== */

struct blockvec {
    struct bb_ir_block *v;
    size_t n, cap;
};

static struct bb_ir_block *bv_push(struct bb_arena *a, struct blockvec *bv)
{
    if (bv->n == bv->cap) {
        size_t cap = bv->cap ? bv->cap * 2 : 8;
        struct bb_ir_block *nv = bb_arena_alloc(a, cap * sizeof *nv);
        if (!nv)
            return NULL;
        if (bv->n)
            memcpy(nv, bv->v, bv->n * sizeof *nv);
        bv->v = nv;
        bv->cap = cap;
    }
    struct bb_ir_block *b = &bv->v[bv->n++];
    memset(b, 0, sizeof *b);
    return b;
}

/* Tool calls seen so far in a request, to give a functionResponse without id its call's id. */
struct callref {
    struct bb_ir_str name, id;
    bool answered;
};

struct rd {
    struct bb_arena *a;
    struct bb_ir_request *req; /* NULL when reading a response */
    struct bb_err *err;
    const char *id_seed; /* synthesised call ids: call_<seed>_<n> or call_<n> */
    uint32_t n_calls;
    struct callref *calls;
    size_t n_callrefs, cap_callrefs;
};

static int rd_oom(struct rd *r, const char *path)
{
    return bb_err_set(r->err, "%s: out of memory", path);
}

static int rd_unsupported(struct rd *r, const char *prefix, const char *key)
{
    if (!r->req)
        return 0;
    char buf[160];
    snprintf(buf, sizeof buf, "%s%s", prefix, key);
    struct bb_ir_str s = bb_ir_strdup(r->a, buf, strlen(buf));
    return s.p ? bb_ir_unsupported(r->a, r->req, s.p) : -1;
}

/* A string member (camel or snake): absent → {NULL,0}; another type → error. */
static int rd_str(struct rd *r, json_object *o, const char *camel, const char *snake,
                  const char *path, struct bb_ir_str *out)
{
    json_object *v = jget(o, camel, snake);
    *out = (struct bb_ir_str){NULL, 0};
    if (!v)
        return 0;
    if (!jis(v, json_type_string))
        return bb_err_set(r->err, "%s.%s: expected a string", path, camel);
    *out = jdup(r->a, v);
    return out->p ? 0 : rd_oom(r, path);
}

static struct bb_ir_str synth_call_id(struct rd *r)
{
    char buf[96];
    r->n_calls++;
    if (r->id_seed && *r->id_seed)
        snprintf(buf, sizeof buf, "call_%s_%" PRIu32, r->id_seed, r->n_calls);
    else
        snprintf(buf, sizeof buf, "call_%" PRIu32, r->n_calls);
    return bb_ir_strdup(r->a, buf, strlen(buf));
}

static int callref_add(struct rd *r, const struct bb_ir_block *b)
{
    if (r->n_callrefs == r->cap_callrefs) {
        size_t cap = r->cap_callrefs ? r->cap_callrefs * 2 : 8;
        struct callref *nv = bb_arena_alloc(r->a, cap * sizeof *nv);
        if (!nv)
            return -1;
        if (r->n_callrefs)
            memcpy(nv, r->calls, r->n_callrefs * sizeof *nv);
        r->calls = nv;
        r->cap_callrefs = cap;
    }
    r->calls[r->n_callrefs++] = (struct callref){b->name, b->id, false};
    return 0;
}

/* The id of the earliest unanswered call named `name` (else the latest of that name). */
static struct bb_ir_str callref_match(struct rd *r, const struct bb_ir_str *name)
{
    for (size_t i = 0; i < r->n_callrefs; i++)
        if (!r->calls[i].answered && name->p && r->calls[i].name.p &&
            strcmp(r->calls[i].name.p, name->p) == 0) {
            r->calls[i].answered = true;
            return r->calls[i].id;
        }
    for (size_t i = r->n_callrefs; i-- > 0;)
        if (name->p && r->calls[i].name.p && strcmp(r->calls[i].name.p, name->p) == 0)
            return r->calls[i].id;
    return synth_call_id(r);
}

static void callref_answer(struct rd *r, const struct bb_ir_str *id)
{
    for (size_t i = 0; i < r->n_callrefs; i++)
        if (!r->calls[i].answered && r->calls[i].id.p && id->p &&
            strcmp(r->calls[i].id.p, id->p) == 0) {
            r->calls[i].answered = true;
            return;
        }
}

/* inlineData / fileData → IMAGE or DOCUMENT. */
static int rd_media(struct rd *r, json_object *m, bool inline_data, const char *path,
                    struct blockvec *bv)
{
    char p[240];
    snprintf(p, sizeof p, "%s.%s", path, inline_data ? "inlineData" : "fileData");
    if (!jis(m, json_type_object))
        return bb_err_set(r->err, "%s: expected an object", p);
    struct bb_ir_str mime, payload;
    if (rd_str(r, m, "mimeType", "mime_type", p, &mime) < 0)
        return -1;
    if (rd_str(r, m, inline_data ? "data" : "fileUri", inline_data ? NULL : "file_uri", p,
               &payload) < 0)
        return -1;
    if (!payload.p)
        return bb_err_set(r->err, "%s.%s: required", p, inline_data ? "data" : "fileUri");
    struct bb_ir_block *b = bv_push(r->a, bv);
    if (!b)
        return rd_oom(r, p);
    const char *guess = mime.p ? mime.p : (inline_data ? NULL : mime_from_url(payload.p));
    b->type = (is_image_mime(guess) || (!guess && inline_data)) ? BB_IR_IMAGE : BB_IR_DOCUMENT;
    b->media_type = mime;
    if (inline_data)
        b->data = payload;
    else
        b->url = payload;
    return 0;
}

static int rd_function_call(struct rd *r, json_object *fc, const char *path, struct blockvec *bv)
{
    char p[240];
    snprintf(p, sizeof p, "%s.functionCall", path);
    if (!jis(fc, json_type_object))
        return bb_err_set(r->err, "%s: expected an object", p);
    struct bb_ir_block *b = bv_push(r->a, bv);
    if (!b)
        return rd_oom(r, p);
    b->type = BB_IR_TOOL_USE;
    if (rd_str(r, fc, "name", NULL, p, &b->name) < 0 || rd_str(r, fc, "id", NULL, p, &b->id) < 0)
        return -1;
    if (!b->name.p)
        b->name = bb_ir_strdup(r->a, "", 0);
    json_object *args = jget(fc, "args", NULL);
    if (args && !jis(args, json_type_object))
        return bb_err_set(r->err, "%s.args: expected an object", p);
    b->input_json = args ? jtext(r->a, args) : bb_ir_strdup(r->a, "{}", 2);
    if (!b->id.p)
        b->id = synth_call_id(r);
    if (!b->input_json.p || !b->id.p || !b->name.p)
        return rd_oom(r, p);
    if (r->req && callref_add(r, b) < 0)
        return rd_oom(r, p);
    return 0;
}

/* functionResponse.response → flat text: {"result"|"output": "s"} → s; {"error": x} → x with
 * is_error; any other object → its JSON text (so structured results survive). */
static int rd_function_response(struct rd *r, json_object *fr, const char *path,
                                struct blockvec *bv)
{
    char p[240];
    snprintf(p, sizeof p, "%s.functionResponse", path);
    if (!jis(fr, json_type_object))
        return bb_err_set(r->err, "%s: expected an object", p);
    struct bb_ir_block *b = bv_push(r->a, bv);
    if (!b)
        return rd_oom(r, p);
    b->type = BB_IR_TOOL_RESULT;
    if (rd_str(r, fr, "name", NULL, p, &b->name) < 0 || rd_str(r, fr, "id", NULL, p, &b->id) < 0)
        return -1;
    json_object *resp = jget(fr, "response", NULL);
    if (resp && !jis(resp, json_type_object))
        return bb_err_set(r->err, "%s.response: expected an object", p);
    if (jget(fr, "parts", NULL))
        rd_unsupported(r, "", "functionResponse.parts");
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
        b->text = jis(only, json_type_string) ? jdup(r->a, only) : jtext(r->a, only);
    } else if (only_key && (strcmp(only_key, "result") == 0 || strcmp(only_key, "output") == 0) &&
               jis(only, json_type_string)) {
        b->text = jdup(r->a, only);
    } else {
        b->text = resp ? jtext(r->a, resp) : bb_ir_strdup(r->a, "", 0);
    }
    if (!b->text.p)
        return rd_oom(r, p);
    if (r->req) {
        if (b->id.p)
            callref_answer(r, &b->id);
        else
            b->id = callref_match(r, &b->name);
    } else if (!b->id.p) {
        b->id = synth_call_id(r);
    }
    return b->id.p ? 0 : rd_oom(r, p);
}

static bool last_is_unsigned_thinking(const struct blockvec *bv)
{
    return bv->n && bv->v[bv->n - 1].type == BB_IR_THINKING && !bv->v[bv->n - 1].signature.p;
}

/* One part → zero or more blocks (see the header comment for where signatures go). */
static int rd_part(struct rd *r, json_object *part, const char *path, struct blockvec *bv)
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
    if (!jis(part, json_type_object))
        return bb_err_set(r->err, "%s: expected an object", path);
    json_object_object_foreach(part, key, val)
    {
        (void)val;
        if (!str_in(key, known))
            rd_unsupported(r, "", key);
    }
    struct bb_ir_str text, sig;
    if (rd_str(r, part, "text", NULL, path, &text) < 0 ||
        rd_str(r, part, "thoughtSignature", "thought_signature", path, &sig) < 0)
        return -1;
    json_object *th = jget(part, "thought", NULL);
    if (th && !jis(th, json_type_boolean))
        return bb_err_set(r->err, "%s.thought: expected a boolean", path);
    bool thought = th && json_object_get_boolean(th);
    json_object *fc = jget(part, "functionCall", "function_call");

    if (thought) {
        if (!text.len && sig.p && last_is_unsigned_thinking(bv)) {
            bv->v[bv->n - 1].signature = sig;
            return 0;
        }
        struct bb_ir_block *b = bv_push(r->a, bv);
        if (!b)
            return rd_oom(r, path);
        b->type = BB_IR_THINKING;
        b->text = text.p ? text : bb_ir_strdup(r->a, "", 0);
        b->signature = sig;
        return 0;
    }
    if (sig.p) {
        if (!fc && last_is_unsigned_thinking(bv)) {
            bv->v[bv->n - 1].signature = sig;
        } else {
            struct bb_ir_block *b = bv_push(r->a, bv);
            if (!b)
                return rd_oom(r, path);
            b->type = BB_IR_THINKING;
            b->text = bb_ir_strdup(r->a, "", 0);
            b->signature = sig;
        }
    }
    if (text.len) {
        struct bb_ir_block *b = bv_push(r->a, bv);
        if (!b)
            return rd_oom(r, path);
        b->type = BB_IR_TEXT;
        b->text = text;
    }
    json_object *m;
    if ((m = jget(part, "inlineData", "inline_data")) && rd_media(r, m, true, path, bv) < 0)
        return -1;
    if ((m = jget(part, "fileData", "file_data")) && rd_media(r, m, false, path, bv) < 0)
        return -1;
    if (fc && rd_function_call(r, fc, path, bv) < 0)
        return -1;
    if ((m = jget(part, "functionResponse", "function_response")) &&
        rd_function_response(r, m, path, bv) < 0)
        return -1;
    return 0;
}

static int rd_parts(struct rd *r, json_object *parts, const char *path, struct blockvec *bv)
{
    if (!jis(parts, json_type_array))
        return bb_err_set(r->err, "%s: expected an array", path);
    for (size_t i = 0; i < json_object_array_length(parts); i++) {
        char p[200];
        snprintf(p, sizeof p, "%s[%zu]", path, i);
        if (rd_part(r, json_object_array_get_idx(parts, i), p, bv) < 0)
            return -1;
    }
    return 0;
}

/* ======================================================================================== */
/* Ingress: read_request                                                                    */
/* ======================================================================================== */

static int rd_contents(struct rd *r, json_object *contents, struct bb_ir_request *out)
{
    if (!contents)
        return bb_err_set(r->err, "contents: required");
    if (!jis(contents, json_type_array))
        return bb_err_set(r->err, "contents: expected an array");
    size_t n = json_object_array_length(contents);
    if (!n)
        return bb_err_set(r->err, "contents: must not be empty");
    out->messages = bb_arena_calloc(r->a, n * sizeof *out->messages);
    if (!out->messages)
        return rd_oom(r, "contents");
    struct blockvec bv = {0};
    enum bb_ir_role cur = BB_IR_USER;
    for (size_t i = 0; i < n; i++) {
        char p[64];
        snprintf(p, sizeof p, "contents[%zu]", i);
        json_object *c = json_object_array_get_idx(contents, i);
        if (!jis(c, json_type_object))
            return bb_err_set(r->err, "%s: expected an object", p);
        json_object *role = jget(c, "role", NULL);
        enum bb_ir_role rl = BB_IR_USER;
        if (role) {
            const char *s = jis(role, json_type_string) ? json_object_get_string(role) : NULL;
            if (s && strcmp(s, "model") == 0)
                rl = BB_IR_ASSISTANT;
            else if (!s || (strcmp(s, "user") != 0 && strcmp(s, "function") != 0 &&
                            strcmp(s, "tool") != 0))
                return bb_err_set(r->err, "%s.role: expected \"user\" or \"model\"", p);
        }
        json_object *parts = jget(c, "parts", NULL);
        if (!parts)
            return bb_err_set(r->err, "%s.parts: required", p);
        /* Consecutive contents of one role merge into one message (Gemini allows the split,
         * the alternating protocols do not). */
        if (bv.n && rl != cur) {
            struct bb_ir_message *m = &out->messages[out->n_messages++];
            m->role = cur;
            m->blocks = bv.v;
            m->n_blocks = bv.n;
            bv = (struct blockvec){0};
        }
        cur = rl;
        char pp[80];
        snprintf(pp, sizeof pp, "%s.parts", p);
        if (rd_parts(r, parts, pp, &bv) < 0)
            return -1;
    }
    if (bv.n) {
        struct bb_ir_message *m = &out->messages[out->n_messages++];
        m->role = cur;
        m->blocks = bv.v;
        m->n_blocks = bv.n;
    }
    return 0;
}

static int rd_system(struct rd *r, json_object *si, struct bb_ir_request *out)
{
    struct blockvec bv = {0};
    if (jis(si, json_type_string)) {
        struct bb_ir_block *b = bv_push(r->a, &bv);
        if (!b)
            return rd_oom(r, "systemInstruction");
        b->type = BB_IR_TEXT;
        b->text = jdup(r->a, si);
    } else if (jis(si, json_type_object)) {
        json_object *parts = jget(si, "parts", NULL);
        if (!parts)
            return bb_err_set(r->err, "systemInstruction.parts: required");
        if (rd_parts(r, parts, "systemInstruction.parts", &bv) < 0)
            return -1;
        for (size_t i = 0; i < bv.n; i++)
            if (bv.v[i].type != BB_IR_TEXT)
                return bb_err_set(r->err,
                                  "systemInstruction.parts[%zu]: only text parts are "
                                  "supported",
                                  i);
    } else {
        return bb_err_set(r->err, "systemInstruction: expected an object");
    }
    out->system = bv.v;
    out->n_system = bv.n;
    return 0;
}

static int rd_tools(struct rd *r, json_object *tools, struct bb_ir_request *out)
{
    if (!jis(tools, json_type_array))
        return bb_err_set(r->err, "tools: expected an array");
    size_t cap = 0;
    for (size_t i = 0; i < json_object_array_length(tools); i++) {
        json_object *fd = jget(json_object_array_get_idx(tools, i), "functionDeclarations",
                               "function_declarations");
        if (jis(fd, json_type_array))
            cap += json_object_array_length(fd);
    }
    if (cap && !(out->tools = bb_arena_calloc(r->a, cap * sizeof *out->tools)))
        return rd_oom(r, "tools");
    for (size_t i = 0; i < json_object_array_length(tools); i++) {
        json_object *t = json_object_array_get_idx(tools, i);
        if (!jis(t, json_type_object))
            return bb_err_set(r->err, "tools[%zu]: expected an object", i);
        json_object_object_foreach(t, key, val)
        {
            (void)val;
            if (strcmp(key, "functionDeclarations") && strcmp(key, "function_declarations"))
                rd_unsupported(r, "tools.", key);
        }
        json_object *fd = jget(t, "functionDeclarations", "function_declarations");
        if (!fd)
            continue;
        if (!jis(fd, json_type_array))
            return bb_err_set(r->err, "tools[%zu].functionDeclarations: expected an array", i);
        for (size_t j = 0; j < json_object_array_length(fd); j++) {
            char p[96];
            snprintf(p, sizeof p, "tools[%zu].functionDeclarations[%zu]", i, j);
            json_object *d = json_object_array_get_idx(fd, j);
            if (!jis(d, json_type_object))
                return bb_err_set(r->err, "%s: expected an object", p);
            struct bb_ir_tool *tool = &out->tools[out->n_tools];
            if (rd_str(r, d, "name", NULL, p, &tool->name) < 0 ||
                rd_str(r, d, "description", NULL, p, &tool->description) < 0)
                return -1;
            if (!tool->name.p || !tool->name.len)
                return bb_err_set(r->err, "%s.name: required", p);
            json_object *params = jget(d, "parameters", NULL);
            json_object *pjs = jget(d, "parametersJsonSchema", "parameters_json_schema");
            if (pjs) {
                if (!jis(pjs, json_type_object))
                    return bb_err_set(r->err, "%s.parametersJsonSchema: expected an object", p);
                tool->parameters_json = jtext(r->a, pjs);
            } else if (params) {
                if (!jis(params, json_type_object))
                    return bb_err_set(r->err, "%s.parameters: expected an object", p);
                json_object *js = schema_to_json(params);
                tool->parameters_json = jtext(r->a, js);
                json_object_put(js);
            }
            if ((pjs || params) && !tool->parameters_json.p)
                return rd_oom(r, p);
            if (jget(d, "response", NULL) || jget(d, "responseJsonSchema", "response_json_schema"))
                rd_unsupported(r, "", "functionDeclarations.response");
            if (jget(d, "behavior", NULL))
                rd_unsupported(r, "", "functionDeclarations.behavior");
            out->n_tools++;
        }
    }
    return 0;
}

static int rd_tool_config(struct rd *r, json_object *tc, struct bb_ir_request *out)
{
    if (!jis(tc, json_type_object))
        return bb_err_set(r->err, "toolConfig: expected an object");
    json_object_object_foreach(tc, key, val)
    {
        (void)val;
        if (strcmp(key, "functionCallingConfig") && strcmp(key, "function_calling_config"))
            rd_unsupported(r, "toolConfig.", key);
    }
    json_object *fcc = jget(tc, "functionCallingConfig", "function_calling_config");
    if (!fcc)
        return 0;
    if (!jis(fcc, json_type_object))
        return bb_err_set(r->err, "toolConfig.functionCallingConfig: expected an object");
    const char *p = "toolConfig.functionCallingConfig";
    struct bb_ir_str mode;
    if (rd_str(r, fcc, "mode", NULL, p, &mode) < 0)
        return -1;
    json_object *names = jget(fcc, "allowedFunctionNames", "allowed_function_names");
    if (names && !jis(names, json_type_array))
        return bb_err_set(r->err, "%s.allowedFunctionNames: expected an array", p);
    size_t n_names = names ? json_object_array_length(names) : 0;
    for (size_t i = 0; i < n_names; i++)
        if (!jis(json_object_array_get_idx(names, i), json_type_string))
            return bb_err_set(r->err, "%s.allowedFunctionNames[%zu]: expected a string", p, i);
    if (!mode.p || str_eq(&mode, "MODE_UNSPECIFIED") || str_eq(&mode, "AUTO") ||
        str_eq(&mode, "VALIDATED")) {
        out->tool_choice = mode.p ? BB_IR_TC_AUTO : BB_IR_TC_UNSET;
        if (str_eq(&mode, "VALIDATED"))
            rd_unsupported(r, "", "toolConfig.functionCallingConfig.mode=VALIDATED");
        if (n_names)
            rd_unsupported(r, "", "toolConfig.functionCallingConfig.allowedFunctionNames");
    } else if (str_eq(&mode, "NONE")) {
        out->tool_choice = BB_IR_TC_NONE;
    } else if (str_eq(&mode, "ANY")) {
        if (n_names == 1) {
            out->tool_choice = BB_IR_TC_TOOL;
            out->tool_choice_name = jdup(r->a, json_object_array_get_idx(names, 0));
        } else {
            out->tool_choice = BB_IR_TC_ANY;
            if (n_names)
                rd_unsupported(r, "", "toolConfig.functionCallingConfig.allowedFunctionNames");
        }
    } else {
        return bb_err_set(r->err, "%s.mode: expected AUTO, ANY, NONE or VALIDATED", p);
    }
    return 0;
}

static int rd_number(struct rd *r, json_object *gc, const char *camel, const char *snake, bool *has,
                     double *out)
{
    json_object *v = jget(gc, camel, snake);
    if (!v)
        return 0;
    if (!jis_number(v))
        return bb_err_set(r->err, "generationConfig.%s: expected a number", camel);
    *has = true;
    *out = json_object_get_double(v);
    return 0;
}

/* A non-negative integer member (integral doubles such as 40.0 accepted). */
static int rd_count(struct rd *r, json_object *gc, const char *path, const char *camel,
                    const char *snake, bool *has, uint64_t *out)
{
    json_object *v = jget(gc, camel, snake);
    if (!v)
        return 0;
    double d = jis_number(v) ? json_object_get_double(v) : -1;
    if (!jis_number(v) || d < 0 || d != floor(d) || d > (double)UINT32_MAX)
        return bb_err_set(r->err, "%s.%s: expected a non-negative integer", path, camel);
    *has = true;
    *out = jis(v, json_type_int) ? (uint64_t)json_object_get_int64(v) : (uint64_t)d;
    return 0;
}

static int rd_thinking(struct rd *r, json_object *tc, struct bb_ir_request *out)
{
    const char *p = "generationConfig.thinkingConfig";
    if (!jis(tc, json_type_object))
        return bb_err_set(r->err, "%s: expected an object", p);
    json_object *inc = jget(tc, "includeThoughts", "include_thoughts");
    if (inc && !jis(inc, json_type_boolean))
        return bb_err_set(r->err, "%s.includeThoughts: expected a boolean", p);
    json_object *budget = jget(tc, "thinkingBudget", "thinking_budget");
    if (budget && !jis(budget, json_type_int))
        return bb_err_set(r->err, "%s.thinkingBudget: expected an integer", p);
    struct bb_ir_str level;
    if (rd_str(r, tc, "thinkingLevel", "thinking_level", p, &level) < 0)
        return -1;
    int64_t b = budget ? json_object_get_int64(budget) : -1;
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

static int rd_generation_config(struct rd *r, json_object *gc, struct bb_ir_request *out)
{
    static const char *const known[] = {"maxOutputTokens",
                                        "max_output_tokens",
                                        "temperature",
                                        "topP",
                                        "top_p",
                                        "topK",
                                        "top_k",
                                        "seed",
                                        "stopSequences",
                                        "stop_sequences",
                                        "presencePenalty",
                                        "presence_penalty",
                                        "frequencyPenalty",
                                        "frequency_penalty",
                                        "candidateCount",
                                        "candidate_count",
                                        "responseMimeType",
                                        "response_mime_type",
                                        "responseSchema",
                                        "response_schema",
                                        "responseJsonSchema",
                                        "response_json_schema",
                                        "thinkingConfig",
                                        "thinking_config",
                                        NULL};
    const char *p = "generationConfig";
    if (!jis(gc, json_type_object))
        return bb_err_set(r->err, "generationConfig: expected an object");
    json_object_object_foreach(gc, key, val)
    {
        (void)val;
        if (!str_in(key, known))
            rd_unsupported(r, "generationConfig.", key);
    }
    bool has = false;
    uint64_t u = 0;
    if (rd_count(r, gc, p, "maxOutputTokens", "max_output_tokens", &out->has_max_tokens, &u) < 0)
        return -1;
    if (out->has_max_tokens)
        out->max_tokens = (uint32_t)u;
    if (rd_number(r, gc, "temperature", NULL, &out->has_temperature, &out->temperature) < 0 ||
        rd_number(r, gc, "topP", "top_p", &out->has_top_p, &out->top_p) < 0 ||
        rd_number(r, gc, "presencePenalty", "presence_penalty", &out->has_presence_penalty,
                  &out->presence_penalty) < 0 ||
        rd_number(r, gc, "frequencyPenalty", "frequency_penalty", &out->has_frequency_penalty,
                  &out->frequency_penalty) < 0)
        return -1;
    if (rd_count(r, gc, p, "topK", "top_k", &out->has_top_k, &u) < 0)
        return -1;
    if (out->has_top_k)
        out->top_k = (uint32_t)u;
    json_object *seed = jget(gc, "seed", NULL);
    if (seed) {
        if (!jis(seed, json_type_int))
            return bb_err_set(r->err, "generationConfig.seed: expected an integer");
        out->has_seed = true;
        out->seed = json_object_get_int64(seed);
    }
    if (rd_count(r, gc, p, "candidateCount", "candidate_count", &has, &u) < 0)
        return -1;
    if (has)
        out->n_choices = (uint32_t)u;
    json_object *stop = jget(gc, "stopSequences", "stop_sequences");
    if (stop) {
        if (!jis(stop, json_type_array))
            return bb_err_set(r->err, "generationConfig.stopSequences: expected an array");
        size_t n = json_object_array_length(stop);
        if (n && !(out->stop = bb_arena_calloc(r->a, n * sizeof *out->stop)))
            return rd_oom(r, p);
        for (size_t i = 0; i < n; i++) {
            json_object *s = json_object_array_get_idx(stop, i);
            if (!jis(s, json_type_string))
                return bb_err_set(r->err,
                                  "generationConfig.stopSequences[%zu]: expected a "
                                  "string",
                                  i);
            out->stop[out->n_stop++] = jdup(r->a, s);
        }
    }
    struct bb_ir_str mime;
    if (rd_str(r, gc, "responseMimeType", "response_mime_type", p, &mime) < 0)
        return -1;
    json_object *schema = jget(gc, "responseSchema", "response_schema");
    json_object *jschema = jget(gc, "responseJsonSchema", "response_json_schema");
    if (schema && !jis(schema, json_type_object))
        return bb_err_set(r->err, "generationConfig.responseSchema: expected an object");
    if (jschema && !jis(jschema, json_type_object))
        return bb_err_set(r->err, "generationConfig.responseJsonSchema: expected an object");
    if (jschema) {
        out->format = BB_IR_FMT_JSON_SCHEMA;
        out->format_schema_json = jtext(r->a, jschema);
    } else if (schema) {
        out->format = BB_IR_FMT_JSON_SCHEMA;
        json_object *js = schema_to_json(schema);
        out->format_schema_json = jtext(r->a, js);
        json_object_put(js);
    } else if (str_eq(&mime, "application/json")) {
        out->format = BB_IR_FMT_JSON_OBJECT;
    } else if (str_eq(&mime, "text/plain")) {
        out->format = BB_IR_FMT_TEXT;
    } else if (mime.p) {
        rd_unsupported(r, "", "generationConfig.responseMimeType");
    }
    json_object *tc = jget(gc, "thinkingConfig", "thinking_config");
    if (tc && rd_thinking(r, tc, out) < 0)
        return -1;
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
    json_object *root = json_parse(body, len, "body", err);
    if (!root)
        return -1;
    struct rd r = {.a = a, .req = out, .err = err};
    int rc = -1;
    if (!jis(root, json_type_object)) {
        bb_err_set(err, "body: expected a JSON object");
        goto done;
    }
    json_object_object_foreach(root, key, val)
    {
        (void)val;
        if (!str_in(key, known))
            rd_unsupported(&r, "", key);
    }
    json_object *v = jget(root, "model", NULL);
    if (model_from_path) {
        if (has_prefix(model_from_path, "models/"))
            model_from_path += strlen("models/");
        out->model = bb_ir_strdup(a, model_from_path, strlen(model_from_path));
    } else if (jis(v, json_type_string)) {
        const char *m = json_object_get_string(v);
        if (has_prefix(m, "models/"))
            m += strlen("models/");
        out->model = bb_ir_strdup(a, m, strlen(m));
    } else {
        bb_err_set(err, "model: required (in the URL: /v1beta/models/{model}:generateContent)");
        goto done;
    }
    if (!out->model.p) {
        bb_err_set(err, "model: out of memory");
        goto done;
    }
    if ((v = jget(root, "systemInstruction", "system_instruction")) && rd_system(&r, v, out) < 0)
        goto done;
    if (rd_contents(&r, jget(root, "contents", NULL), out) < 0)
        goto done;
    if ((v = jget(root, "tools", NULL)) && rd_tools(&r, v, out) < 0)
        goto done;
    if ((v = jget(root, "toolConfig", "tool_config")) && rd_tool_config(&r, v, out) < 0)
        goto done;
    if ((v = jget(root, "generationConfig", "generation_config")) &&
        rd_generation_config(&r, v, out) < 0)
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
    const struct bb_ir_request *ir; /* for tool-result name look-ups; NULL for responses */
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
        jadd(in, "mimeType",
             json_object_new_string(
                 mime ? mime : (b->type == BB_IR_IMAGE ? "image/png" : "application/pdf")));
        jadd(in, "data", jnew_str(&b->data));
        json_object *p = json_object_new_object();
        jadd(p, "inlineData", in);
        return p;
    }
    if (!b->url.p)
        return NULL;
    if (has_prefix(b->url.p, "data:")) {
        /* data:<mime>;base64,<data> → inlineData */
        const char *u = b->url.p + 5;
        const char *comma = strchr(u, ',');
        const char *semi = strchr(u, ';');
        if (comma && semi && semi < comma && strncmp(semi, ";base64,", 8) == 0) {
            json_object *in = json_object_new_object();
            jadd(in, "mimeType", json_object_new_string_len(u, (int)(semi - u)));
            jadd(in, "data", json_object_new_string(comma + 1));
            json_object *p = json_object_new_object();
            jadd(p, "inlineData", in);
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
    jadd(fd, "mimeType", json_object_new_string(mime));
    jadd(fd, "fileUri", jnew_str(&b->url));
    json_object *p = json_object_new_object();
    jadd(p, "fileData", fd);
    return p;
}

/* functionCall.args: the IR's JSON text back as an object. */
static json_object *args_object(struct wr *w, const struct bb_ir_str *s)
{
    json_object *o = NULL;
    if (s->p && s->len) {
        json_tokener *tok = json_tokener_new_ex(JSON_DEPTH);
        if (tok) {
            o = json_tokener_parse_ex(tok, s->p, (int)(s->len > INT_MAX ? INT_MAX : s->len));
            json_tokener_free(tok);
        }
    }
    if (o && !jis(o, json_type_object)) {
        json_object_put(o);
        o = NULL;
        wr_drop(w, "tool_input");
    } else if (!o && s->p && s->len) {
        wr_drop(w, "tool_input");
    }
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
    if (text.p && text.len && text.p[strspn(text.p, " \t\r\n")] == '{') {
        json_tokener *tok = json_tokener_new_ex(JSON_DEPTH);
        if (tok) {
            val =
                json_tokener_parse_ex(tok, text.p, (int)(text.len > INT_MAX ? INT_MAX : text.len));
            if (json_tokener_get_error(tok) != json_tokener_success ||
                json_tokener_get_parse_end(tok) != text.len || !jis(val, json_type_object)) {
                json_object_put(val);
                val = NULL;
            }
            json_tokener_free(tok);
        }
    }
    json_object *resp;
    if (b->is_error) {
        resp = json_object_new_object();
        jadd(resp, "error", val ? val : jnew_str(&text));
    } else if (val) {
        resp = val;
    } else {
        resp = json_object_new_object();
        jadd(resp, "result", jnew_str(&text));
    }
    json_object *fr = json_object_new_object();
    struct bb_ir_str name = tool_name_for(w, b, mi);
    if (b->id.p)
        jadd(fr, "id", jnew_str(&b->id));
    jadd(fr, "name", jnew_str(&name));
    jadd(fr, "response", resp);
    json_object *p = json_object_new_object();
    jadd(p, "functionResponse", fr);
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
            jadd(p, "text", jnew_str(&b->text));
            if (b->text.len) /* a bare signature is an empty text part, as Gemini sends it */
                jadd(p, "thought", json_object_new_boolean(1));
            if (b->signature.p)
                jadd(p, "thoughtSignature", jnew_str(&b->signature));
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
            jadd(p, "text", jnew_str(&b->text));
            break;
        case BB_IR_IMAGE:
        case BB_IR_DOCUMENT:
            p = media_part(w, b);
            break;
        case BB_IR_TOOL_USE: {
            json_object *fc = json_object_new_object();
            if (b->id.p)
                jadd(fc, "id", jnew_str(&b->id));
            jadd(fc, "name", jnew_str(&b->name));
            jadd(fc, "args", args_object(w, &b->input_json));
            p = json_object_new_object();
            jadd(p, "functionCall", fc);
            break;
        }
        case BB_IR_TOOL_RESULT:
            p = function_response_part(w, b, mi, parts);
            if (carry)
                jadd(p, "thoughtSignature", jnew_str(carry));
            carry = NULL;
            continue;
        }
        if (b->cache_control)
            wr_drop(w, "cache_control");
        if (!p)
            continue;
        if (carry)
            jadd(p, "thoughtSignature", jnew_str(carry));
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
        jadd(d, "name", jnew_str(&t->name));
        if (t->description.p)
            jadd(d, "description", jnew_str(&t->description));
        if (t->parameters_json.p) {
            json_tokener *tok = json_tokener_new_ex(JSON_DEPTH);
            json_object *s =
                tok ? json_tokener_parse_ex(tok, t->parameters_json.p, (int)t->parameters_json.len)
                    : NULL;
            if (tok)
                json_tokener_free(tok);
            json_object *g = schema_to_gemini(s);
            json_object_put(s);
            /* No properties = no parameters (Gemini rejects an empty OBJECT). */
            if (g && jget(g, "properties", NULL))
                jadd(d, "parameters", g);
            else
                json_object_put(g);
        }
        if (t->strict)
            wr_drop(w, "strict");
        json_object_array_add(decls, d);
    }
    json_object *tool = json_object_new_object();
    jadd(tool, "functionDeclarations", decls);
    json_object *tools = json_object_new_array();
    json_object_array_add(tools, tool);
    return tools;
}

static json_object *build_generation_config(struct wr *w, const struct bb_ir_request *ir,
                                            const struct bb_egress_ctx *ctx)
{
    json_object *gc = json_object_new_object();
    if (ir->has_max_tokens)
        jadd(gc, "maxOutputTokens", json_object_new_int64(ir->max_tokens));
    if (ir->has_temperature)
        jadd(gc, "temperature", jnew_double(ir->temperature));
    if (ir->has_top_p)
        jadd(gc, "topP", jnew_double(ir->top_p));
    if (ir->has_top_k)
        jadd(gc, "topK", json_object_new_int64(ir->top_k));
    if (ir->has_seed) {
        if (ir->seed >= INT32_MIN && ir->seed <= INT32_MAX)
            jadd(gc, "seed", json_object_new_int64(ir->seed));
        else
            wr_drop(w, "seed"); /* Gemini's seed is an int32 */
    }
    if (ir->n_stop) {
        json_object *st = json_object_new_array();
        for (size_t i = 0; i < ir->n_stop && i < GEMINI_MAX_STOP; i++)
            json_object_array_add(st, jnew_str(&ir->stop[i]));
        if (ir->n_stop > GEMINI_MAX_STOP)
            wr_drop(w, "stop");
        jadd(gc, "stopSequences", st);
    }
    if (ir->has_presence_penalty)
        jadd(gc, "presencePenalty", jnew_double(ir->presence_penalty));
    if (ir->has_frequency_penalty)
        jadd(gc, "frequencyPenalty", jnew_double(ir->frequency_penalty));
    /* Only candidate 0 travels back through the IR, so more than one is not asked for. */
    if (ir->n_choices == 1)
        jadd(gc, "candidateCount", json_object_new_int(1));
    else if (ir->n_choices > 1)
        wr_drop(w, "n");
    switch (ir->format) {
    case BB_IR_FMT_TEXT:
        jadd(gc, "responseMimeType", json_object_new_string("text/plain"));
        break;
    case BB_IR_FMT_JSON_OBJECT:
        jadd(gc, "responseMimeType", json_object_new_string("application/json"));
        break;
    case BB_IR_FMT_JSON_SCHEMA: {
        jadd(gc, "responseMimeType", json_object_new_string("application/json"));
        json_object *s = NULL;
        if (ir->format_schema_json.p) {
            json_tokener *tok = json_tokener_new_ex(JSON_DEPTH);
            if (tok) {
                s = json_tokener_parse_ex(tok, ir->format_schema_json.p,
                                          (int)ir->format_schema_json.len);
                json_tokener_free(tok);
            }
        }
        json_object *g = schema_to_gemini(s);
        json_object_put(s);
        if (g)
            jadd(gc, "responseSchema", g);
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
                jadd(tc, "thinkingBudget", json_object_new_int64(budget));
            jadd(tc, "includeThoughts", json_object_new_boolean(1));
            jadd(gc, "thinkingConfig", tc);
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
        jadd(c, "role", json_object_new_string(m->role == BB_IR_ASSISTANT ? "model" : "user"));
        jadd(c, "parts", parts);
        json_object_array_add(contents, c);
    }
    if (!json_object_array_length(contents)) {
        json_object_put(contents);
        json_object_put(root);
        return bb_err_set(err, "messages: at least one message with content is required");
    }
    jadd(root, "contents", contents);

    if (ir->n_system) {
        json_object *parts = json_object_new_array();
        for (size_t i = 0; i < ir->n_system; i++) {
            const struct bb_ir_block *b = &ir->system[i];
            if (b->type != BB_IR_TEXT || !b->text.p)
                continue;
            json_object *p = json_object_new_object();
            jadd(p, "text", jnew_str(&b->text));
            json_object_array_add(parts, p);
            if (b->cache_control)
                wr_drop(&w, "cache_control");
        }
        json_object *si = json_object_new_object();
        jadd(si, "parts", parts);
        jadd(root, "systemInstruction", si);
    }
    if (ir->n_tools)
        jadd(root, "tools", build_tools(&w, ir));
    if (ir->tool_choice != BB_IR_TC_UNSET) {
        json_object *fcc = json_object_new_object();
        const char *mode = ir->tool_choice == BB_IR_TC_NONE   ? "NONE"
                           : ir->tool_choice == BB_IR_TC_AUTO ? "AUTO"
                                                              : "ANY";
        jadd(fcc, "mode", json_object_new_string(mode));
        if (ir->tool_choice == BB_IR_TC_TOOL && ir->tool_choice_name.p) {
            json_object *names = json_object_new_array();
            json_object_array_add(names, jnew_str(&ir->tool_choice_name));
            jadd(fcc, "allowedFunctionNames", names);
        }
        json_object *tc = json_object_new_object();
        jadd(tc, "functionCallingConfig", fcc);
        jadd(root, "toolConfig", tc);
    }
    if (ir->has_parallel_tool_calls && !ir->parallel_tool_calls)
        wr_drop(&w, "parallel_tool_calls");
    if (ir->user.p)
        wr_drop(&w, "user");
    json_object *gc = build_generation_config(&w, ir, ctx);
    if (gc)
        jadd(root, "generationConfig", gc);

    int rc = jappend(out->body, root);
    json_object_put(root);
    if (rc < 0)
        return bb_err_set(err, "gemini egress: out of memory writing the body");
    rc = evbuffer_add_printf(out->headers, "Content-Type: application/json\r\n") < 0 ? -1 : 0;
    if (rc == 0 && ctx->provider && ctx->provider->api_key)
        rc = evbuffer_add_printf(out->headers, "x-goog-api-key: %s\r\n", ctx->provider->api_key) < 0
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
    if (!jis(cands, json_type_array))
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
    const char *s = jis(rid, json_type_string) ? json_object_get_string(rid) : "";
    for (; *s && o + 1 < cap && o < 24; s++)
        if (isalnum((unsigned char)*s) || *s == '_' || *s == '-')
            dst[o++] = *s;
    dst[o] = '\0';
}

static int gemini_read_response(struct bb_arena *a, const char *body, size_t len,
                                struct bb_ir_response *out, struct bb_err *err)
{
    memset(out, 0, sizeof *out);
    json_object *root = json_parse(body, len, "gemini response", err);
    if (!root)
        return -1;
    int rc = -1;
    char seed[32];
    struct rd r = {.a = a, .err = err, .id_seed = seed};
    if (!jis(root, json_type_object)) {
        bb_err_set(err, "gemini response: expected a JSON object");
        goto done;
    }
    if (jget(root, "error", NULL)) {
        json_object *m = jget(jget(root, "error", NULL), "message", NULL);
        bb_err_set(err, "gemini response: error body: %s",
                   jis(m, json_type_string) ? json_object_get_string(m) : "(no message)");
        goto done;
    }
    id_seed(seed, sizeof seed, jget(root, "responseId", "response_id"));
    if (rd_str(&r, root, "responseId", "response_id", "gemini response", &out->id) < 0 ||
        rd_str(&r, root, "modelVersion", "model_version", "gemini response", &out->model) < 0)
        goto done;
    json_object *cand = first_candidate(root);
    struct blockvec bv = {0};
    bool saw_tool = false;
    json_object *parts = jget(jget(cand, "content", NULL), "parts", NULL);
    if (parts && rd_parts(&r, parts, "candidates[0].content.parts", &bv) < 0)
        goto done;
    for (size_t i = 0; i < bv.n; i++)
        saw_tool = saw_tool || bv.v[i].type == BB_IR_TOOL_USE;
    out->blocks = bv.v;
    out->n_blocks = bv.n;
    json_object *fr = jget(cand, "finishReason", "finish_reason");
    if (cand)
        out->stop = stop_from_gemini(
            jis(fr, json_type_string) ? json_object_get_string(fr) : "STOP", saw_tool);
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
        jadd(p, "text", json_object_new_string(""));
        json_object_array_add(parts, p);
    }
    json_object *content = json_object_new_object();
    jadd(content, "parts", parts);
    jadd(content, "role", json_object_new_string("model"));
    json_object *cand = json_object_new_object();
    jadd(cand, "content", content);
    jadd(cand, "finishReason", json_object_new_string(stop_to_gemini(r->stop)));
    jadd(cand, "index", json_object_new_int(0));
    json_object *cands = json_object_new_array();
    json_object_array_add(cands, cand);
    json_object *root = json_object_new_object();
    jadd(root, "candidates", cands);
    if (r->usage.set)
        jadd(root, "usageMetadata", usage_to_gemini(&r->usage));
    const char *model = r->model.p ? r->model.p : ctx->model;
    if (model)
        jadd(root, "modelVersion", json_object_new_string(model));
    const char *id = r->id.p ? r->id.p : ctx->request_id;
    if (id)
        jadd(root, "responseId", json_object_new_string(id));
    int rc = jappend(out, root);
    json_object_put(root);
    return rc < 0 ? -1 : 0;
}

/* ======================================================================================== */
/* Ingress: stream encoder                                                                  */
/* ======================================================================================== */

static const char *gemini_stream_content_type(const struct bb_ingress_ctx *ctx)
{
    return ctx && ctx->gemini_sse ? "text/event-stream" : "application/json";
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
    bool think_open; /* the current THINKING block and whether it had text */
    uint32_t think_index;
    bool think_had_text;
    char *pending_sig; /* a text-less thinking block's signature (malloc'd) */
    size_t pending_len;
};

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
    e->sse = ctx && ctx->gemini_sse;
    if (ctx && ctx->request_id)
        snprintf(e->id, sizeof e->id, "%s", ctx->request_id);
    if (ctx && ctx->model)
        snprintf(e->model, sizeof e->model, "%s", ctx->model);
}

/* Frame one element: SSE `data: {...}\r\n\r\n`, or a JSON array element. */
static int enc_write(struct gem_enc *e, json_object *o, struct evbuffer *out)
{
    size_t n = 0;
    const char *s = json_object_to_json_string_length(o, JSON_OUT, &n);
    int rc;
    if (!s)
        rc = -1;
    else if (e->sse)
        rc = evbuffer_add_printf(out, "data: %s\r\n\r\n", s) < 0 ? -1 : 0;
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
        jadd(content, "parts", parts);
        jadd(content, "role", json_object_new_string("model"));
        jadd(cand, "content", content);
    }
    if (finish)
        jadd(cand, "finishReason", json_object_new_string(finish));
    jadd(cand, "index", json_object_new_int(0));
    json_object *cands = json_object_new_array();
    json_object_array_add(cands, cand);
    json_object *root = json_object_new_object();
    jadd(root, "candidates", cands);
    if (u) {
        jadd(root, "usageMetadata", usage_to_gemini(u));
    } else if (e->start_usage.set) {
        /* Like Gemini, every chunk reports the prompt side once it is known. */
        const struct bb_ir_usage *s = &e->start_usage;
        uint64_t prompt = s->input + s->cache_read + s->cache_write;
        json_object *um = json_object_new_object();
        jadd(um, "promptTokenCount", json_object_new_int64((int64_t)prompt));
        jadd(um, "totalTokenCount", json_object_new_int64((int64_t)prompt));
        if (s->cache_read)
            jadd(um, "cachedContentTokenCount", json_object_new_int64((int64_t)s->cache_read));
        jadd(root, "usageMetadata", um);
    }
    if (e->model[0])
        jadd(root, "modelVersion", json_object_new_string(e->model));
    if (e->id[0])
        jadd(root, "responseId", json_object_new_string(e->id));
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
    jadd(part, "thoughtSignature", json_object_new_string_len(e->pending_sig, (int)e->pending_len));
    free(e->pending_sig);
    e->pending_sig = NULL;
}

/* A signature with no part of its own, in Gemini's form: an empty text part carrying it. */
static json_object *sig_part(const char *s, size_t n)
{
    json_object *p = json_object_new_object();
    jadd(p, "text", json_object_new_string(""));
    jadd(p, "thoughtSignature", json_object_new_string_len(s, (int)n));
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
        jadd(fc, "id", json_object_new_string(t->id));
    jadd(fc, "name", json_object_new_string(t->name));
    jadd(fc, "args", args_object(&w, &(struct bb_ir_str){t->args, t->len}));
    json_object *p = json_object_new_object();
    jadd(p, "functionCall", fc);
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
        if (ev->block_type == BB_IR_THINKING || ev->block_type == BB_IR_REDACTED_THINKING) {
            e->think_open = true;
            e->think_index = ev->index;
            e->think_had_text = false;
        }
        return 0;
    case BB_IR_EV_BLOCK_DELTA: {
        json_object *p;
        switch (ev->delta) {
        case BB_IR_D_TEXT:
            if (!ev->text.len)
                return 0;
            p = json_object_new_object();
            jadd(p, "text", jnew_str(&ev->text));
            enc_take_sig(e, p);
            break;
        case BB_IR_D_THINKING:
            if (!ev->text.len)
                return 0;
            if (enc_flush_sig(e, out) < 0)
                return -1;
            if (e->think_open && e->think_index == ev->index)
                e->think_had_text = true;
            p = json_object_new_object();
            jadd(p, "text", jnew_str(&ev->text));
            jadd(p, "thought", json_object_new_boolean(1));
            break;
        case BB_IR_D_SIGNATURE:
            if (!ev->text.p)
                return 0;
            if (e->think_open && e->think_index == ev->index && e->think_had_text) {
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
        if (e->think_open && e->think_index == ev->index)
            e->think_open = false;
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
        jadd(p, "text", json_object_new_string(""));
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
    bool open; /* a TEXT or THINKING block is open */
    enum bb_ir_block_type open_type;
    bool open_signed; /* the open THINKING block has its signature */
    uint32_t open_index, next_index;
    uint32_t n_calls;
    bool saw_tool;
    struct bb_ir_usage usage; /* the latest usageMetadata */
    char seed[32];            /* responseId-derived, for synthesised call ids */
};

static void gemini_dec_init(void *dec)
{
    memset(dec, 0, sizeof(struct gem_dec));
}

struct emitter {
    bb_ir_event_cb cb;
    void *arg;
    int rc;
};

static int emit(struct emitter *em, const struct bb_ir_event *ev)
{
    if (em->rc == 0)
        em->rc = em->cb(em->arg, ev);
    return em->rc;
}

static int dec_close(struct gem_dec *d, struct emitter *em)
{
    if (!d->open)
        return 0;
    d->open = false;
    struct bb_ir_event ev = {.type = BB_IR_EV_BLOCK_STOP, .index = d->open_index};
    return emit(em, &ev);
}

static int dec_open(struct gem_dec *d, struct emitter *em, enum bb_ir_block_type t)
{
    if (dec_close(d, em))
        return em->rc;
    d->open = true;
    d->open_type = t;
    d->open_signed = false;
    d->open_index = d->next_index++;
    struct bb_ir_event ev = {.type = BB_IR_EV_BLOCK_START, .index = d->open_index, .block_type = t};
    return emit(em, &ev);
}

static int dec_delta(struct gem_dec *d, struct emitter *em, enum bb_ir_delta k, struct bb_ir_str s)
{
    struct bb_ir_event ev = {.type = BB_IR_EV_BLOCK_DELTA,
                             .index = d->open_index,
                             .block_type = d->open_type,
                             .delta = k,
                             .text = s};
    return emit(em, &ev);
}

/* The blocks of one chunk → events, continuing the open TEXT/THINKING block across chunks. */
static int dec_blocks(struct gem_dec *d, struct emitter *em, const struct blockvec *bv)
{
    for (size_t i = 0; i < bv->n && !em->rc; i++) {
        const struct bb_ir_block *b = &bv->v[i];
        switch (b->type) {
        case BB_IR_THINKING: {
            /* A signature-only block right before a call stays its own block (its
             * signature belongs to that functionCall part). */
            bool before_call = i + 1 < bv->n && bv->v[i + 1].type == BB_IR_TOOL_USE;
            bool cont = d->open && d->open_type == BB_IR_THINKING && !d->open_signed &&
                        !(before_call && !b->text.len);
            if (!cont && dec_open(d, em, BB_IR_THINKING))
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
            if (!(d->open && d->open_type == BB_IR_TEXT) && dec_open(d, em, BB_IR_TEXT))
                break;
            dec_delta(d, em, BB_IR_D_TEXT, b->text);
            break;
        case BB_IR_TOOL_USE: {
            if (dec_close(d, em))
                break;
            uint32_t idx = d->next_index++;
            d->saw_tool = true;
            struct bb_ir_event ev = {.type = BB_IR_EV_BLOCK_START,
                                     .index = idx,
                                     .block_type = BB_IR_TOOL_USE,
                                     .id = b->id,
                                     .name = b->name};
            if (emit(em, &ev))
                break;
            ev = (struct bb_ir_event){.type = BB_IR_EV_BLOCK_DELTA,
                                      .index = idx,
                                      .block_type = BB_IR_TOOL_USE,
                                      .delta = BB_IR_D_INPUT_JSON,
                                      .text = b->input_json};
            if (emit(em, &ev))
                break;
            ev = (struct bb_ir_event){.type = BB_IR_EV_BLOCK_STOP, .index = idx};
            emit(em, &ev);
            break;
        }
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
    struct emitter em = {cb, arg, 0};
    size_t n = f->data_len;
    const char *p = f->data;
    while (n && isspace((unsigned char)*p))
        p++, n--;
    if (!n || d->finished)
        return 0; /* keep-alive, or a usage-only chunk after the finishReason */

    struct bb_err err;
    json_object *root = json_parse(p, n, "gemini stream chunk", &err);
    if (!root || !jis(root, json_type_object)) {
        json_object_put(root);
        return -1;
    }
    int rc = -1;
    json_object *e = jget(root, "error", NULL);
    if (e) {
        json_object *code = jget(e, "code", NULL), *msg = jget(e, "message", NULL);
        json_object *status = jget(e, "status", NULL);
        struct bb_ir_event ev = {.type = BB_IR_EV_ERROR};
        ev.error_status = jis(code, json_type_int) ? json_object_get_int(code) : 0;
        ev.text =
            jis(msg, json_type_string) ? jdup(scratch, msg) : bb_ir_strdup(scratch, "error", 5);
        if (jis(status, json_type_string))
            ev.error_type = jdup(scratch, status);
        d->finished = true;
        rc = emit(&em, &ev);
        goto done;
    }
    if (!d->started) {
        id_seed(d->seed, sizeof d->seed, jget(root, "responseId", "response_id"));
        json_object *rid = jget(root, "responseId", "response_id");
        json_object *mv = jget(root, "modelVersion", "model_version");
        struct bb_ir_event ev = {.type = BB_IR_EV_MESSAGE_START};
        if (jis(rid, json_type_string))
            ev.id = jdup(scratch, rid);
        if (jis(mv, json_type_string))
            ev.model = jdup(scratch, mv);
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

    struct rd r = {.a = scratch, .err = &err, .id_seed = d->seed, .n_calls = d->n_calls};
    json_object *cand = first_candidate(root);
    json_object *parts = jget(jget(cand, "content", NULL), "parts", NULL);
    struct blockvec bv = {0};
    if (parts && rd_parts(&r, parts, "candidates[0].content.parts", &bv) < 0)
        goto done;
    d->n_calls = r.n_calls;
    if (dec_blocks(d, &em, &bv)) {
        rc = em.rc;
        goto done;
    }
    json_object *fr = jget(cand, "finishReason", "finish_reason");
    bool blocked = !cand && jget(jget(root, "promptFeedback", "prompt_feedback"), "blockReason",
                                 "block_reason");
    if (jis(fr, json_type_string) || blocked) {
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

static void copy_field(char *dst, size_t cap, json_object *s)
{
    snprintf(dst, cap, "%s", jis(s, json_type_string) ? json_object_get_string(s) : "");
}

/* {"error":{"code","message","status","details":[{"reason"}...]}} (also wrapped in an array,
 * as :streamGenerateContent without alt=sse reports errors). */
static int gemini_read_error(const char *body, size_t len, struct bb_proto_error *out)
{
    memset(out, 0, sizeof *out);
    struct bb_err err;
    json_object *root = body && len ? json_parse(body, len, "error body", &err) : NULL;
    if (!root)
        return -1;
    json_object *top = root;
    if (jis(root, json_type_array))
        top = json_object_array_length(root) ? json_object_array_get_idx(root, 0) : NULL;
    json_object *e = jget(top, "error", NULL);
    int rc = -1;
    if (jis(e, json_type_object)) {
        copy_field(out->message, sizeof out->message, jget(e, "message", NULL));
        copy_field(out->type, sizeof out->type, jget(e, "status", NULL));
        json_object *details = jget(e, "details", NULL);
        for (size_t i = 0; jis(details, json_type_array) && i < json_object_array_length(details);
             i++) {
            json_object *reason = jget(json_object_array_get_idx(details, i), "reason", NULL);
            if (jis(reason, json_type_string)) {
                copy_field(out->code, sizeof out->code, reason);
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
        (ctx->provider->api_key &&
         evbuffer_add_printf(out->headers, "x-goog-api-key: %s\r\n", ctx->provider->api_key) <
             0) ||
        evbuffer_add(out->body, body, len) < 0)
        return bb_err_set(err, "out of memory");
    return 0;
}

/* An answer has `candidates` (or only promptFeedback when the prompt was blocked); an error is
 * {"error":{code,message,status}}. */
static int gemini_answer_check(const char *body, size_t len, struct bb_proto_error *out)
{
    struct bb_jscan_field f[3] = {
        {.key = "error"}, {.key = "candidates"}, {.key = "promptFeedback"}};
    if (bb_proto_scan_answer(body, len, f, 3, out) < 0)
        return -1;
    if (f[0].type == BB_JOBJECT)
        return bb_proto_inband(&bb_proto_gemini, body, len, out);
    if (f[1].type != BB_JARRAY && f[2].type != BB_JOBJECT) {
        snprintf(out->message, sizeof out->message, "no 'candidates' array");
        return -1;
    }
    return 0;
}

const struct bb_proto_ops bb_proto_gemini = {
    .id = BB_PROTO_GEMINI,
    .name = "gemini",
    .framing = BB_FRAMING_SSE,
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
};
