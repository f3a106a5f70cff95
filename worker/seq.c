/*
 * seq: arena vectors and the block sequencers of the protocol modules' decoders and encoders
 * (see seq.h). Worker process; pure functions over the caller's state.
 */
#include "worker/seq.h"

#include <string.h>

void *bb_vec_push(struct bb_arena *a, struct bb_vec *vec, size_t elem)
{
    if (vec->n == vec->cap) {
        size_t cap = vec->cap ? vec->cap * 2 : 4;
        char *nv = bb_arena_alloc(a, cap * elem);
        if (!nv)
            return NULL;
        if (vec->n)
            memcpy(nv, vec->v, vec->n * elem);
        vec->v = nv;
        vec->cap = cap;
    }
    char *e = (char *)vec->v + vec->n++ * elem;
    memset(e, 0, elem);
    return e;
}

enum bb_ir_block_type bb_ir_delta_block(enum bb_ir_delta d)
{
    switch (d) {
    case BB_IR_D_THINKING:
    case BB_IR_D_SIGNATURE:
        return BB_IR_THINKING;
    case BB_IR_D_INPUT_JSON:
        return BB_IR_TOOL_USE;
    case BB_IR_D_REDACTED:
        return BB_IR_REDACTED_THINKING;
    default:
        return BB_IR_TEXT;
    }
}

/* ---- decoder side ---- */

int bb_dout_emit(const struct bb_dout *o, struct bb_ir_event *ev)
{
    return o->cb(o->arg, ev);
}

int bb_dseq_close(struct bb_dseq *s, const struct bb_dout *o)
{
    if (!s->open)
        return 0;
    s->open = false;
    struct bb_ir_event ev = {.type = BB_IR_EV_BLOCK_STOP, .index = s->index, .block_type = s->type};
    return bb_dout_emit(o, &ev);
}

int bb_dseq_open(struct bb_dseq *s, const struct bb_dout *o, int64_t key, enum bb_ir_block_type t,
                 const struct bb_ir_str *id, const struct bb_ir_str *name)
{
    int rc = bb_dseq_close(s, o);
    if (rc)
        return rc;
    s->open = true;
    s->type = t;
    s->key = key;
    s->index = s->next++;
    struct bb_ir_event ev = {.type = BB_IR_EV_BLOCK_START, .index = s->index, .block_type = t};
    if (id)
        ev.id = *id;
    if (name)
        ev.name = *name;
    return bb_dout_emit(o, &ev);
}

int bb_dseq_ensure(struct bb_dseq *s, const struct bb_dout *o, int64_t key, enum bb_ir_block_type t)
{
    if (s->open && s->key == key && s->type == t)
        return 0;
    return bb_dseq_open(s, o, key, t, NULL, NULL);
}

int bb_dseq_delta_at(const struct bb_dout *o, uint32_t index, enum bb_ir_block_type t,
                     enum bb_ir_delta kind, const char *p, size_t n)
{
    struct bb_ir_event ev = {
        .type = BB_IR_EV_BLOCK_DELTA, .index = index, .block_type = t, .delta = kind};
    ev.text = bb_ir_strdup(o->scratch, p, n);
    if (!ev.text.p)
        return -1;
    return bb_dout_emit(o, &ev);
}

int bb_dseq_delta(struct bb_dseq *s, const struct bb_dout *o, enum bb_ir_delta kind, const char *p,
                  size_t n)
{
    return bb_dseq_delta_at(o, s->index, s->type, kind, p, n);
}

int bb_dseq_text(struct bb_dseq *s, const struct bb_dout *o, enum bb_ir_block_type t,
                 enum bb_ir_delta kind, const char *p, size_t n)
{
    if (!n)
        return 0;
    if (!s->open || s->type != t) {
        int rc = bb_dseq_open(s, o, -1, t, NULL, NULL);
        if (rc)
            return rc;
    }
    return bb_dseq_delta(s, o, kind, p, n);
}

/* ---- encoder side ---- */

struct bb_eseq_block *bb_eseq_find(struct bb_eseq *s, uint32_t ir)
{
    for (size_t i = 0; i < s->n_open; i++)
        if (s->open[i].ir == ir)
            return &s->open[i];
    return NULL;
}

struct bb_eseq_block *bb_eseq_open(struct bb_eseq *s, uint32_t ir, enum bb_ir_block_type t,
                                   bool shown)
{
    if (s->n_open == BB_ESEQ_MAX)
        return NULL;
    struct bb_eseq_block *b = &s->open[s->n_open++];
    memset(b, 0, sizeof *b);
    b->ir = ir;
    b->type = t;
    b->wire = shown ? s->next_wire++ : BB_ESEQ_NONE;
    return b;
}

uint32_t bb_eseq_show(struct bb_eseq *s, struct bb_eseq_block *b)
{
    if (b->wire == BB_ESEQ_NONE)
        b->wire = s->next_wire++;
    return b->wire;
}

void bb_eseq_remove(struct bb_eseq *s, struct bb_eseq_block *b)
{
    size_t i = (size_t)(b - s->open);
    if (i >= s->n_open)
        return;
    memmove(&s->open[i], &s->open[i + 1], (s->n_open - i - 1) * sizeof s->open[0]);
    s->n_open--;
}
