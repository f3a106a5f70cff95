/*
 * price: micro-dollar cost arithmetic and the price catalogue (etc/prices.yaml embedded at
 * build time as bb_prices_yaml). Any process; parsed by the master per configuration
 * generation (libyaml), inherited read-only by the workers. No shared state.
 */
#include "common/price.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "bb_prices_yaml.h"

/* ---- arithmetic ---------------------------------------------------------------------------- */

__extension__ typedef unsigned __int128 u128;

static uint64_t div_up_million(u128 x)
{
    u128 q = (x + 999999u) / 1000000u;
    return q > UINT64_MAX ? UINT64_MAX : (uint64_t)q;
}

uint64_t bb_price_cost(const struct bb_price_micros *p, const struct bb_usage_tokens *u)
{
    u128 x = (u128)u->input * p->input + (u128)u->output * p->output +
             (u128)u->cache_read * p->cache_read + (u128)u->cache_write * p->cache_write;
    return div_up_million(x);
}

uint64_t bb_price_worst_case(const struct bb_price_micros *p, uint64_t in_tokens,
                             uint64_t out_tokens)
{
    uint64_t in = p->input;
    if (p->cache_read > in)
        in = p->cache_read;
    if (p->cache_write > in)
        in = p->cache_write;
    return div_up_million((u128)in_tokens * in + (u128)out_tokens * p->output);
}

uint64_t bb_price_from_usd(double usd)
{
    if (!(usd > 0))
        return 0;
    double m = nearbyint(usd * 1e6);
    return m >= 1.8e19 ? UINT64_MAX : (uint64_t)m;
}

int bb_price_usd_parse(const char *s, uint64_t *micros)
{
    if (!s)
        return -1;
    const char *p = s;
    if (*p == '$')
        p++;
    uint64_t whole = 0, frac = 0;
    int nd = 0, nf = 0;
    for (; *p >= '0' && *p <= '9'; p++, nd++) {
        if (whole > (UINT64_MAX / 1000000u - 9) / 10)
            return -1;
        whole = whole * 10 + (uint64_t)(*p - '0');
    }
    if (*p == '.') {
        for (p++; *p >= '0' && *p <= '9'; p++, nf++) {
            if (nf >= 6)
                return -1; /* finer than a micro-dollar */
            frac = frac * 10 + (uint64_t)(*p - '0');
        }
    }
    if (*p || (nd == 0 && nf == 0))
        return -1;
    for (int i = nf; i < 6; i++)
        frac *= 10;
    *micros = whole * 1000000u + frac;
    return 0;
}

void bb_price_usd_format(uint64_t micros, char *buf, size_t n)
{
    snprintf(buf, n, "%llu.%06llu", (unsigned long long)(micros / 1000000u),
             (unsigned long long)(micros % 1000000u));
}

/* ---- catalogue ----------------------------------------------------------------------------- */

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const struct bb_price_entry *)a)->name,
                  ((const struct bb_price_entry *)b)->name);
}

void bb_price_table_free(struct bb_price_table *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->v[i].name);
    free(t->v);
    t->v = NULL;
    t->n = 0;
}

static const char *scalar(yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int parse_model(yaml_document_t *doc, yaml_node_t *v, const char *what, const char *name,
                       struct bb_price_entry *e, struct bb_err *err)
{
    struct bb_price_micros *out = &e->p;
    static const char *const tiers[] = {"input", "output", "cache_read", "cache_write"};
    uint64_t *dst[] = {&out->input, &out->output, &out->cache_read, &out->cache_write};
    bool given[4] = {false};
    if (!v || v->type != YAML_MAPPING_NODE)
        return bb_err_set(err, "%s:%lu: %s: expected a mapping of prices", what,
                          v ? (unsigned long)v->start_mark.line + 1 : 0ul, name);
    for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key);
        yaml_node_t *x = yaml_document_get_node(doc, p->value);
        const char *ks = scalar(k), *xs = scalar(x);
        int i = 0;
        while (i < 4 && (!ks || strcmp(ks, tiers[i])))
            i++;
        unsigned long line = (unsigned long)k->start_mark.line + 1;
        if (i == 4 && ks && !strcmp(ks, "max_output")) {
            char *end = NULL;
            unsigned long long mo = xs ? strtoull(xs, &end, 10) : 0;
            if (!xs || !*xs || *end || !mo || mo > UINT32_MAX)
                return bb_err_set(err,
                                  "%s:%lu: %s.max_output: expected a positive integer (tokens)",
                                  what, line, name);
            e->max_output = (uint32_t)mo;
            continue;
        }
        if (i == 4)
            return bb_err_set(err, "%s:%lu: %s: unknown key '%s'", what, line, name, ks ? ks : "?");
        if (!xs || bb_price_usd_parse(xs, dst[i]) < 0)
            return bb_err_set(err, "%s:%lu: %s.%s: expected a price in USD per 1M tokens", what,
                              line, name, tiers[i]);
        given[i] = true;
    }
    if (!given[0] || !given[1])
        return bb_err_set(err, "%s:%lu: %s: input and output prices are required", what,
                          (unsigned long)v->start_mark.line + 1, name);
    if (!given[2])
        out->cache_read = out->input;
    if (!given[3])
        out->cache_write = out->input;
    return 0;
}

int bb_price_table_parse(struct bb_price_table *t, const char *text, size_t len, const char *what,
                         struct bb_err *err)
{
    memset(t, 0, sizeof *t);
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser))
        return bb_err_set(err, "%s: cannot initialise the YAML parser", what);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        bb_err_set(err, "%s:%lu:%lu: %s", what, (unsigned long)parser.problem_mark.line + 1,
                   (unsigned long)parser.problem_mark.column + 1,
                   parser.problem ? parser.problem : "YAML error");
        yaml_parser_delete(&parser);
        return -1;
    }
    yaml_parser_delete(&parser);
    int rc = -1;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    yaml_node_t *models = NULL;
    if (root && root->type == YAML_MAPPING_NODE) {
        for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
             p++) {
            const char *k = scalar(yaml_document_get_node(&doc, p->key));
            if (k && !strcmp(k, "models"))
                models = yaml_document_get_node(&doc, p->value);
        }
    }
    if (!models || models->type != YAML_MAPPING_NODE) {
        bb_err_set(err, "%s: expected a top-level 'models:' mapping", what);
        goto out;
    }
    size_t n = (size_t)(models->data.mapping.pairs.top - models->data.mapping.pairs.start);
    t->v = bb_xcalloc(n ? n : 1, sizeof *t->v);
    for (yaml_node_pair_t *p = models->data.mapping.pairs.start; p < models->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(&doc, p->key);
        const char *name = scalar(k);
        if (!name || !*name) {
            bb_err_set(err, "%s:%lu: expected a model name", what,
                       (unsigned long)k->start_mark.line + 1);
            goto out;
        }
        struct bb_price_entry *e = &t->v[t->n];
        if (parse_model(&doc, yaml_document_get_node(&doc, p->value), what, name, e, err) < 0)
            goto out;
        e->name = bb_xstrdup(name);
        t->n++;
    }
    qsort(t->v, t->n, sizeof *t->v, cmp_entry);
    for (size_t i = 1; i < t->n; i++) {
        if (!strcmp(t->v[i - 1].name, t->v[i].name)) {
            bb_err_set(err, "%s: model '%s' is listed twice", what, t->v[i].name);
            goto out;
        }
    }
    rc = 0;
out:
    yaml_document_delete(&doc);
    if (rc < 0)
        bb_price_table_free(t);
    return rc;
}

int bb_price_table_builtin(struct bb_price_table *t, struct bb_err *err)
{
    return bb_price_table_parse(t, bb_prices_yaml, BB_PRICES_YAML_LEN, "prices.yaml (built in)",
                                err);
}

static const struct bb_price_micros *find_exact(const struct bb_price_table *t, const char *s,
                                                size_t n)
{
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *name = t->v[mid].name;
        int c = strncmp(name, s, n);
        if (c == 0 && name[n] != '\0')
            c = 1; /* name is longer than s[0..n) */
        if (c == 0)
            return &t->v[mid].p;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static bool starts(const char *s, const char *lit)
{
    return strncmp(s, lit, strlen(lit)) == 0;
}

/* What may follow a catalogue name for a versioned variant to inherit its price: a date or
 * version number, a "v1"-style revision, or latest/preview/exp tags. Anything else (e.g.
 * "-mini", "-realtime", "-pro") is a different model. */
static bool version_suffix(const char *r)
{
    if (*r >= '0' && *r <= '9')
        return true;
    if (r[0] == 'v' && r[1] >= '0' && r[1] <= '9')
        return true;
    return starts(r, "latest") || starts(r, "preview") || starts(r, "exp");
}

static const struct bb_price_micros *match(const struct bb_price_table *t, const char *s)
{
    size_t n = strlen(s);
    const struct bb_price_micros *p = find_exact(t, s, n);
    if (p)
        return p;
    for (size_t i = n; i-- > 1;) {
        if (s[i] != '-' && s[i] != ':' && s[i] != '@')
            continue;
        if (!version_suffix(s + i + 1))
            continue;
        if ((p = find_exact(t, s, i)))
            return p;
    }
    return NULL;
}

const struct bb_price_micros *bb_price_lookup(const struct bb_price_table *t, const char *model)
{
    if (!t || !t->n || !model || !*model)
        return NULL;
    const struct bb_price_micros *p = match(t, model);
    if (p)
        return p;
    const char *s = model;
    const char *slash = strrchr(s, '/'); /* "models/gemini-…", "openai/gpt-oss-120b" */
    if (slash && slash[1] && (p = match(t, slash + 1)))
        return p;
    if (slash)
        s = slash + 1;
    static const char *const regions[] = {"us.",     "eu.", "apac.", "global.",
                                          "us-gov.", "jp.", "au.",   "ca."};
    for (size_t i = 0; i < sizeof regions / sizeof regions[0]; i++) {
        if (starts(s, regions[i])) {
            s += strlen(regions[i]);
            if ((p = match(t, s)))
                return p;
            break;
        }
    }
    static const char *const vendors[] = {"anthropic.", "amazon.", "meta.",     "mistral.",
                                          "cohere.",    "ai21.",   "deepseek.", "openai.",
                                          "qwen.",      "writer."};
    for (size_t i = 0; i < sizeof vendors / sizeof vendors[0]; i++)
        if (starts(s, vendors[i]))
            return match(t, s + strlen(vendors[i]));
    return NULL;
}

void bb_price_for_lane(const struct bb_price_table *t, const struct bb_lane *lane,
                       struct bb_lane_price *out)
{
    memset(out, 0, sizeof *out);
    if (lane->price.set) {
        out->known = true;
        out->p.input = bb_price_from_usd(lane->price.input);
        out->p.output = bb_price_from_usd(lane->price.output);
        out->p.cache_read = bb_price_from_usd(lane->price.cache_read);
        out->p.cache_write = bb_price_from_usd(lane->price.cache_write);
        return;
    }
    const struct bb_price_micros *p = bb_price_lookup(t, lane->upstream_model);
    if (p) {
        out->known = true;
        out->from_catalogue = true;
        out->p = *p;
    }
}

uint32_t bb_price_max_output(const struct bb_price_table *t, const char *model)
{
    const struct bb_price_micros *p = bb_price_lookup(t, model);
    return p ? ((const struct bb_price_entry *)((const char *)p -
                                                offsetof(struct bb_price_entry, p)))
                   ->max_output
             : 0;
}
