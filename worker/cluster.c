/*
 * cluster: admission, settlement and leases through Redis in a worker (see cluster.h).
 * Worker process, single-threaded (the worker's loop).
 *
 * A governed request's admission is one EVALSHA "admit" (common/cluster.lua) and its end one
 * EVALSHA "settle"; leases of the reservations held are renewed in batches every
 * lease_secs / 3 (one call per 30 reservations, never per request or per stream event).
 *
 * struct bb_creq lives outside the request's arena because a Redis answer may come after the
 * request ended: `req` is NULL once it did, and a late admission is then released at once.
 * It is freed when neither the request nor a pending Redis answer refers to it.
 */
#include "worker/cluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/event_struct.h>
#include <hiredis/hiredis.h>

#include "bb_cluster_lua.h"
#include "common/log.h"
#include "common/redis.h"
#include "common/shm.h"
#include "worker/request.h"
#include "worker/worker.h"

#define BB_MAGIC_CREQ 0x43524551u
#define RENEW_BATCH 30   /* reservations per renewal call (2 arguments each) */
#define BACKLOG_MAX 4096 /* keys × days of locally admitted spend awaiting reconciliation */

enum creq_state {
    C_WAIT,     /* admission sent, answer awaited (timer armed) */
    C_HELD,     /* admitted by Redis: holds a reservation there, lease renewed */
    C_SETTLING, /* settlement sent (or waiting to be resent); still renewed */
};

struct bb_creq {
    uint32_t magic;
    struct bb_wcluster *wc;
    struct bb_request *req; /* NULL once the request ended or stopped waiting for Redis */
    bb_meter_done_fn done;
    struct bb_meter_est est;
    struct event timer;
    bool timer_set;
    bool reply_due; /* a Redis answer will come with this as its argument */
    bool resend;    /* a settlement to send again once Redis is back */
    enum creq_state state;
    uint8_t period;
    char id[BB_KEYS_ID_SIZE];
    char rid[48];
    /* the settlement, kept for a resend */
    bool billed;
    uint64_t cost, tokens, in, out, cr, cw, rs;
    struct bb_creq *prev, *next; /* wc->held: reservations held in Redis */
};

/* Spend of requests admitted on this node while Redis was unusable, per key × UTC day. */
struct backlog {
    char id[BB_KEYS_ID_SIZE];
    char day[12];
    uint8_t period;
    bool sent;      /* in flight under batch; new spend goes to another entry */
    char batch[64]; /* idempotency token of the reconciliation */
    uint64_t cost, n, in, out, cr, cw, rs;
};

struct bb_wcluster {
    struct bb_worker *w;
    struct bb_cluster_shm *shm;
    const struct bb_cluster_conf *conf;
    struct bb_redis *r;
    int script;
    struct event *ev_tick;
    struct bb_creq *held; /* doubly linked */
    size_t n_held, n_resend;
    struct backlog *backlog;
    size_t n_backlog;
    uint64_t batch_seq;
    bool usable; /* last state seen: Redis ready and the catalogue caught up */
    uint64_t timeouts, timeout_logged_ms; /* admissions past timeout_ms since the last log */
    uint64_t error_logged_ms;
    bool closing;
};

static struct bb_creq *creq_check(void *arg)
{
    struct bb_creq *c = arg;
    if (c->magic != BB_MAGIC_CREQ) {
        bb_crit("cluster: bad request magic %#x", c->magic);
        abort();
    }
    return c;
}

static void u64s(char *buf, size_t n, uint64_t v)
{
    snprintf(buf, n, "%llu", (unsigned long long)v);
}

/* n numbers as script arguments */
static void u64v(char (*out)[24], const uint64_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        u64s(out[i], sizeof out[i], v[i]);
}

/* ---- held reservations ---------------------------------------------------------------- */

static void hold(struct bb_wcluster *wc, struct bb_creq *c)
{
    c->prev = NULL;
    c->next = wc->held;
    if (wc->held)
        wc->held->prev = c;
    wc->held = c;
    wc->n_held++;
}

static void unhold(struct bb_wcluster *wc, struct bb_creq *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        wc->held = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    wc->n_held--;
}

static void creq_free(struct bb_creq *c)
{
    if (c->timer_set)
        event_del(&c->timer);
    c->magic = 0;
    free(c);
}

/* ---- state ------------------------------------------------------------------------------ */

static void flush_owed(struct bb_wcluster *wc);

static bool usable(struct bb_wcluster *wc)
{
    bool now = bb_redis_ready(wc->r) && atomic_load(&wc->shm->synced);
    if (now != wc->usable) {
        wc->usable = now;
        if (!now) {
            atomic_fetch_add(&wc->shm->fallbacks, 1);
            bb_warn("cluster: Redis unusable (%s): governed requests are %s",
                    bb_redis_ready(wc->r) ? "the master's key catalogue is catching up"
                                          : "not connected",
                    wc->conf->deny_on_error ? "refused with 503 (on_redis_error: deny)"
                                            : "admitted on this node (on_redis_error: local)");
        } else {
            bb_notice("cluster: Redis usable again: admissions are cluster-wide (%zu local "
                      "spend entries to reconcile)",
                      wc->n_backlog);
            flush_owed(wc);
        }
    }
    return now;
}

static void on_state(struct bb_redis *r, bool up, const char *why, void *arg)
{
    (void)r;
    (void)why;
    (void)up;
    usable(arg);
}

/* ---- admission -------------------------------------------------------------------------- */

/* Redis could not decide in time: on_redis_error. */
static void fallback(struct bb_wcluster *wc, struct bb_request *req, const struct bb_meter_est *e,
                     bb_meter_done_fn done)
{
    if (wc->conf->deny_on_error) {
        atomic_fetch_add_explicit(&wc->shm->denied, 1, memory_order_relaxed);
        bb_request_fail_with(req, BB_ERR_CLUSTER_UNAVAILABLE,
                             "the cluster store (Redis) is unavailable and "
                             "cluster.on_redis_error is deny; retry shortly",
                             "Retry-After: 1\r\n");
        done(req, -1);
        return;
    }
    atomic_fetch_add_explicit(&wc->shm->admitted_local, 1, memory_order_relaxed);
    done(req, bb_meter_admit_local(req, e));
}

static void send_settle(struct bb_wcluster *wc, struct bb_creq *c);

/* The request stopped waiting (timeout, or it ended): a late "admitted" is given back. */
static void detach_waiting(struct bb_creq *c)
{
    if (c->timer_set) {
        event_del(&c->timer);
        c->timer_set = false;
    }
    if (c->req)
        c->req->cluster = NULL;
    c->req = NULL;
}

static void admit_cb(struct bb_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    struct bb_creq *c = creq_check(arg);
    struct bb_wcluster *wc = c->wc;
    c->reply_due = false;
    bool ok = rep && rep->type == REDIS_REPLY_ARRAY && rep->elements >= 2;
    long long verdict = ok ? bb_redis_int(rep->element[0], -1) : -1;
    long long retry = ok ? bb_redis_int(rep->element[1], 1) : 1;
    if (!c->req) { /* nobody waits any more */
        if (verdict == BB_KEYS_OK) {
            c->billed = false;
            c->state = C_SETTLING;
            hold(wc, c);
            send_settle(wc, c);
        } else {
            creq_free(c);
        }
        return;
    }
    struct bb_request *req = c->req;
    bb_meter_done_fn done = c->done;
    struct bb_meter_est e = c->est;
    if (c->timer_set) {
        event_del(&c->timer);
        c->timer_set = false;
    }
    if (verdict == BB_KEYS_OK) {
        atomic_fetch_add_explicit(&wc->shm->admitted_redis, 1, memory_order_relaxed);
        c->state = C_HELD;
        hold(wc, c);
        req->metered = true;
        done(req, 0);
        return;
    }
    detach_waiting(c);
    creq_free(c);
    if (verdict < 0 || verdict > BB_KEYS_BUDGET_EXCEEDED) {
        if (bb_now_ms() - wc->error_logged_ms >= 1000) { /* once a second at most */
            wc->error_logged_ms = bb_now_ms();
            bb_warn("cluster: admission failed in Redis (%s): on_redis_error decides",
                    rep && rep->type == REDIS_REPLY_ERROR && rep->str ? rep->str
                                                                      : "connection lost");
        }
        fallback(wc, req, &e, done);
        return;
    }
    atomic_fetch_add_explicit(&wc->shm->refused_redis, 1, memory_order_relaxed);
    bb_debug("request %s: key %s refused by the cluster: %s", req->id, req->auth.key.lim.id,
             bb_keys_verdict_name((enum bb_keys_verdict)verdict));
    bb_meter_refuse(req, (enum bb_keys_verdict)verdict, (uint32_t)retry, e.target);
    done(req, -1);
}

static void timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct bb_creq *c = creq_check(arg);
    c->timer_set = false;
    struct bb_request *req = c->req;
    if (!req)
        return;
    struct bb_wcluster *wc = c->wc;
    atomic_fetch_add_explicit(&wc->shm->timeouts, 1, memory_order_relaxed);
    wc->timeouts++;
    if (bb_now_ms() - wc->timeout_logged_ms >= 1000) { /* once a second under a slow Redis */
        wc->timeout_logged_ms = bb_now_ms();
        bb_warn("cluster: %llu admission(s) got no answer from Redis within %u ms: "
                "on_redis_error %s decided (request %s)",
                (unsigned long long)wc->timeouts, wc->conf->timeout_ms,
                wc->conf->deny_on_error ? "deny" : "local", req->id);
        wc->timeouts = 0;
    }
    bb_meter_done_fn done = c->done;
    struct bb_meter_est e = c->est;
    detach_waiting(c); /* the answer, when it comes, releases what it admitted */
    fallback(wc, req, &e, done);
}

void bb_wcluster_admit(struct bb_request *req, const struct bb_meter_est *e, bb_meter_done_fn done)
{
    struct bb_wcluster *wc = req->w->cluster;
    const struct bb_keys_ref *k = &req->auth.key;
    uint64_t now = bb_wall_ms();
    /* what needs no Redis first: the key's state and its pools (SPEC order) */
    enum bb_keys_verdict v = bb_keys_check(k, e->target, strlen(e->target), now);
    if (v != BB_KEYS_OK) {
        bb_meter_refuse(req, v, 0, e->target);
        done(req, -1);
        return;
    }
    if (!usable(wc)) {
        fallback(wc, req, e, done);
        return;
    }
    struct bb_creq *c = bb_xcalloc(1, sizeof *c);
    c->magic = BB_MAGIC_CREQ;
    c->wc = wc;
    c->req = req;
    c->done = done;
    c->est = *e;
    c->state = C_WAIT;
    c->period = k->lim.period;
    snprintf(c->id, sizeof c->id, "%s", k->lim.id);
    snprintf(c->rid, sizeof c->rid, "%s", req->id);
    char budget[24], period[4], rpm[16], tpm[16], par[16], est[24], cost[24], lease[16];
    u64s(budget, sizeof budget, k->lim.budget_micros);
    u64s(period, sizeof period, k->lim.period);
    u64s(rpm, sizeof rpm, k->lim.rpm);
    u64s(tpm, sizeof tpm, k->lim.tpm);
    u64s(par, sizeof par, k->lim.max_parallel);
    u64s(est, sizeof est, e->tpm_tokens);
    u64s(cost, sizeof cost, e->cost);
    u64s(lease, sizeof lease, (uint64_t)wc->conf->lease_secs * 1000u);
    const char *argv[] = {"admit",
                          wc->conf->key_prefix,
                          c->id,
                          c->rid,
                          k->lim.has_budget ? "1" : "0",
                          budget,
                          period,
                          rpm,
                          tpm,
                          par,
                          est,
                          cost,
                          lease};
    if (bb_redis_eval(wc->r, wc->script, admit_cb, c, 13, argv, NULL) < 0) {
        creq_free(c);
        fallback(wc, req, e, done);
        return;
    }
    c->reply_due = true;
    req->cluster = c;
    event_assign(&c->timer, req->w->base, -1, 0, timeout_cb, c);
    struct timeval tv = {wc->conf->timeout_ms / 1000, (wc->conf->timeout_ms % 1000) * 1000};
    event_add(&c->timer, &tv);
    c->timer_set = true;
}

/* ---- settlement ------------------------------------------------------------------------- */

static void settle_cb(struct bb_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    struct bb_creq *c = creq_check(arg);
    struct bb_wcluster *wc = c->wc;
    c->reply_due = false;
    if (!rep || rep->type == REDIS_REPLY_ERROR) {
        if (rep)
            bb_warn("cluster: settlement of %s failed: %s", c->rid, rep->str ? rep->str : "?");
        if (!c->resend) {
            c->resend = true; /* resent when Redis is back; "settle" is idempotent */
            wc->n_resend++;
        }
        return;
    }
    unhold(wc, c);
    creq_free(c);
}

static void send_settle(struct bb_wcluster *wc, struct bb_creq *c)
{
    char v[8][24];
    u64v(v, (uint64_t[]){c->period, c->cost, c->tokens, c->in, c->out, c->cr, c->cw, c->rs}, 8);
    const char *argv[] = {"settle", wc->conf->key_prefix,
                          c->id,    c->rid,
                          v[0],     c->billed ? "1" : "0",
                          v[1],     v[2],
                          v[3],     v[4],
                          v[5],     v[6],
                          v[7],     ""};
    if (bb_redis_eval(wc->r, wc->script, settle_cb, c, 14, argv, NULL) == 0) {
        if (c->resend) {
            c->resend = false;
            wc->n_resend--;
            atomic_fetch_add_explicit(&wc->shm->settle_retries, 1, memory_order_relaxed);
        }
        c->reply_due = true;
    } else if (!c->resend) {
        c->resend = true;
        wc->n_resend++;
    }
}

static void backlog_add(struct bb_wcluster *wc, struct bb_request *req, uint64_t cost)
{
    const struct bb_keys_limits *lim = &req->auth.key.lim;
    char day[12];
    bb_keys_day_string((int64_t)(bb_wall_ms() / 1000), day);
    struct backlog *b = NULL;
    for (size_t i = 0; i < wc->n_backlog && !b; i++)
        if (!wc->backlog[i].sent && !strcmp(wc->backlog[i].id, lim->id) &&
            !strcmp(wc->backlog[i].day, day))
            b = &wc->backlog[i];
    if (!b) {
        if (wc->n_backlog == BACKLOG_MAX) {
            static uint64_t warned;
            if (bb_now_ms() - warned > 1000) {
                warned = bb_now_ms();
                bb_warn("cluster: too many keys with spend to reconcile; this spend stays in "
                        "this node's ledger only");
            }
            return;
        }
        b = &wc->backlog[wc->n_backlog++];
        memset(b, 0, sizeof *b);
        snprintf(b->id, sizeof b->id, "%s", lim->id);
        snprintf(b->day, sizeof b->day, "%s", day);
        b->period = lim->period;
    }
    const struct bb_usage_tokens *u = &req->usage;
    b->cost += cost;
    b->n++;
    b->in += u->input;
    b->out += u->output;
    b->cr += u->cache_read;
    b->cw += u->cache_write;
    b->rs += u->reasoning;
}

void bb_wcluster_finish(struct bb_request *req, uint64_t cost)
{
    struct bb_wcluster *wc = req->w->cluster;
    struct bb_creq *c = req->cluster;
    if (!c) {
        /* admitted on this node (Redis unusable, on_redis_error: local): Redis learns the
         * spend when it is back */
        if (req->resv.slot && req->bill_lane >= 0)
            backlog_add(wc, req, cost);
        return;
    }
    if (c->state == C_WAIT) { /* the client left while Redis was deciding */
        detach_waiting(c);
        return;
    }
    req->cluster = NULL;
    c->req = NULL;
    c->billed = req->bill_lane >= 0;
    if (c->billed) {
        const struct bb_usage_tokens *u = &req->usage;
        c->cost = cost;
        c->tokens = u->input + u->output + u->cache_read + u->cache_write;
        c->in = u->input;
        c->out = u->output;
        c->cr = u->cache_read;
        c->cw = u->cache_write;
        c->rs = u->reasoning;
    }
    c->state = C_SETTLING;
    send_settle(wc, c);
}

/* ---- leases, resends, reconciliation ---------------------------------------------------- */

static void renew_cb(struct bb_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    struct bb_wcluster *wc = arg;
    long long gone = bb_redis_int(rep, 0);
    if (gone > 0) {
        atomic_fetch_add_explicit(&wc->shm->leases_lost, (uint64_t)gone, memory_order_relaxed);
        bb_warn("cluster: %lld reservation lease(s) had expired in Redis (released there; "
                "the settlement still bills them)",
                gone);
    }
}

static void renew(struct bb_wcluster *wc)
{
    char lease[16];
    u64s(lease, sizeof lease, (uint64_t)wc->conf->lease_secs * 1000u);
    const char *argv[3 + 2 * RENEW_BATCH] = {"renew", wc->conf->key_prefix, lease};
    int n = 3;
    for (struct bb_creq *c = wc->held; c; c = c->next) {
        argv[n++] = c->id;
        argv[n++] = c->rid;
        if (n == 3 + 2 * RENEW_BATCH || !c->next) {
            bb_redis_eval(wc->r, wc->script, renew_cb, wc, n, argv, NULL);
            n = 3;
        }
    }
}

struct rc_arg {
    struct bb_wcluster *wc;
    char batch[64];
};

static void reconcile_cb(struct bb_redis *r, redisReply *rep, void *arg)
{
    (void)r;
    struct rc_arg *a = arg;
    struct bb_wcluster *wc = a->wc;
    for (size_t i = 0; i < wc->n_backlog; i++) {
        struct backlog *b = &wc->backlog[i];
        if (!b->sent || strcmp(b->batch, a->batch))
            continue;
        if (!rep || rep->type == REDIS_REPLY_ERROR) {
            b->sent = false; /* the same batch token next time: applied at most once */
        } else {
            atomic_fetch_add_explicit(&wc->shm->reconciled, b->n, memory_order_relaxed);
            memmove(b, b + 1, (wc->n_backlog - i - 1) * sizeof *b);
            wc->n_backlog--;
        }
        break;
    }
    free(a);
}

static void reconcile(struct bb_wcluster *wc)
{
    for (size_t i = 0; i < wc->n_backlog; i++) {
        struct backlog *b = &wc->backlog[i];
        if (b->sent)
            continue;
        if (!b->batch[0])
            snprintf(b->batch, sizeof b->batch, "%.24s-%d-%s-%llu", wc->conf->node_id, wc->w->slot,
                     wc->w->id_prefix, (unsigned long long)++wc->batch_seq);
        char v[8][24];
        u64v(v, (uint64_t[]){b->period, b->cost, b->n, b->in, b->out, b->cr, b->cw, b->rs}, 8);
        const char *argv[] = {"reconcile", wc->conf->key_prefix,
                              b->batch,    b->id,
                              v[0],        b->day,
                              v[1],        v[2],
                              v[3],        v[4],
                              v[5],        v[6],
                              v[7]};
        struct rc_arg *a = bb_xcalloc(1, sizeof *a);
        a->wc = wc;
        snprintf(a->batch, sizeof a->batch, "%s", b->batch);
        if (bb_redis_eval(wc->r, wc->script, reconcile_cb, a, 13, argv, NULL) < 0) {
            free(a);
            return;
        }
        b->sent = true;
    }
}

static void flush_owed(struct bb_wcluster *wc)
{
    if (!bb_redis_ready(wc->r))
        return;
    for (struct bb_creq *c = wc->held; c && wc->n_resend; c = c->next)
        if (c->resend && !c->reply_due)
            send_settle(wc, c);
    reconcile(wc);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct bb_wcluster *wc = arg;
    if (!usable(wc))
        return;
    renew(wc);
    flush_owed(wc);
}

/* ---- lifecycle -------------------------------------------------------------------------- */

int bb_wcluster_init(struct bb_worker *w)
{
    const struct bb_cluster_conf *cc = &w->conf->cluster;
    if (!cc->enabled)
        return 0;
    struct bb_wcluster *wc = bb_xcalloc(1, sizeof *wc);
    wc->w = w;
    wc->conf = cc;
    wc->shm = &w->rt->shm->cluster;
    wc->backlog = bb_xcalloc(BACKLOG_MAX, sizeof *wc->backlog);
    char name[32];
    snprintf(name, sizeof name, "worker %d", w->slot);
    struct bb_redis_opts o = {
        .host = cc->host,
        .port = cc->port,
        .db = cc->db,
        .user = cc->user,
        .password = cc->password,
        .ssl_ctx = w->rt->redis_ctx,
        .connect_timeout_ms = cc->timeout_ms > 1000 ? cc->timeout_ms : 1000,
        .stall_ms = cc->timeout_ms * 20 > 1000 ? cc->timeout_ms * 20 : 1000,
        .name = name,
        .on_state = on_state,
        .state_arg = wc,
    };
    wc->r = bb_redis_new(w->base, w->dns, &o);
    if (!wc->r) {
        free(wc->backlog);
        free(wc);
        return -1;
    }
    wc->script = bb_redis_script(wc->r, bb_cluster_lua);
    wc->ev_tick = event_new(w->base, -1, EV_PERSIST, tick_cb, wc);
    if (!wc->ev_tick) {
        bb_redis_free(wc->r);
        free(wc->backlog);
        free(wc);
        return -1;
    }
    uint32_t ms = cc->lease_secs * 1000u / 3u;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_add(wc->ev_tick, &tv);
    wc->usable = true; /* the first failure is worth a log line */
    w->cluster = wc;
    return 0;
}

void bb_wcluster_free(struct bb_worker *w)
{
    struct bb_wcluster *wc = w->cluster;
    if (!wc)
        return;
    wc->closing = true;
    flush_owed(wc);
    if (bb_redis_pending(wc->r) && bb_redis_wait(wc->r, 1000) < 0)
        bb_warn("cluster: leaving with %zu Redis answers outstanding", bb_redis_pending(wc->r));
    if (wc->n_resend || wc->n_backlog)
        bb_warn("cluster: leaving with %zu settlement(s) and %zu reconciliation(s) not "
                "delivered to Redis (this node's ledger has them; leases release the "
                "reservations)",
                wc->n_resend, wc->n_backlog);
    bb_redis_free(wc->r); /* pending answers come back NULL: nothing is resent */
    while (wc->held) {
        struct bb_creq *c = wc->held;
        unhold(wc, c);
        if (c->req)
            c->req->cluster = NULL;
        creq_free(c);
    }
    event_free(wc->ev_tick);
    free(wc->backlog);
    free(wc);
    w->cluster = NULL;
}
