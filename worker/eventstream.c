/*
 * eventstream: AWS event-stream framing codec (see eventstream.h for the wire format).
 * Worker process; one decoder per stream, no shared state, no locking.
 *
 * The decoder parses straight out of the caller's bytes whenever a whole message is there and
 * copies only a message split across reads into its own buffer, so the common case (a read
 * holding whole messages) costs no copy. Lengths are trusted only after the prelude CRC has
 * checked, so a corrupt length cannot make the decoder wait for, or allocate, gigabytes.
 */
#include "worker/eventstream.h"

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "common/crc32.h"
#include "worker/proto.h"

#define HEADER_VALUE_MAX 32767u /* what the AWS SDKs accept for a string/bytes header value */

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint16_t get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint64_t get_u64(const uint8_t *p)
{
    return (uint64_t)get_u32(p) << 32 | get_u32(p + 4);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

int bb_eventstream_header_next(const uint8_t *hdrs, size_t len, size_t *off,
                               struct bb_eventstream_header *h)
{
    size_t o = *off;
    if (o >= len)
        return 0;
    size_t nl = hdrs[o++];
    if (nl == 0 || nl > len - o)
        return -1;
    memset(h, 0, sizeof *h);
    h->name = (const char *)hdrs + o;
    h->name_len = nl;
    o += nl;
    if (o >= len)
        return -1;
    h->type = (enum bb_eventstream_type)hdrs[o++];
    size_t need;
    switch (h->type) {
    case BB_ES_TRUE:
    case BB_ES_FALSE:
        h->num = h->type == BB_ES_TRUE;
        need = 0;
        break;
    case BB_ES_BYTE:
        need = 1;
        break;
    case BB_ES_SHORT:
        need = 2;
        break;
    case BB_ES_INT:
        need = 4;
        break;
    case BB_ES_LONG:
    case BB_ES_TIMESTAMP:
        need = 8;
        break;
    case BB_ES_UUID:
        need = 16;
        break;
    case BB_ES_BYTES:
    case BB_ES_STRING:
        if (len - o < 2)
            return -1;
        need = get_u16(hdrs + o);
        o += 2;
        break;
    default:
        return -1;
    }
    if (need > len - o)
        return -1;
    const uint8_t *v = hdrs + o;
    switch (h->type) {
    case BB_ES_BYTE:
        h->num = (int8_t)v[0];
        break;
    case BB_ES_SHORT:
        h->num = (int16_t)get_u16(v);
        break;
    case BB_ES_INT:
        h->num = (int32_t)get_u32(v);
        break;
    case BB_ES_LONG:
    case BB_ES_TIMESTAMP:
        h->num = (int64_t)get_u64(v);
        break;
    case BB_ES_BYTES:
    case BB_ES_STRING:
    case BB_ES_UUID:
        h->val = v;
        h->val_len = need;
        break;
    default:
        break;
    }
    *off = o + need;
    return 1;
}

static bool name_is(const struct bb_eventstream_header *h, const char *name)
{
    size_t n = strlen(name);
    return h->name_len == n && memcmp(h->name, name, n) == 0;
}

static void take_string(const struct bb_eventstream_header *h, const char **s, size_t *len)
{
    if (h->type == BB_ES_STRING) {
        *s = (const char *)h->val;
        *len = h->val_len;
    }
}

int bb_eventstream_parse(const uint8_t *p, size_t n, size_t max_message,
                         struct bb_eventstream_msg *m, size_t *used, const char **why)
{
    if (n < BB_EVENTSTREAM_PRELUDE_LEN)
        return 0;
    if (!max_message)
        max_message = BB_EVENTSTREAM_DEFAULT_MAX;
    if (bb_crc32(0, p, 8) != get_u32(p + 8)) {
        *why = "event stream prelude CRC mismatch";
        return -1;
    }
    uint32_t total = get_u32(p), hlen = get_u32(p + 4);
    if (total < BB_EVENTSTREAM_MIN_LEN || hlen > total - BB_EVENTSTREAM_MIN_LEN) {
        *why = "event stream message has inconsistent lengths";
        return -1;
    }
    if (total > max_message) {
        *why = "event stream message exceeds the size limit";
        return -1;
    }
    if (n < total)
        return 0;
    if (bb_crc32(0, p, total - 4) != get_u32(p + total - 4)) {
        *why = "event stream message CRC mismatch";
        return -1;
    }
    memset(m, 0, sizeof *m);
    m->message_type = m->event_type = m->content_type = m->error_message = "";
    m->headers = p + BB_EVENTSTREAM_PRELUDE_LEN;
    m->headers_len = hlen;
    m->payload = m->headers + hlen;
    m->payload_len = total - BB_EVENTSTREAM_MIN_LEN - hlen;
    m->raw = p;
    m->raw_len = total;

    const char *exc = NULL, *code = NULL;
    size_t exc_len = 0, code_len = 0;
    struct bb_eventstream_header h;
    size_t off = 0;
    int r;
    while ((r = bb_eventstream_header_next(m->headers, hlen, &off, &h)) == 1) {
        if (name_is(&h, ":message-type"))
            take_string(&h, &m->message_type, &m->message_type_len);
        else if (name_is(&h, ":event-type"))
            take_string(&h, &m->event_type, &m->event_type_len);
        else if (name_is(&h, ":exception-type"))
            take_string(&h, &exc, &exc_len);
        else if (name_is(&h, ":error-code"))
            take_string(&h, &code, &code_len);
        else if (name_is(&h, ":content-type"))
            take_string(&h, &m->content_type, &m->content_type_len);
        else if (name_is(&h, ":error-message"))
            take_string(&h, &m->error_message, &m->error_message_len);
    }
    if (r < 0) {
        *why = "event stream message has malformed headers";
        return -1;
    }
    bool is_exc = m->message_type_len == 9 && memcmp(m->message_type, "exception", 9) == 0;
    bool is_err = m->message_type_len == 5 && memcmp(m->message_type, "error", 5) == 0;
    if (is_exc && exc) {
        m->event_type = exc;
        m->event_type_len = exc_len;
    } else if (is_err && code) {
        m->event_type = code;
        m->event_type_len = code_len;
    }
    m->exception = is_exc || is_err;
    *used = total;
    return 1;
}

void bb_eventstream_init(struct bb_eventstream *d, size_t max_message)
{
    memset(d, 0, sizeof *d);
    d->max_message = max_message ? max_message : BB_EVENTSTREAM_DEFAULT_MAX;
}

void bb_eventstream_free(struct bb_eventstream *d)
{
    free(d->buf);
    d->buf = NULL;
    d->len = d->cap = 0;
}

size_t bb_eventstream_pending(const struct bb_eventstream *d)
{
    return d->len;
}

static int fail(struct bb_eventstream *d, const char *why)
{
    d->failed = true;
    d->error = why;
    d->len = 0;
    return -1;
}

/* Append to the partial message; the caller bounds n by the message's validated length. */
static int buffer_append(struct bb_eventstream *d, const uint8_t *p, size_t n)
{
    if (d->len + n > d->cap) {
        size_t c = d->cap ? d->cap : 1024;
        while (c < d->len + n)
            c *= 2;
        uint8_t *b = realloc(d->buf, c);
        if (!b)
            return -1;
        d->buf = b;
        d->cap = c;
    }
    memcpy(d->buf + d->len, p, n);
    d->len += n;
    return 0;
}

int bb_eventstream_feed(struct bb_eventstream *d, const void *data, size_t n, bb_eventstream_cb cb,
                        void *arg)
{
    const uint8_t *p = data;
    struct bb_eventstream_msg m;
    const char *why = NULL;
    size_t used;
    if (d->failed)
        return -1;
    while (n > 0) {
        if (d->len == 0) {
            /* Nothing carried over: parse in place. */
            int r = bb_eventstream_parse(p, n, d->max_message, &m, &used, &why);
            if (r < 0)
                return fail(d, why);
            if (r == 0) {
                /* parse validated the length (n >= 12) or n < 12: the tail is bounded. */
                if (buffer_append(d, p, n) < 0)
                    return fail(d, "out of memory buffering an event stream message");
                return 0;
            }
            p += used;
            n -= used;
            int rc = cb(arg, &m);
            if (rc)
                return rc;
            continue;
        }
        size_t want = d->len < BB_EVENTSTREAM_PRELUDE_LEN ? BB_EVENTSTREAM_PRELUDE_LEN - d->len
                                                          : get_u32(d->buf) - d->len;
        size_t take = want < n ? want : n;
        if (buffer_append(d, p, take) < 0)
            return fail(d, "out of memory buffering an event stream message");
        p += take;
        n -= take;
        int r = bb_eventstream_parse(d->buf, d->len, d->max_message, &m, &used, &why);
        if (r < 0)
            return fail(d, why);
        if (r == 1) {
            int rc = cb(arg, &m);
            d->len = 0;
            if (rc)
                return rc;
        }
    }
    return 0;
}

void bb_eventstream_to_frame(const struct bb_eventstream_msg *m, struct bb_frame *f)
{
    f->event = m->event_type;
    f->event_len = m->event_type_len;
    f->data = (const char *)m->payload;
    f->data_len = m->payload_len;
    if (!m->payload_len && m->error_message_len) {
        /* message-type error carries its text in :error-message, not the payload */
        f->data = m->error_message;
        f->data_len = m->error_message_len;
    }
    f->exception = m->exception;
}

int bb_eventstream_write(struct evbuffer *out, const char *const *names, const char *const *values,
                         size_t n_headers, const void *payload, size_t payload_len)
{
    size_t hlen = 0;
    for (size_t i = 0; i < n_headers; i++) {
        size_t nl = strlen(names[i]), vl = strlen(values[i]);
        if (nl == 0 || nl > 255 || vl > HEADER_VALUE_MAX)
            return -1;
        hlen += 1 + nl + 1 + 2 + vl;
    }
    if (payload_len > UINT32_MAX - BB_EVENTSTREAM_MIN_LEN - hlen)
        return -1;
    size_t total = BB_EVENTSTREAM_MIN_LEN + hlen + payload_len;
    struct evbuffer_iovec v;
    if (evbuffer_reserve_space(out, (ev_ssize_t)total, &v, 1) != 1 || v.iov_len < total)
        return -1;
    uint8_t *b = v.iov_base, *w = b + BB_EVENTSTREAM_PRELUDE_LEN;
    put_u32(b, (uint32_t)total);
    put_u32(b + 4, (uint32_t)hlen);
    put_u32(b + 8, bb_crc32(0, b, 8));
    for (size_t i = 0; i < n_headers; i++) {
        size_t nl = strlen(names[i]), vl = strlen(values[i]);
        *w++ = (uint8_t)nl;
        memcpy(w, names[i], nl);
        w += nl;
        *w++ = BB_ES_STRING;
        *w++ = (uint8_t)(vl >> 8);
        *w++ = (uint8_t)vl;
        memcpy(w, values[i], vl);
        w += vl;
    }
    if (payload_len)
        memcpy(w, payload, payload_len);
    w += payload_len;
    put_u32(w, bb_crc32(0, b, total - 4));
    v.iov_len = total;
    return evbuffer_commit_space(out, &v, 1) == 0 ? 0 : -1;
}

int bb_eventstream_write_event(struct evbuffer *out, const char *event_type, const void *json,
                               size_t json_len)
{
    /* The order AWS itself sends them in; the SDKs do not depend on it. */
    static const char *const names[] = {":event-type", ":content-type", ":message-type"};
    const char *values[] = {event_type, "application/json", "event"};
    return bb_eventstream_write(out, names, values, 3, json, json_len);
}

int bb_eventstream_write_exception(struct evbuffer *out, const char *exception_type,
                                   const void *json, size_t json_len)
{
    static const char *const names[] = {":exception-type", ":content-type", ":message-type"};
    const char *values[] = {exception_type, "application/json", "exception"};
    return bb_eventstream_write(out, names, values, 3, json, json_len);
}
