/*
 * http_parse: HTTP/1.1 request/response heads and the chunked transfer-coding decoder.
 * Any process (the worker uses it for both client requests and upstream responses); pure
 * functions over the caller's buffer, no allocation, no locking.
 *
 * The head parser makes one pass with table lookups and fails early: a byte that cannot
 * start or continue a valid head is rejected even before the head is complete, so a garbage
 * connection is refused on its first read. It is strict where leniency lets two parsers
 * disagree about framing (request smuggling): CL+TE, conflicting Content-Length, unknown
 * transfer codings, obs-fold, bare CR and CTLs in fields are all errors.
 */
#include "common/http_parse.h"

#include <limits.h>
#include <string.h>

/* Character classes, one bit each, so each scanning loop is a single table lookup. */
#define C_TCHAR 0x01  /* RFC 9110 token */
#define C_VALUE 0x02  /* field-value / reason-phrase: HTAB, SP, VCHAR, obs-text */
#define C_TARGET 0x04 /* request-target: VCHAR only (no obs-text, no spaces) */
#define C_HEX 0x08

static unsigned char cclass[256];
static unsigned char lower[256];

/* Built on first use instead of spelling out 256 entries; the race of two threads building
 * it at once writes identical bytes, and busbar's processes are single-threaded anyway. */
static void init_tables(void)
{
    static volatile int ready;
    if (ready)
        return;
    for (int c = 0; c < 256; c++) {
        unsigned char k = 0;
        if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
            (c && strchr("!#$%&'*+-.^_`|~", c)))
            k |= C_TCHAR;
        if (c == '\t' || (c >= 0x20 && c != 0x7f))
            k |= C_VALUE;
        if (c > 0x20 && c < 0x7f)
            k |= C_TARGET;
        if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))
            k |= C_HEX;
        cclass[c] = k;
        lower[c] = (unsigned char)((c >= 'A' && c <= 'Z') ? c + 32 : c);
    }
    ready = 1;
}

#define IS(c, k) (cclass[(unsigned char)(c)] & (k))

bool bb_http_ieq(const char *s, size_t n, const char *lit)
{
    init_tables();
    for (size_t i = 0; i < n; i++, lit++) {
        if (*lit == '\0' || lower[(unsigned char)s[i]] != lower[(unsigned char)*lit])
            return false;
    }
    return *lit == '\0';
}

bool bb_http_token_ok(const char *s, size_t n)
{
    init_tables();
    for (size_t i = 0; i < n; i++)
        if (!IS(s[i], C_TCHAR))
            return false;
    return n > 0;
}

bool bb_http_field_value_ok(const char *v, size_t n)
{
    init_tables();
    if (n && (v[0] == ' ' || v[0] == '\t' || v[n - 1] == ' ' || v[n - 1] == '\t'))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!IS(v[i], C_VALUE))
            return false;
    return true;
}

const struct bb_http_header *bb_http_find(const struct bb_http_head *h, const char *name)
{
    size_t n = strlen(name); /* most names differ in length: no byte compare for them */
    for (size_t i = 0; i < h->n_headers; i++) {
        if (h->headers[i].name_len == n && bb_http_ieq(h->headers[i].name, n, name))
            return &h->headers[i];
    }
    return NULL;
}

/* Internal result codes: > 0 bytes consumed, NEED more input, or BAD with a status. */
#define NEED 0
#define BAD -1

/* "HTTP/1.0" or "HTTP/1.1" followed by end of buffer, SP or a line end (the caller checks
 * which). Returns bytes consumed, NEED, or BAD with *st = 400 (garbage) or 505 (well-formed
 * HTTP/d.d that is not 1.0/1.1). */
static int parse_version(const char *p, const char *end, int *minor, int *st)
{
    static const char pat[] = "HTTP/0.0"; /* '0' stands for any digit */
    size_t avail = (size_t)(end - p);
    for (size_t i = 0; i < 8; i++) {
        if (i == avail)
            return NEED;
        bool ok = pat[i] == '0' ? (p[i] >= '0' && p[i] <= '9') : p[i] == pat[i];
        if (!ok) {
            *st = 400;
            return BAD;
        }
    }
    if (p[5] != '1' || p[7] > '1') {
        *st = 505;
        return BAD;
    }
    *minor = p[7] - '0';
    return 8;
}

/* Consume a line ending at *pp: CRLF or a bare LF. */
static int eat_eol(const char **pp, const char *end)
{
    const char *p = *pp;
    if (p == end)
        return NEED;
    if (*p == '\n') {
        *pp = p + 1;
        return 1;
    }
    if (*p != '\r')
        return BAD;
    if (p + 1 == end)
        return NEED;
    if (p[1] != '\n')
        return BAD;
    *pp = p + 2;
    return 1;
}

/* Header lines through the empty line. Returns the offset just past the head, NEED or BAD. */
static int parse_headers(const char *buf, const char *p, const char *end, struct bb_http_head *h,
                         int *st)
{
    h->n_headers = 0;
    for (;;) {
        if (p == end)
            return NEED;
        if (*p == '\r' || *p == '\n') {
            int r = eat_eol(&p, end);
            if (r <= 0)
                return (*st = 400, r);
            return (int)(p - buf);
        }
        /* A line starting with whitespace is obs-fold (or whitespace before the first field,
         * which RFC 9112 §2.2 also says to reject). */
        const char *name = p;
        while (p < end && IS(*p, C_TCHAR))
            p++;
        if (p == end)
            return NEED;
        if (p == name || *p != ':')
            return (*st = 400, BAD);
        if (h->n_headers == BB_HTTP_MAX_HEADERS)
            return (*st = 431, BAD);
        size_t name_len = (size_t)(p - name);
        p++;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        const char *val = p;
        while (p < end && IS(*p, C_VALUE))
            p++;
        const char *vend = p;
        int r = eat_eol(&p, end);
        if (r <= 0)
            return (*st = 400, r);
        while (vend > val && (vend[-1] == ' ' || vend[-1] == '\t'))
            vend--;
        struct bb_http_header *hd = &h->headers[h->n_headers++];
        hd->name = name;
        hd->name_len = name_len;
        hd->value = val;
        hd->value_len = (size_t)(vend - val);
    }
}

/* Content-Length: 1*DIGIT, no sign, no list, fits int64. */
static int parse_length(const char *s, size_t n, int64_t *out)
{
    if (n == 0)
        return -1;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        int d = s[i] - '0';
        if (v > (INT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* Scan a comma-separated Connection value for the close / keep-alive options. */
static void scan_connection(const char *s, size_t n, bool *close, bool *keep)
{
    size_t i = 0;
    while (i < n) {
        while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == ','))
            i++;
        size_t b = i;
        while (i < n && s[i] != ',')
            i++;
        size_t e = i;
        while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t'))
            e--;
        if (bb_http_ieq(s + b, e - b, "close"))
            *close = true;
        else if (bb_http_ieq(s + b, e - b, "keep-alive"))
            *keep = true;
    }
}

/* Derive framing and connection semantics from the parsed fields. */
static int derive(struct bb_http_head *h, bool request, int *st)
{
    bool close = false, keep = false, te = false;
    int n_host = 0;
    h->content_length = -1;
    h->chunked = false;
    h->expect_continue = false;
    for (size_t i = 0; i < h->n_headers; i++) {
        const struct bb_http_header *hd = &h->headers[i];
        switch (hd->name_len) {
        case 4:
            if (bb_http_ieq(hd->name, 4, "host"))
                n_host++;
            break;
        case 6:
            if (request && bb_http_ieq(hd->name, 6, "expect") && h->minor_version == 1 &&
                bb_http_ieq(hd->value, hd->value_len, "100-continue"))
                h->expect_continue = true;
            break;
        case 10:
            if (bb_http_ieq(hd->name, 10, "connection"))
                scan_connection(hd->value, hd->value_len, &close, &keep);
            break;
        case 14:
            if (bb_http_ieq(hd->name, 14, "content-length")) {
                int64_t v;
                if (parse_length(hd->value, hd->value_len, &v) < 0)
                    return (*st = 400, BAD);
                if (h->content_length >= 0 && h->content_length != v)
                    return (*st = 400, BAD);
                h->content_length = v;
            }
            break;
        case 17:
            if (bb_http_ieq(hd->name, 17, "transfer-encoding")) {
                /* A second field means a coding list ("chunked, chunked" at best). */
                if (te)
                    return (*st = 400, BAD);
                te = true;
                if (!bb_http_ieq(hd->value, hd->value_len, "chunked"))
                    return (*st = 501, BAD);
                h->chunked = true;
            }
            break;
        default:
            break;
        }
    }
    /* Both framings at once is the classic smuggling vector: refuse rather than pick one. */
    if (te && h->content_length >= 0)
        return (*st = 400, BAD);
    /* RFC 9112 §6.1: a 1.0 message with Transfer-Encoding has faulty framing. */
    if (te && h->minor_version == 0)
        return (*st = 400, BAD);
    /* Several Host fields would let us and the application disagree on the authority. */
    if (request && n_host > 1)
        return (*st = 400, BAD);
    h->keep_alive = h->minor_version == 1 ? !close : (keep && !close);
    return 1;
}

void bb_http_head_rebase(struct bb_http_head *dst, const struct bb_http_head *src, const char *from,
                         const char *to)
{
#define REBASE(ptr) ((ptr) ? to + ((ptr)-from) : NULL)
    struct bb_http_header *slots = dst->headers; /* the slots dst came with */
    *dst = *src;
    dst->headers = slots;
    dst->method = REBASE(src->method);
    dst->target = REBASE(src->target);
    dst->reason = REBASE(src->reason);
    for (size_t i = 0; i < src->n_headers; i++) {
        const struct bb_http_header *s = &src->headers[i];
        slots[i] =
            (struct bb_http_header){REBASE(s->name), s->name_len, REBASE(s->value), s->value_len};
    }
#undef REBASE
}

static void head_clear(struct bb_http_head *h)
{
    h->method = h->target = h->reason = NULL;
    h->method_len = h->target_len = h->reason_len = 0;
    h->status = 0;
    h->minor_version = 0;
    h->n_headers = 0;
    h->content_length = -1;
    h->chunked = h->keep_alive = h->expect_continue = false;
}

int bb_http_parse_request(const char *buf, size_t len, struct bb_http_head *h, int *err_status)
{
    int dummy;
    int *st = err_status ? err_status : &dummy;
    if (len > INT_MAX) /* the length travels in an int; no real head comes near this */
        len = INT_MAX;
    const char *p = buf, *end = buf + len;
    init_tables();
    head_clear(h);
    *st = 400;

    /* RFC 9112 §2.2: ignore empty lines before the request-line (left over from a body). */
    while (p < end && (*p == '\r' || *p == '\n')) {
        int r = eat_eol(&p, end);
        if (r <= 0)
            return r;
    }
    const char *m = p;
    while (p < end && IS(*p, C_TCHAR))
        p++;
    if (p == end)
        return NEED;
    if (p == m || *p != ' ')
        return BAD;
    h->method = m;
    h->method_len = (size_t)(p - m);
    p++;

    const char *t = p;
    while (p < end && IS(*p, C_TARGET))
        p++;
    if (p == end)
        return NEED;
    if (p == t || *p != ' ')
        return BAD;
    h->target = t;
    h->target_len = (size_t)(p - t);
    p++;

    int r = parse_version(p, end, &h->minor_version, st);
    if (r <= 0)
        return r;
    p += r;
    r = eat_eol(&p, end);
    if (r <= 0)
        return (*st = 400, r);

    r = parse_headers(buf, p, end, h, st);
    if (r <= 0)
        return r;
    int n = r;
    r = derive(h, true, st);
    return r < 0 ? BAD : n;
}

void bb_http_scan_reset(struct bb_http_scan *s)
{
    s->scanned = 0;
    s->content = false;
    s->line_start = true;
}

size_t bb_http_scan_feed(struct bb_http_scan *s, const char *in, size_t n)
{
    if (s->scanned == 0 && !s->content)
        s->line_start = true;
    size_t i = 0;
    while (i < n) {
        if (s->line_start) { /* CRs, then LF: an empty line; anything else: a line's content */
            char c = in[i];
            if (c == '\n' && s->content) {
                s->scanned += i + 1;
                return s->scanned;
            }
            if (c == '\r' || c == '\n') {
                i++;
                continue;
            }
            s->content = true;
            s->line_start = false;
        }
        const char *nl = memchr(in + i, '\n', n - i); /* the rest of the line at once */
        if (!nl)
            break;
        i = (size_t)(nl - in) + 1;
        s->line_start = true;
    }
    s->scanned += n;
    return 0;
}

int bb_http_parse_response(const char *buf, size_t len, struct bb_http_head *h)
{
    int st;
    if (len > INT_MAX)
        len = INT_MAX;
    const char *p = buf, *end = buf + len;
    init_tables();
    head_clear(h);

    int r = parse_version(p, end, &h->minor_version, &st);
    if (r <= 0)
        return r;
    p += r;
    if (p == end)
        return NEED;
    if (*p != ' ')
        return BAD;
    p++;
    int status = 0;
    for (int i = 0; i < 3; i++, p++) {
        if (p == end)
            return NEED;
        if (*p < '0' || *p > '9')
            return BAD;
        status = status * 10 + (*p - '0');
    }
    if (status < 100)
        return BAD;
    h->status = status;
    if (p == end)
        return NEED;
    /* The SP before an empty reason is often omitted ("HTTP/1.1 200\r\n"); tolerate it. */
    if (*p == ' ') {
        p++;
        const char *rs = p;
        while (p < end && IS(*p, C_VALUE))
            p++;
        h->reason = rs;
        h->reason_len = (size_t)(p - rs);
    } else {
        h->reason = p;
    }
    r = eat_eol(&p, end);
    if (r <= 0)
        return r;

    r = parse_headers(buf, p, end, h, &st);
    if (r <= 0)
        return r;
    int n = r;
    r = derive(h, false, &st);
    return r < 0 ? BAD : n;
}

/* ---- chunked ---- */

enum {
    CH_SIZE0,   /* first hex digit of a chunk-size */
    CH_SIZE,    /* further hex digits */
    CH_EXT_WS,  /* whitespace after the size, before ';' or CR */
    CH_EXT,     /* chunk-ext bytes, ignored */
    CH_SIZE_LF, /* LF after the size line's CR */
    CH_DATA,
    CH_DATA_CR,
    CH_DATA_LF,
    CH_TRAILER0, /* start of a trailer line or the final CRLF */
    CH_TRAILER,  /* inside a trailer line, discarded */
    CH_TRAILER_LF,
    CH_END_LF,
    CH_DONE,
    CH_ERROR,
};

#define CH_MAX_SIZE ((uint64_t)1 << 62)
#define CH_MAX_LINE 4096u
#define CH_MAX_TRAILERS 16384u /* all trailer lines together */

void bb_chunked_init(struct bb_chunked *c)
{
    c->state = CH_SIZE0;
    c->remaining = 0;
    c->line_len = 0;
    c->trailer_len = 0;
    c->done = false;
}

static int hexval(unsigned char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

ssize_t bb_chunked_feed(struct bb_chunked *c, const char *in, size_t len, size_t *data_off,
                        size_t *data_len)
{
    size_t i = 0;
    *data_off = 0;
    *data_len = 0;
    init_tables();
    while (i < len) {
        unsigned char ch = (unsigned char)in[i];
        switch (c->state) {
        case CH_SIZE0:
        case CH_SIZE: {
            int d = hexval(ch);
            if (d >= 0) {
                if (c->remaining > (CH_MAX_SIZE - (uint64_t)d) / 16)
                    goto bad;
                c->remaining = c->remaining * 16 + (uint64_t)d;
                c->state = CH_SIZE;
            } else if (c->state == CH_SIZE0) {
                goto bad;
            } else if (ch == ' ' || ch == '\t') {
                c->state = CH_EXT_WS;
            } else if (ch == ';') {
                c->state = CH_EXT;
            } else if (ch == '\r') {
                c->state = CH_SIZE_LF;
            } else {
                goto bad;
            }
            break;
        }
        case CH_EXT_WS:
            if (ch == ';')
                c->state = CH_EXT;
            else if (ch == '\r')
                c->state = CH_SIZE_LF;
            else if (ch != ' ' && ch != '\t')
                goto bad;
            break;
        case CH_EXT:
            if (ch == '\r')
                c->state = CH_SIZE_LF;
            else if (!IS(ch, C_VALUE))
                goto bad;
            break;
        case CH_SIZE_LF:
            if (ch != '\n')
                goto bad;
            c->line_len = 0;
            c->state = c->remaining ? CH_DATA : CH_TRAILER0;
            i++;
            continue;
        case CH_DATA: {
            size_t n = len - i;
            if ((uint64_t)n > c->remaining)
                n = (size_t)c->remaining;
            *data_off = i;
            *data_len = n;
            c->remaining -= n;
            if (c->remaining == 0)
                c->state = CH_DATA_CR;
            return (ssize_t)(i + n);
        }
        case CH_DATA_CR:
            if (ch != '\r')
                goto bad;
            c->state = CH_DATA_LF;
            break;
        case CH_DATA_LF:
            if (ch != '\n')
                goto bad;
            c->state = CH_SIZE0;
            c->line_len = 0;
            i++;
            continue;
        case CH_TRAILER0:
            if (ch == '\r') {
                c->state = CH_END_LF;
                break;
            }
            /* obs-fold continuation lines are refused like in the head */
            if (!IS(ch, C_TCHAR))
                goto bad;
            c->state = CH_TRAILER;
            break;
        case CH_TRAILER:
            if (ch == '\r')
                c->state = CH_TRAILER_LF;
            else if (!IS(ch, C_VALUE))
                goto bad;
            break;
        case CH_TRAILER_LF:
            if (ch != '\n')
                goto bad;
            c->state = CH_TRAILER0;
            c->line_len = 0;
            i++;
            continue;
        case CH_END_LF:
            if (ch != '\n')
                goto bad;
            c->state = CH_DONE;
            c->done = true;
            return (ssize_t)(i + 1);
        case CH_DONE:
            return (ssize_t)i;
        default:
            goto bad;
        }
        /* Every byte that reaches here belongs to a size or trailer line. */
        if (++c->line_len > CH_MAX_LINE)
            goto bad;
        if (c->state >= CH_TRAILER0 && ++c->trailer_len > CH_MAX_TRAILERS)
            goto bad;
        i++;
    }
    return (ssize_t)i;
bad:
    c->state = CH_ERROR;
    return -1;
}

static const struct {
    int status;
    const char *reason;
} reasons[] = {
    {100, "Continue"},
    {200, "OK"},
    {201, "Created"},
    {204, "No Content"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {303, "See Other"},
    {307, "Temporary Redirect"},
    {308, "Permanent Redirect"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {402, "Payment Required"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {411, "Length Required"},
    {413, "Payload Too Large"},
    {414, "URI Too Long"},
    {422, "Unprocessable Entity"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
    {505, "HTTP Version Not Supported"},
    {529, "Overloaded"},
};

const char *bb_http_reason(int status)
{
    for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
        if (reasons[i].status == status)
            return reasons[i].reason;
    return status < 300 ? "OK" : status < 500 ? "Client Error" : "Server Error";
}
