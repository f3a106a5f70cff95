/*
 * access_log: the buffered JSON-lines writer (see access_log.h).
 */
#include "worker/access_log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/log.h"
#include "common/metrics_shm.h"
#include "worker/worker.h"

#define BUF_CAP (1u << 20) /* per worker; beyond this lines are dropped */
#define FLUSH_MS 100

struct bb_access_log {
    struct bb_worker *w;
    char *path;
    int fd;
    char *buf;
    size_t len;
    struct event *timer;
    _Atomic uint64_t *lines, *dropped;
};

static void log_open(struct bb_access_log *l)
{
    l->fd = open(l->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0640);
    if (l->fd < 0)
        bb_error("access log %s: cannot open: %s (lines are dropped until SIGUSR1 reopens it)",
                 l->path, strerror(errno));
}

/* Count the lines in buf[0..n) (each ends in '\n'). */
static uint64_t lines_in(const char *buf, size_t n)
{
    uint64_t k = 0;
    for (const char *p = buf; (p = memchr(p, '\n', n - (size_t)(p - buf))); p++)
        k++;
    return k;
}

static void flush(struct bb_access_log *l)
{
    size_t off = 0;
    while (l->fd >= 0 && off < l->len) {
        ssize_t n = write(l->fd, l->buf + off, l->len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            bb_error("access log %s: write failed: %s", l->path,
                     n < 0 ? strerror(errno) : "no progress");
            break;
        }
        off += (size_t)n;
    }
    uint64_t done = lines_in(l->buf, off);
    bb_mx_add(l->lines, done);
    bb_mx_add(l->dropped, lines_in(l->buf, l->len) - done);
    l->len = 0;
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    flush(arg);
}

struct bb_access_log *bb_access_log_open(struct bb_worker *w, const char *path,
                                         _Atomic uint64_t *lines, _Atomic uint64_t *dropped)
{
    struct bb_access_log *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->w = w;
    l->lines = lines;
    l->dropped = dropped;
    l->path = strdup(path);
    l->buf = malloc(BUF_CAP);
    l->timer = evtimer_new(w->base, timer_cb, l);
    l->fd = -1;
    if (!l->path || !l->buf || !l->timer) {
        bb_access_log_close(l);
        return NULL;
    }
    log_open(l);
    return l;
}

void bb_access_log_add(struct bb_access_log *l, const char *line, size_t len)
{
    if (l->fd < 0 || len > BUF_CAP - l->len) {
        bb_mx_add(l->dropped, 1);
        return;
    }
    memcpy(l->buf + l->len, line, len);
    l->len += len;
    if (!evtimer_pending(l->timer, NULL)) {
        struct timeval tv = {0, FLUSH_MS * 1000};
        evtimer_add(l->timer, &tv);
    }
}

void bb_access_log_reopen(struct bb_access_log *l)
{
    flush(l);
    if (l->fd >= 0)
        close(l->fd);
    log_open(l);
}

void bb_access_log_close(struct bb_access_log *l)
{
    if (!l)
        return;
    if (l->buf)
        flush(l);
    if (l->fd >= 0)
        close(l->fd);
    if (l->timer)
        event_free(l->timer);
    free(l->buf);
    free(l->path);
    free(l);
}
