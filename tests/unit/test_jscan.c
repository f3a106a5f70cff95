/*
 * test_jscan: the validating JSON scanner and string unquoting (common/jscan).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/jscan.h"

/* Scan s from an exact-size heap copy so ASan catches reads past the end. */
static int scan(const char *s, size_t n, struct bb_jscan_field *f, size_t nf, int depth,
                struct bb_err *err)
{
    char *copy = malloc(n ? n : 1);
    memcpy(copy, s, n);
    int r = bb_jscan_object(copy, n, f, nf, depth, err);
    /* offsets are relative, so they stay meaningful after the copy is gone */
    free(copy);
    return r;
}

static void assert_value(const char *buf, const struct bb_jscan_field *f, enum bb_jtype t,
                         const char *want)
{
    assert_int_equal(f->type, t);
    assert_int_equal(f->len, strlen(want));
    assert_memory_equal(buf + f->off, want, f->len);
}

static void test_find_members(void **state)
{
    (void)state;
    const char *js = " {\"model\" : \"gpt-4o\", \"messages\":[{\"role\":\"user\",\"model\":1,"
                     "\"content\":\"hi \\\"there\\\"\"}],\"stream\":true,\"n\":-1.5e+3,"
                     "\"x\":null,\"o\":{\"stream\":false},\"s\\u0074op\":false} \r\n";
    struct bb_jscan_field f[] = {{.key = "model"}, {.key = "stream"}, {.key = "n"},
                                 {.key = "x"},     {.key = "o"},      {.key = "messages"},
                                 {.key = "stop"},  {.key = "absent"}};
    struct bb_err err = {{0}};
    assert_int_equal(scan(js, strlen(js), f, 8, 128, &err), 0);
    assert_value(js, &f[0], BB_JSTRING, "\"gpt-4o\"");
    assert_value(js, &f[1], BB_JBOOL, "true");
    assert_true(f[1].truthy);
    assert_value(js, &f[2], BB_JNUMBER, "-1.5e+3");
    assert_value(js, &f[3], BB_JNULL, "null");
    assert_value(js, &f[4], BB_JOBJECT, "{\"stream\":false}");
    assert_int_equal(f[5].type, BB_JARRAY);
    assert_int_equal(js[f[5].off], '[');
    assert_int_equal(js[f[5].off + f[5].len - 1], ']');
    assert_value(js, &f[6], BB_JBOOL, "false"); /* key matched after unescaping */
    assert_false(f[6].truthy);
    assert_int_equal(f[7].type, BB_JNONE);
}

static void test_duplicate_keeps_last(void **state)
{
    (void)state;
    const char *js = "{\"model\":\"a\",\"model\":[1,2]}";
    struct bb_jscan_field f[] = {{.key = "model"}};
    assert_int_equal(scan(js, strlen(js), f, 1, 8, NULL), 0);
    assert_value(js, &f[0], BB_JARRAY, "[1,2]");
}

static void test_valid_documents(void **state)
{
    (void)state;
    static const char *const ok[] = {
        "{}",
        " \t\r\n{ } \n",
        "{\"a\":[]}",
        "{\"a\":[[],{},[{}]]}",
        "{\"\":0}",
        "{\"a\":0,\"b\":-0,\"c\":0.5,\"d\":1e5,\"e\":1E-5,\"f\":-12.34e+56}",
        "{\"a\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\uD83D\\uDE00\"}",
        "{\"a\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xef\xbf\xbf\xf4\x8f\xbf\xbf\"}",
        "{\"a\":\"\x7f\"}",
        "{\"a\":true,\"b\":false,\"c\":null}",
        "{\"long string spanning several words of eight bytes each\":\"0123456789abcdef\"}",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        struct bb_err err = {{0}};
        if (scan(ok[i], strlen(ok[i]), NULL, 0, 128, &err) != 0)
            fail_msg("rejected %s: %s", ok[i], err.msg);
    }
}

static void test_invalid_documents(void **state)
{
    (void)state;
    static const struct {
        const char *js, *msg;
    } bad[] = {
        {"", "expected a JSON object, got end of input at byte 0"},
        {"  ", "expected a JSON object, got end of input at byte 2"},
        {"[]", "expected a JSON object ('{') at byte 0"},
        {"\"x\"", "expected a JSON object ('{') at byte 0"},
        {"{", "unexpected end of input at byte 1"},
        {"{\"a\"", "expected ':' at byte 4"},
        {"{\"a\":", "unexpected end of input at byte 5"},
        {"{\"a\":1", "unexpected end of input at byte 6"},
        {"{\"a\":1,}", "trailing comma at byte 6"},
        {"{\"a\":[1,]}", "trailing comma at byte 7"},
        {"{,}", "expected a member name at byte 1"},
        {"{a:1}", "expected a member name at byte 1"},
        {"{'a':1}", "expected a member name at byte 1"},
        {"{\"a\":1}x", "trailing characters after the object at byte 7"},
        {"{\"a\":1}{}", "trailing characters after the object at byte 7"},
        {"{\"a\":01}", "leading zero in number at byte 5"},
        {"{\"a\":-01}", "leading zero in number at byte 5"},
        {"{\"a\":+1}", "unexpected character at byte 5"},
        {"{\"a\":.5}", "unexpected character at byte 5"},
        {"{\"a\":1.}", "expected a digit after the decimal point at byte 7"},
        {"{\"a\":1e}", "expected a digit in the exponent at byte 7"},
        {"{\"a\":-}", "invalid number at byte 5"},
        {"{\"a\":0x1}", "expected ',' or '}' at byte 6"},
        {"{\"a\":NaN}", "unexpected character at byte 5"},
        {"{\"a\":tru}", "invalid literal at byte 5"},
        {"{\"a\":True}", "unexpected character at byte 5"},
        {"{\"a\":nul", "invalid literal at byte 5"},
        {"{\"a\":[1 2]}", "expected ',' or ']' at byte 8"},
        {"{\"a\":1]", "expected ',' or '}' at byte 6"},
        {"{\"a\":\"x}", "unterminated string starting at byte 5"},
        {"{\"a\":\"\\x\"}", "invalid escape at byte 6"},
        {"{\"a\":\"\\u12G4\"}", "invalid \\u escape at byte 6"},
        {"{\"a\":\"\\u12\"}", "invalid \\u escape at byte 6"},
        {"{\"a\":\"\\uDC00\"}", "unpaired low surrogate escape at byte 6"},
        {"{\"a\":\"\\uD800\"}", "unpaired high surrogate escape at byte 6"},
        {"{\"a\":\"\\uD800\\u0041\"}", "unpaired high surrogate escape at byte 6"},
        {"{\"a\":\"\\uD800\\n\"}", "unpaired high surrogate escape at byte 6"},
        {"{\"a\":\"tab\there\"}", "control character in string at byte 9"},
        {"{\"a\":\"nl\n\"}", "control character in string at byte 8"},
        {"{\"a\":\"\xc0\xaf\"}", "invalid UTF-8 at byte 6"},
        {"{\"a\":\"\xe0\x80\xaf\"}", "invalid UTF-8 at byte 6"},
        {"{\"a\":\"\xed\xa0\x80\"}", "invalid UTF-8 at byte 6"},
        {"{\"a\":\"\xf4\x90\x80\x80\"}", "invalid UTF-8 at byte 6"},
        {"{\"a\":\"\xf5\x80\x80\x80\"}", "invalid UTF-8 at byte 6"},
        {"{\"a\":\"\x80\"}", "invalid UTF-8 at byte 6"},
        {"{\"a\":\"\xc3\"}", "invalid UTF-8 at byte 6"},
        {"{\"a\":\"abcdefgh\xc3\"}", "invalid UTF-8 at byte 14"},
        {"{\"a\":1,/*c*/\"b\":2}", "expected a member name at byte 7"},
        {"{\"a\":1}\x00", "trailing characters after the object at byte 7"},
        {"\xef\xbb\xbf{}", "expected a JSON object ('{') at byte 0"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct bb_err err = {{0}};
        size_t n = strlen(bad[i].js);
        if (i == sizeof bad / sizeof bad[0] - 2)
            n = 8; /* the embedded NUL case */
        if (scan(bad[i].js, n, NULL, 0, 128, &err) != -1)
            fail_msg("accepted %s", bad[i].js);
        if (strcmp(err.msg, bad[i].msg) != 0)
            fail_msg("case %zu: got \"%s\", want \"%s\"", i, err.msg, bad[i].msg);
    }
}

static void test_depth(void **state)
{
    (void)state;
    char buf[3000];
    struct bb_err err = {{0}};
    /* {"a":[[[...]]]} with the object as level 1 */
    for (int levels = 1; levels <= 130; levels++) {
        size_t n = 0;
        buf[n++] = '{';
        if (levels > 1) {
            memcpy(buf + n, "\"a\":", 4);
            n += 4;
            for (int k = 1; k < levels; k++)
                buf[n++] = '[';
            for (int k = 1; k < levels; k++)
                buf[n++] = ']';
        }
        buf[n++] = '}';
        int r = scan(buf, n, NULL, 0, 128, &err);
        assert_int_equal(r, levels <= 128 ? 0 : -1);
    }
    assert_string_equal(err.msg, "nesting deeper than 128 at byte 132");
    /* a huge max_depth is capped, not trusted */
    size_t n = 0;
    buf[n++] = '{';
    memcpy(buf + n, "\"a\":", 4);
    n += 4;
    for (int k = 0; k < 1100; k++)
        buf[n++] = '[';
    assert_int_equal(scan(buf, n, NULL, 0, 1 << 30, &err), -1);
    assert_non_null(strstr(err.msg, "nesting deeper than 1024"));
}

static void test_unquote(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(bb_jscan_unquote("\"abc\"", 5, out, sizeof out), 3);
    assert_string_equal(out, "abc");
    assert_int_equal(bb_jscan_unquote("\"\"", 2, out, sizeof out), 0);
    assert_string_equal(out, "");
    const char *t = "\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\\u00e9\\u20AC\\uD83D\\uDE00z\"";
    long n = bb_jscan_unquote(t, strlen(t), out, sizeof out);
    const char *want = "a\"b\\c/d\b\f\n\r\t\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80z";
    assert_int_equal(n, (long)strlen(want));
    assert_string_equal(out, want);
    /* \u0000 decodes to a NUL inside the returned length */
    assert_int_equal(bb_jscan_unquote("\"a\\u0000b\"", 10, out, sizeof out), 3);
    assert_memory_equal(out, "a\0b", 4);
    /* capacity: exactly cap-1 fits */
    assert_int_equal(bb_jscan_unquote("\"abcd\"", 6, out, 5), 4);
    assert_int_equal(bb_jscan_unquote("\"abcd\"", 6, out, 4), -1);
    assert_int_equal(bb_jscan_unquote("\"\\u20AC\"", 8, out, 3), -1);
    assert_int_equal(bb_jscan_unquote("\"x\"", 3, out, 0), -1);
    /* malformed */
    static const char *const bad[] = {"abc",      "\"abc",    "\"a\"b\"", "\"\\q\"", "\"\\uD800\"",
                                      "\"\x01\"", "\"\xff\"", "\"",       "\"\\\""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (bb_jscan_unquote(bad[i], strlen(bad[i]), out, sizeof out) != -1)
            fail_msg("unquote accepted %s", bad[i]);
    }
}

static void test_long_strings(void **state)
{
    (void)state;
    /* every position of a special byte relative to the 8-byte fast path */
    for (size_t len = 0; len < 40; len++) {
        for (size_t pos = 0; pos <= len; pos++) {
            char buf[64];
            size_t n = 0;
            memcpy(buf, "{\"k\":\"", 6);
            n = 6;
            for (size_t i = 0; i < len; i++)
                buf[n++] = 'a';
            buf[n++] = '"';
            buf[n++] = '}';
            struct bb_jscan_field f[] = {{.key = "k"}};
            assert_int_equal(scan(buf, n, f, 1, 4, NULL), 0);
            assert_int_equal(f[0].len, len + 2);
            if (pos < len) {
                buf[6 + pos] = '\x1f';
                struct bb_err err = {{0}};
                assert_int_equal(scan(buf, n, f, 1, 4, &err), -1);
                char want[64];
                snprintf(want, sizeof want, "control character in string at byte %zu", 6 + pos);
                assert_string_equal(err.msg, want);
                buf[6 + pos] = '\xc3'; /* truncated UTF-8 */
                assert_int_equal(scan(buf, n, f, 1, 4, &err), -1);
                buf[6 + pos] = '\\';
                assert_int_equal(scan(buf, n, f, 1, 4, &err), -1);
            }
        }
    }
}

static void test_nested_helpers(void **state)
{
    (void)state;
    const char *o =
        "{\"choices\": [ {\"delta\":{\"content\":\"a]}\\\"\"}} , 7, \"x,y\", [1,[2]] ,null],"
        "\"usage\":{\"prompt_tokens\":12,\"d\":{\"c\":3.0},\"big\":99999999999999999999999,"
        "\"neg\":-1,\"e\":2e3}}";
    struct bb_jscan_field f[2] = {{.key = "choices"}, {.key = "usage"}};
    assert_int_equal(scan(o, strlen(o), f, 2, 16, NULL), 0);
    const char *arr = o + f[0].off;
    struct bb_jscan_field e;
    assert_true(bb_jscan_element(arr, f[0].len, 0, &e));
    assert_int_equal(e.type, BB_JOBJECT);
    struct bb_jscan_field d, c;
    bb_jscan_member(arr + e.off, e.len, "delta", &d);
    assert_int_equal(d.type, BB_JOBJECT);
    bb_jscan_member(arr + e.off + d.off, d.len, "content", &c);
    assert_int_equal(c.type, BB_JSTRING);
    assert_int_equal(c.len, 7); /* "a]}\"" */
    assert_true(bb_jscan_element(arr, f[0].len, 1, &e));
    assert_int_equal(e.type, BB_JNUMBER);
    assert_memory_equal(arr + e.off, "7", 1);
    assert_int_equal(e.len, 1);
    assert_true(bb_jscan_element(arr, f[0].len, 2, &e));
    assert_int_equal(e.type, BB_JSTRING);
    assert_int_equal(e.len, 5);
    assert_true(bb_jscan_element(arr, f[0].len, 3, &e));
    assert_int_equal(e.type, BB_JARRAY);
    assert_int_equal(e.len, 7);
    assert_true(bb_jscan_element(arr, f[0].len, 4, &e));
    assert_int_equal(e.type, BB_JNULL);
    assert_int_equal(e.len, 4);
    assert_false(bb_jscan_element(arr, f[0].len, 5, &e));
    assert_false(bb_jscan_element("[]", 2, 0, &e));
    assert_false(bb_jscan_element("{}", 2, 0, &e));
    const char *u = o + f[1].off;
    uint64_t v;
    assert_true(bb_jscan_member_u64(u, f[1].len, "prompt_tokens", &v));
    assert_int_equal(v, 12);
    assert_true(bb_jscan_member_u64(u, f[1].len, "big", &v));
    assert_true(v == UINT64_MAX);
    assert_false(bb_jscan_member_u64(u, f[1].len, "neg", &v));
    assert_false(bb_jscan_member_u64(u, f[1].len, "absent", &v));
    assert_true(bb_jscan_member_u64(u, f[1].len, "e", &v));
    assert_int_equal(v, 2000);
    bb_jscan_member(u, f[1].len, "d", &d);
    assert_true(bb_jscan_member_u64(u + d.off, d.len, "c", &v));
    assert_int_equal(v, 3);
    bb_jscan_member("[1]", 3, "x", &d);
    assert_int_equal(d.type, BB_JNONE);
}

/* bb_jscan_request: duplicate top-level names are refused, compared after unescaping;
 * nested duplicates and different names are fine (issue 9 #6). */
static void test_request_duplicates(void **state)
{
    (void)state;
    struct bb_err err;
    struct bb_jscan_field f[] = {{.key = "model"}, {.key = "max_tokens"}};
    const char *dup = "{\"model\":\"expensive\",\"max_tokens\":100000,\"model\":\"p\","
                      "\"max_tokens\":1}";
    assert_int_equal(bb_jscan_object(dup, strlen(dup), f, 2, 64, &err), 0); /* last wins */
    assert_int_equal(bb_jscan_request(dup, strlen(dup), f, 2, 64, &err), -1);
    assert_non_null(strstr(err.msg, "duplicate member \"model\""));
    const char *esc = "{\"model\":\"a\",\"\\u006dodel\":\"b\"}";
    assert_int_equal(bb_jscan_request(esc, strlen(esc), f, 2, 64, &err), -1);
    const char *other = "{\"temperature\":1,\"x\":{\"a\":1,\"a\":2},\"temperature\":2}";
    assert_int_equal(bb_jscan_request(other, strlen(other), NULL, 0, 64, &err), -1);
    const char *fine = "{\"model\":\"p\",\"x\":{\"a\":1,\"a\":2},\"modelx\":1,\"mode\":2}";
    assert_int_equal(bb_jscan_request(fine, strlen(fine), f, 2, 64, &err), 0);
    assert_int_equal(f[0].type, BB_JSTRING);
    /* many distinct members are fine up to the bound */
    char *big = malloc(20 * 1100);
    size_t n = 0;
    big[n++] = '{';
    for (int k = 0; k < BB_JSCAN_MEMBERS_MAX; k++)
        n += (size_t)sprintf(big + n, "%s\"k%d\":%d", k ? "," : "", k, k);
    big[n++] = '}';
    assert_int_equal(bb_jscan_request(big, n, NULL, 0, 64, &err), 0);
    n--;
    n += (size_t)sprintf(big + n, ",\"one_more\":1}");
    assert_int_equal(bb_jscan_request(big, n, NULL, 0, 64, &err), -1);
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find_members),
        cmocka_unit_test(test_duplicate_keeps_last),
        cmocka_unit_test(test_valid_documents),
        cmocka_unit_test(test_invalid_documents),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_unquote),
        cmocka_unit_test(test_long_strings),
        cmocka_unit_test(test_nested_helpers),
        cmocka_unit_test(test_request_duplicates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
