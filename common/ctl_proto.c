/*
 * ctl_proto: line framing for the admin socket (one JSON request line, one JSON response line).
 * Used by the master (non-blocking, driven by its poll loop) and by busbarctl (blocking with a
 * deadline). No shared state; every buffer belongs to one connection.
 */
#include "common/ctl_proto.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/shm.h"

static const char *const cmd_names[] = {
#define X(id, name) name,
    BB_CTL_CMD_LIST(X)
#undef X
};

const char *bb_ctl_cmd_name(enum bb_ctl_cmd c)
{
    return (unsigned)c < BB_CTL_CMD__COUNT ? cmd_names[c] : "?";
}

int bb_ctl_cmd_from_name(const char *name)
{
    for (int i = 0; i < BB_CTL_CMD__COUNT; i++)
        if (strcmp(cmd_names[i], name) == 0)
            return i;
    return -1;
}

void bb_ctl_buf_init(struct bb_ctl_buf *b, size_t max)
{
    memset(b, 0, sizeof *b);
    b->max = max;
}

void bb_ctl_buf_free(struct bb_ctl_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->off = b->cap = 0;
}

int bb_ctl_buf_set_line(struct bb_ctl_buf *b, const char *s, size_t len, struct bb_err *err)
{
    if (len + 1 > b->max)
        return bb_err_set(err, "message of %zu bytes exceeds the %zu byte limit", len, b->max);
    free(b->data);
    b->data = bb_xmalloc(len + 2);
    memcpy(b->data, s, len);
    b->data[len] = '\n';
    b->data[len + 1] = '\0';
    b->len = len + 1;
    b->cap = len + 2;
    b->off = 0;
    return 0;
}

enum bb_ctl_io bb_ctl_buf_read(struct bb_ctl_buf *b, int fd, struct bb_err *err)
{
    for (;;) {
        if (b->cap - b->len < 2) {
            size_t ncap = b->cap ? b->cap * 2 : 4096;
            if (ncap > b->max + 1)
                ncap = b->max + 1;
            if (ncap <= b->cap) {
                bb_err_set(err, "line exceeds the %zu byte limit", b->max);
                return BB_CTL_IO_ERROR;
            }
            b->data = bb_xrealloc(b->data, ncap);
            b->cap = ncap;
        }
        ssize_t n = read(fd, b->data + b->len, b->cap - b->len - 1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return BB_CTL_IO_AGAIN;
            bb_err_set(err, "read: %s", strerror(errno));
            return BB_CTL_IO_ERROR;
        }
        if (n == 0) {
            if (b->len == 0) {
                bb_err_set(err, "connection closed before a complete line");
                return BB_CTL_IO_ERROR;
            }
            /* EOF ends the line too (a client that shut down its write side). */
            b->data[b->len] = '\0';
            return BB_CTL_IO_DONE;
        }
        char *nl = memchr(b->data + b->len, '\n', (size_t)n);
        b->len += (size_t)n;
        if (nl) {
            /* Anything after the newline is ignored: one request per connection. */
            *nl = '\0';
            b->len = (size_t)(nl - b->data);
            if (b->len && b->data[b->len - 1] == '\r')
                b->data[--b->len] = '\0';
            return BB_CTL_IO_DONE;
        }
        if (b->len >= b->max) {
            bb_err_set(err, "line exceeds the %zu byte limit", b->max);
            return BB_CTL_IO_ERROR;
        }
    }
}

enum bb_ctl_io bb_ctl_buf_write(struct bb_ctl_buf *b, int fd, struct bb_err *err)
{
    while (b->off < b->len) {
        /* send() with MSG_NOSIGNAL: a client gone away must not raise SIGPIPE. */
        ssize_t n = send(fd, b->data + b->off, b->len - b->off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return BB_CTL_IO_AGAIN;
            bb_err_set(err, "write: %s", strerror(errno));
            return BB_CTL_IO_ERROR;
        }
        b->off += (size_t)n;
    }
    return BB_CTL_IO_DONE;
}

int bb_ctl_connect(const char *path, struct bb_err *err)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sa.sun_path)
        return bb_err_set(err, "cannot connect to %s: path too long", path);
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return bb_err_set(err, "cannot connect to %s: %s", path, strerror(errno));
    /* Connecting to a local stream socket completes or fails at once (or EAGAIN when the
     * backlog is full, reported as an error); the fd turns non-blocking afterwards. */
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        int e = errno;
        close(fd);
        return bb_err_set(err, "cannot connect to %s: %s", path, strerror(e));
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        int e = errno;
        close(fd);
        return bb_err_set(err, "cannot connect to %s: %s", path, strerror(e));
    }
    return fd;
}

/* Wait for ev on fd until the monotonic deadline; 0 ready, -1 timeout/error (err set). */
static int wait_fd(int fd, short ev, uint64_t deadline, struct bb_err *err)
{
    for (;;) {
        uint64_t now = bb_now_ms();
        if (now >= deadline)
            return bb_err_set(err, "timed out waiting for the master");
        struct pollfd p = {.fd = fd, .events = ev};
        int r = poll(&p, 1, (int)(deadline - now));
        if (r > 0)
            return 0;
        if (r < 0 && errno != EINTR)
            return bb_err_set(err, "poll: %s", strerror(errno));
    }
}

char *bb_ctl_call(const char *path, const char *req, int timeout_ms, struct bb_err *err)
{
    uint64_t deadline = bb_now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : BB_CTL_TIMEOUT_MS);
    int fd = bb_ctl_connect(path, err);
    if (fd < 0)
        return NULL;
    char *out = NULL;
    struct bb_ctl_buf w, r;
    bb_ctl_buf_init(&w, BB_CTL_REQ_MAX);
    bb_ctl_buf_init(&r, BB_CTL_RESP_MAX);
    if (bb_ctl_buf_set_line(&w, req, strlen(req), err) < 0)
        goto done;
    for (;;) {
        enum bb_ctl_io st = bb_ctl_buf_write(&w, fd, err);
        if (st == BB_CTL_IO_DONE)
            break;
        if (st == BB_CTL_IO_ERROR || wait_fd(fd, POLLOUT, deadline, err) < 0)
            goto done;
    }
    for (;;) {
        enum bb_ctl_io st = bb_ctl_buf_read(&r, fd, err);
        if (st == BB_CTL_IO_DONE) {
            out = r.data;
            r.data = NULL;
            break;
        }
        if (st == BB_CTL_IO_ERROR || wait_fd(fd, POLLIN, deadline, err) < 0)
            goto done;
    }
done:
    bb_ctl_buf_free(&w);
    bb_ctl_buf_free(&r);
    close(fd);
    return out;
}
