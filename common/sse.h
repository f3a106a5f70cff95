/*
 * sse: incremental Server-Sent Events decoder (text/event-stream), robust to frames split at
 * any byte across reads. Any process; one decoder per stream.
 */
#ifndef BB_SSE_H
#define BB_SSE_H

#include <stddef.h>

struct bb_sse_event {
    const char *event; /* "" when no event: field */
    size_t event_len;
    const char *data; /* data: lines joined with '\n' */
    size_t data_len;
    const char *id; /* this frame's id: field, "" when none (not the sticky last-event-ID) */
    size_t id_len;
    const char *raw; /* the frame's bytes exactly as received, through its blank line; also
                        any preceding blocks that dispatched nothing (comments), so that
                        relaying every raw reproduces the stream byte for byte */
    size_t raw_len;
};

/* Called once per dispatched event; return non-zero to stop feeding (returned by feed). */
typedef int (*bb_sse_cb)(void *arg, const struct bb_sse_event *ev);

struct bb_sse {
    char *raw; /* bytes of the frame in progress */
    size_t raw_len, raw_cap;
    char *fields; /* decoded event/data/id storage */
    size_t fields_len, fields_cap;
    size_t max_frame; /* a frame larger than this is an error */
    size_t ev_off, ev_len, data_off, data_len, id_off, id_len;
    int has_data, has_event;
    int state; /* line scanning state (pending CR etc.) */
    size_t line_start;
    size_t block_start; /* raw offset after the last blank line */
    int bom_checked;    /* BOM bytes matched so far; 3 once settled */
};

/* max_frame bounds one event's raw size (SPEC §9 "stream frame size"); 0 = unbounded. */
void bb_sse_init(struct bb_sse *s, size_t max_frame);

/* Feed n bytes. Dispatches events (lines ending LF, CRLF or CR; comment lines ignored;
 * "field" without colon; one leading space after the colon removed; a leading UTF-8 BOM
 * skipped). An event with no data lines is still dispatched if it had an event: field.
 * Returns 0, -1 when a frame exceeds max_frame or memory runs out, or the callback's value. */
int bb_sse_feed(struct bb_sse *s, const char *p, size_t n, bb_sse_cb cb, void *arg);

/* Bytes of an unfinished frame held (a stream that ended mid-frame has pending > 0). */
size_t bb_sse_pending(const struct bb_sse *s);

void bb_sse_free(struct bb_sse *s);

#endif
