/*
 * errors_http: the one table of client-facing errors (house style rule 8) and their rendering
 * in each ingress dialect. Worker process; pure functions.
 */
#ifndef BB_ERRORS_HTTP_H
#define BB_ERRORS_HTTP_H

#include <stddef.h>

#include "common/config.h"

/* kind, HTTP status, OpenAI error type, OpenAI error code */
#define BB_ERRKIND_LIST(X)                                                                         \
    X(BAD_REQUEST, 400, "invalid_request_error", "bad_request")                                    \
    X(INVALID_JSON, 400, "invalid_request_error", "invalid_json")                                  \
    X(MISSING_MODEL, 400, "invalid_request_error", "missing_model")                                \
    X(UNTRANSLATABLE, 400, "invalid_request_error", "untranslatable_fields")                       \
    X(UNAUTHORIZED, 401, "authentication_error", "invalid_api_key")                                \
    X(FORBIDDEN, 403, "permission_error", "permission_denied")                                     \
    X(NOT_FOUND, 404, "invalid_request_error", "not_found")                                        \
    X(MODEL_NOT_FOUND, 404, "invalid_request_error", "model_not_found")                            \
    X(METHOD_NOT_ALLOWED, 405, "invalid_request_error", "method_not_allowed")                      \
    X(REQUEST_TIMEOUT, 408, "invalid_request_error", "request_timeout")                            \
    X(TOO_LARGE, 413, "invalid_request_error", "request_too_large")                                \
    X(HEADERS_TOO_LARGE, 431, "invalid_request_error", "request_header_fields_too_large")          \
    X(RATE_LIMITED, 429, "rate_limit_error", "rate_limit_exceeded")                                \
    X(QUOTA, 429, "insufficient_quota", "insufficient_quota")                                      \
    X(NOT_IMPLEMENTED, 501, "invalid_request_error", "not_implemented")                            \
    X(VERSION, 505, "invalid_request_error", "http_version_not_supported")                         \
    X(INTERNAL, 500, "server_error", "internal_error")                                             \
    X(UPSTREAM, 502, "server_error", "upstream_error")                                             \
    X(OVERLOADED, 503, "server_error", "overloaded")                                               \
    X(NO_CAPACITY, 503, "server_error", "no_capacity")                                             \
    X(STORE_UNAVAILABLE, 503, "server_error", "spend_store_unavailable")                           \
    X(CLUSTER_UNAVAILABLE, 503, "server_error", "cluster_store_unavailable")                       \
    X(POLICY_FAILED, 503, "server_error", "routing_policy_failed")                                 \
    X(UPSTREAM_TIMEOUT, 504, "server_error", "upstream_timeout")

enum bb_errkind {
#define X(k, s, t, c) BB_ERR_##k,
    BB_ERRKIND_LIST(X)
#undef X
        BB_ERR__COUNT
};

int bb_errkind_status(enum bb_errkind k);

/* The status a kind has in dialect: the table's, except a budget refusal (QUOTA), which
 * Bedrock reports as 400 ServiceQuotaExceededException (SPEC §6). */
int bb_errkind_status_in(enum bb_proto dialect, enum bb_errkind k);

/* bb_errors_headers for a kind: the dialect's header lines for the kind's status (and the
 * kind's own Bedrock exception name where it has one). */
size_t bb_errors_kind_headers(enum bb_proto dialect, enum bb_errkind k, char *out, size_t cap);

/* The error kind for an HTTP status produced by the parser (400, 431, 501, 505, ...). */
enum bb_errkind bb_errkind_from_status(int status);

/* Render an error body for dialect into out (cap bytes); returns the length (truncated to
 * cap - 1). msg is escaped as a JSON string. */
size_t bb_errors_render(enum bb_proto dialect, enum bb_errkind k, const char *msg, char *out,
                        size_t cap);

/* The same for an arbitrary HTTP status (relaying an upstream error into another dialect):
 * the dialect's error type is derived from the status. */
size_t bb_errors_render_status(enum bb_proto dialect, int status, const char *code, const char *msg,
                               char *out, size_t cap);

/* Extra header lines a dialect's errors carry (Bedrock's x-amzn-ErrorType), "" when none.
 * Returns the length written to out. */
size_t bb_errors_headers(enum bb_proto dialect, int status, char *out, size_t cap);

/* The dialect's error type name for a status: Anthropic "overloaded_error", Gemini
 * "UNAVAILABLE", Bedrock "ServiceUnavailableException", OpenAI "server_error", ... */
const char *bb_errors_type(enum bb_proto dialect, int status);

#endif
