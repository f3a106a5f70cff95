/*
 * proto_cohere: the Cohere v2 Chat API (POST /v2/chat) in both roles:
 *   ingress: a client posts a V2ChatRequest and is answered with one V2ChatResponse or a typed
 *            SSE stream (`event: <type>` + `data: {"type": "<type>", ...}`);
 *   egress:  busbar posts a V2ChatRequest to the provider and reads the response or the stream
 *            (message-start, content-start/delta/end, tool-plan-delta, tool-call-start/delta/
 *            end, citation-start/end, message-end, debug).
 * Mapping rules that are not one to one (see docs/protocols/cohere.md for the full table):
 * - Tool results are role "tool" messages; the IR carries them as user-role TOOL_RESULT
 *   blocks (consecutive tool messages merge into one user message, and split back).
 * - tool_plan is the model's reasoning before its tool calls: it is read as a THINKING block
 *   without signature, and the thinking text of a message that makes tool calls is written as
 *   tool_plan. Other thinking travels as {type:"thinking"} content.
 * - Cohere numbers content parts and tool calls in two separate index sequences; the IR has
 *   one block sequence, so the decoder and encoder translate between them.
 * - Usage: Cohere reports no cache split (tokens.input_tokens includes cached_tokens), so the
 *   IR's input = input_tokens - cached_tokens and cache_read = cached_tokens, and back.
 * - Sampling ranges the API enforces (p 0.01..0.99, k <= 500, penalties 0..1, at most five
 *   stop sequences) are applied when writing, so a translated request is never rejected.
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
#include <strings.h>

#include <event2/buffer.h>
#include <json-c/json.h>

#define JSON_OUT (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)
#define MAX_STOP_SEQUENCES 5 /* "A list of up to 5 strings" */
#define MAX_K 500            /* k: "min value of 0, max value of 500" */
#define MIN_P 0.01           /* p: "min value of 0.01, max value of 0.99" */
#define MAX_P 0.99
#define ENC_MAX_OPEN 32 /* IR blocks open at once in one encoded stream */

/* ======================================================================================== */
/* JSON helpers                                                                             */
/* ======================================================================================== */


static bool str_has(const struct bb_ir_str *s)
{
    return s->p && s->len;
}

static json_object *jnew_str(const struct bb_ir_str *s)
{
    return json_object_new_string_len(s->p ? s->p : "", s->p ? (int)s->len : 0);
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

static bool jget_u64(json_object *o, const char *key, uint64_t *out)
{
    json_object *v = bb_json_get(o, key);
    if (!bb_json_is_number(v))
        return false;
    double d = json_object_get_double(v);
    *out = d <= 0 ? 0 : d >= 1.8e19 ? UINT64_MAX : (uint64_t)d;
    return true;
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

/* Copy a string member into a fixed buffer (truncated), for error details. */
static void copy_field(char *dst, size_t cap, json_object *v)
{
    const char *s = bb_json_str(v);
    if (s && cap)
        bprintf(dst, cap, "%s", s);
}

/* ======================================================================================== */
/* shared mappings                                                                          */
/* ======================================================================================== */

struct bvec {
    struct bb_ir_block *v;
    size_t n, cap;
};

/* Append a zeroed block; NULL on OOM. */
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

static enum bb_ir_stop stop_from_cohere(const char *s)
{
    if (!s)
        return BB_IR_STOP_UNSET;
    if (strcmp(s, "COMPLETE") == 0)
        return BB_IR_STOP_END_TURN;
    if (strcmp(s, "STOP_SEQUENCE") == 0)
        return BB_IR_STOP_STOP_SEQUENCE;
    if (strcmp(s, "MAX_TOKENS") == 0)
        return BB_IR_STOP_MAX_TOKENS;
    if (strcmp(s, "TOOL_CALL") == 0)
        return BB_IR_STOP_TOOL_USE;
    if (strcmp(s, "ERROR") == 0 || strcmp(s, "TIMEOUT") == 0)
        return BB_IR_STOP_ERROR;
    return BB_IR_STOP_END_TURN; /* a future reason: the message did end */
}

/* Cohere has no content-filter or refusal reason: a filtered answer was cut short by the
 * provider (ERROR), a refusal or a pause is still a complete message. */
static const char *stop_to_cohere(enum bb_ir_stop s)
{
    switch (s) {
    case BB_IR_STOP_MAX_TOKENS:
        return "MAX_TOKENS";
    case BB_IR_STOP_STOP_SEQUENCE:
        return "STOP_SEQUENCE";
    case BB_IR_STOP_TOOL_USE:
        return "TOOL_CALL";
    case BB_IR_STOP_CONTENT_FILTER:
    case BB_IR_STOP_ERROR:
        return "ERROR";
    case BB_IR_STOP_UNSET:
    case BB_IR_STOP_END_TURN:
    case BB_IR_STOP_PAUSE:
    case BB_IR_STOP_REFUSAL:
        break;
    }
    return "COMPLETE";
}

/* usage {billed_units, tokens, cached_tokens} → IR usage. tokens (what the model processed)
 * is preferred field by field, billed_units is the fallback. */
static void usage_read(json_object *u, struct bb_ir_usage *out)
{
    memset(out, 0, sizeof *out);
    if (!bb_json_is(u, json_type_object))
        return;
    json_object *tok = bb_json_get(u, "tokens"), *billed = bb_json_get(u, "billed_units");
    uint64_t in = 0, outp = 0, cached = 0;
    bool any = false;
    if (jget_u64(tok, "input_tokens", &in) || jget_u64(billed, "input_tokens", &in))
        any = true;
    if (jget_u64(tok, "output_tokens", &outp) || jget_u64(billed, "output_tokens", &outp))
        any = true;
    if (jget_u64(u, "cached_tokens", &cached))
        any = true;
    out->set = any;
    out->input = in > cached ? in - cached : 0;
    out->cache_read = cached;
    out->output = outp;
}

/* IR usage → Cohere usage: input counts every prompt token (cache reads and writes included,
 * as Cohere reports no split), cached_tokens the cache reads. */
static json_object *usage_write(const struct bb_ir_usage *u)
{
    uint64_t in = u->input + u->cache_read + u->cache_write;
    json_object *o = json_object_new_object();
    json_object *billed = json_object_new_object(), *tok = json_object_new_object();
    jadd(billed, "input_tokens", jnew_u64(in));
    jadd(billed, "output_tokens", jnew_u64(u->output));
    jadd(tok, "input_tokens", jnew_u64(in));
    jadd(tok, "output_tokens", jnew_u64(u->output));
    jadd(o, "billed_units", billed);
    jadd(o, "tokens", tok);
    if (u->cache_read)
        jadd(o, "cached_tokens", jnew_u64(u->cache_read));
    return o;
}

/* A citation in Cohere's shape ({start, end, text, sources, ...}); other providers' citation
 * objects (Anthropic char_location, OpenAI url_citation) cannot be expressed. */
static bool citation_is_cohere(json_object *c)
{
    return bb_json_is(c, json_type_object) &&
           (bb_json_is(bb_json_get(c, "sources"), json_type_array) ||
            (bb_json_is_number(bb_json_get(c, "start")) && bb_json_is_number(bb_json_get(c, "end"))));
}

/* "data:<media type>[;params];base64,<data>" → media type + data. false when not base64. */
static bool data_url_split(const char *url, size_t len, const char **mt, size_t *mt_len,
                           const char **data, size_t *data_len)
{
    if (len < 5 || strncasecmp(url, "data:", 5) != 0)
        return false;
    const char *comma = memchr(url, ',', len);
    if (!comma)
        return false;
    const char *meta = url + 5;
    size_t meta_len = (size_t)(comma - meta);
    if (meta_len < 7 || strncasecmp(comma - 7, ";base64", 7) != 0)
        return false;
    const char *semi = memchr(meta, ';', meta_len);
    *mt = meta;
    *mt_len = (size_t)(semi - meta);
    *data = comma + 1;
    *data_len = len - (size_t)(comma + 1 - url);
    return true;
}

/* ======================================================================================== */
/* reading (requests, responses)                                                            */
/* ======================================================================================== */

struct rd {
    struct bb_arena *a;
    struct bb_ir_request *req; /* NULL while reading a response */
    struct bb_err *err;
};

static int rd_oom(struct rd *r)
{
    return bb_err_set(r->err, "out of memory reading the body");
}

static int rd_expect(struct rd *r, const char *path, const char *what)
{
    return bb_err_set(r->err, "%s: expected %s", path, what);
}

/* Record prefix+name as unsupported (copied: name may live in a json-c object). */
static int rd_unsupported(struct rd *r, const char *prefix, const char *name)
{
    if (!r->req)
        return 0;
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

/* Push a TEXT block with the given text. */
static int rd_push_text(struct rd *r, struct bvec *bv, enum bb_ir_block_type t, json_object *s)
{
    struct bb_ir_block *b = bv_push(r->a, bv);
    if (!b)
        return rd_oom(r);
    b->type = t;
    b->text = bb_json_dup(r->a, s);
    return b->text.p ? 0 : rd_oom(r);
}

/* image_url: {url, detail?}; a base64 data: URL becomes media type + data. */
static int rd_image(struct rd *r, json_object *item, const char *path, struct bvec *bv)
{
    char p[256];
    json_object *iu = bb_json_get(item, "image_url");
    fpath(p, sizeof p, path, "image_url");
    if (!bb_json_is(iu, json_type_object))
        return rd_expect(r, p, "an object");
    struct bb_ir_str url = {NULL, 0};
    if (rd_str(r, iu, "url", p, true, &url) < 0)
        return -1;
    if (bb_json_get(iu, "detail") && rd_unsupported(r, "", "image_url.detail") < 0)
        return -1;
    struct bb_ir_block *b = bv_push(r->a, bv);
    if (!b)
        return rd_oom(r);
    b->type = BB_IR_IMAGE;
    const char *mt, *data;
    size_t mt_len, data_len;
    if (data_url_split(url.p, url.len, &mt, &mt_len, &data, &data_len)) {
        b->media_type = bb_ir_strdup(r->a, mt, mt_len);
        b->data = bb_ir_strdup(r->a, data, data_len);
        return b->media_type.p && b->data.p ? 0 : rd_oom(r);
    }
    b->url = url;
    return 0;
}

/* system content: a string or [{type:"text", text}]. */
static int rd_system(struct rd *r, json_object *c, const char *path, struct bvec *sys)
{
    char p[256], q[256];
    if (bb_json_is(c, json_type_string))
        return rd_push_text(r, sys, BB_IR_TEXT, c);
    if (!bb_json_is(c, json_type_array))
        return rd_expect(r, path, "a string or an array");
    size_t n = json_object_array_length(c);
    for (size_t i = 0; i < n; i++) {
        json_object *it = json_object_array_get_idx(c, i);
        bprintf(p, sizeof p, "%s[%zu]", path, i);
        if (!bb_json_is(it, json_type_object))
            return rd_expect(r, p, "an object");
        if (!bb_json_str_eq(bb_json_get(it, "type"), "text"))
            return rd_expect(r, fpath(q, sizeof q, p, "type"), "\"text\"");
        json_object *t = bb_json_get(it, "text");
        if (!bb_json_is(t, json_type_string))
            return rd_expect(r, fpath(q, sizeof q, p, "text"), "a string");
        if (rd_push_text(r, sys, BB_IR_TEXT, t) < 0)
            return -1;
    }
    return 0;
}

/* user content: a string or [{type:"text"} | {type:"image_url"}]. */
static int rd_user(struct rd *r, json_object *c, const char *path, struct bvec *bv)
{
    char p[256], q[256];
    if (bb_json_is(c, json_type_string))
        return rd_push_text(r, bv, BB_IR_TEXT, c);
    if (!bb_json_is(c, json_type_array))
        return rd_expect(r, path, "a string or an array");
    size_t n = json_object_array_length(c);
    for (size_t i = 0; i < n; i++) {
        json_object *it = json_object_array_get_idx(c, i);
        bprintf(p, sizeof p, "%s[%zu]", path, i);
        if (!bb_json_is(it, json_type_object))
            return rd_expect(r, p, "an object");
        const char *type = bb_json_str(bb_json_get(it, "type"));
        if (!type)
            return rd_expect(r, fpath(q, sizeof q, p, "type"), "a string");
        if (strcmp(type, "text") == 0) {
            json_object *t = bb_json_get(it, "text");
            if (!bb_json_is(t, json_type_string))
                return rd_expect(r, fpath(q, sizeof q, p, "text"), "a string");
            if (rd_push_text(r, bv, BB_IR_TEXT, t) < 0)
                return -1;
        } else if (strcmp(type, "image_url") == 0) {
            if (rd_image(r, it, p, bv) < 0)
                return -1;
        } else if (rd_unsupported(r, "content.", type) < 0) {
            return -1; /* a content kind this API version added later */
        }
    }
    return 0;
}

/* Attach a message's citations to the TEXT blocks they cite: citation.content_index is the
 * Cohere content position (cmap maps it to a block of bv); without one, or when it names no
 * text block, the first text block. Plan/thinking citations have no IR place. */
static int rd_citations(struct rd *r, json_object *cits, const char *path, struct bvec *bv,
                        size_t first, const long *cmap, size_t nc)
{
    char p[256];
    if (!bb_json_is(cits, json_type_array))
        return rd_expect(r, path, "an array");
    size_t n = json_object_array_length(cits), nb = bv->n - first;
    if (!n || !nb)
        return 0;
    json_object **per = bb_arena_calloc(r->a, nb * sizeof *per);
    if (!per)
        return rd_oom(r);
    long first_text = -1;
    for (size_t i = first; i < bv->n && first_text < 0; i++)
        if (bv->v[i].type == BB_IR_TEXT)
            first_text = (long)i;
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        json_object *c = json_object_array_get_idx(cits, i);
        bprintf(p, sizeof p, "%s[%zu]", path, i);
        if (!bb_json_is(c, json_type_object)) {
            rc = rd_expect(r, p, "an object");
            break;
        }
        const char *ct = bb_json_str(bb_json_get(c, "type"));
        if (ct && strcmp(ct, "TEXT_CONTENT") != 0) {
            if ((rc = rd_unsupported(r, "citations.", ct)) < 0)
                break;
            continue;
        }
        long target = -1;
        json_object *ci = bb_json_get(c, "content_index");
        if (bb_json_is(ci, json_type_int)) {
            int64_t k = json_object_get_int64(ci);
            if (k >= 0 && (uint64_t)k < nc)
                target = cmap[k];
        }
        if (target < 0 || bv->v[target].type != BB_IR_TEXT)
            target = first_text;
        if (target < 0)
            continue;
        size_t slot = (size_t)target - first;
        if (!per[slot] && !(per[slot] = json_object_new_array())) {
            rc = rd_oom(r);
            break;
        }
        json_object_array_add(per[slot], json_object_get(c));
    }
    for (size_t i = 0; i < nb; i++) {
        if (!per[i])
            continue;
        if (rc == 0) {
            bv->v[first + i].citations_json = bb_json_text(r->a, per[i]);
            if (!bv->v[first + i].citations_json.p)
                rc = rd_oom(r);
        }
        json_object_put(per[i]);
    }
    return rc;
}

/* An assistant message (request history or response message): content (a string or text /
 * thinking parts), then tool_plan as an unsigned THINKING block, then tool_calls as TOOL_USE
 * blocks; citations attach to the text blocks. */
static int rd_assistant(struct rd *r, json_object *m, const char *path, struct bvec *bv)
{
    char p[256], q[256];
    size_t first = bv->n, nc = 0;
    long *cmap = NULL;
    json_object *c = bb_json_get(m, "content");
    if (bb_json_is(c, json_type_string)) {
        cmap = bb_arena_alloc(r->a, sizeof *cmap);
        if (!cmap)
            return rd_oom(r);
        nc = 1;
        cmap[0] = -1;
        if (json_object_get_string_len(c)) { /* "" is what tool-call turns often carry */
            cmap[0] = (long)bv->n;
            if (rd_push_text(r, bv, BB_IR_TEXT, c) < 0)
                return -1;
        }
    } else if (bb_json_is(c, json_type_array)) {
        nc = json_object_array_length(c);
        cmap = bb_arena_alloc(r->a, (nc ? nc : 1) * sizeof *cmap);
        if (!cmap)
            return rd_oom(r);
        for (size_t i = 0; i < nc; i++) {
            json_object *it = json_object_array_get_idx(c, i);
            bprintf(p, sizeof p, "%s.content[%zu]", path, i);
            cmap[i] = -1;
            if (!bb_json_is(it, json_type_object))
                return rd_expect(r, p, "an object");
            const char *type = bb_json_str(bb_json_get(it, "type"));
            if (!type)
                return rd_expect(r, fpath(q, sizeof q, p, "type"), "a string");
            bool text = strcmp(type, "text") == 0;
            if (text || strcmp(type, "thinking") == 0) {
                const char *key = text ? "text" : "thinking";
                json_object *t = bb_json_get(it, key);
                if (!bb_json_is(t, json_type_string))
                    return rd_expect(r, fpath(q, sizeof q, p, key), "a string");
                cmap[i] = (long)bv->n;
                if (rd_push_text(r, bv, text ? BB_IR_TEXT : BB_IR_THINKING, t) < 0)
                    return -1;
            } else if (rd_unsupported(r, "content.", type) < 0) {
                return -1;
            }
        }
    } else if (c) {
        return rd_expect(r, fpath(p, sizeof p, path, "content"), "a string or an array");
    }

    json_object *plan = bb_json_get(m, "tool_plan");
    if (plan && !bb_json_is(plan, json_type_string))
        return rd_expect(r, fpath(p, sizeof p, path, "tool_plan"), "a string");
    if (plan && json_object_get_string_len(plan) && rd_push_text(r, bv, BB_IR_THINKING, plan) < 0)
        return -1;

    json_object *calls = bb_json_get(m, "tool_calls");
    if (calls && !bb_json_is(calls, json_type_array))
        return rd_expect(r, fpath(p, sizeof p, path, "tool_calls"), "an array");
    size_t n = calls ? json_object_array_length(calls) : 0;
    for (size_t i = 0; i < n; i++) {
        json_object *tc = json_object_array_get_idx(calls, i);
        bprintf(p, sizeof p, "%s.tool_calls[%zu]", path, i);
        if (!bb_json_is(tc, json_type_object))
            return rd_expect(r, p, "an object");
        struct bb_ir_block b;
        memset(&b, 0, sizeof b);
        b.type = BB_IR_TOOL_USE;
        if (rd_str(r, tc, "id", p, true, &b.id) < 0)
            return -1;
        json_object *fn = bb_json_get(tc, "function");
        if (fn && !bb_json_is(fn, json_type_object))
            return rd_expect(r, fpath(q, sizeof q, p, "function"), "an object");
        fpath(q, sizeof q, p, "function");
        if (rd_str(r, fn, "name", q, false, &b.name) < 0)
            return -1;
        json_object *args = bb_json_get(fn, "arguments");
        if (bb_json_is(args, json_type_string) && json_object_get_string_len(args)) {
            b.input_json = bb_json_dup(r->a, args); /* JSON text already: kept verbatim */
        } else if (bb_json_is(args, json_type_object)) {
            b.input_json = bb_json_text(r->a, args);
        } else if (args && !bb_json_is(args, json_type_string)) {
            return rd_expect(r, fpath(q, sizeof q, p, "function.arguments"), "a string");
        } else {
            b.input_json = bb_ir_strdup(r->a, "{}", 2);
        }
        if (!b.input_json.p || (!b.name.p && !(b.name = bb_ir_strdup(r->a, "", 0)).p))
            return rd_oom(r);
        struct bb_ir_block *dst = bv_push(r->a, bv);
        if (!dst)
            return rd_oom(r);
        *dst = b;
    }

    json_object *cits = bb_json_get(m, "citations");
    if (cits &&
        rd_citations(r, cits, fpath(p, sizeof p, path, "citations"), bv, first, cmap, nc) < 0)
        return -1;
    return 0;
}

/* A role "tool" message → one TOOL_RESULT block: content is a string or [{type:"text"} |
 * {type:"document", document:{data, id?}}]; a document's data (an object, or a string in
 * older clients) becomes text. All parts also get the flat text, for writers that take only
 * strings. */
static int rd_tool_result(struct rd *r, json_object *m, const char *path, struct bb_ir_block *b)
{
    char p[256], q[256];
    b->type = BB_IR_TOOL_RESULT;
    if (rd_str(r, m, "tool_call_id", path, true, &b->id) < 0)
        return -1;
    json_object *c = bb_json_get(m, "content");
    fpath(p, sizeof p, path, "content");
    if (!c)
        return bb_err_set(r->err, "%s: required", p);
    if (bb_json_is(c, json_type_string)) {
        b->text = bb_json_dup(r->a, c);
        return b->text.p ? 0 : rd_oom(r);
    }
    if (!bb_json_is(c, json_type_array))
        return rd_expect(r, p, "a string or an array");
    struct bvec parts = {0};
    size_t n = json_object_array_length(c), total = 0;
    for (size_t i = 0; i < n; i++) {
        json_object *it = json_object_array_get_idx(c, i);
        char ip[256];
        bprintf(ip, sizeof ip, "%s[%zu]", p, i);
        if (!bb_json_is(it, json_type_object))
            return rd_expect(r, ip, "an object");
        const char *type = bb_json_str(bb_json_get(it, "type"));
        if (!type)
            return rd_expect(r, fpath(q, sizeof q, ip, "type"), "a string");
        if (strcmp(type, "text") == 0) {
            json_object *t = bb_json_get(it, "text");
            if (!bb_json_is(t, json_type_string))
                return rd_expect(r, fpath(q, sizeof q, ip, "text"), "a string");
            if (rd_push_text(r, &parts, BB_IR_TEXT, t) < 0)
                return -1;
        } else if (strcmp(type, "document") == 0) {
            json_object *doc = bb_json_get(it, "document");
            if (!bb_json_is(doc, json_type_object))
                return rd_expect(r, fpath(q, sizeof q, ip, "document"), "an object");
            json_object *data = bb_json_get(doc, "data");
            if (!bb_json_is(data, json_type_object) && !bb_json_is(data, json_type_string))
                return rd_expect(r, fpath(q, sizeof q, ip, "document.data"),
                                 "an object or a string");
            if (bb_json_get(doc, "id") && rd_unsupported(r, "", "document.id") < 0)
                return -1;
            struct bb_ir_block *t = bv_push(r->a, &parts);
            if (!t)
                return rd_oom(r);
            t->type = BB_IR_TEXT;
            t->text = bb_json_is(data, json_type_string) ? bb_json_dup(r->a, data) : bb_json_text(r->a, data);
            if (!t->text.p)
                return rd_oom(r);
        } else if (rd_unsupported(r, "content.", type) < 0) {
            return -1;
        }
    }
    for (size_t i = 0; i < parts.n; i++)
        total += parts.v[i].text.len + 1;
    char *flat = bb_arena_alloc(r->a, total + 1);
    if (!flat)
        return rd_oom(r);
    size_t at = 0;
    for (size_t i = 0; i < parts.n; i++) {
        if (i)
            flat[at++] = '\n';
        memcpy(flat + at, parts.v[i].text.p, parts.v[i].text.len);
        at += parts.v[i].text.len;
    }
    flat[at] = '\0';
    b->text.p = flat;
    b->text.len = at;
    if (parts.n > 1) {
        b->content = parts.v;
        b->n_content = parts.n;
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
    struct bvec tools = {0}; /* the user message that consecutive tool messages merge into */
    bool in_tools = false;
    for (size_t i = 0; i < n; i++) {
        json_object *m = json_object_array_get_idx(msgs, i);
        bprintf(p, sizeof p, "messages[%zu]", i);
        if (!bb_json_is(m, json_type_object))
            return rd_expect(r, p, "an object");
        const char *role = bb_json_str(bb_json_get(m, "role"));
        if (!role)
            return rd_expect(r, fpath(q, sizeof q, p, "role"), "a string");
        if (strcmp(role, "system") == 0) {
            json_object *c = bb_json_get(m, "content");
            if (!c)
                return bb_err_set(r->err, "%s: required", fpath(q, sizeof q, p, "content"));
            if (rd_system(r, c, fpath(q, sizeof q, p, "content"), sys) < 0)
                return -1;
            continue;
        }
        if (strcmp(role, "tool") == 0) {
            if (!in_tools) {
                memset(&tools, 0, sizeof tools);
                v[k].role = BB_IR_USER;
                k++;
                in_tools = true;
            }
            struct bb_ir_block *b = bv_push(r->a, &tools);
            if (!b)
                return rd_oom(r);
            if (rd_tool_result(r, m, p, b) < 0)
                return -1;
            v[k - 1].blocks = tools.v;
            v[k - 1].n_blocks = tools.n;
            continue;
        }
        struct bvec bv = {0};
        if (strcmp(role, "user") == 0) {
            json_object *c = bb_json_get(m, "content");
            if (!c)
                return bb_err_set(r->err, "%s: required", fpath(q, sizeof q, p, "content"));
            if (rd_user(r, c, fpath(q, sizeof q, p, "content"), &bv) < 0)
                return -1;
            v[k].role = BB_IR_USER;
        } else if (strcmp(role, "assistant") == 0) {
            if (rd_assistant(r, m, p, &bv) < 0)
                return -1;
            v[k].role = BB_IR_ASSISTANT;
        } else {
            return rd_expect(r, fpath(q, sizeof q, p, "role"),
                             "\"system\", \"user\", \"assistant\" or \"tool\"");
        }
        v[k].blocks = bv.v;
        v[k].n_blocks = bv.n;
        k++;
        in_tools = false;
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
    size_t n = json_object_array_length(tools), k = 0;
    struct bb_ir_tool *v = bb_arena_calloc(r->a, (n ? n : 1) * sizeof *v);
    if (!v)
        return rd_oom(r);
    for (size_t i = 0; i < n; i++) {
        json_object *t = json_object_array_get_idx(tools, i);
        bprintf(p, sizeof p, "tools[%zu]", i);
        if (!bb_json_is(t, json_type_object))
            return rd_expect(r, p, "an object");
        json_object *type = bb_json_get(t, "type");
        if (type && !bb_json_is(type, json_type_string))
            return rd_expect(r, fpath(q, sizeof q, p, "type"), "a string");
        if (type && !bb_json_str_eq(type, "function")) {
            if (rd_unsupported(r, "tools.", json_object_get_string(type)) < 0)
                return -1;
            continue;
        }
        json_object *fn = bb_json_get(t, "function");
        fpath(q, sizeof q, p, "function");
        if (!bb_json_is(fn, json_type_object))
            return rd_expect(r, q, "an object");
        if (rd_str(r, fn, "name", q, true, &v[k].name) < 0 ||
            rd_str(r, fn, "description", q, false, &v[k].description) < 0)
            return -1;
        json_object *params = bb_json_get(fn, "parameters");
        if (params) {
            if (!bb_json_is(params, json_type_object))
                return rd_expect(r, fpath(p, sizeof p, q, "parameters"), "an object");
            v[k].parameters_json = bb_json_text(r->a, params);
            if (!v[k].parameters_json.p)
                return rd_oom(r);
        }
        k++;
    }
    r->req->tools = v;
    r->req->n_tools = k;
    return 0;
}

static int rd_response_format(struct rd *r, json_object *rf)
{
    struct bb_ir_request *q = r->req;
    if (!bb_json_is(rf, json_type_object))
        return rd_expect(r, "response_format", "an object");
    const char *t = bb_json_str(bb_json_get(rf, "type"));
    if (!t)
        return rd_expect(r, "response_format.type", "a string");
    if (strcmp(t, "text") == 0) {
        q->format = BB_IR_FMT_TEXT;
        return 0;
    }
    if (strcmp(t, "json_object") != 0)
        return rd_expect(r, "response_format.type", "\"text\" or \"json_object\"");
    json_object *schema = bb_json_get(rf, "json_schema");
    if (!schema) {
        q->format = BB_IR_FMT_JSON_OBJECT;
        return 0;
    }
    if (!bb_json_is(schema, json_type_object))
        return rd_expect(r, "response_format.json_schema", "an object");
    q->format = BB_IR_FMT_JSON_SCHEMA;
    q->format_strict = true; /* Cohere always constrains the output to the schema */
    q->format_schema_json = bb_json_text(r->a, schema);
    return q->format_schema_json.p ? 0 : rd_oom(r);
}

static int rd_thinking(struct rd *r, json_object *th)
{
    if (!bb_json_is(th, json_type_object))
        return rd_expect(r, "thinking", "an object");
    const char *t = bb_json_str(bb_json_get(th, "type"));
    if (!t)
        return rd_expect(r, "thinking.type", "a string");
    if (strcmp(t, "enabled") == 0)
        r->req->reasoning = true;
    else if (strcmp(t, "disabled") != 0)
        return rd_expect(r, "thinking.type", "\"enabled\" or \"disabled\"");
    return rd_u32(r, th, "token_budget", "thinking", NULL, &r->req->reasoning_budget);
}

static int rd_request(struct rd *r, json_object *root, const char *model_from_path)
{
    struct bb_ir_request *q = r->req;
    struct bvec sys = {0};
    static const char *const known[] = {
        "model",
        "messages",
        "tools",
        "strict_tools",
        "response_format",
        "max_tokens",
        "stop_sequences",
        "temperature",
        "seed",
        "frequency_penalty",
        "presence_penalty",
        "k",
        "p",
        "tool_choice",
        "thinking",
        "stream",
    };
    struct json_object_iterator it = json_object_iter_begin(root), end = json_object_iter_end(root);
    for (; !json_object_iter_equal(&it, &end); json_object_iter_next(&it)) {
        const char *k = json_object_iter_peek_name(&it);
        bool is_known = false;
        for (size_t i = 0; i < sizeof known / sizeof known[0] && !is_known; i++)
            is_known = strcmp(known[i], k) == 0;
        /* documents, citation_options, safety_mode, logprobs, priority, ...: recorded, never
         * fatal. */
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
    if (rd_messages(r, bb_json_get(root, "messages"), &sys) < 0)
        return -1;
    q->system = sys.v;
    q->n_system = sys.n;

    json_object *v;
    if ((v = bb_json_get(root, "tools")) && rd_tools(r, v) < 0)
        return -1;
    if ((v = bb_json_get(root, "strict_tools"))) {
        if (!bb_json_is(v, json_type_boolean))
            return rd_expect(r, "strict_tools", "a boolean");
        for (size_t i = 0; i < q->n_tools; i++)
            q->tools[i].strict = json_object_get_boolean(v);
    }
    if ((v = bb_json_get(root, "tool_choice"))) {
        const char *tc = bb_json_str(v);
        if (tc && strcasecmp(tc, "REQUIRED") == 0)
            q->tool_choice = BB_IR_TC_ANY;
        else if (tc && strcasecmp(tc, "NONE") == 0)
            q->tool_choice = BB_IR_TC_NONE;
        else
            return rd_expect(r, "tool_choice", "\"REQUIRED\" or \"NONE\"");
    }
    if ((v = bb_json_get(root, "response_format")) && rd_response_format(r, v) < 0)
        return -1;
    if ((v = bb_json_get(root, "stop_sequences"))) {
        if (!bb_json_is(v, json_type_array))
            return rd_expect(r, "stop_sequences", "an array");
        size_t n = json_object_array_length(v);
        q->stop = bb_arena_calloc(r->a, (n ? n : 1) * sizeof *q->stop);
        if (!q->stop)
            return rd_oom(r);
        for (size_t i = 0; i < n; i++) {
            json_object *s = json_object_array_get_idx(v, i);
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
    }
    if ((v = bb_json_get(root, "stream"))) {
        if (!bb_json_is(v, json_type_boolean))
            return rd_expect(r, "stream", "a boolean");
        q->stream = json_object_get_boolean(v);
    }
    if (rd_u32(r, root, "max_tokens", "", &q->has_max_tokens, &q->max_tokens) < 0 ||
        rd_u32(r, root, "k", "", &q->has_top_k, &q->top_k) < 0 ||
        rd_number(r, root, "temperature", &q->has_temperature, &q->temperature) < 0 ||
        rd_number(r, root, "p", &q->has_top_p, &q->top_p) < 0 ||
        rd_number(r, root, "frequency_penalty", &q->has_frequency_penalty, &q->frequency_penalty) <
            0 ||
        rd_number(r, root, "presence_penalty", &q->has_presence_penalty, &q->presence_penalty) < 0)
        return -1;
    if ((v = bb_json_get(root, "seed"))) {
        if (!bb_json_is(v, json_type_int))
            return rd_expect(r, "seed", "an integer");
        q->has_seed = true;
        q->seed = json_object_get_int64(v);
    }
    if ((v = bb_json_get(root, "thinking")) && rd_thinking(r, v) < 0)
        return -1;
    return 0;
}

static int cohere_read_request(struct bb_arena *a, const char *body, size_t len,
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

static int cohere_read_response(struct bb_arena *a, const char *body, size_t len,
                                struct bb_ir_response *out, struct bb_err *err)
{
    memset(out, 0, sizeof *out);
    json_object *root = bb_json_parse(body, len, "cohere response", err);
    if (!root)
        return -1;
    int rc = 0;
    json_object *msg = bb_json_get(root, "message");
    struct rd r = {a, NULL, err};
    if (!bb_json_is(root, json_type_object)) {
        rc = bb_err_set(err, "cohere response: expected a JSON object");
    } else if (bb_json_is(msg, json_type_string)) {
        /* an error body with a 2xx status */
        rc = bb_err_set(err, "cohere response: error: %s", json_object_get_string(msg));
    } else if (!bb_json_is(msg, json_type_object)) {
        rc = bb_err_set(err, "cohere response: message: expected an object");
    } else {
        struct bvec bv = {0};
        json_object *id = bb_json_get(root, "id");
        if (bb_json_is(id, json_type_string) && !(out->id = bb_json_dup(a, id)).p)
            rc = rd_oom(&r);
        if (rc == 0 && rd_assistant(&r, msg, "message", &bv) < 0) {
            char m[sizeof err->msg];
            bprintf(m, sizeof m, "%s", err ? err->msg : "");
            rc = bb_err_set(err, "cohere response: %s", m);
        }
        out->blocks = bv.v;
        out->n_blocks = bv.n;
        out->stop = stop_from_cohere(bb_json_str(bb_json_get(root, "finish_reason")));
        usage_read(bb_json_get(root, "usage"), &out->usage);
    }
    json_object_put(root);
    return rc;
}

/* ======================================================================================== */
/* writing messages (requests and responses)                                                */
/* ======================================================================================== */

/* How an assistant message is written. */
#define AM_THINKING 1u /* thinking may be written as {type:"thinking"} content */

/* ctx: the request hop, where what cannot be written is reported (NULL for answers). */
struct am {
    struct bb_arena *a;
    const struct bb_egress_ctx *ctx;
    unsigned flags;
};

/* Append the Cohere-shaped citations of a text block (raw JSON array) to cits, pointing them
 * at content position ci. */
static void am_citations(const struct am *m, const struct bb_ir_str *raw, size_t ci,
                         json_object *cits)
{
    json_object *arr = bb_json_parse(raw->p, raw->len, "citations", NULL);
    size_t n = bb_json_is(arr, json_type_array) ? json_object_array_length(arr) : 0;
    bool lost = !bb_json_is(arr, json_type_array);
    for (size_t i = 0; i < n; i++) {
        json_object *c = json_object_array_get_idx(arr, i);
        if (!citation_is_cohere(c)) {
            lost = true;
            continue;
        }
        json_object *copy = NULL;
        if (json_object_deep_copy(c, &copy, NULL) != 0 || !copy)
            continue;
        jadd(copy, "content_index", json_object_new_int64((int64_t)ci));
        json_object_array_add(cits, copy);
    }
    if (lost)
        bb_proto_drop(m->a, m->ctx, "citations");
    json_object_put(arr);
}

/* A tool call id, or one in a neutral shape when the IR has none. */
static json_object *tool_call_id(const struct bb_ir_str *id, const char *seed, size_t i)
{
    if (str_has(id))
        return jnew_str(id);
    char buf[192];
    bprintf(buf, sizeof buf, "call_%s_%zu", seed && *seed ? seed : "busbar", i);
    return json_object_new_string(buf);
}

/* {id, type:"function", function:{name, arguments}}: arguments stay JSON text. */
static json_object *tool_call_json(const struct bb_ir_block *b, const char *seed, size_t i)
{
    json_object *tc = json_object_new_object(), *fn = json_object_new_object();
    jadd(tc, "id", tool_call_id(&b->id, seed, i));
    jadd(tc, "type", json_object_new_string("function"));
    jadd(fn, "name", jnew_str(&b->name));
    jadd(fn, "arguments",
         str_has(&b->input_json) ? jnew_str(&b->input_json) : json_object_new_string("{}"));
    jadd(tc, "function", fn);
    return tc;
}

/* Fill an assistant message object from IR blocks: text/thinking content, tool_plan (the
 * thinking of a message that makes tool calls), tool_calls, citations. */
static void am_write(const struct am *m, json_object *msg, const struct bb_ir_block *b, size_t n,
                     const char *seed)
{
    bool has_calls = false;
    size_t plan_len = 0;
    for (size_t i = 0; i < n; i++) {
        has_calls = has_calls || b[i].type == BB_IR_TOOL_USE;
        if (b[i].type == BB_IR_THINKING)
            plan_len += b[i].text.len + 1;
    }
    json_object *content = json_object_new_array(), *calls = json_object_new_array(),
                *cits = json_object_new_array();
    char *plan = has_calls && plan_len ? malloc(plan_len + 1) : NULL;
    size_t plan_at = 0, ci = 0, ncalls = 0;
    for (size_t i = 0; i < n; i++) {
        const struct bb_ir_block *x = &b[i];
        switch (x->type) {
        case BB_IR_TEXT: {
            json_object *it = json_object_new_object();
            jadd(it, "type", json_object_new_string("text"));
            jadd(it, "text", jnew_str(&x->text));
            json_object_array_add(content, it);
            if (x->citations_json.p)
                am_citations(m, &x->citations_json, ci, cits);
            ci++;
            break;
        }
        case BB_IR_THINKING:
            if (x->signature.p)
                bb_proto_drop(m->a, m->ctx, "signature"); /* provider-bound; Cohere has no field */
            if (has_calls) {
                if (plan && x->text.len) {
                    if (plan_at)
                        plan[plan_at++] = '\n';
                    memcpy(plan + plan_at, x->text.p, x->text.len);
                    plan_at += x->text.len;
                }
            } else if (m->flags & AM_THINKING) {
                json_object *it = json_object_new_object();
                jadd(it, "type", json_object_new_string("thinking"));
                jadd(it, "thinking", jnew_str(&x->text));
                json_object_array_add(content, it);
                ci++;
            } else {
                bb_proto_drop(m->a, m->ctx, "thinking");
            }
            break;
        case BB_IR_REDACTED_THINKING:
            bb_proto_drop(m->a, m->ctx, "thinking");
            break;
        case BB_IR_TOOL_USE:
            json_object_array_add(calls, tool_call_json(x, seed, ncalls++));
            break;
        case BB_IR_IMAGE:
            bb_proto_drop(m->a, m->ctx, "images");
            break;
        case BB_IR_DOCUMENT:
            bb_proto_drop(m->a, m->ctx, "documents");
            break;
        case BB_IR_TOOL_RESULT:
            bb_proto_drop(m->a, m->ctx, "tool_result");
            break;
        }
        if (x->cache_control)
            bb_proto_drop(m->a, m->ctx, "cache_control");
    }
    if (plan_at)
        jadd(msg, "tool_plan", json_object_new_string_len(plan, (int)plan_at));
    free(plan);
    if (json_object_array_length(calls))
        jadd(msg, "tool_calls", calls);
    else
        json_object_put(calls);
    if (json_object_array_length(content))
        jadd(msg, "content", content);
    else
        json_object_put(content);
    if (json_object_array_length(cits))
        jadd(msg, "citations", cits);
    else
        json_object_put(cits);
}

/* ======================================================================================== */
/* egress: write_request                                                                    */
/* ======================================================================================== */

struct wr {
    struct bb_arena *a;
    const struct bb_ir_request *ir;
    const struct bb_egress_ctx *ctx;
};

/* A text part list, or the one text as a plain string. */
static json_object *w_text_content(json_object *items)
{
    if (json_object_array_length(items) == 1) {
        json_object *it = json_object_array_get_idx(items, 0);
        if (bb_json_str_eq(bb_json_get(it, "type"), "text")) {
            json_object *s = json_object_get(bb_json_get(it, "text"));
            json_object_put(items);
            return s;
        }
    }
    return items;
}

static json_object *w_image(const struct bb_ir_block *b)
{
    json_object *iu = json_object_new_object();
    if (b->data.p) {
        const char *mt = str_has(&b->media_type) ? b->media_type.p : "image/png";
        size_t mt_len = str_has(&b->media_type) ? b->media_type.len : 9;
        size_t n = 5 + mt_len + 8 + b->data.len;
        char *url = malloc(n + 1);
        if (!url) {
            json_object_put(iu);
            return NULL;
        }
        memcpy(url, "data:", 5);
        memcpy(url + 5, mt, mt_len);
        memcpy(url + 5 + mt_len, ";base64,", 8);
        memcpy(url + 13 + mt_len, b->data.p, b->data.len);
        url[n] = '\0';
        jadd(iu, "url", json_object_new_string_len(url, (int)n));
        free(url);
    } else {
        jadd(iu, "url", jnew_str(&b->url));
    }
    json_object *it = json_object_new_object();
    jadd(it, "type", json_object_new_string("image_url"));
    jadd(it, "image_url", iu);
    return it;
}

/* A TOOL_RESULT → {role:"tool", tool_call_id, content}: the flat text as a string, else the
 * nested text parts (images cannot travel in a Cohere tool message). */
static json_object *w_tool_message(struct wr *w, const struct bb_ir_block *b)
{
    json_object *m = json_object_new_object();
    jadd(m, "role", json_object_new_string("tool"));
    jadd(m, "tool_call_id", jnew_str(&b->id));
    if (b->is_error)
        bb_proto_drop(w->a, w->ctx, "is_error");
    if (b->text.p || !b->n_content) {
        jadd(m, "content", jnew_str(&b->text));
        for (size_t i = 0; i < b->n_content; i++)
            if (b->content[i].type == BB_IR_IMAGE)
                bb_proto_drop(w->a, w->ctx, "images");
        return m;
    }
    json_object *items = json_object_new_array();
    for (size_t i = 0; i < b->n_content; i++) {
        const struct bb_ir_block *c = &b->content[i];
        if (c->type != BB_IR_TEXT) {
            bb_proto_drop(w->a, w->ctx, c->type == BB_IR_IMAGE ? "images" : "tool_result.content");
            continue;
        }
        json_object *it = json_object_new_object();
        jadd(it, "type", json_object_new_string("text"));
        jadd(it, "text", jnew_str(&c->text));
        json_object_array_add(items, it);
    }
    jadd(m, "content", items);
    return m;
}

/* A user message: its tool results first, as tool messages (they answer the assistant turn
 * just before), then the rest as one user message. */
static int w_user(struct wr *w, const struct bb_ir_message *m, json_object *msgs)
{
    json_object *items = json_object_new_array();
    for (size_t i = 0; i < m->n_blocks; i++) {
        const struct bb_ir_block *b = &m->blocks[i];
        if (b->cache_control)
            bb_proto_drop(w->a, w->ctx, "cache_control");
        switch (b->type) {
        case BB_IR_TOOL_RESULT:
            json_object_array_add(msgs, w_tool_message(w, b));
            break;
        case BB_IR_TEXT: {
            json_object *it = json_object_new_object();
            jadd(it, "type", json_object_new_string("text"));
            jadd(it, "text", jnew_str(&b->text));
            json_object_array_add(items, it);
            if (b->citations_json.p)
                bb_proto_drop(w->a, w->ctx, "citations");
            break;
        }
        case BB_IR_IMAGE: {
            if (!b->data.p && !b->url.p)
                break;
            json_object *it = w_image(b);
            if (!it) {
                json_object_put(items);
                return -1;
            }
            json_object_array_add(items, it);
            break;
        }
        case BB_IR_DOCUMENT:
            bb_proto_drop(w->a, w->ctx, "documents");
            break;
        case BB_IR_THINKING:
        case BB_IR_REDACTED_THINKING:
            bb_proto_drop(w->a, w->ctx, "thinking");
            break;
        case BB_IR_TOOL_USE:
            bb_proto_drop(w->a, w->ctx, "tool_calls");
            break;
        }
    }
    if (!json_object_array_length(items)) {
        json_object_put(items);
        return 0;
    }
    json_object *u = json_object_new_object();
    jadd(u, "role", json_object_new_string("user"));
    jadd(u, "content", w_text_content(items));
    json_object_array_add(msgs, u);
    return 0;
}

static json_object *w_messages(struct wr *w)
{
    const struct bb_ir_request *ir = w->ir;
    json_object *msgs = json_object_new_array();
    if (ir->n_system) {
        json_object *items = json_object_new_array();
        for (size_t i = 0; i < ir->n_system; i++) {
            const struct bb_ir_block *b = &ir->system[i];
            if (b->type != BB_IR_TEXT) {
                bb_proto_drop(w->a, w->ctx, "system");
                continue;
            }
            if (b->cache_control)
                bb_proto_drop(w->a, w->ctx, "cache_control");
            json_object *it = json_object_new_object();
            jadd(it, "type", json_object_new_string("text"));
            jadd(it, "text", jnew_str(&b->text));
            json_object_array_add(items, it);
        }
        if (json_object_array_length(items)) {
            json_object *s = json_object_new_object();
            jadd(s, "role", json_object_new_string("system"));
            jadd(s, "content", w_text_content(items));
            json_object_array_add(msgs, s);
        } else {
            json_object_put(items);
        }
    }
    struct am how = {w->a, w->ctx, w->ctx->lane && w->ctx->lane->reasoning ? AM_THINKING : 0};
    for (size_t i = 0; i < ir->n_messages; i++) {
        const struct bb_ir_message *m = &ir->messages[i];
        if (m->name.p)
            bb_proto_drop(w->a, w->ctx, "name");
        if (m->role == BB_IR_USER) {
            if (w_user(w, m, msgs) < 0) {
                json_object_put(msgs);
                return NULL;
            }
            continue;
        }
        json_object *am = json_object_new_object();
        jadd(am, "role", json_object_new_string("assistant"));
        am_write(&how, am, m->blocks, m->n_blocks, "busbar");
        if (json_object_object_length(am) > 1)
            json_object_array_add(msgs, am);
        else
            json_object_put(am); /* nothing Cohere can carry: an empty turn would be a 400 */
    }
    return msgs;
}

/* tools, tool_choice and strict_tools. A forced specific tool is "REQUIRED" with only that
 * tool offered, which is the same contract. */
static int w_tools(struct wr *w, json_object *body, struct bb_err *err)
{
    const struct bb_ir_request *ir = w->ir;
    if (!ir->n_tools) {
        if (ir->tool_choice == BB_IR_TC_ANY || ir->tool_choice == BB_IR_TC_TOOL)
            bb_proto_drop(w->a, w->ctx, "tool_choice"); /* REQUIRED needs tools */
        return 0;
    }
    bool only = false;
    if (ir->tool_choice == BB_IR_TC_TOOL) {
        for (size_t i = 0; i < ir->n_tools && !only; i++)
            only = ir->tool_choice_name.p && ir->tools[i].name.p &&
                   strcmp(ir->tools[i].name.p, ir->tool_choice_name.p) == 0;
        if (!only)
            bb_proto_drop(w->a, w->ctx, "tool_choice"); /* names no offered tool: any tool then */
    }
    json_object *tools = json_object_new_array();
    size_t n_strict = 0, n_out = 0;
    for (size_t i = 0; i < ir->n_tools; i++) {
        const struct bb_ir_tool *t = &ir->tools[i];
        if (only && (!t->name.p || strcmp(t->name.p, ir->tool_choice_name.p) != 0))
            continue;
        json_object *params = NULL;
        if (str_has(&t->parameters_json)) {
            params = bb_json_parse(t->parameters_json.p, t->parameters_json.len, "parameters", NULL);
            if (!bb_json_is(params, json_type_object)) {
                json_object_put(params);
                json_object_put(tools);
                return bb_err_set(err, "tools[%zu].parameters: expected a JSON object", i);
            }
        } else {
            params = json_object_new_object();
            jadd(params, "type", json_object_new_string("object"));
            jadd(params, "properties", json_object_new_object());
        }
        json_object *fn = json_object_new_object();
        jadd(fn, "name", jnew_str(&t->name));
        if (t->description.p)
            jadd(fn, "description", jnew_str(&t->description));
        jadd(fn, "parameters", params);
        json_object *o = json_object_new_object();
        jadd(o, "type", json_object_new_string("function"));
        jadd(o, "function", fn);
        json_object_array_add(tools, o);
        n_strict += t->strict;
        n_out++;
    }
    jadd(body, "tools", tools);
    if (n_strict && n_strict == n_out)
        jadd(body, "strict_tools", json_object_new_boolean(1));
    else if (n_strict)
        bb_proto_drop(w->a, w->ctx, "strict"); /* Cohere's strictness is all tools or none */
    switch (ir->tool_choice) {
    case BB_IR_TC_ANY:
    case BB_IR_TC_TOOL:
        jadd(body, "tool_choice", json_object_new_string("REQUIRED"));
        break;
    case BB_IR_TC_NONE:
        jadd(body, "tool_choice", json_object_new_string("NONE"));
        break;
    case BB_IR_TC_UNSET:
    case BB_IR_TC_AUTO:
        break;
    }
    return 0;
}

static double clamp(double v, double lo, double hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

static void w_sampling(struct wr *w, json_object *body)
{
    const struct bb_ir_request *ir = w->ir;
    if (ir->has_max_tokens)
        jadd(body, "max_tokens", json_object_new_int64(ir->max_tokens));
    if (ir->has_temperature)
        jadd(body, "temperature", jnew_double(ir->temperature < 0 ? 0 : ir->temperature));
    if (ir->has_top_p)
        jadd(body, "p", jnew_double(clamp(ir->top_p, MIN_P, MAX_P)));
    if (ir->has_top_k)
        jadd(body, "k", json_object_new_int64(ir->top_k > MAX_K ? MAX_K : ir->top_k));
    if (ir->has_seed)
        jadd(body, "seed", json_object_new_int64(ir->seed));
    if (ir->has_frequency_penalty)
        jadd(body, "frequency_penalty", jnew_double(clamp(ir->frequency_penalty, 0, 1)));
    if (ir->has_presence_penalty)
        jadd(body, "presence_penalty", jnew_double(clamp(ir->presence_penalty, 0, 1)));
    if (ir->n_stop) {
        json_object *s = json_object_new_array();
        for (size_t i = 0; i < ir->n_stop && i < MAX_STOP_SEQUENCES; i++)
            json_object_array_add(s, jnew_str(&ir->stop[i]));
        jadd(body, "stop_sequences", s);
        if (ir->n_stop > MAX_STOP_SEQUENCES)
            bb_proto_drop(w->a, w->ctx, "stop");
    }
    if (ir->n_choices > 1)
        bb_proto_drop(w->a, w->ctx, "n");
    if (ir->user.p)
        bb_proto_drop(w->a, w->ctx, "user");
    if (ir->has_parallel_tool_calls && !ir->parallel_tool_calls)
        bb_proto_drop(w->a, w->ctx, "parallel_tool_calls"); /* Cohere may always call in parallel */
}

static int w_format(struct wr *w, json_object *body, struct bb_err *err)
{
    const struct bb_ir_request *ir = w->ir;
    json_object *rf = NULL;
    switch (ir->format) {
    case BB_IR_FMT_UNSET:
        return 0;
    case BB_IR_FMT_TEXT:
        rf = json_object_new_object();
        jadd(rf, "type", json_object_new_string("text"));
        break;
    case BB_IR_FMT_JSON_OBJECT:
    case BB_IR_FMT_JSON_SCHEMA:
        rf = json_object_new_object();
        jadd(rf, "type", json_object_new_string("json_object"));
        if (ir->format == BB_IR_FMT_JSON_SCHEMA && str_has(&ir->format_schema_json)) {
            json_object *s = bb_json_parse(ir->format_schema_json.p, ir->format_schema_json.len,
                                        "response_format schema", NULL);
            if (!bb_json_is(s, json_type_object)) {
                json_object_put(s);
                json_object_put(rf);
                return bb_err_set(err, "response_format.json_schema: expected a JSON object");
            }
            jadd(rf, "json_schema", s);
        }
        break;
    }
    jadd(body, "response_format", rf);
    return 0;
}

static int cohere_write_request(struct bb_arena *a, const struct bb_ir_request *ir,
                                const struct bb_egress_ctx *ctx, struct bb_egress_req *out,
                                struct bb_err *err)
{
    struct wr w = {a, ir, ctx};
    const char *model = ctx->lane && ctx->lane->upstream_model ? ctx->lane->upstream_model
                        : ir->model.p                          ? ir->model.p
                                                               : "";
    json_object *body = json_object_new_object();
    if (!body)
        return bb_err_set(err, "cohere request: out of memory");
    jadd(body, "model", json_object_new_string(model));
    json_object *msgs = w_messages(&w);
    if (!msgs) {
        json_object_put(body);
        return bb_err_set(err, "cohere request: out of memory");
    }
    jadd(body, "messages", msgs);
    if (w_tools(&w, body, err) < 0 || w_format(&w, body, err) < 0) {
        json_object_put(body);
        return -1;
    }
    w_sampling(&w, body);
    if (ir->reasoning) {
        if (ctx->lane && ctx->lane->reasoning) {
            json_object *th = json_object_new_object();
            jadd(th, "type", json_object_new_string("enabled"));
            if (ir->reasoning_budget)
                jadd(th, "token_budget", json_object_new_int64(ir->reasoning_budget));
            jadd(body, "thinking", th);
        } else {
            bb_proto_drop(a, ctx, "reasoning");
        }
    }
    jadd(body, "stream", json_object_new_boolean(ctx->stream));

    bprintf(out->path, sizeof out->path, "/v2/chat");
    int rc = jappend(out->body, body);
    json_object_put(body);
    if (rc < 0)
        return bb_err_set(err, "cohere request: out of memory");
    /* Accept is the proxy's: it knows whether it reads a stream. */
    rc = evbuffer_add_printf(out->headers, "Content-Type: application/json\r\n") < 0;
    if (!rc && ctx->provider && ctx->provider->api_key && *ctx->provider->api_key)
        rc = evbuffer_add_printf(out->headers, "Authorization: Bearer %s\r\n",
                                 ctx->provider->api_key) < 0;
    return rc ? bb_err_set(err, "cohere request headers: out of memory") : 0;
}

/* ======================================================================================== */
/* ingress: write_response                                                                  */
/* ======================================================================================== */

static int cohere_write_response(struct bb_arena *a, const struct bb_ir_response *r,
                                 const struct bb_ingress_ctx *ctx, struct evbuffer *out)
{
    const char *seed = ctx && ctx->request_id ? ctx->request_id : "busbar";
    json_object *o = json_object_new_object();
    if (!o)
        return -1;
    jadd(o, "id", str_has(&r->id) ? jnew_str(&r->id) : json_object_new_string(seed));
    jadd(o, "finish_reason", json_object_new_string(stop_to_cohere(r->stop)));
    json_object *msg = json_object_new_object();
    jadd(msg, "role", json_object_new_string("assistant"));
    struct am how = {a, NULL, AM_THINKING};
    am_write(&how, msg, r->blocks, r->n_blocks, seed);
    if (!bb_json_get(msg, "content") && !bb_json_get(msg, "tool_calls"))
        jadd(msg, "content", json_object_new_array());
    jadd(o, "message", msg);
    if (r->usage.set)
        jadd(o, "usage", usage_write(&r->usage));
    int rc = jappend(out, o);
    json_object_put(o);
    return rc;
}

static const char *cohere_stream_content_type(const struct bb_ingress_ctx *ctx)
{
    (void)ctx;
    return "text/event-stream";
}

/* ======================================================================================== */
/* stream decoder: Cohere SSE → IR events                                                   */
/* ======================================================================================== */

/* What kind of Cohere sequence the open IR block came from: content parts and tool calls
 * are numbered separately, the tool plan not at all. */
enum dkind { DK_CONTENT, DK_PLAN, DK_TOOL };

struct dec {
    bool started, stopped;
    bool open;
    enum dkind kind;
    int64_t wire_index;         /* of the open block in its Cohere sequence */
    uint32_t index;             /* of the open block in the IR */
    enum bb_ir_block_type type; /* of the open block */
    uint32_t next;              /* next IR block index */
};

struct dx {
    struct dec *d;
    struct bb_arena *s;
    bb_ir_event_cb cb;
    void *arg;
};

static struct bb_ir_str dx_str(struct dx *x, json_object *v)
{
    return bb_json_is(v, json_type_string) ? bb_json_dup(x->s, v) : (struct bb_ir_str){NULL, 0};
}

static int dx_emit(struct dx *x, struct bb_ir_event *ev)
{
    return x->cb(x->arg, ev);
}

static int dx_start(struct dx *x, json_object *id)
{
    if (x->d->started)
        return 0;
    x->d->started = true;
    struct bb_ir_event ev = {.type = BB_IR_EV_MESSAGE_START};
    ev.id = dx_str(x, id);
    return dx_emit(x, &ev);
}

static int dx_close(struct dx *x)
{
    if (!x->d->open)
        return 0;
    x->d->open = false;
    struct bb_ir_event ev = {
        .type = BB_IR_EV_BLOCK_STOP, .index = x->d->index, .block_type = x->d->type};
    return dx_emit(x, &ev);
}

static int dx_open(struct dx *x, enum dkind kind, int64_t wire, enum bb_ir_block_type type,
                   json_object *id, json_object *name)
{
    int rc = dx_close(x);
    if (rc)
        return rc;
    struct dec *d = x->d;
    d->open = true;
    d->kind = kind;
    d->wire_index = wire;
    d->type = type;
    d->index = d->next++;
    struct bb_ir_event ev = {.type = BB_IR_EV_BLOCK_START, .index = d->index, .block_type = type};
    if (type == BB_IR_TOOL_USE) {
        ev.id = dx_str(x, id);
        ev.name = dx_str(x, name);
    }
    return dx_emit(x, &ev);
}

/* The open block is (kind, wire, type), or a new one is opened. */
static int dx_ensure(struct dx *x, enum dkind kind, int64_t wire, enum bb_ir_block_type type)
{
    struct dec *d = x->d;
    if (d->open && d->kind == kind && d->wire_index == wire && d->type == type)
        return 0;
    return dx_open(x, kind, wire, type, NULL, NULL);
}

static int dx_delta(struct dx *x, enum bb_ir_delta kind, json_object *text)
{
    if (!bb_json_is(text, json_type_string) || !json_object_get_string_len(text))
        return 0;
    struct bb_ir_event ev = {.type = BB_IR_EV_BLOCK_DELTA, .index = x->d->index, .delta = kind};
    ev.block_type = x->d->type;
    ev.text = bb_json_dup(x->s, text);
    return ev.text.p ? dx_emit(x, &ev) : -1;
}

static int64_t dx_index(json_object *data)
{
    json_object *i = bb_json_get(data, "index");
    return bb_json_is(i, json_type_int) ? json_object_get_int64(i) : 0;
}

/* delta.message of a frame. */
static json_object *dx_msg(json_object *data)
{
    return bb_json_get(bb_json_get(data, "delta"), "message");
}

static int dx_error(struct dx *x, const char *msg, size_t len, json_object *type,
                    const struct bb_ir_usage *u)
{
    int rc = dx_close(x);
    if (rc)
        return rc;
    x->d->stopped = true;
    struct bb_ir_event ev = {.type = BB_IR_EV_ERROR};
    ev.text = bb_ir_strdup(x->s, msg, len);
    ev.error_type = dx_str(x, type);
    if (u)
        ev.usage = *u;
    return ev.text.p ? dx_emit(x, &ev) : -1;
}

static int dx_message_end(struct dx *x, json_object *data)
{
    json_object *delta = bb_json_get(data, "delta");
    const char *fr = bb_json_str(bb_json_get(delta, "finish_reason"));
    json_object *error = bb_json_get(delta, "error");
    struct bb_ir_usage u;
    usage_read(bb_json_get(delta, "usage"), &u);
    if ((fr && (strcmp(fr, "ERROR") == 0 || strcmp(fr, "TIMEOUT") == 0)) ||
        (bb_json_is(error, json_type_string) && json_object_get_string_len(error))) {
        char buf[160];
        const char *m = bb_json_str(error);
        size_t n = m ? (size_t)json_object_get_string_len(error) : 0;
        if (!n) {
            bprintf(buf, sizeof buf, "the model ended the stream with finish_reason %s",
                    fr ? fr : "ERROR");
            m = buf;
            n = strlen(buf);
        }
        return dx_error(x, m, n, NULL, &u);
    }
    int rc = dx_close(x);
    if (rc)
        return rc;
    struct bb_ir_event ev = {.type = BB_IR_EV_MESSAGE_DELTA, .usage = u};
    ev.stop = fr ? stop_from_cohere(fr) : BB_IR_STOP_END_TURN;
    if ((rc = dx_emit(x, &ev)))
        return rc;
    x->d->stopped = true;
    struct bb_ir_event stop = {.type = BB_IR_EV_MESSAGE_STOP};
    return dx_emit(x, &stop);
}

/* A frame of unknown type: an error when it says so ({"message"} / {"error"}), else a kind of
 * event this decoder predates, skipped. */
static int dx_unknown(struct dx *x, json_object *data, const char *event)
{
    json_object *err = bb_json_get(data, "error"), *msg = bb_json_get(data, "message"), *type = NULL;
    if (bb_json_is(err, json_type_object)) {
        type = bb_json_get(err, "type");
        msg = bb_json_get(err, "message");
        if (!bb_json_is(msg, json_type_string))
            msg = err;
    } else if (bb_json_is(err, json_type_string)) {
        msg = err;
    }
    if (!bb_json_is(msg, json_type_string)) {
        if (!event || strcmp(event, "error") != 0)
            return 0;
        const char *t = "the provider sent an error event";
        return dx_error(x, t, strlen(t), NULL, NULL);
    }
    return dx_error(x, json_object_get_string(msg), (size_t)json_object_get_string_len(msg), type,
                    NULL);
}

static int dx_frame(struct dx *x, json_object *data, const char *type, const char *event)
{
    json_object *m = dx_msg(data);
    int rc;
    if (strcmp(type, "message-start") == 0)
        return dx_start(x, bb_json_get(data, "id"));
    if (strcmp(type, "message-end") == 0)
        return (rc = dx_start(x, NULL)) ? rc : dx_message_end(x, data);
    if (strcmp(type, "debug") == 0 || strcmp(type, "citation-end") == 0)
        return 0;
    if (strcmp(type, "content-start") == 0 || strcmp(type, "content-delta") == 0 ||
        strcmp(type, "content-end") == 0 || strcmp(type, "tool-plan-delta") == 0 ||
        strcmp(type, "tool-call-start") == 0 || strcmp(type, "tool-call-delta") == 0 ||
        strcmp(type, "tool-call-end") == 0 || strcmp(type, "citation-start") == 0) {
        if ((rc = dx_start(x, NULL)))
            return rc;
    } else {
        return dx_unknown(x, data, event);
    }
    int64_t wi = dx_index(data);
    struct dec *d = x->d;

    if (strcmp(type, "content-start") == 0) {
        json_object *c = bb_json_get(m, "content");
        const char *ct = bb_json_str(bb_json_get(c, "type"));
        bool thinking = ct ? strcmp(ct, "thinking") == 0 : bb_json_get(c, "thinking") && !bb_json_get(c, "text");
        if ((rc = dx_open(x, DK_CONTENT, wi, thinking ? BB_IR_THINKING : BB_IR_TEXT, NULL, NULL)))
            return rc;
        return dx_delta(x, thinking ? BB_IR_D_THINKING : BB_IR_D_TEXT,
                        bb_json_get(c, thinking ? "thinking" : "text"));
    }
    if (strcmp(type, "content-delta") == 0) {
        /* the delta's own field says what it is; a part that changes kind, or a delta with no
         * content-start, opens the block it needs */
        json_object *c = bb_json_get(m, "content");
        json_object *think = bb_json_get(c, "thinking"), *text = bb_json_get(c, "text");
        bool thinking = bb_json_is(think, json_type_string) && json_object_get_string_len(think);
        if (!thinking && !(bb_json_is(text, json_type_string) && json_object_get_string_len(text)))
            return 0;
        if ((rc = dx_ensure(x, DK_CONTENT, wi, thinking ? BB_IR_THINKING : BB_IR_TEXT)))
            return rc;
        return thinking ? dx_delta(x, BB_IR_D_THINKING, think) : dx_delta(x, BB_IR_D_TEXT, text);
    }
    if (strcmp(type, "content-end") == 0 || strcmp(type, "tool-call-end") == 0) {
        enum dkind k = type[0] == 'c' ? DK_CONTENT : DK_TOOL;
        if (d->open && d->kind == k && d->wire_index == wi)
            return dx_close(x);
        return 0;
    }
    if (strcmp(type, "tool-plan-delta") == 0) {
        if ((rc = dx_ensure(x, DK_PLAN, -1, BB_IR_THINKING)))
            return rc;
        return dx_delta(x, BB_IR_D_THINKING, bb_json_get(m, "tool_plan"));
    }
    if (strcmp(type, "tool-call-start") == 0) {
        json_object *tc = bb_json_get(m, "tool_calls"), *fn = bb_json_get(tc, "function");
        if ((rc = dx_open(x, DK_TOOL, wi, BB_IR_TOOL_USE, bb_json_get(tc, "id"), bb_json_get(fn, "name"))))
            return rc;
        return dx_delta(x, BB_IR_D_INPUT_JSON, bb_json_get(fn, "arguments"));
    }
    if (strcmp(type, "tool-call-delta") == 0) {
        if ((rc = dx_ensure(x, DK_TOOL, wi, BB_IR_TOOL_USE)))
            return rc;
        return dx_delta(x, BB_IR_D_INPUT_JSON,
                        bb_json_get(bb_json_get(bb_json_get(m, "tool_calls"), "function"), "arguments"));
    }
    /* citation-start: onto the text block it cites while that block is open (Cohere sends
     * citations before the part's content-end); a citation of a closed part cannot be placed
     * in the IR's block order and is skipped. */
    json_object *cit = bb_json_get(m, "citations");
    if (!bb_json_is(cit, json_type_object) || !d->open || d->type != BB_IR_TEXT || d->kind != DK_CONTENT)
        return 0;
    json_object *ci = bb_json_get(cit, "content_index");
    if (bb_json_is(ci, json_type_int) && json_object_get_int64(ci) != d->wire_index)
        return 0;
    const char *ct = bb_json_str(bb_json_get(cit, "type"));
    if (ct && strcmp(ct, "TEXT_CONTENT") != 0)
        return 0;
    struct bb_ir_event ev = {.type = BB_IR_EV_BLOCK_DELTA,
                             .index = d->index,
                             .block_type = BB_IR_TEXT,
                             .delta = BB_IR_D_CITATION};
    ev.text = bb_json_text(x->s, cit);
    return ev.text.p ? dx_emit(x, &ev) : -1;
}

static void cohere_dec_init(void *dec)
{
    memset(dec, 0, sizeof(struct dec));
}

static int cohere_dec_frame(void *dec, struct bb_arena *scratch, const struct bb_frame *f,
                            bb_ir_event_cb cb, void *arg)
{
    struct dx x = {dec, scratch, cb, arg};
    if (x.d->stopped || !f->data_len)
        return 0;
    size_t n = f->data_len;
    while (n && isspace((unsigned char)f->data[n - 1]))
        n--;
    if (n == 6 && memcmp(f->data, "[DONE]", 6) == 0) {
        /* not Cohere's own terminator, but the SDK's stream reader honours it */
        int rc = dx_start(&x, NULL);
        if (!rc)
            rc = dx_close(&x);
        x.d->stopped = true;
        struct bb_ir_event ev = {.type = BB_IR_EV_MESSAGE_STOP};
        return rc ? rc : dx_emit(&x, &ev);
    }
    json_object *data = bb_json_parse(f->data, f->data_len, "frame", NULL);
    if (!bb_json_is(data, json_type_object)) {
        json_object_put(data);
        return -1;
    }
    char event[64];
    bprintf(event, sizeof event, "%.*s", (int)(f->event_len < 63 ? f->event_len : 63),
            f->event ? f->event : "");
    const char *type = bb_json_str(bb_json_get(data, "type"));
    int rc;
    if (!type && *event && strcmp(event, "error") != 0)
        type = event; /* a frame whose type is only in its event: line */
    rc = type ? dx_frame(&x, data, type, event) : dx_unknown(&x, data, event);
    json_object_put(data);
    return rc;
}

/* ======================================================================================== */
/* stream encoder: IR events → Cohere SSE                                                   */
/* ======================================================================================== */

enum ekind { EK_CONTENT, EK_TOOL, EK_SKIP };

struct eblk {
    uint32_t ir;   /* IR block index */
    uint32_t wire; /* index in its Cohere sequence */
    enum ekind kind;
    enum bb_ir_block_type type;
};

struct enc {
    char seed[128]; /* request id: response and tool call ids */
    bool started, stopped;
    uint32_t next_content, next_tool, next_citation;
    struct eblk open[ENC_MAX_OPEN];
    size_t n_open;
    enum bb_ir_stop stop;
    struct bb_ir_usage usage;
};

static void cohere_enc_init(void *enc, const struct bb_ingress_ctx *ctx)
{
    struct enc *e = enc;
    memset(e, 0, sizeof *e);
    bprintf(e->seed, sizeof e->seed, "%s", ctx && ctx->request_id ? ctx->request_id : "busbar");
}

/* `event: type` + `data: json`, consuming o. A "[DONE]" inside a string would end the
 * official SDK's stream reader early, so its bracket is written as an escape. */
static int enc_frame(struct evbuffer *out, const char *type, json_object *o)
{
    size_t n = 0;
    const char *s = json_object_to_json_string_length(o, JSON_OUT, &n);
    int rc = s ? evbuffer_add_printf(out, "event: %s\ndata: ", type) < 0 : -1;
    while (!rc) {
        const char *hit = memmem(s, n, "[DONE]", 6);
        size_t k = hit ? (size_t)(hit - s) : n;
        rc = evbuffer_add(out, s, k);
        if (rc || !hit)
            break;
        rc = evbuffer_add(out, "\\u005b", 6);
        s += k + 1;
        n -= k + 1;
    }
    if (!rc)
        rc = evbuffer_add(out, "\n\n", 2);
    json_object_put(o);
    return rc ? -1 : 0;
}

static json_object *typed(const char *type)
{
    json_object *o = json_object_new_object();
    jadd(o, "type", json_object_new_string(type));
    return o;
}

/* {"delta": {"message": inner}} onto o. */
static void put_delta_message(json_object *o, json_object *inner)
{
    json_object *d = json_object_new_object();
    jadd(d, "message", inner);
    jadd(o, "delta", d);
}

static int enc_start(struct enc *e, const struct bb_ir_str *id, struct evbuffer *out)
{
    if (e->started)
        return 0;
    e->started = true;
    json_object *o = typed("message-start");
    jadd(o, "id", id && str_has(id) ? jnew_str(id) : json_object_new_string(e->seed));
    json_object *m = json_object_new_object();
    jadd(m, "role", json_object_new_string("assistant"));
    put_delta_message(o, m);
    return enc_frame(out, "message-start", o);
}

static struct eblk *enc_find(struct enc *e, uint32_t ir)
{
    for (size_t i = 0; i < e->n_open; i++)
        if (e->open[i].ir == ir)
            return &e->open[i];
    return NULL;
}

/* Open a block: content-start / tool-call-start, or a silent entry for block kinds Cohere
 * cannot stream (images, redacted thinking...), so their deltas are skipped. */
static int enc_open(struct enc *e, uint32_t ir, enum bb_ir_block_type type,
                    const struct bb_ir_str *id, const struct bb_ir_str *name, struct evbuffer *out,
                    struct eblk **res)
{
    *res = NULL;
    if (e->n_open == ENC_MAX_OPEN)
        return 0; /* more open at once than any dialect produces: its events are skipped */
    struct eblk *b = &e->open[e->n_open++];
    b->ir = ir;
    b->type = type;
    *res = b;
    json_object *o;
    if (type == BB_IR_TEXT || type == BB_IR_THINKING) {
        b->kind = EK_CONTENT;
        b->wire = e->next_content++;
        bool text = type == BB_IR_TEXT;
        o = typed("content-start");
        jadd(o, "index", json_object_new_int64(b->wire));
        json_object *c = json_object_new_object(), *m = json_object_new_object();
        jadd(c, "type", json_object_new_string(text ? "text" : "thinking"));
        jadd(c, text ? "text" : "thinking", json_object_new_string(""));
        jadd(m, "content", c);
        put_delta_message(o, m);
        return enc_frame(out, "content-start", o);
    }
    if (type == BB_IR_TOOL_USE) {
        b->kind = EK_TOOL;
        b->wire = e->next_tool++;
        struct bb_ir_block blk = {.type = BB_IR_TOOL_USE};
        if (id)
            blk.id = *id;
        if (name)
            blk.name = *name;
        json_object *tc = tool_call_json(&blk, e->seed, b->wire);
        jadd(bb_json_get(tc, "function"), "arguments", json_object_new_string(""));
        o = typed("tool-call-start");
        jadd(o, "index", json_object_new_int64(b->wire));
        json_object *m = json_object_new_object();
        jadd(m, "tool_calls", tc);
        put_delta_message(o, m);
        return enc_frame(out, "tool-call-start", o);
    }
    b->kind = EK_SKIP;
    return 0;
}

static int enc_close(struct enc *e, struct eblk *b, struct evbuffer *out)
{
    enum ekind kind = b->kind;
    uint32_t wire = b->wire;
    *b = e->open[--e->n_open]; /* order of the table does not matter */
    if (kind == EK_SKIP)
        return 0;
    const char *t = kind == EK_CONTENT ? "content-end" : "tool-call-end";
    json_object *o = typed(t);
    jadd(o, "index", json_object_new_int64(wire));
    return enc_frame(out, t, o);
}

static int enc_close_all(struct enc *e, struct evbuffer *out)
{
    /* lowest IR index first, so ends come out in the order the blocks began */
    while (e->n_open) {
        size_t lo = 0;
        for (size_t i = 1; i < e->n_open; i++)
            if (e->open[i].ir < e->open[lo].ir)
                lo = i;
        if (enc_close(e, &e->open[lo], out) < 0)
            return -1;
    }
    return 0;
}

static int enc_citation(struct enc *e, const struct eblk *b, const struct bb_ir_str *text,
                        struct evbuffer *out)
{
    json_object *c = str_has(text) ? bb_json_parse(text->p, text->len, "citation", NULL) : NULL;
    if (!citation_is_cohere(c)) {
        json_object_put(c);
        return 0; /* another provider's citation shape: nothing a Cohere client can read */
    }
    jadd(c, "content_index", json_object_new_int64(b->wire));
    uint32_t ci = e->next_citation++;
    json_object *o = typed("citation-start");
    jadd(o, "index", json_object_new_int64(ci));
    json_object *m = json_object_new_object();
    jadd(m, "citations", c);
    put_delta_message(o, m);
    if (enc_frame(out, "citation-start", o) < 0)
        return -1;
    o = typed("citation-end");
    jadd(o, "index", json_object_new_int64(ci));
    return enc_frame(out, "citation-end", o);
}

static int enc_delta(struct enc *e, const struct bb_ir_event *ev, struct evbuffer *out)
{
    struct eblk *b = enc_find(e, ev->index);
    if (!b) {
        /* a delta with no BLOCK_START: open the block its kind implies */
        enum bb_ir_block_type t;
        switch (ev->delta) {
        case BB_IR_D_TEXT:
            t = BB_IR_TEXT;
            break;
        case BB_IR_D_THINKING:
            t = BB_IR_THINKING;
            break;
        case BB_IR_D_INPUT_JSON:
            t = BB_IR_TOOL_USE;
            break;
        default:
            return 0;
        }
        if (enc_open(e, ev->index, t, NULL, NULL, out, &b) < 0)
            return -1;
        if (!b)
            return 0;
    }
    if (b->kind == EK_SKIP)
        return 0;
    json_object *o, *m;
    const char *t;
    switch (ev->delta) {
    case BB_IR_D_TEXT:
    case BB_IR_D_THINKING: {
        if (b->kind != EK_CONTENT || !ev->text.len)
            return 0;
        t = "content-delta";
        json_object *c = json_object_new_object();
        jadd(c, ev->delta == BB_IR_D_TEXT ? "text" : "thinking", jnew_str(&ev->text));
        m = json_object_new_object();
        jadd(m, "content", c);
        break;
    }
    case BB_IR_D_INPUT_JSON: {
        if (b->kind != EK_TOOL || !ev->text.len)
            return 0;
        t = "tool-call-delta";
        json_object *fn = json_object_new_object(), *tc = json_object_new_object();
        jadd(fn, "arguments", jnew_str(&ev->text));
        jadd(tc, "function", fn);
        m = json_object_new_object();
        jadd(m, "tool_calls", tc);
        break;
    }
    case BB_IR_D_CITATION:
        return b->kind == EK_CONTENT && b->type == BB_IR_TEXT ? enc_citation(e, b, &ev->text, out)
                                                              : 0;
    case BB_IR_D_SIGNATURE:
    case BB_IR_D_REDACTED:
    default:
        return 0; /* provider-bound: no Cohere field */
    }
    o = typed(t);
    jadd(o, "index", json_object_new_int64(b->wire));
    put_delta_message(o, m);
    return enc_frame(out, t, o);
}

/* Keep the larger of each count: MESSAGE_START and MESSAGE_DELTA carry cumulative totals,
 * and a dialect may report a count in only one of them. */
static void usage_merge(struct bb_ir_usage *dst, const struct bb_ir_usage *src)
{
    if (!src->set)
        return;
    dst->set = true;
#define MAX_OF(f) dst->f = src->f > dst->f ? src->f : dst->f
    MAX_OF(input);
    MAX_OF(output);
    MAX_OF(cache_read);
    MAX_OF(cache_write);
    MAX_OF(reasoning);
#undef MAX_OF
}

static int enc_end(struct enc *e, const char *error, size_t error_len, struct evbuffer *out)
{
    if (enc_start(e, NULL, out) < 0 || enc_close_all(e, out) < 0)
        return -1;
    e->stopped = true;
    json_object *o = typed("message-end"), *d = json_object_new_object();
    jadd(d, "finish_reason", json_object_new_string(error ? "ERROR" : stop_to_cohere(e->stop)));
    if (error)
        jadd(d, "error", json_object_new_string_len(error, (int)error_len));
    if (e->usage.set)
        jadd(d, "usage", usage_write(&e->usage));
    jadd(o, "delta", d);
    return enc_frame(out, "message-end", o);
}

static int cohere_enc_event(void *enc, struct bb_arena *scratch, const struct bb_ir_event *ev,
                            struct evbuffer *out)
{
    (void)scratch;
    struct enc *e = enc;
    if (e->stopped)
        return 0;
    switch (ev->type) {
    case BB_IR_EV_MESSAGE_START:
        usage_merge(&e->usage, &ev->usage);
        return enc_start(e, &ev->id, out);
    case BB_IR_EV_BLOCK_START: {
        if (enc_start(e, NULL, out) < 0)
            return -1;
        struct eblk *b = enc_find(e, ev->index);
        if (b)
            return 0; /* started twice: the first one stands */
        return enc_open(e, ev->index, ev->block_type, &ev->id, &ev->name, out, &b);
    }
    case BB_IR_EV_BLOCK_DELTA:
        if (enc_start(e, NULL, out) < 0)
            return -1;
        return enc_delta(e, ev, out);
    case BB_IR_EV_BLOCK_STOP: {
        struct eblk *b = enc_find(e, ev->index);
        return b ? enc_close(e, b, out) : 0;
    }
    case BB_IR_EV_MESSAGE_DELTA:
        usage_merge(&e->usage, &ev->usage);
        if (ev->stop != BB_IR_STOP_UNSET)
            e->stop = ev->stop;
        return 0;
    case BB_IR_EV_MESSAGE_STOP:
        return enc_end(e, NULL, 0, out);
    case BB_IR_EV_ERROR: {
        /* Cohere's in-band failure: message-end with finish_reason ERROR and delta.error */
        usage_merge(&e->usage, &ev->usage);
        const char *m = str_has(&ev->text) ? ev->text.p : "upstream error";
        return enc_end(e, m, str_has(&ev->text) ? ev->text.len : strlen(m), out);
    }
    case BB_IR_EV_PING:
        return 0;
    }
    return 0;
}

/* ======================================================================================== */
/* errors                                                                                   */
/* ======================================================================================== */

/* Cohere errors are {"message": "...", "id"?}; an {"error": ...} wrapper (gateways in front
 * of Cohere) is read too. */
static int cohere_read_error(const char *body, size_t len, struct bb_proto_error *out)
{
    memset(out, 0, sizeof *out);
    json_object *root = bb_json_parse(body, len, "error body", NULL);
    if (!bb_json_is(root, json_type_object)) {
        json_object_put(root);
        return -1;
    }
    json_object *e = bb_json_get(root, "error");
    json_object *src = bb_json_is(e, json_type_object) ? e : root;
    if (bb_json_is(e, json_type_string))
        copy_field(out->message, sizeof out->message, e);
    else
        copy_field(out->message, sizeof out->message, bb_json_get(src, "message"));
    copy_field(out->type, sizeof out->type, bb_json_get(src, "type"));
    copy_field(out->code, sizeof out->code, bb_json_get(src, "code"));
    json_object_put(root);
    return out->message[0] || out->type[0] || out->code[0] ? 0 : -1;
}

/* A chat answer has a `message` object and a `finish_reason` (not "ERROR"); an error is
 * {"message":"…"}. */
static int cohere_answer_check(const char *body, size_t len, struct bb_proto_error *out)
{
    struct bb_jscan_field f[3] = {{.key = "message"}, {.key = "finish_reason"}, {.key = "error"}};
    if (bb_proto_scan_answer(body, len, f, 3, out) < 0)
        return -1;
    if (f[0].type == BB_JSTRING || f[2].type != BB_JNONE ||
        bb_proto_member_is(body, &f[1], "ERROR"))
        return bb_proto_inband(&bb_proto_cohere, body, len, out);
    if (f[0].type != BB_JOBJECT || f[1].type != BB_JSTRING) {
        snprintf(out->message, sizeof out->message, "no 'message' object and 'finish_reason'");
        return -1;
    }
    return 0;
}

const struct bb_proto_ops bb_proto_cohere = {
    .id = BB_PROTO_COHERE,
    .name = "cohere",
    .framing = BB_FRAMING_SSE,
    .read_request = cohere_read_request,
    .write_response = cohere_write_response,
    .stream_content_type = cohere_stream_content_type,
    .enc_size = sizeof(struct enc),
    .enc_init = cohere_enc_init,
    .enc_event = cohere_enc_event,
    .enc_finish = NULL,
    .write_request = cohere_write_request,
    .read_response = cohere_read_response,
    .dec_size = sizeof(struct dec),
    .dec_init = cohere_dec_init,
    .dec_frame = cohere_dec_frame,
    .read_error = cohere_read_error,
    .answer_check = cohere_answer_check,
};
