/*
 * main: the busbar binary. Parses argv, runs `-t` (validate and exit), or starts the master:
 * load config → open log → state dir → signals → shm → admin socket → generation 1 (listeners,
 * SSL_CTXs, shm cells) → fork workers → supervisor loop → clean shutdown.
 * Master process only (workers leave through _exit in supervisor.c and never return here).
 */
#include <getopt.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "common/config.h"
#include "common/log.h"
#include "common/shm.h"
#include "master/admin_http.h"
#include "master/ctl_server.h"
#include "master/cluster.h"
#include "master/governance.h"
#include "master/master.h"
#include "master/reload.h"
#include "master/signals.h"
#include "master/supervisor.h"
#include "master/tls.h"

#define DEFAULT_CONFIG "/etc/busbar/config.yaml"

int bb_master_log_level(const char *name)
{
    static const struct {
        const char *name;
        enum bb_log_level lvl;
    } levels[] = {{"debug", BB_LOG_DEBUG}, {"info", BB_LOG_INFO},    {"notice", BB_LOG_NOTICE},
                  {"warn", BB_LOG_WARN},   {"warning", BB_LOG_WARN}, {"error", BB_LOG_ERROR}};
    for (size_t i = 0; name && i < sizeof levels / sizeof levels[0]; i++)
        if (strcmp(levels[i].name, name) == 0)
            return levels[i].lvl;
    return BB_LOG_INFO;
}

void bb_master_log_conf_errors(const struct bb_conf_errors *errs)
{
    for (size_t i = 0; i < errs->n; i++)
        bb_error("%s:%d:%d: %s", errs->v[i].file ? errs->v[i].file : "?", errs->v[i].line,
                 errs->v[i].col, errs->v[i].msg ? errs->v[i].msg : "");
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: busbar [-c FILE] [-p PROVIDERS] [-t] [-h] [-V]\n"
            "  -c, --config FILE        configuration file ($BUSBAR_CONFIG, else %s)\n"
            "  -p, --providers FILE     provider catalogue ($BUSBAR_PROVIDERS, else\n"
            "                           providers_file: or providers.yaml beside the config)\n"
            "  -t, --validate           load and validate the configuration, then exit\n"
            "  -h, --help               this help\n"
            "  -V, --version            print the version\n"
            "signals: HUP reload, TERM/INT graceful stop, QUIT immediate stop, USR1 reopen logs\n",
            DEFAULT_CONFIG);
}

/* busbar -t: the whole load-and-validate pipeline plus the TLS context; binds nothing. */
static int validate(const char *config, const char *providers)
{
    struct bb_conf_errors errs = {0};
    struct bb_conf *conf = bb_conf_load(config, providers, &errs);
    bb_conf_errors_print(&errs, stderr);
    int rc = 0;
    if (!conf) {
        if (errs.n == 0)
            fprintf(stderr, "%s: configuration could not be loaded\n", config);
        rc = 1;
    } else {
        struct bb_err err = {{0}};
        if (bb_admin_http_check(conf, &err) < 0) {
            fprintf(stderr, "%s\n", err.msg);
            rc = 1;
        }
        if (bb_mcluster_check(conf, &err) < 0) {
            fprintf(stderr, "%s: %s\n", config, err.msg);
            rc = 1;
        }
        if (conf->tls_cert_file) {
            SSL_CTX *ctx = bb_tls_server_ctx(conf, &err);
            if (!ctx) {
                fprintf(stderr, "%s: %s\n", config, err.msg);
                rc = 1;
            }
            SSL_CTX_free(ctx);
        }
    }
    bb_conf_errors_free(&errs);
    bb_conf_free(conf);
    if (rc == 0)
        printf("configuration OK\n");
    return rc;
}

static void master_free(struct bb_master *m)
{
    bb_mcluster_close(m->cluster); /* before the store it writes to */
    bb_gov_close(m->gov);          /* drains the usage ring into the ledger first */
    bb_admin_http_free(m->admin_http);
    bb_ctl_server_free(m->ctl);
    while (m->gens)
        bb_gen_free(m, m->gens);
    bb_shm_destroy(m->shm);
    bb_signals_uninstall();
    free(m->admin_path);
    free(m->log_file);
    free(m);
}

static int run(const char *config, const char *providers)
{
    bb_log_set_role("master");
    struct bb_master *m = bb_xcalloc(1, sizeof *m);
    m->config_path = config;
    m->providers_path = providers;
    m->pid = getpid();
    m->started_ms = bb_now_ms();
    m->heartbeat_timeout_ms = BB_HEARTBEAT_TIMEOUT_MS;
    const char *hb = getenv("BUSBAR_HEARTBEAT_TIMEOUT_MS");
    if (hb && *hb) {
        char *end;
        unsigned long v = strtoul(hb, &end, 10);
        if (*end || v == 0)
            bb_warn("BUSBAR_HEARTBEAT_TIMEOUT_MS=%s ignored: not a positive integer", hb);
        else
            m->heartbeat_timeout_ms = v;
    }

    struct bb_conf_errors errs = {0};
    struct bb_conf *conf = bb_conf_load(config, providers, &errs);
    if (!conf) {
        bb_master_log_conf_errors(&errs);
        bb_error("%s: configuration has errors; not starting", config);
        bb_conf_errors_free(&errs);
        free(m);
        return 1;
    }
    bb_conf_errors_free(&errs);

    struct bb_err err = {{0}};
    struct bb_gen *g = NULL;
    if (conf->log_file && bb_log_open(conf->log_file) < 0) {
        bb_error("cannot open log file %s: %m", conf->log_file);
        goto fail_conf;
    }
    m->log_file = conf->log_file ? bb_xstrdup(conf->log_file) : NULL;
    bb_log_set_level(bb_master_log_level(conf->log_level));
    if (!conf->admin_socket) {
        bb_error("%s: no admin socket path", config);
        goto fail_conf;
    }
    if (bb_reload_prepare_dirs(conf, &err) < 0 || bb_signals_install(&err) < 0) {
        bb_error("%s", err.msg);
        goto fail_conf;
    }
    if (!(m->shm = bb_shm_create())) {
        bb_error("cannot create shared memory: %m");
        goto fail_conf;
    }
    if (!(m->ctl = bb_ctl_server_open(conf->admin_socket, &err))) {
        bb_error("%s", err.msg);
        goto fail_conf;
    }
    m->admin_path = bb_xstrdup(conf->admin_socket);
    /* Keys are published into shared memory before the first worker is forked. */
    if (!(m->gov = bb_gov_open(conf, m->shm, &err)) ||
        bb_admin_http_open(conf, m->shm, &m->admin_http, &err) < 0) {
        bb_error("%s", err.msg);
        goto fail_conf;
    }
    /* cluster mode: the key catalogue is merged before the first worker is forked */
    if (!(m->cluster = bb_mcluster_open(conf, m->shm, m->gov, BB_MCLUSTER_START_MS, &err)) &&
        conf->cluster.enabled) {
        bb_error("%s", err.msg);
        goto fail_conf;
    }
    if (!(g = bb_gen_build(m, conf, 1, &err))) { /* conf is consumed */
        bb_error("%s", err.msg);
        master_free(m);
        return 1;
    }
    m->gens = m->current = g;
    atomic_store(&m->shm->generation, 1);
    bb_notice("busbar %s starting: pid %d, config %s, %u workers", BB_VERSION, (int)m->pid, config,
              g->rt.conf->workers);
    /* Workers inherit the master's heap page for page: hand back what start-up freed
     * (config and price catalogue parsing, SQLite's migration work) before forking. */
    malloc_trim(0);
    if (bb_supervisor_spawn_gen(m, g, bb_now_ms(), &err) < 0) {
        bb_error("%s", err.msg);
        master_free(m);
        return 1;
    }
    int rc = bb_supervisor_run(m);
    master_free(m);
    return rc;

fail_conf:
    bb_conf_free(conf);
    master_free(m);
    return 1;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"providers", required_argument, NULL, 'p'},
                                         {"validate", no_argument, NULL, 't'},
                                         {"test", no_argument, NULL, 't'},
                                         {"help", no_argument, NULL, 'h'},
                                         {"version", no_argument, NULL, 'V'},
                                         {NULL, 0, NULL, 0}};
    const char *config = NULL, *providers = NULL;
    int check = 0, c;
    while ((c = getopt_long(argc, argv, "c:p:thV", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 'p':
            providers = optarg;
            break;
        case 't':
            check = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("busbar %s\n", BB_VERSION);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "busbar: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (!config || !*config)
        config = getenv("BUSBAR_CONFIG");
    if (!config || !*config)
        config = DEFAULT_CONFIG;
    return check ? validate(config, providers) : run(config, providers);
}
