/*
 * jw: a small JSON text writer into a fixed buffer, for the records busbar writes once per
 * request (access log, audit, OTLP spans; its byte and number appends also write the response
 * head): literals are copied, strings escaped, numbers converted without printf (which cost a tenth
 * of a worker's CPU at full load when these records were built with it). A record that does not fit
 * is marked full and never written past its buffer. Any worker module; header-only.
 */
#ifndef BB_JW_H
#define BB_JW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/swar.h"

struct jw {
    char *p;
    size_t n, cap;
    bool full;
};

static inline void jw_mem(struct jw *w, const void *s, size_t n)
{
    if (w->full || n > w->cap - w->n) {
        w->full = true;
        return;
    }
    memcpy(w->p + w->n, s, n);
    w->n += n;
}

/* A string literal (its length from the compiler). */
#define jw_lit(w, s) jw_mem((w), (s), sizeof(s) - 1)

static inline void jw_raw(struct jw *w, const char *s)
{
    jw_mem(w, s, strlen(s));
}

/* s[0..n) as a JSON string, quoted and escaped; runs of plain bytes are passed over eight at
 * a time. */
static inline void jw_strn(struct jw *w, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    jw_lit(w, "\"");
    for (;;) {
        size_t k = bb_swar_json_escape_at(s, n);
        jw_mem(w, s, k);
        if (k == n)
            break;
        unsigned char ch = (unsigned char)s[k];
        if (ch == '"' || ch == '\\') {
            char e[2] = {'\\', (char)ch};
            jw_mem(w, e, 2);
        } else {
            char e[6] = {'\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15]};
            jw_mem(w, e, 6);
        }
        s += k + 1;
        n -= k + 1;
    }
    jw_lit(w, "\"");
}

/* s as a JSON string, quoted and escaped. */
static inline void jw_str(struct jw *w, const char *s)
{
    jw_strn(w, s, strlen(s));
}

static inline void jw_u64(struct jw *w, uint64_t v)
{
    static const char d2[] = "000102030405060708091011121314151617181920212223242526272829303132333"
                             "435363738394041424344454647484950515253545556575859606162636465666768"
                             "69707172737475767778798081828384858687888990919293949596979899";
    char b[20];
    size_t i = sizeof b;
    for (; v >= 100; v /= 100) { /* two digits a division */
        const char *d = d2 + 2 * (v % 100);
        b[--i] = d[1];
        b[--i] = d[0];
    }
    if (v >= 10) {
        b[--i] = d2[2 * v + 1];
        b[--i] = d2[2 * v];
    } else {
        b[--i] = (char)('0' + v);
    }
    jw_mem(w, b + i, sizeof b - i);
}

/* v / 10^decimals with exactly that many decimals ("1.005" for 1005, 3). */
static inline void jw_fixed(struct jw *w, uint64_t v, unsigned decimals)
{
    uint64_t scale = 1;
    for (unsigned i = 0; i < decimals; i++)
        scale *= 10;
    jw_u64(w, v / scale);
    char b[20];
    uint64_t frac = v % scale;
    for (unsigned i = decimals; i > 0; i--) {
        b[i - 1] = (char)('0' + frac % 10);
        frac /= 10;
    }
    jw_lit(w, ".");
    jw_mem(w, b, decimals);
}

/* v in lowercase hex, no leading zeros ("0" for 0). */
static inline void jw_x64(struct jw *w, uint64_t v)
{
    static const char hex[] = "0123456789abcdef";
    char b[16];
    size_t i = sizeof b;
    do {
        b[--i] = hex[v & 15];
        v >>= 4;
    } while (v);
    jw_mem(w, b + i, sizeof b - i);
}

/* n bytes as lowercase hex. */
static inline void jw_hex(struct jw *w, const uint8_t *p, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    if (w->full || n > (w->cap - w->n) / 2) {
        w->full = true;
        return;
    }
    char *o = w->p + w->n;
    for (size_t i = 0; i < n; i++) {
        o[2 * i] = hex[p[i] >> 4];
        o[2 * i + 1] = hex[p[i] & 15];
    }
    w->n += 2 * n;
}

#endif
