/* placeholder: proto_gemini is being written (issue: six wire protocols) */
#include "worker/proto.h"

const struct bb_proto_ops bb_proto_gemini = {.id = BB_PROTO_GEMINI};
