/*
 * pb: the protocol-buffers wire format, written into a jw buffer (worker/jw.h): varints,
 * fixed64, length-delimited fields, and nested messages whose length is patched in when they
 * close (for OTLP/HTTP protobuf spans, worker/otlp.c). Messages up to 16383 bytes; a longer
 * one marks the buffer full. Any worker module; header-only.
 */
#ifndef BB_PB_H
#define BB_PB_H

#include <stdint.h>
#include <string.h>

#include "worker/jw.h"

enum { PB_VARINT = 0, PB_I64 = 1, PB_LEN = 2 };

/* Bytes of v as a varint. */
static inline size_t pb_varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static inline void pb_varint(struct jw *w, uint64_t v)
{
    if (w->full || w->cap - w->n < pb_varint_len(v)) {
        w->full = true;
        return;
    }
    uint8_t *o = (uint8_t *)w->p + w->n, *start = o; /* straight into the buffer */
    while (v >= 0x80) {
        *o++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *o++ = (uint8_t)v;
    w->n += (size_t)(o - start);
}

static inline void pb_tag(struct jw *w, unsigned field, unsigned wire)
{
    pb_varint(w, (uint64_t)field << 3 | wire);
}

static inline void pb_bytes(struct jw *w, unsigned field, const void *p, size_t n)
{
    pb_tag(w, field, PB_LEN);
    pb_varint(w, n);
    jw_mem(w, p, n);
}

static inline void pb_str(struct jw *w, unsigned field, const char *s)
{
    pb_bytes(w, field, s, strlen(s));
}

static inline void pb_u64(struct jw *w, unsigned field, uint64_t v)
{
    pb_tag(w, field, PB_VARINT);
    pb_varint(w, v);
}

static inline void pb_fixed64(struct jw *w, unsigned field, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    pb_tag(w, field, PB_I64);
    jw_mem(w, b, 8);
}

static inline void pb_double(struct jw *w, unsigned field, double d)
{
    uint64_t v;
    memcpy(&v, &d, sizeof v);
    pb_fixed64(w, field, v);
}

/* Open a nested message (field): its length is written by pb_close(w, the returned mark). */
static inline size_t pb_open(struct jw *w, unsigned field)
{
    pb_tag(w, field, PB_LEN);
    size_t at = w->n;
    jw_mem(w, "\0\0", 2); /* room for a two-byte length */
    return at;
}

static inline void pb_close(struct jw *w, size_t at)
{
    if (w->full)
        return;
    size_t len = w->n - at - 2;
    if (len < 0x80) { /* one length byte: the body moves back by one */
        memmove(w->p + at + 1, w->p + at + 2, len);
        w->p[at] = (char)len;
        w->n--;
    } else if (len < 0x4000) {
        w->p[at] = (char)(len | 0x80);
        w->p[at + 1] = (char)(len >> 7);
    } else {
        w->full = true;
    }
}

#endif
