/*
 * proto_openai: the OpenAI chat completions wire protocol (POST /v1/chat/completions) in both
 * roles. As ingress it reads client requests into the IR and writes chat.completion objects
 * and `data:` chunk streams ending in `data: [DONE]`; as egress it writes upstream requests
 * and reads completions, chunk streams and error bodies back into the IR.
 *
 * Worker process, single-threaded, no globals: per-stream state lives in the encoder/decoder
 * structs the caller allocates (enc_size/dec_size). json-c objects never outlive a call; every
 * string handed out is copied into the arena given.
 *
 * Non-standard but widespread extensions understood here: `reasoning_content` (DeepSeek,
 * vLLM, LiteLLM) for reasoning text, and LiteLLM's `thinking_blocks` ({type:"thinking",
 * thinking, signature} / {type:"redacted_thinking", data}) so that an OpenAI client can carry
 * an Anthropic thinking signature from one turn to the next. docs/protocols/openai.md has the
 * per-field fidelity table.
 */
#include "worker/proto.h"
#include "common/jscan.h"

#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <json-c/json.h>

#define JSON_DEPTH_MAX 128
#define JFLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)
#define STOP_MAX 4        /* OpenAI accepts at most four stop sequences */
#define ENC_TOOLS_MAX 64  /* tool calls per streamed message whose block index we remember */
#define DEC_TOOLS_MAX 128 /* tool_calls[].index values per streamed message we map */

/* ------------------------------------------------------------------------------------------ */
/* JSON helpers                                                                               */
/* ------------------------------------------------------------------------------------------ */

/* Parse one JSON value that must fill s[0..n) (trailing whitespace allowed), depth-limited.
 * NULL with a reason in why. */
static json_object *json_parse(const char *s, size_t n, char *why, size_t why_cap)
{
    if (n > (size_t)INT_MAX) {
        snprintf(why, why_cap, "body too large");
        return NULL;
    }
    struct json_tokener *tok = json_tokener_new_ex(JSON_DEPTH_MAX);
    if (!tok) {
        snprintf(why, why_cap, "out of memory");
        return NULL;
    }
    json_object *o = json_tokener_parse_ex(tok, s, (int)n);
    enum json_tokener_error je = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (je == json_tokener_continue) {
        snprintf(why, why_cap, "unexpected end of JSON");
        json_object_put(o);
        return NULL;
    }
    if (je != json_tokener_success) {
        snprintf(why, why_cap, "invalid JSON at offset %zu: %s", end, json_tokener_error_desc(je));
        json_object_put(o);
        return NULL;
    }
    if (!o) { /* a bare null: never what a caller wants */
        snprintf(why, why_cap, "expected a JSON object, got null");
        return NULL;
    }
    for (size_t i = end; i < n; i++) {
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') {
            snprintf(why, why_cap, "invalid JSON at offset %zu: trailing data", i);
            json_object_put(o);
            return NULL;
        }
    }
    return o;
}

/* A member of an object; NULL when absent or JSON null (json-c represents null as NULL). */
static json_object *get(json_object *o, const char *key)
{
    json_object *v = NULL;
    if (!o || !json_object_is_type(o, json_type_object))
        return NULL;
    return json_object_object_get_ex(o, key, &v) ? v : NULL;
}

static bool is_type(json_object *v, enum json_type t)
{
    return v && json_object_is_type(v, t);
}

static bool is_num(json_object *v)
{
    return is_type(v, json_type_int) || is_type(v, json_type_double);
}

/* A non-negative integer (an integral double is accepted, as JavaScript clients send them). */
static bool get_u64(json_object *v, uint64_t max, uint64_t *out)
{
    if (is_type(v, json_type_int)) {
        int64_t i = json_object_get_int64(v);
        if (i < 0 || (uint64_t)i > max) {
            /* json-c clamps big values to INT64_MAX; uint64 may still fit */
            if (i == INT64_MAX && json_object_get_uint64(v) <= max) {
                *out = json_object_get_uint64(v);
                return true;
            }
            return false;
        }
        *out = (uint64_t)i;
        return true;
    }
    if (is_type(v, json_type_double)) {
        double d = json_object_get_double(v);
        if (!(d >= 0) || d != floor(d) || d > (double)max)
            return false;
        *out = (uint64_t)d;
        return true;
    }
    return false;
}

static uint64_t get_count(json_object *o, const char *key)
{
    uint64_t v = 0;
    return get_u64(get(o, key), UINT64_MAX, &v) ? v : 0;
}

/* A number with the shortest text that reads back to the same double, kept a double on the
 * wire ("1.0", not "1"), so 0.7 is written 0.7 rather than json-c's 0.69999999999999996. */
static json_object *jdouble(double d)
{
    char buf[40];
    if (!isfinite(d))
        d = 0;
    snprintf(buf, sizeof buf, "%.15g", d);
    if (strtod(buf, NULL) != d)
        snprintf(buf, sizeof buf, "%.17g", d);
    if (!strpbrk(buf, ".eE"))
        strncat(buf, ".0", sizeof buf - strlen(buf) - 1);
    return json_object_new_double_s(d, buf);
}

static json_object *jstr(const struct bb_ir_str *s)
{
    return json_object_new_string_len(s->p ? s->p : "", s->p ? (int)s->len : 0);
}

static json_object *jstrn(const char *s, size_t n)
{
    return json_object_new_string_len(s, (int)n);
}

/* Parse a raw-JSON IR field back into an object (tool parameters, schema); NULL if invalid. */
static json_object *jraw(const struct bb_ir_str *s)
{
    char why[128];
    if (!s->p)
        return NULL;
    return json_parse(s->p, s->len, why, sizeof why);
}

static int add_json(struct evbuffer *b, json_object *o)
{
    size_t len = 0;
    const char *s = json_object_to_json_string_length(o, JFLAGS, &len);
    return s && evbuffer_add(b, s, len) == 0 ? 0 : -1;
}

/* One SSE frame `data: {json}\n\n`. */
static int add_frame(struct evbuffer *b, json_object *o)
{
    size_t len = 0;
    const char *s = json_object_to_json_string_length(o, JFLAGS, &len);
    if (!s || evbuffer_add(b, "data: ", 6) || evbuffer_add(b, s, len) || evbuffer_add(b, "\n\n", 2))
        return -1;
    return 0;
}

static int dup_json_str(struct bb_arena *a, json_object *v, struct bb_ir_str *out)
{
    *out = bb_ir_strdup(a, json_object_get_string(v), (size_t)json_object_get_string_len(v));
    return out->p ? 0 : -1;
}

/* Serialise any JSON value into the arena (raw JSON IR fields). */
static int dup_json_text(struct bb_arena *a, json_object *v, struct bb_ir_str *out)
{
    size_t len = 0;
    const char *s = json_object_to_json_string_length(v, JFLAGS, &len);
    if (!s)
        return -1;
    *out = bb_ir_strdup(a, s, len);
    return out->p ? 0 : -1;
}

/* "data:<media type>;base64,<data>" → its two parts; false for any other URL. */
static bool split_data_url(const char *u, size_t n, const char **mt, size_t *mt_len,
                           const char **data, size_t *data_len)
{
    if (n < 5 || strncmp(u, "data:", 5) != 0)
        return false;
    const char *comma = memchr(u, ',', n);
    if (!comma)
        return false;
    const char *head = u + 5;
    size_t head_len = (size_t)(comma - head);
    if (head_len < 7 || memcmp(comma - 7, ";base64", 7) != 0)
        return false;
    *mt = head;
    *mt_len = head_len - 7;
    *data = comma + 1;
    *data_len = n - (size_t)(comma + 1 - u);
    return true;
}

/* ---- stop reasons and usage, both directions ---- */

static enum bb_ir_stop stop_from_finish(const char *f)
{
    if (!f)
        return BB_IR_STOP_UNSET;
    if (strcmp(f, "length") == 0)
        return BB_IR_STOP_MAX_TOKENS;
    if (strcmp(f, "tool_calls") == 0 || strcmp(f, "function_call") == 0)
        return BB_IR_STOP_TOOL_USE;
    if (strcmp(f, "content_filter") == 0)
        return BB_IR_STOP_CONTENT_FILTER;
    return BB_IR_STOP_END_TURN; /* "stop" and the dialects' variants ("eos", ...) */
}

/* OpenAI clients loop on finish_reason "tool_calls": a message that carries tool calls says so
 * even when the provider reported a plain stop (Gemini does). Refusal has no finish reason of
 * its own; content_filter is what a client checks for "the answer was withheld". */
static const char *finish_name(enum bb_ir_stop s, bool has_tools)
{
    switch (s) {
    case BB_IR_STOP_MAX_TOKENS:
        return "length";
    case BB_IR_STOP_TOOL_USE:
        return "tool_calls";
    case BB_IR_STOP_CONTENT_FILTER:
    case BB_IR_STOP_REFUSAL:
        return "content_filter";
    case BB_IR_STOP_UNSET:
    case BB_IR_STOP_END_TURN:
    case BB_IR_STOP_STOP_SEQUENCE:
    case BB_IR_STOP_PAUSE:
    case BB_IR_STOP_ERROR:
        break;
    }
    return has_tools ? "tool_calls" : "stop";
}

/* OpenAI usage → IR: prompt_tokens includes the cached (and cache-written) tokens. */
static void usage_read(json_object *u, struct bb_ir_usage *out)
{
    if (!is_type(u, json_type_object))
        return;
    json_object *pd = get(u, "prompt_tokens_details");
    json_object *cd = get(u, "completion_tokens_details");
    uint64_t prompt = get_count(u, "prompt_tokens");
    out->set = true;
    out->cache_read = get_count(pd, "cached_tokens");
    out->cache_write = get_count(pd, "cache_write_tokens");
    uint64_t cached = out->cache_read + out->cache_write;
    out->input = prompt > cached ? prompt - cached : 0;
    out->output = get_count(u, "completion_tokens");
    out->reasoning = get_count(cd, "reasoning_tokens");
}

static json_object *usage_write(const struct bb_ir_usage *u)
{
    uint64_t prompt = u->input + u->cache_read + u->cache_write;
    json_object *o = json_object_new_object();
    json_object_object_add(o, "prompt_tokens", json_object_new_int64((int64_t)prompt));
    json_object_object_add(o, "completion_tokens", json_object_new_int64((int64_t)u->output));
    json_object_object_add(o, "total_tokens", json_object_new_int64((int64_t)(prompt + u->output)));
    json_object *pd = json_object_new_object();
    json_object_object_add(pd, "cached_tokens", json_object_new_int64((int64_t)u->cache_read));
    if (u->cache_write)
        json_object_object_add(pd, "cache_write_tokens",
                               json_object_new_int64((int64_t)u->cache_write));
    json_object_object_add(o, "prompt_tokens_details", pd);
    json_object *cd = json_object_new_object();
    json_object_object_add(cd, "reasoning_tokens", json_object_new_int64((int64_t)u->reasoning));
    json_object_object_add(o, "completion_tokens_details", cd);
    return o;
}

/* ------------------------------------------------------------------------------------------ */
/* ingress: read_request                                                                      */
/* ------------------------------------------------------------------------------------------ */

struct blockvec {
    struct bb_ir_block *v;
    size_t n, cap;
};

static struct bb_ir_block *bv_push(struct bb_arena *a, struct blockvec *bv)
{
    if (bv->n == bv->cap) {
        size_t cap = bv->cap ? bv->cap * 2 : 4;
        struct bb_ir_block *v = bb_arena_alloc(a, cap * sizeof *v);
        if (!v)
            return NULL;
        if (bv->n)
            memcpy(v, bv->v, bv->n * sizeof *v);
        bv->v = v;
        bv->cap = cap;
    }
    struct bb_ir_block *b = &bv->v[bv->n++];
    memset(b, 0, sizeof *b);
    return b;
}

struct rd {
    struct bb_arena *a;
    struct bb_ir_request *req;
    struct bb_err *err;
    struct bb_ir_message *msgs;
    size_t n_msgs;
    bool last_is_tool;          /* msgs[n_msgs-1] holds only results from tool/function roles */
    struct bb_ir_str legacy_id; /* the last legacy function_call's synthesised id */
    unsigned n_legacy;
};

static int rd_oom(struct rd *r)
{
    return bb_err_set(r->err, "out of memory while reading the request");
}

/* Record an unsupported field by a name built at run time (copied into the arena). */
static int rd_unsupported_fmt(struct rd *r, const char *prefix, const char *name)
{
    size_t pl = strlen(prefix), nl = strlen(name);
    char *s = bb_arena_alloc(r->a, pl + nl + 1);
    if (!s)
        return rd_oom(r);
    memcpy(s, prefix, pl);
    memcpy(s + pl, name, nl + 1);
    return bb_ir_unsupported(r->a, r->req, s) ? rd_oom(r) : 0;
}

static int rd_unsupported(struct rd *r, const char *field)
{
    return bb_ir_unsupported(r->a, r->req, field) ? rd_oom(r) : 0;
}

static int rd_text_block(struct rd *r, struct blockvec *bv, json_object *s)
{
    struct bb_ir_block *b = bv_push(r->a, bv);
    if (!b)
        return rd_oom(r);
    b->type = BB_IR_TEXT;
    return dup_json_str(r->a, s, &b->text) ? rd_oom(r) : 0;
}

/* An image_url or file part of a user message. */
static int rd_image(struct rd *r, struct blockvec *bv, json_object *part, const char *where,
                    size_t j)
{
    json_object *iu = get(part, "image_url");
    json_object *url = is_type(iu, json_type_string) ? iu : get(iu, "url");
    if (!is_type(url, json_type_string))
        return bb_err_set(r->err, "%s.content[%zu].image_url.url: expected a string", where, j);
    json_object *detail = get(iu, "detail");
    if (is_type(detail, json_type_string) && strcmp(json_object_get_string(detail), "auto") != 0)
        if (rd_unsupported(r, "image_url.detail"))
            return -1;
    struct bb_ir_block *b = bv_push(r->a, bv);
    if (!b)
        return rd_oom(r);
    b->type = BB_IR_IMAGE;
    const char *u = json_object_get_string(url), *mt, *data;
    size_t ul = (size_t)json_object_get_string_len(url), mt_len, data_len;
    if (split_data_url(u, ul, &mt, &mt_len, &data, &data_len)) {
        b->media_type = bb_ir_strdup(r->a, mt, mt_len);
        b->data = bb_ir_strdup(r->a, data, data_len);
        if (!b->media_type.p || !b->data.p)
            return rd_oom(r);
    } else {
        b->url = bb_ir_strdup(r->a, u, ul);
        if (!b->url.p)
            return rd_oom(r);
    }
    return 0;
}

/* A file part: inline base64 (file_data as a data: URL) becomes a DOCUMENT; an uploaded
 * file_id cannot travel to another provider. */
static int rd_file(struct rd *r, struct blockvec *bv, json_object *part, const char *where,
                   size_t j)
{
    json_object *f = get(part, "file");
    if (!is_type(f, json_type_object))
        return bb_err_set(r->err, "%s.content[%zu].file: expected an object", where, j);
    json_object *fd = get(f, "file_data");
    if (fd && !is_type(fd, json_type_string))
        return bb_err_set(r->err, "%s.content[%zu].file.file_data: expected a string", where, j);
    const char *mt, *data;
    size_t mt_len, data_len;
    if (!fd || !split_data_url(json_object_get_string(fd), (size_t)json_object_get_string_len(fd),
                               &mt, &mt_len, &data, &data_len))
        return rd_unsupported(r, get(f, "file_id") ? "file.file_id" : "file");
    struct bb_ir_block *b = bv_push(r->a, bv);
    if (!b)
        return rd_oom(r);
    b->type = BB_IR_DOCUMENT;
    b->media_type = bb_ir_strdup(r->a, mt, mt_len);
    b->data = bb_ir_strdup(r->a, data, data_len);
    return b->media_type.p && b->data.p ? 0 : rd_oom(r);
}

enum part_set { PARTS_TEXT, PARTS_USER, PARTS_ASSISTANT };

/* Message content: a string, or an array of parts (which parts are allowed depends on the
 * role). A JSON null is no content. */
static int rd_content(struct rd *r, struct blockvec *bv, json_object *c, const char *where,
                      enum part_set set)
{
    if (!c)
        return 0;
    if (is_type(c, json_type_string))
        return rd_text_block(r, bv, c);
    if (!is_type(c, json_type_array))
        return bb_err_set(r->err, "%s.content: expected a string or an array", where);
    size_t n = json_object_array_length(c);
    for (size_t j = 0; j < n; j++) {
        json_object *part = json_object_array_get_idx(c, j);
        json_object *type = get(part, "type");
        if (!is_type(part, json_type_object) || !is_type(type, json_type_string))
            return bb_err_set(r->err, "%s.content[%zu]: expected an object with a 'type'", where,
                              j);
        const char *t = json_object_get_string(type);
        if (strcmp(t, "text") == 0) {
            json_object *text = get(part, "text");
            if (!is_type(text, json_type_string))
                return bb_err_set(r->err, "%s.content[%zu].text: expected a string", where, j);
            if (rd_text_block(r, bv, text))
                return -1;
        } else if (strcmp(t, "refusal") == 0 && set == PARTS_ASSISTANT) {
            /* a refusal the assistant gave earlier is still what it said */
            json_object *text = get(part, "refusal");
            if (!is_type(text, json_type_string))
                return bb_err_set(r->err, "%s.content[%zu].refusal: expected a string", where, j);
            if (rd_text_block(r, bv, text))
                return -1;
        } else if (strcmp(t, "image_url") == 0 && set == PARTS_USER) {
            if (rd_image(r, bv, part, where, j))
                return -1;
        } else if (strcmp(t, "file") == 0 && set == PARTS_USER) {
            if (rd_file(r, bv, part, where, j))
                return -1;
        } else if (rd_unsupported_fmt(r, "content.", t)) {
            return -1;
        }
    }
    return 0;
}

/* Arguments travel as JSON object text; OpenAI sends a string (kept as is), a few clients an
 * object (serialised). Empty means no arguments. */
static int rd_arguments(struct rd *r, json_object *args, struct bb_ir_str *out, const char *where)
{
    if (!args || (is_type(args, json_type_string) && json_object_get_string_len(args) == 0)) {
        *out = bb_ir_strdup(r->a, "{}", 2);
        return out->p ? 0 : rd_oom(r);
    }
    if (is_type(args, json_type_string))
        return dup_json_str(r->a, args, out) ? rd_oom(r) : 0;
    if (is_type(args, json_type_object))
        return dup_json_text(r->a, args, out) ? rd_oom(r) : 0;
    return bb_err_set(r->err, "%s.arguments: expected a string", where);
}

static int rd_tool_calls(struct rd *r, struct blockvec *bv, json_object *tc, const char *where)
{
    if (!is_type(tc, json_type_array))
        return bb_err_set(r->err, "%s.tool_calls: expected an array", where);
    size_t n = json_object_array_length(tc);
    for (size_t j = 0; j < n; j++) {
        json_object *call = json_object_array_get_idx(tc, j);
        if (!is_type(call, json_type_object))
            return bb_err_set(r->err, "%s.tool_calls[%zu]: expected an object", where, j);
        json_object *type = get(call, "type");
        if (type && (!is_type(type, json_type_string) ||
                     strcmp(json_object_get_string(type), "function") != 0)) {
            if (rd_unsupported(r, "tool_calls.custom"))
                return -1;
            continue;
        }
        json_object *id = get(call, "id"), *fn = get(call, "function");
        json_object *name = get(fn, "name");
        if (!is_type(id, json_type_string))
            return bb_err_set(r->err, "%s.tool_calls[%zu].id: expected a string", where, j);
        if (!is_type(name, json_type_string))
            return bb_err_set(r->err, "%s.tool_calls[%zu].function.name: expected a string", where,
                              j);
        struct bb_ir_block *b = bv_push(r->a, bv);
        if (!b)
            return rd_oom(r);
        b->type = BB_IR_TOOL_USE;
        if (dup_json_str(r->a, id, &b->id) || dup_json_str(r->a, name, &b->name))
            return rd_oom(r);
        char w[96];
        snprintf(w, sizeof w, "%s.tool_calls[%zu].function", where, j);
        if (rd_arguments(r, get(fn, "arguments"), &b->input_json, w))
            return -1;
    }
    return 0;
}

/* LiteLLM's thinking_blocks on an assistant message: thinking text with its signature. */
static int rd_thinking_blocks(struct rd *r, struct blockvec *bv, json_object *tb, const char *where)
{
    if (!is_type(tb, json_type_array))
        return bb_err_set(r->err, "%s.thinking_blocks: expected an array", where);
    size_t n = json_object_array_length(tb);
    for (size_t j = 0; j < n; j++) {
        json_object *t = json_object_array_get_idx(tb, j);
        json_object *type = get(t, "type");
        if (!is_type(type, json_type_string))
            return bb_err_set(r->err, "%s.thinking_blocks[%zu].type: expected a string", where, j);
        bool redacted = strcmp(json_object_get_string(type), "redacted_thinking") == 0;
        json_object *text = get(t, redacted ? "data" : "thinking");
        json_object *sig = get(t, "signature");
        if ((text && !is_type(text, json_type_string)) || (sig && !is_type(sig, json_type_string)))
            return bb_err_set(r->err, "%s.thinking_blocks[%zu]: expected string fields", where, j);
        struct bb_ir_block *b = bv_push(r->a, bv);
        if (!b)
            return rd_oom(r);
        b->type = redacted ? BB_IR_REDACTED_THINKING : BB_IR_THINKING;
        if (redacted) {
            if (text && dup_json_str(r->a, text, &b->signature))
                return rd_oom(r);
        } else {
            if (text && dup_json_str(r->a, text, &b->text))
                return rd_oom(r);
            if (sig && dup_json_str(r->a, sig, &b->signature))
                return rd_oom(r);
        }
    }
    return 0;
}

static struct bb_ir_message *rd_new_message(struct rd *r, enum bb_ir_role role)
{
    struct bb_ir_message *m = &r->msgs[r->n_msgs++];
    memset(m, 0, sizeof *m);
    m->role = role;
    return m;
}

/* The function name of the call `id` answers, from the assistant turns before it: Gemini
 * needs it in functionResponse and OpenAI tool messages do not carry it. */
static struct bb_ir_str rd_call_name(const struct rd *r, const char *id)
{
    for (size_t i = r->n_msgs; i-- > 0;) {
        const struct bb_ir_message *m = &r->msgs[i];
        if (m->role != BB_IR_ASSISTANT)
            continue;
        for (size_t k = 0; k < m->n_blocks; k++)
            if (m->blocks[k].type == BB_IR_TOOL_USE && m->blocks[k].id.p &&
                strcmp(m->blocks[k].id.p, id) == 0)
                return m->blocks[k].name;
    }
    return (struct bb_ir_str){NULL, 0};
}

/* Append one tool result, merging consecutive tool messages into one user message. */
static struct bb_ir_block *rd_tool_result(struct rd *r)
{
    struct bb_ir_message *m;
    if (r->last_is_tool && r->n_msgs) {
        m = &r->msgs[r->n_msgs - 1];
    } else {
        m = rd_new_message(r, BB_IR_USER);
        r->last_is_tool = true;
    }
    struct bb_ir_block *v = bb_arena_alloc(r->a, (m->n_blocks + 1) * sizeof *v);
    if (!v)
        return NULL;
    if (m->n_blocks)
        memcpy(v, m->blocks, m->n_blocks * sizeof *v);
    m->blocks = v;
    struct bb_ir_block *b = &v[m->n_blocks++];
    memset(b, 0, sizeof *b);
    b->type = BB_IR_TOOL_RESULT;
    return b;
}

/* A tool message's content: one string (flat text) or text parts (nested TEXT blocks). */
static int rd_tool_content(struct rd *r, struct bb_ir_block *b, json_object *c, const char *where)
{
    if (!c) {
        b->text = bb_ir_strdup(r->a, "", 0);
        return b->text.p ? 0 : rd_oom(r);
    }
    if (is_type(c, json_type_string))
        return dup_json_str(r->a, c, &b->text) ? rd_oom(r) : 0;
    struct blockvec bv = {0};
    if (rd_content(r, &bv, c, where, PARTS_TEXT))
        return -1;
    if (bv.n == 1) {
        b->text = bv.v[0].text;
    } else {
        b->content = bv.v;
        b->n_content = bv.n;
    }
    return 0;
}

static int rd_message(struct rd *r, json_object *m, size_t i)
{
    char where[48];
    snprintf(where, sizeof where, "messages[%zu]", i);
    if (!is_type(m, json_type_object))
        return bb_err_set(r->err, "%s: expected an object", where);
    json_object *role = get(m, "role");
    if (!is_type(role, json_type_string))
        return bb_err_set(r->err, "%s.role: expected a string", where);
    const char *ro = json_object_get_string(role);
    json_object *content = get(m, "content"), *name = get(m, "name");
    if (name && !is_type(name, json_type_string))
        return bb_err_set(r->err, "%s.name: expected a string", where);

    if (strcmp(ro, "system") == 0 || strcmp(ro, "developer") == 0) {
        struct blockvec bv = {r->req->system, r->req->n_system, r->req->n_system};
        if (rd_content(r, &bv, content, where, PARTS_TEXT))
            return -1;
        r->req->system = bv.v;
        r->req->n_system = bv.n;
        return name ? rd_unsupported(r, "system.name") : 0;
    }

    if (strcmp(ro, "tool") == 0) {
        json_object *id = get(m, "tool_call_id");
        if (!is_type(id, json_type_string))
            return bb_err_set(r->err, "%s.tool_call_id: expected a string", where);
        struct bb_ir_block *b = rd_tool_result(r);
        if (!b || dup_json_str(r->a, id, &b->id))
            return rd_oom(r);
        b->name = rd_call_name(r, b->id.p);
        return rd_tool_content(r, b, content, where);
    }

    if (strcmp(ro, "function") == 0) { /* legacy: answers the last function_call */
        if (!is_type(name, json_type_string))
            return bb_err_set(r->err, "%s.name: expected a string", where);
        if (content && !is_type(content, json_type_string))
            return bb_err_set(r->err, "%s.content: expected a string", where);
        struct bb_ir_block *b = rd_tool_result(r);
        if (!b || dup_json_str(r->a, name, &b->name))
            return rd_oom(r);
        b->id = r->legacy_id.p ? r->legacy_id : bb_ir_strdup(r->a, "call_legacy_0", 13);
        if (!b->id.p)
            return rd_oom(r);
        return rd_tool_content(r, b, content, where);
    }

    bool user = strcmp(ro, "user") == 0;
    if (!user && strcmp(ro, "assistant") != 0)
        return bb_err_set(r->err, "%s.role: unknown role '%s'", where, ro);

    struct blockvec bv = {0};
    if (user) {
        if (!content)
            return bb_err_set(r->err, "%s.content: required", where);
        if (rd_content(r, &bv, content, where, PARTS_USER))
            return -1;
    } else {
        json_object *tb = get(m, "thinking_blocks"), *rc = get(m, "reasoning_content");
        if (tb) {
            if (rd_thinking_blocks(r, &bv, tb, where))
                return -1;
        } else if (rc) {
            if (!is_type(rc, json_type_string))
                return bb_err_set(r->err, "%s.reasoning_content: expected a string", where);
            if (json_object_get_string_len(rc)) {
                struct bb_ir_block *b = bv_push(r->a, &bv);
                if (!b)
                    return rd_oom(r);
                b->type = BB_IR_THINKING;
                if (dup_json_str(r->a, rc, &b->text))
                    return rd_oom(r);
            }
        }
        if (rd_content(r, &bv, content, where, PARTS_ASSISTANT))
            return -1;
        json_object *refusal = get(m, "refusal");
        if (refusal) {
            if (!is_type(refusal, json_type_string))
                return bb_err_set(r->err, "%s.refusal: expected a string", where);
            if (rd_text_block(r, &bv, refusal))
                return -1;
        }
        json_object *tc = get(m, "tool_calls");
        if (tc && rd_tool_calls(r, &bv, tc, where))
            return -1;
        json_object *fc = get(m, "function_call");
        if (fc) { /* legacy single call: give it an id the function message can answer */
            json_object *fname = get(fc, "name");
            if (!is_type(fname, json_type_string))
                return bb_err_set(r->err, "%s.function_call.name: expected a string", where);
            struct bb_ir_block *b = bv_push(r->a, &bv);
            if (!b)
                return rd_oom(r);
            char id[32];
            int idl = snprintf(id, sizeof id, "call_legacy_%u", r->n_legacy++);
            b->type = BB_IR_TOOL_USE;
            b->id = bb_ir_strdup(r->a, id, (size_t)idl);
            if (!b->id.p || dup_json_str(r->a, fname, &b->name))
                return rd_oom(r);
            r->legacy_id = b->id;
            char w[96];
            snprintf(w, sizeof w, "%s.function_call", where);
            if (rd_arguments(r, get(fc, "arguments"), &b->input_json, w))
                return -1;
        }
        if (get(m, "audio") && rd_unsupported(r, "messages.audio"))
            return -1;
    }
    if (!bv.n) /* a turn that said nothing carries nothing across */
        return 0;
    struct bb_ir_message *im = rd_new_message(r, user ? BB_IR_USER : BB_IR_ASSISTANT);
    im->blocks = bv.v;
    im->n_blocks = bv.n;
    r->last_is_tool = false;
    if (name && dup_json_str(r->a, name, &im->name))
        return rd_oom(r);
    return 0;
}

static int rd_function_def(struct rd *r, struct bb_ir_tool *t, json_object *fn, const char *where)
{
    json_object *name = get(fn, "name"), *desc = get(fn, "description");
    json_object *params = get(fn, "parameters"), *strict = get(fn, "strict");
    if (!is_type(fn, json_type_object))
        return bb_err_set(r->err, "%s: expected an object", where);
    if (!is_type(name, json_type_string))
        return bb_err_set(r->err, "%s.name: expected a string", where);
    if (desc && !is_type(desc, json_type_string))
        return bb_err_set(r->err, "%s.description: expected a string", where);
    if (params && !is_type(params, json_type_object))
        return bb_err_set(r->err, "%s.parameters: expected an object", where);
    if (strict && !is_type(strict, json_type_boolean))
        return bb_err_set(r->err, "%s.strict: expected a boolean", where);
    if (dup_json_str(r->a, name, &t->name) || (desc && dup_json_str(r->a, desc, &t->description)) ||
        (params && dup_json_text(r->a, params, &t->parameters_json)))
        return rd_oom(r);
    t->strict = strict && json_object_get_boolean(strict);
    return 0;
}

static int rd_tools(struct rd *r, json_object *tools, json_object *functions)
{
    size_t nt = is_type(tools, json_type_array) ? json_object_array_length(tools) : 0;
    size_t nf = is_type(functions, json_type_array) ? json_object_array_length(functions) : 0;
    if (tools && !is_type(tools, json_type_array))
        return bb_err_set(r->err, "tools: expected an array");
    if (functions && !is_type(functions, json_type_array))
        return bb_err_set(r->err, "functions: expected an array");
    if (!nt && !nf)
        return 0;
    struct bb_ir_tool *v = bb_arena_calloc(r->a, (nt + nf) * sizeof *v);
    if (!v)
        return rd_oom(r);
    size_t n = 0;
    char where[48];
    for (size_t i = 0; i < nt; i++) {
        json_object *t = json_object_array_get_idx(tools, i), *type = get(t, "type");
        snprintf(where, sizeof where, "tools[%zu]", i);
        if (!is_type(t, json_type_object))
            return bb_err_set(r->err, "%s: expected an object", where);
        if (type && !is_type(type, json_type_string))
            return bb_err_set(r->err, "%s.type: expected a string", where);
        if (type && strcmp(json_object_get_string(type), "function") != 0) {
            if (rd_unsupported(r, "tools.custom"))
                return -1;
            continue;
        }
        snprintf(where, sizeof where, "tools[%zu].function", i);
        if (rd_function_def(r, &v[n++], get(t, "function"), where))
            return -1;
    }
    for (size_t i = 0; i < nf; i++) {
        snprintf(where, sizeof where, "functions[%zu]", i);
        if (rd_function_def(r, &v[n++], json_object_array_get_idx(functions, i), where))
            return -1;
    }
    r->req->tools = v;
    r->req->n_tools = n;
    return 0;
}

static int rd_tool_choice(struct rd *r, json_object *tc, const char *field)
{
    struct bb_ir_request *q = r->req;
    if (is_type(tc, json_type_string)) {
        const char *s = json_object_get_string(tc);
        if (strcmp(s, "auto") == 0)
            q->tool_choice = BB_IR_TC_AUTO;
        else if (strcmp(s, "none") == 0)
            q->tool_choice = BB_IR_TC_NONE;
        else if (strcmp(s, "required") == 0)
            q->tool_choice = BB_IR_TC_ANY;
        else
            return bb_err_set(r->err, "%s: unknown value '%s'", field, s);
        return 0;
    }
    if (!is_type(tc, json_type_object))
        return bb_err_set(r->err, "%s: expected a string or an object", field);
    json_object *type = get(tc, "type");
    const char *t = is_type(type, json_type_string) ? json_object_get_string(type) : "function";
    if (strcmp(t, "allowed_tools") == 0) { /* keep the mode, lose the subset */
        json_object *mode = get(get(tc, "allowed_tools"), "mode");
        bool req = is_type(mode, json_type_string) &&
                   strcmp(json_object_get_string(mode), "required") == 0;
        q->tool_choice = req ? BB_IR_TC_ANY : BB_IR_TC_AUTO;
        return rd_unsupported(r, "tool_choice.allowed_tools");
    }
    if (strcmp(t, "function") != 0)
        return rd_unsupported(r, "tool_choice.custom");
    /* {type:function, function:{name}}, or legacy function_call {name} */
    json_object *fn = get(tc, "function");
    json_object *name = get(fn ? fn : tc, "name");
    if (!is_type(name, json_type_string))
        return bb_err_set(r->err, "%s.function.name: expected a string", field);
    q->tool_choice = BB_IR_TC_TOOL;
    return dup_json_str(r->a, name, &q->tool_choice_name) ? rd_oom(r) : 0;
}

static int rd_response_format(struct rd *r, json_object *rf)
{
    struct bb_ir_request *q = r->req;
    json_object *type = get(rf, "type");
    if (!is_type(rf, json_type_object) || !is_type(type, json_type_string))
        return bb_err_set(r->err, "response_format: expected an object with a 'type'");
    const char *t = json_object_get_string(type);
    if (strcmp(t, "text") == 0) {
        q->format = BB_IR_FMT_TEXT;
    } else if (strcmp(t, "json_object") == 0) {
        q->format = BB_IR_FMT_JSON_OBJECT;
    } else if (strcmp(t, "json_schema") == 0) {
        json_object *js = get(rf, "json_schema");
        if (!is_type(js, json_type_object))
            return bb_err_set(r->err, "response_format.json_schema: expected an object");
        json_object *name = get(js, "name"), *schema = get(js, "schema");
        json_object *strict = get(js, "strict");
        if (name && !is_type(name, json_type_string))
            return bb_err_set(r->err, "response_format.json_schema.name: expected a string");
        if (schema && !is_type(schema, json_type_object))
            return bb_err_set(r->err, "response_format.json_schema.schema: expected an object");
        if (strict && !is_type(strict, json_type_boolean))
            return bb_err_set(r->err, "response_format.json_schema.strict: expected a boolean");
        q->format = BB_IR_FMT_JSON_SCHEMA;
        if ((name && dup_json_str(r->a, name, &q->format_name)) ||
            (schema && dup_json_text(r->a, schema, &q->format_schema_json)))
            return rd_oom(r);
        q->format_strict = strict && json_object_get_boolean(strict);
        if (get(js, "description") && rd_unsupported(r, "response_format.json_schema.description"))
            return -1;
    } else {
        return rd_unsupported_fmt(r, "response_format.", t);
    }
    return 0;
}

static int rd_number(struct rd *r, json_object *root, const char *key, bool *has, double *out)
{
    json_object *v = get(root, key);
    if (!v)
        return 0;
    if (!is_num(v))
        return bb_err_set(r->err, "%s: expected a number", key);
    *has = true;
    *out = json_object_get_double(v);
    return 0;
}

static int rd_stop(struct rd *r, json_object *stop)
{
    struct bb_ir_request *q = r->req;
    if (is_type(stop, json_type_string)) {
        q->stop = bb_arena_alloc(r->a, sizeof *q->stop);
        if (!q->stop || dup_json_str(r->a, stop, &q->stop[0]))
            return rd_oom(r);
        q->n_stop = 1;
        return 0;
    }
    if (!is_type(stop, json_type_array))
        return bb_err_set(r->err, "stop: expected a string or an array of strings");
    size_t n = json_object_array_length(stop);
    if (!n)
        return 0;
    q->stop = bb_arena_alloc(r->a, n * sizeof *q->stop);
    if (!q->stop)
        return rd_oom(r);
    for (size_t i = 0; i < n; i++) {
        json_object *s = json_object_array_get_idx(stop, i);
        if (!is_type(s, json_type_string))
            return bb_err_set(r->err, "stop[%zu]: expected a string", i);
        if (dup_json_str(r->a, s, &q->stop[i]))
            return rd_oom(r);
    }
    q->n_stop = n;
    return 0;
}

static int rd_effort(struct rd *r, json_object *e)
{
    static const struct {
        const char *name;
        enum bb_ir_effort effort;
    } map[] = {{"minimal", BB_IR_EFFORT_MINIMAL}, {"low", BB_IR_EFFORT_LOW},
               {"medium", BB_IR_EFFORT_MEDIUM},   {"high", BB_IR_EFFORT_HIGH},
               {"xhigh", BB_IR_EFFORT_HIGH},      {"max", BB_IR_EFFORT_HIGH}};
    if (!is_type(e, json_type_string))
        return bb_err_set(r->err, "reasoning_effort: expected a string");
    const char *s = json_object_get_string(e);
    if (strcmp(s, "none") == 0) /* reasoning explicitly off: the IR's default */
        return 0;
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        if (strcmp(s, map[i].name) == 0) {
            r->req->reasoning = true;
            r->req->reasoning_effort = map[i].effort;
            if (i >= 4 && rd_unsupported(r, "reasoning_effort")) /* xhigh/max → high */
                return -1;
            return 0;
        }
    }
    return bb_err_set(r->err, "reasoning_effort: unknown value '%s'", s);
}

/* Top-level keys read below; anything else set to a non-default value is reported. */
/* clang-format off */
static const char *const known_keys[] = {
    "model", "messages", "tools", "functions", "tool_choice", "function_call",
    "parallel_tool_calls", "stream", "stream_options", "max_tokens", "max_completion_tokens",
    "temperature", "top_p", "top_k", "seed", "presence_penalty", "frequency_penalty", "stop", "n",
    "response_format", "reasoning_effort", "user", "safety_identifier",
};
/* clang-format on */

static int rd_unknown_keys(struct rd *r, json_object *root)
{
    json_object_object_foreach(root, key, val)
    {
        bool known = false;
        for (size_t i = 0; i < sizeof known_keys / sizeof known_keys[0] && !known; i++)
            known = strcmp(key, known_keys[i]) == 0;
        if (known || !val || (is_type(val, json_type_boolean) && !json_object_get_boolean(val)))
            continue;
        if (rd_unsupported_fmt(r, "", key))
            return -1;
    }
    return 0;
}

static int rd_body(struct rd *r, json_object *root, const char *model_from_path)
{
    struct bb_ir_request *q = r->req;
    if (!is_type(root, json_type_object))
        return bb_err_set(r->err, "the request body must be a JSON object");

    json_object *model = get(root, "model");
    if (model && !is_type(model, json_type_string))
        return bb_err_set(r->err, "model: expected a string");
    if (model_from_path) {
        q->model = bb_ir_strdup(r->a, model_from_path, strlen(model_from_path));
        if (!q->model.p)
            return rd_oom(r);
    } else if (model) {
        if (dup_json_str(r->a, model, &q->model))
            return rd_oom(r);
    } else {
        return bb_err_set(r->err, "model: required");
    }

    json_object *msgs = get(root, "messages");
    if (!is_type(msgs, json_type_array))
        return bb_err_set(r->err, "messages: expected an array");
    size_t nm = json_object_array_length(msgs);
    if (!nm)
        return bb_err_set(r->err, "messages: must not be empty");
    r->msgs = bb_arena_alloc(r->a, nm * sizeof *r->msgs);
    if (!r->msgs)
        return rd_oom(r);

    /* tools first, so that nothing depends on order; messages need none of it */
    if (rd_tools(r, get(root, "tools"), get(root, "functions")))
        return -1;
    for (size_t i = 0; i < nm; i++)
        if (rd_message(r, json_object_array_get_idx(msgs, i), i))
            return -1;
    q->messages = r->msgs;
    q->n_messages = r->n_msgs;

    json_object *tc = get(root, "tool_choice"), *fc = get(root, "function_call");
    if (tc ? rd_tool_choice(r, tc, "tool_choice") : fc ? rd_tool_choice(r, fc, "function_call") : 0)
        return -1;
    json_object *ptc = get(root, "parallel_tool_calls");
    if (ptc) {
        if (!is_type(ptc, json_type_boolean))
            return bb_err_set(r->err, "parallel_tool_calls: expected a boolean");
        q->has_parallel_tool_calls = true;
        q->parallel_tool_calls = json_object_get_boolean(ptc);
    }

    json_object *stream = get(root, "stream"), *so = get(root, "stream_options");
    if (stream && !is_type(stream, json_type_boolean))
        return bb_err_set(r->err, "stream: expected a boolean");
    q->stream = stream && json_object_get_boolean(stream);
    if (so) {
        json_object *iu = get(so, "include_usage");
        if (!is_type(so, json_type_object) || (iu && !is_type(iu, json_type_boolean)))
            return bb_err_set(r->err, "stream_options.include_usage: expected a boolean");
        q->include_usage = iu && json_object_get_boolean(iu);
        json_object *ob = get(so, "include_obfuscation");
        if (ob && json_object_get_boolean(ob) &&
            rd_unsupported(r, "stream_options.include_obfuscation"))
            return -1;
    }

    /* max_completion_tokens replaced max_tokens; when both are sent the newer one wins */
    const char *mt_keys[] = {"max_completion_tokens", "max_tokens"};
    for (size_t i = 0; i < 2 && !q->has_max_tokens; i++) {
        json_object *v = get(root, mt_keys[i]);
        uint64_t u;
        if (!v)
            continue;
        if (!get_u64(v, UINT32_MAX, &u))
            return bb_err_set(r->err, "%s: expected a non-negative integer", mt_keys[i]);
        q->has_max_tokens = true;
        q->max_tokens = (uint32_t)u;
    }

    if (rd_number(r, root, "temperature", &q->has_temperature, &q->temperature) ||
        rd_number(r, root, "top_p", &q->has_top_p, &q->top_p) ||
        rd_number(r, root, "presence_penalty", &q->has_presence_penalty, &q->presence_penalty) ||
        rd_number(r, root, "frequency_penalty", &q->has_frequency_penalty, &q->frequency_penalty))
        return -1;
    json_object *v = get(root, "top_k"); /* not OpenAI's, but vLLM-style clients send it */
    if (v) {
        uint64_t u;
        if (!get_u64(v, UINT32_MAX, &u))
            return bb_err_set(r->err, "top_k: expected a non-negative integer");
        q->has_top_k = true;
        q->top_k = (uint32_t)u;
    }
    if ((v = get(root, "seed"))) {
        if (!is_type(v, json_type_int))
            return bb_err_set(r->err, "seed: expected an integer");
        q->has_seed = true;
        q->seed = json_object_get_int64(v);
    }
    if ((v = get(root, "n"))) {
        uint64_t u;
        if (!get_u64(v, UINT32_MAX, &u) || u == 0)
            return bb_err_set(r->err, "n: expected a positive integer");
        q->n_choices = (uint32_t)u;
    }
    if ((v = get(root, "stop")) && rd_stop(r, v))
        return -1;
    if ((v = get(root, "response_format")) && rd_response_format(r, v))
        return -1;
    if ((v = get(root, "reasoning_effort")) && rd_effort(r, v))
        return -1;
    json_object *user = get(root, "user"), *sid = get(root, "safety_identifier");
    if (user && !is_type(user, json_type_string))
        return bb_err_set(r->err, "user: expected a string");
    if (sid && !is_type(sid, json_type_string))
        return bb_err_set(r->err, "safety_identifier: expected a string");
    if ((user || sid) && dup_json_str(r->a, user ? user : sid, &q->user))
        return rd_oom(r);
    return rd_unknown_keys(r, root);
}

static int openai_read_request(struct bb_arena *a, const char *body, size_t len,
                               const char *model_from_path, struct bb_ir_request *out,
                               struct bb_err *err)
{
    char why[160];
    memset(out, 0, sizeof *out);
    json_object *root = json_parse(body, len, why, sizeof why);
    if (!root)
        return bb_err_set(err, "request body: %s", why);
    struct rd r = {.a = a, .req = out, .err = err};
    int rc = rd_body(&r, root, model_from_path);
    json_object_put(root);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* egress: write_request                                                                      */
/* ------------------------------------------------------------------------------------------ */

struct wr {
    struct bb_arena *a;
    struct bb_err *err;
    const struct bb_egress_ctx *ctx;
};

/* "data:<mt>;base64,<data>" for inline media, the URL otherwise. */
static json_object *media_url(const struct bb_ir_block *b)
{
    if (b->data.p) {
        const char *mt = b->media_type.p ? b->media_type.p : "application/octet-stream";
        size_t ml = b->media_type.p ? b->media_type.len : strlen(mt);
        size_t n = 5 + ml + 8 + b->data.len;
        char *s = malloc(n + 1);
        if (!s)
            return NULL;
        memcpy(s, "data:", 5);
        memcpy(s + 5, mt, ml);
        memcpy(s + 5 + ml, ";base64,", 8);
        memcpy(s + 13 + ml, b->data.p, b->data.len);
        json_object *o = json_object_new_string_len(s, (int)n);
        free(s);
        return o;
    }
    return jstr(&b->url);
}

static bool has_text(const struct bb_ir_str *s)
{
    return s->p != NULL;
}

/* Whether OpenAI chat can carry b as a content part of a user (or assistant) message; what it
 * cannot is reported here, once per block. Tool blocks are handled by the callers. */
static bool wr_expressible(struct wr *w, const struct bb_ir_block *b, bool assistant)
{
    switch (b->type) {
    case BB_IR_TEXT:
        if (b->citations_json.p)
            bb_proto_drop(w->a, w->ctx, "citations");
        break;
    case BB_IR_IMAGE:
        if (assistant) {
            bb_proto_drop(w->a, w->ctx, "images");
            return false;
        }
        break;
    case BB_IR_DOCUMENT:
        /* chat completions take inline PDFs only (as a file part, which needs a filename) */
        if (assistant || !b->data.p || !b->media_type.p ||
            strcmp(b->media_type.p, "application/pdf") != 0) {
            bb_proto_drop(w->a, w->ctx, "documents");
            return false;
        }
        break;
    case BB_IR_THINKING:
    case BB_IR_REDACTED_THINKING:
        bb_proto_drop(w->a, w->ctx, "thinking"); /* no thinking in chat history */
        return false;
    case BB_IR_TOOL_USE:
    case BB_IR_TOOL_RESULT:
        return false;
    }
    if (b->cache_control)
        bb_proto_drop(w->a, w->ctx, "cache_control"); /* OpenAI caches prefixes by itself */
    return true;
}

static json_object *wr_part(const struct bb_ir_block *b)
{
    json_object *p = json_object_new_object();
    switch (b->type) {
    case BB_IR_IMAGE: {
        json_object *iu = json_object_new_object();
        json_object_object_add(iu, "url", media_url(b));
        json_object_object_add(p, "type", json_object_new_string("image_url"));
        json_object_object_add(p, "image_url", iu);
        break;
    }
    case BB_IR_DOCUMENT: {
        json_object *f = json_object_new_object();
        json_object_object_add(f, "filename", json_object_new_string("document.pdf"));
        json_object_object_add(f, "file_data", media_url(b));
        json_object_object_add(p, "type", json_object_new_string("file"));
        json_object_object_add(p, "file", f);
        break;
    }
    default:
        json_object_object_add(p, "type", json_object_new_string("text"));
        json_object_object_add(p, "text", jstr(&b->text));
        break;
    }
    return p;
}

/* Content of a message: a string when it is exactly one text block, else an array of parts
 * (NULL when nothing is left). */
static json_object *wr_content(struct wr *w, const struct bb_ir_block *b, size_t n, bool assistant)
{
    size_t n_parts = 0;
    const struct bb_ir_block *only = NULL;
    bool *ok = n ? bb_arena_alloc(w->a, n * sizeof *ok) : NULL;
    if (n && !ok)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        ok[i] = wr_expressible(w, &b[i], assistant);
        if (ok[i]) {
            n_parts++;
            only = &b[i];
        }
    }
    if (!n_parts)
        return NULL;
    if (n_parts == 1 && only->type == BB_IR_TEXT)
        return jstr(&only->text);
    json_object *arr = json_object_new_array();
    for (size_t i = 0; i < n; i++)
        if (ok[i])
            json_object_array_add(arr, wr_part(&b[i]));
    return arr;
}

/* A tool result's text: its flat text, else its nested text blocks joined by newlines. */
static json_object *wr_tool_text(struct wr *w, const struct bb_ir_block *b)
{
    if (b->is_error)
        bb_proto_drop(w->a, w->ctx, "is_error");
    if (has_text(&b->text) || !b->n_content)
        return jstr(&b->text);
    struct evbuffer *buf = evbuffer_new();
    if (!buf)
        return NULL;
    bool first = true;
    for (size_t i = 0; i < b->n_content; i++) {
        const struct bb_ir_block *c = &b->content[i];
        if (c->type != BB_IR_TEXT) {
            bb_proto_drop(w->a, w->ctx, c->type == BB_IR_IMAGE ? "images" : "documents");
            continue;
        }
        if (!first)
            evbuffer_add(buf, "\n", 1);
        evbuffer_add(buf, c->text.p ? c->text.p : "", c->text.len);
        first = false;
    }
    size_t len = evbuffer_get_length(buf);
    json_object *o = json_object_new_string_len((const char *)evbuffer_pullup(buf, -1), (int)len);
    evbuffer_free(buf);
    return o;
}

static json_object *wr_tool_call(const struct bb_ir_block *b)
{
    json_object *fn = json_object_new_object();
    json_object_object_add(fn, "name", jstr(&b->name));
    if (b->input_json.p && b->input_json.len)
        json_object_object_add(fn, "arguments", jstr(&b->input_json));
    else
        json_object_object_add(fn, "arguments", json_object_new_string("{}"));
    json_object *tc = json_object_new_object();
    json_object_object_add(tc, "id", jstr(&b->id));
    json_object_object_add(tc, "type", json_object_new_string("function"));
    json_object_object_add(tc, "function", fn);
    return tc;
}

static void wr_message(struct wr *w, json_object *msgs, const struct bb_ir_message *m)
{
    if (m->role == BB_IR_USER) {
        /* tool results first: OpenAI wants them right after the assistant's tool_calls */
        for (size_t i = 0; i < m->n_blocks; i++) {
            const struct bb_ir_block *b = &m->blocks[i];
            if (b->type != BB_IR_TOOL_RESULT)
                continue;
            json_object *o = json_object_new_object();
            json_object_object_add(o, "role", json_object_new_string("tool"));
            json_object_object_add(o, "tool_call_id", jstr(&b->id));
            json_object_object_add(o, "content", wr_tool_text(w, b));
            json_object_array_add(msgs, o);
        }
        json_object *content = wr_content(w, m->blocks, m->n_blocks, false);
        if (!content)
            return;
        json_object *o = json_object_new_object();
        json_object_object_add(o, "role", json_object_new_string("user"));
        json_object_object_add(o, "content", content);
        if (m->name.p)
            json_object_object_add(o, "name", jstr(&m->name));
        json_object_array_add(msgs, o);
        return;
    }
    json_object *calls = json_object_new_array();
    for (size_t i = 0; i < m->n_blocks; i++)
        if (m->blocks[i].type == BB_IR_TOOL_USE)
            json_object_array_add(calls, wr_tool_call(&m->blocks[i]));
    json_object *content = wr_content(w, m->blocks, m->n_blocks, true);
    if (!content && json_object_array_length(calls) == 0) {
        json_object_put(calls); /* only thinking: nothing OpenAI can replay */
        return;
    }
    json_object *o = json_object_new_object();
    json_object_object_add(o, "role", json_object_new_string("assistant"));
    json_object_object_add(o, "content", content); /* null beside tool_calls */
    if (m->name.p)
        json_object_object_add(o, "name", jstr(&m->name));
    if (json_object_array_length(calls))
        json_object_object_add(o, "tool_calls", calls);
    else
        json_object_put(calls);
    json_object_array_add(msgs, o);
}

static json_object *wr_system(struct wr *w, const struct bb_ir_request *ir)
{
    struct evbuffer *buf = evbuffer_new();
    if (!buf)
        return NULL;
    bool first = true;
    for (size_t i = 0; i < ir->n_system; i++) {
        const struct bb_ir_block *b = &ir->system[i];
        if (b->type != BB_IR_TEXT) {
            bb_proto_drop(w->a, w->ctx, b->type == BB_IR_IMAGE ? "images" : "system");
            continue;
        }
        if (b->cache_control)
            bb_proto_drop(w->a, w->ctx, "cache_control");
        if (!first)
            evbuffer_add(buf, "\n\n", 2);
        evbuffer_add(buf, b->text.p ? b->text.p : "", b->text.len);
        first = false;
    }
    json_object *o = NULL;
    if (!first) {
        size_t len = evbuffer_get_length(buf);
        o = json_object_new_object();
        json_object_object_add(o, "role", json_object_new_string("system"));
        json_object_object_add(
            o, "content",
            json_object_new_string_len((const char *)evbuffer_pullup(buf, -1), (int)len));
    }
    evbuffer_free(buf);
    return o;
}

static const char *effort_name(enum bb_ir_effort e, uint32_t budget)
{
    switch (e) {
    case BB_IR_EFFORT_MINIMAL:
        return "minimal";
    case BB_IR_EFFORT_LOW:
        return "low";
    case BB_IR_EFFORT_MEDIUM:
        return "medium";
    case BB_IR_EFFORT_HIGH:
        return "high";
    case BB_IR_EFFORT_UNSET:
        break;
    }
    if (!budget)
        return NULL; /* reasoning without a size: the model's default effort */
    return budget <= 4096 ? "low" : budget <= 16384 ? "medium" : "high";
}

static int wr_body(struct wr *w, json_object *root, const struct bb_ir_request *ir,
                   const struct bb_egress_ctx *ctx)
{
    const char *model =
        ctx->lane && ctx->lane->upstream_model ? ctx->lane->upstream_model : ir->model.p;
    json_object_object_add(root, "model", json_object_new_string(model ? model : ""));

    json_object *msgs = json_object_new_array();
    json_object_object_add(root, "messages", msgs);
    json_object *sys = wr_system(w, ir);
    if (sys)
        json_object_array_add(msgs, sys);
    for (size_t i = 0; i < ir->n_messages; i++)
        wr_message(w, msgs, &ir->messages[i]);

    if (ir->n_tools) {
        json_object *tools = json_object_new_array();
        json_object_object_add(root, "tools", tools);
        for (size_t i = 0; i < ir->n_tools; i++) {
            const struct bb_ir_tool *t = &ir->tools[i];
            json_object *fn = json_object_new_object(), *o = json_object_new_object();
            json_object_object_add(o, "type", json_object_new_string("function"));
            json_object_object_add(o, "function", fn);
            json_object_array_add(tools, o); /* owned by root from here on */
            json_object_object_add(fn, "name", jstr(&t->name));
            if (t->description.p)
                json_object_object_add(fn, "description", jstr(&t->description));
            if (t->parameters_json.p) {
                json_object *p = jraw(&t->parameters_json);
                if (!is_type(p, json_type_object)) {
                    json_object_put(p);
                    return bb_err_set(w->err, "tools[%zu].parameters: not a JSON object", i);
                }
                json_object_object_add(fn, "parameters", p);
            }
            if (t->strict)
                json_object_object_add(fn, "strict", json_object_new_boolean(1));
        }
        /* OpenAI rejects tool_choice and parallel_tool_calls without tools */
        json_object *tc = NULL;
        switch (ir->tool_choice) {
        case BB_IR_TC_AUTO:
            tc = json_object_new_string("auto");
            break;
        case BB_IR_TC_NONE:
            tc = json_object_new_string("none");
            break;
        case BB_IR_TC_ANY:
            tc = json_object_new_string("required");
            break;
        case BB_IR_TC_TOOL: {
            json_object *fn = json_object_new_object();
            json_object_object_add(fn, "name", jstr(&ir->tool_choice_name));
            tc = json_object_new_object();
            json_object_object_add(tc, "type", json_object_new_string("function"));
            json_object_object_add(tc, "function", fn);
            break;
        }
        case BB_IR_TC_UNSET:
            break;
        }
        if (tc)
            json_object_object_add(root, "tool_choice", tc);
        if (ir->has_parallel_tool_calls)
            json_object_object_add(root, "parallel_tool_calls",
                                   json_object_new_boolean(ir->parallel_tool_calls));
    }

    if (ir->has_max_tokens)
        json_object_object_add(root, "max_completion_tokens",
                               json_object_new_int64((int64_t)ir->max_tokens));
    if (ir->has_temperature)
        json_object_object_add(root, "temperature", jdouble(ir->temperature));
    if (ir->has_top_p)
        json_object_object_add(root, "top_p", jdouble(ir->top_p));
    if (ir->has_top_k)
        bb_proto_drop(w->a, w->ctx, "top_k");
    if (ir->has_seed)
        json_object_object_add(root, "seed", json_object_new_int64(ir->seed));
    if (ir->has_presence_penalty)
        json_object_object_add(root, "presence_penalty", jdouble(ir->presence_penalty));
    if (ir->has_frequency_penalty)
        json_object_object_add(root, "frequency_penalty", jdouble(ir->frequency_penalty));
    if (ir->n_stop) {
        json_object *stop = json_object_new_array();
        for (size_t i = 0; i < ir->n_stop && i < STOP_MAX; i++)
            json_object_array_add(stop, jstr(&ir->stop[i]));
        if (ir->n_stop > STOP_MAX)
            bb_proto_drop(w->a, w->ctx, "stop");
        json_object_object_add(root, "stop", stop);
    }
    if (ir->n_choices)
        json_object_object_add(root, "n", json_object_new_int64(ir->n_choices));

    json_object *rf = NULL;
    switch (ir->format) {
    case BB_IR_FMT_TEXT:
        rf = json_object_new_object();
        json_object_object_add(rf, "type", json_object_new_string("text"));
        break;
    case BB_IR_FMT_JSON_OBJECT:
        rf = json_object_new_object();
        json_object_object_add(rf, "type", json_object_new_string("json_object"));
        break;
    case BB_IR_FMT_JSON_SCHEMA: {
        json_object *js = json_object_new_object();
        /* OpenAI requires a name; other dialects do not have one */
        json_object_object_add(js, "name",
                               ir->format_name.p ? jstr(&ir->format_name)
                                                 : json_object_new_string("response"));
        if (ir->format_schema_json.p) {
            json_object *s = jraw(&ir->format_schema_json);
            if (!is_type(s, json_type_object)) {
                json_object_put(s);
                json_object_put(js);
                return bb_err_set(w->err, "response_format.json_schema.schema: not a JSON object");
            }
            json_object_object_add(js, "schema", s);
        }
        if (ir->format_strict)
            json_object_object_add(js, "strict", json_object_new_boolean(1));
        rf = json_object_new_object();
        json_object_object_add(rf, "type", json_object_new_string("json_schema"));
        json_object_object_add(rf, "json_schema", js);
        break;
    }
    case BB_IR_FMT_UNSET:
        break;
    }
    if (rf)
        json_object_object_add(root, "response_format", rf);

    if (ir->reasoning || ir->reasoning_effort || ir->reasoning_budget) {
        const char *e = effort_name(ir->reasoning_effort, ir->reasoning_budget);
        if (!ctx->lane || !ctx->lane->reasoning)
            bb_proto_drop(w->a, w->ctx, "reasoning");
        else if (e)
            json_object_object_add(root, "reasoning_effort", json_object_new_string(e));
    }
    if (ir->user.p)
        json_object_object_add(root, "user", jstr(&ir->user));
    if (ctx->stream) { /* busbar always wants the usage chunk, whatever the client asked */
        json_object *so = json_object_new_object();
        json_object_object_add(so, "include_usage", json_object_new_boolean(1));
        json_object_object_add(root, "stream", json_object_new_boolean(1));
        json_object_object_add(root, "stream_options", so);
    }
    return 0;
}

static int openai_write_request(struct bb_arena *a, const struct bb_ir_request *ir,
                                const struct bb_egress_ctx *ctx, struct bb_egress_req *out,
                                struct bb_err *err)
{
    snprintf(out->path, sizeof out->path, "/v1/chat/completions");
    const char *key = ctx->provider ? ctx->provider->api_key : NULL;
    if (key && strpbrk(key, "\r\n"))
        return bb_err_set(err, "provider %s: api key contains a line break",
                          ctx->provider->name ? ctx->provider->name : "?");
    if (evbuffer_add_printf(out->headers, "Content-Type: application/json\r\n") < 0 ||
        (key && *key && evbuffer_add_printf(out->headers, "Authorization: Bearer %s\r\n", key) < 0))
        return bb_err_set(err, "out of memory writing the upstream headers");
    struct wr w = {.a = a, .err = err, .ctx = ctx};
    json_object *root = json_object_new_object();
    if (!root)
        return bb_err_set(err, "out of memory writing the upstream body");
    int rc = wr_body(&w, root, ir, ctx);
    if (rc == 0 && add_json(out->body, root))
        rc = bb_err_set(err, "out of memory writing the upstream body");
    json_object_put(root);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* egress: read_response                                                                      */
/* ------------------------------------------------------------------------------------------ */

static int rr_oom(struct bb_err *err)
{
    return bb_err_set(err, "out of memory while reading the upstream response");
}

/* The assistant message of a chat.completion (choices[0].message) into blocks. */
static int rr_message(struct bb_arena *a, json_object *msg, struct blockvec *bv, bool *refusal,
                      struct bb_err *err)
{
    json_object *tb = get(msg, "thinking_blocks");
    json_object *rc = get(msg, "reasoning_content");
    if (!rc)
        rc = get(msg, "reasoning"); /* OpenRouter, newer vLLM */
    if (is_type(tb, json_type_array) && json_object_array_length(tb)) {
        struct bb_ir_request scratch_req = {0};
        struct rd r = {.a = a, .req = &scratch_req, .err = err};
        if (rd_thinking_blocks(&r, bv, tb, "message"))
            return -1;
    } else if (is_type(rc, json_type_string) && json_object_get_string_len(rc)) {
        struct bb_ir_block *b = bv_push(a, bv);
        if (!b)
            return rr_oom(err);
        b->type = BB_IR_THINKING;
        if (dup_json_str(a, rc, &b->text))
            return rr_oom(err);
    }
    json_object *content = get(msg, "content"), *ref = get(msg, "refusal");
    json_object *text = is_type(content, json_type_string) ? content
                        : is_type(ref, json_type_string)   ? ref
                                                           : NULL;
    if (text) {
        struct bb_ir_block *b = bv_push(a, bv);
        if (!b)
            return rr_oom(err);
        b->type = BB_IR_TEXT;
        if (dup_json_str(a, text, &b->text))
            return rr_oom(err);
        *refusal = text == ref;
        json_object *ann = get(msg, "annotations");
        if (is_type(ann, json_type_array) && json_object_array_length(ann) &&
            dup_json_text(a, ann, &b->citations_json))
            return rr_oom(err);
    }
    json_object *tc = get(msg, "tool_calls");
    size_t n = is_type(tc, json_type_array) ? json_object_array_length(tc) : 0;
    for (size_t j = 0; j < n; j++) {
        json_object *call = json_object_array_get_idx(tc, j);
        json_object *fn = get(call, "function");
        json_object *id = get(call, "id"), *name = get(fn, "name"), *args = get(fn, "arguments");
        if (!is_type(name, json_type_string))
            continue; /* custom tool calls have no IR form */
        struct bb_ir_block *b = bv_push(a, bv);
        if (!b)
            return rr_oom(err);
        b->type = BB_IR_TOOL_USE;
        char synth[32];
        if (is_type(id, json_type_string)) {
            if (dup_json_str(a, id, &b->id))
                return rr_oom(err);
        } else {
            int sl = snprintf(synth, sizeof synth, "call_%zu", j);
            b->id = bb_ir_strdup(a, synth, (size_t)sl);
        }
        if (!b->id.p || dup_json_str(a, name, &b->name))
            return rr_oom(err);
        if (is_type(args, json_type_string) && json_object_get_string_len(args))
            b->input_json = bb_ir_strdup(a, json_object_get_string(args),
                                         (size_t)json_object_get_string_len(args));
        else if (is_type(args, json_type_object))
            (void)dup_json_text(a, args, &b->input_json);
        else
            b->input_json = bb_ir_strdup(a, "{}", 2);
        if (!b->input_json.p)
            return rr_oom(err);
    }
    json_object *fc = get(msg, "function_call");
    if (!n && is_type(get(fc, "name"), json_type_string)) {
        struct bb_ir_block *b = bv_push(a, bv);
        if (!b)
            return rr_oom(err);
        json_object *args = get(fc, "arguments");
        b->type = BB_IR_TOOL_USE;
        b->id = bb_ir_strdup(a, "call_legacy_0", 13);
        if (!b->id.p || dup_json_str(a, get(fc, "name"), &b->name))
            return rr_oom(err);
        b->input_json = is_type(args, json_type_string) && json_object_get_string_len(args)
                            ? bb_ir_strdup(a, json_object_get_string(args),
                                           (size_t)json_object_get_string_len(args))
                            : bb_ir_strdup(a, "{}", 2);
        if (!b->input_json.p)
            return rr_oom(err);
    }
    return 0;
}

static int openai_read_response(struct bb_arena *a, const char *body, size_t len,
                                struct bb_ir_response *out, struct bb_err *err)
{
    char why[160];
    memset(out, 0, sizeof *out);
    json_object *root = json_parse(body, len, why, sizeof why);
    if (!root)
        return bb_err_set(err, "upstream response: %s", why);
    int rc = -1;
    json_object *choices = get(root, "choices");
    json_object *e = get(root, "error");
    if (!is_type(root, json_type_object)) {
        bb_err_set(err, "upstream response: expected a JSON object");
    } else if (e) {
        json_object *m = get(e, "message");
        bb_err_set(err, "upstream error: %s",
                   is_type(m, json_type_string)   ? json_object_get_string(m)
                   : is_type(e, json_type_string) ? json_object_get_string(e)
                                                  : "(no message)");
    } else if (!is_type(choices, json_type_array)) {
        bb_err_set(err, "upstream response: choices: expected an array");
    } else {
        json_object *id = get(root, "id"), *model = get(root, "model");
        json_object *created = get(root, "created");
        if ((is_type(id, json_type_string) && dup_json_str(a, id, &out->id)) ||
            (is_type(model, json_type_string) && dup_json_str(a, model, &out->model))) {
            rr_oom(err);
            goto done;
        }
        if (is_type(created, json_type_int))
            out->created = json_object_get_int64(created);
        /* the IR carries one message: choice 0 (n > 1 answers lose the others) */
        json_object *choice = NULL;
        for (size_t i = 0; i < json_object_array_length(choices) && !choice; i++) {
            json_object *c = json_object_array_get_idx(choices, i);
            json_object *idx = get(c, "index");
            if (!idx || json_object_get_int64(idx) == 0)
                choice = c;
        }
        struct blockvec bv = {0};
        bool refusal = false;
        if (choice && rr_message(a, get(choice, "message"), &bv, &refusal, err))
            goto done;
        out->blocks = bv.v;
        out->n_blocks = bv.n;
        json_object *fr = get(choice, "finish_reason");
        out->stop =
            stop_from_finish(is_type(fr, json_type_string) ? json_object_get_string(fr) : NULL);
        if (refusal && out->stop == BB_IR_STOP_END_TURN)
            out->stop = BB_IR_STOP_REFUSAL;
        usage_read(get(root, "usage"), &out->usage);
        rc = 0;
    }
done:
    json_object_put(root);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* ingress: write_response                                                                    */
/* ------------------------------------------------------------------------------------------ */

/* Concatenate the text of blocks of one type ("" between blocks: split text is one text). */
static json_object *join_blocks(const struct bb_ir_block *b, size_t n, enum bb_ir_block_type t)
{
    size_t len = 0, count = 0;
    for (size_t i = 0; i < n; i++)
        if (b[i].type == t && b[i].text.p) {
            len += b[i].text.len;
            count++;
        }
    if (!count)
        return NULL;
    char *s = malloc(len + 1);
    if (!s)
        return NULL;
    size_t at = 0;
    for (size_t i = 0; i < n; i++)
        if (b[i].type == t && b[i].text.p) {
            memcpy(s + at, b[i].text.p, b[i].text.len);
            at += b[i].text.len;
        }
    json_object *o = json_object_new_string_len(s, (int)len);
    free(s);
    return o;
}

static json_object *thinking_block(const struct bb_ir_block *b)
{
    json_object *o = json_object_new_object();
    if (b->type == BB_IR_REDACTED_THINKING) {
        json_object_object_add(o, "type", json_object_new_string("redacted_thinking"));
        json_object_object_add(o, "data", jstr(&b->signature));
    } else {
        json_object_object_add(o, "type", json_object_new_string("thinking"));
        json_object_object_add(o, "thinking", jstr(&b->text));
        json_object_object_add(o, "signature", jstr(&b->signature));
    }
    return o;
}

static int openai_write_response(struct bb_arena *a, const struct bb_ir_response *r,
                                 const struct bb_ingress_ctx *ctx, struct evbuffer *out)
{
    json_object *root = json_object_new_object();
    if (!root)
        return -1;
    if (r->id.p && r->id.len) {
        json_object_object_add(root, "id", jstr(&r->id));
    } else {
        char id[160];
        int n = snprintf(id, sizeof id, "chatcmpl-%s", ctx->request_id ? ctx->request_id : "0");
        json_object_object_add(root, "id",
                               jstrn(id, (size_t)n < sizeof id ? (size_t)n : sizeof id - 1));
    }
    json_object_object_add(root, "object", json_object_new_string("chat.completion"));
    json_object_object_add(root, "created",
                           json_object_new_int64(r->created ? r->created : ctx->created));
    const char *model = r->model.p ? r->model.p : ctx->model ? ctx->model : "";
    json_object_object_add(root, "model", json_object_new_string(model));

    json_object *msg = json_object_new_object();
    json_object_object_add(msg, "role", json_object_new_string("assistant"));
    json_object_object_add(msg, "content", join_blocks(r->blocks, r->n_blocks, BB_IR_TEXT));
    json_object_object_add(msg, "refusal", NULL);
    json_object *calls = json_object_new_array();
    bool signed_thinking = false;
    for (size_t i = 0; i < r->n_blocks; i++) {
        const struct bb_ir_block *b = &r->blocks[i];
        if (b->type == BB_IR_TOOL_USE)
            json_object_array_add(calls, wr_tool_call(b));
        else if (b->type == BB_IR_REDACTED_THINKING ||
                 (b->type == BB_IR_THINKING && b->signature.p))
            signed_thinking = true;
        else if (b->type == BB_IR_IMAGE || b->type == BB_IR_DOCUMENT)
            bb_proto_drop(a, NULL, b->type == BB_IR_IMAGE ? "images" : "documents");
        else if (b->type == BB_IR_TEXT && b->citations_json.p)
            bb_proto_drop(a, NULL, "citations");
    }
    bool has_tools = json_object_array_length(calls) > 0;
    if (has_tools)
        json_object_object_add(msg, "tool_calls", calls);
    else
        json_object_put(calls);
    json_object *reasoning = join_blocks(r->blocks, r->n_blocks, BB_IR_THINKING);
    if (reasoning)
        json_object_object_add(msg, "reasoning_content", reasoning);
    if (signed_thinking) { /* so the client can send the signature back next turn */
        json_object *tb = json_object_new_array();
        for (size_t i = 0; i < r->n_blocks; i++)
            if (r->blocks[i].type == BB_IR_THINKING || r->blocks[i].type == BB_IR_REDACTED_THINKING)
                json_object_array_add(tb, thinking_block(&r->blocks[i]));
        json_object_object_add(msg, "thinking_blocks", tb);
    }

    json_object *choice = json_object_new_object();
    json_object_object_add(choice, "index", json_object_new_int(0));
    json_object_object_add(choice, "message", msg);
    json_object_object_add(choice, "logprobs", NULL);
    json_object_object_add(choice, "finish_reason",
                           json_object_new_string(finish_name(r->stop, has_tools)));
    json_object *choices = json_object_new_array();
    json_object_array_add(choices, choice);
    json_object_object_add(root, "choices", choices);
    json_object_object_add(root, "usage", usage_write(&r->usage));
    int rc = add_json(out, root);
    json_object_put(root);
    return rc;
}

static const char *openai_stream_content_type(const struct bb_ingress_ctx *ctx)
{
    (void)ctx;
    return "text/event-stream";
}

/* ------------------------------------------------------------------------------------------ */
/* ingress: stream encoder                                                                    */
/* ------------------------------------------------------------------------------------------ */

struct enc {
    char id[160];
    char model[256];
    int64_t created;
    bool include_usage;
    bool role_sent, finish_sent, done;
    enum bb_ir_stop stop;
    uint32_t n_tools;                   /* tool calls started: the next call's index */
    uint32_t tool_block[ENC_TOOLS_MAX]; /* IR block index of tool call k */
    bool tool_open, tool_args;          /* the last tool block is open / has arguments */
    uint32_t tool_index;                /* its IR block index */
    struct bb_ir_usage usage;           /* the largest totals seen */
};

static void copy_cstr(char *dst, size_t cap, const char *s, size_t n)
{
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, s, n);
    dst[n] = '\0';
}

static void openai_enc_init(void *encp, const struct bb_ingress_ctx *ctx)
{
    struct enc *e = encp;
    memset(e, 0, sizeof *e);
    snprintf(e->id, sizeof e->id, "chatcmpl-%s", ctx->request_id ? ctx->request_id : "0");
    if (ctx->model)
        copy_cstr(e->model, sizeof e->model, ctx->model, strlen(ctx->model));
    e->created = ctx->created;
    e->include_usage = ctx->include_usage;
}

static void usage_merge(struct bb_ir_usage *dst, const struct bb_ir_usage *src)
{
    if (!src->set)
        return;
    dst->set = true;
#define MAX_INTO(f)                                                                                \
    if (src->f > dst->f)                                                                           \
    dst->f = src->f
    MAX_INTO(input);
    MAX_INTO(output);
    MAX_INTO(cache_read);
    MAX_INTO(cache_write);
    MAX_INTO(reasoning);
#undef MAX_INTO
}

/* A chunk envelope with one choice; *delta is its (empty) delta object. */
static json_object *chunk_new(const struct enc *e, json_object **delta, json_object **choice)
{
    json_object *c = json_object_new_object();
    json_object_object_add(c, "id", json_object_new_string(e->id));
    json_object_object_add(c, "object", json_object_new_string("chat.completion.chunk"));
    json_object_object_add(c, "created", json_object_new_int64(e->created));
    json_object_object_add(c, "model", json_object_new_string(e->model));
    json_object *choices = json_object_new_array();
    json_object_object_add(c, "choices", choices);
    if (!delta)
        return c;
    json_object *ch = json_object_new_object();
    *delta = json_object_new_object();
    json_object_object_add(ch, "index", json_object_new_int(0));
    json_object_object_add(ch, "delta", *delta);
    json_object_object_add(ch, "logprobs", NULL);
    json_object_object_add(ch, "finish_reason", NULL);
    json_object_array_add(choices, ch);
    if (choice)
        *choice = ch;
    return c;
}

static int chunk_send(json_object *c, struct evbuffer *out)
{
    int rc = add_frame(out, c);
    json_object_put(c);
    return rc;
}

/* A chunk whose delta holds one key. */
static int send_delta(const struct enc *e, const char *key, json_object *val, struct evbuffer *out)
{
    json_object *delta;
    json_object *c = chunk_new(e, &delta, NULL);
    json_object_object_add(delta, key, val);
    return chunk_send(c, out);
}

static int ensure_role(struct enc *e, struct evbuffer *out)
{
    if (e->role_sent)
        return 0;
    e->role_sent = true;
    json_object *delta;
    json_object *c = chunk_new(e, &delta, NULL);
    json_object_object_add(delta, "role", json_object_new_string("assistant"));
    json_object_object_add(delta, "content", json_object_new_string(""));
    json_object_object_add(delta, "refusal", NULL);
    return chunk_send(c, out);
}

static int send_finish(struct enc *e, struct evbuffer *out)
{
    json_object *delta, *choice;
    json_object *c = chunk_new(e, &delta, &choice);
    json_object_object_add(choice, "finish_reason",
                           json_object_new_string(finish_name(e->stop, e->n_tools > 0)));
    e->finish_sent = true;
    return chunk_send(c, out);
}

/* The tool call index k of the TOOL_USE block at IR index `index`. */
static uint32_t enc_tool_k(const struct enc *e, uint32_t index)
{
    uint32_t n = e->n_tools < ENC_TOOLS_MAX ? e->n_tools : ENC_TOOLS_MAX;
    for (uint32_t k = 0; k < n; k++)
        if (e->tool_block[k] == index)
            return k;
    return e->n_tools ? e->n_tools - 1 : 0;
}

static json_object *tool_call_delta(uint32_t k)
{
    json_object *tc = json_object_new_object();
    json_object_object_add(tc, "index", json_object_new_int64(k));
    return tc;
}

static int send_thinking_block(const struct enc *e, const char *type, const char *key,
                               const struct bb_ir_str *val, struct evbuffer *out)
{
    json_object *tb = json_object_new_object();
    json_object_object_add(tb, "type", json_object_new_string(type));
    if (strcmp(type, "thinking") == 0)
        json_object_object_add(tb, "thinking", json_object_new_string(""));
    json_object_object_add(tb, key, jstr(val));
    json_object *arr = json_object_new_array();
    json_object_array_add(arr, tb);
    return send_delta(e, "thinking_blocks", arr, out);
}

static int enc_block_start(struct enc *e, const struct bb_ir_event *ev, struct evbuffer *out)
{
    if (ev->block_type == BB_IR_REDACTED_THINKING && ev->text.p && ev->text.len)
        return send_thinking_block(e, "redacted_thinking", "data", &ev->text, out);
    if (ev->block_type != BB_IR_TOOL_USE)
        return 0;
    uint32_t k = e->n_tools++;
    if (k < ENC_TOOLS_MAX)
        e->tool_block[k] = ev->index;
    e->tool_open = true;
    e->tool_args = false;
    e->tool_index = ev->index;
    json_object *fn = json_object_new_object();
    json_object_object_add(fn, "name", jstr(&ev->name));
    json_object_object_add(fn, "arguments", json_object_new_string(""));
    json_object *tc = tool_call_delta(k);
    json_object_object_add(tc, "id", jstr(&ev->id));
    json_object_object_add(tc, "type", json_object_new_string("function"));
    json_object_object_add(tc, "function", fn);
    json_object *arr = json_object_new_array();
    json_object_array_add(arr, tc);
    return send_delta(e, "tool_calls", arr, out);
}

static int enc_block_delta(struct enc *e, const struct bb_ir_event *ev, struct evbuffer *out)
{
    if (!ev->text.p || !ev->text.len)
        return 0;
    switch (ev->delta) {
    case BB_IR_D_TEXT:
        return send_delta(e, "content", jstr(&ev->text), out);
    case BB_IR_D_THINKING:
        return send_delta(e, "reasoning_content", jstr(&ev->text), out);
    case BB_IR_D_SIGNATURE:
        return send_thinking_block(e, "thinking", "signature", &ev->text, out);
    case BB_IR_D_REDACTED:
        return send_thinking_block(e, "redacted_thinking", "data", &ev->text, out);
    case BB_IR_D_INPUT_JSON: {
        if (e->tool_open && ev->index == e->tool_index)
            e->tool_args = true;
        json_object *fn = json_object_new_object();
        json_object_object_add(fn, "arguments", jstr(&ev->text));
        json_object *tc = tool_call_delta(enc_tool_k(e, ev->index));
        json_object_object_add(tc, "function", fn);
        json_object *arr = json_object_new_array();
        json_object_array_add(arr, tc);
        return send_delta(e, "tool_calls", arr, out);
    }
    case BB_IR_D_CITATION:
        return 0; /* chat chunks carry no annotations */
    }
    return 0;
}

/* A call that streamed no arguments still gets "{}": clients JSON.parse the string. */
static int enc_block_stop(struct enc *e, const struct bb_ir_event *ev, struct evbuffer *out)
{
    if (!e->tool_open || ev->index != e->tool_index)
        return 0;
    e->tool_open = false;
    if (e->tool_args)
        return 0;
    json_object *fn = json_object_new_object();
    json_object_object_add(fn, "arguments", json_object_new_string("{}"));
    json_object *tc = tool_call_delta(e->n_tools - 1);
    json_object_object_add(tc, "function", fn);
    json_object *arr = json_object_new_array();
    json_object_array_add(arr, tc);
    return send_delta(e, "tool_calls", arr, out);
}

static int enc_error(struct enc *e, const struct bb_ir_event *ev, struct evbuffer *out)
{
    json_object *err = json_object_new_object();
    json_object_object_add(err, "message",
                           ev->text.p ? jstr(&ev->text) : json_object_new_string("upstream error"));
    json_object_object_add(err, "type",
                           ev->error_type.p && ev->error_type.len
                               ? jstr(&ev->error_type)
                               : json_object_new_string("server_error"));
    json_object_object_add(err, "param", NULL);
    json_object_object_add(err, "code", NULL);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "error", err);
    e->done = true; /* no [DONE] after an error: the client must not see a clean end */
    int rc = add_frame(out, o);
    json_object_put(o);
    return rc;
}

static int openai_enc_event(void *encp, struct bb_arena *scratch, const struct bb_ir_event *ev,
                            struct evbuffer *out)
{
    struct enc *e = encp;
    (void)scratch;
    if (e->done)
        return 0;
    switch (ev->type) {
    case BB_IR_EV_MESSAGE_START:
        if (ev->id.p && ev->id.len && ev->id.len < sizeof e->id)
            copy_cstr(e->id, sizeof e->id, ev->id.p, ev->id.len);
        if (ev->model.p && ev->model.len)
            copy_cstr(e->model, sizeof e->model, ev->model.p, ev->model.len);
        usage_merge(&e->usage, &ev->usage);
        return ensure_role(e, out);
    case BB_IR_EV_BLOCK_START:
        return ensure_role(e, out) ? -1 : enc_block_start(e, ev, out);
    case BB_IR_EV_BLOCK_DELTA:
        return ensure_role(e, out) ? -1 : enc_block_delta(e, ev, out);
    case BB_IR_EV_BLOCK_STOP:
        return enc_block_stop(e, ev, out);
    case BB_IR_EV_PING:
        return 0;
    case BB_IR_EV_MESSAGE_DELTA:
        usage_merge(&e->usage, &ev->usage);
        if (ev->stop == BB_IR_STOP_UNSET || e->finish_sent)
            return 0;
        e->stop = ev->stop;
        return ensure_role(e, out) ? -1 : send_finish(e, out);
    case BB_IR_EV_MESSAGE_STOP:
        if (ensure_role(e, out) || (!e->finish_sent && send_finish(e, out)))
            return -1;
        if (e->include_usage) {
            json_object *c = chunk_new(e, NULL, NULL);
            json_object_object_add(c, "usage", usage_write(&e->usage));
            if (chunk_send(c, out))
                return -1;
        }
        e->done = true;
        return evbuffer_add(out, "data: [DONE]\n\n", 14);
    case BB_IR_EV_ERROR:
        return enc_error(e, ev, out);
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* egress: stream decoder                                                                     */
/* ------------------------------------------------------------------------------------------ */

struct dec {
    bool started, done, delta_sent, finish_seen, refusal;
    bool open; /* a block is open */
    enum bb_ir_block_type open_type;
    uint32_t open_index, next_index;
    uint32_t n_tools;
    struct {
        int64_t oai;
        uint32_t ir;
    } tools[DEC_TOOLS_MAX];
    enum bb_ir_stop stop;
    struct bb_ir_usage usage;
};

struct dctx {
    struct dec *d;
    struct bb_arena *scratch;
    bb_ir_event_cb cb;
    void *arg;
};

static void openai_dec_init(void *decp)
{
    memset(decp, 0, sizeof(struct dec));
}

static int d_emit(struct dctx *x, struct bb_ir_event *ev)
{
    return x->cb(x->arg, ev);
}

static int d_close(struct dctx *x)
{
    if (!x->d->open)
        return 0;
    x->d->open = false;
    struct bb_ir_event ev = {
        .type = BB_IR_EV_BLOCK_STOP, .index = x->d->open_index, .block_type = x->d->open_type};
    return d_emit(x, &ev);
}

/* Close the open block and start a new one of type t; its index is x->d->open_index. */
static int d_open(struct dctx *x, enum bb_ir_block_type t, struct bb_ir_str id,
                  struct bb_ir_str name)
{
    int rc = d_close(x);
    if (rc)
        return rc;
    struct dec *d = x->d;
    d->open = true;
    d->open_type = t;
    d->open_index = d->next_index++;
    struct bb_ir_event ev = {.type = BB_IR_EV_BLOCK_START,
                             .index = d->open_index,
                             .block_type = t,
                             .id = id,
                             .name = name};
    return d_emit(x, &ev);
}

static int d_delta(struct dctx *x, uint32_t index, enum bb_ir_delta kind, const char *s, size_t n)
{
    struct bb_ir_event ev = {
        .type = BB_IR_EV_BLOCK_DELTA, .index = index, .delta = kind, .block_type = x->d->open_type};
    ev.text = bb_ir_strdup(x->scratch, s, n);
    if (!ev.text.p)
        return -1;
    return d_emit(x, &ev);
}

/* A text-like delta into a block of type t, opening one when another kind is open. */
static int d_text(struct dctx *x, enum bb_ir_block_type t, enum bb_ir_delta kind, json_object *s)
{
    struct bb_ir_str none = {NULL, 0};
    if (!is_type(s, json_type_string) || json_object_get_string_len(s) == 0)
        return 0;
    if (!x->d->open || x->d->open_type != t) {
        int rc = d_open(x, t, none, none);
        if (rc)
            return rc;
    }
    return d_delta(x, x->d->open_index, kind, json_object_get_string(s),
                   (size_t)json_object_get_string_len(s));
}

static int d_message_delta(struct dctx *x)
{
    struct dec *d = x->d;
    if (d->delta_sent)
        return 0;
    d->delta_sent = true;
    struct bb_ir_event ev = {.type = BB_IR_EV_MESSAGE_DELTA, .stop = d->stop, .usage = d->usage};
    if (ev.stop == BB_IR_STOP_UNSET)
        ev.stop = d->n_tools ? BB_IR_STOP_TOOL_USE : BB_IR_STOP_END_TURN;
    return d_emit(x, &ev);
}

static int d_start(struct dctx *x, json_object *chunk)
{
    struct dec *d = x->d;
    if (d->started)
        return 0;
    d->started = true;
    struct bb_ir_event ev = {.type = BB_IR_EV_MESSAGE_START};
    json_object *id = get(chunk, "id"), *model = get(chunk, "model");
    if (is_type(id, json_type_string) && json_object_get_string_len(id))
        ev.id = bb_ir_strdup(x->scratch, json_object_get_string(id),
                             (size_t)json_object_get_string_len(id));
    if (is_type(model, json_type_string) && json_object_get_string_len(model))
        ev.model = bb_ir_strdup(x->scratch, json_object_get_string(model),
                                (size_t)json_object_get_string_len(model));
    return d_emit(x, &ev);
}

/* tool_calls[] of a delta: a new index opens a TOOL_USE block; arguments are deltas of it. */
static int d_tool_call(struct dctx *x, json_object *tc, int64_t oai_index)
{
    struct dec *d = x->d;
    json_object *fn = get(tc, "function");
    if (!fn)
        fn = tc; /* legacy delta.function_call: {name, arguments} itself */
    json_object *args = get(fn, "arguments");
    int64_t idx = oai_index;
    json_object *jidx = get(tc, "index");
    if (is_type(jidx, json_type_int))
        idx = json_object_get_int64(jidx);
    uint32_t n = d->n_tools < DEC_TOOLS_MAX ? d->n_tools : DEC_TOOLS_MAX;
    bool known = false;
    uint32_t block = 0;
    for (uint32_t k = 0; k < n && !known; k++)
        if (d->tools[k].oai == idx) {
            known = true;
            block = d->tools[k].ir;
        }
    if (!known) {
        json_object *id = get(tc, "id"), *name = get(fn, "name");
        struct bb_ir_str sid = {NULL, 0}, sname = {NULL, 0};
        if (is_type(id, json_type_string) && json_object_get_string_len(id)) {
            sid = bb_ir_strdup(x->scratch, json_object_get_string(id),
                               (size_t)json_object_get_string_len(id));
        } else {
            char synth[32];
            int sl = idx < 0 ? snprintf(synth, sizeof synth, "call_legacy_0")
                             : snprintf(synth, sizeof synth, "call_%" PRId64, idx);
            sid = bb_ir_strdup(x->scratch, synth, (size_t)sl);
        }
        if (is_type(name, json_type_string))
            sname = bb_ir_strdup(x->scratch, json_object_get_string(name),
                                 (size_t)json_object_get_string_len(name));
        else
            sname = bb_ir_strdup(x->scratch, "", 0);
        if (!sid.p || !sname.p)
            return -1;
        int rc = d_open(x, BB_IR_TOOL_USE, sid, sname);
        if (rc)
            return rc;
        if (d->n_tools < DEC_TOOLS_MAX) {
            d->tools[d->n_tools].oai = idx;
            d->tools[d->n_tools].ir = d->open_index;
        }
        d->n_tools++;
        block = d->open_index;
    }
    if (!is_type(args, json_type_string) || json_object_get_string_len(args) == 0)
        return 0;
    /* A fragment for a call whose block was already closed (providers that interleave
     * parallel calls) goes to that call's own index: the IR has one open block at a time. */
    struct bb_ir_event ev = {.type = BB_IR_EV_BLOCK_DELTA,
                             .index = block,
                             .block_type = BB_IR_TOOL_USE,
                             .delta = BB_IR_D_INPUT_JSON};
    ev.text = bb_ir_strdup(x->scratch, json_object_get_string(args),
                           (size_t)json_object_get_string_len(args));
    return ev.text.p ? d_emit(x, &ev) : -1;
}

static int d_thinking_blocks(struct dctx *x, json_object *tb, bool have_reasoning_text)
{
    size_t n = json_object_array_length(tb);
    struct bb_ir_str none = {NULL, 0};
    for (size_t i = 0; i < n; i++) {
        json_object *t = json_object_array_get_idx(tb, i);
        json_object *type = get(t, "type");
        int rc = 0;
        if (is_type(type, json_type_string) &&
            strcmp(json_object_get_string(type), "redacted_thinking") == 0) {
            json_object *data = get(t, "data");
            if (!is_type(data, json_type_string))
                continue;
            if ((rc = d_open(x, BB_IR_REDACTED_THINKING, none, none)) ||
                (rc = d_delta(x, x->d->open_index, BB_IR_D_REDACTED, json_object_get_string(data),
                              (size_t)json_object_get_string_len(data))))
                return rc;
            continue;
        }
        if (!have_reasoning_text &&
            (rc = d_text(x, BB_IR_THINKING, BB_IR_D_THINKING, get(t, "thinking"))))
            return rc;
        json_object *sig = get(t, "signature");
        if (!is_type(sig, json_type_string) || json_object_get_string_len(sig) == 0)
            continue;
        if (!x->d->open || x->d->open_type != BB_IR_THINKING)
            if ((rc = d_open(x, BB_IR_THINKING, none, none)))
                return rc;
        if ((rc = d_delta(x, x->d->open_index, BB_IR_D_SIGNATURE, json_object_get_string(sig),
                          (size_t)json_object_get_string_len(sig))))
            return rc;
    }
    return 0;
}

static int d_choice(struct dctx *x, json_object *choice)
{
    struct dec *d = x->d;
    json_object *delta = d->finish_seen ? NULL : get(choice, "delta"); /* nothing after */
    int rc;
    json_object *rc_text = get(delta, "reasoning_content");
    if (!rc_text)
        rc_text = get(delta, "reasoning");
    if ((rc = d_text(x, BB_IR_THINKING, BB_IR_D_THINKING, rc_text)))
        return rc;
    json_object *tb = get(delta, "thinking_blocks");
    if (is_type(tb, json_type_array) &&
        (rc = d_thinking_blocks(x, tb, is_type(rc_text, json_type_string))))
        return rc;
    if ((rc = d_text(x, BB_IR_TEXT, BB_IR_D_TEXT, get(delta, "content"))))
        return rc;
    json_object *refusal = get(delta, "refusal");
    if (is_type(refusal, json_type_string) && json_object_get_string_len(refusal)) {
        d->refusal = true;
        if ((rc = d_text(x, BB_IR_TEXT, BB_IR_D_TEXT, refusal)))
            return rc;
    }
    json_object *tcs = get(delta, "tool_calls");
    size_t n = is_type(tcs, json_type_array) ? json_object_array_length(tcs) : 0;
    for (size_t i = 0; i < n; i++)
        if ((rc = d_tool_call(x, json_object_array_get_idx(tcs, i), (int64_t)i)))
            return rc;
    json_object *fc = get(delta, "function_call"); /* legacy: one call, index -1 */
    if (is_type(fc, json_type_object) && (rc = d_tool_call(x, fc, -1)))
        return rc;
    json_object *fr = get(choice, "finish_reason");
    if (is_type(fr, json_type_string) && !d->finish_seen) {
        d->finish_seen = true;
        d->stop = stop_from_finish(json_object_get_string(fr));
        if (d->refusal && d->stop == BB_IR_STOP_END_TURN)
            d->stop = BB_IR_STOP_REFUSAL;
        if ((rc = d_close(x)))
            return rc;
    }
    return 0;
}

static int d_error(struct dctx *x, json_object *o)
{
    json_object *e = get(o, "error");
    json_object *src = is_type(e, json_type_object) ? e : o;
    json_object *msg = is_type(e, json_type_string) ? e : get(src, "message");
    json_object *type = get(src, "type"), *code = get(src, "code");
    struct bb_ir_event ev = {.type = BB_IR_EV_ERROR};
    const char *m = is_type(msg, json_type_string) ? json_object_get_string(msg) : "upstream error";
    ev.text = bb_ir_strdup(x->scratch, m, strlen(m));
    if (is_type(type, json_type_string))
        ev.error_type = bb_ir_strdup(x->scratch, json_object_get_string(type),
                                     (size_t)json_object_get_string_len(type));
    else if (is_type(code, json_type_string))
        ev.error_type = bb_ir_strdup(x->scratch, json_object_get_string(code),
                                     (size_t)json_object_get_string_len(code));
    if (is_type(code, json_type_int))
        ev.error_status = (int)json_object_get_int(code);
    x->d->done = true;
    return d_emit(x, &ev);
}

static bool data_is(const struct bb_frame *f, const char *s)
{
    size_t a = 0, b = f->data_len, n = strlen(s);
    while (a < b &&
           (f->data[a] == ' ' || f->data[a] == '\t' || f->data[a] == '\r' || f->data[a] == '\n'))
        a++;
    while (b > a && (f->data[b - 1] == ' ' || f->data[b - 1] == '\t' || f->data[b - 1] == '\r' ||
                     f->data[b - 1] == '\n'))
        b--;
    return b - a == n && memcmp(f->data + a, s, n) == 0;
}

static int d_done(struct dctx *x)
{
    struct dec *d = x->d;
    int rc;
    if (!d->started) {
        d->started = true;
        struct bb_ir_event st = {.type = BB_IR_EV_MESSAGE_START};
        if ((rc = d_emit(x, &st)))
            return rc;
    }
    if ((rc = d_close(x)) || (rc = d_message_delta(x)))
        return rc;
    d->done = true;
    struct bb_ir_event ev = {.type = BB_IR_EV_MESSAGE_STOP};
    return d_emit(x, &ev);
}

static int d_chunk(struct dctx *x, json_object *o)
{
    struct dec *d = x->d;
    int rc;
    if (get(o, "error"))
        return d_error(x, o);
    json_object *choices = get(o, "choices"), *u = get(o, "usage");
    size_t n = is_type(choices, json_type_array) ? json_object_array_length(choices) : 0;
    /* Azure opens with a choice-less chunk of prompt_filter_results (empty id and model):
     * the message starts with the first chunk that carries something */
    if (!n && !is_type(u, json_type_object))
        return 0;
    if ((rc = d_start(x, o)))
        return rc;
    for (size_t i = 0; i < n; i++) {
        json_object *c = json_object_array_get_idx(choices, i);
        json_object *idx = get(c, "index");
        if (idx && json_object_get_int64(idx) != 0)
            continue; /* the IR carries choice 0 only */
        if ((rc = d_choice(x, c)))
            return rc;
    }
    if (is_type(u, json_type_object)) {
        usage_read(u, &d->usage);
        /* usage comes in the finish chunk or in a usage-only chunk after it */
        if (d->finish_seen)
            return d_message_delta(x);
    }
    return 0;
}

static int openai_dec_frame(void *decp, struct bb_arena *scratch, const struct bb_frame *f,
                            bb_ir_event_cb cb, void *arg)
{
    struct dctx x = {.d = decp, .scratch = scratch, .cb = cb, .arg = arg};
    if (x.d->done)
        return 0;
    if (data_is(f, "[DONE]"))
        return d_done(&x);
    if (data_is(f, ""))
        return 0; /* keep-alive or an empty event */
    char why[160];
    json_object *o = json_parse(f->data, f->data_len, why, sizeof why);
    if (!is_type(o, json_type_object)) {
        json_object_put(o);
        return -1;
    }
    bool is_error = f->event_len == 5 && memcmp(f->event, "error", 5) == 0;
    int rc = is_error ? d_error(&x, o) : d_chunk(&x, o);
    json_object_put(o);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* errors                                                                                     */
/* ------------------------------------------------------------------------------------------ */

static void copy_field(char *dst, size_t cap, json_object *v)
{
    if (is_type(v, json_type_string))
        copy_cstr(dst, cap, json_object_get_string(v), (size_t)json_object_get_string_len(v));
    else if (is_type(v, json_type_int))
        snprintf(dst, cap, "%" PRId64, json_object_get_int64(v));
}

/* {"error":{message,type,code,param}} (code a string, a number or null); also the shapes
 * OpenAI-compatible servers use: {"error":"text"}, vLLM's top-level {"message","type","code"},
 * and a one-element array around either (Google's compatibility endpoint). */
static int openai_read_error(const char *body, size_t len, struct bb_proto_error *out)
{
    char why[160];
    memset(out, 0, sizeof *out);
    json_object *root = json_parse(body, len, why, sizeof why);
    if (!root)
        return -1;
    json_object *o = root;
    if (is_type(o, json_type_array) && json_object_array_length(o))
        o = json_object_array_get_idx(o, 0);
    json_object *e = get(o, "error");
    json_object *src = is_type(e, json_type_object) ? e : o;
    if (is_type(e, json_type_string))
        copy_field(out->message, sizeof out->message, e);
    else
        copy_field(out->message, sizeof out->message, get(src, "message"));
    copy_field(out->type, sizeof out->type, get(src, "type"));
    copy_field(out->code, sizeof out->code, get(src, "code"));
    json_object_put(root);
    return out->message[0] || out->type[0] || out->code[0] ? 0 : -1;
}

/* A chat completion has `choices`; OpenAI and compatible servers may answer 200 with an
 * `error` object instead. */
static int openai_answer_check(const char *body, size_t len, struct bb_proto_error *out)
{
    struct bb_jscan_field f[2] = {{.key = "error"}, {.key = "choices"}};
    if (bb_proto_scan_answer(body, len, f, 2, out) < 0)
        return -1;
    if (f[0].type != BB_JNONE && f[0].type != BB_JNULL)
        return bb_proto_inband(&bb_proto_openai, body, len, out);
    if (f[1].type != BB_JARRAY) {
        snprintf(out->message, sizeof out->message, "no 'choices' array");
        return -1;
    }
    return 0;
}

/* The stream ended without "data: [DONE]": finished when its finish_reason arrived. */
static int openai_dec_finish(void *decp, struct bb_arena *scratch, bb_ir_event_cb cb, void *arg)
{
    struct dec *d = decp;
    if (d->done || !d->finish_seen)
        return 0;
    struct dctx x = {d, scratch, cb, arg};
    return d_done(&x);
}

const struct bb_proto_ops bb_proto_openai = {
    .id = BB_PROTO_OPENAI,
    .name = "openai",
    .framing = BB_FRAMING_SSE,
    .read_request = openai_read_request,
    .write_response = openai_write_response,
    .stream_content_type = openai_stream_content_type,
    .enc_size = sizeof(struct enc),
    .enc_init = openai_enc_init,
    .enc_event = openai_enc_event,
    .enc_finish = NULL,
    .write_request = openai_write_request,
    .read_response = openai_read_response,
    .dec_size = sizeof(struct dec),
    .dec_init = openai_dec_init,
    .dec_frame = openai_dec_frame,
    .read_error = openai_read_error,
    .dec_finish = openai_dec_finish,
    .terminator = "data: [DONE]\n\n",
    .answer_check = openai_answer_check,
};
