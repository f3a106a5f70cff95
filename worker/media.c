/*
 * media: data: URLs and base64 for inline media (see media.h); base64 is OpenSSL's.
 * Worker process; pure functions.
 */
#include "worker/media.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

bool bb_media_split_data_url(const char *u, size_t n, struct bb_ir_str *media_type,
                             struct bb_ir_str *data)
{
    if (!u || n < 5 || strncasecmp(u, "data:", 5) != 0)
        return false;
    const char *comma = memchr(u, ',', n);
    if (!comma)
        return false;
    const char *meta = u + 5;
    size_t meta_len = (size_t)(comma - meta);
    if (meta_len < 7 || strncasecmp(comma - 7, ";base64", 7) != 0)
        return false;
    const char *semi = memchr(meta, ';', meta_len);
    media_type->p = (char *)meta;
    media_type->len = (size_t)(semi - meta);
    data->p = (char *)comma + 1;
    data->len = n - (size_t)(comma + 1 - u);
    return true;
}

struct bb_ir_str bb_media_data_url(struct bb_arena *a, const struct bb_ir_str *media_type,
                                   const char *fallback, const struct bb_ir_str *data)
{
    const char *mt = bb_ir_has(media_type) ? media_type->p : fallback;
    size_t ml = bb_ir_has(media_type) ? media_type->len : strlen(fallback);
    size_t dl = data && data->p ? data->len : 0;
    struct bb_ir_str r = {bb_arena_alloc(a, 5 + ml + 8 + dl + 1), 5 + ml + 8 + dl};
    if (!r.p)
        return (struct bb_ir_str){NULL, 0};
    memcpy(r.p, "data:", 5);
    memcpy(r.p + 5, mt, ml);
    memcpy(r.p + 5 + ml, ";base64,", 8);
    if (dl)
        memcpy(r.p + 13 + ml, data->p, dl);
    r.p[r.len] = '\0';
    return r;
}

struct bb_ir_str bb_media_b64_encode(struct bb_arena *a, const char *src, size_t n)
{
    struct bb_ir_str r = {NULL, 0};
    if (n > (size_t)(1u << 30))
        return r;
    char *o = bb_arena_alloc(a, (n + 2) / 3 * 4 + 1);
    if (!o)
        return r;
    int len = EVP_EncodeBlock((unsigned char *)o, (const unsigned char *)(src ? src : ""), (int)n);
    r.p = o;
    r.len = len > 0 ? (size_t)len : 0;
    o[r.len] = '\0';
    return r;
}

int bb_media_b64_decode(struct bb_arena *a, const struct bb_ir_str *s, struct bb_ir_str *out)
{
    if (s->len > (size_t)(1u << 30))
        return -1;
    /* OpenSSL wants whole quads without whitespace: strip it, then restore the padding */
    char *in = bb_arena_alloc(a, s->len + 4);
    char *o = bb_arena_alloc(a, s->len / 4 * 3 + 4);
    if (!in || !o)
        return -1;
    size_t n = 0, pad = 0;
    for (size_t i = 0; i < s->len; i++) {
        unsigned char c = (unsigned char)s->p[i];
        if (isspace(c))
            continue;
        if (c == '=') {
            pad++;
            continue;
        }
        if (pad || !(isalnum(c) || c == '+' || c == '/'))
            return -1;
        in[n++] = (char)c;
    }
    if (pad > 2 || n % 4 == 1)
        return -1;
    size_t fill = (4 - n % 4) % 4;
    for (size_t i = 0; i < fill; i++)
        in[n++] = '=';
    int len = EVP_DecodeBlock((unsigned char *)o, (const unsigned char *)in, (int)n);
    if (len < 0)
        return -1;
    out->p = o;
    out->len = (size_t)len - fill;
    o[out->len] = '\0';
    return 0;
}
