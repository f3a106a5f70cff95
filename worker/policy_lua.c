/*
 * policy_lua: the script transport of routing policies (pools.*.policy.script_file). The
 * pool's sandbox (common/sandbox.h, compiled at load, inherited through fork) runs
 * route(request, candidates, context) with the call's input as fresh tables; the answer is a
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

struct lua_call {
    struct bb_request *req;
    const struct bb_policy_input *in;
    struct bb_policy_answer *ans;
    json_object *body; /* include_messages: the parsed client body */
    bool *seen;
};

static void set_str(lua_State *L, const char *k, const char *v)
{
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}

static void set_int(lua_State *L, const char *k, int64_t v)
{
    if (v < 0)
        return; /* unknown: nil */
    lua_pushinteger(L, (lua_Integer)v);
    lua_setfield(L, -2, k);
}

static void set_num(lua_State *L, const char *k, double v)
{
    lua_pushnumber(L, v);
    lua_setfield(L, -2, k);
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

static void push_request(lua_State *L, const struct lua_call *x)
{
    const struct bb_policy_input *in = x->in;
    const struct bb_http_head *h = &x->req->head;
    lua_createtable(L, 0, 12);
    set_str(L, "id", in->id);
    set_str(L, "protocol", in->protocol);
    set_str(L, "pool", in->pool);
    set_str(L, "model", in->model);
    lua_pushboolean(L, in->stream);
    lua_setfield(L, -2, "stream");
    set_int(L, "input_tokens", (int64_t)in->input_tokens);
    set_int(L, "max_output_tokens", in->max_output_tokens ? (int64_t)in->max_output_tokens : -1);
    if (in->key_id) {
        lua_createtable(L, 0, 2);
        set_str(L, "id", in->key_id);
        set_str(L, "name", in->key_name);
        lua_setfield(L, -2, "key");
    }
    lua_newtable(L);
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
    lua_setfield(L, -2, "headers");
    if (x->body) {
        push_json(L, x->body, 0);
        lua_setfield(L, -2, "body");
    }
}

static void push_candidates(lua_State *L, const struct bb_policy_input *in)
{
    lua_createtable(L, (int)in->n_cand, 0);
    for (size_t m = 0; m < in->n_cand; m++) {
        const struct bb_policy_cand *c = &in->cand[m];
        lua_createtable(L, 0, 14);
        set_str(L, "name", c->name);
        set_str(L, "lane", c->name);
        set_str(L, "model", c->model);
        set_str(L, "provider", c->provider);
        set_str(L, "protocol", c->protocol);
        set_int(L, "weight", c->weight);
        if (c->priced) {
            lua_createtable(L, 0, 2);
            set_num(L, "input", c->price_in);
            set_num(L, "output", c->price_out);
            lua_setfield(L, -2, "price");
        }
        if (c->latency_us >= 0)
            set_num(L, "latency_ms", (double)c->latency_us / 1000.0);
        if (c->ttft_us >= 0)
            set_num(L, "ttft_ms", (double)c->ttft_us / 1000.0);
        set_int(L, "inflight", c->inflight > 0 ? c->inflight : 0);
        set_int(L, "free_slots", c->free_slots);
        set_str(L, "breaker", c->breaker);
        set_int(L, "context_max", c->context_max);
        set_num(L, "headroom", c->headroom);
        lua_rawseti(L, -2, (lua_Integer)m + 1);
    }
}

static void push_context(lua_State *L, const struct bb_policy_input *in)
{
    lua_createtable(L, 0, 4);
    set_num(L, "time", in->now);
    if (in->has_budget)
        set_num(L, "budget_remaining_usd", in->budget_remaining_usd);
    set_int(L, "rpm_remaining", in->rpm_remaining);
    set_int(L, "tpm_remaining", in->tpm_remaining);
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
    if (!lua_istable(L, -1)) {
        invalid(ans, "route() did not return a table");
        return;
    }
    if (lua_getfield(L, -1, "order") != LUA_TNIL) {
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
    if (lua_getfield(L, -1, "abstain") != LUA_TNIL) {
        if (lua_isboolean(L, -1) && lua_toboolean(L, -1))
            ans->outcome = BB_MX_POL_ABSTAIN;
        else
            invalid(ans, "abstain is not true");
        return;
    }
    lua_pop(L, 1);
    if (lua_getfield(L, -1, "reject") != LUA_TNIL) {
        int isnum = 0;
        lua_Integer st = 0;
        if (lua_istable(L, -1)) {
            lua_getfield(L, -1, "status");
            st = lua_tointegerx(L, -1, &isnum);
            lua_pop(L, 1);
        }
        if (!isnum || st < 400 || st > 499) {
            invalid(ans, "reject needs a status between 400 and 499");
            return;
        }
        ans->outcome = BB_MX_POL_REJECT;
        ans->status = (int)st;
        if (lua_getfield(L, -1, "message") == LUA_TSTRING)
            snprintf(ans->message, sizeof ans->message, "%s", lua_tostring(L, -1));
        return;
    }
    invalid(ans, "route() returned none of order, abstain and reject");
}

static int route_fn(lua_State *L)
{
    struct lua_call *x = lua_touserdata(L, 1);
    if (lua_getglobal(L, "route") != LUA_TFUNCTION)
        return luaL_error(L, "the global route is not a function any more");
    push_request(L, x);
    push_candidates(L, x->in);
    push_context(L, x->in);
    lua_call(L, 3, 1);
    read_answer(L, x);
    return 0;
}

void bb_policy_lua_run(struct bb_request *req, const struct bb_policy_input *in,
                       struct bb_policy_answer *ans)
{
    const struct bb_pool *pl = &req->w->conf->pools[req->pool];
    struct lua_call x = {req, in, ans, NULL, NULL};
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
