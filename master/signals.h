/*
 * signals: the master's signal handling. Handlers only set volatile sig_atomic_t flags and
 * write one byte to a self-pipe that the supervisor's poll() watches (house style rule 2).
 * Master process only; children call bb_signals_child_reset() right after fork().
 */
#ifndef BB_MASTER_SIGNALS_H
#define BB_MASTER_SIGNALS_H

#include <signal.h>

#include "common/err.h"

enum {
    BB_SIG_RELOAD = 1u << 0, /* SIGHUP */
    BB_SIG_STOP = 1u << 1,   /* SIGTERM, SIGINT: graceful */
    BB_SIG_QUIT = 1u << 2,   /* SIGQUIT: immediate */
    BB_SIG_REOPEN = 1u << 3, /* SIGUSR1 */
    BB_SIG_CHILD = 1u << 4,  /* SIGCHLD */
};

/* Create the self-pipe and install the handlers; SIGPIPE is ignored. -1 with err on failure. */
int bb_signals_install(struct bb_err *err);
/* Read end of the self-pipe, for poll(). */
int bb_signals_fd(void);
/* Drain the pipe and return (and clear) the BB_SIG_* bits raised since the last call. */
unsigned bb_signals_take(void);
/* Block every signal around fork(); old receives the previous mask. */
void bb_signals_block(sigset_t *old);
void bb_signals_restore(const sigset_t *old);
/* In a freshly forked child (signals blocked): default dispositions for everything the
 * master handled (SIGPIPE stays ignored), close the self-pipe, unblock every signal. */
void bb_signals_child_reset(void);
/* Remove the handlers and close the pipe (master exit). */
void bb_signals_uninstall(void);

#endif
