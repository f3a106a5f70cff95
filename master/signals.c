/*
 * signals: flags + self-pipe. Master process only.
 * Handlers are async-signal-safe: they store to volatile sig_atomic_t and write(2) one byte to
 * the non-blocking pipe (a full pipe already guarantees a wake-up, so EAGAIN is ignored).
 * Everything else (reaping, reloading, logging) happens in the supervisor loop.
 */
#include "master/signals.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t sig_reload, sig_stop, sig_quit, sig_reopen, sig_child;
static volatile sig_atomic_t pipe_rd = -1, pipe_wr = -1;

static const int handled[] = {SIGHUP, SIGTERM, SIGINT, SIGQUIT, SIGUSR1, SIGCHLD};

static void on_signal(int sig)
{
    int saved = errno;
    switch (sig) {
    case SIGHUP:
        sig_reload = 1;
        break;
    case SIGTERM:
    case SIGINT:
        sig_stop = 1;
        break;
    case SIGQUIT:
        sig_quit = 1;
        break;
    case SIGUSR1:
        sig_reopen = 1;
        break;
    case SIGCHLD:
        sig_child = 1;
        break;
    default:
        break;
    }
    if (pipe_wr >= 0) {
        char c = 0;
        ssize_t n = write(pipe_wr, &c, 1);
        (void)n;
    }
    errno = saved;
}

int bb_signals_install(struct bb_err *err)
{
    int p[2];
    if (pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0)
        return bb_err_set(err, "pipe2: %s", strerror(errno));
    pipe_rd = p[0];
    pipe_wr = p[1];

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigfillset(&sa.sa_mask); /* handlers never nest */
    sa.sa_flags = SA_RESTART;
    for (size_t i = 0; i < sizeof handled / sizeof handled[0]; i++)
        if (sigaction(handled[i], &sa, NULL) < 0)
            return bb_err_set(err, "sigaction(%d): %s", handled[i], strerror(errno));
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

int bb_signals_fd(void)
{
    return pipe_rd;
}

unsigned bb_signals_take(void)
{
    char buf[64];
    while (pipe_rd >= 0 && read(pipe_rd, buf, sizeof buf) > 0) {
    }
    unsigned bits = 0;
    /* Each flag is read and cleared on its own; a signal landing between the two only
     * re-raises its flag and writes the pipe again, so nothing is lost. */
    if (sig_reload) {
        sig_reload = 0;
        bits |= BB_SIG_RELOAD;
    }
    if (sig_stop) {
        sig_stop = 0;
        bits |= BB_SIG_STOP;
    }
    if (sig_quit) {
        sig_quit = 0;
        bits |= BB_SIG_QUIT;
    }
    if (sig_reopen) {
        sig_reopen = 0;
        bits |= BB_SIG_REOPEN;
    }
    if (sig_child) {
        sig_child = 0;
        bits |= BB_SIG_CHILD;
    }
    return bits;
}

void bb_signals_block(sigset_t *old)
{
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, old);
}

void bb_signals_restore(const sigset_t *old)
{
    sigprocmask(SIG_SETMASK, old, NULL);
}

static void close_pipe(void)
{
    if (pipe_rd >= 0)
        close(pipe_rd);
    if (pipe_wr >= 0)
        close(pipe_wr);
    pipe_rd = pipe_wr = -1;
}

void bb_signals_child_reset(void)
{
    for (size_t i = 0; i < sizeof handled / sizeof handled[0]; i++)
        signal(handled[i], SIG_DFL);
    /* SIGPIPE stays ignored: a worker writing to a closed socket must get EPIPE, not die. */
    signal(SIGPIPE, SIG_IGN);
    close_pipe();
    sig_reload = sig_stop = sig_quit = sig_reopen = sig_child = 0;
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

void bb_signals_uninstall(void)
{
    for (size_t i = 0; i < sizeof handled / sizeof handled[0]; i++)
        signal(handled[i], SIG_DFL);
    close_pipe();
}
