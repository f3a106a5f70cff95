/*
 * redis: asynchronous Redis client on libevent bufferevents with hiredis's protocol code (see
 * redis.h). Any process with a libevent loop; single-threaded.
 *
 * Life of a connection: connecting (TCP, then TLS) → handshake (AUTH, SELECT, SCRIPT LOAD,
 * pipelined; every answer must be OK) → ready (user commands accepted) → lost (every pending
 * callback gets NULL, reconnect after the back-off). r->conn_gen changes whenever a
 * connection ends, so code running callbacks can tell its connection is gone.
 */
#include "common/redis.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <openssl/err.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>

#include "common/log.h"
#include "common/shm.h"

#define BACKOFF_MIN_MS 100u
#define BACKOFF_MAX_MS 5000u

enum kind { K_USER, K_HANDSHAKE, K_INTERNAL };

struct rcmd {
    struct rcmd *next;
    bb_redis_cb cb;
    void *arg;
    uint8_t kind;
    bool retried; /* an EVALSHA already resent after NOSCRIPT */
    int script;   /* EVALSHA: the script, else -1 */
    char *cmd;    /* EVALSHA: the formatted command, kept for a NOSCRIPT resend */
    size_t len;
    uint64_t sent_ms;
};

struct script {
    char *body;
    char sha[41];
};

struct bb_redis {
    struct event_base *base;
    struct evdns_base *dns;
    char *host, *user, *password, *name;
    uint16_t port;
    unsigned db;
    SSL_CTX *ssl_ctx;
    uint32_t connect_timeout_ms, stall_ms;
    bb_redis_state_cb on_state;
    void *state_arg;

    struct bufferevent *bev; /* NULL while disconnected */
    redisReader *reader;
    struct event *ev_retry, *ev_connect_timeout, *ev_stall;
    struct rcmd *head, *tail;
    size_t n_pending;
    unsigned hs_left; /* handshake answers still awaited */
    bool ready;
    bool down_logged; /* "unreachable" logged since the last time it was up */
    uint64_t conn_gen;
    uint32_t backoff_ms;
    struct script scripts[BB_REDIS_MAX_SCRIPTS];
    int n_scripts;
};

static void start_connect(struct bb_redis *r);

static uint32_t jitter(uint32_t ms)
{
    uint32_t x = 0;
    if (getrandom(&x, sizeof x, GRND_NONBLOCK) != (ssize_t)sizeof x)
        x = (uint32_t)bb_now_us();
    return ms - ms / 5 + x % (ms / 5 * 2 + 1); /* ±20 % */
}

static void ms_to_tv(uint32_t ms, struct timeval *tv)
{
    tv->tv_sec = ms / 1000;
    tv->tv_usec = (ms % 1000) * 1000;
}

static void push(struct bb_redis *r, struct rcmd *c)
{
    c->next = NULL;
    c->sent_ms = bb_now_ms();
    if (r->tail)
        r->tail->next = c;
    else
        r->head = c;
    r->tail = c;
    r->n_pending++;
}

static struct rcmd *pop(struct bb_redis *r)
{
    struct rcmd *c = r->head;
    if (!c)
        return NULL;
    r->head = c->next;
    if (!r->head)
        r->tail = NULL;
    r->n_pending--;
    return c;
}

static void rcmd_free(struct rcmd *c)
{
    free(c->cmd);
    free(c);
}

/* Write a formatted command and queue its callback. */
static void send_raw(struct bb_redis *r, const char *cmd, size_t len, struct rcmd *c)
{
    bufferevent_write(r->bev, cmd, len);
    push(r, c);
}

static int send_argv(struct bb_redis *r, enum kind kind, bb_redis_cb cb, void *arg, int argc,
                     const char **argv, const size_t *lens)
{
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, argc, argv, lens);
    if (len < 0)
        return -1;
    struct rcmd *c = bb_xcalloc(1, sizeof *c);
    c->cb = cb;
    c->arg = arg;
    c->kind = (uint8_t)kind;
    c->script = -1;
    send_raw(r, cmd, (size_t)len, c);
    redisFreeCommand(cmd);
    return 0;
}

/* The connection is gone: answer everything pending with NULL, reconnect later. */
static void lost(struct bb_redis *r, const char *why)
{
    bool was_ready = r->ready;
    r->ready = false;
    r->conn_gen++;
    if (r->bev) {
        bufferevent_free(r->bev);
        r->bev = NULL;
    }
    evtimer_del(r->ev_connect_timeout);
    evtimer_del(r->ev_stall);
    if (r->reader) {
        redisReaderFree(r->reader);
        r->reader = NULL;
    }
    struct rcmd *list = r->head;
    r->head = r->tail = NULL;
    r->n_pending = 0;
    if (was_ready || !r->down_logged)
        bb_warn("redis %s: %s:%u: %s", r->name, r->host, (unsigned)r->port, why);
    r->down_logged = true;
    if (was_ready && r->on_state)
        r->on_state(r, false, why, r->state_arg);
    while (list) {
        struct rcmd *c = list;
        list = c->next;
        if (c->kind == K_USER && c->cb)
            c->cb(r, NULL, c->arg);
        rcmd_free(c);
    }
    struct timeval tv;
    ms_to_tv(jitter(r->backoff_ms), &tv);
    evtimer_add(r->ev_retry, &tv);
    r->backoff_ms = r->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : r->backoff_ms * 2;
}

static bool is_noscript(const redisReply *rep)
{
    return rep->type == REDIS_REPLY_ERROR && rep->str && !strncmp(rep->str, "NOSCRIPT", 8);
}

static void dispatch(struct bb_redis *r, redisReply *rep)
{
    struct rcmd *c = pop(r);
    if (!c) {
        freeReplyObject(rep);
        lost(r, "an answer nobody asked for (protocol out of step)");
        return;
    }
    switch (c->kind) {
    case K_HANDSHAKE:
        if (rep->type == REDIS_REPLY_ERROR) {
            char why[300];
            snprintf(why, sizeof why, "connection set-up refused: %.200s",
                     rep->str ? rep->str : "error");
            freeReplyObject(rep);
            rcmd_free(c);
            lost(r, why);
            return;
        }
        if (--r->hs_left == 0) {
            r->ready = true;
            r->backoff_ms = BACKOFF_MIN_MS;
            evtimer_del(r->ev_connect_timeout);
            if (r->down_logged)
                bb_notice("redis %s: connected to %s:%u", r->name, r->host, (unsigned)r->port);
            r->down_logged = false;
            if (r->on_state)
                r->on_state(r, true, "connected", r->state_arg);
        }
        break;
    case K_INTERNAL:
        if (rep->type == REDIS_REPLY_ERROR)
            bb_warn("redis %s: %s", r->name, rep->str ? rep->str : "error");
        break;
    default:
        if (c->script >= 0 && !c->retried && is_noscript(rep) && r->ready) {
            /* the server lost its script cache: load it again, then resend as is */
            const char *argv[] = {"SCRIPT", "LOAD", r->scripts[c->script].body};
            size_t lens[] = {6, 4, strlen(r->scripts[c->script].body)};
            send_argv(r, K_INTERNAL, NULL, NULL, 3, argv, lens);
            c->retried = true;
            send_raw(r, c->cmd, c->len, c);
            freeReplyObject(rep);
            return;
        }
        if (c->cb)
            c->cb(r, rep, c->arg);
        break;
    }
    freeReplyObject(rep);
    rcmd_free(c);
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    struct bb_redis *r = arg;
    uint64_t gen = r->conn_gen;
    struct evbuffer *in = bufferevent_get_input(bev);
    struct evbuffer_iovec v[16];
    int n = evbuffer_peek(in, -1, NULL, v, 16);
    size_t fed = 0;
    for (int i = 0; i < n && i < 16; i++) {
        if (redisReaderFeed(r->reader, v[i].iov_base, v[i].iov_len) != REDIS_OK) {
            lost(r, "out of memory reading an answer");
            return;
        }
        fed += v[i].iov_len;
    }
    evbuffer_drain(in, fed);
    for (;;) {
        void *rep = NULL;
        if (redisReaderGetReply(r->reader, &rep) != REDIS_OK) {
            char why[200];
            snprintf(why, sizeof why, "bad answer: %s", r->reader->errstr);
            lost(r, why);
            return;
        }
        if (!rep)
            break;
        dispatch(r, rep);
        if (r->conn_gen != gen)
            return; /* that answer ended the connection */
    }
    if (evbuffer_get_length(in)) /* more than 16 chunks were waiting */
        read_cb(bev, arg);
}

static void handshake(struct bb_redis *r)
{
    r->hs_left = 0;
    if (r->password) {
        const char *argv[] = {"AUTH", r->user ? r->user : r->password, r->password};
        size_t lens[] = {4, strlen(argv[1]), strlen(r->password)};
        send_argv(r, K_HANDSHAKE, NULL, NULL, r->user ? 3 : 2, argv, lens);
        r->hs_left++;
    }
    if (r->db) {
        char db[16];
        snprintf(db, sizeof db, "%u", r->db);
        const char *argv[] = {"SELECT", db};
        size_t lens[] = {6, strlen(db)};
        send_argv(r, K_HANDSHAKE, NULL, NULL, 2, argv, lens);
        r->hs_left++;
    }
    for (int i = 0; i < r->n_scripts; i++) {
        const char *argv[] = {"SCRIPT", "LOAD", r->scripts[i].body};
        size_t lens[] = {6, 4, strlen(r->scripts[i].body)};
        send_argv(r, K_HANDSHAKE, NULL, NULL, 3, argv, lens);
        r->hs_left++;
    }
    const char *argv[] = {"PING"};
    size_t lens[] = {4};
    send_argv(r, K_HANDSHAKE, NULL, NULL, 1, argv, lens);
    r->hs_left++;
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct bb_redis *r = arg;
    if (what & BEV_EVENT_CONNECTED) {
        int fd = (int)bufferevent_getfd(bev), one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
        handshake(r);
        return;
    }
    char why[300];
    if (what & BEV_EVENT_EOF) {
        snprintf(why, sizeof why, "connection closed by the server");
    } else {
        unsigned long e = r->ssl_ctx ? bufferevent_get_openssl_error(bev) : 0;
        int dns = bufferevent_socket_get_dns_error(bev);
        if (dns)
            snprintf(why, sizeof why, "cannot resolve: %s", evutil_gai_strerror(dns));
        else if (e)
            snprintf(why, sizeof why, "TLS: %s", ERR_reason_error_string(e));
        else
            snprintf(why, sizeof why, "%s", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    }
    lost(r, why);
}

static void connect_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct bb_redis *r = arg;
    char why[96];
    snprintf(why, sizeof why, "not ready within %u ms", r->connect_timeout_ms);
    lost(r, why);
}

static void stall_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct bb_redis *r = arg;
    if (r->head && bb_now_ms() - r->head->sent_ms > r->stall_ms) {
        char why[96];
        snprintf(why, sizeof why, "no answer for %u ms", r->stall_ms);
        lost(r, why);
    }
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    start_connect(arg);
}

static void start_connect(struct bb_redis *r)
{
    r->reader = redisReaderCreate();
    if (!r->reader) {
        lost(r, "out of memory");
        return;
    }
    if (r->ssl_ctx) {
        SSL *ssl = SSL_new(r->ssl_ctx);
        if (!ssl) {
            lost(r, "TLS: SSL_new failed");
            return;
        }
        unsigned char bin[16];
        if (inet_pton(AF_INET, r->host, bin) == 1 || inet_pton(AF_INET6, r->host, bin) == 1) {
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), r->host);
        } else {
            SSL_set_tlsext_host_name(ssl, r->host);
            SSL_set1_host(ssl, r->host);
        }
        r->bev = bufferevent_openssl_socket_new(r->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                                BEV_OPT_CLOSE_ON_FREE);
        if (!r->bev)
            SSL_free(ssl);
    } else {
        r->bev = bufferevent_socket_new(r->base, -1, BEV_OPT_CLOSE_ON_FREE);
    }
    if (!r->bev) {
        lost(r, "out of memory or descriptors");
        return;
    }
    bufferevent_setcb(r->bev, read_cb, NULL, event_cb, r);
    bufferevent_enable(r->bev, EV_READ | EV_WRITE);
    struct timeval tv;
    ms_to_tv(r->connect_timeout_ms, &tv);
    evtimer_add(r->ev_connect_timeout, &tv);
    ms_to_tv(r->stall_ms / 4 ? r->stall_ms / 4 : 1, &tv);
    evtimer_add(r->ev_stall, &tv);
    uint64_t gen = r->conn_gen;
    if (bufferevent_socket_connect_hostname(r->bev, r->dns, AF_UNSPEC, r->host, r->port) < 0 &&
        r->conn_gen == gen)
        lost(r, "connect failed");
}

struct bb_redis *bb_redis_new(struct event_base *base, struct evdns_base *dns,
                              const struct bb_redis_opts *o)
{
    struct bb_redis *r = bb_xcalloc(1, sizeof *r);
    r->base = base;
    r->dns = dns;
    r->host = bb_xstrdup(o->host);
    r->port = o->port;
    r->db = o->db;
    r->user = o->user ? bb_xstrdup(o->user) : NULL;
    r->password = o->password ? bb_xstrdup(o->password) : NULL;
    r->name = bb_xstrdup(o->name ? o->name : "client");
    r->ssl_ctx = o->ssl_ctx;
    r->connect_timeout_ms = o->connect_timeout_ms ? o->connect_timeout_ms : 1000;
    r->stall_ms = o->stall_ms ? o->stall_ms : 2000;
    r->on_state = o->on_state;
    r->state_arg = o->state_arg;
    r->backoff_ms = BACKOFF_MIN_MS;
    r->ev_retry = evtimer_new(base, retry_cb, r);
    r->ev_connect_timeout = evtimer_new(base, connect_timeout_cb, r);
    r->ev_stall = event_new(base, -1, EV_PERSIST, stall_cb, r);
    if (!r->ev_retry || !r->ev_connect_timeout || !r->ev_stall) {
        bb_redis_free(r);
        return NULL;
    }
    /* first connection from the loop, so scripts registered right after are loaded */
    struct timeval now = {0, 0};
    evtimer_add(r->ev_retry, &now);
    return r;
}

void bb_redis_free(struct bb_redis *r)
{
    if (!r)
        return;
    r->on_state = NULL;
    if (r->bev || r->head) {
        r->down_logged = true; /* closing on purpose: not worth a warning */
        lost(r, "closed");
    }
    if (r->reader)
        redisReaderFree(r->reader);
    struct event *evs[] = {r->ev_retry, r->ev_connect_timeout, r->ev_stall};
    for (size_t i = 0; i < 3; i++)
        if (evs[i])
            event_free(evs[i]);
    for (int i = 0; i < r->n_scripts; i++)
        free(r->scripts[i].body);
    if (r->password) {
        explicit_bzero(r->password, strlen(r->password));
        free(r->password);
    }
    free(r->host);
    free(r->user);
    free(r->name);
    free(r);
}

int bb_redis_script(struct bb_redis *r, const char *body)
{
    if (r->n_scripts >= BB_REDIS_MAX_SCRIPTS)
        return -1;
    struct script *s = &r->scripts[r->n_scripts];
    s->body = bb_xstrdup(body);
    unsigned char md[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)body, strlen(body), md);
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
        snprintf(s->sha + 2 * i, 3, "%02x", md[i]);
    return r->n_scripts++;
}

bool bb_redis_ready(const struct bb_redis *r)
{
    return r && r->ready;
}

size_t bb_redis_pending(const struct bb_redis *r)
{
    return r ? r->n_pending : 0;
}

int bb_redis_fd(const struct bb_redis *r)
{
    return r && r->bev ? (int)bufferevent_getfd(r->bev) : -1;
}

int bb_redis_command(struct bb_redis *r, bb_redis_cb cb, void *arg, int argc, const char **argv,
                     const size_t *argvlen)
{
    if (!r || !r->ready)
        return -1;
    return send_argv(r, K_USER, cb, arg, argc, argv, argvlen);
}

#define EVAL_ARGS_MAX 64

int bb_redis_eval(struct bb_redis *r, int script, bb_redis_cb cb, void *arg, int argc,
                  const char **argv, const size_t *argvlen)
{
    if (!r || !r->ready || script < 0 || script >= r->n_scripts || argc > EVAL_ARGS_MAX)
        return -1;
    const char *av[EVAL_ARGS_MAX + 3] = {"EVALSHA", r->scripts[script].sha, "0"};
    size_t lv[EVAL_ARGS_MAX + 3] = {7, 40, 1};
    for (int i = 0; i < argc; i++) {
        av[3 + i] = argv[i];
        lv[3 + i] = argvlen ? argvlen[i] : strlen(argv[i]);
    }
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, argc + 3, av, lv);
    if (len < 0)
        return -1;
    struct rcmd *c = bb_xcalloc(1, sizeof *c);
    c->cb = cb;
    c->arg = arg;
    c->kind = K_USER;
    c->script = script;
    c->cmd = bb_xmalloc((size_t)len);
    memcpy(c->cmd, cmd, (size_t)len);
    c->len = (size_t)len;
    redisFreeCommand(cmd);
    send_raw(r, c->cmd, c->len, c);
    return 0;
}

int bb_redis_wait(struct bb_redis *r, uint32_t ms)
{
    uint64_t until = bb_now_ms() + ms;
    while (r && r->n_pending && bb_now_ms() < until) {
        struct timeval tv = {0, 5000};
        event_base_loopexit(r->base, &tv);
        event_base_loop(r->base, EVLOOP_ONCE);
    }
    return r && r->n_pending ? -1 : 0;
}

SSL_CTX *bb_redis_tls_ctx(const struct bb_cluster_conf *c, struct bb_err *err)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        bb_err_set(err, "cluster.tls: SSL_CTX_new failed");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    const char *what = NULL;
    if (c->tls_ca_file ? SSL_CTX_load_verify_locations(ctx, c->tls_ca_file, NULL) != 1
                       : SSL_CTX_set_default_verify_paths(ctx) != 1)
        what = c->tls_ca_file ? "cluster.tls.ca_file" : "the system trust store";
    else if (c->tls_cert_file && SSL_CTX_use_certificate_chain_file(ctx, c->tls_cert_file) != 1)
        what = "cluster.tls.cert_file";
    else if (c->tls_key_file &&
             (SSL_CTX_use_PrivateKey_file(ctx, c->tls_key_file, SSL_FILETYPE_PEM) != 1 ||
              SSL_CTX_check_private_key(ctx) != 1))
        what = "cluster.tls.key_file";
    if (what) {
        unsigned long e = ERR_get_error();
        bb_err_set(err, "%s: %s", what, e ? ERR_reason_error_string(e) : "cannot be loaded");
        ERR_clear_error();
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

long long bb_redis_int(const struct redisReply *r, long long def)
{
    if (!r)
        return def;
    if (r->type == REDIS_REPLY_INTEGER)
        return r->integer;
    if (r->type == REDIS_REPLY_STRING && r->str && r->len) {
        char *end;
        errno = 0;
        long long v = strtoll(r->str, &end, 10);
        if (!*end && !errno)
            return v;
    }
    return def;
}
