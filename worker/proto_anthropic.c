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
#include "worker/amsg.h"
#include "worker/media.h"
#include "worker/params.h"
#include "worker/proto.h"
#include "worker/rd.h"
#include "worker/seq.h"
#include "common/http_parse.h"
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

#define ANTHROPIC_VERSION "2023-06-01"
#define THINKING_MIN_BUDGET 1024u /* the API rejects a smaller budget_tokens */
#define FALLBACK_MAX_TOKENS 4096u /* when a lane has no default_max_tokens */
#define BODY_FAMILY BB_AMSG_FAMILY

/* The scalar parameters (worker/params.h; docs/protocols/anthropic.md "Parameters"). */
const struct bb_param bb_amsg_params[BB_AMSG_N_PARAMS] = {
    {"max_tokens", BB_IRP_MAX_TOKENS, BB_PF_IN | BB_PF_OUT, 0, 0,
     "required by the API: the lane's `default_max_tokens`, else the model's `max_output` in "
     "etc/prices.yaml, else 4096, when the request has none; raised above a thinking budget"},
    {"stop_sequences", BB_IRP_STOP, BB_PF_IN | BB_PF_OUT, 0, 0,
     "empty and whitespace-only sequences are dropped (the API refuses them)"},
    {"temperature", BB_IRP_TEMPERATURE, BB_PF_IN | BB_PF_OUT | BB_PF_CLAMP, 0, 1,
     "dropped with thinking unless 1"},
    {"top_p", BB_IRP_TOP_P, BB_PF_IN | BB_PF_OUT, 0, 0,
     "dropped beside temperature, and with thinking below 0.95"},
    {"top_k", BB_IRP_TOP_K, BB_PF_IN | BB_PF_OUT, 0, 0, "dropped with thinking"},
    {NULL, BB_IRP_SEED, 0, 0, 0, ""},
    {NULL, BB_IRP_N, 0, 0, 0, "dropped when above 1"},
    {NULL, BB_IRP_PRESENCE_PENALTY, 0, 0, 0, ""},
    {NULL, BB_IRP_FREQUENCY_PENALTY, 0, 0, 0, ""},
};
#define param_rows bb_amsg_params
#define N_PARAMS ((size_t)BB_AMSG_N_PARAMS)

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
        u->input = bb_json_count(o, "input_tokens");
    if (bb_json_is_number(bb_json_get(o, "output_tokens")))
        u->output = bb_json_count(o, "output_tokens");
    if (bb_json_is_number(bb_json_get(o, "cache_creation_input_tokens")))
        u->cache_write = bb_json_count(o, "cache_creation_input_tokens");
    if (bb_json_is_number(bb_json_get(o, "cache_read_input_tokens")))
        u->cache_read = bb_json_count(o, "cache_read_input_tokens");
    json_object *d = bb_json_get(o, "output_tokens_details");
    if (bb_json_is_number(bb_json_get(d, "thinking_tokens")))
        u->reasoning = bb_json_count(d, "thinking_tokens");
}

static json_object *usage_to_wire(const struct bb_ir_usage *u)
{
    json_object *o = json_object_new_object();
    bb_json_add(o, "input_tokens", bb_json_new_u64(u->input));
    bb_json_add(o, "cache_creation_input_tokens", bb_json_new_u64(u->cache_write));
    bb_json_add(o, "cache_read_input_tokens", bb_json_new_u64(u->cache_read));
    bb_json_add(o, "output_tokens", bb_json_new_u64(u->output));
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

enum where { IN_MESSAGE, IN_TOOL_RESULT, IN_SYSTEM };

/* cache_control: {"type":"ephemeral","ttl"?}. The IR keeps only "ephemeral, default TTL". */
static int rd_cache(struct bb_rd *r, json_object *o, bool *out)
{
    json_object *cc;
    if (bb_rd_want(r, o, "cache_control", json_type_object, false, &cc) < 0)
        return -1;
    if (!cc)
        return 0;
    *out = true;
    if (bb_json_get(cc, "ttl"))
        return bb_rd_unsupported(r, "", "cache_control.ttl");
    return 0;
}

/* A text document as the IR carries documents: base64 text/plain data. */
static int text_document(struct bb_rd *r, const char *text, size_t n, struct bb_ir_block *b)
{
    b->data = bb_media_b64_encode(r->a, text, n);
    b->media_type = bb_ir_strdup(r->a, "text/plain", 10);
    return b->data.p && b->media_type.p ? 0 : bb_rd_oom(r);
}

/* An image/document source into b. *skip when the source kind has no IR form. */
static int rd_source(struct bb_rd *r, json_object *o, struct bb_ir_block *b, bool *skip)
{
    const char *kind = b->type == BB_IR_IMAGE ? "image" : "document";
    json_object *src;
    if (bb_rd_want(r, o, "source", json_type_object, false, &src) < 0)
        return -1;
    if (!src)
        return bb_rd_expect(r, "source", "an object");
    size_t m = bb_rd_in(r, "source");
    int rc = 0;
    json_object *t;
    if (bb_rd_want(r, src, "type", json_type_string, false, &t) < 0 ||
        (!t && bb_rd_expect(r, "type", "a string") < 0)) {
        rc = -1;
    } else {
        const char *st = json_object_get_string(t);
        if (strcmp(st, "base64") == 0) {
            rc = bb_rd_str(r, src, "data", true, &b->data) < 0 ||
                         bb_rd_str(r, src, "media_type", true, &b->media_type) < 0
                     ? -1
                     : 0;
        } else if (strcmp(st, "url") == 0) {
            rc = bb_rd_str(r, src, "url", true, &b->url);
        } else if (b->type == BB_IR_DOCUMENT && strcmp(st, "text") == 0) {
            /* PlainTextSource: the IR carries document bytes base64-encoded, like every other
             * protocol's inline files, so a text document crosses as text/plain data. */
            struct bb_ir_str text = {NULL, 0};
            rc = bb_rd_str(r, src, "data", true, &text) < 0 ? -1
                                                            : text_document(r, text.p, text.len, b);
        } else if (b->type == BB_IR_DOCUMENT && strcmp(st, "content") == 0) {
            json_object *c = bb_json_get(src, "content");
            if (bb_json_is(c, json_type_string)) {
                rc = text_document(r, json_object_get_string(c),
                                   (size_t)json_object_get_string_len(c), b);
            } else {
                *skip = true;
                rc = bb_rd_unsupported(r, kind, ".source.content");
            }
        } else {
            /* file (Files API ids) and future kinds cannot cross to another provider. */
            *skip = true;
            char name[96];
            snprintf(name, sizeof name, ".source.%s", st);
            rc = bb_rd_unsupported(r, kind, name);
        }
    }
    bb_rd_out(r, m);
    return rc;
}

static int rd_content(struct bb_rd *r, json_object *c, enum where w, struct bb_vec *bv);

/* All-text tool results also get the flat text, for writers that take only strings. */
static int flatten_text(struct bb_rd *r, struct bb_ir_block *b)
{
    size_t total = 0;
    bool all_text = b->n_content > 0;
    for (size_t i = 0; i < b->n_content; i++) {
        all_text = all_text && b->content[i].type == BB_IR_TEXT;
        total += b->content[i].text.len + 1;
    }
    if (!all_text)
        return 0;
    char *flat = bb_arena_alloc(r->a, total + 1);
    if (!flat)
        return bb_rd_oom(r);
    size_t at = 0;
    for (size_t i = 0; i < b->n_content; i++) {
        if (i)
            flat[at++] = '\n';
        memcpy(flat + at, b->content[i].text.p, b->content[i].text.len);
        at += b->content[i].text.len;
    }
    flat[at] = '\0';
    b->text.p = flat;
    b->text.len = at;
    return 0;
}

/* One content block (the path is the block's). */
static int rd_block(struct bb_rd *r, json_object *o, enum where w, struct bb_vec *bv)
{
    if (bb_rd_type(r, o, NULL, json_type_object) < 0)
        return -1;
    json_object *t;
    if (bb_rd_want(r, o, "type", json_type_string, false, &t) < 0)
        return -1;
    if (!t)
        return bb_rd_expect(r, "type", "a string");
    const char *type = json_object_get_string(t);
    struct bb_ir_block b;
    memset(&b, 0, sizeof b);

    if (w == IN_SYSTEM && strcmp(type, "text") != 0)
        return bb_rd_expect(r, "type", "\"text\"");

    if (strcmp(type, "text") == 0) {
        b.type = BB_IR_TEXT;
        json_object *cit;
        if (bb_rd_str(r, o, "text", true, &b.text) < 0 || rd_cache(r, o, &b.cache_control) < 0 ||
            bb_rd_want(r, o, "citations", json_type_array, false, &cit) < 0 ||
            (cit && bb_rd_text(r, cit, &b.citations_json) < 0))
            return -1;
    } else if (strcmp(type, "image") == 0 || strcmp(type, "document") == 0) {
        bool skip = false;
        b.type = type[0] == 'i' ? BB_IR_IMAGE : BB_IR_DOCUMENT;
        if (rd_source(r, o, &b, &skip) < 0 || rd_cache(r, o, &b.cache_control) < 0)
            return -1;
        if (b.type == BB_IR_DOCUMENT) {
            static const char *const extra[] = {"title", "context", "citations"};
            for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++)
                if (bb_json_get(o, extra[i]) && bb_rd_unsupported(r, "document.", extra[i]) < 0)
                    return -1;
        }
        if (skip)
            return 0;
    } else if (strcmp(type, "thinking") == 0 && w == IN_MESSAGE) {
        b.type = BB_IR_THINKING;
        if (bb_rd_str(r, o, "thinking", true, &b.text) < 0 ||
            bb_rd_str(r, o, "signature", false, &b.signature) < 0)
            return -1;
    } else if (strcmp(type, "redacted_thinking") == 0 && w == IN_MESSAGE) {
        b.type = BB_IR_REDACTED_THINKING;
        if (bb_rd_str(r, o, "data", true, &b.signature) < 0)
            return -1;
    } else if (strcmp(type, "tool_use") == 0 && w == IN_MESSAGE) {
        b.type = BB_IR_TOOL_USE;
        json_object *in;
        if (bb_rd_str(r, o, "id", true, &b.id) < 0 || bb_rd_str(r, o, "name", true, &b.name) < 0 ||
            rd_cache(r, o, &b.cache_control) < 0 ||
            bb_rd_want(r, o, "input", json_type_object, false, &in) < 0)
            return -1;
        b.input_json = in ? bb_json_text(r->a, in) : bb_ir_strdup(r->a, "{}", 2);
        if (!b.input_json.p)
            return bb_rd_oom(r);
    } else if (strcmp(type, "tool_result") == 0 && w == IN_MESSAGE) {
        b.type = BB_IR_TOOL_RESULT;
        if (bb_rd_str(r, o, "tool_use_id", true, &b.id) < 0 ||
            bb_rd_bool(r, o, "is_error", NULL, &b.is_error) < 0 ||
            rd_cache(r, o, &b.cache_control) < 0)
            return -1;
        json_object *c = bb_json_get(o, "content");
        if (bb_json_is(c, json_type_string)) {
            if (bb_rd_dup(r, c, &b.text) < 0)
                return -1;
        } else if (c) {
            struct bb_vec nested = {0};
            size_t m = bb_rd_in(r, "content");
            int rc = rd_content(r, c, IN_TOOL_RESULT, &nested);
            bb_rd_out(r, m);
            if (rc)
                return -1;
            b.content = nested.v;
            b.n_content = nested.n;
            if (flatten_text(r, &b) < 0)
                return -1;
        }
    } else {
        /* search_result, server_tool_use, *_tool_result, container_upload, tool_reference, and
         * blocks misplaced for their position: nothing in the IR carries them. */
        return bb_rd_unsupported(r, "", type);
    }
    struct bb_ir_block *dst = BB_VEC_PUSH(r->a, bv, struct bb_ir_block);
    if (!dst)
        return bb_rd_oom(r);
    *dst = b;
    return 0;
}

/* content (the path is the content's): a string (one text block) or an array of blocks. */
static int rd_content(struct bb_rd *r, json_object *c, enum where w, struct bb_vec *bv)
{
    if (bb_json_is(c, json_type_string)) {
        struct bb_ir_block *b = BB_VEC_PUSH(r->a, bv, struct bb_ir_block);
        if (!b)
            return bb_rd_oom(r);
        b->type = BB_IR_TEXT;
        return bb_rd_dup(r, c, &b->text);
    }
    if (!bb_json_is(c, json_type_array))
        return bb_rd_expect(r, NULL, "a string or an array");
    struct bb_rd_iter it = bb_rd_iter(r, c, NULL);
    json_object *el;
    while (bb_rd_next(&it, &el))
        if (rd_block(r, el, w, bv) < 0)
            return -1;
    return 0;
}

static int rd_message(struct bb_rd *r, json_object *m, struct bb_vec *msgs, struct bb_vec *sys)
{
    json_object *role, *content = bb_json_get(m, "content");
    if (bb_rd_type(r, m, NULL, json_type_object) < 0 ||
        bb_rd_want(r, m, "role", json_type_string, false, &role) < 0)
        return -1;
    if (!role)
        return bb_rd_expect(r, "role", "a string");
    if (!content)
        return bb_rd_required(r, "content");
    const char *rs = json_object_get_string(role);
    size_t mark = bb_rd_in(r, "content");
    int rc;
    if (strcmp(rs, "system") == 0 && !msgs->n) {
        /* before any turn: part of the system prompt */
        rc = rd_content(r, content, IN_SYSTEM, sys);
    } else if (strcmp(rs, "system") == 0) {
        /* a system turn among the turns stays there (writers that cannot fold it) */
        struct bb_vec bv = {0};
        struct bb_ir_message *v = BB_VEC_PUSH(r->a, msgs, struct bb_ir_message);
        rc = v ? rd_content(r, content, IN_SYSTEM, &bv) : bb_rd_oom(r);
        if (v) {
            v->role = BB_IR_SYSTEM;
            v->blocks = bv.v;
            v->n_blocks = bv.n;
        }
    } else if (strcmp(rs, "user") != 0 && strcmp(rs, "assistant") != 0) {
        bb_rd_out(r, mark);
        return bb_rd_expect(r, "role", "\"user\", \"assistant\" or \"system\"");
    } else {
        struct bb_vec bv = {0};
        struct bb_ir_message *v = BB_VEC_PUSH(r->a, msgs, struct bb_ir_message);
        rc = v ? rd_content(r, content, IN_MESSAGE, &bv) : bb_rd_oom(r);
        if (v) {
            v->role = rs[0] == 'u' ? BB_IR_USER : BB_IR_ASSISTANT;
            v->blocks = bv.v;
            v->n_blocks = bv.n;
        }
    }
    bb_rd_out(r, mark);
    return rc;
}

static int rd_messages(struct bb_rd *r, json_object *root, struct bb_vec *sys)
{
    json_object *msgs;
    if (bb_rd_want(r, root, "messages", json_type_array, true, &msgs) < 0)
        return -1;
    struct bb_vec v = {0};
    struct bb_rd_iter it = bb_rd_iter(r, msgs, "messages");
    json_object *el;
    while (bb_rd_next(&it, &el))
        if (rd_message(r, el, &v, sys) < 0)
            return -1;
    r->req->messages = v.v;
    r->req->n_messages = v.n;
    return 0;
}

static int rd_tool(struct bb_rd *r, json_object *t, struct bb_vec *tools)
{
    json_object *type, *schema;
    if (bb_rd_type(r, t, NULL, json_type_object) < 0 ||
        bb_rd_want(r, t, "type", json_type_string, false, &type) < 0)
        return -1;
    if (type && strncmp(json_object_get_string(type), "web_search_", 11) == 0) {
        /* the server-run web search: other providers' own where they have one */
        return bb_rd_hosted(r, "web_search", t);
    }
    if (type && !bb_json_str_eq(type, "custom")) {
        /* Anthropic-defined tools (bash_20250124, text_editor_…, ...): the provider defines
         * them; another provider has no equivalent. */
        return bb_rd_unsupported(r, "tools.", json_object_get_string(type));
    }
    struct bb_ir_tool *tool = BB_VEC_PUSH(r->a, tools, struct bb_ir_tool);
    if (!tool)
        return bb_rd_oom(r);
    if (bb_rd_str(r, t, "name", true, &tool->name) < 0 ||
        bb_rd_str(r, t, "description", false, &tool->description) < 0 ||
        bb_rd_bool(r, t, "strict", NULL, &tool->strict) < 0 ||
        bb_rd_want(r, t, "input_schema", json_type_object, false, &schema) < 0)
        return -1;
    if (!schema)
        return bb_rd_expect(r, "input_schema", "an object");
    if (bb_rd_text(r, schema, &tool->parameters_json) < 0 ||
        rd_cache(r, t, &tool->cache_control) < 0)
        return -1;
    if (bb_rd_bool(r, t, "defer_loading", NULL, &tool->defer_loading) < 0)
        return -1;
    static const char *const extra[] = {"input_examples", "allowed_callers",
                                        "eager_input_streaming"};
    for (size_t j = 0; j < sizeof extra / sizeof extra[0]; j++)
        if (bb_json_get(t, extra[j]) && bb_rd_unsupported(r, "tools.", extra[j]) < 0)
            return -1;
    return 0;
}

static int rd_tool_choice(struct bb_rd *r, json_object *tc)
{
    struct bb_ir_request *q = r->req;
    if (bb_rd_type(r, tc, "tool_choice", json_type_object) < 0)
        return -1;
    size_t mark = bb_rd_in(r, "tool_choice");
    json_object *t;
    int rc = bb_rd_want(r, tc, "type", json_type_string, false, &t);
    const char *s = t ? json_object_get_string(t) : "";
    bool disable = false, has = false;
    if (rc == 0 && !t) {
        rc = bb_rd_expect(r, "type", "a string");
    } else if (rc == 0 && strcmp(s, "auto") == 0) {
        q->tool_choice = BB_IR_TC_AUTO;
    } else if (rc == 0 && strcmp(s, "any") == 0) {
        q->tool_choice = BB_IR_TC_ANY;
    } else if (rc == 0 && strcmp(s, "none") == 0) {
        q->tool_choice = BB_IR_TC_NONE;
    } else if (rc == 0 && strcmp(s, "tool") == 0) {
        q->tool_choice = BB_IR_TC_TOOL;
        rc = bb_rd_str(r, tc, "name", true, &q->tool_choice_name);
    } else if (rc == 0) {
        rc = bb_rd_expect(r, "type", "\"auto\", \"any\", \"tool\" or \"none\"");
    }
    if (rc == 0)
        rc = bb_rd_bool(r, tc, "disable_parallel_tool_use", &has, &disable);
    bb_rd_out(r, mark);
    if (rc == 0 && has) {
        q->has_parallel_tool_calls = true;
        q->parallel_tool_calls = !disable;
    }
    return rc;
}

/* Keep member name (v) of the body, or of its object parent, for a lane of the same body
 * format (ir->extras). name is copied: json-c owns the key. */
static int rd_extra(struct bb_rd *r, const char *parent, const char *name, json_object *v)
{
    const char *j =
        json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    const char *n = bb_arena_strndup(r->a, name, strlen(name));
    if (!n || bb_ir_extra(r->a, r->req, BODY_FAMILY, parent, n, j, strlen(j)) < 0)
        return bb_rd_oom(r);
    return 0;
}

static int rd_thinking(struct bb_rd *r, json_object *th)
{
    struct bb_ir_request *q = r->req;
    if (bb_rd_type(r, th, "thinking", json_type_object) < 0)
        return -1;
    size_t mark = bb_rd_in(r, "thinking");
    json_object *t;
    int rc = bb_rd_want(r, th, "type", json_type_string, false, &t);
    const char *s = t ? json_object_get_string(t) : "";
    if (rc == 0 && !t) {
        rc = bb_rd_expect(r, "type", "a string");
    } else if (rc == 0 && strcmp(s, "enabled") == 0) {
        q->reasoning = true;
        rc = !bb_json_get(th, "budget_tokens")
                 ? bb_rd_required(r, "budget_tokens")
                 : bb_rd_u32(r, th, "budget_tokens", NULL, &q->reasoning_budget);
    } else if (rc == 0 && (strcmp(s, "adaptive") == 0 || strcmp(s, "between_tools") == 0)) {
        q->reasoning = true; /* the model picks the budget */
    } else if (rc == 0 && strcmp(s, "disabled") == 0) {
        q->reasoning = false;
    } else if (rc == 0) {
        rc =
            bb_rd_expect(r, "type", "\"enabled\", \"disabled\", \"adaptive\" or \"between_tools\"");
    }
    bb_rd_out(r, mark);
    json_object *display = bb_json_get(th, "display");
    if (rc == 0 && display)
        return rd_extra(r, "thinking", "display", display);
    return rc;
}

/* output_config.format: JSON-schema structured output. */
static int rd_output_format(struct bb_rd *r, json_object *v)
{
    struct bb_ir_request *q = r->req;
    json_object *schema;
    if (bb_rd_type(r, v, "format", json_type_object) < 0)
        return -1;
    size_t mark = bb_rd_in(r, "format");
    int rc = 0;
    if (!bb_json_str_eq(bb_json_get(v, "type"), "json_schema"))
        rc = bb_rd_expect(r, "type", "\"json_schema\"");
    else if (bb_rd_want(r, v, "schema", json_type_object, false, &schema) < 0)
        rc = -1;
    else if (!schema)
        rc = bb_rd_expect(r, "schema", "an object");
    bb_rd_out(r, mark);
    if (rc)
        return -1;
    q->format = BB_IR_FMT_JSON_SCHEMA;
    q->format_strict = true; /* Anthropic's structured output is always strict */
    return bb_rd_text(r, schema, &q->format_schema_json);
}

/* output_config: effort (the reasoning ask) and format. */
static int rd_output_config(struct bb_rd *r, json_object *oc)
{
    struct bb_ir_request *q = r->req;
    if (bb_rd_type(r, oc, "output_config", json_type_object) < 0)
        return -1;
    size_t mark = bb_rd_in(r, "output_config");
    int rc = 0;
    json_object_object_foreach(oc, k, v)
    {
        if (!v || rc)
            continue;
        if (strcmp(k, "effort") == 0) {
            const char *e = bb_json_str(v);
            if (!e)
                rc = bb_rd_expect(r, "effort", "a string");
            else if (strcmp(e, "low") == 0)
                q->reasoning_effort = BB_IR_EFFORT_LOW;
            else if (strcmp(e, "medium") == 0)
                q->reasoning_effort = BB_IR_EFFORT_MEDIUM;
            else if (strcmp(e, "high") == 0 || strcmp(e, "xhigh") == 0 || strcmp(e, "max") == 0)
                q->reasoning_effort = BB_IR_EFFORT_HIGH;
            else
                rc = bb_rd_expect(r, "effort",
                                  "\"low\", \"medium\", \"high\", \"xhigh\" or \"max\"");
        } else if (strcmp(k, "format") == 0) {
            rc = rd_output_format(r, v);
        } else {
            rc = bb_rd_unsupported(r, "output_config.", k);
        }
    }
    bb_rd_out(r, mark);
    return rc;
}

static int rd_metadata(struct bb_rd *r, json_object *md)
{
    if (bb_rd_type(r, md, "metadata", json_type_object) < 0)
        return -1;
    size_t mark = bb_rd_in(r, "metadata");
    int rc = 0;
    json_object_object_foreach(md, k, v)
    {
        (void)v;
        if (rc)
            break;
        if (strcmp(k, "user_id") == 0)
            rc = bb_rd_str(r, md, "user_id", false, &r->req->user);
        else
            rc = bb_rd_unsupported(r, "metadata.", k);
    }
    bb_rd_out(r, mark);
    return rc;
}

static int rd_system(struct bb_rd *r, json_object *s, struct bb_vec *sys)
{
    if (!bb_json_is(s, json_type_string) && !bb_json_is(s, json_type_array))
        return bb_rd_expect(r, "system", "a string or an array");
    size_t mark = bb_rd_in(r, "system");
    int rc = rd_content(r, s, IN_SYSTEM, sys);
    bb_rd_out(r, mark);
    return rc;
}

static int rd_request(struct bb_rd *r, json_object *root, const char *model_from_path,
                      const struct bb_amsg_carrier *c)
{
    struct bb_ir_request *q = r->req;
    struct bb_vec sys = {0};
    static const char *const known[] = {
        "model",    "messages",    "system", "metadata",      "stream",
        "thinking", "tool_choice", "tools",  "output_config",
    };
    q->extras_family = BODY_FAMILY; /* what only a Messages body carries (bb_ir_extra) */
    json_object_object_foreach(root, k, val)
    {
        bool is_known = bb_params_known(param_rows, N_PARAMS, k);
        for (size_t i = 0; i < sizeof known / sizeof known[0] && !is_known; i++)
            is_known = strcmp(known[i], k) == 0;
        /* the carrier's version describes the body itself: nothing to carry */
        if (c->version && strcmp(k, "anthropic_version") == 0)
            is_known = true;
        /* model and stream in a body whose path names them: never valid there, dropped */
        if (c->model_in_path && (strcmp(k, "model") == 0 || strcmp(k, "stream") == 0)) {
            if (bb_rd_unsupported(r, "", k) < 0)
                return -1;
            continue;
        }
        /* context_management, cache_control (automatic caching), container, service_tier,
         * anthropic_beta (InvokeModel), ...: kept for a lane of the same body format, named
         * dropped on any other (bb_proto_write_request); never fatal */
        if (!is_known && val && rd_extra(r, NULL, k, val) < 0)
            return -1;
    }

    if (bb_rd_str(r, root, "model", !model_from_path, &q->model) < 0)
        return -1;
    if (model_from_path) {
        q->model = bb_ir_strdup(r->a, model_from_path, strlen(model_from_path));
        if (!q->model.p)
            return bb_rd_oom(r);
    }
    if (bb_params_read(r, root, param_rows, N_PARAMS) < 0)
        return -1;
    json_object *v;
    if ((v = bb_json_get(root, "system")) && rd_system(r, v, &sys) < 0)
        return -1;
    if (rd_messages(r, root, &sys) < 0)
        return -1;
    q->system = sys.v;
    q->n_system = sys.n;
    if ((v = bb_json_get(root, "metadata")) && rd_metadata(r, v) < 0)
        return -1;
    if (!c->model_in_path && bb_rd_bool(r, root, "stream", NULL, &q->stream) < 0)
        return -1;
    if ((v = bb_json_get(root, "thinking")) && rd_thinking(r, v) < 0)
        return -1;
    if ((v = bb_json_get(root, "tools")) && bb_rd_tools(r, v, rd_tool) < 0)
        return -1;
    if ((v = bb_json_get(root, "tool_choice")) && rd_tool_choice(r, v) < 0)
        return -1;
    if ((v = bb_json_get(root, "output_config")) && rd_output_config(r, v) < 0)
        return -1;
    return 0;
}

int bb_amsg_read_request(struct bb_arena *a, const char *body, size_t len,
                         const char *model_from_path, const struct bb_amsg_carrier *c,
                         struct bb_ir_request *out, struct bb_err *err)
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
        rc = rd_request(&r, root, model_from_path, c);
    }
    json_object_put(root);
    return rc;
}

static const struct bb_amsg_carrier own = {false, NULL};

static int anthropic_read_request(struct bb_arena *a, const char *body, size_t len,
                                  const char *model_from_path, struct bb_ir_request *out,
                                  struct bb_err *err)
{
    return bb_amsg_read_request(a, body, len, model_from_path, &own, out, err);
}

/* ======================================================================================== */
/* response blocks (a Message's content, also the stream's content_block_start)             */
/* ======================================================================================== */

/* The tool_use id, or one in Anthropic's shape when the IR has none. */
static json_object *tool_id(const struct bb_ir_str *id, const char *seed, size_t index)
{
    if (bb_ir_has(id))
        return bb_json_new_str(id);
    char buf[192];
    snprintf(buf, sizeof buf, "toolu_%s_%zu", seed && *seed ? seed : "busbar", index);
    return json_object_new_string(buf);
}

/* A tool input as an object: the IR carries JSON text, the wire needs an object. Invalid or
 * non-object text becomes {} (*bad is set so a writer can report it). */
static json_object *input_object(const struct bb_ir_str *s, bool *bad)
{
    json_object *in = bb_json_raw_as(s, json_type_object);
    if (!in && bb_ir_has(s) && bad)
        *bad = true;
    return in ? in : json_object_new_object();
}

/* A response content block; NULL for IR blocks a Message cannot hold (image, document,
 * tool_result). */
static json_object *out_block(const struct bb_ir_block *b, const char *seed, size_t index)
{
    json_object *o = json_object_new_object();
    switch (b->type) {
    case BB_IR_TEXT: {
        bb_json_add(o, "type", json_object_new_string("text"));
        bb_json_add(o, "text", bb_json_new_str(&b->text));
        json_object *c = bb_json_raw_as(&b->citations_json, json_type_array);
        if (c)
            bb_json_add(o, "citations", c);
        return o;
    }
    case BB_IR_THINKING:
        bb_json_add(o, "type", json_object_new_string("thinking"));
        bb_json_add(o, "thinking", bb_json_new_str(&b->text));
        bb_json_add(o, "signature", bb_json_new_str(&b->signature));
        return o;
    case BB_IR_REDACTED_THINKING:
        bb_json_add(o, "type", json_object_new_string("redacted_thinking"));
        bb_json_add(o, "data", bb_json_new_str(&b->signature));
        return o;
    case BB_IR_TOOL_USE:
        bb_json_add(o, "type", json_object_new_string("tool_use"));
        bb_json_add(o, "id", tool_id(&b->id, seed, index));
        bb_json_add(o, "name", bb_json_new_str(&b->name));
        bb_json_add(o, "input", input_object(&b->input_json, NULL));
        return o;
    default:
        json_object_put(o);
        return NULL;
    }
}

/* A response block from the wire (the path is the block's); *skip for server-tool and other
 * blocks with no IR form. */
static int rd_out_block(struct bb_rd *r, json_object *o, struct bb_ir_block *b, bool *skip)
{
    memset(b, 0, sizeof *b);
    const char *t = bb_json_get_str(o, "type");
    if (!t)
        return bb_rd_expect(r, "type", "a string");
    if (strcmp(t, "text") == 0) {
        b->type = BB_IR_TEXT;
        json_object *c = bb_json_get(o, "citations");
        if (bb_json_is(c, json_type_array) && json_object_array_length(c) > 0 &&
            bb_rd_text(r, c, &b->citations_json) < 0)
            return -1;
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
    if (b->type != BB_IR_TOOL_USE &&
        bb_rd_take(r, o, b->type == BB_IR_THINKING ? "thinking" : "text", &b->text) < 0)
        return -1;
    if (bb_rd_take(r, o, b->type == BB_IR_REDACTED_THINKING ? "data" : "signature", &b->signature) <
        0)
        return -1;
    if (b->type == BB_IR_TOOL_USE) {
        json_object *in = bb_json_get(o, "input");
        if (bb_rd_take(r, o, "id", &b->id) < 0 || bb_rd_take(r, o, "name", &b->name) < 0)
            return -1;
        b->input_json = in ? bb_json_text(r->a, in) : bb_ir_strdup(r->a, "{}", 2);
        if (!b->input_json.p)
            return bb_rd_oom(r);
    }
    return 0;
}

/* ======================================================================================== */
/* egress: write the upstream request                                                       */
/* ======================================================================================== */

struct wr {
    struct bb_arena *a;
    struct bb_err *err;
    const struct bb_egress_ctx *ctx;
};

static json_object *cache_ephemeral(void)
{
    json_object *o = json_object_new_object();
    bb_json_add(o, "type", json_object_new_string("ephemeral"));
    return o;
}

static void add_cache(json_object *o, bool cc)
{
    if (cc)
        bb_json_add(o, "cache_control", cache_ephemeral());
}

/* The API rejects empty text blocks, so those are skipped (NULL). */
static json_object *wr_text(struct wr *w, const struct bb_ir_block *b)
{
    if (!bb_ir_has(&b->text))
        return NULL;
    json_object *o = json_object_new_object();
    bb_json_add(o, "type", json_object_new_string("text"));
    bb_json_add(o, "text", bb_json_new_str(&b->text));
    add_cache(o, b->cache_control);
    /* Citations in a request must reference documents of this request in Anthropic's own
     * shapes; an IR citation may come from any provider, so it is not resent. */
    if (b->citations_json.p)
        bb_proto_drop(w->a, w->ctx, "citations");
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
            bb_proto_drop(w->a, w->ctx, what);
            return NULL;
        }
        mt = bb_ir_strdup(w->a, b->url.p + 5, (size_t)(semi - b->url.p - 5));
        data.p = (char *)comma + 1;
        data.len = b->url.len - (size_t)(comma + 1 - b->url.p);
    }
    if (data.p) {
        const char *m = bb_ir_has(&mt) ? mt.p : doc ? "application/pdf" : sniff_image(&data);
        if (!doc && image_type_ok(m)) {
            bb_json_add(src, "type", json_object_new_string("base64"));
            bb_json_add(src, "media_type", json_object_new_string(m));
            bb_json_add(src, "data", bb_json_new_str(&data));
        } else if (doc && strcmp(m, "application/pdf") == 0) {
            bb_json_add(src, "type", json_object_new_string("base64"));
            bb_json_add(src, "media_type", json_object_new_string(m));
            bb_json_add(src, "data", bb_json_new_str(&data));
        } else if (doc && strcmp(m, "text/plain") == 0) {
            struct bb_ir_str text;
            if (bb_media_b64_decode(w->a, &data, &text) < 0) {
                json_object_put(src);
                bb_proto_drop(w->a, w->ctx, what);
                return NULL;
            }
            bb_json_add(src, "type", json_object_new_string("text"));
            bb_json_add(src, "media_type", json_object_new_string("text/plain"));
            bb_json_add(src, "data", bb_json_new_str(&text));
        } else {
            json_object_put(src);
            bb_proto_drop(w->a, w->ctx, what);
            return NULL;
        }
    } else if (bb_ir_has(&b->url)) {
        bb_json_add(src, "type", json_object_new_string("url"));
        bb_json_add(src, "url", bb_json_new_str(&b->url));
    } else {
        json_object_put(src);
        bb_proto_drop(w->a, w->ctx, what);
        return NULL;
    }
    json_object *o = json_object_new_object();
    bb_json_add(o, "type", json_object_new_string(doc ? "document" : "image"));
    bb_json_add(o, "source", src);
    add_cache(o, b->cache_control);
    return o;
}

static json_object *wr_tool_use(struct wr *w, const struct bb_ir_block *b)
{
    bool bad = false;
    json_object *o = json_object_new_object();
    bb_json_add(o, "type", json_object_new_string("tool_use"));
    bb_json_add(o, "id", bb_json_new_str(&b->id));
    bb_json_add(o, "name", bb_json_new_str(&b->name));
    bb_json_add(o, "input", input_object(&b->input_json, &bad));
    add_cache(o, b->cache_control);
    if (bad) /* arguments that are not a JSON object cannot be an Anthropic input */
        bb_proto_drop(w->a, w->ctx, "tool_input");
    return o;
}

static json_object *wr_tool_result(struct wr *w, const struct bb_ir_block *b)
{
    json_object *o = json_object_new_object();
    bb_json_add(o, "type", json_object_new_string("tool_result"));
    bb_json_add(o, "tool_use_id", bb_json_new_str(&b->id));
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
        bb_json_add(o, "content", arr);
    else if (bb_ir_has(&b->text))
        bb_json_add(o, "content", bb_json_new_str(&b->text));
    if (b->is_error)
        bb_json_add(o, "is_error", json_object_new_boolean(1));
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
        if (role != BB_IR_ASSISTANT || !bb_ir_has(&b->signature)) {
            bb_proto_drop(w->a, w->ctx, "thinking");
            return NULL;
        }
        {
            json_object *o = json_object_new_object();
            bb_json_add(o, "type", json_object_new_string("thinking"));
            bb_json_add(o, "thinking", bb_json_new_str(&b->text));
            bb_json_add(o, "signature", bb_json_new_str(&b->signature));
            return o;
        }
    case BB_IR_REDACTED_THINKING:
        if (role != BB_IR_ASSISTANT || !bb_ir_has(&b->signature)) {
            bb_proto_drop(w->a, w->ctx, "thinking");
            return NULL;
        }
        {
            json_object *o = json_object_new_object();
            bb_json_add(o, "type", json_object_new_string("redacted_thinking"));
            bb_json_add(o, "data", bb_json_new_str(&b->signature));
            return o;
        }
    case BB_IR_TOOL_USE:
        if (role != BB_IR_ASSISTANT) {
            bb_proto_drop(w->a, w->ctx, "tool_calls");
            return NULL;
        }
        return wr_tool_use(w, b);
    case BB_IR_TOOL_RESULT:
        if (role != BB_IR_USER) {
            bb_proto_drop(w->a, w->ctx, "tool_results");
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
        bb_json_add(m, "role",
                    json_object_new_string(t->role == BB_IR_USER ? "user" : "assistant"));
        bb_json_add(m, "content", content);
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
            bb_proto_drop(w->a, w->ctx, "name");
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
            bb_proto_drop(w->a, w->ctx, "system");
            continue;
        }
        if (!bb_ir_has(&b->text))
            continue;
        n++;
        one = b;
        cached = cached || b->cache_control;
    }
    if (!n)
        return NULL;
    if (n == 1 && !cached)
        return bb_json_new_str(&one->text);
    json_object *arr = json_object_new_array();
    for (size_t i = 0; i < ir->n_system; i++) {
        const struct bb_ir_block *b = &ir->system[i];
        if (b->type != BB_IR_TEXT || !bb_ir_has(&b->text))
            continue;
        json_object *o = json_object_new_object();
        bb_json_add(o, "type", json_object_new_string("text"));
        bb_json_add(o, "text", bb_json_new_str(&b->text));
        add_cache(o, b->cache_control);
        json_object_array_add(arr, o);
    }
    return arr;
}

static int wr_tools(struct wr *w, const struct bb_ir_request *ir, json_object *body)
{
    json_object *arr = json_object_new_array();
    bb_json_add(body, "tools", arr);
    for (size_t i = 0; i < ir->n_tools; i++) {
        const struct bb_ir_tool *t = &ir->tools[i];
        json_object *schema = NULL;
        if (bb_ir_has(&t->parameters_json)) {
            schema = bb_json_raw_as(&t->parameters_json, json_type_object);
            if (!schema)
                return bb_err_set(w->err, "tools[%zu].parameters: expected a JSON object", i);
        } else {
            schema = json_object_new_object();
        }
        if (!bb_json_get(schema, "type")) /* input_schema.type must be "object" */
            bb_json_add(schema, "type", json_object_new_string("object"));
        json_object *o = json_object_new_object();
        bb_json_add(o, "name", bb_json_new_str(&t->name));
        if (bb_ir_has(&t->description))
            bb_json_add(o, "description", bb_json_new_str(&t->description));
        bb_json_add(o, "input_schema", schema);
        if (t->strict) /* strict tool use is not accepted by every Claude model */
            bb_proto_drop(w->a, w->ctx, "strict");
        add_cache(o, t->cache_control);
        if (t->defer_loading && ir->extras_family && !strcmp(ir->extras_family, BODY_FAMILY))
            bb_json_add(o, "defer_loading", json_object_new_boolean(1));
        json_object_array_add(arr, o);
    }
    for (size_t i = 0; i < ir->n_hosted; i++) { /* the server-run web search */
        const struct bb_ir_hosted *h = &ir->hosted[i];
        if (!h->kind.p || strcmp(h->kind.p, "web_search") != 0)
            continue;
        json_object *o = bb_json_raw_as(&h->raw_json, json_type_object);
        const char *ty = bb_json_get_str(o, "type");
        if (!ty || strncmp(ty, "web_search_", 11) != 0) { /* another protocol's definition */
            json_object_put(o);
            o = json_object_new_object();
            bb_json_add(o, "type", json_object_new_string("web_search_20250305"));
            bb_json_add(o, "name", json_object_new_string("web_search"));
        }
        json_object_array_add(arr, o);
        break;
    }
    bb_proto_drop_hosted(w->a, w->ctx, ir, "web_search");
    return 0;
}

/* tool_choice only with tools (the API rejects it alone); forced choices are reported when
 * there is nothing to force. */
static bool wr_tool_choice(struct wr *w, const struct bb_ir_request *ir, json_object *body)
{
    if (!ir->n_tools) {
        if (ir->tool_choice == BB_IR_TC_ANY || ir->tool_choice == BB_IR_TC_TOOL)
            bb_proto_drop(w->a, w->ctx, "tool_choice");
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
    bb_json_add(tc, "type", json_object_new_string(type));
    if (ir->tool_choice == BB_IR_TC_TOOL)
        bb_json_add(tc, "name", bb_json_new_str(&ir->tool_choice_name));
    if (ir->has_parallel_tool_calls && ir->tool_choice != BB_IR_TC_NONE)
        bb_json_add(tc, "disable_parallel_tool_use",
                    json_object_new_boolean(!ir->parallel_tool_calls));
    bb_json_add(body, "tool_choice", tc);
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

struct sampling {
    struct wr *w;
    const struct bb_ir_request *ir;
    bool thinking;
};

/* The Messages API's rules on the sampling parameters: the range is 0..1 (temperature is
 * clamped); thinking allows only temperature 1, top_p >= 0.95 and no top_k; current models
 * reject temperature together with top_p, so temperature wins. Stop sequences must not be
 * blank. */
static bool sampling_hook(void *arg, const struct bb_param *p, struct bb_param_value *v)
{
    struct sampling *sm = arg;
    struct wr *w = sm->w;
    const struct bb_ir_request *ir = sm->ir;
    switch (p->field) {
    case BB_IRP_TEMPERATURE: {
        double t = v->num < 0 ? 0 : v->num > 1 ? 1 : v->num;
        if (sm->thinking && t != 1) {
            bb_proto_drop(w->a, w->ctx, "temperature");
            return false;
        }
        return true;
    }
    case BB_IRP_TOP_P: {
        bool with_temp = ir->has_temperature && !(sm->thinking && ir->temperature < 1);
        if (with_temp || (sm->thinking && v->num < 0.95)) {
            bb_proto_drop(w->a, w->ctx, "top_p");
            return false;
        }
        return true;
    }
    case BB_IRP_TOP_K:
        if (sm->thinking) {
            bb_proto_drop(w->a, w->ctx, "top_k");
            return false;
        }
        return true;
    case BB_IRP_STOP: {
        struct bb_ir_str *ok = bb_arena_alloc(w->a, v->n_strs * sizeof *ok);
        size_t n = 0;
        for (size_t i = 0; ok && i < v->n_strs; i++) {
            if (v->strs[i].p && stop_ok(&v->strs[i]))
                ok[n++] = v->strs[i];
            else
                bb_proto_drop(w->a, w->ctx, "stop");
        }
        v->strs = ok;
        v->n_strs = n;
        return n > 0;
    }
    default:
        return true;
    }
}

/* The members an Anthropic-family reader kept (ir->extras), where the writer wrote none of its
 * own: top-level, or into an object the writer wrote (thinking.display only when thinking
 * went out; otherwise named dropped). The Messages API takes anthropic_beta as a header
 * (anthropic_write_request). */
static void wr_extras(struct wr *w, const struct bb_ir_request *ir, const struct bb_amsg_carrier *c,
                      json_object *body)
{
    if (!ir->extras_family || strcmp(ir->extras_family, BODY_FAMILY) != 0)
        return;
    for (size_t i = 0; i < ir->n_extras; i++) {
        const struct bb_ir_extra *e = &ir->extras[i];
        if (!e->parent && !c->version && strcmp(e->name, "anthropic_beta") == 0)
            continue;
        json_object *parent = e->parent ? bb_json_get(body, e->parent) : body;
        if (!bb_json_is(parent, json_type_object)) {
            bb_proto_drop(w->a, w->ctx, bb_ir_field_name(w->a, e->dotted));
            continue;
        }
        json_object *v = bb_json_get(parent, e->name) ? NULL : json_tokener_parse(e->json.p);
        if (v)
            json_object_object_add(parent, e->name, v);
    }
}

/* anthropic-beta: the flags an InvokeModel body carried as anthropic_beta (an array of strings,
 * or one string), for a Messages API lane. */
static int wr_beta_header(const struct bb_ir_request *ir, struct evbuffer *out)
{
    if (!ir->extras_family || strcmp(ir->extras_family, BODY_FAMILY) != 0)
        return 0;
    for (size_t i = 0; i < ir->n_extras; i++) {
        if (ir->extras[i].parent || strcmp(ir->extras[i].name, "anthropic_beta") != 0)
            continue;
        json_object *v = json_tokener_parse(ir->extras[i].json.p);
        bool arr = bb_json_is(v, json_type_array);
        size_t n = arr ? json_object_array_length(v) : 1;
        int rc = 0, k = 0;
        for (size_t j = 0; j < n && rc >= 0; j++) {
            json_object *f = arr ? json_object_array_get_idx(v, j) : v;
            const char *s = bb_json_is(f, json_type_string) ? json_object_get_string(f) : NULL;
            /* a flag is a valid field value of its own: nothing that could end the header
             * line or join two */
            if (!s || !*s || strlen(s) > 128 || strchr(s, ',') ||
                !bb_http_field_value_ok(s, strlen(s)))
                continue;
            rc = bb_proto_put(out, k++ ? "," : "anthropic-beta: ", s, NULL);
        }
        if (k && rc >= 0)
            rc = evbuffer_add(out, "\r\n", 2);
        json_object_put(v);
        return rc < 0 ? -1 : 0;
    }
    return 0;
}

static int wr_body(struct wr *w, const struct bb_ir_request *ir, const struct bb_egress_ctx *ctx,
                   const struct bb_amsg_carrier *c, json_object *body)
{
    const struct bb_lane *lane = ctx->lane;
    const char *model = lane && lane->upstream_model ? lane->upstream_model : ir->model.p;
    uint32_t max_tokens = ir->has_max_tokens                 ? ir->max_tokens
                          : lane && lane->default_max_tokens ? lane->default_max_tokens
                                                             : FALLBACK_MAX_TOKENS;
    if (!c->model_in_path)
        bb_json_add(body, "model", bb_json_new_cstr(model));
    if (c->version)
        bb_json_add(body, "anthropic_version", json_object_new_string(c->version));

    json_object *sys = wr_system(w, ir);
    if (sys)
        bb_json_add(body, "system", sys);
    json_object *msgs = wr_messages(w, ir);
    bb_json_add(body, "messages", msgs);

    bool forced = false;
    if (ir->n_tools || ir->n_hosted) {
        if (wr_tools(w, ir, body) < 0)
            return -1;
    }
    forced = wr_tool_choice(w, ir, body);
    if (ir->has_parallel_tool_calls && !ir->n_tools && !ir->parallel_tool_calls)
        bb_proto_drop(w->a, w->ctx, "parallel_tool_calls");

    /* Thinking: asked for, allowed on this lane, and compatible with the rest. */
    bool asks = ir->reasoning || ir->reasoning_budget ||
                (ir->reasoning_effort != BB_IR_EFFORT_UNSET &&
                 ir->reasoning_effort != BB_IR_EFFORT_MINIMAL);
    bool thinking = asks && lane && lane->reasoning && !forced && history_allows_thinking(msgs);
    if (asks && !thinking)
        bb_proto_drop(w->a, w->ctx, "reasoning");
    if (thinking) {
        uint32_t budget =
            ir->reasoning_budget ? ir->reasoning_budget : effort_budget(ir->reasoning_effort);
        if (budget < THINKING_MIN_BUDGET)
            budget = THINKING_MIN_BUDGET;
        if (max_tokens <= budget) /* budget_tokens must be below max_tokens: keep answer room */
            max_tokens = budget + (max_tokens ? max_tokens : THINKING_MIN_BUDGET);
        json_object *th = json_object_new_object();
        bb_json_add(th, "type", json_object_new_string("enabled"));
        bb_json_add(th, "budget_tokens", json_object_new_int64(budget));
        bb_json_add(body, "thinking", th);
    }
    /* The scalars from the table: max_tokens always (the API requires it). */
    struct bb_ir_request scalars = *ir;
    scalars.has_max_tokens = true;
    scalars.max_tokens = max_tokens;
    struct sampling sm = {w, ir, thinking};
    bb_params_write(body, param_rows, N_PARAMS, &scalars, w->a, ctx, sampling_hook, &sm);

    if (bb_ir_has(&ir->user)) {
        json_object *md = json_object_new_object();
        bb_json_add(md, "user_id", bb_json_new_str(&ir->user));
        bb_json_add(body, "metadata", md);
    }
    if (ctx->stream && !c->model_in_path)
        bb_json_add(body, "stream", json_object_new_boolean(1));

    /* No Messages equivalent (a json_schema could be forced through a tool, but that changes
     * the answer's shape: content would arrive as a tool_use block). */
    if (ir->format == BB_IR_FMT_JSON_OBJECT || ir->format == BB_IR_FMT_JSON_SCHEMA)
        bb_proto_drop(w->a, w->ctx, "response_format");
    wr_extras(w, ir, c, body);
    return 0;
}

int bb_amsg_write_body(struct bb_arena *a, const struct bb_ir_request *ir,
                       const struct bb_egress_ctx *ctx, const struct bb_amsg_carrier *c,
                       json_object *body, struct bb_err *err)
{
    struct wr w = {a, err, ctx};
    return wr_body(&w, ir, ctx, c, body);
}

/* x-api-key (with a key) and anthropic-version (always). */
static int anthropic_auth_headers(struct evbuffer *out, const char *key)
{
    return (key && *key && bb_proto_put(out, "x-api-key: ", key, "\r\n") < 0) ||
                   bb_proto_put(out, "anthropic-version: " ANTHROPIC_VERSION "\r\n", NULL, NULL) < 0
               ? -1
               : 0;
}

static int anthropic_write_request(struct bb_arena *a, const struct bb_ir_request *ir,
                                   const struct bb_egress_ctx *ctx, struct bb_egress_req *out,
                                   struct bb_err *err)
{
    snprintf(out->path, sizeof out->path, "/v1/messages");
    json_object *body = json_object_new_object();
    int rc = bb_amsg_write_body(a, ir, ctx, &own, body, err);
    if (rc == 0 && bb_json_append(out->body, body) < 0)
        rc = bb_err_set(err, "anthropic request: out of memory");
    json_object_put(body);
    if (rc < 0)
        return -1;
    const char *key = ctx->provider ? ctx->provider->api_key : NULL;
    if (bb_proto_put(out->headers, "Content-Type: application/json\r\n", NULL, NULL) < 0 ||
        anthropic_auth_headers(out->headers, key) < 0 || wr_beta_header(ir, out->headers) < 0)
        return bb_err_set(err, "anthropic request headers: out of memory");
    return 0;
}

/* ======================================================================================== */
/* egress: read a Message                                                                   */
/* ======================================================================================== */

int bb_amsg_read_response(struct bb_arena *a, const char *body, size_t len,
                          struct bb_ir_response *out, struct bb_err *err)
{
    memset(out, 0, sizeof *out);
    json_object *root = bb_json_parse(body, len, "anthropic response", err);
    if (!root)
        return -1;
    struct bb_rd r;
    bb_rd_init(&r, a, NULL, err);
    r.prefix = "anthropic response";
    json_object *content = bb_json_get(root, "content");
    int rc = 0;
    if (!bb_json_is(root, json_type_object)) {
        rc = bb_rd_expect(&r, NULL, "a JSON object");
    } else if (bb_json_str_eq(bb_json_get(root, "type"), "error")) {
        const char *m = bb_json_get_str(bb_json_get(root, "error"), "message");
        rc = bb_rd_fail(&r, "error", "%s", m ? m : "(no message)");
    } else if (bb_rd_take(&r, root, "id", &out->id) < 0 ||
               bb_rd_take(&r, root, "model", &out->model) < 0 ||
               bb_rd_take(&r, root, "stop_sequence", &out->stop_sequence) < 0) {
        rc = -1;
    } else if (content && !bb_json_is(content, json_type_array)) {
        rc = bb_rd_expect(&r, "content", "an array");
    }
    out->stop = stop_from_wire(bb_json_get_str(root, "stop_reason"));
    usage_merge(&out->usage, bb_json_get(root, "usage"));
    size_t n = rc == 0 && content ? json_object_array_length(content) : 0;
    out->blocks = rc == 0 ? bb_arena_calloc(a, (n ? n : 1) * sizeof *out->blocks) : NULL;
    if (rc == 0 && !out->blocks)
        rc = bb_rd_oom(&r);
    size_t mark = bb_rd_in(&r, "content");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        json_object *b = json_object_array_get_idx(content, i);
        bool skip = false;
        size_t m = bb_rd_at(&r, i);
        rc = bb_rd_type(&r, b, NULL, json_type_object) < 0 ||
                     rd_out_block(&r, b, &out->blocks[out->n_blocks], &skip) < 0
                 ? -1
                 : 0;
        bb_rd_out(&r, m);
        if (rc == 0 && !skip)
            out->n_blocks++;
    }
    bb_rd_out(&r, mark);
    json_object_put(root);
    return rc;
}

/* ======================================================================================== */
/* ingress: write a Message                                                                 */
/* ======================================================================================== */

static void message_id(char *buf, size_t cap, const struct bb_ir_str *id, const char *seed)
{
    if (bb_ir_has(id))
        snprintf(buf, cap, "%s", id->p);
    else
        snprintf(buf, cap, "msg_%s", seed && *seed ? seed : "busbar");
}

int bb_amsg_write_response(struct bb_arena *a, const struct bb_ir_response *r,
                           const struct bb_ingress_ctx *ctx, struct evbuffer *out)
{
    char id[256];
    const char *seed = ctx ? ctx->request_id : NULL;
    message_id(id, sizeof id, &r->id, seed);
    json_object *o = json_object_new_object();
    bb_json_add(o, "id", json_object_new_string(id));
    bb_json_add(o, "type", json_object_new_string("message"));
    bb_json_add(o, "role", json_object_new_string("assistant"));
    bb_json_add(o, "model",
                bb_ir_has(&r->model) ? bb_json_new_str(&r->model)
                                     : bb_json_new_cstr(ctx ? ctx->model : ""));
    json_object *content = json_object_new_array();
    bool saw_tool = false;
    for (size_t i = 0; i < r->n_blocks; i++) {
        json_object *b = out_block(&r->blocks[i], seed, i);
        saw_tool = saw_tool || r->blocks[i].type == BB_IR_TOOL_USE;
        if (b)
            json_object_array_add(content, b);
    }
    bb_json_add(o, "content", content);
    bb_json_add(o, "stop_reason", json_object_new_string(stop_to_wire(r->stop, saw_tool)));
    bb_json_add(o, "stop_sequence",
                r->stop == BB_IR_STOP_STOP_SEQUENCE && r->stop_sequence.p
                    ? bb_json_new_str(&r->stop_sequence)
                    : NULL);
    bb_json_add(o, "usage", usage_to_wire(&r->usage));
    int rc = bb_json_append(out, o);
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

#define ENC_PENDING BB_AMSG_ENC_PENDING
#define anth_enc bb_amsg_enc

/* One stream event to the carrier (the Messages API's own: SSE). */
static int enc_send(struct anth_enc *e, struct evbuffer *out, const char *event, json_object *o)
{
    return e->send ? e->send(e->carrier_enc, out, event, o) : bb_json_sse_send(out, event, o);
}

void bb_amsg_enc_init(struct bb_amsg_enc *e, const struct bb_ingress_ctx *ctx, bb_amsg_send send,
                      void *carrier_enc)
{
    memset(e, 0, sizeof *e);
    if (ctx && ctx->request_id)
        snprintf(e->request_id, sizeof e->request_id, "%s", ctx->request_id);
    if (ctx && ctx->model)
        snprintf(e->model, sizeof e->model, "%s", ctx->model);
    e->send = send;
    e->carrier_enc = carrier_enc;
}

static void anthropic_enc_init(void *enc, const struct bb_ingress_ctx *ctx)
{
    bb_amsg_enc_init(enc, ctx, NULL, NULL);
}

static int enc_message_start(struct anth_enc *e, const struct bb_ir_event *ev, struct evbuffer *out)
{
    char id[256];
    struct bb_ir_str none = {NULL, 0};
    message_id(id, sizeof id, ev ? &ev->id : &none, e->request_id);
    if (ev && bb_ir_has(&ev->model))
        snprintf(e->model, sizeof e->model, "%s", ev->model.p);
    if (ev)
        bb_ir_usage_max(&e->usage, &ev->usage);
    json_object *m = bb_json_typed("message");
    bb_json_add(m, "id", json_object_new_string(id));
    bb_json_add(m, "role", json_object_new_string("assistant"));
    bb_json_add(m, "model", json_object_new_string(e->model));
    bb_json_add(m, "content", json_object_new_array());
    bb_json_add(m, "stop_reason", NULL);
    bb_json_add(m, "stop_sequence", NULL);
    bb_json_add(m, "usage", usage_to_wire(&e->usage));
    json_object *o = bb_json_typed("message_start");
    bb_json_add(o, "message", m);
    e->started = true;
    return enc_send(e, out, "message_start", o);
}

static int enc_block_start_frame(struct anth_enc *e, struct bb_eseq_block *b,
                                 const struct bb_ir_event *ev, const struct bb_ir_str *data,
                                 struct evbuffer *out)
{
    json_object *cb = NULL;
    switch (b->type) {
    case BB_IR_TEXT:
        cb = bb_json_typed("text");
        bb_json_add(cb, "text", json_object_new_string(""));
        break;
    case BB_IR_THINKING:
        cb = bb_json_typed("thinking");
        bb_json_add(cb, "thinking", json_object_new_string(""));
        bb_json_add(cb, "signature", json_object_new_string(""));
        break;
    case BB_IR_REDACTED_THINKING:
        cb = bb_json_typed("redacted_thinking");
        bb_json_add(cb, "data", bb_json_new_str(data));
        break;
    case BB_IR_TOOL_USE: {
        struct bb_ir_str none = {NULL, 0};
        cb = bb_json_typed("tool_use");
        bb_json_add(cb, "id", tool_id(ev ? &ev->id : &none, e->request_id, b->wire));
        bb_json_add(cb, "name", bb_json_new_str(ev ? &ev->name : &none));
        bb_json_add(cb, "input", json_object_new_object());
        e->saw_tool = true;
        break;
    }
    default:
        return 0;
    }
    json_object *o = bb_json_typed("content_block_start");
    bb_json_add(o, "index", json_object_new_int64(b->wire));
    bb_json_add(o, "content_block", cb);
    return enc_send(e, out, "content_block_start", o);
}

/* Open IR block ev->index of type t (ev may be a delta when no BLOCK_START came). */
static struct bb_eseq_block *enc_open_block(struct anth_enc *e, const struct bb_ir_event *ev,
                                            enum bb_ir_block_type t, bool from_start,
                                            struct evbuffer *out, int *rc)
{
    /* images, documents, tool results: no Message content form, no wire index */
    bool shown = t == BB_IR_TEXT || t == BB_IR_THINKING || t == BB_IR_REDACTED_THINKING ||
                 t == BB_IR_TOOL_USE;
    struct bb_eseq_block *b = bb_eseq_open(&e->seq, ev->index, t, shown);
    *rc = b ? 0 : -1;
    if (!b || !shown)
        return b;
    if (t == BB_IR_REDACTED_THINKING) {
        b->flags = ENC_PENDING; /* the wire carries its data in content_block_start */
        return b;
    }
    *rc = enc_block_start_frame(e, b, from_start ? ev : NULL, NULL, out);
    return b;
}

static int enc_close(struct anth_enc *e, struct bb_eseq_block *b, struct evbuffer *out)
{
    int rc = 0;
    if (b->wire != BB_ESEQ_NONE) {
        struct bb_ir_str empty = {NULL, 0};
        if (b->flags & ENC_PENDING)
            rc = enc_block_start_frame(e, b, NULL, &empty, out);
        json_object *o = bb_json_typed("content_block_stop");
        bb_json_add(o, "index", json_object_new_int64(b->wire));
        if (rc == 0)
            rc = enc_send(e, out, "content_block_stop", o);
        else
            json_object_put(o);
    }
    bb_eseq_remove(&e->seq, b);
    return rc;
}

static int enc_close_all(struct anth_enc *e, struct evbuffer *out)
{
    while (e->seq.n_open)
        if (enc_close(e, &e->seq.open[0], out) < 0)
            return -1;
    return 0;
}

static int enc_delta(struct anth_enc *e, const struct bb_ir_event *ev, struct evbuffer *out)
{
    int rc = 0;
    struct bb_eseq_block *b = bb_eseq_find(&e->seq, ev->index);
    if (!b) {
        b = enc_open_block(e, ev, bb_ir_delta_block(ev->delta), false, out, &rc);
        if (!b || rc < 0)
            return -1;
    }
    if (b->wire == BB_ESEQ_NONE)
        return 0;
    if (ev->delta == BB_IR_D_REDACTED) {
        if (!(b->flags & ENC_PENDING))
            return 0; /* the wire has no redacted delta: only the first data is kept */
        b->flags &= ~ENC_PENDING;
        return enc_block_start_frame(e, b, NULL, &ev->text, out);
    }
    json_object *d = NULL;
    switch (ev->delta) {
    case BB_IR_D_TEXT:
        d = bb_json_typed("text_delta");
        bb_json_add(d, "text", bb_json_new_str(&ev->text));
        break;
    case BB_IR_D_THINKING:
        d = bb_json_typed("thinking_delta");
        bb_json_add(d, "thinking", bb_json_new_str(&ev->text));
        break;
    case BB_IR_D_SIGNATURE:
        d = bb_json_typed("signature_delta");
        bb_json_add(d, "signature", bb_json_new_str(&ev->text));
        break;
    case BB_IR_D_INPUT_JSON:
        d = bb_json_typed("input_json_delta");
        bb_json_add(d, "partial_json", bb_json_new_str(&ev->text));
        break;
    case BB_IR_D_CITATION: {
        json_object *c = bb_json_raw_as(&ev->text, json_type_object);
        if (!c)
            return 0;
        d = bb_json_typed("citations_delta");
        bb_json_add(d, "citation", c);
        break;
    }
    default:
        return 0;
    }
    json_object *o = bb_json_typed("content_block_delta");
    bb_json_add(o, "index", json_object_new_int64(b->wire));
    bb_json_add(o, "delta", d);
    return enc_send(e, out, "content_block_delta", o);
}

static int enc_message_delta(struct anth_enc *e, const struct bb_ir_event *ev, struct evbuffer *out)
{
    if (ev) {
        bb_ir_usage_max(&e->usage, &ev->usage);
        if (ev->stop != BB_IR_STOP_UNSET)
            e->stop = ev->stop;
    }
    json_object *d = json_object_new_object();
    bb_json_add(d, "stop_reason", json_object_new_string(stop_to_wire(e->stop, e->saw_tool)));
    bb_json_add(d, "stop_sequence",
                ev && e->stop == BB_IR_STOP_STOP_SEQUENCE && ev->stop_sequence.p
                    ? bb_json_new_str(&ev->stop_sequence)
                    : NULL);
    json_object *o = bb_json_typed("message_delta");
    bb_json_add(o, "delta", d);
    bb_json_add(o, "usage", usage_to_wire(&e->usage));
    e->delta_sent = true;
    return enc_send(e, out, "message_delta", o);
}

int bb_amsg_enc_event(struct bb_amsg_enc *e, struct bb_arena *scratch, const struct bb_ir_event *ev,
                      struct evbuffer *out)
{
    if (e->done)
        return 0; /* nothing follows message_stop or an error event */
    if (ev->type == BB_IR_EV_ERROR) {
        /* An in-band error ends the stream: no content_block_stop, no message_stop, so the
         * client cannot take a cut answer for a complete one. */
        json_object *err = json_object_new_object();
        bb_json_add(err, "type",
                    bb_json_new_cstr(bb_ir_has(&ev->error_type) ? ev->error_type.p : "api_error"));
        bb_json_add(err, "message", bb_json_new_str(&ev->text));
        json_object *o = bb_json_typed("error");
        bb_json_add(o, "error", err);
        e->done = true;
        return enc_send(e, out, "error", o);
    }
    if (ev->type == BB_IR_EV_PING)
        return enc_send(e, out, "ping", bb_json_typed("ping"));
    if (!e->started &&
        enc_message_start(e, ev->type == BB_IR_EV_MESSAGE_START ? ev : NULL, out) < 0)
        return -1;
    int rc = 0;
    switch (ev->type) {
    case BB_IR_EV_MESSAGE_START:
        return 0; /* written above; a repeated start carries nothing new for the wire */
    case BB_IR_EV_BLOCK_START:
        if (bb_eseq_find(&e->seq, ev->index))
            return 0;
        enc_open_block(e, ev, ev->block_type, true, out, &rc);
        return rc;
    case BB_IR_EV_BLOCK_DELTA:
        return enc_delta(e, ev, out);
    case BB_IR_EV_BLOCK_STOP: {
        struct bb_eseq_block *b = bb_eseq_find(&e->seq, ev->index);
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
        return enc_send(e, out, "message_stop", bb_json_typed("message_stop"));
    default:
        return 0;
    }
}

static int anthropic_enc_event(void *enc, struct bb_arena *scratch, const struct bb_ir_event *ev,
                               struct evbuffer *out)
{
    return bb_amsg_enc_event(enc, scratch, ev, out);
}

/* ======================================================================================== */
/* egress: stream decoder (Anthropic SSE → IR events)                                       */
/* ======================================================================================== */

/* Anthropic streams blocks one after another (start, deltas, stop), so one open block is
 * tracked. Wire indexes of blocks with no IR form (server tool blocks) are skipped and the
 * rest renumbered 0, 1, 2, ... */
#define anth_dec bb_amsg_dec

void bb_amsg_dec_init(struct bb_amsg_dec *d)
{
    memset(d, 0, sizeof *d);
}

static void anthropic_dec_init(void *dec)
{
    bb_amsg_dec_init(dec);
}

static int dec_stop_block(struct anth_dec *d, const struct bb_dout *o)
{
    d->in_block = false;
    return bb_dseq_close(&d->seq, o);
}

/* A string member of the block as a delta of kind (nothing when absent or empty). */
static int dec_start_delta(struct anth_dec *d, const struct bb_dout *o, json_object *cb,
                           const char *key, enum bb_ir_delta kind)
{
    json_object *v = bb_json_get(cb, key);
    if (!bb_json_has_text(v))
        return 0;
    return bb_dseq_delta(&d->seq, o, kind, json_object_get_string(v),
                         (size_t)json_object_get_string_len(v));
}

static int dec_block_start(struct anth_dec *d, const struct bb_dout *o, json_object *frame)
{
    int rc = dec_stop_block(d, o);
    if (rc)
        return rc;
    json_object *cb = bb_json_get(frame, "content_block");
    const char *t = bb_json_get_str(cb, "type");
    uint64_t index;
    if (!t || !bb_json_uint(bb_json_get(frame, "index"), UINT32_MAX, &index))
        return -1;
    d->in_block = true;
    d->up_index = (uint32_t)index;
    d->skip = false;
    enum bb_ir_block_type type = BB_IR_TEXT;
    if (strcmp(t, "text") == 0)
        type = BB_IR_TEXT;
    else if (strcmp(t, "thinking") == 0)
        type = BB_IR_THINKING;
    else if (strcmp(t, "redacted_thinking") == 0)
        type = BB_IR_REDACTED_THINKING;
    else if (strcmp(t, "tool_use") == 0)
        type = BB_IR_TOOL_USE;
    else
        d->skip = true; /* server_tool_use, web_search_tool_result, ...: no IR form */
    if (d->skip)
        return 0;
    struct bb_ir_str id = {NULL, 0}, name = {NULL, 0};
    if (type == BB_IR_TOOL_USE) {
        json_object *v;
        if ((bb_json_is(v = bb_json_get(cb, "id"), json_type_string) &&
             !(id = bb_json_dup(o->scratch, v)).p) ||
            (bb_json_is(v = bb_json_get(cb, "name"), json_type_string) &&
             !(name = bb_json_dup(o->scratch, v)).p))
            return -1;
    }
    if ((rc = bb_dseq_open(&d->seq, o, index, type, &id, &name)))
        return rc;
    /* Content the start already carries (normally empty). */
    json_object *v;
    switch (type) {
    case BB_IR_TEXT:
        return dec_start_delta(d, o, cb, "text", BB_IR_D_TEXT);
    case BB_IR_THINKING:
        if ((rc = dec_start_delta(d, o, cb, "thinking", BB_IR_D_THINKING)))
            return rc;
        return dec_start_delta(d, o, cb, "signature", BB_IR_D_SIGNATURE);
    case BB_IR_REDACTED_THINKING:
        if ((v = bb_json_get(cb, "data")))
            return bb_dseq_delta(&d->seq, o, BB_IR_D_REDACTED, json_object_get_string(v),
                                 (size_t)json_object_get_string_len(v));
        return 0;
    case BB_IR_TOOL_USE:
        if (bb_json_is(v = bb_json_get(cb, "input"), json_type_object) &&
            json_object_object_length(v) > 0) {
            struct bb_ir_str js = bb_json_text(o->scratch, v);
            return js.p ? bb_dseq_delta(&d->seq, o, BB_IR_D_INPUT_JSON, js.p, js.len) : -1;
        }
        return 0;
    default:
        return 0;
    }
}

static int dec_block_delta(struct anth_dec *d, const struct bb_dout *o, json_object *frame)
{
    uint64_t index;
    if (!d->in_block || !bb_json_uint(bb_json_get(frame, "index"), UINT32_MAX, &index) ||
        index != d->up_index)
        return -1; /* a delta outside its block: the stream is malformed */
    if (d->skip)
        return 0;
    json_object *delta = bb_json_get(frame, "delta");
    const char *t = bb_json_get_str(delta, "type");
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
        return bb_dseq_delta(&d->seq, o, kinds[i].kind, json_object_get_string(v),
                             (size_t)json_object_get_string_len(v));
    }
    if (strcmp(t, "citations_delta") == 0) {
        json_object *c = bb_json_get(delta, "citation");
        struct bb_ir_str js = c ? bb_json_text(o->scratch, c) : (struct bb_ir_str){NULL, 0};
        return js.p ? bb_dseq_delta(&d->seq, o, BB_IR_D_CITATION, js.p, js.len) : -1;
    }
    return 0; /* a future delta kind: nothing to carry */
}

static int dec_message_start(struct anth_dec *d, const struct bb_dout *o, json_object *frame)
{
    json_object *m = bb_json_get(frame, "message");
    struct bb_ir_event ev = {.type = BB_IR_EV_MESSAGE_START};
    usage_merge(&d->usage, bb_json_get(m, "usage"));
    ev.usage = d->usage;
    json_object *v;
    if ((bb_json_is(v = bb_json_get(m, "id"), json_type_string) &&
         !(ev.id = bb_json_dup(o->scratch, v)).p) ||
        (bb_json_is(v = bb_json_get(m, "model"), json_type_string) &&
         !(ev.model = bb_json_dup(o->scratch, v)).p))
        return -1;
    d->started = true;
    return bb_dout_emit(o, &ev);
}

static int dec_message_delta(struct anth_dec *d, const struct bb_dout *o, json_object *frame)
{
    json_object *delta = bb_json_get(frame, "delta");
    int rc = dec_stop_block(d, o);
    if (rc)
        return rc;
    struct bb_ir_event ev = {.type = BB_IR_EV_MESSAGE_DELTA};
    ev.stop = stop_from_wire(bb_json_get_str(delta, "stop_reason"));
    json_object *v = bb_json_get(delta, "stop_sequence");
    if (bb_json_is(v, json_type_string) && !(ev.stop_sequence = bb_json_dup(o->scratch, v)).p)
        return -1;
    usage_merge(&d->usage, bb_json_get(frame, "usage"));
    ev.usage = d->usage;
    d->stopped = true;
    return bb_dout_emit(o, &ev);
}

static int dec_error(struct anth_dec *d, const struct bb_dout *o, json_object *frame)
{
    json_object *e = bb_json_get(frame, "error");
    json_object *v;
    struct bb_ir_event ev = {.type = BB_IR_EV_ERROR};
    if ((bb_json_is(v = bb_json_get(e, "type"), json_type_string) &&
         !(ev.error_type = bb_json_dup(o->scratch, v)).p) ||
        (bb_json_is(v = bb_json_get(e, "message"), json_type_string) &&
         !(ev.text = bb_json_dup(o->scratch, v)).p))
        return -1;
    ev.error_status = status_from_error_type(ev.error_type.p);
    d->done = true;
    return bb_dout_emit(o, &ev);
}

static int dec_message_stop(struct anth_dec *d, const struct bb_dout *o)
{
    int rc = dec_stop_block(d, o);
    struct bb_ir_event ev = {.type = BB_IR_EV_MESSAGE_STOP};
    d->done = true;
    return rc ? rc : bb_dout_emit(o, &ev);
}

int bb_amsg_dec_frame(struct bb_amsg_dec *d, struct bb_arena *scratch, const struct bb_frame *f,
                      bb_ir_event_cb cb, void *arg)
{
    struct bb_dout o = {cb, arg, scratch};
    if (!f->data_len)
        return 0; /* keep-alive comments / empty frames */
    json_object *frame = bb_json_parse(f->data, f->data_len, "frame", NULL);
    if (!bb_json_is(frame, json_type_object)) {
        json_object_put(frame);
        return -1;
    }
    /* The data's own type names the event; the SSE event: line is the fallback. */
    char name[64];
    const char *t = bb_json_get_str(frame, "type");
    if (!t) {
        size_t n = f->event_len < sizeof name - 1 ? f->event_len : sizeof name - 1;
        memcpy(name, f->event ? f->event : "", n);
        name[n] = '\0';
        t = name;
    }
    int rc = 0;
    if (d->done && strcmp(t, "error") != 0) {
        rc = 0;
    } else if (strcmp(t, "message_start") == 0) {
        rc = dec_message_start(d, &o, frame);
    } else if (strcmp(t, "content_block_start") == 0) {
        rc = dec_block_start(d, &o, frame);
    } else if (strcmp(t, "content_block_delta") == 0) {
        rc = dec_block_delta(d, &o, frame);
    } else if (strcmp(t, "content_block_stop") == 0) {
        rc = dec_stop_block(d, &o);
    } else if (strcmp(t, "message_delta") == 0) {
        rc = dec_message_delta(d, &o, frame);
    } else if (strcmp(t, "message_stop") == 0) {
        rc = dec_message_stop(d, &o);
    } else if (strcmp(t, "ping") == 0) {
        struct bb_ir_event ev = {.type = BB_IR_EV_PING};
        rc = bb_dout_emit(&o, &ev);
    } else if (strcmp(t, "error") == 0) {
        rc = dec_error(d, &o, frame);
    }
    /* Unknown event types are future additions: ignored. */
    json_object_put(frame);
    return rc;
}

static int anthropic_dec_frame(void *dec, struct bb_arena *scratch, const struct bb_frame *f,
                               bb_ir_event_cb cb, void *arg)
{
    return bb_amsg_dec_frame(dec, scratch, f, cb, arg);
}

/* ======================================================================================== */
/* errors                                                                                   */
/* ======================================================================================== */

/* {"type":"error","error":{"type":"overloaded_error","message":"..."},"request_id":...};
 * Anthropic has no separate error code. */
int bb_amsg_read_error(const char *body, size_t len, struct bb_proto_error *out)
{
    memset(out, 0, sizeof *out);
    json_object *root = bb_json_parse(body, len, "error", NULL);
    json_object *e = bb_json_get(root, "error");
    const char *type = bb_json_str(bb_json_get(e, "type"));
    const char *msg = bb_json_str(bb_json_get(e, "message"));
    if (!msg && bb_json_is(e, json_type_string))
        msg = json_object_get_string(e);
    if (type)
        snprintf(out->type, sizeof out->type, "%s", type);
    if (msg)
        snprintf(out->message, sizeof out->message, "%s", msg);
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

int bb_amsg_answer_check(const char *body, size_t len, struct bb_ir_usage *usage,
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
int bb_amsg_dec_finish(struct bb_amsg_dec *d, struct bb_arena *scratch, bb_ir_event_cb cb,
                       void *arg)
{
    struct bb_dout o = {cb, arg, scratch};
    if (d->done || !d->stopped)
        return 0;
    return dec_message_stop(d, &o);
}

static int anthropic_dec_finish(void *dec, struct bb_arena *scratch, bb_ir_event_cb cb, void *arg)
{
    return bb_amsg_dec_finish(dec, scratch, cb, arg);
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

int bb_amsg_frame_scan(const struct bb_frame *f, struct bb_frame_state *st,
                       struct bb_frame_info *out)
{
    bool stopped = st->stopped;
    int rc = anthropic_frame_scan_1(f, st, stopped, out);
    st->stopped = st->stopped || out->stop;
    return rc;
}

static const char *const forward_headers[] = {"anthropic-beta", NULL};
/* ---- the ingress envelope ---- */

/* /{pool-or-model}/v1/messages: the model in the path wins over the body's. */
static int anthropic_match_route(const char *p, size_t n, const char *query,
                                 struct bb_proto_route *out)
{
    (void)query;
    if (n <= 13 || !bb_path_ends(p, n, "/v1/messages"))
        return 0;
    out->model = p + 1;
    out->model_len = n - 1 - 12;
    return 1;
}

static bool anthropic_claims_path(const char *path)
{
    return bb_path_ends(path, strlen(path), "/v1/messages");
}

/* GET /v1/models with anthropic-version: {"data":[{type, id, display_name, created_at}],
 * "has_more":false, "first_id", "last_id"} */
static json_object *anthropic_models_list(const char *const *names, size_t n)
{
    json_object *root = json_object_new_object(), *data = json_object_new_array();
    for (size_t i = 0; i < n; i++) {
        json_object *m = json_object_new_object();
        json_object_object_add(m, "type", json_object_new_string("model"));
        json_object_object_add(m, "id", json_object_new_string(names[i]));
        json_object_object_add(m, "display_name", json_object_new_string(names[i]));
        json_object_object_add(m, "created_at", json_object_new_string("1970-01-01T00:00:00Z"));
        json_object_array_add(data, m);
    }
    json_object_object_add(root, "data", data);
    json_object_object_add(root, "has_more", json_object_new_boolean(0));
    json_object_object_add(root, "first_id", n ? json_object_new_string(names[0]) : NULL);
    json_object_object_add(root, "last_id", n ? json_object_new_string(names[n - 1]) : NULL);
    return root;
}

/* busbar's own errors in Anthropic's shape: {"type":"error","error":{type,message}}. */
static const struct bb_proto_errtype error_types[] = {
    {400, "invalid_request_error"},
    {401, "authentication_error"},
    {402, "billing_error"},
    {403, "permission_error"},
    {404, "not_found_error"},
    {405, "invalid_request_error"},
    {408, "invalid_request_error"},
    {413, "request_too_large"},
    {429, "rate_limit_error"},
    {500, "api_error"},
    {502, "api_error"},
    {503, "overloaded_error"},
    {504, "api_error"},
    {529, "overloaded_error"},
};

static int anthropic_error_body(char *out, size_t cap, int status, const char *type,
                                const char *busbar_type, const char *code, const char *msg)
{
    (void)status;
    (void)busbar_type;
    (void)code;
    return snprintf(out, cap, "{\"type\":\"error\",\"error\":{\"type\":\"%s\",\"message\":%s}}",
                    type, msg);
}

/* Anthropic's rate-limit headers (resets are RFC 3339 times). */
static const struct bb_proto_ratelimit ratelimit[] = {
    {"anthropic-ratelimit-requests-remaining", "anthropic-ratelimit-requests-limit",
     "anthropic-ratelimit-requests-reset", true},
    {"anthropic-ratelimit-tokens-remaining", "anthropic-ratelimit-tokens-limit",
     "anthropic-ratelimit-tokens-reset", true},
    {"anthropic-ratelimit-input-tokens-remaining", "anthropic-ratelimit-input-tokens-limit",
     "anthropic-ratelimit-input-tokens-reset", true},
    {"anthropic-ratelimit-output-tokens-remaining", "anthropic-ratelimit-output-tokens-limit",
     "anthropic-ratelimit-output-tokens-reset", true},
};

static const char *const affinity_members[] = {"system", "messages", NULL};

const struct bb_proto_ops bb_proto_anthropic = {
    .id = BB_PROTO_ANTHROPIC,
    .name = "anthropic",
    .genai_system = "anthropic",
    .body_family = BODY_FAMILY,
    .framing = BB_FRAMING_SSE,
    .params = param_rows,
    .n_params = N_PARAMS,
    .ratelimit = ratelimit,
    .n_ratelimit = sizeof ratelimit / sizeof ratelimit[0],
    .client_key_header = "x-api-key",
    .errors = {.types = error_types,
               .n_types = sizeof error_types / sizeof error_types[0],
               .quota_type = "billing_error",
               .body = anthropic_error_body},
    .route = "/v1/messages",
    .match_route = anthropic_match_route,
    .claims_path = anthropic_claims_path,
    .models_path = "/v1/models",
    .models_header = "anthropic-version",
    .models_list = anthropic_models_list,
    .path = "/v1/messages",
    .auth_headers = anthropic_auth_headers,
    .probe_path = "/v1/models",
    .tool_id_prefix = "toolu_",
    .forward_headers = forward_headers,
    .stream_member = "stream",
    .affinity_members = affinity_members,
    .read_request = anthropic_read_request,
    .write_response = bb_amsg_write_response,
    .stream_content_type = anthropic_stream_content_type,
    .enc_size = sizeof(struct bb_amsg_enc),
    .enc_init = anthropic_enc_init,
    .enc_event = anthropic_enc_event,
    .enc_finish = NULL,
    .write_request = anthropic_write_request,
    .read_response = bb_amsg_read_response,
    .dec_size = sizeof(struct bb_amsg_dec),
    .dec_init = anthropic_dec_init,
    .dec_frame = anthropic_dec_frame,
    .read_error = bb_amsg_read_error,
    .dec_finish = anthropic_dec_finish,
    .terminator = "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    .answer_check = bb_amsg_answer_check,
    .frame_scan = bb_amsg_frame_scan,
};
