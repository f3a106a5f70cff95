/*
 * classify: sort an upstream failure into one fault class (SPEC §5.1) and extract its
 * Retry-After. Worker process; pure functions.
 */
#ifndef BB_CLASSIFY_H
#define BB_CLASSIFY_H

#include <stdint.h>
#include <time.h>

#include "common/config.h"

const char *bb_fclass_name(enum bb_fclass c);

/* Classify an HTTP error answer from provider prov: the provider's error code and type are read
 * from body with the protocol module's read_error and looked up in the provider's error_map
 * (code first, then type), then context-length and billing phrasing, then the status. */
enum bb_fclass bb_classify_http(const struct bb_provider *prov, int status, const char *body,
                                size_t len);

/* The same for error details already extracted (struct bb_proto_error of worker/proto.h):
 * status 0 = an in-band error inside a 200 answer or stream (server_error unless the details
 * say otherwise). */
struct bb_proto_error;
enum bb_fclass bb_classify_error(const struct bb_provider *prov, int status,
                                 const struct bb_proto_error *pe);

/* Retry-After as milliseconds from now: delta-seconds or an HTTP date; 0 when absent or bad.
 * Capped at one day. */
uint64_t bb_retry_after_ms(const char *value, time_t now);

#endif
