/*
 * fuzz_url: libFuzzer target for base_url parsing and host classification. Checks that a
 * parsed URL re-parses to itself, that IPv4 canonicalisation is idempotent and agrees with
 * glibc's inet_aton (what getaddrinfo will do with the same string), and that a host and its
 * canonical form are classified alike.
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/url.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';

    struct bb_url u;
    struct bb_err err;
    if (bb_url_parse(s, &u, &err) == 0) {
        CHECK(u.host && u.path && u.host[0] && u.port > 0);
        size_t n = strlen(u.host) + strlen(u.path) + 32;
        char *again = malloc(n);
        bool v6 = strchr(u.host, ':') != NULL;
        snprintf(again, n, "%s://%s%s%s:%u%s", u.tls ? "https" : "http", v6 ? "[" : "", u.host,
                 v6 ? "]" : "", u.port, u.path);
        struct bb_url u2;
        CHECK(bb_url_parse(again, &u2, &err) == 0);
        CHECK(strcmp(u.host, u2.host) == 0 && strcmp(u.path, u2.path) == 0 && u.port == u2.port &&
              u.tls == u2.tls);
        CHECK(bb_host_classify(u.host) == bb_host_classify(u2.host));
        bb_url_free(&u2);
        free(again);
        bb_url_free(&u);
    } else {
        CHECK(u.host == NULL && u.path == NULL && err.msg[0]);
    }

    enum bb_host_class c = bb_host_classify(s);
    CHECK(c == BB_HOST_LOOPBACK || c == BB_HOST_PRIVATE || c == BB_HOST_METADATA ||
          c == BB_HOST_PUBLIC);
    char canon[16], canon2[16];
    int ours = bb_host_ipv4_canon(s, canon);
    if (ours == 0) {
        CHECK(bb_host_ipv4_canon(canon, canon2) == 0 && strcmp(canon, canon2) == 0);
        CHECK(bb_host_classify(canon) == c);
    }
    /* inet_aton stops at whitespace; leave those inputs out of the comparison */
    if (strlen(s) == size && !strpbrk(s, " \t\n\v\f\r")) {
        struct in_addr a;
        if (inet_aton(s, &a)) {
            CHECK(ours == 0);
            CHECK(strcmp(inet_ntoa(a), canon) == 0);
        } else if (ours == 0) {
            /* we also accept a trailing dot and a bare "0x" part (WHATWG reads it as 0) */
            CHECK(size > 0 && (s[size - 1] == '.' || strstr(s, "0x") || strstr(s, "0X")));
        }
    }
    free(s);
    return 0;
}
