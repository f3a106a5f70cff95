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
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <json-c/json.h>

/* The scalar parameters (worker/params.h; docs/protocols/cohere.md "Parameters"). The ranges
 * are the API's ("p: min 0.01, max 0.99", "k: max 500", penalties 0..1, "a list of up to 5
 * strings"): a translated request is clamped into them instead of being rejected. */
static const struct bb_param param_rows[] = {
    {"max_tokens", BB_IRP_MAX_TOKENS, BB_PF_IN | BB_PF_OUT, 0, 0, ""},
    {"temperature", BB_IRP_TEMPERATURE, BB_PF_IN | BB_PF_OUT | BB_PF_CLAMP, 0, INFINITY, ""},
    {"p", BB_IRP_TOP_P, BB_PF_IN | BB_PF_OUT | BB_PF_CLAMP, 0.01, 0.99, ""},
    {"k", BB_IRP_TOP_K, BB_PF_IN | BB_PF_OUT | BB_PF_CLAMP, 0, 500, ""},
    {"seed", BB_IRP_SEED, BB_PF_IN | BB_PF_OUT, 0, 0, ""},
    {"frequency_penalty", BB_IRP_FREQUENCY_PENALTY, BB_PF_IN | BB_PF_OUT | BB_PF_CLAMP, 0, 1, ""},
    {"presence_penalty", BB_IRP_PRESENCE_PENALTY, BB_PF_IN | BB_PF_OUT | BB_PF_CLAMP, 0, 1, ""},
    {"stop_sequences", BB_IRP_STOP, BB_PF_IN | BB_PF_OUT | BB_PF_CLAMP, 0, 5, ""},
    {NULL, BB_IRP_N, 0, 0, 0, "dropped when above 1"},
};
#define N_PARAMS (sizeof param_rows / sizeof param_rows[0])

/* ======================================================================================== */
/* shared mappings                                                                          */
/* ======================================================================================== */

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
    if (bb_json_uint(bb_json_get(tok, "input_tokens"), UINT64_MAX, &in) ||
        bb_json_uint(bb_json_get(billed, "input_tokens"), UINT64_MAX, &in))
        any = true;
    if (bb_json_uint(bb_json_get(tok, "output_tokens"), UINT64_MAX, &outp) ||
        bb_json_uint(bb_json_get(billed, "output_tokens"), UINT64_MAX, &outp))
        any = true;
    if (bb_json_uint(bb_json_get(u, "cached_tokens"), UINT64_MAX, &cached))
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
    bb_json_add(billed, "input_tokens", bb_json_new_u64(in));
    bb_json_add(billed, "output_tokens", bb_json_new_u64(u->output));
    bb_json_add(tok, "input_tokens", bb_json_new_u64(in));
    bb_json_add(tok, "output_tokens", bb_json_new_u64(u->output));
    bb_json_add(o, "billed_units", billed);
    bb_json_add(o, "tokens", tok);
    if (u->cache_read)
        bb_json_add(o, "cached_tokens", bb_json_new_u64(u->cache_read));
    return o;
}

/* A citation in Cohere's shape ({start, end, text, sources, ...}); other providers' citation
 * objects (Anthropic char_location, OpenAI url_citation) cannot be expressed. */
static bool citation_is_cohere(json_object *c)
{
    return bb_json_is(c, json_type_object) &&
           (bb_json_is(bb_json_get(c, "sources"), json_type_array) ||
            (bb_json_is_number(bb_json_get(c, "start")) &&
             bb_json_is_number(bb_json_get(c, "end"))));
}

/* ======================================================================================== */
/* reading (requests, responses)                                                            */
/* ======================================================================================== */

/* Push a block of type t with the string s as its text. */
/* {type, <key>: string} at the current path: the string. */
static int rd_part_text(struct bb_rd *r, json_object *it, const char *key, json_object **out)
{
    if (bb_rd_want(r, it, key, json_type_string, false, out) < 0)
        return -1;
    return *out ? 0 : bb_rd_expect(r, key, "a string");
}

/* The part at the current path is an object with a string type. */
static const char *rd_part_type(struct bb_rd *r, json_object *it)
{
    if (bb_rd_type(r, it, NULL, json_type_object) < 0)
        return NULL;
    const char *type = bb_json_get_str(it, "type");
    if (!type)
        bb_rd_expect(r, "type", "a string");
    return type;
}

/* image_url: {url, detail?}; a base64 data: URL becomes media type + data. */
static int rd_image(struct bb_rd *r, json_object *item, struct bb_vec *bv)
{
    json_object *iu;
    if (bb_rd_want(r, item, "image_url", json_type_object, false, &iu) < 0)
        return -1;
    if (!iu)
        return bb_rd_expect(r, "image_url", "an object");
    struct bb_ir_str url = {NULL, 0};
    size_t m = bb_rd_in(r, "image_url");
    int rc = bb_rd_str(r, iu, "url", true, &url);
    bb_rd_out(r, m);
    if (rc < 0)
        return -1;
    if (bb_json_get(iu, "detail") && bb_rd_unsupported(r, "", "image_url.detail") < 0)
        return -1;
    struct bb_ir_block *b = BB_VEC_PUSH(r->a, bv, struct bb_ir_block);
    if (!b)
        return bb_rd_oom(r);
    b->type = BB_IR_IMAGE;
    struct bb_ir_str mt, data;
    if (bb_media_split_data_url(url.p, url.len, &mt, &data)) {
        b->media_type = bb_ir_strdup(r->a, mt.p, mt.len);
        b->data = bb_ir_strdup(r->a, data.p, data.len);
        return b->media_type.p && b->data.p ? 0 : bb_rd_oom(r);
    }
    b->url = url;
    return 0;
}

/* Content at the current path: a string (one text block) or an array of parts, each read by
 * part (with the path at the part). */
static int rd_parts(struct bb_rd *r, json_object *c, struct bb_vec *bv,
                    int (*part)(struct bb_rd *, json_object *, struct bb_vec *))
{
    if (bb_json_is(c, json_type_string))
        return bb_rd_push_text(r, bv, BB_IR_TEXT, c);
    if (!bb_json_is(c, json_type_array))
        return bb_rd_expect(r, NULL, "a string or an array");
    struct bb_rd_iter it = bb_rd_iter(r, c, NULL);
    json_object *el;
    while (bb_rd_next(&it, &el))
        if (part(r, el, bv) < 0)
            return -1;
    return 0;
}

/* system content: a string or [{type:"text", text}]. */
static int rd_system_part(struct bb_rd *r, json_object *it, struct bb_vec *sys)
{
    json_object *t;
    if (bb_rd_type(r, it, NULL, json_type_object) < 0)
        return -1;
    if (!bb_json_str_eq(bb_json_get(it, "type"), "text"))
        return bb_rd_expect(r, "type", "\"text\"");
    return rd_part_text(r, it, "text", &t) < 0 ? -1 : bb_rd_push_text(r, sys, BB_IR_TEXT, t);
}

/* user content: a string or [{type:"text"} | {type:"image_url"}]. */
static int rd_user_part(struct bb_rd *r, json_object *it, struct bb_vec *bv)
{
    const char *type = rd_part_type(r, it);
    json_object *t;
    if (!type)
        return -1;
    if (strcmp(type, "text") == 0)
        return rd_part_text(r, it, "text", &t) < 0 ? -1 : bb_rd_push_text(r, bv, BB_IR_TEXT, t);
    if (strcmp(type, "image_url") == 0)
        return rd_image(r, it, bv);
    return bb_rd_unsupported(r, "content.", type); /* a kind this API version added later */
}

/* Attach a message's citations to the TEXT blocks they cite: citation.content_index is the
 * Cohere content position (cmap maps it to a block of bv); without one, or when it names no
 * text block, the first text block. Plan/thinking citations have no IR place. The path is
 * the citations'. */
static int rd_citations(struct bb_rd *r, json_object *cits, struct bb_vec *bv, size_t first,
                        const long *cmap, size_t nc)
{
    if (bb_rd_type(r, cits, NULL, json_type_array) < 0)
        return -1;
    struct bb_ir_block *blocks = bv->v;
    size_t n = json_object_array_length(cits), nb = bv->n - first;
    if (!n || !nb)
        return 0;
    json_object **per = bb_arena_calloc(r->a, nb * sizeof *per);
    if (!per)
        return bb_rd_oom(r);
    long first_text = -1;
    for (size_t i = first; i < bv->n && first_text < 0; i++)
        if (blocks[i].type == BB_IR_TEXT)
            first_text = (long)i;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        json_object *c = json_object_array_get_idx(cits, i);
        size_t m = bb_rd_at(r, i);
        rc = bb_rd_type(r, c, NULL, json_type_object);
        bb_rd_out(r, m);
        if (rc < 0)
            break;
        const char *ct = bb_json_get_str(c, "type");
        if (ct && strcmp(ct, "TEXT_CONTENT") != 0) {
            rc = bb_rd_unsupported(r, "citations.", ct);
            continue;
        }
        long target = -1;
        int64_t k;
        if (bb_json_int(bb_json_get(c, "content_index"), 0, (int64_t)nc - 1, &k))
            target = cmap[k];
        if (target < 0 || blocks[target].type != BB_IR_TEXT)
            target = first_text;
        if (target < 0)
            continue;
        size_t slot = (size_t)target - first;
        if (!per[slot] && !(per[slot] = json_object_new_array())) {
            rc = bb_rd_oom(r);
            break;
        }
        json_object_array_add(per[slot], json_object_get(c));
    }
    for (size_t i = 0; i < nb; i++) {
        if (!per[i])
            continue;
        if (rc == 0)
            rc = bb_rd_text(r, per[i], &blocks[first + i].citations_json);
        json_object_put(per[i]);
    }
    return rc;
}

/* An assistant message's content: a string or text / thinking parts. cmap maps each Cohere
 * content position to its block in bv (-1 none). */
static int rd_assistant_content(struct bb_rd *r, json_object *c, struct bb_vec *bv, long **cmap,
                                size_t *nc)
{
    if (bb_json_is(c, json_type_string)) {
        *cmap = bb_arena_alloc(r->a, sizeof **cmap);
        if (!*cmap)
            return bb_rd_oom(r);
        *nc = 1;
        (*cmap)[0] = -1;
        if (!json_object_get_string_len(c)) /* "" is what tool-call turns often carry */
            return 0;
        (*cmap)[0] = (long)bv->n;
        return bb_rd_push_text(r, bv, BB_IR_TEXT, c);
    }
    if (!bb_json_is(c, json_type_array))
        return bb_rd_expect(r, NULL, "a string or an array");
    *nc = json_object_array_length(c);
    *cmap = bb_arena_alloc(r->a, (*nc ? *nc : 1) * sizeof **cmap);
    if (!*cmap)
        return bb_rd_oom(r);
    for (size_t i = 0; i < *nc; i++) {
        json_object *it = json_object_array_get_idx(c, i), *t;
        (*cmap)[i] = -1;
        size_t m = bb_rd_at(r, i);
        const char *type = rd_part_type(r, it);
        int rc = type ? 0 : -1;
        bool text = type && strcmp(type, "text") == 0;
        if (rc == 0 && (text || strcmp(type, "thinking") == 0)) {
            (*cmap)[i] = (long)bv->n;
            rc = rd_part_text(r, it, text ? "text" : "thinking", &t) < 0
                     ? -1
                     : bb_rd_push_text(r, bv, text ? BB_IR_TEXT : BB_IR_THINKING, t);
        } else if (rc == 0) {
            rc = bb_rd_unsupported(r, "content.", type);
        }
        bb_rd_out(r, m);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* One tool call at the current path → a TOOL_USE block. */
static int rd_tool_call(struct bb_rd *r, json_object *tc, struct bb_vec *bv)
{
    struct bb_ir_block b;
    memset(&b, 0, sizeof b);
    b.type = BB_IR_TOOL_USE;
    json_object *fn;
    if (bb_rd_type(r, tc, NULL, json_type_object) < 0 || bb_rd_str(r, tc, "id", true, &b.id) < 0 ||
        bb_rd_want(r, tc, "function", json_type_object, false, &fn) < 0)
        return -1;
    size_t m = bb_rd_in(r, "function");
    int rc = bb_rd_str(r, fn, "name", false, &b.name);
    json_object *args = bb_json_get(fn, "arguments");
    if (rc == 0 && bb_json_has_text(args))
        rc = bb_rd_dup(r, args, &b.input_json); /* JSON text already: kept verbatim */
    else if (rc == 0 && bb_json_is(args, json_type_object))
        rc = bb_rd_text(r, args, &b.input_json);
    else if (rc == 0 && args && !bb_json_is(args, json_type_string))
        rc = bb_rd_expect(r, "arguments", "a string");
    else if (rc == 0 && !(b.input_json = bb_ir_strdup(r->a, "{}", 2)).p)
        rc = bb_rd_oom(r);
    bb_rd_out(r, m);
    if (rc < 0)
        return -1;
    if (!b.name.p && !(b.name = bb_ir_strdup(r->a, "", 0)).p)
        return bb_rd_oom(r);
    struct bb_ir_block *dst = BB_VEC_PUSH(r->a, bv, struct bb_ir_block);
    if (!dst)
        return bb_rd_oom(r);
    *dst = b;
    return 0;
}

/* An assistant message (request history or response message), the path at the message:
 * content, then tool_plan as an unsigned THINKING block, then tool_calls as TOOL_USE blocks;
 * citations attach to the text blocks. */
static int rd_assistant(struct bb_rd *r, json_object *msg, struct bb_vec *bv)
{
    size_t first = bv->n, nc = 0;
    long *cmap = NULL;
    json_object *c = bb_json_get(msg, "content"), *plan, *calls;
    if (c) {
        size_t m = bb_rd_in(r, "content");
        int rc = rd_assistant_content(r, c, bv, &cmap, &nc);
        bb_rd_out(r, m);
        if (rc < 0)
            return -1;
    }
    if (bb_rd_want(r, msg, "tool_plan", json_type_string, false, &plan) < 0)
        return -1;
    if (bb_json_has_text(plan) && bb_rd_push_text(r, bv, BB_IR_THINKING, plan) < 0)
        return -1;
    if (bb_rd_want(r, msg, "tool_calls", json_type_array, false, &calls) < 0)
        return -1;
    struct bb_rd_iter it = bb_rd_iter(r, calls, "tool_calls");
    json_object *el;
    while (bb_rd_next(&it, &el))
        if (rd_tool_call(r, el, bv) < 0)
            return -1;
    json_object *cits = bb_json_get(msg, "citations");
    if (!cits)
        return 0;
    size_t mark = bb_rd_in(r, "citations");
    int rc = rd_citations(r, cits, bv, first, cmap, nc);
    bb_rd_out(r, mark);
    return rc;
}

/* A tool message's content part (the path at the part): text, or a document whose data (an
 * object, or a string in older clients) becomes text. */
static int rd_tool_part(struct bb_rd *r, json_object *it, struct bb_vec *parts)
{
    const char *type = rd_part_type(r, it);
    json_object *t, *doc, *data;
    if (!type)
        return -1;
    if (strcmp(type, "text") == 0)
        return rd_part_text(r, it, "text", &t) < 0 ? -1 : bb_rd_push_text(r, parts, BB_IR_TEXT, t);
    if (strcmp(type, "document") != 0)
        return bb_rd_unsupported(r, "content.", type);
    if (bb_rd_want(r, it, "document", json_type_object, false, &doc) < 0)
        return -1;
    if (!doc)
        return bb_rd_expect(r, "document", "an object");
    data = bb_json_get(doc, "data");
    if (!bb_json_is(data, json_type_object) && !bb_json_is(data, json_type_string))
        return bb_rd_expect(r, "document.data", "an object or a string");
    if (bb_json_get(doc, "id") && bb_rd_unsupported(r, "", "document.id") < 0)
        return -1;
    struct bb_ir_block *b = BB_VEC_PUSH(r->a, parts, struct bb_ir_block);
    if (!b)
        return bb_rd_oom(r);
    b->type = BB_IR_TEXT;
    return bb_json_is(data, json_type_string) ? bb_rd_dup(r, data, &b->text)
                                              : bb_rd_text(r, data, &b->text);
}

/* A role "tool" message → one TOOL_RESULT block: content is a string or parts. All parts
 * also get the flat text, for writers that take only strings. */
static int rd_tool_result(struct bb_rd *r, json_object *m, struct bb_ir_block *b)
{
    b->type = BB_IR_TOOL_RESULT;
    if (bb_rd_str(r, m, "tool_call_id", true, &b->id) < 0)
        return -1;
    json_object *c = bb_json_get(m, "content");
    if (!c)
        return bb_rd_required(r, "content");
    if (bb_json_is(c, json_type_string))
        return bb_rd_dup(r, c, &b->text);
    if (!bb_json_is(c, json_type_array))
        return bb_rd_expect(r, "content", "a string or an array");
    struct bb_vec parts = {0};
    size_t mark = bb_rd_in(r, "content");
    int rc = rd_parts(r, c, &parts, rd_tool_part);
    bb_rd_out(r, mark);
    if (rc < 0)
        return -1;
    struct bb_ir_block *pv = parts.v;
    size_t total = 0;
    for (size_t i = 0; i < parts.n; i++)
        total += pv[i].text.len + 1;
    char *flat = bb_arena_alloc(r->a, total + 1);
    if (!flat)
        return bb_rd_oom(r);
    size_t at = 0;
    for (size_t i = 0; i < parts.n; i++) {
        if (i)
            flat[at++] = '\n';
        memcpy(flat + at, pv[i].text.p, pv[i].text.len);
        at += pv[i].text.len;
    }
    flat[at] = '\0';
    b->text.p = flat;
    b->text.len = at;
    if (parts.n > 1) {
        b->content = pv;
        b->n_content = parts.n;
    }
    return 0;
}

/* Consecutive tool messages merge into one user message: that message (an index into the
 * message list, which may move as it grows) and its blocks while the run lasts. */
struct tool_run {
    bool on;
    size_t msg;
    struct bb_vec blocks;
};

/* One message (the path at it). */
static int rd_message(struct bb_rd *r, json_object *m, struct bb_vec *msgs, struct bb_vec *sys,
                      struct tool_run *run)
{
    if (bb_rd_type(r, m, NULL, json_type_object) < 0)
        return -1;
    const char *role = bb_json_get_str(m, "role");
    if (!role)
        return bb_rd_expect(r, "role", "a string");
    json_object *c = bb_json_get(m, "content");
    int rc;
    if (strcmp(role, "system") == 0) {
        /* before the first turn: the system prompt; among the turns: a SYSTEM message in its
         * place (kept by OpenAI chat and Responses lanes, folded elsewhere). A tool run goes
         * on across it. */
        if (!c)
            return bb_rd_required(r, "content");
        size_t mark = bb_rd_in(r, "content");
        if (!msgs->n) {
            rc = rd_parts(r, c, sys, rd_system_part);
        } else {
            struct bb_vec bv = {0};
            rc = rd_parts(r, c, &bv, rd_system_part);
            struct bb_ir_message *v =
                rc == 0 && bv.n ? BB_VEC_PUSH(r->a, msgs, struct bb_ir_message) : NULL;
            if (rc == 0 && bv.n && !v)
                rc = bb_rd_oom(r);
            if (v) {
                v->role = BB_IR_SYSTEM;
                v->blocks = bv.v;
                v->n_blocks = bv.n;
            }
        }
        bb_rd_out(r, mark);
        return rc;
    }
    if (strcmp(role, "tool") == 0) {
        if (!run->on) {
            if (!BB_VEC_PUSH(r->a, msgs, struct bb_ir_message))
                return bb_rd_oom(r);
            memset(run, 0, sizeof *run);
            run->on = true;
            run->msg = msgs->n - 1;
        }
        struct bb_ir_message *tm = &((struct bb_ir_message *)msgs->v)[run->msg];
        struct bb_ir_block *b = BB_VEC_PUSH(r->a, &run->blocks, struct bb_ir_block);
        if (!b)
            return bb_rd_oom(r);
        tm->role = BB_IR_USER;
        tm->blocks = run->blocks.v;
        tm->n_blocks = run->blocks.n;
        return rd_tool_result(r, m, b);
    }
    run->on = false;
    if (strcmp(role, "user") == 0) {
        if (!c)
            return bb_rd_required(r, "content");
        struct bb_vec bv = {0};
        size_t mark = bb_rd_in(r, "content");
        rc = rd_parts(r, c, &bv, rd_user_part);
        bb_rd_out(r, mark);
        if (rc < 0)
            return rc;
        struct bb_ir_message *im = BB_VEC_PUSH(r->a, msgs, struct bb_ir_message);
        if (!im)
            return bb_rd_oom(r);
        im->role = BB_IR_USER;
        im->blocks = bv.v;
        im->n_blocks = bv.n;
        return 0;
    }
    if (strcmp(role, "assistant") != 0)
        return bb_rd_expect(r, "role", "\"system\", \"user\", \"assistant\" or \"tool\"");
    struct bb_vec bv = {0};
    if (rd_assistant(r, m, &bv) < 0)
        return -1;
    struct bb_ir_message *im = BB_VEC_PUSH(r->a, msgs, struct bb_ir_message);
    if (!im)
        return bb_rd_oom(r);
    im->role = BB_IR_ASSISTANT;
    im->blocks = bv.v;
    im->n_blocks = bv.n;
    return 0;
}

static int rd_messages(struct bb_rd *r, json_object *root, struct bb_vec *sys)
{
    json_object *msgs;
    if (bb_rd_want(r, root, "messages", json_type_array, true, &msgs) < 0)
        return -1;
    struct bb_vec v = {0};
    struct tool_run run = {false, 0, {0}};
    struct bb_rd_iter it = bb_rd_iter(r, msgs, "messages");
    json_object *el;
    while (bb_rd_next(&it, &el))
        if (rd_message(r, el, &v, sys, &run) < 0)
            return -1;
    r->req->messages = v.v;
    r->req->n_messages = v.n;
    return 0;
}

/* One tool at the current path: {type:"function", function:{name, description?, parameters}}. */
static int rd_tool(struct bb_rd *r, json_object *t, struct bb_vec *tools)
{
    json_object *type, *fn, *params;
    if (bb_rd_type(r, t, NULL, json_type_object) < 0 ||
        bb_rd_want(r, t, "type", json_type_string, false, &type) < 0)
        return -1;
    if (type && !bb_json_str_eq(type, "function"))
        return bb_rd_unsupported(r, "tools.", json_object_get_string(type));
    if (bb_rd_want(r, t, "function", json_type_object, false, &fn) < 0)
        return -1;
    if (!fn)
        return bb_rd_expect(r, "function", "an object");
    struct bb_ir_tool *tool = BB_VEC_PUSH(r->a, tools, struct bb_ir_tool);
    if (!tool)
        return bb_rd_oom(r);
    size_t m = bb_rd_in(r, "function");
    int rc = bb_rd_str(r, fn, "name", true, &tool->name) < 0 ||
                     bb_rd_str(r, fn, "description", false, &tool->description) < 0 ||
                     bb_rd_want(r, fn, "parameters", json_type_object, false, &params) < 0
                 ? -1
                 : 0;
    bb_rd_out(r, m);
    if (rc == 0 && params)
        rc = bb_rd_text(r, params, &tool->parameters_json);
    return rc;
}

static int rd_response_format(struct bb_rd *r, json_object *rf)
{
    struct bb_ir_request *q = r->req;
    if (bb_rd_type(r, rf, "response_format", json_type_object) < 0)
        return -1;
    size_t mark = bb_rd_in(r, "response_format");
    const char *t = bb_json_get_str(rf, "type");
    json_object *schema = NULL;
    int rc = 0;
    if (!t)
        rc = bb_rd_expect(r, "type", "a string");
    else if (strcmp(t, "text") == 0)
        q->format = BB_IR_FMT_TEXT;
    else if (strcmp(t, "json_object") != 0)
        rc = bb_rd_expect(r, "type", "\"text\" or \"json_object\"");
    else if (bb_rd_want(r, rf, "json_schema", json_type_object, false, &schema) < 0)
        rc = -1;
    else
        q->format = schema ? BB_IR_FMT_JSON_SCHEMA : BB_IR_FMT_JSON_OBJECT;
    bb_rd_out(r, mark);
    if (rc < 0 || !schema)
        return rc;
    q->format_strict = true; /* Cohere always constrains the output to the schema */
    return bb_rd_text(r, schema, &q->format_schema_json);
}

static int rd_thinking(struct bb_rd *r, json_object *th)
{
    if (bb_rd_type(r, th, "thinking", json_type_object) < 0)
        return -1;
    size_t mark = bb_rd_in(r, "thinking");
    const char *t = bb_json_get_str(th, "type");
    int rc = 0;
    if (!t)
        rc = bb_rd_expect(r, "type", "a string");
    else if (strcmp(t, "enabled") == 0)
        r->req->reasoning = true;
    else if (strcmp(t, "disabled") != 0)
        rc = bb_rd_expect(r, "type", "\"enabled\" or \"disabled\"");
    if (rc == 0)
        rc = bb_rd_u32(r, th, "token_budget", NULL, &r->req->reasoning_budget);
    bb_rd_out(r, mark);
    return rc;
}

static int rd_request(struct bb_rd *r, json_object *root, const char *model_from_path)
{
    struct bb_ir_request *q = r->req;
    struct bb_vec sys = {0};
    static const char *const known[] = {
        "model",           "messages",    "tools",    "strict_tools",
        "response_format", "tool_choice", "thinking", "stream",
    };
    json_object_object_foreach(root, k, val)
    {
        bool is_known = bb_params_known(param_rows, N_PARAMS, k);
        for (size_t i = 0; i < sizeof known / sizeof known[0] && !is_known; i++)
            is_known = strcmp(known[i], k) == 0;
        /* documents, citation_options, safety_mode, logprobs, priority, ...: recorded, never
         * fatal. */
        if (!is_known && val && bb_rd_unsupported(r, "", k) < 0)
            return -1;
    }

    if (bb_rd_str(r, root, "model", !model_from_path, &q->model) < 0)
        return -1;
    if (model_from_path) {
        q->model = bb_ir_strdup(r->a, model_from_path, strlen(model_from_path));
        if (!q->model.p)
            return bb_rd_oom(r);
    }
    if (rd_messages(r, root, &sys) < 0)
        return -1;
    q->system = sys.v;
    q->n_system = sys.n;

    json_object *v;
    bool strict = false, has_strict = false;
    if ((v = bb_json_get(root, "tools")) && bb_rd_tools(r, v, rd_tool) < 0)
        return -1;
    if (bb_rd_bool(r, root, "strict_tools", &has_strict, &strict) < 0)
        return -1;
    for (size_t i = 0; has_strict && i < q->n_tools; i++)
        q->tools[i].strict = strict;
    if ((v = bb_json_get(root, "tool_choice"))) {
        const char *tc = bb_json_str(v);
        if (tc && strcasecmp(tc, "REQUIRED") == 0)
            q->tool_choice = BB_IR_TC_ANY;
        else if (tc && strcasecmp(tc, "NONE") == 0)
            q->tool_choice = BB_IR_TC_NONE;
        else
            return bb_rd_expect(r, "tool_choice", "\"REQUIRED\" or \"NONE\"");
    }
    if ((v = bb_json_get(root, "response_format")) && rd_response_format(r, v) < 0)
        return -1;
    if (bb_rd_bool(r, root, "stream", NULL, &q->stream) < 0)
        return -1;
    if (bb_params_read(r, root, param_rows, N_PARAMS) < 0)
        return -1;
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
        struct bb_rd r;
        bb_rd_init(&r, a, out, err);
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
    struct bb_rd r;
    bb_rd_init(&r, a, NULL, err);
    r.prefix = "cohere response";
    if (!bb_json_is(root, json_type_object)) {
        rc = bb_rd_expect(&r, NULL, "a JSON object");
    } else if (bb_json_is(msg, json_type_string)) {
        /* an error body with a 2xx status */
        rc = bb_rd_fail(&r, "error", "%s", json_object_get_string(msg));
    } else if (!bb_json_is(msg, json_type_object)) {
        rc = bb_rd_expect(&r, "message", "an object");
    } else {
        struct bb_vec bv = {0};
        rc = bb_rd_take(&r, root, "id", &out->id);
        size_t mark = bb_rd_in(&r, "message");
        if (rc == 0)
            rc = rd_assistant(&r, msg, &bv);
        bb_rd_out(&r, mark);
        out->blocks = bv.v;
        out->n_blocks = bv.n;
        out->stop = stop_from_cohere(bb_json_get_str(root, "finish_reason"));
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
    json_object *arr = bb_json_raw(raw);
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
        bb_json_add(copy, "content_index", json_object_new_int64((int64_t)ci));
        json_object_array_add(cits, copy);
    }
    if (lost)
        bb_proto_drop(m->a, m->ctx, "citations");
    json_object_put(arr);
}

/* A tool call id, or one in a neutral shape when the IR has none. */
static json_object *tool_call_id(const struct bb_ir_str *id, const char *seed, size_t i)
{
    if (bb_ir_has(id))
        return bb_json_new_str(id);
    char buf[192];
    snprintf(buf, sizeof buf, "call_%s_%zu", seed && *seed ? seed : "busbar", i);
    return json_object_new_string(buf);
}

/* {id, type:"function", function:{name, arguments}}: arguments stay JSON text. */
static json_object *tool_call_json(const struct bb_ir_block *b, const char *seed, size_t i)
{
    json_object *tc = json_object_new_object(), *fn = json_object_new_object();
    bb_json_add(tc, "id", tool_call_id(&b->id, seed, i));
    bb_json_add(tc, "type", json_object_new_string("function"));
    bb_json_add(fn, "name", bb_json_new_str(&b->name));
    bb_json_add(fn, "arguments",
                bb_ir_has(&b->input_json) ? bb_json_new_str(&b->input_json)
                                          : json_object_new_string("{}"));
    bb_json_add(tc, "function", fn);
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
            bb_json_add(it, "type", json_object_new_string("text"));
            bb_json_add(it, "text", bb_json_new_str(&x->text));
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
                bb_json_add(it, "type", json_object_new_string("thinking"));
                bb_json_add(it, "thinking", bb_json_new_str(&x->text));
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
        bb_json_add(msg, "tool_plan", json_object_new_string_len(plan, (int)plan_at));
    free(plan);
    if (json_object_array_length(calls))
        bb_json_add(msg, "tool_calls", calls);
    else
        json_object_put(calls);
    if (json_object_array_length(content))
        bb_json_add(msg, "content", content);
    else
        json_object_put(content);
    if (json_object_array_length(cits))
        bb_json_add(msg, "citations", cits);
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

static json_object *w_image(struct bb_arena *a, const struct bb_ir_block *b)
{
    struct bb_ir_str url =
        b->data.p ? bb_media_data_url(a, &b->media_type, "image/png", &b->data) : b->url;
    if (b->data.p && !url.p)
        return NULL;
    json_object *iu = json_object_new_object();
    bb_json_add(iu, "url", bb_json_new_str(&url));
    json_object *it = json_object_new_object();
    bb_json_add(it, "type", json_object_new_string("image_url"));
    bb_json_add(it, "image_url", iu);
    return it;
}

/* A TOOL_RESULT → {role:"tool", tool_call_id, content}: the flat text as a string, else the
 * nested text parts (images cannot travel in a Cohere tool message). */
static json_object *w_tool_message(struct wr *w, const struct bb_ir_block *b)
{
    json_object *m = json_object_new_object();
    bb_json_add(m, "role", json_object_new_string("tool"));
    bb_json_add(m, "tool_call_id", bb_json_new_str(&b->id));
    struct bb_ir_block tmp;
    b = bb_ir_error_result(w->a, b, &tmp); /* the error flag in the text */
    if (b->is_error)
        bb_proto_drop(w->a, w->ctx, "is_error");
    if (b->text.p || !b->n_content) {
        bb_json_add(m, "content", bb_json_new_str(&b->text));
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
        bb_json_add(it, "type", json_object_new_string("text"));
        bb_json_add(it, "text", bb_json_new_str(&c->text));
        json_object_array_add(items, it);
    }
    bb_json_add(m, "content", items);
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
            bb_json_add(it, "type", json_object_new_string("text"));
            bb_json_add(it, "text", bb_json_new_str(&b->text));
            json_object_array_add(items, it);
            if (b->citations_json.p)
                bb_proto_drop(w->a, w->ctx, "citations");
            break;
        }
        case BB_IR_IMAGE: {
            if (!b->data.p && !b->url.p)
                break;
            json_object *it = w_image(w->a, b);
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
    bb_json_add(u, "role", json_object_new_string("user"));
    bb_json_add(u, "content", w_text_content(items));
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
            bb_json_add(it, "type", json_object_new_string("text"));
            bb_json_add(it, "text", bb_json_new_str(&b->text));
            json_object_array_add(items, it);
        }
        if (json_object_array_length(items)) {
            json_object *s = json_object_new_object();
            bb_json_add(s, "role", json_object_new_string("system"));
            bb_json_add(s, "content", w_text_content(items));
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
        bb_json_add(am, "role", json_object_new_string("assistant"));
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
        if (bb_ir_has(&t->parameters_json)) {
            params = bb_json_raw_as(&t->parameters_json, json_type_object);
            if (!params) {
                json_object_put(tools);
                return bb_err_set(err, "tools[%zu].parameters: expected a JSON object", i);
            }
        } else {
            params = json_object_new_object();
            bb_json_add(params, "type", json_object_new_string("object"));
            bb_json_add(params, "properties", json_object_new_object());
        }
        json_object *fn = json_object_new_object();
        bb_json_add(fn, "name", bb_json_new_str(&t->name));
        if (t->description.p)
            bb_json_add(fn, "description", bb_json_new_str(&t->description));
        bb_json_add(fn, "parameters", params);
        json_object *o = json_object_new_object();
        bb_json_add(o, "type", json_object_new_string("function"));
        bb_json_add(o, "function", fn);
        json_object_array_add(tools, o);
        n_strict += t->strict;
        n_out++;
    }
    bb_json_add(body, "tools", tools);
    if (n_strict && n_strict == n_out)
        bb_json_add(body, "strict_tools", json_object_new_boolean(1));
    else if (n_strict)
        bb_proto_drop(w->a, w->ctx, "strict"); /* Cohere's strictness is all tools or none */
    switch (ir->tool_choice) {
    case BB_IR_TC_ANY:
    case BB_IR_TC_TOOL:
        bb_json_add(body, "tool_choice", json_object_new_string("REQUIRED"));
        break;
    case BB_IR_TC_NONE:
        bb_json_add(body, "tool_choice", json_object_new_string("NONE"));
        break;
    case BB_IR_TC_UNSET:
    case BB_IR_TC_AUTO:
        break;
    }
    return 0;
}

/* The scalars from the table, then what Cohere has no field for. */
static void w_sampling(struct wr *w, json_object *body)
{
    const struct bb_ir_request *ir = w->ir;
    bb_params_write(body, param_rows, N_PARAMS, ir, w->a, w->ctx, NULL, NULL);
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
        bb_json_add(rf, "type", json_object_new_string("text"));
        break;
    case BB_IR_FMT_JSON_OBJECT:
    case BB_IR_FMT_JSON_SCHEMA:
        rf = json_object_new_object();
        bb_json_add(rf, "type", json_object_new_string("json_object"));
        if (ir->format == BB_IR_FMT_JSON_SCHEMA && bb_ir_has(&ir->format_schema_json)) {
            json_object *s = bb_json_raw_as(&ir->format_schema_json, json_type_object);
            if (!s) {
                json_object_put(rf);
                return bb_err_set(err, "response_format.json_schema: expected a JSON object");
            }
            bb_json_add(rf, "json_schema", s);
        }
        break;
    }
    bb_json_add(body, "response_format", rf);
    return 0;
}

static int cohere_write_request(struct bb_arena *a, const struct bb_ir_request *ir,
                                const struct bb_egress_ctx *ctx, struct bb_egress_req *out,
                                struct bb_err *err)
{
    struct wr w = {a, ir, ctx};
    bb_proto_drop_hosted(a, ctx, ir, NULL); /* Cohere has no provider-run tools */
    const char *model = ctx->lane && ctx->lane->upstream_model ? ctx->lane->upstream_model
                        : ir->model.p                          ? ir->model.p
                                                               : "";
    json_object *body = json_object_new_object();
    if (!body)
        return bb_err_set(err, "cohere request: out of memory");
    bb_json_add(body, "model", json_object_new_string(model));
    json_object *msgs = w_messages(&w);
    if (!msgs) {
        json_object_put(body);
        return bb_err_set(err, "cohere request: out of memory");
    }
    bb_json_add(body, "messages", msgs);
    if (w_tools(&w, body, err) < 0 || w_format(&w, body, err) < 0) {
        json_object_put(body);
        return -1;
    }
    w_sampling(&w, body);
    if (ir->reasoning) {
        if (ctx->lane && ctx->lane->reasoning) {
            json_object *th = json_object_new_object();
            bb_json_add(th, "type", json_object_new_string("enabled"));
            if (ir->reasoning_budget)
                bb_json_add(th, "token_budget", json_object_new_int64(ir->reasoning_budget));
            bb_json_add(body, "thinking", th);
        } else {
            bb_proto_drop(a, ctx, "reasoning");
        }
    }
    bb_json_add(body, "stream", json_object_new_boolean(ctx->stream));

    snprintf(out->path, sizeof out->path, "/v2/chat");
    int rc = bb_json_append(out->body, body);
    json_object_put(body);
    if (rc < 0)
        return bb_err_set(err, "cohere request: out of memory");
    /* Accept is the proxy's: it knows whether it reads a stream. */
    rc = bb_proto_put(out->headers, "Content-Type: application/json\r\n", NULL, NULL) < 0 ||
         bb_proto_bearer(out->headers, ctx->provider ? ctx->provider->api_key : NULL) < 0;
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
    bb_json_add(o, "id",
                bb_ir_has(&r->id) ? bb_json_new_str(&r->id) : json_object_new_string(seed));
    bb_json_add(o, "finish_reason", json_object_new_string(stop_to_cohere(r->stop)));
    json_object *msg = json_object_new_object();
    bb_json_add(msg, "role", json_object_new_string("assistant"));
    struct am how = {a, NULL, AM_THINKING};
    am_write(&how, msg, r->blocks, r->n_blocks, seed);
    if (!bb_json_get(msg, "content") && !bb_json_get(msg, "tool_calls"))
        bb_json_add(msg, "content", json_object_new_array());
    bb_json_add(o, "message", msg);
    if (r->usage.set)
        bb_json_add(o, "usage", usage_write(&r->usage));
    int rc = bb_json_append(out, o);
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
 * are numbered separately, the tool plan not at all. The sequencer's key of a block is its
 * kind and its index in that sequence. */
enum dkind { DK_CONTENT, DK_PLAN, DK_TOOL };
#define DKEY(kind, wire) ((int64_t)(kind) << 40 | ((wire)&0xffffffffff))

struct dec {
    bool started, stopped;
    struct bb_dseq seq;
};

struct dx {
    struct dec *d;
    struct bb_dout o;
};

static struct bb_ir_str dx_str(struct dx *x, json_object *v)
{
    return bb_json_dup(x->o.scratch, v);
}

static int dx_emit(struct dx *x, struct bb_ir_event *ev)
{
    return bb_dout_emit(&x->o, ev);
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
    return bb_dseq_close(&x->d->seq, &x->o);
}

static int dx_open(struct dx *x, enum dkind kind, int64_t wire, enum bb_ir_block_type type,
                   json_object *id, json_object *name)
{
    struct bb_ir_str sid = {NULL, 0}, sname = {NULL, 0};
    if (type == BB_IR_TOOL_USE) {
        sid = dx_str(x, id);
        sname = dx_str(x, name);
    }
    return bb_dseq_open(&x->d->seq, &x->o, DKEY(kind, wire), type, &sid, &sname);
}

/* The open block is (kind, wire, type), or a new one is opened. */
static int dx_ensure(struct dx *x, enum dkind kind, int64_t wire, enum bb_ir_block_type type)
{
    return bb_dseq_ensure(&x->d->seq, &x->o, DKEY(kind, wire), type);
}

static int dx_delta(struct dx *x, enum bb_ir_delta kind, json_object *text)
{
    if (!bb_json_has_text(text))
        return 0;
    return bb_dseq_delta(&x->d->seq, &x->o, kind, json_object_get_string(text),
                         (size_t)json_object_get_string_len(text));
}

static int64_t dx_index(json_object *data)
{
    int64_t i = 0;
    return bb_json_int(bb_json_get(data, "index"), 0, UINT32_MAX, &i) ? i : 0;
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
    ev.text = bb_ir_strdup(x->o.scratch, msg, len);
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
            snprintf(buf, sizeof buf, "the model ended the stream with finish_reason %s",
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
    json_object *err = bb_json_get(data, "error"), *msg = bb_json_get(data, "message"),
                *type = NULL;
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
    const struct bb_dseq *sq = &x->d->seq;

    if (strcmp(type, "content-start") == 0) {
        json_object *c = bb_json_get(m, "content");
        const char *ct = bb_json_str(bb_json_get(c, "type"));
        bool thinking = ct ? strcmp(ct, "thinking") == 0
                           : bb_json_get(c, "thinking") && !bb_json_get(c, "text");
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
        if (sq->open && sq->key == DKEY(k, wi))
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
        if ((rc = dx_open(x, DK_TOOL, wi, BB_IR_TOOL_USE, bb_json_get(tc, "id"),
                          bb_json_get(fn, "name"))))
            return rc;
        return dx_delta(x, BB_IR_D_INPUT_JSON, bb_json_get(fn, "arguments"));
    }
    if (strcmp(type, "tool-call-delta") == 0) {
        if ((rc = dx_ensure(x, DK_TOOL, wi, BB_IR_TOOL_USE)))
            return rc;
        return dx_delta(
            x, BB_IR_D_INPUT_JSON,
            bb_json_get(bb_json_get(bb_json_get(m, "tool_calls"), "function"), "arguments"));
    }
    /* citation-start: onto the text block it cites while that block is open (Cohere sends
     * citations before the part's content-end); a citation of a closed part cannot be placed
     * in the IR's block order and is skipped. */
    json_object *cit = bb_json_get(m, "citations");
    if (!bb_json_is(cit, json_type_object) || !sq->open || sq->type != BB_IR_TEXT ||
        sq->key >> 40 != DK_CONTENT)
        return 0;
    json_object *ci = bb_json_get(cit, "content_index");
    if (bb_json_is_int(ci) && sq->key != DKEY(DK_CONTENT, (int64_t)json_object_get_double(ci)))
        return 0;
    const char *ct = bb_json_get_str(cit, "type");
    if (ct && strcmp(ct, "TEXT_CONTENT") != 0)
        return 0;
    struct bb_ir_str js = bb_json_text(x->o.scratch, cit);
    return js.p ? bb_dseq_delta(&x->d->seq, &x->o, BB_IR_D_CITATION, js.p, js.len) : -1;
}

static void cohere_dec_init(void *dec)
{
    memset(dec, 0, sizeof(struct dec));
}

static int cohere_dec_frame(void *dec, struct bb_arena *scratch, const struct bb_frame *f,
                            bb_ir_event_cb cb, void *arg)
{
    struct dx x = {dec, {cb, arg, scratch}};
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
    snprintf(event, sizeof event, "%.*s", (int)(f->event_len < 63 ? f->event_len : 63),
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

/* Open blocks (bb_eseq) are numbered in Cohere's two sequences by hand: the block's flags
 * say which one (or none: a kind Cohere cannot stream, whose deltas are skipped). */
enum ekind { EK_CONTENT, EK_TOOL, EK_SKIP };

struct enc {
    char seed[128]; /* request id: response and tool call ids */
    bool started, stopped;
    uint32_t next_content, next_tool, next_citation;
    struct bb_eseq seq;
    enum bb_ir_stop stop;
    struct bb_ir_usage usage;
};

static void cohere_enc_init(void *enc, const struct bb_ingress_ctx *ctx)
{
    struct enc *e = enc;
    memset(e, 0, sizeof *e);
    snprintf(e->seed, sizeof e->seed, "%s", ctx && ctx->request_id ? ctx->request_id : "busbar");
}

/* `event: type` + `data: json`, consuming o. A "[DONE]" inside a string would end the
 * official SDK's stream reader early, so its bracket is written as an escape. */
static int enc_frame(struct evbuffer *out, const char *type, json_object *o)
{
    size_t n = 0;
    const char *s = bb_json_out(o, &n);
    int rc = s ? bb_proto_put(out, "event: ", type, "\ndata: ") : -1;
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

/* {"delta": {"message": inner}} onto o. */
static void put_delta_message(json_object *o, json_object *inner)
{
    json_object *d = json_object_new_object();
    bb_json_add(d, "message", inner);
    bb_json_add(o, "delta", d);
}

static int enc_start(struct enc *e, const struct bb_ir_str *id, struct evbuffer *out)
{
    if (e->started)
        return 0;
    e->started = true;
    json_object *o = bb_json_typed("message-start");
    bb_json_add(o, "id",
                id && bb_ir_has(id) ? bb_json_new_str(id) : json_object_new_string(e->seed));
    json_object *m = json_object_new_object();
    bb_json_add(m, "role", json_object_new_string("assistant"));
    put_delta_message(o, m);
    return enc_frame(out, "message-start", o);
}

/* Open a block: content-start / tool-call-start, or a silent entry for block kinds Cohere
 * cannot stream (images, redacted thinking...), so their deltas are skipped. */
static int enc_open(struct enc *e, uint32_t ir, enum bb_ir_block_type type,
                    const struct bb_ir_str *id, const struct bb_ir_str *name, struct evbuffer *out,
                    struct bb_eseq_block **res)
{
    /* more open at once than any dialect produces: its events are skipped */
    struct bb_eseq_block *b = bb_eseq_open(&e->seq, ir, type, false);
    *res = b;
    if (!b)
        return 0;
    json_object *o;
    if (type == BB_IR_TEXT || type == BB_IR_THINKING) {
        b->flags = EK_CONTENT;
        b->wire = e->next_content++;
        bool text = type == BB_IR_TEXT;
        o = bb_json_typed("content-start");
        bb_json_add(o, "index", json_object_new_int64(b->wire));
        json_object *c = json_object_new_object(), *m = json_object_new_object();
        bb_json_add(c, "type", json_object_new_string(text ? "text" : "thinking"));
        bb_json_add(c, text ? "text" : "thinking", json_object_new_string(""));
        bb_json_add(m, "content", c);
        put_delta_message(o, m);
        return enc_frame(out, "content-start", o);
    }
    if (type == BB_IR_TOOL_USE) {
        b->flags = EK_TOOL;
        b->wire = e->next_tool++;
        struct bb_ir_block blk = {.type = BB_IR_TOOL_USE};
        if (id)
            blk.id = *id;
        if (name)
            blk.name = *name;
        json_object *tc = tool_call_json(&blk, e->seed, b->wire);
        bb_json_add(bb_json_get(tc, "function"), "arguments", json_object_new_string(""));
        o = bb_json_typed("tool-call-start");
        bb_json_add(o, "index", json_object_new_int64(b->wire));
        json_object *m = json_object_new_object();
        bb_json_add(m, "tool_calls", tc);
        put_delta_message(o, m);
        return enc_frame(out, "tool-call-start", o);
    }
    b->flags = EK_SKIP;
    return 0;
}

static int enc_close(struct enc *e, struct bb_eseq_block *b, struct evbuffer *out)
{
    enum ekind kind = (enum ekind)b->flags;
    uint32_t wire = b->wire;
    bb_eseq_remove(&e->seq, b);
    if (kind == EK_SKIP)
        return 0;
    const char *t = kind == EK_CONTENT ? "content-end" : "tool-call-end";
    json_object *o = bb_json_typed(t);
    bb_json_add(o, "index", json_object_new_int64(wire));
    return enc_frame(out, t, o);
}

static int enc_close_all(struct enc *e, struct evbuffer *out)
{
    /* lowest IR index first, so ends come out in the order the blocks began */
    while (e->seq.n_open) {
        size_t lo = 0;
        for (size_t i = 1; i < e->seq.n_open; i++)
            if (e->seq.open[i].ir < e->seq.open[lo].ir)
                lo = i;
        if (enc_close(e, &e->seq.open[lo], out) < 0)
            return -1;
    }
    return 0;
}

static int enc_citation(struct enc *e, const struct bb_eseq_block *b, const struct bb_ir_str *text,
                        struct evbuffer *out)
{
    json_object *c = bb_json_raw(text);
    if (!citation_is_cohere(c)) {
        json_object_put(c);
        return 0; /* another provider's citation shape: nothing a Cohere client can read */
    }
    bb_json_add(c, "content_index", json_object_new_int64(b->wire));
    uint32_t ci = e->next_citation++;
    json_object *o = bb_json_typed("citation-start");
    bb_json_add(o, "index", json_object_new_int64(ci));
    json_object *m = json_object_new_object();
    bb_json_add(m, "citations", c);
    put_delta_message(o, m);
    if (enc_frame(out, "citation-start", o) < 0)
        return -1;
    o = bb_json_typed("citation-end");
    bb_json_add(o, "index", json_object_new_int64(ci));
    return enc_frame(out, "citation-end", o);
}

static int enc_delta(struct enc *e, const struct bb_ir_event *ev, struct evbuffer *out)
{
    struct bb_eseq_block *b = bb_eseq_find(&e->seq, ev->index);
    if (!b) {
        /* a delta with no BLOCK_START: open the block its kind implies */
        if (ev->delta != BB_IR_D_TEXT && ev->delta != BB_IR_D_THINKING &&
            ev->delta != BB_IR_D_INPUT_JSON)
            return 0;
        if (enc_open(e, ev->index, bb_ir_delta_block(ev->delta), NULL, NULL, out, &b) < 0)
            return -1;
        if (!b)
            return 0;
    }
    enum ekind kind = (enum ekind)b->flags;
    if (kind == EK_SKIP)
        return 0;
    json_object *o, *m;
    const char *t;
    switch (ev->delta) {
    case BB_IR_D_TEXT:
    case BB_IR_D_THINKING: {
        if (kind != EK_CONTENT || !ev->text.len)
            return 0;
        t = "content-delta";
        json_object *c = json_object_new_object();
        bb_json_add(c, ev->delta == BB_IR_D_TEXT ? "text" : "thinking", bb_json_new_str(&ev->text));
        m = json_object_new_object();
        bb_json_add(m, "content", c);
        break;
    }
    case BB_IR_D_INPUT_JSON: {
        if (kind != EK_TOOL || !ev->text.len)
            return 0;
        t = "tool-call-delta";
        json_object *fn = json_object_new_object(), *tc = json_object_new_object();
        bb_json_add(fn, "arguments", bb_json_new_str(&ev->text));
        bb_json_add(tc, "function", fn);
        m = json_object_new_object();
        bb_json_add(m, "tool_calls", tc);
        break;
    }
    case BB_IR_D_CITATION:
        return kind == EK_CONTENT && b->type == BB_IR_TEXT ? enc_citation(e, b, &ev->text, out) : 0;
    case BB_IR_D_SIGNATURE:
    case BB_IR_D_REDACTED:
    default:
        return 0; /* provider-bound: no Cohere field */
    }
    o = bb_json_typed(t);
    bb_json_add(o, "index", json_object_new_int64(b->wire));
    put_delta_message(o, m);
    return enc_frame(out, t, o);
}

static int enc_end(struct enc *e, const char *error, size_t error_len, struct evbuffer *out)
{
    if (enc_start(e, NULL, out) < 0 || enc_close_all(e, out) < 0)
        return -1;
    e->stopped = true;
    json_object *o = bb_json_typed("message-end"), *d = json_object_new_object();
    bb_json_add(d, "finish_reason",
                json_object_new_string(error ? "ERROR" : stop_to_cohere(e->stop)));
    if (error)
        bb_json_add(d, "error", json_object_new_string_len(error, (int)error_len));
    if (e->usage.set)
        bb_json_add(d, "usage", usage_write(&e->usage));
    bb_json_add(o, "delta", d);
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
        bb_ir_usage_max(&e->usage, &ev->usage);
        return enc_start(e, &ev->id, out);
    case BB_IR_EV_BLOCK_START: {
        if (enc_start(e, NULL, out) < 0)
            return -1;
        struct bb_eseq_block *b = bb_eseq_find(&e->seq, ev->index);
        if (b)
            return 0; /* started twice: the first one stands */
        return enc_open(e, ev->index, ev->block_type, &ev->id, &ev->name, out, &b);
    }
    case BB_IR_EV_BLOCK_DELTA:
        if (enc_start(e, NULL, out) < 0)
            return -1;
        return enc_delta(e, ev, out);
    case BB_IR_EV_BLOCK_STOP: {
        struct bb_eseq_block *b = bb_eseq_find(&e->seq, ev->index);
        return b ? enc_close(e, b, out) : 0;
    }
    case BB_IR_EV_MESSAGE_DELTA:
        bb_ir_usage_max(&e->usage, &ev->usage);
        if (ev->stop != BB_IR_STOP_UNSET)
            e->stop = ev->stop;
        return 0;
    case BB_IR_EV_MESSAGE_STOP:
        return enc_end(e, NULL, 0, out);
    case BB_IR_EV_ERROR: {
        /* Cohere's in-band failure: message-end with finish_reason ERROR and delta.error */
        bb_ir_usage_max(&e->usage, &ev->usage);
        const char *m = bb_ir_has(&ev->text) ? ev->text.p : "upstream error";
        return enc_end(e, m, bb_ir_has(&ev->text) ? ev->text.len : strlen(m), out);
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
        bb_json_copy(out->message, sizeof out->message, e);
    else
        bb_json_copy(out->message, sizeof out->message, bb_json_get(src, "message"));
    bb_json_copy(out->type, sizeof out->type, bb_json_get(src, "type"));
    bb_json_copy(out->code, sizeof out->code, bb_json_get(src, "code"));
    json_object_put(root);
    return out->message[0] || out->type[0] || out->code[0] ? 0 : -1;
}

/* A chat answer has a `message` object and a `finish_reason` (not "ERROR"); an error is
 * {"message":"…"}. */
/* usage_read over the bytes of a usage object (no DOM): tokens first, billed_units next. */
static void cohere_usage_scan(const char *u, size_t n, struct bb_ir_usage *out)
{
    struct bb_jscan_field f[2] = {{.key = "tokens"}, {.key = "billed_units"}};
    struct bb_err err;
    uint64_t in = 0, outp = 0, cached = 0;
    bool any = false;
    memset(out, 0, sizeof *out);
    bb_jscan_object(u, n, f, 2, 64, &err);
    struct bb_jscan_field tok = f[0], billed = f[1];
    if (bb_jscan_member_u64(u + tok.off, tok.len, "input_tokens", &in) ||
        bb_jscan_member_u64(u + billed.off, billed.len, "input_tokens", &in))
        any = true;
    if (bb_jscan_member_u64(u + tok.off, tok.len, "output_tokens", &outp) ||
        bb_jscan_member_u64(u + billed.off, billed.len, "output_tokens", &outp))
        any = true;
    if (bb_jscan_member_u64(u, n, "cached_tokens", &cached))
        any = true;
    out->set = any;
    out->input = in > cached ? in - cached : 0;
    out->cache_read = cached;
    out->output = outp;
}

static int cohere_answer_check(const char *body, size_t len, struct bb_ir_usage *usage,
                               struct bb_proto_error *out)
{
    struct bb_jscan_field f[4] = {
        {.key = "message"}, {.key = "finish_reason"}, {.key = "error"}, {.key = "usage"}};
    if (bb_proto_scan_answer(body, len, f, 4, out) < 0)
        return -1;
    if (f[0].type == BB_JSTRING || f[2].type != BB_JNONE ||
        bb_proto_member_is(body, &f[1], "ERROR"))
        return bb_proto_inband(&bb_proto_cohere, body, len, out);
    if (f[0].type != BB_JOBJECT || f[1].type != BB_JSTRING) {
        snprintf(out->message, sizeof out->message, "no 'message' object and 'finish_reason'");
        return -1;
    }
    if (usage && f[3].type == BB_JOBJECT)
        cohere_usage_scan(body + f[3].off, f[3].len, usage);
    return 0;
}

/* frame_scan: content, tool-plan and tool-call events are meaningful; message-end is the stop
 * and the end (with the usage), or an in-band error when its finish_reason is ERROR/TIMEOUT. */
static int cohere_frame_scan_1(const struct bb_frame *f, struct bb_frame_state *st, bool stopped,
                               struct bb_frame_info *out)
{
    (void)stopped;
    (void)st;
    memset(out, 0, sizeof *out);
    if (!f->data_len)
        return 0;
    size_t n = f->data_len;
    while (n && isspace((unsigned char)f->data[n - 1]))
        n--;
    if (n == 6 && memcmp(f->data, "[DONE]", 6) == 0) {
        out->content = out->stop = out->end = true;
        return 0;
    }
    struct bb_jscan_field t[4] = {
        {.key = "type"}, {.key = "delta"}, {.key = "error"}, {.key = "message"}};
    struct bb_err err;
    if (bb_jscan_object(f->data, f->data_len, t, 4, 128, &err) < 0)
        return -1;
    char type[48];
    bool ev_error = f->event_len == 5 && memcmp(f->event, "error", 5) == 0;
    bb_proto_frame_type(f, t[0].type == BB_JSTRING || !ev_error ? &t[0] : NULL, type, sizeof type);
    if (t[0].type != BB_JSTRING && ev_error)
        type[0] = '\0';
    static const char *const content[] = {"content-start",   "content-delta",   "tool-plan-delta",
                                          "tool-call-start", "tool-call-delta", "citation-start"};
    for (size_t i = 0; i < sizeof content / sizeof content[0]; i++)
        if (strcmp(type, content[i]) == 0) {
            out->content = true;
            return 0;
        }
    if (strcmp(type, "message-end") == 0) {
        const char *d = f->data + t[1].off;
        struct bb_jscan_field fr, er, u;
        bb_jscan_member(d, t[1].len, "finish_reason", &fr);
        bb_jscan_member(d, t[1].len, "error", &er);
        bb_jscan_member(d, t[1].len, "usage", &u);
        if (bb_proto_member_is(d, &fr, "ERROR") || bb_proto_member_is(d, &fr, "TIMEOUT") ||
            bb_proto_nonempty_str(&er)) {
            char msg[160] = "the model ended the stream with an error";
            if (bb_proto_nonempty_str(&er))
                bb_jscan_unquote(d + er.off, er.len, msg, sizeof msg);
            out->error = true;
            snprintf(out->error_msg, sizeof out->error_msg, "%s", msg);
            return 0;
        }
        if (u.type == BB_JOBJECT)
            cohere_usage_scan(d + u.off, u.len, &out->usage);
        out->content = out->stop = out->end = true;
        return 0;
    }
    if (strcmp(type, "message-start") == 0 || strcmp(type, "content-end") == 0 ||
        strcmp(type, "tool-call-end") == 0 || strcmp(type, "debug") == 0 ||
        strcmp(type, "citation-end") == 0)
        return 0;
    /* unknown: an error when it says so */
    if (t[2].type == BB_JOBJECT || bb_proto_nonempty_str(&t[2]) || t[3].type == BB_JSTRING ||
        ev_error)
        return bb_proto_frame_error(&bb_proto_cohere, f->data, f->data_len,
                                    "the provider sent an error event", out);
    return 0;
}

static int cohere_frame_scan(const struct bb_frame *f, struct bb_frame_state *st,
                             struct bb_frame_info *out)
{
    bool stopped = st->stopped;
    int rc = cohere_frame_scan_1(f, st, stopped, out);
    st->stopped = st->stopped || out->stop;
    return rc;
}

static bool cohere_claims_path(const char *path)
{
    return bb_path_starts(path, "/v2/");
}

static const char *const affinity_members[] = {"messages", NULL};

const struct bb_proto_ops bb_proto_cohere = {
    .id = BB_PROTO_COHERE,
    .name = "cohere",
    .genai_system = "cohere",
    .framing = BB_FRAMING_SSE,
    .params = param_rows,
    .n_params = N_PARAMS,
    .errors = {.body = bb_proto_error_message_body},
    .route = "/v2/chat",
    .claims_path = cohere_claims_path,
    .path = "/v2/chat",
    .auth_headers = bb_proto_bearer,
    .probe_path = "/v1/models",
    .tool_id_prefix = "",
    .stream_member = "stream",
    .affinity_members = affinity_members,
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
    .frame_scan = cohere_frame_scan,
};
