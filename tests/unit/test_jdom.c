/*
 * test_jdom: the DOM writer and the one-pass parser (worker/jdom.c) against json-c itself.
 * The writer against json-c's serializer, byte for byte, on generated and hand-built trees:
 * every byte in strings at every offset of the eight-byte runs, numbers at the int64/uint64
 * edges, json-c's two kinds of doubles, null members, empty containers, text longer than the
 * writer's chunk. The parser against the reference path (bb_json_parse_ref: the validating
 * scanner, then json-c's strict tokener) on generated documents, mutations of them and
 * hand-written corners: the same accept/reject and message, the same tree (types, int64 vs
 * uint64, double values and their text, key order, string bytes), and it declines no valid
 * document below the nesting limit.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "worker/jdom.h"
#include "worker/json.h"

#define OUT_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

/* ---- a small deterministic generator ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return n ? (uint32_t)(rng_state % n) : 0;
}

struct text {
    char *p;
    size_t n, cap;
};

static void put(struct text *t, const char *s, size_t n)
{
    if (t->n + n + 1 > t->cap) {
        t->cap = (t->n + n + 1) * 2;
        t->p = realloc(t->p, t->cap);
        assert_non_null(t->p);
    }
    memcpy(t->p + t->n, s, n);
    t->n += n;
    t->p[t->n] = '\0';
}

static void puts_(struct text *t, const char *s)
{
    put(t, s, strlen(s));
}

static void ws(struct text *t)
{
    static const char *const w[] = {"", "", "", " ", "\n", "\t", "\r\n  "};
    puts_(t, w[rnd(7)]);
}

/* Numbers at the edges of json-c's integer classes, its doubles, and plain ones. */
static const char *const numbers[] = {"0",
                                      "-0",
                                      "1",
                                      "-1",
                                      "42",
                                      "-42",
                                      "0.0",
                                      "-0.0",
                                      "1.0",
                                      "0.5",
                                      "-0.25",
                                      "1e5",
                                      "1E5",
                                      "1e+5",
                                      "1e-5",
                                      "1E-0",
                                      "-0e0",
                                      "0e0",
                                      "1.5e300",
                                      "1e400",
                                      "-1e400",
                                      "1e-400",
                                      "2.5E-308",
                                      "123456789012345678",
                                      "-123456789012345678",
                                      "999999999999999999",
                                      "1000000000000000000",
                                      "-999999999999999999",
                                      "-1000000000000000000",
                                      "9223372036854775806",
                                      "9223372036854775807",
                                      "9223372036854775808",
                                      "-9223372036854775807",
                                      "-9223372036854775808",
                                      "-9223372036854775809",
                                      "18446744073709551615",
                                      "18446744073709551616",
                                      "99999999999999999999999",
                                      "-99999999999999999999999",
                                      "0.1",
                                      "0.7",
                                      "3.141592653589793",
                                      "1.7976931348623157e308",
                                      "4.9e-324",
                                      "100000000000000000000.0",
                                      "12.50",
                                      "1.000000000000000001",
                                      "00000000000000000001e1" /* invalid: leading zero */};

/* A string body (without quotes) with escapes, raw UTF-8 and plain runs. */
static void gen_string_body(struct text *t)
{
    static const char *const pieces[] = {"a",
                                         "hello world",
                                         "abcdefghijklmnop",
                                         "\\\"",
                                         "\\\\",
                                         "\\/",
                                         "/",
                                         "\\b",
                                         "\\f",
                                         "\\n",
                                         "\\r",
                                         "\\t",
                                         "\\u0000",
                                         "\\u0001",
                                         "\\u001f",
                                         "\\u001F",
                                         "\\u0020",
                                         "\\u007f",
                                         "\\u0080",
                                         "\\u00e9",
                                         "\\u00E9",
                                         "\\u07ff",
                                         "\\u0800",
                                         "\\uffff",
                                         "\\ud83d\\ude00",
                                         "\\uDBFF\\uDFFF",
                                         "\\ud800\\udc00",
                                         "\xc3\xa9",
                                         "\xe2\x82\xac",
                                         "\xf0\x9f\x98\x80",
                                         "\x7f",
                                         "\xef\xbf\xbf",
                                         "\xf4\x8f\xbf\xbf",
                                         "\\u0041",
                                         "x y",
                                         "\xed\x9f\xbf"};
    int n = (int)rnd(6);
    for (int i = 0; i < n; i++)
        puts_(t, pieces[rnd(sizeof pieces / sizeof *pieces)]);
}

static void gen_value(struct text *t, int depth);

static void gen_container(struct text *t, int depth, bool object)
{
    static const char *const keys[] = {"a",         "b",       "model", "messages", "",
                                       "k\\u0000z", "\\u0061", "role",  "x/y",      "\\n"};
    int n = (int)rnd(depth > 4 ? 3 : 7);
    puts_(t, object ? "{" : "[");
    ws(t);
    for (int i = 0; i < n; i++) {
        if (i) {
            puts_(t, ",");
            ws(t);
        }
        if (object) {
            puts_(t, "\"");
            if (rnd(4))
                puts_(t, keys[rnd(sizeof keys / sizeof *keys)]);
            else
                gen_string_body(t);
            puts_(t, "\"");
            ws(t);
            puts_(t, ":");
            ws(t);
        }
        gen_value(t, depth + 1);
        ws(t);
    }
    puts_(t, object ? "}" : "]");
}

static void gen_value(struct text *t, int depth)
{
    switch (rnd(depth > 6 ? 6 : 9)) {
    case 0:
        puts_(t, rnd(2) ? "true" : "false");
        break;
    case 1:
        puts_(t, "null");
        break;
    case 2:
    case 3:
        puts_(t, numbers[rnd(sizeof numbers / sizeof *numbers - 1)]);
        break;
    case 4:
    case 5:
        puts_(t, "\"");
        gen_string_body(t);
        puts_(t, "\"");
        break;
    case 6:
    case 7:
        gen_container(t, depth, true);
        break;
    default:
        gen_container(t, depth, false);
        break;
    }
}

/* A document: mostly an object or array, sometimes a bare scalar. */
static void gen_doc(struct text *t)
{
    t->n = 0;
    ws(t);
    if (rnd(8) == 0)
        gen_value(t, 0);
    else
        gen_container(t, 0, rnd(3) != 0);
    ws(t);
}

/* ---- the writer against json-c ---- */

/* bb_jdom_write's bytes must be json-c's. */
static void check_write(json_object *o)
{
    size_t wn = 0;
    const char *want = json_object_to_json_string_length(o, OUT_FLAGS, &wn);
    if (!o) {
        want = "null";
        wn = 4;
    }
    assert_non_null(want);
    struct evbuffer *b = evbuffer_new();
    assert_int_equal(bb_jdom_write(b, "<", o, ">"), 0);
    size_t gn = evbuffer_get_length(b);
    const char *got = (const char *)evbuffer_pullup(b, -1);
    if (gn != wn + 2 || memcmp(got + 1, want, wn) != 0 || got[0] != '<' || got[gn - 1] != '>')
        fail_msg("writer differs from json-c:\n want %.*s\n got  %.*s", (int)wn, want, (int)gn,
                 got);
    /* bb_json_append writes the same without the frame */
    evbuffer_drain(b, gn);
    assert_int_equal(bb_json_append(b, o), 0);
    assert_int_equal(evbuffer_get_length(b), wn);
    assert_memory_equal(evbuffer_pullup(b, -1), want, wn);
    evbuffer_free(b);
}

static json_object *jsonc_parse(const char *p, size_t len)
{
    json_tokener *tok = json_tokener_new_ex(JSON_TOKENER_DEFAULT_DEPTH);
    json_object *o = json_tokener_parse_ex(tok, p, (int)len);
    if (json_tokener_get_error(tok) == json_tokener_continue)
        o = json_tokener_parse_ex(tok, " ", 1);
    json_tokener_free(tok);
    return o;
}

/* Every byte value at every offset of the first two eight-byte runs, in values and keys. */
static void test_write_string_bytes(void **state)
{
    (void)state;
    char s[40];
    for (size_t len = 0; len <= 24; len++) {
        for (size_t at = 0; at < len; at++) {
            for (int c = 0; c < 256; c++) {
                memset(s, 'x', len);
                s[at] = (char)c;
                if (at + 9 < len)
                    s[at + 9] = (char)(255 - c);
                json_object *v = json_object_new_string_len(s, (int)len);
                check_write(v);
                s[len] = '\0';
                json_object *o = json_object_new_object();
                json_object_object_add(o, s, v); /* the key stops at a NUL, as in json-c */
                check_write(o);
                json_object_put(o);
            }
        }
    }
}

static void test_write_numbers(void **state)
{
    (void)state;
    static const int64_t ints[] = {0,         1,
                                   -1,        9,
                                   10,        99,
                                   100,       -100,
                                   123456789, INT32_MAX,
                                   INT32_MIN, (int64_t)INT32_MAX + 1,
                                   INT64_MAX, INT64_MAX - 1,
                                   INT64_MIN, INT64_MIN + 1};
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++) {
        json_object *o = json_object_new_int64(ints[i]);
        check_write(o);
        json_object_put(o);
        o = json_object_new_int((int32_t)ints[i]);
        check_write(o);
        json_object_put(o);
    }
    static const uint64_t uints[] = {0,
                                     1,
                                     (uint64_t)INT64_MAX,
                                     (uint64_t)INT64_MAX + 1,
                                     UINT64_MAX - 1,
                                     UINT64_MAX,
                                     10000000000000000000ull};
    for (size_t i = 0; i < sizeof uints / sizeof *uints; i++) {
        json_object *o = json_object_new_uint64(uints[i]);
        check_write(o);
        json_object_put(o);
        o = bb_json_new_u64(uints[i]);
        check_write(o);
        json_object_put(o);
    }
    static const double dbls[] = {0.0,  -0.0, 1.0,    0.7,      1e300,     1e-300, 123456789.125,
                                  -2.5, 1e22, 5e-324, INFINITY, -INFINITY, NAN};
    for (size_t i = 0; i < sizeof dbls / sizeof *dbls; i++) {
        json_object *o = json_object_new_double(dbls[i]);
        check_write(o);
        json_object_put(o);
        o = bb_json_new_double(dbls[i]);
        check_write(o);
        json_object_put(o);
        o = json_object_new_double_s(dbls[i], "1.50e0");
        check_write(o);
        json_object_put(o);
    }
    json_object *t = json_object_new_boolean(1), *f = json_object_new_boolean(0);
    check_write(t);
    check_write(f);
    json_object_put(t);
    json_object_put(f);
    check_write(NULL);
}

/* Null members and elements, empty containers, nesting. */
static void test_write_containers(void **state)
{
    (void)state;
    json_object *o = json_object_new_object();
    check_write(o);
    json_object_object_add(o, "n", NULL);
    json_object_object_add(o, "e", json_object_new_object());
    json_object *a = json_object_new_array();
    check_write(a);
    json_object_array_add(a, NULL);
    json_object_array_add(a, json_object_new_array());
    json_object_array_add(a, json_object_new_object());
    json_object_array_put_idx(a, 5, json_object_new_int(5)); /* 3 and 4 are holes */
    json_object_object_add(o, "a", a);
    json_object_object_add(o, "s/\"\\", json_object_new_string("v/\x01"));
    check_write(o);
    json_object_put(o);
}

/* Text longer than the writer's chunk: long strings, many members, long runs of escapes. */
static void test_write_long(void **state)
{
    (void)state;
    size_t sizes[] = {2047, 2048, 2049, 4095, 4096, 4097, 10000, 70000};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        char *s = malloc(sizes[k]);
        for (size_t i = 0; i < sizes[k]; i++)
            s[i] = (char)(k % 2 ? 'a' + i % 26 : (i % 7 == 0 ? '\n' : 'b'));
        json_object *o = json_object_new_object();
        json_object_object_add(o, "p", json_object_new_string_len(s, (int)sizes[k]));
        json_object *a = json_object_new_array();
        for (size_t i = 0; i < sizes[k] / 8; i++)
            json_object_array_add(a, json_object_new_int64((int64_t)i * 1000003));
        json_object_object_add(o, "a", a);
        check_write(o);
        json_object_put(o);
        free(s);
    }
}

/* Generated documents as json-c reads them (lenient: whatever it builds is written). */
static void test_write_generated(void **state)
{
    (void)state;
    struct text t = {0};
    for (int i = 0; i < 20000; i++) {
        gen_doc(&t);
        json_object *o = jsonc_parse(t.p, t.n);
        check_write(o);
        json_object_put(o);
    }
    free(t.p);
}

/* ---- the parser against the reference path ---- */

/* a and b are the same tree: types, values, int64/uint64 class, doubles' bits and text, keys
 * in order, string bytes. */
static void check_same_tree(json_object *a, json_object *b, const char *doc)
{
    if (!a || !b) {
        if (a != b)
            fail_msg("one tree has null where the other has a value in %s", doc);
        return;
    }
    enum json_type t = json_object_get_type(a);
    if (t != json_object_get_type(b))
        fail_msg("types %d and %d differ in %s", t, json_object_get_type(b), doc);
    switch (t) {
    case json_type_boolean:
        assert_int_equal(json_object_get_boolean(a), json_object_get_boolean(b));
        break;
    case json_type_int:
        if (json_object_get_int64(a) != json_object_get_int64(b) ||
            json_object_get_uint64(a) != json_object_get_uint64(b))
            fail_msg("integers differ in %s", doc);
        break;
    case json_type_double: {
        double x = json_object_get_double(a), y = json_object_get_double(b);
        if (memcmp(&x, &y, sizeof x) != 0)
            fail_msg("doubles %.17g and %.17g differ in %s", x, y, doc);
        assert_string_equal(json_object_to_json_string_ext(a, OUT_FLAGS),
                            json_object_to_json_string_ext(b, OUT_FLAGS));
        break;
    }
    case json_type_string:
        if (json_object_get_string_len(a) != json_object_get_string_len(b) ||
            memcmp(json_object_get_string(a), json_object_get_string(b),
                   (size_t)json_object_get_string_len(a)) != 0)
            fail_msg("strings differ in %s", doc);
        break;
    case json_type_array: {
        size_t n = json_object_array_length(a);
        assert_int_equal(n, json_object_array_length(b));
        for (size_t i = 0; i < n; i++)
            check_same_tree(json_object_array_get_idx(a, i), json_object_array_get_idx(b, i), doc);
        break;
    }
    case json_type_object: {
        assert_int_equal(json_object_object_length(a), json_object_object_length(b));
        struct lh_entry *ea = json_object_get_object(a)->head;
        struct lh_entry *eb = json_object_get_object(b)->head;
        for (; ea && eb; ea = ea->next, eb = eb->next) {
            if (strcmp((const char *)lh_entry_k(ea), (const char *)lh_entry_k(eb)) != 0)
                fail_msg("keys \"%s\" and \"%s\" differ in %s", (const char *)lh_entry_k(ea),
                         (const char *)lh_entry_k(eb), doc);
            check_same_tree((json_object *)lh_entry_v(ea), (json_object *)lh_entry_v(eb), doc);
        }
        assert_true(ea == NULL && eb == NULL);
        break;
    }
    default:
        break;
    }
}

static struct {
    unsigned accepted, rejected, declined_valid, null_docs;
} stats;

/* bb_json_parse and bb_jdom_parse against bb_json_parse_ref on p[0..len). Returns whether the
 * reference accepted it. */
static bool check_parse(const char *p, size_t len)
{
    char doc[200];
    snprintf(doc, sizeof doc, "document (%zu bytes) %.*s", len, len > 120 ? 120 : (int)len, p);
    struct bb_err eref = {0}, egot = {0};
    json_object *ref = bb_json_parse_ref(p, len, "doc", &eref);
    bool null_doc = !ref && strstr(eref.msg, "got null") != NULL;
    bool ok = ref || null_doc;
    json_object *got = bb_json_parse(p, len, "doc", &egot);
    json_object *fast = NULL;
    int frc = bb_jdom_parse(p, len, 128, &fast);

    if (ok && !ref)
        stats.null_docs++;
    if (ok)
        stats.accepted++;
    else
        stats.rejected++;
    /* the public parse: same verdict, same message, same tree */
    if (!ref || !got) {
        if (ref || got)
            fail_msg("bb_json_parse %s what the reference %s: %s", got ? "accepts" : "refuses",
                     ref ? "accepts" : "refuses", doc);
        if (strcmp(eref.msg, egot.msg) != 0)
            fail_msg("messages differ:\n ref %s\n got %s\n for %s", eref.msg, egot.msg, doc);
    }
    check_same_tree(ref, got, doc);
    /* the one-pass parser itself: accepts only what the reference accepts, builds its tree */
    if (frc == 0) {
        if (!ok)
            fail_msg("the one-pass parser accepts what the reference refuses (%s): %s", eref.msg,
                     doc);
        check_same_tree(ref, fast, doc);
        if (ref)
            check_write(fast);
    } else if (ok) {
        stats.declined_valid++;
    }
    json_object_put(ref);
    json_object_put(got);
    json_object_put(fast);
    return ok;
}

/* Generated documents: the one-pass parser must build each one, and the same tree. */
static void test_parse_generated(void **state)
{
    (void)state;
    struct text t = {0};
    memset(&stats, 0, sizeof stats);
    for (int i = 0; i < 30000; i++) {
        gen_doc(&t);
        assert_true(check_parse(t.p, t.n));
    }
    print_message("# generated: %u accepted (%u null), %u valid ones declined\n", stats.accepted,
                  stats.null_docs, stats.declined_valid);
    assert_int_equal(stats.declined_valid, 0);
    free(t.p);
}

/* Mutations of generated documents: mostly invalid text of every kind, some valid. */
static void test_parse_mutated(void **state)
{
    (void)state;
    static const char bytes[] =
        "\"\\,:{}[] \t0-.eE+xu/tfnal1\x01\x1f\x7f\x80\xbf\xc3\xe2\xed\xf0\xf4\xff\v\f";
    struct text t = {0}, m = {0};
    memset(&stats, 0, sizeof stats);
    for (int i = 0; i < 30000; i++) {
        gen_doc(&t);
        if (t.n == 0)
            continue;
        for (int k = 0; k < 4; k++) {
            m.n = 0;
            size_t at = rnd((uint32_t)t.n);
            switch (rnd(5)) {
            case 0: /* delete a byte */
                put(&m, t.p, at);
                put(&m, t.p + at + 1, t.n - at - 1);
                break;
            case 1: /* insert a byte */
                put(&m, t.p, at);
                put(&m, &bytes[rnd(sizeof bytes - 1)], 1);
                put(&m, t.p + at, t.n - at);
                break;
            case 2: /* replace a byte */
                put(&m, t.p, t.n);
                m.p[at] = bytes[rnd(sizeof bytes - 1)];
                break;
            case 3: /* truncate */
                put(&m, t.p, at);
                break;
            default: /* a slice twice */
                put(&m, t.p, at);
                put(&m, t.p + at / 2, t.n - at / 2);
                break;
            }
            check_parse(m.p, m.n);
        }
    }
    print_message("# mutated: %u accepted, %u refused, %u valid ones declined\n", stats.accepted,
                  stats.rejected, stats.declined_valid);
    assert_true(stats.rejected > 50000 && stats.accepted > 1000);
    assert_int_equal(stats.declined_valid, 0);
    free(t.p);
    free(m.p);
}

#define DOC(s)                                                                                     \
    {                                                                                              \
        s, sizeof(s) - 1                                                                           \
    }

/* Hand-written corners of RFC 8259, json-c and the scanner. */
static void test_parse_corners(void **state)
{
    (void)state;
    static const struct {
        const char *p;
        size_t n;
    } docs[] = {
        DOC(""),
        DOC(" "),
        DOC("n"),
        DOC("nul"),
        DOC("null"),
        DOC(" null "),
        DOC("nullx"),
        DOC("True"),
        DOC("true"),
        DOC("false"),
        DOC("falsey"),
        DOC("NaN"),
        DOC("Infinity"),
        DOC("-Infinity"),
        DOC("'a'"),
        DOC("{'a':1}"),
        DOC("{a:1}"),
        DOC("[1,]"),
        DOC("{\"a\":1,}"),
        DOC("[,1]"),
        DOC("{,}"),
        DOC("[1 2]"),
        DOC("{\"a\" 1}"),
        DOC("{\"a\":}"),
        DOC("{\"a\":1 \"b\":2}"),
        DOC("{\"a\"}"),
        DOC("{1:2}"),
        DOC("["),
        DOC("]"),
        DOC("{"),
        DOC("}"),
        DOC("[[]"),
        DOC("[]]"),
        DOC("01"),
        DOC("-01"),
        DOC("00"),
        DOC("1."),
        DOC(".5"),
        DOC("1e"),
        DOC("1e+"),
        DOC("1E-"),
        DOC("+1"),
        DOC("--1"),
        DOC("-"),
        DOC("0x10"),
        DOC("1.5.5"),
        DOC("1e5e5"),
        DOC("-0"),
        DOC("-0.0"),
        DOC("0"),
        DOC("1e400"),
        DOC("-1e400"),
        DOC("1e-400"),
        DOC("123456789012345678901234567890"),
        DOC("-123456789012345678901234567890"),
        DOC("9223372036854775807"),
        DOC("9223372036854775808"),
        DOC("18446744073709551615"),
        DOC("18446744073709551616"),
        DOC("-9223372036854775808"),
        DOC("-9223372036854775809"),
        DOC("[1e2,-1.50,0.0e-0]"),
        DOC("\"\\x\""),
        DOC("\"\\u12\""),
        DOC("\"\\u12g4\""),
        DOC("\"\\U0041\""),
        DOC("\"\\ud800\""),
        DOC("\"\\udc00\""),
        DOC("\"\\ud800\\u0041\""),
        DOC("\"\\ud800\\ud800\""),
        DOC("\"\\ud800x\""),
        DOC("\"\\udbff\\udfff\""),
        DOC("\"\xc0\x80\""),
        DOC("\"\xc1\xbf\""),
        DOC("\"\xed\xa0\x80\""),
        DOC("\"\xf4\x90\x80\x80\""),
        DOC("\"\xf5\x80\x80\x80\""),
        DOC("\"\xc3\""),
        DOC("\"\xe2\x82\""),
        DOC("\"\x80\""),
        DOC("\"\xff\""),
        DOC("\"a\x01b\""),
        DOC("\"a\tb\""),
        DOC("\"a\nb\""),
        DOC("\"\x7f\""),
        DOC("\"a"),
        DOC("\"a\\"),
        DOC("\"a\\\""),
        DOC("1 2"),
        DOC("[] x"),
        DOC("{}\v"),
        DOC("{}\f"),
        DOC("\v{}"),
        DOC("[1]\0"),
        DOC("\0"),
        DOC("{}\r\n\t "),
        DOC("\xef\xbb\xbf{}"),
        DOC("\"\\u0000\""),
        DOC("\"a\\u0000b\""),
        DOC("{\"\\u0000\":1,\"\":2}"),
        DOC("{\"a\\u0000b\":1,\"a\":2,\"c\":3}"),
        DOC("{\"a\":1,\"a\":{},\"b\":2,\"a\":[3]}"),
        DOC("{\"a\":null,\"a\":1}"),
        DOC("{\"a\":1,\"a\":null}"),
        DOC("[null,null]"),
        DOC("{\"\\u0061\":1,\"a\":2}"),
        DOC("\"\\/\\b\\f\\n\\r\\t\\\"\\\\\""),
        DOC("\"\\u00e9\\u00E9\\u20ac\\uFFFF\""),
        DOC("{\"\":\"\"}"),
        DOC("[[],{},[{}]]"),
    };
    memset(&stats, 0, sizeof stats);
    for (size_t i = 0; i < sizeof docs / sizeof *docs; i++)
        check_parse(docs[i].p, docs[i].n);
    print_message("# corners: %u accepted, %u refused, %u valid ones declined\n", stats.accepted,
                  stats.rejected, stats.declined_valid);
    assert_int_equal(stats.declined_valid, 0);
}

/* Nesting around the limit, in several shapes; the one-pass parser takes up to 127 levels. */
static void test_parse_depth(void **state)
{
    (void)state;
    static const char *const shapes[][3] = {
        {"[", "]", ""},         {"[", "]", "1"},           {"{\"a\":", "}", "1"},
        {"{\"a\":", "}", "{}"}, {"[", "]", "[]"},          {"{\"a\":", "}", "\"s\""},
        {"[1,", "]", "null"},   {"[{\"k\":[", "]}]", "2"},
    };
    struct text t = {0};
    memset(&stats, 0, sizeof stats);
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        for (int d = 120; d <= 131; d++) {
            t.n = 0;
            for (int i = 0; i < d; i++)
                puts_(&t, shapes[s][0]);
            puts_(&t, shapes[s][2]);
            for (int i = 0; i < d; i++)
                puts_(&t, shapes[s][1]);
            check_parse(t.p, t.n);
            json_object *fast = NULL;
            if (d < 40 || (d <= 125 && strlen(shapes[s][0]) < 5)) {
                assert_int_equal(bb_jdom_parse(t.p, t.n, 128, &fast), 0);
                json_object_put(fast);
            }
        }
    }
    print_message("# depth: %u accepted, %u refused, %u valid ones declined\n", stats.accepted,
                  stats.rejected, stats.declined_valid);
    free(t.p);
}

/* Long strings (escaped ones past the scratch size it keeps), long keys, many members. */
static void test_parse_long(void **state)
{
    (void)state;
    size_t sizes[] = {255, 256, 257, 5000, 70000, 200000};
    struct text t = {0};
    memset(&stats, 0, sizeof stats);
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        for (int esc = 0; esc < 2; esc++) {
            t.n = 0;
            puts_(&t, "{\"");
            for (size_t i = 0; i < sizes[k]; i++)
                puts_(&t, esc && i % 3 == 0 ? "\\n" : "k");
            puts_(&t, "\":[\"");
            for (size_t i = 0; i < sizes[k]; i++)
                puts_(&t, esc && i % 5 == 0 ? "\\u00e9" : "\xc3\xa9");
            puts_(&t, "\"");
            for (size_t i = 0; i < sizes[k] / 16; i++)
                puts_(&t, ",1.5,-7,\"x\"");
            puts_(&t, "]}");
            assert_true(check_parse(t.p, t.n));
        }
    }
    assert_int_equal(stats.declined_valid, 0);
    free(t.p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_string_bytes), cmocka_unit_test(test_write_numbers),
        cmocka_unit_test(test_write_containers),   cmocka_unit_test(test_write_long),
        cmocka_unit_test(test_write_generated),    cmocka_unit_test(test_parse_generated),
        cmocka_unit_test(test_parse_mutated),      cmocka_unit_test(test_parse_corners),
        cmocka_unit_test(test_parse_depth),        cmocka_unit_test(test_parse_long),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
