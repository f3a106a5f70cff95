/*
 * media: inline media as the protocol modules carry it. The IR keeps files base64-encoded
 * with their media type; wires carry them as data: URLs (OpenAI, Responses, Cohere), base64
 * fields (Anthropic, Gemini) or raw bytes in base64 (Bedrock). Worker process; pure functions
 * over a request arena.
 */
#ifndef BB_MEDIA_H
#define BB_MEDIA_H

#include <stdbool.h>
#include <stddef.h>

#include "common/arena.h"
#include "worker/ir.h"

/* "data:<media type>[;params];base64,<data>" (scheme and marker in any case): the media type
 * (up to the first ';') and the data, pointing into u. false for any other URL. */
bool bb_media_split_data_url(const char *u, size_t n, struct bb_ir_str *media_type,
                             struct bb_ir_str *data);

/* "data:<media type>;base64,<data>" in the arena (media type fallback when b has none);
 * {NULL,0} on OOM. */
struct bb_ir_str bb_media_data_url(struct bb_arena *a, const struct bb_ir_str *media_type,
                                   const char *fallback, const struct bb_ir_str *data);

/* Standard base64 of src[0..n) in the arena; {NULL,0} on OOM. */
struct bb_ir_str bb_media_b64_encode(struct bb_arena *a, const char *src, size_t n);

/* Decode standard base64 (whitespace ignored, padding optional) into the arena. -1 when
 * malformed or on OOM. */
int bb_media_b64_decode(struct bb_arena *a, const struct bb_ir_str *s, struct bb_ir_str *out);

#endif
