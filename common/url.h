/*
 * url: base_url parsing and host classification for the SSRF guard (SPEC §9).
 * Any process; pure functions.
 */
#ifndef BB_URL_H
#define BB_URL_H

#include <stdbool.h>

#include "common/config.h"
#include "common/err.h"

enum bb_host_class {
    BB_HOST_LOOPBACK, /* 127.0.0.0/8, ::1, localhost */
    BB_HOST_PRIVATE,  /* 10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7, fe80::/10, single-label
                         names and *.local / *.internal / *.lan names (not metadata ones) */
    BB_HOST_METADATA, /* cloud metadata: 169.254.0.0/16, 100.100.100.200, 168.63.129.16,
                         192.0.0.192, fd00:ec2::254, metadata.google.internal, metadata, ... */
    BB_HOST_PUBLIC,   /* anything else */
};

/* Parse "http[s]://host[:port][/path]" (no userinfo, query or fragment). host and path are
 * malloc'd into out (free with bb_url_free). -1 with err on a malformed URL. */
int bb_url_parse(const char *s, struct bb_url *out, struct bb_err *err);
void bb_url_free(struct bb_url *u);

/* Classify a host (IP literal in any encoding or DNS name). Alternate IPv4 encodings are
 * canonicalised first: decimal (2130706433), hex (0x7f000001, 0x7f.1), octal (0177.0.0.1),
 * short dotted (127.1), and IPv4-mapped/compatible IPv6 (::ffff:169.254.169.254). */
enum bb_host_class bb_host_classify(const char *host);

/* Canonical dotted-quad form of an IPv4 host written in any of the encodings above, into
 * out (16 bytes); -1 when host is not an IPv4 literal. */
int bb_host_ipv4_canon(const char *host, char out[16]);

#endif
