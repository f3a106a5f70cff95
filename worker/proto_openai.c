/* placeholder: proto_openai is being written (issue: six wire protocols) */
#include "worker/proto.h"

const struct bb_proto_ops bb_proto_openai = {.id = BB_PROTO_OPENAI};
