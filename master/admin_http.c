/*
 * admin_http: HTTP/1.1 admin API in the master (see admin_http.h for the routes). Master
 * process only, driven by the supervisor's poll loop: the listener and every client are
 * non-blocking, a client has BB_ADMIN_HTTP_IDLE_MS to send its first byte and
 * BB_ADMIN_HTTP_TIMEOUT_MS from accept to being answered, heads and bodies are bounded; when
 * every slot is taken a newcomer replaces the oldest client still sending its request.
 * Requests are parsed with common/http_parse and handed to bb_gov_admin(); one request per
 * connection.
 */
#include "master/admin_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/crypto.h>

#include "common/http_parse.h"
#include "common/keys_shm.h"
#include "common/log.h"
#include "common/metrics_text.h"
#include "master/status.h"

#define IN_CAP (BB_ADMIN_HTTP_HEAD_MAX + BB_ADMIN_HTTP_BODY_MAX)

struct client {
    int fd; /* -1 = free */
    uint64_t accepted_ms;
    uint64_t deadline_ms;
    char *in; /* IN_CAP bytes, allocated while the client lives */
    size_t in_len;
    char *out;
    size_t out_len, out_off;
    bool writing;
    bool metrics_only; /* accepted on observability.metrics_listen: GET /metrics only */
    int pidx;
};

struct bb_admin_http {
    int fd; /* admin.listen, -1 when unset */
    int pidx;
    char *addr; /* as configured, for logs and to detect a change on reload */
    int mfd;    /* observability.metrics_listen, -1 when unset */
    int mpidx;
    char *maddr;
    const struct bb_conf *conf; /* the current generation's (names for /metrics, /status) */
    struct bb_shm *shm;
    bool has_token; /* admin.token_env set: /metrics needs it too */
    uint8_t token_sha[32];
    struct client clients[BB_ADMIN_HTTP_MAX_CLIENTS];
    uint64_t warned_ms; /* last "slots full / timed out" warning (one per 10 s) */
    uint32_t unwarned;  /* such events since that warning */
};

/* A warning about hostile or broken clients at most every 10 s, with the count in between:
 * a flood of them must not flood the log. */
static void warn_limited(struct bb_admin_http *h, uint64_t now, const char *what)
{
    h->unwarned++;
    if (h->warned_ms && now < h->warned_ms + 10000)
        return;
    bb_warn("admin API: %s (%u such event%s in the last 10 s)", what, h->unwarned,
            h->unwarned == 1 ? "" : "s");
    h->warned_ms = now;
    h->unwarned = 0;
}

/* ---- listener ----------------------------------------------------------------------------- */

static bool loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    }
    return false;
}

static int bind_listener(const char *what, const char *addr, const char *host, uint16_t hport,
                         struct bb_err *err)
{
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)hport);
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai != 0)
        return bb_err_set(err, "%s %s: %s", what, addr, gai_strerror(gai));
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1, e = 0;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 64) < 0) {
        e = errno;
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    if (fd >= 0 && !loopback(res->ai_addr))
        bb_warn("%s %s is not a loopback address: it has no TLS, keep it behind a firewall", what,
                addr);
    freeaddrinfo(res);
    if (fd < 0)
        return bb_err_set(err, "%s %s: %s", what, addr, strerror(e));
    return fd;
}

static void set_token(struct bb_admin_http *h, const struct bb_conf *conf)
{
    const char *tok = conf->admin_token ? conf->admin_token : "";
    bb_keys_hash_secret(tok, strlen(tok), h->token_sha);
    h->has_token = conf->admin_token != NULL;
    h->conf = conf;
}

int bb_admin_http_check(const struct bb_conf *conf, struct bb_err *err)
{
    if (!conf->admin_listen)
        return 0;
    const char *env = conf->admin_token_env ? conf->admin_token_env : "?";
    if (!conf->admin_token)
        return bb_err_set(err,
                          "%s: admin.token_env: environment variable %s is not set (the "
                          "HTTP admin API needs its bearer token)",
                          conf->files[0], env);
    if (strlen(conf->admin_token) < 16)
        return bb_err_set(err,
                          "%s: admin.token_env: the token in %s is too short (at least 16 "
                          "characters)",
                          conf->files[0], env);
    return 0;
}

static bool same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && !strcmp(a, b));
}

/* The listener for want when it differs from have: 0 = unchanged (*fd untouched), 1 = *fd is
 * the new socket (-1 when want is NULL: close), -1 with err when it cannot be bound. */
static int bind_changed(const char *have, const char *want, const char *host, uint16_t port,
                        const char *what, int *fd, struct bb_err *err)
{
    if (same(have, want))
        return 0;
    *fd = want ? bind_listener(what, want, host, port, err) : -1;
    return want && *fd < 0 ? -1 : 1;
}

static void commit_listener(int *fd, char **addr, int nfd, const char *want, const char *what)
{
    if (*fd >= 0)
        close(*fd);
    free(*addr);
    *fd = nfd;
    *addr = want ? bb_xstrdup(want) : NULL;
    if (want)
        bb_notice("%s on http://%s/", what, want);
}

int bb_admin_http_reconfigure(struct bb_admin_http **hp, const struct bb_conf *conf,
                              struct bb_shm *shm, struct bb_err *err)
{
    if (bb_admin_http_check(conf, err) < 0)
        return -1;
    struct bb_admin_http *h = *hp;
    const char *ml = conf->metrics ? conf->metrics_listen : NULL;
    if (!h && !conf->admin_listen && !ml)
        return 0;
    int afd = -1, mfd = -1;
    /* bind every new socket before closing any old one: a failure changes nothing */
    int ra = bind_changed(h ? h->addr : NULL, conf->admin_listen, conf->admin_listen_host,
                          conf->admin_listen_port, "admin.listen", &afd, err);
    if (ra < 0)
        return -1;
    int rm = bind_changed(h ? h->maddr : NULL, ml, conf->metrics_listen_host,
                          conf->metrics_listen_port, "observability.metrics_listen", &mfd, err);
    if (rm < 0) {
        if (afd >= 0)
            close(afd);
        return -1;
    }
    if (!h) {
        h = bb_xcalloc(1, sizeof *h);
        h->fd = h->mfd = h->pidx = h->mpidx = -1;
        for (int i = 0; i < BB_ADMIN_HTTP_MAX_CLIENTS; i++)
            h->clients[i].fd = -1;
    }
    if (ra)
        commit_listener(&h->fd, &h->addr, afd, conf->admin_listen, "admin API");
    if (rm)
        commit_listener(&h->mfd, &h->maddr, mfd, ml, "metrics");
    set_token(h, conf);
    h->shm = shm;
    if (h->fd < 0 && h->mfd < 0) {
        bb_admin_http_free(h);
        h = NULL;
        bb_notice("admin API closed");
    }
    *hp = h;
    return 0;
}

int bb_admin_http_open(const struct bb_conf *conf, struct bb_shm *shm, struct bb_admin_http **out,
                       struct bb_err *err)
{
    *out = NULL;
    return bb_admin_http_reconfigure(out, conf, shm, err);
}

static void client_close(struct client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->in);
    free(c->out);
    c->in = c->out = NULL;
    c->in_len = c->out_len = c->out_off = 0;
    c->writing = false;
}

void bb_admin_http_free(struct bb_admin_http *h)
{
    if (!h)
        return;
    for (int i = 0; i < BB_ADMIN_HTTP_MAX_CLIENTS; i++)
        client_close(&h->clients[i]);
    if (h->fd >= 0)
        close(h->fd);
    if (h->mfd >= 0)
        close(h->mfd);
    free(h->addr);
    free(h->maddr);
    explicit_bzero(h->token_sha, sizeof h->token_sha);
    free(h);
}

void bb_admin_http_child_close(struct bb_admin_http *h)
{
    if (!h)
        return;
    for (int i = 0; i < BB_ADMIN_HTTP_MAX_CLIENTS; i++)
        if (h->clients[i].fd >= 0)
            close(h->clients[i].fd);
    if (h->fd >= 0)
        close(h->fd);
    if (h->mfd >= 0)
        close(h->mfd);
}

/* ---- responses ---------------------------------------------------------------------------- */

static const char *reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 431:
        return "Request Header Fields Too Large";
    case 503:
        return "Service Unavailable";
    default:
        return status >= 500 ? "Internal Server Error" : "Error";
    }
}

/* Queue the response (body consumed) and start writing. */
static void respond(struct client *c, int status, struct json_object *body, const char *extra)
{
    size_t blen;
    const char *btxt = json_object_to_json_string_length(
        body, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &blen);
    char head[512];
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\nCache-Control: no-store\r\nConnection: close\r\n"
                      "%s\r\n",
                      status, reason(status), blen + 1, extra ? extra : "");
    free(c->out);
    c->out = bb_xmalloc((size_t)hl + blen + 1);
    memcpy(c->out, head, (size_t)hl);
    memcpy(c->out + hl, btxt, blen);
    c->out[(size_t)hl + blen] = '\n';
    c->out_len = (size_t)hl + blen + 1;
    c->out_off = 0;
    c->writing = true;
    json_object_put(body);
}

/* Queue a non-JSON response (the status page, the metrics exposition). */
static void respond_raw(struct client *c, int status, const char *ctype, const char *body,
                        size_t blen)
{
    char head[512];
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                      "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
                      status, reason(status), ctype, blen);
    free(c->out);
    c->out = bb_xmalloc((size_t)hl + blen);
    memcpy(c->out, head, (size_t)hl);
    memcpy(c->out + hl, body, blen);
    c->out_len = (size_t)hl + blen;
    c->out_off = 0;
    c->writing = true;
}

static void respond_error(struct client *c, int status, const char *code, const char *msg,
                          const char *extra)
{
    struct json_object *o = json_object_new_object(), *e = json_object_new_object();
    json_object_object_add(e, "code", json_object_new_string(code));
    json_object_object_add(e, "message", json_object_new_string(msg));
    json_object_object_add(o, "error", e);
    respond(c, status, o, extra);
}

/* ---- requests ----------------------------------------------------------------------------- */

static bool authorized(const struct bb_admin_http *h, const struct bb_http_head *head)
{
    const struct bb_http_header *a = bb_http_find(head, "authorization");
    if (!a || a->value_len < 7 || !bb_http_ieq(a->value, 6, "bearer") || a->value[6] != ' ')
        return false;
    const char *tok = a->value + 7;
    size_t n = a->value_len - 7;
    while (n && *tok == ' ') {
        tok++;
        n--;
    }
    uint8_t sha[32];
    bb_keys_hash_secret(tok, n, sha);
    return CRYPTO_memcmp(sha, h->token_sha, sizeof sha) == 0;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* Percent-decode s[0..n) ('+' is a space in a query); NULL when malformed. */
static char *pct_decode(const char *s, size_t n, bool query)
{
    char *out = bb_xmalloc(n + 1), *o = out;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            int hi = i + 2 < n ? hexval(s[i + 1]) : -1;
            int lo = i + 2 < n ? hexval(s[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) { /* no NUL bytes */
                free(out);
                return NULL;
            }
            *o++ = (char)(hi * 16 + lo);
            i += 2;
        } else {
            *o++ = query && s[i] == '+' ? ' ' : s[i];
        }
    }
    *o = '\0';
    return out;
}

/* Query string → members of args (values as strings). -1 when malformed. */
static int query_args(const char *q, size_t n, struct json_object *args)
{
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && q[j] != '&')
            j++;
        if (j > i) {
            const char *eq = memchr(q + i, '=', j - i);
            size_t kl = eq ? (size_t)(eq - (q + i)) : j - i;
            char *k = pct_decode(q + i, kl, true);
            char *v = eq ? pct_decode(eq + 1, (size_t)(q + j - eq - 1), true) : bb_xstrdup("");
            if (!k || !v) {
                free(k);
                free(v);
                return -1;
            }
            if (*v)
                json_object_object_add(args, k, json_object_new_string(v));
            free(k);
            free(v);
        }
        i = j + 1;
    }
    return 0;
}

static bool method_is(const struct bb_http_head *h, const char *m)
{
    return h->method_len == strlen(m) && !memcmp(h->method, m, h->method_len);
}

static bool target_is(const struct bb_http_head *head, const char *path)
{
    size_t n = strlen(path);
    return head->target_len >= n && !memcmp(head->target, path, n) &&
           (head->target_len == n || head->target[n] == '?');
}

static void metrics(struct bb_admin_http *h, struct client *c)
{
    size_t len = 0;
    char *text = h->shm ? bb_mx_render(h->conf, h->shm, &len) : NULL;
    if (!text) {
        respond_error(c, 503, "unavailable", "metrics are not available", NULL);
        return;
    }
    respond_raw(c, 200, BB_MX_CONTENT_TYPE, text, len);
    free(text);
}

/* The routes outside /admin/: GET /metrics (metrics_listen; the admin token when one is set),
 * GET /status (the page itself holds no data: no token), GET /admin/status. true = handled. */
static bool handle_obs(struct bb_admin_http *h, struct client *c, const struct bb_http_head *head)
{
    bool get = method_is(head, "GET");
    if (c->metrics_only || (get && target_is(head, "/metrics"))) {
        if (!get || !target_is(head, "/metrics"))
            respond_error(c, 404, "not_found", "only GET /metrics is served here", NULL);
        else if (h->has_token && !authorized(h, head))
            respond_error(c, 401, "unauthorized", "missing or invalid bearer token",
                          "WWW-Authenticate: Bearer realm=\"busbar-metrics\"\r\n");
        else
            metrics(h, c);
        return true;
    }
    if (get && target_is(head, "/status")) {
        size_t len;
        const char *html = bb_status_html(&len);
        respond_raw(c, 200, "text/html; charset=utf-8", html, len);
        return true;
    }
    if (get && target_is(head, "/admin/status") && authorized(h, head)) {
        if (h->shm)
            respond(c, 200, bb_status_json(h->conf, h->shm), NULL);
        else
            respond_error(c, 503, "unavailable", "status is not available", NULL);
        return true;
    }
    return false;
}

static void handle(struct bb_admin_http *h, struct client *c, struct bb_gov *gov,
                   const struct bb_http_head *head, const char *body, size_t body_len)
{
    if (handle_obs(h, c, head))
        return;
    if (!authorized(h, head)) {
        respond_error(c, 401, "unauthorized", "missing or invalid bearer token",
                      "WWW-Authenticate: Bearer realm=\"busbar-admin\"\r\n");
        return;
    }
    const char *t = head->target;
    size_t tl = head->target_len;
    const char *qm = memchr(t, '?', tl);
    size_t pl = qm ? (size_t)(qm - t) : tl;
    char *path = pct_decode(t, pl, false);
    if (!path) {
        respond_error(c, 400, "invalid_request", "malformed path", NULL);
        return;
    }
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        path[--n] = '\0';
    int op = -1;
    const char *allow = NULL;
    char id[80] = "";
    const char *p = NULL;
    if (!strcmp(path, "/admin/keys")) {
        allow = "GET, POST";
        op = method_is(head, "GET")    ? BB_GOV_KEYS_LIST
             : method_is(head, "POST") ? BB_GOV_KEYS_CREATE
                                       : -1;
    } else if (!strcmp(path, "/admin/spend")) {
        allow = "GET";
        op = method_is(head, "GET") ? BB_GOV_SPEND : -1;
    } else if (!strncmp(path, "/admin/keys/", 12) && (p = path + 12) && *p) {
        const char *slash = strchr(p, '/');
        size_t il = slash ? (size_t)(slash - p) : strlen(p);
        if (il < sizeof id && (!slash || !strcmp(slash, "/revoke"))) {
            memcpy(id, p, il);
            id[il] = '\0';
            if (slash) {
                allow = "POST";
                op = method_is(head, "POST") ? BB_GOV_KEYS_REVOKE : -1;
            } else {
                allow = "GET, PATCH, DELETE";
                op = method_is(head, "GET")      ? BB_GOV_KEYS_SHOW
                     : method_is(head, "PATCH")  ? BB_GOV_KEYS_UPDATE
                     : method_is(head, "DELETE") ? BB_GOV_KEYS_DELETE
                                                 : -1;
            }
        }
    }
    free(path);
    if (!allow) {
        respond_error(c, 404, "not_found", "no such admin endpoint", NULL);
        return;
    }
    if (op < 0) {
        char extra[64];
        snprintf(extra, sizeof extra, "Allow: %s\r\n", allow);
        respond_error(c, 405, "method_not_allowed", "method not allowed here", extra);
        return;
    }
    struct json_object *args = NULL;
    if (op == BB_GOV_KEYS_CREATE || op == BB_GOV_KEYS_UPDATE) {
        enum json_tokener_error jerr;
        args = body_len ? json_tokener_parse_verbose(body, &jerr) : NULL;
        if (!args || !json_object_is_type(args, json_type_object)) {
            json_object_put(args);
            respond_error(c, 400, "invalid_request", "the body must be a JSON object", NULL);
            return;
        }
        if (json_object_object_get_ex(args, "id", NULL) ||
            json_object_object_get_ex(args, "cmd", NULL)) {
            json_object_put(args);
            respond_error(c, 400, "invalid_request", "id and cmd are not body fields", NULL);
            return;
        }
    } else {
        args = json_object_new_object();
    }
    if (op == BB_GOV_SPEND && qm && query_args(qm + 1, tl - pl - 1, args) < 0) {
        json_object_put(args);
        respond_error(c, 400, "invalid_request", "malformed query string", NULL);
        return;
    }
    if (id[0])
        json_object_object_add(args, "id", json_object_new_string(id));
    struct json_object *reply = NULL;
    int status = bb_gov_admin(gov, (enum bb_gov_op)op, args, &reply);
    json_object_put(args);
    bb_info("admin API: %.*s %.*s -> %d", (int)head->method_len, head->method, (int)pl, t, status);
    respond(c, status, reply, NULL);
}

/* Read what arrived; once head and body are complete, handle the request. */
static void client_read(struct bb_admin_http *h, struct client *c, struct bb_gov *gov)
{
    for (;;) {
        if (c->in_len >= IN_CAP) {
            respond_error(c, 413, "too_large", "request too large", NULL);
            return;
        }
        ssize_t r = read(c->fd, c->in + c->in_len, IN_CAP - c->in_len);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            client_close(c);
            return;
        }
        if (r == 0) {
            client_close(c); /* gone before sending a whole request */
            return;
        }
        if (c->in_len == 0) /* it speaks: the whole-request deadline applies */
            c->deadline_ms = c->accepted_ms + BB_ADMIN_HTTP_TIMEOUT_MS;
        c->in_len += (size_t)r;
    }
    BB_HTTP_HEAD(head);
    int st = 400;
    int hl = bb_http_parse_request(c->in, c->in_len, &head, &st);
    if (hl == 0) {
        if (c->in_len >= BB_ADMIN_HTTP_HEAD_MAX)
            respond_error(c, 431, "too_large", "request head too large", NULL);
        return;
    }
    if (hl < 0) {
        respond_error(c, st, "invalid_request", "malformed HTTP request", NULL);
        return;
    }
    if (head.chunked) {
        respond_error(c, 411, "invalid_request", "send the body with a Content-Length", NULL);
        return;
    }
    size_t cl = head.content_length > 0 ? (size_t)head.content_length : 0;
    if (cl > BB_ADMIN_HTTP_BODY_MAX) {
        respond_error(c, 413, "too_large", "request body too large", NULL);
        return;
    }
    if (c->in_len < (size_t)hl + cl)
        return; /* body still coming */
    /* NUL-terminate the body for the JSON parser (IN_CAP leaves no room only when full). */
    char *body = bb_xstrndup(c->in + hl, cl);
    handle(h, c, gov, &head, body, cl);
    free(body);
}

static void client_write(struct client *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            break;
        }
        c->out_off += (size_t)n;
    }
    client_close(c);
}

static void accept_clients(struct bb_admin_http *h, int lfd, uint64_t now)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                bb_warn("admin API: accept: %s", strerror(errno));
            return;
        }
        struct client *c = NULL, *oldest = NULL;
        for (int i = 0; i < BB_ADMIN_HTTP_MAX_CLIENTS && !c; i++) {
            struct client *k = &h->clients[i];
            if (k->fd < 0)
                c = k;
            else if (!k->writing && (!oldest || (k->in_len == 0 && oldest->in_len > 0) ||
                                     ((k->in_len == 0) == (oldest->in_len == 0) &&
                                      k->accepted_ms < oldest->accepted_ms)))
                oldest = k;
        }
        if (!c && oldest) {
            /* Full: the newcomer takes the slot of the oldest client still sending its
             * request (one that sent nothing first), so idle connections cannot lock the
             * API out. */
            warn_limited(h, now, "all client slots busy: closed the oldest unfinished client");
            client_close(oldest);
            c = oldest;
        }
        if (!c) {
            warn_limited(h, now, "all client slots busy answering: connection dropped");
            close(fd);
            continue;
        }
        c->fd = fd;
        c->accepted_ms = now;
        c->deadline_ms = now + BB_ADMIN_HTTP_IDLE_MS; /* until its first byte */
        c->in = bb_xmalloc(IN_CAP);
        c->in_len = 0;
        c->writing = false;
        c->metrics_only = lfd == h->mfd;
        c->pidx = -1;
    }
}

size_t bb_admin_http_pollfds(struct bb_admin_http *h, struct pollfd *pfd, size_t max)
{
    if (!h)
        return 0;
    size_t n = 0;
    h->pidx = h->mpidx = -1;
    if (h->fd >= 0 && n < max) {
        pfd[n] = (struct pollfd){.fd = h->fd, .events = POLLIN};
        h->pidx = (int)n++;
    }
    if (h->mfd >= 0 && n < max) {
        pfd[n] = (struct pollfd){.fd = h->mfd, .events = POLLIN};
        h->mpidx = (int)n++;
    }
    for (int i = 0; i < BB_ADMIN_HTTP_MAX_CLIENTS; i++) {
        struct client *c = &h->clients[i];
        c->pidx = -1;
        if (c->fd < 0 || n >= max)
            continue;
        pfd[n] = (struct pollfd){.fd = c->fd, .events = c->writing ? POLLOUT : POLLIN};
        c->pidx = (int)n++;
    }
    return n;
}

static void client_step(struct bb_admin_http *h, struct client *c, struct bb_gov *gov)
{
    if (!c->writing)
        client_read(h, c, gov);
    if (c->fd >= 0 && c->writing)
        client_write(c);
}

void bb_admin_http_process(struct bb_admin_http *h, struct bb_gov *gov, const struct pollfd *pfd,
                           size_t n, uint64_t now_ms)
{
    if (!h)
        return;
    for (int i = 0; i < BB_ADMIN_HTTP_MAX_CLIENTS; i++) {
        struct client *c = &h->clients[i];
        if (c->fd < 0)
            continue;
        if (c->pidx >= 0 && (size_t)c->pidx < n && pfd[c->pidx].revents)
            client_step(h, c, gov);
        if (c->fd >= 0 && now_ms >= c->deadline_ms) {
            if (c->in_len)
                warn_limited(h, now_ms, "a client did not send its request in time");
            client_close(c); /* one that never spoke is dropped quietly */
        }
    }
    bool a = h->pidx >= 0 && (size_t)h->pidx < n && (pfd[h->pidx].revents & POLLIN);
    bool mt = h->mpidx >= 0 && (size_t)h->mpidx < n && (pfd[h->mpidx].revents & POLLIN);
    if (a)
        accept_clients(h, h->fd, now_ms);
    if (mt)
        accept_clients(h, h->mfd, now_ms);
    if (a || mt) {
        for (int i = 0; i < BB_ADMIN_HTTP_MAX_CLIENTS; i++)
            if (h->clients[i].fd >= 0 && h->clients[i].pidx < 0)
                client_step(h, &h->clients[i], gov);
    }
}
