/*
 * test_sandbox: the routing scripts' Lua sandbox (common/sandbox): what a script can reach,
 * the per-call instruction, time and memory budgets, and that a script cannot catch its own
 * cut-off.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <lauxlib.h>
#include <lua.h>

#include "common/sandbox.h"
#include "common/shm.h"

static struct bb_sandbox *load(const char *src)
{
    char err[512] = "";
    struct bb_sandbox *s = bb_sandbox_new("t.lua", src, strlen(src), err, sizeof err);
    if (!s)
        fail_msg("load failed: %s", err);
    return s;
}

/* Calls route() with one argument (the ud string) and stores its string result. */
struct call {
    const char *arg;
    char out[256];
};

static int call_route(lua_State *L)
{
    struct call *c = lua_touserdata(L, 1);
    lua_getglobal(L, "route");
    lua_pushstring(L, c->arg);
    lua_call(L, 1, 1);
    snprintf(c->out, sizeof c->out, "%s", lua_isstring(L, -1) ? lua_tostring(L, -1) : "?");
    return 0;
}

static int run(struct bb_sandbox *s, const char *arg, char *out, size_t cap, uint32_t ms)
{
    struct call c = {arg, ""};
    char err[512] = "";
    int rc = bb_sandbox_pcall(s, call_route, &c, ms, err, sizeof err);
    snprintf(out, cap, "%s", rc == 0 ? c.out : err);
    return rc;
}

static void test_load_errors(void **state)
{
    (void)state;
    char err[512];
    assert_null(bb_sandbox_new("x.lua", "function route(", 15, err, sizeof err));
    assert_non_null(strstr(err, "x.lua:1:"));
    assert_null(bb_sandbox_new("x.lua", "x = 1", 5, err, sizeof err));
    assert_non_null(strstr(err, "defines no function route"));
    /* a precompiled chunk is refused: text only */
    assert_null(bb_sandbox_new("x.lua", "\x1bLua", 4, err, sizeof err));
    assert_non_null(strstr(err, "attempt to load a binary chunk"));
    assert_null(bb_sandbox_new("x.lua", "while true do end", 17, err, sizeof err));
    assert_string_equal(err, "x.lua: instruction budget exhausted (1000000 instructions)");
}

static void test_reach(void **state)
{
    (void)state;
    struct bb_sandbox *s = load("function route(what)\n"
                                "  local f = load('return ' .. what)\n"
                                "  return f\n"
                                "end\n");
    char out[512];
    assert_int_equal(run(s, "x", out, sizeof out, 100), -1);
    assert_non_null(strstr(out, "attempt to call a nil value (global 'load')"));
    bb_sandbox_free(s);
    s = load("function route(name)\n"
             "  local v = _G\n"
             "  for part in (name .. '.'):gmatch('([^.]*)%.') do v = v[part] end\n"
             "  return type(v)\n"
             "end\n");
    assert_int_equal(run(s, "io", out, sizeof out, 100), -1); /* gmatch is gone */
    bb_sandbox_free(s);
    s = load("function route(name)\n"
             "  local v = _G\n"
             "  local i = 1\n"
             "  while true do\n"
             "    local j = string.find(name, '.', i, true)\n"
             "    v = v[string.sub(name, i, (j or 0) - 1)]\n"
             "    if not j or v == nil then break end\n"
             "    i = j + 1\n"
             "  end\n"
             "  return type(v)\n"
             "end\n");
    static const struct {
        const char *name, *type;
    } reach[] = {
        {"io", "nil"},
        {"os", "nil"},
        {"require", "nil"},
        {"load", "nil"},
        {"loadfile", "nil"},
        {"dofile", "nil"},
        {"debug", "nil"},
        {"package", "nil"},
        {"coroutine", "nil"},
        {"collectgarbage", "nil"},
        {"print", "nil"},
        {"string.dump", "nil"},
        {"string.match", "nil"},
        {"string.gsub", "nil"},
        {"string.gmatch", "nil"},
        {"string.find", "function"},
        {"table.sort", "function"},
        {"math.floor", "function"},
        {"utf8.len", "function"},
        {"pcall", "function"},
        {"setmetatable", "function"},
    };
    for (size_t i = 0; i < sizeof reach / sizeof reach[0]; i++) {
        assert_int_equal(run(s, reach[i].name, out, sizeof out, 100), 0);
        if (strcmp(out, reach[i].type))
            fail_msg("%s: %s, want %s", reach[i].name, out, reach[i].type);
    }
    bb_sandbox_free(s);
}

static void test_find_is_plain(void **state)
{
    (void)state;
    struct bb_sandbox *s = load("function route(x)\n"
                                "  return tostring(string.find('a.b', '.')) .. ',' ..\n"
                                "         tostring(('x%d'):find('%d'))\n"
                                "end\n");
    char out[512];
    assert_int_equal(run(s, "", out, sizeof out, 100), 0);
    assert_string_equal(out, "2,2");
    bb_sandbox_free(s);
}

static void test_budgets(void **state)
{
    (void)state;
    char out[512];
    /* an endless loop: the instruction budget */
    struct bb_sandbox *s = load("function route(x) while true do end end\n");
    uint64_t t0 = bb_now_us();
    assert_int_equal(run(s, "", out, sizeof out, 10000), -1);
    assert_string_equal(out, "instruction budget exhausted (1000000 instructions)");
    assert_true(bb_now_us() - t0 < 500000);
    bb_sandbox_free(s);
    /* caught by pcall inside the script: rethrown */
    s = load("function route(x)\n"
             "  while true do pcall(function() while true do end end) end\n"
             "end\n");
    assert_int_equal(run(s, "", out, sizeof out, 10000), -1);
    assert_non_null(strstr(out, "budget exhausted"));
    bb_sandbox_free(s);
    /* the wall clock: a slow loop under the instruction budget */
    s = load("function route(x)\n"
             "  local s = string.rep('x', 1 << 20)\n"
             "  for i = 1, 100000 do local t = s:upper() end\n"
             "end\n");
    t0 = bb_now_us();
    int rc = run(s, "", out, sizeof out, 2);
    assert_true(rc == -2 || rc == -1); /* time, or the copying work's budget first */
    assert_non_null(strstr(out, "budget exhausted"));
    assert_true(bb_now_us() - t0 < 200000);
    bb_sandbox_free(s);
    /* memory: the cap, also through pcall */
    s = load("function route(x)\n"
             "  local t = {}\n"
             "  pcall(function() while true do t[#t + 1] = {1, 2, 3, 4} end end)\n"
             "  return 'survived'\n"
             "end\n");
    assert_int_equal(run(s, "", out, sizeof out, 5000), -1);
    if (!strstr(out, "memory limit reached"))
        fail_msg("memory: %s", out);
    assert_true(bb_sandbox_mem(s) < BB_SANDBOX_MEM_MAX);
    /* the state is usable again after a cut-off */
    bb_sandbox_free(s);
    s = load("n = 0\n"
             "function route(x)\n"
             "  n = n + 1\n"
             "  if x == 'loop' then while true do end end\n"
             "  return tostring(n)\n"
             "end\n");
    assert_int_equal(run(s, "loop", out, sizeof out, 100), -1);
    assert_int_equal(run(s, "", out, sizeof out, 100), 0);
    assert_string_equal(out, "2");
    bb_sandbox_free(s);
}

static void test_runaway_library_calls(void **state)
{
    (void)state;
    char out[512];
    struct bb_sandbox *s = load("function route(x)\n"
                                "  if x == 'rep' then return string.rep('', 1 << 62) end\n"
                                "  if x == 'move' then return table.move({}, 1, 1 << 40, 2) end\n"
                                "  if x == 'unpack' then return table.unpack({}, 1, 1 << 40) end\n"
                                "  if x == 'gc' then\n"
                                "    return setmetatable({}, {__gc = function() end})\n"
                                "  end\n"
                                "end\n");
    uint64_t t0 = bb_now_us();
    assert_int_equal(run(s, "rep", out, sizeof out, 100), 0);
    assert_int_equal(run(s, "move", out, sizeof out, 100), -1);
    assert_non_null(strstr(out, "budget exhausted"));
    assert_int_equal(run(s, "unpack", out, sizeof out, 100), -1);
    assert_true(bb_now_us() - t0 < 200000);
    assert_int_equal(run(s, "gc", out, sizeof out, 100), -1);
    assert_non_null(strstr(out, "__gc metamethods are not allowed"));
    bb_sandbox_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_errors),           cmocka_unit_test(test_reach),
        cmocka_unit_test(test_find_is_plain),         cmocka_unit_test(test_budgets),
        cmocka_unit_test(test_runaway_library_calls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
