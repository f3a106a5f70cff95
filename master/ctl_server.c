/*
 * ctl_server: admin socket server. Master process only, driven by the supervisor's poll loop.
 * Every fd is non-blocking; a client has BB_CTL_CLIENT_TIMEOUT_MS from accept to finish its
 * request and read the reply, after which it is dropped. Requests are one JSON line, replies
 * one JSON line (common/ctl_proto.h); the connection closes after the reply.
 * Commands: the BB_CTL_CMD_LIST table, each mapped to one handler below.
 */
#include "master/ctl_server.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <json-c/json.h>

#include "common/ctl_proto.h"
#include "common/log.h"
#include "master/governance.h"
#include "master/reload.h"
#include "master/supervisor.h"

#define BB_CTL_MAX_CLIENTS 32
#define BB_CTL_CLIENT_TIMEOUT_MS 5000
/* A reload reply waits for the old generation to stop accepting at most this long. */
#define BB_CTL_RELOAD_WAIT_MS (BB_RETIRE_WAIT_MS + 3000u)

struct bb_ctl_client {
    int fd; /* -1 = free entry */
    uint64_t deadline_ms;
    bool writing;
    bool waiting; /* reload done, reply held until the new generation took over */
    uint32_t wait_gen;
    uint64_t wait_until_ms;
    int pidx; /* index in the last pollfd array, -1 = not polled */
    struct bb_ctl_buf in, out;
};

struct bb_ctl_server {
    int fd;
    int pidx;
    char *path;
    struct bb_ctl_client clients[BB_CTL_MAX_CLIENTS];
};

/* ---- listening socket ------------------------------------------------------------------ */

static int bind_admin(const char *path, struct bb_err *err)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (!path || !*path)
        return bb_err_set(err, "admin socket: no path configured");
    if (strlen(path) >= sizeof sa.sun_path)
        return bb_err_set(err, "admin socket %s: path longer than %zu bytes", path,
                          sizeof sa.sun_path - 1);
    strcpy(sa.sun_path, path);

    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return bb_err_set(err, "admin socket %s: exists and is not a socket", path);
        /* A socket someone answers on belongs to a running master: never steal it. */
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe >= 0) {
            int live = connect(probe, (struct sockaddr *)&sa, sizeof sa) == 0;
            close(probe);
            if (live)
                return bb_err_set(err, "admin socket %s: another busbar master is running", path);
        }
        if (unlink(path) < 0 && errno != ENOENT)
            return bb_err_set(err, "admin socket %s: cannot remove stale socket: %s", path,
                              strerror(errno));
    }

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return bb_err_set(err, "admin socket: socket: %s", strerror(errno));
    mode_t old = umask(0177); /* the file is born 0600: no window for other users */
    int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    umask(old);
    if (rc < 0 || chmod(path, 0600) < 0 || listen(fd, 64) < 0) {
        int e = errno;
        close(fd);
        return bb_err_set(err, "admin socket %s: %s", path, strerror(e));
    }
    return fd;
}

struct bb_ctl_server *bb_ctl_server_open(const char *path, struct bb_err *err)
{
    int fd = bind_admin(path, err);
    if (fd < 0)
        return NULL;
    struct bb_ctl_server *s = bb_xcalloc(1, sizeof *s);
    s->fd = fd;
    s->pidx = -1;
    s->path = bb_xstrdup(path);
    for (int i = 0; i < BB_CTL_MAX_CLIENTS; i++)
        s->clients[i].fd = -1;
    bb_notice("admin socket %s", path);
    return s;
}

int bb_ctl_server_rebind(struct bb_ctl_server *s, const char *path, struct bb_err *err)
{
    int fd = bind_admin(path, err);
    if (fd < 0)
        return -1;
    close(s->fd);
    unlink(s->path);
    free(s->path);
    s->fd = fd;
    s->pidx = -1;
    s->path = bb_xstrdup(path);
    bb_notice("admin socket moved to %s", path);
    return 0;
}

static void client_close(struct bb_ctl_client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    bb_ctl_buf_free(&c->in);
    bb_ctl_buf_free(&c->out);
}

void bb_ctl_server_free(struct bb_ctl_server *s)
{
    if (!s)
        return;
    for (int i = 0; i < BB_CTL_MAX_CLIENTS; i++)
        client_close(&s->clients[i]);
    close(s->fd);
    unlink(s->path);
    free(s->path);
    free(s);
}

void bb_ctl_server_child_close(struct bb_ctl_server *s)
{
    if (!s)
        return;
    for (int i = 0; i < BB_CTL_MAX_CLIENTS; i++)
        if (s->clients[i].fd >= 0)
            close(s->clients[i].fd);
    close(s->fd);
}

/* ---- commands -------------------------------------------------------------------------- */

/* A handler returns the reply, or NULL to hold it (the client is then answered later). */
typedef struct json_object *(*ctl_handler)(struct bb_master *m, struct bb_ctl_client *c,
                                           struct json_object *req, uint64_t now);

static struct json_object *reply_ok(void)
{
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "ok", json_object_new_boolean(1));
    return o;
}

static struct json_object *reply_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static struct json_object *reply_error(const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "ok", json_object_new_boolean(0));
    json_object_object_add(o, "error", json_object_new_string(msg));
    return o;
}

static const char *slot_state(const struct bb_master *m, int i)
{
    const struct bb_slot *s = &m->slots[i];
    if (s->pid <= 0)
        return "respawning";
    if (s->stopping)
        return "draining";
    switch (atomic_load(&m->shm->workers[i].state)) {
    case BB_WORKER_STARTING:
        return "starting";
    case BB_WORKER_RUNNING:
        return "running";
    case BB_WORKER_DRAINING:
        return "draining";
    default:
        return "free";
    }
}

static const char *breaker_name(uint32_t st)
{
    return st == 1 ? "half-open" : st == 2 ? "open" : "closed";
}

static void add_lane(struct json_object *arr, struct bb_shm *shm, const char *name)
{
    struct bb_shm_cell *c = bb_shm_cell_find(shm, name);
    if (!c)
        return;
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "name", json_object_new_string(name));
    json_object_object_add(o, "inflight", json_object_new_int(atomic_load(&c->inflight)));
    json_object_object_add(o, "ok", json_object_new_uint64(atomic_load(&c->ok)));
    json_object_object_add(o, "err", json_object_new_uint64(atomic_load(&c->err)));
    json_object_object_add(o, "attempts", json_object_new_uint64(atomic_load(&c->attempts)));
    json_object_object_add(o, "breaker_state",
                           json_object_new_string(breaker_name(atomic_load(&c->breaker_state))));
    json_object_array_add(arr, o);
}

static struct json_object *cmd_status(struct bb_master *m, struct bb_ctl_client *c,
                                      struct json_object *req, uint64_t now)
{
    struct json_object *o = reply_ok();
    json_object_object_add(o, "pid", json_object_new_int(m->pid));
    json_object_object_add(o, "generation", json_object_new_int64(m->current->rt.generation));
    json_object_object_add(o, "uptime_secs", json_object_new_uint64((now - m->started_ms) / 1000));
    json_object_object_add(o, "config", json_object_new_string(m->config_path));
    if (m->stopping)
        json_object_object_add(o, "stopping", json_object_new_boolean(1));

    struct json_object *workers = json_object_new_array();
    for (int i = 0; i < BB_SHM_MAX_WORKERS; i++) {
        const struct bb_slot *s = &m->slots[i];
        if (!s->gen)
            continue;
        const struct bb_shm_worker *w = &m->shm->workers[i];
        struct json_object *x = json_object_new_object();
        json_object_object_add(x, "slot", json_object_new_int(i));
        json_object_object_add(x, "pid", json_object_new_int(s->pid));
        json_object_object_add(x, "generation", json_object_new_int64(s->gen->rt.generation));
        json_object_object_add(x, "state", json_object_new_string(slot_state(m, i)));
        uint64_t up = s->pid > 0 && now > s->started_ms ? (now - s->started_ms) / 1000 : 0;
        json_object_object_add(x, "uptime_secs", json_object_new_uint64(up));
        json_object_object_add(x, "requests", json_object_new_uint64(atomic_load(&w->requests)));
        json_object_object_add(x, "connections",
                               json_object_new_int64(atomic_load(&w->connections)));
        json_object_object_add(x, "inflight", json_object_new_int64(atomic_load(&w->inflight)));
        uint64_t hb = atomic_load(&w->heartbeat_ms);
        json_object_object_add(x, "heartbeat_age_ms",
                               s->pid > 0 && hb ? json_object_new_uint64(now > hb ? now - hb : 0)
                                                : NULL);
        json_object_array_add(workers, x);
    }
    json_object_object_add(o, "workers", workers);

    const struct bb_conf *conf = m->current->rt.conf;
    struct json_object *lanes = json_object_new_array();
    for (size_t i = 0; i < conf->n_lanes; i++)
        add_lane(lanes, m->shm, conf->lanes[i].name);
    for (size_t p = 0; p < conf->n_pools; p++) {
        const struct bb_pool *pool = &conf->pools[p];
        for (size_t k = 0; k < pool->n_members; k++) {
            char name[2 * BB_SHM_NAME_MAX + 2];
            snprintf(name, sizeof name, "%s/%s", pool->name,
                     conf->lanes[pool->members[k].lane].name);
            add_lane(lanes, m->shm, name);
        }
    }
    json_object_object_add(o, "lanes", lanes);
    bb_gov_status(m->gov, o);
    return o;
}

/* The reply to a successful reload is held until the new generation serves alone (old
 * workers stopped accepting), so a client that sees "ok" and connects next reaches the new
 * configuration. */
static struct json_object *reload_reply(struct bb_ctl_client *c, bool settled)
{
    struct json_object *o = reply_ok();
    json_object_object_add(o, "generation", json_object_new_int64(c->wait_gen));
    if (!settled)
        json_object_object_add(
            o, "warning",
            json_object_new_string("older workers had not all stopped accepting yet"));
    return o;
}

static struct json_object *cmd_reload(struct bb_master *m, struct bb_ctl_client *c,
                                      struct json_object *req, uint64_t now)
{
    struct bb_strv errors = {0};
    uint32_t gen = 0;
    struct json_object *o = NULL;
    if (bb_reload(m, now, &errors, &gen) == 0) {
        c->waiting = true;
        c->wait_gen = gen;
        c->wait_until_ms = now + BB_CTL_RELOAD_WAIT_MS;
        if (c->deadline_ms < c->wait_until_ms + 2000)
            c->deadline_ms = c->wait_until_ms + 2000;
    } else {
        o = json_object_new_object();
        json_object_object_add(o, "ok", json_object_new_boolean(0));
        struct json_object *arr = json_object_new_array();
        for (size_t i = 0; i < errors.n; i++)
            json_object_array_add(arr, json_object_new_string(errors.v[i]));
        json_object_object_add(o, "errors", arr);
    }
    bb_strv_free(&errors);
    return o;
}

/* keys.* and spend: governance operations (master/governance.c); the command name is the
 * operation name. */
static struct json_object *cmd_gov(struct bb_master *m, struct bb_ctl_client *c,
                                   struct json_object *req, uint64_t now)
{
    struct json_object *cmd;
    json_object_object_get_ex(req, "cmd", &cmd);
    int op = bb_gov_op_from_name(json_object_get_string(cmd));
    struct json_object *body = NULL;
    int status = op < 0 ? 400 : bb_gov_admin(m->gov, (enum bb_gov_op)op, req, &body);
    if (status < 400) {
        json_object_object_add(body, "ok", json_object_new_boolean(1));
        return body;
    }
    struct json_object *e = NULL, *msg = NULL, *code = NULL;
    if (body && json_object_object_get_ex(body, "error", &e)) {
        json_object_object_get_ex(e, "message", &msg);
        json_object_object_get_ex(e, "code", &code);
    }
    struct json_object *o = reply_error("%s", msg ? json_object_get_string(msg) : "failed");
    if (code)
        json_object_object_add(o, "code", json_object_get(code));
    json_object_object_add(o, "status", json_object_new_int(status));
    json_object_put(body);
    return o;
}

static const ctl_handler handlers[] = {
    [BB_CTL_CMD_STATUS] = cmd_status,   [BB_CTL_CMD_RELOAD] = cmd_reload,
    [BB_CTL_CMD_KEYS_CREATE] = cmd_gov, [BB_CTL_CMD_KEYS_LIST] = cmd_gov,
    [BB_CTL_CMD_KEYS_SHOW] = cmd_gov,   [BB_CTL_CMD_KEYS_UPDATE] = cmd_gov,
    [BB_CTL_CMD_KEYS_REVOKE] = cmd_gov, [BB_CTL_CMD_KEYS_DELETE] = cmd_gov,
    [BB_CTL_CMD_SPEND] = cmd_gov,
};
_Static_assert(sizeof handlers / sizeof handlers[0] == BB_CTL_CMD__COUNT,
               "every BB_CTL_CMD_LIST entry needs a handler");

static struct json_object *dispatch(struct bb_master *m, struct bb_ctl_client *cl, const char *line,
                                    uint64_t now)
{
    struct json_object *req = json_tokener_parse(line);
    if (!req || !json_object_is_type(req, json_type_object)) {
        json_object_put(req);
        return reply_error("request is not a JSON object");
    }
    struct json_object *cmd;
    struct json_object *out;
    if (!json_object_object_get_ex(req, "cmd", &cmd) ||
        !json_object_is_type(cmd, json_type_string)) {
        out = reply_error("missing string member \"cmd\"");
    } else {
        const char *name = json_object_get_string(cmd);
        int c = bb_ctl_cmd_from_name(name);
        if (c < 0) {
            out = reply_error("unknown command '%.100s'", name);
        } else {
            bb_info("admin: %s", name);
            out = handlers[c](m, cl, req, now);
        }
    }
    json_object_put(req);
    return out;
}

/* ---- client I/O ------------------------------------------------------------------------ */

static bool peer_allowed(int fd)
{
    struct ucred uc;
    socklen_t len = sizeof uc;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) < 0)
        return false;
    return uc.uid == 0 || uc.uid == geteuid();
}

static void accept_clients(struct bb_ctl_server *s, uint64_t now)
{
    for (;;) {
        int fd = accept4(s->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                bb_warn("admin socket: accept: %s", strerror(errno));
            return;
        }
        if (!peer_allowed(fd)) {
            bb_warn("admin socket: connection from another user refused");
            close(fd);
            continue;
        }
        struct bb_ctl_client *c = NULL;
        for (int i = 0; i < BB_CTL_MAX_CLIENTS && !c; i++)
            if (s->clients[i].fd < 0)
                c = &s->clients[i];
        if (!c) {
            bb_warn("admin socket: too many clients, connection dropped");
            close(fd);
            continue;
        }
        c->fd = fd;
        c->deadline_ms = now + BB_CTL_CLIENT_TIMEOUT_MS;
        c->writing = false;
        c->waiting = false;
        c->pidx = -1;
        bb_ctl_buf_init(&c->in, BB_CTL_REQ_MAX);
        bb_ctl_buf_init(&c->out, BB_CTL_RESP_MAX);
    }
}

/* Serialise resp (consumed) into the client's output and start writing. -1: client closed. */
static int client_reply(struct bb_ctl_client *c, struct json_object *resp)
{
    struct bb_err err = {{0}};
    size_t len;
    const char *txt = json_object_to_json_string_length(
        resp, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    int rc = bb_ctl_buf_set_line(&c->out, txt, len, &err);
    json_object_put(resp);
    if (rc < 0) {
        bb_error("admin reply: %s", err.msg);
        client_close(c);
        return -1;
    }
    c->writing = true;
    return 0;
}

/* Advance one client as far as it goes without blocking. */
static void client_step(struct bb_ctl_client *c, struct bb_master *m, uint64_t now)
{
    struct bb_err err = {{0}};
    if (c->waiting)
        return;
    if (!c->writing) {
        enum bb_ctl_io st = bb_ctl_buf_read(&c->in, c->fd, &err);
        if (st == BB_CTL_IO_AGAIN)
            return;
        if (st == BB_CTL_IO_ERROR) {
            bb_debug("admin client: %s", err.msg);
            client_close(c);
            return;
        }
        struct json_object *resp = dispatch(m, c, c->in.data, now);
        if (!resp)
            return; /* held: answered from bb_ctl_server_process */
        if (client_reply(c, resp) < 0)
            return;
    }
    enum bb_ctl_io st = bb_ctl_buf_write(&c->out, c->fd, &err);
    if (st == BB_CTL_IO_AGAIN)
        return;
    if (st == BB_CTL_IO_ERROR)
        bb_debug("admin client: %s", err.msg);
    client_close(c);
}

bool bb_ctl_server_busy(const struct bb_ctl_server *s)
{
    for (int i = 0; s && i < BB_CTL_MAX_CLIENTS; i++)
        if (s->clients[i].fd >= 0 && s->clients[i].waiting)
            return true;
    return false;
}

size_t bb_ctl_server_pollfds(struct bb_ctl_server *s, struct pollfd *pfd, size_t max)
{
    size_t n = 0;
    s->pidx = -1;
    if (n < max) {
        pfd[n] = (struct pollfd){.fd = s->fd, .events = POLLIN};
        s->pidx = (int)n++;
    }
    for (int i = 0; i < BB_CTL_MAX_CLIENTS; i++) {
        struct bb_ctl_client *c = &s->clients[i];
        c->pidx = -1;
        if (c->fd < 0 || c->waiting || n >= max)
            continue;
        pfd[n] = (struct pollfd){.fd = c->fd, .events = c->writing ? POLLOUT : POLLIN};
        c->pidx = (int)n++;
    }
    return n;
}

void bb_ctl_server_process(struct bb_ctl_server *s, struct bb_master *m, const struct pollfd *pfd,
                           size_t n, uint64_t now)
{
    for (int i = 0; i < BB_CTL_MAX_CLIENTS; i++) {
        struct bb_ctl_client *c = &s->clients[i];
        if (c->fd < 0)
            continue;
        if (c->waiting) {
            bool settled = bb_supervisor_settled(m, c->wait_gen);
            if (settled || now >= c->wait_until_ms) {
                c->waiting = false;
                if (client_reply(c, reload_reply(c, settled)) == 0)
                    client_step(c, m, now);
            }
        } else if (c->pidx >= 0 && (size_t)c->pidx < n && pfd[c->pidx].revents) {
            client_step(c, m, now);
        }
        if (c->fd >= 0 && now >= c->deadline_ms) {
            bb_warn("admin client timed out after %d ms", BB_CTL_CLIENT_TIMEOUT_MS);
            client_close(c);
        }
    }
    if (s->pidx >= 0 && (size_t)s->pidx < n && (pfd[s->pidx].revents & POLLIN)) {
        accept_clients(s, now);
        /* Most requests are already there: serve them now rather than a tick later. */
        for (int i = 0; i < BB_CTL_MAX_CLIENTS; i++)
            if (s->clients[i].fd >= 0 && s->clients[i].pidx < 0)
                client_step(&s->clients[i], m, now);
    }
}
