/*
 * test_jdom: the DOM writer (worker/jdom.c) against json-c's own serializer, byte for byte, on
 * generated and hand-built trees: every byte in strings at every offset of the eight-byte runs,
 * numbers at the int64/uint64 edges, json-c's two kinds of doubles, null members, empty
 * containers, text longer than the writer's chunk.
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_string_bytes), cmocka_unit_test(test_write_numbers),
        cmocka_unit_test(test_write_containers),   cmocka_unit_test(test_write_long),
        cmocka_unit_test(test_write_generated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
