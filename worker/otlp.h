/*
 * otlp: OTLP/HTTP JSON traces (observability.otlp_endpoint). A finished request becomes one
 * SERVER span and one CLIENT child span per upstream attempt, with the OpenTelemetry GenAI
 * semantic-convention attributes, queued on a bounded batched POST queue (worker/obs_post.h):
 * never sent from the request path, dropped and counted when the collector is slow or down.
 * Worker process, single-threaded.
 */
#ifndef BB_OTLP_H
#define BB_OTLP_H

struct bb_worker;
struct bb_request;
struct bb_otlp;

/* The exporter of w's configuration; NULL when traces are off or on OOM. */
struct bb_otlp *bb_otlp_new(struct bb_worker *w);
/* Queue the spans of a finished request (outcome: its outcome label). */
void bb_otlp_request(struct bb_otlp *t, struct bb_request *req, const char *outcome);
void bb_otlp_free(struct bb_otlp *t);

#endif
