/*
 * ctl_proto: the admin socket wire format, shared by the master (master/ctl_server.c) and
 * busbarctl. Any process; no shared state (a struct bb_ctl_buf belongs to one connection).
 *
 * Protocol: the client connects to the master's AF_UNIX stream socket (mode 0600), writes ONE
 * JSON object on one line terminated by '\n', the master answers with ONE JSON object on one
 * line terminated by '\n' and closes. Requests are capped at BB_CTL_REQ_MAX bytes, responses at
 * BB_CTL_RESP_MAX; both sides give up after a deadline (BB_CTL_TIMEOUT_MS by default).
 *
 *   request:  {"cmd":"<name>", ...arguments}
 *   response: {"ok":true, ...} | {"ok":false,"error":"text"} | {"ok":false,"errors":["f:l:c: m"]}
 *
 * Governance commands (keys.*, spend) take the same arguments as the HTTP admin API's JSON
 * bodies (docs/governance.md) and answer its result object with "ok":true added; a failure is
 * {"ok":false,"error":"text","code":"not_found|invalid_request|conflict|store_error|…",
 *  "status":HTTP-status}.
 */
#ifndef BB_CTL_PROTO_H
#define BB_CTL_PROTO_H

#include <stddef.h>

#include "common/err.h"

#define BB_CTL_REQ_MAX (64u * 1024u)
#define BB_CTL_RESP_MAX (16u * 1024u * 1024u)
#define BB_CTL_TIMEOUT_MS 20000

/* Commands understood by the master (the single source of truth for wire command names). */
#define BB_CTL_CMD_LIST(X)                                                                         \
    X(STATUS, "status")                                                                            \
    X(RELOAD, "reload")                                                                            \
    X(KEYS_CREATE, "keys.create")                                                                  \
    X(KEYS_LIST, "keys.list")                                                                      \
    X(KEYS_SHOW, "keys.show")                                                                      \
    X(KEYS_UPDATE, "keys.update")                                                                  \
    X(KEYS_REVOKE, "keys.revoke")                                                                  \
    X(KEYS_DELETE, "keys.delete")                                                                  \
    X(SPEND, "spend")

enum bb_ctl_cmd {
#define X(id, name) BB_CTL_CMD_##id,
    BB_CTL_CMD_LIST(X)
#undef X
        BB_CTL_CMD__COUNT
};

/* Wire name of a command. */
const char *bb_ctl_cmd_name(enum bb_ctl_cmd c);
/* -1 when name is not a known command. */
int bb_ctl_cmd_from_name(const char *name);

/* Growable line buffer for one direction of one connection. */
struct bb_ctl_buf {
    char *data; /* NUL-terminated once a line is complete; owned */
    size_t len; /* bytes held (reading) or total to send (writing) */
    size_t off; /* bytes already sent (writing) */
    size_t cap;
    size_t max; /* size cap of one line, newline included */
};

enum bb_ctl_io { BB_CTL_IO_DONE, BB_CTL_IO_AGAIN, BB_CTL_IO_ERROR };

/* Prepare an empty buffer that accepts lines of at most max bytes. */
void bb_ctl_buf_init(struct bb_ctl_buf *b, size_t max);
void bb_ctl_buf_free(struct bb_ctl_buf *b);
/* Load s (len bytes, no newline) plus a '\n' for sending; -1 when longer than b->max. */
int bb_ctl_buf_set_line(struct bb_ctl_buf *b, const char *s, size_t len, struct bb_err *err);
/* Read what fd has (non-blocking or not). DONE once a full line arrived, or EOF came after
 * some bytes: b->data holds the line without its newline, NUL-terminated, b->len its length.
 * AGAIN: need more. ERROR: EOF before any byte, line over the cap, or a read error (err). */
enum bb_ctl_io bb_ctl_buf_read(struct bb_ctl_buf *b, int fd, struct bb_err *err);
/* Write what is left; DONE when everything was sent, AGAIN on EAGAIN, ERROR otherwise. */
enum bb_ctl_io bb_ctl_buf_write(struct bb_ctl_buf *b, int fd, struct bb_err *err);

/* Blocking helpers with a deadline (busbarctl). */
/* Connect to the admin socket at path (CLOEXEC, non-blocking); fd or -1 with
 * "cannot connect to PATH: strerror" in err. */
int bb_ctl_connect(const char *path, struct bb_err *err);
/* One round trip: send req (one line, no newline), return the malloc'd response line (no
 * newline, NUL-terminated; caller frees) or NULL with err set. */
char *bb_ctl_call(const char *path, const char *req, int timeout_ms, struct bb_err *err);

#endif
