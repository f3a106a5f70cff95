/*
 * status: the admin listener's status page (SPEC §8): GET /status is one self-contained HTML
 * page (master/status.html, compiled in; no data, no external assets) that polls
 * GET /admin/status, the JSON built here from shared memory: pools and their lanes with breaker
 * state, in-flight, error rate, failovers, time to first token, and spend per key.
 * Master process only (served by admin_http.c).
 */
#ifndef BB_MASTER_STATUS_H
#define BB_MASTER_STATUS_H

#include <stddef.h>

#include <json-c/json.h>

#include "common/config.h"
#include "common/shm.h"

/* The page's HTML (static). */
const char *bb_status_html(size_t *len);
/* The status JSON of conf's pools and lanes (caller owns the object). */
struct json_object *bb_status_json(const struct bb_conf *conf, struct bb_shm *shm);

#endif
