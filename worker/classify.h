/*
 * classify: sort an upstream failure into one fault class (SPEC §5.1) and extract its
 * Retry-After. Worker process; pure functions.
 */
#ifndef BB_CLASSIFY_H
#define BB_CLASSIFY_H

#include <stdint.h>
#include <time.h>

#include "common/config.h"

#define BB_FCLASS_LIST(X)                                                                      \
    X(RATE_LIMIT, "rate_limit")                                                                \
    X(OVERLOADED, "overloaded")                                                                \
    X(SERVER, "server_error")                                                                  \
    X(TIMEOUT, "timeout")                                                                      \
    X(NETWORK, "network")                                                                      \
    X(AUTH, "auth")                                                                            \
    X(BILLING, "billing")                                                                      \
    X(CLIENT, "client_error")                                                                  \
    X(CONTEXT, "context_length")

enum bb_fclass {
#define X(id, name) BB_FC_##id,
    BB_FCLASS_LIST(X)
#undef X
};

const char *bb_fclass_name(enum bb_fclass c);

/* Classify an HTTP error answer of protocol p: the provider's error code and type are read from
 * body with the protocol module's read_error, then context-length and billing phrasing, then
 * the status. */
enum bb_fclass bb_classify_http(enum bb_proto p, int status, const char *body, size_t len);

/* Retry-After as milliseconds from now: delta-seconds or an HTTP date; 0 when absent or bad.
 * Capped at one day. */
uint64_t bb_retry_after_ms(const char *value, time_t now);

#endif
