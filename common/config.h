/*
 * config: the deployment configuration (SPEC §2) as plain C structs.
 * Built by the master (bb_conf_load) from config.yaml + providers.yaml with libyaml; workers
 * inherit it read-only through fork() and never parse YAML. One struct bb_conf per
 * configuration generation; it owns every string and array it points to.
 */
#ifndef BB_CONFIG_H
#define BB_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Wire protocols: ingress dialects and provider egress protocols. The registry: one row per
 * protocol (its id, its config name, its module: worker/proto_<module>.c defining
 * bb_proto_<module>, documented in docs/protocols/<module>.md). Adding a protocol adds a row
 * here; the rest is its module (docs/protocols.md "Adding a protocol"). */
#define BB_PROTO_LIST(X)                                                                           \
    X(OPENAI, "openai", openai)                                                                    \
    X(RESPONSES, "openai-responses", responses)                                                    \
    X(ANTHROPIC, "anthropic", anthropic)                                                           \
    X(GEMINI, "gemini", gemini)                                                                    \
    X(BEDROCK, "bedrock", bedrock)                                                                 \
    X(COHERE, "cohere", cohere)                                                                    \
    X(BEDROCK_INVOKE, "bedrock-invoke", bedrock_invoke)

enum bb_proto {
#define X(id, name, module) BB_PROTO_##id,
    BB_PROTO_LIST(X)
#undef X
        BB_PROTO__COUNT
};

/* The dialect of what is not any protocol's (errors before a route is known, busbar's own
 * endpoints) and of a provider without a protocol: the first row's. */
#define BB_PROTO_DEFAULT ((enum bb_proto)0)

/* Name of a protocol ("openai", ...); its module name is accepted as an alias when parsing
 * ("responses"). */
const char *bb_proto_name(enum bb_proto p);
/* -1 when unknown. */
int bb_proto_from_name(const char *name);

enum bb_route {
    BB_ROUTE_WEIGHTED,
    BB_ROUTE_CHEAPEST,
    BB_ROUTE_FASTEST,
    BB_ROUTE_LEAST_BUSY,
    BB_ROUTE_USAGE,
    BB_ROUTE_WEBHOOK,
    BB_ROUTE_SCRIPT
};
enum bb_exhausted {
    BB_EXHAUSTED_REJECT,
    BB_EXHAUSTED_LEAST_BAD,
    BB_EXHAUSTED_FALLBACK_POOL,
    BB_EXHAUSTED_QUEUE
};
enum bb_auth_mode { BB_AUTH_NONE, BB_AUTH_KEYS, BB_AUTH_TOKEN, BB_AUTH_PASSTHROUGH };

/* Where a config value came from, for file:line:col messages after loading. */
struct bb_conf_pos {
    const char *file; /* points into bb_conf.files[] */
    int line, col;    /* 1-based */
};

/* A parsed base URL. */
struct bb_url {
    bool tls;      /* https */
    char *host;    /* without brackets for IPv6 */
    uint16_t port; /* explicit or 80/443 */
    char *path;    /* base path without trailing '/', "" when none */
};

/* Fault classes of upstream failures (SPEC §5.1): id, config/metrics name. */
#define BB_FCLASS_LIST(X)                                                                          \
    X(RATE_LIMIT, "rate_limit")                                                                    \
    X(OVERLOADED, "overloaded")                                                                    \
    X(SERVER, "server_error")                                                                      \
    X(TIMEOUT, "timeout")                                                                          \
    X(NETWORK, "network")                                                                          \
    X(AUTH, "auth")                                                                                \
    X(BILLING, "billing")                                                                          \
    X(CLIENT, "client_error")                                                                      \
    X(CONTEXT, "context_length")                                                                   \
    X(FATAL, "fatal")

enum bb_fclass {
#define X(id, name) BB_FC_##id,
    BB_FCLASS_LIST(X)
#undef X
        BB_FC__COUNT
};

/* providers.*.error_map entry: a provider error code or type → a class. */
struct bb_error_map {
    char *match;
    enum bb_fclass fclass;
};

struct bb_provider {
    char *name;
    enum bb_proto protocol;
    char *base_url;
    struct bb_url url;
    char *api_key_env; /* NULL = no credential */
    char *api_key;     /* value of api_key_env at load time; NULL when unset/none. Never logged. */
    char *region;      /* bedrock only, may be NULL */
    struct bb_error_map *error_map; /* config override wins over the catalogue's */
    size_t n_error_map;
    uint32_t health_interval_secs; /* health: { mode: active }: probe period; 0 = passive */
    struct bb_conf_pos pos;
};

struct bb_price {
    bool set;
    double input, output, cache_read, cache_write; /* USD per 1M tokens */
};

/* A model entry is a lane: one provider + one upstream model. */
struct bb_lane {
    char *name;
    int provider;                /* index into bb_conf.providers */
    char *upstream_model;        /* defaults to name */
    uint32_t max_concurrent;     /* 0 = unbounded */
    uint64_t context_max;        /* 0 = unknown */
    uint32_t attempt_timeout_ms; /* connect + response headers; 0 = limits defaults */
    uint32_t default_max_tokens; /* 0 = unset: the catalogue's max_output (reload.c), else 4096 */
    bool reasoning;
    struct bb_price price;
    struct bb_conf_pos pos;
};

struct bb_member {
    int lane;         /* index into bb_conf.lanes */
    uint32_t weight;  /* >= 1, default 1 */
    bool no_failover; /* named in failover.exclusions: a first choice only, never a failover */
};

struct bb_breaker_conf {
    bool consecutive_mode;            /* trip.mode: consecutive (else error_rate) */
    uint32_t window_secs;             /* 30 */
    double threshold;                 /* 0.5 */
    uint32_t min_requests;            /* 5 */
    uint32_t consecutive_n;           /* 3 */
    uint32_t base_cooldown_secs;      /* 15 */
    uint32_t max_cooldown_secs;       /* 120 */
    uint32_t hard_down_cooldown_secs; /* 1800: auth and billing failures */
};

/* pools.*.policy (SPEC §5.5, docs/routing.md): a programmable route. */
enum bb_policy_kind { BB_POLICY_NONE, BB_POLICY_WEBHOOK, BB_POLICY_SOCKET, BB_POLICY_SCRIPT };
enum bb_policy_on_error {
    BB_POLICY_ON_ERROR_WEIGHTED,
    BB_POLICY_ON_ERROR_FIRST,
    BB_POLICY_ON_ERROR_REJECT
};

struct bb_sandbox;

struct bb_policy_conf {
    enum bb_policy_kind kind; /* from route: webhook (url or socket) / script */
    char *url;                /* policy.url (webhook over HTTP) */
    struct bb_url url_parsed;
    char *socket;              /* policy.socket: absolute path (webhook over a Unix socket) */
    char *script_file;         /* policy.script_file: absolute path */
    struct bb_sandbox *script; /* compiled and run once at load (common/sandbox.h) */
    uint32_t timeout_ms;       /* [5] per policy call */
    enum bb_policy_on_error on_error; /* [weighted] */
    bool include_messages;            /* [false] the request's messages go to the policy */
};

struct bb_pool {
    char *name;
    struct bb_member *members;
    size_t n_members;
    enum bb_route route;
    struct bb_breaker_conf breaker;
    uint32_t failover_timeout_secs; /* 120 */
    uint32_t max_hops;              /* 3 */
    bool hold_first_event;          /* true */
    uint32_t prerelease_ms;         /* 0 */
    bool on_cut_continue;           /* stream.on_cut: continue (default error) */
    enum bb_exhausted on_exhausted; /* reject */
    int fallback_pool;              /* index, -1 = none */
    uint32_t queue_max_ms;
    bool affinity;                /* affinity.mode: session */
    char *affinity_header;        /* affinity.header_name, default x-session-id */
    struct bb_policy_conf policy; /* route: webhook | script */
    struct bb_conf_pos pos;
};

/* security: (SPEC §9). An address range: IPv4 is kept IPv4-mapped (::ffff:a.b.c.d, bits + 96). */
struct bb_net {
    uint8_t addr[16];
    uint8_t bits;
};
struct bb_security_conf {
    char **deny_hosts; /* blocked_metadata_hosts names (lowercase, no trailing dot) */
    size_t n_deny_hosts;
    struct bb_net *deny_nets; /* blocked_metadata_hosts addresses and CIDR ranges */
    size_t n_deny_nets;
    char **allow_hosts; /* allow_metadata_hosts: names exempt from the deny rules */
    size_t n_allow_hosts;
};

struct bb_limits {
    uint64_t request_body_max_bytes;        /* 33554432 */
    uint64_t response_body_max_bytes;       /* 67108864: a non-stream answer held for checking */
    uint32_t header_max_bytes;              /* 65536 */
    uint32_t header_timeout_ms;             /* 10000: whole request head must arrive in this */
    uint32_t body_timeout_ms;               /* 30000: the whole body must arrive in this */
    uint32_t keepalive_timeout_ms;          /* 75000: idle keep-alive connection */
    uint32_t send_timeout_ms;               /* 60000: client reads none of its pending output */
    uint32_t max_inbound_concurrent;        /* 8192 */
    uint32_t upstream_connect_timeout_ms;   /* 10000 */
    uint32_t upstream_header_timeout_ms;    /* 60000: response headers after request sent */
    uint32_t stream_idle_timeout_ms;        /* 60000 */
    uint32_t upstream_request_timeout_secs; /* 300 */
    uint32_t drain_timeout_secs;            /* 30 */
    uint32_t pool_max_idle_per_host;        /* 64 */
    uint32_t h2_max_streams;                /* 128: concurrent streams per HTTP/2 connection */
};

struct bb_listen {
    char *addr; /* as written, e.g. "0.0.0.0:8080", "[::1]:8080" */
    char *host;
    uint16_t port;
};

/* cluster: (SPEC §7; docs/cluster.md). Present = enabled; absent = nothing connects. */
struct bb_cluster_conf {
    bool enabled;
    char *redis_url;     /* as written */
    char *host;          /* from the URL */
    uint16_t port;       /* [6379] */
    unsigned db;         /* [0] */
    bool tls;            /* rediss:// */
    char *user;          /* redis://user@host: AUTH user password; NULL = AUTH password */
    char *key_prefix;    /* ["busbar:"] */
    bool deny_on_error;  /* on_redis_error: deny [local] */
    char *node_id;       /* [hostname] */
    uint32_t timeout_ms; /* [50] longest a request waits on Redis */
    uint32_t lease_secs; /* [10] a dead node's reservations are released after this */
    char *password_env;  /* AUTH password: read from this variable at load */
    char *password;      /* (never logged) */
    char *tls_ca_file;   /* cluster.tls.ca_file: verify the server (else system store) */
    char *tls_cert_file, *tls_key_file; /* cluster.tls: client certificate */
};

struct bb_conf {
    /* Files read, for positions; [0] = config, [1] = providers. */
    char *files[2];
    char *config_dir;

    struct bb_listen *listen;
    size_t n_listen;
    uint32_t workers; /* resolved: auto = number of online CPUs */

    char *tls_cert_file, *tls_key_file, *tls_client_ca_file; /* NULL when no TLS */

    char *state_dir;    /* default /var/lib/busbar */
    char *admin_socket; /* default <state_dir>/admin.sock */
    char *admin_listen; /* NULL = no HTTP admin API */
    char *admin_token_env;

    enum bb_auth_mode auth_mode;
    char **client_tokens;
    size_t n_client_tokens;

    char *log_file;  /* top-level `log_file:` (busbar extension), NULL = stderr */
    char *log_level; /* debug|info|notice|warn|error, default info */

    /* observability (SPEC §8; docs/observability.md) */
    bool overhead_header; /* observability.overhead_header [false] */
    bool metrics;         /* observability.metrics [true]: GET /metrics */
    char *metrics_listen; /* observability.metrics_listen: NULL = on the data-plane listener */
    char *metrics_listen_host;
    uint16_t metrics_listen_port;
    uint32_t key_series_max; /* observability.key_series_max [1000]: per-key series, then _other */
    char *access_log;        /* observability.access_log: absolute path; NULL = off */
    char *otlp_endpoint;     /* observability.otlp_endpoint (OTLP/HTTP traces); NULL = off */
    struct bb_url otlp_url;
    bool otlp_json;  /* observability.otlp_protocol: http/json; default http/protobuf */
    char *audit_url; /* observability.request_log_webhook_url; NULL = off */
    struct bb_url audit_url_parsed;

    struct bb_provider *providers;
    size_t n_providers;
    struct bb_lane *lanes;
    size_t n_lanes;
    struct bb_pool *pools;
    size_t n_pools;

    struct bb_limits limits;

    /* HTTP admin API (admin.listen, admin.token_env): the address split, and the bearer token
     * read from the token_env variable at load time (master only; never logged). */
    char *admin_listen_host;
    uint16_t admin_listen_port;
    char *admin_token;

    /* governance: (SPEC §6). Master only. */
    bool gov_enabled;             /* [true] */
    char *gov_db_path;            /* [<state_dir>/busbar.db]; relative → state_dir */
    bool gov_deny_on_store_error; /* on_store_error: deny [allow] */
    uint32_t gov_default_estimate_output_tokens; /* [1024] */
    uint32_t gov_ledger_retention_days;          /* [90]; 0 = keep every ledger row */

    struct bb_cluster_conf cluster;

    struct bb_security_conf security;
};

/* One located error. */
struct bb_conf_error {
    char *file;
    int line, col;
    char *msg;
};

struct bb_conf_errors {
    struct bb_conf_error *v;
    size_t n, cap;
};

/* Load and validate. config_path is required; providers_path may be NULL (then
 * $BUSBAR_PROVIDERS, then top-level providers_file:, then providers.yaml beside the config).
 * Returns a new conf, or NULL with every error appended to errs (never stops at the first). */
struct bb_conf *bb_conf_load(const char *config_path, const char *providers_path,
                             struct bb_conf_errors *errs);
void bb_conf_free(struct bb_conf *c);

/* Print each error as "file:line:col: message\n" to the stream (FILE *). */
void bb_conf_errors_print(const struct bb_conf_errors *errs, void *stream);
void bb_conf_errors_free(struct bb_conf_errors *errs);

/* Lookups by name; -1 when absent. */
int bb_conf_find_lane(const struct bb_conf *c, const char *name, size_t len);
int bb_conf_find_pool(const struct bb_conf *c, const char *name, size_t len);

#endif
