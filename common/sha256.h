/*
 * sha256: SHA-256 through OpenSSL with the digest fetched once per process. OpenSSL 3's
 * implicit fetch (EVP_sha256() handed to EVP_Digest or HMAC) looks the algorithm up on every
 * call, which costs more than hashing a short secret; the hot paths (the key lookup of every
 * governed request, SigV4) use this instead. Any process; not thread-safe on first use (busbar
 * processes are single-threaded).
 */
#ifndef BB_SHA256_H
#define BB_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

/* The fetched SHA-256 (aborts when the library has none: nothing sensible to do). */
const EVP_MD *bb_sha256_md(void);

/* out = SHA-256(p[0..n)). */
void bb_sha256(const void *p, size_t n, uint8_t out[32]);

#endif
