/* placeholder: proto_cohere is being written (issue: six wire protocols) */
#include "worker/proto.h"

const struct bb_proto_ops bb_proto_cohere = {.id = BB_PROTO_COHERE};
