/*
 * proxy: the LLM endpoints' handler: model → pool/lane, the upstream attempt loop with
 * failover, relay of answers and streams. Worker process, single-threaded.
 */
#ifndef BB_PROXY_H
#define BB_PROXY_H

struct bb_request;

/* Handle POST /v1/chat/completions (body complete). Ends in bb_request_finish. */
void bb_proxy_handle(struct bb_request *req);

/* Release whatever the proxy holds for req (upstream exchange, lane slot, buffers).
 * Called by bb_request_finish; safe when the proxy never saw the request. */
void bb_proxy_release(struct bb_request *req);

#endif
