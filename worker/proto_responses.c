/*
 * proto_responses: the OpenAI Responses API (POST /v1/responses) as ingress (the client speaks
 * it) and as egress (the provider speaks it), non-streaming and streaming (SPEC §3.1, §4).
 * Reference: the openai npm SDK's resources/responses/responses.d.ts. Field-by-field fidelity
 * is documented in docs/protocols/responses.md.
 *
 * Worker process, single-threaded, no globals. Readers build IR in the caller's arena and
 * release every json-c object before returning; writers append to the caller's evbuffers.
 *
 * Conventions worth knowing here:
 * - Responses usage counts cached tokens inside input_tokens; IR input excludes them.
 * - A reasoning item becomes one THINKING block: summary text (or raw reasoning_text) as
 *   text, encrypted_content as signature, and the item id ("rs_...") in block.id so that a
 *   Responses → Responses round trip can hand the same item back with store=false.
 * - Consecutive TEXT blocks share one assistant message item (one output_text part each),
 *   as OpenAI itself shapes its output.
 * - The stream encoder must repeat each item's full text in its *.done events and in
 *   response.completed. It accumulates that text in heap buffers it owns (struct renc),
 *   bounded by ACC_MAX bytes per stream; text beyond the bound is still streamed as deltas
 *   but is missing from the *.done / response.completed copies. The buffers are freed at
 *   MESSAGE_STOP, ERROR and enc_finish (proto.h has no encoder destructor).
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

#define ACC_MAX ((size_t)4 << 20) /* accumulated text per stream encoder, bytes */
#define ID_MAX 192

/* The scalar parameters (worker/params.h; docs/protocols/responses.md "Parameters"). */
static const struct bb_param param_rows[] = {
    {"max_output_tokens", BB_IRP_MAX_TOKENS, BB_PF_IN | BB_PF_OUT, 1, UINT32_MAX,
     "raised to 16 when writing: the API refuses less"},
    {"temperature", BB_IRP_TEMPERATURE, BB_PF_IN | BB_PF_OUT, 0, 0, ""},
    {"top_p", BB_IRP_TOP_P, BB_PF_IN | BB_PF_OUT, 0, 0, ""},
    {NULL, BB_IRP_STOP, 0, 0, 0, ""},
    {NULL, BB_IRP_TOP_K, 0, 0, 0, ""},
    {NULL, BB_IRP_SEED, 0, 0, 0, ""},
    {NULL, BB_IRP_PRESENCE_PENALTY, 0, 0, 0, ""},
    {NULL, BB_IRP_FREQUENCY_PENALTY, 0, 0, 0, ""},
    {NULL, BB_IRP_N, 0, 0, 0, "dropped when above 1"},
};
#define N_PARAMS (sizeof param_rows / sizeof param_rows[0])

/* Equal strings, either of which may be absent (NULL). */
static bool streq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

/* How many blocks an output item may become (its content parts; at least one). */
static size_t item_bound(json_object *it)
{
    json_object *c = bb_json_get(it, "content");
    size_t n = bb_json_is(c, json_type_array) ? json_object_array_length(c) : 1;
    return n ? n : 1;
}

/* ------------------------------------------------------------------------------------------
 * shared mappings
 * ---------------------------------------------------------------------------------------- */

static const char *media_from_filename(const char *fn)
{
    static const struct {
        const char *ext, *media;
    } map[] = {{".pdf", "application/pdf"}, {".txt", "text/plain"}, {".md", "text/markdown"},
               {".csv", "text/csv"},        {".html", "text/html"}, {".json", "application/json"}};
    size_t fl = fn ? strlen(fn) : 0;
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        size_t el = strlen(map[i].ext);
        if (fl >= el && strcasecmp(fn + fl - el, map[i].ext) == 0)
            return map[i].media;
    }
    return "application/pdf";
}

static const char *filename_for_media(const struct bb_ir_str *mt)
{
    if (!mt->p || streq(mt->p, "application/pdf"))
        return "document.pdf";
    if (streq(mt->p, "text/plain"))
        return "document.txt";
    if (streq(mt->p, "text/markdown"))
        return "document.md";
    if (streq(mt->p, "text/csv"))
        return "document.csv";
    if (streq(mt->p, "text/html"))
        return "document.html";
    if (streq(mt->p, "application/json"))
        return "document.json";
    return "document";
}

/* Usage object (input_tokens counts cached and cache-written tokens) → IR (excludes them). */
static void usage_read(json_object *u, struct bb_ir_usage *out)
{
    memset(out, 0, sizeof *out);
    if (!bb_json_is(u, json_type_object))
        return;
    json_object *in_d = bb_json_get(u, "input_tokens_details");
    json_object *out_d = bb_json_get(u, "output_tokens_details");
    uint64_t in = bb_json_count(u, "input_tokens");
    out->cache_read = bb_json_count(in_d, "cached_tokens");
    out->cache_write = bb_json_count(in_d, "cache_write_tokens");
    uint64_t cached = out->cache_read + out->cache_write;
    out->input = in > cached ? in - cached : 0;
    out->output = bb_json_count(u, "output_tokens");
    out->reasoning = bb_json_count(out_d, "reasoning_tokens");
    out->set = true;
}

static json_object *usage_json(const struct bb_ir_usage *u)
{
    if (!u || !u->set)
        return NULL;
    uint64_t in = u->input + u->cache_read + u->cache_write;
    json_object *o = json_object_new_object();
    json_object *in_d = json_object_new_object();
    json_object *out_d = json_object_new_object();
    json_object_object_add(in_d, "cached_tokens", bb_json_new_u64(u->cache_read));
    json_object_object_add(in_d, "cache_write_tokens", bb_json_new_u64(u->cache_write));
    json_object_object_add(out_d, "reasoning_tokens", bb_json_new_u64(u->reasoning));
    json_object_object_add(o, "input_tokens", bb_json_new_u64(in));
    json_object_object_add(o, "input_tokens_details", in_d);
    json_object_object_add(o, "output_tokens", bb_json_new_u64(u->output));
    json_object_object_add(o, "output_tokens_details", out_d);
    json_object_object_add(o, "total_tokens", bb_json_new_u64(in + u->output));
    return o;
}

/* Cumulative usage from two reports: the larger of each count (every report is a total). */

/* Error codes the SDK's ResponseError.code admits; anything else is reported as
 * server_error or rate_limit_exceeded. */
static const char *response_error_code(const char *type, int status)
{
    static const char *const known[] = {"server_error",
                                        "rate_limit_exceeded",
                                        "invalid_prompt",
                                        "invalid_image",
                                        "invalid_image_format",
                                        "invalid_base64_image",
                                        "invalid_image_url",
                                        "image_too_large",
                                        "image_too_small",
                                        "image_parse_error",
                                        "image_content_policy_violation",
                                        "invalid_image_mode",
                                        "image_file_too_large",
                                        "unsupported_image_media_type",
                                        "empty_image_file",
                                        "failed_to_download_image",
                                        "image_file_not_found",
                                        "vector_store_timeout",
                                        "bio_policy",
                                        "data_residency_mismatch"};
    for (size_t i = 0; type && i < sizeof known / sizeof known[0]; i++)
        if (strcmp(type, known[i]) == 0)
            return known[i];
    if (status == 429 || (type && (strstr(type, "rate_limit") || strstr(type, "quota"))))
        return "rate_limit_exceeded";
    return "server_error";
}

static int error_status_for(const char *code)
{
    if (!code)
        return 0;
    if (strstr(code, "rate_limit") || strstr(code, "quota"))
        return 429;
    if (strcmp(code, "server_error") == 0)
        return 500;
    if (strstr(code, "overloaded"))
        return 529;
    if (strstr(code, "invalid") || strstr(code, "context_length") || strstr(code, "image"))
        return 400;
    return 0;
}

static bool openai_annotation(json_object *an)
{
    const char *t = bb_json_get_str(an, "type");
    return streq(t, "url_citation") || streq(t, "file_citation") ||
           streq(t, "container_file_citation") || streq(t, "file_path");
}

/* The annotations array for an output_text part: the IR citations when they are OpenAI
 * annotations; other providers' citation shapes are dropped (reported as "citations"). */
static json_object *annotations_json(struct bb_arena *a, const struct bb_ir_str *citations)
{
    json_object *arr = json_object_new_array();
    json_object *c = bb_json_raw(citations);
    if (!c)
        return arr;
    if (bb_json_is(c, json_type_array)) {
        size_t n = json_object_array_length(c);
        for (size_t i = 0; i < n; i++) {
            json_object *an = json_object_array_get_idx(c, i);
            if (openai_annotation(an))
                json_object_array_add(arr, json_object_get(an));
            else
                bb_proto_drop(a, NULL, "citations"); /* an answer: not reported */
        }
    }
    json_object_put(c);
    return arr;
}

/* ---- output items, shared by write_response and the stream encoder ---- */

static json_object *text_part(const char *text, size_t len, json_object *annotations)
{
    json_object *p = json_object_new_object();
    json_object_object_add(p, "type", json_object_new_string("output_text"));
    json_object_object_add(p, "text", bb_json_new_strn(text, len));
    json_object_object_add(p, "annotations", annotations ? annotations : json_object_new_array());
    return p;
}

static json_object *message_item(const char *id, const char *status, json_object *content)
{
    json_object *m = json_object_new_object();
    json_object_object_add(m, "id", json_object_new_string(id));
    json_object_object_add(m, "type", json_object_new_string("message"));
    json_object_object_add(m, "status", json_object_new_string(status));
    json_object_object_add(m, "role", json_object_new_string("assistant"));
    json_object_object_add(m, "content", content ? content : json_object_new_array());
    return m;
}

static json_object *summary_part(const char *text, size_t len)
{
    json_object *p = json_object_new_object();
    json_object_object_add(p, "type", json_object_new_string("summary_text"));
    json_object_object_add(p, "text", bb_json_new_strn(text, len));
    return p;
}

/* A reasoning item; text NULL = no summary yet; sig NULL = no encrypted_content. */
static json_object *reasoning_item(const char *id, const char *text, size_t len, const char *sig,
                                   size_t sig_len)
{
    json_object *r = json_object_new_object();
    json_object *summary = json_object_new_array();
    if (text && len)
        json_object_array_add(summary, summary_part(text, len));
    json_object_object_add(r, "id", json_object_new_string(id));
    json_object_object_add(r, "type", json_object_new_string("reasoning"));
    json_object_object_add(r, "summary", summary);
    if (sig && sig_len)
        json_object_object_add(r, "encrypted_content", bb_json_new_strn(sig, sig_len));
    return r;
}

static json_object *function_item(const char *id, const char *status, const char *call_id,
                                  size_t call_id_len, const char *name, size_t name_len,
                                  const char *args, size_t args_len)
{
    json_object *f = json_object_new_object();
    json_object_object_add(f, "id", json_object_new_string(id));
    json_object_object_add(f, "type", json_object_new_string("function_call"));
    json_object_object_add(f, "status", json_object_new_string(status));
    json_object_object_add(f, "arguments", bb_json_new_strn(args, args_len));
    json_object_object_add(f, "call_id", bb_json_new_strn(call_id, call_id_len));
    json_object_object_add(f, "name", bb_json_new_strn(name, name_len));
    return f;
}

/* The tool a call to name[0..len) is to, as this client declared it; NULL: a plain function. */
static const struct bb_ir_tool *declared(const struct bb_ir_tool *tools, size_t n, const char *name,
                                         size_t len)
{
    const struct bb_ir_tool *t = bb_ir_tool_find(tools, n, name, len);
    return t && (t->ns.p || t->wire_type.p) ? t : NULL;
}

static bool wire_is(const struct bb_ir_tool *t, const char *type)
{
    return t && t->wire_type.p && strcmp(t->wire_type.p, type) == 0;
}

/* A call in the shape of the client's tool t (see declared): function_call with the tool's
 * namespace, custom_tool_call with the freeform input (the IR carries it as the member
 * `input`), tool_search_call with the arguments object. */
static json_object *call_item(const char *id, const char *status, const char *call_id,
                              size_t call_id_len, const struct bb_ir_tool *t, const char *args,
                              size_t args_len)
{
    json_object *f = json_object_new_object();
    const char *type = wire_is(t, "custom")        ? "custom_tool_call"
                       : wire_is(t, "tool_search") ? "tool_search_call"
                                                   : "function_call";
    json_object_object_add(f, "id", json_object_new_string(id));
    json_object_object_add(f, "type", json_object_new_string(type));
    json_object_object_add(f, "status", json_object_new_string(status));
    json_object_object_add(f, "call_id", bb_json_new_strn(call_id, call_id_len));
    json_object *a = bb_json_parse(args, args_len, "arguments", NULL);
    if (wire_is(t, "tool_search")) {
        json_object_object_add(f, "execution", json_object_new_string("client"));
        json_object_object_add(f, "arguments",
                               bb_json_is(a, json_type_object) ? a : json_object_new_object());
        return f;
    }
    json_object_object_add(f, "name", bb_json_new_str(&t->local));
    if (t->ns.p)
        json_object_object_add(f, "namespace", bb_json_new_str(&t->ns));
    if (wire_is(t, "custom")) {
        json_object *in = bb_json_get(a, BB_IR_CUSTOM_INPUT);
        json_object_object_add(f, "input",
                               bb_json_is(in, json_type_string) ? json_object_get(in)
                                                                : json_object_new_string(""));
    } else {
        json_object_object_add(f, "arguments", bb_json_new_strn(args, args_len));
    }
    json_object_put(a);
    return f;
}

static bool is_rs_id(const struct bb_ir_str *id)
{
    return id->p && id->len > 3 && id->len < ID_MAX - 1 && strncmp(id->p, "rs_", 3) == 0;
}

/* The head of a Response object (everything but output), as the SDK's Response type requires.
 * The request's own echo fields (tools, temperature, instructions, ...) are not known on the
 * way back (struct bb_ingress_ctx does not carry them), so their neutral values are sent. */
struct resp_head {
    const char *id, *model;
    int64_t created;
    const char *status;                     /* in_progress, completed, incomplete, failed */
    const char *incomplete_reason;          /* max_output_tokens, content_filter, or NULL */
    const char *error_code, *error_message; /* status failed */
    const struct bb_ir_usage *usage;
};

static json_object *response_json(const struct resp_head *h, json_object *output)
{
    json_object *r = json_object_new_object();
    json_object_object_add(r, "id", json_object_new_string(h->id));
    json_object_object_add(r, "object", json_object_new_string("response"));
    json_object_object_add(r, "created_at", json_object_new_int64(h->created));
    json_object_object_add(r, "status", json_object_new_string(h->status));
    json_object_object_add(r, "background", json_object_new_boolean(0));
    if (h->error_code) {
        json_object *e = json_object_new_object();
        json_object_object_add(e, "code", json_object_new_string(h->error_code));
        json_object_object_add(e, "message",
                               json_object_new_string(h->error_message ? h->error_message : ""));
        json_object_object_add(r, "error", e);
    } else {
        json_object_object_add(r, "error", NULL);
    }
    if (h->incomplete_reason) {
        json_object *d = json_object_new_object();
        json_object_object_add(d, "reason", json_object_new_string(h->incomplete_reason));
        json_object_object_add(r, "incomplete_details", d);
    } else {
        json_object_object_add(r, "incomplete_details", NULL);
    }
    json_object_object_add(r, "instructions", NULL);
    json_object_object_add(r, "max_output_tokens", NULL);
    json_object_object_add(r, "metadata", json_object_new_object());
    json_object_object_add(r, "model", json_object_new_string(h->model ? h->model : ""));
    json_object_object_add(r, "output", output ? output : json_object_new_array());
    json_object_object_add(r, "parallel_tool_calls", json_object_new_boolean(1));
    json_object_object_add(r, "previous_response_id", NULL);
    json_object *reasoning = json_object_new_object();
    json_object_object_add(reasoning, "effort", NULL);
    json_object_object_add(reasoning, "summary", NULL);
    json_object_object_add(r, "reasoning", reasoning);
    json_object_object_add(r, "store", json_object_new_boolean(0));
    json_object_object_add(r, "temperature", NULL);
    json_object *text = json_object_new_object();
    json_object *fmt = json_object_new_object();
    json_object_object_add(fmt, "type", json_object_new_string("text"));
    json_object_object_add(text, "format", fmt);
    json_object_object_add(r, "text", text);
    json_object_object_add(r, "tool_choice", json_object_new_string("auto"));
    json_object_object_add(r, "tools", json_object_new_array());
    json_object_object_add(r, "top_p", NULL);
    json_object_object_add(r, "truncation", json_object_new_string("disabled"));
    json_object_object_add(r, "usage", usage_json(h->usage));
    return r;
}

static const char *incomplete_reason(enum bb_ir_stop s)
{
    if (s == BB_IR_STOP_MAX_TOKENS)
        return "max_output_tokens";
    if (s == BB_IR_STOP_CONTENT_FILTER)
        return "content_filter";
    return NULL;
}

/* ------------------------------------------------------------------------------------------
 * ingress: read_request
 * ---------------------------------------------------------------------------------------- */

enum last_kind { LAST_NONE, LAST_USER, LAST_TOOL_RESULTS, LAST_ASSISTANT };

/* The reader: the shared context, the message list and the blocks of the last message
 * (blocks are only ever added to the last one). */
struct rd {
    struct bb_rd r;
    struct bb_vec msgs, blocks, sys;
    struct bb_vec tools; /* top-level tools, additional_tools items, searched tools */
    enum last_kind last;
    bool sys_here; /* system text goes to the last message (a system message among turns) */
};

static struct bb_ir_str flat_name(struct bb_arena *a, const struct bb_ir_str *ns,
                                  const struct bb_ir_str *local);
static int read_tools(struct rd *x, json_object *v, const char *key);

static struct bb_ir_block *new_block(struct rd *x)
{
    struct bb_ir_block *b = BB_VEC_PUSH(x->r.a, &x->blocks, struct bb_ir_block);
    if (!b)
        return NULL;
    struct bb_ir_message *m = &((struct bb_ir_message *)x->msgs.v)[x->msgs.n - 1];
    m->blocks = x->blocks.v;
    m->n_blocks = x->blocks.n;
    return b;
}

static int new_message(struct rd *x, enum bb_ir_role role, enum last_kind kind)
{
    struct bb_ir_message *m = BB_VEC_PUSH(x->r.a, &x->msgs, struct bb_ir_message);
    if (!m)
        return bb_rd_oom(&x->r);
    m->role = role;
    memset(&x->blocks, 0, sizeof x->blocks);
    x->last = kind;
    return 0;
}

/* The message the next assistant-side item (message, function_call, reasoning) joins:
 * consecutive assistant items are one turn. */
static int assistant_message(struct rd *x)
{
    return x->last == LAST_ASSISTANT ? 0 : new_message(x, BB_IR_ASSISTANT, LAST_ASSISTANT);
}

static int add_system_text(struct rd *x, json_object *s)
{
    struct bb_ir_block *b =
        x->sys_here ? new_block(x) : BB_VEC_PUSH(x->r.a, &x->sys, struct bb_ir_block);
    if (!b)
        return bb_rd_oom(&x->r);
    b->type = BB_IR_TEXT;
    return bb_rd_dup(&x->r, s, &b->text);
}

/* A string that is a data: URL into b's media type and data; false otherwise. */
static bool data_url_into(struct bb_arena *a, json_object *s, struct bb_ir_block *b)
{
    struct bb_ir_str mt, data;
    if (!bb_media_split_data_url(json_object_get_string(s), (size_t)json_object_get_string_len(s),
                                 &mt, &data))
        return false;
    b->media_type = bb_ir_strdup(a, mt.p, mt.len);
    b->data = bb_ir_strdup(a, data.p, data.len);
    return true;
}

/* input_image / input_file (in messages and function_call_output lists; the path at the part)
 * → b. Returns 1 when the part cannot be carried (recorded as unsupported), 0 when b is
 * filled, -1 on error. */
static int read_media_part(struct bb_rd *r, json_object *p, const char *type, struct bb_ir_block *b)
{
    if (strcmp(type, "input_image") == 0) {
        json_object *url, *detail = bb_json_get(p, "detail");
        if (bb_rd_want(r, p, "image_url", json_type_string, false, &url) < 0)
            return -1;
        if (detail && !bb_json_str_eq(detail, "auto") &&
            bb_rd_unsupported(r, "", "input_image.detail") < 0)
            return -1;
        if (!url) {
            if (bb_json_get(p, "file_id"))
                return bb_rd_unsupported(r, "", "input_image.file_id") < 0 ? -1 : 1;
            return bb_rd_fail(r, NULL, "input_image needs image_url or file_id");
        }
        b->type = BB_IR_IMAGE;
        if (!data_url_into(r->a, url, b) && bb_rd_dup(r, url, &b->url) < 0)
            return -1;
        return b->url.p || (b->media_type.p && b->data.p) ? 0 : bb_rd_oom(r);
    }
    /* input_file */
    json_object *data, *url;
    const char *fname = bb_json_get_str(p, "filename");
    if (bb_rd_want(r, p, "file_data", json_type_string, false, &data) < 0 ||
        bb_rd_want(r, p, "file_url", json_type_string, false, &url) < 0)
        return -1;
    if (!data && !url) {
        if (bb_json_get(p, "file_id"))
            return bb_rd_unsupported(r, "", "input_file.file_id") < 0 ? -1 : 1;
        return bb_rd_fail(r, NULL, "input_file needs file_data, file_url or file_id");
    }
    if (fname && bb_rd_unsupported(r, "", "input_file.filename") < 0)
        return -1;
    b->type = BB_IR_DOCUMENT;
    if (!data)
        return bb_rd_dup(r, url, &b->url);
    if (data_url_into(r->a, data, b))
        return b->media_type.p && b->data.p ? 0 : bb_rd_oom(r);
    const char *mt = media_from_filename(fname);
    b->media_type = bb_ir_strdup(r->a, mt, strlen(mt));
    return bb_rd_dup(r, data, &b->data);
}

/* One content part of a message item into the current message (the path at the part). */
static int read_part(struct rd *x, json_object *p, bool assistant)
{
    struct bb_rd *r = &x->r;
    json_object *tv;
    if (bb_rd_type(r, p, NULL, json_type_object) < 0 ||
        bb_rd_want(r, p, "type", json_type_string, false, &tv) < 0)
        return -1;
    if (!tv)
        return bb_rd_expect(r, "type", "a string");
    const char *type = json_object_get_string(tv);
    if (strcmp(type, "input_text") == 0 || strcmp(type, "output_text") == 0 ||
        strcmp(type, "refusal") == 0) {
        const char *key = strcmp(type, "refusal") == 0 ? "refusal" : "text";
        json_object *t, *an = bb_json_get(p, "annotations");
        if (bb_rd_want(r, p, key, json_type_string, false, &t) < 0)
            return -1;
        if (!t)
            return bb_rd_expect(r, key, "a string");
        struct bb_ir_block *b = new_block(x);
        if (!b)
            return bb_rd_oom(r);
        b->type = BB_IR_TEXT;
        if (bb_json_is(an, json_type_array) && json_object_array_length(an) > 0 &&
            bb_rd_text(r, an, &b->citations_json) < 0)
            return -1;
        return bb_rd_dup(r, t, &b->text);
    }
    if (!assistant && (strcmp(type, "input_image") == 0 || strcmp(type, "input_file") == 0)) {
        struct bb_ir_block tmp;
        memset(&tmp, 0, sizeof tmp);
        int rc = read_media_part(r, p, type, &tmp);
        if (rc != 0)
            return rc < 0 ? -1 : 0;
        struct bb_ir_block *b = new_block(x);
        if (!b)
            return bb_rd_oom(r);
        *b = tmp;
        return 0;
    }
    return bb_rd_unsupported(r, "content.", type);
}

/* A system / developer message's content parts (the path at the content). */
static int read_system_parts(struct rd *x, json_object *c)
{
    struct bb_rd *r = &x->r;
    size_t n = json_object_array_length(c);
    for (size_t j = 0; j < n; j++) {
        json_object *p = json_object_array_get_idx(c, j), *t;
        const char *type = bb_json_get_str(p, "type");
        size_t m = bb_rd_at(r, j);
        int rc = bb_rd_type(r, p, NULL, json_type_object);
        if (rc == 0 && type && (!strcmp(type, "input_text") || !strcmp(type, "output_text"))) {
            rc = bb_rd_want(r, p, "text", json_type_string, false, &t);
            if (rc == 0)
                rc = t ? add_system_text(x, t) : bb_rd_expect(r, "text", "a string");
        } else if (rc == 0) {
            rc = bb_rd_unsupported(r, "system.", type ? type : "?");
        }
        bb_rd_out(r, m);
        if (rc < 0)
            return -1;
    }
    return 0;
}

static int read_message_content(struct rd *x, json_object *it, bool system, bool assistant);

/* A message item. A system or developer message among the turns stays in its place (a
 * BB_IR_SYSTEM message: kept by OpenAI chat and Responses lanes, folded elsewhere); the ones
 * before the first turn are the system prompt. */
static int read_message_item(struct rd *x, json_object *it)
{
    struct bb_rd *r = &x->r;
    const char *role = bb_json_get_str(it, "role");
    bool system = role && (!strcmp(role, "system") || !strcmp(role, "developer"));
    bool assistant = role && !strcmp(role, "assistant");
    if (!system && !assistant && !(role && !strcmp(role, "user")))
        return bb_rd_expect(r, "role", "one of user, assistant, system, developer");
    if (!system || !x->msgs.n)
        return read_message_content(x, it, system, assistant);
    enum last_kind last = x->last;
    struct bb_vec blocks = x->blocks; /* the previous message's, restored if this one is empty */
    if (new_message(x, BB_IR_SYSTEM, LAST_NONE) < 0)
        return -1;
    x->sys_here = true;
    int rc = read_message_content(x, it, true, false);
    x->sys_here = false;
    if (rc == 0 && !x->blocks.n) { /* said nothing: carries nothing */
        x->msgs.n--;
        x->last = last;
        x->blocks = blocks;
    }
    return rc;
}

static int read_message_content(struct rd *x, json_object *it, bool system, bool assistant)
{
    struct bb_rd *r = &x->r;
    json_object *c = bb_json_get(it, "content");
    if (!bb_json_is(c, json_type_string) && !bb_json_is(c, json_type_array))
        return bb_rd_expect(r, "content", "a string or an array");
    if (system && bb_json_is(c, json_type_string))
        return add_system_text(x, c);
    int rc = 0;
    if (!system)
        rc = assistant ? assistant_message(x) : new_message(x, BB_IR_USER, LAST_USER);
    if (rc < 0)
        return -1;
    if (bb_json_is(c, json_type_string)) {
        struct bb_ir_block *b = new_block(x);
        if (!b)
            return bb_rd_oom(r);
        b->type = BB_IR_TEXT;
        return bb_rd_dup(r, c, &b->text);
    }
    size_t mark = bb_rd_in(r, "content");
    if (system) {
        rc = read_system_parts(x, c);
    } else {
        size_t n = json_object_array_length(c);
        for (size_t j = 0; j < n && rc == 0; j++) {
            size_t m = bb_rd_at(r, j);
            rc = read_part(x, json_object_array_get_idx(c, j), assistant);
            bb_rd_out(r, m);
        }
    }
    bb_rd_out(r, mark);
    return rc;
}

/* A call item: function_call {call_id, name, namespace?, arguments (JSON text)},
 * custom_tool_call {call_id, name, namespace?, input (free text)} or tool_search_call
 * {call_id, arguments (an object)}, as the TOOL_USE of the tool every provider sees. */
static int read_function_call(struct rd *x, json_object *it, const char *type)
{
    struct bb_rd *r = &x->r;
    bool custom = strcmp(type, "custom_tool_call") == 0;
    bool search = strcmp(type, "tool_search_call") == 0;
    json_object *call_id, *name = NULL, *args;
    struct bb_ir_str ns = {NULL, 0}, local = {NULL, 0};
    if (bb_rd_want(r, it, "call_id", json_type_string, false, &call_id) < 0 || !call_id)
        return call_id ? -1 : bb_rd_expect(r, "call_id", "a string");
    if (!search && (bb_rd_want(r, it, "name", json_type_string, false, &name) < 0 || !name))
        return name ? -1 : bb_rd_expect(r, "name", "a string");
    const char *akey = custom ? "input" : "arguments";
    if (bb_rd_want(r, it, akey, search ? json_type_object : json_type_string, false, &args) < 0 ||
        !args)
        return args ? -1 : bb_rd_expect(r, akey, search ? "an object" : "a string");
    if (bb_rd_str(r, it, "namespace", false, &ns) < 0)
        return -1;
    if (assistant_message(x) < 0)
        return -1;
    struct bb_ir_block *b = new_block(x);
    if (!b)
        return bb_rd_oom(r);
    b->type = BB_IR_TOOL_USE;
    if (bb_rd_dup(r, call_id, &b->id) < 0)
        return -1;
    if (search)
        local = bb_ir_strdup(r->a, "tool_search", 11);
    else if (bb_rd_dup(r, name, &local) < 0)
        return -1;
    b->name = flat_name(r->a, &ns, &local);
    if (custom) { /* the freeform input as the function's one member */
        json_object *o = json_object_new_object();
        json_object_object_add(o, BB_IR_CUSTOM_INPUT, json_object_get(args));
        b->input_json = bb_json_text(r->a, o);
        json_object_put(o);
    } else if (search) {
        b->input_json = bb_json_text(r->a, args);
    } else {
        /* OpenAI sends the arguments as a JSON text: it travels as is ("" = no arguments). */
        b->input_json = json_object_get_string_len(args) ? bb_json_dup(r->a, args)
                                                         : bb_ir_strdup(r->a, "{}", 2);
    }
    return b->name.p && b->input_json.p ? 0 : bb_rd_oom(r);
}

/* A TOOL_RESULT block answering call_id; consecutive outputs answer one assistant turn: they
 * share one user message. NULL on error (reported). */
static struct bb_ir_block *result_block(struct rd *x, json_object *call_id)
{
    struct bb_rd *r = &x->r;
    if (x->last != LAST_TOOL_RESULTS && new_message(x, BB_IR_USER, LAST_TOOL_RESULTS) < 0)
        return NULL;
    struct bb_ir_block *b = new_block(x);
    if (!b) {
        bb_rd_oom(r);
        return NULL;
    }
    b->type = BB_IR_TOOL_RESULT;
    return bb_rd_dup(r, call_id, &b->id) < 0 ? NULL : b;
}

/* tool_search_output {call_id, tools: [...]}: the tools it found are offered from now on (the
 * next model call has them), and the result is their list. */
static int read_search_output(struct rd *x, json_object *it)
{
    struct bb_rd *r = &x->r;
    json_object *call_id, *tools;
    if (bb_rd_want(r, it, "call_id", json_type_string, false, &call_id) < 0 || !call_id)
        return call_id ? -1 : bb_rd_expect(r, "call_id", "a string");
    if (bb_rd_want(r, it, "tools", json_type_array, false, &tools) < 0)
        return -1;
    if (tools && read_tools(x, tools, "tools") < 0)
        return -1;
    struct bb_ir_block *b = result_block(x, call_id);
    if (!b)
        return -1;
    b->text = tools ? bb_json_text(r->a, tools) : bb_ir_strdup(r->a, "[]", 2);
    return b->text.p ? 0 : bb_rd_oom(r);
}

/* One part of a function_call_output list (the path at it) into the result's content. */
static int read_output_part(struct bb_rd *r, json_object *p, struct bb_vec *content)
{
    if (bb_rd_type(r, p, NULL, json_type_object) < 0)
        return -1;
    const char *type = bb_json_get_str(p, "type");
    if (!type)
        return bb_rd_expect(r, "type", "a string");
    if (strcmp(type, "input_text") == 0) {
        json_object *t;
        if (bb_rd_want(r, p, "text", json_type_string, false, &t) < 0)
            return -1;
        if (!t)
            return bb_rd_expect(r, "text", "a string");
        struct bb_ir_block *cb = BB_VEC_PUSH(r->a, content, struct bb_ir_block);
        if (!cb)
            return bb_rd_oom(r);
        cb->type = BB_IR_TEXT;
        return bb_rd_dup(r, t, &cb->text);
    }
    if (strcmp(type, "input_image") != 0 && strcmp(type, "input_file") != 0)
        return bb_rd_unsupported(r, "output.", type);
    struct bb_ir_block tmp;
    memset(&tmp, 0, sizeof tmp);
    int rc = read_media_part(r, p, type, &tmp);
    if (rc != 0)
        return rc < 0 ? -1 : 0;
    struct bb_ir_block *cb = BB_VEC_PUSH(r->a, content, struct bb_ir_block);
    if (!cb)
        return bb_rd_oom(r);
    *cb = tmp;
    return 0;
}

static int read_function_output(struct rd *x, json_object *it)
{
    struct bb_rd *r = &x->r;
    json_object *call_id, *output = bb_json_get(it, "output");
    if (bb_rd_want(r, it, "call_id", json_type_string, false, &call_id) < 0 || !call_id)
        return call_id ? -1 : bb_rd_expect(r, "call_id", "a string");
    if (!bb_json_is(output, json_type_string) && !bb_json_is(output, json_type_array))
        return bb_rd_expect(r, "output", "a string or an array");
    struct bb_ir_block *b = result_block(x, call_id);
    if (!b)
        return -1;
    if (bb_json_is(output, json_type_string))
        return bb_rd_dup(r, output, &b->text);
    size_t n = json_object_array_length(output);
    json_object *first = n == 1 ? json_object_array_get_idx(output, 0) : NULL;
    if (first && bb_json_str_eq(bb_json_get(first, "type"), "input_text") &&
        bb_json_is(bb_json_get(first, "text"), json_type_string))
        return bb_rd_dup(r, bb_json_get(first, "text"), &b->text);
    struct bb_vec content = {0};
    size_t mark = bb_rd_in(r, "output");
    int rc = 0;
    for (size_t j = 0; j < n && rc == 0; j++) {
        size_t m = bb_rd_at(r, j);
        rc = read_output_part(r, json_object_array_get_idx(output, j), &content);
        bb_rd_out(r, m);
    }
    bb_rd_out(r, mark);
    b->content = content.v;
    b->n_content = content.n;
    return rc;
}

/* Summary parts (or, when there are none, reasoning_text content) joined by blank lines. */
static struct bb_ir_str reasoning_text(struct bb_arena *a, json_object *item)
{
    struct bb_ir_str none = {NULL, 0};
    const char *keys[2] = {"summary", "content"};
    for (int k = 0; k < 2; k++) {
        json_object *arr = bb_json_get(item, keys[k]);
        if (!bb_json_is(arr, json_type_array))
            continue;
        size_t n = json_object_array_length(arr), total = 0;
        for (size_t j = 0; j < n; j++) {
            json_object *t = bb_json_get(json_object_array_get_idx(arr, j), "text");
            if (bb_json_is(t, json_type_string))
                total += (size_t)json_object_get_string_len(t) + 2;
        }
        if (!total)
            continue;
        char *buf = bb_arena_alloc(a, total + 1);
        if (!buf)
            return none;
        size_t len = 0;
        for (size_t j = 0; j < n; j++) {
            json_object *t = bb_json_get(json_object_array_get_idx(arr, j), "text");
            if (!bb_json_is(t, json_type_string))
                continue;
            if (len) {
                memcpy(buf + len, "\n\n", 2);
                len += 2;
            }
            memcpy(buf + len, json_object_get_string(t), (size_t)json_object_get_string_len(t));
            len += (size_t)json_object_get_string_len(t);
        }
        buf[len] = '\0';
        return (struct bb_ir_str){buf, len};
    }
    return none;
}

/* A reasoning item → THINKING (text + signature + item id); false when it carries nothing. */
static bool reasoning_block(struct bb_arena *a, json_object *item, struct bb_ir_block *b)
{
    memset(b, 0, sizeof *b);
    b->type = BB_IR_THINKING;
    b->text = reasoning_text(a, item);
    json_object *enc = bb_json_get(item, "encrypted_content");
    if (bb_json_has_text(enc))
        b->signature = bb_json_dup(a, enc);
    b->id = bb_json_dup(a, bb_json_get(item, "id"));
    if (!b->text.p && !b->signature.p)
        return false;
    if (!b->text.p)
        b->text = bb_ir_strdup(a, "", 0);
    return true;
}

static int read_reasoning_item(struct rd *x, json_object *it)
{
    struct bb_rd *r = &x->r;
    json_object *v;
    if (bb_rd_want(r, it, "summary", json_type_array, false, &v) < 0 ||
        bb_rd_want(r, it, "encrypted_content", json_type_string, false, &v) < 0)
        return -1;
    struct bb_ir_block tmp;
    if (!reasoning_block(r->a, it, &tmp))
        return 0;
    if (assistant_message(x) < 0)
        return -1;
    struct bb_ir_block *b = new_block(x);
    if (!b)
        return bb_rd_oom(r);
    *b = tmp;
    return 0;
}

/* One input item (the path at it). */
static int read_item(struct rd *x, json_object *it)
{
    struct bb_rd *r = &x->r;
    json_object *tv;
    if (bb_rd_type(r, it, NULL, json_type_object) < 0 ||
        bb_rd_want(r, it, "type", json_type_string, false, &tv) < 0)
        return -1;
    const char *type = tv ? json_object_get_string(tv) : "message";
    if (strcmp(type, "message") == 0)
        return read_message_item(x, it);
    if (strcmp(type, "function_call") == 0 || strcmp(type, "custom_tool_call") == 0 ||
        strcmp(type, "tool_search_call") == 0)
        return read_function_call(x, it, type);
    if (strcmp(type, "function_call_output") == 0 || strcmp(type, "custom_tool_call_output") == 0)
        return read_function_output(x, it);
    if (strcmp(type, "tool_search_output") == 0)
        return read_search_output(x, it);
    if (strcmp(type, "additional_tools") == 0) {
        /* tools offered from this point of the conversation on: the IR has one tool list */
        json_object *tools;
        if (bb_rd_want(r, it, "tools", json_type_array, true, &tools) < 0)
            return -1;
        return read_tools(x, tools, "tools");
    }
    if (strcmp(type, "reasoning") == 0)
        return read_reasoning_item(x, it);
    /* Hosted-tool calls, item references (need server-side storage), MCP, ... */
    return bb_rd_unsupported(r, "input.", type);
}

static int read_input(struct rd *x, json_object *input)
{
    struct bb_rd *r = &x->r;
    if (bb_json_is(input, json_type_string)) {
        if (new_message(x, BB_IR_USER, LAST_USER) < 0)
            return -1;
        struct bb_ir_block *b = new_block(x);
        if (!b)
            return bb_rd_oom(r);
        b->type = BB_IR_TEXT;
        return bb_rd_dup(r, input, &b->text);
    }
    struct bb_rd_iter it = bb_rd_iter(r, input, "input");
    json_object *el;
    while (bb_rd_next(&it, &el))
        if (read_item(x, el) < 0)
            return -1;
    return 0;
}

/* The name every other provider sees for tool `local` of namespace ns: "<ns>__<local>"; the
 * default namespace "functions" adds nothing. */
static struct bb_ir_str flat_name(struct bb_arena *a, const struct bb_ir_str *ns,
                                  const struct bb_ir_str *local)
{
    if (!bb_ir_has(ns) || (ns->len == 9 && memcmp(ns->p, "functions", 9) == 0))
        return *local;
    char *s = bb_arena_alloc(a, ns->len + 2 + local->len + 1);
    if (!s)
        return (struct bb_ir_str){NULL, 0};
    memcpy(s, ns->p, ns->len);
    memcpy(s + ns->len, "__", 2);
    memcpy(s + ns->len + 2, local->p, local->len);
    s[ns->len + 2 + local->len] = '\0';
    return (struct bb_ir_str){s, ns->len + 2 + local->len};
}

/* A freeform tool's description with its format, which the function it becomes cannot
 * enforce: the model reads it. */
static int custom_description(struct bb_rd *r, json_object *t, struct bb_ir_tool *tool)
{
    json_object *fmt = bb_json_get(t, "format");
    const char *syntax = bb_json_get_str(fmt, "syntax");
    const char *def = bb_json_get_str(fmt, "definition");
    if (!bb_json_str_eq(bb_json_get(fmt, "type"), "grammar") || !def)
        return 0; /* "text" or none: any text */
    size_t n = tool->description.len + strlen(def) + 128;
    char *s = bb_arena_alloc(r->a, n);
    if (!s)
        return bb_rd_oom(r);
    int k = snprintf(s, n, "%s%sThe input must match this %s grammar:\n%s",
                     tool->description.p ? tool->description.p : "",
                     tool->description.len ? "\n\n" : "", syntax ? syntax : "", def);
    tool->description = (struct bb_ir_str){s, (size_t)k < n ? (size_t)k : n - 1};
    return 0;
}

static int read_tool_in(struct rd *x, json_object *t, const struct bb_ir_str *ns);

/* A namespace's tools (the path at the namespace). */
static int read_namespace(struct rd *x, json_object *t)
{
    struct bb_rd *r = &x->r;
    struct bb_ir_str ns = {NULL, 0};
    json_object *tools;
    if (bb_rd_str(r, t, "name", true, &ns) < 0 ||
        bb_rd_want(r, t, "tools", json_type_array, true, &tools) < 0)
        return -1;
    struct bb_rd_iter it = bb_rd_iter(r, tools, "tools");
    json_object *el;
    while (bb_rd_next(&it, &el))
        if (read_tool_in(x, el, &ns) < 0)
            return -1;
    return 0;
}

/* One tool (the path at it): a function, a freeform (custom) tool, a client-run tool search,
 * a namespace of them, or a provider-run tool; others are recorded as unsupported. */
static int read_tool_in(struct rd *x, json_object *t, const struct bb_ir_str *ns)
{
    struct bb_rd *r = &x->r;
    json_object *tv, *params, *strict;
    if (bb_rd_type(r, t, NULL, json_type_object) < 0 ||
        bb_rd_want(r, t, "type", json_type_string, false, &tv) < 0)
        return -1;
    if (!tv)
        return bb_rd_expect(r, "type", "a string");
    const char *type = json_object_get_string(tv);
    if (strcmp(type, "namespace") == 0 && !ns)
        return read_namespace(x, t);
    if ((strcmp(type, "web_search") == 0 || strcmp(type, "web_search_preview") == 0) && !ns) {
        return bb_rd_hosted(r, "web_search", t);
    }
    bool custom = strcmp(type, "custom") == 0;
    bool search = strcmp(type, "tool_search") == 0 && !ns;
    if (search && !bb_json_str_eq(bb_json_get(t, "execution"), "client"))
        return bb_rd_unsupported(r, "tools.", "tool_search"); /* the provider's own search */
    if (!custom && !search && strcmp(type, "function") != 0)
        return bb_rd_unsupported(r, "tools.", type);
    struct bb_ir_tool *tool = BB_VEC_PUSH(r->a, &x->tools, struct bb_ir_tool);
    if (!tool)
        return bb_rd_oom(r);
    if ((!search && bb_rd_str(r, t, "name", false, &tool->local) < 0) ||
        bb_rd_str(r, t, "description", false, &tool->description) < 0 ||
        bb_rd_want(r, t, "parameters", json_type_object, false, &params) < 0 ||
        bb_rd_want(r, t, "strict", json_type_boolean, false, &strict) < 0)
        return -1;
    if (search)
        tool->local = bb_ir_strdup(r->a, "tool_search", 11);
    if (!tool->local.p)
        return bb_rd_expect(r, "name", "a string");
    if (ns) {
        tool->ns = *ns;
        tool->name = flat_name(r->a, ns, &tool->local);
    } else {
        tool->name = tool->local;
    }
    if (custom || search)
        tool->wire_type = bb_ir_strdup(r->a, type, strlen(type));
    if (!tool->name.p || ((custom || search) && !tool->wire_type.p))
        return bb_rd_oom(r);
    if (custom) {
        /* a freeform input: a function of one string (BB_IR_CUSTOM_SCHEMA) */
        tool->parameters_json =
            bb_ir_strdup(r->a, BB_IR_CUSTOM_SCHEMA, sizeof BB_IR_CUSTOM_SCHEMA - 1);
        if (!tool->parameters_json.p || custom_description(r, t, tool) < 0)
            return bb_rd_oom(r);
        return 0;
    }
    if (params && bb_rd_text(r, params, &tool->parameters_json) < 0)
        return -1;
    /* The Responses API makes function tools strict unless told otherwise. */
    tool->strict = !search && (strict ? json_object_get_boolean(strict) : true);
    if (bb_json_is(bb_json_get(t, "defer_loading"), json_type_boolean) &&
        json_object_get_boolean(bb_json_get(t, "defer_loading")))
        return bb_rd_unsupported(r, "tools.", "defer_loading"); /* offered from the start */
    return 0;
}

/* A list of tools (the path at it): top-level `tools`, an additional_tools item's `tools`. */
static int read_tools(struct rd *x, json_object *v, const char *key)
{
    struct bb_rd *r = &x->r;
    if (bb_rd_type(r, v, key, json_type_array) < 0)
        return -1;
    struct bb_rd_iter it = bb_rd_iter(r, v, key);
    json_object *el;
    while (bb_rd_next(&it, &el))
        if (read_tool_in(x, el, NULL) < 0)
            return -1;
    return 0;
}

static int read_tool_choice(struct bb_rd *r, json_object *tc)
{
    struct bb_ir_request *req = r->req;
    if (bb_json_is(tc, json_type_string)) {
        const char *s = json_object_get_string(tc);
        if (strcmp(s, "auto") == 0)
            req->tool_choice = BB_IR_TC_AUTO;
        else if (strcmp(s, "none") == 0)
            req->tool_choice = BB_IR_TC_NONE;
        else if (strcmp(s, "required") == 0)
            req->tool_choice = BB_IR_TC_ANY;
        else
            return bb_rd_expect(r, "tool_choice", "auto, none, required or an object");
        return 0;
    }
    if (!bb_json_is(tc, json_type_object))
        return bb_rd_expect(r, "tool_choice", "a string or an object");
    if (bb_json_str_eq(bb_json_get(tc, "type"), "function")) {
        json_object *name = bb_json_get(tc, "name");
        if (!bb_json_is(name, json_type_string))
            return bb_rd_expect(r, "tool_choice.name", "a string");
        req->tool_choice = BB_IR_TC_TOOL;
        return bb_rd_dup(r, name, &req->tool_choice_name);
    }
    /* allowed_tools, hosted tools, mcp, custom: nothing the IR can say. */
    return bb_rd_unsupported(r, "", "tool_choice");
}

static int read_format(struct bb_rd *r, json_object *fmt)
{
    struct bb_ir_request *req = r->req;
    const char *type = bb_json_get_str(fmt, "type");
    if (type && strcmp(type, "text") == 0) {
        req->format = BB_IR_FMT_TEXT;
        return 0;
    }
    if (type && strcmp(type, "json_object") == 0) {
        req->format = BB_IR_FMT_JSON_OBJECT;
        return 0;
    }
    if (!type || strcmp(type, "json_schema") != 0)
        return bb_rd_expect(r, "type", "one of text, json_object, json_schema");
    json_object *name, *schema;
    if (bb_rd_want(r, fmt, "name", json_type_string, false, &name) < 0 ||
        (!name && bb_rd_expect(r, "name", "a string") < 0) ||
        bb_rd_want(r, fmt, "schema", json_type_object, false, &schema) < 0 ||
        (!schema && bb_rd_expect(r, "schema", "an object") < 0) ||
        bb_rd_bool(r, fmt, "strict", NULL, &req->format_strict) < 0)
        return -1;
    req->format = BB_IR_FMT_JSON_SCHEMA;
    if (bb_rd_dup(r, name, &req->format_name) < 0 ||
        bb_rd_text(r, schema, &req->format_schema_json) < 0)
        return -1;
    if (bb_json_get(fmt, "description") && bb_rd_unsupported(r, "", "text.format.description") < 0)
        return -1;
    return 0;
}

static int read_text(struct bb_rd *r, json_object *text)
{
    if (bb_rd_type(r, text, "text", json_type_object) < 0)
        return -1;
    if (bb_json_get(text, "verbosity") && bb_rd_unsupported(r, "", "text.verbosity") < 0)
        return -1;
    json_object *fmt;
    size_t mark = bb_rd_in(r, "text");
    int rc = bb_rd_want(r, text, "format", json_type_object, false, &fmt);
    if (rc == 0 && fmt) {
        bb_rd_in(r, "format");
        rc = read_format(r, fmt);
    }
    bb_rd_out(r, mark);
    return rc;
}

static int read_reasoning(struct bb_rd *r, json_object *rs)
{
    static const struct {
        const char *name;
        enum bb_ir_effort effort;
    } efforts[] = {{"minimal", BB_IR_EFFORT_MINIMAL}, {"low", BB_IR_EFFORT_LOW},
                   {"medium", BB_IR_EFFORT_MEDIUM},   {"high", BB_IR_EFFORT_HIGH},
                   {"xhigh", BB_IR_EFFORT_HIGH},      {"max", BB_IR_EFFORT_HIGH}};
    if (bb_rd_type(r, rs, "reasoning", json_type_object) < 0)
        return -1;
    json_object *ev = bb_json_get(rs, "effort");
    r->req->reasoning = true;
    if (!ev)
        return 0;
    if (bb_rd_type(r, ev, "reasoning.effort", json_type_string) < 0)
        return -1;
    const char *e = json_object_get_string(ev);
    if (strcmp(e, "none") == 0) {
        r->req->reasoning = false;
        return 0;
    }
    for (size_t i = 0; i < sizeof efforts / sizeof efforts[0]; i++) {
        if (strcmp(e, efforts[i].name) == 0) {
            r->req->reasoning_effort = efforts[i].effort;
            return 0;
        }
    }
    return bb_rd_expect(r, "reasoning.effort", "one of none, minimal, low, medium, high, xhigh");
}

/* Top-level members the IR cannot carry: recorded when they ask for something. */
static int read_other(struct bb_rd *r, const char *key, json_object *v)
{
    bool on = bb_json_is(v, json_type_boolean) && json_object_get_boolean(v);
    if (strcmp(key, "store") == 0 || strcmp(key, "background") == 0)
        return on ? bb_rd_unsupported(r, "", key) : 0;
    if (strcmp(key, "truncation") == 0)
        return bb_json_str_eq(v, "disabled") ? 0 : bb_rd_unsupported(r, "", "truncation");
    if (strcmp(key, "metadata") == 0)
        return bb_json_is(v, json_type_object) && json_object_object_length(v) == 0
                   ? 0
                   : bb_rd_unsupported(r, "", "metadata");
    if (strcmp(key, "stream_options") == 0) {
        json_object *ob = bb_json_get(v, "include_obfuscation");
        return bb_json_is(ob, json_type_boolean) && json_object_get_boolean(ob)
                   ? bb_rd_unsupported(r, "", "stream_options")
                   : 0;
    }
    if (strcmp(key, "include") == 0) {
        /* reasoning.encrypted_content is what busbar sends anyway (as the signature). */
        size_t n = bb_json_is(v, json_type_array) ? json_object_array_length(v) : 0;
        for (size_t i = 0; i < n; i++)
            if (!bb_json_str_eq(json_object_array_get_idx(v, i), "reasoning.encrypted_content"))
                return bb_rd_unsupported(r, "", "include");
        return 0;
    }
    return bb_rd_unsupported(r, "", key);
}

static int read_body(struct rd *x, json_object *root, const char *model_from_path)
{
    struct bb_rd *r = &x->r;
    struct bb_ir_request *req = r->req;
    json_object *input = NULL, *ins = NULL;
    bool has_model = false;
    json_object_object_foreach(root, key, v)
    {
        int rc = 0;
        if (!v || bb_params_known(param_rows, N_PARAMS, key))
            continue; /* null = absent; the table's members are read below */
        if (strcmp(key, "model") == 0) {
            rc = bb_rd_type(r, v, "model", json_type_string);
            if (rc == 0)
                rc = bb_rd_dup(r, v, &req->model);
            has_model = true;
        } else if (strcmp(key, "input") == 0) {
            if (!bb_json_is(v, json_type_string) && !bb_json_is(v, json_type_array))
                return bb_rd_expect(r, "input", "a string or an array");
            input = v;
        } else if (strcmp(key, "instructions") == 0) {
            rc = bb_rd_type(r, v, "instructions", json_type_string);
            ins = v;
        } else if (strcmp(key, "tools") == 0) {
            rc = read_tools(x, v, "tools");
        } else if (strcmp(key, "tool_choice") == 0) {
            rc = read_tool_choice(r, v);
        } else if (strcmp(key, "parallel_tool_calls") == 0) {
            rc = bb_rd_bool(r, root, key, &req->has_parallel_tool_calls, &req->parallel_tool_calls);
        } else if (strcmp(key, "text") == 0) {
            rc = read_text(r, v);
        } else if (strcmp(key, "reasoning") == 0) {
            rc = read_reasoning(r, v);
        } else if (strcmp(key, "stream") == 0) {
            rc = bb_rd_bool(r, root, key, NULL, &req->stream);
            req->include_usage = req->stream; /* Responses streams always end with usage */
        } else if (strcmp(key, "user") == 0 || strcmp(key, "safety_identifier") == 0) {
            rc = bb_rd_type(r, v, key, json_type_string);
            if (rc == 0 && (!req->user.p || strcmp(key, "user") == 0))
                rc = bb_rd_dup(r, v, &req->user);
        } else {
            rc = read_other(r, key, v);
        }
        if (rc < 0)
            return -1;
    }
    if (bb_params_read(r, root, param_rows, N_PARAMS) < 0)
        return -1;
    if (model_from_path) {
        req->model = bb_ir_strdup(r->a, model_from_path, strlen(model_from_path));
        has_model = true;
    }
    if (!has_model)
        return bb_rd_required(r, "model");
    if (!input)
        return bb_rd_fail(r, "input",
                          "required (busbar keeps no conversation state, so "
                          "previous_response_id alone cannot be served)");
    /* instructions come before any system/developer message of the input. */
    if (ins && add_system_text(x, ins) < 0)
        return -1;
    if (read_input(x, input) < 0)
        return -1;
    req->tools = x->tools.v;
    req->n_tools = x->tools.n;
    req->messages = x->msgs.v;
    req->n_messages = x->msgs.n;
    req->system = x->sys.v;
    req->n_system = x->sys.n;
    return 0;
}

static int read_request(struct bb_arena *a, const char *body, size_t len,
                        const char *model_from_path, struct bb_ir_request *out, struct bb_err *err)
{
    memset(out, 0, sizeof *out);
    json_object *root = bb_json_parse(body, len, "request body", err);
    if (!root)
        return -1;
    int rc;
    if (!bb_json_is(root, json_type_object)) {
        rc = bb_err_set(err, "request body: expected a JSON object");
    } else {
        struct rd x;
        memset(&x, 0, sizeof x);
        bb_rd_init(&x.r, a, out, err);
        rc = read_body(&x, root, model_from_path);
    }
    json_object_put(root);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * ingress: write_response
 * ---------------------------------------------------------------------------------------- */

static const char *rid_of(const char *request_id)
{
    return request_id && *request_id ? request_id : "busbar";
}

static void make_id(char *buf, const char *prefix, const char *rid, unsigned idx)
{
    snprintf(buf, ID_MAX, "%s_%.150s_%u", prefix, rid, idx);
}

/* IR blocks → output items; consecutive TEXT blocks share one message item. */
static json_object *output_json(struct bb_arena *a, const struct bb_ir_block *blocks, size_t n,
                                const char *rid, bool incomplete, const struct bb_ingress_ctx *ctx)
{
    json_object *out = json_object_new_array();
    char id[ID_MAX];
    unsigned oi = 0;
    for (size_t i = 0; i < n; i++) {
        const struct bb_ir_block *b = &blocks[i];
        if (b->type == BB_IR_TEXT) {
            json_object *content = json_object_new_array();
            size_t j = i;
            for (; j < n && blocks[j].type == BB_IR_TEXT; j++)
                json_object_array_add(content,
                                      text_part(blocks[j].text.p, blocks[j].text.len,
                                                annotations_json(a, &blocks[j].citations_json)));
            make_id(id, "msg", rid, oi++);
            json_object_array_add(
                out, message_item(id, incomplete && j == n ? "incomplete" : "completed", content));
            i = j - 1;
        } else if (b->type == BB_IR_THINKING || b->type == BB_IR_REDACTED_THINKING) {
            if (is_rs_id(&b->id))
                snprintf(id, sizeof id, "%s", b->id.p);
            else
                make_id(id, "rs", rid, oi);
            oi++;
            bool red = b->type == BB_IR_REDACTED_THINKING;
            json_object_array_add(out,
                                  reasoning_item(id, red ? NULL : b->text.p, red ? 0 : b->text.len,
                                                 b->signature.p, b->signature.len));
        } else if (b->type == BB_IR_TOOL_USE) {
            make_id(id, "fc", rid, oi++);
            bool empty = !b->input_json.p || !b->input_json.len;
            const char *args = empty ? "{}" : b->input_json.p;
            size_t args_len = empty ? 2 : b->input_json.len;
            const struct bb_ir_tool *t =
                ctx ? declared(ctx->tools, ctx->n_tools, b->name.p, b->name.len) : NULL;
            json_object_array_add(
                out, t ? call_item(id, "completed", b->id.p, b->id.len, t, args, args_len)
                       : function_item(id, "completed", b->id.p, b->id.len, b->name.p, b->name.len,
                                       args, args_len));
        } else {
            bb_proto_drop(a, NULL, b->type == BB_IR_IMAGE ? "images" : "documents");
        }
    }
    return out;
}

static void head_from(struct resp_head *h, char *idbuf, const struct bb_ir_str *id, const char *rid)
{
    if (id->p && id->len && id->len < ID_MAX)
        snprintf(idbuf, ID_MAX, "%s", id->p);
    else
        snprintf(idbuf, ID_MAX, "resp_%.150s", rid);
    h->id = idbuf;
}

static int write_response(struct bb_arena *a, const struct bb_ir_response *r,
                          const struct bb_ingress_ctx *ctx, struct evbuffer *out)
{
    const char *rid = rid_of(ctx ? ctx->request_id : NULL);
    char idbuf[ID_MAX];
    struct resp_head h = {0};
    head_from(&h, idbuf, &r->id, rid);
    h.model = r->model.p ? r->model.p : (ctx && ctx->model ? ctx->model : "");
    h.created = r->created ? r->created : (ctx ? ctx->created : 0);
    h.incomplete_reason = incomplete_reason(r->stop);
    h.status = h.incomplete_reason ? "incomplete" : "completed";
    if (r->stop == BB_IR_STOP_ERROR) {
        h.status = "failed";
        h.error_code = "server_error";
        h.error_message = "the provider ended the response with an error";
    }
    h.usage = &r->usage;
    json_object *o = response_json(
        &h, output_json(a, r->blocks, r->n_blocks, rid, h.incomplete_reason != NULL, ctx));
    int rc = o ? bb_json_append(out, o) : -1;
    json_object_put(o);
    return rc;
}

static const char *stream_content_type(const struct bb_ingress_ctx *ctx)
{
    (void)ctx;
    return "text/event-stream";
}

/* ------------------------------------------------------------------------------------------
 * ingress: stream encoder (IR events → typed SSE events)
 * ---------------------------------------------------------------------------------------- */

/* A growable heap buffer owned by the encoder. */
struct sbuf {
    char *p;
    size_t len, cap;
};

static int sbuf_add(struct sbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static void sbuf_free(struct sbuf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* Append one JSON value to a comma-separated list kept as text. */
static int sbuf_add_json(struct sbuf *b, json_object *o)
{
    size_t n = 0;
    const char *s = bb_json_out(o, &n);
    if (!s || (b->len && sbuf_add(b, ",", 1)))
        return -1;
    return sbuf_add(b, s, n);
}

/* The list as a JSON array object. */
static json_object *sbuf_array(const struct sbuf *b)
{
    if (!b->len)
        return json_object_new_array();
    size_t n = b->len + 2;
    char *tmp = malloc(n);
    if (!tmp)
        return NULL;
    tmp[0] = '[';
    memcpy(tmp + 1, b->p, b->len);
    tmp[n - 1] = ']';
    json_object *arr = bb_json_parse(tmp, n, "list", NULL);
    free(tmp);
    return arr;
}

/* A function call item still open while another block streams: parallel calls whose
 * arguments interleave (the IR may keep several tool blocks open). */
struct parked {
    bool used;
    uint32_t oi;                     /* its output_index (its item id follows from it) */
    struct sbuf text, call_id, name; /* arguments so far, call id, name */
    const struct bb_ir_tool *tool;
};

#define PARK_MAX 16 /* calls open at once besides the streaming one (more are finished early) */

/* The calls set aside (heap, made on the first: most answers never park one). */
struct parking {
    struct bb_eseq seq; /* IR index -> flags = slot in park */
    struct parked park[PARK_MAX];
};

struct renc {
    char rid[160];
    char id[ID_MAX];
    char model[256];
    int64_t created;
    uint64_t seq;
    bool started, finished;
    uint32_t n_items; /* output items opened so far (next output_index) */

    bool msg_open; /* an assistant message item spanning consecutive TEXT blocks */
    uint32_t msg_oi, msg_parts;
    char msg_id[ID_MAX];

    bool blk_open; /* the IR block being streamed */
    uint32_t blk_index;
    enum bb_ir_block_type blk_type;
    uint32_t blk_oi, blk_ci, n_annotations;
    bool summary_open;
    char blk_id[ID_MAX];

    enum bb_ir_stop stop;
    struct bb_ir_usage usage;

    /* Accumulated text for the *.done events and response.completed (heap, see header). */
    size_t acc_used;
    bool acc_full;
    struct sbuf text; /* current block: text / reasoning summary / arguments */
    struct sbuf sig;  /* current block: signature or redacted data */
    bool sig_dropped;
    struct sbuf call_id, name;
    const struct bb_ir_tool *blk_tool; /* the client's tool of the open call (declared) */
    const struct bb_ir_tool *tools;    /* the client's tools (struct bb_ingress_ctx) */
    size_t n_tools;
    struct sbuf annotations; /* current TEXT block: OpenAI annotations, JSON list */
    struct sbuf parts;       /* finished output_text parts of the open message item */
    struct sbuf items;       /* finished output items */

    struct parking *parking; /* open calls set aside (NULL: none yet) */
};

static void renc_free(struct renc *e)
{
    sbuf_free(&e->text);
    sbuf_free(&e->sig);
    sbuf_free(&e->call_id);
    sbuf_free(&e->name);
    sbuf_free(&e->annotations);
    sbuf_free(&e->parts);
    sbuf_free(&e->items);
    for (size_t i = 0; e->parking && i < PARK_MAX; i++) {
        sbuf_free(&e->parking->park[i].text);
        sbuf_free(&e->parking->park[i].call_id);
        sbuf_free(&e->parking->park[i].name);
    }
    free(e->parking);
    e->parking = NULL;
}

/* Accumulate streamed text within the per-stream bound; past it, stop at a UTF-8 boundary. */
static int acc_text(struct renc *e, const char *s, size_t n)
{
    if (e->acc_full)
        return 0;
    if (e->acc_used + n > ACC_MAX) {
        size_t room = ACC_MAX - e->acc_used;
        while (room > 0 && ((unsigned char)s[room] & 0xC0) == 0x80)
            room--;
        n = room;
        e->acc_full = true;
    }
    e->acc_used += n;
    return sbuf_add(&e->text, s, n);
}

/* A signature is useless truncated: past the bound it is dropped whole. */
static int acc_sig(struct renc *e, const char *s, size_t n)
{
    if (e->sig_dropped)
        return 0;
    if (e->acc_used + n > ACC_MAX) {
        e->sig_dropped = true;
        sbuf_free(&e->sig);
        return 0;
    }
    e->acc_used += n;
    return sbuf_add(&e->sig, s, n);
}

static json_object *ev_new(struct renc *e, const char *type)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "type", json_object_new_string(type));
    json_object_object_add(o, "sequence_number", json_object_new_int64((int64_t)e->seq++));
    return o;
}

static int ev_send(struct evbuffer *out, json_object *o)
{
    size_t n = 0;
    const char *type = bb_json_get_str(o, "type");
    const char *s = bb_json_out(o, &n);
    int rc = -1;
    if (s && type && bb_proto_put(out, "event: ", type, "\ndata: ") == 0 &&
        evbuffer_add(out, s, n) == 0 && evbuffer_add(out, "\n\n", 2) == 0)
        rc = 0;
    json_object_put(o);
    return rc;
}

static void ev_item_ref(json_object *o, const char *item_id, uint32_t oi)
{
    json_object_object_add(o, "item_id", json_object_new_string(item_id));
    json_object_object_add(o, "output_index", json_object_new_int64(oi));
}

/* The Response object of a lifecycle event; usage is reported at the end only: the final
 * events (completed, incomplete, failed) are the ones with the output. */
static json_object *enc_response(struct renc *e, const char *status, json_object *output,
                                 const char *err_code, const char *err_msg)
{
    struct resp_head h = {.id = e->id,
                          .model = e->model,
                          .created = e->created,
                          .status = status,
                          .error_code = err_code,
                          .error_message = err_msg};
    if (streq(status, "incomplete"))
        h.incomplete_reason = incomplete_reason(e->stop);
    if (output)
        h.usage = &e->usage;
    return response_json(&h, output);
}

static int enc_lifecycle(struct renc *e, struct evbuffer *out, const char *type,
                         json_object *response)
{
    if (!response)
        return -1;
    json_object *o = ev_new(e, type);
    json_object_object_add(o, "response", response);
    return ev_send(out, o);
}

static void enc_init(void *enc, const struct bb_ingress_ctx *ctx)
{
    struct renc *e = enc;
    memset(e, 0, sizeof *e);
    snprintf(e->rid, sizeof e->rid, "%s", rid_of(ctx ? ctx->request_id : NULL));
    snprintf(e->model, sizeof e->model, "%s", ctx && ctx->model ? ctx->model : "");
    e->created = ctx ? ctx->created : 0;
    e->tools = ctx ? ctx->tools : NULL;
    e->n_tools = ctx ? ctx->n_tools : 0;
}

static int enc_start(struct renc *e, const struct bb_ir_event *ev, struct evbuffer *out)
{
    if (e->started)
        return 0;
    e->started = true;
    if (ev && ev->id.p && ev->id.len && ev->id.len < sizeof e->id)
        snprintf(e->id, sizeof e->id, "%s", ev->id.p);
    else
        snprintf(e->id, sizeof e->id, "resp_%.150s", e->rid);
    if (ev && ev->model.p && ev->model.len && ev->model.len < sizeof e->model)
        snprintf(e->model, sizeof e->model, "%s", ev->model.p);
    if (ev)
        bb_ir_usage_max(&e->usage, &ev->usage);
    int rc =
        enc_lifecycle(e, out, "response.created", enc_response(e, "in_progress", NULL, NULL, NULL));
    if (!rc)
        rc = enc_lifecycle(e, out, "response.in_progress",
                           enc_response(e, "in_progress", NULL, NULL, NULL));
    return rc;
}

static int enc_close_message(struct renc *e, struct evbuffer *out, const char *status)
{
    if (!e->msg_open)
        return 0;
    e->msg_open = false;
    json_object *content = sbuf_array(&e->parts);
    if (!content)
        return -1;
    json_object *item = message_item(e->msg_id, status, content);
    int rc = sbuf_add_json(&e->items, item);
    json_object *o = ev_new(e, "response.output_item.done");
    json_object_object_add(o, "output_index", json_object_new_int64(e->msg_oi));
    json_object_object_add(o, "item", item);
    if (ev_send(out, o))
        rc = -1;
    sbuf_free(&e->parts);
    return rc;
}

static const char *final_message_status(const struct renc *e)
{
    return incomplete_reason(e->stop) ? "incomplete" : "completed";
}

static int enc_open_block(struct renc *e, uint32_t index, enum bb_ir_block_type type,
                          const struct bb_ir_str *id, const struct bb_ir_str *name,
                          struct evbuffer *out)
{
    e->blk_open = true;
    e->blk_index = index;
    e->blk_type = type;
    e->n_annotations = 0;
    e->summary_open = false;
    e->sig_dropped = false;
    e->text.len = 0;
    e->sig.len = 0;
    e->call_id.len = 0;
    e->name.len = 0;
    e->blk_tool = NULL;
    e->annotations.len = 0;
    if (type == BB_IR_TEXT) {
        if (!e->msg_open) {
            e->msg_open = true;
            e->msg_oi = e->n_items++;
            e->msg_parts = 0;
            make_id(e->msg_id, "msg", e->rid, e->msg_oi);
            json_object *o = ev_new(e, "response.output_item.added");
            json_object_object_add(o, "output_index", json_object_new_int64(e->msg_oi));
            json_object_object_add(o, "item", message_item(e->msg_id, "in_progress", NULL));
            if (ev_send(out, o))
                return -1;
        }
        e->blk_oi = e->msg_oi;
        e->blk_ci = e->msg_parts++;
        snprintf(e->blk_id, sizeof e->blk_id, "%s", e->msg_id);
        json_object *o = ev_new(e, "response.content_part.added");
        ev_item_ref(o, e->blk_id, e->blk_oi);
        json_object_object_add(o, "content_index", json_object_new_int64(e->blk_ci));
        json_object_object_add(o, "part", text_part("", 0, NULL));
        return ev_send(out, o);
    }
    if (enc_close_message(e, out, "completed"))
        return -1;
    e->blk_oi = e->n_items++;
    e->blk_ci = 0;
    json_object *item;
    if (type == BB_IR_THINKING || type == BB_IR_REDACTED_THINKING) {
        if (id && is_rs_id(id))
            snprintf(e->blk_id, sizeof e->blk_id, "%s", id->p);
        else
            make_id(e->blk_id, "rs", e->rid, e->blk_oi);
        item = reasoning_item(e->blk_id, NULL, 0, NULL, 0);
    } else {
        make_id(e->blk_id, "fc", e->rid, e->blk_oi);
        if ((id && id->p && sbuf_add(&e->call_id, id->p, id->len)) ||
            (name && name->p && sbuf_add(&e->name, name->p, name->len)))
            return -1;
        e->blk_tool = declared(e->tools, e->n_tools, e->name.p, e->name.len);
        item = e->blk_tool ? call_item(e->blk_id, "in_progress", e->call_id.p, e->call_id.len,
                                       e->blk_tool, "{}", 2)
                           : function_item(e->blk_id, "in_progress", e->call_id.p, e->call_id.len,
                                           e->name.p, e->name.len, "", 0);
    }
    json_object *o = ev_new(e, "response.output_item.added");
    json_object_object_add(o, "output_index", json_object_new_int64(e->blk_oi));
    json_object_object_add(o, "item", item);
    return ev_send(out, o);
}

static int enc_summary_done(struct renc *e, struct evbuffer *out)
{
    if (!e->summary_open)
        return 0;
    json_object *o = ev_new(e, "response.reasoning_summary_text.done");
    ev_item_ref(o, e->blk_id, e->blk_oi);
    json_object_object_add(o, "summary_index", json_object_new_int64(0));
    json_object_object_add(o, "text", bb_json_new_strn(e->text.p, e->text.len));
    if (ev_send(out, o))
        return -1;
    o = ev_new(e, "response.reasoning_summary_part.done");
    ev_item_ref(o, e->blk_id, e->blk_oi);
    json_object_object_add(o, "summary_index", json_object_new_int64(0));
    json_object_object_add(o, "part", summary_part(e->text.p, e->text.len));
    return ev_send(out, o);
}

static int enc_item_done(struct renc *e, struct evbuffer *out, json_object *item)
{
    int rc = sbuf_add_json(&e->items, item);
    json_object *o = ev_new(e, "response.output_item.done");
    json_object_object_add(o, "output_index", json_object_new_int64(e->blk_oi));
    json_object_object_add(o, "item", item);
    return ev_send(out, o) ? -1 : rc;
}

static int enc_close_block(struct renc *e, struct evbuffer *out)
{
    if (!e->blk_open)
        return 0;
    e->blk_open = false;
    json_object *o;
    switch (e->blk_type) {
    case BB_IR_TEXT:
        o = ev_new(e, "response.output_text.done");
        ev_item_ref(o, e->blk_id, e->blk_oi);
        json_object_object_add(o, "content_index", json_object_new_int64(e->blk_ci));
        json_object_object_add(o, "text", bb_json_new_strn(e->text.p, e->text.len));
        json_object_object_add(o, "logprobs", json_object_new_array());
        if (ev_send(out, o))
            return -1;
        json_object *part = text_part(e->text.p, e->text.len, sbuf_array(&e->annotations));
        if (sbuf_add_json(&e->parts, part)) {
            json_object_put(part);
            return -1;
        }
        o = ev_new(e, "response.content_part.done");
        ev_item_ref(o, e->blk_id, e->blk_oi);
        json_object_object_add(o, "content_index", json_object_new_int64(e->blk_ci));
        json_object_object_add(o, "part", part);
        return ev_send(out, o);
    case BB_IR_THINKING:
    case BB_IR_REDACTED_THINKING:
        if (enc_summary_done(e, out))
            return -1;
        return enc_item_done(e, out,
                             reasoning_item(e->blk_id, e->text.p, e->text.len,
                                            e->sig_dropped ? NULL : e->sig.p, e->sig.len));
    case BB_IR_TOOL_USE: {
        const char *args = e->text.len ? e->text.p : "{}";
        size_t args_len = e->text.len ? e->text.len : 2;
        if (e->blk_tool) {
            json_object *item = call_item(e->blk_id, "completed", e->call_id.p, e->call_id.len,
                                          e->blk_tool, args, args_len);
            if (wire_is(e->blk_tool, "custom")) { /* the input, whole */
                o = ev_new(e, "response.custom_tool_call_input.done");
                ev_item_ref(o, e->blk_id, e->blk_oi);
                json_object_object_add(o, "input", json_object_get(bb_json_get(item, "input")));
                if (ev_send(out, o)) {
                    json_object_put(item);
                    return -1;
                }
            } else if (!wire_is(e->blk_tool, "tool_search")) {
                o = ev_new(e, "response.function_call_arguments.done");
                ev_item_ref(o, e->blk_id, e->blk_oi);
                json_object_object_add(o, "name", bb_json_new_str(&e->blk_tool->local));
                json_object_object_add(o, "arguments", bb_json_new_strn(args, args_len));
                if (ev_send(out, o)) {
                    json_object_put(item);
                    return -1;
                }
            }
            return enc_item_done(e, out, item);
        }
        o = ev_new(e, "response.function_call_arguments.done");
        ev_item_ref(o, e->blk_id, e->blk_oi);
        json_object_object_add(o, "name", bb_json_new_strn(e->name.p, e->name.len));
        json_object_object_add(o, "arguments", bb_json_new_strn(args, args_len));
        if (ev_send(out, o))
            return -1;
        return enc_item_done(e, out,
                             function_item(e->blk_id, "completed", e->call_id.p, e->call_id.len,
                                           e->name.p, e->name.len, args, args_len));
    }
    default:
        return 0;
    }
}

/* Set the streaming call aside, open (its item stays in progress); 1 when there was no room
 * (the caller finishes it instead). */
static int park_current(struct renc *e)
{
    if (!e->parking && !(e->parking = calloc(1, sizeof *e->parking)))
        return 1;
    struct parking *pk = e->parking;
    size_t slot = 0;
    while (slot < PARK_MAX && pk->park[slot].used)
        slot++;
    struct bb_eseq_block *b =
        slot < PARK_MAX ? bb_eseq_open(&pk->seq, e->blk_index, BB_IR_TOOL_USE, false) : NULL;
    if (!b)
        return 1;
    b->flags = (uint32_t)slot;
    pk->park[slot] = (struct parked){true, e->blk_oi, e->text, e->call_id, e->name, e->blk_tool};
    e->text = e->call_id = e->name = (struct sbuf){0}; /* moved */
    e->blk_open = false;
    return 0;
}

static struct bb_eseq_block *parked_find(struct renc *e, uint32_t index)
{
    return e->parking ? bb_eseq_find(&e->parking->seq, index) : NULL;
}

static size_t parked_count(const struct renc *e)
{
    return e->parking ? e->parking->seq.n_open : 0;
}

/* Make parked call b the streaming block again (nothing streams: the caller parked or closed
 * the current one). */
static void unpark(struct renc *e, struct bb_eseq_block *b)
{
    struct parked *k = &e->parking->park[b->flags];
    sbuf_free(&e->text);
    sbuf_free(&e->call_id);
    sbuf_free(&e->name);
    e->blk_open = true;
    e->blk_index = b->ir;
    e->blk_type = BB_IR_TOOL_USE;
    e->blk_oi = k->oi;
    e->blk_ci = 0;
    e->n_annotations = 0;
    e->summary_open = false;
    e->sig_dropped = false;
    e->sig.len = 0;
    e->annotations.len = 0;
    make_id(e->blk_id, "fc", e->rid, e->blk_oi); /* as enc_open_block named it */
    e->text = k->text;
    e->call_id = k->call_id;
    e->name = k->name;
    e->blk_tool = k->tool;
    k->text = k->call_id = k->name = (struct sbuf){0};
    k->used = false;
    bb_eseq_remove(&e->parking->seq, b);
}

/* The streaming block out of the way: a call is set aside, still open (finished when there is
 * no room); any other block is finished. */
static int enc_step_aside(struct renc *e, struct evbuffer *out)
{
    if (e->blk_open && e->blk_type == BB_IR_TOOL_USE && park_current(e) == 0)
        return 0;
    return enc_close_block(e, out);
}

/* Make the call at IR index the streaming block (the current one steps aside); *found false
 * when no parked call has that index. */
static int switch_to(struct renc *e, uint32_t index, struct evbuffer *out, bool *found)
{
    *found = parked_find(e, index) != NULL;
    if (!*found)
        return 0;
    if (enc_step_aside(e, out))
        return -1;
    unpark(e, parked_find(e, index)); /* (found again: parking may have moved it) */
    return 0;
}

/* Finish the streaming block and every parked call, in output order. */
static int enc_close_all(struct renc *e, struct evbuffer *out)
{
    /* with calls parked, a streaming call joins them, so all finish in output order */
    if (parked_count(e) ? enc_step_aside(e, out) : enc_close_block(e, out))
        return -1;
    while (parked_count(e)) {
        struct parking *pk = e->parking;
        struct bb_eseq_block *first = &pk->seq.open[0];
        for (size_t i = 1; i < pk->seq.n_open; i++)
            if (pk->park[pk->seq.open[i].flags].oi < pk->park[first->flags].oi)
                first = &pk->seq.open[i];
        unpark(e, first);
        if (enc_close_block(e, out))
            return -1;
    }
    return 0;
}

static int enc_delta(struct renc *e, const struct bb_ir_event *ev, struct evbuffer *out)
{
    const char *s = ev->text.p ? ev->text.p : "";
    size_t n = ev->text.p ? ev->text.len : 0;
    json_object *o;
    switch (ev->delta) {
    case BB_IR_D_TEXT:
        if (e->blk_type != BB_IR_TEXT || !n)
            return 0;
        if (acc_text(e, s, n))
            return -1;
        o = ev_new(e, "response.output_text.delta");
        ev_item_ref(o, e->blk_id, e->blk_oi);
        json_object_object_add(o, "content_index", json_object_new_int64(e->blk_ci));
        json_object_object_add(o, "delta", bb_json_new_strn(s, n));
        json_object_object_add(o, "logprobs", json_object_new_array());
        return ev_send(out, o);
    case BB_IR_D_THINKING:
        if (e->blk_type != BB_IR_THINKING || !n)
            return 0;
        if (!e->summary_open) {
            e->summary_open = true;
            o = ev_new(e, "response.reasoning_summary_part.added");
            ev_item_ref(o, e->blk_id, e->blk_oi);
            json_object_object_add(o, "summary_index", json_object_new_int64(0));
            json_object_object_add(o, "part", summary_part("", 0));
            if (ev_send(out, o))
                return -1;
        }
        if (acc_text(e, s, n))
            return -1;
        o = ev_new(e, "response.reasoning_summary_text.delta");
        ev_item_ref(o, e->blk_id, e->blk_oi);
        json_object_object_add(o, "summary_index", json_object_new_int64(0));
        json_object_object_add(o, "delta", bb_json_new_strn(s, n));
        return ev_send(out, o);
    case BB_IR_D_SIGNATURE:
    case BB_IR_D_REDACTED:
        if (e->blk_type != BB_IR_THINKING && e->blk_type != BB_IR_REDACTED_THINKING)
            return 0;
        return acc_sig(e, s, n);
    case BB_IR_D_INPUT_JSON:
        if (e->blk_type != BB_IR_TOOL_USE || !n)
            return 0;
        if (acc_text(e, s, n))
            return -1;
        if (e->blk_tool && e->blk_tool->wire_type.p)
            return 0; /* a freeform input or a search: written whole when the call ends */
        o = ev_new(e, "response.function_call_arguments.delta");
        ev_item_ref(o, e->blk_id, e->blk_oi);
        json_object_object_add(o, "delta", bb_json_new_strn(s, n));
        return ev_send(out, o);
    case BB_IR_D_CITATION: {
        if (e->blk_type != BB_IR_TEXT)
            return 0;
        json_object *an = bb_json_raw(&ev->text);
        if (!openai_annotation(an)) {
            json_object_put(an);
            return 0; /* another provider's citation shape: no Responses equivalent */
        }
        if (e->acc_used + ev->text.len <= ACC_MAX) {
            e->acc_used += ev->text.len;
            if (sbuf_add_json(&e->annotations, an)) {
                json_object_put(an);
                return -1;
            }
        }
        o = ev_new(e, "response.output_text.annotation.added");
        ev_item_ref(o, e->blk_id, e->blk_oi);
        json_object_object_add(o, "content_index", json_object_new_int64(e->blk_ci));
        json_object_object_add(o, "annotation_index", json_object_new_int64(e->n_annotations++));
        json_object_object_add(o, "annotation", an);
        return ev_send(out, o);
    }
    }
    return 0;
}

static enum bb_ir_block_type block_for_delta(enum bb_ir_delta d)
{
    switch (d) {
    case BB_IR_D_THINKING:
    case BB_IR_D_SIGNATURE:
        return BB_IR_THINKING;
    case BB_IR_D_REDACTED:
        return BB_IR_REDACTED_THINKING;
    case BB_IR_D_INPUT_JSON:
        return BB_IR_TOOL_USE;
    default:
        return BB_IR_TEXT;
    }
}

static int enc_end(struct renc *e, struct evbuffer *out)
{
    if (enc_close_all(e, out) || enc_close_message(e, out, final_message_status(e)))
        return -1;
    const char *status = incomplete_reason(e->stop) ? "incomplete" : "completed";
    json_object *output = sbuf_array(&e->items);
    int rc = output ? enc_lifecycle(e, out,
                                    streq(status, "incomplete") ? "response.incomplete"
                                                                : "response.completed",
                                    enc_response(e, status, output, NULL, NULL))
                    : -1;
    e->finished = true;
    renc_free(e);
    return rc;
}

/* ERROR: OpenAI's own `error` event (the SDK raises it), then response.failed with the items
 * finished so far (for clients that read the final response). Partial items are not closed, so
 * nothing half-streamed is presented as done. Nothing follows. */
static int enc_fail(struct renc *e, const char *type, int status, const char *msg,
                    struct evbuffer *out)
{
    const char *code = response_error_code(type, status);
    if (!msg || !*msg)
        msg = "upstream error";
    int rc = enc_start(e, NULL, out);
    if (!rc) {
        json_object *o = ev_new(e, "error");
        json_object_object_add(o, "code", json_object_new_string(code));
        json_object_object_add(o, "message", json_object_new_string(msg));
        json_object_object_add(o, "param", NULL);
        rc = ev_send(out, o);
    }
    json_object *output = rc ? NULL : sbuf_array(&e->items);
    rc = output ? enc_lifecycle(e, out, "response.failed",
                                enc_response(e, "failed", output, code, msg))
                : -1;
    e->finished = true;
    renc_free(e);
    return rc;
}

static int enc_event(void *enc, struct bb_arena *scratch, const struct bb_ir_event *ev,
                     struct evbuffer *out)
{
    struct renc *e = enc;
    (void)scratch;
    if (e->finished)
        return 0;
    if (ev->type == BB_IR_EV_ERROR)
        return enc_fail(e, ev->error_type.p, ev->error_status, ev->text.p, out);
    if (ev->type == BB_IR_EV_PING) {
        if (!e->started)
            return 0;
        return ev_send(out, ev_new(e, "keepalive"));
    }
    if (enc_start(e, ev->type == BB_IR_EV_MESSAGE_START ? ev : NULL, out))
        return -1;
    switch (ev->type) {
    case BB_IR_EV_MESSAGE_START:
        return 0;
    case BB_IR_EV_BLOCK_START: {
        /* a call starting while another streams sets that one aside, open (calls parked
         * earlier stay open too); any other block finishes everything open */
        bool call = ev->block_type == BB_IR_TOOL_USE;
        if (call && e->blk_open && e->blk_type == BB_IR_TOOL_USE && e->blk_index == ev->index)
            return 0; /* started twice: the first one stands */
        if (call ? enc_step_aside(e, out) : enc_close_all(e, out))
            return -1;
        if (ev->block_type != BB_IR_TEXT && ev->block_type != BB_IR_THINKING &&
            ev->block_type != BB_IR_REDACTED_THINKING && ev->block_type != BB_IR_TOOL_USE)
            return 0; /* no output item for media in an answer */
        return enc_open_block(e, ev->index, ev->block_type, &ev->id, &ev->name, out);
    }
    case BB_IR_EV_BLOCK_DELTA:
        if (!e->blk_open || e->blk_index != ev->index) {
            bool found;
            if (switch_to(e, ev->index, out, &found))
                return -1;
            if (found)
                return enc_delta(e, ev, out);
            /* A delta without its BLOCK_START: open the block it implies. */
            if (ev->delta == BB_IR_D_CITATION)
                return 0;
            if (enc_close_block(e, out) ||
                enc_open_block(e, ev->index, block_for_delta(ev->delta), NULL, NULL, out))
                return -1;
        }
        return enc_delta(e, ev, out);
    case BB_IR_EV_BLOCK_STOP:
        if (!e->blk_open || e->blk_index != ev->index) {
            bool found;
            if (switch_to(e, ev->index, out, &found))
                return -1;
            if (!found)
                return 0;
        }
        return enc_close_block(e, out);
    case BB_IR_EV_MESSAGE_DELTA:
        if (ev->stop != BB_IR_STOP_UNSET)
            e->stop = ev->stop;
        bb_ir_usage_max(&e->usage, &ev->usage);
        if (enc_close_all(e, out))
            return -1;
        return enc_close_message(e, out, final_message_status(e));
    case BB_IR_EV_MESSAGE_STOP:
        return enc_end(e, out);
    default:
        return 0;
    }
}

/* A stream ended without MESSAGE_STOP or ERROR must not look complete: response.failed. */
static void enc_finish(void *enc, struct evbuffer *out)
{
    struct renc *e = enc;
    if (e->started && !e->finished)
        (void)enc_fail(e, "server_error", 0, "the upstream stream ended before completion", out);
    e->finished = true;
    renc_free(e);
}

/* ------------------------------------------------------------------------------------------
 * egress: write_request
 * ---------------------------------------------------------------------------------------- */

static json_object *data_url(struct bb_arena *a, const struct bb_ir_block *b,
                             const char *fallback_media)
{
    struct bb_ir_str u = bb_media_data_url(a, &b->media_type, fallback_media, &b->data);
    return u.p ? bb_json_new_str(&u) : NULL;
}

/* IMAGE / DOCUMENT → input_image / input_file; NULL when it has neither data nor URL. */
static json_object *media_json(struct bb_arena *a, const struct bb_ir_block *b)
{
    json_object *p = json_object_new_object();
    if (b->type == BB_IR_IMAGE) {
        json_object_object_add(p, "type", json_object_new_string("input_image"));
        if (b->data.p)
            json_object_object_add(p, "image_url", data_url(a, b, "image/png"));
        else if (b->url.p)
            json_object_object_add(p, "image_url", bb_json_new_str(&b->url));
        else
            goto none;
        json_object_object_add(p, "detail", json_object_new_string("auto"));
        return p;
    }
    json_object_object_add(p, "type", json_object_new_string("input_file"));
    if (b->data.p) {
        json_object_object_add(p, "filename",
                               json_object_new_string(filename_for_media(&b->media_type)));
        json_object_object_add(p, "file_data", data_url(a, b, "application/pdf"));
    } else if (b->url.p) {
        json_object_object_add(p, "file_url", bb_json_new_str(&b->url));
    } else {
        goto none;
    }
    return p;
none:
    json_object_put(p);
    return NULL;
}

static json_object *input_text(const char *type, const struct bb_ir_str *t)
{
    json_object *p = json_object_new_object();
    json_object_object_add(p, "type", json_object_new_string(type));
    json_object_object_add(p, "text", bb_json_new_str(t));
    return p;
}

static json_object *tool_output(struct bb_arena *a, const struct bb_egress_ctx *ctx,
                                const struct bb_ir_block *b)
{
    json_object *item = json_object_new_object();
    json_object_object_add(item, "type", json_object_new_string("function_call_output"));
    json_object_object_add(item, "call_id", bb_json_new_str(&b->id));
    struct bb_ir_block tmp;
    b = bb_ir_error_result(a, b, &tmp); /* the error flag in the text */
    if (b->is_error)
        bb_proto_drop(a, ctx, "is_error");
    if (b->n_content && !b->text.p) {
        json_object *arr = json_object_new_array();
        for (size_t k = 0; k < b->n_content; k++) {
            const struct bb_ir_block *c = &b->content[k];
            json_object *p = c->type == BB_IR_TEXT ? input_text("input_text", &c->text)
                             : (c->type == BB_IR_IMAGE || c->type == BB_IR_DOCUMENT)
                                 ? media_json(a, c)
                                 : NULL;
            if (p)
                json_object_array_add(arr, p);
            else
                bb_proto_drop(a, ctx, "tool_result.content");
        }
        json_object_object_add(item, "output", arr);
    } else {
        json_object_object_add(item, "output", bb_json_new_str(&b->text));
    }
    return item;
}

struct wr {
    struct bb_arena *a;
    const struct bb_egress_ctx *ctx;
    json_object *input;
    json_object *content; /* the message item being filled (user or assistant), or NULL */
    unsigned n_reasoning;
};

static void flush_message(struct wr *w, const char *role)
{
    if (!w->content)
        return;
    json_object *m = json_object_new_object();
    json_object_object_add(m, "role", json_object_new_string(role));
    json_object_object_add(m, "content", w->content);
    json_object_array_add(w->input, m);
    w->content = NULL;
}

static void add_part(struct wr *w, json_object *p)
{
    if (!w->content)
        w->content = json_object_new_array();
    json_object_array_add(w->content, p);
}

static void write_message(struct wr *w, const struct bb_ir_message *m, size_t mi)
{
    const char *role = m->role == BB_IR_ASSISTANT ? "assistant" : "user";
    if (m->name.p)
        bb_proto_drop(w->a, w->ctx, "name");
    for (size_t i = 0; i < m->n_blocks; i++) {
        const struct bb_ir_block *b = &m->blocks[i];
        if (b->cache_control)
            bb_proto_drop(w->a, w->ctx, "cache_control");
        switch (b->type) {
        case BB_IR_TEXT:
            if (b->citations_json.p)
                bb_proto_drop(w->a, w->ctx, "citations");
            add_part(
                w, input_text(m->role == BB_IR_ASSISTANT ? "output_text" : "input_text", &b->text));
            break;
        case BB_IR_IMAGE:
        case BB_IR_DOCUMENT: {
            json_object *p = m->role == BB_IR_USER ? media_json(w->a, b) : NULL;
            if (p)
                add_part(w, p);
            else
                bb_proto_drop(w->a, w->ctx, b->type == BB_IR_IMAGE ? "images" : "documents");
            break;
        }
        case BB_IR_TOOL_RESULT:
            flush_message(w, role);
            json_object_array_add(w->input, tool_output(w->a, w->ctx, b));
            break;
        case BB_IR_TOOL_USE: {
            flush_message(w, role);
            json_object *f = json_object_new_object();
            json_object_object_add(f, "type", json_object_new_string("function_call"));
            json_object_object_add(f, "call_id", bb_json_new_str(&b->id));
            json_object_object_add(f, "name", bb_json_new_str(&b->name));
            json_object_object_add(f, "arguments",
                                   b->input_json.p && b->input_json.len
                                       ? bb_json_new_str(&b->input_json)
                                       : json_object_new_string("{}"));
            json_object_array_add(w->input, f);
            break;
        }
        case BB_IR_THINKING:
        case BB_IR_REDACTED_THINKING: {
            /* Only an encrypted reasoning item can be handed back (store=false); a summary
             * alone cannot, and a reasoning item to a lane without reasoning is refused. */
            if (!w->ctx->lane->reasoning || !b->signature.p || !b->signature.len ||
                m->role != BB_IR_ASSISTANT) {
                bb_proto_drop(w->a, w->ctx, "thinking");
                break;
            }
            flush_message(w, role);
            char id[ID_MAX];
            if (is_rs_id(&b->id))
                snprintf(id, sizeof id, "%s", b->id.p);
            else
                snprintf(id, sizeof id, "rs_bb%zu_%u", mi, w->n_reasoning);
            w->n_reasoning++;
            bool red = b->type == BB_IR_REDACTED_THINKING;
            json_object_array_add(w->input,
                                  reasoning_item(id, red ? NULL : b->text.p, red ? 0 : b->text.len,
                                                 b->signature.p, b->signature.len));
            break;
        }
        }
    }
    flush_message(w, role);
}

static const char *effort_name(const struct bb_ir_request *ir)
{
    switch (ir->reasoning_effort) {
    case BB_IR_EFFORT_MINIMAL:
        return "minimal";
    case BB_IR_EFFORT_LOW:
        return "low";
    case BB_IR_EFFORT_MEDIUM:
        return "medium";
    case BB_IR_EFFORT_HIGH:
        return "high";
    default:
        break;
    }
    /* A token budget (Anthropic, Gemini) becomes the nearest effort. */
    if (!ir->reasoning_budget)
        return NULL;
    if (ir->reasoning_budget < 4096)
        return "low";
    if (ir->reasoning_budget < 16384)
        return "medium";
    return "high";
}

static json_object *system_text(struct bb_arena *a, const struct bb_egress_ctx *ctx,
                                const struct bb_ir_request *ir)
{
    size_t total = 0;
    for (size_t i = 0; i < ir->n_system; i++)
        total += ir->system[i].text.len + 2;
    char *buf = malloc(total + 1);
    if (!buf)
        return NULL;
    size_t len = 0;
    for (size_t i = 0; i < ir->n_system; i++) {
        if (ir->system[i].cache_control)
            bb_proto_drop(a, ctx, "cache_control");
        if (ir->system[i].type != BB_IR_TEXT || !ir->system[i].text.p)
            continue;
        if (len) {
            memcpy(buf + len, "\n\n", 2);
            len += 2;
        }
        memcpy(buf + len, ir->system[i].text.p, ir->system[i].text.len);
        len += ir->system[i].text.len;
    }
    json_object *s = json_object_new_string_len(buf, (int)len);
    free(buf);
    return s;
}

static int write_tools(const struct bb_ir_request *ir, json_object *body, struct bb_err *err)
{
    json_object *tools = json_object_new_array();
    json_object_object_add(body, "tools", tools);
    for (size_t i = 0; i < ir->n_tools; i++) {
        const struct bb_ir_tool *t = &ir->tools[i];
        json_object *o = json_object_new_object();
        json_object_array_add(tools, o);
        json_object_object_add(o, "type", json_object_new_string("function"));
        json_object_object_add(o, "name", bb_json_new_str(&t->name));
        if (t->description.p)
            json_object_object_add(o, "description", bb_json_new_str(&t->description));
        json_object *params = bb_json_raw(&t->parameters_json);
        if (t->parameters_json.p && !params)
            return bb_err_set(err, "tools[%zu].parameters: not valid JSON", i);
        if (!params) {
            /* A tool without parameters; additionalProperties:false keeps it valid when
             * strict (OpenAI's strict mode demands it). */
            params = json_object_new_object();
            json_object_object_add(params, "type", json_object_new_string("object"));
            json_object_object_add(params, "properties", json_object_new_object());
            json_object_object_add(params, "additionalProperties", json_object_new_boolean(0));
        }
        json_object_object_add(o, "parameters", params);
        /* Explicit, because the Responses API defaults function tools to strict. */
        json_object_object_add(o, "strict", json_object_new_boolean(t->strict));
    }
    for (size_t i = 0; i < ir->n_hosted; i++) /* the hosted web search */
        if (ir->hosted[i].kind.p && strcmp(ir->hosted[i].kind.p, "web_search") == 0) {
            json_object *o = json_object_new_object();
            json_object_object_add(o, "type", json_object_new_string("web_search"));
            json_object_array_add(tools, o);
            break;
        }
    return 0;
}

/* The API refuses max_output_tokens below 16 (400): a smaller cap from another dialect is
 * raised rather than failing the request. */
static bool raise_max_tokens(void *arg, const struct bb_param *p, struct bb_param_value *v)
{
    (void)arg;
    if (p->field == BB_IRP_MAX_TOKENS && v->i < 16)
        v->i = 16;
    return true;
}

static int write_body(struct bb_arena *a, const struct bb_ir_request *ir,
                      const struct bb_egress_ctx *ctx, json_object *body, struct bb_err *err)
{
    const struct bb_lane *lane = ctx->lane;
    json_object_object_add(body, "model",
                           json_object_new_string(lane->upstream_model
                                                      ? lane->upstream_model
                                                      : (ir->model.p ? ir->model.p : "")));
    if (ir->n_system)
        json_object_object_add(body, "instructions", system_text(a, ctx, ir));
    struct wr w = {.a = a, .ctx = ctx, .input = json_object_new_array()};
    json_object_object_add(body, "input", w.input);
    bb_proto_drop_hosted(a, ctx, ir, "web_search");
    for (size_t i = 0; i < ir->n_messages; i++)
        if (ir->messages[i].role == BB_IR_SYSTEM) { /* in its place, as a developer message */
            const struct bb_ir_message *m = &ir->messages[i];
            struct bb_ir_request one = {.system = m->blocks, .n_system = m->n_blocks};
            json_object *it = json_object_new_object();
            json_object_object_add(it, "type", json_object_new_string("message"));
            json_object_object_add(it, "role", json_object_new_string("developer"));
            json_object_object_add(it, "content", system_text(a, ctx, &one));
            json_object_array_add(w.input, it);
        } else {
            write_message(&w, &ir->messages[i], i);
        }

    if ((ir->n_tools || ir->n_hosted) && write_tools(ir, body, err))
        return -1;
    switch (ir->tool_choice) {
    case BB_IR_TC_AUTO:
        json_object_object_add(body, "tool_choice", json_object_new_string("auto"));
        break;
    case BB_IR_TC_NONE:
        json_object_object_add(body, "tool_choice", json_object_new_string("none"));
        break;
    case BB_IR_TC_ANY:
        json_object_object_add(body, "tool_choice", json_object_new_string("required"));
        break;
    case BB_IR_TC_TOOL: {
        json_object *tc = json_object_new_object();
        json_object_object_add(tc, "type", json_object_new_string("function"));
        json_object_object_add(tc, "name", bb_json_new_str(&ir->tool_choice_name));
        json_object_object_add(body, "tool_choice", tc);
        break;
    }
    default:
        break;
    }
    if (ir->has_parallel_tool_calls)
        json_object_object_add(body, "parallel_tool_calls",
                               json_object_new_boolean(ir->parallel_tool_calls));
    bb_params_write(body, param_rows, N_PARAMS, ir, a, ctx, raise_max_tokens, NULL);

    if (ir->format != BB_IR_FMT_UNSET) {
        json_object *text = json_object_new_object(), *fmt = json_object_new_object();
        json_object_object_add(text, "format", fmt);
        json_object_object_add(body, "text", text);
        if (ir->format == BB_IR_FMT_JSON_SCHEMA) {
            json_object *schema = bb_json_raw(&ir->format_schema_json);
            if (!schema)
                return bb_err_set(err, "response_format: the JSON schema is not valid JSON");
            json_object_object_add(fmt, "type", json_object_new_string("json_schema"));
            json_object_object_add(
                fmt, "name",
                json_object_new_string(ir->format_name.p ? ir->format_name.p : "response"));
            json_object_object_add(fmt, "schema", schema);
            if (ir->format_strict)
                json_object_object_add(fmt, "strict", json_object_new_boolean(1));
        } else {
            json_object_object_add(fmt, "type",
                                   json_object_new_string(ir->format == BB_IR_FMT_JSON_OBJECT
                                                              ? "json_object"
                                                              : "text"));
        }
    }

    if (lane->reasoning) {
        /* encrypted_content comes back as the THINKING signature, for the next turn. */
        json_object *inc = json_object_new_array();
        json_object_array_add(inc, json_object_new_string("reasoning.encrypted_content"));
        json_object_object_add(body, "include", inc);
        if (ir->reasoning) {
            json_object *rs = json_object_new_object();
            const char *effort = effort_name(ir);
            if (effort)
                json_object_object_add(rs, "effort", json_object_new_string(effort));
            json_object_object_add(rs, "summary", json_object_new_string("auto"));
            json_object_object_add(body, "reasoning", rs);
        }
    } else if (ir->reasoning) {
        bb_proto_drop(a, ctx, "reasoning");
    }
    if (ir->user.p)
        json_object_object_add(body, "user", bb_json_new_str(&ir->user));
    json_object_object_add(body, "store", json_object_new_boolean(0));
    json_object_object_add(body, "stream", json_object_new_boolean(ctx->stream));

    return 0;
}

static int write_request(struct bb_arena *a, const struct bb_ir_request *ir,
                         const struct bb_egress_ctx *ctx, struct bb_egress_req *out,
                         struct bb_err *err)
{
    if (!ctx || !ctx->lane || !ctx->provider)
        return bb_err_set(err, "openai-responses egress: no lane or provider");
    snprintf(out->path, sizeof out->path, "%s", bb_proto_responses.path);
    if (bb_proto_put(out->headers, "Content-Type: application/json\r\n", NULL, NULL) < 0)
        return bb_err_set(err, "out of memory");
    if (ctx->stream && bb_proto_put(out->headers, "Accept: text/event-stream\r\n", NULL, NULL) < 0)
        return bb_err_set(err, "out of memory");
    if (bb_proto_bearer(out->headers, ctx->provider->api_key) < 0)
        return bb_err_set(err, "out of memory");
    json_object *body = json_object_new_object();
    if (!body)
        return bb_err_set(err, "out of memory");
    int rc = write_body(a, ir, ctx, body, err);
    if (!rc && bb_json_append(out->body, body))
        rc = bb_err_set(err, "out of memory writing the openai-responses body");
    json_object_put(body);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * egress: read_response
 * ---------------------------------------------------------------------------------------- */

/* Output items → blocks (message parts → TEXT, function_call → TOOL_USE, reasoning →
 * THINKING; hosted-tool items have no IR form and are skipped). */
static int output_blocks(struct bb_arena *a, json_object *output, struct bb_ir_block **blocks,
                         size_t *n_blocks, bool *saw_tool, bool *saw_refusal, struct bb_err *err)
{
    *blocks = NULL;
    *n_blocks = 0;
    if (!output)
        return 0;
    if (!bb_json_is(output, json_type_array))
        return bb_err_set(err, "response output: expected an array");
    size_t n = json_object_array_length(output), bound = 0;
    for (size_t i = 0; i < n; i++)
        bound += item_bound(json_object_array_get_idx(output, i));
    struct bb_ir_block *v = bb_arena_calloc(a, (bound ? bound : 1) * sizeof *v);
    if (!v)
        return bb_err_set(err, "out of memory");
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        json_object *it = json_object_array_get_idx(output, i);
        const char *type = bb_json_get_str(it, "type");
        if (streq(type, "message")) {
            json_object *c = bb_json_get(it, "content");
            size_t m = bb_json_is(c, json_type_array) ? json_object_array_length(c) : 0;
            for (size_t j = 0; j < m; j++) {
                json_object *p = json_object_array_get_idx(c, j);
                const char *pt = bb_json_get_str(p, "type");
                json_object *t = bb_json_get(p, streq(pt, "refusal") ? "refusal" : "text");
                if (!bb_json_is(t, json_type_string))
                    continue;
                if (streq(pt, "refusal"))
                    *saw_refusal = true;
                v[k].type = BB_IR_TEXT;
                v[k].text = bb_json_dup(a, t);
                json_object *an = bb_json_get(p, "annotations");
                if (bb_json_is(an, json_type_array) && json_object_array_length(an) > 0)
                    v[k].citations_json = bb_json_text(a, an);
                k++;
            }
        } else if (streq(type, "function_call")) {
            json_object *args = bb_json_get(it, "arguments");
            v[k].type = BB_IR_TOOL_USE;
            json_object *call_id = bb_json_get(it, "call_id"), *name = bb_json_get(it, "name");
            v[k].id = bb_json_is(call_id, json_type_string) ? bb_json_dup(a, call_id)
                                                            : bb_ir_strdup(a, "", 0);
            v[k].name =
                bb_json_is(name, json_type_string) ? bb_json_dup(a, name) : bb_ir_strdup(a, "", 0);
            v[k].input_json = bb_json_is(args, json_type_string) && json_object_get_string_len(args)
                                  ? bb_json_dup(a, args)
                                  : bb_ir_strdup(a, "{}", 2);
            *saw_tool = true;
            k++;
        } else if (streq(type, "reasoning")) {
            if (reasoning_block(a, it, &v[k]))
                k++;
        }
    }
    *blocks = v;
    *n_blocks = k;
    return 0;
}

static enum bb_ir_stop stop_of(json_object *resp, bool saw_tool, bool saw_refusal)
{
    const char *status = bb_json_get_str(resp, "status");
    const char *reason = bb_json_get_str(bb_json_get(resp, "incomplete_details"), "reason");
    if (streq(status, "incomplete") || reason) {
        if (streq(reason, "content_filter"))
            return BB_IR_STOP_CONTENT_FILTER;
        return BB_IR_STOP_MAX_TOKENS;
    }
    if (saw_tool)
        return BB_IR_STOP_TOOL_USE;
    if (saw_refusal)
        return BB_IR_STOP_REFUSAL;
    return BB_IR_STOP_END_TURN;
}

static int read_response(struct bb_arena *a, const char *body, size_t len,
                         struct bb_ir_response *out, struct bb_err *err)
{
    memset(out, 0, sizeof *out);
    json_object *root = bb_json_parse(body, len, "openai-responses response", err);
    if (!root)
        return -1;
    int rc = -1;
    if (!bb_json_is(root, json_type_object)) {
        bb_err_set(err, "openai-responses response: expected a JSON object");
        goto done;
    }
    if (streq(bb_json_get_str(root, "status"), "failed") || bb_json_get(root, "error")) {
        json_object *e = bb_json_get(root, "error");
        bb_err_set(err, "openai-responses response failed: %s: %s",
                   bb_json_get_str(e, "code") ? bb_json_get_str(e, "code") : "error",
                   bb_json_get_str(e, "message") ? bb_json_get_str(e, "message") : "no message");
        goto done;
    }
    json_object *id = bb_json_get(root, "id"), *model = bb_json_get(root, "model");
    if (bb_json_is(id, json_type_string))
        out->id = bb_json_dup(a, id);
    if (bb_json_is(model, json_type_string))
        out->model = bb_json_dup(a, model);
    json_object *created = bb_json_get(root, "created_at");
    if (bb_json_is_number(created))
        out->created = json_object_get_int64(created);
    bool saw_tool = false, saw_refusal = false;
    if (output_blocks(a, bb_json_get(root, "output"), &out->blocks, &out->n_blocks, &saw_tool,
                      &saw_refusal, err))
        goto done;
    out->stop = stop_of(root, saw_tool, saw_refusal);
    usage_read(bb_json_get(root, "usage"), &out->usage);
    rc = 0;
done:
    json_object_put(root);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * egress: stream decoder (typed SSE events → IR events)
 * ---------------------------------------------------------------------------------------- */

/* The open block's key in the sequencer: its output_index and content_index. */
#define RKEY(oi, ci) ((int64_t)((uint64_t)(oi) << 32 | ((uint64_t)(ci)&0xffffffffu)))
#define RKEY_OI(k) ((k) >> 32)
#define RKEY_CI(k) ((int64_t)(int32_t)((k)&0xffffffff))

struct rdec {
    bool started, ended;
    struct bb_dseq seq;
    bool delta_seen;
    int64_t sum_idx; /* THINKING: summary_index of the last delta */
    int64_t item_oi; /* the current message item and its next unopened part */
    int64_t next_ci;
    bool saw_tool, saw_refusal;
};

struct dctx {
    struct rdec *d;
    struct bb_dout o;
};

static int dec_emit(struct dctx *c, struct bb_ir_event *ev)
{
    return bb_dout_emit(&c->o, ev);
}

/* An index from the wire (output_index, content_index, ...); dflt when absent or absurd. */
static int64_t jint(json_object *o, const char *k, int64_t dflt)
{
    json_object *v = bb_json_get(o, k);
    if (!bb_json_is(v, json_type_int))
        return dflt;
    int64_t n = json_object_get_int64(v);
    return n >= 0 && n <= INT32_MAX ? n : dflt;
}

static int dec_start(struct dctx *c, json_object *resp)
{
    if (c->d->started)
        return 0;
    c->d->started = true;
    struct bb_ir_event ev = {.type = BB_IR_EV_MESSAGE_START};
    json_object *id = bb_json_get(resp, "id"), *model = bb_json_get(resp, "model");
    if (bb_json_is(id, json_type_string))
        ev.id = bb_json_dup(c->o.scratch, id);
    if (bb_json_is(model, json_type_string))
        ev.model = bb_json_dup(c->o.scratch, model);
    if (bb_json_get(resp, "usage"))
        usage_read(bb_json_get(resp, "usage"), &ev.usage);
    return dec_emit(c, &ev);
}

static int dec_close(struct dctx *c)
{
    return bb_dseq_close(&c->d->seq, &c->o);
}

static int dec_open(struct dctx *c, enum bb_ir_block_type type, int64_t oi, int64_t ci,
                    const char *id, const char *name)
{
    struct rdec *d = c->d;
    int rc = dec_start(c, NULL);
    if (!rc)
        rc = dec_close(c);
    if (rc)
        return rc;
    struct bb_ir_str sid = {NULL, 0}, sname = {NULL, 0};
    if (id)
        sid = bb_ir_strdup(c->o.scratch, id, strlen(id));
    if (name)
        sname = bb_ir_strdup(c->o.scratch, name, strlen(name));
    d->delta_seen = false;
    d->sum_idx = -1;
    if (type == BB_IR_TEXT) {
        if (oi != d->item_oi) {
            d->item_oi = oi;
            d->next_ci = 0;
        }
        if (ci >= d->next_ci)
            d->next_ci = ci + 1;
    }
    return bb_dseq_open(&d->seq, &c->o, RKEY(oi, ci), type, id ? &sid : NULL, name ? &sname : NULL);
}

static int dec_delta(struct dctx *c, enum bb_ir_delta kind, const char *s, size_t n)
{
    if (!n && kind != BB_IR_D_SIGNATURE)
        return 0;
    c->d->delta_seen = true;
    return bb_dseq_delta(&c->d->seq, &c->o, kind, s, n);
}

static int dec_jdelta(struct dctx *c, enum bb_ir_delta kind, json_object *s)
{
    if (!bb_json_is(s, json_type_string))
        return 0;
    return dec_delta(c, kind, json_object_get_string(s), (size_t)json_object_get_string_len(s));
}

static bool dec_is(const struct rdec *d, enum bb_ir_block_type t, int64_t oi)
{
    return d->seq.open && d->seq.type == t && RKEY_OI(d->seq.key) == oi;
}

/* Blocks of a finished item the stream did not deliver piecewise (emitted start/delta/stop). */
static int dec_emit_blocks(struct dctx *c, const struct bb_ir_block *b, size_t n, int64_t oi)
{
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        rc = dec_open(c, b[i].type, oi, (int64_t)i, b[i].id.p, b[i].name.p);
        if (!rc && b[i].type == BB_IR_TEXT)
            rc = dec_delta(c, BB_IR_D_TEXT, b[i].text.p, b[i].text.len);
        if (!rc && b[i].type == BB_IR_THINKING) {
            rc = dec_delta(c, BB_IR_D_THINKING, b[i].text.p, b[i].text.len);
            if (!rc && b[i].signature.p)
                rc = dec_delta(c, BB_IR_D_SIGNATURE, b[i].signature.p, b[i].signature.len);
        }
        if (!rc && b[i].type == BB_IR_TOOL_USE)
            rc = dec_delta(c, BB_IR_D_INPUT_JSON, b[i].input_json.p, b[i].input_json.len);
        if (!rc)
            rc = dec_close(c);
    }
    return rc;
}

static int dec_item_done(struct dctx *c, json_object *data)
{
    struct rdec *d = c->d;
    json_object *item = bb_json_get(data, "item");
    int64_t oi = jint(data, "output_index", -1);
    const char *type = bb_json_get_str(item, "type");
    if (streq(type, "function_call")) {
        d->saw_tool = true;
        if (!dec_is(d, BB_IR_TOOL_USE, oi)) {
            int rc = dec_open(c, BB_IR_TOOL_USE, oi, 0, bb_json_get_str(item, "call_id"),
                              bb_json_get_str(item, "name"));
            if (rc)
                return rc;
        }
        if (!d->delta_seen) {
            int rc = dec_jdelta(c, BB_IR_D_INPUT_JSON, bb_json_get(item, "arguments"));
            if (rc)
                return rc;
        }
        return dec_close(c);
    }
    if (streq(type, "reasoning")) {
        struct bb_ir_block b;
        bool any = reasoning_block(c->o.scratch, item, &b);
        if (!dec_is(d, BB_IR_THINKING, oi)) {
            if (!any)
                return 0;
            int rc = dec_open(c, BB_IR_THINKING, oi, 0, bb_json_get_str(item, "id"), NULL);
            if (rc)
                return rc;
        }
        int rc = 0;
        if (!d->delta_seen && any && b.text.len)
            rc = dec_delta(c, BB_IR_D_THINKING, b.text.p, b.text.len);
        if (!rc && any && b.signature.p)
            rc = dec_delta(c, BB_IR_D_SIGNATURE, b.signature.p, b.signature.len);
        return rc ? rc : dec_close(c);
    }
    if (streq(type, "message")) {
        int rc = 0;
        if (dec_is(d, BB_IR_TEXT, oi))
            rc = dec_close(c);
        /* Parts that never streamed (a provider that sends whole items). */
        json_object *content = bb_json_get(item, "content");
        size_t n = bb_json_is(content, json_type_array) ? json_object_array_length(content) : 0;
        for (size_t j = (size_t)(d->item_oi == oi ? d->next_ci : 0); j < n && !rc; j++) {
            json_object *p = json_object_array_get_idx(content, j);
            bool refusal = streq(bb_json_get_str(p, "type"), "refusal");
            json_object *t = bb_json_get(p, refusal ? "refusal" : "text");
            if (!bb_json_is(t, json_type_string))
                continue;
            d->saw_refusal |= refusal;
            rc = dec_open(c, BB_IR_TEXT, oi, (int64_t)j, NULL, NULL);
            if (!rc)
                rc = dec_jdelta(c, BB_IR_D_TEXT, t);
            if (!rc)
                rc = dec_close(c);
        }
        return rc;
    }
    return d->seq.open && RKEY_OI(d->seq.key) == oi ? dec_close(c) : 0;
}

static int dec_finish(struct dctx *c, json_object *resp)
{
    struct rdec *d = c->d;
    int rc = dec_start(c, resp);
    if (!rc)
        rc = dec_close(c);
    if (rc)
        return rc;
    json_object *output = bb_json_get(resp, "output");
    size_t n = bb_json_is(output, json_type_array) ? json_object_array_length(output) : 0;
    for (size_t i = 0; i < n; i++) {
        json_object *it = json_object_array_get_idx(output, i);
        d->saw_tool |= streq(bb_json_get_str(it, "type"), "function_call");
    }
    if (d->seq.next == 0 && n) {
        /* Nothing streamed piecewise: the final response carries the answer. */
        struct bb_ir_block *blocks;
        size_t nb;
        struct bb_err err;
        if (output_blocks(c->o.scratch, output, &blocks, &nb, &d->saw_tool, &d->saw_refusal, &err))
            return -1;
        if ((rc = dec_emit_blocks(c, blocks, nb, 0)))
            return rc;
    }
    struct bb_ir_event ev = {.type = BB_IR_EV_MESSAGE_DELTA};
    ev.stop = stop_of(resp, d->saw_tool, d->saw_refusal);
    usage_read(bb_json_get(resp, "usage"), &ev.usage);
    if ((rc = dec_emit(c, &ev)))
        return rc;
    d->ended = true;
    struct bb_ir_event stop = {.type = BB_IR_EV_MESSAGE_STOP};
    return dec_emit(c, &stop);
}

static int dec_error(struct dctx *c, const char *code, const char *type, const char *msg)
{
    c->d->ended = true;
    struct bb_ir_event ev = {.type = BB_IR_EV_ERROR};
    const char *t = code ? code : type ? type : "server_error";
    ev.error_type = bb_ir_strdup(c->o.scratch, t, strlen(t));
    ev.error_status = error_status_for(t);
    if (!msg)
        msg = "upstream error";
    ev.text = bb_ir_strdup(c->o.scratch, msg, strlen(msg));
    return dec_emit(c, &ev);
}

static int dec_dispatch(struct dctx *c, const char *type, json_object *data)
{
    struct rdec *d = c->d;
    int64_t oi = jint(data, "output_index", -1);
    int64_t ci = jint(data, "content_index", 0);

    if (streq(type, "response.created") || streq(type, "response.in_progress") ||
        streq(type, "response.queued"))
        return dec_start(c, bb_json_get(data, "response"));
    if (streq(type, "response.output_item.added")) {
        json_object *item = bb_json_get(data, "item");
        const char *it = bb_json_get_str(item, "type");
        int rc = dec_start(c, NULL);
        if (!rc)
            rc = dec_close(c);
        if (rc)
            return rc;
        if (streq(it, "message")) {
            d->item_oi = oi;
            d->next_ci = 0;
            return 0; /* the TEXT block opens with its first content part */
        }
        if (streq(it, "function_call")) {
            d->saw_tool = true;
            return dec_open(c, BB_IR_TOOL_USE, oi, 0, bb_json_get_str(item, "call_id"),
                            bb_json_get_str(item, "name"));
        }
        if (streq(it, "reasoning"))
            return dec_open(c, BB_IR_THINKING, oi, 0, bb_json_get_str(item, "id"), NULL);
        return 0;
    }
    if (streq(type, "response.content_part.added")) {
        const char *pt = bb_json_get_str(bb_json_get(data, "part"), "type");
        if (!streq(pt, "output_text") && !streq(pt, "refusal"))
            return 0;
        d->saw_refusal |= streq(pt, "refusal");
        return dec_open(c, BB_IR_TEXT, oi, ci, NULL, NULL);
    }
    if (streq(type, "response.output_text.delta") || streq(type, "response.refusal.delta")) {
        if (!(dec_is(d, BB_IR_TEXT, oi) && RKEY_CI(d->seq.key) == ci)) {
            int rc = dec_open(c, BB_IR_TEXT, oi, ci, NULL, NULL);
            if (rc)
                return rc;
        }
        d->saw_refusal |= streq(type, "response.refusal.delta");
        return dec_jdelta(c, BB_IR_D_TEXT, bb_json_get(data, "delta"));
    }
    if (streq(type, "response.output_text.done") || streq(type, "response.refusal.done")) {
        if (dec_is(d, BB_IR_TEXT, oi) && RKEY_CI(d->seq.key) == ci && !d->delta_seen)
            return dec_jdelta(
                c, BB_IR_D_TEXT,
                bb_json_get(data, streq(type, "response.refusal.done") ? "refusal" : "text"));
        return 0;
    }
    if (streq(type, "response.output_text.annotation.added")) {
        json_object *an = bb_json_get(data, "annotation");
        if (!dec_is(d, BB_IR_TEXT, oi) || !an)
            return 0;
        size_t n = 0;
        const char *s = bb_json_out(an, &n);
        bool seen = d->delta_seen;
        int rc = dec_delta(c, BB_IR_D_CITATION, s, n);
        d->delta_seen = seen; /* a citation is not the text */
        return rc;
    }
    if (streq(type, "response.content_part.done")) {
        if (dec_is(d, BB_IR_TEXT, oi) && RKEY_CI(d->seq.key) == ci) {
            json_object *p = bb_json_get(data, "part");
            int rc = d->delta_seen
                         ? 0
                         : dec_jdelta(c, BB_IR_D_TEXT,
                                      bb_json_get(p, streq(bb_json_get_str(p, "type"), "refusal")
                                                         ? "refusal"
                                                         : "text"));
            return rc ? rc : dec_close(c);
        }
        return 0;
    }
    if (streq(type, "response.function_call_arguments.delta")) {
        if (!dec_is(d, BB_IR_TOOL_USE, oi))
            return 0;
        return dec_jdelta(c, BB_IR_D_INPUT_JSON, bb_json_get(data, "delta"));
    }
    if (streq(type, "response.function_call_arguments.done")) {
        if (!dec_is(d, BB_IR_TOOL_USE, oi) || d->delta_seen)
            return 0;
        return dec_jdelta(c, BB_IR_D_INPUT_JSON, bb_json_get(data, "arguments"));
    }
    if (streq(type, "response.reasoning_summary_text.delta") ||
        streq(type, "response.reasoning_text.delta")) {
        if (!dec_is(d, BB_IR_THINKING, oi)) {
            int rc = dec_open(c, BB_IR_THINKING, oi, 0, bb_json_get_str(data, "item_id"), NULL);
            if (rc)
                return rc;
        }
        int64_t si = jint(
            data, streq(type, "response.reasoning_text.delta") ? "content_index" : "summary_index",
            0);
        if (d->delta_seen && si != d->sum_idx) {
            /* Summary parts are joined by a blank line, as in a non-streaming answer. */
            int rc = dec_delta(c, BB_IR_D_THINKING, "\n\n", 2);
            if (rc)
                return rc;
        }
        d->sum_idx = si;
        return dec_jdelta(c, BB_IR_D_THINKING, bb_json_get(data, "delta"));
    }
    if (streq(type, "response.reasoning_summary_text.done") ||
        streq(type, "response.reasoning_text.done")) {
        if (!dec_is(d, BB_IR_THINKING, oi) || d->delta_seen)
            return 0;
        return dec_jdelta(c, BB_IR_D_THINKING, bb_json_get(data, "text"));
    }
    if (streq(type, "response.output_item.done"))
        return dec_item_done(c, data);
    if (streq(type, "response.completed") || streq(type, "response.incomplete"))
        return dec_finish(c, bb_json_get(data, "response"));
    if (streq(type, "response.failed")) {
        json_object *e = bb_json_get(bb_json_get(data, "response"), "error");
        return dec_error(c, bb_json_get_str(e, "code"), NULL, bb_json_get_str(e, "message"));
    }
    if (streq(type, "error")) {
        json_object *e = bb_json_is(bb_json_get(data, "error"), json_type_object)
                             ? bb_json_get(data, "error")
                             : data;
        return dec_error(c, bb_json_get_str(e, "code"), bb_json_get_str(e, "type"),
                         bb_json_get_str(e, "message"));
    }
    if (streq(type, "keepalive")) {
        struct bb_ir_event ev = {.type = BB_IR_EV_PING};
        return dec_emit(c, &ev);
    }
    return 0; /* hosted-tool progress, audio, ...: nothing the IR carries */
}

static void dec_init(void *dec)
{
    struct rdec *d = dec;
    memset(d, 0, sizeof *d);
    d->item_oi = -1;
}

/* A frame's data without leading white space, false when there is none to read: empty, or a
 * "[DONE]" some servers add after response.completed. */
static bool frame_json(const struct bb_frame *f, const char **s, size_t *n)
{
    *s = f->data ? f->data : "";
    *n = f->data ? f->data_len : 0;
    while (*n && isspace((unsigned char)**s)) {
        (*s)++;
        (*n)--;
    }
    return *n && !(*n >= 6 && strncmp(*s, "[DONE]", 6) == 0);
}

static int dec_frame(void *dec, struct bb_arena *scratch, const struct bb_frame *f,
                     bb_ir_event_cb cb, void *arg)
{
    struct rdec *d = dec;
    if (d->ended)
        return 0;
    const char *s;
    size_t n;
    if (!frame_json(f, &s, &n))
        return 0;
    json_object *data = bb_json_parse(s, n, "event", NULL);
    if (!bb_json_is(data, json_type_object)) {
        json_object_put(data);
        return -1;
    }
    char evname[96] = "";
    const char *type = bb_json_get_str(data, "type");
    if (!type && f->event && f->event_len && f->event_len < sizeof evname) {
        memcpy(evname, f->event, f->event_len);
        evname[f->event_len] = '\0';
        type = evname;
    }
    struct dctx c = {.d = d, .o = {cb, arg, scratch}};
    int rc = type ? dec_dispatch(&c, type, data) : 0;
    json_object_put(data);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * egress: read_error
 * ---------------------------------------------------------------------------------------- */

static void copy_field(char *dst, size_t cap, json_object *v)
{
    if (bb_json_is(v, json_type_string) || bb_json_is_number(v))
        snprintf(dst, cap, "%s", json_object_get_string(v));
}

static int read_error(const char *body, size_t len, struct bb_proto_error *out)
{
    memset(out, 0, sizeof *out);
    json_object *root = bb_json_parse(body, len, "error", NULL);
    if (!bb_json_is(root, json_type_object)) {
        json_object_put(root);
        return -1;
    }
    json_object *e = bb_json_get(root, "error");
    if (bb_json_is(e, json_type_string)) {
        copy_field(out->message, sizeof out->message, e);
    } else {
        /* {"error":{message,type,code,param}}; a bare {code,message} (stream error event) */
        if (!bb_json_is(e, json_type_object))
            e = root;
        copy_field(out->code, sizeof out->code, bb_json_get(e, "code"));
        copy_field(out->type, sizeof out->type, bb_json_get(e, "type"));
        copy_field(out->message, sizeof out->message, bb_json_get(e, "message"));
        if (streq(out->type, "error") && e == root)
            out->type[0] = '\0'; /* the event's own type, not an error type */
    }
    json_object_put(root);
    return out->code[0] || out->type[0] || out->message[0] ? 0 : -1;
}

/* usage_read over the bytes of a usage object (no DOM). */
static void responses_usage_scan(const char *u, size_t n, struct bb_ir_usage *out)
{
    static const char *const keys[4] = {"input_tokens", "output_tokens", "input_tokens_details",
                                        "output_tokens_details"};
    bb_proto_usage_scan_oai(u, n, keys, out);
}

/* A response object has `output`; a failed one has status "failed" and its `error`. */
static int responses_answer_check(const char *body, size_t len, struct bb_ir_usage *usage,
                                  struct bb_proto_error *out)
{
    struct bb_jscan_field f[4] = {
        {.key = "error"}, {.key = "status"}, {.key = "output"}, {.key = "usage"}};
    if (bb_proto_scan_answer(body, len, f, 4, out) < 0)
        return -1;
    if (f[0].type == BB_JOBJECT || f[0].type == BB_JSTRING ||
        bb_proto_member_is(body, &f[1], "failed"))
        return bb_proto_inband(&bb_proto_responses, body, len, out);
    if (f[2].type != BB_JARRAY) {
        snprintf(out->message, sizeof out->message, "no 'output' array");
        return -1;
    }
    if (usage && f[3].type == BB_JOBJECT)
        responses_usage_scan(body + f[3].off, f[3].len, usage);
    return 0;
}

/* frame_scan: output items, parts and deltas are meaningful; response.completed and
 * response.incomplete are the stop and the end (with the usage); response.failed and error
 * events are in-band errors. */
static int responses_frame_scan_1(const struct bb_frame *f, struct bb_frame_state *st, bool stopped,
                                  struct bb_frame_info *out)
{
    (void)stopped;
    (void)st;
    memset(out, 0, sizeof *out);
    const char *s;
    size_t n;
    if (!frame_json(f, &s, &n))
        return 0;
    struct bb_jscan_field t[4] = {
        {.key = "type"}, {.key = "response"}, {.key = "item"}, {.key = "part"}};
    struct bb_err err;
    if (bb_jscan_object(s, n, t, 4, 128, &err) < 0)
        return -1;
    struct bb_frame g = *f;
    g.data = s;
    g.data_len = n;
    char type[64];
    bb_proto_frame_type(&g, &t[0], type, sizeof type);
    if (strncmp(type, "response.", 9) != 0) {
        if (strcmp(type, "error") == 0)
            return bb_proto_frame_error(&bb_proto_responses, s, n, "upstream error", out);
        return 0;
    }
    const char *e = type + 9;
    if (strcmp(e, "completed") == 0 || strcmp(e, "incomplete") == 0) {
        out->content = out->stop = out->end = true;
        struct bb_jscan_field u;
        bb_jscan_member(s + t[1].off, t[1].len, "usage", &u);
        if (t[1].type == BB_JOBJECT && u.type == BB_JOBJECT)
            responses_usage_scan(s + t[1].off + u.off, u.len, &out->usage);
    } else if (strcmp(e, "failed") == 0) {
        struct bb_jscan_field er;
        bb_jscan_member(s + t[1].off, t[1].len, "error", &er);
        return bb_proto_frame_error(
            &bb_proto_responses, er.type == BB_JOBJECT ? s + t[1].off : NULL,
            er.type == BB_JOBJECT ? t[1].len : 0, "the response failed", out);
    } else if (strcmp(e, "output_item.added") == 0) {
        struct bb_jscan_field it;
        bb_jscan_member(s + t[2].off, t[2].len, "type", &it);
        out->content = bb_proto_member_is(s + t[2].off, &it, "function_call") ||
                       bb_proto_member_is(s + t[2].off, &it, "reasoning");
    } else if (strcmp(e, "content_part.added") == 0) {
        struct bb_jscan_field pt;
        bb_jscan_member(s + t[3].off, t[3].len, "type", &pt);
        out->content = bb_proto_member_is(s + t[3].off, &pt, "output_text") ||
                       bb_proto_member_is(s + t[3].off, &pt, "refusal");
    } else if (strncmp(e, "output_text.", 12) == 0 || strncmp(e, "refusal.", 8) == 0 ||
               strncmp(e, "function_call_arguments.", 24) == 0 ||
               strncmp(e, "reasoning_summary_text.", 23) == 0 ||
               strncmp(e, "reasoning_text.", 15) == 0 || strcmp(e, "content_part.done") == 0 ||
               strcmp(e, "output_item.done") == 0) {
        out->content = true;
    }
    return 0;
}

static int responses_frame_scan(const struct bb_frame *f, struct bb_frame_state *st,
                                struct bb_frame_info *out)
{
    bool stopped = st->stopped;
    int rc = responses_frame_scan_1(f, st, stopped, out);
    st->stopped = st->stopped || out->stop;
    return rc;
}

static bool responses_claims_path(const char *path)
{
    return bb_path_starts(path, "/v1/responses");
}

static const char *const affinity_members[] = {"instructions", NULL};

const struct bb_proto_ops bb_proto_responses = {
    .id = BB_PROTO_RESPONSES,
    .name = "responses",
    .genai_system = "openai",
    .framing = BB_FRAMING_SSE,
    .params = param_rows,
    .n_params = N_PARAMS,
    .route = "/v1/responses",
    .claims_path = responses_claims_path,
    .path = "/v1/responses",
    .auth_headers = bb_proto_bearer,
    .probe_path = "/v1/models",
    .tool_id_prefix = "call_",
    .stream_member = "stream",
    .affinity_members = affinity_members,
    .read_request = read_request,
    .write_response = write_response,
    .stream_content_type = stream_content_type,
    .enc_size = sizeof(struct renc),
    .enc_init = enc_init,
    .enc_event = enc_event,
    .enc_finish = enc_finish,
    .write_request = write_request,
    .system_in_place = true,
    .read_response = read_response,
    .dec_size = sizeof(struct rdec),
    .dec_init = dec_init,
    .dec_frame = dec_frame,
    .read_error = read_error,
    .answer_check = responses_answer_check,
    .frame_scan = responses_frame_scan,
};
