/*
 * meter: governance on the request path (SPEC §6). Admission of a virtual key once the model
 * resolved (key state → pool → RPM/TPM/parallel → budget, with a worst-case reservation over
 * every lane the request may reach), the store check of governance.on_store_error, usage of
 * the answering attempt, and at the request's end the settlement (actual cost) or release
 * (nothing billed) and the usage record pushed to the master's ledger ring.
 * Worker process; shared-memory atomics only, no I/O.
 */
#ifndef BB_METER_H
#define BB_METER_H

#include <stdint.h>

#include "common/keys_shm.h"

struct bb_request;
struct bb_ir_usage;

/* After the model resolved to req->pool or req->lane. max_out: the client's output token cap
 * (0 = not set: governance.default_estimate_output_tokens). 0 = go on; -1 = refused and
 * answered in the client's dialect (401, 403, 429 + Retry-After, 429 insufficient_quota /
 * Bedrock 400, 503 when the store is down and on_store_error is deny). */
int bb_meter_admit(struct bb_request *req, uint64_t max_out);

/* bb_meter_admit that may wait: in cluster mode Redis decides (one round trip, at most
 * cluster.timeout_ms, without blocking the loop; worker/cluster.c). done(req, rc) is called
 * exactly once, possibly before this returns: rc 0 = go on, -1 = refused and answered. */
typedef void (*bb_meter_done_fn)(struct bb_request *req, int rc);
void bb_meter_admit_async(struct bb_request *req, uint64_t max_out, bb_meter_done_fn done);

/* The pieces of an admission, for worker/cluster.c. */
struct bb_meter_est {
    const char *target;  /* pool (or lane) name the key must be allowed */
    uint64_t cost;       /* worst case reserved against the budget (micro-USD) */
    uint64_t tpm_tokens; /* charged to the TPM window */
};
/* Store check and estimates: 1 = a key must be admitted (e filled), 0 = go on (no key, or
 * governance off), -1 = refused and answered. */
int bb_meter_prepare(struct bb_request *req, uint64_t max_out, struct bb_meter_est *e);
/* Admission on this node's shared memory (today's path; the cluster fallback). 0 / -1. */
int bb_meter_admit_local(struct bb_request *req, const struct bb_meter_est *e);
/* Answer a refusal in the client's dialect (401/403/429/quota); -1 (0 for BB_KEYS_OK). */
int bb_meter_refuse(struct bb_request *req, enum bb_keys_verdict v, uint32_t retry,
                    const char *target);

/* A new upstream attempt starts: usage seen by an earlier one is not billed. */
void bb_meter_attempt(struct bb_request *req);

/* Usage the answering attempt reported (cumulative totals: the largest of each tier wins). */
void bb_meter_usage(struct bb_request *req, const struct bb_ir_usage *u);

/* A stream cut after its commit point goes on on another lane (stream.on_cut: continue): the
 * part so far is billed to its lane now, as a ledger row of its own ("<id>~N"), and the next
 * part's usage starts from zero. out_floor: output tokens the part's text is at least (a cut
 * stream's provider may have reported only a start-of-message count). The request's total
 * never exceeds its reservation. */
void bb_meter_bank(struct bb_request *req, uint64_t out_floor);

/* The request ends (from its one finalize): settle or release, push the usage record. */
void bb_meter_finish(struct bb_request *req);

#endif
