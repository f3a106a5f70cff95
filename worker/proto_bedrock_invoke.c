/*
 * proto_bedrock_invoke: Amazon Bedrock InvokeModel / InvokeModelWithResponseStream for
 * Anthropic's models (POST /model/{modelId}/invoke, /invoke-with-response-stream), in both
 * roles: ingress (Claude Code in Bedrock mode, the AWS SDKs' InvokeModel) and egress (busbar
 * calls bedrock-runtime, signing with SigV4 or a Bedrock API key). Reference: Bedrock's
 * "Anthropic Claude Messages API" model parameters and @aws-sdk/client-bedrock-runtime.
 *
 * The body is Anthropic's Messages body (worker/amsg.h: proto_anthropic.c's reader, writer,
 * encoder and decoder) in Bedrock's envelope (worker/aws.h):
 * - the model is in the path (an inference profile id, a model id with ':', an ARN; URL-encoded
 *   or not), the stream is the path's: the body has no "model" and no "stream", but
 *   "anthropic_version": "bedrock-2023-05-31" and, optionally, "anthropic_beta" (a list of
 *   beta flags, the body's own: not carried to other protocols);
 * - a non-stream answer is a Message, byte for byte Anthropic's;
 * - a stream is AWS event-stream `chunk` events whose payload {"bytes": base64} holds one
 *   Messages stream event's JSON; the message_stop event carries
 *   "amazon-bedrock-invocationMetrics" (token counts and latencies); errors are exception
 *   messages (throttlingException, ...), errors outside a stream {"message"} with
 *   x-amzn-ErrorType.
 *
 * Worker process, single-threaded; stateless apart from the per-stream encoder/decoder state
 * the caller allocates.
 */
#include "worker/amsg.h"
#include "worker/aws.h"
#include "worker/eventstream.h"
#include "worker/json.h"
#include "worker/media.h"
#include "common/jscan.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <json-c/json.h>

#define VERSION "bedrock-2023-05-31"
#define SERVICE "bedrock"
#define FRAME_SCRATCH (1u << 20) /* a frame_scan's decoding room beyond the payload */

static const struct bb_amsg_carrier carrier = {true, VERSION};

static const char *action(bool stream)
{
    return stream ? "invoke-with-response-stream" : "invoke";
}

/* ---------------------------------------------------------------- requests */

static int invoke_read_request(struct bb_arena *a, const char *body, size_t len,
                               const char *model_from_path, struct bb_ir_request *out,
                               struct bb_err *err)
{
    return bb_amsg_read_request(a, body, len, model_from_path, &carrier, out, err);
}

/* The body's bytes (a translated body or the client's own) to the lane's model, signed. */
static int envelope(struct bb_arena *a, const char *body, size_t len,
                    const struct bb_egress_ctx *ctx, struct bb_egress_req *out, struct bb_err *err)
{
    const char *model = ctx->lane && ctx->lane->upstream_model ? ctx->lane->upstream_model : "";
    if (bb_aws_model_path(out->path, sizeof out->path, model, action(ctx->stream)) < 0)
        return bb_err_set(err, "bedrock invoke: no or too long upstream model");
    if (bb_proto_put(out->headers, "Content-Type: application/json\r\n", NULL, NULL) < 0 ||
        bb_proto_put(out->headers, "Accept: ",
                     ctx->stream ? BB_AWS_STREAM_TYPE : "application/json", "\r\n") < 0 ||
        evbuffer_add(out->body, body, len) < 0)
        return bb_err_set(err, "out of memory");
    return bb_aws_sign(a, ctx, out, body, len, SERVICE, err);
}

static int invoke_write_request(struct bb_arena *a, const struct bb_ir_request *ir,
                                const struct bb_egress_ctx *ctx, struct bb_egress_req *out,
                                struct bb_err *err)
{
    json_object *body = json_object_new_object();
    int rc = bb_amsg_write_body(a, ir, ctx, &carrier, body, err);
    if (rc == 0) {
        size_t n = 0;
        const char *s = bb_json_out(body, &n);
        rc = envelope(a, s, n, ctx, out, err);
    }
    json_object_put(body);
    return rc;
}

/* Same protocol: the client's body as is, for the lane's model. */
static int invoke_write_passthrough(struct bb_arena *a, const char *body, size_t len,
                                    const struct bb_egress_ctx *ctx, struct bb_egress_req *out,
                                    struct bb_err *err)
{
    return envelope(a, body, len, ctx, out, err);
}

/* ---------------------------------------------------------------- stream chunks */

/* The Messages event in a chunk's payload {"bytes": base64}: decoded into the arena. -1 when
 * the payload is no such object. */
static int chunk_event(struct bb_arena *a, const struct bb_frame *f, struct bb_frame *inner)
{
    struct bb_jscan_field b = {.key = "bytes"};
    struct bb_err err;
    if (bb_jscan_object(f->data, f->data_len, &b, 1, 8, &err) < 0 || b.type != BB_JSTRING)
        return -1;
    /* base64 has no character JSON must escape; a "\/" is '/' */
    char *s = bb_arena_alloc(a, b.len);
    if (!s)
        return -1;
    size_t n = 0;
    for (size_t i = 1; i + 1 < b.len; i++)
        if (f->data[b.off + i] != '\\')
            s[n++] = f->data[b.off + i];
    s[n] = '\0';
    struct bb_ir_str in = {s, n}, out;
    if (bb_media_b64_decode(a, &in, &out) < 0)
        return -1;
    memset(inner, 0, sizeof *inner);
    inner->event = "";
    inner->data = out.p;
    inner->data_len = out.len;
    return 0;
}

static bool is_chunk(const struct bb_frame *f)
{
    return f->event_len == 5 && memcmp(f->event, "chunk", 5) == 0;
}

/* ---------------------------------------------------------------- stream encoder (ingress) */

struct ienc {
    struct bb_amsg_enc m;
    struct timespec t0;
    int64_t first_ms; /* latency of the first event; -1 before it */
};

static int64_t since_ms(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)(t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

/* Bedrock's own metrics, on the message_stop event. */
static void add_metrics(struct ienc *e, json_object *o)
{
    const struct bb_ir_usage *u = &e->m.usage;
    json_object *m = json_object_new_object();
    bb_json_add(m, "inputTokenCount", json_object_new_int64((int64_t)u->input));
    bb_json_add(m, "outputTokenCount", json_object_new_int64((int64_t)u->output));
    bb_json_add(m, "invocationLatency", json_object_new_int64(since_ms(&e->t0)));
    bb_json_add(m, "firstByteLatency", json_object_new_int64(e->first_ms > 0 ? e->first_ms : 0));
    if (u->cache_read)
        bb_json_add(m, "cacheReadInputTokenCount", json_object_new_int64((int64_t)u->cache_read));
    if (u->cache_write)
        bb_json_add(m, "cacheWriteInputTokenCount", json_object_new_int64((int64_t)u->cache_write));
    bb_json_add(o, "amazon-bedrock-invocationMetrics", m);
}

/* One Messages event as a chunk: {"bytes": base64 of its JSON}. */
static int send_chunk(void *ep, struct evbuffer *out, const char *event, json_object *o)
{
    struct ienc *e = ep;
    if (e->first_ms < 0)
        e->first_ms = since_ms(&e->t0);
    if (strcmp(event, "message_stop") == 0)
        add_metrics(e, o);
    size_t n = 0;
    const char *s = bb_json_out(o, &n);
    struct bb_arena a;
    bb_arena_init(&a, n * 2 + 256);
    struct bb_ir_str b64 = bb_media_b64_encode(&a, s, n);
    json_object_put(o);
    int rc = -1;
    if (b64.p) {
        json_object *p = json_object_new_object();
        bb_json_add(p, "bytes", bb_json_new_str(&b64));
        const char *ps = bb_json_out(p, &n);
        rc = bb_eventstream_write_event(out, "chunk", ps, n);
        json_object_put(p);
    }
    bb_arena_free(&a);
    return rc;
}

static void invoke_enc_init(void *ep, const struct bb_ingress_ctx *ctx)
{
    struct ienc *e = ep;
    bb_amsg_enc_init(&e->m, ctx, send_chunk, e);
    clock_gettime(CLOCK_MONOTONIC, &e->t0);
    e->first_ms = -1;
}

static int invoke_enc_event(void *ep, struct bb_arena *scratch, const struct bb_ir_event *ev,
                            struct evbuffer *out)
{
    struct ienc *e = ep;
    if (e->m.done)
        return 0;
    if (ev->type == BB_IR_EV_PING)
        return 0; /* Bedrock's streams have no keep-alive events */
    if (ev->type == BB_IR_EV_ERROR) {
        /* the envelope's own error: an exception message ends the stream */
        e->m.done = true;
        return bb_aws_write_exception(out, ev);
    }
    return bb_amsg_enc_event(&e->m, scratch, ev, out);
}

static const char *invoke_stream_content_type(const struct bb_ingress_ctx *ctx)
{
    (void)ctx;
    return BB_AWS_STREAM_TYPE;
}

/* ---------------------------------------------------------------- stream decoder (egress) */

struct idec {
    struct bb_amsg_dec m;
};

static void invoke_dec_init(void *dp)
{
    struct idec *d = dp;
    bb_amsg_dec_init(&d->m);
}

static int invoke_dec_frame(void *dp, struct bb_arena *scratch, const struct bb_frame *f,
                            bb_ir_event_cb cb, void *arg)
{
    struct idec *d = dp;
    if (d->m.done)
        return 0;
    if (f->exception) {
        struct bb_ir_event ev;
        if (bb_aws_exception_event(scratch, f, &ev) < 0)
            return -1;
        d->m.done = true;
        return cb(arg, &ev);
    }
    if (!is_chunk(f))
        return 0; /* a future event type: nothing to carry */
    struct bb_frame inner;
    if (chunk_event(scratch, f, &inner) < 0)
        return -1;
    return bb_amsg_dec_frame(&d->m, scratch, &inner, cb, arg);
}

static int invoke_dec_finish(void *dp, struct bb_arena *scratch, bb_ir_event_cb cb, void *arg)
{
    struct idec *d = dp;
    return bb_amsg_dec_finish(&d->m, scratch, cb, arg);
}

/* frame_scan: a chunk means what its Messages event means; exceptions are in-band errors. */
static int invoke_frame_scan(const struct bb_frame *f, struct bb_frame_state *st,
                             struct bb_frame_info *out)
{
    memset(out, 0, sizeof *out);
    if (f->exception)
        return bb_aws_exception_scan(&bb_proto_bedrock_invoke, f, out);
    if (!is_chunk(f))
        return 0;
    struct bb_arena a;
    bb_arena_init(&a, f->data_len * 2 + FRAME_SCRATCH / 64);
    struct bb_frame inner;
    int rc = chunk_event(&a, f, &inner) < 0 ? -1 : bb_amsg_frame_scan(&inner, st, out);
    bb_arena_free(&a);
    return rc;
}

/* ---------------------------------------------------------------- the ingress envelope */

/* /model/{id}/invoke and /model/{id}/invoke-with-response-stream. */
static int invoke_match_route(const char *p, size_t n, const char *query,
                              struct bb_proto_route *out)
{
    (void)query;
    static const char *const actions[] = {"invoke", "invoke-with-response-stream", NULL};
    int which;
    if (!bb_aws_match_model_route(p, n, actions, &which, out))
        return 0;
    out->stream = which;
    return 1;
}

static bool invoke_claims_path(const char *path)
{
    return bb_path_starts(path, "/model/") || strcmp(path, "/inference-profiles") == 0;
}

/* message_stop as a chunk (what a relayed stream that stopped without it is given):
 * {"bytes": base64 of {"type":"message_stop"}}, CRCs included. */
static const char terminator[] =
    "\x00\x00\x00\x87\x00\x00\x00K\x87\xea+\xf3\x0b:event-type\x07\x00\x05"
    "chunk\x0d:content-type\x07\x00\x10"
    "application/json\x0d:message-type\x07\x00\x05"
    "event{\x22"
    "bytes\x22:\x22"
    "eyJ0eXBlIjoibWVzc2FnZV9zdG9wIn0=\x22}\xbaH\xab\x22";

static const char *const affinity_members[] = {"system", "messages", NULL};

const struct bb_proto_ops bb_proto_bedrock_invoke = {
    .id = BB_PROTO_BEDROCK_INVOKE,
    .name = "bedrock_invoke",
    .genai_system = "aws.bedrock",
    .body_family = BB_AMSG_FAMILY, /* the Messages body (worker/amsg.h) */
    .framing = BB_FRAMING_EVENTSTREAM,
    .params = bb_amsg_params,
    .n_params = BB_AMSG_N_PARAMS,
    .client_sigv4_service = SERVICE,
    .errors = BB_AWS_ERRORS,
    .match_route = invoke_match_route,
    .claims_path = invoke_claims_path,
    .models_path = "/inference-profiles",
    .models_list = bb_aws_inference_profiles,
    .auth_headers = bb_aws_auth_headers,
    .probe_path = "/",
    .probe_any_status = true, /* the runtime host lists nothing: any answer is reachable */
    .tool_id_prefix = "toolu_",
    .affinity_members = affinity_members,
    .read_request = invoke_read_request,
    .write_response = bb_amsg_write_response,
    .stream_content_type = invoke_stream_content_type,
    .enc_size = sizeof(struct ienc),
    .enc_init = invoke_enc_init,
    .enc_event = invoke_enc_event,
    .enc_finish = NULL,
    .write_request = invoke_write_request,
    .write_passthrough = invoke_write_passthrough,
    .read_response = bb_amsg_read_response,
    .dec_size = sizeof(struct idec),
    .dec_init = invoke_dec_init,
    .dec_frame = invoke_dec_frame,
    .read_error = bb_aws_read_error,
    .dec_finish = invoke_dec_finish,
    .terminator = terminator,
    .terminator_len = sizeof terminator - 1,
    .answer_check = bb_amsg_answer_check,
    .frame_scan = invoke_frame_scan,
};
