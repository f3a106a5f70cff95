/*
 * jscan: validating single-pass JSON scanner (RFC 8259, nothing more) that reports where
 * requested top-level members of an object are, so the same-protocol path can read and rewrite
 * `model`/`stream` without a DOM. Any process; pure functions, no allocation, no locking.
 *
 * Request bodies are mostly string bytes (prompts), so strings are skipped eight bytes at a
 * time while a word holds no quote, backslash, control or non-ASCII byte. Nesting is tracked
 * on a small fixed stack instead of recursion so hostile depth cannot grow the C stack.
 */
#include "common/jscan.h"

#include <stdint.h>
#include <string.h>

#include "common/swar.h"

#define JSCAN_MAX_DEPTH 1024 /* hard cap on max_depth: the nesting stack lives on the C stack */

struct scan {
    const char *buf;
    size_t len;
    struct bb_err *err;
};

#define JSCAN_KEYS_FAST 16 /* requested fields whose key lengths are taken once per scan */

static int fail(struct scan *sc, const char *what, size_t at)
{
    return bb_err_set(sc->err, "%s at byte %zu", what, at);
}

static inline size_t skip_ws(const struct scan *sc, size_t i)
{
    /* compact JSON (what SDKs send) has no whitespace between tokens: one test */
    if (i < sc->len && (unsigned char)sc->buf[i] > ' ')
        return i;
    while (i < sc->len) {
        char c = sc->buf[i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        i++;
    }
    return i;
}

int bb_jscan_hex4(const char *p)
{
    int v = 0;
    for (int k = 0; k < 4; k++) {
        char c = p[k];
        int d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* Length of the well-formed UTF-8 sequence at p (Unicode Table 3-7: no overlongs, no
 * surrogates, nothing above U+10FFFF), 0 when ill-formed. */
size_t bb_jscan_utf8_len(const unsigned char *p, size_t avail)
{
    unsigned c = p[0];
    size_t n;
    unsigned lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
    } else {
        return 0;
    }
    if (avail < n || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t k = 2; k < n; k++) {
        if (p[k] < 0x80 || p[k] > 0xbf)
            return 0;
    }
    return n;
}

/* buf[pos] is '"'. Validates the string; *end = index after the closing quote, *esc = it had
 * a backslash (so its bytes differ from its value). */
static int scan_string(struct scan *sc, size_t pos, size_t *end, bool *esc)
{
    const unsigned char *b = (const unsigned char *)sc->buf;
    size_t len = sc->len, i = pos + 1;
    *esc = false;
    for (;;) {
        i = bb_swar_json_skip(b, len, i); /* straight to a special byte, or near the end */
        if (i >= len)
            return fail(sc, "unterminated string starting", pos);
        unsigned c = b[i];
        if (c == '"') {
            *end = i + 1;
            return 0;
        }
        if (c == '\\') {
            *esc = true;
            if (++i >= len)
                return fail(sc, "unterminated string starting", pos);
            if (bb_jscan_short_escape(b[i])) {
                i++;
                continue;
            }
            if (b[i] != 'u')
                return fail(sc, "invalid escape", i - 1);
            int cp = len - i >= 5 ? bb_jscan_hex4(sc->buf + i + 1) : -1;
            if (cp < 0)
                return fail(sc, "invalid \\u escape", i - 1);
            i += 5;
            if (cp >= 0xdc00 && cp <= 0xdfff)
                return fail(sc, "unpaired low surrogate escape", i - 6);
            if (cp >= 0xd800 && cp <= 0xdbff) {
                int lo = len - i >= 6 && b[i] == '\\' && b[i + 1] == 'u'
                             ? bb_jscan_hex4(sc->buf + i + 2)
                             : -1;
                if (lo < 0xdc00 || lo > 0xdfff)
                    return fail(sc, "unpaired high surrogate escape", i - 6);
                i += 6;
            }
            continue;
        }
        if (c < 0x20)
            return fail(sc, "control character in string", i);
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n = bb_jscan_utf8_len(b + i, len - i);
        if (n == 0)
            return fail(sc, "invalid UTF-8", i);
        i += n;
    }
}

static int scan_number(struct scan *sc, size_t i, size_t *end)
{
    const char *b = sc->buf;
    size_t len = sc->len, start = i;
    if (b[i] == '-')
        i++;
    if (i >= len || b[i] < '0' || b[i] > '9')
        return fail(sc, "invalid number", start);
    if (b[i] == '0') {
        i++;
        if (i < len && b[i] >= '0' && b[i] <= '9')
            return fail(sc, "leading zero in number", start);
    } else {
        while (i < len && b[i] >= '0' && b[i] <= '9')
            i++;
    }
    if (i < len && b[i] == '.') {
        i++;
        if (i >= len || b[i] < '0' || b[i] > '9')
            return fail(sc, "expected a digit after the decimal point", i);
        while (i < len && b[i] >= '0' && b[i] <= '9')
            i++;
    }
    if (i < len && (b[i] == 'e' || b[i] == 'E')) {
        i++;
        if (i < len && (b[i] == '+' || b[i] == '-'))
            i++;
        if (i >= len || b[i] < '0' || b[i] > '9')
            return fail(sc, "expected a digit in the exponent", i);
        while (i < len && b[i] >= '0' && b[i] <= '9')
            i++;
    }
    *end = i;
    return 0;
}

/* Index of the requested field named by the key token buf[b..e), or -1. klens: the fields'
 * key lengths for the first JSCAN_KEYS_FAST of them. */
static int match_key(const struct scan *sc, size_t b, size_t e, bool esc,
                     struct bb_jscan_field *fields, size_t n, const size_t *klens)
{
    const char *k = sc->buf + b + 1;
    size_t klen = e - b - 2;
    char tmp[256];
    if (esc) {
        long r = bb_jscan_unquote(sc->buf + b, e - b, tmp, sizeof tmp);
        if (r < 0)
            return -1; /* longer than any key we would ask for */
        k = tmp;
        klen = (size_t)r;
    }
    for (size_t f = 0; f < n; f++) {
        const char *want = fields[f].key;
        if (want && want[0] == (klen ? k[0] : '\0') &&
            (f < JSCAN_KEYS_FAST ? klens[f] : strlen(want)) == klen && memcmp(want, k, klen) == 0)
            return (int)f;
    }
    return -1;
}

static int literal(struct scan *sc, size_t i, const char *lit, size_t *end)
{
    size_t n = strlen(lit);
    if (sc->len - i < n || memcmp(sc->buf + i, lit, n) != 0)
        return fail(sc, "invalid literal", i);
    *end = i + n;
    return 0;
}

/* Top-level member names seen so far (strict mode): each name's hash and token. */
struct names {
    size_t n;
    struct {
        uint64_t hash;
        size_t b, e; /* the name's token, quotes included */
        bool esc;
    } v[BB_JSCAN_MEMBERS_MAX];
};

static uint64_t fnv1a(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return h;
}

/* The decoded name of the token buf[b..e) into tmp (cap bytes); its length, -1 too long. */
static long name_of(const struct scan *sc, size_t b, size_t e, bool esc, char *tmp, size_t cap,
                    const char **out)
{
    if (!esc) {
        *out = sc->buf + b + 1;
        return e - b - 2 <= BB_JSCAN_NAME_MAX ? (long)(e - b - 2) : -1;
    }
    *out = tmp;
    return bb_jscan_unquote(sc->buf + b, e - b, tmp, cap);
}

/* Record the top-level name token buf[b..e); -1 (err set) when it repeats an earlier one. */
static int note_name(struct scan *sc, struct names *nm, size_t b, size_t e, bool esc)
{
    char t1[BB_JSCAN_NAME_MAX + 1], t2[BB_JSCAN_NAME_MAX + 1];
    const char *k, *k2;
    long kl = name_of(sc, b, e, esc, t1, sizeof t1, &k);
    if (kl < 0)
        return fail(sc, "member name longer than 1024 bytes", b);
    uint64_t h = fnv1a(k, (size_t)kl);
    for (size_t i = 0; i < nm->n; i++) {
        if (nm->v[i].hash != h)
            continue;
        long l2 = name_of(sc, nm->v[i].b, nm->v[i].e, nm->v[i].esc, t2, sizeof t2, &k2);
        if (l2 == kl && memcmp(k, k2, (size_t)kl) == 0)
            return bb_err_set(sc->err, "duplicate member \"%.*s\" at byte %zu",
                              kl > 64 ? 64 : (int)kl, k, b);
    }
    if (nm->n == BB_JSCAN_MEMBERS_MAX)
        return fail(sc, "more than 1024 top-level members", b);
    nm->v[nm->n].hash = h;
    nm->v[nm->n].b = b;
    nm->v[nm->n].e = e;
    nm->v[nm->n].esc = esc;
    nm->n++;
    return 0;
}

static int scan_object(const char *buf, size_t len, struct bb_jscan_field *fields, size_t n,
                       int max_depth, struct names *names, struct bb_err *err, bool object_only);

int bb_jscan_object(const char *buf, size_t len, struct bb_jscan_field *fields, size_t n,
                    int max_depth, struct bb_err *err)
{
    return scan_object(buf, len, fields, n, max_depth, NULL, err, true);
}

int bb_jscan_request(const char *buf, size_t len, struct bb_jscan_field *fields, size_t n,
                     int max_depth, struct bb_err *err)
{
    struct names nm; /* 32 KiB of stack, like the nesting stack: no allocation */
    nm.n = 0;
    return scan_object(buf, len, fields, n, max_depth, &nm, err, true);
}

/* The scanner: exactly one JSON object (object_only) or any one JSON value; names (may be
 * NULL) collects the top-level member names to refuse a duplicate. */
static int scan_object(const char *buf, size_t len, struct bb_jscan_field *fields, size_t n,
                       int max_depth, struct names *names, struct bb_err *err, bool object_only)
{
    struct scan sc = {buf, len, err};
    unsigned char stack[JSCAN_MAX_DEPTH]; /* 1 = object, 0 = array */
    int depth = 0, cur = -1;
    size_t i, vstart = 0;
    enum bb_jtype vtype = BB_JNONE;
    bool esc;

    size_t klens[JSCAN_KEYS_FAST];
    for (size_t f = 0; f < n; f++) {
        fields[f].type = BB_JNONE;
        fields[f].off = fields[f].len = 0;
        fields[f].truthy = false;
        if (f < JSCAN_KEYS_FAST)
            klens[f] = fields[f].key ? strlen(fields[f].key) : 0;
    }
    if (max_depth < 1)
        max_depth = 1;
    if (max_depth > JSCAN_MAX_DEPTH)
        max_depth = JSCAN_MAX_DEPTH;

    i = skip_ws(&sc, 0);
    if (!object_only)
        goto value;
    if (i >= len)
        return fail(&sc, "expected a JSON object, got end of input", i);
    if (buf[i] != '{')
        return fail(&sc, "expected a JSON object ('{')", i);
    vtype = BB_JOBJECT;
    goto open;

value:
    i = skip_ws(&sc, i);
    if (i >= len)
        return fail(&sc, "unexpected end of input", i);
    if (depth == 1)
        vstart = i;
    switch (buf[i]) {
    case '{':
        vtype = BB_JOBJECT;
        goto open;
    case '[':
        vtype = BB_JARRAY;
        goto open;
    case '"':
        vtype = BB_JSTRING;
        if (scan_string(&sc, i, &i, &esc) < 0)
            return -1;
        goto after_value;
    case 't':
        vtype = BB_JBOOL;
        if (literal(&sc, i, "true", &i) < 0)
            return -1;
        goto after_value;
    case 'f':
        vtype = BB_JBOOL;
        if (literal(&sc, i, "false", &i) < 0)
            return -1;
        goto after_value;
    case 'n':
        vtype = BB_JNULL;
        if (literal(&sc, i, "null", &i) < 0)
            return -1;
        goto after_value;
    case '-':
    case '0':
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
    case '7':
    case '8':
    case '9':
        vtype = BB_JNUMBER;
        if (scan_number(&sc, i, &i) < 0)
            return -1;
        goto after_value;
    default:
        return fail(&sc, "unexpected character", i);
    }

open:
    if (depth >= max_depth)
        return bb_err_set(err, "nesting deeper than %d at byte %zu", max_depth, i);
    stack[depth++] = buf[i] == '{';
    i = skip_ws(&sc, i + 1);
    if (i < len && buf[i] == (stack[depth - 1] ? '}' : ']')) {
        i++;
        depth--;
        goto after_value;
    }
    if (!stack[depth - 1])
        goto value;

member:
    if (i >= len)
        return fail(&sc, "unexpected end of input", i);
    if (buf[i] != '"')
        return fail(&sc, "expected a member name", i);
    {
        size_t kb = i;
        if (scan_string(&sc, i, &i, &esc) < 0)
            return -1;
        if (depth == 1) {
            if (names && note_name(&sc, names, kb, i, esc) < 0)
                return -1;
            cur = match_key(&sc, kb, i, esc, fields, n, klens);
        }
    }
    i = skip_ws(&sc, i);
    if (i >= len || buf[i] != ':')
        return fail(&sc, "expected ':'", i);
    i++;
    goto value;

after_value:
    if (depth == 1 && cur >= 0) {
        /* a member value of the top-level object just ended (scalar, or container closed) */
        struct bb_jscan_field *fl = &fields[cur];
        fl->type = vtype;
        fl->off = vstart;
        fl->len = i - vstart;
        fl->truthy = vtype == BB_JBOOL && buf[vstart] == 't';
        cur = -1;
    }
    i = skip_ws(&sc, i);
    if (depth == 0) {
        if (i != len)
            return fail(&sc, "trailing characters after the object", i);
        return 0;
    }
    if (i >= len)
        return fail(&sc, "unexpected end of input", i);
    if (buf[i] == ',') {
        size_t comma = i;
        i = skip_ws(&sc, i + 1);
        if (i < len && buf[i] == (stack[depth - 1] ? '}' : ']'))
            return fail(&sc, "trailing comma", comma);
        if (stack[depth - 1])
            goto member;
        goto value;
    }
    if (buf[i] == (stack[depth - 1] ? '}' : ']')) {
        i++;
        depth--;
        /* a closed container at depth 1 is the member value whose type was set at vstart */
        if (depth == 1)
            vtype = buf[vstart] == '{' ? BB_JOBJECT : BB_JARRAY;
        goto after_value;
    }
    return fail(&sc, stack[depth - 1] ? "expected ',' or '}'" : "expected ',' or ']'", i);
}

void bb_jscan_member(const char *obj, size_t len, const char *key, struct bb_jscan_field *out)
{
    struct bb_err err;
    out->key = key;
    out->type = BB_JNONE;
    out->off = out->len = 0;
    if (len < 2 || bb_jscan_object(obj, len, out, 1, 64, &err) < 0)
        out->type = BB_JNONE;
}

bool bb_jscan_field_u64(const char *obj, const struct bb_jscan_field *f, uint64_t *out)
{
    if (f->type != BB_JNUMBER) {
        *out = 0;
        return false;
    }
    return bb_jscan_u64(obj + f->off, f->len, out);
}

/* End of the validated JSON value starting at buf[i] (strings and nesting followed; no
 * validation). */
static size_t value_end(const char *buf, size_t len, size_t i)
{
    int depth = 0;
    while (i < len) {
        char c = buf[i];
        if (c == '"') {
            for (i++; i < len && buf[i] != '"'; i++)
                if (buf[i] == '\\')
                    i++;
            i++;
            if (depth == 0)
                return i;
            continue;
        }
        if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            if (depth == 0) /* the end of the container around a scalar */
                return i;
            if (--depth == 0)
                return i + 1;
        } else if (depth == 0 && (c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r')) {
            return i;
        }
        i++;
    }
    return i;
}

static enum bb_jtype type_at(char c)
{
    switch (c) {
    case '{':
        return BB_JOBJECT;
    case '[':
        return BB_JARRAY;
    case '"':
        return BB_JSTRING;
    case 't':
    case 'f':
        return BB_JBOOL;
    case 'n':
        return BB_JNULL;
    default:
        return BB_JNUMBER;
    }
}

bool bb_jscan_element(const char *arr, size_t len, size_t idx, struct bb_jscan_field *out)
{
    struct scan sc = {arr, len, NULL};
    out->type = BB_JNONE;
    out->off = out->len = 0;
    size_t i = skip_ws(&sc, 0);
    if (i >= len || arr[i] != '[')
        return false;
    i = skip_ws(&sc, i + 1);
    for (size_t k = 0; i < len && arr[i] != ']'; k++) {
        size_t e = value_end(arr, len, i);
        if (k == idx) {
            out->type = type_at(arr[i]);
            out->off = i;
            out->len = e - i;
            out->truthy = arr[i] == 't';
            return true;
        }
        i = skip_ws(&sc, e);
        if (i < len && arr[i] == ',')
            i = skip_ws(&sc, i + 1);
    }
    return false;
}

bool bb_jscan_u64(const char *tok, size_t len, uint64_t *out)
{
    *out = 0;
    if (len == 0 || tok[0] < '0' || tok[0] > '9')
        return false; /* not a number, or negative */
    uint64_t v = 0;
    size_t i = 0;
    for (; i < len && tok[i] >= '0' && tok[i] <= '9'; i++)
        v = v > (UINT64_MAX - 9) / 10 ? UINT64_MAX : v * 10 + (uint64_t)(tok[i] - '0');
    if (i < len && (tok[i] == 'e' || tok[i] == 'E')) { /* 1e3: small exponents only */
        int ex = 0;
        i++;
        bool neg = i < len && tok[i] == '-';
        if (i < len && (tok[i] == '+' || tok[i] == '-'))
            i++;
        for (; i < len && tok[i] >= '0' && tok[i] <= '9' && ex < 100; i++)
            ex = ex * 10 + (tok[i] - '0');
        for (int k = 0; k < ex; k++)
            v = neg ? v / 10 : (v > UINT64_MAX / 10 ? UINT64_MAX : v * 10);
    }
    *out = v;
    return true;
}

bool bb_jscan_member_u64(const char *obj, size_t len, const char *key, uint64_t *out)
{
    struct bb_jscan_field f;
    bb_jscan_member(obj, len, key, &f);
    if (f.type != BB_JNUMBER) {
        *out = 0;
        return false;
    }
    return bb_jscan_u64(obj + f.off, f.len, out);
}

int bb_jscan_value(const char *buf, size_t len, int max_depth, struct bb_err *err)
{
    return scan_object(buf, len, NULL, 0, max_depth, NULL, err, false);
}

size_t bb_jscan_put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

long bb_jscan_decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        char tmp[4];
        const char *src = tmp;
        size_t k = 1;
        if (s[i] != '\\') {
            /* copy the run up to the next escape in one go */
            const char *bs = memchr(s + i, '\\', n - i);
            k = bs ? (size_t)(bs - (s + i)) : n - i;
            src = s + i;
            i += k;
        } else {
            char e = s[i + 1];
            i += 2;
            switch (e) {
            case 'b':
                tmp[0] = '\b';
                break;
            case 'f':
                tmp[0] = '\f';
                break;
            case 'n':
                tmp[0] = '\n';
                break;
            case 'r':
                tmp[0] = '\r';
                break;
            case 't':
                tmp[0] = '\t';
                break;
            case 'u': {
                unsigned cp = (unsigned)bb_jscan_hex4(s + i);
                i += 4;
                if (cp >= 0xd800 && cp <= 0xdbff) {
                    unsigned lo = (unsigned)bb_jscan_hex4(s + i + 2);
                    i += 6;
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                }
                k = bb_jscan_put_utf8(tmp, cp);
                break;
            }
            default:
                tmp[0] = e;
                break; /* " \\ / */
            }
        }
        if (k > cap - o)
            return -1;
        memcpy(out + o, src, k);
        o += k;
    }
    return (long)o;
}

long bb_jscan_unquote(const char *tok, size_t len, char *out, size_t cap)
{
    struct scan sc = {tok, len, NULL};
    size_t end;
    bool esc;
    if (cap == 0 || len < 2 || tok[0] != '"')
        return -1;
    if (scan_string(&sc, 0, &end, &esc) < 0 || end != len)
        return -1;
    long o = bb_jscan_decode(tok + 1, len - 2, out, cap - 1); /* validated above */
    if (o < 0)
        return -1;
    out[o] = '\0';
    return o;
}
