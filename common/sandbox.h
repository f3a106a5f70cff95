/*
 * sandbox: a Lua 5.4 state for routing scripts (SPEC §5.5, pools.*.policy.script_file).
 * Built by the config loader (the script is compiled and its top level run once per
 * configuration generation; workers inherit the state through fork()) and called by the
 * workers (worker/policy_lua.c). No I/O, no shared state: one state per pool per process.
 *
 * What a script can reach: the base functions without load, loadfile, dofile, require,
 * collectgarbage, print and warn; string without the pattern functions (find is plain only)
 * and dump, with rep bounded; table (move bounded), math, utf8. No io, os, debug, package,
 * coroutine. setmetatable refuses __gc (finalizers run outside any budget). Every call has an
 * instruction budget (a count hook), a wall-clock deadline and a memory cap (the allocator);
 * a busted budget cannot be caught by pcall/xpcall inside the script.
 */
#ifndef BB_SANDBOX_H
#define BB_SANDBOX_H

#include <stddef.h>
#include <stdint.h>

struct lua_State;
struct bb_sandbox;

#define BB_SANDBOX_MEM_MAX (8u << 20) /* bytes one script's state may hold */
#define BB_SANDBOX_INSTR_MAX 1000000u /* VM instructions per call */
#define BB_SANDBOX_LOAD_MS 1000u      /* wall-clock bound of the top-level run at load */

/* Compile src (name: the file, for messages) and run its top level in a new sandbox; its
 * global `route` must then be a function. NULL with the reason in err ("file:line: ...")
 * when it does not compile, fails, busts a budget or defines no route. */
struct bb_sandbox *bb_sandbox_new(const char *name, const char *src, size_t len, char *err,
                                  size_t cap);
void bb_sandbox_free(struct bb_sandbox *s);

/* Run fn(L) protected, with ud as its one light-userdata argument, under the per-call budget
 * (BB_SANDBOX_INSTR_MAX instructions, timeout_ms wall clock, the memory cap). fn may raise
 * Lua errors. 0 = done; -2 = the wall-clock budget ran out; -1 = an error, the instruction
 * budget or the memory cap; the reason in err. */
int bb_sandbox_pcall(struct bb_sandbox *s, int (*fn)(struct lua_State *L), void *ud,
                     uint32_t timeout_ms, char *err, size_t cap);

/* Bytes the state holds now (tests, stats). */
size_t bb_sandbox_mem(const struct bb_sandbox *s);

#endif
