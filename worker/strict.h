/*
 * strict: a client's ask that nothing be lost in translation (request header
 * `x-busbar-strict: true`, docs/protocols.md "Strict translation"): a hop that would drop any
 * field of its request (x-busbar-dropped-fields) is refused with a 400 in the client's dialect
 * naming the fields and the lane's protocol, instead of being sent. Worker process.
 */
#ifndef BB_STRICT_H
#define BB_STRICT_H

#include <stdbool.h>

#include "worker/proto.h"

struct bb_request;

#define BB_STRICT_HEADER "x-busbar-strict"

/* True (the request answered with the 400) when req asks for strict translation and dropped
 * (the hop's x-busbar-dropped-fields) is not empty; false otherwise. */
bool bb_proto_strict(struct bb_request *req, const struct bb_proto_ops *eops, const char *dropped);

#endif
