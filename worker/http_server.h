/*
 * http_server: client-side HTTP/1.1 on bufferevents (plain or TLS): accept, request heads and
 * bodies with fixed limits and deadlines, keep-alive, pipelining, response framing, lingering
 * close. Worker process, single-threaded.
 *
 * A connection carries at most one request at a time. The request's owner writes the response
 * with the bb_http_respond_* calls and then ends the request with bb_request_finish, which hands
 * the connection back here (bb_http_conn_request_done).
 */
#ifndef BB_HTTP_SERVER_H
#define BB_HTTP_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include <event2/util.h>

struct evbuffer;

#include "worker/request.h"

struct bb_worker;
struct bb_conn;

/* Feed the bytes of in not scanned yet by sc (up to limit, at most in's length) to the
 * incremental end-of-head scan (common/http_parse.h): the head's length once its end is
 * found, else 0. Each byte is looked at once however the head arrives. Used for client
 * requests here and for upstream responses (worker/upstream.c). */
size_t bb_http_scan_input(struct bb_http_scan *sc, struct evbuffer *in, size_t limit);

/* Take ownership of an accepted socket. */
void bb_http_accept(struct bb_worker *w, evutil_socket_t fd, const struct sockaddr *sa, int salen);

/* Send the response head. mode BB_BODY_LENGTH needs content_length; BB_BODY_CHUNKED is
 * downgraded to BB_BODY_CLOSE for HTTP/1.0 clients. extra_headers are complete
 * "name: value\r\n" lines (may be NULL). -1 when the client is gone. */
int bb_http_respond_head(struct bb_request *req, int status, const char *content_type,
                         const char *extra_headers, size_t extra_len, enum bb_body_mode mode,
                         int64_t content_length);

/* Append "name: value\r\n" to buf (cap bytes, kept NUL-terminated, *len bytes used) when
 * name is a token, value a valid field value (bb_http_field_value_ok: no CR, LF or other
 * CTL) and the line fits; otherwise append nothing, log, and return -1. Every header value
 * that comes from a client or a provider enters a response head through here; the lines are
 * then passed as bb_http_respond_head's extra_headers, which re-checks every line. */
int bb_http_header_add(char *buf, size_t cap, size_t *len, const char *name, const char *value);

/* Append body bytes in the response's framing; written out at once. -1 when the client is
 * gone. */
int bb_http_respond_body(struct bb_request *req, const void *data, size_t len);

/* Append the whole of buf as body bytes (moved out of buf, not copied, when the framing
 * allows). -1 when the client is gone. */
int bb_http_respond_buffer(struct bb_request *req, struct evbuffer *buf);

/* Terminate the body (last chunk for chunked). The request still has to be finished. */
void bb_http_respond_end(struct bb_request *req);

/* Head + whole body + end in one call. */
void bb_http_respond_full(struct bb_request *req, int status, const char *content_type,
                          const char *extra_headers, const void *body, size_t len);

/* Bytes waiting in the client's output buffer (backpressure); 0 when gone. */
size_t bb_http_output_pending(const struct bb_request *req);
/* Hand what is queued to the client's socket once the callbacks of this loop turn have run
 * (plain HTTP/1.1; otherwise the bufferevent does it at the next turn): one write per upstream
 * read, however many chunks it held, without arming and disarming the write event. */
void bb_http_write_soon(struct bb_request *req);

/* Ask to be called back (once) when the client's output drains below the low mark. */
void bb_http_on_drained(struct bb_request *req, void (*cb)(struct bb_request *));

/* Move len bytes of src into req's body (NUL-terminated, in its arena) and size the arena
 * for what the request builds from it. -1 on OOM. */
int bb_http_request_body(struct bb_request *req, struct evbuffer *src, size_t len);

/* Call fn for each well-formed "name: value\r\n" line of h[0..n) (f: the name and the value
 * without its leading blanks; line_len counts the CRLF) whose name is not one the response
 * head writes itself (framing, Content-Type, x-request-id). A line that is not one (CR, LF,
 * NUL or another CTL in the value, a name that is not a token, no CRLF) or that names a
 * reserved header is dropped and logged: every response head, HTTP/1.1 or HTTP/2, is written
 * through here, so no byte from a client or a provider reaches a head without this check. */
void bb_http_header_lines(const char *h, size_t n, const char *id,
                          void (*fn)(void *arg, const struct bb_http_header *f, size_t line_len),
                          void *arg);

/* For worker/h2.c: free the connection now (its requests end as client disconnects), or
 * take the bufferevent back, write what is queued and close (lingering on plain sockets). */
void bb_http_conn_close(struct bb_conn *c);
void bb_http_conn_linger(struct bb_conn *c);

/* Called by bb_request_finish: the connection goes back to reading or closes. */
void bb_http_conn_request_done(struct bb_conn *conn, struct bb_request *req);

/* Drain mode: idle connections are closed soon, the rest close after their response. */
void bb_http_drain(struct bb_worker *w);

/* Free every connection (worker exit). Requests in progress are finished first. */
void bb_http_close_all(struct bb_worker *w);

#endif
