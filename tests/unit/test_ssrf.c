/*
 * test_ssrf: the SSRF guard at load and at connect time (common/ssrf): resolved addresses in
 * every family and encoding, security.blocked_metadata_hosts (names, addresses, ranges) and
 * allow_metadata_hosts, and the http rule.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <netinet/in.h>

#include "common/ssrf.h"

static struct sockaddr_storage addr(const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, ip, &s4->sin_addr) == 1)
        s4->sin_family = AF_INET;
    else if (inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1)
        s6->sin6_family = AF_INET6;
    else
        fail_msg("bad test address %s", ip);
    return ss;
}

static bool ok_at(const struct bb_security_conf *sec, const char *host, const char *ip, bool tls,
                  char *why)
{
    struct sockaddr_storage ss = addr(ip);
    return bb_ssrf_check_addr(sec, host, (struct sockaddr *)&ss, tls, why, 300);
}

static void test_parse_net(void **state)
{
    (void)state;
    struct bb_net n;
    assert_int_equal(bb_ssrf_parse_net("10.0.0.0/8", &n), 1);
    assert_int_equal(n.bits, 96 + 8);
    assert_int_equal(bb_ssrf_parse_net("0x0a000001", &n), 1); /* any inet_aton encoding */
    assert_int_equal(n.bits, 128);
    assert_int_equal(n.addr[15], 1);
    assert_int_equal(bb_ssrf_parse_net("fd00::/8", &n), 1);
    assert_int_equal(n.bits, 8);
    assert_int_equal(bb_ssrf_parse_net("example.com", &n), 0);
    assert_int_equal(bb_ssrf_parse_net("10.0.0.0/33", &n), -1);
    assert_int_equal(bb_ssrf_parse_net("10.0.0.0/", &n), -1);
    assert_int_equal(bb_ssrf_parse_net("::1/129", &n), -1);
    assert_int_equal(bb_ssrf_parse_net("example.com/24", &n), -1);
}

static void test_connect_time(void **state)
{
    (void)state;
    char why[300];
    struct bb_security_conf none = {0};
    assert_true(ok_at(&none, "llm.internal", "127.0.0.1", false, why));
    assert_true(ok_at(&none, "llm.internal", "10.1.2.3", false, why));
    assert_true(ok_at(&none, "api.example.com", "93.184.216.34", true, why));
    /* the metadata addresses, in every form a resolver may hand back */
    static const char *const meta[] = {
        "169.254.169.254", "169.254.0.1",   "100.100.100.200",        "168.63.129.16",
        "192.0.0.192",     "fd00:ec2::254", "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe"};
    for (size_t i = 0; i < sizeof meta / sizeof meta[0]; i++) {
        if (ok_at(&none, "evil.internal", meta[i], true, why))
            fail_msg("%s was allowed", meta[i]);
        assert_non_null(strstr(why, "a cloud metadata address"));
        assert_non_null(strstr(why, "evil.internal resolved to"));
    }
    /* http to a name that resolves to a public address */
    assert_false(ok_at(&none, "llm.internal", "93.184.216.34", false, why));
    assert_non_null(strstr(why, "a public address, and the URL is http://"));
    /* operator ranges; IPv4 ranges hold for IPv4-mapped IPv6 answers too */
    struct bb_net nets[2];
    assert_int_equal(bb_ssrf_parse_net("10.9.0.0/16", &nets[0]), 1);
    assert_int_equal(bb_ssrf_parse_net("fd12::/16", &nets[1]), 1);
    char *allow[] = {"metadata"};
    struct bb_security_conf sec = {
        .deny_nets = nets, .n_deny_nets = 2, .allow_hosts = allow, .n_allow_hosts = 1};
    assert_false(ok_at(&sec, "x.internal", "10.9.200.1", false, why));
    assert_non_null(strstr(why, "denied by security.blocked_metadata_hosts"));
    assert_false(ok_at(&sec, "x.internal", "::ffff:10.9.0.1", false, why));
    assert_false(ok_at(&sec, "x.internal", "fd12:3::1", false, why));
    assert_true(ok_at(&sec, "x.internal", "10.10.0.1", false, why));
    /* an allowed name goes anywhere it resolves to */
    assert_true(ok_at(&sec, "Metadata.", "169.254.169.254", false, why));
}

static void test_load_time(void **state)
{
    (void)state;
    char why[300];
    struct bb_net nets[1];
    assert_int_equal(bb_ssrf_parse_net("10.9.0.0/16", &nets[0]), 1);
    char *deny[] = {"evil.example"}, *allow[] = {"metadata.google.internal"};
    struct bb_security_conf sec = {.deny_hosts = deny,
                                   .n_deny_hosts = 1,
                                   .deny_nets = nets,
                                   .n_deny_nets = 1,
                                   .allow_hosts = allow,
                                   .n_allow_hosts = 1};
    assert_false(bb_ssrf_check_host(&sec, "EVIL.example.", true, why, sizeof why));
    assert_false(bb_ssrf_check_host(&sec, "10.9.1.1", false, why, sizeof why));
    assert_false(bb_ssrf_check_host(&sec, "169.254.169.254", true, why, sizeof why));
    assert_true(bb_ssrf_check_host(&sec, "metadata.google.internal", false, why, sizeof why));
    assert_false(bb_ssrf_check_host(&sec, "api.example.com", false, why, sizeof why));
    assert_true(bb_ssrf_check_host(&sec, "api.example.com", true, why, sizeof why));
    assert_true(bb_ssrf_check_host(NULL, "127.0.0.1", false, why, sizeof why));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_net),
        cmocka_unit_test(test_connect_time),
        cmocka_unit_test(test_load_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
