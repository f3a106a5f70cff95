/*
 * worker_main: the worker process. One libevent loop: inherited listeners, client
 * connections, upstream connections, signals (SIGTERM drain, SIGQUIT exit, SIGUSR1 reopen
 * log) and a one-second heartbeat into the worker's shm slot for the master's watchdog.
 * Runs in the child after fork(); never parses config, never touches SQLite.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/listener.h>

#include <sys/random.h>

#include "common/log.h"
#include "worker/auth.h"
#include "worker/cluster.h"
#include "worker/endpoints.h"
#include "worker/health.h"
#include "worker/http_server.h"
#include "worker/obs.h"
#include "worker/policy.h"
#include "worker/router.h"
#include "worker/upstream.h"
#include "worker/worker.h"

static struct bb_worker *worker_check(void *arg)
{
    struct bb_worker *w = arg;
    if (w->magic != BB_MAGIC_WORKER) {
        bb_crit("worker: bad worker magic %#x", w->magic);
        abort();
    }
    return w;
}

static void heartbeat_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct bb_worker *w = worker_check(arg);
    atomic_store_explicit(&w->self->heartbeat_ms, bb_now_ms(), memory_order_relaxed);
    bb_health_tick(w);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    (void)l;
    bb_http_accept(worker_check(arg), fd, sa, salen);
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    (void)arg;
    int e = EVUTIL_SOCKET_ERROR();
    bb_error("worker: accept failed: %s", evutil_socket_error_to_string(e));
    if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
        /* Out of descriptors: stop accepting briefly instead of spinning on the error. */
        evconnlistener_disable(l);
        struct timeval tv = {0, 100000};
        event_base_once(evconnlistener_get_base(l), -1, EV_TIMEOUT,
                        (event_callback_fn)(void (*)(void))evconnlistener_enable, l, &tv);
    }
}

static void stop_listening(struct bb_worker *w)
{
    for (size_t i = 0; i < w->n_listeners; i++)
        if (w->listeners[i])
            evconnlistener_free(w->listeners[i]);
    w->n_listeners = 0;
}

void bb_worker_conn_closed(struct bb_worker *w)
{
    if (w->draining && w->n_conns == 0)
        event_base_loopexit(w->base, NULL);
}

static void drain_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct bb_worker *w = worker_check(arg);
    bb_warn("worker: drain timeout reached with %u connection(s) open; closing them", w->n_conns);
    event_base_loopexit(w->base, NULL);
}

static void term_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct bb_worker *w = worker_check(arg);
    if (w->draining)
        return;
    w->draining = true;
    atomic_store(&w->self->state, BB_WORKER_DRAINING);
    bb_info("worker: draining %u connection(s), %u request(s) in flight", w->n_conns, w->n_active);
    stop_listening(w);
    bb_http_drain(w);
    struct timeval tv = {w->conf->limits.drain_timeout_secs, 0};
    evtimer_add(w->ev_drain_deadline, &tv);
    if (w->n_conns == 0)
        event_base_loopexit(w->base, NULL);
}

static void quit_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    event_base_loopbreak(worker_check(arg)->base);
}

static void usr1_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    bb_obs_reopen(worker_check(arg)); /* the access log */
    if (bb_log_reopen() < 0)
        bb_error("worker: cannot reopen the log file: %s", strerror(errno));
}

static int worker_setup(struct bb_worker *w)
{
    const struct bb_conf *conf = w->conf;
    struct event_config *cfg = event_config_new();
    if (!cfg)
        return -1;
    /* NOLOCK: one thread. EPOLL_USE_CHANGELIST: an event added and deleted within one loop
     * iteration (a bufferevent write that completes at once) costs no epoll_ctl at all. */
    event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK | EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    w->base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    if (!w->base)
        return -1;
    uint32_t nw = conf->workers ? conf->workers : 1;
    w->max_active = (conf->limits.max_inbound_concurrent + nw - 1) / nw;
    if (w->max_active == 0)
        w->max_active = 1;
    /* getrandom, not OpenSSL's RAND: initialising its DRBG costs every worker resident
     * memory it otherwise never needs */
    unsigned char rnd[8];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
        return -1;
    for (size_t i = 0; i < sizeof rnd; i++)
        snprintf(w->id_prefix + 2 * i, 3, "%02x", rnd[i]);
    if (bb_router_init(w) < 0 || bb_upstream_init(w) < 0 || bb_endpoints_init(w) < 0 ||
        bb_auth_init(w) < 0 || bb_wcluster_init(w) < 0 || bb_obs_init(w) < 0 ||
        bb_policy_init(w) < 0)
        return -1;
    w->listeners = calloc(w->rt->n_listen ? w->rt->n_listen : 1, sizeof *w->listeners);
    if (!w->listeners)
        return -1;
    for (size_t i = 0; i < w->rt->n_listen; i++) {
        w->listeners[i] =
            evconnlistener_new(w->base, accept_cb, w, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
                               -1, w->rt->listen_fds[i]);
        if (!w->listeners[i])
            return -1;
        evconnlistener_set_error_cb(w->listeners[i], accept_error_cb);
        w->n_listeners = i + 1;
    }
    w->ev_term = evsignal_new(w->base, SIGTERM, term_cb, w);
    w->ev_quit = evsignal_new(w->base, SIGQUIT, quit_cb, w);
    w->ev_usr1 = evsignal_new(w->base, SIGUSR1, usr1_cb, w);
    w->ev_heartbeat = event_new(w->base, -1, EV_PERSIST, heartbeat_cb, w);
    w->ev_drain_deadline = evtimer_new(w->base, drain_deadline_cb, w);
    if (!w->ev_term || !w->ev_quit || !w->ev_usr1 || !w->ev_heartbeat || !w->ev_drain_deadline)
        return -1;
    struct timeval sec = {1, 0};
    evsignal_add(w->ev_term, NULL);
    evsignal_add(w->ev_quit, NULL);
    evsignal_add(w->ev_usr1, NULL);
    evtimer_add(w->ev_heartbeat, &sec);
    return 0;
}

static void worker_teardown(struct bb_worker *w)
{
    bb_http_close_all(w);
    stop_listening(w);
    bb_wcluster_free(w); /* after the requests: their settlements go out first */
    free(w->listeners);
    bb_obs_free(w); /* after the last request finished, before DNS goes */
    bb_policy_free(w);
    bb_upstream_shutdown(w);
    bb_router_free(w);
    bb_endpoints_free(w);
    bb_auth_free(w);
    struct event *evs[] = {w->ev_term, w->ev_quit, w->ev_usr1, w->ev_heartbeat,
                           w->ev_drain_deadline};
    for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++)
        if (evs[i])
            event_free(evs[i]);
    if (w->base)
        event_base_free(w->base);
}

int bb_worker_main(struct bb_runtime *rt, int slot)
{
    struct bb_worker w;
    memset(&w, 0, sizeof w);
    w.magic = BB_MAGIC_WORKER;
    w.rt = rt;
    w.conf = rt->conf;
    w.slot = slot;
    w.self = &rt->shm->workers[slot];
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, SIG_IGN); /* Ctrl-C reaches the whole process group: the master decides */
    atomic_store(&w.self->heartbeat_ms, bb_now_ms());
    int rc = 0;
    if (worker_setup(&w) < 0) {
        bb_crit("worker: setup failed (out of memory or descriptors)");
        rc = 1;
    } else {
        atomic_store(&w.self->state, BB_WORKER_RUNNING);
        event_base_dispatch(w.base);
    }
    worker_teardown(&w);
    return rc;
}
