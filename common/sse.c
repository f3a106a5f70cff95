/*
 * sse: incremental text/event-stream decoder (WHATWG HTML "event stream interpretation").
 * Any process; one decoder per stream, no shared state, no locking.
 *
 * Bytes are copied line by line into s->raw, the frame in progress, so an event can be handed
 * out both decoded and verbatim. raw covers everything since the previous dispatch: blocks
 * that dispatch nothing (comment-only keep-alives, id-only blocks) are carried into the next
 * event's raw, so a relay that forwards each ev->raw reproduces the input stream exactly.
 * event and id values are kept as offsets into raw; data lines are joined in s->fields.
 *
 * A CR ends a line at once, but a blank line ending in CR is dispatched only when the next
 * byte is known: if it is LF it belongs to this frame's raw (CRLF split across two reads).
 */
#include "common/sse.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum {
    SSE_LINE,     /* scanning a line */
    SSE_AFTER_CR, /* the last byte fed was a CR ending a non-blank line */
    SSE_BLANK_CR, /* the last byte fed was a CR ending a blank line: dispatch pending */
    SSE_ERROR,    /* frame too large or out of memory: sticky */
};

static const unsigned char bom[3] = {0xef, 0xbb, 0xbf};

void bb_sse_init(struct bb_sse *s, size_t max_frame)
{
    memset(s, 0, sizeof *s);
    s->max_frame = max_frame ? max_frame : SIZE_MAX;
    s->state = SSE_LINE;
}

void bb_sse_free(struct bb_sse *s)
{
    free(s->raw);
    free(s->fields);
    s->raw = s->fields = NULL;
    s->raw_len = s->raw_cap = s->fields_len = s->fields_cap = 0;
}

size_t bb_sse_pending(const struct bb_sse *s)
{
    /* Bytes after the last blank line: a stream cut here lost a frame. Carried comment-only
     * blocks already ended properly and are not counted. */
    return s->raw_len - s->block_start;
}

static int grow(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 256;
    while (n < need)
        n *= 2;
    char *p = realloc(*buf, n);
    if (!p)
        return -1;
    *buf = p;
    *cap = n;
    return 0;
}

static int raw_append(struct bb_sse *s, const char *p, size_t n)
{
    if (n > s->max_frame - s->raw_len)
        return -1;
    if (grow(&s->raw, &s->raw_cap, s->raw_len + n) < 0)
        return -1;
    memcpy(s->raw + s->raw_len, p, n);
    s->raw_len += n;
    return 0;
}

/* Interpret one complete non-blank line, raw[b..e). */
static int process_line(struct bb_sse *s, size_t b, size_t e)
{
    const char *l = s->raw + b;
    size_t n = e - b;
    if (l[0] == ':')
        return 0;
    const char *colon = memchr(l, ':', n);
    size_t name_len = colon ? (size_t)(colon - l) : n;
    size_t vb = colon ? name_len + 1 : n;
    if (vb < n && l[vb] == ' ')
        vb++;
    size_t vlen = n - vb;

    if (name_len == 4 && memcmp(l, "data", 4) == 0) {
        if (grow(&s->fields, &s->fields_cap, s->fields_len + vlen + 1) < 0)
            return -1;
        memcpy(s->fields + s->fields_len, l + vb, vlen);
        s->fields_len += vlen;
        s->fields[s->fields_len++] = '\n';
        s->has_data = 1;
    } else if (name_len == 5 && memcmp(l, "event", 5) == 0) {
        s->ev_off = b + vb;
        s->ev_len = vlen;
        s->has_event = 1;
    } else if (name_len == 2 && memcmp(l, "id", 2) == 0) {
        /* WHATWG: an id containing NUL is ignored. */
        if (!memchr(l + vb, '\0', vlen)) {
            s->id_off = b + vb;
            s->id_len = vlen;
        }
    }
    /* retry and unknown fields are ignored */
    return 0;
}

static void reset_block(struct bb_sse *s)
{
    s->has_data = s->has_event = 0;
    s->fields_len = 0;
    s->ev_off = s->ev_len = s->id_off = s->id_len = 0;
    s->block_start = s->raw_len;
}

/* A blank line ended (its terminator is in raw): dispatch or carry the block. */
static int end_block(struct bb_sse *s, bb_sse_cb cb, void *arg)
{
    if (!s->has_data && !s->has_event) {
        reset_block(s);
        return 0;
    }
    struct bb_sse_event ev;
    ev.event = s->raw + s->ev_off;
    ev.event_len = s->ev_len;
    ev.data = s->has_data ? s->fields : "";
    ev.data_len = s->has_data ? s->fields_len - 1 : 0; /* drop the last '\n' */
    ev.id = s->raw + s->id_off;
    ev.id_len = s->id_len;
    ev.raw = s->raw;
    ev.raw_len = s->raw_len;
    if (!s->has_event)
        ev.event = "";
    if (!s->id_len)
        ev.id = "";
    int r = cb ? cb(arg, &ev) : 0;
    s->raw_len = 0;
    s->line_start = 0;
    reset_block(s);
    return r;
}

int bb_sse_feed(struct bb_sse *s, const char *p, size_t n, bb_sse_cb cb, void *arg)
{
    size_t i = 0;
    if (s->state == SSE_ERROR)
        return -1;
    if (n == 0)
        return 0;

    if (s->state == SSE_AFTER_CR || s->state == SSE_BLANK_CR) {
        int blank = s->state == SSE_BLANK_CR;
        s->state = SSE_LINE;
        if (p[0] == '\n') {
            if (raw_append(s, p, 1) < 0)
                goto fail;
            s->line_start = s->raw_len;
            i = 1;
        }
        if (blank) {
            int r = end_block(s, cb, arg);
            if (r)
                return r;
        }
    }

    /* The BOM may itself arrive split; bom_checked counts matched bytes, 3 = settled. */
    while (s->bom_checked < 3 && i < n) {
        if ((unsigned char)p[i] != bom[s->bom_checked]) {
            s->bom_checked = 3; /* the partial match stays in raw as ordinary line bytes */
            break;
        }
        if (raw_append(s, p + i, 1) < 0)
            goto fail;
        i++;
        if (++s->bom_checked == 3)
            s->line_start = s->block_start = s->raw_len;
    }
    if (s->bom_checked < 3)
        return 0;

    while (i < n) {
        /* find the next CR or LF */
        const char *q = p + i;
        size_t left = n - i;
        const char *lf = memchr(q, '\n', left);
        const char *cr = memchr(q, '\r', lf ? (size_t)(lf - q) : left);
        const char *t = cr ? cr : lf;
        size_t seg = t ? (size_t)(t - q) + 1 : left;
        if (raw_append(s, q, seg) < 0)
            goto fail;
        i += seg;
        if (!t)
            break;
        size_t lb = s->line_start, le = s->raw_len - 1;
        if (*t == '\r') {
            if (i == n) {
                s->state = le == lb ? SSE_BLANK_CR : SSE_AFTER_CR;
                s->line_start = s->raw_len;
                if (le > lb && process_line(s, lb, le) < 0)
                    goto fail;
                return 0;
            }
            if (p[i] == '\n') {
                if (raw_append(s, p + i, 1) < 0)
                    goto fail;
                i++;
            }
        }
        s->line_start = s->raw_len;
        if (le == lb) {
            int r = end_block(s, cb, arg);
            if (r)
                return r;
        } else if (process_line(s, lb, le) < 0) {
            goto fail;
        }
    }
    return 0;
fail:
    s->state = SSE_ERROR;
    return -1;
}
