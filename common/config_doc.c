/*
 * config_doc: one YAML file → libyaml document tree with positions in the file as written.
 * Master process only (also busbar -t and busbarctl config check); no shared state.
 *
 * ${VAR} is replaced in the raw text before libyaml sees it (SPEC §2.1), so libyaml's marks
 * point into the interpolated text. Every replacement is recorded per line; bb_cdoc_pos maps a
 * mark back to the column of the original file, so errors point at what the operator wrote.
 * Values with control characters are rejected, which also guarantees that line numbers never
 * move. Columns count characters (UTF-8 code points), as libyaml does.
 */
#include "common/config_doc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"

/* A config larger than this is a mistake (or an attack on -t); refuse rather than parse it. */
#define CDOC_MAX_BYTES (16u << 20)

void bb_cdoc_error(struct bb_conf_errors *errs, const char *file, int line, int col,
                   const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (errs->n == errs->cap) {
        errs->cap = errs->cap ? errs->cap * 2 : 8;
        errs->v = bb_xrealloc(errs->v, errs->cap * sizeof *errs->v);
    }
    struct bb_conf_error *e = &errs->v[errs->n++];
    e->file = bb_xstrdup(file ? file : "?");
    e->line = line;
    e->col = col;
    e->msg = bb_xstrdup(buf);
}

static int map_col(const struct bb_cdoc *d, int line, int col)
{
    int out = col;
    for (size_t i = 0; i < d->n_shifts; i++) {
        const struct bb_cdoc_shift *s = &d->shifts[i];
        if (s->line != line || s->out_start > col)
            continue;
        if (col < s->out_end)
            return s->orig_start; /* inside a substituted value: point at its ${ */
        out = s->orig_end + (col - s->out_end);
    }
    return out;
}

struct bb_conf_pos bb_cdoc_pos(const struct bb_cdoc *d, const yaml_node_t *n)
{
    struct bb_conf_pos p = {d->file, 1, 1};
    if (n) {
        p.line = (int)n->start_mark.line + 1;
        p.col = map_col(d, (int)n->start_mark.line, (int)n->start_mark.column) + 1;
    }
    return p;
}

void bb_cdoc_error_at(struct bb_conf_errors *errs, const struct bb_cdoc *d, const yaml_node_t *n,
                      const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    struct bb_conf_pos p = bb_cdoc_pos(d, n);
    bb_cdoc_error(errs, d->file, p.line, p.col, "%s", buf);
}

yaml_node_t *bb_cdoc_node(const struct bb_cdoc *d, int index)
{
    return yaml_document_get_node((yaml_document_t *)&d->doc, index);
}

bool bb_cdoc_is_null(const yaml_node_t *n)
{
    if (!n || n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *v = (const char *)n->data.scalar.value;
    return !*v || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") || !strcmp(v, "NULL");
}

size_t bb_cdoc_distance(const char *a, const char *b, size_t cap)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return cap + 1;
    if ((la > lb ? la - lb : lb - la) > cap)
        return cap + 1;
    size_t row[65];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0], best;
        row[0] = i;
        best = row[0];
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t v = diag + (a[i - 1] != b[j - 1]);
            if (row[j] + 1 < v)
                v = row[j] + 1;
            if (row[j - 1] + 1 < v)
                v = row[j - 1] + 1;
            row[j] = v;
            diag = up;
            if (v < best)
                best = v;
        }
        if (best > cap)
            return cap + 1;
    }
    return row[lb] > cap ? cap + 1 : row[lb];
}

static int read_file(const char *path, char **out, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t cap = 4096, n = 0;
    char *buf = bb_xmalloc(cap);
    for (;;) {
        if (n + 1 >= cap) {
            if (cap >= CDOC_MAX_BYTES) {
                free(buf);
                close(fd);
                errno = EFBIG;
                return -1;
            }
            cap *= 2;
            buf = bb_xrealloc(buf, cap);
        }
        ssize_t r = read(fd, buf + n, cap - n - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            free(buf);
            close(fd);
            errno = e;
            return -1;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

struct sbuf {
    char *p;
    size_t n, cap;
};

static void sb_put(struct sbuf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        while (b->n + n + 1 > b->cap)
            b->cap = b->cap ? b->cap * 2 : 4096;
        b->p = bb_xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static int utf8_chars(const char *s, size_t n)
{
    int c = 0;
    for (size_t i = 0; i < n; i++)
        c += ((unsigned char)s[i] & 0xC0) != 0x80;
    return c;
}

static bool env_name_ok(const char *s, size_t n)
{
    if (n == 0 || !(s[0] == '_' || (s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z')))
        return false;
    for (size_t i = 1; i < n; i++) {
        char c = s[i];
        if (!(c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
              (c >= '0' && c <= '9')))
            return false;
    }
    return true;
}

/* Replace ${VAR} in in[0..len) into d->text, recording shifts. Lines whose first non-blank
 * character is '#' are copied untouched, so commented-out examples (etc/config.yaml) may
 * mention variables that are not set. Returns the number of errors appended. */
static int interpolate(struct bb_cdoc *d, const char *in, size_t len, struct bb_conf_errors *errs)
{
    struct sbuf out = {0};
    int nerr = 0, line = 0, col_out = 0, col_orig = 0;
    bool line_start = true, comment = false;
    size_t i = 0;
    sb_put(&out, "", 0);
    while (i < len) {
        char c = in[i];
        if (c == '\n') {
            sb_put(&out, &c, 1);
            i++;
            line++;
            col_out = col_orig = 0;
            line_start = true;
            comment = false;
            continue;
        }
        if (line_start && c != ' ' && c != '\t') {
            line_start = false;
            comment = c == '#';
        }
        if (c != '$' || comment) {
            sb_put(&out, &c, 1);
            i++;
            if (((unsigned char)c & 0xC0) != 0x80) {
                col_out++;
                col_orig++;
            }
            continue;
        }
        if (i + 1 < len && in[i + 1] == '$') { /* $$ is left alone and shields what follows */
            sb_put(&out, "$$", 2);
            i += 2;
            col_out += 2;
            col_orig += 2;
            continue;
        }
        if (i + 1 >= len || in[i + 1] != '{') {
            sb_put(&out, "$", 1);
            i++;
            col_out++;
            col_orig++;
            continue;
        }
        size_t j = i + 2;
        while (j < len && in[j] != '}' && in[j] != '\n')
            j++;
        if (j >= len || in[j] != '}') {
            bb_cdoc_error(errs, d->file, line + 1, col_orig + 1,
                          "unclosed '${' (no '}' before the end of the line)");
            nerr++;
            /* Copy the rest of the line as is and go on looking for more errors. */
            sb_put(&out, in + i, j - i);
            col_orig += utf8_chars(in + i, j - i);
            col_out += utf8_chars(in + i, j - i);
            i = j;
            continue;
        }
        const char *name = in + i + 2;
        size_t nlen = j - (i + 2);
        int ref_chars = utf8_chars(in + i, j + 1 - i);
        char nbuf[256];
        const char *val = NULL;
        if (!env_name_ok(name, nlen) || nlen >= sizeof nbuf) {
            bb_cdoc_error(errs, d->file, line + 1, col_orig + 1,
                          "invalid environment variable name '%.*s' in '${...}'",
                          (int)(nlen > 64 ? 64 : nlen), name);
            nerr++;
        } else {
            memcpy(nbuf, name, nlen);
            nbuf[nlen] = '\0';
            val = getenv(nbuf);
            if (!val) {
                bb_cdoc_error(errs, d->file, line + 1, col_orig + 1,
                              "environment variable '%s' is not set", nbuf);
                nerr++;
            } else {
                for (const char *p = val; *p; p++) {
                    if ((unsigned char)*p < 0x20 || *p == 0x7f) {
                        bb_cdoc_error(errs, d->file, line + 1, col_orig + 1,
                                      "environment variable '%s' contains a control character",
                                      nbuf);
                        nerr++;
                        val = NULL;
                        break;
                    }
                }
            }
        }
        if (!val)
            val = "";
        size_t vlen = strlen(val);
        int vchars = utf8_chars(val, vlen);
        sb_put(&out, val, vlen);
        if (d->n_shifts == d->cap_shifts) {
            d->cap_shifts = d->cap_shifts ? d->cap_shifts * 2 : 8;
            d->shifts = bb_xrealloc(d->shifts, d->cap_shifts * sizeof *d->shifts);
        }
        d->shifts[d->n_shifts++] = (struct bb_cdoc_shift){
            .line = line,
            .out_start = col_out,
            .out_end = col_out + vchars,
            .orig_start = col_orig,
            .orig_end = col_orig + ref_chars,
        };
        col_out += vchars;
        col_orig += ref_chars;
        i = j + 1;
    }
    d->text = out.p;
    d->len = out.n;
    return nerr;
}

/* line/col (0-based, characters) of a byte offset into the interpolated text. */
static void offset_to_mark(const struct bb_cdoc *d, size_t off, int *line, int *col)
{
    int l = 0;
    size_t ls = 0;
    if (off > d->len)
        off = d->len;
    for (size_t i = 0; i < off; i++) {
        if (d->text[i] == '\n') {
            l++;
            ls = i + 1;
        }
    }
    *line = l;
    *col = utf8_chars(d->text + ls, off - ls);
}

static void parse_error(struct bb_cdoc *d, const yaml_parser_t *p, struct bb_conf_errors *errs)
{
    int line, col;
    if (p->error == YAML_READER_ERROR) {
        offset_to_mark(d, p->problem_offset, &line, &col);
        bb_cdoc_error(errs, d->file, line + 1, map_col(d, line, col) + 1, "invalid text: %s",
                      p->problem ? p->problem : "unreadable input");
        return;
    }
    if (p->error == YAML_MEMORY_ERROR) {
        bb_cdoc_error(errs, d->file, 1, 1, "out of memory while parsing YAML");
        return;
    }
    line = (int)p->problem_mark.line;
    col = (int)p->problem_mark.column;
    if (p->context) {
        int cl = (int)p->context_mark.line;
        int cc = map_col(d, cl, (int)p->context_mark.column);
        bb_cdoc_error(errs, d->file, line + 1, map_col(d, line, col) + 1,
                      "YAML syntax error: %s (%s at %d:%d)",
                      p->problem ? p->problem : "invalid YAML", p->context, cl + 1, cc + 1);
    } else {
        bb_cdoc_error(errs, d->file, line + 1, map_col(d, line, col) + 1, "YAML syntax error: %s",
                      p->problem ? p->problem : "invalid YAML");
    }
}

int bb_cdoc_load(struct bb_cdoc *d, const char *path, const char *file, bool missing_ok,
                 struct bb_conf_errors *errs)
{
    memset(d, 0, sizeof *d);
    d->file = file;
    char *raw;
    size_t rlen;
    if (read_file(path, &raw, &rlen) < 0) {
        if (missing_ok && errno == ENOENT)
            return 1;
        bb_cdoc_error(errs, file, 1, 1, "cannot read '%s': %s", path,
                      errno == EFBIG ? "file too large" : strerror(errno));
        return -1;
    }
    int nerr = interpolate(d, raw, rlen, errs);
    free(raw);
    if (nerr)
        return -1; /* parsing text with holes in it would only add confusing errors */

    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) {
        bb_cdoc_error(errs, file, 1, 1, "out of memory while parsing YAML");
        return -1;
    }
    yaml_parser_set_input_string(&p, (const unsigned char *)d->text, d->len);
    if (!yaml_parser_load(&p, &d->doc)) {
        parse_error(d, &p, errs);
        yaml_parser_delete(&p);
        return -1;
    }
    d->have_doc = true;
    d->root = yaml_document_get_root_node(&d->doc);
    if (!d->root) {
        bb_cdoc_error(errs, file, 1, 1, "empty file (expected a mapping)");
        yaml_parser_delete(&p);
        return -1;
    }
    int rc = 0;
    yaml_document_t extra;
    if (!yaml_parser_load(&p, &extra)) {
        parse_error(d, &p, errs);
        rc = -1;
    } else {
        yaml_node_t *r2 = yaml_document_get_root_node(&extra);
        if (r2) {
            bb_cdoc_error(errs, file, (int)r2->start_mark.line + 1,
                          map_col(d, (int)r2->start_mark.line, (int)r2->start_mark.column) + 1,
                          "more than one YAML document in the file");
            rc = -1;
        }
        yaml_document_delete(&extra);
    }
    yaml_parser_delete(&p);
    if (rc < 0)
        d->root = NULL;
    return rc;
}

void bb_cdoc_free(struct bb_cdoc *d)
{
    if (d->have_doc)
        yaml_document_delete(&d->doc);
    free(d->text);
    free(d->shifts);
    memset(d, 0, sizeof *d);
}
