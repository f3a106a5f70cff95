/*
 * bb-mock: the mock LLM provider that busbar's tests and benchmark run against (contract:
 * tests/mock/README.md). One process, one thread, one libevent loop.
 *
 * The HTTP/1.1 server is written directly on the event loop (a read event, a write event and a
 * timer per connection, evbuffers for input and output) rather than on evhttp or bufferevents,
 * because the faults need exact control of the socket: which bytes go out in which write(2)
 * (one stream frame per write), when the connection is closed and how (FIN after the last
 * byte, or RST via SO_LINGER {1,0}), and noticing a client's close at any time while a
 * request is pending (the read event stays armed for the connection's whole life).
 *
 * A request moves through: head parsed -> body complete -> dispatch. A provider route creates
 * an attempt record, applies the model's directives, decides the answer (text or tool calls,
 * thinking, cached usage) and answers through its protocol module (mock.h); the response is
 * complete when its last byte has been handed to the kernel, and
 * only then is the next pipelined request read. The connection's `after` field says what
 * happens when the output buffer drains: next stream frame, finish the request, or RST.
 *
 * Ownership: the server owns its connections (a list) and the attempt ring; a connection owns
 * its one current request. Every libevent callback ends in conn_kick(), the only place that
 * frees a connection, so nothing is freed while it is still on the stack.
 */
#include "mock.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <json-c/json.h>

#include "common/http_parse.h"

#define SERVER_MAGIC 0x6d6f6b53u
#define CONN_MAGIC 0x6d6f6b43u

#define MAX_HEAD (64 * 1024)
#define MAX_TARGET 8192
#define MAX_BODY (64u * 1024 * 1024)
#define MAX_INPUT (MAX_BODY + 2u * MAX_HEAD)
#define READ_CHUNK 65536
#define FRAMES_PER_TURN 64 /* stream frames written before yielding to other connections */
#define LINGER_MS 2000     /* how long a closing connection waits for the client's FIN */
#define DEFAULT_WORDS 8
#define MAX_WORDS 1000000
#define DEFAULT_CAP 100000 /* attempts kept in memory */
#define NBUCKETS 1024      /* fail_first / ratelimit counters */
#define BODY_KEEP 16384    /* request body bytes kept in the attempt log */
#define MAX_CALLS 128      /* tools=N cap */
#define PAD_UNIT 65536     /* bigbody: bytes per padding unit, its leading space included */
#define MAX_BIGBODY (1L << 30)

enum outcome { OUT_PENDING, OUT_OK, OUT_FAULT, OUT_ABORTED };
static const char *const outcome_name[] = {"pending", "ok", "fault", "aborted"};

/* Request headers recorded in the attempt log (`headers`), in this order; [0] is also
 * reported as `authorization`. */
static const char *const hdr_names[] = {
    "authorization", "x-api-key",  "x-goog-api-key",       "anthropic-version", "anthropic-beta",
    "content-type",  "x-amz-date", "x-amz-content-sha256", "traceparent",
};
#define NHDR (sizeof hdr_names / sizeof hdr_names[0])

struct attempt {
    uint64_t seq; /* 0: empty slot */
    char *path, *model;
    bool stream;
    int status;
    enum outcome outcome;
    size_t body_bytes;
    double t_ms, end_ms; /* end_ms < 0: null */
    const char *protocol;
    char *hdr[NHDR]; /* request header values (hdr_names), NULL if absent */
    char *tools;     /* rendered JSON array, NULL: [] */
    char *results;   /* rendered JSON array, NULL: [] */
    char *body;      /* the first BODY_KEEP bytes of the body (NUL-terminated) */
    size_t body_len;
    char *prefill; /* the trailing assistant turn's text, NULL: null */
};

struct counter {
    struct counter *next;
    unsigned long n;
    size_t len;
    char key[];
};

struct conn;

struct server {
    unsigned magic;
    struct event_base *base;
    struct evconnlistener *lis;
    struct event *sigterm, *sigint;
    struct conn *conns;
    const char *name;
    int logfd;           /* -1: no --log */
    struct attempt *att; /* ring of cap slots, seq s lives in slot (s-1) % cap */
    size_t cap;
    uint64_t nseq; /* last seq handed out since the last reset */
    uint64_t gen;  /* bumped by reset, so stale requests cannot touch new slots */
    struct counter *buckets[NBUCKETS];
    struct json_tokener *tok;
    struct evbuffer *frame; /* one stream frame being built; always empty between calls */
    struct timespec t0;
};

/* What happens once the output buffer has been written out completely. */
enum after { AFTER_NONE, AFTER_PUMP, AFTER_FINISH, AFTER_RST };
enum timer_kind { T_NONE, T_PRE, T_PUMP, T_BODY, T_LINGER, T_RST };
enum stage { ST_OPEN, ST_UNITS, ST_CLOSE, ST_DONE };

struct directives {
    int status;
    int rawstatus, redirect; /* hostile answers, 0 = none */
    char retry_after[32];
    bool reset, noresponse, nodone, think, chunkcut, html, interleave;
    long slowfirst, delay, slowbody;           /* ms, 0 = none */
    long bigbody;                              /* bytes, 0 = none */
    char ctype[128];                           /* Content-Type override, "" = none */
    long words, cut, stall, malformed, inband; /* -1 = none */
    long fail_first;                           /* -1 = none */
    long tools, cached, cache_write;           /* -1 = none */
    long rl_remaining, rl_limit, rl_reset;     /* ratelimit=R/L[/S]; rl_limit 0 = none */
    char errcode[64], errmsg[256];             /* "" = none */
    char call[128], args[2048];                /* call=NAME, args=JSON; "" = none */
};

struct req {
    bool active;    /* head and body read, response not complete */
    bool have_head; /* head read, waiting for the body */
    char method[16];
    char *target;
    char *hdr[NHDR]; /* values of hdr_names, NULL if absent */
    size_t clen;
    bool http10, expect100;
    /* provider attempt; seq 0 means a non-provider route */
    uint64_t seq, gen;
    const struct bb_mock_proto *proto;
    struct bb_mock_req pub;
    struct directives d;
    int status; /* status sent, 0 if none */
    bool fault;
    bool chunked;
    enum stage stage;
    unsigned nopened, nclosed, ndone;
    unsigned long sent, nunits;                     /* content units sent / in the answer */
    long cut_at, stall_at, malformed_at, inband_at; /* in content units, -1 none */
    struct evbuffer *held; /* slowbody: the body, sent when the timer fires, then held_after */
    enum after held_after;
    char rl_hdr[640]; /* ratelimit=: the rate-limit header lines of every answer, or "" */
};

struct conn {
    unsigned magic;
    struct server *srv;
    struct conn *prev, *next;
    int fd;
    struct event *rev, *wev, *timer;
    struct evbuffer *in, *out;
    size_t scanned; /* bytes of `in` already searched for the end of the head */
    enum after after;
    enum timer_kind tk;
    bool wev_on, dead, rst, close_after, lingering;
    struct req r;
};

/* ---------------------------------------------------------------- helpers */

static double now_ms(const struct server *s)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - s->t0.tv_sec) * 1e3 + (double)(t.tv_nsec - s->t0.tv_nsec) / 1e6;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p)
        abort();
    return p;
}

static char *xstrndup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

void bb_mock_json_str(struct evbuffer *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    BB_MOCK_ADD(b, "\"");
    size_t run = 0; /* bytes copied verbatim in one go */
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\')
            continue;
        evbuffer_add(b, s + run, i - run);
        run = i + 1;
        char esc[6] = {'\\', 0};
        size_t elen = 2;
        switch (ch) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[ch >> 4];
            esc[5] = hex[ch & 15];
            elen = 6;
        }
        evbuffer_add(b, esc, elen);
    }
    evbuffer_add(b, s + run, n - run);
    BB_MOCK_ADD(b, "\"");
}

void bb_mock_num(struct evbuffer *b, unsigned long long v)
{
    char d[24];
    size_t n = sizeof d;
    do {
        d[--n] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    evbuffer_add(b, d + n, sizeof d - n);
}

void bb_mock_word(struct evbuffer *b, unsigned i)
{
    if (i == 1) {
        BB_MOCK_ADD(b, "Hello");
        return;
    }
    BB_MOCK_ADD(b, "w");
    bb_mock_num(b, i);
}

unsigned long bb_mock_count_words(const char *s, size_t n)
{
    unsigned long words = 0;
    bool in = false;
    for (size_t i = 0; i < n; i++) {
        bool sp = isspace((unsigned char)s[i]);
        if (!sp && !in)
            words++;
        in = !sp;
    }
    return words;
}

void bb_mock_unit_text(const struct bb_mock_req *r, unsigned i, struct evbuffer *b)
{
    unsigned canned = r->words - r->npad;
    if (i > canned) { /* bigbody padding: " xxx...", the last unit takes the rest */
        static char xs[PAD_UNIT];
        if (!xs[0])
            memset(xs, 'x', sizeof xs);
        unsigned j = i - canned;
        size_t len = j < r->npad ? PAD_UNIT : r->pad - (size_t)(r->npad - 1) * PAD_UNIT;
        BB_MOCK_ADD(b, " ");
        evbuffer_add(b, xs, len - 1);
        return;
    }
    unsigned w = r->base + i;
    if (i == 1 && r->trim) {
        char u[24];
        int n = snprintf(u, sizeof u, w == 1 ? "Hello" : " w%u", w);
        if (n > (int)r->trim)
            evbuffer_add(b, u + r->trim, (size_t)n - r->trim);
        return;
    }
    if (w > 1)
        BB_MOCK_ADD(b, " ");
    bb_mock_word(b, w);
}

void bb_mock_text(const struct bb_mock_req *r, struct evbuffer *b)
{
    for (unsigned i = 1; i <= r->words; i++)
        bb_mock_unit_text(r, i, b);
}

struct json_object *bb_mock_get(struct json_object *o, const char *key, int type)
{
    struct json_object *v;
    if (!json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, key, &v) ||
        !json_object_is_type(v, (enum json_type)type))
        return NULL;
    return v;
}

const char *bb_mock_get_str(struct json_object *o, const char *key, size_t *len)
{
    struct json_object *v = bb_mock_get(o, key, json_type_string);
    if (!v)
        return NULL;
    if (len)
        *len = (size_t)json_object_get_string_len(v);
    return json_object_get_string(v);
}

static bool text_part(struct json_object *part, const char **s, size_t *n)
{
    const char *type = bb_mock_get_str(part, "type", NULL);
    if (type && strcmp(type, "text") && strcmp(type, "input_text") && strcmp(type, "output_text"))
        return false;
    *s = bb_mock_get_str(part, "text", n);
    return *s != NULL;
}

unsigned long bb_mock_content_words(struct json_object *content)
{
    if (json_object_is_type(content, json_type_string))
        return bb_mock_count_words(json_object_get_string(content),
                                   (size_t)json_object_get_string_len(content));
    if (!json_object_is_type(content, json_type_array))
        return 0;
    unsigned long n = 0;
    size_t len = json_object_array_length(content);
    for (size_t i = 0; i < len; i++) {
        const char *s;
        size_t sl;
        if (text_part(json_object_array_get_idx(content, i), &s, &sl))
            n += bb_mock_count_words(s, sl);
    }
    return n;
}

char *bb_mock_content_text(struct json_object *content)
{
    if (json_object_is_type(content, json_type_string))
        return xstrndup(json_object_get_string(content),
                        (size_t)json_object_get_string_len(content));
    if (json_object_is_type(content, json_type_array)) {
        struct evbuffer *b = evbuffer_new();
        size_t len = json_object_array_length(content);
        bool all = true;
        for (size_t i = 0; i < len && all; i++) {
            const char *s;
            size_t sl;
            if (text_part(json_object_array_get_idx(content, i), &s, &sl))
                evbuffer_add(b, s, sl);
            else
                all = false;
        }
        if (all) {
            size_t n = evbuffer_get_length(b);
            char *out = xmalloc(n + 1);
            evbuffer_remove(b, out, n);
            out[n] = 0;
            evbuffer_free(b);
            return out;
        }
        evbuffer_free(b);
    }
    const char *js = json_object_to_json_string_ext(content, JSON_C_TO_STRING_PLAIN |
                                                                 JSON_C_TO_STRING_NOSLASHESCAPE);
    return xstrndup(js, strlen(js));
}

char *bb_mock_text_only(struct json_object *content)
{
    if (json_object_is_type(content, json_type_string))
        return xstrndup(json_object_get_string(content),
                        (size_t)json_object_get_string_len(content));
    if (!json_object_is_type(content, json_type_array))
        return NULL;
    struct evbuffer *b = evbuffer_new();
    bool any = false;
    size_t len = json_object_array_length(content);
    for (size_t i = 0; i < len; i++) {
        const char *s;
        size_t sl;
        if (text_part(json_object_array_get_idx(content, i), &s, &sl)) {
            evbuffer_add(b, s, sl);
            any = true;
        }
    }
    size_t n = evbuffer_get_length(b);
    char *out = NULL;
    if (any) {
        out = xmalloc(n + 1);
        evbuffer_remove(b, out, n);
        out[n] = 0;
    }
    evbuffer_free(b);
    return out;
}

void bb_mock_add_tool(struct bb_mock_req *r, const char *name, size_t n)
{
    if (!(r->ntools & (r->ntools + 1)) || !r->tools) /* grow at 0, 1, 3, 7, ... */
        r->tools = realloc(r->tools, (r->ntools * 2 + 2) * sizeof *r->tools);
    if (!r->tools)
        abort();
    r->tools[r->ntools++] = xstrndup(name, n);
}

void bb_mock_add_tool_ns(struct bb_mock_req *r, const char *name, size_t n, const char *ns,
                         bool custom)
{
    bool flat = ns && strcmp(ns, "functions") != 0;
    char *full = xmalloc((flat ? strlen(ns) + 2 : 0) + n + 1);
    size_t k = 0;
    if (flat) {
        memcpy(full, ns, strlen(ns));
        k = strlen(ns);
        memcpy(full + k, "__", 2);
        k += 2;
    }
    memcpy(full + k, name, n);
    full[k + n] = 0;
    size_t i = r->ntools;
    bb_mock_add_tool(r, full, k + n);
    free(full);
    r->tool_ns = realloc(r->tool_ns, (i + 1) * sizeof *r->tool_ns);
    r->tool_custom = realloc(r->tool_custom, i + 1);
    if (!r->tool_ns || !r->tool_custom)
        abort();
    r->tool_ns[i] = ns ? xstrndup(ns, strlen(ns)) : NULL;
    r->tool_custom[i] = custom;
}

int bb_mock_tool_index(const struct bb_mock_req *r, const char *name)
{
    for (size_t i = 0; i < r->ntools; i++)
        if (strcmp(r->tools[i], name) == 0)
            return (int)i;
    return -1;
}

void bb_mock_add_result(struct bb_mock_req *r, const char *id, bool by_name, char *content)
{
    if (!(r->nresults & (r->nresults + 1)) || !r->results)
        r->results = realloc(r->results, (r->nresults * 2 + 2) * sizeof *r->results);
    if (!r->results)
        abort();
    struct bb_mock_result *x = &r->results[r->nresults++];
    x->id = xstrndup(id ? id : "", id ? strlen(id) : 0);
    x->by_name = by_name;
    x->content = content ? content : xstrndup("", 0);
}

const char *bb_mock_call_name(const struct bb_mock_req *r, unsigned i)
{
    if (!r->ntools)
        return "";
    for (size_t k = 0; r->call_name && k < r->ntools; k++)
        if (strcmp(r->tools[k], r->call_name) == 0)
            return r->tools[k];
    return r->ntools >= r->ncalls ? r->tools[i - 1] : r->tools[0];
}

/* args=: piece 1 is the first half of the text, piece 2 the rest. */
static size_t args_split(const char *a)
{
    return strlen(a) / 2;
}

void bb_mock_args_raw(const struct bb_mock_req *r, struct evbuffer *b, unsigned i, unsigned piece)
{
    if (r->call_args) {
        size_t n = strlen(r->call_args), h = args_split(r->call_args);
        if (piece != 2)
            evbuffer_add(b, r->call_args, piece == 1 ? h : n);
        else
            evbuffer_add(b, r->call_args + h, n - h);
        return;
    }
    if (piece != 2)
        BB_MOCK_ADD(b, "{\"q\":");
    if (piece != 1)
        evbuffer_add_printf(b, "\"w%u\"}", i);
}

void bb_mock_args_str(const struct bb_mock_req *r, struct evbuffer *b, unsigned i, unsigned piece)
{
    if (r->call_args) {
        size_t n = strlen(r->call_args), h = args_split(r->call_args);
        if (piece == 0)
            bb_mock_json_str(b, r->call_args, n);
        else if (piece == 1)
            bb_mock_json_str(b, r->call_args, h);
        else
            bb_mock_json_str(b, r->call_args + h, n - h);
        return;
    }
    if (piece == 0)
        evbuffer_add_printf(b, "\"{\\\"q\\\":\\\"w%u\\\"}\"", i);
    else if (piece == 1)
        evbuffer_add_printf(b, "\"{\\\"q\\\":\"");
    else
        evbuffer_add_printf(b, "\"\\\"w%u\\\"}\"", i);
}

unsigned long bb_mock_answer_tokens(const struct bb_mock_req *r)
{
    return r->ncalls ? (unsigned long)r->ncalls * BB_MOCK_CALL_TOKENS : r->words;
}

unsigned long bb_mock_think_tokens(const struct bb_mock_req *r)
{
    return r->think ? BB_MOCK_THINK_TOKENS : 0;
}

const char *bb_mock_errmsg(const struct bb_mock_req *r, const char *dflt)
{
    return r && r->errmsg ? r->errmsg : dflt;
}

/* Append s[0..n) as a JSON string that is valid UTF-8 whatever the input: invalid bytes
 * become U+FFFD. For request bodies in the attempt log (off the hot path). */
static void json_str_utf8(struct evbuffer *b, const char *s, size_t n)
{
    size_t i = 0, run = 0;
    struct evbuffer *t = evbuffer_new();
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        size_t len = c < 0x80             ? 1
                     : (c & 0xe0) == 0xc0 ? 2
                     : (c & 0xf0) == 0xe0 ? 3
                     : (c & 0xf8) == 0xf0 ? 4
                                          : 0;
        bool ok = len && i + len <= n && !(len == 2 && c < 0xc2) && !(len == 4 && c > 0xf4);
        for (size_t k = 1; ok && k < len; k++)
            ok = ((unsigned char)s[i + k] & 0xc0) == 0x80;
        if (ok && len == 3) {
            unsigned char c1 = (unsigned char)s[i + 1];
            ok = !(c == 0xe0 && c1 < 0xa0) && !(c == 0xed && c1 >= 0xa0);
        } else if (ok && len == 4) {
            unsigned char c1 = (unsigned char)s[i + 1];
            ok = !(c == 0xf0 && c1 < 0x90) && !(c == 0xf4 && c1 >= 0x90);
        }
        if (ok) {
            i += len;
            continue;
        }
        evbuffer_add(t, s + run, i - run);
        BB_MOCK_ADD(t, "\xef\xbf\xbd");
        i++;
        run = i;
    }
    evbuffer_add(t, s + run, n - run);
    size_t tl = evbuffer_get_length(t);
    const char *tp = (const char *)evbuffer_pullup(t, -1);
    bb_mock_json_str(b, tl ? tp : "", tl);
    evbuffer_free(t);
}

/* A NUL-terminated string (valid UTF-8 guaranteed) or null. */
static void json_str0(struct evbuffer *b, const char *s)
{
    if (s)
        json_str_utf8(b, s, strlen(s));
    else
        BB_MOCK_ADD(b, "null");
}

/* ---------------------------------------------------------------- attempt log */

static void att_json(const struct server *s, const struct attempt *a, struct evbuffer *b)
{
    evbuffer_add_printf(b, "{\"seq\":%llu,\"name\":", (unsigned long long)a->seq);
    json_str0(b, s->name);
    BB_MOCK_ADD(b, ",\"path\":");
    json_str0(b, a->path);
    BB_MOCK_ADD(b, ",\"model\":");
    json_str0(b, a->model);
    evbuffer_add_printf(b, ",\"stream\":%s,\"authorization\":", a->stream ? "true" : "false");
    json_str0(b, a->hdr[0]);
    evbuffer_add_printf(b,
                        ",\"status\":%d,\"outcome\":\"%s\",\"body_bytes\":%zu,\"t_ms\":%.3f,"
                        "\"end_ms\":",
                        a->status, outcome_name[a->outcome], a->body_bytes, a->t_ms);
    if (a->end_ms < 0)
        BB_MOCK_ADD(b, "null");
    else
        evbuffer_add_printf(b, "%.3f", a->end_ms);
    BB_MOCK_ADD(b, ",\"protocol\":");
    json_str0(b, a->protocol);
    BB_MOCK_ADD(b, ",\"headers\":{");
    for (size_t i = 0, n = 0; i < NHDR; i++) {
        if (!a->hdr[i])
            continue;
        evbuffer_add_printf(b, "%s\"%s\":", n++ ? "," : "", hdr_names[i]);
        json_str0(b, a->hdr[i]);
    }
    evbuffer_add_printf(b,
                        "},\"tools\":%s,\"tool_results\":%s,\"body\":", a->tools ? a->tools : "[]",
                        a->results ? a->results : "[]");
    json_str_utf8(b, a->body ? a->body : "", a->body_len);
    BB_MOCK_ADD(b, ",\"prefill\":");
    json_str0(b, a->prefill);
    BB_MOCK_ADD(b, "}");
}

static void att_clear(struct attempt *a)
{
    free(a->path);
    free(a->model);
    for (size_t i = 0; i < NHDR; i++)
        free(a->hdr[i]);
    free(a->tools);
    free(a->results);
    free(a->body);
    free(a->prefill);
    memset(a, 0, sizeof *a);
}

static char *buf_string(struct evbuffer *b)
{
    size_t n = evbuffer_get_length(b);
    char *s = xmalloc(n + 1);
    evbuffer_remove(b, s, n);
    s[n] = 0;
    return s;
}

static uint64_t att_new(struct server *s, const char *path, char **hdr, const char *body,
                        size_t body_bytes)
{
    uint64_t seq = ++s->nseq;
    struct attempt *a = &s->att[(seq - 1) % s->cap];
    att_clear(a);
    a->seq = seq;
    a->path = xstrndup(path, strlen(path));
    for (size_t i = 0; i < NHDR; i++) { /* the request's header values move to the record */
        a->hdr[i] = hdr[i];
        hdr[i] = NULL;
    }
    size_t keep = body_bytes;
    if (keep > BODY_KEEP) {
        keep = BODY_KEEP;
        while (keep > 0 && ((unsigned char)body[keep] & 0xc0) == 0x80)
            keep--; /* do not cut a UTF-8 sequence */
    }
    a->body = xstrndup(body, keep);
    a->body_len = keep;
    a->body_bytes = body_bytes;
    a->t_ms = now_ms(s);
    a->end_ms = -1;
    a->outcome = OUT_PENDING;
    return seq;
}

/* The record of connection c's current attempt, NULL if none or gone (reset, ring wrapped). */
static struct attempt *att_of(struct conn *c)
{
    struct server *s = c->srv;
    if (!c->r.seq || c->r.gen != s->gen)
        return NULL;
    struct attempt *a = &s->att[(c->r.seq - 1) % s->cap];
    return a->seq == c->r.seq ? a : NULL;
}

static void att_log(struct server *s, const struct attempt *a)
{
    if (s->logfd < 0)
        return;
    struct evbuffer *b = evbuffer_new();
    att_json(s, a, b);
    BB_MOCK_ADD(b, "\n");
    while (evbuffer_get_length(b) && evbuffer_write(b, s->logfd) > 0)
        ;
    evbuffer_free(b);
}

static void att_end(struct conn *c, enum outcome o)
{
    struct attempt *a = att_of(c);
    if (!a)
        return;
    a->status = c->r.status;
    a->outcome = o;
    a->end_ms = now_ms(c->srv);
    att_log(c->srv, a);
}

/* The status line is on its way: the record shows it even while the attempt is pending. */
static void set_status(struct conn *c, int status)
{
    c->r.status = status;
    struct attempt *a = att_of(c);
    if (a)
        a->status = status;
}

static size_t bucket_of(const char *k, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)k[i]) * 1099511628211ull;
    return (size_t)(h % NBUCKETS);
}

/* Attempts so far (this one included) for model string k since the last reset. */
static unsigned long count_attempt(struct server *s, const char *k, size_t n)
{
    struct counter **head = &s->buckets[bucket_of(k, n)];
    for (struct counter *e = *head; e; e = e->next)
        if (e->len == n && !memcmp(e->key, k, n))
            return ++e->n;
    struct counter *e = xmalloc(sizeof *e + n);
    e->len = n;
    e->n = 1;
    memcpy(e->key, k, n);
    e->next = *head;
    *head = e;
    return 1;
}

/* The attempt's `tools` and `tool_results`, once the module has parsed the body. */
static void att_tools(struct attempt *a, const struct bb_mock_req *r)
{
    if (!r->ntools && !r->nresults)
        return;
    struct evbuffer *b = evbuffer_new();
    if (r->ntools) {
        for (size_t i = 0; i < r->ntools; i++) {
            evbuffer_add(b, i ? "," : "[", 1);
            json_str_utf8(b, r->tools[i], strlen(r->tools[i]));
        }
        BB_MOCK_ADD(b, "]");
        a->tools = buf_string(b);
    }
    if (r->nresults) {
        for (size_t i = 0; i < r->nresults; i++) {
            const struct bb_mock_result *x = &r->results[i];
            evbuffer_add_printf(b, "%s{\"%s\":", i ? "," : "[", x->by_name ? "name" : "id");
            json_str_utf8(b, x->id, strlen(x->id));
            BB_MOCK_ADD(b, ",\"content\":");
            json_str_utf8(b, x->content, strlen(x->content));
            BB_MOCK_ADD(b, "}");
        }
        BB_MOCK_ADD(b, "]");
        a->results = buf_string(b);
    }
    evbuffer_free(b);
}

static void reset_all(struct server *s)
{
    for (size_t i = 0; i < s->cap; i++)
        att_clear(&s->att[i]);
    s->nseq = 0;
    s->gen++;
    for (size_t i = 0; i < NBUCKETS; i++) {
        while (s->buckets[i]) {
            struct counter *e = s->buckets[i];
            s->buckets[i] = e->next;
            free(e);
        }
    }
}

/* ---------------------------------------------------------------- connections */

static void on_read(evutil_socket_t fd, short what, void *arg);
static void on_write(evutil_socket_t fd, short what, void *arg);
static void on_timer(evutil_socket_t fd, short what, void *arg);
static void respond(struct conn *c);
static void pump(struct conn *c);

static void req_clear(struct conn *c)
{
    struct req *r = &c->r;
    free(r->target);
    for (size_t i = 0; i < NHDR; i++)
        free(r->hdr[i]);
    free((char *)r->pub.model);
    free((char *)r->pub.path_model);
    for (size_t i = 0; i < r->pub.ntools; i++) {
        free(r->pub.tools[i]);
        if (r->pub.tool_ns)
            free(r->pub.tool_ns[i]);
    }
    free(r->pub.tools);
    free(r->pub.tool_ns);
    free(r->pub.tool_custom);
    for (size_t i = 0; i < r->pub.nresults; i++) {
        free(r->pub.results[i].id);
        free(r->pub.results[i].content);
    }
    free(r->pub.results);
    free(r->pub.prefill);
    if (r->held)
        evbuffer_free(r->held);
    memset(r, 0, sizeof *r);
    c->after = AFTER_NONE;
    if (c->tk != T_NONE) {
        evtimer_del(c->timer);
        c->tk = T_NONE;
    }
}

static void arm(struct conn *c, enum timer_kind k, long ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    c->tk = k;
    evtimer_add(c->timer, &tv);
}

static void conn_free(struct conn *c)
{
    struct server *s = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    req_clear(c);
    if (c->rst) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    event_free(c->rev);
    event_free(c->wev);
    event_free(c->timer);
    evbuffer_free(c->in);
    evbuffer_free(c->out);
    close(c->fd);
    c->magic = 0;
    free(c);
}

/* Write out as much as the kernel takes: 1 all written, 0 rest pending (write event armed),
 * -1 the connection is broken. */
static int conn_send(struct conn *c)
{
    while (evbuffer_get_length(c->out)) {
        if (evbuffer_write(c->out, c->fd) < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return -1;
            if (!c->wev_on) {
                event_add(c->wev, NULL);
                c->wev_on = true;
            }
            return 0;
        }
    }
    if (c->wev_on) {
        event_del(c->wev);
        c->wev_on = false;
    }
    return 1;
}

/* The client went away or the socket broke: a pending attempt ends as aborted. */
static void conn_fail(struct conn *c)
{
    if (c->r.active)
        att_end(c, OUT_ABORTED);
    req_clear(c);
    c->dead = true;
}

/* Close with a TCP RST, ending the current attempt as a fault. */
static void conn_reset(struct conn *c)
{
    if (c->r.active) {
        c->r.fault = true;
        att_end(c, OUT_FAULT);
    }
    req_clear(c);
    c->rst = true;
    c->dead = true;
}

/* Graceful close: FIN now, then wait for the client's FIN so that close(2) never meets unread
 * input (which would turn it into an RST and could destroy the response in flight). */
static void start_linger(struct conn *c)
{
    shutdown(c->fd, SHUT_WR);
    evbuffer_drain(c->in, evbuffer_get_length(c->in));
    c->lingering = true;
    arm(c, T_LINGER, LINGER_MS);
}

/* The response is completely written. */
static void req_finish(struct conn *c)
{
    if (c->r.seq)
        att_end(c, c->r.fault ? OUT_FAULT : OUT_OK);
    req_clear(c);
    if (c->close_after)
        start_linger(c);
}

static void drained(struct conn *c)
{
    switch (c->after) {
    case AFTER_NONE:
        break;
    case AFTER_PUMP:
        if (c->r.d.delay > 0)
            arm(c, T_PUMP, c->r.d.delay);
        else
            pump(c);
        break;
    case AFTER_FINISH:
        req_finish(c);
        break;
    case AFTER_RST:
        /* chunkcut: the whole body is out; the peer gets a moment to read it before the
         * RST (a RST discards what the peer has not read yet) */
        if (c->r.d.chunkcut)
            arm(c, T_RST, 50);
        else
            conn_reset(c);
        break;
    }
}

/* Output has been queued and c->after says what comes next. */
static void flush(struct conn *c)
{
    int st = conn_send(c);
    if (st < 0)
        conn_fail(c);
    else if (st > 0)
        drained(c);
}

static const char *conn_header(const struct conn *c)
{
    if (c->close_after)
        return "Connection: close\r\n";
    return c->r.http10 ? "Connection: keep-alive\r\n" : "";
}

/* Queue a complete response with a Content-Length body (consumed) and finish when written. */
static void reply(struct conn *c, int status, const char *ctype, struct evbuffer *body,
                  const char *extra)
{
    evbuffer_add_printf(c->out,
                        "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                        "%s%s\r\n",
                        status, bb_http_reason(status), ctype, evbuffer_get_length(body),
                        extra ? extra : "", conn_header(c));
    evbuffer_add_buffer(c->out, body);
    set_status(c, status);
    c->after = AFTER_FINISH;
    flush(c);
}

static void reply_json(struct conn *c, int status, const char *json)
{
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, json, strlen(json));
    reply(c, status, "application/json", b, NULL);
    evbuffer_free(b);
}

/* An error answer in protocol p's dialect (OpenAI when the request reached no provider route).
 * extra: more header lines, or NULL. */
static void reply_error(struct conn *c, const struct bb_mock_proto *p, int status, const char *code,
                        const char *message, const char *extra)
{
    struct evbuffer *b = evbuffer_new(), *h = evbuffer_new();
    const struct bb_mock_req *pr = c->r.seq ? &c->r.pub : NULL;
    (p ? p : &bb_mock_proto_openai)->error(pr, status, code, message, b, h);
    if (extra)
        evbuffer_add(h, extra, strlen(extra));
    evbuffer_add(h, "", 1); /* NUL-terminate */
    c->r.fault = true;
    reply(c, status, "application/json", b, (const char *)evbuffer_pullup(h, -1));
    evbuffer_free(b);
    evbuffer_free(h);
}

/* ---------------------------------------------------------------- directives */

static bool dnum(const char *v, size_t n, long max, long *out)
{
    if (!v || !n || n > 10)
        return false;
    long x = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return false;
        x = x * 10 + (v[i] - '0');
    }
    if (x > max)
        return false;
    *out = x;
    return true;
}

/* A printable-ASCII value into dst (size dn); `under` turns '_' into ' '. */
static void dstr(const char *v, size_t vl, char *dst, size_t dn, bool under)
{
    if (!v || !vl || vl >= dn)
        return;
    for (size_t i = 0; i < vl; i++)
        if (v[i] < 0x20 || v[i] >= 0x7f)
            return;
    for (size_t i = 0; i < vl; i++)
        dst[i] = under && v[i] == '_' ? ' ' : v[i];
    dst[vl] = 0;
}

/* ratelimit=R/L[/S]: remaining R of limit L (L >= 1), window resetting in S seconds [60]. */
static void dratelimit(const char *v, size_t vl, struct directives *d)
{
    const char *end = v ? v + vl : NULL, *s1 = v ? memchr(v, '/', vl) : NULL;
    if (!s1)
        return;
    const char *s2 = memchr(s1 + 1, '/', (size_t)(end - s1 - 1));
    long rem, lim, reset = 60;
    if (!dnum(v, (size_t)(s1 - v), 1000000000, &rem) ||
        !dnum(s1 + 1, (size_t)((s2 ? s2 : end) - s1 - 1), 1000000000, &lim) || !lim ||
        (s2 && !dnum(s2 + 1, (size_t)(end - s2 - 1), 86400, &reset)))
        return;
    d->rl_remaining = rem;
    d->rl_limit = lim;
    d->rl_reset = reset;
}

static void parse_directives(const char *m, size_t n, struct directives *d)
{
    memset(d, 0, sizeof *d);
    d->words = d->cut = d->stall = d->malformed = d->inband = d->fail_first = -1;
    d->tools = d->cached = d->cache_write = -1;
    d->rl_remaining = d->rl_limit = d->rl_reset = 0;
    const char *end = m + n, *p = memchr(m, ';', n);
    if (!p)
        return;
    for (p++; p < end;) {
        const char *e = memchr(p, ';', (size_t)(end - p));
        if (!e)
            e = end;
        const char *eq = memchr(p, '=', (size_t)(e - p));
        size_t kl = (size_t)((eq ? eq : e) - p);
        const char *v = eq ? eq + 1 : NULL;
        size_t vl = eq ? (size_t)(e - v) : 0;
        long x;
#define KEY(s) (kl == sizeof(s) - 1 && !memcmp(p, s, kl))
        if (KEY("status") && dnum(v, vl, 599, &x) && x >= 400)
            d->status = (int)x;
        else if (KEY("retry_after"))
            dstr(v, vl, d->retry_after, sizeof d->retry_after, false);
        else if (KEY("errcode"))
            dstr(v, vl, d->errcode, sizeof d->errcode, false);
        else if (KEY("errmsg"))
            dstr(v, vl, d->errmsg, sizeof d->errmsg, true);
        else if (KEY("reset"))
            d->reset = true;
        else if (KEY("noresponse"))
            d->noresponse = true;
        else if (KEY("nodone"))
            d->nodone = true;
        else if (KEY("think"))
            d->think = true;
        else if (KEY("interleave"))
            d->interleave = true;
        else if (KEY("rawstatus") && dnum(v, vl, 999, &x) && x >= 100)
            d->rawstatus = (int)x;
        else if (KEY("redirect") && dnum(v, vl, 399, &x) && x >= 300)
            d->redirect = (int)x;
        else if (KEY("html"))
            d->html = true;
        else if (KEY("chunkcut"))
            d->chunkcut = true;
        else if (KEY("ctype"))
            dstr(v, vl, d->ctype, sizeof d->ctype, true);
        else if (KEY("bigbody"))
            dnum(v, vl, MAX_BIGBODY, &d->bigbody);
        else if (KEY("slowbody"))
            dnum(v, vl, 3600000, &d->slowbody);
        else if (KEY("slowfirst"))
            dnum(v, vl, 3600000, &d->slowfirst);
        else if (KEY("delay"))
            dnum(v, vl, 3600000, &d->delay);
        else if (KEY("words"))
            dnum(v, vl, MAX_WORDS, &d->words);
        else if (KEY("cut"))
            dnum(v, vl, MAX_WORDS, &d->cut);
        else if (KEY("stall"))
            dnum(v, vl, MAX_WORDS, &d->stall);
        else if (KEY("malformed"))
            dnum(v, vl, MAX_WORDS, &d->malformed);
        else if (KEY("inband"))
            dnum(v, vl, MAX_WORDS, &d->inband);
        else if (KEY("fail_first"))
            dnum(v, vl, 1000000000, &d->fail_first);
        else if (KEY("tools"))
            dnum(v, vl, MAX_CALLS, &d->tools);
        else if (KEY("cached"))
            dnum(v, vl, 1000000000, &d->cached);
        else if (KEY("cache_write"))
            dnum(v, vl, 1000000000, &d->cache_write);
        else if (KEY("ratelimit"))
            dratelimit(v, vl, d);
        else if (KEY("call"))
            dstr(v, vl, d->call, sizeof d->call, false);
        else if (KEY("args"))
            dstr(v, vl, d->args, sizeof d->args, true);
#undef KEY
        p = e + 1;
    }
}

/* fail_first=K: past the K-th attempt the model answers normally; only the content directives
 * (words, tools, think, cached, cache_write, bigbody) stay. */
static void clear_faults(struct directives *d)
{
    struct directives keep = *d;
    memset(d, 0, sizeof *d);
    d->cut = d->stall = d->malformed = d->inband = d->fail_first = -1;
    d->words = keep.words;
    d->tools = keep.tools;
    d->think = keep.think;
    d->cached = keep.cached;
    d->cache_write = keep.cache_write;
    d->bigbody = keep.bigbody;
    memcpy(d->call, keep.call, sizeof d->call);
    memcpy(d->args, keep.args, sizeof d->args);
    d->rl_remaining = keep.rl_remaining; /* the provider's counters are not a fault */
    d->rl_limit = keep.rl_limit;
    d->rl_reset = keep.rl_reset;
}

/* The rate-limit header lines of an answer under ratelimit=R/L/S, attempt n (1-based) of this
 * model string: remaining R-(n-1) (not below 0) of L requests, and the same fraction of L×1000
 * tokens, resetting in S seconds. OpenAI's names (x-ratelimit-*, reset as a duration like
 * "1m0s") on openai/responses/cohere, Anthropic's (anthropic-ratelimit-*, reset as an RFC 3339
 * time) on anthropic; gemini and bedrock send none, as the real ones do not. */
static void ratelimit_headers(struct req *r, unsigned long n)
{
    const struct directives *d = &r->d;
    char *o = r->rl_hdr;
    size_t cap = sizeof r->rl_hdr;
    o[0] = 0;
    if (d->rl_limit <= 0)
        return;
    unsigned long before = n ? n - 1 : 0; /* earlier attempts of this model string */
    long rem = before >= (unsigned long)d->rl_remaining ? 0 : d->rl_remaining - (long)before;
    long long lim = d->rl_limit;
    if (r->proto == &bb_mock_proto_anthropic) {
        time_t t = time(NULL) + d->rl_reset;
        struct tm tm;
        char at[32];
        gmtime_r(&t, &tm);
        strftime(at, sizeof at, "%Y-%m-%dT%H:%M:%SZ", &tm);
        snprintf(o, cap,
                 "anthropic-ratelimit-requests-limit: %lld\r\n"
                 "anthropic-ratelimit-requests-remaining: %ld\r\n"
                 "anthropic-ratelimit-requests-reset: %s\r\n"
                 "anthropic-ratelimit-tokens-limit: %lld\r\n"
                 "anthropic-ratelimit-tokens-remaining: %lld\r\n"
                 "anthropic-ratelimit-tokens-reset: %s\r\n",
                 lim, rem, at, lim * 1000, rem * 1000LL, at);
    } else if (r->proto == &bb_mock_proto_openai || r->proto == &bb_mock_proto_responses ||
               r->proto == &bb_mock_proto_cohere) {
        char dur[32];
        long S = d->rl_reset;
        if (S >= 3600)
            snprintf(dur, sizeof dur, "%ldh%ldm%lds", S / 3600, S / 60 % 60, S % 60);
        else if (S >= 60)
            snprintf(dur, sizeof dur, "%ldm%lds", S / 60, S % 60);
        else
            snprintf(dur, sizeof dur, "%lds", S);
        snprintf(o, cap,
                 "x-ratelimit-limit-requests: %lld\r\n"
                 "x-ratelimit-remaining-requests: %ld\r\n"
                 "x-ratelimit-reset-requests: %s\r\n"
                 "x-ratelimit-limit-tokens: %lld\r\n"
                 "x-ratelimit-remaining-tokens: %lld\r\n"
                 "x-ratelimit-reset-tokens: %s\r\n",
                 lim, rem, dur, lim * 1000, rem * 1000LL, dur);
    }
}

/* ---------------------------------------------------------------- provider requests */

static void put_frame(struct conn *c)
{
    struct evbuffer *f = c->srv->frame;
    size_t n = evbuffer_get_length(f);
    if (!n)
        return;
    if (c->r.chunked) {
        evbuffer_add_printf(c->out, "%zx\r\n", n);
        evbuffer_add_buffer(c->out, f);
        BB_MOCK_ADD(c->out, "\r\n");
    } else {
        evbuffer_add_buffer(c->out, f);
    }
}

static long fault_at(long n, unsigned long units)
{
    return n < 0 ? -1 : (n > (long)units ? (long)units : n);
}

/* Content unit k (0-based) of r's answer: the thinking block, then the words of the text or
 * the pieces of each tool call. */
static void unit_at(const struct req *r, unsigned long k, struct bb_mock_unit *u)
{
    const struct bb_mock_req *q = &r->pub;
    unsigned think = q->think ? 1 : 0, parts = r->proto->call_parts;
    memset(u, 0, sizeof *u);
    if (k < think) {
        u->kind = BB_MOCK_THINK;
        u->i = 1;
        u->first = u->last = true;
    } else if (q->ncalls) {
        u->kind = BB_MOCK_CALL;
        if (r->d.interleave) { /* every call's start, then every call's first piece, ... */
            u->i = (unsigned)((k - think) % q->ncalls) + 1;
            u->part = (unsigned)((k - think) / q->ncalls);
        } else {
            u->i = (unsigned)((k - think) / parts) + 1;
            u->part = (unsigned)((k - think) % parts);
        }
        u->block = think + u->i - 1;
        u->first = u->part == 0;
        u->last = u->part == parts - 1;
    } else {
        u->kind = BB_MOCK_TEXT;
        u->i = (unsigned)(k - think) + 1;
        u->block = think;
        u->first = u->i == 1;
        u->last = u->i == q->words;
    }
}

/* The stream ends early after a fault frame: end the chunked body, finish (close follows). */
static void end_early(struct conn *c)
{
    c->r.fault = true;
    put_frame(c);
    if (c->r.chunked)
        BB_MOCK_ADD(c->out, "0\r\n\r\n");
    c->after = AFTER_FINISH;
}

/* Queue the next stream frame (or nothing) and set c->after. */
static void emit_next(struct conn *c)
{
    struct req *r = &c->r;
    const struct bb_mock_proto *p = r->proto;
    struct evbuffer *f = c->srv->frame;
    c->after = AFTER_PUMP;
    switch (r->stage) {
    case ST_OPEN:
        if (r->nopened < p->stream_nopen(&r->pub)) {
            p->stream_open(&r->pub, r->nopened++, f);
            break;
        }
        r->stage = ST_UNITS;
        /* fall through */
    case ST_UNITS:
        if ((long)r->sent == r->cut_at) {
            r->fault = true;
            c->after = AFTER_RST;
            return;
        }
        if ((long)r->sent == r->stall_at) {
            r->fault = true;
            c->after = AFTER_NONE; /* pending until the client goes away */
            return;
        }
        if ((long)r->sent == r->malformed_at) {
            p->stream_malformed(&r->pub, f);
            end_early(c);
            return;
        }
        if ((long)r->sent == r->inband_at) {
            p->stream_error(&r->pub, f);
            end_early(c);
            return;
        }
        if (r->sent < r->nunits) {
            struct bb_mock_unit u;
            unit_at(r, r->sent++, &u);
            p->stream_unit(&r->pub, &u, f);
            break;
        }
        r->stage = ST_CLOSE;
        /* fall through */
    case ST_CLOSE:
        if (r->nclosed < p->stream_nclose(&r->pub)) {
            p->stream_close(&r->pub, r->nclosed++, f);
            break;
        }
        r->stage = ST_DONE;
        /* fall through */
    case ST_DONE:
        if (r->d.nodone) {
            r->fault = true;
        } else if (r->ndone < p->stream_ndone(&r->pub)) {
            p->stream_done(&r->pub, r->ndone++, f);
            if (r->ndone < p->stream_ndone(&r->pub))
                break;
        }
        put_frame(c);
        if (r->d.chunkcut) { /* every frame, then a RST instead of the last chunk */
            r->fault = true;
            c->after = AFTER_RST;
            return;
        }
        if (r->chunked)
            BB_MOCK_ADD(c->out, "0\r\n\r\n");
        c->after = AFTER_FINISH;
        return;
    }
    put_frame(c);
}

/* Send stream frames, each with its own write, until a delay, a full socket, the end, or the
 * per-turn budget (then yield to other connections through a zero timer). */
static void pump(struct conn *c)
{
    for (int n = 0; n < FRAMES_PER_TURN; n++) {
        emit_next(c);
        int st = conn_send(c);
        if (st < 0) {
            conn_fail(c);
            return;
        }
        if (st == 0)
            return; /* on_write() calls drained() */
        if (c->after != AFTER_PUMP) {
            drained(c);
            return;
        }
        if (c->r.d.delay > 0) {
            arm(c, T_PUMP, c->r.d.delay);
            return;
        }
    }
    arm(c, T_PUMP, 0);
}

static void stream_start(struct conn *c)
{
    struct req *r = &c->r;
    r->chunked = !r->http10;
    if (r->http10 || r->d.nodone || r->malformed_at >= 0 || r->inband_at >= 0)
        c->close_after = true; /* the stream ends with a close: say so up front */
    if (r->d.ctype[0])
        r->fault = true;
    evbuffer_add_printf(c->out,
                        "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nCache-Control: no-cache\r\n"
                        "%s%s%s\r\n",
                        r->d.ctype[0] ? r->d.ctype : r->proto->stream_type(&r->pub), r->rl_hdr,
                        r->chunked ? "Transfer-Encoding: chunked\r\n" : "", conn_header(c));
    set_status(c, 200);
    r->stage = ST_OPEN;
    if (r->d.slowfirst > 0) {
        c->after = AFTER_NONE;
        if (conn_send(c) < 0) {
            conn_fail(c);
            return;
        }
        arm(c, T_PUMP, r->d.slowfirst);
        return;
    }
    pump(c); /* the head goes out with the first frame */
}

/* Keep the first n bytes of b. */
static void keep_head(struct evbuffer *b, size_t n)
{
    struct evbuffer *t = evbuffer_new();
    evbuffer_remove_buffer(b, t, n);
    evbuffer_drain(b, evbuffer_get_length(b));
    evbuffer_add_buffer(b, t);
    evbuffer_free(t);
}

/* Where a non-stream body b is cut for cut/stall/malformed=N: right after the N-th word of the
 * answer text (N = 0: where the text starts), or in the middle when there is no text. */
static size_t text_cut(const struct bb_mock_req *q, struct evbuffer *b, long n)
{
    size_t len = evbuffer_get_length(b);
    if (!q->words)
        return len / 2;
    unsigned upto = n > (long)q->words ? q->words : (unsigned)n;
    struct evbuffer *needle = evbuffer_new();
    BB_MOCK_ADD(needle, "\"");
    for (unsigned i = 1; i <= (upto ? upto : 1); i++)
        bb_mock_unit_text(q, i, needle);
    size_t nl = evbuffer_get_length(needle);
    struct evbuffer_ptr at =
        evbuffer_search(b, (const char *)evbuffer_pullup(needle, -1), nl, NULL);
    evbuffer_free(needle);
    if (at.pos < 0)
        return len / 2;
    return (size_t)at.pos + (upto ? nl : 1);
}

/* Queue b as three chunks of a chunked body, without the last chunk (chunkcut). */
static void put_chunks(struct evbuffer *out, struct evbuffer *b)
{
    size_t len = evbuffer_get_length(b), step = len / 3 ? len / 3 : len;
    while (evbuffer_get_length(b)) {
        size_t n = evbuffer_get_length(b);
        if (n > step && n - step >= step)
            n = step;
        evbuffer_add_printf(out, "%zx\r\n", n);
        evbuffer_remove_buffer(b, out, n);
        BB_MOCK_ADD(out, "\r\n");
    }
}

/* A non-stream answer: the protocol's response (or in-band error) body, and the non-stream
 * faults: cut / stall / malformed at the N-th word, chunkcut, slowbody, ctype. */
static void respond_json(struct conn *c)
{
    struct req *r = &c->r;
    const struct directives *d = &r->d;
    struct evbuffer *b = evbuffer_new();
    long at = d->cut >= 0 ? d->cut : d->stall;
    enum after end = AFTER_FINISH;
    bool chunked = false, lengthless = false;
    if (at < 0 && d->malformed < 0 && d->inband >= 0) {
        r->proto->inband(&r->pub, b);
        r->fault = true;
    } else {
        r->proto->response(&r->pub, b);
    }
    size_t clen = evbuffer_get_length(b); /* what the head announces */
    if (at >= 0) {
        /* the full length announced, a prefix sent */
        keep_head(b, text_cut(&r->pub, b, at));
        end = d->cut >= 0 ? AFTER_RST : AFTER_NONE;
        r->fault = true;
    } else if (d->malformed >= 0) {
        keep_head(b, text_cut(&r->pub, b, d->malformed));
        BB_MOCK_ADD(b, "{not json");
        clen = evbuffer_get_length(b);
        c->close_after = true;
        r->fault = true;
    } else if (d->chunkcut) {
        chunked = !r->http10;
        lengthless = c->close_after = r->http10; /* HTTP/1.0: the body, then the RST */
        end = AFTER_RST;
        r->fault = true;
    }
    if (d->ctype[0])
        r->fault = true;
    evbuffer_add_printf(c->out, "HTTP/1.1 200 OK\r\nContent-Type: %s\r\n",
                        d->ctype[0] ? d->ctype : "application/json");
    if (chunked)
        BB_MOCK_ADD(c->out, "Transfer-Encoding: chunked\r\n");
    else if (!lengthless)
        evbuffer_add_printf(c->out, "Content-Length: %zu\r\n", clen);
    evbuffer_add_printf(c->out, "%s%s\r\n", r->rl_hdr, conn_header(c));
    set_status(c, 200);
    if (chunked) {
        struct evbuffer *t = evbuffer_new();
        put_chunks(t, b);
        evbuffer_add_buffer(b, t);
        evbuffer_free(t);
    }
    if (d->slowbody > 0) { /* the head now, the body later */
        r->held = b;
        r->held_after = end;
        c->after = AFTER_NONE;
        if (conn_send(c) < 0)
            conn_fail(c);
        else
            arm(c, T_BODY, d->slowbody);
        return;
    }
    evbuffer_add_buffer(c->out, b);
    evbuffer_free(b);
    c->after = end;
    flush(c);
}

/* A hostile provider's answer: a 3xx pointing at a metadata service, or an HTML page. */
static void respond_hostile(struct conn *c)
{
    struct req *r = &c->r;
    struct evbuffer *b = evbuffer_new();
    char extra[sizeof r->rl_hdr + 96];
    r->fault = true;
    if (r->d.redirect) {
        snprintf(extra, sizeof extra, "%sLocation: http://169.254.169.254/latest/meta-data/\r\n",
                 r->rl_hdr);
        reply(c, r->d.redirect, "text/html", b, extra);
    } else {
        BB_MOCK_ADD(b, "<html><head><title>Sign in</title></head><body><h1>bb-mock: an HTML "
                       "page, not an API answer</h1></body></html>\n");
        reply(c, 200, "text/html; charset=utf-8", b, r->rl_hdr);
    }
    evbuffer_free(b);
}

/* Answer an attempt whose directives are known, after any pre-header wait. */
static void respond(struct conn *c)
{
    struct req *r = &c->r;
    if (r->d.reset) {
        conn_reset(c);
        return;
    }
    if (r->d.status) {
        char extra[sizeof r->rl_hdr + 64], msg[64];
        snprintf(extra, sizeof extra, "%s%s%s%s", r->rl_hdr,
                 r->d.retry_after[0] ? "Retry-After: " : "", r->d.retry_after,
                 r->d.retry_after[0] ? "\r\n" : "");
        snprintf(msg, sizeof msg, "bb-mock: scripted status %d", r->d.status);
        reply_error(c, r->proto, r->d.status, r->pub.errcode, bb_mock_errmsg(&r->pub, msg), extra);
        return;
    }
    if (r->d.rawstatus) {
        char msg[64];
        snprintf(msg, sizeof msg, "bb-mock: scripted status %d", r->d.rawstatus);
        reply_error(c, r->proto, r->d.rawstatus, r->pub.errcode, bb_mock_errmsg(&r->pub, msg),
                    r->rl_hdr);
        return;
    }
    if (r->d.redirect || r->d.html) {
        respond_hostile(c);
        return;
    }
    if (!r->pub.stream) {
        respond_json(c);
        return;
    }
    stream_start(c);
}

static struct json_object *parse_body(struct server *s, const char *body, size_t len)
{
    if (!len || len > INT32_MAX)
        return NULL;
    json_tokener_reset(s->tok);
    struct json_object *o = json_tokener_parse_ex(s->tok, body, (int)len);
    if (o && json_tokener_get_error(s->tok) == json_tokener_success) {
        size_t end = json_tokener_get_parse_end(s->tok);
        while (end < len && isspace((unsigned char)body[end]))
            end++;
        if (end == len && json_object_is_type(o, json_type_object))
            return o;
    }
    json_object_put(o);
    return NULL;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch = (char)(ch | 0x20);
    return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* Percent-decode s[0..n) into a new string. */
static char *url_decode(const char *s, size_t n)
{
    char *out = xmalloc(n + 1), *o = out;
    for (size_t i = 0; i < n; i++) {
        int hi, lo;
        if (s[i] == '%' && i + 2 < n && (hi = hexval(s[i + 1])) >= 0 &&
            (lo = hexval(s[i + 2])) >= 0) {
            *o++ = (char)(hi * 16 + lo);
            i += 2;
        } else {
            *o++ = s[i];
        }
    }
    *o = 0;
    return out;
}

static const struct route {
    const char *prefix, *suffix; /* suffix NULL: the path is exactly prefix; else prefix X suffix */
    const struct bb_mock_proto *proto;
    bool stream; /* the route asks for a stream (Gemini, Bedrock) */
} routes[] = {
    {"/v1/chat/completions", NULL, &bb_mock_proto_openai, false},
    {"/v1/responses", NULL, &bb_mock_proto_responses, false},
    {"/v1/messages", NULL, &bb_mock_proto_anthropic, false},
    {"/v2/chat", NULL, &bb_mock_proto_cohere, false},
    {"/v1beta/models/", ":generateContent", &bb_mock_proto_gemini, false},
    {"/v1beta/models/", ":streamGenerateContent", &bb_mock_proto_gemini, true},
    {"/v1/models/", ":generateContent", &bb_mock_proto_gemini, false},
    {"/v1/models/", ":streamGenerateContent", &bb_mock_proto_gemini, true},
    {"/model/", "/converse", &bb_mock_proto_bedrock, false},
    {"/model/", "/converse-stream", &bb_mock_proto_bedrock, true},
    {"/model/", "/invoke", &bb_mock_proto_bedrock_invoke, false},
    {"/model/", "/invoke-with-response-stream", &bb_mock_proto_bedrock_invoke, true},
};

/* Prefill continuation: when the request's trailing assistant text (trailing whitespace
 * stripped) is a prefix of the canned text "Hello w2 ... wN", the answer is the rest of it:
 * sets base and trim and returns true; false when it is no prefix. */
static bool continuation(struct bb_mock_req *q, unsigned n)
{
    const char *p = q->prefill;
    size_t pl = strlen(p), off = 0; /* off: bytes of the canned text matched so far */
    while (pl && isspace((unsigned char)p[pl - 1]))
        pl--;
    for (unsigned i = 1; i <= n; i++) {
        char u[24];
        size_t ul = (size_t)snprintf(u, sizeof u, i == 1 ? "Hello" : " w%u", i);
        if (off + ul >= pl) { /* the prefill ends inside unit i, or at its end */
            size_t k = pl - off;
            if (memcmp(u, p + off, k))
                return false;
            q->base = k == ul ? i : i - 1;
            q->trim = k == ul ? 0 : (unsigned)k;
            return true;
        }
        if (memcmp(u, p + off, ul))
            return false;
        off += ul;
    }
    return pl == off; /* n = 0 and an empty prefill */
}

static void provider(struct conn *c, const struct route *rt, const char *body, size_t len)
{
    struct server *s = c->srv;
    struct req *r = &c->r;
    const struct bb_mock_proto *p = rt->proto;
    r->proto = p;
    r->seq = att_new(s, r->target, r->hdr, body, len);
    r->gen = s->gen;
    r->pub.seq = r->seq;
    struct attempt *a = att_of(c);
    assert(a);
    a->protocol = p->name;
    const char *q = strchr(r->target, '?');
    r->pub.query = q ? q + 1 : "";
    if (rt->suffix) {
        size_t pl = strlen(rt->prefix), sl = strlen(rt->suffix);
        size_t plen = q ? (size_t)(q - r->target) : strlen(r->target);
        r->pub.path_model = url_decode(r->target + pl, plen - pl - sl);
        r->pub.path_stream = rt->stream;
    }

    struct json_object *o = parse_body(s, body, len);
    if (!o) {
        reply_error(c, p, 400, NULL, p->bad_json, NULL);
        return;
    }
    const char *msg = NULL;
    int prc = p->parse(&r->pub, o, &msg);
    json_object_put(o);
    if (r->pub.model)
        a->model = xstrndup(r->pub.model, r->pub.model_len);
    a->stream = r->pub.stream;
    att_tools(a, &r->pub);
    if (prc < 0) {
        reply_error(c, p, 400, NULL, msg, NULL);
        return;
    }

    struct bb_mock_req *pub = &r->pub;
    parse_directives(pub->model, pub->model_len, &r->d);
    unsigned long nth = r->d.fail_first >= 0 || r->d.rl_limit > 0
                            ? count_attempt(s, pub->model, pub->model_len)
                            : 0;
    if (r->d.fail_first >= 0 && nth > (unsigned long)r->d.fail_first)
        clear_faults(&r->d);
    ratelimit_headers(r, nth);
    unsigned canned = r->d.words >= 0 ? (unsigned)r->d.words : DEFAULT_WORDS;
    if (pub->prefill)
        a->prefill = xstrndup(pub->prefill, strlen(pub->prefill));
    bool cont = pub->prefill && continuation(pub, canned);
    if (pub->ntools && !pub->last_is_result && r->d.tools != 0 && !cont)
        pub->ncalls = r->d.tools > 0 ? (unsigned)r->d.tools : 1;
    pub->words = pub->ncalls ? 0 : canned - pub->base;
    pub->think = (r->d.think || pub->want_think) && !cont;
    if (r->d.bigbody > 0 && !pub->ncalls) {
        pub->pad = (unsigned long)r->d.bigbody;
        if (pub->pad % PAD_UNIT == 1)
            pub->pad++; /* every padding unit holds at least one x */
        pub->npad = (unsigned)((pub->pad + PAD_UNIT - 1) / PAD_UNIT);
        pub->words += pub->npad;
    }
    pub->cached = r->d.cached > 0 ? (unsigned long)r->d.cached : 0;
    pub->cache_write = r->d.cache_write > 0 ? (unsigned long)r->d.cache_write : 0;
    pub->errcode = r->d.errcode[0] ? r->d.errcode : NULL;
    pub->errmsg = r->d.errmsg[0] ? r->d.errmsg : NULL;
    pub->call_name = r->d.call[0] ? r->d.call : NULL;
    pub->call_args = r->d.args[0] ? r->d.args : NULL;
    r->nunits = (pub->think ? 1 : 0) +
                (pub->ncalls ? (unsigned long)pub->ncalls * p->call_parts : pub->words);
    r->cut_at = fault_at(r->d.cut, r->nunits);
    r->stall_at = fault_at(r->d.stall, r->nunits);
    r->malformed_at = fault_at(r->d.malformed, r->nunits);
    r->inband_at = fault_at(r->d.inband, r->nunits);

    if (r->d.noresponse && !r->d.reset) {
        r->fault = true;
        return; /* pending until the client goes away */
    }
    if (r->d.slowfirst > 0 && (!pub->stream || r->d.status || r->d.reset || r->d.rawstatus ||
                               r->d.redirect || r->d.html)) {
        arm(c, T_PRE, r->d.slowfirst);
        return;
    }
    respond(c);
}

/* ---------------------------------------------------------------- HTTP/1.1 */

static bool path_is(const char *target, size_t plen, const char *path)
{
    return strlen(path) == plen && !memcmp(target, path, plen);
}

static bool route_is(const struct route *rt, const char *target, size_t plen)
{
    if (!rt->suffix)
        return path_is(target, plen, rt->prefix);
    size_t pl = strlen(rt->prefix), sl = strlen(rt->suffix);
    return plen > pl + sl && !memcmp(target, rt->prefix, pl) &&
           !memcmp(target + plen - sl, rt->suffix, sl);
}

static void reply_attempts(struct conn *c, const char *query)
{
    struct server *s = c->srv;
    uint64_t since = 0;
    const char *q = query ? strstr(query, "since=") : NULL;
    if (q)
        since = strtoull(q + 6, NULL, 10);
    uint64_t first = s->nseq > s->cap ? s->nseq - s->cap + 1 : 1;
    if (first <= since)
        first = since + 1;
    struct evbuffer *b = evbuffer_new();
    BB_MOCK_ADD(b, "{\"attempts\":[");
    for (uint64_t seq = first; seq <= s->nseq; seq++) {
        const struct attempt *a = &s->att[(seq - 1) % s->cap];
        if (seq != first)
            BB_MOCK_ADD(b, ",");
        att_json(s, a, b);
    }
    BB_MOCK_ADD(b, "]}");
    reply(c, 200, "application/json", b, NULL);
    evbuffer_free(b);
}

static void dispatch(struct conn *c, const char *body, size_t len)
{
    struct req *r = &c->r;
    const char *q = strchr(r->target, '?');
    size_t plen = q ? (size_t)(q - r->target) : strlen(r->target);
    bool post = !strcmp(r->method, "POST"), get = !strcmp(r->method, "GET");

    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (route_is(&routes[i], r->target, plen)) {
            if (post)
                provider(c, &routes[i], body, len);
            else
                reply_error(c, routes[i].proto, 405, NULL, "method not allowed", "Allow: POST\r\n");
            return;
        }
    }
    if (path_is(r->target, plen, "/_mock/attempts") && get) {
        reply_attempts(c, q);
    } else if (path_is(r->target, plen, "/_mock/reset") && post) {
        reset_all(c->srv);
        reply_json(c, 200, "{\"ok\":true}");
    } else if (path_is(r->target, plen, "/_mock/health") && get) {
        reply_json(c, 200, "{\"ok\":true}");
    } else {
        reply_error(c, NULL, 404, NULL, "bb-mock: no such route", NULL);
    }
}

static bool hdr_is(const char *name, size_t n, const char *want)
{
    return strlen(want) == n && !strncasecmp(name, want, n);
}

static bool has_token(const char *v, size_t n, const char *tok)
{
    size_t tl = strlen(tok);
    for (size_t i = 0; i + tl <= n; i++) {
        if (!strncasecmp(v + i, tok, tl) && (i == 0 || v[i - 1] == ',' || v[i - 1] == ' ') &&
            (i + tl == n || v[i + tl] == ',' || v[i + tl] == ' '))
            return true;
    }
    return false;
}

/* Parse a request head h[0..n) that ends in CRLF CRLF. 0, or the HTTP status to answer. */
static int parse_head(struct conn *c, const char *h, size_t n)
{
    struct req *r = &c->r;
    const char *end = h + n - 2; /* the empty line */
    const char *eol = memmem(h, n, "\r\n", 2);
    const char *sp1 = memchr(h, ' ', (size_t)(eol - h));
    if (!sp1 || sp1 == h || (size_t)(sp1 - h) >= sizeof r->method)
        return 400;
    const char *sp2 = memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1));
    if (!sp2 || sp2 == sp1 + 1)
        return 400;
    memcpy(r->method, h, (size_t)(sp1 - h));
    r->method[sp1 - h] = 0;
    if (sp2 - sp1 - 1 > MAX_TARGET)
        return 414;
    r->target = xstrndup(sp1 + 1, (size_t)(sp2 - sp1 - 1));
    size_t vl = (size_t)(eol - sp2 - 1);
    if (vl == 8 && !memcmp(sp2 + 1, "HTTP/1.1", 8))
        r->http10 = false;
    else if (vl == 8 && !memcmp(sp2 + 1, "HTTP/1.0", 8))
        r->http10 = true;
    else
        return vl >= 5 && !memcmp(sp2 + 1, "HTTP/", 5) ? 505 : 400;

    bool keepalive = !r->http10, have_cl = false;
    for (const char *p = eol + 2; p < end;) {
        const char *le = memmem(p, (size_t)(end + 2 - p), "\r\n", 2);
        const char *colon = memchr(p, ':', (size_t)(le - p));
        if (!colon || colon == p)
            return 400;
        size_t nl = (size_t)(colon - p);
        const char *v = colon + 1, *ve = le;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        size_t vn = (size_t)(ve - v);
        if (hdr_is(p, nl, "content-length")) {
            long x;
            if (!dnum(v, vn, 2000000000, &x))
                return 400;
            if (have_cl && (size_t)x != r->clen)
                return 400;
            if ((size_t)x > MAX_BODY)
                return 413;
            r->clen = (size_t)x;
            have_cl = true;
        } else if (hdr_is(p, nl, "transfer-encoding")) {
            if (!(vn == 8 && !strncasecmp(v, "identity", 8)))
                return 411; /* chunked request bodies are not supported */
        } else if (hdr_is(p, nl, "connection")) {
            if (has_token(v, vn, "close"))
                keepalive = false;
            else if (has_token(v, vn, "keep-alive"))
                keepalive = true;
        } else if (hdr_is(p, nl, "expect")) {
            r->expect100 = vn == 12 && !strncasecmp(v, "100-continue", 12);
        } else {
            static const unsigned char lens[NHDR] = {13, 9, 14, 17, 14, 12, 10, 20, 11};
            for (size_t i = 0; i < NHDR; i++) {
                if (nl == lens[i] && !strncasecmp(p, hdr_names[i], nl)) {
                    if (!r->hdr[i])
                        r->hdr[i] = xstrndup(v, vn);
                    break;
                }
            }
        }
        p = le + 2;
    }
    c->close_after = !keepalive;
    return 0;
}

static void bad_request(struct conn *c, int status)
{
    c->r.active = true;
    c->close_after = true;
    const char *msg = status == 411 ? "bb-mock: chunked request bodies are not supported"
                                    : "bb-mock: malformed HTTP request";
    reply_error(c, NULL, status, NULL, msg, NULL);
}

/* Read requests from the input buffer until one is pending or the input runs out. */
static void conn_process(struct conn *c)
{
    while (!c->dead && !c->r.active && !c->lingering) {
        struct req *r = &c->r;
        if (!r->have_head) {
            size_t len = evbuffer_get_length(c->in);
            if (!len)
                return;
            struct evbuffer_ptr start;
            evbuffer_ptr_set(c->in, &start, c->scanned > 3 ? c->scanned - 3 : 0, EVBUFFER_PTR_SET);
            struct evbuffer_ptr e = evbuffer_search(c->in, "\r\n\r\n", 4, &start);
            if (e.pos < 0) {
                c->scanned = len;
                if (len > MAX_HEAD)
                    bad_request(c, 431);
                return;
            }
            size_t hl = (size_t)e.pos + 4;
            c->scanned = 0;
            if (hl > MAX_HEAD) {
                bad_request(c, 431);
                return;
            }
            const char *h = (const char *)evbuffer_pullup(c->in, (ssize_t)hl);
            if (!h)
                abort();
            int st = parse_head(c, h, hl);
            evbuffer_drain(c->in, hl);
            if (st) {
                bad_request(c, st);
                return;
            }
            r->have_head = true;
            if (r->expect100 && evbuffer_get_length(c->in) < r->clen) {
                BB_MOCK_ADD(c->out, "HTTP/1.1 100 Continue\r\n\r\n");
                if (conn_send(c) < 0) {
                    conn_fail(c);
                    return;
                }
            }
        }
        size_t clen = r->clen;
        if (evbuffer_get_length(c->in) < clen)
            return;
        const char *body = clen ? (const char *)evbuffer_pullup(c->in, (ssize_t)clen) : "";
        if (!body)
            abort();
        r->have_head = false;
        r->active = true;
        dispatch(c, body, clen);
        evbuffer_drain(c->in, clen);
    }
}

/* End of every callback: free a dead connection, or read the next pipelined request. */
static void conn_kick(struct conn *c)
{
    if (!c->dead && !c->r.active && !c->lingering)
        conn_process(c);
    if (c->dead)
        conn_free(c);
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    assert(c->magic == CONN_MAGIC);
    int n = evbuffer_read(c->in, fd, READ_CHUNK);
    if (n > 0) {
        if (c->lingering)
            evbuffer_drain(c->in, evbuffer_get_length(c->in));
        else if (evbuffer_get_length(c->in) > MAX_INPUT)
            conn_fail(c);
    } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        conn_fail(c); /* EOF or error: the client is gone */
    } else {
        return;
    }
    conn_kick(c);
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    assert(c->magic == CONN_MAGIC);
    flush(c);
    conn_kick(c);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    assert(c->magic == CONN_MAGIC);
    enum timer_kind k = c->tk;
    c->tk = T_NONE;
    switch (k) {
    case T_PRE:
        respond(c);
        break;
    case T_PUMP:
        pump(c);
        break;
    case T_BODY:
        evbuffer_add_buffer(c->out, c->r.held);
        c->after = c->r.held_after;
        flush(c);
        break;
    case T_LINGER:
        c->dead = true;
        break;
    case T_RST:
        conn_reset(c);
        break;
    case T_NONE:
        break;
    }
    conn_kick(c);
}

static void on_accept(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    struct server *s = arg;
    assert(s->magic == SERVER_MAGIC);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct conn *c = xmalloc(sizeof *c);
    memset(c, 0, sizeof *c);
    c->magic = CONN_MAGIC;
    c->srv = s;
    c->fd = fd;
    c->in = evbuffer_new();
    c->out = evbuffer_new();
    c->rev = event_new(s->base, fd, EV_READ | EV_PERSIST, on_read, c);
    c->wev = event_new(s->base, fd, EV_WRITE | EV_PERSIST, on_write, c);
    c->timer = evtimer_new(s->base, on_timer, c);
    if (!c->in || !c->out || !c->rev || !c->wev || !c->timer)
        abort();
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    event_add(c->rev, NULL);
}

static void on_accept_error(struct evconnlistener *lis, void *arg)
{
    /* EMFILE and friends: keep serving the connections we have. */
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct server *s = arg;
    assert(s->magic == SERVER_MAGIC);
    event_base_loopbreak(s->base);
}

/* ---------------------------------------------------------------- main */

static void usage(FILE *f)
{
    fprintf(f, "usage: bb-mock [--listen HOST:PORT] [--log FILE] [--name NAME] [--keep N]\n"
               "  --listen  address to listen on (default 127.0.0.1:0; port 0 = ephemeral)\n"
               "  --log     append one JSON line per finished attempt to FILE\n"
               "  --name    name reported in each attempt (default \"mock\")\n"
               "  --keep    attempts kept in memory (default 100000)\n"
               "Prints \"ready PORT\" on stdout once listening.\n");
}

/* HOST:PORT or [V6]:PORT, numeric only; port 0 allowed (evutil_parse_sockaddr_port refuses it). */
static int parse_addr(const char *a, struct sockaddr_storage *ss, int *len)
{
    const char *colon = strrchr(a, ':');
    if (!colon || colon == a)
        return -1;
    long port;
    if (!dnum(colon + 1, strlen(colon + 1), 65535, &port))
        return -1;
    char host[64];
    size_t hl = (size_t)(colon - a);
    if (a[0] == '[' && colon[-1] == ']') {
        a++;
        hl -= 2;
    }
    if (hl >= sizeof host)
        return -1;
    memcpy(host, a, hl);
    host[hl] = 0;
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        *len = sizeof *s4;
    } else if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        *len = sizeof *s6;
    } else {
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"listen", required_argument, NULL, 'l'}, {"log", required_argument, NULL, 'o'},
        {"name", required_argument, NULL, 'n'},   {"keep", required_argument, NULL, 'k'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    const char *listen_at = "127.0.0.1:0", *logpath = NULL;
    struct server srv = {.magic = SERVER_MAGIC, .name = "mock", .logfd = -1, .cap = DEFAULT_CAP};
    int ch;
    while ((ch = getopt_long(argc, argv, "l:o:n:k:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'l':
            listen_at = optarg;
            break;
        case 'o':
            logpath = optarg;
            break;
        case 'n':
            srv.name = optarg;
            break;
        case 'k':
            srv.cap = strtoul(optarg, NULL, 10);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc || srv.cap == 0) {
        usage(stderr);
        return 2;
    }
    struct sockaddr_storage ss;
    int sslen = sizeof ss;
    if (parse_addr(listen_at, &ss, &sslen) < 0) {
        fprintf(stderr, "bb-mock: bad --listen address '%s'\n", listen_at);
        return 2;
    }
    if (logpath) {
        srv.logfd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (srv.logfd < 0) {
            fprintf(stderr, "bb-mock: %s: %s\n", logpath, strerror(errno));
            return 1;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    clock_gettime(CLOCK_MONOTONIC, &srv.t0);
    srv.att = calloc(srv.cap, sizeof *srv.att);
    srv.tok = json_tokener_new();
    srv.frame = evbuffer_new();
    struct event_config *cfg = event_config_new();
    event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
    srv.base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    if (!srv.att || !srv.tok || !srv.frame || !srv.base)
        abort();
    json_tokener_set_flags(srv.tok, JSON_TOKENER_STRICT);

    srv.lis =
        evconnlistener_new_bind(srv.base, on_accept, &srv,
                                LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
                                1024, (struct sockaddr *)&ss, sslen);
    if (!srv.lis) {
        fprintf(stderr, "bb-mock: cannot listen on %s: %s\n", listen_at, strerror(errno));
        return 1;
    }
    evconnlistener_set_error_cb(srv.lis, on_accept_error);
    struct sockaddr_storage bound;
    socklen_t blen = sizeof bound;
    getsockname(evconnlistener_get_fd(srv.lis), (struct sockaddr *)&bound, &blen);
    int port = bound.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&bound)->sin6_port)
                                           : ntohs(((struct sockaddr_in *)&bound)->sin_port);
    srv.sigterm = evsignal_new(srv.base, SIGTERM, on_signal, &srv);
    srv.sigint = evsignal_new(srv.base, SIGINT, on_signal, &srv);
    event_add(srv.sigterm, NULL);
    event_add(srv.sigint, NULL);

    printf("ready %d\n", port);
    fflush(stdout);
    event_base_dispatch(srv.base);

    /* Shutdown: attempts still pending go to the log file as they stand. */
    while (srv.conns) {
        struct conn *c = srv.conns;
        const struct attempt *a = c->r.active ? att_of(c) : NULL;
        if (a)
            att_log(&srv, a);
        conn_free(c);
    }
    evconnlistener_free(srv.lis);
    event_free(srv.sigterm);
    event_free(srv.sigint);
    reset_all(&srv);
    free(srv.att);
    json_tokener_free(srv.tok);
    evbuffer_free(srv.frame);
    event_base_free(srv.base);
    libevent_global_shutdown();
    if (srv.logfd >= 0)
        close(srv.logfd);
    return 0;
}
