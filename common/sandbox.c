/*
 * sandbox: the Lua state of a routing script (see sandbox.h). Master (compiled and run once at
 * config load) and workers (called per request, on their fork()ed copy). Single-threaded.
 *
 * One budget per call, in units of VM instructions: the count hook takes HOOK_EVERY units
 * every HOOK_EVERY instructions and checks the wall clock; the allocator takes one unit per
 * ALLOC_BYTES_PER_UNIT bytes it hands out (so copying work — concatenation, string.rep,
 * string.upper — is paid for even though it is one instruction); library functions that loop
 * in C without allocating (plain find, table.move, table.sort, utf8.len) pay for their input
 * before they run. When the budget or the clock runs out, or an allocation would pass the
 * memory cap, the call fails; the script's pcall/xpcall rethrow such failures, so it cannot
 * catch its own cut-off and carry on.
 */
#include "common/sandbox.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#define HOOK_EVERY 100          /* instructions between two budget checks */
#define ALLOC_BYTES_PER_UNIT 64 /* allocated bytes one budget unit pays for */
#define SCAN_BYTES_PER_UNIT 64  /* bytes a C scan reads per budget unit */
/* Small blocks (a call's tables, strings, closures) come from per-size free lists: each call
 * allocates and frees dozens of them, which cost more through malloc than the script itself. */
#define SMALL_MAX 256
#define SMALL_STEP 16
#define N_CLASSES (SMALL_MAX / SMALL_STEP)
#define CACHE_MAX (1u << 20) /* bytes kept on the free lists at most */

enum bust { BUST_NONE, BUST_INSTR, BUST_TIME, BUST_MEM };

struct bb_sandbox {
    lua_State *L;
    size_t mem;           /* bytes held by the state */
    int64_t left;         /* budget units left in this call */
    uint64_t deadline_us; /* this call's wall-clock limit */
    uint32_t timeout_ms;
    bool armed;                    /* inside a budgeted call */
    enum bust bust;                /* why this call was cut off */
    void *freelist[N_CLASSES + 1]; /* [class]: free blocks of class * SMALL_STEP bytes */
    size_t cached;                 /* bytes on the free lists */
};

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static struct bb_sandbox *sb_of(lua_State *L)
{
    void *ud;
    lua_getallocf(L, &ud);
    return ud;
}

static size_t class_of(size_t n)
{
    return (n + SMALL_STEP - 1) / SMALL_STEP;
}

static void *blk_new(struct bb_sandbox *s, size_t n)
{
    if (n > SMALL_MAX)
        return malloc(n);
    size_t c = class_of(n);
    void *p = s->freelist[c];
    if (!p)
        return malloc(c * SMALL_STEP);
    s->freelist[c] = *(void **)p;
    s->cached -= c * SMALL_STEP;
    return p;
}

/* p was handed out for n bytes (a small block is at least its class's size). */
static void blk_free(struct bb_sandbox *s, void *p, size_t n)
{
    size_t c = class_of(n);
    if (n > SMALL_MAX || s->cached + c * SMALL_STEP > CACHE_MAX) {
        free(p);
        return;
    }
    *(void **)p = s->freelist[c];
    s->freelist[c] = p;
    s->cached += c * SMALL_STEP;
}

/* realloc over the free lists; a shrink never fails (Lua relies on that). */
static void *blk_realloc(struct bb_sandbox *s, void *ptr, size_t old, size_t nsize)
{
    if (!ptr)
        return blk_new(s, nsize);
    if (old <= SMALL_MAX && nsize <= SMALL_MAX && class_of(old) == class_of(nsize))
        return ptr;
    if (old > SMALL_MAX && nsize > SMALL_MAX) {
        void *p = realloc(ptr, nsize);
        return p ? p : nsize <= old ? ptr : NULL;
    }
    void *p = blk_new(s, nsize);
    if (!p)
        return nsize <= old ? ptr : NULL; /* the old block is big enough for the new size */
    memcpy(p, ptr, old < nsize ? old : nsize);
    blk_free(s, ptr, old);
    return p;
}

static void *sb_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct bb_sandbox *s = ud;
    size_t old = ptr ? osize : 0; /* without ptr, osize is the object's type */
    if (nsize == 0) {
        if (ptr)
            blk_free(s, ptr, old);
        s->mem -= old;
        return NULL;
    }
    if (nsize > old) {
        if (s->mem - old + nsize > BB_SANDBOX_MEM_MAX) {
            /* Lua collects garbage and asks once more, but a call that reached the cap is
             * over either way: the cut-off must not depend on what a collection finds */
            if (s->armed && s->bust == BUST_NONE)
                s->bust = BUST_MEM;
            return NULL;
        }
        if (s->armed) {
            s->left -= (int64_t)((nsize - old) / ALLOC_BYTES_PER_UNIT);
            if (s->left < 0) {
                if (s->bust == BUST_NONE)
                    s->bust = BUST_INSTR;
                return NULL;
            }
        }
    }
    void *p = blk_realloc(s, ptr, old, nsize);
    if (!p)
        return NULL;
    s->mem = s->mem - old + nsize;
    return p;
}

static int cut_off(lua_State *L, struct bb_sandbox *s)
{
    (void)s;
    return luaL_error(L, "routing script cut off");
}

/* Take units from the budget; raises when it or the clock has run out. */
static void charge(lua_State *L, int64_t units)
{
    struct bb_sandbox *s = sb_of(L);
    if (!s->armed)
        return;
    s->left -= units;
    if (s->bust == BUST_NONE && s->left < 0)
        s->bust = BUST_INSTR;
    if (s->bust == BUST_NONE && now_us() > s->deadline_us)
        s->bust = BUST_TIME;
    if (s->bust != BUST_NONE)
        cut_off(L, s);
}

static void hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    charge(L, HOOK_EVERY);
}

/* ---- the library as the script sees it ---------------------------------------------------- */

/* pcall/xpcall: the original (upvalue 1), then a cut-off propagates instead of being caught. */
static int safe_pcall(lua_State *L)
{
    int n = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, n, LUA_MULTRET);
    struct bb_sandbox *s = sb_of(L);
    if (s->bust != BUST_NONE)
        return cut_off(L, s);
    return lua_gettop(L);
}

/* setmetatable without finalizers: __gc would run outside any budget (even at lua_close). */
static int safe_setmetatable(lua_State *L)
{
    if (lua_type(L, 2) == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");
        if (lua_rawget(L, 2) != LUA_TNIL)
            return luaL_error(L, "__gc metamethods are not allowed in routing scripts");
        lua_pop(L, 1);
    }
    int n = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, n, LUA_MULTRET);
    return lua_gettop(L);
}

/* A C function that scans its string arguments: pay for them, then call the original. */
static int scan_paid(lua_State *L)
{
    int64_t bytes = 0;
    for (int i = 1; i <= lua_gettop(L); i++)
        if (lua_type(L, i) == LUA_TSTRING)
            bytes += (int64_t)lua_rawlen(L, i);
    charge(L, 1 + bytes / SCAN_BYTES_PER_UNIT);
    int n = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, n, LUA_MULTRET);
    return lua_gettop(L);
}

/* string.find(s, sub [, init]): always a plain search (patterns can backtrack for ages). */
static int plain_find(lua_State *L)
{
    lua_settop(L, 3);
    lua_pushboolean(L, 1);
    return scan_paid(L);
}

/* string.rep: an empty result without the loop (rep("", 2^62) would spin in C). */
static int safe_rep(lua_State *L)
{
    size_t l, lsep = 0;
    luaL_checklstring(L, 1, &l);
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_optlstring(L, 3, "", &lsep);
    if (n <= 0 || (l == 0 && lsep == 0)) {
        lua_pushliteral(L, "");
        return 1;
    }
    return scan_paid(L);
}

/* table.move(a1, f, e, t [, a2]): pays for e - f + 1 element moves. */
static int paid_move(lua_State *L)
{
    lua_Integer f = luaL_checkinteger(L, 2), e = luaL_checkinteger(L, 3);
    if (e >= f)
        charge(L, e - f >= BB_SANDBOX_INSTR_MAX ? (int64_t)BB_SANDBOX_INSTR_MAX + 1
                                                : (int64_t)(e - f + 1));
    return scan_paid(L);
}

/* table.sort / table.unpack: pay for the elements (n log n / n) first. */
static int paid_by_len(lua_State *L, bool sort)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    int64_t n = (int64_t)lua_rawlen(L, 1);
    if (!sort && lua_gettop(L) >= 3 && lua_isinteger(L, 3)) {
        lua_Integer i = luaL_optinteger(L, 2, 1), j = lua_tointeger(L, 3);
        n = j >= i ? (j - i >= BB_SANDBOX_INSTR_MAX ? BB_SANDBOX_INSTR_MAX + 1 : j - i + 1) : 0;
    }
    int64_t cost = n;
    if (sort)
        for (int64_t k = n; k > 1; k >>= 1)
            cost += n;
    charge(L, cost);
    return scan_paid(L);
}

static int paid_sort(lua_State *L)
{
    return paid_by_len(L, true);
}

static int paid_unpack(lua_State *L)
{
    return paid_by_len(L, false);
}

/* Replace t[name] (t at the top of the stack) by fn with the original as its upvalue; fn NULL
 * removes it. */
static void wrap(lua_State *L, const char *name, lua_CFunction fn)
{
    if (!fn) {
        lua_pushnil(L);
        lua_setfield(L, -2, name);
        return;
    }
    lua_getfield(L, -1, name);
    lua_pushcclosure(L, fn, 1);
    lua_setfield(L, -2, name);
}

static int open_libs(lua_State *L)
{
    static const char *const base_gone[] = {"collectgarbage", "dofile",  "load", "loadfile",
                                            "print",          "require", "warn"};
    static const luaL_Reg libs[] = {{LUA_GNAME, luaopen_base},
                                    {LUA_STRLIBNAME, luaopen_string},
                                    {LUA_TABLIBNAME, luaopen_table},
                                    {LUA_MATHLIBNAME, luaopen_math},
                                    {LUA_UTF8LIBNAME, luaopen_utf8}};
    for (size_t i = 0; i < sizeof libs / sizeof libs[0]; i++) {
        luaL_requiref(L, libs[i].name, libs[i].func, 1);
        lua_pop(L, 1);
    }
    lua_pushglobaltable(L);
    for (size_t i = 0; i < sizeof base_gone / sizeof base_gone[0]; i++)
        wrap(L, base_gone[i], NULL);
    wrap(L, "pcall", safe_pcall);
    wrap(L, "xpcall", safe_pcall);
    wrap(L, "setmetatable", safe_setmetatable);
    lua_getfield(L, -1, LUA_STRLIBNAME); /* also the strings' metatable __index */
    wrap(L, "match", NULL);
    wrap(L, "gmatch", NULL);
    wrap(L, "gsub", NULL);
    wrap(L, "dump", NULL);
    wrap(L, "find", plain_find);
    wrap(L, "rep", safe_rep);
    wrap(L, "byte", scan_paid);
    lua_pop(L, 1);
    lua_getfield(L, -1, LUA_TABLIBNAME);
    wrap(L, "move", paid_move);
    wrap(L, "sort", paid_sort);
    wrap(L, "unpack", paid_unpack);
    lua_pop(L, 1);
    lua_getfield(L, -1, LUA_UTF8LIBNAME);
    wrap(L, "len", scan_paid);
    wrap(L, "codepoint", scan_paid);
    wrap(L, "offset", scan_paid);
    lua_pop(L, 1);
    /* package.loaded keeps the libraries' tables: nothing the script can reach, but gone */
    lua_pushnil(L);
    lua_setfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_pop(L, 1);
    return 0;
}

/* ---- calls ------------------------------------------------------------------------------- */

static void why(struct bb_sandbox *s, int rc, char *err, size_t cap)
{
    lua_State *L = s->L;
    switch (s->bust) {
    case BUST_INSTR:
        snprintf(err, cap, "instruction budget exhausted (%u instructions)", BB_SANDBOX_INSTR_MAX);
        return;
    case BUST_TIME:
        snprintf(err, cap, "time budget exhausted (%u ms)", s->timeout_ms);
        return;
    case BUST_MEM:
        snprintf(err, cap, "memory limit reached (%u KiB)", BB_SANDBOX_MEM_MAX >> 10);
        return;
    case BUST_NONE:
        break;
    }
    const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    if (rc == LUA_ERRMEM)
        snprintf(err, cap, "memory limit reached (%u KiB)", BB_SANDBOX_MEM_MAX >> 10);
    else
        snprintf(err, cap, "%s", msg ? msg : "error object is not a string");
}

/* Call the function below nargs arguments on the stack under the budget; pops them. */
static int run(struct bb_sandbox *s, int nargs, uint32_t timeout_ms, char *err, size_t cap)
{
    lua_State *L = s->L;
    s->bust = BUST_NONE;
    s->left = BB_SANDBOX_INSTR_MAX;
    s->timeout_ms = timeout_ms;
    s->deadline_us = now_us() + (uint64_t)timeout_ms * 1000u;
    s->armed = true;
    lua_sethook(L, hook, LUA_MASKCOUNT, HOOK_EVERY);
    int rc = lua_pcall(L, nargs, 0, 0);
    lua_sethook(L, NULL, 0, 0);
    s->armed = false;
    if (rc == LUA_OK && s->bust == BUST_NONE)
        return 0;
    why(s, rc, err, cap);
    lua_settop(L, 0);
    enum bust b = s->bust;
    if (b != BUST_NONE)
        lua_gc(L, LUA_GCCOLLECT); /* what the cut-off call left behind */
    return b == BUST_TIME ? -2 : -1;
}

int bb_sandbox_pcall(struct bb_sandbox *s, int (*fn)(lua_State *L), void *ud, uint32_t timeout_ms,
                     char *err, size_t cap)
{
    lua_State *L = s->L;
    lua_settop(L, 0);
    lua_pushcfunction(L, fn);
    lua_pushlightuserdata(L, ud);
    return run(s, 1, timeout_ms, err, cap);
}

size_t bb_sandbox_mem(const struct bb_sandbox *s)
{
    return s->mem;
}

void bb_sandbox_free(struct bb_sandbox *s)
{
    if (!s)
        return;
    if (s->L)
        lua_close(s->L);
    for (size_t c = 0; c <= N_CLASSES; c++)
        while (s->freelist[c]) {
            void *p = s->freelist[c];
            s->freelist[c] = *(void **)p;
            free(p);
        }
    free(s);
}

struct bb_sandbox *bb_sandbox_new(const char *name, const char *src, size_t len, char *err,
                                  size_t cap)
{
    struct bb_sandbox *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, cap, "out of memory");
        return NULL;
    }
    s->L = lua_newstate(sb_alloc, s);
    if (!s->L) {
        snprintf(err, cap, "cannot create a Lua state");
        free(s);
        return NULL;
    }
    lua_State *L = s->L;
    lua_pushcfunction(L, open_libs);
    if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
        snprintf(err, cap, "cannot set up the Lua sandbox");
        bb_sandbox_free(s);
        return NULL;
    }
    char chunk[512];
    snprintf(chunk, sizeof chunk, "@%s", name);
    /* text only: a precompiled chunk could carry bytecode that breaks the VM's invariants */
    int rc = luaL_loadbufferx(L, src, len, chunk, "t");
    if (rc != LUA_OK) {
        why(s, rc, err, cap);
        bb_sandbox_free(s);
        return NULL;
    }
    if (run(s, 0, BB_SANDBOX_LOAD_MS, err, cap) != 0) {
        if (s->bust != BUST_NONE) { /* name the file, as a compile error does */
            char tmp[256];
            snprintf(tmp, sizeof tmp, "%s", err);
            snprintf(err, cap, "%s: %s", name, tmp);
        }
        bb_sandbox_free(s);
        return NULL;
    }
    if (lua_getglobal(L, "route") != LUA_TFUNCTION) {
        snprintf(err, cap, "%s: defines no function route(request, candidates, context)", name);
        bb_sandbox_free(s);
        return NULL;
    }
    lua_settop(L, 0);
    lua_gc(L, LUA_GCCOLLECT);
    /* generational: a call's tables die young, and most of what the state holds never changes */
    lua_gc(L, LUA_GCGEN, 0, 0);
    return s;
}
