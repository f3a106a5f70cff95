/*
 * config_doc: the document layer under the config loader (prefix bb_cdoc_). Reads one YAML
 * file, replaces ${VAR} from the environment, parses it with libyaml into a node tree, and maps
 * every node back to the line:col of the file as written (before interpolation). Also owns the
 * located-error list helpers. Master process only (and busbar -t); no shared state.
 */
#ifndef BB_CONFIG_DOC_H
#define BB_CONFIG_DOC_H

#include <stdbool.h>
#include <stddef.h>
#include <yaml.h>

#include "common/config.h"

/* One ${VAR} replacement on a line: columns (0-based, in characters) in the text handed to
 * libyaml (out_*) and in the file as written (orig_*). */
struct bb_cdoc_shift {
    int line;
    int out_start, out_end, orig_start, orig_end;
};

struct bb_cdoc {
    const char *file; /* name in messages and positions; not owned (points into conf->files) */
    char *text;       /* interpolated text */
    size_t len;
    struct bb_cdoc_shift *shifts;
    size_t n_shifts, cap_shifts;
    yaml_document_t doc;
    bool have_doc;
    yaml_node_t *root; /* non-NULL after a successful load */
};

/* Append "file:line:col: msg" to errs; file is copied. line/col are 1-based. */
void bb_cdoc_error(struct bb_conf_errors *errs, const char *file, int line, int col,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Position of a node in the file as written. */
struct bb_conf_pos bb_cdoc_pos(const struct bb_cdoc *d, const yaml_node_t *n);

/* Append an error located at node n of d. */
void bb_cdoc_error_at(struct bb_conf_errors *errs, const struct bb_cdoc *d, const yaml_node_t *n,
                      const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Read path, interpolate ${VAR}, parse. file labels positions (not copied; must outlive d).
 * 0 with d->root set; -1 with located errors appended (d is still safe to bb_cdoc_free).
 * With missing_ok, a file that does not exist returns 1 and appends nothing. */
int bb_cdoc_load(struct bb_cdoc *d, const char *path, const char *file, bool missing_ok,
                 struct bb_conf_errors *errs);
void bb_cdoc_free(struct bb_cdoc *d);

/* Child node by index; NULL when out of range. */
yaml_node_t *bb_cdoc_node(const struct bb_cdoc *d, int index);

/* True for a plain null scalar: empty, "~", "null", "Null", "NULL". */
bool bb_cdoc_is_null(const yaml_node_t *n);

/* Levenshtein distance, capped: returns cap + 1 as soon as the distance exceeds cap. */
size_t bb_cdoc_distance(const char *a, const char *b, size_t cap);

#endif
