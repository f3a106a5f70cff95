/*
 * upstream: connections from a worker to providers (and to routing-policy webhooks, which
 * use the same client). Worker process, single-threaded.
 *
 * Each provider (and each pool's policy webhook) gets a keep-alive pool (bb_uphost). A new
 * connection first resolves its host (evdns, asynchronous) and checks every address against
 * the SSRF guard (common/ssrf.h) before it connects to the checked address, so a name that
 * resolves to a metadata address is refused (BB_UPFAIL_DENIED) instead of reached; IP literals
 * are checked the same way. A connection is in exactly one state:
 * CONNECTING (request already queued in the output buffer), HEAD (waiting for the response
 * head), BODY (decoding the body and handing it to the caller), IDLE (parked in its host's
 * pool, watched for the server closing it). One event timer per connection carries whichever
 * deadline the state has. Callbacks never see a freed connection: the connection is detached
 * before on_end/on_error run, and on_head/on_body cancel by returning -1.
 */
#include "worker/upstream.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "common/log.h"
#include "common/ssrf.h"
#include "worker/http_server.h"
#include "worker/sockread.h"
#include "worker/worker.h"

#define UP_IDLE_MS 20000 /* close pooled connections before providers usually do */
#define UP_HEAD_MAX (64u << 10)
#define UP_INTERIM_MAX 16 /* 1xx answers before the final one (100 Continue, 103 Early Hints) */

enum up_state { UP_CONNECTING, UP_HEAD, UP_BODY, UP_IDLE };
enum up_body { UPB_NONE, UPB_LENGTH, UPB_CHUNKED, UPB_CLOSE };

struct bb_uphost {
    const char *name; /* provider, or pool of a policy webhook (for log lines) */
    const struct bb_url *url;
    struct bb_upconn *idle;
    uint32_t n_idle;
};

/* A name being resolved for a connection. Outlives it: evdns calls back even after a cancel. */
struct up_resolve {
    struct bb_upconn *u; /* NULL once the connection is gone */
    struct evdns_getaddrinfo_request *q;
};

struct bb_upconn {
    uint32_t magic;
    struct bb_worker *w;
    struct bb_uphost *host;
    struct bb_upconn *next_idle;
    struct bufferevent *bev;
    struct event *timer;
    enum up_state state;
    enum up_body body;
    uint64_t remaining;
    struct bb_chunked chunked;
    bool keep_alive, bytes_seen, paused;
    struct bb_http_scan scan;   /* the end of the response head being looked for */
    uint32_t n_interim;         /* 1xx answers skipped for this request */
    bool in_cb, cancelled;      /* a cancel inside on_head/on_body is carried out on return */
    struct up_resolve *resolve; /* the name lookup in flight, NULL when none */
    bool dialing;               /* inside up_dial: failures are reported from the timer */
    int dial_fail;              /* such a failure (enum bb_upfail), -1 none */
    struct bb_upstream_deadlines dl;
    const struct bb_upstream_cbs *cbs;
    void *arg;
};

static const char *const upfail_names[] = {"connect error",
                                           "connect timeout",
                                           "connection reset",
                                           "response header timeout",
                                           "stream idle timeout",
                                           "malformed response",
                                           "address denied by the SSRF guard"};

const char *bb_upfail_name(enum bb_upfail why)
{
    return upfail_names[why];
}

static void up_read_cb(struct bufferevent *bev, void *arg);
static void up_event_cb(struct bufferevent *bev, short what, void *arg);
static void up_timer_cb(evutil_socket_t fd, short what, void *arg);

static struct bb_upconn *up_check(void *arg)
{
    struct bb_upconn *u = arg;
    if (u->magic != BB_MAGIC_UPCONN) {
        bb_crit("upstream: bad connection magic %#x", u->magic);
        abort();
    }
    return u;
}

static void up_timer(struct bb_upconn *u, uint32_t ms)
{
    if (!ms) {
        evtimer_del(u->timer);
        return;
    }
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(u->timer, &tv);
}

static void up_free(struct bb_upconn *u)
{
    if (u->state == UP_IDLE) {
        struct bb_upconn **pp = &u->host->idle;
        while (*pp && *pp != u)
            pp = &(*pp)->next_idle;
        if (*pp) {
            *pp = u->next_idle;
            u->host->n_idle--;
        }
    }
    if (u->resolve) {
        u->resolve->u = NULL;
        evdns_getaddrinfo_cancel(u->resolve->q); /* its callback frees it */
        u->resolve = NULL;
    }
    event_free(u->timer);
    bufferevent_free(u->bev);
    u->magic = 0;
    free(u);
}

int bb_upstream_init(struct bb_worker *w)
{
    const struct bb_conf *conf = w->conf;
    size_t n = conf->n_providers + conf->n_pools;
    w->uphosts = calloc(n ? n : 1, sizeof *w->uphosts);
    if (!w->uphosts)
        return -1;
    for (size_t i = 0; i < conf->n_providers; i++) {
        w->uphosts[i].name = conf->providers[i].name;
        w->uphosts[i].url = &conf->providers[i].url;
    }
    for (size_t i = 0; i < conf->n_pools; i++) {
        w->uphosts[conf->n_providers + i].name = conf->pools[i].name;
        w->uphosts[conf->n_providers + i].url = &conf->pools[i].policy.url_parsed;
    }
    /* BUSBAR_RESOLV_CONF: a resolv.conf of one's own ("nameserver 127.0.0.1:5353" may carry a
     * port): tests point it at a DNS stub they control; see docs/routing.md */
    const char *rc = getenv("BUSBAR_RESOLV_CONF");
    if (rc && *rc) {
        w->dns = evdns_base_new(w->base, 0);
        if (w->dns && evdns_base_resolv_conf_parse(w->dns, DNS_OPTIONS_ALL, rc) != 0)
            bb_warn("upstream: BUSBAR_RESOLV_CONF %s: cannot be used", rc);
        return w->dns ? 0 : -1;
    }
    w->dns = evdns_base_new(w->base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
    if (!w->dns) {
        /* No resolv.conf: IP-literal and /etc/hosts upstreams still work. */
        w->dns = evdns_base_new(w->base, 0);
        if (w->dns)
            evdns_base_load_hosts(w->dns, NULL);
    }
    return w->dns ? 0 : -1;
}

void bb_upstream_shutdown(struct bb_worker *w)
{
    if (w->uphosts) {
        for (size_t i = 0; i < w->conf->n_providers + w->conf->n_pools; i++)
            while (w->uphosts[i].idle)
                up_free(w->uphosts[i].idle);
        free(w->uphosts);
        w->uphosts = NULL;
    }
    if (w->dns) {
        evdns_base_free(w->dns, 0);
        w->dns = NULL;
    }
}

/* Detach u from its caller and report a failure. */
static void up_fail(struct bb_upconn *u, enum bb_upfail why)
{
    const struct bb_upstream_cbs *cbs = u->cbs;
    void *arg = u->arg;
    bool seen = u->bytes_seen;
    up_free(u);
    if (cbs)
        cbs->on_error(arg, why, seen);
}

/* Park a connection whose exchange completed in its host's idle pool, or close it. */
static void up_recycle(struct bb_upconn *u);

static void up_end(struct bb_upconn *u)
{
    const struct bb_upstream_cbs *cbs = u->cbs;
    void *arg = u->arg;
    evtimer_del(u->timer);
    up_recycle(u); /* the connection is no longer the caller's */
    cbs->on_end(arg);
}

static struct bufferevent *up_bev(struct bb_worker *w, const struct bb_url *url)
{
    struct bufferevent *bev;
    if (url->tls) {
        SSL *ssl = SSL_new(w->rt->client_ctx);
        if (!ssl)
            return NULL;
        struct in6_addr a6;
        struct in_addr a4;
        bool is_ip =
            inet_pton(AF_INET, url->host, &a4) == 1 || inet_pton(AF_INET6, url->host, &a6) == 1;
        if (is_ip) {
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), url->host);
        } else {
            SSL_set_tlsext_host_name(ssl, url->host);
            SSL_set1_host(ssl, url->host);
        }
        SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
        bev = bufferevent_openssl_socket_new(w->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                             BEV_OPT_CLOSE_ON_FREE);
        if (!bev) {
            SSL_free(ssl);
            return NULL;
        }
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    } else {
        bev = bufferevent_socket_new(w->base, -1, BEV_OPT_CLOSE_ON_FREE);
    }
    return bev;
}

/* A failure while dialing: inside up_dial (the caller has not got the connection yet) it is
 * reported from the connection's timer on the next loop turn, else at once. */
static void dial_failed(struct bb_upconn *u, enum bb_upfail why)
{
    if (!u->dialing) {
        up_fail(u, why);
        return;
    }
    u->dial_fail = (int)why;
    event_active(u->timer, EV_TIMEOUT, 0);
}

/* Connect to the first of the addresses host resolved to, once every one of them passed the
 * SSRF guard (a name that also resolves to a denied address is refused as a whole). */
static void dial_checked(struct bb_upconn *u, const struct evutil_addrinfo *ai)
{
    const struct bb_url *url = u->host->url;
    char why[300];
    for (const struct evutil_addrinfo *a = ai; a; a = a->ai_next)
        if (!bb_ssrf_check_addr(&u->w->conf->security, url->host, a->ai_addr, url->tls, why,
                                sizeof why)) {
            bb_warn("upstream %s: refused to connect: %s", u->host->name, why);
            dial_failed(u, BB_UPFAIL_DENIED);
            return;
        }
    if (!ai || bufferevent_socket_connect(u->bev, ai->ai_addr, (int)ai->ai_addrlen) < 0)
        dial_failed(u, BB_UPFAIL_CONNECT);
    else if (!url->tls)
        bb_sockread_take(u->bev); /* no FIONREAD per read (worker/sockread.h) */
}

static void resolved_cb(int err, struct evutil_addrinfo *ai, void *arg)
{
    struct up_resolve *r = arg;
    struct bb_upconn *u = r->u;
    free(r);
    if (!u) { /* the connection went away first (cancelled) */
        if (ai)
            evutil_freeaddrinfo(ai);
        return;
    }
    u->resolve = NULL;
    if (err) {
        bb_warn("upstream %s: DNS lookup of %s failed: %s", u->host->name, u->host->url->host,
                evutil_gai_strerror(err));
        dial_failed(u, BB_UPFAIL_CONNECT);
    } else {
        dial_checked(u, ai);
    }
    if (ai)
        evutil_freeaddrinfo(ai);
}

/* Resolve (IP literals directly), check, connect. */
static void up_dial(struct bb_upconn *u)
{
    const struct bb_url *url = u->host->url;
    char port[8];
    snprintf(port, sizeof port, "%u", url->port);
    /* IPv4 for DNS names: a host without IPv6 routes would otherwise fail on an AAAA answer.
     * IPv6 literals connect over IPv6. */
    struct evutil_addrinfo hints = {.ai_family = strchr(url->host, ':') ? AF_INET6 : AF_INET,
                                    .ai_socktype = SOCK_STREAM,
                                    .ai_protocol = IPPROTO_TCP};
    u->dialing = true;
    struct evutil_addrinfo *ai = NULL;
    hints.ai_flags = EVUTIL_AI_NUMERICHOST;
    if (evutil_getaddrinfo(url->host, port, &hints, &ai) == 0) {
        dial_checked(u, ai);
        evutil_freeaddrinfo(ai);
    } else {
        hints.ai_flags = 0;
        struct up_resolve *r = calloc(1, sizeof *r);
        if (!r) {
            dial_failed(u, BB_UPFAIL_CONNECT);
        } else {
            r->u = u;
            u->resolve = r;
            /* may call back at once (hosts file): then r is gone and u->resolve cleared */
            struct evdns_getaddrinfo_request *q =
                evdns_getaddrinfo(u->w->dns, url->host, port, &hints, resolved_cb, r);
            if (u->resolve)
                u->resolve->q = q;
        }
    }
    u->dialing = false;
}

int bb_upstream_policy_host(const struct bb_worker *w, int pool)
{
    return (int)w->conf->n_providers + pool;
}

struct bb_upconn *bb_upstream_start(struct bb_worker *w, int host, struct evbuffer *request,
                                    const struct bb_upstream_deadlines *dl,
                                    const struct bb_upstream_cbs *cbs, void *arg)
{
    struct bb_uphost *h = &w->uphosts[host];
    struct bb_upconn *u = h->idle;
    if (u) {
        h->idle = u->next_idle;
        h->n_idle--;
        u->next_idle = NULL;
        u->state = UP_HEAD;
        bufferevent_setcb(u->bev, up_read_cb, NULL, up_event_cb, u);
        /* EV_WRITE stays enabled from the first exchange: enabling it again would arm the
         * write event with nothing to write */
        bufferevent_enable(u->bev, EV_READ);
    } else {
        u = calloc(1, sizeof *u);
        if (!u)
            return NULL;
        u->magic = BB_MAGIC_UPCONN;
        u->w = w;
        u->host = h;
        u->timer = evtimer_new(w->base, up_timer_cb, u);
        u->bev = up_bev(w, h->url);
        u->dial_fail = -1;
        if (!u->timer || !u->bev) {
            if (u->timer)
                event_free(u->timer);
            if (u->bev)
                bufferevent_free(u->bev);
            free(u);
            return NULL;
        }
        u->state = UP_CONNECTING;
        bufferevent_setcb(u->bev, up_read_cb, NULL, up_event_cb, u);
        bufferevent_enable(u->bev, EV_READ | EV_WRITE);
        up_dial(u);
    }
    u->cbs = cbs;
    u->arg = arg;
    u->dl = *dl;
    u->bytes_seen = false;
    u->paused = false;
    u->cancelled = false;
    u->body = UPB_NONE;
    bb_http_scan_reset(&u->scan);
    u->n_interim = 0;
    /* A pooled plain connection takes the request at once: written here, the bufferevent never
     * has to arm (and then disarm) its write event for it. Whatever the socket does not take
     * goes through the bufferevent as usual. */
    if (u->state == UP_HEAD && !u->host->url->tls)
        evbuffer_write(request, bufferevent_getfd(u->bev));
    if (evbuffer_get_length(request))
        bufferevent_write_buffer(u->bev, request);
    up_timer(u, u->state == UP_CONNECTING ? dl->connect_ms : dl->head_ms);
    return u;
}

void bb_upstream_cancel(struct bb_upconn *u)
{
    if (!u)
        return;
    up_check(u);
    if (u->in_cb) {
        u->cancelled = true;
        return;
    }
    up_free(u);
}

static void idle_read_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    up_free(up_check(arg)); /* unsolicited bytes on an idle connection: it is unusable */
}

static void idle_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    (void)what;
    up_free(up_check(arg));
}

static void up_recycle(struct bb_upconn *u)
{
    struct bb_uphost *h = u->host;
    bool reusable = u->keep_alive && u->state == UP_BODY &&
                    evbuffer_get_length(bufferevent_get_input(u->bev)) == 0 &&
                    h->n_idle < u->w->conf->limits.pool_max_idle_per_host && !u->w->draining;
    if (!reusable) {
        up_free(u);
        return;
    }
    u->state = UP_IDLE;
    u->cbs = NULL;
    u->arg = NULL;
    u->next_idle = h->idle;
    h->idle = u;
    h->n_idle++;
    bufferevent_setcb(u->bev, idle_read_cb, NULL, idle_event_cb, u);
    bufferevent_enable(u->bev, EV_READ);
    up_timer(u, UP_IDLE_MS);
}

void bb_upstream_pause(struct bb_upconn *u, bool paused)
{
    if (!u || u->paused == paused)
        return;
    u->paused = paused;
    if (paused) {
        bufferevent_disable(u->bev, EV_READ);
        evtimer_del(u->timer); /* a slow client is not an upstream stall */
    } else {
        bufferevent_enable(u->bev, EV_READ);
        up_timer(u, u->dl.idle_ms);
        if (evbuffer_get_length(bufferevent_get_input(u->bev)) > 0)
            up_read_cb(u->bev, u);
    }
}

/* Parse the response head; 1 when the body phase started, 0 when more bytes are needed,
 * -1 when u was freed (cancelled or failed). */
static int up_parse_head(struct bb_upconn *u)
{
    struct evbuffer *in = bufferevent_get_input(u->bev);
    for (;;) {
        size_t avail = evbuffer_get_length(in);
        if (avail == 0)
            return 0;
        /* Find the end of the head first, looking at each byte once, and parse it once: a
         * head in many small reads (or a run of interim answers) costs linear time. */
        size_t limit = avail < UP_HEAD_MAX ? avail : UP_HEAD_MAX;
        size_t end = bb_http_scan_input(&u->scan, in, limit);
        if (end == 0) {
            if (avail >= UP_HEAD_MAX) {
                up_fail(u, BB_UPFAIL_PROTOCOL);
                return -1;
            }
            return 0;
        }
        const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)end);
        BB_HTTP_HEAD(head);
        int r = bb_http_parse_response(p, end, &head);
        if (r <= 0) {
            up_fail(u, BB_UPFAIL_PROTOCOL);
            return -1;
        }
        bb_http_scan_reset(&u->scan);
        if (head.status >= 100 && head.status < 200) { /* interim: skip, a few at most */
            if (++u->n_interim > UP_INTERIM_MAX) {
                bb_warn("upstream %s: more than %d interim (1xx) answers", u->host->name,
                        UP_INTERIM_MAX);
                up_fail(u, BB_UPFAIL_PROTOCOL);
                return -1;
            }
            evbuffer_drain(in, (size_t)r);
            continue;
        }
        u->keep_alive = head.keep_alive;
        if (head.status == 204 || head.status == 304) {
            u->body = UPB_NONE;
        } else if (head.chunked) {
            u->body = UPB_CHUNKED;
            bb_chunked_init(&u->chunked);
        } else if (head.content_length >= 0) {
            u->body = UPB_LENGTH;
            u->remaining = (uint64_t)head.content_length;
        } else {
            u->body = UPB_CLOSE;
            u->keep_alive = false;
        }
        u->state = UP_BODY;
        up_timer(u, u->dl.idle_ms);
        /* head points into the pulled-up buffer: call before draining it */
        u->in_cb = true;
        int rc = u->cbs->on_head(u->arg, &head);
        u->in_cb = false;
        if (rc < 0 || u->cancelled) {
            up_free(u);
            return -1;
        }
        evbuffer_drain(in, (size_t)r);
        return 1;
    }
}

/* Feed buffered body bytes to the caller; -1 when u is gone (ended, cancelled, failed). */
static int up_read_body(struct bb_upconn *u)
{
    struct evbuffer *in = bufferevent_get_input(u->bev);
    for (;;) {
        if (u->body == UPB_NONE || (u->body == UPB_LENGTH && u->remaining == 0) ||
            (u->body == UPB_CHUNKED && u->chunked.done)) {
            up_end(u);
            return -1;
        }
        if (u->paused)
            return 0;
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0)
            return 0;
        const char *data = v.iov_base;
        size_t used, off = 0, dlen;
        if (u->body == UPB_LENGTH) {
            dlen = v.iov_len < u->remaining ? v.iov_len : (size_t)u->remaining;
            used = dlen;
            u->remaining -= dlen;
        } else if (u->body == UPB_CHUNKED) {
            ssize_t r = bb_chunked_feed(&u->chunked, data, v.iov_len, &off, &dlen);
            if (r < 0) {
                up_fail(u, BB_UPFAIL_PROTOCOL);
                return -1;
            }
            used = (size_t)r;
            if (used == 0 && !u->chunked.done)
                return 0;
        } else {
            dlen = used = v.iov_len;
        }
        int rc = 0;
        if (dlen) {
            u->in_cb = true;
            rc = u->cbs->on_body(u->arg, data + off, dlen);
            u->in_cb = false;
        }
        if (rc < 0 || u->cancelled) {
            up_free(u);
            return -1;
        }
        evbuffer_drain(in, used);
    }
}

static void up_read_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    struct bb_upconn *u = up_check(arg);
    u->bytes_seen = true;
    if (u->state == UP_CONNECTING)
        u->state = UP_HEAD;
    if (u->state == UP_HEAD && up_parse_head(u) <= 0)
        return;
    if (u->state == UP_BODY) {
        if (up_read_body(u) == 0 && !u->paused)
            up_timer(u, u->dl.idle_ms);
    }
}

static void up_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct bb_upconn *u = up_check(arg);
    if (what & BEV_EVENT_CONNECTED) {
        int one = 1;
        setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        u->state = UP_HEAD;
        up_timer(u, u->dl.head_ms);
        return;
    }
    if (what & BEV_EVENT_ERROR) {
        unsigned long e;
        int dns_err = bufferevent_socket_get_dns_error(bev);
        if (dns_err)
            bb_warn("upstream %s: DNS lookup of %s failed: %s", u->host->name, u->host->url->host,
                    evutil_gai_strerror(dns_err));
        while ((e = bufferevent_get_openssl_error(bev)) != 0) {
            char buf[256];
            if (ERR_GET_LIB(e) == 0)
                continue; /* libevent's errno placeholder, not an OpenSSL error */
            ERR_error_string_n(e, buf, sizeof buf);
            bb_warn("upstream %s: TLS error: %s", u->host->name, buf);
        }
    }
    if (u->state == UP_CONNECTING) {
        up_fail(u, BB_UPFAIL_CONNECT);
        return;
    }
    if ((what & BEV_EVENT_EOF) && u->state == UP_BODY && u->body == UPB_CLOSE) {
        /* close-delimited body: deliver the rest, then the end */
        if (up_read_body(u) == 0) {
            u->body = UPB_NONE;
            up_end(u);
        }
        return;
    }
    if (u->state == UP_BODY && up_read_body(u) < 0)
        return; /* the buffered rest completed the response */
    up_fail(u, BB_UPFAIL_RESET);
}

static void up_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct bb_upconn *u = up_check(arg);
    if (u->dial_fail >= 0) { /* found while dialing (see dial_failed) */
        up_fail(u, (enum bb_upfail)u->dial_fail);
        return;
    }
    switch (u->state) {
    case UP_CONNECTING:
        up_fail(u, BB_UPFAIL_CONNECT_TIMEOUT);
        return;
    case UP_HEAD:
        up_fail(u, BB_UPFAIL_HEAD_TIMEOUT);
        return;
    case UP_BODY:
        up_fail(u, BB_UPFAIL_IDLE_TIMEOUT);
        return;
    case UP_IDLE:
        up_free(u);
        return;
    }
}
