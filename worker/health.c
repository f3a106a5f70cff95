/*
 * health: a probe is a cheap authenticated GET of the path the provider's protocol names
 * (its model list; Bedrock's runtime host has none: any HTTP answer proves it reachable).
 * Unreachable, 5xx, 401 or 403 takes every lane of the provider down until a later probe succeeds;
 * the next success brings back only lanes a probe took down (hard-downs from auth or billing keep
 * their own cooldown). Worker process, single-threaded; shared state is the lane cells' atomics.
 *
 * Lane cell fields used here (common/shm.h): probe_opened, and probe_due_ms on the provider's
 * first lane only.
 */
#include "worker/health.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "common/log.h"
#include "worker/breaker.h"
#include "worker/proto.h"
#include "worker/upstream.h"
#include "worker/worker.h"

struct probe {
    struct bb_worker *w;
    int provider;
    int status;
};

static void verdict(struct bb_worker *w, int provider, bool healthy, const char *why)
{
    const struct bb_conf *conf = w->conf;
    const struct bb_provider *p = &conf->providers[provider];
    uint64_t now = bb_now_ms();
    bool changed = false;
    for (size_t i = 0; i < conf->n_lanes; i++) {
        struct bb_shm_cell *c = w->lane_cells[i];
        if (conf->lanes[i].provider != provider || !c)
            continue;
        uint64_t probed = atomic_load(&c->probe_opened);
        if (!healthy) {
            /* down until the probe after next at the latest: a later success reopens it */
            bb_breaker_hard_down(c, now, (uint64_t)p->health_interval_secs * 2000u + 1000u);
            atomic_store(&c->probe_opened, 1);
            changed |= !probed;
        } else if (probed) {
            atomic_store(&c->probe_opened, 0);
            bb_breaker_reset(c);
            changed = true;
        }
    }
    if (changed && healthy)
        bb_notice("health: provider %s is reachable again", p->name);
    else if (changed)
        bb_warn("health: provider %s failed its probe (%s): its lanes are down", p->name, why);
}

static int probe_head(void *arg, const struct bb_http_head *h)
{
    ((struct probe *)arg)->status = h->status;
    return 0;
}

static int probe_body(void *arg, const char *data, size_t len)
{
    (void)arg;
    (void)data;
    (void)len;
    return 0;
}

static void probe_end(void *arg)
{
    struct probe *pr = arg;
    const struct bb_provider *p = &pr->w->conf->providers[pr->provider];
    bool ok = bb_proto_get(p->protocol)->probe_any_status
                  ? pr->status < 500
                  : pr->status < 500 && pr->status != 401 && pr->status != 403;
    char why[32];
    snprintf(why, sizeof why, "HTTP %d", pr->status);
    verdict(pr->w, pr->provider, ok, why);
    free(pr);
}

static void probe_error(void *arg, enum bb_upfail why, bool seen)
{
    (void)seen;
    struct probe *pr = arg;
    verdict(pr->w, pr->provider, false, bb_upfail_name(why));
    free(pr);
}

static const struct bb_upstream_cbs probe_cbs = {probe_head, probe_body, probe_end, probe_error};

static void start_probe(struct bb_worker *w, int provider)
{
    const struct bb_provider *p = &w->conf->providers[provider];
    const struct bb_proto_ops *ops = bb_proto_get(p->protocol);
    struct evbuffer *b = evbuffer_new();
    struct probe *pr = calloc(1, sizeof *pr);
    if (!b || !pr) {
        evbuffer_free(b);
        free(pr);
        return;
    }
    bool v6 = strchr(p->url.host, ':') != NULL;
    evbuffer_add_printf(
        b, "GET %s%s HTTP/1.1\r\nHost: %s%s%s:%u\r\nUser-Agent: busbar/" BB_VERSION " health\r\n",
        p->url.path, ops->probe_path, v6 ? "[" : "", p->url.host, v6 ? "]" : "", p->url.port);
    ops->auth_headers(b, p->api_key);
    evbuffer_add(b, "\r\n", 2);
    pr->w = w;
    pr->provider = provider;
    struct bb_upstream_deadlines dl = {2000, 5000, 5000};
    if (!bb_upstream_start(w, provider, b, &dl, &probe_cbs, pr)) {
        verdict(w, provider, false, "could not open a connection");
        free(pr);
    }
    evbuffer_free(b);
}

void bb_health_tick(struct bb_worker *w)
{
    const struct bb_conf *conf = w->conf;
    if (w->draining)
        return;
    uint64_t now = bb_now_ms();
    for (size_t p = 0; p < conf->n_providers; p++) {
        if (!conf->providers[p].health_interval_secs)
            continue;
        struct bb_shm_cell *c = NULL;
        for (size_t i = 0; i < conf->n_lanes && !c; i++)
            if (conf->lanes[i].provider == (int)p)
                c = w->lane_cells[i];
        if (!c)
            continue; /* a provider no lane uses is not probed */
        uint64_t due = atomic_load(&c->probe_due_ms);
        if (now < due)
            continue;
        uint64_t next = now + (uint64_t)conf->providers[p].health_interval_secs * 1000u;
        if (atomic_compare_exchange_strong(&c->probe_due_ms, &due, next))
            start_probe(w, (int)p);
    }
}
