/*
 * rd: the reader context every protocol module reads wire JSON with (requests as ingress,
 * answers as egress). It keeps the path of the value being read, so every error names where
 * it is ("messages[2].content[0].text: expected a string"), the arena strings are copied into,
 * and the IR request whose unsupported-field list the reader fills. Worker process; one
 * context per read.
 *
 * Paths: bb_rd_in / bb_rd_at descend (returning a mark), bb_rd_out(mark) comes back. Getters
 * take the object and the member key; an absent or null member leaves the output alone (and
 * *has false) unless it is required. Numbers follow json.h's one numeric policy. Every
 * function returning int returns 0, or -1 with the context's error set.
 */
#ifndef BB_RD_H
#define BB_RD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "worker/json.h"

struct bb_rd {
    struct bb_arena *a;
    struct bb_ir_request *req; /* unsupported fields go here; NULL reading an answer */
    struct bb_err *err;
    const char *prefix; /* what is read, before the path in errors ("anthropic response") */
    char path[256];
    size_t len;
};

void bb_rd_init(struct bb_rd *r, struct bb_arena *a, struct bb_ir_request *req, struct bb_err *err);

/* Descend into member key / array element i; the mark returned restores the path. */
size_t bb_rd_in(struct bb_rd *r, const char *key);
size_t bb_rd_at(struct bb_rd *r, size_t i);
void bb_rd_out(struct bb_rd *r, size_t mark);

/* Walking an array with the path following along:
 *
 *     struct bb_rd_iter it = bb_rd_iter(r, tools, "tools");
 *     json_object *t;
 *     while (bb_rd_next(&it, &t))
 *         if (rd_tool(r, t, &v) < 0)
 *             return -1;
 *
 * Inside the loop the path ends in key[i] (key NULL: [i] after the current path); the loop's
 * end restores it (a failure returns with the failing element's path, already reported).
 * it.at is the element's index. */
struct bb_rd_iter {
    struct bb_rd *r;
    json_object *arr;
    size_t at, n, mark, m;
    bool in;
};
struct bb_rd_iter bb_rd_iter(struct bb_rd *r, json_object *arr, const char *key);
bool bb_rd_next(struct bb_rd_iter *it, json_object **elem);

struct bb_vec;

/* A block of type t (TEXT, THINKING) holding the string s, pushed onto the block vector v. */
int bb_rd_push_text(struct bb_rd *r, struct bb_vec *v, enum bb_ir_block_type t, json_object *s);

/* The request's tools: the array tools (member "tools"), one call of one per element (with
 * the path at it; it may push a tool or record an unsupported one), into r->req->tools. */
typedef int (*bb_rd_tool_fn)(struct bb_rd *r, json_object *tool, struct bb_vec *tools);
int bb_rd_tools(struct bb_rd *r, json_object *tools, bb_rd_tool_fn one);

/* "<path>[.key]: <message>" (key may be NULL: the current path itself). */
int bb_rd_fail(struct bb_rd *r, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* "<path>[.key]: expected <what>" */
int bb_rd_expect(struct bb_rd *r, const char *key, const char *what);
int bb_rd_required(struct bb_rd *r, const char *key);
int bb_rd_oom(struct bb_rd *r);

/* Record a field the IR cannot carry (x-busbar-dropped-fields): prefix + name, copied. The
 * names go into a response header: a name that is not printable ASCII without spaces and
 * commas, or longer than 64 bytes, is recorded as "?". */
int bb_rd_unsupported(struct bb_rd *r, const char *prefix, const char *name);

/* Member key of o must be of type t (absent/null: *out NULL, an error when required). */
int bb_rd_want(struct bb_rd *r, json_object *o, const char *key, enum json_type t, bool required,
               json_object **out);
/* A value already in hand must be of type t ("<path>[.key]: expected ..."). */
int bb_rd_type(struct bb_rd *r, json_object *v, const char *key, enum json_type t);

/* Typed members. */
int bb_rd_str(struct bb_rd *r, json_object *o, const char *key, bool required,
              struct bb_ir_str *out);
int bb_rd_bool(struct bb_rd *r, json_object *o, const char *key, bool *has, bool *out);
int bb_rd_num(struct bb_rd *r, json_object *o, const char *key, bool *has, double *out);
int bb_rd_int(struct bb_rd *r, json_object *o, const char *key, int64_t min, int64_t max, bool *has,
              int64_t *out);
int bb_rd_u32(struct bb_rd *r, json_object *o, const char *key, bool *has, uint32_t *out);

/* The same checks on a value in hand (v non-NULL), named by key under the current path. */
int bb_rd_int_value(struct bb_rd *r, json_object *v, const char *key, int64_t min, int64_t max,
                    int64_t *out);

/* Answers are read leniently: a string member is copied when it is a string, anything else
 * (absent, null, another type) leaves out alone. -1 only on OOM. */
int bb_rd_take(struct bb_rd *r, json_object *o, const char *key, struct bb_ir_str *out);

/* Copy a JSON string / any value's JSON text into the arena. */
int bb_rd_dup(struct bb_rd *r, json_object *s, struct bb_ir_str *out);
int bb_rd_text(struct bb_rd *r, json_object *v, struct bb_ir_str *out);

/* A provider-run tool of kind `kind` (a static string) whose definition is def: appended to
 * r->req->hosted. -1 on OOM. */
int bb_rd_hosted(struct bb_rd *r, const char *kind, json_object *def);

#endif
