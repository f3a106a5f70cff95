/*
 * proto: the interface every wire-protocol module implements (proto_openai, proto_responses,
 * proto_anthropic, proto_gemini, proto_bedrock, proto_cohere), and the registry.
 * Worker process, single-threaded; modules are stateless apart from the per-stream
 * encoder/decoder state the caller allocates for them.
 *
 * Division of labour:
 * - The proxy owns HTTP, routing, failover, framing (SSE / AWS event stream / JSON array
 *   splitting) and the same-protocol fast path (bytes forwarded, frames relayed verbatim).
 * - A module turns wire JSON into IR and IR into wire JSON, in both roles:
 *   ingress (the client speaks it) and egress (the provider speaks it).
 * - Readers are strict about types (a wrong type is a 400 naming the field) and lenient about
 *   unknown fields (recorded with bb_ir_unsupported, never fatal). Writers never emit a field
 *   the target does not accept; what they cannot express they name via bb_proto_drop(), into
 *   the egress context's dropped list.
 * - Tool-call ids cross unchanged here; the proxy rewrites them between id shapes (ir.c).
 * - Memory: every string a reader produces lives in the arena it is given (json-c objects are
 *   released before returning). Writers append to the evbuffer they are given.
 */
#ifndef BB_PROTO_H
#define BB_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/arena.h"
#include "common/config.h"
#include "common/err.h"
#include "worker/ir.h"

struct evbuffer;

/* How a protocol's stream is framed on the wire. */
enum bb_framing {
    BB_FRAMING_SSE,         /* text/event-stream: one frame = one SSE event */
    BB_FRAMING_EVENTSTREAM, /* application/vnd.amazon.eventstream: one frame = one message */
    BB_FRAMING_JSON_ARRAY,  /* Gemini without alt=sse: one frame = one array element */
};

/* One stream frame as the proxy's framer delivers it to a decoder. */
struct bb_frame {
    const char *event; /* SSE event name or AWS :event-type / :exception-type; "" if none */
    size_t event_len;
    const char *data; /* SSE data, AWS payload, or the JSON element */
    size_t data_len;
    bool exception; /* AWS :message-type is "exception" (or "error") */
};

/* What one stream frame means to a same-protocol relay, read by a scan of its bytes (no
 * DOM): frames are relayed as they came, so only the commit point, the end, in-band errors
 * and usage matter. */
struct bb_frame_info {
    bool content;    /* a meaningful event (content, a block, the message delta): commit */
    bool stop;       /* carries the answer's stop / finish reason: its final state is known */
    bool end;        /* the protocol's terminator */
    bool error;      /* an in-band error; error_msg says what */
    bool usage_only; /* OpenAI's chunk with empty choices that only carries usage */
    struct bb_ir_usage usage; /* usage the frame reports (cumulative totals), when .set */
    char error_msg[200];
};

/* What frame_scan remembers from frame to frame (zeroed at the start of a stream). */
struct bb_frame_state {
    bool stopped;  /* the stop reason arrived in an earlier frame */
    uint64_t skip; /* Anthropic: wire block indexes (< 64) with no IR form (server tools) */
};

/* Called by decoders for each IR event; non-zero stops decoding (returned by the decoder). */
typedef int (*bb_ir_event_cb)(void *arg, const struct bb_ir_event *ev);

/* What the client asked, needed to shape answers in its dialect. */
struct bb_ingress_ctx {
    const char *request_id; /* busbar's request id, usable as a response id seed */
    const char *model;      /* the model name the client sent (pool or lane) */
    int64_t created;        /* unix seconds at request start */
    bool include_usage;     /* OpenAI stream_options.include_usage */
    unsigned route_flags;   /* what the module's match_route said (Gemini: ?alt=sse) */
    /* The tools the client declared, when its request was read into IR (a translated hop):
     * calls are rendered back in the client's shape (Responses namespaces, freeform tools). */
    const struct bb_ir_tool *tools;
    size_t n_tools;
};

/* What a route that names the model in its path gives (ops->match_route). */
struct bb_proto_route {
    const char *model; /* the model as it is in the path (URL-encoded), model_len bytes */
    size_t model_len;
    int stream;     /* -1: the body says; 0/1: the path says (":streamGenerateContent") */
    unsigned flags; /* the module's own (carried to bb_ingress_ctx.route_flags) */
};

/* The fields a writer could not carry on one hop (x-busbar-dropped-fields), by the name the
 * source request used ("top_k", "seed"); deduplicated, in the order they were dropped. */
struct bb_dropped {
    const char **names; /* static strings or strings in the hop's arena */
    size_t n, cap;
};

/* Where and how an egress request goes. */
struct bb_egress_ctx {
    const struct bb_provider *provider;
    const struct bb_lane *lane; /* upstream_model, default_max_tokens, reasoning */
    bool stream;
    int64_t now;                /* unix seconds (SigV4 date) */
    struct bb_dropped *dropped; /* where bb_proto_drop records; NULL: not recorded */
};

/* An egress request as the module writes it; the proxy adds Host, Content-Length, framing. */
struct bb_egress_req {
    char path[1024];          /* after the provider's base path, with query, e.g.
                                 "/v1/messages", "/v1beta/models/x:streamGenerateContent?alt=sse" */
    struct evbuffer *headers; /* complete "Name: value\r\n" lines: auth, versions, type */
    struct evbuffer *body;    /* JSON body */
};

/* Error details extracted from a provider's native error body (SPEC §5.1). */
struct bb_proto_error {
    char code[64]; /* provider error code, e.g. "context_length_exceeded" */
    char type[64]; /* structured type, e.g. "overloaded_error", "RESOURCE_EXHAUSTED" */
    char message[512];
};

struct bb_param;
struct json_object;

/* How busbar meters a stream of a protocol whose streams carry usage only when asked
 * (OpenAI's stream_options.include_usage); all NULL for protocols that always report it. */
struct bb_proto_stream_usage {
    const char *member; /* the request member holding the client's ask ("stream_options") */
    const char *flag;   /* its boolean member ("include_usage") */
    const char *inject; /* what busbar adds after the body's '{' to ask for usage itself */
    /* Is f the frame that carries only that usage? (not relayed when the client did not ask) */
    bool (*usage_only)(const struct bb_frame *f);
};

/* One word of a protocol's error vocabulary: its error type for an HTTP status. */
struct bb_proto_errtype {
    int status;
    const char *type;
};

/* The errors busbar itself answers with, in one protocol's shape (errors_http.c). */
struct bb_proto_errors {
    /* The error type by HTTP status ({429, "rate_limit_error"}); a status without a row takes
     * its class's (the 400 or 500 row). NULL: busbar's own (errors_http.c, OpenAI's names). */
    const struct bb_proto_errtype *types;
    size_t n_types;
    /* A budget refusal's (BB_ERR_QUOTA) own type where the status's would mislead
     * (Anthropic billing_error), and its status when not the table's 429 (Bedrock: 400). */
    const char *quota_type;
    int quota_status;
    /* The response header that names the type ("x-amzn-ErrorType"); NULL: none. */
    const char *type_header;
    /* Write the body into out: msg is a JSON string (quoted and escaped), type the protocol's
     * type for the error, busbar_type and code busbar's own (errors_http.h, OpenAI's names)
     * for shapes that carry them (code may be NULL). Returns what snprintf returns. NULL:
     * OpenAI's {"error":{"message","type","param","code"}}. */
    int (*body)(char *out, size_t cap, int status, const char *type, const char *busbar_type,
                const char *code, const char *msg);
};

/* A provider rate-limit header convention: remaining/limit and when that window resets. */
struct bb_proto_ratelimit {
    const char *remaining, *limit, *reset;
    bool reset_is_time; /* an RFC 3339 time; else a duration ("6m0s", a bare number: seconds) */
};

struct bb_proto_ops {
    enum bb_proto id;
    const char *name;         /* short name: docs/protocols/<name>.md, fixtures directory */
    const char *genai_system; /* OpenTelemetry gen_ai.provider.name of its providers */
    enum bb_framing framing;  /* of this protocol's streams (as egress and ingress) */

    /* The scalar request parameters as data (worker/params.h): the reader, the writer, the
     * known-field list and the docs table all come from it; admission finds the output cap
     * and the choice count of a request through its rows. */
    const struct bb_param *params;
    size_t n_params;

    /* ---- the ingress envelope: how a client reaches busbar in this protocol ---- */

    /* Path of the POST route whose body names the model ("/v1/chat/completions"); NULL when
     * the protocol has none. */
    const char *route;
    /* Routes that carry the model in the path ("/v1beta/models/{m}:generateContent"): 1 when
     * path (len bytes, without the query) is one, out filled; 0 otherwise. NULL: none. */
    int (*match_route)(const char *path, size_t len, const char *query, struct bb_proto_route *out);
    /* Does a path busbar does not serve look like this protocol's (its 404 is then in this
     * dialect)? NULL: never; a path nobody claims gets BB_PROTO_DEFAULT's. */
    bool (*claims_path)(const char *path);
    /* The model list (GET models_path): the body listing names[0..n) (pools, then lanes).
     * Several protocols may share a path: the one whose models_header the request carries
     * answers, else the one without a models_header. NULL: no list. */
    const char *models_path;
    const char *models_header;
    struct json_object *(*models_list)(const char *const *names, size_t n);
    /* Where its clients put their busbar credential besides Authorization: Bearer: a header
     * (accepted on every route, in registry order: SPEC §3.2), a query parameter (accepted on
     * this protocol's routes), and the SigV4 service a signed Authorization is verified for
     * (on this protocol's routes); NULL: none. */
    const char *client_key_header;
    const char *client_key_query;
    const char *client_sigv4_service;
    /* The shape of the errors busbar answers this protocol's clients with. */
    struct bb_proto_errors errors;

    /* ---- the egress envelope: what a request to a provider of this protocol looks like ---- */

    /* Egress path (after the provider's base path) when the model is in the body, stream or
     * not, e.g. "/v1/chat/completions"; NULL when the path names the model (write_request
     * and write_passthrough give it). */
    const char *path;
    /* Append the header lines that authenticate with provider key `key` (NULL: none) and
     * name the API version; used by write_request, the same-protocol fast path and health
     * probes. A key reaches here clean: config load refuses control characters. -1 on OOM. */
    int (*auth_headers)(struct evbuffer *out, const char *key);
    /* Health probe: a cheap authenticated GET of this path; probe_any_status: any HTTP
     * answer proves the provider reachable (a host with nothing to list). */
    const char *probe_path;
    bool probe_any_status;
    /* Tool-call id shape: a foreign id is shown to this protocol's clients as
     * <prefix>bb_<original> (ir.c), "" when ids have no fixed shape. */
    const char *tool_id_prefix;
    /* Client headers a same-protocol hop passes on to the provider (NULL-terminated; NULL:
     * none), e.g. anthropic-beta. */
    const char *const *forward_headers;
    /* Request members admission reads besides the table's rows: the stream flag ("stream";
     * NULL when the path says it) and, in order, the members session affinity hashes (the
     * system prompt, else the start of the conversation); NULL-terminated. */
    const char *stream_member;
    const char *const *affinity_members;
    struct bb_proto_stream_usage stream_usage;
    /* The rate-limit headers of its providers' answers (route: usage). Read from every answer
     * whatever its protocol (OpenAI-compatible servers of any kind send OpenAI's). */
    const struct bb_proto_ratelimit *ratelimit;
    size_t n_ratelimit;
    /* The framing a client of this protocol gets for ctx (NULL: framing), e.g. Gemini's JSON
     * array stream without ?alt=sse. */
    enum bb_framing (*client_framing)(const struct bb_ingress_ctx *ctx);

    /* ---- ingress: the client speaks this protocol ---- */

    /* Parse a client request body. model_from_path is the model taken from the URL (Gemini,
     * Bedrock, Anthropic's /{pool}/v1/messages) or NULL. -1 with err = a client-facing message
     * naming the field ("messages[2].content: expected an array or a string"). */
    int (*read_request)(struct bb_arena *a, const char *body, size_t len,
                        const char *model_from_path, struct bb_ir_request *out, struct bb_err *err);

    /* Write a complete non-streaming response body. */
    int (*write_response)(struct bb_arena *a, const struct bb_ir_response *r,
                          const struct bb_ingress_ctx *ctx, struct evbuffer *out);

    /* Content-Type of this protocol's stream for ctx. */
    const char *(*stream_content_type)(const struct bb_ingress_ctx *ctx);

    /* Stream encoder: enc_size bytes of state (zeroed by the caller), then one call per IR
     * event appending complete frames to out (possibly none; several for one event). An
     * ERROR event renders the dialect's in-band error event; MESSAGE_STOP renders the
     * terminator (OpenAI's "data: [DONE]"). enc_finish appends what a stream that is ended
     * without MESSAGE_STOP must still carry (Gemini JSON array "]"); may be NULL. */
    size_t enc_size;
    void (*enc_init)(void *enc, const struct bb_ingress_ctx *ctx);
    int (*enc_event)(void *enc, struct bb_arena *scratch, const struct bb_ir_event *ev,
                     struct evbuffer *out);
    void (*enc_finish)(void *enc, struct evbuffer *out);

    /* ---- egress: the provider speaks this protocol ---- */

    /* write_request takes system messages in their place among the turns (BB_IR_SYSTEM);
     * false: bb_proto_write_request folds them into the system prompt first. */
    bool system_in_place;
    /* The body format this module shares with others (BB_AMSG_FAMILY: the Messages API and
     * InvokeModel): its reader keeps the members the IR has no form for (ir->extras) and its
     * writer writes them back for the same family. NULL: none. */
    const char *body_family;

    /* Write the upstream request for ir (model = ctx->lane->upstream_model, stream =
     * ctx->stream), including auth headers from ctx->provider->api_key. Fields the target
     * cannot take are reported with bb_proto_drop(). -1 with err when impossible. */
    int (*write_request)(struct bb_arena *a, const struct bb_ir_request *ir,
                         const struct bb_egress_ctx *ctx, struct bb_egress_req *out,
                         struct bb_err *err);

    /* Same protocol, model in the URL (Gemini, Bedrock): path and headers for forwarding the
     * client's body byte for byte (Bedrock signs exactly these bytes). NULL for protocols
     * whose model is in the body (the proxy rewrites it there). */
    int (*write_passthrough)(struct bb_arena *a, const char *body, size_t len,
                             const struct bb_egress_ctx *ctx, struct bb_egress_req *out,
                             struct bb_err *err);

    /* Parse a provider's non-streaming 2xx body. */
    int (*read_response)(struct bb_arena *a, const char *body, size_t len,
                         struct bb_ir_response *out, struct bb_err *err);

    /* Stream decoder: dec_size bytes of state (zeroed), one call per frame. Emits IR events
     * in order with consistent block indexes, synthesising BLOCK_START/BLOCK_STOP for flat
     * streams (OpenAI, Cohere), and MESSAGE_STOP when the protocol's terminator arrives.
     * An in-band error frame becomes BB_IR_EV_ERROR. -1 on a malformed frame. */
    size_t dec_size;
    void (*dec_init)(void *dec);
    int (*dec_frame)(void *dec, struct bb_arena *scratch, const struct bb_frame *f,
                     bb_ir_event_cb cb, void *arg);

    /* A stream that ended without its terminator: emit the events that finish it (the
     * deferred message delta, the message stop) when the decoder knows its final state (the
     * stop or finish reason arrived), nothing otherwise. NULL when the protocol's stop event
     * is its end. Returns what dec_frame returns. */
    int (*dec_finish)(void *dec, struct bb_arena *scratch, bb_ir_event_cb cb, void *arg);

    /* The bytes that end a complete stream of this protocol, written after a same-protocol
     * stream whose provider left them out (OpenAI's "data: [DONE]"); NULL when the stop
     * event is itself the end. terminator_len: their length when they hold NULs (a binary
     * framing), 0 for a C string. */
    const char *terminator;
    size_t terminator_len;

    /* Same-protocol stream relay: what frame f means, as the decoder would see it (the same
     * commit point, stop, end, error and usage), from a scan of its bytes; st carries what
     * it must remember between frames. -1 on a malformed frame. */
    int (*frame_scan)(const struct bb_frame *f, struct bb_frame_state *st,
                      struct bb_frame_info *out);

    /* Extract code/type/message from an error body (any status). 0 when something was found. */
    int (*read_error)(const char *body, size_t len, struct bb_proto_error *out);

    /* Is a complete 2xx non-stream body this protocol's success answer? One validating scan
     * (no DOM): 0 = a success answer, its usage in *usage when usage is not NULL (as
     * read_response would report it); 1 = the provider's error object in a 200 (out filled by
     * read_error); -1 = not an answer of this protocol (out->message says why). */
    int (*answer_check)(const char *body, size_t len, struct bb_ir_usage *usage,
                        struct bb_proto_error *out);
};

/* The validating scan answer_check implementations share: body must be one JSON object; the
 * members named in f are located (see bb_jscan_object). -1 with out->message set otherwise. */
struct bb_jscan_field;
int bb_proto_scan_answer(const char *body, size_t len, struct bb_jscan_field *f, size_t n,
                         struct bb_proto_error *out);

/* Member f (as located by bb_proto_scan_answer) is the JSON string s. */
bool bb_proto_member_is(const char *body, const struct bb_jscan_field *f, const char *s);

/* A frame's type: its JSON `type` member (field t, as located by a scan of data) when it is a
 * string, else its SSE event name; "" when neither. */
void bb_proto_frame_type(const struct bb_frame *f, const struct bb_jscan_field *t, char *out,
                         size_t cap);

/* frame_scan's verdict for an in-band error frame: error_msg from ops->read_error over data
 * (or fallback), returns 0. */
int bb_proto_frame_error(const struct bb_proto_ops *ops, const char *data, size_t len,
                         const char *fallback, struct bb_frame_info *out);

/* A JSON string member (located by a scan) that is not "". */
bool bb_proto_nonempty_str(const struct bb_jscan_field *f);

/* usage_read over the bytes of an OpenAI-family usage object (no DOM): keys names its input
 * and output counts and their detail objects ({"prompt_tokens", "completion_tokens",
 * "prompt_tokens_details", "completion_tokens_details"} for Chat Completions, input_/output_
 * for Responses); cached_tokens and cache_write_tokens are taken out of the input count,
 * reasoning_tokens is read from the output details. */
void bb_proto_usage_scan_oai(const char *u, size_t n, const char *const keys[4],
                             struct bb_ir_usage *out);

/* answer_check's verdict for an in-band error: out filled by ops->read_error, returns 1. */
int bb_proto_inband(const struct bb_proto_ops *ops, const char *body, size_t len,
                    struct bb_proto_error *out);

/* The module for a protocol. */
const struct bb_proto_ops *bb_proto_get(enum bb_proto p);

/* An errors.body for shapes that carry only the message: {"message":...}. */
int bb_proto_error_message_body(char *out, size_t cap, int status, const char *type,
                                const char *busbar_type, const char *code, const char *msg);

/* Path helpers for match_route and claims_path. */
bool bb_path_starts(const char *path, const char *prefix);
bool bb_path_ends(const char *path, size_t len, const char *suffix);

/* Accept header value of an egress request: the protocol's stream media type, or JSON. */
const char *bb_proto_accept(const struct bb_proto_ops *ops, bool stream);
/* The framing a client of ops gets for ctx. */
enum bb_framing bb_proto_client_framing(const struct bb_proto_ops *ops,
                                        const struct bb_ingress_ctx *ctx);
/* "Authorization: Bearer <key>" (nothing without a key): the auth_headers of the protocols
 * that authenticate that way. */
int bb_proto_bearer(struct evbuffer *out, const char *key);
/* Append the NUL-terminated strings a, b and c (a NULL one is skipped) to out: 0, or -1 on
 * OOM. How headers and SSE event lines are written without printf. */
int bb_proto_put(struct evbuffer *out, const char *a, const char *b, const char *c);

/* ops->write_request, with in-place system messages folded into the system prompt for the
 * modules that cannot keep them in place (ops->system_in_place). */
int bb_proto_write_request(const struct bb_proto_ops *ops, struct bb_arena *a,
                           const struct bb_ir_request *ir, const struct bb_egress_ctx *ctx,
                           struct bb_egress_req *out, struct bb_err *err);

/* Record that a field was dropped on this hop, in ctx->dropped (nothing when ctx or its list
 * is NULL, e.g. while writing an answer); the list grows in arena a. Writers name the field
 * in the SOURCE request's terms when known, e.g. "top_k", "seed". */
void bb_proto_drop(struct bb_arena *a, const struct bb_egress_ctx *ctx, const char *field);

/* The provider-run tools of ir (ir->hosted) this writer cannot carry, reported dropped as
 * tools.<kind>: all of them, or all but those of kind `carries` (the writer writes those). */
void bb_proto_drop_hosted(struct bb_arena *a, const struct bb_egress_ctx *ctx,
                          const struct bb_ir_request *ir, const char *carries);

/* The dropped fields, comma-separated, into buf (truncated at a name boundary); 0 = none. */
size_t bb_proto_dropped_text(const struct bb_dropped *d, char *buf, size_t cap);

/* Each registered module's ops (common/config.h BB_PROTO_LIST): bb_proto_openai, ... */
#define X(id, name, module) extern const struct bb_proto_ops bb_proto_##module;
BB_PROTO_LIST(X)
#undef X

#endif
