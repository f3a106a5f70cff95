/*
 * policy_unix: the Unix-socket transport of routing policies (pools.*.policy.socket). One
 * persistent connection per worker and pool, opened on the first call and again after it
 * closes; each call writes one line of JSON and the server answers one line per call, in
 * order. Calls in flight wait in a FIFO: an answer belongs to the oldest call. A call whose
 * request went away stays in the FIFO (its answer is read and dropped); a call that times out
 * closes the connection, since the answers behind it could no longer be matched, and the
 * calls still waiting fail at once (on_error) instead of at their own timeouts.
 * Worker process, single-threaded.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "common/log.h"
#include "worker/policy_int.h"
#include "worker/request.h"
#include "worker/worker.h"

struct pol_qnode {
    struct pol_qnode *next;
    struct bb_policy_call *call; /* NULL: forgotten, its answer is dropped */
};

struct pol_sock {
    struct bufferevent *bev;
    struct pol_qnode *head, *tail;
    struct pol_pool *pp;
    const char *path;
};

/* Close the connection; every call still waiting fails (why). */
static void sock_close(struct pol_sock *s, const char *why)
{
    if (s->bev) {
        bufferevent_free(s->bev);
        s->bev = NULL;
    }
    struct pol_qnode *q = s->head;
    s->head = s->tail = NULL;
    while (q) { /* failing a call may start others on a new connection: q is detached */
        struct pol_qnode *next = q->next;
        struct bb_policy_call *c = q->call;
        free(q);
        if (c) {
            c->node = NULL;
            bb_policy_failed(c, BB_MX_POL_ERROR, why);
        }
        q = next;
    }
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    struct pol_sock *s = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    for (;;) {
        struct evbuffer_ptr nl = evbuffer_search(in, "\n", 1, NULL);
        if (nl.pos < 0) {
            if (evbuffer_get_length(in) > BB_POLICY_ANSWER_MAX)
                sock_close(s, "socket: an answer line is too long");
            return;
        }
        size_t len = (size_t)nl.pos;
        struct pol_qnode *q = s->head;
        if (!q) {
            sock_close(s, "socket: an answer nobody asked for");
            return;
        }
        s->head = q->next;
        if (!s->head)
            s->tail = NULL;
        struct bb_policy_call *c = q->call;
        free(q);
        if (!c) {
            evbuffer_drain(in, len + 1);
            continue;
        }
        c->node = NULL;
        char *line = malloc(len + 1);
        if (!line) {
            evbuffer_drain(in, len + 1);
            bb_policy_failed(c, BB_MX_POL_ERROR, "out of memory");
        } else {
            evbuffer_remove(in, line, len + 1);
            bb_policy_answered(c, line, len);
            free(line);
        }
        if (s->bev != bev)
            return; /* deciding for c closed this connection */
    }
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    struct pol_sock *s = arg;
    if (what & BEV_EVENT_CONNECTED)
        return;
    sock_close(s, (what & BEV_EVENT_EOF) ? "socket: the policy server closed the connection"
                                         : "socket: connection error");
}

static int sock_open(struct pol_sock *s, struct bb_worker *w, char *why, size_t cap)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", s->path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
        /* a Unix stream connect completes at once, or fails (EAGAIN: backlog full) */
        snprintf(why, cap, "socket: cannot connect to %s: %s", s->path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    s->bev = bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!s->bev) {
        close(fd);
        snprintf(why, cap, "out of memory");
        return -1;
    }
    bufferevent_setcb(s->bev, read_cb, NULL, event_cb, s);
    bufferevent_enable(s->bev, EV_READ | EV_WRITE);
    return 0;
}

int bb_policy_unix_start(struct bb_policy_call *c, const char *json, size_t len, char *why,
                         size_t cap)
{
    struct bb_request *req = c->req;
    struct pol_pool *pp = c->pp;
    if (!pp->sock) {
        pp->sock = calloc(1, sizeof *pp->sock);
        if (!pp->sock) {
            snprintf(why, cap, "out of memory");
            return -1;
        }
        pp->sock->pp = pp;
        pp->sock->path = req->w->conf->pools[req->pool].policy.socket;
    }
    struct pol_sock *s = pp->sock;
    if (!s->bev && sock_open(s, req->w, why, cap) < 0)
        return -1;
    struct pol_qnode *q = calloc(1, sizeof *q);
    if (!q) {
        snprintf(why, cap, "out of memory");
        return -1;
    }
    if (bufferevent_write(s->bev, json, len) < 0 || bufferevent_write(s->bev, "\n", 1) < 0) {
        free(q);
        snprintf(why, cap, "out of memory");
        return -1;
    }
    q->call = c;
    c->node = q;
    if (s->tail)
        s->tail->next = q;
    else
        s->head = q;
    s->tail = q;
    return 0;
}

void bb_policy_unix_forget(struct bb_policy_call *c)
{
    if (c->node)
        c->node->call = NULL;
    c->node = NULL;
}

void bb_policy_unix_timeout(struct bb_policy_call *c)
{
    struct pol_sock *s = c->pp->sock;
    bb_policy_unix_forget(c);
    if (s)
        sock_close(s, "socket: closed after another call timed out");
}

void bb_policy_unix_free(struct pol_pool *pp)
{
    if (!pp->sock)
        return;
    sock_close(pp->sock, "worker stopping");
    free(pp->sock);
    pp->sock = NULL;
}
