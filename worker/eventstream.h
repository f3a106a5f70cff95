/*
 * eventstream: the AWS event-stream binary framing (application/vnd.amazon.eventstream) that
 * Bedrock's ConverseStream speaks: an incremental decoder robust to messages split at any
 * byte across reads, and an encoder for event and exception messages.
 *
 * Wire format of one message (all integers big-endian):
 *   total length u32 | headers length u32 | prelude CRC32 (of the 8 bytes before it)
 *   headers: { name length u8, name, type u8, value }*
 *   payload
 *   message CRC32 (of every byte before it, prelude CRC included)
 * Header value types: 0 true, 1 false, 2 byte, 3 short (i16), 4 int (i32), 5 long (i64),
 * 6 bytes (u16 length + bytes), 7 string (u16 length + UTF-8), 8 timestamp (i64 ms), 9 uuid.
 *
 * Worker process; one decoder per stream, no shared state, no locking.
 */
#ifndef BB_EVENTSTREAM_H
#define BB_EVENTSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;
struct bb_frame;

#define BB_EVENTSTREAM_PRELUDE_LEN 12u         /* total len + headers len + prelude CRC */
#define BB_EVENTSTREAM_MIN_LEN 16u             /* prelude + message CRC, no headers, no payload */
#define BB_EVENTSTREAM_DEFAULT_MAX (16u << 20) /* bound on one message (SPEC §9) */

enum bb_eventstream_type {
    BB_ES_TRUE = 0,
    BB_ES_FALSE = 1,
    BB_ES_BYTE = 2,
    BB_ES_SHORT = 3,
    BB_ES_INT = 4,
    BB_ES_LONG = 5,
    BB_ES_BYTES = 6,
    BB_ES_STRING = 7,
    BB_ES_TIMESTAMP = 8,
    BB_ES_UUID = 9,
};

/* One header, pointing into the message it came from. */
struct bb_eventstream_header {
    const char *name;
    size_t name_len;
    enum bb_eventstream_type type;
    int64_t num;        /* TRUE/FALSE (1/0), BYTE, SHORT, INT, LONG, TIMESTAMP (ms) */
    const uint8_t *val; /* BYTES, STRING: the bytes; UUID: 16 bytes */
    size_t val_len;
};

/* A decoded message. Strings are not NUL-terminated; absent headers are "" with length 0.
 * Everything points into the decoder's buffer (or the caller's input) and is valid only
 * during the callback. */
struct bb_eventstream_msg {
    const char *message_type; /* ":message-type": "event", "exception", "error" */
    size_t message_type_len;
    const char *event_type; /* ":event-type"; for exceptions ":exception-type"; for
                               errors ":error-code" */
    size_t event_type_len;
    const char *content_type; /* ":content-type" */
    size_t content_type_len;
    const char *error_message; /* ":error-message" (message-type error only) */
    size_t error_message_len;
    bool exception;         /* message-type exception or error */
    const uint8_t *headers; /* the raw header block, for bb_eventstream_header_next */
    size_t headers_len;
    const uint8_t *payload;
    size_t payload_len;
    const uint8_t *raw; /* the whole message as received, CRCs included (for relays) */
    size_t raw_len;
};

/* Called once per complete, CRC-checked message; non-zero stops feeding (returned by feed). */
typedef int (*bb_eventstream_cb)(void *arg, const struct bb_eventstream_msg *m);

struct bb_eventstream {
    uint8_t *buf; /* bytes of the message in progress */
    size_t len, cap;
    size_t max_message; /* a message longer than this is an error */
    const char *error;  /* why the last feed failed (static text), NULL when fine */
    bool failed;        /* sticky: after an error every feed fails */
};

/* max_message bounds one message's total length; 0 = BB_EVENTSTREAM_DEFAULT_MAX. */
void bb_eventstream_init(struct bb_eventstream *d, size_t max_message);

/* Feed n bytes (any split). Calls cb for each complete message, in order. Returns 0, -1 on a
 * framing error (bad lengths, CRC mismatch, malformed headers, oversize message, out of
 * memory; d->error says which, and the decoder stays failed), or the callback's value. */
int bb_eventstream_feed(struct bb_eventstream *d, const void *p, size_t n, bb_eventstream_cb cb,
                        void *arg);

/* Bytes of an unfinished message held (a stream that ended mid-message has pending > 0). */
size_t bb_eventstream_pending(const struct bb_eventstream *d);

void bb_eventstream_free(struct bb_eventstream *d);

/* Decode exactly one message from p[0..n). 1 = a message (its length in *used), 0 = more bytes
 * are needed, -1 = malformed (*why says what). No copy: m points into p. */
int bb_eventstream_parse(const uint8_t *p, size_t n, size_t max_message,
                         struct bb_eventstream_msg *m, size_t *used, const char **why);

/* Iterate the headers of a block: *off starts at 0. 1 = a header in h, 0 = end, -1 = malformed. */
int bb_eventstream_header_next(const uint8_t *hdrs, size_t len, size_t *off,
                               struct bb_eventstream_header *h);

/* The message as a proxy frame: event = :event-type (or :exception-type / :error-code),
 * data = payload (for an error message without one, :error-message), exception =
 * message-type exception or error. Points into m. */
void bb_eventstream_to_frame(const struct bb_eventstream_msg *m, struct bb_frame *f);

/* ---- encoder ---- */

/* Append one message with string headers names[i] = values[i] and the payload, with both
 * CRCs. -1 when a header or the message is too large, or out of memory. */
int bb_eventstream_write(struct evbuffer *out, const char *const *names, const char *const *values,
                         size_t n_headers, const void *payload, size_t payload_len);

/* An event message: :event-type ev, :content-type application/json, :message-type event. */
int bb_eventstream_write_event(struct evbuffer *out, const char *event_type, const void *json,
                               size_t json_len);

/* An exception message: :exception-type type, :content-type application/json,
 * :message-type exception. */
int bb_eventstream_write_exception(struct evbuffer *out, const char *exception_type,
                                   const void *json, size_t json_len);

#endif
