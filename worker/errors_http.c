/*
 * errors_http: render client-facing errors from the one table in errors_http.h, in the
 * ingress protocol's shape (its module's ops->errors: vocabulary, header, body; SPEC §4).
 * Worker process; pure functions.
 */
#include "worker/errors_http.h"

#include "worker/proto.h"

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

static const struct bb_proto_errors *errs(enum bb_proto dialect)
{
    const struct bb_proto_ops *o = bb_proto_get(dialect);
    return o ? &o->errors : &bb_proto_get(BB_PROTO_DEFAULT)->errors;
}

int bb_errkind_status_in(enum bb_proto dialect, enum bb_errkind k)
{
    return k == BB_ERR_QUOTA && errs(dialect)->quota_status ? errs(dialect)->quota_status
                                                            : kinds[k].status;
}

/* A kind's own error type in a dialect where the status-derived one would mislead. */
static const char *kind_type(enum bb_proto dialect, enum bb_errkind k)
{
    return k == BB_ERR_QUOTA ? errs(dialect)->quota_type : NULL;
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

/* busbar's own error type by HTTP status (OpenAI's names): the vocabulary of protocols that
 * bring none (SPEC §4 "Errors reach the client in the ingress dialect"). */
static const struct bb_proto_errtype busbar_types[] = {
    {400, "invalid_request_error"}, {401, "authentication_error"},  {402, "insufficient_quota"},
    {403, "permission_error"},      {404, "invalid_request_error"}, {405, "invalid_request_error"},
    {408, "invalid_request_error"}, {413, "invalid_request_error"}, {429, "rate_limit_error"},
    {500, "server_error"},          {502, "server_error"},          {503, "server_error"},
    {504, "server_error"},          {529, "server_error"},
};

/* The type of status in vocabulary t[0..n): its row, else its class's (400 or 500). */
static const char *lookup(const struct bb_proto_errtype *t, size_t n, int status)
{
    for (size_t i = 0; i < n; i++)
        if (t[i].status == status)
            return t[i].type;
    for (size_t i = 0; i < n; i++)
        if (t[i].status == (status >= 500 ? 500 : 400))
            return t[i].type;
    return "error";
}

static const char *busbar_type(int status)
{
    return lookup(busbar_types, sizeof busbar_types / sizeof busbar_types[0], status);
}

const char *bb_errors_type(enum bb_proto dialect, int status)
{
    const struct bb_proto_errors *e = errs(dialect);
    return e->types ? lookup(e->types, e->n_types, status) : busbar_type(status);
}

/* OpenAI's shape, busbar's own. */
static int openai_body(char *out, size_t cap, int status, const char *type, const char *busbar_type,
                       const char *code, const char *msg)
{
    (void)status;
    (void)type;
    if (code && *code)
        return snprintf(out, cap,
                        "{\"error\":{\"message\":%s,\"type\":\"%s\",\"param\":null,"
                        "\"code\":\"%s\"}}",
                        msg, busbar_type, code);
    return snprintf(out, cap,
                    "{\"error\":{\"message\":%s,\"type\":\"%s\",\"param\":null,"
                    "\"code\":null}}",
                    msg, busbar_type);
}

static size_t render(enum bb_proto dialect, int status, const char *type, const char *code,
                     const char *msg, const char *dialect_type, char *out, size_t cap)
{
    const struct bb_proto_errors *e = errs(dialect);
    const char *dtype = dialect_type ? dialect_type : bb_errors_type(dialect, status);
    /* json-c escapes the message; the error path is not hot. */
    json_object *m = json_object_new_string(msg ? msg : "");
    const char *esc = json_object_to_json_string_ext(m, JSON_C_TO_STRING_PLAIN);
    int n = (e->body ? e->body : openai_body)(out, cap, status, dtype, type, code, esc);
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

size_t bb_errors_render_status(enum bb_proto dialect, int status, const char *code, const char *msg,
                               char *out, size_t cap)
{
    return render(dialect, status, busbar_type(status), code, msg, NULL, out, cap);
}

/* The header naming type, when the dialect has one. */
static size_t type_header(enum bb_proto dialect, const char *type, char *out, size_t cap)
{
    const char *h = errs(dialect)->type_header;
    int n = h ? snprintf(out, cap, "%s: %s\r\n", h, type) : 0;
    if (n < 0 || cap == 0)
        return 0;
    out[(size_t)n < cap ? (size_t)n : cap - 1] = '\0';
    return (size_t)n < cap ? (size_t)n : cap - 1;
}

size_t bb_errors_headers(enum bb_proto dialect, int status, char *out, size_t cap)
{
    return type_header(dialect, bb_errors_type(dialect, status), out, cap);
}

size_t bb_errors_kind_headers(enum bb_proto dialect, enum bb_errkind k, char *out, size_t cap)
{
    const char *t = kind_type(dialect, k);
    if (!t)
        return bb_errors_headers(dialect, bb_errkind_status_in(dialect, k), out, cap);
    return type_header(dialect, t, out, cap);
}
