/*
 * proto_anthropic: the Anthropic Messages API (POST /v1/messages, anthropic-version 2023-06-01)
 * in both roles:
 *   ingress: a client posts MessageCreateParams to /v1/messages or /{pool}/v1/messages and is
 *            answered with one Message object or an `event:`-typed SSE stream;
 *   egress:  busbar posts MessageCreateParams to the provider and reads a Message or the SSE
 *            stream (message_start, content_block_*, message_delta, message_stop, ping, error).
 * The IR is modelled on this protocol, so most fields map one to one; the work is in the rules
 * the Messages API enforces and other dialects do not (see docs/protocols/anthropic.md):
 * - max_tokens is required: the lane's default_max_tokens is injected when the IR has none.
 * - messages alternate user/assistant: consecutive same-role messages are merged, and within a
 *   user turn tool_result blocks are put first (the API rejects text before them).
 * - thinking needs a signature, budget_tokens >= 1024 and < max_tokens, no forced tool choice,
 *   no temperature/top_k changes, and a final/tool-loop assistant turn that starts with a
 *   thinking block; when those cannot all hold, thinking is not requested (reported dropped).
 * - usage: input_tokens excludes cache reads/writes (the IR convention); streams carry input
 *   and cache counts in message_start and the cumulative output count in message_delta.
 *
 * Worker process, single-threaded; stateless apart from the per-stream encoder/decoder state
 * the caller allocates. json-c objects never outlive a call; every string handed out lives in
 * the arena given.
 */
#include "worker/json.h"
#include "worker/proto.h"
#include "common/jscan.h"

#include <ctype.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <json-c/json.h>

#define JSON_OUT (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)
#define ANTHROPIC_VERSION "2023-06-01"
#define THINKING_MIN_BUDGET 1024u /* the API rejects a smaller budget_tokens */
#define FALLBACK_MAX_TOKENS 4096u /* when a lane has no default_max_tokens */
#define ENC_MAX_OPEN 32           /* IR blocks open at once in one encoded stream */

/* ======================================================================================== */
/* JSON helpers                                                                             */
/* ======================================================================================== */

static json_object *jnew_str(const struct bb_ir_str *s)
{
    return json_object_new_string_len(s->p ? s->p : "", s->p ? (int)s->len : 0);
}

static json_object *jnew_cstr(const char *s)
{
    return json_object_new_string(s ? s : "");
}

/* Doubles as the shortest-looking text, so 0.7 is written "0.7", not 0.69999999999999996. */
static json_object *jnew_double(double d)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%.15g", d);
    return json_object_new_double_s(d, buf);
}

static json_object *jnew_u64(uint64_t v)
{
    return json_object_new_int64(v > INT64_MAX ? INT64_MAX : (int64_t)v);
}

static void jadd(json_object *o, const char *k, json_object *v)
{
    json_object_object_add(o, k, v);
}

static uint64_t jget_u64(json_object *o, const char *key)
{
    json_object *v = bb_json_get(o, key);
    if (!bb_json_is_number(v))
        return 0;
    int64_t n = json_object_get_int64(v);
    return n < 0 ? 0 : (uint64_t)n;
}

/* Serialise o and append it to out. */
static int jappend(struct evbuffer *out, json_object *o)
{
    size_t n = 0;
    const char *s = json_object_to_json_string_length(o, JSON_OUT, &n);
    return s && evbuffer_add(out, s, n) == 0 ? 0 : -1;
}

/* snprintf for names and paths, where a truncated result is still a fine result. */
static void bprintf(char *buf, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void bprintf(char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (vsnprintf(buf, cap, fmt, ap) < 0 && cap)
        buf[0] = '\0';
    va_end(ap);
}

/* "path.key", or "key" at the top level. */
static const char *fpath(char *buf, size_t cap, const char *path, const char *key)
{
    if (path && *path)
        bprintf(buf, cap, "%s.%s", path, key);
    else
        bprintf(buf, cap, "%s", key);
    return buf;
}

static bool str_has(const struct bb_ir_str *s)
{
    return s->p && s->len;
}

/* ======================================================================================== */
/* base64 (PlainTextSource documents travel base64-encoded in the IR)                       */
/* ======================================================================================== */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static struct bb_ir_str b64_encode(struct bb_arena *a, const char *src, size_t n)
{
    struct bb_ir_str r = {NULL, 0};
    const unsigned char *p = (const unsigned char *)src;
    size_t olen = (n + 2) / 3 * 4;
    char *o = bb_arena_alloc(a, olen + 1);
    if (!o)
        return r;
    size_t j = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        o[j++] = b64_alphabet[(v >> 18) & 63];
        o[j++] = b64_alphabet[(v >> 12) & 63];
        o[j++] = i + 1 < n ? b64_alphabet[(v >> 6) & 63] : '=';
        o[j++] = i + 2 < n ? b64_alphabet[v & 63] : '=';
    }
    o[j] = '\0';
    r.p = o;
    r.len = j;
    return r;
}

static int b64_value(unsigned char c)
{
    const char *q = c ? strchr(b64_alphabet, c) : NULL;
    return q ? (int)(q - b64_alphabet) : -1;
}

/* Decode standard base64 (whitespace ignored, padding optional). -1 when malformed. */
static int b64_decode(struct bb_arena *a, const struct bb_ir_str *s, struct bb_ir_str *out)
{
    char *o = bb_arena_alloc(a, s->len / 4 * 3 + 4);
    if (!o)
        return -1;
    uint32_t acc = 0;
    int bits = 0;
    size_t j = 0, pad = 0;
    for (size_t i = 0; i < s->len; i++) {
        unsigned char c = (unsigned char)s->p[i];
        if (isspace(c))
            continue;
        if (c == '=') {
            pad++;
            continue;
        }
        int v = b64_value(c);
        if (v < 0 || pad)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            o[j++] = (char)((acc >> bits) & 0xff);
        }
    }
    if (pad > 2 || bits >= 6)
        return -1;
    o[j] = '\0';
    out->p = o;
    out->len = j;
    return 0;
}

/* ======================================================================================== */
/* shared mappings: stop reasons, usage, errors                                             */
/* ======================================================================================== */

static enum bb_ir_stop stop_from_wire(const char *s)
{
    if (!s)
        return BB_IR_STOP_UNSET;
    if (strcmp(s, "end_turn") == 0)
        return BB_IR_STOP_END_TURN;
    if (strcmp(s, "max_tokens") == 0 || strcmp(s, "model_context_window_exceeded") == 0)
        return BB_IR_STOP_MAX_TOKENS;
    if (strcmp(s, "stop_sequence") == 0)
        return BB_IR_STOP_STOP_SEQUENCE;
    if (strcmp(s, "tool_use") == 0)
        return BB_IR_STOP_TOOL_USE;
    if (strcmp(s, "pause_turn") == 0)
        return BB_IR_STOP_PAUSE;
    if (strcmp(s, "refusal") == 0)
        return BB_IR_STOP_REFUSAL;
    return BB_IR_STOP_END_TURN; /* a future reason still ended the turn */
}

/* Anthropic has no content_filter or error reason: a filtered answer is a refusal, and an
 * errored turn still ended. */
static const char *stop_to_wire(enum bb_ir_stop s, bool saw_tool)
{
    switch (s) {
    case BB_IR_STOP_MAX_TOKENS:
        return "max_tokens";
    case BB_IR_STOP_STOP_SEQUENCE:
        return "stop_sequence";
    case BB_IR_STOP_TOOL_USE:
        return "tool_use";
    case BB_IR_STOP_PAUSE:
        return "pause_turn";
    case BB_IR_STOP_CONTENT_FILTER:
    case BB_IR_STOP_REFUSAL:
        return "refusal";
    case BB_IR_STOP_UNSET:
        return saw_tool ? "tool_use" : "end_turn";
    default:
        return "end_turn";
    }
}

/* Usage object fields present in u (a message_start, message_delta or Message usage). Only
 * numbers present override, so message_delta's output merges onto message_start's input. */
static void usage_merge(struct bb_ir_usage *u, json_object *o)
{
    if (!bb_json_is(o, json_type_object))
        return;
    u->set = true;
    if (bb_json_is_number(bb_json_get(o, "input_tokens")))
        u->input = jget_u64(o, "input_tokens");
    if (bb_json_is_number(bb_json_get(o, "output_tokens")))
        u->output = jget_u64(o, "output_tokens");
    if (bb_json_is_number(bb_json_get(o, "cache_creation_input_tokens")))
        u->cache_write = jget_u64(o, "cache_creation_input_tokens");
    if (bb_json_is_number(bb_json_get(o, "cache_read_input_tokens")))
        u->cache_read = jget_u64(o, "cache_read_input_tokens");
    json_object *d = bb_json_get(o, "output_tokens_details");
    if (bb_json_is_number(bb_json_get(d, "thinking_tokens")))
        u->reasoning = jget_u64(d, "thinking_tokens");
}

static json_object *usage_to_wire(const struct bb_ir_usage *u)
{
    json_object *o = json_object_new_object();
    jadd(o, "input_tokens", jnew_u64(u->input));
    jadd(o, "cache_creation_input_tokens", jnew_u64(u->cache_write));
    jadd(o, "cache_read_input_tokens", jnew_u64(u->cache_read));
    jadd(o, "output_tokens", jnew_u64(u->output));
    return o;
}

/* The HTTP status Anthropic pairs with each error type (for in-band stream errors). */
static int status_from_error_type(const char *t)
{
    static const struct {
        const char *type;
        int status;
    } map[] = {
        {"invalid_request_error", 400}, {"authentication_error", 401},
        {"billing_error", 402},         {"permission_error", 403},
        {"not_found_error", 404},       {"request_too_large", 413},
        {"rate_limit_error", 429},      {"api_error", 500},
        {"timeout_error", 504},         {"overloaded_error", 529},
    };
    for (size_t i = 0; t && i < sizeof map / sizeof map[0]; i++)
        if (strcmp(map[i].type, t) == 0)
            return map[i].status;
    return 0;
}

/* ======================================================================================== */
/* ingress: read a MessageCreateParams body                                                 */
/* ======================================================================================== */

struct rd {
    struct bb_arena *a;
    struct bb_ir_request *req;
    struct bb_err *err;
};

struct bvec {
    struct bb_ir_block *v;
    size_t n, cap;
};

enum where { IN_MESSAGE, IN_TOOL_RESULT, IN_SYSTEM };

static struct bb_ir_block *bv_push(struct bb_arena *a, struct bvec *bv)
{
    if (bv->n == bv->cap) {
        size_t cap = bv->cap ? bv->cap * 2 : 4;
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

static int rd_oom(struct rd *r)
{
    return bb_err_set(r->err, "out of memory reading the request");
}

static int rd_expect(struct rd *r, const char *path, const char *what)
{
    return bb_err_set(r->err, "%s: expected %s", path, what);
}

/* Record prefix+name as an unsupported field (copied: name may live in a json-c object). */
static int rd_unsupported(struct rd *r, const char *prefix, const char *name)
{
    char buf[160];
    bprintf(buf, sizeof buf, "%s%s", prefix, name);
    struct bb_ir_str s = bb_ir_strdup(r->a, buf, strlen(buf));
    if (!s.p || bb_ir_unsupported(r->a, r->req, s.p) < 0)
        return rd_oom(r);
    return 0;
}

/* Optional string member: absent/null leaves *out alone; any other non-string is an error. */
static int rd_str(struct rd *r, json_object *o, const char *key, const char *path, bool required,
                  struct bb_ir_str *out)
{
    char p[256];
    json_object *v = bb_json_get(o, key);
    if (!v) {
        if (required)
            return bb_err_set(r->err, "%s: required", fpath(p, sizeof p, path, key));
        return 0;
    }
    if (!bb_json_is(v, json_type_string))
        return rd_expect(r, fpath(p, sizeof p, path, key), "a string");
    *out = bb_json_dup(r->a, v);
    return out->p ? 0 : rd_oom(r);
}

static int rd_bool(struct rd *r, json_object *o, const char *key, const char *path, bool *has,
                   bool *out)
{
    char p[256];
    json_object *v = bb_json_get(o, key);
    if (!v)
        return 0;
    if (!bb_json_is(v, json_type_boolean))
        return rd_expect(r, fpath(p, sizeof p, path, key), "a boolean");
    *out = json_object_get_boolean(v);
    if (has)
        *has = true;
    return 0;
}

static int rd_number(struct rd *r, json_object *o, const char *key, bool *has, double *out)
{
    json_object *v = bb_json_get(o, key);
    if (!v)
        return 0;
    if (!bb_json_is_number(v))
        return rd_expect(r, key, "a number");
    *out = json_object_get_double(v);
    *has = true;
    return 0;
}

static int rd_u32(struct rd *r, json_object *o, const char *key, const char *path, bool *has,
                  uint32_t *out)
{
    char p[256];
    json_object *v = bb_json_get(o, key);
    if (!v)
        return 0;
    if (!bb_json_is(v, json_type_int))
        return rd_expect(r, fpath(p, sizeof p, path, key), "an integer");
    int64_t n = json_object_get_int64(v);
    if (n < 0 || n > UINT32_MAX)
        return bb_err_set(r->err, "%s: out of range", fpath(p, sizeof p, path, key));
    *out = (uint32_t)n;
    if (has)
        *has = true;
    return 0;
}

/* cache_control: {"type":"ephemeral","ttl"?}. The IR keeps only "ephemeral, default TTL". */
static int rd_cache(struct rd *r, json_object *o, const char *path, bool *out)
{
    char p[256];
    json_object *cc = bb_json_get(o, "cache_control");
    if (!cc)
        return 0;
    if (!bb_json_is(cc, json_type_object))
        return rd_expect(r, fpath(p, sizeof p, path, "cache_control"), "an object");
    *out = true;
    if (bb_json_get(cc, "ttl"))
        return rd_unsupported(r, "", "cache_control.ttl");
    return 0;
}

/* An image/document source into b. *skip when the source kind has no IR form. */
static int rd_source(struct rd *r, json_object *o, const char *path, struct bb_ir_block *b,
                     bool *skip)
{
    char p[256];
    const char *kind = b->type == BB_IR_IMAGE ? "image" : "document";
    json_object *src = bb_json_get(o, "source");
    if (!bb_json_is(src, json_type_object))
        return rd_expect(r, fpath(p, sizeof p, path, "source"), "an object");
    fpath(p, sizeof p, path, "source");
    json_object *t = bb_json_get(src, "type");
    if (!bb_json_is(t, json_type_string))
        return rd_expect(r, fpath(p, sizeof p, path, "source.type"), "a string");
    const char *st = json_object_get_string(t);
    if (strcmp(st, "base64") == 0) {
        if (rd_str(r, src, "data", p, true, &b->data) < 0 ||
            rd_str(r, src, "media_type", p, true, &b->media_type) < 0)
            return -1;
        return 0;
    }
    if (strcmp(st, "url") == 0)
        return rd_str(r, src, "url", p, true, &b->url);
    if (b->type == BB_IR_DOCUMENT && strcmp(st, "text") == 0) {
        /* PlainTextSource: the IR carries document bytes base64-encoded, like every other
         * protocol's inline files, so a text document crosses as text/plain data. */
        struct bb_ir_str text = {NULL, 0};
        if (rd_str(r, src, "data", p, true, &text) < 0)
            return -1;
        b->data = b64_encode(r->a, text.p, text.len);
        b->media_type = bb_ir_strdup(r->a, "text/plain", 10);
        return b->data.p && b->media_type.p ? 0 : rd_oom(r);
    }
    if (b->type == BB_IR_DOCUMENT && strcmp(st, "content") == 0) {
        json_object *c = bb_json_get(src, "content");
        if (bb_json_is(c, json_type_string)) {
            b->data =
                b64_encode(r->a, json_object_get_string(c), (size_t)json_object_get_string_len(c));
            b->media_type = bb_ir_strdup(r->a, "text/plain", 10);
            return b->data.p && b->media_type.p ? 0 : rd_oom(r);
        }
        *skip = true;
        return rd_unsupported(r, kind, ".source.content");
    }
    /* file (Files API ids) and future kinds cannot cross to another provider. */
    *skip = true;
    char name[96];
    bprintf(name, sizeof name, ".source.%s", st);
    return rd_unsupported(r, kind, name);
}

static int rd_content(struct rd *r, json_object *c, const char *path, enum where w,
                      struct bvec *bv);

static int rd_block(struct rd *r, json_object *o, const char *path, enum where w, struct bvec *bv)
{
    char p[256];
    if (!bb_json_is(o, json_type_object))
        return rd_expect(r, path, "an object");
    json_object *t = bb_json_get(o, "type");
    if (!bb_json_is(t, json_type_string))
        return rd_expect(r, fpath(p, sizeof p, path, "type"), "a string");
    const char *type = json_object_get_string(t);
    struct bb_ir_block b;
    memset(&b, 0, sizeof b);

    if (w == IN_SYSTEM && strcmp(type, "text") != 0)
        return bb_err_set(r->err, "%s: expected \"text\"", fpath(p, sizeof p, path, "type"));

    if (strcmp(type, "text") == 0) {
        b.type = BB_IR_TEXT;
        if (rd_str(r, o, "text", path, true, &b.text) < 0 || rd_cache(r, o, path, &b.cache_control))
            return -1;
        json_object *cit = bb_json_get(o, "citations");
        if (cit) {
            if (!bb_json_is(cit, json_type_array))
                return rd_expect(r, fpath(p, sizeof p, path, "citations"), "an array");
            b.citations_json = bb_json_text(r->a, cit);
            if (!b.citations_json.p)
                return rd_oom(r);
        }
    } else if (strcmp(type, "image") == 0 || strcmp(type, "document") == 0) {
        bool skip = false;
        b.type = type[0] == 'i' ? BB_IR_IMAGE : BB_IR_DOCUMENT;
        if (rd_source(r, o, path, &b, &skip) < 0 || rd_cache(r, o, path, &b.cache_control) < 0)
            return -1;
        if (b.type == BB_IR_DOCUMENT) {
            static const char *const extra[] = {"title", "context", "citations"};
            for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++)
                if (bb_json_get(o, extra[i]) && rd_unsupported(r, "document.", extra[i]) < 0)
                    return -1;
        }
        if (skip)
            return 0;
    } else if (strcmp(type, "thinking") == 0 && w == IN_MESSAGE) {
        b.type = BB_IR_THINKING;
        if (rd_str(r, o, "thinking", path, true, &b.text) < 0 ||
            rd_str(r, o, "signature", path, false, &b.signature) < 0)
            return -1;
    } else if (strcmp(type, "redacted_thinking") == 0 && w == IN_MESSAGE) {
        b.type = BB_IR_REDACTED_THINKING;
        if (rd_str(r, o, "data", path, true, &b.signature) < 0)
            return -1;
    } else if (strcmp(type, "tool_use") == 0 && w == IN_MESSAGE) {
        b.type = BB_IR_TOOL_USE;
        if (rd_str(r, o, "id", path, true, &b.id) < 0 ||
            rd_str(r, o, "name", path, true, &b.name) < 0 ||
            rd_cache(r, o, path, &b.cache_control) < 0)
            return -1;
        json_object *in = bb_json_get(o, "input");
        if (in && !bb_json_is(in, json_type_object))
            return rd_expect(r, fpath(p, sizeof p, path, "input"), "an object");
        b.input_json = in ? bb_json_text(r->a, in) : bb_ir_strdup(r->a, "{}", 2);
        if (!b.input_json.p)
            return rd_oom(r);
    } else if (strcmp(type, "tool_result") == 0 && w == IN_MESSAGE) {
        b.type = BB_IR_TOOL_RESULT;
        if (rd_str(r, o, "tool_use_id", path, true, &b.id) < 0 ||
            rd_bool(r, o, "is_error", path, NULL, &b.is_error) < 0 ||
            rd_cache(r, o, path, &b.cache_control) < 0)
            return -1;
        json_object *c = bb_json_get(o, "content");
        if (bb_json_is(c, json_type_string)) {
            b.text = bb_json_dup(r->a, c);
            if (!b.text.p)
                return rd_oom(r);
        } else if (c) {
            struct bvec nested = {0};
            if (rd_content(r, c, fpath(p, sizeof p, path, "content"), IN_TOOL_RESULT, &nested))
                return -1;
            b.content = nested.v;
            b.n_content = nested.n;
            /* All-text results also get the flat text, for writers that take only strings. */
            size_t total = 0;
            bool all_text = nested.n > 0;
            for (size_t i = 0; i < nested.n; i++) {
                all_text = all_text && nested.v[i].type == BB_IR_TEXT;
                total += nested.v[i].text.len + 1;
            }
            if (all_text) {
                char *flat = bb_arena_alloc(r->a, total + 1);
                if (!flat)
                    return rd_oom(r);
                size_t at = 0;
                for (size_t i = 0; i < nested.n; i++) {
                    if (i)
                        flat[at++] = '\n';
                    memcpy(flat + at, nested.v[i].text.p, nested.v[i].text.len);
                    at += nested.v[i].text.len;
                }
                flat[at] = '\0';
                b.text.p = flat;
                b.text.len = at;
            }
        }
    } else {
        /* search_result, server_tool_use, *_tool_result, container_upload, tool_reference, and
         * blocks misplaced for their position: nothing in the IR carries them. */
        return rd_unsupported(r, "", type);
    }
    struct bb_ir_block *dst = bv_push(r->a, bv);
    if (!dst)
        return rd_oom(r);
    *dst = b;
    return 0;
}

/* content: a string (one text block) or an array of blocks. */
static int rd_content(struct rd *r, json_object *c, const char *path, enum where w, struct bvec *bv)
{
    char p[256];
    if (bb_json_is(c, json_type_string)) {
        struct bb_ir_block *b = bv_push(r->a, bv);
        if (!b)
            return rd_oom(r);
        b->type = BB_IR_TEXT;
        b->text = bb_json_dup(r->a, c);
        return b->text.p ? 0 : rd_oom(r);
    }
    if (!bb_json_is(c, json_type_array))
        return rd_expect(r, path, "a string or an array");
    size_t n = json_object_array_length(c);
    for (size_t i = 0; i < n; i++) {
        bprintf(p, sizeof p, "%s[%zu]", path, i);
        if (rd_block(r, json_object_array_get_idx(c, i), p, w, bv) < 0)
            return -1;
    }
    return 0;
}

static int rd_messages(struct rd *r, json_object *msgs, struct bvec *sys)
{
    char p[64], q[96];
    if (!msgs)
        return bb_err_set(r->err, "messages: required");
    if (!bb_json_is(msgs, json_type_array))
        return rd_expect(r, "messages", "an array");
    size_t n = json_object_array_length(msgs);
    struct bb_ir_message *v = bb_arena_calloc(r->a, (n ? n : 1) * sizeof *v);
    if (!v)
        return rd_oom(r);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        json_object *m = json_object_array_get_idx(msgs, i);
        bprintf(p, sizeof p, "messages[%zu]", i);
        if (!bb_json_is(m, json_type_object))
            return rd_expect(r, p, "an object");
        json_object *role = bb_json_get(m, "role");
        if (!bb_json_is(role, json_type_string))
            return rd_expect(r, fpath(q, sizeof q, p, "role"), "a string");
        json_object *content = bb_json_get(m, "content");
        fpath(q, sizeof q, p, "content");
        if (!content)
            return bb_err_set(r->err, "%s: required", q);
        const char *rs = json_object_get_string(role);
        if (strcmp(rs, "system") == 0) {
            /* A system turn inside messages: the IR has one system prompt, so it is appended
             * there (its position among the turns is not kept). */
            if (rd_content(r, content, q, IN_SYSTEM, sys) < 0)
                return -1;
            continue;
        }
        if (strcmp(rs, "user") != 0 && strcmp(rs, "assistant") != 0)
            return bb_err_set(r->err, "%s.role: expected \"user\", \"assistant\" or \"system\"", p);
        struct bvec bv = {0};
        if (rd_content(r, content, q, IN_MESSAGE, &bv) < 0)
            return -1;
        v[k].role = rs[0] == 'u' ? BB_IR_USER : BB_IR_ASSISTANT;
        v[k].blocks = bv.v;
        v[k].n_blocks = bv.n;
        k++;
    }
    r->req->messages = v;
    r->req->n_messages = k;
    return 0;
}

static int rd_tools(struct rd *r, json_object *tools)
{
    char p[64], q[96];
    if (!bb_json_is(tools, json_type_array))
        return rd_expect(r, "tools", "an array");
    size_t n = json_object_array_length(tools);
    struct bb_ir_tool *v = bb_arena_calloc(r->a, (n ? n : 1) * sizeof *v);
    if (!v)
        return rd_oom(r);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        json_object *t = json_object_array_get_idx(tools, i);
        bprintf(p, sizeof p, "tools[%zu]", i);
        if (!bb_json_is(t, json_type_object))
            return rd_expect(r, p, "an object");
        json_object *type = bb_json_get(t, "type");
        if (type && !bb_json_is(type, json_type_string))
            return rd_expect(r, fpath(q, sizeof q, p, "type"), "a string");
        if (type && !bb_json_str_eq(type, "custom")) {
            /* Anthropic-defined tools (bash_20250124, web_search_20250305, ...): the provider
             * runs or defines them; another provider has no equivalent. */
            if (rd_unsupported(r, "tools.", json_object_get_string(type)) < 0)
                return -1;
            continue;
        }
        struct bb_ir_tool *tool = &v[k];
        if (rd_str(r, t, "name", p, true, &tool->name) < 0 ||
            rd_str(r, t, "description", p, false, &tool->description) < 0 ||
            rd_bool(r, t, "strict", p, NULL, &tool->strict) < 0)
            return -1;
        json_object *schema = bb_json_get(t, "input_schema");
        if (!bb_json_is(schema, json_type_object))
            return rd_expect(r, fpath(q, sizeof q, p, "input_schema"), "an object");
        tool->parameters_json = bb_json_text(r->a, schema);
        if (!tool->parameters_json.p)
            return rd_oom(r);
        static const char *const extra[] = {"cache_control", "defer_loading", "input_examples",
                                            "allowed_callers", "eager_input_streaming"};
        for (size_t j = 0; j < sizeof extra / sizeof extra[0]; j++)
            if (bb_json_get(t, extra[j]) && rd_unsupported(r, "tools.", extra[j]) < 0)
                return -1;
        k++;
    }
    r->req->tools = v;
    r->req->n_tools = k;
    return 0;
}

static int rd_tool_choice(struct rd *r, json_object *tc)
{
    struct bb_ir_request *q = r->req;
    if (!bb_json_is(tc, json_type_object))
        return rd_expect(r, "tool_choice", "an object");
    json_object *t = bb_json_get(tc, "type");
    if (!bb_json_is(t, json_type_string))
        return rd_expect(r, "tool_choice.type", "a string");
    const char *s = json_object_get_string(t);
    if (strcmp(s, "auto") == 0) {
        q->tool_choice = BB_IR_TC_AUTO;
    } else if (strcmp(s, "any") == 0) {
        q->tool_choice = BB_IR_TC_ANY;
    } else if (strcmp(s, "none") == 0) {
        q->tool_choice = BB_IR_TC_NONE;
    } else if (strcmp(s, "tool") == 0) {
        q->tool_choice = BB_IR_TC_TOOL;
        if (rd_str(r, tc, "name", "tool_choice", true, &q->tool_choice_name) < 0)
            return -1;
    } else {
        return bb_err_set(r->err, "tool_choice.type: expected \"auto\", \"any\", \"tool\" or "
                                  "\"none\"");
    }
    bool disable = false, has = false;
    if (rd_bool(r, tc, "disable_parallel_tool_use", "tool_choice", &has, &disable) < 0)
        return -1;
    if (has) {
        q->has_parallel_tool_calls = true;
        q->parallel_tool_calls = !disable;
    }
    return 0;
}

static int rd_thinking(struct rd *r, json_object *th)
{
    struct bb_ir_request *q = r->req;
    if (!bb_json_is(th, json_type_object))
        return rd_expect(r, "thinking", "an object");
    json_object *t = bb_json_get(th, "type");
    if (!bb_json_is(t, json_type_string))
        return rd_expect(r, "thinking.type", "a string");
    const char *s = json_object_get_string(t);
    if (strcmp(s, "enabled") == 0) {
        q->reasoning = true;
        if (!bb_json_get(th, "budget_tokens"))
            return bb_err_set(r->err, "thinking.budget_tokens: required");
        if (rd_u32(r, th, "budget_tokens", "thinking", NULL, &q->reasoning_budget) < 0)
            return -1;
    } else if (strcmp(s, "adaptive") == 0 || strcmp(s, "between_tools") == 0) {
        q->reasoning = true; /* the model picks the budget */
    } else if (strcmp(s, "disabled") == 0) {
        q->reasoning = false;
    } else {
        return bb_err_set(r->err, "thinking.type: expected \"enabled\", \"disabled\", "
                                  "\"adaptive\" or \"between_tools\"");
    }
    if (bb_json_get(th, "display"))
        return rd_unsupported(r, "", "thinking.display");
    return 0;
}

/* output_config: effort (the reasoning ask) and format (JSON-schema structured output). */
static int rd_output_config(struct rd *r, json_object *oc)
{
    struct bb_ir_request *q = r->req;
    if (!bb_json_is(oc, json_type_object))
        return rd_expect(r, "output_config", "an object");
    struct json_object_iterator it = json_object_iter_begin(oc), end = json_object_iter_end(oc);
    for (; !json_object_iter_equal(&it, &end); json_object_iter_next(&it)) {
        const char *k = json_object_iter_peek_name(&it);
        json_object *v = json_object_iter_peek_value(&it);
        if (!v)
            continue;
        if (strcmp(k, "effort") == 0) {
            const char *e = bb_json_str(v);
            if (!e)
                return rd_expect(r, "output_config.effort", "a string");
            if (strcmp(e, "low") == 0)
                q->reasoning_effort = BB_IR_EFFORT_LOW;
            else if (strcmp(e, "medium") == 0)
                q->reasoning_effort = BB_IR_EFFORT_MEDIUM;
            else if (strcmp(e, "high") == 0 || strcmp(e, "xhigh") == 0 || strcmp(e, "max") == 0)
                q->reasoning_effort = BB_IR_EFFORT_HIGH;
            else
                return bb_err_set(r->err, "output_config.effort: expected \"low\", \"medium\", "
                                          "\"high\", \"xhigh\" or \"max\"");
        } else if (strcmp(k, "format") == 0) {
            if (!bb_json_is(v, json_type_object))
                return rd_expect(r, "output_config.format", "an object");
            if (!bb_json_str_eq(bb_json_get(v, "type"), "json_schema"))
                return bb_err_set(r->err, "output_config.format.type: expected \"json_schema\"");
            json_object *schema = bb_json_get(v, "schema");
            if (!bb_json_is(schema, json_type_object))
                return rd_expect(r, "output_config.format.schema", "an object");
            q->format = BB_IR_FMT_JSON_SCHEMA;
            q->format_strict = true; /* Anthropic's structured output is always strict */
            q->format_schema_json = bb_json_text(r->a, schema);
            if (!q->format_schema_json.p)
                return rd_oom(r);
        } else if (rd_unsupported(r, "output_config.", k) < 0) {
            return -1;
        }
    }
    return 0;
}

static int rd_stop_sequences(struct rd *r, json_object *ss)
{
    struct bb_ir_request *q = r->req;
    if (!bb_json_is(ss, json_type_array))
        return rd_expect(r, "stop_sequences", "an array");
    size_t n = json_object_array_length(ss);
    q->stop = bb_arena_calloc(r->a, (n ? n : 1) * sizeof *q->stop);
    if (!q->stop)
        return rd_oom(r);
    for (size_t i = 0; i < n; i++) {
        json_object *s = json_object_array_get_idx(ss, i);
        if (!bb_json_is(s, json_type_string)) {
            char p[64];
            bprintf(p, sizeof p, "stop_sequences[%zu]", i);
            return rd_expect(r, p, "a string");
        }
        q->stop[i] = bb_json_dup(r->a, s);
        if (!q->stop[i].p)
            return rd_oom(r);
    }
    q->n_stop = n;
    return 0;
}

static int rd_metadata(struct rd *r, json_object *md)
{
    if (!bb_json_is(md, json_type_object))
        return rd_expect(r, "metadata", "an object");
    struct json_object_iterator it = json_object_iter_begin(md), end = json_object_iter_end(md);
    for (; !json_object_iter_equal(&it, &end); json_object_iter_next(&it)) {
        const char *k = json_object_iter_peek_name(&it);
        if (strcmp(k, "user_id") == 0) {
            if (rd_str(r, md, "user_id", "metadata", false, &r->req->user) < 0)
                return -1;
        } else if (rd_unsupported(r, "metadata.", k) < 0) {
            return -1;
        }
    }
    return 0;
}

static int rd_system(struct rd *r, json_object *s, struct bvec *sys)
{
    if (!bb_json_is(s, json_type_string) && !bb_json_is(s, json_type_array))
        return rd_expect(r, "system", "a string or an array");
    return rd_content(r, s, "system", IN_SYSTEM, sys);
}

static int rd_request(struct rd *r, json_object *root, const char *model_from_path)
{
    struct bb_ir_request *q = r->req;
    struct bvec sys = {0};
    static const char *const known[] = {
        "model",          "max_tokens",  "messages",    "system",        "metadata",
        "stop_sequences", "stream",      "temperature", "top_p",         "top_k",
        "thinking",       "tool_choice", "tools",       "output_config",
    };
    struct json_object_iterator it = json_object_iter_begin(root), end = json_object_iter_end(root);
    for (; !json_object_iter_equal(&it, &end); json_object_iter_next(&it)) {
        const char *k = json_object_iter_peek_name(&it);
        bool is_known = false;
        for (size_t i = 0; i < sizeof known / sizeof known[0] && !is_known; i++)
            is_known = strcmp(known[i], k) == 0;
        /* cache_control (automatic caching), container, service_tier, speed, ...: recorded,
         * never fatal. */
        if (!is_known && json_object_iter_peek_value(&it) && rd_unsupported(r, "", k) < 0)
            return -1;
    }

    if (rd_str(r, root, "model", "", !model_from_path, &q->model) < 0)
        return -1;
    if (model_from_path) {
        q->model = bb_ir_strdup(r->a, model_from_path, strlen(model_from_path));
        if (!q->model.p)
            return rd_oom(r);
    }
    if (rd_u32(r, root, "max_tokens", "", &q->has_max_tokens, &q->max_tokens) < 0)
        return -1;
    json_object *v;
    if ((v = bb_json_get(root, "system")) && rd_system(r, v, &sys) < 0)
        return -1;
    if (rd_messages(r, bb_json_get(root, "messages"), &sys) < 0)
        return -1;
    q->system = sys.v;
    q->n_system = sys.n;
    if ((v = bb_json_get(root, "metadata")) && rd_metadata(r, v) < 0)
        return -1;
    if ((v = bb_json_get(root, "stop_sequences")) && rd_stop_sequences(r, v) < 0)
        return -1;
    if (rd_bool(r, root, "stream", "", NULL, &q->stream) < 0)
        return -1;
    if (rd_number(r, root, "temperature", &q->has_temperature, &q->temperature) < 0 ||
        rd_number(r, root, "top_p", &q->has_top_p, &q->top_p) < 0 ||
        rd_u32(r, root, "top_k", "", &q->has_top_k, &q->top_k) < 0)
        return -1;
    if ((v = bb_json_get(root, "thinking")) && rd_thinking(r, v) < 0)
        return -1;
    if ((v = bb_json_get(root, "tools")) && rd_tools(r, v) < 0)
        return -1;
    if ((v = bb_json_get(root, "tool_choice")) && rd_tool_choice(r, v) < 0)
        return -1;
    if ((v = bb_json_get(root, "output_config")) && rd_output_config(r, v) < 0)
        return -1;
    return 0;
}

static int anthropic_read_request(struct bb_arena *a, const char *body, size_t len,
                                  const char *model_from_path, struct bb_ir_request *out,
                                  struct bb_err *err)
{
    memset(out, 0, sizeof *out);
    json_object *root = bb_json_parse(body, len, "request body", err);
    if (!root)
        return -1;
    int rc;
    if (!bb_json_is(root, json_type_object)) {
        rc = bb_err_set(err, "request body: expected a JSON object");
    } else {
        struct rd r = {a, out, err};
        rc = rd_request(&r, root, model_from_path);
    }
    json_object_put(root);
    return rc;
}

/* ======================================================================================== */
/* response blocks (a Message's content, also the stream's content_block_start)             */
/* ======================================================================================== */

/* The tool_use id, or one in Anthropic's shape when the IR has none. */
static json_object *tool_id(const struct bb_ir_str *id, const char *seed, size_t index)
{
    if (str_has(id))
        return jnew_str(id);
    char buf[192];
    bprintf(buf, sizeof buf, "toolu_%s_%zu", seed && *seed ? seed : "busbar", index);
    return json_object_new_string(buf);
}

/* A tool input as an object: the IR carries JSON text, the wire needs an object. Invalid or
 * non-object text becomes {} (*bad is set so a writer can report it). */
static json_object *input_object(const struct bb_ir_str *s, bool *bad)
{
    json_object *in = NULL;
    if (s->p && s->len) {
        in = bb_json_parse(s->p, s->len, "input", NULL);
        if (!bb_json_is(in, json_type_object)) {
            json_object_put(in);
            in = NULL;
            if (bad)
                *bad = true;
        }
    }
    return in ? in : json_object_new_object();
}

/* A citations array from raw JSON; NULL when absent or not an array. */
static json_object *citations_array(const struct bb_ir_str *s)
{
    if (!str_has(s))
        return NULL;
    json_object *c = bb_json_parse(s->p, s->len, "citations", NULL);
    if (!bb_json_is(c, json_type_array)) {
        json_object_put(c);
        return NULL;
    }
    return c;
}

/* A response content block; NULL for IR blocks a Message cannot hold (image, document,
 * tool_result). */
static json_object *out_block(const struct bb_ir_block *b, const char *seed, size_t index)
{
    json_object *o = json_object_new_object();
    switch (b->type) {
    case BB_IR_TEXT: {
        jadd(o, "type", json_object_new_string("text"));
        jadd(o, "text", jnew_str(&b->text));
        json_object *c = citations_array(&b->citations_json);
        if (c)
            jadd(o, "citations", c);
        return o;
    }
    case BB_IR_THINKING:
        jadd(o, "type", json_object_new_string("thinking"));
        jadd(o, "thinking", jnew_str(&b->text));
        jadd(o, "signature", jnew_str(&b->signature));
        return o;
    case BB_IR_REDACTED_THINKING:
        jadd(o, "type", json_object_new_string("redacted_thinking"));
        jadd(o, "data", jnew_str(&b->signature));
        return o;
    case BB_IR_TOOL_USE:
        jadd(o, "type", json_object_new_string("tool_use"));
        jadd(o, "id", tool_id(&b->id, seed, index));
        jadd(o, "name", jnew_str(&b->name));
        jadd(o, "input", input_object(&b->input_json, NULL));
        return o;
    default:
        json_object_put(o);
        return NULL;
    }
}

/* A response block from the wire; *skip for server-tool and other blocks with no IR form. */
static int rd_out_block(struct bb_arena *a, json_object *o, struct bb_ir_block *b, bool *skip,
                        struct bb_err *err, size_t i)
{
    memset(b, 0, sizeof *b);
    const char *t = bb_json_str(bb_json_get(o, "type"));
    if (!t)
        return bb_err_set(err, "content[%zu].type: expected a string", i);
    if (strcmp(t, "text") == 0) {
        b->type = BB_IR_TEXT;
        json_object *c = bb_json_get(o, "citations");
        if (bb_json_is(c, json_type_array) && json_object_array_length(c) > 0) {
            b->citations_json = bb_json_text(a, c);
            if (!b->citations_json.p)
                return bb_err_set(err, "out of memory");
        }
    } else if (strcmp(t, "thinking") == 0) {
        b->type = BB_IR_THINKING;
    } else if (strcmp(t, "redacted_thinking") == 0) {
        b->type = BB_IR_REDACTED_THINKING;
    } else if (strcmp(t, "tool_use") == 0) {
        b->type = BB_IR_TOOL_USE;
    } else {
        *skip = true;
        return 0;
    }
    json_object *text = bb_json_get(o, b->type == BB_IR_THINKING ? "thinking" : "text");
    json_object *sig = bb_json_get(o, b->type == BB_IR_REDACTED_THINKING ? "data" : "signature");
    if (bb_json_is(text, json_type_string) && b->type != BB_IR_TOOL_USE &&
        !(b->text = bb_json_dup(a, text)).p)
        return bb_err_set(err, "out of memory");
    if (bb_json_is(sig, json_type_string) && !(b->signature = bb_json_dup(a, sig)).p)
        return bb_err_set(err, "out of memory");
    if (b->type == BB_IR_TOOL_USE) {
        json_object *id = bb_json_get(o, "id"), *name = bb_json_get(o, "name"),
                    *in = bb_json_get(o, "input");
        if (bb_json_is(id, json_type_string))
            b->id = bb_json_dup(a, id);
        if (bb_json_is(name, json_type_string))
            b->name = bb_json_dup(a, name);
        b->input_json = in ? bb_json_text(a, in) : bb_ir_strdup(a, "{}", 2);
        if (!b->input_json.p)
            return bb_err_set(err, "out of memory");
    }
    return 0;
}

/* ======================================================================================== */
/* egress: write the upstream request                                                       */
/* ======================================================================================== */

struct wr {
    struct bb_arena *a;
    struct bb_err *err;
};

static json_object *cache_ephemeral(void)
{
    json_object *o = json_object_new_object();
    jadd(o, "type", json_object_new_string("ephemeral"));
    return o;
}

static void add_cache(json_object *o, bool cc)
{
    if (cc)
        jadd(o, "cache_control", cache_ephemeral());
}

/* The API rejects empty text blocks, so those are skipped (NULL). */
static json_object *wr_text(struct wr *w, const struct bb_ir_block *b)
{
    if (!str_has(&b->text))
        return NULL;
    json_object *o = json_object_new_object();
    jadd(o, "type", json_object_new_string("text"));
    jadd(o, "text", jnew_str(&b->text));
    add_cache(o, b->cache_control);
    /* Citations in a request must reference documents of this request in Anthropic's own
     * shapes; an IR citation may come from any provider, so it is not resent. */
    if (b->citations_json.p)
        bb_proto_drop(w->a, "citations");
    return o;
}

static bool has_prefix(const char *s, const char *pre)
{
    return s && strncmp(s, pre, strlen(pre)) == 0;
}

static const char *sniff_image(const struct bb_ir_str *data)
{
    if (has_prefix(data->p, "/9j/"))
        return "image/jpeg";
    if (has_prefix(data->p, "R0lGOD"))
        return "image/gif";
    if (has_prefix(data->p, "UklGR"))
        return "image/webp";
    return "image/png";
}

static bool image_type_ok(const char *mt)
{
    static const char *const ok[] = {"image/jpeg", "image/png", "image/gif", "image/webp"};
    for (size_t i = 0; mt && i < sizeof ok / sizeof ok[0]; i++)
        if (strcmp(mt, ok[i]) == 0)
            return true;
    return false;
}

/* An image or document block; NULL (reported) when the API cannot take it. */
static json_object *wr_media(struct wr *w, const struct bb_ir_block *b)
{
    bool doc = b->type == BB_IR_DOCUMENT;
    const char *what = doc ? "documents" : "images";
    struct bb_ir_str data = b->data, mt = b->media_type;
    json_object *src = json_object_new_object();

    if (!data.p && has_prefix(b->url.p, "data:")) {
        /* data:<media type>;base64,<data>: the API takes no data URLs, only base64 sources. */
        const char *comma = strchr(b->url.p, ',');
        const char *semi = strchr(b->url.p, ';');
        if (!comma || !semi || semi > comma || strncmp(semi, ";base64,", 8) != 0) {
            json_object_put(src);
            bb_proto_drop(w->a, what);
            return NULL;
        }
        mt = bb_ir_strdup(w->a, b->url.p + 5, (size_t)(semi - b->url.p - 5));
        data.p = (char *)comma + 1;
        data.len = b->url.len - (size_t)(comma + 1 - b->url.p);
    }
    if (data.p) {
        const char *m = str_has(&mt) ? mt.p : doc ? "application/pdf" : sniff_image(&data);
        if (!doc && image_type_ok(m)) {
            jadd(src, "type", json_object_new_string("base64"));
            jadd(src, "media_type", json_object_new_string(m));
            jadd(src, "data", jnew_str(&data));
        } else if (doc && strcmp(m, "application/pdf") == 0) {
            jadd(src, "type", json_object_new_string("base64"));
            jadd(src, "media_type", json_object_new_string(m));
            jadd(src, "data", jnew_str(&data));
        } else if (doc && strcmp(m, "text/plain") == 0) {
            struct bb_ir_str text;
            if (b64_decode(w->a, &data, &text) < 0) {
                json_object_put(src);
                bb_proto_drop(w->a, what);
                return NULL;
            }
            jadd(src, "type", json_object_new_string("text"));
            jadd(src, "media_type", json_object_new_string("text/plain"));
            jadd(src, "data", jnew_str(&text));
        } else {
            json_object_put(src);
            bb_proto_drop(w->a, what);
            return NULL;
        }
    } else if (str_has(&b->url)) {
        jadd(src, "type", json_object_new_string("url"));
        jadd(src, "url", jnew_str(&b->url));
    } else {
        json_object_put(src);
        bb_proto_drop(w->a, what);
        return NULL;
    }
    json_object *o = json_object_new_object();
    jadd(o, "type", json_object_new_string(doc ? "document" : "image"));
    jadd(o, "source", src);
    add_cache(o, b->cache_control);
    return o;
}

static json_object *wr_tool_use(struct wr *w, const struct bb_ir_block *b)
{
    bool bad = false;
    json_object *o = json_object_new_object();
    jadd(o, "type", json_object_new_string("tool_use"));
    jadd(o, "id", jnew_str(&b->id));
    jadd(o, "name", jnew_str(&b->name));
    jadd(o, "input", input_object(&b->input_json, &bad));
    add_cache(o, b->cache_control);
    if (bad) /* arguments that are not a JSON object cannot be an Anthropic input */
        bb_proto_drop(w->a, "tool_input");
    return o;
}

static json_object *wr_tool_result(struct wr *w, const struct bb_ir_block *b)
{
    json_object *o = json_object_new_object();
    jadd(o, "type", json_object_new_string("tool_result"));
    jadd(o, "tool_use_id", jnew_str(&b->id));
    json_object *arr = NULL;
    if (b->n_content) {
        arr = json_object_new_array();
        for (size_t i = 0; i < b->n_content; i++) {
            const struct bb_ir_block *c = &b->content[i];
            json_object *x = NULL;
            if (c->type == BB_IR_TEXT)
                x = wr_text(w, c);
            else if (c->type == BB_IR_IMAGE || c->type == BB_IR_DOCUMENT)
                x = wr_media(w, c);
            if (x)
                json_object_array_add(arr, x);
        }
        if (json_object_array_length(arr) == 0) {
            json_object_put(arr);
            arr = NULL;
        }
    }
    if (arr)
        jadd(o, "content", arr);
    else if (str_has(&b->text))
        jadd(o, "content", jnew_str(&b->text));
    if (b->is_error)
        jadd(o, "is_error", json_object_new_boolean(1));
    add_cache(o, b->cache_control);
    return o;
}

/* One history block for a turn of `role`; NULL when skipped (reported where it loses data). */
static json_object *wr_block(struct wr *w, const struct bb_ir_block *b, enum bb_ir_role role)
{
    switch (b->type) {
    case BB_IR_TEXT:
        return wr_text(w, b);
    case BB_IR_IMAGE:
    case BB_IR_DOCUMENT:
        return wr_media(w, b);
    case BB_IR_THINKING:
        /* The API verifies signatures and takes thinking only in assistant turns; a thinking
         * block from a signature-less dialect cannot be replayed. */
        if (role != BB_IR_ASSISTANT || !str_has(&b->signature)) {
            bb_proto_drop(w->a, "thinking");
            return NULL;
        }
        {
            json_object *o = json_object_new_object();
            jadd(o, "type", json_object_new_string("thinking"));
            jadd(o, "thinking", jnew_str(&b->text));
            jadd(o, "signature", jnew_str(&b->signature));
            return o;
        }
    case BB_IR_REDACTED_THINKING:
        if (role != BB_IR_ASSISTANT || !str_has(&b->signature)) {
            bb_proto_drop(w->a, "thinking");
            return NULL;
        }
        {
            json_object *o = json_object_new_object();
            jadd(o, "type", json_object_new_string("redacted_thinking"));
            jadd(o, "data", jnew_str(&b->signature));
            return o;
        }
    case BB_IR_TOOL_USE:
        if (role != BB_IR_ASSISTANT) {
            bb_proto_drop(w->a, "tool_calls");
            return NULL;
        }
        return wr_tool_use(w, b);
    case BB_IR_TOOL_RESULT:
        if (role != BB_IR_USER) {
            bb_proto_drop(w->a, "tool_results");
            return NULL;
        }
        return wr_tool_result(w, b);
    }
    return NULL;
}

/* A turn being assembled: tool_result blocks go first in a user turn (the API requires them
 * before any text), the rest keep their order. */
struct turn {
    int role; /* -1 = none yet */
    json_object *results, *others;
};

static void turn_flush(struct turn *t, json_object *msgs)
{
    size_t nr = t->results ? json_object_array_length(t->results) : 0;
    size_t no = t->others ? json_object_array_length(t->others) : 0;
    if (nr + no) {
        json_object *content = json_object_new_array_ext((int)(nr + no));
        for (size_t i = 0; i < nr; i++)
            json_object_array_add(content,
                                  json_object_get(json_object_array_get_idx(t->results, i)));
        for (size_t i = 0; i < no; i++)
            json_object_array_add(content,
                                  json_object_get(json_object_array_get_idx(t->others, i)));
        json_object *m = json_object_new_object();
        jadd(m, "role", json_object_new_string(t->role == BB_IR_USER ? "user" : "assistant"));
        jadd(m, "content", content);
        json_object_array_add(msgs, m);
    }
    json_object_put(t->results);
    json_object_put(t->others);
    t->results = t->others = NULL;
}

/* messages with consecutive same-role turns merged (also across turns left empty by skipped
 * blocks). */
static json_object *wr_messages(struct wr *w, const struct bb_ir_request *ir)
{
    json_object *msgs = json_object_new_array();
    struct turn t = {-1, NULL, NULL};
    for (size_t i = 0; i < ir->n_messages; i++) {
        const struct bb_ir_message *m = &ir->messages[i];
        if (m->name.p)
            bb_proto_drop(w->a, "name");
        for (size_t j = 0; j < m->n_blocks; j++) {
            json_object *o = wr_block(w, &m->blocks[j], m->role);
            if (!o)
                continue;
            if (t.role != (int)m->role) {
                turn_flush(&t, msgs);
                t.role = (int)m->role;
            }
            json_object **dst = m->blocks[j].type == BB_IR_TOOL_RESULT ? &t.results : &t.others;
            if (!*dst)
                *dst = json_object_new_array();
            json_object_array_add(*dst, o);
        }
    }
    turn_flush(&t, msgs);
    return msgs;
}

static json_object *wr_system(struct wr *w, const struct bb_ir_request *ir)
{
    size_t n = 0;
    bool cached = false;
    const struct bb_ir_block *one = NULL;
    for (size_t i = 0; i < ir->n_system; i++) {
        const struct bb_ir_block *b = &ir->system[i];
        if (b->type != BB_IR_TEXT) {
            bb_proto_drop(w->a, "system");
            continue;
        }
        if (!str_has(&b->text))
            continue;
        n++;
        one = b;
        cached = cached || b->cache_control;
    }
    if (!n)
        return NULL;
    if (n == 1 && !cached)
        return jnew_str(&one->text);
    json_object *arr = json_object_new_array();
    for (size_t i = 0; i < ir->n_system; i++) {
        const struct bb_ir_block *b = &ir->system[i];
        if (b->type != BB_IR_TEXT || !str_has(&b->text))
            continue;
        json_object *o = json_object_new_object();
        jadd(o, "type", json_object_new_string("text"));
        jadd(o, "text", jnew_str(&b->text));
        add_cache(o, b->cache_control);
        json_object_array_add(arr, o);
    }
    return arr;
}

static int wr_tools(struct wr *w, const struct bb_ir_request *ir, json_object *body)
{
    json_object *arr = json_object_new_array();
    jadd(body, "tools", arr);
    for (size_t i = 0; i < ir->n_tools; i++) {
        const struct bb_ir_tool *t = &ir->tools[i];
        json_object *schema = NULL;
        if (str_has(&t->parameters_json)) {
            schema = bb_json_parse(t->parameters_json.p, t->parameters_json.len, "schema", NULL);
            if (!bb_json_is(schema, json_type_object)) {
                json_object_put(schema);
                return bb_err_set(w->err, "tools[%zu].parameters: expected a JSON object", i);
            }
        } else {
            schema = json_object_new_object();
        }
        if (!bb_json_get(schema, "type")) /* input_schema.type must be "object" */
            jadd(schema, "type", json_object_new_string("object"));
        json_object *o = json_object_new_object();
        jadd(o, "name", jnew_str(&t->name));
        if (str_has(&t->description))
            jadd(o, "description", jnew_str(&t->description));
        jadd(o, "input_schema", schema);
        if (t->strict) /* strict tool use is not accepted by every Claude model */
            bb_proto_drop(w->a, "strict");
        json_object_array_add(arr, o);
    }
    return 0;
}

/* tool_choice only with tools (the API rejects it alone); forced choices are reported when
 * there is nothing to force. */
static bool wr_tool_choice(struct wr *w, const struct bb_ir_request *ir, json_object *body)
{
    if (!ir->n_tools) {
        if (ir->tool_choice == BB_IR_TC_ANY || ir->tool_choice == BB_IR_TC_TOOL)
            bb_proto_drop(w->a, "tool_choice");
        return false;
    }
    const char *type = NULL;
    switch (ir->tool_choice) {
    case BB_IR_TC_UNSET:
        type = ir->has_parallel_tool_calls && !ir->parallel_tool_calls ? "auto" : NULL;
        break;
    case BB_IR_TC_AUTO:
        type = "auto";
        break;
    case BB_IR_TC_ANY:
        type = "any";
        break;
    case BB_IR_TC_TOOL:
        type = "tool";
        break;
    case BB_IR_TC_NONE:
        type = "none";
        break;
    }
    if (!type)
        return false;
    json_object *tc = json_object_new_object();
    jadd(tc, "type", json_object_new_string(type));
    if (ir->tool_choice == BB_IR_TC_TOOL)
        jadd(tc, "name", jnew_str(&ir->tool_choice_name));
    if (ir->has_parallel_tool_calls && ir->tool_choice != BB_IR_TC_NONE)
        jadd(tc, "disable_parallel_tool_use", json_object_new_boolean(!ir->parallel_tool_calls));
    jadd(body, "tool_choice", tc);
    return ir->tool_choice == BB_IR_TC_ANY || ir->tool_choice == BB_IR_TC_TOOL;
}

static uint32_t effort_budget(enum bb_ir_effort e)
{
    switch (e) {
    case BB_IR_EFFORT_LOW:
        return 2048;
    case BB_IR_EFFORT_MEDIUM:
        return 8192;
    case BB_IR_EFFORT_HIGH:
        return 24576;
    default:
        return THINKING_MIN_BUDGET;
    }
}

/* With thinking on, the API wants the last assistant turn to open with a thinking block when
 * it is a prefill (the final message) or part of a tool loop (it holds a tool_use). */
static bool history_allows_thinking(json_object *msgs)
{
    size_t n = json_object_array_length(msgs);
    for (size_t i = n; i-- > 0;) {
        json_object *m = json_object_array_get_idx(msgs, i);
        if (!bb_json_str_eq(bb_json_get(m, "role"), "assistant"))
            continue;
        json_object *c = bb_json_get(m, "content");
        size_t nc = json_object_array_length(c);
        bool tool = false;
        for (size_t j = 0; j < nc; j++)
            tool = tool ||
                   bb_json_str_eq(bb_json_get(json_object_array_get_idx(c, j), "type"), "tool_use");
        if (!tool && i != n - 1)
            return true;
        json_object *first = bb_json_get(json_object_array_get_idx(c, 0), "type");
        return bb_json_str_eq(first, "thinking") || bb_json_str_eq(first, "redacted_thinking");
    }
    return true;
}

static bool stop_ok(const struct bb_ir_str *s)
{
    for (size_t i = 0; i < s->len; i++)
        if (!isspace((unsigned char)s->p[i]))
            return true;
    return false; /* the API rejects empty and whitespace-only stop sequences */
}

static int wr_body(struct wr *w, const struct bb_ir_request *ir, const struct bb_egress_ctx *ctx,
                   json_object *body)
{
    const struct bb_lane *lane = ctx->lane;
    const char *model = lane && lane->upstream_model ? lane->upstream_model : ir->model.p;
    uint32_t max_tokens = ir->has_max_tokens                 ? ir->max_tokens
                          : lane && lane->default_max_tokens ? lane->default_max_tokens
                                                             : FALLBACK_MAX_TOKENS;
    jadd(body, "model", jnew_cstr(model));

    json_object *sys = wr_system(w, ir);
    if (sys)
        jadd(body, "system", sys);
    json_object *msgs = wr_messages(w, ir);
    jadd(body, "messages", msgs);

    bool forced = false;
    if (ir->n_tools) {
        if (wr_tools(w, ir, body) < 0)
            return -1;
    }
    forced = wr_tool_choice(w, ir, body);
    if (ir->has_parallel_tool_calls && !ir->n_tools && !ir->parallel_tool_calls)
        bb_proto_drop(w->a, "parallel_tool_calls");

    /* Thinking: asked for, allowed on this lane, and compatible with the rest. */
    bool asks = ir->reasoning || ir->reasoning_budget ||
                (ir->reasoning_effort != BB_IR_EFFORT_UNSET &&
                 ir->reasoning_effort != BB_IR_EFFORT_MINIMAL);
    bool thinking = asks && lane && lane->reasoning && !forced && history_allows_thinking(msgs);
    if (asks && !thinking)
        bb_proto_drop(w->a, "reasoning");
    if (thinking) {
        uint32_t budget =
            ir->reasoning_budget ? ir->reasoning_budget : effort_budget(ir->reasoning_effort);
        if (budget < THINKING_MIN_BUDGET)
            budget = THINKING_MIN_BUDGET;
        if (max_tokens <= budget) /* budget_tokens must be below max_tokens: keep answer room */
            max_tokens = budget + (max_tokens ? max_tokens : THINKING_MIN_BUDGET);
        json_object *th = json_object_new_object();
        jadd(th, "type", json_object_new_string("enabled"));
        jadd(th, "budget_tokens", json_object_new_int64(budget));
        jadd(body, "thinking", th);
    }
    jadd(body, "max_tokens", json_object_new_int64(max_tokens));

    if (ir->n_stop) {
        json_object *ss = json_object_new_array();
        for (size_t i = 0; i < ir->n_stop; i++) {
            if (ir->stop[i].p && stop_ok(&ir->stop[i]))
                json_object_array_add(ss, jnew_str(&ir->stop[i]));
            else
                bb_proto_drop(w->a, "stop");
        }
        if (json_object_array_length(ss))
            jadd(body, "stop_sequences", ss);
        else
            json_object_put(ss);
    }

    /* Sampling. The range is 0..1 (values above are clamped); thinking allows only
     * temperature 1, top_p >= 0.95 and no top_k; current models reject temperature together
     * with top_p, so temperature wins. */
    if (ir->has_temperature) {
        double t = ir->temperature < 0 ? 0 : ir->temperature > 1 ? 1 : ir->temperature;
        if (thinking && t != 1)
            bb_proto_drop(w->a, "temperature");
        else
            jadd(body, "temperature", jnew_double(t));
    }
    if (ir->has_top_p) {
        bool with_temp = ir->has_temperature && !(thinking && ir->temperature < 1);
        if (with_temp || (thinking && ir->top_p < 0.95))
            bb_proto_drop(w->a, "top_p");
        else
            jadd(body, "top_p", jnew_double(ir->top_p));
    }
    if (ir->has_top_k) {
        if (thinking)
            bb_proto_drop(w->a, "top_k");
        else
            jadd(body, "top_k", json_object_new_int64(ir->top_k));
    }

    if (str_has(&ir->user)) {
        json_object *md = json_object_new_object();
        jadd(md, "user_id", jnew_str(&ir->user));
        jadd(body, "metadata", md);
    }
    if (ctx->stream)
        jadd(body, "stream", json_object_new_boolean(1));

    /* No Messages equivalent (a json_schema could be forced through a tool, but that changes
     * the answer's shape: content would arrive as a tool_use block). */
    if (ir->has_seed)
        bb_proto_drop(w->a, "seed");
    if (ir->n_choices > 1)
        bb_proto_drop(w->a, "n");
    if (ir->has_presence_penalty)
        bb_proto_drop(w->a, "presence_penalty");
    if (ir->has_frequency_penalty)
        bb_proto_drop(w->a, "frequency_penalty");
    if (ir->format == BB_IR_FMT_JSON_OBJECT || ir->format == BB_IR_FMT_JSON_SCHEMA)
        bb_proto_drop(w->a, "response_format");
    return 0;
}

static int anthropic_write_request(struct bb_arena *a, const struct bb_ir_request *ir,
                                   const struct bb_egress_ctx *ctx, struct bb_egress_req *out,
                                   struct bb_err *err)
{
    struct wr w = {a, err};
    bprintf(out->path, sizeof out->path, "/v1/messages");
    json_object *body = json_object_new_object();
    int rc = wr_body(&w, ir, ctx, body);
    if (rc == 0 && jappend(out->body, body) < 0)
        rc = bb_err_set(err, "anthropic request: out of memory");
    json_object_put(body);
    if (rc < 0)
        return -1;
    const char *key = ctx->provider ? ctx->provider->api_key : NULL;
    if (evbuffer_add_printf(out->headers, "Content-Type: application/json\r\n") < 0 ||
        (key && evbuffer_add_printf(out->headers, "x-api-key: %s\r\n", key) < 0) ||
        evbuffer_add_printf(out->headers, "anthropic-version: " ANTHROPIC_VERSION "\r\n") < 0)
        return bb_err_set(err, "anthropic request headers: out of memory");
    return 0;
}

/* ======================================================================================== */
/* egress: read a Message                                                                   */
/* ======================================================================================== */

static int anthropic_read_response(struct bb_arena *a, const char *body, size_t len,
                                   struct bb_ir_response *out, struct bb_err *err)
{
    memset(out, 0, sizeof *out);
    json_object *root = bb_json_parse(body, len, "anthropic response", err);
    if (!root)
        return -1;
    int rc = 0;
    if (!bb_json_is(root, json_type_object)) {
        rc = bb_err_set(err, "anthropic response: expected a JSON object");
        goto done;
    }
    if (bb_json_str_eq(bb_json_get(root, "type"), "error")) {
        const char *m = bb_json_str(bb_json_get(bb_json_get(root, "error"), "message"));
        rc = bb_err_set(err, "anthropic response: error: %s", m ? m : "(no message)");
        goto done;
    }
    json_object *v;
    if (bb_json_is(v = bb_json_get(root, "id"), json_type_string) &&
        !(out->id = bb_json_dup(a, v)).p)
        goto oom;
    if (bb_json_is(v = bb_json_get(root, "model"), json_type_string) &&
        !(out->model = bb_json_dup(a, v)).p)
        goto oom;
    out->stop = stop_from_wire(bb_json_str(bb_json_get(root, "stop_reason")));
    if (bb_json_is(v = bb_json_get(root, "stop_sequence"), json_type_string) &&
        !(out->stop_sequence = bb_json_dup(a, v)).p)
        goto oom;
    usage_merge(&out->usage, bb_json_get(root, "usage"));
    json_object *content = bb_json_get(root, "content");
    if (content && !bb_json_is(content, json_type_array)) {
        rc = bb_err_set(err, "anthropic response: content: expected an array");
        goto done;
    }
    size_t n = content ? json_object_array_length(content) : 0;
    out->blocks = bb_arena_calloc(a, (n ? n : 1) * sizeof *out->blocks);
    if (!out->blocks)
        goto oom;
    for (size_t i = 0; i < n; i++) {
        json_object *b = json_object_array_get_idx(content, i);
        bool skip = false;
        if (!bb_json_is(b, json_type_object)) {
            rc = bb_err_set(err, "anthropic response: content[%zu]: expected an object", i);
            goto done;
        }
        if (rd_out_block(a, b, &out->blocks[out->n_blocks], &skip, err, i) < 0) {
            rc = -1;
            goto done;
        }
        if (!skip)
            out->n_blocks++;
    }
    goto done;
oom:
    rc = bb_err_set(err, "anthropic response: out of memory");
done:
    json_object_put(root);
    return rc;
}

/* ======================================================================================== */
/* ingress: write a Message                                                                 */
/* ======================================================================================== */

static void message_id(char *buf, size_t cap, const struct bb_ir_str *id, const char *seed)
{
    if (str_has(id))
        bprintf(buf, cap, "%s", id->p);
    else
        bprintf(buf, cap, "msg_%s", seed && *seed ? seed : "busbar");
}

static int anthropic_write_response(struct bb_arena *a, const struct bb_ir_response *r,
                                    const struct bb_ingress_ctx *ctx, struct evbuffer *out)
{
    char id[256];
    const char *seed = ctx ? ctx->request_id : NULL;
    message_id(id, sizeof id, &r->id, seed);
    json_object *o = json_object_new_object();
    jadd(o, "id", json_object_new_string(id));
    jadd(o, "type", json_object_new_string("message"));
    jadd(o, "role", json_object_new_string("assistant"));
    jadd(o, "model", str_has(&r->model) ? jnew_str(&r->model) : jnew_cstr(ctx ? ctx->model : ""));
    json_object *content = json_object_new_array();
    bool saw_tool = false;
    for (size_t i = 0; i < r->n_blocks; i++) {
        json_object *b = out_block(&r->blocks[i], seed, i);
        saw_tool = saw_tool || r->blocks[i].type == BB_IR_TOOL_USE;
        if (b)
            json_object_array_add(content, b);
    }
    jadd(o, "content", content);
    jadd(o, "stop_reason", json_object_new_string(stop_to_wire(r->stop, saw_tool)));
    jadd(o, "stop_sequence",
         r->stop == BB_IR_STOP_STOP_SEQUENCE && r->stop_sequence.p ? jnew_str(&r->stop_sequence)
                                                                   : NULL);
    jadd(o, "usage", usage_to_wire(&r->usage));
    int rc = jappend(out, o);
    json_object_put(o);
    return rc;
}

static const char *anthropic_stream_content_type(const struct bb_ingress_ctx *ctx)
{
    return "text/event-stream";
}

/* ======================================================================================== */
/* ingress: stream encoder (IR events → Anthropic SSE)                                      */
/* ======================================================================================== */

struct enc_open {
    uint32_t ir;  /* IR block index */
    uint32_t out; /* wire index, or UINT32_MAX for a block not written */
    enum bb_ir_block_type type;
    bool pending; /* redacted_thinking: start written at its data delta */
};

struct anth_enc {
    char request_id[128];
    char model[256];
    bool started, delta_sent, done, saw_tool;
    uint32_t next_out;
    struct enc_open open[ENC_MAX_OPEN];
    size_t n_open;
    struct bb_ir_usage usage;
    enum bb_ir_stop stop;
};

static void anthropic_enc_init(void *enc, const struct bb_ingress_ctx *ctx)
{
    struct anth_enc *e = enc;
    memset(e, 0, sizeof *e);
    if (ctx && ctx->request_id)
        bprintf(e->request_id, sizeof e->request_id, "%s", ctx->request_id);
    if (ctx && ctx->model)
        bprintf(e->model, sizeof e->model, "%s", ctx->model);
}

/* event: name\ndata: {json}\n\n; consumes o. */
static int enc_frame(struct evbuffer *out, const char *name, json_object *o)
{
    size_t n = 0;
    const char *s = json_object_to_json_string_length(o, JSON_OUT, &n);
    int rc = s && evbuffer_add_printf(out, "event: %s\ndata: ", name) >= 0 &&
                     evbuffer_add(out, s, n) == 0 && evbuffer_add(out, "\n\n", 2) == 0
                 ? 0
                 : -1;
    json_object_put(o);
    return rc;
}

static json_object *typed(const char *type)
{
    json_object *o = json_object_new_object();
    jadd(o, "type", json_object_new_string(type));
    return o;
}

static void usage_max(struct bb_ir_usage *u, const struct bb_ir_usage *v)
{
    if (!v->set)
        return;
    u->set = true;
    u->input = v->input > u->input ? v->input : u->input;
    u->output = v->output > u->output ? v->output : u->output;
    u->cache_read = v->cache_read > u->cache_read ? v->cache_read : u->cache_read;
    u->cache_write = v->cache_write > u->cache_write ? v->cache_write : u->cache_write;
    u->reasoning = v->reasoning > u->reasoning ? v->reasoning : u->reasoning;
}

static int enc_message_start(struct anth_enc *e, const struct bb_ir_event *ev, struct evbuffer *out)
{
    char id[256];
    struct bb_ir_str none = {NULL, 0};
    message_id(id, sizeof id, ev ? &ev->id : &none, e->request_id);
    if (ev && str_has(&ev->model))
        bprintf(e->model, sizeof e->model, "%s", ev->model.p);
    if (ev)
        usage_max(&e->usage, &ev->usage);
    json_object *m = typed("message");
    jadd(m, "id", json_object_new_string(id));
    jadd(m, "role", json_object_new_string("assistant"));
    jadd(m, "model", json_object_new_string(e->model));
    jadd(m, "content", json_object_new_array());
    jadd(m, "stop_reason", NULL);
    jadd(m, "stop_sequence", NULL);
    jadd(m, "usage", usage_to_wire(&e->usage));
    json_object *o = typed("message_start");
    jadd(o, "message", m);
    e->started = true;
    return enc_frame(out, "message_start", o);
}

static struct enc_open *enc_find(struct anth_enc *e, uint32_t ir)
{
    for (size_t i = 0; i < e->n_open; i++)
        if (e->open[i].ir == ir)
            return &e->open[i];
    return NULL;
}

static int enc_block_start_frame(struct anth_enc *e, struct enc_open *b,
                                 const struct bb_ir_event *ev, const struct bb_ir_str *data,
                                 struct evbuffer *out)
{
    json_object *cb = NULL;
    switch (b->type) {
    case BB_IR_TEXT:
        cb = typed("text");
        jadd(cb, "text", json_object_new_string(""));
        break;
    case BB_IR_THINKING:
        cb = typed("thinking");
        jadd(cb, "thinking", json_object_new_string(""));
        jadd(cb, "signature", json_object_new_string(""));
        break;
    case BB_IR_REDACTED_THINKING:
        cb = typed("redacted_thinking");
        jadd(cb, "data", jnew_str(data));
        break;
    case BB_IR_TOOL_USE: {
        struct bb_ir_str none = {NULL, 0};
        cb = typed("tool_use");
        jadd(cb, "id", tool_id(ev ? &ev->id : &none, e->request_id, b->out));
        jadd(cb, "name", jnew_str(ev ? &ev->name : &none));
        jadd(cb, "input", json_object_new_object());
        e->saw_tool = true;
        break;
    }
    default:
        return 0;
    }
    json_object *o = typed("content_block_start");
    jadd(o, "index", json_object_new_int64(b->out));
    jadd(o, "content_block", cb);
    return enc_frame(out, "content_block_start", o);
}

/* Open IR block ev->index of type t (ev may be a delta when no BLOCK_START came). */
static struct enc_open *enc_open_block(struct anth_enc *e, const struct bb_ir_event *ev,
                                       enum bb_ir_block_type t, bool from_start,
                                       struct evbuffer *out, int *rc)
{
    *rc = 0;
    if (e->n_open == ENC_MAX_OPEN) {
        *rc = -1;
        return NULL;
    }
    struct enc_open *b = &e->open[e->n_open++];
    memset(b, 0, sizeof *b);
    b->ir = ev->index;
    b->type = t;
    if (t != BB_IR_TEXT && t != BB_IR_THINKING && t != BB_IR_REDACTED_THINKING &&
        t != BB_IR_TOOL_USE) {
        b->out = UINT32_MAX; /* images, documents, tool results: no Message content form */
        return b;
    }
    b->out = e->next_out++;
    if (t == BB_IR_REDACTED_THINKING) {
        b->pending = true; /* the wire carries its data in content_block_start */
        return b;
    }
    *rc = enc_block_start_frame(e, b, from_start ? ev : NULL, NULL, out);
    return b;
}

static int enc_close(struct anth_enc *e, struct enc_open *b, struct evbuffer *out)
{
    int rc = 0;
    if (b->out != UINT32_MAX) {
        struct bb_ir_str empty = {NULL, 0};
        if (b->pending)
            rc = enc_block_start_frame(e, b, NULL, &empty, out);
        json_object *o = typed("content_block_stop");
        jadd(o, "index", json_object_new_int64(b->out));
        if (rc == 0)
            rc = enc_frame(out, "content_block_stop", o);
        else
            json_object_put(o);
    }
    size_t i = (size_t)(b - e->open);
    memmove(&e->open[i], &e->open[i + 1], (e->n_open - i - 1) * sizeof e->open[0]);
    e->n_open--;
    return rc;
}

static int enc_close_all(struct anth_enc *e, struct evbuffer *out)
{
    while (e->n_open)
        if (enc_close(e, &e->open[0], out) < 0)
            return -1;
    return 0;
}

static enum bb_ir_block_type delta_block_type(enum bb_ir_delta d)
{
    switch (d) {
    case BB_IR_D_THINKING:
    case BB_IR_D_SIGNATURE:
        return BB_IR_THINKING;
    case BB_IR_D_INPUT_JSON:
        return BB_IR_TOOL_USE;
    case BB_IR_D_REDACTED:
        return BB_IR_REDACTED_THINKING;
    default:
        return BB_IR_TEXT;
    }
}

static int enc_delta(struct anth_enc *e, const struct bb_ir_event *ev, struct evbuffer *out)
{
    int rc = 0;
    struct enc_open *b = enc_find(e, ev->index);
    if (!b) {
        b = enc_open_block(e, ev, delta_block_type(ev->delta), false, out, &rc);
        if (!b || rc < 0)
            return -1;
    }
    if (b->out == UINT32_MAX)
        return 0;
    if (ev->delta == BB_IR_D_REDACTED) {
        if (!b->pending)
            return 0; /* the wire has no redacted delta: only the first data is kept */
        b->pending = false;
        return enc_block_start_frame(e, b, NULL, &ev->text, out);
    }
    json_object *d = NULL;
    switch (ev->delta) {
    case BB_IR_D_TEXT:
        d = typed("text_delta");
        jadd(d, "text", jnew_str(&ev->text));
        break;
    case BB_IR_D_THINKING:
        d = typed("thinking_delta");
        jadd(d, "thinking", jnew_str(&ev->text));
        break;
    case BB_IR_D_SIGNATURE:
        d = typed("signature_delta");
        jadd(d, "signature", jnew_str(&ev->text));
        break;
    case BB_IR_D_INPUT_JSON:
        d = typed("input_json_delta");
        jadd(d, "partial_json", jnew_str(&ev->text));
        break;
    case BB_IR_D_CITATION: {
        json_object *c =
            str_has(&ev->text) ? bb_json_parse(ev->text.p, ev->text.len, "", NULL) : NULL;
        if (!bb_json_is(c, json_type_object)) {
            json_object_put(c);
            return 0;
        }
        d = typed("citations_delta");
        jadd(d, "citation", c);
        break;
    }
    default:
        return 0;
    }
    json_object *o = typed("content_block_delta");
    jadd(o, "index", json_object_new_int64(b->out));
    jadd(o, "delta", d);
    return enc_frame(out, "content_block_delta", o);
}

static int enc_message_delta(struct anth_enc *e, const struct bb_ir_event *ev, struct evbuffer *out)
{
    if (ev) {
        usage_max(&e->usage, &ev->usage);
        if (ev->stop != BB_IR_STOP_UNSET)
            e->stop = ev->stop;
    }
    json_object *d = json_object_new_object();
    jadd(d, "stop_reason", json_object_new_string(stop_to_wire(e->stop, e->saw_tool)));
    jadd(d, "stop_sequence",
         ev && e->stop == BB_IR_STOP_STOP_SEQUENCE && ev->stop_sequence.p
             ? jnew_str(&ev->stop_sequence)
             : NULL);
    json_object *o = typed("message_delta");
    jadd(o, "delta", d);
    jadd(o, "usage", usage_to_wire(&e->usage));
    e->delta_sent = true;
    return enc_frame(out, "message_delta", o);
}

static int anthropic_enc_event(void *enc, struct bb_arena *scratch, const struct bb_ir_event *ev,
                               struct evbuffer *out)
{
    struct anth_enc *e = enc;
    if (e->done)
        return 0; /* nothing follows message_stop or an error event */
    if (ev->type == BB_IR_EV_ERROR) {
        /* An in-band error ends the stream: no content_block_stop, no message_stop, so the
         * client cannot take a cut answer for a complete one. */
        json_object *err = json_object_new_object();
        jadd(err, "type", jnew_cstr(str_has(&ev->error_type) ? ev->error_type.p : "api_error"));
        jadd(err, "message", jnew_str(&ev->text));
        json_object *o = typed("error");
        jadd(o, "error", err);
        e->done = true;
        return enc_frame(out, "error", o);
    }
    if (ev->type == BB_IR_EV_PING)
        return enc_frame(out, "ping", typed("ping"));
    if (!e->started &&
        enc_message_start(e, ev->type == BB_IR_EV_MESSAGE_START ? ev : NULL, out) < 0)
        return -1;
    int rc = 0;
    switch (ev->type) {
    case BB_IR_EV_MESSAGE_START:
        return 0; /* written above; a repeated start carries nothing new for the wire */
    case BB_IR_EV_BLOCK_START:
        if (enc_find(e, ev->index))
            return 0;
        enc_open_block(e, ev, ev->block_type, true, out, &rc);
        return rc;
    case BB_IR_EV_BLOCK_DELTA:
        return enc_delta(e, ev, out);
    case BB_IR_EV_BLOCK_STOP: {
        struct enc_open *b = enc_find(e, ev->index);
        return b ? enc_close(e, b, out) : 0;
    }
    case BB_IR_EV_MESSAGE_DELTA:
        if (enc_close_all(e, out) < 0)
            return -1;
        return enc_message_delta(e, ev, out);
    case BB_IR_EV_MESSAGE_STOP:
        if (enc_close_all(e, out) < 0)
            return -1;
        if (!e->delta_sent && enc_message_delta(e, NULL, out) < 0)
            return -1;
        e->done = true;
        return enc_frame(out, "message_stop", typed("message_stop"));
    default:
        return 0;
    }
}

/* ======================================================================================== */
/* egress: stream decoder (Anthropic SSE → IR events)                                       */
/* ======================================================================================== */

/* Anthropic streams blocks one after another (start, deltas, stop), so one open block is
 * tracked. Wire indexes of blocks with no IR form (server tool blocks) are skipped and the
 * rest renumbered 0, 1, 2, ... */
struct anth_dec {
    bool started, in_block, skip, done;
    bool stopped;      /* message_delta (the stop reason) arrived */
    uint32_t up_index; /* wire index of the open block */
    uint32_t ir_index; /* its IR index */
    uint32_t next_ir;
    enum bb_ir_block_type type;
    struct bb_ir_usage usage;
};

static void anthropic_dec_init(void *dec)
{
    memset(dec, 0, sizeof(struct anth_dec));
}

static int dec_stop_block(struct anth_dec *d, bb_ir_event_cb cb, void *arg)
{
    if (!d->in_block)
        return 0;
    d->in_block = false;
    if (d->skip)
        return 0;
    struct bb_ir_event ev = {
        .type = BB_IR_EV_BLOCK_STOP, .index = d->ir_index, .block_type = d->type};
    return cb(arg, &ev);
}

static int dec_emit_delta(struct anth_dec *d, struct bb_arena *s, enum bb_ir_delta kind,
                          const char *p, size_t n, bb_ir_event_cb cb, void *arg)
{
    struct bb_ir_event ev = {
        .type = BB_IR_EV_BLOCK_DELTA, .index = d->ir_index, .block_type = d->type, .delta = kind};
    ev.text = bb_ir_strdup(s, p, n);
    if (!ev.text.p)
        return -1;
    return cb(arg, &ev);
}

static int dec_block_start(struct anth_dec *d, struct bb_arena *s, json_object *o,
                           bb_ir_event_cb cb, void *arg)
{
    int rc = dec_stop_block(d, cb, arg);
    if (rc)
        return rc;
    json_object *cb_obj = bb_json_get(o, "content_block");
    const char *t = bb_json_str(bb_json_get(cb_obj, "type"));
    if (!t || !bb_json_is_number(bb_json_get(o, "index")))
        return -1;
    d->in_block = true;
    d->up_index = (uint32_t)jget_u64(o, "index");
    d->skip = false;
    if (strcmp(t, "text") == 0)
        d->type = BB_IR_TEXT;
    else if (strcmp(t, "thinking") == 0)
        d->type = BB_IR_THINKING;
    else if (strcmp(t, "redacted_thinking") == 0)
        d->type = BB_IR_REDACTED_THINKING;
    else if (strcmp(t, "tool_use") == 0)
        d->type = BB_IR_TOOL_USE;
    else
        d->skip = true; /* server_tool_use, web_search_tool_result, ...: no IR form */
    if (d->skip)
        return 0;
    d->ir_index = d->next_ir++;
    struct bb_ir_event ev = {
        .type = BB_IR_EV_BLOCK_START, .index = d->ir_index, .block_type = d->type};
    if (d->type == BB_IR_TOOL_USE) {
        json_object *id = bb_json_get(cb_obj, "id"), *name = bb_json_get(cb_obj, "name");
        if (bb_json_is(id, json_type_string) && !(ev.id = bb_json_dup(s, id)).p)
            return -1;
        if (bb_json_is(name, json_type_string) && !(ev.name = bb_json_dup(s, name)).p)
            return -1;
    }
    if ((rc = cb(arg, &ev)))
        return rc;
    /* Content the start already carries (normally empty). */
    json_object *v;
    if (d->type == BB_IR_TEXT && (v = bb_json_get(cb_obj, "text")) && json_object_get_string_len(v))
        return dec_emit_delta(d, s, BB_IR_D_TEXT, json_object_get_string(v),
                              (size_t)json_object_get_string_len(v), cb, arg);
    if (d->type == BB_IR_THINKING) {
        if ((v = bb_json_get(cb_obj, "thinking")) && json_object_get_string_len(v) &&
            (rc = dec_emit_delta(d, s, BB_IR_D_THINKING, json_object_get_string(v),
                                 (size_t)json_object_get_string_len(v), cb, arg)))
            return rc;
        if ((v = bb_json_get(cb_obj, "signature")) && json_object_get_string_len(v))
            return dec_emit_delta(d, s, BB_IR_D_SIGNATURE, json_object_get_string(v),
                                  (size_t)json_object_get_string_len(v), cb, arg);
    }
    if (d->type == BB_IR_REDACTED_THINKING && (v = bb_json_get(cb_obj, "data")))
        return dec_emit_delta(d, s, BB_IR_D_REDACTED, json_object_get_string(v),
                              (size_t)json_object_get_string_len(v), cb, arg);
    if (d->type == BB_IR_TOOL_USE &&
        bb_json_is(v = bb_json_get(cb_obj, "input"), json_type_object) &&
        json_object_object_length(v) > 0) {
        size_t n = 0;
        const char *js = json_object_to_json_string_length(v, JSON_OUT, &n);
        return dec_emit_delta(d, s, BB_IR_D_INPUT_JSON, js, n, cb, arg);
    }
    return 0;
}

static int dec_block_delta(struct anth_dec *d, struct bb_arena *s, json_object *o,
                           bb_ir_event_cb cb, void *arg)
{
    if (!d->in_block || !bb_json_is_number(bb_json_get(o, "index")) ||
        jget_u64(o, "index") != d->up_index)
        return -1; /* a delta outside its block: the stream is malformed */
    if (d->skip)
        return 0;
    json_object *delta = bb_json_get(o, "delta");
    const char *t = bb_json_str(bb_json_get(delta, "type"));
    if (!t)
        return -1;
    static const struct {
        const char *type, *field;
        enum bb_ir_delta kind;
    } kinds[] = {
        {"text_delta", "text", BB_IR_D_TEXT},
        {"thinking_delta", "thinking", BB_IR_D_THINKING},
        {"signature_delta", "signature", BB_IR_D_SIGNATURE},
        {"input_json_delta", "partial_json", BB_IR_D_INPUT_JSON},
    };
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        if (strcmp(t, kinds[i].type) != 0)
            continue;
        json_object *v = bb_json_get(delta, kinds[i].field);
        if (!bb_json_is(v, json_type_string))
            return -1;
        return dec_emit_delta(d, s, kinds[i].kind, json_object_get_string(v),
                              (size_t)json_object_get_string_len(v), cb, arg);
    }
    if (strcmp(t, "citations_delta") == 0) {
        json_object *c = bb_json_get(delta, "citation");
        if (!c)
            return -1;
        size_t n = 0;
        const char *js = json_object_to_json_string_length(c, JSON_OUT, &n);
        return dec_emit_delta(d, s, BB_IR_D_CITATION, js, n, cb, arg);
    }
    return 0; /* a future delta kind: nothing to carry */
}

static int anthropic_dec_frame(void *dec, struct bb_arena *scratch, const struct bb_frame *f,
                               bb_ir_event_cb cb, void *arg)
{
    struct anth_dec *d = dec;
    if (!f->data_len)
        return 0; /* keep-alive comments / empty frames */
    json_object *o = bb_json_parse(f->data, f->data_len, "frame", NULL);
    if (!bb_json_is(o, json_type_object)) {
        json_object_put(o);
        return -1;
    }
    /* The data's own type names the event; the SSE event: line is the fallback. */
    char name[64];
    const char *t = bb_json_str(bb_json_get(o, "type"));
    if (!t) {
        size_t n = f->event_len < sizeof name - 1 ? f->event_len : sizeof name - 1;
        memcpy(name, f->event ? f->event : "", n);
        name[n] = '\0';
        t = name;
    }
    int rc = 0;
    struct bb_ir_event ev;
    memset(&ev, 0, sizeof ev);
    if (d->done && strcmp(t, "error") != 0) {
        rc = 0;
    } else if (strcmp(t, "message_start") == 0) {
        json_object *m = bb_json_get(o, "message");
        json_object *v;
        ev.type = BB_IR_EV_MESSAGE_START;
        usage_merge(&d->usage, bb_json_get(m, "usage"));
        ev.usage = d->usage;
        if (bb_json_is(v = bb_json_get(m, "id"), json_type_string) &&
            !(ev.id = bb_json_dup(scratch, v)).p)
            rc = -1;
        if (bb_json_is(v = bb_json_get(m, "model"), json_type_string) &&
            !(ev.model = bb_json_dup(scratch, v)).p)
            rc = -1;
        d->started = true;
        if (rc == 0)
            rc = cb(arg, &ev);
    } else if (strcmp(t, "content_block_start") == 0) {
        rc = dec_block_start(d, scratch, o, cb, arg);
    } else if (strcmp(t, "content_block_delta") == 0) {
        rc = dec_block_delta(d, scratch, o, cb, arg);
    } else if (strcmp(t, "content_block_stop") == 0) {
        rc = dec_stop_block(d, cb, arg);
    } else if (strcmp(t, "message_delta") == 0) {
        json_object *delta = bb_json_get(o, "delta");
        json_object *v;
        if (!(rc = dec_stop_block(d, cb, arg))) {
            ev.type = BB_IR_EV_MESSAGE_DELTA;
            ev.stop = stop_from_wire(bb_json_str(bb_json_get(delta, "stop_reason")));
            if (bb_json_is(v = bb_json_get(delta, "stop_sequence"), json_type_string) &&
                !(ev.stop_sequence = bb_json_dup(scratch, v)).p)
                rc = -1;
            usage_merge(&d->usage, bb_json_get(o, "usage"));
            ev.usage = d->usage;
            d->stopped = true;
            if (rc == 0)
                rc = cb(arg, &ev);
        }
    } else if (strcmp(t, "message_stop") == 0) {
        if (!(rc = dec_stop_block(d, cb, arg))) {
            ev.type = BB_IR_EV_MESSAGE_STOP;
            d->done = true;
            rc = cb(arg, &ev);
        }
    } else if (strcmp(t, "ping") == 0) {
        ev.type = BB_IR_EV_PING;
        rc = cb(arg, &ev);
    } else if (strcmp(t, "error") == 0) {
        json_object *e = bb_json_get(o, "error");
        json_object *v;
        ev.type = BB_IR_EV_ERROR;
        if (bb_json_is(v = bb_json_get(e, "type"), json_type_string) &&
            !(ev.error_type = bb_json_dup(scratch, v)).p)
            rc = -1;
        if (bb_json_is(v = bb_json_get(e, "message"), json_type_string) &&
            !(ev.text = bb_json_dup(scratch, v)).p)
            rc = -1;
        ev.error_status = status_from_error_type(ev.error_type.p);
        d->done = true;
        if (rc == 0)
            rc = cb(arg, &ev);
    }
    /* Unknown event types are future additions: ignored. */
    json_object_put(o);
    return rc;
}

/* ======================================================================================== */
/* errors                                                                                   */
/* ======================================================================================== */

/* {"type":"error","error":{"type":"overloaded_error","message":"..."},"request_id":...};
 * Anthropic has no separate error code. */
static int anthropic_read_error(const char *body, size_t len, struct bb_proto_error *out)
{
    memset(out, 0, sizeof *out);
    json_object *root = bb_json_parse(body, len, "error", NULL);
    json_object *e = bb_json_get(root, "error");
    const char *type = bb_json_str(bb_json_get(e, "type"));
    const char *msg = bb_json_str(bb_json_get(e, "message"));
    if (!msg && bb_json_is(e, json_type_string))
        msg = json_object_get_string(e);
    if (type)
        bprintf(out->type, sizeof out->type, "%s", type);
    if (msg)
        bprintf(out->message, sizeof out->message, "%s", msg);
    json_object_put(root);
    return type || msg ? 0 : -1;
}

/* A message has type "message" and `content`; an error is {"type":"error","error":{…}}. */
/* usage_merge over the bytes of a usage object (no DOM): present counts replace. */
static void anthropic_usage_scan(const char *o, size_t n, struct bb_ir_usage *u)
{
    struct bb_jscan_field f[5] = {{.key = "input_tokens"},
                                  {.key = "output_tokens"},
                                  {.key = "cache_creation_input_tokens"},
                                  {.key = "cache_read_input_tokens"},
                                  {.key = "output_tokens_details"}};
    struct bb_err err;
    uint64_t v;
    u->set = true;
    bb_jscan_object(o, n, f, 5, 64, &err);
    if (bb_jscan_field_u64(o, &f[0], &v))
        u->input = v;
    if (bb_jscan_field_u64(o, &f[1], &v))
        u->output = v;
    if (bb_jscan_field_u64(o, &f[2], &v))
        u->cache_write = v;
    if (bb_jscan_field_u64(o, &f[3], &v))
        u->cache_read = v;
    if (f[4].type == BB_JOBJECT &&
        bb_jscan_member_u64(o + f[4].off, f[4].len, "thinking_tokens", &v))
        u->reasoning = v;
}

static int anthropic_answer_check(const char *body, size_t len, struct bb_ir_usage *usage,
                                  struct bb_proto_error *out)
{
    struct bb_jscan_field f[4] = {
        {.key = "type"}, {.key = "error"}, {.key = "content"}, {.key = "usage"}};
    if (bb_proto_scan_answer(body, len, f, 4, out) < 0)
        return -1;
    if (bb_proto_member_is(body, &f[0], "error") || f[1].type == BB_JOBJECT)
        return bb_proto_inband(&bb_proto_anthropic, body, len, out);
    if (f[2].type != BB_JARRAY) {
        snprintf(out->message, sizeof out->message, "no 'content' array");
        return -1;
    }
    if (usage && f[3].type == BB_JOBJECT)
        anthropic_usage_scan(body + f[3].off, f[3].len, usage);
    return 0;
}

/* The stream ended without message_stop: finished when message_delta brought the stop
 * reason. */
static int anthropic_dec_finish(void *dec, struct bb_arena *scratch, bb_ir_event_cb cb, void *arg)
{
    struct anth_dec *d = dec;
    (void)scratch;
    if (d->done || !d->stopped)
        return 0;
    int rc = dec_stop_block(d, cb, arg);
    struct bb_ir_event ev = {.type = BB_IR_EV_MESSAGE_STOP};
    d->done = true;
    return rc ? rc : cb(arg, &ev);
}

/* frame_scan: blocks and the message delta are meaningful, message_delta's stop_reason is the
 * stop, message_stop the end. */
static int anthropic_frame_scan_1(const struct bb_frame *f, struct bb_frame_state *st, bool stopped,
                                  struct bb_frame_info *out)
{
    (void)stopped;
    memset(out, 0, sizeof *out);
    if (!f->data_len)
        return 0;
    struct bb_jscan_field t[6] = {{.key = "type"},  {.key = "message"},       {.key = "usage"},
                                  {.key = "delta"}, {.key = "content_block"}, {.key = "index"}};
    struct bb_err err;
    if (bb_jscan_object(f->data, f->data_len, t, 6, 128, &err) < 0)
        return -1;
    char type[48];
    bb_proto_frame_type(f, &t[0], type, sizeof type);
    uint64_t idx = 0;
    bool low =
        t[5].type == BB_JNUMBER && bb_jscan_u64(f->data + t[5].off, t[5].len, &idx) && idx < 64;
    if (strcmp(type, "message_start") == 0) {
        struct bb_jscan_field u;
        bb_jscan_member(f->data + t[1].off, t[1].len, "usage", &u);
        if (t[1].type == BB_JOBJECT && u.type == BB_JOBJECT)
            anthropic_usage_scan(f->data + t[1].off + u.off, u.len, &out->usage);
    } else if (strcmp(type, "content_block_start") == 0) {
        /* blocks with no IR form (server tools) are not the answer's content */
        const char *cb = f->data + t[4].off;
        struct bb_jscan_field bt;
        bb_jscan_member(cb, t[4].len, "type", &bt);
        out->content = bb_proto_member_is(cb, &bt, "text") ||
                       bb_proto_member_is(cb, &bt, "thinking") ||
                       bb_proto_member_is(cb, &bt, "redacted_thinking") ||
                       bb_proto_member_is(cb, &bt, "tool_use");
        if (low && !out->content)
            st->skip |= 1ull << idx;
        else if (low)
            st->skip &= ~(1ull << idx);
    } else if (strcmp(type, "content_block_delta") == 0) {
        out->content = !(low && (st->skip >> idx & 1));
    } else if (strcmp(type, "message_delta") == 0) {
        struct bb_jscan_field sr;
        bb_jscan_member(f->data + t[3].off, t[3].len, "stop_reason", &sr);
        out->content = true;
        out->stop = sr.type == BB_JSTRING;
        if (t[2].type == BB_JOBJECT)
            anthropic_usage_scan(f->data + t[2].off, t[2].len, &out->usage);
    } else if (strcmp(type, "message_stop") == 0) {
        out->content = out->stop = out->end = true;
    } else if (strcmp(type, "error") == 0) {
        return bb_proto_frame_error(&bb_proto_anthropic, f->data, f->data_len, "upstream error",
                                    out);
    }
    return 0;
}

static int anthropic_frame_scan(const struct bb_frame *f, struct bb_frame_state *st,
                                struct bb_frame_info *out)
{
    bool stopped = st->stopped;
    int rc = anthropic_frame_scan_1(f, st, stopped, out);
    st->stopped = st->stopped || out->stop;
    return rc;
}

const struct bb_proto_ops bb_proto_anthropic = {
    .id = BB_PROTO_ANTHROPIC,
    .framing = BB_FRAMING_SSE,
    .read_request = anthropic_read_request,
    .write_response = anthropic_write_response,
    .stream_content_type = anthropic_stream_content_type,
    .enc_size = sizeof(struct anth_enc),
    .enc_init = anthropic_enc_init,
    .enc_event = anthropic_enc_event,
    .enc_finish = NULL,
    .write_request = anthropic_write_request,
    .read_response = anthropic_read_response,
    .dec_size = sizeof(struct anth_dec),
    .dec_init = anthropic_dec_init,
    .dec_frame = anthropic_dec_frame,
    .read_error = anthropic_read_error,
    .dec_finish = anthropic_dec_finish,
    .terminator = "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    .answer_check = anthropic_answer_check,
    .frame_scan = anthropic_frame_scan,
};
