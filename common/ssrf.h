/*
 * ssrf: the SSRF guard (SPEC §9) in its two places: the host of a URL when the config is
 * loaded (provider base_url, policy webhook, exporters), and every address a name resolved to
 * before a worker connects to it (worker/upstream.c), so a DNS name that resolves to a cloud
 * metadata address is refused too. Both apply the built-in metadata list (common/url.h), the
 * operator's security.blocked_metadata_hosts (names, addresses, CIDR ranges) and
 * security.allow_metadata_hosts (names exempt from the deny rules), and the http rule
 * (plain http only to loopback and private addresses).
 * Any process; pure functions.
 */
#ifndef BB_SSRF_H
#define BB_SSRF_H

#include <stdbool.h>
#include <stddef.h>

#include "common/config.h"

struct sockaddr;

/* "a.b.c.d", "a.b.c.d/n", "v6", "v6/n" (IPv4 in any inet_aton encoding) into out.
 * 1 = an address or range; 0 = not one (a name); -1 = looks like one but is malformed. */
int bb_ssrf_parse_net(const char *s, struct bb_net *out);

/* Is host (a name or literal) on security.allow_metadata_hosts? */
bool bb_ssrf_allowed(const struct bb_security_conf *sec, const char *host);

/* The config-time check of a URL's host: true when allowed; else why (cap bytes) says why
 * (without the host). */
bool bb_ssrf_check_host(const struct bb_security_conf *sec, const char *host, bool tls, char *why,
                        size_t cap);

/* The connect-time check of one address host resolved to: true when busbar may connect;
 * else why says why, naming the address. */
bool bb_ssrf_check_addr(const struct bb_security_conf *sec, const char *host,
                        const struct sockaddr *sa, bool tls, char *why, size_t cap);

#endif
