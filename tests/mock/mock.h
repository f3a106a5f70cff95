/*
 * bb-mock: the interface between the mock's engine (mock.c: HTTP/1.1 server, directives,
 * faults, timing, attempt log) and its protocol modules (openai.c, later one per dialect).
 * A protocol module only renders bytes: it reads a parsed body, and writes a whole response,
 * an error body, or one stream frame at a time. The engine decides when and whether each frame
 * is sent, so every fault works the same way for every protocol. Single-threaded.
 */
#ifndef BB_MOCK_H
#define BB_MOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;
struct json_object;

/* What a protocol module sees of one request. */
struct bb_mock_req {
    uint64_t seq;                /* attempt number, used in response ids */
    const char *model;           /* as received, directives included; NUL-terminated */
    size_t model_len;
    bool stream;
    bool include_usage;          /* OpenAI stream_options.include_usage */
    unsigned words;              /* completion length in words */
    unsigned long prompt_tokens; /* whitespace-separated words in the prompt */
};

struct bb_mock_proto {
    const char *name;
    /* Fill model (malloc'd, engine frees), stream, include_usage, prompt_tokens from the body.
     * 0, or -1 with *msg set to a static error message (answered as 400). */
    int (*parse)(struct bb_mock_req *r, struct json_object *body, const char **msg);
    /* Error body for HTTP status `status` (content type application/json). */
    void (*error_body)(struct evbuffer *b, int status, const char *message);
    /* The whole non-streaming response body (application/json). */
    void (*response)(const struct bb_mock_req *r, struct evbuffer *b);
    const char *stream_type; /* Content-Type of a stream */
    /* Stream frames, each written by the engine with its own write: one opening frame, one
     * frame per word i (1-based), nclose closing frames, then the terminator frame. */
    void (*stream_open)(const struct bb_mock_req *r, struct evbuffer *b);
    void (*stream_word)(const struct bb_mock_req *r, unsigned i, struct evbuffer *b);
    unsigned (*stream_nclose)(const struct bb_mock_req *r);
    void (*stream_close)(const struct bb_mock_req *r, unsigned k, struct evbuffer *b);
    void (*stream_done)(const struct bb_mock_req *r, struct evbuffer *b); /* NULL: none */
    void (*stream_malformed)(const struct bb_mock_req *r, struct evbuffer *b);
};

extern const struct bb_mock_proto bb_mock_proto_openai;

/* Append s[0..n) to b as a quoted, escaped JSON string. */
void bb_mock_json_str(struct evbuffer *b, const char *s, size_t n);
/* Append word i (1-based) of the deterministic answer: "Hello", "w2", "w3", ... */
void bb_mock_word(struct evbuffer *b, unsigned i);
/* Number of whitespace-separated words in s[0..n). */
unsigned long bb_mock_count_words(const char *s, size_t n);

#endif
