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

size_t bb_errors_render(enum bb_proto dialect, enum bb_errkind k, const char *msg, char *out,
                        size_t cap)
{
    (void)dialect;
    /* json-c escapes the message; the error path is not hot. */
    json_object *m = json_object_new_string(msg ? msg : "");
    const char *esc = json_object_to_json_string_ext(m, JSON_C_TO_STRING_PLAIN);
    int n = snprintf(out, cap, "{\"error\":{\"message\":%s,\"type\":\"%s\",\"code\":\"%s\"}}",
                     esc, kinds[k].type, kinds[k].code);
    json_object_put(m);
    if (n < 0)
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
