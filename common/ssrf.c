/*
 * ssrf: the SSRF guard at load and at connect time (see ssrf.h). Any process; pure functions.
 * Addresses are compared as 16 bytes: IPv4 as IPv4-mapped IPv6, so one range type covers both
 * and an IPv4-mapped IPv6 literal cannot slip past an IPv4 range.
 */
#include "common/ssrf.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "common/url.h"

static void mapped_v4(const void *a4, uint8_t out[16])
{
    memset(out, 0, 10);
    out[10] = out[11] = 0xff;
    memcpy(out + 12, a4, 4);
}

int bb_ssrf_parse_net(const char *s, struct bb_net *out)
{
    char buf[128];
    size_t n = strlen(s);
    if (n >= sizeof buf)
        return 0;
    memcpy(buf, s, n + 1);
    char *slash = strchr(buf, '/');
    if (slash)
        *slash = '\0';
    char canon[16];
    unsigned max;
    if (strchr(buf, ':')) {
        if (inet_pton(AF_INET6, buf, out->addr) != 1)
            return -1;
        max = 128;
    } else if (bb_host_ipv4_canon(buf, canon) == 0) {
        struct in_addr a4;
        inet_pton(AF_INET, canon, &a4);
        mapped_v4(&a4, out->addr);
        max = 32;
    } else {
        return slash ? -1 : 0; /* a name; "name/24" is nothing */
    }
    unsigned bits = max;
    if (slash) {
        char *end;
        unsigned long b = strtoul(slash + 1, &end, 10);
        if (!slash[1] || *end || b > max)
            return -1;
        bits = (unsigned)b;
    }
    out->bits = (uint8_t)(bits + (128 - max));
    return 1;
}

static bool in_net(const uint8_t a[16], const struct bb_net *n)
{
    unsigned full = n->bits / 8, rest = n->bits % 8;
    if (memcmp(a, n->addr, full) != 0)
        return false;
    if (!rest)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[full] & mask) == (n->addr[full] & mask);
}

/* host lowercased, without brackets and trailing dots, into buf; false when too long. */
static bool norm(const char *host, char *buf, size_t cap)
{
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
        host++;
        n -= 2;
    }
    while (n > 0 && host[n - 1] == '.')
        n--;
    if (n >= cap)
        return false;
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)((host[i] >= 'A' && host[i] <= 'Z') ? host[i] + 32 : host[i]);
    buf[n] = '\0';
    return true;
}

static bool listed(char *const *v, size_t n, const char *host)
{
    char h[256];
    if (!norm(host, h, sizeof h))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(v[i], h))
            return true;
    return false;
}

bool bb_ssrf_allowed(const struct bb_security_conf *sec, const char *host)
{
    return sec && listed(sec->allow_hosts, sec->n_allow_hosts, host);
}

static const struct bb_net *denied_net(const struct bb_security_conf *sec, const uint8_t a[16])
{
    for (size_t i = 0; sec && i < sec->n_deny_nets; i++)
        if (in_net(a, &sec->deny_nets[i]))
            return &sec->deny_nets[i];
    return NULL;
}

bool bb_ssrf_check_host(const struct bb_security_conf *sec, const char *host, bool tls, char *why,
                        size_t cap)
{
    if (bb_ssrf_allowed(sec, host))
        return true; /* the operator vouched for this name (security.allow_metadata_hosts) */
    if (sec && listed(sec->deny_hosts, sec->n_deny_hosts, host)) {
        snprintf(why, cap, "is denied by security.blocked_metadata_hosts");
        return false;
    }
    struct bb_net lit;
    char h[256];
    if (norm(host, h, sizeof h) && bb_ssrf_parse_net(h, &lit) == 1 && denied_net(sec, lit.addr)) {
        snprintf(why, cap, "is in a range denied by security.blocked_metadata_hosts");
        return false;
    }
    switch (bb_host_classify(host)) {
    case BB_HOST_METADATA:
        snprintf(why, cap, "is a cloud metadata endpoint and is denied");
        return false;
    case BB_HOST_PUBLIC:
        if (!tls) {
            snprintf(why, cap,
                     "is public and needs https:// (http:// is allowed only for loopback and "
                     "private addresses)");
            return false;
        }
        return true;
    default:
        return true;
    }
}

bool bb_ssrf_check_addr(const struct bb_security_conf *sec, const char *host,
                        const struct sockaddr *sa, bool tls, char *why, size_t cap)
{
    uint8_t a[16];
    char txt[INET6_ADDRSTRLEN];
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)(const void *)sa;
        mapped_v4(&s4->sin_addr, a);
        inet_ntop(AF_INET, &s4->sin_addr, txt, sizeof txt);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)(const void *)sa;
        memcpy(a, &s6->sin6_addr, 16);
        inet_ntop(AF_INET6, &s6->sin6_addr, txt, sizeof txt);
    } else {
        snprintf(why, cap, "%s resolved to an address of an unknown family", host);
        return false;
    }
    if (bb_ssrf_allowed(sec, host))
        return true;
    if (denied_net(sec, a)) {
        snprintf(why, cap,
                 "%s resolved to %s, in a range denied by security.blocked_metadata_hosts", host,
                 txt);
        return false;
    }
    switch (bb_host_classify(txt)) { /* the literal: mapped/NAT64 forms by their IPv4 */
    case BB_HOST_METADATA:
        snprintf(why, cap, "%s resolved to %s, a cloud metadata address", host, txt);
        return false;
    case BB_HOST_PUBLIC:
        if (!tls) {
            snprintf(why, cap, "%s resolved to %s, a public address, and the URL is http://", host,
                     txt);
            return false;
        }
        return true;
    default:
        return true;
    }
}
