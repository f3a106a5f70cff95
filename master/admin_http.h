/*
 * admin_http: the HTTP admin API (admin.listen, bearer token from admin.token_env), served by
 * the master's poll loop, never by workers (it is low-volume). JSON in and out; the same
 * operations as the admin socket (master/governance.h):
 *   GET    /admin/keys               list          POST   /admin/keys             create (201)
 *   GET    /admin/keys/{id}          show          PATCH  /admin/keys/{id}        update
 *   DELETE /admin/keys/{id}          delete        POST   /admin/keys/{id}/revoke revoke
 *   GET    /admin/spend?by=&key=&since=&until=     spend
 *   GET    /admin/status             status JSON   GET    /status   the status page (no token:
 *                                                                    it holds no data)
 *   GET    /metrics                  Prometheus text (also alone on observability.metrics_listen,
 *                                    where the token is needed only when admin.token_env is set)
 * Every request needs `Authorization: Bearer <token>` (compared in constant time over
 * SHA-256); a missing or wrong token is 401. One request per connection (Connection: close).
 * Master process only; non-blocking sockets, per-client deadline, bounded head and body.
 */
#ifndef BB_MASTER_ADMIN_HTTP_H
#define BB_MASTER_ADMIN_HTTP_H

#include <poll.h>
#include <stddef.h>
#include <stdint.h>

#include "common/config.h"
#include "common/err.h"
#include "common/shm.h"
#include "master/governance.h"

#define BB_ADMIN_HTTP_MAX_CLIENTS 32
#define BB_ADMIN_HTTP_TIMEOUT_MS 10000
#define BB_ADMIN_HTTP_IDLE_MS 1000 /* a client that sent no byte yet is closed after this */
#define BB_ADMIN_HTTP_HEAD_MAX 16384
#define BB_ADMIN_HTTP_BODY_MAX 65536

struct bb_admin_http;

/* The API's configuration is usable: admin.listen set ⇒ the token variable is set and at
 * least 16 characters. -1 with err. (busbar -t and the master at start and reload.) */
int bb_admin_http_check(const struct bb_conf *conf, struct bb_err *err);
/* Bind conf->admin_listen and observability.metrics_listen (when set) with conf->admin_token;
 * conf and shm are kept for GET /metrics and the status page (conf must outlive the next
 * reconfigure). *out NULL when both are off. -1 with err when an address cannot be bound. */
int bb_admin_http_open(const struct bb_conf *conf, struct bb_shm *shm, struct bb_admin_http **out,
                       struct bb_err *err);
/* A reload: rebind what changed (every new socket is bound before an old one closes: on
 * failure nothing changed), take the new token and conf, open or close. -1 with err. */
int bb_admin_http_reconfigure(struct bb_admin_http **h, const struct bb_conf *conf,
                              struct bb_shm *shm, struct bb_err *err);
/* Close everything. NULL is a no-op. */
void bb_admin_http_free(struct bb_admin_http *h);
/* In a worker after fork: close the inherited fds only. */
void bb_admin_http_child_close(struct bb_admin_http *h);
/* Fill pfd (at most max entries) with the fds to poll; returns how many. */
size_t bb_admin_http_pollfds(struct bb_admin_http *h, struct pollfd *pfd, size_t max);
/* Handle poll results for the entries bb_admin_http_pollfds filled; expire slow clients. */
void bb_admin_http_process(struct bb_admin_http *h, struct bb_gov *gov, const struct pollfd *pfd,
                           size_t n, uint64_t now_ms);

#endif
