/*
 * bb-mock: the interface between the mock's engine (mock.c: HTTP/1.1 server, directives,
 * faults, timing, attempt log) and its protocol modules (openai.c, responses.c, anthropic.c,
 * gemini.c, bedrock.c, cohere.c, bedrock_invoke.c). A protocol module only renders bytes: it reads
 * a parsed body, and writes a whole response, an error body, or one stream frame at a time. The
 * engine decides what the answer is (text, tool calls, thinking, usage) and when and whether each
 * frame is sent, so every fault works the same way for every protocol. Single-threaded.
 *
 * A stream is: nopen opening frames, then one frame per content unit (the units that faults
 * count: a thinking block, one word of text, or one piece of a tool call), nclose closing
 * frames, then ndone terminator frames (left out by `nodone`). A module may put several of
 * its protocol's events in one frame (each frame goes out in its own write).
 */
#ifndef BB_MOCK_H
#define BB_MOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;
struct json_object;

#define BB_MOCK_THINK_TEXT "Let me think."
#define BB_MOCK_THINK_TOKENS 3                     /* words of BB_MOCK_THINK_TEXT */
#define BB_MOCK_CALL_TOKENS 3                      /* output tokens per tool call */
#define BB_MOCK_TOOL_PLAN "I will call the tools." /* Cohere tool_plan */

struct bb_mock_result {
    char *id;      /* tool call id, or the function name (Gemini without id) */
    bool by_name;  /* id holds a name */
    char *content; /* the result as text */
};

/* What a protocol module sees of one request. */
struct bb_mock_req {
    uint64_t seq; /* attempt number, used in response ids */
    /* set by the engine before parse */
    const char *query;      /* query string after '?', or "" */
    const char *path_model; /* model from the path (URL-decoded), NULL if not in the path */
    bool path_stream;       /* the route itself asks for a stream */
    /* filled by parse */
    const char *model; /* as received, directives included; malloc'd, engine frees */
    size_t model_len;
    bool stream;
    bool include_usage;          /* OpenAI stream_options.include_usage */
    bool sse;                    /* Gemini: ?alt=sse (else a streamed JSON array) */
    bool want_think;             /* the request asks for reasoning */
    bool last_is_result;         /* the conversation's last message is a tool result */
    unsigned long prompt_tokens; /* uncached input: words of the prompt's text */
    char **tools;                /* declared tool names (bb_mock_add_tool) */
    size_t ntools;
    char **tool_ns;                 /* Responses (every tool added with bb_mock_add_tool_ns):
                                       each tool's namespace, or NULL */
    unsigned char *tool_custom;     /* ... and 1 for a freeform (custom) tool */
    struct bb_mock_result *results; /* tool results found (bb_mock_add_result) */
    size_t nresults;
    char *prefill; /* the conversation ends with an assistant turn: its text
                      (text parts joined; malloc'd, engine frees), else NULL */
    /* decided by the engine after parse */
    unsigned words;                    /* text units of the answer (0 for a tool-call answer): the
                                          words still to send, then npad bigbody padding units */
    unsigned npad;                     /* bigbody: padding units at the end of the text */
    unsigned long pad;                 /* bigbody: padding bytes in total */
    unsigned base;                     /* prefill continuation: words of the canned text already
                                          given; text unit i is word base+i */
    unsigned trim;                     /* bytes of text unit 1 already given (a prefill ending
                                          inside a word) */
    unsigned ncalls;                   /* tool calls in the answer (0 for a text answer) */
    bool think;                        /* a thinking block comes first */
    unsigned long cached, cache_write; /* cache-read / cache-write input tokens */
    const char *errcode;               /* errcode= directive, NULL if none */
    const char *errmsg;                /* errmsg= directive (spaces restored), NULL if none */
    const char *call_name;             /* call= directive: the declared tool the calls go to */
    const char *call_args;             /* args= directive: the calls' arguments (JSON text) */
    /* stream state, owned by the module (zero at the start) */
    unsigned long evseq;
};

enum bb_mock_unit_kind { BB_MOCK_THINK, BB_MOCK_TEXT, BB_MOCK_CALL };

/* One content unit of a stream. */
struct bb_mock_unit {
    enum bb_mock_unit_kind kind;
    unsigned i;       /* TEXT: word 1..words; CALL: call 1..ncalls; THINK: 1 */
    unsigned part;    /* CALL: 0 = start (id, name), 1 and 2 = argument pieces */
    unsigned block;   /* 0-based index of the content block (thinking, text, each call) */
    bool first, last; /* first / last unit of its block */
};

struct bb_mock_proto {
    const char *name;     /* as in the attempt log's `protocol` */
    const char *bad_json; /* 400 message for a body that is not a JSON object */
    /* Fill model, stream, and the rest of the "filled by parse" fields from the body.
     * 0, or -1 with *msg set to a static error message (answered as 400). */
    int (*parse)(struct bb_mock_req *r, struct json_object *body, const char **msg);
    /* Error answer for HTTP status `status`: body (application/json) and any extra header
     * lines ("Name: value\r\n") into hdrs. code: a provider error code or NULL. r may be NULL
     * (a request that reached no provider route). */
    void (*error)(const struct bb_mock_req *r, int status, const char *code, const char *message,
                  struct evbuffer *body, struct evbuffer *hdrs);
    /* The whole non-streaming response body (application/json). */
    void (*response)(struct bb_mock_req *r, struct evbuffer *b);
    /* Stream: Content-Type, units per tool call (1: the whole call in one unit, part 0; 3: a
     * start and two argument pieces), and the frames (see the top of this file). */
    const char *(*stream_type)(const struct bb_mock_req *r);
    unsigned call_parts;
    unsigned (*stream_nopen)(const struct bb_mock_req *r);
    void (*stream_open)(struct bb_mock_req *r, unsigned k, struct evbuffer *b);
    void (*stream_unit)(struct bb_mock_req *r, const struct bb_mock_unit *u, struct evbuffer *b);
    unsigned (*stream_nclose)(const struct bb_mock_req *r);
    void (*stream_close)(struct bb_mock_req *r, unsigned k, struct evbuffer *b);
    unsigned (*stream_ndone)(const struct bb_mock_req *r);
    void (*stream_done)(struct bb_mock_req *r, unsigned k, struct evbuffer *b);
    void (*stream_malformed)(struct bb_mock_req *r, struct evbuffer *b);
    /* The in-band error event (directive inband=N); the stream ends after it. */
    void (*stream_error)(struct bb_mock_req *r, struct evbuffer *b);
    /* The in-band error body of a non-stream answer (directive inband): the protocol's error
     * object as the provider sends it in a 200. */
    void (*inband)(const struct bb_mock_req *r, struct evbuffer *b);
};

extern const struct bb_mock_proto bb_mock_proto_openai;
extern const struct bb_mock_proto bb_mock_proto_responses;
extern const struct bb_mock_proto bb_mock_proto_anthropic;
extern const struct bb_mock_proto bb_mock_proto_gemini;
extern const struct bb_mock_proto bb_mock_proto_bedrock;
extern const struct bb_mock_proto bb_mock_proto_cohere;
extern const struct bb_mock_proto bb_mock_proto_bedrock_invoke;

/* The OpenAI error body (openai.c; the Responses API answers errors the same way). */
void bb_mock_openai_error(const struct bb_mock_req *r, int status, const char *code,
                          const char *message, struct evbuffer *body, struct evbuffer *hdrs);
/* The OpenAI in-band error object {"error":{...,"type":"server_error",...}} (both APIs). */
void bb_mock_openai_inband(const struct bb_mock_req *r, struct evbuffer *b);

/* One AWS event-stream message into b (bedrock.c): `kind` is the :message-type (event or
 * exception), `type` the :event-type or :exception-type; the payload is drained. bad_crc:
 * corrupt the message CRC (the `malformed` fault). */
void bb_mock_es_message(struct evbuffer *b, const char *kind, const char *type,
                        struct evbuffer *payload, bool bad_crc);

/* ---- helpers shared by the modules (mock.c) */

/* Append a string literal. */
#define BB_MOCK_ADD(b, lit) evbuffer_add((b), (lit), sizeof(lit) - 1)

/* Append s[0..n) to b as a quoted, escaped JSON string. */
void bb_mock_json_str(struct evbuffer *b, const char *s, size_t n);
/* Append v in decimal (faster than a printf on the hot path). */
void bb_mock_num(struct evbuffer *b, unsigned long long v);
/* Append word i (1-based) of the deterministic answer: "Hello", "w2", "w3", ... */
void bb_mock_word(struct evbuffer *b, unsigned i);
/* Append text unit i (1-based) of the answer: its word with a leading space unless it is the
 * canned text's first word, less what a prefill already gave; or a bigbody padding unit
 * (" xxx..."). Unquoted; it needs no escaping. */
void bb_mock_unit_text(const struct bb_mock_req *r, unsigned i, struct evbuffer *b);
/* Append the whole text answer, units 1..words: "Hello w2 ... wN" (the rest of it after a
 * prefill, padding included). */
void bb_mock_text(const struct bb_mock_req *r, struct evbuffer *b);
/* Number of whitespace-separated words in s[0..n). */
unsigned long bb_mock_count_words(const char *s, size_t n);
/* Words of a JSON string, or of the "text" members of an array of parts (type "text",
 * "input_text" or "output_text", or no type). Anything else counts 0. */
unsigned long bb_mock_content_words(struct json_object *content);
/* A content's text: a string, or the text parts of an array joined; else the compact JSON. */
char *bb_mock_content_text(struct json_object *content);
/* Only the text of a content (for a prefill): a string, or its text parts joined (other
 * parts skipped); NULL when it has no text at all. */
char *bb_mock_text_only(struct json_object *content);
/* Typed member lookups: NULL when absent or of another type. */
struct json_object *bb_mock_get(struct json_object *o, const char *key, int type);
const char *bb_mock_get_str(struct json_object *o, const char *key, size_t *len);
/* Record a declared tool name / a tool result found in the request (copies). */
void bb_mock_add_tool(struct bb_mock_req *r, const char *name, size_t n);
/* The same for a Responses tool declared in namespace ns (NULL: none) and/or freeform: it is
 * named as busbar names it for other providers ("<ns>__<name>"; the default namespace
 * "functions" adds nothing), so the attempt log reads alike on every route. */
void bb_mock_add_tool_ns(struct bb_mock_req *r, const char *name, size_t n, const char *ns,
                         bool custom);
/* Index of the declared tool named name, -1 when none. */
int bb_mock_tool_index(const struct bb_mock_req *r, const char *name);
void bb_mock_add_result(struct bb_mock_req *r, const char *id, bool by_name, char *content);
/* Tool name of call i (1-based): the call= tool when it is declared; else tool i when
 * ntools >= ncalls, else the first tool. */
const char *bb_mock_call_name(const struct bb_mock_req *r, unsigned i);
/* Arguments of call i: piece 0 = the whole `{"q":"w<i>"}`, 1 = `{"q":`, 2 = `"w<i>"}`; with
 * args=, that text (piece 1 its first half, 2 the rest). _raw appends the JSON itself, _str
 * appends it as a quoted JSON string. */
void bb_mock_args_raw(const struct bb_mock_req *r, struct evbuffer *b, unsigned i, unsigned piece);
void bb_mock_args_str(const struct bb_mock_req *r, struct evbuffer *b, unsigned i, unsigned piece);
/* Output tokens of the answer itself (words, or calls x 3) and of the thinking block. */
unsigned long bb_mock_answer_tokens(const struct bb_mock_req *r);
unsigned long bb_mock_think_tokens(const struct bb_mock_req *r);
/* The error message: errmsg= if given, else dflt. */
const char *bb_mock_errmsg(const struct bb_mock_req *r, const char *dflt);

#endif
