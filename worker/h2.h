/*
 * h2: HTTP/2 on client connections (libnghttp2 does framing, HPACK and flow control).
 * Worker process, single-threaded loop.
 *
 * http_server hands a connection over when TLS negotiated "h2" by ALPN, or when a plain
 * connection starts with the HTTP/2 connection preface (h2c by prior knowledge). Each stream
 * becomes the same struct bb_request the HTTP/1.1 path builds (its head rebuilt as an
 * HTTP/1.1 head from the pseudo-headers and fields), with req->h2 set: the bb_http_respond_*
 * calls of http_server.h forward here for such a request, so routing, authentication,
 * admission, failover, translation and streaming are the same code on both transports.
 */
#ifndef BB_H2_H
#define BB_H2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "worker/request.h"

struct bb_worker;
struct bb_conn;
struct bb_h2;
struct bufferevent;
struct evbuffer;

/* Does in start with the client connection preface? 1 yes, 0 a prefix of it (wait for more
 * bytes), -1 no. */
int bb_h2_preface(struct evbuffer *in);

/* Take over conn's bufferevent (its callbacks become this module's) and process the bytes
 * already read. NULL on OOM (the caller closes the connection). */
struct bb_h2 *bb_h2_start(struct bb_worker *w, struct bb_conn *conn, struct bufferevent *bev);

/* The connection is being freed (by http_server): every stream's request still running is
 * finished as a client disconnect; frees h. */
void bb_h2_free(struct bb_h2 *h);

/* Worker drain (reload, stop): GOAWAY in two steps (a notice, then after one round trip the
 * last stream id); streams already opened finish, then the connection closes. */
void bb_h2_drain(struct bb_h2 *h);

/* The transport side of http_server.h's bb_http_respond_* for a request with req->h2. */
int bb_h2_respond_head(struct bb_request *req, int status, const char *content_type,
                       const char *extra_headers, size_t extra_len, enum bb_body_mode mode,
                       int64_t content_length);
int bb_h2_respond_body(struct bb_request *req, const void *data, size_t len);
int bb_h2_respond_buffer(struct bb_request *req, struct evbuffer *buf);
void bb_h2_respond_end(struct bb_request *req);
size_t bb_h2_output_pending(const struct bb_request *req);
void bb_h2_on_drained(struct bb_request *req, void (*cb)(struct bb_request *));

/* bb_request_finish of a request with req->h2: the stream forgets it (an answer left
 * incomplete resets the stream after its buffered bytes). */
void bb_h2_request_done(struct bb_request *req);

#endif
