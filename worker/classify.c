/*
 * classify: fault classes of upstream failures (SPEC §5.1). Worker process; pure functions.
 * Order: provider code/type → context-length detection (code, then each provider's phrasing
 * on 400/413) → billing (unless the wording says the quota refills within the minute) →
 * status fallbacks.
 */
#include "worker/classify.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "worker/proto.h"

static const char *const names[] = {
#define X(id, name) name,
    BB_FCLASS_LIST(X)
#undef X
};

const char *bb_fclass_name(enum bb_fclass c)
{
    return names[c];
}

static bool has(const char *hay, const char *needle)
{
    return hay[0] && strcasestr(hay, needle) != NULL;
}

/* How providers say "the prompt is too long" (OpenAI, Anthropic, Gemini, Bedrock, Cohere,
 * and OpenAI-compatible servers). */
static const char *const context_phrases[] = {
    "context_length_exceeded",    "maximum context length", "context length",
    "prompt is too long",         "too many tokens",        "input is too long",
    "exceeds the context window", "context window",         "input token count",
    "maximum number of tokens",   "reduce the length",      "too large for model",
};

/* How providers say "no more money or quota on this account" (a billing failure takes the lane
 * down for hard_down_cooldown_secs): OpenAI insufficient_quota, Anthropic billing_error and
 * "credit balance is too low", Gemini "You exceeded your current quota, please check your plan
 * and billing details" and per-day quotas, Bedrock ServiceQuotaExceededException, Cohere's
 * monthly trial-key limit. */
static const char *const billing_phrases[] = {
    "insufficient_quota",
    "billing",
    "credit balance",
    "exceeded your current quota",
    "payment required",
    "servicequotaexceeded",
    "service quota",
    "per day",
    "perday",
    "calls / month",
    "per month",
    "out of credits",
};

/* A quota that refills soon is a rate limit, whatever else the message says (Gemini's
 * free-tier "… exceeded your current quota … Please retry in 36s", Cohere's trial-key "limited
 * to 10 API calls / minute", Bedrock's ThrottlingException, OpenAI's "try again in 2s"). */
static const char *const rate_phrases[] = {
    "per minute",        "perminute",  "per_minute", "calls / minute", "throttlingexception",
    "too many requests", "rate limit", "rate_limit", "retry in",       "try again in",
};

static int map_lookup(const struct bb_provider *prov, const char *key)
{
    if (!key[0])
        return -1;
    for (size_t i = 0; i < prov->n_error_map; i++)
        if (strcmp(prov->error_map[i].match, key) == 0)
            return (int)prov->error_map[i].fclass;
    return -1;
}

static bool any(const struct bb_proto_error *pe, const char *const *phrases, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (has(pe->code, phrases[i]) || has(pe->type, phrases[i]) || has(pe->message, phrases[i]))
            return true;
    return false;
}

#define ANY(pe, list) any(pe, list, sizeof list / sizeof list[0])

enum bb_fclass bb_classify_error(const struct bb_provider *prov, int status,
                                 const struct bb_proto_error *pe)
{
    int mapped = map_lookup(prov, pe->code);
    if (mapped < 0)
        mapped = map_lookup(prov, pe->type);
    if (mapped >= 0)
        return (enum bb_fclass)mapped;
    if ((status == 0 || status == 400 || status == 413 || status == 422) &&
        ANY(pe, context_phrases))
        return BB_FC_CONTEXT;
    if (status == 402 || has(pe->type, "billing_error"))
        return BB_FC_BILLING;
    if ((status == 0 || status == 429 || status == 403 || status == 400) &&
        ANY(pe, billing_phrases) && !ANY(pe, rate_phrases))
        return BB_FC_BILLING;
    if (has(pe->type, "overloaded") || has(pe->code, "overloaded"))
        return BB_FC_OVERLOADED;
    if (status == 401 || status == 403)
        return BB_FC_AUTH;
    if (status == 429 || has(pe->type, "throttling") || has(pe->type, "resource_exhausted") ||
        has(pe->type, "rate_limit"))
        return BB_FC_RATE_LIMIT;
    if (status == 408)
        return BB_FC_TIMEOUT;
    if (status == 529)
        return BB_FC_OVERLOADED;
    if (status >= 500 || status == 0 || status == 424) /* 0: an in-band error of a 200;
                                                          424: Bedrock's model error */
        return BB_FC_SERVER;
    return BB_FC_CLIENT;
}

enum bb_fclass bb_classify_http(const struct bb_provider *prov, int status, const char *body,
                                size_t len)
{
    struct bb_proto_error pe;
    memset(&pe, 0, sizeof pe);
    const struct bb_proto_ops *ops = bb_proto_get(prov->protocol);
    if (ops && ops->read_error && body && len)
        ops->read_error(body, len, &pe);
    return bb_classify_error(prov, status, &pe);
}

uint64_t bb_retry_after_ms(const char *v, time_t now)
{
    if (!v || !*v)
        return 0;
    while (*v == ' ')
        v++;
    uint64_t ms = 0;
    if (isdigit((unsigned char)*v)) {
        char *end;
        double secs = strtod(v, &end);
        while (*end == ' ')
            end++;
        if (*end || !(secs >= 0))
            return 0;
        /* saturate before converting: a double beyond uint64_t's range converts undefined */
        ms = secs >= 86400.0 ? 86400000u : (uint64_t)(secs * 1000.0);
    } else {
        struct tm tm;
        memset(&tm, 0, sizeof tm);
        const char *end = strptime(v, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        if (!end)
            return 0;
        time_t t = timegm(&tm);
        ms = t > now ? (uint64_t)(t - now) * 1000u : 0;
    }
    return ms > 86400000u ? 86400000u : ms;
}
