/*
 * busbarctl: the admin CLI (SPEC §6). Talks to the master over its admin socket with the
 * one-line JSON protocol of common/ctl_proto.h; links only common/ (house style rule 9).
 * Commands are dispatched from one table (CTL_COMMANDS) that also generates the help text.
 * Exit codes: 0 success, 1 operation error (including "cannot connect"), 2 usage error.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "common/config.h"
#include "common/ctl_proto.h"
#include "common/err.h"
#include "common/keys_shm.h"
#include "common/price.h"
#include "common/shm.h"

#define DEFAULT_SOCKET "/var/lib/busbar/admin.sock"

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

struct ctl {
    const char *socket; /* --socket */
    const char *config; /* -c */
    bool json;          /* --json */
    char *resolved;     /* socket path found through a config (owned) */
};

/* name, usage after the name, one-line summary */
#define CTL_COMMANDS(X)                                                                            \
    X(status, "", "master pid, generation, uptime, workers and lanes with breaker states")         \
    X(reload, "", "reload the configuration; prints every error and exits 1 on failure")           \
    X(config, "check FILE", "validate FILE locally (file:line:col: message per error)")            \
    X(keys, "SUBCOMMAND ...", "virtual keys: create list show update revoke delete (below)")       \
    X(spend, "[--key ID] [--by key|model|pool|day] [--since D] [--until D] [--cluster]",           \
      "spend from the daily rollups (USD; --json: micro-dollars); --cluster: the whole cluster, "  \
      "from Redis (by key or day)")                                                                \
    X(help, "", "show this help")

#define X(name, args, summary) static int cmd_##name(struct ctl *c, int argc, char **argv);
CTL_COMMANDS(X)
#undef X

static const struct command {
    const char *name, *args, *summary;
    int (*run)(struct ctl *c, int argc, char **argv);
} commands[] = {
#define X(name, args, summary) {#name, args, summary, cmd_##name},
    CTL_COMMANDS(X)
#undef X
};

static void usage(FILE *f)
{
    fprintf(f, "usage: busbarctl [--socket PATH | -c CONFIG] [--json] COMMAND [ARGS]\n\n"
               "options:\n"
               "  --socket PATH   admin socket of the master\n"
               "  -c CONFIG       find the admin socket from this config ($BUSBAR_CONFIG;\n"
               "                  default socket " DEFAULT_SOCKET ")\n"
               "  --json          machine-readable output\n"
               "  -V, --version   print the version\n\n"
               "commands:\n");
    int width = 0;
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        int w = (int)(strlen(commands[i].name) + 1 + strlen(commands[i].args));
        if (w > width)
            width = w;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        char head[128];
        snprintf(head, sizeof head, "%s %s", commands[i].name, commands[i].args);
        fprintf(f, "  %-*s  %s\n", width, head, commands[i].summary);
    }
    fprintf(f,
            "\nkeys subcommands:\n"
            "  keys create --name NAME [LIMITS] [--aws]  create a key; prints its secret once\n"
            "  keys list                                 every key with its status and spend\n"
            "  keys show ID                              one key, with live counters\n"
            "  keys update ID [--name NAME] [LIMITS] [--enable|--disable]\n"
            "  keys revoke ID                            stop the key now (kept for the ledger)\n"
            "  keys delete ID                            remove the key\n"
            "LIMITS: --pools a,b ('' = every pool)  --budget USD ('none' removes it)\n"
            "        --period total|daily|monthly (UTC)  --rpm N  --tpm N  --parallel N\n"
            "        (0 = unlimited)  --expires 30d|12h|YYYY-MM-DD|YYYY-MM-DDTHH:MM:SSZ|never\n");
}

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "busbarctl: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nrun 'busbarctl help' for usage\n");
    return EXIT_USAGE;
}

/* ---- talking to the master ------------------------------------------------------------- */

static int load_errors_print(const char *path, struct bb_conf_errors *errs)
{
    bb_conf_errors_print(errs, stderr);
    if (errs->n == 0)
        fprintf(stderr, "%s: configuration could not be loaded\n", path);
    bb_conf_errors_free(errs);
    return EXIT_FAIL;
}

/* The socket path: --socket, else admin socket of -c / $BUSBAR_CONFIG, else the default. */
static int socket_path(struct ctl *c, const char **out)
{
    if (c->socket) {
        *out = c->socket;
        return 0;
    }
    const char *cfg = c->config ? c->config : getenv("BUSBAR_CONFIG");
    if (!cfg || !*cfg) {
        *out = DEFAULT_SOCKET;
        return 0;
    }
    struct bb_conf_errors errs = {0};
    struct bb_conf *conf = bb_conf_load(cfg, NULL, &errs);
    if (!conf) {
        fprintf(stderr, "busbarctl: cannot read %s to find the admin socket:\n", cfg);
        return load_errors_print(cfg, &errs);
    }
    bb_conf_errors_free(&errs);
    free(c->resolved);
    c->resolved = bb_xstrdup(conf->admin_socket ? conf->admin_socket : DEFAULT_SOCKET);
    bb_conf_free(conf);
    *out = c->resolved;
    return 0;
}

/* Send req (consumed; {"cmd":name} when NULL) and parse the reply; *raw gets the reply text
 * when asked. */
static int call_req(struct ctl *c, const char *name, struct json_object *req,
                    struct json_object **reply, char **raw)
{
    const char *path;
    if (socket_path(c, &path) != 0) {
        json_object_put(req);
        return EXIT_FAIL;
    }
    if (!req)
        req = json_object_new_object();
    json_object_object_add(req, "cmd", json_object_new_string(name));
    struct bb_err err = {{0}};
    char *resp = bb_ctl_call(path, json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN),
                             BB_CTL_TIMEOUT_MS, &err);
    json_object_put(req);
    if (!resp) {
        fprintf(stderr, "busbarctl: %s\n", err.msg);
        return EXIT_FAIL;
    }
    *reply = json_tokener_parse(resp);
    if (!*reply || !json_object_is_type(*reply, json_type_object)) {
        fprintf(stderr, "busbarctl: malformed reply from the master: %.200s\n", resp);
        json_object_put(*reply);
        free(resp);
        return EXIT_FAIL;
    }
    if (raw)
        *raw = resp;
    else
        free(resp);
    return EXIT_OK;
}

static int call(struct ctl *c, const char *name, struct json_object **reply, char **raw)
{
    return call_req(c, name, NULL, reply, raw);
}

static bool reply_ok(struct json_object *r)
{
    struct json_object *ok;
    return json_object_object_get_ex(r, "ok", &ok) && json_object_get_boolean(ok);
}

static const char *get_str(struct json_object *o, const char *key)
{
    struct json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
        return NULL;
    return json_object_get_string(v);
}

static int64_t get_int(struct json_object *o, const char *key)
{
    struct json_object *v;
    return json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : 0;
}

/* Print the master's error(s) from a failed reply; always EXIT_FAIL. */
static int print_reply_errors(struct json_object *r)
{
    struct json_object *errs;
    if (json_object_object_get_ex(r, "errors", &errs) &&
        json_object_is_type(errs, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(errs); i++)
            fprintf(stderr, "%s\n", json_object_get_string(json_object_array_get_idx(errs, i)));
    }
    const char *e = get_str(r, "error");
    if (e)
        fprintf(stderr, "busbarctl: %s\n", e);
    return EXIT_FAIL;
}

/* ---- tables ---------------------------------------------------------------------------- */

#define TABLE_MAX_COLS 10

struct table {
    size_t ncols, nrows;
    const char *head[TABLE_MAX_COLS];
    char **cells; /* nrows * ncols, owned */
};

static void table_row(struct table *t, ...)
{
    t->cells = bb_xrealloc(t->cells, (t->nrows + 1) * t->ncols * sizeof *t->cells);
    va_list ap;
    va_start(ap, t);
    for (size_t i = 0; i < t->ncols; i++)
        t->cells[t->nrows * t->ncols + i] = bb_xstrdup(va_arg(ap, const char *));
    va_end(ap);
    t->nrows++;
}

static void table_print(struct table *t)
{
    size_t w[TABLE_MAX_COLS];
    for (size_t i = 0; i < t->ncols; i++) {
        w[i] = strlen(t->head[i]);
        for (size_t r = 0; r < t->nrows; r++) {
            size_t l = strlen(t->cells[r * t->ncols + i]);
            if (l > w[i])
                w[i] = l;
        }
    }
    for (size_t r = 0; r <= t->nrows; r++) {
        for (size_t i = 0; i < t->ncols; i++) {
            const char *s = r == 0 ? t->head[i] : t->cells[(r - 1) * t->ncols + i];
            if (i + 1 == t->ncols)
                printf("%s\n", s);
            else
                printf("%-*s  ", (int)w[i], s);
        }
    }
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
}

static void fmt_duration(char *buf, size_t n, int64_t secs)
{
    if (secs < 0)
        secs = 0;
    long long d = secs / 86400, h = secs / 3600 % 24, m = secs / 60 % 60, s = secs % 60;
    if (d)
        snprintf(buf, n, "%lldd%02lldh%02lldm", d, h, m);
    else if (h)
        snprintf(buf, n, "%lldh%02lldm%02llds", h, m, s);
    else if (m)
        snprintf(buf, n, "%lldm%02llds", m, s);
    else
        snprintf(buf, n, "%llds", s);
}

/* ---- commands -------------------------------------------------------------------------- */

static int cmd_status(struct ctl *c, int argc, char **argv)
{
    if (argc > 1)
        return usage_error("status takes no arguments (got '%s')", argv[1]);
    struct json_object *r;
    char *raw = NULL;
    int rc = call(c, "status", &r, &raw);
    if (rc != EXIT_OK)
        return rc;
    if (c->json) {
        printf("%s\n", raw);
        rc = reply_ok(r) ? EXIT_OK : EXIT_FAIL;
        goto done;
    }
    if (!reply_ok(r)) {
        rc = print_reply_errors(r);
        goto done;
    }
    char up[32];
    fmt_duration(up, sizeof up, get_int(r, "uptime_secs"));
    printf("master pid %lld, generation %lld, uptime %s%s\n", (long long)get_int(r, "pid"),
           (long long)get_int(r, "generation"), up,
           get_int(r, "stopping") ? " (shutting down)" : "");
    if (get_str(r, "config"))
        printf("config %s\n", get_str(r, "config"));
    struct json_object *gov;
    if (json_object_object_get_ex(r, "governance", &gov) && gov) {
        if (get_int(gov, "enabled"))
            printf("governance: %lld keys published, store %s, %lld ledger rows written, %lld "
                   "usage records pending, %lld dropped, %lld store errors\n",
                   (long long)get_int(gov, "keys"), get_str(gov, "db") ? get_str(gov, "db") : "?",
                   (long long)get_int(gov, "ledger_rows_written"),
                   (long long)get_int(gov, "usage_pending"),
                   (long long)get_int(gov, "usage_dropped"),
                   (long long)get_int(gov, "store_errors"));
        else
            printf("governance: disabled\n");
    }
    struct json_object *cl;
    if (json_object_object_get_ex(r, "cluster", &cl) && cl)
        printf("cluster: node %s, %s %s%s (on_redis_error %s); admissions: %lld by Redis, "
               "%lld refused there, %lld local, %lld denied, %lld timeouts; %lld reconciled; "
               "breaker events %lld sent, %lld applied; %lld key changes applied\n",
               get_str(cl, "node_id") ? get_str(cl, "node_id") : "?",
               get_int(cl, "connected") ? "connected to" : "NOT connected to",
               get_str(cl, "redis") ? get_str(cl, "redis") : "?",
               get_int(cl, "connected") && !get_int(cl, "synced") ? " (catching up)" : "",
               get_str(cl, "on_redis_error") ? get_str(cl, "on_redis_error") : "?",
               (long long)get_int(cl, "admitted_redis"), (long long)get_int(cl, "refused_redis"),
               (long long)get_int(cl, "admitted_local"), (long long)get_int(cl, "denied"),
               (long long)get_int(cl, "timeouts"), (long long)get_int(cl, "reconciled"),
               (long long)get_int(cl, "breaker_sent"), (long long)get_int(cl, "breaker_applied"),
               (long long)get_int(cl, "keys_applied"));

    struct json_object *arr;
    struct table t = {.ncols = 9,
                      .head = {"SLOT", "PID", "GEN", "STATE", "UPTIME", "REQUESTS", "CONNS",
                               "INFLIGHT", "HEARTBEAT"}};
    if (json_object_object_get_ex(r, "workers", &arr) &&
        json_object_is_type(arr, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(arr); i++) {
            struct json_object *w = json_object_array_get_idx(arr, i);
            char slot[16], pid[16], gen[16], wup[32], req[24], conns[16], infl[16], hb[24];
            snprintf(slot, sizeof slot, "%lld", (long long)get_int(w, "slot"));
            snprintf(pid, sizeof pid, "%lld", (long long)get_int(w, "pid"));
            snprintf(gen, sizeof gen, "%lld", (long long)get_int(w, "generation"));
            fmt_duration(wup, sizeof wup, get_int(w, "uptime_secs"));
            snprintf(req, sizeof req, "%lld", (long long)get_int(w, "requests"));
            snprintf(conns, sizeof conns, "%lld", (long long)get_int(w, "connections"));
            snprintf(infl, sizeof infl, "%lld", (long long)get_int(w, "inflight"));
            if (get_str(w, "heartbeat_age_ms"))
                snprintf(hb, sizeof hb, "%.1fs ago", (double)get_int(w, "heartbeat_age_ms") / 1e3);
            else
                snprintf(hb, sizeof hb, "-");
            const char *state = get_str(w, "state");
            table_row(&t, slot, pid, gen, state ? state : "?", wup, req, conns, infl, hb);
        }
    }
    printf("\n");
    table_print(&t);

    struct table l = {.ncols = 6, .head = {"LANE", "BREAKER", "INFLIGHT", "OK", "ERR", "ATTEMPTS"}};
    if (json_object_object_get_ex(r, "lanes", &arr) && json_object_is_type(arr, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(arr); i++) {
            struct json_object *x = json_object_array_get_idx(arr, i);
            char infl[16], ok[24], err[24], att[24];
            snprintf(infl, sizeof infl, "%lld", (long long)get_int(x, "inflight"));
            snprintf(ok, sizeof ok, "%lld", (long long)get_int(x, "ok"));
            snprintf(err, sizeof err, "%lld", (long long)get_int(x, "err"));
            snprintf(att, sizeof att, "%lld", (long long)get_int(x, "attempts"));
            const char *name = get_str(x, "name"), *br = get_str(x, "breaker_state");
            table_row(&l, name ? name : "?", br ? br : "?", infl, ok, err, att);
        }
    }
    printf("\n");
    table_print(&l);
done:
    free(raw);
    json_object_put(r);
    return rc;
}

static int cmd_reload(struct ctl *c, int argc, char **argv)
{
    if (argc > 1)
        return usage_error("reload takes no arguments (got '%s')", argv[1]);
    struct json_object *r;
    char *raw = NULL;
    int rc = call(c, "reload", &r, &raw);
    if (rc != EXIT_OK)
        return rc;
    if (c->json) {
        printf("%s\n", raw);
        rc = reply_ok(r) ? EXIT_OK : EXIT_FAIL;
    } else if (reply_ok(r)) {
        printf("reloaded: generation %lld\n", (long long)get_int(r, "generation"));
    } else {
        rc = print_reply_errors(r);
    }
    free(raw);
    json_object_put(r);
    return rc;
}

static int cmd_config(struct ctl *c, int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "check") != 0)
        return usage_error("config: expected 'config check FILE'%s", "");
    if (argc != 3)
        return usage_error("config check needs exactly one FILE%s", "");
    struct bb_conf_errors errs = {0};
    struct bb_conf *conf = bb_conf_load(argv[2], NULL, &errs);
    if (!conf) {
        if (c->json) {
            struct json_object *o = json_object_new_object(), *a = json_object_new_array();
            for (size_t i = 0; i < errs.n; i++) {
                char line[1024];
                snprintf(line, sizeof line, "%s:%d:%d: %s", errs.v[i].file, errs.v[i].line,
                         errs.v[i].col, errs.v[i].msg);
                json_object_array_add(a, json_object_new_string(line));
            }
            json_object_object_add(o, "ok", json_object_new_boolean(0));
            json_object_object_add(o, "errors", a);
            printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
            json_object_put(o);
            bb_conf_errors_free(&errs);
            return EXIT_FAIL;
        }
        return load_errors_print(argv[2], &errs);
    }
    bb_conf_errors_free(&errs);
    bb_conf_free(conf);
    printf(c->json ? "{\"ok\":true}\n" : "configuration OK\n");
    return EXIT_OK;
}

/* ---- governance: keys and spend (wire arguments: master/governance.c) ------------------- */

/* "$12.50", "$0.000125": at least cents, at most micro-dollars. */
static void fmt_usd(char *buf, size_t n, uint64_t micros)
{
    char f[8];
    snprintf(f, sizeof f, "%06llu", (unsigned long long)(micros % 1000000u));
    size_t l = 6;
    while (l > 2 && f[l - 1] == '0')
        f[--l] = '\0';
    snprintf(buf, n, "$%llu.%s", (unsigned long long)(micros / 1000000u), f);
}

static void fmt_time(char *buf, size_t n, int64_t unix_secs)
{
    if (unix_secs <= 0) {
        snprintf(buf, n, "-");
        return;
    }
    char day[11];
    bb_keys_day_string(unix_secs, day);
    int64_t s = unix_secs % 86400;
    snprintf(buf, n, "%s %02d:%02d:%02dZ", day, (int)(s / 3600), (int)(s / 60 % 60), (int)(s % 60));
}

static bool has(struct json_object *o, const char *key)
{
    struct json_object *v;
    return json_object_object_get_ex(o, key, &v) && v && !json_object_is_type(v, json_type_null);
}

/* One command-line option of a subcommand: --name VALUE, --name=VALUE, or a --flag. */
struct opt {
    const char *name;
    bool takes_value;
    const char *val;
    bool seen;
};

/* Parse argv[from..argc) into opts; at most one positional argument (into *positional when
 * given). EXIT_OK or a usage error (already printed). */
static int parse_opts(const char *cmd, int argc, char **argv, int from, struct opt *opts,
                      size_t nopts, const char **positional)
{
    char what[96];
    for (int i = from; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0) {
            if (positional && !*positional) {
                *positional = a;
                continue;
            }
            snprintf(what, sizeof what, "%s: unexpected argument '%%s'", cmd);
            return usage_error(what, a);
        }
        const char *eq = strchr(a, '=');
        size_t nl = eq ? (size_t)(eq - (a + 2)) : strlen(a + 2);
        struct opt *o = NULL;
        for (size_t k = 0; k < nopts && !o; k++)
            if (strlen(opts[k].name) == nl && !strncmp(opts[k].name, a + 2, nl))
                o = &opts[k];
        snprintf(what, sizeof what, "%s: %%s", cmd);
        if (!o)
            return usage_error(what, "unknown option (see 'busbarctl help')");
        if (o->seen)
            return usage_error(what, "an option is given twice");
        o->seen = true;
        if (o->takes_value) {
            if (eq)
                o->val = eq + 1;
            else if (i + 1 < argc)
                o->val = argv[++i];
            else
                return usage_error(what, "an option needs a value");
        } else if (eq) {
            return usage_error(what, "a flag takes no value");
        }
    }
    return EXIT_OK;
}

static struct opt *find_opt(struct opt *opts, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(opts[i].name, name))
            return opts[i].seen ? &opts[i] : NULL;
    return NULL;
}

/* --name, --pools, --budget, --period, --rpm, --tpm, --parallel, --expires (and --enable /
 * --disable for update) → request members; checked here so a typo is a usage error (2). */
static int limits_to_req(const char *cmd, struct opt *o, size_t n, bool create,
                         struct json_object *req)
{
    char what[96];
    snprintf(what, sizeof what, "%s: %%s", cmd);
    struct opt *x;
    if ((x = find_opt(o, n, "name")))
        json_object_object_add(req, "name", json_object_new_string(x->val));
    if ((x = find_opt(o, n, "pools")))
        json_object_object_add(req, "pools", json_object_new_string(x->val));
    if ((x = find_opt(o, n, "budget"))) {
        uint64_t micros;
        if (!(!create && !strcmp(x->val, "none")) && bb_price_usd_parse(x->val, &micros) < 0)
            return usage_error(what, "--budget: expected USD like 25 or 12.50 (at most 6 "
                                     "decimals)");
        json_object_object_add(req, "budget", json_object_new_string(x->val));
    }
    if ((x = find_opt(o, n, "period"))) {
        if (bb_keys_period_from_name(x->val) < 0)
            return usage_error(what, "--period: expected total, daily or monthly");
        json_object_object_add(req, "period", json_object_new_string(x->val));
    }
    static const char *const lims[][2] = {
        {"rpm", "rpm"}, {"tpm", "tpm"}, {"parallel", "max_parallel"}};
    for (int i = 0; i < 3; i++) {
        if (!(x = find_opt(o, n, lims[i][0])))
            continue;
        char *end;
        unsigned long long v = strtoull(x->val, &end, 10);
        if (!*x->val || *end || x->val[0] == '-' || v > UINT32_MAX) {
            char m[96];
            snprintf(m, sizeof m, "--%s: expected a whole number (0 = unlimited)", lims[i][0]);
            return usage_error(what, m);
        }
        json_object_object_add(req, lims[i][1], json_object_new_int64((int64_t)v));
    }
    if ((x = find_opt(o, n, "expires"))) {
        int64_t t;
        if (!(!create && !strcmp(x->val, "never")) &&
            bb_keys_parse_expiry(x->val, (int64_t)(bb_wall_ms() / 1000), &t) < 0)
            return usage_error(what, "--expires: expected 30d, 12h, YYYY-MM-DD or "
                                     "YYYY-MM-DDTHH:MM:SSZ");
        json_object_object_add(req, "expires", json_object_new_string(x->val));
    }
    bool en = find_opt(o, n, "enable"), dis = find_opt(o, n, "disable");
    if (en && dis)
        return usage_error(what, "--enable and --disable exclude each other");
    if (en || dis)
        json_object_object_add(req, "enabled", json_object_new_boolean(en));
    if ((x = find_opt(o, n, "aws")))
        json_object_object_add(req, "aws", json_object_new_boolean(1));
    return EXIT_OK;
}

static void key_limit(char *buf, size_t n, struct json_object *k, const char *field,
                      struct json_object *live, const char *used, const char *unit)
{
    if (!has(k, field)) {
        snprintf(buf, n, "unlimited");
        return;
    }
    if (live && has(live, used))
        snprintf(buf, n, "%lld (%lld %s)", (long long)get_int(k, field),
                 (long long)get_int(live, used), unit);
    else
        snprintf(buf, n, "%lld", (long long)get_int(k, field));
}

static void pools_text(char *buf, size_t n, struct json_object *k)
{
    struct json_object *a;
    buf[0] = '\0';
    if (!json_object_object_get_ex(k, "pools", &a) || !json_object_is_type(a, json_type_array) ||
        json_object_array_length(a) == 0) {
        snprintf(buf, n, "all");
        return;
    }
    size_t off = 0;
    for (size_t i = 0; i < json_object_array_length(a) && off < n; i++)
        off += (size_t)snprintf(buf + off, n - off, "%s%s", i ? "," : "",
                                json_object_get_string(json_object_array_get_idx(a, i)));
}

static void budget_text(char *buf, size_t n, struct json_object *k)
{
    if (!has(k, "budget_micros")) {
        snprintf(buf, n, "none");
        return;
    }
    char usd[32];
    fmt_usd(usd, sizeof usd, (uint64_t)get_int(k, "budget_micros"));
    const char *p = get_str(k, "period");
    snprintf(buf, n, "%s %s", usd, p ? p : "total");
}

static void key_print(struct json_object *k)
{
    struct json_object *live = NULL;
    json_object_object_get_ex(k, "live", &live);
    bool pub = live && has(live, "published") && get_int(live, "published");
    char b[256], t[64];
    printf("id:                %s\n", get_str(k, "id") ? get_str(k, "id") : "?");
    printf("name:              %s\n", get_str(k, "name") ? get_str(k, "name") : "");
    printf("status:            %s%s\n", get_str(k, "status") ? get_str(k, "status") : "?",
           pub || has(k, "revoked_at") ? "" : " (not published to the workers)");
    pools_text(b, sizeof b, k);
    printf("pools:             %s\n", b);
    budget_text(b, sizeof b, k);
    printf("budget:            %s\n", b);
    if (pub) {
        char spent[32], resv[32];
        fmt_usd(spent, sizeof spent, (uint64_t)get_int(live, "spent_micros"));
        fmt_usd(resv, sizeof resv, (uint64_t)get_int(live, "reserved_micros"));
        printf("spent:             %s this period (%s reserved in flight", spent, resv);
        if (has(live, "remaining_micros")) {
            fmt_usd(spent, sizeof spent, (uint64_t)get_int(live, "remaining_micros"));
            printf(", %s left", spent);
        }
        printf(")\n");
    }
    key_limit(b, sizeof b, k, "rpm", pub ? live : NULL, "rpm_used", "used this minute");
    printf("rpm:               %s\n", b);
    key_limit(b, sizeof b, k, "tpm", pub ? live : NULL, "tpm_used", "used this minute");
    printf("tpm:               %s\n", b);
    key_limit(b, sizeof b, k, "max_parallel", pub ? live : NULL, "inflight", "in flight");
    printf("max parallel:      %s\n", b);
    fmt_time(t, sizeof t, has(k, "expires_at") ? get_int(k, "expires_at") : 0);
    printf("expires:           %s\n", has(k, "expires_at") ? t : "never");
    printf("enabled:           %s\n", get_int(k, "enabled") ? "yes" : "no");
    fmt_time(t, sizeof t, get_int(k, "created_at"));
    printf("created:           %s\n", t);
    if (has(k, "revoked_at")) {
        fmt_time(t, sizeof t, get_int(k, "revoked_at"));
        printf("revoked:           %s\n", t);
    }
    if (get_str(k, "aws_access_key_id"))
        printf("aws access key id: %s\n", get_str(k, "aws_access_key_id"));
    if (get_str(k, "warning"))
        fprintf(stderr, "busbarctl: warning: %s\n", get_str(k, "warning"));
}

/* Send a governance command; print raw JSON (--json) or call show(reply). */
static int gov_call(struct ctl *c, const char *cmd, struct json_object *req,
                    void (*show)(struct ctl *c, struct json_object *r))
{
    struct json_object *r;
    char *raw = NULL;
    int rc = call_req(c, cmd, req, &r, &raw);
    if (rc != EXIT_OK)
        return rc;
    if (c->json) {
        printf("%s\n", raw);
        rc = reply_ok(r) ? EXIT_OK : EXIT_FAIL;
    } else if (reply_ok(r)) {
        show(c, r);
    } else {
        rc = print_reply_errors(r);
    }
    free(raw);
    json_object_put(r);
    return rc;
}

static void show_created(struct ctl *c, struct json_object *r)
{
    printf("key %s created\n", get_str(r, "id") ? get_str(r, "id") : "?");
    printf("secret:                %s\n", get_str(r, "secret") ? get_str(r, "secret") : "?");
    if (get_str(r, "aws_secret_access_key")) {
        printf("aws access key id:     %s\n", get_str(r, "aws_access_key_id"));
        printf("aws secret access key: %s\n", get_str(r, "aws_secret_access_key"));
    }
    printf("(the secret is shown only this once: store it now)\n\n");
    key_print(r);
}

static void show_key(struct ctl *c, struct json_object *r)
{
    key_print(r);
}

static void show_list(struct ctl *c, struct json_object *r)
{
    struct json_object *arr;
    struct table t = {.ncols = 10,
                      .head = {"ID", "NAME", "STATUS", "POOLS", "BUDGET", "SPENT", "RPM", "TPM",
                               "PARALLEL", "EXPIRES"}};
    if (json_object_object_get_ex(r, "keys", &arr) && json_object_is_type(arr, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(arr); i++) {
            struct json_object *k = json_object_array_get_idx(arr, i), *live = NULL;
            json_object_object_get_ex(k, "live", &live);
            char pools[128], budget[64], spent[32] = "-", rpm[16] = "-", tpm[16] = "-",
                                         par[16] = "-", exp[32] = "never";
            pools_text(pools, sizeof pools, k);
            budget_text(budget, sizeof budget, k);
            if (live && has(live, "spent_micros"))
                fmt_usd(spent, sizeof spent, (uint64_t)get_int(live, "spent_micros"));
            if (has(k, "rpm"))
                snprintf(rpm, sizeof rpm, "%lld", (long long)get_int(k, "rpm"));
            if (has(k, "tpm"))
                snprintf(tpm, sizeof tpm, "%lld", (long long)get_int(k, "tpm"));
            if (has(k, "max_parallel"))
                snprintf(par, sizeof par, "%lld", (long long)get_int(k, "max_parallel"));
            if (has(k, "expires_at"))
                bb_keys_day_string(get_int(k, "expires_at"), exp);
            table_row(&t, get_str(k, "id") ? get_str(k, "id") : "?",
                      get_str(k, "name") ? get_str(k, "name") : "",
                      get_str(k, "status") ? get_str(k, "status") : "?", pools, budget, spent, rpm,
                      tpm, par, exp);
        }
    }
    if (t.nrows == 0) {
        printf("no keys (create one with 'busbarctl keys create --name NAME')\n");
        return;
    }
    table_print(&t);
}

static void show_deleted(struct ctl *c, struct json_object *r)
{
    printf("key %s deleted\n", get_str(r, "id") ? get_str(r, "id") : "?");
}

static void show_revoked(struct ctl *c, struct json_object *r)
{
    printf("key %s revoked\n", get_str(r, "id") ? get_str(r, "id") : "?");
}

static int keys_by_id(struct ctl *c, const char *sub, const char *cmd, int argc, char **argv,
                      void (*show)(struct ctl *c, struct json_object *r))
{
    const char *id = NULL;
    char what[64];
    snprintf(what, sizeof what, "keys %s", sub);
    int rc = parse_opts(what, argc, argv, 2, NULL, 0, &id);
    if (rc != EXIT_OK)
        return rc;
    if (!id) {
        snprintf(what, sizeof what, "keys %s: needs a key ID%%s", sub);
        return usage_error(what, "");
    }
    struct json_object *req = json_object_new_object();
    json_object_object_add(req, "id", json_object_new_string(id));
    return gov_call(c, cmd, req, show);
}

static int cmd_keys(struct ctl *c, int argc, char **argv)
{
    if (argc < 2)
        return usage_error("keys: expected a subcommand: create list show update revoke "
                           "delete%s",
                           "");
    const char *sub = argv[1];
    struct opt o[] = {{"name", true, NULL, false},     {"pools", true, NULL, false},
                      {"budget", true, NULL, false},   {"period", true, NULL, false},
                      {"rpm", true, NULL, false},      {"tpm", true, NULL, false},
                      {"parallel", true, NULL, false}, {"expires", true, NULL, false},
                      {"aws", false, NULL, false},     {"enable", false, NULL, false},
                      {"disable", false, NULL, false}};
    size_t no = sizeof o / sizeof o[0];
    if (!strcmp(sub, "create")) {
        int rc = parse_opts("keys create", argc, argv, 2, o, no - 2, NULL);
        if (rc != EXIT_OK)
            return rc;
        if (!find_opt(o, no, "name"))
            return usage_error("keys create: --name NAME is required%s", "");
        struct json_object *req = json_object_new_object();
        if ((rc = limits_to_req("keys create", o, no, true, req)) != EXIT_OK) {
            json_object_put(req);
            return rc;
        }
        return gov_call(c, "keys.create", req, show_created);
    }
    if (!strcmp(sub, "update")) {
        const char *id = NULL;
        int rc = parse_opts("keys update", argc, argv, 2, o, no, &id);
        if (rc != EXIT_OK)
            return rc;
        if (find_opt(o, no, "aws"))
            return usage_error("keys update: %s", "--aws is only possible at create");
        if (!id)
            return usage_error("keys update: needs a key ID%s", "");
        struct json_object *req = json_object_new_object();
        json_object_object_add(req, "id", json_object_new_string(id));
        if ((rc = limits_to_req("keys update", o, no, false, req)) != EXIT_OK) {
            json_object_put(req);
            return rc;
        }
        if (json_object_object_length(req) == 1) {
            json_object_put(req);
            return usage_error("keys update: %s", "nothing to change (give at least one option)");
        }
        return gov_call(c, "keys.update", req, show_key);
    }
    if (!strcmp(sub, "list")) {
        if (argc > 2)
            return usage_error("keys list takes no arguments (got '%s')", argv[2]);
        return gov_call(c, "keys.list", NULL, show_list);
    }
    if (!strcmp(sub, "show"))
        return keys_by_id(c, "show", "keys.show", argc, argv, show_key);
    if (!strcmp(sub, "revoke"))
        return keys_by_id(c, "revoke", "keys.revoke", argc, argv, show_revoked);
    if (!strcmp(sub, "delete"))
        return keys_by_id(c, "delete", "keys.delete", argc, argv, show_deleted);
    return usage_error("keys: unknown subcommand '%s'", sub);
}

static void show_spend(struct ctl *c, struct json_object *r)
{
    const char *by = get_str(r, "by") ? get_str(r, "by") : "key";
    bool bykey = !strcmp(by, "key");
    char head[16];
    snprintf(head, sizeof head, "%s", by);
    for (char *p = head; *p; p++)
        *p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
    struct table t = {.ncols = bykey ? 9 : 8};
    size_t h = 0;
    t.head[h++] = head;
    if (bykey)
        t.head[h++] = "NAME";
    const char *rest[] = {"REQUESTS",    "INPUT",     "OUTPUT", "CACHE_READ",
                          "CACHE_WRITE", "REASONING", "COST"};
    for (int i = 0; i < 7; i++)
        t.head[h++] = rest[i];
    struct json_object *arr;
    size_t nrows = 0;
    if (json_object_object_get_ex(r, "rows", &arr) && json_object_is_type(arr, json_type_array))
        nrows = json_object_array_length(arr);
    for (size_t i = 0; i <= nrows; i++) {
        struct json_object *x;
        if (i < nrows)
            x = json_object_array_get_idx(arr, i);
        else if (!json_object_object_get_ex(r, "total", &x))
            break;
        char v[7][32];
        static const char *const f[] = {"requests",           "input_tokens",
                                        "output_tokens",      "cache_read_tokens",
                                        "cache_write_tokens", "reasoning_tokens"};
        for (int k = 0; k < 6; k++)
            snprintf(v[k], sizeof v[k], "%lld", (long long)get_int(x, f[k]));
        fmt_usd(v[6], sizeof v[6], (uint64_t)get_int(x, "cost_micros"));
        const char *g = i < nrows ? (get_str(x, "group") ? get_str(x, "group") : "") : "TOTAL";
        if (i < nrows && !*g)
            g = bykey ? "(no key)" : "(none)";
        const char *name = i < nrows && get_str(x, "name") ? get_str(x, "name") : "";
        if (bykey)
            table_row(&t, g, name, v[0], v[1], v[2], v[3], v[4], v[5], v[6]);
        else
            table_row(&t, g, v[0], v[1], v[2], v[3], v[4], v[5], v[6]);
    }
    const char *since = get_str(r, "since"), *until = get_str(r, "until");
    struct json_object *cl;
    bool cluster = json_object_object_get_ex(r, "cluster", &cl) && json_object_get_boolean(cl);
    printf("spend by %s%s%s, %s .. %s (UTC days)%s\n\n", by, get_str(r, "key") ? " for key " : "",
           get_str(r, "key") ? get_str(r, "key") : "", since ? since : "start",
           until ? until : "today", cluster ? ", the whole cluster (Redis)" : "");
    table_print(&t);
}

static int cmd_spend(struct ctl *c, int argc, char **argv)
{
    struct opt o[] = {{"key", true, NULL, false},
                      {"by", true, NULL, false},
                      {"since", true, NULL, false},
                      {"until", true, NULL, false},
                      {"cluster", false, NULL, false}};
    int rc = parse_opts("spend", argc, argv, 1, o, 5, NULL);
    if (rc != EXIT_OK)
        return rc;
    struct json_object *req = json_object_new_object();
    struct opt *x;
    if ((x = find_opt(o, 5, "key")))
        json_object_object_add(req, "key", json_object_new_string(x->val));
    if ((x = find_opt(o, 5, "by"))) {
        if (strcmp(x->val, "key") && strcmp(x->val, "model") && strcmp(x->val, "pool") &&
            strcmp(x->val, "day")) {
            json_object_put(req);
            return usage_error("spend: --by: expected key, model, pool or day (got '%s')", x->val);
        }
        json_object_object_add(req, "by", json_object_new_string(x->val));
    }
    static const char *const days[] = {"since", "until"};
    for (int i = 0; i < 2; i++) {
        if (!(x = find_opt(o, 5, days[i])))
            continue;
        int64_t t;
        if (bb_keys_parse_day(x->val, &t) < 0) {
            json_object_put(req);
            return usage_error("spend: expected a UTC date YYYY-MM-DD (got '%s')", x->val);
        }
        json_object_object_add(req, days[i], json_object_new_string(x->val));
    }
    if (find_opt(o, 5, "cluster"))
        json_object_object_add(req, "cluster", json_object_new_boolean(1));
    return gov_call(c, "spend", req, show_spend);
}

static int cmd_help(struct ctl *c, int argc, char **argv)
{
    usage(stdout);
    return EXIT_OK;
}

/* ---- main ------------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    struct ctl c = {0};
    /* Global options come before the command; the long ones (--json, --socket, --config) are
     * also accepted after it. They are removed from argv so a command sees only its own
     * arguments. "--" ends option scanning. */
    char **args = bb_xcalloc((size_t)argc + 1, sizeof *args);
    int n = 0;
    bool opts_done = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool before = n == 0;
        if (opts_done || a[0] != '-' || strcmp(a, "-") == 0) {
            args[n++] = argv[i];
        } else if (strcmp(a, "--") == 0) {
            opts_done = true;
        } else if (strcmp(a, "--json") == 0) {
            c.json = true;
        } else if (strcmp(a, "--socket") == 0 || strcmp(a, "--config") == 0 ||
                   (before && strcmp(a, "-c") == 0)) {
            if (i + 1 >= argc) {
                free(args);
                return usage_error("%s needs a value", a);
            }
            if (strcmp(a, "--socket") == 0)
                c.socket = argv[++i];
            else
                c.config = argv[++i];
        } else if (strncmp(a, "--socket=", 9) == 0) {
            c.socket = a + 9;
        } else if (strncmp(a, "--config=", 9) == 0) {
            c.config = a + 9;
        } else if (before && (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)) {
            free(args);
            usage(stdout);
            return EXIT_OK;
        } else if (before && (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0)) {
            free(args);
            printf("busbarctl %s\n", BB_VERSION);
            return EXIT_OK;
        } else if (!before) {
            args[n++] = argv[i]; /* the command's own option, e.g. keys create --name */
        } else {
            free(args);
            return usage_error("unknown option '%s'", a);
        }
    }
    int rc;
    if (n == 0) {
        rc = usage_error("no command given%s", "");
    } else {
        const struct command *cmd = NULL;
        for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
            if (strcmp(commands[i].name, args[0]) == 0)
                cmd = &commands[i];
        rc = cmd ? cmd->run(&c, n, args) : usage_error("unknown command '%s'", args[0]);
    }
    free(c.resolved);
    free(args);
    return rc;
}
