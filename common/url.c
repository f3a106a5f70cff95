/*
 * url: provider base_url parsing and host classification for the SSRF guard (SPEC §9).
 * Any process (the master validates config with it); pure functions, no shared state.
 *
 * The guard is only as good as its agreement with the resolver that will later connect, so
 * IPv4 literals are read the way glibc's inet_aton (and so getaddrinfo) reads them: 1 to 4
 * parts, each decimal, 0x-hex or 0-octal, the last part filling the remaining bytes.
 * "0x7f.1", "2130706433" and "0177.0.0.1" are all 127.0.0.1 and are classified as such.
 * IPv6 literals that embed an IPv4 address (mapped, compatible, NAT64) are classified by it.
 */
#include "common/url.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Parse one inet_aton part s[0..n). */
static int parse_part(const char *s, size_t n, uint64_t *out)
{
    unsigned base = 10;
    if (n == 0)
        return -1;
    if (n >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
        n -= 2; /* "0x" alone is 0, as inet_aton reads it */
    } else if (n >= 2 && s[0] == '0') {
        base = 8;
        s++;
        n--;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned c = (unsigned char)s[i], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return -1;
        if (d >= base)
            return -1;
        v = v * base + d;
        if (v > 0xffffffffu)
            return -1;
    }
    *out = v;
    return 0;
}

/* host (NUL-terminated) as an IPv4 literal in any inet_aton encoding; one trailing dot is
 * allowed, as a resolver ignores it. */
static int ipv4_parse(const char *host, uint32_t *out)
{
    size_t len = strlen(host);
    if (len > 0 && host[len - 1] == '.')
        len--;
    if (len == 0)
        return -1;
    uint64_t part[4];
    int np = 0;
    size_t b = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && host[i] != '.')
            continue;
        if (np == 4 || parse_part(host + b, i - b, &part[np]) < 0)
            return -1;
        np++;
        b = i + 1;
    }
    uint64_t v = 0;
    for (int k = 0; k < np - 1; k++) {
        if (part[k] > 0xff)
            return -1;
        v |= part[k] << (8 * (3 - k));
    }
    unsigned last_bits = 8 * (unsigned)(5 - np);
    if (part[np - 1] >> last_bits)
        return -1;
    v |= part[np - 1];
    *out = (uint32_t)v;
    return 0;
}

int bb_host_ipv4_canon(const char *host, char out[16])
{
    uint32_t a;
    if (!host || ipv4_parse(host, &a) < 0)
        return -1;
    struct in_addr in = {.s_addr = htonl(a)};
    inet_ntop(AF_INET, &in, out, 16);
    return 0;
}

static bool in_net(uint32_t a, uint32_t net, int bits)
{
    uint32_t mask = bits ? ~(uint32_t)0 << (32 - bits) : 0;
    return (a & mask) == net;
}

#define V4(a, b, c, d) (((uint32_t)(a) << 24) | ((uint32_t)(b) << 16) | ((c) << 8) | (d))

static enum bb_host_class classify_v4(uint32_t a)
{
    /* metadata first: 100.100.100.200 sits inside the CGNAT range */
    if (in_net(a, V4(169, 254, 0, 0), 16) || a == V4(100, 100, 100, 200) ||
        a == V4(168, 63, 129, 16) || a == V4(192, 0, 0, 192))
        return BB_HOST_METADATA;
    if (in_net(a, V4(127, 0, 0, 0), 8))
        return BB_HOST_LOOPBACK;
    /* 0.0.0.0/8 reaches this host on Linux ("this network"); grouped with private. */
    if (in_net(a, V4(0, 0, 0, 0), 8) || in_net(a, V4(10, 0, 0, 0), 8) ||
        in_net(a, V4(172, 16, 0, 0), 12) || in_net(a, V4(192, 168, 0, 0), 16) ||
        in_net(a, V4(100, 64, 0, 0), 10))
        return BB_HOST_PRIVATE;
    return BB_HOST_PUBLIC;
}

static uint32_t v4_at(const unsigned char *b)
{
    return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3];
}

static enum bb_host_class classify_v6(const unsigned char b[16])
{
    static const unsigned char aws[16] = {0xfd, 0x00, 0x0e, 0xc2, 0, 0, 0,    0,
                                          0,    0,    0,    0,    0, 0, 0x02, 0x54};
    static const unsigned char nat64[12] = {0x00, 0x64, 0xff, 0x9b};
    static const unsigned char zero[16];
    if (memcmp(b, aws, 16) == 0)
        return BB_HOST_METADATA;
    if (memcmp(b, zero, 15) == 0 && b[15] <= 1) /* ::1 loopback, :: unspecified */
        return b[15] ? BB_HOST_LOOPBACK : BB_HOST_PRIVATE;
    /* ::ffff:a.b.c.d (mapped), ::a.b.c.d (deprecated compatible), 64:ff9b::a.b.c.d (NAT64):
     * each reaches the embedded IPv4 address, so it gets that address's class. */
    if (memcmp(b, zero, 10) == 0 && ((b[10] == 0xff && b[11] == 0xff) || (!b[10] && !b[11])))
        return classify_v4(v4_at(b + 12));
    if (memcmp(b, nat64, 12) == 0)
        return classify_v4(v4_at(b + 12));
    if ((b[0] & 0xfe) == 0xfc) /* fc00::/7 unique local */
        return BB_HOST_PRIVATE;
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) /* fe80::/10 link local */
        return BB_HOST_PRIVATE;
    return BB_HOST_PUBLIC;
}

static bool ends_with(const char *s, size_t n, const char *suf)
{
    size_t k = strlen(suf);
    return n >= k && memcmp(s + n - k, suf, k) == 0;
}

static bool is_name(const char *s, size_t n, const char *lit)
{
    return strlen(lit) == n && memcmp(s, lit, n) == 0;
}

static enum bb_host_class classify_lower(char *buf, size_t n);

enum bb_host_class bb_host_classify(const char *host)
{
    char stack[256];
    if (!host)
        return BB_HOST_PUBLIC;
    size_t n = strlen(host);
    /* brackets and an IPv6 zone ("fe80::1%eth0") are not part of the address */
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
        host++;
        n -= 2;
    }
    /* longer than any DNS name, but not than an address: inet_aton reads
     * "10.0.0.000…0" with any number of zeros */
    char *buf = n < sizeof stack ? stack : malloc(n + 1);
    if (!buf)
        return BB_HOST_PRIVATE; /* out of memory: not known to be public */
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)((host[i] >= 'A' && host[i] <= 'Z') ? host[i] + 32 : host[i]);
    buf[n] = '\0';
    enum bb_host_class c = classify_lower(buf, n);
    if (buf != stack)
        free(buf);
    return c;
}

/* bb_host_classify of host buf[0..n), lower case, NUL-terminated (written to). */
static enum bb_host_class classify_lower(char *buf, size_t n)
{
    if (memchr(buf, ':', n)) {
        char *pct = strchr(buf, '%');
        if (pct)
            *pct = '\0';
        unsigned char a6[16];
        if (inet_pton(AF_INET6, buf, a6) == 1)
            return classify_v6(a6);
        return BB_HOST_PUBLIC;
    }
    /* every trailing dot is dropped: an absolute name is the same name */
    while (n > 0 && buf[n - 1] == '.')
        buf[--n] = '\0';
    uint32_t a4;
    if (ipv4_parse(buf, &a4) == 0)
        return classify_v4(a4);
    static const char *const meta[] = {"metadata.google.internal", "metadata.goog", "metadata",
                                       "instance-data", "instance-data.ec2.internal"};
    for (size_t i = 0; i < sizeof meta / sizeof meta[0]; i++) {
        if (is_name(buf, n, meta[i]))
            return BB_HOST_METADATA;
    }
    if (is_name(buf, n, "localhost") || ends_with(buf, n, ".localhost"))
        return BB_HOST_LOOPBACK;
    if (!memchr(buf, '.', n) || ends_with(buf, n, ".local") || ends_with(buf, n, ".internal") ||
        ends_with(buf, n, ".lan") || ends_with(buf, n, ".home.arpa"))
        return BB_HOST_PRIVATE;
    return BB_HOST_PUBLIC;
}

void bb_url_free(struct bb_url *u)
{
    free(u->host);
    free(u->path);
    u->host = u->path = NULL;
}

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Does the last label look numeric? Then the host must be a valid IPv4 literal (the WHATWG
 * URL rule): "1.2.3.4.5" or "0x1g" would otherwise go to DNS as a name. */
static bool ends_in_number(const char *h, size_t n)
{
    if (n > 0 && h[n - 1] == '.')
        n--;
    size_t b = n;
    while (b > 0 && h[b - 1] != '.')
        b--;
    const char *l = h + b;
    size_t k = n - b;
    if (k == 0)
        return false;
    if (k >= 2 && l[0] == '0' && (l[1] == 'x' || l[1] == 'X')) {
        for (size_t i = 2; i < k; i++) {
            if (!is_hex(l[i]))
                return false;
        }
        return true;
    }
    for (size_t i = 0; i < k; i++) {
        if (l[i] < '0' || l[i] > '9')
            return false;
    }
    return true;
}

int bb_url_parse(const char *s, struct bb_url *out, struct bb_err *err)
{
    memset(out, 0, sizeof *out);
    if (!s)
        return bb_err_set(err, "URL is missing");
    for (const char *q = s; *q; q++) {
        unsigned char c = (unsigned char)*q;
        if (c <= 0x20 || c >= 0x7f)
            return bb_err_set(err, "URL contains a space, control or non-ASCII byte at %zu",
                              (size_t)(q - s));
        if (c == '?' || c == '#')
            return bb_err_set(err, "URL must not have a query or fragment");
        if (c == '\\')
            return bb_err_set(err, "URL contains a backslash");
    }
    const char *p;
    if (strncasecmp(s, "https://", 8) == 0) {
        out->tls = true;
        p = s + 8;
    } else if (strncasecmp(s, "http://", 7) == 0) {
        p = s + 7;
    } else {
        return bb_err_set(err, "URL scheme must be http:// or https://");
    }
    const char *auth_end = p + strcspn(p, "/");
    if (memchr(p, '@', (size_t)(auth_end - p)))
        return bb_err_set(err, "URL must not contain userinfo (user@host)");

    const char *h, *hend, *q;
    bool v6 = false;
    if (*p == '[') {
        h = p + 1;
        hend = memchr(h, ']', (size_t)(auth_end - h));
        if (!hend)
            return bb_err_set(err, "URL has an unterminated IPv6 literal");
        q = hend + 1;
        v6 = true;
    } else {
        h = p;
        hend = memchr(p, ':', (size_t)(auth_end - p));
        if (!hend)
            hend = auth_end;
        q = hend;
    }
    size_t hlen = (size_t)(hend - h);
    if (hlen == 0)
        return bb_err_set(err, "URL has an empty host");
    if (hlen > 253)
        return bb_err_set(err, "URL host is too long");
    char host[256];
    for (size_t i = 0; i < hlen; i++)
        host[i] = (char)((h[i] >= 'A' && h[i] <= 'Z') ? h[i] + 32 : h[i]);
    host[hlen] = '\0';

    char canon[64];
    if (v6) {
        unsigned char a6[16];
        /* inet_pton refuses zone ids ("%25eth0"), which a base_url has no use for */
        if (inet_pton(AF_INET6, host, a6) != 1)
            return bb_err_set(err, "URL has an invalid IPv6 address '%s'", host);
        inet_ntop(AF_INET6, a6, canon, sizeof canon);
    } else {
        for (size_t i = 0; i < hlen; i++) {
            char c = host[i];
            if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
                  c == '_'))
                return bb_err_set(err, "URL host has an invalid character '%c'", c);
            if (c == '.' && (i == 0 || host[i - 1] == '.'))
                return bb_err_set(err, "URL host has an empty label");
        }
        if (bb_host_ipv4_canon(host, canon) < 0) {
            if (ends_in_number(host, hlen))
                return bb_err_set(err, "URL host '%s' is not a valid IPv4 address", host);
            canon[0] = '\0'; /* a name: kept as written (lowercased) */
        }
    }

    out->port = out->tls ? 443 : 80;
    if (q < auth_end) {
        if (*q != ':')
            return bb_err_set(err, "URL has junk after the IPv6 literal");
        q++;
        if (q == auth_end)
            return bb_err_set(err, "URL has an empty port");
        unsigned long port = 0;
        for (; q < auth_end; q++) {
            if (*q < '0' || *q > '9')
                return bb_err_set(err, "URL port is not a number");
            port = port * 10 + (unsigned long)(*q - '0');
            if (port > 65535)
                return bb_err_set(err, "URL port is out of range (1..65535)");
        }
        if (port == 0)
            return bb_err_set(err, "URL port is out of range (1..65535)");
        out->port = (uint16_t)port;
    }

    const char *path = auth_end;
    size_t plen = strlen(path);
    for (size_t i = 0; i < plen; i++) {
        if (path[i] == '%' && (i + 2 >= plen || !is_hex(path[i + 1]) || !is_hex(path[i + 2])))
            return bb_err_set(err, "URL path has a bad percent-escape");
    }
    while (plen > 0 && path[plen - 1] == '/')
        plen--;

    out->host = bb_xstrdup(canon[0] ? canon : host);
    out->path = bb_xstrndup(path, plen);
    return 0;
}
