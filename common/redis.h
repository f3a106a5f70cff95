/*
 * redis: an asynchronous Redis client on the caller's libevent loop (cluster mode, SPEC §7).
 * One connection per process, pipelined: every command is written at once and answered in
 * order from a FIFO of callbacks. Plain TCP or TLS (bufferevent_openssl); hiredis does the
 * protocol (redisFormatCommandArgv writes commands, redisReader parses replies). Debian 12's
 * hiredis 0.14 has no TLS (hiredis_ssl came with 1.0), so the transport is libevent's.
 *
 * On connect: AUTH (user + password, or password), SELECT db, SCRIPT LOAD of every registered
 * script, pipelined; the client is ready once all of them succeeded. Scripts run by SHA
 * (EVALSHA); a NOSCRIPT answer (the server restarted, SCRIPT FLUSH) loads the script again
 * and resends the command, transparently. A lost connection answers every pending command
 * with NULL and reconnects with capped exponential back-off (100 ms doubling to 5 s, with
 * jitter). A connection whose oldest command waits longer than the stall limit is dropped.
 *
 * Any process with a libevent loop (workers; the master's small cluster loop). Not thread
 * safe. Callbacks run from the loop, never from inside bb_redis_command.
 */
#ifndef BB_REDIS_H
#define BB_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "common/config.h"
#include "common/err.h"

struct event_base;
struct evdns_base;
struct redisReply;
struct bb_redis;

#define BB_REDIS_MAX_SCRIPTS 8

/* The answer to one command: reply NULL when the connection was lost (or the client freed)
 * before it came. The reply is freed by the client when the callback returns. */
typedef void (*bb_redis_cb)(struct bb_redis *r, struct redisReply *reply, void *arg);

/* The connection came up (ready: handshake done) or went down (why says what happened). */
typedef void (*bb_redis_state_cb)(struct bb_redis *r, bool up, const char *why, void *arg);

struct bb_redis_opts {
    const char *host; /* name or address; resolved through dns */
    uint16_t port;
    unsigned db;
    const char *user;     /* NULL: AUTH password alone */
    const char *password; /* NULL: no AUTH */
    SSL_CTX *ssl_ctx;     /* NULL: plain TCP */
    uint32_t connect_timeout_ms;
    uint32_t stall_ms; /* the oldest pending command waits longer: drop the connection */
    const char *name;  /* in log lines ("worker 2") */
    bb_redis_state_cb on_state;
    void *state_arg;
};

/* A client; connects at once (asynchronously). The strings in o are copied. */
struct bb_redis *bb_redis_new(struct event_base *base, struct evdns_base *dns,
                              const struct bb_redis_opts *o);
/* Close; every pending callback is called with NULL first. NULL is a no-op. */
void bb_redis_free(struct bb_redis *r);
/* Register a Lua script before the first connection completes; returns its handle (>= 0). */
int bb_redis_script(struct bb_redis *r, const char *body);
/* True once connected and the handshake succeeded. */
bool bb_redis_ready(const struct bb_redis *r);
/* Commands waiting for their answer. */
size_t bb_redis_pending(const struct bb_redis *r);
/* Send one command. 0 = queued (cb will be called exactly once); -1 = not connected (cb is
 * never called). */
int bb_redis_command(struct bb_redis *r, bb_redis_cb cb, void *arg, int argc, const char **argv,
                     const size_t *argvlen);
/* EVALSHA script with argv as ARGV (no KEYS). Same contract as bb_redis_command. */
int bb_redis_eval(struct bb_redis *r, int script, bb_redis_cb cb, void *arg, int argc,
                  const char **argv, const size_t *argvlen);
/* Run the loop until nothing is pending or ms pass (a bounded wait for the master's admin
 * commands and for a worker's last settlements on the way out). 0 when idle. */
int bb_redis_wait(struct bb_redis *r, uint32_t ms);
/* The client's socket (-1 when not connected), for a caller that polls it. */
int bb_redis_fd(const struct bb_redis *r);

/* The TLS client context for cluster.tls (verify the server against ca_file, else the system
 * store; client certificate when given). NULL with err. */
SSL_CTX *bb_redis_tls_ctx(const struct bb_cluster_conf *c, struct bb_err *err);

/* Reply helpers: integer value of an INTEGER reply (or a numeric string); def otherwise. */
long long bb_redis_int(const struct redisReply *r, long long def);

#endif
