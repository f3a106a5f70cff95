/*
 * policy_lua: the script transport of routing policies (pools.*.policy.script_file). The
 * pool's sandbox (common/sandbox.h, compiled at load, inherited through fork) runs
 * route(request, candidates, context) with the call's input as tables; the answer is a
 * table of the webhook's shapes: {order = {names}}, {abstain = true} or
 * {reject = {status = 4xx, message = "..."}}. Everything that touches the Lua state runs
 * inside the sandbox's protected, budgeted call. Worker process, single-threaded.
 */
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>
#include <lauxlib.h>
#include <lua.h>

#include "common/sandbox.h"
#include "worker/policy_int.h"
#include "worker/request.h"
#include "worker/worker.h"

#define BODY_DEPTH_MAX 64 /* deeper parts of an included body arrive as nil */

/* The field names, interned once per state in a registry array: a field set is then an
 * array read and a raw set, instead of hashing a C string each time. */
#define KEY_LIST(X)                                                                                \
    X(ID, "id")                                                                                    \
    X(PROTOCOL, "protocol")                                                                        \
    X(POOL, "pool")                                                                                \
    X(MODEL, "model")                                                                              \
    X(STREAM, "stream")                                                                            \
    X(INPUT_TOKENS, "input_tokens")                                                                \
    X(MAX_OUTPUT_TOKENS, "max_output_tokens")                                                      \
    X(KEY, "key")                                                                                  \
    X(NAME, "name")                                                                                \
    X(HEADERS, "headers")                                                                          \
    X(BODY, "body")                                                                                \
    X(LANE, "lane")                                                                                \
    X(PROVIDER, "provider")                                                                        \
    X(WEIGHT, "weight")                                                                            \
    X(PRICE, "price")                                                                              \
    X(INPUT, "input")                                                                              \
    X(OUTPUT, "output")                                                                            \
    X(LATENCY_MS, "latency_ms")                                                                    \
    X(TTFT_MS, "ttft_ms")                                                                          \
    X(INFLIGHT, "inflight")                                                                        \
    X(FREE_SLOTS, "free_slots")                                                                    \
    X(BREAKER, "breaker")                                                                          \
    X(CONTEXT_MAX, "context_max")                                                                  \
    X(HEADROOM, "headroom")                                                                        \
    X(TIME, "time")                                                                                \
    X(BUDGET, "budget_remaining_usd")                                                              \
    X(RPM, "rpm_remaining")                                                                        \
    X(TPM, "tpm_remaining")                                                                        \
    X(ORDER, "order")                                                                              \
    X(ABSTAIN, "abstain")                                                                          \
    X(REJECT, "reject")                                                                            \
    X(STATUS, "status")                                                                            \
    X(MESSAGE, "message")

enum key {
    K__NONE,
#define X(id, name) K_##id,
    KEY_LIST(X)
#undef X
        K__COUNT
};

static const char keys_tag = 0;  /* its address keys the array in the registry */
static const char input_tag = 0; /* ... and the input tables kept between calls */

/* The input tables are made on a state's first call and refilled on every call after it:
 * making ten tables per call was half of what a call cost (allocation and the collector
 * that follows it). Every field busbar sets is set on every call (nil when it has no value),
 * so a script's own changes to them do not outlive the call; fields a script adds to them
 * do (docs/routing.md: treat the arguments as read-only). */
enum { IN_REQUEST = 1, IN_CANDIDATES, IN_CONTEXT, IN_KEY, IN_HEADERS, IN__COUNT };

struct lua_call {
    struct bb_request *req;
    const struct bb_policy_input *in;
    struct bb_policy_answer *ans;
    json_object *body; /* include_messages: the parsed client body */
    bool *seen;
    int keys; /* stack index of the field-name array */
};

/* Push the field-name array (made on the state's first call). */
static void push_keys(lua_State *L)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &keys_tag) == LUA_TTABLE)
        return;
    lua_pop(L, 1);
    static const char *const names[] = {
#define X(id, name) name,
        KEY_LIST(X)
#undef X
    };
    lua_createtable(L, K__COUNT, 0);
    for (int i = 1; i < K__COUNT; i++) {
        lua_pushstring(L, names[i - 1]);
        lua_rawseti(L, -2, i);
    }
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &keys_tag);
}

/* t[k] = the value at the top (popped); t below it. */
static void kset(lua_State *L, int keys, enum key k)
{
    lua_rawgeti(L, keys, k);
    lua_insert(L, -2);
    lua_rawset(L, -3);
}

/* Push key k: then its value, then lua_rawset(L, -3). */
#define KEY(L, keys, k) lua_rawgeti((L), (keys), (k))

static void set_str(lua_State *L, int keys, enum key k, const char *v)
{
    KEY(L, keys, k);
    lua_pushstring(L, v);
    lua_rawset(L, -3);
}

static void set_nil(lua_State *L, int keys, enum key k)
{
    KEY(L, keys, k);
    lua_pushnil(L);
    lua_rawset(L, -3);
}

static void set_int(lua_State *L, int keys, enum key k, int64_t v)
{
    if (v < 0) { /* unknown: nil */
        set_nil(L, keys, k);
        return;
    }
    KEY(L, keys, k);
    lua_pushinteger(L, (lua_Integer)v);
    lua_rawset(L, -3);
}

/* Push the kept table t[i] of the table at index t (an array), made with narr/nrec room
 * when missing. */
static void push_kept(lua_State *L, int t, lua_Integer i, int narr, int nrec)
{
    t = lua_absindex(L, t);
    if (lua_rawgeti(L, t, i) == LUA_TTABLE)
        return;
    lua_pop(L, 1);
    lua_createtable(L, narr, nrec);
    lua_pushvalue(L, -1);
    lua_rawseti(L, t, i);
}

/* Push the registry's array of kept input tables. */
static void push_inputs(lua_State *L)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &input_tag) == LUA_TTABLE)
        return;
    lua_pop(L, 1);
    lua_createtable(L, IN__COUNT, 0);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &input_tag);
}

/* Empty the table at the top of the stack. */
static void clear_table(lua_State *L)
{
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        lua_pop(L, 1);        /* the value */
        lua_pushvalue(L, -1); /* the key, again */
        lua_pushnil(L);
        lua_rawset(L, -4); /* t[key] = nil: allowed while traversing */
    }
}

static void set_num(lua_State *L, int keys, enum key k, double v)
{
    KEY(L, keys, k);
    lua_pushnumber(L, v);
    lua_rawset(L, -3);
}

/* t[k] onto the stack (raw: an answer's metatable is not consulted); its type. */
static int kget(lua_State *L, int t, int keys, enum key k)
{
    t = lua_absindex(L, t);
    lua_rawgeti(L, keys, k);
    return lua_rawget(L, t);
}

static void push_json(lua_State *L, json_object *o, int depth)
{
    luaL_checkstack(L, 4, "include_messages body");
    if (!o || depth > BODY_DEPTH_MAX) {
        lua_pushnil(L);
        return;
    }
    switch (json_object_get_type(o)) {
    case json_type_boolean:
        lua_pushboolean(L, json_object_get_boolean(o));
        return;
    case json_type_int:
        lua_pushinteger(L, (lua_Integer)json_object_get_int64(o));
        return;
    case json_type_double:
        lua_pushnumber(L, json_object_get_double(o));
        return;
    case json_type_string:
        lua_pushlstring(L, json_object_get_string(o), (size_t)json_object_get_string_len(o));
        return;
    case json_type_array: {
        size_t n = json_object_array_length(o);
        lua_createtable(L, n > 1024 ? 1024 : (int)n, 0);
        for (size_t i = 0; i < n; i++) {
            push_json(L, json_object_array_get_idx(o, i), depth + 1);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        return;
    }
    case json_type_object:
        lua_newtable(L);
        json_object_object_foreach(o, k, v)
        {
            push_json(L, v, depth + 1);
            lua_setfield(L, -2, k);
        }
        return;
    default:
        lua_pushnil(L);
        return;
    }
}

static void push_request(lua_State *L, const struct lua_call *x, int inputs)
{
    const struct bb_policy_input *in = x->in;
    const struct bb_http_head *h = &x->req->head;
    int K = x->keys;
    push_kept(L, inputs, IN_REQUEST, 0, 12);
    set_str(L, K, K_ID, in->id);
    set_str(L, K, K_PROTOCOL, in->protocol);
    set_str(L, K, K_POOL, in->pool);
    set_str(L, K, K_MODEL, in->model);
    lua_pushboolean(L, in->stream);
    kset(L, K, K_STREAM);
    set_int(L, K, K_INPUT_TOKENS, (int64_t)in->input_tokens);
    set_int(L, K, K_MAX_OUTPUT_TOKENS, in->max_output_tokens ? (int64_t)in->max_output_tokens : -1);
    if (in->key_id) {
        push_kept(L, inputs, IN_KEY, 0, 2);
        set_str(L, K, K_ID, in->key_id);
        set_str(L, K, K_NAME, in->key_name);
        kset(L, K, K_KEY);
    } else {
        set_nil(L, K, K_KEY);
    }
    push_kept(L, inputs, IN_HEADERS, 0, 0);
    clear_table(L);
    for (size_t i = 0; i < h->n_headers; i++) {
        const struct bb_http_header *e = &h->headers[i];
        if (e->name_len <= 9 || e->name_len > 128 || !bb_http_ieq(e->name, 9, "x-busbar-"))
            continue;
        char name[130];
        for (size_t k = 0; k < e->name_len; k++)
            name[k] = (char)(e->name[k] >= 'A' && e->name[k] <= 'Z' ? e->name[k] + 32 : e->name[k]);
        lua_pushlstring(L, name, e->name_len);
        lua_pushlstring(L, e->value, e->value_len);
        lua_rawset(L, -3);
    }
    kset(L, K, K_HEADERS);
    if (x->body) {
        push_json(L, x->body, 0);
        kset(L, K, K_BODY);
    } else {
        set_nil(L, K, K_BODY);
    }
}

static void push_candidates(lua_State *L, int K, const struct bb_policy_input *in, int inputs)
{
    push_kept(L, inputs, IN_CANDIDATES, (int)in->n_cand, 0);
    for (lua_Integer i = (lua_Integer)lua_rawlen(L, -1); i > (lua_Integer)in->n_cand; i--) {
        lua_pushnil(L); /* a script that appended to the list */
        lua_rawseti(L, -2, i);
    }
    for (size_t m = 0; m < in->n_cand; m++) {
        const struct bb_policy_cand *c = &in->cand[m];
        push_kept(L, -1, (lua_Integer)m + 1, 0, 16);
        set_str(L, K, K_NAME, c->name);
        set_str(L, K, K_LANE, c->name);
        set_str(L, K, K_MODEL, c->model);
        set_str(L, K, K_PROVIDER, c->provider);
        set_str(L, K, K_PROTOCOL, c->protocol);
        set_int(L, K, K_WEIGHT, c->weight);
        if (c->priced) {
            if (kget(L, -1, K, K_PRICE) != LUA_TTABLE) {
                lua_pop(L, 1);
                lua_createtable(L, 0, 2);
            }
            set_num(L, K, K_INPUT, c->price_in);
            set_num(L, K, K_OUTPUT, c->price_out);
            kset(L, K, K_PRICE);
        } else {
            set_nil(L, K, K_PRICE);
        }
        if (c->latency_us >= 0)
            set_num(L, K, K_LATENCY_MS, (double)c->latency_us / 1000.0);
        else
            set_nil(L, K, K_LATENCY_MS);
        if (c->ttft_us >= 0)
            set_num(L, K, K_TTFT_MS, (double)c->ttft_us / 1000.0);
        else
            set_nil(L, K, K_TTFT_MS);
        set_int(L, K, K_INFLIGHT, c->inflight > 0 ? c->inflight : 0);
        set_int(L, K, K_FREE_SLOTS, c->free_slots);
        set_str(L, K, K_BREAKER, c->breaker);
        set_int(L, K, K_CONTEXT_MAX, c->context_max);
        set_num(L, K, K_HEADROOM, c->headroom);
        lua_pop(L, 1);
    }
}

static void push_context(lua_State *L, int K, const struct bb_policy_input *in, int inputs)
{
    push_kept(L, inputs, IN_CONTEXT, 0, 4);
    set_num(L, K, K_TIME, in->now);
    if (in->has_budget)
        set_num(L, K, K_BUDGET, in->budget_remaining_usd);
    else
        set_nil(L, K, K_BUDGET);
    set_int(L, K, K_RPM, in->rpm_remaining);
    set_int(L, K, K_TPM, in->tpm_remaining);
}

static void invalid(struct bb_policy_answer *ans, const char *why)
{
    ans->outcome = BB_MX_POL_INVALID;
    snprintf(ans->why, sizeof ans->why, "%s", why);
}

/* The table at the top of the stack into x->ans. */
static void read_answer(lua_State *L, struct lua_call *x)
{
    struct bb_policy_answer *ans = x->ans;
    int K = x->keys;
    if (!lua_istable(L, -1)) {
        invalid(ans, "route() did not return a table");
        return;
    }
    if (kget(L, -1, K, K_ORDER) != LUA_TNIL) {
        if (!lua_istable(L, -1)) {
            invalid(ans, "order is not a list of member names");
            return;
        }
        ans->outcome = BB_MX_POL_ORDER;
        lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
        for (lua_Integer i = 1; i <= n && ans->outcome == BB_MX_POL_ORDER; i++) {
            size_t len = 0;
            const char *s =
                lua_rawgeti(L, -1, i) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
            int m = s ? bb_policy_member(x->req, s, len) : -1;
            if (m < 0) {
                char why[160];
                snprintf(why, sizeof why, "order names %s%.64s%s, not a member of the pool",
                         s ? "'" : "", s ? s : luaL_typename(L, -1), s ? "'" : "");
                invalid(ans, why);
            } else {
                bb_policy_order_add(ans, x->seen, m);
            }
            lua_pop(L, 1);
        }
        return;
    }
    lua_pop(L, 1);
    if (kget(L, -1, K, K_ABSTAIN) != LUA_TNIL) {
        if (lua_isboolean(L, -1) && lua_toboolean(L, -1))
            ans->outcome = BB_MX_POL_ABSTAIN;
        else
            invalid(ans, "abstain is not true");
        return;
    }
    lua_pop(L, 1);
    if (kget(L, -1, K, K_REJECT) != LUA_TNIL) {
        int isnum = 0;
        lua_Integer st = 0;
        if (lua_istable(L, -1)) {
            kget(L, -1, K, K_STATUS);
            st = lua_tointegerx(L, -1, &isnum);
            lua_pop(L, 1);
        }
        if (!isnum || st < 400 || st > 499) {
            invalid(ans, "reject needs a status between 400 and 499");
            return;
        }
        ans->outcome = BB_MX_POL_REJECT;
        ans->status = (int)st;
        if (kget(L, -1, K, K_MESSAGE) == LUA_TSTRING)
            snprintf(ans->message, sizeof ans->message, "%s", lua_tostring(L, -1));
        return;
    }
    invalid(ans, "route() returned none of order, abstain and reject");
}

static int route_fn(lua_State *L)
{
    struct lua_call *x = lua_touserdata(L, 1);
    push_keys(L);
    x->keys = lua_gettop(L);
    push_inputs(L);
    int inputs = lua_gettop(L);
    if (lua_getglobal(L, "route") != LUA_TFUNCTION)
        return luaL_error(L, "the global route is not a function any more");
    push_request(L, x, inputs);
    push_candidates(L, x->keys, x->in, inputs);
    push_context(L, x->keys, x->in, inputs);
    lua_call(L, 3, 1);
    read_answer(L, x);
    return 0;
}

void bb_policy_lua_run(struct bb_request *req, const struct bb_policy_input *in,
                       struct bb_policy_answer *ans)
{
    const struct bb_pool *pl = &req->w->conf->pools[req->pool];
    struct lua_call x = {req, in, ans, NULL, NULL, 0};
    x.seen = bb_arena_calloc(&req->arena, pl->n_members + 1);
    ans->order = bb_arena_calloc(&req->arena, (pl->n_members + 1) * sizeof *ans->order);
    if (!x.seen || !ans->order) {
        ans->outcome = BB_MX_POL_ERROR;
        snprintf(ans->why, sizeof ans->why, "out of memory");
        return;
    }
    if (in->body) {
        struct json_tokener *tok = json_tokener_new_ex(128);
        x.body = tok ? json_tokener_parse_ex(tok, in->body, (int)in->body_len) : NULL;
        if (tok)
            json_tokener_free(tok);
    }
    char err[300];
    int rc =
        bb_sandbox_pcall(pl->policy.script, route_fn, &x, pl->policy.timeout_ms, err, sizeof err);
    if (x.body)
        json_object_put(x.body);
    if (rc < 0) {
        ans->outcome = rc == -2 ? BB_MX_POL_TIMEOUT : BB_MX_POL_ERROR;
        ans->n_order = 0;
        snprintf(ans->why, sizeof ans->why, "script: %.280s", err);
    }
}
