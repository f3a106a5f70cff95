/*
 * fuzz_sse: libFuzzer target for the event-stream decoder. The input is fed once whole and
 * once split at a point derived from its first byte; both must give the same events (decoded
 * fields and raw bytes), and the raws plus what is still held must be the input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/sse.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

/* Events serialised as length-prefixed fields, to compare two runs byte for byte. */
struct log {
    char *buf;
    size_t len, cap;
    size_t raw_total;
};

static void put(struct log *l, const void *p, size_t n)
{
    if (l->len + n + sizeof n > l->cap) {
        l->cap = (l->len + n + sizeof n) * 2;
        l->buf = realloc(l->buf, l->cap);
        CHECK(l->buf);
    }
    memcpy(l->buf + l->len, &n, sizeof n);
    l->len += sizeof n;
    memcpy(l->buf + l->len, p, n);
    l->len += n;
}

static int on_event(void *arg, const struct bb_sse_event *ev)
{
    struct log *l = arg;
    CHECK(ev->raw_len > 0 && ev->event && ev->data && ev->id);
    put(l, ev->event, ev->event_len);
    put(l, ev->data, ev->data_len);
    put(l, ev->id, ev->id_len);
    put(l, ev->raw, ev->raw_len);
    l->raw_total += ev->raw_len;
    return 0;
}

static int run(const char *p, size_t n, size_t cut, size_t max_frame, struct log *l, size_t *held)
{
    struct bb_sse s;
    bb_sse_init(&s, max_frame);
    int r = bb_sse_feed(&s, p, cut, on_event, l);
    if (r == 0)
        r = bb_sse_feed(&s, p + cut, n - cut, on_event, l);
    *held = s.raw_len;
    CHECK(bb_sse_pending(&s) <= s.raw_len);
    bb_sse_free(&s);
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t cut = (size_t)data[0] * (size - 2) / 255;
    /* small frame limits sometimes, to reach the oversize path */
    size_t max_frame = data[1] & 1 ? (size_t)data[1] * 2 : 0;
    data += 2;
    size -= 2;
    char *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    struct log a = {0}, b = {0};
    size_t ha, hb;
    int ra = run(buf, size, size, max_frame, &a, &ha);
    int rb = run(buf, size, cut, max_frame, &b, &hb);
    CHECK(ra == rb);
    CHECK(a.len == b.len && (a.len == 0 || memcmp(a.buf, b.buf, a.len) == 0));
    if (ra == 0) {
        CHECK(ha == hb);
        CHECK(a.raw_total + ha == size);
    }
    free(a.buf);
    free(b.buf);
    free(buf);
    return 0;
}
