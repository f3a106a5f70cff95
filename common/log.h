/*
 * log: leveled logging to stderr or a log file, reopenable on SIGUSR1.
 * Any process; each process has its own fd copy, writes are single write(2) calls (atomic
 * for lines under PIPE_BUF), so workers and master can share one file.
 * Lines look like: 2026-11-24T14:00:00.123Z busbar[pid] [level] message
 * Tests fail on any [alert] or [crit] line.
 */
#ifndef BB_LOG_H
#define BB_LOG_H

enum bb_log_level {
    BB_LOG_DEBUG,
    BB_LOG_INFO,
    BB_LOG_NOTICE,
    BB_LOG_WARN,
    BB_LOG_ERROR,
    BB_LOG_CRIT,
    BB_LOG_ALERT
};

/* Open path for append (NULL = stderr); -1 with errno on failure, stderr stays in use. */
int bb_log_open(const char *path);
/* Reopen the same path (SIGUSR1 after rotation); no-op for stderr. */
int bb_log_reopen(void);
void bb_log_set_level(enum bb_log_level lvl);
/* Process role shown in each line, e.g. "master", "worker 3"; copied. */
void bb_log_set_role(const char *role);
void bb_log(enum bb_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define bb_debug(...) bb_log(BB_LOG_DEBUG, __VA_ARGS__)
#define bb_info(...) bb_log(BB_LOG_INFO, __VA_ARGS__)
#define bb_notice(...) bb_log(BB_LOG_NOTICE, __VA_ARGS__)
#define bb_warn(...) bb_log(BB_LOG_WARN, __VA_ARGS__)
#define bb_error(...) bb_log(BB_LOG_ERROR, __VA_ARGS__)
#define bb_crit(...) bb_log(BB_LOG_CRIT, __VA_ARGS__)
#define bb_alert(...) bb_log(BB_LOG_ALERT, __VA_ARGS__)

#endif
