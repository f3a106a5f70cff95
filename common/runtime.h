/*
 * runtime: the root object of one configuration generation (house style rule 2), and the
 * seam between master/ and worker/ (which never include each other's headers).
 * Built by the master; inherited read-only by the workers of that generation through fork().
 */
#ifndef BB_RUNTIME_H
#define BB_RUNTIME_H

#include <stdint.h>
#include <openssl/ssl.h>

#include "common/config.h"
#include "common/price.h"
#include "common/shm.h"

struct bb_runtime {
    struct bb_conf *conf;
    int *listen_fds; /* bound, listening, non-blocking; one per conf->listen[] */
    size_t n_listen;
    SSL_CTX *server_ctx; /* NULL without tls; mTLS configured when client_ca_file set */
    SSL_CTX *client_ctx; /* upstream TLS: system trust store, verify peer */
    SSL_CTX *redis_ctx;  /* cluster mode over rediss:// (common/redis.h); else NULL */
    struct bb_shm *shm;
    uint32_t generation; /* 1, 2, ... one per successful (re)load */
    /* Price each lane bills at (conf->lanes[i]): its `price:`, else the built-in catalogue's
     * entry for its upstream model (common/price.h). n_lanes entries. */
    struct bb_lane_price *lane_prices;
};

/* Worker entry point, called in the child right after fork(). slot indexes shm->workers.
 * Runs the event loop until drained; returns the process exit status. Defined in worker/. */
int bb_worker_main(struct bb_runtime *rt, int slot);

#endif
