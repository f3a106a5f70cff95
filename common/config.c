/*
 * config: config.yaml + providers.yaml → struct bb_conf (SPEC §2), every error located.
 * Master process only (also busbar -t); workers inherit the result through fork() and never
 * parse YAML. No shared state: one call builds one private conf.
 *
 * The walk is schema-driven: each mapping level has a key table (the single list of names,
 * used for unknown-key errors with a did-you-mean and for "not supported yet"), then typed
 * getters pull the values. Every check appends to the caller's error list and carries on, so
 * one run reports every problem; the conf is returned only when no error was added.
 *
 * Relative paths: files the config *reads* (tls.*, providers_file) resolve against the config
 * file's directory; paths busbar *creates* (state_dir, log_file, admin.socket) resolve against
 * the working directory at load time. Both are stored absolute.
 */
#include "common/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/config_doc.h"
#include "common/err.h"
#include "common/sandbox.h"
#include "common/shm.h"
#include "common/ssrf.h"
#include "common/url.h"

/* ---- protocol names ---------------------------------------------------------------------- */

static const char *const proto_names[] = {
#define X(id, name, module) name,
    BB_PROTO_LIST(X)
#undef X
};

static const char *const proto_modules[] = {
#define X(id, name, module) #module,
    BB_PROTO_LIST(X)
#undef X
};

const char *bb_proto_name(enum bb_proto p)
{
    return (unsigned)p < BB_PROTO__COUNT ? proto_names[p] : "?";
}

int bb_proto_from_name(const char *name)
{
    if (!name)
        return -1;
    for (int i = 0; i < BB_PROTO__COUNT; i++)
        if (!strcmp(name, proto_names[i]))
            return i;
    for (int i = 0; i < BB_PROTO__COUNT; i++)
        if (!strcmp(name, proto_modules[i]))
            return i;
    return -1;
}

/* ---- key tables ---------------------------------------------------------------------------- */

#define KF_NYI 1u /* a key of a feature not built yet: rejected, never silently ignored */

struct keydef {
    const char *name;
    unsigned flags;
};

/* A key table; stride lets tables whose rows start with a struct keydef (limits) be used too. */
struct keyset {
    const void *v;
    size_t n, stride;
};
#define KEYSET(a) ((struct keyset){(a), sizeof(a) / sizeof((a)[0]), sizeof((a)[0])})
#define NO_KEYS ((struct keyset){NULL, 0, 0})

static const struct keydef *ks_at(struct keyset ks, size_t i)
{
    return (const struct keydef *)(const void *)((const char *)ks.v + i * ks.stride);
}

static const struct keydef top_keys[] = {
    {"listen", 0},        {"workers", 0},  {"tls", 0},        {"admin", 0},
    {"state_dir", 0},     {"auth", 0},     {"providers", 0},  {"providers_file", 0},
    {"models", 0},        {"pools", 0},    {"governance", 0}, {"cluster", 0},
    {"observability", 0}, {"security", 0}, {"limits", 0},     {"log_file", 0},
    {"log_level", 0},
};
static const struct keydef tls_keys[] = {{"cert_file", 0}, {"key_file", 0}, {"client_ca_file", 0}};
static const struct keydef admin_keys[] = {{"socket", 0}, {"listen", 0}, {"token_env", 0}};
static const struct keydef auth_keys[] = {{"mode", 0}, {"client_tokens", 0}};
static const struct keydef prov_keys[] = {{"protocol", 0}, {"base_url", 0},  {"api_key_env", 0},
                                          {"region", 0},   {"error_map", 0}, {"health", 0}};
static const struct keydef cat_keys[] = {
    {"protocol", 0}, {"base_url", 0}, {"api_key_env", 0}, {"region", 0}, {"error_map", 0}};
static const struct keydef health_keys[] = {{"mode", 0}, {"interval_secs", 0}};
static const struct keydef lane_keys[] = {
    {"provider", 0},           {"upstream_model", 0},     {"max_concurrent", 0}, {"context_max", 0},
    {"attempt_timeout_ms", 0}, {"default_max_tokens", 0}, {"reasoning", 0},      {"price", 0}};
static const struct keydef price_keys[] = {
    {"input", 0}, {"output", 0}, {"cache_read", 0}, {"cache_write", 0}};
static const struct keydef pool_keys[] = {{"members", 0},      {"route", 0},    {"policy", 0},
                                          {"breaker", 0},      {"failover", 0}, {"stream", 0},
                                          {"on_exhausted", 0}, {"affinity", 0}};
static const struct keydef member_keys[] = {{"target", 0}, {"model", 0}, {"weight", 0}};
static const struct keydef policy_keys[] = {{"url", 0},         {"socket", 0},
                                            {"script_file", 0}, {"timeout_ms", 0},
                                            {"on_error", 0},    {"include_messages", 0}};
static const struct keydef breaker_keys[] = {{"trip", 0},
                                             {"base_cooldown_secs", 0},
                                             {"max_cooldown_secs", 0},
                                             {"hard_down_cooldown_secs", 0}};
static const struct keydef trip_keys[] = {
    {"mode", 0}, {"window_secs", 0}, {"threshold", 0}, {"min_requests", 0}, {"consecutive_n", 0}};
static const struct keydef failover_keys[] = {
    {"timeout_secs", 0}, {"max_hops", 0}, {"exclusions", 0}};
static const struct keydef stream_keys[] = {
    {"hold_first_event", 0}, {"prerelease_ms", 0}, {"on_cut", 0}};
static const struct keydef exhausted_keys[] = {{"action", 0}};
static const struct keydef affinity_keys[] = {{"mode", 0}, {"header_name", 0}};
static const struct keydef governance_keys[] = {{"enabled", 0},
                                                {"db_path", 0},
                                                {"on_store_error", 0},
                                                {"default_estimate_output_tokens", 0},
                                                {"ledger_retention_days", 0}};
static const struct keydef cluster_keys[] = {
    {"redis_url", 0},  {"key_prefix", 0},   {"on_redis_error", 0}, {"node_id", 0},
    {"timeout_ms", 0}, {"password_env", 0}, {"lease_secs", 0},     {"tls", 0}};
static const struct keydef cluster_tls_keys[] = {{"ca_file", 0}, {"cert_file", 0}, {"key_file", 0}};
static const struct keydef obs_keys[] = {{"metrics", 0},         {"metrics_listen", 0},
                                         {"key_series_max", 0},  {"access_log", 0},
                                         {"otlp_endpoint", 0},   {"request_log_webhook_url", 0},
                                         {"overhead_header", 0}, {"otlp_protocol", 0}};
/* observability.key_series_max ceiling: the shared-memory key table (common/metrics_shm.h) */
#define KEY_SERIES_CEILING 10000u
static const struct keydef security_keys[] = {{"blocked_metadata_hosts", 0},
                                              {"allow_metadata_hosts", 0}};

struct limdef {
    struct keydef k; /* first: the table doubles as a keyset */
    size_t off;
    bool wide; /* uint64_t field */
    uint64_t min, max;
};
#define LIM(name, wide, min, max)                                                                  \
    {                                                                                              \
        {#name, 0}, offsetof(struct bb_limits, name), wide, min, max                               \
    }
static const struct limdef limit_defs[] = {
    LIM(request_body_max_bytes, true, 1, (uint64_t)1 << 40),
    LIM(response_body_max_bytes, true, 1024, (uint64_t)1 << 40),
    LIM(header_max_bytes, false, 1024, 16u << 20),
    LIM(header_timeout_ms, false, 1, UINT32_MAX),
    LIM(body_timeout_ms, false, 1, UINT32_MAX),
    LIM(keepalive_timeout_ms, false, 1, UINT32_MAX),
    LIM(send_timeout_ms, false, 1, UINT32_MAX),
    LIM(max_inbound_concurrent, false, 1, UINT32_MAX),
    LIM(upstream_connect_timeout_ms, false, 1, UINT32_MAX),
    LIM(upstream_header_timeout_ms, false, 1, UINT32_MAX),
    LIM(stream_idle_timeout_ms, false, 1, UINT32_MAX),
    LIM(upstream_request_timeout_secs, false, 1, UINT32_MAX),
    LIM(drain_timeout_secs, false, 1, UINT32_MAX),
    LIM(pool_max_idle_per_host, false, 0, UINT32_MAX), /* 0 = no idle upstream connections */
    LIM(h2_max_streams, false, 1, 1u << 20),
};

static const char *const route_names[] = {"weighted", "cheapest", "fastest", "least_busy",
                                          "usage",    "webhook",  "script"};
static const char *const log_levels[] = {"debug", "info", "notice", "warn", "error"};

/* Weights feed SWRR sums in uint32 cells; a ceiling keeps a pool of many members from overflowing.
 */
#define MAX_WEIGHT 1000000u
#define MAX_HOPS 100u
/* Names end up in metrics labels, URLs and shm cell names (BB_SHM_NAME_MAX with "pool/lane"). */
#define NAME_MAX_LEN 63u

/* ---- loader state -------------------------------------------------------------------------- */

/* One provider definition as written in one file (catalogue entry or config override). */
struct pdef {
    const char *name; /* first member (suggest); borrowed from the document */
    struct bb_cdoc *d;
    yaml_node_t *key;
    int protocol; /* -1 not given, -2 given but invalid */
    const char *base_url;
    struct bb_url url;
    bool url_ok;
    bool has_key_env; /* api_key_env given; NULL value = explicitly no credential */
    const char *api_key_env;
    yaml_node_t *key_env_node; /* where api_key_env is written, for errors about its value */
    const char *region;
    yaml_node_t *error_map;        /* validated mapping, or NULL */
    uint32_t health_interval_secs; /* active health probes; 0 = off */
};

struct ld {
    struct bb_conf *c;
    struct bb_conf_errors *errs;
    struct bb_cdoc cfg, cat;
    char cat_note[PATH_MAX + 64]; /* why no catalogue is loaded; "" when it is */
    struct pdef *cats, *ovrs;
    size_t n_cats, n_ovrs;
    yaml_node_t **pool_action; /* per pool: its on_exhausted.action node, for cycle errors */
};

/* ---- small helpers ------------------------------------------------------------------------- */

static void err_at(struct ld *l, const struct bb_cdoc *d, const yaml_node_t *n, const char *fmt,
                   ...) __attribute__((format(printf, 4, 5)));

static void err_at(struct ld *l, const struct bb_cdoc *d, const yaml_node_t *n, const char *fmt,
                   ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    bb_cdoc_error_at(l->errs, d, n, "%s", buf);
}

static const char *scalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* buf = "base.key" (or "key" at the top level), silently cut to sz: a key path only names a
 * spot in a message, and the message still carries the line:col. */
static const char *pj(char *buf, size_t sz, const char *base, const char *key)
{
    size_t o = 0;
    for (const char *parts[3] = {base, base && *base ? "." : "", key}, **pp = parts; pp < parts + 3;
         pp++)
        for (const char *q = *pp; q && *q && o + 1 < sz; q++)
            buf[o++] = *q;
    buf[o] = '\0';
    return buf;
}

/* Value node of key in mapping m (first occurrence); NULL when absent. keyp gets the key node. */
static yaml_node_t *map_get(const struct bb_cdoc *d, const yaml_node_t *m, const char *key,
                            yaml_node_t **keyp)
{
    if (!m || m->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *k = bb_cdoc_node(d, p->key);
        const char *ks = scalar(k);
        if (ks && !strcmp(ks, key)) {
            if (keyp)
                *keyp = k;
            return bb_cdoc_node(d, p->value);
        }
    }
    return NULL;
}

/* Did-you-mean: the closest candidate within edit distance 2 (or a prefix, see sugg_add). */
struct sugg {
    const char *best;
    size_t dist;
};

static void sugg_add(struct sugg *s, const char *target, const char *cand)
{
    if (!cand || !strcmp(target, cand))
        return;
    size_t d = bb_cdoc_distance(target, cand, 2);
    /* A key written without its unit suffix (stream_idle_timeout) is far in edit distance
     * but obviously meant: rank a prefix match of 5+ characters just after distance 2. */
    size_t lt = strlen(target), lc = strlen(cand);
    if (d > 2)
        d = lt >= 5 && lt < lc && !strncmp(target, cand, lt) ? 3 : SIZE_MAX;
    if (d != SIZE_MAX && (!s->best || d < s->dist)) {
        s->best = cand;
        s->dist = d;
    }
}

/* Rows of arrays whose first member is a name pointer (keydef, pdef, bb_lane, bb_pool...). */
static void sugg_array(struct sugg *s, const char *target, const void *v, size_t n, size_t stride)
{
    for (size_t i = 0; i < n; i++)
        sugg_add(s, target, *(const char *const *)(const void *)((const char *)v + i * stride));
}

static const char *sugg_text(const struct sugg *s, char *buf, size_t sz)
{
    if (!s->best)
        return "";
    snprintf(buf, sz, "; did you mean '%s'?", s->best);
    return buf;
}

static bool name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > NAME_MAX_LEN)
        return false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f)
            return false;
    return true;
}

static bool env_name_ok(const char *s)
{
    if (!(*s == '_' || (*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z')))
        return false;
    for (s++; *s; s++)
        if (!(*s == '_' || (*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
              (*s >= '0' && *s <= '9')))
            return false;
    return true;
}

static char *path_join(const char *dir, const char *rel)
{
    size_t a = strlen(dir), b = strlen(rel);
    char *p = bb_xmalloc(a + b + 2);
    memcpy(p, dir, a);
    size_t o = a;
    if (o == 0 || p[o - 1] != '/')
        p[o++] = '/';
    memcpy(p + o, rel, b + 1);
    return p;
}

/* Absolute form of p: as is when absolute, else against base (NULL = working directory). */
static char *abs_path(const char *base, const char *p)
{
    if (p[0] == '/')
        return bb_xstrdup(p);
    while (p[0] == '.' && p[1] == '/') {
        p += 2;
        while (*p == '/')
            p++;
    }
    char cwd[PATH_MAX];
    if (!base) {
        if (!getcwd(cwd, sizeof cwd))
            return bb_xstrdup(p);
        base = cwd;
    }
    if (!*p || !strcmp(p, "."))
        return bb_xstrdup(base);
    return path_join(base, p);
}

/* ---- typed getters: each reports its own located error and returns false -------------------- */

/* Check the shape of mapping n: scalar keys, no duplicates, known keys (did-you-mean), and
 * "not supported yet" for KF_NYI keys. keys.v NULL = user-chosen names (only shape and
 * duplicates checked). Returns false when there is nothing to walk (null, or not a mapping). */
static bool check_map(struct ld *l, struct bb_cdoc *d, yaml_node_t *n, const char *path,
                      struct keyset keys)
{
    if (!n || bb_cdoc_is_null(n))
        return false;
    if (n->type != YAML_MAPPING_NODE) {
        if (*path)
            err_at(l, d, n, "%s: expected a mapping", path);
        else
            err_at(l, d, n, "expected a mapping at the top level");
        return false;
    }
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = bb_cdoc_node(d, p->key);
        const char *ks = scalar(k);
        if (!ks) {
            err_at(l, d, k, "%s%sexpected a scalar key", path, *path ? ": " : "");
            continue;
        }
        bool dup = false;
        for (yaml_node_pair_t *q = n->data.mapping.pairs.start; q < p; q++) {
            yaml_node_t *k2 = bb_cdoc_node(d, q->key);
            const char *s2 = scalar(k2);
            if (s2 && !strcmp(s2, ks)) {
                struct bb_conf_pos fp = bb_cdoc_pos(d, k2);
                char kp[512];
                err_at(l, d, k, "%s: duplicate key (first defined at %d:%d)",
                       pj(kp, sizeof kp, path, ks), fp.line, fp.col);
                dup = true;
                break;
            }
        }
        if (dup || !keys.v)
            continue;
        const struct keydef *def = NULL;
        for (size_t i = 0; i < keys.n && !def; i++)
            if (!strcmp(ks_at(keys, i)->name, ks))
                def = ks_at(keys, i);
        if (!def) {
            struct sugg s = {0};
            char sb[128];
            sugg_array(&s, ks, keys.v, keys.n, keys.stride);
            if (*path)
                err_at(l, d, k, "unknown key '%s' in %s%s", ks, path, sugg_text(&s, sb, sizeof sb));
            else
                err_at(l, d, k, "unknown key '%s'%s", ks, sugg_text(&s, sb, sizeof sb));
        } else if (def->flags & KF_NYI) {
            char kp[512];
            err_at(l, d, k, "%s: not supported yet", pj(kp, sizeof kp, path, ks));
        }
    }
    return true;
}

static const char *get_str(struct ld *l, struct bb_cdoc *d, yaml_node_t *v, const char *path)
{
    if (!v || v->type != YAML_SCALAR_NODE || bb_cdoc_is_null(v)) {
        err_at(l, d, v, "%s: expected a string", path);
        return NULL;
    }
    const char *s = (const char *)v->data.scalar.value;
    if (strlen(s) != v->data.scalar.length) {
        err_at(l, d, v, "%s: must not contain a NUL character", path);
        return NULL;
    }
    if (!*s) {
        err_at(l, d, v, "%s: must not be empty", path);
        return NULL;
    }
    return s;
}

static bool get_uint(struct ld *l, struct bb_cdoc *d, yaml_node_t *v, const char *path,
                     uint64_t min, uint64_t max, uint64_t *out)
{
    const char *s = scalar(v);
    if (!s || bb_cdoc_is_null(v)) {
        err_at(l, d, v, "%s: expected an integer", path);
        return false;
    }
    if (s[0] == '-' && s[1] >= '0' && s[1] <= '9') {
        err_at(l, d, v, "%s: must not be negative", path);
        return false;
    }
    if (*s == '+')
        s++;
    if (!*s) {
        err_at(l, d, v, "%s: expected an integer", path);
        return false;
    }
    uint64_t x = 0;
    bool over = false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') {
            err_at(l, d, v, "%s: expected an integer, got '%s'", path, scalar(v));
            return false;
        }
        unsigned dg = (unsigned)(*s - '0');
        if (x > (UINT64_MAX - dg) / 10)
            over = true;
        else
            x = x * 10 + dg;
    }
    if (over || x > max) {
        err_at(l, d, v, "%s: out of range (maximum %llu)", path, (unsigned long long)max);
        return false;
    }
    if (x < min) {
        err_at(l, d, v, "%s: must be at least %llu (got %llu)", path, (unsigned long long)min,
               (unsigned long long)x);
        return false;
    }
    *out = x;
    return true;
}

static bool get_u32(struct ld *l, struct bb_cdoc *d, yaml_node_t *v, const char *path, uint32_t min,
                    uint32_t max, uint32_t *out)
{
    uint64_t x;
    if (!get_uint(l, d, v, path, min, max, &x))
        return false;
    *out = (uint32_t)x;
    return true;
}

static bool get_bool(struct ld *l, struct bb_cdoc *d, yaml_node_t *v, const char *path, bool *out)
{
    const char *s = scalar(v);
    static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no", "off"};
    for (size_t i = 0; s && i < 3; i++) {
        if (!strcasecmp(s, yes[i])) {
            *out = true;
            return true;
        }
        if (!strcasecmp(s, no[i])) {
            *out = false;
            return true;
        }
    }
    err_at(l, d, v, "%s: expected true or false", path);
    return false;
}

static bool get_double(struct ld *l, struct bb_cdoc *d, yaml_node_t *v, const char *path,
                       double max, double *out)
{
    const char *s = scalar(v);
    char *end;
    errno = 0;
    double x = s && *s && !bb_cdoc_is_null(v) ? strtod(s, &end) : NAN;
    if (isnan(x) || *end || errno == ERANGE || !isfinite(x)) {
        err_at(l, d, v, "%s: expected a number", path);
        return false;
    }
    if (x < 0) {
        err_at(l, d, v, "%s: must not be negative", path);
        return false;
    }
    if (x > max) {
        err_at(l, d, v, "%s: out of range (maximum %g)", path, max);
        return false;
    }
    *out = x;
    return true;
}

/* One of names; -1 after a located error naming the choices (with a did-you-mean). */
static int get_enum(struct ld *l, struct bb_cdoc *d, yaml_node_t *v, const char *path,
                    const char *what, const char *const *names, size_t n)
{
    const char *s = get_str(l, d, v, path);
    if (!s)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(s, names[i]))
            return (int)i;
    char list[256] = "", sb[128];
    size_t o = 0;
    for (size_t i = 0; i < n && o < sizeof list; i++)
        o += (size_t)snprintf(list + o, sizeof list - o, "%s%s",
                              i == 0       ? ""
                              : i + 1 == n ? " or "
                                           : ", ",
                              names[i]);
    struct sugg sg = {0};
    sugg_array(&sg, s, names, n, sizeof *names);
    err_at(l, d, v, "%s: unknown %s '%s' (expected %s)%s", path, what, s, list,
           sugg_text(&sg, sb, sizeof sb));
    return -1;
}

/* A non-empty list of non-empty strings (cheap validation of unsupported keys). */
static void check_str_list(struct ld *l, struct bb_cdoc *d, yaml_node_t *v, const char *path,
                           bool allow_empty)
{
    if (!v || bb_cdoc_is_null(v))
        return;
    if (v->type != YAML_SEQUENCE_NODE) {
        err_at(l, d, v, "%s: expected a list", path);
        return;
    }
    if (!allow_empty && v->data.sequence.items.start == v->data.sequence.items.top)
        err_at(l, d, v, "%s: must not be empty", path);
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
         it++) {
        char ip[512];
        snprintf(ip, sizeof ip, "%s[%d]", path, (int)(it - v->data.sequence.items.start));
        get_str(l, d, bb_cdoc_node(d, *it), ip);
    }
}

static void opt_bool(struct ld *l, struct bb_cdoc *d, yaml_node_t *m, const char *base,
                     const char *key, bool *out)
{
    char p[512];
    bool tmp;
    yaml_node_t *v = map_get(d, m, key, NULL);
    if (v)
        get_bool(l, d, v, pj(p, sizeof p, base, key), out ? out : &tmp);
}

static bool opt_u32(struct ld *l, struct bb_cdoc *d, yaml_node_t *m, const char *base,
                    const char *key, uint32_t min, uint32_t max, uint32_t *out)
{
    char p[512];
    uint32_t tmp;
    yaml_node_t *v = map_get(d, m, key, NULL);
    return v && get_u32(l, d, v, pj(p, sizeof p, base, key), min, max, out ? out : &tmp);
}

static int opt_enum(struct ld *l, struct bb_cdoc *d, yaml_node_t *m, const char *base,
                    const char *key, const char *what, const char *const *names, size_t n)
{
    char p[512];
    yaml_node_t *v = map_get(d, m, key, NULL);
    return v ? get_enum(l, d, v, pj(p, sizeof p, base, key), what, names, n) : -1;
}

/* A readable regular file named relative to the config directory; malloc'd absolute path. */
static char *get_file(struct ld *l, struct bb_cdoc *d, yaml_node_t *v, const char *path)
{
    const char *s = get_str(l, d, v, path);
    if (!s)
        return NULL;
    char *abs = abs_path(l->c->config_dir, s);
    int fd = open(abs, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0) {
        err_at(l, d, v, "%s: cannot read '%s': %s", path, abs, strerror(errno));
    } else if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        err_at(l, d, v, "%s: '%s' is not a regular file", path, abs);
    } else {
        close(fd);
        return abs;
    }
    if (fd >= 0)
        close(fd);
    free(abs);
    return NULL;
}

/* ---- listen ------------------------------------------------------------------------------- */

/* NULL on success; otherwise why s is not host:port or [v6]:port. host is malloc'd. */
static const char *split_hostport(const char *s, char **host, uint16_t *port)
{
    const char *h, *ps;
    size_t hlen;
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (!rb)
            return "missing ']' after the IPv6 address";
        if (rb[1] != ':')
            return "expected host:port or [v6]:port";
        h = s + 1;
        hlen = (size_t)(rb - h);
        ps = rb + 2;
        char tmp[INET6_ADDRSTRLEN + 1];
        unsigned char bin[16];
        if (hlen == 0 || hlen >= sizeof tmp)
            return "invalid IPv6 address";
        memcpy(tmp, h, hlen);
        tmp[hlen] = '\0';
        if (inet_pton(AF_INET6, tmp, bin) != 1)
            return "invalid IPv6 address";
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon)
            return "expected host:port or [v6]:port";
        if (memchr(s, ':', (size_t)(colon - s)))
            return "an IPv6 address must be written in brackets: [v6]:port";
        h = s;
        hlen = (size_t)(colon - s);
        ps = colon + 1;
        if (hlen == 0)
            return "missing host (use 0.0.0.0:port to listen on every address)";
        for (size_t i = 0; i < hlen; i++) {
            char c = h[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '-'))
                return "invalid host";
        }
    }
    unsigned long p = 0;
    size_t nd = 0;
    for (; *ps; ps++, nd++) {
        if (*ps < '0' || *ps > '9' || nd >= 5)
            return "port must be a number between 1 and 65535";
        p = p * 10 + (unsigned long)(*ps - '0');
    }
    if (nd == 0 || p < 1 || p > 65535)
        return "port must be a number between 1 and 65535";
    *host = bb_xstrndup(h, hlen);
    *port = (uint16_t)p;
    return NULL;
}

static void add_listen(struct ld *l, struct bb_cdoc *d, yaml_node_t *n, const char *path,
                       size_t cap)
{
    struct bb_conf *c = l->c;
    const char *s = get_str(l, d, n, path);
    if (!s)
        return;
    char *host;
    uint16_t port;
    const char *why = split_hostport(s, &host, &port);
    if (why) {
        err_at(l, d, n, "%s: bad address '%s': %s", path, s, why);
        return;
    }
    for (size_t i = 0; i < c->n_listen; i++) {
        if (c->listen[i].port == port && !strcmp(c->listen[i].host, host)) {
            err_at(l, d, n, "%s: address '%s' is listed twice", path, s);
            free(host);
            return;
        }
    }
    if (!c->listen)
        c->listen = bb_xcalloc(cap, sizeof *c->listen);
    c->listen[c->n_listen++] = (struct bb_listen){bb_xstrdup(s), host, port};
}

static void parse_listen(struct ld *l, yaml_node_t *v)
{
    struct bb_cdoc *d = &l->cfg;
    if (!v || bb_cdoc_is_null(v)) {
        struct bb_conf *c = l->c;
        c->listen = bb_xcalloc(1, sizeof *c->listen);
        c->listen[0] = (struct bb_listen){bb_xstrdup("0.0.0.0:8080"), bb_xstrdup("0.0.0.0"), 8080};
        c->n_listen = 1;
        return;
    }
    if (v->type == YAML_SCALAR_NODE) {
        add_listen(l, d, v, "listen", 1);
        return;
    }
    if (v->type != YAML_SEQUENCE_NODE) {
        err_at(l, d, v, "listen: expected an address or a list of addresses");
        return;
    }
    size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    if (n == 0) {
        err_at(l, d, v, "listen: expected at least one address");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        char p[32];
        snprintf(p, sizeof p, "listen[%zu]", i);
        add_listen(l, d, bb_cdoc_node(d, v->data.sequence.items.start[i]), p, n);
    }
}

/* ---- top-level scalars and small sections ------------------------------------------------- */

static void parse_workers(struct ld *l, yaml_node_t *v)
{
    struct bb_cdoc *d = &l->cfg;
    const char *s = scalar(v);
    if (!v || bb_cdoc_is_null(v) || (s && !strcmp(s, "auto"))) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        l->c->workers = n < 1 ? 1 : n > BB_SHM_MAX_WORKERS ? BB_SHM_MAX_WORKERS : (uint32_t)n;
        return;
    }
    if (s && !(*s >= '0' && *s <= '9') && *s != '-' && *s != '+') {
        err_at(l, d, v, "workers: expected 'auto' or an integer, got '%s'", s);
        return;
    }
    get_u32(l, d, v, "workers", 1, BB_SHM_MAX_WORKERS, &l->c->workers);
}

static void parse_tls(struct ld *l, yaml_node_t *v)
{
    struct bb_cdoc *d = &l->cfg;
    struct bb_conf *c = l->c;
    if (!check_map(l, d, v, "tls", KEYSET(tls_keys)))
        return;
    yaml_node_t *cert = map_get(d, v, "cert_file", NULL);
    yaml_node_t *key = map_get(d, v, "key_file", NULL);
    yaml_node_t *ca = map_get(d, v, "client_ca_file", NULL);
    if (cert)
        c->tls_cert_file = get_file(l, d, cert, "tls.cert_file");
    if (key)
        c->tls_key_file = get_file(l, d, key, "tls.key_file");
    if (ca)
        c->tls_client_ca_file = get_file(l, d, ca, "tls.client_ca_file");
    if (cert && !key)
        err_at(l, d, v, "tls: cert_file is set but key_file is missing");
    else if (key && !cert)
        err_at(l, d, v, "tls: key_file is set but cert_file is missing");
    else if (ca && !cert)
        err_at(l, d, ca, "tls.client_ca_file: needs cert_file and key_file (mTLS is part of TLS)");
}

static void parse_auth(struct ld *l, yaml_node_t *v)
{
    static const char *const modes[] = {"none", "keys", "token", "passthrough"};
    struct bb_cdoc *d = &l->cfg;
    struct bb_conf *c = l->c;
    if (!check_map(l, d, v, "auth", KEYSET(auth_keys)))
        return;
    yaml_node_t *m = map_get(d, v, "mode", NULL);
    if (m) {
        int i = get_enum(l, d, m, "auth.mode", "mode", modes, 4);
        if (i >= 0)
            c->auth_mode = (enum bb_auth_mode)i;
    }
    yaml_node_t *t = map_get(d, v, "client_tokens", NULL);
    check_str_list(l, d, t, "auth.client_tokens", false);
    if (t && t->type == YAML_SEQUENCE_NODE) {
        size_t n = (size_t)(t->data.sequence.items.top - t->data.sequence.items.start);
        c->client_tokens = calloc(n ? n : 1, sizeof *c->client_tokens);
        for (size_t i = 0; c->client_tokens && i < n; i++) {
            yaml_node_t *it = bb_cdoc_node(d, t->data.sequence.items.start[i]);
            char ip[64];
            snprintf(ip, sizeof ip, "auth.client_tokens[%zu]", i);
            const char *s = get_str(l, d, it, ip);
            if (s && (c->client_tokens[c->n_client_tokens] = strdup(s)))
                c->n_client_tokens++;
        }
    }
    if (c->auth_mode == BB_AUTH_TOKEN && !c->n_client_tokens)
        err_at(l, d, m ? m : v, "auth.mode: token needs auth.client_tokens (at least one token)");
    else if (c->auth_mode != BB_AUTH_TOKEN && t)
        err_at(l, d, t, "auth.client_tokens: only used with auth.mode: token");
}

static void parse_admin(struct ld *l, yaml_node_t *v, yaml_node_t **sock)
{
    struct bb_cdoc *d = &l->cfg;
    if (!check_map(l, d, v, "admin", KEYSET(admin_keys)))
        return;
    yaml_node_t *s = map_get(d, v, "socket", NULL);
    const char *str;
    if (s && (str = get_str(l, d, s, "admin.socket"))) {
        l->c->admin_socket = abs_path(NULL, str);
        *sock = s;
    }
    yaml_node_t *lst = map_get(d, v, "listen", NULL);
    if (lst && (str = get_str(l, d, lst, "admin.listen"))) {
        char *host;
        uint16_t port;
        const char *why = split_hostport(str, &host, &port);
        if (why) {
            err_at(l, d, lst, "admin.listen: bad address '%s': %s", str, why);
        } else {
            l->c->admin_listen = bb_xstrdup(str);
            l->c->admin_listen_host = host;
            l->c->admin_listen_port = port;
        }
    }
    yaml_node_t *te = map_get(d, v, "token_env", NULL);
    if (te && (str = get_str(l, d, te, "admin.token_env"))) {
        if (!env_name_ok(str)) {
            err_at(l, d, te, "admin.token_env: '%s' is not a valid environment variable name", str);
        } else {
            l->c->admin_token_env = bb_xstrdup(str);
            /* The bearer token of the HTTP admin API: read once here, like api_key_env. Not
             * an error when unset (busbarctl loads configs to find the socket); the master
             * and busbar -t check it (master/admin_http.c). */
            const char *tok = getenv(str);
            if (tok && *tok)
                l->c->admin_token = bb_xstrdup(tok);
        }
    }
    if (lst && !te)
        err_at(l, d, lst, "admin.listen: requires admin.token_env (the API's bearer token)");
}

static bool check_url(struct ld *l, struct bb_cdoc *d, yaml_node_t *v, const char *path,
                      const char *s, struct bb_url *url);

/* An exporter URL (OTLP collector, audit webhook): SSRF-guarded like a provider base_url. */
static char *obs_url(struct ld *l, yaml_node_t *m, const char *key, struct bb_url *url)
{
    struct bb_cdoc *d = &l->cfg;
    char p[128];
    yaml_node_t *v = map_get(d, m, key, NULL);
    const char *s = v ? get_str(l, d, v, pj(p, sizeof p, "observability", key)) : NULL;
    if (!s || !check_url(l, d, v, p, s, url))
        return NULL;
    return bb_xstrdup(s);
}

static void parse_observability(struct ld *l, yaml_node_t *v)
{
    struct bb_cdoc *d = &l->cfg;
    struct bb_conf *c = l->c;
    if (!check_map(l, d, v, "observability", KEYSET(obs_keys)))
        return;
    opt_bool(l, d, v, "observability", "overhead_header", &c->overhead_header);
    opt_bool(l, d, v, "observability", "metrics", &c->metrics);
    opt_u32(l, d, v, "observability", "key_series_max", 0, KEY_SERIES_CEILING, &c->key_series_max);
    const char *s;
    yaml_node_t *n = map_get(d, v, "metrics_listen", NULL);
    if (n && (s = get_str(l, d, n, "observability.metrics_listen"))) {
        const char *why = split_hostport(s, &c->metrics_listen_host, &c->metrics_listen_port);
        if (why)
            err_at(l, d, n, "observability.metrics_listen: bad address '%s': %s", s, why);
        else
            c->metrics_listen = bb_xstrdup(s);
        if (!why && !c->metrics)
            err_at(l, d, n,
                   "observability.metrics_listen: metrics are off "
                   "(observability.metrics: false)");
    }
    n = map_get(d, v, "access_log", NULL);
    if (n && (s = get_str(l, d, n, "observability.access_log"))) {
        char *abs = abs_path(c->config_dir, s);
        char *dir = bb_xstrdup(abs);
        char *slash = strrchr(dir, '/');
        struct stat st;
        if (slash && slash == dir)
            slash[1] = '\0'; /* a file in / */
        else if (slash)
            *slash = '\0';
        if (stat(abs, &st) == 0 && !S_ISREG(st.st_mode))
            err_at(l, d, n, "observability.access_log: '%s' is not a regular file", abs);
        else if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
            err_at(l, d, n, "observability.access_log: directory '%s' does not exist", dir);
        else
            c->access_log = abs, abs = NULL;
        free(abs);
        free(dir);
    }
    c->otlp_endpoint = obs_url(l, v, "otlp_endpoint", &c->otlp_url);
    static const char *const otlp_protocols[] = {"http/protobuf", "http/json"};
    c->otlp_json = opt_enum(l, d, v, "observability", "otlp_protocol", "OTLP protocol",
                            otlp_protocols, 2) == 1;
    c->audit_url = obs_url(l, v, "request_log_webhook_url", &c->audit_url_parsed);
}

static void parse_limits(struct ld *l, yaml_node_t *v)
{
    struct bb_cdoc *d = &l->cfg;
    if (!check_map(l, d, v, "limits", KEYSET(limit_defs)))
        return;
    for (size_t i = 0; i < sizeof limit_defs / sizeof limit_defs[0]; i++) {
        const struct limdef *ld = &limit_defs[i];
        yaml_node_t *n = map_get(d, v, ld->k.name, NULL);
        char p[128];
        uint64_t x;
        if (!n || !get_uint(l, d, n, pj(p, sizeof p, "limits", ld->k.name), ld->min, ld->max, &x))
            continue;
        char *field = (char *)&l->c->limits + ld->off;
        if (ld->wide) {
            memcpy(field, &x, sizeof x);
        } else {
            uint32_t x32 = (uint32_t)x;
            memcpy(field, &x32, sizeof x32);
        }
    }
}

/* ---- cluster (SPEC §7) ---------------------------------------------------------------------- */

/* redis://[user@]host[:port][/db] or rediss://… into c. NULL, or why it is not one. A password
 * in the URL is refused: it belongs in the environment (cluster.password_env). */
static const char *parse_redis_url(const char *s, struct bb_cluster_conf *c)
{
    const char *p;
    if (!strncmp(s, "redis://", 8)) {
        p = s + 8;
    } else if (!strncmp(s, "rediss://", 9)) {
        p = s + 9;
        c->tls = true;
    } else {
        return "expected redis://host[:port][/db] or rediss://host[:port][/db] (TLS)";
    }
    const char *end = p + strcspn(p, "/?#");
    const char *at = memchr(p, '@', (size_t)(end - p));
    if (at) {
        if (memchr(p, ':', (size_t)(at - p)))
            return "a password must not be written in the URL: put it in the environment "
                   "variable named by cluster.password_env";
        if (at == p)
            return "empty user name before '@'";
        c->user = bb_xstrndup(p, (size_t)(at - p));
        p = at + 1;
    }
    char hp[300];
    size_t hl = (size_t)(end - p);
    if (hl == 0 || hl >= sizeof hp - 8)
        return "missing or overlong host";
    memcpy(hp, p, hl);
    hp[hl] = '\0';
    bool has_port = hp[0] == '[' ? strstr(hp, "]:") != NULL : strchr(hp, ':') != NULL;
    if (!has_port)
        strcat(hp, ":6379");
    const char *why = split_hostport(hp, &c->host, &c->port);
    if (why)
        return why;
    c->db = 0;
    if (*end == '/')
        end++;
    if (*end >= '0' && *end <= '9') {
        char *e;
        errno = 0;
        unsigned long db = strtoul(end, &e, 10);
        if (errno || db > 15)
            return "the database after '/' must be a number from 0 to 15";
        c->db = (unsigned)db;
        end = e;
    }
    if (*end)
        return "unexpected text after the host (only /db, a number from 0 to 15, may follow)";
    return NULL;
}

static void parse_cluster(struct ld *l, yaml_node_t *v)
{
    static const char *const local_deny[] = {"local", "deny"};
    struct bb_cdoc *d = &l->cfg;
    struct bb_cluster_conf *c = &l->c->cluster;
    c->timeout_ms = 50;
    c->lease_secs = 10;
    if (!v || !check_map(l, d, v, "cluster", KEYSET(cluster_keys)))
        return;
    c->enabled = true;
    yaml_node_t *n = map_get(d, v, "redis_url", NULL);
    const char *s;
    if (!n) {
        err_at(l, d, v, "cluster: redis_url is required (redis://host:port/db or rediss://…)");
    } else if ((s = get_str(l, d, n, "cluster.redis_url"))) {
        const char *why = parse_redis_url(s, c);
        if (why) /* the URL itself is not repeated: it may hold a password */
            err_at(l, d, n, "cluster.redis_url: %s", why);
        else
            c->redis_url = bb_xstrdup(s);
    }
    n = map_get(d, v, "key_prefix", NULL);
    s = n ? get_str(l, d, n, "cluster.key_prefix") : NULL;
    if (s && (strlen(s) > 64 || strpbrk(s, " \t\r\n")))
        err_at(l, d, n, "cluster.key_prefix: at most 64 characters, no spaces");
    c->key_prefix = bb_xstrdup(s ? s : "busbar:");
    c->deny_on_error = opt_enum(l, d, v, "cluster", "on_redis_error", "value", local_deny, 2) == 1;
    n = map_get(d, v, "node_id", NULL);
    s = n ? get_str(l, d, n, "cluster.node_id") : NULL;
    if (s && !name_ok(s))
        err_at(l, d, n, "cluster.node_id: 1 to %u printable characters, no spaces", NAME_MAX_LEN);
    char host[256] = "";
    if (!s && gethostname(host, sizeof host - 1) == 0)
        s = host;
    c->node_id = bb_xstrdup(s && *s ? s : "busbar");
    opt_u32(l, d, v, "cluster", "timeout_ms", 1, 60000, &c->timeout_ms);
    opt_u32(l, d, v, "cluster", "lease_secs", 2, 3600, &c->lease_secs);
    n = map_get(d, v, "password_env", NULL);
    if (n && (s = get_str(l, d, n, "cluster.password_env"))) {
        if (!env_name_ok(s)) {
            err_at(l, d, n, "cluster.password_env: '%s' is not a valid environment variable name",
                   s);
        } else {
            c->password_env = bb_xstrdup(s);
            /* Read once here, like admin.token_env; not an error when unset (busbarctl loads
             * configs to find the socket): the master and busbar -t check it. */
            const char *pw = getenv(s);
            if (pw && *pw)
                c->password = bb_xstrdup(pw);
        }
    }
    if (c->user && !c->password_env)
        err_at(l, d, map_get(d, v, "redis_url", NULL),
               "cluster.redis_url: a user name needs cluster.password_env (its password)");
    yaml_node_t *tk = NULL, *t = map_get(d, v, "tls", &tk);
    if (t && check_map(l, d, t, "cluster.tls", KEYSET(cluster_tls_keys))) {
        if (!c->tls)
            err_at(l, d, tk, "cluster.tls: only used with a rediss:// redis_url");
        if ((n = map_get(d, t, "ca_file", NULL)))
            c->tls_ca_file = get_file(l, d, n, "cluster.tls.ca_file");
        if ((n = map_get(d, t, "cert_file", NULL)))
            c->tls_cert_file = get_file(l, d, n, "cluster.tls.cert_file");
        if ((n = map_get(d, t, "key_file", NULL)))
            c->tls_key_file = get_file(l, d, n, "cluster.tls.key_file");
        if (!map_get(d, t, "cert_file", NULL) != !map_get(d, t, "key_file", NULL))
            err_at(l, d, tk,
                   "cluster.tls: cert_file and key_file go together (client certificate)");
    }
}

/* governance: (SPEC §6). */
static void parse_governance(struct ld *l, yaml_node_t *root)
{
    static const char *const allow_deny[] = {"allow", "deny"};
    struct bb_cdoc *d = &l->cfg;
    struct bb_conf *c = l->c;
    yaml_node_t *v = map_get(d, root, "governance", NULL);
    if (check_map(l, d, v, "governance", KEYSET(governance_keys))) {
        opt_bool(l, d, v, "governance", "enabled", &c->gov_enabled);
        yaml_node_t *n = map_get(d, v, "db_path", NULL);
        const char *s = n ? get_str(l, d, n, "governance.db_path") : NULL;
        if (s)
            c->gov_db_path = abs_path(c->state_dir, s); /* relative: inside state_dir */
        c->gov_deny_on_store_error =
            opt_enum(l, d, v, "governance", "on_store_error", "value", allow_deny, 2) == 1;
        opt_u32(l, d, v, "governance", "default_estimate_output_tokens", 1, UINT32_MAX,
                &c->gov_default_estimate_output_tokens);
        opt_u32(l, d, v, "governance", "ledger_retention_days", 0, 36500,
                &c->gov_ledger_retention_days);
    }
    if (!c->gov_db_path)
        c->gov_db_path = path_join(c->state_dir, "busbar.db");
}

/* ---- security (SPEC §9) ---------------------------------------------------------------------- */

/* One list of security: into names (lowercase, no trailing dot) and, when nets is set,
 * address ranges. */
static void security_list(struct ld *l, yaml_node_t *v, const char *path, char ***names,
                          size_t *n_names, struct bb_net **nets, size_t *n_nets)
{
    struct bb_cdoc *d = &l->cfg;
    check_str_list(l, d, v, path, true);
    if (!v || v->type != YAML_SEQUENCE_NODE)
        return;
    size_t cnt = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    *names = bb_xcalloc(cnt ? cnt : 1, sizeof **names);
    if (nets)
        *nets = bb_xcalloc(cnt ? cnt : 1, sizeof **nets);
    for (size_t i = 0; i < cnt; i++) {
        yaml_node_t *e = bb_cdoc_node(d, v->data.sequence.items.start[i]);
        const char *s = scalar(e);
        if (!s || !*s)
            continue; /* reported by check_str_list */
        struct bb_net net;
        int r = bb_ssrf_parse_net(s, &net);
        if (r < 0 || (r > 0 && !nets)) {
            err_at(l, d, e,
                   r < 0 ? "%s[%zu]: '%s' is not a valid address or CIDR range"
                         : "%s[%zu]: '%s' is an address: list host names here",
                   path, i, s);
        } else if (r > 0) {
            (*nets)[(*n_nets)++] = net;
        } else {
            struct bb_url u;
            struct bb_err ue = {{0}};
            char url[300];
            snprintf(url, sizeof url, "http://%.256s/", s);
            if (bb_url_parse(url, &u, &ue) < 0) {
                err_at(l, d, e, "%s[%zu]: '%s' is not a valid host name", path, i, s);
                continue;
            }
            (*names)[(*n_names)++] = u.host; /* lowercased by the parser */
            char *dot = u.host + strlen(u.host);
            while (dot > u.host && dot[-1] == '.')
                *--dot = '\0';
            free(u.path);
        }
    }
}

static void parse_security(struct ld *l, yaml_node_t *v)
{
    struct bb_cdoc *d = &l->cfg;
    struct bb_security_conf *sec = &l->c->security;
    if (!check_map(l, d, v, "security", KEYSET(security_keys)))
        return;
    security_list(l, map_get(d, v, "blocked_metadata_hosts", NULL),
                  "security.blocked_metadata_hosts", &sec->deny_hosts, &sec->n_deny_hosts,
                  &sec->deny_nets, &sec->n_deny_nets);
    security_list(l, map_get(d, v, "allow_metadata_hosts", NULL), "security.allow_metadata_hosts",
                  &sec->allow_hosts, &sec->n_allow_hosts, NULL, NULL);
}

/* ---- providers ---------------------------------------------------------------------------- */

static bool check_url(struct ld *l, struct bb_cdoc *d, yaml_node_t *v, const char *path,
                      const char *s, struct bb_url *url)
{
    struct bb_err e = {{0}};
    memset(url, 0, sizeof *url);
    if (bb_url_parse(s, url, &e) < 0) {
        err_at(l, d, v, "%s: %s", path, e.msg[0] ? e.msg : "malformed URL");
        return false;
    }
    char why[200];
    if (bb_ssrf_check_host(&l->c->security, url->host, url->tls, why, sizeof why))
        return true;
    err_at(l, d, v, "%s: host '%s' %s", path, url->host, why);
    bb_url_free(url);
    memset(url, 0, sizeof *url);
    return false;
}

static int fclass_of(const char *name)
{
    static const char *const names[] = {
#define X(id, n) n,
        BB_FCLASS_LIST(X)
#undef X
    };
    for (size_t i = 0; name && i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(names[i], name))
            return (int)i;
    return -1;
}

static void parse_pdef(struct ld *l, struct bb_cdoc *d, yaml_node_t *key, yaml_node_t *m,
                       const char *path, bool catalogue, struct pdef *p)
{
    memset(p, 0, sizeof *p);
    p->name = scalar(key);
    p->d = d;
    p->key = key;
    p->protocol = -1;
    if (!name_ok(p->name))
        err_at(l, d, key, "%s: invalid provider name (1 to %u printable characters, no spaces)",
               path, NAME_MAX_LEN);
    if (!check_map(l, d, m, path, catalogue ? KEYSET(cat_keys) : KEYSET(prov_keys)) && m &&
        !bb_cdoc_is_null(m))
        return; /* not a mapping: reported */
    char kp[512];
    yaml_node_t *v;
    if ((v = map_get(d, m, "protocol", NULL))) {
        const char *s = get_str(l, d, v, pj(kp, sizeof kp, path, "protocol"));
        p->protocol = s ? bb_proto_from_name(s) : -2;
        if (s && p->protocol < 0) {
            struct sugg sg = {0};
            char sb[128];
            sugg_array(&sg, s, proto_names, BB_PROTO__COUNT, sizeof *proto_names);
            char names[256] = "";
            for (int i = 0; i < BB_PROTO__COUNT; i++)
                snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s",
                         i == 0                     ? ""
                         : i == BB_PROTO__COUNT - 1 ? " or "
                                                    : ", ",
                         proto_names[i]);
            err_at(l, d, v, "%s: unknown protocol '%s' (expected %s)%s", kp, s, names,
                   sugg_text(&sg, sb, sizeof sb));
            p->protocol = -2;
        }
    }
    if ((v = map_get(d, m, "base_url", NULL))) {
        const char *s = get_str(l, d, v, pj(kp, sizeof kp, path, "base_url"));
        if (s) {
            p->base_url = s;
            p->url_ok = check_url(l, d, v, kp, s, &p->url);
        }
    }
    if ((v = map_get(d, m, "api_key_env", NULL))) {
        p->has_key_env = true;
        p->key_env_node = v;
        if (!bb_cdoc_is_null(v)) { /* null = explicitly no credential (overrides the catalogue) */
            const char *s = get_str(l, d, v, pj(kp, sizeof kp, path, "api_key_env"));
            if (s && !env_name_ok(s))
                err_at(l, d, v, "%s: '%s' is not a valid environment variable name", kp, s);
            p->api_key_env = s;
        }
    }
    if ((v = map_get(d, m, "region", NULL)))
        p->region = get_str(l, d, v, pj(kp, sizeof kp, path, "region"));
    if ((v = map_get(d, m, "error_map", NULL)) && !bb_cdoc_is_null(v)) {
        pj(kp, sizeof kp, path, "error_map");
        if (v->type != YAML_MAPPING_NODE) {
            err_at(l, d, v, "%s: expected a mapping", kp);
        } else {
            bool ok = true;
            for (yaml_node_pair_t *pr = v->data.mapping.pairs.start; pr < v->data.mapping.pairs.top;
                 pr++) {
                yaml_node_t *val = bb_cdoc_node(d, pr->value);
                const char *cls = scalar(val);
                if (!scalar(bb_cdoc_node(d, pr->key)) || fclass_of(cls) < 0) {
                    err_at(l, d, val,
                           "%s: unknown error class '%s' (expected rate_limit, overloaded, "
                           "server_error, timeout, network, auth, billing, client_error or "
                           "context_length)",
                           kp, cls ? cls : "");
                    ok = false;
                }
            }
            p->error_map = ok ? v : NULL;
        }
    }
    if ((v = map_get(d, m, "health", NULL)) &&
        check_map(l, d, v, pj(kp, sizeof kp, path, "health"), KEYSET(health_keys))) {
        static const char *const modes[] = {"passive", "active"};
        int mode = opt_enum(l, d, v, kp, "mode", "health mode", modes, 2);
        uint32_t iv = 10;
        opt_u32(l, d, v, kp, "interval_secs", 1, 86400, &iv);
        p->health_interval_secs = mode == 1 ? iv : 0;
    }
    if (catalogue) {
        if (p->protocol == -1)
            err_at(l, d, key, "%s: missing required key 'protocol'", path);
        if (!map_get(d, m, "base_url", NULL))
            err_at(l, d, key, "%s: missing required key 'base_url'", path);
    }
}

static struct pdef *find_pdef(struct pdef *v, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (v[i].name && !strcmp(v[i].name, name))
            return &v[i];
    return NULL;
}

static int find_provider(const struct bb_conf *c, const char *name)
{
    for (size_t i = 0; i < c->n_providers; i++)
        if (!strcmp(c->providers[i].name, name))
            return (int)i;
    return -1;
}

static void url_copy(struct bb_url *dst, const struct bb_url *src)
{
    *dst = *src;
    dst->host = src->host ? bb_xstrdup(src->host) : NULL;
    dst->path = src->path ? bb_xstrdup(src->path) : NULL;
}

/* Instantiate provider name from its config override (o) and/or catalogue entry (k). Errors in
 * either definition were reported when it was parsed; only what the merge reveals is new. */
static int add_provider(struct ld *l, const char *name)
{
    struct bb_conf *c = l->c;
    struct pdef *o = find_pdef(l->ovrs, l->n_ovrs, name);
    struct pdef *k = find_pdef(l->cats, l->n_cats, name);
    c->providers = bb_xrealloc(c->providers, (c->n_providers + 1) * sizeof *c->providers);
    struct bb_provider *p = &c->providers[c->n_providers];
    memset(p, 0, sizeof *p);
    p->name = bb_xstrdup(name);
    struct pdef *at = o ? o : k;
    p->pos = bb_cdoc_pos(at->d, at->key);

    int proto = o && o->protocol != -1 ? o->protocol : k ? k->protocol : -1;
    p->protocol = proto >= 0 ? (enum bb_proto)proto : BB_PROTO_DEFAULT;
    struct pdef *bu = o && o->base_url ? o : k && k->base_url ? k : NULL;
    if (bu) {
        p->base_url = bb_xstrdup(bu->base_url);
        if (bu->url_ok)
            url_copy(&p->url, &bu->url);
    }
    if (o && !k && (proto == -1 || !bu)) {
        const char *what = proto == -1 && !bu ? "protocol and base_url are"
                           : proto == -1      ? "protocol is"
                                              : "base_url is";
        struct sugg sg = {0};
        char sb[128];
        sugg_array(&sg, name, l->cats, l->n_cats, sizeof *l->cats);
        err_at(l, o->d, o->key, "providers.%s: not in the providers catalogue%s, so %s required%s",
               name, l->cat_note, what, sugg_text(&sg, sb, sizeof sb));
    }
    struct pdef *ke = o && o->has_key_env ? o : k && k->has_key_env ? k : NULL;
    if (ke && ke->api_key_env) {
        p->api_key_env = bb_xstrdup(ke->api_key_env);
        const char *val = getenv(ke->api_key_env);
        /* Unset or empty: the lane simply has no credential (not an error at load time). */
        p->api_key = val && *val ? bb_xstrdup(val) : NULL;
        /* Key hygiene, once for every writer: a key goes into a header line as it is, so a
         * control character (a pasted line break) must never reach one. */
        for (const char *q = p->api_key; q && *q; q++)
            if ((unsigned char)*q < 0x20 || *q == 0x7f) {
                err_at(l, ke->d, ke->key_env_node,
                       "providers.%s.api_key_env: the value of $%s contains a control character "
                       "(0x%02x at offset %zu): a provider key must be one line of text",
                       name, ke->api_key_env, (unsigned char)*q, (size_t)(q - p->api_key));
                break;
            }
    }
    const char *region = o && o->region ? o->region : k ? k->region : NULL;
    p->region = region ? bb_xstrdup(region) : NULL;
    p->health_interval_secs = o ? o->health_interval_secs : 0;
    struct pdef *em = o && o->error_map ? o : k && k->error_map ? k : NULL;
    if (em) {
        yaml_node_t *v = em->error_map;
        size_t n = (size_t)(v->data.mapping.pairs.top - v->data.mapping.pairs.start);
        p->error_map = bb_xcalloc(n, sizeof *p->error_map);
        for (yaml_node_pair_t *pr = v->data.mapping.pairs.start; pr < v->data.mapping.pairs.top;
             pr++) {
            struct bb_error_map *e = &p->error_map[p->n_error_map++];
            e->match = bb_xstrdup(scalar(bb_cdoc_node(em->d, pr->key)));
            e->fclass = (enum bb_fclass)fclass_of(scalar(bb_cdoc_node(em->d, pr->value)));
        }
    }
    return (int)c->n_providers++;
}

/* Index of provider name in the conf, instantiating it from the catalogue on first use. */
static int resolve_provider(struct ld *l, struct bb_cdoc *d, yaml_node_t *v, const char *path,
                            const char *name)
{
    int i = find_provider(l->c, name);
    if (i >= 0)
        return i;
    if (find_pdef(l->cats, l->n_cats, name))
        return add_provider(l, name);
    struct sugg sg = {0};
    char sb[128];
    sugg_array(&sg, name, l->ovrs, l->n_ovrs, sizeof *l->ovrs);
    sugg_array(&sg, name, l->cats, l->n_cats, sizeof *l->cats);
    err_at(l, d, v, "%s: unknown provider '%s' (not in providers: nor in the catalogue%s)%s", path,
           name, l->cat_note, sugg_text(&sg, sb, sizeof sb));
    return -1;
}

static size_t map_len(const yaml_node_t *m)
{
    return m && m->type == YAML_MAPPING_NODE
               ? (size_t)(m->data.mapping.pairs.top - m->data.mapping.pairs.start)
               : 0;
}

static void load_catalogue(struct ld *l, const char *path, bool explicit_path)
{
    struct bb_cdoc *d = &l->cat;
    int rc = bb_cdoc_load(d, path, l->c->files[1], !explicit_path, l->errs);
    if (rc == 1) {
        snprintf(l->cat_note, sizeof l->cat_note, "; no catalogue at '%s'", path);
        return;
    }
    if (rc < 0) {
        snprintf(l->cat_note, sizeof l->cat_note, "; the catalogue '%s' failed to load", path);
        return;
    }
    yaml_node_t *root = d->root;
    if (!check_map(l, d, root, "", NO_KEYS))
        return;
    l->cats = bb_xcalloc(map_len(root), sizeof *l->cats);
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = bb_cdoc_node(d, p->key);
        const char *name = scalar(k);
        if (!name || find_pdef(l->cats, l->n_cats, name))
            continue; /* reported by check_map */
        parse_pdef(l, d, k, bb_cdoc_node(d, p->value), name, true, &l->cats[l->n_cats++]);
    }
}

static void parse_providers(struct ld *l, yaml_node_t *v)
{
    struct bb_cdoc *d = &l->cfg;
    if (!check_map(l, d, v, "providers", NO_KEYS))
        return;
    l->ovrs = bb_xcalloc(map_len(v), sizeof *l->ovrs);
    for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
        yaml_node_t *k = bb_cdoc_node(d, p->key);
        const char *name = scalar(k);
        if (!name || find_pdef(l->ovrs, l->n_ovrs, name))
            continue;
        char path[512];
        pj(path, sizeof path, "providers", name);
        parse_pdef(l, d, k, bb_cdoc_node(d, p->value), path, false, &l->ovrs[l->n_ovrs++]);
    }
    /* Every provider listed in the config is part of the conf, used or not. */
    for (size_t i = 0; i < l->n_ovrs; i++)
        add_provider(l, l->ovrs[i].name);
}

/* ---- models (lanes) ------------------------------------------------------------------------ */

static int find_lane(const struct bb_conf *c, const char *name)
{
    return bb_conf_find_lane(c, name, strlen(name));
}

static void parse_price(struct ld *l, struct bb_cdoc *d, yaml_node_t *v, const char *path,
                        struct bb_price *pr)
{
    if (!check_map(l, d, v, path, KEYSET(price_keys))) {
        if (v && bb_cdoc_is_null(v))
            err_at(l, d, v, "%s: expected a mapping", path);
        return;
    }
    static const char *const names[] = {"input", "output", "cache_read", "cache_write"};
    double *dst[] = {&pr->input, &pr->output, &pr->cache_read, &pr->cache_write};
    bool given[4] = {false}, ok = true;
    for (int i = 0; i < 4; i++) {
        yaml_node_t *n = map_get(d, v, names[i], NULL);
        char p[512];
        if (!n)
            continue;
        given[i] = true;
        if (!get_double(l, d, n, pj(p, sizeof p, path, names[i]), 1e6, dst[i]))
            ok = false;
    }
    for (int i = 0; i < 2; i++) {
        if (!given[i]) {
            err_at(l, d, v, "%s: missing required key '%s'", path, names[i]);
            ok = false;
        }
    }
    /* Cache tiers default to the input price: never bill a cached token below the uncached
     * price the operator wrote down unless told so. */
    if (!given[2])
        pr->cache_read = pr->input;
    if (!given[3])
        pr->cache_write = pr->input;
    pr->set = ok;
}

static void parse_lane(struct ld *l, yaml_node_t *key, yaml_node_t *v)
{
    struct bb_cdoc *d = &l->cfg;
    struct bb_conf *c = l->c;
    const char *name = scalar(key);
    struct bb_lane *ln = &c->lanes[c->n_lanes++];
    memset(ln, 0, sizeof *ln);
    ln->name = bb_xstrdup(name);
    ln->pos = bb_cdoc_pos(d, key);
    ln->provider = -1;
    ln->default_max_tokens = 0; /* the catalogue's max_output, else 4096 (master/reload.c) */
    char path[512], kp[512];
    pj(path, sizeof path, "models", name);
    if (!name_ok(name))
        err_at(l, d, key, "%s: invalid model name (1 to %u printable characters, no spaces)", path,
               NAME_MAX_LEN);
    if (!check_map(l, d, v, path, KEYSET(lane_keys)) && v && !bb_cdoc_is_null(v)) {
        ln->upstream_model = bb_xstrdup(name);
        return; /* not a mapping: reported; nothing more to check */
    }
    yaml_node_t *n = map_get(d, v, "provider", NULL);
    const char *s;
    if (!n)
        err_at(l, d, key, "%s: missing required key 'provider'", path);
    else if ((s = get_str(l, d, n, pj(kp, sizeof kp, path, "provider"))))
        ln->provider = resolve_provider(l, d, n, kp, s);
    n = map_get(d, v, "upstream_model", NULL);
    s = n ? get_str(l, d, n, pj(kp, sizeof kp, path, "upstream_model")) : NULL;
    ln->upstream_model = bb_xstrdup(s ? s : name);
    opt_u32(l, d, v, path, "max_concurrent", 1, UINT32_MAX, &ln->max_concurrent);
    if ((n = map_get(d, v, "context_max", NULL)))
        get_uint(l, d, n, pj(kp, sizeof kp, path, "context_max"), 1, UINT64_MAX, &ln->context_max);
    opt_u32(l, d, v, path, "attempt_timeout_ms", 1, UINT32_MAX, &ln->attempt_timeout_ms);
    opt_u32(l, d, v, path, "default_max_tokens", 1, UINT32_MAX, &ln->default_max_tokens);
    opt_bool(l, d, v, path, "reasoning", &ln->reasoning);
    if ((n = map_get(d, v, "price", NULL)))
        parse_price(l, d, n, pj(kp, sizeof kp, path, "price"), &ln->price);
}

static void parse_models(struct ld *l, yaml_node_t *v)
{
    struct bb_cdoc *d = &l->cfg;
    struct bb_conf *c = l->c;
    if (!check_map(l, d, v, "models", NO_KEYS))
        return;
    c->lanes = bb_xcalloc(map_len(v), sizeof *c->lanes);
    for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
        yaml_node_t *k = bb_cdoc_node(d, p->key);
        const char *name = scalar(k);
        if (!name || find_lane(c, name) >= 0)
            continue; /* reported by check_map */
        parse_lane(l, k, bb_cdoc_node(d, p->value));
    }
}

/* ---- pools --------------------------------------------------------------------------------- */

static int find_pool(const struct bb_conf *c, const char *name)
{
    return bb_conf_find_pool(c, name, strlen(name));
}

static void parse_member(struct ld *l, struct bb_pool *pl, yaml_node_t *item, const char *path)
{
    struct bb_cdoc *d = &l->cfg;
    struct bb_conf *c = l->c;
    if (!check_map(l, d, item, path, KEYSET(member_keys))) {
        if (bb_cdoc_is_null(item))
            err_at(l, d, item, "%s: expected a mapping", path);
        return;
    }
    yaml_node_t *tk = NULL, *mk = NULL;
    yaml_node_t *t = map_get(d, item, "target", &tk), *m = map_get(d, item, "model", &mk);
    char kp[512];
    if (t && m) {
        err_at(l, d, mk, "%s: give either 'target' or 'model' (they mean the same), not both",
               path);
        return;
    }
    if (!t && !m) {
        err_at(l, d, item, "%s: missing required key 'target'", path);
        return;
    }
    yaml_node_t *tn = t ? t : m;
    const char *name = get_str(l, d, tn, pj(kp, sizeof kp, path, t ? "target" : "model"));
    uint32_t weight = 1;
    yaml_node_t *w = map_get(d, item, "weight", NULL);
    bool wok = !w || get_u32(l, d, w, pj(kp, sizeof kp, path, "weight"), 1, MAX_WEIGHT, &weight);
    if (!name)
        return;
    pj(kp, sizeof kp, path, t ? "target" : "model");
    int lane = find_lane(c, name);
    if (lane < 0) {
        if (find_pool(c, name) >= 0) {
            err_at(l, d, tn, "%s: '%s' is a pool; members must be models", kp, name);
        } else {
            struct sugg sg = {0};
            char sb[128];
            sugg_array(&sg, name, c->lanes, c->n_lanes, sizeof *c->lanes);
            err_at(l, d, tn, "%s: unknown model '%s'%s", kp, name, sugg_text(&sg, sb, sizeof sb));
        }
        return;
    }
    for (size_t i = 0; i < pl->n_members; i++) {
        if (pl->members[i].lane == lane) {
            err_at(l, d, tn, "%s: model '%s' is already a member of this pool", kp, name);
            return;
        }
    }
    if (wok)
        pl->members[pl->n_members++] = (struct bb_member){.lane = lane, .weight = weight};
}

static void parse_breaker(struct ld *l, struct bb_pool *pl, yaml_node_t *v, const char *path)
{
    static const char *const trip_modes[] = {"error_rate", "consecutive"};
    struct bb_cdoc *d = &l->cfg;
    struct bb_breaker_conf *b = &pl->breaker;
    if (!check_map(l, d, v, path, KEYSET(breaker_keys)))
        return;
    char tp[512], kp[512];
    yaml_node_t *t = map_get(d, v, "trip", NULL), *n;
    if (check_map(l, d, t, pj(tp, sizeof tp, path, "trip"), KEYSET(trip_keys))) {
        int m = opt_enum(l, d, t, tp, "mode", "trip mode", trip_modes, 2);
        if (m >= 0)
            b->consecutive_mode = m == 1;
        opt_u32(l, d, t, tp, "window_secs", 1, 86400, &b->window_secs);
        if ((n = map_get(d, t, "threshold", NULL))) {
            double th;
            if (get_double(l, d, n, pj(kp, sizeof kp, tp, "threshold"), 1.0, &th)) {
                if (th <= 0)
                    err_at(l, d, n, "%s: must be greater than 0", kp);
                else
                    b->threshold = th;
            }
        }
        opt_u32(l, d, t, tp, "min_requests", 1, UINT32_MAX, &b->min_requests);
        opt_u32(l, d, t, tp, "consecutive_n", 1, UINT32_MAX, &b->consecutive_n);
    }
    bool base_ok = opt_u32(l, d, v, path, "base_cooldown_secs", 1, 86400, &b->base_cooldown_secs);
    bool max_ok = opt_u32(l, d, v, path, "max_cooldown_secs", 1, 86400, &b->max_cooldown_secs);
    opt_u32(l, d, v, path, "hard_down_cooldown_secs", 1, 604800, &b->hard_down_cooldown_secs);
    yaml_node_t *mx = map_get(d, v, "max_cooldown_secs", NULL);
    if ((base_ok || max_ok) && b->max_cooldown_secs < b->base_cooldown_secs)
        err_at(l, d, mx ? mx : v, "%s: max_cooldown_secs (%u) is less than base_cooldown_secs (%u)",
               path, b->max_cooldown_secs, b->base_cooldown_secs);
}

static void parse_on_exhausted(struct ld *l, size_t pi, yaml_node_t *v, const char *path)
{
    struct bb_cdoc *d = &l->cfg;
    struct bb_pool *pl = &l->c->pools[pi];
    if (!check_map(l, d, v, path, KEYSET(exhausted_keys)))
        return;
    char kp[512];
    yaml_node_t *a = map_get(d, v, "action", NULL);
    if (!a) {
        err_at(l, d, v, "%s: missing required key 'action'", path);
        return;
    }
    const char *s = get_str(l, d, a, pj(kp, sizeof kp, path, "action"));
    if (!s)
        return;
    if (!strcmp(s, "reject")) {
        pl->on_exhausted = BB_EXHAUSTED_REJECT;
        return;
    }
    if (!strcmp(s, "least_bad")) {
        pl->on_exhausted = BB_EXHAUSTED_LEAST_BAD;
    } else if (!strncmp(s, "fallback_pool:", 14)) {
        pl->on_exhausted = BB_EXHAUSTED_FALLBACK_POOL;
        const char *target = s + 14;
        int fp = *target ? find_pool(l->c, target) : -1;
        if (fp < 0) {
            struct sugg sg = {0};
            char sb[128];
            sugg_array(&sg, target, l->c->pools, l->c->n_pools, sizeof *l->c->pools);
            err_at(l, d, a, "%s: unknown pool '%s'%s", kp, target, sugg_text(&sg, sb, sizeof sb));
        }
        pl->fallback_pool = fp;
        l->pool_action[pi] = a;
    } else if (!strncmp(s, "queue:", 6)) {
        pl->on_exhausted = BB_EXHAUSTED_QUEUE;
        const char *ms = s + 6;
        char *end;
        errno = 0;
        unsigned long long x = *ms >= '0' && *ms <= '9' ? strtoull(ms, &end, 10) : 0;
        if (!x || *end || errno || x > UINT32_MAX)
            err_at(l, d, a, "%s: expected queue:<max_ms> with max_ms between 1 and %u", kp,
                   UINT32_MAX);
        else
            pl->queue_max_ms = (uint32_t)x;
    } else {
        static const char *const acts[] = {"reject", "least_bad"};
        struct sugg sg = {0};
        char sb[128];
        sugg_array(&sg, s, acts, 2, sizeof *acts);
        err_at(l, d, a,
               "%s: unknown on_exhausted action '%s' (expected reject, least_bad, "
               "fallback_pool:<name> or queue:<max_ms>)%s",
               kp, s, sugg_text(&sg, sb, sizeof sb));
        return;
    }
}

/* ---- routing policies (SPEC §5.5) ----------------------------------------------------------- */

#define SCRIPT_MAX_BYTES (1u << 20)
#define POLICY_TIMEOUT_MAX_MS 60000u

/* The whole text of a script file; NULL with a located error. */
static char *read_script(struct ld *l, yaml_node_t *v, const char *path, const char *file,
                         size_t *len)
{
    FILE *f = fopen(file, "rb");
    char *buf = f ? bb_xmalloc(SCRIPT_MAX_BYTES + 1) : NULL;
    size_t n = buf ? fread(buf, 1, SCRIPT_MAX_BYTES + 1, f) : 0;
    if (!f || ferror(f) || n > SCRIPT_MAX_BYTES) {
        err_at(l, &l->cfg, v,
               !f || ferror(f) ? "%s: cannot read '%s'" : "%s: '%s' is larger than 1 MiB", path,
               file);
        free(buf);
        buf = NULL;
    }
    if (f)
        fclose(f);
    *len = n;
    return buf;
}

/* pools.NAME.policy with the pool's route: webhook needs url or socket, script needs
 * script_file, and a policy goes with no other route. The script is compiled and its top
 * level run here (common/sandbox.h): a script that does not load is a located error. */
static void parse_policy(struct ld *l, struct bb_pool *pl, yaml_node_t *route, yaml_node_t *v,
                         const char *path)
{
    static const char *const on_error[] = {"weighted", "first", "reject"};
    struct bb_cdoc *d = &l->cfg;
    struct bb_policy_conf *pc = &pl->policy;
    char kp[512];
    bool webhook = pl->route == BB_ROUTE_WEBHOOK, script = pl->route == BB_ROUTE_SCRIPT;
    pj(kp, sizeof kp, path, "policy");
    if (!v || bb_cdoc_is_null(v)) {
        if (webhook)
            err_at(l, d, route, "%s.route: webhook needs policy.url or policy.socket", path);
        if (script)
            err_at(l, d, route, "%s.route: script needs policy.script_file", path);
        return;
    }
    if (!check_map(l, d, v, kp, KEYSET(policy_keys)))
        return;
    if (!webhook && !script) {
        err_at(l, d, v, "%s: a policy needs route: webhook or route: script", kp);
        return;
    }
    yaml_node_t *url = map_get(d, v, "url", NULL), *sock = map_get(d, v, "socket", NULL),
                *sf = map_get(d, v, "script_file", NULL), *n;
    char p[560];
    const char *s;
    if (webhook && !url == !sock)
        err_at(l, d, url && sock ? sock : v, "%s: route: webhook needs one of url and socket", kp);
    if (script && !sf)
        err_at(l, d, v, "%s: route: script needs script_file", kp);
    if (script && (url || sock))
        err_at(l, d, url ? url : sock, "%s: %s is for route: webhook", kp, url ? "url" : "socket");
    if (webhook && sf)
        err_at(l, d, sf, "%s: script_file is for route: script", kp);
    if (webhook && url && !sock && (s = get_str(l, d, url, pj(p, sizeof p, kp, "url"))) &&
        check_url(l, d, url, p, s, &pc->url_parsed)) {
        pc->url = bb_xstrdup(s);
        pc->kind = BB_POLICY_WEBHOOK;
    }
    if (webhook && sock && !url && (s = get_str(l, d, sock, pj(p, sizeof p, kp, "socket")))) {
        char *abs = abs_path(l->c->config_dir, s);
        if (strlen(abs) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
            err_at(l, d, sock, "%s: '%s' is too long for a Unix socket path", p, abs);
            free(abs);
        } else {
            pc->socket = abs;
            pc->kind = BB_POLICY_SOCKET;
        }
    }
    if (script && sf && !url && !sock &&
        (pc->script_file = get_file(l, d, sf, pj(p, sizeof p, kp, "script_file")))) {
        size_t len;
        char *src = read_script(l, sf, p, pc->script_file, &len);
        char why[512];
        if (src && !(pc->script = bb_sandbox_new(pc->script_file, src, len, why, sizeof why)))
            err_at(l, d, sf, "%s: %s", p, why);
        free(src);
        if (pc->script)
            pc->kind = BB_POLICY_SCRIPT;
    }
    opt_u32(l, d, v, kp, "timeout_ms", 1, POLICY_TIMEOUT_MAX_MS, &pc->timeout_ms);
    int oe = opt_enum(l, d, v, kp, "on_error", "on_error", on_error, 3);
    if (oe >= 0)
        pc->on_error = (enum bb_policy_on_error)oe;
    if ((n = map_get(d, v, "include_messages", NULL)))
        get_bool(l, d, n, pj(p, sizeof p, kp, "include_messages"), &pc->include_messages);
}

static void parse_pool(struct ld *l, size_t pi, yaml_node_t *key, yaml_node_t *v)
{
    static const char *const on_cut[] = {"error", "continue"};
    struct bb_cdoc *d = &l->cfg;
    struct bb_conf *c = l->c;
    struct bb_pool *pl = &c->pools[pi];
    char path[512], kp[512];
    pj(path, sizeof path, "pools", pl->name);
    if (!name_ok(pl->name))
        err_at(l, d, key, "%s: invalid pool name (1 to %u printable characters, no spaces)", path,
               NAME_MAX_LEN);
    int same = find_lane(c, pl->name);
    if (same >= 0)
        err_at(l, d, key, "%s: a pool may not have the name of a model (models.%s at %d:%d)", path,
               pl->name, c->lanes[same].pos.line, c->lanes[same].pos.col);
    if (!check_map(l, d, v, path, KEYSET(pool_keys)) && v && !bb_cdoc_is_null(v))
        return; /* not a mapping: reported */

    yaml_node_t *route = map_get(d, v, "route", NULL), *n;
    if (route) {
        int r = get_enum(l, d, route, pj(kp, sizeof kp, path, "route"), "route", route_names,
                         sizeof route_names / sizeof route_names[0]);
        if (r >= 0)
            pl->route = (enum bb_route)r;
    }

    n = map_get(d, v, "members", NULL);
    pj(kp, sizeof kp, path, "members");
    if (!n || bb_cdoc_is_null(n)) {
        err_at(l, d, n ? n : key, "%s: pool has no members", n ? kp : path);
    } else if (n->type != YAML_SEQUENCE_NODE) {
        err_at(l, d, n, "%s: expected a list of members", kp);
    } else {
        size_t cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
        if (cnt == 0)
            err_at(l, d, n, "%s: pool has no members", kp);
        pl->members = bb_xcalloc(cnt, sizeof *pl->members);
        for (size_t i = 0; i < cnt; i++) {
            char ip[560];
            snprintf(ip, sizeof ip, "%s[%zu]", kp, i);
            parse_member(l, pl, bb_cdoc_node(d, n->data.sequence.items.start[i]), ip);
        }
        if (pl->route == BB_ROUTE_CHEAPEST) {
            for (size_t i = 0; i < cnt; i++) {
                yaml_node_t *item = bb_cdoc_node(d, n->data.sequence.items.start[i]);
                const char *t = scalar(map_get(d, item, "target", NULL));
                if (!t)
                    t = scalar(map_get(d, item, "model", NULL));
                int ln = t ? find_lane(c, t) : -1;
                if (ln >= 0 && !c->lanes[ln].price.set)
                    err_at(l, d, item,
                           "%s[%zu]: model '%s' has no price, and route: cheapest needs one on "
                           "every member",
                           kp, i, t);
            }
        }
    }

    parse_policy(l, pl, route, map_get(d, v, "policy", NULL), path);
    if ((n = map_get(d, v, "breaker", NULL)))
        parse_breaker(l, pl, n, pj(kp, sizeof kp, path, "breaker"));
    if ((n = map_get(d, v, "failover", NULL)) &&
        check_map(l, d, n, pj(kp, sizeof kp, path, "failover"), KEYSET(failover_keys))) {
        opt_u32(l, d, n, kp, "timeout_secs", 1, 86400, &pl->failover_timeout_secs);
        opt_u32(l, d, n, kp, "max_hops", 1, MAX_HOPS, &pl->max_hops);
        char ep[560];
        snprintf(ep, sizeof ep, "%s.exclusions", kp);
        yaml_node_t *ex = map_get(d, n, "exclusions", NULL);
        check_str_list(l, d, ex, ep, true);
        if (ex && ex->type == YAML_SEQUENCE_NODE)
            for (yaml_node_item_t *it = ex->data.sequence.items.start;
                 it < ex->data.sequence.items.top; it++) {
                yaml_node_t *e = bb_cdoc_node(d, *it);
                const char *name = scalar(e);
                bool found = false;
                for (size_t m = 0; name && m < pl->n_members; m++)
                    if (pl->members[m].lane >= 0 &&
                        !strcmp(c->lanes[pl->members[m].lane].name, name)) {
                        pl->members[m].no_failover = true;
                        found = true;
                    }
                if (name && !found)
                    err_at(l, d, e, "%s: '%s' is not a member of this pool", ep, name);
            }
    }
    if ((n = map_get(d, v, "stream", NULL)) &&
        check_map(l, d, n, pj(kp, sizeof kp, path, "stream"), KEYSET(stream_keys))) {
        opt_bool(l, d, n, kp, "hold_first_event", &pl->hold_first_event);
        opt_u32(l, d, n, kp, "prerelease_ms", 0, 600000, &pl->prerelease_ms);
        pl->on_cut_continue = opt_enum(l, d, n, kp, "on_cut", "on_cut", on_cut, 2) == 1;
    }
    if ((n = map_get(d, v, "on_exhausted", NULL)))
        parse_on_exhausted(l, pi, n, pj(kp, sizeof kp, path, "on_exhausted"));
    if ((n = map_get(d, v, "affinity", NULL)) &&
        check_map(l, d, n, pj(kp, sizeof kp, path, "affinity"), KEYSET(affinity_keys))) {
        static const char *const modes[] = {"session"};
        pl->affinity = opt_enum(l, d, n, kp, "mode", "affinity mode", modes, 1) == 0 ||
                       !map_get(d, n, "mode", NULL);
        yaml_node_t *h = map_get(d, n, "header_name", NULL);
        const char *hn = h ? get_str(l, d, h, "affinity.header_name") : NULL;
        free(pl->affinity_header);
        pl->affinity_header = bb_xstrdup(hn && *hn ? hn : "x-session-id");
    }
}

static void check_fallback_cycles(struct ld *l)
{
    struct bb_conf *c = l->c;
    for (size_t i = 0; i < c->n_pools; i++) {
        size_t j = i, steps = 0;
        bool cycle = false, smallest = true;
        while (c->pools[j].fallback_pool >= 0 && steps++ <= c->n_pools) {
            j = (size_t)c->pools[j].fallback_pool;
            if (j < i)
                smallest = false;
            if (j == i) {
                cycle = true;
                break;
            }
        }
        if (!cycle || !smallest)
            continue; /* report each cycle once, at its first pool */
        char chain[1024];
        size_t o = (size_t)snprintf(chain, sizeof chain, "%s", c->pools[i].name);
        j = i;
        do {
            j = (size_t)c->pools[j].fallback_pool;
            if (o < sizeof chain)
                o += (size_t)snprintf(chain + o, sizeof chain - o, " -> %s", c->pools[j].name);
        } while (j != i);
        err_at(l, &l->cfg, l->pool_action[i],
               "pools.%s.on_exhausted.action: fallback_pool cycle: %s", c->pools[i].name, chain);
    }
}

static void parse_pools(struct ld *l, yaml_node_t *v)
{
    struct bb_cdoc *d = &l->cfg;
    struct bb_conf *c = l->c;
    if (!check_map(l, d, v, "pools", NO_KEYS))
        return;
    size_t n = map_len(v);
    c->pools = bb_xcalloc(n, sizeof *c->pools);
    l->pool_action = bb_xcalloc(n, sizeof *l->pool_action);
    yaml_node_t **keys = bb_xcalloc(n, sizeof *keys), **vals = bb_xcalloc(n, sizeof *vals);
    /* Names first, so fallback_pool and "is a pool" errors can see every pool. */
    for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
        yaml_node_t *k = bb_cdoc_node(d, p->key);
        const char *name = scalar(k);
        if (!name || find_pool(c, name) >= 0)
            continue;
        struct bb_pool *pl = &c->pools[c->n_pools];
        pl->name = bb_xstrdup(name);
        pl->pos = bb_cdoc_pos(d, k);
        pl->route = BB_ROUTE_WEIGHTED;
        pl->breaker = (struct bb_breaker_conf){false, 30, 0.5, 5, 3, 15, 120, 1800};
        pl->failover_timeout_secs = 120;
        pl->max_hops = 3;
        pl->hold_first_event = true;
        pl->on_exhausted = BB_EXHAUSTED_REJECT;
        pl->fallback_pool = -1;
        pl->policy.timeout_ms = 5;
        keys[c->n_pools] = k;
        vals[c->n_pools] = bb_cdoc_node(d, p->value);
        c->n_pools++;
    }
    for (size_t i = 0; i < c->n_pools; i++)
        parse_pool(l, i, keys[i], vals[i]);
    check_fallback_cycles(l);
    free(keys);
    free(vals);
}

/* ---- the load ------------------------------------------------------------------------------ */

static void set_defaults(struct bb_conf *c)
{
    c->workers = 1;
    c->auth_mode = BB_AUTH_NONE;
    c->gov_enabled = true;
    c->gov_default_estimate_output_tokens = 1024;
    c->gov_ledger_retention_days = 90;
    c->overhead_header = false;
    c->metrics = true;
    c->key_series_max = 1000;
    c->limits = (struct bb_limits){
        .request_body_max_bytes = 33554432,
        .response_body_max_bytes = 67108864,
        .header_max_bytes = 65536,
        .header_timeout_ms = 10000,
        .body_timeout_ms = 30000,
        .keepalive_timeout_ms = 75000,
        .send_timeout_ms = 60000,
        .max_inbound_concurrent = 8192,
        .upstream_connect_timeout_ms = 10000,
        .upstream_header_timeout_ms = 60000,
        .stream_idle_timeout_ms = 60000,
        .upstream_request_timeout_secs = 300,
        .drain_timeout_secs = 30,
        .pool_max_idle_per_host = 64,
        .h2_max_streams = 128,
    };
}

static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return abs_path(NULL, ".");
    if (slash == path)
        return bb_xstrdup("/");
    char *dir = bb_xstrndup(path, (size_t)(slash - path));
    char *abs = abs_path(NULL, dir);
    free(dir);
    return abs;
}

static int err_file_rank(const struct bb_conf *c, const char *f)
{
    for (int i = 0; i < 2; i++)
        if (c->files[i] && !strcmp(c->files[i], f))
            return i;
    return 2;
}

/* Stable sort of the errors this load added: by file (config first), line, column. */
static void sort_errors(const struct bb_conf *c, struct bb_conf_errors *errs, size_t from)
{
    for (size_t i = from + 1; i < errs->n; i++) {
        struct bb_conf_error e = errs->v[i];
        int re = err_file_rank(c, e.file);
        size_t j = i;
        while (j > from) {
            const struct bb_conf_error *p = &errs->v[j - 1];
            int rp = err_file_rank(c, p->file);
            if (rp < re ||
                (rp == re && (p->line < e.line || (p->line == e.line && p->col <= e.col))))
                break;
            errs->v[j] = *p;
            j--;
        }
        errs->v[j] = e;
    }
}

static void ld_free(struct ld *l)
{
    for (size_t i = 0; i < l->n_cats; i++)
        if (l->cats[i].url_ok)
            bb_url_free(&l->cats[i].url);
    for (size_t i = 0; i < l->n_ovrs; i++)
        if (l->ovrs[i].url_ok)
            bb_url_free(&l->ovrs[i].url);
    free(l->cats);
    free(l->ovrs);
    free(l->pool_action);
    bb_cdoc_free(&l->cfg);
    bb_cdoc_free(&l->cat);
}

struct bb_conf *bb_conf_load(const char *config_path, const char *providers_path,
                             struct bb_conf_errors *errs)
{
    struct ld L = {0}, *l = &L;
    size_t err0 = errs->n;
    struct bb_conf *c = bb_xcalloc(1, sizeof *c);
    l->c = c;
    l->errs = errs;
    set_defaults(c);
    c->files[0] = bb_xstrdup(config_path);
    c->config_dir = dir_of(config_path);

    if (bb_cdoc_load(&l->cfg, config_path, c->files[0], false, errs) != 0)
        goto out;
    struct bb_cdoc *d = &l->cfg;
    yaml_node_t *root = d->root;
    if (!check_map(l, d, root, "", KEYSET(top_keys))) {
        if (bb_cdoc_is_null(root))
            err_at(l, d, root, "expected a mapping at the top level");
        goto out;
    }

    parse_listen(l, map_get(d, root, "listen", NULL));
    parse_workers(l, map_get(d, root, "workers", NULL));
    parse_tls(l, map_get(d, root, "tls", NULL));
    yaml_node_t *sock = NULL, *n;
    parse_admin(l, map_get(d, root, "admin", NULL), &sock);
    const char *s;
    yaml_node_t *sd = map_get(d, root, "state_dir", NULL);
    s = sd ? get_str(l, d, sd, "state_dir") : NULL;
    c->state_dir = abs_path(NULL, s ? s : "/var/lib/busbar");
    if (!c->admin_socket)
        c->admin_socket = path_join(c->state_dir, "admin.sock");
    if (strlen(c->admin_socket) >= sizeof(((struct sockaddr_un *)0)->sun_path) && (sock || sd))
        err_at(l, d, sock ? sock : sd, "%s: admin socket path '%s' is too long for a Unix socket",
               sock ? "admin.socket" : "state_dir", c->admin_socket);
    parse_auth(l, map_get(d, root, "auth", NULL));
    if ((n = map_get(d, root, "log_file", NULL)) && (s = get_str(l, d, n, "log_file")))
        c->log_file = abs_path(NULL, s);
    int lvl = (n = map_get(d, root, "log_level", NULL))
                  ? get_enum(l, d, n, "log_level", "log level", log_levels, 5)
                  : 1;
    c->log_level = bb_xstrdup(log_levels[lvl < 0 ? 1 : lvl]);
    parse_security(l, map_get(d, root, "security", NULL)); /* before any URL is checked */
    parse_observability(l, map_get(d, root, "observability", NULL));
    parse_limits(l, map_get(d, root, "limits", NULL));
    parse_governance(l, root);
    parse_cluster(l, map_get(d, root, "cluster", NULL));
    if (c->auth_mode == BB_AUTH_KEYS && !c->gov_enabled)
        err_at(l, d, map_get(d, root, "auth", NULL),
               "auth.mode: keys needs governance (governance.enabled is false)");

    /* Providers catalogue: explicit argument, then $BUSBAR_PROVIDERS, then providers_file:,
     * then providers.yaml beside the config (the only one allowed to be absent). */
    const char *env = getenv("BUSBAR_PROVIDERS");
    const char *pf =
        (n = map_get(d, root, "providers_file", NULL)) ? get_str(l, d, n, "providers_file") : NULL;
    bool explicit_path = true;
    if (providers_path) {
        c->files[1] = bb_xstrdup(providers_path);
    } else if (env && *env) {
        c->files[1] = bb_xstrdup(env);
    } else if (pf) {
        c->files[1] = abs_path(c->config_dir, pf);
    } else {
        c->files[1] = path_join(c->config_dir, "providers.yaml");
        explicit_path = false;
    }
    load_catalogue(l, c->files[1], explicit_path);

    parse_providers(l, map_get(d, root, "providers", NULL));
    parse_models(l, map_get(d, root, "models", NULL));
    parse_pools(l, map_get(d, root, "pools", NULL));

out:
    ld_free(l);
    sort_errors(c, errs, err0);
    if (errs->n > err0) {
        bb_conf_free(c);
        return NULL;
    }
    return c;
}

/* ---- public helpers ----------------------------------------------------------------------- */

void bb_conf_free(struct bb_conf *c)
{
    if (!c)
        return;
    free(c->files[0]);
    free(c->files[1]);
    free(c->config_dir);
    for (size_t i = 0; i < c->n_listen; i++) {
        free(c->listen[i].addr);
        free(c->listen[i].host);
    }
    free(c->listen);
    free(c->tls_cert_file);
    free(c->tls_key_file);
    free(c->tls_client_ca_file);
    free(c->state_dir);
    free(c->admin_socket);
    free(c->admin_listen);
    free(c->admin_token_env);
    free(c->admin_listen_host);
    if (c->admin_token) {
        explicit_bzero(c->admin_token, strlen(c->admin_token));
        free(c->admin_token);
    }
    free(c->gov_db_path);
    free(c->cluster.redis_url);
    free(c->cluster.host);
    free(c->cluster.user);
    free(c->cluster.key_prefix);
    free(c->cluster.node_id);
    free(c->cluster.password_env);
    if (c->cluster.password) {
        explicit_bzero(c->cluster.password, strlen(c->cluster.password));
        free(c->cluster.password);
    }
    free(c->cluster.tls_ca_file);
    free(c->cluster.tls_cert_file);
    free(c->cluster.tls_key_file);
    for (size_t i = 0; i < c->n_client_tokens; i++) {
        explicit_bzero(c->client_tokens[i], strlen(c->client_tokens[i]));
        free(c->client_tokens[i]);
    }
    free(c->client_tokens);
    free(c->log_file);
    free(c->log_level);
    free(c->metrics_listen);
    free(c->metrics_listen_host);
    free(c->access_log);
    free(c->otlp_endpoint);
    bb_url_free(&c->otlp_url);
    free(c->audit_url);
    bb_url_free(&c->audit_url_parsed);
    for (size_t i = 0; i < c->n_providers; i++) {
        struct bb_provider *p = &c->providers[i];
        free(p->name);
        free(p->base_url);
        bb_url_free(&p->url);
        free(p->api_key_env);
        if (p->api_key) {
            explicit_bzero(p->api_key, strlen(p->api_key));
            free(p->api_key);
        }
        free(p->region);
        for (size_t k = 0; k < p->n_error_map; k++)
            free(p->error_map[k].match);
        free(p->error_map);
    }
    free(c->providers);
    for (size_t i = 0; i < c->n_lanes; i++) {
        free(c->lanes[i].name);
        free(c->lanes[i].upstream_model);
    }
    free(c->lanes);
    for (size_t i = 0; i < c->n_pools; i++) {
        struct bb_policy_conf *pc = &c->pools[i].policy;
        free(c->pools[i].name);
        free(c->pools[i].members);
        free(c->pools[i].affinity_header);
        free(pc->url);
        bb_url_free(&pc->url_parsed);
        free(pc->socket);
        free(pc->script_file);
        bb_sandbox_free(pc->script);
    }
    for (size_t i = 0; i < c->security.n_deny_hosts; i++)
        free(c->security.deny_hosts[i]);
    free(c->security.deny_hosts);
    free(c->security.deny_nets);
    for (size_t i = 0; i < c->security.n_allow_hosts; i++)
        free(c->security.allow_hosts[i]);
    free(c->security.allow_hosts);
    free(c->pools);
    free(c);
}

void bb_conf_errors_print(const struct bb_conf_errors *errs, void *stream)
{
    FILE *f = stream;
    for (size_t i = 0; i < errs->n; i++)
        fprintf(f, "%s:%d:%d: %s\n", errs->v[i].file, errs->v[i].line, errs->v[i].col,
                errs->v[i].msg);
}

void bb_conf_errors_free(struct bb_conf_errors *errs)
{
    for (size_t i = 0; i < errs->n; i++) {
        free(errs->v[i].file);
        free(errs->v[i].msg);
    }
    free(errs->v);
    errs->v = NULL;
    errs->n = errs->cap = 0;
}

int bb_conf_find_lane(const struct bb_conf *c, const char *name, size_t len)
{
    for (size_t i = 0; i < c->n_lanes; i++)
        if (strlen(c->lanes[i].name) == len && !memcmp(c->lanes[i].name, name, len))
            return (int)i;
    return -1;
}

int bb_conf_find_pool(const struct bb_conf *c, const char *name, size_t len)
{
    for (size_t i = 0; i < c->n_pools; i++)
        if (strlen(c->pools[i].name) == len && !memcmp(c->pools[i].name, name, len))
            return (int)i;
    return -1;
}
