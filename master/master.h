/*
 * master.h: the master process's internal types (master/ only; never included by worker/).
 * The master is single-threaded: one poll() loop (supervisor.c) drives signals, children,
 * the admin socket and reloads, so nothing here needs locking. The shm worker slots are the
 * only state shared with children; the master writes pid/generation/state/started_ms there.
 */
#ifndef BB_MASTER_H
#define BB_MASTER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/config.h"
#include "common/err.h"
#include "common/runtime.h"
#include "common/shm.h"

#define BB_MAGIC_GEN 0x47454e31u

/* One configuration generation as the master tracks it: the runtime its workers inherit plus
 * the bookkeeping needed to retire and free it. */
struct bb_gen {
    uint32_t magic;
    struct bb_runtime rt;
    char **listen_keys; /* listener-table key of each rt.listen_fds[i] (owned) */
    unsigned n_workers; /* slots referencing this generation (running or pending) */
    bool retired;       /* its workers were told to drain */
    struct bb_gen *next;
};

/* A listening socket bound by the master, shared by every generation that listens there. */
struct bb_listener {
    char *key;  /* numeric address: "127.0.0.1:8080", "[::1]:8080" */
    char *addr; /* as written, for logs */
    int fd;
    unsigned refs; /* generations using it */
    struct bb_listener *next;
};

/* Master-side view of one worker slot (shm->workers[i] is the shared half). */
struct bb_slot {
    struct bb_gen *gen; /* NULL = free */
    pid_t pid;          /* 0 while waiting for a respawn */
    uint64_t started_ms;
    uint64_t respawn_at_ms; /* when pid == 0 and gen != NULL */
    uint64_t kill_at_ms;    /* drain deadline once told to stop; 0 = none */
    unsigned quick_deaths;  /* consecutive deaths within BB_CRASH_WINDOW_MS of start */
    bool stopping;          /* sent SIGTERM/SIGKILL by the master: its exit is expected */
    bool sigkill_sent;
    bool watchdog_killed; /* SIGKILLed for a stale heartbeat: respawn it */
};

struct bb_ctl_server;
struct bb_gov;
struct bb_admin_http;
struct bb_mcluster;

struct bb_master {
    const char *config_path;
    const char *providers_path; /* may be NULL */
    pid_t pid;
    uint64_t started_ms;
    struct bb_shm *shm;
    struct bb_gen *current;
    struct bb_gen *gens;         /* every live generation, current included */
    uint64_t retire_deadline_ms; /* old generations drain when current is ready or then */
    struct bb_listener *listeners;
    struct bb_slot slots[BB_SHM_MAX_WORKERS];
    struct bb_ctl_server *ctl;
    struct bb_gov *gov;               /* key store, key table, usage sink (governance.h) */
    struct bb_admin_http *admin_http; /* HTTP admin API; NULL when admin.listen is unset */
    struct bb_mcluster *cluster;      /* cluster mode (cluster.h); NULL without it */
    char *admin_path;                 /* socket path currently bound (owned) */
    char *log_file;                   /* log path in use, NULL = stderr (owned) */
    uint64_t heartbeat_timeout_ms;
    bool stopping;
    uint64_t stop_deadline_ms;
};

/* log level from its config name; BB_LOG_INFO when NULL/unknown. */
int bb_master_log_level(const char *name);
/* Print one configuration error list through the log at [error]. */
void bb_master_log_conf_errors(const struct bb_conf_errors *errs);

#endif
