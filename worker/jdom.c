/*
 * jdom: json-c trees written straight into an evbuffer with json-c's exact bytes (see jdom.h).
 * Worker process; pure functions.
 *
 * json-c's serializer builds the text in a printbuf owned by the root object, a snprintf per
 * number and escape, and the caller copies it out again; here the text goes through a stack
 * buffer flushed to the evbuffer in 4 KiB chunks, strings are passed over eight bytes at a time,
 * integers converted without printf. Doubles are the one exception: json-c keeps a parsed
 * double's original text (json_object_new_double_s) and formats the others its own way, with
 * no accessor for either, so each double is serialised by json-c itself (they are rare).
 */
#include "worker/jdom.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <event2/buffer.h>

#include "common/swar.h"
#include "worker/jw.h"

#define JDOM_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)
#define JDOM_CHUNK 4096

/* ---- write ---- */

struct jdw {
    struct evbuffer *out;
    size_t n;
    int rc;
    char buf[JDOM_CHUNK];
};

static void jdw_flush(struct jdw *w)
{
    if (w->n && evbuffer_add(w->out, w->buf, w->n) != 0)
        w->rc = -1;
    w->n = 0;
}

static inline void jdw_put(struct jdw *w, const char *s, size_t n)
{
    if (n > JDOM_CHUNK - w->n) {
        jdw_flush(w);
        if (n > JDOM_CHUNK / 2) { /* a long run goes in whole, not through the buffer */
            if (evbuffer_add(w->out, s, n) != 0)
                w->rc = -1;
            return;
        }
    }
    memcpy(w->buf + w->n, s, n);
    w->n += n;
}

#define jdw_lit(w, s) jdw_put((w), (s), sizeof(s) - 1)

/* json-c's json_escape_str: \b \t \n \f \r \" \\ by name, other bytes below 0x20 as \u00xx in
 * lowercase hex; '/' (NOSLASHESCAPE), 0x7f and bytes >= 0x80 as they are. */
static void jdw_escape(struct jdw *w, unsigned char c)
{
    static const char hex[] = "0123456789abcdef";
    char e[6] = {'\\', (char)c};
    switch (c) {
    case '\b':
        e[1] = 'b';
        break;
    case '\t':
        e[1] = 't';
        break;
    case '\n':
        e[1] = 'n';
        break;
    case '\f':
        e[1] = 'f';
        break;
    case '\r':
        e[1] = 'r';
        break;
    case '"':
    case '\\':
        break;
    default:
        e[1] = 'u';
        e[2] = '0';
        e[3] = '0';
        e[4] = hex[c >> 4];
        e[5] = hex[c & 15];
        jdw_put(w, e, 6);
        return;
    }
    jdw_put(w, e, 2);
}

/* s[0..n) quoted and escaped; runs of plain bytes are passed over eight at a time. */
static void jdw_str(struct jdw *w, const char *s, size_t n)
{
    const char *run = s, *end = s + n;
    jdw_lit(w, "\"");
    while (s < end) {
        if (end - s >= 8) {
            uint64_t x, m;
            memcpy(&x, s, 8);
            m = bb_swar_eq(x, '"') | bb_swar_eq(x, '\\') | bb_swar_lt(x, 0x20);
            if (!m) {
                s += 8;
                continue;
            }
            s += bb_swar_first(m); /* the byte to escape */
        }
        unsigned char c = (unsigned char)*s;
        if (c >= 0x20 && c != '"' && c != '\\') {
            s++;
            continue;
        }
        jdw_put(w, run, (size_t)(s - run));
        jdw_escape(w, c);
        run = ++s;
    }
    jdw_put(w, run, (size_t)(s - run));
    jdw_lit(w, "\"");
}

/* json-c prints an int64 with PRId64 and a uint64 (only made for values above INT64_MAX) with
 * PRIu64; get_int64 clamps the latter to INT64_MAX, get_uint64 tells it apart. */
static void jdw_int(struct jdw *w, json_object *o)
{
    char b[24];
    struct jw t = {b, 0, sizeof b, false};
    int64_t i = json_object_get_int64(o);
    if (i < 0) {
        jw_lit(&t, "-");
        jw_u64(&t, (uint64_t)0 - (uint64_t)i);
    } else {
        jw_u64(&t, i == INT64_MAX ? json_object_get_uint64(o) : (uint64_t)i);
    }
    jdw_put(w, b, t.n);
}

static void jdw_value(struct jdw *w, json_object *o);

static void jdw_object(struct jdw *w, json_object *o)
{
    bool first = true;
    jdw_lit(w, "{");
    json_object_object_foreach(o, key, val)
    {
        if (!first)
            jdw_lit(w, ",");
        first = false;
        jdw_str(w, key, strlen(key));
        jdw_lit(w, ":");
        jdw_value(w, val);
    }
    jdw_lit(w, "}");
}

static void jdw_array(struct jdw *w, json_object *o)
{
    size_t n = json_object_array_length(o);
    jdw_lit(w, "[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            jdw_lit(w, ",");
        jdw_value(w, json_object_array_get_idx(o, i));
    }
    jdw_lit(w, "]");
}

static void jdw_value(struct jdw *w, json_object *o)
{
    switch (o ? json_object_get_type(o) : json_type_null) {
    case json_type_null:
        jdw_lit(w, "null");
        return;
    case json_type_boolean:
        if (json_object_get_boolean(o))
            jdw_lit(w, "true");
        else
            jdw_lit(w, "false");
        return;
    case json_type_int:
        jdw_int(w, o);
        return;
    case json_type_string:
        jdw_str(w, json_object_get_string(o), (size_t)json_object_get_string_len(o));
        return;
    case json_type_object:
        jdw_object(w, o);
        return;
    case json_type_array:
        jdw_array(w, o);
        return;
    case json_type_double:
    default: {
        size_t n = 0;
        const char *s = json_object_to_json_string_length(o, JDOM_FLAGS, &n);
        if (!s)
            w->rc = -1;
        else
            jdw_put(w, s, n);
        return;
    }
    }
}

int bb_jdom_write(struct evbuffer *out, const char *pre, json_object *o, const char *post)
{
    struct jdw w;
    w.out = out;
    w.n = 0;
    w.rc = 0;
    if (pre)
        jdw_put(&w, pre, strlen(pre));
    jdw_value(&w, o);
    if (post)
        jdw_put(&w, post, strlen(post));
    jdw_flush(&w);
    return w.rc;
}
