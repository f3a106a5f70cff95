/*
 * seq: the content-block bookkeeping every protocol module shares.
 *
 * - bb_vec: an arena vector (blocks, messages, tools) that grows by doubling.
 * - bb_dseq: a decoder's block sequencer. Wire streams either bracket their blocks (Anthropic
 *   content_block_start/stop, Bedrock contentBlockStart/Stop, Responses output items) or are
 *   flat (OpenAI and Cohere deltas, Gemini parts); the sequencer turns both into the IR's
 *   BLOCK_START / DELTA / STOP with consecutive indexes, one block open at a time, and
 *   remembers the wire's own key of the open block. (A decoder may keep several tool calls
 *   open beside it: OpenAI's, whose providers interleave parallel calls' arguments.)
 * - bb_eseq: an encoder's set of open IR blocks and the wire index each was given (IR from
 *   another dialect may interleave blocks; a wire may number only what it can show).
 *
 * Worker process; the state lives in the module's encoder/decoder struct.
 */
#ifndef BB_SEQ_H
#define BB_SEQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/arena.h"
#include "worker/ir.h"
#include "worker/proto.h"

/* ---- vector ---- */

struct bb_vec {
    void *v;
    size_t n, cap;
};

/* A new zeroed element of elem bytes at the end; NULL on OOM. */
void *bb_vec_push(struct bb_arena *a, struct bb_vec *vec, size_t elem);
#define BB_VEC_PUSH(a, vec, type) ((type *)bb_vec_push((a), (vec), sizeof(type)))

/* The block type a delta kind belongs to (a delta that arrives without its BLOCK_START). */
enum bb_ir_block_type bb_ir_delta_block(enum bb_ir_delta d);

/* ---- decoder side ---- */

/* Where one dec_frame call sends its events. */
struct bb_dout {
    bb_ir_event_cb cb;
    void *arg;
    struct bb_arena *scratch;
};

struct bb_dseq {
    bool open;                  /* a block is open */
    enum bb_ir_block_type type; /* of the open block */
    int64_t key;                /* the wire's key of the open block (its index, ...) */
    uint32_t index;             /* IR index of the open block */
    uint32_t next;              /* IR index the next block gets */
};

int bb_dout_emit(const struct bb_dout *o, struct bb_ir_event *ev);

/* Close the open block (BLOCK_STOP), if any. */
int bb_dseq_close(struct bb_dseq *s, const struct bb_dout *o);
/* Close the open block and start a new one of type t with the wire key (BLOCK_START; id and
 * name may be NULL). */
int bb_dseq_open(struct bb_dseq *s, const struct bb_dout *o, int64_t key, enum bb_ir_block_type t,
                 const struct bb_ir_str *id, const struct bb_ir_str *name);
/* The block with this wire key open, started as type t when it is not the open one. */
int bb_dseq_ensure(struct bb_dseq *s, const struct bb_dout *o, int64_t key,
                   enum bb_ir_block_type t);
/* A delta of the open block (text copied into the scratch arena). */
int bb_dseq_delta(struct bb_dseq *s, const struct bb_dout *o, enum bb_ir_delta kind, const char *p,
                  size_t n);
/* A delta of IR block index (a fragment for a block already closed). */
int bb_dseq_delta_at(const struct bb_dout *o, uint32_t index, enum bb_ir_block_type t,
                     enum bb_ir_delta kind, const char *p, size_t n);
/* Flat streams: a non-empty text-like delta into a block of type t, opening one (key -1) when
 * no block of that type is open. n == 0 emits nothing. */
int bb_dseq_text(struct bb_dseq *s, const struct bb_dout *o, enum bb_ir_block_type t,
                 enum bb_ir_delta kind, const char *p, size_t n);

/* ---- encoder side ---- */

#define BB_ESEQ_MAX 32 /* IR blocks open at once in one encoded stream */
#define BB_ESEQ_NONE UINT32_MAX

struct bb_eseq_block {
    uint32_t ir;   /* IR block index */
    uint32_t wire; /* its wire index, BB_ESEQ_NONE for a block the wire does not show */
    enum bb_ir_block_type type;
    uint32_t flags; /* the encoder's own per-block state */
};

struct bb_eseq {
    struct bb_eseq_block open[BB_ESEQ_MAX];
    size_t n_open;
    uint32_t next_wire; /* the next wire index handed out */
};

struct bb_eseq_block *bb_eseq_find(struct bb_eseq *s, uint32_t ir);
/* Track IR block ir as open; shown blocks get the next wire index. NULL when full. */
struct bb_eseq_block *bb_eseq_open(struct bb_eseq *s, uint32_t ir, enum bb_ir_block_type t,
                                   bool shown);
/* Give b the next wire index if it has none (a wire that shows a block from its first
 * delta); its wire index. */
uint32_t bb_eseq_show(struct bb_eseq *s, struct bb_eseq_block *b);
/* Forget b (after the encoder wrote its close). */
void bb_eseq_remove(struct bb_eseq *s, struct bb_eseq_block *b);

#endif
