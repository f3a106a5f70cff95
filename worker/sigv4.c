/*
 * sigv4: AWS Signature Version 4 signer and verifier (see sigv4.h).
 * Worker process; pure functions, no shared state, no locking.
 *
 * Both directions share one core (signature_for) that takes the canonical header block and
 * the signed-header list already built: the signer builds them from the headers it adds, the
 * verifier from the client's SignedHeaders list in the client's order (the list is part of
 * what was signed, so it is used verbatim). The canonical path and query follow
 * @smithy/signature-v4, which is what every AWS SDK client of busbar signs with.
 */
#include "worker/sigv4.h"

#include "common/sha256.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define ALGORITHM "AWS4-HMAC-SHA256"

/* ---- a growable string (malloc; the signer runs outside any arena) ---- */

struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t c = b->cap ? b->cap : 512;
        while (c < b->len + n + 1)
            c *= 2;
        char *p = realloc(b->p, c);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = c;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_adds(struct sbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

static void sb_addc(struct sbuf *b, char c)
{
    sb_add(b, &c, 1);
}

/* ---- hashing ---- */

static void to_hex(const unsigned char *d, size_t n, char *out)
{
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hx[d[i] >> 4];
        out[2 * i + 1] = hx[d[i] & 15];
    }
    out[2 * n] = '\0';
}

static int sha256_hex(const void *p, size_t n, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int ml = 0;
    if (!EVP_Digest(p ? p : "", n, md, &ml, bb_sha256_md(), NULL) || ml != 32)
        return -1;
    to_hex(md, 32, out);
    return 0;
}

static int hmac(const void *key, size_t kl, const void *d, size_t n, unsigned char out[32])
{
    unsigned int ol = 0;
    if (!HMAC(bb_sha256_md(), key, (int)kl, d, n, out, &ol) || ol != 32)
        return -1;
    return 0;
}

/* ---- URI encoding ---- */

static bool unreserved(unsigned char c)
{
    return isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

static void sb_uri_encode(struct sbuf *b, const char *s, size_t n, bool keep_slash)
{
    static const char hx[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (unreserved(c) || (keep_slash && c == '/')) {
            sb_addc(b, (char)c);
        } else {
            char e[3] = {'%', hx[c >> 4], hx[c & 15]};
            sb_add(b, e, 3);
        }
    }
}

int bb_sigv4_uri_encode(const char *s, size_t n, bool keep_slash, char *out, size_t cap)
{
    struct sbuf b = {0};
    sb_uri_encode(&b, s, n, keep_slash);
    int r = -1;
    if (!b.oom && b.len < cap) {
        memcpy(out, b.p ? b.p : "", b.len + 1);
        r = (int)b.len;
    }
    free(b.p);
    return r;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)tolower((unsigned char)c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent-decode s[0..n) into b ('+' stays '+': SigV4 does not treat it as a space). */
static void sb_uri_decode(struct sbuf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int h, l;
        if (s[i] == '%' && i + 2 < n && (h = hexval(s[i + 1])) >= 0 &&
            (l = hexval(s[i + 2])) >= 0) {
            sb_addc(b, (char)(h << 4 | l));
            i += 2;
        } else {
            sb_addc(b, s[i]);
        }
    }
}

/* ---- canonical request parts ---- */

/* Canonical URI: normalise the segments of the already-encoded path the way the AWS SDKs do,
 * then encode every segment a second time (non-S3 services). */
static void canonical_uri(struct sbuf *b, const char *path)
{
    size_t n = path ? strlen(path) : 0;
    if (n == 0) {
        sb_addc(b, '/');
        return;
    }
    /* Segment boundaries, with ".." popping the previous kept segment. */
    size_t start = b->len;
    size_t cap = n / 2 + 2, ns = 0;
    size_t *st = malloc(cap * sizeof *st), *ln = malloc(cap * sizeof *ln);
    if (!st || !ln) {
        b->oom = true;
        free(st);
        free(ln);
        return;
    }
    for (size_t i = 0; i <= n;) {
        size_t j = i;
        while (j < n && path[j] != '/')
            j++;
        size_t l = j - i;
        if (l == 0 || (l == 1 && path[i] == '.')) {
            /* skipped */
        } else if (l == 2 && path[i] == '.' && path[i + 1] == '.') {
            if (ns)
                ns--;
        } else if (ns < cap) {
            st[ns] = i;
            ln[ns++] = l;
        }
        i = j + 1;
    }
    if (path[0] == '/')
        sb_addc(b, '/');
    for (size_t k = 0; k < ns; k++) {
        if (k)
            sb_addc(b, '/');
        sb_uri_encode(b, path + st[k], ln[k], false);
    }
    if (ns > 0 && path[n - 1] == '/')
        sb_addc(b, '/');
    if (b->len == start)
        sb_addc(b, '/');
    free(st);
    free(ln);
}

struct qpair {
    char *key, *val; /* canonical (re-encoded), malloc'd */
};

static int qpair_cmp(const void *a, const void *b)
{
    const struct qpair *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : strcmp(x->val, y->val);
}

static char *encode_component(const char *s, size_t n)
{
    struct sbuf dec = {0}, enc = {0};
    sb_add(&dec, "", 0);
    sb_uri_decode(&dec, s, n);
    sb_add(&enc, "", 0);
    if (!dec.oom)
        sb_uri_encode(&enc, dec.p, dec.len, false);
    free(dec.p);
    if (dec.oom || enc.oom) {
        free(enc.p);
        return NULL;
    }
    return enc.p;
}

/* Canonical query: each name=value decoded and re-encoded, sorted by name then value. */
static void canonical_query(struct sbuf *b, const char *q)
{
    if (!q || !*q)
        return;
    size_t n = strlen(q), np = 0, cap = 1;
    for (size_t i = 0; i < n; i++)
        cap += q[i] == '&';
    struct qpair *v = calloc(cap, sizeof *v);
    if (!v) {
        b->oom = true;
        return;
    }
    for (size_t i = 0; i <= n;) {
        size_t j = i;
        while (j < n && q[j] != '&')
            j++;
        if (j > i) {
            const char *eq = memchr(q + i, '=', j - i);
            size_t kl = eq ? (size_t)(eq - (q + i)) : j - i;
            v[np].key = encode_component(q + i, kl);
            v[np].val =
                eq ? encode_component(eq + 1, (size_t)(q + j - eq - 1)) : encode_component("", 0);
            if (!v[np].key || !v[np].val) {
                b->oom = true;
                np++;
                break;
            }
            /* A presigned URL's own signature is never part of what it signs. */
            if (strcasecmp(v[np].key, "X-Amz-Signature") == 0) {
                free(v[np].key);
                free(v[np].val);
                v[np].key = v[np].val = NULL;
            } else {
                np++;
            }
        }
        i = j + 1;
    }
    if (!b->oom) {
        qsort(v, np, sizeof *v, qpair_cmp);
        for (size_t k = 0; k < np; k++) {
            if (k)
                sb_addc(b, '&');
            sb_adds(b, v[k].key);
            sb_addc(b, '=');
            sb_adds(b, v[k].val);
        }
    }
    for (size_t k = 0; k < np; k++) {
        free(v[k].key);
        free(v[k].val);
    }
    free(v);
}

/* A header value trimmed, inner runs of blanks (and CR/LF) collapsed to one space. */
static void sb_trimmed(struct sbuf *b, const char *s, size_t n)
{
    bool pending = false, any = false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            pending = any;
            continue;
        }
        if (pending)
            sb_addc(b, ' ');
        pending = false;
        any = true;
        sb_addc(b, c);
    }
}

static bool lower_eq(const char *a, size_t al, const char *b, size_t bl)
{
    if (al != bl)
        return false;
    for (size_t i = 0; i < al; i++)
        if (tolower((unsigned char)a[i]) != tolower((unsigned char)b[i]))
            return false;
    return true;
}

/* Everything after the canonical headers is shared: build the canonical request and string to
 * sign, derive the key, and write the hex signature. */
static int signature_for(const char *method, const char *path, const char *query,
                         const char *canon_headers, const char *signed_headers,
                         const char *payload_hash, const char *amz_date, const char *region,
                         const char *service, const char *secret, char out[65], struct bb_err *err)
{
    struct sbuf cr = {0}, sts = {0}, key = {0};
    char date[9], crh[65];
    int rc = -1;
    memcpy(date, amz_date, 8);
    date[8] = '\0';

    sb_adds(&cr, method);
    sb_addc(&cr, '\n');
    canonical_uri(&cr, path);
    sb_addc(&cr, '\n');
    canonical_query(&cr, query);
    sb_addc(&cr, '\n');
    sb_adds(&cr, canon_headers);
    sb_addc(&cr, '\n');
    sb_adds(&cr, signed_headers);
    sb_addc(&cr, '\n');
    sb_adds(&cr, payload_hash);
    if (cr.oom) {
        bb_err_set(err, "sigv4: out of memory building the canonical request");
        goto out;
    }
    if (sha256_hex(cr.p, cr.len, crh) < 0) {
        bb_err_set(err, "sigv4: SHA-256 failed");
        goto out;
    }
    sb_adds(&sts, ALGORITHM "\n");
    sb_adds(&sts, amz_date);
    sb_addc(&sts, '\n');
    sb_adds(&sts, date);
    sb_addc(&sts, '/');
    sb_adds(&sts, region);
    sb_addc(&sts, '/');
    sb_adds(&sts, service);
    sb_adds(&sts, "/aws4_request\n");
    sb_adds(&sts, crh);
    sb_adds(&key, "AWS4");
    sb_adds(&key, secret);
    if (sts.oom || key.oom) {
        bb_err_set(err, "sigv4: out of memory building the string to sign");
        goto out;
    }
    unsigned char k1[32], k2[32], k3[32], k4[32], sig[32];
    if (hmac(key.p, key.len, date, 8, k1) < 0 || hmac(k1, 32, region, strlen(region), k2) < 0 ||
        hmac(k2, 32, service, strlen(service), k3) < 0 ||
        hmac(k3, 32, "aws4_request", 12, k4) < 0 || hmac(k4, 32, sts.p, sts.len, sig) < 0) {
        bb_err_set(err, "sigv4: HMAC-SHA256 failed");
        goto out;
    }
    to_hex(sig, 32, out);
    OPENSSL_cleanse(k1, sizeof k1);
    OPENSSL_cleanse(k4, sizeof k4);
    rc = 0;
out:
    if (key.p)
        OPENSSL_cleanse(key.p, key.len);
    free(cr.p);
    free(sts.p);
    free(key.p);
    return rc;
}

/* ---- signing ---- */

struct hdr {
    char *name; /* lower-cased, malloc'd */
    const char *value;
    size_t value_len;
    size_t order;
};

static int hdr_cmp(const void *a, const void *b)
{
    const struct hdr *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c)
        return c;
    return x->order < y->order ? -1 : x->order > y->order;
}

static char *lower_dup(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (!d)
        return NULL;
    for (size_t i = 0; i < n; i++)
        d[i] = (char)tolower((unsigned char)s[i]);
    d[n] = '\0';
    return d;
}

static bool valid_token(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c >= 0x7f || c == ':')
            return false;
    }
    return true;
}

static bool valid_value(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0')
            return false;
    return true;
}

static void format_amz_date(int64_t now, char out[17])
{
    time_t t = (time_t)now;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

int bb_sigv4_sign(const struct bb_sigv4_req *r, const char *region, const char *service,
                  const struct bb_sigv4_cred *c, int64_t now, unsigned flags, struct evbuffer *out,
                  struct bb_sigv4_sig *sig, struct bb_err *err)
{
    if (!c || !c->access_key || !*c->access_key || !c->secret_key || !*c->secret_key)
        return bb_err_set(err, "sigv4: missing access key or secret");
    if (!r->host || !*r->host || !valid_value(r->host, strlen(r->host)))
        return bb_err_set(err, "sigv4: missing or invalid host");
    const char *token = c->session_token && *c->session_token ? c->session_token : NULL;
    if (!valid_value(c->access_key, strlen(c->access_key)) ||
        (token && !valid_value(token, strlen(token))))
        return bb_err_set(err, "sigv4: credential contains a line break");

    char amz_date[17], payload_hash[65], signature[65];
    format_amz_date(now, amz_date);
    if (sha256_hex(r->payload, r->payload_len, payload_hash) < 0)
        return bb_err_set(err, "sigv4: SHA-256 failed");

    size_t nh = 0, cap = r->n_headers + 4;
    struct hdr *h = calloc(cap, sizeof *h);
    struct sbuf ch = {0}, sh = {0};
    int rc = -1;
    if (!h) {
        bb_err_set(err, "sigv4: out of memory");
        goto out;
    }
#define ADD_HDR(n_, nl_, v_, vl_)                                                                  \
    do {                                                                                           \
        h[nh].name = lower_dup(n_, nl_);                                                           \
        h[nh].value = v_;                                                                          \
        h[nh].value_len = vl_;                                                                     \
        h[nh].order = nh;                                                                          \
        if (!h[nh++].name) {                                                                       \
            bb_err_set(err, "sigv4: out of memory");                                               \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)
    ADD_HDR("host", 4, r->host, strlen(r->host));
    ADD_HDR("x-amz-date", 10, amz_date, 16);
    if (flags & BB_SIGV4_CONTENT_SHA256)
        ADD_HDR("x-amz-content-sha256", 20, payload_hash, 64);
    if (token)
        ADD_HDR("x-amz-security-token", 20, token, strlen(token));
    for (size_t i = 0; i < r->n_headers; i++) {
        const struct bb_sigv4_header *x = &r->headers[i];
        if (!valid_token(x->name, x->name_len) || !valid_value(x->value, x->value_len)) {
            bb_err_set(err, "sigv4: header %zu to sign is malformed", i);
            goto out;
        }
        ADD_HDR(x->name, x->name_len, x->value, x->value_len);
    }
#undef ADD_HDR
    qsort(h, nh, sizeof *h, hdr_cmp);
    for (size_t i = 0; i < nh; i++) {
        bool same = i > 0 && strcmp(h[i].name, h[i - 1].name) == 0;
        if (same) {
            sb_addc(&ch, ',');
        } else {
            if (i > 0) {
                sb_addc(&ch, '\n');
                sb_addc(&sh, ';');
            }
            sb_adds(&ch, h[i].name);
            sb_addc(&ch, ':');
            sb_adds(&sh, h[i].name);
        }
        sb_trimmed(&ch, h[i].value, h[i].value_len);
    }
    sb_addc(&ch, '\n');
    if (ch.oom || sh.oom) {
        bb_err_set(err, "sigv4: out of memory");
        goto out;
    }

    /* The query may ride on the path ("/x?a=b"); sign the two parts apart. */
    const char *path = r->path ? r->path : "/", *query = r->query;
    char *pathbuf = NULL;
    const char *qm = strchr(path, '?');
    if (qm) {
        pathbuf = strndup(path, (size_t)(qm - path));
        if (!pathbuf) {
            bb_err_set(err, "sigv4: out of memory");
            goto out;
        }
        if (!query || !*query)
            query = qm + 1;
        path = pathbuf;
    }
    int s = signature_for(r->method, path, query, ch.p, sh.p, payload_hash, amz_date, region,
                          service, c->secret_key, signature, err);
    free(pathbuf);
    if (s < 0)
        goto out;

    char date[9];
    memcpy(date, amz_date, 8);
    date[8] = '\0';
    if (evbuffer_add_printf(out,
                            "Authorization: " ALGORITHM " Credential=%s/%s/%s/%s/aws4_request, "
                            "SignedHeaders=%s, Signature=%s\r\nX-Amz-Date: %s\r\n",
                            c->access_key, date, region, service, sh.p, signature, amz_date) < 0 ||
        ((flags & BB_SIGV4_CONTENT_SHA256) &&
         evbuffer_add_printf(out, "X-Amz-Content-Sha256: %s\r\n", payload_hash) < 0) ||
        (token && evbuffer_add_printf(out, "X-Amz-Security-Token: %s\r\n", token) < 0)) {
        bb_err_set(err, "sigv4: out of memory writing headers");
        goto out;
    }
    if (sig) {
        memcpy(sig->amz_date, amz_date, sizeof sig->amz_date);
        memcpy(sig->signature, signature, sizeof sig->signature);
    }
    rc = 0;
out:
    if (h)
        for (size_t i = 0; i < nh; i++)
            free(h[i].name);
    free(h);
    free(ch.p);
    free(sh.p);
    return rc;
}

/* ---- verification ---- */

/* Copy v[0..n) into out (cap bytes) or fail. */
static bool copy_field(char *out, size_t cap, const char *v, size_t n)
{
    if (n == 0 || n >= cap)
        return false;
    memcpy(out, v, n);
    out[n] = '\0';
    return true;
}

static bool parse_credential(const char *v, size_t n, struct bb_sigv4_auth *a)
{
    const char *part[5];
    size_t plen[5], k = 0, start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || v[i] == '/') {
            if (k == 5)
                return false;
            part[k] = v + start;
            plen[k++] = i - start;
            start = i + 1;
        }
    }
    if (k != 5 || plen[1] != 8 || plen[4] != 12 || memcmp(part[4], "aws4_request", 12) != 0)
        return false;
    for (size_t i = 0; i < 8; i++)
        if (!isdigit((unsigned char)part[1][i]))
            return false;
    return copy_field(a->access_key, sizeof a->access_key, part[0], plen[0]) &&
           copy_field(a->date, sizeof a->date, part[1], plen[1]) &&
           copy_field(a->region, sizeof a->region, part[2], plen[2]) &&
           copy_field(a->service, sizeof a->service, part[3], plen[3]);
}

int bb_sigv4_parse_auth(const char *value, size_t len, struct bb_sigv4_auth *out,
                        struct bb_err *err)
{
    static const char alg[] = ALGORITHM;
    size_t al = sizeof alg - 1, i;
    memset(out, 0, sizeof *out);
    if (len <= al || memcmp(value, alg, al) != 0 || (value[al] != ' ' && value[al] != '\t'))
        return bb_err_set(err, "authorization: not " ALGORITHM);
    bool have_c = false, have_h = false, have_s = false;
    i = al;
    while (i < len) {
        while (i < len && (value[i] == ' ' || value[i] == '\t' || value[i] == ','))
            i++;
        if (i >= len)
            break;
        size_t ks = i;
        while (i < len && value[i] != '=' && value[i] != ',')
            i++;
        if (i >= len || value[i] != '=')
            return bb_err_set(err, "authorization: malformed component");
        size_t kl = i - ks, vs = ++i;
        while (i < len && value[i] != ',')
            i++;
        size_t ve = i;
        while (ve > vs && (value[ve - 1] == ' ' || value[ve - 1] == '\t'))
            ve--;
        const char *k = value + ks, *v = value + vs;
        size_t vl = ve - vs;
        if (kl == 10 && memcmp(k, "Credential", 10) == 0) {
            if (have_c || !parse_credential(v, vl, out))
                return bb_err_set(err, "authorization: malformed Credential");
            have_c = true;
        } else if (kl == 13 && memcmp(k, "SignedHeaders", 13) == 0) {
            if (have_h || !copy_field(out->signed_headers, sizeof out->signed_headers, v, vl))
                return bb_err_set(err, "authorization: malformed SignedHeaders");
            for (size_t j = 0; j < vl; j++)
                if (!valid_token(v + j, 1) && v[j] != ';' && v[j] != ':') /* :authority */
                    return bb_err_set(err, "authorization: malformed SignedHeaders");
            have_h = true;
        } else if (kl == 9 && memcmp(k, "Signature", 9) == 0) {
            if (have_s || vl != 64)
                return bb_err_set(err, "authorization: malformed Signature");
            for (size_t j = 0; j < 64; j++)
                if (hexval(v[j]) < 0)
                    return bb_err_set(err, "authorization: malformed Signature");
            for (size_t j = 0; j < 64; j++)
                out->signature[j] = (char)tolower((unsigned char)v[j]);
            out->signature[64] = '\0';
            have_s = true;
        } else {
            return bb_err_set(err, "authorization: unknown component");
        }
    }
    if (!have_c || !have_h || !have_s)
        return bb_err_set(err, "authorization: Credential, SignedHeaders and Signature are "
                               "all required");
    return 0;
}

static int64_t parse_amz_date(const char *v, size_t n)
{
    if (n != 16 || v[8] != 'T' || v[15] != 'Z')
        return -1;
    int f[6];
    static const int at[6] = {0, 4, 6, 9, 11, 13}, w[6] = {4, 2, 2, 2, 2, 2};
    for (int k = 0; k < 6; k++) {
        f[k] = 0;
        for (int j = 0; j < w[k]; j++) {
            char c = v[at[k] + j];
            if (c < '0' || c > '9')
                return -1;
            f[k] = f[k] * 10 + (c - '0');
        }
    }
    struct tm tm = {.tm_year = f[0] - 1900,
                    .tm_mon = f[1] - 1,
                    .tm_mday = f[2],
                    .tm_hour = f[3],
                    .tm_min = f[4],
                    .tm_sec = f[5]};
    if (f[1] < 1 || f[1] > 12 || f[2] < 1 || f[2] > 31 || f[3] > 23 || f[4] > 59 || f[5] > 60)
        return -1;
    return (int64_t)timegm(&tm);
}

int bb_sigv4_verify(const struct bb_sigv4_req *r, const struct bb_sigv4_auth *auth,
                    const char *secret_key, const char *service, int64_t now, int64_t max_skew,
                    struct bb_err *err)
{
    if (!secret_key || !*secret_key)
        return bb_err_set(err, "sigv4: no secret for the access key");
    if (service && strcmp(service, auth->service) != 0)
        return bb_err_set(err, "sigv4: credential scope names service '%s', not '%s'",
                          auth->service, service);

    /* x-amz-date: present, consistent with the scope, fresh. */
    const struct bb_sigv4_header *date_h = NULL, *sha_h = NULL;
    for (size_t i = 0; i < r->n_headers; i++) {
        const struct bb_sigv4_header *x = &r->headers[i];
        if (lower_eq(x->name, x->name_len, "x-amz-date", 10))
            date_h = x;
        else if (lower_eq(x->name, x->name_len, "x-amz-content-sha256", 20))
            sha_h = x;
    }
    if (!date_h)
        return bb_err_set(err, "sigv4: x-amz-date header missing");
    char amz_date[17];
    if (date_h->value_len != 16)
        return bb_err_set(err, "sigv4: x-amz-date is malformed");
    memcpy(amz_date, date_h->value, 16);
    amz_date[16] = '\0';
    int64_t t = parse_amz_date(amz_date, 16);
    if (t < 0)
        return bb_err_set(err, "sigv4: x-amz-date is malformed");
    if (memcmp(amz_date, auth->date, 8) != 0)
        return bb_err_set(err, "sigv4: credential scope date does not match x-amz-date");
    if (t > now + max_skew || t < now - max_skew)
        return bb_err_set(err, "sigv4: request time is outside the allowed clock skew");

    char payload_hash[65];
    if (sha256_hex(r->payload, r->payload_len, payload_hash) < 0)
        return bb_err_set(err, "sigv4: SHA-256 failed");
    if (sha_h && !lower_eq(sha_h->value, sha_h->value_len, payload_hash, 64))
        return bb_err_set(err, "sigv4: x-amz-content-sha256 does not match the body");

    /* Canonical headers in the client's SignedHeaders order. */
    struct sbuf ch = {0};
    bool have_host = false, have_date = false;
    const char *sl = auth->signed_headers;
    int rc = -1;
    while (*sl) {
        const char *e = strchr(sl, ';');
        size_t nl = e ? (size_t)(e - sl) : strlen(sl);
        if (nl == 0) {
            bb_err_set(err, "sigv4: empty name in SignedHeaders");
            goto out;
        }
        for (size_t j = 0; j < nl; j++)
            if (isupper((unsigned char)sl[j])) {
                bb_err_set(err, "sigv4: SignedHeaders must be lower-case");
                goto out;
            }
        /* over HTTP/2 the authority is signed as the :authority pseudo-header */
        have_host |= (nl == 4 && memcmp(sl, "host", 4) == 0) ||
                     (nl == 10 && memcmp(sl, ":authority", 10) == 0);
        have_date |= nl == 10 && memcmp(sl, "x-amz-date", 10) == 0;
        sb_add(&ch, sl, nl);
        sb_addc(&ch, ':');
        bool found = false;
        for (size_t i = 0; i < r->n_headers; i++) {
            const struct bb_sigv4_header *x = &r->headers[i];
            if (!lower_eq(x->name, x->name_len, sl, nl))
                continue;
            if (found)
                sb_addc(&ch, ',');
            sb_trimmed(&ch, x->value, x->value_len);
            found = true;
        }
        if (!found) {
            bb_err_set(err, "sigv4: signed header '%.*s' is missing", (int)nl, sl);
            goto out;
        }
        sb_addc(&ch, '\n');
        sl += nl + (e != NULL);
    }
    if (!have_host || !have_date) {
        bb_err_set(err, "sigv4: host and x-amz-date must be signed");
        goto out;
    }
    if (ch.oom) {
        bb_err_set(err, "sigv4: out of memory");
        goto out;
    }
    char expect[65];
    if (signature_for(r->method, r->path, r->query, ch.p, auth->signed_headers, payload_hash,
                      amz_date, auth->region, auth->service, secret_key, expect, err) < 0)
        goto out;
    if (CRYPTO_memcmp(expect, auth->signature, 64) != 0) {
        bb_err_set(err, "sigv4: signature does not match");
        goto out;
    }
    rc = 0;
out:
    free(ch.p);
    return rc;
}
