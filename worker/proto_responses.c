/* placeholder: proto_responses is being written (issue: six wire protocols) */
#include "worker/proto.h"

const struct bb_proto_ops bb_proto_responses = {.id = BB_PROTO_RESPONSES};
