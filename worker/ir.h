/*
 * ir: the superset internal representation of requests, responses and stream events that
 * every protocol module reads into and writes from (SPEC §4). Translation is always
 * reader(X) → IR → writer(Y); only proto_*.c touch wire JSON.
 *
 * Worker process. All strings and arrays of an IR object live in the request's arena
 * (struct bb_arena), are NUL-terminated and carry explicit lengths where they may hold NULs.
 * "Raw JSON" fields (tool parameters, tool input, response_format schema) hold a JSON text
 * verbatim, so a schema crosses protocols without being rebuilt.
 */
#ifndef BB_IR_H
#define BB_IR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/arena.h"
#include "common/config.h"

/* ---- content ---- */

enum bb_ir_block_type {
    BB_IR_TEXT,
    BB_IR_THINKING,          /* reasoning text + provider signature */
    BB_IR_REDACTED_THINKING, /* opaque encrypted reasoning (data) */
    BB_IR_TOOL_USE,          /* a call the assistant makes */
    BB_IR_TOOL_RESULT,       /* the caller's answer to a tool call */
    BB_IR_IMAGE,             /* base64 data + media type, or a URL */
    BB_IR_DOCUMENT,          /* a file (PDF, ...): base64 data + media type, or URL */
};

struct bb_ir_str {
    char *p; /* NUL-terminated; NULL = absent */
    size_t len;
};

struct bb_ir_block {
    enum bb_ir_block_type type;
    struct bb_ir_str text;       /* TEXT, THINKING (the reasoning), TOOL_RESULT (flat text) */
    struct bb_ir_str signature;  /* THINKING: provider signature; REDACTED_THINKING: data */
    struct bb_ir_str id;         /* TOOL_USE: call id; TOOL_RESULT: the call id it answers */
    struct bb_ir_str name;       /* TOOL_USE: function name; TOOL_RESULT: name when known */
    struct bb_ir_str input_json; /* TOOL_USE: arguments as a JSON object text */
    bool is_error;               /* TOOL_RESULT */
    struct bb_ir_block *content; /* TOOL_RESULT: nested blocks (text, image) when not flat */
    size_t n_content;
    struct bb_ir_str media_type;     /* IMAGE/DOCUMENT: "image/png", ... */
    struct bb_ir_str data;           /* IMAGE/DOCUMENT: base64 (no data: prefix) */
    struct bb_ir_str url;            /* IMAGE/DOCUMENT: http(s) URL (or data: URL as given) */
    struct bb_ir_str citations_json; /* TEXT: provider citations array, raw JSON, or NULL */
    bool cache_control;              /* Anthropic cache_control: ephemeral on this block */
};

/* BB_IR_SYSTEM: a system message in its place among the turns (TEXT blocks; the leading
 * instructions are request.system). A writer sees it only when its module keeps system
 * messages in place (ops->system_in_place); bb_proto_write_request folds it into system for
 * the others. */
enum bb_ir_role { BB_IR_USER, BB_IR_ASSISTANT, BB_IR_SYSTEM };

struct bb_ir_message {
    enum bb_ir_role role; /* tool results travel as user-role TOOL_RESULT blocks */
    struct bb_ir_block *blocks;
    size_t n_blocks;
    struct bb_ir_str name; /* OpenAI participant name, when given */
};

struct bb_ir_tool {
    struct bb_ir_str name; /* as every provider sees it: "<ns>__<local>" in a namespace */
    struct bb_ir_str description;
    struct bb_ir_str parameters_json; /* JSON Schema object text; NULL = {"type":"object"} */
    bool strict;
    /* The Responses client's own shape of the tool, to render its calls back (Responses
     * namespaces, freeform and client-run tools; docs/protocols/responses.md "Tools"): */
    struct bb_ir_str ns;        /* the namespace it was declared in; NULL: none */
    struct bb_ir_str local;     /* its name in ns */
    struct bb_ir_str wire_type; /* "custom": a freeform input, carried as the one string member
                                   `input` (BB_IR_CUSTOM_INPUT); "tool_search": a client-run
                                   tool search; NULL: a function */
    bool cache_control;         /* Anthropic cache_control on the definition (a cache point) */
    bool defer_loading; /* Anthropic: loaded on demand through a tool search (the Messages body
                           only: bb_proto_write_request names it dropped elsewhere) */
};

/* A tool the provider runs itself (web search, ...), by its kind: writers whose target has an
 * equivalent write it, the others drop it (named tools.<kind>). */
struct bb_ir_hosted {
    struct bb_ir_str kind;     /* "web_search" */
    struct bb_ir_str raw_json; /* the client's definition, for its own protocol */
};

/* The JSON Schema a freeform (custom) tool's input is carried in, and its member. */
#define BB_IR_CUSTOM_INPUT "input"
#define BB_IR_CUSTOM_SCHEMA                                                                        \
    "{\"type\":\"object\",\"properties\":{\"input\":{\"type\":\"string\",\"description\":"         \
    "\"the tool's whole input, as free text in the format the tool's description gives\"}},"       \
    "\"required\":[\"input\"],\"additionalProperties\":false}"

enum bb_ir_tool_choice {
    BB_IR_TC_UNSET,
    BB_IR_TC_AUTO,
    BB_IR_TC_NONE,
    BB_IR_TC_ANY,
    BB_IR_TC_TOOL
};

enum bb_ir_format { BB_IR_FMT_UNSET, BB_IR_FMT_TEXT, BB_IR_FMT_JSON_OBJECT, BB_IR_FMT_JSON_SCHEMA };

enum bb_ir_effort {
    BB_IR_EFFORT_UNSET,
    BB_IR_EFFORT_MINIMAL,
    BB_IR_EFFORT_LOW,
    BB_IR_EFFORT_MEDIUM,
    BB_IR_EFFORT_HIGH
};

/* Optional numbers: has_* says whether the client set it. */
struct bb_ir_request {
    struct bb_ir_str model;
    struct bb_ir_block *system; /* system / developer instructions as TEXT blocks */
    size_t n_system;
    struct bb_ir_message *messages;
    size_t n_messages;
    struct bb_ir_tool *tools;
    size_t n_tools;
    struct bb_ir_hosted *hosted; /* provider-run tools */
    size_t n_hosted;
    enum bb_ir_tool_choice tool_choice;
    struct bb_ir_str tool_choice_name; /* BB_IR_TC_TOOL */
    bool has_parallel_tool_calls, parallel_tool_calls;

    bool stream;
    bool include_usage; /* OpenAI stream_options.include_usage */

    bool has_max_tokens;
    uint32_t max_tokens;
    bool has_temperature, has_top_p, has_top_k, has_seed;
    bool has_presence_penalty, has_frequency_penalty;
    double temperature, top_p, presence_penalty, frequency_penalty;
    uint32_t top_k;
    int64_t seed;
    struct bb_ir_str *stop; /* stop sequences */
    size_t n_stop;
    uint32_t n_choices; /* OpenAI n; 0 = unset */

    enum bb_ir_format format;
    struct bb_ir_str format_name;        /* json_schema name */
    struct bb_ir_str format_schema_json; /* json_schema schema */
    bool format_strict;

    bool reasoning;            /* the client asked for thinking/reasoning */
    uint32_t reasoning_budget; /* tokens; 0 = unset */
    enum bb_ir_effort reasoning_effort;

    struct bb_ir_str user; /* end-user id (OpenAI user, Anthropic metadata) */

    /* Fields the reader saw but the IR cannot carry, by wire name (for
     * x-busbar-dropped-fields). */
    const char **unsupported;
    size_t n_unsupported;

    /* Members the IR has no form for, kept as JSON text for a writer of the same body format
     * (ops->body_family equal to extras_family: the Messages API and InvokeModel carry one
     * body): a top-level member, or one of a top-level object's (parent). bb_proto_write_request
     * names them dropped on a lane of another family. */
    const struct bb_ir_extra *extras;
    size_t n_extras;
    const char *extras_family;
};

struct bb_ir_extra {
    const char *parent;    /* NULL: a top-level member; else the top-level object it sits in */
    const char *name;      /* the member's own name */
    const char *dotted;    /* "name" or "parent.name": for x-busbar-dropped-fields */
    struct bb_ir_str json; /* the member's value as the client sent it (JSON text) */
};

/* ---- responses ---- */

enum bb_ir_stop {
    BB_IR_STOP_UNSET,
    BB_IR_STOP_END_TURN, /* natural end */
    BB_IR_STOP_MAX_TOKENS,
    BB_IR_STOP_STOP_SEQUENCE,
    BB_IR_STOP_TOOL_USE,
    BB_IR_STOP_CONTENT_FILTER,
    BB_IR_STOP_PAUSE, /* Anthropic pause_turn */
    BB_IR_STOP_REFUSAL,
    BB_IR_STOP_ERROR,
};

/* Token counts in Anthropic's convention: input EXCLUDES cache_read and cache_write
 * (OpenAI's prompt_tokens = input + cache_read + cache_write; readers/writers convert). */
struct bb_ir_usage {
    bool set;
    uint64_t input, output, cache_read, cache_write, reasoning;
};

struct bb_ir_response {
    struct bb_ir_str id;
    struct bb_ir_str model;
    struct bb_ir_block *blocks; /* the assistant message */
    size_t n_blocks;
    enum bb_ir_stop stop;
    struct bb_ir_str stop_sequence; /* which stop sequence matched */
    struct bb_ir_usage usage;
    int64_t created; /* unix seconds; 0 = now */
};

/* ---- stream events ---- */

enum bb_ir_event_type {
    BB_IR_EV_MESSAGE_START, /* id, model, usage (input side when known) */
    BB_IR_EV_BLOCK_START,   /* index, block_type; TOOL_USE: id + name */
    BB_IR_EV_BLOCK_DELTA,   /* index, delta kind + text */
    BB_IR_EV_BLOCK_STOP,    /* index */
    BB_IR_EV_MESSAGE_DELTA, /* stop reason, stop_sequence, usage */
    BB_IR_EV_MESSAGE_STOP,  /* the terminator */
    BB_IR_EV_ERROR,         /* in-band error: error_type, text = message */
    BB_IR_EV_PING,          /* keep-alive, carries nothing */
};

enum bb_ir_delta {
    BB_IR_D_TEXT,
    BB_IR_D_THINKING,
    BB_IR_D_SIGNATURE,
    BB_IR_D_INPUT_JSON,
    BB_IR_D_REDACTED,
    BB_IR_D_CITATION
};

struct bb_ir_event {
    enum bb_ir_event_type type;
    uint32_t index; /* content block index, 0-based, in order */
    enum bb_ir_block_type block_type;
    enum bb_ir_delta delta;
    struct bb_ir_str text;     /* delta payload / error message */
    struct bb_ir_str id, name; /* BLOCK_START of TOOL_USE; MESSAGE_START id */
    struct bb_ir_str model;    /* MESSAGE_START */
    enum bb_ir_stop stop;      /* MESSAGE_DELTA */
    struct bb_ir_str stop_sequence;
    struct bb_ir_usage usage;    /* MESSAGE_START / MESSAGE_DELTA: cumulative totals */
    struct bb_ir_str error_type; /* ERROR: provider's type, e.g. "overloaded_error" */
    int error_status;            /* ERROR: HTTP-like status when known, else 0 */
};

/* Helpers (ir.c). */

/* A present, non-empty string. */
static inline bool bb_ir_has(const struct bb_ir_str *s)
{
    return s && s->p && s->len;
}

/* Copy n bytes into the arena as a bb_ir_str; {NULL,0} on OOM (check .p). */
struct bb_ir_str bb_ir_strdup(struct bb_arena *a, const char *s, size_t n);
/* A field name from client JSON made safe for the x-busbar-dropped-fields response header:
 * raw itself when it is at most 64 bytes of [A-Za-z0-9._-:/[]@$+*], else an arena copy with
 * every other byte %XX-encoded, cut at 64 bytes ("?" on OOM). */
const char *bb_ir_field_name(struct bb_arena *a, const char *raw);
/* Record an unsupported field name (a static or arena string; passed through
 * bb_ir_field_name) on req. -1 on OOM. */
int bb_ir_unsupported(struct bb_arena *a, struct bb_ir_request *req, const char *field);
/* Keep member name of object parent (NULL: top level; both static strings or the caller's
 * arena) with its value's JSON text (copied) for a writer of family. -1 on OOM. */
int bb_ir_extra(struct bb_arena *a, struct bb_ir_request *req, const char *family,
                const char *parent, const char *name, const char *json, size_t len);
const char *bb_ir_stop_name(enum bb_ir_stop s);
/* Fold a cumulative usage report into u: each count keeps its largest value (streams report
 * running totals, some in several events). A report that is not set changes nothing. */
void bb_ir_usage_max(struct bb_ir_usage *u, const struct bb_ir_usage *v);

/* A tool result for a target without an error flag (OpenAI, Responses, Cohere): when b is an
 * error with flat text, *tmp = b with that text behind "Error: " (unless it already starts
 * so) and tmp returned: the nearest form the model reads; else b (the caller reports the flag
 * dropped when b->is_error). */
const struct bb_ir_block *bb_ir_error_result(struct bb_arena *a, const struct bb_ir_block *b,
                                             struct bb_ir_block *tmp);

/* ir with its in-place system messages (BB_IR_SYSTEM) appended to system, in order: ir itself
 * when it has none; NULL on OOM. */
const struct bb_ir_request *bb_ir_fold_system(struct bb_arena *a, const struct bb_ir_request *ir);

/* The declared tool named name[0..len), NULL when none (tools as the client declared them). */
const struct bb_ir_tool *bb_ir_tool_find(const struct bb_ir_tool *tools, size_t n, const char *name,
                                         size_t len);

/* Tool-call ids between protocols' id shapes (see ir.c): prefix is the client protocol's
 * tool_id_prefix. */
struct bb_ir_str bb_ir_id_wrap(struct bb_arena *a, const char *prefix, struct bb_ir_str id);
void bb_ir_ids_unwrap(struct bb_ir_request *req, const char *prefix);
void bb_ir_response_wrap_ids(struct bb_arena *a, struct bb_ir_response *r, const char *prefix);

#endif
