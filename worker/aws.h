/*
 * aws: the envelope the protocol modules of Amazon Bedrock's runtime API share (Converse and
 * InvokeModel, worker/proto_bedrock*.c): the /model/{modelId}/{action} routes and egress
 * paths, credentials (a Bedrock API key as a bearer token, or an AWS key pair that signs the
 * request with SigV4, worker/sigv4.c), the error vocabulary and body, and the stream
 * exceptions of the AWS event stream (worker/eventstream.c).
 *
 * Worker process; pure functions, no shared state.
 */
#ifndef BB_AWS_H
#define BB_AWS_H

#include <stdbool.h>
#include <stddef.h>

#include "common/arena.h"
#include "common/err.h"
#include "worker/proto.h"

/* /model/{modelId}/{action}: 1 when path (n bytes, no query) is one of actions[] (a
 * NULL-terminated list; index i of the action that matched in *action), out->model set to the
 * model id as it is in the path (URL-encoded or not). An ARN
 * (arn:aws:bedrock:REGION:ACCOUNT:inference-profile/ID, foundation-model/ID,
 * application-inference-profile/ID, '/' raw or %2F) names its resource id ID. 0 otherwise. */
int bb_aws_match_model_route(const char *path, size_t n, const char *const *actions, int *action,
                             struct bb_proto_route *out);

/* "/model/<model URI-encoded>/<action>" into out (cap bytes). -1 when it does not fit. */
int bb_aws_model_path(char *out, size_t cap, const char *model, const char *action);

/* The credential lines of an egress request: a Bedrock API key (no ':') as a bearer token;
 * ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN] signs out->path and body with SigV4 for
 * service in the provider's region (providers.*.region, else the bedrock-runtime host's,
 * else us-east-1), signing Content-Type: application/json. Nothing without a key. -1 with
 * err on a malformed key pair or out of memory. */
int bb_aws_sign(struct bb_arena *a, const struct bb_egress_ctx *ctx, struct bb_egress_req *out,
                const char *body, size_t body_len, const char *service, struct bb_err *err);

/* ops->auth_headers (health probes): a Bedrock API key as a bearer token; a key pair signs
 * per request (bb_aws_sign), so nothing. */
int bb_aws_auth_headers(struct evbuffer *out, const char *key);

/* ops->read_error: {"message"} (or "Message"), the type from "__type" when present
 * ("com.amazon.coral.service#ValidationException", "ValidationException:http://…"). */
int bb_aws_read_error(const char *body, size_t len, struct bb_proto_error *out);

/* busbar's own errors in AWS's shape: the exception name in x-amzn-ErrorType, {"message"}. A
 * budget refusal is a 400 ServiceQuotaExceededException, as AWS reports quotas. */
extern const struct bb_proto_errtype bb_aws_error_types[];
#define BB_AWS_N_ERROR_TYPES 14
#define BB_AWS_ERRORS                                                                              \
    {                                                                                              \
        .types = bb_aws_error_types, .n_types = BB_AWS_N_ERROR_TYPES,                              \
        .quota_type = "ServiceQuotaExceededException", .quota_status = 400,                        \
        .type_header = "x-amzn-ErrorType", .body = bb_proto_error_message_body                     \
    }

/* The stream exceptions of Bedrock's event streams (internalServerException, ...): the HTTP
 * status of one (0 when unknown), and the one an IR error event maps to. */
int bb_aws_exception_status(const char *name, size_t n);
const char *bb_aws_exception_for(const struct bb_ir_event *ev);

/* frame_scan's verdict for an exception frame: an in-band error named by its exception type
 * (ops->read_error reads the message). Returns 0. */
int bb_aws_exception_scan(const struct bb_proto_ops *ops, const struct bb_frame *f,
                          struct bb_frame_info *out);

/* An exception frame as an IR error event in scratch (type, status, message). -1 on OOM. */
int bb_aws_exception_event(struct bb_arena *scratch, const struct bb_frame *f,
                           struct bb_ir_event *ev);

/* An IR error event as an exception message ({"message"}) appended to out. -1 on OOM. */
int bb_aws_write_exception(struct evbuffer *out, const struct bb_ir_event *ev);

/* The model lists of Bedrock's control plane, names[0..n) (busbar's pools, then lanes) as the
 * entries: ListInferenceProfiles ({"inferenceProfileSummaries":[…]}, each a SYSTEM_DEFINED,
 * ACTIVE profile whose id is the name) and ListFoundationModels ({"modelSummaries":[…]}). */
struct json_object *bb_aws_inference_profiles(const char *const *names, size_t n);
struct json_object *bb_aws_foundation_models(const char *const *names, size_t n);

#define BB_AWS_STREAM_TYPE "application/vnd.amazon.eventstream"

#endif
