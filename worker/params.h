/*
 * params: the scalar request parameters of a protocol as data. Each module lists its rows
 * (wire name, IR field, range, direction) once; from that one table come its reader, its
 * writer, its known-field list and the rows of its docs/protocols/<name>.md parameter table
 * (tests/unit/test_params.c checks that the docs match the tables). Messages, content blocks
 * and tools stay hand-written.
 *
 * Worker process; pure functions over the tables (static data in each module).
 */
#ifndef BB_PARAMS_H
#define BB_PARAMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "worker/proto.h"
#include "worker/rd.h"

/* The IR's scalar request fields (struct bb_ir_request). */
#define BB_IR_PARAM_LIST(X)                                                                        \
    X(MAX_TOKENS, "max_tokens", BB_PK_UINT)                                                        \
    X(TEMPERATURE, "temperature", BB_PK_NUMBER)                                                    \
    X(TOP_P, "top_p", BB_PK_NUMBER)                                                                \
    X(TOP_K, "top_k", BB_PK_UINT)                                                                  \
    X(SEED, "seed", BB_PK_INT)                                                                     \
    X(PRESENCE_PENALTY, "presence_penalty", BB_PK_NUMBER)                                          \
    X(FREQUENCY_PENALTY, "frequency_penalty", BB_PK_NUMBER)                                        \
    X(STOP, "stop", BB_PK_STRINGS)                                                                 \
    X(N, "n", BB_PK_UINT)

enum bb_ir_param {
#define X(id, name, kind) BB_IRP_##id,
    BB_IR_PARAM_LIST(X)
#undef X
        BB_IRP__COUNT
};

enum bb_param_kind {
    BB_PK_UINT,    /* an integer (json.h's policy) in a uint32_t field */
    BB_PK_INT,     /* an integer in an int64_t field */
    BB_PK_NUMBER,  /* a finite number in a double field */
    BB_PK_STRINGS, /* an array of strings (the stop sequences) */
};

/* Row flags. A row with neither IN nor OUT (wire NULL) says the protocol has no such field:
 * the writer reports it dropped there, when the IR has it. */
#define BB_PF_IN 1u  /* read from a client's request (ingress) */
#define BB_PF_OUT 2u /* written into a provider's request (egress) */
#define BB_PF_CLAMP                                                                                \
    4u               /* the writer clamps into [min, max] (strings: keeps max of them and          \
                        reports the rest dropped); the reader checks the type only */
#define BB_PF_ONE 8u /* strings: one string is also accepted for the array */

struct bb_param {
    const char *wire;       /* member name; "a.b" is member b of the object a */
    enum bb_ir_param field; /* the IR field */
    unsigned flags;         /* BB_PF_* */
    double min, max;        /* the range the protocol takes: without CLAMP, an integer outside
                               is refused when reading; strings: max is a count */
    const char *note;       /* for the docs row; "" when none */
};

/* The IR field's name ("top_k") and kind. */
const char *bb_ir_param_name(enum bb_ir_param f);
enum bb_param_kind bb_ir_param_kind(enum bb_ir_param f);

/* Read every IN row of t from the request root into r->req: type-checked with located errors
 * ("generationConfig.topK: expected an integer"), ranges as above. The first present row of a
 * field wins (an older alias after the current name). -1 with r's error set. */
int bb_params_read(struct bb_rd *r, json_object *root, const struct bb_param *t, size_t n);

/* Is key a top-level member some row of t reads (for the unknown-field report)? */
bool bb_params_known(const struct bb_param *t, size_t n, const char *key);
/* Is key a member of the object outer that some row of t reads ("outer.key")? */
bool bb_params_known_in(const struct bb_param *t, size_t n, const char *outer, const char *key);

/* The value of one parameter as the writer is about to write it; a module's hook may change
 * it or veto it (returning false, having reported the drop with bb_proto_drop when it must). */
struct bb_param_value {
    double num;                   /* NUMBER */
    int64_t i;                    /* UINT, INT */
    const struct bb_ir_str *strs; /* STRINGS */
    size_t n_strs;
};
typedef bool (*bb_param_hook)(void *arg, const struct bb_param *p, struct bb_param_value *v);

/* Walk t in order: an OUT row whose IR field is set is written into root (objects named by
 * "a.b" are found or created), clamped as flagged, after hook (may be NULL) saw the value; a
 * field set in ir that no OUT row of t carries is reported dropped at its first row, or after
 * the walk (in IR-field order) when t does not name it at all. ctx is the hop's egress
 * context (drops go there). */
void bb_params_write(json_object *root, const struct bb_param *t, size_t n,
                     const struct bb_ir_request *ir, struct bb_arena *a,
                     const struct bb_egress_ctx *ctx, bb_param_hook hook, void *arg);

/* The docs table of t in Markdown: a header, then one row per row of t ("| `wire` | `field` |
 * type | range | direction | note |"). Returns the length written (truncated to cap - 1). */
size_t bb_params_doc(const struct bb_param *t, size_t n, char *buf, size_t cap);

#endif
