/*
 * reload: generations. Master process only, called from the supervisor loop (SIGHUP or the
 * admin `reload` command) and once at start-up.
 *
 * Order of a reload: load + validate the config (the old generation keeps serving) → build the
 * new generation (listeners reused by address, new sockets bound, new SSL_CTXs, shm cells
 * interned by name so state carries over) → swap it in as current → fork its workers → the
 * supervisor tells the old generation to drain once the new workers are up. Any failure
 * before the swap frees what was built and changes nothing.
 */
#include "master/reload.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/log.h"
#include "common/metrics_shm.h"
#include "common/price.h"
#include "master/admin_http.h"
#include "master/ctl_server.h"
#include "common/redis.h"
#include "master/cluster.h"
#include "master/governance.h"
#include "master/listeners.h"
#include "master/supervisor.h"
#include "master/tls.h"

void bb_strv_pushf(struct bb_strv *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *line = NULL;
    int n = vasprintf(&line, fmt, ap);
    va_end(ap);
    if (n < 0)
        line = bb_xstrdup("(out of memory formatting an error)");
    s->v = bb_xrealloc(s->v, (s->n + 1) * sizeof *s->v);
    s->v[s->n++] = line;
}

void bb_strv_push_conf_errors(struct bb_strv *s, const struct bb_conf_errors *errs)
{
    for (size_t i = 0; i < errs->n; i++) {
        const struct bb_conf_error *e = &errs->v[i];
        bb_strv_pushf(s, "%s:%d:%d: %s", e->file ? e->file : "?", e->line, e->col,
                      e->msg ? e->msg : "");
    }
}

void bb_strv_free(struct bb_strv *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    s->v = NULL;
    s->n = 0;
}

/* mkdir -p with mode for the last component and any missing parent. */
static int mkdir_p(const char *path, mode_t mode, struct bb_err *err)
{
    char *p = bb_xstrdup(path);
    size_t len = strlen(p);
    while (len > 1 && p[len - 1] == '/')
        p[--len] = '\0';
    for (char *s = p + 1;; s++) {
        int last = *s == '\0';
        if (*s == '/' || last) {
            *s = '\0';
            if (mkdir(p, mode) < 0 && errno != EEXIST) {
                int e = errno;
                bb_err_set(err, "cannot create directory %s: %s", p, strerror(e));
                free(p);
                return -1;
            }
            if (last)
                break;
            *s = '/';
        }
    }
    struct stat st;
    int rc = 0;
    if (stat(p, &st) < 0 || !S_ISDIR(st.st_mode))
        rc = bb_err_set(err, "%s is not a directory", p);
    free(p);
    return rc;
}

int bb_reload_prepare_dirs(const struct bb_conf *conf, struct bb_err *err)
{
    if (conf->state_dir && mkdir_p(conf->state_dir, 0750, err) < 0)
        return -1;
    if (conf->admin_socket) {
        char *dir = bb_xstrdup(conf->admin_socket);
        char *slash = strrchr(dir, '/');
        int rc = 0;
        if (slash && slash != dir) {
            *slash = '\0';
            rc = mkdir_p(dir, 0750, err);
        }
        free(dir);
        if (rc < 0)
            return -1;
    }
    return 0;
}

static int intern(struct bb_master *m, const char *name, struct bb_err *err)
{
    if (strlen(name) >= BB_SHM_NAME_MAX)
        return bb_err_set(err, "name '%s' is longer than %d bytes (shared memory cell)", name,
                          BB_SHM_NAME_MAX - 1);
    if (!bb_shm_cell_intern(m->shm, name))
        return bb_err_set(err, "shared memory cell table is full (%d cells): cannot add '%s'",
                          BB_SHM_MAX_CELLS, name);
    return 0;
}

struct bb_gen *bb_gen_build(struct bb_master *m, struct bb_conf *conf, uint32_t generation,
                            struct bb_err *err)
{
    struct bb_gen *g = bb_xcalloc(1, sizeof *g);
    g->magic = BB_MAGIC_GEN;
    g->rt.conf = conf;
    g->rt.shm = m->shm;
    g->rt.generation = generation;
    g->rt.listen_fds = bb_xcalloc(conf->n_listen, sizeof *g->rt.listen_fds);
    g->listen_keys = bb_xcalloc(conf->n_listen, sizeof *g->listen_keys);

    for (size_t i = 0; i < conf->n_listen; i++) {
        int fd = bb_listeners_acquire(m, &conf->listen[i], &g->listen_keys[i], err);
        if (fd < 0)
            goto fail;
        g->rt.listen_fds[i] = fd;
        g->rt.n_listen = i + 1;
    }
    if (conf->tls_cert_file && !(g->rt.server_ctx = bb_tls_server_ctx(conf, err)))
        goto fail;
    /* The upstream TLS context only when some provider speaks https: initialising OpenSSL's
     * algorithms and trust store costs megabytes of resident memory per process. */
    bool need_client_tls = false;
    for (size_t i = 0; i < conf->n_providers; i++)
        need_client_tls |= conf->providers[i].url.tls;
    need_client_tls |= (conf->otlp_endpoint && conf->otlp_url.tls) ||
                       (conf->audit_url && conf->audit_url_parsed.tls); /* exporters */
    if (need_client_tls && !(g->rt.client_ctx = bb_tls_client_ctx(err)))
        goto fail;
    if (conf->cluster.enabled && conf->cluster.tls &&
        !(g->rt.redis_ctx = bb_redis_tls_ctx(&conf->cluster, err)))
        goto fail;

    for (size_t i = 0; i < conf->n_lanes; i++)
        if (intern(m, conf->lanes[i].name, err) < 0)
            goto fail;
    /* What each lane bills at: its price, else the built-in catalogue by upstream model. */
    struct bb_price_table prices;
    if (bb_price_table_builtin(&prices, err) < 0)
        goto fail;
    g->rt.lane_prices = bb_xcalloc(conf->n_lanes ? conf->n_lanes : 1, sizeof *g->rt.lane_prices);
    for (size_t i = 0; i < conf->n_lanes; i++) {
        bb_price_for_lane(&prices, &conf->lanes[i], &g->rt.lane_prices[i]);
        if (!conf->lanes[i].default_max_tokens) /* the model's own maximum output, when known */
            conf->lanes[i].default_max_tokens =
                bb_price_max_output(&prices, conf->lanes[i].upstream_model);
        if (!g->rt.lane_prices[i].known)
            bb_log(conf->auth_mode == BB_AUTH_KEYS ? BB_LOG_WARN : BB_LOG_INFO,
                   "model %s (%s): no price and not in the price catalogue; its spend counts "
                   "as 0 (budgets cannot limit it: set price:)",
                   conf->lanes[i].name, conf->lanes[i].upstream_model);
    }
    bb_price_table_free(&prices);
    if (conf->auth_mode == BB_AUTH_NONE)
        bb_warn("auth.mode is none: anyone who can reach a listener can use every model, "
                "unmetered by key. Set auth.mode: keys (virtual keys), token or passthrough "
                "before exposing busbar");
    for (size_t p = 0; p < conf->n_pools; p++) {
        const struct bb_pool *pool = &conf->pools[p];
        for (size_t k = 0; k < pool->n_members; k++) {
            char name[2 * BB_SHM_NAME_MAX + 2];
            snprintf(name, sizeof name, "%s/%s", pool->name,
                     conf->lanes[pool->members[k].lane].name);
            if (intern(m, name, err) < 0)
                goto fail;
        }
    }
    if (bb_mx_intern_conf(&m->shm->metrics, conf, err) < 0) /* metric cells, by name */
        goto fail;
    return g;
fail:
    bb_gen_free(m, g);
    return NULL;
}

void bb_gen_free(struct bb_master *m, struct bb_gen *g)
{
    if (!g)
        return;
    for (struct bb_gen **pp = &m->gens; *pp; pp = &(*pp)->next) {
        if (*pp == g) {
            *pp = g->next;
            break;
        }
    }
    for (size_t i = 0; i < g->rt.n_listen; i++)
        bb_listeners_release(m, g->listen_keys[i]);
    if (g->rt.conf)
        for (size_t i = 0; i < g->rt.conf->n_listen; i++)
            free(g->listen_keys[i]);
    free(g->listen_keys);
    free(g->rt.listen_fds);
    free(g->rt.lane_prices);
    SSL_CTX_free(g->rt.server_ctx);
    SSL_CTX_free(g->rt.client_ctx);
    SSL_CTX_free(g->rt.redis_ctx);
    bb_conf_free(g->rt.conf);
    g->magic = 0;
    free(g);
}

void bb_gen_collect(struct bb_master *m)
{
    struct bb_gen *g = m->gens;
    while (g) {
        struct bb_gen *next = g->next;
        if (g != m->current && g->n_workers == 0) {
            bb_notice("generation %u has no workers left: released", g->rt.generation);
            bb_gen_free(m, g);
        }
        g = next;
    }
}

static int same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

int bb_reload(struct bb_master *m, uint64_t now, struct bb_strv *errors, uint32_t *generation)
{
    if (m->stopping) {
        bb_strv_pushf(errors, "busbar is shutting down");
        return -1;
    }
    bb_notice("reloading configuration from %s", m->config_path);
    struct bb_conf_errors errs = {0};
    struct bb_conf *conf = bb_conf_load(m->config_path, m->providers_path, &errs);
    if (!conf) {
        bb_strv_push_conf_errors(errors, &errs);
        if (errs.n == 0)
            bb_strv_pushf(errors, "%s: configuration could not be loaded", m->config_path);
        bb_conf_errors_free(&errs);
        goto failed;
    }
    bb_conf_errors_free(&errs);

    struct bb_err err = {{0}};
    unsigned free_slots = bb_supervisor_free_slots(m);
    if (conf->workers > free_slots) {
        bb_strv_pushf(errors,
                      "not enough free worker slots: %u needed, %u free (older generations "
                      "still draining; try again later)",
                      conf->workers, free_slots);
        bb_conf_free(conf);
        goto failed;
    }
    if (bb_reload_prepare_dirs(conf, &err) < 0) {
        bb_strv_pushf(errors, "%s: %s", m->config_path, err.msg);
        bb_conf_free(conf);
        goto failed;
    }
    uint32_t gen = m->current->rt.generation + 1;
    struct bb_gen *g = bb_gen_build(m, conf, gen, &err);
    if (!g) {
        bb_strv_pushf(errors, "%s: %s", m->config_path, err.msg);
        goto failed;
    }
    conf = g->rt.conf;
    if (!same_str(conf->admin_socket, m->admin_path)) {
        if (bb_ctl_server_rebind(m->ctl, conf->admin_socket, &err) < 0) {
            bb_strv_pushf(errors, "%s: %s", m->config_path, err.msg);
            bb_gen_free(m, g);
            goto failed;
        }
        free(m->admin_path);
        m->admin_path = bb_xstrdup(conf->admin_socket);
    }
    if (bb_admin_http_reconfigure(&m->admin_http, conf, m->shm, &err) < 0) {
        bb_strv_pushf(errors, "%s: %s", m->config_path, err.msg);
        bb_gen_free(m, g);
        goto failed;
    }
    if (bb_mcluster_check(conf, &err) < 0) {
        bb_strv_pushf(errors, "%s: %s", m->config_path, err.msg);
        bb_gen_free(m, g);
        goto failed;
    }
    bb_gov_reconfigure(m->gov, conf);
    bb_mcluster_reconfigure(&m->cluster, conf, m->shm, m->gov);

    /* Commit. From here on the reload cannot fail: the new generation is current. */
    g->next = m->gens;
    m->gens = g;
    m->current = g;
    atomic_store(&m->shm->generation, gen);
    if (!same_str(conf->log_file, m->log_file)) {
        if (bb_log_open(conf->log_file) < 0) {
            bb_error("cannot open log file %s: %s (keeping the current log)", conf->log_file,
                     strerror(errno));
        } else {
            free(m->log_file);
            m->log_file = conf->log_file ? bb_xstrdup(conf->log_file) : NULL;
        }
    }
    bb_log_set_level(bb_master_log_level(conf->log_level));
    if (bb_supervisor_spawn_gen(m, g, now, &err) < 0) /* slots were counted above */
        bb_error("generation %u: %s", gen, err.msg);
    m->retire_deadline_ms = now + BB_RETIRE_WAIT_MS;
    bb_notice("configuration reloaded: generation %u, %u workers", gen, conf->workers);
    *generation = gen;
    return 0;

failed:
    for (size_t i = 0; i < errors->n; i++)
        bb_error("%s", errors->v[i]);
    bb_error("reload failed: keeping generation %u", m->current->rt.generation);
    return -1;
}
