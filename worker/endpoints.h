/*
 * endpoints: the gateway's own GET endpoints (SPEC §3.1): /v1/models, /healthz, /stats.
 * Worker process; read shared-memory counters, write JSON.
 */
#ifndef BB_ENDPOINTS_H
#define BB_ENDPOINTS_H

struct bb_request;
struct bb_worker;

/* Build the cached /v1/models body (after fork). -1 on OOM. */
int bb_endpoints_init(struct bb_worker *w);
void bb_endpoints_free(struct bb_worker *w);

void bb_endpoint_models(struct bb_request *req);
void bb_endpoint_healthz(struct bb_request *req);
void bb_endpoint_stats(struct bb_request *req);

#endif
