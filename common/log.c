/*
 * log: one formatted line per call, emitted with a single write(2).
 * Any process. Not thread-safe (busbar processes are single-threaded).
 */
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int log_fd = 2;
static char log_path[1024];
static char log_role[32] = "busbar";
static enum bb_log_level log_min = BB_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "notice", "warn",
                                          "error", "crit", "alert"};

int bb_log_open(const char *path)
{
    if (!path || !*path) {
        log_path[0] = '\0';
        return 0;
    }
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        return -1;
    if (log_fd > 2)
        close(log_fd);
    log_fd = fd;
    snprintf(log_path, sizeof log_path, "%s", path);
    return 0;
}

int bb_log_reopen(void)
{
    if (!log_path[0])
        return 0;
    char p[sizeof log_path];
    memcpy(p, log_path, sizeof p);
    return bb_log_open(p);
}

void bb_log_set_level(enum bb_log_level lvl)
{
    log_min = lvl;
}

void bb_log_set_role(const char *role)
{
    snprintf(log_role, sizeof log_role, "%s", role);
}

void bb_log(enum bb_log_level lvl, const char *fmt, ...)
{
    if (lvl < log_min)
        return;
    int saved = errno;
    char line[2048];
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s[%d] [%s] ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (int)(tv.tv_usec / 1000), log_role, (int)getpid(), level_names[lvl]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    line[len++] = '\n';
    ssize_t w = write(log_fd, line, len);
    (void)w;
    errno = saved;
}
