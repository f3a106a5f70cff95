/*
 * auth: who is calling (SPEC §3.2, §6). Finds the client's credential in the carriers in SPEC
 * order (Authorization: Bearer, then the modules' key headers — x-api-key, x-goog-api-key —,
 * the ingress module's query parameter — Gemini's ?key= —; on routes whose module names a
 * SigV4 service — Bedrock's — also a SigV4 Authorization header, verified against the key's
 * AWS pair within ±300 s; see client_key_* in worker/proto.h) and
 * checks it against auth.mode: keys (virtual keys in shared memory), token (static client
 * tokens, compared in constant time over SHA-256), passthrough (the credential is the
 * provider key, forwarded upstream) or none. Every failure is the same opaque 401; the
 * reason only goes to the debug log.
 * Worker process; no I/O.
 */
#ifndef BB_AUTH_H
#define BB_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/keys_shm.h"

struct bb_request;
struct bb_sigv4_auth;
struct bb_worker;

/* What authentication established about a request. */
struct bb_auth {
    bool has_key; /* auth.mode keys: the caller's virtual key */
    struct bb_keys_ref key;
    const char *passthrough;     /* auth.mode passthrough: the caller's credential (arena), the
                                    provider key of every upstream attempt */
    struct bb_sigv4_auth *sigv4; /* a SigV4 credential whose key was found on the head; the
                                    signature (it covers the body) is still to be checked */
};

/* Per-worker state (the client tokens' digests). -1 on OOM. */
int bb_auth_init(struct bb_worker *w);
void bb_auth_free(struct bb_worker *w);

/* Authenticate req on its head. 0 = let through (out filled; when out->sigv4 is set the
 * signature is still to be verified with bb_auth_check_body once the body arrived); -1 =
 * refused: the caller answers 401. */
int bb_auth_check(struct bb_request *req, struct bb_auth *out);

/* Verify the SigV4 signature bb_auth_check found, now that req->body is complete (the
 * signature covers the payload hash). 0 = valid (out->has_key set, out->sigv4 cleared);
 * -1 = refused: the caller answers 401. */
int bb_auth_check_body(struct bb_request *req, struct bb_auth *out);

/* The message of the one 401 (never says which part was wrong). */
#define BB_AUTH_DENIED_MSG "invalid or missing API key"

#endif
