/*
 * ir: small helpers shared by the protocol modules. Worker process; pure functions over a
 * request arena.
 */
#include "worker/ir.h"

#include <string.h>

struct bb_ir_str bb_ir_strdup(struct bb_arena *a, const char *s, size_t n)
{
    struct bb_ir_str r = {bb_arena_strndup(a, s ? s : "", s ? n : 0), s ? n : 0};
    if (!r.p)
        r.len = 0;
    return r;
}

int bb_ir_unsupported(struct bb_arena *a, struct bb_ir_request *req, const char *field)
{
    for (size_t i = 0; i < req->n_unsupported; i++)
        if (strcmp(req->unsupported[i], field) == 0)
            return 0;
    const char **v = bb_arena_alloc(a, (req->n_unsupported + 1) * sizeof *v);
    if (!v)
        return -1;
    if (req->n_unsupported)
        memcpy(v, req->unsupported, req->n_unsupported * sizeof *v);
    v[req->n_unsupported++] = field;
    req->unsupported = v;
    return 0;
}

const char *bb_ir_stop_name(enum bb_ir_stop s)
{
    static const char *const names[] = {"unset",   "end_turn", "max_tokens",
                                        "stop_sequence", "tool_use", "content_filter",
                                        "pause",   "refusal",  "error"};
    return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "unset";
}
