/*
 * aws: the envelope Bedrock's runtime API modules share (see aws.h). Worker process; pure
 * functions, no shared state.
 */
#include "worker/aws.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <json-c/json.h>
#include <openssl/crypto.h>

#include "worker/eventstream.h"
#include "worker/json.h"
#include "worker/sigv4.h"

/* ---------------------------------------------------------------- routes and paths */

/* The resource id of an ARN's last path segment (':' and '/' raw or %XX-encoded), else s
 * itself. */
static void arn_resource(const char **s, size_t *n)
{
    if (!(*n > 4 && strncmp(*s, "arn:", 4) == 0) && !(*n > 6 && strncasecmp(*s, "arn%3A", 6) == 0))
        return;
    size_t cut = 0;
    for (size_t i = 0; i < *n; i++) {
        if ((*s)[i] == '/')
            cut = i + 1;
        else if (i + 3 <= *n && (*s)[i] == '%' && (*s)[i + 1] == '2' &&
                 ((*s)[i + 2] == 'F' || (*s)[i + 2] == 'f'))
            cut = i + 3;
    }
    if (cut && cut < *n) {
        *s += cut;
        *n -= cut;
    }
}

int bb_aws_match_model_route(const char *p, size_t n, const char *const *actions, int *action,
                             struct bb_proto_route *out)
{
    if (!bb_path_starts(p, "/model/"))
        return 0;
    for (int i = 0; actions[i]; i++) {
        size_t al = strlen(actions[i]);
        /* the model sits between the prefix and "/<action>", both side by side at least
         * ("/model/converse" is the suffix sharing the prefix's slash, not an empty model) */
        if (n <= 7 + al + 1 || p[n - al - 1] != '/' || memcmp(p + n - al, actions[i], al) != 0)
            continue;
        const char *m = p + 7;
        size_t ml = n - 7 - al - 1;
        arn_resource(&m, &ml);
        out->model = m;
        out->model_len = ml;
        *action = i;
        return 1;
    }
    return 0;
}

int bb_aws_model_path(char *out, size_t cap, const char *model, const char *action)
{
    char enc[900];
    if (!model || !*model || bb_sigv4_uri_encode(model, strlen(model), false, enc, sizeof enc) < 0)
        return -1;
    int n = snprintf(out, cap, "/model/%s/%s", enc, action);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* ---------------------------------------------------------------- credentials */

/* bedrock-runtime[-fips].<region>.amazonaws.com[.cn] → region. */
static bool region_from_host(const char *host, char *out, size_t cap)
{
    const char *p = host;
    if (strncmp(p, "bedrock-runtime", 15) != 0)
        return false;
    p += 15;
    if (!strncmp(p, "-fips", 5))
        p += 5;
    if (*p != '.')
        return false;
    p++;
    const char *e = strchr(p, '.');
    if (!e || e == p || (size_t)(e - p) >= cap || strncmp(e, ".amazonaws.com", 14) != 0)
        return false;
    for (const char *c = p; c < e; c++)
        if (!islower((unsigned char)*c) && !isdigit((unsigned char)*c) && *c != '-')
            return false;
    memcpy(out, p, (size_t)(e - p));
    out[e - p] = '\0';
    return true;
}

int bb_aws_auth_headers(struct evbuffer *out, const char *key)
{
    return key && !strchr(key, ':') ? bb_proto_bearer(out, key) : 0;
}

int bb_aws_sign(struct bb_arena *a, const struct bb_egress_ctx *ctx, struct bb_egress_req *out,
                const char *body, size_t body_len, const char *service, struct bb_err *err)
{
    const struct bb_provider *pv = ctx->provider;
    const char *key = pv ? pv->api_key : NULL;
    if (!key || !*key)
        return 0;          /* e.g. a local mock without credentials */
    if (!strchr(key, ':')) /* a Bedrock API key */
        return bb_aws_auth_headers(out->headers, key) < 0 ? bb_err_set(err, "out of memory") : 0;
    /* ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN] */
    char *cred = bb_arena_strndup(a, key, strlen(key));
    if (!cred)
        return bb_err_set(err, "out of memory");
    char *secret = strchr(cred, ':');
    *secret++ = '\0';
    char *token = strchr(secret, ':');
    if (token)
        *token++ = '\0';
    if (!*cred || !*secret)
        return bb_err_set(err,
                          "%s: provider '%s': credential must be "
                          "ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN]",
                          service, pv->name ? pv->name : "?");
    char region[64];
    const char *host = pv->url.host ? pv->url.host : "";
    if (pv->region && *pv->region)
        snprintf(region, sizeof region, "%s", pv->region);
    else if (!region_from_host(host, region, sizeof region))
        snprintf(region, sizeof region, "us-east-1");

    /* The Host value the proxy sends: port only when not the scheme's default. */
    char hostbuf[300];
    bool v6 = strchr(host, ':') != NULL;
    uint16_t def = pv->url.tls ? 443 : 80;
    if (pv->url.port && pv->url.port != def)
        snprintf(hostbuf, sizeof hostbuf, "%s%s%s:%u", v6 ? "[" : "", host, v6 ? "]" : "",
                 (unsigned)pv->url.port);
    else
        snprintf(hostbuf, sizeof hostbuf, "%s%s%s", v6 ? "[" : "", host, v6 ? "]" : "");
    char path[1400];
    snprintf(path, sizeof path, "%s%s", pv->url.path ? pv->url.path : "", out->path);

    struct bb_sigv4_header ct = {"content-type", 12, "application/json", 16};
    struct bb_sigv4_req req = {.method = "POST",
                               .host = hostbuf,
                               .path = path,
                               .headers = &ct,
                               .n_headers = 1,
                               .payload = body,
                               .payload_len = body_len};
    struct bb_sigv4_cred c = {cred, secret, token && *token ? token : NULL};
    int rc = bb_sigv4_sign(&req, region, service, &c, ctx->now, BB_SIGV4_CONTENT_SHA256,
                           out->headers, NULL, err);
    OPENSSL_cleanse(cred, strlen(key));
    return rc;
}

/* ---------------------------------------------------------------- errors */

const struct bb_proto_errtype bb_aws_error_types[BB_AWS_N_ERROR_TYPES] = {
    {400, "ValidationException"},           {401, "UnrecognizedClientException"},
    {402, "ServiceQuotaExceededException"}, {403, "AccessDeniedException"},
    {404, "ResourceNotFoundException"},     {405, "ValidationException"},
    {408, "ModelTimeoutException"},         {413, "ValidationException"},
    {429, "ThrottlingException"},           {500, "InternalServerException"},
    {502, "InternalServerException"},       {503, "ServiceUnavailableException"},
    {504, "ModelTimeoutException"},         {529, "ServiceUnavailableException"},
};

static void copy_out(char *dst, size_t cap, const char *s, size_t n)
{
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, s, n);
    dst[n] = '\0';
}

int bb_aws_read_error(const char *body, size_t len, struct bb_proto_error *out)
{
    memset(out, 0, sizeof *out);
    struct bb_err e;
    struct json_object *root = bb_json_parse(body, len, "error", &e);
    if (!bb_json_is(root, json_type_object)) {
        json_object_put(root);
        return -1;
    }
    struct json_object *m = bb_json_get(root, "message");
    if (!m)
        m = bb_json_get(root, "Message");
    if (bb_json_is(m, json_type_string))
        copy_out(out->message, sizeof out->message, json_object_get_string(m),
                 (size_t)json_object_get_string_len(m));
    struct json_object *t = bb_json_get(root, "__type");
    if (bb_json_is(t, json_type_string)) {
        const char *s = json_object_get_string(t), *h = strrchr(s, '#');
        if (h)
            s = h + 1;
        size_t n = strcspn(s, ":");
        copy_out(out->type, sizeof out->type, s, n);
    }
    json_object_put(root);
    return out->message[0] || out->type[0] ? 0 : -1;
}

/* ---------------------------------------------------------------- stream exceptions */

/* The exceptions Bedrock's streams model, with their HTTP statuses. */
static const struct {
    const char *name;
    int status;
} stream_exceptions[] = {
    {"internalServerException", 500},     {"modelStreamErrorException", 424},
    {"validationException", 400},         {"throttlingException", 429},
    {"serviceUnavailableException", 503},
};

int bb_aws_exception_status(const char *name, size_t n)
{
    for (size_t i = 0; i < sizeof stream_exceptions / sizeof stream_exceptions[0]; i++)
        if (strlen(stream_exceptions[i].name) == n &&
            !strncasecmp(name, stream_exceptions[i].name, n))
            return stream_exceptions[i].status;
    if (n >= 21 && !strncasecmp(name, "modelTimeoutException", 21))
        return 408;
    return 0;
}

static bool contains_ci(const char *h, size_t hl, const char *needle)
{
    size_t nl = strlen(needle);
    for (size_t i = 0; i + nl <= hl; i++)
        if (!strncasecmp(h + i, needle, nl))
            return true;
    return false;
}

const char *bb_aws_exception_for(const struct bb_ir_event *ev)
{
    const char *t = ev->error_type.p ? ev->error_type.p : "";
    size_t tl = ev->error_type.p ? ev->error_type.len : 0;
    for (size_t i = 0; i < sizeof stream_exceptions / sizeof stream_exceptions[0]; i++)
        if (strlen(stream_exceptions[i].name) == tl &&
            !strncasecmp(t, stream_exceptions[i].name, tl))
            return stream_exceptions[i].name;
    int st = ev->error_status;
    if (st == 429 || contains_ci(t, tl, "rate_limit") || contains_ci(t, tl, "throttl") ||
        contains_ci(t, tl, "resource_exhausted") || contains_ci(t, tl, "quota"))
        return "throttlingException";
    if (st == 503 || st == 529 || contains_ci(t, tl, "overloaded") ||
        contains_ci(t, tl, "unavailable"))
        return "serviceUnavailableException";
    if (st == 400 || st == 404 || st == 413 || st == 422 || contains_ci(t, tl, "invalid") ||
        contains_ci(t, tl, "validation"))
        return "validationException";
    if (st == 424 || contains_ci(t, tl, "modelstreamerror"))
        return "modelStreamErrorException";
    return "internalServerException";
}

int bb_aws_exception_scan(const struct bb_proto_ops *ops, const struct bb_frame *f,
                          struct bb_frame_info *out)
{
    char fb[96];
    snprintf(fb, sizeof fb, "%.*s", (int)(f->event_len < 80 ? f->event_len : 80),
             f->event ? f->event : "exception");
    return bb_proto_frame_error(ops, f->data, f->data_len, fb, out);
}

int bb_aws_exception_event(struct bb_arena *scratch, const struct bb_frame *f,
                           struct bb_ir_event *ev)
{
    memset(ev, 0, sizeof *ev);
    ev->type = BB_IR_EV_ERROR;
    ev->error_type = bb_ir_strdup(scratch, f->event, f->event_len);
    ev->error_status = bb_aws_exception_status(f->event, f->event_len);
    struct bb_err e;
    struct json_object *p =
        f->data_len ? bb_json_parse(f->data, f->data_len, "exception", &e) : NULL;
    struct json_object *m = bb_json_get(p, "message");
    if (!m)
        m = bb_json_get(p, "Message");
    if (bb_json_is(m, json_type_string))
        ev->text =
            bb_ir_strdup(scratch, json_object_get_string(m), (size_t)json_object_get_string_len(m));
    else
        ev->text = bb_ir_strdup(scratch, f->data, p ? 0 : f->data_len);
    json_object_put(p);
    return ev->error_type.p && ev->text.p ? 0 : -1;
}

int bb_aws_write_exception(struct evbuffer *out, const struct bb_ir_event *ev)
{
    struct json_object *o = json_object_new_object();
    bb_json_add(o, "message",
                ev->text.p ? bb_json_new_str(&ev->text) : json_object_new_string("error"));
    size_t n = 0;
    const char *s = bb_json_out(o, &n);
    int rc = bb_eventstream_write_exception(out, bb_aws_exception_for(ev), s, n);
    json_object_put(o);
    return rc;
}

/* ---------------------------------------------------------------- model lists */

/* The region and account of the ARNs busbar lists: none of AWS's. */
#define LIST_ARN "arn:aws:bedrock:us-east-1:000000000000:"
#define LIST_MODEL_ARN "arn:aws:bedrock:us-east-1::foundation-model/"
#define LIST_TIME "1970-01-01T00:00:00Z"

static json_object *arn(const char *prefix, const char *name)
{
    size_t pl = strlen(prefix), nl = strlen(name);
    char *buf = malloc(pl + nl + 1);
    if (!buf)
        return NULL;
    memcpy(buf, prefix, pl);
    memcpy(buf + pl, name, nl + 1);
    json_object *o = json_object_new_string(buf);
    free(buf);
    return o;
}

json_object *bb_aws_inference_profiles(const char *const *names, size_t n)
{
    json_object *root = json_object_new_object(), *list = json_object_new_array();
    for (size_t i = 0; i < n; i++) {
        json_object *p = json_object_new_object(), *models = json_object_new_array();
        json_object *m = json_object_new_object();
        bb_json_add(m, "modelArn", arn(LIST_MODEL_ARN, names[i]));
        json_object_array_add(models, m);
        bb_json_add(p, "inferenceProfileName", json_object_new_string(names[i]));
        bb_json_add(p, "description", json_object_new_string("busbar"));
        bb_json_add(p, "createdAt", json_object_new_string(LIST_TIME));
        bb_json_add(p, "updatedAt", json_object_new_string(LIST_TIME));
        bb_json_add(p, "inferenceProfileArn", arn(LIST_ARN "inference-profile/", names[i]));
        bb_json_add(p, "models", models);
        bb_json_add(p, "inferenceProfileId", json_object_new_string(names[i]));
        bb_json_add(p, "status", json_object_new_string("ACTIVE"));
        bb_json_add(p, "type", json_object_new_string("SYSTEM_DEFINED"));
        json_object_array_add(list, p);
    }
    bb_json_add(root, "inferenceProfileSummaries", list);
    return root;
}

json_object *bb_aws_foundation_models(const char *const *names, size_t n)
{
    json_object *root = json_object_new_object(), *list = json_object_new_array();
    for (size_t i = 0; i < n; i++) {
        json_object *m = json_object_new_object(), *in = json_object_new_array();
        json_object *out = json_object_new_array(), *kinds = json_object_new_array();
        json_object *life = json_object_new_object();
        json_object_array_add(in, json_object_new_string("TEXT"));
        json_object_array_add(out, json_object_new_string("TEXT"));
        json_object_array_add(kinds, json_object_new_string("ON_DEMAND"));
        bb_json_add(life, "status", json_object_new_string("ACTIVE"));
        bb_json_add(m, "modelArn", arn(LIST_MODEL_ARN, names[i]));
        bb_json_add(m, "modelId", json_object_new_string(names[i]));
        bb_json_add(m, "modelName", json_object_new_string(names[i]));
        bb_json_add(m, "providerName", json_object_new_string("busbar"));
        bb_json_add(m, "inputModalities", in);
        bb_json_add(m, "outputModalities", out);
        bb_json_add(m, "responseStreamingSupported", json_object_new_boolean(1));
        bb_json_add(m, "customizationsSupported", json_object_new_array());
        bb_json_add(m, "inferenceTypesSupported", kinds);
        bb_json_add(m, "modelLifecycle", life);
        json_object_array_add(list, m);
    }
    bb_json_add(root, "modelSummaries", list);
    return root;
}
