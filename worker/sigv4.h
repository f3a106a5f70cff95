/*
 * sigv4: AWS Signature Version 4 (header-based, AWS4-HMAC-SHA256): signing busbar's requests
 * to Bedrock, and verifying SigV4-signed client requests (SPEC §3.2, §3.3).
 *
 * Canonicalisation follows the AWS documentation and the AWS SDKs for non-S3 services: the
 * path as sent (already URI-encoded once) is normalised (empty, "." and ".." segments) and each
 * segment is URI-encoded again; the query is decoded and re-encoded pair by pair and sorted;
 * header names are lower-cased and sorted, values trimmed with inner runs of blanks collapsed.
 *
 * Worker process; pure functions (OpenSSL EVP/HMAC SHA-256), no shared state.
 */
#ifndef BB_SIGV4_H
#define BB_SIGV4_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

struct evbuffer;

/* One header of a request: not NUL-terminated; names in any case. */
struct bb_sigv4_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

/* The parts of an HTTP request a signature covers. */
struct bb_sigv4_req {
    const char *method;                    /* "POST" */
    const char *host;                      /* sign: the Host header value (:port when not the
                                              scheme's default); verify: unused (from headers) */
    const char *path;                      /* as sent, already URI-encoded, no query */
    const char *query;                     /* as sent, without '?'; NULL or "" when none */
    const struct bb_sigv4_header *headers; /* sign: extra headers to sign (e.g. content-type);
                                              verify: every header of the request */
    size_t n_headers;
    const void *payload;
    size_t payload_len;
};

struct bb_sigv4_cred {
    const char *access_key;
    const char *secret_key;
    const char *session_token; /* NULL when none */
};

#define BB_SIGV4_CONTENT_SHA256 1u /* also send and sign X-Amz-Content-Sha256 */

/* The result of signing. */
struct bb_sigv4_sig {
    char amz_date[17];  /* "20150830T123600Z" */
    char signature[65]; /* lower-case hex */
};

/* Sign r at unix time now for region/service with c. Appends complete header lines to out:
 * "Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…\r\n",
 * "X-Amz-Date: …\r\n", "X-Amz-Content-Sha256: …\r\n" (with BB_SIGV4_CONTENT_SHA256) and
 * "X-Amz-Security-Token: …\r\n" (with a session token). The signed headers are host,
 * x-amz-date, r->headers, and the last two when sent. sig may be NULL. -1 with err on bad
 * input (missing credential, a header name with a control character) or out of memory. */
int bb_sigv4_sign(const struct bb_sigv4_req *r, const char *region, const char *service,
                  const struct bb_sigv4_cred *c, int64_t now, unsigned flags, struct evbuffer *out,
                  struct bb_sigv4_sig *sig, struct bb_err *err);

/* A parsed "AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request,
 * SignedHeaders=a;b, Signature=hex" header value. */
struct bb_sigv4_auth {
    char access_key[129];
    char date[9]; /* YYYYMMDD */
    char region[64];
    char service[64];
    char signed_headers[1024]; /* lower-case, ';'-separated, as the client listed them */
    char signature[65];
};

/* Parse an Authorization header value. -1 with err when it is not a well-formed SigV4 one. */
int bb_sigv4_parse_auth(const char *value, size_t len, struct bb_sigv4_auth *out,
                        struct bb_err *err);

/* Verify a received request signed as auth says, with the secret of auth->access_key:
 * the signed headers must include host and x-amz-date; x-amz-date must agree with the
 * credential scope's date and lie within max_skew seconds of now; an x-amz-content-sha256
 * header, when sent, must be the body's hash; service must match when not NULL. The signature
 * is recomputed and compared in constant time. 0 = valid; -1 with err saying why not. */
int bb_sigv4_verify(const struct bb_sigv4_req *r, const struct bb_sigv4_auth *auth,
                    const char *secret_key, const char *service, int64_t now, int64_t max_skew,
                    struct bb_err *err);

/* URI-encode s[0..n) the AWS way (unreserved A-Z a-z 0-9 - . _ ~ kept, everything else
 * %XX upper-case; '/' kept when keep_slash) into out (cap bytes, NUL-terminated). Returns the
 * length, or -1 when it does not fit. Also used to build Bedrock request paths. */
int bb_sigv4_uri_encode(const char *s, size_t n, bool keep_slash, char *out, size_t cap);

#endif
