/*
 * meter: admission, usage and settlement of one request (see meter.h). Worker process.
 */
#include "worker/meter.h"

#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "common/ring.h"
#include "common/shm.h"
#include "worker/cluster.h"
#include "worker/ir.h"
#include "worker/request.h"
#include "worker/worker.h"

/* Input tokens are bounded by the body's bytes (a token covers at least one byte of text; the
 * JSON around the text more than covers per-message overhead); a little extra for the
 * provider's framing. The TPM window is charged a typical estimate instead (settle corrects
 * it), since a rate limit, unlike a budget, is not a hard bound on money. */
#define EST_IN_EXTRA 64u
#define TPM_BYTES_PER_TOKEN 4u

static const struct bb_lane_price *price_of(const struct bb_request *req, int lane)
{
    const struct bb_lane_price *p = &req->w->rt->lane_prices[lane];
    return p->known ? p : NULL;
}

static uint64_t worst_at(const struct bb_request *req, int lane)
{
    const struct bb_lane_price *p = price_of(req, lane);
    return p ? bb_price_worst_case(&p->p, req->est_in, req->est_out) : 0;
}

/* The dearest lane the request may be answered by: its lane, or every member of its pool and
 * of the pools on_exhausted may fall back to. */
static uint64_t worst_case(const struct bb_request *req)
{
    const struct bb_conf *conf = req->w->conf;
    if (req->pool < 0)
        return worst_at(req, req->lane);
    uint64_t worst = 0;
    int pool = req->pool;
    for (size_t hop = 0; pool >= 0 && hop <= conf->n_pools; hop++) {
        const struct bb_pool *pl = &conf->pools[pool];
        for (size_t m = 0; m < pl->n_members; m++) {
            uint64_t c = worst_at(req, pl->members[m].lane);
            worst = c > worst ? c : worst;
        }
        pool = pl->on_exhausted == BB_EXHAUSTED_FALLBACK_POOL ? pl->fallback_pool : -1;
    }
    return worst;
}

static const char *target_name(const struct bb_request *req)
{
    const struct bb_conf *conf = req->w->conf;
    return req->pool >= 0 ? conf->pools[req->pool].name : conf->lanes[req->lane].name;
}

int bb_meter_prepare(struct bb_request *req, uint64_t max_out, struct bb_meter_est *e)
{
    struct bb_worker *w = req->w;
    const struct bb_conf *conf = w->conf;
    if (!conf->gov_enabled)
        return 0;
    if (conf->gov_deny_on_store_error && atomic_load(&w->rt->shm->gov_store_failing)) {
        bb_request_fail_with(req, BB_ERR_STORE_UNAVAILABLE,
                             "usage cannot be recorded right now (the spend store is failing "
                             "and governance.on_store_error is deny); retry shortly",
                             "Retry-After: 1\r\n");
        return -1;
    }
    req->est_in = req->body_len + EST_IN_EXTRA;
    req->est_out = max_out ? max_out : conf->gov_default_estimate_output_tokens;
    if (!req->auth.has_key) {
        req->metered = true;
        return 0;
    }
    e->target = target_name(req);
    e->cost = worst_case(req);
    e->tpm_tokens = req->body_len / TPM_BYTES_PER_TOKEN + req->est_out;
    return 1;
}

int bb_meter_refuse(struct bb_request *req, enum bb_keys_verdict v, uint32_t retry,
                    const char *target)
{
    char msg[300], hdrs[64];
    switch (v) {
    case BB_KEYS_OK:
        return 0;
    case BB_KEYS_FORBIDDEN_POOL:
        snprintf(msg, sizeof msg, "this API key may not use the model '%.200s'", target);
        bb_request_fail(req, BB_ERR_FORBIDDEN, msg);
        break;
    case BB_KEYS_RATE_LIMITED:
        snprintf(hdrs, sizeof hdrs, "Retry-After: %u\r\n", retry ? retry : 1);
        bb_request_fail_with(req, BB_ERR_RATE_LIMITED,
                             "rate limit of this API key reached (requests per minute, tokens "
                             "per minute or parallel requests); retry later",
                             hdrs);
        break;
    case BB_KEYS_BUDGET_EXCEEDED:
        bb_request_fail(req, BB_ERR_QUOTA,
                        "the budget of this API key is exhausted for its period");
        break;
    default: /* revoked, disabled or expired since the lookup: the one opaque 401 */
        bb_request_fail(req, BB_ERR_UNAUTHORIZED, BB_AUTH_DENIED_MSG);
        break;
    }
    return -1;
}

int bb_meter_admit_local(struct bb_request *req, const struct bb_meter_est *e)
{
    struct bb_worker *w = req->w;
    uint32_t retry = 0;
    enum bb_keys_verdict v =
        bb_keys_admit(&req->auth.key, e->target, strlen(e->target), e->tpm_tokens, e->cost,
                      bb_wall_ms(), &req->resv, &retry);
    if (v == BB_KEYS_OK) {
        req->metered = true; /* refusals are not ledger rows: only admitted requests are */
        req->journal =
            bb_keys_journal_note(&w->rt->shm->journals[w->slot], &w->rt->shm->keys, &req->resv);
        return 0;
    }
    bb_debug("request %s: key %s refused: %s", req->id, req->auth.key.lim.id,
             bb_keys_verdict_name(v));
    return bb_meter_refuse(req, v, retry, e->target);
}

int bb_meter_admit(struct bb_request *req, uint64_t max_out)
{
    struct bb_meter_est e;
    int rc = bb_meter_prepare(req, max_out, &e);
    return rc <= 0 ? rc : bb_meter_admit_local(req, &e);
}

void bb_meter_admit_async(struct bb_request *req, uint64_t max_out, bb_meter_done_fn done)
{
    struct bb_meter_est e;
    int rc = bb_meter_prepare(req, max_out, &e);
    if (rc > 0 && req->w->cluster) {
        bb_wcluster_admit(req, &e, done); /* Redis decides; done is called later */
        return;
    }
    done(req, rc <= 0 ? rc : bb_meter_admit_local(req, &e));
}

void bb_meter_attempt(struct bb_request *req)
{
    req->usage_seen = false;
    memset(&req->usage, 0, sizeof req->usage);
}

static void take_max(uint64_t *have, uint64_t v)
{
    if (v > *have)
        *have = v;
}

void bb_meter_usage(struct bb_request *req, const struct bb_ir_usage *u)
{
    if (!req->metered || !u->set)
        return;
    req->usage_seen = true;
    take_max(&req->usage.input, u->input);
    take_max(&req->usage.output, u->output);
    take_max(&req->usage.cache_read, u->cache_read);
    take_max(&req->usage.cache_write, u->cache_write);
    take_max(&req->usage.reasoning, u->reasoning);
}

/* What the request costs: nothing unless an answer reached the client; its usage at the
 * answering lane's price; an answer that never reported usage (a client that left mid-stream,
 * a provider that does not report it) at the reservation's worst case for that lane, since
 * the provider bills it too. */
static uint64_t bill(struct bb_request *req)
{
    if (req->bill_lane < 0)
        return 0;
    const struct bb_lane_price *p = price_of(req, req->bill_lane);
    if (!p)
        return 0;
    if (req->usage_seen) {
        uint64_t c = bb_price_cost(&p->p, &req->usage);
        return c == UINT64_MAX ? BB_KEYS_SPENT_MAX : c;
    }
    bb_debug("request %s: no usage reported: billed at its worst case", req->id);
    return worst_at(req, req->bill_lane);
}

/* The most the rest of the request may still be charged: its reservation less what earlier
 * parts were billed (no limit without a reservation). */
static uint64_t clamp_to_reservation(const struct bb_request *req, uint64_t cost)
{
    if (!req->resv.slot)
        return cost;
    uint64_t left =
        req->resv.cost_micros > req->banked_cost ? req->resv.cost_micros - req->banked_cost : 0;
    if (cost > left && req->parts) {
        bb_info("request %s: the continued answer cost more than its reservation; charged %llu "
                "of %llu micro-dollars",
                req->id, (unsigned long long)left, (unsigned long long)cost);
        return left;
    }
    return cost;
}

/* One usage record for the ledger. */
static void push_record(struct bb_request *req, const char *request_id, int lane, uint64_t cost,
                        uint64_t now)
{
    struct bb_worker *w = req->w;
    const struct bb_conf *conf = w->conf;
    const struct bb_usage_tokens *u = &req->usage;
    struct bb_usage_rec rec;
    memset(&rec, 0, sizeof rec);
    bb_usage_set_str(rec.request_id, sizeof rec.request_id, request_id);
    if (req->auth.has_key)
        bb_usage_set_str(rec.key_id, sizeof rec.key_id, req->auth.key.lim.id);
    if (req->pool >= 0)
        bb_usage_set_str(rec.pool, sizeof rec.pool, conf->pools[req->pool].name);
    if (lane >= 0) {
        bb_usage_set_str(rec.lane, sizeof rec.lane, conf->lanes[lane].name);
        bb_usage_set_str(rec.provider, sizeof rec.provider,
                         conf->providers[conf->lanes[lane].provider].name);
    }
    rec.ts_ms = now;
    rec.input_tokens = u->input;
    rec.output_tokens = u->output;
    rec.cache_read_tokens = u->cache_read;
    rec.cache_write_tokens = u->cache_write;
    rec.reasoning_tokens = u->reasoning;
    rec.cost_micros = cost;
    uint64_t ms = (bb_now_us() - req->t_start_us) / 1000u;
    rec.latency_ms = ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
    rec.status = (uint16_t)(req->responded ? req->status : 499); /* 499: the client left */
    rec.ingress = (uint8_t)req->ingress;
    static uint64_t last_warn_ms; /* once a second at most: a full ring means heavy load */
    if (!bb_ring_push(&w->rt->shm->ring, &rec) && bb_now_ms() - last_warn_ms >= 1000) {
        last_warn_ms = bb_now_ms();
        bb_warn("usage ring full: usage records are being dropped (%llu so far; the ledger is "
                "behind its store, see busbarctl status)",
                (unsigned long long)atomic_load(&w->rt->shm->ring.dropped));
    }
}

void bb_meter_bank(struct bb_request *req, uint64_t out_floor)
{
    if (!req->metered || req->bill_lane < 0)
        return;
    if (req->usage_seen && req->usage.output < out_floor)
        req->usage.output = out_floor;
    uint64_t cost = clamp_to_reservation(req, bill(req));
    char id[BB_USAGE_REQID_SIZE];
    snprintf(id, sizeof id, "%.28s~%u", req->id, req->parts + 1);
    push_record(req, id, req->bill_lane, cost, bb_wall_ms());
    req->banked_cost += cost;
    req->parts++;
    req->bill_lane = -1; /* the next part is billed once it reaches the client */
    bb_meter_attempt(req);
}

void bb_meter_finish(struct bb_request *req)
{
    struct bb_worker *w = req->w;
    if (!req->metered) {
        if (req->cluster) /* left while Redis was deciding its admission */
            bb_wcluster_finish(req, 0);
        return;
    }
    req->metered = false;
    uint64_t cost = clamp_to_reservation(req, bill(req));
    req->cost_micros = req->banked_cost + cost;
    uint64_t now = bb_wall_ms();
    const struct bb_usage_tokens *u = &req->usage;
    /* cluster mode: settle in Redis, or note a local admission's spend for reconciliation */
    if (w->cluster && req->auth.has_key)
        bb_wcluster_finish(req, req->banked_cost + cost);
    if (req->resv.slot) {
        /* journal first: a kill between the two leaves the reservation charged, never
         * released twice */
        bb_keys_journal_clear(&w->rt->shm->journals[w->slot], req->journal);
        req->journal = -1;
        if (req->bill_lane >= 0 || req->parts)
            bb_keys_settle(&req->resv, req->banked_cost + cost,
                           u->input + u->output + u->cache_read + u->cache_write, now);
        else
            bb_keys_release(&req->resv, now);
    }
    if (req->parts && req->bill_lane < 0)
        return; /* every part that reached the client has its row */
    push_record(req, req->id, req->bill_lane >= 0 ? req->bill_lane : req->lane, cost, now);
}
