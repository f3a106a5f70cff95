/*
 * test_config: the configuration loader (common/config.c, common/config_doc.c).
 * Runs from tests/unit (meson workdir), so fixtures are ../fixtures/config/ and the shipped
 * files ../../etc/. Inline configs are written to a private temp directory with a temp
 * catalogue; every error assertion checks the exact "file:line:col: " prefix.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/config.h"

#define FIX "../fixtures/config/"

static char tmpdir[256];
static char catalogue[PATH_MAX]; /* tmpdir/cat.yaml */
static char cfgpath[PATH_MAX];   /* tmpdir/config.yaml */

static const char cat_text[] = "anthropic:\n"
                               "  protocol: anthropic\n"
                               "  base_url: https://api.anthropic.com\n"
                               "  api_key_env: ANTHROPIC_KEY\n"
                               "openai:\n"
                               "  protocol: openai\n"
                               "  base_url: https://api.openai.com\n"
                               "  api_key_env: OPENAI_API_KEY\n";

static void write_at(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static const char *tmp_file(const char *name, const char *text)
{
    static char bufs[4][PATH_MAX];
    static int next;
    char *p = bufs[next++ % 4];
    snprintf(p, PATH_MAX, "%s/%s", tmpdir, name);
    write_at(p, text);
    return p;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/bb-test-config-XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(catalogue, sizeof catalogue, "%s/cat.yaml", tmpdir);
    snprintf(cfgpath, sizeof cfgpath, "%s/config.yaml", tmpdir);
    write_at(catalogue, cat_text);
    unsetenv("BUSBAR_PROVIDERS");
    unsetenv("ANTHROPIC_KEY");
    unsetenv("ANTHROPIC_API_KEY");
    unsetenv("OPENAI_API_KEY");
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    return nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static struct bb_conf *load_text(const char *text, struct bb_conf_errors *errs)
{
    write_at(cfgpath, text);
    return bb_conf_load(cfgpath, catalogue, errs);
}

static struct bb_conf *must_load(const char *path, const char *providers)
{
    struct bb_conf_errors errs = {0};
    struct bb_conf *c = bb_conf_load(path, providers, &errs);
    if (!c || errs.n) {
        bb_conf_errors_print(&errs, stderr);
        fail_msg("%s: expected to load cleanly, got %zu error(s)", path, errs.n);
    }
    bb_conf_errors_free(&errs);
    return c;
}

/* Does errs hold "file:line:col: ...frag..."? */
static bool has_error(const struct bb_conf_errors *errs, const char *file, int line, int col,
                      const char *frag)
{
    for (size_t i = 0; i < errs->n; i++) {
        const struct bb_conf_error *e = &errs->v[i];
        if (!strcmp(e->file, file) && e->line == line && e->col == col && strstr(e->msg, frag))
            return true;
    }
    return false;
}

static void expect_error_in(const struct bb_conf_errors *errs, const char *file, int line, int col,
                            const char *frag)
{
    if (!has_error(errs, file, line, col, frag)) {
        fprintf(stderr, "# errors were:\n");
        bb_conf_errors_print(errs, stderr);
        fail_msg("missing error %s:%d:%d: ...%s...", file, line, col, frag);
    }
}

/* Load text as tmpdir/config.yaml; it must fail with the given located error. */
static void expect_error(const char *text, int line, int col, const char *frag)
{
    struct bb_conf_errors errs = {0};
    struct bb_conf *c = load_text(text, &errs);
    assert_null(c);
    expect_error_in(&errs, cfgpath, line, col, frag);
    bb_conf_errors_free(&errs);
}

static void expect_file_error(const char *path, const char *providers, int line, int col,
                              const char *frag)
{
    struct bb_conf_errors errs = {0};
    struct bb_conf *c = bb_conf_load(path, providers, &errs);
    assert_null(c);
    expect_error_in(&errs, path, line, col, frag);
    bb_conf_errors_free(&errs);
}

static const char minimal[] =
    "providers: { anthropic: { api_key_env: ANTHROPIC_KEY } }\n"
    "models:    { claude: { provider: anthropic, max_concurrent: 10 } }\n"
    "pools:     { fast: { members: [ { target: claude, weight: 1 } ] } }\n";

/* ---- valid configs ------------------------------------------------------------------------- */

static void test_minimal(void **state)
{
    (void)state;
    setenv("ANTHROPIC_KEY", "sk-ant-test", 1);
    struct bb_conf_errors errs = {0};
    struct bb_conf *c = load_text(minimal, &errs);
    assert_non_null(c);
    assert_int_equal(errs.n, 0);
    assert_string_equal(c->files[0], cfgpath);
    assert_string_equal(c->files[1], catalogue);
    assert_string_equal(c->config_dir, tmpdir);

    assert_int_equal(c->n_providers, 1);
    struct bb_provider *p = &c->providers[0];
    assert_string_equal(p->name, "anthropic");
    assert_int_equal(p->protocol, BB_PROTO_ANTHROPIC);
    assert_string_equal(p->base_url, "https://api.anthropic.com");
    assert_true(p->url.tls);
    assert_string_equal(p->url.host, "api.anthropic.com");
    assert_int_equal(p->url.port, 443);
    assert_string_equal(p->url.path, "");
    assert_string_equal(p->api_key_env, "ANTHROPIC_KEY");
    assert_string_equal(p->api_key, "sk-ant-test");
    assert_ptr_equal(p->pos.file, c->files[0]);
    assert_int_equal(p->pos.line, 1);
    assert_int_equal(p->pos.col, 14);

    assert_int_equal(c->n_lanes, 1);
    assert_string_equal(c->lanes[0].name, "claude");
    assert_int_equal(c->lanes[0].provider, 0);
    assert_string_equal(c->lanes[0].upstream_model, "claude");
    assert_int_equal(c->lanes[0].max_concurrent, 10);
    assert_int_equal(c->lanes[0].pos.line, 2);
    assert_int_equal(c->lanes[0].pos.col, 14);

    assert_int_equal(c->n_pools, 1);
    assert_string_equal(c->pools[0].name, "fast");
    assert_int_equal(c->pools[0].n_members, 1);
    assert_int_equal(c->pools[0].members[0].lane, 0);
    assert_int_equal(c->pools[0].members[0].weight, 1);

    assert_int_equal(bb_conf_find_lane(c, "claude", 6), 0);
    assert_int_equal(bb_conf_find_lane(c, "claude-x", 6), 0); /* length-delimited */
    assert_int_equal(bb_conf_find_lane(c, "claud", 5), -1);
    assert_int_equal(bb_conf_find_lane(c, "fast", 4), -1);
    assert_int_equal(bb_conf_find_pool(c, "fast", 4), 0);
    assert_int_equal(bb_conf_find_pool(c, "claude", 6), -1);
    bb_conf_free(c);
    unsetenv("ANTHROPIC_KEY");

    /* Unset key variable: loads, the provider simply has no credential. */
    c = must_load(FIX "minimal.yaml", FIX "providers.yaml");
    assert_string_equal(c->providers[0].api_key_env, "ANTHROPIC_KEY");
    assert_null(c->providers[0].api_key);
    assert_string_equal(c->files[1], FIX "providers.yaml");
    bb_conf_free(c);
}

/* A provider key with a control character is refused at load, located at its api_key_env. */
static void test_key_hygiene(void **state)
{
    (void)state;
    static const char *const bad[] = {"sk-ant-test\n", "sk-\rant", "sk\tant", "sk\x7f"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        setenv("ANTHROPIC_KEY", bad[i], 1);
        expect_error(minimal, 1, 40, "the value of $ANTHROPIC_KEY contains a control character");
    }
    setenv("ANTHROPIC_KEY", "sk-ant-test with spaces", 1);
    struct bb_conf_errors errs = {0};
    struct bb_conf *c = load_text(minimal, &errs);
    assert_non_null(c);
    bb_conf_free(c);
    unsetenv("ANTHROPIC_KEY");
}

static void test_defaults(void **state)
{
    (void)state;
    struct bb_conf *c = must_load(FIX "minimal.yaml", FIX "providers.yaml");
    assert_int_equal(c->n_listen, 1);
    assert_string_equal(c->listen[0].addr, "0.0.0.0:8080");
    assert_string_equal(c->listen[0].host, "0.0.0.0");
    assert_int_equal(c->listen[0].port, 8080);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    assert_int_equal(c->workers, cpus < 1 ? 1 : cpus > 256 ? 256 : cpus);
    assert_null(c->tls_cert_file);
    assert_null(c->tls_key_file);
    assert_null(c->tls_client_ca_file);
    assert_string_equal(c->state_dir, "/var/lib/busbar");
    assert_string_equal(c->admin_socket, "/var/lib/busbar/admin.sock");
    assert_null(c->admin_listen);
    assert_null(c->admin_token_env);
    assert_null(c->admin_token);
    assert_true(c->gov_enabled);
    assert_string_equal(c->gov_db_path, "/var/lib/busbar/busbar.db");
    assert_false(c->gov_deny_on_store_error);
    assert_int_equal(c->gov_default_estimate_output_tokens, 1024);
    assert_int_equal(c->auth_mode, BB_AUTH_NONE);
    assert_int_equal(c->n_client_tokens, 0);
    assert_null(c->log_file);
    assert_string_equal(c->log_level, "info");
    assert_false(c->overhead_header);
    assert_false(c->otlp_json); /* OTLP/HTTP protobuf, as the OpenTelemetry SDKs default to */

    const struct bb_limits *l = &c->limits;
    assert_int_equal(l->request_body_max_bytes, 33554432);
    assert_int_equal(l->header_max_bytes, 65536);
    assert_int_equal(l->header_timeout_ms, 10000);
    assert_int_equal(l->body_timeout_ms, 30000);
    assert_int_equal(l->keepalive_timeout_ms, 75000);
    assert_int_equal(l->max_inbound_concurrent, 8192);
    assert_int_equal(l->upstream_connect_timeout_ms, 10000);
    assert_int_equal(l->upstream_header_timeout_ms, 60000);
    assert_int_equal(l->stream_idle_timeout_ms, 60000);
    assert_int_equal(l->upstream_request_timeout_secs, 300);
    assert_int_equal(l->drain_timeout_secs, 30);
    assert_int_equal(l->pool_max_idle_per_host, 64);

    const struct bb_lane *ln = &c->lanes[0];
    assert_int_equal(ln->context_max, 0);
    assert_int_equal(ln->attempt_timeout_ms, 0);
    assert_int_equal(ln->default_max_tokens, 0); /* unset: the catalogue's max_output */
    assert_false(ln->reasoning);
    assert_false(ln->price.set);

    const struct bb_pool *p = &c->pools[0];
    assert_int_equal(p->route, BB_ROUTE_WEIGHTED);
    assert_false(p->breaker.consecutive_mode);
    assert_int_equal(p->breaker.window_secs, 30);
    assert_true(p->breaker.threshold > 0.499 && p->breaker.threshold < 0.501);
    assert_int_equal(p->breaker.min_requests, 5);
    assert_int_equal(p->breaker.consecutive_n, 3);
    assert_int_equal(p->breaker.base_cooldown_secs, 15);
    assert_int_equal(p->breaker.max_cooldown_secs, 120);
    assert_int_equal(p->failover_timeout_secs, 120);
    assert_int_equal(p->max_hops, 3);
    assert_true(p->hold_first_event);
    assert_int_equal(p->prerelease_ms, 0);
    assert_int_equal(p->on_exhausted, BB_EXHAUSTED_REJECT);
    assert_int_equal(p->fallback_pool, -1);
    bb_conf_free(c);
}

static void test_full(void **state)
{
    (void)state;
    char cwd[PATH_MAX];
    assert_non_null(getcwd(cwd, sizeof cwd));
    setenv("LOCAL_KEY", "local-secret", 1);
    setenv("OPENAI_API_KEY", "sk-openai", 1);
    struct bb_conf *c = must_load(FIX "full.yaml", FIX "providers.yaml");
    unsetenv("LOCAL_KEY");
    unsetenv("OPENAI_API_KEY");
    assert_int_equal(c->n_listen, 2);
    assert_string_equal(c->listen[0].host, "127.0.0.1");
    assert_int_equal(c->listen[0].port, 18080);
    assert_string_equal(c->listen[1].addr, "[::1]:18081");
    assert_string_equal(c->listen[1].host, "::1");
    assert_int_equal(c->listen[1].port, 18081);
    assert_int_equal(c->workers, 3);
    assert_string_equal(c->state_dir, "/tmp/busbar-test-state");
    char want[PATH_MAX + 32];
    snprintf(want, sizeof want, "%s/admin-test.sock", cwd);
    assert_string_equal(c->admin_socket, want); /* relative: against the working directory */
    snprintf(want, sizeof want, "%s/logs/busbar.log", cwd);
    assert_string_equal(c->log_file, want);
    assert_string_equal(c->log_level, "debug");
    assert_true(c->overhead_header);
    assert_true(c->otlp_json);

    assert_int_equal(c->n_providers, 3); /* listed in config: openai, local, bedrock */
    assert_string_equal(c->providers[0].name, "openai");
    assert_null(c->providers[0].api_key_env); /* api_key_env: null overrides the catalogue */
    assert_null(c->providers[0].api_key);
    assert_string_equal(c->providers[0].url.host, "api.openai.com");
    assert_string_equal(c->providers[0].url.path, "");
    assert_string_equal(c->providers[1].name, "local");
    assert_int_equal(c->providers[1].protocol, BB_PROTO_RESPONSES); /* alias */
    assert_false(c->providers[1].url.tls);
    assert_string_equal(c->providers[1].url.host, "10.1.2.3");
    assert_int_equal(c->providers[1].url.port, 8000);
    assert_string_equal(c->providers[1].url.path, "/prefix");
    assert_string_equal(c->providers[1].api_key, "local-secret");
    assert_string_equal(c->providers[2].name, "bedrock");
    assert_int_equal(c->providers[2].protocol, BB_PROTO_BEDROCK);
    assert_string_equal(c->providers[2].region, "us-west-2"); /* override wins */
    assert_string_equal(c->providers[2].base_url,
                        "https://bedrock-runtime.eu-west-1.amazonaws.com");
    assert_ptr_equal(c->providers[2].pos.file, c->files[0]);

    assert_int_equal(c->n_lanes, 3);
    const struct bb_lane *g = &c->lanes[0];
    assert_string_equal(g->upstream_model, "gpt-4o");
    assert_int_equal(g->max_concurrent, 7);
    assert_int_equal(g->context_max, 128000);
    assert_int_equal(g->attempt_timeout_ms, 1500);
    assert_int_equal(g->default_max_tokens, 1024);
    assert_true(g->reasoning);
    assert_true(g->price.set);
    assert_true(g->price.input == 2.5 && g->price.output == 10.0);
    assert_true(g->price.cache_read == 1.25 && g->price.cache_write == 3.0);
    const struct bb_lane *nova = &c->lanes[1];
    assert_string_equal(nova->upstream_model, "amazon.nova-pro-v1:0");
    assert_true(nova->price.cache_read == 1.0 && nova->price.cache_write == 1.0);
    assert_int_equal(c->lanes[2].provider, 1);

    const struct bb_pool *p = &c->pools[0];
    assert_int_equal(p->n_members, 3);
    assert_int_equal(p->members[0].weight, 5);
    assert_int_equal(p->members[1].lane, 1);
    assert_int_equal(p->members[1].weight, 1);
    assert_int_equal(p->members[2].weight, 2);
    assert_int_equal(p->failover_timeout_secs, 60);
    assert_int_equal(p->max_hops, 2);

    const struct bb_limits *l = &c->limits;
    assert_int_equal(l->request_body_max_bytes, 1048576);
    assert_int_equal(l->header_max_bytes, 8192);
    assert_int_equal(l->header_timeout_ms, 1000);
    assert_int_equal(l->body_timeout_ms, 2000);
    assert_int_equal(l->keepalive_timeout_ms, 3000);
    assert_int_equal(l->max_inbound_concurrent, 100);
    assert_int_equal(l->upstream_connect_timeout_ms, 400);
    assert_int_equal(l->upstream_header_timeout_ms, 500);
    assert_int_equal(l->stream_idle_timeout_ms, 600);
    assert_int_equal(l->upstream_request_timeout_secs, 70);
    assert_int_equal(l->drain_timeout_secs, 8);
    assert_int_equal(l->pool_max_idle_per_host, 0);
    bb_conf_free(c);
}

static void test_shipped_files(void **state)
{
    (void)state;
    /* etc/config.yaml passes with every key variable unset; its catalogue is found beside it. */
    struct bb_conf *c = must_load("../../etc/config.yaml", NULL);
    assert_true(strstr(c->files[1], "/etc/providers.yaml") != NULL);
    assert_int_equal(c->n_pools, 1);
    assert_int_equal(c->pools[0].n_members, 3);
    assert_null(c->providers[0].api_key);
    bb_conf_free(c);

    c = must_load("../../etc/demo.yaml", NULL);
    assert_string_equal(c->listen[0].addr, "127.0.0.1:8080");
    assert_int_equal(c->workers, 2);
    char cwd[PATH_MAX], want[PATH_MAX + 32];
    assert_non_null(getcwd(cwd, sizeof cwd));
    snprintf(want, sizeof want, "%s/run/demo", cwd);
    assert_string_equal(c->state_dir, want);
    assert_int_equal(c->n_providers, 1);
    assert_string_equal(c->providers[0].name, "mock-openai");
    assert_string_equal(c->providers[0].url.host, "127.0.0.1");
    assert_int_equal(c->providers[0].url.port, 9901);
    assert_string_equal(c->providers[0].api_key_env, "MOCK_API_KEY");
    int pool = bb_conf_find_pool(c, "demo", 4);
    assert_int_equal(pool, 0);
    assert_int_equal(c->pools[0].n_members, 2);
    assert_string_equal(c->lanes[c->pools[0].members[0].lane].name, "gpt-4o-mini");
    assert_int_equal(c->pools[0].members[0].weight, 3);
    assert_string_equal(c->lanes[c->pools[0].members[1].lane].name, "backup");
    assert_int_equal(c->pools[0].members[1].weight, 1);
    assert_string_not_equal(c->lanes[0].upstream_model, c->lanes[1].upstream_model);
    bb_conf_free(c);

    /* Every entry of the shipped catalogue loads and has the documented shape. */
    static const struct {
        const char *name;
        enum bb_proto proto;
        const char *host, *path;
    } want_p[] = {
        {"openai", BB_PROTO_OPENAI, "api.openai.com", ""},
        {"openai-responses", BB_PROTO_RESPONSES, "api.openai.com", ""},
        {"anthropic", BB_PROTO_ANTHROPIC, "api.anthropic.com", ""},
        {"gemini", BB_PROTO_GEMINI, "generativelanguage.googleapis.com", ""},
        {"bedrock", BB_PROTO_BEDROCK, "bedrock-runtime.us-east-1.amazonaws.com", ""},
        {"cohere", BB_PROTO_COHERE, "api.cohere.com", ""},
        {"groq", BB_PROTO_OPENAI, "api.groq.com", "/openai"},
        {"mistral", BB_PROTO_OPENAI, "api.mistral.ai", ""},
        {"deepseek", BB_PROTO_OPENAI, "api.deepseek.com", ""},
        {"together", BB_PROTO_OPENAI, "api.together.xyz", ""},
        {"fireworks", BB_PROTO_OPENAI, "api.fireworks.ai", "/inference"},
        {"openrouter", BB_PROTO_OPENAI, "openrouter.ai", "/api"},
        {"xai", BB_PROTO_OPENAI, "api.x.ai", ""},
        {"cerebras", BB_PROTO_OPENAI, "api.cerebras.ai", ""},
    };
    char text[2048] = "providers:\n";
    for (size_t i = 0; i < sizeof want_p / sizeof want_p[0]; i++)
        snprintf(text + strlen(text), sizeof text - strlen(text), "  %s: {}\n", want_p[i].name);
    const char *path = tmp_file("all.yaml", text);
    c = must_load(path, "../../etc/providers.yaml");
    assert_int_equal(c->n_providers, sizeof want_p / sizeof want_p[0]);
    for (size_t i = 0; i < c->n_providers; i++) {
        const struct bb_provider *p = &c->providers[i];
        assert_string_equal(p->name, want_p[i].name);
        assert_int_equal(p->protocol, want_p[i].proto);
        assert_true(p->url.tls);
        assert_string_equal(p->url.host, want_p[i].host);
        assert_string_equal(p->url.path, want_p[i].path);
        assert_non_null(p->api_key_env);
        assert_ptr_equal(p->pos.file, c->files[0]);
    }
    assert_string_equal(c->providers[4].region, "us-east-1");
    bb_conf_free(c);
}

/* ---- ${VAR} interpolation ------------------------------------------------------------------ */

static void test_env_interpolation(void **state)
{
    (void)state;
    setenv("BB_T_MODEL", "claude-sonnet-4-5", 1);
    setenv("BB_T_PORT", "18123", 1);
    struct bb_conf_errors errs = {0};
    struct bb_conf *c =
        load_text("listen: \"127.0.0.1:${BB_T_PORT}\"\n"
                  "# a commented ${BB_T_UNSET} is left alone\n"
                  "models:\n"
                  "  claude: { provider: anthropic, upstream_model: ${BB_T_MODEL} }\n"
                  "  other: { provider: anthropic, upstream_model: a$$b$c$ }\n",
                  &errs);
    assert_non_null(c);
    assert_int_equal(c->listen[0].port, 18123);
    assert_string_equal(c->lanes[0].upstream_model, "claude-sonnet-4-5");
    assert_string_equal(c->lanes[1].upstream_model, "a$$b$c$");
    bb_conf_free(c);
    bb_conf_errors_free(&errs);

    /* Columns after a substitution refer to the file as written, not the expanded text. */
    expect_error(
        "models:\n"
        "  claude: { provider: anthropic, upstream_model: ${BB_T_MODEL}, max_concurrent: 0 }\n",
        2, 81, "max_concurrent: must be at least 1");
    /* An error inside a substituted value points at its ${. */
    setenv("BB_T_BADPORT", "127.0.0.1:99999", 1);
    expect_error("listen: ${BB_T_BADPORT}\n", 1, 9, "port must be a number between 1 and 65535");

    expect_error("models:\n  claude: { provider: ${BB_T_UNSET_VAR} }\n", 2, 23,
                 "environment variable 'BB_T_UNSET_VAR' is not set");
    expect_error("listen: \"${BB_T_PORT\"\n", 1, 10, "unclosed '${'");
    expect_error("listen: ${BB-T}\n", 1, 9, "invalid environment variable name 'BB-T'");
    setenv("BB_T_CTRL", "a\nb", 1);
    expect_error("state_dir: /x/${BB_T_CTRL}\n", 1, 15,
                 "environment variable 'BB_T_CTRL' contains a control character");
    setenv("BB_T_CTRL", "tab\there", 1);
    expect_error("state_dir: /x/${BB_T_CTRL}\n", 1, 15, "contains a control character");

    /* Every interpolation error of the file is reported, not only the first. */
    c = load_text("a: ${BB_T_NOPE1}\nb: ${BB_T_NOPE2}\n", &errs);
    assert_null(c);
    assert_int_equal(errs.n, 2);
    expect_error_in(&errs, cfgpath, 1, 4, "'BB_T_NOPE1' is not set");
    expect_error_in(&errs, cfgpath, 2, 4, "'BB_T_NOPE2' is not set");
    bb_conf_errors_free(&errs);
    unsetenv("BB_T_MODEL");
    unsetenv("BB_T_PORT");
    unsetenv("BB_T_BADPORT");
    unsetenv("BB_T_CTRL");
}

/* ---- YAML-level errors -------------------------------------------------------------------- */

static void test_yaml_errors(void **state)
{
    (void)state;
    expect_file_error(FIX "empty.yaml", FIX "providers.yaml", 1, 1, "empty file");
    expect_error("", 1, 1, "empty file");
    expect_file_error(FIX "syntax.yaml", FIX "providers.yaml", 3, 6,
                      "YAML syntax error: did not find expected ',' or '}'");
    expect_error("listen: \"abc\n", 2, 1, "YAML syntax error");
    expect_error("- a\n- b\n", 1, 1, "expected a mapping at the top level");
    expect_error("workers: 2\n---\nworkers: 3\n", 3, 1, "more than one YAML document");
    expect_error("workers: 2\nworkers: 3\n", 2, 1, "workers: duplicate key (first defined at 1:1)");
    expect_error("models:\n  a: { provider: anthropic }\n  a: { provider: openai }\n", 3, 3,
                 "models.a: duplicate key (first defined at 2:3)");
    expect_error("models: { a: { provider: anthropic, provider: openai } }\n", 1, 37,
                 "models.a.provider: duplicate key");
    expect_error("? [a, b]\n: 1\n", 1, 3, "expected a scalar key");

    /* A file that cannot be read is an error at 1:1 naming the reason. */
    char missing[PATH_MAX];
    snprintf(missing, sizeof missing, "%s/nope.yaml", tmpdir);
    struct bb_conf_errors errs = {0};
    assert_null(bb_conf_load(missing, catalogue, &errs));
    expect_error_in(&errs, missing, 1, 1, "No such file or directory");
    bb_conf_errors_free(&errs);
}

static void test_types(void **state)
{
    (void)state;
    expect_error("models: [a, b]\n", 1, 9, "models: expected a mapping");
    expect_error("models: { a: 3 }\n", 1, 14, "models.a: expected a mapping");
    expect_error("limits: 5\n", 1, 9, "limits: expected a mapping");
    expect_error("workers: many\n", 1, 10, "workers: expected 'auto' or an integer");
    expect_error("workers: 0\n", 1, 10, "workers: must be at least 1 (got 0)");
    expect_error("workers: 100000\n", 1, 10, "workers: out of range (maximum 256)");
    expect_error("workers: 1.5\n", 1, 10, "workers: expected an integer");
    expect_error("limits: { drain_timeout_secs: -1 }\n", 1, 31,
                 "limits.drain_timeout_secs: must not be negative");
    expect_error("limits: { drain_timeout_secs: 4294967296 }\n", 1, 31,
                 "limits.drain_timeout_secs: out of range (maximum 4294967295)");
    expect_error("limits: { request_body_max_bytes: 99999999999999999999999 }\n", 1, 35,
                 "limits.request_body_max_bytes: out of range");
    expect_error("limits: { drain_timeout_secs: [1] }\n", 1, 31,
                 "limits.drain_timeout_secs: expected an integer");
    expect_error("limits: { drain_timeout_secs: }\n", 1, 31,
                 "limits.drain_timeout_secs: expected an integer");
    expect_error("models: { a: { provider: anthropic, reasoning: maybe } }\n", 1, 48,
                 "models.a.reasoning: expected true or false");
    expect_error("models: { a: { provider: anthropic, price: { input: x, output: 1 } } }\n", 1, 53,
                 "models.a.price.input: expected a number");
    expect_error("models: { a: { provider: anthropic, price: { input: -1, output: 1 } } }\n", 1, 53,
                 "models.a.price.input: must not be negative");
    expect_error("models: { a: { provider: anthropic, price: { input: 1 } } }\n", 1, 44,
                 "models.a.price: missing required key 'output'");
    expect_error("models: { a: { provider: [anthropic] } }\n", 1, 26,
                 "models.a.provider: expected a string");
    expect_error("models: { a: { provider: anthropic, upstream_model: \"\" } }\n", 1, 53,
                 "models.a.upstream_model: must not be empty");
    expect_error("models: { a: { max_concurrent: 3 } }\n", 1, 11,
                 "models.a: missing required key 'provider'");
    expect_error("listen: { a: 1 }\n", 1, 9, "listen: expected an address or a list");
    expect_error("listen: []\n", 1, 9, "listen: expected at least one address");
    expect_error(
        "log_level: loud\n", 1, 12,
        "log_level: unknown log level 'loud' (expected debug, info, notice, warn or error)");
    expect_error("log_level: inf\n", 1, 12, "did you mean 'info'?");
    expect_error("observability: { overhead_header: 2 }\n", 1, 35,
                 "observability.overhead_header: expected true or false");
    expect_error("observability: { otlp_protocol: grpc }\n", 1, 33,
                 "observability.otlp_protocol: unknown OTLP protocol 'grpc' (expected "
                 "http/protobuf or http/json)");
    expect_error("observability: { metrics: maybe }\n", 1, 27,
                 "observability.metrics: expected true or false");
    expect_error("observability: { key_series_max: 20000 }\n", 1, 34,
                 "observability.key_series_max: out of range (maximum 10000)");
    expect_error("observability: { metrics_listen: \"nohost\" }\n", 1, 34,
                 "observability.metrics_listen: bad address 'nohost'");
    expect_error("observability: { metrics: false, metrics_listen: \"127.0.0.1:9464\" }\n", 1, 50,
                 "observability.metrics_listen: metrics are off");
    expect_error("observability: { access_log: /nonexistent-dir/a.log }\n", 1, 30,
                 "observability.access_log: directory '/nonexistent-dir' does not exist");
    expect_error("observability: { access_log: /tmp }\n", 1, 30,
                 "observability.access_log: '/tmp' is not a regular file");
    expect_error("observability: { otlp_endpoint: \"http://169.254.169.254/v1/traces\" }\n", 1, 33,
                 "observability.otlp_endpoint: host '169.254.169.254' is a cloud metadata "
                 "endpoint and is denied");
    expect_error("observability: { request_log_webhook_url: \"http://0xa9fea9fe/x\" }\n", 1, 43,
                 "is a cloud metadata endpoint and is denied");
    expect_error("observability: { request_log_webhook_url: \"http://audit.example.com/x\" }\n", 1,
                 43,
                 "observability.request_log_webhook_url: host 'audit.example.com' is "
                 "public and needs https://");
    expect_error("observability: { otlp_endpoint: \"ftp://x/y\" }\n", 1, 33,
                 "observability.otlp_endpoint: ");
}

/* ---- validation (SPEC §2.4) ---------------------------------------------------------------- */

static void test_listen_addresses(void **state)
{
    (void)state;
    expect_error("listen: 8080\n", 1, 9, "listen: bad address '8080': expected host:port");
    expect_error("listen: \":8080\"\n", 1, 9, "missing host");
    expect_error("listen: \"127.0.0.1:0\"\n", 1, 9, "port must be a number between 1 and 65535");
    expect_error("listen: \"127.0.0.1:65536\"\n", 1, 9,
                 "port must be a number between 1 and 65535");
    expect_error("listen: \"127.0.0.1:http\"\n", 1, 9, "port must be a number");
    expect_error("listen: \"::1:8080\"\n", 1, 9, "IPv6 address must be written in brackets");
    expect_error("listen: \"[::1:8080\"\n", 1, 9, "missing ']'");
    expect_error("listen: \"[zz::1]:8080\"\n", 1, 9, "invalid IPv6 address");
    expect_error("listen: [\"127.0.0.1:80\", \"bad host:80\"]\n", 1, 26,
                 "listen[1]: bad address 'bad host:80': invalid host");
    expect_error("listen: [\"127.0.0.1:80\", \"127.0.0.1:80\"]\n", 1, 26, "listed twice");

    struct bb_conf_errors errs = {0};
    struct bb_conf *c = load_text("listen: [\"localhost:1\", \"[::]:65535\"]\n", &errs);
    assert_non_null(c);
    assert_string_equal(c->listen[0].host, "localhost");
    assert_int_equal(c->listen[0].port, 1);
    assert_string_equal(c->listen[1].host, "::");
    assert_int_equal(c->listen[1].port, 65535);
    bb_conf_free(c);
}

static void test_references(void **state)
{
    (void)state;
    struct bb_conf_errors errs = {0};
    assert_null(bb_conf_load(FIX "dangling.yaml", FIX "providers.yaml", &errs));
    const char *f = FIX "dangling.yaml";
    expect_error_in(&errs, f, 2, 23,
                    "models.claude.provider: unknown provider 'anthropik' (not in providers: nor "
                    "in the catalogue); did you mean 'anthropic'?");
    expect_error_in(&errs, f, 7, 19,
                    "pools.fast.members[0].target: unknown model 'claud'; did you mean 'claude'?");
    expect_error_in(&errs, f, 9, 19,
                    "pools.fast.members[2].target: 'slow' is a pool; members must be models");
    expect_error_in(&errs, f, 12, 29, "pools.slow.on_exhausted.action: unknown pool 'nowhere'");
    bb_conf_errors_free(&errs);

    expect_error("models: { a: { provider: anthropic } }\npools: { p: {} }\n", 2, 10,
                 "pools.p: pool has no members");
    expect_error("models: { a: { provider: anthropic } }\npools: { p: { members: [] } }\n", 2, 24,
                 "pools.p.members: pool has no members");
    expect_error("models: { a: { provider: anthropic } }\npools:\n  p:\n", 3, 3,
                 "pools.p: pool has no members");
    expect_error("models: { a: { provider: anthropic } }\npools: { p: { members: a } }\n", 2, 24,
                 "pools.p.members: expected a list of members");
    expect_error("models: { a: { provider: anthropic } }\n"
                 "pools: { p: { members: [ { weight: 2 } ] } }\n",
                 2, 26, "pools.p.members[0]: missing required key 'target'");
    expect_error("models: { a: { provider: anthropic } }\n"
                 "pools: { p: { members: [ { target: a, model: a } ] } }\n",
                 2, 39, "give either 'target' or 'model'");
    expect_error("models: { a: { provider: anthropic } }\n"
                 "pools: { p: { members: [ { target: a }, { model: a } ] } }\n",
                 2, 50, "model 'a' is already a member of this pool");
    expect_error("models: { a: { provider: anthropic } }\n"
                 "pools: { p: { members: [ a ] } }\n",
                 2, 26, "pools.p.members[0]: expected a mapping");
    expect_error("models: { a: { provider: anthropic } }\n"
                 "pools: { a: { members: [ { target: a } ] } }\n",
                 2, 10, "pools.a: a pool may not have the name of a model (models.a at 1:11)");
    expect_error("models: { \"a b\": { provider: anthropic } }\n", 1, 11,
                 "models.a b: invalid model name");

    /* fallback_pool cycles: reported once, at the first pool of the cycle. */
    errs = (struct bb_conf_errors){0};
    assert_null(load_text(
        "models: { a: { provider: anthropic } }\n"
        "pools:\n"
        "  p: { members: [ {target: a} ], on_exhausted: { action: \"fallback_pool:q\" } }\n"
        "  q: { members: [ {target: a} ], on_exhausted: { action: \"fallback_pool:p\" } }\n",
        &errs));
    expect_error_in(&errs, cfgpath, 3, 58,
                    "pools.p.on_exhausted.action: fallback_pool cycle: p -> q -> p");
    size_t cycles = 0;
    for (size_t i = 0; i < errs.n; i++)
        cycles += strstr(errs.v[i].msg, "cycle") != NULL;
    assert_int_equal(cycles, 1);
    bb_conf_errors_free(&errs);
}

static void test_zero_values(void **state)
{
    (void)state;
    expect_error("models: { a: { provider: anthropic } }\n"
                 "pools: { p: { members: [ { target: a, weight: 0 } ] } }\n",
                 2, 47, "pools.p.members[0].weight: must be at least 1 (got 0)");
    expect_error("models: { a: { provider: anthropic, max_concurrent: 0 } }\n", 1, 53,
                 "models.a.max_concurrent: must be at least 1 (got 0)");
    expect_error("models: { a: { provider: anthropic } }\n"
                 "pools: { p: { members: [ { target: a } ], failover: { max_hops: 0 } } }\n",
                 2, 65, "pools.p.failover.max_hops: must be at least 1 (got 0)");
    expect_error("models: { a: { provider: anthropic } }\n"
                 "pools: { p: { members: [ { target: a } ],\n"
                 "              breaker: { base_cooldown_secs: 30, max_cooldown_secs: 20 } } }\n",
                 3, 69, "max_cooldown_secs (20) is less than base_cooldown_secs (30)");
    /* Default max (120) below an explicit base. */
    expect_error(
        "models: { a: { provider: anthropic } }\n"
        "pools: { p: { members: [ { target: a } ], breaker: { base_cooldown_secs: 300 } } }\n",
        2, 52, "max_cooldown_secs (120) is less than base_cooldown_secs (300)");
}

static void test_enums(void **state)
{
    (void)state;
    expect_error("providers: { x: { protocol: grpc, base_url: \"https://x.example\" } }\n", 1, 29,
                 "providers.x.protocol: unknown protocol 'grpc'");
    expect_error("providers: { x: { protocol: antropic, base_url: \"https://x.example\" } }\n", 1,
                 29, "did you mean 'anthropic'?");
    expect_error("models: { a: { provider: anthropic } }\n"
                 "pools: { p: { members: [ { target: a } ], route: random } }\n",
                 2, 50, "pools.p.route: unknown route 'random'");
    expect_error("models: { a: { provider: anthropic } }\n"
                 "pools: { p: { members: [ { target: a } ], route: weigthed } }\n",
                 2, 50, "did you mean 'weighted'?");
    expect_error("models: { a: { provider: anthropic } }\n"
                 "pools: { p: { members: [ { target: a } ], on_exhausted: { action: retry } } }\n",
                 2, 67, "pools.p.on_exhausted.action: unknown on_exhausted action 'retry'");
    expect_error("models: { a: { provider: anthropic } }\n"
                 "pools: { p: { members: [ { target: a } ], on_exhausted: {} } }\n",
                 2, 57, "pools.p.on_exhausted: missing required key 'action'");
    expect_error(
        "models: { a: { provider: anthropic } }\n"
        "pools: { p: { members: [ { target: a } ], on_exhausted: { action: \"queue:x\" } } }\n",
        2, 67, "expected queue:<max_ms>");
    expect_error("auth: { mode: open }\n", 1, 15, "auth.mode: unknown mode 'open'");
    assert_int_equal(bb_proto_from_name("openai"), BB_PROTO_OPENAI);
    assert_int_equal(bb_proto_from_name("openai-responses"), BB_PROTO_RESPONSES);
    assert_int_equal(bb_proto_from_name("responses"), BB_PROTO_RESPONSES);
    assert_int_equal(bb_proto_from_name("cohere"), BB_PROTO_COHERE);
    assert_int_equal(bb_proto_from_name("OpenAI"), -1);
    assert_int_equal(bb_proto_from_name(NULL), -1);
    for (int p = 0; p < BB_PROTO__COUNT; p++)
        assert_int_equal(bb_proto_from_name(bb_proto_name((enum bb_proto)p)), p);
    assert_string_equal(bb_proto_name(BB_PROTO_GEMINI), "gemini");
    assert_string_equal(bb_proto_name(BB_PROTO_BEDROCK), "bedrock");
}

static void test_base_urls(void **state)
{
    (void)state;
    expect_error("providers: { x: { protocol: openai, base_url: \"http://api.example.com\" } }\n",
                 1, 47,
                 "providers.x.base_url: host 'api.example.com' is public and needs https://");
    expect_error("providers: { x: { protocol: openai, base_url: \"http://169.254.169.254\" } }\n",
                 1, 47, "host '169.254.169.254' is a cloud metadata endpoint and is denied");
    /* Metadata hosts are denied over https too, and in alternate encodings. */
    expect_error("providers: { x: { protocol: openai, base_url: \"https://169.254.169.254\" } }\n",
                 1, 47, "cloud metadata endpoint");
    expect_error("providers: { x: { protocol: openai, base_url: \"http://0xa9fea9fe\" } }\n", 1, 47,
                 "cloud metadata endpoint");
    expect_error(
        "providers: { x: { protocol: openai, base_url: \"https://metadata.google.internal\" } }\n",
        1, 47, "cloud metadata endpoint");
    expect_error("providers: { x: { protocol: openai, base_url: \"ftp://x.example\" } }\n", 1, 47,
                 "providers.x.base_url: URL scheme must be http:// or https://");
    expect_error("providers: { x: { protocol: openai } }\n", 1, 14,
                 "providers.x: not in the providers catalogue, so base_url is required");
    expect_error("providers: { x: { base_url: \"https://x.example\" } }\n", 1, 14,
                 "providers.x: not in the providers catalogue, so protocol is required");
    expect_error("providers: { openia: {} }\n", 1, 14,
                 "so protocol and base_url are required; did you mean 'openai'?");
    expect_error("providers: { x: { protocol: openai, base_url: \"https://x.example\", "
                 "api_key_env: \"MY KEY\" } }\n",
                 1, 81, "providers.x.api_key_env: 'MY KEY' is not a valid environment variable");
    /* Catalogue overrides may move a provider to a metadata host: still refused. */
    expect_error("providers: { openai: { base_url: \"http://[fd00:ec2::254]\" } }\n", 1, 34,
                 "cloud metadata endpoint");

    /* Loopback and private hosts may use http. */
    struct bb_conf_errors errs = {0};
    struct bb_conf *c =
        load_text("providers:\n"
                  "  a: { protocol: openai, base_url: \"http://127.0.0.1:11434\" }\n"
                  "  b: { protocol: anthropic, base_url: \"http://192.168.1.5:8080/x/\" }\n"
                  "  c: { protocol: gemini, base_url: \"http://[::1]:9000\" }\n"
                  "  d: { protocol: cohere, base_url: \"http://llm.internal\" }\n",
                  &errs);
    assert_non_null(c);
    assert_int_equal(c->n_providers, 4);
    assert_int_equal(c->providers[0].url.port, 11434);
    assert_string_equal(c->providers[1].url.path, "/x");
    assert_string_equal(c->providers[2].url.host, "::1");
    bb_conf_free(c);

    /* A bad catalogue entry is located in the catalogue file. */
    const char *cat = tmp_file("badcat.yaml", "ok:\n"
                                              "  protocol: openai\n"
                                              "  base_url: https://ok.example\n"
                                              "bad:\n"
                                              "  protocol: openai\n"
                                              "  base_url: http://public.example\n"
                                              "half:\n"
                                              "  base_url: https://half.example\n"
                                              "  health: {}\n");
    write_at(cfgpath, "models: { a: { provider: ok } }\n");
    assert_null(bb_conf_load(cfgpath, cat, &errs));
    expect_error_in(&errs, cat, 6, 13, "bad.base_url: host 'public.example' is public");
    expect_error_in(&errs, cat, 7, 1, "half: missing required key 'protocol'");
    expect_error_in(&errs, cat, 9, 3, "unknown key 'health' in half");
    /* Config errors sort before catalogue errors. */
    assert_string_equal(errs.v[0].file, cat);
    bb_conf_errors_free(&errs);
}

static void test_tls(void **state)
{
    (void)state;
    tmp_file("cert.pem", "not really a certificate\n");
    tmp_file("key.pem", "not really a key\n");
    char sub[PATH_MAX];
    snprintf(sub, sizeof sub, "%s/adir", tmpdir);
    mkdir(sub, 0700);

    struct bb_conf_errors errs = {0};
    struct bb_conf *c = load_text(
        "tls: { cert_file: cert.pem, key_file: ./key.pem, client_ca_file: cert.pem }\n", &errs);
    assert_non_null(c);
    char want[PATH_MAX + 32];
    snprintf(want, sizeof want, "%s/cert.pem", tmpdir); /* relative to the config file */
    assert_string_equal(c->tls_cert_file, want);
    assert_string_equal(c->tls_client_ca_file, want);
    snprintf(want, sizeof want, "%s/key.pem", tmpdir);
    assert_string_equal(c->tls_key_file, want);
    bb_conf_free(c);

    expect_error("tls: { cert_file: missing.pem, key_file: key.pem }\n", 1, 19,
                 "tls.cert_file: cannot read '");
    expect_error("tls: { cert_file: missing.pem, key_file: key.pem }\n", 1, 19,
                 "missing.pem': No such file or directory");
    expect_error("tls: { cert_file: cert.pem, key_file: adir }\n", 1, 39, "tls.key_file: '");
    expect_error("tls: { cert_file: cert.pem, key_file: adir }\n", 1, 39, "is not a regular file");
    expect_error("tls: { cert_file: cert.pem }\n", 1, 6,
                 "tls: cert_file is set but key_file is missing");
    expect_error("tls: { key_file: key.pem }\n", 1, 6,
                 "tls: key_file is set but cert_file is missing");
    expect_error("tls: { client_ca_file: cert.pem }\n", 1, 24,
                 "tls.client_ca_file: needs cert_file and key_file");
    expect_error("tls: { cert: cert.pem }\n", 1, 8, "unknown key 'cert' in tls");
}

static void test_unknown_keys(void **state)
{
    (void)state;
    struct bb_conf_errors errs = {0};
    const char *f = FIX "unknown_keys.yaml";
    assert_null(bb_conf_load(f, FIX "providers.yaml", &errs));
    expect_error_in(&errs, f, 2, 1, "unknown key 'wrokers'; did you mean 'workers'?");
    expect_error_in(&errs, f, 4, 34,
                    "unknown key 'max_concurent' in models.claude; did you mean 'max_concurrent'?");
    expect_error_in(&errs, f, 7, 5, "unknown key 'membres' in pools.fast; did you mean 'members'?");
    expect_error_in(&errs, f, 8, 17,
                    "unknown key 'max_hop' in pools.fast.failover; did you mean 'max_hops'?");
    expect_error_in(&errs, f, 9, 11,
                    "unknown key 'stream_idle_timeout' in limits; did you mean "
                    "'stream_idle_timeout_ms'?");
    bb_conf_errors_free(&errs);

    expect_error("bogus_thing: 1\n", 1, 1, "unknown key 'bogus_thing'");
    assert_null(load_text("bogus_thing: 1\n", &errs));
    assert_null(strstr(errs.v[0].msg, "did you mean"));
    bb_conf_errors_free(&errs);
    expect_error("admin: { sockt: /tmp/x }\n", 1, 10, "did you mean 'socket'?");
    expect_error("models: { a: { provider: anthropic, price: { inptu: 1, output: 2 } } }\n", 1, 46,
                 "unknown key 'inptu' in models.a.price; did you mean 'input'?");
    expect_error("providers: { anthropic: { api_key: sk-123 } }\n", 1, 27,
                 "unknown key 'api_key' in providers.anthropic; did you mean 'api_key_env'?");
    expect_error("models: { a: { provider: anthropic } }\n"
                 "pools: { p: { members: [ { target: a, wieght: 2 } ] } }\n",
                 2, 39, "unknown key 'wieght' in pools.p.members[0]; did you mean 'weight'?");
    expect_error("governance: { enabeld: true }\n", 1, 15,
                 "unknown key 'enabeld' in governance; did you mean 'enabled'?");
}

/* Routing policies (pools.*.policy) and security: (SPEC §5.5, §9). */
static void test_policies_and_security(void **state)
{
    (void)state;
    setenv("ANTHROPIC_KEY", "sk-ant-test", 1);
    const char *ok = tmp_file("ok.lua", "function route(r, c, x) return { abstain = true } end\n");
    char text[2048];
    snprintf(
        text, sizeof text,
        "providers: { anthropic: { api_key_env: ANTHROPIC_KEY },\n"
        "             local: { protocol: openai, base_url: \"http://Metadata:8080\" } }\n"
        "models: { claude: { provider: anthropic }, l: { provider: local } }\n"
        "pools:\n"
        "  w: { members: [ { target: claude } ], route: webhook,\n"
        "       policy: { url: \"http://hooks.internal:9000/route\", timeout_ms: 20,\n"
        "                 on_error: reject, include_messages: true } }\n"
        "  s: { members: [ { target: claude } ], route: webhook,\n"
        "       policy: { socket: rel.sock, on_error: first } }\n"
        "  x: { members: [ { target: claude } ], route: script, policy: { script_file: %s } }\n"
        "  n: { members: [ { target: claude } ] }\n"
        "security: { blocked_metadata_hosts: [ \"10.9.0.0/16\", \"Evil.Example.\", "
        "\"::ffff:1.2.3.4\" ],\n"
        "            allow_metadata_hosts: [ metadata ] }\n",
        ok);
    struct bb_conf_errors errs = {0};
    struct bb_conf *c = load_text(text, &errs);
    if (!c)
        bb_conf_errors_print(&errs, stderr);
    assert_non_null(c);
    const struct bb_policy_conf *w = &c->pools[0].policy, *s = &c->pools[1].policy,
                                *x = &c->pools[2].policy, *n = &c->pools[3].policy;
    assert_int_equal(w->kind, BB_POLICY_WEBHOOK);
    assert_string_equal(w->url_parsed.host, "hooks.internal");
    assert_int_equal(w->url_parsed.port, 9000);
    assert_int_equal(w->timeout_ms, 20);
    assert_int_equal(w->on_error, BB_POLICY_ON_ERROR_REJECT);
    assert_true(w->include_messages);
    assert_int_equal(s->kind, BB_POLICY_SOCKET);
    char want[PATH_MAX + 16];
    snprintf(want, sizeof want, "%s/rel.sock", tmpdir);
    assert_string_equal(s->socket, want); /* relative to the config's directory */
    assert_int_equal(s->timeout_ms, 5);   /* the default */
    assert_int_equal(s->on_error, BB_POLICY_ON_ERROR_FIRST);
    assert_int_equal(x->kind, BB_POLICY_SCRIPT);
    assert_non_null(x->script);
    assert_int_equal(x->on_error, BB_POLICY_ON_ERROR_WEIGHTED);
    assert_false(x->include_messages);
    assert_int_equal(n->kind, BB_POLICY_NONE);
    assert_int_equal(c->security.n_deny_nets, 2);
    assert_int_equal(c->security.n_deny_hosts, 1);
    assert_string_equal(c->security.deny_hosts[0], "evil.example");
    assert_int_equal(c->security.n_allow_hosts, 1);
    bb_conf_free(c);
    bb_conf_errors_free(&errs);

    /* the deny list applies at load, the allow list exempts a name */
    expect_error("security: { blocked_metadata_hosts: [ 10.9.0.0/16, evil.example ] }\n"
                 "providers: { x: { protocol: openai, base_url: \"http://10.9.3.4\" } }\n",
                 2, 47, "host '10.9.3.4' is in a range denied by security.blocked_metadata_hosts");
    expect_error("security: { blocked_metadata_hosts: [ 10.9.0.0/16, evil.example ] }\n"
                 "providers: { x: { protocol: openai, base_url: \"https://EVIL.example\" } }\n",
                 2, 47, "host 'evil.example' is denied by security.blocked_metadata_hosts");
    expect_error("providers: { x: { protocol: openai, base_url: \"http://metadata\" } }\n", 1, 47,
                 "cloud metadata endpoint");
    expect_error("security: { allow_metadata_hosts: [ 10.0.0.1 ] }\n", 1, 37,
                 "security.allow_metadata_hosts[0]: '10.0.0.1' is an address: list host names");
    expect_error("security: { blocked_metadata_hosts: [ 1.2.3.4.5 ] }\n", 1, 39,
                 "'1.2.3.4.5' is not a valid host name");
    expect_error("security: { blocked: [] }\n", 1, 13, "unknown key 'blocked' in security");
    /* a script that does not compile, or fails at its top level */
    const char *bad = tmp_file("bad.lua", "function route(\n");
    snprintf(text, sizeof text,
             "providers: { anthropic: { api_key_env: ANTHROPIC_KEY } }\n"
             "models: { claude: { provider: anthropic } }\n"
             "pools: { p: { members: [ { target: claude } ], route: script,\n"
             "              policy: { script_file: %s } } }\n",
             bad);
    expect_error(text, 4, 38, "pools.p.policy.script_file: ");
    expect_error(text, 4, 38, "bad.lua:2: ");
    tmp_file("bad.lua", "local t = {} while true do t[#t + 1] = {} end\n");
    expect_error(text, 4, 38, "bad.lua: memory limit reached");
    tmp_file("bad.lua", "while true do end\n");
    expect_error(text, 4, 38, "bad.lua: instruction budget exhausted");
    tmp_file("bad.lua", "io.write(1)\n");
    expect_error(text, 4, 38, "attempt to index a nil value (global 'io')");
    /* the file fixture: every section, one error left (a webhook without url or socket) */
    static const struct {
        int line, col;
        const char *msg;
    } fix[] = {
        {11, 13, "pools.fast.policy: route: webhook needs one of url and socket"},
    };
    const char *f = FIX "nyi.yaml";
    errs = (struct bb_conf_errors){0};
    unsetenv("BUSBAR_ADMIN_TOKEN");
    assert_null(bb_conf_load(f, FIX "providers.yaml", &errs));
    for (size_t i = 0; i < sizeof fix / sizeof fix[0]; i++)
        expect_error_in(&errs, f, fix[i].line, fix[i].col, fix[i].msg);
    assert_int_equal(errs.n, sizeof fix / sizeof fix[0]);
    bb_conf_errors_free(&errs);

    expect_error("auth: { mode: keys }\ngovernance: { enabled: false }\n", 1, 7,
                 "auth.mode: keys needs governance (governance.enabled is false)");
    expect_error("auth: { mode: token }\n", 1, 15,
                 "auth.mode: token needs auth.client_tokens (at least one token)");
    expect_error("auth: { mode: keys, client_tokens: [ a ] }\n", 1, 36,
                 "auth.client_tokens: only used with auth.mode: token");
    expect_error("auth: { mode: token, client_tokens: [ \"\" ] }\n", 1, 39,
                 "auth.client_tokens[0]: must not be empty");
    expect_error("providers: { anthropic: { error_map: { overloaded_error: melted } } }\n", 1, 58,
                 "providers.anthropic.error_map: unknown error class 'melted'");
    /* route: cheapest needs a price on every member. */
    errs = (struct bb_conf_errors){0};
    assert_null(
        load_text("models: { a: { provider: anthropic }, b: { provider: openai, price: "
                  "{ input: 1, output: 2 } } }\n"
                  "pools: { p: { members: [ { target: a }, { target: b } ], route: cheapest } }\n",
                  &errs));
    expect_error_in(&errs, cfgpath, 2, 26,
                    "pools.p.members[0]: model 'a' has no price, and route: cheapest needs one");
    assert_int_equal(errs.n, 1);
    bb_conf_errors_free(&errs);
    expect_error("cluster: { redis_url: \"redis://h\", on_redis_error: panic }\n", 1, 52,
                 "cluster.on_redis_error: unknown value 'panic' (expected local or deny)");
    expect_error("admin: { listen: \"nohost\" }\n", 1, 18, "admin.listen: bad address 'nohost'");
}

/* cluster: (SPEC §7) parsed into conf->cluster: the URL's parts, defaults, the password read
 * from the environment; nothing connects at load. */
static void test_cluster(void **state)
{
    (void)state;
    struct bb_conf_errors errs = {0};
    struct bb_conf *c = load_text("listen: \"127.0.0.1:1\"\n", &errs);
    assert_non_null(c);
    assert_false(c->cluster.enabled); /* absent: nothing changes, nothing connects */
    bb_conf_free(c);
    setenv("BB_TEST_REDIS_PW", "pw-from-env", 1);
    c = load_text("cluster: { redis_url: \"rediss://busbar@[::1]:6390/7\", node_id: n1,\n"
                  "  password_env: BB_TEST_REDIS_PW, on_redis_error: deny, timeout_ms: 20 }\n",
                  &errs);
    if (!c)
        bb_conf_errors_print(&errs, stderr);
    assert_non_null(c);
    const struct bb_cluster_conf *cl = &c->cluster;
    assert_true(cl->enabled && cl->tls && cl->deny_on_error);
    assert_string_equal(cl->host, "::1");
    assert_int_equal(cl->port, 6390);
    assert_int_equal(cl->db, 7);
    assert_string_equal(cl->user, "busbar");
    assert_string_equal(cl->password, "pw-from-env");
    assert_string_equal(cl->node_id, "n1");
    assert_string_equal(cl->key_prefix, "busbar:");
    assert_int_equal(cl->timeout_ms, 20);
    assert_int_equal(cl->lease_secs, 10);
    bb_conf_free(c);
    c = load_text("cluster: { redis_url: \"redis://10.0.0.5\" }\n", &errs);
    assert_non_null(c);
    assert_false(c->cluster.tls || c->cluster.deny_on_error);
    assert_string_equal(c->cluster.host, "10.0.0.5");
    assert_int_equal(c->cluster.port, 6379);
    assert_int_equal(c->cluster.db, 0);
    assert_null(c->cluster.user);
    assert_int_equal(c->cluster.timeout_ms, 50);
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    assert_string_equal(c->cluster.node_id, host); /* [hostname] */
    bb_conf_free(c);
    unsetenv("BB_TEST_REDIS_PW");
    expect_error("cluster: { redis_url: \"redis://a:b@h\" }\n", 1, 23,
                 "cluster.redis_url: a password must not be written in the URL");
    expect_error("cluster: { redis_url: \"redis://busbar@h\" }\n", 1, 23,
                 "cluster.redis_url: a user name needs cluster.password_env");
    expect_error("cluster: { redis_url: \"redis://h:0\" }\n", 1, 23, "port must be a number");
    expect_error("cluster: { redis_url: \"rediss://h\", tls: { cert_file: /etc/hostname } }\n", 1,
                 37, "cluster.tls: cert_file and key_file go together");
}

/* admin.listen + admin.token_env: the HTTP admin API (token read from the environment). */
static void test_admin_api(void **state)
{
    (void)state;
    setenv("BB_TEST_ADMIN_TOKEN", "0123456789abcdef-admin", 1);
    char text[512];
    snprintf(text, sizeof text,
             "admin: { listen: \"127.0.0.1:8081\", token_env: BB_TEST_ADMIN_TOKEN }\n%s", minimal);
    struct bb_conf_errors errs = {0};
    struct bb_conf *c = load_text(text, &errs);
    assert_non_null(c);
    assert_string_equal(c->admin_listen, "127.0.0.1:8081");
    assert_string_equal(c->admin_listen_host, "127.0.0.1");
    assert_int_equal(c->admin_listen_port, 8081);
    assert_string_equal(c->admin_token_env, "BB_TEST_ADMIN_TOKEN");
    assert_string_equal(c->admin_token, "0123456789abcdef-admin");
    bb_conf_free(c);

    /* An unset token variable is not a load error (busbarctl loads configs to find the
     * socket); the master refuses to start without it (master/admin_http.c). */
    unsetenv("BB_TEST_ADMIN_TOKEN");
    snprintf(text, sizeof text,
             "admin: { listen: \"[::1]:8081\", token_env: BB_TEST_ADMIN_TOKEN }\n%s", minimal);
    c = load_text(text, &errs);
    assert_non_null(c);
    assert_string_equal(c->admin_listen_host, "::1");
    assert_null(c->admin_token);
    bb_conf_free(c);

    expect_error("admin: { listen: \"127.0.0.1:8081\" }\n", 1, 18,
                 "admin.listen: requires admin.token_env");
    expect_error("admin: { token_env: \"1BAD\" }\n", 1, 21, "not a valid environment variable");
}

static void test_collects_all(void **state)
{
    (void)state;
    struct bb_conf_errors errs = {0};
    assert_null(load_text("workers: 0\n"
                          "listen: bad\n"
                          "models: { a: { provider: nope } }\n"
                          "limits: { body_timeout_ms: 0 }\n",
                          &errs));
    assert_int_equal(errs.n, 4);
    for (size_t i = 0; i < errs.n; i++)
        assert_int_equal(errs.v[i].line, (int)i + 1); /* sorted by position */

    /* Printing: one "file:line:col: message" line each; errors accumulate across calls. */
    assert_null(load_text("workers: 0\n", &errs));
    assert_int_equal(errs.n, 5);
    char *buf = NULL;
    size_t len = 0;
    FILE *mf = open_memstream(&buf, &len);
    bb_conf_errors_print(&errs, mf);
    fclose(mf);
    char want[PATH_MAX + 64];
    snprintf(want, sizeof want, "%s:1:10: workers: must be at least 1 (got 0)\n", cfgpath);
    assert_true(strncmp(buf, want, strlen(want)) == 0);
    size_t lines = 0;
    for (char *p = buf; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 5);
    free(buf);
    bb_conf_errors_free(&errs);
    assert_int_equal(errs.n, 0);
    assert_null(errs.v);
}

static void test_providers_precedence(void **state)
{
    (void)state;
    char dir[PATH_MAX + 16];
    snprintf(dir, sizeof dir, "%s/prec", tmpdir);
    mkdir(dir, 0700);
    char beside[PATH_MAX + 64], viakey[PATH_MAX + 64], viaenv[PATH_MAX + 64], viaarg[PATH_MAX + 64];
    char cfg[PATH_MAX + 64], cfg_key[PATH_MAX + 64];
    snprintf(beside, sizeof beside, "%s/providers.yaml", dir);
    snprintf(viakey, sizeof viakey, "%s/key.yaml", dir);
    snprintf(viaenv, sizeof viaenv, "%s/env.yaml", dir);
    snprintf(viaarg, sizeof viaarg, "%s/arg.yaml", dir);
    snprintf(cfg, sizeof cfg, "%s/config.yaml", dir);
    snprintf(cfg_key, sizeof cfg_key, "%s/config-key.yaml", dir);
    write_at(beside, "p: { protocol: openai, base_url: \"https://beside.example\" }\n");
    write_at(viakey, "p: { protocol: openai, base_url: \"https://key.example\" }\n");
    write_at(viaenv, "p: { protocol: openai, base_url: \"https://env.example\" }\n");
    write_at(viaarg, "p: { protocol: openai, base_url: \"https://arg.example\" }\n");
    write_at(cfg, "models: { m: { provider: p } }\n");
    write_at(cfg_key, "providers_file: key.yaml\nmodels: { m: { provider: p } }\n");

    struct bb_conf *c = must_load(cfg, NULL);
    assert_string_equal(c->providers[0].url.host, "beside.example");
    assert_string_equal(c->files[1], beside);
    bb_conf_free(c);

    c = must_load(cfg_key, NULL); /* providers_file: relative to the config directory */
    assert_string_equal(c->providers[0].url.host, "key.example");
    assert_string_equal(c->files[1], viakey);
    bb_conf_free(c);

    setenv("BUSBAR_PROVIDERS", viaenv, 1);
    c = must_load(cfg_key, NULL);
    assert_string_equal(c->providers[0].url.host, "env.example");
    assert_ptr_equal(c->lanes[0].provider, 0);
    bb_conf_free(c);

    c = must_load(cfg_key, viaarg);
    assert_string_equal(c->providers[0].url.host, "arg.example");
    assert_string_equal(c->files[1], viaarg);
    /* Catalogue positions point into files[1]. */
    assert_ptr_equal(c->providers[0].pos.file, c->files[1]);
    assert_int_equal(c->providers[0].pos.line, 1);
    assert_int_equal(c->providers[0].pos.col, 1);
    bb_conf_free(c);
    unsetenv("BUSBAR_PROVIDERS");

    /* An explicit catalogue that does not exist is an error; the default one may be absent. */
    struct bb_conf_errors errs = {0};
    char nope[PATH_MAX + 64];
    snprintf(nope, sizeof nope, "%s/nope.yaml", dir);
    assert_null(bb_conf_load(cfg, nope, &errs));
    expect_error_in(&errs, nope, 1, 1, "cannot read");
    bb_conf_errors_free(&errs);

    remove(beside);
    write_at(cfg, "providers: { own: { protocol: openai, base_url: \"https://own.example\" } }\n"
                  "models: { m: { provider: own } }\n");
    c = must_load(cfg, NULL);
    assert_int_equal(c->n_providers, 1);
    bb_conf_free(c);
    write_at(cfg, "models: { m: { provider: p } }\n");
    assert_null(bb_conf_load(cfg, NULL, &errs));
    expect_error_in(&errs, cfg, 1, 26, "unknown provider 'p'");
    expect_error_in(&errs, cfg, 1, 26, "no catalogue at '");
    bb_conf_errors_free(&errs);

    /* Only providers listed in the config or used by a model are in the conf. */
    c = must_load(FIX "minimal.yaml", FIX "providers.yaml");
    assert_int_equal(c->n_providers, 1);
    bb_conf_free(c);
}

static void test_paths(void **state)
{
    (void)state;
    char cwd[PATH_MAX], want[PATH_MAX + 64];
    assert_non_null(getcwd(cwd, sizeof cwd));
    struct bb_conf_errors errs = {0};
    struct bb_conf *c = load_text("state_dir: ./st\nlog_file: b.log\n", &errs);
    assert_non_null(c);
    snprintf(want, sizeof want, "%s/st", cwd);
    assert_string_equal(c->state_dir, want);
    snprintf(want, sizeof want, "%s/st/admin.sock", cwd);
    assert_string_equal(c->admin_socket, want);
    snprintf(want, sizeof want, "%s/b.log", cwd);
    assert_string_equal(c->log_file, want);
    bb_conf_free(c);

    char longp[200];
    memset(longp, 'x', sizeof longp - 1);
    longp[0] = '/';
    longp[sizeof longp - 1] = '\0';
    char text[300];
    snprintf(text, sizeof text, "admin: { socket: %s }\n", longp);
    expect_error(text, 1, 18, "admin.socket: admin socket path");
    snprintf(text, sizeof text, "state_dir: %s\n", longp);
    expect_error(text, 1, 12, "too long for a Unix socket");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_minimal),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_shipped_files),
        cmocka_unit_test(test_env_interpolation),
        cmocka_unit_test(test_yaml_errors),
        cmocka_unit_test(test_types),
        cmocka_unit_test(test_listen_addresses),
        cmocka_unit_test(test_references),
        cmocka_unit_test(test_zero_values),
        cmocka_unit_test(test_enums),
        cmocka_unit_test(test_base_urls),
        cmocka_unit_test(test_tls),
        cmocka_unit_test(test_unknown_keys),
        cmocka_unit_test(test_policies_and_security),
        cmocka_unit_test(test_admin_api),
        cmocka_unit_test(test_cluster),
        cmocka_unit_test(test_collects_all),
        cmocka_unit_test(test_key_hygiene),
        cmocka_unit_test(test_providers_precedence),
        cmocka_unit_test(test_paths),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
