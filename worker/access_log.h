/*
 * access_log: observability.access_log, one JSON line per request (worker/obs.c builds them).
 * Lines go into a bounded in-memory buffer and are written from a timer with one write(2) per
 * flush (O_APPEND: lines of every worker interleave whole), never from the request path; a
 * line that finds the buffer full, or that a failed write loses, is dropped and counted.
 * SIGUSR1 reopens the file (after rotation). Worker process, single-threaded.
 */
#ifndef BB_ACCESS_LOG_H
#define BB_ACCESS_LOG_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct bb_worker;
struct bb_access_log;

/* Open path for appending. NULL on OOM; a file that cannot be opened is logged and every line
 * counts as dropped until a reopen succeeds. */
struct bb_access_log *bb_access_log_open(struct bb_worker *w, const char *path,
                                         _Atomic uint64_t *lines, _Atomic uint64_t *dropped);
/* Queue one line (len bytes, ending in '\n'). */
void bb_access_log_add(struct bb_access_log *l, const char *line, size_t len);
/* Write what is queued, then reopen the path. */
void bb_access_log_reopen(struct bb_access_log *l);
/* Write what is queued and close. NULL is a no-op. */
void bb_access_log_close(struct bb_access_log *l);

#endif
