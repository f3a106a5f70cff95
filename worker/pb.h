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

/* Raw writers for a run of fields whose size is known up front: one bounds check
 * (pb_reserve: NULL, and the buffer marked full, when n bytes do not fit), then plain stores,
 * then pb_commit. */
static inline uint8_t *pb_reserve(struct jw *w, size_t n)
{
    if (w->full || w->cap - w->n < n) {
        w->full = true;
        return NULL;
    }
    return (uint8_t *)w->p + w->n;
}

static inline uint8_t *pb_put_varint(uint8_t *o, uint64_t v)
{
    while (v >= 0x80) {
        *o++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *o++ = (uint8_t)v;
    return o;
}

/* A tag of a field below 16 (one byte). */
static inline uint8_t *pb_put_tag(uint8_t *o, unsigned field, unsigned wire)
{
    *o++ = (uint8_t)(field << 3 | wire);
    return o;
}

static inline uint8_t *pb_put_bytes(uint8_t *o, unsigned field, const void *p, size_t n)
{
    o = pb_put_varint(pb_put_tag(o, field, PB_LEN), n);
    memcpy(o, p, n);
    return o + n;
}

static inline uint8_t *pb_put_fixed64(uint8_t *o, unsigned field, uint64_t v)
{
    o = pb_put_tag(o, field, PB_I64);
    for (int i = 0; i < 8; i++)
        *o++ = (uint8_t)(v >> (8 * i));
    return o;
}

static inline void pb_commit(struct jw *w, const uint8_t *end)
{
    w->n = (size_t)(end - (const uint8_t *)w->p);
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
