/*
 * price: spend arithmetic (SPEC §6) and the shipped price catalogue (etc/prices.yaml, embedded
 * at build time). All money is integer micro-dollars; prices are micro-dollars per 1M tokens
 * (so "$2.50 per 1M tokens" is 2500000). Cost = Σ tokens × price / 1e6 over the tiers, rounded
 * up once to the next micro-dollar, computed in 128 bits (no overflow for any u64 inputs that
 * fit the result).
 * Any process; no shared state (a table belongs to its owner, read-only once built).
 */
#ifndef BB_PRICE_H
#define BB_PRICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/config.h"
#include "common/err.h"

/* Micro-dollars per 1M tokens, per tier. */
struct bb_price_micros {
    uint64_t input, output, cache_read, cache_write;
};

/* Tokens of one request (IR usage: input excludes cache tokens; output includes reasoning,
 * which is therefore informational here and never billed twice). */
struct bb_usage_tokens {
    uint64_t input, output, cache_read, cache_write, reasoning;
};

struct bb_price_entry {
    char *name;
    struct bb_price_micros p;
    uint32_t max_output; /* the model's largest output, tokens (max_output:); 0 = unknown */
};

/* A catalogue: entries sorted by name. */
struct bb_price_table {
    struct bb_price_entry *v;
    size_t n;
};

/* The price a lane bills at, resolved once per configuration generation. */
struct bb_lane_price {
    bool known;          /* false: the lane has no price and its model is not in the catalogue */
    bool from_catalogue; /* true: looked up by upstream model name */
    struct bb_price_micros p;
};

/* Cost in micro-dollars of u at p, rounded up; UINT64_MAX if it does not fit. */
uint64_t bb_price_cost(const struct bb_price_micros *p, const struct bb_usage_tokens *u);
/* Worst-case cost for a reservation: in_tokens at the dearest input-side tier (input,
 * cache_read, cache_write) plus out_tokens at the output price, rounded up. */
uint64_t bb_price_worst_case(const struct bb_price_micros *p, uint64_t in_tokens,
                             uint64_t out_tokens);

/* Parse a catalogue (YAML: `models: { NAME: { input, output, cache_read, cache_write } }`,
 * USD per 1M tokens, cache tiers default to input). what names the text in errors. */
int bb_price_table_parse(struct bb_price_table *t, const char *text, size_t len, const char *what,
                         struct bb_err *err);
/* The catalogue shipped in the binary (etc/prices.yaml at build time). */
int bb_price_table_builtin(struct bb_price_table *t, struct bb_err *err);
void bb_price_table_free(struct bb_price_table *t);
/* Price of an upstream model name: exact entry, else the longest entry the name extends with a
 * version/date suffix ("gpt-4o-2024-08-06" → gpt-4o, "claude-sonnet-4-5-20250929" →
 * claude-sonnet-4-5, "…-latest", "…-preview…", "…-v1:0"); region ("us.", "eu.", …), vendor
 * ("anthropic.", …) and path ("models/", "openai/") prefixes are tried stripped too.
 * NULL when unknown. */
const struct bb_price_micros *bb_price_lookup(const struct bb_price_table *t, const char *model);
/* The largest output of model (looked up as bb_price_lookup does); 0 when unknown. */
uint32_t bb_price_max_output(const struct bb_price_table *t, const char *model);
/* A lane's price: its own `price:` when set, else the catalogue's for its upstream model. */
void bb_price_for_lane(const struct bb_price_table *t, const struct bb_lane *lane,
                       struct bb_lane_price *out);

/* Exact decimal USD ("12", "12.5", "0.000001") → micro-dollars; -1 when malformed, negative,
 * with more than 6 decimals, or out of range. */
int bb_price_usd_parse(const char *s, uint64_t *micros);
/* micro-dollars → "12.500000"-style text with 6 decimals (buf >= 32 bytes). */
void bb_price_usd_format(uint64_t micros, char *buf, size_t n);
/* USD per 1M tokens as a double (config `price:`) → micro-dollars per 1M, rounded to nearest. */
uint64_t bb_price_from_usd(double usd);

#endif
