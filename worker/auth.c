/*
 * auth: the client's credential, found and checked (see auth.h). Worker process.
 */
#include "worker/auth.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "common/log.h"
#include "worker/proto.h"
#include "worker/request.h"
#include "worker/sigv4.h"
#include "worker/worker.h"

#define SIGV4_MAX_SKEW_SECS 300
#define SIGV4_PREFIX "AWS4-HMAC-SHA256"

int bb_auth_init(struct bb_worker *w)
{
    const struct bb_conf *c = w->conf;
    if (c->auth_mode != BB_AUTH_TOKEN || !c->n_client_tokens)
        return 0;
    w->token_sha = calloc(c->n_client_tokens, sizeof *w->token_sha);
    if (!w->token_sha)
        return -1;
    for (size_t i = 0; i < c->n_client_tokens; i++)
        bb_keys_hash_secret(c->client_tokens[i], strlen(c->client_tokens[i]), w->token_sha[i]);
    w->n_token_sha = c->n_client_tokens;
    return 0;
}

void bb_auth_free(struct bb_worker *w)
{
    if (w->token_sha)
        OPENSSL_cleanse(w->token_sha, w->n_token_sha * sizeof *w->token_sha);
    free(w->token_sha);
    w->token_sha = NULL;
    w->n_token_sha = 0;
}

static bool prefix_ieq(const char *s, size_t n, const char *p)
{
    size_t k = strlen(p);
    return n >= k && bb_http_ieq(s, k, p);
}

static int hexval(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* The value of `key` in a query string, URL-decoded into the arena; NULL when absent. */
static const char *query_param(struct bb_arena *a, const char *q, const char *key, size_t *len)
{
    size_t kl = strlen(key);
    for (const char *p = q; p && *p;) {
        const char *end = strchr(p, '&');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n > kl && memcmp(p, key, kl) == 0 && p[kl] == '=') {
            char *out = bb_arena_alloc(a, n - kl);
            size_t o = 0;
            if (!out)
                return NULL;
            for (size_t i = kl + 1; i < n; i++) {
                int h = p[i] == '%' && i + 2 < n ? hexval(p[i + 1]) : -1;
                int l = h >= 0 ? hexval(p[i + 2]) : -1;
                if (h >= 0 && l >= 0) {
                    out[o++] = (char)(h * 16 + l);
                    i += 2;
                } else {
                    out[o++] = p[i] == '+' ? ' ' : p[i];
                }
            }
            out[o] = '\0';
            *len = o;
            return out;
        }
        p = end ? end + 1 : NULL;
    }
    return NULL;
}

/* The credential in SPEC order; NULL when none. *sigv4 set when it is a SigV4 header value. */
static const char *credential(struct bb_request *req, size_t *len, bool *sigv4)
{
    const struct bb_http_header *h = bb_http_find(&req->head, "authorization");
    *sigv4 = false;
    if (h && prefix_ieq(h->value, h->value_len, "Bearer ")) {
        const char *v = h->value + 7;
        size_t n = h->value_len - 7;
        while (n && *v == ' ')
            v++, n--;
        *len = n;
        return n ? v : NULL;
    }
    if (h && h->value_len > strlen(SIGV4_PREFIX) &&
        memcmp(h->value, SIGV4_PREFIX, strlen(SIGV4_PREFIX)) == 0) {
        *sigv4 = true;
        *len = h->value_len;
        return h->value;
    }
    for (int p = 0; p < BB_PROTO__COUNT; p++) { /* x-api-key, x-goog-api-key, ... */
        const char *name = bb_proto_get((enum bb_proto)p)->client_key_header;
        if (name && (h = bb_http_find(&req->head, name))) {
            *len = h->value_len;
            return h->value_len ? h->value : NULL;
        }
    }
    const char *qk = bb_proto_get(req->ingress)->client_key_query; /* Gemini's ?key= */
    if (qk && req->query) {
        const char *v = query_param(&req->arena, req->query, qk, len);
        return v && *len ? v : NULL;
    }
    return NULL;
}

/* A SigV4-signed Bedrock request, on the head: a well-formed header naming a key's AWS access
 * key id. The signature covers the body's hash: bb_auth_check_body verifies it. */
static int check_sigv4(struct bb_request *req, const char *value, size_t len, struct bb_auth *out)
{
    struct bb_err err;
    const char *service = bb_proto_get(req->ingress)->client_sigv4_service;
    if (!service) {
        bb_debug("request %s: auth: SigV4 is not accepted on %s routes", req->id,
                 bb_proto_name(req->ingress));
        return -1;
    }
    struct bb_sigv4_auth *sa = bb_arena_alloc(&req->arena, sizeof *sa);
    if (!sa)
        return -1;
    if (bb_sigv4_parse_auth(value, len, sa, &err) < 0) {
        bb_debug("request %s: auth: %s", req->id, err.msg);
        return -1;
    }
    if (bb_keys_lookup_aws(&req->w->rt->shm->keys, sa->access_key, strlen(sa->access_key),
                           &out->key) < 0) {
        bb_debug("request %s: auth: unknown AWS access key id", req->id);
        return -1;
    }
    out->sigv4 = sa;
    return 0;
}

int bb_auth_check_body(struct bb_request *req, struct bb_auth *out)
{
    struct bb_err err;
    struct bb_sigv4_auth *sa = out->sigv4;
    if (!sa)
        return 0;
    out->sigv4 = NULL;
    struct bb_sigv4_header *hs =
        bb_arena_alloc(&req->arena, (req->head.n_headers + 1) * sizeof *hs);
    if (!hs)
        return -1;
    for (size_t i = 0; i < req->head.n_headers; i++) {
        const struct bb_http_header *h = &req->head.headers[i];
        hs[i] = (struct bb_sigv4_header){h->name, h->name_len, h->value, h->value_len};
    }
    /* the request's own method: Bedrock's model lists are signed GETs */
    char method[16];
    size_t ml = req->head.method_len < sizeof method - 1 ? req->head.method_len : sizeof method - 1;
    memcpy(method, req->head.method, ml);
    method[ml] = '\0';
    size_t nh = req->head.n_headers;
    const struct bb_http_header *host = req->h2 ? bb_http_find(&req->head, "host") : NULL;
    if (host) /* HTTP/2 clients sign the :authority pseudo-header (busbar's host line) */
        hs[nh++] = (struct bb_sigv4_header){":authority", 10, host->value, host->value_len};
    struct bb_sigv4_req r = {method, NULL, req->path, req->query, hs, nh, req->body, req->body_len};
    const char *service = bb_proto_get(req->ingress)->client_sigv4_service;
    if (!service || bb_sigv4_verify(&r, sa, out->key.lim.aws_secret, service, (int64_t)time(NULL),
                                    SIGV4_MAX_SKEW_SECS, &err) < 0) {
        bb_debug("request %s: auth: SigV4: %s", req->id, err.msg);
        return -1;
    }
    out->has_key = true;
    return 0;
}

/* Constant time over every configured token: the time says nothing about which matched. */
static bool token_ok(struct bb_worker *w, const char *v, size_t n)
{
    uint8_t sha[32];
    int hit = 0;
    bb_keys_hash_secret(v, n, sha);
    for (size_t i = 0; i < w->n_token_sha; i++)
        hit |= CRYPTO_memcmp(sha, w->token_sha[i], 32) == 0;
    return hit;
}

int bb_auth_check(struct bb_request *req, struct bb_auth *out)
{
    memset(out, 0, sizeof *out);
    enum bb_auth_mode mode = req->w->conf->auth_mode;
    if (mode == BB_AUTH_NONE)
        return 0;
    size_t n = 0;
    bool sigv4;
    const char *v = credential(req, &n, &sigv4);
    if (!v) {
        bb_debug("request %s: auth: no credential", req->id);
        return -1;
    }
    switch (mode) {
    case BB_AUTH_KEYS:
        if (sigv4)
            return check_sigv4(req, v, n, out);
        if (bb_keys_lookup(&req->w->rt->shm->keys, v, n, &out->key) < 0) {
            bb_debug("request %s: auth: unknown key", req->id);
            return -1;
        }
        out->has_key = true;
        return 0;
    case BB_AUTH_TOKEN:
        if (!sigv4 && token_ok(req->w, v, n))
            return 0;
        bb_debug("request %s: auth: not a configured client token", req->id);
        return -1;
    case BB_AUTH_PASSTHROUGH:
        if (sigv4) { /* a signature covers busbar's host, never the provider's */
            bb_debug("request %s: auth: SigV4 cannot be passed through", req->id);
            return -1;
        }
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f) { /* it goes into a header */
                bb_debug("request %s: auth: control character in the credential", req->id);
                return -1;
            }
        out->passthrough = bb_arena_strndup(&req->arena, v, n);
        return out->passthrough ? 0 : -1;
    default:
        return 0;
    }
}
