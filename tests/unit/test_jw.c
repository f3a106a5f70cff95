/*
 * test_jw: the JSON text writer (worker/jw.h) against byte-at-a-time references: string
 * escaping with every special byte at every offset of the eight-byte runs, numbers against
 * printf, hex, and the full-buffer rule.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "worker/jw.h"

/* What jw_strn must write: the plain byte loop. */
static size_t ref_str(const char *s, size_t n, char *out)
{
    size_t o = 0;
    out[o++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20) {
            o += (size_t)sprintf(out + o, "\\u%04x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o++] = '"';
    return o;
}

static void check_str(const char *s, size_t n)
{
    char want[1024], got[1024];
    size_t wn = ref_str(s, n, want);
    struct jw w = {got, 0, sizeof got, false};
    jw_strn(&w, s, n);
    assert_false(w.full);
    assert_int_equal(w.n, wn);
    assert_memory_equal(got, want, wn);
}

static void test_strings(void **state)
{
    (void)state;
    static const unsigned char special[] = {'"',  '\\', 0x00, 0x01, 0x1f, '\n',
                                            0x7f, 0x80, 0xc3, 0xff, ' ',  'a'};
    char s[64];
    for (size_t len = 0; len <= 40; len++) {
        for (size_t at = 0; at < len; at++) {
            for (size_t k = 0; k < sizeof special; k++) {
                memset(s, 'x', len);
                s[at] = (char)special[k];
                check_str(s, len);
                if (at + 9 < len) { /* a second one in the next word */
                    s[at + 9] = '"';
                    check_str(s, len);
                }
            }
        }
        memset(s, 'y', len);
        check_str(s, len);
    }
    check_str("caf\xc3\xa9 \"quoted\" back\\slash\ttab", 30);
}

static void test_numbers(void **state)
{
    (void)state;
    static const uint64_t v[] = {0,
                                 1,
                                 9,
                                 10,
                                 11,
                                 99,
                                 100,
                                 101,
                                 999,
                                 1000,
                                 12345,
                                 1700000000,
                                 1765155600123456789ull,
                                 UINT64_MAX - 1,
                                 UINT64_MAX};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        char want[32], got[32];
        int wn = snprintf(want, sizeof want, "%llu", (unsigned long long)v[i]);
        struct jw w = {got, 0, sizeof got, false};
        jw_u64(&w, v[i]);
        assert_int_equal(w.n, (size_t)wn);
        assert_memory_equal(got, want, (size_t)wn);
    }
    for (uint64_t x = 0; x < 100000; x += 7) {
        char want[32], got[32];
        int wn = snprintf(want, sizeof want, "%llu", (unsigned long long)x);
        struct jw w = {got, 0, sizeof got, false};
        jw_u64(&w, x);
        assert_int_equal(w.n, (size_t)wn);
        assert_memory_equal(got, want, (size_t)wn);
    }
}

static void test_hex_and_full(void **state)
{
    (void)state;
    const uint8_t id[4] = {0x00, 0x0f, 0xa5, 0xff};
    char b[16];
    struct jw w = {b, 0, sizeof b, false};
    jw_hex(&w, id, 4);
    assert_int_equal(w.n, 8);
    assert_memory_equal(b, "000fa5ff", 8);
    struct jw small = {b, 0, 7, false};
    jw_hex(&small, id, 4); /* 8 bytes do not fit in 7 */
    assert_true(small.full);
    assert_int_equal(small.n, 0);
    struct jw s2 = {b, 0, 5, false};
    jw_str(&s2, "abcdefgh");
    assert_true(s2.full);
    assert_true(s2.n <= 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_hex_and_full),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
