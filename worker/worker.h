/*
 * worker.h: the worker process's shared internal types (worker/ only).
 * One struct bb_worker per worker process, owned by bb_worker_main; everything here runs on
 * the worker's single libevent loop, so nothing needs locking except the shm atomics.
 */
#ifndef BB_WORKER_H
#define BB_WORKER_H

#include <stdbool.h>
#include <stdint.h>

#include <event2/event.h>

#include "common/runtime.h"
#include "common/shm.h"

#define BB_MAGIC_WORKER 0x574b5231u
#define BB_MAGIC_CONN 0x434f4e4eu
#define BB_MAGIC_REQ 0x52455131u
#define BB_MAGIC_UPCONN 0x55504331u

struct bb_conn;
struct bb_obs;
struct bb_uphost;
struct evdns_base;
struct evconnlistener;
struct bb_wcluster;
struct bb_policy_rt;

/* Per-worker smooth weighted round-robin state of one pool (nginx's algorithm). */
struct bb_pool_rt {
    int64_t *current;                  /* one per member */
    struct bb_shm_cell **member_cells; /* "pool/lane" cells, one per member */
};

struct bb_worker {
    uint32_t magic;
    struct bb_runtime *rt;
    const struct bb_conf *conf;
    int slot;
    struct bb_shm_worker *self; /* &rt->shm->workers[slot] */
    struct event_base *base;
    struct evdns_base *dns;
    struct evconnlistener **listeners;
    size_t n_listeners;
    struct event *ev_term, *ev_quit, *ev_usr1, *ev_heartbeat, *ev_drain_deadline;
    bool draining;

    struct bb_conn *conns; /* every open client connection (doubly linked) */
    uint32_t n_conns;
    struct event *http_flush;   /* runs the connections queued by bb_http_write_soon */
    struct bb_conn *flush_list; /* ... linked through flush_next */
    uint32_t n_active;          /* requests in progress in this worker */
    uint32_t max_active;        /* per-worker share of limits.max_inbound_concurrent */
    uint64_t next_request_id;
    char id_prefix[20]; /* random per worker start: request ids never repeat */

    struct bb_shm_cell **lane_cells; /* one per conf lane */
    struct bb_pool_rt *pools;        /* one per conf pool */
    bool usage_route;                /* some pool has route: usage (rate-limit headers read) */
    struct bb_uphost *uphosts;       /* one per conf provider: keep-alive pools */
    uint8_t (*token_sha)[32];        /* auth.mode token: SHA-256 of each client token */
    size_t n_token_sha;
    char *models_json[BB_PROTO__COUNT]; /* cached model lists, by protocol (NULL: none) */
    size_t models_json_len[BB_PROTO__COUNT];
    struct bb_wcluster *cluster; /* cluster mode (worker/cluster.c); NULL without it */
    struct bb_obs *obs;          /* metrics cells, access log, exporters (worker/obs.h) */
    struct bb_policy_rt *policy; /* routing policies' circuits and sockets (worker/policy.h) */
};

/* Called by http_server when a connection closes: drain bookkeeping (exit when empty). */
void bb_worker_conn_closed(struct bb_worker *w);

#endif
