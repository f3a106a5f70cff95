/*
 * test_url: base_url parsing, IPv4 canonicalisation and SSRF host classification (common/url).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/url.h"

#define L BB_HOST_LOOPBACK
#define P BB_HOST_PRIVATE
#define M BB_HOST_METADATA
#define U BB_HOST_PUBLIC

static const struct {
    const char *host;
    enum bb_host_class cls;
} classes[] = {
    /* loopback in every IPv4 encoding */
    {"127.0.0.1", L},
    {"127.1", L},
    {"127.0.1", L},
    {"2130706433", L},
    {"0x7f000001", L},
    {"0X7F000001", L},
    {"0x7f.1", L},
    {"0x7f.0x0.0x0.0x1", L},
    {"0177.0.0.1", L},
    {"0177.1", L},
    {"017700000001", L},
    {"127.255.255.254", L},
    {"127.0.0.1.", L},
    {"::1", L},
    {"[::1]", L},
    {"0:0:0:0:0:0:0:1", L},
    {"::ffff:127.0.0.1", L},
    {"::ffff:7f00:1", L},
    {"localhost", L},
    {"LOCALHOST", L},
    {"localhost.", L},
    {"api.localhost", L},
    /* metadata */
    {"169.254.169.254", M},
    {"169.254.0.1", M},
    {"169.254.255.255", M},
    {"2852039166", M},
    {"0xa9fea9fe", M},
    {"0xA9.0xFE.0xA9.0xFE", M},
    {"0251.0376.0251.0376", M},
    {"0251.0376.43518", M},
    {"169.254.43518", M},
    {"169.16689662", M},
    {"0xa9.0xfea9fe", M},
    {"::ffff:169.254.169.254", M},
    {"::ffff:a9fe:a9fe", M},
    {"[::ffff:169.254.169.254]", M},
    {"::169.254.169.254", M},
    {"64:ff9b::169.254.169.254", M},
    {"100.100.100.200", M},
    {"1684301000", M},
    {"168.63.129.16", M},
    {"0xa83f8110", M},
    {"192.0.0.192", M},
    {"::ffff:192.0.0.192", M},
    {"fd00:ec2::254", M},
    {"FD00:EC2:0:0:0:0:0:254", M},
    {"[fd00:ec2::254]", M},
    {"metadata.google.internal", M},
    {"Metadata.Google.Internal.", M},
    {"metadata.goog", M},
    {"metadata", M},
    {"METADATA.", M},
    {"instance-data", M},
    {"instance-data.ec2.internal", M},
    /* private */
    {"10.0.0.1", P},
    {"10.255.255.255", P},
    {"012.1", P},
    {"167772161", P},
    {"0xa.1", P},
    {"172.16.0.1", P},
    {"172.31.255.255", P},
    {"192.168.1.10", P},
    {"0xc0a8010a", P},
    {"100.64.0.1", P},
    {"100.127.255.255", P},
    {"0.0.0.0", P},
    {"0", P},
    {"0x0", P},
    {"::", P},
    {"::ffff:10.1.2.3", P},
    {"fc00::1", P},
    {"fd12:3456::1", P},
    {"fe80::1", P},
    {"fe80::1%eth0", P},
    {"febf::1", P},
    {"ollama", P},
    {"gpu-box.local", P},
    {"svc.cluster.internal", P},
    {"nas.lan", P},
    {"router.home.arpa", P},
    {"vllm.LAN.", P},
    /* public */
    {"8.8.8.8", U},
    {"134744072", U},
    {"172.15.255.255", U},
    {"172.32.0.1", U},
    {"100.63.255.255", U},
    {"100.128.0.1", U},
    {"169.253.255.255", U},
    {"169.255.0.1", U},
    {"128.0.0.1", U},
    {"2001:4860:4860::8888", U},
    {"fec0::1", U},
    {"api.openai.com", U},
    {"API.Anthropic.com.", U},
    {"metadata.google.internal.evil.com", U},
    {"localhost.evil.com", U},
    {"notlocal", P}, /* single label */
    {"example.lan.com", U},
    {"1.2.3.4.5", U},   /* not IPv4: a (bogus) name */
    {"0x100000000", P}, /* overflows: not IPv4, so a single-label name */
    {"256.1.1.1", U},
    {"08.1.1.1", U}, /* 8 is not octal */
};

static const char *cls_name(enum bb_host_class c)
{
    switch (c) {
    case BB_HOST_LOOPBACK:
        return "loopback";
    case BB_HOST_PRIVATE:
        return "private";
    case BB_HOST_METADATA:
        return "metadata";
    case BB_HOST_PUBLIC:
        return "public";
    }
    return "?";
}

static void test_classify_table(void **state)
{
    (void)state;
    int bad = 0;
    for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++) {
        enum bb_host_class c = bb_host_classify(classes[i].host);
        if (c != classes[i].cls) {
            print_error("%s: got %s, want %s\n", classes[i].host, cls_name(c),
                        cls_name(classes[i].cls));
            bad++;
        }
    }
    assert_int_equal(bad, 0);
    /* longer than any DNS name, still an address (inet_aton reads any number of zeros): the
     * address's class, not "public" (fuzz_url found it) */
    char longip[400] = "169.254.169.";
    memset(longip + strlen(longip), '0', 300);
    longip[12 + 300] = '4';
    longip[12 + 301] = '\0';
    assert_int_equal(bb_host_classify(longip), bb_host_classify("169.254.169.4"));
    assert_int_not_equal(bb_host_classify(longip), BB_HOST_PUBLIC);
}

static void test_ipv4_canon(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } t[] = {
        {"127.1", "127.0.0.1"},
        {"2130706433", "127.0.0.1"},
        {"0x7f000001", "127.0.0.1"},
        {"0x7f.1", "127.0.0.1"},
        {"0177.0.0.1", "127.0.0.1"},
        {"0251.0376.0251.0376", "169.254.169.254"},
        {"169.254.43518", "169.254.169.254"},
        {"10.0.0.1.", "10.0.0.1"},
        {"0x", "0.0.0.0"},
        {"00", "0.0.0.0"},
        {"255.255.255.255", "255.255.255.255"},
        {"4294967295", "255.255.255.255"},
        {"1.16777215", "1.255.255.255"},
        {"1.2.65535", "1.2.255.255"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        char out[16];
        assert_int_equal(bb_host_ipv4_canon(t[i].in, out), 0);
        assert_string_equal(out, t[i].out);
    }
    static const char *const no[] = {
        "",
        ".",
        "1..1",
        "1.2.3.4.5",
        "4294967296",
        "0x100000000",
        "256.0.0.1",
        "1.16777216",
        "1.2.65536",
        "09",
        "0xg",
        "a.b.c.d",
        "1.2.3.4..",
        "-1",
        " 1.2.3.4",
        "1.2.3.4 ",
        "99999999999999999999",
        "example.com",
        "::1",
    };
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        char out[16];
        if (bb_host_ipv4_canon(no[i], out) != -1)
            fail_msg("'%s' accepted as IPv4 (%s)", no[i], out);
    }
}

static void test_url_ok(void **state)
{
    (void)state;
    static const struct {
        const char *in, *host, *path;
        int port;
        bool tls;
    } t[] = {
        {"https://api.openai.com/v1", "api.openai.com", "/v1", 443, true},
        {"https://api.openai.com/v1/", "api.openai.com", "/v1", 443, true},
        {"https://api.openai.com", "api.openai.com", "", 443, true},
        {"https://api.openai.com/", "api.openai.com", "", 443, true},
        {"HTTP://LocalHost:11434/v1//", "localhost", "/v1", 11434, false},
        {"http://127.0.0.1:8080", "127.0.0.1", "", 8080, false},
        {"http://0x7f.1:1/a", "127.0.0.1", "/a", 1, false},
        {"http://2130706433", "127.0.0.1", "", 80, false},
        {"http://[::1]:65535/x/y", "::1", "/x/y", 65535, false},
        {"https://[FD00:EC2::254]", "fd00:ec2::254", "", 443, true},
        {"http://h_1.example-x.com./p%20q", "h_1.example-x.com.", "/p%20q", 80, false},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        struct bb_url u;
        struct bb_err err = {{0}};
        if (bb_url_parse(t[i].in, &u, &err) != 0)
            fail_msg("%s: %s", t[i].in, err.msg);
        assert_string_equal(u.host, t[i].host);
        assert_string_equal(u.path, t[i].path);
        assert_int_equal(u.port, t[i].port);
        assert_int_equal(u.tls, t[i].tls);
        bb_url_free(&u);
        assert_null(u.host);
    }
}

static void test_url_errors(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "ftp://example.com",
        "example.com",
        "https:/example.com",
        "https://",
        "https:///v1",
        "https://:443",
        "https://user@example.com",
        "https://user:pw@example.com/v1",
        "https://example.com/v1?x=1",
        "https://example.com/v1#frag",
        "https://exa mple.com",
        "https://example.com/a b",
        "https://example.com\t",
        "https://example.com/\x01",
        "https://ex\xc3\xa4mple.com",
        "https://example.com:",
        "https://example.com:0",
        "https://example.com:65536",
        "https://example.com:99999999999",
        "https://example.com:8a",
        "https://example.com:-1",
        "https://[::1",
        "https://[::1]x",
        "https://[::1]:",
        "https://[not-v6]",
        "https://[fe80::1%25eth0]",
        "https://[127.0.0.1]",
        "https://::1/",
        "https://exa%6dple.com",
        "https://a..b",
        "https://.a",
        "https://1.2.3.4.5",
        "https://256.1.1.1",
        "https://0x100000000",
        "https://example.123",
        "https://example.com\\@evil.com",
        "https://example.com/%zz",
        "https://example.com/%4",
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct bb_url u;
        struct bb_err err = {{0}};
        if (bb_url_parse(bad[i], &u, &err) != -1)
            fail_msg("accepted: %s", bad[i]);
        assert_true(err.msg[0] != '\0');
        assert_null(u.host);
        assert_null(u.path);
    }
    struct bb_url u;
    assert_int_equal(bb_url_parse(NULL, &u, NULL), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify_table),
        cmocka_unit_test(test_ipv4_canon),
        cmocka_unit_test(test_url_ok),
        cmocka_unit_test(test_url_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
