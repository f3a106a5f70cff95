/*
 * http_parse: HTTP/1.1 message heads and chunked bodies, for both the client side and the
 * upstream side of the worker. Zero-copy: results point into the caller's buffer.
 * Any process; pure functions plus a small decoder state.
 */
#ifndef BB_HTTP_PARSE_H
#define BB_HTTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define BB_HTTP_MAX_HEADERS 100

struct bb_http_header {
    const char *name;
    size_t name_len;
    const char *value; /* leading/trailing whitespace trimmed */
    size_t value_len;
};

struct bb_http_head {
    /* request line */
    const char *method;
    size_t method_len;
    const char *target;
    size_t target_len;
    /* status line */
    int status;
    const char *reason;
    size_t reason_len;
    int minor_version; /* HTTP/1.x */

    struct bb_http_header *headers; /* the holder's slots: BB_HTTP_MAX_HEADERS for a parse */
    size_t n_headers;

    /* derived from the headers */
    int64_t content_length; /* -1 when absent */
    bool chunked;           /* Transfer-Encoding: chunked */
    bool keep_alive;        /* HTTP/1.1 default, Connection: close/keep-alive honoured */
    bool expect_continue;   /* Expect: 100-continue */
};

/* Declare a head with room for a parse (BB_HTTP_MAX_HEADERS header slots beside it): a head
 * that is kept (a request's) gets exactly the slots it uses instead (bb_http_head_rebase). */
#define BB_HTTP_HEAD(name)                                                                         \
    struct bb_http_header name##_slots[BB_HTTP_MAX_HEADERS];                                       \
    struct bb_http_head name = {.headers = name##_slots}

/* *dst = *src, whose pointers point into from[]: dst's point at the same offsets of to[] (a
 * copy of from's bytes). dst->headers must have room for src->n_headers slots. */
void bb_http_head_rebase(struct bb_http_head *dst, const struct bb_http_head *src, const char *from,
                         const char *to);

/* Parse a request head in buf[0..len). Returns the head's length including the final CRLFCRLF
 * when complete, 0 when more bytes are needed, -1 when malformed, with *err_status set to the
 * HTTP status to answer: 400 bad syntax / conflicting Content-Length / CL+TE, 431 too many
 * headers, 501 a Transfer-Encoding other than chunked, 505 not HTTP/1.x.
 * Bare LF line endings are accepted; obs-fold and NUL/CTL bytes in fields are rejected. */
int bb_http_parse_request(const char *buf, size_t len, struct bb_http_head *h, int *err_status);

/* Incremental search for the end of a message head (the empty line after the fields), so a
 * head that arrives in many small reads is scanned once, not re-parsed on every read. Empty
 * lines before the first other byte do not end it (RFC 9112 §2.2); CRLF and bare LF both
 * end lines. The full parse runs once the end is found. Zero-initialise (or reset with
 * bb_http_scan_reset) before the first byte of each head. */
struct bb_http_scan {
    size_t scanned;  /* bytes of the head fed so far */
    bool content;    /* a byte other than CR/LF was seen */
    bool line_start; /* only CRs since the last LF (or nothing yet) */
};

void bb_http_scan_reset(struct bb_http_scan *s);

/* Feed the next n bytes of the head. Returns the head's total length (through its empty
 * line) when it ends inside these bytes, else 0 (s->scanned advanced by n). */
size_t bb_http_scan_feed(struct bb_http_scan *s, const char *in, size_t n);

/* Parse a response head; same return convention (no err_status). */
int bb_http_parse_response(const char *buf, size_t len, struct bb_http_head *h);

/* True when s[0..n) is a non-empty RFC 9110 token (a valid field name or method). */
bool bb_http_token_ok(const char *s, size_t n);

/* True when v[0..n) may be sent as a field value: HTAB, SP, VCHAR and obs-text only (no CR,
 * LF, NUL or other CTL), without leading or trailing whitespace. */
bool bb_http_field_value_ok(const char *v, size_t n);

/* The reason phrase of a status code (one table for busbar and bb-mock); for a code it does
 * not know, a generic one by class ("Client Error", "Server Error"). */
const char *bb_http_reason(int status);

/* Case-insensitive header lookup; NULL when absent. */
const struct bb_http_header *bb_http_find(const struct bb_http_head *h, const char *name);

/* Case-insensitive comparison of a counted string with a C string. */
bool bb_http_ieq(const char *s, size_t n, const char *lit);

/* Incremental chunked transfer-coding decoder. */
struct bb_chunked {
    int state;
    uint64_t remaining;   /* bytes left in the current chunk */
    uint32_t line_len;    /* bytes of the current size/trailer line, bounded */
    uint32_t trailer_len; /* bytes of all trailer lines, bounded */
    bool done;            /* last chunk and trailers consumed */
};

void bb_chunked_init(struct bb_chunked *c);

/* Consume bytes from in[0..len). Returns the number of bytes consumed (>= 0) or -1 on a
 * malformed encoding. When the consumed bytes include payload, *data_off and *data_len give the
 * payload span inside in (at most one span per call: call again with the rest). Stops
 * consuming once c->done. Size and trailer lines need CRLF; chunk sizes above 2^62, lines over
 * 4096 bytes and trailers over 16 KiB are malformed. */
ssize_t bb_chunked_feed(struct bb_chunked *c, const char *in, size_t len, size_t *data_off,
                        size_t *data_len);

#endif
