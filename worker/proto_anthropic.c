/* placeholder: proto_anthropic is being written (issue: six wire protocols) */
#include "worker/proto.h"

const struct bb_proto_ops bb_proto_anthropic = {.id = BB_PROTO_ANTHROPIC};
