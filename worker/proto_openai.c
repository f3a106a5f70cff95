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

#include <event2/buffer.h>
#include <json-c/json.h>

#define DEC_TOOLS_MAX 128 /* tool_calls[].index values per streamed message we map */

/* The scalar parameters (worker/params.h; docs/protocols/openai.md "Parameters"). */
static const struct bb_param param_rows[] = {
    {"max_completion_tokens", BB_IRP_MAX_TOKENS, BB_PF_IN | BB_PF_OUT, 0, 0, ""},
    {"max_tokens", BB_IRP_MAX_TOKENS, BB_PF_IN, 0, 0,
     "the older name, read when `max_completion_tokens` is absent"},
    {"temperature", BB_IRP_TEMPERATURE, BB_PF_IN | BB_PF_OUT, 0, 0, ""},
    {"top_p", BB_IRP_TOP_P, BB_PF_IN | BB_PF_OUT, 0, 0, ""},
    {"top_k", BB_IRP_TOP_K, BB_PF_IN, 0, 0,
     "not OpenAI's, but vLLM-style clients send it: read, and dropped towards OpenAI"},
    {"seed", BB_IRP_SEED, BB_PF_IN | BB_PF_OUT, 0, 0, ""},
    {"presence_penalty", BB_IRP_PRESENCE_PENALTY, BB_PF_IN | BB_PF_OUT, 0, 0, ""},
    {"frequency_penalty", BB_IRP_FREQUENCY_PENALTY, BB_PF_IN | BB_PF_OUT, 0, 0, ""},
    {"stop", BB_IRP_STOP, BB_PF_IN | BB_PF_OUT | BB_PF_ONE | BB_PF_CLAMP, 0, 4, ""},
    {"n", BB_IRP_N, BB_PF_IN | BB_PF_OUT, 1, UINT32_MAX, ""},
};
#define N_PARAMS (sizeof param_rows / sizeof param_rows[0])

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
    if (!bb_json_is(u, json_type_object))
        return;
    json_object *pd = bb_json_get(u, "prompt_tokens_details");
    json_object *cd = bb_json_get(u, "completion_tokens_details");
    uint64_t prompt = bb_json_count(u, "prompt_tokens");
    out->set = true;
    out->cache_read = bb_json_count(pd, "cached_tokens");
    out->cache_write = bb_json_count(pd, "cache_write_tokens");
    uint64_t cached = out->cache_read + out->cache_write;
    out->input = prompt > cached ? prompt - cached : 0;
    out->output = bb_json_count(u, "completion_tokens");
    out->reasoning = bb_json_count(cd, "reasoning_tokens");
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

/* The reader: the shared context plus what OpenAI's message list needs across messages. */
struct rd {
    struct bb_rd r;
    struct bb_vec msgs;         /* struct bb_ir_message */
    bool last_is_tool;          /* the last message holds only results from tool/function roles */
    struct bb_vec tool_run;     /* that message's blocks while the run lasts */
    struct bb_ir_str legacy_id; /* the last legacy function_call's synthesised id */
    unsigned n_legacy;
};

/* An image_url part of a user message (the path at the part). */
static int rd_image(struct bb_rd *r, struct bb_vec *bv, json_object *part)
{
    json_object *iu = bb_json_get(part, "image_url");
    json_object *url = bb_json_is(iu, json_type_string) ? iu : bb_json_get(iu, "url");
    if (!bb_json_is(url, json_type_string))
        return bb_rd_expect(r, "image_url.url", "a string");
    json_object *detail = bb_json_get(iu, "detail");
    if (bb_json_is(detail, json_type_string) && !bb_json_str_eq(detail, "auto") &&
        bb_rd_unsupported(r, "", "image_url.detail") < 0)
        return -1;
    struct bb_ir_block *b = BB_VEC_PUSH(r->a, bv, struct bb_ir_block);
    if (!b)
        return bb_rd_oom(r);
    b->type = BB_IR_IMAGE;
    struct bb_ir_str mt, data;
    if (!bb_media_split_data_url(json_object_get_string(url),
                                 (size_t)json_object_get_string_len(url), &mt, &data))
        return bb_rd_dup(r, url, &b->url);
    b->media_type = bb_ir_strdup(r->a, mt.p, mt.len);
    b->data = bb_ir_strdup(r->a, data.p, data.len);
    return b->media_type.p && b->data.p ? 0 : bb_rd_oom(r);
}

/* A file part: inline base64 (file_data as a data: URL) becomes a DOCUMENT; an uploaded
 * file_id cannot travel to another provider. */
static int rd_file(struct bb_rd *r, struct bb_vec *bv, json_object *part)
{
    json_object *f, *fd;
    if (bb_rd_want(r, part, "file", json_type_object, false, &f) < 0)
        return -1;
    if (!f)
        return bb_rd_expect(r, "file", "an object");
    size_t m = bb_rd_in(r, "file");
    int rc = bb_rd_want(r, f, "file_data", json_type_string, false, &fd);
    bb_rd_out(r, m);
    if (rc < 0)
        return -1;
    struct bb_ir_str mt, data;
    if (!fd || !bb_media_split_data_url(json_object_get_string(fd),
                                        (size_t)json_object_get_string_len(fd), &mt, &data))
        return bb_rd_unsupported(r, "", bb_json_get(f, "file_id") ? "file.file_id" : "file");
    struct bb_ir_block *b = BB_VEC_PUSH(r->a, bv, struct bb_ir_block);
    if (!b)
        return bb_rd_oom(r);
    b->type = BB_IR_DOCUMENT;
    b->media_type = bb_ir_strdup(r->a, mt.p, mt.len);
    b->data = bb_ir_strdup(r->a, data.p, data.len);
    return b->media_type.p && b->data.p ? 0 : bb_rd_oom(r);
}

enum part_set { PARTS_TEXT, PARTS_USER, PARTS_ASSISTANT };

/* One content part (the path at the part). */
static int rd_part(struct bb_rd *r, struct bb_vec *bv, json_object *part, enum part_set set)
{
    const char *t = bb_json_get_str(part, "type");
    json_object *text;
    if (!bb_json_is(part, json_type_object) || !t)
        return bb_rd_expect(r, NULL, "an object with a 'type'");
    if (strcmp(t, "text") == 0) {
        if (bb_rd_want(r, part, "text", json_type_string, false, &text) < 0)
            return -1;
        return text ? bb_rd_push_text(r, bv, BB_IR_TEXT, text)
                    : bb_rd_expect(r, "text", "a string");
    }
    if (strcmp(t, "refusal") == 0 && set == PARTS_ASSISTANT) {
        /* a refusal the assistant gave earlier is still what it said */
        if (bb_rd_want(r, part, "refusal", json_type_string, false, &text) < 0)
            return -1;
        return text ? bb_rd_push_text(r, bv, BB_IR_TEXT, text)
                    : bb_rd_expect(r, "refusal", "a string");
    }
    if (strcmp(t, "image_url") == 0 && set == PARTS_USER)
        return rd_image(r, bv, part);
    if (strcmp(t, "file") == 0 && set == PARTS_USER)
        return rd_file(r, bv, part);
    return bb_rd_unsupported(r, "content.", t);
}

/* Message content (the path at the message): a string, or an array of parts (which parts are
 * allowed depends on the role). A JSON null is no content. */
static int rd_content(struct bb_rd *r, struct bb_vec *bv, json_object *c, enum part_set set)
{
    if (!c)
        return 0;
    if (bb_json_is(c, json_type_string))
        return bb_rd_push_text(r, bv, BB_IR_TEXT, c);
    if (!bb_json_is(c, json_type_array))
        return bb_rd_expect(r, "content", "a string or an array");
    struct bb_rd_iter it = bb_rd_iter(r, c, "content");
    json_object *el;
    while (bb_rd_next(&it, &el))
        if (rd_part(r, bv, el, set) < 0)
            return -1;
    return 0;
}

/* Arguments travel as JSON object text; OpenAI sends a string (kept as is), a few clients an
 * object (serialised). Empty means no arguments. The path is the function's. */
static int rd_arguments(struct bb_rd *r, json_object *args, struct bb_ir_str *out)
{
    if (!args || (bb_json_is(args, json_type_string) && json_object_get_string_len(args) == 0)) {
        *out = bb_ir_strdup(r->a, "{}", 2);
        return out->p ? 0 : bb_rd_oom(r);
    }
    if (bb_json_is(args, json_type_string))
        return bb_rd_dup(r, args, out);
    if (bb_json_is(args, json_type_object))
        return bb_rd_text(r, args, out);
    return bb_rd_expect(r, "arguments", "a string");
}

/* One tool_calls[] entry (the path at it). */
static int rd_tool_call(struct bb_rd *r, struct bb_vec *bv, json_object *call)
{
    if (bb_rd_type(r, call, NULL, json_type_object) < 0)
        return -1;
    json_object *type = bb_json_get(call, "type");
    if (type && !bb_json_str_eq(type, "function"))
        return bb_rd_unsupported(r, "", "tool_calls.custom");
    json_object *id = bb_json_get(call, "id"), *fn = bb_json_get(call, "function");
    if (!bb_json_is(id, json_type_string))
        return bb_rd_expect(r, "id", "a string");
    if (!bb_json_is(bb_json_get(fn, "name"), json_type_string))
        return bb_rd_expect(r, "function.name", "a string");
    struct bb_ir_block *b = BB_VEC_PUSH(r->a, bv, struct bb_ir_block);
    if (!b)
        return bb_rd_oom(r);
    b->type = BB_IR_TOOL_USE;
    if (bb_rd_dup(r, id, &b->id) < 0 || bb_rd_dup(r, bb_json_get(fn, "name"), &b->name) < 0)
        return -1;
    size_t m = bb_rd_in(r, "function");
    int rc = rd_arguments(r, bb_json_get(fn, "arguments"), &b->input_json);
    bb_rd_out(r, m);
    return rc;
}

/* LiteLLM's thinking_blocks on an assistant message (the path at the array): thinking text
 * with its signature. */
static int rd_thinking_blocks(struct bb_rd *r, struct bb_vec *bv, json_object *tb)
{
    if (bb_rd_type(r, tb, NULL, json_type_array) < 0)
        return -1;
    size_t n = json_object_array_length(tb);
    for (size_t j = 0; j < n; j++) {
        json_object *t = json_object_array_get_idx(tb, j);
        size_t m = bb_rd_at(r, j);
        const char *type = bb_json_get_str(t, "type");
        bool redacted = type && strcmp(type, "redacted_thinking") == 0;
        json_object *text = bb_json_get(t, redacted ? "data" : "thinking");
        json_object *sig = bb_json_get(t, "signature");
        struct bb_ir_block *b = NULL;
        int rc = 0;
        if (!type)
            rc = bb_rd_expect(r, "type", "a string");
        else if ((text && !bb_json_is(text, json_type_string)) ||
                 (sig && !bb_json_is(sig, json_type_string)))
            rc = bb_rd_expect(r, NULL, "string fields");
        else if (!(b = BB_VEC_PUSH(r->a, bv, struct bb_ir_block)))
            rc = bb_rd_oom(r);
        bb_rd_out(r, m);
        if (rc < 0)
            return -1;
        b->type = redacted ? BB_IR_REDACTED_THINKING : BB_IR_THINKING;
        if (redacted) {
            if (text && bb_rd_dup(r, text, &b->signature) < 0)
                return -1;
        } else if ((text && bb_rd_dup(r, text, &b->text) < 0) ||
                   (sig && bb_rd_dup(r, sig, &b->signature) < 0)) {
            return -1;
        }
    }
    return 0;
}

static struct bb_ir_message *rd_new_message(struct rd *x, enum bb_ir_role role)
{
    struct bb_ir_message *m = BB_VEC_PUSH(x->r.a, &x->msgs, struct bb_ir_message);
    if (m)
        m->role = role;
    return m;
}

/* The function name of the call `id` answers, from the assistant turns before it: Gemini
 * needs it in functionResponse and OpenAI tool messages do not carry it. */
static struct bb_ir_str rd_call_name(const struct rd *x, const char *id)
{
    const struct bb_ir_message *msgs = x->msgs.v;
    for (size_t i = x->msgs.n; i-- > 0;) {
        const struct bb_ir_message *m = &msgs[i];
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
static struct bb_ir_block *rd_tool_result(struct rd *x)
{
    struct bb_ir_message *m;
    if (x->last_is_tool && x->msgs.n) {
        m = &((struct bb_ir_message *)x->msgs.v)[x->msgs.n - 1];
    } else if ((m = rd_new_message(x, BB_IR_USER))) {
        x->last_is_tool = true;
        memset(&x->tool_run, 0, sizeof x->tool_run);
    } else {
        return NULL;
    }
    struct bb_ir_block *b = BB_VEC_PUSH(x->r.a, &x->tool_run, struct bb_ir_block);
    if (!b)
        return NULL;
    m->blocks = x->tool_run.v;
    m->n_blocks = x->tool_run.n;
    b->type = BB_IR_TOOL_RESULT;
    return b;
}

/* A tool message's content: one string (flat text) or text parts (nested TEXT blocks). */
static int rd_tool_content(struct bb_rd *r, struct bb_ir_block *b, json_object *c)
{
    if (!c) {
        b->text = bb_ir_strdup(r->a, "", 0);
        return b->text.p ? 0 : bb_rd_oom(r);
    }
    if (bb_json_is(c, json_type_string))
        return bb_rd_dup(r, c, &b->text);
    struct bb_vec bv = {0};
    if (rd_content(r, &bv, c, PARTS_TEXT))
        return -1;
    if (bv.n == 1) {
        b->text = ((struct bb_ir_block *)bv.v)[0].text;
    } else {
        b->content = bv.v;
        b->n_content = bv.n;
    }
    return 0;
}

/* An assistant message's blocks: thinking, content, refusal, tool calls, the legacy call. */
static int rd_assistant(struct rd *x, json_object *m, struct bb_vec *bv)
{
    struct bb_rd *r = &x->r;
    json_object *tb = bb_json_get(m, "thinking_blocks"), *rc = bb_json_get(m, "reasoning_content");
    if (tb) {
        size_t mark = bb_rd_in(r, "thinking_blocks");
        int e = rd_thinking_blocks(r, bv, tb);
        bb_rd_out(r, mark);
        if (e < 0)
            return -1;
    } else if (rc) {
        if (bb_rd_type(r, rc, "reasoning_content", json_type_string) < 0)
            return -1;
        if (json_object_get_string_len(rc) && bb_rd_push_text(r, bv, BB_IR_THINKING, rc) < 0)
            return -1;
    }
    if (rd_content(r, bv, bb_json_get(m, "content"), PARTS_ASSISTANT))
        return -1;
    json_object *refusal;
    if (bb_rd_want(r, m, "refusal", json_type_string, false, &refusal) < 0 ||
        (refusal && bb_rd_push_text(r, bv, BB_IR_TEXT, refusal) < 0))
        return -1;
    json_object *tc;
    if (bb_rd_want(r, m, "tool_calls", json_type_array, false, &tc) < 0)
        return -1;
    size_t n = tc ? json_object_array_length(tc) : 0;
    size_t mark = bb_rd_in(r, "tool_calls");
    for (size_t j = 0; j < n; j++) {
        size_t mk = bb_rd_at(r, j);
        int e = rd_tool_call(r, bv, json_object_array_get_idx(tc, j));
        bb_rd_out(r, mk);
        if (e < 0)
            return -1;
    }
    bb_rd_out(r, mark);
    json_object *fc = bb_json_get(m, "function_call");
    if (fc) { /* legacy single call: give it an id the function message can answer */
        json_object *fname = bb_json_get(fc, "name");
        if (!bb_json_is(fname, json_type_string))
            return bb_rd_expect(r, "function_call.name", "a string");
        struct bb_ir_block *b = BB_VEC_PUSH(r->a, bv, struct bb_ir_block);
        if (!b)
            return bb_rd_oom(r);
        char id[32];
        int idl = snprintf(id, sizeof id, "call_legacy_%u", x->n_legacy++);
        b->type = BB_IR_TOOL_USE;
        b->id = bb_ir_strdup(r->a, id, (size_t)idl);
        if (!b->id.p || bb_rd_dup(r, fname, &b->name) < 0)
            return bb_rd_oom(r);
        x->legacy_id = b->id;
        size_t mk = bb_rd_in(r, "function_call");
        int e = rd_arguments(r, bb_json_get(fc, "arguments"), &b->input_json);
        bb_rd_out(r, mk);
        if (e < 0)
            return -1;
    }
    if (bb_json_get(m, "audio") && bb_rd_unsupported(r, "", "messages.audio") < 0)
        return -1;
    return 0;
}

/* One message (the path at it). */
static int rd_message(struct rd *x, json_object *m)
{
    struct bb_rd *r = &x->r;
    struct bb_ir_request *q = r->req;
    json_object *role, *name;
    if (bb_rd_type(r, m, NULL, json_type_object) < 0 ||
        bb_rd_want(r, m, "role", json_type_string, false, &role) < 0)
        return -1;
    if (!role)
        return bb_rd_expect(r, "role", "a string");
    const char *ro = json_object_get_string(role);
    json_object *content = bb_json_get(m, "content");
    if (bb_rd_want(r, m, "name", json_type_string, false, &name) < 0)
        return -1;

    if ((strcmp(ro, "system") == 0 || strcmp(ro, "developer") == 0) && x->msgs.n) {
        /* among the turns: kept in its place (writers that cannot hold it fold it into the
         * system prompt, bb_proto_write_request) */
        struct bb_vec bv = {0};
        if (rd_content(r, &bv, content, PARTS_TEXT))
            return -1;
        struct bb_ir_message *im = bv.n ? rd_new_message(x, BB_IR_SYSTEM) : NULL;
        if (bv.n && !im)
            return bb_rd_oom(r);
        if (im) {
            im->blocks = bv.v;
            im->n_blocks = bv.n;
            x->last_is_tool = false;
        }
        return name ? bb_rd_unsupported(r, "", "system.name") : 0;
    }
    if (strcmp(ro, "system") == 0 || strcmp(ro, "developer") == 0) {
        struct bb_vec bv = {q->system, q->n_system, q->n_system};
        if (rd_content(r, &bv, content, PARTS_TEXT))
            return -1;
        q->system = bv.v;
        q->n_system = bv.n;
        return name ? bb_rd_unsupported(r, "", "system.name") : 0;
    }

    if (strcmp(ro, "tool") == 0) {
        json_object *id = bb_json_get(m, "tool_call_id");
        if (!bb_json_is(id, json_type_string))
            return bb_rd_expect(r, "tool_call_id", "a string");
        struct bb_ir_block *b = rd_tool_result(x);
        if (!b || bb_rd_dup(r, id, &b->id) < 0)
            return bb_rd_oom(r);
        b->name = rd_call_name(x, b->id.p);
        return rd_tool_content(r, b, content);
    }

    if (strcmp(ro, "function") == 0) { /* legacy: answers the last function_call */
        if (!name)
            return bb_rd_expect(r, "name", "a string");
        if (content && bb_rd_type(r, content, "content", json_type_string) < 0)
            return -1;
        struct bb_ir_block *b = rd_tool_result(x);
        if (!b || bb_rd_dup(r, name, &b->name) < 0)
            return bb_rd_oom(r);
        b->id = x->legacy_id.p ? x->legacy_id : bb_ir_strdup(r->a, "call_legacy_0", 13);
        if (!b->id.p)
            return bb_rd_oom(r);
        return rd_tool_content(r, b, content);
    }

    bool user = strcmp(ro, "user") == 0;
    if (!user && strcmp(ro, "assistant") != 0)
        return bb_rd_fail(r, "role", "unknown role '%s'", ro);

    struct bb_vec bv = {0};
    if (user) {
        if (!content)
            return bb_rd_required(r, "content");
        if (rd_content(r, &bv, content, PARTS_USER))
            return -1;
    } else if (rd_assistant(x, m, &bv) < 0) {
        return -1;
    }
    if (!bv.n) /* a turn that said nothing carries nothing across */
        return 0;
    struct bb_ir_message *im = rd_new_message(x, user ? BB_IR_USER : BB_IR_ASSISTANT);
    if (!im)
        return bb_rd_oom(r);
    im->blocks = bv.v;
    im->n_blocks = bv.n;
    x->last_is_tool = false;
    return name ? bb_rd_dup(r, name, &im->name) : 0;
}

/* A function definition (the path at it): {name, description?, parameters?, strict?}. */
static int rd_function_def(struct bb_rd *r, struct bb_ir_tool *t, json_object *fn)
{
    json_object *params;
    if (bb_rd_type(r, fn, NULL, json_type_object) < 0 ||
        bb_rd_str(r, fn, "name", false, &t->name) < 0 ||
        bb_rd_str(r, fn, "description", false, &t->description) < 0 ||
        bb_rd_want(r, fn, "parameters", json_type_object, false, &params) < 0 ||
        bb_rd_bool(r, fn, "strict", NULL, &t->strict) < 0)
        return -1;
    if (!t->name.p)
        return bb_rd_expect(r, "name", "a string");
    return params ? bb_rd_text(r, params, &t->parameters_json) : 0;
}

/* tools[] ({type:"function", function:{...}}) and the legacy functions[]. */
static int rd_tools(struct bb_rd *r, json_object *root)
{
    json_object *tools, *functions;
    if (bb_rd_want(r, root, "tools", json_type_array, false, &tools) < 0 ||
        bb_rd_want(r, root, "functions", json_type_array, false, &functions) < 0)
        return -1;
    struct bb_vec v = {0};
    size_t nt = tools ? json_object_array_length(tools) : 0;
    size_t nf = functions ? json_object_array_length(functions) : 0;
    for (size_t i = 0; i < nt + nf; i++) {
        bool legacy = i >= nt;
        json_object *t = legacy ? json_object_array_get_idx(functions, i - nt)
                                : json_object_array_get_idx(tools, i);
        size_t mark = bb_rd_in(r, legacy ? "functions" : "tools");
        bb_rd_at(r, legacy ? i - nt : i);
        int rc = 0;
        json_object *type = legacy ? NULL : bb_json_get(t, "type");
        if (!legacy && bb_rd_type(r, t, NULL, json_type_object) < 0) {
            rc = -1;
        } else if (type && bb_rd_type(r, type, "type", json_type_string) < 0) {
            rc = -1;
        } else if (type && !bb_json_str_eq(type, "function")) {
            rc = bb_rd_unsupported(r, "", "tools.custom");
        } else {
            struct bb_ir_tool *tool = BB_VEC_PUSH(r->a, &v, struct bb_ir_tool);
            if (!tool) {
                rc = bb_rd_oom(r);
            } else if (legacy) {
                rc = rd_function_def(r, tool, t);
            } else {
                bb_rd_in(r, "function");
                rc = rd_function_def(r, tool, bb_json_get(t, "function"));
            }
        }
        bb_rd_out(r, mark);
        if (rc < 0)
            return -1;
    }
    r->req->tools = v.v;
    r->req->n_tools = v.n;
    return 0;
}

static int rd_tool_choice(struct bb_rd *r, json_object *tc, const char *field)
{
    struct bb_ir_request *q = r->req;
    if (bb_json_is(tc, json_type_string)) {
        const char *s = json_object_get_string(tc);
        if (strcmp(s, "auto") == 0)
            q->tool_choice = BB_IR_TC_AUTO;
        else if (strcmp(s, "none") == 0)
            q->tool_choice = BB_IR_TC_NONE;
        else if (strcmp(s, "required") == 0)
            q->tool_choice = BB_IR_TC_ANY;
        else
            return bb_rd_fail(r, field, "unknown value '%s'", s);
        return 0;
    }
    if (!bb_json_is(tc, json_type_object))
        return bb_rd_expect(r, field, "a string or an object");
    const char *t = bb_json_get_str(tc, "type");
    if (!t)
        t = "function";
    if (strcmp(t, "allowed_tools") == 0) { /* keep the mode, lose the subset */
        bool req =
            bb_json_str_eq(bb_json_get(bb_json_get(tc, "allowed_tools"), "mode"), "required");
        q->tool_choice = req ? BB_IR_TC_ANY : BB_IR_TC_AUTO;
        return bb_rd_unsupported(r, "", "tool_choice.allowed_tools");
    }
    if (strcmp(t, "function") != 0)
        return bb_rd_unsupported(r, "", "tool_choice.custom");
    /* {type:function, function:{name}}, or legacy function_call {name} */
    json_object *fn = bb_json_get(tc, "function");
    json_object *name = bb_json_get(fn ? fn : tc, "name");
    if (!bb_json_is(name, json_type_string)) {
        size_t m = bb_rd_in(r, field);
        int rc = bb_rd_expect(r, "function.name", "a string");
        bb_rd_out(r, m);
        return rc;
    }
    q->tool_choice = BB_IR_TC_TOOL;
    return bb_rd_dup(r, name, &q->tool_choice_name);
}

static int rd_response_format(struct bb_rd *r, json_object *rf)
{
    struct bb_ir_request *q = r->req;
    const char *t = bb_json_get_str(rf, "type");
    if (!bb_json_is(rf, json_type_object) || !t)
        return bb_rd_expect(r, "response_format", "an object with a 'type'");
    if (strcmp(t, "text") == 0) {
        q->format = BB_IR_FMT_TEXT;
        return 0;
    }
    if (strcmp(t, "json_object") == 0) {
        q->format = BB_IR_FMT_JSON_OBJECT;
        return 0;
    }
    if (strcmp(t, "json_schema") != 0)
        return bb_rd_unsupported(r, "response_format.", t);
    size_t mark = bb_rd_in(r, "response_format");
    json_object *js, *schema = NULL;
    int rc = bb_rd_want(r, rf, "json_schema", json_type_object, false, &js);
    if (rc == 0 && !js)
        rc = bb_rd_expect(r, "json_schema", "an object");
    if (rc == 0) {
        bb_rd_in(r, "json_schema");
        rc = bb_rd_str(r, js, "name", false, &q->format_name) < 0 ||
                     bb_rd_want(r, js, "schema", json_type_object, false, &schema) < 0 ||
                     bb_rd_bool(r, js, "strict", NULL, &q->format_strict) < 0
                 ? -1
                 : 0;
    }
    bb_rd_out(r, mark);
    if (rc < 0)
        return -1;
    q->format = BB_IR_FMT_JSON_SCHEMA;
    if (schema && bb_rd_text(r, schema, &q->format_schema_json) < 0)
        return -1;
    if (bb_json_get(js, "description") &&
        bb_rd_unsupported(r, "", "response_format.json_schema.description") < 0)
        return -1;
    return 0;
}

static int rd_effort(struct bb_rd *r, json_object *e)
{
    static const struct {
        const char *name;
        enum bb_ir_effort effort;
    } map[] = {{"minimal", BB_IR_EFFORT_MINIMAL}, {"low", BB_IR_EFFORT_LOW},
               {"medium", BB_IR_EFFORT_MEDIUM},   {"high", BB_IR_EFFORT_HIGH},
               {"xhigh", BB_IR_EFFORT_HIGH},      {"max", BB_IR_EFFORT_HIGH}};
    if (bb_rd_type(r, e, "reasoning_effort", json_type_string) < 0)
        return -1;
    const char *s = json_object_get_string(e);
    if (strcmp(s, "none") == 0) /* reasoning explicitly off: the IR's default */
        return 0;
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        if (strcmp(s, map[i].name) == 0) {
            r->req->reasoning = true;
            r->req->reasoning_effort = map[i].effort;
            if (i >= 4) /* xhigh/max → high */
                return bb_rd_unsupported(r, "", "reasoning_effort");
            return 0;
        }
    }
    return bb_rd_fail(r, "reasoning_effort", "unknown value '%s'", s);
}

/* Top-level keys read below besides the table's; anything else set to a non-default value is
 * reported. */
static const char *const known_keys[] = {
    "model",
    "messages",
    "tools",
    "functions",
    "tool_choice",
    "function_call",
    "parallel_tool_calls",
    "stream",
    "stream_options",
    "response_format",
    "reasoning_effort",
    "user",
    "safety_identifier",
};

static int rd_unknown_keys(struct bb_rd *r, json_object *root)
{
    json_object_object_foreach(root, key, val)
    {
        bool known = bb_params_known(param_rows, N_PARAMS, key);
        for (size_t i = 0; i < sizeof known_keys / sizeof known_keys[0] && !known; i++)
            known = strcmp(key, known_keys[i]) == 0;
        if (known || !val || (bb_json_is(val, json_type_boolean) && !json_object_get_boolean(val)))
            continue;
        if (bb_rd_unsupported(r, "", key) < 0)
            return -1;
    }
    return 0;
}

static int rd_body(struct rd *x, json_object *root, const char *model_from_path)
{
    struct bb_rd *r = &x->r;
    struct bb_ir_request *q = r->req;
    if (!bb_json_is(root, json_type_object))
        return bb_err_set(r->err, "the request body must be a JSON object");

    json_object *model, *msgs, *v;
    if (bb_rd_want(r, root, "model", json_type_string, !model_from_path, &model) < 0)
        return -1;
    if (model_from_path) {
        q->model = bb_ir_strdup(r->a, model_from_path, strlen(model_from_path));
        if (!q->model.p)
            return bb_rd_oom(r);
    } else if (bb_rd_dup(r, model, &q->model) < 0) {
        return -1;
    }

    if (bb_rd_want(r, root, "messages", json_type_array, false, &msgs) < 0)
        return -1;
    if (!msgs)
        return bb_rd_expect(r, "messages", "an array");
    size_t nm = json_object_array_length(msgs);
    if (!nm)
        return bb_rd_fail(r, "messages", "must not be empty");

    /* tools first, so that nothing depends on order; messages need none of it */
    if (rd_tools(r, root) < 0)
        return -1;
    struct bb_rd_iter it = bb_rd_iter(r, msgs, "messages");
    json_object *el;
    while (bb_rd_next(&it, &el))
        if (rd_message(x, el) < 0)
            return -1;
    q->messages = x->msgs.v;
    q->n_messages = x->msgs.n;

    json_object *tc = bb_json_get(root, "tool_choice"), *fc = bb_json_get(root, "function_call");
    if (tc ? rd_tool_choice(r, tc, "tool_choice") : fc ? rd_tool_choice(r, fc, "function_call") : 0)
        return -1;
    if (bb_rd_bool(r, root, "parallel_tool_calls", &q->has_parallel_tool_calls,
                   &q->parallel_tool_calls) < 0 ||
        bb_rd_bool(r, root, "stream", NULL, &q->stream) < 0)
        return -1;
    json_object *so = bb_json_get(root, "stream_options");
    if (so) {
        json_object *iu = bb_json_get(so, "include_usage");
        if (!bb_json_is(so, json_type_object) || (iu && !bb_json_is(iu, json_type_boolean)))
            return bb_rd_expect(r, "stream_options.include_usage", "a boolean");
        q->include_usage = iu && json_object_get_boolean(iu);
        json_object *ob = bb_json_get(so, "include_obfuscation");
        if (ob && json_object_get_boolean(ob) &&
            bb_rd_unsupported(r, "", "stream_options.include_obfuscation") < 0)
            return -1;
    }
    if (bb_params_read(r, root, param_rows, N_PARAMS) < 0)
        return -1;
    if ((v = bb_json_get(root, "response_format")) && rd_response_format(r, v) < 0)
        return -1;
    if ((v = bb_json_get(root, "reasoning_effort")) && rd_effort(r, v) < 0)
        return -1;
    json_object *user, *sid;
    if (bb_rd_want(r, root, "user", json_type_string, false, &user) < 0 ||
        bb_rd_want(r, root, "safety_identifier", json_type_string, false, &sid) < 0)
        return -1;
    if ((user || sid) && bb_rd_dup(r, user ? user : sid, &q->user) < 0)
        return -1;
    return rd_unknown_keys(r, root);
}

static int openai_read_request(struct bb_arena *a, const char *body, size_t len,
                               const char *model_from_path, struct bb_ir_request *out,
                               struct bb_err *err)
{
    memset(out, 0, sizeof *out);
    json_object *root = bb_json_parse(body, len, "request body", err);
    if (!root)
        return -1;
    struct rd x;
    memset(&x, 0, sizeof x);
    bb_rd_init(&x.r, a, out, err);
    int rc = rd_body(&x, root, model_from_path);
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
static json_object *media_url(struct bb_arena *a, const struct bb_ir_block *b)
{
    if (!b->data.p)
        return bb_json_new_str(&b->url);
    struct bb_ir_str u = bb_media_data_url(a, &b->media_type, "application/octet-stream", &b->data);
    return u.p ? bb_json_new_str(&u) : NULL;
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

static json_object *wr_part(struct bb_arena *a, const struct bb_ir_block *b)
{
    json_object *p = json_object_new_object();
    switch (b->type) {
    case BB_IR_IMAGE: {
        json_object *iu = json_object_new_object();
        json_object_object_add(iu, "url", media_url(a, b));
        json_object_object_add(p, "type", json_object_new_string("image_url"));
        json_object_object_add(p, "image_url", iu);
        break;
    }
    case BB_IR_DOCUMENT: {
        json_object *f = json_object_new_object();
        json_object_object_add(f, "filename", json_object_new_string("document.pdf"));
        json_object_object_add(f, "file_data", media_url(a, b));
        json_object_object_add(p, "type", json_object_new_string("file"));
        json_object_object_add(p, "file", f);
        break;
    }
    default:
        json_object_object_add(p, "type", json_object_new_string("text"));
        json_object_object_add(p, "text", bb_json_new_str(&b->text));
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
        return bb_json_new_str(&only->text);
    json_object *arr = json_object_new_array();
    for (size_t i = 0; i < n; i++)
        if (ok[i])
            json_object_array_add(arr, wr_part(w->a, &b[i]));
    return arr;
}

/* A tool result's text: its flat text, else its nested text blocks joined by newlines. */
static json_object *wr_tool_text(struct wr *w, const struct bb_ir_block *b)
{
    struct bb_ir_block tmp;
    b = bb_ir_error_result(w->a, b, &tmp); /* the error flag in the text */
    if (b->is_error)
        bb_proto_drop(w->a, w->ctx, "is_error");
    if (has_text(&b->text) || !b->n_content)
        return bb_json_new_str(&b->text);
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
    json_object_object_add(fn, "name", bb_json_new_str(&b->name));
    if (b->input_json.p && b->input_json.len)
        json_object_object_add(fn, "arguments", bb_json_new_str(&b->input_json));
    else
        json_object_object_add(fn, "arguments", json_object_new_string("{}"));
    json_object *tc = json_object_new_object();
    json_object_object_add(tc, "id", bb_json_new_str(&b->id));
    json_object_object_add(tc, "type", json_object_new_string("function"));
    json_object_object_add(tc, "function", fn);
    return tc;
}

static json_object *wr_system(struct wr *w, const struct bb_ir_request *ir);

static void wr_message(struct wr *w, json_object *msgs, const struct bb_ir_message *m)
{
    if (m->role == BB_IR_SYSTEM) { /* in its place */
        struct bb_ir_request one = {.system = m->blocks, .n_system = m->n_blocks};
        json_object *sys = wr_system(w, &one);
        if (sys)
            json_object_array_add(msgs, sys);
        return;
    }
    if (m->role == BB_IR_USER) {
        /* tool results first: OpenAI wants them right after the assistant's tool_calls */
        for (size_t i = 0; i < m->n_blocks; i++) {
            const struct bb_ir_block *b = &m->blocks[i];
            if (b->type != BB_IR_TOOL_RESULT)
                continue;
            json_object *o = json_object_new_object();
            json_object_object_add(o, "role", json_object_new_string("tool"));
            json_object_object_add(o, "tool_call_id", bb_json_new_str(&b->id));
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
            json_object_object_add(o, "name", bb_json_new_str(&m->name));
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
        json_object_object_add(o, "name", bb_json_new_str(&m->name));
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
            json_object_object_add(fn, "name", bb_json_new_str(&t->name));
            if (t->description.p)
                json_object_object_add(fn, "description", bb_json_new_str(&t->description));
            if (t->parameters_json.p) {
                json_object *p = bb_json_raw(&t->parameters_json);
                if (!bb_json_is(p, json_type_object)) {
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
            json_object_object_add(fn, "name", bb_json_new_str(&ir->tool_choice_name));
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

    bb_params_write(root, param_rows, N_PARAMS, ir, w->a, ctx, NULL, NULL);

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
                               ir->format_name.p ? bb_json_new_str(&ir->format_name)
                                                 : json_object_new_string("response"));
        if (ir->format_schema_json.p) {
            json_object *s = bb_json_raw(&ir->format_schema_json);
            if (!bb_json_is(s, json_type_object)) {
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
        json_object_object_add(root, "user", bb_json_new_str(&ir->user));
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
    snprintf(out->path, sizeof out->path, "%s", bb_proto_openai.path);
    const char *key = ctx->provider ? ctx->provider->api_key : NULL;
    if (bb_proto_put(out->headers, "Content-Type: application/json\r\n", NULL, NULL) < 0 ||
        bb_proto_bearer(out->headers, key) < 0)
        return bb_err_set(err, "out of memory writing the upstream headers");
    struct wr w = {.a = a, .err = err, .ctx = ctx};
    json_object *root = json_object_new_object();
    if (!root)
        return bb_err_set(err, "out of memory writing the upstream body");
    bb_proto_drop_hosted(a, ctx, ir, NULL); /* chat completions has no provider-run tools */
    int rc = wr_body(&w, root, ir, ctx);
    if (rc == 0 && bb_json_append(out->body, root))
        rc = bb_err_set(err, "out of memory writing the upstream body");
    json_object_put(root);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* egress: read_response                                                                      */
/* ------------------------------------------------------------------------------------------ */

/* The assistant message of a chat.completion (choices[0].message) into blocks; the path is
 * the message's. */
static int rr_message(struct bb_rd *r, json_object *msg, struct bb_vec *bv, bool *refusal)
{
    json_object *tb = bb_json_get(msg, "thinking_blocks");
    json_object *rc = bb_json_get(msg, "reasoning_content");
    if (!rc)
        rc = bb_json_get(msg, "reasoning"); /* OpenRouter, newer vLLM */
    if (bb_json_is(tb, json_type_array) && json_object_array_length(tb)) {
        size_t m = bb_rd_in(r, "thinking_blocks");
        int e = rd_thinking_blocks(r, bv, tb);
        bb_rd_out(r, m);
        if (e < 0)
            return -1;
    } else if (bb_json_has_text(rc) && bb_rd_push_text(r, bv, BB_IR_THINKING, rc) < 0) {
        return -1;
    }
    json_object *content = bb_json_get(msg, "content"), *ref = bb_json_get(msg, "refusal");
    json_object *text = bb_json_is(content, json_type_string) ? content
                        : bb_json_is(ref, json_type_string)   ? ref
                                                              : NULL;
    if (text) {
        struct bb_ir_block *b = BB_VEC_PUSH(r->a, bv, struct bb_ir_block);
        if (!b)
            return bb_rd_oom(r);
        b->type = BB_IR_TEXT;
        if (bb_rd_dup(r, text, &b->text) < 0)
            return -1;
        *refusal = text == ref;
        json_object *ann = bb_json_get(msg, "annotations");
        if (bb_json_is(ann, json_type_array) && json_object_array_length(ann) &&
            bb_rd_text(r, ann, &b->citations_json) < 0)
            return -1;
    }
    json_object *tc = bb_json_get(msg, "tool_calls");
    size_t n = bb_json_is(tc, json_type_array) ? json_object_array_length(tc) : 0;
    for (size_t j = 0; j < n; j++) {
        json_object *call = json_object_array_get_idx(tc, j);
        json_object *fn = bb_json_get(call, "function"), *args = bb_json_get(fn, "arguments");
        if (!bb_json_is(bb_json_get(fn, "name"), json_type_string))
            continue; /* custom tool calls have no IR form */
        struct bb_ir_block *b = BB_VEC_PUSH(r->a, bv, struct bb_ir_block);
        if (!b)
            return bb_rd_oom(r);
        b->type = BB_IR_TOOL_USE;
        if (bb_rd_take(r, call, "id", &b->id) < 0 || bb_rd_take(r, fn, "name", &b->name) < 0)
            return -1;
        if (!b->id.p) {
            char synth[32];
            int sl = snprintf(synth, sizeof synth, "call_%zu", j);
            if (!(b->id = bb_ir_strdup(r->a, synth, (size_t)sl)).p)
                return bb_rd_oom(r);
        }
        int e = bb_json_has_text(args)               ? bb_rd_dup(r, args, &b->input_json)
                : bb_json_is(args, json_type_object) ? bb_rd_text(r, args, &b->input_json)
                                                     : 0;
        if (e < 0)
            return -1;
        if (!b->input_json.p && !(b->input_json = bb_ir_strdup(r->a, "{}", 2)).p)
            return bb_rd_oom(r);
    }
    json_object *fc = bb_json_get(msg, "function_call");
    if (!n && bb_json_is(bb_json_get(fc, "name"), json_type_string)) {
        struct bb_ir_block *b = BB_VEC_PUSH(r->a, bv, struct bb_ir_block);
        if (!b)
            return bb_rd_oom(r);
        json_object *args = bb_json_get(fc, "arguments");
        b->type = BB_IR_TOOL_USE;
        b->id = bb_ir_strdup(r->a, "call_legacy_0", 13);
        if (!b->id.p || bb_rd_take(r, fc, "name", &b->name) < 0)
            return bb_rd_oom(r);
        b->input_json =
            bb_json_has_text(args) ? bb_json_dup(r->a, args) : bb_ir_strdup(r->a, "{}", 2);
        if (!b->input_json.p)
            return bb_rd_oom(r);
    }
    return 0;
}

static int openai_read_response(struct bb_arena *a, const char *body, size_t len,
                                struct bb_ir_response *out, struct bb_err *err)
{
    memset(out, 0, sizeof *out);
    json_object *root = bb_json_parse(body, len, "upstream response", err);
    if (!root)
        return -1;
    struct bb_rd r;
    bb_rd_init(&r, a, NULL, err);
    r.prefix = "upstream response";
    int rc = 0;
    json_object *choices = bb_json_get(root, "choices");
    json_object *e = bb_json_get(root, "error");
    if (!bb_json_is(root, json_type_object)) {
        rc = bb_rd_expect(&r, NULL, "a JSON object");
    } else if (e) {
        const char *m = bb_json_get_str(e, "message");
        rc = bb_err_set(err, "upstream error: %s",
                        m                                 ? m
                        : bb_json_is(e, json_type_string) ? bb_json_str(e)
                                                          : "(no message)");
    } else if (!bb_json_is(choices, json_type_array)) {
        rc = bb_rd_expect(&r, "choices", "an array");
    } else if (bb_rd_take(&r, root, "id", &out->id) < 0 ||
               bb_rd_take(&r, root, "model", &out->model) < 0) {
        rc = -1;
    } else {
        int64_t created;
        if (bb_json_int(bb_json_get(root, "created"), 0, INT64_MAX, &created))
            out->created = created;
        /* the IR carries one message: choice 0 (n > 1 answers lose the others) */
        json_object *choice = NULL;
        for (size_t i = 0; i < json_object_array_length(choices) && !choice; i++) {
            json_object *c = json_object_array_get_idx(choices, i);
            if (bb_json_count(c, "index") == 0)
                choice = c;
        }
        struct bb_vec bv = {0};
        bool refusal = false;
        size_t m = bb_rd_in(&r, "message");
        if (choice)
            rc = rr_message(&r, bb_json_get(choice, "message"), &bv, &refusal);
        bb_rd_out(&r, m);
        out->blocks = bv.v;
        out->n_blocks = bv.n;
        out->stop = stop_from_finish(bb_json_get_str(choice, "finish_reason"));
        if (refusal && out->stop == BB_IR_STOP_END_TURN)
            out->stop = BB_IR_STOP_REFUSAL;
        usage_read(bb_json_get(root, "usage"), &out->usage);
    }
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
        json_object_object_add(o, "data", bb_json_new_str(&b->signature));
    } else {
        json_object_object_add(o, "type", json_object_new_string("thinking"));
        json_object_object_add(o, "thinking", bb_json_new_str(&b->text));
        json_object_object_add(o, "signature", bb_json_new_str(&b->signature));
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
        json_object_object_add(root, "id", bb_json_new_str(&r->id));
    } else {
        char id[160];
        int n = snprintf(id, sizeof id, "chatcmpl-%s", ctx->request_id ? ctx->request_id : "0");
        json_object_object_add(
            root, "id", bb_json_new_strn(id, (size_t)n < sizeof id ? (size_t)n : sizeof id - 1));
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
    int rc = bb_json_append(out, root);
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
    /* tool blocks (bb_eseq): the wire index is the tool call's index (seq.next_wire: calls
     * started). A stopped block stays (CLOSED) until its slot is needed: a decoder of
     * interleaved calls may send arguments to a block after its BLOCK_STOP. */
    struct bb_eseq seq;
    struct bb_ir_usage usage; /* the largest totals seen */
};

#define ARGS 1u   /* arguments were sent */
#define CLOSED 2u /* BLOCK_STOP seen */

/* Track tool block ir, making room by forgetting the oldest stopped one; NULL when every
 * slot holds an open block. */
static struct bb_eseq_block *enc_tool_open(struct enc *e, uint32_t ir)
{
    for (size_t i = 0; i < e->seq.n_open && e->seq.n_open == BB_ESEQ_MAX; i++)
        if (e->seq.open[i].flags & CLOSED)
            bb_eseq_remove(&e->seq, &e->seq.open[i]);
    return bb_eseq_open(&e->seq, ir, BB_IR_TOOL_USE, true);
}

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
    return bb_json_sse_send(out, NULL, c);
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
                           json_object_new_string(finish_name(e->stop, e->seq.next_wire > 0)));
    e->finish_sent = true;
    return chunk_send(c, out);
}

/* The tool call index of the TOOL_USE block at IR index `index` (one that was never started,
 * or not tracked: the last call's). */
static uint32_t enc_tool_k(struct enc *e, uint32_t index)
{
    struct bb_eseq_block *b = bb_eseq_find(&e->seq, index);
    if (b)
        return b->wire;
    return e->seq.next_wire ? e->seq.next_wire - 1 : 0;
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
    json_object_object_add(tb, key, bb_json_new_str(val));
    json_object *arr = json_object_new_array();
    json_object_array_add(arr, tb);
    return send_delta(e, "thinking_blocks", arr, out);
}

static int enc_block_start(struct enc *e, const struct bb_ir_event *ev, struct evbuffer *out)
{
    if (ev->block_type == BB_IR_REDACTED_THINKING && ev->text.p && ev->text.len)
        return send_thinking_block(e, "redacted_thinking", "data", &ev->text, out);
    if (ev->block_type != BB_IR_TOOL_USE || bb_eseq_find(&e->seq, ev->index))
        return 0; /* (a block started twice: the first one stands) */
    struct bb_eseq_block *b = enc_tool_open(e, ev->index);
    /* more open at once than any dialect has: the call still goes out, untracked */
    uint32_t k = b ? b->wire : e->seq.next_wire++;
    json_object *fn = json_object_new_object();
    json_object_object_add(fn, "name", bb_json_new_str(&ev->name));
    json_object_object_add(fn, "arguments", json_object_new_string(""));
    json_object *tc = tool_call_delta(k);
    json_object_object_add(tc, "id", bb_json_new_str(&ev->id));
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
        return send_delta(e, "content", bb_json_new_str(&ev->text), out);
    case BB_IR_D_THINKING:
        return send_delta(e, "reasoning_content", bb_json_new_str(&ev->text), out);
    case BB_IR_D_SIGNATURE:
        return send_thinking_block(e, "thinking", "signature", &ev->text, out);
    case BB_IR_D_REDACTED:
        return send_thinking_block(e, "redacted_thinking", "data", &ev->text, out);
    case BB_IR_D_INPUT_JSON: {
        struct bb_eseq_block *b = bb_eseq_find(&e->seq, ev->index);
        if (b)
            b->flags |= ARGS;
        json_object *fn = json_object_new_object();
        json_object_object_add(fn, "arguments", bb_json_new_str(&ev->text));
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
    struct bb_eseq_block *b = bb_eseq_find(&e->seq, ev->index);
    if (!b || (b->flags & CLOSED))
        return 0;
    b->flags |= CLOSED;
    uint32_t k = b->wire;
    if (b->flags & ARGS)
        return 0;
    json_object *fn = json_object_new_object();
    json_object_object_add(fn, "arguments", json_object_new_string("{}"));
    json_object *tc = tool_call_delta(k);
    json_object_object_add(tc, "function", fn);
    json_object *arr = json_object_new_array();
    json_object_array_add(arr, tc);
    return send_delta(e, "tool_calls", arr, out);
}

static int enc_error(struct enc *e, const struct bb_ir_event *ev, struct evbuffer *out)
{
    json_object *err = json_object_new_object();
    json_object_object_add(err, "message",
                           ev->text.p ? bb_json_new_str(&ev->text)
                                      : json_object_new_string("upstream error"));
    json_object_object_add(err, "type",
                           ev->error_type.p && ev->error_type.len
                               ? bb_json_new_str(&ev->error_type)
                               : json_object_new_string("server_error"));
    json_object_object_add(err, "param", NULL);
    json_object_object_add(err, "code", NULL);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "error", err);
    e->done = true; /* no [DONE] after an error: the client must not see a clean end */
    return bb_json_sse_send(out, NULL, o);
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
        bb_ir_usage_max(&e->usage, &ev->usage);
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
        bb_ir_usage_max(&e->usage, &ev->usage);
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
    struct bb_dseq seq;
    uint32_t n_tools, n_open_tools;
    struct {
        int64_t oai;
        uint32_t ir;
        bool open; /* its BLOCK_STOP is still to come (at the finish) */
    } tools[DEC_TOOLS_MAX];
    enum bb_ir_stop stop;
    struct bb_ir_usage usage;
};

struct dctx {
    struct dec *d;
    struct bb_dout o;
};

static void openai_dec_init(void *decp)
{
    memset(decp, 0, sizeof(struct dec));
}

static int d_emit(struct dctx *x, struct bb_ir_event *ev)
{
    return bb_dout_emit(&x->o, ev);
}

/* Close every tool call still open. */
static int d_close_tools(struct dctx *x)
{
    struct dec *d = x->d;
    int rc = 0;
    uint32_t n = d->n_tools < DEC_TOOLS_MAX ? d->n_tools : DEC_TOOLS_MAX;
    for (uint32_t k = 0; k < n && d->n_open_tools && !rc; k++) { /* (none: every text delta) */
        if (!d->tools[k].open)
            continue;
        d->tools[k].open = false;
        d->n_open_tools--;
        struct bb_ir_event ev = {
            .type = BB_IR_EV_BLOCK_STOP, .index = d->tools[k].ir, .block_type = BB_IR_TOOL_USE};
        rc = d_emit(x, &ev);
    }
    return rc;
}

/* Close the open text or reasoning block, and every tool call still open. */
static int d_close(struct dctx *x)
{
    int rc = bb_dseq_close(&x->d->seq, &x->o);
    return rc ? rc : d_close_tools(x);
}

/* A tool call's block: open until the finish, so arguments that providers interleave between
 * parallel calls reach their call while it is open (IR blocks may interleave; bb_eseq). */
static int d_open_tool(struct dctx *x, struct bb_ir_str id, struct bb_ir_str name, uint32_t *index)
{
    struct dec *d = x->d;
    if (d->n_tools >= DEC_TOOLS_MAX) { /* untracked: one block at a time, as text */
        int rc = bb_dseq_open(&d->seq, &x->o, -1, BB_IR_TOOL_USE, &id, &name);
        *index = d->seq.index;
        return rc;
    }
    int rc = bb_dseq_close(&d->seq, &x->o); /* the text or reasoning before it */
    if (rc)
        return rc;
    *index = d->seq.next++;
    struct bb_ir_event ev = {.type = BB_IR_EV_BLOCK_START,
                             .index = *index,
                             .block_type = BB_IR_TOOL_USE,
                             .id = id,
                             .name = name};
    return d_emit(x, &ev);
}

/* Close the open block and start a new one of type t; its index is x->d->seq.index. */
static int d_open(struct dctx *x, enum bb_ir_block_type t, struct bb_ir_str id,
                  struct bb_ir_str name)
{
    int rc = d_close_tools(x); /* text or reasoning never beside an open call */
    return rc ? rc : bb_dseq_open(&x->d->seq, &x->o, -1, t, &id, &name);
}

/* A text-like delta into a block of type t, opening one when another kind is open. */
static int d_text(struct dctx *x, enum bb_ir_block_type t, enum bb_ir_delta kind, json_object *s)
{
    if (!bb_json_has_text(s))
        return 0;
    int rc = d_close_tools(x); /* text or reasoning never beside an open call */
    if (rc)
        return rc;
    return bb_dseq_text(&x->d->seq, &x->o, t, kind, json_object_get_string(s),
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
    json_object *id = bb_json_get(chunk, "id"), *model = bb_json_get(chunk, "model");
    if (bb_json_is(id, json_type_string) && json_object_get_string_len(id))
        ev.id = bb_json_dup(x->o.scratch, id);
    if (bb_json_is(model, json_type_string) && json_object_get_string_len(model))
        ev.model = bb_json_dup(x->o.scratch, model);
    return d_emit(x, &ev);
}

/* tool_calls[] of a delta: a new index opens a TOOL_USE block; arguments are deltas of it. */
static int d_tool_call(struct dctx *x, json_object *tc, int64_t oai_index)
{
    struct dec *d = x->d;
    json_object *fn = bb_json_get(tc, "function");
    if (!fn)
        fn = tc; /* legacy delta.function_call: {name, arguments} itself */
    json_object *args = bb_json_get(fn, "arguments");
    int64_t idx = oai_index;
    json_object *jidx = bb_json_get(tc, "index");
    if (bb_json_is(jidx, json_type_int))
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
        json_object *id = bb_json_get(tc, "id"), *name = bb_json_get(fn, "name");
        struct bb_ir_str sid = {NULL, 0}, sname = {NULL, 0};
        if (bb_json_has_text(id)) {
            sid = bb_json_dup(x->o.scratch, id);
        } else {
            char synth[32];
            int sl = idx < 0 ? snprintf(synth, sizeof synth, "call_legacy_0")
                             : snprintf(synth, sizeof synth, "call_%" PRId64, idx);
            sid = bb_ir_strdup(x->o.scratch, synth, (size_t)sl);
        }
        sname = bb_json_is(name, json_type_string) ? bb_json_dup(x->o.scratch, name)
                                                   : bb_ir_strdup(x->o.scratch, "", 0);
        if (!sid.p || !sname.p)
            return -1;
        int rc = d_open_tool(x, sid, sname, &block);
        if (rc)
            return rc;
        if (d->n_tools < DEC_TOOLS_MAX) {
            d->tools[d->n_tools].oai = idx;
            d->tools[d->n_tools].ir = block;
            d->tools[d->n_tools].open = true;
            d->n_open_tools++;
        }
        d->n_tools++;
    }
    if (!bb_json_has_text(args))
        return 0;
    /* to the call's own block: providers interleave the fragments of parallel calls */
    return bb_dseq_delta_at(&x->o, block, BB_IR_TOOL_USE, BB_IR_D_INPUT_JSON,
                            json_object_get_string(args), (size_t)json_object_get_string_len(args));
}

static int d_thinking_blocks(struct dctx *x, json_object *tb, bool have_reasoning_text)
{
    size_t n = json_object_array_length(tb);
    struct bb_ir_str none = {NULL, 0};
    for (size_t i = 0; i < n; i++) {
        json_object *t = json_object_array_get_idx(tb, i);
        json_object *type = bb_json_get(t, "type");
        int rc = 0;
        if (bb_json_is(type, json_type_string) &&
            strcmp(json_object_get_string(type), "redacted_thinking") == 0) {
            json_object *data = bb_json_get(t, "data");
            if (!bb_json_is(data, json_type_string))
                continue;
            if ((rc = d_open(x, BB_IR_REDACTED_THINKING, none, none)) ||
                (rc = bb_dseq_delta(&x->d->seq, &x->o, BB_IR_D_REDACTED,
                                    json_object_get_string(data),
                                    (size_t)json_object_get_string_len(data))))
                return rc;
            continue;
        }
        if (!have_reasoning_text &&
            (rc = d_text(x, BB_IR_THINKING, BB_IR_D_THINKING, bb_json_get(t, "thinking"))))
            return rc;
        json_object *sig = bb_json_get(t, "signature");
        if (!bb_json_is(sig, json_type_string) || json_object_get_string_len(sig) == 0)
            continue;
        if (!x->d->seq.open || x->d->seq.type != BB_IR_THINKING)
            if ((rc = d_open(x, BB_IR_THINKING, none, none)))
                return rc;
        if ((rc = bb_dseq_delta(&x->d->seq, &x->o, BB_IR_D_SIGNATURE, json_object_get_string(sig),
                                (size_t)json_object_get_string_len(sig))))
            return rc;
    }
    return 0;
}

static int d_choice(struct dctx *x, json_object *choice)
{
    struct dec *d = x->d;
    json_object *delta = d->finish_seen ? NULL : bb_json_get(choice, "delta"); /* nothing after */
    int rc;
    json_object *rc_text = bb_json_get(delta, "reasoning_content");
    if (!rc_text)
        rc_text = bb_json_get(delta, "reasoning");
    if ((rc = d_text(x, BB_IR_THINKING, BB_IR_D_THINKING, rc_text)))
        return rc;
    json_object *tb = bb_json_get(delta, "thinking_blocks");
    if (bb_json_is(tb, json_type_array) &&
        (rc = d_thinking_blocks(x, tb, bb_json_is(rc_text, json_type_string))))
        return rc;
    if ((rc = d_text(x, BB_IR_TEXT, BB_IR_D_TEXT, bb_json_get(delta, "content"))))
        return rc;
    json_object *refusal = bb_json_get(delta, "refusal");
    if (bb_json_is(refusal, json_type_string) && json_object_get_string_len(refusal)) {
        d->refusal = true;
        if ((rc = d_text(x, BB_IR_TEXT, BB_IR_D_TEXT, refusal)))
            return rc;
    }
    json_object *tcs = bb_json_get(delta, "tool_calls");
    size_t n = bb_json_is(tcs, json_type_array) ? json_object_array_length(tcs) : 0;
    for (size_t i = 0; i < n; i++)
        if ((rc = d_tool_call(x, json_object_array_get_idx(tcs, i), (int64_t)i)))
            return rc;
    json_object *fc = bb_json_get(delta, "function_call"); /* legacy: one call, index -1 */
    if (bb_json_is(fc, json_type_object) && (rc = d_tool_call(x, fc, -1)))
        return rc;
    json_object *fr = bb_json_get(choice, "finish_reason");
    if (bb_json_is(fr, json_type_string) && !d->finish_seen) {
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
    json_object *e = bb_json_get(o, "error");
    json_object *src = bb_json_is(e, json_type_object) ? e : o;
    json_object *msg = bb_json_is(e, json_type_string) ? e : bb_json_get(src, "message");
    json_object *type = bb_json_get(src, "type"), *code = bb_json_get(src, "code");
    struct bb_ir_event ev = {.type = BB_IR_EV_ERROR};
    const char *m =
        bb_json_is(msg, json_type_string) ? json_object_get_string(msg) : "upstream error";
    ev.text = bb_ir_strdup(x->o.scratch, m, strlen(m));
    ev.error_type = bb_json_dup(x->o.scratch, bb_json_is(type, json_type_string) ? type : code);
    int64_t status;
    if (bb_json_int(code, 0, 999, &status))
        ev.error_status = (int)status;
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
    if (bb_json_get(o, "error"))
        return d_error(x, o);
    json_object *choices = bb_json_get(o, "choices"), *u = bb_json_get(o, "usage");
    size_t n = bb_json_is(choices, json_type_array) ? json_object_array_length(choices) : 0;
    /* Azure opens with a choice-less chunk of prompt_filter_results (empty id and model):
     * the message starts with the first chunk that carries something */
    if (!n && !bb_json_is(u, json_type_object))
        return 0;
    if ((rc = d_start(x, o)))
        return rc;
    for (size_t i = 0; i < n; i++) {
        json_object *c = json_object_array_get_idx(choices, i);
        json_object *idx = bb_json_get(c, "index");
        if (idx && json_object_get_int64(idx) != 0)
            continue; /* the IR carries choice 0 only */
        if ((rc = d_choice(x, c)))
            return rc;
    }
    if (bb_json_is(u, json_type_object)) {
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
    struct dctx x = {.d = decp, .o = {cb, arg, scratch}};
    if (x.d->done)
        return 0;
    if (data_is(f, "[DONE]"))
        return d_done(&x);
    if (data_is(f, ""))
        return 0; /* keep-alive or an empty event */
    json_object *o = bb_json_parse(f->data, f->data_len, "chunk", NULL);
    if (!bb_json_is(o, json_type_object)) {
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

/* {"error":{message,type,code,param}} (code a string, a number or null); also the shapes
 * OpenAI-compatible servers use: {"error":"text"}, vLLM's top-level {"message","type","code"},
 * and a one-element array around either (Google's compatibility endpoint). */
static int openai_read_error(const char *body, size_t len, struct bb_proto_error *out)
{
    memset(out, 0, sizeof *out);
    json_object *root = bb_json_parse(body, len, "error", NULL);
    if (!root)
        return -1;
    json_object *o = root;
    if (bb_json_is(o, json_type_array) && json_object_array_length(o))
        o = json_object_array_get_idx(o, 0);
    json_object *e = bb_json_get(o, "error");
    json_object *src = bb_json_is(e, json_type_object) ? e : o;
    if (bb_json_is(e, json_type_string))
        bb_json_copy(out->message, sizeof out->message, e);
    else
        bb_json_copy(out->message, sizeof out->message, bb_json_get(src, "message"));
    bb_json_copy(out->type, sizeof out->type, bb_json_get(src, "type"));
    bb_json_copy(out->code, sizeof out->code, bb_json_get(src, "code"));
    json_object_put(root);
    return out->message[0] || out->type[0] || out->code[0] ? 0 : -1;
}

/* usage_read over the bytes of a usage object (no DOM). */
static void openai_usage_scan(const char *u, size_t n, struct bb_ir_usage *out)
{
    static const char *const keys[4] = {"prompt_tokens", "completion_tokens",
                                        "prompt_tokens_details", "completion_tokens_details"};
    bb_proto_usage_scan_oai(u, n, keys, out);
}

/* A chat completion has `choices`; OpenAI and compatible servers may answer 200 with an
 * `error` object instead. */
static int openai_answer_check(const char *body, size_t len, struct bb_ir_usage *usage,
                               struct bb_proto_error *out)
{
    struct bb_jscan_field f[3] = {{.key = "error"}, {.key = "choices"}, {.key = "usage"}};
    if (bb_proto_scan_answer(body, len, f, 3, out) < 0)
        return -1;
    if (f[0].type != BB_JNONE && f[0].type != BB_JNULL)
        return bb_proto_inband(&bb_proto_openai, body, len, out);
    if (f[1].type != BB_JARRAY) {
        snprintf(out->message, sizeof out->message, "no 'choices' array");
        return -1;
    }
    if (usage && f[2].type == BB_JOBJECT)
        openai_usage_scan(body + f[2].off, f[2].len, usage);
    return 0;
}

/* The stream ended without "data: [DONE]": finished when its finish_reason arrived. */
static int openai_dec_finish(void *decp, struct bb_arena *scratch, bb_ir_event_cb cb, void *arg)
{
    struct dec *d = decp;
    if (d->done || !d->finish_seen)
        return 0;
    struct dctx x = {d, {cb, arg, scratch}};
    return d_done(&x);
}

/* frame_scan: a chunk is meaningful with non-empty content, reasoning, refusal or tool calls in
 * choice 0's delta, its finish_reason is the stop, [DONE] the end; usage after the stop is the
 * message delta. */
static int openai_frame_scan_1(const struct bb_frame *f, struct bb_frame_state *st, bool stopped,
                               struct bb_frame_info *out)
{
    memset(out, 0, sizeof *out);
    if (data_is(f, "[DONE]")) {
        out->content = out->stop = out->end = true;
        return 0;
    }
    if (data_is(f, ""))
        return 0;
    struct bb_jscan_field t[3] = {{.key = "error"}, {.key = "choices"}, {.key = "usage"}};
    struct bb_err err;
    if (bb_jscan_object(f->data, f->data_len, t, 3, 128, &err) < 0)
        return -1;
    if (t[0].type != BB_JNONE && t[0].type != BB_JNULL)
        return bb_proto_frame_error(&bb_proto_openai, f->data, f->data_len, "upstream error", out);
    const char *arr = f->data + t[1].off;
    struct bb_jscan_field el;
    bool any_choice = t[1].type == BB_JARRAY && bb_jscan_element(arr, t[1].len, 0, &el);
    for (size_t i = 0; any_choice && bb_jscan_element(arr, t[1].len, i, &el); i++) {
        if (el.type != BB_JOBJECT)
            continue;
        const char *c = arr + el.off;
        struct bb_jscan_field cf[3] = {
            {.key = "index"}, {.key = "delta"}, {.key = "finish_reason"}};
        uint64_t idx = 0;
        bb_jscan_object(c, el.len, cf, 3, 128, &err);
        if (cf[0].type == BB_JNUMBER && (!bb_jscan_u64(c + cf[0].off, cf[0].len, &idx) || idx))
            continue; /* the IR carries choice 0 only */
        if (!stopped && !out->stop && cf[1].type == BB_JOBJECT) {
            struct bb_jscan_field df[7] = {{.key = "content"},        {.key = "reasoning_content"},
                                           {.key = "reasoning"},      {.key = "refusal"},
                                           {.key = "tool_calls"},     {.key = "function_call"},
                                           {.key = "thinking_blocks"}};
            const char *d = c + cf[1].off;
            struct bb_jscan_field e0;
            bb_jscan_object(d, cf[1].len, df, 7, 128, &err);
            out->content =
                out->content || bb_proto_nonempty_str(&df[0]) || bb_proto_nonempty_str(&df[1]) ||
                bb_proto_nonempty_str(&df[2]) || bb_proto_nonempty_str(&df[3]) ||
                df[5].type == BB_JOBJECT ||
                (df[4].type == BB_JARRAY && bb_jscan_element(d + df[4].off, df[4].len, 0, &e0)) ||
                (df[6].type == BB_JARRAY && bb_jscan_element(d + df[6].off, df[6].len, 0, &e0));
        }
        if (cf[2].type == BB_JSTRING)
            out->stop = true;
    }
    if (t[2].type == BB_JOBJECT) {
        openai_usage_scan(f->data + t[2].off, t[2].len, &out->usage);
        if (stopped || out->stop)
            out->content = true; /* the message delta */
        out->usage_only = t[1].type == BB_JARRAY && !any_choice;
    }
    return 0;
}

static int openai_frame_scan(const struct bb_frame *f, struct bb_frame_state *st,
                             struct bb_frame_info *out)
{
    bool stopped = st->stopped;
    int rc = openai_frame_scan_1(f, st, stopped, out);
    st->stopped = st->stopped || out->stop;
    return rc;
}

/* OpenAI's final usage chunk ({"choices":[], "usage":{…}}): what busbar asked for itself. */
static bool openai_usage_only(const struct bb_frame *f)
{
    if (!f->data || !memmem(f->data, f->data_len, "\"usage\"", 7))
        return false;
    struct bb_jscan_field fl[2] = {{.key = "choices"}, {.key = "usage"}};
    struct bb_err err;
    if (bb_jscan_object(f->data, f->data_len, fl, 2, 128, &err) < 0 || fl[0].type != BB_JARRAY ||
        fl[1].type != BB_JOBJECT)
        return false;
    for (size_t i = 1; i + 1 < fl[0].len; i++) /* "[" whitespace "]" */
        if (!isspace((unsigned char)f->data[fl[0].off + i]))
            return false;
    return true;
}

/* GET /v1/models: {"object":"list","data":[{id, object:"model", created:0, owned_by}]} */
static json_object *openai_models_list(const char *const *names, size_t n)
{
    json_object *root = json_object_new_object(), *data = json_object_new_array();
    json_object_object_add(root, "object", json_object_new_string("list"));
    for (size_t i = 0; i < n; i++) {
        json_object *m = json_object_new_object();
        json_object_object_add(m, "id", json_object_new_string(names[i]));
        json_object_object_add(m, "object", json_object_new_string("model"));
        json_object_object_add(m, "created", json_object_new_int64(0));
        json_object_object_add(m, "owned_by", json_object_new_string("busbar"));
        json_object_array_add(data, m);
    }
    json_object_object_add(root, "data", data);
    return root;
}

/* OpenAI's rate-limit headers (also sent by many OpenAI-compatible servers). */
static const struct bb_proto_ratelimit ratelimit[] = {
    {"x-ratelimit-remaining-requests", "x-ratelimit-limit-requests", "x-ratelimit-reset-requests",
     false},
    {"x-ratelimit-remaining-tokens", "x-ratelimit-limit-tokens", "x-ratelimit-reset-tokens", false},
};

static const char *const affinity_members[] = {"messages", NULL};

const struct bb_proto_ops bb_proto_openai = {
    .id = BB_PROTO_OPENAI,
    .name = "openai",
    .genai_system = "openai",
    .framing = BB_FRAMING_SSE,
    .params = param_rows,
    .n_params = N_PARAMS,
    .ratelimit = ratelimit,
    .n_ratelimit = sizeof ratelimit / sizeof ratelimit[0],
    .route = "/v1/chat/completions",
    .models_path = "/v1/models",
    .models_list = openai_models_list,
    .path = "/v1/chat/completions",
    .auth_headers = bb_proto_bearer,
    .probe_path = "/v1/models",
    .tool_id_prefix = "call_",
    .stream_member = "stream",
    .affinity_members = affinity_members,
    .stream_usage = {"stream_options", "include_usage",
                     "\"stream_options\":{\"include_usage\":true},", openai_usage_only},
    .read_request = openai_read_request,
    .write_response = openai_write_response,
    .stream_content_type = openai_stream_content_type,
    .enc_size = sizeof(struct enc),
    .enc_init = openai_enc_init,
    .enc_event = openai_enc_event,
    .enc_finish = NULL,
    .write_request = openai_write_request,
    .system_in_place = true,
    .read_response = openai_read_response,
    .dec_size = sizeof(struct dec),
    .dec_init = openai_dec_init,
    .dec_frame = openai_dec_frame,
    .read_error = openai_read_error,
    .dec_finish = openai_dec_finish,
    .terminator = "data: [DONE]\n\n",
    .answer_check = openai_answer_check,
    .frame_scan = openai_frame_scan,
};
