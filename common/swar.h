/*
 * swar: eight bytes at a time in a uint64_t (loaded with memcpy), for the JSON scanner and
 * writer's runs of ordinary string bytes. Header-only; pure functions.
 */
#ifndef BB_SWAR_H
#define BB_SWAR_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define BB_SWAR_ONES 0x0101010101010101ull
#define BB_SWAR_HIGHS 0x8080808080808080ull

/* High bit of each byte of w equal to c. A borrow can also flag bytes after a real hit, never
 * before one: the first flagged byte is always a real one (true of the tests below too). */
static inline uint64_t bb_swar_eq(uint64_t w, unsigned char c)
{
    uint64_t x = w ^ (BB_SWAR_ONES * c);
    return (x - BB_SWAR_ONES) & ~x & BB_SWAR_HIGHS;
}

/* High bit of each byte of w below c (c <= 0x80). */
static inline uint64_t bb_swar_lt(uint64_t w, unsigned char c)
{
    return (w - BB_SWAR_ONES * c) & ~w & BB_SWAR_HIGHS;
}

/* Index (0..7) in memory order of the first byte whose high bit m flags (m != 0). */
static inline unsigned bb_swar_first(uint64_t m)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return (unsigned)__builtin_clzll(m) >> 3;
#else
    return (unsigned)__builtin_ctzll(m) >> 3;
#endif
}

/* The same test sixteen bytes at a time where SSE2 is (every x86-64): bit k of the result is
 * set when p[k] is '"', '\\', below 0x20 or at/above 0x80. One signed compare catches the last
 * two: bytes from 0x80 up are negative. */
#if defined(__SSE2__)
#include <emmintrin.h>
#define BB_SIMD16 1
static inline unsigned bb_simd16_json_special(const void *p)
{
    __m128i v = _mm_loadu_si128((const __m128i *)p);
    __m128i q = _mm_cmpeq_epi8(v, _mm_set1_epi8('"'));
    __m128i b = _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'));
    __m128i c = _mm_cmplt_epi8(v, _mm_set1_epi8(0x20));
    return (unsigned)_mm_movemask_epi8(_mm_or_si128(_mm_or_si128(q, b), c));
}
#endif

/* A JSON string scanner's skip: from b[i], past every block of sixteen (SSE2) or eight bytes
 * that holds no '"', '\\', control or non-ASCII byte. Returns the index of the first such byte
 * of a block, or where fewer than eight bytes remain: the caller looks at the bytes one at a
 * time from there. */
static inline size_t bb_swar_json_skip(const unsigned char *b, size_t len, size_t i)
{
#ifdef BB_SIMD16
    while (len - i >= 16) {
        unsigned m = bb_simd16_json_special(b + i);
        if (m)
            return i + (unsigned)__builtin_ctz(m);
        i += 16;
    }
#endif
    while (len - i >= 8) {
        uint64_t w;
        memcpy(&w, b + i, 8);
        uint64_t m =
            bb_swar_eq(w, '"') | bb_swar_eq(w, '\\') | bb_swar_lt(w, 0x20) | (w & BB_SWAR_HIGHS);
        if (m)
            return i + bb_swar_first(m);
        i += 8;
    }
    return i;
}

/* A JSON string writer's run: the index of the first byte of s[0..n) it must escape ('"',
 * '\\' or a control byte), n when none; plain bytes are passed over eight at a time. */
static inline size_t bb_swar_json_escape_at(const char *s, size_t n)
{
    size_t i = 0;
    for (; n - i >= 8; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        uint64_t m = bb_swar_eq(w, '"') | bb_swar_eq(w, '\\') | bb_swar_lt(w, 0x20);
        if (m)
            return i + bb_swar_first(m);
    }
    for (; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == '"' || c == '\\')
            return i;
    }
    return n;
}

#endif
