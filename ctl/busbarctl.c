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

#ifndef BB_VERSION
#define BB_VERSION "0.0.0"
#endif

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
    X(keys, "SUBCOMMAND ...", "virtual keys: create list show update revoke delete (not yet)")     \
    X(spend, "[--key ID] [--by ...]", "spend per key, model, pool or day (not supported yet)")     \
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

/* Send {"cmd":name} and parse the reply; *raw gets the reply text when asked. */
static int call(struct ctl *c, const char *name, struct json_object **reply, char **raw)
{
    const char *path;
    if (socket_path(c, &path) != 0)
        return EXIT_FAIL;
    struct json_object *req = json_object_new_object();
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

static int not_built(const char *what)
{
    fprintf(stderr, "busbarctl: %s: not supported yet (governance is not built)\n", what);
    return EXIT_FAIL;
}

static int cmd_keys(struct ctl *c, int argc, char **argv)
{
    return not_built("keys");
}

static int cmd_spend(struct ctl *c, int argc, char **argv)
{
    return not_built("spend");
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
