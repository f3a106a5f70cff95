/*
 * supervisor: the master's poll loop and its children. Master process only, single-threaded.
 *
 * One iteration: take the signal flags (set by handlers, see signals.c) → stop/reopen/reload
 * → reap children (waitpid WNOHANG) → timers (respawns, heartbeat watchdog, drain deadlines,
 * retiring old generations) → governance tick (usage ring → ledger, external key edits →
 * shared memory) → poll() on the self-pipe, the admin socket and the HTTP admin API with a
 * short tick.
 *
 * Slot ownership: the master writes pid/generation/state/started_ms of shm->workers[slot] at
 * fork and reap; the worker writes heartbeat_ms (and may move its state to running/draining)
 * and its counters. A slot belongs to a generation from fork until its worker is reaped and not
 * respawned.
 */
#include "master/supervisor.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "master/admin_http.h"
#include "master/cluster.h"
#include "master/ctl_server.h"
#include "master/governance.h"
#include "master/listeners.h"
#include "master/reload.h"
#include "master/signals.h"

#define TICK_MS 200
/* While a reload is taking over, tick faster: old workers are told to stop accepting within
 * a few ms of the new ones being up, and a held `busbarctl reload` is answered promptly. */
#define FAST_TICK_MS 10
#define POLL_MAX 128

unsigned bb_supervisor_free_slots(const struct bb_master *m)
{
    unsigned n = 0;
    for (int i = 0; i < BB_SHM_MAX_WORKERS; i++)
        n += m->slots[i].gen == NULL;
    return n;
}

static _Noreturn void child_main(struct bb_master *m, int slot, struct bb_gen *g)
{
    /* The worker dies with the master: SIGTERM lets it drain what it has. The master may
     * already be gone between fork() and prctl(), hence the getppid() check. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != m->pid)
        _exit(1);
    bb_signals_child_reset();
    bb_ctl_server_child_close(m->ctl);
    bb_admin_http_child_close(m->admin_http);
    bb_mcluster_child_close(m->cluster);
    bb_listeners_close_others(m, &g->rt);
    char role[32];
    snprintf(role, sizeof role, "worker %d", slot);
    bb_log_set_role(role);
    int rc = bb_worker_main(&g->rt, slot);
#if defined(__SANITIZE_ADDRESS__)
    exit(rc); /* let LeakSanitizer check the worker's heap at exit */
#else
    _exit(rc); /* never run the master's atexit handlers or flush its stdio twice */
#endif
}

/* Fork one worker of g into slot (which the caller reserved: slots[slot].gen == g). */
static void spawn(struct bb_master *m, int slot, uint64_t now)
{
    struct bb_slot *s = &m->slots[slot];
    struct bb_gen *g = s->gen;
    struct bb_shm_worker *w = &m->shm->workers[slot];
    atomic_store(&w->pid, 0);
    atomic_store(&w->generation, g->rt.generation);
    atomic_store(&w->heartbeat_ms, 0);
    atomic_store(&w->started_ms, now);
    atomic_store(&w->requests, 0);
    atomic_store(&w->connections, 0);
    atomic_store(&w->inflight, 0);
    atomic_store(&w->state, BB_WORKER_STARTING);

    sigset_t old;
    bb_signals_block(&old);
    fflush(NULL); /* no stdio buffer may be written twice */
    pid_t pid = fork();
    if (pid == 0)
        child_main(m, slot, g);
    int e = errno;
    bb_signals_restore(&old);
    if (pid < 0) {
        atomic_store(&w->state, BB_WORKER_FREE);
        s->pid = 0;
        s->respawn_at_ms = now + 1000;
        bb_error("fork worker slot %d (generation %u): %s; retrying in 1 s", slot, g->rt.generation,
                 strerror(e));
        return;
    }
    atomic_store(&w->pid, pid);
    s->pid = pid;
    s->started_ms = now;
    s->respawn_at_ms = 0;
    s->kill_at_ms = 0;
    s->stopping = false;
    s->sigkill_sent = false;
    s->watchdog_killed = false;
    bb_info("worker %d started (slot %d, generation %u)", (int)pid, slot, g->rt.generation);
}

int bb_supervisor_spawn_gen(struct bb_master *m, struct bb_gen *g, uint64_t now, struct bb_err *err)
{
    unsigned want = g->rt.conf->workers;
    if (want > bb_supervisor_free_slots(m))
        return bb_err_set(err, "not enough free worker slots for %u workers", want);
    for (int i = 0; i < BB_SHM_MAX_WORKERS && want; i++) {
        struct bb_slot *s = &m->slots[i];
        if (s->gen)
            continue;
        memset(s, 0, sizeof *s);
        s->gen = g;
        g->n_workers++;
        want--;
        spawn(m, i, now);
    }
    return 0;
}

static void release_slot(struct bb_master *m, int slot)
{
    struct bb_slot *s = &m->slots[slot];
    struct bb_shm_worker *w = &m->shm->workers[slot];
    atomic_store(&w->state, BB_WORKER_FREE);
    atomic_store(&w->pid, 0);
    if (s->gen)
        s->gen->n_workers--;
    memset(s, 0, sizeof *s);
}

/* Send sig to the worker of slot and remember that its exit is expected. */
static void stop_slot(struct bb_master *m, int slot, int sig, uint64_t deadline)
{
    struct bb_slot *s = &m->slots[slot];
    if (!s->gen)
        return;
    if (s->pid <= 0) { /* waiting for a respawn: just give the slot up */
        release_slot(m, slot);
        return;
    }
    /* shm state stays the worker's to write: it moves to DRAINING once it stopped
     * accepting, which is what bb_supervisor_settled() waits for. */
    if (sig == SIGKILL)
        s->sigkill_sent = true;
    s->stopping = true;
    if (deadline && (!s->kill_at_ms || deadline < s->kill_at_ms))
        s->kill_at_ms = deadline;
    kill(s->pid, sig);
}

static uint64_t drain_ms(const struct bb_gen *g)
{
    return (uint64_t)g->rt.conf->limits.drain_timeout_secs * 1000u + 2000u;
}

static void describe_status(int status, char *buf, size_t n)
{
    if (WIFEXITED(status)) {
        snprintf(buf, n, "exited with status %d", WEXITSTATUS(status));
    } else if (WIFSIGNALED(status)) {
        const char *abbrev = sigabbrev_np(WTERMSIG(status));
        char num[16];
        if (!abbrev) {
            snprintf(num, sizeof num, "%d", WTERMSIG(status));
            abbrev = num;
        }
        snprintf(buf, n, "killed by signal %s%s%s",
                 abbrev[0] >= '0' && abbrev[0] <= '9' ? "" : "SIG", abbrev,
                 WCOREDUMP(status) ? " (core dumped)" : "");
    } else {
        snprintf(buf, n, "ended with wait status 0x%x", (unsigned)status);
    }
}

static void on_child_exit(struct bb_master *m, pid_t pid, int status, uint64_t now)
{
    int slot = -1;
    for (int i = 0; i < BB_SHM_MAX_WORKERS; i++)
        if (m->slots[i].gen && m->slots[i].pid == pid)
            slot = i;
    char how[96];
    describe_status(status, how, sizeof how);
    if (slot < 0) {
        bb_warn("unknown child %d %s", (int)pid, how);
        return;
    }
    struct bb_slot *s = &m->slots[slot];
    struct bb_gen *g = s->gen;
    uint64_t lived = now - s->started_ms;
    /* budget reservations of the requests it had in flight: nobody will settle them now */
    size_t given_back =
        bb_keys_journal_reclaim(&m->shm->keys, &m->shm->journals[slot], bb_wall_ms());
    if (given_back)
        bb_warn("worker %d (slot %d): %zu in-flight requests were lost; their budget "
                "reservations are given back, nothing was billed",
                (int)pid, slot, given_back);
    bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    bool expected = s->stopping && !s->watchdog_killed;
    if (expected)
        bb_log(clean ? BB_LOG_INFO : BB_LOG_WARN, "worker %d (slot %d, generation %u) %s", (int)pid,
               slot, g->rt.generation, how);
    else
        bb_error("worker %d (slot %d, generation %u) %s after %llu ms", (int)pid, slot,
                 g->rt.generation, how, (unsigned long long)lived);

    bool respawn = !m->stopping && g == m->current && (!s->stopping || s->watchdog_killed);
    if (!respawn) {
        release_slot(m, slot);
        return;
    }
    /* Crash-loop throttling: the first death respawns at once; deaths that keep coming
     * within BB_CRASH_WINDOW_MS of the start back off exponentially up to 5 s. */
    s->quick_deaths = lived < BB_CRASH_WINDOW_MS ? s->quick_deaths + 1 : 1;
    uint64_t delay = 0;
    if (s->quick_deaths > 1) {
        unsigned shift = s->quick_deaths - 2;
        delay = shift >= 5 ? BB_RESPAWN_MAX_DELAY_MS : 500u << shift;
        if (delay > BB_RESPAWN_MAX_DELAY_MS)
            delay = BB_RESPAWN_MAX_DELAY_MS;
        bb_warn("worker slot %d is crash-looping (%u deaths within %u s of start): respawning "
                "in %llu ms",
                slot, s->quick_deaths, BB_CRASH_WINDOW_MS / 1000, (unsigned long long)delay);
    }
    atomic_store(&m->shm->workers[slot].state, BB_WORKER_FREE);
    atomic_store(&m->shm->workers[slot].pid, 0);
    s->pid = 0;
    s->stopping = false;
    s->watchdog_killed = false;
    s->sigkill_sent = false;
    s->kill_at_ms = 0;
    s->respawn_at_ms = now + delay;
}

static void reap(struct bb_master *m, uint64_t now)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
        on_child_exit(m, pid, status, now);
}

static bool gen_ready(const struct bb_master *m, const struct bb_gen *g)
{
    for (int i = 0; i < BB_SHM_MAX_WORKERS; i++) {
        const struct bb_slot *s = &m->slots[i];
        if (s->gen != g)
            continue;
        /* The worker moves its slot to RUNNING once its listeners are set up. */
        uint32_t st = atomic_load(&m->shm->workers[i].state);
        if (s->pid <= 0 || (st != BB_WORKER_RUNNING && st != BB_WORKER_DRAINING))
            return false;
    }
    return true;
}

bool bb_supervisor_settled(const struct bb_master *m, uint32_t generation)
{
    if (m->current->rt.generation != generation)
        return true; /* superseded by a later reload */
    for (const struct bb_gen *g = m->gens; g; g = g->next)
        if (g != m->current && !g->retired)
            return false;
    for (int i = 0; i < BB_SHM_MAX_WORKERS; i++) {
        const struct bb_slot *s = &m->slots[i];
        if (!s->gen || s->gen == m->current || s->pid <= 0)
            continue;
        if (atomic_load(&m->shm->workers[i].state) != BB_WORKER_DRAINING)
            return false;
    }
    return true;
}

/* Tell every worker of g to stop accepting and drain. */
static void retire_gen(struct bb_master *m, struct bb_gen *g, uint64_t now)
{
    g->retired = true;
    bb_notice("generation %u: draining %u workers (deadline %llu s)", g->rt.generation,
              g->n_workers, (unsigned long long)(drain_ms(g) / 1000));
    for (int i = 0; i < BB_SHM_MAX_WORKERS; i++)
        if (m->slots[i].gen == g)
            stop_slot(m, i, SIGTERM, now + drain_ms(g));
}

static void timers(struct bb_master *m, uint64_t now)
{
    bool ready = gen_ready(m, m->current);
    for (struct bb_gen *g = m->gens; g; g = g->next) {
        if (g == m->current || g->retired || m->stopping)
            continue;
        if (!ready && now < m->retire_deadline_ms)
            continue;
        if (!ready)
            bb_warn("generation %u is not fully up after %u ms: draining generation %u anyway",
                    m->current->rt.generation, BB_RETIRE_WAIT_MS, g->rt.generation);
        retire_gen(m, g, now);
    }

    for (int i = 0; i < BB_SHM_MAX_WORKERS; i++) {
        struct bb_slot *s = &m->slots[i];
        if (!s->gen)
            continue;
        if (s->pid == 0) {
            if (!m->stopping && now >= s->respawn_at_ms)
                spawn(m, i, now);
            continue;
        }
        if (s->sigkill_sent)
            continue;
        const struct bb_shm_worker *w = &m->shm->workers[i];
        if (s->kill_at_ms && now >= s->kill_at_ms) {
            bb_warn("worker %d (slot %d, generation %u) did not drain in time: killing it",
                    (int)s->pid, i, s->gen->rt.generation);
            stop_slot(m, i, SIGKILL, 0);
            continue;
        }
        uint64_t hb = atomic_load(&w->heartbeat_ms);
        uint64_t last = hb > s->started_ms ? hb : s->started_ms;
        if (now > last && now - last > m->heartbeat_timeout_ms) {
            bb_error("worker %d (slot %d, generation %u) missed its heartbeat for %llu ms: "
                     "killing it",
                     (int)s->pid, i, s->gen->rt.generation, (unsigned long long)(now - last));
            bool was_stopping = s->stopping;
            stop_slot(m, i, SIGKILL, 0);
            s->watchdog_killed = !was_stopping;
        }
    }
    bb_gen_collect(m);
}

static unsigned live_workers(const struct bb_master *m)
{
    unsigned n = 0;
    for (int i = 0; i < BB_SHM_MAX_WORKERS; i++)
        n += m->slots[i].gen != NULL;
    return n;
}

static void begin_stop(struct bb_master *m, uint64_t now)
{
    if (m->stopping)
        return;
    m->stopping = true;
    m->stop_deadline_ms = now + drain_ms(m->current);
    bb_notice("graceful stop: draining %u workers (up to %llu s)", live_workers(m),
              (unsigned long long)(drain_ms(m->current) / 1000));
    for (int i = 0; i < BB_SHM_MAX_WORKERS; i++)
        if (m->slots[i].gen)
            stop_slot(m, i, SIGTERM, m->stop_deadline_ms);
}

static void quit_now(struct bb_master *m)
{
    bb_notice("immediate stop: killing %u workers", live_workers(m));
    m->stopping = true;
    for (int i = 0; i < BB_SHM_MAX_WORKERS; i++)
        if (m->slots[i].gen)
            stop_slot(m, i, SIGKILL, 0);
    while (live_workers(m)) {
        int status;
        pid_t pid = waitpid(-1, &status, 0);
        if (pid < 0) {
            if (errno == EINTR)
                continue;
            break; /* ECHILD: nothing left to wait for */
        }
        on_child_exit(m, pid, status, bb_now_ms());
    }
}

static void reopen_logs(struct bb_master *m)
{
    if (bb_log_reopen() < 0)
        bb_error("cannot reopen log file: %s", strerror(errno));
    else
        bb_notice("log reopened");
    for (int i = 0; i < BB_SHM_MAX_WORKERS; i++)
        if (m->slots[i].gen && m->slots[i].pid > 0)
            kill(m->slots[i].pid, SIGUSR1);
}

int bb_supervisor_run(struct bb_master *m)
{
    struct pollfd pfd[POLL_MAX];
    for (;;) {
        uint64_t now = bb_now_ms();
        unsigned sig = bb_signals_take();
        if (sig & BB_SIG_QUIT) {
            quit_now(m);
            break;
        }
        if (sig & BB_SIG_STOP)
            begin_stop(m, now);
        if (sig & BB_SIG_REOPEN)
            reopen_logs(m);
        if (sig & BB_SIG_RELOAD) {
            if (m->stopping) {
                bb_warn("SIGHUP ignored: shutting down");
            } else {
                struct bb_strv errors = {0};
                uint32_t gen;
                bb_reload(m, now, &errors, &gen);
                bb_strv_free(&errors);
            }
        }
        reap(m, now);
        timers(m, now);
        bb_gov_tick(m->gov, now); /* usage ring → ledger; external key edits → shm */
        if (m->stopping) {
            if (!live_workers(m))
                break;
            if (now >= m->stop_deadline_ms) {
                for (int i = 0; i < BB_SHM_MAX_WORKERS; i++) {
                    struct bb_slot *s = &m->slots[i];
                    if (s->gen && s->pid > 0 && !s->sigkill_sent) {
                        bb_warn("worker %d (slot %d) did not drain in time: killing it",
                                (int)s->pid, i);
                        stop_slot(m, i, SIGKILL, 0);
                    }
                }
            }
        }

        pfd[0].fd = bb_signals_fd();
        pfd[0].events = POLLIN;
        pfd[0].revents = 0;
        size_t n_ctl = bb_ctl_server_pollfds(m->ctl, pfd + 1, POLL_MAX - 1);
        size_t n_http = bb_admin_http_pollfds(m->admin_http, pfd + 1 + n_ctl, POLL_MAX - 1 - n_ctl);
        size_t n_cl = bb_mcluster_pollfds(m->cluster, pfd + 1 + n_ctl + n_http,
                                          POLL_MAX - 1 - n_ctl - n_http);
        size_t n = 1 + n_ctl + n_http + n_cl;
        bool busy = bb_ctl_server_busy(m->ctl);
        for (const struct bb_gen *g = m->gens; g && !busy; g = g->next)
            busy = g != m->current && !g->retired && !m->stopping;
        int timeout = busy ? FAST_TICK_MS : TICK_MS;
        uint64_t due = bb_gov_due_ms(m->gov), at = bb_now_ms();
        uint64_t cdue = bb_mcluster_due_ms(m->cluster);
        if (cdue && (!due || cdue < due))
            due = cdue;
        if (due && due < at + (uint64_t)timeout)
            timeout = due > at ? (int)(due - at) : 0;
        int r = poll(pfd, n, timeout);
        if (r < 0 && errno != EINTR) {
            bb_error("poll: %s", strerror(errno));
            continue;
        }
        /* Also without events: it expires clients past their deadline. */
        bb_ctl_server_process(m->ctl, m, pfd + 1, n_ctl, bb_now_ms());
        bb_admin_http_process(m->admin_http, m->gov, pfd + 1 + n_ctl, n_http, bb_now_ms());
        bb_mcluster_process(m->cluster, bb_now_ms()); /* Redis answers, breakers, streams */
    }
    bb_notice("all workers stopped; master exiting");
    return 0;
}
