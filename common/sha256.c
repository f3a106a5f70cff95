/*
 * sha256: see sha256.h.
 */
#include "common/sha256.h"

#include <stdlib.h>

const EVP_MD *bb_sha256_md(void)
{
    static EVP_MD *md;
    if (!md && !(md = EVP_MD_fetch(NULL, "SHA256", NULL)))
        abort();
    return md;
}

void bb_sha256(const void *p, size_t n, uint8_t out[32])
{
    /* One context, reinitialised per digest: EVP_Digest allocates, cleanses and frees one on
     * every call, a third of the cost of hashing a key. */
    static EVP_MD_CTX *ctx;
    unsigned int len = 0;
    if ((!ctx && !(ctx = EVP_MD_CTX_new())) || !EVP_DigestInit_ex2(ctx, bb_sha256_md(), NULL) ||
        !EVP_DigestUpdate(ctx, n ? p : "", n) || !EVP_DigestFinal_ex(ctx, out, &len) || len != 32)
        abort();
}
