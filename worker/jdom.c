/*
 * jdom: json-c trees written straight into an evbuffer (and read, see bb_jdom_parse) with
 * json-c's exact bytes (see jdom.h). Worker process; pure functions.
 *
 * json-c's serializer builds the text in a printbuf owned by the root object, a snprintf per
 * number and escape, and the caller copies it out again; here the text goes through a stack
 * buffer flushed to the evbuffer in 4 KiB chunks, strings are passed over eight bytes at a time,
 * integers converted without printf. Doubles are the one exception: json-c keeps a parsed
 * double's original text (json_object_new_double_s) and formats the others its own way, with
 * no accessor for either, so each double is serialised by json-c itself (they are rare).
 */
#include "worker/jdom.h"

#include <locale.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "common/jscan.h"
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
    jdw_lit(w, "\"");
    for (;;) {
        size_t k = bb_swar_json_escape_at(s, n);
        jdw_put(w, s, k);
        if (k == n)
            break;
        jdw_escape(w, (unsigned char)s[k]);
        s += k + 1;
        n -= k + 1;
    }
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

/* ---- parse ---- */

/* One pass over the text, building the tree as json-c's strict tokener would: the same
 * validation as bb_jscan_value (common/jscan.c), the same number classes and double text, keys
 * that stop at an embedded NUL (json-c strdup()s them), the last of duplicate keys in the
 * first one's place (json_object_object_add). Anything else it declines, and the caller's
 * reference path decides. */

struct jp {
    const char *p, *end;
    int depth, max_depth;
};

/* Bytes of a decoded escaped string live here between the decode and json-c's copy. */
static _Thread_local char *jp_scratch;
static _Thread_local size_t jp_scratch_cap;

static inline void jp_ws(struct jp *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\n' || *j->p == '\r' || *j->p == '\t'))
        j->p++;
}

/* *j->p is '"'. Validates the string and moves past it; [*s, *s + *n) is its raw body and *esc
 * tells whether it holds escapes (then the body needs bb_jscan_decode). */
static int jp_scan_string(struct jp *j, const char **s, size_t *n, bool *esc)
{
    const unsigned char *b = (const unsigned char *)j->p + 1, *end = (const unsigned char *)j->end;
    *s = (const char *)b;
    *esc = false;
    for (;;) {
        b += bb_swar_json_skip(b, (size_t)(end - b), 0);
        if (b >= end)
            return -1;
        unsigned c = *b;
        if (c == '"')
            break;
        if (c == '\\') {
            *esc = true;
            if (end - b < 2)
                return -1;
            if (bb_jscan_short_escape(b[1])) {
                b += 2;
                continue;
            }
            if (b[1] != 'u')
                return -1;
            int cp = end - b >= 6 ? bb_jscan_hex4((const char *)b + 2) : -1;
            if (cp < 0 || (cp >= 0xdc00 && cp <= 0xdfff))
                return -1;
            b += 6;
            if (cp >= 0xd800 && cp <= 0xdbff) {
                int lo = end - b >= 6 && b[0] == '\\' && b[1] == 'u'
                             ? bb_jscan_hex4((const char *)b + 2)
                             : -1;
                if (lo < 0xdc00 || lo > 0xdfff)
                    return -1;
                b += 6;
            }
            continue;
        }
        if (c < 0x20)
            return -1;
        if (c < 0x80) {
            b++;
            continue;
        }
        size_t u = bb_jscan_utf8_len(b, (size_t)(end - b));
        if (!u)
            return -1;
        b += u;
    }
    *n = (size_t)((const char *)b - *s);
    j->p = (const char *)b + 1;
    return 0;
}

static bool jp_scratch_fit(size_t n)
{
    if (n <= jp_scratch_cap)
        return true;
    size_t cap = n < 256 ? 256 : n;
    char *p = realloc(jp_scratch, cap);
    if (!p)
        return false;
    jp_scratch = p;
    jp_scratch_cap = cap;
    return true;
}

static int jp_string(struct jp *j, json_object **out)
{
    const char *s;
    size_t n;
    bool esc;
    if (jp_scan_string(j, &s, &n, &esc) < 0 || n > INT32_MAX)
        return -1;
    if (esc) {
        if (!jp_scratch_fit(n))
            return -1;
        n = (size_t)bb_jscan_decode(s, n, jp_scratch, n); /* fits: it never grows */
        s = jp_scratch;
    }
    *out = json_object_new_string_len(s, (int)n);
    return *out ? 0 : -1;
}

static int jp_number(struct jp *j, json_object **out)
{
    const char *b = j->p, *p = b, *end = j->end;
    bool neg = false, dbl = false;
    if (*p == '-') {
        neg = true;
        p++;
    }
    if (p >= end || *p < '0' || *p > '9')
        return -1;
    const char *digits = p;
    if (*p == '0') {
        p++;
        if (p < end && *p >= '0' && *p <= '9')
            return -1; /* leading zero */
    } else {
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    size_t nd = (size_t)(p - digits);
    if (p < end && *p == '.') {
        dbl = true;
        p++;
        if (p >= end || *p < '0' || *p > '9')
            return -1;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        dbl = true;
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p >= end || *p < '0' || *p > '9')
            return -1;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    j->p = p;
    size_t len = (size_t)(p - b);
    if (!dbl && nd <= 18) { /* fits an int64 whatever the digits: no saturation to mimic */
        int64_t v = 0;
        for (const char *d = digits; d < p; d++)
            v = v * 10 + (*d - '0');
        *out = json_object_new_int64(neg ? -v : v);
        return *out ? 0 : -1;
    }
    /* json-c's own conversions on a NUL-terminated copy: strtod for a double (kept with its
     * text), strtoll for a negative integer and strtoull for the others, both saturating. */
    char sbuf[64], *t = len < sizeof sbuf ? sbuf : malloc(len + 1);
    if (!t)
        return -1;
    memcpy(t, b, len);
    t[len] = '\0';
    if (dbl) {
        /* in the C locale whatever the process's is, as json-c's tokener does (a locale with a
         * decimal comma would read "1.5" as 1) */
        static locale_t c_numeric;
        if (!c_numeric)
            c_numeric = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
        double d = c_numeric ? strtod_l(t, NULL, c_numeric) : strtod(t, NULL);
        *out = json_object_new_double_s(d, t);
    } else if (neg) {
        *out = json_object_new_int64((int64_t)strtoll(t, NULL, 10));
    } else {
        unsigned long long u = strtoull(t, NULL, 10);
        *out = u <= INT64_MAX ? json_object_new_int64((int64_t)u) : json_object_new_uint64(u);
    }
    if (t != sbuf)
        free(t);
    return *out ? 0 : -1;
}

static int jp_value(struct jp *j, json_object **out);

/* j->p is past '{' or '['. */
static int jp_container(struct jp *j, bool object, json_object **out)
{
    /* json-c refuses any value inside max_depth containers; at that depth the reference path
     * decides */
    if (++j->depth >= j->max_depth)
        return -1;
    json_object *c = object ? json_object_new_object() : json_object_new_array();
    *out = c;
    if (!c)
        return -1;
    jp_ws(j);
    if (j->p < j->end && *j->p == (object ? '}' : ']')) {
        j->p++;
        j->depth--;
        return 0;
    }
    for (;;) {
        json_object *v = NULL;
        if (!object) {
            if (jp_value(j, &v) < 0 || json_object_array_add(c, v) != 0) {
                json_object_put(v);
                return -1;
            }
        } else {
            const char *s;
            size_t n;
            bool esc;
            char kbuf[256], *k = kbuf;
            if (j->p >= j->end || *j->p != '"' || jp_scan_string(j, &s, &n, &esc) < 0)
                return -1;
            if (n >= sizeof kbuf && !(k = malloc(n + 1)))
                return -1;
            n = esc ? (size_t)bb_jscan_decode(s, n, k, n) : (memcpy(k, s, n), n);
            k[n] = '\0';
            jp_ws(j);
            int rc = -1;
            if (j->p < j->end && *j->p == ':') {
                j->p++;
                rc = jp_value(j, &v);
                /* the key up to a NUL, as json-c's strdup() of it; the last duplicate wins */
                if (rc == 0)
                    rc = json_object_object_add_ex(c, k, v, 0);
                if (rc != 0)
                    json_object_put(v);
            }
            if (k != kbuf)
                free(k);
            if (rc != 0)
                return -1;
        }
        jp_ws(j);
        if (j->p >= j->end)
            return -1;
        if (*j->p == ',') { /* a trailing comma fails as the member or value it lacks */
            j->p++;
            jp_ws(j);
            continue;
        }
        if (*j->p != (object ? '}' : ']'))
            return -1;
        j->p++;
        j->depth--;
        return 0;
    }
}

static int jp_literal(struct jp *j, const char *lit, size_t n)
{
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, lit, n) != 0)
        return -1;
    j->p += n;
    return 0;
}

/* One value at j->p (after whitespace); *out is set before any failure so the caller can put
 * what was built. */
static int jp_value(struct jp *j, json_object **out)
{
    *out = NULL;
    jp_ws(j);
    if (j->p >= j->end)
        return -1;
    switch (*j->p) {
    case '{':
        j->p++;
        return jp_container(j, true, out);
    case '[':
        j->p++;
        return jp_container(j, false, out);
    case '"':
        return jp_string(j, out);
    case 't':
        if (jp_literal(j, "true", 4) < 0)
            return -1;
        *out = json_object_new_boolean(1);
        return *out ? 0 : -1;
    case 'f':
        if (jp_literal(j, "false", 5) < 0)
            return -1;
        *out = json_object_new_boolean(0);
        return *out ? 0 : -1;
    case 'n':
        return jp_literal(j, "null", 4);
    default:
        return jp_number(j, out);
    }
}

int bb_jdom_parse(const char *p, size_t len, int max_depth, json_object **out)
{
    struct jp j = {p, p + len, 0, max_depth};
    json_object *o = NULL;
    int rc = p ? jp_value(&j, &o) : -1;
    if (rc == 0) {
        jp_ws(&j);
        if (j.p != j.end)
            rc = -1; /* trailing data */
    }
    if (jp_scratch_cap > 65536) { /* a huge escaped string does not stay with the thread */
        free(jp_scratch);
        jp_scratch = NULL;
        jp_scratch_cap = 0;
    }
    if (rc != 0) {
        json_object_put(o);
        o = NULL;
    }
    *out = o;
    return rc;
}
