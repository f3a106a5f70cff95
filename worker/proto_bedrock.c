/* placeholder: proto_bedrock is being written (issue: six wire protocols) */
#include "worker/proto.h"

const struct bb_proto_ops bb_proto_bedrock = {.id = BB_PROTO_BEDROCK};
