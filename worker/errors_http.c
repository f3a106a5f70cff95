/*
 * errors_http: render client-facing errors from the one table in errors_http.h.
 * Worker process; pure functions. Only the OpenAI dialect exists yet; the switch is where the
 * other five protocols' shapes (SPEC §4) plug in.
 */
#include "worker/errors_http.h"

#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

static const struct {
    int status;
    const char *type, *code;
} kinds[] = {
#define X(k, s, t, c) {s, t, c},
    BB_ERRKIND_LIST(X)
#undef X
};

int bb_errkind_status(enum bb_errkind k)
{
    return kinds[k].status;
}

int bb_errkind_status_in(enum bb_proto dialect, enum bb_errkind k)
{
    return k == BB_ERR_QUOTA && dialect == BB_PROTO_BEDROCK ? 400 : kinds[k].status;
}

/* A kind's own error type in a dialect where the status-derived one would mislead. */
static const char *kind_type(enum bb_proto dialect, enum bb_errkind k)
{
    if (k != BB_ERR_QUOTA)
        return NULL;
    switch (dialect) {
    case BB_PROTO_ANTHROPIC:
        return "billing_error";
    case BB_PROTO_BEDROCK:
        return "ServiceQuotaExceededException";
    default:
        return NULL;
    }
}

enum bb_errkind bb_errkind_from_status(int status)
{
    switch (status) {
    case 408:
        return BB_ERR_REQUEST_TIMEOUT;
    case 413:
        return BB_ERR_TOO_LARGE;
    case 431:
        return BB_ERR_HEADERS_TOO_LARGE;
    case 501:
        return BB_ERR_NOT_IMPLEMENTED;
    case 505:
        return BB_ERR_VERSION;
    default:
        return BB_ERR_BAD_REQUEST;
    }
}

/* Each dialect's error type by HTTP status (SPEC §4 "Errors reach the client in the ingress
 * dialect"). Rows: status, OpenAI type, Anthropic type, Gemini status, Bedrock exception. */
static const struct {
    int status;
    const char *openai, *anthropic, *gemini, *bedrock;
} by_status[] = {
    {400, "invalid_request_error", "invalid_request_error", "INVALID_ARGUMENT",
     "ValidationException"},
    {401, "authentication_error", "authentication_error", "UNAUTHENTICATED",
     "UnrecognizedClientException"},
    {402, "insufficient_quota", "billing_error", "RESOURCE_EXHAUSTED",
     "ServiceQuotaExceededException"},
    {403, "permission_error", "permission_error", "PERMISSION_DENIED", "AccessDeniedException"},
    {404, "invalid_request_error", "not_found_error", "NOT_FOUND", "ResourceNotFoundException"},
    {405, "invalid_request_error", "invalid_request_error", "INVALID_ARGUMENT",
     "ValidationException"},
    {408, "invalid_request_error", "invalid_request_error", "DEADLINE_EXCEEDED",
     "ModelTimeoutException"},
    {413, "invalid_request_error", "request_too_large", "INVALID_ARGUMENT",
     "ValidationException"},
    {429, "rate_limit_error", "rate_limit_error", "RESOURCE_EXHAUSTED", "ThrottlingException"},
    {500, "server_error", "api_error", "INTERNAL", "InternalServerException"},
    {502, "server_error", "api_error", "UNAVAILABLE", "InternalServerException"},
    {503, "server_error", "overloaded_error", "UNAVAILABLE", "ServiceUnavailableException"},
    {504, "server_error", "api_error", "DEADLINE_EXCEEDED", "ModelTimeoutException"},
    {529, "server_error", "overloaded_error", "UNAVAILABLE", "ServiceUnavailableException"},
};

const char *bb_errors_type(enum bb_proto dialect, int status)
{
    size_t n = sizeof by_status / sizeof by_status[0], pick = n;
    for (size_t i = 0; i < n; i++)
        if (by_status[i].status == status)
            pick = i;
    if (pick == n) /* other statuses: the class's representative */
        for (size_t i = 0; i < n; i++)
            if (by_status[i].status == (status >= 500 ? 500 : 400))
                pick = i;
    switch (dialect) {
    case BB_PROTO_ANTHROPIC:
        return by_status[pick].anthropic;
    case BB_PROTO_GEMINI:
        return by_status[pick].gemini;
    case BB_PROTO_BEDROCK:
        return by_status[pick].bedrock;
    default:
        return by_status[pick].openai;
    }
}

static size_t render(enum bb_proto dialect, int status, const char *type, const char *code,
                     const char *msg, const char *dialect_type, char *out, size_t cap)
{
    const char *dtype = dialect_type ? dialect_type : bb_errors_type(dialect, status);
    /* json-c escapes the message; the error path is not hot. */
    json_object *m = json_object_new_string(msg ? msg : "");
    const char *esc = json_object_to_json_string_ext(m, JSON_C_TO_STRING_PLAIN);
    int n;
    switch (dialect) {
    case BB_PROTO_ANTHROPIC:
        n = snprintf(out, cap, "{\"type\":\"error\",\"error\":{\"type\":\"%s\",\"message\":%s}}",
                     dtype, esc);
        break;
    case BB_PROTO_GEMINI:
        n = snprintf(out, cap, "{\"error\":{\"code\":%d,\"message\":%s,\"status\":\"%s\"}}",
                     status, esc, dtype);
        break;
    case BB_PROTO_BEDROCK:
    case BB_PROTO_COHERE:
        n = snprintf(out, cap, "{\"message\":%s}", esc);
        break;
    default:
        if (code && *code)
            n = snprintf(out, cap,
                         "{\"error\":{\"message\":%s,\"type\":\"%s\",\"param\":null,"
                         "\"code\":\"%s\"}}",
                         esc, type, code);
        else
            n = snprintf(out, cap,
                         "{\"error\":{\"message\":%s,\"type\":\"%s\",\"param\":null,"
                         "\"code\":null}}",
                         esc, type);
        break;
    }
    json_object_put(m);
    if (n < 0)
        return 0;
    return (size_t)n < cap ? (size_t)n : cap - 1;
}

size_t bb_errors_render(enum bb_proto dialect, enum bb_errkind k, const char *msg, char *out,
                        size_t cap)
{
    return render(dialect, bb_errkind_status_in(dialect, k), kinds[k].type, kinds[k].code, msg,
                  kind_type(dialect, k), out, cap);
}

size_t bb_errors_render_status(enum bb_proto dialect, int status, const char *code,
                               const char *msg, char *out, size_t cap)
{
    return render(dialect, status, bb_errors_type(BB_PROTO_OPENAI, status), code, msg, NULL, out,
                  cap);
}

size_t bb_errors_headers(enum bb_proto dialect, int status, char *out, size_t cap)
{
    int n = 0;
    if (dialect == BB_PROTO_BEDROCK)
        n = snprintf(out, cap, "x-amzn-ErrorType: %s\r\n", bb_errors_type(dialect, status));
    if (n < 0 || cap == 0)
        return 0;
    out[(size_t)n < cap ? (size_t)n : cap - 1] = '\0';
    return (size_t)n < cap ? (size_t)n : cap - 1;
}

size_t bb_errors_kind_headers(enum bb_proto dialect, enum bb_errkind k, char *out, size_t cap)
{
    const char *t = dialect == BB_PROTO_BEDROCK ? kind_type(dialect, k) : NULL;
    if (!t)
        return bb_errors_headers(dialect, bb_errkind_status_in(dialect, k), out, cap);
    int n = snprintf(out, cap, "x-amzn-ErrorType: %s\r\n", t);
    if (n < 0 || cap == 0)
        return 0;
    return (size_t)n < cap ? (size_t)n : cap - 1;
}

const char *bb_http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    case 529: return "Overloaded";
    default: return status < 300 ? "OK" : status < 500 ? "Client Error" : "Server Error";
    }
}
