/*
 * amsg: the Anthropic Messages body (MessageCreateParams, Message, the stream's events) as
 * worker/proto_anthropic.c reads and writes it, offered to the protocol modules that carry the
 * same body in another envelope (Bedrock InvokeModel: the model in the path, anthropic_version
 * in the body, the events wrapped in AWS event-stream chunks). One reader, one writer, one
 * encoder and one decoder for every carrier: a carrier says how it differs (struct
 * bb_amsg_carrier) and where the encoder's events go (bb_amsg_send).
 *
 * Worker process, single-threaded; the functions are proto_anthropic.c's, with its rules
 * (docs/protocols/anthropic.md).
 */
#ifndef BB_AMSG_H
#define BB_AMSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "worker/params.h"
#include "worker/proto.h"
#include "worker/seq.h"

struct json_object;
struct evbuffer;

/* ops->body_family of every carrier: members the IR has no form for go along (ir->extras). */
#define BB_AMSG_FAMILY "amsg" /* the Messages API body */

/* How a carrier's body differs from the Messages API's own. */
struct bb_amsg_carrier {
    /* The path names the model and the stream: no "model" or "stream" member is read or
     * written. */
    bool model_in_path;
    /* "anthropic_version" (and "anthropic_beta") members are the body's own; the writer
     * writes version. NULL: none (the Messages API has them as headers). */
    const char *version;
};

/* The scalar parameters (docs/protocols/anthropic.md "Parameters"). */
#define BB_AMSG_N_PARAMS 9
extern const struct bb_param bb_amsg_params[BB_AMSG_N_PARAMS];

/* A request body → IR (ops->read_request with the carrier's differences). */
int bb_amsg_read_request(struct bb_arena *a, const char *body, size_t len,
                         const char *model_from_path, const struct bb_amsg_carrier *c,
                         struct bb_ir_request *out, struct bb_err *err);

/* IR → the members of a request body, into the JSON object body (ops->write_request without
 * the envelope). -1 with err when impossible. */
int bb_amsg_write_body(struct bb_arena *a, const struct bb_ir_request *ir,
                       const struct bb_egress_ctx *ctx, const struct bb_amsg_carrier *c,
                       struct json_object *body, struct bb_err *err);

/* A Message ↔ IR (ops->read_response, ops->write_response). */
int bb_amsg_read_response(struct bb_arena *a, const char *body, size_t len,
                          struct bb_ir_response *out, struct bb_err *err);
int bb_amsg_write_response(struct bb_arena *a, const struct bb_ir_response *r,
                           const struct bb_ingress_ctx *ctx, struct evbuffer *out);

/* ops->answer_check and ops->read_error of a Message / an Anthropic error object. */
int bb_amsg_answer_check(const char *body, size_t len, struct bb_ir_usage *usage,
                         struct bb_proto_error *out);
int bb_amsg_read_error(const char *body, size_t len, struct bb_proto_error *out);

/* ---- the stream encoder (IR events → stream events) ---- */

/* Where one stream event goes: the Messages API writes it as SSE (event: name, data: o).
 * Takes o. -1 on OOM. */
typedef int (*bb_amsg_send)(void *carrier_enc, struct evbuffer *out, const char *event,
                            struct json_object *o);

#define BB_AMSG_ENC_PENDING 1u /* redacted_thinking: its start is written at its data delta */

struct bb_amsg_enc {
    char request_id[128];
    char model[256];
    bool started, delta_sent, done, saw_tool;
    struct bb_eseq seq; /* open IR blocks and their wire indexes */
    struct bb_ir_usage usage;
    enum bb_ir_stop stop;
    bb_amsg_send send; /* NULL: SSE */
    void *carrier_enc; /* the send function's first argument */
};

/* Start an encoder: events go to send(carrier_enc, ...) (send NULL: SSE). ERROR events are
 * the caller's when its envelope has its own error frames (Bedrock's exceptions). */
void bb_amsg_enc_init(struct bb_amsg_enc *e, const struct bb_ingress_ctx *ctx, bb_amsg_send send,
                      void *carrier_enc);
int bb_amsg_enc_event(struct bb_amsg_enc *e, struct bb_arena *scratch, const struct bb_ir_event *ev,
                      struct evbuffer *out);

/* ---- the stream decoder (stream events → IR events) ---- */

struct bb_amsg_dec {
    bool started, done;
    bool stopped;      /* message_delta (the stop reason) arrived */
    bool in_block;     /* a wire block is open (carried or skipped) */
    bool skip;         /* the open wire block has no IR form */
    uint32_t up_index; /* wire index of the open block */
    struct bb_dseq seq;
    struct bb_ir_usage usage;
};

/* f->data is one event's JSON (its "type" names it; f->event is the fallback). */
void bb_amsg_dec_init(struct bb_amsg_dec *d);
int bb_amsg_dec_frame(struct bb_amsg_dec *d, struct bb_arena *scratch, const struct bb_frame *f,
                      bb_ir_event_cb cb, void *arg);
int bb_amsg_dec_finish(struct bb_amsg_dec *d, struct bb_arena *scratch, bb_ir_event_cb cb,
                       void *arg);

/* ops->frame_scan of one event (f->data its JSON). */
int bb_amsg_frame_scan(const struct bb_frame *f, struct bb_frame_state *st,
                       struct bb_frame_info *out);

#endif
